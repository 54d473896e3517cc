"""Checkpoints of an Ensemble's training run: interrupted anywhere and resumed, the run is bit for bit the
one that was never interrupted (CPU, float32 and float64), or the resume is refused by name."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import gpunn
from gpunn import data as gdata

SIZES = [5, 8, 7, 2]


@pytest.fixture(autouse=True)
def auto_is_the_cpu(monkeypatch):
    """These runs are the CPU's (tests/test_ensemble_gpu.py resumes the GPU's): the ensembles and checkpoints made or
    loaded on device "auto" are on the CPU on any machine, as on CI's; on a machine with a GPU, numpy.testing refused
    their device arrays and the resumes met other generators' draws. GPUNN_DEVICE wins over "auto" alone."""
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")


def _no_timing(history):
    return {k: v for k, v in history.items() if k not in ("time_s", "samples_per_s")}


# 120 training rows in 5 batches of 25; member 1 (the fast rate) stops early at epoch 3, the others run to 7.
FIT = dict(epochs=7, batch_size=25, optimizer="adam", lr=[2e-3, 0.1, 1e-2], schedule="cosine",
           validation_fraction=0.2, bootstrap=True, seed=4, verbose=False)


def _stopper():
    return gpunn.EarlyStopping(patience=1, min_delta=0.01)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("stop_at", [(3, 2), (2, 4)], ids=["mid-epoch", "epoch-end"])
def test_an_interrupted_ensemble_run_resumes_bit_for_bit(ensemble_data, tmp_path, interrupt_at, dtype, stop_at):
    X, Y = ensemble_data
    reference = gpunn.Ensemble(SIZES, 3, dtype=dtype, seed=7)
    ref_hist = reference.fit(X, Y, callbacks=[_stopper()], **FIT)
    assert ref_hist.stopped_epoch == [7, 3, 7]  # the scenario this test is about: member 1 frozen part-way

    path = tmp_path / "run.npz"
    ens = gpunn.Ensemble(SIZES, 3, dtype=dtype, seed=7)
    hist = ens.fit(X, Y, callbacks=[_stopper(), interrupt_at(*stop_at), gpunn.ModelCheckpoint(path)], **FIT)
    assert hist.interrupted and len(hist["epoch"]) == stop_at[0] + (stop_at[1] == 4)

    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert isinstance(ckpt.model, gpunn.Ensemble) and ckpt.model.seeds == [7, 8, 9]
    np.testing.assert_array_equal(ckpt.model.params, ens.params)  # the checkpoint is the interrupted state
    assert ckpt.optimizer.frozen == [1]  # member 1 had stopped: it stays frozen
    assert (ckpt.state.epoch, ckpt.state.batch) == ((3, 3) if stop_at == (3, 2) else (3, 0))
    resumed = ckpt.resume(X, Y, verbose=False)

    assert isinstance(resumed, gpunn.training.ensemble.EnsembleHistory) and not resumed.interrupted
    np.testing.assert_array_equal(ckpt.model.params, reference.params)
    for name in ("m", "v"):
        np.testing.assert_array_equal(ckpt.optimizer.state[name], reference.optimizer.state[name])
    assert ckpt.optimizer.steps == reference.optimizer.steps
    assert _no_timing(resumed) == _no_timing(ref_hist)
    for attribute in ("best", "best_epoch", "stopped_early", "stopped_epoch", "diverged", "weights_epoch"):
        assert getattr(resumed, attribute) == getattr(ref_hist, attribute), attribute
    assert ckpt.model.history is resumed and ckpt.model.best_index() == reference.best_index()


def test_a_resumed_run_without_early_stopping_or_bootstrap_is_exact_and_can_be_extended(ensemble_data, tmp_path, interrupt_at):
    X, Y = ensemble_data
    fit = dict(epochs=4, batch_size=40, optimizer="momentum", lr=[0.01, 0.03], momentum=[0.5, 0.9],
               weight_decay=[0.0, 1e-3], validation_data=(X[:30], Y[:30]), seed=2, verbose=False)
    reference = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=0)
    ref_hist = reference.fit(X[30:], Y[30:], **{**fit, "epochs": 6})
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, dtype="float64", seed=0).fit(
        X[30:], Y[30:], callbacks=[gpunn.ModelCheckpoint(path, every=2), interrupt_at(2, 1)], **fit)
    ckpt = gpunn.load_checkpoint(path)
    with pytest.raises(ValueError, match="validation_data"):
        ckpt.resume(X[30:], Y[30:], verbose=False)
    resumed = ckpt.resume(X[30:], Y[30:], validation_data=(X[:30], Y[:30]), epochs=6, verbose=False)
    np.testing.assert_array_equal(ckpt.model.params, reference.params)
    np.testing.assert_array_equal(ckpt.optimizer.state["velocity"], reference.optimizer.state["velocity"])
    assert _no_timing(resumed) == _no_timing(ref_hist)
    assert resumed.best_epoch == ref_hist.best_epoch and resumed.best == ref_hist.best


