"""gpunn.data's error: a module of its own, so that every part of gpunn.data (the statistics too, which
gpunn.data.base imports) raises the same class without an import cycle."""
import os

import numpy

from ..hints import a_type


class DataError(ValueError):
    """Bad data in a file or a stream; the message names the file (and the rows, when it can)."""


def more_not_finite(bad, rows_read, at_rows, later, shown=3) -> str:
    """How many values are missing or not finite besides the one refused among the rows read with it, and the rows of
    the first ``shown`` of them, so that a file with several is not cleaned one run per value: " (4 more missing or
    not finite among the 1,000 rows read with it, at line 32, line 501, line 1201, ...; the rows after them are not
    checked yet)"; "" for none. ``bad``: a boolean array (rows x columns) per part of those rows (features,
    targets), True where a value is NaN or infinite, the refused one False; ``at_rows(rows)``: where rows (indices
    into them, ascending) are in the file, as a message says it ("row 512", "line 514"); ``later``: rows follow
    that were not read. gpunn predict's words; training's (gpunn.data.base) are the same."""
    more = sum(int(part.sum()) for part in bad)
    if not more:
        return ""
    later = "; the rows after them are not checked yet" if later else ""
    if rows_read == 1:  # (a chunk of one row: a small file's, cut into about 32 chunks)
        return f" ({more} more missing or not finite in its row{later})"
    rows = numpy.flatnonzero(numpy.logical_or.reduce([part.any(axis=1) for part in bad]))
    at = ", ".join(at_rows([int(r) for r in rows[:shown]])) + (", ..." if len(rows) > shown else "")
    return f" ({more} more missing or not finite among the {rows_read:,} rows read with it, at {at}{later})"


def not_finite_value(path, row, column, number, dtype, scaled=None) -> str:
    """The refusal of the value an .npy or Parquet file ``path`` holds at ``row`` (from 0, as NumPy and pandas index
    the file's rows) of ``column`` (a Parquet column's name, an .npy file's column index from 0), read there as
    ``number`` (None: a Parquet null; a float32 one is shown as float32 writes it) and NaN or infinite as ``dtype``, in the words of a CSV file's
    (gpunn.csvtext.not_finite), by training and gpunn predict alike: "x.parquet row 5: column 'b': nan is NaN;
    clean or impute it first" ("-inf is infinite", "1e+39 is infinite in float32 (past its largest value)",
    "a null (a missing number) is not a number; clean or impute it first"; with ``scaled``, the number standardized in float64, where
    standardizing it in ``dtype`` gave a value that is not finite: "1e+38 is 3.3e+39 once standardized, infinite in
    float32 ...", or "3e+38 is 4.8 once standardized, but infinite in float32 on the way there ..." where ``dtype``
    holds that value, gpunn.checks.on_the_way). "" where ``number`` (no ``scaled``) is finite in ``dtype`` (the file
    changed since it was read: the caller words it without the value)."""
    from ..csvtext import number_not_finite

    column = f"column {column!r}" if isinstance(column, str) else f"column {column}"
    if number is None:
        return f"{path} row {row}: {column}: a null (a missing number) is not a number; clean or impute it first"
    narrow = isinstance(number, numpy.floating) and number.dtype.itemsize < 8  # 3e+38, not 3.0000000054977558e+38
    said = number_not_finite(float(number), str(number) if narrow else repr(float(number)), column, dtype, scaled)
    return f"{path} row {row}: {said}" if said else ""


# what a source's maker takes in place of a file's name, the data already in memory, {role: the fit that takes it}
IN_MEMORY = {
    "features": "arrays in memory are fit as they are, model.fit(X, Y) (sample_weight=w weighs their rows)",
    "targets": "arrays in memory are fit as they are, model.fit(X, Y) (sample_weight=w weighs their rows)",
    "weights": ("weights in memory weigh arrays, model.fit(X, Y, sample_weight=w); for this source save them, "
                "numpy.save('w.npy', w), and give that name"),
    "inputs": "arrays in memory are predicted as they are, model.predict(X)",
    "table": ("a table in memory is fit as it is, model.fit(df[features], df[targets]) (sample_weight=df['w'] weighs "
              "its rows)"),
}


def file_name(path, role: str, read: str) -> str:
    """``os.fspath(path)`` for the file (``read``: "a .npy file") a source reads its ``role`` from (IN_MEMORY's);
    the data itself given there (an ndarray, a DataFrame) is refused saying which fit takes it,
    where Python said "expected str, bytes or os.PathLike object, not ndarray"."""
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"{read} holds the {role}: give its name (a str or pathlib.Path), not {a_type(path)}; "
                        f"{IN_MEMORY[role]}") from None
