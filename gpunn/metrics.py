"""Regression metrics on device arrays, returned as Python floats."""
from __future__ import annotations

import contextlib
import warnings

import numpy

from .backend import user_stacklevel
from .checks import check_rows_match, warn_read_by_position
from .ops.base import squares64


class UndefinedMetricWarning(UserWarning):
    """A metric asked of rows it is not defined on: R² of fewer than 2 rows, which is NaN (scikit-learn's
    ``sklearn.exceptions.UndefinedMetricWarning``, which its r2_score raises there, under gpunn's name: gpunn does
    not import scikit-learn)."""


def mse(xp, P, Y) -> float:
    """Mean squared error, each square formed in float64 (``squares64``, as every evaluation's)."""
    return float(squares64(xp, P - Y).mean())


def mae(xp, P, Y) -> float:
    """Mean absolute error, summed in float64 (as every evaluation's val_mae): a float32 sum overflows for errors
    near 1e37, and loses digits over many rows (ones added in order to a float32 sum stop counting at 2**24)."""
    return float(xp.mean(xp.abs(P - Y), dtype="float64"))


def check_validation_rows(rows, what):
    """Refuse a validation set of under 2 rows (``what`` names the parameter that made it): R² is
    undefined there, as scikit-learn's "validation set is too small" says, and gpunn used to report 0."""
    if rows < 2:
        raise ValueError(f"{what} gives a validation set of {rows} row; R² needs at least 2 rows to score it: "
                         "hold out more rows (or validate on none)")


def r2_per_output(xp, ss_res, ss_tot, rows):
    """R² per output (the last axis) from the squared-error sums ``ss_res`` and the targets' total sums of
    squares ``ss_tot`` over ``rows`` rows, with scikit-learn's conventions: a constant target scores 1 if
    predicted exactly, else 0; NaN for under 2 rows, where R² is undefined, with one UndefinedMetricWarning
    (as scikit-learn's r2_score gives; fit refuses such a validation set, check_validation_rows)."""
    ok = ss_tot > 0
    score = xp.where(ok, 1 - ss_res / xp.where(ok, ss_tot, 1), xp.where(ss_res == 0, 1.0, 0.0))
    if rows >= 2:
        return score
    warnings.warn(f"R² is not defined on {rows} row{'' if rows == 1 else 's'}: the targets' sum of squares about "
                  "their mean, its denominator, is 0 there, so r2 is NaN (as scikit-learn's r2_score gives); score "
                  "at least 2 rows", UndefinedMetricWarning, stacklevel=user_stacklevel())
    return xp.full_like(score, numpy.nan)


def r2(xp, P, Y, weights=None) -> float:
    """Coefficient of determination, averaged uniformly over outputs (scikit-learn's default); NaN for
    under 2 rows (r2_per_output). The squares are formed in float64 (``squares64``), as every evaluation's.
    ``weights`` (float64, one a row): scikit-learn's r2_score(sample_weight=...)."""
    squares = squares64(xp, Y - P)
    ss_res = (squares if weights is None else squares * weights[:, None]).sum(axis=0)
    return float(r2_per_output(xp, ss_res, total_squares(Y, weights), Y.shape[0]).mean())


def total_squares(Y, weights=None):
    """R²'s denominator: per output, the sum of squares of Y about its mean, centred on a float64 mean (so
    each square is formed in float64), on Y's device. With ``weights`` (a float64 vector, one a row), the weighted
    sum about the weighted mean, as scikit-learn's r2_score(sample_weight=...) takes it."""
    if weights is None:
        centred = Y - Y.mean(axis=0, dtype="float64")
        return (centred * centred).sum(axis=0)
    w = weights[:, None]
    centred = Y - (Y * w).sum(axis=0) / weights.sum()
    return (w * centred * centred).sum(axis=0)


def validation_arrays(model, Xv, Yv, weights=None):
    """The RegressionEvaluator of a fit's ``validation_data=(Xv, Yv)``, arrays or DataFrames (on arrays or a data
    source alike): checked as training's rows are (a DataFrame picked by the model's column names, standardized
    for a model with statistics), rows matched, at least 2; ``weights``, validation_data's third item, weigh its
    rows' metrics (gpunn.sample_weights). Call inside ``model.backend.use()``."""
    from .sample_weights import checked_weights, evaluation_weights

    warn_read_by_position(Xv, model.data_columns, "X_val", model)
    Xv, Yv = model._checked(Xv, Yv, "X_val", "Y_val")
    check_rows_match(Xv, Yv, "X_val", "Y_val")
    check_validation_rows(Xv.shape[0], "validation_data")
    weights = checked_weights(weights, Xv.shape[0], "validation_data's third item (the validation rows' weights)",
                              "the validation metrics")
    weights = evaluation_weights(model.xp, weights, "validation_data's rows")
    return RegressionEvaluator(model, Xv, Yv, weights=weights)