class _MemberScores(gpunn.Callback):
    """Logs ``score``: one value per member for each epoch (early stopping listed after it monitors it)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, trainer, epoch, logs):
        logs["score"] = list(self.values[epoch])


def test_a_finished_run_whose_members_were_restored_extends_from_the_weights_they_reached(ensemble_data, tmp_path):
    """The ensemble's form of tests/test_checkpoints.py's test: members restored to their best epoch at the
    end of a 4-epoch run (0, 1, and 2, which stopped early in epoch 4 and stays frozen) go on, in a
    resume to 6 epochs, from the weights they had reached, as the 6-epoch run did."""
    X, Y = ensemble_data
    scores = [[5, 5, 1], [1, 2, 2], [3, 1, 3], [4, 3, 4], [0.5, 4, 5], [6, 0.5, 6]]
    fit = dict(batch_size=25, optimizer="adam", lr=[2e-3, 1e-2, 5e-3], seed=4, verbose=False)

    def callbacks():
        return [_MemberScores(scores), gpunn.EarlyStopping(monitor="score", patience=3)]

    reference = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=7)
    ref_hist = reference.fit(X, Y, epochs=6, callbacks=callbacks(), **fit)
    assert ref_hist.best_epoch == [5, 6, 1] and ref_hist.stopped_epoch == [None, None, 4]
    path = tmp_path / "run.npz"
    first = gpunn.Ensemble(SIZES, 3, dtype="float64", seed=7)
    assert first.fit(X, Y, epochs=4, callbacks=callbacks() + [gpunn.ModelCheckpoint(path)], **fit).best_epoch == [2, 3, 1]
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    np.testing.assert_array_equal(ckpt.model.params, first.params)  # the file holds the best weights
    resumed = ckpt.resume(X, Y, epochs=6, callbacks=callbacks(), verbose=False)  # (the saved state, after the score)
    assert _no_timing(resumed) == _no_timing(ref_hist) and resumed.best_epoch == ref_hist.best_epoch
    np.testing.assert_array_equal(ckpt.model.params, reference.params)
    for name in ("m", "v"):
        np.testing.assert_array_equal(ckpt.optimizer.state[name], reference.optimizer.state[name])


def test_resuming_a_run_whose_members_all_stopped_trains_no_further(ensemble_data, tmp_path):
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    ens = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=0)
    done = ens.fit(X, Y, epochs=40, batch_size=30, lr=[0.3, 0.5], validation_fraction=0.2, verbose=False,
                   callbacks=[gpunn.EarlyStopping(patience=1, min_delta=1.0), gpunn.ModelCheckpoint(path)])
    assert all(done.stopped_early) and len(done["epoch"]) < 40
    before = path.read_bytes()
    ckpt = gpunn.load_checkpoint(path)
    with pytest.warns(UserWarning, match=r"\(patience 1 -> 50\), which change nothing: early stopping ended"):
        resumed = ckpt.resume(X, Y, verbose=False, callbacks=[gpunn.EarlyStopping(patience=50, min_delta=1.0)])
    assert resumed["epoch"] == done["epoch"] and resumed.stopped_epoch == done.stopped_epoch  # no extra epoch
    assert path.read_bytes() == before  # nothing trained: the file keeps the patience that stopped the run
    np.testing.assert_array_equal(ckpt.model.params, ens.params)
    assert ckpt.optimizer.steps == ens.optimizer.steps

def test_resuming_a_run_whose_members_stopped_early_or_diverged_trains_no_further(ensemble_data, tmp_path):
    """Member 0 stopped early, member 1 diverged: no member trains on. The warning of other settings said "the run
    goes on by these" (only a stop of every member counted), and the file was rewritten with patience 50."""
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged"):
        done = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1).fit(
            X, Y * 1e3, optimizer="sgd", lr=[1e-4, 50.0], epochs=8, batch_size=50, validation_fraction=0.2,
            verbose=False, callbacks=[gpunn.EarlyStopping(patience=1, min_delta=1e9), gpunn.ModelCheckpoint(path)])
    assert done.stopped_epoch == [2, None] and done.diverged == [1] and done["epoch"] == [1, 2]
    before = path.read_bytes()
    with pytest.warns(UserWarning, match=r"\(patience 1 -> 50\), which change nothing: early stopping ended "
                                         r"members \[0\] and divergence members \[1\] by epoch 2, and this resume "
                                         r"trains no more") as caught:
        resumed = gpunn.load_checkpoint(path).resume(X, Y * 1e3, verbose=False,
                                                     callbacks=[gpunn.EarlyStopping(patience=50, min_delta=1e9)])
    assert not [w for w in caught if "goes on" in str(w.message)]
    assert resumed["epoch"] == [1, 2] and resumed.stopped_epoch == [2, None]
    assert path.read_bytes() == before

