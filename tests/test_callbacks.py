"""Validation metrics, the callback protocol, early stopping, plateau reduction and Ctrl-C."""
import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import types
import warnings

import numpy
import pytest
import waiting

import gpunn
from gpunn import MLP, Callback, EarlyStopping, ReduceLROnPlateau, Schedule, TrainingDiverged, datasets, metrics
from gpunn.backend import Backend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data():
    X, Y = datasets.make("teacher", 1500, 5, noise=0.2, seed=4, device="cpu")
    return X[:1000], Y[:1000], X[1000:], Y[1000:]


class Recorder(Callback):
    def __init__(self):
        self.events, self.snapshots = [], {}

    def on_train_begin(self, trainer):
        self.events.append("train_begin")

    def on_epoch_begin(self, trainer, epoch):
        self.events.append(f"epoch_begin {epoch}")

    def on_batch_end(self, trainer, batch):
        self.events.append(f"batch {batch}")

    def on_epoch_end(self, trainer, epoch, logs):
        self.events.append(f"epoch_end {epoch}")
        self.snapshots[epoch + 1] = trainer.model.params.copy()

    def on_train_end(self, trainer):
        self.events.append("train_end")


def test_callbacks_fire_in_order(data):
    X, Y = data[0][:250], data[1][:250]
    rec = Recorder()
    MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, callbacks=[rec], verbose=False)
    epoch = lambda e: [f"epoch_begin {e}", "batch 0", "batch 1", "batch 2", f"epoch_end {e}"]
    assert rec.events == ["train_begin", *epoch(0), *epoch(1), "train_end"]


def test_a_batch_size_above_the_training_rows_is_the_row_count_as_the_run_records_it(data):
    """fit's batch_size is at most the row count: a run of 250 rows asked for batches of 1000 trains one batch of
    250 rows an epoch, and says 250 where callbacks (and a checkpoint's settings) read it."""
    X, Y = data[0][:250], data[1][:250]
    rec = Recorder()

    class ReadsBatchSize(Callback):
        def on_train_begin(self, trainer):
            self.batch_size = trainer.batch_size

    reads = ReadsBatchSize()
    MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=1000, callbacks=[rec, reads], verbose=False)
    assert reads.batch_size == 250 and rec.events == ["train_begin", "epoch_begin 0", "batch 0", "epoch_end 0",
                                                      "train_end"]


class Numbers(Callback):
    """The numbers each hook is given, with the epoch's logs["epoch"]."""

    def __init__(self):
        self.seen = []

    def on_epoch_begin(self, trainer, epoch):
        self.seen.append(("begin", epoch))

    def on_batch_end(self, trainer, batch):
        self.seen.append(("batch", batch))

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen.append(("end", epoch, logs["epoch"]))


def test_hooks_get_indexes_from_0_where_the_logs_and_history_count_from_1(data, tmp_path, interrupt_at):
    """As README and Callback's docstring say: a hook's ``epoch`` and ``batch`` are indexes from 0 (as Keras
    passes them), ``logs["epoch"]`` and the history count from 1; a run resumed part-way through an epoch passes
    its batches' indexes within that epoch, not from the resume."""
    X, Y = data[0][:250], data[1][:250]
    path = str(tmp_path / "run.npz")
    whole, cut = Numbers(), Numbers()
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, callbacks=[whole], verbose=False)
    epoch = lambda e: [("begin", e), ("batch", 0), ("batch", 1), ("batch", 2), ("end", e, e + 1)]
    assert whole.seen == [*epoch(0), *epoch(1)] and h["epoch"] == [1, 2]
    MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, verbose=False,
                                             callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 0)])
    h = gpunn.load_checkpoint(path, device="cpu").resume(X, Y, callbacks=[cut], verbose=False)
    assert cut.seen == [("begin", 1), ("batch", 1), ("batch", 2), ("end", 1, 2)] and h["epoch"] == [1, 2]


def test_validation_metrics_match_the_host_definitions(data):
    X, Y, Xv, Yv = data
    model = MLP([5, 16, 1], device="cpu", seed=0)
    rec = Recorder()
    h = model.fit(X, Y, epochs=3, batch_size=50, validation_data=(Xv, Yv), callbacks=[rec], verbose=False)
    for epoch in (1, 3):
        probe = MLP([5, 16, 1], device="cpu", seed=0)
        probe.params[...] = rec.snapshots[epoch]
        P = probe.predict(Xv).astype(numpy.float64)
        assert h["val_mse"][epoch - 1] == pytest.approx(metrics.mse(numpy, P, Yv), rel=1e-5)
        assert h["val_mae"][epoch - 1] == pytest.approx(metrics.mae(numpy, P, Yv), rel=1e-5)
        assert h["val_r2"][epoch - 1] == pytest.approx(metrics.r2(numpy, P, Yv), rel=1e-5, abs=1e-6)
    assert h["val_loss"] == h["val_mse"]
    assert model.score(Xv, Yv) == pytest.approx(h["val_r2"][-1], rel=1e-6)


def test_r2_is_scikit_learns_r2_score_to_the_last_bit():
    """metrics.r2 and evaluate's r2 (validation's val_r2) form each output's 1 - ss_res / ss_tot and average them as
    r2_score does, so a float64 model's R² is scikit-learn's exactly. ((ss_tot - ss_res) / ss_tot, equal on paper,
    is off in the last bits for some of these, and passed the rel=1e-12 comparisons below.)"""
    from sklearn.metrics import r2_score

    rng = numpy.random.default_rng(0)
    model = MLP([4, 6, 3], device="cpu", seed=0, dtype="float64")
    for _ in range(20):
        X = rng.standard_normal((50, 4))
        P = model.predict(X)
        Y = P + rng.uniform(0.1, 2) * P.std(axis=0) * rng.standard_normal(P.shape)
        assert metrics.r2(numpy, P, Y) == model.evaluate(X, Y)["r2"] == r2_score(Y, P)


def test_r2_centres_float32_targets_on_their_float64_mean():
    """Float32 targets near 1e7 (1e7 + 0, 1, 2, 3: their mean 1e7 + 1.5, which float32 rounds to 1e7 + 1): R²'s
    denominator is their squares about the float64 mean, 1.25 a row, so predictions 0.5 off score 0.8 (about the
    float32 mean, 1.5 a row: 0.83)."""
    Y = (1e7 + numpy.tile(numpy.arange(4.0), 250)).astype("float32").reshape(-1, 1)
    assert metrics.total_squares(Y).tolist() == [1250.0]
    assert metrics.r2(numpy, Y.astype("float64") + 0.5, Y) == 0.8


def test_val_loss_is_the_training_loss_on_the_validation_rows_with_several_outputs(data):
    # val_loss was the mean over every value (val_mse): with 3 outputs a third of `loss` on the same rows
    X, Y = data[0][:200], numpy.tile(data[1][:200], (1, 3)) * [1.0, 2.0, -1.0]
    model = MLP([5, 8, 3], device="cpu", seed=0, dtype="float64")
    h = model.fit(X, Y, epochs=2, batch_size=None, optimizer="sgd", lr=1e-3, shuffle=False,
                  validation_data=(X, Y), verbose=False)
    assert h["val_loss"][-1] == pytest.approx(model.loss(X, Y), rel=1e-12)
    assert h["val_mse"][-1] == pytest.approx(h["val_loss"][-1] / 3, rel=1e-12)
    assert h["val_mse"][-1] == pytest.approx(metrics.mse(numpy, model.predict(X), Y), rel=1e-12)
    # MAE over every value and R² averaged over the outputs, each about its own mean: scikit-learn's
    from sklearn.metrics import mean_absolute_error, r2_score

    P = model.predict(X)
    assert h["val_mae"][-1] == pytest.approx(mean_absolute_error(Y, P), rel=1e-12)
    assert metrics.mae(numpy, P, Y) == pytest.approx(mean_absolute_error(Y, P), rel=1e-12)
    assert h["val_r2"][-1] == pytest.approx(r2_score(Y, P), rel=1e-12)
    assert metrics.r2(numpy, P, Y) == pytest.approx(r2_score(Y, P), rel=1e-12)
    ens = gpunn.Ensemble([5, 8, 3], 2, device="cpu", seed=0, dtype="float64")
    he = ens.fit(X, Y, epochs=1, batch_size=None, optimizer="sgd", lr=1e-3, validation_data=(X, Y), verbose=False)
    assert he["val_loss"][-1] == pytest.approx([ens[k].loss(X, Y) for k in range(2)], rel=1e-12)


def test_metrics_mae_and_mse_of_float32_errors_sum_in_float64():
    """metrics.mae and mse (the functions tests and users check val_mae and val_mse by) sum float32 errors in float64,
    as validation does: 100 errors of 1e37 sum past float32's 3.4e38, so a float32 mean was inf where validation's
    val_mae is 1e37. Checked by mutation: mae without dtype="float64" passed every other test."""
    P, Y = numpy.full((100, 2), 1e37, "float32"), numpy.zeros((100, 2), "float32")
    with numpy.errstate(over="raise"):
        assert metrics.mae(numpy, P, Y) == pytest.approx(float(numpy.float32(1e37)), rel=1e-12)
        assert metrics.mse(numpy, P, Y) == pytest.approx(float(numpy.float32(1e37)) ** 2, rel=1e-12)


