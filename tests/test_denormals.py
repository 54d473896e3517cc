"""Flush-to-zero while training on the CPU (gpunn.ops.denormals).

A small ReLU net trained with a large Adam step kills units; the first moment m of their weights
then decays by beta1 each step through the subnormal range. Without the flush that run leaves
thousands of subnormals in m (shown here with GPUNN_FLUSH_DENORMALS=0, so the test can fail);
with it (the default) none, on the fused path and on the NumPy reference alike.
"""
import platform
import sys

import numpy
import pytest
import waiting

from gpunn import MLP, datasets
from gpunn.ops import denormals
from gpunn.ops.cpu import run_pieces
from gpunn.ops.ensemble import _spinning_workers
from gpunn.optim import Adam

X86_64_LINUX = sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")
needs_flush = pytest.mark.skipif(not denormals.supported(), reason="FTZ/DAZ are set through glibc on x86-64 Linux")

TINY = numpy.finfo(numpy.float32).tiny


def subnormals(a):
    return int(((a != 0) & (numpy.abs(a) < TINY)).sum())


def adam_after_dead_units(fused=True):
    X, Y = datasets.make("teacher", 2048, 8, seed=0, device="cpu")
    model = MLP([8, 64, 64, 1], seed=0, device="cpu", fused=fused)
    opt = Adam(lr=3e-2)
    model.fit(X, Y, epochs=30, batch_size=64, optimizer=opt, verbose=False)  # 960 steps
    return opt.state["m"], opt.state["v"], model.params


@needs_flush
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_training_leaves_no_subnormals_in_adam_state(monkeypatch, fused):
    monkeypatch.setenv(denormals.ENV, "0")
    m, _, _ = adam_after_dead_units(fused)
    assert subnormals(m) > 100  # what the run does without the flush
    monkeypatch.setenv(denormals.ENV, "1")
    m, v, params = adam_after_dead_units(fused)
    assert subnormals(m) == subnormals(v) == subnormals(params) == 0
    assert (m == 0).sum() > 100  # the dead units' moments went to zero instead


@needs_flush
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


def _pieces_modes(run):
    """The FTZ/DAZ bits each of two pieces ran with, handed over by run(fn, [0, 1]) (fn(i) records piece i's)."""
    modes = [None, None]

    def fn(i, signal=None):
        modes[i] = denormals.flush_mode()
        if signal is not None:  # _SpinningWorkers' start signal, which its caller waits for
            signal[0][signal[1]] = signal[2]

    run(fn, [0, 1])
    return modes


@needs_flush
@pytest.mark.parametrize("workers", ["pool", "spinning"])
def test_gpunn_worker_threads_run_a_piece_in_the_mode_of_the_thread_that_hands_it_over(workers):
    """FTZ/DAZ are per thread. gpunn's workers set them for good where the flush was on, so outside fit (the
    caller computing IEEE subnormals) a piece on a worker flushed them: an ensemble's members or a model's rows
    there came out 0 where one thread gives subnormals. Both kinds of worker now take the caller's mode."""
    if workers == "pool":
        def run(fn, pieces):
            run_pieces(fn, [(p,) for p in pieces])
    else:
        spinning = _spinning_workers(1)
        if spinning is None:
            pytest.skip("no Numba")

        def run(fn, pieces):
            assert spinning.run(fn, pieces)
    flush = denormals.FTZ | denormals.DAZ
    for _ in range(2):  # each way twice: the worker keeps no mode of its own between pieces
        assert _pieces_modes(run) == [denormals.flush_mode()] * 2 == [0, 0]
        with denormals.flush_denormals(True):
            assert _pieces_modes(run) == [flush, flush]


@needs_flush
def test_a_first_finfo_inside_the_flush_does_not_warn():
    """NumPy 1.x works out a float type's limits at its first numpy.finfo and warns, with FTZ/DAZ on, that
    the smallest subnormal is 0: NumPy 1.26 printed four such warnings on each `gpunn train` (SciPy's
    finfo as Numba compiled a kernel inside the flush). A fresh process, so no finfo is cached yet.
    (NumPy 2 does not warn: this fails before the fix with NumPy 1.26 only.)"""
    code = ("import numpy; from gpunn.ops import denormals\n"
            "with denormals.flush_denormals(True):\n"
            "    print([numpy.finfo(t).eps for t in (numpy.float32, numpy.float64)])")
    proc = waiting.run([sys.executable, "-W", "error", "-c", code], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


FLUSH = denormals.FTZ | denormals.DAZ


def control():
    """The calling thread's MXCSR without its sticky exception flags (bits 0-5: set by the arithmetic itself)."""
    return denormals.mxcsr() & ~0x3F


def test_supported_on_x86_64_linux():
    """glibc's fegetmode/fesetmode set the mode on x86-64 Linux (the machines gpunn trains on); elsewhere the flush
    does nothing."""
    if X86_64_LINUX and platform.libc_ver()[0] == "glibc":
        assert denormals.supported()


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("", True), ("yes", True), ("0", False),
                                       ("false", False), ("no", False), ("off", False), (" 0 ", False),
                                       ("OFF", False), ("False", False)])
