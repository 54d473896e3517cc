"""A NumPy-backed stand-in for the part of CuPy that gpunn uses: tests only, no GPU.

``fakecupy.install(monkeypatch)`` (or the ``fake_cupy`` fixture of tests/test_fakecupy.py) puts it in
``sys.modules["cupy"]``, so ``device="cuda"`` resolves to it and the whole CuPy code path of gpunn runs
on the CPU: ``CupyOps``, the kernel loader, training, datasets, checkpoints and predict. It is strict
where CuPy is strict, so a bug that would fail on a GPU fails here (and, where said below, stricter):

- device arrays are ``fakecupy.ndarray`` (a NumPy subclass that knows its device); mixing a host
  ``numpy.ndarray`` into a CuPy function or ufunc raises ``TypeError``, as CuPy does;
- every array an operation touches must live on the current device (``cupy.cuda.Device(i)``), else
  ``ValueError``, as CuPy 14 raises for a kernel between devices without peer access (cupy/_core/_kernel.pyx
  ``_check_peer_access``; where the devices allow peer access, it enables it and runs the kernel with a
  PerformanceWarning: modelled are devices without it, which gpunn must run on): this is what makes ``cuda:1``
  testable. A copy of an array of another device is allowed, as in CuPy 14 (cupy/_core/core.pyx ``ndarray.copy``:
  "Even when a given array is located in another device, you can copy it to the current device"), which
  ``cupy.asarray``/``array``/``copy``, ``flatten`` and a copying ``reshape``/``ravel`` take
  (``_copy_from_another_device``): a copy kernel on its own device first when it is not contiguous in the copy's
  order, then a cudaMemcpyAsync on the current device's stream that CUDA orders after nothing on the other device,
  so a hazard unless that work was waited for (always, after CuPy's own kernel); in order 'K' (``asarray``'s and
  ``array``'s default) one contiguous in neither order is CuPy's NotImplementedError.
  A stream belongs to the device current when it was made, and a kernel launched on it, or an event
  recorded on it, while another device is current fails (CUDA: cudaErrorInvalidResourceHandle); the
  current stream is kept per thread and per device, as CuPy keeps it;
- every ``RawModule``/``RawKernel`` launch is checked against the kernel's signature parsed from the
  CUDA source it was built from (pointer vs scalar, the exact NumPy scalar type of each scalar, array
  dtype, contiguity and size, null pointers, grid and block shape) and then computed by a registered
  NumPy reference (see ``fakecupy.kernels``, which also says how to add a kernel);
- ``cupy_backends.cuda.libs.cublas.gemmEx`` and ``gemmStridedBatchedEx`` (gpunn's tf32/bf16 products: one
  model's, and an Ensemble's batched ones) resolve their raw device addresses to live allocations, check
  the handle (the current device's), the operand and compute types and the algorithm against cuBLAS's own
  values (not gpunn's constants or its ``compute_type``, which they check) and compute the column-major product (TF32 rounds the float32 operands to
  10 mantissa bits; a plain float32/float64 product is NumPy's matmul of the same row-major views, so it
  equals what ``cupy.matmul`` computes here); what cuBLAS answers with an error status raises CuPy's
  ``CUBLASError`` (the ctypes library returns the status), and ``state.cublas_refuses`` makes it refuse every
  product of a compute type;
- CUDA graphs: ``Stream.begin_capture`` / ``end_capture`` / ``Graph.launch``. While a stream captures, the
  RawKernel launches (checked as above when captured), memsets/copies and cuBLAS GemmEx calls issued on it
  are recorded, not run, with their device addresses and scalar values (as CUDA records them);
  ``graph.launch()`` runs them in order, checking every launch again on the memory at those addresses
  (freed memory fails). Anything else on a capturing stream -- a CuPy expression, an allocation, a
  read-back, CuPy's own cuBLAS, an event recorded or waited for -- invalidates the capture and raises,
  which is stricter than CuPy (it would capture a plain CuPy kernel, and an event of a fork inside the
  capture; a wait for an event recorded outside it CUDA refuses too) but is what gpunn's captured step
  promises. Across threads, as CUDA rules them: a new device array (CuPy's pool may cudaMalloc it) is
  refused on a thread while it has a capture not begun in relaxed mode or another thread one begun in
  global mode (CuPy's default, and gpunn's, is relaxed), a device synchronize while any stream captures (which
  also invalidates every capture open on the device, as does cublasDestroy, which synchronizes the device: of a
  gpunn CapturableBlas, or of the cuBLAS handle CuPy keeps per thread, destroyed as its thread exits),
  and a capture not begun in relaxed mode ends on its own thread only. A cuRAND draw on a capturing stream is
  CuPy's NotImplementedError (its check, before any CUDA call: the capture goes on); one while another thread
  holds a capture open on the device fails with CURAND_STATUS_LAUNCH_FAILURE, as seen on an H200. cuBLAS for capture
  (``gpunn.ops.cublas.CapturableBlas``, ctypes on libcublas) gets ``cublas_library()``: the six cuBLAS
  functions it uses, checking ctypes ``argtypes`` and values; cublasSetStream resets the handle's
  workspace (as cuBLAS does), and a product captured without a workspace of its own is a hazard;
- stream order (``fakecupy.ordering``): everything runs at once here, so a missing event wait would
  never show as a wrong number; instead each stream keeps a logical clock, events and waits carry
  it, and an access to device memory that another stream's unfinished work may still use raises
  StreamOrderError -- including a block CuPy's memory pool may hand over from a stream that still
  uses it, and a pinned host buffer freed while a copy from it may be in flight (the tests'
  conftest fails the test); ``cupy.cuda.Stream.null`` is one object, but its work goes to the current
  device's own legacy stream (CUDA resolves handle 0 at each call; ``get``/``set`` make the array's device
  current, as CuPy does), and ``Device(i).synchronize()`` waits for device i's streams only; an array index is
  CuPy's gather or scatter kernel, after a copy to the device of a host index or value (``cupy.array``: from pinned
  memory, asynchronously, so the host must not write that buffer before it waits) and, for a boolean index, a host
  wait for the current stream (CuPy counts its True values with ``int()``);
- ``empty`` / ``empty_like`` arrays hold all bytes 0xFF (NaN, -1), not NumPy's often-zero fresh pages: on a
  GPU they hold whatever the pool block last held, so code that reads an element it never wrote fails here.

- where NumPy (which these arrays are) is more lenient than CuPy 14, it refuses as CuPy does (each from
  CuPy v14.2.0's source; tests/test_fakecupy.py::test_the_stand_in_refuses_what_cupy_refuses lists them):
  ``numpy.asarray``/``array``/``ascontiguousarray`` of a device array (or a list holding one) raise
  TypeError, as CuPy's ``ndarray.__array__`` does, when gpunn, a test or ``numpy.testing`` calls them
  (``refuse_host_conversions``; NumPy's C code does not ask, so ``host[...] = device`` and ``host[device_index]``
  are refused in gpunn's own code by tests/fakecupy_setitem.py, which compiles gpunn's modules with each subscript
  checked), and
  ``a.__array__()`` itself; keywords CuPy lacks are TypeErrors: a ufunc's other than out, dtype and casting
  (NumPy's where=, order=), where= (but copyto's), initial=, like= and device= to any function, and where= or initial=
  to a reduction (``a.max(initial=0)``); a ufunc method CuPy has not implemented for the ufunc
  (``numpy.maximum.reduce(a)``: reduce and accumulate are add's and multiply's only, reduceat add's); the buffer protocol (``memoryview``, ``file.write(a)``, hashlib) is refused as CuPy's
  ``__getbuffer__`` refuses memory the host cannot reach (Python 3.12 and later: ``__buffer__``); a pickle is CuPy's
  ``cupy.array`` of a ``get()`` copy (a synchronous read), unpickled onto the device current then; DLPack exports
  the device memory itself (``fakecupy.dlpack``: NumPy's ``from_dlpack`` refuses it in its own words, unless asked
  for a host copy, a ``get()``), ordering the consumer's stream after the current one, and ``cupy.from_dlpack``
  takes it back (CuPy's argument checks, the host refused); ``a[i]``
  is a 0-d device array, not a NumPy scalar (unhashable, no ``__index__``); ``bool()`` and ``format()``
  are synchronising reads; ``set``/``get(out=)`` take exactly the array's dtype and shape; only names
  CuPy 14 has (``fakecupy.names``, also for ``numpy.f(device_array)``); Cython-typed arguments (tuple
  grid and block, tuple options, str code, gemmEx's integers); a stream made on another device cannot be
  entered; no elapsed time between events made with ``disable_timing``; ``RandomState.permutation`` of
  a NumPy integer is a TypeError (CuPy permutes only a Python int as a range); ``matmul`` of a dimension
  over 2**31 - 1 raises OverflowError (CuPy's casts to C int wrap it: ``check_matmul_ints``);
- its public names, parameters, argument positions and defaults are CuPy 14's (no ``Event.query``: CuPy's
  ``Event.done`` is a property; ``RawModule`` takes keywords only; cuRAND draws float32 and float64 only; no
  ``ndarray.__imatmul__``, so ``a @= b`` rebinds ``a``): tests/test_cupy_api.py checks them against the real
  CuPy where it is installed (no GPU needed), and the stand-in's own state has underscore names.

It is no substitute for a GPU run: nothing here compiles or runs CUDA code (tests/test_kernel_compile.py
compiles it, tests/test_kernel_math_host.py runs its per-element math on the host,
tests/test_kernel_bodies_host.py runs the kernels' bodies on the host, and ``bench/gpu_check.sh`` runs
everything on a real device). What it proves is that the Python side
drives the kernels and CuPy correctly.
"""
from __future__ import annotations

import builtins
import collections
import contextlib
import ctypes
import itertools
import sys
import threading
import time
import types
import warnings
import weakref

import numpy

from . import dlpack as _dlpack
from . import kernels as _kernels
from . import names as _names
from . import ordering as _ordering
from .ordering import StreamOrderError  # noqa: F401  (fakecupy.StreamOrderError)

__version__ = "14.0.0-fake"

# ---- devices -------------------------------------------------------------------------------


class _State:
    """Shared counters and switches; the current device and stream are per thread, as in CUDA."""

    device_count = 2  # two devices, so that cuda:1 paths are exercised
    sm_count = 4
    free_memory = 12 << 30  # what cudaMemGetInfo says is free (of 16 GiB)
    fail = None  # a stage name ("compile", "launch", "curand", "count") that raises, for the probe's tests
    launches: list = []  # (kernel name, grid, block) of every RawKernel launch run (replays too), for tests
    gemms: list = []  # the compute type of every cuBLAS gemmEx call run (replays too)
    # how many of each CuPy operation (by the name its checks give it; "empty" and "empty_like" are allocations, the
    # others launches), "cuRAND draw", "cublasGemmEx", RawKernel launch ("kernel NAME") and "copy from the host"
    # (cupy.asarray/array of host data) ran: the work a piece of gpunn issues, for tests that count it
    ops: collections.Counter = collections.Counter()
    captures = 0  # CUDA graphs captured (end_capture)
    graph_launches = 0  # Graph.launch calls
    generators = 0  # cuRAND generators created (RandomState objects)
    attribute_queries = 0  # runtime.getDevice / deviceGetAttribute calls
    cublas_refuses: dict = {}  # compute type -> the error status cuBLAS answers every GemmEx of that type with
    _tls = threading.local()

    @property
    def current(self):
        return getattr(self._tls, "current", 0)  # each thread starts on device 0

    @current.setter
    def current(self, value):
        self._tls.current = value

    @property
    def stream(self):
        """The current stream of this thread *on the current device*: CuPy keeps one per thread and device
        (cupy/cuda/stream.pyx, _ThreadLocal.current_stream[device_id]), so entering cupy.cuda.Device(1) inside
        a stream of device 0 makes device 1's current stream (the null stream, until one is entered) current."""
        return self._streams().get(self.current)  # None: the null stream

    @stream.setter
    def stream(self, value):
        self.set_stream(self.current, value)

    def set_stream(self, device, value):
        self._streams()[device] = value

    def _streams(self):
        streams = getattr(self._tls, "streams", None)
        if streams is None:
            streams = self._tls.streams = {}
        return streams


state = _State()


class CUDARuntimeError(RuntimeError):
    pass


class Device:
    def __init__(self, device=None):
        self.id = state.current if device is None else int(device)
        if not 0 <= self.id < state.device_count:
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")
        self._previous = []

    def __enter__(self):
        self._previous.append(state.current)
        state.current = self.id
        return self

    def __exit__(self, *exc):
        state.current = self._previous.pop()
        return False

    def use(self):
        state.current = self.id

    def synchronize(self):
        _refuse_in_capture("a device synchronize")
        # CUDA: a device (or context) cannot be synchronized while any of its streams captures, on any thread, in
        # any mode
        if any(recording.device == self.id for recording in list(_OPEN_CAPTURES.values())):
            _synchronizes_device(self.id, "a device synchronize")
            raise CUDARuntimeError(
                "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing (a device "
                "synchronize while a stream captures)")
        _ordering.device_synchronized(self.id)  # CuPy: cudaDeviceSynchronize with this device current

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _Runtime:
    cudaDevAttrMultiProcessorCount = 16
    CUDARuntimeError = CUDARuntimeError
    # cudaStreamCaptureMode, as cupy.cuda.runtime holds it (cupy_backends/cuda/api/runtime.pxd, v14.2.0 l.126-128)
    streamCaptureModeGlobal, streamCaptureModeThreadLocal, streamCaptureModeRelaxed = 0, 1, 2

    @staticmethod
    def getDeviceCount():
        if state.fail == "count":
            raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
        return state.device_count

    @staticmethod
    def getDevice():
        state.attribute_queries += 1
        return state.current

    @staticmethod
    def deviceGetAttribute(attrib, device):
        state.attribute_queries += 1
        if attrib != _Runtime.cudaDevAttrMultiProcessorCount:
            raise CUDARuntimeError(f"fakecupy knows only the multiprocessor count, not attribute {attrib}")
        return state.sm_count

    @staticmethod
    def getDeviceProperties(device):
        return {"name": f"Fake GPU {device}".encode(), "multiProcessorCount": state.sm_count,
                "totalGlobalMem": 1 << 34, "major": 9, "minor": 0}

    @staticmethod
    def runtimeGetVersion():
        return 13000

    @staticmethod
    def memGetInfo():
        """(free, total) bytes of the current device (cudaMemGetInfo): ``state.free_memory`` of 16 GiB."""
        return state.free_memory, 1 << 34