def test_validation_reads_back_once_per_epoch(data, monkeypatch, device):
    X, Y, Xv, Yv = data
    calls = []
    original = Backend.to_host
    monkeypatch.setattr(Backend, "to_host", lambda self, a: calls.append(1) or original(self, a))
    model = MLP([5, 8, 1], device=device, seed=0)
    h = model.fit(X, Y, epochs=4, batch_size=50, validation_data=(Xv, Yv), callbacks=[EarlyStopping()],
                  verbose=False)
    assert len(calls) == 4
    assert all(isinstance(v, float) for v in h["val_r2"]) and h["val_r2"][-1] > h["val_r2"][0]


def test_validation_fraction_is_a_seeded_split(data):
    X, Y = data[0], data[1]
    h1 = MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=2, validation_fraction=0.25, verbose=False)
    h2 = MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=2, validation_fraction=0.25, verbose=False)
    assert h1["val_mse"] == h2["val_mse"] and len(h1["val_r2"]) == 2
    with pytest.raises(ValueError, match="not both"):
        MLP([5, 1], device="cpu").fit(X, Y, validation_fraction=0.2, validation_data=(X, Y), verbose=False)
    with pytest.raises(ValueError, match=r"validation_fraction must be a number in \[0, 1\)"):
        MLP([5, 1], device="cpu").fit(X, Y, validation_fraction=1.5, verbose=False)


def test_fits_seed_not_the_models_draws_the_validation_split_and_is_the_runs_seed(data):
    """fit(seed=7) of a model made with seed=0 holds out the rows seed 7 draws and runs by seed 7 (its shuffles, its
    checkpoint's record): the model's seed is only the default."""
    from gpunn.rng import host_rng

    X, Y = data[0], data[1]

    class Reads(Callback):
        def on_train_begin(self, trainer):
            self.seed, self.held = trainer.settings.seed, list(trainer.validation.rows_in[1])

    reads = Reads()
    MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=1, validation_fraction=0.25, seed=7, callbacks=[reads],
                                             verbose=False)
    assert reads.seed == 7 and reads.held == sorted(host_rng(7, "validation").permutation(len(X))[:250])


def test_validation_fraction_holds_out_a_rounded_share_drawn_from_the_seed(data):
    from gpunn.training.fit import split_validation

    X, Y = data[0], data[1]
    model = MLP([5, 1], device="cpu")
    X_train, _, held = split_validation(model, X, Y, validation_fraction=0.2507, seed=0)
    assert held.n_rows == 251 and X_train.shape[0] == 749  # 250.7 rows, rounded
    _, _, other = split_validation(model, X, Y, validation_fraction=0.2507, seed=1)
    assert not numpy.array_equal(held.X, other.X)
    # both parts keep the rows' order (mut12m's F5: the training rows in the permutation's order made a
    # shuffle=False fit with a validation_fraction train in a random order, and passed)
    rows = [numpy.flatnonzero((X == row).all(axis=1))[0] for row in X_train]
    assert rows == sorted(rows) and held.n_rows + len(set(rows)) == X.shape[0]


def test_early_stopping_restores_the_best_epochs_weights(data):
    X, Y, Xv, Yv = data
    rec = Recorder()
    model = MLP([5, 32, 1], device="cpu", seed=0)
    # min_delta so large that no epoch after the first counts as an improvement
    h = model.fit(X, Y, epochs=20, batch_size=50, lr=1e-2, validation_data=(Xv, Yv),
                  callbacks=[EarlyStopping(patience=3, min_delta=1e6), rec], verbose=False)
    assert h["epoch"] == [1, 2, 3, 4] and h.stopped_early and h.best_epoch == 1
    numpy.testing.assert_array_equal(model.params, rec.snapshots[1])


def test_early_stopping_without_restore_keeps_no_copy_of_the_weights_and_ends_with_the_last(data):
    """restore_best_weights=False: no device copy of the parameters (a model's size in memory) and none in the
    checkpoint's state; the model ends with its last epoch's weights."""
    X, Y, Xv, Yv = data
    rec = Recorder()
    model = MLP([5, 32, 1], device="cpu", seed=0)
    stopping = EarlyStopping(patience=3, min_delta=1e6, restore_best_weights=False)
    h = model.fit(X, Y, epochs=20, batch_size=50, lr=1e-2, validation_data=(Xv, Yv), callbacks=[stopping, rec],
                  verbose=False)
    assert h["epoch"] == [1, 2, 3, 4] and h.best_epoch == 1 and stopping.stopped_epoch == 4  # (counted as h's)
    assert stopping.best_params is None and stopping.state_dict()[1] == {}
    numpy.testing.assert_array_equal(model.params, rec.snapshots[4])


def test_without_early_stopping_the_best_epoch_is_the_least_val_loss_of_one_model_as_of_an_ensemble(data):
    """One model's history.best_epoch was None for a validated run without EarlyStopping, an Ensemble's the
    least val_loss's epoch per member: both are that epoch now, the model keeping its last epoch's weights."""
    X, Y, Xv, Yv = data
    rec = Recorder()
    model = MLP([5, 32, 1], device="cpu", seed=0)
    h = model.fit(X, Y, epochs=6, batch_size=50, lr=0.3, validation_data=(Xv, Yv), callbacks=[rec], verbose=False)
    assert h.best_epoch == 1 + int(numpy.argmin(h["val_loss"])) < 6 and not h.stopped_early  # val_loss rose after it
    numpy.testing.assert_array_equal(model.params, rec.snapshots[6])
    ens = gpunn.Ensemble([5, 32, 1], 2, device="cpu", seed=0)
    he = ens.fit(X, Y, epochs=6, batch_size=50, lr=0.3, validation_data=(Xv, Yv), verbose=False)
    assert he.best_epoch == (1 + numpy.argmin(he["val_loss"], axis=0)).tolist()
    assert model.fit(X, Y, epochs=2, verbose=False).best_epoch is None  # no validation: none
    stopping = EarlyStopping("loss", patience=9)  # EarlyStopping's monitor decides, not val_loss
    h = model.fit(X, Y, epochs=3, lr=1e-3, validation_data=(Xv, Yv), callbacks=[stopping], verbose=False)
    assert h.best_epoch == stopping.best_epoch == 1 + int(numpy.argmin(h["loss"]))


def test_one_models_history_has_a_best_value_beside_its_best_epoch_as_an_ensembles_per_member(data):
    """An Ensemble's history had ``best`` (per member: the best monitored value) beside ``best_epoch``; one model's
    had no ``best`` (AttributeError). It is the value at best_epoch now: EarlyStopping's by its monitor (its mode's
    best: the most val_r2), else the least val_loss where validated; else None, as an Ensemble's per member."""
    X, Y, Xv, Yv = data
    model = MLP([5, 32, 1], device="cpu", seed=0)
    h = model.fit(X, Y, epochs=6, batch_size=50, lr=0.3, validation_data=(Xv, Yv), verbose=False)
    assert h.best == min(h["val_loss"]) == h["val_loss"][h.best_epoch - 1] and type(h.best) is float
    ens = gpunn.Ensemble([5, 32, 1], 2, device="cpu", seed=0)
    he = ens.fit(X, Y, epochs=6, batch_size=50, lr=0.3, validation_data=(Xv, Yv), verbose=False)
    assert he.best == numpy.min(he["val_loss"], axis=0).tolist()  # (per member)
    stopping = EarlyStopping("val_r2", patience=9)
    h = model.fit(X, Y, epochs=4, batch_size=50, lr=0.3, validation_data=(Xv, Yv), callbacks=[stopping], verbose=False)
    assert h.best == stopping.best == max(h["val_r2"]) == h["val_r2"][h.best_epoch - 1]
    he = ens.fit(X, Y, epochs=4, batch_size=50, lr=0.3, validation_data=(Xv, Yv), callbacks=[EarlyStopping("val_r2")],
                 verbose=False)
    assert he.best == numpy.max(he["val_r2"], axis=0).tolist()
    h = model.fit(X, Y, epochs=2, verbose=False)
    assert h.best is None and h.best_epoch is None  # no validation and no EarlyStopping: none


