"""The operations of a training step that have a fused form on the GPU.

``Ops`` is the generic implementation, written once against an array module
``xp`` (NumPy or CuPy); it is the reference the CUDA kernels are tested against.
``gpunn.ops.cuda.CupyOps`` subclasses it and overrides what it fuses. The model
and optimizers call only these methods, so no ``if gpu:`` appears elsewhere.
Every method writes into caller-owned buffers; none synchronises with the host.
"""
from __future__ import annotations

import math
import threading

import numpy

from ..activations import Activation
from ..backend import is_device_array


RAW_BF16 = numpy.dtype(numpy.uint16)  # bfloat16 as its raw 16 bits, where ml_dtypes is not installed


def bf16_dtype():
    """The dtype gpunn stores bfloat16 in: ml_dtypes.bfloat16 where installed (as CuPy 14 does), else
    uint16 holding the same 16 bits (the kernels and cuBLAS see the bits either way)."""
    try:
        import ml_dtypes
    except ImportError:
        return RAW_BF16
    return numpy.dtype(ml_dtypes.bfloat16)


def is_bf16(dtype) -> bool:
    """bfloat16 storage: ml_dtypes.bfloat16 (kind "V"), or uint16 (which gpunn uses for nothing else).

    By kind and size, not ``dtype.name``: the name is computed on each access (microseconds), and this
    runs several times in every training step."""
    return getattr(dtype, "itemsize", 0) == 2 and getattr(dtype, "kind", None) in ("u", "V")


def widen(x):
    """float32 values of a bf16 array (either storage), exactly; by bits, for NumPy and CuPy alike."""
    xp = _array_module(x)
    return (x.view(xp.uint16).astype(xp.uint32) << xp.uint32(16)).view(xp.float32)


def narrow(x, dtype):
    """float32 ``x`` rounded to bfloat16 (nearest even, NaN kept, overflow to inf), in ``dtype`` storage:
    the rule of kernels/bfloat16.cuh."""
    xp = _array_module(x)
    u = xp.ascontiguousarray(x, dtype=xp.float32).view(xp.uint32)
    rounded = ((u + xp.uint32(0x7FFF) + ((u >> xp.uint32(16)) & xp.uint32(1))) >> xp.uint32(16)).astype(xp.uint16)
    nan = (u & xp.uint32(0x7FFFFFFF)) > xp.uint32(0x7F800000)
    quiet = ((u >> xp.uint32(16)) | xp.uint32(0x40)).astype(xp.uint16)
    return xp.where(nan, quiet, rounded).view(dtype)


def round_to_tf32(x):
    """x (float32) rounded to TF32's 10-bit mantissa, nearest even: what a TF32 tensor core reads."""
    xp = _array_module(x)
    bits = x.view(xp.uint32)
    rounded = (bits + xp.uint32(0xFFF) + ((bits >> xp.uint32(13)) & xp.uint32(1))) & xp.uint32(0xFFFFE000)
    finite = xp.isfinite(x)
    return xp.where(finite, rounded.view(xp.float32), x)


#: The switch of the fused kernels, CPU and GPU (gpunn.ops.fused_setting); here so that the backends can name it.
ENV_FUSED = "GPUNN_FUSED_KERNELS"

#: The largest m, n or k one GEMM call takes: cuBLAS's (and CBLAS's LP64) dimensions are C ints. CuPy's
#: ``matmul`` casts them with ``<int>``, unchecked, so a larger one wraps; its gemmEx binding raises
#: OverflowError. ``Ops.gemm_limit`` (the product's own limit, smaller in tests) defaults to it.
GEMM_INT_MAX = 2**31 - 1


