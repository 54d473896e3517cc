"""gpunn train --data/--target/--stream/--standardize and gpunn predict on .npy, .parquet and .csv files."""
import contextlib
import json
import os
import re
import warnings

import numpy
import pytest
from cli_args import with_options

import gpunn
from gpunn import datasets
from gpunn.checks import read_by_position
from gpunn.cli import main

SMALL = ["--hidden", "16", "--batch-size", "200", "--epochs", "2", "--device", "cpu", "--quiet"]


def by_position(model, X):
    """The model's predictions of X, an array of its feature columns in its order: the reference a test compares
    gpunn predict's output with (a model trained on a table's named columns warns of arrays read by position)."""
    with read_by_position():
        return model.predict(X)


@pytest.fixture
def pair(tmp_path):
    X, Y = datasets.make("linear", 12_000, 5, seed=0, device="cpu")
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y[:, 0])
    return tmp_path, X, Y


def test_train_on_an_npy_pair_then_predict_a_csv_and_an_npy(pair, capsys):
    pytest.importorskip("pyarrow")
    tmp_path, X, Y = pair
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--standardize",
                 "--save", model_path, *SMALL]) == 0
    out = capsys.readouterr().out
    found = re.search(r"X\.npy, ([\d,]+) training rows in 29 chunks, ([\d,]+) validation rows \(whole chunks\)", out)
    assert found and sum(int(n.replace(",", "")) for n in found.groups()) == 12_000  # 32 chunks of 375 rows, 3 held out
    model = gpunn.load(model_path, device="cpu")
    assert model.standardizer is not None
    assert main(["predict", model_path, str(tmp_path / "X.npy"), str(tmp_path / "P.csv"), "--device", "cpu"]) == 0
    assert main(["predict", model_path, str(tmp_path / "X.npy"), str(tmp_path / "P.npy"), "--device", "cpu"]) == 0
    P = numpy.load(tmp_path / "P.npy")
    numpy.testing.assert_array_equal(P, model.predict(X))
    lines = (tmp_path / "P.csv").read_text().splitlines()
    assert len(lines) == 12_000  # plain numbers: the model has no target names
    numpy.testing.assert_allclose(numpy.array(lines, float), P[:, 0], rtol=1e-6)



def test_the_set_up_time_of_a_data_run_counts_making_its_source(pair, capsys, monkeypatch):
    """The source of --data (a CSV file parsed to index it, a Parquet directory's metadata read) is made before
    the clock started: every --data run said "set up in 0.00s"."""
    import types

    from gpunn.cli import data as data_cli, train

    tmp_path, _, _ = pair
    now = [100.0]
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    make_source = data_cli.make_source

    def slow_make_source(*args, **kwargs):
        now[0] += 7.0  # seconds spent reading the file
        return make_source(*args, **kwargs)

    monkeypatch.setattr(data_cli, "make_source", slow_make_source)
    assert main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), *SMALL]) == 0
    assert "set up in 7.00s" in capsys.readouterr().out



def test_a_streams_chunk_counts_are_written_as_its_row_counts_are():
    """--rows 1e9 said "(1526 of 15259 chunks: 15258 of 65,536 rows and one of 51,712)" beside "899,992,064
    training rows": the counts of chunks without the thousands separators of the rows."""
    from gpunn.cli.data import _chunk_counts

    assert _chunk_counts([65_536] * 15_258 + [51_712]) == "15,259 chunks: 15,258 of 65,536 rows and one of 51,712"
    assert _chunk_counts([1024] * 2000) == "2,000 chunks of 1,024 rows"

def test_train_on_a_parquet_table_by_column_names_and_predict_one(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("linear", 8000, 3, seed=1, device="cpu")
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "id": numpy.arange(8000), "price": Y[:, 0]}),
                   tmp_path / "t.parquet", row_group_size=500)
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.parquet"), "--target", "price", "--features", "a,b,c",
                 "--save", model_path, *SMALL]) == 0
    model = gpunn.load(model_path, device="cpu")
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["price"]}
    assert main(["predict", model_path, str(tmp_path / "t.parquet"), str(tmp_path / "p.parquet"),
                 "--device", "cpu"]) == 0
    out = pq.read_table(tmp_path / "p.parquet")  # the saved feature columns are picked, the id column ignored
    assert out.column_names == ["price"]
    numpy.testing.assert_array_equal(out.column("price").to_numpy(), by_position(model, X)[:, 0])
    assert main(["predict", model_path, str(tmp_path / "t.parquet"), str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == '"price"'  # named targets: a header


def test_predict_score_gives_model_evaluates_metrics_of_a_held_out_table_in_trains_held_out_words(tmp_path, capsys):
    """There was no way to score a held-out file from the command line (Python's model.evaluate alone). --score
    reads IN's target columns by the model's names, beside the predictions: the printed line is gpunn train's
    held-out one, of model.evaluate's metrics on a source of IN's columns (the same numbers to the bit, as evaluate
    computes them), which also agree with evaluate(X, Y) of the table loaded whole. A held-out file of the columns
    in another order, with an id among them, as CSV and Parquet, and two outputs; a model, or an IN, without target
    names, and --features of other columns, are refused before OUT is written (a model fit on a DataFrame X and an
    array Y, its features named, was said to be "trained on unnamed columns")."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("friedman1", 3000, 5, seed=1, device="cpu")
    Y = numpy.column_stack([Y[:, 0], Y[:, 0] * 0.5 - X[:, 0]])
    train, held = slice(0, 2500), slice(2500, None)
    columns = {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "d": X[:, 3], "e": X[:, 4], "y": Y[:, 0], "z": Y[:, 1]}
    pq.write_table(pa.table({k: v[train] for k, v in columns.items()}), tmp_path / "t.parquet", row_group_size=500)
    pq.write_table(pa.table({k: columns[k][held] if k != "id" else numpy.arange(500) for k in
                             ["z", "id", "e", "d", "c", "b", "a", "y"]}), tmp_path / "h.parquet", row_group_size=128)
    pq.read_table(tmp_path / "h.parquet").to_pandas().to_csv(tmp_path / "h.csv", index=False)
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.parquet"), "--target", "y,z", "--standardize",
                 "--save", model_path, *SMALL]) == 0
    model = gpunn.load(model_path, device="cpu")
    with read_by_position():  # (X's columns are the model's, in its order)
        whole, predicted = model.evaluate(X[held], Y[held]), model.predict(X[held])
    for name, source in (("h.parquet", gpunn.data.parquet), ("h.csv", gpunn.data.csv)):
        capsys.readouterr()
        assert main(["predict", model_path, str(tmp_path / name), str(tmp_path / "p.npy"), "--score"]) == 0
        out = capsys.readouterr().out.splitlines()
        with source(tmp_path / name, target=["y", "z"], features=list("abcde")) as table:
            metrics = model.evaluate(table)
        said = (f"held-out ({tmp_path / name}, against y, z): mse {metrics['mse']:.5g}  mae {metrics['mae']:.5g}  "
                f"r2 {metrics['r2']:.4f}")
        assert out[-1] == said, out
        assert said == (f"held-out ({tmp_path / name}, against y, z): mse {whole['mse']:.5g}  mae {whole['mae']:.5g}  "
                        f"r2 {whole['r2']:.4f}")
        # (a table's columns are read as float64, the arrays' targets are float32: agreement to float32's rounding)
        numpy.testing.assert_allclose([metrics[k] for k in whole], [whole[k] for k in whole], rtol=1e-6)
        numpy.testing.assert_allclose(numpy.load(tmp_path / "p.npy"), predicted, atol=1e-5)  # written
    numpy.save(tmp_path / "x.npy", X[held])
    unnamed, unnamed_targets = str(tmp_path / "plain.npz"), str(tmp_path / "frame.npz")
    gpunn.save(unnamed, gpunn.MLP([5, 2], seed=0))
    frame = gpunn.MLP([5, 2], seed=0)  # its features named by a DataFrame, its targets by none
    frame.fit(pq.read_table(tmp_path / "h.parquet").to_pandas()[list("abcde")], Y[held], epochs=1, verbose=False)
    gpunn.save(unnamed_targets, frame)
    for args, said in (([unnamed, str(tmp_path / "h.parquet")], "the model was trained on unnamed columns"),
                       ([unnamed_targets, str(tmp_path / "h.parquet")], "the model's targets have none (it was fit on "
                                                                         "a DataFrame X with an array, or a Series"),
                       ([model_path, str(tmp_path / "x.npy")], "an .npy array has none"),
                       ([model_path, str(tmp_path / "h.csv"), "--features", "a,b,c,d,id"], "--features names others")):
        (tmp_path / "q.npy").unlink(missing_ok=True)
        assert main(["predict", *args, str(tmp_path / "q.npy"), "--score"]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "q.npy").exists()
    pq.write_table(pa.table({k: columns[k][held] for k in "abcdey"}), tmp_path / "no_z.parquet")
    assert main(["predict", model_path, str(tmp_path / "no_z.parquet"), str(tmp_path / "q.npy"), "--score"]) == 2
    assert "(the model's target columns, y, z, in IN)" in capsys.readouterr().err and not (tmp_path / "q.npy").exists()


def test_predict_score_of_a_csv_in_without_the_models_target_column_says_score_wants_it(tmp_path, capsys):
    """A CSV IN lacking the model's target column was refused by --score's read without a word of --score or the
    target ("IN h.csv: no column 'y'; the columns are: a, b", after OUT's check had passed): a CSV source turned its
    MissingColumns into a plain DataError, so the words a Parquet IN gets were never said for a CSV one."""
    pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 600, 2, seed=1, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y]), delimiter=",", header="a,b,y", comments="")
    numpy.savetxt(tmp_path / "h.csv", X[:100], delimiter=",", header="a,b", comments="")
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", model_path, *SMALL]) == 0
    capsys.readouterr()
    assert main(["predict", model_path, str(tmp_path / "h.csv"), str(tmp_path / "p.npy"), "--score"]) == 2
    err = capsys.readouterr().err
    assert f"--score: IN {tmp_path / 'h.csv'}: no column 'y'" in err, err
    assert "(the model's target column, y, in IN)" in err and not (tmp_path / "p.npy").exists()


def test_predict_score_reads_in_once_writing_predict_of_its_source_with_evaluates_metrics_exactly(tmp_path, capsys,
                                                                                                   monkeypatch):
    """--score read IN twice: the predictions' pass, then model.evaluate's of a source of IN's columns (10-11 s against
    4.7-4.9 s for predict alone on 1M x 16 Parquet rows). Now one pass over that source writes OUT as the metrics add
    up: IN's bytes are read once, OUT holds model.predict(source)'s rows exactly and --json's score is
    model.evaluate(source)'s exactly (CSV and Parquet; a CSV IN named in capitals, H.CSV; evaluate's pieces made
    7 rows: mutations reading H.CSV as Parquet, or the pass taking pieces of 64 rows, passed every test). A target
    that is not a number stops the pass: OUT not written, an earlier OUT left as it was."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from gpunn.data import csv_tables

    X, Y = datasets.make("friedman1", 3000, 5, seed=3, device="cpu")
    table = {**{c: X[:, i] for i, c in enumerate("abcde")}, "y": Y[:, 0], "z": Y[:, 0] - X[:, 1]}
    pq.write_table(pa.table({k: v[:2400] for k, v in table.items()}), tmp_path / "t.parquet")
    pq.write_table(pa.table({k: v[2400:] for k, v in table.items()}), tmp_path / "h.parquet", row_group_size=100)
    pq.read_table(tmp_path / "h.parquet").to_pandas().to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "H.CSV").write_bytes((tmp_path / "h.csv").read_bytes())  # (a CSV file by its name in capitals too)
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.parquet"), "--target", "y,z", "--standardize",
                 "--save", model_path, *SMALL]) == 0
    model = gpunn.load(model_path, device="cpu")
    read, read_before = [], False
    real_read_range = csv_tables.read_range
    monkeypatch.setattr(csv_tables, "read_range", lambda fd, start, end: read.append(end - start) or
                        real_read_range(fd, start, end))
    for name, kind, chunk_rows in (("h.csv", gpunn.data.csv, None), ("h.csv", gpunn.data.csv, None),
                                   ("h.parquet", gpunn.data.parquet, None), ("H.CSV", gpunn.data.csv, None),
                                   ("h.parquet", gpunn.data.parquet, 7)):
        if chunk_rows:  # evaluate's pieces, which the pass takes as evaluate's (the sums' bits depend on them)
            monkeypatch.setattr("gpunn.model.PREDICT_CHUNK_ROWS", chunk_rows)
        read.clear()
        assert main(["predict", model_path, str(tmp_path / name), str(tmp_path / "p.npy"), "--score", "--overwrite",
                     "--json", str(tmp_path / "s.json")]) == 0
        if name == "h.csv":  # its rows' bytes read once, besides a CSV source's first index pass (saved: the
            # second run reads none); 3 x the file's size in the first run before, 2 x in the second
            size = (tmp_path / name).stat().st_size
            assert 0 < sum(read) <= size * (1 if read_before else 2), (read, size)
            read_before = True
        score = json.loads((tmp_path / "s.json").read_text())["score"]
        with kind(tmp_path / name, target=["y", "z"], features=list("abcde")) as source:
            numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), model.predict(source))
            metrics = model.evaluate(source)
        assert score == {"targets": ["y", "z"], "weight": None, **{k: metrics[k] for k in ("mse", "mae", "r2")}}
    capsys.readouterr()
    frame = pq.read_table(tmp_path / "h.parquet").to_pandas()
    frame.loc[450, "z"] = float("inf")
    frame.to_csv(tmp_path / "bad.csv", index=False)
    before = (tmp_path / "p.npy").read_bytes()
    assert main(["predict", model_path, str(tmp_path / "bad.csv"), str(tmp_path / "p.npy"), "--score",
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"IN {tmp_path / 'bad.csv'} line 452: column 'z': 'inf' is infinite" in err and "; OUT not written" in err
    assert (tmp_path / "p.npy").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_predict_keep_copies_in_columns_into_out_beside_the_predictions_row_for_row(tmp_path, capsys, monkeypatch):
    """OUT held the predictions alone: a user matched them back to IN's ids by row number. --keep names IN's columns
    written first in a table OUT: a CSV IN's as the text written (an id 007, a note with a comma, a quote, a leading
    space, or empty, read back the same), a Parquet IN's in their type (int64, timestamp), row for row with the
    predictions however the reads cut the rows (small CSV blocks, other for the kept columns; a Parquet directory of
    row groups of 100; --score's source windows), the predictions those of the run without --keep."""
    import csv

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from gpunn.data import files, kept

    X, Y = datasets.make("linear", 1200, 3, seed=5, device="cpu")
    notes = ["plain", "with,comma", 'say "hi"', " lead", ""]
    ids = [f"{i:04d}" for i in range(1200)]
    with open(tmp_path / "in.csv", "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["id", "a", "note", "b", "c", "y"])
        out.writerows([i, *map(float, X[k, :1]), notes[k % 5], *map(float, X[k, 1:]), float(Y[k, 0])]
                      for k, i in enumerate(ids))
    (tmp_path / "parts").mkdir()
    for part in (0, 1):
        rows = slice(600 * part, 600 * (part + 1))
        pq.write_table(pa.table({"id": numpy.arange(1200)[rows], "t": numpy.arange(1200)[rows].astype("datetime64[ms]"),
                                 "a": X[rows, 0], "b": X[rows, 1], "c": X[rows, 2], "y": Y[rows, 0]}),
                       tmp_path / "parts" / f"p{part}.parquet", row_group_size=100)
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "in.csv"), "--target", "y", "--features", "a,b,c", "--save",
                 model_path, *SMALL]) == 0
    monkeypatch.setattr(files, "CSV_BLOCK", 1000)  # the predictions' reads and the kept columns' cut rows apart
    monkeypatch.setattr(kept, "CSV_BLOCK", 1700)

    def predict(name, out, *options):
        assert main(["predict", model_path, str(tmp_path / name), str(tmp_path / out), "--overwrite", *options]) == 0

    predict("in.csv", "plain.csv")
    plain = numpy.loadtxt(tmp_path / "plain.csv", delimiter=",", skiprows=1, dtype="float32")
    for options in ([], ["--score"]):
        predict("in.csv", "o.csv", "--keep", "id,note", *options)
        with open(tmp_path / "o.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["id", "note", "y"]
        assert [r[:2] for r in rows[1:]] == [[i, notes[k % 5]] for k, i in enumerate(ids)]
        if not options:  # (--score's are predict(source)'s: its own test)
            numpy.testing.assert_array_equal(numpy.array([r[2] for r in rows[1:]], "float32"), plain)
        predict("in.csv", "o.parquet", "--keep", "note,id", *options)
        table = pq.read_table(tmp_path / "o.parquet")
        assert table.schema.names == ["note", "id", "y"] and str(table.schema.field("id").type) == "string"
        assert table.column("id").to_pylist() == ids and table.column("note").to_pylist()[:5] == notes
        numpy.testing.assert_array_equal(table.column("y").to_numpy(), numpy.array([r[2] for r in rows[1:]], "float32"))
    for options in ([], ["--score"]):
        predict("parts", "d.parquet", "--keep", "t,id", *options)
        table = pq.read_table(tmp_path / "d.parquet")
        assert [str(f.type) for f in table.schema] == ["timestamp[ms]", "int64", "float"]
        assert table.column("id").to_pylist() == list(range(1200))
        predict("parts", "d.csv", "--keep", "id", *options)
        assert [r.split(",")[0] for r in (tmp_path / "d.csv").read_text().splitlines()] == ['"id"', *map(str, range(1200))]
    capsys.readouterr()
    predict("in.csv", "j.csv", "--keep", "id", "--json", "-")
    assert json.loads(capsys.readouterr().out)["keep"] == ["id"]


@pytest.mark.parametrize("in_name, out_name, keep, says", [
    ("x.npy", "o.csv", "id", "--keep copies IN's columns by name, and an .npy array has none"),
    ("in.csv", "o.npy", "id", "an .npy OUT holds the predictions alone: name a .csv or .parquet OUT"),
    ("in.csv", "o.csv", "id,idx", "--keep: IN {tmp}/in.csv: no column 'idx'; the columns are: id, a, b, y"),
    ("in.parquet", "o.parquet", "ref", "--keep: IN {tmp}/in.parquet: no column 'ref'; the columns are: id, a, b, y"),
    ("in.csv", "o.csv", "idx,idy", "--keep: IN {tmp}/in.csv: no columns 'idx', 'idy'; the columns are: id, a, b, y"),
    ("binary.csv", "o.csv", "id", "--keep: IN {tmp}/binary.csv: not a CSV file (binary, not text)"),
    ("in.csv", "o.csv", "id,y", "--keep y: OUT's predictions are named y, so OUT would hold two columns of that name"),
    ("bare.csv", "o.csv", "f0", "no header row naming 'f0' (--keep copies columns by their names in the header)"),
    ("mixed", "o.parquet", "id", "--keep: IN {tmp}/mixed/p1.parquet: column 'id' is int64, and int32 in "
                                 "{tmp}/mixed/p0.parquet: a column --keep copies is of one type in every file"),
    ("lists.parquet", "o.csv", "ids", "--keep ids: its values are list<element: int64>, which a CSV field cannot hold; "
                                      "write a .parquet OUT to keep it")])
def test_predict_keep_refuses_what_it_cannot_copy_before_out_is_written(tmp_path, capsys, in_name, out_name, keep, says):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("linear", 300, 2, seed=1, device="cpu")
    numpy.savetxt(tmp_path / "in.csv", numpy.column_stack([numpy.arange(300), X, Y]), delimiter=",",
                  header="id,a,b,y", comments="")
    numpy.savetxt(tmp_path / "bare.csv", X, delimiter=",")
    (tmp_path / "binary.csv").write_bytes(b"id,a,b\x00\x01\n" + bytes(range(256)) * 4)
    numpy.save(tmp_path / "x.npy", X)
    pq.write_table(pa.table({"id": numpy.arange(300), "a": X[:, 0], "b": X[:, 1], "y": Y[:, 0]}), tmp_path / "in.parquet")
    pq.write_table(pa.table({"ids": [[i, i + 1] for i in range(300)], "a": X[:, 0], "b": X[:, 1]}),
                   tmp_path / "lists.parquet")
    (tmp_path / "mixed").mkdir()
    for part, kind in enumerate(("int32", "int64")):
        rows = slice(150 * part, 150 * (part + 1))
        pq.write_table(pa.table({"id": pa.array(numpy.arange(300)[rows], kind), "a": X[rows, 0], "b": X[rows, 1]}),
                       tmp_path / "mixed" / f"p{part}.parquet")
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "in.csv"), "--target", "y", "--features", "a,b",
                 "--save", model_path, *SMALL]) == 0
    capsys.readouterr()
    assert main(["predict", model_path, str(tmp_path / in_name), str(tmp_path / out_name), "--keep", keep]) == 2
    assert says.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / out_name).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_predict_keep_quotes_a_kept_fields_line_end_or_edge_space_and_writes_a_null_empty(tmp_path, capsys):
    """A kept text field holding a line end (\r or \n) or starting or ending with a space is quoted in a CSV OUT, and
    a null is an empty field: Python's csv module reads each back as IN held it, row for row. IN here is a Parquet
    file named in capitals (T.PARQUET, a Parquet file to --keep as to the predictions' read); a Parquet OUT keeps
    IN's values and types, not IN's field metadata (a field id names a column of IN's schema). Checked by mutation:
    leaving out the \r, the \n or the trailing space of the quoting, writing a null as text, reading T.PARQUET as a
    CSV file or keeping the field metadata each passed every other test."""
    import csv

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    notes = ["plain", "trail ", "carriage\rreturn", "line\nend", None, " lead"] * 50
    X = numpy.random.default_rng(0).random((len(notes), 2))
    field_id = {b"PARQUET:field_id": b"7"}
    schema = pa.schema([pa.field("id", pa.int64(), metadata=field_id), ("note", pa.string()), ("a", pa.float64()),
                        ("b", pa.float64())])
    pq.write_table(pa.table([numpy.arange(len(notes)), notes, X[:, 0], X[:, 1]], schema=schema), tmp_path / "T.PARQUET")
    model = gpunn.MLP([2, 1], seed=0)
    model.data_columns = {"features": ["a", "b"], "targets": ["y"]}  # (as a fit on a table of columns a, b, y sets)
    gpunn.save(tmp_path / "m.npz", model)
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "T.PARQUET"), str(tmp_path / "o.csv"), "--keep",
                 "note,id"]) == 0
    text = (tmp_path / "o.csv").read_bytes().decode()  # (read_text would make the \r a \n)
    for quoted in ('"trail ",', '"carriage\rreturn",', '"line\nend",', '" lead",', '\n,4,'):
        assert quoted in text, quoted
    with open(tmp_path / "o.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["note", "id", "y"]
    assert [r[:2] for r in rows[1:]] == [[n or "", str(i)] for i, n in enumerate(notes)]
    numpy.testing.assert_array_equal(numpy.array([r[2] for r in rows[1:]], "float32"), by_position(model, X)[:, 0])
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "T.PARQUET"), str(tmp_path / "o.parquet"),
                 "--keep", "id,note"]) == 0
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("note").to_pylist() == notes and table.column("id").to_pylist() == list(range(len(notes)))
    assert table.schema.field("id").metadata is None and pq.read_schema(tmp_path / "T.PARQUET").field("id").metadata


def test_predict_keep_with_a_model_of_unnamed_columns_writes_them_under_a_header_naming_y0(tmp_path, capsys):
    """A model trained on unnamed columns writes a CSV OUT with no header row; with --keep OUT has one, naming the
    kept columns and the predictions y0, y1 as a Parquet OUT names them. Its CSV IN of a header row is read whole
    without --keep, by position: --keep streams it, as only the streamed read writes the kept columns. Checked by
    mutation: neither the header nor the stream was asked for by another test (without them OUT held the predictions
    alone, without a word)."""
    pytest.importorskip("pyarrow")
    X = numpy.random.default_rng(1).random((40, 2))
    numpy.savetxt(tmp_path / "in.csv", X, delimiter=",", header="a,b", comments="", fmt="%.17g")
    model = gpunn.MLP([2, 2], seed=0)
    gpunn.save(tmp_path / "m.npz", model)
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.csv"), str(tmp_path / "o.csv"), "--keep",
                 "b"]) == 0
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0] == '"b","y0","y1"' and len(lines) == 41
    out = numpy.loadtxt(tmp_path / "o.csv", delimiter=",", skiprows=1)
    numpy.testing.assert_array_equal(out[:, 0], X[:, 1])
    numpy.testing.assert_array_equal(out[:, 1:].astype("float32"), model.predict(X))


