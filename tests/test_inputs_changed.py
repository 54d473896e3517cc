"""An input file written over while a run reads it: the next read refuses it, naming it, so that no step (and no
checkpoint after one) takes rows read from the changed file. One renamed over its name, or removed, is another file:
the file opened (a .npy, Parquet or CSV file) is read to the end. (A Parquet file whose footer is the same, put back
as it was after a failed read, is read afresh: test_data_sources'
test_a_parquet_row_group_that_failed_to_read_is_read_afresh_by_the_next_pass.)"""
import os

import numpy
import pytest

import gpunn
from gpunn import data
from gpunn.data import DataError


# numpy.save onto a file empties it first, then writes it again: the source's reader thread, reading ahead, may meet
# it empty (a read that comes up short) rather than written again
NPY_REFUSED = r"x\.npy: (the file changed since it was opened|truncated or shrunk while reading rows)"


def _written_over(path, write):
    """``write()`` in place (the same file), its modification time set apart: a rewrite in the same clock tick as
    the opening (a coarse file system clock) would keep it, where a run's rewrite does not."""
    before = os.stat(path)
    write()
    assert os.stat(path).st_ino == before.st_ino
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("shape", [(4000, 5), (4000, 7)], ids=["same shape", "another shape"])
def test_an_npy_file_written_over_during_an_epoch_is_refused_at_the_next_read(tmp_path, shape):
    """numpy.save onto the X file a run reads (the same inode): its rows were read at the old header's offsets and
    dtype, and training went on silently (another shape: garbage rows; the same one: other rows), an epoch's
    checkpoint holding those steps."""
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    numpy.save(x, numpy.zeros((4000, 5)))
    numpy.save(y, numpy.zeros(4000))
    source = data.npy(x, y, chunk_rows=500, window=1, shuffle=False, device="cpu")
    batches = source.batches(0, 500)
    next(batches)
    _written_over(x, lambda: numpy.save(x, numpy.ones(shape)))
    with pytest.raises(DataError, match=NPY_REFUSED):
        list(batches)
    with pytest.raises(DataError, match=r"x\.npy: the file changed since it was opened"):
        next(source.batches(1, 500))


def test_an_npy_file_renamed_over_or_removed_is_read_to_the_end_as_opened(tmp_path):
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    numpy.save(x, numpy.arange(4000.0).reshape(-1, 1))
    numpy.save(y, numpy.zeros(4000))
    source = data.npy(x, y, chunk_rows=500, window=1, shuffle=False, device="cpu")
    batches = source.batches(0, 500)
    first = next(batches)[0]
    numpy.save(tmp_path / "new.npy", numpy.ones((10, 3)))
    os.replace(tmp_path / "new.npy", x)  # another file under its name
    os.remove(y)
    rows = numpy.concatenate([first, *(X for X, _ in batches)])
    numpy.testing.assert_array_equal(rows[:, 0], numpy.arange(4000.0))


