"""sample_weight: fit, evaluate, score and resume weigh each row's squared error (gpunn.sample_weights)."""
import numpy
import pytest
from stand_in import is_stand_in

import gpunn
from gpunn import MLP
from gpunn.sample_weights import mean_one, with_weights
from gpunn.training.fit import held_out_rows, weighted_rows


@pytest.fixture
def data():
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((240, 4))
    Y = numpy.stack([numpy.sin(X[:, 0]) + X[:, 1] ** 2, X[:, 2] * X[:, 3]], axis=1)
    w = rng.uniform(0.0, 3.0, 240)
    w[::7] = 0.0  # rows that do not count
    return X, Y, w


def weighted_loss(model, X, Y, w):
    """f = sum_i w_i ||a_i - y_i||^2 / sum_i w_i, from predict (the definition, not the training code)."""
    return float((w * ((model.predict(X) - Y) ** 2).sum(axis=1)).sum() / w.sum())


def test_the_weighted_gradients_are_the_weighted_losss_central_differences_in_float64(data):
    X, Y, w = data[0][:40], data[1][:40], data[2][:40]
    model = MLP([4, 6, 5, 2], activation="tanh", dtype="float64", device="cpu", seed=3)
    Yw = with_weights(numpy, Y, mean_one(w, "rows"))
    with weighted_rows(model, True):
        sum_sq = float(model.train_step(X, Yw))
    assert sum_sq / 40 == pytest.approx(weighted_loss(model, X, Y, w), rel=1e-12)
    grads, h = model.grads.copy(), 1e-6
    numeric = numpy.empty_like(grads)
    for i in range(model.params.size):
        kept = model.params[i]
        model.params[i] = kept + h
        up = weighted_loss(model, X, Y, w)
        model.params[i] = kept - h
        down = weighted_loss(model, X, Y, w)
        model.params[i] = kept
        numeric[i] = (up - down) / (2 * h)
    numpy.testing.assert_allclose(grads, numeric, rtol=1e-3, atol=1e-5)  # torch gradcheck's tolerances
    unweighted = model.loss_and_gradients(X, Y)[1][0]  # (the weights change the gradient; W[0] is first in params)
    assert not numpy.allclose(unweighted, grads[:unweighted.size].reshape(unweighted.shape), rtol=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_weighted_loss_gradient_with_unit_weights_is_the_unweighted_one_bit_for_bit(dtype):
    rng = numpy.random.default_rng(1)
    A, Y = rng.standard_normal((300, 3)).astype(dtype), rng.standard_normal((300, 3)).astype(dtype)
    ops = MLP([2, 3], device="cpu", dtype=dtype).ops
    dA, dA_w = numpy.empty_like(A), numpy.empty_like(A)
    total = ops.loss_gradient(A, Y, dA)
    total_w = ops.loss_gradient(A, Y, dA_w, weights=numpy.ones(300, dtype))
    assert float(total_w) == float(total)
    numpy.testing.assert_array_equal(dA_w, dA)


@pytest.mark.parametrize("weights", [lambda m: numpy.ones(m), lambda m: numpy.full(m, 2.5), lambda m: 4.0],
                         ids=["ones", "constant", "number"])
def test_equal_weights_train_the_unweighted_run_bit_for_bit(data, weights):
    X, Y, _ = data
    runs = []
    for sample_weight in (None, weights(X.shape[0])):
        model = MLP([4, 16, 2], device="cpu", seed=2)
        history = model.fit(X, Y, epochs=3, batch_size=32, validation_fraction=0.2, verbose=False,
                            sample_weight=sample_weight)
        runs.append((model.params.copy(), dict(history)))
    numpy.testing.assert_array_equal(runs[1][0], runs[0][0])
    for key in ("loss", "val_loss", "val_mae", "val_r2"):
        assert runs[1][1][key] == runs[0][1][key]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_integer_weights_train_as_the_rows_repeated(data, optimizer):
    """Full-batch, weights 0..3 are the rows repeated that many times (a weight of 0 drops the row), to rounding."""
    X, Y, _ = data
    w = numpy.arange(X.shape[0]) % 4
    runs = []
    for Xs, Ys, sample_weight in ((X, Y, w), (numpy.repeat(X, w, axis=0), numpy.repeat(Y, w, axis=0), None)):
        model = MLP([4, 12, 2], dtype="float64", device="cpu", seed=5)
        history = model.fit(Xs, Ys, epochs=6, batch_size=None, optimizer=optimizer, lr=1e-2, shuffle=False,
                            verbose=False, sample_weight=sample_weight)
        runs.append((model.params.copy(), history["loss"]))
    numpy.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-10)
    assert runs[0][1][-1] < runs[0][1][0]


def test_the_epoch_loss_is_the_weighted_mean_of_the_batches_losses(data):
    """Each batch's loss is sum w' r^2 / rows with w' the weights scaled to mean 1 over the training rows; the epoch's
    the sum over its batches / rows: the weighted mean squared error over the epoch before each step. Full batch,
    that is f of the starting weights."""
    X, Y, w = data
    model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=1)
    start = weighted_loss(model, X, Y, w)
    history = model.fit(X, Y, epochs=1, batch_size=None, verbose=False, sample_weight=w)
    assert history["loss"][0] == pytest.approx(start, rel=1e-12)