class RegressionEvaluator:
    """MSE, MAE and R² of a model on one fixed (X, Y), for per-epoch validation.

    The sums are accumulated on the model's device in float64 and read back in a single
    transfer, so one evaluation costs one host synchronisation. R²'s denominator (the
    target's total sum of squares per output) is computed once, here. X and Y must already
    be checked device matrices (``model._as_input`` / ``model._as_target``). ``rows_in``: where the rows
    are, for an error's words: the user's array's name and their rows in it (a host index array; None: 0, 1, ...).
    """

    def __init__(self, model, X, Y, chunk_rows=65536, rows_in=("X_val", None), weights=None):
        self.X, self.Y, self.chunk_rows, self.rows_in = X, Y, int(chunk_rows), rows_in
        self.weights = weights  # None, or a float64 device vector, mean 1 (gpunn.sample_weights)
        self.ss_tot = total_squares(Y, weights)  # float64, per output, stays on the device
        self._xp, self._described = model.xp, None

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def describe(self) -> dict:
        """What a checkpoint records of the validation rows, which a resume compares: their count and a
        checksum (gpunn.training.sources.fingerprint) of X and Y, computed once. Weighted rows: the weights
        checksummed as one more column of Y, as training's Y carries them (a file holds two arrays' checksums),
        and ``sample_weight`` True."""
        if self._described is None:
            from .sample_weights import with_weights
            from .training.sources import FINGERPRINT_RULE, fingerprint

            Y = self.Y if self.weights is None else with_weights(self._xp, self.Y, self.weights)
            self._described = {"kind": "arrays", "rows": self.n_rows,
                               "fingerprint": fingerprint(self._xp, self.X, Y), "fingerprint_rule": FINGERPRINT_RULE}
            if self.weights is not None:
                self._described["sample_weight"] = True
        return self._described

    def _pieces(self):
        return row_pieces(self.X, self.Y, self.weights, self.chunk_rows)

    def evaluate(self, model) -> dict:
        return evaluate_pieces(model, self._pieces(), self.ss_tot)

    def not_finite_places(self, model) -> dict:
        """{member: words} for each member (0 for one model) whose output on these rows, as validation computes it,
        is NaN or infinite: how many values, and the first one's row in the user's array and column. One more pass
        over the rows: ValidationNotFinite's path only."""
        return place_words(forward_places(model, self._pieces()), self.row_words)

    def row_words(self, row) -> str:
        """Row ``row`` of these rows as the user's array has it: "row 33 of X_val" (X's row, for a
        validation_fraction)."""
        name, rows = self.rows_in
        return f"row {row if rows is None else int(rows[row])} of {name}"