def test_predict_keep_of_a_parquet_column_that_cannot_be_read_names_in_and_writes_nothing(tmp_path, capsys):
    """A kept column whose pages are unreadable (the file's schema, and the predictions' columns, read): IN named
    and why, status 2, OUT not written; it ended in pyarrow's own words ("Couldn't deserialize thrift") where the
    read's error was not worded (a mutation that passed every other test)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X = numpy.random.default_rng(2).random((300, 2))
    pq.write_table(pa.table({"id": numpy.arange(300), "a": X[:, 0], "b": X[:, 1]}), tmp_path / "in.parquet",
                   compression="none", use_dictionary=False)
    chunk = pq.ParquetFile(tmp_path / "in.parquet").metadata.row_group(0).column(0)  # id's pages
    data = bytearray((tmp_path / "in.parquet").read_bytes())
    start, size = chunk.data_page_offset, chunk.total_compressed_size
    data[start:start + size] = b"\xff" * size
    (tmp_path / "in.parquet").write_bytes(bytes(data))
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([2, 1], seed=0))
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.parquet"), str(tmp_path / "o.csv"),
                 "--features", "a,b", "--keep", "id"]) == 2
    assert f"IN {tmp_path / 'in.parquet'}: could not be read (OSError: " in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_keep_columns_reader_refuses_rows_past_the_files_end_and_closes_the_file_it_reads(tmp_path):
    """KeptColumns.take past the file's last row (a file changed while read) is refused, not a shorter table that
    OUT's writer would place beside more predictions; close() closes the file it reads. Checked by mutation (a
    take returning fewer rows, and a close leaving the file open, passed every other test)."""
    pytest.importorskip("pyarrow")
    from gpunn.data.errors import DataError
    from gpunn.data.kept import KeptColumns

    (tmp_path / "in.csv").write_text("id,a\n" + "".join(f"{i:03d},{i}.5\n" for i in range(10)))
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    kept = KeptColumns(tmp_path / "in.csv", ["id"])
    assert kept.take(4).column("id").to_pylist() == ["000", "001", "002", "003"]
    with pytest.raises(DataError, match="in.csv: fewer rows for --keep's columns than predicted"):
        kept.take(7)
    kept = KeptColumns(tmp_path / "in.csv", ["id"])
    kept.take(2)
    opened = len(os.listdir("/proc/self/fd")) if fds is not None else None
    kept.close()
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == opened - 1


def test_predict_to_standard_output_writes_the_csv_a_file_out_holds_for_a_pipe(tmp_path, capsys):
    """gpunn predict MODEL IN - (for `| head`, `| awk`) was refused ("OUT -: the name must end in .npy, ..."). OUT -
    writes the CSV a .csv OUT holds onto standard output, and the lines of text go to stderr (as --json - sends
    them), --keep's and --score's too; OUT - beside --json - is refused, as both would be standard output."""
    pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 700, 3, seed=6, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([numpy.arange(700), X, Y]), delimiter=",",
                  header="id,a,b,c,y", comments="", fmt=["%d", "%.17g", "%.17g", "%.17g", "%.17g"])
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--features", "a,b,c", "--save",
                 model_path, *SMALL]) == 0
    for options in ([], ["--keep", "id", "--score"]):
        assert main(["predict", model_path, str(tmp_path / "t.csv"), str(tmp_path / "p.csv"), *options]) == 0
        capsys.readouterr()
        assert main(["predict", model_path, str(tmp_path / "t.csv"), "-", *options, "--json",
                     str(tmp_path / "s.json")]) == 0
        captured = capsys.readouterr()
        assert captured.out == (tmp_path / "p.csv").read_text()
        assert captured.err.startswith(f"standard output: 700 x 1 predictions (float32) from {model_path} on cpu, "
                                       "streamed\n"), captured.err
        assert ("held-out (" in captured.err) is bool(options) and "wrote " in captured.err
        assert json.loads((tmp_path / "s.json").read_text())["output"] == "-"
    assert main(["predict", model_path, str(tmp_path / "t.csv"), "-", "--json", "-"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "OUT - and --json - would both write to standard output" in captured.err


@pytest.mark.gpu
def test_predict_score_keep_and_standard_output_on_the_gpu_agree_with_the_cpu(gpu, tmp_path, capsys):
    """gpunn predict --score --keep, to a file and to OUT -, on the device: --score's one pass copies each piece of
    predictions to the host as evaluate's sums add up there. The kept column is IN's as written, the predictions
    and metrics the CPU's to float32's rounding of the products, and standard output holds OUT's bytes."""
    pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 900, 3, seed=8, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([numpy.arange(900) + 7, X, Y]), delimiter=",",
                  header="id,a,b,c,y", comments="", fmt=["%04d", "%.17g", "%.17g", "%.17g", "%.17g"])
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--features", "a,b,c", "--save",
                 model_path, *SMALL]) == 0
    runs = {}
    for device in ("cpu", "cuda"):
        options = ["--score", "--keep", "id", "--device", device, "--json", str(tmp_path / f"{device}.json")]
        assert main(["predict", model_path, str(tmp_path / "t.csv"), str(tmp_path / f"{device}.csv"), *options]) == 0
        assert f"on {device}" in capsys.readouterr().out
        with open(tmp_path / f"{device}.csv") as fh:
            header, ids = fh.readline(), [line.split(",")[0] for line in fh]
        runs[device] = (header, ids, numpy.loadtxt(tmp_path / f"{device}.csv", delimiter=",", skiprows=1)[:, 1],
                        json.loads((tmp_path / f"{device}.json").read_text())["score"])
    (cpu_header, cpu_ids, cpu_p, cpu_score), (header, ids, p, score) = runs["cpu"], runs["cuda"]
    assert header == cpu_header and ids == cpu_ids == [f"{i:04d}" for i in range(7, 907)]  # 0007 as written
    numpy.testing.assert_allclose(p, cpu_p, rtol=1e-5, atol=1e-6)
    for name in ("mse", "mae", "r2"):
        assert score[name] == pytest.approx(cpu_score[name], rel=1e-4, abs=1e-7), name
    assert main(["predict", model_path, str(tmp_path / "t.csv"), "-", "--score", "--keep", "id", "--device",
                 "cuda"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (tmp_path / "cuda.csv").read_text() and "held-out (" in captured.err


def test_predict_from_standard_input_reads_it_into_a_file_named_by_its_bytes(tmp_path, capsys, monkeypatch):
    """gpunn predict MODEL - OUT (zcat x.csv.gz | ..., a compressed IN being refused) was refused ("IN - does not
    exist"). Standard input is read into a temporary file, named by its bytes (CSV, an .npy array, Parquet), said on
    stderr and removed at the end; the predictions are those of the file; --json records the input as -; a terminal
    is refused."""
    import io
    import sys

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("linear", 500, 3, seed=7, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y]), delimiter=",", header="a,b,c,y", comments="")
    numpy.save(tmp_path / "x.npy", X)
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}), tmp_path / "t.parquet")
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", model_path, *SMALL]) == 0
    for name in ("t.csv", "x.npy", "t.parquet"):
        assert main(["predict", model_path, str(tmp_path / name), str(tmp_path / "file.npy"), "--overwrite"]) == 0
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / name).read_bytes())))
        assert main(["predict", model_path, "-", str(tmp_path / "piped.npy"), "--overwrite", "--json",
                     str(tmp_path / "s.json")]) == 0
        note = capsys.readouterr().err.splitlines()[0]
        spooled = re.fullmatch(r"IN -: standard input, ([\d,]+) bytes read into (\S+) \(removed at the end\)", note)
        assert spooled and spooled.group(2).endswith(os.path.splitext(name)[1]), note  # (named by its bytes)
        assert spooled.group(1) == f"{(tmp_path / name).stat().st_size:,}"
        assert not os.path.exists(spooled.group(2))
        numpy.testing.assert_array_equal(numpy.load(tmp_path / "piped.npy"), numpy.load(tmp_path / "file.npy"))
        assert json.loads((tmp_path / "s.json").read_text())["input"] == "-"
    monkeypatch.setenv("GPUNN_CACHE_DIR", str(tmp_path / "cache"))  # --score's CSV index of the spooled file:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "t.csv").read_bytes())))
    assert main(["predict", model_path, "-", str(tmp_path / "scored.npy"), "--score"]) == 0
    assert "held-out (standard input, against y): mse " in capsys.readouterr().out  # not the file, gone by then
    # and its index: none kept (data.csv cache=False), not left in the cache once a run
    assert not (tmp_path / "cache").exists() and os.environ["GPUNN_CACHE_DIR"] == str(tmp_path / "cache")
    terminal = io.TextIOWrapper(io.BytesIO(b""))
    monkeypatch.setattr(terminal, "isatty", lambda: True)
    monkeypatch.setattr(sys, "stdin", terminal)
    assert main(["predict", model_path, "-", str(tmp_path / "q.npy")]) == 2
    assert "IN - reads standard input, and it is a terminal" in capsys.readouterr().err


def test_predict_score_of_standard_input_indexes_its_csv_once(tmp_path, capsys, monkeypatch):
    """--score built its source of IN twice: once to refuse an IN without the target columns, then the pass's. A file's
    CSV index is kept, so the second was free; standard input's is not (a spooled file, cache=False), and each built
    it again, one more read of IN's bytes: 3 x its size with the rows' pass (audit45's redundant check). An IN without
    the target is still refused before OUT is written, by the pass's source."""
    import io
    import sys

    from gpunn.data import csv_tables

    X, Y = datasets.make("linear", 2000, 2, seed=5, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y]), delimiter=",", header="a,b,y", comments="")
    numpy.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b", comments="")
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", model_path, *SMALL]) == 0
    read = []
    real_read_range = csv_tables.read_range
    monkeypatch.setattr(csv_tables, "read_range", lambda fd, start, end: read.append(end - start) or
                        real_read_range(fd, start, end))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "t.csv").read_bytes())))
    assert main(["predict", model_path, "-", str(tmp_path / "p.npy"), "--score"]) == 0
    size = (tmp_path / "t.csv").stat().st_size
    assert 0 < sum(read) <= 2 * size, (read, size)  # the index's pass and the rows'
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "x.csv").read_bytes())))
    assert main(["predict", model_path, "-", str(tmp_path / "q.npy"), "--score"]) == 2
    assert "(the model's target column, y, in IN)" in capsys.readouterr().err and not (tmp_path / "q.npy").exists()


def test_predict_from_standard_input_removes_its_file_when_refused_and_says_a_closed_one_is_closed(tmp_path, capsys,
                                                                                                monkeypatch):
    """Standard input's file is removed when the run is refused part-way (IN's rows read, not the model's width),
    as at its end; a standard input that is closed (gpunn predict MODEL - OUT <&-: sys.stdin None) is refused
    saying so, where it was said to be a terminal. Checked by mutation: a removal at the end alone, and the closed
    standard input left to the terminal's check (an internal error, AttributeError), passed every other test. The
    cache directory is left as it was (an earlier way set it to the file's folder meanwhile, for --score's CSV
    index, and had to put it back)."""
    import io
    import sys
    import tempfile

    pytest.importorskip("pyarrow")
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([3, 1], seed=0))
    (tmp_path / "spool").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spool"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1,2\n3,4\n")))
    monkeypatch.delenv("GPUNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["predict", str(tmp_path / "m.npz"), "-", str(tmp_path / "p.npy")]) == 2
    err = capsys.readouterr().err
    assert "IN -: standard input, 8 bytes read into " in err and "the model expects 3" in err, err
    assert os.listdir(tmp_path / "spool") == [] and not (tmp_path / "p.npy").exists()
    assert "GPUNN_CACHE_DIR" not in os.environ
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["predict", str(tmp_path / "m.npz"), "-", str(tmp_path / "p.npy")]) == 2
    assert "gpunn predict: error: IN - reads standard input, and it is closed: pipe the rows into it" in \
        capsys.readouterr().err


def test_a_directory_of_parquet_files_and_an_upper_case_suffix_are_data_files(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("linear", 2000, 2, seed=1, device="cpu")
    (tmp_path / "parts").mkdir()
    for i in (0, 1):
        rows = slice(1000 * i, 1000 * (i + 1))
        pq.write_table(pa.table({"a": X[rows, 0], "b": X[rows, 1], "y": Y[rows, 0]}),
                       tmp_path / "parts" / f"part-{i}.parquet", row_group_size=250)
    assert main(["train", "--data", str(tmp_path / "parts"), "--target", "y", *SMALL]) == 0
    assert "training rows in" in capsys.readouterr().out
    for name, array in (("X.NPY", X), ("Y.NPY", Y)):  # (numpy.save would add .npy to the name)
        with open(tmp_path / name, "wb") as fh:
            numpy.save(fh, array)
    assert main(["train", "--data", str(tmp_path / "X.NPY"), "--targets", str(tmp_path / "Y.NPY"), *SMALL]) == 0
    assert "training rows in" in capsys.readouterr().out


def test_a_missing_target_column_is_an_error_listing_the_columns(tmp_path, capsys):
    pyarrow = pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n")
    assert main(["train", "--data", str(tmp_path / "t.csv"), *SMALL]) == 2  # no --target at all
    # the columns to choose from, as for a target that is not there (it said only "name the target column(s)")
    assert (f"--data {tmp_path / 't.csv'}: name the target column(s) with --target; the columns are: a, b, y"
            in capsys.readouterr().err)
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pyarrow.table({"a": [1.0, 2.0], "price": [3.0, 4.0]}), tmp_path / "t.parquet")
    assert main(["train", "--data", str(tmp_path / "t.parquet"), *SMALL]) == 2
    assert "t.parquet: name the target column(s) with --target; the columns are: a, price" in capsys.readouterr().err
    for make, path in ((gpunn.data.csv, "t.csv"), (gpunn.data.parquet, "t.parquet")):  # in Python, target=None
        for given in ((None,), ()):  # or no target at all (it was Python's "missing 1 required positional argument")
            with pytest.raises(ValueError, match="^target: name the target column.s.; the columns are: a, "):
                make(tmp_path / path, *given)
    pandas = pytest.importorskip("pandas")  # the way the refusal shows to predict a file of inputs alone
    model = gpunn.MLP([2, 3, 1], seed=0, device="cpu")
    model.fit(gpunn.data.csv(tmp_path / "t.csv", "y", device="cpu"), epochs=1, verbose=False)
    (tmp_path / "inputs.csv").write_text("b,a\n5,4\n2,1\n")  # the columns in another order
    numpy.testing.assert_array_equal(model.predict(pandas.read_csv(tmp_path / "inputs.csv")),
                                     model.predict(pandas.DataFrame({"a": [4.0, 1.0], "b": [5.0, 2.0]})))
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "price", *SMALL]) == 2
    assert "t.csv: no column 'price'; the columns are: a, b, y" in capsys.readouterr().err
    # a table with a column of text (an id): the target is asked for first, not the text refused (the columns'
    # checks, which ran first once the source was made without a target, said "'bob' is not a number")
    (tmp_path / "ids.csv").write_text("name,a,y\nbob,1,2\ncat,3,4\n")
    pq.write_table(pyarrow.table({"name": ["bob", "cat"], "a": [1.0, 2.0], "y": [3.0, 4.0]}), tmp_path / "ids.parquet")
    for name in ("ids.csv", "ids.parquet"):
        assert main(["train", "--data", str(tmp_path / name), *SMALL]) == 2
        assert f"{name}: name the target column(s) with --target; the columns are: name, a, y" in capsys.readouterr().err


def test_the_index_pandas_wrote_unnamed_is_not_listed_among_a_parquet_files_columns(tmp_path, capsys):
    """pandas writes a DataFrame's index (one that is not a plain range: rows filtered, shuffled, labelled) into a
    Parquet file as columns its metadata lists in index_columns, an unnamed level as __index_level_N__, and reads
    them back as the index, not as columns. The lists of a file's columns (gpunn train --data without --target,
    target=None, a column not in the file) named __index_level_1__, a column the DataFrame never had; they list the
    DataFrame's columns now, and a named level under its name (set_index("t")). Neither is a default feature; both
    are read where named (written here as pandas 2 writes df.set_index("t", append=True) of a filtered frame)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    def described(name, field, kind):
        return {"name": name, "field_name": field, "pandas_type": kind, "numpy_type": kind, "metadata": None}

    columns = {"a": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 8.0], "t": [10.0, 20.0, 30.0, 40.0],
               "__index_level_1__": [3, 5, 8, 9]}
    pandas = {"index_columns": ["t", "__index_level_1__"], "column_indexes": [],
              "columns": [described("a", "a", "float64"), described("y", "y", "float64"),
                          described("t", "t", "float64"), described(None, "__index_level_1__", "int64")],
              "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.3"}
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table(columns).replace_schema_metadata({b"pandas": json.dumps(pandas).encode()}), path)
    assert main(["train", "--data", str(path), *SMALL]) == 2
    assert f"--data {path}: name the target column(s) with --target; the columns are: a, y, t\n" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^target: name the target column\(s\); the columns are: a, y, t; to predict "
                                         r"a file of inputs alone: gpunn predict MODEL IN OUT \(streamed; MODEL one "
                                         r"network's file: gpunn\.save\(path, ens\.best\(\)\) saves an Ensemble's "
                                         r"best member as one\), or "
                                         r"model\.predict\(pandas\.read_parquet\(path\)\), ") as caught:
        gpunn.data.parquet(path, None)
    assert caught.value.columns == ["a", "y", "t"]
    with pytest.raises(gpunn.data.DataError, match=r"f\.parquet: no column 'price'; the columns are: a, y, t$"):
        gpunn.data.parquet(path, "price")
    assert gpunn.data.parquet(path, "y").feature_names == ["a"]
    named = gpunn.data.parquet(path, "y", ["a", "t", "__index_level_1__"])
    assert named.feature_names == ["a", "t", "__index_level_1__"]


def test_a_semicolon_delimited_csv_says_so_in_train_and_predict(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    rows = "".join(f"{i};{i % 7}.5;{2 * i}\n" for i in range(60))
    (tmp_path / "s.csv").write_text("a;b;y\n" + rows)
    (tmp_path / "bare.csv").write_text(rows)  # no header: its first row is taken for one
    hint = "looks ';'-delimited"
    assert main(["train", "--data", str(tmp_path / "s.csv"), "--target", "y", *SMALL]) == 2
    assert hint in capsys.readouterr().err
    (tmp_path / "t.csv").write_text("a,b,y\n" + rows.replace(";", ","))
    named, plain = str(tmp_path / "named.npz"), str(tmp_path / "plain.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", named, *SMALL]) == 0
    gpunn.save(plain, gpunn.MLP([2, 4, 1], seed=0))
    for model in (named, plain):  # by name (streamed) and by position (numpy.loadtxt)
        for name in ("s.csv", "bare.csv"):
            capsys.readouterr()
            assert main(["predict", model, str(tmp_path / name), str(tmp_path / "p.npy")]) == 2
            assert hint in capsys.readouterr().err, (model, name)


def test_a_csv_of_numbers_between_spaces_as_numpy_savetxt_writes_says_so_in_train_and_predict(tmp_path, capsys):
    """numpy.savetxt("in.csv", X) writes the numbers with spaces between them: gpunn predict named the whole first
    row as one column's name and the second as "not a number", gpunn train --data listed it as the columns, each
    with no word of why (a tab- or ;-delimited file gets one)."""
    pytest.importorskip("pyarrow")
    X = datasets.make("linear", 40, 2, seed=2, device="cpu")[0]
    numpy.savetxt(tmp_path / "in.csv", X)
    hint = "holding numbers separated by spaces, as numpy.savetxt writes them by default"
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([2, 4, 1], seed=0))
    for out in ("p.npy", "p.parquet"):  # read whole (numpy.loadtxt) and streamed
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.csv"), str(tmp_path / out)]) == 2
        assert hint in capsys.readouterr().err, out
    assert main(["train", "--data", str(tmp_path / "in.csv"), "--target", "y", *SMALL]) == 2
    assert hint in capsys.readouterr().err
    numpy.savetxt(tmp_path / "in.csv", X, delimiter=",")  # as the hint says: read
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.csv"), str(tmp_path / "p.npy")]) == 0


def test_a_csv_without_a_header_says_so_where_training_looks_for_its_columns(tmp_path, capsys):
    """numpy.savetxt(path, data, delimiter=",") writes no header: gpunn train --data said "no column 'y'; the
    columns are: 0.5, 1.25, 3" (its first row of numbers, taken for names), with no word of why."""
    pytest.importorskip("pyarrow")
    numpy.savetxt(tmp_path / "t.csv", [[0.5, 1.25, 3], [1, 2, 4], [2, 0.5, 1]], delimiter=",", fmt="%g")
    hint = "its first line holds numbers, not column names: a CSV file's first line is its header"
    for target in (["--target", "y"], []):
        assert main(["train", "--data", str(tmp_path / "t.csv"), *target, *SMALL]) == 2
        err = capsys.readouterr().err
        assert "the columns are: 0.5, 1.25, 3;" in err and hint in err and "header='a,b,y', comments=''" in err, err
    with pytest.raises(ValueError, match=re.escape(hint)):
        gpunn.data.csv(tmp_path / "t.csv", None)
    (tmp_path / "t.csv").write_text("2020,2021,y\n1,2,3\n")  # names that look like numbers, one of them not
    with pytest.raises(gpunn.data.DataError, match=r"no column 'z'; the columns are: 2020, 2021, y$"):
        gpunn.data.csv(tmp_path / "t.csv", "z")


def test_column_names_with_spaces_around_them_are_listed_in_quotes_and_said(tmp_path, capsys):
    """A header written "a, b, y" names ' b' and ' y': gpunn train --data t.csv --target y said "no column 'y'; the
    columns are: a, b, y", listing the name it refused, and gpunn predict of a model trained on a, b "no column
    'b'; the columns are: a, b, y"."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("a, b, y\n" + "".join(f"{i}, {i % 3}, {2 * i}\n" for i in range(40)))
    spaced = "the columns are: a, ' b', ' y'; the names have spaces around them"
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"no column 'y'; {spaced} (' y'), which are part of a name: remove them (in a CSV file, the "
                        "spaces after the commas of its header line), or name the column with them in double quotes, "
                        "as a CSV header does (\" y\": --target '\" y\"' on the command line)\n"), err
    # the hint's way works (it said only "remove them"), and a feature's names its option
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", '" y"', "--features", 'a," b"', *SMALL]) == 0
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", '" y"', "--features", "a,b", *SMALL]) == 2
    assert "(\" b\": --features '\" b\"' on the command line)\n" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "t.csv"), *SMALL]) == 2
    assert "the columns are: a, ' b', ' y'\n" in capsys.readouterr().err
    (tmp_path / "u.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(40)))
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "u.csv"), "--target", "y", "--save", model, *SMALL]) == 0
    capsys.readouterr()
    assert main(["predict", model, str(tmp_path / "t.csv"), str(tmp_path / "p.csv")]) == 2
    assert f"no column 'b'; {spaced} (' b')" in capsys.readouterr().err
    assert gpunn.data.csv(tmp_path / "t.csv", [" y"]).feature_names == ["a", " b"]  # a name as written is found


def test_a_data_run_worse_than_the_mean_unscaled_is_told_to_try_standardize(tmp_path, capsys):
    """House prices and years trained as they are reached a held-out r2 of -5 with no word of why; --standardize
    (which the note names) brings them to unit scale. A run that standardizes, or scores above 0, gets no note."""
    pytest.importorskip("pyarrow")
    rng = numpy.random.default_rng(0)
    year = rng.integers(1950, 2024, 400)
    (tmp_path / "t.csv").write_text("year,price\n" + "".join(f"{y},{(y - 1950) * 3000 + 1e5}\n" for y in year))
    note = "note: the held-out r2 is below 0, worse than predicting the targets' mean"
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "price", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert float(re.search(r"r2 (\S+)", out).group(1)) < 0, out
    assert re.search(rf"{re.escape(note)}, whose spread there is 6\.\d+e\+04 \(std\), far from unit scale: columns of "
                     r"prices, years or counts train poorly as they are; try --standardize\n", err), err
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "price", "--standardize", *SMALL]) == 0
    assert note not in capsys.readouterr().err
    (tmp_path / "u.csv").write_text("x,y\n" + "".join(f"{x},{2 * x}\n" for x in rng.uniform(-1, 1, 400)))
    assert main(with_options(["train", "--data", str(tmp_path / "u.csv"), "--target", "y", *SMALL], "--epochs", "20",
                             "--lr", "0.01")) == 0
    out, err = capsys.readouterr()
    assert float(re.search(r"r2 (\S+)", out).group(1)) > 0 and note not in err, (out, err)
    (tmp_path / "v.csv").write_text("x,y\n" + "".join(f"{x},{2 * x + 3}\n" for x in rng.uniform(-1, 1, 400)))
    assert main(with_options(["train", "--data", str(tmp_path / "v.csv"), "--target", "y", *SMALL], "--epochs",
                             "1")) == 0  # too short a run on unit-scale targets: its r2 is below 0, with no note
    out, err = capsys.readouterr()
    assert float(re.search(r"r2 (\S+)", out).group(1)) < 0 and note not in err, (out, err)


def test_held_out_targets_of_one_value_are_told_why_r2_is_0(tmp_path, capsys):
    """A constant target column printed "r2 0.0000" with no word that R² is undefined there (its variance is 0):
    scikit-learn's r2_score gives 0 too (force_finite), as gpunn keeps; the note says so, naming the output
    where there are several. Targets that vary get no note."""
    pytest.importorskip("pyarrow")
    x = numpy.random.default_rng(0).uniform(-1, 1, 200)
    (tmp_path / "t.csv").write_text("x,y,c\n" + "".join(f"{v},{2 * v},5\n" for v in x))
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "c", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert "r2 0.0000" in out and ("note: the held-out targets are all the same value, so R² (1 - squared error / "
                                   "their variance) is undefined: r2 says 0 (1 where they are predicted exactly), "
                                   "scikit-learn's r2_score convention; judge the fit by mse and mae\n") in err, err
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y,c", *SMALL]) == 0
    assert ("note: the held-out values of target 'c' are all the same, so its R² is undefined: r2, the mean of the 2 "
            "outputs' R², counts it as 0 (1 where predicted exactly)") in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", *SMALL]) == 0
    assert "all the same" not in capsys.readouterr().err


def test_the_config_a_run_with_named_features_saves_is_read_back_by_config(tmp_path, capsys):
    """--save wrote `features = ["a", "b"]` (and `target = ["y1", "y2"]` as a list) into PATH.toml, and --config refused
    its own file: "features must list numbers, got ['a', 'b']"."""
    pytest.importorskip("pyarrow")
    rows = "".join(f"{i},{i % 3},{i % 5},{2 * i},{i % 7}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("a,b,c,y1,y2\n" + rows)
    first, again = str(tmp_path / "m.npz"), str(tmp_path / "again.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y1,y2", "--features", "a,b", "--save", first,
                 *SMALL]) == 0
    saved = (tmp_path / "m.npz.toml").read_text()
    assert 'features = ["a", "b"]' in saved, saved
    assert main(["train", "--config", first + ".toml", "--save", again]) == 0, capsys.readouterr().err
    assert (tmp_path / "again.npz.toml").read_text() == saved.replace(first, again).replace("m.npz", "again.npz")
    assert gpunn.load(again).data_columns == {"features": ["a", "b"], "targets": ["y1", "y2"]}
    (tmp_path / "bad.toml").write_text(f'data = "{tmp_path / "t.csv"}"\ntarget = "y1"\nfeatures = ["a", 2]\n')
    assert main(["train", "--config", str(tmp_path / "bad.toml"), *SMALL]) == 2
    assert "bad.toml: features must list column names, got ['a', 2]" in capsys.readouterr().err


def test_a_config_files_column_name_holding_a_comma_is_one_column_as_it_is_quoted_on_the_command_line(tmp_path):
    """`features = ["a,b", "c"]` names two columns, as `--features '"a,b",c'` does: the list is joined as a CSV header
    line, a name holding a comma quoted (audit37b g14: joined with bare commas, "a,b" was two columns)."""
    from gpunn.cli import parse_args

    (tmp_path / "run.toml").write_text('data = "t.csv"\nfeatures = ["a,b", "c"]\ntarget = ["y, 1", "z"]\n')
    from_file = parse_args(["train", "--config", str(tmp_path / "run.toml")])
    given = parse_args(["train", "--data", "t.csv", "--features", '"a,b",c', "--target", '"y, 1",z'])
    assert (from_file.features, from_file.target) == (given.features, given.target) == (["a,b", "c"], '"y, 1",z')


@pytest.mark.parametrize("text, names", [
    ("a,b", ["a", "b"]), (" a , b ,", ["a", "b"]), ('"x,y",b', ["x,y", "b"]), ('a, "x,y" ,b', ["a", "x,y", "b"]),
    ('" y"', [" y"]), ('"say ""hi""",c', ['say "hi"', "c"]), ('a"b', ['a"b']), ("a,,b", ["a", "b"]), ("", []),
    ('"""q""",b', ['"q"', "b"]),  # a name that begins with a quote is quoted when written back (audit41a c24)
])
def test_a_line_of_column_names_reads_as_a_csv_header_and_is_written_back_so(text, names):
    from gpunn.csvtext import joined_columns, split_columns

    assert split_columns(text) == names
    assert split_columns(joined_columns(names)) == names


