"""Stream ordering: which work on which CUDA stream the device is sure to have finished before other work.

fakecupy runs every operation at once, so a missing event wait never shows up as a wrong number
here. This module proves the order instead, with one logical clock per stream (a vector clock): an
operation on stream S gets the next tick of S; ``event.record(S)`` keeps what S has reached (and
what S had waited for); ``T.wait_event(event)`` and the legacy null stream's implicit waits carry it
over to T; a host synchronisation (``event.synchronize()``, ``stream.synchronize()``, ``.get()``,
``float()``...) tells the host, and so does a query (``event.done``, ``stream.done``) that answers True (of
work the host has not seen finish it answers False the first time, as a GPU may while that work runs, then
True); ``Device(i).synchronize()`` (cudaDeviceSynchronize on device i) tells it the work of device i's
streams, of streams already dropped too (CUDA finishes a destroyed stream's work), and of what they waited
for; the other devices' streams are not waited for. Every
device allocation remembers, per stream, the last tick that read and that wrote it, and an access on
stream S is a hazard when another stream's conflicting access (a write, or any access for a write)
is not known to come before it, on S or on the host. That is CUDA's rule; these are the ways gpunn
could break it:

- a missing event wait: the training stream reads a window that a side stream's copy or kernel
  is still writing;
- CuPy's memory pool (cupy/cuda/memory.pyx, SingleDeviceMemoryPool): a freed block goes back to the
  arena of the stream it was allocated on and is handed to the next allocation on that stream at
  once, with no wait for other streams that still use it. So the accesses of every freed block stay
  on as *ghosts* of its stream's arena, and a new allocation on that stream inherits them (all of
  them: this does not model block sizes): the operation that makes it writes it there (not ``empty``, whose
  first write comes later), and that write and its later accesses, on any stream, must be ordered after
  them; the hazard names the test that freed the block (``current_test``, which the tests' conftest
  sets), as it is found only when a block is allocated again, often in a later test. That catches a
  block freed while another stream still reads it, and a fresh buffer written on a side stream
  before the side stream waited for its allocating stream;
- CuPy's pinned pool (cupy/cuda/pinned_memory.pyx, PinnedMemoryPool.free): a freed pinned buffer
  is handed to the next ``empty_pinned`` at once. CuPy keeps its own staging buffers alive until
  their copy's event is done (``_add_to_watch_list``); a buffer of gpunn's must not be freed while
  a copy from (or to) it may be in flight: the host must have seen that copy finish.
- a copy from pinned memory is asynchronous: the host must not write the bytes it reads (the next
  window read into the same buffer) before it has seen that copy finish. The bytes are checksummed
  when the copy is issued and compared at the next copy or host wait (a hazard in ``hazards``).

An access of no bytes (an empty array, or an empty view of another) touches no memory: it is no hazard and
orders nothing after it, whatever makes it (a RawKernel launch with an empty array is still a launch, its tick
issued). A new array of no bytes is no block of the pool (cupy/cuda/memory.pyx, SingleDeviceMemoryPool._malloc:
``if size == 0: return MemoryPointer(Memory(0), 0)``): it takes over no ghosts and hands none back. Whether an
operation on empty operands is issued at all is the caller's to say: CuPy's kernels launch nothing when their
output is empty (fakecupy's ``_check_operands``), its copies of 0 bytes copy nothing.

A hazard found at an access raises StreamOrderError; one found when memory is freed (a finalizer,
where nothing can be raised) is appended to ``hazards``, which the tests' conftest checks after
each test. Before that check, after a test that used the stand-in (``ops`` moved), the conftest
collects the garbage (memory held by a reference cycle is freed now, not in a later test) and
calls :func:`settle` (the pinned bytes of copies in flight compared now, not at the next copy).

The legacy null stream is one object in CuPy (``cupy.cuda.Stream.null``, handle 0), but CUDA takes handle 0 as
the *current device's* own legacy stream: its order is kept per device (:func:`null_clock`; the stream object
hands over the current device's through ``_order``). Work on a device's null stream waits for the work before it
of that device's blocking streams, of those already dropped too (their work still runs, and the legacy stream
waits for it), and the other way round (gpunn's own streams are non-blocking: they wait only for events).
"""
from __future__ import annotations

import threading
import weakref
import zlib

import numpy