class MemoryPool:
    """cupy.get_default_memory_pool(): the bytes of the live device arrays as its used (and total) bytes; it
    caches no freed blocks here, so none are free."""

    def used_bytes(self):
        return sum(root.nbytes for _, root in _allocations())

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass


_MEMORY_POOL = MemoryPool()


def get_default_memory_pool():
    return _MEMORY_POOL


class Event:
    """cupy.cuda.Event: its work is what the stream it was recorded on had reached (fakecupy.ordering); ``done``
    answers as a GPU may while that work runs (see there)."""

    # Its own state has underscore names: a public attribute that cupy.cuda.Event lacks would let gpunn use it
    # here and fail on a GPU (tests/test_cupy_api.py compares the public names with the real CuPy's).
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        if interprocess and not disable_timing:
            raise ValueError("Timing must be disabled for interprocess events")
        self._timing = not disable_timing  # cudaEventElapsedTime refuses an event made with disable_timing
        self._recorded = False
        self._asked = False  # ``done`` has answered False since the last record
        self._time = None
        self._seen = {}  # what the work before its record had reached, stream by stream (fakecupy.ordering)
        self._device = state.current
        self.ptr = 0x6000 + next(_EVENT_IDS)

    def record(self, stream=None):
        on = stream or _current_stream()
        device = state.current if on._device is None else on._device  # the null stream: the current device's
        if device != self._device:
            raise CUDARuntimeError(f"cudaErrorInvalidResourceHandle: cudaEventRecord of an event of device "
                                   f"{self._device} on a stream of device {device}")
        if on._capture is not None:  # CUDA makes it a dependency inside the graph: not modelled, so refused
            on._capture.invalidate("an event recorded on the capturing stream")
        self._recorded, self._asked = True, False
        self._time = time.perf_counter()  # the work before it has run: wall time is the device's
        self._seen = _ordering.recorded(on)

    def synchronize(self):
        """cudaEventSynchronize: the host waits for the event's work. An event never recorded stands for no work
        (CUDA returns at once): the host learns nothing, so code that took it for a wait fails at the access."""
        _ordering.host_saw(self._seen)

    @property
    def done(self):
        """cupy.cuda.Event.done (a property, cudaEventQuery). True for an event never recorded (an empty set of
        work, in CUDA too) and for one whose work the host knows has finished. Otherwise False the first time it is
        asked after a record, as a GPU answers while that work runs, so that code's not-done branch runs here;
        True the next time (the work has run by then: the host knows it now), so that a loop waiting on it ends."""
        if not self._recorded or _ordering.finished(self._seen):
            return True
        if self._asked:
            _ordering.host_saw(self._seen)
            return True
        self._asked = True
        return False


_EVENT_IDS = itertools.count(1)


class _Stream:
    """cupy.cuda.Stream (work runs at once, so ordering is trivially kept): context, record, wait_event,
    and capture into a Graph."""

    _count = 0

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if ptds and not null:
            raise NotImplementedError("fakecupy: the per-thread default stream is not modelled (gpunn does not use it)")
        _Stream._count += 1
        self.ptr = 0 if null else 0x5000 + _Stream._count
        # fakecupy.ordering's keys have underscore names, as the device: cupy.cuda.Stream has only ptr and device_id
        self._device = None if null else state.current  # the legacy null stream: each device's own
        self._previous = []
        self._capture = None  # a _Recording while begin_capture .. end_capture
        _STREAMS[self.ptr] = self
        if not null:  # the null stream's order is its device's (_order)
            self._key, self._blocking = self.ptr, not non_blocking
            _ordering.register_stream(self)

    @property
    def _order(self):
        """The stream whose order fakecupy.ordering keeps: this one; for the null stream (handle 0, which CUDA takes
        as the current device's legacy stream), the current device's."""
        return _ordering.null_clock(state.current) if self._device is None else self

    @property
    def device_id(self):
        """The device the stream was made on; -1 for the null stream (cupy/cuda/stream.pyx)."""
        return -1 if self._device is None else self._device

    def _check_device(self):
        """CuPy 14 (cupy/cuda/stream.pyx, check_stream_device_match): a stream made on another device than the
        current one cannot be entered or made current."""
        if self._device is not None and self._device != state.current:
            raise RuntimeError(f"The device that the stream is created on ({self._device}) does not match with "
                               f"the current device ({state.current})")

    def __enter__(self):
        self._check_device()
        self._previous.append((state.current, state.stream))  # CuPy pops the stream of the device it pushed on
        state.stream = self
        return self

    def __exit__(self, *exc):
        device, previous = self._previous.pop()
        state.set_stream(device, previous)
        return False

    def use(self):
        self._check_device()
        state.stream = self
        return self

    def synchronize(self):
        if self._capture is not None:
            self._capture.invalidate("synchronize on a capturing stream")
        _ordering.synchronized(self)

    @property
    def done(self):
        """cupy.cuda.Stream.done (a property, cudaStreamQuery): whether all the work issued to the stream (the null
        stream: the current device's) has finished, and what it waited for; answered as ``Event.done`` is. CUDA
        refuses a query of a capturing stream (cudaErrorStreamCaptureUnsupported), which invalidates the capture."""
        if self._capture is not None:
            self._capture.invalidate("a query of the capturing stream (done)")
        return _ordering.stream_done(self)

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        if not isinstance(event, Event):
            raise TypeError(f"wait_event needs an Event, got {type(event).__name__}")
        if self._capture is not None:  # CUDA: cudaErrorStreamCaptureIsolation for an event recorded outside it
            self._capture.invalidate("a wait for an event (one recorded outside the capture: a dependency CUDA refuses "
                                     "to let cross it)")
        _ordering.wait(self, event._seen)

    # ---- CUDA graphs ---------------------------------------------------------------------------
    def begin_capture(self, mode=None):
        if mode not in (None, 0, 1, 2):  # CUDA's three cudaStreamCaptureMode values (None: CuPy's relaxed)
            raise CUDARuntimeError(f"cudaErrorInvalidValue: stream capture mode {mode!r}")
        if self.ptr == 0:
            raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: the legacy null stream cannot be captured")
        if self._capture is not None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is already capturing")
        self._capture = _Recording(state.current, _Runtime.streamCaptureModeRelaxed if mode is None else mode)
        self._capture.blocking = self._blocking  # (see _refuse_legacy_work_beside_a_blocking_capture)
        _OPEN_CAPTURES[id(self)] = self._capture

    def is_capturing(self):
        return self._capture is not None

    def end_capture(self):
        if self._capture is None:
            raise CUDARuntimeError("cudaErrorIllegalState: end_capture on a stream that is not capturing")
        if self._capture.mode != _Runtime.streamCaptureModeRelaxed and self._capture.thread != threading.get_ident():
            raise CUDARuntimeError("cudaErrorStreamCaptureWrongThread: a capture not begun in relaxed mode ended on "
                                   "another thread than the one that began it")
        recording, self._capture = self._capture, None
        _OPEN_CAPTURES.pop(id(self), None)
        if recording.invalid:
            raise CUDARuntimeError(f"cudaErrorStreamCaptureInvalidated: {recording.invalid}")
        state.captures += 1
        return Graph(recording)


_STREAMS = weakref.WeakValueDictionary()  # stream handle -> stream, so cuBLAS's SetStream can resolve it


class _Recording:
    """What a capturing stream has recorded: closures run in order by Graph.launch; and how it was begun (the
    cudaStreamCaptureMode, the thread)."""

    def __init__(self, device, mode=2):
        self.device, self.nodes, self.invalid = device, [], None
        self.blocking = False  # whether the capturing stream was made without non_blocking
        self.mode, self.thread = mode, threading.get_ident()

    def invalidate(self, what):
        self.invalid = self.invalid or what
        raise CUDARuntimeError(f"cudaErrorStreamCaptureInvalidated: {what} while a stream is being captured "
                               "(fakecupy records only RawKernel launches, memset/memcpy and cuBLAS GemmEx on it)")


class Graph:
    """cupy.cuda.graph.Graph: the recorded work, run in order at each launch on the capture's device."""

    def __init__(self, recording):
        self._nodes, self._device = list(recording.nodes), recording.device

    def launch(self, stream=None):
        stream = stream or _current_stream()
        if stream._capture is not None:
            stream._capture.invalidate("launching a graph into a capturing stream")
        state.graph_launches += 1
        previous, state.current = state.current, self._device
        replaying, state._tls.replaying = getattr(state._tls, "replaying", None), stream
        try:
            for node in self._nodes:
                node()
        finally:
            state.current = previous
            state._tls.replaying = replaying

    def upload(self, stream=None):
        pass


def _capturing():
    """The recording of this thread's current stream, or None."""
    stream = state.stream
    return None if stream is None else stream._capture


_OPEN_CAPTURES: dict = {}  # id(stream) -> its _Recording, while it captures


def _check_capture_mode(what):
    """A "potentially unsafe" call (``what``: a device allocation, which may cudaMalloc) under the captures in
    progress, as CUDA rules it for a thread in its default (global) mode (cudaThreadExchangeStreamCaptureMode):
    refused where this thread has a capture not begun in relaxed mode (which that refusal invalidates), or another
    thread has one begun in global mode. CuPy's begin_capture defaults to relaxed, as gpunn's captures use it."""
    if not _OPEN_CAPTURES:
        return
    me = threading.get_ident()
    for recording in list(_OPEN_CAPTURES.values()):
        own = recording.thread == me
        if own and recording.mode != _Runtime.streamCaptureModeRelaxed:
            recording.invalid = recording.invalid or f"{what} in a capture begun in mode {recording.mode}"
        elif own or recording.mode != _Runtime.streamCaptureModeGlobal:
            continue
        raise CUDARuntimeError(f"cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing "
                               f"({what} while {'this' if own else 'another'} thread captures in "
                               f"{'global' if recording.mode == 0 else 'thread-local'} mode)")


def _refuse_in_capture(what):
    recording = _capturing()
    if recording is not None:
        recording.invalidate(what)


_Stream.null = _Stream(null=True)


def _current_stream(device_id=-1):
    """This thread's current stream on the current device (``device_id``: on that device), as
    cupy.cuda.get_current_stream(device_id=-1)."""
    if device_id == -1:
        return state.stream or _Stream.null
    return state._streams().get(int(device_id)) or _Stream.null


def _issuing(stream=None):
    """The stream work goes to: a graph's launch stream while it replays, else ``stream`` or the current one."""
    on = getattr(state._tls, "replaying", None) or stream or _current_stream()
    if on.ptr == 0 and _OPEN_CAPTURES:
        _refuse_legacy_work_beside_a_blocking_capture()
    return on


def _refuse_legacy_work_beside_a_blocking_capture():
    """Work for the legacy null stream while a stream of its device made without non_blocking captures is refused,
    as CUDA refuses it (Programming Guide, CUDA graphs, prohibited operations: the legacy stream waits for every
    blocking stream, so its work would depend on the capture; cudaErrorStreamCaptureImplicit). gpunn captures on a
    non-blocking stream (training.graph.capture_resources), so another thread's work on the legacy stream goes on
    while a fit captures (tests/test_graph_gpu.py)."""
    for recording in list(_OPEN_CAPTURES.values()):
        if recording.blocking and recording.device == state.current:
            raise CUDARuntimeError("cudaErrorStreamCaptureImplicit: work on the legacy stream while a blocking stream "
                                   "of its device captures (it would wait for the capture)")


def _launch_stream(stream=None):
    """The stream a kernel is launched on; CUDA refuses a launch on a stream of another device than the current."""
    on = _issuing(stream)
    if on._device is not None and on._device != state.current:
        raise CUDARuntimeError(f"cudaErrorInvalidResourceHandle: a kernel launched on a stream of device {on._device} "
                               f"while device {state.current} is current")
    return on


class CompileException(Exception):
    def get_message(self):
        return str(self)


def _elapsed_ms(start_event, end_event):
    """cupy.cuda.get_elapsed_time: milliseconds between two recorded events."""
    start, end = start_event, end_event
    if start._time is None or end._time is None:
        raise CUDARuntimeError("get_elapsed_time on an event that was never recorded")
    if not (start._timing and end._timing):
        raise CUDARuntimeError("cudaErrorInvalidResourceHandle: get_elapsed_time of an event made with "
                               "disable_timing=True")
    return 1e3 * (end._time - start._time)


cuda = types.SimpleNamespace(
    Device=Device, runtime=_Runtime, get_current_stream=lambda device_id=-1: _current_stream(device_id),
    Stream=_Stream, Event=Event,
    graph=types.SimpleNamespace(Graph=Graph),
    curand=types.SimpleNamespace(CURANDError=None),  # set below, where the class is
    get_elapsed_time=_elapsed_ms,
    compiler=types.SimpleNamespace(CompileException=CompileException),
    is_available=lambda: state.device_count > 0,
)


def is_available():
    return state.device_count > 0


# ---- arrays --------------------------------------------------------------------------------