@pytest.mark.parametrize("text, problem", [
    ('"x,y', "the name quoted at character 1 has no closing quote"),
    ('a,"x"y', "the name quoted at character 3 goes on after its closing quote"),
])
def test_a_line_of_column_names_with_a_broken_quote_is_refused(text, problem, capsys):
    from gpunn.csvtext import split_columns

    with pytest.raises(ValueError, match=problem):
        split_columns(text)
    for command, option in (["train", "--target"], ["predict m.npz in.csv out.csv", "--features"]):
        with pytest.raises(SystemExit) as exit_info:  # refused as the command line is read
            main([*command.split(), option, text])
        assert exit_info.value.code == 2 and f"argument {option}: {text!r}: {problem}" in capsys.readouterr().err


def test_a_line_of_column_names_naming_one_twice_is_refused_as_typed(capsys):
    """--target price,price said "target names a column twice: ['price', 'price']", a Python list, after the data
    was opened; it is refused as the command line is read, with the names as they were typed."""
    for command, option, text, twice in (["train", "--target", "price,price", "the column 'price'"],
                                         ["train", "--features", 'a,b,"x,y", b,a', "the columns 'b', 'a'"],
                                         ["train", "--features", "a,a,a", "the column 'a'"],  # (said once)
                                         ["predict m.npz in.csv out.csv", "--features", "a,a", "the column 'a'"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command.split(), option, text])
        assert exit_info.value.code == 2
        assert f"argument {option}: {text!r} names {twice} twice; name each column once (see" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["", " , "])
def test_an_empty_target_is_refused_as_one_where_it_was_taken_as_no_target(tmp_path, capsys, text):
    """--target "" (an unset shell variable, say) was taken as no --target, and refused listing the table's columns
    as if none had been given; it is refused as the command line is read, as --features "" is, with what was given."""
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--data", str(tmp_path / "t.csv"), "--target", text])
        assert exit_info.value.code == 2
        assert f"argument --target: --target takes column names, got {text!r} (no name in it)" in capsys.readouterr().err


def test_a_column_name_with_a_comma_is_named_in_double_quotes_as_a_csv_header_writes_it(tmp_path, capsys):
    """--target y1,y2 splits on commas, so a column named x,y could not be given at all; quoted as the file's
    own header quotes it, it is one name, through --save's config, --config, --resume and predict's --features."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text('a,"x,y",b,y\n' + "".join(f"{i},{i % 3},{i % 5},{2 * i}\n" for i in range(40)))
    data, model, again = str(tmp_path / "t.csv"), str(tmp_path / "m.npz"), str(tmp_path / "again.npz")
    assert main(["train", "--data", data, "--target", "y", "--features", 'a, "x,y"', "--save", model, *SMALL]) == 0
    assert gpunn.load(model).data_columns == {"features": ["a", "x,y"], "targets": ["y"]}
    assert 'features = ["a", "x,y"]' in (tmp_path / "m.npz.toml").read_text()
    assert main(["train", "--config", model + ".toml", "--save", again]) == 0
    assert gpunn.load(again).data_columns == {"features": ["a", "x,y"], "targets": ["y"]}
    assert main(["train", "--resume", model, "--epochs", "3", "--quiet"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    numpy.save(tmp_path / "my y.npy", numpy.zeros(40))
    # --resume's refusal writes the values as a command line takes them (it said --features a,"x,y", and a path bare)
    assert main(["train", "--resume", model, "--epochs", "4", "--features", "a,b", "--targets",
                 str(tmp_path / "my y.npy")]) == 2
    assert capsys.readouterr().err == (
        f"gpunn train: error: --resume {model}: --features a,b, --targets '{tmp_path / 'my y.npy'}' would change the "
        "run, which has --features 'a,\"x,y\"', --targets unset; a resumed run continues exactly as it started (start "
        "a new run, without --resume, to change it)\n")
    # (in the model's order: '"x,y",a' read x,y as the model's a, refused now as the model's columns reordered)
    assert main(["predict", model, data, str(tmp_path / "p.csv"), "--features", 'a,"x,y"']) == 0
    assert main(["train", "--data", data, "--target", '"x,y",y', "--save", again, "--overwrite", *SMALL]) == 0
    assert gpunn.load(again).data_columns == {"features": ["a", "b"], "targets": ["x,y", "y"]}
    assert gpunn.data.csv(data, target='"x,y"').target_names == ["x,y"]  # the library's line of names, alike
    capsys.readouterr()
    assert main(["train", "--data", data, "--target", "x,y", *SMALL]) == 2  # unquoted: two names, and a hint
    assert capsys.readouterr().err == (
        f"gpunn train: error: {data}: no column 'x'; the columns are: a, 'x,y', b, y; the column 'x,y' has a "
        'comma in its name: in a line of names put it in double quotes, as a CSV header does ("x,y": --target '
        "'\"x,y\"' on the command line), or pass a list of names\n")


def test_a_column_name_in_another_letter_case_is_hinted_not_taken(tmp_path, capsys):
    """--target Price for a column 'price' said "no column 'Price'; the columns are: a, b, price" and left the
    user to spot the capital. Names stay matched as written (pandas and pyarrow match them so): a hint only."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("a,b,price,Y,y\n" + "".join(f"{i},{i % 3},{2 * i},1,2\n" for i in range(40)))
    path = str(tmp_path / "t.csv")
    assert main(["train", "--data", path, "--target", "Price", "--features", "A,b", *SMALL]) == 2
    assert capsys.readouterr().err == (f"gpunn train: error: {path}: no column 'Price', 'A'; the columns are: a, b, "
                                       "price, Y, y; names are matched as written, letter case included: did you mean "
                                       "'price', 'a'?\n")
    with pytest.raises(gpunn.data.DataError, match=r"no column 'B'; the columns are: a, b, price, Y, y; names are "
                                                   r"matched as written, letter case included: did you mean 'b'\?$"):
        gpunn.data.csv(path, target="price", features=["a", "B"])
    with pytest.raises(gpunn.data.DataError, match=r"no column 'Z'; the columns are: a, b, price, Y, y$"):
        gpunn.data.csv(path, target="Z")  # no column of that name in any case
    with pytest.raises(gpunn.data.DataError, match=r"no column 'PRICE', 'Y '; the columns are: a, b, price, Y, y; "
                                                   r".* did you mean 'price'\?$"):
        gpunn.data.csv(path, target=["PRICE", "Y "])  # 'y' and 'Y' both: no one name meant


@pytest.mark.parametrize("columns, asked, hint", [
    (["a", "x, y", "b"], {"target": "y"}, "the column 'x, y' has a comma in its name: in a line of names put it in "
                                          "double quotes, as a CSV header does (\"x, y\": --target '\"x, y\"' on the "
                                          "command line), or pass a list of names"),
    (["Size", "SIZE", "y"], {"target": "y", "features": ["size"]}, "did you mean 'Size'?"),
    (["price", "area", "y"], {"target": "y", "features": ["prise", "pryce"]}, "did you mean 'price'?"),
])
def test_a_missing_column_is_hinted_once_by_the_one_column_it_could_mean(columns, asked, hint):
    """The hints of a column not found (gpunn.data.table_columns.pick_columns): a name that is any piece of a column's name
    with a comma and a space in it (the second, 'y' of 'x, y', as the first); no letter-case hint where two columns
    match in another case (which one was meant?), only the misspelling's; and a column two misspelt names are
    close to named once."""
    pyarrow = pytest.importorskip("pyarrow")
    from gpunn.data.tables import MissingColumns, pick_columns

    schema = pyarrow.schema([(name, pyarrow.float64()) for name in columns])
    with pytest.raises(MissingColumns) as refused:
        pick_columns("t.csv", schema, asked["target"], asked.get("features"))
    assert str(refused.value).split("; ", 2)[2] == hint


def test_a_misspelt_column_name_is_hinted_by_the_close_one(tmp_path, capsys):
    """--target price for a header's 'prcie' (or --features agee for 'age') said "no column 'price'; the columns
    are: ..." and left the user to spot it, where a misspelt option or config key is hinted. A beginning is no
    hint among columns, which share them."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("area,age,prcie\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(40)))
    path = str(tmp_path / "t.csv")
    assert main(["train", "--data", path, "--target", "price", *SMALL]) == 2
    assert capsys.readouterr().err == (f"gpunn train: error: {path}: no column 'price'; the columns are: area, age, "
                                       "prcie; did you mean 'prcie'?\n")
    with pytest.raises(gpunn.data.DataError, match=r"no column 'agee'; the columns are: area, age, prcie; did you "
                                                   r"mean 'age'\?$"):
        gpunn.data.csv(path, target="prcie", features=["area", "agee"])
    with pytest.raises(gpunn.data.DataError, match=r"no column 'pr'; the columns are: area, age, prcie$"):
        gpunn.data.csv(path, target="pr")


def test_predict_on_a_table_without_a_models_column_says_what_the_model_picks_by_name(tmp_path, capsys):
    """A table whose header misspells a column the model was trained on ('roms' for 'rooms') said only "no column
    'rooms'", with no word that the model picks a table's columns by its training names, nor of --features,
    which picks them here: the refusal names the model's columns and the --features that would, and it does."""
    pytest.importorskip("pyarrow")
    rows = "".join(f"{i % 7},{i % 5},{i % 3},{i % 7 + 2 * (i % 5)}\n" for i in range(200))
    (tmp_path / "t.csv").write_text("area,rooms,age,price\n" + rows)
    (tmp_path / "typo.csv").write_text("area,roms,age,price\n" + rows)
    (tmp_path / "other.csv").write_text("u,v,w,price\n" + rows)
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "price", "--save", model, *SMALL]) == 0
    capsys.readouterr()
    typo, out = str(tmp_path / "typo.csv"), str(tmp_path / "p.csv")
    assert main(["predict", model, typo, out]) == 2
    assert capsys.readouterr().err == (
        f"gpunn predict: error: IN {typo}: no column 'rooms'; the columns are: area, roms, age, price; did you mean "
        "'roms'? The model was trained on the columns area, rooms, age and picks a table's by name: name the table's "
        "columns for them, in that order, with --features area,roms,age; OUT not written\n")
    assert main(["predict", model, typo, out, "--features", "area,roms,age"]) == 0
    capsys.readouterr()
    assert main(["predict", model, str(tmp_path / "other.csv"), out]) == 2
    assert capsys.readouterr().err.endswith(
        "the model was trained on the columns area, rooms, age and picks a table's by name: give the table those "
        "columns, or name its columns for them, in that order, with --features; OUT not written\n")


def test_a_parquet_directory_whose_files_have_other_columns_is_refused_naming_its_first_file(tmp_path, capsys):
    """A directory's files are read as one table with its first file's columns. A later file without one was
    refused in training as if the column had been asked for by name ("b.parquet: no column 'x2'"), and gpunn
    predict failed with an internal KeyError from pyarrow part-way through writing."""
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = numpy.random.default_rng(0)
    parts = tmp_path / "parts"
    parts.mkdir()
    for name, columns in (("a.parquet", ["x1", "x2", "y"]), ("b.parquet", ["x2", "x1", "y"])):
        pq.write_table(pyarrow.table({c: rng.normal(size=300) for c in columns}), parts / name)
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(parts), "--target", "y", "--save", model, *SMALL]) == 0  # by name: any order
    pq.write_table(pyarrow.table({c: rng.normal(size=300) for c in ["x1", "x3", "y"]}), parts / "b.parquet")
    refusal = (f"{parts / 'b.parquet'}: no column 'x2'; the columns are: x1, x3, y; a directory's files are read as "
               f"one table, with the columns of its first file, {parts / 'a.parquet'}: give every file those columns, "
               "or move the others out of the directory\n")
    capsys.readouterr()
    assert main(["train", "--data", str(parts), "--target", "y", *SMALL]) == 2
    assert capsys.readouterr().err == f"gpunn train: error: {refusal}"
    assert main(["predict", model, str(parts), str(tmp_path / "p.csv")]) == 2
    assert capsys.readouterr().err == f"gpunn predict: error: IN {refusal[:-1]}; OUT not written\n"
    assert not (tmp_path / "p.csv").exists()


@pytest.fixture
def spaced(tmp_path):
    """A folder with a space in its name holding a CSV and a Parquet file named with spaces, whose columns are too."""
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "my dir"
    folder.mkdir()
    X, Y = datasets.make("linear", 400, 3, seed=0, device="cpu")
    names = ["first col", "second col", "third", "sale price"]
    rows = "".join(",".join(f"{v:.6f}" for v in (*x, y)) + "\n" for x, y in zip(X, Y[:, 0]))
    (folder / "a b.csv").write_text(",".join(names) + "\n" + rows)
    pq.write_table(pyarrow.table(dict(zip(names, [*X.T, Y[:, 0]]))), folder / "p q.parquet")
    return folder


def test_paths_and_columns_with_spaces_train_predict_and_sweep_end_to_end(spaced, capsys):
    """Every path and column name here has a space in it; the lines that name the files quote them, so that the
    commands they say can be pasted (it said "gpunn predict /tmp/.../my dir/best m.npz IN OUT": four words)."""
    model, best = spaced / "m 1.npz", spaced / "best m.npz"
    assert main(["train", "--data", str(spaced / "a b.csv"), "--target", "sale price", "--features", "first col, third",
                 "--save", str(model), *SMALL]) == 0
    assert f"checkpoint: '{model}' (config: '{model}.toml')" in capsys.readouterr().out
    assert gpunn.load(model).data_columns == {"features": ["first col", "third"], "targets": ["sale price"]}
    for given, made in (("a b.csv", "out put.csv"), ("p q.parquet", "out put.parquet")):
        assert main(["predict", str(model), str(spaced / given), str(spaced / made)]) == 0
    assert (spaced / "out put.csv").read_text().splitlines()[0] == '"sale price"'
    assert main(["sweep", "--data", str(spaced / "p q.parquet"), "--target", "sale price", "--lr", "1e-3,1e-2",
                 "--hidden", "4", "--epochs", "1", "--quiet", "--device", "cpu", "--save-best", str(best)]) == 0
    assert f"best member saved: '{best}' (gpunn predict '{best}' IN OUT)" in capsys.readouterr().out


def test_columns_and_paths_with_spaces_are_named_in_quotes(spaced, capsys):
    """"the columns are: first col, second col, third, sale price" read as any number of names, and "IN
    /tmp/.../my dir/no file.csv does not exist" as a file named "my"; the --features a refusal suggests is quoted as a
    command line takes it."""
    listed = "the columns are: 'first col', 'second col', third, 'sale price'"  # (quoted: the names with a space)
    data = spaced / "a b.csv"
    assert main(["train", "--data", str(data), *SMALL]) == 2
    assert f"--data '{data}': name the target column(s) with --target; {listed}" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--target", "sale prce", *SMALL]) == 2
    assert f"{data}: no column 'sale prce'; {listed}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"^target: name the target column.s.; {listed}; to predict a file of inputs "
                                         r"alone: .*model\.predict\(pandas\.read_csv\(path\)\)"):
        gpunn.data.csv(data)
    assert main(["predict", str(spaced / "m.npz"), str(spaced / "no file.csv"), str(spaced / "p.csv")]) == 2
    assert f"MODEL '{spaced / 'm.npz'}' does not exist" in capsys.readouterr().err
    gpunn.save(spaced / "m3.npz", gpunn.MLP([3, 4, 1], device="cpu"))  # --keep's refusal lists them alike (bare, as
    assert main(["predict", str(spaced / "m3.npz"), str(data), str(spaced / "p.csv"), "--keep", "id"]) == 2  # it was)
    assert capsys.readouterr().err.endswith(f"--keep: IN '{data}': no column 'id'; {listed}\n")  # (IN quoted, as
    # "IN '.../no file.csv' does not exist": bare, "IN .../my dir/a b.csv" read as a file "my")
    (spaced / "ids.csv").write_text("item name,first col,third,sale price\nbob,1,2,3\ncat,4,5,6\n")
    assert main(["train", "--data", str(spaced / "ids.csv"), "--target", "sale price", *SMALL]) == 2
    assert "(--features 'first col,third', features=[...])" in capsys.readouterr().err


def test_keeps_refusal_of_a_column_of_two_types_quotes_both_files_of_a_directory_with_a_space(tmp_path, capsys):
    """"--keep: IN .../my dir/p1.parquet: column 'id' is int64, and int32 in .../my dir/p0.parquet: ..." read as
    files named ".../my" twice: both are quoted, as a path with a space is wherever a line names it."""
    pa = pytest.importorskip("pyarrow")
    import pandas
    import pyarrow.parquet as pq

    folder = tmp_path / "my dir"
    folder.mkdir()
    X, Y = datasets.make("linear", 300, 2, seed=1, device="cpu")
    for part, kind in enumerate(("int32", "int64")):
        rows = slice(150 * part, 150 * (part + 1))
        pq.write_table(pa.table({"id": pa.array(numpy.arange(300)[rows], kind), "a": X[rows, 0], "b": X[rows, 1]}),
                       folder / f"p{part}.parquet")
    model = gpunn.MLP([2, 4, 1], device="cpu")
    model.fit(pandas.DataFrame(X, columns=["a", "b"]), Y, epochs=1, verbose=False)
    gpunn.save(tmp_path / "m.npz", model)
    assert main(["predict", str(tmp_path / "m.npz"), str(folder), str(tmp_path / "o.parquet"), "--keep", "id"]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: --keep: IN '{folder / 'p1.parquet'}': column 'id' is "
                                       f"int64, and int32 in '{folder / 'p0.parquet'}': a column --keep copies is of "
                                       "one type in every file\n")


def test_predict_says_why_a_csv_read_by_position_has_another_width(tmp_path, capsys):
    """A CSV file is read by position for a model that knows no column names (trained on an .npy pair), and a file
    without a header for one that does: "X has 3 columns but the model expects 2" said neither, nor --features."""
    pytest.importorskip("pyarrow")
    rows = "".join(f"{i},{i % 3},{2 * i}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("a,b,y\n" + rows)
    (tmp_path / "bare.csv").write_text(rows)
    unnamed, named = str(tmp_path / "unnamed.npz"), str(tmp_path / "named.npz")
    gpunn.save(unnamed, gpunn.MLP([2, 4, 1], seed=0))
    model = gpunn.MLP([2, 4, 1], seed=0)
    model.fit(gpunn.data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False)
    gpunn.save(named, model)
    assert main(["predict", unnamed, str(tmp_path / "t.csv"), str(tmp_path / "p.npy")]) == 2
    assert ("IN {}: X has 3 columns but the model expects 2 (its target too?); its header names a, b, y, and the "
            "model was trained on "
            "unnamed columns (an .npy file or a synthetic task), so they are taken in order: pick the model's 2 with "
            "--features, e.g. --features a,b; OUT not written\n".format(tmp_path / "t.csv")) in capsys.readouterr().err
    assert main(["predict", unnamed, str(tmp_path / "t.csv"), str(tmp_path / "p.npy"), "--features", "a,b"]) == 0
    assert main(["predict", named, str(tmp_path / "bare.csv"), str(tmp_path / "p.npy")]) == 2
    assert ("X has 3 columns but the model expects 2; bare.csv has no header row, so its columns are taken in order "
            "as the model's features, a, b (its target y too?): give it a header row naming them") \
        in capsys.readouterr().err


def test_predict_of_an_npy_file_of_another_width_is_not_told_to_give_it_a_header(tmp_path, capsys):
    """An .npy array cannot have a header row, which is what the refusal told it to get, for a model that knows its
    columns; a file of the model's features and its target (the training table saved whole) is asked about it."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(40)))
    model, table = gpunn.MLP([2, 4, 1], seed=0), numpy.loadtxt(tmp_path / "t.csv", delimiter=",", skiprows=1)
    model.fit(gpunn.data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False)
    gpunn.save(tmp_path / "named.npz", model)
    numpy.save(tmp_path / "whole.npy", table)
    numpy.save(tmp_path / "one.npy", table[:, :1])
    numpy.savetxt(tmp_path / "bare.csv", table, delimiter=",")
    for name, width, target in (("whole.npy", 3, " (its target y too?)"), ("one.npy", 1, "")):
        assert main(["predict", str(tmp_path / "named.npz"), str(tmp_path / name), str(tmp_path / "p.npy")]) == 2
        err = capsys.readouterr().err
        assert (f"X has {width} column{'s' * (width > 1)} but the model expects 2; an .npy array holds no column names, "
                f"so its columns are taken in order as the model's features, a, b{target}: save those 2 alone, in "
                "that order, or give a CSV or Parquet file whose header names them") in err, err
        assert "header row" not in err
    assert main(["predict", str(tmp_path / "named.npz"), str(tmp_path / "bare.csv"), str(tmp_path / "p.npy")]) == 2
    assert "a, b (its target y too?): give it a header row naming them" in capsys.readouterr().err


def test_predict_of_another_width_names_what_gpunn_train_trained_the_model_on(pair, capsys):
    """An array of another width for a model of unnamed columns said "X has 5 columns but the model expects 16" and
    no more: a model of another run (another synthetic task's, or another file's) was not told from wrong data.
    The refusal says what the run recorded: its task and width, or its --data file; a model saved by gpunn.save,
    which records no run, is refused as before."""
    tmp_path, X, _ = pair
    task, on_file, plain = (str(tmp_path / name) for name in ("task.npz", "file.npz", "plain.npz"))
    assert main(["train", "--rows", "2000", "--features", "3", "--save", task, *SMALL]) == 0
    assert main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--save", on_file,
                 *SMALL]) == 0
    gpunn.save(plain, gpunn.MLP([3, 1], seed=0))
    capsys.readouterr()
    x, x3 = str(tmp_path / "X.npy"), str(tmp_path / "x3.npy")
    numpy.save(x3, X[:, :3])
    assert main(["predict", task, x, str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: IN {x}: X has 5 columns but the model expects 3; MODEL "
                                       f"{task} was trained on gpunn train's synthetic task teacher, of 3 features: "
                                                     "the model of another run? OUT not written\n")
    assert main(["predict", on_file, x3, str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: IN {x3}: X has 3 columns but the model expects 5; MODEL "
                                       f"{on_file} was trained on --data {x}: give rows of that file's columns, in its "
                                       "order; OUT not written\n")
    assert main(["predict", plain, x, str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: IN {x}: X has 5 columns but the model expects 3; OUT not "
                                       "written\n")


def test_predict_refusal_that_ends_in_a_question_says_what_out_holds_in_a_sentence_of_its_own(tmp_path, capsys):
    """A refusal of IN that ends in a question read "... did you mean 'A'?; OUT not written": what OUT holds is now a
    sentence after it, a file OUT's and standard output's alike; a refusal that ends otherwise keeps its "; ". (IN's
    columns are refused before a row is written: standard output was given none, which it says.)"""
    pytest.importorskip("pyarrow")
    X = numpy.column_stack([numpy.arange(100) % 7 + 0.5, numpy.arange(100) % 3, numpy.arange(100) % 5])
    numpy.savetxt(tmp_path / "t.csv", X, delimiter=",", header="a,b,y", comments="", fmt="%g")
    numpy.savetxt(tmp_path / "x.csv", X[:, :2], delimiter=",", header="A,b", comments="", fmt="%g")
    model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
    model.fit(gpunn.data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False)
    gpunn.save(tmp_path / "m.npz", model)
    asked = f"IN {tmp_path}/x.csv: no column 'a'; the columns are: A, b; names are matched as written, letter case " \
            "included: did you mean 'A'?"
    stdout = "o prediction was written to standard output"
    for out, holds, after in ((str(tmp_path / "p.csv"), "OUT not written", "OUT not written"),
                              ("-", f"N{stdout}", f"n{stdout}")):
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.csv"), out, "--features", "a,b"]) == 2
        assert capsys.readouterr().err == f"gpunn predict: error: {asked} {holds}\n"
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.csv"), out]) == 2  # (a sentence follows)
        assert capsys.readouterr().err.endswith(f"with --features; {after}\n")
    assert not os.path.exists(tmp_path / "p.csv")


def test_predict_of_a_file_one_column_per_output_too_wide_asks_of_the_target_for_a_model_of_unnamed_columns(pair, capsys):
    """A model trained on an .npy pair (or saved by gpunn.save), given its features and its target in one file, was
    told only the widths, where a model of named columns asks "(its target y too?)": it asks "(its target too?)",
    "(its 2 targets too?)" for two outputs, of an .npy file, a headerless CSV file and one with a header; a file of
    another width is not asked."""
    tmp_path, X, Y = pair
    on_file, plain = str(tmp_path / "file.npz"), str(tmp_path / "plain.npz")
    assert main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--save", on_file,
                 *SMALL]) == 0
    gpunn.save(plain, gpunn.MLP([4, 2], seed=0))
    capsys.readouterr()
    x = str(tmp_path / "X.npy")
    whole = numpy.column_stack([X, Y[:, 0]])  # the features and the target, as a table of both holds them
    numpy.save(tmp_path / "whole.npy", whole)
    numpy.save(tmp_path / "seven.npy", numpy.column_stack([whole, Y[:, 0]]))
    numpy.savetxt(tmp_path / "bare.csv", whole[:50], delimiter=",")
    numpy.savetxt(tmp_path / "head.csv", whole[:50], delimiter=",", header="a,b,c,d,e,y", comments="")
    for name in ("whole.npy", "bare.csv"):
        assert main(["predict", on_file, str(tmp_path / name), str(tmp_path / "p.npy")]) == 2
        assert capsys.readouterr().err == (f"gpunn predict: error: IN {tmp_path / name}: X has 6 columns but the model "
                                           f"expects 5 (its target too?); MODEL {on_file} was trained on --data {x}: "
                                           "give rows of that file's columns, in its order; OUT not written\n")
    assert main(["predict", on_file, str(tmp_path / "head.csv"), str(tmp_path / "p.npy")]) == 2
    assert "X has 6 columns but the model expects 5 (its target too?); its header names a, b, c, d, e, y, and" in \
        capsys.readouterr().err
    assert main(["predict", on_file, str(tmp_path / "seven.npy"), str(tmp_path / "p.npy")]) == 2
    assert "expects 5; MODEL" in capsys.readouterr().err  # two columns more for one output: not asked
    assert main(["predict", plain, str(tmp_path / "whole.npy"), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: IN {tmp_path / 'whole.npy'}: X has 6 columns but the "
                                       "model expects 4 (its 2 targets too?); OUT not written\n")

def test_train_and_predict_on_a_csv_that_starts_with_empty_lines(tmp_path, capsys):
    """Its header was taken to end at the first line end: gpunn train --data failed ("bad data after row 0"),
    and gpunn predict of a model that knows its columns read a headerless file's first row as names."""
    pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 400, 3, seed=2, device="cpu")
    for name, table, header in (("t.csv", numpy.column_stack([X, Y[:, 0]]), "a,b,c,y"), ("x.csv", X, "a,b,c"),
                                ("n.csv", X, "")):
        numpy.savetxt(tmp_path / name, table, delimiter=",", header="\r\n\r\n" + header, comments="", fmt="%.17g")
    named, plain = str(tmp_path / "named.npz"), str(tmp_path / "plain.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", named, *SMALL]) == 0, \
        capsys.readouterr().err
    gpunn.save(plain, gpunn.MLP([3, 4, 1], seed=0))
    for model in (named, plain):  # by name (streamed) and by position (numpy.loadtxt); no header: by position
        expected = by_position(gpunn.load(model, device="cpu"), X)
        for name in ("x.csv", "n.csv"):
            out = tmp_path / "p.npy"
            assert main(["predict", model, str(tmp_path / name), str(out), "--device", "cpu"]) == 0, \
                capsys.readouterr().err
            numpy.testing.assert_array_equal(numpy.load(out), expected)


