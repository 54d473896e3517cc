"""NumPy's own tanh and exp, for Numba loops that call them without the GIL (as gpunn.ops.cblas does NumPy's BLAS).

``numpy_tanh(dtype)`` gives the address of the inner loop ``numpy.tanh`` runs on a float32 or float64 array
(and that loop's data pointer) as a small int64 array ``[loop, data]``, which a Numba kernel takes as an argument
and calls through :func:`loop_inplace`; or None where the loop is not found or does not give numpy.tanh's bits
on a probe (checked once per dtype, through the intrinsic). ``numpy_exp(dtype)`` the same for numpy.exp. Used by
``gpunn.ops.ensemble``'s member-group pass: tanh for tanh hidden layers, exp for sigmoid's 1 / (1 + e^-z)
(gpunn.activations).

NumPy's loops, not Numba's tanh and exp: NumPy 2 computes float32 and float64 tanh with its own SIMD code, whose
bits differ from the C library's tanhf/tanh (what Numba calls) on a fifth to a half of all inputs. The loop is
read from the ufunc's table of legacy inner loops (``PyUFuncObject.functions``): the first entry for the dtype,
the one NumPy's type resolution picks. Its place in the struct is checked (the ufunc's name, numbers of
arguments and loops, the type numbers of every loop) before it is read.
"""
from __future__ import annotations

import ctypes

import numpy

from .cblas import once_per_float_dtype

from .lazynumba import kernels, numba

_NumbaError = ()  # numba.core.errors.NumbaError once the kernels are defined (nothing to catch before)


@kernels(("_unary_loop", "loop_inplace"))
def _define():
    """Defines the intrinsic and its kernel (gpunn.ops.lazynumba): at the first call of a kernel."""
    global _ir, _cgutils, _nt, _NumbaError, _unary_loop, loop_inplace
    from llvmlite import ir as _ir
    from numba import njit
    from numba.core import cgutils as _cgutils
    from numba.core import types as _nt
    from numba.core.errors import NumbaError as _NumbaError
    from numba.extending import intrinsic

    @intrinsic
    def _unary_loop(typingctx, loop, data, src, dst, n, src_step, dst_step):
        """Calls the ufunc inner loop ``void f(char **args, npy_intp *dimensions, npy_intp *steps, void *data)`` at
        address ``loop`` on n elements: args = {src, dst} (addresses), steps in bytes."""
        sig = _nt.void(loop, data, src, dst, n, src_step, dst_step)

        def codegen(context, builder, signature, values):
            i64, i8p = _ir.IntType(64), _ir.IntType(8).as_pointer()
            wide = [context.cast(builder, v, t, _nt.int64) for v, t in zip(values, signature.args)]
            args = _cgutils.alloca_once(builder, i8p, size=2)
            dims = _cgutils.alloca_once(builder, i64, size=1)
            steps = _cgutils.alloca_once(builder, i64, size=2)
            builder.store(builder.inttoptr(wide[2], i8p), args)
            builder.store(builder.inttoptr(wide[3], i8p), builder.gep(args, [_ir.Constant(i64, 1)]))
            builder.store(wide[4], dims)
            builder.store(wide[5], steps)
            builder.store(wide[6], builder.gep(steps, [_ir.Constant(i64, 1)]))
            fnty = _ir.FunctionType(_ir.VoidType(), [i8p.as_pointer(), i64.as_pointer(), i64.as_pointer(), i8p])
            fn = builder.inttoptr(wide[0], fnty.as_pointer())
            builder.call(fn, [args, dims, steps, builder.inttoptr(wide[1], i8p)])
            return context.get_dummy_value()

        return sig, codegen

    @njit(cache=True, nogil=True)
    def loop_inplace(loop, A):
        """A <- f(A) for a C-ordered array A, through ``loop``: numpy_tanh(A.dtype)'s (f = numpy.tanh) or
        numpy_exp(A.dtype)'s (numpy.exp)."""
        _unary_loop(loop[0], loop[1], A.ctypes.data, A.ctypes.data, A.size, A.itemsize, A.itemsize)


