"""Checkpoints: exact resumption, atomic writes, and refusal of anything that is not a valid checkpoint."""
import errno
import gc
import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zipfile

import numpy
import pytest
import waiting
from checkpoint_edits import rewrite_meta
from hypothesis import HealthCheck, example, given, settings, strategies as st

import gpunn
from gpunn import MLP, CheckpointError, EarlyStopping, ReduceLROnPlateau, datasets
from gpunn import checkpoint as gio
from gpunn import atomic
from gpunn.checkpoint import format as checkpoint_format

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = re.escape(__name__)  # the module of this file's callback classes, as a resume's warnings name them


@pytest.fixture(scope="module")
def data():
    X, Y = datasets.make("teacher", 1200, 6, n_outputs=2, noise=0.1, seed=3, device="cpu")
    return X, Y


FIT = dict(epochs=7, batch_size=100, optimizer="adam", lr=5e-3, schedule="cosine", validation_fraction=0.2,
           verbose=False)


def _no_timing(history):
    return {k: v for k, v in history.items() if k not in ("time_s", "samples_per_s")}


@pytest.mark.parametrize("stop_at", [(2, 4), (3, 9)], ids=["mid-epoch", "last-batch-of-epoch"])
def test_interrupted_and_resumed_run_is_bit_identical(data, tmp_path, stop_at, interrupt_at):
    X, Y = data
    # reduces after epochs 2, 4 and 6, cooling down in between: exercises lr_scale and the cooldown count,
    # which the mid-epoch stop catches part-way
    plateau = dict(factor=0.5, patience=0, min_delta=10.0, cooldown=2)
    reference = MLP([6, 16, 16, 2], activation="tanh", device="cpu", seed=1)
    ref_hist = reference.fit(X, Y, callbacks=[ReduceLROnPlateau(**plateau), EarlyStopping(patience=50)], **FIT)

    path = tmp_path / "run.npz"
    model = MLP([6, 16, 16, 2], activation="tanh", device="cpu", seed=1)
    hist = model.fit(X, Y, callbacks=[ReduceLROnPlateau(**plateau), interrupt_at(*stop_at), EarlyStopping(patience=50),
                                      gpunn.ModelCheckpoint(path)], **FIT)
    assert hist.interrupted and len(hist["epoch"]) == stop_at[0] + (stop_at[1] == 9)

    ckpt = gpunn.load_checkpoint(path, device="cpu")
    numpy.testing.assert_array_equal(ckpt.model.params, model.params)  # the checkpoint is the interrupted state
    resumed = ckpt.resume(X, Y, verbose=False)
    assert not resumed.interrupted
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    for name in ("m", "v"):
        numpy.testing.assert_array_equal(ckpt.optimizer.state[name], reference.optimizer.state[name])
    assert ckpt.optimizer.steps == reference.optimizer.steps
    assert _no_timing(resumed) == _no_timing(ref_hist)
    assert resumed["lr"][-1] < resumed["lr"][0] * 0.5 ** 5  # the plateau scale survived the checkpoint
    # divergence is still judged against the run's first batch, not the first after the resume
    assert ckpt.state.reference_loss is not None
    assert gpunn.load_checkpoint(path).state.reference_loss == ckpt.state.reference_loss


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_resume_given_its_runs_own_fit_options_goes_on_as_without_them_and_another_value_is_refused(
        data, tmp_path, interrupt_at, kind):
    """resume(X, Y, **fit_options), a script passing its fit's options again (Keras's habit, fit's keywords kept in
    a dict), was refused for each one, even at the run's own value, with "to train on with another, fit the loaded
    model: ... a new run whose epochs count from 1"; gpunn train --resume takes an option that resolves to the
    recorded one. Those at the run's value are now taken (the checkpoint's settings go on); another is refused."""
    X, Y = data
    make = (lambda: MLP([6, 8, 2], device="cpu", seed=1)) if kind == "MLP" else (
        lambda: gpunn.Ensemble([6, 8, 2], 2, device="cpu", seed=1))
    options = dict(FIT, seed=4, shuffle=True)  # batch_size 100, adam, lr 5e-3, cosine, validation_fraction 0.2
    path = tmp_path / "run.npz"
    make().fit(X, Y, callbacks=[interrupt_at(2, 4), gpunn.ModelCheckpoint(path)], **options)
    again = dict(options, schedule=gpunn.Schedule("cosine"), optimizer="Adam")
    if kind == "Ensemble":  # an ensemble's optimizer and rates are per member: refused, as before
        del again["optimizer"], again["lr"]
    passed = gpunn.load_checkpoint(path, device="cpu")
    with_them = passed.resume(X, Y, **again)
    without = gpunn.load_checkpoint(path, device="cpu")
    assert _no_timing(with_them) == _no_timing(without.resume(X, Y, verbose=False))
    numpy.testing.assert_array_equal(passed.model.params, without.model.params)
    assert passed.state.epoch == 2 and with_them["epoch"][-1] == 7
    for key, value in dict(batch_size=50, seed=5, shuffle=False, validation_fraction=0.25, schedule="step",
                           batch_size_float=100.0, seed_float=4.0, schedule_other=gpunn.Schedule("cosine", min_factor=0.1),
                           **({"lr": 1e-3, "optimizer": "sgd"} if kind == "MLP" else {"lr": 5e-3, "optimizer": "adam"})
                           ).items():
        key = key.removesuffix("_float").removesuffix("_other")  # the run's value as a float, which fit refuses too;
        # the run's schedule with another option; an Ensemble's rate and optimizer, per member, even at the run's
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}' \("):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, **{key: value})



@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_resume_takes_its_runs_own_shuffle_and_validation_fraction_in_every_form_fit_takes_them(
        data, tmp_path, interrupt_at, kind):
    """fit takes shuffle=numpy.True_, validation_fraction=numpy.float32(0.2) (recorded as 0.2), and None or 0 for no
    hold-out; given again to resume, each is the run's own and is taken as the plain value is (they were refused as
    another value); another share, or the other flag, is still refused."""
    X, Y = data
    make = (lambda: MLP([6, 8, 2], device="cpu", seed=1)) if kind == "MLP" else (
        lambda: gpunn.Ensemble([6, 8, 2], 2, device="cpu", seed=1))
    for n, (fraction, again) in enumerate([(0.2, numpy.float32(0.2)), (None, None), (None, 0.0)]):
        path = tmp_path / f"run{n}.npz"
        make().fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)],
                   **dict(FIT, epochs=3, validation_fraction=fraction))
        given = gpunn.load_checkpoint(path, device="cpu")
        history = given.resume(X, Y, verbose=False, shuffle=numpy.bool_(True), validation_fraction=again)
        plain = gpunn.load_checkpoint(path, device="cpu")
        assert _no_timing(history) == _no_timing(plain.resume(X, Y, verbose=False))
        numpy.testing.assert_array_equal(given.model.params, plain.model.params)
    for key, value in (("validation_fraction", 0.1), ("shuffle", numpy.bool_(False))):
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}' \("):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, **{key: value})


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
def test_a_resume_takes_fits_none_where_it_is_the_runs_own_and_refuses_a_seed_of_none_the_run_did_not_have(
        data, tmp_path, interrupt_at, kind):
    """fit's defaults written out (seed=None, lr=None, optimizer=None, schedule=None, and an Ensemble's
    weight_decay=None ...), a script passing its fit's options again, were refused by resume as other values. Where
    None resolves to the run's (its seed the model's, adam, constant) or keeps the optimizer's own, the resume goes
    on as without them; seed=None for a run of another seed, optimizer=None for an sgd run, are still refused."""
    X, Y = data
    make = (lambda: MLP([6, 8, 2], device="cpu", seed=1)) if kind == "MLP" else (
        lambda: gpunn.Ensemble([6, 8, 2], 2, device="cpu", seed=1))
    defaults = dict(seed=None, lr=None, schedule=None)
    defaults.update(optimizer=None) if kind == "MLP" else defaults.update(
        weight_decay=None, momentum=None, beta1=None, beta2=None)
    path, seeded = tmp_path / "run.npz", tmp_path / "seeded.npz"
    make().fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)],
               **dict(FIT, epochs=3, **defaults))
    given = gpunn.load_checkpoint(path, device="cpu")
    history = given.resume(X, Y, verbose=False, **defaults)
    plain = gpunn.load_checkpoint(path, device="cpu")
    assert _no_timing(history) == _no_timing(plain.resume(X, Y, verbose=False))
    numpy.testing.assert_array_equal(given.model.params, plain.model.params)
    make().fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(seeded)],
               **dict(FIT, epochs=3, seed=4, optimizer="sgd"))
    for key in ("seed", "schedule") + (("optimizer",) if kind == "MLP" else ()):  # 4, cosine and sgd: not None's
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}' \("):
            gpunn.load_checkpoint(seeded, device="cpu").resume(X, Y, verbose=False, **{key: None})


def test_a_resumes_batch_size_is_the_runs_own_as_fit_resolved_it_and_a_data_parallel_runs_is_refused(
        data, tmp_path, interrupt_at):
    """fit(batch_size=5000) on 960 training rows trains on batches of all 960, as batch_size=None does: 5000, 960 and
    None given to its resume are each the run's own, and go on as the resume without them; None is not the own of a
    run of batches of 100. A data-parallel run's batch size is refused at any value (ranks x it trained a step)."""
    X, Y = data
    full, batched, two_ranks = tmp_path / "full.npz", tmp_path / "batched.npz", tmp_path / "two.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(1, 0), gpunn.ModelCheckpoint(full)],
                                             **dict(FIT, epochs=3, batch_size=5000))
    plain = gpunn.load_checkpoint(full, device="cpu")
    plain.resume(X, Y, verbose=False)
    for size in (5000, 960, None):
        given = gpunn.load_checkpoint(full, device="cpu")
        given.resume(X, Y, verbose=False, batch_size=size)
        numpy.testing.assert_array_equal(given.model.params, plain.model.params)
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(batched)],
                                             **dict(FIT, epochs=3))
    rewrite_meta(batched, two_ranks, lambda meta: meta["training"]["settings"].update(ranks=2))
    for path, size in ((batched, None), (two_ranks, 100)):
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'batch_size' \("):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, batch_size=size)

@pytest.mark.parametrize("stopping", [False, True], ids=["least val_loss", "early stopping"])
def test_a_resumed_runs_best_is_the_whole_runs_as_the_run_never_stopped(data, tmp_path, interrupt_at, stopping):
    """history.best and best_epoch of a run stopped and resumed from its checkpoint: those of the whole run (the
    epochs before the stop counted), with EarlyStopping (its saved best) or without (the least val_loss)."""
    X, Y = data

    def callbacks():
        return [EarlyStopping("val_r2", patience=50)] if stopping else []

    fit = {**FIT, "lr": 0.2, "schedule": "constant"}  # the best epoch is the 6th of 7: the last is worse
    ref_hist = MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=callbacks(), **fit)
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=callbacks() + [interrupt_at(6, 3),
                                                                              gpunn.ModelCheckpoint(path)], **fit)
    resumed = gpunn.load_checkpoint(path, device="cpu").resume(X, Y, callbacks=callbacks(), verbose=False)
    key, pick = ("val_r2", max) if stopping else ("val_loss", min)
    assert _no_timing(resumed) == _no_timing(ref_hist) and resumed.best == pick(ref_hist[key]) == ref_hist.best
    assert resumed.best_epoch == ref_hist.best_epoch == ref_hist[key].index(resumed.best) + 1 == 6  # before the stop


def test_a_resumed_epochs_throughput_counts_only_the_rows_trained_after_the_resume(data, tmp_path, interrupt_at):
    """samples_per_s of the epoch a run was stopped part-way through counts the rows its resume trained (its time_s
    is theirs), not the epoch's every row: 960 training rows in batches of 100, 5 batches done before the stop."""
    X, Y = data
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(1, 4), gpunn.ModelCheckpoint(path)],
                                             **{**FIT, "epochs": 3})
    resumed = gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False)
    rows_timed = [rate * seconds for rate, seconds in zip(resumed["samples_per_s"], resumed["time_s"])]
    assert rows_timed == pytest.approx([960, 960 - 5 * 100, 960])


class _PowerCut(gpunn.Callback):
    def __init__(self, epoch=2):
        self.epoch = epoch

    def on_epoch_begin(self, trainer, epoch):
        if epoch == self.epoch:
            raise RuntimeError("power cut")


class _Scripted(gpunn.Callback):
    """Logs ``score``: the given value for each epoch (callbacks listed after it see it)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, trainer, epoch, logs):
        logs["score"] = self.values[epoch]


class _ScriptedOther(_Scripted):
    """Logs ``other`` as _Scripted logs ``score``."""

    def on_epoch_end(self, trainer, epoch, logs):
        logs["other"] = self.values[epoch]


def _two_scripts():
    """The resume-order tests' loggers: ``score``, lowest at epoch 5, and ``other``, lowest at epoch 2."""
    return [_Scripted([5.0, 1.0, 3.0, 4.0, 0.5, 6.0]), _ScriptedOther([3.0, 1.0, 2.0, 4.0, 5.0, 6.0])]


def test_a_run_that_died_resumes_exactly_from_the_checkpoint_of_its_last_finished_epoch(data, tmp_path):
    """What ModelCheckpoint is for: the process dies (an exception here, so no write at the end) and the
    file written at the end of epoch 2, with that epoch's logs and callback state, continues to the
    uninterrupted run's weights and history."""
    X, Y = data
    fit = {**FIT, "epochs": 4}
    reference = MLP([6, 8, 2], activation="tanh", device="cpu", seed=1)
    ref_hist = reference.fit(X, Y, callbacks=[EarlyStopping(patience=50)], **fit)
    path = tmp_path / "run.npz"
    with pytest.raises(RuntimeError, match="power cut"):
        MLP([6, 8, 2], activation="tanh", device="cpu", seed=1).fit(
            X, Y, callbacks=[_PowerCut(), EarlyStopping(patience=50), gpunn.ModelCheckpoint(path)], **fit)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert ckpt.epoch == 2 and ckpt.history["epoch"] == [1, 2]
    resumed = ckpt.resume(X, Y, verbose=False)
    assert _no_timing(resumed) == _no_timing(ref_hist)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)


def test_a_file_with_the_rng_record_of_older_checkpoints_resumes_exactly(data, tmp_path, interrupt_at):
    """Checkpoints no longer write ``training.rng`` (the seed again, and a note; nothing read it: shuffles are
    keyed by the settings' seed and the position). Files that hold it, every one written before, resume as
    they did, bit for bit."""
    X, Y = data
    fit = {**FIT, "epochs": 3}
    reference = MLP([6, 8, 2], device="cpu", seed=1)
    reference.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)], **fit)
    assert "rng" not in gio.read_meta(path)["training"]

    def as_before(meta):
        meta["training"]["rng"] = {"kind": "keyed-streams", "seed": 0, "note": "shuffles are keyed by (seed, epoch); "
                                   "the seed and position are the whole RNG state"}

    rewrite_meta(path, path, as_before)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    ckpt.resume(X, Y, verbose=False, checkpoint=False)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)


def test_a_run_recording_an_option_its_schedule_does_not_read_resumes_quietly_bit_for_bit(data, tmp_path,
                                                                                         interrupt_at):
    """A Schedule refuses an option it does not read (Schedule("cosine", gamma=0.5)), which gpunn took before: a
    checkpoint of such a run (here its record edited so) loads without a word, resumes bit for bit, and the file the
    resume writes keeps the record as it was."""
    X, Y = data
    fit = {**FIT, "epochs": 3}  # (cosine)
    reference = MLP([6, 8, 2], device="cpu", seed=1)
    reference.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)], **fit)
    rewrite_meta(path, path, lambda meta: meta["training"]["settings"]["schedule"].update(gamma=0.5, step_size=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt = gpunn.load_checkpoint(path, device="cpu")
        assert (ckpt.settings.schedule.gamma, ckpt.settings.schedule.step_size) == (0.5, 3)
        ckpt.resume(X, Y, verbose=False)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    schedule = gio.read_meta(path)["training"]["settings"]["schedule"]
    assert schedule == {"name": "cosine", "step_size": 3, "gamma": 0.5, "total_epochs": 0, "min_factor": 0.0}


def written_before_callback_order(name, tmp_path):
    """A copy of tests/data/NAME in ``tmp_path``: a checkpoint the gpunn of main at 9f42c8e wrote (format version 2,
    before ``callback_order``: its saved states name their class alone; tests/data/README.md says how)."""
    import shutil

    copy = tmp_path / name
    shutil.copy(os.path.join(REPO, "tests", "data", name), copy)
    return copy


def test_a_file_written_before_callback_order_loads_and_resumes_bit_for_bit_as_then(data, tmp_path, interrupt_at):
    """tests/data/main-v2-run.npz was written by main at 9f42c8e, by this test's run: a resume finds its callbacks
    by class name as gpunn then did, made again or passed, and ends bit for bit as the run never interrupted. The
    same run written now holds what it held and ``callback_order`` and ``shuffled_by`` besides (the file, from before
    the record, resumes part-way through an epoch on the CPU, which ordered its rows: no warning). Where this
    machine's arithmetic does not reproduce the file's first epochs (other BLAS kernels), no run here can be compared
    with it bit for bit: skipped."""
    X, Y = data
    fit = {**FIT, "epochs": 5}
    plateau = dict(factor=0.5, patience=0, min_delta=10.0, cooldown=2)
    path = written_before_callback_order("main-v2-run.npz", tmp_path)
    here = tmp_path / "here.npz"
    MLP([6, 8, 2], activation="tanh", device="cpu", seed=1).fit(
        X, Y, callbacks=[ReduceLROnPlateau(**plateau), interrupt_at(2, 4), EarlyStopping(patience=50),
                         gpunn.ModelCheckpoint(here)], **fit)
    before, now = gpunn.load_checkpoint(path, device="cpu"), gpunn.load_checkpoint(here, device="cpu")
    if not numpy.array_equal(before.model.params, now.model.params):
        pytest.skip("this machine's arithmetic is not the one that wrote tests/data/main-v2-run.npz")
    assert before.meta["format_version"] == now.meta["format_version"] == 2
    assert set(now.training) - set(before.training) == {"callback_order", "shuffled_by"}
    assert set(before.training) <= set(now.training)
    assert before.training["callbacks"] == now.training["callbacks"]
    reference = MLP([6, 8, 2], activation="tanh", device="cpu", seed=1)
    ref_hist = reference.fit(X, Y, callbacks=[ReduceLROnPlateau(**plateau), EarlyStopping(patience=50)], **fit)
    for passed in ([], [ReduceLROnPlateau(**plateau), EarlyStopping(patience=50)]):
        ckpt = gpunn.load_checkpoint(path, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            resumed = ckpt.resume(X, Y, verbose=False, checkpoint=False, callbacks=passed)
        assert _no_timing(resumed) == _no_timing(ref_hist)
        numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
        for name in ("m", "v"):
            numpy.testing.assert_array_equal(ckpt.optimizer.state[name], reference.optimizer.state[name])


def _as_before_callback_order(path):
    """Rewrite the checkpoint ``path`` as a gpunn from before ``callback_order`` wrote it (all it lacked)."""
    rewrite_meta(path, path, lambda meta: meta["training"].pop("callback_order"))


_SMALL = datasets.make("teacher", 150, 4, n_outputs=2, noise=0.1, seed=5, device="cpu")


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ensemble=st.booleans(), optimizer=st.sampled_from(sorted(gpunn.optim.OPTIMIZERS)),
       schedule=st.sampled_from(gpunn.optim.SCHEDULES), validation=st.sampled_from([None, "fraction", "data"]),
       dtype=st.sampled_from(["float32", "float64"]), restore=st.booleans(),
       stops=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=3, unique=True),
       extend=st.booleans())
@example(ensemble=True, optimizer="adam", schedule="constant", validation="fraction", dtype="float32", restore=True,
         stops=[(0, 4)], extend=True)  # members restored to their best at epoch 3, extended (c467299)
def test_a_run_stopped_at_random_batches_and_resumed_each_time_ends_as_the_run_never_stopped(
        interrupt_at, ensemble, optimizer, schedule, validation, dtype, restore, stops, extend):
    """Every optimizer and schedule, one model (with a plateau) or an ensemble (members stopping early, a
    bootstrap when validated on data), early stopping with or without restoring the best: stopped after
    random batches (mid-epoch, at an epoch's end, or past the run's end) and resumed from the checkpoint
    each time, the run ends with the uninterrupted run's weights, optimizer state and history, bit for bit;
    also when it was started with 3 epochs and the last resume raises them to 5 (not with a cosine or a onecycle
    schedule, whose period is the run's epochs or steps)."""
    X, Y = _SMALL
    fit = dict(epochs=5, batch_size=32, optimizer=optimizer, lr=[3e-3, 0.05] if ensemble else 0.01,
               schedule=gpunn.Schedule(schedule, gamma=0.7) if schedule == "exponential" else schedule, seed=2,
               verbose=False)
    resume = {}
    if validation == "fraction":
        fit["validation_fraction"] = 0.2
    elif validation == "data":
        fit["validation_data"] = resume["validation_data"] = (X[:30], Y[:30])
        X, Y = X[30:], Y[30:]
        if ensemble:
            fit["bootstrap"] = True

    def model():
        return (gpunn.Ensemble([4, 6, 2], 2, dtype=dtype, seed=1, device="cpu") if ensemble
                else MLP([4, 6, 2], dtype=dtype, seed=1, device="cpu"))

    def callbacks():
        stopping = [EarlyStopping(patience=2, min_delta=1e-3, restore_best_weights=restore)]
        return stopping if ensemble else stopping + [ReduceLROnPlateau(factor=0.5, patience=0, min_delta=1e-3)]

    reference = model()
    expected = reference.fit(X, Y, callbacks=callbacks(), **fit)
    stops = sorted(stops)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.npz")
        started = {**fit, "epochs": 3} if extend and schedule not in ("cosine", "onecycle") else fit
        model().fit(X, Y, callbacks=callbacks() + [interrupt_at(*stops[0]), gpunn.ModelCheckpoint(path)], **started)
        for stop in stops[1:] + [None]:
            ckpt = gpunn.load_checkpoint(path, device="cpu")
            resumed = ckpt.resume(X, Y, callbacks=[] if stop is None else [interrupt_at(*stop)], verbose=False,
                                  epochs=fit["epochs"] if stop is None else None, **resume)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    for name in ckpt.optimizer.state_names():
        numpy.testing.assert_array_equal(ckpt.optimizer.state[name], reference.optimizer.state[name])
    assert ckpt.optimizer.steps == reference.optimizer.steps
    assert _no_timing(resumed) == _no_timing(expected)
    assert (resumed.best_epoch, resumed.best, resumed.stopped_early) == (expected.best_epoch, expected.best,
                                                                         expected.stopped_early)



def test_an_epoch_resumed_part_way_reports_the_throughput_of_the_rows_it_trained(data, tmp_path, interrupt_at,
                                                                                   monkeypatch):
    """samples_per_s of the resumed epoch counts the rows trained after the resume (960 training rows,
    4 batches of 100 done before the stop: 560), not the epoch's; the clock is faked to one second an epoch."""
    import itertools
    import types

    from gpunn.training import loop

    X, Y = data
    path = tmp_path / "run.npz"
    model = MLP([6, 4, 2], device="cpu", seed=1)
    model.fit(X, Y, callbacks=[interrupt_at(1, 3), gpunn.ModelCheckpoint(path)], **{**FIT, "epochs": 2})
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=itertools.count().__next__))
    resumed = gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False)
    assert resumed["samples_per_s"][1] == 560.0