def test_train_and_predict_on_a_csv_whose_quoted_header_name_holds_a_line_end(tmp_path, capsys):
    """gpunn train --data read the header's first line only ("bad data after row 0"), and gpunn predict's
    numpy.loadtxt path skipped one line of a two-line header."""
    pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 400, 3, seed=2, device="cpu")
    header = 'a,"b\nx",c'
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y[:, 0]]), delimiter=",", header=header + ",y",
                  comments="", fmt="%.17g")
    named, plain = str(tmp_path / "named.npz"), str(tmp_path / "plain.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", named, *SMALL]) == 0, \
        capsys.readouterr().err
    gpunn.save(plain, gpunn.MLP([3, 4, 1], seed=0))
    # by name (streamed) and by position (numpy.loadtxt, whose skiprows counts a header line ending in \r too: mut9);
    # with \r line ends the name is "b\rx", not the named model's "b\nx"
    for newline in ("\n", "\r"):
        numpy.savetxt(tmp_path / "x.csv", X, delimiter=",", header=header.replace("\n", newline), comments="",
                      fmt="%.17g", newline=newline)
        for model in (named, plain) if newline == "\n" else (plain,):
            out = tmp_path / "p.npy"
            assert main(["predict", model, str(tmp_path / "x.csv"), str(out), "--device", "cpu"]) == 0, \
                capsys.readouterr().err
            expected = by_position(gpunn.load(model, device="cpu"), X)
            numpy.testing.assert_array_equal(numpy.load(out), expected)


def test_predict_names_the_csv_line_of_a_nan_read_whole_or_streamed(tmp_path, capsys):
    """A NaN in a CSV input is named by its line, as an editor shows it (the header's counted), and its column's
    name, or its place on the line without a header: it said "X contains 1 NaN ... (first at row 249, column 1)"
    read whole, and the row within the piece read streamed."""
    pytest.importorskip("pyarrow")
    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    rows = [f"{i},{i}.5" for i in range(300)]
    rows[249] = "1,nan"
    (tmp_path / "x.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    (tmp_path / "h.csv").write_text("\n".join(rows) + "\n")
    said = "line {}: {}: 'nan' is NaN; clean or impute it first"
    for args, words in ((["x.csv"], "IN {}x.csv " + said.format(251, "column 'b'")),  # read whole
                        (["x.csv", "--features", "a,b"], "IN {}x.csv " + said.format(251, "column 'b'")),  # streamed
                        # b read first: its value is read again from the file's second field, not its first
                        (["x.csv", "--features", "b,a"], "IN {}x.csv " + said.format(251, "column 'b'")),
                        (["h.csv"], "IN {}h.csv " + said.format(250, "value 2 of the line"))):
        args = [str(tmp_path / args[0]), *args[1:]]
        assert main(["predict", model, args[0], str(tmp_path / "p.npy"), *args[1:]]) == 2
        assert capsys.readouterr().err == f"gpunn predict: error: {words.format(str(tmp_path) + '/')}; OUT not written\n"


def test_predict_refused_by_a_later_piece_of_in_leaves_no_out_and_says_so_or_what_standard_output_holds(
        tmp_path, monkeypatch, capsys):
    """A value refused in a later piece of a streamed IN, with pieces before it predicted and written, leaves OUT as
    it was: no OUT, an earlier OUT unchanged, no temporary file (OUT is written under another name and renamed into
    place once whole), and the refusal says "; OUT not written", as --score's do; it said nothing of OUT. OUT -
    cannot take back what it wrote: the refusal says standard output holds the rows predicted before it, where
    --score said "OUT not written" of rows already there."""
    pytest.importorskip("pyarrow")
    from gpunn.data import files

    monkeypatch.setattr(files, "CSV_BLOCK", 1 << 12)  # 1000 rows of about 12 bytes: the bad row in the fourth block
    X = numpy.column_stack([numpy.arange(1000) % 7 + 0.5, numpy.arange(1000) % 3, numpy.arange(1000) % 5])
    numpy.savetxt(tmp_path / "t.csv", X, delimiter=",", header="a,b,y", comments="", fmt="%g")
    model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
    model.fit(gpunn.data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False)
    gpunn.save(tmp_path / "m.npz", model)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    lines[901] = "1,nan,2"  # features: refused by a plain run
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    lines[901] = "1,1,nan"  # the target: refused by --score
    (tmp_path / "y.csv").write_text("\n".join(lines) + "\n")
    feature = f"IN {tmp_path}/x.csv line 902: column 'b': 'nan' is NaN; clean or impute it first"
    target = f"IN {tmp_path}/y.csv line 902: column 'y': 'nan' is NaN; clean or impute it first"
    for name, options, said in (("x.csv", [], feature), ("y.csv", ["--score"], target)):
        for out in ("p.npy", "p.csv", "p.parquet"):
            (tmp_path / out).write_bytes(b"earlier")
            before = sorted(os.listdir(tmp_path))
            assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / name), str(tmp_path / out),
                         *options]) == 2, out  # (streamed: a table of the model's named columns)
            assert capsys.readouterr().err == f"gpunn predict: error: {said}; OUT not written\n", out
            assert (tmp_path / out).read_bytes() == b"earlier" and sorted(os.listdir(tmp_path)) == before, out
            (tmp_path / out).unlink()
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / name), "-", *options]) == 2
        written = capsys.readouterr()
        assert written.err.endswith(f"{said}; standard output holds only the rows predicted before it (the rest not "
                                    "written)\n"), written.err
        assert 0 < len(written.out.splitlines()) - 1 < 900  # (a header row, then the rows of the pieces before)


def waiting_in_open(thread, ceiling=20.0):
    """Once ``thread`` waits in its open of a named pipe for the other end (the kernel's wait_for_partner, as /proc's
    wchan says it). Skips where /proc does not say."""
    import time

    wchan, deadline, seen = f"/proc/self/task/{thread.native_id}/wchan", time.monotonic() + ceiling, set()
    while time.monotonic() < deadline:
        try:
            with open(wchan) as fh:
                seen.add(fh.read().strip())
        except OSError:
            pytest.skip("no /proc: cannot tell a pipe's reader or writer is waiting")
        if "wait_for_partner" in seen:
            return
        time.sleep(0.005)  # (polled, with a ceiling: not a timed assertion)
    if seen == {"0"}:  # (0 while a thread runs, and for every thread where the kernel hides where they wait)
        pytest.skip("/proc does not say where a thread waits: cannot tell a pipe's reader or writer is waiting")
    raise AssertionError(f"the thread did not wait in its open of the pipe ({sorted(seen)})")


class _PipeReader:
    """A reader of the named pipe ``path`` on a thread of its own, as a shell's ``cat path`` is: ``bytes`` once the
    writer closes it. The pipe is held under a second name (in ``held``, a folder) too, so that a reader left waiting
    (the command never opened the pipe: refused, or the pipe renamed over) is let go and the test fails, not hangs."""

    def __init__(self, path, held):
        import threading

        held.mkdir()
        self.held, self.bytes = held / "pipe", None
        os.link(path, self.held)
        self.thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self.thread.start()

    def _read(self, path):
        with open(path, "rb") as fh:
            self.bytes = fh.read()

    def waiting(self):
        """Once the reader waits in its open for a writer, as ``cat path`` started first does: a command run next
        meets a reader."""
        waiting_in_open(self.thread)
        return self

    def join(self, let_go=True):
        """The bytes read (none where the command never opened the pipe); ``let_go=False``: the reader is not let go
        (it must have had end of file from the command), a reader still waiting after 30 s fails."""
        if not let_go:
            self.thread.join(30)
        try:
            os.close(os.open(self.held, os.O_WRONLY | os.O_NONBLOCK))  # the reader let go, when still waiting
        except OSError:  # (no reader on it: it has read to the end)
            pass
        alive = self.thread.is_alive()
        self.thread.join(60)
        assert not (alive and not let_go), "the pipe's reader was left waiting"
        assert not self.thread.is_alive()
        return self.bytes


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_predict_into_a_named_pipe_writes_into_it_as_into_standard_output_and_leaves_it_a_pipe(tmp_path, monkeypatch,
                                                                                           capsys):
    """An OUT that is no regular file (a named pipe here; a device) is written into as its rows are predicted, as OUT -
    is: a CSV OUT was written under another name and renamed over the pipe, which became a regular file, the command
    ending with status 0 and the pipe's reader left waiting for ever. Read whole or streamed, the reader gets what a
    file OUT holds; a refusal of a later piece of IN says what the pipe holds, as OUT -'s says what standard output
    does. An .npy OUT streamed (its header holds the row count) and a Parquet OUT are refused, saying what to do; an
    .npy OUT read whole is written into whole (gpunn.atomic.atomic_write, as before)."""
    import stat

    pytest.importorskip("pyarrow")
    from gpunn.data import files

    monkeypatch.setattr(files, "CSV_BLOCK", 1 << 12)  # 1000 rows of about 12 bytes: the bad row in the fourth block
    X = numpy.column_stack([numpy.arange(1000) % 7 + 0.5, numpy.arange(1000) % 3, numpy.arange(1000) % 5])
    numpy.savetxt(tmp_path / "t.csv", X, delimiter=",", header="a,b,y", comments="", fmt="%g")
    numpy.save(tmp_path / "x.npy", X[:, :2])
    model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
    model.fit(gpunn.data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False)
    gpunn.save(tmp_path / "m.npz", model)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    lines[901] = "1,nan,2"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    runs = 0

    def predict(IN, out, *options):
        """(status, the bytes the pipe's reader got, stderr) of gpunn predict into the named pipe p.OUT"""
        nonlocal runs
        pipe, runs = tmp_path / f"p.{out}", runs + 1
        os.mkfifo(pipe)
        reader = _PipeReader(pipe, tmp_path / f"held{runs}")
        status = main(["predict", str(tmp_path / "m.npz"), str(tmp_path / IN), str(pipe), *options])
        got = reader.join()
        assert stat.S_ISFIFO(os.stat(pipe).st_mode), "the pipe replaced by a file"
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        pipe.unlink()
        return status, got, capsys.readouterr().err

    for IN, options in (("t.csv", ["--features", "a,b"]), ("x.npy", [])):  # streamed, read whole
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / IN), str(tmp_path / "f.csv"), *options]) == 0
        assert predict(IN, "csv", *options)[:2] == (0, (tmp_path / "f.csv").read_bytes()), IN
        (tmp_path / "f.csv").unlink()
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npy"), str(tmp_path / "f.npy")]) == 0
    assert predict("x.npy", "npy")[:2] == (0, (tmp_path / "f.npy").read_bytes())
    os.symlink(os.devnull, tmp_path / "null.csv")  # a device: written into (the link was replaced by a file)
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "t.csv"), str(tmp_path / "null.csv"),
                 "--features", "a,b"]) == 0
    assert os.path.islink(tmp_path / "null.csv") and stat.S_ISCHR(os.stat(tmp_path / "null.csv").st_mode)
    capsys.readouterr()
    for out, why, copy in (("npy", "an .npy array's header, written first, holds its row count, known once every row "
                                   "is predicted", ".npy"),
                           ("parquet", "pyarrow's Parquet writer needs a file it can seek in", ".parquet")):
        status, got, err = predict("t.csv", out, "--features", "a,b")
        assert (status, got) == (2, b"")
        assert err == (f"gpunn predict: error: {tmp_path}/p.{out} is a named pipe, written into as the rows are "
                       f"predicted, and {why}: write a .csv file into it, or write the {copy} file elsewhere and copy "
                       "it in\n")
    status, got, err = predict("bad.csv", "csv", "--features", "a,b")
    assert status == 2 and err == (f"gpunn predict: error: IN {tmp_path}/bad.csv line 902: column 'b': 'nan' is NaN; "
                                   f"clean or impute it first; OUT {tmp_path}/p.csv, a named pipe, holds only the rows "
                                   "predicted before it (the rest not written)\n")
    assert 0 < len(got.splitlines()) - 1 < 900  # (a header row, then the rows of the pieces before)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_predict_refused_before_it_writes_a_named_pipe_gives_its_reader_end_of_file_and_says_none_was_written(
        tmp_path, capsys):
    """A refusal before OUT, a named pipe, was opened (an option, IN's width read whole) left the pipe's reader (cat
    OUT, waiting in its open for a writer) waiting for ever: the pipe is now opened without blocking and closed, so
    its reader sees end of file (with no reader, nothing to do: the command ends at once), a --json pipe's too. A
    refusal of IN before any
    row was predicted said the pipe "holds only the rows predicted before it" (none): it says none was written, of
    standard output too."""
    X = numpy.column_stack([numpy.arange(100) % 7 + 0.5, numpy.arange(100) % 3, numpy.arange(100) % 5])
    numpy.savetxt(tmp_path / "t.csv", X, delimiter=",", header="a,b,y", comments="", fmt="%g")
    numpy.save(tmp_path / "wide.npy", X)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    lines[1] = "1,nan,2"  # IN's first row: refused in the first piece, the header written
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
    model.fit(gpunn.data.csv(tmp_path / "t.csv", target="y"), epochs=1, verbose=False)
    gpunn.save(tmp_path / "m.npz", model)
    pipe = tmp_path / "p.csv"
    none = f"no prediction was written to OUT {pipe}, a named pipe\n"
    for n, (IN, options, said, header) in enumerate((
            ("t.csv", ["--weight", "y"], "--weight y weighs --score's errors; add --score", False),
            ("wide.npy", [], none, False), ("bad.csv", [], none, True))):
        os.mkfifo(pipe)
        reader = _PipeReader(pipe, tmp_path / f"held{n}").waiting()
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / IN), str(pipe), *options]) == 2
        assert reader.join(let_go=False) == (b'"y"\n' if header else b""), IN
        assert said in capsys.readouterr().err, IN
        if not header:  # refused before OUT is opened, with no reader: ends at once (bad.csv's opens OUT, waiting)
            assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / IN), str(pipe), *options]) == 2
        pipe.unlink()
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "bad.csv"), "-"]) == 2
    written = capsys.readouterr()
    assert written.out == '"y"\n' and written.err.endswith("; no prediction was written to standard output\n")
    os.mkfifo(tmp_path / "j.json")  # --json a named pipe, refused before it is written: its reader let go too
    reader = _PipeReader(tmp_path / "j.json", tmp_path / "held-json").waiting()
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "t.csv"), str(tmp_path / "o.csv"), "--weight", "y",
                 "--json", str(tmp_path / "j.json")]) == 2
    assert reader.join(let_go=False) == b"" and not os.path.exists(tmp_path / "o.csv")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("IN, named", [("p.csv", "IN"), ("p.npy", "IN"), ("y.npy", "--targets"),
                                       ("w.npy", "--weights")])
def test_predict_refuses_an_in_that_is_a_named_pipe_saying_to_give_it_as_in_dash_and_lets_its_writer_go(tmp_path,
                                                                                                     capsys, IN, named):
    """gpunn predict reads IN more than once (a CSV file's kind and header, then its rows), and a named pipe gives its
    bytes once: with a writer (cat x.csv > p.csv), the run waited for ever for a second one, or was refused in words
    of what the first read left ("IN p.npy is a damaged .npy file", "IN p.csv: no such file"). Refused before any
    read, saying to give it as IN -; the writer waiting in its open is let go (its write fails: broken pipe). So are
    --score's --targets and --weights files (the run waited for ever), saying to save them to a file."""
    import threading

    X = numpy.column_stack([numpy.arange(100) % 7 + 0.5, numpy.arange(100) % 3])
    numpy.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b", comments="", fmt="%g")
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy.rows", X[:, :1])
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([2, 4, 1], seed=0, device="cpu"))
    pipe, sent = tmp_path / IN, (tmp_path / ("y.npy.rows.npy" if named != "IN" else f"x{IN[1:]}")).read_bytes()
    os.mkfifo(pipe)
    os.link(pipe, tmp_path / "held")  # (the command's read let go through it where it waits for a second writer)
    outcome = []

    def write():
        try:
            with open(pipe, "wb") as fh:
                fh.write(sent + bytes(16 << 20))  # (more than a pipe holds: a write after the reader left fails)
            outcome.append("written")
        except BrokenPipeError:
            outcome.append("broken pipe")

    def let_go():  # after a 30 s ceiling, a command waiting in its open for a second writer is let go, each time
        if not done.wait(30):
            while not done.wait(0.05):
                with contextlib.suppress(OSError):
                    os.close(os.open(tmp_path / "held", os.O_WRONLY | os.O_NONBLOCK))

    scored = {"--targets": ["--targets", str(pipe)], "--weights": ["--targets", str(tmp_path / "y.npy.rows.npy"),
                                                                  "--weights", str(pipe)]}
    IN_and_options = [str(pipe)] if named == "IN" else [str(tmp_path / "x.npy"), "--score", *scored[named]]
    writer, done = threading.Thread(target=write, daemon=True), threading.Event()
    writer.start()
    waiting_in_open(writer)
    watchdog = threading.Thread(target=let_go, daemon=True)
    watchdog.start()
    try:
        status = main(["predict", str(tmp_path / "m.npz"), *IN_and_options, str(tmp_path / "o.csv")])
    finally:
        done.set()
    writer.join(30)
    assert (status, outcome) == (2, ["broken pipe"])
    remedy = ("save it to a file and give that" if named != "IN" else "give it as IN -, standard input, which is read "
              f"once into a temporary file (gpunn predict MODEL - OUT < {pipe})")
    assert capsys.readouterr().err == (f"gpunn predict: error: {named} {pipe} is a named pipe, whose bytes can be read "
                                       f"once, and gpunn predict reads {named} more than once: {remedy}\n")
    assert not os.path.exists(tmp_path / "o.csv")


def test_predict_says_how_many_more_missing_values_the_rows_read_with_the_first_hold_as_training_does(tmp_path,
                                                                                                    capsys):
    """gpunn predict named only the input's first NaN, infinite or empty value, where training's refusal adds how
    many more the rows read with it hold and where the first three are: a file of five took five runs to clean. Now
    in training's words, read whole or streamed (a CSV file's lines, an .npy file's rows), an empty value and a number
    past float32 counted too; a chunk's refusal says that the rows after it are not checked yet (and counts none of
    them); a value alone is refused as before."""
    from gpunn.data import DataError
    from gpunn.data.files import predict_file

    pytest.importorskip("pyarrow")
    model = gpunn.MLP([2, 1], seed=0, device="cpu")
    gpunn.save(tmp_path / "m.npz", model)
    rows = [f"{i},{i}.5" for i in range(300)]
    rows[20], rows[21], rows[40], rows[90], rows[95] = "1,nan", "nan,inf", "-inf,2", "1e39,1", "1,-inf"
    (tmp_path / "x.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    rows[40] = ",2"  # (read whole, numpy.loadtxt refuses an empty value as it meets it: streamed only)
    (tmp_path / "e.csv").write_text("a,b\n" + "\n".join(rows) + "\n")
    said = ("IN {}/{} line 22: column 'b': 'nan' is NaN; clean or impute it first (5 more missing or not finite "
            "among the 300 rows read with it, at line 23, line 42, line 92, ...)")
    for name, features in (("x.csv", []), ("x.csv", ["--features", "a,b"]), ("e.csv", ["--features", "a,b"])):
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / name), str(tmp_path / "p.npy"),
                     *features]) == 2  # read whole, streamed
        assert capsys.readouterr().err == f"gpunn predict: error: {said.format(tmp_path, name)}; OUT not written\n"
    X = numpy.ones((300, 2))
    X[[20, 21, 40, 90, 95], [1, 0, 0, 0, 0]] = numpy.nan
    X[250, 1] = numpy.inf  # (in a later chunk of 100 rows: not counted)
    numpy.save(tmp_path / "x.npy", X)
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: IN {tmp_path}/x.npy row 20: column 1: nan is NaN; clean "
                                       "or impute it first (5 more missing or not finite among the 300 rows read with "
                                       "it, at row 21, row 40, row 90, ...); OUT not written\n")
    with pytest.raises(DataError, match=re.escape("x.npy row 20: column 1: nan is NaN; clean or impute it first (4 "
                                                  "more missing or not finite among the 100 rows read with it, at row "
                                                  "21, row 40, row 90, ...; the rows after them are not checked yet)")):
        predict_file(model, tmp_path / "x.npy", tmp_path / "p.npy", chunk_rows=100)
    X[[120, 130], [0, 1]] = numpy.nan  # in the second chunk: its rows named in the file, from its first row
    X[:100] = 1.0
    numpy.save(tmp_path / "x.npy", X)
    with pytest.raises(DataError, match=re.escape("x.npy row 120: column 0: nan is NaN; clean or impute it first (1 "
                                                  "more missing or not finite among the 100 rows read with it, at row "
                                                  "130; the rows after them are not checked yet)")):
        predict_file(model, tmp_path / "x.npy", tmp_path / "p.npy", chunk_rows=100)
    X[:] = 1.0
    X[20, 1] = numpy.nan
    numpy.save(tmp_path / "x.npy", X[:100])
    with pytest.raises(DataError, match=r"x\.npy row 20: column 1: nan is NaN; clean or impute it first$"):
        predict_file(model, tmp_path / "x.npy", tmp_path / "p.npy", chunk_rows=100)  # (one: nothing more said)


@pytest.mark.parametrize("header, first", [(True, 20), (False, 20), (True, 100_020)],
                         ids=["header", "no header", "second block"])
