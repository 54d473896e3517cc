"""gpunn.Ensemble: member k trains exactly as MLP(seed=seed + k) would, and the API around it.

The exactness contract: after ``Ensemble(sizes, K, seed=s0).fit(X, Y, lr=lrs, seed=s, ...)``
member k holds the weights of ``MLP(sizes, seed=s0 + k).fit(X, Y, lr=lrs[k], seed=s, ...)`` to
1e-10 relative in float64 and 1e-5 in float32. Nets are tiny and runs short, to keep CI fast.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import waiting

import gpunn
from gpunn.ops import ensemble_ops_for
from gpunn.optim import make_optimizer
from gpunn.ops.member_rates import HYPER_FIELDS, MemberRates
from gpunn.training.callbacks import Callback
from gpunn.training.ensemble import bootstrap_rows
from torch_formulas import torch_adam, torch_sgd

TOL = {"float64": 1e-10, "float32": 1e-5}
SIZES = [5, 8, 7, 2]
LRS = [1e-3, 3e-3, 1e-2]


@pytest.fixture(autouse=True)
def auto_is_the_cpu(monkeypatch):
    """This module holds the CPU's contract (tests/test_ensemble_gpu.py the GPU's): the models it makes on device
    "auto" are on the CPU on any machine, as on CI's, where the whole suite runs without a GPU; on a machine with
    one, numpy.testing refused their device arrays. GPUNN_DEVICE wins over "auto" alone: cuda named stays cuda."""
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def check_members(ens, X, Y, optimizer, per_member, model_kwargs, fit_kwargs, dtype, callbacks=None):
    """Fit each member's MLP twin and compare weights and histories with the ensemble's.

    ``per_member``: {"lr": K values, and optimizer settings such as "weight_decay": K values};
    ``callbacks``: a function returning fresh callbacks for one twin.
    """
    history = ens.history
    for k in range(ens.n_models):
        twin = gpunn.MLP(list(ens.layer_sizes), dtype=dtype, seed=ens.seeds[k], **model_kwargs)
        settings = {name: v[k] for name, v in per_member.items() if name != "lr"}
        h = twin.fit(X, Y, optimizer=make_optimizer(optimizer, **settings), lr=per_member["lr"][k], verbose=False,
                     callbacks=callbacks() if callbacks else (), **fit_kwargs)
        assert rel_err(ens.member_params[k], twin.params) <= TOL[dtype], f"member {k}"
        mine = history.member(k)
        assert len(mine["loss"]) == len(h["loss"])
        np.testing.assert_allclose(mine["loss"], h["loss"], rtol=1e-5 if dtype == "float32" else 1e-10)
        np.testing.assert_allclose(mine["lr"], h["lr"], rtol=1e-12)  # each member's own rate (mut12e T85: member 0's)
        if "val_loss" in h:
            np.testing.assert_allclose(mine["val_loss"], h["val_loss"], rtol=1e-5 if dtype == "float32" else 1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_each_member_trains_exactly_as_its_own_mlp(ensemble_data, dtype, optimizer):
    X, Y = ensemble_data
    lrs = [x * (10 if optimizer in ("sgd", "momentum", "nesterov") else 1) for x in LRS]
    wds = [0.0, 1e-3, 1e-2]
    ens = gpunn.Ensemble(SIZES, 3, activation="tanh", dtype=dtype, seed=10)
    fit_kwargs = dict(epochs=3, batch_size=32, seed=5, validation_fraction=0.1)
    ens.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=wds, verbose=False, **fit_kwargs)
    check_members(ens, X, Y, optimizer, {"lr": lrs, "weight_decay": wds}, {"activation": "tanh"}, fit_kwargs, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation,bias,schedule,fused", [
    ("relu", True, "step", True),
    ("relu", False, "cosine", True),
    ("relu", True, "exponential", False),  # the generic (unfused) member ops
    ("gelu", True, "constant", True),  # g' from Z: Z kept beside A
    ("sigmoid", False, "constant", True),
    ("elu", True, "cosine", False),
])
def test_exact_across_activations_bias_and_schedules(ensemble_data, dtype, activation, bias, schedule, fused):
    X, Y = ensemble_data
    model_kwargs = dict(activation=activation, bias=bias, fused=fused)
    ens = gpunn.Ensemble(SIZES, 3, dtype=dtype, seed=3, **model_kwargs)
    sched = gpunn.Schedule(schedule, **{key: value for key, value in dict(step_size=2, gamma=0.5).items()
                                        if key in gpunn.optim.SCHEDULE_FIELDS[schedule]})  # (those it reads)
    fit_kwargs = dict(epochs=4, batch_size=40, schedule=sched, seed=1)
    ens.fit(X, Y, optimizer="adam", lr=LRS, verbose=False, **fit_kwargs)
    check_members(ens, X, Y, "adam", {"lr": LRS}, model_kwargs, fit_kwargs, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
def test_exact_with_one_output(ensemble_data, dtype, bias):
    """One output: the last hidden layer's dA is an outer product, fused with its ReLU backward on the CPU."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble([5, 8, 7, 1], 3, dtype=dtype, seed=3, bias=bias)
    fit_kwargs = dict(epochs=3, batch_size=40, seed=1)
    ens.fit(X, Y[:, :1], optimizer="adam", lr=LRS, verbose=False, **fit_kwargs)
    check_members(ens, X, Y[:, :1], "adam", {"lr": LRS}, {"bias": bias}, fit_kwargs, dtype)


def test_a_batch_of_one_row_steps_each_member_as_its_mlp(ensemble_data):
    """A last batch of one row (121 rows in batches of 40): the loss gradient's 2 / rows is 2 there, as one
    model's (mut18a A13: 2 / max(rows, 2) halved that step's gradient)."""
    X, Y = ensemble_data
    X, Y = X[:121], Y[:121]
    lrs = [1e-2, 3e-2, 0.1]
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=3)
    fit_kwargs = dict(epochs=2, batch_size=40, seed=1)
    ens.fit(X, Y, optimizer="sgd", lr=lrs, verbose=False, **fit_kwargs)
    check_members(ens, X, Y, "sgd", {"lr": lrs}, {}, fit_kwargs, "float64")


def test_per_member_betas_and_momentum(ensemble_data):
    X, Y = ensemble_data
    betas = {"beta1": [0.9, 0.8, 0.5], "beta2": [0.999, 0.99, 0.9]}
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    ens.fit(X, Y, optimizer="adam", lr=1e-2, epochs=2, batch_size=50, seed=2, verbose=False, **betas)
    check_members(ens, X, Y, "adam", {"lr": [1e-2] * 3, **betas}, {}, dict(epochs=2, batch_size=50, seed=2), "float64")
    momenta = {"momentum": [0.0, 0.5, 0.9]}
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    # an Optimizer object gives every member's defaults; the per-member momentum replaces its own
    ens.fit(X, Y, optimizer=gpunn.SGD(weight_decay=1e-3), lr=0.05, epochs=2, batch_size=50, seed=2, verbose=False,
            **momenta)
    check_members(ens, X, Y, "sgd", {"lr": [0.05] * 3, "weight_decay": [1e-3] * 3, **momenta}, {},
                  dict(epochs=2, batch_size=50, seed=2), "float64")


@pytest.mark.parametrize("schedule", [["cosine", "step"], ("cosine", gpunn.Schedule("step", step_size=2))])
def test_a_schedule_per_member_is_refused_saying_the_members_share_one(ensemble_data, schedule):
    """lr and the optimizer's settings take one value per member; a list of schedules, given as they are, was
    refused as "schedule must be a name (...) or a gpunn.Schedule", which did not say why a list is not taken."""
    X, Y = ensemble_data
    with pytest.raises(ValueError, match=r"^schedule=.*: an Ensemble's members train under one schedule, a name or a "
                                         r"gpunn.Schedule \(lr, .* take one value per member; a schedule does not\): "
                                         r"fit an Ensemble for each schedule$"):
        gpunn.Ensemble(SIZES, 2, device="cpu").fit(X, Y, schedule=schedule, epochs=1, verbose=False)


@pytest.mark.parametrize("optimizer", ["sgd", gpunn.SGD(lr=0.05, weight_decay=0.3)], ids=["name", "SGD(lr=0.05)"])
def test_none_in_a_list_of_the_members_values_is_refused_not_a_default(ensemble_data, optimizer):
    """lr=[1e-3, None] trained member 1 at SGD's class default, 0.01, also where the optimizer given was SGD(lr=0.05),
    whose 0.05 lr=None (no list) trains every member at; weight_decay=[0.0, None] alike. A list gives each member its
    value: None in it is refused, naming the member, as continuing a fit with it and seed=[0, None] are."""
    X, Y = ensemble_data
    for key, values in (("lr", [1e-3, None]), ("weight_decay", [0.0, None]), ("momentum", (None, 0.9))):
        with pytest.raises(ValueError, match=rf"^{key} lists None for member {values.index(None)}: a list gives each "
                                             rf"member its value; leave {key} out for the optimizer's own, for every "
                                             rf"member$"):
            gpunn.Ensemble(SIZES, 2, device="cpu").fit(X, Y, optimizer=optimizer, epochs=1, verbose=False,
                                                       **{key: values})
    ens = gpunn.Ensemble(SIZES, 2, device="cpu")
    ens.fit(X, Y, optimizer=optimizer, epochs=1, verbose=False, lr=None, weight_decay=[0.0, 0.1])
    expected = 0.01 if optimizer == "sgd" else 0.05
    assert [(m.lr, m.weight_decay) for m in ens.optimizer.members] == [(expected, 0.0), (expected, 0.1)]


@pytest.mark.parametrize("make, per_member", [
    (lambda: gpunn.Nesterov(lr=0.05, momentum=0.8), {"momentum": [0.5, 0.8, 0.9]}),
    (lambda: gpunn.Nesterov(lr=0.05, weight_decay=1e-3), {}),
    (lambda: gpunn.Momentum(lr=0.05, nesterov=True), {"lr": [0.01, 0.05, 0.1]}),
    (lambda: gpunn.AdamW(lr=1e-2, weight_decay=0.1, eps=1e-6), {"beta1": [0.5, 0.9, 0.95]}),
])
def test_an_optimizer_object_of_every_kind_sets_each_members_defaults(ensemble_data, make, per_member):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=2)
    ens.fit(X, Y, optimizer=make(), epochs=2, batch_size=50, seed=1, verbose=False, **per_member)
    for k in range(3):
        opt = make()
        for name, values in per_member.items():
            setattr(opt, name, values[k])
        twin = gpunn.MLP(SIZES, dtype="float64", seed=2 + k)
        twin.fit(X, Y, optimizer=opt, epochs=2, batch_size=50, seed=1, verbose=False)
        assert rel_err(ens.member_params[k], twin.params) <= TOL["float64"], f"member {k}"


def test_early_stopping_freezes_each_member_as_its_twin_stops(ensemble_data):
    X, Y = ensemble_data
    lrs = [0.3, 3e-3, 0.05]  # a fast member that overfits or oscillates, a slow one, one between
    fit_kwargs = dict(epochs=12, batch_size=30, seed=4, validation_fraction=0.2)

    def stopper():
        return [gpunn.EarlyStopping(patience=1, min_delta=0.02)]

    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=7)
    history = ens.fit(X, Y, optimizer="sgd", lr=lrs, verbose=False, callbacks=stopper(), **fit_kwargs)
    check_members(ens, X, Y, "sgd", {"lr": lrs}, {}, fit_kwargs, "float64", callbacks=stopper)
    assert any(history.stopped_early) and not all(history.stopped_early), history.stopped_early
    assert len(history.best_epoch) == 3 and all(e is not None for e in history.best_epoch)


def test_each_members_early_stopping_skips_a_nan_first_value_and_counts_an_equal_one_as_no_improvement(
        ensemble_data):
    """EarlyStopping's rules per member, on scripted scores: member 0's NaN first score is never its best
    (it improves on to epoch 4); member 1's scores repeat exactly, so patience 2 freezes it after epoch 3."""
    X, Y = ensemble_data

    class Scripted(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [[float("nan"), 3.0, 2.0, 1.0][epoch], 1.0]

    history = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7).fit(
        X, Y, epochs=4, batch_size=30, verbose=False, callbacks=[Scripted(), gpunn.EarlyStopping(monitor="score",
                                                                                                  patience=2)])
    assert history.best_epoch == [4, 1] and history.stopped_early == [False, True] and history.stopped_epoch == [None, 3]


def test_a_member_without_a_best_epoch_keeps_the_weights_it_reached(ensemble_data):
    """restore_best_weights puts back only the members that have a best epoch before their last: member 1, whose
    monitored value was never finite, keeps its weights (mut12e T96: every member was set to the saved rows, and
    member 1's were those of epoch 1, saved when member 0 improved)."""
    X, Y = ensemble_data

    class Scripted(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [float(epoch), float("nan")]

    class Reached(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            self.params = np.array(trainer.model.member_params)

    ens, reached = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7), Reached()
    history = ens.fit(X, Y, epochs=3, batch_size=30, verbose=False, callbacks=[
        Scripted(), gpunn.EarlyStopping(monitor="score", patience=5), reached])
    assert history.best_epoch == [1, None]
    np.testing.assert_array_equal(ens.member_params[1], reached.params[1])
    assert not np.array_equal(ens.member_params[0], reached.params[0])  # member 0 back at epoch 1


def test_each_members_early_stopping_takes_a_monitored_r2_as_higher_is_better(ensemble_data):
    """mode='auto' on a name ending in r2 maximises it, per member as for one model (mut12e T20: minimised, so
    the rising score's first epoch was each member's best and patience 2 stopped both after epoch 3)."""
    X, Y = ensemble_data

    class Scripted(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score_r2"] = [[0.1, 0.2, 0.3, 0.4][epoch], [0.4, 0.3, 0.2, 0.1][epoch]]

    history = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7).fit(
        X, Y, epochs=4, batch_size=30, verbose=False,
        callbacks=[Scripted(), gpunn.EarlyStopping(monitor="score_r2", patience=2)])
    assert history.best_epoch == [4, 1] and history.stopped_epoch == [None, 3]


def test_each_members_early_stopping_in_max_mode_needs_a_rise_past_min_delta(ensemble_data):
    """mode='max' with min_delta 0.5: 1.3 after 1.0 is no improvement, 1.6 is (mut12e T27: best - min_delta
    counted any value above best - 0.5, so epoch 4's 2.0 was the best)."""
    X, Y = ensemble_data

    class Scripted(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [[1.0, 1.3, 1.6, 2.0][epoch]] * 2

    history = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7).fit(
        X, Y, epochs=4, batch_size=30, verbose=False,
        callbacks=[Scripted(), gpunn.EarlyStopping(monitor="score", mode="max", min_delta=0.5, patience=2)])
    assert history.best_epoch == [3, 3] and history.best == [1.6, 1.6] and history.stopped_early == [False, False]


MONITOR_SCRIPTS = ([1.0, 2.0, 0.5, 0.7, 3.0, 0.6], [3.0, 2.0, 2.5, 1.0, 1.2, 4.0])  # one per member, 6 epochs
# (best epoch, stopping epoch) of each script with min_delta 0.25 and patience 2, worked by hand
MONITOR_OUTCOMES = {"min": [(3, 5), (4, 6)], "max": [(2, 4), (1, 3)]}


@pytest.mark.parametrize("mode", ["auto", "min", "max"])
@pytest.mark.parametrize("monitor,validated", [
    (None, True), (None, False), ("loss", True), ("val_loss", True), ("val_mse", True), ("val_mae", True),
    ("val_r2", True), ("score", False), ("score_r2", False)])
def test_each_members_early_stopping_decides_as_one_models_on_every_monitor(ensemble_data, monitor, validated, mode):
    """EarlyStopping and an ensemble's per-member form decide by one rule (gpunn.training.callbacks:
    default_monitor, monitor_mode, improves; MemberEarlyStopping had its own copy): for every monitor name, with
    and without validation, in every mode, member k stops and keeps its best epoch where one MLP given member k's
    values does, and where the rule says (mode 'auto' maximises names ending in r2: val_r2, score_r2)."""
    X, Y = ensemble_data
    name = monitor or ("val_loss" if validated else "loss")
    direction = mode if mode != "auto" else ("max" if name.endswith("r2") else "min")

    class Scripted(gpunn.Callback):
        def __init__(self, member=None):
            self.member = member

        def on_epoch_end(self, trainer, epoch, logs):
            values = [script[epoch] for script in MONITOR_SCRIPTS]
            logs[name] = values if self.member is None else values[self.member]

    def fit(model, member=None):
        return model.fit(X, Y, epochs=6, batch_size=30, verbose=False, validation_fraction=0.2 if validated else None,
                         callbacks=[Scripted(member), gpunn.EarlyStopping(monitor, 2, 0.25, mode)])

    members = fit(gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7))
    ones = [fit(gpunn.MLP(SIZES, dtype="float64", seed=7 + k), k) for k in range(2)]
    assert [(h.best_epoch, len(h["epoch"])) for h in ones] == MONITOR_OUTCOMES[direction]
    assert all(h.stopped_early for h in ones)
    assert list(zip(members.best_epoch, members.stopped_epoch)) == MONITOR_OUTCOMES[direction]
    assert members.best == [MONITOR_SCRIPTS[k][e - 1] for k, (e, _) in enumerate(MONITOR_OUTCOMES[direction])]


