"""A CSV file read as text, for what its parsers (pyarrow, numpy.loadtxt) do not say: whether its first row
is a header, where the header ends, on which line (as an editor counts it, from 1) a data row begins, a
column in words, and what a refused file looks like instead (another delimiter, decimal commas).

gpunn's readers count data rows from 0 after the header; an error message names the line. These helpers read
the file again only to word an error or to find the data's first byte, never to parse the numbers. One rule
for every reader of a CSV file, for training or prediction, streamed or whole: a column is read as pyarrow types
it from the file's first MiB (typing_block, first_block_schema, read_as): numbers, booleans as 1 and 0, or
refused.
"""
from __future__ import annotations

import contextlib
import os

CSV_BLOCK = 1 << 20  # the bytes every reader types a file's columns from (typing_block; pyarrow's default block)


def csv_has_header(path, delimiter=",", columns=None) -> bool:
    """Whether the first line of the CSV file ``path`` that is not empty (pyarrow and numpy.loadtxt skip
    empty lines) is a header row: none of its fields is a number (a first row with numbers and a gap,
    "1.5,NA,3", is data), or, given ``columns`` (the names a caller picks: a model's feature columns), it holds
    them all, whatever else it holds (columns named 2020 and 2021, which training took from the header row). False
    for a file that cannot be read (its reader says why)."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:  # a UTF-8 mark is no field
            first = next((row for row in csv.reader(fh, delimiter=delimiter) if row), [])
    except (OSError, csv.Error):
        return False
    if columns and set(columns) <= set(first):
        return True
    return not any(is_number(field.strip().strip("\"'")) for field in first)  # a quoted number is a number too


def csv_header_end(fh, size, delimiter=",", limit=1 << 24):
    """The offset just past a CSV file's header row (``fh`` open in binary): its first line end outside a
    quoted field, as pyarrow parses it (a quote opens a field only at its start, "" is a quote inside one),
    so a quoted name may hold a line end; ``size`` when there is none. Empty lines before the header are
    skipped, as pyarrow skips them. A quote still open after ``limit`` bytes gives the first line end
    (pyarrow then says what is wrong)."""
    import re

    fh.seek(0)
    buf = fh.read(1 << 16)
    start = 3 if buf.startswith(b"\xef\xbb\xbf") else 0  # past a UTF-8 mark
    start = len(buf) - len(buf[start:].lstrip(b"\r\n"))  # and the empty lines after it
    line_end = re.compile(rb"\r\n|\r|\n")
    first = line_end.search(buf, start)
    if first and first.end() < len(buf) and b'"' not in buf[start:first.start()]:  # no quote before it: the header's end
        return first.end()
    sep, quote = str(delimiter).encode()[-1:], ord('"')  # (pyarrow refuses a delimiter not one character)
    i, quoted, field_start = start, False, True
    while True:
        if i + 1 >= len(buf) and len(buf) < limit:  # one byte ahead: a "" inside quotes, a \r\n
            more = fh.read(1 << 16)
            if more:
                buf += more
                continue
        if i >= len(buf):
            if len(buf) < limit:
                return size
            first = line_end.search(buf, start)
            return first.end() if first else len(buf)
        c = buf[i]
        if quoted:
            if c == quote:
                if buf[i + 1:i + 2] == b'"':
                    i += 1
                else:
                    quoted = False
        elif c == quote and field_start:
            quoted = True
        elif c in (10, 13):
            return i + (2 if buf[i:i + 2] == b"\r\n" else 1)
        field_start = buf[i:i + 1] == sep and not quoted
        i += 1


def binary(file):
    """``file`` to read bytes from, in a ``with``: a path, opened (and closed after), or a file open in binary, as it is
    (left open: a source's, read through the descriptor it holds)."""
    return open(file, "rb") if isinstance(file, (str, bytes, os.PathLike)) else contextlib.nullcontext(file)


def lines_before(fh, offset) -> int:
    """How many line ends (\\n, \\r\\n or \\r) the file ``fh`` (binary) holds before the byte ``offset``."""
    fh.seek(0)
    count, left, last = 0, offset, b""
    while left > 0:
        data = fh.read(min(left, 1 << 24))
        if not data:
            break
        count += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") - (last == b"\r" and data[:1] == b"\n")
        last, left = data[-1:], left - len(data)
    return count


def _lines_from(fh, start, block=1 << 20):
    """(offset, bytes) of each line of the file ``fh`` (binary) from the byte ``start`` (a line's start), its line
    end included."""
    import re

    line_end = re.compile(rb"\r\n|\r|\n")
    fh.seek(start)
    pending, offset = b"", start
    while True:
        data = fh.read(block)
        buf, at = pending + data, 0
        for end in line_end.finditer(buf):
            if data and end.end() == len(buf) and buf.endswith(b"\r"):  # a \r\n may be cut by the read
                break
            yield offset + at, buf[at:end.end()]
            at = end.end()
        if not data:
            if at < len(buf):
                yield offset + at, buf[at:]
            return
        pending, offset = buf[at:], offset + at


def data_start(fh, header=True, delimiter=",") -> int:
    """The byte of the CSV file ``fh`` (binary) at which its data rows begin: the header's end, or 0 without one."""
    return csv_header_end(fh, os.fstat(fh.fileno()).st_size, delimiter) if header else 0


def csv_rows(fh, start):
    """(line, offset) of each data row of a CSV file ``fh`` (binary) from the byte ``start`` (a row's start): the
    line an editor shows it on (counted from 1, the lines before ``start`` too) and its first byte. Rows as
    pyarrow and numpy.loadtxt count them: an empty line is skipped, and a row goes on past a line end inside a
    quoted field (a line with an odd count of quotes opens or closes one)."""
    line, quoted = 1 + lines_before(fh, start), False
    for offset, text in _lines_from(fh, start):
        if not quoted and text.rstrip(b"\r\n"):
            yield line, offset
        if text.count(b'"') % 2:
            quoted = not quoted
        line += 1


def csv_line(path, row, start=None, first_row=0, header=True, delimiter=",") -> int:
    """The line of the CSV file ``path`` (a path, or the file open in binary: binary) on which its data row ``row``
    begins: counted from 1, the header's lines too, as an editor shows it, where gpunn's readers count data rows
    from 0 after the header (empty lines skipped: csv_rows). ``start``: the byte at which data row ``first_row``
    begins (a chunk's), to count from there; by default the header's end (the file's start with ``header=False``). A
    row past the last: the line after the last row's, or, with no data row from ``start`` (a file cut short there),
    the line ``start`` begins (it named the line after that one). Read for an error's message."""
    with binary(path) as fh:
        if start is None:
            start, first_row = data_start(fh, header, delimiter), 0
        line = None
        for n, (line, _) in enumerate(csv_rows(fh, start), first_row):
            if n == row:
                return line
        if line is None:  # no data row from there: the line after the one before `start` (a line without an end)
            fh.seek(max(start - 1, 0))
            unended = start > 0 and fh.read(1) not in (b"\n", b"\r")
            return 1 + lines_before(fh, start) + unended
    return line + 1


def csv_names(path, delimiter=",", columns=None) -> list | None:
    """The column names of a CSV file's header row, or None for a file without one (csv_has_header, ``columns``
    as there)."""
    import csv

    if not csv_has_header(path, delimiter, columns):
        return None
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return next((row for row in csv.reader(fh, delimiter=delimiter) if row), None)


def split_columns(text) -> list:
    """Column names written as one line of text (``--target y1,y2``, ``target="y1,y2"``), as a CSV header
    writes them: separated by commas, each stripped of the spaces around it, and a name that holds a comma, a
    double quote or spaces of its own in double quotes, taken exactly as written there (a quote in it doubled):
    ``"a,b", c`` is ['a,b', 'c'], ``" y"`` is [' y']. Empty names are left out. ValueError for a quoted name
    that does not end before the next comma (or the text's end)."""
    names, at = [], 0
    while True:
        start = at + len(text[at:]) - len(text[at:].lstrip())
        if text.startswith('"', start):
            parts, at = [], start + 1
            while True:  # the name's pieces between doubled quotes
                close = text.find('"', at)
                if close < 0:
                    raise ValueError(f"{text!r}: the name quoted at character {start + 1} has no closing quote")
                parts.append(text[at:close])
                if not text.startswith('"', close + 1):
                    break
                parts.append('"')
                at = close + 2
            comma = text.find(",", close + 1)
            if text[close + 1:None if comma < 0 else comma].strip():
                raise ValueError(f"{text!r}: the name quoted at character {start + 1} goes on after its closing "
                                 'quote; write a quote inside a quoted name twice ("say ""hi""")')
            name = "".join(parts)
        else:
            comma = text.find(",", start)
            name = text[start:None if comma < 0 else comma].strip()
        if name:
            names.append(name)
        if comma < 0:
            return names
        at = comma + 1


def joined_columns(names) -> str:
    """``names`` as split_columns reads them back: comma-separated, a name that holds a comma or a double quote,
    or spaces around it, in double quotes."""
    def written(name):
        name = str(name)
        if "," in name or '"' in name or name != name.strip():
            return '"' + name.replace('"', '""') + '"'
        return name

    return ",".join(map(written, names))


def named_twice(names) -> str:
    """What a list of column names repeats, in a refusal: "names the column 'price' twice" ("the columns 'a', 'b'"),
    or "" where each is named once. A name given twice would read one column twice (as two features, or a target and
    its copy). It said "names a column twice: ['price', 'price']", a Python list of what was typed."""
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if not repeated:
        return ""
    return f"names the column{'s' * (len(repeated) > 1)} {', '.join(map(repr, repeated))} twice"


def csv_first_text(path, index, header=True, delimiter=",", decimal=".") -> str:
    """Where the column ``index`` (from 0) of the CSV file ``path``, which pyarrow read as text, first holds a
    value that is not a number (nor one of pyarrow's missing-value marks: "", "NA", "nan"...), as the refusal
    reads after the path: "line 6: column 'b': 'x' is not a number" (:func:`not_a_number`); "" where none is
    found. In a column of booleans (its first value that is not missing, nor "0" or "1", is one of pyarrow's
    true/false words), which gpunn reads as 1 and 0, that is the first value that is neither a boolean nor a
    number: the word that made pyarrow read the column as text ("maybe" among "true"s), not the first "true".
    ``decimal``: the numbers' decimal mark (gpunn.data.csv's), by which 1,5 is a number and 2.5 is not."""
    missing, booleans = set(pyarrow_csv_null_values()), set(pyarrow_csv_booleans())
    first, boolean = "", None  # the first value that is not a number; whether the column holds booleans
    for line, names, row in _data_rows(path, header, delimiter):
        value = row[index] if index < len(row) else ""
        if value in missing:
            continue
        number = is_number(value, decimal)
        if boolean is None and not (number and value in booleans):  # ("0" and "1" are either)
            boolean = value in booleans
        if number:
            continue
        said = f"line {line}: {not_a_number(value, csv_column(names, index))}"
        if not boolean or value not in booleans:
            return said
        first = first or said  # booleans and numbers other than 0 and 1, no word: the first boolean's at fault
    return first


def _data_rows(path, header=True, delimiter=","):
    """(line, names, values) of each data row of the CSV file ``path`` read as text (empty lines skipped): the line
    it begins on (from 1, as an editor shows it), the header row's values (None without one), its values."""
    import csv

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader, before, names = csv.reader(fh, delimiter=delimiter), 0, None
        for row in reader:
            line, before = before + 1, reader.line_num
            if not row:
                continue
            if header and names is None:
                names = row
                continue
            yield line, names, row


def not_a_number(value, column) -> str:
    """The refusal of a CSV value that is not a number, after "path line N: ", in the one wording every gpunn
    reader gives it (gpunn predict reading IN whole or streamed, gpunn.data.csv and ``train --data`` where the
    column's type is inferred and past it): "column 'b': 'oops' is not a number", and for an empty value (which
    pyarrow reads as a missing one, then NaN) "column 'b': an empty value (a missing number) is not a number; clean
    or impute it first" (a missing-value mark of pyarrow's, 'NA', likewise), and
    for a value holding a line end (only quotes hold one: most often a quote never closed, which runs to the file's
    end) "column 'b': '4\\n' is not a number (a line end inside quotes: is a quote left open?)". ``value``: the
    field as read (unquoted), ``column``: :func:`csv_column`'s words."""
    shown = "an empty value (a missing number)" if value == "" else repr(value)
    quoted = " (a line end inside quotes: is a quote left open?)" if "\n" in value or "\r" in value else ""
    # a missing value is told what a NaN is (not_finite's words): the file holds a gap to fill, not a wrong word
    missing = "; clean or impute it first" if missing_value(value) else ""
    return f"{column}: {shown} is not a number{quoted}{missing}"


def missing_value(value):
    """A CSV value that pyarrow reads as a missing one and is no number, in words: "an empty value (a missing
    number)", "'NA' (a missing number)"; None for any other value ('nan' is a number, NaN)."""
    if is_number(value):
        return None
    if value == "":
        return "an empty value (a missing number)"
    return f"{value!r} (a missing number)" if value in _null_values() else None


def _null_values() -> list:
    """pyarrow's missing-value marks ("NA", "null"...), or none without pyarrow (gpunn predict's whole read)."""
    try:
        return pyarrow_csv_null_values()
    except ImportError:
        return []


def not_finite(value, column, dtype, decimal=".", scaled=None) -> str:
    """The refusal of a CSV value that a reader took for NaN or an infinite number, after "path line N: ", in the
    one wording training (gpunn.data.csv, ``train --data``) and gpunn predict (read whole or streamed) give it: a
    value that is no number (:func:`is_number`: a missing one to pyarrow, "" or "NA") in :func:`not_a_number`'s
    words; a number NaN or infinite as ``dtype`` holds it as "column 'b': 'nan' is NaN; clean or impute it first"
    ('inf' is infinite, '1e39' is "infinite in float32 (past its largest value)"). ``value``: the field as written;
    ``scaled``: the number standardized (in float64), where standardizing it in ``dtype`` gave a value that is not
    finite: one ``dtype`` cannot hold ("'1e+38' is 3.3e+39 once standardized, infinite in float32 (past its largest
    value)"), or one it holds, left on the way there ("'3e+38' is 4.8 once standardized, but infinite in float32 on
    the way there: x - mean, or 1 / spread, is past its largest value; ...": gpunn.checks.on_the_way); "" where the
    number (no ``scaled``) is finite in ``dtype`` (the file changed since it was read)."""
    if not is_number(value, decimal):
        return not_a_number(value, column)
    return number_not_finite(float(value.strip(" \t").replace(decimal, ".")), repr(value), column, dtype, scaled)


def number_not_finite(number, shown, column, dtype, scaled=None) -> str:
    """:func:`not_finite`'s words for a value read as ``number`` (a float) and shown as ``shown`` (a CSV field's
    text in quotes; a number an .npy or Parquet file stores, as Python writes it: nan, -inf, 1e+39), which an .npy
    or Parquet file's refusal shares (gpunn.data.errors.not_finite_value): "column 'b': 'nan' is NaN; clean or
    impute it first"; ``scaled``, as :func:`not_finite`'s; "" where ``number`` is finite in ``dtype`` (and no
    ``scaled`` is given)."""
    import numpy

    from .checks import AS_FLOAT64, finite_in, on_the_way

    if scaled is not None and finite_in(dtype, scaled):  # not finite standardized in dtype, whose value it holds
        return (f"{column}: {shown} is {scaled:.2g} once standardized, but {on_the_way(numpy.dtype(dtype).name)}; "
                f"clean or impute it first, {AS_FLOAT64}")
    if scaled is None and finite_in(dtype, number):
        return ""
    past = f"infinite in {numpy.dtype(dtype).name} (past its largest value)"
    what = (f"{scaled:.2g} once standardized, {past}" if scaled is not None and numpy.isfinite(scaled)
            else "NaN" if number != number else "infinite" if abs(number) == float("inf") else past)
    return f"{column}: {shown} is {what}; clean or impute it first"


def not_a_boolean(value, column) -> str:
    """The refusal of a number other than 1 and 0 in a CSV column read as booleans (its first rows true/false:
    :func:`read_as`), after "path line N: ", in the one wording gpunn's readers give it (a word there is
    :func:`not_a_number`): "column 'flag': '2.5' is not a boolean (true/false or 1/0, as the column's first rows
    are)"."""
    return f"{column}: {value!r} is not a boolean (true/false or 1/0, as the column's first rows are)"


def wrong_width(count, expected, header=None, delimiter=",") -> str:
    """The refusal of a CSV row of ``count`` values in a file whose lines before it (the header row's too) have
    ``expected``, after "path line N: ", in the one wording every gpunn reader gives it (gpunn predict reading IN
    whole or streamed, gpunn.data.csv and ``train --data``, in the first block pyarrow reads and past it):
    "1 value, where the lines before it have 2". ``header``: the header row's names where the row is the first
    data row (the header the only line before it): one without a name is said, the likely cause ("a,b,c,price,"
    names 5 columns, the last empty, where each row has 4 values), with the file's ``delimiter`` in its words ("ends in
    a ';'", not "in a comma", for a file delimited by ";")."""
    values = f"{count} value{'s' * (count != 1)}"
    mark = "a comma" if delimiter == "," else "a tab" if delimiter == "\t" else f"a {delimiter!r}"
    marks = "commas" if delimiter == "," else "tabs" if delimiter == "\t" else f"{delimiter!r}s"
    unnamed = [i for i, name in enumerate(header or []) if not name.strip()]
    if not unnamed or len(header) != expected:
        return f"{values}, where the lines before it have {expected}"
    if unnamed == [expected - 1] and count == expected - 1:
        return (f"{values}, where the header row names {expected} columns, its last without a name: the header "
                f"line ends in {mark} (remove it)")
    said = ", ".join(str(i + 1) for i in unnamed)
    return (f"{values}, where the header row names {expected} columns, column{'s' * (len(unnamed) > 1)} {said} "
            f"without a name (an empty name between two {marks}, or {mark} at the line's end)")


def cut_short(path, line, count, expected) -> str:
    """What a row of ``count`` values, where the lines before it have ``expected``, on line ``line`` (from 1, as
    csv_line counts) of the CSV file ``path`` says of a file cut short: " (the file's last line, which ends without
    a line end: was the file cut short?)" where it has fewer values and is the file's last line, unended, as a copy
    or download stopped mid-line leaves it; else "". After wrong_width's words. The lines are counted only for a
    file that does not end in a line end (an error's path)."""
    if count >= expected:
        return ""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if not size:
            return ""
        fh.seek(size - 1)
        if fh.read(1) in (b"\n", b"\r") or 1 + lines_before(fh, size) != line:
            return ""
    return " (the file's last line, which ends without a line end: was the file cut short?)"


def left_open(path, line) -> str:
    """What a row of another width than the lines before it, beginning on line ``line`` (from 1, as csv_line
    counts) of the CSV file ``path``, says of a quote it opens and does not close on that line, the likely cause
    (a quoted value runs on past its line end, taking the lines after it for its text): " (a quote on this line is
    never closed: the lines after it, to the file's end, were read as one value; close the quote or remove it)", or
    where a later line closes it, " (a quote on this line closes only on line 9: the lines between were read as one
    value; is a quote left open?)"; "" where the line's quotes close on it. Quotes are counted as csv_rows counts
    them. After wrong_width's words; the file is read from its start (an error's path only)."""
    with open(path, "rb") as fh:
        number, quoted = 1, False
        for _, text in _lines_from(fh, 0):
            odd = text.count(b'"') % 2
            if number == line and (quoted or not odd):  # (inside a row begun before it, or its quotes closed)
                return ""
            if number > line and odd:
                return (f" (a quote on this line closes only on line {number}: the lines between were read as one "
                        "value; is a quote left open?)")
            quoted, number = quoted != bool(odd), number + 1
    if number <= line:
        return ""
    return (" (a quote on this line is never closed: the lines after it, to the file's end, were read as one value; "
            "close the quote or remove it)")


def width_refused(path, line, count, expected, header=None, delimiter=",") -> str:
    """The refusal of a CSV row of ``count`` values on line ``line`` of ``path``, where the lines before it have
    ``expected``, in every reader's words: :func:`wrong_width`'s (``header``: the header row's names, where the row
    is the first data row; ``delimiter``: the file's), then a likely cause, where there is one: the file cut short
    (:func:`cut_short`) or a quote left open (:func:`left_open`)."""
    cause = cut_short(path, line, count, expected) or left_open(path, line)
    return f"{wrong_width(count, expected, header, delimiter)}{cause}"


def csv_values(path, row, header=True, delimiter=",") -> list | None:
    """The values of data row ``row`` (from 0 after the header row, empty lines skipped, as gpunn's readers count
    rows) of the CSV file ``path``, unquoted; None past the last row. Read for an error's message."""
    for n, (_, _, values) in enumerate(_data_rows(path, header, delimiter)):
        if n == row:
            return values
    return None


def csv_field(path, row, index, header=True, delimiter=",") -> str | None:
    """The text of value ``index`` (from 0) of data row ``row`` of the CSV file ``path`` (:func:`csv_values`): ""
    where the row has fewer values, None past the last row. Read for an error's message: the text pyarrow took for
    a missing value ("", "NA")."""
    values = csv_values(path, row, header, delimiter)
    if values is None:
        return None
    return values[index] if index < len(values) else ""


def pyarrow_csv_null_values() -> list:
    """The values pyarrow's CSV reader takes for a missing one."""
    import pyarrow.csv

    return list(pyarrow.csv.ConvertOptions().null_values)


def typing_block(path, header=True, delimiter=",") -> int:
    """How many bytes from the start of the CSV file ``path`` gpunn's readers type its columns from
    (:func:`first_block_schema`): CSV_BLOCK, or twice the header and first data row where they are longer (a wide
    table's row of numbers may be far longer than its header of names: a block twice the header's failed with
    pyarrow's "straddling object straddles two block boundaries" on 5 rows of 1,000 numbers). The same bytes for
    every reader: gpunn.data.csv and ``train --data`` (whatever ``block_size`` cuts the file into), gpunn predict
    streamed and read whole, so a file's columns are typed alike for training and prediction."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        rows = csv_rows(fh, data_start(fh, header, delimiter))
        next(rows, None)
        first_row_end = next(rows, (None, size))[1]  # the second data row's first byte
    return max(CSV_BLOCK, 2 * first_row_end)


def first_block_schema(path, header, delimiter=",", decimal="."):
    """The columns pyarrow's CSV reader finds in the first :func:`typing_block` bytes of the CSV file ``path``
    (their names, f0, f1, ... without a header row) and the types it infers from those rows, which every gpunn
    reader then parses every row by (:func:`read_as`): gpunn.data.csv and ``train --data``, gpunn predict streamed
    and read whole. Raises pyarrow's error where those bytes do not read (a row of another width), ImportError
    without pyarrow."""
    import pyarrow.csv

    options = pyarrow.csv.ReadOptions(autogenerate_column_names=not header,
                                      block_size=typing_block(path, header, delimiter))
    # a file of its own, closed on return: given the path, pyarrow's I/O thread closed it a moment later (still open
    # on return 5-10% of the time), and an error raised then held it; a NativeFile (not a Python one, which pyarrow's
    # threads would drop without the GIL: csv_tables.read_range)
    with pyarrow.OSFile(os.fspath(path)) as file:
        return pyarrow.csv.open_csv(file, read_options=options,
                                    parse_options=pyarrow.csv.ParseOptions(delimiter=delimiter),
                                    convert_options=pyarrow.csv.ConvertOptions(decimal_point=decimal)).schema


def read_as(kind) -> str:
    """How gpunn reads a table's column that pyarrow types ``kind`` (a CSV file's, from its first block:
    :func:`first_block_schema`): "number" (integers, floats, decimals: a Parquet file's SQL NUMERIC, or only missing
    values), "boolean" (true/false, and 1/0, read as 1 and 0: pyarrow's words, :func:`pyarrow_csv_booleans`) or
    "other" (refused: text, dates, ...; in a CSV file naming its first value that is not a number,
    :func:`csv_first_text`)."""
    import pyarrow

    if pyarrow.types.is_boolean(kind):
        return "boolean"
    numeric = (pyarrow.types.is_integer(kind) or pyarrow.types.is_floating(kind) or pyarrow.types.is_decimal(kind)
               or pyarrow.types.is_null(kind))
    return "number" if numeric else "other"


def pyarrow_csv_booleans() -> dict:
    """The values pyarrow's CSV reader takes for True and for False ("1" and "0" among them), each with the number
    gpunn reads it as: 1.0 or 0.0."""
    import pyarrow.csv

    options = pyarrow.csv.ConvertOptions()
    return {**dict.fromkeys(options.true_values, 1.0), **dict.fromkeys(options.false_values, 0.0)}


def is_number(text, decimal=".") -> bool:
    """Whether a CSV field reads as a number to every gpunn reader, as pyarrow reads one: ASCII digits, a sign, an
    exponent, inf or nan, spaces and tabs around it but no other whitespace (a no-break space, a form feed:
    numpy.loadtxt and Python's float skip those), no "_" between digits (Python's float takes 1_0); its decimal
    mark ``decimal`` (gpunn.data.csv's: "." or ","; the other mark refused)."""
    text = text.strip(" \t")
    if not text.isascii() or "_" in text or not text or text[0].isspace() or text[-1].isspace():
        return False
    if decimal != ".":
        if "." in text:
            return False
        text = text.replace(decimal, ".")
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_first_foreign(path, header=True, delimiter=",") -> str:
    """Where the CSV file ``path``'s data rows first hold a value with a character that no number has around it
    but numpy.loadtxt skips there (whitespace other than a space or a tab: a no-break space, a form feed; a line end
    inside quotes, as a quote never closed leaves one), which every other gpunn reader refuses (:func:`is_number`):
    "line 3: column 'b': '\\xa01.5' is not a number", as the refusal reads after the path; "" where there is none.
    A byte scan first (most files hold none: "" without parsing them, in about a tenth of loadtxt's time); the rows
    only then."""
    import re

    text_bytes = bytes([9, 10, 13, *range(0x20, 0x7f)])  # tab, line ends, printable ASCII
    not_quotes = bytes(b for b in range(256) if b not in b'"\r\n')
    with open(path, "rb") as fh:
        start = data_start(fh, header, delimiter)
        if start == 0 and fh.read(3) == b"\xef\xbb\xbf":  # a UTF-8 mark before a first row of data
            start = 3
        fh.seek(start)
        odd = 0  # whether the line the last block cut holds an odd count of quotes so far
        while True:
            block = fh.read(1 << 24)
            if not block:  # (a last line of an odd count, no line end after it: its quote reads to its end alike)
                return ""
            if block.translate(None, text_bytes):  # a byte left that is none of them (10x faster than a regex)
                break
            quotes = b'"' * odd + block.translate(None, not_quotes)  # each line's quotes, between line ends
            last = max(quotes.rfind(b"\n"), quotes.rfind(b"\r"))
            odd = (len(quotes) - last - 1) % 2
            if b'"' in quotes[:last + 1].replace(b'""', b""):  # a line of an odd count of quotes: a line end in
                break  # quotes (a quote never closed, or closed on a later line)
    for line, names, row in _data_rows(path, header, delimiter):
        for index, value in enumerate(row):
            if re.search(r"[^\t\x20-\x7e]", value):
                return f"line {line}: {not_a_number(value, csv_column(names, index))}"
    return ""


def csv_column(names, index) -> str:
    """A CSV file's column in a message: "column 'b'" by its header's name, or, in a file without a header
    (``names`` None), "value 2 of the line" (counted from 1, as one reads a line)."""
    return f"column {names[index]!r}" if names else f"value {index + 1} of the line"


def _first_rows(path, delimiter):
    """A CSV file's header and first data row as lists of fields, past empty lines ([] where there is none)."""
    import csv

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = (row for row in csv.reader(fh, delimiter=delimiter) if row)
        return next(reader, []), next(reader, [])


def first_value_is_text(path, index, delimiter=",", decimal=".") -> bool:
    """Whether column ``index`` of the CSV file's first data row holds text: not a number, a boolean or a missing
    value, as gpunn reads them."""
    import csv

    try:
        first = _first_rows(path, delimiter)[1]
    except (OSError, csv.Error):
        return False
    if index >= len(first):
        return False
    value = first[index]
    others = set(pyarrow_csv_booleans()) | set(pyarrow_csv_null_values())
    return value.strip() not in others and value not in others and not is_number(value, decimal)


def numbers_header_hint(path, delimiter=",", decimal=".") -> str:
    """A sentence to append where columns are looked for by name in a CSV file whose first row holds numbers
    alone: a file written without a header (numpy.savetxt's default), whose first row of data was taken for the
    names ("no column 'y'; the columns are: 0.5, 1.25", with no word of why). "" otherwise."""
    import csv

    try:
        header = _first_rows(path, delimiter)[0]
    except (OSError, csv.Error):
        return ""
    if not header or not all(is_number(v, decimal) for v in header):
        return ""
    return ("; its first line holds numbers, not column names: a CSV file's first line is its header, whose names "
            "pick the target and feature columns: add one (numpy.savetxt(path, data, delimiter=',', header='a,b,y', "
            "comments='') writes it), or save the features and targets as two .npy files (gpunn train --data X.npy "
            "--targets Y.npy, gpunn.data.npy)")


def delimiter_hint(path, delimiter=",", decimal=".") -> str:
    """A sentence to append to a CSV file's error when its first row read with ``delimiter`` is one field
    holding a ";" or a tab: the file then looks delimited by that (as Excel writes CSV where the decimal mark
    is a comma), and a missing column or a parse error says so; or holding numbers between spaces, as
    numpy.savetxt writes an array by default (a parse error named the whole first row as a column's name, with
    no word of why); and, read with the decimal mark ``decimal``
    ".", when its first data row (split as the file looks delimited) holds numbers with decimal commas (0,5).
    "" otherwise, or where the file cannot be read."""
    import csv
    import re

    try:
        header, first = _first_rows(path, delimiter)
        other = next((d for d in (";", "\t") if len(header) == 1 and d in header[0]), None)
        if other is not None:
            _, first = _first_rows(path, other)
    except (OSError, csv.Error):
        return ""
    hint = ""
    if other is not None:
        name = "tab" if other == "\t" else repr(other)
        excel = " (as Excel writes CSV where the decimal mark is a comma)" if other == ";" else ""
        hint = (f"; its first row is one column holding {name}s: the file looks {name}-delimited{excel}: pass "
                f"delimiter={other!r} to gpunn.data.csv, or save it comma-separated (gpunn train --data and gpunn "
                "predict read commas only)")
    elif len(header) == 1 and len(header[0].split()) > 1 and all(map(is_number, header[0].split())):
        hint = ("; its first row is one column holding numbers separated by spaces, as numpy.savetxt writes them by "
                "default: save them comma-separated (numpy.savetxt(path, X, delimiter=','), and for training with a "
                "header line naming the columns: header='a,b,y', comments=''), or as an .npy file (numpy.save)")
    if decimal == "." and any(re.fullmatch(r"\s*[-+]?\d*,\d+\s*", v) for v in first):
        hint += ("; its numbers have decimal commas (0,5): pass decimal=',' to gpunn.data.csv, or save them "
                 "with decimal points (gpunn train --data and gpunn predict read decimal points only)")
    return hint


def tab_separated_hint(path, in_python: str) -> str:
    """For a file named .tsv, which no command reads (each reads a file by its name, a .csv one with commas, as a
    tab-delimited .csv's refusal says), the end of its refusal: read it with the tab delimiter in Python, as
    ``in_python`` does, or save it comma-separated. "" for any other name."""
    if not str(path).lower().endswith(".tsv"):
        return ""
    return (f"; a tab-separated file is read as CSV with the tab delimiter in Python, {in_python}, or save it "
            "comma-separated as .csv (gpunn's commands read commas only)")


def tab_separated_output_hint(path) -> str:
    """For an output named .tsv (gpunn predict's OUT), which no command writes, the end of its refusal: write the CSV
    and make a tab-separated copy of it. "" for any other name. (tr leaves every number as written, none holds a
    comma; the header's names are quoted, so one holding a comma, rare, keeps its column with a tab in its name.)"""
    if not str(path).lower().endswith(".tsv"):
        return ""
    from .hints import shell_word

    csv_path = shell_word(f"{path[:-4]}.csv")
    return (f"; gpunn writes CSV with commas only: write {csv_path}, then tr , '\\t' < {csv_path} > "
            f"{shell_word(path)} makes it tab-separated")


def header_lines(path) -> int:
    """How many lines numpy.loadtxt's ``skiprows`` must skip to pass the header row: 1, more where a quoted
    name holds a line end ("a,\"b\nc\",y"; loadtxt counts lines, \r\n as one)."""
    import re

    with open(path, "rb") as fh:
        end = csv_header_end(fh, os.fstat(fh.fileno()).st_size)
        fh.seek(0)
        return max(1, len(re.findall(rb"\r\n|\r|\n", fh.read(end))))


