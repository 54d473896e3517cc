"""Training on gpunn.data sources: fit(source), validation by chunks, standardization, predict files, the CLI."""
import copy
import errno
import subprocess
import sys
import warnings

import numpy
import pytest

import gpunn
from gpunn import data, datasets
from gpunn.data import DataError


def host(a):
    return a.get() if hasattr(a, "get") else numpy.asarray(a)


@pytest.fixture
def linear_pair(tmp_path):
    """A linear task far from standard units: inputs around 100 with spread 10, targets around -500."""
    rng = numpy.random.default_rng(0)
    X = 100 + 10 * rng.standard_normal((20_000, 4))
    B = rng.standard_normal((4, 2))
    Y = (X - 100) @ B * 30 - 500
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)
    return tmp_path / "x.npy", tmp_path / "y.npy", X, Y


def test_fit_on_a_synthetic_stream_learns_and_validates_on_held_out_chunks(device):
    source = data.synthetic("linear", rows=4 * 65536, n_features=8, seed=1, validation_fraction=0.25, window=2)
    model = gpunn.MLP([8, 32, 1], device=device, seed=0)
    history = model.fit(source, epochs=2, batch_size=1024, lr=3e-3, verbose=False)
    assert source.rows == 3 * 65536 and source.validation_rows == 65536
    assert history["loss"][1] < history["loss"][0]
    assert history["val_r2"][-1] > 0.9
    X, Y = datasets.make("linear", 4 * 65536, 8, seed=1, device=device)
    k = source.validation_chunks[0]  # the held-out chunk scores as validation said
    rows = slice(k * 65536, (k + 1) * 65536)
    assert model.score(X[rows], Y[rows]) == pytest.approx(history["val_r2"][-1], abs=1e-6)


def test_fits_seed_and_shuffle_that_differ_from_a_sources_own_are_refused(tmp_path):
    """A source orders its rows by the seed and shuffle it was made with; fit(source, seed=s) dropped s silently, so a
    loop over seeds trained one run (and shuffle=False shuffled). Refused now, naming the source's; equal ones pass."""
    X, Y = datasets.make("linear", 64, 3, seed=0, device="cpu")
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    source = data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", seed=2)
    said = r"this NpySource's: seed=2, shuffle=True\), which fit's do not change: make the source with "
    for model in (gpunn.MLP([3, 4, 1], seed=0), gpunn.Ensemble([3, 4, 1], n_models=2, seed=0)):
        with pytest.raises(ValueError, match=r"^fit\(source, seed=3\): a data source .*" + said + "seed=3 "):
            model.fit(source, seed=3, epochs=1, verbose=False)
        with pytest.raises(ValueError, match=said + r"shuffle=False \(gpunn.data.npy\(\.\.\., shuffle=False\)"):
            model.fit(source, shuffle=False, epochs=1, verbose=False)
        model.fit(source, seed=2, shuffle=True, epochs=1, verbose=False)  # the source's own
    unshuffled = data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", shuffle=False)
    gpunn.MLP([3, 4, 1]).fit(unshuffled, shuffle=False, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"this IterableSource gives its batches in its own order"):
        gpunn.MLP([3, 4, 1]).fit(data.iterable([(X, Y)]), seed=1, epochs=1, verbose=False)


def test_standardized_training_predicts_in_the_targets_units(linear_pair, tmp_path):
    x, y, X, Y = linear_pair
    source = data.npy(x, y, chunk_rows=2000, standardize=True, validation_fraction=0.1)
    model = gpunn.MLP([4, 2], device="cpu", seed=0)  # linear: exact in standardized units
    model.fit(source, epochs=15, batch_size=128, lr=1e-2, verbose=False)
    numpy.testing.assert_allclose(model.standardizer.x_mean, X[source_rows(source)].mean(axis=0), rtol=1e-6)
    P = host(model.predict(X[:500]))
    assert numpy.abs(P - Y[:500]).max() < 0.01 * numpy.abs(Y).mean()  # raw units in, raw units out
    gpunn.save(tmp_path / "m.npz", model)
    again = gpunn.load(tmp_path / "m.npz", device="cpu")
    numpy.testing.assert_array_equal(host(again.predict(X[:500])), P)
    # and so does a copy in memory (mut12m's M32: copy.deepcopy without the standardizer took raw inputs as
    # standardized and predicted in standardized units, and passed)
    numpy.testing.assert_array_equal(host(copy.deepcopy(model).predict(X[:500])), P)
    assert model.score(X, Y) > 0.999


@pytest.fixture
def timestamps(tmp_path):
    """A float64 column far wider than its spread (Unix times in seconds: float32 holds them to 128 s)
    and a target that is a linear function of the spread, around a large offset too."""
    rng = numpy.random.default_rng(3)
    X = numpy.column_stack([1.7e9 + rng.uniform(0, 100, 6000), rng.standard_normal(6000)])
    Y = (X[:, :1] - 1.7e9) * 2.0 + 1e6
    numpy.save(tmp_path / "t.npy", X)
    numpy.save(tmp_path / "ty.npy", Y)
    return tmp_path / "t.npy", tmp_path / "ty.npy", X, Y


def exact_standardized(A, mean, scale):
    return ((A - mean) * (1.0 / scale)).astype("float32")  # in float64, then cast


@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
def test_float64_columns_are_standardized_before_the_cast_to_float32(timestamps, tmp_path, kind, device):
    x, y, X, Y = timestamps
    if kind == "npy":
        source = data.npy(x, y, chunk_rows=1000, standardize=True, shuffle=False, device=device)
    else:
        pa = pytest.importorskip("pyarrow")
        table = pa.table({"t": X[:, 0], "z": X[:, 1], "y": Y[:, 0]})
        if kind == "csv":
            import pyarrow.csv as pcsv
            pcsv.write_csv(table, tmp_path / "t.csv")
            source = data.csv(tmp_path / "t.csv", target="y", standardize=True, shuffle=False, device=device)
        else:
            import pyarrow.parquet as pq
            pq.write_table(table, tmp_path / "t.parquet", row_group_size=1000)
            source = data.parquet(tmp_path / "t.parquet", target="y", standardize=True, shuffle=False, device=device)
    s = source.standardizer  # the statistics of the stored values, not of their float32 roundings
    numpy.testing.assert_allclose(s.x_mean, X.mean(axis=0), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(s.x_scale, X.std(axis=0), rtol=1e-9)
    numpy.testing.assert_allclose(s.y_scale, Y.std(axis=0), rtol=1e-9)
    Xb, Yb = (host(A) for A in next(source.batches(0, 6000)))
    assert Xb.dtype == numpy.float32
    numpy.testing.assert_allclose(Xb, exact_standardized(X, s.x_mean, s.x_scale), rtol=1e-6, atol=1e-6)
    numpy.testing.assert_allclose(Yb, exact_standardized(Y, s.y_mean, s.y_scale), rtol=1e-6, atol=1e-6)


def test_an_iterable_of_float64_pieces_is_standardized_before_the_cast_too(timestamps):
    _, _, X, Y = timestamps
    source = data.iterable([(X[i:i + 1000], Y[i:i + 1000]) for i in range(0, 6000, 1000)], standardize=True)
    source.bind("cpu", "float32")
    s = source.standardizer
    numpy.testing.assert_allclose(s.x_scale, X.std(axis=0), rtol=1e-9)
    Xb, Yb = next(source.batches(0, 6000))
    assert Xb.dtype == Yb.dtype == numpy.float32
    numpy.testing.assert_allclose(Xb, exact_standardized(X, s.x_mean, s.x_scale), rtol=1e-6, atol=1e-6)


def test_a_standardized_model_takes_raw_float64_arrays_everywhere(timestamps):
    x, y, X, Y = timestamps
    model = gpunn.MLP([2, 1], device="cpu", seed=0)  # linear: exact in standardized units
    history = model.fit(data.npy(x, y, chunk_rows=1000, standardize=True), epochs=20, batch_size=64, lr=1e-2,
                        verbose=False)
    s = model.standardizer
    Xs, Ys = exact_standardized(X, s.x_mean, s.x_scale), exact_standardized(Y, s.y_mean, s.y_scale)
    assert history["loss"][-1] < 1e-4  # learned from the seconds that float32 cannot tell apart at 1.7e9
    assert model.score(X, Y) > 0.9999
    plain = gpunn.MLP([2, 1], device="cpu")  # the same network without the statistics, fed standardized rows
    plain.params[...] = model.params
    P = host(model.predict(X))
    numpy.testing.assert_allclose(P, host(plain.predict(Xs)) * s.y_scale + s.y_mean, rtol=1e-6)
    loss, dW, _ = model.loss_and_gradients(X, Y)
    expected_loss, expected_dW, _ = plain.loss_and_gradients(Xs, Ys)
    assert loss == expected_loss
    numpy.testing.assert_array_equal(dW[0], expected_dW[0])
    # a later fit on arrays trains on a standardized copy, as fit on the source did; the caller's arrays stay
    X_before = X.copy()
    tuned = model.fit(X, Y, epochs=2, batch_size=64, lr=1e-3, seed=5, validation_data=(X[:500], Y[:500]),
                      verbose=False)
    same = plain.fit(Xs, Ys, epochs=2, batch_size=64, lr=1e-3, seed=5, validation_data=(Xs[:500], Ys[:500]),
                     verbose=False)
    numpy.testing.assert_array_equal(model.params, plain.params)
    assert tuned["loss"] == same["loss"] and tuned["val_loss"] == same["val_loss"]
    numpy.testing.assert_array_equal(X, X_before)


@pytest.fixture
def near_a_billion(tmp_path):
    """float64 targets around 1e9 with a spread of a few thousand: float32 holds them to 64."""
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((2000, 3))
    Y = 1e9 + 1000 * (X @ numpy.array([[1.0], [-2.0], [0.5]]))
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)
    return tmp_path / "x.npy", tmp_path / "y.npy", X, Y


