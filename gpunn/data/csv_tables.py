"""CSV files read as tables through pyarrow: :class:`CsvSource`, training's source (chunks at byte offsets, its index
kept in :func:`cache_directory`), and how every gpunn reader of a CSV file (gpunn predict's streamed read and
--keep's too) reads it: the file checked as UTF-8 text (:func:`check_csv_kind`) and typed from its first MiB
(:func:`csv_schema`), its rows cut at row ends outside quoted values (:func:`row_ranges`), read into Arrow's memory
(:func:`read_range`) and parsed (:func:`parse_rows`), and a refused row named by its line (:func:`refused_rows`).
The columns are picked as :mod:`gpunn.data.table_columns` says.
"""
from __future__ import annotations

import contextlib
import io
import os
import re

import numpy

from .. import environment
from ..checks import flag, positive_int
from ..csvtext import read_as
from .base import ChunkedSource, DataError, PreadFile, closes_files_when_refused, default_chunk_rows, pread_full
from .errors import file_name
from .row_weights import ChunkWeights, summary
from .table_columns import (MissingColumns, NoTarget, copy_columns, listed_columns, pick_columns, pyarrow_module,
                            weight_column)


def _no_file(path) -> str:
    """The refusal of a CSV source's ``path`` that is no file: missing, or a named pipe (a socket, a device), whose
    bytes can be read once: a source reads its file at each chunk's byte offset, every epoch (it said "no such file"
    of a pipe that was there, and its writer waited for ever)."""
    from ..preflight import in_place_kind

    if not os.path.exists(path) or os.path.isdir(path):
        return f"{path}: no such file"
    return (f"{path} is {in_place_kind(path)}, whose bytes can be read once, and a CSV source reads its file at each "
            "chunk's place, every epoch: save the rows to a file and give that")


def csv_column_types(schema, names) -> dict:
    """The types pyarrow's CSV reader parses the picked columns ``names`` as, the same in every block: float64, or
    bool for a column ``schema`` (the first block's) gives as one (csvtext.read_as: true/false, which float64
    refused as invalid)."""
    pyarrow = pyarrow_module()
    return {c: pyarrow.bool_() if read_as(schema.field(c).type) == "boolean" else pyarrow.float64() for c in names}


def refused_rows(path, start, end, read, names, exc, decimal=".", delimiter=",", file=None) -> str:
    """The error of a CSV file whose rows in the bytes [start, end) (whole rows: a training chunk, a batch gpunn
    predict streams) ``read`` refused with ``exc``, in one rule for both: "x.csv line 5: column 'b': 'oops' is not
    a number" at the row first_refused finds (``names``: the file's column names, None without a header row), or,
    where the rows read again all read, "x.csv: bad data from line 4 on (exc)", the line of the first data row
    from ``start`` (csvtext.csv_line: empty lines skipped, as the readers skip them). ``delimiter``: the file's, as
    ``read`` parses it. ``file``: the file open in binary to read it by (a source's, through the descriptor it
    holds), else ``path`` is opened."""
    from ..csvtext import binary, csv_column, csv_line

    with binary(path if file is None else file) as fh:
        line, problem = first_refused(fh, start, end, read, lambda i: csv_column(names, i), decimal, names, delimiter)
        if line is None:
            return f"{path}: bad data from line {csv_line(fh, 0, start)} on ({exc})"
    return f"{path} line {line}: {problem}"


