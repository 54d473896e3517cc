"""graph=True without a GPU: the eager form of the captured step (gpunn.training.graph) is ordinary training.

On the CPU nothing is captured; GraphTrainer runs the very launches it would capture -- the
fixed batch buffers, the preallocated loss, the optimizers' device-side step state
(optimizer_tick, sgd_step_dev, adam_step_dev) -- so comparing it with ordinary training proves
the captured step computes the same math. tests/test_graph_gpu.py (marked gpu) compares the
captured graph itself on a GPU.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunn
import gpunn.model as gm
from gpunn.training.graph import GraphTrainer, GraphWarning
from gpunn.ops.base import Ops
from gpunn.optim import OPTIMIZERS


# graph=True on the CPU says it does not capture (a GraphWarning per fit); the tests here use it on purpose
pytestmark = pytest.mark.filterwarnings("ignore::gpunn.training.graph.GraphWarning")


@pytest.fixture(scope="module")
def data():
    X, Y = gpunn.datasets.make("teacher", n_samples=1100, n_features=6, n_outputs=2, seed=0, device="cpu")
    return X, Y


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_graph_step_is_ordinary_training_bit_for_bit(data, optimizer):
    """Two epochs at batch 128 (8 full batches and a partial one of 76 rows), weight decay on, the learning
    rate halved after the first epoch (the graph's device-side rate must follow it)."""
    X, Y = data
    runs = {}
    for graph in (False, True):
        m = gpunn.MLP([6, 16, 12, 2], activation=["tanh", "relu"], device="cpu", seed=0, graph=graph)
        opt = OPTIMIZERS[optimizer](weight_decay=1e-3)
        h = m.fit(X, Y, epochs=2, batch_size=128, optimizer=opt, verbose=False,
                  schedule=gpunn.Schedule("step", step_size=1, gamma=0.5))
        assert h["lr"][1] == h["lr"][0] / 2
        runs[graph] = (m.params.copy(), h["loss"], m.optimizer.steps, {k: v.copy() for k, v in m.optimizer.state.items()})
    (p0, l0, s0, st0), (p1, l1, s1, st1) = runs[False], runs[True]
    assert s0 == s1 == 18
    np.testing.assert_array_equal(p0, p1)
    assert l0 == l1
    for k in st0:
        np.testing.assert_array_equal(st0[k], st1[k])


def test_graph_true_where_it_cannot_capture_says_so_at_the_users_line(data):
    """README: graph=True forces the graph, "a GraphWarning where it cannot capture" -- the CPU included,
    whose reason is known before the first step; the default ("auto") falls back silently."""
    X, Y = data
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=0, graph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.fit(X[:200], Y[:200], epochs=2, batch_size=64, verbose=False)
    said = [w for w in caught if issubclass(w.category, GraphWarning)]
    assert len(said) == 1 and "not capturing the training step (no GPU" in str(said[0].message)
    assert said[0].filename == __file__ and m.graph_trainer.reason.startswith("no GPU")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpunn.MLP([6, 8, 2], device="cpu", seed=0).fit(X[:200], Y[:200], epochs=1, verbose=False)


def test_a_reason_is_said_once_for_the_fits_that_share_an_optimizer(data):
    """The trainer (and its reason) is kept for the next fit with the same optimizer object; it says its reason
    once, not at every fit (mut12m's G6: warn_if_forced without its 'said already' check warned again and passed)."""
    X, Y = data
    m, opt = gpunn.MLP([6, 8, 2], device="cpu", seed=0, graph=True), gpunn.Adam(lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            m.fit(X[:200], Y[:200], epochs=1, batch_size=64, optimizer=opt, verbose=False)
    assert [str(w.message) for w in caught if issubclass(w.category, GraphWarning)] == [
        "graph=True: not capturing the training step (no GPU: the step runs eagerly); it runs without a graph"]


def test_fit_graph_argument_sets_the_model_flag(data):
    X, Y = data
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=0)
    assert m.graph is None  # "auto"
    m.fit(X[:200], Y[:200], epochs=1, verbose=False, graph=True)
    assert m.graph is True
    m.fit(X[:200], Y[:200], epochs=1, verbose=False)  # None: left as it is
    assert m.graph is True
    m.fit(X[:200], Y[:200], epochs=1, verbose=False, graph="auto")
    assert m.graph is None
    assert gpunn.MLP([6, 2], device="cpu", graph=False).graph is False
    # any case of 'auto', and NumPy's bools, as every flag takes them (mut12m's G1 and G2: "AUTO" or numpy.True_
    # refused passed)
    assert gpunn.MLP([6, 2], device="cpu", graph="AUTO").graph is None
    assert gpunn.MLP([6, 2], device="cpu", graph=np.True_).graph is True
    for bad in ("yes", 1, "on"):
        with pytest.raises(ValueError, match="graph must be None or 'auto'"):
            gpunn.MLP([6, 2], device="cpu", graph=bad)


def test_auto_on_the_cpu_is_the_ordinary_step_and_says_why(data, monkeypatch):
    """The default on the CPU: no GraphTrainer in the loop (not even its eager form), no warning, and
    model.graph_trainer.reason says why."""
    import warnings

    X, Y = data
    calls = []
    monkeypatch.setattr(GraphTrainer, "step", lambda self, *a: calls.append(a))
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(X[:256], Y[:256], epochs=1, batch_size=64, verbose=False)
    assert calls == [] and m.graph_trainer is not None and not m.graph_trainer.active
    assert "no GPU" in m.graph_trainer.reason and not m.graph_trainer.captured
    off = gpunn.MLP([6, 8, 2], device="cpu", seed=0, graph=False)
    off.fit(X[:256], Y[:256], epochs=1, batch_size=64, verbose=False)
    assert off.graph_trainer is None
    np.testing.assert_array_equal(m.params, off.params)


def test_cpu_runs_the_eager_form_and_says_why(data):
    X, Y = data
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=0, graph=True)
    m.fit(X[:256], Y[:256], epochs=1, batch_size=64, verbose=False)
    from gpunn.optim import Adam

    g = GraphTrainer(m, Adam().bind(m.params, m.ops))
    assert g.stream is None and not g.captured and "no GPU" in g.reason


