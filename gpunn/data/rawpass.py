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
    source's binding, ``standardize`` and statistics are restored on leaving, also on an error."""
    name = type(source).__name__
    if not hasattr(source, "ordered_windows") or not hasattr(source, "bind"):
        raise TypeError(f"{name} cannot be read in file order (it has no ordered_windows): evaluate, score and "
                        "predict take a chunked source (gpunn.data.npy, csv, parquet, ...) or arrays")
    saved = source.standardize, source.standardizer, source.backend, source.dtype
    try:
        source.standardize, source.standardizer = False, None
        source.bind(model.backend, model.dtype)  # (no statistics pass: standardize is off)
        # a truthy standardize with no statistics reads raw values wide where the dtype would not hold them
        # (the source's statistics pass, ChunkedSource._wide_dtype): as RawUnits._raw_input takes arrays
        source.standardize = model.standardizer is not None
        with contextlib.closing(source.ordered_windows()) as windows:
            yield windows
    finally:
        source.standardize, source.standardizer, source.backend, source.dtype = saved
