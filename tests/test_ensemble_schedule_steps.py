"""A per-step schedule in an Ensemble: member k's rate is its base rate x the step's factor, so it trains as its MLP
with that schedule, on every CPU path (the generic member ops, the Numba update, the one-call group pass with Adam
inside its kernel, member groups on threads). The members' table changes its learning rates every step then; that
change alone must not rebuild what is derived from the other settings (MemberRates.version)."""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import Schedule
from gpunn.ops.member_rates import ACTIVE, BETA1, HYPER_FIELDS, LR, WEIGHT_DECAY, MemberRates

SCHEDULES = {"onecycle": Schedule("onecycle"), "warm-up": Schedule("cosine", warmup_steps=10)}


@pytest.fixture(autouse=True)
def auto_is_the_cpu(monkeypatch):
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
@pytest.mark.parametrize("outputs, fused, groups", [(1, True, False), (1, True, True), (2, True, False),
                                                    (1, False, False)],
                         ids=["one-call-pass", "one-call-groups", "numba-update", "generic"])
def test_each_member_trains_as_its_mlp_under_a_per_step_schedule(ensemble_data, monkeypatch, schedule, optimizer,
                                                                 outputs, fused, groups):
    """Member k (base rate lr_k, weight decay wd_k) holds the weights of MLP(seed=3 + k) fit with lr_k, wd_k and the
    same per-step schedule, to 1e-10 in float64; and not the weights of a constant-rate fit."""
    if groups:
        import gpunn.ops.ensemble as ens_ops

        for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
            monkeypatch.setattr(ens_ops, name, 0)
    X, Y = ensemble_data
    Y = Y[:, :outputs]
    sizes = [5, 8, 7, outputs]
    lrs = [0.03, 0.05, 0.1] if optimizer in ("sgd", "nesterov") else [3e-3, 1e-2, 3e-2]
    wds = [0.0, 1e-3, 1e-2]
    fit = dict(epochs=3, batch_size=32, seed=5, verbose=False, schedule=SCHEDULES[schedule])
    ens = gpunn.Ensemble(sizes, 3, dtype="float64", seed=3, fused=fused)
    h = ens.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=wds, **fit)
    for k in range(3):
        twin = gpunn.MLP(sizes, dtype="float64", seed=3 + k, fused=fused)
        th = twin.fit(X, Y, optimizer=gpunn.optim.make_optimizer(optimizer, weight_decay=wds[k]), lr=lrs[k], **fit)
        assert rel_err(ens.member_params[k], twin.params) <= 1e-10, f"member {k}"
        np.testing.assert_allclose(h.member(k)["loss"], th["loss"], rtol=1e-10)
        np.testing.assert_allclose(h.member(k)["lr"], th["lr"], rtol=1e-15)
    plain = gpunn.Ensemble(sizes, 3, dtype="float64", seed=3, fused=fused)
    plain.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=wds, **{**fit, "schedule": "constant"})
    assert rel_err(ens.member_params[2], plain.member_params[2]) > 1e-3


def test_a_change_of_the_learning_rates_alone_keeps_the_tables_version():
    """version counts changes to what caches derive from the table (betas, weight decay, the active members, the
    clips); the learning rates, which every step reads afresh, change every step under a per-step schedule, and
    bumping it then rebuilt an Adam step's per-member constants every step (~1.9x a tiny-x4 CPU step). The device
    copy still follows every change."""
    table = np.zeros((3, HYPER_FIELDS))
    table[:, ACTIVE], table[:, BETA1] = 1.0, 0.9
    rates = MemberRates(np, table)
    rates.update(LR, [0.1, 0.2, 0.3])
    assert rates.version == 0 and rates.column(LR).tolist() == [0.1, 0.2, 0.3] and rates._stale
    for field in (WEIGHT_DECAY, ACTIVE, BETA1):
        before = rates.version
        rates.update(field, [1.0, 0.0, 1.0])
        assert rates.version == before + 1
    assert rates.active.tolist() == [True, False, True]