class ndarray(numpy.ndarray):
    """A device array: NumPy memory tagged with the device it was allocated on."""

    def __array_finalize__(self, obj):
        device = getattr(obj, "_device_id", None)
        self._device_id = state.current if device is None else device
        root = self
        while isinstance(root.base, numpy.ndarray):
            root = root.base
        if _OPEN_CAPTURES and _ALLOCATIONS.get(_address(root)) is not root:
            _check_capture_mode("a device allocation")  # new memory: CuPy's pool may cudaMalloc it
        with _ALLOCATIONS_LOCK:  # (a snapshot on another thread, _allocations(), would fail on the insert)
            _ALLOCATIONS[_address(root)] = root  # so raw pointers (cuBLAS) resolve
        # a view of a known allocation changes nothing; a new one is the output the op making it writes, on the
        # current stream (CuPy allocates it there, then launches the op), unless it is ``empty`` memory
        tls = state._tls
        written_by = None if obj is None or getattr(tls, "unwritten", False) else getattr(tls, "op", "a CuPy op")
        _ordering.allocated(root, _issuing(), written_by=written_by and f"{written_by} (writing its new output)")

    @property
    def device(self):
        return Device(self._device_id)

    @property
    def data(self):
        return MemoryPointer(_address(self), self._device_id)

    def get(self, stream=None, order="C", out=None, blocking=True):
        if not blocking:
            raise NotImplementedError("fakecupy: get(blocking=False) is not modelled (gpunn does not use it)")
        if out is not None:  # CuPy's checks (cupy/_core/core.pyx, ndarray.get): no cast, no broadcast
            if not isinstance(out, numpy.ndarray) or isinstance(out, ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            if self.dtype != out.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
            if self.shape != out.shape:
                raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, actual shape: {out.shape}")
            if not (out.flags.c_contiguous or out.flags.f_contiguous):
                raise RuntimeError("`out` cannot be specified when copying to non-contiguous ndarray")
        _refuse_in_capture("a copy to the host")
        if out is None and not self.size:  # CuPy's get: ``if self.size == 0: return numpy.ndarray(...)``, no wait
            return numpy.ndarray(self.shape, dtype=self.dtype)
        _synchronous_read(self, "a copy to the host (get)", stream)
        host = numpy.array(self.view(numpy.ndarray), order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        # CuPy's checks (cupy/_core/core.pyx, ndarray.set): a host array of exactly this dtype and shape, into a
        # contiguous array; no cast, no broadcast
        if not isinstance(arr, numpy.ndarray) or isinstance(arr, ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if not (self.flags.c_contiguous or self.flags.f_contiguous):
            raise RuntimeError("Cannot set to non-contiguous array")
        if not self.size:  # CuPy's copy_from_host_async copies nothing of 0 bytes (cupy/cuda/memory.pyx: size > 0)
            return
        on = _issuing(stream)
        with _device_current(self._device_id):  # CuPy: the copy with the array's device current
            _ordering.access(on, "a copy from the host (set)", writes=[self])
            _ordering.host_access(on, arr, write=False)  # pinned: asynchronous, in flight until waited for
        self.view(numpy.ndarray)[...] = arr

    def fill(self, value):  # a CuPy fill kernel on the current stream (none for an empty array: ``_launches``)
        _check_operands("fill", [self], writes=[self], launches=_launches(self))
        self.view(numpy.ndarray).fill(value)

    def copy(self, order="C"):
        """CuPy's (cupy/_core/core.pyx): an ``astype`` on the current device; an array of another device copied to
        the current one (``_copy_from_another_device``), but in order 'K' (``order=None`` too) only one contiguous in
        C or F order (else CuPy's NotImplementedError); an empty one, of any device, is astype's new array on the
        current device, nothing read."""
        order = "K" if order is None else order
        if not self.size:
            return _astype(self, self.dtype, order, True)
        host = numpy.array(self.view(numpy.ndarray), order=order, copy=True)
        if self._device_id == state.current:
            _check_operands("copy", [self])
        elif order.upper() == "K" and not (self.flags.c_contiguous or self.flags.f_contiguous):
            raise NotImplementedError("CuPy cannot copy non-contiguous array between devices.")
        else:
            return _copy_from_another_device(self, host, "copy", _in_order(self, order))
        return _wrap(host)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        """CuPy 14's (cupy/_core/core.pyx, ``astype`` and ``_astype``): any casting or subok given is a TypeError
        (CuPy's "casting is not supported yet", NumPy's "unsafe" default included); copy=False asks for no copy
        (``_astype(copy=None)``), never refuses one: the array itself where it fits, else a copy (``_astype``)."""
        if casting is not None:
            raise TypeError("casting is not supported yet")
        if subok is not None:
            raise TypeError("subok is not supported yet")
        return _astype(self, dtype, order, True if copy else None)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        """A ufunc call is an elementwise kernel over its operands' broadcast shape, launched unless that shape is
        empty (``_launches``); its other methods (reduce, accumulate, outer...) go by ``_routine_launches``."""
        what, operands = f"ufunc {ufunc.__name__}", inputs + (out or ())
        if method == "__call__":
            if not _called_from_numpy():  # (NumPy's own methods pass subok=False for the user's a.mean())
                _ufunc_keywords(ufunc.__name__, kwargs)
            _check_operands(what, operands, writes=out or (), launches=not _broadcast_empty(operands))
        else:
            _reduction_keywords(ufunc.__name__, method, kwargs)
            if not _called_from_numpy():  # (NumPy's a.max() hands its reduction to maximum.reduce: CuPy's own method)
                _ufunc_method(ufunc.__name__, method)
            _checked(what, operands)
        args = [_host_view(x) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_host_view(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if method != "__call__" and _routine_launches(operands, result):
            _issued(what, operands, writes=out or ())
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        space = {"numpy": _names.CUPY, "numpy.linalg": _names.LINALG}.get(func.__module__, ())
        if func.__name__ not in space:  # CuPy's __array_function__ returns NotImplemented: NumPy raises
            raise TypeError(f"no implementation found for '{func.__module__}.{func.__name__}' on types that "
                            "implement __array_function__: CuPy 14 has no such function (tests/fakecupy/names.py)")
        _function_keywords(func.__name__, kwargs)
        written = [kwargs["out"]] if kwargs.get("out") is not None else []
        if func is numpy.copyto:
            written.append(args[0])
        operands = _flatten(args) + _flatten(list(kwargs.values()))
        _checked(func.__name__, operands)
        result = func(*_unwrap(args), **_unwrap(kwargs))
        if _routine_launches(operands, result):
            _issued(func.__name__, operands, writes=written)
        out = kwargs.get("out")
        if out is not None:
            return out
        return _wrap(result)

    def __setitem__(self, key, value):
        """CuPy's _scatter_op (cupy/_core/_routines_indexing.pyx): with an array index (a host one copied to the device
        first, a boolean one counted first), a scatter kernel on the current device and stream that reads the index
        and the value, taken to the device as ``cupy.array(value)`` when it is not there (a copy from the host; with
        one boolean index, only when it selects something: ``_scatter_op_mask_single`` returns first); with ints and
        slices, a copy of a device value or a fill with a scalar, where a host array that is not 0-d is refused
        (CuPy's fill: "non-scalar numpy.ndarray cannot be used for fill"). Where nothing is selected, no kernel
        (``_launches``)."""
        host = self.view(numpy.ndarray)
        if _gathers(key):
            key = _device_key(key)
            _count_masks(key, "__setitem__")
            selected, indices = host[_unwrap(key)], _device_indices(key)
            if not isinstance(value, ndarray):
                if not selected.size and len(indices) == 1 and indices[0].dtype == numpy.bool_:
                    _check_operands("__setitem__", [self] + indices, launches=False)
                    return
                value = _to_device(value, self.dtype)
        else:
            selected = host[key]
            if not isinstance(value, ndarray):
                value = numpy.asarray(value, dtype=self.dtype)
                if value.shape != ():
                    raise ValueError("non-scalar numpy.ndarray cannot be used for fill (CuPy's ndarray.__setitem__ "
                                     "takes a host value only as a scalar: copy it to the device first)")
                value = value[()]  # a scalar, a kernel's argument
        _check_operands("__setitem__", [self, value] + _device_indices(key), writes=[self],
                        launches=_launches(selected))
        numpy.ndarray.__setitem__(host, key, _host_view(value))

    def __getitem__(self, key):
        """CuPy's indexing gives a 0-d device array where NumPy's gives a NumPy scalar (a host value): a[i] of a
        1-d array is a view on the device, not a number (it is passed to a kernel as a pointer, is unhashable,
        and numpy.asarray refuses it). An array index (a device array, a list or a NumPy array, which CuPy first
        copies to the device) is a gather kernel (cupy/_core/_routines_indexing.pyx): it reads this array and the
        index on the current stream and device, like any other op (none when its output is empty: ``_launches``);
        ints and slices make a view and launch nothing. A host index is copied to the device first, and a boolean
        one counted (``_device_key``)."""
        if _gathers(key):
            key = _device_key(key)
            _count_masks(key, "indexing")
            gathered = self.view(numpy.ndarray)[_unwrap(key)]
            _check_operands("indexing (a gather)", [self] + _device_indices(key), launches=_launches(gathered))
            return gathered.view(ndarray)  # a new array on the current device (the operands'), the gather's output
        else:
            state._tls.op = "CuPy's indexing"
        result = numpy.ndarray.__getitem__(self, key)
        if isinstance(result, numpy.generic):
            result = numpy.ndarray.__getitem__(self, _index_parts(key) + (Ellipsis,))
        return result

    def take(self, indices, axis=None, out=None):  # NumPy's method bypasses __array_function__: cupy.take's checks
        return take(self, indices, axis=axis, out=out)

    # NumPy's C methods below bypass __array_function__ and __array_ufunc__, so they checked neither device nor
    # stream order: each is the cupy function's kernel (cupy/_core/core.pyx hands them to it) on the current stream
    def argmax(self, axis=None, out=None, keepdims=False):
        return _creator("argmax")(self, axis=axis, out=out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return _creator("argmin")(self, axis=axis, out=out, keepdims=keepdims)

    def argsort(self, axis=-1, kind=None):
        return _creator("argsort")(self, axis=axis, kind=kind)

    def argpartition(self, kth, axis=-1):
        return _creator("argpartition")(self, kth, axis=axis)

    def repeat(self, repeats, axis=None):
        return _creator("repeat")(self, repeats, axis=axis)

    def nonzero(self):
        return _creator("nonzero")(self)

    def compress(self, condition, axis=None, out=None):
        return _creator("compress")(condition, self, axis=axis, out=out)

    def searchsorted(self, v, side="left", sorter=None):
        return _creator("searchsorted")(self, v, side=side, sorter=sorter)

    def dot(self, b, out=None):
        return _creator("dot")(self, b, out=out)

    def round(self, decimals=0, out=None):  # NumPy's C method skips the ufunc for an integer array
        return _creator("round")(self, decimals=decimals, out=out)

    def choose(self, choices, out=None, mode="raise"):
        if not isinstance(choices, ndarray):  # CuPy reads choices.shape first (_indexing._ndarray_choose)
            raise AttributeError(f"'{type(choices).__name__}' object has no attribute 'shape' (cupy.ndarray.choose "
                                 "takes its choices as one device array)")
        return _creator("choose")(self, choices, out=out, mode=mode)

    def byteswap(self, inplace=False):
        """CuPy 14.1's (cupy/_core/core.pyx): a kernel on the current device and stream that reads the array and,
        in place, writes it back; one-byte items: the array itself in place, else a copy."""
        if self.dtype.names is not None:
            raise TypeError("byteswap is not supported for structured dtypes")
        if self.dtype.itemsize == 1:
            return self if inplace else self.copy()
        if self.dtype.itemsize not in (2, 4, 8) and self.dtype.kind != "c":
            raise TypeError(f"byteswap not supported for dtype with itemsize {self.dtype.itemsize}")
        _check_operands("byteswap", [self], writes=[self] if inplace else [], launches=_launches(self))
        swapped = numpy.ndarray.byteswap(self.view(numpy.ndarray), inplace=inplace)
        return self if inplace else _wrap(swapped)

    def sort(self, axis=-1, kind=None):
        """In place: a kernel writing this array, but none when it is empty or its axis is of one element
        (cupy/_core/_routines_sorting.pyx, _ndarray_sort: ``if self._shape[axis] <= 1: return  # already sorted``)."""
        sorts = self.size > 0 and -self.ndim <= axis < self.ndim and self.shape[axis] > 1  # (NumPy's errors later)
        _check_operands("sort", [self], writes=[self], launches=sorts)
        numpy.ndarray.sort(self.view(numpy.ndarray), axis=axis, kind=kind)

    def partition(self, kth, axis=-1):  # in place
        _check_operands("partition", [self], writes=[self], launches=_launches(self))
        numpy.ndarray.partition(self.view(numpy.ndarray), kth, axis=axis)

    def put(self, indices, values, mode="wrap"):  # a scatter into this array (none of no values or no indices)
        _check_operands("put", [self, indices, values], writes=[self],
                        launches=numpy.size(_unwrap(indices)) > 0 and numpy.size(_unwrap(values)) > 0)
        numpy.ndarray.put(self.view(numpy.ndarray), _unwrap(indices), _unwrap(values), mode=mode)

    def flatten(self, order="C"):  # always a copy (CuPy's copy(order="C") of the array in that order)
        host = numpy.ndarray.flatten(self.view(numpy.ndarray), order=order)
        if self._device_id == state.current:
            _check_operands("flatten", [self], launches=_launches(self))  # an empty one: astype's, nothing copied
        elif self.size:
            return _copy_from_another_device(self, host, "flatten", _in_order(self, order))
        return _wrap(host)

    def ravel(self, order="C"):
        return self._view_or_copy("ravel", order=order)

    def reshape(self, *shape, order="C"):
        return self._view_or_copy("reshape", *shape, order=order)

    def _view_or_copy(self, method, *args, **kwargs):
        """A view where the strides allow one (no kernel: allowed on any device, as ``a[1:3]``), else a copy on the
        current device and stream: CuPy's _reshape takes ``self.copy()`` (of another device's array: the copy between
        devices), but a 1-d ravel copies with a kernel on the current device (_internal_ascontiguousarray)."""
        host = getattr(numpy.ndarray, method)(self.view(numpy.ndarray), *args, **kwargs)
        if host.size == 0 or _memory_owner(host) is _memory_owner(self):  # (not may_share_memory: tests patch it)
            state._tls.op = "CuPy's indexing"  # a view: no write at its allocation (as __getitem__'s views)
            return getattr(numpy.ndarray, method)(self, *args, **kwargs)
        if self._device_id != state.current and (method == "reshape" or self.ndim > 1):
            order = kwargs.get("order", "C")
            return _copy_from_another_device(self, host, f"{method} (a copy)", _in_order(self, order))
        _check_operands(f"{method} (a copy)", [self])
        return _wrap(host)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):  # CuPy: ``with self.device: return self.copy()``
        with _device_current(self._device_id):
            return self.copy()

    def __round__(self, ndigits=None):  # cupy.ndarray has no __round__: round(a) is a TypeError (use a.round())
        raise TypeError("type cupy.ndarray doesn't define __round__ method")

    # NumPy attributes cupy.ndarray does not have (cupy/_core/core.pyx): an AttributeError there
    ctypes = property(lambda self: _no_attribute("ctypes"))
    __array_interface__ = property(lambda self: _no_attribute("__array_interface__"))
    resize = property(lambda self: _no_attribute("resize"))
    setflags = property(lambda self: _no_attribute("setflags"))
    getfield = property(lambda self: _no_attribute("getfield"))
    setfield = property(lambda self: _no_attribute("setfield"))

    @property
    def flags(self):
        """CuPy's flags (cupy/_core/flags.pyx): c_contiguous, f_contiguous and owndata only (NumPy's have
        writeable, aligned...: an AttributeError on a CuPy array)."""
        host = numpy.ndarray.flags.__get__(self)
        return _Flags(host.c_contiguous, host.f_contiguous, host.owndata)

    to_device = property(lambda self: _no_attribute("to_device"))
    __array_namespace__ = property(lambda self: _no_attribute("__array_namespace__"))

    def __imatmul__(self, other):
        """cupy.ndarray has no __imatmul__: ``a @= b`` is ``a = a @ b`` there, a new array that ``a`` is rebound to,
        where NumPy writes into ``a`` (a view into a parameter buffer would keep its old values on a GPU)."""
        return NotImplemented

    def __index__(self):  # cupy.ndarray has no __index__ (cupy/_core/core.pyx): range(a[0]) is a TypeError there
        raise TypeError("a CuPy array is not an integer index: cupy.ndarray has no __index__ (use int(a))")

    def __bool__(self):  # cupy/_core/core.pyx __nonzero__: bool(self.get()), a synchronising read
        if self.size == 1:
            _refuse_in_capture("bool() of a device array (a copy to the host)")
            _synchronous_read(self, "bool()")
        return numpy.ndarray.__bool__(self.view(numpy.ndarray))

    def __format__(self, spec):  # cupy/_core/core.pyx: format(self.get(), spec)
        _refuse_in_capture("formatting a device array (a copy to the host)")
        if self.size:  # get() of an empty array waits for nothing
            _synchronous_read(self, "format()")
        return format(self.view(numpy.ndarray), spec)

    def _to_host(self, what):
        """This array read back by ``what`` (a synchronising copy to the host, as CuPy's get()): its host view."""
        _refuse_in_capture(f"{what} of a device array (a copy to the host)")
        if self.size:  # get() of an empty array waits for nothing
            _synchronous_read(self, what)
        return self.view(numpy.ndarray)

    def __float__(self):
        return float(self._to_host("float()"))

    def __int__(self):
        return int(self._to_host("int()"))

    def item(self, *args):
        if args:
            raise TypeError("cupy.ndarray.item() takes no arguments (cupy/_core/core.pyx)")
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._to_host("item()").item()

    def tolist(self):
        return self._to_host("tolist()").tolist()

    # CuPy's are self.get() and then NumPy's: a synchronous copy to the host, as tolist (NumPy's C code read nothing)
    def tobytes(self, order="C"):
        return self._to_host("tobytes()").tobytes(order)

    def tofile(self, fid, sep="", format="%s"):
        self._to_host("tofile()").tofile(fid, sep, format)

    def __bytes__(self):
        return bytes(self._to_host("bytes()"))

    def __complex__(self):
        return complex(self._to_host("complex()"))

    # ---- leaving the device: what CuPy 14 (cupy/_core/core.pyx) lets through, and how
    def __array__(self, dtype=None, copy=None):
        """Refused, as CuPy's: no implicit conversion to NumPy (``numpy.asarray`` & co. are refused before they ask,
        ``refuse_host_conversions``; this is for a direct call)."""
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __reduce__(self):
        """CuPy's pickle: ``array, (self.get(order="A"),)``, a synchronous copy to the host (as get()), unpickled as
        ``cupy.array`` of it, a copy to the device current then."""
        return array, (self.get(order="A"),)

    def __reduce_ex__(self, protocol):  # NumPy's pickles the memory itself (protocol 5: out of band): CuPy's has none
        return self.__reduce__()

    def __buffer__(self, flags):
        """The buffer protocol (memoryview, ``file.write(a)``, hashlib, ``numpy.frombuffer``): CuPy's __getbuffer__
        refuses device memory that the host cannot reach (not managed memory, no HMM/ATS). Python 3.12 and later
        only: 3.11 has no ``__buffer__``, so there NumPy's own buffer is handed out."""
        raise TypeError("Accessing a CuPy ndarry on CPU is not allowed except when using system memory (on HMM or "
                        "ATS enabled systems, need to set CUPY_ENABLE_UMP=1) or managed memory")

    def __dlpack_device__(self):
        return _dlpack.kDLCUDA, self._device_id

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """CuPy's DLPack export. To its own device: a capsule of this memory (fakecupy.dlpack), after the consumer's
        ``stream`` (a handle; None: the legacy stream; -1: no order) waits for an event of the current stream where
        it is another stream. To the host (``dl_device=(1, 0)``): NumPy's capsule of a ``get()`` copy."""
        if dl_device is None or tuple(dl_device) == self.__dlpack_device__():
            if copy is True:
                raise BufferError("copy=True only supported for copy to CPU.")
        elif tuple(dl_device) == (_dlpack.kDLCPU, 0):
            if copy is False:
                raise ValueError("GPU memory cannot be exported to CPU without copy.")
            return self.get(order="A").__dlpack__(max_version=max_version)
        else:
            raise BufferError("unsupported device requested.")
        consumer = -2 if stream is not None and not isinstance(stream, int) else 1 if stream is None else stream
        if consumer < -1:
            raise ValueError(f"On CUDA, the valid stream for the DLPack protocol is -1, 1, 2, or any larger value, "
                             f"but {stream} was provided")
        if consumer == 0:
            warnings.warn("Stream 0 is passed from a library that you are converting to; CuPy assumes 0 as a legacy "
                          "default stream. Please report this problem to the library as this violates the DLPack "
                          "protocol.")
            consumer = 1
        current = _current_stream()
        if consumer >= 0 and consumer != (current.ptr or 1):
            _stream_of_handle(consumer).wait_event(current.record())
        return _dlpack.export(self, _address(self), self._device_id)

    def __iter__(self):  # CuPy iterates over the first axis, yielding device arrays
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        return f"fakecupy.{numpy.ndarray.__repr__(self.view(numpy.ndarray))}"

    def __str__(self):  # CuPy's is str(self.get()); NumPy's ran isfinite, refused on another device. Unchecked, as repr
        return numpy.ndarray.__str__(self.view(numpy.ndarray))


class _Flags:
    """cupy._core.flags.Flags."""

    def __init__(self, c_contiguous, f_contiguous, owndata):
        self.c_contiguous, self.f_contiguous, self.owndata = c_contiguous, f_contiguous, owndata

    @property
    def fnc(self):
        return self.f_contiguous and not self.c_contiguous

    @property
    def forc(self):
        return self.f_contiguous or self.c_contiguous

    def __getitem__(self, name):
        keys = {"C_CONTIGUOUS": "c_contiguous", "F_CONTIGUOUS": "f_contiguous", "OWNDATA": "owndata",
                "FNC": "fnc", "FORC": "forc"}
        if name not in keys:
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")
        return getattr(self, keys[name])


def _no_attribute(name):
    raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (NumPy's ndarray has it, CuPy's not)")


def _address(a):
    """The address of a device array's first element (NumPy's ``__array_interface__``, which cupy.ndarray lacks)."""
    return numpy.ndarray.__array_interface__.__get__(a)["data"][0]


ndarray.__module__ = "cupy"  # gpunn.backend.backend_of tells device arrays by their type's module


_ALLOCATIONS = weakref.WeakValueDictionary()  # start address -> the NumPy buffer holding device memory
_ALLOCATIONS_LOCK = threading.Lock()


def _allocations() -> list:
    """(start address, buffer) of every live allocation, a snapshot: list() of the dictionary's items while another
    thread (a second rank's) allocates failed with 'dictionary changed size during iteration'."""
    with _ALLOCATIONS_LOCK:
        return list(_ALLOCATIONS.items())


class MemoryPointer:
    """cupy.cuda.MemoryPointer: an address on a device."""

    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = int(ptr), device_id

    def memset_async(self, value, size, stream=None):
        if not size:  # cupy/cuda/memory.pyx: ``if size > 0: runtime.memsetAsync(...)``
            return
        ptr = self.ptr
        _flat_memory(ptr, numpy.uint8, size)  # checked now; captured: run at each graph launch

        def memset(on):
            _ordering.access(on, "cudaMemsetAsync", writes=[_flat_memory(ptr, numpy.uint8, size)])
            _flat_memory(ptr, numpy.uint8, size)[...] = value
        _enqueue(stream, memset)

    def copy_from_device_async(self, src, size, stream=None):
        if not size:  # cupy/cuda/memory.pyx: ``if size > 0: runtime.memcpyAsync(...)``
            return
        dst, src_ptr = self.ptr, src.ptr
        _flat_memory(dst, numpy.uint8, size), _flat_memory(src_ptr, numpy.uint8, size)

        def copy(on):
            _ordering.access(on, "cudaMemcpyAsync (device to device)", reads=[_flat_memory(src_ptr, numpy.uint8, size)],
                             writes=[_flat_memory(dst, numpy.uint8, size)])
            _flat_memory(dst, numpy.uint8, size)[...] = _flat_memory(src_ptr, numpy.uint8, size)
        _enqueue(stream, copy)


def _enqueue(stream, work):
    """Run ``work`` now, or record it when ``stream`` (default: the current one) is capturing."""
    on = stream or _current_stream()
    recording = on._capture
    if recording is None:
        work(_issuing(on))
    else:
        recording.nodes.append(lambda: work(_issuing(on)))


def _flat_memory(ptr, dtype, count):
    """``count`` elements of ``dtype`` at device address ``ptr`` (a view into the allocation holding it)."""
    dtype = numpy.dtype(dtype)
    for start, root in _allocations():
        if start <= ptr < start + root.nbytes:
            raw = root.reshape(-1).view(numpy.uint8) if root.flags.c_contiguous else None
            if raw is None:
                break
            offset = ptr - start
            if offset + count * dtype.itemsize > raw.size:
                raise ValueError(f"device address {ptr:#x}: {count} x {dtype} runs past its allocation")
            return raw[offset:offset + count * dtype.itemsize].view(dtype)
    raise ValueError(f"device address {ptr:#x} is not in any live allocation (a stale or host pointer)")


def _flatten(items):
    out = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _synchronous_read(a, what, stream=None):
    """A synchronous copy to the host on the current stream: the host waits for that stream. CuPy (ndarray.get)
    takes the current stream, then makes the array's device current for the copy and the wait: the null stream
    is then the array's device's."""
    on = _issuing(stream)
    with _device_current(a._device_id):
        _ordering.access(on, what, reads=[a])
        _ordering.synchronized(on)


@contextlib.contextmanager
def _device_current(device):
    """``device`` current for a while (CuPy's runtime.setDevice .. setDevice(prev_device))."""
    previous, state.current = state.current, device
    try:
        yield
    finally:
        state.current = previous


def _check_operands(what, operands, writes=(), launches=True):
    """CuPy's kernel ``what`` on the current device and stream: its operands checked, then (``launches``) issued in
    stream order, reading ``operands`` and writing ``writes``, and counted. ``launches`` False: CuPy checked the
    operands and returned before launching, as its kernels do when their output is empty (``_launches``)."""
    _checked(what, operands)
    if launches:
        _issued(what, operands, writes)


def _checked(what, operands):
    """What CuPy checks before it launches ``what`` or returns with nothing to launch (its devices)."""
    _refuse_in_capture(f"CuPy's {what}")
    state._tls.op = f"CuPy's {what}"  # the name a new output's write goes by (ndarray.__array_finalize__)
    _check_devices(what, operands)  # checked first: an operation CuPy refuses never runs on a stream


def _issued(what, operands, writes=()):
    """CuPy's kernel ``what`` launched on the current stream: its reads and writes in stream order, and counted."""
    _ordering.access(_launch_stream(), f"CuPy's {what}", reads=[x for x in operands if isinstance(x, ndarray)],
                     writes=[x for x in writes if isinstance(x, ndarray)])
    state.ops[what] += 1


def _launches(*outputs):
    """Whether a CuPy kernel writing ``outputs`` (arrays or NumPy scalars; lists and tuples of them) launches: not
    when they hold no element. CuPy v14.2.0: an ElementwiseKernel or ufunc returns before launching when its shape
    (its output's, the broadcast of its operands) has a 0 (cupy/_core/_kernel.pyx, ElementwiseKernel.__call__ and
    ufunc.__call__: ``if _contains_zero(shape): return ret``), a reduction when its output is empty
    (cupy/_core/_reduction.pyx, _AbstractReductionKernel._call: ``if ret.size == 0: return ret``; an empty input
    with a non-empty output still launches, writing the identity), fill too (cupy/_core/core.pyx fill: fill_kernel,
    an ElementwiseKernel, or ``memset_async``, which skips 0 bytes: cupy/cuda/memory.pyx ``if size > 0``), and the
    gathers and scatters (cupy/_core/_routines_indexing.pyx: ``_getitem_mask_single``'s ``if out.size == 0: return
    out``, the take kernel an ElementwiseKernel, ``_scatter_op_mask_single``'s ``if internal.prod(masked_shape) ==
    0: return``, ``_ndarray_put``'s ``if values.size == 0: return``). A RawKernel launch has no such return
    (cupy/_core/raw.pyx: it launches the grid it is given): RawKernel.__call__ never asks this."""
    return any(x.size for x in _flatten(outputs) if isinstance(x, (numpy.ndarray, numpy.generic)))


def _routine_launches(operands, result):
    """Whether a CuPy routine (a function built of kernels: sum, concatenate, zeros, matmul...) launches: unless
    every array it reads, writes or returns is empty (``_launches``: its kernels return on an empty output; an
    empty input alone is not enough, a reduction of one still writes its identity). Kept on the safe side where an
    empty output may follow a launch that reads a non-empty input (nonzero's scan): a launch then."""
    return _launches([x for x in operands if isinstance(x, numpy.ndarray)], result)  # (a scalar result: one element)


def _broadcast_empty(operands):
    """Whether the broadcast shape of ``operands`` (an elementwise kernel's) holds no element (NumPy's error, for
    shapes that do not broadcast, comes later)."""
    try:
        return 0 in numpy.broadcast_shapes(*(x.shape for x in operands if isinstance(x, numpy.ndarray)))
    except ValueError:
        return False


def _check_devices(what, operands):
    """CuPy's checks of a kernel's operands (``_preprocess_args``), made before it launches or, with no elements,
    returns without launching: each device array on the current device, no host array."""
    for x in operands:
        if isinstance(x, ndarray):
            if x._device_id != state.current:
                raise ValueError(f"{what}: The device where the array resides ({x._device_id}) is different from "
                                 f"the current device ({state.current}). Peer access is unavailable between these "
                                 "devices. (CuPy 14's _check_peer_access; the stand-in models devices without it)")
        elif isinstance(x, numpy.ndarray):
            raise TypeError(f"{what}: unsupported type {type(x)}: a host NumPy array mixed with device arrays "
                            "(CuPy does not convert implicitly; use cupy.asarray)")


def _in_order(a, order):
    """``a`` as a host view whose C order is the order ``order`` reads it in (CuPy copies that view in C order):
    'F' reversed, 'A' as 'F' for a Fortran-only array, 'K' by decreasing strides (as NumPy's iterator orders)."""
    host = a.view(numpy.ndarray)
    order = (order or "C").upper()
    if order == "A":
        order = "F" if host.flags.f_contiguous and not host.flags.c_contiguous else "C"
    if order == "F":
        return host.T
    if order == "K":
        return host.transpose(sorted(range(host.ndim), key=lambda axis: -abs(host.strides[axis])))
    return host


def _copy_from_another_device(a, result, what, ordered):
    """CuPy's ``ndarray.copy`` of an array of another device (cupy/_core/core.pyx), which cupy.copy, asarray and
    array, flatten and a copying reshape or ravel take: with the array's device current, a copy kernel makes ``ordered`` (the array in the
    copy's order) contiguous on that device's current stream, unless it is; then a cudaMemcpyAsync on the current
    device's current stream copies that to the new array (``result``, computed by NumPy). CUDA orders that copy
    after nothing on the other device: the array's last writes there must have been waited for (an event, or the
    host), and CuPy's own kernel never is, so copying a non-contiguous array between devices is always a hazard."""
    source, copied = a, f"a copy from device {a._device_id} (cudaMemcpyAsync)"
    if not ordered.flags.c_contiguous:
        with _device_current(a._device_id):
            _check_operands(f"{what}: a copy kernel on device {a._device_id}", [a])
            source = _wrap(numpy.ascontiguousarray(ordered))
        copied += " of what its copy kernel there wrote"
    _refuse_in_capture(f"CuPy's {what}: a copy between devices")
    _ordering.access(_launch_stream(), f"CuPy's {what}: {copied}", reads=[source])
    state._tls.op = f"CuPy's {what}: a copy from device {a._device_id}"
    return _wrap(result)


def _memory_owner(a):
    while isinstance(a.base, numpy.ndarray):
        a = a.base
    return a


def _index_parts(key):
    return key if isinstance(key, tuple) else (key,)


def _gathers(key):
    """Whether indexing with ``key`` is advanced (an array index): anything but ints, slices, None and Ellipsis."""
    return any(isinstance(k, bool) or not isinstance(k, (int, numpy.integer, slice, type(None), type(Ellipsis)))
               for k in _index_parts(key))


def _device_indices(key):
    return [k for k in _index_parts(key) if isinstance(k, ndarray)]


def _device_key(key):
    """CuPy's _prepare_slice_list: each index part that is not an int, a slice, None, Ellipsis or a device array (a
    list, a NumPy array, a bool) is copied to the device first, as ``cupy.array`` copies it (on the current stream
    and device; straight from pinned memory, asynchronously); an empty list is an int32 index there."""
    parts = []
    for k in _index_parts(key):
        if k is None or k is Ellipsis or isinstance(k, (slice, ndarray)) or (
                isinstance(k, (int, numpy.integer)) and not isinstance(k, bool)):
            parts.append(k)
            continue
        index = _to_device(k)
        if isinstance(k, (list, tuple)) and index.size == 0:
            index = index.astype(numpy.int32)
        parts.append(index)
    return tuple(parts) if isinstance(key, tuple) else parts[0]


def _count_masks(key, what):
    """CuPy sizes the result of a boolean index first: a scan kernel reads it on the current stream, and ``int()`` of
    the scan's last element copies it to the host, which waits for that stream (cupy/_core/_routines_indexing.pyx,
    "synchronize!"): work on other streams after it is ordered after that stream's work before it. An empty mask is
    neither scanned nor waited for (_prepare_mask_indexing_single: ``if mask.size == 0``)."""
    for k in _index_parts(key):
        if isinstance(k, ndarray) and k.dtype == numpy.bool_ and k.size:
            _check_operands(f"{what} (a boolean index's scan)", [k])
            _ordering.synchronized(_launch_stream())


def _refuse_device(x, what):
    if isinstance(x, ndarray):
        raise TypeError(f"{what}: expected host data, got a device array")


def _host_view(x):
    return x.view(numpy.ndarray) if isinstance(x, ndarray) else x


def _unwrap(obj):
    if isinstance(obj, ndarray):
        return obj.view(numpy.ndarray)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(result):
    """Device arrays for NumPy results; scalars become 0-d arrays, as CuPy returns them."""
    if isinstance(result, ndarray):
        return result
    if isinstance(result, numpy.ndarray):
        return result.view(ndarray)
    if isinstance(result, numpy.generic):
        return numpy.asarray(result).view(ndarray)
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    return result


def _to_device(a, dtype=None, copy=True, order="K"):
    _refuse_in_capture("an allocation or a copy to the device")
    if isinstance(a, ndarray):
        return _array_from_device_array(a, dtype, copy, order)
    host = numpy.array(a, dtype=dtype, copy=True)
    if host.dtype == object:
        raise ValueError("Unsupported dtype object")
    on = _issuing()
    if not host.size:  # CuPy's _array_default: copy_from_host_async of 0 bytes, which copies nothing
        state._tls.op = "a copy from the host (asarray, of nothing)"
        return host.view(ndarray)
    _ordering.issue(on)  # the copy to the new allocation, on the current stream
    if isinstance(a, numpy.ndarray) and a.ndim and host.dtype == a.dtype and (a.flags.c_contiguous or
                                                                                a.flags.f_contiguous):
        # CuPy (_array_default) copies such an array straight from pinned memory, asynchronously, keeping the buffer
        # alive until the copy is done (its watch list): the host must not write it meanwhile
        _ordering.host_access(on, a, write=False, kept=True)
    state._tls.op = "a copy from the host (asarray)"
    state.ops["copy from the host"] += 1
    return host.view(ndarray)


def _array_from_device_array(a, dtype, copy, order):
    """CuPy's _array_from_cupy_ndarray (cupy/_core/core.pyx): an array of another device is copied to the current one
    whatever ``copy`` says (``ndarray.copy(order)``, then cast here); one of the current device is cast as ``_astype``
    casts it: itself where no copy is needed (nothing launched), else a copy kernel, which ``copy=False`` refuses."""
    order = (order or "K").upper()
    if a._device_id != state.current:
        a, copy, order = a.copy(order=order), None, "K"
    return _astype(a, a.dtype if dtype is None else dtype, order, copy)


def _astype(a, dtype, order, copy):
    """CuPy's ``ndarray._astype`` (cupy/_core/core.pyx), ``copy`` True, None (copy only if needed) or False (never):
    the array itself where the dtype is its own, no copy is asked for and it fits the order ('K' always, 'A' when
    contiguous in either order, 'C' or 'F' when contiguous in that one), whatever its device, nothing launched;
    else copy=False refuses; else a new array on the current device that a copy kernel there fills
    (``elementwise_copy``: another device's array is refused), an empty one filled by nothing."""
    order, dtype, flags = (order or "K").upper(), numpy.dtype(dtype), a.flags
    if dtype == a.dtype and not copy and (order == "K" or order == "A" and flags.forc or
                                          order == "C" and flags.c_contiguous or order == "F" and flags.f_contiguous):
        return a
    if copy is False:
        raise ValueError("Unable to avoid copy while creating an array as requested.")
    if a.size:
        _check_operands("astype", [a])
    else:
        state._tls.op = "CuPy's astype (of an empty array)"
    return _wrap(a.view(numpy.ndarray).astype(dtype, order=order, copy=True))


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return _to_device(a, dtype, copy=copy, order=order)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    out = _to_device(obj, dtype, copy=copy, order=order)
    while out.ndim < ndmin:
        out = out[None]
    return out


def ascontiguousarray(a, dtype=None):
    """CuPy 14's (cupy/_core/core.pyx, ``ascontiguousarray``; a device array only): one C-contiguous already, of the
    dtype asked for, is returned as it is (0-d: raveled, a view), whatever its device, nothing launched; else a new
    C-ordered array on the current device that a copy kernel there fills (``elementwise_copy``: another device's
    array is refused; an empty one launches nothing, so nothing is read)."""
    if not isinstance(a, ndarray):  # Cython's check of the argument's type (its tp_name)
        got = type(a).__name__ if type(a).__module__ == "builtins" else f"{type(a).__module__}.{type(a).__name__}"
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy._core.core._ndarray_base, got {got})")
    if (dtype is None or numpy.dtype(dtype) == a.dtype) and a.flags.c_contiguous:
        return a.reshape(1) if a.ndim == 0 else a
    if a.size:
        _check_operands("ascontiguousarray", [a])
    else:
        _check_devices("ascontiguousarray", [a])
        state._tls.op = "CuPy's ascontiguousarray (of an empty array)"
    return _wrap(numpy.ascontiguousarray(_host_view(a), dtype=dtype))


def _uninitialised(a):
    """CuPy's empty arrays hold whatever the memory pool's block last held (another array's values, freed
    earlier in the step): here all bytes 0xFF (NaN in every float dtype, -1 or the top value in an integer
    one), so that code reading an element it never wrote fails here too (numpy.empty often gives zeros). Copied
    element by element, so every layout takes it: empty_like's order "K" gives a permuted 3-D prototype's axis
    order, neither C nor F, where a flat reshape is a copy (and the array kept numpy.empty's bytes)."""
    host = _host_view(a)
    numpy.copyto(host, numpy.frombuffer(b"\xff" * host.dtype.itemsize, host.dtype).reshape(()), casting="no")
    return a


@contextlib.contextmanager
def _unwritten():
    """The arrays made meanwhile are memory nothing writes yet (``empty``): no write at their allocation."""
    state._tls.unwritten = True
    try:
        yield
    finally:
        state._tls.unwritten = False


def empty(*args, **kwargs):
    with _unwritten():
        return _uninitialised(_creator("empty")(*args, **kwargs))


def empty_like(*args, **kwargs):
    with _unwritten():
        return _uninitialised(_creator("empty_like")(*args, **kwargs))


def copy(a, order="K"):
    """cupy.copy (cupy/_creation/from_data.py): ``a.copy(order=order)``, so another device's array is copied to the
    current one as ``ndarray.copy`` copies it."""
    return a.copy(order=order)


def _stream_of_handle(ptr):
    """The stream a DLPack consumer named by its handle: 1 CUDA's legacy stream (the current device's null stream)."""
    if ptr == 1:
        return _Stream.null
    if ptr == 2:
        raise NotImplementedError("fakecupy: the per-thread default stream is not modelled (gpunn does not use it)")
    stream = _STREAMS.get(ptr)
    if stream is None:
        raise CUDARuntimeError(f"cudaErrorInvalidResourceHandle: stream handle {ptr:#x} is no live stream")
    return stream


def from_dlpack(array, *, device=None, copy=None):
    """cupy.from_dlpack (cupy/_core/dlpack.pyx): the producer's array as a device array on its device, sharing its
    memory; the producer is asked with its device current, for CuPy's current stream there to wait on (so the
    result may be used on that stream). A host producer is refused; a bare capsule is taken as it is."""
    if not hasattr(array, "__dlpack_device__"):
        return _from_capsule(array)
    kind, device_id = array.__dlpack_device__()
    if device is not None:
        raise NotImplementedError("from_dlpack() does not support device yet.")
    if kind == _dlpack.kDLCPU:
        raise TypeError("CPU arrays cannot be directly imported to CuPy. Use `cupy.array(numpy.from_dlpack(input))` "
                        "instead.")
    if kind != _dlpack.kDLCUDA:
        raise TypeError(f"Unsupported array type: {kind}")
    with _device_current(device_id):
        stream = _current_stream().ptr or 1  # the null stream: CUDA's legacy stream's handle
        try:
            capsule = array.__dlpack__(stream=stream, max_version=(1, 0), copy=copy)
        except TypeError:
            if copy is not None:
                raise
            capsule = array.__dlpack__(stream=stream)
    return _from_capsule(capsule)


def _from_capsule(capsule):
    exported = _dlpack.consume(capsule)
    if exported is not None:
        return exported.view()  # the same memory, on its device
    where = _dlpack.device_of(capsule)
    if where is None:
        raise ValueError(f"A DLPack tensor object cannot be consumed multiple times (or object was not a DLPack "
                         f"capsule). Got: {capsule!r}")
    if where[0] != _dlpack.kDLCUDA:
        raise RuntimeError("CuPy is built against CUDA, different from the backend that backs the incoming DLPack "
                           "tensor")
    raise NotImplementedError("fakecupy: a DLPack tensor of another library's device memory is not modelled")


def asnumpy(a, stream=None, order="C", out=None):
    return a.get(order=order, out=out) if isinstance(a, ndarray) else numpy.asarray(a, order=order)


# The keywords CuPy 14 takes where NumPy takes more (v14.2.0): a ufunc call takes out, dtype and casting only
# (cupy/_core/_kernel.pyx, ufunc.__call__: "Wrong arguments" for any other, NumPy's where=, order=, subok= among them);
# no other function takes where= but copyto, nor initial=, like= or device= (inspect.signature over every callable of
# cupy 14.2.0's namespace), and the ndarray reductions (sum, max, mean, any...) take neither where= nor initial=
_UFUNC_KEYWORDS = frozenset({"out", "dtype", "casting"})
_NUMPY_ONLY_KEYWORDS = ("where", "initial", "like", "device")


def _ufunc_keywords(name, kwargs):
    """Refuse, as CuPy's ufunc does, a keyword it lacks (``kwargs``: the call's, less ``out`` where split off)."""
    wrong = {k: v for k, v in kwargs.items() if k not in _UFUNC_KEYWORDS}
    if wrong:
        raise TypeError(f"Wrong arguments {wrong} (cupy.{name} is a CuPy ufunc: it takes out=, dtype= and casting= "
                        "only)")


def _function_keywords(name, kwargs):
    """Refuse NumPy's where=, initial=, like= and device= given to a CuPy function (copyto takes where=)."""
    for k in _NUMPY_ONLY_KEYWORDS:
        if k in kwargs and not (k == "where" and name == "copyto"):
            raise TypeError(f"{name}() got an unexpected keyword argument {k!r} (CuPy 14's cupy.{name} has none)")


def _reduction_keywords(name, method, kwargs):
    """A reduction of a device array (``a.sum()``, ``a.max()``: NumPy's method hands it to the ufunc's ``method``, with
    where=True and no initial unless given): CuPy's methods take neither where= nor initial=."""
    if "initial" in kwargs or kwargs.get("where", True) is not True:
        given = "initial" if "initial" in kwargs else "where"
        raise TypeError(f"{given}= to a reduction of a CuPy array ({name}.{method}): CuPy 14's ndarray reductions "
                        "(sum, max, min, mean, any, all...) and its ufunc methods take no where= or initial=")


# The ufunc methods CuPy 14 implements, and for which ufuncs (cupy/_core/_kernel.pyx v14.2.0, ufunc.reduce,
# accumulate, reduceat: NotImplementedError for any other); outer takes every ufunc, at those with a scatter kernel
_UFUNC_METHODS = {"reduce": ("add", "multiply"), "accumulate": ("add", "multiply"), "reduceat": ("add",)}


def _ufunc_method(name, method):
    """Refuse, as CuPy does, a ufunc method it has not implemented for this ufunc (``numpy.maximum.reduce(a)``:
    ``a.max()`` is the way on a GPU)."""
    if name not in _UFUNC_METHODS.get(method, (name,)):
        raise NotImplementedError(f"`cupy_{name}.{method}` is not supported yet (CuPy 14 implements {method} for "
                                  f"{' and '.join(_UFUNC_METHODS[method])} only: use the array's method or a cupy "
                                  "function)")


def _called_from_numpy():
    """Whether the ufunc being dispatched was called by NumPy's own Python code (its ndarray methods' helpers)."""
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return caller == "numpy" or caller.startswith("numpy.")


def _creator(name):
    fn = getattr(numpy, name)

    def create(*args, **kwargs):
        if isinstance(fn, numpy.ufunc):
            _ufunc_keywords(name, kwargs)
        else:
            _function_keywords(name, kwargs)
        written = [kwargs["out"]] if kwargs.get("out") is not None else []
        if name == "copyto":
            written.append(args[0])
        operands = _flatten(args) + _flatten(list(kwargs.values()))
        _checked(name, operands)
        result = fn(*_unwrap(args), **_unwrap(kwargs))
        if _routine_launches(operands, result):
            _issued(name, operands, writes=written)
        return _wrap(result)

    create.__name__ = name
    return create


def matmul(a, b, /, *, out=None, dtype=None):
    """NumPy's matmul on device arrays, after ``check_matmul_ints``. ``out`` by keyword only (cupy.matmul is a
    generalized ufunc whose keywords are CuPy's own: tests/test_cupy_api.py). ``state.fail == "cublas"``: as CuPy
    without a loadable libcublas."""
    if state.fail == "cublas":
        raise CUDARuntimeError("libcublas.so.13: cannot open shared object file: No such file or directory")
    check_matmul_ints(a, b)
    return _creator("matmul")(a, b, out=out, dtype=dtype)


def take(a, indices, axis=None, out=None):
    """NumPy's take on device arrays, with CuPy's checks of ``out`` (cupy/_core/_routines_indexing.pyx, _take):
    exactly ``a``'s dtype (NumPy casts into another) and the result's shape."""
    if out is not None:
        shape = numpy.shape(indices) if axis is None else (
            a.shape[:axis % a.ndim] + numpy.shape(indices) + a.shape[axis % a.ndim + 1:])
        if out.dtype != a.dtype:
            raise TypeError("Output dtype mismatch")
        if out.shape != shape:
            raise ValueError("Output shape mismatch")
    return _creator("take")(a, indices, axis=axis, out=out)


def check_matmul_ints(a, b):
    """cupy.matmul hands m, n and k to cuBLAS through unchecked ``<int>`` casts (cupy/_core/_routines_linalg.pyx,
    tensordot_core_v11): one over 2**31 - 1 (a batch of 2**31 rows) wraps there. Refused here (OverflowError)."""
    _cython_ints("matmul", **{name: ("int", v) for name, v in zip(("rows", "k", "cols"), a.shape[-2:] + b.shape[-1:])})


_MODULE_NAME = __name__


def __getattr__(name):
    """Every other NumPy function, on device arrays only (host arrays raise, as in CuPy)."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(numpy, name, None)
    if value is None:
        raise AttributeError(f"fakecupy has no attribute {name!r}")
    if name not in _names.CUPY:
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (NumPy has it, CuPy 14 does not: "
                             "tests/fakecupy/names.py)")
    if isinstance(value, (type, numpy.dtype)) or not callable(value):
        return value  # dtypes (cupy.float32), constants (cupy.inf), ...
    wrapped = _creator(name)
    if not hasattr(builtins, name):  # cached as a global, cupy.min would be the min() this module's code calls
        setattr(sys.modules[_MODULE_NAME], name, wrapped)
    return wrapped


# ---- cuRAND --------------------------------------------------------------------------------


class _Random(types.SimpleNamespace):
    pass


class RandomState:
    """cupy.random.RandomState: one "cuRAND generator" per object; ``seed`` re-seeds it in place."""

    def __init__(self, seed=None, method=None):
        if method is not None:
            raise NotImplementedError("fakecupy: RandomState(method=) is not modelled (gpunn uses the default)")
        if state.fail == "curand":
            raise CUDARuntimeError("CURAND_STATUS_INITIALIZATION_FAILED (libcurand not found)")
        _refuse_in_capture("a cuRAND generator created (it allocates its state and seeds it on the device)")
        state.generators += 1
        self._device_id = state.current
        self.seed(seed)

    def seed(self, seed=None):
        if seed is not None and not isinstance(seed, numpy.ndarray):  # CuPy's checks (cupy/random/_generator.py)
            if numpy.asarray(seed).dtype.kind not in "biu":  # a float, or an int past 2**64 (an object array)
                raise TypeError("Seed must be an integer.")
            if not 0 <= int(seed) < 2**64:
                raise ValueError("Seed must be an integer between 0 and 2**64 - 1")
        self._gen = numpy.random.Generator(numpy.random.PCG64(seed))

    def _here(self):
        if state.current != self._device_id:
            raise ValueError(f"RandomState of device {self._device_id} used on device {state.current}")
        if _capturing() is not None:  # CuPy's curand.setStream checks first, before any CUDA call (v14.2.0 l.141-146)
            raise NotImplementedError("calling cuRAND API during stream capture is currently unsupported")
        _refuse_beside_another_threads_capture()
        _ordering.issue(_issuing())  # the draw into a new allocation, on the current stream
        state._tls.op = "a cuRAND draw"
        state.ops["cuRAND draw"] += 1

    def standard_normal(self, size=None, dtype=float):
        dtype = _random_dtype(dtype)
        self._here()
        return _wrap(self._gen.standard_normal(size, dtype=numpy.float64).astype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        dtype = _random_dtype(dtype)
        self._here()
        return _wrap(self._gen.uniform(low, high, size).astype(dtype))

    def permutation(self, a):
        """CuPy's (cupy/random/_generator.py): a Python int is a permuted range; anything else is taken for an
        array to permute, ``a[self._permutation(len(a))]``, so a NumPy integer raises TypeError there."""
        if not isinstance(a, int):
            return a[self.permutation(len(a))]
        self._here()
        return _wrap(self._gen.permutation(a))


class _CURANDError(RuntimeError):
    """cupy_backends.cuda.libs.curand.CURANDError (cupy.cuda.curand.CURANDError): a cuRAND status. Reached as CuPy
    reaches it only: an underscore name here (``fakecupy.CURANDError`` would be a ``cupy.CURANDError``, which CuPy
    lacks: tests/test_cupy_api.py), CuPy's name on the class."""

    def __init__(self, status):
        self.status = status
        super().__init__({201: "CURAND_STATUS_LAUNCH_FAILURE"}[status])


def _refuse_beside_another_threads_capture():
    """A cuRAND draw while another thread holds a capture open on a stream of this device fails with
    CURAND_STATUS_LAUNCH_FAILURE, as on an H200 (CuPy 14.2.0; its check above refuses only a capturing current
    stream): the draw on one thread's legacy stream, the capture another thread's, relaxed, on a non-blocking
    stream (tests/test_graph_gpu.py, session 23), where CuPy's own kernels, its allocations and copies run (which
    call of cuRAND's CUDA fails was not established: modelled is what was seen)."""
    me = threading.get_ident()
    for recording in list(_OPEN_CAPTURES.values()):
        if recording.thread != me and recording.device == state.current:
            raise _CURANDError(201)


def _random_dtype(dtype):
    """CuPy's check (cupy/random/_generator.py, _check_and_get_dtype): cuRAND draws float32 or float64 only."""
    dtype = numpy.dtype(dtype)
    if dtype.char not in ("f", "d"):
        raise TypeError("cupy.random only supports float32 and float64")
    return dtype


random = _Random(RandomState=RandomState)
_CURANDError.__name__ = _CURANDError.__qualname__ = "CURANDError"
cuda.curand.CURANDError = _CURANDError

# ---- cuBLAS (what gpunn.ops.cublas.CupyBlas calls) --------------------------------------------

_CUDA_DTYPES = {0: numpy.dtype(numpy.float32), 1: numpy.dtype(numpy.float64)}
_COMPUTE = {68: "32F", 77: "32F_FAST_TF32", 70: "64F"}
# cublasGemmEx's table of supported types (cuBLAS docs, cublasGemmEx), the rows gpunn can use: compute type ->
# {(Atype = Btype, Ctype)}, cudaDataType values (library_types.h: R_32F 0, R_64F 1, R_16BF 14). The stand-in's
# own, not gpunn.ops.cublas.compute_type, which it checks
_GEMM_TYPES = {68: {(0, 0), (14, 14), (14, 0)}, 77: {(0, 0)}, 70: {(1, 1)}}
# cublasGemmAlgo_t (cublas_api.h): CUBLAS_GEMM_DEFAULT -1, ALGO0..23 0..23, DEFAULT_TENSOR_OP 99, ALGO0..15_TENSOR_OP
# 100..115; another value: CUBLAS_STATUS_NOT_SUPPORTED ("the algorithm algo is not supported")
_GEMM_ALGOS = {-1, 99, *range(24), *range(100, 116)}
_OP_N, _OP_T = 0, 1  # cublasOperation_t (cublas_api.h), not gpunn's constants: the stand-in checks those
_CUPY_HANDLES = 0xCB1A5000  # cupy.cuda.device.get_cublas_handle(): this + the current device's id


def _bf16():
    import ml_dtypes

    return numpy.dtype(ml_dtypes.bfloat16)


def gemm_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
            computeType, algo):
    """cublasGemmEx through CuPy's binding (``CupyBlas``): refused while capturing, as CuPy's setStream
    refuses it; alpha and beta are host addresses, read now."""
    _refuse_in_capture("cuBLAS through CuPy's binding (its setStream raises during capture)")
    _cython_ints("gemmEx", handle=("intptr_t", handle), alpha=("size_t", alpha), A=("size_t", A), B=("size_t", B),
                 beta=("size_t", beta), C=("size_t", C), **{name: ("int", v) for name, v in (
                     ("transa", transa), ("transb", transb), ("m", m), ("n", n), ("k", k), ("Atype", Atype),
                     ("lda", lda), ("Btype", Btype), ("ldb", ldb), ("Ctype", Ctype), ("ldc", ldc),
                     ("computeType", computeType), ("algo", algo))})
    _cupy_handle(handle)
    alpha_v, beta_v = _scalars(alpha, beta, computeType)
    _gemm(transa, transb, m, n, k, alpha_v, A, Atype, lda, B, Btype, ldb, beta_v, C, Ctype, ldc, computeType, algo=algo)


def gemm_strided_batched_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB,
                            beta, C, Ctype, ldc, strideC, batchCount, computeType, algo):
    """cublasGemmStridedBatchedEx through CuPy's binding (``CupyBlas.gemm_batched``, an Ensemble's tf32/bf16
    products): product i reads A + i*strideA, B + i*strideB and writes C + i*strideC (elements; 0 shares a
    matrix), each exactly as gemmEx computes it; refused while capturing, as gemmEx is."""
    _refuse_in_capture("cuBLAS through CuPy's binding (its setStream raises during capture)")
    _cython_ints("gemmStridedBatchedEx", handle=("intptr_t", handle), alpha=("size_t", alpha), A=("size_t", A),
                 B=("size_t", B), beta=("size_t", beta), C=("size_t", C), strideA=("long long", strideA),
                 strideB=("long long", strideB), strideC=("long long", strideC), **{name: ("int", v) for name, v in (
                     ("transa", transa), ("transb", transb), ("m", m), ("n", n), ("k", k), ("Atype", Atype),
                     ("lda", lda), ("Btype", Btype), ("ldb", ldb), ("Ctype", Ctype), ("ldc", ldc),
                     ("batchCount", batchCount), ("computeType", computeType), ("algo", algo))})
    _cupy_handle(handle)
    if batchCount < 1 or min(strideA, strideB, strideC) < 0:
        raise _CUBLASError(_INVALID_VALUE, f"batchCount {batchCount}, strides {strideA}, {strideB}, {strideC}")
    alpha_v, beta_v = _scalars(alpha, beta, computeType)
    sizes = [{0: 4, 1: 8, 14: 2}.get(t, 1) for t in (Atype, Btype, Ctype)]  # float32, float64, bf16 bytes
    for i in range(batchCount):
        _gemm(transa, transb, m, n, k, alpha_v, A + i * strideA * sizes[0], Atype, lda, B + i * strideB * sizes[1],
              Btype, ldb, beta_v, C + i * strideC * sizes[2], Ctype, ldc, computeType, algo=algo)


_C_RANGES = {"int": (-2**31, 2**31), "size_t": (0, 2**64), "intptr_t": (-2**63, 2**63), "long long": (-2**63, 2**63)}


def _cython_ints(fn, **args):
    """The integer arguments of a Cython ``cpdef`` (cupy_backends/cuda/libs/cublas.pyx: ``int m``, ``size_t A``...):
    Cython takes an int or anything with ``__index__`` that fits, and raises TypeError for a float (an ``lda``
    computed with ``/``) and OverflowError for a value out of range; NumPy-backed Python would take either."""
    for name, (ctype, value) in args.items():
        if not isinstance(value, (int, numpy.integer)):
            raise TypeError(f"{fn}: argument {name!r} ({ctype}) must be an integer, got {type(value).__name__}")
        lo, hi = _C_RANGES[ctype]
        if not lo <= int(value) < hi:
            raise OverflowError(f"{fn}: argument {name!r} = {value} does not fit a C {ctype}")


def _cupy_handle(handle):
    """CuPy keeps one cuBLAS handle per device (``cupy.cuda.device.get_cublas_handle()``, of the current device):
    another value (none, a stale one, another device's) is no handle of the current device's context."""
    if handle != _CUPY_HANDLES + state.current:
        raise _CUBLASError(_NOT_INITIALIZED, f"handle {handle:#x} is not device {state.current}'s "
                                             "(cupy.cuda.device.get_cublas_handle())")


def _scalars(alpha, beta, computeType):
    scalar = ctypes.c_double if computeType == 70 else ctypes.c_float
    return scalar.from_address(alpha).value, scalar.from_address(beta).value


class _CUBLASError(RuntimeError):
    """cupy_backends.cuda.libs.cublas.CUBLASError (cublas.pyx, v14.2.0): what CuPy's binding raises for a cuBLAS
    error status; its message is the status's name alone (here ``detail`` says more, for the stand-in's tests)."""

    _NAMES = {1: "CUBLAS_STATUS_NOT_INITIALIZED", 7: "CUBLAS_STATUS_INVALID_VALUE", 15: "CUBLAS_STATUS_NOT_SUPPORTED"}

    def __init__(self, status, detail=""):
        self.status, self.detail = status, detail
        super().__init__(self._NAMES.get(status, f"cuBLAS status {status}"))


_NOT_SUPPORTED = 15


def _gemm(transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, computeType,
          compute=True, stream=None, algo=-1):
    """cublasGemmEx, column-major, on raw device addresses; checks the types against the compute type
    and the operands' addresses (``compute=False``: the checks only). What cuBLAS answers with an error status
    raises CUBLASError (CuPy's binding raises it; the ctypes library returns its status); ``state.cublas_refuses``
    (compute type -> status) makes cuBLAS refuse every product of a compute type."""
    types_ = [_CUDA_DTYPES.get(t) or (_bf16() if t == 14 else None) for t in (Atype, Btype, Ctype)]
    if any(t is None for t in types_) or Atype != Btype:  # (not "None in": dtype("float64") == None)
        raise _CUBLASError(_NOT_SUPPORTED, f"types {Atype}, {Btype}, {Ctype}")
    if (Atype, Ctype) not in _GEMM_TYPES.get(computeType, ()):
        raise _CUBLASError(_NOT_SUPPORTED, f"compute type {computeType} for {types_}")
    if algo not in _GEMM_ALGOS:
        raise _CUBLASError(_NOT_SUPPORTED, f"algo {algo}")
    if state.cublas_refuses.get(computeType):
        raise _CUBLASError(state.cublas_refuses[computeType], f"compute type {computeType} (state.cublas_refuses)")
    if alpha != 1 or beta != 0:
        raise CUDARuntimeError("fakecupy's gemmEx does alpha = 1, beta = 0 only")
    if min(m, n, k) < 0:
        raise _CUBLASError(_INVALID_VALUE, f"m {m}, n {n}, k {k}")
    for name, val, rows in (("transa", transa, m if transa == _OP_N else k), ("transb", transb, k if transb == _OP_N else n)):
        if val not in (_OP_N, _OP_T):
            raise _CUBLASError(_INVALID_VALUE, f"{name} {val}")
    cols_a = k if transa == _OP_N else m
    cols_b = n if transb == _OP_N else k
    first = _flat_memory(A, types_[0], lda * (cols_a - 1) + (m if transa == _OP_N else k))
    second = _flat_memory(B, types_[1], ldb * (cols_b - 1) + (k if transb == _OP_N else n))
    out = _flat_memory(C, types_[2], ldc * (n - 1) + m)
    if not compute:
        return
    _ordering.access(_issuing(stream), "cublasGemmEx", reads=[first, second], writes=[out])
    state.gemms.append(_COMPUTE[computeType])
    state.ops["cublasGemmEx"] += 1
    # column-major X[i, j] = buf[i + j*ld], as strided views (written independently of gpunn's emulate_gemm)
    a = _column_major(first, *((m, k) if transa == _OP_N else (k, m)), lda)
    b = _column_major(second, *((k, n) if transb == _OP_N else (n, k)), ldb)
    op_a, op_b, c = (a if transa == _OP_N else a.T), (b if transb == _OP_N else b.T), _column_major(out, m, n, ldc)
    if (computeType, types_[0], types_[2]) in _PLAIN:
        # the row-major product C^T = op(b)^T op(a)^T that the caller meant, in NumPy's matmul on the same
        # views: what cupy.matmul computes here (so a captured step equals the eager one bit for bit)
        numpy.matmul(op_b.T, op_a.T, out=c.T)
        return
    if computeType == 77:  # TF32 tensor cores: the float32 operands keep 10 mantissa bits (round to nearest)
        op_a, op_b = _tf32(op_a), _tf32(op_b)
    c[...] = (op_a.astype(numpy.float64) @ op_b.astype(numpy.float64)).astype(out.dtype)


_PLAIN = {(68, numpy.dtype(numpy.float32), numpy.dtype(numpy.float32)),
          (70, numpy.dtype(numpy.float64), numpy.dtype(numpy.float64))}


def _column_major(buf, rows, cols, ld):
    if ld < rows:
        raise _CUBLASError(_INVALID_VALUE, f"leading dimension {ld} < rows {rows}")
    return numpy.lib.stride_tricks.as_strided(buf, (rows, cols), (buf.itemsize, ld * buf.itemsize))


def _tf32(x):
    bits = x.view(numpy.uint32).astype(numpy.uint64)
    bits = ((bits + 0x1000) & 0xFFFFE000).astype(numpy.uint32)
    return numpy.where(numpy.isfinite(x), bits.view(numpy.float32), x)


# ---- libcublas through ctypes (what gpunn.ops.cublas.CapturableBlas calls, for graph capture) ----------


class _CFunction:
    """A ctypes foreign function: refuses a call before ``argtypes`` is set, ``argtypes`` that are not the C
    prototype's (``prototype``: cublas_api.h; a long long stride declared c_int would reach the real
    library as an int in a 64-bit slot, its upper half undefined), a wrong argument count, and values
    that ctypes would refuse or truncate; returns the cuBLAS status."""

    def __init__(self, name, impl, prototype):
        self.__name__, self._impl, self._prototype = name, impl, tuple(prototype)
        self.argtypes, self.restype = None, ctypes.c_int

    def __call__(self, *args):
        if self.argtypes is None:
            raise ctypes.ArgumentError(f"{self.__name__}: argtypes not set (ctypes would pass every int as a C int)")
        if tuple(self.argtypes) != self._prototype:
            wrong = [f"argument {i + 1}: {getattr(got, '__name__', got)} for {getattr(want, '__name__', want)}"
                     for i, (got, want) in enumerate(zip(self.argtypes, self._prototype)) if got is not want]
            raise ctypes.ArgumentError(f"{self.__name__}: argtypes are not the C prototype's: "
                                       + ("; ".join(wrong) or f"{len(self.argtypes)} declared, "
                                                                f"{len(self._prototype)} in the prototype"))
        if self.restype is not ctypes.c_int:
            raise ctypes.ArgumentError(f"{self.__name__}: restype must be c_int (cublasStatus_t)")
        if len(args) != len(self.argtypes):
            raise ctypes.ArgumentError(f"{self.__name__}: {len(args)} arguments, {len(self.argtypes)} declared")
        return self._impl(*(_c_value(self.__name__, i, t, a) for i, (t, a) in enumerate(zip(self.argtypes, args))))


def _c_value(fn, i, ctype, value):
    where = f"{fn}: argument {i + 1}"
    if ctype is ctypes.c_void_p:
        if isinstance(value, ctypes.c_void_p):
            return value.value or 0
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64):
            return value or 0
        raise ctypes.ArgumentError(f"{where}: a pointer, got {type(value).__name__}")
    if ctype in (ctypes.c_int, ctypes.c_size_t, ctypes.c_longlong):
        if not isinstance(value, (int, numpy.integer)) or isinstance(value, bool):
            raise ctypes.ArgumentError(f"{where}: an integer, got {type(value).__name__}")
        lo, hi = {ctypes.c_int: (-2**31, 2**31), ctypes.c_size_t: (0, 2**64)}.get(ctype, (-2**63, 2**63))
        if not lo <= int(value) < hi:
            raise ctypes.ArgumentError(f"{where}: {value} does not fit {ctype.__name__}")
        return int(value)
    if getattr(ctype, "_type_", None) is ctypes.c_void_p:  # POINTER(c_void_p): byref(handle)
        target = getattr(value, "_obj", None)
        if not isinstance(target, ctypes.c_void_p):
            raise ctypes.ArgumentError(f"{where}: byref(c_void_p) expected, got {type(value).__name__}")
        return target
    raise ctypes.ArgumentError(f"{where}: fakecupy does not know ctypes type {ctype}")


class _Handle:
    def __init__(self):
        self.stream, self.workspace, self.device = _Stream.null, None, state.current


_HANDLES: dict = {}
_HANDLE_IDS = itertools.count(0x7001)
_NOT_INITIALIZED, _INVALID_VALUE = 1, 7  # cublasStatus_t


def cublas_library():
    """What ``ctypes.CDLL(libcublas)`` gives gpunn.ops.cublas.load_cublas: the six functions
    CapturableBlas calls (GemmEx, and GemmStridedBatchedEx for an Ensemble's products), on handles of
    their own bound to a stream, with a workspace."""

    def create(ref):
        handle = next(_HANDLE_IDS)
        _HANDLES[handle] = _Handle()
        ref.value = handle
        return 0

    def set_stream(handle, stream_ptr):
        h, stream = _HANDLES.get(handle), _STREAMS.get(stream_ptr)
        if h is None:
            return _NOT_INITIALIZED
        if stream is None:
            return _INVALID_VALUE
        # "unconditionally resets the cuBLAS library workspace back to the default workspace pool" (cuBLAS docs,
        # cublasSetStream): a workspace set before it is dropped, so cublasSetWorkspace must come after it
        h.stream, h.workspace = stream, None
        return 0

    def set_workspace(handle, ptr, size):
        h = _HANDLES.get(handle)
        if h is None:
            return _NOT_INITIALIZED
        _flat_memory(ptr, numpy.uint8, size)  # raises unless it is live device memory of that size
        h.workspace = (ptr, size)
        return 0

    def gemm(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
             computeType, algo):
        return batched(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C, Ctype,
                       ldc, 0, 1, computeType, algo)

    def batched(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C,
                Ctype, ldc, strideC, batchCount, computeType, algo):
        """cublasGemmStridedBatchedEx: product i reads A + i*strideA, B + i*strideB and writes C + i*strideC
        (elements; a stride of 0 shares the matrix); cublasGemmEx is the one-product case."""
        h = _HANDLES.get(handle)
        if h is None:
            return _NOT_INITIALIZED
        if batchCount < 1 or min(strideA, strideB, strideC) < 0:
            return _INVALID_VALUE
        alpha_v, beta_v = _scalars(alpha, beta, computeType)  # host pointer mode: read at the call
        recording, current = h.stream._capture, _capturing()
        if current is not None and current is not recording:
            current.invalidate("a cuBLAS call on a handle bound to another stream than the capturing one")
        workspace = h.workspace
        if recording is not None and workspace is None:  # runs on the GPU, so nothing is raised: a hazard
            _ordering.hazards.append(
                f"a cuBLAS product captured on handle {handle:#x} with cuBLAS's default workspace pool, not a "
                "workspace of its own (cublasSetStream resets the handle's workspace: cublasSetWorkspace must come "
                "after it)")
        sizes = [{0: 4, 1: 8, 14: 2}.get(t, 1) for t in (Atype, Btype, Ctype)]  # float32, float64, bf16 bytes
        products = [(A + i * strideA * sizes[0], B + i * strideB * sizes[1], C + i * strideC * sizes[2])
                    for i in range(batchCount)]

        def run(compute=True):
            if workspace is not None and compute:
                _flat_memory(workspace[0], numpy.uint8, workspace[1])  # freed workspace: fails here
            for a, b, c in products:
                _gemm(transa, transb, m, n, k, alpha_v, a, Atype, lda, b, Btype, ldb, beta_v, c, Ctype, ldc,
                      computeType, compute=compute, stream=h.stream, algo=algo)
        try:
            if recording is None:
                run()
            else:
                run(compute=False)  # checked when captured, run at each graph launch
                recording.nodes.append(run)
        except _CUBLASError as exc:  # the library returns the status (nothing recorded)
            return exc.status
        return 0

    def destroy(handle):
        h = _HANDLES.pop(handle, None)
        if h is not None:
            _synchronizes_device(h.device, "cublasDestroy")
            return 0
        # a handle destroyed twice (or never made): the real library frees it again, a use after free that no status
        # reports (a finalizer ignores it), so it is a hazard the tests' conftest fails on
        _ordering.hazards.append(f"cublasDestroy of handle {handle:#x}, which is not alive (destroyed already?)")
        return _NOT_INITIALIZED

    return types.SimpleNamespace(**{name: _CFunction(name, fn, _CUBLAS_PROTOTYPES[name]) for name, fn in (
        ("cublasCreate_v2", create), ("cublasSetStream_v2", set_stream), ("cublasSetWorkspace_v2", set_workspace),
        ("cublasGemmEx", gemm), ("cublasGemmStridedBatchedEx", batched), ("cublasDestroy_v2", destroy))})


def _cublas_prototypes():
    """The ctypes argtypes of cublas_api.h's prototypes (x86-64: handles, streams and pointers void*; the
    enums cublasOperation_t, cudaDataType, cublasComputeType_t, cublasGemmAlgo_t and int are C ints;
    the strides long long; the workspace size size_t)."""
    vp, i, ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
    gemm_head = [vp, i, i, i, i, i, vp]  # handle, transa, transb, m, n, k, alpha
    return {
        "cublasCreate_v2": [ctypes.POINTER(vp)],
        "cublasSetStream_v2": [vp, vp],
        "cublasSetWorkspace_v2": [vp, vp, ctypes.c_size_t],
        "cublasDestroy_v2": [vp],
        # ..., A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, computeType, algo
        "cublasGemmEx": gemm_head + [vp, i, i, vp, i, i, vp, vp, i, i, i, i],
        # ..., A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount,
        # computeType, algo
        "cublasGemmStridedBatchedEx": gemm_head + [vp, i, i, ll, vp, i, i, ll, vp, vp, i, i, ll, i, i, i],
    }


_CUBLAS_PROTOTYPES = _cublas_prototypes()


_cublas_module = types.ModuleType("cupy_backends.cuda.libs.cublas")
_cublas_module.gemmEx = gemm_ex
_cublas_module.gemmStridedBatchedEx = gemm_strided_batched_ex
_cublas_module.CUBLASError = _CUBLASError
_cublas_module.create = lambda: next(_HANDLE_IDS)  # cublasCreate through CuPy's binding (gpunn keeps it for good)


class _CupyHandle:
    """CuPy's cuBLAS handle of one thread on one device (cupy/cuda/device.pyx, v14.2.0: ``_get_handle`` keeps it in a
    ``threading.local``, made at the thread's first ``get_cublas_handle()`` there). When the thread exits, Python drops
    its locals before ``join()`` returns, and the handle's ``__dealloc__`` calls cublasDestroy, which synchronizes the
    device (below): a short-lived thread that used CuPy's cuBLAS ends the captures other threads hold open then."""

    def __init__(self, device):
        self.device = device

    def __del__(self):
        try:
            _synchronizes_device(self.device, "cublasDestroy of CuPy's cuBLAS handle of an exiting thread")
        except Exception:  # noqa: BLE001 - at interpreter exit the module's globals may be gone
            pass


def _get_cublas_handle():
    """cupy.cuda.device.get_cublas_handle(): the current device's handle of this thread (one value per device here:
    ``_cupy_handle`` checks it), made and kept per thread as CuPy does."""
    handles = getattr(state._tls, "cublas_handles", None)
    if handles is None:
        handles = state._tls.cublas_handles = {}
    if state.current not in handles:
        handles[state.current] = _CupyHandle(state.current)
    return _CUPY_HANDLES + state.current


def _synchronizes_device(device, what):
    """``what`` synchronizes the whole device, as cudaDeviceSynchronize: cuBLAS documents that cublasDestroy
    "implicitly calls cudaDeviceSynchronize()" (cuBLAS docs, cublasDestroy). CUDA makes a synchronize of "a broader
    handle which encompasses an active stream capture, such as a device or context handle" invalid while any stream
    of it captures, and an invalid operation during capture invalidates the captures it meets (CUDA Programming
    Guide, stream capture, "Prohibited and Unhandled Operations"), in any capture mode (the mode rules only which
    threads may make "potentially unsafe" calls): so every open capture on the device, on any thread, ends
    invalidated. Documented, not yet observed on gpunn's GPU: the H200 (session 23) showed a capture invalidated by
    what another thread's fit did, and this is the candidate the stand-in models (the caller's own status is not
    modelled: CuPy's __dealloc__ and gpunn's close ignore it)."""
    for recording in list(_OPEN_CAPTURES.values()):
        if recording.device == device:
            recording.invalid = recording.invalid or f"{what} (a device synchronize) while a stream captures"


cuda.device = types.SimpleNamespace(get_cublas_handle=_get_cublas_handle)

# ---- kernels -------------------------------------------------------------------------------


def _typed(what, **checks):
    """A TypeError for an argument that CuPy's Cython signature types (``tuple grid``, ``str code``...) and that is
    not of that type: Cython refuses it (a list for a tuple too), NumPy-backed Python here would not."""
    for name, (value, kind) in checks.items():
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{what}: Argument '{name}' has incorrect type (expected {kind.__name__}, "
                            f"got {type(value).__name__})")


class RawModule:
    """cupy.RawModule: keyword arguments only, the ones cupy/_core/raw.pyx takes (``code``, not ``path``, here)."""

    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=None):
        if path is not None:
            raise NotImplementedError("fakecupy: RawModule(path=) (a cubin or PTX file) is not modelled")
        _typed("RawModule", code=(code, str), options=(options, tuple))  # Cython-typed in cupy/_core/raw.pyx
        self.code, self.options = code, options
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)
        self._signatures = _kernels.parse_signatures(code)
        self._compiled = False

    def compile(self, log_stream=None):
        if state.fail == "compile":
            raise CompileException("nvrtc: error: failed to open libnvrtc-builtins.so (fakecupy)")
        for expr in self.name_expressions or ():
            _kernels.resolve(expr, self._signatures)  # raises for an unknown kernel or wrong template arity
        self._compiled = True

    def get_function(self, name):
        _typed("RawModule.get_function", name=(name, str))
        if not self._compiled:
            self.compile()
        if self.name_expressions and name not in self.name_expressions:
            raise CompileException(f"{name} is not one of the module's name_expressions")
        return RawKernel(None, name, _module=self)


