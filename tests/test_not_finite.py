"""A NaN or infinite value in a data file is refused in one wording by training (gpunn.data, ``gpunn train --data``)
and ``gpunn predict`` (read whole or streamed), naming the file, where in it, the column and the value: a CSV
file's line as csvtext.not_finite words it (tests/test_csv_rule.py), an .npy or Parquet file's row in the same words
(errors.not_finite_value); where the value read again is finite (the file changed since it was read), the count's
words without it; and a value past float32's range that standardize=True scales in float64 first is no refusal."""
import re

import numpy
import pytest

import gpunn
from gpunn import data
from gpunn.checks import NotFinite
from gpunn.cli import main
from gpunn.data import DataError
from gpunn.data.files import not_finite_in_file

ROWS = 24
BAD_ROW = 7
VALUES = [  # (stored, as the message shows it, what it is as float32)
    (float("nan"), "nan", "NaN"),
    (float("-inf"), "-inf", "infinite"),
    (1e39, "1e+39", "infinite in float32 (past its largest value)"),
]


def columns(bad=None):
    """Features a and b and target y of ROWS rows; b's BAD_ROW holds ``bad``."""
    a = numpy.linspace(-1.0, 1.0, ROWS)
    b = numpy.linspace(2.0, 3.0, ROWS)
    if bad is not None:
        b[BAD_ROW] = bad
    return a, b, a - numpy.linspace(2.0, 3.0, ROWS)


def write(tmp_path, kind, bad=None, name="t"):
    """The table (a, b; y) as an .npy pair (X, Y), a Parquet file of row groups of 5 rows or a CSV file; the
    features' path."""
    a, b, y = columns(bad)
    if kind == "csv":
        pytest.importorskip("pyarrow")
        rows = zip(*(column.tolist() for column in (a, b, y)))
        (tmp_path / f"{name}.csv").write_text("a,b,y\n" + "".join(",".join(map(repr, row)) + "\n" for row in rows))
        return str(tmp_path / f"{name}.csv")
    if kind == "npy":
        numpy.save(tmp_path / f"{name}X.npy", numpy.column_stack([a, b]))
        numpy.save(tmp_path / f"{name}Y.npy", y.reshape(-1, 1))
        return str(tmp_path / f"{name}X.npy")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": a, "b": b, "y": y}), tmp_path / f"{name}.parquet", row_group_size=5)
    return str(tmp_path / f"{name}.parquet")


def source(path, **options):
    if path.endswith(".npy"):
        return data.npy(path, path.replace("X.npy", "Y.npy"), chunk_rows=4, shuffle=False, **options)
    if path.endswith(".csv"):
        return data.csv(path, "y", shuffle=False, **options)
    return data.parquet(path, "y", chunk_rows=4, shuffle=False, **options)


def training_refusal(path, **options):
    """What training, bound float32, refuses in the file at ``path``."""
    read = source(path, **options).bind("cpu", "float32")
    with pytest.raises(DataError) as caught:
        list(read.ordered_windows())
    return str(caught.value)


def predict_refusals(tmp_path, monkeypatch, capsys, path, model=None) -> list:
    """gpunn predict's last stderr line refusing ``path`` for ``model`` (default: a float32 model of features a, b):
    read whole (an .npy under STREAM_BYTES) and streamed."""
    from gpunn.cli import predict

    if model is None:
        model = gpunn.MLP([2, 1], seed=0, device="cpu", dtype="float32")
        model.data_columns = {"features": ["a", "b"], "targets": ["y"]}
    gpunn.save(str(tmp_path / "m.npz"), model)
    said = []
    for stream_bytes in ((predict.STREAM_BYTES, 0) if path.endswith(".npy") else (0,)):
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        assert main(["predict", str(tmp_path / "m.npz"), path, str(tmp_path / "p.npy")]) == 2
        said.append(capsys.readouterr().err.splitlines()[-1])
    return said


@pytest.mark.parametrize("stored, shown, what", VALUES, ids=["nan", "-inf", "past float32"])
@pytest.mark.parametrize("kind", ["npy", "parquet"])
def test_a_nan_or_infinite_value_of_an_npy_or_parquet_file_is_refused_in_one_wording_by_training_and_predict(
        tmp_path, monkeypatch, capsys, kind, stored, shown, what):
    """Training said "x.parquet (row group 1, rows 5-9): 1 NaN or infinite features value(s), the first at row 7
    (column 'b'); clean or impute them before training" (an .npy pair "X.npy / Y.npy (rows 4-7): ... (features
    column 1)"), gpunn predict "x.parquet: NaN or infinite values after conversion to float32, the first at row 7
    (column 'b'); clean or impute them first", and read whole "X contains 1 NaN or infinite value(s) (first at row 7,
    column 1) after conversion to float32": now all say it as a CSV file's value is said, by its row."""
    path = write(tmp_path, kind, stored)
    column = "column 1" if kind == "npy" else "column 'b'"
    said = f"{path} row {BAD_ROW}: {column}: {shown} is {what}; clean or impute it first"
    assert training_refusal(path) == said
    assert predict_refusals(tmp_path, monkeypatch, capsys, path) == [f"gpunn: error: IN {said}"] * (1 + (kind == "npy"))


