"""gpunn.Ensemble on a GPU: the exactness contract with CUDA kernels, fused against generic, CPU against GPU.

Member k of an Ensemble on cuda trains as MLP(seed=seed + k) on cuda does (1e-10 relative in
float64, 1e-5 in float32: batched cuBLAS products and the one-stage member bias sums may round
differently from one model's); the kernels of kernels/ensemble.cu agree with the generic
EnsembleOps (fused=False). Skipped without a GPU (pytest -m gpu runs only these and their kin).
"""
import math

import numpy
import pytest

import gpunn
from gpunn.optim import make_optimizer

pytestmark = pytest.mark.gpu

SIZES = [6, 40, 12, 2]  # 40: a layer wider than one 32-column block of the bias-gradient kernel
TOL = {"float64": 1e-10, "float32": 1e-5}


def _data(rows=300):
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((rows, SIZES[0]))
    Y = numpy.stack([numpy.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
    return X, Y


def _rel(a, b):
    a = a.get() if hasattr(a, "get") else numpy.asarray(a)
    b = b.get() if hasattr(b, "get") else numpy.asarray(b)
    return float(numpy.abs(a - b).max() / numpy.abs(b).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer,activation,bias", [("adam", "relu", True), ("adamw", "tanh", False),
                                                       ("momentum", "gelu", True), ("sgd", "elu", True),
                                                       ("nesterov", "relu", True)])  # (mut12e U15: the flag dropped)
def test_each_member_trains_as_its_own_mlp_on_cuda(gpu, dtype, optimizer, activation, bias):
    X, Y = _data()
    lrs = [1e-3, 3e-3, 1e-2] if "adam" in optimizer else [1e-2, 3e-2, 5e-2]
    wds = [0.0, 1e-3, 1e-2]
    kwargs = dict(epochs=3, batch_size=64, seed=4, validation_fraction=0.1, verbose=False, schedule="cosine")
    ens = gpunn.Ensemble(SIZES, 3, activation=activation, bias=bias, dtype=dtype, device="cuda", seed=10)
    history = ens.fit(X, Y, optimizer=optimizer, lr=lrs, weight_decay=wds, **kwargs)
    for k in range(3):
        twin = gpunn.MLP(SIZES, activation=activation, bias=bias, dtype=dtype, device="cuda", seed=10 + k)
        h = twin.fit(X, Y, optimizer=make_optimizer(optimizer, weight_decay=wds[k]), lr=lrs[k], **kwargs)
        assert _rel(ens.member_params[k], twin.params) <= TOL[dtype], f"member {k}"
        numpy.testing.assert_allclose(history.member(k)["val_loss"], h["val_loss"], rtol=1e-4)


def test_early_stopping_and_frozen_members_on_cuda(gpu):
    X, Y = _data()
    kwargs = dict(epochs=10, batch_size=30, optimizer="sgd", seed=4, validation_fraction=0.2, verbose=False)
    ens = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=7)
    ens.fit(X, Y, lr=[0.3, 3e-3, 0.05], callbacks=[gpunn.EarlyStopping(patience=1, min_delta=0.02)], **kwargs)
    for k, lr in enumerate([0.3, 3e-3, 0.05]):
        twin = gpunn.MLP(SIZES, dtype="float64", device="cuda", seed=7 + k)
        twin.fit(X, Y, lr=lr, callbacks=[gpunn.EarlyStopping(patience=1, min_delta=0.02)], **kwargs)
        assert _rel(ens.member_params[k], twin.params) <= 1e-10


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_member_kernels_agree_with_the_generic_member_ops(gpu, dtype, rtol):
    X, Y = _data()
    fakecupy = __import__("sys").modules.get("fakecupy")
    if fakecupy is not None and not fakecupy.in_use():  # a GPU run, where test_fakecupy.py imported the stand-in
        fakecupy = None
    runs = []
    for fused in (True, False):
        if fakecupy is not None:
            fakecupy.state.launches.clear()
        ens = gpunn.Ensemble(SIZES, 4, activation="silu", dtype=dtype, device="cuda", seed=1, fused=fused)
        loss, dW, db = ens.loss_and_gradients(X, Y)
        h = ens.fit(X, Y, lr=[1e-3, 2e-3, 5e-3, 1e-2], beta1=[0.9, 0.8, 0.9, 0.7], epochs=2, batch_size=50,
                    verbose=False)
        runs.append((loss, dW, db, ens.params.get(), h["loss"]))
        if fakecupy is not None:  # the generic side runs no member kernel (mut12e U21: both sides ran them)
            names = " ".join(str(launch[0]) for launch in fakecupy.state.launches)
            assert ("member_" in names) == fused
    (l1, dW1, db1, p1, h1), (l2, dW2, db2, p2, h2) = runs
    numpy.testing.assert_allclose(l1, l2, rtol=rtol)
    for a, b in zip(dW1 + db1, dW2 + db2):
        numpy.testing.assert_allclose(a.get(), b.get(), rtol=rtol, atol=rtol * float(abs(b).max().get()))
    assert _rel(p1, p2) <= 10 * rtol
    numpy.testing.assert_allclose(h1, h2, rtol=1e-4)