def test_predict_counts_more_missing_values_on_the_lines_of_a_csv_with_or_without_a_header(tmp_path, header, first):
    """A streamed CSV file's values not finite among the rows read with the first (its block of 1 MiB, about 70,000
    rows) are named on their own lines, a file without a header row counted from its first line, a later block's
    from the file's first; the rows of later blocks are not checked yet."""
    from gpunn.data import DataError
    from gpunn.data.files import predict_file

    pytest.importorskip("pyarrow")
    model = gpunn.MLP([2, 1], seed=0, device="cpu")
    rows = [f"{i},{i}.5" for i in range(200_000)]
    rows[first], rows[first + 20], rows[first + 70], rows[first + 90] = "1,nan", "nan,2", "inf,1", "1,-inf"
    (tmp_path / "x.csv").write_text("a,b\n" * header + "\n".join(rows) + "\n")
    line = first + 1 + header
    with pytest.raises(DataError, match=re.escape(
            f"line {line}: {'column ' + repr('b') if header else 'value 2 of the line'}: 'nan' is NaN; clean or impute "
            "it first (3 more missing or not finite among the ") + r"[\d,]+" + re.escape(
            f" rows read with it, at line {line + 20}, line {line + 70}, line {line + 90}; the rows after them are not "
            "checked yet)")):  # (three shown: no "...")
        predict_file(model, tmp_path / "x.csv", tmp_path / "p.npy")


def test_predict_names_a_nan_of_an_array_saved_under_a_csv_name_by_its_row_and_column(tmp_path, capsys):
    """IN read whole is read by its bytes, so numpy.save's array under a .csv name is read as the array it is, and
    a NaN in it is named as an .npy file's is (its row and column from 0, and the value), not as a CSV file's line
    and field, which its bytes do not have."""
    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    X = numpy.arange(20.0).reshape(10, 2)
    X[6, 1] = numpy.nan
    with open(tmp_path / "x.csv", "wb") as fh:
        numpy.save(fh, X)
    assert main(["predict", model, str(tmp_path / "x.csv"), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: IN {tmp_path}/x.csv row 6: column 1: nan is NaN; clean "
                                       "or impute it first; OUT not written\n")


def test_predict_names_its_input_in_one_form_read_whole_or_streamed(tmp_path, capsys):
    """gpunn predict's errors about its input begin "IN path", the argument's name, on both paths: streamed (a
    table's columns by name, a Parquet input) they began with the path alone. An error about OUT is not IN's."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,oops\n")
    (tmp_path / "c.csv").write_text("a,b,c\n1,2,3\n")
    (tmp_path / "dir").mkdir()
    pq.write_table(pa.table({"a": [1.0], "b": [2.0]}), tmp_path / "dir" / "0.parquet")
    (tmp_path / "dir" / "1.parquet").write_bytes(b"not parquet")
    x, c, directory = (str(tmp_path / name) for name in ("x.csv", "c.csv", "dir"))
    for args, said in (([x], f"IN {x} line 3: column 'b': 'oops' is not a number"),  # read whole; the rest streamed
                       ([x, "--features", "a,b"], f"IN {x} line 3: column 'b': 'oops' is not a number"),
                       ([c, "--features", "a,b,c"], f"IN {c}: 3 feature columns (a, b, c), the model takes 2"),
                       ([directory], f"IN {directory}/1.parquet: not a readable Parquet file")):
        assert main(["predict", model, args[0], str(tmp_path / "p.npy"), *args[1:]]) == 2
        assert capsys.readouterr().err.startswith(f"gpunn predict: error: {said}"), args
    (tmp_path / "p.npy").mkdir()  # OUT that cannot be written, as a directory
    assert main(["predict", model, directory, str(tmp_path / "p.npy")]) == 2
    assert not capsys.readouterr().err.startswith("gpunn predict: error: IN ")


@pytest.mark.parametrize("bad, problem", [
    ("1.5,oops", "{b}: 'oops' is not a number"),
    ("1.5", "1 value, where the lines before it have 2"),
    ("1.5,2.5,3.5", "3 values, where the lines before it have 2"),
    ("1.5,", "{b}: an empty value (a missing number) is not a number; clean or impute it first"),
    ("NA,2.5", "{a}: 'NA' is not a number; clean or impute it first"),
], ids=["not a number", "too few values", "too many values", "an empty value", "NA"])
@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("at", [2, 800], ids=["row 2", "row 800"])
def test_predict_words_a_bad_csv_row_alike_read_whole_or_streamed(tmp_path, capsys, monkeypatch, bad, problem, header,
                                                                  at):
    """One bad row, one wording, whichever way gpunn predict reads IN: whole, streamed (by --features, or a file over
    STREAM_BYTES) with the row in the first block pyarrow reads (row 2; row 800 with the default block) and past it
    (row 800 in 4 KiB blocks: rows of 8 bytes, from byte 6,400); a file with a header row and one without (its
    column then by place). A value that is not a number had three wordings (small12's find: read whole "IN x.csv is
    text but not comma-separated numbers ('oops' on line 3 (column 'b') is not a number)", streamed "IN x.csv:
    column 'b' is string, not numeric (...)", past the rows pyarrow infers types from "IN x.csv line 3: column 'b':
    CSV conversion error to double: invalid value 'oops'"). A row with too few or too many values had two (whole "IN
    x.csv is text but not comma-separated numbers (line 3 has 1 value, the lines before it 2)", streamed "IN x.csv
    line 3: CSV parse error: Expected 2 columns, got 1: 1.5"), and so had an empty value or NA (whole "IN x.csv line
    3: column 'b': an empty value (a missing number) is not a number", streamed, where pyarrow reads it as a missing
    value, "IN x.csv: NaN or infinite values after conversion to float32, the first at line 3 (column 'b'); clean or
    impute them first")."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import predict
    from gpunn.data import files

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    rows = ["1.5,2.5"] * 1000
    rows[at] = bad
    path = str(tmp_path / "x.csv")
    (tmp_path / "x.csv").write_text(("a,b\n" if header else "") + "\n".join(rows) + "\n")
    columns = {"a": "column 'a'", "b": "column 'b'"} if header else {"a": "value 1 of the line", "b": "value 2 of the line"}
    said = [f"gpunn predict: error: IN {path} line {at + 1 + header}: {problem.format(**columns)}; OUT not written"]

    def refusal(*options, stream_bytes=predict.STREAM_BYTES, block=files.CSV_BLOCK):
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        monkeypatch.setattr(files, "CSV_BLOCK", block)
        assert main(["predict", model, path, str(tmp_path / "p.npy"), *options]) == 2
        return [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]

    ways = {"read whole": {}, "streamed": {"stream_bytes": 0}, "streamed in 4 KiB blocks": {"stream_bytes": 0,
                                                                                            "block": 1 << 12}}
    for way, options in ways.items():
        assert refusal(**options) == said, way
        if header:  # --features streams too
            assert refusal("--features", "a,b", **{k: v for k, v in options.items() if k == "block"}) == said, way
    assert not (tmp_path / "p.npy").exists()


@pytest.mark.parametrize("header", [True, False])
def test_a_csv_cut_short_mid_line_is_told_so_read_whole_or_streamed(tmp_path, capsys, monkeypatch, header):
    """A file whose copy stopped mid-line was refused for its last line's width alone ("line 1001: 1 value, where
    the lines before it have 2"); where that line is the file's last and has no line end, the refusal asks whether
    the file was cut short, read whole, streamed and past the first block, and by train --data. A short row that is
    not the last, or that ends in a line end, is refused as before."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import predict
    from gpunn.data import files

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    path = tmp_path / "x.csv"
    rows = ("a,b\n" if header else "") + "1.5,2.5\n" * 1000
    width = f"line {1001 + header}: 1 value, where the lines before it have 2"
    cut = " (the file's last line, which ends without a line end: was the file cut short?)"
    for text, said in ((rows + "1.5", width + cut), (rows + "1.5\n", width), (rows + "1.5\n1.5,2.5", width)):
        path.write_text(text)
        for stream_bytes, block in ((predict.STREAM_BYTES, files.CSV_BLOCK), (0, files.CSV_BLOCK), (0, 1 << 12)):
            monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
            monkeypatch.setattr(files, "CSV_BLOCK", block)
            assert main(["predict", model, str(path), str(tmp_path / "p.npy")]) == 2
            err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
            assert err == [f"gpunn predict: error: IN {path} {said}; OUT not written"], (text[-12:], stream_bytes, block)
    if header:
        path.write_text(rows + "1.5")
        assert main(["train", "--data", str(path), "--target", "b", *SMALL]) == 2
        assert capsys.readouterr().err.endswith(f"{path} {width}{cut}\n")


@pytest.mark.parametrize("text, width, problem", [
    ("a,b\n1.5\n" + "1.5,2.5\n" * 5, 2, "line 2: 1 value, where the lines before it have 2"),
    ("a,b\n\n" + "1.5,2.5,3.5\n" * 5, 3, "line 3: 3 values, where the lines before it have 2"),
    # ("the lines before it" were the header alone: it names the header's empty last name)
    ("a,b,\n" + "1.5,2.5\n" * 5, 2, "line 2: 2 values, where the header row names 3 columns, its last without a "
                                     "name: the header line ends in a comma (remove it)"),
    ("a,,c\n" + "1.5,2.5\n" * 5, 2, "line 2: 2 values, where the header row names 3 columns, column 2 without a "
                                     "name (an empty name between two commas, or a comma at the line's end)"),
], ids=["a first row narrower", "every row wider", "a header ending in a comma", "a header with an empty name"])
def test_predict_names_a_row_of_another_width_than_the_header_alike_read_whole_or_streamed(tmp_path, capsys,
                                                                                          monkeypatch, text, width,
                                                                                          problem):
    """Read whole (numpy.loadtxt, which skips the header row) the rows after a short first one were named: "line 3:
    2 values, where the lines before it have 1", though the header before it has 2; and rows that all hold 3 values
    under a header of 2 names were read, predicting for a model of 3 features. Streamed, pyarrow names the first
    row, against the header; read whole too now."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import predict

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([width, 1], seed=0, device="cpu"))
    (tmp_path / "x.csv").write_text(text)
    said = [f"gpunn predict: error: IN {tmp_path / 'x.csv'} {problem}; OUT not written"]
    for stream_bytes in (predict.STREAM_BYTES, 0):
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        assert main(["predict", model, str(tmp_path / "x.csv"), str(tmp_path / "p.npy")]) == 2
        assert [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")] == said
    assert not (tmp_path / "p.npy").exists()


@pytest.mark.parametrize("header", [True, False])
def test_predict_reads_a_true_false_column_as_one_and_zero_read_whole_or_streamed(tmp_path, monkeypatch, header):
    """A CSV column of booleans (pyarrow's words, 1 and 0 among them, quoted or not) is 1 and 0 to gpunn predict
    whichever way it reads IN. Streamed it was (0b05ce5); read whole (numpy.loadtxt: a model without column
    names, a file under STREAM_BYTES) it was refused: "line 2: column 'flag': 'true' is not a number"."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import predict

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    words = ["true", "false", "True", "FALSE", '"true"', "1", "0", "TRUE", "False", '"false"']
    (tmp_path / "x.csv").write_text(("a,flag\n" if header else "") + "".join(f"{n}.5,{w}\n" for n, w in enumerate(words)))
    X = numpy.column_stack([numpy.arange(len(words)) + 0.5, [1, 0, 1, 0, 1, 1, 0, 1, 0, 0]])
    expected = gpunn.load(model, device="cpu").predict(X)
    for stream_bytes in (predict.STREAM_BYTES, 0):  # read whole, then streamed
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        assert main(["predict", model, str(tmp_path / "x.csv"), str(tmp_path / "p.npy")]) == 0
        numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), expected)


@pytest.mark.parametrize("bad, at, block, line, problem", [
    ("maybe", 3, None, 5, "column 'flag': 'maybe' is not a number"),
    ("2.5", 3, None, 2, "column 'flag': 'false' is not a number"),
    ("maybe", 800, 1 << 12, 802, "column 'flag': 'maybe' is not a number"),
    ("2.5", 800, 1 << 12, 802, "column 'flag': '2.5' is not a boolean (true/false or 1/0, as the column's first rows "
                               "are)"),
    ("", 800, 1 << 12, 802, "column 'flag': an empty value (a missing number) is not a number; clean or impute it "
                            "first"),
], ids=["a word among them", "a number among them", "a word past the first block", "a number past the first block",
        "an empty value past the first block"])
def test_predict_refuses_a_bad_value_among_booleans_alike_read_whole_or_streamed(tmp_path, capsys, monkeypatch, bad,
                                                                                 at, block, line, problem):
    """A column whose first block (the bytes pyarrow infers its types from) holds booleans is read as booleans in
    every block, read whole as streamed; one with a word among them (text to pyarrow) is refused naming the word,
    and one of booleans and numbers without a word naming its first boolean, as the streamed read does
    (csvtext.csv_first_text). Read whole every such file named its first boolean; streamed a number past the
    first block was "CSV conversion error to bool: invalid value '2.5'"."""
    pytest.importorskip("pyarrow")
    from gpunn import csvtext
    from gpunn.cli import predict
    from gpunn.data import files

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    values = ["true" if n % 3 else "false" for n in range(1000)]
    values[at] = bad
    path = str(tmp_path / "x.csv")
    (tmp_path / "x.csv").write_text("a,flag\n" + "".join(f"{n % 10}.5,{value}\n" for n, value in enumerate(values)))
    for module in (csvtext, files):  # the first block of the read whole and of the streamed read
        monkeypatch.setattr(module, "CSV_BLOCK", block or module.CSV_BLOCK)
    for stream_bytes in (predict.STREAM_BYTES, 0):  # read whole, then streamed
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        assert main(["predict", model, path, str(tmp_path / "p.npy")]) == 2
        said = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
        assert said == [f"gpunn predict: error: IN {path} line {line}: {problem}; OUT not written"], stream_bytes
    assert not (tmp_path / "p.npy").exists()


def test_predict_names_text_after_a_missing_value_alike_read_whole_or_streamed(tmp_path, capsys, monkeypatch):
    """A column pyarrow reads as text from its first block is refused naming its first value that is not a number
    nor missing (csvtext.csv_first_text), read whole as streamed: read whole it named the empty value before it."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import predict

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    (tmp_path / "x.csv").write_text("a,b\n1.5,\n2.5,oops\n3.5,4.5\n")
    for stream_bytes in (predict.STREAM_BYTES, 0):  # read whole, then streamed
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        assert main(["predict", model, str(tmp_path / "x.csv"), str(tmp_path / "p.npy")]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (f"gpunn predict: error: IN {tmp_path / 'x.csv'} line 3: column 'b': "
                                                            "'oops' is not a number; OUT not written")


@pytest.mark.parametrize("word", ["true", "FALSE", "True"])
def test_without_pyarrow_a_true_false_column_read_whole_is_refused_saying_what_reads_it(tmp_path, capsys,
                                                                                        monkeypatch, word):
    """gpunn predict reads a small CSV file's true/false column as 1 and 0 by pyarrow's types (an optional extra);
    without pyarrow its first word was refused as any word is ("'true' is not a number"), though --help says
    true/false read as 1 and 0: the refusal now says what reads them."""
    import sys

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    path = tmp_path / "x.csv"
    path.write_text(f"1.5,{word}\n2.5,0\n")
    for name in ("pyarrow", "pyarrow.csv"):  # import pyarrow.csv fails, as where it is not installed
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["predict", model, str(path), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"gpunn predict: error: IN {path} line 1: value 2 of the line: {word!r} is not a number (a column of true/false is "
        "read as 1 and 0 with pyarrow, which is not installed: pip install \"gpunn[data]\"); OUT not written")
    path.write_text("1.5,oops\n2.5,0\n")  # another word: as before
    assert main(["predict", model, str(path), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"gpunn predict: error: IN {path} line 1: value 2 of the line: "
                                                        "'oops' is not a number; OUT not written")


def test_predict_of_a_column_that_is_not_numeric_names_the_feature_columns_it_reads(tmp_path, capsys):
    """Streamed, a Parquet column of strings was refused with "every feature and target column must hold numbers",
    though gpunn predict reads no targets; a training source's refusal still names both."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}), tmp_path / "x.parquet")
    path = str(tmp_path / "x.parquet")
    assert main(["predict", model, path, str(tmp_path / "p.npy")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert err == [f"gpunn predict: error: IN {path}: column 'b' is string, not numeric; every feature column must hold "
                   "numbers; OUT not written"]  # (predict's features are the model's: no word of training's default)
    with pytest.raises(gpunn.data.DataError, match="column 'b' is string, not numeric; every feature and target "
                                                   "column must hold numbers$"):  # no other feature: no hint
        gpunn.data.parquet(path, target="a")
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"], "c": [3.0, 4.0]}), path)
    with pytest.raises(gpunn.data.DataError, match="column 'b' is string, not numeric; every feature and target "
                                                   "column must hold numbers; with no features named, every column "
                                                   r"but the target is one: if 'b' is not, .* \(--features c, "):
        gpunn.data.parquet(path, target="a")
    with pytest.raises(gpunn.data.DataError, match="column 'b' is string, not numeric; every feature and target "
                                                   "column must hold numbers$"):  # named: no word of the default
        gpunn.data.parquet(path, target="a", features=["b", "c"])


def test_a_parquet_decimal_column_is_read_as_numbers_for_training_and_predict(tmp_path):
    """A decimal column (SQL NUMERIC, Spark's DecimalType: prices, amounts) was refused as "column 'a' is
    decimal128(10, 2), not numeric"; it holds numbers, read as float64 as every table column is."""
    pytest.importorskip("pyarrow")
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    a = [Decimal("1.25"), Decimal("-2.50"), Decimal("3.75"), Decimal("0.10")] * 10
    b = [1.0, 2.0, 3.0, 4.0] * 10
    as_decimal = {"a": pa.array(a, pa.decimal128(10, 2)), "b": b, "y": pa.array(a, pa.decimal256(40, 2))}
    pq.write_table(pa.table(as_decimal), tmp_path / "d.parquet")
    pq.write_table(pa.table({"a": [float(v) for v in a], "b": b, "y": [float(v) for v in a]}), tmp_path / "f.parquet")
    model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
    with read_by_position():  # (an unfitted model: the tables' columns in order)
        scores = [model.evaluate(gpunn.data.parquet(tmp_path / name, target="y")) for name in ("d.parquet", "f.parquet")]
    assert scores[0] == scores[1]
    gpunn.save(tmp_path / "m.npz", model)
    pq.write_table(pa.table({"a": as_decimal["a"], "b": b}), tmp_path / "in.parquet")
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.parquet"), str(tmp_path / "p.npy")]) == 0
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"),
                                     model.predict(numpy.array([[float(v) for v in a], b]).T))
    pq.write_table(pa.table({"a": pa.array([None] + a[1:], pa.decimal128(10, 2)), "b": b, "y": b}), tmp_path / "n.parquet")
    with pytest.raises(gpunn.data.DataError, match="n.parquet row 0: column 'a': a null"), read_by_position():
        model.evaluate(gpunn.data.parquet(tmp_path / "n.parquet", target="y"))


def test_a_text_column_taken_as_a_feature_by_default_says_how_to_leave_it_out(tmp_path, capsys):
    """A table with an id or a name beside the numbers: without --features every column but the target is a
    feature, and the refusal ("line 2: column 'name': 'bob' is not a number") said nothing of --features."""
    pytest.importorskip("pyarrow")
    (tmp_path / "ids.csv").write_text("name,a,b,y\nbob,1,2,3\ncat,3,4,5\n")
    assert main(["train", "--data", str(tmp_path / "ids.csv"), "--target", "y", *SMALL]) == 2
    assert ("ids.csv line 2: column 'name': 'bob' is not a number; with no features named, every column but the "
            "target is one: if 'name' is not, name those that are (--features a,b, features=[...])\n"
            in capsys.readouterr().err)


def test_predict_of_a_table_with_a_text_column_and_more_numbers_than_features_says_to_pick_them(tmp_path, capsys):
    """A model trained on unnamed columns (X.npy) given the CSV file they came from, an id, a name and the target
    beside its features: the refusal said only "line 2: column 'name': 'x' is not a number" (its hint was for as
    many columns of numbers as the model's features), and the next try, without the name, "3 feature columns ...,
    the model takes 2". It names the columns of numbers to pick the model's from now, read whole (CSV) and streamed
    (Parquet) alike, and --features picks them as it says."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    (tmp_path / "t.csv").write_text("id,name,a,b,y\r\n1,bob,1,2,3\r\n2,cat,3,4,5\r\n\r\n")
    pq.write_table(pa.table({"id": [1, 2], "name": ["bob", "cat"], "a": [1.0, 3.0], "b": [2.0, 4.0],
                             "y": [3.0, 5.0]}), tmp_path / "t.parquet")
    hint = ("; with no features named, every column is one: if 'name' is not, name the model's 2 among the columns "
            "of numbers (id, a, b, y) with --features, in the order it was trained on; OUT not written\n")
    for name, refused in (("t.csv", " line 2: column 'name': 'bob' is not a number"),
                          ("t.parquet", ": column 'name' is string, not numeric; every feature column must hold "
                                        "numbers")):
        path = str(tmp_path / name)
        assert main(["predict", model, path, str(tmp_path / "p.npy")]) == 2
        assert capsys.readouterr().err == f"gpunn predict: error: IN {path}{refused}{hint}"
        assert main(["predict", model, path, str(tmp_path / "p.npy"), "--features", "a,b"]) == 0
        numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"),
                                         gpunn.load(model).predict(numpy.array([[1.0, 2.0], [3.0, 4.0]])))


def test_predict_features_naming_the_models_own_columns_in_another_order_is_refused(tmp_path, capsys):
    """--features maps a table's columns to the model's features in order (for a table whose names differ). A new
    user's --features f1,f0 for a model trained on f0, f1, meant as "these columns", read f1 as the model's f0 and
    predicted without a word. Refused now, saying to leave --features out (the model picks its own by name) or give
    them in its order; in its order, or left out, they predict as the table's columns picked by name."""
    pytest.importorskip("pyarrow")
    pandas = pytest.importorskip("pandas")
    X = numpy.random.default_rng(0).standard_normal((50, 2))
    (tmp_path / "t.csv").write_text("f0,f1,y\n" + "".join(f"{a},{b},{a - b}\n" for a, b in X))
    with gpunn.data.csv(tmp_path / "t.csv", target="y") as source:
        model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
        model.fit(source, epochs=1, verbose=False)
    path, out = str(tmp_path / "m.npz"), str(tmp_path / "p.npy")
    gpunn.save(path, model)
    assert main(["predict", path, str(tmp_path / "t.csv"), out, "--features", "f1,f0"]) == 2
    assert capsys.readouterr().err == (
        "gpunn predict: error: --features f1,f0 names the model's columns in another order than it was trained on "
        "(f0, f1): --features gives the table's columns for the model's features in order, so f1 would be read as "
        "f0; leave --features out (the model picks its columns by name), or give them in its order\n")
    assert not (tmp_path / "p.npy").exists()
    expected = model.predict(pandas.DataFrame(X, columns=["f0", "f1"]))
    for more in (["--features", "f0,f1"], []):
        assert main(["predict", path, str(tmp_path / "t.csv"), out, *more]) == 0
        numpy.testing.assert_array_equal(numpy.load(out), expected)


def test_predict_names_the_text_column_to_leave_out_wherever_it_stands(tmp_path, capsys):
    """The --features hint of a CSV file read whole names its column of text, here between two of numbers, and the
    columns to name instead."""
    pytest.importorskip("pyarrow")
    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    (tmp_path / "ids.csv").write_text("a,name,b\n1,bob,2\n3,cat,4\n")
    assert main(["predict", model, str(tmp_path / "ids.csv"), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err.endswith("line 2: column 'name': 'bob' is not a number; with no features named, "
                                           "every column is one: if 'name' is not, name those that are "
                                           "(--features a,b); OUT not written\n")


def test_predict_of_a_text_column_read_as_a_feature_by_default_says_how_to_leave_it_out(tmp_path, capsys):
    """A model that knows no column names takes every column of a table: an id beside the model's features is
    refused, and the refusal says to name the others with --features, streamed (Parquet) and read whole (CSV)
    alike, where they are the model's count; a stray value in a column of numbers, or too few other columns, keep
    the plain refusal. (The hint was given to training's sources only: its branch for no targets never ran.)"""
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    pq.write_table(pa.table({"name": ["bob", "cat"], "a": [1.0, 3.0], "b": [2.0, 4.0]}), tmp_path / "ids.parquet")
    (tmp_path / "ids.csv").write_text("name,a,b\nbob,1,2\ncat,3,4\n")
    hint = ("; with no features named, every column is one: if 'name' is not, name those that are (--features a,b); "
            "OUT not written")
    for name, refused in (("ids.parquet", "column 'name' is string, not numeric; every feature column must hold "
                                          "numbers"),
                          ("ids.csv", "line 2: column 'name': 'bob' is not a number")):
        path = str(tmp_path / name)
        assert main(["predict", model, path, str(tmp_path / "p.npy")]) == 2
        sep = ": " if name.endswith(".parquet") else " "
        assert capsys.readouterr().err == f"gpunn predict: error: IN {path}{sep}{refused}{hint}\n"
        assert main(["predict", model, path, str(tmp_path / "p.npy"), "--features", "a,b"]) == 0  # as it says
        assert numpy.load(tmp_path / "p.npy").shape == (2, 1)
    (tmp_path / "ids.csv").write_text("name,a,b\n1,1,2\noops,3,4\n")  # a stray value: no word of the default
    assert main(["predict", model, str(tmp_path / "ids.csv"), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err.endswith("line 3: column 'name': 'oops' is not a number; OUT not written\n")
    pq.write_table(pa.table({"name": ["bob", "cat"], "a": [1.0, 3.0]}), tmp_path / "ids.parquet")
    assert main(["predict", model, str(tmp_path / "ids.parquet"), str(tmp_path / "p.npy")]) == 2
    assert capsys.readouterr().err.endswith("every feature column must hold numbers; OUT not written\n")  # 'a' alone is not the model's 2


def test_npy_data_without_targets_and_unknown_files_are_errors(pair, capsys):
    tmp_path, _, _ = pair
    x = str(tmp_path / "X.npy")
    assert main(["train", "--data", x, *SMALL]) == 2
    assert capsys.readouterr().err == f"gpunn train: error: --data {x} needs --targets Y.npy\n"
    # --target, a table's columns, for --targets: it said "needs --targets Y.npy" as if none had been given
    assert main(["train", "--data", x, "--target", str(tmp_path / "Y.npy"), *SMALL]) == 2
    assert capsys.readouterr().err == (f"gpunn train: error: --data {x} needs --targets Y.npy; --target names a "
                                       f"Parquet or CSV table's columns: did you mean --targets {tmp_path / 'Y.npy'}?\n")
    assert main(["train", "--data", x, "--target", "y", *SMALL]) == 2
    assert capsys.readouterr().err.endswith("needs --targets Y.npy; --target names a Parquet or CSV table's columns\n")
    (tmp_path / "X.txt").write_text("1,2\n")
    assert main(["train", "--data", str(tmp_path / "X.txt"), *SMALL]) == 2
    assert "unknown file type" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["runs2", "X.npz", "t.cvs", "t.csv.gz"])
def test_a_data_path_that_does_not_exist_is_said_missing_not_of_an_unknown_type(tmp_path, capsys, name):
    """--data runs2 (a Parquet directory's name mistyped) or t.cvs said "unknown file type; use .npy (with --targets),
    .parquet or .csv", as if a directory were not taken, where the path is not there at all: gpunn predict's IN
    says so first, and so does --data now."""
    path = str(tmp_path / name)
    for command in ("train", "sweep"):
        assert main([command, "--data", path, "--target", "y", *SMALL]) == 2
        assert capsys.readouterr().err == f"gpunn {command}: error: --data {path}: no such file or directory\n"


def test_targets_naming_the_data_file_is_noted(pair, capsys):
    """--targets X.npy for --data X.npy (a slip of the keyboard) trained the model to give back its inputs, to a
    held-out r2 near 1, and said so as of any run. An autoencoder may mean it: a note, not a refusal."""
    tmp_path, _, _ = pair
    x = str(tmp_path / "X.npy")
    assert main(["train", "--data", x, "--targets", x, *SMALL]) == 0
    assert capsys.readouterr().err == (f"note: --targets {x} is the --data file: the model learns to give back its "
                                       "inputs (give the targets' own file, if that was not meant)\n")
    assert main(["train", "--data", x, "--targets", str(tmp_path / "Y.npy"), *SMALL]) == 0
    assert "note:" not in capsys.readouterr().err


def test_predict_reads_in_by_its_name_as_it_writes_out_and_as_train_reads_data(tmp_path, capsys):
    """IN of another name was read whole by its bytes (x.dat holding an .npy array was predicted from; t.txt, CSV
    text with a header, by position, where t.csv's columns are picked by the model's names), but streamed by its
    name ("x.dat: unknown file type" for OUT .parquet): one rule now, the name, as for OUT and train --data."""
    import gzip

    X = numpy.random.default_rng(0).standard_normal((6, 3))
    model = tmp_path / "m.npz"
    gpunn.save(model, gpunn.MLP([3, 1], device="cpu", seed=0))
    numpy.save(tmp_path / "x.npy", X)
    (tmp_path / "x.npy").rename(tmp_path / "x.dat")
    (tmp_path / "t.txt").write_text("a,b,c\n" + "".join(",".join(map(str, row)) + "\n" for row in X))
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress((tmp_path / "t.txt").read_bytes()))
    expected = ": unknown file type; the name must end in .npy, .csv, .parquet, .parq or .pq, as it says how the " \
               "file is read (or be a directory of Parquet files)\n"
    gpunn.save(tmp_path / "twin.npz", gpunn.MLP([3, 1], device="cpu", seed=0))
    for name, said in [("x.dat", expected), ("t.txt", expected),
                       ("twin.npz", " is an .npz/zip archive (a checkpoint?), not one array; save the inputs with "
                                    "numpy.save(path, X)\n"),
                       ("t.csv.gz", " is compressed (.gz): decompress it first (gpunn reads .npy, .csv and .parquet "
                                    "files uncompressed)\n")]:
        for out in ("o.npy", "o.parquet"):
            assert main(["predict", str(model), str(tmp_path / name), str(tmp_path / out)]) == 2, name
            assert capsys.readouterr().err == f"gpunn predict: error: IN {tmp_path / name}{said}"
            assert not (tmp_path / out).exists()
    (tmp_path / "x.dat").rename(tmp_path / "x.npy")
    assert main(["predict", str(model), str(tmp_path / "x.npy"), str(tmp_path / "o.npy")]) == 0


def test_a_tab_separated_file_by_its_name_is_refused_saying_how_python_reads_it(tmp_path, capsys):
    """--data t.tsv (and predict's IN t.tsv) said only "unknown file type; use .npy, .parquet or .csv", where a
    tab-delimited .csv is told to pass delimiter='\\t' to gpunn.data.csv. The Python the refusal shows runs here as
    shown: the training source, and the predictions of a model trained on it."""
    import pandas

    from gpunn.cli.data import TSV_SOURCE
    from gpunn.cli.predict import TSV_PREDICTED

    X = numpy.random.default_rng(0).standard_normal((40, 2))
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\ty\n" + "".join(f"{a}\t{b}\t{a - b}\n" for a, b in X))
    hint = ("a tab-separated file is read as CSV with the tab delimiter in Python, {}, or save it comma-separated "
            "as .csv (gpunn's commands read commas only)\n")
    for command in ("train", "sweep"):
        assert main([command, "--data", str(tsv), "--target", "y", *SMALL]) == 2
        assert capsys.readouterr().err == (f"gpunn {command}: error: --data {tsv}: unknown file type; use .npy (with "
                                           f"--targets), .parquet or .csv; {hint.format(TSV_SOURCE)}")
    source = eval(TSV_SOURCE, {"gpunn": gpunn, "path": str(tsv), "target": "y"})
    with source:
        model = gpunn.MLP([2, 4, 1], device="cpu", seed=0)
        assert model.fit(source, epochs=1, verbose=False)["epoch"] == [1] and model.data_columns["features"] == ["a", "b"]
    gpunn.save(tmp_path / "m.npz", model)
    assert main(["predict", str(tmp_path / "m.npz"), str(tsv), str(tmp_path / "o.csv")]) == 2
    assert capsys.readouterr().err.endswith(f"(or be a directory of Parquet files); {hint.format(TSV_PREDICTED)}")
    predicted = eval(TSV_PREDICTED, {"model": model, "pandas": pandas, "path": str(tsv)})
    numpy.testing.assert_array_equal(predicted, model.predict(pandas.DataFrame(X, columns=["a", "b"])))  # (by name)
    (tmp_path / "X.txt").write_text("1,2\n")
    assert main(["train", "--data", str(tmp_path / "X.txt"), *SMALL]) == 2
    assert capsys.readouterr().err.endswith("unknown file type; use .npy (with --targets), .parquet or .csv\n")


def test_predict_file_refuses_a_tab_separated_name_saying_how_python_reads_or_writes_one(tmp_path):
    """gpunn.data.files.predict_file (gpunn predict's reader, from Python) said only "unknown file type; use .npy,
    .parquet or .csv" for t.tsv, in or out, where the command's refusal says what to do. The Python it shows runs."""
    import pandas

    from gpunn.data import DataError
    from gpunn.data.files import TSV_IN_PYTHON, predict_file

    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1\t2\n3\t4\n")
    numpy.save(tmp_path / "x.npy", numpy.ones((3, 2)))
    with pytest.raises(DataError, match=re.escape(f"t.tsv: unknown file type; use .npy, .parquet or .csv; a "
                                                  f"tab-separated file is read as CSV with the tab delimiter in "
                                                  f"Python, {TSV_IN_PYTHON}, or save it comma-separated as .csv")):
        predict_file(model, tsv, tmp_path / "o.npy")
    with pytest.raises(DataError, match=r"T\.TSV: unknown file type; .*; a tab-separated file is read as CSV"):
        predict_file(model, tmp_path / "T.TSV", tmp_path / "o.npy")  # (the name in any case, as .CSV is read)
    with pytest.raises(DataError, match=re.escape(f"gpunn writes CSV with commas only: write {tmp_path}/o.csv, then "
                                                  f"tr , '\\t' < {tmp_path}/o.csv > {tmp_path}/o.tsv makes it ")):
        predict_file(model, tmp_path / "x.npy", tmp_path / "o.tsv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tsv", "x.npy"]
    predictions = TSV_IN_PYTHON.split(" for its predictions")[0]
    with pytest.warns(UserWarning, match="read by position"):  # (a model fitted without names: by position)
        predicted = eval(predictions, {"model": model, "pandas": pandas, "path": str(tsv)})
    numpy.testing.assert_array_equal(predicted, model.predict(numpy.array([[1.0, 2], [3, 4]])))
    with pytest.raises(DataError, match=r"o\.txt: unknown file type; use \.npy, \.parquet or \.csv$"):
        predict_file(model, tmp_path / "x.npy", tmp_path / "o.txt")


def test_a_tab_separated_out_is_refused_saying_what_is_written_and_how_to_make_one(tmp_path, capsys):
    """predict's OUT o.tsv said only "the name must end in .npy, .csv, .parquet, .parq or .pq", no word that gpunn
    writes commas only. The command the refusal shows makes the tab-separated file, every value as the CSV wrote it,
    the header's names too (one holding a comma keeps its column)."""
    import csv
    import subprocess

    X = numpy.random.default_rng(0).standard_normal((40, 2))
    model = gpunn.MLP([2, 4, 2], device="cpu", seed=0)
    model.fit(X, numpy.column_stack([X[:, 0], X[:, 1]]), epochs=1, verbose=False)
    model.data_columns = {"features": ["a", "b"], "targets": ["y", "z,1"]}
    gpunn.save(tmp_path / "m.npz", model)
    numpy.save(tmp_path / "X.npy", X)
    tsv, out = tmp_path / "o.tsv", tmp_path / "o.csv"
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tsv)]) == 2
    shown = f"tr , '\\t' < {out} > {tsv}"
    assert capsys.readouterr().err == (f"gpunn predict: error: OUT {tsv}: the name must end in .npy, .csv, .parquet, "
                                       f".parq or .pq; gpunn writes CSV with commas only: write {out}, then {shown} "
                                       "makes it tab-separated\n")
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(out)]) == 0
    subprocess.run(shown, shell=True, check=True)
    with open(out, newline="") as fh, open(tsv, newline="") as tabbed:
        rows, tabbed_rows = list(csv.reader(fh)), list(csv.reader(tabbed, delimiter="\t"))
    assert tabbed_rows[0] == ["y", "z\t1"] and tabbed_rows[1:] == rows[1:] and len(rows) == 41
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tmp_path / "o.txt")]) == 2
    assert capsys.readouterr().err.endswith("the name must end in .npy, .csv, .parquet, .parq or .pq\n")