def test_under_early_stopping_the_best_epoch_is_its_monitors_even_where_no_epoch_scored(data):
    """With EarlyStopping, history.best_epoch and best are its monitor's: None where no epoch's monitored value was
    finite, not the least val_loss's epoch, which only a run without EarlyStopping reports."""
    X, Y, Xv, Yv = data

    class LogsNaN(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["made_up"] = float("nan")

    model = MLP([5, 8, 1], device="cpu", seed=0)
    h = model.fit(X, Y, epochs=2, batch_size=100, validation_data=(Xv, Yv),
                  callbacks=[LogsNaN(), EarlyStopping("made_up", patience=5)], verbose=False)
    assert all(numpy.isfinite(h["val_loss"]))
    assert h.best_epoch is None and h.best is None


def test_a_run_that_diverges_ends_with_its_best_epochs_weights_under_early_stopping(data):
    """TrainingDiverged still raises, but the model is not left holding the garbage the diverged epoch
    made of it: EarlyStopping(restore_best_weights=True) puts back the best epoch's parameters."""
    X, Y, Xv, Yv = data
    rec = Recorder()

    class Blowup(gpunn.Callback):  # the learning rate jumps a millionfold from the third epoch
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 2:
                trainer.lr_scale = 1e6

    model = MLP([5, 32, 1], device="cpu", seed=0)
    stopping = EarlyStopping(patience=5)
    with pytest.raises(TrainingDiverged):
        model.fit(X, Y, epochs=10, batch_size=50, lr=1e-2, validation_data=(Xv, Yv),
                  callbacks=[stopping, rec, Blowup()], verbose=False)
    assert stopping.best_epoch in (1, 2)
    numpy.testing.assert_array_equal(model.params, rec.snapshots[stopping.best_epoch])
    kept = MLP([5, 32, 1], device="cpu", seed=0)  # without restore_best_weights the diverged weights stay
    with pytest.raises(TrainingDiverged):
        kept.fit(X, Y, epochs=10, batch_size=50, lr=1e-2, validation_data=(Xv, Yv),
                 callbacks=[EarlyStopping(patience=5, restore_best_weights=False), Blowup()], verbose=False)
    assert not numpy.array_equal(kept.params, model.params)


def test_a_validation_loss_that_stops_changing_is_no_improvement(data):
    """An epoch that equals the best value is not better than it (Keras' strict rule): at a rate too small
    to move float32 weights the validation loss repeats exactly, and patience 2 stops the run at epoch 3."""
    X, Y, Xv, Yv = data
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(X[:100], Y[:100], epochs=8, batch_size=100, optimizer="sgd",
                                                 lr=1e-30, validation_data=(Xv, Yv),
                                                 callbacks=[EarlyStopping(patience=2)], verbose=False)
    assert len(set(h["val_loss"])) == 1
    assert h["epoch"] == [1, 2, 3] and h.stopped_early and h.best_epoch == 1


def test_a_non_finite_value_is_never_the_best(data):
    """A NaN first value (e.g. a validation metric that overflowed) does not become the best: the finite
    values after it improve, and nothing stops the run or restores the NaN epoch's weights."""
    X, Y = data[0][:100], data[1][:100]

    class Scripted(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [float("nan"), 3.0, 2.0, 1.0][epoch]

    stopping = EarlyStopping(monitor="score", patience=2)
    h = MLP([5, 1], device="cpu").fit(X, Y, epochs=4, callbacks=[Scripted(), stopping], verbose=False)
    assert h["epoch"] == [1, 2, 3, 4] and not h.stopped_early and h.best_epoch == 4 and stopping.best == 1.0


def test_a_run_whose_every_val_loss_is_non_finite_has_no_best_epoch(data):
    """Without EarlyStopping, a run (or a member) no epoch of which had a finite val_loss said "best epoch 1" with
    best inf: it has none (None), while a member beside it that scored keeps its best."""
    X, Y, Xv, Yv = data

    class Scripted(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["val_loss"] = [float("nan"), float("inf"), float("nan")][epoch]

    h = MLP([5, 1], device="cpu").fit(X[:100], Y[:100], epochs=3, validation_data=(Xv, Yv), callbacks=[Scripted()],
                                      verbose=False)
    assert len(h["val_loss"]) == 3 and h.best_epoch is None and h.best is None
    members = gpunn.training.callbacks.History(val_loss=[[float("nan"), 2.0], [float("inf"), 1.0], [float("nan"), 3.0]])
    members.settle_best()
    assert members.best_epoch == [None, 2] and members.best == [None, 1.0] and type(members.best_epoch[1]) is int


def test_early_stopping_keeps_the_minimum_of_the_monitored_metric(data):
    X, Y, Xv, Yv = data
    rec = Recorder()
    model = MLP([5, 64, 64, 1], device="cpu", seed=0)
    # tiny, noisy training set and a big net: validation loss turns up while training loss falls
    h = model.fit(X[:40], Y[:40] + numpy.random.default_rng(0).normal(0, 1, (40, 1)), epochs=300, batch_size=40,
                  lr=1e-2, validation_data=(Xv, Yv), callbacks=[EarlyStopping(patience=5), rec], verbose=False)
    best = int(numpy.argmin(h["val_loss"])) + 1
    assert h.stopped_early and h.best_epoch == best and len(h["epoch"]) == best + 5
    numpy.testing.assert_array_equal(model.params, rec.snapshots[best])
    assert model.loss(Xv, Yv) == pytest.approx(min(h["val_loss"]), rel=1e-5)


def test_a_callback_passed_to_a_second_fit_starts_that_run_afresh(data):
    # the reused EarlyStopping had stopped the first run: the second stopped before its first epoch and
    # returned an empty history; ReduceLROnPlateau carried its best value and patience count over
    X, Y, Xv, Yv = data
    X, Y = X[:200], Y[:200]

    def run(callbacks, seed):
        return MLP([5, 16, 1], device="cpu", seed=seed).fit(
            X, Y, epochs=12, batch_size=50, lr=1e-2, validation_data=(Xv, Yv), callbacks=callbacks, verbose=False)

    es, plateau = EarlyStopping(patience=2, min_delta=1e6), ReduceLROnPlateau(patience=1, factor=0.5, min_delta=1e6)
    first = run([es, plateau], 0)
    assert first.stopped_early and len(first["epoch"]) == 3 and plateau.reductions == 2
    again = run([es, plateau], 1)
    fresh = run([EarlyStopping(patience=2, min_delta=1e6), ReduceLROnPlateau(patience=1, factor=0.5, min_delta=1e6)], 1)
    assert again["epoch"] == fresh["epoch"] == [1, 2, 3] and again["lr"] == fresh["lr"]
    assert again.best_epoch == fresh.best_epoch == 1 and again["val_loss"] == fresh["val_loss"]
    # given a checkpoint's state (as resume gives it), the next run goes on from it: the run had stopped early, so
    # it stops at once; the run after that starts afresh again
    es.load_state_dict(*es.state_dict())
    resumed = run([es], 1)
    assert resumed.stopped_early and not resumed.get("epoch")
    assert run([es], 1)["epoch"] == [1, 2, 3]


def test_a_run_stopped_before_its_first_epoch_returns_the_logs_it_would_have_kept_empty(data):
    X, Y, Xv, Yv = data

    class StopAtOnce(Callback):
        def on_train_begin(self, trainer):
            trainer.stop = True

    h = MLP([5, 1], device="cpu").fit(X[:100], Y[:100], epochs=2, validation_data=(Xv[:50], Yv[:50]),
                                      callbacks=[StopAtOnce()], verbose=False)
    assert h["epoch"] == h["loss"] == h["lr"] == h["val_loss"] == h["val_r2"] == [] and h.last == {}


def test_a_callback_whose_on_train_begin_ran_gets_its_on_train_end_when_a_later_ones_begin_fails(tmp_path):
    """on_train_begin ran before the loop's try: a later callback refusing the run there (a monitor the logs cannot
    hold, a file it cannot open) left the earlier ones' on_train_end uncalled (what they opened, not closed), and a
    writer among them not told the run failed. Each callback whose begin ran gets its end, with trainer.failed; the
    one that raised, and those after it, none."""
    calls = []

    class Opens(gpunn.Callback):
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def on_train_begin(self, trainer):
            calls.append(("begin", self.name))
            if self.fails:
                raise OSError(f"{self.name} cannot open its file")

        def on_train_end(self, trainer):
            calls.append(("end", self.name, trainer.failed))

    X, Y = gpunn.datasets.make("linear", 64, 3, seed=0, device="cpu")
    with pytest.raises(OSError, match="b cannot open its file"):
        gpunn.MLP([3, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False,
                                                      callbacks=[Opens("a"), Opens("b", fails=True), Opens("c")])
    assert calls == [("begin", "a"), ("begin", "b"), ("end", "a", True)]


def test_callbacks_run_users_first_then_checkpoint_writers_then_the_progress_bar(tmp_path):
    from gpunn.training.callbacks import ProgressBar, order_callbacks

    bar, writer, mine = ProgressBar(), gpunn.ModelCheckpoint(tmp_path / "m.npz"), Recorder()
    assert order_callbacks([bar, writer, mine], verbose=False) == [mine, writer, bar]


class KerasEpochs(Callback):
    def on_epoch_end(self, epoch, logs=None):  # Keras's hook: no trainer
        pass


class KerasBatches(Callback):
    def on_batch_end(self, trainer, batch, logs):  # Keras passes logs to its batch hooks; gpunn does not
        pass


class KerasBatchBegin(Callback):
    def on_train_batch_begin(self, batch, logs=None):  # Keras's; gpunn has no such hook
        pass


class TorchState(Callback):
    def state_dict(self):
        return {}, {}

    def load_state_dict(self, state):  # PyTorch's: one dict
        pass


@pytest.mark.parametrize("callback, says", [
    (KerasEpochs(), r"callbacks\[0\]: KerasEpochs.on_epoch_end\(epoch, logs=None\) cannot take the arguments gpunn "
                    r"passes it: on_epoch_end\(trainer, epoch, logs\)"),
    (KerasBatches(), r"KerasBatches.on_batch_end\(trainer, batch, logs\) cannot take .*: on_batch_end\(trainer, batch\)"),
    (KerasBatchBegin(), r"KerasBatchBegin.on_train_batch_begin is no gpunn hook \(Keras's\): gpunn's batch hook is "
                        r"on_batch_end\(trainer, batch\)"),
    # refused when the run starts, not when a resume calls it
    (TorchState(), r"TorchState.load_state_dict\(state\) cannot take the arguments gpunn passes it: "
                   r"load_state_dict\(state, arrays\), as a checkpoint keeps a callback's state: a pair"),
])
def test_a_hook_written_for_keras_is_refused_before_the_first_epoch_naming_gpunns_arguments(data, callback, says):
    """A Keras callback's on_epoch_end(self, epoch, logs=None) failed in epoch 1 with Python's "takes from 2 to 3
    positional arguments but 4 were given"; a batch hook taking logs failed after the first batch; a hook of a name
    gpunn never calls was never called; all without saying how gpunn calls its hooks."""
    X, Y, _, _ = data
    model = MLP([5, 8, 1], device="cpu", seed=0)
    before = model.params.copy()
    with pytest.raises(TypeError, match=says):
        model.fit(X, Y, epochs=1, callbacks=[callback], verbose=False)
    assert numpy.array_equal(model.params, before)  # refused before any step


def test_a_hook_of_any_signature_that_takes_gpunns_arguments_runs(data):
    X, Y, _, _ = data
    seen = []

    class Flexible(Callback):
        def on_epoch_end(self, *args, **kwargs):
            seen.append(len(args))

        def on_batch_end(self, trainer, batch, logs=None):
            seen.append("batch")

    MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=500, callbacks=[Flexible()], verbose=False)
    assert seen == ["batch", "batch", 3]


@pytest.mark.parametrize("name, says", [
    ("predict", r"'predict': fit returns the run's History, as Keras's fit does, not the model, as scikit-learn's "
                r"does; call model.predict on the model"),
    ("history", r"'history': gpunn's History is the dict of per-epoch lists itself \(Keras's history.history\): "
                r"history\['loss'\]$"),
    ("loss", r"'loss': the per-epoch lists are its items, history\['loss'\]$"),
    ("colour", r"'colour'$"),
])
def test_what_another_library_looks_for_on_the_history_is_shown_where_it_is(data, name, says):
    """model.fit(X, Y).predict(X), scikit-learn's chaining, and history.history["loss"], Keras's, said only "'History'
    object has no attribute ..."."""
    X, Y, _, _ = data
    history = MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False)
    with pytest.raises(AttributeError, match=r"^'History' object has no attribute " + says) as caught:
        getattr(history, name)
    # (what a traceback's "Did you mean: 'stopped_early'?" is found by: it was lost for history.stoped_early)
    assert caught.value.name == name and caught.value.obj is history
    assert not hasattr(history, "__deepcopy__") and copy.deepcopy(history) == history


@pytest.mark.parametrize("key, validated, says", [
    ("val_loss", False, r"the history has no val_loss \(this fit had no validation: pass validation_data or "
                        r"validation_fraction\); its keys: epoch, loss, lr, time_s, samples_per_s\"$"),
    ("val_los", True, r"the history has no val_los \(did you mean 'val_loss'\?\); its keys: epoch, .*, val_r2\"$"),
    ("r2", True, r"the history has no r2 \(did you mean 'val_r2'\? the held-out rows' values carry val_\)"),
    ("accuracy", True, r"the history has no accuracy; its keys: epoch, loss, lr"),
])
def test_a_key_the_history_lacks_says_why_and_what_it_holds(data, key, validated, says):
    """history["val_loss"] of a fit without validation data, Keras's habit, said only KeyError: 'val_loss'."""
    X, Y, _, _ = data
    history = MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False,
                                                        validation_fraction=0.2 if validated else None)
    with pytest.raises(KeyError, match=rf"^\"'{key}': " + says):
        history[key]
    with pytest.raises(KeyError) as caught:
        history[0]  # (not a name: Python's own)
    assert caught.value.args == (0,) and history.get(key) is None and key not in history


def test_kerass_stop_training_is_refused_saying_gpunns_stop(data):
    """`trainer.stop_training = True`, Keras's way to end a run (model.stop_training), set an attribute nothing read:
    the run trained on to its last epoch."""
    X, Y, _, _ = data

    class Stopper(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop_training = True

    with pytest.raises(AttributeError, match=r"stop_training is Keras's; a gpunn callback ends the run with "
                                             r"trainer.stop = True"):
        MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=3, callbacks=[Stopper()], verbose=False)


def test_auto_mode_maximises_a_name_that_ends_in_r2_only():
    from gpunn.training.callbacks import monitor_mode

    assert [monitor_mode(name) for name in ("val_r2", "r2", "r2_gap", "val_r2_drop")] == ["max", "max", "min", "min"]


def test_an_unknown_mode_is_refused_when_the_callback_is_made():
    for make in (EarlyStopping, ReduceLROnPlateau, lambda mode: gpunn.ModelCheckpoint("x.npz", mode=mode)):
        with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'maximise'"):
            make(mode="maximise")


def test_monitoring_a_missing_metric_says_what_is_there(data):
    X, Y = data[0][:100], data[1][:100]
    with pytest.raises(ValueError, match=r"'val_loss', which the logs lack \(pass validation_data"):
        MLP([5, 1], device="cpu").fit(X, Y, epochs=2, callbacks=[EarlyStopping(monitor="val_loss")], verbose=False)
    h = MLP([5, 1], device="cpu").fit(X, Y, epochs=3, callbacks=[EarlyStopping()], verbose=False)  # monitors loss
    assert h["epoch"] == [1, 2, 3]



class EpochCounter(Callback):
    def __init__(self):
        self.begun = 0

    def on_epoch_begin(self, trainer, epoch):
        self.begun += 1


class WritesValLoss(Callback):
    """A callback of a user's that computes a val_loss of its own: the loss on some rows, into the logs."""

    def __init__(self, X, Y):
        self.X, self.Y = X, Y

    def on_epoch_end(self, trainer, epoch, logs):
        logs["val_loss"] = trainer.model.loss(self.X, self.Y)


@pytest.mark.parametrize("name", ["r2", "mse", "mae"])
def test_a_callback_monitoring_an_evaluate_name_is_pointed_to_the_logs_validation_name(name):
    """EarlyStopping(monitor="r2") was refused listing val_r2 among what the logs hold, with no hint, as
    ens.best("r2") was until f220bb9: evaluate's and score's names lack the held-out values' val_."""
    X, Y = gpunn.datasets.make("linear", 200, 3, seed=0, device="cpu")
    model = gpunn.MLP([3, 4, 1], device="cpu")
    with pytest.raises(ValueError, match=rf"^EarlyStopping monitors '{name}', which the logs lack \(did you mean "
                                         rf"'val_{name}'\? the held-out rows' values carry val_\); available: "):
        model.fit(X, Y, epochs=2, validation_fraction=0.2, verbose=False, callbacks=[gpunn.EarlyStopping(name)])


def test_a_monitor_no_epoch_can_log_is_refused_before_the_first_epoch(data):
    """EarlyStopping(monitor='val_loss') (ReduceLROnPlateau's, a best-only ModelCheckpoint's, an ensemble's early
    stopping) in a run without validation data was refused only at the end of the first epoch, which may be long;
    now before it, where nothing can log the name: a callback of the user's after the monitor cannot reach its logs."""
    X, Y, Xv, Yv = data
    X, Y = X[:100], Y[:100]
    # (ModelCheckpoint runs after the callbacks of yours, so none of those may be listed with it here)
    for monitor, after in ((EarlyStopping(monitor="val_loss"), [WritesValLoss(Xv, Yv)]),
                           (ReduceLROnPlateau(monitor="val_r2"), [WritesValLoss(Xv, Yv)]),
                           (gpunn.ModelCheckpoint(os.devnull, save_best_only=True, monitor="val_mae"), [])):
        counter = EpochCounter()
        with pytest.raises(ValueError, match=rf"^{type(monitor).__name__} monitors 'val_\w+', which the logs lack "
                           r"\(pass validation_data or validation_fraction to fit\); available: epoch, loss, lr, "
                           r"samples_per_s, time_s, and what a callback of yours listed before it adds$"):
            MLP([5, 1], device="cpu").fit(X, Y, epochs=2, callbacks=[monitor, counter, *after], verbose=False)
        assert counter.begun == 0
    counter = EpochCounter()
    with pytest.raises(ValueError, match=r"^early stopping monitors 'val_loss', which the logs lack \(pass"):
        gpunn.Ensemble([5, 4, 1], n_models=2, device="cpu").fit(X, Y, epochs=2, callbacks=[
            EarlyStopping(monitor="val_loss"), counter], verbose=False)
    assert counter.begun == 0
    # ModelCheckpoint reads its monitor only with save_best_only: without it, no refusal (as before); with it,
    # a callback of yours that logs the name is taken, and where its logs lack it, the error names ModelCheckpoint
    gpunn.MLP([5, 1], device="cpu").fit(X, Y, epochs=1, verbose=False,
                                        callbacks=[gpunn.ModelCheckpoint(os.devnull, monitor="val_mae")])
    best_only = gpunn.ModelCheckpoint(os.devnull, save_best_only=True, monitor="val_loss")
    h = gpunn.MLP([5, 1], device="cpu").fit(X, Y, epochs=2, verbose=False, callbacks=[best_only, WritesValLoss(Xv, Yv)])
    assert h["epoch"] == [1, 2] and best_only.saves >= 2
    with pytest.raises(ValueError, match=r"^ModelCheckpoint monitors 'val_r2', which the logs lack; available: epoch, "
                       r"loss, lr, samples_per_s, time_s, val_loss$"):
        gpunn.MLP([5, 1], device="cpu").fit(X, Y, epochs=2, verbose=False, callbacks=[
            gpunn.ModelCheckpoint(os.devnull, save_best_only=True, monitor="val_r2"), WritesValLoss(Xv, Yv)])


def test_a_monitored_value_a_users_callback_logs_before_it_is_taken(data):
    """A callback listed before EarlyStopping that writes val_loss into the logs itself (Keras' pattern): not refused,
    and early stopping watches its values."""
    X, Y, Xv, Yv = data
    X, Y = X[:100], Y[:100]
    writer = WritesValLoss(Xv, Yv)
    stopping = EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9)  # no epoch improves on the first
    h = MLP([5, 1], device="cpu").fit(X, Y, epochs=5, callbacks=[writer, stopping], verbose=False)
    assert h["epoch"] == [1, 2] and h.stopped_early and len(h["val_loss"]) == 2
    plateau = ReduceLROnPlateau(monitor="val_loss", patience=1, min_delta=1e9, factor=0.5)
    h = MLP([5, 1], device="cpu").fit(X, Y, epochs=3, lr=0.01, callbacks=[writer, plateau], verbose=False)
    assert h["lr"] == pytest.approx([0.01, 0.01, 0.005])