def test_cpu_and_gpu_ensembles_agree(gpu):
    X, Y = _data()
    cpu = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cpu", seed=2)
    cuda = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=2)
    numpy.testing.assert_array_equal(cpu.params, cuda.params.get())
    lc, dWc, _ = cpu.loss_and_gradients(X, Y)
    lg, dWg, _ = cuda.loss_and_gradients(X, Y)
    numpy.testing.assert_allclose(lg, lc, rtol=1e-10)
    for a, b in zip(dWc, dWg):
        numpy.testing.assert_allclose(b.get(), a, rtol=1e-10, atol=1e-14)
    mean, std = cuda.predict(X, return_std=True)
    numpy.testing.assert_allclose(std.get(), cpu.predict(X).std(axis=0), rtol=1e-10, atol=1e-14)
    member = cuda[1]
    assert isinstance(member, gpunn.MLP) and member.device.startswith("cuda")


def test_bootstrap_and_bench_runner_on_cuda(gpu, monkeypatch):
    from gpunn import bench
    from gpunn.bench import ensemble as bench_ensemble
    from gpunn.bench.ensemble import run_ensembles

    X, Y = _data()
    ens = gpunn.Ensemble(SIZES, 2, device="cuda", seed=0)
    ens.fit(X, Y, bootstrap=True, epochs=2, batch_size=32, verbose=False)
    assert _rel(ens.member_params[0], ens.member_params[1]) > 1e-3
    from gpunn.training.ensemble import bootstrap_rows

    for k in range(2):  # member k trains as its MLP on its resample (mut12e U11: the kernels read member 0's Y rows)
        rows = bootstrap_rows(ens.backend, 0, k, X.shape[0]).get()
        twin = gpunn.MLP(SIZES, device="cuda", seed=k)
        twin.fit(X[rows], Y[rows], epochs=2, batch_size=32, seed=0, verbose=False)
        assert _rel(ens.member_params[k], twin.params) <= TOL["float32"], f"member {k}"
    # epochs of ensemble_rows' least, 8 batches, not its 512 on a GPU: the rows below are the same, and on CI's
    # CuPy stand-in the 7,700 steps of 512-batch epochs took 38 s, a fifth of that whole pass
    monkeypatch.setattr(bench_ensemble, "ensemble_rows", lambda cfg, backend: 8 * cfg.batch)
    results = run_ensembles([bench.parse_config("lin:4:8:1:16-x3")], [gpu], peers=["sequential"], repeats=1,
                            seconds=0.01, log=lambda msg: None, variants=[("float32", False), ("bf16", None)])
    # the default row first (a CUDA graph), the eager one beside it (gpunn bench --eager), the bf16 default (a graph)
    assert [r["impl"] for r in results] == ["gpunn-graph", "gpunn", "gpunn-graph-bf16", "sequential"]
    assert all(r["samples_per_s"] > 0 for r in results)
    bf16 = results[2]  # Ensemble(precision="bf16"): its own row, captured (the stand-in emulates capture)
    assert bf16["dtype"] == "bf16" and bf16["label"].endswith("graph bf16") and "not captured" not in bf16["note"]
    for r in results:  # the H200 run's ensemble rows read "% of peak" = nan: every row has it, on cuda too
        assert 0 < r["fraction_of_peak"] and "cuBLAS" in r["peak_gemm"], r
        # the "% of peak" base is at least the "% of GEMM" one, or that is n/a with the reason when its baseline
        # could not be timed well
        assert r["fraction_of_peak"] == pytest.approx(r["gflops"] / r["peak_gflops"]), r
        if r["gemm_na"]:
            assert math.isnan(r["fraction_of_gemm"]), r
        else:
            assert r["peak_gflops"] >= r["gemm_gflops"], r


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_ensemble_run_interrupted_mid_epoch_resumes_on_cuda(gpu, tmp_path, interrupt_at, dtype):
    """The checkpoint and resume of tests/test_ensemble_checkpoints.py on the GPU: device state (Adam's
    moments, the members' best weights, the K partial sums) goes to the host and back; the resumed run is
    the uninterrupted one (the same kernels on the same device, so bit for bit is expected; asserted to
    1e-12 in float64 and 1e-6 in float32)."""
    X, Y = _data()
    kwargs = dict(epochs=5, batch_size=48, optimizer="adam", lr=[2e-3, 0.1, 1e-2], seed=4, validation_fraction=0.2,
                  bootstrap=True, verbose=False)

    def stopper():
        return gpunn.EarlyStopping(patience=1, min_delta=0.01)

    reference = gpunn.Ensemble(SIZES, 3, dtype=dtype, device="cuda", seed=7)
    ref_hist = reference.fit(X, Y, callbacks=[stopper()], **kwargs)
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 3, dtype=dtype, device="cuda", seed=7).fit(
        X, Y, callbacks=[stopper(), interrupt_at(2, 1), gpunn.ModelCheckpoint(path)], **kwargs)
    ckpt = gpunn.load_checkpoint(path, device="cuda")
    assert ckpt.state.batch == 2 and len(ckpt.state.partial_sum_sq) == 3
    resumed = ckpt.resume(X, Y, verbose=False)
    tol = 1e-12 if dtype == "float64" else 1e-6
    assert _rel(ckpt.model.params, reference.params) <= tol
    assert _rel(ckpt.optimizer.state["m"], reference.optimizer.state["m"]) <= tol
    numpy.testing.assert_allclose(numpy.array(resumed["val_loss"]), numpy.array(ref_hist["val_loss"]), rtol=tol)
    assert resumed.stopped_epoch == ref_hist.stopped_epoch


