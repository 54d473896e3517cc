"""Parquet and CSV tables streamed through pyarrow (an optional extra: ``pip install "gpunn[data]"``).

Columns are picked by name: ``target`` (a list of names, or one line of them, ``"y1,y2"``, read as a CSV header:
``'"a,b",c'`` names a column a,b; gpunn.csvtext.split_columns) becomes Y, ``features`` (the same; default:
every other column, except an index pandas wrote into a Parquet file, which is read only where named, and left out
of the columns messages list where it has no name: listed_columns; a column without a name, as pandas' ``to_csv``
writes its index, is refused) X. Every picked column must be numeric (integers, floats or booleans);
nulls count as NaN and stop the run with the file and row range named.
"""
from __future__ import annotations

import bisect
import collections
import contextlib
import os
import re

import numpy

from .. import environment
from ..checks import PARQUET_SUFFIXES, MissingExtra, flag, positive_int, predicting_a_table_file
from ..csvtext import joined_columns, named_twice, read_as, split_columns
from ..forksafe import ForkSafeLock
from ..hints import shell_word
from .base import ChunkedSource, DataError, closes_files_when_refused, default_chunk_rows, pread_full


def pyarrow_module(name=None):
    """``pyarrow`` (or ``pyarrow.<name>``), or a MissingExtra error that says how to install it."""
    try:
        import importlib

        return importlib.import_module("pyarrow" if name is None else f"pyarrow.{name}")
    except ImportError:
        raise MissingExtra("reading and writing Parquet and CSV tables needs pyarrow, which is not installed: "
                           'pip install "gpunn[data]"') from None


def columns_are(names) -> str:
    """A table's columns in a message, as written: each in quotes where one has a space or a comma in it or no name
    (a header "a, b, y" names ' b' and ' y', which a bare list shows as b and y, the names just refused; "first col,
    sale price" read as four names, or two)."""
    names = list(names)
    bare = all(n and not any(c.isspace() or c == "," for c in n) for n in names)
    return f"the columns are: {', '.join(names if bare else map(repr, names))}"


def _spaced(missing, available, targets) -> str:
    """A sentence for names not found that a column has with spaces around it ('y' for ' y': a CSV header written
    "a, b, y"), or "": remove them, or name the column with them in double quotes (gpunn.csvtext.split_columns)."""
    spaced = {n.strip(): n for n in available if n != n.strip()}
    found = [n for n in missing if n in spaced]
    if not found:
        return ""
    option = "--target" if found[0] in (targets or ()) else "--features"
    quoted = joined_columns([spaced[found[0]]])
    return (f"; the names have spaces around them ({spaced[found[0]]!r}), which are part of a name: remove them (in a "
            "CSV file, the spaces after the commas of its header line), or name the column with them in double "
            f"quotes, as a CSV header does ({quoted}: {option} {shell_word(quoted)} on the command line)")


def _with_comma(missing, available, targets) -> str:
    """A sentence for names not found that are pieces of a column's name with a comma in it ('x' and 'y' for 'x,y',
    named in one line of names, which commas split), or ""."""
    for name in available:
        pieces = {piece.strip() for piece in name.split(",")} if "," in name else set()
        asked = [n for n in missing if n in pieces]
        if asked:
            option = "--target" if asked[0] in (targets or ()) else "--features"
            quoted = joined_columns([name])
            return (f"; the column {name!r} has a comma in its name: in a line of names put it in double quotes, as "
                    f"a CSV header does ({quoted}: {option} '{quoted}' on the command line), or pass a list of names")
    return ""


def _other_case(missing, available) -> str:
    """A sentence for a name not found that one column has in another letter case ('Price' for 'price'), or "".
    Names stay matched as written, as pandas and pyarrow match them: a hint, not a second name taken."""
    lower = collections.defaultdict(list)
    for n in available:
        lower[n.lower()].append(n)
    found = [lower[n.lower()][0] for n in missing if len(lower.get(n.lower(), ())) == 1]
    if not found:
        return ""
    return f"; names are matched as written, letter case included: did you mean {', '.join(map(repr, found))}?"


