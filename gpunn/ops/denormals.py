"""Flush-to-zero on the CPU: subnormal floats are treated as zero while gpunn trains.

Why: a unit whose gradient is exactly zero (a dead ReLU) decays Adam's moments by beta each step,
down through the subnormal range (below 1.2e-38 in float32), and x86 arithmetic on subnormals
can take a slow microcode path. Setting the SSE control register's FTZ (results that would be
subnormal become 0) and DAZ (subnormal inputs read as 0) bits for the thread that trains removes
that path for everything on the thread: NumPy's ufuncs, the Numba kernels, and the BLAS calls
made from it. The GPU does the same: CuPy compiles the kernels with ``-ftz=true``.

Numerics: only values below float32's smallest normal (1.18e-38; 2.2e-308 in float64) change,
and they become 0. Adam's update of such an entry is lr * m / (sqrt(v) + eps) with m < 1.2e-38,
under 1e-30 * lr: far below the rounding of any weight it would be added to, so the weights come
out the same as without the flush unless a weight itself is subnormal.

The mode is per thread and is set with glibc's ``fegetmode``/``fesetmode`` (x86-64 Linux); on
other platforms ``flush_denormals()`` does nothing and ``supported()`` is False. A new thread starts
with the mode of the thread that starts it. gpunn's own worker threads (``gpunn.ops.cpu.run_pieces``,
an Ensemble's member groups) take the mode of the thread whose work they run (``flush_mode``,
``follow``), so a product or kernel gives the same bits on one thread or several, in ``fit`` and
outside it. Threads that BLAS libraries start themselves keep the mode they started with: OpenBLAS's,
started when NumPy loads it, compute IEEE subnormals (a product of subnormal inputs under the flush is
0 on one BLAS thread and not on two).
"""
from __future__ import annotations

import contextlib
import ctypes
import platform
import sys

from .. import environment

ENV = "GPUNN_FLUSH_DENORMALS"
FTZ = 1 << 15
DAZ = 1 << 6


class _Mode(ctypes.Structure):  # glibc's femode_t on x86-64
    _fields_ = [("control_word", ctypes.c_ushort), ("reserved", ctypes.c_ushort), ("mxcsr", ctypes.c_uint)]


def _libm():
    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        lib = ctypes.CDLL("libm.so.6")
        get, set_ = lib.fegetmode, lib.fesetmode
    except (OSError, AttributeError):
        return None
    get.argtypes = set_.argtypes = [ctypes.POINTER(_Mode)]
    get.restype = set_.restype = ctypes.c_int
    return get, set_


_LIBM = _libm()


def supported() -> bool:
    return _LIBM is not None


def enabled() -> bool:
    """GPUNN_FLUSH_DENORMALS=0 (false, no, off) turns the flush off (to compare); it is on by default."""
    return environment.flag(ENV, True)


def mxcsr() -> int | None:
    """The calling thread's MXCSR control bits (None where unsupported)."""
    if _LIBM is None:
        return None
    mode = _Mode()
    _LIBM[0](ctypes.byref(mode))
    return mode.mxcsr


_LIMITS = []  # the numpy.finfo objects read before the first flush


def _read_float_limits() -> None:
    """NumPy 1.x works out a float type's limits at its first ``numpy.finfo`` and, with FTZ and DAZ on,
    finds the smallest subnormal to be 0 and warns ("The value of the smallest subnormal for <class
    'numpy.float64'> type is zero"): with NumPy 1.26 each ``gpunn train`` on the CPU printed four such
    warnings, from SciPy's ``finfo(float)`` as Numba compiled the first kernel inside the flush. Read
    before the first flush, they are right, and ``numpy.finfo`` keeps them. (NumPy 2 does not warn.)"""
    if not _LIMITS:
        import numpy

        _LIMITS.extend(numpy.finfo(t) for t in (numpy.float16, numpy.float32, numpy.float64, numpy.longdouble))


def set_flush(on: bool = True) -> int | None:
    """Set or clear FTZ and DAZ on the calling thread; returns the previous MXCSR (None where unsupported)."""
    if _LIBM is None:
        return None
    if on:
        _read_float_limits()
    get, set_ = _LIBM
    mode = _Mode()
    get(ctypes.byref(mode))
    previous = mode.mxcsr
    mode.mxcsr = (previous | FTZ | DAZ) if on else (previous & ~(FTZ | DAZ))
    if mode.mxcsr != previous:
        set_(ctypes.byref(mode))
    return previous


def flush_mode() -> int | None:
    """The calling thread's FTZ and DAZ bits (0 when it does not flush; None where unsupported): what a
    worker thread running a piece of its work takes on (``follow``)."""
    mode = mxcsr()
    return None if mode is None else mode & (FTZ | DAZ)


def follow(bits: int | None) -> None:
    """Give the calling thread the FTZ and DAZ bits ``bits`` (another thread's ``flush_mode()``); None:
    leave its mode alone."""
    if bits is None or _LIBM is None:
        return
    if bits:
        _read_float_limits()
    _restore(bits)


def _restore(previous: int) -> None:
    get, set_ = _LIBM
    mode = _Mode()
    get(ctypes.byref(mode))
    if (mode.mxcsr & (FTZ | DAZ)) != (previous & (FTZ | DAZ)):
        mode.mxcsr = (mode.mxcsr & ~(FTZ | DAZ)) | (previous & (FTZ | DAZ))
        set_(ctypes.byref(mode))


@contextlib.contextmanager
def flush_denormals(on: bool | None = None):
    """FTZ and DAZ on the calling thread inside the block (``on=None``: unless GPUNN_FLUSH_DENORMALS=0);
    the previous mode comes back on exit, also on an exception."""
    if on is None:
        on = enabled()
    if not on or _LIBM is None:
        yield False
        return
    previous = set_flush(True)
    try:
        yield True
    finally:
        _restore(previous)


def describe() -> str:
    if _LIBM is None:
        return "not available on this platform (subnormals computed as IEEE)"
    if not enabled():
        return f"off ({ENV}={environment.text(ENV)})"
    return "FTZ+DAZ on the training thread and gpunn's CPU threads"
