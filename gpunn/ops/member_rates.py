"""An ensemble's per-member optimizer settings: :class:`MemberRates`, a (K, HYPER_FIELDS) float64 table (learning rate
for the epoch, weight decay, momentum, beta1, beta2, active, gradient clipping by norm and by value: 0 for none) kept
on the host for the CPU and copied to the device for the kernels (kernels/ensemble.cuh) after each change (the
learning rates: once an epoch, or every step with a per-step schedule; gpunn.ops.pinned_writes), and
:class:`BetaPowers`, Adam's bias corrections per member as the single model forms them. Read by the member-axis ops
(gpunn.ops.ensemble, gpunn.ops.ensemble_cuda) and filled by gpunn.training.ensemble's EnsembleOptimizer.
"""
from __future__ import annotations

import numpy

# Columns of the per-member settings table; the same order as HyperField in kernels/ensemble.cuh. CLIP_NORM and
# CLIP_VALUE: the member optimizer's clip_norm and clip_value, 0.0 where it has none (both are > 0 where given).
LR, WEIGHT_DECAY, MOMENTUM, BETA1, BETA2, ACTIVE, CLIP_NORM, CLIP_VALUE = range(8)
HYPER_FIELDS = 8


class MemberRates:
    """Per-member optimizer settings: ``host`` (K, HYPER_FIELDS) float64, and its device copy."""

    def __init__(self, xp, table):
        self.xp = xp
        self.host = numpy.array(table, dtype=numpy.float64)
        if self.host.ndim != 2 or self.host.shape[1] != HYPER_FIELDS:  # (the kernels read HYPER_FIELDS a member)
            raise ValueError(f"a member settings table is (members, {HYPER_FIELDS}), got shape {self.host.shape}")
        self._device, self._stale, self._writes = None, False, None
        # counts changes of the columns that caches derive values from: all but LR, which every step reads from the
        # table as it is (a per-step schedule rewrites it each step: rebuilding the caches then doubled a tiny-x4 step)
        self.version = 0

    def column(self, field):
        return self.host[:, field]

    @property
    def clips(self) -> bool:
        """Whether some member clips its gradients (by norm or by value)."""
        if getattr(self, "_clips_version", None) != self.version:
            self._clips, self._clips_version = bool(self.host[:, [CLIP_NORM, CLIP_VALUE]].any()), self.version
        return self._clips

    @property
    def active(self):
        if getattr(self, "_active_version", None) != self.version:
            self._active, self._active_version = self.host[:, ACTIVE] != 0, self.version
        return self._active

    def update(self, field, values):
        """Change one column (e.g. the step's learning rates); the device copy follows on next use."""
        self.host[:, field] = values
        self._stale = True
        if field != LR:
            self.version += 1

    @property
    def device_copy(self):
        """The table's device copy where made (``device`` makes it), else None."""
        return self._device

    @property
    def device(self):
        """The table on the device (one small asynchronous copy on the current stream after each change: once an
        epoch, or every step with a per-step schedule), always at the same address once made (a captured CUDA graph
        reads it there)."""
        if self.xp is numpy:
            return self.host
        if self._device is None:
            self._device = self.xp.asarray(self.host)
        elif self._stale:
            if self._writes is None:
                from .pinned_writes import PinnedWrites

                self._writes = PinnedWrites(self._device)
            self._writes.write(self.host)
        self._stale = False
        return self._device


class BetaPowers:
    """beta**step for a column of Adam's betas (one per member), each by Python's float pow, as the single model's
    Adam forms its bias corrections (optim.Adam.step, mlp_step): NumPy's array power may run a SIMD pow that is not
    correctly rounded (on the 2-core AMD EPYC 1 ulp off Python's at 328 of the steps 1..20000 for 0.9 and 1071 for
    0.999, the first at step 7), and the member's float64 update would carry that ulp. One pow per distinct beta."""

    def __init__(self, betas):
        values, self.where = numpy.unique(numpy.asarray(betas, dtype=numpy.float64), return_inverse=True)
        self.values = values.tolist()

    def into(self, out, step):
        """``out`` (a float64 array of the betas' shape) = beta**step, elementwise; returns ``out``."""
        step = int(step)  # an int exponent, as Adam's own step count (a NumPy integer would call NumPy's pow)
        if len(self.values) == 1:
            out.fill(self.values[0] ** step)
        else:
            numpy.take([beta ** step for beta in self.values], self.where, out=out)
        return out

    @classmethod
    def of(cls, betas, step):
        """beta**step for ``betas`` as a new float64 array."""
        return cls(betas).into(numpy.empty(numpy.shape(betas)), step)
