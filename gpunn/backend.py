"""Device resolution: which array module (NumPy or CuPy) and which device a model runs on.

CuPy is probed once per process: it must import, see a device, and then compile and run a
trivial kernel, run one of CuPy's own elementwise kernels and a cuBLAS product on it (a CuPy
wheel without a CUDA toolkit imports and counts devices fine, then fails at the first compile).
The answer, and the reason when there is no usable GPU, is cached.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import warnings
import weakref
from dataclasses import dataclass

import numpy

from . import environment
from .hints import bracketed_hint, name_hint, value_repr

ENV_DEVICE = "GPUNN_DEVICE"


class DeviceError(RuntimeError):
    """A GPU was asked for explicitly and cannot be used."""


class CPUFallbackWarning(RuntimeWarning):
    """device="auto" found no usable GPU and runs on NumPy: CuPy is installed but cannot use a GPU, or an NVIDIA
    driver is here but CuPy is not (a machine with neither runs on NumPy without it)."""


@dataclass(frozen=True)
class Backend:
    name: str  # "cpu" or "cuda"
    xp: object  # the array module: numpy or cupy
    device_id: int | None = None

    @property
    def device(self) -> str:
        return "cpu" if self.name == "cpu" else f"cuda:{self.device_id}"

    @property
    def is_gpu(self) -> bool:
        return self.name == "cuda"

    def use(self):
        """Context manager that makes this backend's device current (a no-op on CPU)."""
        if self.is_gpu:
            return self.xp.cuda.Device(self.device_id)
        return _NullContext()

    def made_on_device(self, items):
        """The iterator ``items`` with this backend's device current whenever it runs: ``next()``, ``send()``,
        ``throw()`` and ``close()`` go on to ``items`` (as through a ``yield from``; on the CPU it is ``items``), each
        with the device current, and ``items`` is closed so too when this is dropped unclosed or alive at the
        interpreter's exit (from atexit, while CuPy is whole). The device is not held between calls, so the consumer
        has its own device current between them (a ``with use():`` around a ``yield`` would leave it switched until
        the generator ends or is collected). On the CPU, with no device to
        make current, ``items`` itself (no layer on every batch of the hot path: 0.2 of 0.5 us per batch)."""
        if not self.is_gpu:
            return iter(items)
        return _MadeOnDevice(self, iter(items))

    def close_on_device(self, items):
        """``items.close()``, where it has one (a generator: its ``finally`` runs), with this backend's device
        current, the consumer's current again after: how a pass closes what it opened, also when it ends early."""
        close = getattr(items, "close", None)
        if close is not None:
            with self.use():
                close()

    def to_host(self, array):
        return array.get() if self.is_gpu else array

    def describe(self) -> str:
        if not self.is_gpu:
            return "cpu (NumPy)"
        props = self.xp.cuda.runtime.getDeviceProperties(self.device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return f"cuda:{self.device_id} ({name}, CuPy {self.xp.__version__})"


class _MadeOnDevice:
    """Backend.made_on_device's iterator on a GPU: each call into ``items`` with the backend's device current. A
    class, not a wrapping generator, which takes send() and throw() at its own ``yield`` (a value sent was lost, an
    error thrown raised there and ``items`` closed) where the CPU's ``items`` takes them. Within 10% of the
    generator's cost per item with a null device context (0.42 against 0.40 us, best of 15 x 20 x 2000 items,
    interleaved, loaded 2-core EPYC; 1.31 against 1.22 under heavier load; the device switch itself not counted);
    its weakref.finalize adds about 2-3 us per pass (made and closed: 2.4-3.9 against 0.9-1.2 us, load ~5)."""

    __slots__ = ("_items", "_backend", "_closing", "__weakref__")

    def __init__(self, backend, items):
        self._items, self._backend = items, backend
        # dropped unclosed (a loop left by a break or an error), items is closed, as a generator is; alive at the
        # interpreter's exit, weakref.finalize closes it from atexit, while CuPy is whole: a __del__ ran during the
        # teardown of modules, with cupy's names None ("Exception ignored ... 'NoneType' has no attribute 'Device'")
        self._closing = weakref.finalize(self, backend.close_on_device, items)

    def __iter__(self):
        return self

    def __next__(self):
        with self._backend.use():
            return next(self._items)

    def send(self, value):
        with self._backend.use():
            return self._items.send(value)

    def throw(self, *exception):
        with self._backend.use():
            return self._items.throw(*exception)

    def close(self):
        self._closing()  # (once: a second close() does nothing, as a closed generator's)


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


CPU = Backend("cpu", numpy)


# The reason where neither a GPU nor CuPy is here: "auto" then runs on the CPU without a CPUFallbackWarning. Nothing
# asked for a GPU (no driver, no gpunn[cuda1X]), so there is nothing to fix, and a note on every run of a laptop
# (with a pip hint that cannot help there) is noise; JAX warns likewise only where a GPU may be present.
NO_GPU_HERE = "this machine has no NVIDIA driver (no nvidia-smi on the PATH) and CuPy is not installed"


def nvidia_driver_found() -> bool:
    """Whether the machine shows an NVIDIA driver: nvidia-smi on the PATH, where the Makefile's
    scripts/cuda_extra.py looks, or the Linux kernel module's /proc/driver/nvidia."""
    import shutil

    return shutil.which("nvidia-smi") is not None or os.path.isdir("/proc/driver/nvidia")


@functools.lru_cache(maxsize=1)
def probe_cuda() -> tuple[object | None, int, str]:
    """Return (cupy module or None, device count, reason when unusable). Runs once."""
    try:
        import cupy
    except ImportError:
        if not nvidia_driver_found():
            return None, 0, NO_GPU_HERE
        return None, 0, "CuPy is not installed (pip install 'gpunn[cuda12]' or 'gpunn[cuda13]')"
    except Exception as exc:  # a broken CuPy install must not break the CPU path
        return None, 0, f"CuPy failed to import: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        text = str(exc)
        if "insufficient" in text.lower() or "driver" in text.lower():
            return None, 0, f"the NVIDIA driver is missing or too old for this CuPy build ({text})"
        return None, 0, f"no CUDA device is usable ({text})"
    if count == 0:
        return None, 0, "no CUDA device was found"
    problem = _smoke_test(cupy)
    if problem:
        return None, 0, problem
    return cupy, count, ""


PROBE_KERNEL = r"""
extern "C" __global__ void gpunn_probe(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = 2.0f * x[i] + 1.0f;
}
"""

_TOOLKIT_HINT = ("CuPy needs the CUDA toolkit libraries (NVRTC, cuBLAS, ...) of its CUDA major: "
                 "pip install 'gpunn[cuda12]' or 'gpunn[cuda13]' (they bring cupy-cuda1Xx[ctk]), or a system CUDA toolkit")


def _smoke_test(cupy) -> str:
    """Compile and run a trivial kernel, a CuPy elementwise op and a cuBLAS product on device 0; '' if all work.
    What gpunn's GPU path uses: its own kernels (NVRTC), CuPy's, and cuBLAS for every matrix product. Not cuRAND:
    gpunn draws from its own Philox kernel (gpunn.rng), so a missing cuRAND must not send a run to the CPU."""
    stage = "creating a CUDA context"
    try:
        with cupy.cuda.Device(0):
            stage = "allocating device memory"
            x = cupy.asarray(numpy.arange(8, dtype=numpy.float32))
            stage = "compiling a kernel with NVRTC"
            kernel = cupy.RawKernel(PROBE_KERNEL, "gpunn_probe")
            kernel.attributes  # noqa: B018 -- RawKernel compiles lazily; this forces it
            stage = "running a kernel"
            kernel((1,), (32,), (x, numpy.int32(8)))
            stage = "running CuPy's own elementwise kernels"
            y = x * 2
            stage = "multiplying matrices with cuBLAS"
            p = cupy.matmul(x.reshape(2, 4), x.reshape(4, 2))
            stage = "copying results back"
            got, product = y.get(), p.get()
    except Exception as exc:  # anything: the CPU path must stay usable
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        hint = f"; {_TOOLKIT_HINT}" if "compil" in stage or "cuBLAS" in stage or "elementwise" in stage else ""
        return f"CuPy sees a CUDA device but {stage} failed ({type(exc).__name__}: {text}){hint}"
    launched = 2 * numpy.arange(8, dtype=numpy.float32) + 1  # x after the kernel: small integers, so exact products
    if not numpy.array_equal(got, 2 * launched) or not numpy.array_equal(product, launched.reshape(2, 4) @ launched.reshape(4, 2)):
        return "CuPy sees a CUDA device but a test kernel computed wrong results"
    return ""


_fallback_announced = False


def host_array(array) -> numpy.ndarray:
    """A C-contiguous NumPy array of ``array``'s values: a CuPy array is copied to the host."""
    return numpy.ascontiguousarray(array.get() if hasattr(array, "get") else array)


def user_stacklevel() -> int:
    """The stacklevel, for a warning raised in the caller, of the first frame outside the gpunn package:
    the user's line that led to it (MLP(...), datasets.make(...), fit(...)), not the gpunn line inside. A
    ``contextlib`` frame between gpunn's is passed over too (a warning given as a gpunn ``with`` block ends)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 2
    while frame is not None and (frame.f_code.co_filename.startswith(package)
                                 or frame.f_code.co_filename == contextlib.__file__):
        frame, level = frame.f_back, level + 1
    return level


def _announce_fallback(reason: str) -> None:
    global _fallback_announced
    if not _fallback_announced:
        _fallback_announced = True
        warnings.warn(f"gpunn: running on CPU (NumPy): {reason}", CPUFallbackWarning, stacklevel=user_stacklevel())


# the index in the digits 0-9 only, as every number gpunn reads from a name or the environment: \d took other
# scripts' digits too (cuda:٣ ran as cuda:3)
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|gpu)(?::([0-9]+))?$")


def resolve(device: str | Backend | None = "auto") -> Backend:
    """Resolve "auto" | "cpu" | "cuda" | "cuda:N" (or the GPUNN_DEVICE override) to a Backend. "gpu" and "gpu:N"
    are the same as "cuda" and "cuda:N" (JAX's and TensorFlow's name; CUDA is the one kind of GPU gpunn runs on).
    "auto:N" is "cuda:N" where a GPU is usable and the CPU otherwise (a GPU N that does not exist is refused, not
    a reason to fall back); "cpu:0" is "cpu", as "cuda:0" is "cuda".

    The environment variable wins over "auto" only, so code that names a device keeps it.
    """
    if isinstance(device, Backend):
        return device
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):  # (as _parsed reads it:
        # device="AUTO" went past GPUNN_DEVICE)
        device = device_setting()
        if device != "auto":  # an error must say the device came from the environment, not the caller
            try:
                return _resolve(device)
            except DeviceError as exc:
                raise DeviceError(f"{ENV_DEVICE}={os.environ.get(ENV_DEVICE)!r}: {exc}") from None
    return _resolve(device)


def device_setting() -> str:
    """GPUNN_DEVICE as written (less the spaces around it), "auto" where unset or blank. A value resolve does not
    take as a device name is refused (a SettingError naming the variable and quoting its value as set, spaces
    included, as every variable's refusal does); whether the device is here is resolve's to say."""
    device = environment.text(ENV_DEVICE) or "auto"
    try:
        _parsed(device)
    except ValueError:  # in the form every variable's refusal has: NAME='value' is not what it takes (...; unset: ...)
        one_cpu = "the CPU backend has one device, cpu; " if _DEVICE_RE.match(device.lower()) else ""
        meant = "" if one_cpu else name_hint(device, _device_names(device), "device")  # cdua, as device="cdua"
        raise environment.refusal(ENV_DEVICE, f"auto, cpu, cuda or cuda:N ({one_cpu}{meant + ' ' if meant else ''}"
                                              "unset: auto)") from None
    return device


DEVICE_NAMES = ("'auto'", "'cpu'", "'cuda'", "'cuda:N'")  # what resolve takes, as its refusal lists them


def is_device_name(device: str) -> bool:
    """Whether ``device`` is written as resolve takes it (whether that device exists is resolve's to say)."""
    return bool(_DEVICE_RE.match(device.strip().lower()))


def unknown_device(device, names=DEVICE_NAMES) -> ValueError:
    """The refusal of a device name resolve does not take, listing ``names`` (gpunn bench adds its own 'all'), with
    the name meant where there is one (cdua: 'cuda'; cdua:1: 'cuda:1')."""
    meant = bracketed_hint(device, _device_names(device, names), "device")
    return ValueError(f"unknown device {device!r}{meant}; use {', '.join(names[:-1])} or {names[-1]}")


def _device_names(device, names=DEVICE_NAMES) -> list:
    """The names an unknown ``device`` may stand for: ``names`` but cuda:N, and cuda with its index in the digits 0-9
    (cdua:1: cuda:1; cuda:١, another script's 1, which resolve refuses: cuda:1, not itself)."""
    index = device.partition(":")[2]
    known = [name for listed in names for name in re.findall(r"'([^']+)'", listed) if name != "cuda:N"]
    return known + ([f"cuda:{int(index)}"] if index.isdecimal() else [])


def _parsed(device) -> tuple[str, str | None]:
    """(kind, index or None) of a device name resolve takes; any other is refused."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', not {value_repr(device)}")
    match = _DEVICE_RE.match(device.strip().lower())
    if not match:
        raise unknown_device(device)
    kind, index = match.group(1), match.group(2)
    if kind == "cpu" and index not in (None, "0"):
        raise ValueError(f"unknown device {device!r}; the CPU backend has one device, 'cpu'")
    return kind, index


def _resolve(device) -> Backend:
    kind, index = _parsed(device)
    if kind == "cpu":
        return CPU
    cupy, count, reason = probe_cuda()
    wanted = int(index) if index is not None else None
    if kind == "auto" and cupy is None:
        if reason != NO_GPU_HERE:
            _announce_fallback(reason)
        return CPU
    if cupy is None:
        # device 'cpu', as the request itself is written: the words of MLP(device=...) and gpunn's --device alike
        raise DeviceError(f"device {device!r} was requested but {reason}. Use device 'cpu' or 'auto'.")
    wanted = 0 if wanted is None else wanted
    if wanted >= count:  # "auto:N" too: a GPU that does not exist is not a reason to fall back
        raise DeviceError(f"device {device!r} was requested but only {count} CUDA device(s) exist (cuda:0..cuda:{count - 1})")
    return Backend("cuda", cupy, wanted)


def is_device_array(array) -> bool:
    """Whether ``array`` is a CuPy array, told by its type's module. Not ``not isinstance(array, numpy.ndarray)``:
    a CuPy array is no NumPy array, but tests/fakecupy's device arrays are NumPy subclasses, so such a test would
    send them down the host path there and the device path only on a GPU."""
    return type(array).__module__.startswith("cupy")


def backend_of(array) -> Backend:
    """The backend an array lives on (for inputs already on a device)."""
    if is_device_array(array):
        return Backend("cuda", sys.modules["cupy"], array.device.id)
    return CPU