def test_a_callback_from_a_package_whose_name_begins_with_gpunn_may_log_what_a_monitor_reads(data):
    """Only gpunn's own modules (gpunn, gpunn.*) are known to add no logs: a gpunn_extras module is someone else's."""
    X, Y, Xv, Yv = data
    writer = WritesValLoss(Xv, Yv)

    def hook(trainer, epoch, logs):
        WritesValLoss.on_epoch_end(writer, trainer, epoch, logs)

    hook.__module__ = "gpunn_extras.callbacks"
    writer.on_epoch_end = hook
    h = MLP([5, 1], device="cpu").fit(X[:100], Y[:100], epochs=2, verbose=False,
                                      callbacks=[writer, EarlyStopping(monitor="val_loss")])
    assert h["epoch"] == [1, 2] and len(h["val_loss"]) == 2


def test_a_trainer_of_ones_own_without_log_keys_is_not_checked_before_the_first_epoch():
    """check_logged knows what an epoch's logs hold only from gpunn's loop (trainer.log_keys); a trainer of one's
    own that drives the callbacks without it is not refused (its epochs' logs are checked as they come)."""
    stopping = EarlyStopping(monitor="val_loss")
    trainer = types.SimpleNamespace(callbacks=[stopping], validation=None, stop=False)
    stopping.on_train_begin(trainer)
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss', which the logs lack"):
        stopping.on_epoch_end(trainer, 0, {"loss": 1.0})


