"""The operations of a training step, one class per backend, and the factory that picks one.

- :mod:`gpunn.ops.base`: ``Ops``, the generic implementation written once against an array
  module (NumPy or CuPy); the reference every fused kernel is tested against.
- :mod:`gpunn.ops.cpu`: ``CpuOps``, fused Numba kernels on the CPU (the reference without Numba).
- :mod:`gpunn.ops.cuda`: ``CupyOps``, fused CUDA kernels through CuPy.
- :mod:`gpunn.ops.ensemble`, :mod:`gpunn.ops.ensemble_cuda`: the same with a member axis, for
  :class:`gpunn.Ensemble` (generic and Numba; CUDA).
- :mod:`gpunn.ops.kernels`: where the CUDA sources are, their template instances, compiled modules.
- :mod:`gpunn.ops.cublas`: cuBLAS GemmEx with a per-call compute type (tf32, bf16, CUDA graphs).

The backends import ``base`` (never this package's factory), so the factory can import them
without an import cycle.
"""
from __future__ import annotations

from .. import environment
from .base import ENV_FUSED, NumpyOps, Ops

__all__ = ["Ops", "NumpyOps", "ops_for", "ensemble_ops_for", "ENV_FUSED", "fused_setting"]


def fused_setting() -> bool:
    """GPUNN_FUSED_KERNELS: on unless 0, false, no or off (a value neither on nor off is refused)."""
    return environment.flag(ENV_FUSED, True)


def ops_for(backend, fused: bool | None = None, precision: str = "float32") -> Ops:
    """The Ops for a backend: ``CpuOps`` on the CPU (the NumPy reference plus fused Numba kernels
    where Numba is installed), ``CupyOps``' fused CUDA kernels on the GPU.

    ``fused=False`` (or GPUNN_FUSED_KERNELS=0, false, no or off) runs the unfused reference expressions instead, to
    compare. On the CPU, ``fused=True`` (or GPUNN_FUSED_KERNELS on) asks for Numba's kernels: a Numba that is
    not installed, or does not import, is an error then, and by default the reference (with a warning for the
    latter: gpunn.ops.cpu).
    """
    by_variable = fused is None and environment.text(ENV_FUSED) is not None  # (unset: not asked for)
    if by_variable:
        fused = fused_setting()
    if not backend.is_gpu:
        if precision != "float32":  # only the tests' emulation of tf32/bf16 gets here (see gpunn.model)
            return Ops(precision=precision)
        from .cpu import CpuOps

        return CpuOps(fused=fused, by_variable=by_variable)
    from .cuda import CupyOps

    return CupyOps(fused=fused is not False, precision=precision)


def ensemble_ops_for(ops):
    """The member-axis ops (gpunn.ops.ensemble) that go with a model's single-model ``ops``: one per
    ``ops``, so an ensemble and its optimizer share it (and its caches)."""
    member_ops = getattr(ops, "_member_ops", None)
    if member_ops is None:
        if ops.xp.__name__ == "numpy":
            from .ensemble import CpuEnsembleOps as cls
        else:
            from .ensemble_cuda import CupyEnsembleOps as cls
        member_ops = ops._member_ops = cls(ops)
    return member_ops