class RawKernel:
    """cupy.RawKernel (the arguments of cupy/_core/raw.pyx; ``_module``: fakecupy's, for RawModule.get_function)."""

    def __init__(self, code, name, options=(), backend="nvrtc", *, translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=None, _module=None):
        if _module is None:
            _typed("RawKernel", code=(code, str), name=(name, str), options=(options, tuple))
        module = _module or RawModule(code=code, options=options)
        if _module is None:
            module.compile()
        self.name = name
        # the parsed signature and template arguments: underscore names (cupy.RawKernel.kernel is its Function)
        self._signature, self._template = _kernels.resolve(name, module._signatures)
        self.attributes = {"max_threads_per_block": 1024}

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        _typed(f"RawKernel {self.name}", grid=(grid, tuple), block=(block, tuple))  # cupy/cuda/function.pyx
        if state.fail == "launch":
            raise CUDARuntimeError("cudaErrorNoKernelImageForDevice: no kernel image is available (fakecupy)")
        recording = (stream or _current_stream())._capture
        if recording is None:
            state.launches.append((self.name, tuple(grid), tuple(block)))
            run = _kernels.prepare(self, grid, block, args, ndarray, state)  # a launch CUDA refuses never runs
            self._accesses(_launch_stream(stream), args)
            state.ops[f"kernel {self._signature.name}"] += 1
            run()
            return
        # captured: checked now; the graph keeps the arguments' addresses (not the arrays) and the
        # scalars' values, as CUDA does, and launches the kernel on whatever memory is there then
        _kernels.prepare(self, grid, block, args, ndarray, state)
        kept = tuple(_Address.of(a) if isinstance(a, ndarray) else a for a in args)

        def replay():
            state.launches.append((self.name, tuple(grid), tuple(block)))
            state.ops[f"kernel {self._signature.name}"] += 1
            now = tuple(a.array() if isinstance(a, _Address) else a for a in kept)
            self._accesses(_issuing(), now)
            _kernels.launch(self, grid, block, now, ndarray, state)
        recording.nodes.append(replay)

    def _accesses(self, stream, args):
        """The launch's reads (pointers to const) and writes (the other pointers), in stream order."""
        reads, writes = [], []
        for p, a in zip(self._signature.params, args):
            if p.pointer and isinstance(a, ndarray):
                (reads if p.const else writes).append(a)
        _ordering.access(stream, f"kernel {self.name}", reads=reads, writes=writes)


