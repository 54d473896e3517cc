"""Where PyTorch is installed (the bench extra; CI has none and skips): `gpunn bench`'s torch peers train what
gpunn's own rows train. Each peer's run on small data is replayed on the batches it drew (its torch.randperm
calls, recorded) by a gpunn MLP in float64 that starts from the peer's initial weights and steps with the
gpunn row's optimizer: the same layer sizes, activations, loss, optimizer settings, batches and number of steps,
for every one of the K members, or the weights differ."""
import copy

import numpy
import pytest

from gpunn import MLP, backend, bench
from gpunn.bench.ensemble import EnsembleRunner, TorchLoopRunner, TorchVmapRunner
from gpunn.bench.runners import GpunnRunner, TorchRunner

torch = pytest.importorskip("torch")

CPU = backend.CPU
ROWS = 40


def _data(cfg, seed=4):
    rng = numpy.random.default_rng(seed)
    return (rng.standard_normal((ROWS, cfg.inputs)).astype(numpy.float32),
            rng.standard_normal((ROWS, cfg.outputs)).astype(numpy.float32))


@pytest.fixture
def drawn(monkeypatch):
    """The permutations the peers draw, in order (each epoch's batch order)."""
    perms, randperm = [], torch.randperm

    def recording(*args, **kwargs):
        perms.append(randperm(*args, **kwargs))
        return perms[-1]

    monkeypatch.setattr(torch, "randperm", recording)
    return perms


def _linears(net):
    return [m for m in net if isinstance(m, torch.nn.Linear)]


def _start(weights, biases):
    """(Ws, bs) as gpunn lays them out (W: inputs x outputs), float64, from torch's (outputs x inputs)."""
    return ([numpy.array(w.detach().numpy().T, dtype=numpy.float64) for w in weights],
            [numpy.array(b.detach().numpy(), dtype=numpy.float64) for b in biases])


def _replay(gpunn_row, start, X, Y, perms, batch):
    """The gpunn row's network and optimizer (float64), from ``start``, stepped on the batches of ``perms``."""
    model = gpunn_row.model
    acts = [a.name for a in model.activations]
    ref = MLP(model.layer_sizes, activation=acts[:-1], output_activation=acts[-1], bias=model.bias, dtype="float64",
              device="cpu", seed=0)
    for ours, theirs in zip(ref.weights + ref.biases, start[0] + start[1]):
        assert ours.shape == theirs.shape  # the peer's layers are the row's
        ours[...] = theirs
    opt = copy.deepcopy(gpunn_row.optimizer).bind(ref.params, ref.ops)
    for perm in perms:
        order = perm.numpy()
        assert sorted(order) == list(range(ROWS))  # every row, once an epoch
        for s in range(0, ROWS, batch):
            idx = order[s:s + batch]
            ref.train_step_and_update(X[idx].astype(numpy.float64), Y[idx].astype(numpy.float64), opt, opt.lr)
    return ref


def _assert_trained_as(ref, weights, biases):
    got = _start(weights, biases)
    for ours, theirs in zip(ref.weights + ref.biases, got[0] + got[1]):
        numpy.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)  # float32 vs float64, 15 Adam steps


def _epochs(runner):
    runner.epochs(1)
    runner.epochs(2)  # a second call trains on (no result kept from the first)


@pytest.mark.parametrize("spec", ["p:5:7x6:2:8", "q:3::1:8"])
def test_torch_eager_peer_trains_the_gpunn_rows_network(drawn, spec):
    cfg = bench.parse_config(spec)
    X, Y = _data(cfg)
    peer = TorchRunner(cfg, CPU, X, Y, threads=1)
    layers = _linears(peer.net)
    start = _start([l.weight for l in layers], [l.bias for l in layers])
    _epochs(peer)
    assert len(drawn) == 3
    ref = _replay(GpunnRunner(cfg, CPU, X, Y), start, X, Y, drawn, cfg.batch)
    _assert_trained_as(ref, [l.weight for l in layers], [l.bias for l in layers])


def _ensemble_row(cfg, X, Y):
    """The gpunn Ensemble row's network and optimizer as one member's MLP row: (model, optimizer) holder."""
    row = EnsembleRunner(cfg, CPU, X, Y)
    model = row.model
    assert model.n_models == cfg.members
    one = GpunnRunner(cfg, CPU, X, Y)
    assert (one.model.layer_sizes, one.model.activations, one.model.bias) == (
        model.layer_sizes, model.activations, model.bias)
    assert type(one.optimizer).__name__.lower() == "adam"  # the ensemble fits with adam, every member at one's rate
    assert row.optimizer.lr.tolist() == [one.optimizer.lr] * cfg.members
    return one


def test_torch_vmap_peer_trains_k_members_of_the_ensembles_network(drawn):
    cfg = bench.parse_config("p:5:7x6:2:8-x3")
    X, Y = _data(cfg)
    peer = TorchVmapRunner(cfg, CPU, X, Y, threads=1)
    names = list(peer.params)
    weights = [peer.params[n] for n in names if n.endswith("weight")]
    biases = [peer.params[n] for n in names if n.endswith("bias")]
    assert all(p.shape[0] == cfg.members for p in peer.params.values())
    starts = [_start([w[k] for w in weights], [b[k] for b in biases]) for k in range(cfg.members)]
    assert not numpy.array_equal(starts[0][0][0], starts[1][0][0])  # K different networks, as the ensemble's
    _epochs(peer)
    assert len(drawn) == 3
    row = _ensemble_row(cfg, X, Y)
    for k in range(cfg.members):
        ref = _replay(row, starts[k], X, Y, drawn, cfg.batch)
        _assert_trained_as(ref, [w[k] for w in weights], [b[k] for b in biases])


def test_torch_loop_peer_trains_k_members_of_the_ensembles_network(drawn):
    cfg = bench.parse_config("p:5:7x6:2:8-x3")
    X, Y = _data(cfg)
    peer = TorchLoopRunner(cfg, CPU, X, Y, threads=1)
    assert len(peer.nets) == cfg.members
    layers = [_linears(net) for net in peer.nets]
    starts = [_start([l.weight for l in ls], [l.bias for l in ls]) for ls in layers]
    assert not numpy.array_equal(starts[0][0][0], starts[1][0][0])
    _epochs(peer)
    assert len(drawn) == 3
    row = _ensemble_row(cfg, X, Y)
    for k, ls in enumerate(layers):
        ref = _replay(row, starts[k], X, Y, drawn, cfg.batch)
        _assert_trained_as(ref, [l.weight for l in ls], [l.bias for l in ls])
