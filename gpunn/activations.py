"""The activation table: each activation is defined once, here.

Every entry gives g(z), g'(z) and, where it exists, g' written in terms of the
output a = g(z) (so the forward pass need not keep Z). The functions take the
array module ``xp`` (NumPy or CuPy) and write into ``out``; they are the
reference implementation that the CUDA header ``kernels/activations.cuh`` is
tested against, element for element.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from .hints import known_name

GELU_C = math.sqrt(2.0 / math.pi)  # sqrt(2/pi) in the tanh approximation
GELU_K = 0.044715
LEAKY_SLOPE = 0.01
# Beyond this |z| the GELU tanh has saturated in float64 (tanh(GELU_C*(20+...)) == 1):
# g'(z) is exactly 1 (z > 0) or 0 (z < 0), and the polynomial would only overflow.
GELU_SATURATION = 20.0


@dataclass(frozen=True)
class Activation:
    name: str
    kernel_id: int  # the enum value in kernels/activations.cuh
    forward: Callable  # (xp, z, out) -> out = g(z)
    grad_from_input: Callable  # (xp, z, out) -> out = g'(z)
    grad_from_output: Optional[Callable]  # (xp, a, out) -> out = g'(z) where a = g(z)
    init: str  # "he" or "glorot"

    @property
    def needs_input_for_grad(self) -> bool:
        return self.grad_from_output is None


def _sigmoid(xp, z, out):
    # 0.5 * (1 + tanh(z/2)) never overflows, unlike 1 / (1 + exp(-z)).
    xp.multiply(z, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def _identity(xp, z, out):
    if out is not z:
        out[...] = z
    return out


def _ones(xp, z, out):
    out.fill(1)
    return out


def _relu(xp, z, out):
    return xp.maximum(z, 0, out=out)


def _relu_grad(xp, z, out):
    # g'(0) = 0, the subgradient PyTorch and scikit-learn use; the same from z or a.
    return xp.greater(z, 0, out=out, casting="unsafe")


def _leaky_relu_grad(xp, z, out):
    return _assign(out, xp.where(z > 0, 1.0, LEAKY_SLOPE).astype(out.dtype, copy=False))


def _sigmoid_grad(xp, z, out):
    s = _sigmoid(xp, z, xp.empty_like(out))
    return _sigmoid_grad_from_output(xp, s, out)


def _sigmoid_grad_from_output(xp, a, out):
    xp.multiply(a, 1 - a, out=out)
    return out


def _tanh(xp, z, out):
    return xp.tanh(z, out=out)


def _tanh_grad(xp, z, out):
    return _tanh_grad_from_output(xp, xp.tanh(z), out)


def _tanh_grad_from_output(xp, a, out):
    xp.multiply(a, a, out=out)
    xp.subtract(1, out, out=out)
    return out


def _softplus(xp, z, out):
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): exact for large |z|, no overflow.
    t = xp.exp(-xp.abs(z))
    xp.log1p(t, out=t)
    xp.add(xp.maximum(z, 0), t, out=out)
    return out


def _gelu(xp, z, out):
    with _quiet(xp):  # z**3 overflows to inf for |z| > ~1e102 (f64); tanh(inf) = 1 is right
        t = xp.tanh(GELU_C * (z + GELU_K * z * z * z))
        g = 0.5 * z * (1 + t)
    # Past GELU_SATURATION t is exactly +-1 and g = max(z, 0) already; saying so settles z = -inf (-inf * 0).
    return _assign(out, xp.where(xp.abs(z) > GELU_SATURATION, xp.maximum(z, 0), g))


def _gelu_grad(xp, z, out):
    with _quiet(xp):
        t = xp.tanh(GELU_C * (z + GELU_K * z * z * z))
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_C * (1 + 3 * GELU_K * z * z)
    saturated = xp.abs(z) > GELU_SATURATION
    d = xp.where(saturated, (z > 0).astype(d.dtype), d)
    return _assign(out, d)


def _silu(xp, z, out):
    s = _sigmoid(xp, z, xp.empty_like(z))
    with _quiet(xp):
        g = z * s
    # s == 0 only where z * s is -0 anyway, or NaN at z = -inf (-inf * 0): the limit there is 0.
    return _assign(out, xp.where(s == 0, 0, g))


def _silu_grad(xp, z, out):
    # d/dz z*s(z) = s * (1 + z * (1 - s)); where s has saturated to 0 or 1 that is s itself
    # (and the formula would give inf * 0 = NaN at z = +-inf).
    s = _sigmoid(xp, z, xp.empty_like(z))
    with _quiet(xp):
        d = s * (1 + z * (1 - s))
    return _assign(out, xp.where((s == 0) | (s == 1), s, d))


def _elu(xp, z, out):
    return _assign(out, xp.where(z > 0, z, xp.expm1(xp.minimum(z, 0))))


def _elu_grad(xp, z, out):
    return _assign(out, xp.where(z > 0, 1.0, xp.exp(xp.minimum(z, 0))).astype(out.dtype, copy=False))


def _elu_grad_from_output(xp, a, out):
    # for z <= 0, a = e^z - 1, so g'(z) = e^z = a + 1
    return _assign(out, xp.where(a > 0, 1.0, a + 1).astype(out.dtype, copy=False))


def _leaky_relu_grad_from_output(xp, a, out):
    return _leaky_relu_grad(xp, a, out)  # a > 0 exactly when z > 0


def _assign(out, value):
    out[...] = value
    return out


class _quiet:
    """Silence NumPy's overflow warnings where overflow to inf is the intended result."""

    def __init__(self, xp):
        self._np = xp if xp.__name__ == "numpy" else None

    def __enter__(self):
        if self._np is not None:
            self._state = self._np.seterr(over="ignore", invalid="ignore")

    def __exit__(self, *exc):
        if self._np is not None:
            self._np.seterr(**self._state)


def _leaky_forward(xp, z, out):
    return _assign(out, xp.where(z > 0, z, z * LEAKY_SLOPE))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", 0, _identity, _ones, _ones, "glorot"),
        Activation("relu", 1, _relu, _relu_grad, _relu_grad, "he"),
        Activation("sigmoid", 2, _sigmoid, _sigmoid_grad, _sigmoid_grad_from_output, "glorot"),
        Activation("tanh", 3, _tanh, _tanh_grad, _tanh_grad_from_output, "glorot"),
        Activation("leaky_relu", 4, _leaky_forward, _leaky_relu_grad, _leaky_relu_grad_from_output, "he"),
        Activation("softplus", 5, _softplus, _sigmoid, None, "glorot"),  # softplus' = sigmoid
        Activation("gelu", 6, _gelu, _gelu_grad, None, "he"),
        Activation("silu", 7, _silu, _silu_grad, None, "he"),
        Activation("elu", 8, _elu, _elu_grad, _elu_grad_from_output, "he"),
    )
}


def get_activation(name) -> Activation:
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[known_name(name, ACTIVATIONS, "activation")]  # in any letter case: "ReLU" is relu
