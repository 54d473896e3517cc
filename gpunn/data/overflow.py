"""Values standardized on the device past the model's dtype, refused without a host read of their own.

A source whose values are stored in the model's dtype standardizes each window on the training device, in
that dtype: (x - mean) / spread can leave float32's range (a stored 3e38 where the column's spread is under 1,
a later file's value under a model's statistics), and the window then holds inf. The rows were checked finite
as read, so nothing else would say so: training went on to a NaN loss, refused as "lower the learning rate, or
standardize" (it was standardized), and held-out rows made the validation metrics NaN without a word.

Checking a window on a GPU needs a host read, and the loop reads the device once per epoch (its loss). So each
window's check stays on the device (:meth:`OverflowWatch.see`: the max and min of each array, folded as the
windows come into one 0-d key, that of the first window not finite), and whoever reads the epoch's sums reads it
with them (:meth:`OverflowWatch.take`: 0.0, or NaN where a window held a value that is not finite): the training
loop adds it to its loss, validation stacks it with its error sums. Only where that read comes back not finite is the watch asked which window it was
(:meth:`OverflowWatch.refuse`, one more read, on that error's path), and the source reads that window's rows
again to name the value, its row and its column. On the CPU the check is read at once (it costs no
synchronisation there): the run stops at the window.
"""
from __future__ import annotations

import numpy

from .errors import DataError


_FINITE = 2 ** 62  # the folded key of windows that all held finite values
_PASS = 2 ** 32  # a key is pass * _PASS + window: a pass numbers fewer windows than this


class OverflowWatch:
    """The windows a source standardized on the device since the last :meth:`take`, folded into one device flag.

    ``see(xp, arrays, refuse_at, w)`` per window ``w`` of a pass (an epoch's batches, a validation pass) after
    standardizing; the reader of the epoch's device sums adds ``take(xp)`` to one of them before its host read and
    calls ``refuse(backend)`` where that read is not finite. ``refuse_at(w)`` (one callable per pass) raises the
    source's error naming the first value of window ``w`` that is not finite, read again.

    What it holds until a take does not grow with the windows (``batches()`` iterated by hand, with no reader
    taking, read epoch after epoch): one 0-d device integer, the key (pass, window) of the earliest window that
    held a value that is not finite, each window's folded in as it is seen (two tiny device operations, no host
    read), and each pass's ``refuse_at``."""

    def __init__(self):
        self._passes = {}  # refuse_at -> its pass number, in the order the passes were first seen since the take
        self._first = None  # device 0-d int64: the smallest key (pass * _PASS + window) of a window not finite,
        #                     or _FINITE; None where no window was seen
        self._taken = None  # (the key, the passes' refuse_at) of the last take

    def see(self, xp, arrays, refuse_at, w):
        """Record the standardized ``arrays`` of window ``w`` of a pass (device arrays of ``xp``). On the host the
        flag is read at once, and ``refuse_at(w)`` raises for a value that is not finite there and then."""
        finite = True
        for A in (A for A in arrays if A.size):
            # NaN propagates through max and min, and neither makes a temporary of A's size (isfinite(A).all()
            # made one per window: its page faults cost a CPU several times the reduction)
            finite = finite & xp.isfinite(A.max()) & xp.isfinite(A.min())
        if xp is numpy:
            if not finite:
                _refused(refuse_at, w)
            return
        if finite is True:
            return
        key = xp.where(finite, _FINITE, self._passes.setdefault(refuse_at, len(self._passes)) * _PASS + int(w))
        self._first = key if self._first is None else xp.minimum(self._first, key)

    def take(self, xp):
        """A device 0-d float64 to add to a value the caller reads from the device anyway: 0.0 (the sum is
        unchanged, to the bit), or NaN where a window seen since the last call held a value that is not finite;
        None where no window was seen (nothing standardized on the device)."""
        first, passes = self._first, list(self._passes)
        self._first, self._passes = None, {}
        self._taken = None if first is None else (first, passes)  # refuse() reads the key
        return None if first is None else xp.where(first == _FINITE, 0.0, numpy.nan)

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
        first, passes = taken
        key = int(backend.to_host(first))
        if key != _FINITE:
            pass_, w = divmod(key, _PASS)
            _refused(passes[pass_], w)


def _refused(refuse_at, w):
    """``refuse_at(w)``, which raises the source's words for the value; a DataError if it finds none (the rows read
    again are finite: the file changed since)."""
    refuse_at(w)
    raise DataError("a window of rows held a value that is not finite once standardized, and read again it holds "
                    "none (the data changed since it was read); clean or impute the data first")
