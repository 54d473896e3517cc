"""A table's columns as every gpunn reader of Parquet and CSV files takes them: picked by name for X and Y
(:func:`pick_columns`; :func:`pick_in_every_file` for a directory of Parquet files), refused with what to do where
they are missing or not numbers (:class:`MissingColumns`, :class:`NoTarget`), listed as messages list them
(:func:`listed_columns`), and copied into a host matrix (:func:`copy_columns`); :func:`pyarrow_module` is pyarrow, or
how to install it.

Columns are picked by name: ``target`` (a list of names, or one line of them, ``"y1,y2"``, read as a CSV header:
``'"a,b",c'`` names a column a,b; gpunn.csvtext.split_columns) becomes Y, ``features`` (the same; default:
every other column, except an index pandas wrote into a Parquet file, which is read only where named, and left out
of the columns messages list where it has no name: listed_columns; a column without a name, as pandas' ``to_csv``
writes its index, is refused) X. Every picked column must be numeric (integers, floats or booleans);
nulls count as NaN and stop the run with the file and row range named.
"""
from __future__ import annotations

import collections
import re

import numpy

from ..checks import MissingExtra, predicting_a_table_file
from ..csvtext import joined_columns, named_twice, read_as, split_columns
from ..hints import a_type, shell_word
from .base import DataError


def pyarrow_module(name=None):
    """``pyarrow`` (or ``pyarrow.<name>``), or a MissingExtra error that says how to install it."""
    try:
        import importlib

        return importlib.import_module("pyarrow" if name is None else f"pyarrow.{name}")
    except ImportError:
        raise MissingExtra("reading and writing Parquet and CSV tables needs pyarrow, which is not installed: "
                           'pip install "gpunn[data]"') from None


def columns_are(names) -> str:
    """A table's columns in a message (a CSV file's and a Parquet file's alike), bare as gpunn's other lists of
    columns are (a model's, a DataFrame's), a name in quotes where bare it would read as another: one with a space or
    a comma in it or no name (a header "a, b, y" names ' b' and ' y', which a bare list shows as b and y, the names
    just refused; "first col, sale price" read as four names, or two). Every name was quoted where one was: README's
    table.csv listed 'a', 'b', 'x,y', 'price' for its "x,y", where its Parquet files listed x, y1, y2."""
    return "the columns are: " + ", ".join(n if n and not any(c.isspace() or c == "," for c in n) else repr(n)
                                           for n in names)


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


def pick_columns(path, schema, target, features, text_at=None, text_from_the_start=None, width=None, weight=None):
    """(features, targets) column names, checked against ``schema``: present and numeric; ``weight``, a column of
    each row's weight (gpunn.data.row_weights), is checked so too, and is neither a feature nor a target. ``text_at``: for a CSV
    file, where a column read as text first holds a value that is not a number (its index in ``schema`` ->
    csvtext.csv_first_text's "line 3: column 'b': 'oops' is not a number", the refusal then), and
    ``text_from_the_start`` whether that column's first value is text (an id beside the numbers, not a stray value in
    a column of numbers: only the first is told how to leave it out of the default features). ``width``: for gpunn
    predict, which reads no targets, the model's feature count: a text column is told how to leave it out where
    that leaves that many."""
    targets = _names(target, "target")
    features = _names(features, "features")
    weights = weight_column(weight)
    available = list(schema.names)
    counts = collections.Counter(available)  # sets and counts, not list scans: a file may have 10^5 columns
    wanted = (targets or []) + (features or []) + weights
    missing = [n for n in wanted if n not in counts]
    if missing:
        hint = (_spaced(missing, available, targets) or _with_comma(missing, available, targets)
                or _other_case(missing, available) or _misspelt(missing, available))
        raise MissingColumns(f"{path}: no column {', '.join(map(repr, missing))}; {columns_are(listed_columns(schema))}"
                             f"{hint}", missing, available)
    every_other = features is None
    if features is None:  # every other column, but not an index pandas wrote into the file
        index = _pandas_index_columns(schema)
        left_out = set(targets or []) | set(index) | set(weights)
        features = [n for n in available if n not in left_out]
        if not features:
            raise DataError(f"{path}: no feature columns are left besides the target{'s' * (len(targets) > 1)} "
                            f"{', '.join(map(repr, targets))}")
        unnamed = [available.index(n) + 1 for n in features if not n.strip()]
        if unnamed:
            raise DataError(_unnamed_column(path, unnamed[0], available, [n for n in features if n.strip()]))
    for name in weights:
        if name in features or name in (targets or []):
            role = "a feature" if name in features else "a target"
            raise ValueError(f"column {name!r} is the weight and {role}: a row's weight is neither (leave it out of the "
                             f"{'features' if name in features else 'targets'})")
    overlap = set(features) & set(targets or [])
    if overlap:
        both = sorted(overlap)  # (it said "['y'] is both a feature and a target", a Python list, and no way out)
        raise ValueError(f"column{'s' if len(both) > 1 else ''} {', '.join(map(repr, both))} "
                         f"{'are' if len(both) > 1 else 'is'} both a feature and a target: leave "
                         f"{'them' if len(both) > 1 else 'it'} out of the features (the features default to every "
                         "column but the targets)")
    twice = [n for n in features + (targets or []) + weights if counts[n] > 1]
    if twice:  # pyarrow's lookup by name then failed with "KeyError: 'Column a does not exist in schema'"
        where = [i + 1 for i, n in enumerate(available) if n == twice[0]]
        raise DataError(f"{path}: the header names columns {' and '.join(map(str, where))} both {twice[0]!r}; rename "
                        "one (or name the columns to use, leaving out the repeated name)")
    for name in weights:
        kind = schema.field(name).type
        if read_as(kind) == "other":
            found = text_at(available.index(name)) if text_at else ""
            raise DataError(f"{path} {found}" if found else
                            f"{path}: column {name!r} is {kind}, not numeric; the weight column must hold numbers")
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


def weight_column(weight) -> list:
    """``weight`` (a table source's: the name of one column) as [name], or [] for None."""
    if weight is None:
        return []
    if not isinstance(weight, str) or not weight:
        if hasattr(weight, "__array__"):  # the weights themselves (an array, a Series), not their values shown
            raise TypeError(f"weight names one column of each row's weight, a str; got {a_type(weight)}: weights in "
                            f"memory weigh arrays, model.fit(X, Y, sample_weight=w); for this source add them to "
                            f"the table as a column, and name it")
        raise TypeError(f"weight names one column of each row's weight, a str; got {weight!r}")
    return [weight]


def pick_in_every_file(files, schemas, target, features, width=None, weight=None):
    """(features, targets) of a Parquet file or directory (``files``, their ``schemas``): picked in the first file
    (pick_columns) and looked for by name in every other, as a directory's files are read as one table. A later file
    without one is refused saying where the columns came from: "d/b.parquet: no column 'x2'; ... with the columns
    of its first file, d/a.parquet" (gpunn predict read it by name and failed with pyarrow's KeyError)."""
    features, targets = pick_columns(files[0], schemas[0], target, features, width=width, weight=weight)
    for name, schema in zip(files[1:], schemas[1:]):
        try:
            pick_columns(name, schema, targets, features, weight=weight)
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