@pytest.mark.parametrize("monitor", ["loss", "val_loss", "val_mse", "val_mae", "val_r2", "r2", "score_r2"])
def test_ensemble_best_ranks_members_in_the_direction_early_stopping_monitors(ensemble_data, monitor):
    """ens.best(monitor) takes the highest value of a name that early stopping maximises in mode 'auto' (one
    ending in r2) and the lowest of the rest: both by gpunn.training.callbacks.monitor_mode."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7)
    ens.fit(X, Y, epochs=1, batch_size=50, validation_fraction=0.2, verbose=False)
    ens.history[monitor] = [[0.2, 0.7]]
    assert ens.best_index(monitor) == (1 if monitor.endswith("r2") else 0)


def test_a_diverging_member_is_frozen_and_the_others_train_on(ensemble_data):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1)
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged"):
        history = ens.fit(X, Y * 1e3, optimizer="sgd", lr=[1e-4, 50.0], epochs=3, batch_size=50, verbose=False)
    assert history.diverged == [1]
    assert np.isfinite(history.member(0)["loss"]).all()
    with pytest.raises(gpunn.TrainingDiverged, match="every member"):
        gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1).fit(X, Y * 1e3, optimizer="sgd", lr=50.0, epochs=3,
                                                             batch_size=50, verbose=False)
    # a finite loss past 1e4 times the reference diverges too, as for one model (not only NaN or inf)
    X, Y = gpunn.datasets.make("teacher", 2000, 8, noise=0.05, seed=11, device="cpu")
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged in epoch 1") as said:
        grown = gpunn.Ensemble([8, 32, 1], 2, device="cpu", seed=0).fit(X, Y, epochs=2, lr=[1e-3, 5.0], verbose=False)
    # a warning of its own (the command line's note), at the line that called fit, not at gpunn's loop.py
    assert [(w.category.__name__, w.filename) for w in said if "diverged" in str(w.message)] == [
        ("MembersDivergedWarning", __file__)]
    assert grown.diverged == [1] and 1e4 < grown["loss"][0][1] / grown["loss"][0][0] < 1e5  # finite, ~6e4


def test_a_diverged_member_is_left_out_of_the_mean_std_and_best_and_remembered(ensemble_data, tmp_path):
    """A diverged member kept its NaN weights: predict(return_std=True) was NaN on every row and best() could
    pick it. The mean and std are now over the others (a warning names it), best() skips it, predict(X) still
    shows it, and ens.diverged survives copies, gpunn.save/load and checkpoints."""
    import copy

    X, Y = ensemble_data
    ens, path = gpunn.Ensemble(SIZES, 3, dtype="float32", seed=1), tmp_path / "run.npz"  # (float32: it overflows)
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged in epoch"):
        ens.fit(X, Y * 1e3, optimizer="sgd", lr=[1e-4, 1e4, 2e-4], epochs=2, batch_size=50, validation_fraction=0.2,
                callbacks=[gpunn.ModelCheckpoint(path)], verbose=False)
    assert ens.diverged == [1]
    P = ens.predict(X)
    assert not np.isfinite(P[1]).all() and np.isfinite(P[[0, 2]]).all()  # each member's own output, honestly
    for model in (ens, copy.deepcopy(ens), gpunn.load(_saved(ens, tmp_path / "ens.npz"), device="cpu"),
                  gpunn.load_checkpoint(path, device="cpu").model):
        assert model.diverged == [1]
        with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged in the last fit .* other 2 of 3"):
            mean, std = model.predict(X, return_std=True)
        np.testing.assert_allclose(mean, P[[0, 2]].mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(std, P[[0, 2]].std(axis=0), rtol=1e-6)
    with pytest.warns(RuntimeWarning, match=r"^members \[1\] have no score on \(X, Y\): their metrics are NaN \(member "
                                            r"1: .*\(in ens\.diverged\)\)$"):  # (audit37b e17: not said)
        assert np.isnan(ens.evaluate(X, Y)["loss"][1])
    ens.history["val_loss"][0][1] = 0.0  # its first epoch looking best: still never picked
    assert ens.best_index() in (0, 2) and ens.best_index("val_r2") in (0, 2)
    with pytest.raises(gpunn.TrainingDiverged, match="every member"):
        ens.fit(X, Y * 1e3, optimizer="sgd", lr=50.0, epochs=2, batch_size=50, validation_fraction=0.2, verbose=False)
    assert ens.diverged == [0, 1, 2]
    with pytest.raises(gpunn.TrainingDiverged, match="no member to take a mean over"):
        ens.predict(X, return_std=True)
    with pytest.raises(gpunn.TrainingDiverged, match="no member to pick"):
        ens.best()


@pytest.mark.parametrize("restore", [True, False])
def test_a_diverged_member_restored_to_its_best_epoch_counts_in_the_mean_and_best_again(ensemble_data, tmp_path,
                                                                                        restore):
    """EarlyStopping(restore_best_weights=True) put the member back to its best epoch's finite, validated
    weights, but it was still left out of the mean and of best(). It stays in history.diverged; without the
    restore it is still left out. Copies, gpunn.save/load and the run's checkpoint agree."""
    import copy

    X, Y = ensemble_data

    class Poison(gpunn.Callback):  # member 1's weights blow up at the start of epoch 3
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 2:
                trainer.model.member_params[1] *= 1e200

    ens, path = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=1), tmp_path / "run.npz"
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged in epoch 3"):
        ens.fit(X, Y, optimizer="sgd", lr=1e-2, epochs=4, batch_size=50, validation_fraction=0.2, verbose=False,
                callbacks=[Poison(), gpunn.EarlyStopping(patience=5, restore_best_weights=restore),
                           gpunn.ModelCheckpoint(path)])
    assert ens.history.diverged == [1] and ens.history.best_epoch[1] == 2
    assert np.isfinite(ens.member_params[1]).all() == restore
    left_out = [] if restore else [1]
    for model in (ens, copy.deepcopy(ens), gpunn.load(_saved(ens, tmp_path / "ens.npz"), device="cpu"),
                  gpunn.load_checkpoint(path, device="cpu").model):
        assert model.diverged == left_out
    if restore:
        P = ens.predict(X)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no member is left out
            mean, std = ens.predict(X, return_std=True)
        np.testing.assert_allclose(mean, P.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(std, P.std(axis=0), rtol=1e-12)
    ens.history["val_loss"][1][1] = 0.0  # its best epoch the best of all: picked only when it holds those weights
    assert (ens.best_index() == 1) == restore


def _saved(model, path):
    gpunn.save(path, model)
    return path


def test_without_early_stopping_each_members_best_epoch_is_its_best_finite_one(ensemble_data):
    """history.best_epoch and best without EarlyStopping: per member, over its finite validation losses (mut12e
    T57: member 1, diverged in epoch 3, had the NaN epoch as its best)."""
    X, Y = ensemble_data

    class Poison(gpunn.Callback):  # member 1's weights blow up at the start of epoch 3
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 2:
                trainer.model.member_params[1] *= 1e200

    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1)
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged in epoch 3"):
        history = ens.fit(X, Y, optimizer="sgd", lr=1e-2, epochs=4, batch_size=50, validation_fraction=0.2,
                          callbacks=[Poison()], verbose=False)
    val = np.asarray(history["val_loss"])
    assert not np.isfinite(val[2:, 1]).any()
    assert history.best_epoch == [int(np.argmin(val[:, 0])) + 1, int(np.argmin(val[:2, 1])) + 1]
    assert history.best == [val[:, 0].min(), val[:2, 1].min()]


def test_an_ensembles_shuffle_seed_defaults_to_member_0s_seed(ensemble_data):
    """fit without seed= shuffles by seeds[0], as documented (mut12e T59: seed 0)."""
    X, Y = ensemble_data
    runs = []
    for seed in (None, 12):
        ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=12)
        ens.fit(X, Y, epochs=2, batch_size=30, seed=seed, verbose=False)
        runs.append(ens.params)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_an_ensembles_throughput_counts_member_samples(ensemble_data, monkeypatch):
    """samples_per_s of an ensemble is member-samples per second (K x rows, as gpunn bench --ensemble
    reports it); the loop's clock is faked to one second an epoch."""
    import itertools
    import types

    from gpunn.training import ensemble as ensemble_training, loop

    X, Y = ensemble_data
    clock = types.SimpleNamespace(perf_counter=itertools.count().__next__)
    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(ensemble_training, "time", clock)
    history = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=1).fit(X, Y, epochs=1, batch_size=50, verbose=False)
    assert history["samples_per_s"] == [3 * 150.0]


def test_when_every_member_diverges_each_keeps_its_best_epochs_weights_under_early_stopping(ensemble_data):
    X, Y = ensemble_data

    class Blowup(gpunn.Callback):  # every member's rate jumps a millionfold from the third epoch
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 2:
                trainer.lr_scale = 1e6

    class Snapshots(gpunn.Callback):
        def __init__(self):
            self.params = {}

        def on_epoch_end(self, trainer, epoch, logs):
            self.params[epoch + 1] = (np.array(trainer.model.member_params), list(logs["val_loss"]))

    ens, snaps = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1), Snapshots()
    with pytest.raises(gpunn.TrainingDiverged, match="every member"):
        ens.fit(X, Y, optimizer="sgd", lr=[1e-2, 2e-2], epochs=6, batch_size=50, validation_fraction=0.2,
                callbacks=[gpunn.EarlyStopping(patience=5), snaps, Blowup()], verbose=False)
    for k in range(2):
        finite = [e for e in sorted(snaps.params) if np.isfinite(snaps.params[e][1][k])]
        best = min(finite, key=lambda e: snaps.params[e][1][k])
        assert best in (1, 2)  # before the rates jumped
        np.testing.assert_array_equal(ens.member_params[k], snaps.params[best][0][k])


def test_members_diverging_in_different_epochs_end_the_fit_when_the_last_one_does(ensemble_data):
    """TrainingDiverged counts every member that diverged in the fit, not those of one epoch (mut12e T47: the second
    member's divergence alone was not 'every member', and the fit stopped without a word when none was left)."""
    X, Y = ensemble_data

    class Poison(gpunn.Callback):  # member 0's weights blow up in epoch 1, member 1's in epoch 2
        def on_epoch_begin(self, trainer, epoch):
            if epoch < 2:
                trainer.model.member_params[epoch] *= 1e200

    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1)
    with pytest.warns(RuntimeWarning, match=r"members \[0\] diverged in epoch 1"), \
            pytest.raises(gpunn.TrainingDiverged, match="every member"):
        ens.fit(X, Y, optimizer="sgd", lr=1e-2, epochs=4, batch_size=50, callbacks=[Poison()], verbose=False)
    assert ens.diverged == [0, 1]


def test_the_members_losses_are_read_from_the_device_once_per_epoch(ensemble_data, monkeypatch):
    """The K losses stay on the device through an epoch's batches and come back in one read at its end (mut12e N47:
    a read per batch passed every test)."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    backend, reads = type(ens.backend), []
    to_host = backend.to_host
    monkeypatch.setattr(backend, "to_host", lambda self, *args, **kw: (reads.append(1), to_host(self, *args, **kw))[1])
    ens.fit(X, Y, epochs=3, batch_size=30, verbose=False)  # 5 batches an epoch
    assert len(reads) == 3


def test_an_interrupted_ensemble_keeps_the_weights_it_reached_under_early_stopping(ensemble_data, interrupt_at):
    """Ctrl-C (trainer.interrupt) ends the fit with the members' weights as they were, not their best epoch's
    (mut12e T37: the best ones were put back), as one model's fit does."""
    X, Y = ensemble_data

    class Scripted(gpunn.Callback):  # every member's best epoch is the first
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [float(epoch), float(epoch)]

    class Reached(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            self.params = np.array(trainer.model.member_params)

    ens, reached = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=7), Reached()
    history = ens.fit(X, Y, epochs=4, batch_size=30, verbose=False, callbacks=[
        Scripted(), gpunn.EarlyStopping(monitor="score", patience=5), reached, interrupt_at(2, 1)])
    assert history.interrupted and history.best_epoch == [1, 1]
    np.testing.assert_array_equal(ens.member_params, reached.params)


def test_a_bootstrapped_ensembles_divergence_reference_is_a_loss_per_row():
    """Its batch is (K, rows, columns): the first batch's loss was divided by K, not by the rows, so the
    reference was rows/K times too large and a member diverging within that factor went on training."""
    X, Y = np.ones((64, 5)), np.zeros((64, 2))  # every resample is the same rows; predicting zero is exact

    class Reference(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            self.value = trainer.state.reference_loss

    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=3)
    first = max(float((np.asarray(ens[k].predict(X[:1])) ** 2).sum()) for k in range(2))  # a row's loss, per member
    grab = Reference()
    ens.fit(X, Y, bootstrap=True, epochs=1, batch_size=16, optimizer="sgd", lr=1e-9, callbacks=[grab], verbose=False)
    assert grab.value == pytest.approx(first, rel=1e-12)


@pytest.mark.parametrize("shuffle", [True, False])  # (mut12e T97: shuffled all the same)
def test_bootstrap_member_trains_as_an_mlp_on_its_resample(ensemble_data, shuffle):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=0)
    ens.fit(X, Y, bootstrap=True, epochs=2, batch_size=32, seed=9, lr=1e-2, shuffle=shuffle, verbose=False)
    assert rel_err(ens.member_params[0], ens.member_params[1]) > 1e-3
    for k in range(2):
        rows = bootstrap_rows(ens.backend, 9, k, X.shape[0])
        assert len(np.unique(rows)) < X.shape[0]  # a resample, with repeats
        twin = gpunn.MLP(SIZES, dtype="float64", seed=k)
        twin.fit(X[rows], Y[rows], epochs=2, batch_size=32, seed=9, lr=1e-2, shuffle=shuffle, verbose=False)
        assert rel_err(ens.member_params[k], twin.params) <= 1e-10



def test_a_bootstrap_resample_draws_each_row_alike_the_last_one_included():
    """Row i is drawn where the stream's uniform u in [0, 1) has floor(rows * u) == i: each row with chance 1/rows.
    (A slip to floor((rows - 1) * u) never drew the last row, and every test above still passed.)"""
    backend = gpunn.backend.resolve("cpu")
    counts = sum(np.bincount(bootstrap_rows(backend, 3, k, 4), minlength=4) for k in range(100))
    assert counts.sum() == 400 and counts.min() > 60, counts  # 100 a row expected

def test_numpy_values_are_one_setting_for_all_or_one_per_member(ensemble_data):
    X, Y = ensemble_data
    runs = [dict(lr=1e-2, beta1=0.8), dict(lr=np.array(1e-2), beta1=np.float64(0.8)),
            dict(lr=np.full(3, 1e-2), beta1=np.array([0.8, 0.8, 0.8]))]
    params = []
    for settings in runs:
        ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
        ens.fit(X, Y, epochs=1, batch_size=50, seed=0, verbose=False, **settings)
        params.append(ens.params)
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])


def test_the_progress_bar_keeps_the_members_losses_beside_the_epochs_time_left(ensemble_data, terminal_stderr,
                                                                               monkeypatch):
    from gpunn.training.callbacks import ProgressBar

    capsys = terminal_stderr
    monkeypatch.setattr(ProgressBar, "eta_every_s", 0.0)  # at every batch, rather than every second
    X, Y = ensemble_data
    gpunn.Ensemble(SIZES, 2, seed=0).fit(X, Y, epochs=2, batch_size=30, validation_fraction=0.2)
    second = [s for s in capsys.readouterr().err.split("\r") if "epoch 2/2" in s and "epoch_eta" in s]
    assert second and all("best loss=" in s and "best val_loss=" in s and "training=2/2" in s for s in second)


def test_in_a_log_an_ensemble_gets_a_line_per_epoch_with_its_best_member(ensemble_data, capsys, progress_clock):
    X, Y = ensemble_data
    gpunn.Ensemble(SIZES, 2, seed=0).fit(X, Y, epochs=2, batch_size=30, validation_fraction=0.2)
    lines = capsys.readouterr().err.splitlines()
    # named as an ensemble of 2 ("train [cpu]" was one model's fit's name)
    assert [line.split(":")[0] for line in lines] == ["ensemble of 2 [cpu] epoch 1/2", "ensemble of 2 [cpu] epoch 2/2"]
    assert all("best loss=" in s and "best val_loss=" in s and "training=2/2" in s and "rows/s" in s for s in lines)


def test_the_progress_lines_best_is_of_the_members_that_trained_in_the_epoch(ensemble_data, capsys, progress_clock):
    # member 0 (lr 0.1) stops early at epoch 2; its values stayed in the epochs after as they were when it stopped,
    # and the line's best val_loss stood at them, still, while member 1 trained on
    from gpunn.training.callbacks import four_digits

    X, Y = ensemble_data
    history = gpunn.Ensemble(SIZES, 2, seed=0).fit(X, Y, epochs=6, batch_size=30, validation_fraction=0.2,
                                                    lr=[0.1, 3e-3], callbacks=[gpunn.EarlyStopping(patience=1)],
                                                    verbose=2)
    assert history.stopped_epoch == [2, None]
    val = np.asarray(history["val_loss"])
    assert (val[2:, 0] < val[2:, 1]).any()  # the frozen member's value would be the least
    # as README says: the stopped member's column repeats the epoch it stopped in, its own history ends there
    assert (val[2:, 0] == val[1, 0]).all() and history.member(0)["val_loss"] == list(val[:2, 0])
    shown = [line.split("best val_loss=")[1].split(",")[0] for line in capsys.readouterr().err.splitlines()
             if "best val_loss=" in line]
    assert shown == [four_digits(val[:2].min(axis=1)[e]) for e in range(2)] + [four_digits(v) for v in val[2:, 1]]


def test_members_start_as_mlps_with_their_seeds():
    ens = gpunn.Ensemble([3, 4, 1], 3, seed=[5, 17, 2], dtype="float64")
    for k, seed in enumerate([5, 17, 2]):
        np.testing.assert_array_equal(ens.member_params[k], gpunn.MLP([3, 4, 1], seed=seed, dtype="float64").params)
        assert ens[k].seed == seed  # the MLP drawn from member k is MLP(seed=seeds[k]) (mut12e N31: seeds[0])
    assert [w.shape for w in ens.weights] == [(3, 3, 4), (3, 4, 1)]
    assert [b.shape for b in ens.biases] == [(3, 4), (3, 1)]


def test_loss_and_gradients_match_each_member(ensemble_data):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, activation="silu", dtype="float64", seed=4)
    loss, dW, db = ens.loss_and_gradients(X, Y)
    assert loss.shape == (3,) and [g.shape for g in dW] == [(3, 5, 8), (3, 8, 7), (3, 7, 2)]
    for k in range(3):
        l_k, dW_k, db_k = ens[k].loss_and_gradients(X, Y)
        assert loss[k] == pytest.approx(l_k, rel=1e-12)
        for a, b in zip(dW, dW_k):
            np.testing.assert_allclose(a[k], b, rtol=1e-12, atol=1e-15)
        for a, b in zip(db, db_k):
            np.testing.assert_allclose(a[k], b, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ens.loss(X, Y), loss, rtol=1e-12)


def test_predict_stacks_members_and_return_std_is_the_population_std(ensemble_data):
    X, _ = ensemble_data
    ens = gpunn.Ensemble(SIZES, 4, dtype="float64", seed=0)
    P = ens.predict(X)
    assert P.shape == (4, X.shape[0], 2)
    np.testing.assert_allclose(P[2], ens[2].predict(X), rtol=1e-12)
    mean, std = ens.predict(X, return_std=True)
    np.testing.assert_allclose(mean, P.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, np.std(P, axis=0), rtol=1e-12)
    assert std.min() > 0


def test_an_ensemble_keeps_the_workspaces_of_the_last_four_batch_sizes_it_stepped():
    """Each batch size's (K, rows, n) buffers are kept for the next step of that size, four sizes at most (a fit's
    batch, its last partial batch, validation chunks), the first made dropped first (audit37b e10: with none dropped,
    every size stepped kept its buffers for the ensemble's life)."""
    ens = gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    for rows in (5, 6, 7, 8, 9, 10, 9):
        ens.train_step(X[:rows], X[:rows, :1])
    assert list(ens._workspaces) == [7, 8, 9, 10]