class _Address:
    """A device array as a captured kernel argument: its address, shape, strides and dtype only."""

    def __init__(self, start, offset, shape, strides, dtype, device):
        self.start, self.offset, self.shape, self.strides = start, offset, shape, strides
        self.dtype, self.device = dtype, device

    @classmethod
    def of(cls, a):
        root = a
        while isinstance(root.base, numpy.ndarray):
            root = root.base
        if not root.flags.c_contiguous:
            raise CUDARuntimeError("fakecupy: a captured launch on an allocation that is not C-contiguous")
        start = _address(root)
        return cls(start, _address(a) - start, a.shape, a.strides, a.dtype, a._device_id)

    def array(self):
        """The same view of whatever allocation is at the address now (none: freed after capture)."""
        root = _ALLOCATIONS.get(self.start)
        if root is None:
            raise CUDARuntimeError(f"fakecupy: a graph launch reads device address {self.start + self.offset:#x}, "
                                   "freed since the capture (keep every buffer a graph uses alive)")
        view = numpy.ndarray(self.shape, self.dtype, buffer=root.reshape(-1).view(numpy.uint8), offset=self.offset,
                             strides=self.strides).view(ndarray)
        view._device_id = self.device
        return view


_CONVERTERS = ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray")


def _refusing_device_arrays(convert):
    """``numpy.asarray`` and its kin, refusing a device array (or a list or tuple holding one) as CuPy's
    ``ndarray.__array__`` does (cupy/_core/core.pyx: "Implicit conversion to a NumPy array is not allowed").
    fakecupy's arrays are NumPy arrays, so NumPy would take them without asking; fakecupy's own code may."""
    def refuse(a, *args, **kwargs):
        if _holds_device_array(a) and not _called_from_fakecupy():
            raise TypeError(f"numpy.{convert.__name__} of a CuPy array: Implicit conversion to a NumPy array is not "
                            "allowed. Please use `.get()` to construct a NumPy array explicitly (CuPy's "
                            "ndarray.__array__; fakecupy refuses it too)")
        return convert(a, *args, **kwargs)
    refuse.__name__, refuse.__doc__, refuse.__wrapped__ = convert.__name__, convert.__doc__, convert
    return refuse


