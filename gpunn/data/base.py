"""Chunked data sources: an epoch is a sequence of chunks, shuffled by windows, batched on the device.

A source is cut into chunks of known row counts (a file's row range, a Parquet row group, a
synthetic chunk). Per epoch:

1. the training chunks are put in an order drawn from the stream (seed, "chunk-order", epoch).
   A source may group chunks into *runs* that can only be read front to back (the pieces of one
   large Parquet row group): the runs are put in that order, each run's chunks keep theirs;
2. consecutive chunks of that order form windows of ``window`` chunks; each window's rows are
   permuted on the device by the stream (seed, "window", epoch, w);
3. the permuted windows, end to end, are cut into batches of ``batch_size`` rows (a batch may
   straddle two windows).

So batch i of epoch e is a pure function of (seed, e, i), and a run resumed at batch i reads
from the window that holds row i * batch_size on. How far this is from a full shuffle: two rows
can share a batch only if their chunks fall in the same window (or in neighbouring windows, at a
boundary), so each batch mixes rows from about ``window`` chunks rather than from the whole data.
That matters when the file is sorted (by time, by target, by group) on a scale larger than a
window: batches then see a biased slice of the data, and the last windows of each epoch pull the
weights toward whatever they hold. Raise ``window`` (memory grows with it) or shuffle the file
once offline; for data in random order (every synthetic task) it makes no measurable difference.

``validation_fraction`` holds out whole chunks, drawn by the stream (seed, "validation-chunks"),
so the split never depends on the batch size and costs no extra pass (a synthetic source cuts its
chunks so that they hold out about the share asked; files by default into about SPLIT_CHUNKS).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings

import numpy

from .. import backend as _backend
from ..datasets import rebatch
from ..forksafe import ForkSafeLock
from ..hints import keywords_hinted
from ..rng import DeviceRNG, host_rng
from ..checks import canonical_dtype, flag, got, positive_int, seed_int, validation_share
from .errors import DataError, more_not_finite
from .contents import CONTENTS_RULE, sampled_checksum
from .overflow import OverflowWatch
from .row_weights import ChunkWeights, scaled
from .stats import Standardizer, standardizing_dtype


class HeldOutShareWarning(UserWarning):
    """``validation_fraction``'s whole chunks hold out a share of the rows far from the one asked."""


