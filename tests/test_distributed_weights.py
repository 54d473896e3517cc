"""sample_weight in data-parallel training on in-memory arrays: each rank's piece of every global batch carries its
rows' weights, so P ranks at batch b train the one-process weighted run at batch P x b, one MLP's and an Ensemble's
(each member with its own lr; bootstrap=True too). Ranks as threads on the stand-in's GPUs (tests/thread_ranks.py,
the NCCL path); the MPI path under mpiexec: tests/mpi_script.py's exactness."""
import numpy
import pytest

import gpunn


@pytest.fixture
def data():
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((90, 3))
    Y = numpy.stack([numpy.sin(X[:, 0]) + X[:, 1] ** 2, X[:, 2]], axis=1)
    w = rng.uniform(0.0, 3.0, 90)
    w[::7] = 0.0  # rows that do not count
    return X, Y, w


def _ranks(monkeypatch, work):
    from thread_ranks import run_ranks

    outcomes, aborted = run_ranks(monkeypatch, 2, work, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    return [value for value, _ in outcomes]


MODELS = [None, 3]  # one MLP; an Ensemble of 3 members


@pytest.fixture(params=MODELS, ids=["mlp", "ensemble"])
def members(request):
    return request.param


def _model(device, members=None):
    if members is None:
        return gpunn.MLP([3, 8, 2], activation="tanh", dtype="float64", device=device, seed=0)
    return gpunn.Ensemble([3, 8, 2], members, activation="tanh", dtype="float64", device=device, seed=0)


FIT = dict(epochs=3, optimizer="adam", lr=1e-2, verbose=False)


def _fit(model, *args, **options):
    """model.fit with FIT's options, an Ensemble's members each at an lr of its own."""
    lr = [1e-2, 3e-3, 3e-2][:model.n_models] if hasattr(model, "n_models") else FIT["lr"]
    return model.fit(*args, **{**FIT, "lr": lr, **options})


@pytest.mark.parametrize("validation", ["fraction", "data"])
def test_two_ranks_weighted_train_the_one_process_weighted_run_at_the_global_batch(monkeypatch, fake_cupy, data,
                                                                                   validation, members):
    """Weights, a held-out fraction's rows' or validation_data's third item: the 2-rank run's weights, losses and
    val_* are the one process's at twice the batch, to summation order: an Ensemble's every member."""
    X, Y, w = data
    how = (dict(validation_fraction=0.2) if validation == "fraction" else
           dict(validation_data=(X[:20], Y[:20], w[:20] + 0.5)))

    def fit(rank):
        model = _model(f"cuda:{rank}", members)
        history = _fit(model, X, Y, batch_size=8, distributed=True, sample_weight=w, **how)
        return model.backend.to_host(model.params), history

    ref = _model("cuda:0", members)
    expected = _fit(ref, X, Y, batch_size=16, sample_weight=w, **how)
    unweighted = _model("cuda:0", members)
    _fit(unweighted, X, Y, batch_size=16, **how)
    for params, history in _ranks(monkeypatch, fit):
        numpy.testing.assert_allclose(params, ref.backend.to_host(ref.params), rtol=1e-10, atol=1e-12)
        for key in ("loss", "val_loss", "val_mae", "val_r2"):
            numpy.testing.assert_allclose(history[key], expected[key], rtol=1e-10)
    assert numpy.abs(ref.backend.to_host(ref.params - unweighted.params)).max() > 1e-3  # the weights weighed


def test_equal_weights_on_two_ranks_train_the_unweighted_two_rank_run_bit_for_bit(monkeypatch, fake_cupy, data,
                                                                                   members):
    X, Y, _ = data
    ones = numpy.ones(len(X))

    def fit(weights):
        def run(rank):
            model = _model(f"cuda:{rank}", members)
            history = _fit(model, X, Y, batch_size=8, distributed=True, validation_fraction=0.2, sample_weight=weights)
            return model.backend.to_host(model.params), history["loss"], history["val_r2"]
        return run

    plain, equal = _ranks(monkeypatch, fit(None)), _ranks(monkeypatch, fit(ones))
    for (params, loss, r2), (params_w, loss_w, r2_w) in zip(plain, equal):
        assert params.tobytes() == params_w.tobytes() and loss == loss_w and r2 == r2_w


@pytest.mark.parametrize("which", ["training", "validation"])
def test_ranks_given_other_weights_are_refused_by_the_configuration_check_naming_sample_weight(monkeypatch, fake_cupy,
                                                                                               data, which, members):
    """Each rank trains its piece of every batch by its own copy of the weights: ranks given other weights would
    train a mixture of runs. The weights are in the data's checksum, which the ranks compare before the first step;
    the refusal says so. Rank 1's equal weights (no weights' column at all) too."""
    from gpunn.distributed.digest import ConfigMismatch

    X, Y, w = data

    def fit(rank):
        mine = w if rank == 0 else numpy.ones(len(X))
        how = (dict(sample_weight=mine) if which == "training" else
               dict(validation_data=(X[:20], Y[:20], mine[:20])))
        return _fit(_model(f"cuda:{rank}", members), X, Y, batch_size=8, distributed=True, **how)

    from thread_ranks import run_ranks

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=20.0)
    assert [type(exc) for _, exc in outcomes] == [ConfigMismatch] * 2 and aborted == [], outcomes
    said = str(outcomes[0][1])
    assert said.startswith("the ranks are not training the same run; give every rank the same data, all of it "
                           "(sample_weight too: its weights are in the data's checksum): "), said
    assert ("data.fingerprint: " if which == "training" else "data.validation_fingerprint: ") in said


