"""Parquet files, and directories of them read as one table, through pyarrow: :class:`ParquetSource`, training's
source (chunks of row groups, read page by page), :func:`open_parquet`, and :func:`parquet_cell`, a cell read again
for an error's message. The columns are picked as :mod:`gpunn.data.table_columns` says.
"""
from __future__ import annotations

import bisect
import collections
import os

import numpy

from ..checks import PARQUET_SUFFIXES, positive_int
from ..forksafe import ForkSafeLock
from .base import ChunkedSource, DataError, closes_files_when_refused, default_chunk_rows
from .errors import file_name
from .row_weights import cut_into
from .table_columns import (NoTarget, copy_columns, listed_columns, pick_in_every_file, pyarrow_module,
                            weight_column)


def open_parquet(name):
    """A pyarrow ParquetFile that reads row groups page by page (no pre-buffering of whole column
    chunks, a 1 MiB read buffer), so iterating a row group takes memory by batch, not by row group."""
    pq = pyarrow_module("parquet")
    try:
        return pq.ParquetFile(name, pre_buffer=False, buffer_size=1 << 20)
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError: not Parquet, or cut short
        raise DataError(f"{name}: not a readable Parquet file ({exc})") from None


def parquet_cell(files, row, name):
    """(file, row in it, value) of the Parquet dataset ``files`` (one file, or a directory's, in order) at ``row``
    (from 0, over the files) of column ``name``, read again for an error's message: the row's row group in
    batches up to it, so memory stays a batch's whatever the row group's size. The value as Python reads it
    (None: a null; a float32 column's as numpy.float32, ``_as_stored``). Raises IndexError past the last row,
    DataError where a file cannot be read."""
    for path in files:
        pf = open_parquet(path)
        if row >= pf.metadata.num_rows:
            row -= pf.metadata.num_rows
            continue
        at = row
        for g in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if at < rows:
                for batch in pf.iter_batches(batch_size=65536, row_groups=[g], columns=[name]):
                    if at < batch.num_rows:
                        cell = batch.column(0)[at]
                        return path, row, _as_stored(cell.as_py(), cell.type)
                    at -= batch.num_rows
            at -= rows
    raise IndexError(f"row {row} is past the dataset's last row")


def _as_stored(value, arrow_type):
    """A Parquet cell's Python value as the column stores it: a float32 column's a numpy.float32 (3e+38 as
    written, not its float64 3.0000000054977558e+38), others as Python reads them."""
    if value is not None and str(arrow_type) in ("float", "halffloat"):
        return numpy.dtype(arrow_type.to_pandas_dtype()).type(value)
    return value


def _held_instead(names) -> str:
    """What a directory given for a table of Parquet files holds instead (its files ``names``), and what to do: a
    folder of CSV shards was refused as "a directory with no .parquet files", with no word of its files."""
    if not names:
        return "it is empty"
    kinds = collections.Counter(os.path.splitext(name)[1].lower() or "(no suffix)" for name in names)
    held = ", ".join(f"{n} {kind} file{'s' * (n > 1)}" for kind, n in kinds.most_common(3))
    if ".csv" in kinds:
        return (f"it holds {held}: a directory is read as one table of Parquet files; give one CSV file, or write them "
                "as Parquet files (pyarrow.parquet.write_table)")
    return f"it holds {held}: a directory is read as one table of Parquet files"


