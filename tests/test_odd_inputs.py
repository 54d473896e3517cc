"""Property-based and adversarial tests of the public API: unusual but legitimate inputs (memory layouts,
byte orders, dtypes, lists, memory maps, tiny and huge magnitudes) give the results of the plain array,
and illegitimate ones (NaN/inf, ragged lists, complex/str/object, 3-D, no rows) a clear error naming the
argument. Hypothesis runs few, derandomized examples (the "gpunn" profile, tests/conftest.py): the module
runs in a few seconds on the CPU.
"""
import collections
import os
import pickle
import re

import numpy
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import gpunn
from gpunn.checks import NotFinite

pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")  # ConvergenceWarning at max_iter=2

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _data(rows=24, features=3, outputs=2, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((rows, features))
    Y = numpy.stack([numpy.sin(X[:, 0]) + X[:, -1] * (k + 1) for k in range(outputs)], axis=1)
    return X, Y


def _layout(A, kind, tmp_path=None):
    """The values of the 2-D float64 array A in another layout, byte order or container."""
    if kind == "C":
        return A
    if kind == "F":
        return numpy.asfortranarray(A)
    if kind == "row-strided":  # every other row of a larger array
        return numpy.repeat(A, 2, axis=0)[::2]
    if kind == "column-strided":
        return numpy.repeat(A, 2, axis=1)[:, ::2]
    if kind == "negative-strides":  # a reversed view of a reversed copy
        return numpy.ascontiguousarray(A[::-1, ::-1])[::-1, ::-1]
    if kind == "big-endian":
        return A.astype(">f8")
    if kind == "read-only":
        B = A.copy()
        B.flags.writeable = False
        return B
    if kind == "list":
        return A.tolist()
    if kind == "memmap":
        path = tmp_path / f"m{id(A)}.npy"
        numpy.save(path, A)
        return numpy.load(path, mmap_mode="r")
    raise AssertionError(kind)


LAYOUTS = ["F", "row-strided", "column-strided", "negative-strides", "big-endian", "read-only", "list", "memmap"]


def _fitted_mlp(X, Y, dtype="float32"):
    model = gpunn.MLP([numpy.shape(X)[1], 8, numpy.shape(Y)[1]], device="cpu", seed=1, dtype=dtype)
    model.fit(X, Y, epochs=2, batch_size=8, verbose=False, seed=2)
    return model


@pytest.mark.parametrize("kind", LAYOUTS)
def test_every_layout_of_the_same_values_gives_the_same_bits(kind, tmp_path):
    """fit, predict, score, loss, evaluate and loss_and_gradients of an MLP and an Ensemble, and an
    MLPRegressor's fit and predict, on X and Y in another layout equal those on C-ordered arrays bit for bit."""
    X, Y = _data()
    Xv, Yv = _layout(X, kind, tmp_path), _layout(Y, kind, tmp_path)
    plain, odd = _fitted_mlp(X, Y), _fitted_mlp(Xv, Yv)
    numpy.testing.assert_array_equal(odd.params, plain.params)
    numpy.testing.assert_array_equal(plain.predict(Xv), plain.predict(X))
    assert plain.score(Xv, Yv) == plain.score(X, Y) and plain.loss(Xv, Yv) == plain.loss(X, Y)
    assert plain.evaluate(Xv, Yv) == plain.evaluate(X, Y)
    (l1, dW1, db1), (l2, dW2, db2) = plain.loss_and_gradients(X, Y), plain.loss_and_gradients(Xv, Yv)
    assert l1 == l2
    for a, b in zip(dW1 + db1, dW2 + db2):
        numpy.testing.assert_array_equal(a, b)

    def ensemble(X, Y):
        ens = gpunn.Ensemble([3, 8, 2], 2, device="cpu", seed=1)
        ens.fit(X, Y, epochs=2, batch_size=8, verbose=False, seed=2)
        return ens

    ens = ensemble(X, Y)
    numpy.testing.assert_array_equal(ensemble(Xv, Yv).params, ens.params)
    numpy.testing.assert_array_equal(ens.predict(Xv), ens.predict(X))
    assert ens.score(Xv, Yv) == ens.score(X, Y)

    def regressor(X, y):
        return gpunn.MLPRegressor((8,), max_iter=2, random_state=0, device="cpu").fit(X, y)

    est = regressor(X, Y[:, 0])
    column = _layout(Y[:, :1], kind, tmp_path)  # y 1-D in that layout (a column is warned of, as scikit-learn's)
    yv = [row[0] for row in column] if kind == "list" else column[:, 0]
    numpy.testing.assert_array_equal(regressor(Xv, yv).predict(X), est.predict(X))
    numpy.testing.assert_array_equal(est.predict(Xv), est.predict(X))


@FEW
@given(rows=st.integers(1, 40), features=st.integers(1, 5), outputs=st.integers(1, 3),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_a_rows_prediction_does_not_depend_on_the_other_rows_of_the_batch(rows, features, outputs, dtype, seed):
    X, _ = _data(rows, features, outputs, seed)
    model = gpunn.MLP([features, 16, 16, outputs], activation="tanh", device="cpu", seed=seed, dtype=dtype)
    ens = gpunn.Ensemble([features, 16, outputs], 2, device="cpu", seed=seed, dtype=dtype)
    P, E = model.predict(X), ens.predict(X)
    tol = {"float32": 1e-5, "float64": 1e-12}[dtype]
    for i in range(rows):
        numpy.testing.assert_allclose(model.predict(X[i:i + 1])[0], P[i], rtol=tol, atol=tol)
        numpy.testing.assert_allclose(ens.predict(X[i:i + 1])[:, 0], E[:, i], rtol=tol, atol=tol)


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


@pytest.mark.parametrize("scale", [2.0 ** -80, 2.0 ** 70])
def test_the_metrics_functions_square_in_float64_too(scale):
    """gpunn.metrics.r2 and mse (also MLPRegressor.score without scikit-learn) squared float32 errors in
    float32: at 2**-80 they read R² 1.0 and an MSE of 0, at 2**70 inf, where every evaluation squares in float64."""
    from gpunn import metrics

    X, Y = _data(20, 3, 2)
    P = (Y + X[:, :2]).astype(numpy.float32)
    r2, mse = metrics.r2(numpy, P, Y.astype(numpy.float32)), metrics.mse(numpy, P, Y.astype(numpy.float32))
    P_s, Y_s = (P * scale).astype(numpy.float32), (Y * scale).astype(numpy.float32)
    assert metrics.r2(numpy, P_s, Y_s) == pytest.approx(r2, rel=1e-6) and r2 < 0.9
    assert metrics.mse(numpy, P_s, Y_s) == pytest.approx(mse * scale * scale, rel=1e-6)


def test_the_metrics_mae_sums_in_float64_as_val_mae_does():
    """gpunn.metrics.mae averaged float32 errors in a float32 sum, the one metric left so (mse and r2 sum in
    float64, as validation's val_mae does): 40 errors near 2**124 summed past float32's range to inf. (Over many
    rows a float32 sum also loses digits: ones added to it in order stop counting at 2**24.)"""
    from gpunn import metrics

    X, Y = _data(20, 3, 2)
    P, Y = (Y + X[:, :2]).astype(numpy.float32), Y.astype(numpy.float32)
    mae, scale = metrics.mae(numpy, P, Y), 2.0 ** 124
    assert metrics.mae(numpy, (P * scale).astype(numpy.float32), (Y * scale).astype(numpy.float32)) == pytest.approx(
        mae * scale, rel=1e-6)
    assert mae == pytest.approx(numpy.abs(P - Y).astype(numpy.float64).mean(), rel=1e-15)  # float32 errors, float64 sum



def test_evaluates_mae_sums_float32_errors_in_float64_as_the_metrics_function_does():
    """evaluate's mae, which is validation's val_mae (gpunn.metrics.error_sums), sums a float32 model's errors in
    float64: 40 errors near 2**124 summed in float32 reach inf, and evaluate refused the rows as overflowing."""
    model = gpunn.MLP([1, 1], device="cpu", seed=0)
    model.params[...] = 0  # predicts 0: the errors are the targets
    Y = (2.0 ** 124 * (1 + numpy.arange(40) / 40)).astype(numpy.float32)[:, None]
    mae = model.evaluate(numpy.zeros((40, 1), numpy.float32), Y)["mae"]
    assert mae == pytest.approx(Y.astype(numpy.float64).mean(), rel=1e-12)

def test_an_ensembles_training_loss_squares_in_float64():
    """EnsembleOps' per-member sums of squared errors (the training step's loss) square in float64: in float32,
    errors near 2**-80 square to 0 (mut9: the scale test above did not see it for an ensemble's loss_and_gradients)."""
    X, Y = _data(20, 3, 2)
    s = 2.0 ** -80
    ens = gpunn.Ensemble([3, 8, 2], 2, activation="relu", device="cpu", seed=0, dtype="float32")
    loss = numpy.asarray(ens.loss_and_gradients(X, Y)[0])
    scaled = numpy.asarray(ens.loss_and_gradients(X * s, Y * s)[0])
    assert loss.min() > 0
    numpy.testing.assert_allclose(scaled / (s * s), loss, rtol=1e-6)


def test_r2_of_float32_targets_far_from_zero_centres_them_on_a_float64_mean():
    """gpunn.metrics.r2's total sum of squares is taken about a float64 mean: targets near 1,000 with a spread of
    0.01 have a float32 mean up to half an ulp (3e-5) off, which moved R² by 4e-6 (mut9: no test saw it)."""
    from gpunn import metrics

    rng = numpy.random.default_rng(0)
    Y = (1000.0 + 0.01 * rng.standard_normal((500, 2))).astype(numpy.float32)
    P = (Y + 0.002 * rng.standard_normal((500, 2))).astype(numpy.float32)
    T, Q = Y.astype(numpy.float64), P.astype(numpy.float64)
    by_hand = numpy.mean(1 - ((T - Q) ** 2).sum(0) / ((T - T.mean(0)) ** 2).sum(0))
    assert metrics.r2(numpy, P, Y) == pytest.approx(by_hand, rel=1e-12)


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


ACTIVATIONS = ["identity", "relu", "sigmoid", "tanh", "leaky_relu", "softplus", "gelu", "silu", "elu"]


@FEW
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5), activation=st.sampled_from(ACTIVATIONS),
       output=st.sampled_from(ACTIVATIONS), bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       members=st.integers(0, 3), seed=st.integers(0, 2**20))
