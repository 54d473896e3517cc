"""Gradient clipping in an Ensemble: member k clips by the norm of its own gradient (or by value), so it trains as its
MLP with the same optimizer settings (``optimizer.clip_norm`` / ``clip_value``, gpunn.optim), on every CPU path: the
generic member ops, the Numba update, the one-call group pass with Adam inside it, member groups on threads, and a
resumed checkpoint. (tests/test_ensemble_gpu.py holds the CuPy kernels' side.)"""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn import cli
from gpunn.ops import ensemble_ops_for
from gpunn.ops.member_rates import ACTIVE, BETA1, BETA2, CLIP_NORM, CLIP_VALUE, HYPER_FIELDS, LR, MemberRates
from gpunn.optim import make_optimizer

CLIP_NORMS = [None, 0.05, 0.5]  # member 0 unclipped; 0.05 clips every step of these nets, 0.5 some
TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(autouse=True)
def auto_is_the_cpu(monkeypatch):
    """The CPU's contract, on any machine (as tests/test_ensemble.py's)."""
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")


@pytest.fixture
def groups_for_any_work(monkeypatch):
    """Member groups however small the work (as tests/test_ensemble.py's)."""
    import gpunn.ops.ensemble as ens_ops

    for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
        monkeypatch.setattr(ens_ops, name, 0)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
@pytest.mark.parametrize("outputs, fused", [(1, True), (2, True), (1, False)],
                         ids=["one-call-pass", "numba-update", "generic"])
@pytest.mark.parametrize("clip", ["clip_norm", "clip_value"])
def test_each_member_clips_by_its_own_gradient_as_its_mlp_does(ensemble_data, dtype, optimizer, outputs, fused, clip):
    """Member k with clip_norm=c_k (None: unclipped) holds the weights of MLP(seed=seed + k) fit with
    make_optimizer(optimizer, clip_norm=c_k), per-member rates and decay too; likewise clip_value. One output and
    ReLU: the one-call group pass (Adam inside its kernel); two: the Numba update after the pass; fused=False: the
    generic member ops."""
    X, Y = ensemble_data
    Y = Y[:, :outputs]
    sizes = [5, 8, 7, outputs]
    clips = CLIP_NORMS if clip == "clip_norm" else [None, 0.01, 0.05]
    lrs = [0.03, 0.05, 0.1] if optimizer in ("sgd", "nesterov") else [3e-3, 1e-2, 3e-2]
    wds = [0.0, 1e-3, 1e-2]
    fit = dict(epochs=3, batch_size=32, seed=5, verbose=False)
    ens = gpunn.Ensemble(sizes, 3, dtype=dtype, seed=3, fused=fused)
    h = ens.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=wds, **{clip: clips}, **fit)
    for k in range(3):
        twin = gpunn.MLP(sizes, dtype=dtype, seed=3 + k, fused=fused)
        th = twin.fit(X, Y, optimizer=make_optimizer(optimizer, weight_decay=wds[k], **{clip: clips[k]}), lr=lrs[k],
                      **fit)
        assert rel_err(ens.member_params[k], twin.params) <= TOL[dtype], f"member {k}"
        np.testing.assert_allclose(h.member(k)["loss"], th["loss"], rtol=TOL[dtype])
        if clips[k] is not None:  # it clipped: not the unclipped twin's weights
            plain = gpunn.MLP(sizes, dtype=dtype, seed=3 + k, fused=fused)
            plain.fit(X, Y, optimizer=make_optimizer(optimizer, weight_decay=wds[k]), lr=lrs[k], **fit)
            assert rel_err(ens.member_params[k], plain.params) > 1e-3