def blocks(n, limit) -> list[tuple[int, int]]:
    """[lo, hi) bounds cutting range(n) into the fewest pieces of at most ``limit``, of near-equal sizes."""
    parts = max(1, -(-n // limit))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def matmul_in_blocks(product, a, b, out, limit, scratch):
    """out = a @ b (2-D, or stacks of matrices on the leading axis) by ``product(a, b, out)`` calls none of
    whose dimensions passes ``limit``: the rows of a and out (a batch's rows, in Z = A W and dA = dZ W^T) in
    blocks, each product written into its rows of out; a k over the limit (the batch's rows again, in the
    weight gradient A^T dZ) in blocks summed into out (float32/float64), the later ones through
    ``scratch(shape, dtype)``. A product of at most ``limit`` in every dimension is one call, as before."""
    rows, k = a.shape[-2], a.shape[-1]
    if out.shape[-1] > limit:
        raise ValueError(f"a product with {out.shape[-1]:,} columns: over the {limit:,} a GEMM call takes")
    if rows > limit:
        for lo, hi in blocks(rows, limit):
            matmul_in_blocks(product, a[..., lo:hi, :], b, out[..., lo:hi, :], limit, scratch)
        return out
    if k <= limit:
        return product(a, b, out)
    if out.dtype not in (numpy.float32, numpy.float64):
        raise ValueError(f"a product summing {k:,} terms (over the {limit:,} a GEMM call takes) into {out.dtype}")
    part = None
    for lo, hi in blocks(k, limit):
        if part is None:
            product(a[..., lo:hi], b[..., lo:hi, :], out)
            part = scratch(out.shape, out.dtype)
        else:
            out += product(a[..., lo:hi], b[..., lo:hi, :], part)
    return out


CLIP_EPS = 1e-6  # clip_grad_norm's max_norm / (total + 1e-6), PyTorch's (torch.nn.utils.clip_grad_norm_)


def _array_module(x):
    return __import__("cupy") if is_device_array(x) else numpy


def sum_rows_into(xp, dZ, db, axis):
    """db <- sums of dZ over its rows ``axis`` (0 for one model's dZ, 1 for an ensemble's (K, rows, n)), summed
    in float64 and rounded once into db, as the kernels do (a bf16 dZ into the float32 db). Returns db."""
    if is_bf16(dZ.dtype):
        dZ = widen(dZ)
    db[...] = xp.sum(dZ, axis=axis, dtype=numpy.float64)
    return db


def squares64(xp, D):
    """D * D as a new float64 array, each square formed in float64, as the CUDA kernels form theirs (mse_grad,
    member_mse_grad): in float32 an error under about 1e-19 squares to 0 (a loss of 0 and an R² of 1 for a
    model of targets near 1e-20 that predicts them badly) and one over about 1.8e19 to inf (TrainingDiverged
    on the CPU where the GPU trains on). The sums of squared errors take it."""
    D = D.astype(numpy.float64)
    return xp.multiply(D, D, out=D)


def sums_of_squares64(xp, D):
    """The sum of D's squares along its last axis, each square formed in float64 (as ``squares64``): a
    float64 scalar for a vector, a (K,) float64 array for a (K, n) matrix. A float64 dot product per row,
    which costs what float32's did (squares64(...).sum() cost a small net's step 2.5%)."""
    D = D.astype(numpy.float64, copy=False)
    if D.ndim == 1:
        return xp.dot(D, D)
    return xp.matmul(D[:, None, :], D[:, :, None])[:, 0, 0]


class Ops:
    """The reference. ``precision`` ("float32", "tf32", "bf16") is how the matrix products and the
    bf16 stages compute; here it is emulated in NumPy (tf32: inputs rounded to TF32; bf16: widened
    to float32, computed, rounded on store), which the tests use as the reference of the GPU path."""

    #: the largest dimension one GEMM call gets: a larger product is cut into blocks (``matmul_in_blocks``)
    gemm_limit = GEMM_INT_MAX

    def __init__(self, xp=numpy, precision="float32"):
        self.xp = xp
        self.precision = precision
        self._scratch = {}

    def scratch(self, shape, dtype, slot=0):
        """A reusable temporary of ``shape``; ``slot`` tells apart two alive at once. Each thread has its own:
        an Ensemble's member groups call the same ops on threads of their own with slices of one shape, and a
        buffer shared by them (g'(Z) of a tanh layer) was written by both at once."""
        key = (tuple(shape), numpy.dtype(dtype).str, slot, threading.get_ident())
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = self.xp.empty(shape, dtype)
        return buf

    def in_gemm_blocks(self, product, a, b, out):
        """out = a @ b by ``product(a, b, out)``: one call, or, where a dimension passes ``gemm_limit`` (a batch
        of 2^31 rows or more), calls on blocks (``matmul_in_blocks``, its scratch a slot of this Ops')."""
        if max(a.shape[-2:] + out.shape[-1:]) <= self.gemm_limit:
            return product(a, b, out)
        return matmul_in_blocks(product, a, b, out, self.gemm_limit,
                                lambda shape, dtype: self.scratch(shape, dtype, slot="gemm"))

    # ---- matrix products -------------------------------------------------------------
    def matmul(self, a, b, out):
        """out = a @ b (BLAS / cuBLAS; transposed views are passed without a copy).

        bf16 operands are multiplied exactly and accumulated in float32 (rounded once into ``out``,
        bf16 or float32); with precision "tf32", float32 operands are first rounded to TF32."""
        xp = self.xp
        if is_bf16(a.dtype):
            product = xp.matmul(widen(a), widen(b))
            out[...] = narrow(product, out.dtype) if is_bf16(out.dtype) else product
            return out
        if self.precision == "tf32" and a.dtype == numpy.float32 and b.dtype == numpy.float32:
            return xp.matmul(round_to_tf32(a), round_to_tf32(b), out=out)
        return xp.matmul(a, b, out=out)

    def to_storage(self, src, dst):
        """dst <- src rounded to dst's dtype (the bf16 copies of parameters and inputs)."""
        dst[...] = narrow(src, dst.dtype) if is_bf16(dst.dtype) else src.astype(dst.dtype)
        return dst

    # ---- forward ---------------------------------------------------------------------
    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        """Z <- Z + b (when keep_z or A is Z) and A <- g(Z + b); b broadcasts over rows."""
        if is_bf16(Z.dtype):  # as the bf16 kernel: widen, compute in float32, round each store
            z = widen(Z)
            if b is not None:
                z += widen(b)
            if keep_z or A is Z:
                Z[...] = narrow(z, Z.dtype)
            if A is not Z or act.name != "identity":
                a = self.xp.empty_like(z)
                act.forward(self.xp, z, a)
                A[...] = narrow(a, A.dtype)
            return A
        if b is not None:
            self.xp.add(Z, b, out=Z)
        if act.name != "identity" or A is not Z:
            act.forward(self.xp, Z, A)
        return A

    # ---- backward --------------------------------------------------------------------
    def activation_backward(self, dA, act: Activation, source, from_output: bool, dZ):
        """dZ <- dA * g'(source), where source is A = g(Z) if from_output else Z."""
        xp = self.xp
        if is_bf16(dA.dtype):  # as the bf16 kernel: widen, compute in float32, round the store
            src = widen(source)
            grad = xp.empty_like(src)
            (act.grad_from_output if from_output else act.grad_from_input)(xp, src, grad)
            dZ[...] = narrow(widen(dA) * grad, dZ.dtype)
            return dZ
        if act.name == "identity":
            if dZ is not dA:
                dZ[...] = dA
            return dZ
        if act.name == "relu":  # one pass, no float temporary: g'(z) = [z > 0] = [a > 0]
            return xp.multiply(dA, source > 0, out=dZ)
        grad = self.scratch(dA.shape, dA.dtype)
        (act.grad_from_output if from_output else act.grad_from_input)(xp, source, grad)
        return xp.multiply(dA, grad, out=dZ)

    def activation_bias_backward(self, dA, act: Activation, source, from_output: bool, dZ, db):
        """activation_backward, then db <- column sums of dZ (when db is not None).

        One hook so that a backend can do both in one pass over dZ; this is the reference.
        """
        self.activation_backward(dA, act, source, from_output, dZ)
        if db is not None:
            self.bias_gradient(dZ, db)
        return dZ

    def loss_gradient(self, A, Y, dA, sum_sq=None, weights=None):
        """dA <- (2/m)(A - Y); returns sum((A - Y)^2) as a 0-d float64 device array, the squares in float64
        (``sums_of_squares64``) (written into ``sum_sq``, a 0-d float64 array, when given). ``weights``, a vector of
        one weight a row (gpunn.sample_weights: mean 1 over the training rows): dA <- (2/m) w (A - Y), and the
        sum is of w (A - Y)^2, formed as the dot product of w (A - Y) and (A - Y) in float64 (unit weights: the
        unweighted sum's very call)."""
        xp = self.xp
        xp.subtract(A, Y, out=dA)
        if weights is None:
            total = sums_of_squares64(xp, dA.reshape(-1))
        else:
            D = dA.astype(numpy.float64)
            total = xp.dot((D * weights.astype(numpy.float64)[:, None]).reshape(-1), D.reshape(-1))
        dA *= 2.0 / max(A.shape[0], 1)  # a data-parallel rank may get an empty last batch
        if weights is not None:
            dA *= weights[:, None]
        if sum_sq is None:
            return total
        sum_sq[...] = total
        return sum_sq

    def squared_error(self, A, Y):
        """sum((A - Y)^2) as a 0-d float64 device array (the squares in float64: ``sums_of_squares64``)."""
        diff = self.scratch(A.shape, A.dtype)
        self.xp.subtract(A, Y, out=diff)
        return sums_of_squares64(self.xp, diff.reshape(-1))

    def bias_gradient(self, dZ, db):
        """db <- column sums of dZ, summed in float64 as the kernel sums them (a bf16 dZ into a float32 db)."""
        return sum_rows_into(self.xp, dZ, db, axis=0)

    # ---- gradient clipping over the flat gradient buffer (gpunn.optim.Optimizer.clip) -----
    def clip_grad_norm(self, g, max_norm):
        """g *= min(1, max_norm / (||g||_2 + 1e-6)), PyTorch's clip_grad_norm_ over every gradient as one vector: the
        squares summed in float64 (``sums_of_squares64``), the factor formed in float64 and rounded once to g's dtype.
        On the device, no host read (a 0-d device array all along)."""
        xp = self.xp
        total = xp.sqrt(sums_of_squares64(xp, g.reshape(-1)))
        coef = xp.minimum(max_norm / (total + CLIP_EPS), 1.0)
        g *= xp.asarray(coef, dtype=g.dtype)
        return g

    def clip_grad_value(self, g, clip_value):
        """g <- g clamped to [-clip_value, clip_value] elementwise (PyTorch's clip_grad_value_; a NaN stays NaN)."""
        return self.xp.clip(g, -clip_value, clip_value, out=g)

    # ---- optimizer updates over the flat parameter buffer ----------------------------
    def sgd_step(self, w, g, velocity, lr, momentum, nesterov, weight_decay):
        """PyTorch's SGD: g' = g + wd*w; v = mu*v + g'; w -= lr * (g' + mu*v if nesterov else v)."""
        xp = self.xp
        if weight_decay:
            g = xp.add(g, weight_decay * w, out=self.scratch(g.shape, g.dtype, 1))
        if not momentum:
            w -= lr * g if lr != 1 else g
            return w
        velocity *= momentum
        velocity += g
        if nesterov:
            step = xp.multiply(velocity, momentum, out=self.scratch(g.shape, g.dtype, 2))
            step += g
        else:
            step = velocity
        w -= lr * step
        return w

    def adam_step(self, w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled):
        """Adam (coupled L2: g += wd*w) or AdamW (decoupled: w *= 1 - lr*wd), bias-corrected."""
        xp = self.xp
        tmp = self.scratch(g.shape, g.dtype, 1)
        if weight_decay and decoupled:
            w *= 1.0 - lr * weight_decay
        elif weight_decay:
            g = xp.add(g, weight_decay * w, out=self.scratch(g.shape, g.dtype, 2))
        m *= beta1
        xp.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        bias_c1 = 1.0 - beta1**step
        bias_c2 = 1.0 - beta2**step
        # w -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), as torch.optim.Adam computes it
        xp.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(bias_c2)
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= lr / bias_c1
        w -= tmp
        return w

    # ---- the same updates with per-step scalars in a device array (CUDA-graph replay) --
    # state = [step t, lr, 1 - beta1^t, 1 - beta2^t] (float64); see kernels/optimizers.cu.
    def optimizer_tick(self, state, beta1, beta2):
        """state[0] += 1 and the bias corrections of that step, 1 - beta**t by Python's pow of the step read back,
        exactly as adam_step_dev here forms them (it reads the step back too, so the generic form is never
        captured). Not NumPy's power: it may be an ulp off Python's (0.999 at t = 7 on the AMD EPYC)."""
        state[0] += 1.0
        step = int(state[0])
        state[2] = 1.0 - beta1**step
        state[3] = 1.0 - beta2**step
        return state

    def sgd_step_dev(self, w, g, velocity, state, momentum, nesterov, weight_decay):
        return self.sgd_step(w, g, velocity, float(state[1]), momentum, nesterov, weight_decay)

    def adam_step_dev(self, w, g, m, v, state, beta1, beta2, eps, weight_decay, decoupled):
        return self.adam_step(w, g, m, v, float(state[1]), beta1, beta2, eps, int(state[0]), weight_decay,
                              decoupled)


NumpyOps = Ops