def test_a_nan_target_and_a_parquet_null_are_named_by_their_file_row_and_column(tmp_path):
    """A target's value names the targets' file (an .npy pair's Y) and column; a Parquet null is a missing number,
    as a CSV file's empty value is (not a NaN the file does not hold)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = write(tmp_path, "npy")
    Y = numpy.load(tmp_path / "tY.npy")
    Y[BAD_ROW, 0] = numpy.nan
    numpy.save(tmp_path / "tY.npy", Y)
    assert training_refusal(path) == f"{tmp_path / 'tY.npy'} row {BAD_ROW}: column 0: nan is NaN; clean or impute it first"
    a, b, y = columns()
    pq.write_table(pa.table({"a": a, "b": pa.array([*b[:BAD_ROW], None, *b[BAD_ROW + 1:]]), "y": y}),
                   tmp_path / "n.parquet", row_group_size=5)
    assert training_refusal(str(tmp_path / "n.parquet")) == (f"{tmp_path / 'n.parquet'} row {BAD_ROW}: column 'b': a "
                                                             "null (a missing number) is not a number")


def test_a_nan_in_a_directory_of_parquet_files_names_its_file_and_its_row_there(tmp_path, monkeypatch, capsys):
    """Training names a directory's file and its row in that file; gpunn predict, which reads the directory as one
    dataset, names the same file and row (not the row counted over the dataset)."""
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder, "parquet", name="0")
    path = write(folder, "parquet", float("nan"), name="1")
    said = f"{path} row {BAD_ROW}: column 'b': nan is NaN; clean or impute it first"
    assert training_refusal(str(folder)) == said
    assert predict_refusals(tmp_path, monkeypatch, capsys, str(folder)) == [f"gpunn: error: IN {said}"]


# ---- the file changed since it was read: the value read again is finite --------------------------------------
def changed_after_reading(monkeypatch, read, rewrite):
    """``read``'s class reads its chunks, then the file is rewritten (``rewrite()``) before a refusal is worded."""
    fill = type(read)._fill

    def fill_then_change(self, k, X, Y):
        fill(self, k, X, Y)
        if not numpy.isfinite(X).all():
            rewrite()

    monkeypatch.setattr(type(read), "_fill", fill_then_change)
    return read


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_training_words_a_value_that_is_finite_when_read_again_by_the_chunk_s_count(tmp_path, monkeypatch, kind):
    """A value read as NaN whose file holds a number by the time the refusal is worded (rewritten in between) is
    refused by the chunk's count of such values, without the value, which the file no longer holds."""
    if kind == "csv":
        pytest.importorskip("pyarrow")
        path = tmp_path / "t.csv"
        path.write_text("a,b,y\n" + "".join(f"{i}.5,{'nan' if i == BAD_ROW else '2.5'},1\n" for i in range(ROWS)))
        read = data.csv(path, "y", block_size=40, shuffle=False)  # chunks of a few lines: lines 6-9 hold row 7
        rewrite = lambda: path.write_text(path.read_text().replace("nan", "7.5"))  # noqa: E731 (same size)
        where = f"{path} (lines 6-9): 1 NaN or infinite features value(s), the first at line 9 (column 'b')"
    else:
        path = write(tmp_path, kind, float("nan"))
        read = source(path)
        rewrite = lambda: write(tmp_path, kind, 7.5)  # noqa: E731
        where = (f"{path} / {path.replace('X.npy', 'Y.npy')} (rows 4-7): 1 NaN or infinite features value(s), the first "
                 f"at row 7 (features column 1)" if kind == "npy" else
                 f"{path} (row group 1, rows 5-8): 1 NaN or infinite features value(s), the first at row 7 (column 'b')")
    read = changed_after_reading(monkeypatch, read, rewrite).bind("cpu", "float32")
    with pytest.raises(DataError) as caught:
        list(read.ordered_windows())
    assert str(caught.value) == f"{where}; clean or impute them before training"


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_predict_words_a_value_that_is_finite_when_read_again_by_its_place(tmp_path, kind):
    """gpunn predict's refusal of row 7's NaN, worded after the file was rewritten with a number there: the place,
    without the value."""
    if kind == "csv":
        path = tmp_path / "t.csv"
        path.write_text("a,b\n" + "".join(f"{i}.5,2.5\n" for i in range(ROWS)))
        names, place = ["a", "b"], "line 9 (column 'b')"
    else:
        path, names = write(tmp_path, kind), (None if kind == "npy" else ["a", "b"])
        place = f"row {BAD_ROW} (column {1 if kind == 'npy' else repr('b')})"
    exc = NotFinite("X", 1, BAD_ROW, 1, "float32")
    assert not_finite_in_file(path, exc, BAD_ROW, names, csv=kind == "csv") == (
        f"{path}: NaN or infinite values after conversion to float32, the first at {place}; clean or impute them first")


