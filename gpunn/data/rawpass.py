"""A pass over every row of a data source in raw units, for a trained model's ``evaluate``, ``score`` and
``predict`` on a source (data far past memory): the rows as the same arrays loaded whole would be taken."""

from __future__ import annotations

import contextlib
import functools
import types


def weight_scale_of(source):
    """The scale of every row's weight of a source made with weights (gpunn.data.row_weights: ``weight_scale("all")``),
    which ``evaluate`` and ``score`` weigh its rows by; None for a source without them, or where they are all
    equal."""
    scale = getattr(every_row_of(source), "weight_scale", None)
    return None if scale is None else scale("all")


@contextlib.contextmanager
def raw_windows(source, model, weights=None):
    """Device (X, Y) windows of every chunk of ``source`` (training and held-out ones), in file order, raw: the
    source's own standardization is left off while the pass runs, as the model's ``standardizer`` (if any) is
    what ``predict`` applies, and its statistics, not a held-out source's own, are the ones the model learned
    with. In the model's dtype on its device; for a model with a ``standardizer`` whose dtype would not hold the
    stored values exactly (float64 stored, a float32 model), in float64, as ``predict`` takes such arrays. The pass
    reads a view of the source with these settings of its own (``read_with_own_settings``): the source's binding,
    ``standardize`` and statistics stay as they are meanwhile, for another thread training on it.

    An iterable source (gpunn.data.iterable) gives its pieces of one pass instead (``ordered_pieces``); a
    ShardedSource that owns every shard, the rows of the source it wraps; one that owns some is refused
    (``every_row_of``). ``weights`` (``weight_scale_of``'s): each window is (X, Y, w), w each row's weight so scaled,
    in float64 (``ordered_windows(weights_apart=True)``)."""
    from ..checks import check_source_columns, check_source_widths, warn_source_read_by_position

    source = every_row_of(source)
    check_source_columns(model, source)  # (read in its order: the model's columns in another order are refused)
    check_source_widths(model, source)
    warn_source_read_by_position(source, model)  # (a named table's columns, by position, for an unnamed model)
    if not (hasattr(source, "ordered_windows") or hasattr(source, "ordered_pieces")) or not hasattr(source, "bind"):
        raise TypeError(f"{type(source).__name__} cannot be read in file order (it has no ordered_windows): "
                        "evaluate, score and predict take a chunked source (gpunn.data.npy, csv, parquet, ...), an "
                        "iterable source (gpunn.data.iterable) or arrays")
    view = read_with_own_settings(source)
    view.bind(model.backend, model.dtype)  # (no statistics pass: standardize is off)
    # a truthy standardize with no statistics reads raw values wide where the dtype would not hold them
    # (the source's statistics pass, ChunkedSource._wide_dtype): as RawUnits._raw_input takes arrays
    view.standardize = model.standardizer is not None
    read = getattr(view, "ordered_windows", None) or view.ordered_pieces
    with contextlib.closing(read() if weights is None else read(weights=weights, weights_apart=True)) as windows:
        yield windows


@contextlib.contextmanager
def overflow_named(source, w, start=0):
    """A value that the model's statistics take past its dtype (gpunn.checks.NotFinite with ``scaled``) in rows from
    ``start`` of window ``w`` of ``raw_windows(source)``, named where the source holds it, as training names it: a
    file's row and column with the value read again (the source's ``_not_finite``), else the source's row (a file
    changed since) or the iterable's batch. The model said only "X" and the row in its window."""
    from ..checks import NotFinite
    from .base import ChunkedSource
    from .errors import DataError
    from .sources import piece_words

    try:
        yield
    except NotFinite as exc:
        if exc.scaled is None:  # (raw values were checked finite as read: only standardizing makes one)
            raise
        source, row = every_row_of(source), start + exc.row
        if not isinstance(source, ChunkedSource):  # an iterable's pieces, one window each, in its order
            name = f"X of {piece_words(w + 1, 0)}"
        else:  # a chunked source's windows are its chunks in file order: window w is chunk w
            said = source._not_finite(w, "features", row, exc.column, exc.dtype, scaled=exc.scaled)
            if said:
                raise DataError(said) from None
            name, row = f"X of {source._name()}", source._row_offset(w) + row
        raise NotFinite(name, exc.count, row, exc.column, exc.dtype, exc.scaled, exc.label) from None


READ_SETTINGS = ("standardize", "standardizer", "backend", "dtype")


def read_with_own_settings(source):
    """A view of ``source`` that holds ``READ_SETTINGS`` of its own (not standardized, not bound: bind it) and shares
    every other attribute with the source: its files, held-out chunks, the passes close() waits for, a one-shot
    iterator's state. Its class is the source's (with _OwnSettings first), so the source's methods and properties run
    on the view and read its settings: a pass over it leaves the source as it is."""
    view = object.__new__(_with_own_settings(type(source)))
    settings = dict.fromkeys(READ_SETTINGS)
    settings["standardize"] = False
    object.__setattr__(view, "_settings_of", (source, settings))
    return view


class _OwnSettings:
    """Mixed in before a source's class by ``read_with_own_settings``: READ_SETTINGS are the view's, every other
    instance attribute (read or written) is the source's; class attributes (methods, properties) bind to the view."""

    def __getattribute__(self, name):
        source, settings = object.__getattribute__(self, "_settings_of")
        if name in settings:
            return settings[name]
        shared = vars(source)  # (before the class's defaults, as on the source: Closable._closed)
        if name in shared:
            return shared[name]
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        source, settings = object.__getattribute__(self, "_settings_of")
        if name in settings:
            settings[name] = value
        else:
            setattr(source, name, value)


@functools.cache
def _with_own_settings(cls):
    return types.new_class(cls.__name__, (_OwnSettings, cls), exec_body=lambda ns: ns.update(
        __module__=cls.__module__, __qualname__=cls.__qualname__, __doc__=cls.__doc__))


def every_row_of(source, role=None):
    """The source whose every row ``evaluate``, ``score`` and ``predict`` (or a fit's ``validation_data``: ``role``
    "validation_data") read for ``source``: itself, or the source a gpunn.distributed.ShardedSource wraps where it
    owns every shard (one process reading all of them: the same rows). One that owns some shards (a rank's share
    under MPI) is refused: scored alone it gives that rank's numbers only, and these calls are no collective
    operation that would add the other ranks' sums (a data-parallel fit does add them, for the whole validation
    source: DataParallel.validation splits its chunks over the ranks)."""
    from ..distributed.shard import ShardedSource

    if not isinstance(source, ShardedSource):
        return source
    if len(source.owned) < source.shards:
        share = (f"a ShardedSource owning shard(s) {source.owned} of {source.shards} is one rank's share of the "
                 f"training rows of {type(source.source).__name__} {source.source._name()!r}")
        if role == "validation_data":
            raise ValueError(f"validation_data: {share}, and a fit validates on every row of a validation source: "
                             "pass the source it wraps, validation_data=sharded.source (a data-parallel fit, "
                             "distributed=True, splits its chunks over the ranks itself and adds up their sums)")
        raise TypeError(f"{share}: scored alone it would give that share's numbers only, and evaluate, score and "
                        "predict do not add up the other ranks'. Score every row with the source it wraps, "
                        "model.evaluate(sharded.source), on one rank (if gpunn.distributed.launched_rank() == 0: ...) "
                        "or on each (each then reads every row)")
    return source.source
