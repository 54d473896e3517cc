"""Values standardized on the device past the model's dtype, refused without a host read of their own.

A source whose values are stored in the model's dtype standardizes each window on the training device, in
that dtype: (x - mean) / spread can leave float32's range (a stored 3e38 where the column's spread is under 1,
a later file's value under a model's statistics), and the window then holds inf. The rows were checked finite
as read, so nothing else would say so: training went on to a NaN loss, refused as "lower the learning rate, or
standardize" (it was standardized), and held-out rows made the validation metrics NaN without a word.

Checking a window on a GPU needs a host read, and the loop reads the device once per epoch (its loss). So each
window's check stays on the device (:meth:`OverflowWatch.see`: the max and min of each array, 0-d flags), and
whoever reads the epoch's sums reads the flags with them (:meth:`OverflowWatch.take`: 0.0, or NaN where a window
held a value that is not finite): the training loop adds it to its loss, validation stacks it with its error
sums. Only where that read comes back not finite is the watch asked which window it was
(:meth:`OverflowWatch.refuse`, one more read, on that error's path), and the source reads that window's rows
again to name the value, its row and its column. On the CPU the check is read at once (it costs no
synchronisation there): the run stops at the window.
"""
from __future__ import annotations

import numpy

from .errors import DataError


class OverflowWatch:
    """The windows a source standardized on the device since the last :meth:`take`, each with a device flag.

    ``see(xp, arrays, refuse)`` per window after standardizing; the reader of the epoch's device sums adds
    ``take(xp)`` to one of them before its host read and calls ``refuse(backend)`` where that read is not finite.
    ``refuse`` (a callable, per window) raises the source's error naming the first value of the window that is
    not finite, read again."""

    def __init__(self):
        self._seen = []  # (device 0-d bool: every value of the window finite, the window's refuse())
        self._taken = None  # (the flags stacked, their windows' refuse()) of the last take

    def see(self, xp, arrays, refuse):
        """Record the standardized ``arrays`` of one window (device arrays of ``xp``). On the host the flag is
        read at once, and ``refuse()`` raises for a value that is not finite there and then."""
        finite = True
        for A in (A for A in arrays if A.size):
            # NaN propagates through max and min, and neither makes a temporary of A's size (isfinite(A).all()
            # made one per window: its page faults cost a CPU several times the reduction)
            finite = finite & xp.isfinite(A.max()) & xp.isfinite(A.min())
        if xp is numpy:
            if not finite:
                _refused(refuse)
            return
        if finite is not True:
            self._seen.append((finite, refuse))

    def take(self, xp):
        """A device 0-d float64 to add to a value the caller reads from the device anyway: 0.0 (the sum is
        unchanged, to the bit), or NaN where a window seen since the last call held a value that is not finite;
        None where no window was seen (nothing standardized on the device)."""
        seen, self._seen = self._seen, []
        if not seen:
            self._taken = None
            return None
        flags = xp.stack([flag for flag, _ in seen])
        self._taken = (flags, [refuse for _, refuse in seen])  # refuse() reads these flags, stacked once
        return xp.where(flags.all(), 0.0, numpy.nan)

    def to_host_with(self, backend, array):
        """``array`` on the host, the flag of :meth:`take` read in the same transfer (one host read, not two),
        and refused (:meth:`refuse`) where it says a window held a value that is not finite."""
        xp = backend.xp
        flag = self.take(xp)
        if flag is None:
            return backend.to_host(array)
        packed = backend.to_host(xp.concatenate([array.reshape(-1), flag.reshape(1).astype(array.dtype)]))
        if not numpy.isfinite(packed[-1]):
            self.refuse(backend)
        return packed[:-1].reshape(array.shape)

    def refuse(self, backend):
        """Raise the refusal of the first window of the last :meth:`take` that held a value that is not finite;
        nothing where none did (the sum read was not finite for another reason: a diverged run). One host read:
        call it only where the value the flag was added to came back not finite."""
        taken, self._taken = self._taken, None
        if taken is None:
            return
        flags, refusals = taken
        for ok, refuse in zip(backend.to_host(flags), refusals):
            if not ok:
                _refused(refuse)


def _refused(refuse):
    """``refuse()``, which raises the source's words for the value; a DataError if it finds none (the rows read
    again are finite: the file changed since)."""
    refuse()
    raise DataError("a window of rows held a value that is not finite once standardized, and read again it holds "
                    "none (the data changed since it was read); clean or impute the data first")