def test_an_ensembles_fit_after_set_precision_captures_the_new_precisions_step(gpu):
    """set_precision drops the ensemble's graphs, as MLP's does (tests/test_graph_gpu.py): the next fit with the
    same optimizer captures the float32 step and trains as the eager one (audit37b e9: with the bf16 fit's trainer
    kept, its graphs were replayed in the float32 ensemble and no test failed)."""
    X, Y = _data()

    def run(graph):
        ens = gpunn.Ensemble(SIZES, 3, device="cuda", seed=7, precision="bf16", graph=graph)
        ens.fit(X, Y, epochs=1, batch_size=40, optimizer="adam", lr=1e-3, verbose=False)
        ens.set_precision("float32")
        return ens, ens.fit(X, Y, epochs=1, batch_size=40, optimizer=ens.optimizer, verbose=False)

    (ens, history), (eager, eager_history) = run(None), run(False)
    assert ens.graph_trainer.captured, ens.graph_trainer.reason
    assert _rel(ens.params, eager.params) <= 2e-2
    numpy.testing.assert_allclose(history["loss"], eager_history["loss"], rtol=2e-2)


@pytest.mark.parametrize("optimizer,bootstrap", [("adam", False), ("sgd", True)])
def test_the_ensemble_step_as_a_cuda_graph_trains_as_the_eager_step(gpu, optimizer, bootstrap):
    """Ensemble(graph=True) on cuda: the K members' step captured and replayed (on tests/fakecupy, which
    emulates capture, too); the same training as the eager step: float64 to 1e-10 (the graph's products are
    cuBLAS strided batched calls, the eager step's CuPy's matmul), with a member frozen by early stopping
    part-way (the members' table rewritten in place under the graph)."""
    import warnings

    from gpunn.training.graph import GraphWarning

    X, Y = _data()
    kwargs = dict(epochs=4, batch_size=40, optimizer=optimizer, lr=[2e-3, 0.1, 1e-2] if optimizer == "adam"
                  else [0.01, 0.3, 0.05], seed=4, validation_fraction=0.2, bootstrap=bootstrap, verbose=False)
    runs = []
    for graph in (False, True):
        ens = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=7, graph=graph)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GraphWarning)  # fakecupy: no capture
            history = ens.fit(X, Y, callbacks=[gpunn.EarlyStopping(patience=1, min_delta=0.01)], **kwargs)
        runs.append((ens, history))
    (eager, h_eager), (graphed, h_graph) = runs
    assert graphed.graph_trainer.captured, graphed.graph_trainer.reason  # tests/fakecupy emulates capture too
    assert _rel(graphed.params, eager.params) <= 1e-10
    numpy.testing.assert_allclose(h_graph["val_loss"], h_eager["val_loss"], rtol=1e-10)
    numpy.testing.assert_allclose(h_graph["loss"], h_eager["loss"], rtol=1e-10)  # the graph's loss buffer, zeroed per step
    assert h_graph.stopped_epoch == h_eager.stopped_epoch
    # and the optimizer's state, which a checkpoint keeps and a later fit goes on from (m and v given to the graph's
    # Adam kernel the wrong way round trained the same weights, each buffer consistently in the other's role)
    for name in eager.optimizer.state_names():
        assert _rel(graphed.optimizer.state[name], eager.optimizer.state[name]) <= 1e-10, name