def test_validation_and_evaluate_are_scikit_learns_weighted_metrics(data):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    X, Y, w = data
    Xv, Yv, wv = X[:60], Y[:60], w[:60]
    model = MLP([4, 16, 2], dtype="float64", device="cpu", seed=0)
    history = model.fit(X[60:], Y[60:], epochs=2, batch_size=32, verbose=False, sample_weight=w[60:],
                        validation_data=(Xv, Yv, wv))
    got, P = model.evaluate(Xv, Yv, sample_weight=wv), model.predict(Xv)
    assert got["r2"] == pytest.approx(r2_score(Yv, P, sample_weight=wv), rel=1e-12)
    assert got["mse"] == pytest.approx(mean_squared_error(Yv, P, sample_weight=wv), rel=1e-12)
    assert got["mae"] == pytest.approx(mean_absolute_error(Yv, P, sample_weight=wv), rel=1e-12)
    assert got["loss"] == pytest.approx(weighted_loss(model, Xv, Yv, wv), rel=1e-12)
    assert model.score(Xv, Yv, sample_weight=wv) == got["r2"]
    for name in ("loss", "mse", "mae", "r2"):  # the very sums validation adds, for the weights it holds
        assert history[f"val_{name}"][-1] == got[name]
    assert got["r2"] != model.evaluate(Xv, Yv)["r2"]


def test_a_validation_fraction_weighs_the_held_out_rows_by_theirs(data):
    X, Y, w = data
    model = MLP([4, 16, 2], device="cpu", seed=0)
    history = model.fit(X, Y, epochs=2, batch_size=32, verbose=False, sample_weight=w, validation_fraction=0.25)
    held, _ = held_out_rows(X.shape[0], 0.25, model.seed)
    got = model.evaluate(X[held], Y[held], sample_weight=w[held])
    for name in ("loss", "r2"):
        assert history[f"val_{name}"][-1] == pytest.approx(got[name], rel=1e-6)  # float32 X: the cast's rounding


def test_sample_weight_is_checked_and_what_it_does_not_reach_is_refused(data, tmp_path):
    X, Y, w = data
    model = MLP([4, 8, 2], device="cpu", seed=0)

    def fit(**kwargs):
        return model.fit(X, Y, epochs=1, verbose=False, **kwargs)

    for weights, error, says in (
            (w[:-1], ValueError, r"^sample_weight has 239 weights for 240 rows: one a row$"),
            (w[:, None], ValueError, r"^sample_weight must be 1-D, one weight a row \(or one number\); got shape "
                                     r"\(240, 1\): pass w\.ravel\(\)$"),
            (numpy.where(numpy.arange(240) == 5, -1.0, w), ValueError, r"^sample_weight is negative in row 5 \(-1\)"),
            (numpy.where(numpy.arange(240) == 9, numpy.nan, w), ValueError,
             r"^sample_weight is NaN or infinite in 1 row\(s\), the first row 9 \(nan\)"),
            (numpy.zeros(240), ValueError, r"^sample_weight is zero for every row: no row counts in the loss$"),
            (w.astype(str), TypeError, r"^sample_weight must hold numbers; got <U\d+ values"),
            (0.0, ValueError, r"^sample_weight is zero for every row")):
        with pytest.raises(error, match=says):
            fit(sample_weight=weights)
    held, _ = held_out_rows(240, 0.25, 0)
    only_held = numpy.zeros(240)
    only_held[numpy.setdiff1d(numpy.arange(240), held)] = 1.0  # the held-out rows all weigh 0
    with pytest.raises(ValueError, match=r"^sample_weight is zero for every one of the validation rows"):
        fit(sample_weight=only_held, validation_fraction=0.25, seed=0)
    with pytest.raises(ValueError, match=r"^validation_data's third item \(the validation rows' weights\) has 3 weights "
                                         r"for 240 rows: one a row$"):
        fit(validation_data=(X, Y, numpy.ones(3)))
    with pytest.raises(ValueError, match=r"^validation_data must be a pair \(X_val, Y_val\), or \(X_val, Y_val, "
                                         r"sample_weight_val\)$"):
        fit(validation_data=(X, Y, w, w))
    with pytest.raises(ValueError, match=r"^sample_weight weighs the rows of in-memory arrays; a data source "):
        model.fit(gpunn.data.iterable([(X, Y)]), epochs=1, verbose=False, sample_weight=w)
    with pytest.raises(ValueError, match=r"^sample_weight weighs the rows of in-memory arrays"):
        model.evaluate(gpunn.data.iterable([(X, Y)]), sample_weight=w)
    numpy.save(tmp_path / "X.npy", X), numpy.save(tmp_path / "Y.npy", Y), numpy.save(tmp_path / "w.npy", w)
    with gpunn.data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", weights=tmp_path / "w.npy") as weighted:
        # (it said "a data source has no weights beside its rows", of a source made with them)
        with pytest.raises(ValueError, match=r"a data source carries its own \(gpunn\.data\.npy\(\.\.\., "
                                             r"weights='w\.npy'\), a table's weight='w' column\), which evaluate weighs "
                                             r"its rows by: make the source with them, or evaluate its rows loaded as "
                                             r"\(X, Y\) with sample_weight$"):
            model.score(weighted, sample_weight=w)

    class OwnStep(MLP):
        def train_step(self, X, Y):
            return super().train_step(X, Y)

    with pytest.raises(TypeError, match=r"^sample_weight needs MLP's own training step; OwnStep defines its own"):
        OwnStep([4, 8, 2], device="cpu").fit(X, Y, epochs=1, verbose=False, sample_weight=w)
    assert not MLP._sample_weighted and "_sample_weighted" not in model.__dict__  # nothing left set


