"""A NaN or infinite value in a data file is refused in one wording by training (gpunn.data, ``gpunn train --data``)
and ``gpunn predict`` (read whole or streamed), naming the file, where in it, the column and the value: a CSV
file's line as csvtext.not_finite words it (tests/test_csv_rule.py), an .npy or Parquet file's row in the same words
(errors.not_finite_value); where the value read again is finite (the file changed since it was read), the count's
words without it; and a value past float32's range that standardize=True scales in float64 first is no refusal."""
import os
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
    assert predict_refusals(tmp_path, monkeypatch, capsys, path) == [f"gpunn predict: error: IN {said}; OUT not written"] * (1 + (kind == "npy"))


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
                                                             "null (a missing number) is not a number; clean or "
                                                             "impute it first")


def test_a_nan_in_a_directory_of_parquet_files_names_its_file_and_its_row_there(tmp_path, monkeypatch, capsys):
    """Training names a directory's file and its row in that file; gpunn predict, which reads the directory as one
    dataset, names the same file and row (not the row counted over the dataset)."""
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder, "parquet", name="0")
    path = write(folder, "parquet", float("nan"), name="1")
    said = f"{path} row {BAD_ROW}: column 'b': nan is NaN; clean or impute it first"
    assert training_refusal(str(folder)) == said
    assert predict_refusals(tmp_path, monkeypatch, capsys, str(folder)) == [f"gpunn predict: error: IN {said}; OUT not written"]


def test_gpunn_predict_quotes_the_file_of_a_directory_of_a_name_with_a_space_and_not_the_row_after_it(
        tmp_path, monkeypatch, capsys):
    """IN 'my d/1.parquet' row 7: the file quoted as a shell word, its row after it (b147e1e0 quoted the words up to
    the first colon, 'my d/1.parquet row 7', and the bare path of a name without a space, '.../1.parquet row 7')."""
    import shlex

    folder = tmp_path / "my d"
    folder.mkdir()
    write(folder, "parquet", name="0")
    path = write(folder, "parquet", float("nan"), name="1")
    said = f"row {BAD_ROW}: column 'b': nan is NaN; clean or impute it first"
    assert predict_refusals(tmp_path, monkeypatch, capsys, str(folder)) == [
        f"gpunn predict: error: IN {shlex.quote(str(path))} {said}; OUT not written"]


# ---- the file changed since it was read: the value read again is finite --------------------------------------
def changed_after_reading(monkeypatch, read, rewrite):
    """``read``'s class reads its chunks, then the file is rewritten (``rewrite()``) as a refusal is worded. (Rewritten
    as soon as the chunk was read, the next chunk's read refused the file as changed, where the file system's clock
    had moved on: test_inputs_changed.)"""
    words = type(read)._not_finite

    def change_then_word(self, *args, **kwargs):
        rewrite()
        return words(self, *args, **kwargs)

    monkeypatch.setattr(type(read), "_not_finite", change_then_word)
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
    assert predict_refusals(tmp_path, monkeypatch, capsys, path, model)[-1] == f"gpunn predict: error: IN {said}; OUT not written"


def test_predict_names_the_first_value_standardized_past_float32_alone_as_training_does(tmp_path, monkeypatch,
                                                                                         capsys):
    """A value refused once standardized is named alone, with no count of more: another 1e39 in the rows read with
    it, which the model reads in float64 and scales past float32 too, is not counted as "not finite" (as float32
    would hold it raw), nor is one the statistics scale to a finite number."""
    model = fitted(write(tmp_path, "npy", name="c"), standardize=True)
    path = write(tmp_path, "npy", 1e39)
    X = numpy.load(path)
    X[BAD_ROW + 1, 0] = 1e39
    numpy.save(path, X)
    said = predict_refusals(tmp_path, monkeypatch, capsys, path, model)
    assert all(line.endswith(f"row {BAD_ROW}: column 1: 1e+39 is 3.3e+39 once standardized, infinite in float32 (past "
                             "its largest value); clean or impute it first; OUT not written") for line in said), said


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


def test_a_dataframe_value_standardized_past_float32_is_named_by_its_column_as_a_nan_is(tmp_path):
    """A NaN in a DataFrame's column is said by its name too ("column 1 ('b')"); a value standardized past float32
    was said by its position alone, by predict, evaluate, a later fit and an iterable's DataFrame pieces. The name is
    the frame's column as the model read it: picked by the model's names, in any order."""
    pandas = pytest.importorskip("pandas")
    model = fitted(write(tmp_path, "npy", name="c"), standardize=True)  # (its features named a, b)
    a, b, y = columns(1e39)
    frame, target = pandas.DataFrame({"b": b, "a": a}), pandas.DataFrame({"y": y})
    said = r"^X contains 1 value\(s\) infinite in float32 once standardized \(first at row 7, column 1 \('b'\): 3\.\de\+39\)"
    for call in (lambda: model.predict(frame), lambda: model.evaluate(frame, target),
                 lambda: model.fit(frame, target, epochs=1, verbose=False)):
        with pytest.raises(NotFinite, match=said) as caught:
            call()
        assert caught.value.label == "b"
    pieces = [(frame.iloc[i:i + 4][["a", "b"]], target.iloc[i:i + 4]) for i in range(0, ROWS, 4)]
    source = data.iterable(pieces, standardize=True)
    source.standardizer = model.standardizer  # (its own statistics would count the 1e39)
    with pytest.raises(NotFinite, match=r"^X of batch 2 \(epoch 1\) contains 1 value\(s\) infinite in float32 once "
                                        r"standardized \(first at row 3, column 1 \('b'\): 3\.\de\+39\)"):
        gpunn.MLP([2, 4, 1], device="cpu", seed=0).fit(source, epochs=1, batch_size=4, verbose=False)