def test_a_misspelt_monitor_is_named_with_the_metric_meant(data):
    """val_los in a run with validation data: the hint said to pass validation data, which the run had."""
    X, Y = data[0][:100], data[1][:100]
    for callback in (EarlyStopping(monitor="val_los"), ReduceLROnPlateau(monitor="val_r3")):
        with pytest.raises(ValueError, match=r"which the logs lack \(did you mean 'val_(loss|r2)'\?\)") as raised:
            MLP([5, 1], device="cpu").fit(X, Y, epochs=2, callbacks=[callback], validation_fraction=0.2, verbose=False)
        assert "validation_data" not in str(raised.value)


def test_a_monitor_in_other_letter_case_or_shortened_is_named_as_the_logs_have_it():
    """The metric hint matched letter case exactly (VAL_LOSS: nothing), unlike an option's or a config key's."""
    from gpunn.training.callbacks import missing_log_hint

    logs = {"loss": [1.0], "r2": [0.0], "val_loss": [1.0], "val_r2": [0.0]}
    assert missing_log_hint("VAL_LOSS", logs, "validate") == " (did you mean 'val_loss'?)"
    assert missing_log_hint("val", logs, "validate") == " (did you mean 'val_loss' or 'val_r2'?)"
    assert missing_log_hint("learning-rate", logs, "validate") == ""  # (an option's other names are not metrics')
    assert missing_log_hint("val_loss", {"loss": [1.0]}, "validate") == " (validate)"


def test_reduce_lr_on_plateau_scales_the_schedule(data):
    X, Y = data[0][:200], data[1][:200]
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e6, min_lr=0.004)
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=6, lr=0.1, optimizer="sgd",
                                                 schedule=Schedule("step", step_size=2, gamma=0.5), callbacks=[plateau],
                                                 verbose=False)
    schedule = [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    # every epoch after the first is a non-improvement, patience 1: halve after epochs 2, 3, 4...
    # until the plateau would take the rate under min_lr
    scale = [1, 1, 0.5, 0.25, 0.16, 0.16]
    assert h["lr"] == pytest.approx([s * f for s, f in zip(schedule, scale)])
    assert plateau.reductions == 3


def test_reduce_lr_on_plateau_waits_out_its_cooldown_before_counting_again(data):
    """Keras' cooldown: after a reduction, ``cooldown`` epochs in which the patience count stays at zero.
    No epoch improves (min_delta 1e6), patience 1, cooldown 2: reductions after epochs 2, 4 and 6."""
    X, Y = data[0][:200], data[1][:200]
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=2, min_delta=1e6)
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=7, lr=0.1, optimizer="sgd", callbacks=[plateau],
                                                 verbose=False)
    assert h["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])
    assert plateau.reductions == 3


def test_reduce_lr_on_plateau_counts_its_patience_afresh_after_each_reduction(data):
    """Without a cooldown a reduction still restarts the count: no epoch improves (min_delta 1e6), patience 2,
    so a reduction after every second epoch without improvement (epochs 3 and 5), not after every epoch once
    the first has come."""
    X, Y = data[0][:200], data[1][:200]
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=1e6)
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=6, lr=0.1, optimizer="sgd", callbacks=[plateau],
                                                 verbose=False)
    assert h["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert plateau.reductions == 2


def test_a_plateau_reduction_before_a_schedules_zero_rate_is_taken_and_its_state_round_trips(data):
    """The cosine schedule's rate after its last epoch is 0: min_lr cannot bound a reduction of it (min_lr / 0), so
    the factor applies. The state a checkpoint keeps (best, wait, cooldown left, reductions) loads back whole."""
    X, Y = data[0][:200], data[1][:200]
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e6, cooldown=3, min_lr=1e-4)
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, lr=0.1, schedule="cosine", callbacks=[plateau],
                                                 verbose=False)
    assert h["epoch"] == [1, 2] and plateau.reductions == 1 and plateau.cooldown_left == 3
    again = ReduceLROnPlateau(**plateau.get_config())
    again.load_state_dict(*plateau.state_dict())
    assert again.state_dict() == plateau.state_dict()


def test_in_max_mode_an_epoch_improves_only_by_more_than_min_delta(data):
    """mode 'max' (an R², a score): an epoch improves when it is above the best by more than min_delta. With
    min_delta 0.5 after a best of 1.0, neither a fall to 0.8 nor a rise to 1.2 improves: epoch 1 stays the best.
    mode 'auto' is 'max' for val_r2."""
    X, Y = data[0][:200], data[1][:200]

    class Score(Callback):
        def __init__(self, name, values):
            self.name, self.values = name, values

        def on_epoch_end(self, trainer, epoch, logs):
            logs[self.name] = self.values[epoch]

    h = MLP([5, 4, 1], device="cpu", seed=0).fit(
        X, Y, epochs=3, verbose=False,
        callbacks=[Score("score", [1.0, 0.8, 1.2]), EarlyStopping(monitor="score", mode="max", min_delta=0.5, patience=5)])
    assert h["epoch"] == [1, 2, 3] and h.best_epoch == 1
    # mode 'auto' maximises a name that ends in r2, as it minimises the others
    h = MLP([5, 4, 1], device="cpu", seed=0).fit(
        X, Y, epochs=3, verbose=False, callbacks=[Score("val_r2", [0.5, 0.9, 0.7]), EarlyStopping(monitor="val_r2")])
    assert h.best_epoch == 2


