"""Per-row weights of the squared error: ``fit(X, Y, sample_weight=w)``, scikit-learn's and Keras's name.

The weighted loss over m rows is f = sum_i w_i ||a_i - y_i||^2 / sum_i w_i, so dA[L] = (2/m) w'_i (a_i - y_i) with
w'_i = w_i m / sum_j w_j: the weights scaled to mean 1 over the rows they weigh (``mean_one``). Every formula that
divides by the row count m then stays as it is (an epoch's loss, val_loss, R²'s sums), and unit weights give the
unweighted run's bits: their scaled weights are exactly 1, and a product by 1 is exact.

Each set of rows is scaled on its own: the training rows (a mini-batch's gradient is then an unbiased estimate of
the whole set's, where scikit-learn's MLPRegressor divides each batch by its own weights' sum), the validation rows,
and the rows ``evaluate`` scores. In training the scaled weights travel as one more column of Y, in Y's dtype
(``with_weights``), so the shuffle, a resume's checksum of the data and every batch carry them with their rows.
"""
from __future__ import annotations

import numbers
import os

import numpy

from .hints import a_type


def _named_weights(named: str, name: str) -> str:
    """What to give for the weights where ``name`` was given the name ``named``: a .npy file's loaded, or given to a
    source of the files; a table's column, its values."""
    if named.lower().endswith(".npy"):
        return (f"load them, {name}=numpy.load({named!r}), or give the file to a source of the data's files, "
                f"gpunn.data.npy(x_path, y_path, weights={named!r})")
    return (f"give a table's column itself, {name}=df[{named!r}] (a source of a table file takes its name, "
            f"gpunn.data.csv(path, target=..., weight={named!r}))")


def checked_weights(sample_weight, rows: int, name: str = "sample_weight", counted: str = "the loss"):
    """``sample_weight`` as a host float64 vector of ``rows`` entries, or None for None; a number weighs every row
    the same (scikit-learn's convention). Refused, with words that name ``name``: another shape or length, text,
    NaN or infinite weights, negative weights (they reward a larger error: the loss has no minimum) and weights
    that are all 0 (no row counts in ``counted``, what they weigh)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        weights = numpy.full(rows, float(sample_weight))
    elif isinstance(sample_weight, (str, os.PathLike)):  # a file's or a column's name, as a source or a command takes
        raise TypeError(f"{name} is the weights, one a row, not a name; got {sample_weight!r}: "
                        + _named_weights(os.fspath(sample_weight), name))
    else:
        frame_columns = list(getattr(sample_weight, "columns", ()))  # a DataFrame's, to say which to pass
        if hasattr(sample_weight, "get") and type(sample_weight).__module__.startswith("cupy"):
            sample_weight = sample_weight.get()
        elif hasattr(sample_weight, "to_numpy"):  # a pandas or polars Series
            sample_weight = sample_weight.to_numpy()
        try:
            weights = numpy.asarray(sample_weight)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a vector of numbers, one a row, or one number; got "
                            f"{a_type(sample_weight)} ({e})") from None
        if weights.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers; got {weights.dtype} values (convert them first, "
                            f"{name}.astype(float))")
        if weights.ndim != 1:
            one = f"its column, df[{frame_columns[0]!r}]" if len(frame_columns) == 1 else "w.ravel()"
            raise ValueError(f"{name} must be 1-D, one weight a row (or one number); got shape {weights.shape}"
                             + (f": pass {one}" if weights.size == rows else ""))
        if weights.shape[0] != rows:
            raise ValueError(f"{name} has {weights.shape[0]:,} weights for {rows:,} rows: one a row")
        weights = weights.astype(numpy.float64)
    bad = ~numpy.isfinite(weights)
    if bad.any():
        first = int(numpy.flatnonzero(bad)[0])
        raise ValueError(f"{name} is NaN or infinite in {int(bad.sum()):,} row(s), the first row {first} "
                         f"({weights[first]}): a weight must be a finite number")
    if (weights < 0).any():
        first = int(numpy.flatnonzero(weights < 0)[0])
        raise ValueError(f"{name} is negative in row {first} ({weights[first]:g}): a weight must be 0 or more (a "
                         "negative one rewards a larger error, and the loss has no minimum)")
    if rows and not weights.any():
        raise ValueError(f"{name} is zero for every row: no row counts in {counted}")
    return weights


def mean_one(weights, what: str):
    """``weights`` (a host float64 vector) times m / sum(weights): mean 1 over these m rows (the module's
    docstring says why). ``what`` names the rows in the error where their weights are all 0 (validation's
    rows may all weigh 0 where the whole set does not). Divided by the largest first, so that their sum neither
    overflows (1e306 a row) nor m / sum does (subnormal weights): unit weights stay exactly 1 either way."""
    peak = weights.max(initial=0.0)
    if not peak > 0:
        raise ValueError(f"sample_weight is zero for every one of {what}: no row of them counts")
    unit = weights / peak  # in [0, 1], one of them 1: a sum in [1, m]
    return unit * (weights.shape[0] / unit.sum())


def training_targets(xp, Y, weights):
    """Training's Y: with ``weights`` (host float64) that are not all equal, Y with each row's weight, scaled to
    mean 1 over these rows, as one more column (``with_weights``); else Y: equal weights weigh nothing, and the
    run is the unweighted one, bit for bit, with its fast paths."""
    if weights is None:
        return Y
    scaled = mean_one(weights, "the training rows")
    return Y if (scaled == 1).all() else with_weights(xp, Y, scaled)


def evaluation_weights(xp, weights, what: str):
    """Evaluation's weights: ``weights`` (host float64, or None) scaled to mean 1 over these rows (``what`` names
    them where they are all 0), as a float64 device vector; None where they are all equal (they weigh nothing)."""
    if weights is None:
        return None
    scaled = mean_one(weights, what)
    return None if (scaled == 1).all() else xp.asarray(scaled)


def with_weights(xp, Y, weights):
    """Y with one more column holding ``weights`` (host float64, scaled: ``mean_one``), in Y's dtype, on Y's
    device: what training's batches carry (``split``)."""
    out = xp.empty((Y.shape[0], Y.shape[1] + 1), Y.dtype)
    out[:, :-1] = Y
    out[:, -1] = xp.asarray(weights, dtype=Y.dtype)
    return out


def split(Y, outputs: int):
    """(targets, weights) of a batch of ``with_weights``' Y whose model has ``outputs`` outputs: views. An Ensemble's
    bootstrap batch, (K, rows, outputs + 1): (K, rows, outputs) targets and (K, rows) weights, each member's rows'."""
    return Y[..., :outputs], Y[..., outputs]