def first_refused(path, start, end, read, column, decimal=".", header=None, delimiter=","):
    """(line, complaint) of the first row of the CSV file ``path`` (a path, or the file open in binary:
    csvtext.binary) in the bytes [start, end) (whole rows) that
    ``read`` (a pyarrow buffer of rows -> a table, as the caller parses them) refuses: the rows are read again,
    fewer each time (bisection), so that an error names the row's line (csvtext.csv_rows: from 1, the
    header's counted, as an editor shows it), not where its chunk or batch began. The complaint is pyarrow's,
    naming a column by ``column`` (its index -> words: csvtext.csv_column) where pyarrow says "In CSV column #2",
    counted from 0; a value that is not a number in csvtext.not_a_number's words (a number in a column of
    booleans in csvtext.not_a_boolean's) and a row of another width in csvtext.wrong_width's, as every reader
    says them (a number by the decimal mark ``decimal``; the first data row's against ``header``, the header row's
    names, the header row found as ``delimiter`` splits it: a quoted name may hold a line end). (None, "") where the
    rows there all read (a caller's guess at the bytes missed them)."""
    from ..csvtext import binary, csv_line, csv_rows, is_number, not_a_boolean, not_a_number, width_refused

    pyarrow = pyarrow_module()
    with binary(path) as fh:
        rows = []
        for line, offset in csv_rows(fh, start):
            if offset >= end:
                break
            rows.append((line, offset))
        fh.seek(start)
        data = fh.read(end - start)

    def refused(n):  # pyarrow's complaint about the first n rows, or None
        try:
            read(pyarrow.py_buffer(data[:rows[n][1] - start] if n < len(rows) else data))
        except Exception as exc:
            return str(exc)
        return None

    good, bad = 0, len(rows)  # the first `good` rows read; the first `bad` do not
    problem = refused(bad)
    if problem is None or not rows:
        return None, ""
    while bad - good > 1:
        middle = (good + bad) // 2
        found = refused(middle)
        if found is None:
            good = middle
        else:
            bad, problem = middle, found
    value = re.fullmatch(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", problem, re.S)
    if value and not is_number(value[3], decimal):  # in the words a value refused where types are inferred gets
        return rows[bad - 1][0], not_a_number(value[3], column(int(value[1])))
    if value and value[2] == "bool":  # a number in a column of booleans
        return rows[bad - 1][0], not_a_boolean(value[3], column(int(value[1])))
    width = re.fullmatch(r"CSV parse error: Expected (\d+) columns, got (\d+):.*", problem, re.S)
    if width:  # in the words gpunn predict's whole read gives it
        line = rows[bad - 1][0]
        # the first data row, whose line the header row's end gives (the only line before it)
        first = header is not None and line == csv_line(path, 0, delimiter=delimiter)
        count, expected = int(width[2]), int(width[1])
        return line, width_refused(path, line, count, expected, header if first else None, delimiter)
    numbered = re.compile(r"In CSV column #(\d+): ")
    return rows[bad - 1][0], numbered.sub(lambda m: f"{column(int(m[1]))}: ", problem)


def refused_in_first_block(path, block_size, header=True, delimiter=",", decimal=".") -> tuple:
    """first_refused for the data rows of a CSV file that begin in its first ``block_size`` bytes, where pyarrow's
    open_csv infers the columns' types and refuses a row of another width there: each read after the header row
    (without one, the first row gives the count), the types inferred, as open_csv reads them."""
    from ..csvtext import csv_column, csv_names, csv_rows, data_start

    pyarrow, csv = pyarrow_module(), pyarrow_module("csv")
    with open(path, "rb") as fh:
        begin = data_start(fh, header, delimiter)
        end = next((offset for _, offset in csv_rows(fh, begin) if offset >= block_size), os.fstat(fh.fileno()).st_size)
        fh.seek(0)
        head = fh.read(begin)

    def read(rows):
        data = pyarrow.py_buffer(head + rows.to_pybytes())
        return csv.read_csv(data, read_options=csv.ReadOptions(autogenerate_column_names=not header,
                                                               block_size=max(len(data), 1)),
                            parse_options=csv.ParseOptions(delimiter=delimiter),
                            convert_options=csv.ConvertOptions(decimal_point=decimal))

    return first_refused(path, begin, end, read, lambda i: csv_column(None, i), decimal,
                         csv_names(path, delimiter) if header else None, delimiter)


def check_csv_kind(path) -> None:
    """Refuse a file named as CSV whose bytes are not UTF-8 text (preflight.file_kind): a binary file, an .npy
    array, a compressed file, text in an 8-bit encoding. One wording for training (CsvSource) and gpunn predict's
    streamed read, which refused a binary file only at its first value ("'1\\x00' is not a number")."""
    from ..preflight import NOT_UTF8, compression, file_kind, not_csv_text

    kind = file_kind(path)
    if kind == "text-8bit":  # it said "not a CSV file (binary, not text)"
        raise DataError(f"{path}: {NOT_UTF8}")
    if kind == "compressed":
        raise DataError(f"{path}: {compression(path)}-compressed; gpunn reads a CSV file uncompressed "
                        "(its chunks at byte offsets): decompress it, or convert it to Parquet")
    if kind not in ("text", "empty"):
        raise DataError(f"{path}: {not_csv_text(kind)}")


def csv_schema(path, header=True, delimiter=",", decimal="."):
    """The columns of the CSV file ``path`` and their types, as every gpunn reader takes them
    (csvtext.first_block_schema: from the file's first MiB, csvtext.typing_block), or a DataError naming the line
    of a row of another width there."""
    from ..csvtext import first_block_schema, typing_block

    try:
        return first_block_schema(path, header, delimiter, decimal)
    except Exception as exc:  # a row of another width: said on its line, as past the typed bytes
        line, problem = refused_in_first_block(path, typing_block(path, header, delimiter), header, delimiter, decimal)
        if line is not None:
            raise DataError(f"{path} line {line}: {problem}") from None
        header_row = " with a header row" if header else ""
        raise DataError(f"{path}: not a readable CSV file{header_row} ({exc})") from None


CACHE_ENV = "GPUNN_CACHE_DIR"


def cache_directory() -> str:
    """Where CSV indexes are kept: $GPUNN_CACHE_DIR (``~`` expanded), else $XDG_CACHE_HOME/gpunn or
    ~/.cache/gpunn (an unset or blank variable is as none)."""
    root = environment.text(CACHE_ENV)
    if root is not None:
        return os.path.expanduser(root)
    return os.path.join(environment.text("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "gpunn")


class CsvSource(ChunkedSource):
    """A CSV file (UTF-8) with a header row, in chunks of about ``block_size`` bytes read at their byte offsets
    (default 4 MiB, less for a file under 128 MiB, so that it has about 32 chunks to shuffle and hold
    out: a block holds one row at least, so a file of fewer rows has a chunk per row).

    The first pass cuts the file at the last line end before every ``block_size`` bytes, parses
    each piece (counting rows, checking every value) and keeps the byte offsets: after it, any
    chunk is read directly with ``pread``, so chunks are shuffled like a Parquet file's, and a
    resume reads only the windows it still needs. The offsets are kept in an index file in the
    cache directory (``$GPUNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpunn`` or ``~/.cache/gpunn``),
    used again only while the file's size and modification time are unchanged: a second run or a
    resume on the same file parses nothing at construction (``cache=False``: none is read or kept, for a file
    that no later run reads, a temporary one). The columns are typed from the file's first MiB
    (csvtext.typing_block), whatever ``block_size``, as gpunn predict types them: numbers, or true/false read as 1
    and 0. A quoted value may hold line ends (a text column's note, as pandas and Excel write one), in the header
    and the data rows: the file is cut at line ends outside quoted values (row_ranges).
    ``target`` and ``features`` name columns, as for Parquet; ``delimiter`` separates the fields (``";"``
    for the CSV Excel writes where the decimal mark is a comma; ``"\\t"`` for tab-separated files): a file
    whose header is one column holding ";" or a tab is said to look so delimited. ``decimal`` is the numbers'
    decimal mark (``","`` for that Excel CSV: ``data.csv(path, "y", delimiter=";", decimal=",")``; one
    character, not the delimiter); a number written with the other mark is refused as bad data, and a file
    whose first row holds numbers like 0,5 read with ``"."`` is said to have decimal commas. ``weight`` names a
    column of each row's weight in the loss (fit's ``sample_weight``: gpunn.data.row_weights), left out of the
    default features; its sums are taken in the pass that indexes the file (its first use) and kept in the saved
    index by the column's name, so that a later run parses nothing for them; where the saved index has none for it
    (saved by an earlier gpunn, or weighted by another column) one more pass at construction parses every block again
    (converting that column alone), and they are kept then. Bad weights are kept nowhere: each run scans and refuses
    them. The other options are :class:`gpunn.data.base.ChunkedSource`'s.
    """

    kind = "csv"
    stored_dtype = numpy.dtype("float64")  # numbers are parsed as float64
    holds_missing = True
    INDEX_FORMAT = 2  # 2: the schema typed from csvtext.typing_block's bytes (1: from block_size's)
    BLOCK = 1 << 22  # bytes per chunk by default; a smaller file in about SPLIT_CHUNKS blocks (default_chunk_rows)

    @closes_files_when_refused
    def __init__(self, path, target=None, features=None, *, weight=None, block_size=None, delimiter=",", decimal=".",
                 seed=0, shuffle=True, window=16, validation_fraction=None, standardize=False, prefetch=1, device=None,
                 dtype=None, cache=True):
        if not (isinstance(decimal, str) and len(decimal) == 1) or decimal in (delimiter, '"', "\n", "\r"):
            raise ValueError(f"decimal is the numbers' decimal mark, one character other than the delimiter "
                             f"({delimiter!r}) and a quote or line end: '.' or ',', got {decimal!r}")
        pyarrow_module("csv")  # without pyarrow: MissingExtra, before the file is looked at
        self.path = file_name(path, "table", "a CSV file")
        if not os.path.isfile(self.path):
            raise DataError(_no_file(self.path))
        from ..csvtext import csv_first_text, delimiter_hint, first_value_is_text, numbers_header_hint

        check_csv_kind(self.path)
        self._fd = os.open(self.path, os.O_RDONLY)
        stat = os.fstat(self._fd)
        self._stamp = (stat.st_size, stat.st_mtime_ns)
        # (a floor of 1 KiB left a file under 32 KiB in fewer blocks: 200 rows of "a,y" were 2, one held out: 74%)
        default = default_chunk_rows(stat.st_size, self.BLOCK)
        block_size = default if block_size is None else block_size
        small = block_size == default < self.BLOCK  # cut small by default
        self.block_size, self.delimiter, self.decimal = positive_int(block_size, "block_size"), delimiter, decimal
        self.cache = flag(cache, "cache")
        index = self._load_index() if self.cache else None

        def hint():  # how the file reads: ";"-delimited (one column "a;b;y"), or without a header ("0.5, 1.25")
            return (delimiter_hint(self.path, self.delimiter, self.decimal)
                    or numbers_header_hint(self.path, self.delimiter, self.decimal))

        try:
            schema = index["schema"] if index else csv_schema(self.path, True, self.delimiter, self.decimal)
            if target is None:  # before the columns' checks: an id column of text would be refused first
                raise NoTarget(listed_columns(schema), hint())
            self.feature_names, self.target_names = pick_columns(
                self.path, schema, target, features, lambda i: csv_first_text(self.path, i, delimiter=self.delimiter, decimal=self.decimal),
                lambda i: first_value_is_text(self.path, i, self.delimiter, self.decimal), weight=weight)
        except MissingColumns as exc:  # (kept a MissingColumns, as a Parquet source's is: gpunn predict --score's
            # refusal of a CSV IN without the model's target columns names them by it)
            raise MissingColumns(f"{exc}{hint()}", exc.missing, exc.available, exc.first_file) from None
        except DataError as exc:  # a ";"-delimited file read with ",": "no column 'y'; the columns are: a;b;y"
            raise DataError(f"{exc}{hint()}") from None
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        self._column_names = list(schema.names)
        self.table_columns = listed_columns(schema)  # every column, picked or not (checks.check_source_columns)
        self.weight_name = weight
        self._picked = self.feature_names + self.target_names + weight_column(weight)  # the columns read
        self._column_types = csv_column_types(schema, self._picked)
        if index is None:
            index = self._build_index(schema)
        self._starts, sizes = index["starts"], index["rows"]
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self._ready(sizes, device, dtype, window_by_rows=True, small=small)
        if weight is not None:
            name, kept = f"{self.path}: column {weight!r}", index["weights"].get(weight)
            if kept:  # (the index pass read them, or a saved index holds them: no block parsed for them again)
                self._weights = ChunkWeights.of(name, *numpy.array(kept).T)
            else:
                self._take_weights(name)
                if self.cache:  # (kept for the next run: the scan's summaries are the index pass's to the bit)
                    w = self._weights
                    self._save_index({**index, "weights": {**index["weights"], weight: numpy.column_stack(
                        [w.peaks, w.lows, w.unit_sums]).tolist()}})

    # ---- the first pass and its index ---------------------------------------------------------
    def _build_index(self, schema):
        """Byte ranges of the chunks (cut at line ends), each parsed once to count and check its rows; with a weight
        column, each chunk's summary of its weights too (row_weights.summary), kept by the weight column's name
        where each is good (one None, a bad weight, keeps none: the weights' scan refuses them)."""
        from ..csvtext import csv_header_end

        size = self._stamp[0]
        starts, rows, weights, before = [], [], [], 0  # (before: the rows of the chunks so far, a running total)
        with self._opened() as fh:  # from past the header row
            for position, end in row_ranges(fh, csv_header_end(fh, size, self.delimiter), size, self.block_size):
                table = self._parse(position, end, before)
                if table.num_rows:
                    starts.append(position)
                    rows.append(table.num_rows)
                    before += table.num_rows
                    if self.weight_name is not None:
                        w = numpy.empty((table.num_rows, 1))
                        copy_columns(table, [self.weight_name], w)
                        weights.append(summary(w[:, 0]))
        starts.append(size)  # the end of the last chunk
        if not rows:
            raise DataError(f"{self.path}: no rows")
        kept = {self.weight_name: [list(w) for w in weights]} if weights and None not in weights else {}
        index = {"starts": starts, "rows": rows, "schema": schema, "weights": kept}
        if self.cache:
            self._save_index(index)
        return index

    def _index_path(self):
        import hashlib

        root = cache_directory()
        key = hashlib.sha256(repr((os.path.abspath(self.path), self.block_size, self.delimiter,
                                   self.decimal)).encode()).hexdigest()
        return os.path.join(root, "csv-index", key[:32] + ".json")

    def _index_key(self):
        return {"format": self.INDEX_FORMAT, "path": os.path.abspath(self.path), "size": self._stamp[0],
                "mtime_ns": self._stamp[1], "block_size": self.block_size, "delimiter": self.delimiter,
                "decimal": self.decimal}  # the first pass checked every value as a number with this mark

    def _load_index(self):
        """The saved index of this file, or None when there is none or the file has changed since."""
        import base64
        import json

        pyarrow = pyarrow_module()

        try:
            with open(self._index_path()) as fh:
                saved = json.load(fh)
            if saved.get("key") != self._index_key():
                return None
            schema = pyarrow.ipc.read_schema(pyarrow.py_buffer(base64.b64decode(saved["schema"])))
            starts, rows = [int(v) for v in saved["starts"]], [int(v) for v in saved["rows"]]
        except (OSError, ValueError, KeyError, TypeError, pyarrow.ArrowException):
            return None
        if len(starts) != len(rows) + 1 or not rows or starts[-1] != self._stamp[0]:
            return None
        return {"starts": starts, "rows": rows, "schema": schema, "weights": _saved_weights(saved, len(rows))}

    def _save_index(self, index):
        """Writes the index for the next run (a cache: where it cannot be written, nothing is kept)."""
        import base64
        import json
        import tempfile

        path = self._index_path()
        record = {"key": self._index_key(), "starts": index["starts"], "rows": index["rows"],
                  "schema": base64.b64encode(index["schema"].serialize().to_pybytes()).decode(),
                  "weights": index["weights"]}  # (a float's JSON, repr's digits, reads back the same float)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # (mkstemp's private mode kept, not atomic_write's: the index names a data file and its columns)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(record, fh)
                os.replace(tmp, path)
            except BaseException:  # a full disk left the part-written temp file in the cache, one per run
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            import warnings

            warnings.warn(f"the index of {self.path} is not kept: {os.path.dirname(path)}: {exc.strerror or exc}; "
                          f"the next run parses the file again (set {CACHE_ENV} to a directory gpunn may write)",
                          environment.SettingWarning)

    # ---- reading ----------------------------------------------------------------------------
    def _parse(self, start, end, first_row, picked=None):
        """The bytes [start, end) of the file (whole rows) as a table of the picked columns (or of ``picked``)."""
        buffer = read_range(self._fd, start, end)
        if buffer is None:
            raise DataError(f"{self.path}: truncated or shrunk while reading the rows from line "
                            f"{self._line(first_row, start, first_row)} (bytes {start}-{end - 1})")
        try:
            return self._read(buffer, picked)
        except Exception as exc:  # ArrowInvalid: a value that is not a number, a ragged row
            with self._opened() as fh:
                raise DataError(refused_rows(self.path, start, end, self._read, self._column_names, exc,
                                             self.decimal, self.delimiter, fh)) from None

    def _read(self, buffer, picked=None):
        """The whole rows in ``buffer`` (a pyarrow buffer) as a table of the picked columns (or of ``picked``)."""
        picked = self._picked if picked is None else picked
        return parse_rows(buffer, self._column_names, picked, {name: self._column_types[name] for name in picked},
                          self.delimiter, self.decimal)

    def _line(self, row, start, first_row):
        """The line (from 1, the header's counted) data row ``row`` begins on, counted from the byte ``start`` where
        data row ``first_row`` begins: csvtext.csv_line."""
        from ..csvtext import csv_line

        with self._opened() as fh:
            return csv_line(fh, row, start, first_row, delimiter=self.delimiter)

    def _opened(self):
        """The file indexed and read, open in binary to read with seeks (its first pass, a line for a message), through
        the descriptor it is read by: whatever has been renamed over its name or removed since (closed: its name)."""
        fd = self.__dict__.get("_fd")
        return open(self.path, "rb") if fd is None else io.BufferedReader(PreadFile(fd))

    def _at_row(self, k, row):
        first = self._row_offset(k)
        return f"line {self._line(first + row, self._starts[k], first)}"

    def _not_finite(self, k, role, row, column, dtype, scaled=None):
        """The value refused at its line and column in the words gpunn predict gives it, read whole or streamed:
        a missing value (pyarrow's null: "", NA) as one that is not a number ("x.csv line 3: column 'a': 'NA' is
        not a number"), not as a NaN the file does not hold; a NaN or infinite number as csvtext.not_finite says
        it ("x.csv line 3: column 'a': 'nan' is NaN; clean or impute it first")."""
        from ..csvtext import csv_column, not_finite

        index = self._column_names.index((self.feature_names if role == "features" else self.target_names)[column])
        value = self._field(k, row, index)
        if value is None:  # cut short since: said by the chunk's count
            return ""
        said = not_finite(value, csv_column(self._column_names, index), dtype, self.decimal, scaled)
        return f"{self.path} {self._at_row(k, row)}: {said}" if said else ""

    def _field(self, k, row, index):
        """The text of column ``index`` at ``row`` of chunk ``k``, read again (None: the file is cut short since)."""
        import csv
        import io

        chunk = bytearray(self._starts[k + 1] - self._starts[k])
        pread_full(self._fd, memoryview(chunk), self._starts[k])
        text = io.StringIO(chunk.decode("utf-8", "replace"), newline="")
        rows = [r for r in csv.reader(text, delimiter=self.delimiter) if r]  # rows as pyarrow counts them
        if row >= len(rows):
            return None
        return rows[row][index] if index < len(rows[row]) else ""

    def _weight_shown(self, k, row, value):
        from ..csvtext import missing_value

        text = self._field(k, row, self._column_names.index(self.weight_name)) if numpy.isnan(value) else None
        said = None if text is None else missing_value(text)
        return f", {said}" if said else super()._weight_shown(k, row, value)

    def batches(self, epoch, batch_size, first_batch=0):
        self._check_open()
        self._check_unchanged()
        yield from super().batches(epoch, batch_size, first_batch)

    def _check_unchanged(self, written_over=False):
        """Refuse the file changed since it was indexed: before each pass, and (``written_over``) after each chunk's
        read where it was written over, not cut short (a value rewritten part-way through an epoch was read on, and
        the checkpoint at the epoch's end held the steps taken on it; a file cut short is refused by the read that
        comes up short, naming its lines, before the epoch ends). The file read, through its descriptor: another
        renamed over its name, or its name removed, leaves it as it was, read to the end (as an .npy file is)."""
        now = os.fstat(self._fd)
        size = now.st_size
        if (size, now.st_mtime_ns) != self._stamp and not (written_over and size < self._stamp[0]):
            raise DataError(f"{self.path}: the file changed since it was indexed (size or modification time); "
                            "construct the source again")

    def _fill(self, k, X, Y):
        self._fill_all(k, X, Y)

    def _fill_all(self, k, X, Y, w=None):
        table = self._chunk_table(k)
        copy_columns(table, self.feature_names, X)
        copy_columns(table, self.target_names, Y)
        if w is not None:
            copy_columns(table, [self.weight_name], w[:, None])

    def _fill_weights(self, k, w):  # (the weights' scan: that column alone converted)
        copy_columns(self._chunk_table(k, [self.weight_name]), [self.weight_name], w[:, None])

    def _chunk_table(self, k, picked=None):
        """Chunk ``k`` parsed, the picked columns (or ``picked``), its rows checked against the first pass's."""
        where = self._starts[k], self._starts[k + 1], self._row_offset(k)
        table = self._parse(*where) if picked is None else self._parse(*where, picked)
        self._check_unchanged(written_over=True)
        if table.num_rows != self.chunk_sizes[k]:
            raise DataError(f"{self._where(k)}: holds {table.num_rows} rows, the first pass read {self.chunk_sizes[k]} "
                            "(was the file changed?)")
        return table

    def _weights_where(self, k):
        return f"{self._where(k)}: column {self.weight_name!r}"

    def _where(self, k):
        first, start = self._row_offset(k), self._starts[k]
        last = first + self.chunk_sizes[k] - 1
        return f"{self.path} (lines {self._line(first, start, first)}-{self._line(last, start, first)})"

    def _name(self):
        return self.path

    def _more_chunks(self):
        return "use smaller chunks (block_size, in bytes) or pass validation_data"

    def _describe(self):
        return {"path": os.path.abspath(self.path), "target": self.target_names, "features": self.feature_names,
                "block_size": self.block_size, "chunks_at": "byte offsets",
                **({} if self.weight_name is None else {"weight": self.weight_name})}

    def _content_files(self):
        fd = self.__dict__.get("_fd")
        return [self.path if fd is None else fd]  # (the file indexed and read, as opened; closed: its name)

    def _close_files(self):
        fd = self.__dict__.get("_fd")
        if fd is not None:
            self._fd = None
            os.close(fd)

    __del__ = _close_files


def _saved_weights(saved, chunks) -> dict:
    """A saved index's weight summaries, {column: [[largest, smallest, sum(w / largest)], ...] one a chunk}: those of
    a column whose list fits (``chunks`` rows of 3 finite numbers, 0 <= smallest <= largest); none from an index saved
    without them (an earlier gpunn's: its weights are scanned, then kept)."""
    kept = saved.get("weights")
    if not isinstance(kept, dict):
        return {}

    def fits(rows):
        return (isinstance(rows, list) and len(rows) == chunks and all(
            isinstance(row, list) and len(row) == 3 and all(type(v) in (int, float) for v in row)
            and 0 <= row[1] <= row[0] < float("inf") and 0 <= row[2] < float("inf") for row in rows))

    return {column: rows for column, rows in kept.items() if isinstance(column, str) and fits(rows)}


def row_range_buffers(fh, path, start, block_size):
    """((start, end), buffer) of each piece of whole rows of the CSV file ``fh`` (binary, named ``path``) from the byte
    ``start``: row_ranges' pieces of about ``block_size`` bytes, read_range's buffers; a file that ends before a piece
    it measured (truncated or shrunk while read) is refused. gpunn predict's streamed batches and --keep's columns."""
    size = os.fstat(fh.fileno()).st_size
    for start, end in row_ranges(fh, start, size, block_size):
        buffer = read_range(fh.fileno(), start, end)
        if buffer is None:
            raise DataError(f"{path}: truncated or shrunk while reading it (bytes {start}-{end - 1})")
        yield (start, end), buffer


def row_ranges(fh, start, size, block_size):
    """(start, end) of each piece of whole rows of the CSV file ``fh`` (binary) from the byte ``start`` (a row's
    start) to ``size``: about ``block_size`` bytes each, cut after the last line end in them that is not inside a
    quoted value (a text column's "two<newline>lines", as pandas and Excel write it; read on to the next such line
    end where a row is longer): CsvSource's chunks, gpunn predict's streamed batches. A row of any length reads,
    where pyarrow's streaming reader needs each row inside its block ("straddling object")."""
    while start < size:
        fh.seek(start)
        block = fh.read(block_size)
        end = start + len(block)
        if end < size:
            cut = _last_row_end(block)
            end = start + cut + 1 if cut >= 0 else _row_end(fh, end, size, block.count(b'"') % 2 == 1)
        yield start, end
        start = end


def _last_row_end(block) -> int:
    """The index in ``block`` (bytes from a row's start) of its last line end outside a quoted value: one after an
    even count of quotes (a quote inside a quoted value is doubled, ""); -1 where there is none."""
    cut = max(block.rfind(b"\n"), block.rfind(b"\r"))
    quotes = block.count(b'"', 0, max(cut, 0))
    while quotes % 2:  # inside a quoted value: the line end before (bytes' own searches: a few steps, typically)
        before = max(block.rfind(b"\n", 0, cut), block.rfind(b"\r", 0, cut))
        if before < 0:
            return -1
        quotes -= block.count(b'"', before, cut)
        cut = before
    return cut


_QUOTE_OR_LINE_END = re.compile(rb'["\r\n]')


QUOTED_MOST = 1 << 26  # bytes read on for a row's end past a block: a quote never closed is refused within them


def _row_end(fh, position, size, quoted):
    """The offset just past the first line end at or after ``position`` outside a quoted value (``quoted``: whether
    ``position`` is inside one), or ``size``. Past QUOTED_MOST bytes inside one (a quote never closed, which would
    make the rest of the file one row), the first line end, as before quoted values were counted: the rows there
    are refused, saying so."""
    fh.seek(position)
    read = 0
    while read < QUOTED_MOST:
        piece = fh.read(1 << 16)
        if not piece:
            return size
        for mark in _QUOTE_OR_LINE_END.finditer(piece):
            if mark.group() == b'"':
                quoted = not quoted
            elif not quoted:
                end = position + read + mark.end()
                return end + 1 if piece[mark.start():mark.start() + 2] == b"\r\n" else end
        read += len(piece)
    return _line_end(fh, position, size)


def parse_rows(buffer, columns, picked, types, delimiter=",", decimal="."):
    """The whole rows of a CSV file in ``buffer`` (read_range's) as a table of the columns ``picked``, parsed by
    ``types`` (csv_column_types); ``columns``: the file's column names (its header's, or f0, f1, ...). How every
    gpunn reader parses a CSV file's rows: CsvSource's chunks, gpunn predict's streamed batches."""
    csv = pyarrow_module("csv")
    return csv.read_csv(buffer, read_options=csv.ReadOptions(column_names=columns, block_size=max(len(buffer), 1)),
                        parse_options=csv.ParseOptions(delimiter=delimiter),
                        convert_options=csv.ConvertOptions(include_columns=picked, decimal_point=decimal,
                                                           column_types=types))


def read_range(fd, start, end):
    """The bytes [start, end) of the open file ``fd`` as a pyarrow buffer for read_csv, or None where the file ends
    before ``end`` (truncated or shrunk).

    The bytes are read into Arrow's own memory, not a Python object: pyarrow's threads hold the input
    past read_csv's return and drop it there about half the time, and dropping a Python object's buffer
    takes the GIL. While the interpreter exits, Python ends a thread that asks for the GIL
    (pthread_exit), which inside that C++ destructor aborts the process: "terminate called without an
    active exception" after all of a command's output."""
    buffer = pyarrow_module().allocate_buffer(end - start)
    with memoryview(buffer) as view:
        if pread_full(fd, view, start) < len(view):
            return None
    return buffer


def _line_end(fh, position, size):
    """The offset just past the first line end at or after ``position`` (``size`` when there is none)."""
    fh.seek(position)
    while position < size:
        block = fh.read(1 << 16)
        if not block:
            break
        cut = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
        if cut:
            end = position + min(cut) + 1
            if block[min(cut):min(cut) + 2] == b"\r\n":
                end += 1
            return end
        position += len(block)
    return size