def test_an_array_value_standardized_past_float32_is_refused_leaving_the_array_as_it_was(tmp_path, monkeypatch,
                                                                                          device):
    """The refusal read the value's row again to standardize it in float64, in place: a float64 array (not copied
    by the checks) had that row standardized under its owner. And evaluate, which predicts its rows a chunk at a
    time, named the row in its chunk (row 3 of a chunk of 4 for row 7)."""
    from gpunn import model as model_module

    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    model.fit(source(write(tmp_path, "npy", name="c"), standardize=True), epochs=1, batch_size=4, verbose=False)
    a, b, y = columns(1e39)
    X = model.xp.asarray(numpy.column_stack([a, b]))  # (on the model's device: not copied there)
    given = X.copy()
    monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", 4)
    for call in (lambda: model.predict(X), lambda: model.evaluate(X, y), lambda: model.score(X, y)):
        with pytest.raises(NotFinite, match=r"\(first at row 7, column 1: 3\.\de\+39\)"):
            call()
        numpy.testing.assert_array_equal(model.backend.to_host(X), model.backend.to_host(given))


@pytest.mark.parametrize("standardize", [True, False], ids=["standardized", "plain"])
@pytest.mark.parametrize("bad, standardized_said, plain_said", [
    ({20: 1e300, 250: 1e300}, (2, 20), (2, 20)),
    ({250: 1e300, 280: numpy.nan}, (1, 280), (2, 250)),  # (standardized: NaN anywhere is said before an overflow)
    ({20: 1e300, 250: 1e300, 290: numpy.nan}, (1, 290), (3, 20))], ids=["two-past", "past-then-nan", "all"])
def test_predict_a_chunk_at_a_time_says_what_the_whole_read_says(monkeypatch, standardize, bad, standardized_said,
                                                                 plain_said):
    """predict converts a NumPy array of more rows than a chunk a chunk at a time (model._read_by_chunk); its refusal
    is the whole read's. A float32 model standardizing float64 X counted a chunk's NaN and the values past float32
    in float32 ("2 NaN or infinite value(s) ... after conversion to float64" where the whole read says 1: 1e300 is
    finite in float64, its check's dtype), and a value standardized past float32 in its chunk alone (1 of 2), as did
    a DataFrame's read, cut into chunks too."""
    import pandas

    from gpunn import model as model_module

    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    model = gpunn.MLP([3, 4, 1], device="cpu", dtype="float32", seed=0)
    model.fit(X.astype(numpy.float32), X[:, :1].astype(numpy.float32), epochs=1, standardize=standardize,
              verbose=False)
    for row, value in bad.items():
        X[row, 1] = value
    for given in (X, pandas.DataFrame(X)):
        said = []
        for chunk_rows in (1000, 64):
            monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", chunk_rows)
            with pytest.raises(NotFinite) as refused:
                model.predict(given)
            said.append(str(refused.value))
        assert said[0] == said[1], said
    count, row = standardized_said if standardize else plain_said
    assert said[0].startswith(f"X contains {count} ") and f"(first at row {row}, column 1" in said[0], said[0]


# ---- standardized on the device: values stored in the model's dtype (gpunn.data.overflow) ---------------------
def float32_pair(tmp_path, bad=None, name="f"):
    """The table (a, b; y) as a float32 .npy pair, b's BAD_ROW holding ``bad``: standardized where it trains (in
    float32, on the model's device), not in float64 on the host. The features' path."""
    a, b, y = columns(bad)
    numpy.save(tmp_path / f"{name}X.npy", numpy.column_stack([a, b]).astype(numpy.float32))
    numpy.save(tmp_path / f"{name}Y.npy", y.reshape(-1, 1).astype(numpy.float32))
    return str(tmp_path / f"{name}X.npy")


def model_of_clean_values(tmp_path, device, members=None):
    """A float32 model (an ensemble of ``members``) fitted for an epoch on the clean float32 pair standardized:
    its statistics have b's spread, 0.3, which scales 3e38 to 1e39."""
    model = (gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0) if members is None else
             gpunn.Ensemble([2, 4, 1], n_models=members, device=device, dtype="float32", seed=0))
    model.fit(source(float32_pair(tmp_path, name="c"), standardize=True), epochs=1, batch_size=4, verbose=False)
    return model


PAST = "3e+38 is 1e+39 once standardized, infinite in float32 (past its largest value); clean or impute it first"


@pytest.mark.parametrize("members, sign", [(None, 1), (2, 1), (None, -1)], ids=["mlp", "ensemble", "-3e38"])
def test_a_float32_file_value_standardized_past_float32_on_the_device_is_refused_naming_it_and_the_epoch(
        tmp_path, device, members, sign):
    """A float32 file is standardized in float32 on the model's device: a later fit scaling its 3e38 by the model's
    statistics (spread 0.3) trained on inf and stopped with "training loss became nan ...; lower the learning rate,
    or standardize the targets and inputs" (it was standardized; an ensemble: "every member ... diverged"). Now the
    file, row, column and value, and the epoch that read it; on a GPU at the epoch's loss read (no read of its own).
    -3e38 goes to -inf."""
    model = model_of_clean_values(tmp_path, device, members)
    path = float32_pair(tmp_path, sign * 3e38)
    with pytest.raises(DataError) as caught:
        model.fit(source(path), epochs=2, batch_size=4, verbose=False)
    said = PAST if sign > 0 else f"-{PAST.replace(' is ', ' is -', 1)}"
    assert str(caught.value) == f"{path} row {BAD_ROW}: column 1: {said} (read in epoch 1)"


