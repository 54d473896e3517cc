"""NumPy's own BLAS, for Numba loops that call it without the GIL.

``numpy_blas(dtype)`` gives the addresses of CBLAS's ``?gemm``, ``?gemv`` and ``?dot`` in the library
``numpy.matmul`` calls (the OpenBLAS inside NumPy's wheels, ``numpy.libs/libscipy_openblas64_*``: ILP64,
symbols ``scipy_cblas_*64_``) as a small int64 array ``[gemm, gemv, dot, ilp64]``, which a Numba kernel
takes as an argument and calls through :func:`gemm`, :func:`gemv` and :func:`dot` (intrinsics that call the
address); or None where that library or its symbols are not found, or where those calls do not compile on
this Numba or do not give numpy.matmul's bits on a probe (checked once per dtype, through the intrinsics). The
intrinsics are defined with gpunn's kernels, at the first call of one (gpunn.ops.lazynumba: ``numpy_blas`` calls
one), or by ``_define()``: a kernel of yours that calls them compiles after that.
Used by ``gpunn.ops.ensemble``'s member-group pass: a group of an Ensemble's members runs its whole forward and
backward pass in one Numba call, without taking the GIL between its products (each product the same BLAS
call numpy.matmul makes, so the same bits).
``mkl_blas(dtype)`` gives such an array with MKL's ``?gemm`` and ``?gemv`` (gpunn.ops.gemm's MKL), for a small
net's one-call step under GPUNN_GEMM=mkl (gpunn.ops.mlp_step).

Addresses in an array, not ctypes functions as the kernel's arguments: Numba types each ctypes function
argument in Python on every call (about 1 us each on the project's machine; the group pass took three),
and a ctypes function the kernel read as a global would keep it from being cached.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy

from ..forksafe import ForkSafeLock
from .lazynumba import kernels, numba

ROW_MAJOR, COL_MAJOR, NO_TRANS, TRANS = 101, 102, 111, 112

# (symbol prefix, suffix, integer type): the scipy-openblas64 wheels NumPy >= 2 ships, then plain CBLAS names
_SYMBOLS = (("scipy_cblas_", "64_", ctypes.c_int64), ("cblas_", "64_", ctypes.c_int64),
            ("scipy_cblas_", "", ctypes.c_int), ("cblas_", "", ctypes.c_int))

_LIBRARIES: list = []  # the libraries bound (kept loaded: numpy_blas holds their addresses)

_NumbaError = ()  # numba.core.errors.NumbaError once the kernels are defined (nothing to catch before)


def _libraries():
    """The BLAS libraries bundled with NumPy's wheel (numpy.libs beside the package; .dylibs on macOS)."""
    root = os.path.dirname(os.path.dirname(numpy.__file__))
    here = os.path.dirname(numpy.__file__)
    paths = []
    for pattern in (os.path.join(root, "numpy.libs", "*openblas*"), os.path.join(here, ".dylibs", "*openblas*")):
        paths += sorted(glob.glob(pattern))
    return paths


