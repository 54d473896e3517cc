"""Matrix products through cuBLAS's GemmEx with an explicit compute type.

CuPy's ``matmul`` picks the cuBLAS compute type from a process-wide setting (``CUPY_TF32``,
``cupy._core._routines_linalg.set_compute_type``), promotes mixed operands to one dtype
(a bfloat16 x bfloat16 product with a float32 result would be computed in bfloat16 and
copied), and refuses to run while a stream is being captured into a CUDA graph. gpunn's
precisions need each product's own types, so it calls ``cublasGemmEx`` itself:

- ``tf32``: float32 in and out, ``CUBLAS_COMPUTE_32F_FAST_TF32`` (TF32 tensor cores). Set per
  call, so nothing leaks to other CuPy code in the process.
- ``bf16``: bfloat16 operands, float32 accumulation (``CUBLAS_COMPUTE_32F``), a bfloat16 or
  float32 result (the weight gradients land in the float32 gradient buffer directly).
- ``float32`` / ``float64``: the plain compute type (used by the CUDA-graph path only; the default
  path keeps CuPy's ``matmul``).

``gemm_plan`` turns a row-major product ``C = A @ B`` (C C-contiguous; A and B C- or
F-contiguous 2-D views, e.g. ``W.T``) into cuBLAS's column-major arguments; ``emulate_gemm``
is a NumPy transcription of what cuBLAS does with those arguments, so the plan is tested on the
CPU. Two callers, each with a one-product ``gemm`` and an Ensemble's strided batched ``gemm_batched``:
CuPy's own cuBLAS handle through ``cupy_backends`` (``CupyBlas``; it sets the
handle's stream on every call, which CuPy forbids during capture), and the cuBLAS library
through ctypes on a handle of gpunn's own, bound to one stream with a preallocated workspace
(``CapturableBlas``, for CUDA-graph capture).
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy

# cuBLAS / CUDA enum values (stable ABI: cublas_api.h, library_types.h)
OP_N, OP_T = 0, 1
CUDA_R_32F, CUDA_R_64F, CUDA_R_16BF = 0, 1, 14
COMPUTE_32F, COMPUTE_32F_FAST_TF32, COMPUTE_64F = 68, 77, 70
GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20  # cuBLAS recommends 32 MiB on Hopper for graph capture

PRECISIONS = ("float32", "tf32", "bf16")


COMPUTE_NAMES = {COMPUTE_32F: "CUBLAS_COMPUTE_32F", COMPUTE_32F_FAST_TF32: "CUBLAS_COMPUTE_32F_FAST_TF32",
                 COMPUTE_64F: "CUBLAS_COMPUTE_64F"}
STATUS_NAMES = {1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
                8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
                13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
                15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}  # cublas_api.h


class GemmError(ValueError):
    """The operands cannot go to cuBLAS as they are (layout or types)."""


class CublasError(RuntimeError):
    """cuBLAS returned an error status for a product on CuPy's handle (CuPy's CUBLASError, which names the status
    only), with what was asked of it: the call, the operands' shapes and dtypes, the compute type and the
    column-major arguments. No fallback: these products are tf32 or bf16 ones (plain float32 and float64 go to
    CuPy's matmul outside a graph), which CuPy's matmul cannot compute with the same types."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def describe_product(call, a, b, out, ctype, plan, count=None) -> str:
    """What a GemmEx call was asked: 'cublasGemmEx of (128, 8) float32 @ (8, 16) float32 -> (128, 16) float32,
    compute type CUBLAS_COMPUTE_32F_FAST_TF32 (column-major m=16 n=128 k=8, ...)'."""
    batch = f"{count} products, " if count is not None else ""
    return (f"{call} of {batch}{tuple(a.shape)} {a.dtype} @ {tuple(b.shape)} {b.dtype} -> {tuple(out.shape)} "
            f"{out.dtype}, compute type {COMPUTE_NAMES.get(ctype, ctype)} (column-major m={plan.m} n={plan.n} "
            f"k={plan.k}, transa={plan.transa} transb={plan.transb}, lda={plan.lda} ldb={plan.ldb} ldc={plan.ldc})")


def status_words(status) -> str:
    return f"{STATUS_NAMES.get(status, 'cuBLAS status')} ({status})"


def cuda_type(dtype) -> int:
    dtype = numpy.dtype(dtype)
    if dtype == numpy.float32:
        return CUDA_R_32F
    if dtype == numpy.float64:
        return CUDA_R_64F
    if dtype.name in ("bfloat16", "uint16"):  # uint16: bf16 bits where ml_dtypes is not installed
        return CUDA_R_16BF
    raise GemmError(f"no cuBLAS type for {dtype}")


def compute_type(a_dtype, c_dtype, precision: str) -> int:
    """The cuBLAS compute type of a product of ``a_dtype`` operands into ``c_dtype``."""
    a_dtype, c_dtype = numpy.dtype(a_dtype), numpy.dtype(c_dtype)
    if a_dtype == numpy.float64 and c_dtype == numpy.float64:
        return COMPUTE_64F
    if a_dtype.name in ("bfloat16", "uint16") and c_dtype.name in ("bfloat16", "uint16", "float32"):
        return COMPUTE_32F  # bf16 inputs, float32 accumulation
    if a_dtype == numpy.float32 and c_dtype == numpy.float32:
        return COMPUTE_32F_FAST_TF32 if precision == "tf32" else COMPUTE_32F
    raise GemmError(f"no cuBLAS product of {a_dtype} operands into {c_dtype}")


def product_type(a, b, out, precision: str) -> int:
    """The compute type of ``out = a @ b`` (compute_type), the operands checked to share a dtype."""
    if b.dtype != a.dtype:
        raise GemmError(f"operands of one product must share a dtype, got {a.dtype} and {b.dtype}")
    return compute_type(a.dtype, out.dtype, precision)


@dataclass(frozen=True)
class GemmPlan:
    """cublasGemmEx(transa, transb, m, n, k, alpha, A=first, lda, B=second, ldb, beta, C, ldc).

    ``first``/``second`` are 0 for the caller's A and 1 for its B: the row-major C = A @ B is the
    column-major C^T = B^T A^T, so cuBLAS's first operand is the caller's B.
    """
    transa: int
    transb: int
    m: int
    n: int
    k: int
    lda: int
    ldb: int
    ldc: int


def _operand(shape, strides, itemsize, name):
    """(op, ld) that make cuBLAS read this row-major (p x q) view as its transpose (q x p)."""
    p, q = shape
    s0, s1 = strides[0] // itemsize, strides[1] // itemsize
    if strides[0] % itemsize or strides[1] % itemsize:
        raise GemmError(f"{name}: strides {strides} are not whole elements")
    if p == 0 or q == 0:  # nothing to read (NumPy 2 gives an empty view strides of 0): any layout will do
        return OP_N, max(1, q)
    # row-major (unit column stride; any row stride >= q): column-major q x p with ld = s0, op N
    if (s1 == 1 or q == 1) and (s0 >= max(1, q) or p == 1):
        return OP_N, max(1, q, s0 if p > 1 else q)
    # column-major (unit row stride): column-major p x q with ld = s1, op T
    if (s0 == 1 or p == 1) and (s1 >= max(1, p) or q == 1):
        return OP_T, max(1, p, s1 if q > 1 else p)
    raise GemmError(f"{name}: a {shape} view with strides {strides} is neither C- nor F-ordered")


def gemm_plan(a_shape, a_strides, b_shape, b_strides, c_shape, c_strides, itemsize_ab, itemsize_c) -> GemmPlan:
    """The cuBLAS arguments of C = A @ B for 2-D views given by shape and byte strides."""
    (n, k), (k2, m) = a_shape, b_shape
    if k != k2 or tuple(c_shape) != (n, m):
        raise GemmError(f"shapes {tuple(a_shape)} @ {tuple(b_shape)} -> {tuple(c_shape)} do not match")
    if n and m and ((n > 1 and c_strides[0] != m * itemsize_c) or (m > 1 and c_strides[1] != itemsize_c)):
        raise GemmError(f"the result must be C-contiguous, strides {c_strides}")
    op_b, ldb = _operand(b_shape, b_strides, itemsize_ab, "B")
    op_a, lda = _operand(a_shape, a_strides, itemsize_ab, "A")
    return GemmPlan(transa=op_b, transb=op_a, m=m, n=n, k=k, lda=ldb, ldb=lda, ldc=max(1, m))


def plan_for(a, b, out) -> GemmPlan:
    return gemm_plan(a.shape, a.strides, b.shape, b.strides, out.shape, out.strides, a.itemsize, out.itemsize)


@dataclass(frozen=True)
class BatchedPlan:
    """cublasGemmStridedBatchedEx: ``plan`` for each of ``count`` products, the k-th reading cuBLAS's first
    operand (the caller's B) at ``stride_first`` x k elements, its second (the caller's A) at
    ``stride_second`` x k and writing C at ``stride_c`` x k. A stride of 0 shares one matrix: an ensemble's
    first layer reads the same batch X in every member's product."""
    plan: GemmPlan
    count: int
    stride_first: int
    stride_second: int
    stride_c: int


def _batch(x, count, name):
    """(2-D shape, 2-D strides, batch stride in elements) of a (count, p, q) stack or one shared (p, q)."""
    if x.ndim == 2:
        return x.shape, x.strides, 0
    if x.ndim != 3 or x.shape[0] != count or x.strides[0] % x.itemsize:
        raise GemmError(f"{name}: a {x.shape} operand is not a stack of {count} matrices")
    return x.shape[1:], x.strides[1:], x.strides[0] // x.itemsize


def batched_plan_for(a, b, out) -> BatchedPlan:
    """The cuBLAS arguments of out[k] = a[k] @ b[k] for (K, n, m) ``out`` (each matrix C-contiguous);
    ``a`` and ``b`` are (K, ., .) stacks or one matrix shared by every k."""
    if out.ndim != 3:
        raise GemmError(f"a batched product writes a (K, n, m) stack, not {out.shape}")
    count = out.shape[0]
    a_shape, a_strides, a_step = _batch(a, count, "A")
    b_shape, b_strides, b_step = _batch(b, count, "B")
    if out.strides[0] % out.itemsize:
        raise GemmError(f"C: strides {out.strides} are not whole elements")
    plan = gemm_plan(a_shape, a_strides, b_shape, b_strides, out.shape[1:], out.strides[1:], a.itemsize,
                     out.itemsize)
    return BatchedPlan(plan, count, b_step, a_step, out.strides[0] // out.itemsize)


def emulate_gemm(plan: GemmPlan, first, second, out, offset_first=0, offset_second=0):
    """What cublasGemmEx does with ``plan`` (alpha 1, beta 0), in NumPy on flat buffers.

    ``first``/``second``/``out`` are the flat memory cuBLAS reads (the caller's B, its A) and writes
    (C); each matrix X (rows x cols, column-major, leading dimension ld) is X[i, j] = buf[i + j*ld].
    """
    def matrix(buf, rows, cols, ld, offset=0):
        idx = offset + numpy.arange(rows)[:, None] + numpy.arange(cols)[None, :] * ld
        return buf[idx].astype(numpy.float64)

    m, n, k = plan.m, plan.n, plan.k
    a = matrix(first, *((m, k) if plan.transa == OP_N else (k, m)), plan.lda, offset_first)
    b = matrix(second, *((k, n) if plan.transb == OP_N else (n, k)), plan.ldb, offset_second)
    c = (a if plan.transa == OP_N else a.T) @ (b if plan.transb == OP_N else b.T)
    idx = numpy.arange(m)[:, None] + numpy.arange(n)[None, :] * plan.ldc
    out[idx] = c.astype(out.dtype)
    return out


class _UnitScalars:
    """GemmEx's alpha = 1 and beta = 0, in host memory (cuBLAS's default pointer mode, read at each call) and
    of the compute type's scalar type: double for COMPUTE_64F, float for the others. Held for the caller's
    life, so that the addresses given to cuBLAS stay valid."""

    def __init__(self):
        self._float = (ctypes.c_float(1.0), ctypes.c_float(0.0))
        self._double = (ctypes.c_double(1.0), ctypes.c_double(0.0))

    def _alpha_beta(self, ctype) -> tuple[int, int]:
        """The host addresses of alpha (1) and beta (0) for a product of compute type ``ctype``."""
        one, zero = self._double if ctype == COMPUTE_64F else self._float
        return ctypes.addressof(one), ctypes.addressof(zero)


class CupyBlas(_UnitScalars):
    """GemmEx on CuPy's cuBLAS handle for the current device (not during stream capture)."""

    def __init__(self):
        from cupy_backends.cuda.libs import cublas

        super().__init__()
        self._cublas = cublas
        self._refused = getattr(cublas, "CUBLASError", ())  # an error status: CuPy raises this (RuntimeError)

    def _failed(self, exc, call, a, b, out, ctype, plan, count=None):
        status = getattr(exc, "status", None)
        return CublasError(f"{describe_product(call, a, b, out, ctype, plan, count)} failed: "
                           f"{status_words(status) if status is not None else exc}", status)

    @staticmethod
    def _done_without_cublas(plan, out) -> bool:
        """An empty product (nothing to write), or one with k = 0 (``out`` zeroed): no call to make."""
        if plan.m == 0 or plan.n == 0 or out.size == 0:
            return True
        if plan.k == 0:
            out.fill(0)
        return plan.k == 0

    def gemm(self, a, b, out, precision="float32"):
        import cupy

        plan = plan_for(a, b, out)
        ctype = product_type(a, b, out, precision)
        if self._done_without_cublas(plan, out):
            return out
        alpha, beta = self._alpha_beta(ctype)
        try:
            self._cublas.gemmEx(
                cupy.cuda.device.get_cublas_handle(), plan.transa, plan.transb, plan.m, plan.n, plan.k,
                alpha, b.data.ptr, cuda_type(b.dtype), plan.lda, a.data.ptr, cuda_type(a.dtype), plan.ldb,
                beta, out.data.ptr, cuda_type(out.dtype), plan.ldc, ctype, GEMM_DEFAULT)
        except self._refused as exc:
            raise self._failed(exc, "cublasGemmEx", a, b, out, ctype, plan) from exc
        return out

    def gemm_rows(self, a, b, out, sizes, precision="float32"):
        """out = a @ b one block of a's rows at a time (``sizes``: the blocks' rows, consecutive from the first row),
        one GemmEx each: a block's rows are what a product of that block alone gives (cuBLAS may choose another
        kernel, with other last bits, for other rows). The stacked chunks of a synthetic task
        (gpunn.datasets.ChunkProducts): a plan per block size, then one call per block on addresses."""
        import cupy

        if sum(sizes) != a.shape[0]:
            raise GemmError(f"blocks of {sum(sizes)} rows for a product of {a.shape[0]}")
        ctype = product_type(a, b, out, precision)
        alpha, beta = self._alpha_beta(ctype)
        handle = cupy.cuda.device.get_cublas_handle()
        types = cuda_type(b.dtype), cuda_type(a.dtype), cuda_type(out.dtype)
        pointers, steps = (b.data.ptr, a.data.ptr, out.data.ptr), (a.strides[0], out.strides[0])
        plans, start = {}, 0
        for rows in sizes:
            plan = plans.get(rows)
            if plan is None:
                plan = plans[rows] = plan_for(a[start:start + rows], b, out[start:start + rows])
            if not (plan.m and plan.n and plan.k):
                self._done_without_cublas(plan, out[start:start + rows])
            else:
                try:
                    self._cublas.gemmEx(
                        handle, plan.transa, plan.transb, plan.m, plan.n, plan.k, alpha, pointers[0], types[0],
                        plan.lda, pointers[1] + start * steps[0], types[1], plan.ldb, beta,
                        pointers[2] + start * steps[1], types[2], plan.ldc, ctype, GEMM_DEFAULT)
                except self._refused as exc:
                    raise self._failed(exc, "cublasGemmEx", a[start:start + rows], b, out[start:start + rows],
                                       ctype, plan) from exc
            start += rows
        return out

    def gemm_batched(self, a, b, out, precision="float32"):
        """out[k] = a[k] @ b[k] for every k in one cublasGemmStridedBatchedEx (an Ensemble's tf32/bf16 products
        outside a CUDA graph); ``a`` or ``b`` may be one matrix shared by all k (stride 0)."""
        import cupy

        bp = batched_plan_for(a, b, out)
        ctype = product_type(a, b, out, precision)
        if self._done_without_cublas(bp.plan, out):
            return out
        plan = bp.plan
        alpha, beta = self._alpha_beta(ctype)
        try:
            self._cublas.gemmStridedBatchedEx(
                cupy.cuda.device.get_cublas_handle(), plan.transa, plan.transb, plan.m, plan.n, plan.k,
                alpha, b.data.ptr, cuda_type(b.dtype), plan.lda, bp.stride_first,
                a.data.ptr, cuda_type(a.dtype), plan.ldb, bp.stride_second,
                beta, out.data.ptr, cuda_type(out.dtype), plan.ldc, bp.stride_c, bp.count, ctype, GEMM_DEFAULT)
        except self._refused as exc:
            raise self._failed(exc, "cublasGemmStridedBatchedEx", a, b, out, ctype, plan, bp.count) from exc
        return out


def _loaded_library(fragment: str) -> str | None:
    """The path of a shared library this process has loaded whose file name holds ``fragment``."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                name = path.rsplit("/", 1)[-1]
                if name.startswith(fragment):
                    return path
    except OSError:
        return None
    return None


_LOADING_HANDLE = None  # a cuBLAS handle gpunn never destroys (it lives as long as the process)
_LOADING = threading.Lock()


def cublas_loaded():
    """Make CuPy load and initialise libcublas (its binding may open the library at the first call): once a
    process, on a handle of gpunn's that is never destroyed. Not CuPy's ``get_cublas_handle()``: that handle
    is the calling thread's, destroyed when the thread exits, and cublasDestroy synchronizes the device
    (cuBLAS docs), which CUDA refuses while any stream captures and which invalidates those captures. A
    thread that set up capture resources (a fit continued there) then ended the capture another thread
    held open as it exited (H200, session 23: tests/test_graph_gpu.py)."""
    global _LOADING_HANDLE
    with _LOADING:
        if _LOADING_HANDLE is None:
            from cupy_backends.cuda.libs import cublas

            _LOADING_HANDLE = cublas.create()


def load_cublas():
    """The libcublas CuPy loaded (``cublas_loaded`` first), through ctypes (GemmError where there is none).
    tests/fakecupy replaces this function with its emulation of the functions CapturableBlas calls."""
    path = _loaded_library("libcublas.so")
    if path is None:
        raise GemmError("libcublas is not loaded in this process (looked in /proc/self/maps)")
    return ctypes.CDLL(path)


class CapturableBlas(_UnitScalars):
    """GemmEx on a cuBLAS handle of gpunn's own, bound to one stream, with a fixed workspace.

    The library is the one CuPy loaded (found in /proc/self/maps), called through ctypes, so no
    CuPy code runs between capture begin and end. Raises ``GemmError`` where that cannot be set
    up (no loaded libcublas, not Linux): the graph path then does not capture.
    """

    def __init__(self, stream_ptr: int):
        import cupy

        super().__init__()
        cublas_loaded()
        lib = load_cublas()
        self._lib = lib
        vp, i32 = ctypes.c_void_p, ctypes.c_int
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
        lib.cublasDestroy_v2.argtypes = [vp]
        lib.cublasGemmEx.argtypes = [vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, vp, i32, i32, vp, vp, i32, i32,
                                     i32, i32]
        i64 = ctypes.c_longlong
        lib.cublasGemmStridedBatchedEx.argtypes = [vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, i64, vp, i32, i32,
                                                   i64, vp, vp, i32, i32, i64, i32, i32, i32]
        for fn in (lib.cublasCreate_v2, lib.cublasSetStream_v2, lib.cublasSetWorkspace_v2, lib.cublasGemmEx,
                   lib.cublasGemmStridedBatchedEx, lib.cublasDestroy_v2):
            fn.restype = i32
        handle = vp()
        self._check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        self.workspace = cupy.empty(WORKSPACE_BYTES, numpy.uint8)
        self._check(lib.cublasSetStream_v2(handle, vp(stream_ptr)), "cublasSetStream")
        self._check(lib.cublasSetWorkspace_v2(handle, vp(self.workspace.data.ptr), WORKSPACE_BYTES),
                    "cublasSetWorkspace")

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise GemmError(f"{what} failed with {status_words(status)}")

    def gemm(self, a, b, out, precision="float32"):
        plan = plan_for(a, b, out)
        ctype = product_type(a, b, out, precision)
        if plan.m == 0 or plan.n == 0 or plan.k == 0:
            raise GemmError("empty products are not captured")
        alpha, beta = self._alpha_beta(ctype)
        vp = ctypes.c_void_p
        status = self._lib.cublasGemmEx(
            self.handle, plan.transa, plan.transb, plan.m, plan.n, plan.k, vp(alpha),
            vp(b.data.ptr), cuda_type(b.dtype), plan.lda, vp(a.data.ptr), cuda_type(a.dtype), plan.ldb,
            vp(beta), vp(out.data.ptr), cuda_type(out.dtype), plan.ldc, ctype, GEMM_DEFAULT)
        if status:
            self._check(status, describe_product("cublasGemmEx", a, b, out, ctype, plan))
        return out

    def gemm_batched(self, a, b, out, precision="float32"):
        """out[k] = a[k] @ b[k] for every k, one cublasGemmStridedBatchedEx (an Ensemble's products, captured
        in its CUDA graph); ``a`` or ``b`` may be one matrix shared by all k (stride 0)."""
        bp = batched_plan_for(a, b, out)
        plan = bp.plan
        ctype = product_type(a, b, out, precision)
        if plan.m == 0 or plan.n == 0 or plan.k == 0 or bp.count == 0:
            raise GemmError("empty products are not captured")
        alpha, beta = self._alpha_beta(ctype)
        vp = ctypes.c_void_p
        status = self._lib.cublasGemmStridedBatchedEx(
            self.handle, plan.transa, plan.transb, plan.m, plan.n, plan.k, vp(alpha),
            vp(b.data.ptr), cuda_type(b.dtype), plan.lda, bp.stride_first,
            vp(a.data.ptr), cuda_type(a.dtype), plan.ldb, bp.stride_second,
            vp(beta), vp(out.data.ptr), cuda_type(out.dtype), plan.ldc, bp.stride_c, bp.count,
            ctype, GEMM_DEFAULT)
        if status:
            self._check(status, describe_product("cublasGemmStridedBatchedEx", a, b, out, ctype, plan, bp.count))
        return out

    def close(self):
        if self.handle is not None:
            self._lib.cublasDestroy_v2(self.handle)
            self.handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
