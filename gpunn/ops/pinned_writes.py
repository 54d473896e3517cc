"""Host values written into a device array without a kernel or a host wait: a per-step learning rate before a CUDA
graph's replay (gpunn.training.graph) and an Ensemble's members' table (member_rates).

CuPy's ``a[1] = lr`` launches a fill kernel (16.1 us of host time per call on an H200) and ``a.set(host)`` from pageable
memory is a synchronous copy (8.1 us for 256 bytes); an asynchronous copy from pinned memory took 5.5-6.8 us there
(bench/RESULTS.md, session 50). Each write copies from a slot of a ring of pinned buffers on the current stream; a
slot is written again only after the host has waited for the event recorded after its last copy (SLOTS writes
earlier, long done in practice): CUDA may read pinned memory until the copy runs. For the same reason the ring goes
back to CuPy's pinned memory pool, which hands it to the next ``empty_pinned`` at once, only after the host has
waited for every slot's last copy (a finalizer, when the writes are dropped: a CUDA graph's trainer replaced, a
members' table let go).
"""
from __future__ import annotations

import weakref


class PinnedWrites:
    """Writes of host values into ``target`` (a contiguous CuPy array), each an asynchronous copy on the current
    stream from its own slot of pinned host memory."""

    SLOTS = 64

    def __init__(self, target):
        import cupy
        import cupyx

        self._cuda = cupy.cuda
        self.target = target
        self._ring = cupyx.empty_pinned((self.SLOTS, *target.shape), target.dtype)
        self._slots = [self._ring[k] for k in range(self.SLOTS)]
        self._events = [None] * self.SLOTS
        self._next = 0
        # (not at the interpreter's exit: the process's pinned memory goes with it, and CUDA may be gone first)
        weakref.finalize(self, _release, self._ring, self._events).atexit = False

    def write(self, values):
        """``target[...] = values`` on the current stream (values: anything NumPy assigns to the slot)."""
        k = self._next
        self._next = (k + 1) % self.SLOTS
        event = self._events[k]
        if event is None:
            event = self._events[k] = self._cuda.Event(disable_timing=True)
        else:
            event.synchronize()  # its last copy has read the slot
        slot = self._slots[k]
        slot[...] = values
        stream = self._cuda.get_current_stream()
        self.target.set(slot, stream=stream)
        event.record(stream)


def _release(ring, events):
    """The ring's last references, let go after every copy from it has run (see the module's docstring)."""
    for event in events:
        if event is not None:
            event.synchronize()
    del ring