def close_column(name, available) -> str | None:
    """The column of ``available`` that ``name`` is a misspelling of, by the rule of every "did you mean" of gpunn
    (gpunn.hints.CUTOFF): 'price' for 'prise', or a header's 'prcie' for 'price'; else None. Only a misspelling: a
    beginning ('pri') is no hint among columns, which share beginnings (x1, x2...)."""
    import difflib

    from ..hints import CUTOFF

    close = difflib.get_close_matches(name, available, n=1, cutoff=CUTOFF)
    return close[0] if close else None


def _misspelt(missing, available) -> str:
    """A sentence for names not found that are close to a column's (close_column), or ""."""
    found = []
    for name in missing:
        close = close_column(name, available)
        if close and close not in found:
            found.append(close)
    return f"; did you mean {', '.join(map(repr, found))}?" if found else ""


class MissingColumns(DataError):
    """A table without columns asked for: ``missing`` names them, ``available`` the table's (for gpunn predict,
    which words what the model was trained on), ``first_file`` the file of a Parquet directory that has them, where
    another lacks them (pick_in_every_file)."""

    def __init__(self, message, missing=(), available=(), first_file=None):
        super().__init__(message)
        self.missing, self.available, self.first_file = list(missing), list(available), first_file


class NoTarget(ValueError):
    """A table source given no target column. The message lists the table's columns, as a target that is not
    among them is refused, and says how a file of inputs alone is predicted (no source: a source holds its targets;
    ``reader``, pandas' for the file); ``columns`` keeps them for gpunn train, which names its --target option."""

    def __init__(self, columns, hint="", reader="read_csv"):
        self.columns, self.hint = list(columns), hint  # hint: a sentence on how the file reads, or ""
        super().__init__(f"target: name the target column(s); {columns_are(self.columns)}{hint}; to predict a file "
                         f"of inputs alone: {predicting_a_table_file(reader)}")


def _names(value, what):
    if value is None:
        return None
    names = split_columns(value) if isinstance(value, str) else [n for n in map(str, value) if n]
    if not names:
        raise ValueError(f"{what} lists no column names")
    if named_twice(names):  # (the names as typed: target="y, y" or ["y", "y"])
        raise ValueError(f"{what} {named_twice(names)} ({what}={value!r})")
    return names


def pick_columns(path, schema, target, features, text_at=None, text_from_the_start=None, width=None):
    """(features, targets) column names, checked against ``schema``: present and numeric. ``text_at``: for a CSV
    file, where a column read as text first holds a value that is not a number (its index in ``schema`` ->
    csvtext.csv_first_text's "line 3: column 'b': 'oops' is not a number", the refusal then), and
    ``text_from_the_start`` whether that column's first value is text (an id beside the numbers, not a stray value in
    a column of numbers: only the first is told how to leave it out of the default features). ``width``: for gpunn
    predict, which reads no targets, the model's feature count: a text column is told how to leave it out where
    that leaves that many."""
    targets = _names(target, "target")
    features = _names(features, "features")
    available = list(schema.names)
    counts = collections.Counter(available)  # sets and counts, not list scans: a file may have 10^5 columns
    wanted = (targets or []) + (features or [])
    missing = [n for n in wanted if n not in counts]
    if missing:
        hint = (_spaced(missing, available, targets) or _with_comma(missing, available, targets)
                or _other_case(missing, available) or _misspelt(missing, available))
        raise MissingColumns(f"{path}: no column {', '.join(map(repr, missing))}; {columns_are(listed_columns(schema))}"
                             f"{hint}", missing, available)
    every_other = features is None
    if features is None:  # every other column, but not an index pandas wrote into the file
        index = _pandas_index_columns(schema)
        left_out = set(targets or []) | set(index)
        features = [n for n in available if n not in left_out]
        if not features:
            raise DataError(f"{path}: no feature columns are left besides the target{'s' * (len(targets) > 1)} "
                            f"{', '.join(map(repr, targets))}")
        unnamed = [available.index(n) + 1 for n in features if not n.strip()]
        if unnamed:
            raise DataError(_unnamed_column(path, unnamed[0], available, [n for n in features if n.strip()]))
    overlap = set(features) & set(targets or [])
    if overlap:
        both = sorted(overlap)  # (it said "['y'] is both a feature and a target", a Python list, and no way out)
        raise ValueError(f"column{'s' if len(both) > 1 else ''} {', '.join(map(repr, both))} "
                         f"{'are' if len(both) > 1 else 'is'} both a feature and a target: leave "
                         f"{'them' if len(both) > 1 else 'it'} out of the features (the features default to every "
                         "column but the targets)")
    twice = [n for n in features + (targets or []) if counts[n] > 1]
    if twice:  # pyarrow's lookup by name then failed with "KeyError: 'Column a does not exist in schema'"
        where = [i + 1 for i, n in enumerate(available) if n == twice[0]]
        raise DataError(f"{path}: the header names columns {' and '.join(map(str, where))} both {twice[0]!r}; rename "
                        "one (or name the columns to use, leaving out the repeated name)")
    for name in features + (targets or []):
        kind = schema.field(name).type
        if read_as(kind) == "other":
            index = available.index(name)
            text = text_from_the_start(index) if text_from_the_start else True  # a Parquet column is typed whole
            hint = _by_default(name, features, targets, schema, width) if every_other and text else ""
            found = text_at(index) if text_at else ""
            if found:  # "x.csv line 3: column 'b': 'oops' is not a number", as past the rows types are inferred from
                raise DataError(f"{path} {found}{hint}")
            read = "feature and target" if targets is not None else "feature"  # (gpunn predict reads no targets)
            raise DataError(f"{path}: column {name!r} is {kind}, not numeric; every {read} column must hold numbers"
                            f"{hint}")
    return features, targets