class ParquetSource(ChunkedSource):
    """A Parquet file, or a directory of them read as one dataset, in chunks of at most ``chunk_rows`` rows.

    A row group of up to ``chunk_rows`` rows is one chunk; a larger one is cut into pieces of
    ``chunk_rows`` rows (default 65536, fewer for a dataset under two million rows, so that it has
    about 32 chunks to shuffle and hold out), read front to back through pages (never the whole
    row group at once), so memory follows ``chunk_rows``, ``window`` and ``prefetch``, not the row group's size. The
    pieces of a row group form a run (see gpunn.data.base): they keep their order, and only rows
    within a window are shuffled across them, so a file that is one huge sorted row group is
    shuffled only within windows of pieces. A resume part-way through a large row group
    reads (decodes) it from its start up to its position. ``target`` and ``features`` name columns (no
    ``target``: a :class:`NoTarget` error listing the file's columns); ``weight`` names a column of each row's weight
    in the loss (fit's ``sample_weight``: gpunn.data.row_weights), left out of the default features and read once
    here, that column alone, to check it and sum it; the other options are :class:`gpunn.data.base.ChunkedSource`'s.
    """

    kind = "parquet"
    stored_dtype = numpy.dtype("float64")  # columns are read as float64 (see copy_columns)
    holds_missing = True

    @closes_files_when_refused
    def __init__(self, path, target=None, features=None, *, weight=None, chunk_rows=None, seed=0, shuffle=True,
                 window=16, validation_fraction=None, standardize=False, prefetch=1, device=None, dtype=None):
        self.path = file_name(path, "table", "a Parquet file or directory")
        files = self.list_files(self.path)
        self.files, self._open, sizes, run_lengths, self._chunks = files, [], [], [], []
        for name in files:
            self._open.append(open_parquet(name))
        self._stamps = [_stamp(name) for name in files]
        schemas = [pf.schema_arrow for pf in self._open]
        if target is None:  # before the columns' checks, which a text column would fail first
            raise NoTarget(listed_columns(schemas[0]), reader="read_parquet")
        self.feature_names, self.target_names = pick_in_every_file(files, schemas, target, features, weight=weight)
        self.weight_name = weight
        self.table_columns = listed_columns(schemas[0])  # every column (its first file's), picked or not
        default = default_chunk_rows(sum(pf.metadata.num_rows for pf in self._open))
        chunk_rows = default if chunk_rows is None else chunk_rows
        small = chunk_rows == default < 65536  # cut small by default
        self.chunk_rows = positive_int(chunk_rows, "chunk_rows")
        for i, pf in enumerate(self._open):
            for g in range(pf.metadata.num_row_groups):
                rows = pf.metadata.row_group(g).num_rows
                if rows:
                    run_lengths.append(-(-rows // self.chunk_rows))  # its pieces, read front to back
                    for start in range(0, rows, self.chunk_rows):
                        self._chunks.append((i, g, start))
                        sizes.append(min(self.chunk_rows, rows - start))
        self._lock = ForkSafeLock()
        self._cursor = None  # the row group being read front to back
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self._ready(sizes, device, dtype, window_by_rows=True, run_lengths=run_lengths, small=small)
        if weight is not None:
            self._take_weights(f"{self.path}: column {weight!r}")
        self._contents()  # now, of the files just opened: pyarrow reads on from them, but gives no descriptor to
        # read them by at the first checkpoint, when their names may hold other files (renamed over them)

    def _close_files(self):
        self.__dict__["_cursor"] = None  # (its batches read the file)
        for pf in self.__dict__.get("_open", ()):
            pf.close()

    @staticmethod
    def list_files(path):
        """[path], or the Parquet files under a directory in sorted order."""
        path = os.fspath(path)
        if os.path.isdir(path):
            held = [os.path.join(root, f) for root, _, names in os.walk(path) for f in names]
            files = sorted(f for f in held if f.lower().endswith(PARQUET_SUFFIXES))  # (a file alone: in any case)
            if not files:
                raise DataError(f"{path}: a directory with no .parquet files ({_held_instead(held)})")
            return files
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file or directory")
        return [path]

    def _fill(self, k, X, Y):
        self._fill_all(k, X, Y)

    def _fill_all(self, k, X, Y, w=None):
        i, g, start = self._chunks[k]
        with self._lock.current:
            try:
                cursor = self._cursor
                if cursor is None or cursor.group != (i, g) or cursor.position > start or cursor.pid != os.getpid():
                    cursor = self._cursor = _RowGroupCursor(self._open[i], (i, g), self.feature_names
                                                            + self.target_names + weight_column(self.weight_name),
                                                            self.chunk_rows)
                parts = cursor.take(start, X.shape[0])
            except _EmptySlice as exc:  # gpunn's bug, not the file's: an internal error (no DataError), naming where
                self._cursor = None
                raise RuntimeError(f"{self._where(k)}: {exc}") from None
            except Exception as exc:
                self._cursor = None
                self._check_unchanged(i)  # a file written over since: said so, not as pyarrow's words
                raise DataError(f"{self._where(k)}: could not be read ({type(exc).__name__}: {exc})") from None
            self._check_unchanged(i)
        n = 0
        for part in parts:
            copy_columns(part, self.feature_names, X[n:n + part.num_rows])
            copy_columns(part, self.target_names, Y[n:n + part.num_rows])
            if w is not None:
                copy_columns(part, [self.weight_name], w[n:n + part.num_rows, None])
            n += part.num_rows

    def _chunk_weights(self):
        """Each chunk's raw weights, in chunk order: the weight column alone, read file by file (the scan's pass)."""
        def pieces():
            for pf in self._open:
                for batch in pf.iter_batches(batch_size=65536, columns=[self.weight_name]):
                    self._check_open()
                    values = numpy.empty((batch.num_rows, 1))
                    copy_columns(batch, [self.weight_name], values)
                    yield values[:, 0]

        return cut_into(pieces(), self.chunk_sizes)

    def _weights_where(self, k):
        return f"{self._where(k)}: column {self.weight_name!r}"

    def _check_unchanged(self, i):
        """Refuse file ``i`` written over in place since it was opened, its footer another (after each chunk's read):
        pyarrow read on at the old footer's offsets, and a table written again with the same columns (other values)
        was read without a word, the run training on the new values and its checkpoints holding those steps. A file
        whose footer is the same (put back as it was, after a failed read) is read on; one removed, or renamed over
        by another, is not this file: the one opened is read to the end."""
        now = _stamp(self.files[i])
        if now is None or now == self._stamps[i] or now[:2] != self._stamps[i][:2]:
            return
        try:
            again = open_parquet(self.files[i])
        except DataError:  # no footer now (cut short, or being written)
            same = False
        else:
            try:
                same = again.metadata.equals(self._open[i].metadata)
            finally:
                again.close()
        if not same:
            self._cursor = None
            raise DataError(f"{self.files[i]}: the file changed since it was opened (its footer is another: other "
                            "row groups or values); construct the source again")
        self._stamps[i] = now

    def _row_offset(self, k):  # rows are counted within the file, in the messages
        first = bisect.bisect_left(self._chunks, (self._chunks[k][0],))  # the file's first chunk (file order)
        return super()._row_offset(k) - super()._row_offset(first)

    def _row_words(self, k, row):  # (its rows are counted within their file)
        return f"{self._at_row(k, row)} of {self.files[self._chunks[k][0]]}"

    def _where(self, k):
        i, g, _ = self._chunks[k]
        start = self._row_offset(k)
        return f"{self.files[i]} (row group {g}, rows {start}-{start + self.chunk_sizes[k] - 1})"

    def _not_finite(self, k, role, row, column, dtype, scaled=None):
        from .errors import not_finite_value

        name = (self.feature_names if role == "features" else self.target_names)[column]
        try:
            path, row, number = parquet_cell([self.files[self._chunks[k][0]]], self._row_offset(k) + row, name)
        except (IndexError, DataError):  # changed or cut short since: said by the chunk's count
            return ""
        return not_finite_value(path, row, name, number, dtype, scaled)

    def _weight_shown(self, k, row, value):
        if numpy.isnan(value):
            try:
                _, _, number = parquet_cell([self.files[self._chunks[k][0]]], self._row_offset(k) + row,
                                            self.weight_name)
            except (IndexError, DataError):  # changed or cut short since: the value as read
                number = value
            if number is None:
                return ", a null (a missing number)"
        return super()._weight_shown(k, row, value)

    def _name(self):
        return self.path

    def _describe(self):
        return {"path": os.path.abspath(self.path), "files": len(self.files), "target": self.target_names,
                "features": self.feature_names, "chunk_rows": self.chunk_rows,
                **({} if self.weight_name is None else {"weight": self.weight_name})}

    def _content_files(self):
        return list(self.files)


def _stamp(path):
    """(device, inode, size, modification time) of the file at ``path``, or None where there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class _EmptySlice(RuntimeError):
    """A row group's batch gave no rows where rows were asked of it: without this, take() would ask again for
    ever."""


class _RowGroupCursor:
    """Rows of one Parquet row group, read forward in record batches of about ``batch_rows`` rows."""

    def __init__(self, parquet_file, group, columns, batch_rows):
        self.group = group
        # a forked child makes its own: its parent's reader thread may have stopped inside these batches at the fork
        self.pid = os.getpid()
        self._batches = parquet_file.iter_batches(batch_size=batch_rows, row_groups=[group[1]], columns=columns)
        self._batch, self._batch_start = None, 0
        self.position = 0  # the first row a take() may still ask for

    def take(self, start, n):
        """Record batches (slices) holding rows [start, start + n) of the row group; ``start`` must
        not be before the end of the previous take."""
        parts, end = [], start + n
        while start < end:
            if self._batch is None or start >= self._batch_start + self._batch.num_rows:
                if self._batch is not None:
                    self._batch_start += self._batch.num_rows
                self._batch = next(self._batches, None)
                if self._batch is None:
                    raise EOFError(f"the row group ended at row {self._batch_start}")
                continue
            offset = start - self._batch_start
            part = self._batch.slice(offset, min(end - start, self._batch.num_rows - offset))
            if not part.num_rows:
                raise _EmptySlice(f"an empty slice at row {start} of the row group, in its batch of rows {self._batch_start}-"
                                  f"{self._batch_start + self._batch.num_rows - 1} (a bug in gpunn's Parquet reader)")
            parts.append(part)
            start += part.num_rows
        self.position = end
        return parts
