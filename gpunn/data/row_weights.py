"""Per-row weights of a file source: a 1-D .npy beside an .npy pair (``weights=``), a table's column (``weight=``).

gpunn.sample_weights' design, read a chunk at a time: each set of rows (the training chunks, the chunks
``validation_fraction`` holds out, every chunk of a validation source) has its weights scaled to mean 1 over
itself, w' = (w / peak) x m / sum(w / peak), and training's windows carry them as one more column of Y, so the
window permutation, every batch and a resume take them with their rows. The scale needs each set's sum before its
first window: one pass over the weight column alone, at the source's construction (``ChunkWeights.scan``: an
.npy file's 8 bytes a row, a Parquet column's pages; a CSV file's blocks parsed again, converting that column
alone, unless its index pass read them or its saved index holds them: ``ChunkWeights.of``), keeping per chunk the largest weight, the smallest and sum(w / largest), from which any set of chunks'
scale follows. Weights equal over a set weigh nothing there: the run is the unweighted one, bit for bit.
"""
from __future__ import annotations

import numpy

from .errors import DataError


class ChunkWeights:
    """Per chunk of a source, in chunk order: the largest weight (``peaks``), the smallest (``lows``) and the sum of
    the weights divided by the largest (``unit_sums``, in [1, rows]; 0 for a chunk of zeros). ``name`` names the
    weights in messages ("w.npy", "t.csv's column 'w'")."""

    def __init__(self, name, peaks, lows, unit_sums):
        self.name, self.peaks, self.lows, self.unit_sums = name, peaks, lows, unit_sums

    @classmethod
    def scan(cls, source, name) -> "ChunkWeights":
        """One pass over ``source``'s weights (``source._chunk_weights()``: each chunk's raw float64 weights, in
        chunk order), each checked as gpunn.sample_weights.checked_weights checks arrays, refused naming the chunk
        (``source._weights_where(k)``: the file and its rows) and the first bad row (``source._at_row``), counted
        over every chunk: the pass goes on to the end, as it does for good weights (a refusal costs no more), so
        that the count is the source's, not the first bad chunk's."""
        n = len(source.chunk_sizes)
        peaks, lows, unit_sums = numpy.zeros(n), numpy.zeros(n), numpy.zeros(n)
        bad = None
        for k, w in enumerate(source._chunk_weights()):
            if bad is not None:
                bad.count(w)
            elif (row := summary(w)) is not None:
                peaks[k], lows[k], unit_sums[k] = row
            else:
                bad = BadWeights.first(source, k, w)
        if bad is not None:
            raise bad.refusal(int(numpy.sum(source.chunk_sizes)))
        return cls.of(name, peaks, lows, unit_sums)

    @classmethod
    def of(cls, name, peaks, lows, unit_sums) -> "ChunkWeights":
        """From each chunk's ``summary`` (arrays, in chunk order; a CSV source's index pass gives them, having read
        the weights), refused where every weight is 0."""
        if not peaks.any():
            raise DataError(f"{name}: every weight is 0: no row counts in the loss")
        return cls(name, peaks, lows, unit_sums)

    def scale(self, chunks, sizes, what):
        """(peak, factor) with which the weights of ``chunks`` (indices) are w / peak x factor, mean 1 over their
        rows (``sizes``: every chunk's rows); None where they are all equal (they weigh nothing) or there are none.
        Refused where they are all 0 (``what`` names the rows: "the training rows")."""
        chunks = numpy.asarray(chunks, numpy.int64)
        if not len(chunks):
            return None
        peaks = self.peaks[chunks]
        peak = peaks.max()
        if not peak > 0:
            raise DataError(f"{self.name}: the weights of {what} are 0 for every row: no row of them counts")
        if self.lows[chunks].min() == peak:
            return None
        return float(peak), float(sizes[chunks].sum() / (self.unit_sums[chunks] * (peaks / peak)).sum())


def summary(w):
    """(largest, smallest, sum(w / largest); 0 where the largest is 0) of a chunk's weights ``w``, ChunkWeights' per
    chunk; None where one is NaN, infinite or negative (the min is NaN where one is: BadWeights refuses them)."""
    peak, low = w.max(), w.min()
    if not (low >= 0 and numpy.isfinite(peak)):
        return None
    return peak, low, (w / peak).sum() if peak > 0 else 0.0