@pytest.mark.parametrize("beta1, beta2", [(0.9, 0.999), (0.99, 0.95)])
def test_device_side_step_state_matches_the_host_scalars(beta1, beta2):
    """The generic optimizer_tick's bias corrections are exactly the 1 - beta**t (Python's pow) that its
    adam_step_dev uses, at every step: NumPy's power was an ulp off at some (0.999 first at t = 7 on the AMD EPYC,
    0.9 at t = 12). At 0.9 and 0.95 that ulp is lost in 1 - beta**t up to t = 20000, so beta1 is also 0.99 (first
    at t = 3: mut20 L10, NumPy's power for beta1 alone, survived the defaults)."""
    ops = Ops(np)
    state = np.zeros(4)
    for t in range(1, 2001):
        ops.optimizer_tick(state, beta1, beta2)
        assert state.tolist() == [t, 0.0, 1.0 - beta1**t, 1.0 - beta2**t], t


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adams_graph_step_leaves_the_bias_corrections_of_its_own_betas_in_the_device_state(optimizer):
    """Adam.graph_update ticks the device-side state with beta1 then beta2: the CUDA kernel reads state[2] as
    1 - beta1**t and state[3] as 1 - beta2**t, where the generic adam_step_dev (this CPU's) recomputes them from
    the step, so the bit-for-bit comparisons here could not tell the two swapped (audit47's O31)."""
    params = np.linspace(-1.0, 1.0, 10)
    adam = OPTIMIZERS[optimizer](lr=0.01, beta1=0.8, beta2=0.9).bind(params, Ops(np))
    state = np.array([0.0, 0.01, 0.0, 0.0])
    for t in (1, 2):
        adam.graph_update(params, np.ones(10), state)
        assert state.tolist() == [t, 0.01, 1.0 - 0.8**t, 1.0 - 0.9**t]


def test_an_optimizer_without_graph_update_trains_normally(data):
    from gpunn.optim import Adam

    class Plain(Adam):
        graph_update = None

    X, Y = data
    ref = gpunn.MLP([6, 8, 2], device="cpu", seed=1)
    ref.fit(X[:300], Y[:300], epochs=1, batch_size=64, optimizer=Adam(lr=1e-3), verbose=False)
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=1, graph=True)
    m.fit(X[:300], Y[:300], epochs=1, batch_size=64, optimizer=Plain(lr=1e-3), verbose=False)
    np.testing.assert_array_equal(ref.params, m.params)


