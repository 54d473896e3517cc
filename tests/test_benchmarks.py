"""pytest-benchmark micro-benchmarks: the training step and each fused op, reference vs CpuOps.

CI runs them once with benchmarking disabled (pyproject: --benchmark-disable), so they stay
working; nothing here asserts speed. To measure:
    python3 -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-only
"""
import numpy
import pytest

from gpunn import ACTIVATIONS, MLP
from gpunn.ops.cpu import CpuOps
from gpunn.ops import Ops
from gpunn.optim import Adam

RELU = ACTIVATIONS["relu"]
ROWS, COLS = 256, 256  # the "medium" configuration's hidden layer
OPS = {"reference": Ops, "cpu": CpuOps}


@pytest.fixture(params=list(OPS))
def ops(request):
    return OPS[request.param]()


@pytest.fixture
def rng():
    return numpy.random.default_rng(0)


def test_train_step(benchmark, ops, rng):
    """One forward + backward + Adam step of the medium configuration (64-256-256-1, batch 256)."""
    model = MLP([64, 256, 256, 1], device="cpu", seed=0)
    model.ops = ops
    opt = Adam().bind(model.params, ops)
    X = rng.standard_normal((256, 64)).astype(numpy.float32)
    Y = rng.standard_normal((256, 1)).astype(numpy.float32)

    def step():
        model._train_step_gradients(X, Y)
        opt.step(model.params, model.grads, opt.lr)

    benchmark(step)
    assert numpy.isfinite(model.params).all()


def test_bias_relu(benchmark, ops, rng):
    Z = rng.standard_normal((ROWS, COLS)).astype(numpy.float32)
    b = rng.standard_normal(COLS).astype(numpy.float32)
    benchmark(ops.bias_activation, Z, b, RELU, Z, False)
    assert (Z >= 0).all()


def test_relu_backward_with_bias_gradient(benchmark, ops, rng):
    dZ = rng.standard_normal((ROWS, COLS)).astype(numpy.float32)
    A = numpy.maximum(rng.standard_normal((ROWS, COLS)), 0).astype(numpy.float32)
    db = numpy.empty(COLS, numpy.float32)
    benchmark(ops.activation_bias_backward, dZ, RELU, A, True, dZ, db)
    assert (dZ[A == 0] == 0).all()


def test_adam_step(benchmark, ops, rng):
    n = 82_433  # parameters of 64-256-256-1 with biases
    w, g = (rng.standard_normal(n).astype(numpy.float32) for _ in range(2))
    m, v = numpy.zeros(n, numpy.float32), numpy.zeros(n, numpy.float32)
    benchmark(ops.adam_step, w, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 10, 0.0, False)
    assert numpy.isfinite(w).all()


@pytest.mark.parametrize("k", [1, 4])
def test_output_layer_outer_product(benchmark, ops, rng, k):
    """dA = dZ @ W^T of the output layer: an inner dimension of 1 or 4 (the outputs)."""
    dZ = rng.standard_normal((512, k)).astype(numpy.float32)
    W = rng.standard_normal((512, k)).astype(numpy.float32)
    out = numpy.empty((512, 512), numpy.float32)
    benchmark(ops.matmul, dZ, W.T, out)
    numpy.testing.assert_allclose(out, dZ @ W.T, rtol=1e-5, atol=1e-5)


def test_loss_gradient(benchmark, ops, rng):
    A, Y = (rng.standard_normal((ROWS, 4)).astype(numpy.float32) for _ in range(2))
    dA = numpy.empty_like(A)
    total = benchmark(ops.loss_gradient, A, Y, dA)
    numpy.testing.assert_allclose(dA, 2.0 / ROWS * (A - Y), rtol=1e-6)
    difference = (A - Y).astype(numpy.float64)  # (formed in float32, squared and summed in float64)
    assert float(total) == pytest.approx(float(numpy.sum(difference ** 2)), rel=1e-12)
