"""sample_weight for an Ensemble: every member weighs the rows by the same weights, so member k trains, validates and
scores as ``MLP(seed=seed + k).fit(X, Y, sample_weight=w)`` (gpunn.sample_weights), bit for bit on the CPU."""
import numpy
import pytest
from stand_in import is_stand_in

import gpunn
from gpunn.ops import ensemble_ops_for
from gpunn.optim import make_optimizer
from gpunn.training.ensemble import bootstrap_rows
from gpunn.training.fit import held_out_rows
from test_sample_weight import data  # noqa: F401 (one MLP's weighted tests' rows and weights, some 0)


LRS, WDS = [1e-3, 3e-3, 1e-2], [0.0, 1e-3, 1e-2]
VALIDATION = ("val_loss", "val_mse", "val_mae", "val_r2")


def assert_members_are_their_mlps(ens, history, X, Y, optimizer, lrs, fit, model=None):
    """Member k's weights, losses and validation metrics are its MLP's, fit with its lr and weight decay, bit for
    bit."""
    for k in range(ens.n_models):
        twin = gpunn.MLP(list(ens.layer_sizes), dtype=ens.dtype.name, device="cpu", seed=ens.seeds[k], **(model or {}))
        h = twin.fit(X, Y, optimizer=make_optimizer(optimizer, weight_decay=WDS[k]), lr=lrs[k], **fit)
        numpy.testing.assert_array_equal(ens.member_params[k], twin.params, err_msg=f"member {k}")
        mine = history.member(k)
        for key in ("loss", *VALIDATION):
            assert mine.get(key) == h.get(key), (k, key)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer, outputs, activation", [
    ("adam", 2, "tanh"), ("sgd", 2, "relu"), ("adamw", 1, "relu"), ("momentum", 1, "sigmoid")])
