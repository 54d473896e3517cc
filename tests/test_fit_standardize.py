"""fit(X, Y, standardize=True) on in-memory arrays: the statistics of the training rows kept in the model, as a
source made with standardize=True leaves them."""
import warnings

import numpy
import pytest

import gpunn
from gpunn import data
from gpunn.rng import host_rng


def _prices_and_years(rows=2000, seed=0):
    """Columns far from unit scale (years, prices in the millions, a small one) and targets near 2e4."""
    rng = numpy.random.default_rng(seed)
    X = rng.uniform(1950, 2020, (rows, 3)) * [1, 1000, 0.01]
    y = X @ [3.0, 0.002, 500.0] + rng.normal(0, 10, rows)
    return X, y


def _kept_rows(m, fraction, seed):
    order = host_rng(seed, "validation").permutation(m)
    return numpy.sort(order[int(round(fraction * m)):])


def test_standardize_trains_on_columns_far_from_unit_scale_and_predicts_in_their_units():
    """Years and prices trained as they are reach a held-out R² below 0 without a word (-2.8 here); arrays had
    no way to standardize but a scikit-learn pipeline or an iterable source (which does not shuffle). With
    standardize=True the model keeps the statistics and takes raw inputs, giving targets in their units."""
    X, y = _prices_and_years()
    raw = gpunn.MLP([3, 32, 1], device="cpu", seed=1)
    assert raw.fit(X, y, epochs=6, batch_size=32, validation_fraction=0.2, verbose=False)["val_r2"][-1] < 0
    model = gpunn.MLP([3, 32, 1], device="cpu", seed=1)
    history = model.fit(X, y, epochs=6, batch_size=32, validation_fraction=0.2, verbose=False, standardize=True)
    assert history["val_r2"][-1] > 0.9 and model.score(X, y) > 0.9
    predicted = model.predict(X[:50]).ravel()
    assert numpy.abs(predicted - y[:50]).mean() < 0.2 * y.std()  # in the targets' units, near 2e4


def test_standardize_takes_the_statistics_of_the_training_rows_alone_in_float64():
    """The held-out rows are left out of the statistics, as a source's held-out chunks are; float64 columns are
    summed in float64 (a float32 model's mean of values near 2e6 would be off in its units digit)."""
    X, y = _prices_and_years()
    model = gpunn.MLP([3, 8, 1], device="cpu")
    model.fit(X, y, epochs=1, validation_fraction=0.25, seed=7, verbose=False, standardize=True)
    kept = _kept_rows(len(X), 0.25, 7)
    scaler = model.standardizer
    numpy.testing.assert_allclose(scaler.x_mean, X[kept].mean(axis=0), rtol=1e-12)
    numpy.testing.assert_allclose(scaler.x_scale, X[kept].std(axis=0), rtol=1e-9)
    numpy.testing.assert_allclose(scaler.y_mean, [y[kept].mean()], rtol=1e-12)
    numpy.testing.assert_allclose(scaler.y_scale, [y[kept].std()], rtol=1e-9)
    assert not numpy.allclose(scaler.x_mean, X.mean(axis=0), rtol=1e-9, atol=0)  # not every row's
    given = gpunn.MLP([3, 8, 1], device="cpu")  # validation_data: every row of X trains
    given.fit(X, y, epochs=1, validation_data=(X[:100], y[:100]), verbose=False, standardize="inputs")
    numpy.testing.assert_allclose(given.standardizer.x_mean, X.mean(axis=0), rtol=1e-12)
    assert given.standardizer.y_mean is None and not given.standardizer.scales_targets


