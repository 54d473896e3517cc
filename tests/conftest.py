"""Shared fixtures: backends under test, and GPU skipping.

GPUNN_FAKE_CUPY=1 runs the GPU-marked tests against tests/fakecupy (a NumPy-backed CuPy stand-in
that checks every kernel launch): the CuPy code path on a machine without a GPU. No substitute for
a GPU run; see tests/test_fakecupy.py.
"""
import os
import sys

import numpy
import pytest

from gpunn import backend as _backend


def pytest_configure(config):
    if os.environ.get("GPUNN_FAKE_CUPY") == "1":
        import fakecupy

        fakecupy.reset()
        sys.modules["cupy"] = fakecupy
        fakecupy.forget_gpunn_state()


def _gpu_reason():
    cupy, count, reason = _backend.probe_cuda()
    return None if cupy is not None else reason


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or _gpu_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"no usable GPU: {reason}"))


@pytest.fixture
def gpu():
    """The CUDA backend (tests using it must also be marked gpu)."""
    return _backend.resolve("cuda")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Runs a test on the CPU and, where there is one, on the GPU."""
    return request.param


@pytest.fixture
def to_host():
    def convert(a):
        return a.get() if hasattr(a, "get") else numpy.asarray(a)
    return convert
