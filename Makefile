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

# pytest-xdist: the tests in one process per core (-n auto), each test file in one of them (--dist loadfile: its module
# fixtures set up once). In one process the suite used 1.2 of CI's 2 cores; on the project's 2-core Intel Xeon (family 6
# model 167) at load 1.5-3 make test took 212 s and 223 s against 301 s and 278 s in one process, back to back
# (2026-12-02), and gained nothing at load 5, where others kept both cores busy. A worker's output is not shown: a test
# that hangs has its threads' stacks printed by faulthandler, 10 s before pytest-timeout (1200 s, pyproject.toml) ends
# its worker, and a worker that ends ends the run (--max-worker-restart 0), as the timeout does in one process.
# TEST_WORKERS=0: one process (for pytest's -s or its debugger)
TEST_WORKERS ?= auto

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 0 -o faulthandler_timeout=1190 \
	  $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/gpunn bench $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
