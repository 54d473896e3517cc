"""A file source's per-row weights (gpunn.data.row_weights): an .npy pair's ``weights=`` file, a table's ``weight=``
column, weighing training, its validation and a resume as fit(X, Y, sample_weight=w) weighs arrays."""
import json
import os
import re

import numpy
import pytest

import gpunn
from gpunn import MLP
from gpunn.data import DataError


@pytest.fixture
def files(tmp_path):
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((240, 3))
    Y = numpy.stack([numpy.sin(X[:, 0]) + X[:, 1] ** 2, X[:, 2]], axis=1)
    w = rng.uniform(0.0, 3.0, 240)
    w[::7] = 0.0  # rows that do not count
    for name, a in (("X", X), ("Y", Y), ("w", w)):
        numpy.save(tmp_path / f"{name}.npy", a)
    return tmp_path, X, Y, w


def npy(path, weights="w.npy", **options):
    return gpunn.data.npy(path / "X.npy", path / "Y.npy", weights=None if weights is None else path / weights,
                          **options)


def fit(model, data, **options):
    options = {"epochs": 3, "batch_size": 32, "verbose": False, "optimizer": "sgd", "lr": 0.05, **options}
    return model.fit(data, **options) if not isinstance(data, tuple) else model.fit(*data, **options)


def test_an_npy_sources_weights_train_as_fit_on_arrays_weighs_the_same_rows(files):
    path, X, Y, w = files
    source = npy(path, shuffle=False, chunk_rows=40)
    assert source.weighted and source.config()["sample_weight"] is True
    on_file, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(on_file, source)
    expected = fit(on_arrays, (X, Y), sample_weight=w, shuffle=False)
    numpy.testing.assert_allclose(on_file.params, on_arrays.params, rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-12)
    unweighted = MLP([3, 8, 2], dtype="float64", device="cpu", seed=1)
    fit(unweighted, npy(path, None, shuffle=False, chunk_rows=40))
    assert not numpy.allclose(unweighted.params, on_file.params)


@pytest.mark.parametrize("value", [1.0, 2.5])
def test_equal_weights_in_a_file_train_the_unweighted_run_bit_for_bit(files, value):
    path, *_ = files
    numpy.save(path / "equal.npy", numpy.full(240, value))
    source = npy(path, "equal.npy")
    assert source.has_weights and not source.weighted
    weighted, plain = (MLP([3, 8, 2], device="cpu", seed=1) for _ in range(2))
    fit(weighted, source, validation_fraction=0.25)
    fit(plain, npy(path, None), validation_fraction=0.25)
    numpy.testing.assert_array_equal(weighted.params, plain.params)


def test_held_out_chunks_are_weighed_by_their_own_weights_and_the_training_chunks_by_theirs(files):
    path, X, Y, w = files
    source = npy(path, shuffle=False, chunk_rows=20, validation_fraction=0.25)
    model = MLP([3, 8, 2], dtype="float64", device="cpu", seed=2)
    history = fit(model, source, batch_size=None)
    held = numpy.concatenate([numpy.arange(k * 20, k * 20 + 20) for k in source.validation_chunks])
    kept = numpy.setdiff1d(numpy.arange(240), held)
    logs = model.evaluate(X[held], Y[held], sample_weight=w[held])
    for key in ("loss", "mse", "mae", "r2"):
        assert history[f"val_{key}"][-1] == pytest.approx(logs[key], rel=1e-9)
    unweighted = model.evaluate(X[held], Y[held])
    assert history["val_mse"][-1] != pytest.approx(unweighted["mse"], rel=1e-3)
    on_arrays = MLP([3, 8, 2], dtype="float64", device="cpu", seed=2)  # the training rows, weighed by theirs
    fit(on_arrays, (X[kept], Y[kept]), sample_weight=w[kept], shuffle=False, batch_size=None)
    numpy.testing.assert_allclose(model.params, on_arrays.params, rtol=1e-12, atol=1e-14)


def test_a_weighted_validation_source_weighs_its_rows_as_validation_datas_third_item(files):
    path, X, Y, w = files
    numpy.save(path / "Xv.npy", X[:100] * 0.5)
    numpy.save(path / "Yv.npy", Y[:100])
    numpy.save(path / "wv.npy", w[100:200])
    validation = gpunn.data.npy(path / "Xv.npy", path / "Yv.npy", weights=path / "wv.npy", chunk_rows=30)
    model, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(model, npy(path, shuffle=False), validation_data=validation)
    expected = fit(on_arrays, (X, Y), sample_weight=w, shuffle=False, validation_data=(X[:100] * 0.5, Y[:100],
                                                                                        w[100:200]))
    for key in ("val_loss", "val_mse", "val_mae", "val_r2"):
        numpy.testing.assert_allclose(history[key], expected[key], rtol=1e-9)


def test_standardize_takes_the_unweighted_statistics_and_leaves_the_weights_unscaled(files):
    path, X, Y, w = files
    weighted = npy(path, standardize=True, device="cpu", dtype="float64")
    plain = npy(path, None, standardize=True, device="cpu", dtype="float64")
    for a, b in zip(vars(weighted.standardizer).values(), vars(plain.standardizer).values()):
        if isinstance(a, numpy.ndarray):
            numpy.testing.assert_array_equal(a, b)
    (Xb, Yb), = weighted.batches(0, 240)  # one window of every row: the weights ride as Y's last column, unscaled
    Xp, Yp = next(iter(plain.batches(0, 240)))
    numpy.testing.assert_array_equal(Yb[:, :2], Yp)
    order = numpy.argsort(Yb[:, 2])
    numpy.testing.assert_allclose(Yb[order, 2], numpy.sort(w * 240 / w.sum()), rtol=1e-12)
    model = MLP([3, 8, 2], device="cpu", dtype="float64", seed=0)
    fit(model, weighted)
    assert model.standardizer is weighted.standardizer


@pytest.mark.parametrize("weights, says", [
    (lambda w: numpy.where(numpy.arange(240) == 45, -1.0, w), r"w\.npy \(rows 40-59\): 1 negative weight\(s\) among "
                                                              r"all 240 rows, the first at row 45 \(-1\): a weight "
                                                              r"must be 0 or more"),
    (lambda w: numpy.where(numpy.isin(numpy.arange(240), (45, 52)), -1.0, w), r"w\.npy \(rows 40-59\): 2 negative "
                                                                            r"weight\(s\) among all 240 rows, the "
                                                                            r"first at row 45 \(-1\)"),
    # counted over every chunk, where the first bad chunk's alone were (it said 1 of each)
    (lambda w: numpy.where(numpy.isin(numpy.arange(240), (45, 130, 131)), -1.0, w), r"w\.npy \(rows 40-59\): 3 "
                                                                                  r"negative weight\(s\) among all "
                                                                                  r"240 rows, the first at row 45"),
    (lambda w: numpy.where(numpy.arange(240) % 50 == 3, numpy.nan, w), r"w\.npy \(rows 0-19\): 5 NaN or infinite "
                                                                       r"weight\(s\) among all 240 rows, the first at "
                                                                       r"row 3 \(nan\)"),
    (lambda w: numpy.where(numpy.arange(240) == 239, numpy.inf, w), r"rows 220-239\): 1 NaN or infinite "
                                                                    r"weight\(s\) among all 240 rows, the first at row "
                                                                    r"239 \(inf\)"),
    (lambda w: numpy.zeros(240), r"w\.npy: every weight is 0: no row counts in the loss$"),
    (lambda w: w[:-1], r"w\.npy has 239 weights but \S+X\.npy has 240 rows: one weight a row$"),
    (lambda w: w[:, None], r"w\.npy: weights must be a 1-D array, one a row; it has shape \(240, 1\): save "
                           r"w\.ravel\(\)$"),
    (lambda w: w.astype(str), r"w\.npy: weights must be numbers; the file holds dtype <U"),
])
def test_bad_weights_in_a_file_are_refused_naming_it_and_the_rows(files, weights, says):
    path, X, Y, w = files
    numpy.save(path / "w.npy", weights(w))
    with pytest.raises(DataError, match=says):
        npy(path, chunk_rows=20)


def test_weights_all_zero_in_the_training_or_the_held_out_chunks_are_refused_naming_them(files):
    path, X, Y, w = files
    held = npy(path, chunk_rows=20, validation_fraction=0.25).validation_chunks
    in_held = numpy.zeros(240, bool)
    for k in held:
        in_held[k * 20:k * 20 + 20] = True
    model = MLP([3, 8, 2], device="cpu")
    for zero, what in ((~in_held, "the training rows"), (in_held, r"the validation rows \(validation_fraction's "
                                                                  r"chunks\)")):
        numpy.save(path / "w.npy", numpy.where(zero, 0.0, 1.0 + w))
        with pytest.raises(DataError, match=rf"w\.npy: the weights of {what} are 0 for every row: no row of them "
                                            "counts$"):
            fit(model, npy(path, chunk_rows=20, validation_fraction=0.25))