def test_the_optimizers_clip_is_every_members_and_a_clip_given_to_fit_replaces_its_other_kind(ensemble_data):
    """Adam(clip_norm=c) clips every member by its own norm; fit(clip_value=v) with it clips by value instead (the
    given kind, as fit's weight_decay replaces the optimizer's), and clip_norm=[None, ...] leaves member 0 unclipped."""
    X, Y = ensemble_data
    fit = dict(epochs=2, batch_size=32, seed=5, verbose=False, lr=1e-2)
    ens = gpunn.Ensemble([5, 6, 2], 2, dtype="float64", seed=3)
    ens.fit(X, Y, optimizer=gpunn.Adam(clip_norm=0.05), **fit)
    assert [(m.clip_norm, m.clip_value) for m in ens.optimizer.members] == [(0.05, None)] * 2
    for k in range(2):
        twin = gpunn.MLP([5, 6, 2], dtype="float64", seed=3 + k)
        twin.fit(X, Y, optimizer=gpunn.Adam(clip_norm=0.05), **fit)
        assert rel_err(ens.member_params[k], twin.params) <= 1e-10
    ens.fit(X, Y, optimizer=gpunn.Adam(clip_norm=0.05), clip_value=0.01, **fit)
    assert [(m.clip_norm, m.clip_value) for m in ens.optimizer.members] == [(None, 0.01)] * 2
    ens.fit(X, Y, optimizer=gpunn.Adam(clip_norm=0.05), clip_norm=[None, 0.5], **fit)
    assert [m.clip_norm for m in ens.optimizer.members] == [None, 0.5]
    table = ens.optimizer.rates.host
    assert table[:, CLIP_NORM].tolist() == [0.0, 0.5] and table[:, CLIP_VALUE].tolist() == [0.0, 0.0]


def test_clipping_is_refused_with_a_continued_ensemble_optimizer(ensemble_data):
    X, Y = ensemble_data
    ens = gpunn.Ensemble([5, 6, 2], 2, seed=3)
    ens.fit(X, Y, epochs=1, clip_norm=1.0, verbose=False)
    with pytest.raises(ValueError, match="clip_value with an ensemble's optimizer"):
        ens.fit(X, Y, epochs=1, optimizer=ens.optimizer, clip_value=1.0, verbose=False)