def test_predict_and_validation_run_in_chunks_of_rows_per_member(ensemble_data):
    X, Y = ensemble_data
    rng = np.random.default_rng(1)
    big_X, big_Y = rng.standard_normal((2500, 5)), rng.standard_normal((2500, 2))
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    P = ens.predict(big_X)
    for k in range(3):
        np.testing.assert_allclose(P[k], ens[k].predict(big_X), rtol=1e-12, atol=1e-14)
    ens.fit(X, Y, epochs=1, batch_size=50, validation_data=(big_X, big_Y), verbose=False)
    # the workspaces (K x rows x width each) cover chunks, not the 2500 rows: 64 small nets predicting
    # 100,000 rows took 6 GiB of workspace for 24 MiB of predictions
    assert max(ens._workspaces) == ens.chunk_rows == 1024


def test_member_is_a_copy_and_best_is_the_lowest_validation_loss(ensemble_data):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    with pytest.raises(RuntimeError, match="call fit first"):
        ens.best()
    history = ens.fit(X, Y, lr=[1e-4, 1e-2, 3e-3], epochs=3, batch_size=30, validation_fraction=0.2, verbose=False)
    val = np.asarray(history["val_loss"])
    assert val.shape == (3, 3)  # epochs x members
    k = int(np.argmin(val.min(axis=0)))
    np.testing.assert_array_equal(ens.best().params, ens.member_params[k])
    assert history.best_epoch == (val.argmin(axis=0) + 1).tolist()
    assert history.stopped_early == [False] * 3  # per member, as with early stopping
    m = ens[k]
    m.params[...] = 0
    assert np.abs(ens.member_params[k]).max() > 0  # the ensemble is untouched
    np.testing.assert_array_equal(ens[-1].params, ens.member_params[2])
    with pytest.raises(ValueError, match=r"has no 'val_r3' \(did you mean 'val_r2'\?\)"):  # it said to fit with
        ens.best("val_r3")  # validation data, which this fit had
    ens.fit(X, Y, epochs=1, batch_size=30, verbose=False)
    with pytest.raises(ValueError, match=r"has no 'val_loss' \(fit with validation_data or validation_fraction, or "
                                         r"rank the members by best\('loss'\)\)"):
        ens.best()
    assert ens.best("loss").layer_sizes == SIZES
    with pytest.raises(TypeError, match="monitor is the name of a logged value such as 'val_loss', got 3"):
        ens.best(3)


def test_best_takes_the_highest_r2_and_each_members_best_finite_epoch(ensemble_data):
    """best() on scripted histories (epochs x members): an r2 is ranked highest-first (mut12e N35: lowest-first
    picked member 0), a member is ranked by the epoch whose weights it holds (history.weights_epoch), and a NaN
    or infinite value (a member diverged and put back at its best epoch by EarlyStopping has them; it is not in
    ens.diverged) never wins (N37: numpy's argmin took the NaN member 2). A history without weights_epoch
    ranks each member by its best finite epoch."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    ens.fit(X, Y, epochs=2, batch_size=50, validation_fraction=0.2, verbose=False)
    assert ens.history.weights_epoch == [2, 2, 2]  # no early stopping: every member holds the last epoch's
    ens.history["val_r2"] = [[0.1, 0.5, 0.3], [0.2, 0.9, 0.4]]
    assert ens.best_index("val_r2") == 1
    ens.history.weights_epoch = [1, 2, 1]  # member 0 put back at epoch 1
    ens.history["val_loss"] = [[0.4, 2.0, float("nan")], [1.0, 1.5, 0.5]]
    assert ens.best_index() == 0
    ens.history.weights_epoch = [1, 2, 2]
    ens.history["val_loss"] = [[0.4, 2.0, float("inf")], [1.0, 1.5, 0.3]]
    assert ens.best_index() == 2
    # a member that holds the weights of an epoch an interrupt cut short (None) is ranked by the last epoch it
    # finished, the nearest scored (a mutant ranking it by the first, 0.1 here, survived every test: review41)
    ens.history["val_loss"] = [[0.1, 2.0, 0.6], [1.0, 1.5, 0.5]]
    ens.history.weights_epoch = [None, None, 2]
    assert ens.best_index() == 2
    ens.history["val_loss"] = [[0.2, 2.0, float("inf")], [1.0, 1.5, 0.3]]
    ens.history.weights_epoch = None
    assert ens.best_index() == 0
    ens.history["val_loss"] = [[0.4, 2.0, float("inf")], [1.0, 1.5, 0.3]]
    np.testing.assert_array_equal(ens.best().params, ens.member_params[2])
    ens.history["val_loss"] = []  # a fit stopped in its first epoch (N40: numpy's "zero-size array" instead)
    with pytest.raises(ValueError, match="no epoch of the last fit finished"):
        ens.best()


def test_best_on_a_loaded_ensemble_says_it_has_no_history_to_rank_by(ensemble_data, tmp_path):
    # it said "best() needs a fitted ensemble: call fit first" of an ensemble fitted, saved and loaded
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 2, seed=0)
    ens.fit(X, Y, epochs=1, validation_fraction=0.2, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")])
    gpunn.save(tmp_path / "e.npz", ens)
    for loaded in (gpunn.load(tmp_path / "e.npz"), gpunn.load(tmp_path / "c.npz")):
        for pick in (loaded.best, loaded.best_index):
            with pytest.raises(RuntimeError, match=r"^best\(\) and best_index\(\) rank the members by the last fit's "
                                                   r"history, and this ensemble has none: call fit first \(gpunn.load "
                                                   r"gives its weights without one; the model of a training checkpoint, "
                                                   r"gpunn.load_checkpoint\(path\).model, has its run's\)$"):
                pick()


def test_a_loaded_training_checkpoints_ensemble_has_its_runs_history_and_picks_its_best_member(ensemble_data,
                                                                                                tmp_path):
    # its model had no history (best() refused, saying so), though the checkpoint holds the run's
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, seed=0)
    ens.fit(X, Y, epochs=2, lr=[1e-3, 3e-2, 1e-2], validation_fraction=0.2, verbose=False,
            callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")])
    loaded = gpunn.load_checkpoint(tmp_path / "c.npz").model
    assert loaded.history["val_loss"] == ens.history["val_loss"] and len(loaded.history["val_loss"]) == 2
    assert loaded.best_index() == ens.best_index() and loaded.best_index("loss") == ens.best_index("loss")
    np.testing.assert_array_equal(loaded.best().predict(X[:5]), ens.best().predict(X[:5]))


def test_best_is_the_member_whose_weights_score_best_not_one_whose_earlier_epoch_did(tmp_path):
    """Without early stopping a member ends with its last epoch's weights: best() took the member with the least
    val_loss of any epoch (lr 0.1, 6.62 at epoch 6), whose weights scored 9.1 by the last, over lr 0.02's 6.69
    (newuser39). With early stopping each member holds its best epoch's, and ranks by it; a loaded checkpoint's
    ensemble picks as the run did."""
    X, Y = gpunn.datasets.make("friedman1", 1000, 10, 1, noise=1.0, seed=0, device="cpu")
    Xv, Yv = gpunn.datasets.make("friedman1", 500, 10, 1, noise=1.0, seed=1, device="cpu")
    lrs = [1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 3e-1]
    ens = gpunn.Ensemble([10, 32, 1], n_models=6, seed=0)
    history = ens.fit(X, Y, epochs=8, lr=lrs, validation_data=(Xv, Yv), batch_size=32, verbose=False,
                      callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")])
    val = np.asarray(history["val_loss"])
    assert np.argmin(val.min(axis=0)) != np.argmin(val[-1])  # a member's earlier epoch beat every last one
    held = ens.loss(Xv, Yv)  # what each member's weights score now: the last epoch's
    np.testing.assert_allclose(held, val[-1], rtol=1e-6)
    assert ens.best_index() == int(np.argmin(held)) == 1
    assert history.weights_epoch == [8] * 6
    assert ens.best().loss(Xv, Yv) == held.min()
    assert gpunn.load_checkpoint(tmp_path / "c.npz").model.best_index() == 1

    stopping = gpunn.Ensemble([10, 32, 1], n_models=6, seed=0)
    history = stopping.fit(X, Y, epochs=8, lr=lrs, validation_data=(Xv, Yv), batch_size=32, verbose=False,
                           callbacks=[gpunn.EarlyStopping(patience=2), gpunn.ModelCheckpoint(tmp_path / "s.npz")])
    assert history.weights_epoch == history.best_epoch  # each member put back at its best epoch
    held = stopping.loss(Xv, Yv)
    np.testing.assert_allclose(held, history.best, rtol=1e-6)
    assert stopping.best_index() == int(np.argmin(held))
    loaded = gpunn.load_checkpoint(tmp_path / "s.npz").model
    assert loaded.history.weights_epoch == history.best_epoch and loaded.best_index() == stopping.best_index()


def test_weights_epoch_is_the_epoch_a_member_stopped_in_where_early_stopping_put_no_best_weights_back(tmp_path):
    """history.weights_epoch of a member stopped early is the epoch it stopped in where its best weights were not put
    back: restore_best_weights=False, and a run interrupted (its checkpoint, loaded, too: the file's early stopping
    state holds no last_params). Its best epoch is earlier (patience 1), which only a restore would hold (audit
    review40: m06, every member at the last epoch, and m07, a loaded file's taken as restored, survived)."""
    X, Y = gpunn.datasets.make("friedman1", 1000, 10, 1, noise=1.0, seed=0, device="cpu")
    Xv, Yv = gpunn.datasets.make("friedman1", 500, 10, 1, noise=1.0, seed=1, device="cpu")
    lrs = [1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 3e-1]
    history = gpunn.Ensemble([10, 32, 1], n_models=6, seed=0).fit(
        X, Y, epochs=8, lr=lrs, validation_data=(Xv, Yv), batch_size=32, verbose=False,
        callbacks=[gpunn.EarlyStopping(patience=1, restore_best_weights=False)])
    stopped = history.stopped_epoch  # (here [None, None, 4, 5, 8, 5], best epochs [8, 8, 3, 4, 7, 4])
    assert any(e is not None and e != b for e, b in zip(stopped, history.best_epoch))
    assert history.weights_epoch == [e or 8 for e in stopped]

    class StopAtEpoch6(gpunn.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 5:
                trainer.interrupt()

    history = gpunn.Ensemble([10, 32, 1], n_models=6, seed=0).fit(
        X, Y, epochs=8, lr=lrs, validation_data=(Xv, Yv), batch_size=32, verbose=False,
        callbacks=[gpunn.EarlyStopping(patience=1), StopAtEpoch6(), gpunn.ModelCheckpoint(tmp_path / "i.npz")])
    stopped = history.stopped_epoch  # (here [None, None, 4, 5, None, 5], best epochs [5, 5, 3, 4, 5, 4])
    assert history.interrupted and history["epoch"] == [1, 2, 3, 4, 5]
    assert any(e is not None and e != b for e, b in zip(stopped, history.best_epoch))
    # the others took epoch 6's first step before the stop (the loop stops after a batch): no epoch's weights
    assert history.weights_epoch == stopped
    assert gpunn.load_checkpoint(tmp_path / "i.npz").model.history.weights_epoch == history.weights_epoch


@pytest.mark.parametrize("call,match", [
    (lambda: gpunn.Ensemble([2, 3, 1], 0), "n_models must be a positive integer"),
    (lambda: gpunn.Ensemble([2, 3, 1], 2, seed=[1, 2, 3]), "seed lists 3 values but the ensemble has 2"),
    (lambda: gpunn.Ensemble([2, 3, 1], 2, seed="a"), "seed must be a non-negative int or a list of 2 of them"),
    (lambda: gpunn.Ensemble([2, 3, 1], 2, seed=-1), "seed must be a non-negative int or a list of 2 of them, got -1"),
    (lambda: gpunn.Ensemble([2, 3, 1], 2, seed=[3, -1]), r"got \[3, -1\]"),
    (lambda: gpunn.Ensemble([2, 3, 1], 2, seed=True), "got True"),
    (lambda: gpunn.Ensemble([2, 3, 1], 2, seed=1.5), "got 1.5"),
    (lambda: gpunn.MLP([2, 3, 1], seed=-1), "seed must be a non-negative int, got -1"),
    # one architecture per member: "layer_sizes[0] must be a positive integer, got [2, 3, 1]"
    (lambda: gpunn.Ensemble([[2, 3, 1], [2, 8, 1]], 2), r"members share one architecture: layer_sizes is one list "
                                                        r"of sizes, as \[10, 64, 1\], got \[\[2, 3, 1\], \[2, 8, 1\]\]"),
])
def test_bad_construction_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": [1e-3, 1e-3]}, "lr lists 2 values but the ensemble has 3 members"),
    ({"lr": [1e-3, float("nan"), 1e-3]}, "member 1: learning rate must be a positive finite number, got nan"),
    ({"lr": [1e-3, 1e-3, -1.0]}, "member 2: learning rate must be a positive finite number"),
    ({"lr": 0.0}, "member 0: learning rate"),
    ({"weight_decay": [0, 0, -1]}, "member 2: weight_decay must be a non-negative number"),
    ({"optimizer": "sgd", "momentum": [0.9, 1.5, 0.0]}, "member 1: momentum must be in"),
    ({"optimizer": "adam", "momentum": 0.9}, "member 0: optimizer 'adam' does not take momentum"),
    ({"beta1": [0.9, 0.9]}, "beta1 lists 2 values"),
    ({"beta1": [0.9]}, "beta1 lists 1 value but the ensemble has 3 members"),
    # a set's order is its own: lr={1e-3, 4e-3, 2e-3} trained member 0 at 4e-3 (newuser39)
    ({"lr": {1e-3, 4e-3, 2e-3}}, r"^lr is a set, whose order is its own, not the members': pass a list, member k's "
                                 r"value k-th \(e.g. lr=sorted\(...\)\), or one value for all$"),
    # and a dict is not told to be sorted(...), which gives its keys, the members' indices here
    ({"weight_decay": {0: 0.0, 1: 1e-4, 2: 0.0}}, r"^weight_decay is a dict, not the members': pass a list, member "
                                                  r"k's value k-th \(e.g. weight_decay=\[d\[k\] for k in range\(3\)\] "
                                                  r"for a dict d keyed by member\), or one value for all$"),
    ({"beta1": frozenset({0.9, 0.8, 0.7})}, "^beta1 is a set, whose order is its own"),  # (audit review40 m23)
    ({"optimizer": ("adam", "sgd", "adam")}, r"^optimizer=\('adam', 'sgd', 'adam'\): an Ensemble's members train with "
                                             "one kind of optimizer"),  # a tuple too (audit review40 m17)
    # it said "member 0: unknown optimizer ['adam', 'sgd', 'adam']"
    ({"optimizer": ["adam", "sgd", "adam"]}, r"^optimizer=\['adam', 'sgd', 'adam'\]: an Ensemble's members train with "
                                             "one kind of optimizer, a name or a gpunn Optimizer .*: fit an Ensemble "
                                             "for each optimizer$"),
])
def test_bad_per_member_settings_are_clear_errors(ensemble_data, kwargs, match):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, seed=0)
    with pytest.raises(ValueError, match=match):
        ens.fit(X, Y, epochs=1, verbose=False, **kwargs)


def test_member_index_out_of_range():
    ens = gpunn.Ensemble([2, 3, 1], 2, seed=0)
    with pytest.raises(IndexError, match=r"member 2 is out of range: the ensemble has 2 members \(0..1\)"):
        ens[2]
    with pytest.raises(IndexError, match="member -3"):
        ens[-3]
    history = ens.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=False)
    assert history.member(-1) == {name: [v[1] if isinstance(v, list) else v for v in values]
                                  for name, values in history.items()}
    with pytest.raises(IndexError, match="member 2 is out of range"):  # (mut12e T101: "list index out of range")
        history.member(2)
    with pytest.raises(TypeError, match="indexed by an int"):
        ens["a"]


def test_an_ensemble_too_big_for_the_device_says_how_much_it_needs(monkeypatch):
    monkeypatch.setattr(gpunn.preflight, "available_bytes", lambda backend: 10 * 2**20)
    with pytest.raises(MemoryError, match=r"needs about .* GiB .* but the host has 10\.0 MiB free"):
        gpunn.Ensemble([64, 1024, 1024, 1], 64, seed=0)


def test_an_ensemble_too_big_for_the_host_is_refused_before_allocating_on_the_cpu(monkeypatch):
    import tracemalloc

    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 2**20)
    with pytest.raises(MemoryError, match=r"needs about \d+\.\d MiB .* but the host has 1\.0 MiB free; use fewer members"):
        gpunn.Ensemble([16, 256, 256, 1], 8, seed=0, device="cpu")
    # before allocating: the refused construction's peak (NumPy's buffers are traced) stays under the 9 MiB
    # parameter buffer it would have made (mut12e N3: the check after _build_buffers passed every test)
    members, params = 32, 16 * 256 + 256 + 256 * 256 + 256 + 256 + 1
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError):
            gpunn.Ensemble([16, 256, 256, 1], members, seed=0, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < members * params * 4


def test_a_fit_whose_batch_would_not_fit_is_refused_before_allocating_it(monkeypatch):
    """The construction counts workspaces for chunk_rows (1,024) rows a member; a fit at a larger batch is
    counted again before its Adam state and workspaces exist (mut12e: K=64 [64, 1024, 1024, 1] at batch 8,192
    allocated ~8x the counted workspace unchecked). A batch within chunk_rows needs no second count."""
    import tracemalloc

    from gpunn.ensemble import member_bytes

    sizes, K, batch = [16, 256, 256, 1], 4, 4096
    ens = gpunn.Ensemble(sizes, K, seed=0, device="cpu")
    X = np.random.default_rng(0).standard_normal((batch, 16)).astype(np.float32)
    Y = X[:, :1].copy()
    more = K * member_bytes(sizes, 4, batch) - ens.params.nbytes - ens.grads.nbytes
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: more - 1)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=rf"needs about .* more for a fit at {batch} rows a step .* "
                                              r"but the host has .* free; use a smaller batch_size"):
            ens.fit(X, Y, epochs=1, batch_size=batch, verbose=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < K * batch * 256 * 4  # not one layer's workspace of the batch
    assert ens.history is None
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: more)
    ens.fit(X, Y, epochs=1, batch_size=batch, verbose=False)  # exactly enough
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 2**20)
    ens.fit(X[:1024], Y[:1024], epochs=1, batch_size=1024, verbose=False)  # counted by the construction