def test_what_a_sources_weights_do_not_reach_is_refused_before_anything_runs(files):
    path, X, Y, w = files
    source = npy(path)
    with pytest.raises(ValueError, match=r"^sample_weight weighs the rows of in-memory arrays; a data source "
                                         r"\(NpySource\) carries its weights itself: make it with them, "
                                         r"gpunn\.data\.npy\(x_path, y_path, weights='w\.npy'\)"):
        fit(MLP([3, 8, 2], device="cpu"), source, sample_weight=w)

    class OwnStep(MLP):
        def train_step(self, X, Y):
            return super().train_step(X, Y)

    with pytest.raises(TypeError, match=r"has a weight for each row, which needs MLP's own training step; OwnStep"):
        fit(OwnStep([3, 8, 2], device="cpu"), source)


def test_a_run_on_a_weighted_source_resumes_exactly_and_only_with_its_weights(files):
    path, X, Y, w = files

    def source(weights="w.npy"):
        return npy(path, weights, chunk_rows=20, validation_fraction=0.25, seed=3)

    whole = MLP([3, 8, 2], dtype="float64", device="cpu", seed=1)
    expected = fit(whole, source(), epochs=4)

    class StopPartWay(gpunn.Callback):  # in epoch 3, after its 2nd batch
        def on_batch_end(self, trainer, batch):
            if trainer.state.epoch == 2 and batch == 1:
                trainer.interrupt()

    run = path / "run.npz"
    fit(MLP([3, 8, 2], dtype="float64", device="cpu", seed=1), source(), epochs=4,
        callbacks=[gpunn.ModelCheckpoint(run), StopPartWay()])
    assert gpunn.load_checkpoint(run, device="cpu").state.batch == 2
    numpy.save(path / "other.npy", w[::-1])
    for weights, says in ((None, r"was trained on another source: sample_weight was True, now None"),
                          ("other.npy", r"was trained on other values: \S+X\.npy and \S+Y\.npy are the run's, but "
                                        r"\S+other\.npy is not the run's \S+w\.npy; over all of them, a checksum of "
                                        r"their sizes and of bytes sampled through them differs\. Resume with the run's "
                                        r"files \(the run read \S+X\.npy, \S+Y\.npy and \S+w\.npy\)")):
        with pytest.raises(ValueError, match=says):
            gpunn.load_checkpoint(run, device="cpu").resume(source(weights), verbose=False)
    checkpoint = gpunn.load_checkpoint(run, device="cpu")
    history = checkpoint.resume(source(), verbose=False)
    numpy.testing.assert_array_equal(checkpoint.model.params, whole.params)
    assert history["val_loss"][-2:] == expected["val_loss"][-2:]


@pytest.mark.gpu
def test_a_weighted_npy_source_on_the_gpu_follows_the_cpu(gpu, files):
    """On CuPy a training window's Y, the weights' column with it, goes through the pinned staging buffers and the
    side-stream copy (a held-out window's weights through float64 ones of their own); the run (shuffle=False: no device
    draws) and its weighted held-out metrics follow the CPU's."""
    path, *_ = files
    results = []
    for device in ("cpu", "cuda"):
        model = MLP([3, 8, 2], dtype="float64", device=device, seed=2)
        history = fit(model, npy(path, shuffle=False, chunk_rows=20, validation_fraction=0.25))
        params = model.params.get() if device == "cuda" else model.params
        results.append((params, history["loss"], history["val_r2"]))
    for on_gpu, on_cpu in zip(results[1], results[0]):
        numpy.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-10, atol=1e-12)


@pytest.fixture
def tables(files):
    """The rows of ``files`` as a directory of two Parquet files and a CSV file: columns a, b, c, w, y1, y2."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path, X, Y, w = files
    columns = {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "w": w, "y1": Y[:, 0], "y2": Y[:, 1]}
    (path / "runs").mkdir()
    for part, rows in (("0", slice(0, 100)), ("1", slice(100, 240))):
        pq.write_table(pa.table({k: v[rows] for k, v in columns.items()}), path / "runs" / f"{part}.parquet",
                       row_group_size=30)
    with open(path / "t.csv", "w") as f:
        f.write("a,b,c,w,y1,y2\n" + "".join(",".join(repr(float(v[i])) for v in columns.values()) + "\n"
                                            for i in range(240)))
    return path, X, Y, w


def table(path, kind, **options):
    options = {"target": ["y1", "y2"], "weight": "w", **options}
    if kind == "parquet":
        return gpunn.data.parquet(path / "runs", **options)
    return gpunn.data.csv(path / "t.csv", **options)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_tables_weight_column_trains_as_fit_on_arrays_with_sample_weight(tables, kind):
    path, X, Y, w = tables
    source = table(path, kind, shuffle=False)
    assert source.feature_names == ["a", "b", "c"] and source.weighted  # (the weight is no feature by default)
    assert source.config()["weight"] == "w" and source.config()["sample_weight"] is True
    on_table, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(on_table, source, batch_size=None)
    expected = fit(on_arrays, (X, Y), sample_weight=w, shuffle=False, batch_size=None)
    numpy.testing.assert_allclose(on_table.params, on_arrays.params, rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-12)
    assert on_table.data_columns == {"features": ["a", "b", "c"], "targets": ["y1", "y2"]}


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_tables_weight_column_is_checked_and_refused_in_words(tables, kind):
    path, *_ = tables
    for options, error, says in (
            ({"weight": "wt"}, DataError, r"no column 'wt'; the columns are: a, b, c, w, y1, y2"),
            ({"features": ["a", "w"]}, ValueError, r"^column 'w' is the weight and a feature: a row's weight is "
                                                   r"neither \(leave it out of the features\)$"),
            ({"target": ["y1", "w"]}, ValueError, r"^column 'w' is the weight and a target"),
            ({"weight": ["w"]}, TypeError, r"^weight names one column of each row's weight, a str; got \['w'\]$")):
        with pytest.raises(error, match=says):
            table(path, kind, **options)


def test_a_weight_column_of_text_or_named_twice_is_refused_in_words(tmp_path):
    """A Parquet weight column of strings (pyarrow said 'DataType is not compatible with DLPack spec: string') and a
    CSV header naming the weight column twice (pyarrow's "KeyError: 'Column w does not exist in schema'")."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "w": ["1", "2", "1"], "y": [1.0, 2.0, 3.0]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t\.parquet: column 'w' is string, not numeric; the weight column must hold "
                                        r"numbers$"):
        gpunn.data.parquet(tmp_path / "t.parquet", target="y", weight="w")
    (tmp_path / "t.csv").write_text("a,w,w,y\n1,1,2,1\n2,1,3,2\n3,1,4,3\n")
    with pytest.raises(DataError, match=r"t\.csv: the header names columns 2 and 3 both 'w'; rename one"):
        gpunn.data.csv(tmp_path / "t.csv", target="y", weight="w")

def test_data_in_memory_where_a_maker_takes_a_files_name_is_refused_saying_which_fit_takes_it(tables):
    """gpunn.data.npy(X, Y) or weights=w of an array, csv(df, ...) of a DataFrame said Python's "expected str, bytes or
    os.PathLike object, not ndarray"; a table's weight=w of an array repeated its values."""
    pd = pytest.importorskip("pandas")
    path, X, Y, w = tables
    npy_file = r"a \.npy file holds the {}: give its name \(a str or pathlib\.Path\), not an ndarray; "
    (path / "w.txt.npy").write_text("0.5\n1.5\n")  # (text: said to save the weights as w, not as X)
    with pytest.raises(DataError, match=r"w\.txt\.npy is text, not a \.npy array \(no \.npy header\): a CSV file\? "
                                        r"save the weights with numpy\.save\(path, w\)$"):
        npy(path, weights="w.txt.npy")
    for call, says in (
            (lambda: gpunn.data.npy(X, path / "Y.npy"), npy_file.format("features") + r"arrays in memory are fit as "
             r"they are, model\.fit\(X, Y\) \(sample_weight=w weighs their rows\)$"),
            (lambda: gpunn.data.npy(path / "X.npy", path / "Y.npy", weights=w), npy_file.format("weights") + r"weights in memory weigh "
             r"arrays, model\.fit\(X, Y, sample_weight=w\); for this source save them, numpy\.save\('w\.npy', w\), "
             r"and give that name$"),
            (lambda: gpunn.data.csv(pd.read_csv(path / "t.csv"), "y1"), r"^a CSV file holds the table: give its name "
             r"\(a str or pathlib\.Path\), not a DataFrame; a table in memory is fit as it is"),
            (lambda: gpunn.data.parquet(pd.read_csv(path / "t.csv"), "y1"), r"^a Parquet file or directory holds "),
            (lambda: table(path, "csv", weight=w), r"^weight names one column of each row's weight, a str; got an "
             r"ndarray: weights in memory weigh arrays, model\.fit\(X, Y, sample_weight=w\); for this source add "
             r"them to the table as a column, and name it$"),
            (lambda: table(path, "parquet", weight=pd.Series(w)), r"got a Series: weights in memory")):
        with pytest.raises(TypeError, match=says):
            call()