def pick_in_every_file(files, schemas, target, features, width=None):
    """(features, targets) of a Parquet file or directory (``files``, their ``schemas``): picked in the first file
    (pick_columns) and looked for by name in every other, as a directory's files are read as one table. A later file
    without one is refused saying where the columns came from: "d/b.parquet: no column 'x2'; ... with the columns
    of its first file, d/a.parquet" (gpunn predict read it by name and failed with pyarrow's KeyError)."""
    features, targets = pick_columns(files[0], schemas[0], target, features, width=width)
    for name, schema in zip(files[1:], schemas[1:]):
        try:
            pick_columns(name, schema, targets, features)
        except MissingColumns as exc:
            raise MissingColumns(f"{exc}; a directory's files are read as one table, with the columns of its first "
                                 f"file, {shell_word(files[0])}: give every file those columns, or move the others "
                                 "out of the directory", exc.missing, exc.available, files[0]) from None
    return features, targets


def _unnamed_column(path, column, available, named) -> str:
    """The refusal of the unnamed column ``column`` (from 1, of the ``available`` names) among the features taken by
    default (``named``: the others), saying what writes one: pandas' to_csv its index first, unless index=False; lines
    that end with a comma an empty last column (an export's trailing delimiter, which the index hint misread)."""
    why, way = "", ""
    if column == 1:
        why, way = " (as the index pandas' to_csv writes unless index=False)", "write the file with index=False, or "
    elif column == len(available) and available[-1] == "":
        why = " (the header ends with a comma, as lines that each end with one make an empty last column)"
    example = shell_word(joined_columns(named)) if named and len(named) <= 12 else "a,b"
    return (f"{path}: column {column} has no name{why}, and an unnamed column is not taken as a feature: {way}name "
            f"the feature columns (features=[...], --features {example})")


def _by_default(name, features, targets, schema, width=None) -> str:
    """A sentence for a column of text that is a feature only because none were named (an id, a name, a date
    beside the numbers: "column 'name' is string, not numeric" said nothing of how to leave it out), or ""."""
    if name not in features:
        return ""
    return leave_out_hint(name, [n for n in features if read_as(schema.field(n).type) != "other"], targets, width)