@pytest.mark.parametrize("bias", [True, False])
def test_the_memory_check_counts_what_an_adam_fit_allocates(bias):
    """member_bytes (the memory check's and gpunn sweep's count) against the buffers themselves: parameters,
    gradients, Adam's two moments and a chunk's workspaces (gelu: Z and A apart) are the count, less the output
    layer's A, which is its Z (mut12e N6: Adam's state left out; N9: biases counted without bias)."""
    from gpunn.ensemble import member_bytes
    from gpunn.training.ensemble import EnsembleOptimizer

    ens = gpunn.Ensemble([16, 64, 32, 2], 3, activation="gelu", bias=bias, device="cpu", seed=0)
    state = EnsembleOptimizer("adam", 3, np).bind(ens.params, ens.ops).state
    ws, rows = ens._workspace(ens.chunk_rows), ens.chunk_rows
    buffers = {id(a): a for a in (ens.params, ens.grads, *state.values(), *ws.Z, *ws.A, *ws.dA)}
    held = sum(a.nbytes for a in buffers.values())
    count = 3 * member_bytes(ens.layer_sizes, 4, rows, bias)
    assert count == held + 3 * rows * 2 * 4


def test_member_kernels_match_the_generic_member_ops():
    """CpuEnsembleOps' Numba loops (bias+ReLU, ReLU backward + bias sums, Adam) against EnsembleOps."""
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.cpu import CpuOps

    fast = ensemble_ops_for(CpuOps(fused=True))
    if not fast.fused:
        pytest.skip("Numba is not installed")
    ref = EnsembleOps(CpuOps(fused=False))
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        K, rows, cols, P = 3, 37, 11, 20
        flat = rng.standard_normal(K * P).astype(dtype)
        b = flat.reshape(K, P)[:, 4:4 + cols]
        Z = rng.standard_normal((K, rows, cols)).astype(dtype)
        Z1, Z2 = Z.copy(), Z.copy()
        fast.bias_activation(Z1, b, gpunn.ACTIVATIONS["relu"], Z1, False)
        ref.bias_activation(Z2, b, gpunn.ACTIVATIONS["relu"], Z2, False)
        np.testing.assert_array_equal(Z1, Z2)
        for keep_z in (False, True):  # A apart from Z: not the in-place kernel's case (mut18a A108)
            got = [(Z.copy(), np.zeros_like(Z)) for _ in range(2)]
            for ops, (z, a) in zip((fast, ref), got):
                ops.bias_activation(z, b, gpunn.ACTIVATIONS["relu"], a, keep_z)
            np.testing.assert_array_equal(got[0][1], Z2)
            if keep_z:
                np.testing.assert_array_equal(got[0][0], got[1][0])
        dA = rng.standard_normal((K, rows, cols)).astype(dtype)
        d1, d2 = dA.copy(), dA.copy()
        g1, g2 = np.zeros((K, P), dtype), np.zeros((K, P), dtype)
        fast.activation_bias_backward(d1, gpunn.ACTIVATIONS["relu"], Z1, True, d1, g1[:, 2:2 + cols])
        ref.activation_bias_backward(d2, gpunn.ACTIVATIONS["relu"], Z1, True, d2, g2[:, 2:2 + cols])
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_allclose(g1, g2, rtol=1e-6 if dtype == np.float32 else 1e-14)
        # the output layer's one column: dA = dZ @ W^T (an outer product), ReLU backward and bias sums in one pass
        dZ = rng.standard_normal((K, rows, 1)).astype(dtype)
        W = flat.reshape(K, P)[:, 4:4 + cols].reshape(K, cols, 1)
        d1, d2 = np.empty((K, rows, cols), dtype), np.empty((K, rows, cols), dtype)
        g1, g2 = np.zeros((K, P), dtype), np.zeros((K, P), dtype)
        assert fast.outer_activation_bias_backward(dZ, W, gpunn.ACTIVATIONS["relu"], Z1, True, d1, g1[:, 2:2 + cols])
        assert not ref.outer_activation_bias_backward(dZ, W, gpunn.ACTIVATIONS["relu"], Z1, True, d2, g2[:, 2:2 + cols])
        ref.matmul(dZ, W.swapaxes(-1, -2), out=d2)
        ref.activation_bias_backward(d2, gpunn.ACTIVATIONS["relu"], Z1, True, d2, g2[:, 2:2 + cols])
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(g1, g2)  # both sum the rows in order
        table = np.zeros((K, HYPER_FIELDS))  # (no clipping)
        table[:, 0], table[:, 1], table[:, 3], table[:, 4], table[:, 5] = [1e-2, 1e-3, 3e-2], [0, 1e-2, 0.1], \
            [0.9, 0.8, 0.7], [0.999, 0.99, 0.9], [1, 0, 1]
        for decoupled in (False, True):
            w = rng.standard_normal((K, P)).astype(dtype)
            g = rng.standard_normal((K, P)).astype(dtype)
            states = [[w.copy(), np.zeros_like(w), np.zeros_like(w)] for _ in range(2)]
            for step in (1, 2, 3):
                for ops, (ws, m, v) in zip((fast, ref), states):
                    ops.adam_step(ws, g, m, v, MemberRates(np, table), 1e-8, step, decoupled)
            np.testing.assert_array_equal(states[0][0], states[1][0])
            np.testing.assert_array_equal(states[0][0][1], w[1])  # the frozen member did not move
            np.testing.assert_array_equal(states[0][1][1], 0)
            # moments of the other float dtype: not the kernel's arrays, so the generic update (mut18a A85)
            other = np.float64 if dtype == np.float32 else np.float32
            states = [[w.copy(), np.zeros((K, P), other), np.zeros((K, P), other)] for _ in range(2)]
            for step in (1, 2):
                for ops, (ws, m, v) in zip((fast, ref), states):
                    ops.adam_step(ws, g, m, v, MemberRates(np, table), 1e-8, step, decoupled)
            for got, want in zip(*states):
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fused", [False, True], ids=["generic", "fused"])
def test_each_active_members_step_is_torchs_with_its_own_settings_and_a_frozen_one_stays(fused):
    """The member-axis optimizer steps with member 1 frozen (stopped early): members 0 and 2 take
    torch.optim's SGD (momentum, Nesterov) and Adam/AdamW steps with their own rate, decay, momentum and
    betas, their moments carried over three steps; member 1's weights and moments do not move."""
    from gpunn.ops.cpu import CpuOps

    ops = ensemble_ops_for(CpuOps(fused=fused))
    rng = np.random.default_rng(4)
    K, P = 3, 16
    table = np.array([[0.05, 0.1, 0.9, 0.9, 0.999, 1, 0, 0], [0.05, 0.1, 0.9, 0.9, 0.999, 0, 0, 0],
                      [0.02, 0.01, 0.5, 0.8, 0.95, 1, 0, 0]])  # (no clipping: the last two columns)
    grads = [rng.standard_normal((K, P)) for _ in range(3)]
    given = [g.copy() for g in grads]
    w0 = rng.standard_normal((K, P))
    # the generic case is EnsembleOps' NumPy update, not the Numba kernel's (mut17a A128)
    kernel = ops.adam_members(w0.copy(), grads[0], np.zeros((K, P)), np.zeros((K, P)), MemberRates(np, table), 1e-3, 1,
                              False)
    assert (kernel is None) == (not ops.fused) and (fused or kernel is None)
    for nesterov in (False, True):
        w, vel = w0.copy(), np.zeros((K, P))
        for g in grads:
            ops.sgd_step(w, g, vel, MemberRates(np, table), nesterov)
        for k in (0, 2):
            want, buf = w0[k], np.zeros(P)
            for g in grads:
                want, buf = torch_sgd(want, g[k], buf, table[k, 0], table[k, 2], table[k, 1], nesterov)
            np.testing.assert_allclose(w[k], want, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(vel[k], buf, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(w[1], w0[1])
        np.testing.assert_array_equal(vel[1], 0)
    every = table.copy()
    every[:, 5] = 1  # every member active: no copy of the active rows
    ops.sgd_step(w0.copy(), grads[0], np.zeros((K, P)), MemberRates(np, every), False)
    np.testing.assert_array_equal(grads, given)  # the gradients read, not changed (mut17a A19: decay added into them)
    for decoupled in (False, True):
        w, m, v = w0.copy(), np.zeros((K, P)), np.zeros((K, P))
        for t, g in enumerate(grads, 1):
            ops.adam_step(w, g, m, v, MemberRates(np, table), 1e-3, t, decoupled)
        for k in (0, 2):
            want = (w0[k], np.zeros(P), np.zeros(P))
            for t, g in enumerate(grads, 1):
                want = torch_adam(want[0], g[k], want[1], want[2], t, table[k, 0], table[k, 3], table[k, 4], 1e-3,
                                  table[k, 1], decoupled)
            for got, expected in zip((w[k], m[k], v[k]), want):
                np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(w[1], w0[1])
        np.testing.assert_array_equal(m[1], 0)


def test_save_and_load_an_ensemble(tmp_path, ensemble_data):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, activation="tanh", dtype="float64", seed=[4, 9, 1])
    ens.fit(X, Y, epochs=1, batch_size=50, verbose=False)
    path = tmp_path / "ens.npz"
    gpunn.save(path, ens)
    back = gpunn.load(path, device="cpu")
    assert isinstance(back, gpunn.Ensemble) and back.seeds == [4, 9, 1] and back.n_models == 3
    np.testing.assert_array_equal(back.params, ens.params)
    np.testing.assert_array_equal(back.predict(X), ens.predict(X))
    gpunn.save(tmp_path / "one.npz", ens[1])  # one member: an ordinary model file
    np.testing.assert_array_equal(gpunn.load(tmp_path / "one.npz", device="cpu").params, ens.member_params[1])


def test_pickling_a_model_says_how_to_save_it():
    import pickle

    for model, how in ((gpunn.Ensemble([2, 3, 1], 2, seed=0), "gpunn.save(path, ens)"),
                       (gpunn.MLP([2, 3, 1], seed=0), "gpunn.save(path, model)")):
        with pytest.raises(TypeError, match=rf"does not pickle .*{how.replace('(', '.').replace(')', '.')} and read it "
                                            r"with gpunn.load\(path\)"):
            pickle.dumps(model)


def test_copy_deepcopy_gives_an_independent_ensemble_that_trains_the_same(ensemble_data):
    # copy.deepcopy(ens) raised "an Ensemble does not pickle"
    import copy

    X, Y = ensemble_data
    ens = gpunn.Ensemble([X.shape[1], 8, 6, Y.shape[1]], 3, activation=["tanh", "relu"], device="cpu", seed=[4, 9, 1],
                         dtype="float64")  # a copy keeps each layer's activation (mut12e N55: the first's for all)
    ens.fit(X, Y, epochs=1, batch_size=64, verbose=False)
    twin = copy.deepcopy(ens)
    assert repr(twin) == repr(ens) and twin.seeds == [4, 9, 1] and twin.history == ens.history
    np.testing.assert_array_equal(twin.predict(X), ens.predict(X))
    twin.weights[0][...] = 0
    assert not np.array_equal(twin.params, ens.params)
    a, b = copy.copy(ens), copy.deepcopy(ens)
    a.fit(X, Y, epochs=1, batch_size=64, lr=[1e-2, 1e-3, 3e-3], verbose=False)
    b.fit(X, Y, epochs=1, batch_size=64, lr=[1e-2, 1e-3, 3e-3], verbose=False)
    np.testing.assert_array_equal(a.params, b.params)


def test_a_saved_ensemble_with_a_forged_member_count_is_refused(tmp_path):
    import json

    path = tmp_path / "ens.npz"
    gpunn.save(path, gpunn.Ensemble([2, 3, 1], 2, seed=0))
    meta = np.load(path)["gpunn_meta"].tobytes().decode()
    forged = json.loads(meta)
    forged["model"]["members"] = 5
    forged["model"]["seeds"] = [0] * 5
    blob = np.frombuffer(json.dumps(forged).encode(), dtype=np.uint8)
    bad = tmp_path / "bad.npz"
    np.savez(bad, gpunn_meta=blob, params=np.load(path)["params"])
    with pytest.raises(gpunn.CheckpointError, match="should be float32 of shape"):
        gpunn.load(bad, device="cpu")
    forged = json.loads(meta)
    forged["ensemble"]["diverged"] = [2]  # of members 0 and 1 (mut12e K34: loaded; the mean's warning named it)
    np.savez(bad, gpunn_meta=np.frombuffer(json.dumps(forged).encode(), dtype=np.uint8), params=np.load(path)["params"])
    with pytest.raises(gpunn.CheckpointError, match="diverged members must be a list of member indices"):
        gpunn.load(bad, device="cpu")


def test_gpunn_predict_refuses_a_saved_ensemble_clearly(tmp_path, capsys):
    from gpunn import cli

    path, inp = tmp_path / "ens.npz", tmp_path / "x.npy"
    gpunn.save(path, gpunn.Ensemble([2, 3, 1], 2, seed=0))
    np.save(inp, np.zeros((4, 2)))
    assert cli.main(["predict", str(path), str(inp), str(tmp_path / "p.npy")]) == 2
    assert "is an ensemble of 2 members; gpunn predict takes one model" in capsys.readouterr().err


@pytest.fixture
def groups_for_any_work(monkeypatch):
    """Member groups however small the work (tiny test nets are below the threshold that pays for them)."""
    import gpunn.ops.ensemble as ens_ops

    monkeypatch.setattr(ens_ops, "MIN_GROUP_FLOPS", 0)
    monkeypatch.setattr(ens_ops, "MIN_GROUP_FLOPS_ONE_CALL", 0)
    monkeypatch.setattr(ens_ops, "MIN_GROUP_ELEMENTS", 0)


def test_member_groups_on_threads_give_the_same_products(groups_for_any_work):
    from gpunn.ops.cpu import CpuOps

    mops = ensemble_ops_for(CpuOps(fused=True))
    rng = np.random.default_rng(2)
    X, W = rng.standard_normal((9, 4)), rng.standard_normal((5, 4, 3))
    A = rng.standard_normal((5, 9, 4))
    for threads in (1, 2, 3, 8):
        mops.threads = threads
        out = np.empty((5, 9, 3))
        np.testing.assert_array_equal(mops.matmul(X, W, out=out), np.matmul(X, W))  # X shared by the members
        np.testing.assert_array_equal(mops.matmul(A, W, out=np.empty((5, 9, 3))), np.matmul(A, W))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
# leaky_relu: no one-call group pass, the update runs after it
@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
def test_a_fit_whose_groups_also_update_their_members_equals_one_pass_bit_for_bit(optimizer, activation,
                                                                                   groups_for_any_work):
    """In member groups the training loop hands forward, backward and each group's own Adam update to the
    threads at once (Ensemble.train_step_and_update); the weights and losses after a fit with per-member rates
    and decay and members frozen by early stopping are those of one pass through train_step and then the
    optimizer's step (K=5 over 1-3 groups). Also where the groups run Ensemble._forward and _backward in Python
    (leaky_relu), each group's update after its pass (mut12e N23: an update skipped there trained no member at all)."""
    X, Y = gpunn.datasets.make("teacher", 120, 4, 1, seed=2, device="cpu")
    results = {}
    for threads in (1, 2, 3):
        ens = gpunn.Ensemble([4, 9, 6, 1], 5, activation=activation, device="cpu", dtype="float32", seed=3)
        one_call = ens.member_ops.one_call_applies(X[:16], Y[:16], ens.weights, ens.biases, ens.activations)
        assert one_call == (activation != "leaky_relu" and ens.member_ops.fused)
        ens.member_ops.threads = threads
        steps = []
        if threads > 1:  # the loop takes the fused step (and with it the Numba update)
            original = ens.train_step_and_update
            ens.train_step_and_update = lambda *a: (steps.append(1), original(*a))[1]
        else:  # the reference: train_step, then the optimizer's step
            ens.train_step_and_update = None
        h = ens.fit(X, Y, optimizer=optimizer, lr=[1e-3, 1e-2, 3e-2, 0.1, 0.3], weight_decay=[0, 1e-3, 0, 1e-2, 0.1],
                    epochs=5, batch_size=16, validation_fraction=0.25, seed=1, verbose=False,
                    schedule=gpunn.Schedule("step", step_size=2, gamma=0.5),  # (mut12e T18: groups kept epoch 1's rates)
                    callbacks=[gpunn.EarlyStopping(patience=1, restore_best_weights=False)])
        assert bool(steps) == (threads > 1)
        results[threads] = (ens.params.copy(), np.array(h["loss"]), h.stopped_early)
    assert any(results[1][2]) and not all(results[1][2])  # some members were frozen while others trained
    for threads in (2, 3):
        np.testing.assert_array_equal(results[threads][0], results[1][0])
        np.testing.assert_array_equal(results[threads][1], results[1][1])


def test_each_thread_gets_its_own_scratch_buffer():
    """Ops.scratch is per thread: member groups of equal size call the same ops with slices of one shape on
    threads of their own, and one buffer for both (keyed by shape alone) was written by both at once."""
    import threading

    from gpunn.ops.cpu import CpuOps

    ops, other = CpuOps(), []
    mine = ops.scratch((3, 4), np.float32)
    thread = threading.Thread(target=lambda: other.append(ops.scratch((3, 4), np.float32)))
    thread.start()
    thread.join()
    assert other[0] is not mine and ops.scratch((3, 4), np.float32) is mine  # reused on its own thread


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
def test_member_groups_outside_fit_compute_subnormals_as_one_thread(activation, groups_for_any_work):
    """Outside fit the calling thread computes IEEE subnormals; the groups' worker threads flushed them to 0 (FTZ
    and DAZ set for good), so members on a worker predicted 0 and had a first-layer gradient of 0 where one thread
    gives subnormals. Now a worker takes the caller's mode: predict (each product split into groups),
    loss_and_gradients through the one-call pass (ReLU, tanh: _SpinningWorkers) and the Python pass (elu: gpunn's
    pool) give one thread's bits."""
    from gpunn.ops import denormals

    if not denormals.supported():
        pytest.skip("FTZ/DAZ are set through glibc on x86-64 Linux")
    X = np.full((32, 8), 1e-39, np.float32)  # subnormal inputs: 0 wherever DAZ is on
    Y = np.ones((32, 1), np.float32)
    results = {}
    for threads in (1, 2):
        ens = gpunn.Ensemble([8, 16, 1], 4, activation=activation, device="cpu", seed=3)
        ens.member_ops.threads = threads
        assert (ens._groups(X, Y) is None) == (threads == 1)
        _, dW, _ = ens.loss_and_gradients(X, Y)
        results[threads] = ens.predict(X), dW[0]
    assert (results[1][1] != 0).any(axis=(1, 2)).all()  # subnormal gradients in every member, none flushed
    for one, two in zip(results[1], results[2]):
        np.testing.assert_array_equal(two, one)


@pytest.mark.parametrize("activation", ["elu", "tanh"])
def test_groups_of_equal_size_train_an_ensemble_as_one_pass_bit_for_bit(groups_for_any_work, activation):
    """K=6 in 2 groups of 3 (one shape): tanh's g'(Z) went to one scratch buffer for both groups' threads, so
    the weights differed from run to run and from one thread's (onecall12's finding: 3 runs, 3 hashes at load
    0.6). The one-call pass never used it; the groups' Python pass does (elu; tanh ran there until its groups ran as
    one call each)."""
    X, Y = gpunn.datasets.make("teacher", 256, 16, 1, seed=2, device="cpu")
    results = []
    for threads in (1, 2, 2, 2):
        ens = gpunn.Ensemble([16, 64, 64, 1], 6, activation=activation, device="cpu", seed=3)
        ens.member_ops.threads = threads
        assert (ens._groups(X[:64], Y[:64]) is None) == (threads == 1)
        ens.fit(X, Y, epochs=3, batch_size=64, seed=5, verbose=False)
        results.append(ens.params.copy())
    for params in results[1:]:
        np.testing.assert_array_equal(params, results[0])


@pytest.mark.parametrize("bootstrap", [False, True])
def test_a_step_in_member_groups_equals_one_pass_bit_for_bit(bootstrap, groups_for_any_work):
    """On the CPU each group of members runs its whole forward and backward pass on its own thread; the
    gradients and sums are those of one pass over all members (K=5 over 1, 2, 3 and 8 groups)."""
    X, Y = gpunn.datasets.make("teacher", 96, 4, 2, seed=1, device="cpu")
    ens = gpunn.Ensemble([4, 7, 6, 2], 5, device="cpu", dtype="float64", seed=3)
    mops = ens.member_ops
    Xb = np.stack([X[k::5][:16] for k in range(5)]) if bootstrap else X[:16]  # per-member rows, or shared
    Yb = np.stack([Y[k::5][:16] for k in range(5)]) if bootstrap else Y[:16]
    results = {}
    for threads in (1, 2, 3, 8):
        mops.threads = threads
        groups = mops.member_groups(5)
        assert (groups is None) == (threads == 1)
        sums = ens.train_step(Xb, Yb)
        results[threads] = (np.array(sums), ens.grads.copy())
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(results[threads][0], results[1][0])
        np.testing.assert_array_equal(results[threads][1], results[1][1])
    assert np.abs(results[1][1]).sum() > 0



@pytest.mark.parametrize("dtype, sizes, bootstrap, rows, activation", [
    ("float32", [5, 8, 6, 1], False, 16, "relu"), ("float64", [5, 8, 6, 1], True, 13, "relu"),
    ("float32", [3, 4, 1], True, 2, "relu"), ("float64", [4, 6, 5, 7, 1], False, 9, "relu"),
    ("float32", [5, 8, 6, 1], False, 16, "tanh"), ("float32", [5, 8, 6, 1], True, 13, "sigmoid"),
    ("float64", [5, 8, 6, 1], False, 16, "tanh"), ("float64", [4, 6, 5, 7, 1], True, 9, "sigmoid"),
    ("float32", [4, 6, 5, 7, 1], False, 9, ["sigmoid", "relu", "tanh"]), ("float32", [3, 4, 1], False, 2, "tanh")])
@pytest.mark.parametrize("scale", [1, 30])  # 30: pre-activations that saturate tanh and sigmoid
def test_the_one_call_group_pass_equals_the_plain_forward_and_backward_bit_for_bit(dtype, sizes, bootstrap, rows,
                                                                                     activation, scale,
                                                                                     groups_for_any_work):
    """A member group's whole pass in one Numba call with NumPy's BLAS (CpuEnsembleOps.group_pass) gives the
    gradients, sums and output-layer buffers of Ensemble._forward and _backward (K=5 in 2 groups), also with tanh
    and sigmoid hidden layers (NumPy's tanh and exp loops called from the kernel: gpunn.ops.ufuncs)."""
    rng = np.random.default_rng(4)
    ens = gpunn.Ensemble(sizes, 5, device="cpu", dtype=dtype, seed=3, activation=activation)
    ens.member_ops.threads = 2
    X = scale * rng.standard_normal((5, rows, sizes[0]) if bootstrap else (rows, sizes[0])).astype(dtype)
    Y = rng.standard_normal((5, rows, 1) if bootstrap else (rows, 1)).astype(dtype)
    groups = ens._groups(X, Y)
    assert len(groups) == 2
    ws = ens._workspace(rows)
    assert ens.member_ops.group_pass(X, Y, ens.weights, ens.biases, ens._dW, ens._db, ens.activations, ws,
                                     np.empty(5)) is not None
    one_call = (np.array(ens._step(X, Y, groups)), ens.grads.copy(), ws.Z[-1].copy(), ws.dA[-1].copy())
    ens.grads[...] = np.nan
    ens.member_ops.group_pass = lambda *args: None  # the plain path
    plain = (np.array(ens._step(X, Y, groups)), ens.grads.copy(), ws.Z[-1].copy(), ws.dA[-1].copy())
    for a, b in zip(one_call, plain):
        assert a.tobytes() == b.tobytes()
    assert np.abs(plain[1]).sum() > 0


@pytest.mark.parametrize("dtype, optimizer, weight_decay, bootstrap", [
    ("float32", "adam", None, False), ("float32", "adamw", [0.0, 1e-2, 3e-2, 0.0, 1e-1], False),
    ("float64", "adam", [0.0, 1e-2, 3e-2, 0.0, 1e-1], True)])
def test_adam_inside_the_one_call_group_pass_steps_the_bits_of_the_update_after_it(dtype, optimizer, weight_decay,
                                                                                     bootstrap, groups_for_any_work,
                                                                                     monkeypatch):
    """Where a fit's groups run as one call each, Adam's step runs inside the kernel, each member's right after its
    backward pass (the output bias's gradient summed in the kernel as bias_gradient sums it): the parameters,
    moments and losses of the update run after each group's pass in Python (the path before), bit for bit, with
    coupled L2, AdamW's decay and a frozen member."""
    import gpunn.ops.ensemble as ens_ops

    rng = np.random.default_rng(5)
    X = rng.standard_normal((48, 5)).astype(dtype)
    Y = (X[:, :1] * 0.5 + np.sin(X[:, 1:2])).astype(dtype)
    calls = []  # per group pass made: whether Adam's step runs inside its kernel
    original = ens_ops._GroupPass
    runs = []
    for inside in (True, False):
        ens = gpunn.Ensemble([5, 8, 6, 1], 5, device="cpu", dtype=dtype, seed=3)
        ens.member_ops.threads = 2
        # not inside: the update as a function of each group after its pass, in Python
        base = original if inside else _update_after_the_pass(original)
        monkeypatch.setattr(ens_ops, "_GroupPass", _recording_adam_inside(base, calls))
        calls.clear()
        h = ens.fit(X, Y, epochs=3, batch_size=16, optimizer=optimizer, lr=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
                    weight_decay=weight_decay, bootstrap=bootstrap, seed=1, verbose=False,
                    callbacks=[_FreezeMember(2, after_epoch=0)])
        assert calls and any(calls) == inside
        runs.append((ens.params.copy(), np.asarray(h["loss"])))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def _recording_adam_inside(cls, calls):
    """_GroupPass that appends to ``calls`` whether Adam's step runs inside its kernel."""

    class Recording(cls):
        def __init__(self, *args):
            super().__init__(*args)
            calls.append(self.adam is not None)

    return Recording


def _update_after_the_pass(cls):
    """_GroupPass that never takes the update into its kernel."""

    class AfterThePass(cls):
        def __init__(self, *args):
            *rest, update = args
            super().__init__(*rest, None)
            self.update, self.pure = update, update is None

    return AfterThePass


class _FreezeMember(Callback):
    """Freezes member ``k`` (as early stopping does) at the end of epoch ``after_epoch``."""

    def __init__(self, k, after_epoch):
        self.k, self.after_epoch = k, after_epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.after_epoch:
            trainer.optimizer.freeze([self.k])


def test_the_one_call_group_pass_only_where_it_computes_what_the_plain_path_does(monkeypatch):
    """Not for other activations, two outputs, no bias, a single row, strided input, more rows than a C int
    holds, or where NumPy's BLAS could not be bound: then group_pass is None and the step runs _forward and
    _backward."""
    import gpunn.ops.ensemble as ens_ops

    def one_call(sizes=(4, 6, 1), rows=8, X=None, y_dtype=np.float32, **options):
        ens = gpunn.Ensemble(list(sizes), 3, device="cpu", seed=0, **options)
        X = np.ones((rows, sizes[0]), np.float32) if X is None else X
        Y = np.ones((X.shape[0], sizes[-1]), y_dtype)
        return ens.member_ops.group_pass(X, Y, ens.weights, ens.biases, ens._dW, ens._db, ens.activations,
                                         ens._workspace(X.shape[0]), np.empty(3)) is not None

    assert one_call()
    assert one_call(activation="tanh") and one_call(activation="sigmoid") and not one_call(activation="elu")
    assert not one_call(sizes=(4, 6, 2)) and not one_call(bias=False) and not one_call(activation="tanh", bias=False)
    assert one_call(sizes=(4, 6, 5, 1)) and not one_call(sizes=(4, 6, 5, 1), activation=["relu", "elu"])  # mut12e M50
    assert one_call(sizes=(4, 6, 5, 1), activation=["sigmoid", "tanh"])
    assert not one_call(sizes=(4, 6, 5, 1), activation=["tanh", "gelu"])
    assert not one_call(rows=1) and not one_call(sizes=(4, 1)) and not one_call(sizes=(1, 6, 1))
    assert not one_call(X=np.ones((8, 8), np.float32)[:, ::2])
    assert not one_call(y_dtype=np.float64)  # targets of another dtype than X and the weights (mut17a A118)
    assert not one_call(output_activation="tanh") and not one_call(output_activation="relu")  # (mut17a A123)
    monkeypatch.setattr(ens_ops, "GEMM_INT_MAX", 7, raising=False)  # a batch over a CBLAS's C int rows (2**31 - 1), made small
    assert not one_call() and one_call(rows=7)
    monkeypatch.setattr(ens_ops, "numpy_tanh", lambda dtype: None)  # NumPy's tanh loop not bound: no tanh layer
    assert one_call(rows=7) and not one_call(rows=7, activation="tanh") and one_call(rows=7, activation="sigmoid")
    assert not one_call(rows=7, sizes=(4, 6, 5, 1), activation=["sigmoid", "tanh"])
    monkeypatch.setattr(ens_ops, "numpy_exp", lambda dtype: None)  # nor its exp loop: ReLU alone
    assert one_call(rows=7) and not one_call(rows=7, activation="sigmoid")
    monkeypatch.setattr(ens_ops, "numpy_blas", lambda dtype: None)
    assert not one_call(rows=7)


def test_the_one_call_group_pass_writes_the_gradient_views_it_is_given():
    """group_pass keeps its kernel's arguments per workspace while the views are the same ones: given other gradient
    views with the same weights and workspace, it writes those (mut18a A130: kept without the gradients' ids, the
    second pass wrote the first one's buffer)."""
    ens = gpunn.Ensemble([4, 6, 1], 3, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    ws, grads = ens._workspace(8), []
    for _ in range(2):
        flat = np.zeros_like(ens.grads)
        dW, db = ens._member_views(flat)
        one_call = ens.member_ops.group_pass(X, Y, ens.weights, ens.biases, dW, db, ens.activations, ws, np.empty(3))
        one_call.run(slice(0, 3))
        grads.append(flat)
    assert np.count_nonzero(grads[0]) > 0
    np.testing.assert_array_equal(grads[1], grads[0])


def test_numpy_blas_is_refused_when_it_does_not_give_numpy_matmuls_bits(monkeypatch):
    """gpunn.ops.cblas binds NumPy's BLAS only after a probe of every call form the group pass makes, through the
    calls the kernel makes (the addresses it is given; 32-bit integers for a library that takes them)."""
    import ctypes

    from gpunn.ops import cblas

    keep = []

    def functions(dtype, I):  # ctypes prototypes of gemm, gemv and dot with integers of type I
        real, E, P = (ctypes.c_float if dtype == np.float32 else ctypes.c_double), ctypes.c_int, ctypes.c_void_p
        return (ctypes.CFUNCTYPE(None, E, E, E, I, I, I, real, P, I, P, I, real, P, I),
                ctypes.CFUNCTYPE(None, E, E, I, I, real, P, I, P, I, real, P, I),
                ctypes.CFUNCTYPE(ctypes.c_double, I, P, I, P, I))

    def address(prototype, fn):
        keep.append(prototype(fn))
        return ctypes.cast(keep[-1], ctypes.c_void_p).value

    for dtype in (np.float32, np.float64):
        blas = cblas._bind(np.dtype(dtype))
        assert blas is not None and blas[3] == 1 and cblas._probe(np.dtype(dtype), blas)
        wide = [p(int(a)) for p, a in zip(functions(dtype, ctypes.c_int64), blas[:3])]
        narrow = functions(dtype, ctypes.c_int32)
        # the same library behind 32-bit integers: the kernel's other call form
        lp64 = np.array([address(p, f) for p, f in zip(narrow, wide)] + [0], np.int64)
        assert cblas._probe(np.dtype(dtype), lp64)

        def wrong(order, ta, tb, *rest):  # every product transposed the wrong way round
            return wide[0](order, tb, ta, *rest)

        bad = blas.copy()
        bad[0] = address(functions(dtype, ctypes.c_int64)[0], wrong)
        assert not cblas._probe(np.dtype(dtype), bad)

        def off(*args):  # the float64 dot product (the squared errors' sums) one ulp off
            return float(np.nextafter(wide[2](*args), np.inf))

        bad = blas.copy()
        bad[2] = address(functions(dtype, ctypes.c_int64)[2], off)
        assert not cblas._probe(np.dtype(dtype), bad)

    def not_compiled(*args):  # a Numba on which the intrinsics do not compile
        from numba.core.errors import TypingError
        raise TypingError("no such intrinsic here")

    find = cblas.numpy_blas.__wrapped__  # numpy_blas without its cache per dtype
    monkeypatch.setattr(cblas, "_probe_products", not_compiled)
    assert find(np.dtype(np.float64)) is None
    monkeypatch.setattr(cblas, "_libraries", lambda: [])
    assert find(np.dtype(np.float32)) is None


def test_spinning_workers_run_every_group_raise_its_error_and_wake_from_sleep():
    """The member groups of the one-call pass run on threads that spin between steps (_SpinningWorkers): every
    group once per run, the first on the caller's thread; a worker's exception is raised by the caller, after
    which the workers go on; a worker that spun out and slept is woken; a second caller is turned away."""
    import threading
    import time

    import gpunn.ops.ensemble as ens_ops

    workers = ens_ops._SpinningWorkers(2, ens_ops._sched_yield())
    ran = {}

    def group(g, signal):
        signal[0][signal[1]] = signal[2]  # what the group pass's kernel does on entry
        if g == "bad":
            raise ValueError("group failed")
        ran[g] = threading.current_thread().name

    assert workers.run(group, ["a", "b", "c"])
    assert ran == {"a": threading.current_thread().name, "b": "gpunn-members-1", "c": "gpunn-members-2"}
    with pytest.raises(ValueError, match="group failed"):
        workers.run(group, ["a", "b", "bad"])
    workers.SPINS_IDLE = 1  # the workers sleep between runs
    for _ in range(3):
        ran.clear()
        time.sleep(0.005)
        assert workers.run(group, ["a", "b", "c"]) and sorted(ran) == ["a", "b", "c"]
    with workers.busy:
        assert not workers.run(group, ["a", "b", "c"])
    for groups in (["a", "b"], ["a", "b", "c", "d"]):  # one group per worker and the caller's: else refused, not hung
        with pytest.raises(ValueError, match="member groups for the caller and 2 spinning workers"):
            workers.run(group, groups)
    ran.clear()
    assert workers.run(group, ["a", "b", "c"]) and sorted(ran) == ["a", "b", "c"]


def test_spinning_workers_run_a_group_under_the_callers_floating_point_error_state():
    """numpy.errstate is per thread: a group pass whose update runs NumPy after the kernel (errstate=True) runs it
    under the caller's on the workers' threads too, as gpunn's pool does (run_pieces): the training loop's
    over/invalid 'ignore' must reach them."""
    import warnings

    import gpunn.ops.ensemble as ens_ops

    workers = ens_ops._SpinningWorkers(1, ens_ops._sched_yield())

    def group(g, signal):
        signal[0][signal[1]] = signal[2]  # what the group pass's kernel does on entry
        if g == "worker's":
            np.subtract(np.inf, np.inf)

    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        workers.run(group, ["caller's", "worker's"])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert workers.run(group, ["caller's", "worker's"])


def test_exceptions_while_the_caller_waits_for_the_spinning_groups_are_raised_once_every_group_has_ended(
        monkeypatch):
    """Exceptions that come while _SpinningWorkers.run waits for the groups' ends (here two Ctrl-Cs once the first
    worker has ended, the second still at work; run waits once more after the first) are raised after the second's
    end too: the wait has settled when every worker has stored its end, not when one has (mut18a A81: the caller
    left with a group still writing)."""
    import threading
    import time

    import gpunn.ops.ensemble as ens_ops

    workers = ens_ops._SpinningWorkers(2, ens_ops._sched_yield())
    finished, interrupted = threading.Event(), []

    def group(g, signal):
        signal[0][signal[1]] = signal[2]  # what the group pass's kernel does on entry
        if g == "slow":
            time.sleep(0.3)  # still at work when the Ctrl-C comes
            finished.set()

    wait_done = workers._wait_done

    def interrupted_wait(seq):
        if len(interrupted) == 2:
            return wait_done(seq)
        while workers.state[0, ens_ops.DONE] < seq:  # the first worker's end
            time.sleep(0.001)
        interrupted.append(finished.is_set())
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "_wait_done", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        workers.run(group, ["caller's", "quick", "slow"])
    assert len(interrupted) == 2 and finished.is_set()


def test_a_process_that_trained_in_spinning_groups_exits_cleanly(tmp_path):
    """The spinning workers are daemon threads that sleep when idle: the interpreter exits after a fit."""
    import sys

    code = ("import numpy as np, gpunn\n"
            "import gpunn.ops.ensemble as e\n"
            "e.MIN_GROUP_FLOPS_ONE_CALL = 0\n"
            "ens = gpunn.Ensemble([4, 8, 1], 4, device='cpu', seed=0)\n"
            "ens.member_ops.threads = 2\n"
            "X = np.ones((64, 4), np.float32)\n"
            "ens.fit(X, X[:, :1], epochs=2, batch_size=16, verbose=False)\n"
            "assert e._SPINNERS, 'the groups did not run on spinning workers'\n"
            "print('done')\n")
    result = waiting.run([sys.executable, "-c", code], timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done" and "terminate" not in result.stderr


def test_gpunn_cpu_threads_sets_the_member_groups_and_unset_they_are_every_usable_core(monkeypatch):
    """CpuEnsembleOps.threads: GPUNN_CPU_THREADS where set (1: one pass, no groups), else the cores this process may
    use (mut18a A92: 1 counted as 2; A92b: unset counted as 1)."""
    from gpunn.ops.cpu import CpuOps, usable_cores

    for env, threads in (("1", 1), ("3", 3), (None, usable_cores())):
        if env is None:
            monkeypatch.delenv("GPUNN_CPU_THREADS", raising=False)
        else:
            monkeypatch.setenv("GPUNN_CPU_THREADS", env)
        mops = ensemble_ops_for(CpuOps(fused=True))
        groups = mops.member_groups(64, flops=1e9)  # work enough for any number of groups
        assert mops.threads == threads and (groups is None if threads == 1 else len(groups) == threads), env


def test_member_groups_only_where_the_work_pays_for_their_threads(monkeypatch):
    """Two groups of small nets at batch 128 ran slower than one pass up to K=8 (2.3x slower at K=2) and
    faster from K=16 on the 2-core machine: a step splits its members only from MIN_GROUP_FLOPS of work per
    group, the optimizer's update on its own (a data-parallel step's) from MIN_GROUP_ELEMENTS parameters per group.
    Groups that each run as one call on spinning threads (ReLU, one output) paid from K=6: MIN_GROUP_FLOPS_ONE_CALL
    (tanh and sigmoid nets' groups also run as one call each)."""
    from gpunn.ops.ensemble import MIN_GROUP_ELEMENTS, MIN_GROUP_FLOPS, MIN_GROUP_FLOPS_ONE_CALL

    def split_steps(n_models, sizes, rows=128, activation="relu"):
        ens = gpunn.Ensemble(sizes, n_models, device="cpu", seed=0, activation=activation)
        ens.member_ops.threads = 2
        calls = []
        monkeypatch.setattr(ens.member_ops, "run_groups", lambda fn, groups, **kw: calls.append(len(groups)) or
                            [fn(g) for g in groups])
        X, Y = np.ones((rows, sizes[0]), np.float32), np.ones((rows, sizes[-1]), np.float32)
        ens.fit(X, Y, epochs=1, batch_size=rows, optimizer="adam", verbose=False)
        return calls

    small = [16, 64, 64, 1]  # about 4 MFLOP per member and step at batch 128
    assert split_steps(2, small) == [] and split_steps(4, small) == []
    # one hand-off per step: each group's Adam update runs on its thread after its backward pass
    assert split_steps(6, small) == [2] and split_steps(8, small) == [2] and split_steps(32, small) == [2]
    # where the groups cannot run as one call each, the pool's hand-off: from K=16
    assert split_steps(8, small, activation="elu") == [] and split_steps(16, small, activation="elu") == [2]
    assert split_steps(6, small, activation="tanh") == [2]  # tanh's groups run as one call each
    assert split_steps(2, [64, 256, 256, 1], rows=256) == [2]  # medium: one member per group pays
    mops = gpunn.Ensemble(small, 4, device="cpu").member_ops
    mops.threads = 2
    assert mops.member_groups(4) is not None  # the work unknown: split, as before
    assert mops.member_groups(4, flops=MIN_GROUP_FLOPS / 2) is not None
    assert mops.member_groups(4, flops=MIN_GROUP_FLOPS / 2 - 1) is None
    assert mops.member_groups(4, elements=MIN_GROUP_ELEMENTS / 2 - 1) is None
    assert mops.member_groups(4, elements=MIN_GROUP_ELEMENTS / 2) is not None  # per group (mut17a A99, A99b)
    assert mops.member_groups(5, flops=MIN_GROUP_FLOPS / 2.5) is not None  # 2.5 members a group (mut17a A96)
    assert mops.member_groups(4, flops=MIN_GROUP_FLOPS_ONE_CALL / 2, one_call=True) is not None
    assert mops.member_groups(4, flops=MIN_GROUP_FLOPS_ONE_CALL / 2 - 1, one_call=True) is None


@pytest.mark.parametrize("name", ["small-x64", "medium-x16"])
def test_the_issue_11_ensembles_steps_run_two_member_groups_on_two_cores(name):
    """The bench's ensemble targets (gpunn bench --config small-x64, medium-x16) as the step sees them on 2 cores:
    ReLU nets of one output, whose groups run as one call each (MIN_GROUP_FLOPS_ONE_CALL), and work enough for two
    groups (small: 32 members of ~4 MFLOP a group; medium: 8 of ~128 MFLOP); on one core, one pass."""
    from gpunn.bench.configs import ENSEMBLE_CONFIGS
    from gpunn.ops.ensemble import MIN_GROUP_FLOPS_ONE_CALL

    cfg = ENSEMBLE_CONFIGS[name]
    ens = gpunn.Ensemble(list(cfg.sizes), cfg.members, device="cpu", seed=0, activation="relu")
    X, Y = np.ones((cfg.batch, cfg.inputs), np.float32), np.ones((cfg.batch, cfg.outputs), np.float32)
    assert ens.member_ops.one_call_applies(X, Y, ens.weights, ens.biases, ens.activations)
    per_group = cfg.members / 2 * 6.0 * ens.params_per_member * cfg.batch
    assert per_group >= 8 * MIN_GROUP_FLOPS_ONE_CALL  # far from the bound: the choice holds on a faster core too
    ens.member_ops.threads = 2
    half = cfg.members // 2
    assert ens._groups(X, Y) == [slice(0, half), slice(half, cfg.members)]
    ens.member_ops.threads = 1
    assert ens._groups(X, Y) is None


def test_a_product_outside_a_step_splits_its_members_from_min_group_flops_per_group(monkeypatch):
    """Outside a training step (predict) each batched product splits into member groups where a group's share,
    2 x rows x n x k flops a member, reaches MIN_GROUP_FLOPS (mut17a A104: counted as rows x n x k)."""
    import gpunn.ops.ensemble as ens_ops
    from gpunn.ops.cpu import CpuOps

    mops = ensemble_ops_for(CpuOps(fused=True))
    mops.threads = 2
    splits = []
    monkeypatch.setattr(ens_ops, "run_pieces", lambda fn, pieces, **kw: splits.append(len(pieces)) or
                        [fn(*piece) for piece in pieces])
    rng = np.random.default_rng(0)
    A, W = rng.standard_normal((4, 9, 5)), rng.standard_normal((4, 5, 3))
    per_group = 2 * (2.0 * 9 * 3 * 5)  # two members a group
    for threshold, expected in ((per_group, [2]), (per_group + 1, [])):
        monkeypatch.setattr(ens_ops, "MIN_GROUP_FLOPS", threshold)
        splits.clear()
        np.testing.assert_array_equal(mops.matmul(A, W, out=np.empty((4, 9, 3))), np.matmul(A, W))
        assert splits == expected, threshold

def _base_and_offset(view):
    """The flat buffer a view reads and the view's first element's offset in it."""
    base = view
    while base.base is not None:
        base = base.base
    flat = base.reshape(-1)
    offset = (view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // view.itemsize
    return flat, offset


def test_the_batched_gemm_plan_computes_every_product_of_an_ensemble_step():
    """cublasGemmStridedBatchedEx (emulated on flat buffers, one member at a time) with the plan's arguments
    gives the products of a step as the graph path passes them: the shared batch X (stride 0), workspace
    stacks, and weight and gradient views of the member-major flat buffers (member stride P), transposed too."""
    from gpunn.ops import cublas

    rng = np.random.default_rng(3)
    ens = gpunn.Ensemble(SIZES, 3, dtype="float32", device="cpu", seed=0)
    ens.params[...] = rng.standard_normal(ens.params.size)
    X = rng.standard_normal((6, SIZES[0])).astype(np.float32)
    A1 = rng.standard_normal((3, 6, SIZES[1])).astype(np.float32)
    dZ1 = rng.standard_normal((3, 6, SIZES[1])).astype(np.float32)
    dZ2 = rng.standard_normal((3, 6, SIZES[2])).astype(np.float32)
    cases = [(X, ens.weights[0], np.empty((3, 6, SIZES[1]), np.float32)),  # forward, shared X
             (A1, ens.weights[1], np.empty((3, 6, SIZES[2]), np.float32)),  # forward, a workspace stack
             (X.T, dZ1, ens._dW[0]),  # dW = X^T dZ into the gradient buffer's member views
             (dZ2, ens.weights[1].swapaxes(-1, -2), np.empty((3, 6, SIZES[1]), np.float32))]  # dA = dZ W^T
    for a, b, out in cases:
        bp = cublas.batched_plan_for(a, b, out)
        assert bp.count == 3 and (bp.stride_second == 0) == (a.ndim == 2)
        first, first_at = _base_and_offset(b)
        second, second_at = _base_and_offset(a)
        flat_out, out_at = _base_and_offset(out)
        flat_out[...] = np.nan if out.base is None else flat_out
        for k in range(3):
            c = flat_out[out_at + k * bp.stride_c:]
            cublas.emulate_gemm(bp.plan, first, second, c, first_at + k * bp.stride_first,
                                second_at + k * bp.stride_second)
        np.testing.assert_allclose(out, np.matmul(a.astype(np.float64), b), rtol=1e-5, atol=1e-5)
    with pytest.raises(cublas.GemmError, match="not a stack of 3"):
        cublas.batched_plan_for(A1[:2], ens.weights[1], np.empty((3, 6, SIZES[2]), np.float32))

    def half_element_apart(x):  # the same matrices, each 2 bytes past a whole element from the one before
        step = x.strides[0] + 2
        flat = np.zeros(x.size + 3 * x.shape[0], x.dtype)
        return np.lib.stride_tricks.as_strided(flat, x.shape, (step, *x.strides[1:]))

    with pytest.raises(cublas.GemmError, match="A: a .* operand is not a stack of 3 matrices"):
        cublas.batched_plan_for(half_element_apart(A1), ens.weights[1], np.empty((3, 6, SIZES[2]), np.float32))
    with pytest.raises(cublas.GemmError, match="C: strides .* are not whole elements"):
        cublas.batched_plan_for(A1, ens.weights[1], half_element_apart(np.empty((3, 6, SIZES[2]), np.float32)))
    with pytest.raises(cublas.GemmError, match=r"writes a \(K, n, m\) stack, not \(6, 8\)"):
        cublas.batched_plan_for(X, ens.weights[0][0], np.empty((6, SIZES[1]), np.float32))


@pytest.mark.filterwarnings("ignore::gpunn.training.graph.GraphWarning")  # the CPU does not capture: said once
@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_graph_true_trains_exactly_as_the_eager_step(ensemble_data, optimizer):
    """Ensemble(graph=True): on the CPU the graph's launches run eagerly (gpunn.training.graph), with the
    step count on the device and the rates from the members' table; bit for bit the ordinary fit, with a
    member frozen by early stopping part-way and bootstrap resamples."""
    X, Y = ensemble_data
    kwargs = dict(epochs=5, batch_size=25, optimizer=optimizer, lr=[2e-3, 0.1, 1e-2] if optimizer == "adam"
                  else [0.01, 0.3, 0.05], momentum=None if optimizer == "adam" else [0.5, 0.9, 0.0],
                  validation_fraction=0.2, bootstrap=True, seed=4, schedule="cosine", verbose=False)
    runs = []
    for graph in (False, True):
        ens = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cpu", seed=7, graph=graph)
        history = ens.fit(X, Y, callbacks=[gpunn.EarlyStopping(patience=1, min_delta=0.01)], **kwargs)
        runs.append((ens, history))
    (eager, h_eager), (graphed, h_graph) = runs
    assert graphed.graph_trainer is not None and not graphed.graph_trainer.captured  # the CPU: eager form
    assert any(h_graph.stopped_early) and h_graph.stopped_epoch == h_eager.stopped_epoch
    np.testing.assert_array_equal(graphed.params, eager.params)
    for name, state in eager.optimizer.state.items():
        np.testing.assert_array_equal(graphed.optimizer.state[name], state)
    assert graphed.optimizer.steps == eager.optimizer.steps and h_graph["loss"] == h_eager["loss"]


def test_the_default_graph_is_auto_and_on_the_cpu_the_ordinary_step_silently(ensemble_data, tmp_path):
    """Ensemble() with no graph= is graph=None ("auto"), as one MLP: on a GPU its step is captured where it can be
    (tests/test_ensemble_gpu.py), and on the CPU the ordinary step runs -- the member groups, no GraphWarning --
    bit for bit graph=False's, the trainer saying why. Copies and a saved-and-loaded ensemble keep the default (a
    file records no graph). It was graph=False, opt-in, until an H200 showed the graph 5.5x the eager step at
    K=256 with the same weights."""
    import copy

    from gpunn.training.graph import GraphWarning

    X, Y = ensemble_data
    kwargs = dict(epochs=3, batch_size=25, optimizer="adam", lr=LRS, validation_fraction=0.2, seed=4, verbose=False)
    eager = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cpu", seed=7, graph=False)
    h_eager = eager.fit(X, Y, **kwargs)
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cpu", seed=7)
    assert ens.graph is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)
        history = ens.fit(X, Y, **kwargs)
    trainer = ens.graph_trainer
    assert trainer.reason.startswith("no GPU") and not trainer.active and not trainer.captured
    np.testing.assert_array_equal(ens.params, eager.params)
    assert history["loss"] == h_eager["loss"]
    assert copy.deepcopy(ens).graph is None and copy.deepcopy(eager).graph is False
    gpunn.save(tmp_path / "ens.npz", ens)
    assert gpunn.load(tmp_path / "ens.npz").graph is None


def _twice(ens, X, Y, second, **fit):
    """``ens`` fitted two epochs with Adam at LRS (seed 1), then two more given ``second`` as its optimizer (seed 2)."""
    ens.fit(X, Y, optimizer="adam", lr=LRS, epochs=2, batch_size=32, seed=1, verbose=False)
    ens.fit(X, Y, optimizer=second(ens), epochs=2, batch_size=32, seed=2, verbose=False, **fit)
    return ens


def test_a_fit_given_the_last_fits_optimizer_continues_it_as_each_members_mlp_continues_its_adam(ensemble_data):
    """``ens.fit(optimizer=ens.optimizer)`` goes on with the last fit's optimizer (moments, step count), as an MLP's
    second fit given the same Adam does: member k ends as its MLP fitted twice with one Adam, to 1e-10. It was
    refused ("member 0: unknown optimizer <...EnsembleOptimizer object...>"), so an ensemble's fit always started a
    fresh optimizer, and on a GPU captured its step again."""
    X, Y = ensemble_data
    ens = _twice(gpunn.Ensemble(SIZES, 3, dtype="float64", seed=10), X, Y, lambda e: e.optimizer)
    batches = -(-X.shape[0] // 32)
    assert ens.optimizer.steps == 4 * batches
    fresh = _twice(gpunn.Ensemble(SIZES, 3, dtype="float64", seed=10), X, Y, lambda e: "adam", lr=LRS)
    for k in range(3):
        twin, adam = gpunn.MLP(SIZES, dtype="float64", seed=10 + k), gpunn.Adam(lr=LRS[k])
        for seed in (1, 2):
            twin.fit(X, Y, optimizer=adam, epochs=2, batch_size=32, seed=seed, verbose=False)
        assert rel_err(ens.member_params[k], twin.params) <= TOL["float64"], f"member {k}"
        assert rel_err(fresh.member_params[k], twin.params) > 1e-6  # a fresh Adam the second time is another run


def test_a_continued_optimizer_given_lr_goes_on_at_those_rates_as_each_members_mlp_given_its_adam_and_lr(
        ensemble_data):
    """``ens.fit(optimizer=ens.optimizer, lr=[...])`` goes on with the optimizer's moments and steps at the rates
    given, as an MLP's ``fit(optimizer=adam, lr=r)`` replaces its Adam's rate (to 1e-10 per member); the rates stay
    the optimizer's (a later fit without lr keeps them, a checkpoint saves them). It was refused ("lr with an
    ensemble's optimizer"), so an ensemble could not continue at a lower rate."""
    X, Y = ensemble_data
    lower = [r / 10 for r in LRS]
    ens = _twice(gpunn.Ensemble(SIZES, 3, dtype="float64", seed=10), X, Y, lambda e: e.optimizer, lr=lower)
    assert ens.optimizer.lr.tolist() == lower and [m.lr for m in ens.optimizer.members] == lower
    assert ens.history["lr"][-1] == lower
    for k in range(3):
        twin, adam = gpunn.MLP(SIZES, dtype="float64", seed=10 + k), gpunn.Adam(lr=LRS[k])
        twin.fit(X, Y, optimizer=adam, epochs=2, batch_size=32, seed=1, verbose=False)
        twin.fit(X, Y, optimizer=adam, lr=lower[k], epochs=2, batch_size=32, seed=2, verbose=False)
        assert rel_err(ens.member_params[k], twin.params) <= TOL["float64"], f"member {k}"
    unchanged = _twice(gpunn.Ensemble(SIZES, 3, dtype="float64", seed=10), X, Y, lambda e: e.optimizer)
    assert rel_err(unchanged.member_params[0], ens.member_params[0]) > 1e-6  # the rate given made a difference


def test_a_continued_optimizer_keeps_its_frozen_members_and_starts_afresh_on_another_ensemble(ensemble_data):
    """Given again to the ensemble it trained, a member it froze (early stopping, divergence) stays as it was;
    given to another ensemble of K members, it starts afresh (moments, steps, every member training), as one
    model's Adam given to another model does: bit for bit a fit with a fresh Adam of its settings."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=10)
    ens.fit(X, Y, lr=LRS, epochs=1, batch_size=32, seed=1, verbose=False)
    opt = ens.optimizer
    opt.freeze([1])
    before = [ens.member_params[k].copy() for k in range(3)]
    ens.fit(X, Y, optimizer=opt, epochs=1, batch_size=32, seed=2, verbose=False)
    np.testing.assert_array_equal(ens.member_params[1], before[1])
    assert rel_err(ens.member_params[0], before[0]) > 1e-6 and rel_err(ens.member_params[2], before[2]) > 1e-6
    other, fresh = (gpunn.Ensemble(SIZES, 3, dtype="float64", seed=20) for _ in range(2))
    other.fit(X, Y, optimizer=opt, epochs=2, batch_size=32, seed=3, verbose=False)
    fresh.fit(X, Y, optimizer="adam", lr=LRS, epochs=2, batch_size=32, seed=3, verbose=False)
    np.testing.assert_array_equal(other.params, fresh.params)
    assert opt.steps == fresh.optimizer.steps and opt.frozen == []


def test_a_loaded_checkpoints_optimizer_continues_as_the_live_one(ensemble_data, tmp_path):
    """gpunn.load_checkpoint(path).model.optimizer holds the run's moments and steps: a fit given it goes on as the
    run's own ensemble given ens.optimizer does, bit for bit."""
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=10)
    ens.fit(X, Y, lr=LRS, epochs=2, batch_size=32, seed=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    loaded = gpunn.load_checkpoint(path).model
    for model in (ens, loaded):
        model.fit(X, Y, optimizer=model.optimizer, epochs=1, batch_size=32, seed=2, verbose=False)
    np.testing.assert_array_equal(loaded.params, ens.params)
    assert loaded.optimizer.steps == ens.optimizer.steps == 3 * -(-X.shape[0] // 32)


@pytest.mark.parametrize("given, match", [
    (dict(lr=1e-3, beta1=0.8), "beta1 with an ensemble's optimizer"),
    (dict(lr=[1e-3, float("nan"), 1e-3]), "member 1: learning rate must be a positive finite number, got nan"),
    (dict(lr=[1e-3, 1e-3]), "lr lists 2 values but the ensemble has 3 members"),
    (dict(weight_decay=[0.0, 0.1, 0.0], beta2=0.9), "weight_decay, beta2 with an ensemble's optimizer"),
    (dict(members=2), "holds 3 members' settings; this ensemble has 2 members"),
])
def test_a_continued_optimizer_is_refused_with_settings_or_another_member_count(ensemble_data, given, match):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, seed=0)
    ens.fit(X, Y, epochs=1, batch_size=64, verbose=False)
    target = gpunn.Ensemble(SIZES, given.pop("members", 3), seed=0)
    with pytest.raises(ValueError, match=match):
        target.fit(X, Y, optimizer=ens.optimizer, epochs=1, batch_size=64, verbose=False, **given)


def test_a_member_that_diverged_stays_listed_while_a_continued_optimizer_keeps_it_frozen(ensemble_data):
    """A member that diverged in the last fit holds the weights it diverged with; a fit given ens.optimizer keeps it
    frozen, so it holds them still: ens.diverged and the history list it, and predict's mean leaves it out. The
    continued fit started a history of its own, so it was forgotten (ens.diverged == []) and its exploded
    predictions went into the mean and std."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=0)
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged"):
        ens.fit(X, Y, lr=[1e-3, 1e3, 1e-3], epochs=3, batch_size=32, verbose=False)
    assert ens.diverged == [1] and ens.optimizer.frozen == [1]
    history = ens.fit(X, Y, optimizer=ens.optimizer, epochs=1, batch_size=32, verbose=False)
    assert (ens.diverged, list(history.diverged), ens.optimizer.frozen) == ([1], [1], [1])
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged in the last fit"):
        mean, _ = ens.predict(X, return_std=True)
    np.testing.assert_allclose(mean, ens.predict(X)[[0, 2]].mean(axis=0))
    ens.fit(X, Y, lr=LRS, epochs=1, batch_size=32, verbose=False)  # a fresh optimizer trains every member again
    assert ens.diverged == [] and ens.optimizer.frozen == []


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_continued_optimizer_is_refused_by_an_ensemble_on_another_gpu(ensemble_data, fake_cupy, optimizer):
    """Its moments and members' table live on the device of the ensemble it trained: given to one on cuda:1, it
    was taken (the device check compared the array modules alone) and failed inside bind ("fill: array is on
    device 0 but the current device is 1"; plain SGD, with no moments, would have read its table from cuda:0)."""
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 3, device="cuda:0", seed=0)
    ens.fit(X, Y, optimizer=optimizer, epochs=1, batch_size=64, verbose=False)
    target = gpunn.Ensemble(SIZES, 3, device="cuda:1", seed=0)
    with pytest.raises(ValueError, match="made for an ensemble on cuda:0; this ensemble is on cuda:1"):
        target.fit(X, Y, optimizer=ens.optimizer, epochs=1, batch_size=64, verbose=False)
    ens.fit(X, Y, optimizer=ens.optimizer, epochs=1, batch_size=64, verbose=False)  # still its own ensemble's
    assert ens.optimizer.steps == 2 * -(-X.shape[0] // 64)


def test_score_gives_each_members_r2_as_mlp_score_gives_one():
    # an Ensemble had predict, loss and evaluate as one MLP has, but no score
    X, Y = gpunn.datasets.make("linear", 200, 4, n_outputs=2, seed=0, device="cpu")
    ens = gpunn.Ensemble([4, 8, 2], 3, device="cpu", seed=0)
    ens.fit(X, Y, epochs=2, verbose=False)
    scores = ens.score(X, Y)
    assert len(scores) == 3
    for k in range(3):
        assert scores[k] == pytest.approx(ens[k].score(X, Y), rel=1e-6)


def _record_group_passes(monkeypatch):
    """Spies on the one-call kernel (each call's member range and thread) and on Ensemble._forward (the plain pass)."""
    import threading

    import gpunn.ops.ensemble as ens_ops

    calls, plain = [], []
    kernel = ens_ops._member_group_pass

    def spy(*args):
        calls.append((args[-5], args[-4], threading.get_ident()))  # k0, k1 (then signal, slot, value)
        return kernel(*args)

    forward = gpunn.Ensemble._forward
    monkeypatch.setattr(ens_ops, "_member_group_pass", spy)
    monkeypatch.setattr(gpunn.Ensemble, "_forward", lambda self, *a, **k: (plain.append(1), forward(self, *a, **k))[1])
    return calls, plain


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_step_too_small_to_split_runs_the_one_call_pass_over_every_member_on_the_calling_thread(
        monkeypatch, optimizer, threads):
    """Below MIN_GROUP_FLOPS_ONE_CALL (or on one thread) a step does not split its members; where the one-call
    group pass applies it is still one call of it over all K members, on the calling thread, not Ensemble._forward
    and _backward in Python (~7 calls per layer: the K=4 tiny-net step took 77 us that way, 46 us as one call).
    Adam's step runs inside it (no separate optimizer step); SGD's after it."""
    import threading

    import gpunn.ops.ensemble as ens_ops

    if not ensemble_ops_for(gpunn.MLP([2, 3, 1]).ops).fused:
        pytest.skip("the one-call pass needs Numba")
    calls, plain = _record_group_passes(monkeypatch)
    X, Y = gpunn.datasets.make("teacher", 64, 8, 1, seed=2, device="cpu")
    ens = gpunn.Ensemble([8, 32, 32, 1], 4, device="cpu", dtype="float32", seed=3)
    ens.member_ops.threads = threads
    assert ens._groups(X[:16], Y[:16]) is None  # too little work to split
    steps = []
    monkeypatch.setattr(ens_ops.CpuEnsembleOps, "adam_step",
                        lambda self, *a: (steps.append(1), ens_ops.EnsembleOps.adam_step(self, *a))[1])
    ens.fit(X, Y, optimizer=optimizer, lr=1e-2, epochs=2, batch_size=16, seed=1, verbose=False)
    assert len(calls) == 8 and not plain
    assert {c[:2] for c in calls} == {(0, 4)} and {c[2] for c in calls} == {threading.get_ident()}
    assert not steps  # Adam's update inside the kernel; SGD's is sgd_step
    calls.clear()
    elu = gpunn.Ensemble([8, 32, 32, 1], 4, device="cpu", dtype="float32", seed=3, activation="elu")
    elu.fit(X, Y, optimizer=optimizer, lr=1e-2, epochs=1, batch_size=16, seed=1, verbose=False)
    assert not calls and len(plain) == 4  # no one-call pass for ELU: the plain pass


@pytest.mark.parametrize("optimizer, activation, bootstrap", [
    ("adam", "relu", False), ("adamw", "tanh", True), ("sgd", "sigmoid", False), ("momentum", "relu", True)])
def test_the_unsplit_one_call_pass_trains_the_bits_of_the_plain_pass_and_of_each_members_mlp(
        optimizer, activation, bootstrap):
    """The one call over every member (a step too small to split) trains the weights and losses of
    Ensemble._forward and _backward then the optimizer's step, bit for bit (per-member rates and decay, a
    schedule); and without bootstrap member k's weights are its own MLP's, bit for bit."""
    X, Y = gpunn.datasets.make("teacher", 96, 8, 1, seed=2, device="cpu")
    lrs, wds = [1e-3, 1e-2, 3e-2, 0.1], [0.0, 1e-3, 0.0, 1e-2]
    fit = dict(optimizer=optimizer, epochs=3, batch_size=16, seed=1, verbose=False,
               schedule=gpunn.Schedule("step", step_size=2, gamma=0.5))
    runs = []
    for one_call in (True, False):
        ens = gpunn.Ensemble([8, 12, 6, 1], 4, device="cpu", dtype="float32", seed=3, activation=activation)
        assert ens._groups(X[:16], Y[:16]) is None
        assert ens._one_pass(X[:16], Y[:16]) == ens.member_ops.fused
        if not one_call:  # the plain pass
            ens.member_ops.one_call_applies = lambda *a: False
            assert not ens._one_pass(X[:16], Y[:16])
        h = ens.fit(X, Y, lr=lrs, weight_decay=wds, bootstrap=bootstrap, **fit)
        runs.append((ens.params.copy(), np.asarray(h["loss"])))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    if bootstrap:
        return
    ens = gpunn.Ensemble([8, 12, 6, 1], 4, device="cpu", dtype="float32", seed=3, activation=activation)
    ens.fit(X, Y, lr=lrs, weight_decay=wds, **fit)
    for k in range(4):
        twin = gpunn.MLP([8, 12, 6, 1], dtype="float32", seed=ens.seeds[k], activation=activation)
        twin.fit(X, Y, optimizer=make_optimizer(optimizer, weight_decay=wds[k]), lr=lrs[k],
                 **{key: v for key, v in fit.items() if key != "optimizer"})
        np.testing.assert_array_equal(ens.member_params[k], twin.params)


class _NewStateArrays(Callback):
    """Replaces the optimizer's state arrays by copies at the end of epoch ``after_epoch``, as loading a checkpoint
    into the optimizer does (gpunn.checkpoint): the training must go on in the new arrays."""

    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.after_epoch:
            state = trainer.optimizer.state
            for name in list(state):
                state[name] = state[name].copy()


@pytest.mark.parametrize("split", [False, True])
def test_the_kept_one_call_step_trains_the_bits_of_a_step_that_keeps_nothing(monkeypatch, split):
    """The one-call step keeps its kernel's arguments from step to step (CpuEnsembleOps.group_pass's _GroupPass per
    workspace, adam_members' _MemberAdam). Through a partial last batch (a workspace of its own), a schedule's new
    rates, a member frozen part-way, the optimizer's state arrays replaced (as a checkpoint's load does) and a second
    fit on the same ensemble with a new optimizer and batch size (whose partial batch finds the first fit's
    workspace), it trains the parameters and losses of the plain pass with NumPy's generic Adam step, which keep
    nothing, bit for bit; in one pass over all the members, and in member groups."""
    import gpunn.ops.ensemble as ens_ops

    if not ensemble_ops_for(gpunn.MLP([2, 3, 1]).ops).fused:
        pytest.skip("the one-call pass needs Numba")
    if split:
        for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
            monkeypatch.setattr(ens_ops, name, 0)
    calls, _ = _record_group_passes(monkeypatch)
    X, Y = gpunn.datasets.make("teacher", 100, 8, 1, seed=2, device="cpu")  # batches of 16 and one of 4
    first = dict(optimizer="adam", lr=[1e-3, 1e-2, 3e-2, 0.1], weight_decay=[0.0, 1e-3, 0.0, 1e-2], epochs=4,
                 batch_size=16, seed=1, verbose=False, schedule=gpunn.Schedule("step", step_size=2, gamma=0.5))
    second = dict(optimizer="adamw", lr=3e-3, weight_decay=[1e-2, 0.0, 1e-1, 0.0], epochs=2, batch_size=32, seed=2,
                  verbose=False)  # batches of 32 and one of 4
    runs = []
    for kept in (True, False):
        ens = gpunn.Ensemble([8, 12, 6, 1], 4, device="cpu", dtype="float32", seed=3)
        ens.member_ops.threads = 2 if split else 1
        if not kept:  # the plain pass and the generic update
            ens.member_ops.one_call_applies = lambda *a: False
            ens.member_ops.adam_members = lambda *a: None
        calls.clear()
        losses = ens.fit(X, Y, callbacks=[_FreezeMember(2, after_epoch=1), _NewStateArrays(after_epoch=0)],
                         **first)["loss"]
        losses += ens.fit(X, Y, **second)["loss"]
        assert bool(calls) == kept and {c[:2] for c in calls} <= ({(0, 2), (2, 4)} if split else {(0, 4)})
        runs.append((ens.params.copy(), np.asarray(losses)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_consecutive_steps_keep_the_group_pass_and_the_members_adam_step():
    """A step of the same shapes and optimizer keeps the last step's _GroupPass (per workspace) and _MemberAdam,
    and moves them to its batch and step; another batch size has a _GroupPass of its own, and new optimizer
    state a new _MemberAdam (made anew each step, they took about 5 of the 11 us of Python in a tiny-x4 step)."""
    from gpunn.training.ensemble import EnsembleOptimizer

    ens = gpunn.Ensemble([8, 12, 6, 1], 4, device="cpu", dtype="float32", seed=3)
    if not ens.member_ops.fused:
        pytest.skip("the one-call pass needs Numba")
    X, Y = gpunn.datasets.make("teacher", 40, 8, 1, seed=2, device="cpu")
    optimizer = EnsembleOptimizer("adam", 4, np, lr=1e-2).bind(ens.params, ens.ops)
    lr = np.full(4, 1e-2)
    ens.train_step_and_update(X[:16], Y[:16], optimizer, lr)
    ws = ens._workspace(16)
    made, adam = ws.group_pass, ens.member_ops._member_adam
    assert made.adam is adam and adam.m is optimizer.state["m"]
    sums = ens.train_step_and_update(X[16:32], Y[16:32], optimizer, lr)
    assert ws.group_pass is made and ens.member_ops._member_adam is adam
    assert made.args is None and sums.shape == (4,)  # the step's batch and sums are let go after it (done)
    np.testing.assert_array_equal(adam.pow1, np.full(4, 0.9**2))  # step 2's beta1**2
    ens.train_step_and_update(X[32:], Y[32:], optimizer, lr)  # 8 rows
    assert ens._workspace(8).group_pass is not made and ens.member_ops._member_adam is adam
    optimizer.state["m"] = optimizer.state["m"].copy()
    ens.train_step_and_update(X[:16], Y[:16], optimizer, lr)
    assert ens.member_ops._member_adam is not adam and ws.group_pass is not made
    assert ws.group_pass.adam.m is optimizer.state["m"]
    other = gpunn.Ensemble([8, 12, 6, 1], 4, device="cpu", dtype="float32", seed=4)  # the optimizer's update of
    before, grads = ens.params.copy(), np.random.default_rng(0).standard_normal(other.grads.size)  # other buffers
    other.grads[...], start = grads, other.params.copy()
    optimizer.step(other.params, other.grads, lr)
    np.testing.assert_array_equal(ens.params, before)
    assert not np.array_equal(other.params, start)


@pytest.mark.parametrize("split", [False, True])
def test_the_kept_one_call_step_keeps_no_batch_and_no_earlier_optimizers_state_alive(monkeypatch, split):
    """The one-call step kept on the workspace and the member ops (review19) lets go of its batch after each step
    and of an optimizer's state when the next fit starts: an unshuffled fit's batches are views of the caller's
    arrays, and loss_and_gradients at a training batch's size passes the caller's own, which a kept pass held until
    the model went; a fit with SGD after one with Adam kept Adam's moments (two copies of the parameters)."""
    import gc
    import weakref

    import gpunn.ops.ensemble as ens_ops

    ens = gpunn.Ensemble([8, 12, 6, 1], 4, device="cpu", dtype="float32", seed=3)
    if not ens.member_ops.fused:
        pytest.skip("the one-call pass needs Numba")
    if split:
        for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
            monkeypatch.setattr(ens_ops, name, 0)
    ens.member_ops.threads = 2 if split else 1
    calls, _ = _record_group_passes(monkeypatch)
    X, Y = gpunn.datasets.make("teacher", 72, 8, 1, seed=2, device="cpu")  # batches of 32 and one of 8

    def dropped(make):
        arrays = [np.ascontiguousarray(a, np.float32).copy() for a in (X, Y)]
        refs = [weakref.ref(a) for a in arrays]
        make(*arrays)
        del arrays
        gc.collect()
        return [ref() is None for ref in refs]

    assert dropped(lambda x, y: ens.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=False)) == [True, True]
    assert dropped(lambda x, y: ens.loss_and_gradients(x[:32], y[:32])) == [True, True]
    assert calls and {c[:2] for c in calls} <= ({(0, 2), (2, 4)} if split else {(0, 4)})  # the one-call step ran
    moments = weakref.ref(ens.optimizer.state["m"])
    assert ens._workspace(8).group_pass.adam.m is moments()  # kept for the partial batch's size
    ens.fit(X, Y, epochs=1, batch_size=24, optimizer="sgd", lr=1e-3, verbose=False)  # 72 = 3 x 24: no 8-row batch
    gc.collect()
    assert moments() is None


def test_the_kept_members_adam_step_follows_its_table_and_settings_between_steps():
    """adam_members keeps its _MemberAdam for the same arrays, table and settings: a new table, a change of the table
    (weight decay from none, a frozen member: MemberRates.update), of eps or of AdamW's decoupling between two steps
    of the same arrays steps as the generic update does, bit for bit."""
    from gpunn.ops.cpu import CpuOps
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import ACTIVE, BETA1, BETA2, HYPER_FIELDS, LR, WEIGHT_DECAY

    fast, ref = ensemble_ops_for(CpuOps(fused=True)), EnsembleOps(CpuOps(fused=False))
    if not fast.fused:
        pytest.skip("Numba is not installed")
    table = np.zeros((3, HYPER_FIELDS))
    table[:, LR], table[:, BETA1], table[:, BETA2], table[:, ACTIVE] = [1e-2, 3e-2, 1e-1], 0.9, 0.999, 1
    rates = MemberRates(np, table)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 16)).astype(np.float32)
    g = np.empty_like(w)  # one gradient buffer, as a fit's
    states = [[w.copy(), np.zeros_like(w), np.zeros_like(w)] for _ in range(2)]
    eps, decoupled = 1e-8, False
    for step, change in enumerate(("", "new table", "weight decay", "frozen", "eps", "decoupled"), 1):
        if change == "new table":  # at the same version as the first
            table[:, LR], table[:, BETA1] = [3e-2, 1e-2, 1e-3], 0.8
            rates = MemberRates(np, table)
        elif change == "weight decay":
            rates.update(WEIGHT_DECAY, [0.0, 0.1, 0.3])
        elif change == "frozen":
            rates.update(ACTIVE, [1.0, 0.0, 1.0])
        elif change == "eps":
            eps = 1e-1
        elif change == "decoupled":
            decoupled = True
        g[...] = rng.standard_normal((3, 16))
        for ops, (ws, m, v) in zip((fast, ref), states):
            ops.adam_step(ws, g, m, v, rates, eps, step, decoupled)
        for got, want in zip(*states):
            np.testing.assert_array_equal(got, want, err_msg=change)


def test_members_equal_their_mlps_bit_for_bit_with_the_ensembles_one_blas_thread():
    """An ensemble runs NumPy's BLAS on one thread (gpunn.ops.fit_threads.member_blas_threads); an MLP at OpenBLAS's
    default threads may round a product otherwise (16-64-64-1 at batch 128 on the 2-core machine: up to 6e-8 apart,
    perf16). With the MLPs under the same one-thread BLAS, every member holds its MLP's weights bit for bit."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1024, 16)).astype(np.float32)
    Y = rng.normal(size=(1024, 1)).astype(np.float32)
    fit = dict(epochs=2, batch_size=128, seed=1, verbose=False)
    ens = gpunn.Ensemble([16, 64, 64, 1], 2, device="cpu", dtype="float32", seed=0)
    ens.fit(X, Y, **fit)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for k in range(2):
            twin = gpunn.MLP([16, 64, 64, 1], dtype="float32", seed=ens.seeds[k], device="cpu")
            twin.fit(X, Y, **fit)
            np.testing.assert_array_equal(ens.member_params[k], twin.params)


@pytest.mark.parametrize("update", ["kept", "generic"])
def test_float64_adam_members_equal_their_mlps_bit_for_bit_past_the_steps_where_numpys_pow_differs(
        monkeypatch, update):
    """Each member's beta**step comes from Python's pow, as its MLP's Adam (BetaPowers): NumPy's array power was
    1 ulp off it at step 7 for 0.999 and step 12 for 0.9 on the 2-core AMD EPYC, and the float64 members came out
    up to 2e-16 off their MLPs (bits19). 16 steps, per-member betas (two distinct values each); ``generic``: the
    NumPy update (EnsembleOps.adam_step), else the kept Numba member step (_MemberAdam)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from gpunn.ops.ensemble import CpuEnsembleOps, _MemberAdam

    if update == "generic":
        monkeypatch.setattr(CpuEnsembleOps, "adam_members", lambda self, *a: None)
    steps, at = [], _MemberAdam.at
    monkeypatch.setattr(_MemberAdam, "at", lambda self, step: steps.append(step) or at(self, step))
    X, Y = gpunn.datasets.make("teacher", 64, 6, 1, seed=2, device="cpu", dtype="float64")
    betas = {"beta1": [0.9, 0.8, 0.9], "beta2": [0.999, 0.99, 0.999]}
    fit = dict(optimizer="adam", lr=1e-2, epochs=2, batch_size=8, seed=1, verbose=False)
    ens = gpunn.Ensemble([6, 10, 1], 3, device="cpu", dtype="float64", seed=0)
    ens.fit(X, Y, **fit, **betas)
    if update == "kept" and not ens.member_ops.fused:
        pytest.skip("the kept member step needs Numba")
    assert steps == (list(range(1, 17)) if update == "kept" else [])
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for k in range(3):
            twin = gpunn.MLP([6, 10, 1], dtype="float64", seed=ens.seeds[k], device="cpu")
            twin.fit(X, Y, **{**fit, "optimizer": gpunn.Adam(beta1=betas["beta1"][k], beta2=betas["beta2"][k])})
            np.testing.assert_array_equal(ens.member_params[k], twin.params)


def test_beta_powers_are_pythons_pow_of_each_beta():
    """BetaPowers gives each member Python's beta**step (one pow per distinct beta), in the kept member step too."""
    from gpunn.ops.member_rates import BetaPowers

    betas = np.array([0.9, 0.999, 0.9, 0.5, 0.999])
    powers, out = BetaPowers(betas), np.empty(5)
    for step in range(1, 400):
        assert powers.into(out, step) is out
        assert out.tolist() == [b ** step for b in betas.tolist()], step
    assert BetaPowers.of(np.full(4, 0.999), 7).tolist() == [0.999 ** 7] * 4
    assert BetaPowers.of(np.empty(0), 3).shape == (0,)
    # a NumPy integer step (a step count kept in an array) as Python's int: numpy.float64's pow, 1 ulp off Python's at
    # step 7 for 0.999 on the 2-core AMD EPYC, is not called
    for step in range(1, 40):
        for betas in ([0.999], [0.999, 0.9]):
            assert BetaPowers.of(betas, np.int64(step)).tolist() == [b ** step for b in betas], (betas, step)


def test_the_ensembles_blas_threads_follow_gpunn_ensemble_blas_threads(monkeypatch):
    """GPUNN_ENSEMBLE_BLAS_THREADS: unset or blank, one BLAS thread; 0 leaves NumPy's BLAS as it is; on CuPy nothing
    is limited (mut17a A2: 0 asked threadpoolctl for 0 threads, which OpenBLAS takes as every core; A3: a blank
    value gave 0)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from gpunn.ops.fit_threads import ENV_BLAS_THREADS, member_blas_threads

    def threads():
        return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}

    if not threads():
        pytest.skip("no BLAS threadpoolctl knows")
    for outer in (1, 3):
        with threadpoolctl.threadpool_limits(limits=outer, user_api="blas"):
            outside = threads()
            for value, expected in ((None, {1}), (" ", {1}), ("0", outside), ("2", {2})):
                if value is None:
                    monkeypatch.delenv(ENV_BLAS_THREADS, raising=False)
                else:
                    monkeypatch.setenv(ENV_BLAS_THREADS, value)
                with member_blas_threads(np):
                    assert threads() == expected, (outer, value)
                assert threads() == outside
            monkeypatch.setenv(ENV_BLAS_THREADS, "1")
            with member_blas_threads(object()):  # another array module (CuPy): NumPy's BLAS untouched
                assert threads() == outside


def test_per_member_betas_in_the_one_call_pass_step_each_member_with_its_own():
    """Adam inside the one-call pass takes each member's beta1**t and beta2**t (mut17a A58: member 0's for all,
    unseen while every member had the default betas): the bits of the plain pass and its optimizer step."""
    X, Y = gpunn.datasets.make("teacher", 64, 8, 1, seed=2, device="cpu")
    betas = {"beta1": [0.9, 0.8, 0.5], "beta2": [0.999, 0.99, 0.9]}
    runs = []
    for one_call in (True, False):
        ens = gpunn.Ensemble([8, 12, 1], 3, device="cpu", dtype="float32", seed=3)
        if not one_call:
            ens.member_ops.one_call_applies = lambda *a: False
        elif not ens._one_pass(X[:16], Y[:16]):
            pytest.skip("the one-call pass needs Numba")
        ens.fit(X, Y, optimizer="adam", lr=1e-2, epochs=2, batch_size=16, seed=1, verbose=False, **betas)
        runs.append(ens.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_adamw_after_adam_on_one_ensemble_decays_inside_the_one_call_pass():
    """A second fit with another kind of Adam (AdamW with decay after Adam without) takes its own flags into the
    one-call pass's kernel, not those cached for the first (mut17a A132: the first fit's kept): the bits of the plain
    pass."""
    import copy

    X, Y = gpunn.datasets.make("teacher", 64, 8, 1, seed=2, device="cpu")
    ens = gpunn.Ensemble([8, 12, 1], 2, device="cpu", dtype="float32", seed=3)
    if not ens._one_pass(X[:16], Y[:16]):
        pytest.skip("the one-call pass needs Numba")
    fit = dict(lr=1e-2, epochs=1, batch_size=16, seed=1, verbose=False)
    ens.fit(X, Y, optimizer="adam", **fit)
    plain = copy.deepcopy(ens)
    plain.member_ops.one_call_applies = lambda *a: False
    for model in (ens, plain):
        model.fit(X, Y, optimizer="adamw", weight_decay=[0.1, 0.3], **fit)
    np.testing.assert_array_equal(ens.params, plain.params)


def test_member_adam_constants_follow_a_new_table_at_a_freed_ones_address():
    """CpuEnsembleOps caches the members' Adam constants by the table's id and version. It kept no reference to
    the table, so a new table (a new ensemble optimizer bound to the same ops) made where a freed one had been,
    at the same version, got the freed one's betas and weight decay: here from the second table on."""
    from gpunn.ops.cpu import CpuOps
    from gpunn.ops.member_rates import BETA1, HYPER_FIELDS, WEIGHT_DECAY

    mops = ensemble_ops_for(CpuOps(fused=True))
    for i in range(20):
        table = np.zeros((3, HYPER_FIELDS))
        table[:, BETA1], table[:, WEIGHT_DECAY] = 0.5 + i / 100, [0.0, i / 10, 0.0]
        b1, _, _, _, decay, any_decay = mops._adam_constants(MemberRates(np, table), np.float32)
        assert np.array_equal(b1, table[:, BETA1].astype(np.float32)), i
        assert np.array_equal(decay, table[:, WEIGHT_DECAY].astype(np.float32)) and any_decay == (i > 0), i


def test_the_members_adam_step_follows_a_change_of_its_table_and_of_the_weights_dtype():
    """One table, changed in place between steps (MemberRates.update counts each change in its version), then used
    for weights of the other dtype: the Numba step equals the generic one each time (mut18a A133: the constants
    cached by the table's id alone kept the old betas and decay; A133b: float64 weights got float32's constants)."""
    from gpunn.ops.cpu import CpuOps
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import ACTIVE, BETA1, BETA2, HYPER_FIELDS, LR, WEIGHT_DECAY

    fast, ref = ensemble_ops_for(CpuOps(fused=True)), EnsembleOps(CpuOps(fused=False))
    if not fast.fused:
        pytest.skip("Numba is not installed")
    table = np.zeros((3, HYPER_FIELDS))
    table[:, LR], table[:, BETA1], table[:, BETA2], table[:, ACTIVE] = 1e-2, 0.9, 0.999, 1
    rates = MemberRates(np, table)
    rng = np.random.default_rng(4)
    for dtype, change in ((np.float32, False), (np.float32, True), (np.float64, False)):
        if change:
            rates.update(BETA1, [0.7, 0.8, 0.85])
            rates.update(WEIGHT_DECAY, [0.0, 0.1, 0.0])
        w, g = rng.standard_normal((2, 3, 16)).astype(dtype)
        states = [[w.copy(), np.zeros_like(w), np.zeros_like(w)] for _ in range(2)]
        for ops, (ws, m, v) in zip((fast, ref), states):
            ops.adam_step(ws, g, m, v, rates, 1e-8, 2, False)
        for got, want in zip(*states):
            np.testing.assert_array_equal(got, want, err_msg=f"{dtype.__name__}, changed: {change}")


def test_an_ensembles_optimizer_shows_its_kind_and_each_members_settings_as_one_models_does():
    """``ens.optimizer`` (which README says to pass back to continue a fit) and a loaded checkpoint's printed as
    ``<gpunn.training.ensemble.EnsembleOptimizer object at 0x...>``, where one model's shows ``Adam(lr=...)``."""
    X, Y = gpunn.datasets.make("linear", 64, 3, 1, seed=0, device="cpu")
    ens = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu")
    ens.fit(X, Y, epochs=1, batch_size=32, lr=[1e-3, 1e-2], verbose=False)
    assert repr(ens.optimizer) == ("EnsembleOptimizer('adam', n_models=2, lr=[0.001, 0.01], beta1=0.9, beta2=0.999, "
                                   "eps=1e-08, weight_decay=0.0, steps=2)")
    ens.optimizer.freeze([1])
    assert repr(ens.optimizer).endswith("steps=2, frozen=[1])")
    ens.fit(X, Y, epochs=1, batch_size=64, optimizer="momentum", momentum=[0.9, 0.5], verbose=False)
    assert repr(ens.optimizer) == ("EnsembleOptimizer('momentum', n_models=2, lr=0.01, momentum=[0.9, 0.5], "
                                   "nesterov=False, weight_decay=0.0, steps=1)")


@pytest.mark.parametrize("seeds", [[1, 2, 3], (1, 2, 3), np.array([1, 2, 3])])
def test_a_list_of_seeds_given_to_fit_says_the_members_seeds_go_to_the_ensemble(seeds):
    """README's "Per member" bullet lists seed beside lr (one value or K); ``ens.fit(X, Y, seed=[1, 2, 3])`` said only
    "seed must be a non-negative int, got [1, 2, 3]". fit's seed orders the rows for every member; the members'
    starting seeds are the Ensemble's."""
    X, Y = gpunn.datasets.make("linear", 64, 3, 1, seed=0, device="cpu")
    ens = gpunn.Ensemble([3, 4, 1], n_models=3, device="cpu")
    with pytest.raises(ValueError) as info:
        ens.fit(X, Y, epochs=1, seed=seeds, verbose=False)
    message = str(info.value)
    assert "fit's seed orders the rows, one order for every member" in message, message
    assert "gpunn.Ensemble([3, 4, 1], n_models=3, seed=[1, 2, 3])" in message, message
    assert gpunn.Ensemble([3, 4, 1], n_models=3, seed=[1, 2, 3], device="cpu").seeds == [1, 2, 3]  # as the message says


@pytest.mark.parametrize("name", ["r2", "mse", "mae"])
def test_best_by_an_evaluate_name_points_to_the_historys_validation_name(name):
    """``ens.score``/``evaluate`` give r2, mse and mae; ``ens.best("r2")`` said only "the history has no 'r2'; it has
    ..., val_r2", with no hint that the held-out values carry val_."""
    X, Y = gpunn.datasets.make("linear", 64, 3, 1, seed=0, device="cpu")
    ens = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu")
    ens.fit(X, Y, epochs=1, batch_size=32, validation_fraction=0.25, verbose=False)
    with pytest.raises(ValueError, match=rf"the history has no '{name}' \(did you mean 'val_{name}'\? the held-out "
                                         rf"rows' values carry val_\)"):
        ens.best(name)
    assert ens.best_index(f"val_{name}") in (0, 1)


def test_an_ensemble_interrupted_part_way_through_an_epoch_names_no_epoch_for_the_weights_its_members_hold(
        tmp_path, interrupt_at):
    """Interrupted in epoch 3 after 4 of its batches, the members that trained in it hold weights part-way through
    it, as the checkpoint written then does: history.weights_epoch said 2, the last finished epoch, whose
    val_loss best() ranked them by, though no member held those weights any more. It is now None for each of them
    (a member frozen before, stopped early, keeps the epoch it stopped in), in the fit's history and the loaded
    checkpoint's alike; interrupted at an epoch's end, it names that epoch as before."""
    X, Y = gpunn.datasets.make("friedman1", 640, 10, 1, noise=1.0, seed=0, device="cpu")
    Xv, Yv = gpunn.datasets.make("friedman1", 200, 10, 1, noise=1.0, seed=1, device="cpu")
    ens = gpunn.Ensemble([10, 16, 1], n_models=3, seed=0)
    history = ens.fit(X, Y, epochs=4, batch_size=64, lr=[1e-2, 2e-2, 5e-2], validation_data=(Xv, Yv), verbose=False,
                      callbacks=[interrupt_at(2, 3), gpunn.ModelCheckpoint(tmp_path / "cut.npz")])
    assert history.interrupted and history["epoch"] == [1, 2]
    assert history.weights_epoch == [None, None, None]
    loaded = gpunn.load_checkpoint(tmp_path / "cut.npz")
    assert loaded.model.history.weights_epoch == [None, None, None]
    np.testing.assert_array_equal(loaded.model.member_params, ens.member_params)  # the weights held, mid-epoch
    assert ens.best_index() in range(3)  # still ranked: by the last epoch each finished, the nearest scored
    history = loaded.resume(X, Y, validation_data=(Xv, Yv), verbose=False)
    assert history["epoch"] == [1, 2, 3, 4] and history.weights_epoch == [4, 4, 4] and not history.interrupted

    ens = gpunn.Ensemble([10, 16, 1], n_models=3, seed=0)
    history = ens.fit(X, Y, epochs=4, batch_size=64, lr=[1e-2, 2e-2, 5e-2], validation_data=(Xv, Yv), verbose=False,
                      callbacks=[interrupt_at(1, 9), gpunn.ModelCheckpoint(tmp_path / "end.npz")])  # the last batch
    assert history.interrupted and history["epoch"] == [1, 2] and history.weights_epoch == [2, 2, 2]
    assert gpunn.load_checkpoint(tmp_path / "end.npz").model.history.weights_epoch == [2, 2, 2]

    X, Y = gpunn.datasets.make("friedman1", 1000, 10, 1, noise=1.0, seed=0, device="cpu")  # members stopped early
    Xv, Yv = gpunn.datasets.make("friedman1", 500, 10, 1, noise=1.0, seed=1, device="cpu")  # before the cut keep
    history = gpunn.Ensemble([10, 32, 1], n_models=6, seed=0).fit(  # the epoch they stopped in
        X, Y, epochs=8, lr=[1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 3e-1], validation_data=(Xv, Yv), batch_size=32,
        verbose=False, callbacks=[gpunn.EarlyStopping(patience=1), interrupt_at(5, 3)])
    assert history["epoch"] == [1, 2, 3, 4, 5] and history.stopped_epoch == [None, None, 4, 5, None, 5]
    assert history.weights_epoch == [None, None, 4, 5, None, 5]

    X, Y = gpunn.datasets.make("friedman1", 640, 10, 1, noise=1.0, seed=0, device="cpu")  # a member diverged, and
    with pytest.warns(RuntimeWarning, match="diverged"):  # frozen, before the cut keeps the epoch it froze in
        history = gpunn.Ensemble([10, 16, 1], n_models=2, seed=0).fit(
            X, Y, epochs=3, batch_size=64, lr=[1e-2, 1e3], validation_data=(Xv[:200], Yv[:200]), verbose=False,
            callbacks=[interrupt_at(1, 3)])
    assert history.diverged == [1] and history["epoch"] == [1] and history.weights_epoch == [None, 1]