def _loop(ufunc, dtype):
    """[loop, data] (int64) of ``ufunc``'s first legacy inner loop from ``dtype`` to ``dtype``, read from its
    PyUFuncObject (NumPy's ufuncobject.h: after the object's header, int nin, nout, nargs, identity; then
    functions, data, int ntypes, int reserved1, name, types), or None where the struct does not read as that."""
    base, head, ptr = id(ufunc), object.__basicsize__, ctypes.sizeof(ctypes.c_void_p)
    at = lambda offset, ctype: ctype.from_address(base + offset).value
    ints = [at(head + 4 * i, ctypes.c_int) for i in range(3)]
    functions, data, ntypes = at(head + 16, ctypes.c_void_p), at(head + 16 + ptr, ctypes.c_void_p), \
        at(head + 16 + 2 * ptr, ctypes.c_int)
    name, types = at(head + 24 + 2 * ptr, ctypes.c_void_p), at(head + 24 + 3 * ptr, ctypes.c_void_p)
    if ints != [ufunc.nin, ufunc.nout, ufunc.nargs] or ntypes != ufunc.ntypes or not (functions and name and types):
        return None
    if ctypes.string_at(name) != ufunc.__name__.encode():
        return None
    numbers = list(ctypes.string_at(types, ntypes * ufunc.nargs))
    expected = [numpy.dtype(c).num for t in ufunc.types for c in t.replace("->", "")]
    if numbers != expected:
        return None
    pair = [dtype.num] * ufunc.nargs
    for i in range(ntypes):
        if numbers[i * ufunc.nargs:(i + 1) * ufunc.nargs] == pair:
            fn = ctypes.c_void_p.from_address(functions + ptr * i).value
            arg = ctypes.c_void_p.from_address(data + ptr * i).value if data else None
            return numpy.array([fn or 0, arg or 0], numpy.int64) if fn else None
    return None


def _probe(dtype, loop, ufunc=numpy.tanh) -> bool:
    """``loop`` through the intrinsic gives ``ufunc``'s bits: on random bit patterns (NaNs, infinities, subnormals
    among them), on normal values, on a fine grid through [-10, 10] and a coarser one through [-800, 800] (exp's
    overflow and subnormal results), in place, as the kernels call it."""
    if numba is None:
        return False
    rng = numpy.random.default_rng(0)
    uint = numpy.uint32 if dtype == numpy.float32 else numpy.uint64
    x = numpy.concatenate([rng.integers(0, numpy.iinfo(uint).max, 20000, dtype=uint, endpoint=True).view(dtype),
                           (rng.standard_normal(20000) * 3).astype(dtype), numpy.linspace(-10, 10, 20001, dtype=dtype),
                           numpy.linspace(-800, 800, 16001, dtype=dtype),
                           numpy.array([0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan], dtype)])
    with numpy.errstate(all="ignore"):
        expected = ufunc(x)
    try:
        loop_inplace(loop, x)
    except _NumbaError:  # the intrinsic does not compile on this Numba: the kernels that need it are not used
        return False
    return x.tobytes() == expected.tobytes()


def _numpy_loop(ufunc, dtype):
    """[loop, data] of the loop ``ufunc`` runs on float32 or float64, or None (see the module docstring)."""
    loop = _loop(ufunc, dtype)
    return loop if loop is not None and _probe(dtype, loop, ufunc) else None


@once_per_float_dtype
def numpy_tanh(dtype):
    """[loop, data] of the loop numpy.tanh runs on float32 or float64, or None. Found and probed once per dtype."""
    return _numpy_loop(numpy.tanh, dtype)


@once_per_float_dtype
def numpy_exp(dtype):
    """[loop, data] of the loop numpy.exp runs on float32 or float64, or None. Found and probed once per dtype."""
    return _numpy_loop(numpy.exp, dtype)