def leave_out_hint(name, numeric, targets=None, width=None) -> str:
    """How to leave the text column ``name`` out of the features taken by default, naming the ``numeric`` ones, or ""
    where none is (the text is the problem, said as it is). No ``targets``: gpunn predict's (its --features alone),
    for a table streamed or a CSV file read whole for a model that knows no column names, whose ``width`` features
    the numeric columns must be; where there are more (an id or the target beside them, in the file X.npy was cut
    from), it says to pick the model's among them (too few: no hint, they would be refused next)."""
    if not numeric or (width is not None and len(numeric) < width):
        return ""
    if width is not None and len(numeric) > width:  # (it said "'x' is not a number" alone, then "3 feature columns")
        listed = f" ({', '.join(numeric)})" if len(numeric) <= 12 else ""
        return (f"; with no features named, every column is one: if {name!r} is not, name the model's {width} among "
                f"the columns of numbers{listed} with --features, in the order it was trained on")
    example = f"--features {shell_word(','.join(numeric))}" if len(numeric) <= 12 else "--features a,b"
    example = f" ({example}, features=[...])" if targets else f" ({example})"
    every = "every column but the target" if targets else "every column"
    return f"; with no features named, {every} is one: if {name!r} is not, name those that are{example}"


def csv_column_types(schema, names) -> dict:
    """The types pyarrow's CSV reader parses the picked columns ``names`` as, the same in every block: float64, or
    bool for a column ``schema`` (the first block's) gives as one (csvtext.read_as: true/false, which float64
    refused as invalid)."""
    pyarrow = pyarrow_module()
    return {c: pyarrow.bool_() if read_as(schema.field(c).type) == "boolean" else pyarrow.float64() for c in names}


def refused_rows(path, start, end, read, names, exc, decimal=".", delimiter=",") -> str:
    """The error of a CSV file whose rows in the bytes [start, end) (whole rows: a training chunk, a batch gpunn
    predict streams) ``read`` refused with ``exc``, in one rule for both: "x.csv line 5: column 'b': 'oops' is not
    a number" at the row first_refused finds (``names``: the file's column names, None without a header row), or,
    where the rows read again all read, "x.csv: bad data from line 4 on (exc)", the line of the first data row
    from ``start`` (csvtext.csv_line: empty lines skipped, as the readers skip them). ``delimiter``: the file's, as
    ``read`` parses it."""
    from ..csvtext import csv_column, csv_line

    line, problem = first_refused(path, start, end, read, lambda i: csv_column(names, i), decimal, names, delimiter)
    if line is None:
        return f"{path}: bad data from line {csv_line(path, 0, start)} on ({exc})"
    return f"{path} line {line}: {problem}"


def first_refused(path, start, end, read, column, decimal=".", header=None, delimiter=","):
    """(line, complaint) of the first row of the CSV file ``path`` in the bytes [start, end) (whole rows) that
    ``read`` (a pyarrow buffer of rows -> a table, as the caller parses them) refuses: the rows are read again,
    fewer each time (bisection), so that an error names the row's line (csvtext.csv_rows: from 1, the
    header's counted, as an editor shows it), not where its chunk or batch began. The complaint is pyarrow's,
    naming a column by ``column`` (its index -> words: csvtext.csv_column) where pyarrow says "In CSV column #2",
    counted from 0; a value that is not a number in csvtext.not_a_number's words (a number in a column of
    booleans in csvtext.not_a_boolean's) and a row of another width in csvtext.wrong_width's, as every reader
    says them (a number by the decimal mark ``decimal``; the first data row's against ``header``, the header row's
    names, the header row found as ``delimiter`` splits it: a quoted name may hold a line end). (None, "") where the
    rows there all read (a caller's guess at the bytes missed them)."""
    from ..csvtext import csv_line, csv_rows, is_number, not_a_boolean, not_a_number, width_refused

    pyarrow = pyarrow_module()
    with open(path, "rb") as fh:
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


def listed_columns(schema) -> list:
    """The names of a table's columns as gpunn's messages list them: the DataFrame's, where pandas wrote the file.
    An index pandas wrote without a name (``__index_level_0__``: a filtered, shuffled or relabelled frame's row
    labels; a plain range is metadata only) is left out: pandas reads it back as the index, not as a column, so the
    user never named it. A named index (``set_index("t")``) is listed under its name. Either is read where named."""
    unnamed = {c for c in _pandas_index_columns(schema) if re.fullmatch(r"__index_level_\d+__", c)}
    return [n for n in schema.names if n not in unnamed]