def test_rows_that_would_not_fit_stream_and_say_so(capsys, monkeypatch):
    assert main(["train", "--rows", "3000", "--features", "4", *SMALL]) == 0
    # in MiB under a GiB (it read "0.00 GiB"), and saying what it counts
    assert re.search(r"3,000 rows materialized on cpu \(\d+\.\d MiB with their shuffled copy and the model",
                     capsys.readouterr().out)
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 2**20)  # nearly full: the model fits, not the rows
    assert main(["train", "--rows", "140000", "--features", "4", *SMALL]) == 0
    out, err = capsys.readouterr()
    # make's chunks held out 65,536 of 140,000 rows (47%) where 10% was asked: now pieces of 8,192 rows
    assert ("data: streaming teacher from cpu, 123,616 training rows, 16,384 validation rows (2 of 17 chunks: 16 of "
            "8,192 rows and one of 8,928)") in out
    assert "would not fit comfortably" in out
    assert err == ""


def test_a_window_that_stream_auto_leaves_unused_is_noted_on_the_data_line(tmp_path, capsys, monkeypatch):
    """--stream auto holds these rows in memory, where --window does nothing (they are shuffled whole): the data:
    line says so (it said nothing), from the command line or a --config file; a streamed run uses it, and the
    default says nothing."""
    note = "--window 8 unused: rows in memory are shuffled whole every epoch (it applies with --stream on or --data)"
    small = with_options(["--rows", "3000", "--features", "4", *SMALL], "--epochs", "1")
    assert main(["train", *small, "--window", "8"]) == 0
    assert re.search(r"\n(data: 3,000 rows materialized on cpu [^\n]*)\n", capsys.readouterr().out)[1].endswith(
        f"); {note}")
    (tmp_path / "run.toml").write_text("[train]\nwindow = 8\n")
    assert main(["train", *small, "--config", str(tmp_path / "run.toml")]) == 0
    assert note in capsys.readouterr().out
    assert main(["train", *small]) == 0
    assert "unused" not in capsys.readouterr().out
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 2**20)  # streamed: --window is used
    assert main(["train", *with_options(small, "--rows", "140000", "--window", "8")]) == 0
    out = capsys.readouterr().out
    assert "data: streaming teacher" in out and "unused" not in out


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_config_files_missing_data_path_is_named_by_its_key_and_where_it_was_read_from(pair, capsys, monkeypatch,
                                                                                         command):
    """A config file's relative data = "X.npy" is read from the current directory, not the file's: run from another,
    it said "X.npy: no such file (inputs)", naming neither the file nor that."""
    from gpunn import cli

    tmp_path = pair[0]
    (tmp_path / "sub").mkdir()
    (tmp_path / "run.toml").write_text('data = "X.npy"\ntargets = "Y.npy"\nhidden = [4]\nepochs = 1\nquiet = true\n')
    monkeypatch.chdir(tmp_path / "sub")
    assert cli.main([command, "--config", "../run.toml"]) == 2
    assert capsys.readouterr().err == (
        f'gpunn {command}: error: ../run.toml: data = "X.npy": no such file or directory in {tmp_path / "sub"}, the '
        "directory the command runs in: a config file's paths are read from there, as the command line's; give "
        "--data PATH, or the path in the file from there\n")
    assert cli.main([command, "--config", "../run.toml", "--data", "../X.npy", "--device", "cpu"]) == 2
    assert 'targets = "Y.npy": no such file or directory' in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert cli.main([command, "--config", "run.toml", "--device", "cpu"]) == 0


def test_a_config_files_data_that_is_a_directory_is_there_and_read_as_one(tmp_path, capsys, monkeypatch):
    """data = "tables", a directory (of Parquet files), is there: it is read and refused for what it holds, not
    said to be no such file."""
    from gpunn import cli

    (tmp_path / "tables").mkdir()
    (tmp_path / "run.toml").write_text('data = "tables"\nepochs = 1\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--config", "run.toml", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "gpunn train: error: tables: a directory with no .parquet files (it is empty)\n"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_window_help_says_a_small_file_is_shuffled_whole_as_it_is(pair, capsys, command):
    """--window's help said "chunks whose rows are shuffled together (default: 16)": a user giving --window 2 to a
    file of a few thousand rows (32 small chunks) saw nothing change, as README's data section says, and the help
    did not. --window 1 and 16 give such a file one window, its every chunk."""
    from gpunn import cli

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert ("a small file (under about 2 million rows, or 128 MiB of CSV)" + (" or a stream" if command == "train"
            else "") + " of at most WINDOW x 65,536 rows is shuffled whole") in " ".join(capsys.readouterr().out.split())
    tmp_path = pair[0]
    for window in (1, 16):
        source = gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), window=window)
        assert source.window == len(source.chunk_sizes) > window


def test_a_sweeps_window_from_a_config_file_is_noted_unused_for_a_synthetic_task(tmp_path, capsys):
    (tmp_path / "grid.toml").write_text("[sweep]\nwindow = 8\n")
    assert main(["sweep", "--config", str(tmp_path / "grid.toml"), "--rows", "400", "--features", "4", "--hidden", "8",
                 "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert ("validation rows; --window 8 unused: rows in memory are shuffled whole every epoch (it applies with "
            "--data)") in out
    assert "window" not in err  # said once, on the data: line, not again as a key of the file (audit35b's T14)


def test_standardize_says_its_statistics_pass_before_it_runs_and_shows_its_progress(pair, capsys, monkeypatch):
    """The pass over the training rows ran inside fit, before its first batch and its bar: a 3 GB X.npy said nothing
    for minutes after the model: line, and a stream of 10^10 rows would on a laptop's CPU for an hour. Its statistics
    are the source's own (those of the training chunks), as fit made them."""
    from gpunn.training.callbacks import PassProgress

    monkeypatch.setattr(PassProgress, "line_every_s", 0.0)  # a line per chunk read, rather than every minute
    tmp_path, _, _ = pair
    files = [str(tmp_path / "X.npy"), str(tmp_path / "Y.npy")]
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", files[0], "--targets", files[1], "--standardize", "--save", model_path,
                 "--hidden", "8", "--batch-size", "500", "--epochs", "1", "--device", "cpu", "--progress", "lines"]) == 0
    captured = capsys.readouterr()
    source = gpunn.data.npy(*files, validation_fraction=0.1, standardize=True).bind("cpu", "float32")
    out = captured.out.splitlines()
    said = out.index(f"standardize: each column's mean and spread, from one pass over the {source.rows:,} training "
                     "rows before the first epoch")
    assert re.fullmatch(rf"standardize: statistics of {source.rows:,} rows in \d+\.\ds", out[said + 1]), out
    assert out[said - 1].startswith("model: ") and out[said + 2].startswith("held-out (standardized targets): ")
    shown = [line for line in captured.err.splitlines() if line.startswith("standardize: ")]
    assert len(shown) == len(source.train_chunks) and shown[-1].startswith(f"standardize: {source.rows:,}/{source.rows:,} rows, ")
    assert shown[-1].endswith(" rows/s, left 00:00")
    saved = gpunn.load(model_path, device="cpu").standardizer
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        numpy.testing.assert_array_equal(getattr(saved, name), getattr(source.standardizer, name))
    assert main(["train", "--rows", "2000", "--features", "4", "--stream", "on", "--standardize", *SMALL]) == 0
    captured = capsys.readouterr()
    assert "standardize: statistics of " in captured.out and "standardize" not in captured.err  # --quiet: no progress
    assert main(["sweep", "--data", files[0], "--targets", files[1], "--standardize", "--hidden", "4", "--epochs", "1",
                 "--device", "cpu", "--quiet"]) == 0
    assert f"standardize: statistics of {source.rows:,} rows in " in capsys.readouterr().out


def test_a_statistics_pass_of_hours_is_timed_in_days_and_hours_as_the_progress_says_it(monkeypatch, capsys):
    """--standardize's closing line gave a pass of a day as "90061.0s", where the progress bar and lines say "1d 01h"."""
    import time

    from gpunn.cli.data import standardize_first

    clock = iter([0.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock, 90061.0))  # the pass's start, then its end
    source = gpunn.data.synthetic("linear", rows=3000, n_features=3, standardize=True)
    standardize_first(source, "cpu", "float32", verbose=False)
    assert capsys.readouterr().out.splitlines()[-1] == f"standardize: statistics of {source.rows:,} rows in 1d 01h"
    assert source.standardizer is not None


def test_a_run_on_files_resumes_from_its_checkpoint_bit_for_bit(pair):
    tmp_path, _, _ = pair
    files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--standardize"]
    run = ["--hidden", "8", "--batch-size", "500", "--device", "cpu", "--quiet", "--seed", "3"]
    straight, first = str(tmp_path / "straight.npz"), str(tmp_path / "first.npz")
    assert main(["train", *files, *run, "--epochs", "3", "--save", straight]) == 0
    assert main(["train", *files, *run, "--epochs", "1", "--save", first]) == 0
    assert main(["train", "--resume", first, "--epochs", "3", "--quiet"]) == 0  # --data etc. from first.npz.toml
    a, b = gpunn.load_checkpoint(straight, device="cpu"), gpunn.load_checkpoint(first, device="cpu")
    assert b.epoch == 3
    numpy.testing.assert_array_equal(a.model.params, b.model.params)


def test_predict_picks_a_csv_tables_columns_by_the_models_feature_names(tmp_path, capsys):
    """A model trained on named columns reads a CSV with a header by name, not by position: a table
    holding the target too, or its columns in another order, gives the same predictions."""
    pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 3000, 3, seed=2, device="cpu")
    table = numpy.column_stack([X, Y[:, 0]])
    numpy.savetxt(tmp_path / "t.csv", table, delimiter=",", header="a,b,c,price", comments="", fmt="%.17g")
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "price", "--save", model_path, *SMALL]) == 0
    model = gpunn.load(model_path, device="cpu")
    expected = by_position(model, X[:50])[:, 0]
    numpy.savetxt(tmp_path / "with_target.csv", table[:50], delimiter=",", header="a,b,c,price", comments="",
                  fmt="%.17g")
    numpy.savetxt(tmp_path / "reordered.csv", table[:50, [2, 0, 1]], delimiter=",", header="c,a,b", comments="",
                  fmt="%.17g")
    for name in ("with_target.csv", "reordered.csv"):
        out = tmp_path / f"p-{name}"
        assert main(["predict", model_path, str(tmp_path / name), str(out), "--device", "cpu"]) == 0, \
            capsys.readouterr().err
        lines = out.read_text().splitlines()
        assert lines[0] == '"price"'
        numpy.testing.assert_allclose(numpy.array(lines[1:], float), expected, rtol=1e-6)
    numpy.savetxt(tmp_path / "plain.csv", X[:50], delimiter=",", fmt="%.17g")  # no header: by position, as before
    assert main(["predict", model_path, str(tmp_path / "plain.csv"), str(tmp_path / "p.npy"), "--device", "cpu"]) == 0
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy")[:, 0], expected)


def test_predict_on_a_table_with_no_rows_is_an_error_and_writes_nothing(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    model = gpunn.MLP([2, 4, 1], seed=0, device="cpu")
    model.data_columns = {"features": ["a", "b"], "targets": ["y"]}
    gpunn.save(tmp_path / "m.npz", model)
    (tmp_path / "header.csv").write_text("a,b\n")
    pq.write_table(pa.table({"a": pa.array([], pa.float64()), "b": pa.array([], pa.float64())}),
                   tmp_path / "empty.parquet")
    for name in ("header.csv", "empty.parquet"):
        out = tmp_path / f"p-{name}"
        assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / name), str(out)]) == 2
        assert f"{name}: no rows to predict" in capsys.readouterr().err
        assert not out.exists()


@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
def test_a_small_file_holds_out_about_a_tenth_of_its_rows(tmp_path, capsys, kind):
    """--data holds out 10% of the chunks: a file of a few thousand rows (one CSV block, one Parquet
    row group) is cut into enough chunks for that to be about a tenth of its rows, not none or a quarter."""
    if kind != "npy":
        pytest.importorskip("pyarrow")
    X, Y = datasets.make("linear", 4000, 3, seed=3, device="cpu")
    if kind == "npy":
        numpy.save(tmp_path / "X.npy", X)
        numpy.save(tmp_path / "Y.npy", Y)
        files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    elif kind == "csv":
        numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y]), delimiter=",", header="a,b,c,y", comments="")
        files = ["--data", str(tmp_path / "t.csv"), "--target", "y"]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": Y[:, 0]}), tmp_path / "t.parquet")
        files = ["--data", str(tmp_path / "t.parquet"), "--target", "y"]
    assert main(["train", *files, *SMALL]) == 0
    out = capsys.readouterr().out
    found = re.search(r"([\d,]+) training rows in \d+ chunks, ([\d,]+) validation rows", out)
    train, held = (int(n.replace(",", "")) for n in found.groups())
    assert train + held == 4000 and 300 <= held <= 500, out
    assert "held-out: mse nan" not in out


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_a_file_of_one_row_is_refused_as_one_whose_held_out_tenth_is_one_row(tmp_path, capsys, command, kind):
    """A 1-row file is one chunk, none held out: train trained it ('held-out: none', 'throughput: 0 samples/s')
    where 2 rows (1 held out) were refused for R²; sweep said a sweep needs two chunks."""
    if kind == "npy":
        numpy.save(tmp_path / "X.npy", numpy.ones((1, 2)))
        numpy.save(tmp_path / "Y.npy", numpy.ones((1, 1)))
        files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    else:
        pytest.importorskip("pyarrow")
        (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n")
        files = ["--data", str(tmp_path / "t.csv"), "--target", "y"]
    assert main([command, *files, *SMALL]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gpunn {command}: error: --data {files[1]}: 1 row in one chunk, none of which can be held out for validation, and "
        "R² needs 2: use a file with more rows (20 at least)"]


def test_a_file_of_two_rows_is_cut_in_two_chunks_and_refused_for_its_one_held_out_row(tmp_path, capsys):
    """Two chunks are enough to hold one out (audit35b's D17: only three were, and two rows were refused as "2 rows in
    one chunk")."""
    numpy.save(tmp_path / "X.npy", numpy.ones((2, 2)))
    numpy.save(tmp_path / "Y.npy", numpy.ones((2, 1)))
    assert main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), *SMALL]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gpunn train: error: --data {tmp_path / 'X.npy'}: the tenth of its chunks held out for validation is 1 row of "
        "2, and R² needs 2: use a file with more rows (20 at least)"]


def test_a_csv_file_too_small_to_hold_out_two_rows_is_refused_in_one_line_without_a_note(tmp_path, capsys):
    """The note that 1 held-out row of 3 is 33% of them (HeldOutShareWarning) came before the refusal."""
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9\n")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", *SMALL]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gpunn train: error: --data {tmp_path / 't.csv'}: the tenth of its chunks held out for validation is 1 row "
        "of 3, and R² needs 2: use a file with more rows (20 at least)"]


