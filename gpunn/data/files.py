"""Streaming prediction files: read inputs and write outputs as ``.npy``, ``.parquet`` or ``.csv``,
a chunk of rows at a time (what ``gpunn predict`` runs), so files of any size pass through.

The output is written to a temporary file beside the target and renamed over it only when every
row is done: a failure part-way leaves no half-written file and an earlier output intact.
"""
from __future__ import annotations

import contextlib
import functools
import os

import numpy

from ..checks import PARQUET_SUFFIXES, NotFinite, read_by_position
from ..csvtext import CSV_BLOCK, tab_separated_hint, tab_separated_output_hint
from ..preflight import writes_in_place
from .base import DataError

FORMATS = {".npy": "npy", ".csv": "csv", **dict.fromkeys(PARQUET_SUFFIXES, "parquet")}
# a tab-separated file in Python, which a .tsv input's refusal shows (these readers read CSV with commas only)
TSV_IN_PYTHON = ("model.predict(pandas.read_csv(path, sep='\\t')) for its predictions, "
                 "gpunn.data.csv(path, target, delimiter='\\t') to train on it")


def file_format(path, written=False) -> str:
    """npy, parquet or csv, from the extension (a directory is read as Parquet); ``written``: ``path`` is an output,
    whose refusal as .tsv says how to make one (an input's, how Python reads one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "parquet"
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        tsv = tab_separated_output_hint(path) if written else tab_separated_hint(path, TSV_IN_PYTHON)
        raise DataError(f"{path}: unknown file type; use .npy, .parquet or .csv{tsv}")
    return kind


def read_rows(path, n_features, features=None, chunk_rows=65536):
    """(rows or None when unknown, iterator of host float64/float32 chunks (rows x n_features), the names of the
    columns read or None where they have none: an .npy file, a CSV file without a header row). The file is closed
    when the iterator ends or is closed (``close()``, read or not, as predict_file does on any error), or when this
    refuses it.

    For a table, ``features`` names the columns (default: all of them, which must then be
    ``n_features`` numeric columns). An ``.npy`` file, or a CSV file without a header row (its
    first line holds a number and not every column ``features`` names: gpunn.csvtext.csv_has_header), is read by
    position: every column, in order."""
    from .sources import _NpyFile

    path = os.fspath(path)
    kind = file_format(path)
    if kind == "npy":
        f = _NpyFile(path, "inputs")
        if f.columns != n_features:
            f.close()
            raise DataError(f"{path}: {f.columns} columns, the model takes {n_features} features")

        def chunks():
            try:
                for start in range(0, f.rows, chunk_rows):
                    out = numpy.empty((min(chunk_rows, f.rows - start), f.columns),
                                      f.dtype if f.dtype.kind == "f" else "float64")
                    f.read(start, out)
                    yield out
            finally:
                f.close()
        return f.rows, _FileChunks(chunks(), f.close), None
    from ..csvtext import delimiter_hint
    from .csv_tables import csv_column_types
    from .table_columns import copy_columns, pick_columns, pyarrow_module

    if kind == "parquet":
        from .parquet_tables import ParquetSource, open_parquet
        from .table_columns import pick_in_every_file

        files, opened = ParquetSource.list_files(path), []

        def close():
            for pf in opened:
                pf.close()

        try:
            opened.extend(open_parquet(name) for name in files)
            names, _ = pick_in_every_file(files, [pf.schema_arrow for pf in opened], None, features,
                                          width=n_features)
        except BaseException:
            close()
            raise
        rows = sum(p.metadata.num_rows for p in opened)

        def batches():
            try:
                for name, pf in zip(files, opened):
                    try:
                        yield from pf.iter_batches(batch_size=chunk_rows, columns=names)
                    except Exception as exc:
                        raise DataError(f"{name}: could not be read ({type(exc).__name__}: {exc})") from None
            finally:
                close()
    else:
        pyarrow_module("csv")  # without pyarrow: MissingExtra, before the file is looked at
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file")
        from ..csvtext import csv_first_text, csv_has_header, data_start, first_value_is_text
        from .csv_tables import check_csv_kind, csv_schema, parse_rows, refused_rows, row_range_buffers

        check_csv_kind(path)  # as training words it; pyarrow's "'utf-8' codec can't decode byte 0xe9" named no remedy

        header = csv_has_header(path, columns=features)  # a row holding the columns asked for: a header
        try:
            schema = csv_schema(path, header)
            names, _ = pick_columns(path, schema, None, features if header else None,
                                    lambda i: csv_first_text(path, i, header),
                                    lambda i: header and first_value_is_text(path, i),  # (no header: no names)
                                    width=n_features)
        except DataError as exc:
            hint = delimiter_hint(path)
            if not hint:
                raise  # as it is: gpunn predict words a table_columns.MissingColumns for its model
            raise DataError(f"{exc}{hint}") from None
        columns, types, rows = schema.names, csv_column_types(schema, names), None  # (no header: f0, f1, ...)

        def read(buffer):  # whole rows, as CsvSource reads its chunks
            return parse_rows(buffer, columns, names, types)

        def batches():  # pieces of CSV_BLOCK bytes cut at line ends (csv_tables.row_ranges): a row of any length reads
            with open(path, "rb") as fh:
                for n, ((start, end), buffer) in enumerate(row_range_buffers(fh, path, data_start(fh, header),
                                                                             CSV_BLOCK)):
                    try:
                        table = read(buffer)
                    except Exception as exc:  # a value that is not a number, a row of another width
                        hint = delimiter_hint(path) if n == 0 else ""
                        raise DataError(f"{refused_rows(path, start, end, read, columns if header else None, exc)}"
                                        f"{hint}") from None
                    if table.num_rows:
                        yield table
    if len(names) != n_features:  # a ";"-delimited CSV gives one column (its first row taken for a header)
        if kind == "parquet":
            close()
        hint = delimiter_hint(path) if kind == "csv" else ""
        raise DataError(f"{path}: {len(names)} feature columns ({', '.join(names)}), the model takes {n_features}; "
                        + (f"--features must name {n_features}" if features else "name them with --features") + hint)

    def chunks():
        with contextlib.closing(batches()) as pieces:  # closed with this: the file too
            for batch in pieces:
                out = numpy.empty((batch.num_rows, len(names)))
                copy_columns(batch, names, out)
                yield out
    # (a CSV file is opened by batches() as it starts: nothing open before)
    return rows, _FileChunks(chunks(), close if kind == "parquet" else None), names if kind == "parquet" or header \
        else None


class _FileChunks:
    """read_rows' iterator: ``items`` (its generator of chunks), whose ``close()`` also closes the files opened for
    it (``release``), read or not. A generator closed before its first ``next()`` (predict_file's output refused)
    runs no ``finally``, and on Python 3.12 its frame keeps what it holds (the .npy file, the ParquetFiles) until
    the generator itself goes, which a held error's traceback delays."""

    def __init__(self, items, release=None):
        self._items, self._release = items, release

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._items)

    def close(self):
        try:
            self._items.close()
        finally:
            if self._release is not None:
                self._release()