class SourceEvaluator:
    """The same metrics over a data source's held-out chunks (``source.validation_windows()``, or
    ``windows()`` when given), streamed: one pass per evaluation, nothing held but a window. R²'s
    denominator comes from the targets' moments, computed in the first evaluation's pass
    (gpunn.data.stats.Moments). A source with weights (gpunn.data.row_weights) weighs the rows' metrics by them,
    scaled to mean 1 over the rows read (``weight_scale``: None where they weigh nothing), and R²'s denominator
    by their moments (gpunn.data.row_weights.WeightedMoments)."""

    def __init__(self, source, chunk_rows=65536, windows=None):
        self.source, self.chunk_rows, self.ss_tot = source, int(chunk_rows), None
        self.windows = windows or source.validation_windows
        self._own_source = windows is not None  # a validation source (validation_data), not held-out chunks
        self.n_rows = int(source.rows + source.validation_rows if windows else source.validation_rows)
        scale = getattr(source, "weight_scale", None)  # (a weighted source's; its rows all weighing 0 refused here)
        self.weight_scale = None if scale is None else scale("all" if windows else "validation")

    def describe(self) -> dict | None:
        """A validation source's config (what a checkpoint records of it, which a resume compares); None for
        a source's held-out chunks, which the training source's config describes."""
        return self.source.config() if self._own_source else None

    def evaluate(self, model) -> dict:
        from .data.row_weights import WeightedMoments
        from .data.stats import Moments

        weighted = self.weight_scale is not None
        moments = (WeightedMoments if weighted else Moments)(self.source.n_outputs) if self.ss_tot is None else None
        # closed on leaving, also when the forward pass stops it (Ctrl-C, out of memory): its windows' pass, reader
        # thread and buffers end then, not when the error's traceback goes (no name here holds the windows' pass)
        read = {"weights": self.weight_scale, "weights_apart": True} if weighted else {}  # (the weights in float64)
        with contextlib.closing(window_pieces(self.windows(**read), self.chunk_rows, moments,
                                              weighted=weighted)) as passing:
            return evaluate_pieces(model, passing, lambda: self._ss_tot(model, moments),
                                   watch=getattr(self.source, "overflow_watch", None))

    def _ss_tot(self, model, moments):
        if self.ss_tot is None:
            self.ss_tot = model.xp.asarray(moments.m2)
        return self.ss_tot

    def chunks(self):
        """The chunks this evaluator reads, in order, where they are a chunked source's: its held-out chunks, or
        every chunk of a validation source; else None."""
        from .data.base import ChunkedSource

        source = self.source
        if not isinstance(source, ChunkedSource):
            return None
        if self.windows == source.validation_windows:
            return source.validation_chunks
        if self.windows == source.ordered_windows:
            return range(len(source.chunk_sizes))
        return None

    def not_finite_places(self, model) -> dict:
        """{member: words}, as RegressionEvaluator's: the first value's row as the source names it (the chunk's
        first row and the row in it: "row 70 of x.npy", a CSV file's line), and its column by the target's name
        where the source has one (a table's: "column 'price'"). One more streamed pass over the rows
        (their windows read again): ValidationNotFinite's path only."""
        places = forward_places(model, window_pieces(self.windows(), self.chunk_rows))
        watch = getattr(self.source, "overflow_watch", None)
        if watch is not None:  # the pass's windows were refused or passed in the evaluation's: none held for later
            watch.take(model.xp)
        chunks = self.chunks()
        return place_words(places, lambda row: source_row_words(self.source, chunks, row),
                           lambda column: source_column_words(self.source, column))


def window_pieces(windows, chunk_rows, moments=None, place=None, weighted=False):
    """(X, Y) device pieces of ``chunk_rows`` rows from a source's (X, Y) ``windows``, adding each window's targets
    to ``moments`` (gpunn.data.stats.Moments) when given; ``place``, a list, is set to [window, first row in it] of
    each piece as it is given (where a refusal of the piece's rows is). ``weighted``: the windows are (X, Y,
    weights), the rows' weights in float64 (a source's ``ordered_windows(weights=..., weights_apart=True)``:
    gpunn.data.row_weights), as the pieces are, and ``moments`` a WeightedMoments."""
    for w, window in enumerate(windows):
        X, Y, weights = window if weighted else (*window, None)
        if moments is not None:
            moments.update(Y) if weights is None else moments.update(Y, weights)
        for start in range(0, X.shape[0], chunk_rows):
            if place is not None:
                place[:] = w, start
            rows = slice(start, start + chunk_rows)
            yield (X[rows], Y[rows]) if weights is None else (X[rows], Y[rows], weights[rows])