def test_a_run_only_some_of_whose_members_stopped_early_trains_on_and_writes_its_file(ensemble_data, tmp_path,
                                                                                      interrupt_at):
    """Member 1 stopped early and stays frozen, members 0 and 2 train on: not a resume that trains nothing (that
    needs every member frozen), so a stopper passed with other settings goes on by them, and the file is written."""
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 3, dtype="float64", seed=7).fit(
        X, Y, callbacks=[_stopper(), interrupt_at(2, 4), gpunn.ModelCheckpoint(path)], **FIT)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert ckpt.optimizer.frozen == [1] and (ckpt.state.epoch, ckpt.state.batch) == (3, 0)
    with pytest.warns(UserWarning, match=r"\(patience 1 -> 2\): the run goes on by these") as caught:
        resumed = ckpt.resume(X, Y, verbose=False, callbacks=[gpunn.EarlyStopping(patience=2, min_delta=0.01)])
    assert not [w for w in caught if "change nothing" in str(w.message)]
    assert len(resumed["epoch"]) > 3 and gpunn.load_checkpoint(path).epoch == len(resumed["epoch"])


def test_resuming_on_other_validation_data_is_refused(ensemble_data, tmp_path):
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, dtype="float64", seed=0).fit(X[30:], Y[30:], epochs=1, batch_size=40, verbose=False,
                                                          validation_data=(X[:30], Y[:30]),
                                                          callbacks=[gpunn.ModelCheckpoint(path)])
    with pytest.raises(ValueError, match="validated on other values"):
        gpunn.load_checkpoint(path).resume(X[30:], Y[30:], epochs=2, validation_data=(X[:30], Y[:30] + 1), verbose=False)
    resumed = gpunn.load_checkpoint(path).resume(X[30:], Y[30:], epochs=2, validation_data=(X[:30], Y[:30]),
                                                 verbose=False)
    assert resumed["epoch"] == [1, 2]


@pytest.mark.parametrize("bootstrap", [False, True])
def test_resuming_on_other_held_out_rows_is_refused(ensemble_data, tmp_path, bootstrap):
    """validation_fraction's held-out rows of an ensemble's run (a bootstrapped one's too: its resamples are of the
    training rows) with other targets went on without a word, the training rows' checksum alone compared."""
    from gpunn.training.fit import held_out_rows

    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, dtype="float64", seed=0).fit(X, Y, epochs=1, batch_size=40, verbose=False,
                                                          validation_fraction=0.2, bootstrap=bootstrap,
                                                          callbacks=[gpunn.ModelCheckpoint(path)])
    other = Y.copy()
    other[held_out_rows(len(X), 0.2, gpunn.load_checkpoint(path).settings.seed)[0][-1]] += 1
    with pytest.raises(ValueError, match=r"held out other rows: the held-out rows \(validation_fraction=0\.2's 30\) "
                                         r"of these X and Y are not the run's"):
        gpunn.load_checkpoint(path).resume(X, other, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path).resume(X, Y, epochs=2, verbose=False)["epoch"] == [1, 2]



@pytest.mark.parametrize("rate", [50.0, 1e4])  # 1e4: the member's partial sum at the stop is infinite
def test_a_diverged_member_stays_frozen_through_a_checkpoint(ensemble_data, tmp_path, interrupt_at, rate):
    X, Y = ensemble_data
    fit = dict(optimizer="sgd", lr=[1e-4, rate], epochs=3, batch_size=50, verbose=False)
    reference = gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1)
    with pytest.warns(RuntimeWarning, match=r"members \[1\] diverged"):
        ref_hist = reference.fit(X, Y * 1e3, **fit)
    path = tmp_path / "run.npz"
    with pytest.warns(RuntimeWarning, match="diverged"):
        gpunn.Ensemble(SIZES, 2, dtype="float64", seed=1).fit(
            X, Y * 1e3, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 1)], **fit)
    ckpt = gpunn.load_checkpoint(path)  # member 1's rows may hold NaN or inf: allowed for a diverged member only
    assert ckpt.optimizer.frozen == [1] and ckpt.history.diverged == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the member is not reported (or frozen) again
        resumed = ckpt.resume(X, Y * 1e3, verbose=False)
    assert resumed.diverged == [1]
    assert ckpt.model.diverged == [1]  # left out of the mean and best() after the resume too (mut12e T54: [])
    np.testing.assert_array_equal(ckpt.model.params, reference.params)  # NaN where the reference has NaN
    np.testing.assert_array_equal(np.array(resumed["loss"]), np.array(ref_hist["loss"]))