def test_each_member_of_a_weighted_fit_trains_and_validates_as_its_weighted_mlp_bit_for_bit(
        data, dtype, optimizer, outputs, activation):
    """One output, ReLU/sigmoid, float32: where the unweighted step is the one Numba call over the members (its
    kernel reads Y's first column alone), a weighted batch takes the plain pass, as one MLP's takes its reference
    step. A held-out fraction's rows weigh every member's val_* metrics (val_mae per member)."""
    X, Y, w = data
    Y = Y[:, :outputs]
    lrs = [lr * (10 if optimizer in ("sgd", "momentum") else 1) for lr in LRS]
    fit = dict(epochs=3, batch_size=32, seed=5, validation_fraction=0.2, verbose=False, sample_weight=w)
    ens = gpunn.Ensemble([4, 8, 7, outputs], 3, activation=activation, dtype=dtype, device="cpu", seed=10)
    history = ens.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=WDS, **fit)
    assert_members_are_their_mlps(ens, history, X, Y, optimizer, lrs, fit, {"activation": activation})
    unweighted = gpunn.Ensemble([4, 8, 7, outputs], 3, activation=activation, dtype=dtype, device="cpu", seed=10)
    unweighted.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=WDS, **{**fit, "sample_weight": None})
    assert not numpy.allclose(unweighted.params, ens.params, rtol=1e-3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_a_bootstrapped_member_trains_as_its_mlp_on_its_resample_with_its_rows_weights(data, dtype, shuffle):
    """With bootstrap=True each row's weight goes with it into every member's resample, and the resample is a set of
    rows weighed on its own (its weights scaled to mean 1 over it): member k is the MLP fit on X[rows_k] with
    w[rows_k], bit for bit, losses too."""
    X, Y, w = data
    fit = dict(epochs=2, batch_size=32, seed=9, lr=1e-2, shuffle=shuffle, verbose=False)
    ens = gpunn.Ensemble([4, 8, 2], 2, dtype=dtype, device="cpu", seed=0)
    history = ens.fit(X, Y, bootstrap=True, sample_weight=w, **fit)
    for k in range(2):
        rows = bootstrap_rows(ens.backend, 9, k, X.shape[0])
        twin = gpunn.MLP([4, 8, 2], dtype=dtype, device="cpu", seed=k)
        h = twin.fit(X[rows], Y[rows], sample_weight=w[rows], **fit)
        numpy.testing.assert_array_equal(ens.member_params[k], twin.params)
        assert history.member(k)["loss"] == h["loss"]


@pytest.mark.parametrize("bootstrap", [False, True])
@pytest.mark.parametrize("weights", [lambda m: numpy.ones(m), lambda m: numpy.full(m, 2.5), lambda m: 4.0],
                         ids=["ones", "constant", "number"])
def test_equal_weights_train_the_unweighted_ensemble_bit_for_bit(data, weights, bootstrap):
    X, Y, _ = data
    runs = []
    for sample_weight in (None, weights(X.shape[0])):
        ens = gpunn.Ensemble([4, 16, 1], 2, dtype="float32", device="cpu", seed=2)
        history = ens.fit(X, Y[:, :1], epochs=3, batch_size=32, validation_fraction=0.2, bootstrap=bootstrap,
                          verbose=False, sample_weight=sample_weight)
        runs.append((ens.params.copy(), dict(history)))
    numpy.testing.assert_array_equal(runs[1][0], runs[0][0])
    for key in ("loss", *VALIDATION):
        assert runs[1][1][key] == runs[0][1][key]


def test_a_weighted_step_in_member_groups_equals_one_pass_bit_for_bit(data, monkeypatch):
    """On threads of their own, each member group's plain pass weighs its members' rows (bootstrap: each member's
    own weights, Y[group]) as the whole pass does."""
    import gpunn.ops.ensemble as ens_ops

    for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
        monkeypatch.setattr(ens_ops, name, 0)
    X, Y, w = data
    for bootstrap in (False, True):
        runs = []
        for threads in (2, 1):
            ens = gpunn.Ensemble([4, 8, 2], 4, dtype="float64", device="cpu", seed=1)
            ens.member_ops.threads = threads
            assert (ens._groups(X[:32], Y[:32], one_call=False) is None) == (threads == 1)
            history = ens.fit(X, Y, epochs=2, batch_size=32, lr=[1e-3, 1e-2, 3e-2, 1e-1], bootstrap=bootstrap,
                              verbose=False, sample_weight=w)
            runs.append((ens.params.copy(), history["loss"]))
        numpy.testing.assert_array_equal(runs[0][0], runs[1][0])
        assert runs[0][1] == runs[1][1]


def test_bootstrapped_members_with_a_held_out_fraction_resample_the_training_rows_with_their_own_weights(data):
    """With validation_fraction the resamples are drawn from the training rows (X[kept]), each row with its own
    weight: member k is the MLP fit on X[kept][rows_k] with w[kept][rows_k] (not the weights of X's first rows), and
    its val_* weigh the held-out rows by theirs."""
    from gpunn.training.fit import rows_trained_on

    X, Y, w = data
    fit = dict(epochs=2, batch_size=32, seed=9, lr=1e-2, verbose=False)
    ens = gpunn.Ensemble([4, 8, 2], 2, dtype="float64", device="cpu", seed=0)
    history = ens.fit(X, Y, bootstrap=True, sample_weight=w, validation_fraction=0.2, **fit)
    kept = rows_trained_on(None, 0.2, 9)(X.shape[0])
    held = numpy.setdiff1d(numpy.arange(X.shape[0]), kept)
    for k in range(2):
        rows = kept[bootstrap_rows(ens.backend, 9, k, len(kept))]
        twin = gpunn.MLP([4, 8, 2], dtype="float64", device="cpu", seed=k)
        h = twin.fit(X[rows], Y[rows], sample_weight=w[rows], **fit)
        numpy.testing.assert_array_equal(ens.member_params[k], twin.params)
        assert history.member(k)["loss"] == h["loss"]
        logs = twin.evaluate(X[held], Y[held], sample_weight=w[held])
        assert history.member(k)["val_mse"][-1] == pytest.approx(logs["mse"], rel=1e-9)


@pytest.mark.parametrize("optimizer, activation, bootstrap", [
    ("adam", "relu", False), ("sgd", "tanh", True), ("adamw", "sigmoid", True), ("momentum", "relu", False)])
@pytest.mark.parametrize("split", [False, True])
def test_a_weighted_step_runs_the_one_call_pass_with_the_plain_passs_bits(
        data, monkeypatch, optimizer, activation, bootstrap, split):
    """A weighted batch of a one-output net (Y's second column its rows' weights; a bootstrap batch's each member's
    own) runs as the one Numba call over the members, the Adam step inside it, in one pass or in member groups, and
    trains the weights and losses of Ensemble._forward and _backward (EnsembleOps.loss_gradient(weights=)) bit for
    bit. The call read Y's first column alone: a weighted batch trained unweighted there."""
    import gpunn.ops.ensemble as ens_ops
    from test_ensemble import _record_group_passes

    if split:
        for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
            monkeypatch.setattr(ens_ops, name, 0)
    calls, plain = _record_group_passes(monkeypatch)
    X, Y, w = data
    X, Y = X.astype("float32"), Y[:, :1].astype("float32")
    fit = dict(optimizer=optimizer, lr=[1e-3, 1e-2, 3e-2, 0.1], weight_decay=[0.0, 1e-3, 0.0, 1e-2], epochs=2,
               batch_size=32, seed=1, verbose=False, bootstrap=bootstrap, sample_weight=w, validation_fraction=0.2)
    runs = []
    for one_call in (True, False):
        ens = gpunn.Ensemble([4, 12, 6, 1], 4, device="cpu", dtype="float32", seed=3, activation=activation)
        if not ens.member_ops.fused:
            pytest.skip("the one-call pass needs Numba")
        ens.member_ops.threads = 2 if split else 1
        if not one_call:  # the plain pass
            ens.member_ops.one_call_applies = lambda *a: False
        calls.clear(), plain.clear()
        history = ens.fit(X, Y, **fit)
        assert bool(calls) == one_call and {c[:2] for c in calls} <= ({(0, 2), (2, 4)} if split else {(0, 4)})
        runs.append((ens.params.copy(), history["loss"], history["val_r2"]))
    numpy.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1:] == runs[1][1:]