def test_save_and_load_round_trip_bit_for_bit(tmp_path, sizes, activation, output, bias, dtype, members, seed):
    """Any architecture, activation, bias, dtype, an MLP or an Ensemble of 1-3 members (``members`` 0: an
    MLP), with parameters not at their start."""
    make = (lambda: gpunn.MLP(sizes, activation, output, bias, dtype, device="cpu", seed=seed)) if not members else \
        (lambda: gpunn.Ensemble(sizes, members, activation, output, bias, dtype, device="cpu", seed=seed))
    model = make()
    rng = numpy.random.default_rng(seed)
    model.params[...] = rng.standard_normal(model.params.shape).astype(dtype)
    path = tmp_path / "m.npz"
    gpunn.save(path, model)
    loaded = gpunn.load(path, device="cpu")
    assert type(loaded) is type(model) and loaded.layer_sizes == model.layer_sizes and loaded.dtype == model.dtype
    assert [a.name for a in loaded.activations] == [a.name for a in model.activations] and loaded.bias == bias
    numpy.testing.assert_array_equal(loaded.params, model.params)
    X = rng.standard_normal((5, sizes[0]))
    numpy.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@FEW
@given(hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3), outputs=st.integers(1, 2),
       solver=st.sampled_from(["adam", "sgd"]), seed=st.integers(0, 2**20))
def test_a_pickled_mlpregressor_predicts_and_continues_bit_for_bit(hidden, outputs, solver, seed):
    X, Y = _data(30, 3, outputs, seed)
    y = Y[:, 0] if outputs == 1 else Y
    est = gpunn.MLPRegressor(tuple(hidden), solver=solver, max_iter=2, random_state=seed, device="cpu").fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    numpy.testing.assert_array_equal(copy.predict(X), est.predict(X))
    for a, b in zip(copy.coefs_ + copy.intercepts_, est.coefs_ + est.intercepts_):
        numpy.testing.assert_array_equal(a, b)
    numpy.testing.assert_array_equal(copy.partial_fit(X, y).predict(X), est.partial_fit(X, y).predict(X))


# ---- what is refused, and how --------------------------------------------------------------------------
@FEW
@given(rows=st.integers(1, 12), features=st.integers(1, 4), where=st.data(),
       bad=st.sampled_from([numpy.nan, numpy.inf, -numpy.inf, 1e300]), target=st.booleans())
def test_a_non_finite_value_is_reported_where_it_is(rows, features, where, bad, target):
    """A NaN or infinite value (or one that overflows float32) anywhere in X or Y: a ValueError naming the
    argument and the first such value's row and column, from fit, predict (X), score and loss_and_gradients."""
    X, Y = _data(rows, features, 2)
    A = Y if target else X
    row, col = where.draw(st.integers(0, A.shape[0] - 1)), where.draw(st.integers(0, A.shape[1] - 1))
    A[row, col] = bad
    name = "Y" if target else "X"
    expected = rf"^{name} contains 1 NaN or infinite value\(s\) \(first at row {row}, column {col}\)"
    model = gpunn.MLP([features, 4, 2], device="cpu", seed=0)
    calls = [lambda: model.fit(X, Y, epochs=1, verbose=False), lambda: model.score(X, Y),
             lambda: model.loss_and_gradients(X, Y), lambda: model.loss(X, Y)]
    if not target:
        calls.append(lambda: model.predict(X))
    for call in calls:
        with pytest.raises(ValueError, match=expected):
            call()