def test_predictions_of_float64_targets_are_unstandardized_in_float64(near_a_billion, tmp_path, device):
    """A float32 model trained on standardized float64 targets predicts in float64, un-standardized in
    float64: in float32 every prediction near 1e9 came back as a multiple of 64, whatever the model had
    learned. Its loss, an ensemble, a member, a saved model and predict_file agree; float32 targets
    still predict float32."""
    from gpunn.data.files import predict_file

    x, y, X, Y = near_a_billion
    model = gpunn.MLP([3, 1], device=device, seed=0)
    model.fit(data.npy(x, y, chunk_rows=500, standardize=True), epochs=2, batch_size=64, lr=1e-2, verbose=False)
    s = model.standardizer
    plain = gpunn.MLP([3, 1], device=device)  # the same network without the statistics, on standardized rows
    plain.params[...] = model.params
    expected = host(plain.predict(exact_standardized(X, s.x_mean, s.x_scale))).astype("float64") * s.y_scale + s.y_mean
    P = host(model.predict(X))
    assert P.dtype == numpy.float64
    numpy.testing.assert_allclose(P, expected, rtol=1e-15)
    assert numpy.count_nonzero(P % 64) > 1000  # not float32's grid at 1e9
    assert model.loss(X, Y) == pytest.approx(((expected - Y) ** 2).mean(), rel=1e-9)
    gpunn.save(tmp_path / "m.npz", model)
    numpy.testing.assert_array_equal(host(gpunn.load(tmp_path / "m.npz", device=device).predict(X)), P)
    assert predict_file(model, x, tmp_path / "p.npy", chunk_rows=700) == 2000
    # predict's own values for the same 700-row pieces: a float32 product's last bit can depend on the rows given at
    # once (OpenBLAS's AVX-512 sgemm under the CuPy stand-in, on a Xeon: 3 rows of 2000 at the pieces' edges)
    pieces = numpy.concatenate([host(model.predict(X[i:i + 700])) for i in range(0, 2000, 700)])
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), pieces)
    numpy.testing.assert_allclose(pieces, P, rtol=1e-12)
    ens = gpunn.Ensemble([3, 1], 2, device=device, seed=0)
    ens.fit(data.npy(x, y, chunk_rows=500, standardize=True), epochs=1, batch_size=64, lr=1e-2, verbose=False)
    PE = host(ens.predict(X))
    assert PE.dtype == numpy.float64 and numpy.count_nonzero(PE % 64) > 1000
    numpy.testing.assert_array_equal(host(ens[1].predict(X)), PE[1])
    numpy.save(tmp_path / "x32.npy", X.astype("float32"))  # both float32: standardized in float32, as before
    numpy.save(tmp_path / "y32.npy", Y.astype("float32"))
    narrow = gpunn.MLP([3, 1], device=device, seed=0)
    narrow.fit(data.npy(tmp_path / "x32.npy", tmp_path / "y32.npy", chunk_rows=500, standardize=True), epochs=1,
               verbose=False)
    assert host(narrow.predict(X)).dtype == numpy.float32


def test_gpunn_predict_writes_float64_predictions_for_float64_targets(near_a_billion, tmp_path, capsys):
    """gpunn predict answers as model.predict: float64 for a model trained with --standardize on float64
    targets, read whole or streamed; a checkpoint from before the targets' dtype was recorded predicts
    in the model's dtype, as it did."""
    from gpunn.cli import main

    x, y, X, _ = near_a_billion
    save = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(x), "--targets", str(y), "--standardize", "--hidden", "8", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--save", save]) == 0
    expected = host(gpunn.load(save, device="cpu").predict(X))
    assert expected.dtype == numpy.float64
    for out in ("p.npy", "p.csv", "p.parquet"):
        if out.endswith("parquet") and not _have("pyarrow"):
            continue
        assert main(["predict", save, str(x), str(tmp_path / out), "--device", "cpu"]) == 0
        assert "predictions (float64)" in capsys.readouterr().out
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), expected)
    numpy.testing.assert_array_equal(numpy.loadtxt(tmp_path / "p.csv", delimiter=",", ndmin=2), expected)
    from gpunn.data.stats import Standardizer

    old = Standardizer.from_state({"targets": True}, {k: numpy.zeros(1) for k in ("x_mean", "x_scale", "y_mean",
                                                                                    "y_scale")})
    assert old.prediction_dtype("float32") == numpy.float32 and old.prediction_dtype("float64") == numpy.float64


def _have(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_a_standardized_model_fitted_again_on_a_source_keeps_its_statistics(timestamps, tmp_path):
    """A later fit on a source, made with standardize or not, scales its rows by the model's statistics,
    as fit(X, Y) scales arrays: the source's own (none, or new ones) would retrain the weights in other units."""
    x, y, X, Y = timestamps
    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    model.fit(data.npy(x, y, chunk_rows=1000, standardize=True), epochs=3, batch_size=64, lr=1e-2, verbose=False)
    s = model.standardizer
    numpy.save(tmp_path / "xs.npy", exact_standardized(X, s.x_mean, s.x_scale))
    numpy.save(tmp_path / "ys.npy", exact_standardized(Y, s.y_mean, s.y_scale))
    plain = gpunn.MLP([2, 1], device="cpu")  # the same network without the statistics, on standardized rows
    plain.params[...] = model.params
    for standardize in (False, True):
        rows = slice(0, 3000) if standardize else slice(None)  # new rows: statistics of their own would differ
        numpy.save(tmp_path / "xr.npy", X[rows])
        numpy.save(tmp_path / "yr.npy", Y[rows])
        numpy.save(tmp_path / "xsr.npy", numpy.load(tmp_path / "xs.npy")[rows])
        numpy.save(tmp_path / "ysr.npy", numpy.load(tmp_path / "ys.npy")[rows])
        tuned = model.fit(data.npy(tmp_path / "xr.npy", tmp_path / "yr.npy", chunk_rows=1000, seed=2,
                                   standardize=standardize), epochs=1, batch_size=64, lr=1e-3, verbose=False)
        same = plain.fit(data.npy(tmp_path / "xsr.npy", tmp_path / "ysr.npy", chunk_rows=1000, seed=2), epochs=1,
                         batch_size=64, lr=1e-3, verbose=False)
        assert model.standardizer is s
        assert tuned["loss"] == same["loss"]
        numpy.testing.assert_array_equal(model.params, plain.params)


def test_a_standardized_model_fitted_again_on_an_iterable_of_float64_pieces_scales_them_in_float64(timestamps):
    """An iterable made without standardize takes a model's statistics in a later fit, and reads its float64 pieces
    in float64 to standardize them, as one made with standardize does (audit47's R38: they were cast to float32
    first, the Unix times to 128 s, and the fit trained on other rows than fit(X, Y) would)."""
    _, _, X, Y = timestamps
    pieces = [(X[i:i + 1000], Y[i:i + 1000]) for i in range(0, 6000, 1000)]
    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    model.fit(data.iterable(pieces, standardize=True), epochs=1, batch_size=256, lr=1e-2, verbose=False)
    s = model.standardizer
    plain = gpunn.MLP([2, 1], device="cpu")  # the same network without the statistics, on standardized pieces
    plain.params[...] = model.params
    standardized = [(exact_standardized(Xp, s.x_mean, s.x_scale), exact_standardized(Yp, s.y_mean, s.y_scale))
                    for Xp, Yp in pieces]
    tuned = model.fit(data.iterable(pieces), epochs=1, batch_size=64, lr=1e-3, verbose=False)
    same = plain.fit(data.iterable(standardized), epochs=1, batch_size=64, lr=1e-3, verbose=False)
    assert model.standardizer is s
    assert tuned["loss"] == same["loss"]
    numpy.testing.assert_array_equal(model.params, plain.params)


@pytest.mark.parametrize("standardize", [False, True])
def test_a_source_a_standardized_model_trained_on_gives_a_fresh_model_its_own_units(timestamps, standardize):
    """A fit of a model with statistics scales the source by them; a fresh model fitted on that source object
    afterwards adopted them (trained standardized from a plain source, or in the other model's units rather than
    the source's own), so its run depended on what the source had been used for before."""
    x, y, X, Y = timestamps
    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    model.fit(data.npy(x, y, chunk_rows=1000, standardize=True, validation_fraction=0.5), epochs=1, verbose=False)
    used = data.npy(x, y, chunk_rows=1000, standardize=standardize, seed=3)
    model.fit(used, epochs=1, verbose=False, validation_data=data.npy(x, y, chunk_rows=1000))
    assert used.standardizer is model.standardizer
    fresh, again = (gpunn.MLP([2, 1], device="cpu", seed=1) for _ in range(2))
    a = fresh.fit(used, epochs=2, lr=1e-3, verbose=False)
    b = again.fit(data.npy(x, y, chunk_rows=1000, standardize=standardize, seed=3), epochs=2, lr=1e-3, verbose=False)
    assert a["loss"] == b["loss"]
    assert (fresh.standardizer is None) == (not standardize)
    if standardize:
        numpy.testing.assert_array_equal(fresh.standardizer.y_mean, again.standardizer.y_mean)


def test_a_standardized_model_scales_float64_arrays_without_a_whole_float64_copy():
    """fit/score/loss_and_gradients on float64 arrays for a float32 model with statistics: standardized in
    float64 a chunk of rows at a time, then cast, as the sources do (it made a float64 copy of all the
    rows, on a GPU on the device, besides the float32 one)."""
    import tracemalloc

    from gpunn.data.stats import Standardizer

    rng = numpy.random.default_rng(0)
    X = 1e3 + rng.standard_normal((400_000, 8))
    Y = X[:, :1] * 2.0
    model = gpunn.MLP([8, 1], device="cpu", seed=0)
    model.standardizer = s = Standardizer(X.mean(axis=0), X.std(axis=0), Y.mean(axis=0), Y.std(axis=0))
    plain = gpunn.MLP([8, 1], device="cpu")  # the same network fed rows standardized in float64 whole
    plain.params[...] = model.params
    expected = plain.loss_and_gradients(exact_standardized(X, s.x_mean, s.x_scale),
                                        exact_standardized(Y, s.y_mean, s.y_scale))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loss, dW, db = model.loss_and_gradients(X, Y)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes  # the float32 copy (half of X), its finiteness mask and a chunk: not another X
    assert loss == expected[0]
    numpy.testing.assert_array_equal(dW[0], expected[1][0])


def test_a_standardized_model_leaves_the_callers_arrays_as_they_are_views_too():
    """Values already in the model's dtype are scaled in place in a copy; a 1-D target that is a view of
    another array (y = z[:n], a DataFrame column's values) reshapes to a view whose base is z, not y, and
    was scaled in the caller's memory by fit, score, loss_and_gradients and validation."""
    from gpunn.data.stats import Standardizer

    rng = numpy.random.default_rng(2)
    z = (1000 + 30 * rng.standard_normal(300)).astype("float32")
    big = rng.standard_normal((300, 2)).astype("float32")
    X, y, X_val, y_val = big[:200], z[:200], big[200:], z[200:]
    kept = z.copy(), big.copy()
    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    model.standardizer = Standardizer(X.mean(axis=0), X.std(axis=0), [1000.0], [30.0])
    model.fit(X, y, epochs=1, batch_size=50, validation_data=(X_val, y_val), verbose=False)
    model.score(X, y)
    model.loss_and_gradients(X, y)
    numpy.testing.assert_array_equal(z, kept[0])
    numpy.testing.assert_array_equal(big, kept[1])


def source_rows(source):
    return numpy.concatenate([numpy.arange(sum(source.chunk_sizes[:k]), sum(source.chunk_sizes[:k + 1]))
                              for k in source.train_chunks])


def test_a_separate_validation_source_is_scored_with_the_training_statistics(linear_pair, tmp_path):
    x, y, X, Y = linear_pair
    numpy.save(tmp_path / "xv.npy", X[:3000])
    numpy.save(tmp_path / "yv.npy", Y[:3000])
    source = data.npy(x, y, chunk_rows=4000, standardize=True)
    held = data.npy(tmp_path / "xv.npy", tmp_path / "yv.npy", chunk_rows=1000)
    model = gpunn.MLP([4, 2], device="cpu", seed=0)
    history = model.fit(source, epochs=3, batch_size=256, lr=1e-2, validation_data=held, verbose=False)
    assert held.standardizer is source.standardizer
    assert history["val_r2"][-1] == pytest.approx(model.score(X[:3000], Y[:3000]), abs=1e-6)


def test_a_sharded_validation_source_is_the_source_it_wraps_and_a_ranks_share_is_refused(linear_pair, tmp_path):
    """validation_data=ShardedSource(held, P) owning every shard is ``held``, every row, as evaluate takes it; one
    owning some shards (a rank's share, as torch's DistributedSampler gives a rank) is refused before anything is
    bound or trained: a data-parallel fit splits a whole validation source over the ranks itself and adds up their
    sums. (It was taken through attribute forwarding: the wrapped source's windows, every row, whatever it owned.)"""
    from gpunn.distributed import ShardedSource

    x, y, X, Y = linear_pair
    numpy.save(tmp_path / "xv.npy", X[:3000])
    numpy.save(tmp_path / "yv.npy", Y[:3000])

    def held():
        return data.npy(tmp_path / "xv.npy", tmp_path / "yv.npy", chunk_rows=1000)

    def fit(validation_data):
        model = gpunn.MLP([4, 2], device="cpu", seed=0)
        return model.fit(data.npy(x, y, chunk_rows=4000, standardize=True), epochs=2, batch_size=2000, lr=1e-2,
                         validation_data=validation_data, verbose=False)

    sharded, whole = fit(ShardedSource(held(), 2)), fit(held())
    assert [sharded[k] for k in ("loss", "val_loss", "val_mae", "val_r2")] == \
        [whole[k] for k in ("loss", "val_loss", "val_mae", "val_r2")]
    share = ShardedSource(held(), 2, [1])
    with pytest.raises(ValueError, match=r"validation_data: a ShardedSource owning shard\(s\) \[1\] of 2 is one rank's "
                                         r"share of the training rows of NpySource .*pass the source it wraps, "
                                         r"validation_data=sharded\.source \(a data-parallel fit, distributed=True, "
                                         r"splits its chunks over the ranks"):
        fit(share)
    assert share.source.backend is None  # refused before the validation source was bound
    with pytest.raises(AttributeError, match=r"ShardedSource has no ordered_windows: the wrapped source's would read "
                                             r"all of its rows, not those of the owned shards \[1\] of 2"):
        share.ordered_windows()


def test_a_sources_validation_in_chunks_of_rows_is_the_whole_pass(tmp_path):
    """A source's held-out chunks are scored chunk_rows rows at a time (65,536): cut into 7 rows, its 300 held-out
    rows give the metrics of one pass (mut12m's R19: a row skipped after each piece passed every test, whose windows
    are one piece)."""
    from gpunn.metrics import SourceEvaluator

    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "x.npy", rng.standard_normal((1000, 3)).astype("float32"))
    numpy.save(tmp_path / "y.npy", rng.standard_normal((1000, 2)).astype("float32"))
    source = data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=100, validation_fraction=0.3)
    model = gpunn.MLP([3, 8, 2], device="cpu", seed=0)
    model.fit(source, epochs=1, verbose=False)
    whole, chunked = SourceEvaluator(source).evaluate(model), SourceEvaluator(source, chunk_rows=7).evaluate(model)
    assert chunked == pytest.approx(whole, rel=1e-12)