def test_a_weighted_two_rank_run_stopped_mid_epoch_resumes_on_two_ranks_and_in_one_process_with_its_weights(
        monkeypatch, fake_cupy, data, tmp_path, interrupt_at, members):
    """A checkpoint of a weighted data-parallel run, stopped after batch 2 of epoch 2, resumed with the same weights on
    two ranks and in one process (at the global batch): the run that never stopped. Refused without the weights."""
    X, Y, w = data
    path = tmp_path / "run.npz"
    how = dict(validation_fraction=0.2, sample_weight=w)

    def fit(rank, callbacks=()):
        model = _model(f"cuda:{rank}", members)
        history = _fit(model, X, Y, batch_size=8, distributed=True, callbacks=list(callbacks), **how)
        return model.backend.to_host(model.params), history

    def resume(rank):
        ckpt = gpunn.load_checkpoint(path, device=f"cuda:{rank}")
        history = ckpt.resume(X, Y, verbose=False, distributed=True, checkpoint=False, sample_weight=w)
        return ckpt.model.backend.to_host(ckpt.model.params), history

    straight = _ranks(monkeypatch, fit)[0]
    _ranks(monkeypatch, lambda rank: fit(rank, [interrupt_at(1, 2), gpunn.ModelCheckpoint(path)]))
    recorded = gpunn.load_checkpoint(path, device="cpu").training["source"]
    assert recorded["sample_weight"] is True and recorded["n_outputs"] == 2  # (the weights' column is no output)
    from gpunn.cli.model_info import describe

    assert "resume(X, Y, sample_weight=w)" in describe(path)["checkpoint"]  # gpunn info says how it resumes
    for params, history in _ranks(monkeypatch, resume):
        numpy.testing.assert_allclose(params, straight[0], rtol=1e-10, atol=1e-12)
        for key in ("loss", "val_loss", "val_r2"):
            numpy.testing.assert_allclose(history[key], straight[1][key], rtol=1e-10)
    alone = gpunn.load_checkpoint(path, device="cuda:0")
    alone.resume(X, Y, verbose=False, checkpoint=False, sample_weight=w)
    numpy.testing.assert_allclose(alone.model.backend.to_host(alone.model.params), straight[0], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="was trained with sample_weight: pass the same weights to resume"):
        gpunn.load_checkpoint(path, device="cuda:0").resume(X, Y, verbose=False, checkpoint=False)
    from thread_ranks import run_ranks

    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: gpunn.load_checkpoint(path, device=f"cuda:{rank}").resume(
        X, Y, verbose=False, distributed=True, checkpoint=False, sample_weight=None if rank else w), timeout=20.0)
    assert aborted == [] and all(isinstance(exc, ValueError) for _, exc in outcomes), outcomes  # every rank refuses
    assert "rank 1 of ranks 0-1 refused to resume the run" in str(outcomes[0][1]), outcomes
    assert "was trained with sample_weight: pass the same weights to resume" in str(outcomes[1][1]), outcomes


def test_a_distributed_weighted_fit_in_one_process_is_the_plain_weighted_fit_bit_for_bit(monkeypatch, data, members):
    import sys

    from gpunn.distributed import comm

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # (no MPI, no launcher: as tests/test_distributed.py's one_process)
    monkeypatch.setattr(comm, "_WORLD", {})
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    X, Y, w = data
    models = [_model("cpu", members) for _ in range(2)]
    got = [_fit(model, X, Y, batch_size=8, validation_fraction=0.2, sample_weight=w, distributed=distributed)
           for model, distributed in zip(models, (True, False))]
    assert models[0].params.tobytes() == models[1].params.tobytes()
    assert got[0]["loss"] == got[1]["loss"] and got[0]["val_r2"] == got[1]["val_r2"]