_LOCK = threading.RLock()
HOST: dict = {}  # stream key -> the last tick of that stream the host has seen finish
POOLS: dict = {}  # stream key -> {stream key: tick}: accesses to freed blocks of that stream's arena
FREED_IN: dict = {}  # stream key -> {stream key: the test that freed the block of POOLS' access}, for the message
current_test = None  # the test running (tests/conftest.py sets it): a ghost's hazard names the test that freed it
hazards: list = []  # hazards found where nothing could be raised (memory freed)
ops = 0  # operations and allocations so far (tests/conftest.py settles the checks after a test that made any)
_BLOCKS: dict = {}  # id(root array) -> _Block
_PINNED: dict = {}  # id(pinned host array) -> _Block
_STREAMS = weakref.WeakValueDictionary()  # stream key -> the live stream (or a device's null stream clock)
# stream key -> (its device, its vector clock: its ``_seen``, updated in place), kept past the stream: a device
# synchronize finishes the work of streams already dropped too (cudaStreamDestroy lets their work run)
_CLOCKS: dict = {}
# the blocking streams (cupy.cuda.Stream() without non_blocking): key -> (device, vector clock), a dropped one's
# kept until its device's null stream has waited for its work (the legacy stream waits for it too)
_BLOCKING: dict = {}
_NULLS: dict = {}  # device -> that device's legacy null stream (_NullClock)
_ASKED: dict = {}  # stream key -> its last tick when a query (Stream.done) answered that it had not finished
# copies from pinned host memory that the host has not seen finish: (stream key, tick, weakref to the pinned
# buffer, byte offset, byte count, checksum of those bytes when the copy was issued)
_IN_FLIGHT: list = []


class StreamOrderError(RuntimeError):
    """Work on one CUDA stream touches memory that another stream's unfinished work uses."""


class _Block:
    __slots__ = ("stream", "label", "reads", "writes", "ghosts", "freed_in", "__weakref__")

    def __init__(self, stream, label, ghosts, freed_in=None):
        self.stream, self.label = stream, label
        self.reads, self.writes, self.ghosts = {}, {}, ghosts
        self.freed_in = freed_in or {}  # stream key -> the test that freed the block whose access is that ghost


class _NullClock:
    """One device's legacy null stream, as ordering keeps it (its key: minus the device, 0 for device 0)."""

    _blocking = False

    def __init__(self, device):
        self._device, self._key = device, -device

    @property
    def _order(self):
        return self


def null_clock(device):
    """Device ``device``'s legacy null stream (``cupy.cuda.Stream.null`` while that device is current)."""
    with _LOCK:
        clock = _NULLS.get(device)
        if clock is None:
            clock = _NULLS[device] = _NullClock(device)
            register_stream(clock)
        return clock


def reset():
    with _LOCK:
        _IN_FLIGHT.clear()
        HOST.clear()
        _ASKED.clear()
        POOLS.clear()
        FREED_IN.clear()
        # the dropped streams' work is done; the live ones (the null streams) stay known
        live = list(_STREAMS.items())
        _CLOCKS.clear()
        _CLOCKS.update((key, (stream._device, stream._seen)) for key, stream in live)
        _BLOCKING.clear()
        _BLOCKING.update((key, (stream._device, stream._seen)) for key, stream in live if stream._blocking)
        hazards.clear()


def register_stream(stream):
    """A new stream (``stream._device``: the device it was made on) or a device's null stream clock."""
    with _LOCK:
        stream._tick, stream._seen = 0, {}
        _STREAMS[stream._key] = stream
        _CLOCKS[stream._key] = (stream._device, stream._seen)
        if stream._blocking:
            _BLOCKING[stream._key] = (stream._device, stream._seen)


def _name(stream_or_key):
    key = getattr(stream_or_key, "_key", stream_or_key)
    if key <= 0:
        return "the null stream" if key == 0 else f"the null stream of device {-key}"
    return f"stream {key:#x}"


def _merge(into, vc):
    for key, tick in vc.items():
        if into.get(key, 0) < tick:
            into[key] = tick


def issue(stream) -> int:
    """One operation on ``stream``: its tick (the legacy null stream and blocking streams wait for each other)."""
    global ops
    stream = stream._order
    with _LOCK:
        ops += 1
        if isinstance(stream, _NullClock):
            for key, (device, seen) in list(_BLOCKING.items()):
                if device == stream._device:
                    _merge(stream._seen, seen)
                    if key not in _STREAMS:
                        del _BLOCKING[key]  # dropped: all its work is now before this stream's
        elif stream._blocking:
            _merge(stream._seen, null_clock(stream._device)._seen)
        stream._tick += 1
        stream._seen[stream._key] = stream._tick
        return stream._tick


def recorded(stream) -> dict:
    """What an event recorded on ``stream`` now stands for."""
    with _LOCK:
        issue(stream)
        return dict(stream._order._seen)


def wait(stream, event_vc):
    with _LOCK:
        _merge(stream._order._seen, event_vc or {})


def synchronized(stream):
    """The host has waited for ``stream`` (the null stream: the current device's)."""
    host_saw(stream._order._seen)