def test_a_second_column_of_y_is_read_as_weights_only_in_a_weighted_fit(data):
    """The one call takes a Y of two columns for a one-output net as a weighted batch only while a weighted fit trains
    the ensemble (weighted_rows); a train_step given such a Y otherwise is refused as the plain pass refuses it, not
    trained on its second column as weights."""
    from gpunn.sample_weights import mean_one, with_weights
    from gpunn.training.fit import weighted_rows

    X, Y, w = data
    X, Yw = X[:32].astype("float32"), with_weights(numpy, Y[:32, :1].astype("float32"), mean_one(w[:32], "rows"))
    ens = gpunn.Ensemble([4, 8, 6, 1], 2, dtype="float32", device="cpu", seed=0)
    with pytest.raises(ValueError, match="broadcast"):
        ens.train_step(X, Yw)
    with weighted_rows(ens, True):
        sums = ens.train_step(X, Yw)
    for k in range(2):
        P = ens[k].predict(X).astype("float64")[:, 0]
        expected = float(((P - Yw[:, 0]) ** 2 * Yw[:, 1]).sum())
        assert sums[k] == pytest.approx(expected, rel=1e-5)


def test_validation_datas_weights_weigh_every_members_metrics(data):
    """validation_data=(X_val, Y_val, w_val) (Keras's third item): each member's val_* metrics are its weighted MLP's,
    bit for bit; the Ensemble refused the third item before."""
    X, Y, w = data
    fit = dict(epochs=2, batch_size=32, seed=1, verbose=False, sample_weight=w[60:],
               validation_data=(X[:60], Y[:60], w[:60]))
    ens = gpunn.Ensemble([4, 8, 2], 3, dtype="float64", device="cpu", seed=4)
    history = ens.fit(X[60:], Y[60:], optimizer="adam", lr=LRS, weight_decay=WDS, **fit)
    assert_members_are_their_mlps(ens, history, X[60:], Y[60:], "adam", LRS, fit)
    unweighted = ens.fit(X[60:], Y[60:], epochs=1, verbose=False, validation_data=(X[:60], Y[:60]))
    weighted = gpunn.Ensemble([4, 8, 2], 3, dtype="float64", device="cpu", seed=4)
    weighted.params[...] = ens.params
    assert weighted.fit(X[60:], Y[60:], epochs=1, verbose=False,
                        validation_data=(X[:60], Y[:60], w[:60]))["val_mae"] != unweighted["val_mae"]


