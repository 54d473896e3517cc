"""torch.optim's update rules, transcribed in NumPy (float64): the reference every optimizer path of
gpunn is checked against (Ops, CpuOps, the ensemble ops, the C++ build of kernels/optimizers.cuh, the
CUDA kernels), without torch installed. Not a test module: the tests import it."""
from __future__ import annotations

import math

import numpy as np


def torch_sgd(w, g, buf, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD's update (dampening 0), in float64. Returns new (w, buf)."""
    d = g + weight_decay * w if weight_decay != 0 else g
    if momentum != 0:
        buf = momentum * buf + d
        d = d + momentum * buf if nesterov else buf
    return w - lr * d, buf


def torch_adam(w, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled):
    """torch.optim.Adam (coupled L2) / AdamW (decoupled) at step t, in float64. Returns new (w, m, v)."""
    if decoupled:
        w = w * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * w
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    denom = np.sqrt(v) / math.sqrt(bc2) + eps
    return w - lr / bc1 * m / denom, m, v