class Closable:
    """A source's ``closed``, ``with source:`` (closes it at the block's end, on an error too) and the refusal of a
    closed one's use (``_check_open``); the class gives ``close()``, which sets ``_closed``."""

    _closed = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keywords_hinted(cls)  # a source's options: npy(..., chunksize=...): did you mean chunk_rows?

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (or the source's ``with`` block ended)."""
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        """A ValueError naming the source where it is closed, as a closed Python file refuses a read."""
        if self.closed:
            raise ValueError(f"{type(self).__name__} {self._name()} is closed (its close() was called, or its with "
                             "block ended); make a new source to read it again")


class ChunkedSource(Closable):
    """Base of the chunked sources (see the module docstring).

    Options every source takes: ``seed`` (chunk order, window permutations, validation chunks),
    ``shuffle`` (False: file order, no permutation), ``window`` (chunks permuted together),
    ``validation_fraction`` (share of chunks held out), ``standardize`` (True: X and Y,
    "inputs": X only), ``prefetch`` (windows the reader may run ahead), and ``device``/``dtype``
    to bind at once (fit binds to the model's otherwise).

    Subclasses set ``n_features``, ``n_outputs`` and the chunk sizes (``_ready``, with the runs of
    chunks that must be read in order, if any), and implement ``_fill``, ``_where`` and ``_describe``."""

    resumable = True
    kind = "chunks"
    #: the weight column's per-chunk summary (gpunn.data.row_weights.ChunkWeights), or None: no weights
    _weights = None
    #: dtype the values are stored in, when the model's dtype may not hold them exactly (a float64 or
    #: int64 file for a float32 model); None: the model's dtype loses nothing. See ``_wide_dtype``.
    stored_dtype = None
    #: a value may be missing (a table's null, an empty CSV value), read as NaN: its refusal says "missing"
    holds_missing = False

    def __init__(self, *, seed=0, shuffle=True, window=16, validation_fraction=None, standardize=False,
                 prefetch=1):
        self.seed = seed_int(seed)
        self.shuffle = flag(shuffle, "shuffle")  # bool("no") is True: it shuffled
        self.window = positive_int(window, "window")
        self.prefetch = positive_int(prefetch, "prefetch")
        self.validation_fraction = validation_share(validation_fraction)
        self.standardize = standardize_option(standardize)
        self.standardizer: Standardizer | None = None
        self.backend = None  # set by bind(), which fit() calls with the model's device and dtype
        self.dtype = None
        self.overflow_watch = OverflowWatch()  # windows standardized on the device (gpunn.data.overflow)
        self._passes, self._pass_lock = 0, ForkSafeLock()  # passes reading the files now (_counted)

    # ---- set-up ------------------------------------------------------------------------
    def _set_chunks(self, sizes, run_lengths=None):
        """The chunks' row counts (``sizes``) and their runs: ``run_lengths[r]`` consecutive chunks read front to back
        (default: every chunk a run of its own). Kept as NumPy arrays, not Python lists: a stream of 10^12 rows has
        15 million chunks, which as lists of ints took 9 GB and minutes to set up."""
        self.chunk_sizes = numpy.asarray(sizes, dtype=numpy.int64).reshape(-1)
        if not len(self.chunk_sizes) or not self.chunk_sizes.any():
            raise DataError(f"{self._name()}: no rows")
        self._chunk_starts = numpy.concatenate([[0], numpy.cumsum(self.chunk_sizes)])  # chunk k's first row: O(1)
        n = len(self.chunk_sizes)
        lengths = (numpy.ones(n, numpy.int64) if run_lengths is None
                   else numpy.asarray(run_lengths, dtype=numpy.int64).reshape(-1))
        if lengths.sum() != n or (lengths < 1).any():
            raise ValueError(f"run lengths {lengths.tolist()[:8]}... do not cut {n} chunks into runs")
        self.run_lengths = lengths
        self.run_starts = numpy.concatenate([[0], numpy.cumsum(lengths)])  # run r: chunks run_starts[r] to [r + 1]
        held = numpy.zeros(n, bool)
        if self.validation_fraction:
            if n < 2:
                rows = int(self.chunk_sizes[0])
                raise ValueError(f"{self._name()}: validation_fraction holds out whole chunks and there is only "
                                 f"one chunk ({rows:,} row{'' if rows == 1 else 's'}); {self._more_chunks()}")
            n_val = held_count(n, self.validation_fraction)
            held[host_rng(self.seed, "validation-chunks").permutation(n)[:n_val]] = True
            self._warn_if_share_is_off(numpy.flatnonzero(held))
        self.validation_chunks = numpy.flatnonzero(held)  # sorted chunk indices (int64 arrays)
        self.train_chunks = numpy.flatnonzero(~held)
        # the training chunks by run: runs keep their order, a run wholly held out is gone (train_run_starts[r] is
        # training run r's first place in train_chunks)
        if len(lengths) == n:  # every chunk a run of its own
            self.train_run_starts = numpy.arange(len(self.train_chunks) + 1)
        else:
            self.train_run_starts = stretch_starts(self.run_of(self.train_chunks))

    def run_of(self, chunks):
        """The run each of ``chunks`` (chunk indices) belongs to, an int64 array."""
        return numpy.searchsorted(self.run_starts, chunks, side="right") - 1

    @property
    def runs(self) -> list:
        """The runs as lists of chunk indices (for a look: the source keeps ``run_starts``)."""
        return [list(range(a, b)) for a, b in zip(self.run_starts[:-1].tolist(), self.run_starts[1:].tolist())]

    def _warn_if_share_is_off(self, held):
        """Whole chunks held out can be far from the share asked for: a few chunks, or a short last one
        (100,000 rows in chunks of 65,536 and 34,464: 0.1 held out 34% or 66% of the rows; a synthetic
        source cuts its chunks finer by default, SyntheticSource, to hold out near the share asked).
        Say so when the rows held out are over twice, or under half, the fraction asked."""
        fraction, rows = self.validation_fraction, int(self.chunk_sizes.sum())
        held_rows = int(self.chunk_sizes[held].sum())
        share = held_rows / rows
        if not fraction / 2 <= share <= 2 * fraction:
            warnings.warn(f"{self._name()}: validation_fraction={fraction:g} holds out whole chunks: {len(held)} of "
                          f"{len(self.chunk_sizes)}, {held_rows:,} of {rows:,} rows ({share:.0%}); for a share nearer "
                          f"{fraction:g}, {self._more_chunks()}", HeldOutShareWarning,
                          stacklevel=_backend.user_stacklevel())

    def _ready(self, sizes, device=None, dtype=None, window_by_rows=False, run_lengths=None, small=False) -> None:
        """The subclass's last step of construction: its chunk sizes and runs (``run_lengths``: counts of
        consecutive chunks read front to back; default: every chunk on its own), for files whose chunks the writer chose a
        window of about ``window`` x 65,536 rows, then binding when asked for. ``small``: the chunks
        were cut small by default (``default_chunk_rows``) for a file with few rows; when all of them
        fit in ``window`` x 65,536 rows they form one window, so the file is shuffled whole."""
        self._set_chunks(sizes, run_lengths)
        if window_by_rows:
            self.window = max(1, min(self.window, self.window * 65536 // int(self.chunk_sizes.max())))
        if small and self.chunk_sizes.sum() <= self.window * 65536:
            self.window = max(self.window, len(self.chunk_sizes))
        if device is not None or dtype is not None:  # (the one left None: its default; "" is refused as a device)
            self.bind("auto" if device is None else device, "float32" if dtype is None else dtype)

    def hold_out(self, fraction) -> "ChunkedSource":
        """Hold out ``fraction`` of the chunks for validation (as ``validation_fraction`` does)."""
        self.validation_fraction = validation_share(fraction)
        self._set_chunks(self.chunk_sizes, self.run_lengths)
        if self.standardize and self.standardizer is not None:  # statistics come from the training chunks
            self.standardizer = None if self.backend is None else self.compute_standardizer()
        return self

    def bind(self, backend, dtype) -> "ChunkedSource":
        """Deliver batches on ``backend`` (a Backend or device string) in ``dtype``; computes the
        standardization statistics (one pass over the training chunks) when asked for."""
        self._check_open()
        self.backend = _backend.resolve(backend)
        self.dtype = numpy.dtype(canonical_dtype(dtype))  # a model's: dtype="int32" made int32 batches
        if self.standardize and self.standardizer is None:
            self.standardizer = self.compute_standardizer()
        return self

    def _need_bound(self):
        self._check_open()
        if self.backend is None:
            self.bind("auto", "float32")

    # ---- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the files the source reads (an .npy pair's, a Parquet dataset's, a CSV file's; a synthetic source has
        none); a second call does nothing. Reading the source afterwards (``batches``, ``fit``, its validation or
        statistics passes) raises a ValueError naming it, as does a pass begun before, at its next window; make a
        new source to read the files again. ``with data.npy(...) as source:`` closes it at the block's end, also
        on an error. ``fit`` and ``resume`` never close a source they are given: it is yours, to train on again or
        to close. A pass still reading (its reader thread) keeps the files until it ends: a descriptor closed
        under a read could be another file's by then."""
        with self._pass_lock.current:
            if self._closed:
                return
            self._closed = True
            now = not self._passes
        if now:
            self._close_files()

    def _close_files(self):
        """Close what the source opened (a subclass's files; a half-made source's too: closes_files_when_refused)."""

    def _owner(self) -> "ChunkedSource":
        """The source whose files a pass reads (a shard's: its parent's)."""
        return self

    def _counted(self, windows):
        """``windows``, a pass reading the owner's files, counted while it runs: a close() meanwhile leaves the
        files to the last such pass's end, when its reader thread has stopped (``host_windows`` joins it)."""
        owner = self._owner()
        with owner._pass_lock.current:
            owner._passes += 1
        try:
            yield from windows
        finally:
            with owner._pass_lock.current:
                owner._passes -= 1
                last = owner._closed and not owner._passes
            if last:
                owner._close_files()

    @property
    def rows(self) -> int:
        """Training rows per epoch."""
        return int(self.chunk_sizes[self.train_chunks].sum())

    @property
    def validation_rows(self) -> int:
        return int(self.chunk_sizes[self.validation_chunks].sum())

    # ---- the epoch plan ----------------------------------------------------------------
    def plan(self, epoch):
        """The epoch's windows: arrays of chunk indices, in training order."""
        order = self.train_chunks
        if self.shuffle:
            starts = self.train_run_starts
            runs = host_rng(self.seed, "chunk-order", int(epoch)).permutation(len(starts) - 1)
            order = order[runs] if len(runs) == len(order) else order[_ranges(starts[runs], starts[runs + 1])]
        return [order[i:i + self.window] for i in range(0, len(order), self.window)]

    def batches(self, epoch, batch_size, first_batch=0):
        """Device (X_b, Y_b) pairs of one epoch; batch i is a pure function of (seed, epoch, i)."""
        self._need_bound()
        batch_size = positive_int(batch_size, "batch_size")
        windows = self.plan(epoch)
        ends = numpy.cumsum(self._window_rows(windows))
        start_row = int(first_batch) * batch_size
        if start_row >= ends[-1]:
            return
        w0 = int(numpy.searchsorted(ends, start_row, side="right"))
        skip = start_row - (int(ends[w0 - 1]) if w0 else 0)
        pieces = self._windows(windows[w0:], epoch, w0, shuffle=self.shuffle,
                               window_chunks=lambda w: self.plan(epoch)[w], weights=self.weight_scale("training"))
        try:
            yield from self.backend.made_on_device(rebatch(pieces, batch_size, self.backend.xp, skip=skip))
        finally:  # also after an error in the batching (out of memory): the pipeline, its reader and buffers, ends
            self.backend.close_on_device(pieces)

    def _window_rows(self, windows):
        """The rows of each of ``windows`` (the plan's: consecutive slices of one order), as an int64 array."""
        if not windows:
            return numpy.zeros(0, numpy.int64)
        sizes = self.chunk_sizes[numpy.concatenate(windows)]
        return numpy.add.reduceat(sizes, numpy.cumsum([0] + [len(w) for w in windows[:-1]]))

    def _wide_dtype(self):
        """float64 when the values are standardized and stored wider than the model's dtype
        (gpunn.data.stats.standardizing_dtype), else None."""
        stored = self.stored_dtype
        if stored is None or not (self.standardize or self.standardizer is not None):
            return None
        wide = standardizing_dtype(stored, self.dtype)
        return None if wide == self.dtype else wide

    def _windows(self, windows, epoch, first_index, shuffle, window_chunks=None, weights=None, weights_apart=False):
        """Device (X, Y) per window, permuted (when ``shuffle``) and standardized. ``epoch``: the training
        epoch (None: a pass in file order, validation's). Standardized on the device, each window is seen by
        ``overflow_watch`` (a value taken past the model's dtype is refused: gpunn.data.overflow), which keeps
        the pass's ``window_chunks`` (window w's chunks made again, on the refusal's path) until it is taken: a
        callable that holds less than ``windows`` (default: ``windows[w - first_index]``). ``weights``: a set's
        ``weight_scale``: Y then holds each row's weight, so scaled, as its last column (left unstandardized), as
        training's batches take them; with ``weights_apart``, the windows are (X, Y, w) instead, w those weights
        in float64 (validation's and evaluate's: not rounded to the model's dtype)."""
        self._check_open()  # (every pass: the epochs', validation's, the statistics')
        xp = self.backend.xp
        scaler = None if self._wide_dtype() is not None else self.standardizer  # wide: see _device_windows
        if scaler is not None:
            chunks_of = window_chunks or (lambda w: windows[w - first_index])

            def refuse_at(w):  # one per pass
                self._refuse_standardized(chunks_of(w), epoch)
        device_windows = (self._device_windows(windows) if weights is None else
                          self._device_windows(windows, weights, weights_apart))
        for w, (*arrays, release) in enumerate(device_windows, first_index):  # arrays: X, Y (and the weights apart)
            self._check_open()  # closed part-way: refused by name (a synthetic source's too), not cut short
            with self.backend.use():  # on the source's device, whichever the consumer has current (ordered_windows)
                if shuffle and arrays[0].shape[0] > 1:
                    order = DeviceRNG(self.backend, self.seed, "window", int(epoch), w).permutation(arrays[0].shape[0])
                    arrays = [xp.take(A, order, axis=0) for A in arrays]
                elif release is not None:
                    arrays = [A.copy() for A in arrays]  # the pipeline's buffers are about to be reused
                if release is not None:
                    release()
                X, Y = arrays[:2]
                if scaler is not None:
                    targets = Y if weights is None or weights_apart else Y[:, :-1]
                    with numpy.errstate(over="ignore", invalid="ignore"):  # (on the host) refused by the watch
                        scaler.transform_(xp, X, targets)
                    self.overflow_watch.see(xp, (X, targets) if scaler.scales_targets else (X,), refuse_at, w)
            yield tuple(arrays)

    def _refuse_standardized(self, chunks, epoch):
        """Raise the DataError naming the first value of ``chunks`` (a window's, read in ``epoch``; None: in file
        order) that standardizing in the model's dtype takes past it, as the wide path words it
        (``_check_finite(scaled=)``, the value standardized in float64): the chunks are read again, one at a time,
        and standardized on the host as the device does (the same operations in the same dtype). The error's path
        only (gpunn.data.overflow)."""
        scaler, to_host = self.standardizer, self.backend.to_host
        when = "" if epoch is None else f" (read in epoch {int(epoch) + 1})"
        try:
            for k in chunks:
                for X, Y, release in self._device_windows([[k]]):
                    X, Y = numpy.array(to_host(X)), numpy.array(to_host(Y))  # copies: the buffer may be reused
                    if release is not None:
                        release()
                wide = [A.astype(numpy.float64) for A in (X, Y)]
                with numpy.errstate(over="ignore", invalid="ignore"):
                    scaler.transform_(numpy, X, Y)
                    scaler.transform_(numpy, *wide)
                self._check_finite(k, X, Y, scaled=wide)
        except DataError as exc:
            raise DataError(f"{exc}{when}") from None
        places = ", ".join(self._where(k) for k in chunks)
        raise DataError(f"{places}: a value standardized past {self.dtype.name} on the device{when}; read again, the "
                        "rows standardize within it (the data changed since); clean or impute them before training")

    def _device_windows(self, windows, weights=None, weights_apart=False):
        """(X, Y, release) per window on the device (see gpunn.data.pipeline): read by a thread,
        staged through pinned memory on a GPU. Sources generated on the device override this (and have no
        ``weights``: a set's ``weight_scale``, with which Y's last column holds each row's weight so scaled; with
        ``weights_apart``, (X, Y, w, release), w those weights in float64).

        Values stored wider than the model's dtype and standardized (``_wide_dtype``) are read in
        float64: raw, for the statistics pass (no standardizer yet), or standardized on the
        reader's thread and then cast into the model's dtype."""
        from .pipeline import host_windows

        capacity = int(self._window_rows(windows).max(initial=0))
        wide = self._wide_dtype()
        scaler = self.standardizer if wide is not None else None
        scratch, scratch_weights = [], []  # the reader thread's float64 chunk buffers, made on first use

        def read(k, X, Y, w=None):
            if weights is None:
                return read_rows(k, X, Y)
            if w is not None:  # the weights apart, in float64
                read_rows(k, X, Y, w)
                w[...] = scaled(w, weights)
                return
            if not scratch_weights:
                scratch_weights.append(numpy.empty(int(self.chunk_sizes.max())))
            w = scratch_weights[0][:len(Y)]
            read_rows(k, X, Y[:, :-1], w)
            Y[:, -1] = scaled(w, weights)

        def read_rows(k, X, Y, w=None):
            self._check_open()  # a pass begun before close(): its next chunk refused by name, not by a closed file
            if scaler is None:
                self._fill_all(k, X, Y, w)
                self._check_finite(k, X, Y)
                return
            if not scratch:
                most = int(self.chunk_sizes.max())
                scratch.extend((numpy.empty((most, self.n_features), wide), numpy.empty((most, self.n_outputs), wide)))
            Xw, Yw = scratch[0][:len(X)], scratch[1][:len(Y)]
            self._fill_all(k, Xw, Yw, w)
            self._check_finite(k, Xw, Yw)
            scaler.transform_(numpy, Xw, Yw)
            with numpy.errstate(over="ignore"):  # a value standardized past the model's dtype: refused just below
                X[...], Y[...] = Xw, Yw
            self._check_finite(k, X, Y, scaled=(Xw, Yw))

        def fill(window, X, Y, w=None):
            n = 0
            for k in window:
                rows = self.chunk_sizes[k]
                read(k, X[n:n + rows], Y[n:n + rows], None if w is None else w[n:n + rows])
                n += rows
            return n

        dtype = wide if wide is not None and scaler is None else self.dtype
        column = weights is not None and not weights_apart  # training's: each row's weight as Y's last column
        return self._counted(host_windows(self.backend, windows, fill, capacity, self.n_features,
                                          self.n_outputs + column, dtype, depth=self.prefetch,
                                          weights=weights is not None and weights_apart))

    def _check_finite(self, k, X, Y, scaled=None):
        """Refuses chunk ``k``'s first value (features first) that is NaN or infinite as read (X, Y), or, given
        ``scaled`` (X and Y standardized in float64, of which X, Y are the cast), once standardized: as the source's
        file holds it where it has one (``_not_finite``), else by the chunk's count of them. As read, the file's
        first such value is named, not the first met in the pass's order (training's is shuffled: "row 298" where
        the file's first was row 29, and a user cleaning row by row reran once per chunk): the chunks before ``k``
        are read again in file order (``_refuse_first_before``), on this error's path only."""
        if scaled is None and not (numpy.isfinite(X).all() and numpy.isfinite(Y).all()):
            self._refuse_first_before(k, X.dtype, Y.dtype)
        self._refuse_not_finite(k, X, Y, scaled)

    def _refuse_first_before(self, k, x_dtype, y_dtype):
        """Refuse (``_refuse_not_finite``) the first chunk before chunk ``k`` in the file that holds a value NaN or
        infinite as read in these dtypes; return where none does. At most one more read of the file."""
        for j in range(k):
            self._check_open()  # (closed part-way: refused by name, as a pass's next chunk is)
            rows = self.chunk_sizes[j]
            X, Y = numpy.empty((rows, self.n_features), x_dtype), numpy.empty((rows, self.n_outputs), y_dtype)
            self._fill(j, X, Y)
            self._refuse_not_finite(j, X, Y)

    def _refuse_not_finite(self, k, X, Y, scaled=None):
        """_check_finite's refusal of chunk ``k``'s first value that is not finite (X, Y as read, or ``scaled``),
        where it has one."""
        columns = (getattr(self, "feature_names", None), getattr(self, "target_names", None))  # a table's
        for part, ((name, A), names) in enumerate(zip((("features", X), ("targets", Y)), columns)):
            finite = numpy.isfinite(A)
            if not finite.all():
                row, col = (int(i) for i in numpy.argwhere(~finite)[0])
                said = self._not_finite(k, name, row, col, A.dtype,
                                        scaled=None if scaled is None else float(scaled[part][row, col]))
                if said:
                    raise DataError(said + (self._more_not_finite(k, X, Y, part, row, col) if scaled is None else ""))
                where = f"column {names[col]!r}" if names else f"{name} column {col}"
                what = (f"NaN or infinite {name} value(s)" if scaled is None else
                        f"{name} value(s) infinite in {numpy.dtype(A.dtype).name} once standardized")
                raise DataError(f"{self._where(k)}: {int(finite.size - finite.sum())} {what}, the first at "
                                f"{self._at_row(k, row)} ({where}); clean or impute them before training")

    def _more_not_finite(self, k, X, Y, part, row, column, shown=3) -> str:
        """How many values of chunk ``k`` (X, Y as read) are missing or not finite besides the one refused (at ``row``,
        ``column`` of X, or of Y for ``part`` 1), and the rows of the first ``shown`` of them, so that a file with
        several is not cleaned one run per value: " (4 more missing or not finite among the 1,000 rows read with it,
        at line 32, line 501, line 1201, ...; the rows after them are not checked yet)"; "" for none. From the chunk
        as read: no more of the file is read (but a CSV file's line of each row shown, within the chunk)."""
        bad = [~numpy.isfinite(X), ~numpy.isfinite(Y)]
        bad[part][row, column] = False
        return more_not_finite(bad, len(X), lambda rows: [self._at_row(k, r) for r in rows],
                               later=k + 1 < len(self.chunk_sizes), shown=shown)

    def _not_finite(self, k, role, row, column, dtype, scaled=None) -> str:
        """The refusal of the value at ``row`` of chunk ``k`` and ``column`` of its ``role`` ("features" or
        "targets"), NaN or infinite as ``dtype`` (or, standardized, ``scaled``: not finite in ``dtype``), read again
        from the source's file and worded as gpunn predict words it (a CSV file's: gpunn.csvtext.not_finite; an .npy
        or Parquet file's: errors.not_finite_value). "" for a source without a file, or where the value read
        again is finite (the file changed since)."""
        return ""

    def _at_row(self, k, row) -> str:
        """Where row ``row`` of chunk ``k`` is in the source's file, as a message says it: "row 512", counted from
        0 as NumPy and pandas index a file's rows (a CSV file says its line instead)."""
        return f"row {self._row_offset(k) + row}"

    def _row_words(self, k, row) -> str:
        """Row ``row`` of chunk ``k`` with the source's name, as an error names a row it did not read itself (a
        validation value the model's output overflows on): "row 70 of x.npy", "line 72 of t.csv"."""
        return f"{self._at_row(k, row)} of {self._name()}"

    def _row_offset(self, k):
        """The row chunk ``k`` starts at (read for every chunk by a CSV source: a prefix sum made once in
        ``_set_chunks``, not a sum over the chunks before it, which made an epoch O(chunks^2))."""
        return self._chunk_starts[k]

    # ---- validation and statistics -------------------------------------------------------
    def validation_windows(self, weights=None, weights_apart=False):
        """Device (X, Y) per held-out chunk, in file order, standardized like training data (``weights``,
        ``weights_apart``: see ``ordered_windows``)."""
        return self.ordered_windows(self.validation_chunks, weights, weights_apart)

    def ordered_windows(self, chunks=None, weights=None, weights_apart=False):
        """Device (X, Y) per chunk (default: every chunk), in file order, standardized; with ``weights`` (a set's
        ``weight_scale``), Y's last column holds each row's weight, so scaled, in Y's dtype; with ``weights_apart``
        too, (X, Y, w) per chunk, w those weights in float64 (the metrics' weights: not rounded to a float32
        model's dtype)."""
        self._need_bound()
        chunks = range(len(self.chunk_sizes)) if chunks is None else chunks
        chunks = chunks if isinstance(chunks, (list, tuple, range, numpy.ndarray)) else list(chunks)
        return self._windows([[k] for k in chunks], None, 0, shuffle=False, window_chunks=lambda w: [chunks[w]],
                             weights=weights, weights_apart=weights_apart)

    # ---- per-row weights (gpunn.data.row_weights) ------------------------------------------
    @property
    def has_weights(self) -> bool:
        """Whether the source was made with a weight for each row (``weights=`` of an .npy pair, a table's
        ``weight=`` column)."""
        return self._weights is not None

    @property
    def weighted(self) -> bool:
        """Whether training's batches carry each row's weight as Y's last column: weights that are not all equal
        over the training chunks (equal ones weigh nothing)."""
        return self.weight_scale("training") is not None

    def weight_scale(self, part):
        """The scale (gpunn.data.row_weights.ChunkWeights.scale) of the weights of ``part``'s rows: "training"
        (the training chunks), "validation" (the held-out ones) or "all"; None where the source has no weights or
        they are all equal there."""
        if self._weights is None:
            return None
        chunks = {"training": self.train_chunks, "validation": self.validation_chunks,
                  "all": numpy.arange(len(self.chunk_sizes))}[part]
        what = {"training": "the training rows", "validation": "the validation rows (validation_fraction's chunks)",
                "all": "its rows"}[part]
        return self._weights.scale(chunks, self.chunk_sizes, what)

    def _take_weights(self, name):
        """The subclass's step after ``_ready`` where it has weights: one pass over them, checked
        (gpunn.data.row_weights.ChunkWeights.scan); ``name`` names them in messages."""
        self._weights = ChunkWeights.scan(self, name)

    def _chunk_weights(self):
        """Each chunk's raw weights (float64), in chunk order: the weight scan's pass (``_fill_weights``)."""
        for k in range(len(self.chunk_sizes)):
            self._check_open()
            w = numpy.empty(int(self.chunk_sizes[k]))
            self._fill_weights(k, w)
            yield w

    def _fill_all(self, k, X, Y, w=None):
        """Chunk ``k``'s features into X, targets into Y and, given ``w``, raw weights into it (a table reads them
        in one parse of the chunk: it overrides this)."""
        self._fill(k, X, Y)
        if w is not None:
            self._fill_weights(k, w)

    def _fill_weights(self, k, w):
        """Chunk ``k``'s raw weights into the float64 vector ``w`` (a source with weights defines it)."""
        raise NotImplementedError

    def _weight_shown(self, k, row, value) -> str:
        """Chunk ``k``'s weight ``value`` at ``row``, refused, as the refusal shows it after the row: " (nan)"; a
        table's missing one (``holds_missing``), read again, as its features' is said: ", an empty value (a missing
        number)"."""
        return f" ({value:g})"

    def _weights_where(self, k) -> str:
        """Where chunk ``k``'s weights are, for a refusal of one: the file and its rows."""
        return f"{self._weights.name if self._weights else 'the weights'} ({self._where(k)})"

    def compute_standardizer(self, progress=None) -> Standardizer:
        """Mean and spread per column of the training chunks, in one streaming pass; ``progress(rows)``, when given,
        is called with the rows of each chunk read (gpunn.training.progress.PassProgress shows them)."""
        saved, self.standardizer = self.standardizer, None
        try:
            # on cuda:N (bind() runs at construction too, outside any use()); the pass closed on leaving, also when
            # the statistics stop it (Ctrl-C): its reader thread and buffers end then, not when the traceback goes
            with self.backend.use(), contextlib.closing(self._windows([[k] for k in self.train_chunks], 0, 0,
                                                                       shuffle=False)) as windows:
                pieces = windows if progress is None else _reported(windows, progress)
                return Standardizer.from_pieces(pieces, self.n_features, self.n_outputs,
                                                targets=self.standardize is True)
        finally:
            self.standardizer = saved

    def _more_chunks(self) -> str:
        """How to get a second chunk to hold out (a file source names its chunk-size option)."""
        return "use smaller chunks (chunk_rows) or pass validation_data"

    # ---- description ---------------------------------------------------------------------
    def _name(self) -> str:
        return self.kind

    def config(self) -> dict:
        """JSON-able description saved in checkpoints: what to read and how it is cut and shuffled (with
        ``sample_weight`` True where each row has a weight, which ``_describe`` names)."""
        return {"kind": self.kind, **self._describe(), "seed": self.seed, "shuffle": self.shuffle,
                "window": self.window, "validation_fraction": self.validation_fraction,
                "standardize": self.standardize, "rows": self.rows, "chunks": len(self.chunk_sizes),
                **({"sample_weight": True} if self.has_weights else {}), **self._contents()}

    def _describe(self) -> dict:
        return {}

    def _content_files(self) -> list:
        """The files whose bytes the source reads, in order, as paths or the descriptors it reads them through (none:
        a source that draws its rows)."""
        return []

    def _contents(self) -> dict:
        """The files' sampled checksum (gpunn.data.contents), computed at the first call (a run's first checkpoint;
        a Parquet source's construction) and kept, so that every checkpoint of the run records the files as the run
        began on them. None where a file cannot be read (a closed source's, by a name that no longer holds it): the
        checkpoint is written without it, and a resume from it compares the description alone."""
        files = self._content_files()
        if not files:
            return {}
        if "_checksum" not in self.__dict__:
            try:
                self._checksum = sampled_checksum(files)
            except OSError:
                self._checksum = None
        return {} if self._checksum is None else {"contents": self._checksum, "contents_rule": CONTENTS_RULE}

    def __repr__(self):
        # rows and chunks are the training ones (self.rows): chunks counted every chunk, the held-out ones too
        held = (f", validation_rows={self.validation_rows}, validation_chunks={len(self.validation_chunks)}"
                if len(self.validation_chunks) else "")
        return f"{type(self).__name__}({self._name()}, rows={self.rows}, chunks={len(self.train_chunks)}{held})"


def _reported(pieces, progress):
    """``pieces`` ((X, Y) pairs), calling ``progress(rows)`` as each has been used."""
    for X, Y in pieces:
        yield X, Y
        progress(X.shape[0])


def closes_files_when_refused(init):
    """A file source's ``__init__`` that closes the files it opened (its ``_close_files()``, which takes a half-made
    source) when it raises, before the error reaches the caller: the error's traceback holds the half-made source,
    and its files with it, for as long as the error is kept (in a notebook, until the next error)."""
    @functools.wraps(init)
    def closing_init(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (out of tracebacks: gpunn/hints.py's keywords_checked)
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._close_files()
            raise
    return closing_init


def held_count(chunks, fraction) -> int:
    """How many of ``chunks`` chunks ``validation_fraction`` holds out: the nearest count, one at least,
    and never all of them."""
    return min(chunks - 1, max(1, round(fraction * chunks)))


def standardize_option(value):
    """``standardize`` checked: True (X and Y), False, or "inputs"/"x" (X only); a NumPy bool, 0 or 1 as ``flag``
    takes them, given back as a bool. ``value in (False, True, ...)`` let numpy.True_, 1 and 1.0 through as they
    were, and every reader asks ``standardize is True``: they scaled X alone, silently."""
    if isinstance(value, str) and value in ("x", "inputs"):
        return value
    try:
        return flag(value, "standardize")
    except TypeError:
        raise ValueError(f"standardize must be True, False or 'inputs', got {value!r}") from None


def stretch_starts(labels):
    """Where each stretch of equal consecutive ``labels`` (non-negative) starts, then ``len(labels)``: runs cut
    out of a sequence of run indices."""
    return numpy.concatenate([numpy.flatnonzero(numpy.diff(labels, prepend=-1)), [len(labels)]])


def _ranges(starts, ends):
    """The indices ``starts[0]..ends[0] - 1``, then ``starts[1]..ends[1] - 1``, ..., as one int64 array."""
    lengths = ends - starts
    offsets = numpy.repeat(starts - numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]), lengths)
    return offsets + numpy.arange(int(lengths.sum()))


def pread_full(fd, view, offset) -> int:
    """Reads the file ``fd`` from ``offset`` into the writable memoryview ``view`` until it is full
    or the file ends; returns the bytes read (fewer than ``len(view)`` only at the end of the file)."""
    got = 0
    while got < len(view):
        count = os.preadv(fd, [view[got:]], offset + got)
        if count == 0:
            break
        got += count
    return got


class PreadFile(io.RawIOBase):
    """The open file ``fd`` as a binary file of a position of its own, read by ``os.preadv``: a source's file read with
    seeks (a CSV file's first pass, a line counted for a message) through the descriptor it holds, whatever has been
    renamed over its name or removed since, neither moving nor following the offset another reader of ``fd`` (a
    pread, on another thread) may share. Closing it leaves ``fd`` open; io.BufferedReader(PreadFile(fd)) reads lines."""

    def __init__(self, fd):
        super().__init__()
        self._fd, self._position = fd, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def fileno(self):
        return self._fd

    def tell(self):
        return self._position

    def seek(self, offset, whence=os.SEEK_SET):
        start = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: os.fstat(self._fd).st_size}[whence]
        if start + offset < 0:
            raise ValueError(f"negative seek position {start + offset}")
        self._position = start + offset
        return self._position

    def readinto(self, buffer):
        count = os.preadv(self._fd, [buffer], self._position)
        self._position += count
        return count


SPLIT_CHUNKS = 32  # a small file is cut into about this many chunks, so that a tenth of them is about a tenth of it


def default_chunk_rows(rows, largest=65536):
    """The default chunk size of a file of ``rows`` rows: ``largest``, or less for a file under
    SPLIT_CHUNKS x ``largest`` rows, so that it still has about SPLIT_CHUNKS chunks to shuffle and to
    hold out for validation (whole chunks)."""
    return min(int(largest), max(1, -(-int(rows) // SPLIT_CHUNKS)))


def chunk_sizes(rows, chunk_rows):
    """Row counts of ``rows`` rows cut into chunks of ``chunk_rows`` (the last may be shorter), an int64 array."""
    whole, left = divmod(int(rows), int(chunk_rows))
    sizes = numpy.full(whole + bool(left), int(chunk_rows), numpy.int64)
    if left:
        sizes[-1] = left
    return sizes