@pytest.mark.filterwarnings("ignore:X has no column names")  # (named, scored on arrays)
def test_a_validation_source_with_other_columns_is_refused_naming_them(tmp_path):
    """A validation table whose columns come in another order (or are others) would be scored column
    for column against the wrong features: refused, saying which columns to pick, or, where it has none of those
    names (a target z for y), so (it was told "make it with target=['y']", which its file cannot do)."""
    pytest.importorskip("pyarrow")
    X = numpy.random.default_rng(0).standard_normal((3000, 3))
    y = X @ [1.0, 10.0, 100.0]
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="")
    numpy.savetxt(tmp_path / "v.csv", numpy.column_stack([X[:, [2, 0, 1]], y]), delimiter=",", header="c,a,b,y",
                  comments="")
    numpy.savetxt(tmp_path / "w.csv", numpy.column_stack([X[:, :2], y]), delimiter=",", header="a,b,y", comments="")
    model = gpunn.MLP([3, 8, 1], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"validation source's feature columns \['c', 'a', 'b'\] are not the "
                                         r"training source's \['a', 'b', 'c'\]"):
        model.fit(data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False,
                  validation_data=data.csv(tmp_path / "v.csv", target="y"))
    numpy.savetxt(tmp_path / "z.csv", numpy.column_stack([X, y]), delimiter=",", header="a,b,c,z", comments="")
    with pytest.raises(ValueError, match=r"validation source's target columns \['z'\] are not the training source's "
                                         r"\['y'\]: its table has no column 'y' for target=\['y'\] to pick: give it "
                                         r"the training source's column names$"):
        model.fit(data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False,
                  validation_data=data.csv(tmp_path / "z.csv", target="z"))
    with pytest.raises(ValueError, match=r"the validation source \(CsvSource\) gives 2 features and 1 output"):
        model.fit(data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False,
                  validation_data=data.csv(tmp_path / "w.csv", target="y"))
    history = model.fit(data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False,  # named in order: fine
                        validation_data=data.csv(tmp_path / "v.csv", target="y", features=["a", "b", "c"]))
    assert history["val_r2"][-1] == pytest.approx(model.score(X, y), abs=1e-6)
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["y"]}  # what gpunn predict picks by


def test_a_source_holding_out_chunks_and_validation_data_too_is_refused(linear_pair):
    """The source's held-out chunks would be left out of training and scored by nobody."""
    x, y, X, Y = linear_pair
    with pytest.raises(ValueError, match=r"holds out chunks for validation \(validation_fraction=0.2, given as it was "
                                         r"made or to an earlier fit\(source, validation_fraction=...\), which holds "
                                         r"them out on the source\) and validation_data is given too: use one "
                                         r"\(source.hold_out\(0\) holds none out\)"):
        gpunn.MLP([4, 2], device="cpu").fit(data.npy(x, y, validation_fraction=0.2), epochs=1, verbose=False,
                                            validation_data=(X[:100], Y[:100]))


def test_a_source_an_earlier_fit_held_chunks_out_of_is_refused_validation_data_until_it_holds_none_out(linear_pair):
    # "make the source without validation_fraction" told one who had made it so: an earlier fit's held them out
    x, y, X, Y = linear_pair
    source, model = data.npy(x, y), gpunn.MLP([4, 2], device="cpu")
    model.fit(source, epochs=1, verbose=False, validation_fraction=0.2)
    with pytest.raises(ValueError, match=r"given as it was made or to an earlier fit\(source, validation_fraction="):
        model.fit(source, epochs=1, verbose=False, validation_data=(X[:100], Y[:100]))
    history = model.fit(source.hold_out(0), epochs=1, verbose=False, validation_data=(X[:100], Y[:100]))
    assert len(history["val_loss"]) == 1 and source.validation_rows == 0


def test_a_source_whose_width_does_not_match_the_model_is_refused(linear_pair):
    x, y, _, _ = linear_pair
    with pytest.raises(ValueError, match="gives 4 features and 2 output"):
        gpunn.MLP([5, 2], device="cpu").fit(data.npy(x, y), epochs=1, verbose=False)


