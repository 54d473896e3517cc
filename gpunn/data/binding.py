"""Setting a data source up for one model's training run (what ``fit(source, ...)`` does first)."""
from __future__ import annotations

import warnings

from ..backend import backend_of, user_stacklevel
from ..checks import (check_rows_match, check_source_columns, check_source_widths, columns_picked, flag,
                      refuse_torch_validation, seed_int, validation_share)
from ..metrics import SourceEvaluator, check_validation_rows, validation_arrays
from .rawpass import every_row_of


def prepare_source(model, source, validation_data=None, validation_fraction=None, statistics=None):
    """Bind ``source`` to the model's device and dtype and return the validation evaluator (or None).

    Checks the widths against the model; ``validation_fraction`` holds out whole chunks of a
    chunked source; ``validation_data`` is a second source (all of its rows) or arrays (X_val,
    Y_val). With ``standardize``, the statistics (from the training chunks) move into the model,
    so ``predict`` takes raw inputs; a model that has statistics already (a later fit) keeps them and
    the source is scaled by them, standardize or not, as ``fit(X, Y)`` scales arrays (lent: a later fit
    of a model without statistics gets the source as it was made). Named table
    columns move into ``model.data_columns``.
    ``statistics(source)``, when given, computes those statistics instead of the source's own pass
    (a data-parallel fit: each rank reads only its shard).
    """
    name = type(source).__name__
    check_source_columns(model, source, fitting=True)
    check_source_widths(model, source, name, _sized_by_the_source(model))
    validation_data = every_row_of(validation_data, "validation_data")  # a ShardedSource: the whole source it wraps
    fraction = validation_share(validation_fraction)  # checked before its truth is read: "" or False held nothing out
    if validation_data is not None and fraction:
        raise ValueError("pass validation_data or validation_fraction, not both")
    if validation_data is not None and getattr(source, "validation_rows", 0):  # left out of training, scored by none
        # (held out as it was made, or by an earlier fit(source, validation_fraction=...): hold_out stays on the
        # source, and "make the source without validation_fraction" told one who had not what they had done)
        raise ValueError(f"{name} holds out chunks for validation (validation_fraction="
                         f"{getattr(source, 'validation_fraction', None)}, given as it was made or to an earlier "
                         "fit(source, validation_fraction=...), which holds them out on the source) and "
                         "validation_data is given too: use one (source.hold_out(0) holds none out)")
    if fraction:
        if not hasattr(source, "hold_out"):
            raise ValueError(f"{name} cannot hold out chunks; pass validation_data")
        source.hold_out(fraction)
    if getattr(model, "standardizer", None) is not None:  # it takes raw units: the source is scaled by its statistics
        if not hasattr(source, "standardizer"):
            raise ValueError(f"the model has standardization statistics (it takes raw units) and {name} cannot apply "
                             "them: pass a gpunn.data source or arrays (X, Y)")
        standardize = getattr(source, "standardize", False)
        warn_statistics_kept(model, standardize, f"{name}(standardize={standardize!r})")
        _lend(source, model.standardizer)  # as fit(X, Y) keeps them: the weights were trained in these units
    elif _lent(source):  # another model's statistics, from an earlier fit: this one trains as the source says
        source.standardizer = None  # (none, or the source's own, computed again by bind)
    if statistics is not None and getattr(source, "standardize", False) and source.standardizer is None:
        wanted, source.standardize = source.standardize, False  # bind without the source's own pass
        try:
            source.bind(model.backend, model.dtype)
        finally:
            source.standardize = wanted
        source.standardizer = statistics(source)
    elif hasattr(source, "bind"):  # (a DataSource written by hand with the protocol's members alone has none: its
        source.bind(model.backend, model.dtype)  # batches are on the model's device and dtype, as the protocol asks)
    scaler = getattr(source, "standardizer", None)
    model.standardizer = scaler
    names = getattr(source, "feature_names", None), getattr(source, "target_names", None)
    model.data_columns = {"features": list(names[0]), "targets": list(names[1])} if all(names) else None
    if validation_data is None:
        if not getattr(source, "validation_rows", 0):
            return None
        check_validation_rows(source.validation_rows, f"{name}'s validation_fraction="
                                                      f"{getattr(source, 'validation_fraction', None)} (whole chunks)")
        return SourceEvaluator(source)
    if hasattr(validation_data, "batches"):
        check_source_widths(model, validation_data, f"the validation source ({type(validation_data).__name__})")
        for kind, option in (("feature", "features"), ("target", "target")):  # a table's columns, by name, in order
            train, held = getattr(source, f"{kind}_names", None), getattr(validation_data, f"{kind}_names", None)
            if train and held and list(train) != list(held):
                how = columns_picked(validation_data, option, train, "the training source's column names")
                raise ValueError(f"the validation source's {kind} columns {list(held)} are not the training "
                                 f"source's {list(train)}: {how}")
        if hasattr(validation_data, "standardizer"):
            _lend(validation_data, scaler)  # the training statistics, never its own
        validation_data.bind(model.backend, model.dtype)
        if not hasattr(validation_data, "ordered_windows"):
            raise ValueError(f"{type(validation_data).__name__} cannot serve as validation data; pass a chunked "
                             "source or arrays")
        evaluator = SourceEvaluator(validation_data, windows=validation_data.ordered_windows)
        check_validation_rows(evaluator.n_rows, f"validation_data ({type(validation_data).__name__})")
        return evaluator
    refuse_torch_validation(validation_data)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 3:  # (Keras's weighted triple)
        raise ValueError("validation_data's weights (X_val, Y_val, sample_weight_val) weigh a fit on in-memory arrays; "
                         "a fit on a data source validates unweighted: pass the pair (X_val, Y_val)")
    try:
        Xv, Yv = validation_data
    except (TypeError, ValueError):
        raise ValueError("validation_data must be a pair (X_val, Y_val) or a data source") from None
    with model.backend.use():
        return validation_arrays(model, Xv, Yv)