BAD_INPUTS = {
    "ragged list": ([[1.0, 2.0, 3.0], [1.0, 2.0]], ValueError, "could not be read as a numeric array"),
    "object array": (numpy.array([[1.0, "a", None]], dtype=object), TypeError, "must hold real numbers"),
    "complex": (numpy.ones((2, 3), complex), TypeError, "must hold real numbers; got dtype complex128"),
    "strings": (numpy.array([["1", "2", "3"]]), TypeError, "must hold real numbers"),
    "3-D": (numpy.ones((2, 2, 3)), ValueError, r"must be 2-D \(rows x columns\); got shape \(2, 2, 3\)"),
    "no rows": (numpy.ones((0, 3)), ValueError, r"is empty: shape \(0, 3\)"),
    "a scalar": (3.0, ValueError, "must be 2-D"),
    "None": (None, TypeError, "is None"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("make", [lambda: gpunn.MLP([3, 4, 1], device="cpu", seed=0),
                                  lambda: gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)], ids=["MLP", "Ensemble"])
def test_bad_inputs_are_refused_naming_the_argument(case, make):
    bad, error, message = BAD_INPUTS[case]
    model, X, Y = make(), numpy.ones((2, 3)), numpy.ones((2, 1))
    for call, name in [(lambda: model.predict(bad), "X"), (lambda: model.fit(bad, Y, epochs=1, verbose=False), "X"),
                       (lambda: model.score(X, bad), "Y"), (lambda: model.loss_and_gradients(bad, Y), "X"),
                       (lambda: model.fit(X, Y, epochs=1, verbose=False, validation_data=(bad, Y)), "X_val")]:
        if case == "3-D" and name == "Y":
            bad_y = numpy.ones((2, 2, 1))  # a 3-D Y of the model's width
            call = lambda: model.score(X, bad_y)  # noqa: E731
        with pytest.raises(error, match=rf"^{name} {message if case != '3-D' or name != 'Y' else 'must be 2-D'}"):
            call()


@pytest.mark.parametrize("pair", [tuple, list])
@pytest.mark.parametrize("make", [lambda: gpunn.MLP([3, 4, 1], device="cpu", seed=0),
                                  lambda: gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)], ids=["MLP", "Ensemble"])
def test_an_x_y_pair_passed_as_x_is_told_to_pass_them_apart(tmp_path, pair, make):
    """fit((X, Y)), as a Keras or PyTorch dataset holds them, said "X could not be read as a numeric array: setting an
    array element with a sequence. The requested array has an inhomogeneous shape after 2 dimensions..."."""
    model, X, Y = make(), numpy.ones((4, 3)), numpy.ones(4)
    says = rf"^X is a {pair.__name__} of two arrays, an \(X, Y\) pair .*, and Y is None: pass them apart, fit\(X, Y\)$"
    with pytest.raises(TypeError, match=says):
        model.fit(pair((X, Y)), epochs=1, verbose=False)
    model.fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "m.npz")])
    with pytest.raises(TypeError, match=says):
        gpunn.load_checkpoint(tmp_path / "m.npz").resume(pair((X, Y)), epochs=2, verbose=False)
    with pytest.raises(TypeError, match="^Y is None"):  # two rows of numbers, the targets forgotten: as before
        model.fit(pair((X[0], X[1])), epochs=1, verbose=False)
    assert not gpunn.data.is_source(pair((X, Y)))  # a question, not fit's refusal (audit38b p07)
    # Y given too, or three arrays (Keras's x, y, sample_weight): no "pair ... and Y is None" (audit38b p06, p10)
    for call in (lambda: model.fit(pair((X, Y)), Y, epochs=1, verbose=False),
                 lambda: model.fit(pair((X, Y, Y)), epochs=1, verbose=False)):
        with pytest.raises(ValueError, match="^X could not be read as a numeric array"):
            call()


@pytest.mark.parametrize("name", ["DataLoader", "TensorDataset"])
@pytest.mark.parametrize("make", [lambda: gpunn.MLP([3, 4, 1], device="cpu", seed=0),
                                  lambda: gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)], ids=["MLP", "Ensemble"])
def test_a_pytorch_dataloader_or_dataset_passed_as_x_is_told_what_fit_takes(make, name):
    """fit(loader), a PyTorch loop's DataLoader, said "X must be an array of numbers, got a DataLoader", and a
    TensorDataset NumPy's "setting an array element with a sequence ... inhomogeneous shape". A stand-in class of
    torch.utils.data's (no torch needed): fit takes the tensors; data.iterable takes a loader's batches."""
    def item(self, i):  # past the end an IndexError, as a Dataset's: without the refusal NumPy read it forever
        if i >= 4:
            raise IndexError(i)
        return numpy.ones(3), numpy.ones(1)

    stand_in = type(name, (), {"__module__": "torch.utils.data.dataset", "__len__": lambda self: 4,
                               "__getitem__": item})
    says = (r"fit cuts and shuffles the batches itself from arrays or tensors, fit\(X, Y, batch_size=64\) \(a "
            r"TensorDataset's are its \.tensors: fit\(\*dataset\.tensors, \.\.\.\); a DataLoader's rows are its "
            r"\.dataset\); gpunn\.data\.iterable\(loader\) trains on a DataLoader's \(X, Y\) batches in its order instead")
    with pytest.raises(TypeError, match=rf"^X is PyTorch's {name}: {says}$"):
        make().fit(stand_in(), epochs=1, verbose=False)
    # fit(loader, Y) (a loader of X's rows, Y beside it) said "X must be an array of numbers, got a DataLoader"
    with pytest.raises(TypeError, match=rf"^X is PyTorch's {name} and Y is given: {says}, given without Y: "
                                        r"fit\(gpunn\.data\.iterable\(loader\), epochs=\.\.\.\)$"):
        make().fit(stand_in(), numpy.ones((4, 1)), epochs=1, verbose=False)
    assert not gpunn.data.is_source(stand_in())  # a question, not fit's refusal (audit37d p3)
    loader = [(numpy.ones((2, 3)), numpy.ones((2, 1)))] * 2  # what a DataLoader yields: (X, Y) batches
    make().fit(gpunn.data.iterable(loader), epochs=1, verbose=False)