def test_evaluate_and_score_weigh_every_members_metrics_as_its_mlps_and_as_validation(data):
    """ens.evaluate(X, Y, sample_weight=w) and score: member k's metrics are ens[k]'s weighted ones (MLP.evaluate's)
    and the fit's weighted val_* metrics on the same rows; Ensemble.evaluate and score took no sample_weight (a
    TypeError hinting at one MLP's)."""
    X, Y, w = data
    ens = gpunn.Ensemble([4, 8, 2], 3, dtype="float64", device="cpu", seed=4)
    history = ens.fit(X[60:], Y[60:], epochs=2, batch_size=32, lr=LRS, verbose=False, sample_weight=w[60:],
                      validation_data=(X[:60], Y[:60], w[:60]))
    logs = ens.evaluate(X[:60], Y[:60], sample_weight=w[:60])
    for key in VALIDATION:
        assert logs[key.removeprefix("val_")] == history[key][-1]
    for k in range(3):
        member = ens[k].evaluate(X, Y, sample_weight=w)
        for key, value in ens.evaluate(X, Y, sample_weight=w).items():
            assert value[k] == pytest.approx(member[key], rel=1e-12, abs=1e-15), (k, key)
    assert ens.score(X, Y, sample_weight=w) == ens.evaluate(X, Y, sample_weight=w)["r2"] != ens.score(X, Y)
    assert ens.evaluate(X, Y, sample_weight=numpy.ones(240)) == ens.evaluate(X, Y)
    with pytest.raises(ValueError, match=r"^sample_weight weighs the rows of in-memory arrays; a data source carries "
                                         r"its own .*: make the source with them, or evaluate its rows loaded as "
                                         r"\(X, Y\) with sample_weight$"):
        ens.evaluate(gpunn.data.iterable([(X, Y)]), sample_weight=w)
    with pytest.raises(ValueError, match=r"^sample_weight has 3 weights for 240 rows: one a row$"):
        ens.score(X, Y, sample_weight=w[:3])


class StopAfter2(gpunn.Callback):
    def on_epoch_end(self, trainer, epoch, logs):
        trainer.stop = epoch == 1


@pytest.mark.parametrize("bootstrap, validation", [(False, {"validation_fraction": 0.2}), (True, {}),
                                                   (True, {"validation_fraction": 0.2})])
def test_a_weighted_ensembles_run_resumes_exactly_and_only_with_its_weights(data, tmp_path, bootstrap, validation):
    """A checkpoint of a weighted ensemble's run resumes, given the same weights, to the whole run's weights and
    history bit for bit (a bootstrap's resamples weighed again by their rows' weights: with a held-out fraction, the
    training rows' weights); without them, or with others, it is refused as one MLP's run is. An Ensemble's run
    refused sample_weight in resume before."""
    X, Y, w = data
    path = tmp_path / "run.npz"
    fit = dict(epochs=4, batch_size=32, lr=LRS, verbose=False, sample_weight=w, bootstrap=bootstrap, **validation)
    whole = gpunn.Ensemble([4, 8, 2], 3, dtype="float64", device="cpu", seed=1)
    expected = whole.fit(X, Y, **fit)
    gpunn.Ensemble([4, 8, 2], 3, dtype="float64", device="cpu", seed=1).fit(
        X, Y, callbacks=[gpunn.ModelCheckpoint(path), StopAfter2()], **fit)
    for kwargs, says in (({}, r"was trained with sample_weight: pass the same weights to resume"),
                         ({"sample_weight": w[::-1].copy()}, r"trained on other values: these X, Y and sample_weight")):
        with pytest.raises(ValueError, match=says):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, **kwargs)
    if validation:  # the held-out rows' weights alone other: refused too
        other = w.copy()
        other[held_out_rows(len(X), 0.2, gpunn.load_checkpoint(path).settings.seed)[0][0]] += 2.0
        with pytest.raises(ValueError, match=r"held out other rows: .* of these X, Y and sample_weight are not the run's"):
            gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False, sample_weight=other)
    checkpoint = gpunn.load_checkpoint(path, device="cpu")
    history = checkpoint.resume(X, Y, verbose=False, sample_weight=w)
    numpy.testing.assert_array_equal(checkpoint.model.params, whole.params)
    for key in ("loss", *(VALIDATION if validation else ())):
        assert history[key] == expected[key], key