def source_order(source, seed, shuffle, default_seed):
    """(seed, shuffle) of a fit on ``source``, which orders its own rows by the seed and shuffle it was made with.
    fit's ``seed``, and ``shuffle=False``, are refused where they differ from the source's: they were dropped
    silently (a loop of fit(source, seed=s) over seeds trained one run). (``shuffle=True`` is fit's default, so a
    source made with shuffle=False is not refused it.)"""
    name = type(source).__name__
    own_seed, own_shuffle = getattr(source, "seed", None), getattr(source, "shuffle", False)
    asked = [] if seed is None or seed_int(seed) == own_seed else [f"seed={seed!r}"]
    if not flag(shuffle, "shuffle") and own_shuffle:
        asked.append("shuffle=False")
    if asked and own_seed is None:
        raise ValueError(f"fit(source, {', '.join(asked)}): this {name} gives its batches in its own order, which fit's "
                         "seed and shuffle do not change (they order in-memory rows)")
    if asked:
        raise ValueError(f"fit(source, {', '.join(asked)}): a data source orders its rows by its own seed and shuffle "
                         f"(this {name}'s: seed={own_seed}, shuffle={own_shuffle}), which fit's do not change: make "
                         f"the source with {', '.join(asked)} (gpunn.data.npy(..., {', '.join(asked)}), as csv, "
                         "parquet and synthetic take them)")
    return (default_seed if own_seed is None else own_seed), own_shuffle


def _lend(source, statistics):
    """Scale ``source`` by a model's ``statistics`` (or None), remembered as lent: a later fit of a model
    without statistics does not adopt them (it trains on the source as it was made)."""
    source.standardizer = source._lent_standardizer = statistics


def _lent(source) -> bool:
    scaler = getattr(source, "standardizer", None)
    return scaler is not None and scaler is getattr(source, "_lent_standardizer", None)


def _sized_by_the_source(model) -> str:
    """How to make a model of a source's widths, as README's example does (the refusal gave the numbers alone)."""
    sizes = "[source.n_features, 64, source.n_outputs]"
    made = f"gpunn.Ensemble({sizes}, {model.n_models})" if getattr(model, "n_models", None) else f"gpunn.MLP({sizes})"
    return f": make the model from the source's widths, {made}"


def warn_statistics_kept(model, standardize, given: str) -> None:
    """Where ``standardize`` (True: X and Y; "inputs"/"x": X only) asks for other statistics than those the model has
    from an earlier fit, say that it keeps its own: its weights were trained in their units, so a later fit cannot
    change them, and without a word ``standardize=True`` would leave the targets unscaled (or "inputs" scale them)."""
    scaler = getattr(model, "standardizer", None)
    if not standardize or scaler is None or scaler.scales_targets == (standardize is True):
        return
    has, asked = ("X and Y", "X only") if scaler.scales_targets else ("X only", "X and Y")
    warnings.warn(f"{given} asks for statistics of {asked}, but this {type(model).__name__} has statistics of {has} "
                  f"from an earlier fit and keeps them (its weights were trained in their units): make a new model "
                  f"to standardize {asked}", UserWarning, stacklevel=user_stacklevel())


def standardize_arrays(model, X, Y):
    """Give ``model`` the standardization statistics of in-memory (X, Y), as a source with
    standardize=True would (a model that has them already, e.g. on a resume, keeps its own).
    The arrays are not changed: the model then takes raw units, and ``fit`` trains on a
    standardized copy."""
    from .stats import Standardizer

    if model.standardizer is None:
        model.standardizer = Standardizer.from_pieces([(X, Y)], X.shape[1], Y.shape[1])


STATISTICS_CHUNK_ROWS = 65536  # rows of a fit's arrays read at a time for their statistics (a wide copy's bound)


def array_statistics(model, X, Y, standardize, columns, training_rows=None):
    """The Standardizer of a fit on arrays with ``standardize`` (True, or "inputs"/"x": X only): the statistics of
    the training rows (``training_rows(rows)``: a sorted host index array; None: every row) of the raw X and Y, read
    as the model reads them (``_raw_input``: by the fit's ``columns``, float64 where the model's dtype would not hold
    the values), a chunk of rows at a time, as a source's pass computes them. The model is left as it was."""
    from .stats import Standardizer

    saved, model.data_columns = model.data_columns, columns  # (a DataFrame's columns picked as the fit picks them)
    try:
        Xr, Yr = model._raw_input(X, "X"), model._raw_input(Y, "Y", target=True)
    finally:
        model.data_columns = saved
    check_rows_match(Xr, Yr)
    step, rows = STATISTICS_CHUNK_ROWS, None if training_rows is None else training_rows(Xr.shape[0])

    def rows_of(A, start):  # (X and Y may be on two devices: float64 values stay on the host)
        if rows is None:
            return A[start:start + step]
        xp = backend_of(A).xp
        return xp.take(A, xp.asarray(rows[start:start + step]), axis=0)

    count = Xr.shape[0] if rows is None else len(rows)
    return Standardizer.from_pieces(((rows_of(Xr, s), rows_of(Yr, s)) for s in range(0, count, step)),
                                    Xr.shape[1], Yr.shape[1], targets=standardize is True)