# ---- standardize: a value past float32's range is scaled in float64 first ------------------------------------
def fitted(path, **options):
    """A float32 model of 4 hidden units fitted for an epoch on the file at ``path`` (its columns recorded, as
    gpunn train records them)."""
    model = gpunn.MLP([2, 4, 1], device="cpu", dtype="float32", seed=0)
    model.fit(source(path, **options), epochs=1, batch_size=4, verbose=False)
    model.data_columns = {"features": ["a", "b"], "targets": ["y"]}
    return model


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_a_value_past_float32_among_the_rows_standardized_trains_and_predicts(tmp_path, kind):
    """1e39 in a float64 file is refused for a float32 model as "infinite in float32" (above), but not where
    standardize=True scales the file's values in float64 before the cast: its column's statistics count it, and
    the model reads it as about 4.7 (its spread's multiple), finite. gpunn predict with that model scales it so too."""
    path = write(tmp_path, kind, 1e39)
    gpunn.save(str(tmp_path / "m.npz"), fitted(path, standardize=True))
    assert main(["predict", str(tmp_path / "m.npz"), path, str(tmp_path / "p.npy")]) == 0
    assert numpy.isfinite(numpy.load(tmp_path / "p.npy")).all()


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_a_value_standardized_past_float32_is_refused_alike_by_training_and_predict(tmp_path, monkeypatch, capsys,
                                                                                    kind):
    """A model whose statistics are of values near 2.5 (spread 0.3) scales a later file's 1e39 to about 3e39, which
    float32 cannot hold: training on that file (a later fit, which scales its rows by the model's statistics) cast
    it to inf without a word and trained on it, as a held-out chunk's made its metrics NaN, and gpunn predict
    predicted NaN for its row. Both refuse it now, in one wording."""
    model = fitted(write(tmp_path, kind, name="c"), standardize=True)
    path = write(tmp_path, kind, 1e39)
    with pytest.raises(DataError) as caught:
        model.fit(source(path), epochs=1, batch_size=4, verbose=False)
    said = str(caught.value)
    place = "line 9: column 'b': '1e+39'" if kind == "csv" else f"row 7: column {1 if kind == 'npy' else repr('b')}: 1e+39"
    assert re.fullmatch(rf"{re.escape(f'{path} {place}')} is 3\.\de\+39 once standardized, infinite in float32 \(past its "
                        r"largest value\); clean or impute it first", said), said
    assert predict_refusals(tmp_path, monkeypatch, capsys, path, model)[-1] == f"gpunn: error: IN {said}"


def test_a_float32_value_standardized_past_float32_is_refused_by_predict_and_fit(tmp_path, device):
    """Values already float32 are standardized in float32 (one copy, in place): 3e38 with statistics of spread 0.3
    became inf without a word, predict gave NaN for its row and a fit trained on it. Now NotFinite, with the row,
    the column and the value standardized in float64 (1e39), as for wider values."""
    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    model.fit(source(write(tmp_path, "npy", name="c"), standardize=True), epochs=1, batch_size=4, verbose=False)
    X = numpy.column_stack(columns(3e38)[:2]).astype(numpy.float32)
    said = (r"^X contains 1 value\(s\) infinite in float32 once standardized \(first at row 7, column 1: 1(\.\d)?e\+39\); "
            r"clean or impute them first$")
    with pytest.raises(NotFinite, match=said):
        model.predict(X)
    assert numpy.isfinite(numpy.asarray(model.backend.to_host(model.predict(X[:7])))).all()  # the rows before it
    with pytest.raises(NotFinite, match=said):
        model.fit(X, numpy.ones((len(X), 1), numpy.float32), epochs=1, batch_size=4, verbose=False)


def test_predict_refuses_an_array_value_standardized_past_float32_naming_its_row(tmp_path, device):
    """model.predict on arrays (the raw units' float64, scaled a chunk of rows at a time before the cast) returned
    NaN for such a row without a word; now NotFinite, with the row, the column and the standardized value."""
    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    model.fit(source(write(tmp_path, "npy", name="c"), standardize=True), epochs=1, batch_size=4, verbose=False)
    X = numpy.column_stack(columns(1e39)[:2])
    with pytest.raises(NotFinite, match=r"^X contains 1 value\(s\) infinite in float32 once standardized \(first at row "
                                        r"7, column 1: 3\.\de\+39\); clean or impute them first$"):
        model.predict(X)