def host_saw(vc):
    """The host has waited for ``vc`` (an event's, or a whole stream's): that work is finished."""
    with _LOCK:
        _check_in_flight()  # a pinned buffer written before the host knew its copy had read it
        _merge(HOST, vc or {})
        _IN_FLIGHT[:] = [c for c in _IN_FLIGHT if HOST.get(c[0], 0) < c[1]]
        for arena, pool in POOLS.items():
            for key in [k for k, t in pool.items() if HOST.get(k, 0) >= t]:
                del pool[key]
                FREED_IN.get(arena, {}).pop(key, None)


def finished(vc) -> bool:
    """Whether the host knows that the work ``vc`` stands for (an event's) has finished."""
    with _LOCK:
        return all(HOST.get(key, 0) >= tick for key, tick in (vc or {}).items())


def stream_done(stream) -> bool:
    """cudaStreamQuery of ``stream`` (the null stream: the current device's): True when the host knows all its work
    (and what it waited for) has finished; else False the first time it is asked at its last operation, as a GPU
    answers while that work runs, and True the next time (it has run by then: the host knows it now)."""
    stream = stream._order
    with _LOCK:
        if finished(stream._seen):
            return True
        if _ASKED.get(stream._key) == stream._tick:
            host_saw(stream._seen)
            return True
        _ASKED[stream._key] = stream._tick
        return False


def device_synchronized(device):
    """cudaDeviceSynchronize on ``device``: the work of its streams, alive or dropped, its null stream's, and what
    they waited for (on any device) is finished; the other devices' own work is not."""
    with _LOCK:
        mine = [key for key, (on, _) in _CLOCKS.items() if on == device]
        seen: dict = {}
        for key in mine:
            _merge(seen, _CLOCKS[key][1])
        host_saw(seen)
        for key in mine:
            if key not in _STREAMS:
                del _CLOCKS[key]  # dropped and now all seen: it has no more work
                _BLOCKING.pop(key, None)


def _root(a):
    while isinstance(a.base, numpy.ndarray):
        a = a.base
    return a


def _ordered(stream, key, tick) -> bool:
    return key == stream._key or stream._seen.get(key, 0) >= tick or HOST.get(key, 0) >= tick


def allocated(root, stream, label="device memory", written_by=None):
    """A new device allocation on ``stream`` (CuPy's pool: it may be a block freed on that stream). ``written_by``:
    the operation on ``stream`` that allocated it for its output and writes it (its last op there), checked as
    a write now, so that a block another stream may still use fails at the op that takes it over, not only at a
    later access on a stream not ordered after that use; None for memory nothing writes yet (``empty``)."""
    global ops
    stream = stream._order
    with _LOCK:
        ops += 1
        if id(root) in _BLOCKS or not root.nbytes:  # no bytes: no block of the pool (the module's docstring)
            return
        ghosts = {k: t for k, t in POOLS.get(stream._key, {}).items() if HOST.get(k, 0) < t}
        freed_in = {k: test for k, test in FREED_IN.get(stream._key, {}).items() if k in ghosts}
        # the allocation point: work on another stream is ordered after it only by an event recorded since
        # (before it, the pool may hand over a block earlier work on this stream still uses, and an operation
        # that made the array is still writing it)
        if stream._tick > ghosts.get(stream._key, 0):
            ghosts[stream._key] = stream._tick
            freed_in.pop(stream._key, None)
        block = _Block(stream._key, label, ghosts, freed_in)
        _BLOCKS[id(root)] = block
        weakref.finalize(root, _freed, id(root), block)
        if written_by is not None:
            _touch(stream, stream._tick, root, True, written_by)


def _freed(ident, block):
    with _LOCK:
        if _BLOCKS.get(ident) is block:
            del _BLOCKS[ident]
        pool = POOLS.setdefault(block.stream, {})
        freed_in = FREED_IN.setdefault(block.stream, {})
        for accesses in (block.reads, block.writes, block.ghosts):
            for key, tick in accesses.items():
                if HOST.get(key, 0) < tick and pool.get(key, 0) < tick:
                    pool[key] = tick
                    # a ghost passed on keeps the test that freed the block it came from
                    test = block.freed_in.get(key, current_test) if accesses is block.ghosts else current_test
                    if test is None:
                        freed_in.pop(key, None)
                    else:
                        freed_in[key] = test


def pinned(root):
    """A pinned host buffer (cupyx.empty_pinned): freed, it goes back to CuPy's pinned pool at once."""
    global ops
    with _LOCK:
        ops += 1
        block = _Block(None, "pinned host memory", {})
        _PINNED[id(root)] = block
        weakref.finalize(root, _pinned_freed, id(root), block, root.nbytes)


