# Two commands do all the set-up on a fresh machine:
#   make train   - create .venv on first use, install gpunn (+ CuPy where an NVIDIA driver is found), train
#   make test    - the same install, then the test suite (what .ci/run calls)
#   make bench   - the training-throughput benchmark (gpunn bench; peers when installed)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test$$($(PYTHON) scripts/cuda_extra.py)]"
	touch $@

train: $(STAMP)
	$(BIN)/gpunn train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/gpunn bench $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