def test_what_an_ensemble_run_cannot_do_is_refused_by_name(ensemble_data, tmp_path, capsys):
    X, Y = ensemble_data
    ens = gpunn.Ensemble(SIZES, 2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        ens.fit(X, Y, epochs=1, callbacks=[gpunn.ReduceLROnPlateau()], verbose=False)
    with pytest.raises(ValueError, match="save_best_only"):
        ens.fit(X, Y, epochs=1, callbacks=[gpunn.ModelCheckpoint(tmp_path / "b.npz", save_best_only=True)],
                verbose=False)
    path = tmp_path / "run.npz"
    ens.fit(X, Y, epochs=1, batch_size=50, bootstrap=True, callbacks=[gpunn.ModelCheckpoint(path)], verbose=False)
    ckpt = gpunn.load_checkpoint(path)  # (resumed data parallel: tests/mpi_script.py)
    # (named a bootstrapped run, before the general 'trained on in-memory arrays' refusal: mut16c K105)
    with pytest.raises(ValueError, match=r"holds a bootstrapped ensemble's run \(each member its own resample of "
                                         r"in-memory arrays\): resume it with the same X and Y"):
        ckpt.resume(gdata.iterable([(X, Y)]), verbose=False)
    with pytest.raises(ValueError, match="same X and Y"):
        ckpt.resume(X[:100], Y[:100], verbose=False)
    assert isinstance(gpunn.load(path, device="cpu"), gpunn.Ensemble)  # the model alone, as from gpunn.save
    from gpunn import cli

    assert cli.main(["train", "--resume", str(path), "--quiet"]) == 2  # gpunn train resumes one model's runs
    assert "holds the run of a gpunn.Ensemble of 2 members" in capsys.readouterr().err


def _forge(path, out, edit):
    npz = np.load(path)
    meta = json.loads(npz["gpunn_meta"].tobytes().decode())
    arrays = {k: npz[k] for k in npz.files if k != "gpunn_meta"}
    edit(meta, arrays)
    np.savez(out, gpunn_meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return out


def _position(meta, arrays):
    meta["training"]["position"]["partial_sum_sq"] = [1.0, 2.0, 3.0]  # 3 sums for 2 members


def _not_frozen(meta, arrays):
    meta["training"]["ensemble"]["diverged"] = [1]  # diverged, yet still training


def _nan_row(meta, arrays):
    arrays["params"][0] = np.nan  # member 0 is not a diverged member


def _member_settings(meta, arrays):
    meta["optimizer"]["config"]["members"].pop()


def _frozen_past_the_members(meta, arrays):
    meta["optimizer"]["frozen"] = [2]  # of members 0 and 1


def _mixed_kinds(meta, arrays):
    meta["optimizer"]["config"]["members"][1] = {"name": "sgd", "lr": 0.01}  # member 0 is Adam's


def _mixed_eps(meta, arrays):
    meta["optimizer"]["config"]["members"][1]["eps"] = 1e-3  # one eps for all: the step passes one


def _restored_not_diverged(meta, arrays):
    meta["training"]["ensemble"]["restored"] = [1]  # put back to its best epoch, yet it never diverged


def _frozen_twice(meta, arrays):
    meta["optimizer"]["frozen"] = [0, 0]


def _no_members(meta, arrays):
    meta["model"]["members"] = 0


def _one_seed(meta, arrays):
    meta["model"]["seeds"] = [0]  # for 2 members


def _a_million_members(meta, arrays):
    meta["model"].update(members=2**20, seeds=list(range(2**20)))


def _members_past_the_parameter_limit(meta, arrays):  # each member's count under 2**40, the ensemble's past it
    meta["model"].update(layer_sizes=[2**29, 2**10, 2**10, 1], members=4, seeds=[0, 1, 2, 3])


@pytest.mark.parametrize("edit, match", [
    (_position, "invalid training position"),
    # mut16c K86, K94, K83, K84: each loaded, or failed outside the checks (the Ensemble's own ValueError)
    (_restored_not_diverged, "restored members must be a list of diverged members"),
    (_frozen_twice, "frozen members should be a list of distinct indices"),
    (_no_members, "invalid member count 0"),
    (_one_seed, "invalid member seeds"),
    (_members_past_the_parameter_limit, "implausible parameter count"),  # audit37b f57: the manifest's words
    (_a_million_members, r"invalid member count 1048576"),  # audit37b f66: the manifest's words
    (_frozen_past_the_members, r"frozen members \[2\] are not indices of 2 members"),  # mut12e T9: IndexError
    (_mixed_kinds, "every member must use one optimizer kind"),  # mut12e T10: refused only past two kinds
    (_mixed_eps, "every member must use one optimizer kind with one nesterov flag and eps"),
    (_not_frozen, "diverged members must be a list of frozen members"),
    (_nan_row, "NaN or infinite"),
    (_member_settings, "should list 2 member settings"),
])
def test_a_forged_ensemble_checkpoint_is_refused(ensemble_data, tmp_path, interrupt_at, edit, match):
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, seed=0, device="cpu").fit(
        X, Y, epochs=2, batch_size=50, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 0)], verbose=False)
    assert gpunn.load_checkpoint(path).state.batch == 1  # the untouched file loads
    with pytest.raises(gpunn.CheckpointError, match=match):
        gpunn.load_checkpoint(_forge(path, tmp_path / "bad.npz", edit))