def test_by_default_the_ensembles_step_is_a_cuda_graph_where_it_can_be_captured(gpu, tmp_path, monkeypatch):
    """Ensemble() with no graph= on cuda (graph=None, "auto", as one MLP's): the K members' step captured and
    replayed, with no warning, training as graph=False does (float64, 1e-10); a saved-and-loaded ensemble captures
    too (a file records no graph). Where it cannot capture, the ordinary step, silently, the trainer saying why:
    fused=False, and a data-parallel fit (its gradient hook runs between backward and the optimizer). The default
    was graph=False until an H200 showed the graph 5.5x the eager step at K=256 with the same weights."""
    import importlib
    import sys
    import warnings

    from gpunn.distributed import comm
    from gpunn.training.graph import GraphWarning

    X, Y = _data()
    kwargs = dict(epochs=3, batch_size=40, optimizer="adam", lr=[2e-3, 0.1, 1e-2], seed=4, validation_fraction=0.2,
                  verbose=False)
    eager = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=7, graph=False)
    h_eager = eager.fit(X, Y, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)  # the default never warns
        ens = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=7)
        history = ens.fit(X, Y, **kwargs)
        assert ens.graph is None and ens.graph_trainer.captured, ens.graph_trainer.reason
        assert _rel(ens.params, eager.params) <= 1e-10
        numpy.testing.assert_allclose(history["loss"], h_eager["loss"], rtol=1e-10)
        gpunn.save(tmp_path / "ens.npz", ens)
        loaded = gpunn.load(tmp_path / "ens.npz", device="cuda")
        loaded.fit(X, Y, epochs=1, batch_size=40, verbose=False)
        assert loaded.graph is None and loaded.graph_trainer.captured, loaded.graph_trainer.reason
        generic = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=7, fused=False)
        generic.fit(X, Y, **kwargs)
        assert not generic.graph_trainer.captured and generic.graph_trainer.reason.startswith("fused=False")
        # data-parallel, in one process without MPI (as tests/test_distributed.py's one_process)
        monkeypatch.setitem(sys.modules, "mpi4py", None)
        monkeypatch.setattr(comm, "_WORLD", {})
        for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
            monkeypatch.delenv(name, raising=False)
        stand_in = sys.modules["cupy"]
        if hasattr(stand_in, "_kernels"):  # tests/fakecupy: its NCCL (on a GPU, the real library)
            nccl = importlib.import_module(stand_in.__name__ + ".nccl")
            monkeypatch.setattr(comm, "_load_nccl", lambda: nccl)
        ranks = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=7)
        ranks.fit(X, Y, distributed=True, **kwargs)
    assert not ranks.graph_trainer.captured and "gradient hook" in ranks.graph_trainer.reason
    assert _rel(ranks.params, eager.params) <= 1e-10


