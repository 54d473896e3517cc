"""Input checks: bad data gets a clear error naming what was wrong, never a silent result."""
from __future__ import annotations

import collections
import collections.abc
import contextlib
import contextvars
import math
import numbers
import os
import warnings

import numpy

from .backend import is_device_array, user_stacklevel
from .hints import a_type, torch_data, torch_tensors, value_repr


DTYPES = ("float32", "float64")  # a model's, and a synthetic task's


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the ``pip install "gpunn[...]"`` that
    adds it (the command line reports it as a user's error, not an internal one)."""


def on_the_way(dtype) -> str:
    """Why a value was not finite standardized in ``dtype`` though its standardized value (float64's) is: standardizing
    computes (x - mean) * (1 / spread) in the dtype (gpunn.data.stats.Standardizer), and x - mean (3e38 in a column
    of -3e38) or 1 / spread (a spread under about 3e-39) can leave float32 on the way. The words after "but"."""
    return f"infinite in {dtype} on the way there: x - mean, or 1 / spread, is past its largest value"


AS_FLOAT64 = "or give the values as float64 (standardized in float64, then cast)"  # what on_the_way's value needs


def finite_in(dtype, number) -> bool:
    """Whether ``dtype`` holds ``number`` (a float) finite."""
    with numpy.errstate(over="ignore"):  # 1e39 in float32: the overflow is the answer
        return bool(numpy.isfinite(numpy.dtype(dtype).type(number)))


class NotFinite(ValueError):
    """An array's NaN or infinite values (``count``; the first at ``row``, ``column``, counted from 0 as the array
    indexes them), after conversion to ``dtype``, or, given ``scaled`` (the first one's standardized value, finite in
    float64), once standardized in ``dtype``: a caller that read the array from a file can say where in it. A
    ``scaled`` that ``dtype`` holds left it on the way there (:func:`on_the_way`). ``label``: the column's name, where
    the array was a DataFrame with named columns ("column 2 ('price')"); a position alone left its reader counting."""

    def __init__(self, name, count, row, column, dtype, scaled=None, label=None):
        named = f" ({str(label)!r})" if label is not None else ""  # (str: numpy.str_'s repr is "np.str_('price')")
        first, how = f"first at row {row}, column {column}{named}", "clean or impute them first"
        if scaled is None:
            what = f"{count} NaN or infinite value(s) ({first}) after conversion to {dtype}"
        elif not finite_in(dtype, scaled):
            what = f"{count} value(s) infinite in {dtype} once standardized ({first}: {scaled:.2g})"
        else:
            what = (f"{count} value(s) infinite in {dtype} once standardized ({first}: {scaled:.2g} in float64, "
                    f"but {on_the_way(dtype)})")
            how = f"{how}, {AS_FLOAT64}"
        super().__init__(f"{name} contains {what}; {how}")
        self.count, self.row, self.column, self.label = count, row, column, label
        self.dtype, self.scaled = dtype, scaled


def _kind_of(array) -> str:
    return numpy.dtype(array.dtype).kind


def is_array(data) -> bool:
    """A NumPy array or a device (CuPy) array: what the model's checks take as it is."""
    return isinstance(data, numpy.ndarray) or is_device_array(data)


def as_array(data, name: str = "X"):
    """``data`` itself when it is a NumPy or CuPy array, else a NumPy array of it: a list, a pandas
    DataFrame or Series (missing values of its nullable columns, pandas.NA, as NaN, which the checks
    then report), a CPU torch tensor, anything ``numpy.asarray`` reads. Such objects have a ``dtype``
    that is not NumPy's (``Int64``, ``torch.float32``) or none (a DataFrame), and no NumPy methods. An
    object array (or list) whose every element is a real number (Python or NumPy ints and floats, Fractions)
    is read as float64, as scikit-learn reads it; one holding anything else is left for the caller to refuse."""
    if is_array(data) and not (isinstance(data, numpy.ndarray) and data.dtype == object):
        return data
    if isinstance(data, (str, bytes, os.PathLike)):  # fit("X.npy", "Y.npy") said "got dtype <U5"
        path = os.fsdecode(data)
        reader = _table_reader(path)
        kind = reader and reader.removeprefix("read_")
        if reader and name != "X":  # fit(X, "y.csv"): Y's file is no input to predict (it was told gpunn predict)
            # X_val's file, or an iterable's batch's "X of batch 3", is inputs: it was told to read its target columns
            columns, where, instead = (("target", "fit, evaluate and score also take", "X and Y") if name.startswith("Y") else
                                       ("feature", "validation_data also takes", "(X_val, Y_val)") if name.endswith("_val")
                                       else ("feature", "fit also takes", "X and Y"))
            raise TypeError(f"{name} is {a_type(data)} ({path!r}), not an array: read its {columns} column(s) first, "
                            f"pandas.{reader}(path)[[...]]; {where} a table of the features and targets as a "
                            f"data source, in place of {instead}, streamed: gpunn.data.{kind}(path, target=...)")
        if reader:  # predict("heldout.parquet") was told of numpy.load only
            raise TypeError(f"{name} is {a_type(data)} ({path!r}), not an array: to predict a table file, "
                            f"{predicting_a_table_file(reader)}; fit, evaluate, score and predict also take it, with "
                            f"its target column(s), as a data source, streamed: gpunn.data.{kind}(path, target=...)")
        # predict("X.npy") was told of numpy.load and fit's source only, not of the command that predicts the file
        command = (f"; gpunn predict MODEL X.npy OUT predicts an .npy file to a file (one over 256 MiB streamed; "
                   f"{ONE_NETWORKS_FILE})" if name == "X" and path.lower().endswith(".npy") else "")
        raise TypeError(f"{name} is {a_type(data)} ({path!r}), not an array: read a file first "
                        "(numpy.load for .npy); fit also takes files as a data source, in place of X and Y "
                        "(gpunn.data.npy('X.npy', 'Y.npy'), gpunn.data.csv(path, target=...), gpunn.data.parquet)"
                        f"{command}")
    _refuse_dates(data, name)
    try:
        array = numpy.asarray(data)
        if array.dtype == object and hasattr(data, "to_numpy") and not _holds_text(data):  # a DataFrame of nullable
            try:  # or mixed columns (numbers written as text are the caller's to convert, as a NumPy array's are)
                array = data.to_numpy(dtype=numpy.float64, na_value=numpy.nan)
            except (ValueError, TypeError):
                pass  # not numbers: refused by the caller, with the dtype
    except (ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: a torch tensor that requires grad
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if array.dtype == object and array.ndim and all(isinstance(v, numbers.Real) for v in array.flat):
        array = array.astype(numpy.float64)  # it was refused as "strings or other Python objects"
    return array


def _holds_text(frame) -> bool:
    """Whether a pandas DataFrame (or Series) has a column of Python objects holding text (str or bytes), by pandas'
    own inference (in C: a nullable column's NA or a column of Python ints costs no Python loop); False for
    anything else (a polars frame, whose text columns to_numpy(dtype=float64) refuses itself)."""
    try:
        from pandas.api.types import infer_dtype, is_string_dtype
    except ImportError:
        return False
    columns = ([frame.iloc[:, i] for i in range(frame.shape[1])] if getattr(frame, "ndim", 0) == 2 and
               hasattr(frame, "iloc") else [frame] if hasattr(frame, "iloc") else [])
    return any((column.dtype == object or is_string_dtype(column.dtype))  # (pandas 3's str columns: StringDtype)
               and infer_dtype(column, skipna=True) in ("string", "bytes", "mixed", "mixed-integer")
               for column in columns)


def predicting_a_table_file(reader: str) -> str:
    """How a table file of inputs is predicted, for a refusal: ``reader`` is pandas' for the file (``read_csv``,
    ``read_parquet``)."""
    return (f"gpunn predict MODEL IN OUT (streamed; {ONE_NETWORKS_FILE}), or model.predict(pandas.{reader}(path)), "
            "whose columns a model trained on named ones picks by name")


# gpunn predict refuses an Ensemble's checkpoint (K predictions a row): an Ensemble's user pointed to the command by
# a file-name refusal was sent to one that refuses theirs
ONE_NETWORKS_FILE = "MODEL one network's file: gpunn.save(path, ens.best()) saves an Ensemble's best member as one"


# A Parquet file's names: here, where _table_reader reads them, for preflight (its DATA_SUFFIXES) and gpunn.data
# too (preflight imports checks, through csvtext: checks cannot import preflight)
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def refuse_a_file_to_fit(X, Y, fit="model.fit") -> None:
    """fit("t.csv", ...) and fit("X.npy", "Y.npy"): the way fit reads a file, told first (as_array, which does not
    know its caller, told predict's first: "to predict a table file, gpunn predict ...")."""
    if not isinstance(X, (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(X)
    reader = _table_reader(path)
    if reader:
        kind = reader.removeprefix("read_")
        raise TypeError(f"X is {a_type(X)} ({path!r}), not an array: {fit} takes a table file as a data source in "
                        f"place of X and Y, its feature and target columns streamed: {fit}(gpunn.data.{kind}({path!r}, "
                        f"target=[...])), the target columns named; or read it first, pandas.{reader}(path)")
    if path.lower().endswith(".npy"):
        raise TypeError(f"X is {a_type(X)} ({path!r}), not an array: {fit} takes .npy files as a data source in place "
                        f"of X and Y, memory-mapped: {fit}(gpunn.data.npy({path!r}, {_y_path(Y)!r})); or load them "
                        "first, numpy.load(path)")


def _y_path(Y) -> str:
    return os.fsdecode(Y) if isinstance(Y, (str, bytes, os.PathLike)) else "Y.npy"


def _table_reader(path: str) -> str | None:
    """pandas' reader of the table file ``path`` names, by its suffix as gpunn's command line reads it (a directory
    as Parquet files), or None for a name that is not a table's (``.npy``, another suffix)."""
    suffix = os.path.splitext(path.rstrip("/" + os.sep))[1].lower()
    if suffix == ".csv":
        return "read_csv"
    if suffix in PARQUET_SUFFIXES or (not suffix and os.path.isdir(path)):
        return "read_parquet"
    return None


def _refuse_dates(data, name: str) -> None:
    """Refuse a pandas or polars DataFrame (or Series) with a column of dates, times or durations, naming it: pandas'
    to_numpy(float64) and polars' arrays read one as a count of its unit (microseconds since 1970, days for a polars
    Date) without a word, so a fit trained on numbers near 1.6e15."""
    if isinstance(data, numpy.ndarray):  # (a datetime64 array is refused by its dtype, as the model's checks read it)
        return
    dtypes = getattr(data, "dtypes", None)
    if dtypes is not None and hasattr(data, "columns"):
        columns = zip(data.columns, list(dtypes))
    elif hasattr(data, "dtype") and (hasattr(data, "iloc") or hasattr(data, "to_numpy")):  # a Series
        columns = [(None, data.dtype)]
    else:
        return
    for label, dtype in columns:
        kind = getattr(dtype, "kind", None)  # numpy's and pandas' dtypes; polars' say is_temporal()
        if kind in ("M", "m") or (kind is None and callable(getattr(dtype, "is_temporal", None)) and dtype.is_temporal()):
            var = name.split()[0]
            durations = kind == "m" or "Duration" in str(dtype)
            column, picked = ((f"{name} holds", var) if label is None else
                              (f"{name}'s column {label!r} holds", f"{var}[{label!r}]"))
            convert = (f"{picked}.dt.total_seconds()" if durations else
                       f"seconds since a start, ({picked} - {picked}.min()).dt.total_seconds()")
            raise TypeError(f"{column} {'durations' if durations else 'dates or times'} ({dtype}), which would be read "
                            f"as a count of their unit, not as numbers you chose: convert it to numbers first if it is "
                            f"meant as one ({convert}), or leave it out")


def by_feature_names(data, columns, name: str = "X", key: str = "features"):
    """A DataFrame of named columns (pandas' or polars'), its columns picked by a model's feature names (``columns``: a
    table source's or a DataFrame's ``model.data_columns``, see fit_columns; kept in checkpoints), in the model's order,
    as ``gpunn predict`` picks a CSV file's: in any order and among others (the target's too). It was read by position,
    so a DataFrame of the same columns in another order was predicted on the wrong features without a word. A DataFrame
    without one of them is refused naming it, as is one where a name labels two columns; one of unnamed columns (0, 1,
    ...), and anything else, is given back as it is. ``key="targets"``: a DataFrame of targets (Y), by the model's
    target names, alike (a Series, one column, is taken as it is, whatever its name, as scikit-learn takes y)."""
    picked = (columns or {}).get(key)
    labels = _frame_labels(data, name)
    if not picked or labels is None:
        return data
    if labels == picked or not any(isinstance(label, str) for label in labels):
        return data
    missing = [n for n in picked if n not in labels]
    if missing:
        raise ValueError(f"{name} has no column {', '.join(map(repr, missing))}: the model was trained on named "
                         f"{'columns' if key == 'features' else key}, {', '.join(picked)}, and picks a DataFrame's by "
                         f"name; its columns are: {_shown(labels)}")
    _refuse_repeats(labels, name, among=picked)
    return data[picked]  # (pandas' and polars' alike: the columns of these names, in this order)


def check_source_widths(model, source, name=None, hint="") -> None:
    """Refuse a source whose feature or target count is not the model's, naming it (``name``, else its class) and
    both widths: fit's refusal, and evaluate's, score's and predict's (which said "X has 2 columns but the model
    expects 3", of an X the caller never gave)."""
    if source.n_features != model.layer_sizes[0] or source.n_outputs != model.layer_sizes[-1]:
        outputs = f"{source.n_outputs} output{'s' * (source.n_outputs != 1)}"
        raise ValueError(f"{name or type(source).__name__} gives {source.n_features} features and {outputs}; the "
                         f"model takes {model.layer_sizes[0]} and gives {model.layer_sizes[-1]}{hint}")


def check_source_columns(model, source, fitting=False) -> None:
    """Refuse a table source whose feature (or target) columns are not those ``model`` was trained on, in its order
    (``model.data_columns``): a source's columns are read in the source's order, so a held-out file of the same
    columns in another order was scored on the wrong features without a word (a new user's R² -1.0 for 0.99), where
    gpunn predict and a DataFrame pick them by name. ``fitting``: a later fit, which may go on on a table of other
    columns (the model's names then become the new table's), is refused only the model's own in another order. The
    refusal names the ``features=``/``target=`` that reads the model's columns where the table has them
    (``source.table_columns``), else says it has none of those names ("make it with features=['a', 'b']" sent a
    held-out file of columns p, q to a refusal of missing columns)."""
    columns = getattr(model, "data_columns", None) or {}
    for key, option in (("feature", "features"), ("target", "target")):
        trained, given = columns.get(f"{key}s"), getattr(source, f"{key}_names", None)
        if not trained or not given or list(trained) == list(given):
            continue
        if fitting and sorted(trained) != sorted(given):
            continue
        how = columns_picked(source, option, trained, "the model's column names, or pass arrays of its columns, read "
                                                      f"by position as {', '.join(trained)}")
        raise ValueError(f"{type(source).__name__}'s {key} columns are {', '.join(given)}, and the model was trained "
                         f"on {', '.join(trained)}, in that order (model.data_columns): a source's columns are read in "
                         f"its order, not picked by name as a DataFrame's are; {how}")


def columns_picked(source, option, wanted, names_to_give) -> str:
    """How to make a table source read the columns ``wanted`` (``option``: "features" or "target"): "make it with
    features=['a', 'b']" where its table has them (``source.table_columns``), else that it has none of those names
    to pick, and to give it ``names_to_give`` (a held-out file of columns p, q was sent to pick a, b, and then
    refused them as missing)."""
    table = getattr(source, "table_columns", None)
    absent = [name for name in wanted if name not in table] if isinstance(table, list) else []
    if not absent:
        return f"make it with {option}={list(wanted)!r}"
    return (f"its table has no column {', '.join(map(repr, absent))} for {option}={list(wanted)!r} to pick: give it "
            f"{names_to_give}")


def _shown(labels) -> str:
    """A DataFrame's column labels for a message: the first 20."""
    return ", ".join(map(str, labels[:20])) + (", ..." if len(labels) > 20 else "")


def _frame_labels(data, name: str):
    """A DataFrame's column labels, a list: a pandas frame's (what ``columns`` and ``iloc`` say one is) or a polars
    frame's (``columns`` and ``select``, no ``iloc``); None for anything else. Labels mixing strings and other types
    are refused (a TypeError, as scikit-learn's ``_get_feature_names`` refuses them): such a frame was taken as named,
    its string labels picked by name and the others left out of the model's names. A mapping (a dict, an attribute
    dict) is refused here, the checks' first look at X or Y, before any attribute is read: an attribute dict's
    ``__getattr__`` raises KeyError for a name it lacks, which stood in place of this refusal."""
    if isinstance(data, collections.abc.Mapping):
        raise TypeError(f"{name} must be an array of numbers, got {a_type(data)}")
    labels = getattr(data, "columns", None)
    if labels is None or not (hasattr(data, "iloc") or hasattr(data, "select")):
        return None
    labels = list(labels)
    types = sorted({"str" if isinstance(label, str) else type(label).__name__ for label in labels})  # (numpy.str_: str)
    if len(types) > 1 and "str" in types:
        var = name.split()[0]
        raise TypeError(f"{name} has column labels of types {', '.join(types)}: gpunn picks a DataFrame's columns by "
                        f"name where every label is a string, and reads them by position where none is. Make them "
                        f"all strings ({var}.columns = {var}.columns.astype(str)) to have them picked by name, or "
                        f"none ({var}.to_numpy()) to read the columns in order")
    return labels


def _named(labels) -> bool:
    return bool(labels) and all(isinstance(label, str) for label in labels)


def feature_names(data, name: str = "X"):
    """A DataFrame's column names, a list, where every label is a string (scikit-learn's feature names); else None."""
    labels = _frame_labels(data, name)
    return labels if _named(labels) else None


def picked_names(data, columns, name: str = "X", key: str = "features"):
    """The column names of ``data`` in the order :func:`by_feature_names` gives its columns (``columns``' ``key``, where
    it picks them by the model's names), for a refusal naming a column as NotFinite does; None where ``data`` is no
    DataFrame of named columns."""
    names = feature_names(data, name)
    picked = (columns or {}).get(key)
    return list(picked) if names and picked else names


def _refuse_repeats(labels, name: str, among=None) -> None:
    """Refuse a DataFrame where one string label names two or more columns (pandas allows it; polars does not): picked
    by that name, pandas gives them all, and "X has 5 columns but the model expects 4" said nothing of why; recorded
    by a fit, they would name no one column. ``among``: the names a model picks (a repeat among the columns it
    leaves is harmless); None: a fit's, which records them all."""
    counts = collections.Counter(label for label in labels if isinstance(label, str))
    repeats = [label for label, count in counts.items() if count > 1 and (among is None or label in among)]
    if repeats:
        said = ", ".join(f"{label!r} ({counts[label]} columns)" for label in repeats)
        why = "the model picks its columns by name" if among else \
            "a fit records its column names, to pick a later DataFrame's columns by them"
        var = name.split()[0]
        raise ValueError(f"{name} has duplicate column names: {said}; {why}, so each name must label one column: "
                         f"rename or drop the repeats ({var}.loc[:, ~{var}.columns.duplicated()] keeps the first)")


def _series_name(Y):
    """A pandas or polars Series' name (a string), else None."""
    if _frame_labels(Y, "Y") is None and (hasattr(Y, "iloc") or (hasattr(Y, "to_numpy") and hasattr(Y, "name"))):
        name = getattr(Y, "name", None)
        return name if isinstance(name, str) else None
    return None


def fit_columns(X, Y, columns):
    """The ``model.data_columns`` a fit on (X, Y) leaves (``columns``: the model's before it), as a fit on a table
    source leaves the table's: a DataFrame X (pandas' or polars') of string column names records them as the
    features, and Y's names as the targets (a DataFrame's columns, a Series' name; None when unnamed), so that
    predict, score and evaluate pick a later DataFrame's columns by those names (by_feature_names), as scikit-learn
    keeps ``feature_names_in_``. A DataFrame the model already picks by its names keeps them, in the model's order;
    arrays, and a DataFrame of unnamed columns (0, 1, ...), leave the model's as they were (none, or a fit's before):
    gpunn's fit goes on from the model's weights, as scikit-learn's ``warm_start`` does, which keeps
    ``feature_names_in_``; a model trained on a table and then on its arrays would otherwise read the same table by
    position. Y's names likewise: a DataFrame Y the model already picks by its target names keeps them. A name that
    labels two columns of X or of Y is refused: a later DataFrame could not be picked by it."""
    labels = _frame_labels(X, "X")
    if labels is None:
        return columns
    features = (columns or {}).get("features")
    if not (features and any(isinstance(label, str) for label in labels)):  # (else by_feature_names picks them)
        if not _named(labels):
            return columns
        _refuse_repeats(labels, "X")
        features = labels
    targets, labels = (columns or {}).get("targets"), _frame_labels(Y, "Y")
    if not (targets and labels is not None and any(isinstance(label, str) for label in labels)):  # (else picked)
        if labels is None:
            name = _series_name(Y)
            targets = [name] if name is not None else None
        else:
            if _named(labels):
                _refuse_repeats(labels, "Y")
            targets = labels
    return {"features": list(features), "targets": list(targets) if _named(targets) else None}


_READ_BY_POSITION = contextvars.ContextVar("gpunn_read_by_position", default=False)


@contextlib.contextmanager
def read_by_position():
    """gpunn's own reads of arrays it has put in the model's columns (``gpunn predict``, data.files.predict_file: a
    CSV file's picked by name, an .npy file's in order, as the command's help says): warn_read_by_position is quiet
    inside."""
    token = _READ_BY_POSITION.set(True)
    try:
        yield
    finally:
        _READ_BY_POSITION.reset(token)


_HELD = contextvars.ContextVar("gpunn_held_warnings", default=None)


class _HeldWarnings:
    """warn_read_by_position's warnings of a call still checking its inputs and settings (see held_warnings)."""

    def __init__(self):
        self.said, self._token = [], _HELD.set(self)

    def give(self) -> None:
        """Warn them now (once: later ones warn as they come), as the call starts its work; inside another call's
        checks (``loss`` predicts), they join that call's."""
        said, self.said = self.said, []
        self.drop()
        outer = _HELD.get()
        for message in said:
            if outer is not None:
                outer.said.append(message)
            else:
                warnings.warn(message, UserWarning, stacklevel=user_stacklevel())

    def drop(self) -> None:
        if self._token is not None:
            _HELD.reset(self._token)
            self._token = None


@contextlib.contextmanager
def held_warnings():
    """Around a call's checks: its warnings of columns read by position are held, and given by the ``give()`` of what
    this yields (a fit's and a resume's as training starts) or as the block ends without an error; a call refused by
    a later check (another argument, the validation data, Y's rows) drops them, so it does not warn first."""
    held = _HeldWarnings()
    try:
        yield held
    except BaseException:
        held.drop()
        raise
    held.give()


def warn_source_read_by_position(source, model) -> None:
    """warn_read_by_position's first warning for a table source (gpunn.data.csv, parquet: its ``feature_names``) given
    to a model fitted without column names: its columns are read in the source's order as the model's, as a
    DataFrame's of names are, which predict, evaluate and score on a source did without a word. (A model fitted with
    names is given a source of its own columns, in its order, or refused: check_source_columns.)"""
    names = getattr(source, "feature_names", None)
    if names and not (getattr(model, "data_columns", None) or {}).get("features"):
        warn_read_by_position(source, model.data_columns, type(source).__name__, model, source_names=list(names))


def warn_read_by_position(data, columns, name: str, model, source_names=None) -> None:
    """scikit-learn's two warnings (sklearn.utils.validation._check_feature_names) where a model reads ``data``'s
    columns by position though one side of it has names and the other none: a DataFrame of column names given to a
    model fitted without them (on arrays: ``columns``, its ``data_columns``, has no features), and arrays (or a
    DataFrame of unnamed columns) given to a model fitted with them. Either way the columns are taken in order, which
    is right only where they are in training's order. Called where a user's data comes in (predict, evaluate, score,
    loss, loss_and_gradients, fit, validation_data, resume), not on gpunn's own arrays after them."""
    if _READ_BY_POSITION.get():
        return
    features = (columns or {}).get("features")
    labels = _frame_labels(data, name)
    named = labels is not None and any(isinstance(label, str) for label in labels)
    if source_names is not None:  # a table source's feature columns (warn_source_read_by_position)
        labels, named = source_names, not features
    owner = type(model).__name__
    if named and not features:
        said = (f"{name} has column names ({_shown(labels)}), but the {owner} was fitted without column names: "
                f"{name}'s columns are read by position, in the order of the columns it was trained on")
    elif features and not named:
        said = (f"{name} has no column names, but the {owner} was fitted with them: {name}'s columns are read by "
                f"position, as {_shown(features)}; a DataFrame of those names has its columns picked by name")
    else:
        return
    held = _HELD.get()
    if held is not None:
        held.said.append(said)
        return
    warnings.warn(said, UserWarning, stacklevel=user_stacklevel())


def _text_column(frame, var="X") -> str:
    """Which column of the DataFrame ``frame`` (pandas' or polars'; or None) does not read as numbers, for the refusal
    of its dtype object: " (its column 'city' holds text, 'Paris' in row 0: leave it out, or encode it as numbers)",
    or "". It said "strings or other Python objects" of the whole frame, naming no column."""
    if frame is None:
        return ""
    for index, label in enumerate(frame.columns):
        # (pandas' by place: two columns may share a label; polars' labels are unique, and it has no iloc)
        column = frame.iloc[:, index] if hasattr(frame, "iloc") else frame[label]
        try:
            numbers_read = _kind_of(as_array(column)) in "biuf"  # (a nullable column's NA as NaN, as the frame's)
        except ValueError:
            numbers_read = False
        if not numbers_read:
            row, value = next(((r, v) for r, v in enumerate(column) if not isinstance(v, numbers.Real) and v is not None),
                              (None, None))
            example = f", {value!r} in row {row}" if row is not None else ""
            if isinstance(value, (str, bytes)) and _reads_as_numbers(numpy.asarray(column, dtype=object)):
                return (f" (its column {label!r} holds numbers written as text{example}: convert them first, "
                        f"{var}.astype(float))")
            what, do = _column_holds(value)
            return f" (its column {label!r} holds {what}{example}: leave it out, or {do})"
    return ""


def _reads_as_numbers(array) -> bool:
    """Whether every value of ``array``, text or Python objects, reads as a number, as ``array.astype(float)`` reads
    it ('1.5', b'2', 3): numbers written as text, told to convert them. A None (a missing value, which astype reads
    as NaN) is none."""
    if array.dtype == object and any(v is None for v in array.flat):
        return False
    try:
        array.astype(numpy.float64)
    except (TypeError, ValueError):
        return False
    return True


def _column_holds(value) -> tuple:
    """(what a column holds, what to do with it) for the refusal of a DataFrame's column of Python objects, by its
    first that is not a number: a column of datetime.date objects (pandas keeps them as objects, where a
    datetime64 column is refused as dates: _refuse_dates) was said to hold text."""
    import datetime

    if isinstance(value, datetime.date):  # (a datetime is a date)
        return "dates (Python objects)", "convert it to the numbers you mean (days since a start, say)"
    if isinstance(value, datetime.time):
        return "times of day (Python objects)", "convert it to the numbers you mean (seconds since midnight, say)"
    if isinstance(value, datetime.timedelta):
        return "durations (Python objects)", "convert it to the numbers you mean (seconds, say: .total_seconds())"
    if value is None or isinstance(value, (str, bytes)):
        return "text", "encode it as numbers"
    return f"Python objects ({type(value).__name__})", "encode it as numbers"


def _place(index) -> str:
    """Where an entry of a 1-D or 2-D array (or more) is, as a refusal names it: "row 2, column 1"."""
    at = [int(i) for i in index]
    return f"row {at[0]}, column {at[1]}" if len(at) == 2 else f"row {at[0]}" if len(at) == 1 else f"index {tuple(at)}"


def _refuse_missing(array, name: str) -> None:
    """An object array (a list) of numbers and None: None is a missing value, refused as one, a ValueError as a NaN
    is (NotFinite; a DataFrame's None reaches the checks as NaN), where "strings or other Python objects" named
    neither. Anything else, strings among them, is left to the caller's refusal."""
    missing = [v is None for v in array.flat]
    if not any(missing) or not all(m or isinstance(v, numbers.Real) for m, v in zip(missing, array.flat)):
        return
    place = _place(numpy.unravel_index(missing.index(True), array.shape))
    raise ValueError(f"{name} holds {sum(missing)} None value(s) (missing values?), first at {place}; clean or impute "
                     "them first")


def _refuse_masked(array, name: str) -> None:
    """A NumPy masked array's masked entries are its missing values (numpy.ma.masked_invalid, masked_equal(X, -999)
    for a sentinel): converting it reads the data beneath the mask, so a fit trained on -999 without a word. They are
    refused as a None is; an array with none masked is read as its data."""
    masked = numpy.ma.getmaskarray(array)
    if not masked.any():
        return
    place = _place(numpy.argwhere(masked)[0])
    raise ValueError(f"{name} holds {int(masked.sum())} masked value(s) (missing values), first at {place}: a masked "
                     f"array's data beneath its mask would be read; clean or impute them first "
                     f"({name.split()[0]}.filled(value), or drop those rows)")


def refuse_torch_validation(validation_data):
    """PyTorch's DataLoader or Dataset given as fit's ``validation_data`` is refused saying where its tensors are: it
    was "validation_data must be a pair (X_val, Y_val)"; a loader of two batches was unpacked as the pair ("X_val must
    be 2-D ...; got shape (2, 16, 3)"), and a TensorDataset of two rows too, validated on without a word where X's and
    Y's rows are as wide (torch 2.13)."""
    if torch_data(validation_data):
        raise TypeError(f"validation_data is {torch_data(validation_data)}: pass the held-out arrays or tensors as a "
                        f"pair, validation_data=(X_val, Y_val): {torch_tensors()}")


def as_matrix(data, name: str, backend, dtype, *, allow_1d: bool = False, n_columns: int | None = None):
    """``data`` as a C-contiguous 2-D array of ``dtype`` on ``backend``'s device, checked.

    A 1-D array is taken as one column when ``allow_1d`` (targets), never broadcast.
    """
    if data is None:
        raise TypeError(f"{name} is None; pass a 2-D numeric array")
    if torch_data(data):
        index = "[1]" if name.startswith("Y") else "[0]"
        raise TypeError(f"{name} must be an array of numbers, got {torch_data(data)}: pass the tensor, "
                        f"{torch_tensors(index)}")
    xp = backend.xp
    labels = _frame_labels(data, name)
    frame = data if labels is not None else None
    data = as_array(data, name)
    if isinstance(data, numpy.ma.MaskedArray):
        _refuse_masked(data, name)
    if _kind_of(data) not in "biuf":
        if _kind_of(data) == "O" and data.ndim == 0:  # not a sequence: a generator, a set, a dict...
            held = data.item()
            # a SciPy sparse matrix (OneHotEncoder's default output): gpunn's products are dense
            dense = f": gpunn trains on dense arrays, {name.split()[0]}.toarray()" if hasattr(held, "toarray") else ""
            raise TypeError(f"{name} must be an array of numbers, got {a_type(held)}{dense}")
        if _kind_of(data) == "O":
            _refuse_missing(data, name)
        # numbers read as text (csv.reader's rows, numpy.loadtxt(dtype=str)) are converted by the caller, as
        # scikit-learn asks: a guess here would take "1,5" or "N/A" silently one way or another
        var = name.split()[0]
        text = (f" (text: where every string is a number, convert them first, {var}.astype(float); "
                "encode other text as numbers)")
        what = {"O": _text_column(frame, var) or " (strings or other Python objects: encode them as numbers first)",
                "U": text, "S": text}.get(_kind_of(data), "")
        if frame is None and _kind_of(data) in "OUS" and _reads_as_numbers(data):  # an object array's '1.5' was told
            # to encode them, a str array's to convert them where they are numbers: both are told they are
            text = _kind_of(data) in "US" or any(isinstance(v, (str, bytes)) for v in data.flat)
            what = (f" ({'text' if text else 'Python objects'}: its every value is a number; convert them first, "
                    f"{var}.astype(float))")
        raise TypeError(f"{name} must hold real numbers; got dtype {data.dtype}{what}")
    if data.ndim == 1 and allow_1d:
        data = data.reshape(-1, 1)
    if data.ndim != 2:
        hint, var = "", name.split()[0]  # for a 1-D array: one row of features, or one feature per row; the
        if data.ndim == 1 and n_columns and n_columns > 1:  # model's width says which ("X of batch 3": X.reshape)
            hint = (f" (use {var}.reshape(1, -1) for a single row)" if data.shape[0] == n_columns
                    else f" (use {var}.reshape(-1, {n_columns}) for rows of {n_columns} features)")
        elif data.ndim == 1:
            hint = f" (use {var}.reshape(-1, 1) for a single feature)"
        raise ValueError(f"{name} must be 2-D (rows x columns); got shape {tuple(data.shape)}{hint}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(data.shape)}")
    if n_columns is not None and data.shape[1] != n_columns:
        has = f"{data.shape[1]} column{'s' if data.shape[1] != 1 else ''}"
        # rows of the model's width: the rows and columns swapped (a y of shape (1, n), an X made column by column)
        turned = f"; its shape {tuple(data.shape)} looks transposed (rows are examples): pass {name.split()[0]}.T" \
            if data.shape[0] == n_columns else ""
        raise ValueError(f"{name} has {has} but the model expects {n_columns}{turned}")
    if not (xp is numpy and type(data) is numpy.ndarray and data.dtype == dtype and data.flags.c_contiguous):
        with numpy.errstate(over="ignore"):  # an overflow to inf is reported just below, with its place
            data = xp.ascontiguousarray(xp.asarray(data, dtype=dtype))
    finite = xp.isfinite(data)
    if not bool(finite.all()):
        bad = int(finite.size - int(finite.sum()))
        row, col = (int(i) for i in xp.argwhere(~finite)[0])
        raise NotFinite(name, bad, row, col, numpy.dtype(dtype).name, label=labels[col] if _named(labels) else None)
    return data


def canonical_dtype(dtype) -> str:
    """"float32" or "float64" for any NumPy spelling of them: numpy.float32, "f4", "<f8", "single",
    "double", numpy.dtype("float64"), float... Anything else raises ValueError."""
    try:
        name = numpy.dtype(dtype).name if dtype is not None and not isinstance(dtype, bool) else None
    except Exception:  # (TypeError; numpy's own message calls the object's repr, which may raise anything)
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES} (or a NumPy spelling of one: f4, single, numpy.float64...), "
                         f"got {value_repr(dtype)}")
    return name


def check_rows_match(X, Y, x_name="X", y_name="Y"):
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{x_name} has {X.shape[0]} rows but {y_name} has {Y.shape[0]}; they must match")


def _held(value, kinds: str):
    """The NumPy scalar a 0-d array of a dtype kind in ``kinds`` holds (NumPy takes numpy.array(3) for 3, and an
    Ensemble's per-member lists unwrap 0-d arrays alike); any other value as given."""
    if isinstance(value, numpy.ndarray) and value.ndim == 0 and value.dtype.kind in kinds:
        return value[()]
    return value


def real(value) -> float | None:
    """The Python float a real number holds, or None for anything else. A real number is an int, a float, a NumPy
    integer or floating scalar (numpy.float32(0.1) too), a Fraction, or a 0-d integer or floating array
    (numpy.array(1e-2), which NumPy takes as the number it holds, as an Ensemble's per-member values and every int
    argument do); never a bool (numpy.True_ and numpy.array(True) too), a complex, a string or an array of shape
    (1,) or more. Every real-valued option (lr, weight_decay, momentum, betas, eps, min_delta, factor,
    validation_fraction, noise...) is checked, and then kept, as this float: never the array or scalar given, which
    would go on into hyperparameters, histories and a checkpoint's JSON. An int too large for a float is infinite."""
    if type(value) is float:  # the common case, without the ABC check (an optimizer's fit checks 5 values)
        return value
    value = _held(value, "iuf")
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # 10**400
        return math.inf if value > 0 else -math.inf


def got(value, kind: str = "a number") -> str:
    """The end of a numeric option's refusal, naming what was given: ``got 0`` (its repr), and for text ``got the
    string '0.01'; pass a number`` (``kind``: "an integer" for the int options): a number read from a config file or a
    command line as text, whose quotes alone ("got '0.01'") read as the number refused. Another library's 0-d
    array (a torch tensor, a CuPy or JAX array: ``lr=torch.tensor(0.01)``) is not read as the number it holds, as a
    0-d NumPy array is (its dtype may be a bool's, and reading it may wait on a GPU): its refusal says to pass that
    number, where "got tensor(0.0100)" read as a rate refused."""
    if isinstance(value, str):
        return f"got the string {value!r}; pass {kind}"
    if _foreign_0d(value):
        python = "int" if kind == "an integer" else "float"
        return (f"got {value!r}, a 0-d {type(value).__name__}, which gpunn does not read: pass the number it holds as "
                f"a Python {python}, {python}(value)")
    return f"got {value_repr(value)}"


def _foreign_0d(value) -> bool:
    """Whether ``value`` is a 0-d array of a library other than NumPy's that converts to a number (shape (), with
    __float__: a torch tensor, a CuPy or JAX array)."""
    return (not isinstance(value, (numpy.ndarray, numpy.generic)) and getattr(value, "shape", None) == ()
            and hasattr(value, "__float__"))


def validation_share(value) -> float | None:
    """``validation_fraction`` checked, before anything reads its truth: a number in [0, 1) (:func:`real`: a NumPy
    scalar or a 0-d array too) as a float, or None for no hold-out (None, or a number equal to 0). Every other value
    is refused alike, falsy or not: the string '', a bool (False as True: a flag is no share), a list, an array of
    values ("" and False held nothing out without a word, numpy.array([0.1, 0.2]) failed on its truth value). Fit on
    arrays and the data sources alike."""
    if value is None:
        return None
    number = real(value)
    if number is None or not 0 <= number < 1:
        raise ValueError(f"validation_fraction must be a number in [0, 1), {got(value)}")
    held = value[()] if isinstance(value, numpy.ndarray) else value
    if isinstance(held, numpy.floating) and held.dtype.itemsize < 8:
        # the number the user wrote (numpy.float32(0.1) is 0.10000000149 as a float): recorded in a checkpoint, it
        # must equal the 0.1 a resume is given
        number = float(numpy.format_float_positional(held, unique=True))
    return number or None  # 0: nothing held out


def flag(value, name: str, allow_none: bool = False):
    """True or False (a NumPy bool, 0 or 1 too; None where ``allow_none``); anything else, such as the
    string "no" that bool() reads as True, raises TypeError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, numpy.bool_)) or (isinstance(value, (int, numpy.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False{' or None' if allow_none else ''}, got {value!r}")


def verbosity(value, name: str = "verbose") -> bool:
    """Whether to show progress: True or False, or a verbosity level, an int >= 0 (Keras' 0/1/2,
    scikit-learn's levels; any level above 0 shows it, 2 as a line per epoch as Keras' does). Anything else,
    such as the string "no" that bool() reads as True, raises TypeError naming ``name``."""
    if isinstance(value, (bool, numpy.bool_)) or (isinstance(value, (int, numpy.integer)) and value >= 0):
        return bool(value)
    raise TypeError(f"{name} must be True or False (or a verbosity level, an int >= 0), got {value!r}")


def _int_from(value, least: int, name: str, what: str) -> int:
    """``value`` as a Python int when it is an int (a NumPy integer or a 0-d integer array too, as NumPy takes
    numpy.array(3) for 3; never a bool, a float or a bool array) >= ``least``; else ValueError saying ``name``
    must be ``what``."""
    given, value = value, _held(value, "iu")
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < least:
        raise ValueError(f"{name} must be {what}, {got(given, 'an integer')}")
    return int(value)


def non_negative_number(value, name: str) -> float:
    """A finite real number >= 0 (:func:`real`: a NumPy scalar or a 0-d array too) as a Python float; else ValueError
    naming ``name``."""
    number = real(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a non-negative number, {got(value)}")
    return number


def positive_int(value, name: str) -> int:
    return _int_from(value, 1, name, "a positive integer")


def non_negative_int(value, name: str) -> int:
    """An int >= 0 (a NumPy integer or 0-d integer array too, as positive_int takes), as a Python int."""
    return _int_from(value, 0, name, "a non-negative integer")


def seed_int(value, name: str = "seed") -> int:
    """A seed: a non-negative int, a NumPy integer or a 0-d integer array (as every int argument takes); a bool, a
    float (3.0 too) or a negative value is refused (NumPy's generators refuse negative ones with a message that
    names nothing)."""
    return _int_from(value, 0, name, "a non-negative int")


def member_index(k, n_models: int) -> int:
    """Member k of K (negative k counts from the end, as a list's index does) as an int in [0, K)."""
    if isinstance(k, bool) or not isinstance(k, (int, numpy.integer)):
        raise TypeError(f"members are indexed by an int, got {k!r}")
    if not -n_models <= k < n_models:
        raise IndexError(f"member {k} is out of range: the ensemble has {n_models} members (0..{n_models - 1})")
    return int(k) % n_models


def per_member(value, n_models: int, name: str) -> list:
    """A scalar repeated K times, or a length-K sequence, as a list (clear error otherwise). A set or a dict is
    refused: member k took the k-th value of a set's own order (lr={1e-3, 4e-3} trained member 0 at 4e-3), and a
    dict's k-th key (weight_decay={0: 0.0, 1: 1e-4} trained at decays 0 and 1)."""
    if isinstance(value, (set, frozenset, dict)):
        # (a dict sorted is its keys: weight_decay=sorted({0: 0.0, 1: 1e-4}) would train at decays 0 and 1)
        kind, e_g = (("a dict", f"{name}=[d[k] for k in range({n_models})] for a dict d keyed by member")
                     if isinstance(value, dict) else ("a set, whose order is its own", f"{name}=sorted(...)"))
        raise ValueError(f"{name} is {kind}, not the members': pass a list, member k's value k-th (e.g. {e_g}), or one "
                         "value for all")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return [value] * n_models
    if isinstance(value, numpy.ndarray) and value.ndim == 0:  # numpy.array(1e-3): one value, though it has __len__
        return [value.item()] * n_models
    values = [v.item() if isinstance(v, numpy.generic) else v for v in value]
    if len(values) != n_models:
        raise ValueError(f"{name} lists {len(values)} value{'s' * (len(values) != 1)} but the ensemble has {n_models} "
                         f"member{'s' * (n_models != 1)}; pass one value for all, or exactly {n_models}")
    return values