@pytest.mark.parametrize("name", ["DataLoader", "TensorDataset"])
def test_a_pytorch_dataloader_or_dataset_as_validation_data_or_predicts_x_says_where_its_tensors_are(name):
    """validation_data=loader, a PyTorch loop's held-out loader, said "validation_data must be a pair (X_val, Y_val)"
    (with a source as X: "... or a data source"); predict(loader) "X must be an array of numbers, got a
    DataLoader", and score(X, loader) the same of Y, naming neither the loader nor where its tensors are. A stand-in
    class of torch.utils.data's, as above."""
    stand_in = type(name, (), {"__module__": "torch.utils.data.dataset", "__len__": lambda self: 2,
                               "__getitem__": lambda self, i: (numpy.ones(3), numpy.ones(1))})
    X, Y = numpy.ones((4, 3)), numpy.ones((4, 1))
    model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
    pair = (rf"^validation_data is PyTorch's {name}: pass the held-out arrays or tensors as a pair, "
            r"validation_data=\(X_val, Y_val\): dataset.tensors of a TensorDataset, loader.dataset.tensors of a "
            r"DataLoader over one$")
    with pytest.raises(TypeError, match=pair):
        model.fit(X, Y, epochs=1, verbose=False, validation_data=stand_in())
    with pytest.raises(TypeError, match=pair):
        model.fit(gpunn.data.iterable([(X, Y)]), epochs=1, verbose=False, validation_data=stand_in())
    for call, which, index in ((lambda: model.predict(stand_in()), "X", 0), (lambda: model.score(X, stand_in()), "Y", 1),
                               (lambda: model.evaluate(stand_in(), Y), "X", 0)):
        with pytest.raises(TypeError, match=rf"^{which} must be an array of numbers, got PyTorch's {name}: pass the "
                                            rf"tensor, dataset.tensors\[{index}\] of a TensorDataset, "
                                            rf"loader.dataset.tensors\[{index}\] of a DataLoader over one$"):
            call()


# ---- files ---------------------------------------------------------------------------------------------
def _csv_text(X, Y, header=("a", "b", "c", "y")):
    lines = [",".join(header)] + [",".join(repr(float(v)) for v in [*x, *y]) for x, y in zip(X, Y)]
    return "\n".join(lines) + "\n"


CSV_VARIANTS = {
    "quoted header": lambda t: t.replace("a,b,c,y", '"a","b","c","y"', 1),
    "byte-order mark": lambda t: "\ufeff" + t,
    "CRLF": lambda t: t.replace("\n", "\r\n"),
    "CR": lambda t: t.replace("\n", "\r"),
    "blank lines": lambda t: t.replace("\n", "\n\n"),
    "no last line end": lambda t: t[:-1],
    "quoted numbers": lambda t: t.split("\n", 1)[0] + "\n" + "\n".join(
        ",".join(f'"{v}"' for v in line.split(",")) if line else line for line in t.split("\n", 1)[1].split("\n")),
    "BOM, CRLF and quotes": lambda t: "\ufeff" + t.replace("a,b,c,y", '"a","b","c","y"', 1).replace("\n", "\r\n"),
}


@pytest.mark.parametrize("variant", sorted(CSV_VARIANTS))
def test_a_csv_files_spelling_does_not_change_its_rows(tmp_path, variant):
    """Quoted headers, a UTF-8 byte-order mark, CRLF or CR line ends, blank lines, quoted numbers: the
    source's batches and gpunn predict's streamed predictions are the plain file's."""
    pytest.importorskip("pyarrow")
    from gpunn.data.files import predict_file

    X, Y = _data(50, 3, 1)
    plain = _csv_text(X, Y)
    (tmp_path / "plain.csv").write_text(plain, encoding="utf-8", newline="")
    (tmp_path / "odd.csv").write_text(CSV_VARIANTS[variant](plain), encoding="utf-8", newline="")

    def rows(name):  # in file order (chunks are cut by bytes, so the spellings' shuffles differ)
        source = gpunn.data.csv(tmp_path / name, "y", block_size=256, shuffle=False, device="cpu", dtype="float64")
        assert source.feature_names == ["a", "b", "c"] and source.rows == 50
        pieces = [(numpy.asarray(a), numpy.asarray(b)) for a, b in source.batches(0, 16)]
        return numpy.concatenate([p[0] for p in pieces]), numpy.concatenate([p[1] for p in pieces])

    for got in rows("plain.csv"), rows("odd.csv"):
        numpy.testing.assert_array_equal(got[0], X)
        numpy.testing.assert_array_equal(got[1], Y)
    model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
    for name in ("plain", "odd"):
        predict_file(model, tmp_path / f"{name}.csv", tmp_path / f"{name}.npy", features=["a", "b", "c"])
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "odd.npy"), numpy.load(tmp_path / "plain.npy"))


@pytest.mark.parametrize("header", [("feat a", "feat b", "feat c", "target y"), ("α", "β", "γ", "ŷ")])
def test_csv_columns_named_with_spaces_or_unicode_are_picked_by_name(tmp_path, header):
    pytest.importorskip("pyarrow")
    X, Y = _data(20, 3, 1)
    (tmp_path / "t.csv").write_text(_csv_text(X, Y, header), encoding="utf-8")
    source = gpunn.data.csv(tmp_path / "t.csv", header[-1], shuffle=False, device="cpu", dtype="float64")
    assert source.feature_names == list(header[:3]) and source.target_names == [header[-1]]
    got = [(numpy.asarray(a), numpy.asarray(b)) for a, b in source.batches(0, 20)]
    numpy.testing.assert_array_equal(numpy.concatenate([g[0] for g in got]), X)
    numpy.testing.assert_array_equal(numpy.concatenate([g[1] for g in got]), Y)


@pytest.mark.parametrize("items, message", [
    ([numpy.ones((4, 3))], r"batch 1 \(epoch 1\) of the iterable must be an \(X, Y\) pair; got an array of shape \(4, 3\)"),
    ([(numpy.ones((4, 3)), numpy.ones(4), numpy.ones(4))], r"batch 1 .* got a tuple of 3"),
    ([None], r"batch 1 \(epoch 1\) of the iterable must be an \(X, Y\) pair; got None"),
    ([{"X": 1, "Y": 2}], r"batch 1 .* got a dict of 2"),
    ([(numpy.ones(4), numpy.ones(4))], r"^X of batch 1 \(epoch 1\) must be 2-D \(rows x columns\); got shape \(4,\)"),
    ([(numpy.ones((1, 4, 3)), numpy.ones((1, 4)))], r"^X of batch 1 \(epoch 1\) must be 2-D .*got shape \(1, 4, 3\)"),
    ([(numpy.ones((4, 3)), numpy.ones((4, 1, 1)))], r"^Y of batch 1 \(epoch 1\) must be 2-D .*got shape \(4, 1, 1\)"),
])
def test_an_iterable_of_things_that_are_not_pairs_of_matrices_is_refused_naming_the_batch(items, message):
    """Python's "too many values to unpack", "cannot unpack non-iterable NoneType" or "tuple index out of range"
    came out of gpunn.data.iterable, naming neither the batch nor what it should be, and a 3-D X was read as
    one of shape[1] features ("gives 4 features ... the model takes 3")."""
    with pytest.raises((ValueError, TypeError), match=message):
        gpunn.MLP([3, 2, 1], device="cpu", seed=0).fit(gpunn.data.iterable(items), epochs=1, verbose=False)
    if "pair" in message:  # with its sizes given, the same from the training pass
        source = gpunn.data.iterable(items, rows=4, n_features=3, n_outputs=1)
        with pytest.raises(gpunn.data.DataError, match=message):
            gpunn.MLP([3, 2, 1], device="cpu", seed=0).fit(source, epochs=1, verbose=False)
    if "got shape (4,)" in message.replace("\\", ""):  # the hint names the variable, not "X of batch 1.reshape"
        source = gpunn.data.iterable(items, rows=4, n_features=3, n_outputs=1)
        with pytest.raises(ValueError, match=r"\(use X\.reshape\(-1, 3\) for rows of 3 features\)$"):
            gpunn.MLP([3, 2, 1], device="cpu", seed=0).fit(source, epochs=1, verbose=False)