def test_members_and_their_mlps_take_adams_bias_corrections_from_the_devices_pow(gpu, device_pow_an_ulp_low):
    """On a device, an ensemble's members (eager and graph) and one MLP's eager step form Adam's 1 - beta**t by the
    same rule (kernels/optimizers.cuh, adam_bias_correction): with the stand-in's device pow an ulp off the host's,
    float64 members with their own beta2 still equal their MLPs bit for bit (the MLP's eager step took the host's
    pow before: up to 5e-15 apart). The stand-in only (the fixture skips elsewhere): on a GPU the products differ."""
    X, Y = _data()
    lrs, beta2s = [1e-3, 3e-3, 1e-2], [0.999, 0.99, 0.999]
    kwargs = dict(epochs=3, batch_size=64, seed=4, verbose=False)
    twins = []
    for k in range(3):
        twin = gpunn.MLP(SIZES, dtype="float64", device="cuda", seed=10 + k, graph=False)
        twin.fit(X, Y, optimizer=make_optimizer("adam", beta2=beta2s[k]), lr=lrs[k], **kwargs)
        twins.append(twin.params.get())
    for graph in (False, True):
        ens = gpunn.Ensemble(SIZES, 3, dtype="float64", device="cuda", seed=10, graph=graph)
        ens.fit(X, Y, optimizer="adam", lr=lrs, beta2=beta2s, **kwargs)
        assert not graph or ens.graph_trainer.captured, ens.graph_trainer.reason
        for k in range(3):
            numpy.testing.assert_array_equal(ens.member_params[k].get(), twins[k], err_msg=f"member {k}, graph {graph}")


def test_the_members_table_is_rewritten_at_its_device_address(gpu):
    """MemberRates.device: made once, then each change copied into it in place, so the address a captured graph
    read it at stays the table's (EnsembleGraphTrainer: one graph for the run; mut18a A5: a table made again at a
    new address on each change made every new epoch's rates cost a capture)."""
    from gpunn.ops.member_rates import ACTIVE, LR, MemberRates

    rates = MemberRates(gpu.xp, [[0.1, 0.0, 0.9, 0.9, 0.999, 1, 0, 0]] * 3)
    table = rates.device
    address = table.data.ptr
    rates.update(LR, [0.2, 0.3, 0.4])
    rates.update(ACTIVE, [1, 0, 1])
    assert rates.device.data.ptr == address
    numpy.testing.assert_array_equal(table.get(), [[0.2, 0.0, 0.9, 0.9, 0.999, 1, 0, 0],
                                                   [0.3, 0.0, 0.9, 0.9, 0.999, 0, 0, 0],
                                                   [0.4, 0.0, 0.9, 0.9, 0.999, 1, 0, 0]])


def test_an_ensemble_on_a_file_source_trains_each_member_as_its_mlp_on_cuda(gpu, tmp_path):
    """gpunn.data on the GPU (pinned buffers, a side stream) feeding K members: member k equals the MLP
    fitted on the same source, and validation runs over the held-out chunks."""
    X, Y = _data()
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)

    def source():
        return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=30, window=3, seed=2,
                              validation_fraction=0.2)

    ens = gpunn.Ensemble(SIZES, 2, seed=5, device="cuda", dtype="float64")
    history = ens.fit(source(), epochs=2, batch_size=32, lr=[1e-3, 1e-2], verbose=False)
    for k, lr in enumerate([1e-3, 1e-2]):
        twin = gpunn.MLP(SIZES, seed=5 + k, device="cuda", dtype="float64")
        h = twin.fit(source(), epochs=2, batch_size=32, lr=lr, verbose=False)
        assert _rel(ens.member_params[k], twin.params) <= TOL["float64"]
        numpy.testing.assert_allclose([e[k] for e in history["val_loss"]], h["val_loss"], rtol=1e-10)