def test_a_source_passed_with_targets_is_refused_saying_the_source_holds_them(linear_pair, tmp_path):
    x, y, _, Y = linear_pair
    model = gpunn.MLP([4, 2], device="cpu")
    with pytest.raises(TypeError, match=r"NpySource.*holds its targets.*without Y"):
        model.fit(data.npy(x, y), Y, epochs=1, verbose=False)
    model.fit(data.npy(x, y), epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")])
    with pytest.raises(TypeError, match=r"NpySource.*holds its targets.*without Y"):
        gpunn.load_checkpoint(tmp_path / "c.npz").resume(data.npy(x, y), Y, epochs=2)


@pytest.mark.python312
@pytest.mark.parametrize("missing", ["rows", "n_features", "n_outputs", "resumable", "batches", "config"])
def test_gpunn_data_and_fit_tell_a_source_by_one_rule(missing):
    """gpunn.data.is_source is fit's rule (gpunn.training.protocols.is_source): an object lacking any one of
    DataSource's six members is no source for either (gpunn.data's did not ask for ``resumable``, so it
    called a source what fit took for an array), and ShardedSource, whose sizes come from its wrapped source
    through __getattr__, is one for both. One with a batches method is refused by fit and resume naming the
    member it lacks (they said "X must be an array of numbers"); one without is taken for an array, as before."""
    from types import SimpleNamespace

    from gpunn.distributed.shard import ShardedSource
    from gpunn.training.protocols import is_source as fits_as_source

    source = data.synthetic("teacher", rows=1000, n_features=3, seed=1, device="cpu")
    members = ("rows", "n_features", "n_outputs", "resumable", "batches", "config")
    lacking = SimpleNamespace(**{name: getattr(source, name) for name in members if name != missing})
    assert not data.is_source(lacking)
    if missing == "batches":
        assert not fits_as_source(lacking, None)
        with pytest.raises(TypeError, match="X must be an array of numbers, got a SimpleNamespace"):
            gpunn.MLP([3, 4, 1], device="cpu").fit(lacking, epochs=1, verbose=False)
    else:
        said = (f"^X \\(SimpleNamespace\\) has a batches method but lacks {missing}, so it is no data source: a "
                r"DataSource \(gpunn.training.protocols\) has rows, n_features, n_outputs, resumable, batches, config$")
        for fit in (gpunn.MLP([3, 4, 1], device="cpu").fit, gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu").fit):
            with pytest.raises(TypeError, match=said):
                fit(lacking, epochs=1, verbose=False)
    for whole in (SimpleNamespace(**{name: getattr(source, name) for name in members}), ShardedSource(source, 2)):
        assert data.is_source(whole) and fits_as_source(whole, None)


def test_an_array_with_a_batches_attribute_that_is_no_method_is_still_an_array():
    # a table whose column "batches" reads as an attribute (pandas' df.batches) is no source missing members
    class Tagged(numpy.ndarray):
        batches = 4

    X = numpy.random.default_rng(0).normal(size=(40, 3)).view(Tagged)
    history = gpunn.MLP([3, 4, 1], device="cpu").fit(X, numpy.asarray(X[:, :1]), epochs=1, verbose=False)
    assert history["epoch"] == [1]


def test_a_bad_chunk_stops_training_naming_the_file_and_the_last_checkpoint_survives(tmp_path):
    X = numpy.ones((6000, 2))
    X[5500, 0] = numpy.inf
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", numpy.ones(6000))
    source = data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1000, shuffle=False, window=1)
    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    ckpt = tmp_path / "run.npz"
    with pytest.raises(DataError, match=r"x\.npy row 5500: column 0: inf is infinite; clean or impute it first$"):
        model.fit(source, epochs=1, batch_size=100, verbose=False, callbacks=[gpunn.ModelCheckpoint(ckpt)])
    assert not ckpt.exists()  # the failed epoch was not saved as a good state


def test_an_iterable_of_batches_trains(device, to_host):
    X, Y = datasets.make("linear", 4000, 3, seed=0, device="cpu")
    batches = [(X[i:i + 500], Y[i:i + 500]) for i in range(0, 4000, 500)]
    model = gpunn.MLP([3, 1], device=device, seed=0)
    history = model.fit(data.iterable(batches), epochs=20, lr=3e-2, verbose=False)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    shifted = [(100 + 10 * Xb, 5 - 3 * Yb) for Xb, Yb in batches]  # far from standard: scaling is needed
    model = gpunn.MLP([3, 1], device=device, seed=0)
    model.fit(data.iterable(shifted, standardize=True), epochs=20, lr=3e-2, verbose=False)
    assert model.standardizer is not None  # predict takes raw inputs and answers in the targets' units
    predicted = to_host(model.predict(shifted[0][0]))  # a CuPy array on the GPU: numpy.asarray refuses it
    assert numpy.abs(predicted - shifted[0][1]).max() < 0.1 * numpy.abs(shifted[0][1]).max()


def test_predict_files_round_trip_npy_parquet_and_csv(tmp_path, linear_pair):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from gpunn.data.files import predict_file

    _, _, X, _ = linear_pair
    model = gpunn.MLP([4, 8, 2], device="cpu", seed=0)
    expected = host(model.predict(X))
    table = pa.table({name: X[:, j] for j, name in enumerate("abcd")})
    numpy.save(tmp_path / "in.npy", X)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=3000)
    pcsv.write_csv(table, tmp_path / "in.csv")
    for src in ("npy", "parquet", "csv"):
        for dst in ("npy", "parquet", "csv"):
            out = tmp_path / f"out-{src}.{dst}"
            assert predict_file(model, tmp_path / f"in.{src}", out, chunk_rows=7000) == 20_000
            if dst == "npy":
                P = numpy.load(out, allow_pickle=False)
            elif dst == "csv":  # plain numbers: this model has no target names
                P = numpy.loadtxt(out, delimiter=",", ndmin=2)
            else:
                t = pq.read_table(out)
                assert t.column_names == ["y0", "y1"]
                P = numpy.column_stack([c.to_numpy() for c in t.columns])
            numpy.testing.assert_allclose(P, expected, rtol=1e-6 if dst == "csv" else 0)


def test_predict_files_know_their_format_by_an_extension_in_capitals_too(tmp_path):
    pytest.importorskip("pyarrow")
    from gpunn.data.files import predict_file

    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    X = numpy.arange(8.0).reshape(4, 2)
    numpy.savetxt(tmp_path / "IN.CSV", X, delimiter=",")
    assert predict_file(model, tmp_path / "IN.CSV", tmp_path / "OUT.NPY") == 4
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "OUT.NPY"), host(model.predict(X)))


def test_a_parquet_prediction_file_holds_a_float32_models_values_as_float32(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpunn.data.files import predict_file

    numpy.save(tmp_path / "in.npy", numpy.arange(8.0).reshape(4, 2))
    predict_file(gpunn.MLP([2, 1], device="cpu", seed=0), tmp_path / "in.npy", tmp_path / "out.parquet")
    assert pq.read_schema(tmp_path / "out.parquet").field("y0").type == "float"


def test_predict_file_reads_every_file_of_a_directory_and_refuses_an_npy_of_other_width(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpunn.data.files import predict_file

    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    X = numpy.arange(20.0).reshape(10, 2)
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"a": X[:6, 0], "b": X[:6, 1]}), tmp_path / "in" / "1.parquet")
    pq.write_table(pa.table({"a": X[6:, 0], "b": X[6:, 1]}), tmp_path / "in" / "2.parquet")
    assert predict_file(model, tmp_path / "in", tmp_path / "p.npy") == 10
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), host(model.predict(X)))
    numpy.save(tmp_path / "wide.npy", numpy.zeros((4, 3)))
    with pytest.raises(DataError, match=r"wide\.npy: 3 columns, the model takes 2 features"):
        predict_file(model, tmp_path / "wide.npy", tmp_path / "q.npy")


def test_a_prediction_file_replaces_a_killed_writers_temporary_and_leaves_none_when_the_rename_fails(tmp_path):
    from gpunn.data.files import predict_file

    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    numpy.save(tmp_path / "in.npy", numpy.ones((4, 2)))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f".out.npy.{dead}.x1.tmp").write_bytes(b"left by a killed run")
    predict_file(model, tmp_path / "in.npy", tmp_path / "out.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy"]
    (tmp_path / "taken.npy").mkdir()  # a directory the output cannot be renamed over
    (tmp_path / "taken.npy" / "keep").write_text("")
    with pytest.raises(OSError):
        predict_file(model, tmp_path / "in.npy", tmp_path / "taken.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy", "taken.npy"]


def test_an_npy_prediction_file_has_numpys_aligned_header_and_its_rows_in_the_files_dtype(tmp_path):
    from gpunn.data.files import NpyWriter, write_rows

    for columns in range(1, 40):
        path = tmp_path / f"p{columns}.npy"
        write_rows(NpyWriter(path, columns, "float32"), [numpy.ones((3, columns))])
        with open(path, "rb") as fh:
            numpy.lib.format.read_magic(fh)
            assert numpy.lib.format.read_array_header_1_0(fh)[0] == (3, columns) and fh.tell() % 64 == 0
    write_rows(NpyWriter(tmp_path / "cast.npy", 2, "float32"), [numpy.full((2, 2), 0.1), numpy.ones((1, 2), int)])
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "cast.npy"), numpy.array([[0.1, 0.1]] * 2 + [[1, 1]],
                                                                                    numpy.float32))


@pytest.mark.parametrize("refusal", ["parquet writer", "parquet dtype", "csv dtype", "npy dtype"])
def test_a_prediction_writer_refused_as_it_is_made_leaves_no_temporary_file(tmp_path, monkeypatch, refusal):
    """A writer refused after its temporary file was made (pyarrow's ParquetWriter or schema, a dtype the CSV or .npy
    writer cannot write) has removed that file before the error reaches the caller: it stayed in the output's
    directory until the next write to that path."""
    from gpunn.data import files

    kind = refusal.split()[0]
    dtype = ("float32" if refusal == "parquet writer" else
             {"parquet": "complex128", "csv": "int64", "npy": "dtype?"}[kind])
    if kind == "parquet":
        pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        def refuse(*args, **kwargs):
            raise OSError("the writer refused")
        if refusal == "parquet writer":
            monkeypatch.setattr(pq, "ParquetWriter", refuse)
    writer = {"parquet": files.TableWriter, "csv": files.CsvWriter, "npy": files.NpyWriter}[kind]
    with pytest.raises(Exception) as caught:  # (pyarrow's, numpy's: each its own)
        writer(tmp_path / f"p.{kind}", 2, dtype)
    assert caught.value.__traceback__ is not None and list(tmp_path.iterdir()) == []


def test_a_nan_in_a_parquet_input_names_its_row_and_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpunn.data.files import predict_file

    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 2.0, 3.0, float("nan")]}), tmp_path / "in.parquet")
    with pytest.raises(DataError, match=r"in\.parquet row 3: column 'b': nan is NaN; clean or impute it first$"):
        predict_file(gpunn.MLP([2, 1], device="cpu"), tmp_path / "in.parquet", tmp_path / "out.npy")