def test_gpunn_flush_denormals_turns_the_flush_off_with_0_false_no_or_off(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(denormals.ENV, raising=False)
    else:
        monkeypatch.setenv(denormals.ENV, value)
    assert denormals.enabled() is on
    assert denormals.describe() == ("FTZ+DAZ on the training thread and gpunn's CPU threads" if on
                                    else f"off ({denormals.ENV}={value.strip()})") or not denormals.supported()


@needs_flush
def test_the_flush_zeroes_subnormal_results_and_inputs_and_changes_nothing_else():
    """FTZ: a product of normal floats that would be subnormal is 0; DAZ: a subnormal input reads as 0; the rest of
    MXCSR (rounding, exception masks) as it was, so normal arithmetic gives the same bits."""
    tiny, sub = numpy.full(3, 1e-20, numpy.float32), numpy.full(3, 1e-39, numpy.float32)
    ratios = numpy.arange(1, 50, dtype=numpy.float32)
    before = control()
    assert before & FLUSH == 0 and (tiny * tiny).tolist() != [0.0] * 3
    with denormals.flush_denormals(True):
        assert control() == before | FLUSH
        # (compared outside: inside, DAZ would read a subnormal result as 0 in the comparison itself)
        product, total, quotients = tiny * tiny, sub + numpy.float32(0), numpy.float32(1) / ratios
    assert control() == before
    assert product.tolist() == total.tolist() == [0.0] * 3
    assert quotients.tobytes() == (numpy.float32(1) / ratios).tobytes()  # rounded to nearest, as outside


@needs_flush
def test_set_flush_and_follow_set_and_clear_both_bits_alone(monkeypatch):
    """set_flush(on) returns the MXCSR it replaced; follow(bits) takes another thread's flush_mode() (None: leave the
    mode alone). Only FTZ and DAZ change; an explicit on/off in flush_denormals wins over GPUNN_FLUSH_DENORMALS."""
    before = control()
    try:
        assert denormals.set_flush(True) & ~0x3F == before and control() == before | FLUSH
        assert denormals.flush_mode() == FLUSH
        assert denormals.set_flush(False) & ~0x3F == before | FLUSH and control() == before
        assert denormals.flush_mode() == 0
        denormals.follow(FLUSH)
        assert control() == before | FLUSH
        denormals.follow(None)
        assert control() == before | FLUSH
        denormals.follow(0)
        assert control() == before
        monkeypatch.setenv(denormals.ENV, "0")
        with denormals.flush_denormals(True) as on:
            assert on and control() == before | FLUSH
        with denormals.flush_denormals() as on:
            assert not on and control() == before
        monkeypatch.setenv(denormals.ENV, "1")
        with denormals.flush_denormals(False) as on:
            assert not on and control() == before
        with denormals.flush_denormals() as on:
            assert on and control() == before | FLUSH
    finally:
        denormals.set_flush(bool(before & FLUSH))
    assert control() == before


@needs_flush
def test_a_thread_holding_one_of_the_two_bits_gets_that_one_back_after_the_block():
    """A thread may hold FTZ without DAZ, or DAZ alone (code built with a compiler's fast-math options sets a mode of
    its own): the block sets both, and its end puts each bit back as it was, not FTZ's alone."""
    before = control()
    try:
        for bits in (denormals.FTZ, denormals.DAZ):
            denormals.follow(bits)
            with denormals.flush_denormals(True):
                assert control() == before | FLUSH
            assert control() == before | bits
    finally:
        denormals.follow(before & FLUSH)
    assert control() == before


def test_without_glibcs_mode_calls_everything_is_a_no_op(monkeypatch):
    """Where the mode cannot be set (_LIBM None: not x86-64 Linux), nothing is read or set and nothing fails."""
    monkeypatch.setattr(denormals, "_LIBM", None)
    assert not denormals.supported()
    assert denormals.mxcsr() is None and denormals.flush_mode() is None and denormals.set_flush(True) is None
    denormals.follow(FLUSH)
    with denormals.flush_denormals(True) as on:
        assert on is False
    assert denormals.describe() == "not available on this platform (subnormals computed as IEEE)"
