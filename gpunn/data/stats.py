"""Per-column statistics in one streaming pass, and the standardization they define.

Chunk moments are merged with Chan, Golub and LeVeque's pairwise formula: for two parts with
counts n_a, n_b, means m_a, m_b and sums of squared deviations M2_a, M2_b,

    n = n_a + n_b,   d = m_b - m_a,   m = m_a + d n_b / n,   M2 = M2_a + M2_b + d^2 n_a n_b / n

Each chunk's own (mean, M2) is computed in float64 around its own mean, so no sum of squares
of raw values is ever formed: the result does not lose digits when the mean is large
compared with the spread (the failure of sum(x^2) - n mean^2). All of it runs on the data
minus a shift (the first row seen), so that the chunk means merged above are small numbers
whose rounding does not swamp the deviations between them.
"""
from __future__ import annotations

import numpy

from ..backend import backend_of
from ..checks import as_array
from .errors import DataError


class Moments:
    """Count, mean and M2 (sum of squared deviations) per column, merged chunk by chunk; ``dtype`` is
    that of the values seen (the widest, when chunks differ), None before the first."""

    def __init__(self, n_columns: int):
        self.count = 0
        self.shift = None  # the first row seen: statistics are kept for (data - shift)
        self._mean = numpy.zeros(n_columns)
        self.m2 = numpy.zeros(n_columns)
        self.dtype = None
        self._host_buffer = numpy.empty(0)  # float64 room for a host chunk, kept from chunk to chunk

    def _saw(self, dtype):
        if dtype is not None:
            self.dtype = numpy.dtype(dtype) if self.dtype is None else numpy.promote_types(self.dtype, dtype)

    def update(self, chunk) -> "Moments":
        """Merge a (rows x columns) chunk, on any device; reads back two small vectors."""
        n = int(chunk.shape[0])
        if n == 0:
            return self
        self._saw(chunk.dtype)
        backend = backend_of(chunk)
        xp, to_host = backend.xp, backend.to_host
        if self.shift is None:
            self.shift = to_host(chunk[0]).astype("float64")
        with numpy.errstate(over="ignore", invalid="ignore"):  # a spread past float64: Standardizer.from_moments
            shifted = xp.subtract(chunk, xp.asarray(self.shift), out=self._scratch(chunk) if xp is numpy else None)
            mean = shifted.mean(axis=0)
            shifted -= mean  # (the values of shifted - mean, without two more chunk-sized arrays to allocate)
            shifted *= shifted
            return self._merge(n, to_host(mean), to_host(shifted.sum(axis=0)))

    def __getstate__(self):  # (the buffer is no state: moments gathered from other processes travel without it)
        return {**self.__dict__, "_host_buffer": numpy.empty(0)}

    def _scratch(self, chunk):
        """A float64 array of ``chunk``'s shape to work in: the buffer kept from the last host chunk, grown when this
        one is larger. A NumPy array of a chunk's size is fresh memory from the OS each time (page faults as it is
        first written): with the three chunk-sized temporaries gone, 2M x 32 rows in 65,536-row chunks take 0.20 s,
        was 0.36, on a quiet 2-core Xeon (0.5-0.9 s, was 1.6-2.0, under load); a device chunk uses CuPy's pool."""
        if self._host_buffer.size < chunk.size:
            self._host_buffer = numpy.empty(chunk.size)
        return self._host_buffer[:chunk.size].reshape(chunk.shape)

    def _merge(self, n, mean, m2) -> "Moments":
        """Merge a part with count n, mean and M2 of (its data - self.shift)."""
        total = self.count + n
        delta = mean - self._mean
        with numpy.errstate(over="ignore", invalid="ignore"):  # a spread past float64: Standardizer.from_moments
            self._mean = self._mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total
        return self

    def merge(self, other: "Moments") -> "Moments":
        if other.count == 0:
            return self
        self._saw(other.dtype)
        if self.shift is None:
            self.shift = other.shift
        return self._merge(other.count, other._mean + (other.shift - self.shift), other.m2)

    @property
    def mean(self):
        return self._mean if self.shift is None else self.shift + self._mean

    @property
    def variance(self):
        """Population variance (divide by n), as numpy.var."""
        return self.m2 / max(self.count, 1)

    @property
    def std(self):
        return numpy.sqrt(self.variance)


def moments_of(pieces, n_features, n_outputs) -> tuple[Moments, Moments]:
    """(Moments of X, Moments of Y) of (X, Y) pieces, merged in order (gpunn.distributed merges the
    ranks' moments of their shards)."""
    mx, my = Moments(n_features), Moments(n_outputs)
    for X, Y in pieces:
        mx.update(X)
        my.update(Y)
    return mx, my


def standardizing_dtype(stored, dtype):
    """The dtype to standardize values stored as ``stored`` in, for a model of ``dtype``: float64 when
    ``dtype`` would not hold them exactly (float64 or int64 values for a float32 model), else ``dtype``.

    The statistics and the scaling then run on the stored values and only standardized values are
    cast: a float32 model sees a column to float32's resolution at its standardized size, not at its
    raw magnitude (a Unix time in seconds, about 1.7e9, is held to 128 s in float32)."""
    stored, dtype = numpy.dtype(stored), numpy.dtype(dtype)
    wide = stored.kind in "biuf" and not numpy.can_cast(stored, dtype, "safe")
    return numpy.dtype("float64") if wide else dtype


def dtype_of(data):
    """The dtype of an array, or of the NumPy array the model's checks make of anything else (a list, a
    pandas DataFrame or Series)."""
    return as_array(data).dtype


