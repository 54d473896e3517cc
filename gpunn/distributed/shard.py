"""Each rank's rows of in-memory arrays: the global batch cut into per-rank pieces.

The single-process epoch is a permutation of the rows (keyed by (seed, epoch), as in
gpunn.train) cut into global batches of B = P x b rows. Rank r trains on piece r of each
global batch: rows ``[floor(r M / P), floor((r + 1) M / P))`` of a global batch of M rows
(M = B except for the last batch). So the union of the ranks' batch i, in rank order, is
exactly the single process's batch i at batch size B, the same rows in the same order, and
every rank runs the same number of steps.

Every rank holds the whole (X, Y) (as when each rank loads or generates the same data
set); each gathers only its own share of an epoch into a reused buffer (N / P rows), so the
per-epoch shuffle costs 1/P of the single-process one.

A chunked source (gpunn.data: synthetic, npy, parquet, csv) is split otherwise, so that each
rank reads only its own rows (:class:`ShardedSource`): its N training rows, in file order, are cut
into P shards of rows ``[floor(s N / P), floor((s + 1) N / P))``; rank s reads shard s alone
(whole chunks, and the parts of the at most two chunks its boundaries cut), shuffles it as the
source shuffles (chunk order and windows, from its own seed) and trains on b rows of it per
step. Global batch i is the ranks' batches i in rank order: the P shards' streams interleaved,
b rows of each. That is another order of the rows than the source's own at batch P x b, so the
single process that trains the same weights reads the source as ``ShardedSource(source, P)``
(what a P-rank checkpoint resumed in one process does); every global batch but the last still
holds exactly P x b rows, as at batch P x b.
"""
from __future__ import annotations

import contextlib

import numpy

from ..data.base import ChunkedSource, Closable, stretch_starts
from ..rng import DeviceRNG, host_rng
from ..training.sources import FINGERPRINT_RULE, fingerprint


