"""Each rank's rows of in-memory arrays: the global batch cut into per-rank pieces.

The single-process epoch is a permutation of the rows (keyed by (seed, epoch), as in
gpunn.train) cut into global batches of B = P x b rows. Rank r trains on piece r of each
global batch: rows ``[floor(r M / P), floor((r + 1) M / P))`` of a global batch of M rows
(M = B except for the last batch). So the union of the ranks' batch i, in rank order, is
exactly the single process's batch i at batch size B, the same rows in the same order, and
every rank runs the same number of steps.

Every rank holds the whole (X, Y) (as when each rank loads or generates the same data
set); each gathers only its own share of an epoch into a reused buffer (N / P rows), so the
per-epoch shuffle costs 1/P of the single-process one. Data larger than one rank's memory
needs a source that reads only its rows (the streams issue).
"""
from __future__ import annotations

from ..rng import DeviceRNG


def piece(M: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of rank ``rank``'s rows in a global batch of M rows over ``size`` ranks."""
    return rank * M // size, (rank + 1) * M // size


class ShardedArraySource:
    """A DataSource over in-memory device arrays, giving this rank its piece of each global batch.

    ``batches(epoch, batch_size, first_batch)`` takes the per-rank batch size b; the global
    batch is ``size * b``. ``rows`` is this rank's rows per epoch at the ``batch_size`` given
    here (the loop's). While a batch is being trained, ``global_batch_rows`` holds the row
    count M of the global batch it belongs to, which the gradient hook needs to weight this
    rank's mean gradient by its share (rows / M).
    """

    resumable = True

    def __init__(self, backend, X, Y, *, rank, size, seed, shuffle=True, batch_size=None):
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is not in [0, {size})")
        self.backend, self.X, self.Y = backend, X, Y
        self.rank, self.size, self.seed, self.shuffle = int(rank), int(size), int(seed), bool(shuffle)
        self.rows = None if batch_size is None else self.rows_for(batch_size)
        self.global_batch_rows = 0
        self._buffers = None

    @property
    def total_rows(self) -> int:
        """Rows of one epoch over all ranks."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.Y.shape[1])

    def rows_for(self, batch_size: int) -> int:
        """Rows this rank trains on per epoch at per-rank batch ``batch_size``."""
        return sum(hi - lo for _, lo, hi in self._plan(batch_size))

    def n_batches(self, batch_size: int) -> int:
        B = self.size * batch_size
        return -(-self.total_rows // B)

    def _plan(self, batch_size):
        """(global start, lo, hi) of this rank's piece, for each global batch of an epoch."""
        N, B = self.total_rows, self.size * batch_size
        for start in range(0, N, B):
            lo, hi = piece(min(B, N - start), self.rank, self.size)
            yield start, lo, hi

    def config(self) -> dict:
        return {"kind": "sharded-arrays", "rows": self.total_rows, "n_features": self.n_features,
                "n_outputs": self.n_outputs, "ranks": self.size, "seed": self.seed, "shuffle": self.shuffle}

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
        """This rank's (X_b, Y_b) for global batches ``first_batch``, ... of ``epoch``."""
        xp = self.backend.xp
        order = self._order(epoch, batch_size)
        m = int(order.shape[0])
        if self._buffers is None or self._buffers[0].shape[0] != m:
            self._buffers = (xp.empty((m, self.n_features), self.X.dtype), xp.empty((m, self.n_outputs), self.Y.dtype))
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
    its own rows.
    """

    def __init__(self, source, *, rank, size, batch_size):
        self.source, self.rank, self.size = source, int(rank), int(size)
        self.n_features, self.n_outputs = source.n_features, source.n_outputs
        self.resumable = getattr(source, "resumable", False)
        self.total_rows = int(source.rows)
        B = self.size * batch_size
        full, tail = divmod(self.total_rows, B)
        lo, hi = piece(tail, self.rank, self.size)
        self.rows = full * batch_size + (hi - lo)
        self.global_batch_rows = 0

    def n_batches(self, batch_size: int) -> int:
        return -(-self.total_rows // (self.size * batch_size))

    def config(self) -> dict:
        return self.source.config()  # the data, as one process sees it (the ranks are in FitSettings)

    def batches(self, epoch, batch_size, first_batch=0):
        for Xb, Yb in self.source.batches(epoch, self.size * batch_size, first_batch):
            M = int(Xb.shape[0])
            lo, hi = piece(M, self.rank, self.size)
            self.global_batch_rows = M
            yield Xb[lo:hi], Yb[lo:hi]