def test_a_model_with_statistics_keeps_its_own_in_a_later_standardized_fit():
    """A second fit (train on, or on new rows) goes on in the units the weights were trained in."""
    X, y = _prices_and_years()
    model = gpunn.MLP([3, 8, 1], device="cpu")
    model.fit(X, y, epochs=1, verbose=False, standardize=True)
    first = model.standardizer
    model.fit(X * 10, y, epochs=1, verbose=False, standardize=True)
    assert model.standardizer is first


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_later_fit_asking_for_other_statistics_than_the_models_says_it_keeps_its_own(kind):
    """A model with statistics of X alone, given standardize=True (X and Y) in a later fit, keeps them: the targets
    stay unscaled. That is said, not done silently, and the same for "inputs" given to one that scales Y too, and
    for a source made with standardize; a fit asking for what the model has is no warning."""
    X, y = _prices_and_years(300)
    model = gpunn.MLP([3, 8, 1], device="cpu") if kind == "MLP" else gpunn.Ensemble([3, 8, 1], 2, device="cpu")
    model.fit(X, y, epochs=1, verbose=False, standardize="inputs")
    first = model.standardizer
    with pytest.warns(UserWarning, match=rf"^standardize=True asks for statistics of X and Y, but this {kind} has "
                                         r"statistics of X only from an earlier fit and keeps them .*make a new model "
                                         r"to standardize X and Y$") as caught:
        model.fit(X, y, epochs=1, verbose=False, standardize=True)
    assert caught[0].filename == __file__ and model.standardizer is first and not first.scales_targets
    source = data.synthetic("linear", rows=600, n_features=3, standardize=True)
    with pytest.warns(UserWarning, match=r"^SyntheticSource\(standardize=True\) asks for statistics of X and Y"):
        model.fit(source, epochs=1, verbose=False)
    assert model.standardizer is first
    scaled = gpunn.MLP([3, 8, 1], device="cpu")
    scaled.fit(X, y, epochs=1, verbose=False, standardize=True)
    with pytest.warns(UserWarning, match=r"^standardize='inputs' asks for statistics of X only, but this MLP has "
                                         r"statistics of X and Y"):
        scaled.fit(X, y, epochs=1, verbose=False, standardize="inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled.fit(X, y, epochs=1, verbose=False, standardize=True)
        scaled.fit(X, y, epochs=1, verbose=False)


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_refused_fit_leaves_the_model_without_the_statistics_it_computed(kind):
    """standardize sets the statistics before the fit's later checks; one that refuses (a bad rate, a validation
    share leaving no rows) leaves the model as it was, so that a later fit without standardize is not scaled."""
    X, y = _prices_and_years(200)
    model = gpunn.MLP([3, 8, 1], device="cpu") if kind == "MLP" else gpunn.Ensemble([3, 8, 1], 2, device="cpu")
    with pytest.raises(ValueError, match="learning rate"):
        model.fit(X, y, lr=-1.0, verbose=False, standardize=True)
    assert model.standardizer is None
    with pytest.raises(ValueError, match="unknown optimizer|optimizer"):
        model.fit(X, y, optimizer="adamm", verbose=False, standardize=True)
    assert model.standardizer is None
    model.fit(X, y, epochs=1, verbose=False, standardize=True)
    assert model.standardizer is not None


def test_standardize_with_a_source_says_to_make_the_source_with_it():
    source = data.synthetic("linear", rows=3000, n_features=3)
    model = gpunn.MLP([3, 4, 1], device="cpu")
    with pytest.raises(ValueError, match=r"^standardize=True is fit's option on arrays; a data source standardizes "
                                         r"its rows itself: make it with standardize=True .*\(given SyntheticSource\)$"):
        model.fit(source, standardize=True, verbose=False)
    with pytest.raises(ValueError, match="standardize must be True, False or 'inputs', got 'yes'"):
        model.fit(*_prices_and_years(100), standardize="yes", verbose=False)
    assert model.standardizer is None


def test_an_ensembles_standardized_fit_takes_the_same_statistics_and_trains_its_members():
    X, y = _prices_and_years()
    ens = gpunn.Ensemble([3, 32, 1], 2, device="cpu", seed=1)
    history = ens.fit(X, y, epochs=6, batch_size=32, validation_fraction=0.2, seed=3, verbose=False, standardize=True)
    kept = _kept_rows(len(X), 0.2, 3)
    numpy.testing.assert_allclose(ens.standardizer.x_mean, X[kept].mean(axis=0), rtol=1e-12)
    assert min(history["val_r2"][-1]) > 0.9 and ens.predict(X[:5]).shape == (2, 5, 1)


def test_a_standardized_run_on_arrays_resumes_from_its_checkpoint_bit_for_bit(tmp_path, interrupt_at):
    """The statistics are saved with the model, so a resume on the raw arrays trains on the same standardized copy;
    resume(X, Y, standardize=True), the run's fit options passed again, is the run's own setting."""
    X, y = _prices_and_years(600)
    options = dict(epochs=4, batch_size=64, validation_fraction=0.2, verbose=False, standardize=True)
    reference = gpunn.MLP([3, 8, 1], device="cpu", seed=2)
    reference.fit(X, y, **options)
    path = tmp_path / "run.npz"
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=2)
    assert model.fit(X, y, callbacks=[interrupt_at(2, 3), gpunn.ModelCheckpoint(path)], **options).interrupted
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    ckpt.resume(X, y, verbose=False, standardize=True)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    numpy.testing.assert_array_equal(ckpt.model.standardizer.x_mean, reference.standardizer.x_mean)
    for other in ("inputs", False):  # not the run's: its targets were scaled too; fit's default, no statistics
        with pytest.raises(TypeError, match="standardize"):
            gpunn.load_checkpoint(path, device="cpu").resume(X, y, verbose=False, standardize=other)
    # fit takes standardize=numpy.True_ and shuffle=1 as True (they were refused here as another setting)
    again = gpunn.load_checkpoint(path, device="cpu")
    again.resume(X, y, verbose=False, standardize=numpy.bool_(True), shuffle=1)
    numpy.testing.assert_array_equal(again.model.params, reference.params)
    with pytest.raises(TypeError, match="shuffle"):  # the run shuffled
        gpunn.load_checkpoint(path, device="cpu").resume(X, y, verbose=False, shuffle=0)


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_standardize_takes_a_numpy_bool_and_1_as_true_scaling_the_targets_too(kind):
    """standardize was checked with ``in (False, True, "x", "inputs")``, which let numpy.True_, 1 and 1.0 through as
    they were, and read with ``standardize is True``: they scaled X alone without a word (and the warning of a
    later fit called numpy.True_ a request for X's statistics only). They are flags now, as shuffle's are; 1.0 is
    refused."""
    X, y = _prices_and_years(300)
    for given in (numpy.bool_(True), 1, numpy.int64(1)):
        model = gpunn.MLP([3, 8, 1], device="cpu") if kind == "MLP" else gpunn.Ensemble([3, 8, 1], 2, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.fit(X, y, epochs=1, verbose=False, standardize=given)
            model.fit(X, y, epochs=1, verbose=False, standardize=given)  # the statistics it has: no warning
        assert model.standardizer.scales_targets
    plain = gpunn.MLP([3, 8, 1], device="cpu")
    plain.fit(X, y, epochs=1, verbose=False, standardize=numpy.bool_(False))
    assert plain.standardizer is None
    assert data.synthetic("linear", rows=600, n_features=3, standardize=0).standardize is False
    assert data.synthetic("linear", rows=600, n_features=3, standardize=numpy.bool_(True)).standardize is True
    with pytest.raises(ValueError, match=r"standardize must be True, False or 'inputs', got 1\.0"):
        gpunn.MLP([3, 8, 1], device="cpu").fit(X, y, verbose=False, standardize=1.0)


def test_standardize_on_the_device_takes_the_same_statistics_and_predicts_in_raw_units(device):
    """On a GPU the float32 rows are gathered on the device (float64 ones stay on the host), a chunk at a time; the
    statistics and the raw-unit predictions are the CPU's."""
    X, y = _prices_and_years(500)
    X32 = X.astype(numpy.float32)  # float32 rows: read on the model's device
    model = gpunn.MLP([3, 8, 1], device=device, seed=1)
    model.fit(X32, y, epochs=2, validation_fraction=0.2, seed=5, verbose=False, standardize=True)
    kept = _kept_rows(len(X), 0.2, 5)
    numpy.testing.assert_allclose(model.standardizer.x_mean, X32[kept].astype(numpy.float64).mean(axis=0),
                                  rtol=1e-6)
    numpy.testing.assert_allclose(model.standardizer.y_mean, [y[kept].mean()], rtol=1e-12)
    predicted = model.predict(X32[:4])
    host = predicted.get() if hasattr(predicted, "get") else predicted
    assert host.shape == (4, 1) and numpy.isfinite(host).all() and abs(float(host.mean()) - y.mean()) < 5 * y.std()


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_fit_refused_by_a_callback_before_its_first_step_leaves_the_model_without_the_statistics(kind, tmp_path):
    """A callback's refusal in on_train_begin (a monitor the logs lack, a ModelCheckpoint's missing folder) comes
    after the set-up, before any step: the weights are untouched, so the statistics go too, and the fit that follows
    without standardize trains on the arrays as they are. Once a step ran, the weights are in their units and keep
    them."""
    X, y = _prices_and_years(200)
    model = gpunn.MLP([3, 8, 1], device="cpu") if kind == "MLP" else gpunn.Ensemble([3, 8, 1], 2, device="cpu")
    with pytest.raises(ValueError, match="val_nope"):
        model.fit(X, y, verbose=False, standardize=True, callbacks=[gpunn.EarlyStopping(monitor="val_nope")])
    assert model.standardizer is None
    with pytest.raises(ValueError, match="does not exist"):  # (a PreflightError)
        model.fit(X, y, verbose=False, standardize=True, callbacks=[gpunn.ModelCheckpoint(tmp_path / "no" / "r.npz")])
    assert model.standardizer is None

    class StopAtTheFirstEpochsEnd(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise RuntimeError("stopped after a step")

    with pytest.raises(RuntimeError, match="after a step"):
        model.fit(X, y, verbose=False, standardize=True, callbacks=[StopAtTheFirstEpochsEnd()])
    assert model.standardizer is not None


def test_a_standardized_fit_on_a_dataframe_reads_its_columns_by_name_and_so_does_the_saved_model(tmp_path):
    """The statistics follow the fit's columns: a later predict with the columns in another order, and the model
    saved and loaded, give the same raw-unit predictions."""
    pandas = pytest.importorskip("pandas")
    X, y = _prices_and_years(300)
    frame = pandas.DataFrame(X, columns=["year", "price", "small"])
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=1)
    model.fit(frame[["small", "year", "price"]], pandas.Series(y, name="t"), epochs=2, verbose=False,
              standardize=True)
    numpy.testing.assert_allclose(model.standardizer.x_mean, X[:, [2, 0, 1]].mean(axis=0), rtol=1e-12)
    predicted = model.predict(frame)
    numpy.testing.assert_array_equal(model.predict(frame[["price", "small", "year"]]), predicted)
    gpunn.save(tmp_path / "m.npz", model)
    numpy.testing.assert_array_equal(gpunn.load(tmp_path / "m.npz", device="cpu").predict(frame), predicted)


def test_the_val_metrics_of_a_standardized_fit_are_in_standardized_units_and_its_r2_is_scores():
    """As the README says: val_mse is the mean squared error of the standardized targets, val_r2 is score's."""
    X, y = _prices_and_years(400)
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=1)
    history = model.fit(X[:300], y[:300], epochs=2, verbose=False, standardize=True,
                        validation_data=(X[300:], y[300:]))
    scale = model.standardizer.y_scale[0]
    errors = (model.predict(X[300:]).ravel() - y[300:]) / scale
    assert history["val_mse"][-1] == pytest.approx((errors ** 2).mean(), rel=1e-5)
    assert history["val_r2"][-1] == pytest.approx(model.score(X[300:], y[300:]), rel=1e-5)