def test_what_an_ensembles_sample_weight_does_not_reach_is_refused_in_words(data):
    X, Y, w = data
    ens = gpunn.Ensemble([4, 8, 2], 2, device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"^sample_weight weighs the rows of in-memory arrays; a data source"):
        ens.fit(gpunn.data.iterable([(X, Y)]), epochs=1, verbose=False, sample_weight=w)
    with pytest.raises(ValueError, match=r"^sample_weight has 239 weights for 240 rows: one a row$"):
        ens.fit(X, Y, epochs=1, verbose=False, sample_weight=w[1:])
    with pytest.raises(ValueError, match=r"^sample_weight of shape \(2, 240\), one vector of weights per member, is "
                                         r"not taken: every member weighs the rows by the same weights"):
        ens.fit(X, Y, epochs=1, verbose=False, sample_weight=numpy.stack([w, w]))  # (it said "must be 1-D")
    with pytest.raises(ValueError, match=r"zero for every one of member 1's bootstrap resample's rows"):
        gpunn.Ensemble([4, 8, 2], 2, device="cpu", seed=0).fit(X[:4], Y[:4], epochs=1, verbose=False,
                                                               bootstrap=True, seed=_seed_leaving_member_1_unweighed(),
                                                               sample_weight=[0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("step", ["train_step", "_forward", "_backward"])
def test_an_ensemble_or_mlp_subclass_with_its_own_step_is_refused_weights_as_an_mlps_is(data, tmp_path, step):
    """An Ensemble subclass's own train_step, _forward or _backward would be given Y with the weights' column (the
    plain pass, a GPU's, float64's, calls them): refused as an MLP subclass's was, a weighted source's too, and
    loss_and_gradients(sample_weight=) of either, which took them."""
    X, Y, w = data

    def own(base):
        return type("OwnStep", (base,), {step: lambda self, *a, **k: getattr(base, step)(self, *a, **k)})

    says = r"needs Ensemble's own training step; OwnStep defines its own train_step, _forward or _backward"
    ens = own(gpunn.Ensemble)([4, 8, 2], 2, device="cpu", dtype="float64", seed=0)
    with pytest.raises(TypeError, match=r"^sample_weight " + says):
        ens.fit(X, Y, epochs=1, verbose=False, sample_weight=w)
    with pytest.raises(TypeError, match=r"^sample_weight " + says):
        ens.loss_and_gradients(X, Y, sample_weight=w)
    numpy.save(tmp_path / "X.npy", X), numpy.save(tmp_path / "Y.npy", Y), numpy.save(tmp_path / "w.npy", w)
    with gpunn.data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", weights=tmp_path / "w.npy") as weighted:
        with pytest.raises(TypeError, match=r"has a weight for each row, which " + says):
            ens.fit(weighted, epochs=1, verbose=False)
    with pytest.raises(TypeError, match=r"^sample_weight needs MLP's own training step; OwnStep defines"):
        own(gpunn.MLP)([4, 8, 2], device="cpu", seed=0).loss_and_gradients(X, Y, sample_weight=w)
    assert ens.fit(X, Y, epochs=1, verbose=False)["loss"]  # (unweighted, its step is its own to take)


def _seed_leaving_member_1_unweighed():
    """A seed whose bootstrap resample of 4 rows for member 1 leaves out row 3, where member 0's takes it."""
    backend = gpunn.backend.resolve("cpu")
    for seed in range(1000):
        if 3 in bootstrap_rows(backend, seed, 0, 4) and 3 not in bootstrap_rows(backend, seed, 1, 4):
            return seed
    raise AssertionError("no such seed under 1000")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_weighted_ensemble_on_the_gpu_follows_the_cpus(gpu, data, dtype):
    """On CuPy the weighted loss of every member is one kernel, member_weighted_mse_grad (reading Y and its weights'
    column through member and row steps), and the step is captured as a CUDA graph, the default; the run follows the
    CPU's."""
    X, Y, w = data
    xp = gpu.xp
    fake = is_stand_in(xp)
    if fake:
        xp.state.launches.clear()
    results = []
    for device in ("cpu", "cuda"):
        ens = gpunn.Ensemble([4, 16, 2], 3, dtype=dtype, device=device, seed=2)
        history = ens.fit(X, Y, epochs=3, batch_size=32, shuffle=False, lr=LRS, verbose=False, sample_weight=w,
                          validation_fraction=0.2)  # (the GPU draws its shuffles with cuRAND)
        params = ens.params.get() if device == "cuda" else ens.params
        results.append((params, history["loss"], history["val_r2"], history["val_mae"]))
    assert ens.graph_trainer.captured, ens.graph_trainer.reason
    if fake:  # (the eager step before each capture; the replays are not launches of their own)
        assert any("member_weighted_mse_grad" in name for name, _, _ in xp.state.launches)
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-4, 1e-5)
    for got, expected in zip(results[1], results[0]):
        numpy.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.gpu
def test_the_weighted_member_kernel_reads_y_and_weights_only_of_the_ensembles_members(gpu):
    """member_weighted_mse_grad reads member k's Y and weights at k member steps: given a member axis of 1 (or of
    another count than K) it read past them. Those go the generic way, as the unweighted kernel's do: one member's
    are every member's (broadcast), another count is refused by NumPy's rules."""
    from gpunn.ops import ops_for

    xp, K, m, n = gpu.xp, 3, 5, 2
    rng = numpy.random.default_rng(0)
    A, Y, w = (xp.asarray(rng.uniform(0.5, 2, shape)) for shape in ((K, m, n), (m, n), (m,)))
    member_ops = ensemble_ops_for(ops_for(gpu))
    dA = xp.empty_like(A)
    expected = member_ops.loss_gradient(A, Y, dA, weights=w)
    for targets, weights in ((Y[None], w), (Y, w[None]), (Y[None], w[None])):
        got = xp.empty_like(A)
        numpy.testing.assert_allclose(gpu.to_host(member_ops.loss_gradient(A, targets, got, weights=weights)),
                                      gpu.to_host(expected), rtol=1e-12)
        numpy.testing.assert_allclose(gpu.to_host(got), gpu.to_host(dA), rtol=1e-12)
    for targets, weights in ((xp.stack([Y, Y]), w), (Y, xp.stack([w, w]))):
        with pytest.raises(ValueError):
            member_ops.loss_gradient(A, targets, xp.empty_like(A), weights=weights)


@pytest.mark.gpu
def test_a_bootstrapped_weighted_member_on_the_gpu_trains_as_its_mlp_on_its_resample(gpu, data):
    """A bootstrap batch's Y is (K, rows, outputs + 1), each member's weights its own: the kernel reads them at each
    member's step. Member k follows the MLP on cuda fit on its resample (drawn there) with its rows' weights."""
    X, Y, w = data
    fit = dict(epochs=2, batch_size=32, lr=1e-2, seed=3, shuffle=False, verbose=False)
    ens = gpunn.Ensemble([4, 16, 2], 2, dtype="float64", device="cuda", seed=0)
    ens.fit(X, Y, bootstrap=True, sample_weight=w, **fit)
    for k in range(2):
        rows = bootstrap_rows(ens.backend, 3, k, X.shape[0]).get()
        twin = gpunn.MLP([4, 16, 2], dtype="float64", device="cuda", seed=k)
        twin.fit(X[rows], Y[rows], sample_weight=w[rows], **fit)
        numpy.testing.assert_allclose(ens.member_params[k].get(), twin.params.get(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bootstrap", [False, True])
def test_gpunn_info_of_a_weighted_ensembles_run_says_it_resumes_with_the_weights(data, tmp_path, bootstrap):
    """A bootstrapped ensemble's weighted run records its source as "bootstrap": info said to resume(X, Y) or
    .resume(source), which a resume refuses (without the weights; a source with bootstrap)."""
    from gpunn.cli.model_info import describe

    X, Y, w = data
    gpunn.Ensemble([4, 8, 2], 2, device="cpu").fit(X, Y, sample_weight=w, bootstrap=bootstrap, epochs=1,
                                                   verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "e.npz")])
    lines = describe(tmp_path / "e.npz")
    assert "resume(X, Y, sample_weight=w))" in lines["checkpoint"]
    assert lines["trained"].endswith("(240 training rows, weighted by sample_weight)")