def test_save_takes_a_bytes_path_and_refuses_what_is_not_a_model_by_name(tmp_path):
    """gpunn.save(b"m.npz", model) failed with "startswith first arg must be bytes", and gpunn.save(path, X) with
    "'numpy.ndarray' object has no attribute 'layer_sizes'". An MLPRegressor unpickled where its device is not usable
    raised DeviceError there, as the refusal's hint built its network to see whether it had one."""
    model = gpunn.MLP([2, 3, 1], device="cpu", seed=0)
    gpunn.save(bytes(tmp_path / "m.npz"), model)
    numpy.testing.assert_array_equal(gpunn.load(tmp_path / "m.npz", device="cpu").params, model.params)
    for thing, name in [(numpy.zeros(3), "ndarray"), (None, "NoneType"), (model.weights, re.escape(
            "model.weights (the model saves its weights with its architecture)"))]:  # (not ParamList, gpunn's class)
        with pytest.raises(TypeError, match=rf"model must be a gpunn.MLP or gpunn.Ensemble, got {name}$"):
            gpunn.save(tmp_path / "x.npz", thing)
    est = gpunn.MLPRegressor((3,), max_iter=1, device="cpu").fit(numpy.ones((4, 2)), numpy.ones(4))
    unbuilt = pickle.loads(pickle.dumps(est.set_params(device="cuda:99")))  # as unpickled where no GPU is usable
    for est in (est, unbuilt):  # the second raised DeviceError ("choose a device"): save built its model_ to look
        with pytest.raises(TypeError, match=r"got MLPRegressor \(the network is its model_; the estimator itself "
                                            r"pickles\)"):
            gpunn.save(tmp_path / "x.npz", est)
    assert not (tmp_path / "x.npz").exists()


def test_save_and_a_checkpoint_writer_refuse_to_replace_a_file_that_is_not_a_checkpoint(tmp_path):
    """gpunn.save("data.csv", model) replaced the user's CSV file without a word (gpunn train --save refuses it);
    a ModelCheckpoint on it did so at the first epoch's end. A checkpoint, and an empty file (a NamedTemporaryFile
    made to be written), are replaced."""
    import tempfile

    model = gpunn.MLP([2, 3, 1], device="cpu", seed=0)
    X = numpy.ones((8, 2))
    (tmp_path / "data.csv").write_text("a,b,y\n1,2,3\n")
    (tmp_path / "latin.csv").write_bytes(b"caf\xe9,y\n1,2\n")  # Excel's Latin-1 CSV: text too
    numpy.save(tmp_path / "X.npy", X)
    for name, what in (("data.csv", "text"), ("latin.csv", "text"), ("X.npy", "a .npy array")):
        before = (tmp_path / name).read_bytes()
        refusal = rf"{name} exists and is not a gpunn checkpoint \({what}\); refusing to overwrite it: choose another"
        with pytest.raises(FileExistsError, match=refusal):
            gpunn.save(tmp_path / name, model)
        with pytest.raises(FileExistsError, match=refusal):
            model.fit(X, X[:, :1], epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / name)])
        assert (tmp_path / name).read_bytes() == before
    assert model.params.tolist() == gpunn.MLP([2, 3, 1], device="cpu", seed=0).params.tolist()  # refused untrained
    numpy.savez(tmp_path / "arrays.npz", X=X, Y=X[:, :1])  # a zip, but someone's arrays (it was taken as a checkpoint)
    with pytest.raises(FileExistsError, match=r"arrays.npz exists and is not a gpunn checkpoint \(an .npz archive of "
                                              r"the arrays X, Y\); refusing"):
        gpunn.save(tmp_path / "arrays.npz", model)
    assert sorted(numpy.load(tmp_path / "arrays.npz").files) == ["X", "Y"]
    gpunn.save(tmp_path / "m.npz", model)
    gpunn.save(tmp_path / "m.npz", model)  # a checkpoint is replaced
    with tempfile.NamedTemporaryFile(suffix=".npz", dir=tmp_path) as empty:
        gpunn.save(empty.name, model)
        numpy.testing.assert_array_equal(gpunn.load(empty.name, device="cpu").params, model.params)


@pytest.mark.parametrize("target", [False, True])
def test_a_column_too_spread_for_float64_statistics_is_refused_by_standardize(tmp_path, target):
    """Values near ±1e200 are finite, but their squared deviations overflow float64: the column's spread came
    out NaN, it was given scale 1, and training stopped with TrainingDiverged ("standardize the targets"). Of two
    such feature columns the first is named."""
    X, Y = _data(40, 3, 1)
    if target:
        Y[:, -1] *= 1e200
    else:
        X[:, 1:] *= 1e200
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)
    what = "targets column 0" if target else "features column 1"
    with pytest.raises(gpunn.data.DataError, match=rf"^{what} cannot be standardized: its spread overflows float64"):
        source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", standardize=True)
        gpunn.MLP([3, 4, 1], device="cpu", dtype="float64", seed=0).fit(source, epochs=1, verbose=False)


