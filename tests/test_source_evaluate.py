"""evaluate, score and predict on a data source: every row streamed, equal to the same rows loaded whole."""

import re

import numpy
import pytest

import gpunn
from gpunn import data
from gpunn.training.loop import TrainingDiverged


@pytest.fixture
def files(tmp_path):
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(700, 3)) * 50 + 10  # raw units far from standardized ones: a wrong scaling shows
    Y = X @ rng.normal(size=(3, 2)) + 1e3
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    return tmp_path / "X.npy", tmp_path / "Y.npy", X, Y


def host(a):
    return a.get() if hasattr(a, "get") else numpy.asarray(a)


def close(a, b, rtol):
    return all(numpy.allclose(a[k], b[k], rtol=rtol, atol=0) for k in a)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-6)])
def test_a_source_scores_every_row_as_the_arrays_do(files, device, dtype, rtol):
    x, y, X, Y = files
    model = gpunn.MLP([3, 8, 2], dtype=dtype, seed=1, device=device)
    source = data.npy(x, y, chunk_rows=100, standardize=True, validation_fraction=0.2)
    model.fit(source, epochs=1, batch_size=64, lr=1e-2, verbose=False)
    # all 700 rows (training and held-out chunks), raw, with the model's standardizer: as evaluate(X, Y)
    assert close(model.evaluate(source), model.evaluate(X, Y), rtol)
    assert model.score(source) == pytest.approx(model.score(X, Y), rel=rtol)
    P, Q = model.predict(source), model.predict(X)
    assert P.shape == (700, 2) and P.dtype == Q.dtype
    assert numpy.allclose(model.backend.to_host(P), model.backend.to_host(Q), rtol=rtol, atol=0)
    assert source.standardize is True and source.standardizer is model.standardizer  # left as it was


def test_a_model_without_statistics_is_not_given_the_sources_own(files):
    x, y, X, Y = files
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1)
    model.fit(X[:100], Y[:100], epochs=1, verbose=False)
    source = data.npy(x, y, chunk_rows=100, standardize=True)  # a test set's own statistics: not the model's
    assert close(model.evaluate(source), model.evaluate(X, Y), 1e-12)


def test_an_ensemble_scores_a_source_member_by_member(files):
    x, y, X, Y = files
    ens = gpunn.Ensemble([3, 8, 2], n_models=3, dtype="float64", seed=1)
    ens.fit(data.npy(x, y, chunk_rows=100, standardize=True), epochs=1, batch_size=64, lr=1e-2, verbose=False)
    source = data.npy(x, y, chunk_rows=300)
    assert close(ens.evaluate(source), ens.evaluate(X, Y), 1e-12)
    assert numpy.allclose(ens.predict(source), ens.predict(X), rtol=1e-12, atol=0)


def test_what_is_no_source_or_has_no_order_is_refused_by_name(files):
    x, y, X, Y = files
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1)
    source = data.npy(x, y, chunk_rows=100)
    with pytest.raises(TypeError, match=r"a source holds its targets; pass it without Y, e\.g\. evaluate\(source\)"):
        model.evaluate(source, Y)
    with pytest.raises(TypeError, match=r"^Y is None: score\(X, Y\) needs the targets Y with arrays X"):
        model.score(X)

    class Batches:  # the DataSource protocol's members alone: no file order to read
        def __getattr__(self, name):
            if name in ("ordered_windows", "bind") or name.startswith("__"):
                raise AttributeError(name)
            return getattr(source, name)

    with pytest.raises(TypeError, match="Batches cannot be read in file order"):
        model.predict(Batches())


def test_a_diverged_model_has_no_score_on_a_source(files):
    x, y, X, Y = files
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1)
    model.params[:] = numpy.nan
    with pytest.raises(TrainingDiverged, match="no score on the source"):
        model.evaluate(data.npy(x, y, chunk_rows=100))


def pieces_of(X, Y, ends=(0, 120, 130, 500, 700)):
    """(X, Y) in pieces of uneven rows, in order."""
    return [(X[lo:hi], Y[lo:hi]) for lo, hi in zip(ends, ends[1:])]