def test_weights_given_by_name_or_as_a_one_column_frame_are_told_what_to_pass(data):
    """sample_weight="w.npy" (a source's weights= and --weights take a file) said "must hold numbers; got <U5 values
    (convert them first, sample_weight.astype(float))", and a DataFrame of the one column "pass w.ravel()", which a
    DataFrame lacks."""
    pd = pytest.importorskip("pandas")
    X, Y, w = data
    model = MLP([4, 8, 2], device="cpu", seed=0)
    for weights, error, says in (
            ("w.npy", TypeError, r"^sample_weight is the weights, one a row, not a name; got 'w\.npy': load them, "
                                 r"sample_weight=numpy\.load\('w\.npy'\), or give the file to a source of the data's "
                                 r"files, gpunn\.data\.npy\(x_path, y_path, weights='w\.npy'\)$"),
            ("w", TypeError, r"^sample_weight is the weights, one a row, not a name; got 'w': give a table's column "
                             r"itself, sample_weight=df\['w'\] \(a source of a table file takes its name, "
                             r"gpunn\.data\.csv\(path, target=\.\.\., weight='w'\)\)$"),
            (pd.DataFrame({"w": w}), ValueError, r"got shape \(240, 1\): pass its column, df\['w'\]$")):
        with pytest.raises(error, match=says):
            model.fit(X, Y, epochs=1, verbose=False, sample_weight=weights)
        with pytest.raises(error, match=says):
            model.evaluate(X, Y, sample_weight=weights)


def test_refused_weights_say_the_first_bad_row_and_how_many_rows_are_bad(data):
    """Kills audit47b's mutations S5 (complex weights taken, their imaginary parts dropped), S6 (w.ravel() offered
    for a shape of other size), S9 (an infinite weight taken: the weights scaled to NaN), S10-S12 (the last bad row
    named, or one row counted)."""
    X, Y, w = data
    model = MLP([4, 8, 2], device="cpu", seed=0)
    bad, negative = w.copy(), w.copy()
    bad[[9, 30]] = numpy.nan, numpy.inf
    negative[[5, 50]] = -1.0, -2.0
    for weights, error, says in (
            (bad, ValueError, r"^sample_weight is NaN or infinite in 2 row\(s\), the first row 9 \(nan\)"),
            (numpy.where(numpy.arange(240) == 30, numpy.inf, w), ValueError,
             r"^sample_weight is NaN or infinite in 1 row\(s\), the first row 30 \(inf\)"),
            (negative, ValueError, r"^sample_weight is negative in row 5 \(-1\)"),
            (w[:200].reshape(2, 100), ValueError, r"^sample_weight must be 1-D, one weight a row \(or one number\); got "
                                                  r"shape \(2, 100\)$"),
            (w + 1j, TypeError, r"^sample_weight must hold numbers; got complex128 values")):
        with pytest.raises(error, match=says):
            model.fit(X, Y, epochs=1, verbose=False, sample_weight=weights)


def test_float32_weights_weigh_as_their_float64_values(data):
    """The weights are scaled to mean 1 in float64 whatever their dtype. Kills S8 (float32 weights scaled in float32:
    the metrics ~1e-8 off scikit-learn's)."""
    X, Y, w = data
    w32 = w.astype(numpy.float32)
    model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
    assert model.evaluate(X, Y, sample_weight=w32) == model.evaluate(X, Y, sample_weight=w32.astype(numpy.float64))


def test_weighted_metrics_taken_in_chunks_are_those_of_one_pass(data, monkeypatch):
    """evaluate and validation weigh each chunk's rows by their own weights. Kills MD5 and R9 (every chunk weighed by
    the first chunk's weights)."""
    import gpunn.model as model_module
    from gpunn.metrics import validation_arrays

    X, Y, w = data
    model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
    evaluator = validation_arrays(model, X, Y, w)
    whole, evaluated = evaluator.evaluate(model), model.evaluate(X, Y, sample_weight=w)
    evaluator.chunk_rows = 7
    assert evaluator.evaluate(model) == pytest.approx(whole, rel=1e-12)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", 7)
    assert model.evaluate(X, Y, sample_weight=w) == pytest.approx(evaluated, rel=1e-12)


def test_validation_data_leaves_a_weighted_training_as_it_is(data):
    """validation_data (with its own weights or without) measures the run and changes none of its steps: the training
    rows are weighed by sample_weight alike. Kills F1 (validation_data's path dropped the training weights)."""
    X, Y, w = data
    params = []
    for validation in (None, (X[:60], Y[:60]), (X[:60], Y[:60], w[:60])):
        model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
        model.fit(X[60:], Y[60:], epochs=2, batch_size=32, verbose=False, sample_weight=w[60:],
                  validation_data=validation)
        params.append(model.params.copy())
    numpy.testing.assert_array_equal(params[1], params[0])
    numpy.testing.assert_array_equal(params[2], params[0])
    unweighted = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
    unweighted.fit(X[60:], Y[60:], epochs=2, batch_size=32, verbose=False)
    assert not numpy.allclose(unweighted.params, params[0])


def test_resume_refuses_weights_for_an_ensembles_unweighted_run_and_a_data_source(data, tmp_path):
    """Checkpoint.resume's sample_weight reaches what fit's does. Kills RS1 (an Ensemble's run resumed with weights:
    AttributeError) and RS2 (a data source's resume took the weights and dropped them). A data-parallel resume's:
    tests/test_distributed_weights.py."""
    X, Y, w = data
    ensemble, plain = tmp_path / "ensemble.npz", tmp_path / "plain.npz"
    gpunn.Ensemble([4, 8, 2], 2, device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False,
                                                           callbacks=[gpunn.ModelCheckpoint(ensemble)])
    MLP([4, 8, 2], device="cpu").fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(plain)])
    for path, data_given, kwargs, says in (
            (ensemble, (X, Y), {}, r"ensemble\.npz was trained without sample_weight \(or with weights all equal, which "
                                   r"weigh nothing\); these weights would train another run"),
            (plain, (gpunn.data.iterable([(X, Y)]),), {}, r"^sample_weight weighs the rows of in-memory arrays; a data "
                                                          r"source \(\w+\) carries its weights itself: make it "
                                                          r"with them")):
        with pytest.raises(ValueError, match=says):
            gpunn.load_checkpoint(path, device="cpu").resume(*data_given, epochs=2, verbose=False, sample_weight=w,
                                                             **kwargs)


