"""Data sources for :func:`gpunn.fit` (an MLP's or an Ensemble's): data far larger than memory, on the device
batch by batch.

Each source is a DataSource (``rows``, ``n_features``, ``n_outputs``, ``batches(epoch, batch_size,
first_batch=0)``, ``config()``, ``resumable``), usable as ``model.fit(source, epochs=..., batch_size=...)``:

* :func:`synthetic` - a built-in task generated on the device chunk by chunk (``datasets.make``'s rows);
* :func:`npy` - a pair of ``.npy`` files, read by row ranges, any size;
* :func:`parquet` and :func:`csv` - tables streamed through pyarrow (``pip install "gpunn[data]"``);
* :func:`iterable` - any iterable of (X, Y) batches, with no shuffle, resumable from the end of an epoch only.

Each source has ``close()`` (its files released; reading it afterwards is refused naming it) and is a context
manager: ``with data.npy("X.npy", "Y.npy") as source: model.fit(source, ...)``. ``fit`` never closes a source it
is given: it is yours.

Shuffling is by windows of chunks, keyed by (seed, epoch), so a resumed run is exact (see
gpunn.data.base); reading overlaps training (gpunn.data.pipeline); ``standardize=True`` computes
column statistics in one streaming pass (gpunn.data.stats) that the model keeps and applies, to values
stored wider than the model's dtype in float64, before the cast.
"""
from __future__ import annotations

import functools
import inspect

from ..hints import keywords_checked, too_many_positional
from ..training.protocols import is_source as _is_source
from .base import ChunkedSource, DataError, HeldOutShareWarning
from .sources import IterableSource, NpySource, SyntheticSource
from .stats import Moments, Standardizer


def _every_sources_options(function):
    """``function``, a chunked source's maker, its docstring ending with the options every such source takes
    (ChunkedSource's): help(data.csv) showed ``**options`` and the name of a class, not what they are."""
    # (under python -OO a function has no docstring to add to)
    function.__doc__ = function.__doc__ and function.__doc__ + """

    Every source's options: ``seed`` and ``shuffle`` (the chunks' order and each window's permutation, by epoch),
    ``window`` (chunks permuted together, 16), ``validation_fraction`` (the share of chunks held out),
    ``standardize`` (True: X and Y, "inputs": X only), ``prefetch`` (windows read ahead), ``device`` and ``dtype``
    (bound at once; fit binds to the model's otherwise)."""
    return function


def _made(cls, call, *args, **options):
    """``cls(*args, **options)`` as the maker ``call`` makes it: a keyword the source does not take is refused naming
    the call the user wrote, ``gpunn.data.csv()``, where the class's own refusal named the class it is handed to
    ("CsvSource() got an unexpected keyword argument 'sep'"); hinted as the class's is (sep: delimiter)."""
    __tracebackhide__ = True  # noqa: F841 (out of tracebacks: gpunn/hints.py's keywords_checked)
    source = cls.__new__(cls)  # (what cls(...) does, its __init__ checked under the maker's name)
    keywords_checked(cls.__init__, f"gpunn.data.{call}")(source, *args, **options)
    return source


def _positional_checked(source_class):
    """A maker refusing positional arguments past those it takes in fit's words (hints.too_many_positional), naming
    itself and its source's options, where Python said "npy() takes 2 positional arguments but 3 were given" of
    ``gpunn.data.npy("X.npy", "Y.npy", "w.npy")``. ``source_class()`` gives the class whose options the maker passes
    on (imported then: a table's needs pyarrow)."""
    def decorate(maker):
        taken = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in inspect.signature(maker).parameters.values())

        @functools.wraps(maker)
        def checked(*args, **options):
            __tracebackhide__ = True  # noqa: F841 (out of tracebacks: gpunn/hints.py's keywords_checked)
            if len(args) > taken:
                params = inspect.signature(source_class().__init__).parameters.values()  # (self first: not shown)
                raise too_many_positional(f"gpunn.data.{maker.__name__}",
                                          [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD],
                                          [p.name for p in params if p.kind == p.KEYWORD_ONLY], args[taken:])
            return maker(*args, **options)
        return checked
    return decorate