@pytest.mark.parametrize("distributed", [False, True], ids=["one-process", "data-parallel"])
def test_a_held_out_float32_value_standardized_past_float32_is_refused_not_scored_nan(tmp_path, device, distributed,
                                                                                     monkeypatch):
    """Held-out chunks are standardized by the training chunks' statistics: a 3e38 there became inf and every
    epoch's val_loss, val_mae and val_r2 were NaN without a word. Now refused by the validation that read it; data
    parallel too, where each rank validates its share of the held-out chunks and reads the flag with its sums (one
    process here, all of them; on a GPU over the stand-in's NCCL; the last epoch's: no later read would see it)."""
    if distributed and device != "cpu":
        import importlib

        import cupy

        from gpunn.distributed import comm

        if not hasattr(cupy, "load_as_cupy"):
            pytest.skip("a data-parallel fit in one process on the stand-in's NCCL; a GPU's: bench/gpu_checks/nccl.py")
        nccl = importlib.import_module("cupy.nccl")  # the stand-in's, of the copy that is cupy
        monkeypatch.setattr(comm, "_load_nccl", lambda: nccl)
        monkeypatch.setattr(comm, "_WORLD", {"control": comm.LocalComm()})  # one process without MPI
    path = float32_pair(tmp_path, 3e38)
    held = next(s for s in range(100) if BAD_ROW // 4 in source(path, validation_fraction=0.2, seed=s).validation_chunks)
    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    with pytest.raises(DataError) as caught:
        model.fit(source(path, validation_fraction=0.2, seed=held, standardize=True), epochs=1, batch_size=4,
                  verbose=False, distributed=distributed)
    assert re.fullmatch(rf"{re.escape(path)} row {BAD_ROW}: column 1: 3e\+38 is \d\.\de\+38 once standardized, infinite "
                        r"in float32 \(past its largest value\); clean or impute it first", str(caught.value))


def test_a_held_out_value_is_named_in_whichever_held_out_chunk_holds_it(tmp_path, device):
    """Validation reads the held-out chunks a window each, and the refusal reads the window that held the value again
    (its chunks made again from the pass's, gpunn.data.overflow): the value's, not the first held-out chunk's, which
    would read finite and say the data changed."""
    path = float32_pair(tmp_path, 3e38)

    def held_out(seed):
        return list(source(path, validation_fraction=0.5, seed=seed).validation_chunks)

    seed = next(s for s in range(200) if BAD_ROW // 4 in held_out(s)[1:])
    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    with pytest.raises(DataError, match=rf"^{re.escape(path)} row {BAD_ROW}: column 1: 3e\+38 is \S+ once standardized, "
                                        r"infinite in float32 \(past its largest value\); clean or impute it first$"):
        model.fit(source(path, validation_fraction=0.5, seed=seed, standardize=True), epochs=1, batch_size=4,
                  verbose=False)


WHY = "infinite in float32 on the way there: x - mean, or 1 / spread, is past its largest value"
AS_FLOAT64 = "or give the values as float64 (standardized in float64, then cast)"
ON_THE_WAY = f"3e+38 is 4.8 once standardized, but {WHY}; clean or impute it first, {AS_FLOAT64}"


@pytest.mark.filterwarnings("ignore:X has no column names")  # (named, scored on arrays)
def test_a_value_left_past_float32_on_the_way_to_its_standardized_value_is_named_by_fit_and_predict(
        tmp_path, device, monkeypatch, capsys):
    """b is -3e38 but at BAD_ROW, 3e38: under its own statistics (mean -2.75e38, spread 1.2e38) 3e38 is 4.8
    standardized in float64, but in float32 x - mean is past float32's largest value. The value is named, with why
    and what to do (float64 values are standardized in float64): fit on the float32 file said it by the chunk's
    count ("1 features value(s) infinite in float32 once standardized, the first at row 7"), gpunn predict by the
    file's ("values infinite in float32 once standardized, the first at row 7"), an iterable's pieces and
    model.predict gave 4.8 as if float32 could not hold it."""
    a, b, y = columns()
    b[:] = -3e38
    b[BAD_ROW] = 3e38
    X, Y = numpy.column_stack([a, b]), y.reshape(-1, 1)
    for name, dtype in (("f", numpy.float32), ("w", numpy.float64)):
        numpy.save(tmp_path / f"{name}X.npy", X.astype(dtype))
        numpy.save(tmp_path / f"{name}Y.npy", Y.astype(dtype))
    path = str(tmp_path / "fX.npy")
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} row {BAD_ROW}: column 1: {ON_THE_WAY} (read in epoch 1)')}$"):
        gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0).fit(source(path, standardize=True), epochs=1,
                                                                          batch_size=4, verbose=False)
    X = X.astype(numpy.float32)
    pieces = [(X[i:i + 4], Y[i:i + 4].astype(numpy.float32)) for i in range(0, ROWS, 4)]
    with pytest.raises(NotFinite) as caught:
        gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0).fit(data.iterable(pieces, standardize=True),
                                                                          epochs=1, batch_size=4, verbose=False)
    assert str(caught.value) == ("X of batch 2 (epoch 1) contains 1 value(s) infinite in float32 once standardized "
                                 f"(first at row 3, column 1: 4.8 in float64, but {WHY}); clean or impute them first, "
                                 f"{AS_FLOAT64}")
    model = fitted(str(tmp_path / "wX.npy"), standardize=True)  # float64: standardized in float64, then cast
    with pytest.raises(NotFinite, match=re.escape(f"X contains 1 value(s) infinite in float32 once standardized (first "
                                                  f"at row 7, column 1: 4.8 in float64, but {WHY}); clean or impute "
                                                  f"them first, {AS_FLOAT64}")):
        model.predict(X)
    if device == "cpu":  # gpunn predict, on the CPU
        assert predict_refusals(tmp_path, monkeypatch, capsys, path, model) == [
            f"gpunn predict: error: IN {path} row {BAD_ROW}: column 1: {ON_THE_WAY}; OUT not written"] * 2