@pytest.mark.parametrize("options, scores, written", [
    (dict(every=2), [0, 0, 0], [2]),  # every other epoch, ...
    (dict(save_best_only=True, monitor="score"), [5.0, 3.0, 4.0], [1, 2]),  # ... when the score beats the best so far
], ids=["every", "save_best_only"])
def test_the_checkpoint_on_disk_is_the_last_epoch_it_was_asked_to_keep(data, tmp_path, options, scores, written):
    """A run that dies at the start of epoch 4 leaves the file of the last epoch ModelCheckpoint was to
    write: every=2 writes epoch 2 (not 1 and 3); save_best_only with scores 5, 3, 4 writes epochs 1 and 2
    (4 is no better than 3, though better than 5)."""
    X, Y = data
    path = tmp_path / "run.npz"
    writer = gpunn.ModelCheckpoint(path, **options)
    with pytest.raises(RuntimeError, match="power cut"):
        MLP([6, 4, 2], device="cpu", seed=0).fit(X, Y, callbacks=[_Scripted(scores), _PowerCut(3), writer],
                                                 **{**FIT, "epochs": 6})
    assert gpunn.load_checkpoint(path, device="cpu").epoch == written[-1] and writer.saves == len(written)


def test_save_best_only_remembers_the_best_across_a_resume(data, tmp_path, interrupt_at):
    """The best score so far is in the checkpoint: after a resume, epochs that are worse than the best
    before it (scores 5 and 4 after 1) are not written; only the write at the end of the run is."""
    X, Y = data
    path, scores = tmp_path / "run.npz", [1.0, 5.0, 4.0]
    options = dict(save_best_only=True, monitor="score")
    MLP([6, 4, 2], device="cpu", seed=0).fit(X, Y, callbacks=[_Scripted(scores), interrupt_at(1, 2),
                                                              gpunn.ModelCheckpoint(path, **options)],
                                             **{**FIT, "epochs": 3})
    writer = gpunn.ModelCheckpoint(path, **options)
    gpunn.load_checkpoint(path, device="cpu").resume(X, Y, callbacks=[_Scripted(scores), writer], verbose=False)
    assert writer.saves == 1


def test_resume_can_extend_the_run(data, tmp_path):
    X, Y = data
    model = MLP([6, 8, 2], device="cpu", seed=0)
    model.fit(X, Y, epochs=2, batch_size=200, callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")], verbose=False)
    ckpt = gpunn.load_checkpoint(tmp_path / "c.npz")
    assert ckpt.epoch == 2
    history = ckpt.resume(X, Y, epochs=4, verbose=False)
    assert history["epoch"] == [1, 2, 3, 4]
    assert gpunn.load_checkpoint(tmp_path / "c.npz").epoch == 4


def test_a_run_without_shuffling_resumes_without_shuffling(data, tmp_path, interrupt_at):
    """shuffle=False is part of the run: resumed part-way through an epoch, the batches are still in row order
    and the result is the uninterrupted run's (mut16c K114: the resumed source shuffled)."""
    X, Y = data[0][:300], data[1][:300]
    fit = dict(epochs=3, batch_size=50, shuffle=False, verbose=False)
    straight = MLP([6, 8, 2], device="cpu", seed=0)
    straight.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 2)], **fit)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert (ckpt.epoch, ckpt.state.batch, ckpt.settings.shuffle) == (1, 3, False)
    ckpt.resume(X, Y, verbose=False)
    numpy.testing.assert_array_equal(ckpt.model.params, straight.params)


def test_a_resume_writes_its_checkpoint_when_the_run_was_written_by_a_writer_of_its_own(data, tmp_path):
    """``checkpoint=PATH`` writes the resumed run to PATH and ``checkpoint=True`` to the file resumed, also where
    the run's writer was the user's own subclass (mut16c K110: nothing was written to PATH). Since session 18 the
    resume makes that subclass again (found by its module and qualified name, which files record since session
    20), pointed at PATH; one not found is replaced by a plain ModelCheckpoint
    (test_a_writer_that_cannot_be_made_again_...)."""
    X, Y = data

    class Writer(gpunn.ModelCheckpoint):
        pass

    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, callbacks=[Writer(tmp_path / "c.npz")],
                                             verbose=False)
    gpunn.load_checkpoint(tmp_path / "c.npz").resume(X, Y, epochs=2, checkpoint=tmp_path / "more.npz", verbose=False)
    assert gpunn.load_checkpoint(tmp_path / "more.npz").epoch == 2
    assert gpunn.load_checkpoint(tmp_path / "c.npz").epoch == 1
    # and checkpoint=True (the default) keeps writing to the file resumed: it wrote nothing, and the file stayed
    # at epoch 1 while the run went on to 3 (mut16c, found beside K110)
    gpunn.load_checkpoint(tmp_path / "c.npz").resume(X, Y, epochs=3, verbose=False)
    assert gpunn.load_checkpoint(tmp_path / "c.npz").epoch == 3


class _Nightly:
    """Holds a writer class named Writer; so does _Hourly: one module, one name, two qualified names."""

    class Writer(gpunn.ModelCheckpoint):
        pass


class _Hourly:
    class Writer(gpunn.ModelCheckpoint):
        pass


def test_two_classes_of_one_name_in_one_module_are_told_apart_by_qualified_name(data, tmp_path):
    """The file records each class's qualified name: a writer of the user's nested in a class of theirs
    (_Nightly.Writer) is made again on resume, though another (_Hourly.Writer) shares its name and module."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[_Nightly.Writer(path)])
    assert gpunn.load_checkpoint(path).training["callback_order"] == [
        {"class": "Writer", "module": __name__, "qualname": "_Nightly.Writer"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (not found: a warning, and a plain ModelCheckpoint writes)
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path).epoch == 2


class _LoggedWriter(gpunn.ModelCheckpoint):
    """A user's own writer, defined at module level (so defined in the process that resumes): logs its writes."""

    writes = []

    def save(self, trainer, logs=None):
        _LoggedWriter.writes.append((self.path, self.every, trainer.epoch))
        super().save(trainer, logs)


class _LoggedWriterOfItsOwn(_LoggedWriter):
    """A subclass of a user's writer (of a subclass of ModelCheckpoint)."""


@pytest.mark.parametrize("where", ["subclass", "subclass of a subclass", "class made in a function"])
def test_a_users_writer_not_passed_again_is_made_again_with_its_settings_when_its_class_is_defined(data, tmp_path,
                                                                                                 where):
    """A run written by the user's own ModelCheckpoint subclass, resumed without passing it: the subclass is made
    again (looked up by its name among the built-ins' subclasses defined in this process, at any depth, wherever
    it was defined) with its saved settings and writes the resumed file by its own rule. It was replaced by a plain
    ModelCheckpoint writing every epoch."""
    X, Y = data
    path = tmp_path / "c.npz"
    if where == "class made in a function":
        class _LoggedWriterInATest(_LoggedWriter):  # its __qualname__ says where: not the name saved
            pass

        writer = _LoggedWriterInATest
    else:
        writer = _LoggedWriter if where == "subclass" else _LoggedWriterOfItsOwn
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False,
                                             callbacks=[writer(path, every=2)])
    del _LoggedWriter.writes[:]
    gpunn.load_checkpoint(path).resume(X, Y, epochs=5, verbose=False)
    assert _LoggedWriter.writes == [(str(path), 2, 3), (str(path), 2, 4)]  # epoch 4's end, and the run's end
    assert gpunn.load_checkpoint(path).epoch == 5


def test_a_users_best_only_writer_made_again_goes_on_from_the_best_it_saved(data, tmp_path):
    """The user's writer made again from the file takes its saved state too: a save_best_only one writes at epoch
    4's 0.5, not at epoch 3's 2.0, which is no better than epoch 1's 1.0 (made without its state, it wrote both),
    and at the run's end."""
    X, Y = data
    path, scores = tmp_path / "c.npz", [1.0, 3.0, 2.0, 0.5]
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False, callbacks=[
        _Scripted(scores), _LoggedWriter(path, save_best_only=True, monitor="score")])
    del _LoggedWriter.writes[:]
    gpunn.load_checkpoint(path).resume(X, Y, epochs=4, verbose=False, callbacks=[_Scripted(scores)])
    assert _LoggedWriter.writes == [(str(path), 1, 3), (str(path), 1, 3)]  # epoch 4's end, and the run's end


def test_a_best_only_writer_made_again_keeps_its_mode(data, tmp_path):
    """A save_best_only writer of mode="max" made again from the file is of mode "max": at epoch 3 its score 2.0 is
    no better than the best 3.0 saved, and epoch 4's 4.0 is. Checked by mutation: get_config saying "auto" (which reads
    a "score" as one to lessen) passed every other test; made so, it wrote at epoch 3 and not at epoch 4."""
    X, Y = data
    path, scores = tmp_path / "c.npz", [1.0, 3.0, 2.0, 4.0]
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False, callbacks=[
        _Scripted(scores), _LoggedWriter(path, save_best_only=True, monitor="score", mode="max")])
    del _LoggedWriter.writes[:]
    gpunn.load_checkpoint(path).resume(X, Y, epochs=4, verbose=False, callbacks=[_Scripted(scores)])
    assert _LoggedWriter.writes == [(str(path), 1, 3), (str(path), 1, 3)]  # epoch 4's end, and the run's end


class _PathOnlyWriter(gpunn.ModelCheckpoint):
    """A user's writer whose constructor takes a path alone (not the settings its get_config gives)."""

    def __init__(self, path):
        super().__init__(path, every=1)


class _EveryOtherWriter(gpunn.ModelCheckpoint):
    """A user's writer whose constructor refuses the value of a setting its run saved (its code changed since)."""

    def __init__(self, path, every=2, **settings):
        if every % 2:
            raise ValueError(f"every must be even, got {every}")
        super().__init__(path, every=every, **settings)


class _NewFieldWriter(gpunn.ModelCheckpoint):
    """A user's writer whose load_state_dict reads a field its run's file does not hold (its code changed since)."""

    def load_state_dict(self, state, arrays):
        self.since = state["since"]
        super().load_state_dict(state, arrays)


def test_a_users_writer_that_cannot_read_its_saved_state_is_replaced_by_a_plain_one_with_a_warning(data, tmp_path):
    """Its KeyError, as a constructor's TypeError or ValueError above, is said in a warning and a plain
    ModelCheckpoint writes the file; the resume goes on."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[_NewFieldWriter(path)])
    with pytest.warns(UserWarning, match=r"c\.npz: the run's _NewFieldWriter cannot be made again from its saved "
                                         r"settings .* \('since'\): it is not restored; pass it in callbacks"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path).epoch == 2


def _another_programs_writer(meta, older=False):
    """A file's writer made a class this process does not define, in the file's records of it; ``older``: as a gpunn
    from before ``callback_order`` wrote it (the class's name alone)."""
    meta["training"]["callbacks"][0]["class"] = "AnotherProgramsWriter"
    meta["training"]["callback_order"][0] = {"class": "AnotherProgramsWriter", "module": "another_program",
                                             "qualname": "AnotherProgramsWriter"}
    if older:
        del meta["training"]["callback_order"]


@pytest.mark.parametrize("how", ["not defined", "not defined, in a file from before callback_order", "defined twice",
                                 "refuses its settings", "refuses their values"])
def test_a_writer_that_cannot_be_made_again_is_replaced_by_a_plain_one_with_a_warning(data, tmp_path, how):
    X, Y = data
    path = tmp_path / "c.npz"
    if how == "defined twice":
        writer = type("_TwiceWriter", (gpunn.ModelCheckpoint,), {})(path)
    else:
        writer = (_PathOnlyWriter if how == "refuses its settings" else _LoggedWriter)(path)
    if how == "refuses their values":
        writer = _EveryOtherWriter(path)
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False, callbacks=[writer])
    if how == "refuses their values":
        rewrite_meta(path, path, lambda meta: meta["training"]["callbacks"][0]["config"].update({"every": 3}))
    if how.startswith("not defined"):  # another program's writer, by its name (and module, where the file has them)
        older = how == "not defined, in a file from before callback_order"
        rewrite_meta(path, path, lambda meta: _another_programs_writer(meta, older))
        named = "AnotherProgramsWriter" if older else r"another_program\.AnotherProgramsWriter"
        says = (rf"c\.npz's run had callbacks of classes not found in this process \({named}; not defined, "
                r"defined twice, or not a built-in callback's subclass\): they are not restored, and a plain "
                r"ModelCheckpoint writes .*c\.npz every epoch")
    elif how == "defined twice":
        redefined = type("_TwiceWriter", (gpunn.ModelCheckpoint,), {})  # a notebook's cell run again, say
        assert redefined.__name__ == type(writer).__name__ and redefined is not type(writer)
        says = rf"classes not found in this process \({HERE}\._TwiceWriter; not defined, defined twice"
    elif how == "refuses their values":
        says = (r"c\.npz: the run's _EveryOtherWriter cannot be made again from its saved settings \{'every': 3, .*\} "
                r"\(every must be even, got 3\): it is not restored; pass it in callbacks")
    else:
        says = (r"c\.npz: the run's _PathOnlyWriter cannot be made again from its saved settings \{'every': 1, .*\} "
                r"\(.*unexpected keyword argument 'every'\): it is not restored; pass it in callbacks")
    with pytest.warns(UserWarning, match=says):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path).epoch == 2  # written all the same, by a plain writer


class _EpochCounter(gpunn.Callback):
    """A user's own stateful callback, no built-in's subclass: counts the epochs it has seen, across resumes."""

    def __init__(self):
        self.seen = 0

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen += 1

    def get_config(self):
        return {}

    def state_dict(self):
        return {"seen": self.seen}, {}

    def load_state_dict(self, state, arrays):
        self.seen = state["seen"]


def test_a_users_own_callback_not_passed_again_is_left_out_with_a_warning(data, tmp_path):
    """A run's callback of a class resume does not make again (a user's own, subclassing no built-in), not passed
    to resume where a writer is restored: its saved state was dropped without a word, from the run and from every
    file it wrote after. Now a warning says so and what to do; passed again, it goes on from its state, silently."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False,
                                             callbacks=[_EpochCounter(), gpunn.ModelCheckpoint(path)])
    passed = _EpochCounter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False, callbacks=[passed])
    assert passed.seen == 3
    with pytest.warns(UserWarning, match=r"c\.npz's run had callbacks of classes not found in this process "
                                         rf"\({HERE}\._EpochCounter; .*\): they are not restored, and the "
                                         r"checkpoints this resume writes do not hold their saved state; to go on from "
                                         r"it, pass them in callbacks"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=4, verbose=False)
    assert [cb["class"] for cb in gpunn.load_checkpoint(path).training["callbacks"]] == ["ModelCheckpoint"]


class _TorchStyleState(gpunn.Callback):
    """A callback whose state_dict returns what ``state`` gives (PyTorch's state_dict returns one dict)."""

    def __init__(self, state):
        self.state = state

    def get_config(self):
        return {}

    def state_dict(self):
        return self.state

    def load_state_dict(self, state, arrays):
        pass


@pytest.mark.parametrize("state, says", [
    # one dict, as PyTorch's state_dict returns: "not enough values to unpack", or with two keys the keys unpacked
    # and "'str' object has no attribute 'items'"
    ({"seen": 1}, r"returned a dict; a gpunn callback's returns a pair \(json_dict, arrays\)"),
    ({"seen": 1, "best": 2.0}, r"returned a dict; a gpunn callback's returns a pair \(json_dict, arrays\)"),
    (({"seen": 1}, [numpy.zeros(2)]), r"returned a pair whose arrays are a list, not a dict \{name: array\}"),
    # audit37b m17: a list for the dict was written, and every load refused the file ("invalid callback states");
    # m18: three values said "too many values to unpack", naming no callback
    (([1], {}), r"returned a tuple of 2; a gpunn callback's returns a pair \(json_dict, arrays\)"),
    (({"seen": 1}, {}, {}), r"returned a tuple of 3; a gpunn callback's returns a pair \(json_dict, arrays\)"),
    # "Object of type float32 is not JSON serializable", naming no callback
    (({"best": numpy.float32(1.5)}, {}), r"returned a state whose 'best' is a float32, which JSON does not hold: give it as a Python "
                                          r"float, int, str, bool, list or dict \(float\(x\)\), an array among the arrays"),
    # inside a list or a dict, and a dict's key that JSON does not hold ("keys must be str, int, float, bool or None")
    (({"losses": [1.0, {"last": numpy.float32(1.5)}]}, {}),
     r"returned a state whose 'losses' holds a float32, which JSON does not hold"),
    (({"counts": {(1, 2): 3}}, {}), r"returned a state whose 'counts' holds a tuple, which JSON does not hold"),
])
def test_a_callback_state_that_is_not_gpunns_pair_is_refused_naming_the_callback(data, tmp_path, state, says):
    X, Y = data
    with pytest.raises(TypeError, match=r"^_TorchStyleState.state_dict\(\) " + says):
        MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                                 callbacks=[_TorchStyleState(state), gpunn.ModelCheckpoint(tmp_path / "c.npz")])