def test_a_weighted_runs_checkpoint_records_its_outputs_and_equal_validation_weights_weigh_nothing(data, tmp_path):
    """The run's record counts the data's outputs, not the weights' column (kills SR1: n_outputs 3). Validation
    weights all equal weigh nothing, as training's: the run resumes with (X_val, Y_val) (kills E1: a vector of ones
    kept, and the record said the validation rows weighted)."""
    X, Y, w = data
    path = tmp_path / "run.npz"
    MLP([4, 8, 2], device="cpu", seed=0).fit(X[60:], Y[60:], epochs=1, verbose=False, sample_weight=w[60:],
                                             validation_data=(X[:60], Y[:60], numpy.full(60, 2.0)),
                                             callbacks=[gpunn.ModelCheckpoint(path)])
    checkpoint = gpunn.load_checkpoint(path, device="cpu")
    assert checkpoint.training["source"]["n_outputs"] == 2 and checkpoint.training["source"]["sample_weight"]
    checkpoint.resume(X[60:], Y[60:], epochs=2, verbose=False, sample_weight=w[60:], validation_data=(X[:60], Y[:60]))


def test_the_estimators_partial_fit_with_integer_weights_is_partial_fit_on_the_rows_repeated(data):
    """Full-batch, weights 0..3 and alpha's division by the weights' mean are the rows repeated that many times. Kills
    ES4 (partial_fit trained unweighted) and ES5 (its alpha divided by the rows alone)."""
    X, Y, _ = data
    y, w = Y[:, 0], numpy.arange(X.shape[0]) % 4
    fitted = []
    for Xs, ys, weights in ((X, y, w), (numpy.repeat(X, w, axis=0), numpy.repeat(y, w, axis=0), None)):
        est = gpunn.MLPRegressor(hidden_layer_sizes=(8,), batch_size=1000, alpha=0.1, shuffle=False, random_state=0,
                                 device="cpu", dtype="float64")
        for _ in range(3):
            est.partial_fit(Xs, ys, sample_weight=weights)
        fitted.append(est.coefs_ + est.intercepts_)
    for got, expected in zip(*fitted):
        numpy.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_weights_on_the_device_weigh_as_the_same_weights_on_the_host(gpu, data):
    """A CuPy vector of weights (fit's, validation_data's third item, evaluate's) is read to the host. Kills S3
    (numpy.asarray of it: CuPy refuses, and the weights were refused as no vector of numbers)."""
    X, Y, w = data
    runs = []
    for weights in (w, gpu.xp.asarray(w)):
        model = MLP([4, 8, 2], dtype="float64", device="cuda", seed=0)
        history = model.fit(X[60:], Y[60:], epochs=1, batch_size=32, verbose=False, sample_weight=weights[60:],
                            validation_data=(X[:60], Y[:60], weights[:60]))
        runs.append((model.params.get(), history["val_r2"], model.evaluate(X, Y, sample_weight=weights)))
    numpy.testing.assert_array_equal(runs[1][0], runs[0][0])
    assert runs[1][1:] == runs[0][1:]


def test_a_weighted_run_takes_the_cpus_one_call_step(data, monkeypatch):
    """A small net's weighted step on the CPU is one Numba call, as the unweighted one (gpunn.ops.mlp_step; its bits:
    tests/test_mlp_step.py's weighted cases); outside a weighted fit, a Y of a column too many is the generic step's
    (refused there), not read as weights."""
    import gpunn.model as model_module
    from gpunn.ops import lazynumba, mlp_step
    from gpunn.ops.cpu import numba

    if numba is None:
        pytest.skip("the one-call step needs Numba")
    lazynumba.load()  # (a short fit's first steps run the generic step until Numba is imported)
    X, Y, w = data
    ran = []
    monkeypatch.setattr(model_module, "one_call_step",
                        lambda *a: ran.append(a[2].shape[1]) or mlp_step.one_call_step(*a))
    model = MLP([4, 8, 1], device="cpu", seed=0)
    model.fit(X, Y[:, :1], epochs=1, batch_size=32, verbose=False, sample_weight=w)
    assert ran and set(ran) == {2}  # (the weights' column)
    X32, Y32 = X.astype("float32"), numpy.ascontiguousarray(Y, "float32")
    assert mlp_step.one_call_gradients(model, X32, numpy.ascontiguousarray(Y32[:, :1])) is not None
    assert mlp_step.one_call_gradients(model, X32, Y32) is None