@pytest.mark.parametrize("given", ["list", "generator function"])
def test_an_iterable_read_again_scores_and_predicts_every_row_as_the_arrays_do(files, device, given):
    _, _, X, Y = files
    pieces = pieces_of(X, Y)
    source = data.iterable(pieces if given == "list" else lambda epoch: (piece for piece in pieces),
                           standardize=True)
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1, device=device)  # (bias on: the default)
    model.fit(source, epochs=1, batch_size=64, lr=1e-2, verbose=False)
    assert model.standardizer is not None and model.bias
    assert close(model.evaluate(source), model.evaluate(X, Y), 1e-12)  # each call a pass of its own
    assert model.score(source) == pytest.approx(model.score(X, Y), rel=1e-12)
    P = model.backend.to_host(model.predict(source))
    assert P.shape == (700, 2)  # every row, in the pieces' order
    assert numpy.allclose(P, model.backend.to_host(model.predict(X)), rtol=1e-12, atol=0)
    assert source.standardize is True and source.standardizer is model.standardizer  # left as it was
    ens = gpunn.Ensemble([3, 8, 2], n_models=2, dtype="float64", seed=1, device=device)
    ens.fit(source, epochs=1, batch_size=64, lr=1e-2, verbose=False)
    assert close(ens.evaluate(source), ens.evaluate(X, Y), 1e-12)


def test_a_one_shot_iterator_is_scored_once_and_one_that_cannot_start_again_is_refused(files):
    _, _, X, Y = files
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1)

    def gen():
        yield from pieces_of(X, Y)

    once = data.iterable(gen(), rows=700)
    assert numpy.allclose(model.predict(once), model.predict(X), rtol=1e-12, atol=0)
    with pytest.raises(data.DataError, match=r"exhausted \(it served one pass: an epoch of fit, or an evaluate"):
        model.evaluate(once)
    read = gen()
    for _ in read:  # read to its end before the source was made
        pass
    with pytest.raises(data.DataError, match="gave 0 rows in epoch 1; rows=700 was expected: an iterator read to its "
                                             "end gives nothing more; pass a list, or a callable that makes a new"):
        model.evaluate(data.iterable(read, rows=700, n_features=3, n_outputs=2))
    same = gen()  # the same iterator at every call: the constructor's count reads it to its end
    with pytest.raises(data.DataError, match="gave 0 rows in epoch 1"):
        model.score(data.iterable(lambda epoch: same))


def test_a_sharded_source_is_scored_whole_in_one_process_and_a_ranks_share_is_refused(files):
    from gpunn.distributed import ShardedSource

    x, y, X, Y = files
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1)
    source = data.npy(x, y, chunk_rows=100, validation_fraction=0.2)
    # every shard: one process reading all of them, as a P-rank run resumed in one process does; the source's rows
    assert model.evaluate(ShardedSource(source, 2)) == model.evaluate(source)
    assert close(model.evaluate(ShardedSource(source, 2)), model.evaluate(X, Y), 1e-12)
    share = r"owning shard\(s\) \[1\] of 2 is one rank's share of the training rows "
    with pytest.raises(TypeError, match=share + r".*Score every row with the source it wraps, model\.evaluate\("):
        model.predict(ShardedSource(source, 2, [1]))


def test_a_pass_in_raw_units_leaves_the_source_as_it_is_for_a_thread_training_on_it(files, device):
    """evaluate, score and predict read a source raw through a view with settings of its own: a thread reading
    the source's batches meanwhile gets them standardized in the source's dtype, as without the pass (the pass set
    the source's own standardize, statistics, device and dtype to the raw ones until it ended)."""
    import threading

    from gpunn.data.rawpass import raw_windows

    x, y, X, Y = files
    source = data.npy(x, y, chunk_rows=100, standardize=True, device=device, dtype="float32")
    settings = (source.standardize, source.standardizer, source.backend, source.dtype)
    alone = [host(A) for batch in source.batches(0, 64) for A in batch]
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1, device=device)  # another dtype, no statistics: raw float64
    with raw_windows(source, model) as windows:
        first = next(iter(windows))  # the pass is under way
        meanwhile = []
        reader = threading.Thread(target=lambda: meanwhile.extend(host(A) for b in source.batches(0, 64) for A in b))
        reader.start()
        reader.join()
        rest = list(windows)
    assert (source.standardize, source.standardizer, source.backend, source.dtype) == settings
    assert len(meanwhile) == len(alone) and all(a.dtype == numpy.float32 for a in meanwhile)
    assert all(numpy.array_equal(a, b) for a, b in zip(meanwhile, alone))
    raw = [host(A) for A in first], *([host(A) for A in window] for window in rest)
    assert numpy.array_equal(numpy.concatenate([w[0] for w in raw]), X)  # every row, raw, in float64
    assert numpy.array_equal(numpy.concatenate([w[1] for w in raw]), Y)