def _pandas_index_columns(schema) -> list:
    """Names of the columns a pandas index was written to (from the schema's pandas metadata), if any."""
    try:
        metadata = schema.pandas_metadata or {}
    except (ValueError, TypeError, AttributeError):  # metadata that is not pandas' JSON
        return []
    return [c for c in metadata.get("index_columns", []) if isinstance(c, str)]


def copy_columns(table, names, out):
    """Columns ``names`` of a pyarrow table or record batch into the host matrix ``out``. Looked up by position, in
    one errstate: per column, the lookup by name and the errstate took ~40% of a 20,000-column batch's copy.

    Each piece of a column is read through DLPack, not pyarrow's ``to_numpy``: that converts as ``to_pandas`` does,
    and its first call imports pandas where it is installed (0.3-0.5 s), swallowing a Ctrl-C that lands in the
    import (pyarrow takes the failed import for no pandas): ``gpunn predict`` then ran to its end. A boolean column
    (bits) is cast to bytes, a decimal one (Python Decimal objects to NumPy) to float64, and a piece with nulls is
    cast to float64 and gets NaN where they are."""
    types = pyarrow_module().types
    positions = [table.schema.get_field_index(name) for name in names]
    if -1 in positions:  # (-1: absent or repeated; column(-1) would be the last column)
        raise KeyError(f"no single column {names[positions.index(-1)]!r} in the table")
    with numpy.errstate(over="ignore"):
        for j, position in enumerate(positions):
            column, row = table.column(position), 0
            for piece in getattr(column, "chunks", [column]):  # a table's column is chunked, a record batch's not
                if piece.null_count:  # (DLPack refuses nulls, and fill_null of a Python NaN imports pandas too)
                    floats = piece.cast("float64")
                    values = numpy.where(_validity(floats), _float64_values(floats), numpy.nan)
                elif types.is_decimal(piece.type):
                    values = numpy.from_dlpack(piece.cast("float64"))
                elif types.is_boolean(piece.type):
                    values = numpy.from_dlpack(piece.cast("uint8"))
                else:
                    values = numpy.from_dlpack(piece)
                out[row:row + len(piece), j] = values
                row += len(piece)


def _float64_values(piece):
    """The values buffer of the float64 pyarrow array ``piece`` (what null slots hold there is undefined)."""
    return numpy.frombuffer(piece.buffers()[1], numpy.float64, count=len(piece), offset=piece.offset * 8)