def test_a_failed_prediction_leaves_no_output_file(tmp_path):
    X = numpy.ones((100, 2))
    X[70, 1] = numpy.nan
    numpy.save(tmp_path / "in.npy", X)
    from gpunn.data.files import predict_file

    # the file's row, not the chunk's: "(rows 50-99): X contains ... (first at row 20, column 1)"
    with pytest.raises(DataError, match=r"in\.npy row 70: column 1: nan is NaN; clean or impute it first$"):
        predict_file(gpunn.MLP([2, 1], device="cpu"), tmp_path / "in.npy", tmp_path / "out.npy", chunk_rows=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


@pytest.mark.parametrize("out", ["out.npy", "out.csv"])
def test_an_output_that_cannot_be_put_in_place_is_named_and_leaves_no_temp_file(tmp_path, monkeypatch, out):
    pytest.importorskip("pyarrow")
    import os

    from gpunn.data.files import predict_file

    numpy.save(tmp_path / "in.npy", numpy.ones((100, 2)))
    real = os.replace

    def refuse(src, dst):  # as for an immutable file or a directory that turned read-only
        if str(dst).endswith(out):
            raise PermissionError(1, "Operation not permitted")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match=rf"cannot write .*{out}: Operation not permitted"):
        predict_file(gpunn.MLP([2, 1], device="cpu"), tmp_path / "in.npy", tmp_path / out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


class _FullDisk:
    """A writer's file (or pyarrow ParquetWriter) on a full disk: its writes raise ENOSPC, the rest is the file's."""

    def __init__(self, real, words="No space left on device"):
        self.real, self.words = real, words

    def write(self, data):
        raise OSError(errno.ENOSPC, self.words)

    write_batch = write

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
def test_a_full_disk_while_rows_are_written_names_out_and_leaves_no_temp_file(tmp_path, kind):
    """A prediction file's rows refused (a disk full, a quota): the error said "[Errno 28] No space left on device"
    (pyarrow: "Error writing bytes to file"), naming no file; OUT's earlier file stays as it was."""
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    from gpunn.data.files import output_writer, write_rows

    out = tmp_path / f"out.{kind}"
    write_rows(output_writer(out, 2, "float32"), [numpy.ones((3, 2))])
    before = out.read_bytes()
    writer = output_writer(out, 2, "float32")
    if kind == "parquet":
        writer.writer = _FullDisk(writer.writer, "Error writing bytes to file. Detail: [errno 28] No space left")
    else:
        writer.fh = _FullDisk(writer.fh)
    with pytest.raises(OSError, match=rf"cannot write .*out\.{kind}: (No space|Error writing)") as caught:
        write_rows(writer, [numpy.zeros((5, 2))])
    assert caught.value.errno == errno.ENOSPC
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [out.name]
    if kind != "parquet":  # (audit46b) the file closed though its last write failed: no descriptor left open
        assert writer.fh.closed


class _FullOnce(_FullDisk):
    """A disk full for one write (a quota, another process's file removed after): the next reach the file."""

    def write(self, data):
        if not hasattr(self, "refused"):
            self.refused = True
            super().write(data)
        return self.real.write(data)

    write_batch = write


class _FullAtClose(_FullDisk):
    """A disk full at the close's flush (or a network file system's error at close): written, closed, refused."""

    def write(self, data):
        return self.real.write(data)

    write_batch = write

    def close(self):
        self.real.close()
        raise OSError(errno.ENOSPC, self.words)


@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
@pytest.mark.parametrize("full", [_FullOnce, _FullAtClose], ids=["one write", "the close"])
def test_a_write_or_a_close_refused_alone_names_out(tmp_path, kind, full):
    """Each writer's write and close name OUT (audit46b: an .npy writer's write, a CSV or Parquet writer's close left
    unnamed passed every test: a write refused on every call was named by the close that failed after it)."""
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    from gpunn.data.files import output_writer, write_rows

    out = tmp_path / f"out.{kind}"
    writer = output_writer(out, 2, "float32")
    if kind == "parquet":
        writer.writer = full(writer.writer)
    else:
        writer.fh = full(writer.fh)
    with pytest.raises(OSError, match=rf"^\[Errno 28\] cannot write .*out\.{kind}: No space left on device$"):
        write_rows(writer, [numpy.zeros((5, 2))])
    assert list(tmp_path.iterdir()) == []


def test_a_writer_refused_as_it_is_made_names_out_closes_its_file_and_tells_its_refusal(tmp_path, monkeypatch):
    """(audit46b) A ParquetWriter refused on a full disk names OUT; a CSV writer refusing the dtype closes the file it
    opened (it was left open) and tells that refusal, not the error of a close that fails on a full disk."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpunn.data import files

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "ParquetWriter", full)
    with pytest.raises(OSError, match=r"^\[Errno 28\] cannot write .*out\.parquet: No space left on device$"):
        files.output_writer(tmp_path / "out.parquet", 2, "float32")
    opened = []

    def opening(*args, **kwargs):
        opened.append(_FullAtClose(open(*args, **kwargs)))
        return opened[-1]

    monkeypatch.setattr(files, "open", opening, raising=False)
    with pytest.raises(ValueError, match="not inexact"):
        files.output_writer(tmp_path / "out.csv", 2, "int64")
    assert len(opened) == 1 and opened[0].closed and list(tmp_path.iterdir()) == []


def test_a_written_file_and_its_directory_are_synced_however_out_is_named(tmp_path, monkeypatch):
    """(audit46b) OUT's file, then its directory (the rename), are fsynced: OUT named relative to the working
    directory too (its dirname is ''), and atomic_write's; a commit refused removes its temporary file itself
    (gpunn.bench.stream commits outside write_rows)."""
    import os

    from gpunn.atomic import atomic_write
    from gpunn.data.files import NpyWriter, output_writer, write_rows

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("reads the fsynced descriptors' paths from /proc/self/fd")
    synced, fsync = [], os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    monkeypatch.chdir(tmp_path)
    for out in ("out.npy", "out.csv"):
        write_rows(output_writer(out, 2, "float32"), [numpy.zeros((3, 2))])
        assert synced[-2].endswith(".tmp") and synced[-1] == str(tmp_path), synced
    atomic_write("run.bin", lambda fh: fh.write(b"x"))
    assert synced[-2].endswith(".tmp") and synced[-1] == str(tmp_path), synced

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = NpyWriter(str(tmp_path / "x.npy"), 2, "float32")
    writer.write(numpy.zeros((3, 2)))
    writer.close()
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*x\.npy: No space left on device$"):
        writer.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.npy", "run.bin"]


@pytest.mark.parametrize("out", ["out.npy", "out.csv", "out.parquet"])
def test_a_prediction_file_is_made_durable_before_it_replaces_the_earlier_one(tmp_path, monkeypatch, out):
    """A streamed OUT was renamed into place unsynced: a crash soon after could leave it empty or short where the
    earlier file was whole, and an error that a network file system reports at fsync (a full disk, a quota) went
    unseen. Its fsync failing now stops the write, naming OUT, with the earlier file in place."""
    pytest.importorskip("pyarrow")
    import os

    from gpunn.data.files import predict_file

    numpy.save(tmp_path / "in.npy", numpy.ones((100, 2)))
    model = gpunn.MLP([2, 1], device="cpu")
    predict_file(model, tmp_path / "in.npy", tmp_path / out)
    before = (tmp_path / out).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=rf"cannot write .*{out}: No space left on device"):
        predict_file(model, tmp_path / "in.npy", tmp_path / out)
    assert (tmp_path / out).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.npy", out])


@pytest.mark.parametrize("kind", ["npy", "synthetic", "pieces", "before pieces"])
def test_a_run_interrupted_mid_epoch_resumes_on_its_source_bit_for_bit(tmp_path, linear_pair, kind, interrupt_at):
    x, y, _, _ = linear_pair

    def source(cut=None):
        if kind == "npy":
            return data.npy(x, y, chunk_rows=1500, window=3, seed=4, standardize=True, validation_fraction=0.2)
        if kind == "synthetic":
            return data.synthetic("teacher", 3 * 65536, 4, 2, seed=4, window=2, validation_fraction=0.3)
        # 2 x 65,536 + 8,928 rows in pieces of 8,192 (a default cut: recorded, and taken again on resume);
        # "before pieces": a run cut in make's chunks, as every run was before (its checkpoint records no
        # chunk_rows), resumed on the source as it is made now, by default in pieces
        return data.synthetic("teacher", 140_000, 4, 2, seed=4, window=2, validation_fraction=0.1, chunk_rows=cut)

    cut = 65536 if kind == "before pieces" else None
    fit = dict(epochs=3, batch_size=512, lr=3e-3, schedule="cosine", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.HeldOutShareWarning)  # make's chunks hold out 47% of 140,000 rows
        straight = gpunn.MLP([4, 16, 2], device="cpu", seed=1)
        expected = straight.fit(source(cut), **fit)
        model = gpunn.MLP([4, 16, 2], device="cpu", seed=1)
        ckpt = tmp_path / "run.npz"
        stopped = model.fit(source(cut), **fit, callbacks=[gpunn.ModelCheckpoint(ckpt), interrupt_at(1, 9)])
    assert stopped.interrupted
    if kind != "npy":
        assert gpunn.load_checkpoint(ckpt).training["source"].get("chunk_rows") == (8192 if kind == "pieces" else None)
    again = source()
    if kind == "npy":  # the checkpoint's statistics are taken as they are: no pass over the file to compute them
        again.compute_standardizer = lambda: pytest.fail("the resume computed the statistics again")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.HeldOutShareWarning)  # "before pieces": cut as it was saved, 47%
        resumed = gpunn.load_checkpoint(ckpt, device="cpu").resume(again, verbose=False)
    numpy.testing.assert_array_equal(gpunn.load(ckpt, device="cpu").params, straight.params)
    assert resumed["loss"] == expected["loss"] and resumed["val_loss"] == expected["val_loss"]
    if kind == "pieces":  # a chunk size given is kept, and the resume refused when it is not the run's
        with pytest.warns(data.HeldOutShareWarning), \
                pytest.raises(ValueError, match=r"another source: chunk_rows was 8192, now 65536; chunks was 17, now 3"):
            gpunn.load_checkpoint(ckpt, device="cpu").resume(source(cut=65536), verbose=False)
    if kind == "before pieces":  # (a synthetic checkpoint records no chunk_rows for make's chunks: 65,536)
        with pytest.raises(ValueError, match=r"another source: chunk_rows was 65536, now 8192; chunks was 3, now 17"):
            gpunn.load_checkpoint(ckpt, device="cpu").resume(source(cut=8192), verbose=False)


def test_resuming_on_other_data_is_refused_saying_what_differs(tmp_path, linear_pair):
    x, y, _, _ = linear_pair
    ckpt = tmp_path / "run.npz"
    model = gpunn.MLP([4, 2], device="cpu", seed=1)
    model.fit(data.npy(x, y, chunk_rows=1500, seed=4), epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(ckpt)])
    with pytest.raises(ValueError, match=r"another source: seed was 4, now 5"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=5), epochs=2)
    with pytest.raises(ValueError, match=r"another source: window was 16, now 2"):  # (the chunks shuffled together)
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4, window=2), epochs=2)
    # standardized now, not then: bind would compute statistics the run never trained in (mut17e's F42)
    with pytest.raises(ValueError, match=r"another source: standardize was False, now True"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4, standardize=True),
                                                         epochs=2)
    with pytest.raises(ValueError, match=r"another source: shuffle was True, now False"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4, shuffle=False),
                                                         epochs=2)
    # the same files moved elsewhere are the same data
    moved = tmp_path / "moved"
    moved.mkdir()
    x.rename(moved / "features.npy")
    y.rename(moved / "targets.npy")
    resumed = gpunn.load_checkpoint(ckpt, device="cpu").resume(
        data.npy(moved / "features.npy", moved / "targets.npy", chunk_rows=1500, seed=4), epochs=2, verbose=False)
    assert resumed["epoch"] == [1, 2]

def _files_of(kind, folder, X, Y):
    """X and Y written in ``folder`` as a ``kind`` source's files, and that source (chunks of about 1,500 rows)."""
    folder.mkdir(exist_ok=True)
    if kind == "npy":
        numpy.save(folder / "x.npy", X)
        numpy.save(folder / "y.npy", Y)
        return data.npy(folder / "x.npy", folder / "y.npy", chunk_rows=1500, seed=4)
    columns = {**{f"x{j}": X[:, j] for j in range(X.shape[1])}, **{f"y{j}": Y[:, j] for j in range(Y.shape[1])}}
    target = [f"y{j}" for j in range(Y.shape[1])]
    if kind == "csv":
        rows = numpy.column_stack(list(columns.values()))
        (folder / "t.csv").write_text(",".join(columns) + "\n" + "".join(",".join(map(repr, r.tolist())) + "\n"
                                                                         for r in rows))
        return data.csv(folder / "t.csv", target=target, block_size=100_000, seed=4)
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "parts").mkdir(exist_ok=True)
    half = len(X) // 2
    for name, rows in (("a", slice(None, half)), ("b", slice(half, None))):  # a directory of two files: one dataset
        pq.write_table(pa.table({k: v[rows] for k, v in columns.items()}), folder / "parts" / f"{name}.parquet")
    return data.parquet(folder / "parts", target=target, chunk_rows=1500, seed=4)


