"""CupyOps: the Ops of a training step as fused CUDA kernels (kernels/*.cu) on CuPy arrays.

Each method is one kernel launch where the generic ``Ops`` (gpunn/ops/base.py) runs several CuPy
expressions. Kernels exist for float32 and float64 over C-contiguous arrays; anything else
(another dtype, a strided view, mixed dtypes) falls back to the generic code, as does every
method when ``fused=False`` -- which is how the two are compared. Nothing here synchronises
with the host.

Precision (``MLP(precision=...)``): "float32" multiplies with CuPy's ``matmul``; "tf32" and
"bf16" call cuBLAS's GemmEx with the compute type of each product (gpunn/ops/cublas.py). bf16
arrays (ml_dtypes.bfloat16, or uint16 bits without ml_dtypes) go to the kernels' bf16 instances, which compute in float; their
bias gradients land in the float32 gradient buffer.
"""
from __future__ import annotations

import cupy
import numpy

from . import kernels
from ..activations import Activation
from .base import Ops, is_bf16
from .cublas import CupyBlas, GemmError

BLOCK = 256  # threads per block of the one-dimensional kernels (a multiple of 32, as mse_grad needs)
BIAS_GRAD_BLOCK = (32, 16)  # bias_grad: 32 columns x 16 row lanes
# Up to this many rows the bias gradient is one launch of (32, 32)-thread blocks, one per 32
# columns, each thread summing at most 32 rows; above it, row chunks and a second launch. (Chosen
# from latency arithmetic; not yet measured on a GPU.)
BIAS_GRAD_ONE_LAUNCH_ROWS = 1024
BIAS_GRAD_ONE_LAUNCH_BLOCK = (32, 32)
_NULL = numpy.uintp(0)  # a null pointer argument


def _zeroed(sum_sq, shape=()):
    """A float64 device accumulator at 0 (0-d; an Ensemble's, one a member: ``shape``): ``sum_sq`` zeroed with a
    memset (nothing allocated: the graph's captured step passes its own), or a new one."""
    if sum_sq is None:
        return cupy.zeros(shape, numpy.float64)
    sum_sq.data.memset_async(0, sum_sq.nbytes)
    return sum_sq


def _loss_scale(A, dtype):
    """2/m in the kernel's T, m the rows of A (a data-parallel rank may get an empty last batch)."""
    return dtype.type(2.0 / max(A.shape[0], 1)) if A.ndim else dtype.type(2.0)


def _row_step(a, dtype):
    """The elements between two rows of ``a`` (a vector: between two of its elements), whose rows must be
    contiguous; None where a kernel cannot read it so (another dtype, or steps that are negative or not whole
    elements)."""
    steps = member_row_steps(a, dtype, a.ndim) if a.ndim in (1, 2) else None
    return None if steps is None else steps[1]


def member_row_steps(a, dtype, shared_ndim):
    """(member step, row step) in elements of ``a``, ``shared_ndim`` dimensions for one array shared by every member
    (member step 0) or one more for one a member, whose last dimension must be contiguous (where it has more than one
    element); None where a kernel cannot read it so (another dtype or shape, steps negative or not whole elements)."""
    if a.dtype != dtype or a.ndim not in (shared_ndim, shared_ndim + 1):
        return None
    item, strides = a.itemsize, a.strides
    if any(st < 0 or st % item for st in strides) or (shared_ndim == 2 and a.shape[-1] > 1 and strides[-1] != item):
        return None
    row = strides[-2] if shared_ndim == 2 else strides[-1]
    member = strides[0] if a.ndim > shared_ndim else 0
    return member // item, row // item


def _multiprocessors() -> int:
    """The current device's multiprocessor count (a runtime query: CupyOps._sms caches it)."""
    device = cupy.cuda.runtime.getDevice()
    attr = getattr(cupy.cuda.runtime, "cudaDevAttrMultiProcessorCount", 16)  # 16 in the CUDA API
    return cupy.cuda.runtime.deviceGetAttribute(attr, device)