def test_a_callback_state_holding_a_tuple_is_written_as_the_list_json_makes_of_it(data, tmp_path):
    """JSON holds a tuple as a list, and so the checkpoint does (audit37b m21: a tuple was refused as a type JSON does
    not hold)."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[_TorchStyleState(({"pair": (1, 2)}, {})),
                                                        gpunn.ModelCheckpoint(path)])
    states = gpunn.load_checkpoint(path).training["callbacks"]
    assert [c["state"] for c in states if c["class"] == "_TorchStyleState"] == [{"pair": [1, 2]}]


def _stoppers():
    return [EarlyStopping(monitor="loss", patience=50), EarlyStopping(monitor="val_loss", patience=4,
                                                                      restore_best_weights=False)]


def test_each_of_two_callbacks_of_one_class_takes_over_its_own_saved_state(data, tmp_path, interrupt_at):
    """The k-th callback of a class passed to resume takes over the k-th state the run saved for that class (both
    took the first: the val_loss stopper went on from the best training loss). Passed again or restored by the
    resume, the run ends as the one never stopped."""
    import shutil

    X, Y = data
    fit = {**FIT, "epochs": 5}
    reference = MLP([6, 8, 2], device="cpu", seed=1)
    ref_hist = reference.fit(X, Y, callbacks=_stoppers(), **fit)
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(2, 3), *_stoppers(),
                                                              gpunn.ModelCheckpoint(path)], **fit)
    shutil.copy(path, tmp_path / "copy.npz")
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    saved = [entry["state"] for entry in ckpt.training["callbacks"] if entry["class"] == "EarlyStopping"]
    assert len(saved) == 2 and saved[0]["best"] != saved[1]["best"]
    passed, seen = _stoppers(), []

    class Probe(gpunn.Callback):  # listed first: sees the states the resume gave them
        def on_train_begin(self, trainer):
            seen.extend((cb.best, cb.best_epoch, cb.wait) for cb in passed)

    resumed = ckpt.resume(X, Y, verbose=False, checkpoint=False, callbacks=[Probe(), *passed])
    assert seen == [(state["best"], state["best_epoch"], state["wait"]) for state in saved]
    assert _no_timing(resumed) == _no_timing(ref_hist)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    restored = gpunn.load_checkpoint(tmp_path / "copy.npz", device="cpu")
    assert _no_timing(restored.resume(X, Y, verbose=False, checkpoint=False)) == _no_timing(ref_hist)
    numpy.testing.assert_array_equal(restored.model.params, reference.params)


def test_another_number_of_a_stateful_class_than_the_run_saved_is_refused_and_the_resume_may_be_retried(data,
                                                                                                        tmp_path):
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[*_stoppers(), gpunn.ModelCheckpoint(path)],
                                             **{**FIT, "epochs": 1})
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    with pytest.raises(ValueError, match=r"c\.npz: the run saved the state of 2 EarlyStopping callbacks "
                                         r"\(EarlyStopping\(monitor='loss', patience=50, .*\); EarlyStopping\("
                                         r"monitor='val_loss', patience=4, .*\)\), and 1 was passed to resume; the "
                                         r"k-th passed takes over the k-th saved: pass 2, in the run's order, or none "
                                         r"to have the run's restored"):
        ckpt.resume(X, Y, epochs=2, verbose=False, checkpoint=False, callbacks=[EarlyStopping(monitor="loss")])
    assert ckpt.resume(X, Y, epochs=2, verbose=False, checkpoint=False)["epoch"] == [1, 2]  # refused before training
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[ReduceLROnPlateau(), gpunn.ModelCheckpoint(path)],
                                             **{**FIT, "epochs": 1})
    with pytest.raises(ValueError, match=r"state of 1 ReduceLROnPlateau callback \(.*\), and 2 were passed"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False,
                                           callbacks=[ReduceLROnPlateau(), ReduceLROnPlateau(patience=3)])
    # a class of the user's own (no get_config: no settings saved), which the resume cannot make again: none
    # passed leaves them out
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[_Tally(), _Tally(), gpunn.ModelCheckpoint(path)],
                                             **{**FIT, "epochs": 1})
    with pytest.raises(ValueError, match=r"state of 2 _Tally callbacks \(_Tally\(\); _Tally\(\)\), and 1 was passed to "
                                         r"resume; .*: pass 2, in the run's order, or none to leave them out$"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[_Tally()])


class _Tally(gpunn.Callback):
    """A user's stateful callback without get_config (its checkpoint entry holds no settings)."""

    def state_dict(self):
        return {"epochs": 0}, {}

    def load_state_dict(self, state, arrays):
        self.state = state


class _Noted(gpunn.Callback):
    """A user's callback that notes something in each checkpoint (state_dict) and reads nothing back."""

    def state_dict(self):
        return {"note": "seen"}, {}


def test_a_callback_that_only_writes_a_state_is_passed_again_without_a_count_to_match(data, tmp_path):
    """A callback whose class has state_dict but no load_state_dict is saved with the run, and passed to resume it
    takes no state: the k-th-passed rule counts only callbacks that take one, so one passed is no refusal."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[_Noted(), _Noted(), gpunn.ModelCheckpoint(path)])
    assert [cb["class"] for cb in gpunn.load_checkpoint(path).training["callbacks"]] == ["_Noted", "_Noted",
                                                                                         "ModelCheckpoint"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[_Noted()])
    assert gpunn.load_checkpoint(path).epoch == 2


@pytest.mark.parametrize("older", [False, True], ids=["file", "file from before callback_order"])
def test_a_stateless_callback_of_a_built_in_callbacks_name_passed_to_resume_leaves_the_built_in_restored(data,
                                                                                                      tmp_path, older):
    """Saved states went to the callbacks passed by class name alone: a user's own stateless class named like a
    built-in (here "EarlyStopping") passed to resume took the run's EarlyStopping's place, which was then neither
    made again nor refused, without a word, and the resume trained past where the run's stopper ends it. A class
    without a state never saved one: the built-in is made again beside it."""
    X, Y = data
    path = tmp_path / "c.npz"
    logged = type("EarlyStopping", (gpunn.Callback,), {"on_epoch_end": lambda self, trainer, epoch, logs: None})
    callbacks = [logged(), EarlyStopping(patience=0, min_delta=1e9), gpunn.ModelCheckpoint(path)]
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, lr=0.3, validation_fraction=0.2,
                                             verbose=False, callbacks=callbacks)
    if older:
        _as_before_callback_order(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False, callbacks=[logged()])
    assert resumed.stopped_early and resumed["epoch"] == [1, 2]  # before: [1, ..., 6]
    assert gpunn.load_checkpoint(path).training["callbacks"][0]["state"]["stopped_epoch"] == 2


# a user's own stateful callback (no built-in's subclass) whose class shares a built-in's name
_OwnEarlyStopping = type("EarlyStopping", (_EpochCounter,), {"__doc__": "Counts epochs; named like the built-in."})


def test_a_users_stateful_class_named_like_a_built_in_keeps_its_own_state_and_the_built_in_its_own(data, tmp_path):
    """The file held a saved state's class name alone, so a user's stateful ``EarlyStopping`` (their own class) and
    gpunn's were one class to a resume: with both in the run, passing theirs was refused (2 states, 1 passed) and
    passing none rebuilt theirs as gpunn's from their state (a CheckpointError); with gpunn's alone in the run,
    theirs passed took gpunn's state (a KeyError in their load_state_dict). The file now holds each callback's
    module and qualified name: theirs takes its own state or none, and gpunn's is made again, which stops the run."""
    X, Y = data
    path = tmp_path / "c.npz"
    fit = dict(batch_size=100, lr=0.3, validation_fraction=0.2, verbose=False)

    def run(*callbacks):
        MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, **fit, callbacks=[
            *callbacks, EarlyStopping(patience=0, min_delta=1e9), gpunn.ModelCheckpoint(path)])

    run(_OwnEarlyStopping())
    passed = _OwnEarlyStopping()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False, checkpoint=False,
                                                     callbacks=[passed])
    assert resumed.stopped_early and resumed["epoch"] == [1, 2] and passed.seen == 2
    with pytest.warns(UserWarning, match=rf"classes not found in this process \({HERE}\.EarlyStopping; .*\): "
                                         r"they are not restored"):
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False)
    assert resumed.stopped_early and resumed["epoch"] == [1, 2]
    assert [(cb["class"], cb["state"].get("stopped_epoch")) for cb in gpunn.load_checkpoint(path).training["callbacks"]
            ] == [("EarlyStopping", 2), ("ModelCheckpoint", None)]  # gpunn's, made again; theirs left out, as warned

    run()
    passed = _OwnEarlyStopping()
    resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False, callbacks=[passed])
    assert resumed.stopped_early and resumed["epoch"] == [1, 2] and passed.seen == 1  # from 0: the run had none


# a user's own class named like a built-in that writes a state and reads none back
_OwnWriteOnlyStopping = type("EarlyStopping", (gpunn.Callback,), {"state_dict": lambda self: ({"n": 1}, {})})


@pytest.mark.parametrize("own", [_OwnEarlyStopping, _OwnWriteOnlyStopping], ids=["stateful", "writes a state only"])
def test_in_a_file_from_before_callback_order_a_users_class_named_like_a_built_in_passed_stands_for_its_saved_state(
        data, tmp_path, own):
    """A file from before callback_order names a saved state's class alone: "EarlyStopping" saved by a user's own
    class of that name, the run having no gpunn EarlyStopping. Passed again, theirs stands for it (_passed_for: none
    of gpunn's passed, and theirs has a state): a stateful one goes on from it, one that only writes a state is
    taken as the run's; gpunn's EarlyStopping is not made again from their settings and state (a CheckpointError)."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[own(), gpunn.ModelCheckpoint(path)])
    _as_before_callback_order(path)
    passed = own()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[passed])
    assert resumed["epoch"] == [1, 2] and getattr(passed, "seen", 2) == 2  # (the stateful one: 1 saved, 1 more)
    assert [cb["class"] for cb in gpunn.load_checkpoint(path).training["callbacks"]] == ["EarlyStopping",
                                                                                      "ModelCheckpoint"]


def test_in_a_file_from_before_callback_order_a_built_ins_name_is_the_built_in_whatever_subclass_shares_it(
        data, tmp_path):
    """An old file's saved "EarlyStopping" is gpunn's, restored, though this process defines a subclass of it named
    EarlyStopping too (by name alone, two classes would have it: neither restored, with a warning)."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, lr=0.3, validation_fraction=0.2,
                                             verbose=False, callbacks=[EarlyStopping(patience=0, min_delta=1e9),
                                                                       gpunn.ModelCheckpoint(path)])
    _as_before_callback_order(path)
    # alive through the resume; of a module of its own, so that no other test's class has its module and name
    namesake = type("EarlyStopping", (EarlyStopping,), {"__module__": "gpunn_tests_namesake"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False)
    assert resumed.stopped_early and resumed["epoch"] == [1, 2] and namesake.__name__ == "EarlyStopping"
    del namesake
    gc.collect()  # (gone from EarlyStopping.__subclasses__() for the tests after)


def test_a_class_is_found_by_the_module_the_file_names_which_is_compared_never_imported(data, tmp_path):
    """``callback_order`` names each class by module and qualified name. A resume compares them with the classes
    this process defines: a module the file names is not imported (nothing of it runs), and a class of the same
    name from another module does not take its state; the run's is left out with a warning naming it."""
    X, Y = data
    path, module = tmp_path / "c.npz", "gpunn_tests_never_imported"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[_EpochCounter(), gpunn.ModelCheckpoint(path)])
    rewrite_meta(path, path, lambda meta: meta["training"]["callback_order"][0].update(module=module))
    passed = _EpochCounter()
    with pytest.warns(UserWarning, match=rf"classes not found in this process \({module}\._EpochCounter; not defined"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[passed])
    assert passed.seen == 1 and module not in sys.modules  # from 0, not the run's 1


@pytest.mark.parametrize("module", ["gpunn.training.callbacks", "gpunn.stopping"])
def test_a_built_in_recorded_in_another_gpunn_module_is_still_the_built_in(data, tmp_path, module):
    """gpunn's own classes are found by qualified name wherever in gpunn a file says they lived (a later gpunn may
    move one): the run's EarlyStopping, recorded in another gpunn module, is made again and ends the run. Files
    written before gpunn.training.callbacks was split into modules of one job record it there."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, lr=0.3, validation_fraction=0.2,
                                             verbose=False, callbacks=[EarlyStopping(patience=0, min_delta=1e9),
                                                                       gpunn.ModelCheckpoint(path)])
    assert gpunn.load_checkpoint(path).training["callback_order"][0] == {
        "class": "EarlyStopping", "module": "gpunn.training.monitoring", "qualname": "EarlyStopping"}
    rewrite_meta(path, path, lambda meta: meta["training"]["callback_order"][0].update(module=module))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False, checkpoint=False)
    assert resumed.stopped_early and resumed["epoch"] == [1, 2]


def _stopper_run(data, path, *callbacks):
    """One epoch of a run with ``callbacks`` (by default an EarlyStopping that would end it at epoch 2: patience 0,
    no gain counts) and a writer of ``path``."""
    X, Y = data
    callbacks = callbacks or (EarlyStopping(patience=0, min_delta=1e9),)
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, lr=0.3, validation_fraction=0.2,
                                             verbose=False, callbacks=[*callbacks, gpunn.ModelCheckpoint(path)])


def test_a_gpunn_callback_this_gpunn_lacks_is_named_by_its_class_alone(data, tmp_path):
    """A file written by a gpunn with a built-in callback this one lacks (here "Later", in gpunn's callbacks module):
    it is not restored, and the warning names it as gpunn's classes are named, by class alone."""
    X, Y = data
    path = tmp_path / "c.npz"
    _stopper_run(data, path)

    def later(meta):
        meta["training"]["callback_order"][0].update({"class": "Later", "qualname": "Later"})
        meta["training"]["callbacks"][0]["class"] = "Later"

    rewrite_meta(path, path, later)
    with pytest.warns(UserWarning, match=r"classes not found in this process \(Later; not defined"):
        resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False, checkpoint=False)
    assert resumed["epoch"] == [1, 2, 3]


def test_a_users_class_named_early_stopping_whose_state_holds_a_stopped_epoch_does_not_end_the_run(data, tmp_path):
    """A resume of a run its EarlyStopping stopped (its saved stopped_epoch) trains nothing and leaves the file
    loaded as it was (_over). A user's own class named "EarlyStopping" is another class (the file records its
    module), whatever its state holds: the run trains on, and its writer writes the file."""
    X, Y = data
    path = tmp_path / "c.npz"
    noted = type("EarlyStopping", (gpunn.Callback,), {"state_dict": lambda self: ({"stopped_epoch": 1}, {}),
                                                      "load_state_dict": lambda self, state, arrays: None})
    _stopper_run(data, path, noted())
    resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False, callbacks=[noted()])
    assert not resumed.stopped_early and resumed["epoch"] == [1, 2, 3]
    assert gpunn.load_checkpoint(path).epoch == 3


def test_a_callback_class_without_a_module_name_is_recorded_with_an_empty_one_and_resumes(data, tmp_path):
    """A class whose ``__module__`` is not a string (None here) is recorded with module "" (the record's fields are
    strings, which a load checks): the file loads, and the class passed again takes its state."""
    X, Y = data
    path = tmp_path / "c.npz"
    nameless = type("_Nameless", (_EpochCounter,), {"__module__": None})
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[nameless(), gpunn.ModelCheckpoint(path)])
    assert gpunn.load_checkpoint(path).training["callback_order"][0] == {"class": "_Nameless", "module": "",
                                                                         "qualname": "_Nameless"}
    passed = nameless()
    gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[passed])
    assert passed.seen == 2


def test_two_of_a_users_class_named_like_a_built_in_one_passed_is_refused_saying_none_leaves_them_out(data,
                                                                                                       tmp_path):
    """Another number of a class than the run had is refused; for a user's own class named like a built-in
    ("EarlyStopping") the refusal says passing none leaves them out (it is not found here: nothing is made again)."""
    X, Y = data
    path = tmp_path / "c.npz"
    _stopper_run(data, path, _OwnEarlyStopping(), _OwnEarlyStopping())
    with pytest.raises(ValueError, match=r"state of 2 EarlyStopping callbacks \(EarlyStopping\(\); "
                                         r"EarlyStopping\(\)\), and 1 was passed to resume; .*: pass 2, in the "
                                         r"run's order, or none to leave them out$"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[_OwnEarlyStopping()])


class _StopSeen(gpunn.Callback):
    """Notes at each epoch's end whether the run stops there (as a stopper listed before it decided); no state."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen.append(trainer.stop)


class _StopSeenNoted(_StopSeen):
    """_StopSeen that notes something in each checkpoint (state_dict) and reads nothing back (no load_state_dict)."""

    def state_dict(self):
        return {"note": "seen"}, {}


@pytest.mark.parametrize("probe", [_StopSeen, _StopSeenNoted], ids=["stateless", "writes a state only"])
@pytest.mark.parametrize("ensemble", [False, True], ids=["MLP", "Ensemble"])
def test_a_callback_without_a_state_passed_to_resume_runs_where_the_run_had_it(data, tmp_path, ensemble, probe):
    """The file did not say where the run's callbacks without a state were, so one passed to resume ran before the
    run's stopper made again (after the callbacks passed), where the run had it after the stopper: it saw the run
    go on at the epoch the stopper ended it. The file now records every callback's place, and it runs there (one
    that writes a state and takes none back as well: it takes no saved state to place it by)."""
    X, Y = data
    path = tmp_path / "c.npz"

    def model():
        return (gpunn.Ensemble([6, 8, 2], 2, device="cpu", seed=0) if ensemble
                else MLP([6, 8, 2], device="cpu", seed=0))

    fit = dict(batch_size=100, lr=0.3, validation_fraction=0.2, verbose=False)
    straight = probe()
    model().fit(X, Y, epochs=6, **fit, callbacks=[EarlyStopping(patience=0, min_delta=1e9), straight])
    assert straight.seen == [False, True]
    model().fit(X, Y, epochs=1, **fit, callbacks=[EarlyStopping(patience=0, min_delta=1e9), probe(),
                                                  gpunn.ModelCheckpoint(path)])
    passed = probe()
    resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False, callbacks=[passed])
    assert resumed["epoch"] == [1, 2] and passed.seen == straight.seen[1:]  # before: [False]


def test_two_callbacks_of_a_class_without_a_state_passed_to_resume_run_each_at_its_own_place(data, tmp_path):
    """The k-th passed of a class without a state runs at the k-th place the run had one: with the run's stopper
    between two _StopSeen, the first passed sees the run go on at the epoch the stopper ends it, the second sees
    it stop (as in the run)."""
    X, Y = data
    path = tmp_path / "c.npz"
    _stopper_run(data, path, _StopSeen(), EarlyStopping(patience=0, min_delta=1e9), _StopSeen())
    first, second = _StopSeen(), _StopSeen()
    resumed = gpunn.load_checkpoint(path).resume(X, Y, epochs=6, verbose=False, callbacks=[first, second])
    assert resumed["epoch"] == [1, 2] and first.seen == [False] and second.seen == [True]


def test_a_writer_passed_to_resume_takes_over_from_the_runs_and_the_file_loaded_is_not_written(data, tmp_path):
    """checkpoint=True writes the file loaded only where no writer is passed: a ModelCheckpoint passed takes over
    the run's writer's state (the k-th passed the k-th saved), so it alone writes, to its own path."""
    X, Y = data
    path, other = tmp_path / "c.npz", tmp_path / "other.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[gpunn.ModelCheckpoint(path)])
    before = path.read_bytes()
    gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, callbacks=[gpunn.ModelCheckpoint(other)])
    assert path.read_bytes() == before and gpunn.load_checkpoint(other).epoch == 2


def test_a_run_with_two_writers_resumes_with_them_passed_or_without_writing_and_is_refused_otherwise(data,
                                                                                                    tmp_path):
    """The writers' paths are not saved: made again, both would write the file resumed (the every-epoch one over
    a best-only file, say). Passed again each with its path, each takes over its own state."""
    X, Y = data
    path, best = tmp_path / "c.npz", tmp_path / "best.npz"

    def writers():
        return [gpunn.ModelCheckpoint(path), gpunn.ModelCheckpoint(best, save_best_only=True)]

    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=writers(), **{**FIT, "epochs": 1})
    with pytest.raises(ValueError, match=r"c\.npz's run had 2 checkpoint writers \(ModelCheckpoint\(every=1, "
                                         r"save_best_only=False, .*\); ModelCheckpoint\(every=1, save_best_only=True"
                                         r", .*\)\), and a resume would point them all at .*c\.npz \(their paths "
                                         r"are not saved\): pass them in callbacks"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False)["epoch"] == [1, 2]
    gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False, callbacks=writers())
    assert gpunn.load_checkpoint(path).epoch == 3 and gpunn.load_checkpoint(best).epoch >= 1


def test_a_model_only_checkpoint_is_at_epoch_0_with_no_settings_state_or_history_and_resumes_nothing(data, tmp_path):
    """gpunn.load_checkpoint of a gpunn.save file: a model without a run (its meta has no "training")."""
    X, Y = data
    model = MLP([6, 8, 2], device="cpu", seed=0)
    gpunn.save(tmp_path / "m.npz", model)
    ckpt = gpunn.load_checkpoint(tmp_path / "m.npz")
    assert (ckpt.epoch, ckpt.settings, ckpt.state, ckpt.optimizer, ckpt.training) == (0, None, None, None, {})
    assert isinstance(ckpt.history, gpunn.History) and dict(ckpt.history) == {}
    assert repr(ckpt).endswith("optimizer=None)")
    with pytest.raises(gpunn.CheckpointError, match="m.npz holds a model only"):
        ckpt.resume(X, Y)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'shuffle' \(a resume continues the run"):
        ckpt.resume(X, Y, shuffle=True)  # (no run's own to take it as)


def test_a_loaded_optimizer_given_to_another_models_fit_starts_afresh_as_a_new_one(data, tmp_path):
    """The loaded optimizer is bound to its model's weights, as the run's was: another model's fit given it starts
    from zero moments and step 0, as optim.Optimizer.bind says, not from the loaded run's."""
    X, Y = data
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[gpunn.ModelCheckpoint(path)], **dict(FIT, epochs=2))
    other, fresh = (MLP([6, 8, 2], device="cpu", seed=2) for _ in range(2))
    fit = dict(epochs=1, batch_size=100, seed=3, verbose=False)
    other.fit(X, Y, optimizer=gpunn.load_checkpoint(path).optimizer, **fit)
    fresh.fit(X, Y, optimizer="adam", lr=FIT["lr"], **fit)
    numpy.testing.assert_array_equal(other.params, fresh.params)