def row_pieces(X, Y, weights, chunk_rows):
    """In-memory validation rows in pieces of ``chunk_rows`` rows: (X, Y), or (X, Y, weights) where ``weights``
    (a device vector, or None) weighs them (``error_sums`` weighs each row's errors by its weight)."""
    for start in range(0, X.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        yield (X[rows], Y[rows]) if weights is None else (X[rows], Y[rows], weights[rows])


def source_row_words(source, chunks, row) -> str:
    """Row ``row`` of the rows of ``chunks`` (a chunked source's, read in that order, as validation reads them) as
    the source names it (``_row_words``: the chunk's first row plus the row in it); for a source without chunks
    (``chunks`` None), its place in the validation rows as read."""
    if chunks is None:
        return f"row {row} of the validation rows as read"  # (no parentheses: the place is said inside some)
    for k in chunks:
        if row < source.chunk_sizes[k]:
            return source._row_words(k, row)
        row -= source.chunk_sizes[k]
    raise IndexError("a row past the chunks'")


def source_column_words(source, column) -> str:
    """Output ``column`` as the source names its targets: a table's (CSV, Parquet) by name, "column 'price'", as its
    own errors name a column; else by index, "column 2" (an .npy file's, in-memory rows')."""
    names = getattr(source, "target_names", None)
    return f"column {names[column]!r}" if names else column_words(column)


def column_words(column) -> str:
    """Output ``column`` by its index, as in-memory rows' are named: "column 2"."""
    return f"column {column}"


VALIDATION_KEYS = ("val_loss", "val_mse", "val_mae", "val_r2")  # validation_logs'


def validation_logs(sq_sum, abs_sum, r2, rows, outputs) -> dict:
    """An epoch's validation logs from host sums over ``rows`` rows of ``outputs`` targets: ``val_loss`` is
    the training loss's f = (1/m)||A[L] - Y||_F^2 on the validation rows (the sum of the outputs' MSEs), so
    it compares with ``loss``; ``val_mse`` and ``val_mae`` are means over every value (scikit-learn's
    mean_squared_error), equal to val_loss with one output; ``val_r2`` the outputs' mean R². Floats, or
    lists of K for an ensemble's (K,) sums."""
    sq_sum, abs_sum, r2 = (numpy.asarray(a, "float64") for a in (sq_sum, abs_sum, r2))

    def value(a):
        return float(a) if a.ndim == 0 else a.tolist()

    return {"val_loss": value(sq_sum / rows), "val_mse": value(sq_sum / (rows * outputs)),
            "val_mae": value(abs_sum / (rows * outputs)), "val_r2": value(r2)}


def error_sums(model, pieces, predict=None):
    """(squared-error sums per output, absolute-error sum, rows) of ``model`` over (X, Y) device pieces, on
    the device in float64: shaped (outputs,) and () for one model, (K, outputs) and (K,) for an ensemble,
    whose forward pass gives (K, rows, outputs). Validation's sums, one process's or one rank's, of the
    forward pass on X as training sees it; ``predict(X)``, when given, makes the predictions instead
    (``evaluate``'s: those of ``predict``, in the targets' units). A piece (X, Y, weights) weighs each row's
    errors by its weight (``row_pieces``: weights of mean 1, so the sums over ``rows`` are weighted means)."""
    xp = model.xp
    members = (model.n_models,) if hasattr(model, "n_models") else ()
    ss_res, abs_sum = xp.zeros((*members, model.layer_sizes[-1]), "float64"), xp.zeros(members, "float64")
    rows = 0
    for Xc, Yc, *weights in pieces:
        P = model._forward(Xc, model._workspace(Xc.shape[0])) if predict is None else predict(Xc)
        D = P - Yc  # (rows, outputs) or (K, rows, outputs)
        if weights:
            w = weights[0][:, None]
            abs_sum += (xp.abs(D) * w).sum(axis=(-2, -1), dtype="float64")  # (an ensemble's: per member)
            ss_res += (squares64(xp, D) * w).sum(axis=-2)
        else:
            abs_sum += xp.abs(D).sum(axis=(-2, -1), dtype="float64")
            ss_res += squares64(xp, D).sum(axis=-2)  # float32 squares of errors under 1e-19 are 0: an R² of 1
        rows += Yc.shape[0]
    return ss_res, abs_sum, rows


def evaluate_pieces(model, pieces, ss_tot, predict=None, watch=None) -> dict:
    """MSE, MAE and R² of ``model`` over (X, Y) device pieces; ``ss_tot`` per output (or a callable
    giving it once the pieces are consumed); ``predict``: see :func:`error_sums`. An ensemble's forward pass
    gives (K, rows, outputs): its sums are per member, and the logs lists of K. ``watch``: the pieces' source's
    gpunn.data.overflow.OverflowWatch, whose flag is read with the sums (a value it standardized past the model's
    dtype is refused)."""
    xp = model.xp
    ss_res, abs_sum, rows = error_sums(model, pieces, predict)
    ss_tot = ss_tot() if callable(ss_tot) else ss_tot
    r2 = r2_per_output(xp, ss_res, ss_tot, rows)
    sums = xp.stack([ss_res.sum(axis=-1), abs_sum, r2.mean(axis=-1)])
    backend = model.backend  # the one host sync (the watch's flag in it)
    packed = backend.to_host(sums) if watch is None else watch.to_host_with(backend, sums)
    return validation_logs(*packed, rows, ss_res.shape[-1])


def unscored(model, logs, X, chunk_rows, members=()) -> dict:
    """What ``evaluate`` checks of its ``logs`` (validation_logs' names, lists of K with ``members=(K,)``): {member:
    (whether its weights are finite, why its metrics are not, in words)} for each member (0 for one model) whose
    metrics are not all finite; {} when every one is. The model's output over X (``predict``'s, ``chunk_rows`` at a
    time) is NaN or infinite, or the errors against Y overflow. On that path only, the weights are read and X
    predicted again, ``chunk_rows`` at a time as evaluate's pass, to say where (one host read each, and one a chunk);
    X as ``evaluate`` took it, or None for a data source (not read again: the words say no place). Call inside
    ``model.backend.use()``."""
    host = model.backend.to_host
    bad = numpy.zeros(members or (1,), bool)
    for key in ("val_loss", "val_mse", "val_mae"):  # (R² is NaN of one row, as scikit-learn's; else finite with them)
        bad |= ~numpy.isfinite(numpy.asarray(logs[key], "float64")).reshape(bad.shape)
    if not bad.any():
        return {}
    finite = host(model.xp.isfinite(model.params.reshape(bad.size, -1)).all(axis=1))
    dtype, out, where = numpy.dtype(model._prediction_dtype()).name, {}, {}
    if X is not None:
        X = model._as_input(X) if model.standardizer is None else model._raw_input(X)  # (converted once, as _evaluated)
        outputs = (model._predicted(X[start:start + chunk_rows], chunk_rows, members)  # no K x rows x outputs at once
                   for start in range(0, X.shape[0], chunk_rows))
        # in ValidationNotFinite's words (place_words): "1 value, the first at row 3 of X, column 0"
        where = place_words(not_finite_places(model, outputs, bad.size), lambda row: f"row {row} of X")
    for k in map(int, numpy.flatnonzero(bad)):
        if not finite[k]:
            why = "the weights are NaN or infinite"
        elif X is None:  # a data source: its rows are not read again to say where
            why = (f"predict(source) is NaN or infinite on some row, or its errors against the targets overflow "
                   f"{dtype}, while the weights are finite (an input far outside the training rows' range; clean them)")
        elif k in where:
            why = (f"predict(X) is NaN or infinite ({where[k]}) while the weights are finite: the output overflows "
                   f"{dtype} on such rows (an input far outside the training rows' range; clean them)")
        else:
            why = f"the errors predict(X) - Y overflow {dtype} (predictions and targets far apart near its limits)"
        out[k] = bool(finite[k]), why
    return out


def not_finite_places(model, outputs, members=1) -> list:
    """Per member of ``model``'s output chunks ``outputs`` (device arrays in row order: (rows, k), or (K, rows, k)
    for ``members`` K): (how many values are NaN or infinite, (row, column) of the first, or (None, None)). One host
    read a chunk: an error's path only."""
    xp, counts, first, offset = model.xp, numpy.zeros(members, "int64"), [(None, None)] * members, 0
    for P in outputs:
        bad = ~xp.isfinite(P).reshape(members, -1, P.shape[-1])
        n, at = model.backend.to_host(xp.stack([bad.sum(axis=(1, 2)), bad.reshape(members, -1).argmax(axis=1)]))
        for k in numpy.flatnonzero(n):
            if first[k][0] is None:
                row, column = divmod(int(at[k]), P.shape[-1])
                first[k] = offset + row, column
        counts += n
        offset += P.shape[-2]
    return [(int(count), place) for count, place in zip(counts, first)]


def forward_places(model, pieces) -> list:
    """:func:`not_finite_places` of ``model``'s forward pass (validation's) over (X, Y) device ``pieces`` (a
    generator, closed on leaving: a source's pass ends also where the forward pass stops it, as in evaluate)."""
    with contextlib.closing(pieces):
        outputs = (model._forward(X, model._workspace(X.shape[0])) for X, *_ in pieces)  # (X, Y) or (X, Y, weights)
        return not_finite_places(model, outputs, getattr(model, "n_models", 1))


def place_words(places, where, column_named=column_words) -> dict:
    """{member: words} of :func:`not_finite_places`' ``places`` for each member with a value that is not finite:
    how many, and the first one's row (as ``where(row)`` names it) and column (as ``column_named(column)`` does)."""
    return {k: f"{count} value{'s' if count > 1 else ''}, the first at {where(row)}, {column_named(column)}"
            for k, (count, (row, column)) in enumerate(places) if count}


def merged_places(parts) -> list:
    """:func:`not_finite_places` of rows split in order into ``parts`` (each a places list, a rank's): per member,
    the counts added and the first part's first place."""
    return [(sum(count for count, _ in member), next((place for count, place in member if count), (None, None)))
            for member in zip(*parts)]


def by_member(words: dict) -> str:
    """{member: words} said once per distinct words: "member 1: ...; members [0, 2]: ..." (an ensemble of 256
    members whose output overflows on one row says it once)."""
    grouped = {}
    for k, said in words.items():
        grouped.setdefault(said, []).append(k)
    return "; ".join(f"member {ks[0]}: {said}" if len(ks) == 1 else f"members {ks}: {said}"
                     for said, ks in grouped.items())
