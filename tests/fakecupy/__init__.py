"""A NumPy-backed stand-in for the part of CuPy that gpunn uses: tests only, no GPU.

``fakecupy.install(monkeypatch)`` (or the ``fake_cupy`` fixture of tests/test_fakecupy.py) puts it in
``sys.modules["cupy"]``, so ``device="cuda"`` resolves to it and the whole CuPy code path of gpunn runs
on the CPU: ``CupyOps``, the kernel loader, training, datasets, checkpoints and predict. It is strict
where CuPy is strict, so a bug that would fail on a GPU fails here:

- device arrays are ``fakecupy.ndarray`` (a NumPy subclass that knows its device); mixing a host
  ``numpy.ndarray`` into a CuPy function or ufunc raises ``TypeError``, as CuPy does;
- every array an operation touches must live on the current device (``cupy.cuda.Device(i)``), else
  ``ValueError``, as CuPy raises for kernels and cuBLAS: this is what makes ``cuda:1`` testable;
- every ``RawModule``/``RawKernel`` launch is checked against the kernel's signature parsed from the
  CUDA source it was built from (pointer vs scalar, the exact NumPy scalar type of each scalar, array
  dtype, contiguity and size, null pointers, grid and block shape) and then computed by a registered
  NumPy reference (see ``fakecupy.kernels``, which also says how to add a kernel);
- ``cupy_backends.cuda.libs.cublas.gemmEx`` (gpunn's tf32/bf16 products) resolves its raw device
  addresses to live allocations, checks the operand/compute types and computes the column-major
  product (TF32 rounds the float32 operands to 10 mantissa bits).

Not emulated: CUDA graph capture (tests/test_graph_gpu.py is skipped under GPUNN_FAKE_CUPY=1, saying so).

It is no substitute for a GPU run: nothing here compiles or runs CUDA code (tests/test_kernel_compile.py
compiles it, tests/test_kernel_math_host.py runs its per-element math on the host, and
``bench/gpu_check.sh`` runs everything on a real device). What it proves is that the Python side
drives the kernels and CuPy correctly.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import types
import weakref

import numpy

from . import kernels as _kernels

__version__ = "14.0.0-fake"

# ---- devices -------------------------------------------------------------------------------


class _State:
    """Shared counters and switches; the current device and stream are per thread, as in CUDA."""

    device_count = 2  # two devices, so that cuda:1 paths are exercised
    sm_count = 4
    fail = None  # a stage name ("compile", "launch", "curand", "count") that raises, for the probe's tests
    launches: list = []  # (kernel name, grid, block) of every RawKernel launch, for tests to inspect
    gemms: list = []  # the compute type of every cuBLAS gemmEx call
    generators = 0  # cuRAND generators created (RandomState objects)
    attribute_queries = 0  # runtime.getDevice / deviceGetAttribute calls
    _tls = threading.local()

    @property
    def current(self):
        return getattr(self._tls, "current", 0)  # each thread starts on device 0

    @current.setter
    def current(self, value):
        self._tls.current = value

    @property
    def stream(self):
        return getattr(self._tls, "stream", None)  # None: the null stream

    @stream.setter
    def stream(self, value):
        self._tls.stream = value


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
        pass

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _Runtime:
    cudaDevAttrMultiProcessorCount = 16
    CUDARuntimeError = CUDARuntimeError

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
    def deviceGetAttribute(attr, device):
        state.attribute_queries += 1
        if attr != _Runtime.cudaDevAttrMultiProcessorCount:
            raise CUDARuntimeError(f"fakecupy knows only the multiprocessor count, not attribute {attr}")
        return state.sm_count

    @staticmethod
    def getDeviceProperties(device):
        return {"name": f"Fake GPU {device}".encode(), "multiProcessorCount": state.sm_count,
                "totalGlobalMem": 1 << 34, "major": 9, "minor": 0}

    @staticmethod
    def runtimeGetVersion():
        return 13000


class Event:
    """cupy.cuda.Event: everything here runs synchronously, so an event is done once recorded."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.done = False

    def record(self, stream=None):
        self.done = True

    def synchronize(self):
        if not self.done:
            raise CUDARuntimeError("synchronize on an event that was never recorded")

    def query(self):
        return self.done