def _table(K, clip_norm=(), clip_value=(), active=None):
    table = np.zeros((K, HYPER_FIELDS))
    table[:, LR], table[:, BETA1], table[:, BETA2], table[:, ACTIVE] = 1e-2, 0.9, 0.999, 1
    if active is not None:
        table[:, ACTIVE] = active
    table[:len(clip_norm), CLIP_NORM], table[:len(clip_value), CLIP_VALUE] = clip_norm, clip_value
    return table


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_numba_clip_and_the_generic_one_scale_each_active_member_by_its_own_norm(dtype):
    """clip_gradients (generic) and the Numba update's clip (_member_clip) against torch's clip_grad_norm_ formula
    per member: member 0 over its limit (scaled to it), 1 under it (kept), 2 by value, 3 unclipped, 4 frozen (its row
    left as it was)."""
    from gpunn.ops.cpu import CpuOps
    from gpunn.ops.ensemble import EnsembleOps

    rng = np.random.default_rng(1)
    K, P = 5, 203  # (203: a tail after the four partial sums)
    g = rng.standard_normal((K, P)).astype(dtype)
    norms = np.sqrt((g.astype(np.float64) ** 2).sum(axis=1))
    table = _table(K, clip_norm=[0.5 * norms[0], 2 * norms[1], 0, 0, 0.1], clip_value=[0, 0, 0.3],
                   active=[1, 1, 1, 1, 0])
    want = g.copy()
    want[0] *= dtype(0.5 * norms[0] / (norms[0] + 1e-6))
    want[2] = np.clip(g[2], -dtype(0.3), dtype(0.3))
    generic = g.copy()
    EnsembleOps(CpuOps(fused=False)).clip_gradients(generic, MemberRates(np, table))
    np.testing.assert_allclose(generic, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(generic[1:], want[1:])
    np.testing.assert_allclose(np.linalg.norm(generic[0].astype(np.float64)), 0.5 * norms[0], rtol=1e-6)
    fast = ensemble_ops_for(CpuOps(fused=True))
    if not fast.fused:
        pytest.skip("Numba is not installed")
    w, m, v = (np.zeros((K, P), dtype) for _ in range(3))
    numba_g = g.copy()
    members = fast.adam_members(w, numba_g, m, v, MemberRates(np, table), 1e-8, 1, False)
    members(slice(None))
    np.testing.assert_allclose(numba_g, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(numba_g[1:], want[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_members_nan_gradient_makes_its_whole_row_nan_under_clip_norm_and_leaves_the_others(dtype):
    """torch's clip_grad_norm_ (and one MLP's clip, gpunn.ops.Ops) with a NaN norm scales by NaN: member 1's row, one
    NaN in it, is NaN throughout on the generic ops and the Numba update, where both left its finite elements
    unscaled; member 0 (finite, clipped) and member 2 (NaN, clipped by value: kept NaN there alone) as before."""
    from gpunn.ops.cpu import CpuOps
    from gpunn.ops.ensemble import EnsembleOps

    K, P = 3, 13
    g = np.linspace(-3.0, 4.0, K * P).reshape(K, P).astype(dtype)
    g[1, 5] = g[2, 5] = np.nan
    table = _table(K, clip_norm=[1.0, 1.0], clip_value=[0, 0, 0.5])
    want = g.copy()
    want[0] *= dtype(1.0 / (np.sqrt((g[0].astype(np.float64) ** 2).sum()) + 1e-6))
    want[1] = np.nan
    want[2] = np.clip(g[2], -dtype(0.5), dtype(0.5))
    generic = g.copy()
    EnsembleOps(CpuOps(fused=False)).clip_gradients(generic, MemberRates(np, table))
    np.testing.assert_array_equal(generic, want)
    fast = ensemble_ops_for(CpuOps(fused=True))
    if not fast.fused:
        pytest.skip("Numba is not installed")
    w, m, v = (np.zeros((K, P), dtype) for _ in range(3))
    numba_g = g.copy()
    fast.adam_members(w, numba_g, m, v, MemberRates(np, table), 1e-8, 1, False)(slice(None))
    np.testing.assert_array_equal(numba_g, want)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])  # leaky_relu: no one-call pass, the update after it
@pytest.mark.parametrize("clip", ["clip_norm", "clip_value"])
def test_clipping_in_member_groups_and_inside_the_one_call_pass_equals_one_pass_bit_for_bit(
        optimizer, activation, clip, groups_for_any_work):
    """With per-member clips and a member frozen part-way, a fit in 2 or 3 member groups (each group's update on its
    thread; Adam inside the one-call kernel, right after each member's backward pass) gives the weights and losses of
    one pass through train_step and then the optimizer's step, bit for bit."""
    X, Y = gpunn.datasets.make("teacher", 120, 4, 1, seed=2, device="cpu")
    clips = [None, 0.05, 0.5, 0.2, 1e-3] if clip == "clip_norm" else [None, 0.01, 0.1, 0.02, 1e-4]
    results = {}
    for threads in (1, 2, 3):
        ens = gpunn.Ensemble([4, 9, 6, 1], 5, activation=activation, device="cpu", dtype="float32", seed=3)
        ens.member_ops.threads = threads
        if threads == 1:  # the reference: train_step, then the optimizer's step
            ens.train_step_and_update = None
        h = ens.fit(X, Y, optimizer=optimizer, lr=[1e-3, 1e-2, 3e-2, 0.1, 0.3], weight_decay=[0, 1e-3, 0, 1e-2, 0.1],
                    epochs=4, batch_size=16, seed=1, verbose=False, callbacks=[_FreezeMember(2, after_epoch=1)],
                    **{clip: clips})
        results[threads] = (ens.params.copy(), np.array(h["loss"]))
    for threads in (2, 3):
        np.testing.assert_array_equal(results[threads][0], results[1][0])
        np.testing.assert_array_equal(results[threads][1], results[1][1])


class _FreezeMember(gpunn.Callback):
    """Freezes member ``k`` (as early stopping does) at the end of epoch ``after_epoch``."""

    def __init__(self, k, after_epoch):
        self.k, self.after_epoch = k, after_epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.after_epoch:
            trainer.optimizer.freeze([self.k])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_interrupted_clipped_ensemble_run_resumes_bit_for_bit(ensemble_data, tmp_path, interrupt_at, dtype, capsys):
    """The checkpoint keeps each member's clip (its optimizer's config; gpunn info shows them): the resumed run is the
    uninterrupted one."""
    X, Y = ensemble_data
    fit = dict(epochs=4, batch_size=25, optimizer="adam", lr=[2e-3, 3e-2, 1e-2], clip_norm=[0.05, None, 0.5],
               seed=4, verbose=False)
    reference = gpunn.Ensemble([5, 8, 7, 2], 3, dtype=dtype, seed=7)
    reference.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    ens = gpunn.Ensemble([5, 8, 7, 2], 3, dtype=dtype, seed=7)
    assert ens.fit(X, Y, callbacks=[interrupt_at(2, 3), gpunn.ModelCheckpoint(path)], **fit).interrupted
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert [m.clip_norm for m in ckpt.optimizer.members] == [0.05, None, 0.5]
    assert cli.main(["info", str(path)]) == 0  # its trained line: each member's rate and clip (none: unclipped)
    assert "; adam lr 0.002, 0.03, 0.01, clip_norm 0.05, none, 0.5, batch 25" in capsys.readouterr().out
    ckpt.resume(X, Y, verbose=False)
    np.testing.assert_array_equal(ckpt.model.params, reference.params)


@pytest.mark.parametrize("option", ["clip_norm", "clip_value"])
def test_an_mlps_fit_given_a_clip_says_it_is_the_optimizers_option(option):
    """Ensemble.fit takes clip_norm and clip_value (one per member); MLP.fit was told they were an Ensemble's option,
    where its optimizer takes them."""
    X, Y = gpunn.datasets.make("linear", 32, 3, 1, seed=0, device="cpu")
    with pytest.raises(TypeError, match=rf"{option} is the optimizer's option: model.fit\(X, Y, "
                                        rf"optimizer=gpunn.Adam\({option}=1.0\)\)"):
        gpunn.MLP([3, 4, 1]).fit(X, Y, **{option: 1.0}, verbose=False)


def test_two_ranks_clip_each_member_by_its_global_gradient_as_one_process_at_twice_the_batch(monkeypatch, fake_cupy):
    """Data parallel (ranks as threads on the stand-in's GPUs): the optimizer clips after the gradients' all-reduce,
    so each member clips by the norm of its gradient over the global batch, and the 2-rank run at batch 8 is the
    one-process run at batch 16, every member, to summation order; not the unclipped run."""
    from thread_ranks import run_ranks

    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 3))
    Y = np.stack([np.sin(X[:, 0]) + X[:, 1] ** 2, X[:, 2]], axis=1)
    fit = dict(epochs=3, optimizer="adam", lr=[1e-2, 3e-3, 3e-2], verbose=False, clip_norm=[0.05, None, 0.5])

    def model(device):
        return gpunn.Ensemble([3, 8, 2], 3, activation="tanh", dtype="float64", device=device, seed=0)

    def ranked(rank):
        ens = model(f"cuda:{rank}")
        ens.fit(X, Y, batch_size=8, distributed=True, **fit)
        return ens.member_params.get()

    ref, plain = model("cuda:0"), model("cuda:0")
    ref.fit(X, Y, batch_size=16, **fit)
    plain.fit(X, Y, batch_size=16, **{**fit, "clip_norm": None})
    outcomes, aborted = run_ranks(monkeypatch, 2, ranked, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    for params, _ in outcomes:
        np.testing.assert_allclose(params, ref.member_params.get(), rtol=1e-10, atol=1e-12)
    assert rel_err(ref.member_params[0].get(), plain.member_params[0].get()) > 1e-3  # member 0 clipped


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_graph_steps_eager_form_clips_as_the_ordinary_step(ensemble_data, optimizer):
    """Ensemble(graph=True) on the CPU runs the captured step's launches eagerly (EnsembleOptimizer.graph_update, its
    step count on the device): the same clipped weights as graph=False, bit for bit."""
    import warnings

    X, Y = ensemble_data
    runs = []
    for graph, clips in ((False, [0.05, None, 0.5]), (True, [0.05, None, 0.5]), (False, None)):
        ens = gpunn.Ensemble([5, 8, 7, 2], 3, dtype="float64", seed=3, graph=graph)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gpunn.training.graph.GraphWarning)
            ens.fit(X, Y, optimizer=optimizer, lr=[1e-2, 3e-2, 0.1], clip_norm=clips, epochs=2, batch_size=32, seed=1,
                    verbose=False)
        runs.append(ens.member_params.copy())
    np.testing.assert_array_equal(runs[1], runs[0])
    assert rel_err(runs[1][0], runs[2][0]) > 1e-3 and np.array_equal(runs[1][1], runs[2][1])  # (member 1 unclipped)