def test_a_weighted_run_resumes_exactly_and_only_with_its_weights(data, tmp_path):
    X, Y, w = data
    path = tmp_path / "run.npz"
    whole = MLP([4, 16, 2], dtype="float64", device="cpu", seed=1)
    expected = whole.fit(X, Y, epochs=4, batch_size=32, verbose=False, sample_weight=w, validation_fraction=0.2)

    class StopAfter2(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop = epoch == 1

    model = MLP([4, 16, 2], dtype="float64", device="cpu", seed=1)
    model.fit(X, Y, epochs=4, batch_size=32, verbose=False, sample_weight=w, validation_fraction=0.2,
              callbacks=[gpunn.ModelCheckpoint(path), StopAfter2()])
    for kwargs, says in (({}, r"was trained with sample_weight: pass the same weights to resume, resume\(X, Y, "
                                 r"sample_weight=w\)$"),
                         ({"sample_weight": 1.0}, r"resume\(X, Y, sample_weight=w\) \(these are all equal\)$"),
                         ({"sample_weight": w[::-1].copy()}, r"trained on other values: these X, Y and sample_weight "
                                                             r"have its 192 training rows but not its data")):
        with pytest.raises(ValueError, match=says):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, **kwargs)
    other = w.copy()  # the held-out rows' weights alone other: the training rows' checksum took them
    other[held_out_rows(240, 0.2, gpunn.load_checkpoint(path).settings.seed)[0][:2]] += (2.0, 0.5)
    with pytest.raises(ValueError, match=r"held out other rows: the held-out rows \(validation_fraction=0\.2's 48\) "
                                         r"of these X, Y and sample_weight are not the run's, though its training rows "
                                         r"are \(a checksum differs: other targets, features or weights there\)"):
        gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, sample_weight=other)
    checkpoint = gpunn.load_checkpoint(path, device="cpu")
    history = checkpoint.resume(X, Y, verbose=False, sample_weight=w)
    numpy.testing.assert_array_equal(checkpoint.model.params, whole.params)
    assert history["val_loss"] == expected["val_loss"] and history["loss"] == expected["loss"]

    plain = tmp_path / "plain.npz"
    MLP([4, 8, 2], device="cpu").fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(plain)])
    with pytest.raises(ValueError, match=r"was trained without sample_weight \(or with weights all equal, which weigh "
                                         r"nothing\); these weights would train another run"):
        gpunn.load_checkpoint(plain, device="cpu").resume(X, Y, epochs=2, verbose=False, sample_weight=w)
    gpunn.load_checkpoint(plain, device="cpu").resume(X, Y, epochs=2, verbose=False, sample_weight=numpy.ones(240))


def test_the_estimator_takes_sample_weight_in_fit_partial_fit_score_and_a_pipeline(data):
    from sklearn.ensemble import BaggingRegressor
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.validation import has_fit_parameter

    X, Y, w = data
    y = Y[:, 0]
    est = gpunn.MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0, device="cpu", dtype="float64")
    assert has_fit_parameter(est, "sample_weight")
    with pytest.warns(gpunn.estimator.ConvergenceWarning):
        est.fit(X, y, sample_weight=w)
    assert est.score(X, y, sample_weight=w) == pytest.approx(r2_score(y, est.predict(X), sample_weight=w), rel=1e-12)
    unweighted = gpunn.MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0, device="cpu",
                                    dtype="float64")
    with pytest.warns(gpunn.estimator.ConvergenceWarning):
        unweighted.fit(X, y)
    assert not numpy.allclose(est.coefs_[0], unweighted.coefs_[0])
    before = est.coefs_[0].copy()
    est.partial_fit(X, y, sample_weight=w)
    assert not numpy.array_equal(before, est.coefs_[0])
    with pytest.warns(gpunn.estimator.ConvergenceWarning):
        pipe = make_pipeline(StandardScaler(), est).fit(X, y, mlpregressor__sample_weight=w)
    assert pipe.predict(X).shape == (240,)
    with pytest.warns(gpunn.estimator.ConvergenceWarning):
        assert BaggingRegressor(est, n_estimators=2, random_state=0).fit(X, y, sample_weight=w).predict(X).shape == \
            (240,)


@pytest.mark.parametrize("bootstrap", [True, False])
def test_bagging_gives_each_member_every_row_weighted_or_with_metadata_routing_the_rows_drawn(data, bootstrap):
    """CHANGELOG's BaggingRegressor entry: bootstrap=False, max_samples=0.5 still passes 0/1 counts as weights with
    every row (it said 'for subsets without weights'); scikit-learn's metadata routing on, where the estimator
    requests no sample_weight, BaggingRegressor indexes the rows drawn, as before gpunn took weights."""
    import sklearn
    from sklearn.ensemble import BaggingRegressor

    X, Y, _ = data
    seen = []

    class Seen(gpunn.MLPRegressor):
        def fit(self, X, y, sample_weight=None):
            seen.append((len(X), None if sample_weight is None else int(numpy.count_nonzero(sample_weight))))
            return self

    def bag():
        return BaggingRegressor(Seen(), n_estimators=1, bootstrap=bootstrap, max_samples=0.5, random_state=0)

    bag().fit(X, Y[:, 0])
    assert seen[0][0] == 240 and 0 < seen[0][1] <= 120
    with sklearn.config_context(enable_metadata_routing=True):
        bag().fit(X, Y[:, 0])
    assert seen[1] == (120, None)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_weighted_fit_on_the_gpu_follows_the_cpus(gpu, data, dtype):
    """On CuPy the weighted loss is one kernel, weighted_mse_grad (reading Y and its weights' column where the batch
    carries them), and the step is captured as a CUDA graph, the default; the run follows the CPU's reference step."""
    X, Y, w = data
    xp = gpu.xp
    fake = is_stand_in(xp)
    if fake:
        xp.state.launches.clear()
    results = []
    for device in ("cpu", "cuda"):
        model = MLP([4, 16, 2], dtype=dtype, device=device, seed=2)
        history = model.fit(X, Y, epochs=3, batch_size=32, shuffle=False, verbose=False, sample_weight=w,
                            validation_fraction=0.2)  # (the GPU draws its shuffles with cuRAND)
        params = model.params.get() if device == "cuda" else model.params
        results.append((params, history["loss"], history["val_r2"]))
    assert model.graph_trainer.captured, model.graph_trainer.reason
    if fake:  # (the eager step before each capture; the replays are not launches of their own)
        assert any("weighted_mse_grad" in name for name, _, _ in xp.state.launches)
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    numpy.testing.assert_allclose(results[1][0], results[0][0], rtol=rtol, atol=atol)
    numpy.testing.assert_allclose(results[1][1], results[0][1], rtol=rtol)
    numpy.testing.assert_allclose(results[1][2], results[0][2], rtol=rtol)