def piece(M: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of rank ``rank``'s rows in a global batch of M rows over ``size`` ranks."""
    return rank * M // size, (rank + 1) * M // size


class ShardedArraySource:
    """A DataSource over in-memory device arrays, giving this rank its piece of each global batch.

    ``batches(epoch, batch_size, first_batch)`` takes the per-rank batch size b; the global
    batch is ``size * b``. ``rows`` is this rank's rows per epoch at the ``batch_size`` given
    here (the loop's). While a batch is being trained, ``global_batch_rows`` holds the row
    count M of the global batch it belongs to, which the gradient hook needs to weight this
    rank's mean gradient by its share (rows / M). With ``weighted``, Y's last column is each row's weight
    (gpunn.sample_weights, scaled to mean 1 over every training row), which goes with its row into the rank's piece:
    the ranks' weighted sums are the single process's.
    """

    resumable = True

    def __init__(self, backend, X, Y, *, rank, size, seed, shuffle=True, batch_size=None, fingerprint=None,
                 weighted=False):
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is not in [0, {size})")
        self.backend, self.X, self.Y, self.weighted = backend, X, Y, bool(weighted)
        self.rank, self.size, self.seed, self.shuffle = int(rank), int(size), int(seed), bool(shuffle)
        self.rows = None if batch_size is None else self.rows_for(batch_size)
        self.global_batch_rows = 0
        self._buffers = None
        self._fingerprint = fingerprint  # X and Y's, where known already (a resume's); else computed by config()

    @property
    def total_rows(self) -> int:
        """Rows of one epoch over all ranks."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.Y.shape[1]) - self.weighted

    def rows_for(self, batch_size: int) -> int:
        """Rows this rank trains on per epoch at per-rank batch ``batch_size``."""
        return sum(hi - lo for _, lo, hi in self._plan(batch_size))

    def _plan(self, batch_size):
        """(global start, lo, hi) of this rank's piece, for each global batch of an epoch."""
        N, B = self.total_rows, self.size * batch_size
        for start in range(0, N, B):
            lo, hi = piece(min(B, N - start), self.rank, self.size)
            yield start, lo, hi

    def config(self) -> dict:
        """As :class:`~gpunn.training.sources.ArraySource`'s, with the ranks: the ``fingerprint`` of all the rows
        (every rank holds them all), computed once; the ranks' configuration check compares it, a checkpoint
        records it, and a resume compares it with the arrays it is given (weighted: the weights' column is in Y's)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.backend.xp, self.X, self.Y)
        config = {"kind": "sharded-arrays", "rows": self.total_rows, "n_features": self.n_features,
                  "n_outputs": self.n_outputs, "ranks": self.size, "seed": self.seed, "shuffle": self.shuffle,
                  "fingerprint": self._fingerprint, "fingerprint_rule": FINGERPRINT_RULE}
        if self.weighted:
            config["sample_weight"] = True
        return config

    def _order(self, epoch, batch_size):
        """Indices of this rank's rows for the epoch, in training order (a device array)."""
        xp, N, B = self.backend.xp, self.total_rows, self.size * batch_size
        perm = (DeviceRNG(self.backend, self.seed, "shuffle", epoch).permutation(N) if self.shuffle
                else xp.arange(N))
        full = N // B
        b = batch_size
        parts = [perm[:full * B].reshape(full, self.size, b)[:, self.rank, :].reshape(-1)] if full else []
        if N > full * B:
            lo, hi = piece(N - full * B, self.rank, self.size)
            parts.append(perm[full * B + lo:full * B + hi])
        return xp.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else perm[:0])

    def batches(self, epoch, batch_size, first_batch=0):
        """This rank's (X_b, Y_b) for global batches ``first_batch``, ... of ``epoch``, each made with the arrays'
        device current, whichever device is current when it is asked for."""
        return self.backend.made_on_device(self._batches(epoch, batch_size, first_batch))

    def _batches(self, epoch, batch_size, first_batch):
        xp = self.backend.xp
        order = self._order(epoch, batch_size)
        m = int(order.shape[0])
        if self._buffers is None or self._buffers[0].shape[0] != m:
            self._buffers = (xp.empty((m, self.n_features), self.X.dtype), xp.empty((m, self.Y.shape[1]), self.Y.dtype))
        Xs, Ys = self._buffers
        xp.take(self.X, order, axis=0, out=Xs)
        xp.take(self.Y, order, axis=0, out=Ys)
        offset = 0
        for i, (start, lo, hi) in enumerate(self._plan(batch_size)):
            if i >= first_batch:
                self.global_batch_rows = min(self.size * batch_size, self.total_rows - start)
                yield Xs[offset:offset + hi - lo], Ys[offset:offset + hi - lo]
            offset += hi - lo


class PieceOfEachBatch:
    """Any DataSource made data parallel: every rank draws the whole source's batches at the global
    batch size (``size x batch_size``) and keeps piece ``rank`` of each.

    Exact for any source whose batches are a pure function of (seed, epoch, batch): the ranks'
    pieces of batch i are the single process's batch i. Each rank reads (or generates) every row
    and trains on 1/size of them; for in-memory arrays :class:`ShardedArraySource` gathers only
    its own rows. A bootstrapped ensemble's batches are (K, rows, columns) stacks, one resample per
    member: the piece is cut from the rows axis, -2, and a source that ``cuts`` (BootstrapSource)
    gathers only the piece.
    """

    def __init__(self, source, *, rank, size, batch_size):
        self.source, self.rank, self.size = source, int(rank), int(size)
        self.n_features, self.n_outputs = source.n_features, source.n_outputs
        self.resumable = getattr(source, "resumable", False)
        self.weighted = getattr(source, "weighted", False)  # (a weighted bootstrap's: Y's last column, the weights)
        self.total_rows = int(source.rows)
        B = self.size * batch_size
        full, tail = divmod(self.total_rows, B)
        lo, hi = piece(tail, self.rank, self.size)
        self.rows = full * batch_size + (hi - lo)
        self.global_batch_rows = 0

    def config(self) -> dict:
        return self.source.config()  # the data, as one process sees it (the ranks are in FitSettings)

    def batches(self, epoch, batch_size, first_batch=0):
        B = self.size * batch_size
        if getattr(self.source, "cuts", False):  # the source gathers only this rank's piece of each batch
            for i, pieces in enumerate(self.source.batches(epoch, B, first_batch,
                                                           cut=lambda M: piece(M, self.rank, self.size)),
                                       first_batch):
                self.global_batch_rows = min(B, self.total_rows - i * B)
                yield pieces
            return
        for Xb, Yb in self.source.batches(epoch, B, first_batch):
            M = int(Xb.shape[-2])  # rows are the second-last axis: (K, rows, n) for a bootstrapped ensemble
            lo, hi = piece(M, self.rank, self.size)
            self.global_batch_rows = M
            yield Xb[..., lo:hi, :], Yb[..., lo:hi, :]