class CupyOps(Ops):
    def __init__(self, fused: bool = True, precision: str = "float32"):
        super().__init__(cupy, precision)
        self.fused = bool(fused)
        self.blas = None  # the GemmEx caller: CupyBlas, or the graph path's CapturableBlas
        self._sm_count = None  # the device's multiprocessors, read at the first launch (one device per model)
        self.max_blocks = None  # grid cap of the grid-stride kernels; None: 16 per multiprocessor
        self.bias_grad_chunks = None  # bias_gradient's row chunks; None: enough blocks to fill the GPU

    # ---- launch helpers --------------------------------------------------------------
    def _kernel_dtype(self, *arrays):
        """The dtype if every array may go to a kernel (same float32/float64/bf16 dtype, C-contiguous).

        bf16 arrays always go to the kernels (fused or not): there is no other bf16 path."""
        dtype = arrays[0].dtype
        if not (is_bf16(dtype) or (self.fused and dtype in kernels.CXX_TYPES)):
            return None
        for a in arrays:
            if a is not None and (a.dtype != dtype or not a.flags.c_contiguous):
                return None
        return dtype

    def _sms(self) -> int:
        """Multiprocessors of the device this Ops launches on: asked once, not at every launch."""
        if self._sm_count is None:
            self._sm_count = _multiprocessors()
        return self._sm_count

    def _grid(self, n):
        cap = self.max_blocks
        if cap is None:
            cap = 16 * self._sms()
        return (max(1, min(-(-n // BLOCK), cap)),)

    def _launch(self, name, dtype, act, n, args):
        if n > 0:
            kernels.get_kernel(name, dtype, act)(self._grid(n), (BLOCK,), args)

    # ---- matrix products and bf16 copies --------------------------------------------
    def matmul(self, a, b, out):
        return self.in_gemm_blocks(self._matmul, a, b, out)  # (a batch of 2^31 rows or more: in blocks)

    def _matmul(self, a, b, out):
        if self.blas is None and self.precision == "float32" and not (is_bf16(a.dtype) or is_bf16(out.dtype)):
            return cupy.matmul(a, b, out=out)
        return self.gemm_ex(a, b, out)

    def gemm_ex(self, a, b, out, batched=False):
        """out = a @ b (with ``batched``, out[k] = a[k] @ b[k]: CupyEnsembleOps.matmul) through GemmEx with the
        precision's compute type, on ``self.blas``: the graph path's handle while a step is captured, else
        CuPy's (CupyBlas, made on the first product that needs it). On CuPy's handle, operands whose layout
        GemmEx cannot take are copied contiguous and the product retried into ``out`` (when ``out`` is
        contiguous itself); in a capture the GemmError goes up. An error status from cuBLAS on CuPy's handle is a
        CublasError naming the product (call, shapes, dtypes, compute type): no fallback computes a tf32 or bf16
        product with its own types."""
        blas = self.blas
        if blas is None:
            blas = self.blas = CupyBlas()
        product = blas.gemm_batched if batched else blas.gemm
        try:
            return product(a, b, out, self.precision)
        except GemmError:
            if not isinstance(blas, CupyBlas) or not out.flags.c_contiguous:
                raise
            return product(cupy.ascontiguousarray(a), cupy.ascontiguousarray(b), out, self.precision)

    def to_storage(self, src, dst):
        if not (is_bf16(dst.dtype) and src.dtype == numpy.float32 and src.size == dst.size
                and src.flags.c_contiguous and dst.flags.c_contiguous):
            return super().to_storage(src, dst)
        self._launch("to_storage", dst.dtype, None, dst.size, (src, dst, numpy.int64(dst.size)))
        return dst

    # ---- forward ---------------------------------------------------------------------
    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        dtype = self._kernel_dtype(Z, b, A)
        if dtype is None or Z.shape != A.shape or Z.ndim == 0:
            return super().bias_activation(Z, b, act, A, keep_z)
        cols = Z.shape[-1]
        if b is not None and b.size != cols:
            return super().bias_activation(Z, b, act, A, keep_z)
        rows = Z.size // cols if cols else 0
        z_keep = Z if keep_z and A is not Z else _NULL
        self._launch("bias_act_forward", dtype, act, Z.size,
                     (Z, _NULL if b is None else b, z_keep, A, numpy.int64(rows), numpy.int64(cols)))
        return A

    # ---- backward --------------------------------------------------------------------
    def activation_backward(self, dA, act: Activation, source, from_output: bool, dZ):
        dtype = self._kernel_dtype(dA, source, dZ)
        if dtype is None or not (dA.shape == source.shape == dZ.shape) or (
                from_output and act.grad_from_output is None):
            return super().activation_backward(dA, act, source, from_output, dZ)
        name = "act_backward_from_output" if from_output else "act_backward_from_input"
        self._launch(name, dtype, act, dA.size, (dA, source, dZ, numpy.int64(dA.size)))
        return dZ

    def loss_gradient(self, A, Y, dA, sum_sq=None, weights=None):
        """dA <- (2/m)(A - Y); returns sum((A - Y)^2) as a 0-d float64 device array (``sum_sq``
        when given: zeroed with a memset, then accumulated into). With ``weights`` (one a row): dA <- (2/m) w (A - Y)
        and the sum of w (A - Y)^2, by weighted_mse_grad, which reads Y and the weights through row steps of their
        own: training's Y carries them as its last column (gpunn.sample_weights), so both are views of it."""
        if weights is not None:
            return self._weighted_loss_gradient(A, Y, dA, sum_sq, weights)
        dtype = self._kernel_dtype(A, Y, dA)
        if dtype is None or not (A.shape == Y.shape == dA.shape):
            return super().loss_gradient(A, Y, dA, sum_sq)
        sum_sq = _zeroed(sum_sq)
        self._launch("mse_grad", dtype, None, A.size, (A, Y, dA, _loss_scale(A, dtype), numpy.int64(A.size), sum_sq))
        return sum_sq

    def _weighted_loss_gradient(self, A, Y, dA, sum_sq, weights):
        dtype = self._kernel_dtype(A, dA)
        steps = (_row_step(Y, dtype), _row_step(weights, dtype)) if dtype in kernels.CXX_TYPES else (None,)
        if None in steps or A.ndim != 2 or not (A.shape == Y.shape == dA.shape) or weights.shape != A.shape[:1]:
            return super().loss_gradient(A, Y, dA, sum_sq, weights)
        sum_sq = _zeroed(sum_sq)
        rows, cols = A.shape
        y_step, w_step = steps
        self._launch("weighted_mse_grad", dtype, None, A.size, (
            A, Y, numpy.int64(y_step), weights, numpy.int64(w_step), dA, _loss_scale(A, dtype), numpy.int64(rows),
            numpy.int64(cols), sum_sq))
        return sum_sq

    def squared_error(self, A, Y):
        """sum((A - Y)^2) as a 0-d float64 device array (mse_grad without the gradient)."""
        dtype = self._kernel_dtype(A, Y)
        if dtype is None or A.shape != Y.shape:
            return super().squared_error(A, Y)
        sum_sq = cupy.zeros((), numpy.float64)
        self._launch("mse_grad", dtype, None, A.size, (A, Y, _NULL, dtype.type(0), numpy.int64(A.size), sum_sq))
        return sum_sq

    def bias_gradient(self, dZ, db):
        """db <- column sums of dZ, in double: one block per 32 columns and per chunk of rows.

        One launch up to BIAS_GRAD_ONE_LAUNCH_ROWS rows (and for any number of rows when the
        columns alone fill the GPU); above, row chunks summed by a second launch. A bf16 dZ
        sums into a float32 db."""
        dtype = self._kernel_dtype(dZ)
        master = numpy.dtype(numpy.float32) if dtype is not None and is_bf16(dtype) else dtype
        if (dtype is None or dZ.ndim != 2 or db.size != dZ.shape[1] or db.dtype != master
                or not db.flags.c_contiguous):
            return super().bias_gradient(dZ, db)
        rows, cols = dZ.shape
        if not cols:
            return db
        if not rows:  # an empty batch: the sums are zero (and there are no row chunks to size)
            db.fill(0)
            return db
        col_blocks = -(-cols // BIAS_GRAD_BLOCK[0])
        if rows <= BIAS_GRAD_ONE_LAUNCH_ROWS and not self.bias_grad_chunks:
            kernels.get_kernel("bias_grad", dtype)((col_blocks, 1), BIAS_GRAD_ONE_LAUNCH_BLOCK, (
                dZ, db, _NULL, numpy.int64(rows), numpy.int64(cols), numpy.int64(max(rows, 1))))
            return db
        # enough blocks to fill the GPU (4 per multiprocessor), but chunks of at least 64 rows
        wanted = self.bias_grad_chunks or -(-4 * self._sms() // col_blocks)
        chunks = max(1, min(wanted, -(-rows // 64)))
        rows_per_chunk = -(-rows // chunks)
        chunks = -(-rows // rows_per_chunk)
        partial = self.scratch((chunks, cols), numpy.float64, slot="bias") if chunks > 1 else _NULL
        kernels.get_kernel("bias_grad", dtype)((col_blocks, chunks), BIAS_GRAD_BLOCK, (
            dZ, db, partial, numpy.int64(rows), numpy.int64(cols), numpy.int64(rows_per_chunk)))
        if chunks > 1:
            self._launch("bias_grad_finish", dtype, None, cols, (partial, db, numpy.int64(chunks), numpy.int64(cols)))
        return db

    # ---- gradient clipping (kernels/optimizers.cu) -----------------------------------
    def clip_grad_norm(self, g, max_norm):
        """g *= min(1, max_norm / (||g||_2 + 1e-6)) in three launches: clip_sum_sq (each block's sum of the squares,
        in double), clip_factor (their sum in a fixed order and the factor, one block), clip_scale. The sums and the
        factor live in a scratch buffer of this thread (made at the eager step before a capture): no atomics, so the
        same bits every run, and no host read, so a captured graph replays it."""
        dtype = self._kernel_dtype(g)
        if dtype is None or is_bf16(dtype) or g.ndim != 1:
            return super().clip_grad_norm(g, max_norm)
        n = g.size
        if not n:
            return g
        (blocks,) = self._grid(n)
        sums = self.scratch((blocks + 1,), numpy.float64, slot="clip")  # the blocks' sums, then the factor
        factor = sums[blocks:]
        kernels.get_kernel("clip_sum_sq", dtype)((blocks,), (BLOCK,), (g, numpy.int64(n), sums))
        kernels.get_kernel("clip_factor", numpy.float64)((1,), (BLOCK,), (sums, numpy.int64(blocks),
                                                                          numpy.float64(max_norm), factor))
        self._launch("clip_scale", dtype, None, n, (g, factor, numpy.int64(n)))
        return g

    def clip_grad_value(self, g, clip_value):
        """g clamped to [-clip_value, clip_value] in one launch (clip_by_value; the limit rounded to g's dtype, as
        NumPy rounds a Python float's)."""
        dtype = self._kernel_dtype(g)
        if dtype is None or is_bf16(dtype):
            return super().clip_grad_value(g, clip_value)
        self._launch("clip_by_value", dtype, None, g.size, (g, dtype.type(clip_value), numpy.int64(g.size)))
        return g

    # ---- optimizer updates -----------------------------------------------------------
    def sgd_step(self, w, g, velocity, lr, momentum, nesterov, weight_decay):
        return self._sgd(w, g, velocity, lr, None, momentum, nesterov, weight_decay)

    def _sgd(self, w, g, velocity, lr, state, momentum, nesterov, weight_decay):
        """sgd_step (lr a number) or sgd_step_dev (lr = state[1], a device array)."""
        dtype = self._kernel_dtype(w, g, velocity)
        if dtype is None or w.shape != g.shape or (momentum and velocity is None):
            if state is None:
                return super().sgd_step(w, g, velocity, lr, momentum, nesterov, weight_decay)
            return super().sgd_step_dev(w, g, velocity, state, momentum, nesterov, weight_decay)
        t = dtype.type
        vel = velocity if momentum else _NULL
        name, rate = ("sgd_step", t(lr)) if state is None else ("sgd_step_dev", state)
        self._launch(name, dtype, None, w.size,
                     (w, g, vel, rate, t(momentum), t(weight_decay), numpy.int32(bool(nesterov)), numpy.int64(w.size)))
        return w

    def adam_step(self, w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled):
        dtype = self._kernel_dtype(w, g, m, v)
        if dtype is None or not (w.shape == g.shape == m.shape == v.shape):
            return super().adam_step(w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled)
        t = dtype.type
        # 1 - beta in double, then rounded once (as torch does); the bias corrections 1 - beta**step likewise, but
        # on the device (kernels/optimizers.cuh, adam_bias_correction): the device's pow, as the graph's
        # optimizer_tick and the ensemble's member_adam_step take it, which Python's may be an ulp off
        args = (w, g, m, v, t(lr), t(1.0 - beta1), t(1.0 - beta2), t(eps), numpy.float64(beta1), numpy.float64(beta2),
                numpy.float64(step), t(weight_decay), numpy.int32(bool(decoupled)), numpy.int64(w.size))
        self._launch("adam_step", dtype, None, w.size, args)
        return w

    # ---- the same with per-step scalars on the device (CUDA-graph replay) -------------
    def optimizer_tick(self, state, beta1, beta2):
        if not self.fused:
            return super().optimizer_tick(state, beta1, beta2)
        kernels.get_kernel("optimizer_tick", numpy.float64)((1,), (32,), (state, numpy.float64(beta1),
                                                                          numpy.float64(beta2)))
        return state

    def sgd_step_dev(self, w, g, velocity, state, momentum, nesterov, weight_decay):
        return self._sgd(w, g, velocity, None, state, momentum, nesterov, weight_decay)

    def adam_step_dev(self, w, g, m, v, state, beta1, beta2, eps, weight_decay, decoupled):
        dtype = self._kernel_dtype(w, g, m, v)
        if dtype is None or not (w.shape == g.shape == m.shape == v.shape):
            return super().adam_step_dev(w, g, m, v, state, beta1, beta2, eps, weight_decay, decoupled)
        t = dtype.type
        args = (w, g, m, v, state, t(1.0 - beta1), t(1.0 - beta2), t(eps), t(weight_decay),
                numpy.int32(bool(decoupled)), numpy.int64(w.size))
        self._launch("adam_step_dev", dtype, None, w.size, args)
        return w