@pytest.mark.parametrize("target", ["y", "a"])
def test_a_csv_header_that_names_two_columns_alike_is_refused_naming_them(tmp_path, target):
    """pyarrow's lookup by name failed with "KeyError: 'Column a does not exist in schema'" for a column named
    twice; a file whose repeated name is left out (features named) is read."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("a,a,b,y\n1,2,3,4\n5,6,7,8\n")
    with pytest.raises(gpunn.data.DataError, match=r"t\.csv: the header names columns 1 and 2 both 'a'; rename one"):
        gpunn.data.csv(tmp_path / "t.csv", target)
    source = gpunn.data.csv(tmp_path / "t.csv", "y", features=["b"], shuffle=False, device="cpu", dtype="float64")
    assert [numpy.asarray(X).tolist() for X, _ in source.batches(0, 2)] == [[[3.0], [7.0]]]


def test_a_csv_file_in_windows_1252_is_said_to_be_text_that_is_not_utf8(tmp_path, capsys):
    """Excel's "CSV (Comma delimited)" writes Windows-1252: with an accented header, gpunn predict said "is neither
    a .npy array nor a CSV file", gpunn.data.csv "not a CSV file (binary, not text)", and the streamed predict
    pyarrow's "'utf-8' codec can't decode byte 0xe9"."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import main

    path = tmp_path / "prices.csv"
    path.write_bytes("café,thé,prix\r\n1,2,3\r\n4,5,6\r\n".encode("cp1252"))
    with pytest.raises(gpunn.data.DataError, match=r"prices\.csv: text, but not UTF-8 \(Windows-1252 or Latin-1"):
        gpunn.data.csv(path, "prix")
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([3, 2, 1], device="cpu", seed=0))
    for extra in ([], ["--features", "café,thé,prix"]):  # read whole, and streamed
        assert main(["predict", str(tmp_path / "m.npz"), str(path), str(tmp_path / "p.npy"), *extra]) == 2
        assert re.search(r"prices\.csv(:| is) text, but not UTF-8 \(Windows-1252", capsys.readouterr().err)
    path.write_bytes(b"\x00\x01binary" * 10)  # binary, not "text"
    assert main(["predict", str(tmp_path / "m.npz"), str(path), str(tmp_path / "p.npy")]) == 2
    assert "prices.csv: not a CSV file (binary, not text)" in capsys.readouterr().err
    path.write_bytes(b"\x01\x02\xff\xfebinary" * 10)  # no NUL, not UTF-8: control bytes make it binary, not 8-bit
    assert main(["predict", str(tmp_path / "m.npz"), str(path), str(tmp_path / "p.npy")]) == 2  # text (mut9)
    assert "prices.csv: not a CSV file (binary, not text)" in capsys.readouterr().err


@FEW
@given(rows=st.integers(1, 40), eol=st.sampled_from(["\n", "\r\n", "\r"]), blank=st.integers(0, 2), bom=st.booleans(),
       quote=st.booleans(), block=st.integers(8, 300), seed=st.integers(0, 1000))
@example(rows=1, eol="\n", blank=0, bom=False, quote=False, block=8, seed=2)  # a row over twice the header's length
def test_a_csv_source_reads_every_row_once_whatever_its_spelling_and_block_size(tmp_path, rows, eol, blank, bom, quote,
                                                                                block, seed):
    """Chunks are cut at line ends of blocks of ``block`` bytes: CRLF or CR ends, blank lines, quoted numbers and a
    byte-order mark lose or repeat no row. The schema was inferred from a block of twice the header's length, which
    failed ("straddling object straddles two block boundaries") when the first row was longer: a small file of a
    few rows of 1,000 numbers with the default block size."""
    pytest.importorskip("pyarrow")
    rng = numpy.random.default_rng(seed)
    X, Y = numpy.round(rng.standard_normal((rows, 2)) * 100, 3), numpy.round(rng.standard_normal((rows, 1)), 3)
    cell = (lambda v: f'"{v!r}"') if quote else repr
    lines = ["a,b,y"] + [",".join(cell(float(v)) for v in [*x, *y]) for x, y in zip(X, Y)]
    text = ("\ufeff" if bom else "") + (eol * (1 + blank)).join(lines) + eol
    (tmp_path / "t.csv").write_text(text, encoding="utf-8", newline="")
    source = gpunn.data.csv(tmp_path / "t.csv", "y", block_size=block, shuffle=False, device="cpu", dtype="float64")
    pieces = [(numpy.asarray(a), numpy.asarray(b)) for a, b in source.batches(0, 7)]
    assert source.rows == rows
    numpy.testing.assert_array_equal(numpy.concatenate([p[0] for p in pieces]), X)
    numpy.testing.assert_array_equal(numpy.concatenate([p[1] for p in pieces]), Y)


def test_a_small_wide_csv_file_is_read_with_the_default_block_size(tmp_path):
    pytest.importorskip("pyarrow")
    X = numpy.random.default_rng(0).standard_normal((5, 1000))  # rows of about 20 kB under a 5 kB header
    header = ",".join(f"x{i}" for i in range(999)) + ",y"
    for blank in ("", "\n\n"):  # (the types from the first row that is not blank: mut9)
        (tmp_path / "w.csv").write_text(header + "\n" + blank + "\n".join(",".join(map(repr, map(float, r))) for r in X)
                                        + "\n")
        source = gpunn.data.csv(tmp_path / "w.csv", "y", shuffle=False, device="cpu", dtype="float64")
        got = numpy.concatenate([numpy.asarray(a) for a, _ in source.batches(0, 5)])
        numpy.testing.assert_array_equal(got, X[:, :999])