def test_divergence_does_not_overwrite_the_last_good_checkpoint(data, tmp_path):
    X, Y = data[0][:200], data[1][:200]
    path = tmp_path / "c.npz"
    model = MLP([5, 8, 1], device="cpu", seed=0)
    model.fit(X, Y, epochs=1, callbacks=[gpunn.ModelCheckpoint(path)], verbose=False)
    good = path.read_bytes()
    with pytest.raises(TrainingDiverged):  # in its first epoch: 10 steps of 20 rows reach NaN
        model.fit(X, Y * 1e30, epochs=3, batch_size=20, optimizer="sgd", lr=10.0,
                  callbacks=[gpunn.ModelCheckpoint(path)], verbose=False)
    assert path.read_bytes() == good


# ---- Ctrl-C --------------------------------------------------------------------------------------
SIGINT_RUNNER = textwrap.dedent("""
    import json, sys, time
    import numpy
    from gpunn import MLP, Callback, ModelCheckpoint, datasets

    class Announce(Callback):  # mid-epoch 2, until the Ctrl-C has reached the fit: where it lands is no race
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 10:
                print("epoch-1-done", flush=True)
                while not trainer.interrupt_asked():
                    time.sleep(0.01)

    X, Y = datasets.make("teacher", 2000, 16, seed=0, device="cpu")
    model = MLP([16, 32, 32, 1], device="cpu", seed=0)
    history = model.fit(X, Y, epochs=10000, batch_size=32, callbacks=[Announce(), ModelCheckpoint(sys.argv[1])],
                        verbose=False)
    print(json.dumps({"interrupted": history.interrupted, "epochs": history["epoch"],
                      "finite": bool(numpy.isfinite(model.params).all()),
                      "params_sum": float(model.params.astype("float64").sum())}), flush=True)
""")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_a_checkpoint_and_the_history(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(SIGINT_RUNNER)
    path = tmp_path / "run.npz"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), GPUNN_DEVICE="cpu")
    proc = subprocess.Popen([sys.executable, str(script), str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    waiting.read_until(proc, "epoch-1-done", 600)  # a ceiling, for a hang: 5 s loaded, over 120 s starved
    proc.send_signal(signal.SIGINT)  # lands mid-epoch 2, after its batch 10 (an epoch is 63 batches)
    out, err = waiting.communicate(proc, 60)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["interrupted"] and result["finite"] and result["epochs"][0] == 1
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert ckpt.training["interrupted"]
    assert ckpt.training["history"]["epoch"] == result["epochs"]
    assert ckpt.epoch == len(result["epochs"]) and ckpt.training["position"]["batch"] == 11  # stopped mid-epoch
    assert float(ckpt.model.params.astype("float64").sum()) == result["params_sum"]  # the model as returned


def test_the_sigint_handler_is_installed_only_during_fit(data):
    X, Y = data[0][:100], data[1][:100]
    seen = []

    class Peek(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    MLP([5, 1], device="cpu").fit(X, Y, epochs=1, callbacks=[Peek()], verbose=False)
    assert seen[0] is not before and signal.getsignal(signal.SIGINT) is before
    MLP([5, 1], device="cpu").fit(X, Y, epochs=1, callbacks=[Peek()], verbose=False, handle_interrupt=False)
    assert seen[1] is before

    def in_thread():  # signal.signal would raise outside the main thread: fit must not try
        MLP([5, 1], device="cpu").fit(X, Y, epochs=1, callbacks=[Peek()], verbose=False)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen[2] is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_sigint_during_fit_in_process_returns_the_history(data, signum, sends_itself_sigint):
    """Ctrl-C, or SIGTERM (timeout, Slurm at the end of a job's time, docker stop) in a program that
    handles SIGTERM itself (as gpunn's command line does): stop after the batch and return."""
    X, Y = data[0], data[1]
    handled = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))
    try:
        _interrupted_fit(X, Y, signum)
        assert signal.getsignal(signal.SIGTERM) is not before and not handled  # the program's own, not called
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupted_fit(X, Y, signum):
    before = signal.getsignal(signal.SIGTERM)

    class PressCtrlC(Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 3:
                os.kill(os.getpid(), signum)

    model = MLP([5, 8, 1], device="cpu", seed=0)
    h = model.fit(X, Y, epochs=5, batch_size=100, callbacks=[PressCtrlC()], verbose=False)
    assert h.interrupted and h["epoch"] == [1]
    assert numpy.isfinite(model.params).all()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_ctrl_c_raises_at_once_and_early_stopping_leaves_the_weights_reached(data):
    """The first Ctrl-C asks the fit to stop after its batch; a second one before it stopped raises
    KeyboardInterrupt at once. A run that ends by an exception other than TrainingDiverged keeps the weights it
    had: EarlyStopping puts the best epoch's back only when a run finishes, stops early or diverges."""
    X, Y = data[0], data[1]

    class PressCtrlCTwice(Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 3:
                self.reached = trainer.model.params.copy()
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    press, before = PressCtrlCTwice(), signal.getsignal(signal.SIGINT)
    model = MLP([5, 8, 1], device="cpu", seed=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=5, batch_size=100, callbacks=[press, EarlyStopping(patience=5)], verbose=False)
    numpy.testing.assert_array_equal(model.params, press.reached)  # not epoch 1's, the best so far
    assert signal.getsignal(signal.SIGINT) is before


def test_an_interrupted_verbose_fit_says_where_it_stopped_and_what_the_model_holds(data, tmp_path, capsys,
                                                                                     interrupt_at):
    """fit(verbose=True) stopped by Ctrl-C (trainer.interrupt() here) returned its history, and its progress just
    stopped, where gpunn train says where the run stopped: one line now says the position and what the model holds
    (the weights of that last step: checked) and the checkpoint it wrote. Without verbose, nothing is said."""
    X, Y = data[0], data[1]

    class LastStep(Callback):
        def on_batch_end(self, trainer, batch):
            self.params = trainer.model.params.copy()

    last, path = LastStep(), tmp_path / "run.npz"
    model = MLP([5, 8, 1], device="cpu", seed=0)
    h = model.fit(X, Y, epochs=3, batch_size=100, verbose=2,
                  callbacks=[last, interrupt_at(1, 2), gpunn.ModelCheckpoint(path)])
    said = capsys.readouterr().err.splitlines()
    assert h.interrupted and h["epoch"] == [1]
    assert said[-1] == (f"train [cpu]: interrupted after 1 of 3 epochs and 3 of 10 batches of epoch 2: the model "
                        f"holds the weights of that last step; checkpoint in {path} (resume: "
                        f"gpunn.load_checkpoint({str(path)!r}).resume(X, Y)); fit returns the history of the "
                        "complete epochs (history.interrupted is True)")
    assert len([line for line in said if "interrupted" in line]) == 1
    numpy.testing.assert_array_equal(model.params, last.params)
    assert gpunn.load_checkpoint(path).state.batch == 3
    assert gpunn.load_checkpoint(path).resume(X, Y, verbose=False)["epoch"] == [1, 2, 3]  # (as said)
    w = numpy.linspace(0.5, 2, len(X))  # the call gpunn info gives: with the weights, or the source made again
    MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=100, verbose=2, sample_weight=w,
                                             callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)])
    assert f"gpunn.load_checkpoint({str(path)!r}).resume(X, Y, sample_weight=w)); fit returns" in \
        capsys.readouterr().err.splitlines()[-1]
    numpy.save(tmp_path / "X.npy", X), numpy.save(tmp_path / "Y.npy", Y)
    with gpunn.data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", chunk_rows=100) as source:
        MLP([5, 8, 1], device="cpu", seed=0).fit(source, epochs=3, batch_size=100, verbose=2,
                                                 callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)])
    assert f"gpunn.load_checkpoint({str(path)!r}).resume(source)); fit returns" in capsys.readouterr().err
    MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=100, verbose=False,
                                             callbacks=[interrupt_at(1, 2)])
    assert capsys.readouterr().err == ""
    ens = gpunn.Ensemble([5, 8, 1], 2, device="cpu", seed=0)  # an Ensemble's progress says it too
    assert ens.fit(X, Y, epochs=3, batch_size=100, verbose=2, callbacks=[interrupt_at(0, 4)]).interrupted
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "ensemble of 2 [cpu]: interrupted after 0 of 3 epochs and 5 of 10 batches of epoch 1: the model holds")