class PutsBadValue(gpunn.Callback):
    """After epoch ``after`` (from 0), writes 3e38 at b's BAD_ROW of the float32 file at ``path`` in place (the
    source reads the same file again next epoch), its modification time put back: a file written over, its size or
    time changed, is refused by the next read as changed (test_inputs_changed), and the value never met."""

    def __init__(self, path, after=0):
        self.path, self.after = path, after

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.after:
            before = os.stat(self.path)
            X = numpy.load(self.path, mmap_mode="r+")
            X[BAD_ROW, 1] = 3e38
            X.flush()
            del X  # (unmapped before the time is put back)
            os.utime(self.path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_value_met_in_a_later_epoch_leaves_the_last_checkpoint_and_the_best_weights(tmp_path, device):
    """3e38 met in epoch 2: the run stops with the refusal, the checkpoint stays epoch 1's (finite), and early
    stopping's best weights are the model's (on a GPU the epoch's steps took the inf before its loss read
    found it: those weights are dropped, as a diverged run's)."""
    value_met_in_epoch_2(tmp_path, device)


def test_on_a_gpu_the_steps_a_value_spoiled_are_dropped(tmp_path, fake_cupy):
    """The test above on tests/fakecupy, so that every run checks the GPU's path, not only the stand-in's GPU pass:
    the epoch's steps took the inf before its loss read found it, and early stopping puts epoch 1's weights back."""
    value_met_in_epoch_2(tmp_path, "cuda")


def value_met_in_epoch_2(tmp_path, device):
    path = float32_pair(tmp_path)
    saved = str(tmp_path / "run.npz")
    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    callbacks = [PutsBadValue(path), gpunn.EarlyStopping(monitor="loss", patience=5), gpunn.ModelCheckpoint(saved)]
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} row {BAD_ROW}: column 1: {PAST} (read in epoch 2)')}$"):
        model.fit(source(path, standardize=True), epochs=3, batch_size=4, verbose=False, callbacks=callbacks)
    checkpoint = gpunn.load_checkpoint(saved, device="cpu")
    assert checkpoint.state.epoch == 1 and numpy.isfinite(checkpoint.model.params).all()
    assert numpy.array_equal(model.backend.to_host(model.params), checkpoint.model.params)


@pytest.mark.parametrize("stored", [numpy.float32, numpy.float64])
def test_an_iterable_batch_standardized_past_float32_is_refused_naming_the_batch_and_the_epoch(tmp_path, device,
                                                                                               stored):
    """An iterable's pieces are standardized on the device (float64 ones in float64, then cast): 3e38 (1e39 in
    float64) under statistics of spread 0.3 trained on inf; now NotFinite naming the batch, the epoch, the row and
    column in it and the value standardized in float64."""
    model = model_of_clean_values(tmp_path, device)
    a, b, y = columns(3e38 if stored is numpy.float32 else 1e39)
    X, Y = numpy.column_stack([a, b]).astype(stored), y.reshape(-1, 1).astype(stored)
    pieces = [(X[i:i + 4], Y[i:i + 4]) for i in range(0, ROWS, 4)]
    with pytest.raises(NotFinite, match=r"^X of batch 2 \(epoch 1\) contains 1 value\(s\) infinite in float32 once "
                                        rf"standardized \(first at row 3, column 1: {1 if stored is numpy.float32 else 3}"
                                        r"(\.\d)?e\+39\); clean or impute them first$"):
        model.fit(data.iterable(pieces), epochs=2, batch_size=4, verbose=False)


def test_an_iterable_float64_target_cast_to_float32_with_inputs_standardized_is_refused(tmp_path, device):
    """standardize="inputs" checks float64 targets in float64, as the inputs, and casts them after: a target of
    1e39 became inf without a word; now NotFinite naming it."""
    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    a, b, y = columns()
    X, Y = numpy.column_stack([a, b]), y.reshape(-1, 1).copy()
    Y[BAD_ROW, 0] = 1e39
    pieces = [(X[i:i + 4], Y[i:i + 4]) for i in range(0, ROWS, 4)]
    with pytest.raises(NotFinite, match=r"^Y of batch 2 \(epoch 1\) contains 1 value\(s\) infinite in float32 once "
                                        r"standardized \(first at row 3, column 0: 1e\+39\); clean or impute them first$"):
        model.fit(data.iterable(pieces, standardize="inputs"), epochs=1, batch_size=4, verbose=False)


@pytest.mark.parametrize("bad_epoch, bad_row, words", [(0, 1, "X of batch 1 (epoch 1)"), (1, 9, "X of batch 3 (epoch 2)")])
def test_an_iterables_refusal_counts_its_batches_from_1_as_its_epochs(tmp_path, bad_epoch, bad_row, words):
    """The first piece of the first epoch was "X of batch 0 (epoch 1)": batches counted from 0, epochs from 1 (as
    the progress line and history["epoch"] count them). Both count from 1 now; the callable is still called with
    0 for the first epoch, as DataSource.batches is. Here a value of the model's statistics' 1e39 in row 1 of the
    first piece of the first epoch, or of the third piece (rows 8-11) of the second."""
    model = model_of_clean_values(tmp_path, "cpu")
    a, b, y = columns()
    X, Y = numpy.column_stack([a, b]).astype(numpy.float32), y.reshape(-1, 1).astype(numpy.float32)
    bad = X.copy()
    bad[bad_row, 1] = 3e38
    called = []

    def pieces(epoch):
        called.append(epoch)
        return [((bad if epoch == bad_epoch else X)[i:i + 4], Y[i:i + 4]) for i in range(0, ROWS, 4)]

    with pytest.raises(NotFinite, match=rf"^{re.escape(words)} contains 1 value\(s\) infinite in float32 once "
                                        r"standardized \(first at row 1, column 1: 1(\.\d)?e\+39\)"):
        model.fit(data.iterable(pieces, rows=ROWS, n_features=2, n_outputs=1), epochs=2, batch_size=4, verbose=False)
    assert called[:bad_epoch + 1] == list(range(bad_epoch + 1))