@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
def test_a_resume_on_files_of_the_runs_shape_with_other_values_is_refused_and_on_a_copy_goes_on(tmp_path, kind):
    """A resume compared a file source's description (rows, widths, chunks, seed, columns), paths aside, not its
    values: a run on X.npy and Y.npy resumed on other files of their shape trained on without a word (api45: an X of
    other values took the loss from 0.26 to 12,024). A checksum of the files' sizes and of bytes sampled through
    them (gpunn.data.contents) now refuses other values; a copy of the files elsewhere still resumes, and a
    checkpoint from before the checksum was recorded resumes as it did."""
    if kind != "npy":
        pytest.importorskip("pyarrow")
    from checkpoint_edits import rewrite_meta

    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((6000, 3))
    Y = X @ rng.standard_normal((3, 2))
    ckpt = tmp_path / "run.npz"
    gpunn.MLP([3, 2], device="cpu", seed=1).fit(_files_of(kind, tmp_path / "run", X, Y), epochs=1, verbose=False,
                                                callbacks=[gpunn.ModelCheckpoint(ckpt)])
    old = tmp_path / "old.npz"  # as gpunn wrote it before the checksum
    rewrite_meta(ckpt, old, lambda meta: [meta["training"]["source"].pop(k) for k in ("contents", "contents_rule")])
    fit = dict(epochs=2, verbose=False)
    assert gpunn.load_checkpoint(ckpt).resume(_files_of(kind, tmp_path / "copy", X, Y), **fit)["epoch"] == [1, 2]
    # an .npy pair's two files, or the table's file or directory (said in the singular: "t.csv have changed")
    either, thing, has, its, them, it = {
        "npy": (r"\S*{0}\S*x.npy and \S*{0}\S*y.npy", "files", "have", "their sizes", "them", "them"),
        "csv": (r"\S*{0}\S*t.csv", "file", "has", "its size", "it", "it"),
        "parquet": (r"\S*{0}\S*parts", "directory", "has", "its files' sizes", "them", "it")}[kind]
    with pytest.raises(ValueError, match=rf"run.npz was trained on other values: {either.format('other')} {has} the "
                                         rf"run's shape but not its values \(a checksum of {its} and of bytes "
                                         rf"sampled through {them} differs\)\. Resume with the run's {thing} \(the run "
                                         rf"read {either.format('copy')}\); to train its model on these, train the "
                                         r"model gpunn.load\(path\) returns further"):
        gpunn.load_checkpoint(ckpt).resume(_files_of(kind, tmp_path / "other", X, Y + 1), epochs=3, verbose=False)
    with pytest.raises(ValueError, match=rf"run.npz was trained on other values: {either.format('copy')} {has} changed "
                                         rf"since the run read {it} \(.*\)\. Resume with the {thing} as the run "
                                         rf"read {it}; to train"):
        gpunn.load_checkpoint(ckpt).resume(_files_of(kind, tmp_path / "copy", X, Y + 1), epochs=3, verbose=False)
    assert gpunn.load_checkpoint(old).resume(_files_of(kind, tmp_path / "other", X, Y + 1), **fit)["epoch"] == [1, 2]


def test_the_checksum_is_of_the_files_a_source_reads_though_their_names_now_hold_others(tmp_path, linear_pair):
    """The checksum is taken at the first checkpoint: an .npy pair's through the descriptors the source reads, so a
    file renamed over X's name since the source opened it (which reads on from the one opened) is not the one
    recorded, and a removed one is still read. A Parquet dataset's is taken as the source opens its files (pyarrow
    reads on from those, but gives no descriptor to read them by): taken at the first checkpoint, by name, a file
    renamed over one of them was recorded, and a removed one left the checkpoint without a checksum."""
    pytest.importorskip("pyarrow")
    x, y, X, Y = linear_pair
    source = data.npy(x, y, chunk_rows=1500, seed=4)
    numpy.save(tmp_path / "other.npy", X + 1)
    (tmp_path / "other.npy").replace(x)  # another file under X's name; the source reads the one it opened
    ckpt = tmp_path / "run.npz"
    fit = dict(epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(ckpt)])
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(source, **fit)
    run = _files_of("npy", tmp_path / "run", X, Y)  # the values the run read, in files of their own
    assert gpunn.load_checkpoint(ckpt).resume(run, epochs=2, verbose=False)["epoch"] == [1, 2]
    with pytest.raises(ValueError, match=r"trained on other values: .*x.npy and .*y.npy have the run's shape but not "):
        gpunn.load_checkpoint(ckpt).resume(data.npy(x, y, chunk_rows=1500, seed=4), epochs=3, verbose=False)
    source = data.npy(tmp_path / "run" / "x.npy", tmp_path / "run" / "y.npy", chunk_rows=1500, seed=4)
    (tmp_path / "run" / "x.npy").unlink()  # removed: read through its descriptor, checksum and all
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(source, **fit)
    assert gpunn.load_checkpoint(ckpt).training["source"]["contents"] == run.config()["contents"]
    with _files_of("parquet", tmp_path / "copy", X, Y) as copy:
        read = copy.config()["contents"]
    parquet = _files_of("parquet", tmp_path / "table", X, Y)
    _files_of("parquet", tmp_path / "new", X, Y + 1).close()
    (tmp_path / "new" / "parts" / "b.parquet").replace(tmp_path / "table" / "parts" / "b.parquet")
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(parquet, **fit)
    recorded = gpunn.load_checkpoint(ckpt).training["source"]
    assert recorded["kind"] == "parquet" and recorded["rows"] + parquet.validation_rows == 20_000
    assert recorded["contents"] == read
    with pytest.raises(ValueError, match=r"trained on other values: \S*table\S*parts has changed since the run read"):
        gpunn.load_checkpoint(ckpt).resume(data.parquet(tmp_path / "table" / "parts", target=["y0", "y1"],
                                                        chunk_rows=1500, seed=4), epochs=2, verbose=False)
    parquet = _files_of("parquet", tmp_path / "table", X, Y)
    for piece in (tmp_path / "table" / "parts").iterdir():
        piece.unlink()
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(parquet, **fit)
    assert gpunn.load_checkpoint(ckpt).training["source"]["contents"] == read


def test_a_resume_with_a_validation_source_whose_files_changed_is_refused(tmp_path, linear_pair):
    x, y, X, Y = linear_pair
    ckpt = tmp_path / "run.npz"
    held = _files_of("npy", tmp_path / "held", X[:500], Y[:500])
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(data.npy(x, y, chunk_rows=1500, seed=4), epochs=1, verbose=False,
                                                validation_data=held, callbacks=[gpunn.ModelCheckpoint(ckpt)])
    changed = Y[:500].copy()
    changed[499, 1] += 1  # one value, in the last row: a file this small is read whole
    with pytest.raises(ValueError, match=r"run.npz was validated on other values: \S*held\S*x.npy and \S*held\S*y.npy "
                                         r"have changed since the run read them \(.*\)\. Resume with the same "
                                         r"validation_data"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4), epochs=2,
                                                         validation_data=_files_of("npy", tmp_path / "held",
                                                                                   X[:500], changed), verbose=False)


def test_a_resume_whose_files_changed_in_a_held_out_chunk_alone_is_refused(tmp_path):
    """A source's held-out chunks are in its files' sampled checksum as its training chunks are (a small file is
    read whole): a value changed there alone, targets or weights, is refused as other values, as validation_fraction's
    held-out rows of in-memory arrays are."""
    rng = numpy.random.default_rng(0)
    X, Y, w = rng.standard_normal((600, 4)), rng.standard_normal((600, 2)), rng.uniform(0.5, 2, 600)

    def source(name, Y, w):
        for file, values in (("x", X), ("y", Y), ("w", w)):
            numpy.save(tmp_path / f"{name}_{file}.npy", values)
        return data.npy(tmp_path / f"{name}_x.npy", tmp_path / f"{name}_y.npy", weights=tmp_path / f"{name}_w.npy",
                        chunk_rows=100, validation_fraction=0.2, seed=4)

    run, ckpt = source("run", Y, w), tmp_path / "run.npz"
    held = run.validation_chunks[0] * 100 + 99  # the last row of a held-out chunk
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(run, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(ckpt)])
    other_y, other_w = Y.copy(), w.copy()
    other_y[held, 1] += 1
    other_w[held] += 1
    for other in (source("other", other_y, w), source("other", Y, other_w)):
        assert list(other.validation_chunks) == list(run.validation_chunks)
        with pytest.raises(ValueError, match=r"run.npz was trained on other values: \S*other_x.npy, \S*other_y.npy "
                                             r"and \S*other_w.npy have the run's shape but not its values"):
            gpunn.load_checkpoint(ckpt, device="cpu").resume(other, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(ckpt, device="cpu").resume(source("same", Y, w), epochs=2,
                                                            verbose=False)["epoch"] == [1, 2]


def test_resuming_with_another_validation_source_is_refused_saying_what_differs(tmp_path, linear_pair):
    x, y, X, Y = linear_pair
    for name, rows in (("v500", 500), ("v400", 400)):
        numpy.save(tmp_path / f"{name}x.npy", X[:rows])
        numpy.save(tmp_path / f"{name}y.npy", Y[:rows])

    def held(name, **options):
        return data.npy(tmp_path / f"{name}x.npy", tmp_path / f"{name}y.npy", **options)

    ckpt = tmp_path / "run.npz"
    model = gpunn.MLP([4, 2], device="cpu", seed=1)
    model.fit(data.npy(x, y, chunk_rows=1500, seed=4), epochs=1, verbose=False, validation_data=held("v500"),
              callbacks=[gpunn.ModelCheckpoint(ckpt)])
    with pytest.raises(ValueError, match=r"validated on another source: .*rows was 500, now 400"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4), epochs=2,
                                                         validation_data=held("v400"), verbose=False)
    with pytest.raises(ValueError, match=r"validated on a source, and validation_data is arrays now"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4), epochs=2,
                                                         validation_data=(X[:500], Y[:500]), verbose=False)
    # what a validation source's scores do not depend on (it is read whole, in file order) may differ
    resumed = gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4), epochs=2,
                                                               validation_data=held("v500", seed=9, window=2),
                                                               verbose=False)
    assert resumed["epoch"] == [1, 2]