def _pinned_freed(ident, block, nbytes):
    with _LOCK:
        if _PINNED.get(ident) is block:
            del _PINNED[ident]
        for accesses in (block.reads, block.writes):
            for key, tick in accesses.items():
                if HOST.get(key, 0) < tick:
                    hazards.append(
                        f"a pinned host buffer of {nbytes} bytes was freed while a copy {'from' if accesses is block.reads else 'to'} "
                        f"it on {_name(key)} may still be in flight (the host never waited for that copy's event): "
                        "CuPy's pinned memory pool hands the buffer to the next empty_pinned at once")
                    return


def access(stream, what, reads=(), writes=()):
    """One operation on ``stream`` that reads and writes these device arrays (others, and empty ones, which it
    touches no byte of, are ignored; the operation is issued all the same); raises StreamOrderError when it is not
    ordered after another stream's conflicting access."""
    stream = stream._order
    with _LOCK:
        tick = issue(stream)
        for a, write in [(a, False) for a in reads] + [(a, True) for a in writes]:
            _touch(stream, tick, a, write, what)


def host_access(stream, host_array, write, kept=False):
    """A copy on ``stream`` between the device and ``host_array``: tracked when it is pinned memory. A copy
    from it is in flight until the host has waited for it: the host must not write those bytes meanwhile
    (the copy could read the new values), which ``_check_in_flight`` finds at the next copy or wait. The copy is
    the operation just issued on ``stream``. ``kept``: CuPy keeps the buffer until the copy is done (cupy.asarray's
    watch list), so freeing it meanwhile is no hazard; writing it still is."""
    if not isinstance(host_array, numpy.ndarray) or not host_array.nbytes:  # CuPy copies no bytes (memory.pyx)
        return
    stream = stream._order
    with _LOCK:
        tick = stream._tick
        root = _root(host_array)
        block = _PINNED.get(id(root))
        if block is not None:
            if not kept:
                (block.writes if write else block.reads)[stream._key] = tick
            _check_in_flight()
            if not write and host_array.flags.c_contiguous and host_array.nbytes:
                offset = host_array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
                _IN_FLIGHT.append((stream._key, tick, weakref.ref(root), offset, host_array.nbytes,
                                   _checksum(root, offset, host_array.nbytes)))


def _checksum(root, offset, nbytes):
    return zlib.crc32(root.reshape(-1).view(numpy.uint8)[offset:offset + nbytes])


def settle():
    """The checks that wait for a later copy or host wait, made now: pinned bytes written while a copy from them
    may still be in flight (``hazards``). What stays in flight is checked again later."""
    with _LOCK:
        _check_in_flight()


def _check_in_flight():
    """Hazards for pinned bytes that changed while a copy from them may still be in flight."""
    still = []
    for key, tick, ref, offset, nbytes, crc in _IN_FLIGHT:
        root = ref()
        if root is None:  # freed: _pinned_freed says whether that was too early
            continue
        if HOST.get(key, 0) >= tick:
            continue
        if _checksum(root, offset, nbytes) != crc:
            hazards.append(f"pinned host memory ({nbytes} bytes) was written while a copy from it on {_name(key)} may "
                           "still be in flight (the host had not waited for that copy's event): the copy may read "
                           "the new values")
            continue
        still.append((key, tick, ref, offset, nbytes, crc))
    _IN_FLIGHT[:] = still


def _touch(stream, tick, a, write, what):
    if not isinstance(a, numpy.ndarray) or not a.nbytes:  # no bytes touched: nothing to order (the docstring)
        return
    root = _root(a)
    block = _BLOCKS.get(id(root))
    if block is None:
        return
    conflicts = [block.ghosts, block.writes] + ([block.reads] if write else [])
    for accesses in conflicts:
        for key, last in accesses.items():
            if not _ordered(stream, key, last):
                verb = "writes" if write else "reads"
                if accesses is block.ghosts:
                    message = (f"{what} on {_name(stream)} {verb} {block.label} allocated on {_name(block.stream)}, "
                               f"not ordered after {_name(key)}'s work up to its op {last}: CuPy's memory pool hands "
                               f"a block freed on {_name(block.stream)} to the next allocation there at once, and "
                               f"that work (on the block's previous array, or making this one) may not have run")
                    if key in block.freed_in:
                        message += f" (that block freed in {block.freed_in[key]})"
                else:
                    kind = "wrote" if accesses is block.writes else "read"
                    message = (f"{what} on {_name(stream)} {verb} {block.label} (allocated on {_name(block.stream)}) "
                               f"that {_name(key)} {kind} in its op {last}, which nothing orders before this")
                message += f" (no event of {_name(key)} waited for on {_name(stream)}, no host synchronisation)"
                hazards.append(message)
                raise StreamOrderError(message)
    (block.writes if write else block.reads)[stream._key] = tick