def test_an_iterables_nan_or_uneven_piece_is_named_by_its_batch_and_its_epoch():
    """A NaN in an iterable's piece was "X of batch 3 contains 1 NaN or infinite value(s) ...": which epoch's third piece
    went unsaid, where a callable gives other pieces each epoch; only the standardized overflow named it."""
    X, Y = numpy.ones((12, 2)), numpy.ones((12, 1))

    def pieces(epoch, bad=None):
        out = [(X[i:i + 4].copy(), Y[i:i + 4]) for i in range(0, 12, 4)]
        if epoch == 1 and bad == "nan":
            out[2][0][1, 0] = numpy.nan
        elif epoch == 1 and bad == "rows":
            out[2] = (out[2][0], out[2][1][:3])
        return out

    model = gpunn.MLP([2, 3, 1], device="cpu", seed=0)
    with pytest.raises(NotFinite, match=r"^X of batch 3 \(epoch 2\) contains 1 NaN or infinite value\(s\) \(first at "
                                        r"row 1, column 0\)"):
        model.fit(data.iterable(lambda e: pieces(e, "nan"), rows=12, n_features=2, n_outputs=1), epochs=2,
                  batch_size=4, verbose=False)
    with pytest.raises(data.DataError, match=r"^batch 3 \(epoch 2\): X has 4 rows but Y has 3$"):
        model.fit(data.iterable(lambda e: pieces(e, "rows"), rows=12, n_features=2, n_outputs=1), epochs=2,
                  batch_size=4, verbose=False)


def test_the_shards_of_a_source_are_refused_alike(tmp_path, device):
    """A source read as shards (gpunn.distributed.ShardedSource: a data-parallel rank's, or all of them in one
    process) standardizes each shard's windows: the value is refused naming the source's file and row."""
    from gpunn.distributed import ShardedSource

    model = model_of_clean_values(tmp_path, device)
    path = float32_pair(tmp_path, 3e38)
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} row {BAD_ROW}: column 1: {PAST} (read in epoch 1)')}$"):
        model.fit(ShardedSource(source(path), 2), epochs=2, batch_size=4, verbose=False)


def device_arrays_held(watch, xp):
    """How many ``xp`` arrays ``watch`` holds in its lists, tuples and dicts."""
    def count(value):
        if isinstance(value, xp.ndarray):
            return 1
        if isinstance(value, dict):
            return sum(count(k) + count(v) for k, v in value.items())
        return sum(map(count, value)) if isinstance(value, (list, tuple)) else 0
    return count(list(vars(watch).values()))


def bound_by_hand(tmp_path, device):
    """A standardized float32 source (6 windows of one chunk an epoch) bound to ``device``, to read by hand; the
    features' path."""
    path = float32_pair(tmp_path)
    return source(path, standardize=True, window=1).bind(device, "float32"), path


def read_by_hand(read, path, epochs=3):
    """``batches()`` of ``read`` read by hand (no fit: no reader takes its watch's flag) for ``epochs`` epochs, 3e38
    written at b's BAD_ROW of the file at ``path`` after the first: the device arrays its watch holds after each."""
    held = []
    for epoch in range(epochs):
        for _ in read.batches(epoch, 4):
            pass
        held.append(device_arrays_held(read.overflow_watch, read.backend.xp))
        if epoch == 0:
            PutsBadValue(path).on_epoch_end(None, 0, {})
    return held


MET_IN_EPOCH_2 = f"row {BAD_ROW}: column 1: {PAST} (read in epoch 2)"


def test_batches_read_by_hand_hold_one_device_flag_not_one_per_window(tmp_path, device):
    """A user reading ``batches()`` by hand on a GPU: each window's check was kept, a 0-d device array, until a fit
    or a validation took them, so they piled up epoch after epoch; now they are folded into one as they come, and a
    later take still finds the first window not finite (epoch 2's, not 3's). On the CPU the window is refused as
    it is read."""
    read, path = bound_by_hand(tmp_path, device)
    if device == "cpu":
        with pytest.raises(DataError, match=rf"^{re.escape(f'{path} {MET_IN_EPOCH_2}')}$"):
            read_by_hand(read, path)
        return
    assert read_by_hand(read, path) == [1, 1, 1]
    watch, backend = read.overflow_watch, read.backend
    assert numpy.isnan(backend.to_host(watch.take(backend.xp)))
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} {MET_IN_EPOCH_2}')}$"):
        watch.refuse(backend)
    assert device_arrays_held(watch, backend.xp) == 0 and watch.take(backend.xp) is None


def test_on_a_gpu_batches_read_by_hand_read_nothing_back_and_hold_one_flag(tmp_path, fake_cupy, monkeypatch):
    """The test above on tests/fakecupy in every run, counting the host reads too: none while the batches are read
    by hand (the checks stay on the device), one for the take's flag and one for the refusal's key."""
    read, path = bound_by_hand(tmp_path, "cuda")
    reads = host_reads(fake_cupy, monkeypatch)
    assert read_by_hand(read, path) == [1, 1, 1] and reads == []
    watch, backend = read.overflow_watch, read.backend
    assert numpy.isnan(backend.to_host(watch.take(backend.xp))) and len(reads) == 1
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} {MET_IN_EPOCH_2}')}$"):
        watch.refuse(backend)


def test_on_a_gpu_the_watch_names_the_first_bad_window_of_its_passes_and_keeps_no_pass_it_took(fake_cupy):
    """OverflowWatch alone, on tests/fakecupy: of the passes seen since a take (each with its refuse_at), the key
    names the first window not finite of the first pass that had one (pass 1 window 3 here, after a finite pass 0);
    a take of finite windows, or of none, leaves refuse() nothing to raise (the loss was not finite for another
    reason: a diverged run); and a pass taken is let go at the next take (the watch does not grow with the epochs
    of batches read by hand)."""
    import gc
    import weakref

    from gpunn.data.overflow import OverflowWatch

    backend = gpunn.backend.resolve("cuda")
    xp, watch = backend.xp, OverflowWatch()

    def refusal(name):
        def refuse_at(w):
            raise DataError(f"{name} window {w}")
        return refuse_at

    finite, bad = xp.ones((2, 3)), xp.asarray([[1.0, numpy.inf, 2.0]])
    first, second = refusal("pass 0"), refusal("pass 1")
    for w in range(3):
        watch.see(xp, (finite,), first, w)
    for w in range(6):
        watch.see(xp, (bad if w in (3, 5) else finite,), second, w)
    assert numpy.isnan(backend.to_host(watch.take(xp)))
    with pytest.raises(DataError, match="^pass 1 window 3$"):
        watch.refuse(backend)

    watch.see(xp, (finite,), first, 0)
    assert backend.to_host(watch.take(xp)) == 0.0
    watch.refuse(backend)  # nothing
    assert watch.take(xp) is None
    watch.refuse(backend)  # nothing

    taken = weakref.ref(second)
    watch.see(xp, (finite,), second, 0)
    watch.take(xp)
    del second
    watch.see(xp, (finite,), first, 0)
    watch.take(xp)
    gc.collect()
    assert taken() is None