def test_a_run_on_a_source_resumes_on_that_source_not_on_arrays_and_the_reverse(tmp_path, linear_pair):
    """A source's batches come from its windows, in-memory arrays' from a full shuffle: a run on an .npy pair
    resumed with those files' arrays (same rows, no held-out chunks) went on without a word on other batches."""
    x, y, X, Y = linear_pair
    ckpt = tmp_path / "run.npz"
    for fit in (gpunn.MLP([4, 2], device="cpu", seed=1).fit, gpunn.Ensemble([4, 2], 2, seed=1).fit):
        fit(data.npy(x, y, chunk_rows=1500, seed=4), epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(ckpt)])
        with pytest.raises(ValueError, match=r"trained on a gpunn.data source \(npy\); in-memory arrays give other "
                                             r"batches .*resume\(source\)"):
            gpunn.load_checkpoint(ckpt, device="cpu").resume(X, Y, epochs=2, verbose=False)
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(ckpt)])
    with pytest.raises(ValueError, match=r"trained on in-memory arrays; a gpunn.data source gives other batches .*"
                                         r"resume\(X, Y\)"):
        gpunn.load_checkpoint(ckpt, device="cpu").resume(data.npy(x, y, chunk_rows=1500, seed=4), epochs=2,
                                                         verbose=False)



def test_ctrl_c_part_way_through_an_epoch_of_an_iterable_keeps_the_last_epochs_checkpoint(interrupt_at, tmp_path):
    """An iterable source cannot resume part-way through an epoch: the checkpoint Ctrl-C wrote there replaced
    the end of epoch 1's, and no resume could continue it ("cannot resume part-way"). The file now stays
    at epoch 1's end (with a warning saying so) and resumes to the uninterrupted run's weights."""
    X, Y = datasets.make("teacher", 1000, 4, n_outputs=1, noise=0.1, seed=3, device="cpu")
    pieces = [(X[i:i + 100], Y[i:i + 100]) for i in range(0, 1000, 100)]
    fit = dict(epochs=3, batch_size=64, verbose=False)
    straight = gpunn.MLP([4, 8, 1], seed=1, device="cpu")
    straight.fit(data.iterable(pieces), **fit)
    path = tmp_path / "run.npz"
    with pytest.warns(RuntimeWarning, match=r"part-way through epoch 2, and IterableSource cannot resume .*run.npz "
                                            r"was left as it was"):
        stopped = gpunn.MLP([4, 8, 1], seed=1, device="cpu").fit(
            data.iterable(pieces), callbacks=[interrupt_at(1, 3), gpunn.ModelCheckpoint(path)], **fit)
    assert stopped.interrupted
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert (ckpt.state.epoch, ckpt.state.batch) == (1, 0)
    ckpt.resume(data.iterable(pieces), verbose=False)
    numpy.testing.assert_array_equal(ckpt.model.params, straight.params)


def test_a_finished_iterable_run_writes_its_last_epoch_at_the_end(tmp_path):
    """The end-of-run write is skipped only part-way through an epoch: a finished run on an iterable whose last
    epoch was no ModelCheckpoint(every=2) epoch still ends with that epoch's file, and no warning (mut9)."""
    X, Y = datasets.make("teacher", 300, 4, n_outputs=1, noise=0.1, seed=3, device="cpu")
    pieces = [(X[i:i + 100], Y[i:i + 100]) for i in range(0, 300, 100)]
    path = tmp_path / "run.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpunn.MLP([4, 8, 1], seed=1, device="cpu").fit(data.iterable(pieces), epochs=3, batch_size=64, verbose=False,
                                                       callbacks=[gpunn.ModelCheckpoint(path, every=2)])
    assert gpunn.load_checkpoint(path, device="cpu").state.epoch == 3



@pytest.mark.gpu
def test_on_the_gpu_file_windows_go_through_pinned_buffers_and_arrive_intact(gpu, linear_pair, monkeypatch):
    import cupyx

    x, y, X, Y = linear_pair
    made = []
    real = cupyx.empty_pinned
    monkeypatch.setattr(cupyx, "empty_pinned", lambda *a, **k: made.append(a) or real(*a, **k))
    source = data.npy(x, y, chunk_rows=3000, window=2, seed=3, device="cuda", dtype="float64")
    batches = [(b[0].get(), b[1].get()) for b in source.batches(0, 1000)]
    assert len(made) == 4  # two pinned slots, each an X and a Y buffer
    Xs = numpy.concatenate([b[0] for b in batches])
    order = numpy.argsort(Xs[:, 0])
    numpy.testing.assert_array_equal(Xs[order], X[numpy.argsort(X[:, 0])])
    for (a, _), (b, _) in zip(batches[7:], [(b[0].get(), b[1].get()) for b in source.batches(0, 1000, 7)]):
        numpy.testing.assert_array_equal(a, b)  # a resume part-way reads the same batches through the pipeline


def _streams_hook():
    from bench_scripts import load

    return load("bench/gpu_checks/streams.py", "streams_hook")


def test_the_streams_gpu_check_hook_runs_its_checks_on_the_cpu(tmp_path, capsys):
    assert _streams_hook().main(["--device", "cpu", "--out", str(tmp_path), "--max-seconds", "1"]) == 0  # no time to time
    out = capsys.readouterr().out
    assert out.count("ok  ") == 4 and "streams: pass" in out
    assert (tmp_path / "streams.json").exists()


@pytest.mark.gpu
def test_the_streams_hook_measures_every_part_on_the_gpu_at_small_sizes(gpu, tmp_path, capsys):
    import json

    assert _streams_hook().main(["--device", "cuda", "--out", str(tmp_path), "--max-seconds", "600", "--quick"]) == 0
    report = json.loads((tmp_path / "streams.json").read_text())
    assert set(report["throughput"]) == {"synthetic", "npy_large", "npy"}  # the 10^9-row stream only at full size
    assert report["throughput"]["synthetic"]["generation_host_share"] > 0
    large = report["throughput"]["npy_large"]
    assert large["h2d_gbps_pinned"] > 0 and 0 < large["copy_share"] and large["window_rows"] == 512
    assert "npy_large:" in capsys.readouterr().out
    # every timed fit, from a source or from memory, ran the default CUDA graph, which falls back silently: a
    # ratio of an eager stream fit to a captured in-memory one would measure the step, not the data path
    steps = {name: t["steps"] for name, t in report["throughput"].items()}
    assert all(set(s.values()) == {"graph"} and len(s) == 2 for s in steps.values()), steps