class _Stream:
    """cupy.cuda.Stream (work runs at once, so ordering is trivially kept): context, record, wait_event."""

    _count = 0

    def __init__(self, null=False, non_blocking=False, ptr=None):
        _Stream._count += 1
        self.ptr = 0 if null else 0x5000 + _Stream._count
        self._previous = []

    def __enter__(self):
        self._previous.append(state.stream)
        state.stream = self
        return self

    def __exit__(self, *exc):
        state.stream = self._previous.pop()
        return False

    def use(self):
        state.stream = self
        return self

    def synchronize(self):
        pass

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        if not isinstance(event, Event):
            raise TypeError(f"wait_event needs an Event, got {type(event).__name__}")


_Stream.null = _Stream(null=True)


def _current_stream():
    return state.stream or _Stream.null


class CompileException(Exception):
    def get_message(self):
        return str(self)


cuda = types.SimpleNamespace(
    Device=Device, runtime=_Runtime, get_current_stream=_current_stream, Stream=_Stream, Event=Event,
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
        _ALLOCATIONS[root.__array_interface__["data"][0]] = root  # so raw pointers (cuBLAS) resolve

    @property
    def device(self):
        return Device(self._device_id)

    @property
    def data(self):
        return MemoryPointer(self.__array_interface__["data"][0], self._device_id)

    def get(self, stream=None, order="C", out=None):
        host = numpy.array(self.view(numpy.ndarray), order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        _refuse_device(arr, "set")
        self.view(numpy.ndarray)[...] = arr

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _check_operands(f"ufunc {ufunc.__name__}", inputs + (out or ()))
        args = [_host_view(x) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_host_view(o) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        _check_operands(func.__name__, _flatten(args) + _flatten(list(kwargs.values())))
        result = func(*_unwrap(args), **_unwrap(kwargs))
        out = kwargs.get("out")
        if out is not None:
            return out
        return _wrap(result)

    def __setitem__(self, key, value):  # a copy kernel on the current device
        _check_operands("__setitem__", [self, value])
        numpy.ndarray.__setitem__(self.view(numpy.ndarray), key, _host_view(value))

    def __iter__(self):  # CuPy iterates over the first axis, yielding device arrays
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        return f"fakecupy.{numpy.ndarray.__repr__(self.view(numpy.ndarray))}"


ndarray.__module__ = "cupy"  # gpunn.backend.backend_of tells device arrays by their type's module


_ALLOCATIONS = weakref.WeakValueDictionary()  # start address -> the NumPy buffer holding device memory


class MemoryPointer:
    """cupy.cuda.MemoryPointer: an address on a device."""

    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = int(ptr), device_id

    def memset_async(self, value, size, stream=None):
        _flat_memory(self.ptr, numpy.uint8, size)[...] = value

    def copy_from_device_async(self, src, size, stream=None):
        _flat_memory(self.ptr, numpy.uint8, size)[...] = _flat_memory(src.ptr, numpy.uint8, size)


def _flat_memory(ptr, dtype, count):
    """``count`` elements of ``dtype`` at device address ``ptr`` (a view into the allocation holding it)."""
    dtype = numpy.dtype(dtype)
    for start, root in list(_ALLOCATIONS.items()):
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


def _check_operands(what, operands):
    for x in operands:
        if isinstance(x, ndarray):
            if x._device_id != state.current:
                raise ValueError(f"{what}: array is on device {x._device_id} but the current device is "
                                 f"{state.current} (CuPy: 'Array device must be same as the current device')")
        elif isinstance(x, numpy.ndarray):
            raise TypeError(f"{what}: unsupported type {type(x)}: a host NumPy array mixed with device arrays "
                            "(CuPy does not convert implicitly; use cupy.asarray)")


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


def _to_device(a, dtype=None, copy=True):
    if isinstance(a, ndarray):
        _check_operands("asarray", [a])
        if dtype is None or numpy.dtype(dtype) == a.dtype:
            return a.copy() if copy else a
        return a.astype(dtype)
    host = numpy.array(a, dtype=dtype, copy=True)
    if host.dtype == object:
        raise ValueError("Unsupported dtype object")
    return host.view(ndarray)


def asarray(a, dtype=None, order=None):
    return _to_device(a, dtype, copy=False)


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    out = _to_device(a, dtype, copy=copy)
    while out.ndim < ndmin:
        out = out[None]
    return out


def ascontiguousarray(a, dtype=None):
    _check_operands("ascontiguousarray", [a])
    return _wrap(numpy.ascontiguousarray(_host_view(a), dtype=dtype))


def asnumpy(a, stream=None, order="C", out=None):
    return a.get(order=order, out=out) if isinstance(a, ndarray) else numpy.asarray(a, order=order)


def _creator(name):
    fn = getattr(numpy, name)

    def create(*args, **kwargs):
        _check_operands(name, _flatten(args) + _flatten(list(kwargs.values())))
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))

    create.__name__ = name
    return create


_MODULE_NAME = __name__


def __getattr__(name):
    """Every other NumPy function, on device arrays only (host arrays raise, as in CuPy)."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(numpy, name, None)
    if value is None:
        raise AttributeError(f"fakecupy has no attribute {name!r}")
    if isinstance(value, (type, numpy.dtype)) or not callable(value):
        return value  # dtypes (cupy.float32), constants (cupy.inf), ...
    wrapped = _creator(name)
    setattr(sys.modules[_MODULE_NAME], name, wrapped)
    return wrapped


# ---- cuRAND --------------------------------------------------------------------------------


class _Random(types.SimpleNamespace):
    pass


class RandomState:
    """cupy.random.RandomState: one "cuRAND generator" per object; ``seed`` re-seeds it in place."""

    def __init__(self, seed=None):
        if state.fail == "curand":
            raise CUDARuntimeError("CURAND_STATUS_INITIALIZATION_FAILED (libcurand not found)")
        state.generators += 1
        self._device_id = state.current
        self.seed(seed)

    def seed(self, seed=None):
        self._gen = numpy.random.Generator(numpy.random.PCG64(seed))

    def _here(self):
        if state.current != self._device_id:
            raise ValueError(f"RandomState of device {self._device_id} used on device {state.current}")

    def standard_normal(self, size=None, dtype=float):
        self._here()
        return _wrap(self._gen.standard_normal(size, dtype=numpy.float64).astype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        self._here()
        return _wrap(self._gen.uniform(low, high, size).astype(dtype))

    def permutation(self, num):
        self._here()
        return _wrap(self._gen.permutation(num))


random = _Random(RandomState=RandomState)

# ---- cuBLAS (what gpunn.ops.cublas.CupyBlas calls) --------------------------------------------

_CUDA_DTYPES = {0: numpy.dtype(numpy.float32), 1: numpy.dtype(numpy.float64)}
_COMPUTE = {68: "32F", 77: "32F_FAST_TF32", 70: "64F"}


def _bf16():
    import ml_dtypes

    return numpy.dtype(ml_dtypes.bfloat16)


def gemm_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
            computeType, algo):
    """cublasGemmEx, column-major, on raw device addresses; checks the types against the compute type."""
    from gpunn.ops import cublas as gc

    types_ = [_CUDA_DTYPES.get(t) or (_bf16() if t == 14 else None) for t in (Atype, Btype, Ctype)]
    if None in types_ or Atype != Btype:
        raise CUDARuntimeError(f"CUBLAS_STATUS_NOT_SUPPORTED: types {Atype}, {Btype}, {Ctype}")
    want = gc.compute_type(types_[0], types_[2], "tf32" if computeType == 77 else "float32")
    if computeType not in _COMPUTE or (want != computeType and not (want == 77 and computeType == 68)):
        raise CUDARuntimeError(f"CUBLAS_STATUS_NOT_SUPPORTED: compute type {computeType} for {types_}")
    scalar = ctypes.c_double if computeType == 70 else ctypes.c_float
    if scalar.from_address(alpha).value != 1 or scalar.from_address(beta).value != 0:
        raise CUDARuntimeError("fakecupy's gemmEx does alpha = 1, beta = 0 only")
    for name, val, rows in (("transa", transa, m if transa == gc.OP_N else k), ("transb", transb, k if transb == gc.OP_N else n)):
        if val not in (gc.OP_N, gc.OP_T):
            raise CUDARuntimeError(f"CUBLAS_STATUS_INVALID_VALUE: {name} {val}")
    cols_a = k if transa == gc.OP_N else m
    cols_b = n if transb == gc.OP_N else k
    first = _flat_memory(A, types_[0], lda * (cols_a - 1) + (m if transa == gc.OP_N else k))
    second = _flat_memory(B, types_[1], ldb * (cols_b - 1) + (k if transb == gc.OP_N else n))
    out = _flat_memory(C, types_[2], ldc * (n - 1) + m)
    state.gemms.append(_COMPUTE[computeType])
    if computeType == 77:  # TF32 tensor cores: the float32 operands keep 10 mantissa bits (round to nearest)
        first, second = _tf32(first), _tf32(second)
    # column-major X[i, j] = buf[i + j*ld], as strided views (written independently of gpunn's emulate_gemm)
    a = _column_major(first, *((m, k) if transa == gc.OP_N else (k, m)), lda).astype(numpy.float64)
    b = _column_major(second, *((k, n) if transb == gc.OP_N else (n, k)), ldb).astype(numpy.float64)
    c = (a if transa == gc.OP_N else a.T) @ (b if transb == gc.OP_N else b.T)
    _column_major(out, m, n, ldc)[...] = c.astype(out.dtype)


def _column_major(buf, rows, cols, ld):
    if ld < rows:
        raise CUDARuntimeError(f"CUBLAS_STATUS_INVALID_VALUE: leading dimension {ld} < rows {rows}")
    return numpy.lib.stride_tricks.as_strided(buf, (rows, cols), (buf.itemsize, ld * buf.itemsize))


def _tf32(x):
    bits = x.view(numpy.uint32).astype(numpy.uint64)
    bits = ((bits + 0x1000) & 0xFFFFE000).astype(numpy.uint32)
    return numpy.where(numpy.isfinite(x), bits.view(numpy.float32), x)


_cublas_module = types.ModuleType("cupy_backends.cuda.libs.cublas")
_cublas_module.gemmEx = gemm_ex
cuda.device = types.SimpleNamespace(get_cublas_handle=lambda: 1)

# ---- kernels -------------------------------------------------------------------------------


class RawModule:
    def __init__(self, code=None, *, options=(), name_expressions=None, backend="nvrtc", **kwargs):
        self.code, self.options = code, tuple(options)
        self.name_expressions = list(name_expressions or [])
        self.signatures = _kernels.parse_signatures(code)
        self._compiled = False

    def compile(self, log_stream=None):
        if state.fail == "compile":
            raise CompileException("nvrtc: error: failed to open libnvrtc-builtins.so (fakecupy)")
        for expr in self.name_expressions:
            _kernels.resolve(expr, self.signatures)  # raises for an unknown kernel or wrong template arity
        self._compiled = True

    def get_function(self, name):
        if not self._compiled:
            self.compile()
        if self.name_expressions and name not in self.name_expressions:
            raise CompileException(f"{name} is not one of the module's name_expressions")
        return RawKernel(None, name, _module=self)


class RawKernel:
    def __init__(self, code, name, options=(), backend="nvrtc", *, _module=None, **kwargs):
        module = _module or RawModule(code=code, options=options)
        if _module is None:
            module.compile()
        self.name = name
        self.kernel, self.template = _kernels.resolve(name, module.signatures)
        self.attributes = {"max_threads_per_block": 1024}

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        if state.fail == "launch":
            raise CUDARuntimeError("cudaErrorNoKernelImageForDevice: no kernel image is available (fakecupy)")
        state.launches.append((self.name, tuple(grid), tuple(block)))
        _kernels.launch(self, grid, block, args, ndarray, state)


def reset():
    """Back to two devices, device 0 current, no recorded launches."""
    state.current, state.stream, state.fail, state.device_count = 0, None, None, 2
    state.launches, state.gemms, state.generators, state.attribute_queries = [], [], 0, 0


def install(monkeypatch):
    """Make ``import cupy`` give this module for the rest of a test (with pytest's monkeypatch)."""
    reset()
    module = sys.modules[__name__]
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    for name, mod in {**_backends_modules(), "cupyx.profiler": cupyx.profiler}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return module


cupyx = types.ModuleType("cupyx")  # host (pinned) buffers: plain NumPy arrays here
cupyx.empty_pinned = lambda shape, dtype=float, order="C": numpy.empty(shape, dtype, order)
cupyx.zeros_pinned = lambda shape, dtype=float, order="C": numpy.zeros(shape, dtype, order)


def _benchmark(func, args=(), kwargs=None, n_repeat=10000, n_warmup=10, **ignored):
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
    for name in _GPUNN_CUPY_MODULES:
        sys.modules.pop(name, None)
