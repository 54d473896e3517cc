"""NumPy's own BLAS, bound with ctypes, for Numba loops that call it without the GIL.

``numpy_blas(dtype)`` gives (gemm, gemv, dot): CBLAS's ``?gemm``, ``?gemv`` and ``?dot`` of the library
``numpy.matmul`` calls (the OpenBLAS inside NumPy's wheels, ``numpy.libs/libscipy_openblas64_*``: ILP64,
symbols ``scipy_cblas_*64_``), as ctypes functions a Numba kernel takes as arguments; or None where that
library or its symbols are not found, or where the functions do not give numpy.matmul's bits on a probe
(checked once per dtype). Used by ``gpunn.ops.ensemble``'s member-group pass: a group of an Ensemble's
members runs its whole forward and backward pass in one Numba call, without taking the GIL between its
products (each product the same BLAS call numpy.matmul makes, so the same bits).
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading

import numpy

ROW_MAJOR, COL_MAJOR, NO_TRANS, TRANS = 101, 102, 111, 112

# (symbol prefix, suffix, integer type): the scipy-openblas64 wheels NumPy >= 2 ships, then plain CBLAS names
_SYMBOLS = (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64),
            ("scipy_cblas_", "", ctypes.c_int), ("cblas_", "", ctypes.c_int))

_LOCK = threading.Lock()
_BOUND: dict = {}


def _libraries():
    """The BLAS libraries bundled with NumPy's wheel (numpy.libs beside the package; .dylibs on macOS)."""
    root = os.path.dirname(os.path.dirname(numpy.__file__))
    here = os.path.dirname(numpy.__file__)
    paths = []
    for pattern in (os.path.join(root, "numpy.libs", "*openblas*"), os.path.join(here, ".dylibs", "*openblas*")):
        paths += sorted(glob.glob(pattern))
    return paths


def _bind(dtype):
    real = ctypes.c_float if dtype == numpy.float32 else ctypes.c_double
    letter = "s" if dtype == numpy.float32 else "d"
    P = ctypes.c_size_t  # addresses: a kernel passes array.ctypes.data
    for path in _libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, I in _SYMBOLS:
            E = ctypes.c_int  # the CBLAS enums
            try:
                return (ctypes.CFUNCTYPE(None, E, E, E, I, I, I, real, P, I, P, I, real, P, I)(
                            (f"{prefix}{letter}gemm{suffix}", lib)),
                        ctypes.CFUNCTYPE(None, E, E, I, I, real, P, I, P, I, real, P, I)((f"{prefix}{letter}gemv{suffix}", lib)),
                        ctypes.CFUNCTYPE(ctypes.c_double, I, P, I, P, I)((f"{prefix}ddot{suffix}", lib)))
            except AttributeError:  # not these names
                continue
    return None


def _probe(dtype, fns) -> bool:
    """The bound functions give numpy.matmul's bits (and numpy.dot's for ddot) on the call forms the member-group
    pass uses: A @ B, A^T @ B, A @ B^T (gemm), A @ v and A^T @ v (gemv)."""
    gemm, gemv, dot = fns
    rng = numpy.random.default_rng(0)
    m, k, n = 37, 29, 23
    A, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    At, Bt = numpy.ascontiguousarray(A.T), numpy.ascontiguousarray(B.T)
    v, w = rng.standard_normal((k, 1)).astype(dtype), rng.standard_normal((m, 1)).astype(dtype)
    one, zero = 1.0, 0.0
    checks = []

    def product(shape, call, expected):  # each into a new NaN buffer: a call refused by BLAS writes nothing
        out = numpy.full(shape, numpy.nan, dtype)
        call(out.ctypes.data)
        checks.append(numpy.array_equal(out, expected))

    product((m, n), lambda c: gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, one, A.ctypes.data, k, B.ctypes.data, n,
                                   zero, c, n), A @ B)
    product((m, n), lambda c: gemm(ROW_MAJOR, TRANS, NO_TRANS, m, n, k, one, At.ctypes.data, m, B.ctypes.data, n,
                                   zero, c, n), At.T @ B)
    product((m, n), lambda c: gemm(ROW_MAJOR, NO_TRANS, TRANS, m, n, k, one, A.ctypes.data, k, Bt.ctypes.data, k,
                                   zero, c, n), A @ Bt.T)
    product((m, 1), lambda c: gemv(COL_MAJOR, TRANS, k, m, one, A.ctypes.data, k, v.ctypes.data, 1, zero, c, 1), A @ v)
    product((k, 1), lambda c: gemv(ROW_MAJOR, TRANS, m, k, one, A.ctypes.data, k, w.ctypes.data, 1, zero, c, 1),
            A.T @ w)
    d = rng.standard_normal(m * 3)
    checks.append(dot(d.size, d.ctypes.data, 1, d.ctypes.data, 1) == numpy.dot(d, d))
    return all(checks)


def numpy_blas(dtype):
    """(gemm, gemv, dot) of NumPy's BLAS for float32 or float64 (dot is always ddot), or None (see the module
    docstring). Bound and probed once per dtype."""
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)):
        return None
    with _LOCK:
        if dtype not in _BOUND:
            try:
                fns = _bind(dtype)
                _BOUND[dtype] = fns if fns is not None and _probe(dtype, fns) else None
            except (OSError, AttributeError, TypeError, ValueError):  # pragma: no cover - an odd library
                _BOUND[dtype] = None
        return _BOUND[dtype]
