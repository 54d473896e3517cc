# Two commands do all the set-up on a fresh machine:
#   make train   - create .venv on first use, install gpunn with what training uses (+ CuPy where an NVIDIA
#                  driver is found), train
#   make test    - install the test dependencies too (about 2 GB with MKL), then the test suite (what .ci/run calls)
#   make bench   - the training-throughput benchmark (gpunn bench; peers when installed)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# gpunn[cpu,plot,data]: the Numba kernels, --plot, --data CSV/Parquet. Not the test extra (scikit-learn, MPI, MKL,
# BLIS, NVRTC...), which a laptop's first `make train` downloaded at 2.0 GB of venv where this is a third of it.
TRAIN_STAMP := $(VENV)/.installed-train-stamp
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test$$($(PYTHON) scripts/cuda_extra.py)]"
	touch $@

$(TRAIN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[cpu,plot,data$$($(PYTHON) scripts/cuda_extra.py --train)]"
	touch $@

# a venv that make test filled holds all of it: train there without another pip run
train: $(if $(wildcard $(STAMP)),$(STAMP),$(TRAIN_STAMP))
	$(BIN)/gpunn train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/gpunn bench $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