@kernels(("gemm", "gemv", "dot", "call_int", "_probe_products"))
def _define():
    """Defines the intrinsics and the probe's kernel (gpunn.ops.lazynumba): at the first call of a kernel."""
    global _ir, _cgutils, _nt, _NumbaError, _arg, _call, gemm, gemv, dot, call_int, _probe_products
    from llvmlite import ir as _ir
    from numba import njit
    from numba.core import cgutils as _cgutils
    from numba.core import types as _nt
    from numba.core.errors import NumbaError as _NumbaError
    from numba.extending import intrinsic

    def _arg(context, builder, kind, value, ty, width, real):
        """One C argument of kind E (a CBLAS enum: int), I (an integer of ``width`` bits), R (``real``) or P (an
        address, given as an integer)."""
        if kind == "R":
            return context.cast(builder, value, ty, real)
        wide = context.cast(builder, value, ty, _nt.int64)
        if kind == "P":
            return builder.inttoptr(wide, _ir.IntType(8).as_pointer())
        bits = 32 if kind == "E" else width
        return builder.trunc(wide, _ir.IntType(bits)) if bits < 64 else wide

    def _call(kinds, returns_double, address, ilp64, *args):
        """(signature, code) of an intrinsic f(address, ilp64, *args) that calls the C function at ``address``
        with arguments of ``kinds`` (see _arg; R: float for float32 arguments, else double), its integers
        64-bit where ilp64 != 0, else 32-bit; returning the function's double, or nothing."""
        reals = [t for k, t in zip(kinds, args) if k == "R"]
        real = _nt.float32 if reals and reals[0] == _nt.float32 else _nt.float64
        sig = (_nt.float64 if returns_double else _nt.void)(address, ilp64, *args)

        def codegen(context, builder, signature, values):
            R = context.get_value_type(real)
            result = _cgutils.alloca_once(builder, _ir.DoubleType()) if returns_double else None

            def call(width):
                types = {"E": _ir.IntType(32), "I": _ir.IntType(width), "R": R, "P": _ir.IntType(8).as_pointer()}
                fnty = _ir.FunctionType(_ir.DoubleType() if returns_double else _ir.VoidType(),
                                        [types[k] for k in kinds])
                fn = builder.inttoptr(context.cast(builder, values[0], signature.args[0], _nt.int64),
                                      fnty.as_pointer())
                out = builder.call(fn, [_arg(context, builder, k, v, t, width, real)
                                        for k, v, t in zip(kinds, values[2:], signature.args[2:])])
                if returns_double:
                    builder.store(out, result)

            wide = context.cast(builder, values[1], signature.args[1], _nt.int64)
            with builder.if_else(builder.icmp_signed("!=", wide, _ir.Constant(wide.type, 0))) as (ilp, lp):
                with ilp:
                    call(64)
                with lp:
                    call(32)
            return builder.load(result) if returns_double else context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def gemm(typingctx, address, ilp64, order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        """cblas_?gemm at ``address`` (a, b, c: addresses, array.ctypes.data; ilp64: 64-bit integers)."""
        return _call("EEEIIIRPIPIRPI", False, address, ilp64, order, transa, transb, m, n, k, alpha, a, lda, b, ldb,
                     beta, c, ldc)

    @intrinsic
    def gemv(typingctx, address, ilp64, order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy):
        """cblas_?gemv at ``address``."""
        return _call("EEIIRPIPIRPI", False, address, ilp64, order, trans, m, n, alpha, a, lda, x, incx, beta, y,
                     incy)

    @intrinsic
    def dot(typingctx, address, ilp64, n, x, incx, y, incy):
        """cblas_ddot at ``address``: the float64 dot product."""
        return _call("IPIPI", True, address, ilp64, n, x, incx, y, incy)

    @intrinsic
    def call_int(typingctx, address):
        """call_int(address): calls ``int f(void)`` at ``address`` (the spin loops' sched_yield)."""
        def codegen(context, builder, signature, values):
            fnty = _ir.FunctionType(_ir.IntType(32), [])
            fn = builder.inttoptr(context.cast(builder, values[0], signature.args[0], _nt.int64), fnty.as_pointer())
            return builder.sext(builder.call(fn, []), _ir.IntType(64))

        return _nt.int64(address), codegen

    @njit(cache=True)
    def _probe_products(blas, A, B, At, Bt, v, w, d, outs, dots, one, zero):
        """The call forms of the member-group pass, through the intrinsics (see _probe)."""
        m, k = A.shape
        n = B.shape[1]
        g, ilp = blas[0], blas[3]
        gemm(g, ilp, ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, one, A.ctypes.data, k, B.ctypes.data, n, zero,
             outs[0].ctypes.data, n)
        gemm(g, ilp, ROW_MAJOR, TRANS, NO_TRANS, m, n, k, one, At.ctypes.data, m, B.ctypes.data, n, zero,
             outs[1].ctypes.data, n)
        gemm(g, ilp, ROW_MAJOR, NO_TRANS, TRANS, m, n, k, one, A.ctypes.data, k, Bt.ctypes.data, k, zero,
             outs[2].ctypes.data, n)
        gemv(blas[1], ilp, COL_MAJOR, TRANS, k, m, one, A.ctypes.data, k, v.ctypes.data, 1, zero,
             outs[3].ctypes.data, 1)
        gemv(blas[1], ilp, ROW_MAJOR, TRANS, m, k, one, A.ctypes.data, k, w.ctypes.data, 1, zero,
             outs[4].ctypes.data, 1)
        dots[0] = dot(blas[2], ilp, d.size, d.ctypes.data, 1, d.ctypes.data, 1)


def _bind(dtype):
    """[gemm, gemv, dot, ilp64] (int64) of the first library and symbol names found, or None."""
    letter = "s" if dtype == numpy.float32 else "d"
    for path in _libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, I in _SYMBOLS:
            try:
                fns = [getattr(lib, f"{prefix}{name}{suffix}") for name in (f"{letter}gemm", f"{letter}gemv", "ddot")]
            except AttributeError:  # not these names
                continue
            _LIBRARIES.append(lib)
            return numpy.array([ctypes.cast(f, ctypes.c_void_p).value for f in fns] + [I is ctypes.c_int64],
                               numpy.int64)
    return None


def _probe(dtype, blas, product=None) -> bool:
    """The calls through ``blas`` give the bits of ``product(a, b, out)`` (default numpy.matmul's; and numpy.dot's for
    ddot) on the call forms the member-group pass uses: A @ B, A^T @ B, A @ B^T (gemm), A @ v and A^T @ v (gemv)."""
    if numba is None:
        return False
    rng = numpy.random.default_rng(0)
    m, k, n = 37, 29, 23
    A, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    At, Bt = numpy.ascontiguousarray(A.T), numpy.ascontiguousarray(B.T)
    v, w = rng.standard_normal((k, 1)).astype(dtype), rng.standard_normal((m, 1)).astype(dtype)
    d = rng.standard_normal(m * 3)
    # each into a new NaN buffer: a call refused by BLAS writes nothing
    outs = tuple(numpy.full(shape, numpy.nan, dtype) for shape in ((m, n), (m, n), (m, n), (m, 1), (k, 1)))
    dots = numpy.full(1, numpy.nan)
    try:
        _probe_products(blas, A, B, At, Bt, v, w, d, outs, dots, dtype.type(1), dtype.type(0))
    except _NumbaError:  # the intrinsics do not compile on this Numba: the group pass is not used
        return False
    pairs = ((A, B), (At.T, B), (A, Bt.T), (A, v), (A.T, w))
    expected = [a @ b if product is None else product(a, b, numpy.empty((a.shape[0], b.shape[1]), dtype))
                for a, b in pairs]
    return all(numpy.array_equal(o, e) for o, e in zip(outs, expected)) and dots[0] == numpy.dot(d, d)


def once_per_float_dtype(find):
    """``find(dtype)`` (a binding and its probe) as a function of any dtype: None for all but float32 and float64,
    found once per dtype (under a lock: the member groups' threads may ask at once; a forked child gets a new
    one), and None where ``find`` raised OSError, AttributeError, TypeError or ValueError (an odd library)."""
    bound, lock = {}, ForkSafeLock()

    @functools.wraps(find)
    def once(dtype):
        dtype = numpy.dtype(dtype)
        if dtype not in (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)):
            return None
        with lock.current:
            if dtype not in bound:
                try:
                    bound[dtype] = find(dtype)
                except (OSError, AttributeError, TypeError, ValueError):  # pragma: no cover - an odd library
                    bound[dtype] = None
            return bound[dtype]

    return once