@pytest.mark.parametrize("pages", ["plain", "default"])
def test_a_parquet_file_written_again_with_the_same_columns_is_refused_not_read_on(tmp_path, pages):
    """pandas' or pyarrow's write of the table again (other values, the same columns and row groups) onto the file a
    run reads: pyarrow read on at the old footer's offsets, plain pages without a word (the run training on the new
    values), others with pyarrow's words ("Couldn't deserialize thrift"), naming a row group."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    values = numpy.arange(4000.0)
    plain = {"compression": "NONE", "use_dictionary": False} if pages == "plain" else {}

    def write(y):
        pq.write_table(pa.table({"x": values, "y": y}), path, row_group_size=500, **plain)
    write(values)
    source = data.parquet(path, target="y", chunk_rows=500, window=1, shuffle=False, device="cpu")
    batches = source.batches(0, 500)
    next(batches)
    _written_over(path, lambda: write(values + 100))
    with pytest.raises(DataError, match=r"t\.parquet: the file changed since it was opened \(its footer is another"):
        list(batches)


def test_a_parquet_file_removed_from_its_directory_is_read_to_the_end_as_opened(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "d").mkdir()
    for part in range(2):
        values = numpy.arange(2000.0) + 2000 * part
        pq.write_table(pa.table({"x": values, "y": values}), tmp_path / "d" / f"{part}.parquet", row_group_size=500)
    source = data.parquet(tmp_path / "d", target="y", chunk_rows=500, window=1, shuffle=False,
                          device="cpu")
    batches = source.batches(0, 500)
    first = next(batches)[0]
    os.remove(tmp_path / "d" / "1.parquet")
    rows = numpy.concatenate([first, *(X for X, _ in batches)])
    numpy.testing.assert_array_equal(numpy.sort(rows[:, 0]), numpy.arange(4000.0))


def test_a_parquet_file_renamed_over_is_read_to_the_end_and_one_cut_short_in_place_is_refused_as_changed(tmp_path):
    """(audit46b) Another file renamed over the name is not this file (its inode is another): the one opened is read
    to the end, not refused for the other's footer; the file cut short in place (no footer left to read again) is
    refused as changed, not in pyarrow's words."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path, other = tmp_path / "t.parquet", tmp_path / "other.parquet"
    values = numpy.arange(4000.0)
    pq.write_table(pa.table({"x": values, "y": values}), path, row_group_size=500)
    source = data.parquet(path, target="y", chunk_rows=500, window=1, shuffle=False, device="cpu")
    batches = source.batches(0, 500)
    first = next(batches)[0]
    pq.write_table(pa.table({"x": values + 100, "y": values}), other, row_group_size=500)
    os.replace(other, path)
    rows = numpy.concatenate([first, *(X for X, _ in batches)])
    numpy.testing.assert_array_equal(rows[:, 0], values)
    source = data.parquet(path, target="y", chunk_rows=500, window=1, shuffle=False, device="cpu")
    batches = source.batches(0, 500)
    next(batches)
    _written_over(path, lambda: os.truncate(path, os.path.getsize(path) // 2))
    with pytest.raises(DataError, match=r"t\.parquet: the file changed since it was opened"):
        list(batches)


def test_a_csv_line_rewritten_during_an_epoch_is_refused_at_the_next_chunk_not_the_next_epoch(tmp_path):
    """A CSV file was checked before each epoch alone: a value rewritten part-way through one (the same bytes'
    count) was read on, and the epoch's checkpoint held the steps taken on it."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "c.csv"
    path.write_text("x,y\n" + "".join(f"{i % 10},{i % 10}\n" for i in range(6000)))
    source = data.csv(path, target="y", block_size=1 << 12, shuffle=False, window=1, device="cpu",
                      cache=False)
    batches = source.batches(0, 500)
    next(batches)

    def rewrite():
        with open(path, "r+b") as fh:
            fh.seek(path.stat().st_size - 4)
            fh.write(b"7,7\n")
    _written_over(path, rewrite)
    with pytest.raises(DataError, match=r"c\.csv: the file changed since it was indexed"):
        list(batches)


def _another_csv_under_its_name(path, how):
    """Another file (other values, an empty line first: its lines are not the opened file's) renamed over ``path``,
    its modification time set apart; or ``path`` removed."""
    if how == "removed":
        os.remove(path)
        return
    opened, other = path.stat(), path.with_name("new.csv")
    other.write_text("x,y\n\n" + "".join(f"{i},{2 * i}\n" for i in range(50)))
    os.utime(other, ns=(opened.st_atime_ns, opened.st_mtime_ns + 1_000_000_000))
    os.replace(other, path)


@pytest.mark.parametrize("how", ["renamed over", "removed"])
def test_a_csv_file_renamed_over_or_removed_is_read_to_the_end_as_opened(tmp_path, how):
    """As an .npy or Parquet file is: the file indexed is read through the descriptor it was indexed by (the check
    stat'ed its name: another file renamed over it was refused as changed, a removed one as removed)."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "c.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i}\n" for i in range(6000)))
    source = data.csv(path, target="y", block_size=1 << 12, shuffle=False, window=1, device="cpu", cache=False)
    batches = source.batches(0, 500)
    first = next(batches)[0]
    _another_csv_under_its_name(path, how)
    rows = numpy.concatenate([first, *(X for X, _ in batches)])
    numpy.testing.assert_array_equal(rows[:, 0], numpy.arange(6000.0))
    rows = numpy.concatenate([X for X, _ in source.batches(1, 500)])  # the next epoch's check too
    numpy.testing.assert_array_equal(rows[:, 0], numpy.arange(6000.0))
    source.close()


@pytest.mark.parametrize("how", ["renamed over", "removed"])
def test_a_nan_in_a_csv_file_renamed_over_or_removed_is_named_at_its_line_in_the_file_opened(tmp_path, how):
    """The line a refusal names is counted in the file read (through its descriptor), not in whatever holds its name
    now: another file's line, or, removed, [Errno 2]."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "c.csv"
    rows = [f"{i},{i}" for i in range(6000)]
    rows[4321] = rows[4400] = "nan,1"
    path.write_text("x,y\n" + "".join(r + "\n" for r in rows))  # row i on line i + 2
    source = data.csv(path, target="y", block_size=1 << 12, shuffle=False, window=1, device="cpu", cache=False)
    batches = source.batches(0, 500)
    next(batches)
    _another_csv_under_its_name(path, how)
    with pytest.raises(DataError, match=r"c\.csv line 4323: column 'x': 'nan' is NaN; clean or impute it first \(1 "
                                        r"more missing or not finite among the \d+ rows read with it, at line 4402"):
        list(batches)
    source.close()


def test_a_fit_whose_x_file_is_written_over_mid_epoch_keeps_the_last_epochs_checkpoint(tmp_path):
    x, y, ckpt = tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "run.npz"
    rng = numpy.random.default_rng(0)
    numpy.save(x, rng.standard_normal((2000, 3)).astype(numpy.float32))
    numpy.save(y, rng.standard_normal((2000, 1)).astype(numpy.float32))

    class WriteOver(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 2:
                _written_over(x, lambda: numpy.save(x, numpy.ones((2000, 3), numpy.float32)))

    source = data.npy(x, y, chunk_rows=200, window=1, device="cpu")
    with pytest.raises(DataError, match=NPY_REFUSED):
        gpunn.MLP([3, 1], device="cpu", seed=0).fit(source, epochs=3, batch_size=100, verbose=False,
                                                    callbacks=[gpunn.ModelCheckpoint(ckpt), WriteOver()])
    assert gpunn.load_checkpoint(ckpt, device="cpu").epoch == 1


def test_an_npy_file_cut_short_is_read_on_up_to_the_read_that_comes_up_short_naming_its_rows(tmp_path):
    """A file cut short is not 'changed' at the next read (its rows up to the cut are the run's): the read that comes
    up short refuses it, naming its rows (audit46b: the size test of the read's check dropped refused it at once)."""
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    numpy.save(x, numpy.arange(4000.0).reshape(-1, 1))
    numpy.save(y, numpy.zeros(4000))
    source = data.npy(x, y, chunk_rows=500, window=1, shuffle=False, device="cpu")
    batches = source.batches(0, 500)
    rows = [next(batches)[0]]
    header = os.path.getsize(x) - 4000 * 8
    os.truncate(x, header + 2000 * 8)
    with pytest.raises(DataError, match=r"x\.npy: truncated or shrunk while reading rows 2000-2499: got 0 of 4000 "
                                        r"bytes$"):
        for X, _ in batches:
            rows.append(X)
    numpy.testing.assert_array_equal(numpy.concatenate(rows)[:, 0], numpy.arange(2000.0))


def test_a_csv_file_written_over_while_a_chunk_is_parsed_is_refused_before_that_chunks_rows_are_given(tmp_path):
    """The check follows each chunk's parse (audit46b: before it, a rewrite during the parse gave the chunk's rows
    and was refused a chunk later)."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "c.csv"
    path.write_text("x,y\n" + "".join(f"{i % 10},{i % 10}\n" for i in range(6000)))
    source = data.csv(path, target="y", block_size=1 << 12, shuffle=False, window=1, device="cpu",
                      cache=False)
    parse = source._parse
    parsed = []

    def parse_then_written_over(*args):
        table = parse(*args)
        parsed.append(args)
        if len(parsed) == 2:  # (the second chunk's read: the file changed under it)
            _written_over(path, lambda: path.write_text(path.read_text().replace("9,9\n", "8,8\n", 1)))
        return table

    source._parse = parse_then_written_over
    given = []
    with pytest.raises(DataError, match=r"c\.csv: the file changed since it was indexed"):
        for X, _ in source.batches(0, 8):
            given.append(X)
    assert len(parsed) == 2 and sum(len(X) for X in given) == source.chunk_sizes[0]  # the first chunk's alone