def test_standardize_centres_a_constant_column_and_reads_int64_columns_exactly():
    """A column with zero spread gets scale 1 (centred only, no division by zero); int64 columns are summed in
    float64, as NumPy's mean of them."""
    X, y = _prices_and_years(200)
    X = X.astype(numpy.int64)
    X[:, 1] = 7
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=1)
    history = model.fit(X, y, epochs=2, verbose=False, standardize=True)
    numpy.testing.assert_allclose(model.standardizer.x_mean, X.mean(axis=0), rtol=1e-12)
    assert model.standardizer.x_scale[1] == 1.0 and numpy.isfinite(history["loss"]).all()
    assert numpy.isfinite(model.predict(X)).all()


def test_int64_values_past_float32s_resolution_are_standardized_in_float64_for_a_float32_model():
    """Unix times in seconds (about 1.7e9, held to 128 s in float32) as an int64 column and int64 targets: a float32
    model's statistics are those of the int64 values (gpunn.data.stats.standardizing_dtype widens int64 as it
    does float64), so a spread of seconds is not lost to float32's rounding, and predictions come back in float64."""
    rng = numpy.random.default_rng(0)
    X = 1_700_000_000 + numpy.stack([rng.integers(0, 600, 300), rng.integers(0, 60, 300)], axis=1).astype(numpy.int64)
    y = X[:, :1] + 3
    model = gpunn.MLP([2, 8, 1], device="cpu", seed=1)
    model.fit(X, y, epochs=1, verbose=False, standardize=True)
    numpy.testing.assert_allclose(model.standardizer.x_mean, X.mean(axis=0), rtol=1e-15)
    numpy.testing.assert_allclose(model.standardizer.x_scale, X.std(axis=0), rtol=1e-9)
    numpy.testing.assert_allclose(model.standardizer.y_mean, y.mean(axis=0), rtol=1e-15)
    assert model.predict(X).dtype == numpy.float64


