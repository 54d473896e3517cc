"""The seed's equations, computed independently here, against the library on a bias-free net."""
import math

import numpy
import pytest

from gpunn import ACTIVATIONS, MLP

G = {  # g and g' written out again, independently of gpunn.activations
    "sigmoid": (lambda z: 1 / (1 + numpy.exp(-z)), lambda z: numpy.exp(-z) / (1 + numpy.exp(-z)) ** 2),
    "tanh": (numpy.tanh, lambda z: 1 / numpy.cosh(z) ** 2),
    "relu": (lambda z: numpy.maximum(z, 0), lambda z: (z > 0).astype(float)),
    "identity": (lambda z: z, lambda z: numpy.ones_like(z)),
}


def seed_forward_backward(X, Y, Ws, acts):
    """Forward, loss and backward exactly as the derivation writes them."""
    m = X.shape[0]
    A, Zs, As = X, [], [X]
    for W, act in zip(Ws, acts):
        Z = A @ W
        A = G[act][0](Z)
        Zs.append(Z)
        As.append(A)
    f = numpy.linalg.norm(A - Y, "fro") ** 2 / m
    dA = 2 / m * (A - Y)
    dWs = [None] * len(Ws)
    for l in reversed(range(len(Ws))):
        dZ = dA * G[acts[l]][1](Zs[l])
        dWs[l] = As[l].T @ dZ
        dA = dZ @ Ws[l].T
    return f, dWs


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu"])
def test_loss_and_gradients_are_the_seed_equations(hidden):
    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((9, 4)), rng.standard_normal((9, 2))
    model = MLP([4, 6, 5, 2], activation=hidden, bias=False, dtype="float64", device="cpu", seed=1)
    Ws = [W.copy() for W in model.weights]
    f, dWs = seed_forward_backward(X, Y, Ws, [hidden, hidden, "identity"])
    loss, dW, db = model.loss_and_gradients(X, Y)
    assert db is None and model.biases is None
    assert loss == pytest.approx(f, rel=1e-13)
    for got, want in zip(dW, dWs):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_sgd_is_the_seed_update_rule():
    """Full-batch "sgd" for three epochs is W <- W - alpha dW three times, to the last few ulps."""
    rng = numpy.random.default_rng(2)
    X, Y = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
    model = MLP([3, 8, 1], activation="sigmoid", bias=False, dtype="float64", device="cpu", seed=3)
    Ws = [W.copy() for W in model.weights]
    alpha = 0.05
    for _ in range(3):
        _, dWs = seed_forward_backward(X, Y, Ws, ["sigmoid", "identity"])
        Ws = [W - alpha * dW for W, dW in zip(Ws, dWs)]
    model.fit(X, Y, epochs=3, batch_size=None, optimizer="sgd", lr=alpha, shuffle=False, verbose=False)
    for got, want in zip(model.weights, Ws):
        numpy.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_weights_start_he_normal_for_the_relu_family_and_glorot_normal_otherwise(name):
    """README: He-normal (std sqrt(2/n_in)) for relu, leaky_relu, elu, gelu and silu, Glorot-normal (std
    sqrt(2/(n_in + n_out))) for the rest, per layer by that layer's activation; biases zero. (mut12m's A17:
    relu drawn Glorot-normal passed every test; its weights were 0.7x as large.)"""
    he = name in ("relu", "leaky_relu", "elu", "gelu", "silu")
    model = MLP([400, 100, 100], activation=name, output_activation=name, dtype="float64", device="cpu", seed=0)
    for W in model.weights:  # 40,000 and 10,000 draws: their std within 3% of the rule's
        n_in, n_out = W.shape
        assert W.std() == pytest.approx(numpy.sqrt(2 / n_in) if he else numpy.sqrt(2 / (n_in + n_out)), rel=0.03)
        assert abs(W.mean()) < 0.03 * W.std()
    assert not any(b.any() for b in model.biases)


def test_the_weights_are_the_seeds_normal_draws_times_the_rules_std_rounded_once():
    """Layer by layer, W = standard_normal((n_in, n_out)) of default_rng(seed) times sqrt(2/n_in) (He) or
    sqrt(2/(n_in + n_out)) (Glorot), rounded once to the model's dtype: the same bits for a seed, not only the same
    spread. (A std formed as sqrt(2)/sqrt(n_in), an ulp off, passed the test above.)"""
    model = MLP([3, 9, 6, 1], activation=["relu", "tanh"], dtype="float64", device="cpu", seed=11)
    rng = numpy.random.default_rng(11)  # (n_in 3 and n_in + n_out 15: where sqrt(2) / sqrt(n) is an ulp off)
    for W, std in zip(model.weights, [numpy.sqrt(2.0 / 3), numpy.sqrt(2.0 / (9 + 6)), numpy.sqrt(2.0 / (6 + 1))]):
        numpy.testing.assert_array_equal(W, rng.standard_normal(W.shape) * std)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-15), ("float32", 1e-6)])
def test_softplus_keeps_its_relative_accuracy_where_it_is_tiny(dtype, rtol):
    """softplus(z) = log(1 + e^z) is log1p(e^z), about e^z, to a few ulps for very negative z: log(1 + t) would
    round 1 + t first and lose e^z's digits below the ulp of 1 (an output of 0 from about z = -37 in float64)."""
    z = -numpy.linspace(0.5, 80, 160).astype(dtype)
    out = numpy.empty_like(z)
    ACTIVATIONS["softplus"].forward(numpy, z, out)
    want = [math.log1p(math.exp(v)) for v in z.astype(numpy.float64)]
    numpy.testing.assert_allclose(out, want, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype, rtol", [("float64", 4e-16), ("float32", 2.4e-7)])
def test_elu_keeps_its_relative_accuracy_near_zero(dtype, rtol):
    """elu(z) = e^z - 1 for z <= 0 is expm1(z), to an ulp or two of itself down to the smallest z: exp(z) - 1 rounds
    e^z to the ulp of 1 first (elu(-1e-10) a relative 8e-8 off in float64, 0 in float32). g'(z) = e^z needs no
    such care."""
    z = -numpy.logspace(-30, 0.5, 300).astype(dtype)
    out = numpy.empty_like(z)
    ACTIVATIONS["elu"].forward(numpy, z, out)
    numpy.testing.assert_allclose(out, [math.expm1(v) for v in z.astype(numpy.float64)], rtol=rtol, atol=0)