def test_an_ensemble_run_without_shuffling_resumes_without_shuffling(ensemble_data, tmp_path, interrupt_at):
    """shuffle=False is part of an Ensemble's run too (mut16c K115: the resumed members' batches were shuffled)."""
    X, Y = ensemble_data
    fit = dict(epochs=3, batch_size=50, shuffle=False, verbose=False)
    straight = gpunn.Ensemble(SIZES, 2, seed=0, device="cpu")
    straight.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, seed=0, device="cpu").fit(
        X, Y, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 0)], **fit)
    ckpt = gpunn.load_checkpoint(path)
    assert (ckpt.epoch, ckpt.state.batch, ckpt.settings.shuffle) == (1, 1, False)
    ckpt.resume(X, Y, verbose=False)
    np.testing.assert_array_equal(ckpt.model.params, straight.params)


def test_a_checkpoint_records_member_0s_seed_every_members_seed_and_the_runs_shuffle_seed(ensemble_data, tmp_path):
    """The model section's ``seed`` is member 0's and ``seeds`` every member's; the settings' ``seed`` is the run's
    shuffle seed, the whole RNG state with the position (module docstring; mut16c K72: seed was the last member's).
    Nothing else is written about the random state: ``training.rng``, a copy of the seed no resume read, is gone."""
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, seed=[5, 9], device="cpu").fit(X, Y, epochs=1, batch_size=50, seed=3,
                                                            callbacks=[gpunn.ModelCheckpoint(path)], verbose=False)
    meta = gpunn.checkpoint.read_meta(path)
    assert (meta["model"]["seed"], meta["model"]["seeds"]) == (5, [5, 9])
    assert meta["training"]["settings"]["seed"] == 3 and "rng" not in meta["training"]


def test_a_saved_models_file_that_lists_members_is_refused(tmp_path):
    """A file of one model (gpunn.save of an MLP) whose model section names members or seeds is neither one
    model's nor an Ensemble's (mut16c K82: it went on to build a 2-member Ensemble and failed outside the checks)."""
    path = tmp_path / "m.npz"
    gpunn.save(path, gpunn.MLP(SIZES, device="cpu", seed=0))
    for extra in ({"members": 2, "seeds": [0, 1]}, {"seeds": [0]}):
        with pytest.raises(gpunn.CheckpointError, match="a 'model' file describes one model, not members"):
            gpunn.load(_forge(path, tmp_path / "bad.npz", lambda meta, arrays: meta["model"].update(extra)))


def test_a_saved_ensembles_diverged_member_past_its_members_is_refused(tmp_path):
    """A saved Ensemble's ``ensemble.diverged`` lists indices of its members (audit37b f64: without that check, [5] for
    2 members was "corrupt, truncated or foreign file (IndexError: index 5 is out of bounds ...)")."""
    path = tmp_path / "e.npz"
    gpunn.save(path, gpunn.Ensemble(SIZES, 2, device="cpu", seed=0))
    with pytest.raises(gpunn.CheckpointError, match="diverged members must be a list of member indices"):
        gpunn.load(_forge(path, tmp_path / "bad.npz", lambda meta, arrays: meta["ensemble"].update(diverged=[5])))


@pytest.fixture
def ensemble_files(ensemble_data, tmp_path):
    X, Y = ensemble_data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    return tmp_path / "x.npy", tmp_path / "y.npy"


def npy_source(files, **options):
    return gdata.npy(*files, chunk_rows=40, window=3, seed=4, validation_fraction=0.2, **options)


def test_a_resumed_run_keeps_each_members_patience_count(ensemble_data, tmp_path, interrupt_at):
    """Scripted scores that never improve after epoch 1: patience 3 stops both members after epoch 4, also when
    the run is interrupted in epoch 3 and resumed (mut12e T93: the checkpoint's wait saved as 0, the resumed
    members stopped after epoch 5)."""
    X, Y = ensemble_data

    class Scripted(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["score"] = [float(epoch), float(epoch)]

    fit = dict(epochs=8, batch_size=50, verbose=False)
    straight = gpunn.Ensemble(SIZES, 2, seed=0, device="cpu").fit(
        X, Y, callbacks=[Scripted(), gpunn.EarlyStopping(monitor="score", patience=3)], **fit)
    assert straight.stopped_epoch == [4, 4]
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, seed=0, device="cpu").fit(X, Y, callbacks=[
        Scripted(), gpunn.EarlyStopping(monitor="score", patience=3), gpunn.ModelCheckpoint(path), interrupt_at(2, 1)],
        **fit)
    from gpunn.training.ensemble import MemberEarlyStopping

    # (given again after Scripted, so that it reads the score; it takes the state saved for its class)
    resumed = gpunn.load_checkpoint(path).resume(
        X, Y, callbacks=[Scripted(), MemberEarlyStopping(monitor="score", patience=3)], verbose=False)
    assert resumed.stopped_epoch == [4, 4] and resumed["epoch"] == straight["epoch"]