def _validity(piece):
    """Whether each value of the pyarrow array ``piece`` is there (not null), from its validity bitmap."""
    bits = numpy.frombuffer(piece.buffers()[0], numpy.uint8)
    return numpy.unpackbits(bits, bitorder="little")[piece.offset:piece.offset + len(piece)].astype(bool)


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
    ``target``: a :class:`NoTarget` error listing the file's columns); the other options are :class:`gpunn.data.base.ChunkedSource`'s.
    """

    kind = "parquet"
    stored_dtype = numpy.dtype("float64")  # columns are read as float64 (see copy_columns)

    @closes_files_when_refused
    def __init__(self, path, target=None, features=None, *, chunk_rows=None, seed=0, shuffle=True, window=16,
                 validation_fraction=None, standardize=False, prefetch=1, device=None, dtype=None):
        self.path = os.fspath(path)
        files = self.list_files(self.path)
        self.files, self._open, sizes, run_lengths, self._chunks = files, [], [], [], []
        for name in files:
            self._open.append(open_parquet(name))
        schemas = [pf.schema_arrow for pf in self._open]
        if target is None:  # before the columns' checks, which a text column would fail first
            raise NoTarget(listed_columns(schemas[0]), reader="read_parquet")
        self.feature_names, self.target_names = pick_in_every_file(files, schemas, target, features)
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
        i, g, start = self._chunks[k]
        with self._lock.current:
            try:
                cursor = self._cursor
                if cursor is None or cursor.group != (i, g) or cursor.position > start or cursor.pid != os.getpid():
                    cursor = self._cursor = _RowGroupCursor(self._open[i], (i, g), self.feature_names
                                                            + self.target_names, self.chunk_rows)
                parts = cursor.take(start, X.shape[0])
            except _EmptySlice as exc:  # gpunn's bug, not the file's: an internal error (no DataError), naming where
                self._cursor = None
                raise RuntimeError(f"{self._where(k)}: {exc}") from None
            except Exception as exc:
                self._cursor = None
                raise DataError(f"{self._where(k)}: could not be read ({type(exc).__name__}: {exc})") from None
        n = 0
        for part in parts:
            copy_columns(part, self.feature_names, X[n:n + part.num_rows])
            copy_columns(part, self.target_names, Y[n:n + part.num_rows])
            n += part.num_rows

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

    def _name(self):
        return self.path

    def _describe(self):
        return {"path": os.path.abspath(self.path), "files": len(self.files), "target": self.target_names,
                "features": self.feature_names, "chunk_rows": self.chunk_rows}

    def _content_files(self):
        return list(self.files)


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
    whose first row holds numbers like 0,5 read with ``"."`` is said to have decimal commas. The other options
    are :class:`gpunn.data.base.ChunkedSource`'s.
    """

    kind = "csv"
    stored_dtype = numpy.dtype("float64")  # numbers are parsed as float64
    INDEX_FORMAT = 2  # 2: the schema typed from csvtext.typing_block's bytes (1: from block_size's)
    BLOCK = 1 << 22  # bytes per chunk by default; a smaller file in about SPLIT_CHUNKS blocks (default_chunk_rows)

    @closes_files_when_refused
    def __init__(self, path, target=None, features=None, *, block_size=None, delimiter=",", decimal=".", seed=0,
                 shuffle=True, window=16, validation_fraction=None, standardize=False, prefetch=1, device=None,
                 dtype=None, cache=True):
        if not (isinstance(decimal, str) and len(decimal) == 1) or decimal in (delimiter, '"', "\n", "\r"):
            raise ValueError(f"decimal is the numbers' decimal mark, one character other than the delimiter "
                             f"({delimiter!r}) and a quote or line end: '.' or ',', got {decimal!r}")
        pyarrow_module("csv")  # without pyarrow: MissingExtra, before the file is looked at
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise DataError(f"{self.path}: no such file")
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
                lambda i: first_value_is_text(self.path, i, self.delimiter, self.decimal))
        except MissingColumns as exc:  # (kept a MissingColumns, as a Parquet source's is: gpunn predict --score's
            # refusal of a CSV IN without the model's target columns names them by it)
            raise MissingColumns(f"{exc}{hint()}", exc.missing, exc.available, exc.first_file) from None
        except DataError as exc:  # a ";"-delimited file read with ",": "no column 'y'; the columns are: a;b;y"
            raise DataError(f"{exc}{hint()}") from None
        self.n_features, self.n_outputs = len(self.feature_names), len(self.target_names)
        self._column_names = list(schema.names)
        self.table_columns = listed_columns(schema)  # every column, picked or not (checks.check_source_columns)
        self._column_types = csv_column_types(schema, self.feature_names + self.target_names)
        if index is None:
            index = self._build_index(schema)
        self._starts, sizes = index["starts"], index["rows"]
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self._ready(sizes, device, dtype, window_by_rows=True, small=small)

    # ---- the first pass and its index ---------------------------------------------------------
    def _build_index(self, schema):
        """Byte ranges of the chunks (cut at line ends), each parsed once to count and check its rows."""
        from ..csvtext import csv_header_end

        size = self._stamp[0]
        starts, rows = [], []
        with open(self.path, "rb") as fh:  # from past the header row
            for position, end in row_ranges(fh, csv_header_end(fh, size, self.delimiter), size, self.block_size):
                n = self._parse(position, end, sum(rows)).num_rows
                if n:
                    starts.append(position)
                    rows.append(n)
        starts.append(size)  # the end of the last chunk
        if not rows:
            raise DataError(f"{self.path}: no rows")
        index = {"starts": starts, "rows": rows, "schema": schema}
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
        return {"starts": starts, "rows": rows, "schema": schema}

    def _save_index(self, index):
        """Writes the index for the next run (a cache: where it cannot be written, nothing is kept)."""
        import base64
        import json
        import tempfile

        path = self._index_path()
        record = {"key": self._index_key(), "starts": index["starts"], "rows": index["rows"],
                  "schema": base64.b64encode(index["schema"].serialize().to_pybytes()).decode()}
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
    def _parse(self, start, end, first_row):
        """The bytes [start, end) of the file (whole rows) as a table of the picked columns."""
        buffer = read_range(self._fd, start, end)
        if buffer is None:
            raise DataError(f"{self.path}: truncated or shrunk while reading the rows from line "
                            f"{self._line(first_row, start, first_row)} (bytes {start}-{end - 1})")
        try:
            return self._read(buffer)
        except Exception as exc:  # ArrowInvalid: a value that is not a number, a ragged row
            raise DataError(refused_rows(self.path, start, end, self._read, self._column_names, exc,
                                         self.decimal, self.delimiter)) from None

    def _read(self, buffer):
        """The whole rows in ``buffer`` (a pyarrow buffer) as a table of the picked columns."""
        return parse_rows(buffer, self._column_names, self.feature_names + self.target_names, self._column_types,
                          self.delimiter, self.decimal)

    def _line(self, row, start, first_row):
        """The line (from 1, the header's counted) data row ``row`` begins on, counted from the byte ``start`` where
        data row ``first_row`` begins: csvtext.csv_line."""
        from ..csvtext import csv_line

        return csv_line(self.path, row, start, first_row, delimiter=self.delimiter)

    def _at_row(self, k, row):
        first = self._row_offset(k)
        return f"line {self._line(first + row, self._starts[k], first)}"

    def _not_finite(self, k, role, row, column, dtype, scaled=None):
        """The value refused at its line and column in the words gpunn predict gives it, read whole or streamed:
        a missing value (pyarrow's null: "", NA) as one that is not a number ("x.csv line 3: column 'a': 'NA' is
        not a number"), not as a NaN the file does not hold; a NaN or infinite number as csvtext.not_finite says
        it ("x.csv line 3: column 'a': 'nan' is NaN; clean or impute it first")."""
        import csv
        import io

        from ..csvtext import csv_column, not_finite

        index = self._column_names.index((self.feature_names if role == "features" else self.target_names)[column])
        chunk = bytearray(self._starts[k + 1] - self._starts[k])
        pread_full(self._fd, memoryview(chunk), self._starts[k])
        text = io.StringIO(chunk.decode("utf-8", "replace"), newline="")
        rows = [r for r in csv.reader(text, delimiter=self.delimiter) if r]  # rows as pyarrow counts them
        if row >= len(rows):  # cut short since: said by the chunk's count
            return ""
        value = rows[row][index] if index < len(rows[row]) else ""
        said = not_finite(value, csv_column(self._column_names, index), dtype, self.decimal, scaled)
        return f"{self.path} {self._at_row(k, row)}: {said}" if said else ""

    def batches(self, epoch, batch_size, first_batch=0):
        self._check_open()
        if (os.fstat(self._fd).st_size, os.stat(self.path).st_mtime_ns) != self._stamp:
            raise DataError(f"{self.path}: the file changed since it was indexed (size or modification time); "
                            "construct the source again")
        yield from super().batches(epoch, batch_size, first_batch)

    def _fill(self, k, X, Y):
        table = self._parse(self._starts[k], self._starts[k + 1], self._row_offset(k))
        if table.num_rows != X.shape[0]:
            raise DataError(f"{self._where(k)}: holds {table.num_rows} rows, the first pass read {X.shape[0]} "
                            "(was the file changed?)")
        copy_columns(table, self.feature_names, X)
        copy_columns(table, self.target_names, Y)

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
                "block_size": self.block_size, "chunks_at": "byte offsets"}

    def _content_files(self):
        return [self.path]

    def _close_files(self):
        fd = self.__dict__.get("_fd")
        if fd is not None:
            self._fd = None
            os.close(fd)

    __del__ = _close_files


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
