"""CupyEnsembleOps: an ensemble's member-axis ops as the fused CUDA kernels of kernels/ensemble.cu.

One launch per op for all K members: the grid's y index walks the members, and the optimizer
reads each member's settings from the (K, HYPER_FIELDS) float64 table ``MemberRates.device`` (copied when
it changes, once per epoch), so a step never waits on the host: gradient clipping too, each member's
norm summed on the device (``clip_gradients``). Anything the kernels do not
cover (another dtype, a strided stack, ``fused=False``) falls back to the generic
``EnsembleOps``, which is how the two are compared (tests/test_ensemble_gpu.py). With
``Ensemble(precision="bf16")`` the hidden layers' bias + activation and bias gradients run the
kernels' bf16 instances (bf16 activations, float32 bias gradients), and every product is cuBLAS's
strided batched GemmEx (bf16 operands, float32 accumulation; TF32 tensor cores for "tf32").
"""
from __future__ import annotations

import numpy

from ..activations import Activation
from . import kernels
from .base import is_bf16
from .cuda import BIAS_GRAD_BLOCK, BLOCK, _multiprocessors, _zeroed, member_row_steps
from .ensemble import EnsembleOps
from .member_rates import CLIP_NORM, MemberRates

_NULL = numpy.uintp(0)
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y; the kernels step through more members themselves