@pytest.mark.parametrize("fraction", [None, 0.25], ids=["every row", "held out"])
def test_statistics_read_a_chunk_of_rows_at_a_time_are_those_of_every_training_row(monkeypatch, fraction, device):
    """array_statistics reads the raw arrays 65,536 rows at a time (a wide copy's bound); with chunks of 64 rows a
    fit of 500 takes eight of them, of every row or of the training rows alone (float32 rows: gathered on the model's
    device), and the statistics are still those of every training row, not of the first chunk's or of rows cut at
    the chunks' ends."""
    monkeypatch.setattr("gpunn.data.binding.STATISTICS_CHUNK_ROWS", 64)
    X, y = _prices_and_years(500)
    X = X.astype(numpy.float32)
    model = gpunn.MLP([3, 8, 1], device=device)
    model.fit(X, y, epochs=1, validation_fraction=fraction, seed=7, verbose=False, standardize=True)
    kept = numpy.arange(len(X)) if fraction is None else _kept_rows(len(X), fraction, 7)
    scaler, X = model.standardizer, X.astype(numpy.float64)
    numpy.testing.assert_allclose(scaler.x_mean, X[kept].mean(axis=0), rtol=1e-9)
    numpy.testing.assert_allclose(scaler.x_scale, X[kept].std(axis=0), rtol=1e-7)
    numpy.testing.assert_allclose(scaler.y_mean, [y[kept].mean()], rtol=1e-12)
    numpy.testing.assert_allclose(scaler.y_scale, [y[kept].std()], rtol=1e-9)


