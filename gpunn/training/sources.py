"""Data sources the loop iterates (the :class:`~gpunn.training.protocols.DataSource` seam)."""
from __future__ import annotations

from ..rng import DeviceRNG

# the kinds of a run's data recorded for in-memory arrays: one process's, a data-parallel run's, an Ensemble's
# bootstrap resamples'; a gpunn.data source records its own kind (npy, parquet, csv, synthetic, ...)
ARRAY_KINDS = ("arrays", "sharded-arrays", "bootstrap")


def resume_call(data_kind, weighted) -> str:
    """How a Python run's checkpoint resumes, after gpunn.load_checkpoint(path).: with its arrays (``weighted``: and
    the sample_weight it took), or its source made again (which holds its own weights); either way where the data's
    ``data_kind`` is not recorded (None). gpunn info's words, and an interrupted fit's."""
    if data_kind in ARRAY_KINDS:
        return "resume(X, Y, sample_weight=w)" if weighted else "resume(X, Y)"
    return "resume(X, Y) or .resume(source)" if data_kind is None else "resume(source)"


class ArraySource:
    """In-memory device arrays (X, Y), reshuffled on the device every epoch (with ``weighted``, Y's last column
    holds each row's weight, gpunn.sample_weights, and goes with its row).

    With ``shuffle``, epoch ``e`` is the permutation drawn from the stream (seed, "shuffle", e): the whole
    epoch is gathered once into a reused shuffled copy of the data, so each batch is a contiguous slice
    (one gather per epoch instead of two per batch: the same bytes, far fewer launches). Where that copy
    does not fit in memory, each batch is gathered on its own. Batch i of epoch e depends only on
    (seed, e, i), so a run resumed at any batch sees exactly the batches it would have.
    """

    resumable = True

    def __init__(self, X, Y, backend, *, seed=0, shuffle=True, weighted=False):
        self.X, self.Y, self.backend = X, Y, backend
        self.seed, self.shuffle, self.weighted = int(seed), bool(shuffle), bool(weighted)
        # weighted: Y's last column is each row's weight (gpunn.sample_weights), not an output
        self.rows, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.n_outputs = int(Y.shape[1]) - self.weighted
        self._buffers = None  # the shuffled copy, made on first use (False: it did not fit)
        self._fingerprint = None

    def config(self) -> dict:
        """What a checkpoint records of the data: its shape, shuffle and seed, and a ``fingerprint`` of the
        values (see :func:`fingerprint`; computed once, at the first checkpoint), which a resume compares."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.backend.xp, self.X, self.Y)
        config = {"kind": "arrays", "rows": self.rows, "n_features": self.n_features, "n_outputs": self.n_outputs,
                  "shuffle": self.shuffle, "seed": self.seed, "fingerprint": self._fingerprint,
                  "fingerprint_rule": FINGERPRINT_RULE}
        if self.weighted:  # (the weights' column is in the fingerprint's Y)
            config["sample_weight"] = True
        return config

    def batches(self, epoch, batch_size, first_batch=0):
        """Device batches (X_b, Y_b) of ``epoch`` from batch ``first_batch`` on; views valid until the next. Each
        is made with the arrays' device current, whichever device is current when it is asked for."""
        return self.backend.made_on_device(self._batches(epoch, batch_size, first_batch))

    def _batches(self, epoch, batch_size, first_batch):
        X, Y, b, m = self.X, self.Y, batch_size, self.rows
        if not self.shuffle:
            for start in range(first_batch * b, m, b):
                yield X[start:start + b], Y[start:start + b]
            return
        xp = self.backend.xp
        order = DeviceRNG(self.backend, self.seed, "shuffle", epoch).permutation(m)
        shuffled = self._shuffled_copy()
        if shuffled is not None:
            Xs, Ys = shuffled
            xp.take(X, order, axis=0, out=Xs)
            xp.take(Y, order, axis=0, out=Ys)
            for start in range(first_batch * b, m, b):
                yield Xs[start:start + b], Ys[start:start + b]
            return
        full = (xp.empty((b, X.shape[1]), X.dtype), xp.empty((b, Y.shape[1]), Y.dtype))
        for start in range(first_batch * b, m, b):
            idx = order[start:start + b]
            if len(idx) == b:
                Xb, Yb = full
            else:
                Xb, Yb = xp.empty((len(idx), X.shape[1]), X.dtype), xp.empty((len(idx), Y.shape[1]), Y.dtype)
            xp.take(X, idx, axis=0, out=Xb)
            xp.take(Y, idx, axis=0, out=Yb)
            yield Xb, Yb

    def _shuffled_copy(self):
        """Buffers shaped like (X, Y) for the shuffled epoch, made once; None if they do not fit."""
        if self._buffers is None:
            xp = self.backend.xp
            try:
                self._buffers = (xp.empty_like(self.X), xp.empty_like(self.Y))
            except MemoryError:  # cupy's OutOfMemoryError is a MemoryError too
                self._buffers = False
        return self._buffers or None