def test_gpunn_info_of_a_weighted_runs_checkpoint_says_so_and_how_it_resumes(data, tmp_path):
    from gpunn.cli.model_info import describe

    X, Y, w = data
    MLP([4, 8, 2], device="cpu").fit(X, Y, epochs=1, verbose=False, sample_weight=w,
                                     callbacks=[gpunn.ModelCheckpoint(tmp_path / "w.npz")])
    lines = describe(tmp_path / "w.npz")
    assert "resume(X, Y, sample_weight=w)" in lines["checkpoint"]
    assert lines["trained"].endswith("on arrays (240 training rows, weighted by sample_weight)")
    MLP([4, 8, 2], device="cpu").fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "u.npz")])
    lines = describe(tmp_path / "u.npz")
    assert "sample_weight" not in lines["checkpoint"] + lines["trained"]


def test_gpunn_info_of_a_weighted_sources_run_names_its_weights_and_no_sample_weight_to_pass(data, tmp_path):
    """A source made with weights (an .npy file beside the pair, a table's column) resumes with the source, which
    holds them: info said to resume(X, Y, sample_weight=w) and 'weighted by sample_weight', as of arrays'."""
    import pandas

    from gpunn.cli.model_info import describe

    X, Y, w = data
    for name, values in (("X", X), ("Y", Y), ("w", w)):
        numpy.save(tmp_path / f"{name}.npy", values)
    table = pandas.DataFrame(numpy.column_stack([X, Y[:, 0], w]), columns=["a", "b", "c", "d", "y", "w"])
    table.to_csv(tmp_path / "t.csv", index=False)
    for source, by in ((gpunn.data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", weights=tmp_path / "w.npy"),
                        f"on {tmp_path / 'X.npy'} and {tmp_path / 'Y.npy'} (240 training rows, weighted by "
                        f"{tmp_path / 'w.npy'})"),
                       (gpunn.data.csv(tmp_path / "t.csv", target="y", weight="w"),
                        f"on {tmp_path / 't.csv'} (240 training rows, weighted by its column w)")):
        with source:
            MLP([4, 8, source.n_outputs], device="cpu").fit(source, epochs=1, verbose=False,
                                                            callbacks=[gpunn.ModelCheckpoint(tmp_path / "s.npz")])
        lines = describe(tmp_path / "s.npz")
        assert "sample_weight" not in lines["checkpoint"] and ".resume(source)" in lines["checkpoint"]
        assert lines["trained"].endswith(by)