def test_an_interrupted_fit_on_a_source_that_cannot_resume_mid_epoch_says_its_checkpoint_was_left(
        data, tmp_path, capsys, interrupt_at):
    """ModelCheckpoint leaves its file at an epoch's end where a gpunn.data.iterable run stops part-way through one
    (warning so); the interrupted line said "checkpoint in PATH" after that warning, as if the file held the stop."""
    X, Y = data[0], data[1]
    path = tmp_path / "run.npz"
    source = gpunn.data.iterable(lambda epoch: ((X[i:i + 250], Y[i:i + 250]) for i in range(0, len(X), 250)),
                                 rows=len(X), n_features=X.shape[1], n_outputs=Y.shape[1])
    with pytest.warns(RuntimeWarning, match="cannot resume part-way through an epoch"):
        MLP([5, 8, 1], device="cpu", seed=0).fit(source, epochs=3, batch_size=100, verbose=2,
                                                 callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)])
    said = capsys.readouterr().err.splitlines()[-1]
    assert f"; {path} left as it was (the end of the last epoch it was written at, if any" in said
    assert "checkpoint in" not in said and gpunn.load_checkpoint(path).state.batch == 0


def test_a_fit_on_a_source_that_cannot_resume_mid_epoch_that_ends_whole_writes_its_last_epoch(data, tmp_path):
    """The file is left as it was only where such a run stopped part-way through an epoch: one that trains its epochs
    writes its end, unwarned (audit37b k9: it was left at epoch 2 of 3 with every=2, and the warning said it stopped
    part-way)."""
    X, Y = data[0], data[1]
    path = tmp_path / "run.npz"
    source = gpunn.data.iterable(lambda epoch: ((X[i:i + 250], Y[i:i + 250]) for i in range(0, len(X), 250)),
                                 rows=len(X), n_features=X.shape[1], n_outputs=Y.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLP([5, 8, 1], device="cpu", seed=0).fit(source, epochs=3, batch_size=100, verbose=False,
                                                 callbacks=[gpunn.ModelCheckpoint(path, every=2)])
    assert gpunn.load_checkpoint(path).state.epoch == 3


def test_a_keyboard_interrupt_in_a_verbose_fit_says_where_it_landed_and_goes_on_up(data, capsys):
    """A KeyboardInterrupt (a second Ctrl-C, one with handle_interrupt=False, or raised by a callback as here) ends
    fit where it lands, inside a step's update too: the line says the steps that ended and that the next may have
    run in part or whole (here whole: it was raised after batch 3's step), then the KeyboardInterrupt goes on."""
    X, Y = data[0], data[1]

    class RaisesAfterAStep(Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 2:
                raise KeyboardInterrupt

    model = MLP([5, 8, 1], device="cpu", seed=0)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=3, batch_size=100, verbose=2, callbacks=[RaisesAfterAStep()])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "train [cpu]: KeyboardInterrupt after 1 of 3 epochs and 2 of 10 batches of epoch 2: the model holds the "
        "weights of those steps, or of part or all of the next one where it landed during that step")


def test_a_run_ended_by_a_callbacks_error_keeps_the_weights_it_reached_not_an_earlier_best_epochs(data):
    """An error other than TrainingDiverged ends the run with the weights it had, even where EarlyStopping's best
    epoch is not the last one that ended (epoch 1 of 2 here): only a run that finishes, stops early or diverges
    gets the best epoch's weights back."""
    X, Y = data[0], data[1]

    class FailsInEpoch3(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["made_up"] = float(epoch)  # rises every epoch: epoch 1 stays EarlyStopping's best

        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 2 and batch == 1:
                self.reached = trainer.model.params.copy()
                raise RuntimeError("a callback's own error")

    fails, stopping = FailsInEpoch3(), EarlyStopping("made_up", patience=5)
    model = MLP([5, 8, 1], device="cpu", seed=0)
    with pytest.raises(RuntimeError, match="a callback's own error"):
        model.fit(X, Y, epochs=5, batch_size=100, callbacks=[fails, stopping], verbose=False)
    assert stopping.best_epoch == 1
    numpy.testing.assert_array_equal(model.params, fails.reached)


def test_an_interrupted_run_keeps_the_weights_it_reached_under_early_stopping(data, interrupt_at):
    """Interrupted (Ctrl-C, trainer.interrupt()), a run keeps the weights of its last step, which its checkpoint
    resumes from exactly; EarlyStopping puts the best epoch's back only where a run ends (here epoch 1 was best)."""
    X, Y = data[0], data[1]

    class Score(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [1.0, 5.0, 4.0][epoch]

    class LastStep(Callback):
        def on_batch_end(self, trainer, batch):
            self.params = trainer.model.params.copy()

    last = LastStep()
    model = MLP([5, 8, 1], device="cpu", seed=0)
    h = model.fit(X, Y, epochs=3, batch_size=100, verbose=False,
                  callbacks=[Score(), EarlyStopping(monitor="score", patience=5), last, interrupt_at(2, 2)])
    assert h.interrupted and h["epoch"] == [1, 2] and h["score"] == [1.0, 5.0]
    numpy.testing.assert_array_equal(model.params, last.params)


def test_an_interrupt_at_an_epochs_end_stops_before_the_next_epochs_first_batch(data):
    """A Ctrl-C that lands while an epoch ends (its validation, a callback's on_epoch_end) stops the run at that
    epoch's end: no batch of the next epoch is trained, so its checkpoint is at the epoch boundary."""
    X, Y = data[0], data[1]

    class InterruptAtEpochEnd(Callback):
        def __init__(self):
            self.batches_after = []

        def on_batch_end(self, trainer, batch):
            if trainer.interrupt_asked():
                self.batches_after.append((trainer.epoch, batch))

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                trainer.interrupt()

    stop = InterruptAtEpochEnd()
    h = MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=5, batch_size=100, callbacks=[stop], verbose=False)
    assert h.interrupted and h["epoch"] == [1, 2] and stop.batches_after == []


def test_a_ctrl_c_during_a_fit_inside_another_fit_stops_both(data, sends_itself_sigint):
    """A callback that fits a second model (a probe each epoch): the Ctrl-C that lands in the inner fit stops the
    inner one and then the outer one after its batch; the outer fit used to train on to its last epoch."""
    X, Y = data[0], data[1]
    inner = []

    class Probe(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            class PressCtrlC(Callback):
                def on_batch_end(self, trainer, batch):
                    if epoch == 1 and batch == 2:
                        os.kill(os.getpid(), signal.SIGINT)

            probe = MLP([5, 4, 1], device="cpu", seed=1)
            inner.append(probe.fit(X, Y, epochs=2, batch_size=100, callbacks=[PressCtrlC()], verbose=False))

    before = signal.getsignal(signal.SIGINT)
    h = MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=5, batch_size=100, callbacks=[Probe()], verbose=False)
    assert inner[1].interrupted and not inner[0].interrupted
    assert h.interrupted and h["epoch"] == [1, 2] and len(inner) == 2  # stopped at the end of its epoch 2
    assert signal.getsignal(signal.SIGINT) is before


# how Python reports a SIGTERM handler set before it started, outside Python (a C program embedding it): None
OUTSIDE_PYTHON = "signal.getsignal = (lambda get: lambda s: None if s == signal.SIGTERM else get(s))(signal.getsignal)"


@pytest.mark.parametrize("handler_before", ["default", "outside Python"])
def test_sigterm_during_fit_ends_the_process_after_the_checkpoint(tmp_path, handler_before):
    """A script under `timeout` or Slurm (no SIGTERM handler of its own): fit stops after the batch, writes
    its checkpoint, then the process ends by SIGTERM as it would have at once. It used to return, so the
    script ran on (its next fit, its next benchmark) past the time it was given. A handler set outside Python
    (getsignal's None) cannot be put back from Python: the default action is restored, and SIGTERM passed on."""
    script = textwrap.dedent(f"""
        import os, signal, numpy, gpunn
        {OUTSIDE_PYTHON if handler_before == "outside Python" else ""}

        class Term(gpunn.Callback):
            def on_batch_end(self, trainer, batch):
                if trainer.epoch == 1 and batch == 3:
                    os.kill(os.getpid(), signal.SIGTERM)

        rng = numpy.random.default_rng(0)
        X, Y = rng.standard_normal((1000, 5)), rng.standard_normal((1000, 1))
        model = gpunn.MLP([5, 8, 1], device="cpu", seed=0)
        print("the script's log before its fit")  # stdout to a file or pipe (Slurm's): held in Python's buffer
        model.fit(X, Y, epochs=5, batch_size=100, verbose=False,
                  callbacks=[Term(), gpunn.ModelCheckpoint({str(tmp_path / "run.npz")!r})])
        print("fit returned")
    """)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, "PYTHONPATH": REPO}
    done = waiting.run([sys.executable, "-c", script], env=env, timeout=120)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "fit returned" not in done.stdout
    assert "the script's log before its fit" in done.stdout  # flushed before the process ends
    ckpt = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    assert (ckpt.epoch, ckpt.training["position"]["batch"]) == (1, 4)  # the batch reached, resumable