def test_bad_weights_in_a_table_are_refused_naming_the_file_its_rows_and_the_first(tables):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path, X, Y, w = tables
    bad = numpy.where(numpy.isin(numpy.arange(140), (37, 130)), -2.0, w[100:])  # (row groups 1 and 4: both counted)
    pq.write_table(pa.table({"a": X[100:, 0], "b": X[100:, 1], "c": X[100:, 2], "w": bad, "y1": Y[100:, 0],
                             "y2": Y[100:, 1]}), path / "runs" / "1.parquet", row_group_size=30)
    with pytest.raises(DataError, match=r"runs/1\.parquet \(row group 1, rows 30-37\): column 'w': 2 negative "
                                        r"weight\(s\) among all 240 rows, the first at row 37 \(-2\): a weight must "
                                        r"be 0 or more"):
        table(path, "parquet")
    nulls = pa.array(numpy.where(numpy.arange(140) == 37, numpy.nan, w[100:]), from_pandas=True)  # (NaN: a null)
    pq.write_table(pa.table({"a": X[100:, 0], "b": X[100:, 1], "c": X[100:, 2], "w": nulls, "y1": Y[100:, 0],
                             "y2": Y[100:, 1]}), path / "runs" / "1.parquet", row_group_size=30)
    with pytest.raises(DataError, match=r"runs/1\.parquet \(row group 1, rows 30-37\): column 'w': 1 missing, NaN or "
                                        r"infinite weight\(s\) among all 240 rows, the first at row 37, a null \(a "
                                        r"missing number\): a weight must be a finite number$"):
        table(path, "parquet")
    lines = (path / "t.csv").read_text().splitlines()
    lines[5] = "1,2,3,nan,4,5"  # the 4th row (line 5)
    lines[200] = "1,2,3,inf,4,5"  # (a later chunk's: counted too)
    (path / "t.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"t\.csv \(lines 2-\d+\): column 'w': 2 missing, NaN or infinite weight\(s\) "
                                        r"among all 240 rows, the first at line 6 \(nan\)"):
        table(path, "csv", cache=False)
    lines[5] = "1,2,3,,4,5"  # (an empty cell: pyarrow's null, said as a feature's is)
    (path / "t.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"column 'w': 2 missing, NaN or infinite weight\(s\) among all 240 rows, "
                                        r"the first at line 6, an empty value \(a missing number\): a weight must "
                                        r"be a finite number$"):
        table(path, "csv", cache=False)
    lines[5] = "1,2,3,NA,4,5"
    (path / "t.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"the first at line 6, 'NA' \(a missing number\): a weight must be"):
        table(path, "csv", cache=False)
    lines[5] = "1,2,3,heavy,4,5"
    (path / "t.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"t\.csv line 6: column 'w': 'heavy' is not a number"):
        table(path, "csv", cache=False)
    (path / "t.csv").write_text("a,w,y\n1,light,2\n2,heavy,3\n")
    with pytest.raises(DataError, match=r"column 'w'.* not a number|column 'w' is string, not numeric; the weight "
                                        r"column must hold numbers"):
        gpunn.data.csv(path / "t.csv", target="y", weight="w", cache=False)


def test_a_csv_sources_weights_are_parsed_once_then_kept_in_its_saved_index(tables, monkeypatch, tmp_path):
    """A CSV source's index pass keeps each chunk's summary of its weights (it had parsed the weight column), and the
    saved index now keeps them too, by the weight column's name: the first run reads the rows once, a later one none
    (its weights' scan parsed every block again: 0.30 s of 1M rows, 168 MB). An index saved without them (by an
    earlier gpunn), or with another column's alone, or with a list that does not fit the chunks, is scanned as
    before, then kept. The summaries are the same to the bit every way."""
    from gpunn.data import csv_tables

    path, *_ = tables
    header, *lines = (path / "t.csv").read_text().splitlines()
    (path / "t.csv").write_text(f"{header},v\n" + "".join(f"{line},{i % 7}\n" for i, line in enumerate(lines)))
    monkeypatch.setenv("GPUNN_CACHE_DIR", str(tmp_path / "cache"))
    read, real_read_range = [], csv_tables.read_range
    monkeypatch.setattr(csv_tables, "read_range", lambda fd, start, end: read.append(end - start) or
                        real_read_range(fd, start, end))
    rows_bytes = (path / "t.csv").stat().st_size - len("a,b,c,w,y1,y2,v\n")

    def run(**options):
        read.clear()
        with table(path, "csv", **options) as source:
            assert len(source.chunk_sizes) > 1
            return sum(read), [source._weights.peaks, source._weights.lows, source._weights.unit_sums]

    def saved(edit=None):
        [index] = (tmp_path / "cache").rglob("*.json")  # (one file: every run reads and keeps the same index)
        record = json.loads(index.read_text())
        if edit:
            edit(record)
            index.write_text(json.dumps(record))
        return record

    first, summaries = run()
    assert first == rows_bytes and sorted(saved()["weights"]) == ["w"]
    for edit in (None, lambda record: record.pop("weights"),  # an index saved before the weights were kept
                 lambda record: record["weights"]["w"].pop(),  # a list one chunk short: not trusted
                 # nor one whose numbers no chunk's weights give (audit49: either passed without the check)
                 lambda record: record["weights"]["w"][1].__setitem__(1, 2 * record["weights"]["w"][1][0] + 1),
                 lambda record: record["weights"]["w"][0].__setitem__(2, -1.0)):  # (smallest > largest; sum < 0)
        if edit:
            saved(edit)
        for expected in (0 if edit is None else rows_bytes, 0):  # (then kept by the scan)
            bytes_read, again = run()
            assert bytes_read == expected, edit
            for kept, now in zip(summaries, again):
                numpy.testing.assert_array_equal(kept, now)
    other = {"weight": "v", "features": ["a", "b"]}  # another weight column of the file (v, its last)
    assert run(**other)[0] == rows_bytes and sorted(saved()["weights"]) == ["v", "w"]
    assert run(**other)[0] == run()[0] == 0


def test_a_csv_sources_bad_weights_are_kept_in_no_index_and_refused_by_every_run(tables, monkeypatch, tmp_path):
    """A chunk's summary of bad weights is None, which the saved index does not keep: a run from that index scans
    the weights, which refuses them in the first run's words, counting every chunk's."""
    path, *_ = tables
    monkeypatch.setenv("GPUNN_CACHE_DIR", str(tmp_path / "cache"))
    lines = (path / "t.csv").read_text().splitlines()
    lines[5], lines[200] = "1,2,3,-1,4,5", "1,2,3,-2,4,5"
    (path / "t.csv").write_text("\n".join(lines) + "\n")
    said = []
    for run in ("first", "indexed"):
        with pytest.raises(DataError, match=r"column 'w': 2 negative weight\(s\) among all 240 rows") as caught:
            table(path, "csv")
        said.append(str(caught.value))
        [index] = (tmp_path / "cache").rglob("*.json")
        assert json.loads(index.read_text())["weights"] == {}, run
    assert said[0] == said[1]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_run_on_a_tables_weight_column_resumes_only_with_it(tables, kind):
    path, *_ = tables
    run = path / "run.npz"
    fit(MLP([3, 8, 2], dtype="float64", device="cpu", seed=1), table(path, kind, seed=2), epochs=1,
        callbacks=[gpunn.ModelCheckpoint(run)])
    with pytest.raises(ValueError, match=r"was trained on another source: sample_weight was True, now None; weight "
                                         r"was 'w', now None"):
        unweighted = table(path, kind, seed=2, weight=None, features=["a", "b", "c"])
        gpunn.load_checkpoint(run, device="cpu").resume(unweighted, epochs=2, verbose=False)
    gpunn.load_checkpoint(run, device="cpu").resume(table(path, kind, seed=2), epochs=2, verbose=False)


def test_gpunn_train_weighs_a_files_rows_by_weights_or_a_tables_column_and_resumes_with_them(tables, capsys):
    from gpunn.cli import main

    path, X, Y, w = tables
    numpy.save(path / "ones.npy", numpy.ones(240))
    small = ["--hidden", "8", "--batch-size", "32", "--epochs", "2", "--device", "cpu", "--quiet", "--seed", "1"]
    npy_pair = ["--data", str(path / "X.npy"), "--targets", str(path / "Y.npy")]
    models = {}
    for name, extra in (("plain", []), ("ones", ["--weights", str(path / "ones.npy")]),
                        ("weighted", ["--weights", str(path / "w.npy")])):
        assert main(["train", *npy_pair, *extra, "--save", str(path / f"{name}.npz"), *small]) == 0
        models[name] = gpunn.load(path / f"{name}.npz").params
    numpy.testing.assert_array_equal(models["ones"], models["plain"])  # equal weights weigh nothing, bit for bit
    assert not numpy.allclose(models["weighted"], models["plain"])
    saved = gpunn.load_checkpoint(path / "weighted.npz").training["source"]
    assert saved["w_path"] == str(path / "w.npy") and saved["sample_weight"] is True
    assert main(["train", "--resume", str(path / "weighted.npz"), "--epochs", "3", "--device", "cpu", "--quiet"]) == 0
    assert gpunn.load_checkpoint(path / "weighted.npz").epoch == 3
    (path / "moved").mkdir()  # --weights, as --data and --targets, may say where the run's file is now
    for name in ("X", "Y", "w"):
        (path / "moved" / f"{name}.npy").write_bytes((path / f"{name}.npy").read_bytes())
    moved = [str(path / "moved" / f"{name}.npy") for name in ("X", "Y", "w")]
    assert main(["train", "--resume", str(path / "weighted.npz"), "--epochs", "4", "--data", moved[0], "--targets",
                 moved[1], "--weights", moved[2], "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(path / "t.csv"), "--target", "y1,y2", "--weight", "w",
                 "--save", str(path / "csv.npz"), *[a for a in small if a != "--quiet"]]) == 0
    assert "each row weighed by column w" in capsys.readouterr().out
    model = gpunn.load(path / "csv.npz")
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["y1", "y2"]}
    assert gpunn.load_checkpoint(path / "csv.npz").training["source"]["weight"] == "w"


def test_gpunn_predict_score_weighs_ins_rows_by_a_weight_column_as_evaluate_of_a_weighted_source(tables, capsys):
    """gpunn predict --score scored a held-out table unweighted, where gpunn train's held-out line of a --weight run
    and model.evaluate(gpunn.data.csv(..., weight="w")) weigh its rows: --weight COLUMN weighs them, the printed line
    and --json's score evaluate's of that weighted source to the bit (CSV and a Parquet directory)."""
    from gpunn.cli import main

    path, _, _, w = tables
    model_path = str(path / "m.npz")
    small = ["--hidden", "8", "--batch-size", "32", "--epochs", "2", "--device", "cpu", "--quiet", "--seed", "1"]
    assert main(["train", "--data", str(path / "t.csv"), "--target", "y1,y2", "--weight", "w", "--save", model_path,
                 *small]) == 0
    model = gpunn.load(model_path, device="cpu")
    capsys.readouterr()
    assert main(["info", model_path]) == 0  # (gpunn info says how, where it said "gpunn predict m.npz IN OUT" alone)
    assert capsys.readouterr().out.splitlines()[-1] == (f"predict       gpunn predict {model_path} IN OUT (a held-out "
                                                        "file's score weighted as its rows were: --score --weight w)")
    for name, kind in (("t.csv", "csv"), ("runs", "parquet")):
        with table(path, kind, shuffle=False) as source:
            weighted = model.evaluate(source)
        with table(path, kind, weight=None, features=["a", "b", "c"]) as source:
            plain = model.evaluate(source)
        assert abs(weighted["mse"] - plain["mse"]) > 1e-3 * plain["mse"]  # (the weights change the score)
        capsys.readouterr()
        assert main(["predict", model_path, str(path / name), str(path / "p.csv"), "--score", "--weight", "w",
                     "--json", "-", "--device", "cpu"]) == 0
        captured = capsys.readouterr()
        assert captured.err.splitlines()[-1] == (
            f"held-out ({path / name}, against y1, y2, each row weighed by column w): mse {weighted['mse']:.5g}  "
            f"mae {weighted['mae']:.5g}  r2 {weighted['r2']:.4f}")
        assert json.loads(captured.out)["score"] == {"targets": ["y1", "y2"], "weight": "w",
                                                     **{k: weighted[k] for k in ("mse", "mae", "r2")}}
        capsys.readouterr()  # --keep of the weight column copies it, the score the same
        assert main(["predict", model_path, str(path / name), str(path / "k.csv"), "--score", "--weight", "w",
                     "--keep", "w", "--overwrite", "--device", "cpu"]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == captured.err.splitlines()[-1]
        kept = numpy.loadtxt(path / "k.csv", delimiter=",", skiprows=1)
        numpy.testing.assert_array_equal(kept[:, 0], w)
        numpy.testing.assert_array_equal(kept[:, 1:], numpy.loadtxt(path / "p.csv", delimiter=",", skiprows=1))
    for extra, says in ((["--weight", "w"], "--weight w weighs --score's errors; add --score (predictions are not "
                                            "weighted)"),
                        (["--score", "--weight", "a"], "--weight a is one of the model's feature columns: a row's "
                                                       "weight is neither"),
                        (["--score", "--weight", "wt"], "no column 'wt'; the columns are: a, b, c, w, y1, y2 "
                                                        "(--weight's column in IN); OUT not written\n"),
                        (["--score", "--weight", ""], "argument --weight: expected a column's name, got ''")):
        (path / "q.csv").unlink(missing_ok=True)
        assert status(main, ["predict", model_path, str(path / "t.csv"), str(path / "q.csv"), *extra, "--device",
                             "cpu"]) == 2
        assert says in capsys.readouterr().err and not (path / "q.csv").exists()
    lines = (path / "t.csv").read_text().splitlines()  # a bad weight: OUT not written, said as a bad target's is
    lines[12] = ",".join(["nan" if i == 3 else v for i, v in enumerate(lines[12].split(","))])
    (path / "nan.csv").write_text("\n".join(lines) + "\n")
    assert status(main, ["predict", model_path, str(path / "nan.csv"), str(path / "q.csv"), "--score", "--weight",
                         "w", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.endswith(f"(lines 9-15): column 'w': 1 missing, NaN or infinite weight(s) among "
                                            "all 240 rows, the first at line 13 (nan): a weight must be a finite "
                                            "number; OUT not written\n") and not (path / "q.csv").exists()


def test_gpunn_predict_score_of_an_npy_in_reads_targets_and_weights_files_as_evaluate_with_sample_weight(files,
                                                                                                   capsys):
    """--score refused an .npy IN ("an .npy array has none"), so a run trained on --data X.npy --targets Y.npy
    --weights W.npy had its held-out file scored in Python alone: --targets Y.npy scores it, --weights W.npy weighs its
    rows, the line and --json's score model.evaluate(X, Y, sample_weight=w)'s; each goes with --score and an .npy
    IN, as gpunn train pairs --weights with --data X.npy, and bad weights are refused in training's words."""
    from gpunn.cli import main

    path, X, Y, w = files
    model_path, out = str(path / "m.npz"), str(path / "p.npy")
    npy_in = [model_path, str(path / "X.npy"), out]
    assert main(["train", "--data", str(path / "X.npy"), "--targets", str(path / "Y.npy"), "--weights",
                 str(path / "w.npy"), "--save", model_path, "--hidden", "8", "--epochs", "2", "--dtype", "float64",
                 "--device", "cpu", "--quiet", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["info", model_path]) == 0  # (it said "gpunn predict m.npz IN OUT" alone)
    assert capsys.readouterr().out.splitlines()[-1] == (f"predict       gpunn predict {model_path} IN OUT (a held-out "
                                                        "file's score weighted as its rows were: --score --targets "
                                                        "Y.npy --weights W.npy)")
    model = gpunn.load(model_path, device="cpu")
    weighted, plain = model.evaluate(X, Y, sample_weight=w), model.evaluate(X, Y)
    assert abs(weighted["mse"] - plain["mse"]) > 1e-3 * plain["mse"]  # (the weights change the score)
    sourced = {}  # (the files' source sums chunk by chunk: the arrays' metrics to float64's rounding, not bit for bit)
    for name, weights, arrays in (("weighted", "w.npy", weighted), ("plain", None, plain)):
        with npy(path, weights) as source:
            sourced[name] = model.evaluate(source)
        numpy.testing.assert_allclose([sourced[name][k] for k in arrays], list(arrays.values()), rtol=1e-12)
    for weights, metrics, words in ((["--weights", str(path / "w.npy")], sourced["weighted"], f", each row weighed by "
                                     f"{path / 'w.npy'}"), ([], sourced["plain"], "")):
        capsys.readouterr()
        assert main(["predict", *npy_in, "--score", "--targets", str(path / "Y.npy"), *weights, "--json", "-",
                     "--device", "cpu"]) == 0
        captured = capsys.readouterr()
        assert captured.err.splitlines()[-1] == (
            f"held-out ({path / 'X.npy'}, against {path / 'Y.npy'}{words}): mse {metrics['mse']:.5g}  "
            f"mae {metrics['mae']:.5g}  r2 {metrics['r2']:.4f}")
        assert json.loads(captured.out)["score"] == {"targets": [str(path / "Y.npy")],
                                                     "weight": weights[-1] if weights else None,
                                                     **{k: metrics[k] for k in ("mse", "mae", "r2")}}
        numpy.testing.assert_array_equal(numpy.load(out), model.predict(X))
    bad = w.copy()
    bad[[9, 30]] = -1.0
    numpy.save(path / "neg.npy", bad)
    numpy.save(path / "short.npy", w[:10])
    targets = ["--targets", str(path / "Y.npy")]
    for args, says in (([*npy_in, "--weights", str(path / "w.npy")], "--weights {w} is read by --score alone; add "
                                                                     "--score (predictions are not weighted)"),
                       ([*npy_in, *targets], "--targets {Y} is read by --score alone; add --score"),
                       ([*npy_in, "--score"], "--score of an .npy IN needs --targets Y.npy"),
                       ([*npy_in, "--score", *targets, "--weight", "w"], "--weight w names a column of a Parquet or "
                        "CSV table; for IN X.npy give each row's weight in a file of its own, --weights W.npy"),
                       ([*npy_in, "--score", *targets, "--weights", str(path / "neg.npy")], "neg.npy (rows 8-15): 2 "
                        "negative weight(s) among all 240 rows, the first at row 9 (-1): a weight must be 0 or more "
                        "(a negative one rewards a larger error, and the loss has no minimum); OUT not written\n"),
                       ([*npy_in, "--score", *targets, "--weights", str(path / "short.npy")], "short.npy has 10 "
                        "weights but {X} has 240 rows: one weight a row; OUT not written\n")):
        (path / "p.npy").unlink(missing_ok=True)
        assert status(main, ["predict", *args, "--device", "cpu"]) == 2
        assert says.format(w=path / "w.npy", Y=path / "Y.npy", X=path / "X.npy") in capsys.readouterr().err and not (path / "p.npy").exists()


def test_gpunn_predict_refuses_weights_of_an_npy_file_for_a_table_in_as_train_does(tables, capsys):
    """--weights W.npy goes with an .npy IN and --targets with one, as gpunn train pairs them with --data X.npy."""
    from gpunn.cli import main

    path, *_ = tables
    model_path = str(path / "m.npz")
    assert main(["train", "--data", str(path / "t.csv"), "--target", "y1,y2", "--weight", "w", "--save", model_path,
                 "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    for extra, says in ((["--weights", str(path / "w.npy")], f"--weights goes with IN X.npy; for IN {path / 't.csv'}, "
                                                             "name the weight column with --weight"),
                        (["--targets", str(path / "Y.npy")], "--targets goes with an .npy IN; --score reads IN")):
        assert status(main, ["predict", model_path, str(path / "t.csv"), str(path / "q.csv"), "--score", *extra,
                             "--device", "cpu"]) == 2
        assert says in capsys.readouterr().err and not (path / "q.csv").exists()


def test_gpunn_train_resume_of_a_weighted_run_whose_weights_moved_says_to_give_where_they_are(files, capsys):
    """It said "give --data (and --targets) where they are now, and --weights where the run has them"."""
    from gpunn.cli import main

    path, *_ = files
    run = ["--data", str(path / "X.npy"), "--targets", str(path / "Y.npy"), "--weights", str(path / "w.npy")]
    assert main(["train", *run, "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet", "--save",
                 str(path / "r.npz")]) == 0
    (path / "w.npy").rename(path / "w2.npy")
    capsys.readouterr()
    assert main(["train", "--resume", str(path / "r.npz"), "--epochs", "2", "--quiet"]) == 2
    assert capsys.readouterr().err.endswith(
        f"--weights {path / 'w.npy'}: no such file; if the run's files have moved, give --data (and --targets and "
        "--weights) where they are now: the checkpoint checks that they hold the same data\n")
    assert main(["train", "--resume", str(path / "r.npz"), "--epochs", "2", "--quiet", "--weights",
                 str(path / "w2.npy")]) == 0


@pytest.mark.parametrize("options, says", [
    (["--data", "t.csv", "--target", "y1", "--weights", "w.npy"], r"--weights goes with --data X\.npy; for --data "
                                                                  r"\S*t\.csv, name the weight column with --weight"),
    (["--data", "X.npy", "--targets", "Y.npy", "--weight", "w"], r"--weight w names a column of a Parquet or CSV "
                                                                 r"table; for --data X\.npy give each row's weight in "
                                                                 r"a file of its own, --weights W\.npy"),
    (["--weights", "w.npy"], r"--weights \S*w\.npy names the rows' weights of a --data file, and this run trains on "
                             r"the synthetic task teacher"),
    # (it said Python's "weight names one column of each row's weight, a str; got ''")
    (["--data", "t.csv", "--target", "y1", "--weight", ""], r"argument --weight: expected a column's name, got ''"),
])
def test_gpunn_train_refuses_weights_that_its_data_would_not_read(tables, capsys, monkeypatch, options, says):
    from gpunn.cli import main

    path, *_ = tables
    monkeypatch.chdir(path)
    assert status(main, ["train", *options, "--epochs", "1", "--device", "cpu", "--quiet"]) == 2
    assert re.search(says, capsys.readouterr().err)


def status(main, argv) -> int:
    """The command's exit status, a refusal by its parser (SystemExit) too."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("outputs", [1, 2])
def test_an_ensemble_on_a_weighted_source_trains_each_member_as_the_mlp_on_it(files, outputs):
    """Every member weighs the source's rows as one MLP's fit on the source does (Ensemble.fit's sample_weight on
    arrays: member k is MLP(seed=seed + k)'s run), its held-out chunks' val_* too, bit for bit; a resume of the
    ensemble's run part-way is exact."""
    path, X, Y, w = files
    numpy.save(path / "Y.npy", Y[:, :outputs])

    def source():
        return npy(path, chunk_rows=20, validation_fraction=0.25, seed=3)

    ens = gpunn.Ensemble([3, 8, outputs], 3, dtype="float64", device="cpu", seed=5)
    history = fit(ens, source())
    for k in range(3):
        member = MLP([3, 8, outputs], dtype="float64", device="cpu", seed=5 + k)
        alone = fit(member, source())
        numpy.testing.assert_array_equal(ens[k].params, member.params)
        for key in ("loss", "val_loss", "val_mae", "val_r2"):
            assert [epoch[k] for epoch in history[key]] == alone[key], key
    unweighted = gpunn.Ensemble([3, 8, outputs], 3, dtype="float64", device="cpu", seed=5)
    fit(unweighted, npy(path, None, chunk_rows=20, validation_fraction=0.25, seed=3))
    assert not numpy.allclose(unweighted.params, ens.params)

    class StopPartWay(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.state.epoch == 1 and batch == 2:
                trainer.interrupt()

    run = path / "ens.npz"
    fit(gpunn.Ensemble([3, 8, outputs], 3, dtype="float64", device="cpu", seed=5), source(),
        callbacks=[gpunn.ModelCheckpoint(run), StopPartWay()])
    checkpoint = gpunn.load_checkpoint(run, device="cpu")
    assert checkpoint.state.batch == 3
    checkpoint.resume(source(), verbose=False)
    numpy.testing.assert_array_equal(checkpoint.model.params, ens.params)


def test_evaluate_and_score_of_a_weighted_source_weigh_its_rows_as_sample_weight_weighs_arrays(files):
    path, X, Y, w = files
    source = npy(path, chunk_rows=20, validation_fraction=0.25)
    model = MLP([3, 8, 2], dtype="float64", device="cpu", seed=2)
    fit(model, source)
    expected = model.evaluate(X, Y, sample_weight=w)  # (every row: the held-out chunks' too)
    for key, value in model.evaluate(source).items():
        assert value == pytest.approx(expected[key], rel=1e-10), key
    assert model.score(source) == pytest.approx(model.score(X, Y, sample_weight=w), rel=1e-10)
    assert model.evaluate(npy(path, None))["mse"] != pytest.approx(expected["mse"], rel=1e-3)
    ens = gpunn.Ensemble([3, 8, 2], 2, dtype="float64", device="cpu", seed=2)
    fit(ens, source)
    numpy.testing.assert_allclose(ens.evaluate(source)["r2"], ens.evaluate(X, Y, sample_weight=w)["r2"], rtol=1e-10)
    with pytest.raises(ValueError, match=r"^sample_weight weighs the rows of in-memory arrays; a data source carries "
                                         r"its own \(gpunn\.data\.npy\(\.\.\., weights='w\.npy'\)"):
        model.evaluate(source, sample_weight=w)


def held_rows(source):
    """The rows of ``source``'s held-out chunks, in the order validation reads them."""
    starts = numpy.concatenate([[0], numpy.cumsum(source.chunk_sizes)])
    return numpy.concatenate([numpy.arange(starts[k], starts[k + 1]) for k in source.validation_chunks])


def test_a_float32_models_weighted_validation_and_evaluate_on_a_source_weigh_by_the_float64_weights(files, device):
    """A float32 model reads a source's rows in float32, and its metrics weigh them by their weights in float64 (read
    apart from Y, not rounded to its dtype): the held-out chunk's val_* are evaluate(X_val, Y_val, sample_weight=
    w_val) of its rows, a weighted validation source's those of its rows, and evaluate(source) and score(source)
    those of every row, to the float64 sums' roundoff (the weights carried as Y's float32 column were ~1e-8 off).
    Each window holds the rows evaluate takes in one piece, so the forward passes are the same products."""
    path, X, Y, w = files
    source = npy(path, shuffle=False, chunk_rows=60, validation_fraction=0.25)
    model = MLP([3, 8, 2], dtype="float32", device=device, seed=2)
    history = fit(model, source)
    [k] = source.validation_chunks
    held = slice(60 * k, 60 * k + 60)
    logs = model.evaluate(X[held], Y[held], sample_weight=w[held])
    for key in ("loss", "mse", "mae", "r2"):
        assert history[f"val_{key}"][-1] == pytest.approx(logs[key], rel=1e-12), key
    every_row = npy(path, chunk_rows=240)
    expected = model.evaluate(X, Y, sample_weight=w)
    for key, value in model.evaluate(every_row).items():
        assert value == pytest.approx(expected[key], rel=1e-12), key
    assert model.score(every_row) == pytest.approx(model.score(X, Y, sample_weight=w), rel=1e-12)
    numpy.save(path / "wv.npy", w[::-1].copy())
    history = fit(model, npy(path, None, shuffle=False, chunk_rows=60), epochs=1,
                  validation_data=npy(path, "wv.npy", chunk_rows=240))
    logs = model.evaluate(X, Y, sample_weight=w[::-1])
    for key in ("loss", "mse", "mae", "r2"):
        assert history[f"val_{key}"][-1] == pytest.approx(logs[key], rel=1e-12), key


def test_a_standardized_weighted_sources_validation_and_evaluate_weigh_its_rows_as_arrays_are(files, device):
    """A source standardized on the device (standardize=True, its stored dtype the model's) standardizes every target
    column of the windows that carry the weights apart (validation's, evaluate's), not all but the last as in
    training's, where the last is the weight: the held-out chunk's val_r2 is evaluate(X_val, Y_val, sample_weight=
    w_val)'s, and evaluate(source) and score(source) those of the arrays (audit49: without it, ValueError 'non-
    broadcastable output operand' at the first validation)."""
    path, X, Y, w = files
    source = npy(path, shuffle=False, chunk_rows=60, validation_fraction=0.25, standardize=True)
    model = MLP([3, 8, 2], dtype="float64", device=device, seed=2)
    history = fit(model, source)
    held = held_rows(source)
    assert history["val_r2"][-1] == pytest.approx(model.evaluate(X[held], Y[held], sample_weight=w[held])["r2"],
                                                  rel=1e-12)
    every_row = npy(path, chunk_rows=60, standardize=True)
    expected = model.evaluate(X, Y, sample_weight=w)
    for key, value in model.evaluate(every_row).items():
        assert value == pytest.approx(expected[key], rel=1e-12), key
    assert model.score(every_row) == pytest.approx(model.score(X, Y, sample_weight=w), rel=1e-12)


@pytest.mark.parametrize("members", [None, 2], ids=["mlp", "ensemble"])
def test_two_ranks_validate_a_float32_model_by_the_held_out_rows_float64_weights(files, monkeypatch, fake_cupy,
                                                                                 members):
    """fit(source, distributed=True) of a float32 model on two ranks (threads on the stand-in's GPUs): each rank's
    share of the held-out chunks is weighed by its rows' weights in float64, so the val_* every rank logs are
    evaluate(X_val, Y_val, sample_weight=w_val) of those rows, one MLP's and an Ensemble's (each member's)."""
    from thread_ranks import run_ranks

    path, X, Y, w = files

    def rank_fit(rank):
        model = (MLP([3, 8, 2], dtype="float32", device=f"cuda:{rank}", seed=0) if members is None else
                 gpunn.Ensemble([3, 8, 2], members, dtype="float32", device=f"cuda:{rank}", seed=0))
        source = npy(path, chunk_rows=20, seed=3, validation_fraction=0.25)
        history = fit(model, source, batch_size=8, distributed=True)
        held = held_rows(source)
        return history, model.evaluate(X[held], Y[held], sample_weight=w[held])

    outcomes, aborted = run_ranks(monkeypatch, 2, rank_fit, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    for (history, logs), _ in outcomes:
        for key in ("loss", "mse", "mae", "r2"):
            numpy.testing.assert_allclose(history[f"val_{key}"][-1], logs[key], rtol=1e-12, err_msg=key)


def test_a_one_member_gpunn_sweep_on_a_weighted_file_is_the_gpunn_train_run(tables, capsys):
    """gpunn sweep takes --weights and --weight as gpunn train does: its ensembles train on a weighted source as
    their members' MLPs would (the Ensemble test above), so a one-member sweep is the train run."""
    from gpunn.cli import main

    path, *_ = tables
    common = ["--hidden", "8", "--epochs", "2", "--batch-size", "32", "--lr", "3e-3", "--device", "cpu", "--dtype",
              "float64", "--quiet"]
    for name, data in (("npy", ["--data", str(path / "X.npy"), "--targets", str(path / "Y.npy"), "--weights",
                                str(path / "w.npy")]),
                       ("csv", ["--data", str(path / "t.csv"), "--target", "y1,y2", "--weight", "w"])):
        assert main(["sweep", *data, *common, "--save-best", str(path / f"swept-{name}.npz")]) == 0
        assert main(["train", *data, *common, "--save", str(path / f"alone-{name}.npz")]) == 0
        numpy.testing.assert_allclose(gpunn.load(path / f"swept-{name}.npz", device="cpu").params,
                                      gpunn.load(path / f"alone-{name}.npz", device="cpu").params, rtol=1e-10)
    assert main(["sweep", *data[:4], "--features", "a,b,c", *common, "--save-best", str(path / "plain.npz")]) == 0
    assert not numpy.allclose(gpunn.load(path / "plain.npz", device="cpu").params,
                              gpunn.load(path / "swept-csv.npz", device="cpu").params)
    capsys.readouterr()
    # the held-out targets' spread that the sweep's note reads is weighted as its val R2 is: targets that vary only
    # in rows of weight 0 are all one value to the metrics (R² undefined, said once)
    rng = numpy.random.default_rng(4)
    numpy.save(path / "Yc.npy", numpy.where(numpy.arange(240) % 2, 5.0, rng.standard_normal(240))[:, None])
    numpy.save(path / "wc.npy", (numpy.arange(240) % 2).astype(float))
    assert main(["sweep", "--data", str(path / "X.npy"), "--targets", str(path / "Yc.npy"), "--weights",
                 str(path / "wc.npy"), *common]) == 0
    assert "note: the held-out targets are all the same value" in capsys.readouterr().err
    assert main(["sweep", "--weight", "w", *common]) == 2
    assert "--weight w names the rows' weights of a --data file" in capsys.readouterr().err


def test_a_float32_sweeps_held_out_spread_is_its_validations_r2_denominator_bit_for_bit(files):
    """The note on held-out targets that do not vary reads their spread once more: it took the weights through Y's
    float32 column, while validation weighs by them in float64, so the two sums of squares differed (~1e-8 relative),
    and where validation's is 0 or not decided apart from it. They are now the same numbers."""
    from gpunn.cli.sweep import _held_out_spread
    from gpunn.metrics import SourceEvaluator

    path, *_ = files
    source = npy(path, chunk_rows=20, seed=3, validation_fraction=0.25).bind("cpu", "float32")
    evaluator = SourceEvaluator(source)
    evaluator.evaluate(MLP([3, 4, 2], dtype="float32", device="cpu", seed=0))
    numpy.testing.assert_array_equal(_held_out_spread(source.backend, None, source), evaluator.ss_tot)


def test_a_float32_sweeps_note_on_one_valued_held_out_targets_agrees_with_its_val_r2(files, capsys):
    """Held-out targets of one value (0.1) with uneven weights: validation's weighted mean, in float64, rounds off
    it, so its R² denominator is ~1e-31, not 0, and val R2 is not 0 (as scikit-learn's r2_score with these weights).
    The note read the spread with the weights rounded to float32, found 0, and said "val R2 says 0" beside a val R2
    of -2e34; it now reads validation's own spread and says nothing where val R2 is not the convention's 0."""
    from gpunn.cli import main

    path, *_ = files
    numpy.save(path / "Yc.npy", numpy.full((240, 1), 0.1))
    js = path / "s.json"
    assert main(["sweep", "--data", str(path / "X.npy"), "--targets", str(path / "Yc.npy"), "--weights",
                 str(path / "w.npy"), "--hidden", "4", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
                 "--dtype", "float32", "--quiet", "--json", str(js)]) == 0
    r2 = json.loads(js.read_text())["members"][0]["val_r2"]
    assert r2 != 0 and "all the same" not in capsys.readouterr().err, r2


def test_gpunn_sweep_resume_takes_the_weights_where_they_are_now_as_its_help_says(files, capsys):
    """gpunn sweep --resume took --weights at the file's new place, as train's does, but its --help named only --data
    and --targets as options that may say where the files are."""
    from gpunn.cli import build_parser, main

    path, *_ = files
    run = ["--data", str(path / "X.npy"), "--targets", str(path / "Y.npy")]
    assert main(["sweep", *run, "--weights", str(path / "w.npy"), "--lr", "1e-3,1e-2", "--hidden", "4", "--epochs",
                 "1", "--device", "cpu", "--quiet", "--save", str(path / "swept")]) == 0
    (path / "w.npy").rename(path / "w2.npy")
    assert main(["sweep", "--resume", str(path / "swept"), "--epochs", "2", "--quiet", "--weights",
                 str(path / "w2.npy")]) == 0, capsys.readouterr().err
    for command in ("train", "sweep"):
        resume = build_parser().commands[command]._option_string_actions["--resume"].help
        assert "--data, --targets and --weights may say where its files are now" in resume, command


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_standardized_weighted_source_trains_as_standardized_arrays_with_sample_weight(files, dtype):
    """The weights' column rides past the standardization, on the device (float64) and on the reader's thread (a
    float32 model of float64 files: standardized wide, then cast), unscaled: the run is fit(X, Y, standardize=True,
    sample_weight=w)'s, and evaluate(source) its evaluate(X, Y, sample_weight=w) in raw units."""
    path, X, Y, w = files
    X = X * 100 + 50
    numpy.save(path / "X.npy", X)
    source = npy(path, shuffle=False, standardize=True)
    on_file, on_arrays = (MLP([3, 8, 2], dtype=dtype, device="cpu", seed=1) for _ in range(2))
    fit(on_file, source, batch_size=None)
    fit(on_arrays, (X, Y), sample_weight=w, standardize=True, shuffle=False, batch_size=None)
    numpy.testing.assert_allclose(on_file.params, on_arrays.params, rtol=1e-12, atol=1e-14)
    for key, value in on_file.evaluate(source).items():
        assert value == pytest.approx(on_arrays.evaluate(X, Y, sample_weight=w)[key], rel=1e-6), key


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_a_sharded_weighted_source_in_one_process_trains_its_global_batches_weighted(tables, kind):
    """ShardedSource(source, 2) at batch 2b (what a 2-rank run resumed in one process reads): global batch i is b rows
    of each shard, each with its weight, scaled over every training row; shuffle=False makes that the arrays' fit on
    the rows so interleaved. (Its shards' windows had no weights while the model read Y's last target as them.)"""
    from gpunn.distributed import ShardedSource

    path, X, Y, w = tables
    source = (npy(path, shuffle=False, chunk_rows=25) if kind == "npy" else
              table(path, "csv", shuffle=False, block_size=700, cache=False))  # (chunks cut by the shards)
    half, b = 120, 16
    order = numpy.concatenate([numpy.concatenate([numpy.arange(s * half + i, min(s * half + i + b, (s + 1) * half))
                                                  for s in (0, 1)]) for i in range(0, half, b)])
    sharded, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(sharded, ShardedSource(source, 2), batch_size=2 * b)
    expected = fit(on_arrays, (X[order], Y[order]), sample_weight=w[order], shuffle=False, batch_size=2 * b)
    numpy.testing.assert_allclose(sharded.params, on_arrays.params, rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-12)


def _ranks_model(device, members):
    """One MLP (``members`` None) or an Ensemble of ``members``, and its fit options (each member an lr of its own)."""
    if members is None:
        return MLP([3, 8, 2], activation="tanh", dtype="float64", device=device, seed=0), {}
    return (gpunn.Ensemble([3, 8, 2], members, activation="tanh", dtype="float64", device=device, seed=0),
            {"lr": [0.05, 0.02, 0.1][:members]})


@pytest.mark.parametrize("members", [None, 3], ids=["mlp", "ensemble"])
@pytest.mark.parametrize("validation", ["fraction", "source", "source weighing 0 on rank 0"])
def test_two_ranks_on_a_weighted_source_train_the_one_process_sharded_run(files, monkeypatch, fake_cupy, validation,
                                                                          members):
    """fit(source, distributed=True) on two ranks (threads on the stand-in's GPUs, NCCL): each rank reads its shard
    with its rows' weights, scaled over every training row, and the held-out chunks (or a weighted validation
    source) are split by chunks, each rank's weighed by theirs and R²'s denominator from the ranks' WeightedMoments
    merged: the run is the one process's on ShardedSource(source, 2) at twice the batch, to summation order, one
    MLP's and an Ensemble's (every member, each with its own lr). A validation source whose chunks rank 0 reads all
    weigh 0: that rank's moments still count its rows (the metrics divide by every rank's: val_mse was doubled)."""
    from thread_ranks import run_ranks

    from gpunn.distributed import ShardedSource

    path, X, Y, w = files
    held = w[::-1].copy()
    if validation == "source weighing 0 on rank 0":
        held[:120] = 0.0  # (chunks 0-3 of 8)
    numpy.save(path / "wv.npy", held)

    def source():
        return npy(path, chunk_rows=20, seed=3, validation_fraction=0.25 if validation == "fraction" else None)

    def options():
        if validation == "fraction":
            return {}
        return {"validation_data": gpunn.data.npy(path / "X.npy", path / "Y.npy", weights=path / "wv.npy",
                                                  chunk_rows=30)}

    def rank_fit(rank):
        trained, lr = _ranks_model(f"cuda:{rank}", members)
        history = fit(trained, source(), batch_size=8, distributed=True, **options(), **lr)
        for k in range(members or 0):  # member k: MLP(seed=k)'s data-parallel fit with its lr
            alone = MLP([3, 8, 2], activation="tanh", dtype="float64", device=f"cuda:{rank}", seed=k)
            fit(alone, source(), batch_size=8, distributed=True, lr=lr["lr"][k], **options())
            numpy.testing.assert_allclose(*(m.backend.to_host(m.params) for m in (trained[k], alone)), rtol=1e-10,
                                          atol=1e-12)
        return trained.backend.to_host(trained.params), history

    outcomes, aborted = run_ranks(monkeypatch, 2, rank_fit, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    reference, lr = _ranks_model("cuda:0", members)
    expected = fit(reference, ShardedSource(source(), 2), batch_size=16, **options(), **lr)
    unweighted, _ = _ranks_model("cuda:0", members)
    fit(unweighted, ShardedSource(npy(path, None, chunk_rows=20, seed=3, validation_fraction=0.25), 2), batch_size=16,
        **lr)
    for (params, history), _ in outcomes:
        numpy.testing.assert_allclose(params, reference.backend.to_host(reference.params), rtol=1e-10, atol=1e-12)
        for key in ("loss", "val_loss", "val_mae", "val_r2"):
            numpy.testing.assert_allclose(history[key], expected[key], rtol=1e-10)
    assert numpy.abs(reference.backend.to_host(reference.params - unweighted.params)).max() > 1e-3


@pytest.mark.parametrize("members", [None, 3], ids=["mlp", "ensemble"])
def test_a_two_rank_run_on_a_weighted_source_stopped_part_way_resumes_in_one_process_exactly(files, monkeypatch,
                                                                                             fake_cupy, members):
    """... and on two ranks: one MLP's run and an Ensemble's, to the one process's ShardedSource(source, 2) run."""
    from thread_ranks import run_ranks

    from gpunn.distributed import ShardedSource

    path, *_ = files
    run = path / "ranks.npz"

    def source(weights="w.npy"):
        return npy(path, weights, chunk_rows=20, seed=3, validation_fraction=0.25)

    class StopPartWay(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.state.epoch == 1 and batch == 3:
                trainer.interrupt()

    def rank_fit(rank):
        trained, lr = _ranks_model(f"cuda:{rank}", members)
        fit(trained, source(), batch_size=8, distributed=True, callbacks=[gpunn.ModelCheckpoint(run), StopPartWay()],
            **lr)

    def rank_resume(rank):
        resumed = gpunn.load_checkpoint(run, device=f"cuda:{rank}")
        history = resumed.resume(source(), verbose=False, distributed=True, checkpoint=False)
        return resumed.model.backend.to_host(resumed.model.params), history

    outcomes, aborted = run_ranks(monkeypatch, 2, rank_fit, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    checkpoint = gpunn.load_checkpoint(run, device="cuda:0")
    assert (checkpoint.state.epoch, checkpoint.state.batch) == (1, 4)
    with pytest.raises(ValueError, match=r"was trained on another source: sample_weight was True, now None"):
        gpunn.load_checkpoint(run, device="cuda:0").resume(source(None), verbose=False)
    whole, lr = _ranks_model("cuda:0", members)  # (a GPU's window permutations: the ranks')
    expected = fit(whole, ShardedSource(source(), 2), batch_size=16, **lr)
    outcomes, aborted = run_ranks(monkeypatch, 2, rank_resume, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    history = checkpoint.resume(source(), verbose=False)  # (its shards read in one process, weights and all)
    for params, got in [(checkpoint.model.backend.to_host(checkpoint.model.params), history),
                        *(value for value, _ in outcomes)]:
        numpy.testing.assert_allclose(params, whole.backend.to_host(whole.params), rtol=1e-10, atol=1e-12)
        numpy.testing.assert_allclose(got["val_r2"][-1], expected["val_r2"][-1], rtol=1e-10)


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_shuffled_windows_carry_each_rows_weight_with_it(tables, kind):
    """With shuffle (chunk order and rows within each window permuted) each row's weight must move with it: at the
    full batch the step does not depend on the row order, so the run is the array fit of the training chunks' rows
    with their weights. (The other tests compare shuffled runs only with themselves, or train unshuffled.)"""
    path, X, Y, w = tables
    options = dict(seed=4, window=3, validation_fraction=0.25)
    source = npy(path, chunk_rows=17, **options) if kind == "npy" else table(path, kind, **options)
    starts = numpy.concatenate([[0], numpy.cumsum(source.chunk_sizes)])
    kept = numpy.concatenate([numpy.arange(starts[k], starts[k + 1]) for k in sorted(source.train_chunks)])
    assert source.shuffle and len(source.chunk_sizes) > 4 and len(kept) < 240
    on_source, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(on_source, source, batch_size=None)
    expected = fit(on_arrays, (X[kept], Y[kept]), sample_weight=w[kept], batch_size=None)
    numpy.testing.assert_allclose(on_source.params, on_arrays.params, rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-10)


def test_a_chunk_of_zero_weights_and_one_all_at_the_largest_weigh_as_the_arrays_weighed_so(files):
    """Weights grouped by chunk, as sorted or grouped data gives them: chunk 1's rows all 0 and chunk 3's all at the
    largest weight (that chunk's smallest is then the set's largest). The training rows' scale is taken over the
    chunks' largest weights, neither refused as all 0 nor taken as equal weights (an unweighted run)."""
    path, X, Y, w = files
    w = w.copy()
    w[20:40], w[60:80] = 0.0, 3.0  # (the others are under 3)
    numpy.save(path / "w.npy", w)
    on_file, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(on_file, npy(path, shuffle=False, chunk_rows=20))
    expected = fit(on_arrays, (X, Y), sample_weight=w, shuffle=False)
    numpy.testing.assert_allclose(on_file.params, on_arrays.params, rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-12)


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_a_sharded_weighted_source_with_held_out_chunks_and_shards_cut_mid_chunk_trains_its_global_batches(
        tmp_path, kind):
    """ShardedSource(source, 2) at batch 2b where the shards' boundary cuts a chunk (an .npy pair's part read by row
    range, a CSV chunk's read whole and sliced: each with its rows' weights), shard 1 is a row longer (its last
    global batch has shard 0's empty piece, with the weights' column) and chunks are held out (the training rows'
    weights scaled over them, not over every row): the arrays' fit on the training rows so interleaved."""
    from gpunn.distributed import ShardedSource

    rng = numpy.random.default_rng(4)
    n = 263
    X = rng.standard_normal((n, 3))
    Y = numpy.stack([numpy.sin(X[:, 0]) + X[:, 1] ** 2, X[:, 2]], axis=1)
    w = rng.uniform(0.0, 3.0, n)
    for name, a in (("X", X), ("Y", Y), ("w", w)):
        numpy.save(tmp_path / f"{name}.npy", a)
    with open(tmp_path / "t.csv", "w") as f:
        f.write("a,b,c,w,y1,y2\n" + "".join(",".join(repr(float(v)) for v in (*X[i], w[i], *Y[i])) + "\n"
                                            for i in range(n)))
    options = dict(shuffle=False, validation_fraction=0.2, seed=2)
    source = (npy(tmp_path, chunk_rows=10, **options) if kind == "npy" else
              table(tmp_path, "csv", block_size=700, cache=False, **options))
    starts = numpy.cumsum(source.chunk_sizes) - source.chunk_sizes
    train = numpy.concatenate([numpy.arange(starts[k], starts[k] + source.chunk_sizes[k])
                               for k in sorted(source.train_chunks)])
    half = len(train) // 2
    assert len(train) == 2 * half + 1, len(train)
    b = max(d for d in range(2, 17) if half % d == 0)  # shard 0's batches all full: shard 1 has one more
    sharded = ShardedSource(source, 2)
    assert any(lo > 0 for _, lo, _ in sharded.views()[1].parts)  # (a chunk cut by the shards)
    shards = (train[:half], train[half:])
    order = numpy.concatenate([numpy.concatenate([s[i:i + b] for s in shards]) for i in range(0, half + 1, b)])
    on_shards, on_arrays = (MLP([3, 8, 2], dtype="float64", device="cpu", seed=1) for _ in range(2))
    history = fit(on_shards, sharded, batch_size=2 * b)
    expected = fit(on_arrays, (X[order], Y[order]), sample_weight=w[order], shuffle=False, batch_size=2 * b)
    numpy.testing.assert_allclose(on_shards.params, on_arrays.params, rtol=1e-12, atol=1e-14)
    numpy.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-12)


def test_a_weights_file_cut_short_is_refused_before_the_first_step_and_closed_with_the_source(files):
    """The weights' file is checked before each epoch as X's and Y's are (a file cut short: no step trains on the
    rows before it), and close() closes it with them."""
    path, X, Y, w = files
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    source = npy(path, shuffle=False, chunk_rows=20)
    with open(path / "w.npy", "r+b") as fh:
        fh.truncate(os.path.getsize(path / "w.npy") - 8)
    model = MLP([3, 8, 2], dtype="float64", device="cpu", seed=1)
    before = model.params.copy()
    with pytest.raises(DataError, match=r"w\.npy: truncated: its header describes 240 rows"):
        fit(model, source)
    numpy.testing.assert_array_equal(model.params, before)
    source.close()
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds  # (x, y and w closed)