def host_reads(fake_cupy, monkeypatch):
    """A list that gets an entry per synchronous read of a device array (tests/fakecupy's)."""
    reads, read = [], fake_cupy._synchronous_read
    monkeypatch.setattr(fake_cupy, "_synchronous_read", lambda *args: (reads.append(args[1]), read(*args))[1])
    return reads


def test_on_a_gpu_the_check_reads_nothing_back_per_window(tmp_path, fake_cupy, monkeypatch):
    """The windows' check stays on the device and is read with the epoch's loss: a fit of three epochs reads as
    many arrays back over 6 windows as over 2, and a value past float32 is refused at the loss read."""
    model = model_of_clean_values(tmp_path, "cuda")
    reads = host_reads(fake_cupy, monkeypatch)
    counts = []
    for rows in (8, ROWS):  # windows of one chunk of 4 rows
        float32_pair(tmp_path, name=f"r{rows}")
        for name in ("X", "Y"):
            numpy.save(tmp_path / f"r{rows}{name}.npy", numpy.load(tmp_path / f"r{rows}{name}.npy")[:rows])
        reads.clear()
        model.fit(source(str(tmp_path / f"r{rows}X.npy"), window=1), epochs=3, batch_size=4, verbose=False)
        counts.append(len(reads))
    assert counts[0] == counts[1] and counts[0] > 0
    path = float32_pair(tmp_path, 3e38)
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} row {BAD_ROW}: column 1: {PAST} (read in epoch 1)')}$"):
        model.fit(source(path, window=1), epochs=3, batch_size=4, verbose=False)


def test_on_a_gpu_a_run_interrupted_after_the_value_is_refused_and_writes_no_checkpoint(tmp_path, fake_cupy):
    """Stopped part-way through the epoch (Ctrl-C) after the window that held the value: the partial loss read
    finds it, and the run ends with the refusal, not with a checkpoint of the weights it spoiled."""
    model = model_of_clean_values(tmp_path, "cuda")
    path = float32_pair(tmp_path, 3e38)

    class StopAfterBatch(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            if batch == 2:  # batch 1 held row 7
                trainer.interrupt()

    saved = tmp_path / "run.npz"
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path} row {BAD_ROW}: column 1: {PAST} (read in epoch 1)')}$"):
        model.fit(source(path, window=1), epochs=2, batch_size=4, verbose=False,
                  callbacks=[StopAfterBatch(), gpunn.ModelCheckpoint(str(saved))])
    assert not saved.exists()


class Named(Exception):
    """What a pass's ``refuse_at`` raises in the test below: the pass's name and the window."""


def refuser(name):
    def refuse_at(w):
        raise Named(name, w)
    return refuse_at


@pytest.mark.gpu
def test_the_watch_keeps_the_first_window_not_finite_in_one_device_key(gpu):
    """OverflowWatch on CuPy itself (the fits above reach it through the sources): the key of the first window not
    finite, pass * 2**32 + window, folded on the device by xp.where with Python ints and xp.minimum, which CuPy
    types by its own rules (an int32 key holds neither a second pass's 2**32 nor 2**62); a window not finite seen by
    its arrays' max and min, whose NaN CuPy must carry (a NaN at a row that is neither's; -inf in the min alone),
    empty arrays left out; the take exactly 0.0 after finite windows; to_host_with reading the flag with the sums.
    The earliest pass wins over a lower window number of a later one."""
    from gpunn.data.overflow import OverflowWatch

    xp = gpu.xp
    with gpu.use():
        ok = xp.arange(12, dtype=xp.float32).reshape(4, 3)
        empty = xp.zeros((0, 3), xp.float32)
        nan, minus_inf, plus_inf = ok.copy(), ok.copy(), ok.copy()
        nan[1, 1], minus_inf[2, 0], plus_inf[3, 2] = float("nan"), -float("inf"), float("inf")
        first, second, third = refuser("first"), refuser("second"), refuser("third")
        watch = OverflowWatch()
        for w in range(3):
            watch.see(xp, (ok, empty), first, w)
        flag = watch.take(xp)
        assert flag.shape == () and flag.dtype == numpy.float64
        assert float(gpu.to_host(flag)) == 0.0 and not numpy.signbit(gpu.to_host(flag))
        watch.refuse(gpu)  # finite: nothing to refuse

        for w in range(2):
            watch.see(xp, (ok,), first, w)
        for w, A in enumerate((ok, ok, nan, minus_inf)):
            watch.see(xp, (ok, A), second, w)
        watch.see(xp, (plus_inf,), third, 0)
        assert numpy.isnan(gpu.to_host(watch.take(xp)))
        with pytest.raises(Named) as named:
            watch.refuse(gpu)
        assert named.value.args == ("second", 2)

        sums = xp.asarray([1.5, 2.5], xp.float32)
        watch.see(xp, (ok,), first, 0)
        got = watch.to_host_with(gpu, sums)
        assert isinstance(got, numpy.ndarray) and got.dtype == numpy.float32 and got.tolist() == [1.5, 2.5]
        watch.see(xp, (ok,), first, 0)
        watch.see(xp, (minus_inf, empty), first, 1)
        with pytest.raises(Named) as named:
            watch.to_host_with(gpu, sums)
        assert named.value.args == ("first", 1)