def test_evaluate_sums_in_float64_and_scores_a_constant_target_as_scikit_learn():
    """A float32 model that predicts 0: squared errors of 1e8 and 1000 x 1, exact in float32, sum to
    100001000 in float64 (a float32 running sum loses the ones). A constant target has R² 1 when predicted
    exactly and 0 otherwise (scikit-learn's r2_score)."""
    from sklearn.metrics import r2_score

    model = MLP([2, 1], device="cpu", seed=0)
    model.params[...] = 0
    X, Y = numpy.ones((1001, 2), numpy.float32), numpy.ones((1001, 1), numpy.float32)
    Y[0] = 1e4
    assert model.evaluate(X, Y)["loss"] * 1001 == pytest.approx(100_001_000, rel=1e-12)
    model.biases[0][...] = 3.0
    for value, r2 in ((3.0, 1.0), (4.0, 0.0)):
        target = numpy.full((1001, 1), value, numpy.float32)
        with warnings.catch_warnings():  # no NumPy "divide by zero" or "invalid value" of the 0 sum of squares
            warnings.simplefilter("error")  # (audit38b m08: 1 - ss_res / ss_tot not kept from dividing by 0)
            scores = model.evaluate(X, target)["r2"], metrics.r2(numpy, model.predict(X), target)
        assert scores == (r2, r2) and r2 == r2_score(target, model.predict(X))


def test_evaluate_gives_what_validation_logs_on_any_rows(data):
    X, Y, Xv, Yv = data
    Y2, Yv2 = numpy.hstack([Y, 2 * Y]), numpy.hstack([Yv, 2 * Yv])  # two outputs: loss = 2 x mse
    model = MLP([5, 16, 2], device="cpu", seed=0, dtype="float64")
    history = model.fit(X, Y2, epochs=2, validation_data=(Xv, Yv2), verbose=False)
    result = model.evaluate(Xv, Yv2)
    assert set(result) == {"loss", "mse", "mae", "r2"}
    assert result["loss"] == history["val_loss"][-1] and result["r2"] == history["val_r2"][-1]
    assert result["loss"] == pytest.approx(2 * result["mse"]) == pytest.approx(model.loss(Xv, Yv2))
    P = model.predict(Xv)
    assert result["mae"] == pytest.approx(numpy.abs(P - Yv2).mean()) and result["r2"] == model.score(Xv, Yv2)
    ens = gpunn.Ensemble([5, 16, 2], 3, device="cpu", seed=0, dtype="float64")
    ens_history = ens.fit(X, Y2, epochs=2, validation_data=(Xv, Yv2), verbose=False)
    assert ens.evaluate(Xv, Yv2)["loss"] == ens_history["val_loss"][-1]  # lists of K


@pytest.mark.parametrize("ensemble", [False, True])
def test_evaluate_of_a_standardized_model_is_in_the_targets_units_as_loss_and_predict(tmp_path, ensemble):
    """A model fit on a source made with standardize=True takes raw X and Y everywhere, and evaluate now answers in
    Y's units as loss, predict and score do: its loss is loss()'s, its mse and mae those of predict's errors
    (mut12e's find: evaluate reported the standardized units training logs, so its mse was the targets' variance
    times smaller than loss()'s, on the same rows). The history keeps training's units: on the validation rows its
    val_mse is evaluate's mse over the targets' variance, and its val_r2 evaluate's r2."""
    from sklearn.metrics import r2_score

    rng = numpy.random.default_rng(1)
    X = rng.standard_normal((400, 4))
    Y = 500 + 30 * (numpy.sin(X[:, :1]) + 0.1 * X[:, 1:2])
    Xv, Yv = X[300:], Y[300:]
    numpy.save(tmp_path / "x.npy", X[:300])
    numpy.save(tmp_path / "y.npy", Y[:300])
    model = (gpunn.Ensemble([4, 16, 1], 2, seed=0, device="cpu", dtype="float64") if ensemble
             else MLP([4, 16, 1], seed=0, device="cpu", dtype="float64"))
    history = model.fit(gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", standardize=True, chunk_rows=50),
                        validation_data=(Xv, Yv), epochs=3, batch_size=32, verbose=False)
    result, P = model.evaluate(Xv, Yv), model.predict(Xv)
    numpy.testing.assert_allclose(result["loss"], model.loss(Xv, Yv), rtol=1e-12)
    numpy.testing.assert_allclose(result["mse"], ((P - Yv) ** 2).mean(axis=(-2, -1)), rtol=1e-12)
    numpy.testing.assert_allclose(result["mae"], numpy.abs(P - Yv).mean(axis=(-2, -1)), rtol=1e-12)
    numpy.testing.assert_allclose(result["r2"], [r2_score(Yv, p) for p in P] if ensemble else r2_score(Yv, P),
                                  rtol=1e-9)
    numpy.testing.assert_allclose(result["r2"], model.score(Xv, Yv), rtol=0)
    variance = float(model.standardizer.y_scale[0]) ** 2  # of the training targets, the history's unit
    assert variance > 100
    numpy.testing.assert_allclose(numpy.multiply(history["val_mse"][-1], variance), result["mse"], rtol=1e-9)
    numpy.testing.assert_allclose(history["val_r2"][-1], result["r2"], rtol=1e-9)


def test_evaluate_in_chunks_of_rows_is_the_whole_pass(data, monkeypatch):
    """Validation and evaluate take PREDICT_CHUNK_ROWS rows at a time (65,536): cut into chunks of 7 rows, the 500
    rows give the metrics of one pass (mut12m's R10 and R16: a row skipped after each chunk, or the rows counted
    as the last chunk's, passed every test, whose validation sets are one chunk)."""
    from gpunn import model as model_module

    X, Y, Xv, Yv = data
    model = MLP([5, 16, 2], device="cpu", seed=0, dtype="float64")
    Yv2 = numpy.hstack([Yv, 2 * Yv])
    whole = model.evaluate(Xv, Yv2)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", 7)
    chunked = model.evaluate(Xv, Yv2)
    assert chunked == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize("stop", ["interrupt", "KeyboardInterrupt", "error"])
def test_a_run_stopped_part_way_through_an_epoch_has_closed_its_batches(stop, interrupt_at):
    """fit stopped mid-epoch (interrupt(), as Ctrl-C or a callback asks; an error or a KeyboardInterrupt raised in
    a step or a callback) has closed the pass over the source it was reading (a generator's finally has run: its
    files, reader threads and buffers freed) before it returns or raises, also while the error is held. A guard: it
    holds on main, as the loop drops its only reference; a loop that kept the pass in a local would leave it open
    for as long as the error's traceback is kept (in a notebook, until the next error)."""
    closed = []

    def pieces(epoch):
        try:
            for i in range(6):
                yield numpy.full((20, 3), float(i)), numpy.full((20, 1), float(i))
        finally:
            closed.append(epoch)

    class Raise(Callback):
        def on_batch_end(self, trainer, batch):
            if batch == 1:
                raise KeyboardInterrupt if stop == "KeyboardInterrupt" else RuntimeError("a step failed")

    source = gpunn.data.iterable(pieces, rows=120, n_features=3, n_outputs=1)
    callback = interrupt_at(0, 1) if stop == "interrupt" else Raise()
    fit = dict(epochs=2, batch_size=20, verbose=False, callbacks=[callback])
    if stop == "interrupt":
        assert MLP([3, 4, 1], device="cpu", seed=0).fit(source, **fit).interrupted
    else:
        with pytest.raises(KeyboardInterrupt if stop == "KeyboardInterrupt" else RuntimeError) as caught:
            MLP([3, 4, 1], device="cpu", seed=0).fit(source, **fit)
        assert caught.value is not None  # (the error and its traceback held here)
    assert closed == [0]


def test_a_keyboard_interrupt_in_an_epochs_first_step_or_in_its_validation_is_said_where_it_landed(data, capsys,
                                                                                                 monkeypatch):
    """The interrupted line counts the steps that ended in the epoch it landed in: none where it landed in the
    first step of epoch 2 (not epoch 1's ten), and all of epoch 2 where it landed in its pass over the held-out
    rows (said as the end of that epoch)."""
    X, Y = data[0], data[1]
    step, steps = MLP.train_step_and_update, []

    def ctrl_c_in_the_eleventh_step(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 11:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(MLP, "train_step_and_update", ctrl_c_in_the_eleventh_step)
        with pytest.raises(KeyboardInterrupt):
            MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=100, verbose=2)
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "train [cpu]: KeyboardInterrupt after 1 of 3 epochs: the model holds")

    class CtrlCInTheSecondValidation(Callback):
        def on_validation_begin(self, trainer, epoch):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=80, verbose=2, validation_fraction=0.2,
                                                 callbacks=[CtrlCInTheSecondValidation()])
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "train [cpu]: KeyboardInterrupt after 2 of 3 epochs: the model holds")


def test_a_keyboard_interrupt_before_a_resumed_runs_first_step_counts_the_batches_it_resumed_after(
        data, tmp_path, capsys, monkeypatch, interrupt_at):
    X, Y = data[0], data[1]
    path = tmp_path / "run.npz"
    MLP([5, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=100, verbose=False,
                                             callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)])

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MLP, "train_step_and_update", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=2)
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "train [cpu]: KeyboardInterrupt after 1 of 3 epochs and 3 of 10 batches of epoch 2: the model holds")