def _csv_source():
    from .csv_tables import CsvSource

    return CsvSource


def _parquet_source():
    from .parquet_tables import ParquetSource

    return ParquetSource


__all__ = ["synthetic", "npy", "parquet", "csv", "iterable", "is_source", "ChunkedSource", "SyntheticSource",
           "NpySource", "IterableSource", "DataError", "HeldOutShareWarning", "Moments", "Standardizer"]


@_every_sources_options
@_positional_checked(lambda: SyntheticSource)
def synthetic(task="teacher", rows=1_000_000, n_features=None, n_outputs=1, noise=None, seed=0, **options):
    """A built-in task streamed from the device: ``datasets.make``'s rows for the same ``task``, ``n_features``,
    ``n_outputs``, ``noise`` and ``seed`` (and the task's own options), any number of ``rows``. Options:
    ``chunk_rows`` (pieces of make's 65,536-row chunks), and every source's (below).
    See :class:`SyntheticSource`."""
    from ..datasets import refuse_unknown_options

    own = inspect.signature(SyntheticSource).parameters  # (the others are the task's options: checked here, as the
    refuse_unknown_options("gpunn.data.synthetic", SyntheticSource.__init__, task,  # source's check names the class)
                           [key for key in options if key not in own])
    return SyntheticSource(task, rows, n_features, n_outputs, noise, seed, **options)


@_every_sources_options
@_positional_checked(lambda: NpySource)
def npy(x_path, y_path, **options):
    """Features and targets from two ``.npy`` files, ``x_path`` (rows x features) and ``y_path`` (rows x outputs,
    or rows). Options: ``weights`` (a third file, of shape (rows,): each row's weight in the loss, fit's
    sample_weight), ``chunk_rows`` (rows read at a time), and every source's (below).
    See :class:`NpySource`."""
    return _made(NpySource, "npy", x_path, y_path, **options)


@_every_sources_options
@_positional_checked(_parquet_source)
def parquet(path, target=None, features=None, **options):
    """A Parquet file or a directory of them at ``path``, ``target`` columns as Y (none named: refused with the
    file's columns listed), ``features`` the input columns (None: the others). Options: ``weight`` (a column of each
    row's weight in the loss, fit's sample_weight; no feature), ``chunk_rows`` (rows of a large row group read at a
    time), and every source's (below). See :class:`gpunn.data.parquet_tables.ParquetSource`."""
    return _made(_parquet_source(), "parquet", path, target, features, **options)


@_every_sources_options
@_positional_checked(_csv_source)
def csv(path, target=None, features=None, **options):
    """A CSV file with a header row at ``path``, ``target`` columns as Y (none named: refused with the file's
    columns listed), ``features`` the input columns (None: the others). Options: ``weight`` (a column of each row's
    weight in the loss, fit's sample_weight; no feature; its sums parse the file once more as the source is made),
    ``delimiter`` (",", or "\\t", ";"), ``decimal`` ("." or ","), ``block_size`` (bytes read at a time), ``cache``
    (True: the first pass's index kept in gpunn's cache for the next run; False for a temporary file), and every
    source's (below). See :class:`gpunn.data.csv_tables.CsvSource`."""
    return _made(_csv_source(), "csv", path, target, features, **options)


# data.iterable(batches, batch_size=256): fit's option, said so (hints.FIT_OPTIONS_TO_A_SOURCE)
@functools.partial(keywords_checked, name="gpunn.data.iterable")
def iterable(batches, rows=None, n_features=None, n_outputs=None, standardize=False):
    """Any iterable of (X, Y) batches; see :class:`IterableSource`."""
    return IterableSource(batches, rows, n_features, n_outputs, standardize)


def is_source(obj) -> bool:
    """True for anything that speaks the DataSource protocol (rather than an array): what ``fit`` takes as a
    source. The one rule is :func:`gpunn.training.protocols.is_source`'s (all six members, ``resumable`` too,
    each looked up with ``hasattr``, so that ``gpunn.distributed.ShardedSource`` is one); for an object with a
    ``batches`` method that lacks another member it is False here, where ``fit`` refuses it naming what it lacks."""
    return _is_source(obj, None, strict=False)