def test_a_run_saved_with_its_file_in_one_chunk_resumes_and_says_1_chunk(tmp_path, monkeypatch, capsys):
    """A small CSV file was one chunk of 1 KiB blocks (before they were cut smaller), none held out; its run resumes
    cut so, though a new run on a file of one chunk is refused. Its data line said '40 training rows in 1 chunks'."""
    pytest.importorskip("pyarrow")
    from gpunn.cli import data as data_cli
    from gpunn.data import csv_tables

    X, Y = datasets.make("linear", 40, 2, seed=1, device="cpu", dtype="float64")
    numpy.savetxt(tmp_path / "t.csv", numpy.hstack([X, Y]), delimiter=",", header="a,b,y", comments="", fmt="%.2f")
    run = ["--data", str(tmp_path / "t.csv"), "--target", "y", "--hidden", "4", "--epochs", "1", "--device", "cpu",
           "--quiet"]
    first = str(tmp_path / "first.npz")
    with monkeypatch.context() as m:  # as a run was saved before (the file is under 1 KiB)
        m.setattr(csv_tables, "default_chunk_rows", lambda size, largest: 1024)
        assert main(["train", *run]) == 2
        assert "40 rows in one chunk, none of which can be held out" in capsys.readouterr().err
        m.setattr(data_cli, "_check_held_out", lambda *args: None)
        assert main(["train", *run, "--save", first]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", first, "--epochs", "2"]) == 0
    assert "t.csv, 40 training rows in 1 chunk, 0 validation rows" in capsys.readouterr().out


def test_the_note_on_the_share_a_csv_file_holds_out_says_what_the_command_can_do(tmp_path, monkeypatch, capsys):
    """HeldOutShareWarning's advice is the Python arguments (block_size, validation_data): gpunn train --data has
    no option for them, nor for validation_fraction, which the note named. Python keeps its words."""
    pytest.importorskip("pyarrow")
    from gpunn.data import csv_tables

    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{2 * i},{3 * i}\n" for i in range(200)))  # 2,203 bytes
    run = ["train", "--data", str(path), "--target", "y", "--hidden", "4", "--epochs", "1", "--device", "cpu",
           "--quiet"]
    with monkeypatch.context() as m:  # 1 KiB blocks, as a file under 32 KiB was cut before: 3 chunks
        m.setattr(csv_tables, "default_chunk_rows", lambda size, largest: 1024)
        assert main([*run, "--save", str(tmp_path / "m.npz")]) == 0
    said = (f"note: --data {path}: the tenth of its chunks held out for validation is 1 of 3 whole chunks, 102 of 200 "
            "rows (51%)")
    held_out = [line for line in capsys.readouterr().err.splitlines() if "held-out r2" not in line]  # (y = 3i, raw)
    assert held_out == [f"{said}; for a share nearer a tenth, give the rows as an .npy pair (--data X.npy --targets "
                        "Y.npy), cut in chunks of equal rows"]
    assert main(["train", "--resume", str(tmp_path / "m.npz"), "--epochs", "2", "--quiet"]) == 0
    held_out = [line for line in capsys.readouterr().err.splitlines() if "held-out r2" not in line]
    assert held_out == [f"{said}, as the run was cut when it was saved"]
    with pytest.warns(gpunn.data.HeldOutShareWarning, match=r"validation_fraction=0.1 holds out whole chunks: 1 of 3, "
                      r"102 of 200 rows \(51%\); for a share nearer 0.1, use smaller chunks \(block_size, in bytes\) "
                      "or pass validation_data"):
        gpunn.data.csv(path, "y", block_size=1024, validation_fraction=0.1).close()


def test_a_resumed_run_cuts_its_file_as_it_was_cut_when_saved(pair, monkeypatch):
    """--resume rebuilds the source with the chunk size recorded in the checkpoint, so a run saved
    under another default chunking (older gpunn: 1,024-row chunks for small .npy files) still resumes."""
    from gpunn.data import sources

    tmp_path, _, _ = pair
    files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    run = ["--hidden", "8", "--batch-size", "500", "--device", "cpu", "--quiet"]
    straight, first = str(tmp_path / "straight.npz"), str(tmp_path / "first.npz")
    with monkeypatch.context() as m:
        m.setattr(sources, "default_chunk_rows", lambda rows, largest=65536: min(largest, max(1024, -(-rows // 32))))
        assert main(["train", *files, *run, "--epochs", "2", "--save", straight]) == 0
        assert main(["train", *files, *run, "--epochs", "1", "--save", first]) == 0
    assert main(["train", "--resume", first, "--epochs", "2", "--quiet"]) == 0
    numpy.testing.assert_array_equal(gpunn.load(first, device="cpu").params, gpunn.load(straight, device="cpu").params)


def test_a_resumed_csv_run_reads_its_file_in_the_blocks_it_was_saved_with(tmp_path, monkeypatch):
    """As an .npy file's chunk rows (above), a CSV file's block size is the recorded one, whatever the default."""
    pytest.importorskip("pyarrow")
    from gpunn.data import csv_tables

    X, Y = datasets.make("linear", 1500, 2, seed=1, device="cpu", dtype="float64")
    numpy.savetxt(tmp_path / "t.csv", numpy.hstack([X, Y]), delimiter=",", header="a,b,y", comments="", fmt="%.17g")
    run = ["--data", str(tmp_path / "t.csv"), "--target", "y", "--hidden", "4", "--batch-size", "100", "--device",
           "cpu", "--dtype", "float64", "--quiet"]
    straight, first = tmp_path / "straight.npz", tmp_path / "first.npz"
    with monkeypatch.context() as m:  # blocks of twice the default's bytes
        default = csv_tables.default_chunk_rows
        m.setattr(csv_tables, "default_chunk_rows", lambda size, largest: 2 * default(size, largest))
        assert main(["train", *run, "--epochs", "2", "--save", str(straight)]) == 0
        assert main(["train", *run, "--epochs", "1", "--save", str(first)]) == 0
    assert main(["train", "--resume", str(first), "--epochs", "2", "--quiet"]) == 0
    numpy.testing.assert_array_equal(gpunn.load(first, device="cpu").params, gpunn.load(straight, device="cpu").params)


def test_column_options_that_do_not_fit_the_data_file_are_refused(pair, tmp_path, capsys):
    """--features names, --target with an .npy pair, or --targets with a table would be ignored: refused."""
    tmp_path, _, _ = pair
    npy = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    assert main(["train", *npy, "--features", "a,b", *SMALL]) == 2
    assert "--features a,b names columns of a Parquet or CSV table" in capsys.readouterr().err
    assert main(["train", *npy, "--target", "y", *SMALL]) == 2
    assert "--target y names columns of a Parquet or CSV table" in capsys.readouterr().err
    (tmp_path / "t.csv").write_text("a,y\n1,2\n3,4\n")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--targets", str(tmp_path / "Y.npy"),
                 *SMALL]) == 2
    assert "--targets goes with --data X.npy" in capsys.readouterr().err


def test_a_run_on_files_resumes_from_another_directory_and_after_the_files_moved(pair, monkeypatch, capsys):
    tmp_path, _, Y = pair
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    run = ["--hidden", "8", "--batch-size", "500", "--device", "cpu", "--quiet"]
    assert main(["train", "--data", "X.npy", "--targets", "Y.npy", *run, "--epochs", "1", "--save", "run.npz"]) == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    # the resolved config beside the checkpoint names the files as absolute paths, as the checkpoint does
    assert main(["train", "--config", "../run.npz.toml", "--save", "again.npz"]) == 0, capsys.readouterr().err
    assert main(["train", "--resume", "../run.npz", "--epochs", "2"]) == 0, capsys.readouterr().err
    (tmp_path / "moved").mkdir()
    for name in ("X.npy", "Y.npy"):
        (tmp_path / name).rename(tmp_path / "moved" / name)
    assert main(["train", "--resume", "../run.npz", "--epochs", "3"]) == 2
    err = capsys.readouterr().err  # where the files are now is the option to give (sweep --resume says it too)
    assert "X.npy: no such file; if the run's files have moved, give --data (and --targets) where they are now" in err
    assert main(["train", "--resume", "../run.npz", "--epochs", "3", "--data", "../moved/X.npy",
                 "--targets", "../moved/Y.npy"]) == 0, capsys.readouterr().err
    assert gpunn.load_checkpoint(tmp_path / "run.npz").epoch == 3
    numpy.save(tmp_path / "moved" / "Y2.npy", numpy.zeros((12_000, 2)))  # other data: refused by what they hold
    assert main(["train", "--resume", "../run.npz", "--epochs", "4", "--data", "../moved/X.npy",
                 "--targets", "../moved/Y2.npy"]) == 2
    assert "was trained on another source: n_outputs was 1, now 2" in capsys.readouterr().err
    numpy.save(tmp_path / "moved" / "Y.npy", Y[:, 0] + 1)  # the run's file, other values of its shape: refused too
    assert main(["train", "--resume", "../run.npz", "--epochs", "4", "--data", "../moved/X.npy",
                 "--targets", "../moved/Y.npy"]) == 2
    assert f"{tmp_path / 'moved' / 'Y.npy'} have changed since the run read them" in capsys.readouterr().err


def test_a_resume_on_another_file_names_the_file_the_run_read(tmp_path, capsys):
    """A run on big.csv resumed with --data pq/ (the other copy of the data, in Parquet) was refused as "trained on
    another source: block_size was 912211, now None; chunk_rows was None, now 9375; chunks_at was 'byte offsets',
    now None; ...", its bookkeeping's words alone: the refusal names the file the run read now, which is the
    --data to give."""
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = numpy.random.default_rng(0).standard_normal((600, 2))
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n" + "".join(f"{a},{b},{a - b}\n" for a, b in X))
    (tmp_path / "parts").mkdir()
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": X[:, 0] - X[:, 1]}), tmp_path / "parts" / "p.parquet")
    run = str(tmp_path / "run.npz")
    assert main(["train", "--data", str(csv), "--target", "y", *SMALL, "--save", run]) == 0
    assert main(["train", "--resume", run, "--epochs", "3", "--data", str(tmp_path / "parts"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "was trained on another source: " in err and "kind was 'csv', now 'parquet'" in err
    assert err.endswith(f". Resume with the same data (the run read {csv}).\n")


def test_a_stream_whose_chunks_bookkeeping_would_not_fit_in_memory_is_refused_before_it_is_made(monkeypatch, capsys):
    """--rows 1e13 failed after 27 s with NumPy's "Unable to allocate 1.14 GiB for an array with shape (152587892,)"
    under a 4 GB limit (a laptop without one swaps), and 1e15 said "114. GiB" so: the stream's chunk tables, 70 bytes a
    chunk, are weighed against the host's free memory first."""
    from gpunn import data, preflight

    def not_made(*args, **kwargs):
        raise AssertionError("the stream was made")

    monkeypatch.setattr(preflight, "host_available_bytes", lambda: 512 << 20)
    monkeypatch.setattr(data, "synthetic", not_made)
    assert main(["train", "--rows", "1e12", "--stream", "on", "--device", "cpu", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "gpunn train: error: --rows 1,000,000,000,000 streams 15,258,790 chunks of 65,536 rows, whose bookkeeping alone "
        "(about 70 bytes a chunk, in host memory) needs about 1,018.6 MiB, and the host has 512.0 MiB free; stream at "
        "most about 500,000,000,000 rows here\n")  # (512 MiB / 70 bytes = 7,669,584 chunks of 65,536 rows)


def test_a_resumed_stream_holds_out_as_it_was_saved(tmp_path, monkeypatch, capsys):
    """A stream saved when its rows could not be cut to hold out a tenth (gpunn before pieces: none under 131,072
    rows) held out nothing; resumed now, it still holds out nothing, where a new stream of its rows would."""
    from gpunn.cli import data

    run = ["train", "--rows", "50000", "--features", "2", "--stream", "on", "--hidden", "2", "--batch-size", "5000",
           "--device", "cpu", "--dtype", "float64", "--quiet"]
    straight, first = tmp_path / "straight.npz", tmp_path / "first.npz"
    with monkeypatch.context() as m:  # as when no cut of these rows held out a tenth
        m.setattr(data, "piece_cut", lambda rows, fraction: (rows, 0))
        assert main([*run, "--epochs", "2", "--save", str(straight)]) == 0
        assert main([*run, "--epochs", "1", "--save", str(first)]) == 0
    assert "0 validation rows" in capsys.readouterr().out
    assert main([*run, "--epochs", "1"]) == 0
    assert "0 validation rows" not in capsys.readouterr().out  # a new stream of 50,000 rows holds out a tenth
    assert main(["train", "--resume", str(first), "--epochs", "2", "--quiet"]) == 0
    numpy.testing.assert_array_equal(gpunn.load(first, device="cpu").params, gpunn.load(straight, device="cpu").params)


def test_the_memory_an_in_memory_run_needs_counts_its_dtype(capsys):
    from gpunn import preflight

    assert main(["train", "--rows", "30000", "--features", "6", "--hidden", "16,16", "--epochs", "1", "--batch-size",
                 "64", "--device", "cpu", "--quiet", "--dtype", "float64"]) == 0
    need = preflight.size_text(sum(preflight.train_memory(30000, 6, 1, 8, [6, 16, 16, 1], 64).values()))
    assert f"data: 30,000 rows materialized on cpu ({need} with their shuffled copy" in capsys.readouterr().out
    assert need == "3.3 MiB"  # (in float32: 1.7 MiB)


def test_a_run_that_streamed_for_want_of_memory_resumes_streaming_where_the_rows_would_fit(tmp_path, monkeypatch,
                                                                                           capsys):
    from gpunn import preflight

    run = ["train", "--rows", "50000", "--features", "2", "--hidden", "2", "--batch-size", "5000", "--device", "cpu",
           "--dtype", "float64", "--quiet"]  # --stream auto
    straight, first = tmp_path / "straight.npz", tmp_path / "first.npz"
    with monkeypatch.context() as m:
        m.setattr(preflight, "host_available_bytes", lambda: 4_000_000)  # under twice the 2.6 MiB the rows need
        assert main([*run, "--epochs", "2", "--save", str(straight)]) == 0
        assert main([*run, "--epochs", "1", "--save", str(first)]) == 0
    assert "data: streaming teacher" in capsys.readouterr().out
    assert main(["train", "--resume", str(first), "--epochs", "2", "--quiet"]) == 0
    assert "data: streaming teacher" in capsys.readouterr().out
    numpy.testing.assert_array_equal(gpunn.load(first, device="cpu").params, gpunn.load(straight, device="cpu").params)


def test_a_stream_too_short_to_hold_out_a_chunk_says_so_and_refuses_early_stopping(capsys):
    run = ["train", "--rows", "2000", "--features", "4", "--stream", "on", *SMALL]
    assert main(run) == 0
    out = capsys.readouterr().out
    assert ("0 validation rows (a stream holds out whole pieces of 1,024 rows at least, which cannot hold out about 10% "
            "of 2,000 rows: none)") in out
    assert "held-out: none" in out and "nan" not in out
    assert main([*run, "--early-stopping"]) == 2
    assert "--early-stopping watches the held-out rows, and this run has none" in capsys.readouterr().err


@pytest.mark.parametrize("saved_in", ["pieces", "make's chunks"])
def test_a_stream_resumes_cut_as_it_was_saved(tmp_path, monkeypatch, capsys, saved_in):
    """A stream is now cut into pieces by default; a run saved before (in make's chunks, no chunk_rows recorded,
    47% of 140,000 rows held out) resumes in make's chunks, and one saved in pieces in its pieces: bit for bit."""
    run = ["train", "--rows", "140000", "--features", "2", "--stream", "on", "--hidden", "4", "--batch-size", "4096",
           "--device", "cpu", "--quiet", "--seed", "3"]
    straight, first = str(tmp_path / "straight.npz"), str(tmp_path / "first.npz")
    with monkeypatch.context() as before:
        if saved_in == "make's chunks":  # how every stream was cut before pieces
            before.setattr(gpunn.data.sources, "default_piece_rows", lambda rows, fraction: 65536)
        assert main([*run, "--epochs", "2", "--save", straight]) == 0
        assert main([*run, "--epochs", "1", "--save", first]) == 0
    saved = gpunn.load_checkpoint(first).training["source"]
    assert saved.get("chunk_rows") == (8192 if saved_in == "pieces" else None), saved
    capsys.readouterr()
    assert main(["train", "--resume", first, "--epochs", "2"]) == 0
    out, err = capsys.readouterr()
    assert ("2 of 17 chunks: 16 of 8,192 rows and one of 8,928" if saved_in == "pieces"
            else "1 of 3 chunks: 2 of 65,536 rows and one of 8,928") in out
    if saved_in == "make's chunks":  # 47% held out where 10% was asked: said in a note, as gpunn's other notes are
        assert "note: synthetic teacher: validation_fraction=0.1 holds out whole chunks: 1 of 3, 65,536 of 140,000" in err
        assert "UserWarning" not in err
    a, b = gpunn.load_checkpoint(straight, device="cpu"), gpunn.load_checkpoint(first, device="cpu")
    assert b.epoch == 2
    numpy.testing.assert_array_equal(a.model.params, b.model.params)


def test_the_stream_data_line_counts_a_longer_last_piece(capsys):
    """140,000 rows in pieces of 8,192: the last piece takes make's short chunk whole (8,928 rows). Seed 24 holds
    it out: the line said "2 of 17 chunks of 8,192 rows" beside 17,120 validation rows."""
    assert main(with_options(["train", "--rows", "140000", "--features", "2", "--stream", "on", *SMALL], "--epochs", "1",
                             "--batch-size", "4096", "--seed", "24")) == 0
    out, err = capsys.readouterr()
    assert ("122,880 training rows, 17,120 validation rows (2 of 17 chunks: 16 of 8,192 rows and one of 8,928)"
            in out), out
    assert err == ""


def test_a_short_stream_holds_out_about_a_tenth_or_none(capsys):
    """--rows 65537 --stream on held out one of its two chunks, the whole one (1 training row and 65,536
    validation rows, at first), then nothing (under 131,072 rows). Pieces of 1,024 rows hold out a tenth; where
    they cannot (5,000 rows: one of four would be 20%), none, as before."""
    assert main(["train", "--rows", "65537", "--features", "2", "--stream", "on", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert "59,393 training rows, 6,144 validation rows (6 of 65 chunks: 64 of 1,024 rows and one of 1)" in out and err == ""
    assert main(["train", "--rows", "5000", "--features", "2", "--stream", "on", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert "5,000 training rows, 0 validation rows (a stream holds out whole pieces" in out and err == ""


def test_held_out_metrics_of_a_standardized_run_say_they_are_in_standardized_units(pair, capsys):
    tmp_path, _, _ = pair
    files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    assert main(["train", *files, "--standardize", *SMALL]) == 0
    assert "held-out (standardized targets): mse " in capsys.readouterr().out
    assert main(["train", *files, *SMALL]) == 0
    assert "held-out: mse " in capsys.readouterr().out


def test_train_json_on_a_file_says_its_units_and_leaves_the_synthetic_task_out(pair, capsys):
    tmp_path, _, _ = pair
    files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    for extra, units in (["--standardize"], "standardized targets"), ([], "targets"):
        assert main(["train", *files, *extra, *SMALL, "--json", str(tmp_path / "run.json")]) == 0
        saved = json.loads((tmp_path / "run.json").read_text())
        assert saved["units"] == units  # as gpunn sweep --json says it
        assert saved["config"]["data"] == files[1] and not {"task", "rows", "features", "noise"} & set(saved["config"])


def test_predict_refuses_feature_names_for_an_npy_input(pair, capsys):
    tmp_path, _, _ = pair
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([5, 4, 1], seed=0, device="cpu"))
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tmp_path / "P.npy"),
                 "--features", "a,b"]) == 2
    assert "--features names columns of a table (CSV or Parquet); X.npy has none" in capsys.readouterr().err
    assert not (tmp_path / "P.npy").exists()


def test_without_pyarrow_a_table_is_a_one_line_error_naming_the_extra(pair, monkeypatch, capsys):
    tmp_path, _, _ = pair
    (tmp_path / "t.csv").write_text("a,y\n1,2\n3,4\n")
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([5, 4, 1], seed=0, device="cpu"))
    for name in ("pyarrow", "pyarrow.csv", "pyarrow.parquet"):
        monkeypatch.setitem(__import__("sys").modules, name, None)  # import pyarrow... fails, as where not installed
    for argv in (["train", "--data", str(tmp_path / "t.csv"), "--target", "y", *SMALL],
                 ["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tmp_path / "P.parquet")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"gpunn {argv[0]}: error: ") and 'pip install "gpunn[data]"' in err, err


def test_predict_streams_a_csv_without_a_header_by_position_keeping_its_first_row(pair, monkeypatch, capsys):
    """A CSV of plain numbers read through the streaming path (a Parquet output, or a file over the
    size where predict streams) has no header row to lose: every row is predicted."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpunn.cli import predict as predict_cli

    tmp_path, X, _ = pair
    model_path = tmp_path / "m.npz"
    gpunn.save(model_path, gpunn.MLP([5, 4, 1], seed=0, device="cpu"))
    numpy.savetxt(tmp_path / "plain.csv", X[:40], delimiter=",", fmt="%.17g")
    expected = gpunn.load(model_path, device="cpu").predict(X[:40])[:, 0]
    assert main(["predict", str(model_path), str(tmp_path / "plain.csv"), str(tmp_path / "P.parquet")]) == 0
    numpy.testing.assert_allclose(pq.read_table(tmp_path / "P.parquet").column(0).to_numpy(), expected, rtol=1e-6)
    monkeypatch.setattr(predict_cli, "STREAM_BYTES", 100)  # as for a CSV of gigabytes
    assert main(["predict", str(model_path), str(tmp_path / "plain.csv"), str(tmp_path / "P.npy")]) == 0
    assert "streamed" in capsys.readouterr().out
    numpy.testing.assert_allclose(numpy.load(tmp_path / "P.npy")[:, 0], expected, rtol=1e-6)
    assert main(["predict", str(model_path), str(tmp_path / "plain.csv"), str(tmp_path / "Q.npy"),
                 "--features", "a,b"]) == 2
    assert "--features names columns, and plain.csv has no header row" in capsys.readouterr().err
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.csv").read_bytes())  # Excel's UTF-8 mark
    assert main(["predict", str(model_path), str(tmp_path / "bom.csv"), str(tmp_path / "B.parquet")]) == 0
    numpy.testing.assert_allclose(pq.read_table(tmp_path / "B.parquet").column(0).to_numpy(), expected, rtol=1e-6)
    (tmp_path / "quoted.csv").write_text("".join(",".join(f'"{float(v)!r}"' for v in row) + "\n" for row in X[:3]))
    assert main(["predict", str(model_path), str(tmp_path / "quoted.csv"), str(tmp_path / "Q.parquet")]) == 0
    numpy.testing.assert_allclose(pq.read_table(tmp_path / "Q.parquet").column(0).to_numpy(), expected[:3], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_writes_one_csv_on_both_paths_whose_digits_read_back_exactly(tmp_path, monkeypatch, capsys, dtype):
    """The in-memory path wrote %.9g/%.17g and no header, the streamed one pyarrow's shortest digits and the
    targets' names: one writer now, the same bytes whatever the input's size, each value read back exactly."""
    from gpunn.cli import predict as predict_cli

    model = gpunn.MLP([3, 7, 2], seed=0, device="cpu", dtype=dtype)
    model.data_columns = {"features": ["a", "b", "c"], "targets": ["price", "q,2"]}
    gpunn.save(tmp_path / "m.npz", model)
    X = numpy.random.default_rng(1).standard_normal((50, 3))
    numpy.save(tmp_path / "X.npy", X)
    argv = ["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), "--device", "cpu"]
    assert main(argv + [str(tmp_path / "whole.csv")]) == 0
    assert main(argv + [str(tmp_path / "whole.npy")]) == 0  # an .npy OUT holds the model's dtype too
    whole = numpy.load(tmp_path / "whole.npy")
    assert whole.dtype == dtype
    numpy.testing.assert_array_equal(whole, by_position(gpunn.load(tmp_path / "m.npz", device="cpu"), X))
    monkeypatch.setattr(predict_cli, "STREAM_BYTES", 100)  # as for an input of gigabytes
    assert main(argv + [str(tmp_path / "streamed.csv")]) == 0
    assert "streamed" in capsys.readouterr().out
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "streamed.csv").read_bytes()
    header, *lines = (tmp_path / "whole.csv").read_text().splitlines()
    assert header == '"price","q,2"'
    P = numpy.array([line.split(",") for line in lines], dtype=dtype)
    numpy.testing.assert_array_equal(P, by_position(gpunn.load(tmp_path / "m.npz", device="cpu"), X))
    assert max(len(v.lstrip("-").replace(".", "").split("e")[0].lstrip("0")) for line in lines for v in line.split(",")) == \
        {"float32": 9, "float64": 17}[dtype]  # the digits the dtype needs, not more


def test_the_csv_writer_formats_a_block_of_rows_at_a_time_as_savetxt_formats_each_row(tmp_path):
    import io

    from gpunn.data.files import CsvWriter

    P = numpy.random.default_rng(2).standard_normal((10, 3)).astype(numpy.float32)
    P[4, 1], P[7, 2] = numpy.nan, -numpy.inf
    writer = CsvWriter(tmp_path / "p.csv", 3, numpy.float32)
    for chunk in (P[:7], P[7:]):  # blocks of 3, 3 and 1 rows, then 3: a full block after a full one too
        writer.write(chunk, rows=3)
    writer.close()
    writer.commit()
    expected = io.StringIO()
    numpy.savetxt(expected, P, fmt="%.9g", delimiter=",")
    assert (tmp_path / "p.csv").read_text() == expected.getvalue()


def test_the_csv_writer_writes_utf8_target_names_whatever_the_locale(tmp_path):
    """Under an ASCII locale (LC_ALL=C without Python's UTF-8 mode) the header of a model trained on columns
    named "ŷ" failed with "'ascii' codec can't encode character"; the file is UTF-8, as pyarrow reads it."""
    import os
    import subprocess
    import sys

    script = ("import sys, numpy; from gpunn.data.files import CsvWriter; w = CsvWriter(sys.argv[1], 2, numpy.float64, "
              "['\\u0177', 'x \\u03b1']); w.write(numpy.ones((1, 2))); w.close(); w.commit()")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p.csv")], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.csv").read_bytes().decode("utf-8") == '"\u0177","x \u03b1"\n1,1\n'


@pytest.mark.parametrize("flags", [["--rows", "1000"], ["--task", "linear"], ["--outputs", "2"], ["--noise", "0.5"],
                                   ["--stream", "off"], ["--features", "3"]])
def test_synthetic_task_options_given_with_data_are_refused(pair, capsys, flags):
    tmp_path, _, _ = pair
    files = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    assert main(["train", *files, *flags, *SMALL]) == 2
    assert f"{flags[0]} {flags[1]} sets up a synthetic task, which --data replaces" in capsys.readouterr().err


def test_a_feature_count_given_with_a_table_says_how_to_name_a_column_whose_name_is_a_number(tmp_path, capsys):
    """A table of years, 2020,2021,price: --features 2021 is a count (a synthetic task's), refused with --data, and
    the refusal said only "drop it"; the quoted name that picks the column was nowhere. It is said for a table, not
    for an .npy pair (whose columns have no names)."""
    pytest.importorskip("pyarrow")
    (tmp_path / "years.csv").write_text("2020,2021,price\n" + "".join(f"{i},{2 * i},{3 * i}\n" for i in range(30)))
    table = ["train", "--data", str(tmp_path / "years.csv"), "--target", "price", *SMALL]
    assert main([*table, "--features", "2021"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--features 2021 sets up a synthetic task, which --data replaces; drop it (the file gives the rows, features "
        "and outputs), or, to name the column 2021, write it in double quotes: --features '\"2021\"'")
    assert main([*table, "--features", '"2021"']) == 0
    capsys.readouterr()
    numpy.save(tmp_path / "X.npy", numpy.ones((30, 2)))
    assert main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "X.npy"), "--features", "2",
                 *SMALL]) == 2
    assert "double quotes" not in capsys.readouterr().err


def test_predict_reads_a_small_csv_of_quoted_numbers(pair):
    tmp_path, X, _ = pair
    model_path = tmp_path / "m.npz"
    gpunn.save(model_path, gpunn.MLP([5, 4, 1], seed=0, device="cpu"))
    rows = "".join(",".join(f'"{float(v)!r}"' for v in row) + "\n" for row in X[:3])
    (tmp_path / "q.csv").write_text(rows)
    (tmp_path / "qh.csv").write_text('"a","b","c","d","e"\n' + rows)
    expected = gpunn.load(model_path, device="cpu").predict(X[:3])
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + rows.replace('"', "").encode())  # Excel's UTF-8 mark
    for name in ("q.csv", "qh.csv", "bom.csv"):
        assert main(["predict", str(model_path), str(tmp_path / name), str(tmp_path / "P.npy")]) == 0
        numpy.testing.assert_allclose(numpy.load(tmp_path / "P.npy"), expected, rtol=1e-6)


def test_predict_never_takes_a_first_row_with_a_missing_value_for_a_header(pair, capsys):
    """A headerless CSV whose first row has a missing value ('NA') is data with a gap, not a header:
    predict says so rather than dropping the row."""
    pytest.importorskip("pyarrow")
    tmp_path, X, _ = pair
    model_path = tmp_path / "m.npz"
    gpunn.save(model_path, gpunn.MLP([5, 4, 1], seed=0, device="cpu"))
    lines = [",".join(repr(float(v)) for v in row) for row in X[:4]]
    lines[0] = "NA," + lines[0].split(",", 1)[1]
    (tmp_path / "gap.csv").write_text("\n".join(lines) + "\n")
    for out in ("P.npy", "P.parquet"):  # read whole, and streamed
        assert main(["predict", str(model_path), str(tmp_path / "gap.csv"), str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert "gap.csv" in err and ("NA" in err or "NaN" in err), err
        assert not (tmp_path / out).exists()


def test_a_compressed_csv_is_refused_saying_to_decompress_it(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    import gzip

    text = "a,y\n" + "".join(f"{i},{i}\n" for i in range(100))
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "t.csv").write_bytes(gzip.compress(text.encode()))  # compressed under a plain name
    with pytest.raises(gpunn.data.DataError, match=r"t\.csv: gzip-compressed; .*decompress it"):
        gpunn.data.csv(tmp_path / "t.csv", target="y")
    numpy.save(tmp_path / "a.npy", numpy.ones((3, 2)))
    (tmp_path / "a.npy").rename(tmp_path / "a.csv")
    with pytest.raises(gpunn.data.DataError, match=r"a\.csv: not a CSV file \(a \.npy array, not text\)"):
        gpunn.data.csv(tmp_path / "a.csv", target="y")
    assert main(["train", "--data", str(tmp_path / "t.csv.gz"), "--target", "y", *SMALL]) == 2
    assert "t.csv.gz is compressed (.gz): decompress it first" in capsys.readouterr().err
    gpunn.save(tmp_path / "m.npz", gpunn.MLP([2, 1], seed=0, device="cpu"))
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "t.csv"), str(tmp_path / "P.npy")]) == 2
    assert "t.csv is gzip-compressed" in capsys.readouterr().err


def test_data_compressed_by_bzip2_xz_or_zstandard_is_refused_by_its_name_as_gzips_is(tmp_path, capsys):
    """Each compression suffix that gpunn predict's IN is refused by, --data is too (audit35b's D8: only .gz, and
    .xz said "unknown file type")."""
    for suffix in (".bz2", ".xz", ".zst"):
        (tmp_path / f"t.csv{suffix}").write_bytes(b"compressed bytes")
        assert main(["train", "--data", str(tmp_path / f"t.csv{suffix}"), "--target", "y", *SMALL]) == 2
        assert f"t.csv{suffix} is compressed ({suffix}): decompress it first" in capsys.readouterr().err


def test_predict_reads_features_given_with_spaces_and_a_trailing_comma_and_knows_a_suffix_in_capitals(tmp_path, capsys):
    """--features "a, b ,c," names the columns a, b and c (spaces and empty names dropped, as a hand-typed list
    has them); a file's suffix is read whatever its case: --features is refused for X.NPY as for X.npy, and for a
    T.CSV without a header row as for t.csv, each in the words of its lower-case spelling; P.CSV is written as CSV."""
    pytest.importorskip("pyarrow")
    model = gpunn.MLP([3, 4, 1], seed=0, device="cpu")
    model.data_columns = {"features": ["a", "b", "c"], "targets": ["y"]}
    gpunn.save(tmp_path / "m.npz", model)
    X = numpy.random.default_rng(3).standard_normal((20, 3))
    numpy.savetxt(tmp_path / "t.csv", X[:, [2, 0, 1]], delimiter=",", header="c,a,b", comments="", fmt="%.17g")
    model_path = str(tmp_path / "m.npz")
    assert main(["predict", model_path, str(tmp_path / "t.csv"), str(tmp_path / "p.npy"), "--features", " a, b ,c,",
                 "--device", "cpu"]) == 0
    numpy.testing.assert_allclose(numpy.load(tmp_path / "p.npy"), by_position(model, X), rtol=1e-6)
    numpy.save(tmp_path / "x.npy", X)
    assert main(["predict", model_path, str(tmp_path / "x.npy"), str(tmp_path / "P.CSV"), "--device", "cpu"]) == 0
    header, *lines = (tmp_path / "P.CSV").read_text().splitlines()  # CSV text, as for p.csv, not an .npy array
    assert header == '"y"'
    numpy.testing.assert_allclose(numpy.array(lines, float), by_position(model, X)[:, 0], rtol=1e-6)
    with open(tmp_path / "X.NPY", "wb") as fh:  # (numpy.save of a name not ending in .npy writes X.NPY.npy)
        numpy.save(fh, X)
    assert main(["predict", model_path, str(tmp_path / "X.NPY"), str(tmp_path / "q.npy"), "--features", "a,b,c"]) == 2
    assert "--features names columns of a table (CSV or Parquet); X.NPY has none" in capsys.readouterr().err
    numpy.savetxt(tmp_path / "T.CSV", X, delimiter=",", fmt="%.17g")
    assert main(["predict", model_path, str(tmp_path / "T.CSV"), str(tmp_path / "q.npy"), "--features", "a,b,c"]) == 2
    assert "--features names columns, and T.CSV has no header row" in capsys.readouterr().err
    assert not (tmp_path / "q.npy").exists()


@pytest.mark.parametrize("command, ending", [("train", "done"), ("train", "a NaN read in training"),
                                             ("train", "one validation row"), ("sweep", "done"),
                                             ("sweep", "a NaN read in training")])
def test_the_source_gpunn_made_of_data_is_closed_when_the_command_ends(tmp_path, monkeypatch, command, ending):
    """gpunn train and gpunn sweep close the source they made of --data (its files) when they end: done, refused
    by the data part-way, or refused by make_source's own checks. They were left to the collector."""
    from gpunn import data

    rows = 12 if ending == "one validation row" else 200
    X = numpy.arange(rows * 2.0).reshape(rows, 2) / rows
    if ending.startswith("a NaN"):
        X[150, 1] = numpy.nan
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X.sum(axis=1))
    made, npy = [], data.npy
    monkeypatch.setattr(data, "npy", lambda *a, **k: made.append(npy(*a, **k)) or made[-1])
    options = (["--lr", "1e-2", "--seeds", "1", "--hidden", "4", "--epochs", "1", "--batch-size", "20", "--quiet",
                "--device", "cpu"] if command == "sweep" else ["--hidden", "4", "--batch-size", "20", "--epochs", "1",
                                                                 "--device", "cpu", "--quiet"])
    status = main([command, "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), *options])
    assert (status == 0) == (ending == "done") and len(made) == 1 and made[0].closed


def test_predict_refuses_to_replace_an_out_that_holds_the_models_inputs(tmp_path, capsys):
    """gpunn predict wrote its predictions over any OUT: another inputs file named by a slip was lost. An earlier OUT
    (the predictions' width) is replaced, as a re-run does; --overwrite replaces the inputs file too."""
    model, X, other, out = (str(tmp_path / name) for name in ("m.npz", "X.npy", "other.npy", "o.npy"))
    gpunn.save(model, gpunn.MLP([4, 8, 1], seed=0))
    rng = numpy.random.default_rng(0)
    numpy.save(X, rng.standard_normal((50, 4)))
    numpy.save(other, kept := rng.standard_normal((50, 4)))
    for _ in range(2):  # a re-run replaces its earlier predictions
        assert main(["predict", model, X, out]) == 0
    capsys.readouterr()
    assert main(["predict", model, X, other]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: OUT {other} exists and holds 4 columns, as the model's "
                                       "inputs (its predictions have 1): writing the predictions there would replace "
                                       "the inputs; choose another OUT, or add --overwrite to replace it\n")
    numpy.testing.assert_array_equal(numpy.load(other), kept)
    assert main(["predict", model, X, other, "--overwrite"]) == 0
    numpy.testing.assert_array_equal(numpy.load(other), numpy.load(out))


def test_predict_with_in_and_out_swapped_refuses_to_replace_the_inputs(tmp_path, capsys):
    """A model of as many outputs as inputs (sinusoid's 1 and 1): gpunn predict m.npz o.npy X.npy, the order of
    IN and OUT mistaken, replaced X.npy by the predictions of o.npy, the predictions of X.npy, whose width is the
    inputs'. It is told by IN holding the model's predictions of OUT's rows; a re-run in the right order is not."""
    model, X, out = str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tmp_path / "o.npy")
    net = gpunn.MLP([1, 8, 1], activation="tanh", seed=0)
    numpy.save(X, inputs := numpy.linspace(-3, 3, 100)[:, None])
    for columns in (None, {"features": ["x"], "targets": ["y"]}):  # a model of named columns reads the .npy in order
        net.data_columns = columns
        gpunn.save(model, net)
        for _ in range(2):
            assert main(["predict", model, X, out]) == 0
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (no warning of columns read by position: gpunn's own read)
            assert main(["predict", model, out, X]) == 2
        assert capsys.readouterr().err == (
            f"gpunn predict: error: OUT {X} exists, and IN {out} holds the model's predictions of its rows: IN and OUT "
            "look swapped (gpunn predict takes MODEL IN OUT), and writing OUT would replace the inputs: did you mean "
            f"gpunn predict {model} {X} {out}? (--overwrite replaces OUT all the same)\n")
        numpy.testing.assert_array_equal(numpy.load(X), inputs)
    assert main(["predict", model, out, X, "--overwrite"]) == 0  # (the model applied twice, asked for)
    assert not numpy.array_equal(numpy.load(X), inputs)


def test_in_and_out_swapped_are_told_where_ins_float32_predictions_differ_from_outs_in_their_last_bits(tmp_path, capsys):
    """Predictions of other batches (another chunk size, another machine's BLAS) may differ in their last bits: IN
    holding OUT's rows' float32 predictions one ulp off is still IN and OUT swapped (audit35b's P3: compared to 1e-9
    whatever the dtype, they were taken for other data and X.npy replaced)."""
    model, X, out = str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tmp_path / "o.npy")
    net = gpunn.MLP([1, 8, 1], activation="tanh", seed=0, device="cpu")
    gpunn.save(model, net)
    numpy.save(X, inputs := numpy.linspace(-3, 3, 100)[:, None])
    predicted = numpy.asarray(net.predict(inputs), dtype=numpy.float32)
    numpy.save(out, numpy.nextafter(predicted, numpy.float32(numpy.inf)))
    assert main(["predict", model, out, X]) == 2
    assert "IN and OUT look swapped" in capsys.readouterr().err
    numpy.testing.assert_array_equal(numpy.load(X), inputs)


def test_an_earlier_out_of_more_rows_than_in_is_replaced_for_a_model_of_as_many_outputs_as_inputs(tmp_path):
    """IN of fewer rows than OUT's first ones cannot be OUT's predictions (the check for IN and OUT swapped, which
    compares up to 32 rows), so OUT, the output of a longer file, is replaced as any earlier output is."""
    model, out = str(tmp_path / "m.npz"), str(tmp_path / "o.npy")
    net = gpunn.MLP([1, 8, 1], activation="tanh", seed=0, device="cpu")
    gpunn.save(model, net)
    numpy.save(tmp_path / "long.npy", numpy.linspace(-3, 3, 100)[:, None])
    numpy.save(tmp_path / "short.npy", short := numpy.linspace(-1, 1, 5)[:, None])
    for inputs in ("long.npy", "short.npy"):
        assert main(["predict", model, str(tmp_path / inputs), out]) == 0
    numpy.testing.assert_array_equal(numpy.load(out), net.predict(short))


def test_predict_refuses_to_replace_a_table_of_the_models_feature_columns(tmp_path, capsys):
    """A model trained on named columns: a table that names them is its inputs (the training file itself, most
    often), whatever the widths; its earlier predictions, a table of the target columns, are replaced."""
    pytest.importorskip("pyarrow")
    table, model, out = str(tmp_path / "t.csv"), str(tmp_path / "m.npz"), str(tmp_path / "p.csv")
    (tmp_path / "t.csv").write_text("x,y\n" + "".join(f"{i / 10},{i % 7}\n" for i in range(40)))
    assert main(["train", "--data", table, "--target", "y", "--save", model, *SMALL]) == 0
    for _ in range(2):
        assert main(["predict", model, table, out]) == 0
    capsys.readouterr()
    assert main(["predict", model, out, table]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: OUT {table} exists and holds the model's feature "
                                       "columns, x: writing the predictions there would replace the inputs; choose "
                                       "another OUT, or add --overwrite to replace it\n")
    assert (tmp_path / "t.csv").read_text().startswith("x,y\n0.0,0\n")


def test_predict_score_of_a_small_csv_streams_the_only_path_that_scores(tmp_path, capsys):
    """--score reads IN's columns by the model's names, so IN is a table that holds them, read chunk by chunk:
    the path that reads IN whole printed a --score line that no scored IN reached (a dead branch, removed), and
    --json says streamed for a CSV file far under STREAM_BYTES."""
    X, Y = datasets.make("linear", 600, 3, seed=2, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y[:, 0]]), delimiter=",", header="a,b,c,y", comments="")
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--save", model_path, *SMALL]) == 0
    capsys.readouterr()
    assert main(["predict", model_path, str(tmp_path / "t.csv"), str(tmp_path / "p.npy"), "--score", "--json", "-",
                 "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["streamed"] is True and summary["score"]["targets"] == ["y"]


def test_predict_json_summarises_the_run_on_stdout_with_scores_or_in_a_file(tmp_path, capsys):
    """gpunn predict had no --json (train, sweep and bench have one): a script read its rows and --score's metrics
    back from the printed lines. --json - writes the summary alone on stdout (the lines go to stderr), the score
    model.evaluate's metrics to the bit; --json PATH without --score has a null score; --json naming IN, MODEL or
    OUT is refused before anything is written."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("linear", 1200, 3, seed=2, device="cpu")
    pq.write_table(pa.table({"id": numpy.arange(1200), "a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": Y[:, 0]}),
                   tmp_path / "t.parquet", row_group_size=300)
    model_path = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "t.parquet"), "--target", "y", "--features", "a,b,c",
                 "--save", model_path, *SMALL]) == 0
    model = gpunn.load(model_path, device="cpu")
    capsys.readouterr()
    out_path = str(tmp_path / "p.parquet")
    assert main(["predict", model_path, str(tmp_path / "t.parquet"), out_path, "--score", "--json", "-",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "held-out" in captured.err
    with gpunn.data.parquet(tmp_path / "t.parquet", target=["y"], features=["a", "b", "c"]) as table:
        metrics = model.evaluate(table)
    assert summary == {"model": model_path, "input": str(tmp_path / "t.parquet"), "output": out_path, "rows": 1200,
                       "outputs": 1, "dtype": "float32", "device": "cpu", "streamed": True, "keep": None,
                       "score": {"targets": ["y"], "weight": None, "mse": metrics["mse"], "mae": metrics["mae"],
                                 "r2": metrics["r2"]}}
    numpy.save(tmp_path / "x.npy", X)
    assert main(["predict", model_path, str(tmp_path / "x.npy"), str(tmp_path / "p.npy"), "--json",
                 str(tmp_path / "s.json"), "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["rows"], summary["streamed"], summary["score"]) == (1200, False, None)
    for report, said in (("x.npy", "is the IN this command reads"), ("m.npz", "is the MODEL this command reads"),
                         ("q.npy", "OUT and --json both name")):
        before = (tmp_path / report).read_bytes() if (tmp_path / report).exists() else None
        assert main(["predict", model_path, str(tmp_path / "x.npy"), str(tmp_path / "q.npy"),
                     "--json", str(tmp_path / report)]) == 2
        assert said in capsys.readouterr().err, report
        after = (tmp_path / report).read_bytes() if (tmp_path / report).exists() else None
        assert before == after
        assert not (tmp_path / "q.npy").exists(), report  # refused before OUT is written, not once it is


def test_an_unnamed_model_given_a_named_table_says_its_columns_are_read_by_position(tmp_path, capsys):
    """A model trained on arrays (no column names) given a table of named columns took them in the table's order,
    without a word, where a DataFrame of names to it warns (scikit-learn's warning): model.predict and evaluate of a
    table source warn the same now, and gpunn predict of a Parquet file or a CSV file with a header row says so in
    a note on stderr. None where --features names the columns, for an .npy or headerless IN, or for a model trained
    on the table's names."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = datasets.make("linear", 600, 3, seed=4, device="cpu")
    unnamed = gpunn.MLP([3, 8, 1], seed=0, device="cpu")
    unnamed.fit(X, Y, epochs=1, verbose=False)
    gpunn.save(tmp_path / "u.npz", unnamed)
    pq.write_table(pa.table({"c": X[:, 2], "b": X[:, 1], "a": X[:, 0], "y": Y[:, 0]}), tmp_path / "t.parquet")
    pq.write_table(pa.table({"c": X[:, 2], "b": X[:, 1], "a": X[:, 0]}), tmp_path / "x.parquet")
    pq.read_table(tmp_path / "x.parquet").to_pandas().to_csv(tmp_path / "x.csv", index=False)
    numpy.savetxt(tmp_path / "plain.csv", X, delimiter=",")
    numpy.save(tmp_path / "x.npy", X)
    said = ("ParquetSource has column names (c, b, a), but the MLP was fitted without column names: ParquetSource's "
            "columns are read by position")
    for call in (unnamed.predict, unnamed.evaluate, unnamed.score):
        with pytest.warns(UserWarning, match=re.escape(said)):
            call(gpunn.data.parquet(tmp_path / "t.parquet", target="y"))
    named = gpunn.MLP([3, 8, 1], seed=0, device="cpu")
    named.fit(gpunn.data.parquet(tmp_path / "t.parquet", target="y"), epochs=1, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named.predict(gpunn.data.parquet(tmp_path / "t.parquet", target="y"))
    note = "has column names (c, b, a), but MODEL"
    for name, extra, noted in (("x.parquet", [], True), ("x.csv", [], True), ("x.csv", ["--features", "a,b,c"], False),
                               ("plain.csv", [], False), ("x.npy", [], False)):
        capsys.readouterr()
        assert main(["predict", str(tmp_path / "u.npz"), str(tmp_path / name), str(tmp_path / "p.npy"), *extra,
                     "--overwrite"]) == 0
        assert (note in capsys.readouterr().err) == noted, (name, extra)
    gpunn.save(tmp_path / "n.npz", named)  # trained on the table's names: no note, for either kind of table
    for name in ("x.parquet", "x.csv"):
        capsys.readouterr()
        assert main(["predict", str(tmp_path / "n.npz"), str(tmp_path / name), str(tmp_path / "p.npy"),
                     "--overwrite"]) == 0
        assert "was trained on unnamed columns" not in capsys.readouterr().err, name


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_data_from_standard_input_is_refused_saying_to_save_it_to_a_file(command, capsys):
    """gpunn predict reads IN -; --data - for training said "--data -: no such file or directory"."""
    extra = ["--lr", "1e-3,1e-2"] if command == "sweep" else []
    assert main([command, "--data", "-", "--target", "y", "--epochs", "1", *extra]) == 2
    assert ("--data -: training does not read standard input, as every epoch reads the rows again (and a --resume "
            "once more): save them to a file (.csv, .parquet, or an .npy pair with --targets) and give its path. "
            "gpunn predict MODEL - OUT reads standard input") in capsys.readouterr().err


def test_standard_input_as_targets_beside_a_file_on_a_resume_or_in_a_config_file_is_refused_in_the_same_words(
        pair, monkeypatch, capsys):
    """--data - alone said it: with --targets Y.npy it said '--targets goes with --data X.npy; for --data -, name
    the target column(s) with --target', --targets - '-: no such file (targets)', a --resume's --data - 'no such
    file; if the run's files have moved', a config file's data = "-" 'no such file or directory in DIR'."""
    tmp_path, _, _ = pair
    monkeypatch.chdir(tmp_path)
    words = ("training does not read standard input, as every epoch reads the rows again (and a --resume once "
             "more): save them to a file")
    assert main(["train", "--data", "X.npy", "--targets", "Y.npy", "--save", "run.npz", *SMALL]) == 0
    capsys.readouterr()
    (tmp_path / "c.toml").write_text('data = "-"\nepochs = 1\n')
    for argv, said in ((["--data", "-", "--targets", "Y.npy", *SMALL], "--data -"),
                       (["--data", "X.npy", "--targets", "-", *SMALL], "--targets -"),
                       (["--resume", "run.npz", "--epochs", "3", "--data", "-", "--targets", "Y.npy"], "--data -"),
                       (["--config", "c.toml", "--device", "cpu"], 'c.toml: data = "-"')):
        assert main(["train", *argv]) == 2, argv
        assert f"{said}: {words}" in capsys.readouterr().err, argv
    (tmp_path / "-").write_bytes((tmp_path / "Y.npy").read_bytes())  # (audit46c) a file named "-" is read as one
    assert main(["train", "--data", "X.npy", "--targets", "-", "--save", "dash.npz", *SMALL]) == 0


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_data_dash_beside_a_file_named_dash_says_standard_input_is_not_read_nor_that_file(command, pair, monkeypatch,
                                                                                           capsys):
    """(audit46c) With a file named "-" in the directory the command runs in, --data - --targets Y.npy said
    '--targets goes with --data X.npy; for --data -, name the target column(s) with --target' and --data - --target y
    '--data -: unknown file type': the standard input refusal's words were skipped, and the file (which --targets -
    reads, an .npy file by its bytes) was not named. A directory named "-" is read, as a directory of Parquet files."""
    tmp_path, _, _ = pair
    monkeypatch.chdir(tmp_path)
    extra = ["--lr", "1e-3,1e-2"] if command == "sweep" else []
    (tmp_path / "-").write_bytes((tmp_path / "X.npy").read_bytes())
    for options in (["--targets", "Y.npy"], ["--target", "y"]):
        assert main([command, "--data", "-", *options, *SMALL, *extra]) == 2, options
        assert (f"--data -: training does not read standard input, as every epoch reads the rows again (and a "
                f"--resume once more): save them to a file (.csv, .parquet, or an .npy pair with --targets) and give "
                f"its path. gpunn predict MODEL - OUT reads standard input. The file named - in {tmp_path} (the "
                f"directory the command runs in) has no suffix to read its kind by: rename it with its kind's (.csv, "
                f".parquet or .npy) and give that path\n") in capsys.readouterr().err, options
    (tmp_path / "-").unlink()
    (tmp_path / "-").mkdir()
    assert main([command, "--data", "-", "--target", "y", *SMALL, *extra]) == 2
    assert "error: -: a directory with no .parquet files (it is empty)\n" in capsys.readouterr().err