class Standardizer:
    """x' = (x - x_mean) / x_scale for inputs, y' = (y - y_mean) / y_scale for targets.

    A column with zero spread gets scale 1 (it is only centred). The statistics are float64 on
    the host; ``to_device`` casts them for the model's dtype and device once.

    ``y_dtype`` is the dtype the targets were standardized in (recorded by ``from_moments``; None
    when unknown): a model's predictions come back in ``prediction_dtype``, float64 when these
    targets were wider than the model's dtype.
    """

    def __init__(self, x_mean, x_scale, y_mean=None, y_scale=None, y_dtype=None):
        self.x_mean, self.x_scale = numpy.asarray(x_mean, "float64"), numpy.asarray(x_scale, "float64")
        self.y_mean = None if y_mean is None else numpy.asarray(y_mean, "float64")
        self.y_scale = None if y_scale is None else numpy.asarray(y_scale, "float64")
        self.y_dtype = None if y_dtype is None or y_mean is None else numpy.dtype(y_dtype)
        self._device = {}

    @classmethod
    def from_moments(cls, x: Moments, y: Moments | None = None) -> "Standardizer":
        """The statistics of ``x`` (features) and ``y`` (targets, or None to leave them as they are). A DataError
        names a column whose mean or spread float64 cannot hold: values over about 1e154 apart square past its
        range, and such a column got scale 1 (its NaN spread failed ``> 0``), so training met values near 1e200
        and stopped with TrainingDiverged, advising to standardize."""
        def scale(m, what):
            s = m.std
            bad = ~(numpy.isfinite(m.mean) & numpy.isfinite(s))
            if bad.any():
                raise DataError(f"{what} column {int(numpy.flatnonzero(bad)[0])} cannot be standardized: its spread "
                                "overflows float64 (values over about 1e154 apart); rescale it first")
            return numpy.where(s > 0, s, 1.0)

        if y is None:
            return cls(x.mean, scale(x, "features"))
        return cls(x.mean, scale(x, "features"), y.mean, scale(y, "targets"), y.dtype)

    @classmethod
    def from_pieces(cls, pieces, n_features, n_outputs, targets=True) -> "Standardizer":
        """The statistics of (X, Y) pieces (any device) in one pass; ``targets=False``: of X only."""
        mx, my = moments_of(pieces, n_features, n_outputs)
        return cls.from_moments(mx, my if targets else None)

    @property
    def scales_targets(self) -> bool:
        return self.y_mean is not None

    def prediction_dtype(self, dtype):
        """The dtype a model of ``dtype`` returns predictions in: float64 when its targets were
        standardized in float64 for a float32 model (given as float64 or int64:
        ``standardizing_dtype``), so that un-standardizing runs in float64 too (in float32, a
        target near 1e9 comes back to a multiple of 64 whatever the model learned); else ``dtype``."""
        if self.y_dtype is None:
            return numpy.dtype(dtype)
        return standardizing_dtype(self.y_dtype, dtype)

    def _on(self, xp, dtype):
        key = (xp.__name__, numpy.dtype(dtype).str)
        cached = self._device.get(key)
        if cached is None:
            def cast(a):
                return None if a is None else xp.asarray(a, dtype)

            inv_x = cast(1.0 / self.x_scale)
            inv_y = None if self.y_scale is None else cast(1.0 / self.y_scale)
            cached = self._device[key] = (cast(self.x_mean), inv_x, cast(self.y_mean), inv_y, cast(self.y_scale))
        return cached

    def transform_(self, xp, X, Y=None):
        """Standardize X (and Y, when targets are scaled) in place; returns them."""
        self.transform_x_(xp, X)
        if Y is not None:
            self.transform_y_(xp, Y)
        return X, Y

    def transform_x_(self, xp, X):
        """Standardize X in place; returns it."""
        x_mean, inv_x, *_ = self._on(xp, X.dtype)
        X -= x_mean
        X *= inv_x
        return X

    def transform_y_(self, xp, Y):
        """Standardize Y in place when targets are scaled; returns it."""
        _, _, y_mean, inv_y, _ = self._on(xp, Y.dtype)
        if y_mean is not None:
            Y -= y_mean
            Y *= inv_y
        return Y

    def transform_x(self, xp, X):
        """A standardized copy of X."""
        x_mean, inv_x, *_ = self._on(xp, X.dtype)
        return (X - x_mean) * inv_x

    def inverse_y_(self, xp, P):
        """Predictions back in the targets' units, in place."""
        _, _, y_mean, _, y_scale = self._on(xp, P.dtype)
        if y_mean is not None:
            P *= y_scale
            P += y_mean
        return P

    # ---- checkpoints: a JSON-able dict and host arrays -----------------------------------
    def state(self) -> tuple[dict, dict]:
        arrays = {"x_mean": self.x_mean, "x_scale": self.x_scale}
        meta = {"targets": self.y_mean is not None}
        if self.y_mean is not None:
            arrays.update(y_mean=self.y_mean, y_scale=self.y_scale)
            if self.y_dtype is not None:
                meta["y_dtype"] = self.y_dtype.name
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict) -> "Standardizer":
        """From ``state()``; a checkpoint written before ``y_dtype`` was recorded predicts in the model's dtype."""
        if meta.get("targets"):
            return cls(arrays["x_mean"], arrays["x_scale"], arrays["y_mean"], arrays["y_scale"], meta.get("y_dtype"))
        return cls(arrays["x_mean"], arrays["x_scale"])