def test_graph_with_emulated_bf16_matches_bf16_training(data, monkeypatch):
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)
    X, Y = data
    out = []
    for graph in (False, True):
        m = gpunn.MLP([6, 16, 2], device="cpu", seed=2, precision="bf16", graph=graph)
        m.fit(X[:400], Y[:400], epochs=1, batch_size=100, verbose=False)
        out.append(m.params.copy())
    np.testing.assert_array_equal(out[0], out[1])


def test_a_fit_that_reuses_the_graph_trainer_takes_its_own_graph_mode(data):
    """The trainer an optimizer's earlier fit made is reused with the graph= of this fit: the default first, then
    graph=True warns that it cannot capture and runs the eager form, then the default again the ordinary step
    (fit's graph= sets model.graph for later fits; mut17b's L94: the reused trainer kept the first fit's mode,
    and graph=True said nothing)."""
    from gpunn.optim import Adam

    X, Y = data
    m, opt = gpunn.MLP([6, 8, 2], device="cpu", seed=0), Adam()

    def fit(**graph):
        m.fit(X[:256], Y[:256], epochs=1, batch_size=64, optimizer=opt, verbose=False, **graph)

    fit()
    first = m.graph_trainer
    assert not first.active
    with pytest.warns(GraphWarning, match="graph=True: not capturing"):
        fit(graph=True)
    assert m.graph_trainer is first and first.active
    fit(graph="auto")
    assert not first.active


def test_resumed_run_with_graph_continues_the_step_count(data, tmp_path):
    """A checkpointed run resumed with graph=True ends with the weights of an uninterrupted run."""
    X, Y = data
    full = gpunn.MLP([6, 8, 2], device="cpu", seed=3, graph=True)
    full.fit(X, Y, epochs=3, batch_size=128, verbose=False)
    part = gpunn.MLP([6, 8, 2], device="cpu", seed=3, graph=True)
    part.fit(X, Y, epochs=2, batch_size=128, verbose=False, callbacks=[gpunn.ModelCheckpoint(str(tmp_path / "run.npz"))])
    ckpt = gpunn.load_checkpoint(str(tmp_path / "run.npz"), device="cpu")
    ckpt.model.graph = True
    ckpt.resume(X, Y, epochs=3, verbose=False)
    np.testing.assert_array_equal(full.params, ckpt.model.params)


def test_a_second_fit_reuses_the_graph_trainer_and_its_step_count(data):
    """Two fits with one optimizer (as gpunn bench does) equal one fit of both epochs, and the second
    fit replays the first one's GraphTrainer; a fit in between without graph is taken up."""
    from gpunn.optim import Adam

    X, Y = data
    ref = gpunn.MLP([6, 8, 2], device="cpu", seed=4)
    ref.fit(X, Y, epochs=3, batch_size=128, optimizer=Adam(), verbose=False, shuffle=False)
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=4, graph=True)
    opt = Adam()
    m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False, shuffle=False)
    first = m.graph_trainer
    m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False, shuffle=False, graph=False)
    m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False, shuffle=False, graph=True)
    assert m.graph_trainer is first and opt.steps == 27
    np.testing.assert_array_equal(ref.params, m.params)


def test_a_trainer_reused_with_four_batch_sizes_keeps_the_step_buffers_of_the_last_three(data):
    """Each batch shape has its own fixed buffers (and graph, on a GPU); a trainer reused by fits of other batch
    sizes (one optimizer) keeps those of the last three shapes it stepped, the oldest dropped first: not every
    shape it ever met, nor without the newest."""
    from gpunn.optim import Adam

    X, Y = data
    m = gpunn.MLP([6, 8, 2], device="cpu", seed=4, graph=True)
    opt = Adam()
    for batch_size in (96, 48, 32, 24):  # 96 rows: one shape a fit
        m.fit(X[:96], Y[:96], epochs=1, batch_size=batch_size, optimizer=opt, verbose=False)
    assert list(m.graph_trainer._steps) == [48, 32, 24] and opt.steps == 1 + 2 + 3 + 4