def shard_parts(chunk_sizes, chunks, shard, shards):
    """(chunk, lo, hi) row ranges of ``shard``'s rows: rows [floor(s N / S), floor((s + 1) N / S))
    of the chunks ``chunks`` (sorted, N rows in all) laid end to end."""
    chunks = numpy.asarray(chunks, dtype=numpy.int64)
    sizes = numpy.asarray(chunk_sizes, dtype=numpy.int64)[chunks]
    ends = numpy.cumsum(sizes)
    starts, total = ends - sizes, int(ends[-1]) if len(ends) else 0
    lo, hi = shard * total // shards, (shard + 1) * total // shards
    a, b = numpy.maximum(lo, starts), numpy.minimum(hi, ends)
    cut = a < b
    return list(zip(chunks[cut].tolist(), (a - starts)[cut].tolist(), (b - starts)[cut].tolist()))


class _ShardView(ChunkedSource):
    """One shard of a chunked source as a chunked source of its own: its chunk j is the row range
    ``parts[j] = (k, lo, hi)`` of the parent's chunk k; chunk order (by the parent's runs) and windows
    are shuffled as the parent's are, from the shard's own seed. Reads go to the parent: whole chunks through its
    ``_fill``, a part of one through ``_fill_rows`` (files that read row ranges) or a whole read
    and a slice; a source generated on the device generates whole chunks and slices."""

    kind = "shard"

    def __init__(self, parent, parts, seed):
        self.parent, self.parts = parent, parts
        self.n_features, self.n_outputs = parent.n_features, parent.n_outputs
        super().__init__(seed=seed, shuffle=parent.shuffle, window=parent.window, prefetch=parent.prefetch)
        # the parent's runs (chunks read front to back, e.g. a large row group's pieces) stay runs
        runs = stretch_starts(parent.run_of([k for k, _, _ in parts]))
        self._set_chunks([hi - lo for _, lo, hi in parts], numpy.diff(runs))

    @property
    def closed(self):  # the parent's: the shard reads its files
        return self.parent.closed

    def _check_open(self):
        self.parent._check_open()

    def _owner(self):
        return self.parent

    def sync(self):
        """Take the parent's binding and statistics (set after the view was made)."""
        self.backend, self.dtype, self.standardizer = self.parent.backend, self.parent.dtype, self.parent.standardizer
        self.overflow_watch = self.parent.overflow_watch  # what reads the source's epoch takes the shards' windows too
        return self

    def _wide_dtype(self):  # the shard is read as its source is (standardized in float64 or not)
        return self.parent._wide_dtype()

    def _whole(self, j):
        k, lo, hi = self.parts[j]
        return lo == 0 and hi == self.parent.chunk_sizes[k]

    def _fill(self, j, X, Y):
        self._fill_all(j, X, Y)

    def _fill_all(self, j, X, Y, w=None):
        k, lo, hi = self.parts[j]
        parent = self.parent
        if self._whole(j):
            parent._fill_all(k, X, Y, w)
        elif hasattr(parent, "_fill_rows"):
            parent._fill_rows(k, lo, hi, X, Y)
            if w is not None:  # (an .npy pair's weights file: the chunk's, sliced)
                wk = numpy.empty(int(parent.chunk_sizes[k]))
                parent._fill_weights(k, wk)
                w[...] = wk[lo:hi]
        else:
            n = parent.chunk_sizes[k]
            Xk, Yk = numpy.empty((n, X.shape[1]), X.dtype), numpy.empty((n, Y.shape[1]), Y.dtype)
            wk = None if w is None else numpy.empty(n)
            parent._fill_all(k, Xk, Yk, wk)
            X[...], Y[...] = Xk[lo:hi], Yk[lo:hi]
            if w is not None:
                w[...] = wk[lo:hi]

    def weight_scale(self, part):
        """The parent's weights scaled over its training rows, every shard's (gpunn.data.row_weights): the global
        batch's weights are those the single process trains on."""
        return self.parent.weight_scale(part)

    def _device_windows(self, windows, weights=None, weights_apart=False):
        if type(self.parent)._device_windows is ChunkedSource._device_windows:
            return super()._device_windows(windows, weights, weights_apart)  # read on the host through _fill
        return self._sliced_windows(windows)  # (generated on the device: no weights)

    def _sliced_windows(self, windows):
        """A source generated on the device: its windows of whole chunks, cut to the parts. A window of whole
        parts goes on as generated, with its release; one with a part cut goes on as a fresh array of the parts,
        the consumer's to keep (no release), and the generated window is released here once the cut, its last
        read, is enqueued (gpunn.data.pipeline: its memory goes to a later generation only after that)."""
        xp, parent = self.backend.xp, self.parent
        whole = [[self.parts[j][0] for j in w] for w in windows]
        for w, (X, Y, release) in zip(windows, parent._device_windows(whole)):
            if all(self._whole(j) for j in w):
                yield X, Y, release
                continue
            cuts, start = [], 0
            for j in w:
                k, lo, hi = self.parts[j]
                cuts.append((start + lo, start + hi))
                start += parent.chunk_sizes[k]
            Xs, Ys = (xp.concatenate([A[a:b] for a, b in cuts]) for A in (X, Y))
            if release is not None:
                release()
            yield Xs, Ys, None

    def training_moments(self):
        """(Moments of X, Moments of Y) of the shard's rows, raw, chunk by chunk in file order."""
        from ..data.stats import moments_of

        saved, self.standardizer = self.standardizer, None
        try:
            with self.backend.use(), contextlib.closing(self._windows([[j] for j in self.train_chunks], 0, 0,
                                                                       shuffle=False)) as windows:
                return moments_of(windows, self.n_features, self.n_outputs)  # (closed as compute_standardizer's)
        finally:
            self.standardizer = saved

    def _row_offset(self, j):
        k, lo, _ = self.parts[j]
        return self.parent._row_offset(k) + lo

    def _where(self, j):
        return self.parent._where(self.parts[j][0])

    def _at_row(self, j, row):
        k, lo, _ = self.parts[j]
        return self.parent._at_row(k, lo + row)

    def _refuse_first_before(self, j, x_dtype, y_dtype):
        # the file's first, in the parent's chunks before this part (the other ranks' rows too): its whole chunk
        # too where the part starts inside it
        k, lo, _ = self.parts[j]
        self.parent._refuse_first_before(k + 1 if lo else k, x_dtype, y_dtype)

    def _not_finite(self, j, role, row, column, dtype, scaled=None):
        k, lo, _ = self.parts[j]
        return self.parent._not_finite(k, role, lo + row, column, dtype, scaled)

    def _name(self):
        return self.parent._name()