def test_a_resumed_early_stopping_state_for_other_members_is_refused(ensemble_data, tmp_path, interrupt_at):
    """MemberEarlyStopping's per-member lists in a checkpoint must list the ensemble's members (mut12e T66: a
    'wait' of 3 for 2 members resumed, the third ignored)."""
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, seed=0, device="cpu").fit(
        X, Y, epochs=3, batch_size=50, verbose=False,
        callbacks=[gpunn.EarlyStopping(monitor="loss", patience=5), gpunn.ModelCheckpoint(path), interrupt_at(1, 0)])

    def three_waits(meta, arrays):
        (entry,) = [cb for cb in meta["training"]["callbacks"] if cb["class"] == "MemberEarlyStopping"]
        entry["state"]["wait"] = [0, 0, 0]

    ckpt = gpunn.load_checkpoint(_forge(path, tmp_path / "bad.npz", three_waits))
    with pytest.raises(ValueError, match=r"state 'wait' should list 2 members, got \[0, 0, 0\]"):
        ckpt.resume(X, Y, verbose=False)


def test_an_ensemble_trains_on_a_data_source_exactly_as_each_member_would(ensemble_files):
    """The exactness contract on a gpunn.data source: member k equals MLP(seed=s0 + k).fit(source) (the
    same chunks held out, the same windowed shuffle), and validation is scored on the held-out chunks."""
    lrs = [1e-3, 3e-3]
    ens = gpunn.Ensemble(SIZES, 2, seed=7, device="cpu", dtype="float64")
    history = ens.fit(npy_source(ensemble_files), epochs=3, batch_size=32, lr=lrs, verbose=False)
    for k in range(2):
        twin = gpunn.MLP(SIZES, seed=7 + k, device="cpu", dtype="float64")
        h = twin.fit(npy_source(ensemble_files), epochs=3, batch_size=32, lr=lrs[k], verbose=False)
        np.testing.assert_allclose(ens.member_params[k], twin.params, rtol=1e-10, atol=1e-12)
        assert np.allclose([e[k] for e in history["loss"]], h["loss"], rtol=1e-10)
        assert np.allclose([e[k] for e in history["val_loss"]], h["val_loss"], rtol=1e-10)
        assert np.allclose([e[k] for e in history["val_r2"]], h["val_r2"], rtol=1e-10)


def test_an_ensemble_run_on_a_source_resumes_bit_for_bit(ensemble_files, tmp_path, interrupt_at):
    fit = dict(epochs=3, batch_size=32, lr=[1e-3, 3e-3], verbose=False)
    straight = gpunn.Ensemble(SIZES, 2, seed=1, device="cpu")
    expected = straight.fit(npy_source(ensemble_files), **fit)
    path = tmp_path / "run.npz"
    stopped = gpunn.Ensemble(SIZES, 2, seed=1, device="cpu").fit(
        npy_source(ensemble_files), **fit, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 2)])
    assert stopped.interrupted
    assert gpunn.load_checkpoint(path, device="cpu").settings.seed == 4  # the source's (mut12e T102: member 0's, 1)
    resumed = gpunn.load_checkpoint(path, device="cpu").resume(npy_source(ensemble_files), verbose=False)
    np.testing.assert_array_equal(gpunn.load(path, device="cpu").params, straight.params)
    assert resumed["loss"] == expected["loss"] and resumed["val_loss"] == expected["val_loss"]
    with pytest.raises(ValueError, match="another source"):
        gpunn.load_checkpoint(path, device="cpu").resume(gdata.npy(*ensemble_files, chunk_rows=40, seed=5,
                                                                   validation_fraction=0.2), verbose=False)


def test_an_ensembles_validation_on_a_source_runs_in_chunks_of_rows_per_member(tmp_path):
    """The held-out rows of a source are scored in the ensemble's chunk_rows per member, as its memory check counts
    them (mut12e T53: SourceEvaluator's own 65,536-row chunks; here a held-out window of 1,500 rows in one)."""
    X, Y = gpunn.datasets.make("teacher", 3000, 5, 2, seed=1, device="cpu", dtype="float64")
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    source = gdata.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1500, window=1, seed=4,
                       validation_fraction=0.5)
    ens = gpunn.Ensemble(SIZES, 2, seed=0, device="cpu", dtype="float64")
    history = ens.fit(source, epochs=1, batch_size=500, verbose=False)
    assert len(history["val_loss"][0]) == 2
    assert max(ens._workspaces) == ens.chunk_rows == 1024


