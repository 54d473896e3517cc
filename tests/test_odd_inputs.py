"""Property-based and adversarial tests of the public API: unusual but legitimate inputs (memory layouts,
byte orders, dtypes, lists, memory maps, tiny and huge magnitudes) give the results of the plain array,
and illegitimate ones (NaN/inf, ragged lists, complex/str/object, 3-D, no rows) a clear error naming the
argument. Hypothesis runs few, derandomized examples (the "gpunn" profile, tests/conftest.py): the module
runs in a few seconds on the CPU.
"""
import numpy
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import gpunn

pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")  # ConvergenceWarning at max_iter=2

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _data(rows=24, features=3, outputs=2, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((rows, features))
    Y = numpy.stack([numpy.sin(X[:, 0]) + X[:, -1] * (k + 1) for k in range(outputs)], axis=1)
    return X, Y


@FEW
@given(k=st.integers(-80, 60), dtype=st.sampled_from(["float32", "float64"]),
       activation=st.sampled_from(["relu", "leaky_relu", "identity"]))
@example(k=-80, dtype="float32", activation="relu")
@example(k=60, dtype="float32", activation="identity")
def test_scores_and_losses_do_not_depend_on_the_datas_scale(k, dtype, activation):
    """A net with zero biases and a positively homogeneous activation predicts s * P for s * X, so with
    s = 2**k (exact in binary) its R² is the same and its loss s² times as large, at any magnitude the
    dtype holds (up to 2**60 in float32: beyond, the gradients X^T dZ overflow it). In float32 an error
    under about 1e-19 squared to 0 (R² read 1.0 for a model worse than the mean, a loss of 0; the
    squares are now formed in float64, as the CUDA kernels form theirs)."""
    X, Y = _data(20, 3, 2)
    s = 2.0 ** k
    model = gpunn.MLP([3, 8, 2], activation=activation, device="cpu", seed=0, dtype=dtype)
    ens = gpunn.Ensemble([3, 8, 2], 2, activation=activation, device="cpu", seed=0, dtype=dtype)
    for m in (model, ens):
        score, loss = numpy.asarray(m.score(X, Y)), numpy.asarray(m.loss(X, Y))
        numpy.testing.assert_allclose(m.score(X * s, Y * s), score, rtol=1e-12)
        numpy.testing.assert_array_equal(m.loss(X * s, Y * s), loss * s * s)
        numpy.testing.assert_array_equal(numpy.asarray(m.loss_and_gradients(X * s, Y * s)[0]),
                                         numpy.asarray(m.loss_and_gradients(X, Y)[0]) * s * s)
    P = model.predict(X * s).astype(numpy.float64)  # R² by hand, in float64 (the model subtracts in its dtype)
    T = (Y * s).astype(dtype).astype(numpy.float64)
    by_hand = numpy.mean(1 - ((T - P) ** 2).sum(0) / ((T - T.mean(0)) ** 2).sum(0))
    assert model.score(X * s, Y * s) == pytest.approx(by_hand, rel={"float32": 1e-6, "float64": 1e-12}[dtype])


def test_a_float32_fit_on_huge_targets_is_not_taken_for_diverged():
    """On the CPU a float32 fit on targets near 1e25 stopped with TrainingDiverged in epoch 1: the float32
    squares of its errors overflowed to inf (the GPU's kernels square in float64, and trained on)."""
    X, Y = _data(40, 3, 1)
    scale = 1e25
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=0)
    history = model.fit(X, Y * scale, epochs=2, batch_size=10, verbose=False, validation_data=(X, Y * scale))
    assert all(0 < loss < numpy.inf for loss in history["loss"] + history["val_loss"])
    assert history["val_r2"][-1] == pytest.approx(model.score(X, Y * scale), rel=1e-12)
    assert history["val_loss"][-1] == pytest.approx(model.loss(X, Y * scale), rel=1e-6)