@pytest.mark.parametrize("dtype,precision", [("float64", "float32"), ("float32", "float32"), ("float32", "bf16")])
def test_a_step_on_an_empty_piece_leaves_zero_gradients_on_cuda(gpu, dtype, precision):
    """A data-parallel rank's empty piece of the last batch (0 rows): its step's gradients are zero, as on the
    CPU, not what the previous batch left in the gradient buffer (the member bias-gradient kernel, skipped
    for 0 rows, left the biases' gradients as they were: the ranks' sum then added a stale piece's)."""
    X, Y = _data(20)
    ens = gpunn.Ensemble(SIZES, 3, dtype=dtype, device="cuda", seed=0, precision=precision, graph=False)
    Xd, Yd = ens.xp.asarray(X, dtype), ens.xp.asarray(Y, dtype)
    ens.train_step(Xd, Yd)
    assert float(abs(ens.grads).max()) > 0
    sums = ens.train_step(Xd[:0], Yd[:0])
    assert sums.get().tolist() == [0.0, 0.0, 0.0]
    assert float(abs(ens.grads).max()) == 0.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_each_member_op_on_cuda_computes_what_the_generic_member_ops_do_or_leaves_it_to_them(gpu, dtype):
    """CupyEnsembleOps against the generic EnsembleOps on the same device, op by op: on the arrays an Ensemble
    gives it (bias rows of the flat parameter buffer, targets shared by the members or one set each, a frozen
    member) and on those its kernels do not take and must leave to the generic ops (strided views, a bias or
    gradient buffer of another dtype). Every array the op is given ends equal (but Z of a forward pass with
    A apart and without keep_z: scratch, which the generic ops overwrite and the kernel leaves), and so does
    what it returns (the members' sums of squares)."""
    from gpunn.activations import ACTIVATIONS
    from gpunn.ops import ensemble_ops_for, ops_for
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import MemberRates

    xp, rng = gpu.xp, numpy.random.default_rng(5)
    ops = ops_for(gpu)
    fused, generic = ensemble_ops_for(ops), EnsembleOps(ops)
    K, rows, cols, P = 3, 37, 5, 24  # rows != cols: the loss gradient's 2/rows; P values of parameters per member
    other = "float32" if dtype == "float64" else "float64"
    host = {"Z": (K, rows, cols), "A": (K, rows, cols), "Zt": (K, cols, rows), "flat": (K * P,), "flat2": (K * P,),
            "other": (K * P,), "Y": (rows, cols), "Yk": (K, rows, cols), "Yw": (rows, 2 * cols), "wide": (K, P + 3),
            "g": (K, P), "m": (K, P), "v": (K, P), "Z1": (K, 1, cols), "A1": (K, 1, cols), "Y1": (1, cols)}
    host = {name: rng.standard_normal(shape).astype(other if name == "other" else dtype) for name, shape in host.items()}
    host["v"] = abs(host["v"])
    tanh, relu = ACTIVATIONS["tanh"], ACTIVATIONS["relu"]
    rates = MemberRates(xp, [[1e-2, 1e-3, 0.9, 0.9, 0.999, 1, 0, 0], [3e-2, 0.0, 0.5, 0.8, 0.99, 0, 0, 0],
                             [5e-2, 1e-2, 0.3, 0.7, 0.9, 1, 0, 0]])  # member 1 frozen
    no_momentum = MemberRates(xp, [[1e-2, 1e-3, 0.0, 0.9, 0.999, 1, 0, 0]] * K)
    # member 0 clips by norm (under its norm, ~4.9: scaled), member 1 is frozen (its clip not applied), member 2
    # clips by value
    clipped = MemberRates(xp, [[1e-2, 1e-3, 0.9, 0.9, 0.999, 1, 2.0, 0], [3e-2, 0.0, 0.5, 0.8, 0.99, 0, 0.5, 0],
                               [5e-2, 1e-2, 0.3, 0.7, 0.9, 1, 0, 0.4]])
    by_norm = MemberRates(xp, [[1e-2, 1e-3, 0.9, 0.9, 0.999, 1, c, 0] for c in (2.0, 100.0, 0.1)])  # 1: not scaled

    def row_view(d, name="flat", start=2, step=1):  # member k's cols values of a flat buffer, P values apart
        return d[name].reshape(K, P)[:, start:start + step * cols:step]

    cases = {
        "forward, A apart": lambda o, d: o.bias_activation(d["Z"], row_view(d), tanh, d["A"], False),
        "forward, keeping Z": lambda o, d: o.bias_activation(d["Z"], row_view(d), tanh, d["A"], True),
        "forward in place, no bias": lambda o, d: o.bias_activation(d["Z"], None, relu, d["Z"], False),
        "forward, strided bias": lambda o, d: o.bias_activation(d["Z"], row_view(d, step=2), tanh, d["A"], True),
        "forward, strided Z": lambda o, d: o.bias_activation(d["Zt"].swapaxes(1, 2), row_view(d), tanh, d["A"], True),
        "forward, strided A": lambda o, d: o.bias_activation(d["Z"], row_view(d), tanh, d["Zt"].swapaxes(1, 2), True),
        "forward, bias of another dtype": lambda o, d: o.bias_activation(d["Z"], row_view(d, "other"), tanh, d["A"],
                                                                         True),
        "bias gradient": lambda o, d: o.bias_gradient(d["Z"], row_view(d)),
        "bias gradient of a strided dZ": lambda o, d: o.bias_gradient(d["Zt"].swapaxes(1, 2), row_view(d)),
        "bias gradient, strided": lambda o, d: o.bias_gradient(d["Z"], row_view(d, step=2)),
        "bias gradient into another dtype": lambda o, d: o.bias_gradient(d["Z"], row_view(d, "other")),
        "loss, shared targets": lambda o, d: o.loss_gradient(d["Z"], d["Y"], d["A"]),
        "loss, each member's targets": lambda o, d: o.loss_gradient(d["Z"], d["Yk"], d["A"]),
        "loss, strided targets": lambda o, d: o.loss_gradient(d["Z"], d["Yw"][:, ::2], d["A"]),
        "loss, strided dA": lambda o, d: o.loss_gradient(d["Z"], d["Y"], d["Zt"].swapaxes(1, 2)),
        "loss, one row": lambda o, d: o.loss_gradient(d["Z1"], d["Y1"], d["A1"]),  # 2 / rows: 2 (mut18a A13)
        "squared error": lambda o, d: o.squared_error(d["Z"], d["Yk"]),
        "sgd": lambda o, d: o.sgd_step(d["flat"].reshape(K, P), d["g"], d["m"], rates, False),
        "nesterov": lambda o, d: o.sgd_step(d["flat"].reshape(K, P), d["g"], d["m"], rates, True),
        "sgd without momentum": lambda o, d: o.sgd_step(d["flat"].reshape(K, P), d["g"], None, no_momentum, False),
        "sgd, strided": lambda o, d: o.sgd_step(d["wide"][:, :P], d["g"], d["m"], rates, False),
        "adam": lambda o, d: o.adam_step(d["flat"].reshape(K, P), d["g"], d["m"], d["v"], rates, 1e-8, 3, False),
        "adamw": lambda o, d: o.adam_step(d["flat"].reshape(K, P), d["g"], d["m"], d["v"], rates, 1e-8, 3, True),
        "adam at the device's step": lambda o, d: o.adam_step_dev(d["flat"].reshape(K, P), d["g"], d["m"], d["v"],
                                                                  rates, 1e-8, xp.asarray([3.0, 0, 0, 0]), True),
        "adam, strided": lambda o, d: o.adam_step(d["wide"][:, :P], d["g"], d["m"], d["v"], rates, 1e-8, 2, False),
        "clip": lambda o, d: o.clip_gradients(d["g"], clipped),
        "clip by norm": lambda o, d: o.clip_gradients(d["g"], by_norm),
        "clip, strided": lambda o, d: o.clip_gradients(d["wide"][:, :P], clipped),
        "sgd, clipped": lambda o, d: o.sgd_step(d["flat"].reshape(K, P), d["g"], d["m"], clipped, True),
        "adam, clipped": lambda o, d: o.adam_step(d["flat"].reshape(K, P), d["g"], d["m"], d["v"], clipped, 1e-8, 3,
                                                  False),
        "adam at the device's step, clipped": lambda o, d: o.adam_step_dev(
            d["flat"].reshape(K, P), d["g"], d["m"], d["v"], by_norm, 1e-8, xp.asarray([3.0, 0, 0, 0]), True),
        "adam, strided, clipped": lambda o, d: o.adam_step(d["wide"][:, :P], d["g"], d["m"], d["v"], clipped, 1e-8, 2,
                                                           False),
    }
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for name, case in cases.items():
        got = []
        for o in (fused, generic):
            d = {key: xp.asarray(value) for key, value in host.items()}
            out = case(o, d)
            got.append((None if out is None or out.ndim != 1 else out.get(), {key: a.get() for key, a in d.items()}))
        (out1, arrays1), (out2, arrays2) = got
        if out2 is not None:
            numpy.testing.assert_allclose(out1, out2, **tol, err_msg=name)
        for key in host.keys() - ({"Z"} if name == "forward, A apart" else set()):
            numpy.testing.assert_allclose(arrays1[key], arrays2[key], **tol, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer,clip", [("adam", "clip_norm"), ("adamw", "clip_value"), ("sgd", "clip_norm"),
                                            ("momentum", "clip_value")])