class ShardedSource(Closable):
    """A chunked source (gpunn.data) read as ``shards`` shards of its training rows, of which this
    process reads and trains the ones in ``owned`` (default: all); see the module docstring.

    On rank r of P ranks: ``ShardedSource(source, P, [r])`` at the per-rank batch b (what
    ``fit(source, distributed=True)`` builds). In one process: ``ShardedSource(source, P)`` at batch
    P x b trains the same weights (each of its P shards gives b rows of every batch). ``rows`` are
    the owned shards' rows; ``global_batch_rows`` the row count of the global batch being trained.
    Everything else (bind, hold_out, validation, standardizer, seed) is the wrapped source's, but for
    ``ordered_windows``, which would read every row of it (refused: ``sharded.source.ordered_windows()`` says so).
    ``model.evaluate``, ``score``, ``predict`` and a fit's ``validation_data`` take one that owns every shard as the
    source it wraps and refuse one that owns some (gpunn.data.rawpass.every_row_of).

    ``close()`` (or the end of ``with ShardedSource(...) as sharded:``) closes the wrapped source, whose files every
    shard reads, as closing an io wrapper closes the file it wraps; ``closed`` is the wrapped source's. ``fit(source,
    distributed=True)`` wraps your source in one and closes neither: the source is yours.
    """

    resumable = True

    def __init__(self, source, shards, owned=None):
        if isinstance(source, ShardedSource):
            source = source.source
        if not isinstance(source, ChunkedSource):
            raise TypeError(f"ShardedSource needs a chunked gpunn.data source, got {type(source).__name__}")
        shards = int(shards)
        owned = list(range(shards)) if owned is None else [int(s) for s in owned]
        if shards < 1 or not owned or any(not 0 <= s < shards for s in owned):
            raise ValueError(f"owned shards {owned} must be some of 0..{shards - 1}")
        self.__dict__.update(source=source, shards=shards, owned=owned, global_batch_rows=0, _views=(None, None))

    _OWN = frozenset(("source", "shards", "owned", "global_batch_rows", "_views"))

    def __getattr__(self, name):
        if name.startswith("__") or "source" not in self.__dict__:
            raise AttributeError(name)
        if name == "ordered_windows":  # forwarded, it read every row of the wrapped source, not the owned shards'
            raise AttributeError(f"ShardedSource has no ordered_windows: the wrapped source's would read all of its "
                                 f"rows, not those of the owned shards {self.owned} of {self.shards}; read every row "
                                 "with sharded.source.ordered_windows(), the owned shards' with batches()")
        return getattr(self.__dict__["source"], name)

    def __setattr__(self, name, value):  # standardizer, standardize, ...: the wrapped source's
        if name in self._OWN:
            self.__dict__[name] = value
        else:
            setattr(self.source, name, value)

    @property
    def closed(self) -> bool:
        return self.source.closed

    def close(self) -> None:
        """Close the wrapped source (its shards are read through it); a second call does nothing."""
        self.source.close()

    @property
    def total_rows(self) -> int:
        return int(self.source.rows)

    @property
    def rows(self) -> int:
        """Training rows per epoch of the owned shards."""
        N, S = self.total_rows, self.shards
        return sum((s + 1) * N // S - s * N // S for s in self.owned)

    def config(self) -> dict:
        return {**self.source.config(), "shards": self.shards}

    def views(self):
        """The owned shards' sources (None for an empty shard), made again when the held-out chunks change."""
        source = self.source
        key, views = self._views
        if key is None or not numpy.array_equal(key, source.train_chunks):
            views = []
            for s in self.owned:
                parts = shard_parts(source.chunk_sizes, source.train_chunks, s, self.shards)
                seed = source.seed if s == 0 else int(host_rng(source.seed, "shard", s).integers(2 ** 62))
                views.append(_ShardView(source, parts, seed) if parts else None)
            self.__dict__["_views"] = (source.train_chunks, views)
        return [v.sync() if v is not None else None for v in views]

    def owned_moments(self):
        """The (features, targets) Moments of each owned shard's training rows (None for an empty shard)."""
        return [v.training_moments() if v is not None else None for v in self.views()]

    def standardizer_over_shards(self, comm):
        """The source's standardization statistics with each rank reading only its shards: the
        owned shards' moments, gathered from every rank over ``comm`` and merged in shard order
        (so every rank gets the same bits). Equal to the one-pass statistics up to rounding. The ranks
        agree on a failure in the same gather (comm.agreeing_on_failure): one every rank meets is raised on
        every rank; one some ranks meet ends the job."""
        from ..data.stats import Moments, Standardizer
        from .comm import agreeing_on_failure, raised_on_every_rank

        source = self.source
        gathered = agreeing_on_failure(comm, self.owned_moments, "the standardization statistics")
        mx, my = Moments(source.n_features), Moments(source.n_outputs)
        for part in (p for owned in gathered for p in owned if p is not None):
            mx.merge(part[0])
            my.merge(part[1])
        try:
            return Standardizer.from_moments(mx, my if source.standardize is True else None)
        except Exception as exc:  # from the same gathered bits on every rank: every rank raises it
            raise raised_on_every_rank(exc) from None

    def batches(self, epoch, batch_size, first_batch=0):
        """Global batches ``first_batch``, ... of ``epoch``: this process's share of each, b =
        ``batch_size`` / (owned shards) rows from each owned shard, in shard order."""
        source = self.source
        source._need_bound()  # (refused by name where the source is closed)
        n = len(self.owned)
        if batch_size % n:
            raise ValueError(f"batch_size {batch_size} does not split into {n} shards of equal batches; "
                             f"use a multiple of {n}")
        b, N = batch_size // n, self.total_rows
        B = self.shards * b
        yield from source.backend.made_on_device(self._joined(self.views(), epoch, b, first_batch, N, B))

    def _joined(self, views, epoch, b, first_batch, N, B):
        """The global batches from each owned shard's pass (``batches``). The passes are closed when this one ends,
        also early (a break, an error in a shard or in the consumer), with the source's device current (this runs
        under made_on_device): each of them, even when one's close raises, as contextlib.ExitStack closes what it
        holds (an error raised by a close is raised from here, the ones before it as its ``__context__``). Left to
        the garbage collector, the others stayed open, reader threads and buffers held, while an error's
        traceback held this frame."""
        source = self.source
        xp = source.backend.xp
        empty = (xp.empty((0, source.n_features), source.dtype),
                 xp.empty((0, source.n_outputs + source.weighted), source.dtype))  # (the weights' column too)
        with contextlib.ExitStack() as passes:
            streams = []
            for view in views:
                if view is None:  # an empty shard
                    streams.append(iter(()))
                else:
                    streams.append(view.batches(epoch, b, first_batch))
                    passes.callback(streams[-1].close)
            for i in range(first_batch, -(-N // B)):
                pieces = [next(stream, empty) for stream in streams]
                self.global_batch_rows = min(B, N - i * B)
                if len(streams) == 1:
                    yield pieces[0]
                else:
                    yield xp.concatenate([p[0] for p in pieces]), xp.concatenate([p[1] for p in pieces])


def statistics_over_ranks(source):
    """For ``prepare_source`` in a data-parallel fit: a chunked source's standardization statistics
    computed from every rank's own shard (one shard per rank, as the fit will read them); another source's
    from every row, on every rank.

    This pass comes before the fit's loop, whose failure handling (DataParallel.run) it is not under, and a rank
    may meet an error the others do not (a NaN in its shard; a file that differs on its node): the ranks agree on
    who failed (comm.agreeing_on_failure, in the gather of the statistics). An error every rank meets is raised on
    every rank as it is, as a one-process fit raises it (a script can catch it); one that some ranks meet ends the
    job with their error (comm.abort_on_error: its error, then MPI_Abort), as one inside the fit does. Before, the
    rank left the fit alone and the others waited for its moments until GPUNN_DIST_TIMEOUT (300 s by default), and
    after that (d99e428) any error aborted the job, one every rank raised too."""
    from .comm import agreeing_on_failure, world

    comm = world()
    shards = source.shards if isinstance(source, ShardedSource) else comm.size
    if not isinstance(source, (ChunkedSource, ShardedSource)) or shards % comm.size:
        # every rank reads every row: only whether each failed is gathered
        return agreeing_on_failure(comm, source.compute_standardizer, "the standardization statistics", gather=False)
    own = shards // comm.size
    return ShardedSource(source, shards, range(comm.rank * own, (comm.rank + 1) * own)).standardizer_over_shards(comm)
