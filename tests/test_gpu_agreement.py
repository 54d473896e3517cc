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
