"""Synthetic tasks: seeded, shaped, on the target device, and streamable past memory."""
import numpy
import pytest

from gpunn import datasets


@pytest.mark.parametrize("task", list(datasets.TASKS))
def test_shapes_dtype_and_seeding(task, device, to_host):
    X, Y = datasets.make(task, 300, 6, seed=3, device=device, dtype="float64")
    assert X.shape == (300, 6) and Y.shape == (300, 1) and X.dtype == Y.dtype == numpy.float64
    X2, Y2 = datasets.make(task, 300, 6, seed=3, device=device, dtype="float64")
    numpy.testing.assert_array_equal(to_host(X), to_host(X2))
    numpy.testing.assert_array_equal(to_host(Y), to_host(Y2))
    X3, _ = datasets.make(task, 300, 6, seed=4, device=device, dtype="float64")
    assert not numpy.array_equal(to_host(X), to_host(X3))


@pytest.mark.parametrize("task", ["teacher", "linear", "sinusoid"])
def test_multi_output(task):
    X, Y = datasets.make(task, 100, 5, n_outputs=3, device="cpu")
    assert Y.shape == (100, 3)


def test_targets_follow_the_formula_without_noise():
    X, Y = datasets.make("friedman1", 500, 7, noise=0, device="cpu", dtype="float64")
    x = X.T
    want = 10 * numpy.sin(numpy.pi * x[0] * x[1]) + 20 * (x[2] - 0.5) ** 2 + 10 * x[3] + 5 * x[4]
    numpy.testing.assert_allclose(Y[:, 0], want, rtol=1e-12)
    assert X.min() >= 0 and X.max() <= 1


def test_noise_has_the_requested_scale():
    _, clean = datasets.make("linear", 20000, 4, noise=0, seed=1, device="cpu", dtype="float64")
    _, noisy = datasets.make("linear", 20000, 4, noise=0.5, seed=1, device="cpu", dtype="float64")
    assert numpy.std(noisy - clean) == pytest.approx(0.5, rel=0.03)


def test_stream_yields_exactly_the_rows_of_make_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK_ROWS", 1000)  # several chunks, batches straddling them
    X, Y = datasets.make("teacher", 4321, 5, seed=7, device="cpu")
    batches = list(datasets.stream("teacher", 4321, 300, 5, seed=7, device="cpu"))
    assert [len(b[0]) for b in batches] == [300] * 14 + [121]
    numpy.testing.assert_array_equal(numpy.concatenate([b[0] for b in batches]), X)
    numpy.testing.assert_array_equal(numpy.concatenate([b[1] for b in batches]), Y)


def test_stream_is_lazy_so_it_can_exceed_memory():
    stream = datasets.stream("linear", 10**12, 64, 3, device="cpu")  # 10^12 rows: never materialised
    Xb, Yb = next(stream)
    assert Xb.shape == (64, 3) and Yb.shape == (64, 1)


@pytest.mark.gpu
def test_data_is_born_on_the_gpu(gpu):
    import cupy

    X, Y = datasets.make("teacher", 1000, 4, device="cuda")
    assert isinstance(X, cupy.ndarray) and isinstance(Y, cupy.ndarray)
    assert float(Y.std()) == pytest.approx(1.0, abs=0.2)