def test_a_file_cut_short_between_epochs_stops_the_run_naming_it_and_the_checkpoint_stays(tmp_path):
    numpy.save(tmp_path / "x.npy", numpy.ones((6000, 2)))
    numpy.save(tmp_path / "y.npy", numpy.ones(6000))

    class CutTheFile(gpunn.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 1:
                with open(tmp_path / "x.npy", "r+b") as fh:
                    fh.truncate(20_000)

    source = data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1000)
    ckpt = tmp_path / "run.npz"
    with pytest.raises(DataError, match=r"x\.npy: truncated"):
        gpunn.MLP([2, 1], device="cpu", seed=0).fit(source, epochs=2, batch_size=100, verbose=False,
                                                    callbacks=[gpunn.ModelCheckpoint(ckpt), CutTheFile()])
    assert gpunn.load_checkpoint(ckpt, device="cpu").epoch == 1  # the last good state, still loadable


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_table_damaged_between_epochs_stops_the_run_naming_it_and_the_checkpoint_stays(tmp_path, kind):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    values = numpy.arange(6000, dtype=numpy.float64)
    table, path = pa.table({"x": values / 6000, "y": values / 3000}), tmp_path / f"t.{kind}"
    if kind == "parquet":
        pq.write_table(table, path, row_group_size=1000)
        source = data.parquet(path, target="y")
    else:
        pcsv.write_csv(table, path)
        source = data.csv(path, target="y", block_size=1 << 12)
    size = path.stat().st_size

    class Damage(gpunn.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 1:
                with open(path, "r+b") as fh:  # zero the middle (Parquet keeps its footer), cut a CSV short
                    if kind == "parquet":
                        fh.seek(size // 4)
                        fh.write(b"\0" * (size // 2))
                    else:
                        fh.truncate(size // 2)

    ckpt = tmp_path / "run.npz"
    with pytest.raises(DataError, match=rf"t\.{kind}\b.*(could not be read|changed since it was indexed)"):
        gpunn.MLP([1, 1], device="cpu", seed=0).fit(source, epochs=2, batch_size=100, verbose=False,
                                                    callbacks=[gpunn.ModelCheckpoint(ckpt), Damage()])
    assert gpunn.load_checkpoint(ckpt, device="cpu").epoch == 1  # the last good state, still loadable


def _written_by_hand(X, Y):
    """A DataSource class with the protocol's members alone: (X, Y) in order, batch by batch."""

    class ByHand:
        rows, n_features, n_outputs, resumable = X.shape[0], X.shape[1], Y.shape[1], True

        def batches(self, epoch, batch_size, first_batch=0):
            for start in range(first_batch * batch_size, self.rows, batch_size):
                yield X[start:start + batch_size], Y[start:start + batch_size]

        def config(self):
            return {"kind": "by hand"}

    return ByHand


def test_a_data_source_written_by_hand_with_the_protocols_members_alone_trains():
    """gpunn.training.protocols.DataSource lists rows, n_features, n_outputs, resumable, batches and config; fit
    called the source's bind as well, which gpunn's sources have and the protocol does not: AttributeError. A
    source without bind is taken as it says, its batches on the model's device and dtype, and trains as fit(X, Y)
    does on the same batches in the same order."""
    X, Y = gpunn.datasets.make("teacher", n_samples=300, n_features=5, n_outputs=1, seed=0, device="cpu")

    InOrder = _written_by_hand(X, Y)
    by_hand, arrays = (gpunn.MLP([5, 8, 1], device="cpu", seed=0) for _ in range(2))
    h = by_hand.fit(InOrder(), epochs=2, batch_size=64, verbose=False)
    h_arrays = arrays.fit(X, Y, epochs=2, batch_size=64, shuffle=False, verbose=False)
    numpy.testing.assert_array_equal(by_hand.params, arrays.params)
    assert h["loss"] == h_arrays["loss"]


def test_a_source_written_by_hand_is_refused_what_it_cannot_do_saying_what_to_pass():
    """A DataSource with the protocol's members (and bind) alone cannot hold out chunks (validation_fraction),
    serve as validation data (no ordered_windows) or apply a model's standardization statistics (that model
    takes raw units): each refused, naming it and what to pass instead. standardize_arrays gives a model the
    statistics of (X, Y) once: a model that has them (a resume) keeps its own."""
    from gpunn.data.binding import standardize_arrays

    X, Y = gpunn.datasets.make("teacher", n_samples=300, n_features=5, n_outputs=1, seed=0, device="cpu")

    class ByHand(_written_by_hand(X, Y)):
        def bind(self, backend, dtype):
            pass

    model = gpunn.MLP([5, 8, 1], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"^ByHand cannot hold out chunks; pass validation_data$"):
        model.fit(ByHand(), epochs=1, validation_fraction=0.2, verbose=False)
    with pytest.raises(ValueError, match=r"^ByHand cannot serve as validation data; pass a chunked source or arrays$"):
        model.fit(ByHand(), epochs=1, validation_data=ByHand(), verbose=False)
    standardize_arrays(model, X, Y)
    statistics = model.standardizer
    assert statistics is not None
    standardize_arrays(model, 2 * X, Y)
    assert model.standardizer is statistics
    with pytest.raises(ValueError, match=r"^the model has standardization statistics \(it takes raw units\) and ByHand "
                                         r"cannot apply them: pass a gpunn.data source or arrays \(X, Y\)$"):
        model.fit(ByHand(), epochs=1, verbose=False)


def test_a_source_that_names_its_features_and_not_its_targets_trains_and_the_model_keeps_no_column_names():
    """A hand-written source may name its features alone (``feature_names``, no ``target_names``): the model learns
    column names only from a source that names both (gpunn.data.binding.prepare_source), so this one trains and
    leaves ``data_columns`` None, rather than failing on the names it lacks."""
    X, Y = gpunn.datasets.make("teacher", n_samples=200, n_features=3, n_outputs=1, seed=0, device="cpu")

    class FeaturesNamed(_written_by_hand(X, Y)):
        feature_names = ["a", "b", "c"]

    model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
    model.fit(FeaturesNamed(), epochs=1, batch_size=50, verbose=False)
    assert model.data_columns is None


def test_a_validation_set_of_one_row_from_a_source_is_refused_before_training(tmp_path):
    """R² needs two rows: one held-out chunk of one row (validation_fraction of a source) or a validation source of
    one row is refused as fit starts, naming which option made it, as arrays of one validation row are."""
    rng = numpy.random.default_rng(0)
    for name, rows in (("x", 3), ("x1", 1)):
        numpy.save(tmp_path / f"{name}.npy", rng.standard_normal((rows, 2)).astype("float32"))
        numpy.save(tmp_path / f"y{name[1:]}.npy", rng.standard_normal((rows, 1)).astype("float32"))
    model = gpunn.MLP([2, 4, 1], device="cpu", seed=0)
    one_row = r" gives a validation set of 1 row; R² needs at least 2 rows to score it"
    with pytest.raises(ValueError, match=r"^NpySource's validation_fraction=0.3 \(whole chunks\)" + one_row):
        model.fit(data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1), epochs=1, verbose=False,
                  validation_fraction=0.3)
    with pytest.raises(ValueError, match=r"^validation_data \(NpySource\)" + one_row):
        model.fit(data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1), epochs=1, verbose=False,
                  validation_data=data.npy(tmp_path / "x1.npy", tmp_path / "y1.npy"))


def test_fit_holds_out_a_sources_chunks_for_validation_fraction_but_not_with_validation_data_too(tmp_path):
    """fit(source, validation_fraction=f) holds out whole chunks of the source (about f of its rows), scored each
    epoch; with validation_data as well it is refused (either would be the validation, not both), as validation_data
    that is neither a pair of arrays nor a source is, or a pair of other row counts or of one row, or a model of
    another width."""
    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "x.npy", rng.standard_normal((1000, 3)).astype("float32"))
    numpy.save(tmp_path / "y.npy", rng.standard_normal((1000, 1)).astype("float32"))
    source = data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=100)
    model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
    with pytest.raises(ValueError, match="^pass validation_data or validation_fraction, not both$"):
        model.fit(source, epochs=1, validation_fraction=0.3, verbose=False,
                  validation_data=(numpy.ones((5, 3), "float32"), numpy.ones((5, 1), "float32")))
    for no_pair in (numpy.ones((3, 3), "float32"), 5):  # three rows unpack as three values; a number as none
        with pytest.raises(ValueError, match=r"^validation_data must be a pair \(X_val, Y_val\) or a data source$"):
            model.fit(source, epochs=1, validation_data=no_pair, verbose=False)
    ones = numpy.ones((5, 3), "float32")
    with pytest.raises(ValueError, match="^X_val has 5 rows but Y_val has 4; they must match$"):
        model.fit(source, epochs=1, validation_data=(ones, ones[:4, :1]), verbose=False)
    with pytest.raises(ValueError, match="^validation_data gives a validation set of 1 row; R² needs at least 2"):
        model.fit(source, epochs=1, validation_data=(ones[:1], ones[:1, :1]), verbose=False)
    # it said "1 output(s)", and no word of how to fit the model to the source
    with pytest.raises(ValueError, match=r"^NpySource gives 3 features and 1 output; the model takes 3 and gives 2: "
                                         r"make the model from the source's widths, "
                                         r"gpunn.MLP\(\[source.n_features, 64, source.n_outputs\]\)$"):
        gpunn.MLP([3, 4, 2], device="cpu").fit(source, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"gpunn.Ensemble\(\[source.n_features, 64, source.n_outputs\], 2\)$"):
        gpunn.Ensemble([3, 4, 2], 2, device="cpu").fit(source, epochs=1, verbose=False)
    history = model.fit(source, epochs=2, batch_size=100, validation_fraction=0.3, verbose=False)
    assert source.validation_rows == 300 and source.rows == 700 and len(history["val_loss"]) == 2


def test_a_csv_renamed_over_after_its_last_read_is_checksummed_as_the_run_read_it(tmp_path, linear_pair):
    """(audit46c) A CSV source's checksum reads the file through the descriptor it indexed and read (7abe0b6e): another
    file renamed over its name after the epoch's reads, before the first checkpoint, is not the one recorded."""
    pytest.importorskip("pyarrow")
    X, Y = linear_pair[2][:3000], linear_pair[3][:3000]
    source = _files_of("csv", tmp_path / "run", X, Y)
    with _files_of("csv", tmp_path / "copy", X, Y) as copy:
        read = copy.config()["contents"]
    _files_of("csv", tmp_path / "new", X, Y + 1).close()

    class RenameOver(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            (tmp_path / "new" / "t.csv").replace(tmp_path / "run" / "t.csv")

    ckpt = tmp_path / "run.npz"
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(source, epochs=1, verbose=False,
                                                callbacks=[RenameOver(), gpunn.ModelCheckpoint(ckpt)])
    assert gpunn.load_checkpoint(ckpt).training["source"]["contents"] == read


def test_a_checksum_that_cannot_be_read_or_of_another_rule_leaves_the_description_alone_compared(tmp_path, linear_pair,
                                                                                                 monkeypatch):
    """(audit46c) A file source whose checksum cannot be read (OSError) writes its checkpoint without one, and a resume
    on such a source, or from a checkpoint whose checksum another rule made (contents_rule), compares the
    description alone, as a checkpoint from before the checksum does."""
    from checkpoint_edits import rewrite_meta

    from gpunn.data import base
    from gpunn.data.contents import sampled_checksum

    x, y, X, Y = linear_pair
    ckpt, fit = tmp_path / "run.npz", dict(epochs=1, verbose=False)
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(data.npy(x, y, chunk_rows=1500, seed=4), **fit,
                                                callbacks=[gpunn.ModelCheckpoint(ckpt)])
    recorded = gpunn.load_checkpoint(ckpt).training["source"]  # (an .npy pair's: X's file, then Y's)
    assert (recorded["contents"], recorded["contents_rule"]) == (sampled_checksum([x, y]), 1)
    other = _files_of("npy", tmp_path / "other", X, Y + 1)
    with pytest.raises(ValueError, match="trained on other values"):
        gpunn.load_checkpoint(ckpt).resume(other, epochs=2, verbose=False)
    ruled = tmp_path / "rule2.npz"  # (a later gpunn's rule)
    rewrite_meta(ckpt, ruled, lambda meta: meta["training"]["source"].update(contents_rule=2))
    assert gpunn.load_checkpoint(ruled).resume(_files_of("npy", tmp_path / "other", X, Y + 1), epochs=2,
                                               verbose=False)["epoch"] == [1, 2]

    def unreadable(files):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(base, "sampled_checksum", unreadable)
    assert gpunn.load_checkpoint(ckpt).resume(_files_of("npy", tmp_path / "other", X, Y + 1), epochs=2,
                                              verbose=False)["epoch"] == [1, 2]
    unread = tmp_path / "unread.npz"
    gpunn.MLP([4, 2], device="cpu", seed=1).fit(data.npy(x, y, chunk_rows=1500, seed=4), **fit,
                                                callbacks=[gpunn.ModelCheckpoint(unread)])
    assert not {"contents", "contents_rule"} & set(gpunn.load_checkpoint(unread).training["source"])