def test_a_checkpoint_callback_writes_to_a_bytes_path(tmp_path):
    """ModelCheckpoint(b"run.npz") trained its first epoch, then failed writing it with "startswith first arg must
    be bytes" (0e7bea1 had mended gpunn.save alone; atomic_write, which every writer uses, decodes the name)."""
    X, Y = _data(20, 3, 1)
    path = bytes(tmp_path / "run.npz")
    gpunn.MLP([3, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    resumed = gpunn.load_checkpoint(path, device="cpu")
    assert resumed.resume(X, Y, epochs=3, verbose=False)["epoch"] == [1, 2, 3]


def test_saving_to_a_directory_or_an_empty_name_says_to_give_a_file_name_and_writes_nothing(tmp_path):
    """gpunn.save(directory) wrote the whole checkpoint to a temp file, then failed renaming it over the directory:
    "[Errno 21] cannot write DIR: Is a directory"; a name ending in / said "Not a directory" and "" said "No such
    file or directory". Each is refused before the write now, saying to give a file name, as --save's refusal says
    (every atomic write: a config's, a report's)."""
    from gpunn.atomic import atomic_write

    model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
    (tmp_path / "runs").mkdir()
    for path, error, words in ((tmp_path / "runs", IsADirectoryError, "it is a directory"),
                               (f"{tmp_path}/runs/", IsADirectoryError, "it is a directory"),
                               (f"{tmp_path}/new/", IsADirectoryError, "it names a directory (it ends in /)"),
                               ("", FileNotFoundError, "the name is empty")):
        shown = "''" if path == "" else path
        for write in (lambda: gpunn.save(path, model), lambda: atomic_write(path, lambda fh: fh.write(b"x"))):
            with pytest.raises(error) as refused:
                write()
            assert str(refused.value).endswith(f"] cannot write {shown}: {words}; give a file name")
    assert sorted(os.listdir(tmp_path)) == ["runs"] and os.listdir(tmp_path / "runs") == []  # no temp file left


def test_an_object_array_of_numbers_is_read_as_numbers_and_a_generator_is_refused_by_name():
    """An object array (or list) of Python or NumPy numbers, which scikit-learn reads as float64, was refused as
    "strings or other Python objects"; a generator or a set got the same message, now "must be an array of
    numbers, got a generator"."""
    from fractions import Fraction

    X, Y = _data(12, 3, 1)
    model, ens = _fitted_mlp(X, Y), gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)
    mixed = X.astype(object)
    mixed[0, 0], mixed[1, 1], mixed[2, 2] = Fraction(1, 4), numpy.float32(2.5), 3  # the float64 array's values
    X[0, 0], X[1, 1], X[2, 2] = 0.25, 2.5, 3.0
    numpy.testing.assert_array_equal(model.predict(mixed), model.predict(X))
    numpy.testing.assert_array_equal(ens.predict(mixed.tolist()), ens.predict(X))
    assert model.score(X, Y.astype(object)) == model.score(X, Y)
    for thing, name in [((row for row in X), "generator"), ({1.0, 2.0}, "set")]:
        with pytest.raises(TypeError, match=rf"^X must be an array of numbers, got a {name}$"):
            model.predict(thing)


class _AttrDict(dict):
    """An attribute dict, as many configs and batch records are: its __getattr__ raises KeyError for a name it lacks."""

    def __getattr__(self, name):
        return self[name]


def test_an_attribute_dict_as_x_or_y_is_refused_as_no_array_not_by_its_keyerror():
    """fit, predict, score and an Ensemble's fit given an attribute dict raised its ``KeyError: 'rows'`` (hasattr, in
    the check for a data source, catches AttributeError alone), and past that ``KeyError: 'columns'``: now the
    refusal a dict gets. A source written so that lacks a member is told which, as one lacking it otherwise is; a
    member that raises KeyError itself (a property) still raises it."""
    X, Y = _data(12, 3, 1)
    model = _fitted_mlp(X, Y)
    odd = _AttrDict(a=X)
    for call in (lambda: model.fit(odd, Y, epochs=1, verbose=False), lambda: model.fit(odd, epochs=1, verbose=False),
                 lambda: model.predict(odd), lambda: model.score(odd, Y),
                 lambda: gpunn.Ensemble([3, 4, 1], 2, device="cpu").fit(odd, Y, epochs=1, verbose=False)):
        with pytest.raises(TypeError, match=r"^X must be an array of numbers, got an _AttrDict$"):
            call()
    with pytest.raises(TypeError, match=r"^Y must be an array of numbers, got an _AttrDict$"):
        model.evaluate(X, _AttrDict(y=Y))
    with pytest.raises(TypeError, match=r"^X_val must be an array of numbers, got an _AttrDict$"):
        model.fit(X, Y, epochs=1, verbose=False, validation_data=(odd, Y))
    assert not gpunn.data.is_source(odd)

    source = gpunn.data.synthetic("teacher", rows=100, n_features=3, seed=1, device="cpu")
    members = {name: getattr(source, name) for name in ("n_features", "n_outputs", "resumable", "batches", "config")}

    class Lacking:  # every member but rows, through a __getattr__ that raises KeyError
        def __getattr__(self, name):
            return members[name]

    with pytest.raises(TypeError, match=r"^X \(Lacking\) has a batches method but lacks rows, so it is no data source"):
        model.fit(Lacking(), epochs=1, verbose=False)

    class Broken(Lacking):
        @property
        def rows(self):
            raise KeyError("the file's row count")

    with pytest.raises(KeyError, match="the file's row count"):
        model.fit(Broken(), epochs=1, verbose=False)


@pytest.mark.parametrize("odd, said", [(_AttrDict(a=1), "an _AttrDict"), ({1, 2}, "a set"), (object(), "an object"),
                                       (collections.UserDict(), "a UserDict")],
                         ids=["attrdict", "set", "object", "userdict"])  # (an id read _AttrDict's __name__: KeyError)
def test_a_refused_type_takes_the_article_it_is_read_with(odd, said):
    """"got a {type}" read "got a _AttrDict", "got a object" before a vowel: the article follows the name's first
    letter (after underscores), "a" before a U ("a UserDict", as "a user")."""
    with pytest.raises(TypeError, match=rf"^X must be an array of numbers, got {said}$"):
        gpunn.MLP([3, 1], seed=0, device="cpu").predict(odd)
    assert gpunn.hints.a_type(gpunn.MLP([3, 1], seed=0, device="cpu")) == "an MLP"  # an initialism, said "em-el-pee"
    assert gpunn.hints.a_type(numpy.zeros(2)) == "an ndarray"  # "en-dee-array": gpunn.save(X, path) said "a ndarray"
    assert [gpunn.hints.a_type(v) for v in (numpy.ndindex(2), numpy.nditer(numpy.zeros(2)), numpy.int64(1),
                                            numpy.uint8(1), numpy.float32(1))] == [
        "an ndindex", "an nditer", "an int64", "a uint8", "a float32"]
    with pytest.raises(TypeError, match=r"path must be a file name, got an Ensemble \(the arguments go the other way"):
        gpunn.save(gpunn.Ensemble([3, 1], n_models=2, seed=0, device="cpu"), "m.npz")


def test_none_among_numbers_is_refused_as_a_missing_value():
    """fit([[1, None]] * 5) said "X must hold real numbers; got dtype object (strings or other Python objects:
    encode them as numbers first)": a None is a missing value, refused as one, a ValueError as a NaN (or a
    DataFrame's None, which reaches the checks as NaN) is; None among strings keeps the strings' refusal."""
    X, Y = _data(12, 3, 1)
    model = _fitted_mlp(X, Y)
    holes = X.astype(object)
    holes[2, 1] = holes[5, 0] = None
    with pytest.raises(ValueError, match=r"^X holds 2 None value\(s\) \(missing values\?\), first at row 2, column 1; "
                                         r"clean or impute them first$"):
        model.predict(holes.tolist())
    with pytest.raises(ValueError, match=r"^Y holds 1 None value\(s\) \(missing values\?\), first at row 3; "):
        model.fit(X, [None if i == 3 else y for i, y in enumerate(Y[:, 0].tolist())], epochs=1, verbose=False)
    holes[0, 0] = "a"
    with pytest.raises(TypeError, match="strings or other Python objects"):
        model.predict(holes)


def test_a_validation_share_of_one_row_says_one_row():
    """It said "validation_fraction=0.1 of 1 rows leaves no rows to train on" (gpunn.fit and MLPRegressor)."""
    X, Y = _data(1, 3, 1)
    with pytest.raises(ValueError, match=r"^validation_fraction=0.1 of 1 row leaves no rows to train on$"):
        gpunn.MLP([3, 1], device="cpu").fit(X, Y, epochs=1, validation_fraction=0.1, verbose=False)
    with pytest.raises(ValueError, match=r"^validation_fraction=0.1 of 1 row leaves no rows to train on$"):
        gpunn.MLPRegressor(early_stopping=True, device="cpu").fit(X, Y[:, 0])


def test_a_masked_arrays_masked_entries_are_refused_as_missing_values():
    """numpy.ma.masked_equal(X, -999), a sentinel marked missing: the fit read the data beneath the mask (-999)
    without a word. Masked entries are refused as missing values, as a None is; an array with none masked is read
    as its data."""
    X, Y = _data(12, 3, 1)
    model = _fitted_mlp(X, Y)
    holes = X.copy()
    holes[4, 2] = holes[7, 0] = -999.0
    masked = numpy.ma.masked_equal(holes, -999.0)
    with pytest.raises(ValueError, match=r"^X holds 2 masked value\(s\) \(missing values\), first at row 4, column 2: "
                                         r"a masked array's data beneath its mask would be read; clean or impute them "
                                         r"first \(X.filled\(value\), or drop those rows\)$"):
        model.fit(masked, Y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"^Y holds 1 masked value\(s\) \(missing values\), first at row 3: "):
        model.score(X, numpy.ma.masked_array(Y[:, 0], mask=numpy.arange(12) == 3))
    numpy.testing.assert_array_equal(model.predict(numpy.ma.masked_array(X)), model.predict(X))


def test_a_checkpoint_writer_refuses_a_path_it_cannot_write_before_training(tmp_path):
    """ModelCheckpoint("") was taken, as were a directory and a file in a missing directory: each failed at the
    first save, after an epoch's work. Now "" as it is made, the others as the fit begins, untrained, in the words
    of gpunn train --save (preflight.check_output)."""
    model = gpunn.MLP([2, 3, 1], device="cpu", seed=0)
    X = numpy.ones((8, 2))
    with pytest.raises(ValueError, match=r"^ModelCheckpoint's path is empty; name a file to write \(run.npz\)$"):
        gpunn.ModelCheckpoint("")
    for path, words in ((tmp_path, f"{tmp_path} is a directory; give a file name"),
                        (f"{tmp_path}/new/", f"{tmp_path}/new/ names a directory (it ends in /); give a file name"),
                        (tmp_path / "no" / "run.npz", f"{tmp_path / 'no' / 'run.npz'}: directory {tmp_path / 'no'} "
                                                      "does not exist")):
        with pytest.raises(ValueError, match="^" + re.escape("ModelCheckpoint's path " + words) + "$"):
            model.fit(X, X[:, :1], epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    assert model.params.tolist() == gpunn.MLP([2, 3, 1], device="cpu", seed=0).params.tolist()
    model.fit(X, X[:, :1], epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "run.npz")])
    assert gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params.tolist() == model.params.tolist()
    with pytest.raises(ValueError, match=r"^checkpoint='' names no file: pass the path to write the resumed run to"):
        gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").resume(X, X[:, :1], epochs=2, checkpoint="",
                                                                         verbose=False)