@pytest.mark.parametrize("key, value", [("shuffle", "yes"), ("shuffle", 2), ("validation_fraction", 1.5),
                                        ("validation_fraction", "0.2"), ("standardize", "yes"),
                                        ("schedule", {"name": "cosine"}), ("schedule", "cosin"),
                                        ("schedule", gpunn.Schedule)])
def test_a_fit_option_fit_would_refuse_is_no_runs_own_though_it_reads_as_the_runs_value(
        data, tmp_path, interrupt_at, key, value):
    """A run of shuffle=True, validation_fraction 0.2, no standardize and cosine: "yes" and 2 are truthy, 1.5 and
    "0.2" no share, "yes" no standardize, a dict, "cosin" and the class Schedule no schedule: fit refuses each, so a resume does not take
    it as the run's own (and leave it to the checkpoint): it is refused as another value is."""
    X, Y = data
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)],
                                             **dict(FIT, epochs=3))
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}' \("):
        gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, **{key: value})


def test_a_checkpoint_object_resumes_once_and_the_file_loaded_again_continues(data, tmp_path, interrupt_at):
    """A second resume() of the same Checkpoint (after a Ctrl-C, or to extend the run, as in a notebook) started
    again from the position it was loaded at, with the model and optimizer it had already trained on: the run
    ended with more steps than its history said, and wrote that to the file."""
    X, Y = data
    fit = {**FIT, "epochs": 4}
    reference = MLP([6, 8, 2], device="cpu", seed=1)
    reference.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[interrupt_at(0, 2), gpunn.ModelCheckpoint(path)], **fit)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    with pytest.raises(ValueError, match="would not use them"):  # refused before training: the object is still good
        ckpt.resume(X, Y, validation_data=(X[:10], Y[:10]), verbose=False)
    assert ckpt.resume(X, Y, callbacks=[interrupt_at(2, 1)], verbose=False).interrupted
    written = path.read_bytes()
    with pytest.raises(ValueError, match=r"was resumed already: .*Load the file again"):
        ckpt.resume(X, Y, verbose=False)
    assert path.read_bytes() == written
    again = gpunn.load_checkpoint(path, device="cpu")
    again.resume(X, Y, verbose=False)
    numpy.testing.assert_array_equal(again.model.params, reference.params)



@pytest.mark.parametrize("optimizer", ["adam", "nesterov"])
def test_a_finished_run_whose_best_weights_were_restored_extends_from_the_weights_it_reached(data, tmp_path, optimizer):
    """A run that ran out of epochs with EarlyStopping's best epoch before its last ends holding the best
    weights, and so does its last checkpoint (to predict with). resume(epochs=6) must go on from the weights
    epoch 4 reached, as the run started with 6 epochs did: it went on from epoch 2's (the restored best), so
    epochs 5 and 6, and the best weights after them, were another run's (README's --resume --epochs example)."""
    X, Y = data
    scores = [5.0, 1.0, 3.0, 4.0, 0.5, 6.0]  # best: epoch 2 of 4, then epoch 5 of 6
    fit = {**FIT, "epochs": 6, "schedule": "constant", "optimizer": optimizer}

    def callbacks():
        return [_Scripted(scores), EarlyStopping(monitor="score", patience=10)]

    reference, used = MLP([6, 8, 2], device="cpu", seed=1), callbacks()
    ref_hist = reference.fit(X, Y, callbacks=used, **fit)
    assert ref_hist.best_epoch == 5
    assert used[1].last_params is None  # restored, but no checkpoint is written: no second copy of the weights kept
    path = tmp_path / "run.npz"
    first = MLP([6, 8, 2], device="cpu", seed=1)
    assert first.fit(X, Y, callbacks=callbacks() + [gpunn.ModelCheckpoint(path)], **{**fit, "epochs": 4}).best_epoch == 2
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    numpy.testing.assert_array_equal(ckpt.model.params, first.params)  # the file predicts with the best weights
    resumed = ckpt.resume(X, Y, epochs=6, callbacks=callbacks(), verbose=False)  # (the saved state, after the score)
    assert _no_timing(resumed) == _no_timing(ref_hist) and resumed.best_epoch == 5
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    for name in ckpt.optimizer.state_names():
        numpy.testing.assert_array_equal(ckpt.optimizer.state[name], reference.optimizer.state[name])
    # resumed with nothing left to train, the file still ends with the best weights and can be extended again
    again = gpunn.load_checkpoint(path, device="cpu")
    again.resume(X, Y, callbacks=callbacks(), verbose=False)
    numpy.testing.assert_array_equal(again.model.params, reference.params)


@pytest.mark.parametrize("given, meant, shown", [
    (dict(lr=0.1), "lr", "optimizer=ckpt.optimizer, lr=0.1"),
    (dict(learning_rate=0.1), "lr", "optimizer=ckpt.optimizer, lr=0.1"),  # Keras's name
    (dict(optimizer="sgd"), "optimizer", "optimizer='sgd'"),
    (dict(weight_decay=1e-4), "weight_decay", "optimizer=gpunn.Adam(weight_decay=0.0001)"),
    # a schedule's option, in each schedule that reads it (gamma: step's and exponential's)
    (dict(gamma=0.5), "gamma", 'optimizer=ckpt.optimizer, schedule=gpunn.Schedule("step", gamma=0.5)'),
    (dict(gamma=0.5), "gamma", 'optimizer=ckpt.optimizer, schedule=gpunn.Schedule("exponential", gamma=0.5)'),
    (dict(min_factor=0.2), "min_factor", 'optimizer=ckpt.optimizer, schedule=gpunn.Schedule("cosine", min_factor=0.2)'),
    # a schedule's or an optimizer's option misspelt, as a fit's is (it had no hint)
    (dict(gama=0.5), "gamma", 'optimizer=ckpt.optimizer, schedule=gpunn.Schedule("exponential", gamma=0.5)'),
    (dict(momentun=0.9), "momentum", "optimizer=gpunn.SGD(momentum=0.9)"),
    # PyTorch's betas pair, as gpunn's two options (audit39b m67: Adam(betas=(0.9, 0.99)), which Adam refuses)
    (dict(betas=(0.8, 0.99)), "betas", "optimizer=gpunn.Adam(beta1=0.8, beta2=0.99)"),
    # a share held out other than the run's, a fit's option resume has not, though it begins resume's validation_data
    # (audit39b m61 m62: "did you mean validation_data?")
    (dict(validation_fraction=0.5), "validation_fraction", "optimizer=ckpt.optimizer, validation_fraction=0.5"),
])
def test_a_fit_option_given_to_resume_shows_the_fit_that_trains_on_with_it(data, tmp_path, given, meant, shown):
    """resume(X, Y, lr=0.1) said only "got an unexpected keyword argument 'lr'", and resume(X, Y, gamma=0.5) still
    did: the run goes on with its checkpoint's settings, and the fit the message shows (run here as shown) trains
    the loaded model on with another."""
    X, Y = data
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")])
    ckpt = gpunn.load_checkpoint(tmp_path / "c.npz")
    key = next(iter(given))
    with pytest.raises(TypeError) as caught:
        ckpt.resume(X, Y, verbose=False, **given)
    said = str(caught.value)
    assert said.startswith(f"Checkpoint.resume() got an unexpected keyword argument {key!r} (")
    assert f"a resume continues the run with the settings its checkpoint holds, {meant} among them" in said
    assert (f"(did you mean {meant}? a resume continues" in said) == (key != meant)
    call = f"ckpt.model.fit(X, Y, {shown})"
    assert call in said
    history = eval(call[:-1] + ", epochs=1, verbose=False)", {"ckpt": ckpt, "X": X, "Y": Y, "gpunn": gpunn})
    assert history["epoch"] == [1] and (history["lr"] == [0.1]) == (meant == "lr")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'epoch' \(did you mean epochs\?\)$"):
        ckpt.resume(X, Y, epoch=3)  # resume's own option, misspelt


def test_an_option_only_the_other_kinds_fit_takes_given_to_resume_is_said_to_be_that_kinds(data, tmp_path):
    """An MLP's resume(X, Y, bootstrap=True) showed "ckpt.model.fit(X, Y, optimizer=ckpt.optimizer, bootstrap=True)",
    a fit that an MLP refuses: the hint took the options of an MLP's fit and an Ensemble's together."""
    X, Y = data
    one = dict(epochs=1, batch_size=400, verbose=False)
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, **one, callbacks=[gpunn.ModelCheckpoint(tmp_path / "m.npz")])
    gpunn.Ensemble([6, 8, 2], n_models=2, device="cpu", seed=0).fit(
        X, Y, **one, callbacks=[gpunn.ModelCheckpoint(tmp_path / "e.npz")])
    mlp, ensemble = gpunn.load_checkpoint(tmp_path / "m.npz"), gpunn.load_checkpoint(tmp_path / "e.npz")
    with pytest.raises(TypeError, match=r"'bootstrap' \(bootstrap is an Ensemble's fit option, and this checkpoint "
                                        r"holds an MLP's run: resume it without bootstrap\)$"):
        mlp.resume(X, Y, bootstrap=True)
    with pytest.raises(TypeError, match=r"'bootstrp' \(did you mean bootstrap\? bootstrap is an Ensemble's fit "):
        mlp.resume(X, Y, bootstrp=True)
    with pytest.raises(TypeError, match=r"'bootstrap' \(bootstrap is an Ensemble's fit option, and this is an MLP"):
        mlp.model.fit(X, Y, bootstrap=True)  # (what the hint showed)
    with pytest.raises(TypeError, match=r"'graph' \(graph is an MLP's fit option, and this checkpoint holds an "
                                        r"Ensemble's run: resume it without graph\)$"):
        ensemble.resume(X, Y, graph=True)
    with pytest.raises(TypeError, match=re.escape("ckpt.model.fit(X, Y, optimizer=ckpt.optimizer, bootstrap=True)")):
        ensemble.resume(X, Y, bootstrap=True)  # an Ensemble's own fit option is shown in its fit, as before
    assert mlp.resume(X, Y, epochs=2, verbose=False)["epoch"] == [1, 2]  # (refused before anything trained)


@pytest.mark.parametrize("epochs, says", [("3", "got the string '3'"), (2.0, "got 2.0"), (True, "got True"),
                                          (0, "got 0")])
def test_resume_checks_epochs_as_fit_does(tmp_path, epochs, says):
    """resume's epochs is checked as fit's is (audit37b r3: without the check, "3" failed comparing a str with an int,
    2.0 and True trained, and 0 was said to end before the epochs done)."""
    X, Y = datasets.make("teacher", 200, 4, seed=1, device="cpu")
    path = tmp_path / "r.npz"
    MLP([4, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=50, callbacks=[gpunn.ModelCheckpoint(path)],
                                            verbose=False)
    with pytest.raises(ValueError, match=f"^epochs must be a positive integer, {says}"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=epochs, verbose=False, checkpoint=False)


def test_resume_refuses_fewer_epochs_than_were_done_and_leaves_the_checkpoint_loadable(data, tmp_path, interrupt_at):
    # resume(epochs=2) of a 3-epoch run trained nothing, then wrote a checkpoint at epoch 3 of a 2-epoch run,
    # which every later load refused ("impossible position")
    X, Y = data
    # part-way through epoch 2, epochs=1 ends before the batch reached too
    stopped = tmp_path / "stopped.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=200, verbose=False,
                                             callbacks=[interrupt_at(1, 0), gpunn.ModelCheckpoint(stopped)])
    with pytest.raises(ValueError, match=r"the run has done 1 epoch and 1 of 6 batches of epoch 2; epochs=1 ends "
                                         r"before"):
        gpunn.load_checkpoint(stopped).resume(X, Y, epochs=1, verbose=False)
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=200, callbacks=[gpunn.ModelCheckpoint(path)],
                                             verbose=False)
    with pytest.raises(ValueError, match=r"the run has done 3 epochs; epochs=2 ends before that \(epochs is the "
                                         r"run's total"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False)["epoch"] == [1, 2, 3]  # nothing left
    assert gpunn.load_checkpoint(path).epoch == 3


def test_resuming_a_run_that_stopped_early_trains_no_further(data, tmp_path):
    X, Y = data
    model = MLP([6, 8, 2], device="cpu", seed=0)
    stopped = model.fit(X, Y, epochs=40, batch_size=100, lr=0.3, validation_fraction=0.2, verbose=False,
                        callbacks=[EarlyStopping(patience=1, min_delta=1.0), gpunn.ModelCheckpoint(tmp_path / "c.npz")])
    assert stopped.stopped_early and len(stopped["epoch"]) < 40
    ckpt = gpunn.load_checkpoint(tmp_path / "c.npz", device="cpu")
    numpy.testing.assert_array_equal(ckpt.model.params, model.params)  # the best weights, restored
    resumed = ckpt.resume(X, Y, verbose=False)
    assert resumed.stopped_early and resumed["epoch"] == stopped["epoch"]  # before the fix: one more epoch
    numpy.testing.assert_array_equal(ckpt.model.params, model.params)
    assert ckpt.optimizer.steps == model.optimizer.steps



def test_a_resume_with_nothing_left_to_train_says_so_instead_of_drawing_an_empty_bar(data, tmp_path, capsys):
    """A verbose resume of a run that had done its epochs drew "epoch 3/3: 0.00rows", and of one early stopping
    had ended "epoch 3/40: 0%|  | 0/..."; it trained nothing either way."""
    X, Y = data
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False,
                                             callbacks=[gpunn.ModelCheckpoint(tmp_path / "done.npz")])
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=40, batch_size=100, lr=0.3, validation_fraction=0.2,
                                             verbose=False, callbacks=[EarlyStopping(patience=0, min_delta=1e9),
                                                                       gpunn.ModelCheckpoint(tmp_path / "es.npz")])
    capsys.readouterr()
    assert gpunn.load_checkpoint(tmp_path / "done.npz", device="cpu").resume(X, Y)["epoch"] == [1, 2]
    assert capsys.readouterr().err == "train [cpu]: nothing left to train (2 of 2 epochs done)\n"
    assert gpunn.load_checkpoint(tmp_path / "es.npz", device="cpu").resume(X, Y)["epoch"] == [1, 2]
    assert capsys.readouterr().err == "train [cpu]: nothing left to train (early stopping ended it after epoch 2)\n"


@pytest.mark.parametrize("older", [False, True], ids=["file", "file from before callback_order"])
def test_the_stoppers_a_resume_makes_again_monitor_what_the_callbacks_passed_log_in_the_runs_order(
        data, tmp_path, interrupt_at, older):
    """A run's EarlyStopping that monitors a value a callback of the user's logs (listed before it), resumed with
    that callback passed and the stoppers left to the file: the stoppers made again ran before the callbacks
    passed, and the resume failed ("EarlyStopping monitors 'score', which the logs lack"). They run after them now,
    in the run's order (of two that restore their best weights at the end, the last one's are the run's), and the
    run ends as the one never interrupted."""
    X, Y = data

    scripts = _two_scripts

    def stoppers():
        return [EarlyStopping(monitor="score", patience=10), EarlyStopping(monitor="other", patience=10)]

    fit = {**FIT, "epochs": 6}
    reference, used = MLP([6, 8, 2], device="cpu", seed=1), stoppers()
    ref_hist = reference.fit(X, Y, callbacks=[*scripts(), *used], **fit)
    assert [cb.best_epoch for cb in used] == [5, 2]  # each restores its best at the end: the last one's stay
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[*scripts(), *stoppers(), interrupt_at(2, 0),
                                                              gpunn.ModelCheckpoint(path)], **fit)
    if older:
        _as_before_callback_order(path)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    resumed = ckpt.resume(X, Y, callbacks=scripts(), verbose=False)
    assert _no_timing(resumed) == _no_timing(ref_hist)
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)


class _OtherStopper(EarlyStopping):
    """A user's EarlyStopping of its own (a resume makes it again from its saved state where it is not passed)."""


class _WaitProbe(gpunn.Callback):
    """Records a stopper's ``wait`` at each epoch's end (no state: a resume does not know where it stood)."""

    def __init__(self, stopper):
        self.stopper, self.seen = stopper, []

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen.append((epoch, self.stopper.wait))


@pytest.mark.parametrize("older", [False, True], ids=["file", "file from before callback_order"])
def test_a_resume_runs_the_callbacks_passed_and_made_again_in_the_runs_order(data, tmp_path, interrupt_at, older):
    """Of a run's two stoppers that restore their best weights at the end (the last one's stay), one passed to the
    resume and one left to the file: the one made again ran after every callback passed (19b5845), so the first
    stopper's weights stayed, not the run's; a callback passed without a state (whose place the file does not
    hold) ran before the stopper passed ahead of it (afb5ee8), and read its wait of the epoch before. Now the
    callbacks passed run as passed, each one made again just before the first passed one the run had after it
    (review19)."""
    X, Y = data
    fit = {**FIT, "epochs": 6}
    reference = MLP([6, 8, 2], device="cpu", seed=1)
    used = [EarlyStopping(monitor="score", patience=10), _OtherStopper(monitor="other", patience=10)]
    ref_probe = _WaitProbe(used[1])
    ref_hist = reference.fit(X, Y, callbacks=[*_two_scripts(), *used, ref_probe], **fit)
    assert [cb.best_epoch for cb in used] == [5, 2]
    path = tmp_path / "c.npz"
    stoppers = [EarlyStopping(monitor="score", patience=10), _OtherStopper(monitor="other", patience=10)]
    MLP([6, 8, 2], device="cpu", seed=1).fit(
        X, Y, callbacks=[*_two_scripts(), *stoppers, _WaitProbe(stoppers[1]), interrupt_at(2, 0),
                         gpunn.ModelCheckpoint(path)], **fit)
    if older:
        _as_before_callback_order(path)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    passed = _OtherStopper(monitor="other", patience=10)  # the second stopper passed, the first left to the file
    probe = _WaitProbe(passed)
    resumed = ckpt.resume(X, Y, callbacks=[*_two_scripts(), passed, probe], verbose=False)
    assert passed.best_epoch == 2 and _no_timing(resumed) == _no_timing(ref_hist)
    assert probe.seen == ref_probe.seen[2:] and [wait for _, wait in probe.seen] == [1, 2, 3, 4]
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)  # epoch 2's, the last stopper's


class _KeysSeen(gpunn.Callback):
    """Records which of ``score`` and ``other`` each epoch's logs hold when it runs (one the run did not have)."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen.append(sorted({"score", "other"} & set(logs)))


def test_callbacks_passed_in_another_order_than_the_runs_run_in_the_runs_order(data, tmp_path, interrupt_at):
    """The run had the ``score`` logger, an EarlyStopping monitoring it, then the ``other`` logger; resumed with the
    loggers passed the other way round and the stopper left to the file, the stopper was made again just before the
    first logger passed (the run had it after the stopper), before the one it monitors: "EarlyStopping monitors
    'score', which the logs lack". The run's callbacks run in the run's order now, whatever the order passed; one
    the run did not have runs just after the callback passed before it."""
    X, Y = data
    fit = {**FIT, "epochs": 6}

    def run_callbacks(scripts):
        return [scripts[0], EarlyStopping(monitor="score", patience=10), scripts[1]]

    reference = MLP([6, 8, 2], device="cpu", seed=1)
    ref_hist = reference.fit(X, Y, callbacks=run_callbacks(_two_scripts()), **fit)
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(
        X, Y, callbacks=[*run_callbacks(_two_scripts()), interrupt_at(2, 0), gpunn.ModelCheckpoint(path)], **fit)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    score, other = _two_scripts()
    keys = _KeysSeen()
    resumed = ckpt.resume(X, Y, callbacks=[other, keys, score], verbose=False)
    assert _no_timing(resumed) == _no_timing(ref_hist) and resumed.best_epoch == 5
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    assert keys.seen == [["other", "score"]] * 4  # after the ``other`` logger, which runs after the ``score`` one


def test_a_callback_passed_twice_keeps_the_callbacks_passed_between_its_two_places(data, tmp_path, interrupt_at):
    """A run that had one logger object twice, resumed with the same list and a callback it did not have between the
    two: that callback runs after the first (it sees the score) and is not dropped. The run's-order placing kept the
    callbacks passed after a placed one under its id, and the logger's second place emptied the first's."""
    X, Y = data
    score = _Scripted([5.0, 1.0, 3.0, 4.0])
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(
        X, Y, callbacks=[score, score, interrupt_at(1, 0), gpunn.ModelCheckpoint(path)], **{**FIT, "epochs": 4})
    keys = _KeysSeen()
    resumed = gpunn.load_checkpoint(path, device="cpu").resume(X, Y, callbacks=[score, keys, score], verbose=False)
    assert resumed["epoch"] == [1, 2, 3, 4] and keys.seen == [["score"]] * 3


class _WaitWriter(gpunn.Callback):
    """Writes the run's EarlyStopping's ``wait`` at each epoch's end into the checkpoints, and reads nothing back."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.seen.append(next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)).wait)

    def state_dict(self):
        return {"seen": list(self.seen)}, {}