FINGERPRINT_ROWS = 1 << 18  # fingerprint's block of rows: its temporaries are a few float64 vectors of this many
FINGERPRINT_VALUES = 16 * FINGERPRINT_ROWS  # and a float64 copy of a block of at most this many values (32 MB)

FINGERPRINT_RULE = 2  # the rule fingerprint() follows, recorded beside each fingerprint as "fingerprint_rule"


def fingerprint(xp, *arrays) -> list:
    """Per array, three float64 sums over its rows' column-weighted sums s_i = sum_j (j + 1) a_ij / n (so the
    columns in another order show; of one column, the plain row sums): sum s_i, sum (i + 1) s_i / m (so other
    rows in another order show) and sum |s_i| (the scale the first two are compared at: :func:`same_fingerprint`).
    One pass over the data, by blocks of FINGERPRINT_ROWS rows (three float64 vectors of every row took 12 GB
    for 5e8 rows on the device holding them), fewer where a block's float64 copy would pass FINGERPRINT_VALUES;
    one host read per array. Rule 2 (:data:`FINGERPRINT_RULE`); :func:`row_sums_fingerprint` is rule 1."""
    values = []
    for a in arrays:
        n = a.shape[1]
        column_weights = xp.arange(1, n + 1, dtype="float64") / n
        rows = max(1, min(FINGERPRINT_ROWS, FINGERPRINT_VALUES // n))
        values += _three_sums(xp, a, rows, lambda block: block.astype("float64", copy=False) @ column_weights)
    return values


def row_sums_fingerprint(xp, *arrays) -> list:
    """Rule 1, of checkpoints written before "fingerprint_rule" was recorded: :func:`fingerprint`'s three sums
    over the plain row sums, blind to the columns' order (no copy of the data)."""
    values = []
    for a in arrays:
        values += _three_sums(xp, a, FINGERPRINT_ROWS, lambda block: block.sum(axis=1, dtype="float64"))
    return values


FINGERPRINTS = {1: row_sums_fingerprint, 2: fingerprint}  # by the rule a checkpoint records (absent: 1)


def _three_sums(xp, a, rows, row_values) -> list:
    m = a.shape[0]
    sums = xp.zeros(3, "float64")
    for start in range(0, m, rows):
        s = row_values(a[start:start + rows])
        weights = xp.arange(start + 1, start + 1 + s.shape[0], dtype="float64") / m
        sums[0] += s.sum()
        sums[1] += s @ weights
        sums[2] += xp.abs(s).sum()
    return [float(v) for v in sums.tolist()]


def fingerprint_matches(saved: dict, now, xp, *arrays, where) -> bool:
    """Whether ``saved``, a checkpoint's record of in-memory arrays, fingerprints ``arrays``: by the rule it
    records ("fingerprint_rule"; a file from before it was recorded summed plain rows, rule 1). ``now()`` gives
    their fingerprint by the current rule, computed once by the source or evaluator that a checkpoint records;
    a file of an older rule has them summed again by its own. A rule this gpunn does not know is refused,
    naming the file ``where``."""
    rule = saved.get("fingerprint_rule", 1)
    if rule not in FINGERPRINTS:
        raise ValueError(f"{where}: the checksum of the data was made by rule {rule!r}, which this gpunn does not know "
                         f"(it knows {', '.join(map(str, FINGERPRINTS))}): a newer gpunn's file. Resume it with "
                         "that gpunn.")
    values = now() if rule == FINGERPRINT_RULE else FINGERPRINTS[rule](xp, *arrays)
    return same_fingerprint(saved["fingerprint"], values)


def same_fingerprint(saved, now, rtol=1e-9) -> bool:
    """Whether two :func:`fingerprint` lists describe the same data, up to summation order (another device)."""
    if len(saved) != len(now):
        return False
    for i in range(0, len(now), 3):
        scale = max(abs(now[i + 2]), abs(saved[i + 2]), 1e-300)
        if any(abs(a - b) > rtol * scale for a, b in zip(saved[i:i + 3], now[i:i + 3])):
            return False
    return True
