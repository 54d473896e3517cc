"""Shared fixtures: backends under test, and GPU skipping."""
import numpy
import pytest

from gpunn import backend as _backend


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