class CupyEnsembleOps(EnsembleOps):
    def __init__(self, ops):
        super().__init__(ops)
        self.fused = bool(getattr(ops, "fused", True))

    def _dtype(self, *arrays, bf16=False):
        """The arrays' one dtype where a kernel takes it: float32 or float64 (with ``fused``), or, for the
        kernels with a bf16 instance (``bf16=True``), bf16 storage (always, fused or not: as for one model,
        the generic bf16 expressions are the emulation, not a path of their own); else None."""
        dtype = arrays[0].dtype
        if not ((bf16 and is_bf16(dtype)) or (self.fused and dtype in kernels.CXX_TYPES)):
            return None
        return dtype if all(a is None or a.dtype == dtype for a in arrays) else None

    def _grid(self, per_member, members):
        """(x, y): enough x blocks per member to fill the GPU about 16 blocks per multiprocessor deep."""
        y = min(members, MAX_GRID_Y)
        sms = getattr(self.ops, "_sms", _multiprocessors)  # the single-model CupyOps asks the device once
        budget = max(1, 16 * sms() // y)
        return (max(1, min(-(-per_member // BLOCK), budget)), y)

    @staticmethod
    def _rows_stride(view):
        """The element stride between members of a (K, n) parameter view whose rows are contiguous."""
        if view.ndim != 2 or view.strides[1] != view.itemsize or view.strides[0] % view.itemsize:
            return None
        return view.strides[0] // view.itemsize

    # ---- forward ---------------------------------------------------------------------
    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        dtype = self._dtype(Z, b, A, bf16=True)
        b_stride = 0 if b is None else self._rows_stride(b)
        if (dtype is None or Z.ndim != 3 or Z.shape != A.shape or b_stride is None
                or not (Z.flags.c_contiguous and A.flags.c_contiguous)):
            return super().bias_activation(Z, b, act, A, keep_z)
        members, rows, cols = Z.shape
        if Z.size:
            z_keep = Z if keep_z and A is not Z else _NULL
            kernels.get_kernel("member_bias_act_forward", dtype, act)(
                self._grid(rows * cols, members), (BLOCK,),
                (Z, _NULL if b is None else b, numpy.int64(b_stride), z_keep, A, numpy.int64(members),
                 numpy.int64(rows), numpy.int64(cols)))
        return A

    # ---- backward --------------------------------------------------------------------
    def bias_gradient(self, dZ, db):
        """db[k] <- column sums of dZ[k], in double: one launch for all members (a bf16 dZ sums into the
        float32 gradient buffer). No rows (a data-parallel rank's empty piece): the sums are zero."""
        dtype = self._dtype(dZ, bf16=True)
        master = numpy.dtype(numpy.float32) if dtype is not None and is_bf16(dtype) else dtype
        db_stride = self._rows_stride(db)
        if (dtype is None or db.dtype != master or dZ.ndim != 3 or db_stride is None
                or not dZ.flags.c_contiguous):
            return super().bias_gradient(dZ, db)
        members, rows, cols = dZ.shape
        if members and cols:  # 0 rows too: the kernel writes the empty sums (0), as CupyOps.bias_gradient does
            grid = (-(-cols // BIAS_GRAD_BLOCK[0]), min(members, MAX_GRID_Y))
            kernels.get_kernel("member_bias_grad", dtype)(grid, BIAS_GRAD_BLOCK, (
                dZ, db, numpy.int64(db_stride), numpy.int64(members), numpy.int64(rows), numpy.int64(cols)))
        return db

    def matmul(self, a, b, out):
        """cuBLAS's strided batched product (GemmStridedBatchedEx with the compute type of the precision: TF32
        tensor cores for "tf32", bf16 operands with float32 accumulation for bf16), on the graph path's own
        handle while a step is captured (CuPy's matmul cannot be), and for tf32 and bf16 always; CuPy's matmul
        for a float32/float64 product outside a graph. A batch of 2^31 rows or more is cut into blocks
        (``Ops.in_gemm_blocks``): cuBLAS's dimensions are C ints."""
        return self.ops.in_gemm_blocks(self._matmul, a, b, out)

    def _matmul(self, a, b, out):
        ops, blas = self.ops, self.ops.blas
        gemm_ex = ops.precision != "float32" or is_bf16(a.dtype)  # else CuPy's matmul, unless a graph is captured
        if out.ndim != 3 or (blas is None and not gemm_ex) or (blas is not None and not hasattr(blas, "gemm_batched")):
            return super().matmul(a, b, out)
        return ops.gemm_ex(a, b, out, batched=True)  # k = 1 too: a * b exactly

    def _mse(self, A, Y, dA, scale, out=None):
        members = A.shape[0]
        per_member = A.size // members if members else 0
        sums = _zeroed(out, members)  # (a graph's fixed buffer zeroed with a memset, as one model's loss is)
        y_stride = per_member if Y.ndim == A.ndim else 0
        if per_member:
            kernels.get_kernel("member_mse_grad", A.dtype)(self._grid(per_member, members), (BLOCK,), (
                A, Y, numpy.int64(y_stride), _NULL if dA is None else dA, A.dtype.type(scale),
                numpy.int64(members), numpy.int64(per_member), sums))
        return sums

    def _mse_ok(self, A, Y, dA=None):
        if self._dtype(A, Y, dA) is None or A.ndim != 3 or not A.flags.c_contiguous or not Y.flags.c_contiguous:
            return False
        if dA is not None and (dA.shape != A.shape or not dA.flags.c_contiguous):
            return False
        return Y.shape == A.shape or Y.shape == A.shape[1:]

    def loss_gradient(self, A, Y, dA, out=None, weights=None):
        if weights is not None:
            return self._weighted_loss_gradient(A, Y, dA, out, weights)
        if not self._mse_ok(A, Y, dA):
            return super().loss_gradient(A, Y, dA, out)
        return self._mse(A, Y, dA, 2.0 / max(A.shape[1], 1), out)  # an empty data-parallel piece

    def _weighted_loss_gradient(self, A, Y, dA, out, weights):
        """The weighted loss (``weights`` (m,) or (K, m): gpunn.sample_weights) as member_weighted_mse_grad, which
        reads Y and the weights through member and row steps of their own: training's Y carries them as its last
        column, so both are views of it (a bootstrap batch's, (K, m, n + 1): each member's own). Elsewhere the
        generic CuPy calls (not in a CUDA graph: they allocate), as for a member axis other than K (the kernel reads
        member k's at k member steps), which they broadcast (one member's) or refuse, as the unweighted loss's do."""
        y_steps, w_steps = member_row_steps(Y, A.dtype, 2), member_row_steps(weights, A.dtype, 1)
        if (self._dtype(A, dA) is None or None in (y_steps, w_steps) or A.ndim != 3 or dA.shape != A.shape
                or Y.shape not in (A.shape, A.shape[1:]) or weights.shape not in (A.shape[:2], A.shape[1:2])
                or not (A.flags.c_contiguous and dA.flags.c_contiguous)):
            return super().loss_gradient(A, Y, dA, out, weights)
        members, rows, cols = A.shape
        sums = _zeroed(out, members)  # (a graph's fixed buffer zeroed with a memset, as one model's loss is)
        if A.size:
            kernels.get_kernel("member_weighted_mse_grad", A.dtype)(self._grid(rows * cols, members), (BLOCK,), (
                A, Y, numpy.int64(y_steps[0]), numpy.int64(y_steps[1]), weights, numpy.int64(w_steps[0]),
                numpy.int64(w_steps[1]), dA, A.dtype.type(2.0 / max(rows, 1)), numpy.int64(members), numpy.int64(rows),
                numpy.int64(cols), sums))
        return sums

    def squared_error(self, A, Y):
        if not self._mse_ok(A, Y):
            return super().squared_error(A, Y)
        return self._mse(A, Y, None, 0.0)

    # ---- optimizer updates -----------------------------------------------------------
    def _step_ok(self, *arrays):
        return self._dtype(*arrays) is not None and all(
            a is None or (a.ndim == 2 and a.flags.c_contiguous) for a in arrays)

    def clip_gradients(self, g, rates: MemberRates):
        """Each member's clip (EnsembleOps.clip_gradients) in at most three launches and no host read: the float64
        sums of squares of the members that clip by norm, each block's into a scratch of this thread's (allocated by
        the first, eager step, so a captured step reuses it), then each member's blocks' sums added in a fixed order
        (no atomics: the same bits every run, as one model's clip), then each active member's scale or clamp."""
        if not rates.clips:
            return g
        if not self._step_ok(g):
            return super().clip_gradients(g, rates)
        members, per_member = g.shape
        grid, sums = self._grid(per_member, members), _NULL
        if rates.host[:, CLIP_NORM].any():
            parts = grid[0]
            scratch = self.ops.scratch((members * (parts + 1),), numpy.float64, slot="clip")
            partial, sums = scratch[:members * parts], scratch[members * parts:]
            kernels.get_kernel("member_grad_sum_sq", g.dtype)(grid, (BLOCK,), (
                g, rates.device, numpy.int64(members), numpy.int64(per_member), partial))
            kernels.get_kernel("member_grad_sum_total", g.dtype)((1, grid[1]), (BLOCK,), (
                partial, numpy.int64(parts), rates.device, numpy.int64(members), sums))
        kernels.get_kernel("member_clip_grad", g.dtype)(grid, (BLOCK,), (
            g, rates.device, sums, numpy.int64(members), numpy.int64(per_member)))
        return g

    def sgd_step(self, w, g, velocity, rates: MemberRates, nesterov: bool):
        if not self._step_ok(w, g, velocity):
            return super().sgd_step(w, g, velocity, rates, nesterov)
        self.clip_gradients(g, rates)
        members, per_member = w.shape
        kernels.get_kernel("member_sgd_step", w.dtype)(self._grid(per_member, members), (BLOCK,), (
            w, g, _NULL if velocity is None else velocity, rates.device, numpy.int32(bool(nesterov)),
            numpy.int64(members), numpy.int64(per_member)))
        return w

    def adam_step(self, w, g, m, v, rates: MemberRates, eps, step, decoupled: bool):
        if not self._step_ok(w, g, m, v):
            return super().adam_step(w, g, m, v, rates, eps, step, decoupled)
        self.clip_gradients(g, rates)
        members, per_member = w.shape
        kernels.get_kernel("member_adam_step", w.dtype)(self._grid(per_member, members), (BLOCK,), (
            w, g, m, v, rates.device, w.dtype.type(eps), numpy.float64(step), numpy.int32(bool(decoupled)),
            numpy.int64(members), numpy.int64(per_member)))
        return w

    def adam_step_dev(self, w, g, m, v, rates: MemberRates, eps, state, decoupled: bool):
        if not self._step_ok(w, g, m, v):
            return super().adam_step_dev(w, g, m, v, rates, eps, state, decoupled)
        self.clip_gradients(g, rates)
        members, per_member = w.shape
        kernels.get_kernel("member_adam_step_dev", w.dtype)(self._grid(per_member, members), (BLOCK,), (
            w, g, m, v, rates.device, w.dtype.type(eps), state, numpy.int32(bool(decoupled)),
            numpy.int64(members), numpy.int64(per_member)))
        return w
