"""The operations of a training step that have a fused form on the GPU.

``Ops`` is the generic implementation, written once against an array module
``xp`` (NumPy or CuPy); it is the reference the CUDA kernels are tested against.
``gpunn.ops.cuda.CupyOps`` subclasses it and overrides what it fuses. The model
and optimizers call only these methods, so no ``if gpu:`` appears elsewhere.
Every method writes into caller-owned buffers; none synchronises with the host.
"""
from __future__ import annotations

import math

import numpy

from ..activations import Activation


class Ops:
    def __init__(self, xp=numpy):
        self.xp = xp
        self._scratch = {}

    def scratch(self, shape, dtype, slot=0):
        """A reusable temporary of ``shape``; ``slot`` tells apart two alive at once."""
        key = (tuple(shape), numpy.dtype(dtype).str, slot)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = self.xp.empty(shape, dtype)
        return buf

    # ---- matrix products -------------------------------------------------------------
    def matmul(self, a, b, out):
        """out = a @ b (BLAS / cuBLAS; transposed views are passed without a copy)."""
        return self.xp.matmul(a, b, out=out)

    # ---- forward ---------------------------------------------------------------------
    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        """Z <- Z + b (when keep_z or A is Z) and A <- g(Z + b); b broadcasts over rows."""
        if b is not None:
            self.xp.add(Z, b, out=Z)
        if act.name != "identity" or A is not Z:
            act.forward(self.xp, Z, A)
        return A

    # ---- backward --------------------------------------------------------------------
    def activation_backward(self, dA, act: Activation, source, from_output: bool, dZ):
        """dZ <- dA * g'(source), where source is A = g(Z) if from_output else Z."""
        xp = self.xp
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

    def loss_gradient(self, A, Y, dA):
        """dA <- (2/m)(A - Y); returns sum((A - Y)^2) as a 0-d device array."""
        self.xp.subtract(A, Y, out=dA)
        flat = dA.reshape(-1)
        sum_sq = self.xp.dot(flat, flat)
        dA *= 2.0 / max(A.shape[0], 1)  # a data-parallel rank may get an empty last batch
        return sum_sq

    def squared_error(self, A, Y):
        """sum((A - Y)^2) as a 0-d device array."""
        diff = self.scratch(A.shape, A.dtype)
        self.xp.subtract(A, Y, out=diff)
        flat = diff.reshape(-1)
        return self.xp.dot(flat, flat)

    def bias_gradient(self, dZ, db):
        """db <- column sums of dZ."""
        return self.xp.sum(dZ, axis=0, out=db)

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


NumpyOps = Ops