def _holds_device_array(a):
    return isinstance(a, ndarray) or (isinstance(a, (list, tuple)) and any(isinstance(x, ndarray) for x in a))


def _called_from_fakecupy():
    caller = sys._getframe(2).f_globals.get("__name__", "")
    return caller == _MODULE_NAME or caller.startswith(_MODULE_NAME + ".")


def refuse_host_conversions(monkeypatch=None):
    """Make ``numpy.asarray`` & co. refuse device arrays (with pytest's ``monkeypatch``: for one test), as CuPy does.
    Code that calls them at run time through the numpy module is covered (gpunn's, the tests', numpy.testing's,
    numpy.savetxt's); NumPy's C code is not (``host[...] = device`` copies here: tests/fakecupy_setitem.py refuses
    it in gpunn's modules)."""
    for name in _CONVERTERS:
        convert = getattr(numpy, name)
        if getattr(convert, "__wrapped__", None) is None:
            guarded = _refusing_device_arrays(convert)
            if monkeypatch is None:
                setattr(numpy, name, guarded)
            else:
                monkeypatch.setattr(numpy, name, guarded)


def reset():
    """Back to two devices, device 0 current, no recorded launches."""
    state.current, state.fail, state.device_count = 0, None, 2
    state.free_memory = _State.free_memory
    state._tls.streams = {}
    state.launches, state.gemms, state.generators, state.attribute_queries = [], [], 0, 0
    state.ops = collections.Counter()
    state.captures = state.graph_launches = 0
    _OPEN_CAPTURES.clear()
    state.cublas_refuses = {}
    _ordering.reset()


