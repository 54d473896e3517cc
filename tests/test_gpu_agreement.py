"""CPU and GPU paths agree: same start, same gradients, same loss curve (skipped without a GPU)."""
import numpy
import pytest

from gpunn import ACTIVATIONS, MLP

pytestmark = pytest.mark.gpu


def _pair(sizes, **kwargs):
    return MLP(sizes, device="cpu", **kwargs), MLP(sizes, device="cuda", **kwargs)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_loss_and_gradients_agree(gpu, dtype, rtol, activation):
    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((257, 9)), rng.standard_normal((257, 3))
    cpu, cuda = _pair([9, 33, 17, 3], activation=activation, dtype=dtype, seed=1)
    numpy.testing.assert_array_equal(cpu.params, cuda.params.get())  # one seed, one start
    loss_c, dW_c, db_c = cpu.loss_and_gradients(X, Y)
    loss_g, dW_g, db_g = cuda.loss_and_gradients(X, Y)
    assert loss_g == pytest.approx(loss_c, rel=rtol)
    scale = max(float(numpy.abs(g).max()) for g in dW_c)
    for a, b in zip(dW_c + db_c, dW_g + db_g):
        numpy.testing.assert_allclose(b.get(), a, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
def test_training_follows_the_cpu_loss_curve(gpu, optimizer):
    rng = numpy.random.default_rng(1)
    X = rng.standard_normal((2048, 8)).astype("float32")
    Y = numpy.sin(X[:, :2].sum(axis=1, keepdims=True)).astype("float32")
    curves = []
    for model in _pair([8, 64, 64, 1], seed=3):
        h = model.fit(X, Y, epochs=8, batch_size=128, optimizer=optimizer, lr=1e-2 if "adam" in optimizer else 5e-2,
                      shuffle=False, verbose=False)
        curves.append(numpy.array(h["loss"]))
    numpy.testing.assert_allclose(curves[1], curves[0], rtol=2e-3)
    assert curves[1][-1] < 0.5 * curves[1][0]


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("optimizer", ["nesterov", "adamw"])
def test_a_whole_training_step_fused_unfused_and_numpy(gpu, activation, optimizer):
    """One fit step from one start: fused kernels, plain CuPy expressions and NumPy land on the same weights."""
    rng = numpy.random.default_rng(2)
    X, Y = rng.standard_normal((300, 12)), rng.standard_normal((300, 2))
    results = []
    for device, fused in (("cpu", None), ("cuda", False), ("cuda", True)):
        model = MLP([12, 40, 40, 2], activation=activation, dtype="float64", device=device, seed=4, fused=fused)
        model.fit(X, Y, epochs=1, batch_size=None, optimizer=optimizer, lr=1e-2, verbose=False)
        results.append(model.params.get() if device == "cuda" else model.params)
    from gpunn.ops.cuda import CupyOps

    assert MLP([2, 1], device="cuda", fused=True).ops.fused and not MLP([2, 1], device="cuda", fused=False).ops.fused
    assert isinstance(MLP([2, 1], device="cuda").ops, CupyOps)
    numpy.testing.assert_allclose(results[1], results[0], rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(results[2], results[0], rtol=1e-10, atol=1e-12)