@pytest.mark.parametrize("older", [False, True], ids=["file", "file from before callback_order"])
def test_a_callback_passed_that_writes_a_state_and_reads_none_runs_at_its_place_in_the_run(
        data, tmp_path, interrupt_at, older):
    """A callback that writes a state and reads none back (R21, mut20): a file from before callback_order says its
    place (its saved state's index), which a resume did not use, so it ran before the EarlyStopping made again that
    the run had before it, and read that stopper's wait of the epoch before. It runs at its saved place now, as in a
    file that records the run's order."""
    X, Y = data
    fit = {**FIT, "epochs": 5}

    def stopper():
        return EarlyStopping(monitor="loss", patience=10, min_delta=1e9)  # never improves: its wait counts the epochs

    reference = _WaitWriter()
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, callbacks=[stopper(), reference], **fit)
    assert reference.seen == [0, 1, 2, 3, 4]
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(
        X, Y, callbacks=[stopper(), _WaitWriter(), interrupt_at(2, 0), gpunn.ModelCheckpoint(path)], **fit)
    if older:
        _as_before_callback_order(path)
    passed = _WaitWriter()
    gpunn.load_checkpoint(path, device="cpu").resume(X, Y, callbacks=[passed], verbose=False)
    assert passed.seen == reference.seen[2:]


def test_a_resumed_run_ends_with_the_best_weights_of_an_epoch_before_the_resume(data, tmp_path, interrupt_at):
    """EarlyStopping's best weights travel in the checkpoint: the best epoch (1) came before the stop, no
    epoch after the resume beats it, and the resumed run ends with epoch 1's weights as the straight one."""
    X, Y = data
    fit = {**FIT, "epochs": 8}
    reference = MLP([6, 8, 2], device="cpu", seed=0)
    ref_hist = reference.fit(X, Y, callbacks=[EarlyStopping(patience=3, min_delta=1e6)], **fit)
    assert ref_hist.best_epoch == 1 and ref_hist["epoch"] == [1, 2, 3, 4]
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, callbacks=[EarlyStopping(patience=3, min_delta=1e6),
                                                              interrupt_at(1, 2), gpunn.ModelCheckpoint(path)], **fit)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    resumed = ckpt.resume(X, Y, verbose=False)
    assert resumed.best_epoch == 1 and resumed.stopped_early and resumed["epoch"] == [1, 2, 3, 4]
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)


def test_a_built_in_callback_with_other_settings_on_resume_takes_over_the_saved_state_with_a_warning(data, tmp_path):
    """resume(callbacks=[EarlyStopping(patience=1, monitor="loss")]) for a run saved with EarlyStopping(patience=6)
    goes on from the saved wait and best by the new rules (the documented protocol), so the run is no longer the
    one saved: a warning names each setting that differs. The saved settings, or another ModelCheckpoint, pass."""
    import warnings

    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, validation_fraction=0.2, verbose=False,
                                             callbacks=[EarlyStopping(patience=6), ReduceLROnPlateau(patience=2),
                                                        gpunn.ModelCheckpoint(path)])
    with pytest.warns(UserWarning, match=r"EarlyStopping\(monitor='loss', patience=1, .*\) takes over the state of the "
                                         r"EarlyStopping that .*c\.npz saved, with other settings \(monitor 'val_loss' "
                                         r"-> 'loss', patience 6 -> 1\): the run goes on by these") as caught:
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False,
                                           callbacks=[EarlyStopping(patience=1, monitor="loss")])
    assert [w.filename for w in caught if "takes over" in str(w.message)] == [__file__]  # said at the user's line

    class OwnEarlyStopping(gpunn.Callback):  # a callback of the user's own with a built-in's name: its own rules
        def get_config(self):
            return {"monitor": "loss", "patience": 1}

        def load_state_dict(self, state, arrays=None):
            self.state = state

    OwnEarlyStopping.__name__ = "EarlyStopping"
    for passed in ([EarlyStopping(patience=6), ReduceLROnPlateau(patience=2), gpunn.ModelCheckpoint(tmp_path / "d.npz", every=2)],
                   [EarlyStopping(patience=6, monitor="val_loss", mode="min")],  # the defaults as they resolve
                   [OwnEarlyStopping()]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False, callbacks=passed)
        assert not [w for w in caught if "takes over" in str(w.message)], passed
    # a run without validation: its default monitor resolved to 'loss', which passed as such is no other setting
    # (mut16c K124: the saved default was resolved as a validated run's, 'val_loss', and the warning said so)
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[EarlyStopping(patience=6), gpunn.ModelCheckpoint(path)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False,
                                           callbacks=[EarlyStopping(patience=6, monitor="loss", mode="min")])
    assert not [w for w in caught if "takes over" in str(w.message)]


def test_other_settings_for_a_run_with_nothing_left_to_train_are_said_to_change_nothing(data, tmp_path):
    """The takeover warning said "the run goes on by these" of a resume that trains nothing: a run early stopping
    ended (its saved stop stands, whatever patience is passed now) or one whose epochs are all done."""
    X, Y = data
    path = tmp_path / "c.npz"
    history = MLP([6, 8, 2], device="cpu", seed=0).fit(
        X, Y, epochs=8, batch_size=200, verbose=False,
        callbacks=[EarlyStopping(patience=1, min_delta=1e6), gpunn.ModelCheckpoint(path)])
    assert history.stopped_early and history["epoch"] == [1, 2]
    with pytest.warns(UserWarning, match=r"with other settings \(patience 1 -> 50\), which change nothing: early "
                                         r"stopping ended the run after epoch 2, and this resume trains no more"
                                         r" \(a stopped run stays stopped\)") as caught:
        resumed = gpunn.load_checkpoint(path).resume(X, Y, verbose=False, checkpoint=False,
                                                     callbacks=[EarlyStopping(patience=50, min_delta=1e6)])
    assert resumed["epoch"] == [1, 2] and not [w for w in caught if "goes on" in str(w.message)]

    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False,
                                             callbacks=[EarlyStopping(patience=6), gpunn.ModelCheckpoint(path)])
    with pytest.warns(UserWarning, match=r"with other settings \(patience 6 -> 1\), which change nothing: the run "
                                         r"has done its 2 of 2 epochs, and this resume trains no more \(pass more "
                                         r"epochs to train on by them\)"):
        gpunn.load_checkpoint(path).resume(X, Y, verbose=False, checkpoint=False, callbacks=[EarlyStopping(patience=1)])
    with pytest.warns(UserWarning, match=r"\(patience 6 -> 1\): the run goes on by these"):  # epochs left: as before
        gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False, checkpoint=False,
                                           callbacks=[EarlyStopping(patience=1)])


def test_a_resume_that_trains_nothing_leaves_the_file_it_resumed_as_it_was(data, tmp_path):
    """A resume of a run early stopping ended, or of one whose epochs are all done, trains nothing; it rewrote the
    file it was loaded from with the settings passed now (patience 50 for the patience 1 that stopped the run), so
    the file no longer said which stopped it. It is left as it was; a writer to another file still writes there."""
    X, Y = data
    path, other = tmp_path / "c.npz", tmp_path / "other.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=8, batch_size=200, verbose=False,
                                             callbacks=[EarlyStopping(patience=1, min_delta=1e6),
                                                        gpunn.ModelCheckpoint(path)])
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the other settings' warning (tested above)
        resumed = gpunn.load_checkpoint(path).resume(X, Y, verbose=False,
                                                     callbacks=[EarlyStopping(patience=50, min_delta=1e6)])
        assert resumed["epoch"] == [1, 2] and path.read_bytes() == before
        gpunn.load_checkpoint(path).resume(X, Y, verbose=False, callbacks=[EarlyStopping(patience=50, min_delta=1e6),
                                                                           gpunn.ModelCheckpoint(str(path))])
        assert path.read_bytes() == before  # passed for the same file: as the run's own writer
        same_file = gpunn.ModelCheckpoint(f"{tmp_path}/./c.npz")  # the same file by another spelling of its path
        gpunn.load_checkpoint(path).resume(X, Y, verbose=False,
                                           callbacks=[EarlyStopping(patience=50, min_delta=1e6), same_file])
        assert path.read_bytes() == before
        gpunn.load_checkpoint(path).resume(X, Y, verbose=False, checkpoint=other,
                                           callbacks=[EarlyStopping(patience=50, min_delta=1e6)])
    assert path.read_bytes() == before
    assert gpunn.load_checkpoint(other).training["callbacks"][0]["config"]["patience"] == 50  # asked for there
    assert gpunn.load_checkpoint(path).training["callbacks"][0]["config"]["patience"] == 1

    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=200, verbose=False,
                                             callbacks=[EarlyStopping(patience=6), gpunn.ModelCheckpoint(path)])
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gpunn.load_checkpoint(path).resume(X, Y, verbose=False, callbacks=[EarlyStopping(patience=1)])
        assert path.read_bytes() == before  # its 2 of 2 epochs done
        gpunn.load_checkpoint(path).resume(X, Y, epochs=3, verbose=False, callbacks=[EarlyStopping(patience=1)])
    ckpt = gpunn.load_checkpoint(path)  # an epoch trained: written, by the settings it trained by
    assert ckpt.epoch == 3 and ckpt.training["callbacks"][0]["config"]["patience"] == 1


@pytest.mark.parametrize("edit, says", [
    (lambda entry: entry["config"].update(mode="sideways"), r"mode must be 'auto', 'min' or 'max', got 'sideways'"),
    (lambda entry: entry["state"].pop("best_epoch"), r"'best_epoch'"),
], ids=["mode sideways", "state without best_epoch"])
def test_a_hand_edited_callback_setting_or_state_is_a_checkpoint_error_with_or_without_a_callback_passed(
        data, tmp_path, edit, says):
    """mode="sideways" in the saved EarlyStopping's settings, or its state without best_epoch, is the file's fault:
    a CheckpointError naming the callback and the field, whether the saved callback is restored or a passed one
    takes over its state (that raised a plain ValueError, "mode must be ...", and KeyError: 'best_epoch')."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[EarlyStopping(patience=6), gpunn.ModelCheckpoint(path)])

    def edited(meta, arrays):
        entry, = [cb for cb in meta["training"]["callbacks"] if cb["class"] == "EarlyStopping"]
        edit(entry)

    path.write_bytes(_rewrite_meta(path.read_bytes(), edited))
    for passed in ([], [EarlyStopping(patience=6)]):
        with pytest.raises(CheckpointError, match=rf"c\.npz: invalid saved state for EarlyStopping \({says}\)"):
            gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False, callbacks=passed)


class _Strict(_Tally):
    """A user's stateful callback whose load_state_dict, made with ``refuse``, refuses the state it is given."""

    def __init__(self, refuse=False):
        self.refuse = refuse

    def load_state_dict(self, state, arrays):
        if self.refuse:
            raise ValueError("_Strict wants epochs > 0")


def test_a_users_callback_refusing_its_saved_state_raises_its_own_error_not_the_files(data, tmp_path):
    """A built-in callback refusing its saved state is the file's fault (a CheckpointError, above); a user's own
    class refusing one passed to resume raises its own error as it is: the check is the user's, whose code to look
    at, not the file's."""
    X, Y = data
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=200, verbose=False,
                                             callbacks=[_Strict(), gpunn.ModelCheckpoint(path)])
    with pytest.raises(ValueError, match=r"^_Strict wants epochs > 0$") as raised:
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False, checkpoint=False, callbacks=[_Strict(refuse=True)])
    assert type(raised.value) is ValueError


def test_resume_refuses_other_data(data, tmp_path):
    X, Y = data
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, callbacks=[gpunn.ModelCheckpoint(tmp_path / "c.npz")],
                                             verbose=False)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'c.npz'))} trained on {len(X):,} rows; these X "
                                         r"and Y have 500\. Resume with the same X and Y\.$"):
        gpunn.load_checkpoint(tmp_path / "c.npz").resume(X[:500], Y[:500], verbose=False)
    # a held-out share: the count it trained on is what the share left (it said "these data give 450" of 500 rows)
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, validation_fraction=0.1, verbose=False,
                                             callbacks=[gpunn.ModelCheckpoint(tmp_path / "v.npz")])
    trained = gpunn.load_checkpoint(tmp_path / "v.npz").settings.train_rows
    with pytest.raises(ValueError, match=rf" trained on {trained:,} rows \(those validation_fraction=0\.1 left of X\); "
                                         r"these X and Y have 500, 450 after that split\."):
        gpunn.load_checkpoint(tmp_path / "v.npz").resume(X[:500], Y[:500], verbose=False)
    # the same shape, other values: resumed without a word (a regenerated or reordered data set is not the run)
    changed = X.copy()
    changed[7, 3] += 1e-3
    # (the columns in another order too: the checksum summed each row's values, whatever their order)
    for X2, Y2 in ((changed, Y), (X[::-1], Y[::-1]), (X, Y * 2), (X[:, [1, 0, 2, 3, 4, 5]], Y), (X, Y[:, ::-1])):
        with pytest.raises(ValueError, match=r"trained on other values: .*a checksum differs"):
            gpunn.load_checkpoint(tmp_path / "c.npz").resume(X2, Y2, verbose=False)
    assert gpunn.load_checkpoint(tmp_path / "c.npz").resume(X.copy(), Y.copy(), epochs=2, verbose=False)["epoch"] == [1, 2]


def test_other_values_given_to_a_run_of_the_other_kind_of_device_say_that_make_draws_other_rows_there(data, tmp_path):
    """A GPU script's run resumed by the same script on a laptop (datasets.make(..., seed=0) again) was told only
    "trained on other values ... Resume with the same X and Y": the same seed's call gives other rows on the CPU.
    The refusal now says so where the run trained on the other kind of device (here a CPU run relabelled cuda:0),
    and not where it trained on this kind (resumed on the CPU, whatever device "auto" finds)."""
    X, Y = data
    path, gpu_run = tmp_path / "c.npz", tmp_path / "gpu.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, callbacks=[gpunn.ModelCheckpoint(path)], verbose=False)
    rewrite_meta(path, gpu_run, lambda meta: meta.update(device="cuda:0"))
    with pytest.raises(ValueError, match=r"trained on other values: .* It trained on cuda:0, and gpunn\.datasets\.make "
                                         r"draws other rows on the CPU for the same seed: .*\(numpy\.save\) and resume "
                                         r"on those\.$"):
        gpunn.load_checkpoint(gpu_run, device="cpu").resume(X[::-1], Y[::-1], verbose=False)
    with pytest.raises(ValueError, match=r"in the same order\.$"):
        gpunn.load_checkpoint(path, device="cpu").resume(X[::-1], Y[::-1], verbose=False)
    assert gpunn.load_checkpoint(gpu_run, device="cpu").resume(X, Y, epochs=2, verbose=False,
                                                             checkpoint=False)["epoch"] == [1, 2]


def test_a_file_from_before_the_checksum_counted_columns_is_checked_by_its_own_rule(data, tmp_path):
    """Checkpoints record the rule of their checksum of in-memory rows ("fingerprint_rule" 2: each row's values
    weighted by their column's place, so X or Y with its columns in another order is refused). A file from
    before (tests/data/main-v2-run.npz, plain row sums: rule 1, unrecorded) is checked by its own rule: the same
    X and Y resume, other rows are refused, and the columns in another order pass as they did then (its sums
    cannot tell them); the run resumed from it records rule 2. Where this machine's teacher targets are not those
    the file was trained on (datasets.make's BLAS products: another machine's kernels round other last bits, as
    an AVX-512 Xeon's did), its rows are other data here: skipped."""
    X, Y = data
    path = written_before_callback_order("main-v2-run.npz", tmp_path)
    assert "fingerprint_rule" not in gpunn.load_checkpoint(path, device="cpu").training["source"]
    now = tmp_path / "now.npz"
    try:
        gpunn.load_checkpoint(path, device="cpu").resume(X, Y, epochs=3, verbose=False, checkpoint=now)
    except ValueError as error:
        if "trained on other values" not in str(error):
            raise
        pytest.skip("this machine's teacher targets are not those tests/data/main-v2-run.npz was trained on")
    assert gio.read_meta(now)["training"]["source"]["fingerprint_rule"] == 2
    with pytest.raises(ValueError, match="trained on other values"):
        gpunn.load_checkpoint(path, device="cpu").resume(X[::-1], Y[::-1], verbose=False)
    swapped = X[:, [1, 0, 2, 3, 4, 5]]
    gpunn.load_checkpoint(path, device="cpu").resume(swapped, Y, epochs=3, verbose=False, checkpoint=False)


def test_a_checksum_rule_this_gpunn_does_not_know_is_refused_and_rule_1_is_plain_row_sums(data, tmp_path):
    """The rule-1 file here is this machine's own checkpoint with rule 1's sums and no rule recorded (the test above
    needs a machine whose arithmetic made the old file's data): the columns in another order pass, other rows not."""
    from gpunn.training.sources import row_sums_fingerprint

    X, Y = data
    path, old, now = tmp_path / "c.npz", tmp_path / "old.npz", tmp_path / "now.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, callbacks=[gpunn.ModelCheckpoint(path)],
                                             verbose=False)
    assert gio.read_meta(path)["training"]["source"]["fingerprint_rule"] == 2

    def as_rule_1(meta):
        del meta["training"]["source"]["fingerprint_rule"]
        meta["training"]["source"]["fingerprint"] = row_sums_fingerprint(numpy, X, Y)

    rewrite_meta(path, old, as_rule_1)
    swapped = X[:, [1, 0, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="trained on other values"):
        gpunn.load_checkpoint(path, device="cpu").resume(swapped, Y, epochs=2, verbose=False, checkpoint=False)
    gpunn.load_checkpoint(old, device="cpu").resume(swapped, Y, epochs=2, verbose=False, checkpoint=False)
    with pytest.raises(ValueError, match="trained on other values"):
        gpunn.load_checkpoint(old, device="cpu").resume(X[::-1], Y[::-1], epochs=2, verbose=False, checkpoint=False)
    rewrite_meta(path, now, lambda meta: meta["training"]["source"].update(fingerprint_rule=3))
    with pytest.raises(ValueError, match=r"^.*now\.npz: the checksum of the data was made by rule 3, which this "
                                         r"gpunn does not know \(it knows 1, 2\): a newer gpunn's file"):
        gpunn.load_checkpoint(now, device="cpu").resume(X, Y, epochs=4, verbose=False, checkpoint=False)


def test_a_run_records_its_validation_data_or_its_held_out_rows_apart_for_its_resume_to_compare(data, tmp_path):
    """A run's checkpoint records validation_data (rows and checksum) as "validation_data" when the run was given
    them; one holding out validation_fraction of its rows records those as "held_out" (audit37b m23: recorded as
    validation_data, a resume compared them as such)."""
    X, Y = data
    for fit, key in ((dict(validation_fraction=0.2), "held_out"), (dict(validation_data=(X[:100], Y[:100])),
                                                                   "validation_data")):
        path = tmp_path / "run.npz"
        MLP([6, 4, 2], device="cpu", seed=0).fit(X[100:], Y[100:], epochs=1, batch_size=200, verbose=False,
                                                 callbacks=[gpunn.ModelCheckpoint(path)], **fit)
        training = gpunn.load_checkpoint(path).training
        assert {k for k in ("validation_data", "held_out") if k in training} == {key}
        assert training[key]["rows"] == (220 if key == "held_out" else 100)


def test_a_resume_refuses_held_out_rows_other_than_the_runs(data, tmp_path):
    """validation_fraction's held-out rows decide val_loss, and the early stopping, plateaus and best weights that
    follow it: a resume checked the training rows' checksum alone, and X and Y whose held-out rows held other targets
    or features (or the same rows in another order) went on without a word. A file from before the record (none)
    resumes unchecked, as before."""
    from gpunn.training.fit import held_out_rows

    X, Y = data
    path, old = tmp_path / "run.npz", tmp_path / "old.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, validation_fraction=0.2, verbose=False,
                                             callbacks=[EarlyStopping(patience=3), gpunn.ModelCheckpoint(path)])
    held, _ = held_out_rows(len(X), 0.2, gpunn.load_checkpoint(path).settings.seed)
    other_y, other_x, reordered = Y.copy(), X.copy(), (X.copy(), Y.copy())
    other_y[held[0]] += 1
    other_x[held[-1]] = other_x[held[-1], ::-1]
    for a in reordered:
        a[held] = a[held[::-1]]
    for X2, Y2 in ((X, other_y), (other_x, Y), reordered):
        with pytest.raises(ValueError, match=r"run\.npz held out other rows: the held-out rows \(validation_fraction="
                                             r"0\.2's 240\) of these X and Y are not the run's, though its training "
                                             r"rows are \(a checksum differs: .*\)\. .* Resume with the same X and "
                                             r"Y, in the same order\.$"):
            gpunn.load_checkpoint(path).resume(X2, Y2, epochs=2, verbose=False)
    rewrite_meta(path, old, lambda meta: meta["training"].pop("held_out"))
    assert gpunn.load_checkpoint(old).resume(X, other_y, epochs=2, verbose=False, checkpoint=False)["epoch"] == [1, 2]
    assert gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)["epoch"] == [1, 2]
    assert "held_out" in gpunn.load_checkpoint(path).training  # (the resume's writes record it again)
    rewrite_meta(path, old, lambda meta: meta["training"]["held_out"].update(fingerprint=[0.0]))
    with pytest.raises(ValueError, match="invalid held_out record"):
        gpunn.load_checkpoint(old)


