"""Flush-to-zero while training on the CPU (gpunn.ops.denormals).

A small ReLU net trained with a large Adam step kills units; the first moment m of their weights
then decays by beta1 each step through the subnormal range. Without the flush that run leaves
thousands of subnormals in m (shown here with GPUNN_FLUSH_DENORMALS=0, so the test can fail);
with it (the default) none, on the fused path and on the NumPy reference alike.
"""
import numpy
import pytest
import waiting

from gpunn import MLP, datasets
from gpunn.ops import denormals
from gpunn.ops.cpu import _pool
from gpunn.optim import Adam

pytestmark = pytest.mark.skipif(not denormals.supported(), reason="FTZ/DAZ are set through glibc on x86-64 Linux")

TINY = numpy.finfo(numpy.float32).tiny


def subnormals(a):
    return int(((a != 0) & (numpy.abs(a) < TINY)).sum())


def adam_after_dead_units(fused=True):
    X, Y = datasets.make("teacher", 2048, 8, seed=0, device="cpu")
    model = MLP([8, 64, 64, 1], seed=0, device="cpu", fused=fused)
    opt = Adam(lr=3e-2)
    model.fit(X, Y, epochs=30, batch_size=64, optimizer=opt, verbose=False)  # 960 steps
    return opt.state["m"], opt.state["v"], model.params


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_training_leaves_no_subnormals_in_adam_state(monkeypatch, fused):
    monkeypatch.setenv(denormals.ENV, "0")
    m, _, _ = adam_after_dead_units(fused)
    assert subnormals(m) > 100  # what the run does without the flush
    monkeypatch.setenv(denormals.ENV, "1")
    m, v, params = adam_after_dead_units(fused)
    assert subnormals(m) == subnormals(v) == subnormals(params) == 0
    assert (m == 0).sum() > 100  # the dead units' moments went to zero instead


def test_flush_is_scoped_to_the_block_and_restored():
    before = denormals.mxcsr()
    x = numpy.full(4, 1e-39, numpy.float32)  # subnormal
    with denormals.flush_denormals(True) as on:
        assert on
        assert denormals.mxcsr() & (denormals.FTZ | denormals.DAZ) == denormals.FTZ | denormals.DAZ
        assert (x * numpy.float32(1)).tolist() == [0.0] * 4  # DAZ: read as zero
    assert denormals.mxcsr() & (denormals.FTZ | denormals.DAZ) == before & (denormals.FTZ | denormals.DAZ)
    assert (x * numpy.float32(1)).tolist() == x.tolist()
    with pytest.raises(RuntimeError), denormals.flush_denormals(True):
        raise RuntimeError
    assert denormals.mxcsr() & (denormals.FTZ | denormals.DAZ) == before & (denormals.FTZ | denormals.DAZ)


def test_gpunn_worker_threads_flush():
    mode = _pool(2).submit(denormals.mxcsr).result()
    assert mode & denormals.FTZ and mode & denormals.DAZ


def test_a_first_finfo_inside_the_flush_does_not_warn():
    """NumPy 1.x works out a float type's limits at its first numpy.finfo and warns, with FTZ/DAZ on, that
    the smallest subnormal is 0: NumPy 1.26 printed four such warnings on each `gpunn train` (SciPy's
    finfo as Numba compiled a kernel inside the flush). A fresh process, so no finfo is cached yet.
    (NumPy 2 does not warn: this fails before the fix with NumPy 1.26 only.)"""
    import sys

    code = ("import numpy; from gpunn.ops import denormals\n"
            "with denormals.flush_denormals(True):\n"
            "    print([numpy.finfo(t).eps for t in (numpy.float32, numpy.float64)])")
    proc = waiting.run([sys.executable, "-W", "error", "-c", code], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