def test_a_pass_in_raw_units_left_early_is_closed_as_it_ends(files):
    """A raw pass left part-way (an error in predict's consumer, a break) is closed as its block ends, not left
    suspended with its file and reader until it is collected."""
    import inspect

    from gpunn.data.rawpass import raw_windows

    x, y, _, _ = files
    source = data.npy(x, y, chunk_rows=100, device="cpu")
    model = gpunn.MLP([3, 8, 2], dtype="float64", seed=1, device="cpu")
    with raw_windows(source, model) as windows:
        next(iter(windows))
        assert inspect.getgeneratorstate(windows) == inspect.GEN_SUSPENDED
    assert inspect.getgeneratorstate(windows) == inspect.GEN_CLOSED


def test_a_value_the_statistics_take_past_the_dtype_is_named_where_the_source_holds_it(tmp_path):
    """evaluate, score and predict on a source refuse a raw value that the model's statistics take past float32 in
    training's words: the file, its row and column, the value read again. They said "X" and the row in its window
    (row 36 for file row 100 in 64-row chunks); evaluate's pieces of a window longer than its chunk_rows counted
    from the piece. An iterable's value is named by its batch."""
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(numpy.float32)
    X[:, 1] *= 0.01  # a spread of 0.01: 1e37 standardizes to 1e39, past float32
    Y = X[:, :1] * 2
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    model = gpunn.MLP([3, 4, 1], seed=0, device="cpu")
    model.fit(data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", chunk_rows=64, standardize=True), epochs=1,
              batch_size=32, verbose=False)
    X[100, 1] = 1e37
    numpy.save(tmp_path / "X.npy", X)
    said = (rf"{tmp_path / 'X.npy'} row 100: column 1: 1e\+37 is 1e\+39 once standardized, infinite in float32 "
            r"\(past its largest value\)")
    for call in (model.evaluate, model.score, model.predict):
        with pytest.raises(data.DataError, match=said):
            call(data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", chunk_rows=64))
    ens = gpunn.Ensemble([3, 4, 1], n_models=2, seed=0, device="cpu")
    ens.standardizer, ens.chunk_rows = model.standardizer, 16  # (evaluate: row 100 in the piece from 96)
    for call in (ens.evaluate, ens.predict):
        with pytest.raises(data.DataError, match=said):
            call(data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", chunk_rows=64))
    pieces = [(X[:64], Y[:64]), (X[64:128], Y[64:128]), (X[128:], Y[128:])]
    with pytest.raises(gpunn.checks.NotFinite, match=r"X of batch 2 \(epoch 1\) contains 1 value\(s\) infinite in "
                                                     r"float32 once standardized \(first at row 36, column 1"):
        model.evaluate(data.iterable(pieces))


def test_a_table_source_of_the_models_columns_in_another_order_is_refused_not_read_by_position(tmp_path):
    """A model trained on a Parquet table's columns f0, f1, f2, scored on a held-out file written with them in
    another order: the source's columns were read in the source's order, so evaluate, score and predict gave the
    wrong features' numbers without a word (a new user's R² -1.0 for 0.99), where gpunn predict and a DataFrame pick
    them by name. Refused now, naming the features= that reads them right, which then scores as the file in the
    model's order does; a later fit on them in another order (going on from the weights) is refused alike."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    columns = {"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "y": X[:, 0] - 2 * X[:, 1] + X[:, 2] ** 2}
    pq.write_table(pa.table(columns), tmp_path / "train.parquet")
    pq.write_table(pa.table({k: columns[k] for k in ("y", "f2", "f1", "f0")}), tmp_path / "reversed.parquet")
    model = gpunn.MLP([3, 16, 1], seed=0, device="cpu")
    with data.parquet(tmp_path / "train.parquet", target="y") as source:
        model.fit(source, epochs=3, batch_size=32, lr=1e-2, verbose=False)
        expected = model.evaluate(source)
    said = ("ParquetSource's feature columns are f2, f1, f0, and the model was trained on f0, f1, f2, in that order "
            "(model.data_columns): a source's columns are read in its order, not picked by name as a DataFrame's "
            "are; make it with features=['f0', 'f1', 'f2']")
    with data.parquet(tmp_path / "reversed.parquet", target="y") as source:
        for call in (model.evaluate, model.score, model.predict):
            with pytest.raises(ValueError, match=re.escape(said)):
                call(source)
        with pytest.raises(ValueError, match=re.escape(said)):
            model.fit(source, epochs=1, verbose=False)
    with data.parquet(tmp_path / "reversed.parquet", target="y", features=["f0", "f1", "f2"]) as source:
        assert model.evaluate(source) == pytest.approx(expected, rel=1e-12)
    with data.parquet(tmp_path / "train.parquet", target="y", features=["f0", "f1"]) as source:
        with pytest.raises(ValueError, match=r"ParquetSource's feature columns are f0, f1, and the model was trained "
                                             r"on f0, f1, f2"):
            model.score(source)


def test_a_table_source_of_other_column_names_is_not_told_to_pick_the_models_columns_it_lacks(tmp_path):
    """A held-out table of other column names (p, q for the model's a, b; a target named price for y) is refused
    for scoring, as one in another order is, but was told "make it with features=['a', 'b']", which its file cannot
    do (a refusal of missing columns next): it says the table has no such column and how to score it (the model's
    names, or arrays read by position), which then scores as the file of the model's names does. A table that has
    them among others is still told the features= that picks them."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = X[:, 0] - 2 * X[:, 1]
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": y}), tmp_path / "train.parquet")
    pq.write_table(pa.table({"p": X[:, 0], "q": X[:, 1], "y": y}), tmp_path / "renamed.parquet")
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "price": y}), tmp_path / "target.parquet")
    pq.write_table(pa.table({"id": X[:, 0] * 0, "a": X[:, 0], "b": X[:, 1], "y": y}), tmp_path / "id.parquet")
    model = gpunn.MLP([2, 8, 1], seed=0, device="cpu")
    with data.parquet(tmp_path / "train.parquet", target="y") as source:
        model.fit(source, epochs=2, batch_size=32, lr=1e-2, verbose=False)
        expected = model.evaluate(source)
    for name, target, said in (
            ("renamed.parquet", "y", "ParquetSource's feature columns are p, q, and the model was trained on a, b, in "
             "that order (model.data_columns): a source's columns are read in its order, not picked by name as a "
             "DataFrame's are; its table has no column 'a', 'b' for features=['a', 'b'] to pick: give it the model's "
             "column names, or pass arrays of its columns, read by position as a, b"),
            ("target.parquet", "price", "ParquetSource's target columns are price, and the model was trained on y, "
             "in that order (model.data_columns): a source's columns are read in its order, not picked by name as a "
             "DataFrame's are; its table has no column 'y' for target=['y'] to pick"),
            ("id.parquet", "y", "ParquetSource's feature columns are id, a, b, and the model was trained on a, b, in "
             "that order (model.data_columns): a source's columns are read in its order, not picked by name as a "
             "DataFrame's are; make it with features=['a', 'b']")):
        with data.parquet(tmp_path / name, target=target) as source:
            for call in (model.evaluate, model.score, model.predict):
                with pytest.raises(ValueError, match=re.escape(said)):
                    call(source)
    with data.parquet(tmp_path / "id.parquet", target="y", features=["a", "b"]) as source:
        assert model.evaluate(source) == pytest.approx(expected, rel=1e-12)
    with pytest.warns(UserWarning, match="read by position"):  # (the way out the refusal names)
        assert model.evaluate(X, y[:, None]) == pytest.approx(expected, rel=1e-6)


def test_a_source_of_other_widths_than_the_models_is_named_in_the_refusal_of_its_score(files, tmp_path):
    """evaluate, score and predict on a source of 2 feature columns, for a model of 3, said "X has 2 columns but the
    model expects 3", naming an X the caller never gave; fit on it names the source and both widths. They say it as
    fit does now."""
    x, y, X, Y = files
    numpy.save(tmp_path / "X2.npy", X[:, :2])
    model = gpunn.MLP([3, 4, 2], seed=0, device="cpu")
    with data.npy(tmp_path / "X2.npy", y) as source:
        for call in (model.evaluate, model.score, model.predict):
            with pytest.raises(ValueError, match=r"^NpySource gives 2 features and 2 outputs; the model takes 3 and "
                                                 r"gives 2$"):
                call(source)