def test_resume_refuses_other_validation_data_or_validation_data_the_run_had_none_of(data, tmp_path):
    """validation_data decide early stopping, plateaus and the best weights: resumed with others, the run
    went on without a word (and one given to a run that had none, or held out a fraction, was dropped)."""
    X, Y = data
    Xv, Yv = X[:100], Y[:100]
    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(X[100:], Y[100:], epochs=1, validation_data=(Xv, Yv), verbose=False,
                                             callbacks=[EarlyStopping(patience=3), gpunn.ModelCheckpoint(path)])
    for other, match in (((Xv[:99], Yv[:99]), "validated on 100 rows; this validation_data has 99"),
                         ((Xv, Yv * 2), "validated on other values: .*a checksum differs"),
                         ((Xv[::-1], Yv[::-1]), "validated on other values"),
                         ((Xv[:, ::-1], Yv), "validated on other values"), ((Xv, Yv[:, ::-1]), "validated on other")):
        with pytest.raises(ValueError, match=match):
            gpunn.load_checkpoint(path).resume(X[100:], Y[100:], epochs=2, validation_data=other, verbose=False)
    # the same rows (float32 here, the model's dtype: the checksum is of the rows the model scores) resume
    same = (Xv.astype("float32"), Yv.copy())
    assert gpunn.load_checkpoint(path).resume(X[100:], Y[100:], epochs=2, validation_data=same, verbose=False)["epoch"] == [1, 2]
    for fit, had in ((dict(validation_fraction=0.2), r"held out validation_fraction=0.2 of its rows"),
                     ({}, "was given no validation_data")):
        MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)],
                                                 **fit)
        with pytest.raises(ValueError, match=f"the run {had}; resuming it with validation_data would not use them"):
            gpunn.load_checkpoint(path).resume(X, Y, epochs=2, validation_data=(Xv, Yv), verbose=False)



def test_resume_refuses_a_validation_source_for_validation_arrays_and_the_reverse(data, tmp_path):
    """A run on a source validated on arrays resumed with a validation source (or the reverse) is refused as other
    validation data, not with a KeyError from comparing an arrays record with a source's config (mut9: no test
    held it)."""
    X, Y = data
    Xv, Yv = X[:100], Y[:100]
    for name, array in (("x", X[100:]), ("y", Y[100:]), ("xv", Xv), ("yv", Yv)):
        numpy.save(tmp_path / f"{name}.npy", array)

    def npy(x, y):
        return gpunn.data.npy(tmp_path / f"{x}.npy", tmp_path / f"{y}.npy", device="cpu")

    for given, other, match in (((Xv, Yv), npy("xv", "yv"), "validated on arrays, and validation_data is a source now"),
                                (npy("xv", "yv"), (Xv, Yv), "validated on a source, and validation_data is arrays now")):
        path = tmp_path / "c.npz"
        MLP([6, 8, 2], device="cpu", seed=0).fit(npy("x", "y"), epochs=1, validation_data=given, verbose=False,
                                                 callbacks=[gpunn.ModelCheckpoint(path)])
        with pytest.raises(ValueError, match=match):
            gpunn.load_checkpoint(path).resume(npy("x", "y"), epochs=2, validation_data=other, verbose=False)


def test_a_run_extended_twice_after_early_stopping_restored_is_the_straight_run(tmp_path):
    """EarlyStopping puts the weights a restored run had reached (last_params) back on resume and forgets them: an
    extension whose last epoch is its best (no restore at its end) must not save them again, or a second extension
    went back to them (mut9: no test extended twice). Validation losses 0.60, 0.28, 0.289, 0.265, ...: the first
    part (3 epochs) restores epoch 2, the extension to 4 ends on its best."""
    X, Y = datasets.make("teacher", 600, 4, n_outputs=1, noise=0.3, seed=3, device="cpu")
    fit = dict(batch_size=50, lr=0.02, optimizer="adam", validation_data=(X[:150], Y[:150]), verbose=False)
    straight = MLP([4, 16, 1], device="cpu", seed=22)
    straight.fit(X[150:], Y[150:], epochs=5, callbacks=[EarlyStopping(patience=5)], **fit)
    path = tmp_path / "c.npz"
    MLP([4, 16, 1], device="cpu", seed=22).fit(X[150:], Y[150:], epochs=3, **fit,
                                               callbacks=[EarlyStopping(patience=5), gpunn.ModelCheckpoint(path)])
    for epochs in (4, 5):
        ckpt = gpunn.load_checkpoint(path, device="cpu")
        ckpt.resume(X[150:], Y[150:], epochs=epochs, validation_data=fit["validation_data"], verbose=False)
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(path, device="cpu").model.params, straight.params)


def test_resume_refuses_arrays_for_a_run_on_a_source_and_the_reverse(data, tmp_path):
    """In-memory arrays give other batches than a source's windows (and the reverse): a run on one is not resumed
    on the other (mut9: without the check a run on a source went on on arrays without a word)."""
    X, Y = data
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)

    def source():
        return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", device="cpu")

    path = tmp_path / "c.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(source(), epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    with pytest.raises(ValueError, match=r"was trained on a gpunn.data source \(npy\); in-memory arrays give other"):
        gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)
    MLP([6, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    with pytest.raises(ValueError, match="was trained on in-memory arrays; a gpunn.data source gives other batches"):
        gpunn.load_checkpoint(path).resume(source(), epochs=2, verbose=False)


def test_resume_compares_a_validation_sources_data_not_how_it_is_read(data, tmp_path):
    """A validation source is read whole in file order with the training statistics: a file's seed, shuffle and
    standardize flag change nothing and are free on resume; a synthetic source's seed draws its rows and is not
    (mut9: each rule could be turned around and no test failed)."""
    X, Y = data
    for name, array in (("x", X[100:]), ("y", Y[100:]), ("xv", X[:100]), ("yv", Y[:100])):
        numpy.save(tmp_path / f"{name}.npy", array)
    path = tmp_path / "c.npz"

    def train():
        return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", device="cpu")

    MLP([6, 8, 2], device="cpu", seed=0).fit(
        train(), epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)],
        validation_data=gpunn.data.npy(tmp_path / "xv.npy", tmp_path / "yv.npy", seed=1, device="cpu"))
    read_otherwise = gpunn.data.npy(tmp_path / "xv.npy", tmp_path / "yv.npy", seed=2, shuffle=False, standardize=True,
                                    device="cpu")
    assert gpunn.load_checkpoint(path).resume(train(), epochs=2, validation_data=read_otherwise,
                                              verbose=False)["epoch"] == [1, 2]

    def synthetic(seed, rows):
        return gpunn.data.synthetic("teacher", rows=rows, n_features=6, n_outputs=2, seed=seed, device="cpu")

    MLP([6, 8, 2], device="cpu", seed=0).fit(synthetic(0, 3000), epochs=1, verbose=False, validation_data=synthetic(1, 500),
                                             callbacks=[gpunn.ModelCheckpoint(path)])
    with pytest.raises(ValueError, match="validated on another source: seed was 1, now 2"):
        gpunn.load_checkpoint(path, device="cpu").resume(synthetic(0, 3000), epochs=2,
                                                         validation_data=synthetic(2, 500), verbose=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_round_trip(tmp_path, dtype):
    model = MLP([3, 5, 4, 2], activation=["gelu", "tanh"], output_activation="sigmoid", bias=False, dtype=dtype,
                device="cpu", seed=7)
    gio.save(tmp_path / "m.npz", model)
    back = gpunn.load(tmp_path / "m.npz", device="cpu")
    assert repr(back) == repr(model) and back.seed == 7 and back.params.dtype == model.params.dtype
    X = numpy.random.default_rng(0).standard_normal((10, 3))
    numpy.testing.assert_array_equal(back.predict(X), model.predict(X))
    with pytest.raises(CheckpointError, match="model only"):
        gpunn.load_checkpoint(tmp_path / "m.npz").resume(X, X[:, :2])


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = MLP([2, 3, 1], device="cpu", seed=0)
    path = tmp_path / "m.npz"
    gio.save(path, model)
    before = path.read_bytes()

    def broken_savez(fh, arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_format, "_savez", broken_savez)
    model.params[...] = 1.0
    with pytest.raises(OSError, match="disk full"):
        gio.save(path, model)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # the temp file was removed


def test_a_write_is_made_durable_before_the_rename_and_the_rename_after_it(tmp_path, monkeypatch):
    """The module docstring's order (mut16c K50, K51: either fsync dropped passed every test): the temp file's
    whole bytes are fsynced, then it is renamed over the path, then the directory is fsynced so that the rename
    itself survives a power cut. A write's file has the mode a plain open gives it (0o666 less the umask,
    not mkstemp's 0o600: K52)."""
    import stat

    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync dir",) if stat.S_ISDIR(st.st_mode) else ("fsync file", st.st_size))
        fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    path = tmp_path / "m.npz"
    gio.save(path, MLP([2, 3, 1], device="cpu", seed=0))
    assert events == [("fsync file", path.stat().st_size), ("replace", "m.npz"), ("fsync dir",)]
    events.clear()  # a write that leaves its bytes in the file object's buffer: they are flushed before the fsync
    atomic.atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x" * 100))
    assert events == [("fsync file", 100), ("replace", "a.bin"), ("fsync dir",)]
    (tmp_path / "plain").write_bytes(b"")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


@pytest.mark.parametrize("mask", [0o027, 0o077], ids=["umask 027", "umask 077"])
def test_a_write_takes_the_umask_the_process_has_as_it_writes_and_never_sets_it(tmp_path, monkeypatch, mask):
    """The mode is the one a plain open gives a new file as the write runs: a umask set after gpunn was imported
    counts (atomic.py read it once at import), and gpunn never sets it to read it (a process-wide moment in which
    other threads' new files were made world-writable). One of the two masks differs from the one at import."""
    import stat

    before = os.umask(mask)
    try:
        set_to = []
        monkeypatch.setattr(os, "umask", lambda m: set_to.append(m) or mask)
        atomic.atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x"))
        gio.save(tmp_path / "m.npz", MLP([2, 3, 1], device="cpu", seed=0))
    finally:
        monkeypatch.undo()
        os.umask(before)
    assert set_to == []
    assert {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.bin", "m.npz")} == {0o666 & ~mask}


def test_a_write_removes_only_temp_files_of_writers_that_are_gone(tmp_path, monkeypatch):
    """Before it writes, a checkpoint write removes ``.NAME.PID.*.tmp`` files whose PID no longer runs, and nothing
    else: not the temp file of a PID it may not signal (EPERM: another user's running writer, mut16c K55), nor a
    file of the same prefix that is not a temp file (K56)."""
    kill = os.kill

    def kill_as_another_user(pid, sig):
        if pid == 999_999_001:  # runs, but not as us
            raise PermissionError(1, "Operation not permitted")
        if pid in (999_999_002, 999_999_003):  # gone
            raise ProcessLookupError(3, "No such process")
        return kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill_as_another_user)
    for name in (".m.npz.999999001.abc.tmp", ".m.npz.999999002.abc.tmp", ".m.npz.999999003.notes"):
        (tmp_path / name).write_bytes(b"x")
    gio.save(tmp_path / "m.npz", MLP([2, 3, 1], device="cpu", seed=0))
    assert sorted(os.listdir(tmp_path)) == [".m.npz.999999001.abc.tmp", ".m.npz.999999003.notes", "m.npz"]


def test_a_temp_file_of_this_pid_that_another_process_left_is_removed_by_the_next_write(tmp_path):
    """A writer killed mid-write in a container left .m.npz.1.*.tmp; the restarted program is PID 1 again, and its
    writes skipped every temp file of their own PID as their own: the killed write's part of a checkpoint stayed for
    good. A temp file of this PID without this process's mark is removed as a killed writer's is; this process's
    own, a write under way in another thread, is left."""
    from gpunn import atomic

    left = tmp_path / f".m.npz.{os.getpid()}.deadbeef1234.tmp"  # as the process before the restart named it
    ours = tmp_path / f".m.npz.{os.getpid()}-{atomic._HOST}.{atomic._PROCESS_MARK}5678.tmp"
    left.write_bytes(b"\0" * 4096)
    ours.write_bytes(b"")
    gio.save(tmp_path / "m.npz", MLP([2, 3, 1], device="cpu", seed=0))
    assert sorted(os.listdir(tmp_path)) == [ours.name, "m.npz"]


def test_another_machines_temp_file_on_shared_storage_is_left_and_this_ones_of_a_pid_gone_is_removed(tmp_path,
                                                                                                   monkeypatch):
    """On storage machines share (NFS, Lustre), a write's temp file named only its PID: another machine's writer, its
    PID running on no process here, had its temp file removed under its write by this machine's next write to the same
    path. The name holds the machine too; only this machine's are judged by their PID."""
    from gpunn import atomic

    def temp_of(host=None, pid=999_999_002):  # a write of PID on HOST (None: this machine); no PID runs past pid_max
        with monkeypatch.context() as m:
            if host:
                m.setattr(atomic, "_HOST", host, raising=False)
            m.setattr(os, "getpid", lambda: pid)
            fd, name = atomic.temp_beside(tmp_path / "m.npz")
        os.write(fd, b"a write under way")
        os.close(fd)
        return os.path.basename(name)

    elsewhere, here = temp_of("0badc0de"), temp_of()
    gio.save(tmp_path / "m.npz", MLP([2, 3, 1], device="cpu", seed=0))
    assert sorted(os.listdir(tmp_path)) == sorted([elsewhere, "m.npz"])  # here's removed, elsewhere's left
    assert elsewhere.startswith(".m.npz.999999002-0badc0de.") and here.startswith(f".m.npz.999999002-{atomic._HOST}.")


def test_a_temp_name_another_thread_holds_is_never_opened_again_and_a_file_of_no_pid_is_left(tmp_path, monkeypatch):
    """A temp file name is a new file's (O_EXCL): where the random part drawn names this process's write under way
    in another thread, the next is drawn, and that one's bytes stay as its thread wrote them (a plain open would
    write over them, then rename them away). A file ``.NAME.word.tmp`` whose PID part is no number is not a
    writer's, and is left."""
    draws = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(draws))
    other = tmp_path / f".a.bin.{os.getpid()}-{atomic._HOST}.{atomic._PROCESS_MARK}aaaa.tmp"
    other.write_bytes(b"the other thread's write")
    (tmp_path / ".a.bin.backup.tmp").write_bytes(b"the user's")
    atomic.atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x"))
    assert (tmp_path / "a.bin").read_bytes() == b"x" and other.read_bytes() == b"the other thread's write"
    assert (tmp_path / ".a.bin.backup.tmp").read_bytes() == b"the user's"
    assert sorted(os.listdir(tmp_path)) == sorted([".a.bin.backup.tmp", other.name, "a.bin"])


def test_a_write_under_way_in_another_thread_is_left_whole_by_a_second_write_to_the_same_path(tmp_path):
    """Two threads write one path at once (the second starts and ends while the first writes): the second leaves
    the first's temp file (this process's, told by its mark) alone, so the first renames it over the path after.
    Both writes succeed, the path holds the last renamed, and no temp file is left."""
    import threading

    path = tmp_path / "a.bin"
    errors = []

    def second():
        try:
            atomic.atomic_write(path, lambda fh: fh.write(b"second"))
        except BaseException as exc:  # (raised in the thread: kept for the assertion below)
            errors.append(exc)

    def first(fh):
        fh.write(b"first")
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()

    atomic.atomic_write(path, first)
    assert errors == [] and path.read_bytes() == b"first" and os.listdir(tmp_path) == ["a.bin"]


def test_a_temp_file_that_cannot_be_made_names_the_file_written_not_the_temp_file(tmp_path):
    """The temp file beside ``path`` cannot be made (its directory is missing): the error says which file could not
    be written, in the words of the system's error, not the hidden temp file's name."""
    path = tmp_path / "nodir" / "m.npz"
    with pytest.raises(FileNotFoundError) as raised:
        gio.save(path, MLP([2, 3, 1], device="cpu", seed=0))
    assert str(raised.value) == f"[Errno {errno.ENOENT}] cannot write {path}: No such file or directory"
    assert os.listdir(tmp_path) == []


def test_a_ctrl_c_inside_a_write_leaves_the_earlier_file_and_no_temp_file(tmp_path):
    """A KeyboardInterrupt (no Exception) raised by ``write`` part-way: the file written before is whole and the
    temp file is gone, as after a failed write."""
    path = tmp_path / "a.bin"
    atomic.atomic_write(path, lambda fh: fh.write(b"before"))

    def interrupted(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(path, interrupted)
    assert path.read_bytes() == b"before" and os.listdir(tmp_path) == ["a.bin"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads the open descriptors from /proc/self/fd (Linux)")
def test_a_write_leaves_no_descriptor_open_on_its_file_or_its_directory(tmp_path):
    """Each write opens its temp file and then its directory (to make the rename durable), and closes both: a run
    writing a checkpoint every epoch would otherwise run out of descriptors."""
    def open_on(directory):
        held = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # (the listing's own descriptor, closed by now)
                continue
            if target == str(directory) or target.startswith(str(directory) + os.sep):
                held.append(target)
        return held

    for n in range(3):
        atomic.atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x" * n))
    assert open_on(tmp_path) == [] and (tmp_path / "a.bin").read_bytes() == b"xx"


def test_a_relative_paths_write_removes_a_killed_writers_temp_file_too(tmp_path, monkeypatch):
    """A path relative to the working directory ("m.npz", as gpunn train --save m.npz gives it) is written beside
    itself there, and a temp file a killed writer left there is removed as for an absolute path."""
    monkeypatch.chdir(tmp_path)
    kill = os.kill

    def gone(pid, sig):
        if pid == 999_999_002:
            raise ProcessLookupError(3, "No such process")
        return kill(pid, sig)

    monkeypatch.setattr(os, "kill", gone)
    (tmp_path / ".m.npz.999999002.abc.tmp").write_bytes(b"x")
    atomic.atomic_write("m.npz", lambda fh: fh.write(b"y"))
    assert os.listdir(tmp_path) == ["m.npz"] and (tmp_path / "m.npz").read_bytes() == b"y"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="writes to /dev/full (Linux)")
def test_a_device_that_refuses_the_write_is_named_in_the_error():
    """A device is written into directly (no temp file beside it); its error names it, as a file's does."""
    with pytest.raises(OSError) as raised:
        atomic.atomic_write("/dev/full", lambda fh: fh.write(b"x"))
    assert str(raised.value) == f"[Errno {errno.ENOSPC}] cannot write /dev/full: No space left on device"


def test_a_rename_that_fails_names_the_checkpoint_not_the_temp_file_and_removes_it(tmp_path, monkeypatch):
    """The rename over ``path`` fails (a directory holding that name did so; it is refused before the write now):
    the error says which file could not be written, not the hidden temp file's name (mut16c K57), and the temp
    file is gone."""
    def refused(source, target):
        raise PermissionError(errno.EACCES, "Permission denied", source)

    monkeypatch.setattr(atomic.os, "replace", refused)
    with pytest.raises(OSError) as raised:
        gio.save(tmp_path / "m.npz", MLP([2, 3, 1], device="cpu", seed=0))
    assert str(raised.value) == f"[Errno {errno.EACCES}] cannot write {tmp_path / 'm.npz'}: Permission denied"
    assert os.listdir(tmp_path) == []


# ---- refusing what is not a checkpoint ---------------------------------------------------------
@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory, data):
    X, Y = data
    path = tmp_path_factory.mktemp("good") / "c.npz"
    model = MLP([6, 4, 2], device="cpu", seed=0)
    model.fit(X[:200], Y[:200], epochs=1, batch_size=50, callbacks=[gpunn.EarlyStopping(), gpunn.ModelCheckpoint(path)],
              verbose=False)
    return path.read_bytes(), model.params.copy()