class _OneOfTwoRanks:
    """The communicator of rank ``rank`` of a 2-rank job (no MPI, each rank on a GPU of its own node): the other
    rank's parts are this one's, but where ``partner`` says what that rank's source met. "value": its window held
    the value standardized past float32, so its flag makes the reduced epoch loss NaN, and its refusal is
    ``said``; "diverged": both ranks' losses are NaN with no value refused; None: its data trained clean."""

    engine, size, local_size = "stub", 2, 2

    def __init__(self, rank, partner, said):
        self.rank = self.local_rank = rank
        self.partner, self.said, self.aborted = partner, said, []

    def describe(self):
        return "2 stub ranks"

    def allreduce_sum_(self, array):
        array *= 2

    def broadcast_(self, array, root=0):
        pass

    def any(self, flag, label=None):
        return bool(flag)

    def sum_host(self, values, label="the epoch-sum reduction"):
        out = 2 * numpy.asarray(values, numpy.float64)
        if label == "the epoch-sum reduction" and self.partner in ("value", "diverged"):
            out[:-1] = numpy.nan
        return out

    def allgather(self, obj, label=None):
        other = obj
        if label == "the device check":
            other = ("another node", obj[1])
        elif label == "the data refusal":
            other = self.said if self.partner == "value" else None
        return [obj, other] if self.rank == 0 else [other, obj]

    def bcast_object(self, obj, root=0, label=None):
        return obj

    def barrier(self, label=None):
        pass

    def abort(self, code=1):
        self.aborted.append(code)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("met_by", ["this rank", "the other rank", "no rank"])