def test_an_ensembles_optimizer_shows_a_clip_where_some_member_clips():
    """A member optimizer's config holds its clip only where it clips (gpunn.optim): member 0's alone decided what the
    repr showed, so clip_norm=[None, 1.0] was left out."""
    from gpunn.training.ensemble import EnsembleOptimizer

    assert "clip" not in repr(EnsembleOptimizer("adam", 2, np))
    assert repr(EnsembleOptimizer("adam", 2, np, clip_norm=[None, 1.0])).endswith(
        "weight_decay=0.0, clip_norm=[None, 1.0], steps=0)")
    assert "clip_value=0.5, steps=0)" in repr(EnsembleOptimizer("sgd", 2, np, clip_value=0.5))


@pytest.mark.parametrize("kwargs, said", [
    (dict(clip_norm=[1.0, -1.0]), r"member 1: clip_norm must be a positive finite number \(None: no clipping\)"),
    (dict(clip_value=[0.5, float("inf")]), "member 1: clip_value must be a positive finite number"),
    (dict(clip_norm=1.0, clip_value=[None, 0.5]), "member 1: clip_norm=1.0 and clip_value=0.5: gpunn clips one way"),
    (dict(clip_norm=[1.0, 2.0, 3.0]), "clip_norm")])
def test_a_bad_clip_of_a_member_is_refused_naming_it(ensemble_data, kwargs, said):
    X, Y = ensemble_data
    with pytest.raises(ValueError, match=said):
        gpunn.Ensemble([5, 6, 2], 2, seed=3).fit(X, Y, epochs=1, verbose=False, **kwargs)