def _load_bytes(tmp_path, blob, name="x.npz"):
    path = tmp_path / name
    path.write_bytes(blob)
    return gpunn.load_checkpoint(path, device="cpu")


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FAST
@given(blob=st.binary(max_size=2000))
def test_random_bytes_are_rejected(tmp_path, blob):
    with pytest.raises(CheckpointError):
        _load_bytes(tmp_path, blob)


@FAST
@given(blob=st.binary(max_size=300))
def test_random_bytes_behind_a_zip_magic_are_rejected(tmp_path, blob):
    with pytest.raises(CheckpointError):
        _load_bytes(tmp_path, b"PK\x03\x04" + blob)


@FAST
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_checkpoints_are_rejected(tmp_path, good_bytes, fraction):
    blob, _ = good_bytes
    with pytest.raises(CheckpointError):
        _load_bytes(tmp_path, blob[:int(len(blob) * fraction)])


@FAST
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=4))
def test_corrupted_bytes_are_rejected_or_harmless(tmp_path, good_bytes, flips):
    """Flipped bits either make loading fail with CheckpointError, or hit bytes that carry no data
    (zip timestamps, ...) and the parameters load unchanged: never a silently different model."""
    blob, params = good_bytes
    corrupt = bytearray(blob)
    for pos, xor in flips:
        corrupt[pos % len(corrupt)] ^= xor
    try:
        ckpt = _load_bytes(tmp_path, bytes(corrupt))
    except CheckpointError:
        return
    numpy.testing.assert_array_equal(ckpt.model.params, params)


class SideEffect:
    """Unpickling this creates a marker file: if the marker exists, something unpickled it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_bearing_npz_is_refused_without_unpickling(tmp_path, good_bytes):
    marker = str(tmp_path / "unpickled")
    blob, _ = good_bytes
    # A genuine checkpoint whose params member is swapped for a pickled object array.
    src = zipfile.ZipFile(io.BytesIO(blob))
    evil = io.BytesIO()
    numpy.save(evil, numpy.array([SideEffect(marker)], dtype=object), allow_pickle=True)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, evil.getvalue() if info.filename == "params.npy" else src.read(info))
    for name, payload in {"swapped.npz": out.getvalue(),
                          "raw.pkl": pickle.dumps(SideEffect(marker)),
                          "npy.npz": evil.getvalue()}.items():
        with pytest.raises(CheckpointError, match="pickle|not a gpunn checkpoint|params"):
            _load_bytes(tmp_path, payload, name)
    # a pickle file itself is named one, whichever protocol wrote it (mut16c K74: it was "not an .npz/zip file")
    for protocol, value in ((0, {"a": 1}), (0, [1]), (1, {"a": 1}), (pickle.HIGHEST_PROTOCOL, SideEffect(marker))):
        with pytest.raises(CheckpointError, match="looks like a Python pickle; gpunn checkpoints never contain"):
            _load_bytes(tmp_path, pickle.dumps(value, protocol=protocol), "p.pkl")
    with pytest.raises(CheckpointError, match="looks like a Python pickle"):  # the metadata alone, as gpunn train
        gio.read_meta(tmp_path / "p.pkl")  # --resume reads it first (K141: 'corrupt, truncated or foreign file')
    # and an .npz holding only a pickled array, as numpy.savez writes it
    extra = io.BytesIO()
    numpy.savez(extra, gpunn_meta=numpy.array([SideEffect(marker)], dtype=object))
    with pytest.raises(CheckpointError):
        _load_bytes(tmp_path, extra.getvalue(), "meta.npz")
    assert not os.path.exists(marker), "a pickle was executed"


def _rewrite_meta(blob, change):
    npz = numpy.load(io.BytesIO(blob), allow_pickle=False)
    arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["gpunn_meta"].tobytes())
    change(meta, arrays)
    arrays["gpunn_meta"] = numpy.frombuffer(json.dumps(meta).encode(), numpy.uint8)
    out = io.BytesIO()
    numpy.savez(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize("change, message", [
    (lambda m, a: m.update(format="something-else"), "format tag"),
    (lambda m, a: m.update(format_version=99), "newer gpunn"),
    (lambda m, a: m["model"].update(layer_sizes=[6, 5, 2]), "params"),
    (lambda m, a: m["model"].update(dtype="float64"), "params"),
    (lambda m, a: m["model"].update(activations=["nope"]), "activations"),
    (lambda m, a: a.update(params=a["params"][:-1]), "params"),
    (lambda m, a: a.update(extra=numpy.zeros(3)), "members"),
    (lambda m, a: m["optimizer"]["config"].update(name="rmsprop"), "optimizer"),
    (lambda m, a: m["training"]["position"].update(epoch=-1), "position"),
    # hand edits that used to load without complaint
    (lambda m, a: a["params"].__setitem__(3, numpy.nan), "'params' holds NaN or infinite values"),
    (lambda m, a: a["optimizer.m"].__setitem__(0, numpy.inf), "'optimizer.m' holds NaN or infinite"),
    (lambda m, a: m["training"]["position"].update(epoch=99), "impossible position: 99 of 1 epoch done"),
    (lambda m, a: m["training"]["position"].update(batch=10**6),
     "impossible position: 1 of 1 epoch and 1,000,000 of 4 batches of epoch 2 done"),
    # the edges (mut11's mutation check: each loaded): 200 rows in batches of 50 are 4 batches an epoch, stored as
    # 0-3 done, and a 1-epoch run that is done is at 1 epoch, 0 batches done; said in the counts every message uses
    (lambda m, a: m["training"]["position"].update(epoch=0, batch=4),
     r"impossible position: 0 of 1 epoch and 4 of 4 batches of epoch 1 done \(a run stands within its epochs, fewer "
     r"than 4 batches into one\)"),
    (lambda m, a: m["training"]["position"].update(batch=2),
     "impossible position: 1 of 1 epoch and 2 of 4 batches of epoch 2 done"),
    (lambda m, a: m["training"]["position"].update(partial_sum_sq=-1.0), "invalid partial squared error"),
    (lambda m, a: m["training"]["position"].update(partial_sum_sq=5.0), "invalid partial squared error"),  # at batch 0
    (lambda m, a: m["training"].update(lr_scale=0), "invalid lr scale"),
    (lambda m, a: m["training"].update(validation_data={"kind": "arrays", "rows": 5, "fingerprint": [1.0] * 5}),
     "invalid validation_data record"),  # a fingerprint is 6 numbers
    (lambda m, a: m["training"].update(validation_data={"kind": "arrays", "rows": 5}), "invalid validation_data record"),
    # mut16c: each of these loaded, or failed later by another check's words (the parameter count, the array's
    # shape), or outside the checks (the MLP's own ValueError, not a CheckpointError)
    (lambda m, a: m.update(format_version=0), "unsupported format version 0"),  # K77
    (lambda m, a: a.update(params=numpy.zeros(a["params"].size + 2048, a["params"].dtype)),  # 8 kB past its shape
     "array 'params' is larger than its shape allows"),  # K79 (the manifest still says its shape)
    (lambda m, a: m["arrays"].update(ghost={"shape": [3], "dtype": "<f4"}),
     r"do not match what the metadata describes"),  # K81
    (lambda m, a: m["model"].update(layer_sizes=[6, 0, 2]), r"invalid layer_sizes \[6, 0, 2\]"),  # K87
    # audit37b: each was refused by a later check's words (the hidden activations', the parameters' shape)
    (lambda m, a: m["model"].update(layer_sizes=[6], activations=[]), r"invalid layer_sizes \[6\]"),  # f3
    (lambda m, a: m["model"].update(layer_sizes=[0, 4, 2]), r"invalid layer_sizes \[0, 4, 2\]"),  # f4
    (lambda m, a: m["model"].update(layer_sizes=[6, True, 2]), r"invalid layer_sizes \[6, True, 2\]"),  # f5
    (lambda m, a: m["model"].update(layer_sizes=[6, 2**31, 2]), r"invalid layer_sizes \[6, 2147483648, 2\]"),  # f6
    (lambda m, a: m["model"].update(output_activation="nope"), "invalid output activation"),  # f8
    (lambda m, a: m["model"].update(precision="fp8"), "invalid precision 'fp8' for dtype 'float32'"),  # f11
    (lambda m, a: m["model"].update(layer_sizes=[2**30, 2**30, 2]), "implausible parameter count"),  # f12
    (lambda m, a: m["training"]["position"].update(epoch=True), "invalid training position"),  # f13
    (lambda m, a: m["training"]["position"].update(partial_sum_sq=True), "invalid training position"),  # f16
    (lambda m, a: m["training"]["settings"].update(epochs=0), "invalid fit settings$"),  # f17
    (lambda m, a: m["training"]["settings"].update(batch_size=0), "invalid fit settings$"),  # f18
    (lambda m, a: m["training"]["settings"].update(train_rows=0), "invalid fit settings$"),  # f19
    (lambda m, a: m["training"]["settings"].update(shuffle="no"), "invalid fit settings$"),  # f20: bool("no") is True
    (lambda m, a: m["training"]["settings"].update(validation="half"), "invalid fit settings$"),  # f22
    (lambda m, a: m["training"]["settings"]["schedule"].pop("min_factor"), "invalid schedule"),  # f23: loaded
    (lambda m, a: m["training"]["settings"]["schedule"].update(name="sawtooth"), "invalid schedule"),  # f24
    # f25: FitSettings' own refusal, not "corrupt, truncated or foreign file (ValueError: ...)"
    (lambda m, a: m["training"]["settings"].update(validation_fraction="a fifth"),
     r"invalid fit settings \(validation_fraction must be a number"),
    (lambda m, a: m["training"]["position"].update(epoch=0, batch=1, partial_sum_sq=float("inf")),
     "invalid partial squared error"),  # f26
    (lambda m, a: m["training"].update(lr_scale="1"), "invalid lr scale"),  # f29
    (lambda m, a: m["training"].update(validation_data={"kind": "arrays", "rows": 5, "fingerprint": ["0"] * 6}),
     "invalid validation_data record"),  # f32
    (lambda m, a: m["training"].update(validation_data={"kind": 5}), "invalid validation_data record"),  # f33
    (lambda m, a: m["training"]["callbacks"][0].update(arrays=["best weights"]), "invalid callback states"),  # f34
    (lambda m, a: m["training"]["callbacks"][0].update(state=[1]), "invalid callback states"),  # f35: loaded
    (lambda m, a: m["training"]["callbacks"][1].update(index=-1), "invalid callback states"),  # f36: loaded
    (lambda m, a: m["training"].update(shuffled_by=5), "invalid shuffled_by"),  # f37: loaded
    (lambda m, a: m["arrays"]["params"].update(dtype="<f8"),
     r"array 'params' should be float32 .*manifest says"),  # f46: the array itself float32, it loaded
    (lambda m, a: m["model"].update(bias="yes"), "invalid bias flag"),  # K88
    (lambda m, a: m["model"].update(dtype="float64", precision="bf16"),
     "invalid precision 'bf16' for dtype 'float64'"),  # K89
    (lambda m, a: m["model"].update(seed="7"), "invalid seed"),  # K90
    # lefts38: a hand-edited negative seed loaded, and failed at the resume's first shuffle with NumPy's "expected
    # non-negative integer" (the run's), or at the model's build with the MLP's words (the model's), naming no file
    (lambda m, a: m["training"]["settings"].update(seed=-1),
     r"invalid fit settings: seed -1 \(a seed is a non-negative int\)$"),
    (lambda m, a: m["model"].update(seed=-1), r"invalid seed -1 \(a seed is a non-negative int\)$"),
    (lambda m, a: m["model"].update(seed=True), r"invalid seed True \(a seed is a non-negative int\)$"),
    (lambda m, a: m["training"]["history"].update(loss=0.5), "invalid history"),  # K92
    (lambda m, a: m["training"]["settings"]["schedule"].pop("gamma"), "invalid schedule"),  # K91: gamma 0.1 came back
    (lambda m, a: m["training"]["settings"]["schedule"].update(gamma=None), "invalid schedule"),  # not step's 0.1
    (lambda m, a: m["optimizer"].update(steps=-1), "invalid optimizer step count"),  # K97
    (lambda m, a: m["optimizer"].update(steps=2.5), "invalid optimizer step count"),  # audit37b f59: loaded
    (lambda m, a: m.update(format_version="2"), "missing format version"),  # f54: "corrupt, ... (TypeError: ...)"
    (lambda m, a: m.update(kind="weights"), "unknown checkpoint kind 'weights'"),  # f63: the members' words
    (lambda m, a: m.pop("arrays"), "missing array manifest"),  # f76: "corrupt, ... (TypeError: ...)"
    (lambda m, a: m["model"].update(columns={"features": ["a"], "targets": None}), "invalid column names"),  # f70
    (lambda m, a: m["model"].update(columns={"features": None, "targets": None}), "invalid column names"),  # f71
    (lambda m, a: m["model"].update(standardizer={"targets": "yes"}), "invalid standardizer section"),  # f72
    (lambda m, a: m["optimizer"].update(state=["m"]), "optimizer state does not match its kind"),  # K98: Adam's
    # the run's callbacks in order: each a class name, module and qualified name, every saved state at its place
    (lambda m, a: m["training"].update(callback_order={"0": "EarlyStopping"}), "invalid callback order"),
    (lambda m, a: m["training"]["callback_order"][0].pop("module"), "invalid callback order"),
    (lambda m, a: m["training"]["callback_order"][1].update(qualname=None), "invalid callback order"),
    (lambda m, a: m["training"]["callback_order"].pop(), "invalid callback order"),  # the writer's index past it
    (lambda m, a: m["training"]["callback_order"][0].update({"class": "ReduceLROnPlateau"}), "invalid callback order"),
    (lambda m, a: m["training"]["callbacks"][1].update({"class": "EarlyStopping", "index": 0}),
     "invalid callback order"),  # two states at one place
    # mut20: a record that is no list (R05: TypeError), of class names alone (R06: AttributeError), or without a class
    (lambda m, a: m["training"].update(callback_order=5), "invalid callback order"),
    (lambda m, a: m["training"].update(callback_order=["EarlyStopping", "ModelCheckpoint"]), "invalid callback order"),
    (lambda m, a: m["training"]["callback_order"][0].pop("class"), "invalid callback order"),
])
def test_inconsistent_checkpoints_are_rejected_with_a_reason(tmp_path, good_bytes, change, message):
    with pytest.raises(CheckpointError, match=message):
        _load_bytes(tmp_path, _rewrite_meta(good_bytes[0], change))


def test_a_flipped_bit_in_the_parameters_is_named_a_crc_failure_of_their_member(tmp_path, good_bytes):
    """The zip's CRC-32 of each member is checked before anything is read (mut16c K75: without that check
    zipfile's own CRC error came out as 'corrupt, truncated or foreign file (BadZipFile: ...)')."""
    blob, params = good_bytes
    at = blob.find(params.tobytes())
    assert at > 0
    corrupt = bytearray(blob)
    corrupt[at + 5] ^= 0x01  # a low mantissa bit of the first weight: a finite, plausible, wrong value
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint: member 'params.npy' fails its CRC check"):
        _load_bytes(tmp_path, bytes(corrupt))


def test_a_flipped_bit_in_the_metadata_is_named_alike_by_read_meta_which_resume_reads_first(tmp_path, good_bytes):
    """gpunn train --resume reads the metadata alone first (read_meta): a bit flipped in it said "corrupt, truncated
    or foreign file (BadZipFile: Bad CRC-32 for file 'gpunn_meta.npy')", where gpunn.load, gpunn info and gpunn
    predict say the same file's member fails its CRC check."""
    blob = bytearray(good_bytes[0])
    at = blob.find(b'"format"')  # in the metadata member's JSON (stored, not deflated)
    assert at > 0
    blob[at + 2] ^= 0x01
    path = tmp_path / "x.npz"
    path.write_bytes(bytes(blob))
    said = re.escape(f"{path}: corrupt checkpoint: member 'gpunn_meta.npy' fails its CRC check")
    with pytest.raises(CheckpointError, match=f"^{said}$"):
        gio.read_meta(path)
    with pytest.raises(CheckpointError, match=f"^{said}$"):
        gpunn.load_checkpoint(path, device="cpu")
    # (audit46b) the metadata member's name in its local header spoilt: named alike by both (test below)
    blob = bytearray(good_bytes[0])
    at = blob.find(b"gpunn_meta.npy")  # (the local header's copy comes first, the central directory's last)
    assert blob[at - 30:at - 26] == b"PK\x03\x04"
    blob[at] ^= 0x01
    path.write_bytes(bytes(blob))
    said = re.escape(f"{path}: corrupt checkpoint: member 'gpunn_meta.npy' (so named in the zip's directory) is "
                     "'fpunn_meta.npy' in its own header: one of the names is damaged")
    for read in (gio.read_meta, gpunn.load):
        with pytest.raises(CheckpointError, match=f"^{said}$"):
            read(path)


@pytest.mark.parametrize("member", ["optimizer.m.npy", "gpunn_meta.npy"])
def test_a_member_name_damaged_in_the_zip_directory_is_said_alike_by_load_and_by_resume(tmp_path, good_bytes, member):
    """A byte of a member's name flipped in the zip's directory (its local header keeps the name): gpunn.load said the
    member "fails its CRC check" (zipfile's testzip gives the member for any refusal), and gpunn train --resume, which
    reads the metadata alone first (read_meta), "unexpected members in the file" (the metadata's own name damaged:
    "an .npz archive of the arrays gPunn_meta, ...", someone's data). Both say now what is wrong, in the same words."""
    from gpunn import preflight

    blob = bytearray(good_bytes[0])
    at = blob.rfind(member.encode())  # the central directory's copy, after every local header's
    assert blob[at - 46:at - 42] == b"PK\x01\x02"
    blob[at + 1] ^= 0x20  # a letter's case: optimizer -> oPtimizer
    path = tmp_path / "x.npz"
    path.write_bytes(bytes(blob))
    damaged = member[0] + member[1].upper() + member[2:]
    said = re.escape(f"{path}: corrupt checkpoint: member {damaged!r} (so named in the zip's directory) is "
                     f"{member!r} in its own header: one of the names is damaged")
    for read in (gio.read_meta, gpunn.load, lambda p: gpunn.load_checkpoint(p, device="cpu")):
        with pytest.raises(CheckpointError, match=f"^{said}$"):
            read(path)
    assert preflight.misplaced(path, "--resume") == ""  # the checkpoint reader says it, not "an .npz archive of ..."
    assert preflight.not_a_checkpoint(path) == ""  # a damaged checkpoint, which a --save may replace


@pytest.mark.parametrize("home", [checkpoint_format, gio], ids=["format", "the package"])
def test_metadata_past_the_limit_is_refused_before_it_is_read(tmp_path, good_bytes, monkeypatch, home):
    """The metadata member's size is capped before it is read and parsed (MAX_META_BYTES; mut16c K76: a larger
    one loaded). Here the cap is lowered to below this checkpoint's metadata, through either name: the package's
    was a copy, set to no effect, once gpunn.checkpoint became a package."""
    monkeypatch.setattr(home, "MAX_META_BYTES", 256)
    assert gio.MAX_META_BYTES == checkpoint_format.MAX_META_BYTES == 256
    with pytest.raises(CheckpointError, match="metadata too large"):
        _load_bytes(tmp_path, good_bytes[0])
    monkeypatch.undo()
    assert gio.MAX_META_BYTES == checkpoint_format.MAX_META_BYTES == 64 << 20


def test_the_packages_metadata_limit_is_patched_and_put_back_by_unittest_mock(tmp_path, good_bytes):
    """unittest.mock.patch sets gpunn.checkpoint.MAX_META_BYTES, then deletes it and sets it back as it was: the
    delete failed ("property 'MAX_META_BYTES' of '_Package' object has no deleter") and left the patched limit in
    force. Deleted, the name is gone from the package as any module attribute would be (the reader keeps its limit),
    until it is set again."""
    from unittest import mock

    checkpoint_format.MAX_META_BYTES = 1 << 30  # a limit the user raised: put back as it was, not to the default
    try:
        with mock.patch.object(gio, "MAX_META_BYTES", 256):
            assert checkpoint_format.MAX_META_BYTES == 256
            with pytest.raises(CheckpointError, match="metadata too large"):
                _load_bytes(tmp_path, good_bytes[0])
        assert gio.MAX_META_BYTES == checkpoint_format.MAX_META_BYTES == 1 << 30
        del gio.MAX_META_BYTES
        assert not hasattr(gio, "MAX_META_BYTES") and "MAX_META_BYTES" not in dir(gio)
        assert checkpoint_format.MAX_META_BYTES == 1 << 30
        with pytest.raises(AttributeError):
            del gio.MAX_META_BYTES
        gio.MAX_META_BYTES = 64 << 20
        assert gio.MAX_META_BYTES == checkpoint_format.MAX_META_BYTES == 64 << 20 and "MAX_META_BYTES" in dir(gio)
    finally:
        gio.MAX_META_BYTES = 64 << 20


