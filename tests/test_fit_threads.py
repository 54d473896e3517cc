"""The fit of a small net puts OpenBLAS on one thread while it runs (gpunn.ops.fit_threads), puts the count back
after it, and leaves a count the user chose alone."""
import os

import numpy
import pytest

import gpunn
from gpunn.ops import cblas, fit_threads

threadpoolctl = pytest.importorskip("threadpoolctl")
pytest.importorskip("numba")  # the one-call step's kernel


NUMPYS = {os.path.realpath(path) for path in cblas._libraries()}  # NumPy's OpenBLAS (a wheel's)


def openblas_threads():
    """NumPy's OpenBLAS's thread count (SciPy's, which a fit may load, aside)."""
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["internal_api"] == "openblas" and os.path.realpath(lib["filepath"]) in NUMPYS]


needs_two = pytest.mark.skipif(openblas_threads() != [fit_threads.usable_cores()] or fit_threads.usable_cores() < 2,
                               reason="NumPy's OpenBLAS (a wheel's) at its own count of 2 threads or more")


class Seen(gpunn.Callback):
    def __init__(self):
        self.counts = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.counts.append(set(openblas_threads()))


def fit(monkeypatch, optimizer="adam", **env):
    for name in fit_threads.USER_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((256, 16)).astype(numpy.float32)
    Y = rng.standard_normal((256, 1)).astype(numpy.float32)
    seen = Seen()
    before = openblas_threads()
    gpunn.MLP([16, 64, 64, 1], seed=1, device="cpu").fit(X, Y, epochs=2, batch_size=128, optimizer=optimizer,
                                                          verbose=False, callbacks=[seen])
    assert openblas_threads() == before  # put back (or never changed)
    return seen.counts, before


@needs_two
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])  # the one-call step, and one_call_gradients
def test_a_small_fit_runs_on_one_openblas_thread(monkeypatch, optimizer):
    counts, _ = fit(monkeypatch, optimizer)
    assert counts == [{1}, {1}]


@needs_two
def test_openblas_num_threads_set_by_the_user_wins(monkeypatch):
    counts, before = fit(monkeypatch, OPENBLAS_NUM_THREADS="2")
    assert counts == [set(before)] * 2


@needs_two
def test_a_limit_in_force_wins(monkeypatch):
    """A count other than OpenBLAS's own (one per core) is a limit the user set: here the cores are said to be 4."""
    monkeypatch.setattr(fit_threads, "usable_cores", lambda: 4)
    counts, before = fit(monkeypatch)
    assert counts == [set(before)] * 2


@needs_two
def test_restored_after_a_fit_that_fails(monkeypatch):
    class Fails(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise RuntimeError("stop")

    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((256, 16)).astype(numpy.float32)
    before = openblas_threads()
    with pytest.raises(RuntimeError):
        gpunn.MLP([16, 64, 64, 1], seed=1, device="cpu").fit(X, X[:, :1].copy(), epochs=2, batch_size=128,
                                                              verbose=False, callbacks=[Fails()])
    assert openblas_threads() == before


@needs_two
def test_a_net_of_65536_parameters_keeps_openblas_count(monkeypatch):
    """A net of PARALLEL_MIN_ELEMENTS parameters or more is not small: its fit keeps OpenBLAS's threads."""
    monkeypatch.setattr(fit_threads, "PARALLEL_MIN_ELEMENTS", 16 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
    counts, before = fit(monkeypatch)
    assert counts == [set(before)] * 2