def test_a_member_keeps_the_column_names_of_the_table_the_ensemble_trained_on(tmp_path):
    """ens[k] of an ensemble trained on a named table carries its features and targets, as one model trained
    there does (gpunn predict on a table reads the columns by them; mut12e N33: the member had none)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = gpunn.datasets.make("linear", 300, 3, 1, seed=1, device="cpu", dtype="float64")
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": Y[:, 0]}), tmp_path / "t.parquet")
    ens = gpunn.Ensemble([2, 4, 1], 2, seed=0, device="cpu", dtype="float64")
    ens.fit(gdata.parquet(tmp_path / "t.parquet", "y", features=["c", "a"]), epochs=1, verbose=False)
    columns = {"features": ["c", "a"], "targets": ["y"]}
    assert ens.data_columns == columns
    member = ens[1]
    assert member.data_columns == columns
    member.data_columns["features"].append("b")  # a copy: the ensemble's names are its own
    assert ens.data_columns == columns


def test_what_an_ensemble_cannot_do_on_a_source_is_refused_by_name(ensemble_files):
    ens = gpunn.Ensemble(SIZES, 2, seed=0, device="cpu")
    with pytest.raises(ValueError, match="bootstrap=True draws each member's resample from in-memory rows"):
        ens.fit(npy_source(ensemble_files), epochs=1, bootstrap=True, verbose=False)


def test_an_ensemble_on_a_standardized_source_keeps_the_statistics_and_takes_raw_units(ensemble_data, ensemble_files,
                                                                                         tmp_path, interrupt_at):
    """Every member trains as MLP.fit on the standardized source; the ensemble, each member drawn from it and
    a saved copy take raw inputs and predict in the targets' units; a run resumes on the source exactly."""
    X, Y = ensemble_data
    fit = dict(epochs=2, batch_size=32, lr=[1e-3, 1e-2], verbose=False)
    ens = gpunn.Ensemble(SIZES, 2, seed=3, device="cpu", dtype="float64")
    ens.fit(npy_source(ensemble_files, standardize=True), **fit)
    P = ens.predict(X)
    for k in range(2):
        twin = gpunn.MLP(SIZES, seed=3 + k, device="cpu", dtype="float64")
        twin.fit(npy_source(ensemble_files, standardize=True), epochs=2, batch_size=32, lr=fit["lr"][k], verbose=False)
        np.testing.assert_allclose(ens.member_params[k], twin.params, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(ens.standardizer.x_mean, twin.standardizer.x_mean)
        np.testing.assert_allclose(P[k], twin.predict(X), rtol=1e-9, atol=1e-12)  # raw in, targets' units out
        np.testing.assert_array_equal(ens[k].predict(X), P[k])
    gpunn.save(tmp_path / "ens.npz", ens)
    np.testing.assert_array_equal(gpunn.load(tmp_path / "ens.npz", device="cpu").predict(X), P)
    loss, _, _ = ens.loss_and_gradients(X, Y)  # raw units in, standardized loss out (what training follows)
    np.testing.assert_allclose(loss, [ens[k].loss_and_gradients(X, Y)[0] for k in range(2)], rtol=1e-12)
    path = tmp_path / "run.npz"
    straight = gpunn.Ensemble(SIZES, 2, seed=3, device="cpu", dtype="float64")
    expected = straight.fit(npy_source(ensemble_files, standardize=True), **fit)
    gpunn.Ensemble(SIZES, 2, seed=3, device="cpu", dtype="float64").fit(
        npy_source(ensemble_files, standardize=True), **fit, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 2)])
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    resumed = ckpt.resume(npy_source(ensemble_files, standardize=True), verbose=False)
    np.testing.assert_array_equal(ckpt.model.params, straight.params)
    assert resumed["val_loss"] == expected["val_loss"]


