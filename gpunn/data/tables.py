"""Parquet and CSV tables streamed through pyarrow (an optional extra: ``pip install "gpunn[data]"``).

Columns are picked by name: ``target`` (one name or a list) becomes Y, ``features`` (default:
every other column) X. Every picked column must be numeric (integers, floats or booleans);
nulls count as NaN and stop the run with the file and row range named.
"""
from __future__ import annotations

import os
import threading

import numpy

from ..checks import positive_int
from .base import ChunkedSource, DataError


def pyarrow_module(name):
    """``pyarrow.<name>``, or an ImportError that says how to install it."""
    try:
        import importlib

        return importlib.import_module(f"pyarrow.{name}")
    except ImportError:
        raise ImportError("reading Parquet and CSV needs pyarrow, which is not installed: "
                          'pip install "gpunn[data]"') from None


def _names(value, what):
    if value is None:
        return None
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s) for s in value]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{what} lists no column names")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a column twice: {names}")
    return names


def pick_columns(path, schema, target, features):
    """(features, targets) column names, checked against ``schema``: present and numeric."""
    import pyarrow

    targets = _names(target, "target")
    features = _names(features, "features")
    available = list(schema.names)
    wanted = (targets or []) + (features or [])
    missing = [n for n in wanted if n not in available]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are: {', '.join(available)}")
    if features is None:
        features = [n for n in available if n not in (targets or [])]
        if not features:
            raise DataError(f"{path}: no feature columns are left besides the target(s) {targets}")
    overlap = set(features) & set(targets or [])
    if overlap:
        raise ValueError(f"{sorted(overlap)} is both a feature and a target")
    for name in features + (targets or []):
        kind = schema.field(name).type
        if not (pyarrow.types.is_integer(kind) or pyarrow.types.is_floating(kind) or pyarrow.types.is_boolean(kind)
                or pyarrow.types.is_null(kind)):
            raise DataError(f"{path}: column {name!r} is {kind}, not numeric; every feature and target column "
                            "must hold numbers")
    return features, targets


def copy_columns(table, names, out):
    """Columns ``names`` of a pyarrow table or record batch into the host matrix ``out``."""
    for j, name in enumerate(names):
        column = table.column(name)
        if column.null_count:
            column = column.cast("float64").fill_null(float("nan"))
        with numpy.errstate(over="ignore"):
            out[:, j] = column.to_numpy(zero_copy_only=False)


def open_parquet(name):
    """A pyarrow ParquetFile that reads row groups page by page (no pre-buffering of whole column
    chunks, a 1 MiB read buffer), so iterating a row group takes memory by batch, not by row group."""
    pq = pyarrow_module("parquet")
    try:
        return pq.ParquetFile(name, pre_buffer=False, buffer_size=1 << 20)
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError: not Parquet, or cut short
        raise DataError(f"{name}: not a readable Parquet file ({exc})") from None