@pytest.mark.parametrize("name, value", [("x_scale", 0.0), ("y_scale", -1.0)])
def test_standardization_statistics_that_cannot_scale_are_refused(tmp_path, name, value):
    """A saved model's standardization scales must be positive and finite (mut16c K80: a zero scale loaded and
    divided the features by zero)."""
    from gpunn.data.stats import Standardizer

    model = MLP([2, 3, 1], device="cpu", seed=0)
    model.standardizer = Standardizer.from_state({"targets": True}, {"x_mean": numpy.zeros(2), "x_scale": numpy.ones(2),
                                                                      "y_mean": numpy.zeros(1), "y_scale": numpy.ones(1)})
    gio.save(tmp_path / "m.npz", model)
    assert gpunn.load(tmp_path / "m.npz").standardizer is not None  # the untouched file loads

    def edit(meta, arrays):
        arrays[f"standardizer.{name}"][0] = value

    with pytest.raises(CheckpointError, match=f"invalid standardization statistics in 'standardizer.{name}'"):
        _load_bytes(tmp_path, _rewrite_meta((tmp_path / "m.npz").read_bytes(), edit))


def test_a_runs_config_given_to_load_is_named_one_in_any_letter_case_and_its_checkpoint_only_where_it_is(tmp_path,
                                                                                                       good_bytes):
    """The config --save writes beside a checkpoint, given to load, is said to be one (audit37b f43: RUN.NPZ.TOML was
    "not a gpunn checkpoint (text ...)"), naming the checkpoint beside it only where that file is (f44: it was named
    whether or not it was there)."""
    (tmp_path / "run.npz").write_bytes(good_bytes[0])
    for name in ("run.npz.toml", "other.npz.TOML"):
        (tmp_path / name).write_text("epochs = 1\n")
    with pytest.raises(CheckpointError, match=r"run\.npz\.toml: a run's config \(gpunn train --config \S+\), not a "
                                              r"checkpoint: the checkpoint beside it is \S+run\.npz$"):
        gpunn.load(tmp_path / "run.npz.toml")
    with pytest.raises(CheckpointError, match=r"other\.npz\.TOML: a run's config \(gpunn train --config \S+\), not a "
                                              r"checkpoint$"):
        gpunn.load(tmp_path / "other.npz.TOML")


def test_a_metadata_member_of_another_dtype_than_bytes_is_refused(tmp_path, good_bytes):
    """gpunn_meta is uint8 bytes of JSON; the same bytes as int8 are refused (audit37b f53: they loaded)."""
    npz = numpy.load(io.BytesIO(good_bytes[0]), allow_pickle=False)
    arrays = {k: npz[k] for k in npz.files}
    arrays["gpunn_meta"] = arrays["gpunn_meta"].view(numpy.int8)
    out = io.BytesIO()
    numpy.savez(out, **arrays)
    with pytest.raises(CheckpointError, match="metadata member has the wrong type"):
        _load_bytes(tmp_path, out.getvalue())


def test_a_foreign_npz_is_rejected(tmp_path):
    out = io.BytesIO()
    numpy.savez(out, weights=numpy.zeros(3))
    with pytest.raises(CheckpointError, match="not a gpunn checkpoint"):
        _load_bytes(tmp_path, out.getvalue())


# ---- a process killed while checkpointing -------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    import threading
    import time
    import numpy
    from gpunn import MLP, ModelCheckpoint
    from gpunn.checkpoint import format as checkpoint_format
    _savez = checkpoint_format._savez
    writes, hold = 0, sys.argv[2] == "hold"
    def savez_then_pause(fh, arrays):  # the bytes are in the temp file, not yet renamed: say so, and pause
        global writes
        _savez(fh, arrays)
        writes += 1
        print(f"mid-write {writes}", flush=True)
        if hold and writes == 2:  # until killed, however late the kill comes
            threading.Event().wait()
        time.sleep(0.2)
    checkpoint_format._savez = savez_then_pause
    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((64, 32)), rng.standard_normal((64, 1))
    model = MLP([32, 512, 512, 1], device="cpu", seed=0)   # ~1 MB per parameter-sized array
    print("ready", flush=True)
    model.fit(X, Y, epochs=10**6, batch_size=64, callbacks=[ModelCheckpoint(sys.argv[1])], verbose=False,
              handle_interrupt=False)
""")


@pytest.mark.slow
def test_sigkill_during_checkpointing_leaves_a_loadable_checkpoint(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "run.npz"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), GPUNN_DEVICE="cpu")
    rnd = random.Random(1234)
    killed_mid_write = 0
    for attempt in range(4):  # each a process that imports gpunn (about 2.5 s on 2 loaded cores): two of each kind
        before = path.stat().st_mtime_ns if path.exists() else None
        proc = subprocess.Popen([sys.executable, str(script), str(path), "hold" if attempt % 2 else "pause"], env=env,
                                stdout=subprocess.PIPE)
        waiting.read_until(proc, b"ready", 600)
        if attempt % 2:  # kill the writer held where its second write's bytes are in the temp file, not yet renamed
            waiting.read_until(proc, b"mid-write 2", 600)
        else:  # kill at a random moment after its first complete write
            deadline = waiting.Deadline(120)  # the time this process ran (see tests/waiting.py)
            while not (path.exists() and path.stat().st_mtime_ns != before):
                if deadline.expired() or proc.poll() is not None:
                    proc.kill()
                    raise AssertionError(f"no checkpoint written (status {proc.wait()})")
                time.sleep(0.002)
            time.sleep(rnd.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        ckpt = gpunn.load_checkpoint(path, device="cpu")  # never raises: the last complete write is there
        assert ckpt.epoch >= 1 and ckpt.model.params.shape == (32 * 512 + 512 + 512 * 512 + 512 + 512 + 1,)
        leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        # the next writer removed what an earlier killed one left: at most this kill's temp file is there
        assert len(leftovers) <= 1 and all(n.startswith(".run.npz.") for n in leftovers)
        # a kill mid-write leaves its temp file behind: certain for the held writer (it was a 0.2 s pause, which a
        # loaded machine could let pass before the kill), by chance for the others
        assert leftovers or not attempt % 2
        killed_mid_write += len(leftovers)
    assert killed_mid_write  # kills landed mid-write ...
    gpunn.save(path, ckpt.model)  # ... and the next write to the same path removes it
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_ctrl_c_that_lands_as_the_temp_file_is_made_leaves_no_temp_file(tmp_path, monkeypatch):
    """A second Ctrl-C raises KeyboardInterrupt at once; when it landed as the temp file's open returned (the open
    can block on a disk busy with the last checkpoint's fsync), the temp file's name never came back and the file
    stayed (seen as a rare failure of test_a_second_ctrl_c_stops_at_once... under load)."""
    real_open = os.open

    def interrupted(name, *args, **kwargs):
        fd = real_open(name, *args, **kwargs)
        if str(name).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    (tmp_path / ".m.npz.1.other.tmp").write_bytes(b"")  # pid 1 runs: another writer's, left alone
    monkeypatch.setattr(atomic.os, "open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(tmp_path / "m.npz", lambda fh: fh.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == [".m.npz.1.other.tmp"]


def test_a_ctrl_c_inside_a_checkpoint_write_leaves_no_open_zip_behind(tmp_path, monkeypatch):
    """A second Ctrl-C inside the write of a checkpoint's arrays: NumPy 1.x's savez left its zip open, and its
    __del__ later printed "Exception ignored in: <function ZipFile.__del__> ... seek of closed file" under
    gpunn train's one line (test_a_second_ctrl_c_stops_at_once... failed so with numpy 1.26). Fails before
    with NumPy 1.x only: NumPy 2's savez closes its zip itself."""
    import gc

    write_array = numpy.lib.format.write_array
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the parameters, after the metadata
            raise KeyboardInterrupt
        return write_array(*args, **kwargs)

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(numpy.lib.format, "write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gpunn.save(tmp_path / "m.npz", MLP([3, 4, 1], device="cpu"))
    gc.collect()
    assert len(calls) == 2 and not unraisable, [str(u.exc_value) for u in unraisable]
    assert not os.listdir(tmp_path)


# ---- GPU -> CPU -> GPU ------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_checkpoint_loads_on_cpu_and_back(gpu, tmp_path, data):
    import cupy

    X, Y = data
    model = MLP([6, 16, 2], device="cuda", seed=2)
    model.fit(X, Y, epochs=2, batch_size=128, validation_fraction=0.1,
              callbacks=[gpunn.ModelCheckpoint(tmp_path / "g.npz")], verbose=False)
    on_cpu = gpunn.load_checkpoint(tmp_path / "g.npz", device="cpu")
    assert on_cpu.model.device == "cpu" and isinstance(on_cpu.model.params, numpy.ndarray)
    gpunn.save(tmp_path / "m.npz", model)  # and gpunn.load's model where it is asked for (audit37b m28: on "auto")
    assert [gpunn.load(tmp_path / "m.npz", device=d).device for d in ("cpu", "cuda:0")] == ["cpu", "cuda:0"]
    numpy.testing.assert_array_equal(on_cpu.model.params, cupy.asnumpy(model.params))
    numpy.testing.assert_array_equal(on_cpu.optimizer.state["m"], cupy.asnumpy(model.optimizer.state["m"]))
    numpy.testing.assert_allclose(on_cpu.model.predict(X), cupy.asnumpy(model.predict(X)), rtol=1e-4, atol=1e-5)
    on_cpu.resume(X, Y, epochs=3, checkpoint=tmp_path / "c.npz", verbose=False)  # continue on the CPU
    back = gpunn.load_checkpoint(tmp_path / "c.npz", device="cuda")
    assert back.model.device.startswith("cuda") and isinstance(back.model.params, cupy.ndarray)
    numpy.testing.assert_array_equal(cupy.asnumpy(back.model.params), on_cpu.model.params)
    history = back.resume(X, Y, epochs=4, verbose=False)
    assert history["epoch"] == [1, 2, 3, 4]


@pytest.mark.gpu
def test_a_gpu_run_resumed_with_early_stopping_keeps_its_best_weights_on_the_device(gpu, tmp_path, data):
    """EarlyStopping's best weights come back from a checkpoint as a host array; the resumed run moves them to the
    device, where each better epoch copies the weights into them (a CuPy array is never converted to NumPy
    implicitly) and the end of the run puts them back."""
    import cupy

    X, Y = data
    path = tmp_path / "run.npz"
    MLP([6, 16, 2], device="cuda", seed=2).fit(
        X, Y, epochs=2, batch_size=128, verbose=False, callbacks=[EarlyStopping(patience=5), gpunn.ModelCheckpoint(path)])
    ckpt = gpunn.load_checkpoint(path, device="cuda")
    history = ckpt.resume(X, Y, epochs=5, verbose=False)
    assert history["epoch"] == [1, 2, 3, 4, 5] and history.best_epoch > 2  # an epoch after the resume was better
    assert isinstance(ckpt.model.params, cupy.ndarray)


def test_a_checkpoints_repr_says_what_it_holds_and_where_the_run_is_in_one_line(data, tmp_path):
    X, Y = data
    path = tmp_path / "run.npz"
    model = MLP([X.shape[1], 8, Y.shape[1]], device="cpu", seed=0)
    model.fit(X, Y, epochs=30, batch_size=X.shape[0], verbose=False, callbacks=[gio.ModelCheckpoint(path)])
    text = repr(gio.load_checkpoint(path))
    # it printed the whole metadata, the run's history included: thousands of characters, more every epoch
    assert len(text) < 400 and "\n" not in text
    assert text.startswith(f"Checkpoint({str(path)!r}, kind='training', model=MLP(layer_sizes=")
    assert text.endswith("optimizer=Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0), epoch=30, "
                         "batch=0, epochs=30)")


def test_a_resume_on_a_source_takes_seed_none_where_the_run_took_the_sources_own_seed(tmp_path, interrupt_at):
    """fit(source) without a seed shuffles with the source's own (5 here, the model's 0): seed=None passed again to
    the resume is that run's, as for a run on arrays of the model's seed."""
    def source():
        return gpunn.data.synthetic("teacher", rows=2000, n_features=6, n_outputs=2, seed=5, device="cpu")

    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=0).fit(source(), epochs=3, batch_size=250, verbose=False,
                                             callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)])
    given = gpunn.load_checkpoint(path, device="cpu")
    history = given.resume(source(), verbose=False, seed=None)
    plain = gpunn.load_checkpoint(path, device="cpu")
    assert _no_timing(history) == _no_timing(plain.resume(source(), verbose=False))
    numpy.testing.assert_array_equal(given.model.params, plain.model.params)


def test_an_mlps_resume_refuses_an_ensembles_optimizer_options_given_as_none(data, tmp_path):
    """weight_decay, momentum, beta1 and beta2 are fit_ensemble's; an MLP's fit has none of them, and its resume
    refuses them, None too (an Ensemble's None keeps its optimizer's own)."""
    X, Y = data
    path = tmp_path / "run.npz"
    MLP([6, 8, 2], device="cpu", seed=1).fit(X, Y, epochs=1, batch_size=100, verbose=False,
                                             callbacks=[gpunn.ModelCheckpoint(path)])
    for key in ("weight_decay", "momentum", "beta1", "beta2"):
        # (not "fit the loaded model: ckpt.model.fit(X, Y, optimizer=gpunn.Adam(weight_decay=None))", which Adam refuses)
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}' \(a resume continues the run with "
                                            rf"the optimizer its checkpoint holds, its {key} among its settings; "
                                            rf"{key}=None changes nothing: resume without it\)$"):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, epochs=2, **{key: None})


def test_a_directory_given_to_load_is_refused_naming_the_checkpoints_in_it(tmp_path):
    """gpunn.load(DIR), a gpunn sweep --save directory or a ModelCheckpoint's folder, said only Python's
    "[Errno 21] Is a directory: 'DIR'"; it stays an IsADirectoryError and names a checkpoint in it to give."""
    model = gpunn.MLP([2, 1], device="cpu", seed=0)
    for name in ("b.npz", "a.npz", "notes.txt"):
        (gpunn.save(tmp_path / name, model) if name.endswith(".npz") else (tmp_path / name).write_text(""))
    for load in (gpunn.load, gpunn.load_checkpoint, gpunn.checkpoint.read_meta):
        with pytest.raises(IsADirectoryError) as refused:
            load(tmp_path)
        assert refused.value.errno == errno.EISDIR
        assert str(refused.value) == (f"[Errno 21] {tmp_path} is a directory, not a checkpoint file; it holds a.npz, "
                                      f"b.npz: give one of them, {str(tmp_path / 'a.npz')!r}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IsADirectoryError, match=r"empty is a directory, not a checkpoint file; it holds no .npz file$"):
        gpunn.load(empty)


def test_a_damaged_name_that_holds_a_quote_is_said_as_any_other(tmp_path, good_bytes):
    """(audit46c) zipfile quotes a name that holds ' in double quotes ("'punn_meta.npy": gpunn_meta.npy's g with one
    bit flipped): _damaged_member reads either quoting, of the directory's name, of the header's, and of a member that
    fails its CRC check, not zipfile's words as a foreign file's."""
    path = tmp_path / "x.npz"
    for copy, find in (("directory", bytearray.rfind), ("header", bytearray.find)):
        blob = bytearray(good_bytes[0])
        at = find(blob, b"gpunn_meta.npy")
        blob[at] ^= 0x40  # g -> '
        path.write_bytes(bytes(blob))
        directory, header = ("'punn_meta.npy", "gpunn_meta.npy") if copy == "directory" else ("gpunn_meta.npy",
                                                                                             "'punn_meta.npy")
        said = re.escape(f"{path}: corrupt checkpoint: member {directory!r} (so named in the zip's directory) is "
                         f"{header!r} in its own header: one of the names is damaged")
        for read in (gio.read_meta, gpunn.load):
            with pytest.raises(CheckpointError, match=f"^{said}$"):
                read(path)
    with zipfile.ZipFile(path, "w") as archive:  # stored: its bytes as written
        archive.writestr("it's.npy", b"0123456789")
    blob = bytearray(path.read_bytes())
    blob[blob.find(b"0123456789")] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: corrupt checkpoint: member \"it's.npy\" fails its "
                                                        "CRC check") + "$"):
        gpunn.load(path)


@pytest.mark.parametrize("member", ["gpunn_meta.npy", "params.npy"])
def test_a_checkpoints_member_marked_encrypted_is_said_damaged_naming_it_by_every_reader(tmp_path, good_bytes, member):
    """(audit46c) One bit, the encryption flag of a member in the zip's directory (the one zipfile reads), damaged in a
    gpunn checkpoint: "corrupt, truncated or foreign file (RuntimeError: File 'gpunn_meta.npy' is encrypted, password
    required for extraction)" (a ZipInfo's repr where zipfile was given one), where the other damaged members are said
    in plain words; read_meta (gpunn train --resume) read past an array's, which load then refused so."""
    from gpunn import preflight

    blob = bytearray(good_bytes[0])
    entries = [m.start() for m in re.finditer(b"PK\x01\x02", blob)]  # the zip's directory's entries, named from 46 on
    at = next(i for i in entries if blob[i + 46:i + 46 + int.from_bytes(blob[i + 28:i + 30], "little")]
              == member.encode())
    blob[at + 8] |= 0x01  # its general purpose flags' bit 0: encrypted
    path = tmp_path / "x.npz"
    path.write_bytes(bytes(blob))
    said = re.escape(f"{path}: corrupt checkpoint: member {member!r} is marked encrypted, which gpunn never writes "
                     "(a damaged flag bit, or the file encrypted since)")
    for read in (gio.read_meta, gpunn.load, lambda p: gpunn.load_checkpoint(p, device="cpu")):
        with pytest.raises(CheckpointError, match=f"^{said}$"):
            read(path)
    assert preflight.not_a_checkpoint(path) == ""  # a damaged checkpoint, which a --save may replace


def test_a_directory_of_many_checkpoints_names_three_and_one_not_listable_is_said_without_them(tmp_path, monkeypatch):
    """(audit46c) _opened names the first three .npz files, of either case, and '...' past three; a directory it may
    not list is said a directory alone."""
    for name in ("b.npz", "C.NPZ", "a.npz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")

    def said(held):
        return f"[Errno 21] {tmp_path} is a directory, not a checkpoint file{held}"

    with pytest.raises(IsADirectoryError) as refused:
        gpunn.load(tmp_path)
    assert str(refused.value) == said(f"; it holds C.NPZ, a.npz, b.npz: give one of them, {str(tmp_path / 'C.NPZ')!r}")
    (tmp_path / "d.npz").write_bytes(b"")
    with pytest.raises(IsADirectoryError) as refused:
        gpunn.load(tmp_path)
    assert str(refused.value) == said(f"; it holds C.NPZ, a.npz, b.npz, ...: give one of them, "
                                      f"{str(tmp_path / 'C.NPZ')!r}")

    def unlistable(path):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", unlistable)
    for load in (gpunn.load, gpunn.checkpoint.read_meta):
        with pytest.raises(IsADirectoryError) as refused:
            load(tmp_path)
        assert str(refused.value) == said("")


def test_someones_zip_of_an_encrypted_member_is_said_a_zip_archive_of_it_by_load_resume_and_info_alike(tmp_path):
    """(audit46c) A zip file whose member is encrypted (zipfile opens it only with its password: RuntimeError) is
    someone's archive, said so by gpunn.load and load_checkpoint as by read_meta (gpunn train --resume) and preflight
    (gpunn info, predict): load's pass over the members said "corrupt, truncated or foreign file (RuntimeError: File
    <ZipInfo filename='secret.txt' filemode='?rw-------' file_size=5> is encrypted, password required for
    extraction)". preflight.misnamed_member leaves such a member to the checks after, as its name is not damaged."""
    from gpunn import preflight

    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("secret.txt", b"hello")
    blob = bytearray(path.read_bytes())
    blob[blob.find(b"PK\x03\x04") + 6] |= 0x01  # the encryption flag, in the member's header and the directory's
    blob[blob.find(b"PK\x01\x02") + 8] |= 0x01
    path.write_bytes(bytes(blob))
    said = re.escape(f"{path}: not a gpunn checkpoint (a zip archive of secret.txt)")
    for read in (gio.read_meta, gpunn.load, lambda p: gpunn.load_checkpoint(p, device="cpu")):
        with pytest.raises(CheckpointError, match=f"^{said}$"):
            read(path)
    assert preflight.not_a_checkpoint(path) == "a zip archive of secret.txt"