def test_each_member_clips_by_its_own_gradient_on_cuda_eager_and_in_the_graph_as_the_generic_ops_do(gpu, dtype,
                                                                                                   optimizer, clip):
    """Per-member clips (member 0 unclipped) on cuda: member_grad_sum_sq sums each clipping member's squares on the
    device and member_clip_grad scales or clamps its row, before the optimizer's kernel, so the step is captured (the
    stand-in refuses a host read in a capture) and trains, eager and as a graph, as the generic member ops
    (fused=False: EnsembleOps.clip_gradients, whose members clip as their MLPs on the CPU: tests/test_ensemble_clip.py)
    do; not as the unclipped run."""
    X, Y = _data()
    clips = [None, 0.05, 0.5] if clip == "clip_norm" else [None, 0.01, 0.05]
    kwargs = dict(epochs=3, batch_size=64, seed=4, optimizer=optimizer, weight_decay=[0.0, 1e-3, 1e-2],
                  lr=[1e-3, 3e-3, 1e-2] if "adam" in optimizer else [1e-2, 3e-2, 5e-2], verbose=False)
    runs = {}
    for fused, clipped in ((False, True), (False, False)):
        ens = gpunn.Ensemble(SIZES, 3, dtype=dtype, device="cuda", seed=10, fused=fused)
        ens.fit(X, Y, **kwargs, **({clip: clips} if clipped else {}))
        runs[clipped] = ens.member_params.get()
    numpy.testing.assert_array_equal(runs[True][0], runs[False][0])  # member 0 unclipped
    assert _rel(runs[True][1:], runs[False][1:]) > 1e-3
    fakecupy = __import__("sys").modules.get("fakecupy")
    for graph in (False, True):
        if fakecupy is not None and fakecupy.in_use():
            fakecupy.state.launches.clear()
        ens = gpunn.Ensemble(SIZES, 3, dtype=dtype, device="cuda", seed=10, graph=graph)
        ens.fit(X, Y, **kwargs, **{clip: clips})
        assert not graph or ens.graph_trainer.captured, ens.graph_trainer.reason
        assert _rel(ens.member_params, runs[True]) <= TOL[dtype], f"graph={graph}"
        if fakecupy is not None and fakecupy.in_use():
            names = " ".join(str(launch[0]) for launch in fakecupy.state.launches)
            assert "member_clip_grad" in names and ("member_grad_sum_sq" in names) == (clip == "clip_norm")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_members_nan_gradient_makes_its_row_nan_under_clip_norm_on_cuda_as_the_generic_op(gpu, dtype):
    """member_grad_sum_sq + member_clip_grad on a NaN in member 1's row (clip_norm): that row NaN throughout, as torch's
    clip_grad_norm_ and EnsembleOps.clip_gradients make it; members 0 (clipped) and 2 (unclipped) as the generic op."""
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import ACTIVE, CLIP_NORM, HYPER_FIELDS, MemberRates

    ens = gpunn.Ensemble(SIZES, 3, dtype=dtype, device="cuda", seed=1)
    table = numpy.zeros((3, HYPER_FIELDS))
    table[:, ACTIVE], table[:2, CLIP_NORM] = 1, 1.0
    g = numpy.linspace(-3.0, 3.0, 3 * 50).reshape(3, 50).astype(dtype)
    g[1, 7] = numpy.nan
    want = g.copy()
    EnsembleOps(gpunn.ops.Ops(numpy)).clip_gradients(want, MemberRates(numpy, table))
    assert numpy.isnan(want[1]).all() and not numpy.isnan(want[[0, 2]]).any()
    cupy = ens.xp
    d = cupy.asarray(g)
    ens.member_ops.clip_gradients(d, MemberRates(cupy, table))
    numpy.testing.assert_allclose(cupy.asnumpy(d), want, rtol=TOL[dtype], atol=0)


def test_a_members_float32_gradient_past_float32s_squares_is_clipped_to_its_norm_on_cuda(gpu):
    """member_grad_sum_sq squares in double: member 0's float32 row of 3e19 and -4e19 (norm 5e19, whose square float32
    cannot hold) is scaled to its limit, not zeroed; member 1 (no clip) left as it is (on a GPU: the .cu itself)."""
    from gpunn.ops.member_rates import ACTIVE, CLIP_NORM, HYPER_FIELDS, MemberRates

    ens = gpunn.Ensemble(SIZES, 2, dtype="float32", device="cuda", seed=1)
    table = numpy.zeros((2, HYPER_FIELDS))
    table[:, ACTIVE], table[0, CLIP_NORM] = 1, 1.0
    g = numpy.array([[3e19, -4e19, 0.0, 1e18, -2e18]] * 2, numpy.float32)
    want = g.copy()
    want[0] = g[0].astype(numpy.float64) / numpy.linalg.norm(g[0].astype(numpy.float64))
    cupy = ens.xp
    d = cupy.asarray(g)
    ens.member_ops.clip_gradients(d, MemberRates(cupy, table))
    numpy.testing.assert_allclose(cupy.asnumpy(d), want, rtol=1e-6, atol=0)