def test_a_float32_ensemble_with_statistics_scores_raw_arrays_as_its_members_do(tmp_path):
    """loss, score and evaluate of an ensemble with a standardizer take X and Y in raw units and give what each
    member's MLP.loss, score and evaluate give: X standardized first (mut12e N53: evaluate took raw X as
    standardized), loss's Y compared in the predictions' dtype, float64 for float64 targets (N52: rounded to the
    model's float32 first; targets near 1e6 moved the loss)."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((150, 5)), 1e6 + 100 * rng.standard_normal((150, 2))
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    ens = gpunn.Ensemble(SIZES, 2, seed=3, device="cpu")
    ens.fit(gdata.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=40, standardize=True), epochs=1,
            verbose=False)
    assert ens.predict(X).dtype == np.float64
    np.testing.assert_allclose(ens.loss(X, Y), [ens[k].loss(X, Y) for k in range(2)], rtol=1e-12)
    np.testing.assert_allclose(ens.score(X, Y), [ens[k].score(X, Y) for k in range(2)], rtol=1e-12)
    metrics, members = ens.evaluate(X, Y), [ens[k].evaluate(X, Y) for k in range(2)]
    for name in ("loss", "mae", "r2"):
        np.testing.assert_allclose(metrics[name], [m[name] for m in members], rtol=1e-9)


def test_a_standardized_model_resumes_on_raw_arrays_as_it_trains_on_them(ensemble_data, ensemble_files, tmp_path,
                                                                          interrupt_at):
    """fit(X, Y) on raw arrays trains a standardized model on a standardized copy; a resume of that run on the
    same raw arrays must standardize them too (it trained on them as given)."""
    X, Y = ensemble_data
    for make in (lambda: gpunn.MLP(SIZES, seed=2, device="cpu", dtype="float64"),
                 lambda: gpunn.Ensemble(SIZES, 2, seed=2, device="cpu", dtype="float64")):
        def standardized_model():
            model = make()
            model.fit(npy_source(ensemble_files, standardize=True), epochs=1, batch_size=32, verbose=False)
            return model

        fit = dict(epochs=2, batch_size=40, seed=1, validation_fraction=0.2, verbose=False)
        straight = standardized_model()
        expected = straight.fit(X, Y, **fit)
        path = tmp_path / "raw.npz"
        standardized_model().fit(X, Y, **fit, callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(1, 1)])
        ckpt = gpunn.load_checkpoint(path, device="cpu")
        resumed = ckpt.resume(X, Y, verbose=False)
        np.testing.assert_array_equal(ckpt.model.params, straight.params)
        assert resumed["val_loss"] == expected["val_loss"]


def test_an_ensemble_file_written_before_callback_order_loads_and_resumes_bit_for_bit_as_then(tmp_path, interrupt_at):
    """tests/data/main-v2-ensemble.npz was written by main at 9f42c8e, by this test's run (format version 2, before
    ``callback_order``: its MemberEarlyStopping's state names its class alone). It resumes as gpunn then resumed it,
    the stopper made again or passed, bit for bit to the run never interrupted (without a warning: the CPU ordered
    its rows); the same run written now holds what it held and ``callback_order`` and ``shuffled_by`` besides. Skipped where this machine's arithmetic does not reproduce the
    file's first epochs (other BLAS kernels)."""
    import os
    import shutil

    X, Y = gpunn.datasets.make("teacher", 150, 5, n_outputs=2, noise=0.1, seed=11, device="cpu")
    fit = dict(epochs=5, batch_size=25, optimizer="adam", lr=[2e-3, 0.1], validation_fraction=0.2, seed=4,
               verbose=False)
    path, here = tmp_path / "main-v2-ensemble.npz", tmp_path / "here.npz"
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "main-v2-ensemble.npz"), path)
    gpunn.Ensemble([5, 8, 2], 2, seed=7, device="cpu").fit(
        X, Y, callbacks=[gpunn.EarlyStopping(patience=1, min_delta=0.01), interrupt_at(2, 1),
                         gpunn.ModelCheckpoint(here)], **fit)
    before, now = gpunn.load_checkpoint(path, device="cpu"), gpunn.load_checkpoint(here, device="cpu")
    if not np.array_equal(before.model.params, now.model.params):
        pytest.skip("this machine's arithmetic is not the one that wrote tests/data/main-v2-ensemble.npz")
    assert set(now.training) - set(before.training) == {"callback_order", "shuffled_by"}
    assert set(before.training) <= set(now.training)
    assert before.training["callbacks"] == now.training["callbacks"]
    assert [entry["class"] for entry in before.training["callbacks"]] == ["MemberEarlyStopping", "ModelCheckpoint"]
    reference = gpunn.Ensemble([5, 8, 2], 2, seed=7, device="cpu")
    ref_hist = reference.fit(X, Y, callbacks=[gpunn.EarlyStopping(patience=1, min_delta=0.01)], **fit)
    for passed in ([], [gpunn.EarlyStopping(patience=1, min_delta=0.01)]):
        ckpt = gpunn.load_checkpoint(path, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            resumed = ckpt.resume(X, Y, verbose=False, checkpoint=False, callbacks=passed)
        assert _no_timing(resumed) == _no_timing(ref_hist)
        assert (resumed.best_epoch, resumed.stopped_epoch) == (ref_hist.best_epoch, ref_hist.stopped_epoch)
        np.testing.assert_array_equal(ckpt.model.params, reference.params)