def test_a_weighted_runs_divergence_reference_is_its_weighted_loss_of_predicting_zero(data):
    """The reference TrainingDiverged measures against is the larger of the first batch's loss and the loss of
    predicting zero; of a weighted run, both weighted. The weights' column counted as one more target added the mean
    squared weight (about 1.4 here) to a loss of 1e-4: divergence was judged 5,000 times too late."""
    X, Y, w = data
    Y = 1e-2 * Y
    seen = []

    class Reference(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(trainer.state.reference_loss)

    model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
    model.params[...] = 0.0  # predicts zero: the first batch's loss is the loss of predicting zero
    model.fit(X, Y, epochs=1, batch_size=None, lr=1e-9, verbose=False, sample_weight=w, callbacks=[Reference()])
    assert seen == [pytest.approx((w * (Y ** 2).sum(axis=1)).sum() / w.sum(), rel=1e-12)]


def test_a_weighted_validation_the_models_output_overflows_on_is_validation_not_finite_naming_its_row():
    """validation_data=(X_val, Y_val, w_val) whose row 3 the model's output overflows on: the place's search took the
    weighted pieces (X, Y, w) as pairs, and a ValueError "too many values to unpack" replaced ValidationNotFinite."""
    from test_validation_not_finite import rows

    X, Y, X_val, Y_val = rows()
    model = MLP([3, 8, 1], device="cpu", seed=0)
    with pytest.raises(gpunn.ValidationNotFinite, match=r"\(1 value, the first at row 3 of X_val, column 0\)"):
        model.fit(X, Y, epochs=3, batch_size=8, verbose=False, validation_data=(X_val, Y_val, numpy.arange(1.0, 11)))


def test_an_ensembles_run_validated_unweighted_resumes_only_with_its_unweighted_validation_data(data, tmp_path):
    """An Ensemble's validation_data may weigh its rows (tests/test_ensemble_sample_weight.py); weights given to the
    resume of a run validated without them would validate another run (the Ensemble refused the third item before)."""
    X, Y, w = data
    path = tmp_path / "ensemble.npz"
    ensemble = gpunn.Ensemble([4, 8, 2], 2, device="cpu", seed=0)
    ensemble.fit(X[60:], Y[60:], epochs=1, verbose=False, validation_data=(X[:60], Y[:60]),
                 callbacks=[gpunn.ModelCheckpoint(path)])
    with pytest.raises(ValueError, match=r"ensemble\.npz was validated without weights \(or with weights all equal\); "
                                         r"these would validate another run: resume with \(X_val, Y_val\)$"):
        gpunn.load_checkpoint(path, device="cpu").resume(X[60:], Y[60:], epochs=2, verbose=False,
                                                         validation_data=(X[:60], Y[:60], w[:60]))
    gpunn.load_checkpoint(path, device="cpu").resume(X[60:], Y[60:], epochs=2, verbose=False,
                                                     validation_data=(X[:60], Y[:60], numpy.ones(60)))


def test_data_parallel_validation_weighs_validation_datas_rows_as_one_process_does(data):
    """distributed=True with validation_data=(X_val, Y_val, w_val): each rank's piece of the rows weighs its errors by
    its weights, so the ranks' sums are the single process's. Each rank summed its errors unweighted, against the
    weighted R² denominator: val_r2 was neither metric."""
    import copy
    import threading

    from thread_ranks import ThreadControl, _Job
    from gpunn.distributed.comm import LocalComm
    from gpunn.distributed.training import _ShardedValidation
    from gpunn.metrics import validation_arrays

    X, Y, w = data
    model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
    evaluator = validation_arrays(model, X, Y, w)
    evaluator.chunk_rows = 7
    expected = evaluator.evaluate(model)
    assert _ShardedValidation(evaluator, LocalComm()).evaluate(model) == pytest.approx(expected, rel=1e-12)
    job, got = _Job(2, timeout=30.0), [None, None]

    def rank(r):  # (a copy of the model a rank: the ranks' forward passes run at once)
        got[r] = _ShardedValidation(evaluator, ThreadControl(r, job)).evaluate(copy.deepcopy(model))

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got[0] == got[1] == pytest.approx(expected, rel=1e-12)


def test_loss_and_gradients_called_in_a_weighted_fit_are_the_unweighted_ones_of_the_rows_given(data):
    """A callback's model.loss_and_gradients(X, Y) in a weighted fit read the Y given as a weighted batch (its last
    column a weight): IndexError, "index 2 is out of bounds for axis 1 with size 2". The model's own calls are
    the unweighted ones, in a fit as out of it."""
    X, Y, w = data
    seen = []

    class Gradients(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(trainer.model.loss_and_gradients(X, Y))

    model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
    model.fit(X, Y, epochs=1, batch_size=32, verbose=False, sample_weight=w, callbacks=[Gradients()])
    loss, dW, db = model.loss_and_gradients(X, Y)
    assert seen[0][0] == loss
    for got, expected in zip(seen[0][1] + seen[0][2], dW + db):
        numpy.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("scale", [2.0 ** 1020, 2.0 ** -1040], ids=["sum-overflows", "subnormal"])
def test_weights_whose_sum_overflows_or_which_are_subnormal_train_as_the_same_weights_scaled(data, scale):
    """Weights are scaled to mean 1 by their sum: 2^1020 x (0..3) summed to infinity and scaled to 0 (the fit trained
    on nothing, loss 0, without a word); 2^-1040 x (0..3), subnormal, gave m / sum = infinity, and TrainingDiverged
    said to lower the learning rate. Scaled by their largest first, they are the same weights."""
    X, Y, _ = data
    w = (numpy.arange(X.shape[0]) % 4).astype(float)
    runs = []
    for weights in (w, w * scale):
        model = MLP([4, 8, 2], dtype="float64", device="cpu", seed=0)
        runs.append((model.fit(X, Y, epochs=2, batch_size=32, verbose=False, sample_weight=weights)["loss"],
                     model.params.copy()))
    assert runs[1][0] == runs[0][0] and runs[0][0][-1] > 0
    numpy.testing.assert_array_equal(runs[1][1], runs[0][1])


def test_a_run_validated_on_weighted_validation_data_resumes_exactly_and_only_with_those_weights(data, tmp_path):
    """The checkpoint recorded a checksum of three arrays (X_val, Y_val, w_val) where a file holds two: every
    checkpoint of a run with validation_data=(X_val, Y_val, w_val) was refused on loading, "invalid validation_data
    record". The weights are checksummed as one more column of Y_val, as training's are."""
    X, Y, w = data
    path = tmp_path / "run.npz"
    train, held = (X[60:], Y[60:]), (X[:60], Y[:60], w[:60])
    whole = MLP([4, 16, 2], dtype="float64", device="cpu", seed=1)
    expected = whole.fit(*train, epochs=3, batch_size=32, verbose=False, validation_data=held)

    class StopAfter1(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop = True

    MLP([4, 16, 2], dtype="float64", device="cpu", seed=1).fit(
        *train, epochs=3, batch_size=32, verbose=False, validation_data=held,
        callbacks=[gpunn.ModelCheckpoint(path), StopAfter1()])
    for other, says in (((X[:60], Y[:60]), r"was validated with weights, validation_data's third item: resume with "
                                           r"the same \(X_val, Y_val, w_val\)$"),
                        ((X[:60], Y[:60], w[:60][::-1].copy()), r"was validated on other values")):
        with pytest.raises(ValueError, match=says):
            gpunn.load_checkpoint(path, device="cpu").resume(*train, verbose=False, validation_data=other)
    checkpoint = gpunn.load_checkpoint(path, device="cpu")
    history = checkpoint.resume(*train, verbose=False, validation_data=held)
    numpy.testing.assert_array_equal(checkpoint.model.params, whole.params)
    assert history["val_r2"] == expected["val_r2"]

    plain = tmp_path / "plain.npz"
    MLP([4, 8, 2], device="cpu").fit(*train, epochs=1, verbose=False, validation_data=held[:2],
                                     callbacks=[gpunn.ModelCheckpoint(plain)])
    with pytest.raises(ValueError, match=r"was validated without weights \(or with weights all equal\); these would "
                                         r"validate another run: resume with \(X_val, Y_val\)$"):
        gpunn.load_checkpoint(plain, device="cpu").resume(*train, epochs=2, verbose=False, validation_data=held)


def test_weights_all_zero_for_validation_or_evaluate_are_refused_naming_what_they_weigh(data):
    """validation_data's weights all 0 said "validation_data's sample weights is zero for every row: no row counts in
    the loss", and evaluate's said the loss too: neither weighs the training loss."""
    X, Y, _ = data
    model = MLP([4, 8, 2], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"^validation_data's third item \(the validation rows' weights\) is zero for "
                                         r"every row: no row counts in the validation metrics$"):
        model.fit(X, Y, epochs=1, verbose=False, validation_data=(X, Y, numpy.zeros(240)))
    with pytest.raises(ValueError, match=r"^sample_weight is zero for every row: no row counts in the metrics$"):
        model.evaluate(X, Y, sample_weight=numpy.zeros(240))


def test_the_estimators_held_out_rows_weights_do_not_change_its_training(data):
    """With early_stopping, alpha was divided by the batch's rows times the mean weight of every row given, the
    held-out ones too: their weights changed the training (scikit-learn's divides it by the training batch's weight
    sum). The mean is of the training rows' weights."""
    import warnings

    X, Y, w = data
    held, _ = held_out_rows(X.shape[0], 0.25, 0)  # (the estimator's ceil count: 60 of 240 either way)
    heavy = w.copy()
    heavy[held] *= 100.0
    curves = []
    for weights in (w, heavy):
        est = gpunn.MLPRegressor(hidden_layer_sizes=(8,), max_iter=4, alpha=0.1, early_stopping=True,
                                 validation_fraction=0.25, random_state=0, device="cpu", dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gpunn.estimator.ConvergenceWarning)
            est.fit(X, Y[:, 0], sample_weight=weights)
        curves.append(est.loss_curve_)
    assert curves[1] == curves[0]


def test_a_weighted_fit_inside_another_weighted_fits_callback_leaves_the_outer_fits_rows_weighted(data):
    """weighted_rows deleted the flag on leaving: a weighted fit of the model from a callback of its own weighted fit
    left the outer fit training on Y's weights column as if unweighted."""
    X, Y, w = data
    model = MLP([4, 8, 2], device="cpu", seed=0)

    class InnerFit(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0:
                with weighted_rows(model, True):
                    pass  # (an inner weighted fit's set-up and exit)
            assert model._sample_weighted

    model.fit(X, Y, epochs=2, batch_size=64, verbose=False, sample_weight=w, callbacks=[InnerFit()])
    assert "_sample_weighted" not in model.__dict__


def test_weighted_validation_data_for_a_fit_on_a_data_source_says_weights_weigh_arrays(data):
    X, Y, w = data
    with pytest.raises(ValueError, match=r"^validation_data's weights \(X_val, Y_val, sample_weight_val\) weigh a fit "
                                         r"on in-memory arrays; a fit on a data source validates unweighted"):
        MLP([4, 8, 2], device="cpu").fit(gpunn.data.iterable([(X, Y)]), epochs=1, verbose=False,
                                         validation_data=(X, Y, w))


def test_loss_and_loss_and_gradients_take_sample_weight_as_a_full_batch_weighted_fit_steps(data):
    """model.loss(X, Y, sample_weight=w) and loss_and_gradients(..., sample_weight=w) were refused (Python's
    'unexpected keyword argument'): the weighted loss and its gradients are the ones a weighted full-batch fit steps
    by, its loss evaluate's weighted loss, its gradient the loss's central differences; equal weights give the
    unweighted bits; an Ensemble's member k, the MLP's."""
    X, Y, w = data
    X, Y = X.astype(numpy.float64), Y.astype(numpy.float64)
    model = MLP([4, 8, 2], "tanh", dtype="float64", device="cpu", seed=3)
    loss, dW, db = model.loss_and_gradients(X, Y, sample_weight=w)
    assert loss == pytest.approx(model.evaluate(X, Y, sample_weight=w)["loss"], rel=1e-12)
    assert model.loss(X, Y, sample_weight=w) == pytest.approx(loss, rel=1e-12)
    assert loss != pytest.approx(model.loss(X, Y), rel=1e-3)
    stepped = MLP([4, 8, 2], "tanh", dtype="float64", device="cpu", seed=3)
    start = stepped.params.copy()
    stepped.fit(X, Y, sample_weight=w, epochs=1, batch_size=None, optimizer="sgd", lr=0.5, shuffle=False,
                verbose=False)
    gradient = numpy.concatenate([g.ravel() for pair in zip(dW, db) for g in pair])  # (params' layout: W1, b1, ...)
    numpy.testing.assert_allclose((start - stepped.params) / 0.5, gradient, rtol=1e-10, atol=1e-13)
    i, j, eps = 2, 5, 1e-6
    W = model.weights[0]
    W[i, j] += eps
    up = model.loss(X, Y, sample_weight=w)
    W[i, j] -= 2 * eps
    down = model.loss(X, Y, sample_weight=w)
    W[i, j] += eps
    assert dW[0][i, j] == pytest.approx((up - down) / (2 * eps), rel=1e-6)
    same = model.loss_and_gradients(X, Y, sample_weight=numpy.full(240, 3.0))
    plain = model.loss_and_gradients(X, Y)
    assert same[0] == plain[0] and all(numpy.array_equal(a, b) for a, b in zip(same[1] + same[2], plain[1] + plain[2]))
    ens = gpunn.Ensemble([4, 8, 2], 2, "tanh", dtype="float64", device="cpu", seed=2)
    losses, dWs, _ = ens.loss_and_gradients(X, Y, sample_weight=w)
    one, dW1, _ = ens[1].loss_and_gradients(X, Y, sample_weight=w)
    assert losses[1] == pytest.approx(one, rel=1e-12) and ens.loss(X, Y, sample_weight=w)[1] == pytest.approx(one)
    numpy.testing.assert_allclose(dWs[0][1], dW1[0], rtol=1e-12, atol=1e-15)