def in_use() -> bool:
    """Whether this stand-in is the ``cupy`` that gpunn imports (GPUNN_FAKE_CUPY=1, or ``install``). A test that
    reads the stand-in's counters (``state.gemms``, ``state.launches``) must ask this, not whether ``fakecupy``
    is in ``sys.modules``: on a GPU the tests stage collects tests/test_fakecupy.py too, which imports it, so it
    is there beside the real CuPy, its counters never moving."""
    return sys.modules.get("cupy") is sys.modules[__name__]


def load_as_cupy():
    """A second copy of this stand-in, loaded as the module ``cupy`` itself and put in sys.modules
    (GPUNN_FAKE_CUPY=gpu, tests/conftest.py): the GPU machine's arrangement, where ``fakecupy`` (imported by
    tests/test_fakecupy.py and others) is a bystander beside the CuPy in use, and the tests, not told they run
    on the stand-in (GPUNN_FAKE_CUPY is not 1), take their GPU branches (a GPU's tolerances and sizes). That
    is how a test that read the bystander's counters was found (test_ensemble_precision.py's member test)."""
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("cupy", os.path.join(here, "__init__.py"),
                                                  submodule_search_locations=[here])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cupy"] = module
    spec.loader.exec_module(module)
    return module


def _first_numba_compile():
    """numba registers the NumPy functions it compiles by the objects numpy holds at its first compile in the
    process: one under a test's wrappers (a CPU predict in a fake_cupy test) left it refusing
    numpy.ascontiguousarray & co. in every later CPU compile. So the first compile happens here, unwrapped."""
    if _NUMBA_READY or getattr(numpy.ascontiguousarray, "__wrapped__", None) is not None:
        return  # done, or wrapped for the session (GPUNN_FAKE_CUPY: numba sees the wrappers throughout)
    try:
        import numba
    except ImportError:
        return
    numba.njit(lambda a: numpy.ascontiguousarray(a))(numpy.zeros(1))
    _NUMBA_READY.append(True)