def test_a_standardized_fit_on_a_dataframe_refused_for_its_rows_leaves_the_models_columns_as_they_were():
    """The statistics are read by the fit's columns (a DataFrame's names), set on the model for the read alone: a fit
    refused there (X and Y of other row counts) leaves the model's columns and statistics as they were, as the same
    fit without standardize does."""
    pandas = pytest.importorskip("pandas")
    X, y = _prices_and_years(300)
    frame = pandas.DataFrame(X, columns=["year", "price", "small"])
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=1)
    with pytest.raises(ValueError, match="rows"):
        model.fit(frame, y[:200], epochs=1, verbose=False, standardize=True)
    assert model.data_columns is None and model.standardizer is None


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_ctrl_c_in_a_standardized_fits_set_up_leaves_the_model_without_the_statistics(kind, monkeypatch):
    """A KeyboardInterrupt while the fit sets up (here as the validation rows are split off, after the statistics
    were taken) is no Exception, and leaves the model as a refusal there does: without the statistics, so that the
    fit run again without standardize is not scaled."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"gpunn.training.{'fit' if kind == 'MLP' else 'ensemble'}.split_validation", interrupted)
    X, y = _prices_and_years(200)
    model = gpunn.MLP([3, 8, 1], device="cpu") if kind == "MLP" else gpunn.Ensemble([3, 8, 1], 2, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=1, verbose=False, standardize=True)
    assert model.standardizer is None


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_later_fit_refused_by_a_callback_before_its_first_step_leaves_the_models_own_statistics(kind):
    """A model trained with standardize keeps its statistics through a later fit that a callback refuses before any
    step (its weights are in their units): the statistics it had, not none, whether that fit asks to standardize."""
    X, y = _prices_and_years(200)
    model = gpunn.MLP([3, 8, 1], device="cpu") if kind == "MLP" else gpunn.Ensemble([3, 8, 1], 2, device="cpu")
    model.fit(X, y, epochs=1, verbose=False, standardize=True)
    first = model.standardizer
    for standardize in (True, False):
        with pytest.raises(ValueError, match="val_nope"):
            model.fit(X, y, verbose=False, standardize=standardize, callbacks=[gpunn.EarlyStopping(monitor="val_nope")])
        assert model.standardizer is first


def test_an_ensembles_fit_on_a_source_with_standardize_says_to_make_the_source_with_it():
    """As a model's fit: standardize is fit's option on arrays, refused for a source before anything trains."""
    source = data.synthetic("linear", rows=3000, n_features=3)
    ens = gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=1)
    before = ens.params.copy()
    with pytest.raises(ValueError, match=r"^standardize='inputs' is fit's option on arrays; a data source "
                                         r"standardizes its rows itself: .*\(given SyntheticSource\)$"):
        ens.fit(source, standardize="inputs", verbose=False)
    assert ens.standardizer is None
    numpy.testing.assert_array_equal(ens.params, before)


def test_a_fit_that_goes_on_with_a_used_optimizer_refused_before_its_step_leaves_the_model_without_statistics():
    """The steps counted from the optimizer's own (a run's, ckpt.optimizer, goes on): a fit refused by a callback
    before its first step unsets the statistics its standardize set, whatever steps the optimizer took before."""
    X, y = _prices_and_years(200)
    model, optimizer = gpunn.MLP([3, 8, 1], device="cpu"), gpunn.Adam()
    model.fit(X / 1000, y / 1e4, epochs=1, optimizer=optimizer, verbose=False)
    assert optimizer.steps > 0 and model.standardizer is None
    with pytest.raises(ValueError, match="val_nope"):
        model.fit(X, y, optimizer=optimizer, verbose=False, standardize=True,
                  callbacks=[gpunn.EarlyStopping(monitor="val_nope")])
    assert model.standardizer is None


def test_a_model_standardized_on_its_inputs_alone_saves_and_loads_with_its_statistics(tmp_path):
    """A checkpoint of a model with statistics of X only (standardize="inputs") holds no target statistics, and loads
    as it was: X's statistics, targets unscaled, the same predictions (Standardizer.state and from_state)."""
    X, y = _prices_and_years(200)
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=1)
    model.fit(X, y, epochs=1, verbose=False, standardize="inputs")
    gpunn.save(tmp_path / "m.npz", model)
    loaded = gpunn.load(tmp_path / "m.npz", device="cpu")
    assert not loaded.standardizer.scales_targets
    numpy.testing.assert_array_equal(loaded.standardizer.x_mean, model.standardizer.x_mean)
    numpy.testing.assert_array_equal(loaded.standardizer.x_scale, model.standardizer.x_scale)
    numpy.testing.assert_array_equal(loaded.predict(X), model.predict(X))