def cut_into(pieces, sizes):
    """The values of ``pieces`` (1-D arrays, end to end) cut into arrays of ``sizes`` values each, in order."""
    pieces, held = iter(pieces), []
    for size in sizes.tolist():
        have = sum(len(p) for p in held)
        while have < size:
            piece = next(pieces, None)
            if piece is None:
                raise DataError(f"the weights ended {size - have} short of a chunk's rows (was the file changed?)")
            held.append(piece)
            have += len(piece)
        joined = held[0] if len(held) == 1 else numpy.concatenate(held)
        yield joined[:size]
        held = [joined[size:]] if have > size else []


class BadWeights:
    """A refusal of weights, one NaN, infinite or negative: the first bad chunk's (the first bad one named, a table's
    missing one in its features' words, ``source._weight_shown``; an .npy file holds none missing), counted over
    every chunk ``count`` is given after it."""

    KINDS = (("{missing}NaN or infinite", lambda w: ~numpy.isfinite(w), "a finite number"),
             ("negative", lambda w: w < 0, "0 or more (a negative one rewards a larger error, and the loss has no "
                                           "minimum)"))

    def __init__(self, source, k, w, kind):
        what, self.test, self.must = kind
        self.what = what.format(missing="missing, " if source.holds_missing else "")
        bad = self.test(w)
        first = int(numpy.flatnonzero(bad)[0])
        self.where = source._weights_where(k)
        self.at = f"{source._at_row(k, first)}{source._weight_shown(k, first, w[first])}"
        self.bad = int(bad.sum())

    @classmethod
    def first(cls, source, k, w):
        """Chunk ``k``'s refusal where its weights ``w`` hold a bad one (NaN or infinite first), else None."""
        kind = next((kind for kind in cls.KINDS if kind[1](w).any()), None)
        return None if kind is None else cls(source, k, w, kind)

    def count(self, w):
        """Add a later chunk's bad weights of the same kind."""
        self.bad += int(self.test(w).sum())

    def refusal(self, rows) -> DataError:
        return DataError(f"{self.where}: {self.bad:,} {self.what} weight(s) among all {rows:,} rows, the first at "
                         f"{self.at}: a weight must be {self.must}")


def scaled(w, scale):
    """Raw weights ``w`` (float64) of a set scaled by its ``scale`` (ChunkWeights.scale's): mean 1 over the set, as
    gpunn.sample_weights.mean_one computes them (divided by the largest first)."""
    peak, factor = scale
    return (w / peak) * factor


class WeightedMoments:
    """The targets' weighted sum of squares about their weighted mean, per column, merged window by window (Chan's
    pairwise update): R²'s denominator with weights, scikit-learn's r2_score(sample_weight=...). ``m2`` once read;
    ``count``, the rows seen (as Moments' count: a data-parallel validation merges the ranks' with ``merge``)."""

    def __init__(self, n_columns: int):
        self.weight, self.mean, self.m2 = 0.0, numpy.zeros(n_columns), numpy.zeros(n_columns)
        self.count = 0

    def update(self, Y, w) -> "WeightedMoments":
        """Merge device rows ``Y`` weighed by ``w`` (one a row); two small reads back."""
        from ..backend import backend_of

        backend = backend_of(Y)
        xp, host = backend.xp, backend.to_host
        w64 = w.astype("float64")
        total = float(host(w64.sum()))
        if total <= 0:
            self.count += int(Y.shape[0])
            return self
        mean = (Y * w64[:, None]).sum(axis=0) / total  # (float64: w64 promotes)
        m2 = host((w64[:, None] * xp.square(Y - mean)).sum(axis=0))
        return self._merge(total, host(mean), m2, int(Y.shape[0]))

    def merge(self, other: "WeightedMoments") -> "WeightedMoments":
        """Merge another's (a rank's rows)."""
        if other.weight <= 0:
            self.count += other.count
            return self
        return self._merge(other.weight, other.mean, other.m2, other.count)

    def _merge(self, total, mean, m2, rows):
        weight = self.weight + total
        delta = mean - self.mean
        self.m2 = self.m2 + m2 + delta * delta * (self.weight * total / weight)
        self.mean = self.mean + delta * (total / weight)
        self.weight, self.count = weight, self.count + rows
        return self