_NUMBA_READY: list = []


def install(monkeypatch):
    """Make ``import cupy`` give this module for the rest of a test (with pytest's monkeypatch)."""
    import gpunn.ops.cublas

    reset()
    module = sys.modules[__name__]
    monkeypatch.setattr(gpunn.ops.cublas, "load_cublas", cublas_library)
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    _first_numba_compile()
    refuse_host_conversions(monkeypatch)
    for name, mod in {**_backends_modules(), "cupyx.profiler": cupyx.profiler}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return module


cupyx = types.ModuleType("cupyx")  # host (pinned) buffers: plain NumPy arrays here


def _pinned(make):
    def allocate(shape, dtype=float, order="C"):
        buffer = make(shape, dtype, order)
        _ordering.pinned(buffer)  # freed, it goes back to CuPy's pinned pool at once (fakecupy.ordering)
        return buffer
    return allocate


cupyx.empty_pinned = _pinned(numpy.empty)
cupyx.zeros_pinned = _pinned(numpy.zeros)


def _benchmark(func, args=(), kwargs={}, n_repeat=10000, *, name=None, n_warmup=10, max_duration=float("inf"),
               devices=None):  # noqa: B006 -- CuPy's own signature (cupyx/profiler/_time.py)
    """cupyx.profiler.benchmark: wall times stand in for the device times."""
    import time

    for _ in range(n_warmup):
        func(*args, **(kwargs or {}))
    times = []
    for _ in range(n_repeat):
        t0 = time.perf_counter()
        func(*args, **(kwargs or {}))
        times.append(time.perf_counter() - t0)
    return types.SimpleNamespace(gpu_times=numpy.array([times]), cpu_times=numpy.array(times))


cupyx.profiler = types.SimpleNamespace(benchmark=_benchmark)


def _backends_modules():
    """cupy_backends.cuda.libs.cublas (gemmEx), as package modules for ``from ... import cublas``."""
    names = ["cupy_backends", "cupy_backends.cuda", "cupy_backends.cuda.libs"]
    mods = {name: types.ModuleType(name) for name in names}
    for name in names:
        mods[name].__path__ = []
    mods["cupy_backends"].cuda = mods["cupy_backends.cuda"]
    mods["cupy_backends.cuda"].libs = mods["cupy_backends.cuda.libs"]
    mods["cupy_backends.cuda.libs"].cublas = _cublas_module
    mods["cupy_backends.cuda.libs.cublas"] = _cublas_module
    return mods


_GPUNN_CUPY_MODULES = ("gpunn.ops.cuda", "gpunn.cupy_ops")  # modules that import cupy at the top


def forget_gpunn_state(monkeypatch=None):
    """Drop what gpunn cached about CuPy (the probe, compiled kernels, the cuRAND generators, the
    modules that imported it), so the next use sees the ``cupy`` in sys.modules now."""
    import importlib

    from gpunn import backend, rng

    backend.probe_cuda.cache_clear()
    backend._fallback_announced = False
    for name in ("gpunn.ops.kernels", "gpunn.kernels"):
        try:
            kernels = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(kernels, "module"):
            kernels.module.cache_clear()
            kernels._get.cache_clear()
    getattr(rng, "_GPU_GENERATORS", {}).clear()
    from gpunn.training import graph

    graph.release_capture_resources()  # streams and cuBLAS handles of the previous stand-in
    for name in _GPUNN_CUPY_MODULES:
        sys.modules.pop(name, None)