@once_per_float_dtype
def numpy_blas(dtype):
    """[gemm, gemv, dot, ilp64] of NumPy's BLAS for float32 or float64 (dot is always ddot), or None (see the
    module docstring). Bound and probed once per dtype."""
    blas = _bind(dtype)
    return blas if blas is not None and _probe(dtype, blas) else None


@once_per_float_dtype
def mkl_blas(dtype):
    """[gemm, gemv, dot, ilp64] with MKL's ?gemm and ?gemv (gpunn.ops.gemm's MKL, in NumPy's BLAS's integer width:
    MKL's ``_64`` symbols for an ILP64 one) and NumPy's ddot (the generic step sums its squares with NumPy); or None
    where MKL or NumPy's BLAS is not bound, or where the calls do not give gpunn.ops.gemm's MKL products' bits on a
    probe, run as a small net's one-call step runs them: on one MKL thread (gpunn.ops.mlp_step). For that step under
    GPUNN_GEMM=mkl. Bound and probed once per dtype."""
    from . import gemm

    ours, mkl = numpy_blas(dtype), gemm.library("mkl")
    if ours is None or mkl is None or mkl.local_threads is None:
        return None
    letter, suffix = ("s" if dtype == numpy.float32 else "d"), ("_64" if ours[3] else "")
    fns = [getattr(mkl._lib, f"cblas_{letter}{name}{suffix}") for name in ("gemm", "gemv")]
    blas = numpy.array([ctypes.cast(f, ctypes.c_void_p).value for f in fns] + [ours[2], ours[3]], numpy.int64)
    with mkl.one_thread():
        return blas if _probe(dtype, blas, mkl) else None
