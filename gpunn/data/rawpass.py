"""A pass over every row of a data source in raw units, for a trained model's ``evaluate``, ``score`` and
``predict`` on a source (data far past memory): the rows as the same arrays loaded whole would be taken."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def raw_windows(source, model):
    """Device (X, Y) windows of every chunk of ``source`` (training and held-out ones), in file order, raw: the
    source's own standardization is left off while the pass runs, as the model's ``standardizer`` (if any) is
    what ``predict`` applies, and its statistics, not a held-out source's own, are the ones the model learned
    with. In the model's dtype on its device; for a model with a ``standardizer`` whose dtype would not hold the
    stored values exactly (float64 stored, a float32 model), in float64, as ``predict`` takes such arrays. The
    source's binding, ``standardize`` and statistics are restored on leaving, also on an error.

    An iterable source (gpunn.data.iterable) gives its pieces of one pass instead (``ordered_pieces``); a
    ShardedSource that owns every shard, the rows of the source it wraps; one that owns some is refused
    (``every_row_of``)."""
    source = every_row_of(source)
    read = getattr(source, "ordered_windows", None) or getattr(source, "ordered_pieces", None)
    if read is None or not hasattr(source, "bind"):
        raise TypeError(f"{type(source).__name__} cannot be read in file order (it has no ordered_windows): "
                        "evaluate, score and predict take a chunked source (gpunn.data.npy, csv, parquet, ...), an "
                        "iterable source (gpunn.data.iterable) or arrays")
    saved = source.standardize, source.standardizer, source.backend, source.dtype
    try:
        source.standardize, source.standardizer = False, None
        source.bind(model.backend, model.dtype)  # (no statistics pass: standardize is off)
        # a truthy standardize with no statistics reads raw values wide where the dtype would not hold them
        # (the source's statistics pass, ChunkedSource._wide_dtype): as RawUnits._raw_input takes arrays
        source.standardize = model.standardizer is not None
        with contextlib.closing(read()) as windows:
            yield windows
    finally:
        source.standardize, source.standardizer, source.backend, source.dtype = saved


def every_row_of(source):
    """The source whose every row ``evaluate``, ``score`` and ``predict`` read for ``source``: itself, or the source
    a gpunn.distributed.ShardedSource wraps where it owns every shard (one process reading all of them: the same
    rows). One that owns some shards (a rank's share under MPI) is refused: scored alone it gives that rank's
    numbers only, and these calls are no collective operation that would add the other ranks' sums."""
    from ..distributed.shard import ShardedSource

    if not isinstance(source, ShardedSource):
        return source
    if len(source.owned) < source.shards:
        raise TypeError(f"a ShardedSource owning shard(s) {source.owned} of {source.shards} is one rank's share of "
                        f"the training rows of {type(source.source).__name__} {source.source._name()!r}: scored "
                        "alone it would give that share's numbers only, and evaluate, score and predict do not add "
                        "up the other ranks'. Score every row with the source it wraps, model.evaluate(sharded.source)"
                        ", on one rank (if gpunn.distributed.launched_rank() == 0: ...) or on each (each then reads "
                        "every row)")
    return source.source