class _Output:
    """A file being written under a temporary name; ``commit()`` renames it into place.

    The temporary file is made as gpunn.atomic.atomic_write makes its own (``temp_beside``:
    ``.NAME.PID-HOST.MARKrandom.tmp``, the mode a plain open gives), so one left by a killed process is removed by the next
    write to the same path, and errors name the output, not the temporary file."""

    def __init__(self, path):
        from ..atomic import temp_beside

        self.path = os.fspath(path)
        fd, self.tmp = temp_beside(self.path)  # with the mode a plain open gives the output
        os.close(fd)

    def commit(self):
        """The closed file made durable and renamed into place, as atomic_write's (a crash after the rename left an
        empty or short OUT where the data had not reached the disk yet); then the rename made durable."""
        from ..atomic import fsync_directory

        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # (a full disk or a network file system's write error may show only here)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise self.naming(exc) from None
        fsync_directory(os.path.dirname(os.path.abspath(self.path)))

    def naming(self, exc):
        """``exc`` of a write of the temporary file, saying which file could not be written: OUT (a full disk said
        "[Errno 28] No space left on device", pyarrow's "Error writing bytes to file", naming no file)."""
        from ..atomic import naming

        return naming(exc, self.path)

    def abort(self):
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def _removes_its_temp_when_refused(init):
    """A writer's ``__init__`` that, refused after ``_Output`` made the temporary file (pyarrow's ParquetWriter or
    schema refusing, a dtype a CSV writer cannot format, a disk full), closes what it opened and removes that file
    before the error reaches the caller: it stayed on disk until the next write to the same path. A write's error
    (OSError) names OUT (``_Output.naming``)."""
    @functools.wraps(init)
    def removing_init(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (out of tracebacks: gpunn/hints.py's keywords_checked)
        try:
            init(self, *args, **kwargs)
        except BaseException as exc:
            fh = self.__dict__.get("fh")
            if fh is not None:
                with contextlib.suppress(OSError):  # (its flush, on a full disk too: the error to tell is exc)
                    fh.close()
            if "tmp" in self.__dict__:
                self.abort()
                if isinstance(exc, OSError):
                    raise self.naming(exc) from None
            raise
    return removing_init


def _names_its_output(method):
    """A writer's ``write`` or ``close`` whose OSError (a full disk, a quota, an I/O error) names OUT, not the
    temporary file or no file at all (``_Output.naming``); a writer onto a stream has no OUT to name (one
    written in place, InPlaceCsvWriter, its path)."""
    @functools.wraps(method)
    def naming_method(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            if not isinstance(self, _Output) or "path" not in self.__dict__:
                raise
            raise self.naming(exc) from None
    return naming_method


class NpyWriter(_Output):
    """Rows appended to a ``.npy`` file whose header is fixed up with the row count at the end."""

    @_removes_its_temp_when_refused
    def __init__(self, path, n_columns, dtype, names=None):
        super().__init__(path)
        self.columns, self.dtype, self.rows = n_columns, numpy.dtype(dtype), 0
        self.fh = open(self.tmp, "wb")
        self.header_bytes = len(self._header(10**18))
        self.fh.write(b"\0" * self.header_bytes)

    def _header(self, rows, length=None):
        fields = {"descr": numpy.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (rows, self.columns)}
        text = repr(fields).encode("latin1")
        length = length or (-(-(10 + len(text) + 1) // 64) * 64)  # magic + length field + text + "\n", 64-aligned
        pad = length - 10 - len(text) - 1
        return b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little") + text + b" " * pad + b"\n"

    @_names_its_output
    def write(self, P):
        self.fh.write(numpy.ascontiguousarray(P, self.dtype).tobytes())
        self.rows += P.shape[0]

    @_names_its_output
    def close(self):
        if self.fh.closed:  # write_rows closes a writer again on a failure, a Ctrl-C in this close's flush too
            return
        try:
            self.fh.seek(0)
            self.fh.write(self._header(self.rows, self.header_bytes))
        finally:  # closed on a full disk too (its flush failing): no descriptor left open on the removed file
            self.fh.close()


class CsvWriter(_Output):
    """Rows appended to a CSV file, the one writer of gpunn predict's CSV outputs (streamed or not): a header
    row when the model knows its targets' names, and each value with the significant digits that read back
    the same value of ``dtype`` (9 for float32, 17 for float64: 1 + the mantissa's bits in decimal,
    rounded up), so the digits depend on neither the path nor the input's size. The file is UTF-8 whatever
    the locale (gpunn's CSV readers, through pyarrow, read UTF-8): target names from a table's header may
    be any Unicode."""

    @_removes_its_temp_when_refused
    def __init__(self, path, n_columns, dtype, names=None, keep=None):
        super().__init__(path)
        self.fh = open(self.tmp, "w", newline="", encoding="utf-8")  # (held first: a refusal in _start closes it)
        self._start(self.fh, n_columns, dtype, names, keep)

    def _start(self, fh, n_columns, dtype, names, keep):
        import csv

        info = numpy.finfo(dtype)
        self.fmt = f"%.{int(numpy.ceil(1 + (info.nmant + 1) * numpy.log10(2)))}g"
        self.fh, self.keep = fh, keep
        for field in keep.fields if keep else ():  # before the header: a kept column CSV text cannot hold
            _check_csv_field_type(field)
        if names or keep:  # (kept columns: the predictions named as a Parquet OUT names them)
            csv.writer(self.fh, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(
                (keep.names if keep else []) + prediction_names(names, n_columns))  # as pyarrow's was

    @_names_its_output
    def write(self, P, rows=65536):
        # one % per block of rows: numpy.savetxt formats a row at a time in Python, 4x slower
        line = ",".join([self.fmt] * P.shape[1]) + "\n"
        kept = self.keep.take(P.shape[0]) if self.keep else None
        for i in range(0, P.shape[0], rows):
            block = P[i:i + rows]
            text = (line * block.shape[0]) % tuple(block.ravel().tolist())
            if kept is not None:  # each row's kept fields before its predictions
                text = _with_kept_fields(kept.slice(i, rows), text)
            self.fh.write(text)

    @_names_its_output
    def close(self):
        self.fh.close()


class StreamCsvWriter(CsvWriter):
    """CsvWriter's rows onto an open text stream (gpunn predict MODEL IN -: standard output, for a pipe): no file to
    rename into place or remove, and what was written before a failure stays written (its reader has it)."""

    def __init__(self, stream, n_columns, dtype, names=None, keep=None):
        self._start(stream, n_columns, dtype, names, keep)

    def close(self):
        self.fh.flush()

    def commit(self):
        pass

    def abort(self):
        pass


class InPlaceCsvWriter(StreamCsvWriter):
    """CsvWriter's rows written into ``path`` where it is no regular file (a named pipe, a device: preflight.
    writes_in_place), as StreamCsvWriter writes onto standard output: a temporary file renamed over it replaced the
    pipe with a file and left its reader waiting. What was written before a failure stays written (its reader has
    it); a write's error names ``path``."""

    def __init__(self, path, n_columns, dtype, names=None, keep=None):
        self.path = os.fspath(path)
        fh = open(self.path, "w", newline="", encoding="utf-8")
        try:
            self._start(fh, n_columns, dtype, names, keep)
        except BaseException:
            fh.close()
            raise

    @_names_its_output
    def close(self):
        self.fh.close()


class TableWriter(_Output):
    """Parquet output, one record batch per chunk; columns named after the targets (y0, y1, ...
    when the model does not know them)."""

    @_removes_its_temp_when_refused
    def __init__(self, path, n_columns, dtype, names=None, keep=None):
        from .table_columns import pyarrow_module

        pyarrow = pyarrow_module()
        super().__init__(path)
        self.names = prediction_names(names, n_columns)
        self.pa = pyarrow
        kept = keep.fields if keep else []
        schema = pyarrow.schema([*kept, *((n, pyarrow.from_numpy_dtype(numpy.dtype(dtype))) for n in self.names)])
        self.writer = pyarrow_module("parquet").ParquetWriter(self.tmp, schema)
        self.schema, self.dtype, self.keep = schema, numpy.dtype(dtype), keep
        self.predicted = list(schema)[len(kept):]  # the predictions' fields, after the kept columns

    @_names_its_output
    def write(self, P):
        # each column from its buffer: pyarrow.array(numpy_array) imports pandas, 0.3-0.5 s (see copy_columns)
        columns = [numpy.ascontiguousarray(P[:, j], self.dtype) for j in range(P.shape[1])]
        arrays = [self.pa.Array.from_buffers(field.type, len(c), [None, self.pa.py_buffer(c)])
                  for field, c in zip(self.predicted, columns)]
        if self.keep:  # IN's kept columns first, as many rows
            arrays = [column.combine_chunks() for column in self.keep.take(P.shape[0]).columns] + arrays
        self.writer.write_batch(self.pa.record_batch(arrays, schema=self.schema))

    @_names_its_output
    def close(self):
        self.writer.close()


def prediction_names(names, n_columns) -> list:
    """The predictions' column names in a table OUT: the model's targets', else y0, y1, ..."""
    return list(names) if names else [f"y{i}" for i in range(n_columns)]


def csv_fields(column):
    """A kept column's values (a pyarrow array) as CSV fields, a pyarrow string array: text as read (a CSV IN's),
    another type as pyarrow casts it to text; quoted where a field holds the delimiter, a quote or a line end, or
    starts or ends with a space (which a reader that strips the spaces around fields would lose); a null
    empty."""
    import pyarrow.compute as pc

    text = pc.fill_null(column if str(column.type) in ("string", "large_string") else pc.cast(column, "string"), "")
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(text, '[,"\r\n]|^ | $'), quoted, text)


def _check_csv_field_type(field) -> None:
    """Refuse a kept column whose type has no CSV text (a list, a struct): pyarrow casts it to none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(pa.array([], field.type), "string")
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        raise ValueError(f"--keep {field.name}: its values are {field.type}, which a CSV field cannot hold; write a "
                         ".parquet OUT to keep it") from None


def _with_kept_fields(kept, numbers: str) -> str:
    """The CSV lines ``numbers`` (the predictions', each ended by a line end) with the fields of the pyarrow Table
    ``kept`` (as many rows) before them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lines = pa.array(numbers.split("\n")[:-1])
    joined = pc.binary_join_element_wise(*(csv_fields(c.combine_chunks()) for c in kept.columns), lines, ",")
    return pc.binary_join(pa.ListArray.from_arrays([0, len(joined)], joined), "\n")[0].as_py() + "\n"


def _file_column(path, names, index) -> int:
    """The place (from 0) in the CSV file ``path`` of column ``index`` of those read (``names``: their names, or
    None for every column of a file without a header row, in order)."""
    if names is None:
        return index
    from ..csvtext import csv_names

    return (csv_names(path, columns=names) or []).index(names[index])


def not_finite_in_file(path, exc, row, names, csv) -> str:
    """The refusal of the NaN or infinite values an input file's rows hold (``exc``: checks.NotFinite), the first
    at data row ``row`` of the file (from 0) and its column ``exc.column`` among those read (``names``, or None),
    in training's words: a CSV file's (``csv``) line (from 1, the header's counted, as an editor shows it) and
    column (csvtext.not_finite: "x.csv line 3: column 'b': 'nan' is NaN; clean or impute it first"), an .npy or
    Parquet file's row (from 0, as NumPy and pandas index it; in a directory of Parquet files, the file's) and
    column with the value it holds (errors.not_finite_value: "x.parquet row 5: column 'b': nan is NaN; ...").
    A CSV value that is no number but a missing one to pyarrow (an empty value, "NA") is refused as one that is
    not a number (csvtext.not_a_number), as when IN is read whole. Where the value read again is finite (the file
    changed since), the values are said by their count's words, without it."""
    path = os.fspath(path)
    if csv:
        from ..csvtext import csv_column, csv_field, csv_line, not_finite

        line, column = csv_line(path, row, header=names is not None), csv_column(names, exc.column)
        text = csv_field(path, row, _file_column(path, names, exc.column), header=names is not None)
        said = not_finite(text, column, exc.dtype, scaled=exc.scaled) if text is not None else ""  # "NA": not a number
        said, place = said and f"{path} line {line}: {said}", f"line {line} ({column})"
    else:
        said = _stored_not_finite(path, exc, row, names)
        place = f"row {row} (column {repr(names[exc.column]) if names else exc.column})"
    what = (f"NaN or infinite values after conversion to {exc.dtype}" if exc.scaled is None
            else f"values infinite in {exc.dtype} once standardized")
    return said or f"{path}: {what}, the first at {place}; clean or impute them first"


def more_not_finite_in_file(path, exc, X, first_row, names, csv, later) -> str:
    """What follows not_finite_in_file's refusal, as training's follows its own (errors.more_not_finite): how many
    more values of the rows read with the refused one (``X``: the input file's data rows from ``first_row`` on, as
    read; ``exc.row`` among them) are NaN or infinite after conversion to ``exc.dtype``, and where the first few are
    (a CSV file's lines, an .npy or Parquet file's rows); ``later``: rows follow, not read. "" for none, and for values
    refused once standardized (there, as in training, the first alone)."""
    if exc.scaled is not None:
        return ""
    from .errors import more_not_finite

    with numpy.errstate(over="ignore", invalid="ignore"):  # (1e39 is infinite in float32, as the model reads it)
        bad = ~numpy.isfinite(numpy.asarray(X).astype(exc.dtype, copy=False))
    bad[exc.row, exc.column] = False

    def at_rows(rows):
        if csv:
            return [f"line {line}" for line in _csv_lines(path, [first_row + r for r in rows], names is not None)]
        return [f"row {first_row + r}" for r in rows]
    return more_not_finite([bad], len(X), at_rows, later)


def _csv_lines(path, rows, header) -> list:
    """The lines (from 1, as csvtext.csv_line counts them) on which data rows ``rows`` (ascending, from 0) of the CSV
    file ``path`` begin, read once up to the last of them."""
    from ..csvtext import csv_rows, data_start

    lines = []
    with open(path, "rb") as fh:
        for n, (line, _) in enumerate(csv_rows(fh, data_start(fh, header))):
            if n == rows[len(lines)]:
                lines.append(line)
                if len(lines) == len(rows):
                    break
    return lines


def _more_follow(chunks) -> bool:
    """Whether ``chunks`` (read_rows') has another chunk, read to see: on an error's path only."""
    try:
        return next(chunks, None) is not None
    except Exception:  # the next rows refused (a value that is not a number): rows follow
        return True


def _stored_not_finite(path, exc, row, names) -> str:
    """not_finite_in_file's words for an .npy or Parquet file (errors.not_finite_value); "" where the value read
    again is finite or cannot be read."""
    from .errors import not_finite_value

    try:
        if names is None:  # an .npy array, by position (whatever its name: IN read whole is read by its bytes)
            from .sources import _NpyFile

            array = _NpyFile(path, "inputs", allow_1d=True)
            try:
                return not_finite_value(path, row, exc.column, array.value(row, exc.column), exc.dtype, exc.scaled)
            finally:
                array.close()
        from .parquet_tables import ParquetSource, parquet_cell

        file, row, number = parquet_cell(ParquetSource.list_files(path), row, names[exc.column])
        return not_finite_value(file, row, names[exc.column], number, exc.dtype, exc.scaled)
    except (IndexError, DataError):
        return ""


def predict_file(model, in_path, out_path, features=None, chunk_rows=65536, keep=None) -> int:
    """Predictions of ``model`` for every row of ``in_path`` written to ``out_path``; returns the rows.

    Inputs and outputs are .npy, .parquet (or a directory of them, as input) or .csv; tables take
    the model's saved feature names (or ``features``) as columns and get its target names as output
    columns (a Parquet output y0, y1, ... when the model does not know them, a CSV output no header row);
    ``out_path`` may be an open text stream instead (CSV written onto it). ``keep``: a gpunn.data.kept.KeptColumns of
    the input, written first in a table output."""
    columns = getattr(model, "data_columns", None) or {}
    features = features or columns.get("features")
    _, chunks, names = read_rows(in_path, model.layer_sizes[0], features, chunk_rows)
    with contextlib.closing(chunks):  # the input closed on any error too (the output's), before it reaches the caller
        csv = file_format(in_path) == "csv"
        writer = output_writer(out_path, model.layer_sizes[-1], model._prediction_dtype(), columns.get("targets"), keep)
        rows = 0

        def predictions():
            nonlocal rows
            for X in chunks:
                try:
                    with read_by_position():  # (picked by name, or a headerless file's, in order: the help says so)
                        P = model.backend.to_host(model.predict(X))
                except NotFinite as exc:  # NaN or inf in the inputs: say where in the file, and how many more
                    more = more_not_finite_in_file(in_path, exc, X, rows, names, csv, _more_follow(chunks))
                    raise DataError(not_finite_in_file(in_path, exc, rows + exc.row, names, csv) + more) from None
                rows += P.shape[0]
                yield P
            if rows == 0:
                raise DataError(f"{in_path}: no rows to predict")

        with rows_written_said(lambda: rows):
            write_rows(writer, predictions())
    return rows


def predict_scored(model, source, out_path, chunk_rows, keep=None) -> tuple[int, dict]:
    """(rows, ``evaluate``'s logs) of one pass over ``source`` (a table source of the model's feature and target
    columns): each piece's predictions written to ``out_path`` as ``predict_file`` writes them (the rows of
    ``model.predict(source)``) while ``model.evaluate(source)``'s sums add up, so the metrics are evaluate's to the
    bit (``model._scored(logs, None)`` gives them, or evaluate's error, with OUT written). A refusal of the source's
    rows (a NaN target too) stops the pass, and OUT is not written. ``chunk_rows``: evaluate's (gpunn.model.
    PREDICT_CHUNK_ROWS, given by the caller: gpunn.data does not import the model). ``keep``: as for ``predict_file``."""

    names = (getattr(model, "data_columns", None) or {}).get("targets")
    writer, rows = output_writer(out_path, model.layer_sizes[-1], model._prediction_dtype(), names, keep), 0

    def write(P):
        nonlocal rows
        P = model.backend.to_host(P)
        writer.write(P)
        rows += P.shape[0]

    with rows_written_said(lambda: rows), committed(writer), model.backend.use():  # (an empty table is refused as made)
        logs = model._evaluated_source(source, chunk_rows, each=write)
    return rows, logs


@contextlib.contextmanager
def rows_written_said(rows):
    """A DataError out of the block (a refusal of the input's rows) given ``rows_written``, ``rows()``: the rows of
    predictions written before it, which an output written in place (a named pipe) or onto a stream keeps; gpunn
    predict says so (none: none written). A refusal before the output is opened has no ``rows_written``."""
    try:
        yield
    except DataError as exc:
        exc.rows_written = rows()
        raise


def output_writer(out_path, n_columns, dtype, names=None, keep=None):
    """The writer of a prediction file (.npy, .csv or .parquet, by name; CSV onto a text stream given in place of a
    path): ``names``, the targets' (or None);
    ``keep``, the input's columns a table writes first (gpunn.data.kept.KeptColumns, or None)."""
    if hasattr(out_path, "write"):  # a text stream: CSV onto it
        return StreamCsvWriter(out_path, n_columns, dtype, names, keep)
    kind = file_format(out_path, written=True)
    if writes_in_place(out_path):  # a named pipe, a device: written into as its rows are predicted, never renamed over
        if kind != "csv":
            raise ValueError(_not_in_place(out_path, kind))
        return InPlaceCsvWriter(out_path, n_columns, dtype, names, keep)
    if kind != "npy":
        return (CsvWriter if kind == "csv" else TableWriter)(out_path, n_columns, dtype, names, keep)
    if keep:
        raise ValueError(f"{out_path}: an .npy array holds the predictions alone; write a .csv or .parquet file to keep "
                         "columns of the input beside them")
    return NpyWriter(out_path, n_columns, dtype, names)


def _not_in_place(path, kind) -> str:
    """The refusal of an .npy or Parquet output streamed into ``path``, a named pipe or a device, which takes bytes in
    order alone."""
    from ..preflight import in_place_kind

    why = ("an .npy array's header, written first, holds its row count, known once every row is predicted"
           if kind == "npy" else "pyarrow's Parquet writer needs a file it can seek in")
    return (f"{path} is {in_place_kind(path)}, written into as the rows are predicted, and {why}: write a .csv file "
            f"into it, or write the .{kind} file elsewhere and copy it in")


def write_rows(writer, chunks) -> None:
    """Write each chunk of rows, then rename the file into place (``committed``)."""
    with committed(writer):
        for P in chunks:
            writer.write(P)


@contextlib.contextmanager
def committed(writer):
    """``writer`` closed and renamed into place as the block ends; on any failure in it (Ctrl-C too, up to the
    rename) the file removed. Each writer's ``close`` may be called again after one that failed part-way."""
    try:
        yield writer
        writer.close()
        writer.commit()
    except BaseException:
        try:
            writer.close()
        finally:
            writer.abort()
        raise
