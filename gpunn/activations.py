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
# Beyond this |z|, g = max(z, 0) and g' = [z > 0] to the last bit in float32 and float64 (below -22 both are under
# half the smallest float64 subnormal), and the polynomial would only overflow.
GELU_SATURATION = 22.0


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


def _logistic(xp, z, out=None):
    """s = 1 / (1 + e^-z), in ``out`` (a new array without it), to a few ulps of itself at every z (1 - s is
    _logistic(-z)): the sigmoid activation's g, the seed's formula, and the header's logistic. The CPU ensemble pass
    (gpunn.ops.ensemble) forms these bits too, with NumPy's exp loop. e^-z overflows to inf only where s is under
    the smallest normal (z < -88.7 in float32), and s is then 0 (see the header's comment)."""
    s = xp.negative(z, out=out)
    with _quiet(xp):
        xp.exp(s, out=s)
    s += 1
    return xp.reciprocal(s, out=s)


def _logistic_slope(xp, z, out):
    """out = s (1 - s) = e / (1 + e)^2, e = e^-|z|: no 1 - s to cancel. The header's logistic_slope."""
    e = xp.abs(z)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    d = e + 1
    d *= d
    return xp.divide(e, d, out=out)


def _softplus_grad(xp, z, out):
    return _assign(out, _logistic(xp, z))  # softplus' = sigmoid, to a few ulps of itself


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
    return _logistic_slope(xp, z, out)


def _sigmoid_grad_from_output(xp, a, out):
    xp.multiply(a, 1 - a, out=out)
    return out


def _tanh(xp, z, out):
    return xp.tanh(z, out=out)


def _tanh_grad(xp, z, out):
    # 1 - tanh(z)^2 = 4 s (1 - s) for s = sigmoid(2z): no 1 - t * t to cancel (0 from |z| = 9 in float32).
    with _quiet(xp):  # 2z overflows to inf for |z| > ~1.7e38 (f32): the slope there is 0, rightly
        _logistic_slope(xp, 2 * z, out)
    out *= 4
    return out


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


def _gelu_2u(xp, z):
    """2u for GELU's u = GELU_C (z + GELU_K z^3): 0.5 (1 + tanh u) = sigmoid(2u), without the 1 + tanh that
    cancels for z < 0."""
    with _quiet(xp):  # z**3 overflows to inf for |z| > ~1e102 (f64); GELU_SATURATION settles those
        return (2 * GELU_C) * (z + GELU_K * z * z * z)


def _gelu(xp, z, out):
    with _quiet(xp):
        g = z * _logistic(xp, _gelu_2u(xp, z))
    # Past GELU_SATURATION g = max(z, 0) already; saying so settles z = -inf (-inf * 0).
    return _assign(out, xp.where(xp.abs(z) > GELU_SATURATION, xp.maximum(z, 0), g))


def _gelu_grad(xp, z, out):
    # 1 - tanh(u)^2 = 4 s (1 - s) for s = sigmoid(2u), so g' = s (1 + 2 z (1 - s) GELU_C (1 + 3 GELU_K z^2)).
    v = _gelu_2u(xp, z)
    with _quiet(xp):
        s, one_minus_s = _logistic(xp, v), _logistic(xp, -v)
        d = s * (1 + z * one_minus_s * (2 * GELU_C) * (1 + (3 * GELU_K) * z * z))
    saturated = xp.abs(z) > GELU_SATURATION
    d = xp.where(saturated, (z > 0).astype(d.dtype), d)
    return _assign(out, d)


def _silu(xp, z, out):
    s = _logistic(xp, z)
    with _quiet(xp):
        g = z * s
    # s == 0 only where z * s is -0 anyway, or NaN at z = -inf (-inf * 0): the limit there is 0.
    return _assign(out, xp.where(s == 0, 0, g))


def _silu_grad(xp, z, out):
    # d/dz z*s(z) = s * (1 + z * (1 - s)), 1 - s = sigmoid(-z). Where s is 0 that is 0 (and 0 * inf = NaN at
    # z = -inf); where 1 - s is 0 the term z * (1 - s) is 0 (not inf * 0 = NaN at z = +inf).
    s, one_minus_s = _logistic(xp, z), _logistic(xp, -z)
    with _quiet(xp):
        d = s * (1 + xp.where(one_minus_s == 0, 0, z * one_minus_s))
    return _assign(out, xp.where(s == 0, 0, d))


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
        Activation("sigmoid", 2, _logistic, _sigmoid_grad, _sigmoid_grad_from_output, "glorot"),
        Activation("tanh", 3, _tanh, _tanh_grad, _tanh_grad_from_output, "glorot"),
        Activation("leaky_relu", 4, _leaky_forward, _leaky_relu_grad, _leaky_relu_grad_from_output, "he"),
        Activation("softplus", 5, _softplus, _softplus_grad, None, "glorot"),
        Activation("gelu", 6, _gelu, _gelu_grad, None, "he"),
        Activation("silu", 7, _silu, _silu_grad, None, "he"),
        Activation("elu", 8, _elu, _elu_grad, _elu_grad_from_output, "he"),
    )
}


def get_activation(name) -> Activation:
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[known_name(name, ACTIVATIONS, "activation")]  # in any letter case: "ReLU" is relu