@pytest.mark.parametrize("path, field", [("ck-{epoch:02d}.npz", "{epoch:02d}"), ("best-{val_loss:.2f}.npz",
                                                                                 "{val_loss:.2f}"),
                                         ("{run}-{batch}.npz", "{batch}")])
def test_a_checkpoint_path_with_the_epoch_field_kerass_fills_in_is_refused_saying_how_to_keep_each_epoch(
        tmp_path, path, field):
    """ModelCheckpoint("ck-{epoch:02d}.npz"), Keras's filepath, wrote one file of that very name, over and over,
    where Keras writes one per epoch. Refused as it is made, with the callback that keeps each epoch's model; a
    brace that names no log (a directory "{run}") or a lone brace is a name, as before; {batch} after {run} is
    found."""
    with pytest.raises(ValueError, match="^" + re.escape(f"ModelCheckpoint's path {str(tmp_path / path)!r} holds "
                                                         f"{field}, a field Keras's ModelCheckpoint fills in; gpunn's "
                                                         "writes one file, replaced at each save, which the run "
                                                         "resumes from: name one (run.npz). To keep each epoch's "
                                                         "model too")):
        gpunn.ModelCheckpoint(tmp_path / path)

    class SaveEach(gpunn.Callback):  # the callback the message shows
        def on_epoch_end(self, trainer, epoch, logs):
            gpunn.save(tmp_path / f"model-{epoch + 1:02d}.npz", trainer.model)

    (tmp_path / "{run}").mkdir()
    model, X = gpunn.MLP([2, 3, 1], device="cpu", seed=0), numpy.ones((8, 2))
    model.fit(X, X[:, :1], epochs=2, verbose=False,
              callbacks=[SaveEach(), gpunn.ModelCheckpoint(tmp_path / "{run}" / "a.npz"),
                         gpunn.ModelCheckpoint(tmp_path / "b{.npz")])  # (a lone brace: no field, a name)
    assert gpunn.load(tmp_path / "model-02.npz").params.tolist() == model.params.tolist()
    assert (tmp_path / "model-01.npz").exists() and (tmp_path / "{run}" / "a.npz").exists()
    assert (tmp_path / "b{.npz").exists()


def test_predict_converts_a_memmap_a_chunk_at_a_time_to_the_same_bits_and_the_same_refusal(tmp_path, monkeypatch):
    """model.predict of an np.memmap (or any array of more rows than a chunk) converted the whole of it at once
    (as_matrix to the model's dtype): a float64 memmap of 1M x 16 took its whole size in host memory. Now each
    chunk of PREDICT_CHUNK_ROWS rows is converted as it is predicted: no conversion of more rows than a chunk, the
    predictions those of the chunks predicted one by one (as the whole read predicted them), with and without a
    standardizer, and a value not finite refused in the whole read's words (its row in X, the count over X)."""
    from gpunn import checks, model as model_module

    rng = numpy.random.default_rng(3)
    values = rng.standard_normal((5000, 4)) * 50
    numpy.save(tmp_path / "x.npy", values)
    X = numpy.load(tmp_path / "x.npy", mmap_mode="r")
    plain = gpunn.MLP([4, 8, 2], seed=0, device="cpu")
    scaled = gpunn.MLP([4, 8, 2], seed=0, device="cpu")
    scaled.fit(values[:400], values[:400, :2] * 3 + 1e3, epochs=1, standardize=True, verbose=False)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", 1000)
    converted = []
    as_matrix = model_module.as_matrix

    def counting(data, *args, **kwargs):
        converted.append(len(data))
        return as_matrix(data, *args, **kwargs)

    for model in (plain, scaled):
        chunks = numpy.concatenate([model.predict(X[i:i + 1000]) for i in range(0, 5000, 1000)])
        monkeypatch.setattr(model_module, "as_matrix", counting)
        converted.clear()
        P = model.predict(X)
        monkeypatch.setattr(model_module, "as_matrix", as_matrix)
        assert converted and max(converted) <= 1000
        assert P.dtype == chunks.dtype and P.tobytes() == chunks.tobytes()
    bad = values.copy()
    bad[2503, 3], bad[4100, 1] = numpy.nan, 1e39  # (1e39: infinite once converted to float32)
    numpy.save(tmp_path / "bad.npy", bad)
    with pytest.raises(NotFinite) as whole:
        checks.as_matrix(bad, "X", plain.backend, numpy.float32)
    with pytest.raises(NotFinite) as chunked:
        plain.predict(numpy.load(tmp_path / "bad.npy", mmap_mode="r"))
    assert str(chunked.value) == str(whole.value) and "2 NaN or infinite value(s) (first at row 2503, column 3)" \
        in str(whole.value)