class ParquetSource(ChunkedSource):
    """A Parquet file, or a directory of them read as one dataset, in chunks of at most ``chunk_rows`` rows.

    A row group of up to ``chunk_rows`` rows is one chunk; a larger one is cut into pieces of
    ``chunk_rows`` rows, read front to back through pages (never the whole row group at once), so
    memory follows ``chunk_rows``, ``window`` and ``prefetch``, not the row group's size. The
    pieces of a row group form a run (see gpunn.data.base): they keep their order, and only rows
    within a window are shuffled across them, so a file that is one huge sorted row group is
    shuffled no better than a CSV read in file order. A resume part-way through a large row group
    reads (decodes) it from its start up to its position.
    """

    kind = "parquet"

    def __init__(self, path, target, features=None, *, chunk_rows=65536, seed=0, shuffle=True, window=16,
                 validation_fraction=None, standardize=False, prefetch=1, device=None, dtype=None):
        self.path = os.fspath(path)
        self.chunk_rows = positive_int(chunk_rows, "chunk_rows")
        files = self.list_files(self.path)
        self.files, self._open, sizes, runs, self._chunks = files, [], [], [], []
        for i, name in enumerate(files):
            pf = open_parquet(name)
            schema = pf.schema_arrow
            if i == 0:
                self.feature_names, self.target_names = pick_columns(name, schema, target, features)
                if self.target_names is None:
                    raise ValueError("target: name the target column(s)")
            else:
                pick_columns(name, schema, self.target_names, self.feature_names)
            self._open.append(pf)
            for g in range(pf.metadata.num_row_groups):
                rows = pf.metadata.row_group(g).num_rows
                if rows:
                    runs.append(list(range(len(sizes), len(sizes) + -(-rows // self.chunk_rows))))
                    for start in range(0, rows, self.chunk_rows):
                        self._chunks.append((i, g, start))
                        sizes.append(min(self.chunk_rows, rows - start))
        self._lock = threading.Lock()
        self._cursor = None  # the row group being read front to back
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self._ready(sizes, device, dtype, window_by_rows=True, runs=runs)

    @staticmethod
    def list_files(path):
        """[path], or the Parquet files under a directory in sorted order."""
        path = os.fspath(path)
        if os.path.isdir(path):
            files = sorted(os.path.join(root, f) for root, _, names in os.walk(path)
                           for f in names if f.endswith((".parquet", ".parq", ".pq")))
            if not files:
                raise DataError(f"{path}: a directory with no .parquet files")
            return files
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file or directory")
        return [path]

    def _fill(self, k, X, Y):
        i, g, start = self._chunks[k]
        with self._lock:
            try:
                cursor = self._cursor
                if cursor is None or cursor.group != (i, g) or cursor.position > start:
                    cursor = self._cursor = _RowGroupCursor(self._open[i], (i, g), self.feature_names
                                                            + self.target_names, self.chunk_rows)
                parts = cursor.take(start, X.shape[0])
            except Exception as exc:
                self._cursor = None
                raise DataError(f"{self._where(k)}: could not be read ({type(exc).__name__}: {exc})") from None
        n = 0
        for part in parts:
            copy_columns(part, self.feature_names, X[n:n + part.num_rows])
            copy_columns(part, self.target_names, Y[n:n + part.num_rows])
            n += part.num_rows

    def _row_offset(self, k):  # rows are counted within the file, in the messages
        i = self._chunks[k][0]
        return sum(n for (f, _, _), n in zip(self._chunks[:k], self.chunk_sizes[:k]) if f == i)

    def _where(self, k):
        i, g, _ = self._chunks[k]
        start = self._row_offset(k)
        return f"{self.files[i]} (row group {g}, rows {start}-{start + self.chunk_sizes[k] - 1})"

    def _name(self):
        return self.path

    def _describe(self):
        return {"path": os.path.abspath(self.path), "files": len(self.files), "target": self.target_names,
                "features": self.feature_names, "chunk_rows": self.chunk_rows}


class _RowGroupCursor:
    """Rows of one Parquet row group, read forward in record batches of about ``batch_rows`` rows."""

    def __init__(self, parquet_file, group, columns, batch_rows):
        self.group = group
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
            parts.append(part)
            start += part.num_rows
        self.position = end
        return parts


class CsvSource(ChunkedSource):
    """A CSV file with a header row, read front to back in blocks of ``block_size`` bytes.

    A CSV file cannot be read from the middle, so chunks (the blocks' rows) keep their file order
    and only rows within a window of chunks are shuffled; construction reads the file once to
    count rows and check every value; a resume reads up to its position again.
    """

    kind = "csv"

    def __init__(self, path, target, features=None, *, block_size=1 << 22, delimiter=",", seed=0, shuffle=True,
                 window=16, validation_fraction=None, standardize=False, prefetch=1, device=None, dtype=None):
        self._csv = pyarrow_module("csv")
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise DataError(f"{self.path}: no such file")
        self.block_size, self.delimiter = int(block_size), delimiter
        schema = self._reader(None).schema
        self.feature_names, self.target_names = pick_columns(self.path, schema, target, features)
        if self.target_names is None:
            raise ValueError("target: name the target column(s)")
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        sizes, reader = [], self._reader(self.feature_names + self.target_names)
        while True:
            batch = self._next(reader, sum(sizes))
            if batch is None:
                break
            if batch.num_rows:
                sizes.append(batch.num_rows)
        self._lock = threading.Lock()
        self._stream, self._next_chunk = None, 0
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self._ready(sizes, device, dtype, window_by_rows=True, runs=[range(len(sizes))])  # one run: file order

    def _reader(self, columns):
        import pyarrow

        read = self._csv.ReadOptions(block_size=self.block_size)
        parse = self._csv.ParseOptions(delimiter=self.delimiter)
        convert = (self._csv.ConvertOptions() if columns is None else
                   self._csv.ConvertOptions(include_columns=columns, column_types={c: pyarrow.float64() for c in columns}))
        try:
            return self._csv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=convert)
        except Exception as exc:
            raise DataError(f"{self.path}: not a readable CSV file with a header row ({exc})") from None

    def _next(self, reader, row):
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return None
        except Exception as exc:  # ArrowInvalid: a value that is not a number, a ragged row
            raise DataError(f"{self.path}: bad data after row {row} ({exc})") from None
        return batch

    def _fill(self, k, X, Y):
        with self._lock:
            if self._stream is None or self._next_chunk > k:  # start again from the top
                self._stream, self._next_chunk = self._reader(self.feature_names + self.target_names), 0
            batch = None
            while self._next_chunk <= k:
                batch = self._next(self._stream, self._row_offset(self._next_chunk))
                while batch is not None and batch.num_rows == 0:
                    batch = self._next(self._stream, self._row_offset(self._next_chunk))
                if batch is None:
                    raise DataError(f"{self._where(k)}: the file ended early (was it changed since it was opened?)")
                self._next_chunk += 1
        if batch.num_rows != X.shape[0]:
            raise DataError(f"{self._where(k)}: holds {batch.num_rows} rows, the first pass read {X.shape[0]} "
                            "(was the file changed?)")
        copy_columns(batch, self.feature_names, X)
        copy_columns(batch, self.target_names, Y)

    def _where(self, k):
        start = self._row_offset(k)
        return f"{self.path} (data rows {start}-{start + self.chunk_sizes[k] - 1})"

    def _name(self):
        return self.path

    def _describe(self):
        return {"path": os.path.abspath(self.path), "target": self.target_names, "features": self.feature_names,
                "block_size": self.block_size}