def test_a_members_float32_gradient_past_float32s_squares_is_clipped_to_its_norm():
    """Each member's squares summed in float64: member 0's float32 row of 3e19 and -4e19 (norm 5e19, whose square
    float32 cannot hold) is scaled to its limit, not zeroed, on the generic ops and the Numba update; member 1 (no
    clip) is left as it is."""
    from gpunn.ops.cpu import CpuOps
    from gpunn.ops.ensemble import EnsembleOps

    g = np.array([[3e19, -4e19, 0.0, 1e18, -2e18], [3e19, -4e19, 0.0, 1e18, -2e18]], np.float32)
    want = g.copy()
    want[0] = g[0].astype(np.float64) / np.linalg.norm(g[0].astype(np.float64))
    table = _table(2, clip_norm=[1.0], clip_value=[])
    generic = g.copy()
    EnsembleOps(CpuOps(fused=False)).clip_gradients(generic, MemberRates(np, table))
    np.testing.assert_allclose(generic, want, rtol=1e-6, atol=0)
    fast = ensemble_ops_for(CpuOps(fused=True))
    if not fast.fused:
        pytest.skip("Numba is not installed")
    w, m, v = (np.zeros(g.shape, np.float32) for _ in range(3))
    numba_g = g.copy()
    fast.adam_members(w, numba_g, m, v, MemberRates(np, table), 1e-8, 1, False)(slice(None))
    np.testing.assert_allclose(numba_g, want, rtol=1e-6, atol=0)


def test_gpunn_info_shows_the_members_clips_where_member_0_has_none(ensemble_data, tmp_path, capsys):
    """The trained line shows a clip where any member clips, not only where member 0 does (audit49: reading member
    0's alone passed every test): clip_value none, 0.5 for an unclipped member 0; no clip_norm, which none has."""
    X, Y = ensemble_data
    path = tmp_path / "run.npz"
    ens = gpunn.Ensemble([5, 8, 2], 2, seed=7)
    ens.fit(X, Y, epochs=1, batch_size=25, optimizer="sgd", lr=0.05, clip_value=[None, 0.5], verbose=False,
            callbacks=[gpunn.ModelCheckpoint(path)])
    capsys.readouterr()
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "; sgd lr 0.05, clip_value none, 0.5, batch 25" in out and "clip_norm" not in out
