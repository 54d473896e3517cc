"""CupyOps: the Ops of a training step as fused CUDA kernels (kernels/*.cu) on CuPy arrays.

Each method is one kernel launch where the generic ``Ops`` (gpunn/ops/base.py) runs several CuPy
expressions. Kernels exist for float32 and float64 over C-contiguous arrays; anything else
(another dtype, a strided view, mixed dtypes) falls back to the generic code, as does every
method when ``fused=False`` -- which is how the two are compared. Nothing here synchronises
with the host.
"""
from __future__ import annotations

import cupy
import numpy

from . import kernels
from ..activations import Activation
from .base import Ops

BLOCK = 256  # threads per block of the one-dimensional kernels (a multiple of 32, as mse_grad needs)
BIAS_GRAD_BLOCK = (32, 16)  # bias_grad: 32 columns x 16 row lanes
_NULL = numpy.uintp(0)  # a null pointer argument
_SM_COUNT: dict[int, int] = {}


def _multiprocessors() -> int:
    device = cupy.cuda.runtime.getDevice()
    count = _SM_COUNT.get(device)
    if count is None:
        attr = getattr(cupy.cuda.runtime, "cudaDevAttrMultiProcessorCount", 16)  # 16 in the CUDA API
        count = _SM_COUNT[device] = cupy.cuda.runtime.deviceGetAttribute(attr, device)
    return count


class CupyOps(Ops):
    def __init__(self, fused: bool = True):
        super().__init__(cupy)
        self.fused = bool(fused)
        self.max_blocks = None  # grid cap of the grid-stride kernels; None: 16 per multiprocessor
        self.bias_grad_chunks = None  # bias_gradient's row chunks; None: enough blocks to fill the GPU

    # ---- launch helpers --------------------------------------------------------------
    def _kernel_dtype(self, *arrays):
        """The dtype if every array may go to a kernel (same float32/float64 dtype, C-contiguous)."""
        if not self.fused:
            return None
        dtype = arrays[0].dtype
        if dtype not in kernels.CXX_TYPES:
            return None
        for a in arrays:
            if a is not None and (a.dtype != dtype or not a.flags.c_contiguous):
                return None
        return dtype

    def _grid(self, n):
        cap = self.max_blocks
        if cap is None:
            cap = 16 * _multiprocessors()
        return (max(1, min(-(-n // BLOCK), cap)),)

    def _launch(self, name, dtype, act, n, args):
        if n > 0:
            kernels.get_kernel(name, dtype, act)(self._grid(n), (BLOCK,), args)

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

    def loss_gradient(self, A, Y, dA):
        """dA <- (2/m)(A - Y); returns sum((A - Y)^2) as a 0-d float64 device array."""
        dtype = self._kernel_dtype(A, Y, dA)
        if dtype is None or not (A.shape == Y.shape == dA.shape):
            return super().loss_gradient(A, Y, dA)
        sum_sq = cupy.zeros((), numpy.float64)
        scale = dtype.type(2.0 / max(A.shape[0], 1)) if A.ndim else dtype.type(2.0)
        self._launch("mse_grad", dtype, None, A.size, (A, Y, dA, scale, numpy.int64(A.size), sum_sq))
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
        """db <- column sums of dZ, in double: one block per 32 columns and per chunk of rows."""
        dtype = self._kernel_dtype(dZ, db)
        if dtype is None or dZ.ndim != 2 or db.size != dZ.shape[1]:
            return super().bias_gradient(dZ, db)
        rows, cols = dZ.shape
        if not cols:
            return db
        col_blocks = -(-cols // BIAS_GRAD_BLOCK[0])
        # enough blocks to fill the GPU (4 per multiprocessor), but chunks of at least 64 rows
        wanted = self.bias_grad_chunks or -(-4 * _multiprocessors() // col_blocks)
        chunks = max(1, min(wanted, -(-rows // 64)))
        rows_per_chunk = -(-rows // chunks)
        chunks = -(-rows // rows_per_chunk)
        partial = self.scratch((chunks, cols), numpy.float64, slot="bias") if chunks > 1 else _NULL
        kernels.get_kernel("bias_grad", dtype)((col_blocks, chunks), BIAS_GRAD_BLOCK, (
            dZ, db, partial, numpy.int64(rows), numpy.int64(cols), numpy.int64(rows_per_chunk)))
        if chunks > 1:
            self._launch("bias_grad_finish", dtype, None, cols, (partial, db, numpy.int64(chunks), numpy.int64(cols)))
        return db

    # ---- optimizer updates -----------------------------------------------------------
    def sgd_step(self, w, g, velocity, lr, momentum, nesterov, weight_decay):
        dtype = self._kernel_dtype(w, g, velocity)
        if dtype is None or w.shape != g.shape or (momentum and velocity is None):
            return super().sgd_step(w, g, velocity, lr, momentum, nesterov, weight_decay)
        t = dtype.type
        vel = velocity if momentum else _NULL
        self._launch("sgd_step", dtype, None, w.size,
                     (w, g, vel, t(lr), t(momentum), t(weight_decay), numpy.int32(bool(nesterov)), numpy.int64(w.size)))
        return w

    def adam_step(self, w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled):
        dtype = self._kernel_dtype(w, g, m, v)
        if dtype is None or not (w.shape == g.shape == m.shape == v.shape):
            return super().adam_step(w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled)
        t = dtype.type
        # 1 - beta and the bias corrections in double, then rounded once (as torch does)
        args = (w, g, m, v, t(lr), t(1.0 - beta1), t(1.0 - beta2), t(eps),
                t(1.0 - beta1**step), t(1.0 - beta2**step), t(weight_decay), numpy.int32(bool(decoupled)),
                numpy.int64(w.size))
        self._launch("adam_step", dtype, None, w.size, args)
        return w