def test_a_weighted_bootstrap_on_two_ranks_trains_the_one_process_weighted_bootstrap_and_resumes_exactly(
        monkeypatch, fake_cupy, data, tmp_path, interrupt_at):
    """bootstrap=True with sample_weight: each member's resample weighs its rows by their weights scaled over the
    whole resample (BootstrapSource.member_weights), so the piece of each member's global batch a rank gathers carries
    the one process's values. 17 training rows at 8 a rank (the last global batch one row, rank 0's piece empty), as
    tests/mpi_script.py's unweighted bootstrap: the 2-rank run is the one process's at twice the batch, and stopped in
    epoch 2 it resumes on 2 ranks and in one process to the run that never stopped. Equal weights weigh nothing."""
    X, Y, w = (a[:21] for a in data)
    path = tmp_path / "boot.npz"
    how = dict(validation_fraction=0.2, bootstrap=True)

    def fit(rank, weights=w, callbacks=()):
        model = _model(f"cuda:{rank}", 3)
        history = _fit(model, X, Y, batch_size=8, distributed=True, sample_weight=weights, callbacks=list(callbacks),
                       **how)
        return model.backend.to_host(model.params), history

    def resume(rank):
        ckpt = gpunn.load_checkpoint(path, device=f"cuda:{rank}")
        history = ckpt.resume(X, Y, verbose=False, distributed=True, checkpoint=False, sample_weight=w)
        return ckpt.model.backend.to_host(ckpt.model.params), history

    ref = _model("cuda:0", 3)
    expected = _fit(ref, X, Y, batch_size=16, sample_weight=w, **how)
    unweighted = _model("cuda:0", 3)
    _fit(unweighted, X, Y, batch_size=16, **how)
    assert numpy.abs(ref.backend.to_host(ref.params - unweighted.params)).max() > 1e-3  # the weights weighed
    for params, history in _ranks(monkeypatch, fit):
        numpy.testing.assert_allclose(params, ref.backend.to_host(ref.params), rtol=1e-10, atol=1e-12)
        for key in ("loss", "val_loss", "val_mae", "val_r2"):
            numpy.testing.assert_allclose(history[key], expected[key], rtol=1e-10)
    plain = _ranks(monkeypatch, lambda rank: fit(rank, None))
    equal = _ranks(monkeypatch, lambda rank: fit(rank, numpy.full(len(X), 2.0)))
    for (params, history), (params_e, history_e) in zip(plain, equal):
        assert params.tobytes() == params_e.tobytes() and history["loss"] == history_e["loss"]
    _ranks(monkeypatch, lambda rank: fit(rank, callbacks=[interrupt_at(1, 0), gpunn.ModelCheckpoint(path)]))
    recorded = gpunn.load_checkpoint(path, device="cpu").training["source"]
    assert recorded["kind"] == "bootstrap" and recorded["sample_weight"] is True
    for params, history in _ranks(monkeypatch, resume):
        numpy.testing.assert_allclose(params, ref.backend.to_host(ref.params), rtol=1e-10, atol=1e-12)
        for key in ("loss", "val_loss", "val_r2"):
            numpy.testing.assert_allclose(history[key], expected[key], rtol=1e-10)
    alone = gpunn.load_checkpoint(path, device="cuda:0")
    alone.resume(X, Y, verbose=False, checkpoint=False, sample_weight=w)
    numpy.testing.assert_allclose(alone.model.backend.to_host(alone.model.params), ref.backend.to_host(ref.params),
                                  rtol=1e-10, atol=1e-12)


def test_ranks_of_a_weighted_bootstrap_given_other_weights_are_refused_by_the_configuration_check(monkeypatch,
                                                                                                   fake_cupy, data):
    """A bootstrap's ranks each scale their own copy of the weights over every member's resample: ranks given other
    weights would train a mixture of runs. Its source's checksum holds the weights' column, so they stop before the
    first step, as one MLP's do."""
    from thread_ranks import run_ranks

    from gpunn.distributed.digest import ConfigMismatch

    X, Y, w = data

    def fit(rank):
        return _fit(_model(f"cuda:{rank}", 3), X, Y, batch_size=8, distributed=True, bootstrap=True,
                    sample_weight=w if rank == 0 else w[::-1].copy())

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=20.0)
    assert [type(exc) for _, exc in outcomes] == [ConfigMismatch] * 2 and aborted == [], outcomes
    assert "(sample_weight too: its weights are in the data's checksum): " in str(outcomes[0][1])
    assert "data.fingerprint: " in str(outcomes[0][1])