def test_on_gpus_every_data_parallel_rank_raises_the_refusal_of_a_value_one_ranks_window_met(
        tmp_path, fake_cupy, monkeypatch, rank, met_by):
    """Data parallel on GPUs, a value standardized past float32 in one rank's window makes that rank's flag NaN,
    and the epoch's reduction gives every rank that NaN loss: only that rank's source can name the value. The other
    ranks raised TrainingDiverged ("lower the learning rate, or standardize": it was standardized), and the job's
    one printed line was whichever rank's came first. Now every rank raises the refusal (the others in the words of
    the rank that met it), at the same point, none aborting the job for it (as with TrainingDiverged); a run no
    rank's data spoiled still diverges."""
    from gpunn.distributed import training

    clean = source(float32_pair(tmp_path, name="c"), standardize=True)
    model = gpunn.MLP([2, 4, 1], device="cuda", dtype="float32", seed=0)
    model.fit(clean, epochs=1, batch_size=4, verbose=False)  # statistics with b's spread 0.3: 3e38 goes to 1e39
    path = float32_pair(tmp_path, 3e38 if met_by == "this rank" else None)
    for name in (path, path.replace("X.npy", "Y.npy")):  # the rows turned by half: rank r's shard holds BAD_ROW + 12r
        numpy.save(name, numpy.roll(numpy.load(name), ROWS // 2 * rank, axis=0))
    holder = rank if met_by == "this rank" else 1 - rank
    said = f"{path} row {BAD_ROW + ROWS // 2 * holder}: column 1: {PAST} (read in epoch 1)"
    comm = _OneOfTwoRanks(rank, {"the other rank": "value", "no rank": "diverged"}.get(met_by), said)
    monkeypatch.setattr(training, "world", lambda backend, timeout: comm)
    bad = source(path)
    expected = {"this rank": (DataError, said), "the other rank": (DataError, f"rank {holder} of ranks 0-1 refused its data: {said}"),
                "no rank": (gpunn.TrainingDiverged, "training loss became nan in epoch 1 ")}[met_by]
    with pytest.raises(expected[0]) as caught:
        model.fit(bad, epochs=1, batch_size=4, verbose=False, distributed=True)
    assert str(caught.value).startswith(expected[1]) and (met_by == "no rank" or str(caught.value) == expected[1])
    assert comm.aborted == []


@pytest.mark.parametrize("holder", [0, 1])
def test_two_ranks_on_the_stand_ins_gpus_both_raise_the_refusal_of_a_value_one_ranks_window_met(
        tmp_path, fake_cupy, monkeypatch, holder):
    """The test above with two ranks that train (threads on cuda:0 and cuda:1, NCCL and control between them:
    tests/thread_ranks.py), no reduction stubbed: the holder's flag makes its epoch loss NaN, the reduction gives
    the other rank that NaN, and both raise the refusal, the other naming the holder; no rank aborts the job."""
    from gpunn.distributed.comm import _rank_that_says
    from thread_ranks import run_ranks

    path = float32_pair(tmp_path, 3e38)
    for name in (path, path.replace("X.npy", "Y.npy")):  # the rows turned by half: rank r's shard holds BAD_ROW + 12r
        numpy.save(name, numpy.roll(numpy.load(name), ROWS // 2 * holder, axis=0))
    models = [model_of_clean_values(tmp_path, f"cuda:{rank}") for rank in range(2)]  # here, not in the threads
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: models[rank].fit(
        source(path), epochs=2, batch_size=4, verbose=False, distributed=True))
    said = f"{path} row {BAD_ROW + ROWS // 2 * holder}: column 1: {PAST} (read in epoch 1)"
    assert [type(raised) for _, raised in outcomes] == [DataError, DataError], outcomes
    assert [str(raised) for _, raised in outcomes] == [
        said if rank == holder else f"rank {holder} of ranks 0-1 refused its data: {said}" for rank in (0, 1)]
    assert aborted == []
    # uncaught in a script, the holder says its own and the other waits for it (rank 0 said the holder's for both)
    assert [_rank_that_says(raised) for _, raised in outcomes] == [None if rank == holder else holder for rank in (0, 1)]


def test_two_ranks_on_the_stand_ins_gpus_a_held_out_value_is_refused_by_the_rank_that_scored_it_ending_the_job(
        tmp_path, fake_cupy, monkeypatch, capsys):
    """A held-out value standardized past float32 in one rank's share of the validation chunks: that rank's
    validation reads its flag with its sums and refuses it, naming the value, and ends the job (its error, then the
    abort) while the other waits for its sums; the job says nothing else before the abort (what follows is the
    other thread's, whose process MPI_Abort ends)."""
    from thread_ranks import run_ranks

    from gpunn.distributed.shard import piece

    path = float32_pair(tmp_path, 3e38)

    def rank_1s_share(seed):
        chunks = list(source(path, validation_fraction=0.5, seed=seed).validation_chunks)
        return chunks[slice(*piece(len(chunks), 1, 2))]

    seed = next(s for s in range(100) if BAD_ROW // 4 in rank_1s_share(s))
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: gpunn.MLP([2, 4, 1], device=f"cuda:{rank}",
                                                                         dtype="float32", seed=0).fit(
        source(path, validation_fraction=0.5, seed=seed, standardize=True), epochs=1, batch_size=4, verbose=False,
        distributed=True))
    assert aborted[0] == (1, 1) and type(outcomes[1][1]) is DataError, (aborted, outcomes)
    said = capsys.readouterr().err.split("\ngpunn [rank 0 of ranks 0-1]")[0]
    assert said.startswith("gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\nTraceback "), said
    assert re.search(rf"\ngpunn\.data\.errors\.DataError: {re.escape(path)} row {BAD_ROW}: column 1: 3e\+38 is \S+ once "
                     r"standardized, infinite in float32 \(past its largest value\); clean or impute it first\n?$",
                     said), said


def test_predict_names_the_row_in_the_file_where_the_source_finds_no_words_for_the_value(tmp_path, monkeypatch):
    """Where the source finds no words for a value the model's statistics take past float32 (the file changed since
    it was read: its ``_not_finite`` says nothing), predict names the row in the whole source, not in its window
    (mutation audit32c W1: chunk 1's row 3 said as row 3 passed every test)."""
    model = fitted(write(tmp_path, "npy", name="c"), standardize=True)
    read = source(write(tmp_path, "npy", 1e39))  # chunks of 4 rows: row 7 is chunk 1's row 3
    monkeypatch.setattr(read, "_not_finite", lambda *args, **kwargs: "")
    with pytest.raises(NotFinite) as caught:
        model.predict(read)
    assert caught.value.row == BAD_ROW and str(caught.value).startswith(f"X of {read._name()} contains 1 value(s) ")



def test_a_nan_past_the_first_65536_rows_of_a_parquet_row_group_is_named_by_its_row(tmp_path):
    """The value refused is read again from its row group in batches of 65,536 rows (data.parquet_tables.parquet_cell): a NaN
    in the second batch of a row group of 70,000 rows is named at its row, counted over the batches before it."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    a = numpy.arange(70_000, dtype=numpy.float64)
    a[68_000] = numpy.nan
    pq.write_table(pa.table({"a": a, "y": numpy.ones(70_000)}), tmp_path / "one_group.parquet", row_group_size=70_000)
    source = data.parquet(tmp_path / "one_group.parquet", "y", chunk_rows=70_000)
    with pytest.raises(DataError, match=r"one_group\.parquet row 68000: column 'a': nan is NaN; clean or impute it "
                                        r"first$"):
        gpunn.MLP([1, 2, 1], device="cpu").fit(source, epochs=1, verbose=False)


def test_a_float32_parquet_value_standardized_past_float32_is_said_as_the_file_holds_it(tmp_path):
    """A Parquet file's float32 column is read as float64: its 3e38, scaled by a model's statistics (spread 0.3) to
    1e39, is refused by the value read again from the file as float32 holds it, 3e+38, not as the float64 it reads
    as (3.0000000054977558e+38, data.parquet_tables._as_stored)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for name, bad in (("clean", None), ("bad", 3e38)):
        table = {column: values.astype(numpy.float32) for column, values in zip("aby", columns(bad))}
        pq.write_table(pa.table(table), tmp_path / f"{name}.parquet")
    model = gpunn.MLP([2, 4, 1], device="cpu", dtype="float32", seed=0)
    model.fit(data.parquet(tmp_path / "clean.parquet", "y", standardize=True), epochs=1, batch_size=4, verbose=False)
    with pytest.raises(DataError) as caught:
        model.fit(data.parquet(tmp_path / "bad.parquet", "y"), epochs=1, batch_size=4, verbose=False)
    assert str(caught.value) == f"{tmp_path / 'bad.parquet'} row {BAD_ROW}: column 'b': {PAST}"


def test_evaluate_on_a_source_names_a_value_standardizing_overflows_past_its_windows_first_chunk_rows(tmp_path):
    """evaluate(source) predicts a window of 70,000 rows in pieces of 65,536 (PREDICT_CHUNK_ROWS): a value that the
    model's statistics take past float32 at row 66,000, in the second piece, is named at its own row, read again
    there (the piece's first row in the window counted: metrics.window_pieces' place)."""
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((200, 2)).astype("float32") * 0.1  # a spread of 0.1: 3e38 is 3e39 standardized
    model = gpunn.MLP([2, 4, 1], device="cpu", seed=0)
    model.fit(X, X.sum(1, keepdims=True), epochs=1, standardize=True, verbose=False)
    X = rng.standard_normal((70000, 2)).astype("float32")
    X[66000, 1] = 3e38
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", numpy.zeros((70000, 1), "float32"))
    source = data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=70000)
    with pytest.raises(DataError) as caught:
        model.evaluate(source)
    assert str(caught.value) == (f"{tmp_path / 'X.npy'} row 66000: column 1: 3e+38 is 3e+39 once standardized, "
                                 "infinite in float32 (past its largest value); clean or impute it first")
