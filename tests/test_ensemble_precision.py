"""gpunn.Ensemble(precision="tf32" | "bf16"): member k trains as MLP(precision=..., seed=seed + k).

On the CPU the precisions are refused, as MLP refuses them; the tests' NumPy emulation of them
(gpunn.model._EMULATE_PRECISION_ON_CPU, gpunn.ops.Ops) runs the contract without a GPU. The tests
marked gpu run the CuPy path: cuBLAS's strided batched GemmEx with the precision's compute type, the
bf16 instances of kernels/ensemble.cu, the CUDA graph, and save / load / checkpoints / resume on the
device. Under tests/fakecupy (GPUNN_FAKE_CUPY=1, what CI runs) member k equals its MLP bit for bit:
the stand-in computes each product of a batched call exactly as its one-product GemmEx (the same
operands, summed in float64, rounded once) and each member kernel's reference as the single-model
kernel's.

On a GPU a member is its MLP's arithmetic up to what cuBLAS may choose per call. Both paths ask for the
same thing: the precision's compute type (CUBLAS_COMPUTE_32F_FAST_TF32 for tf32, CUBLAS_COMPUTE_32F
over bf16 operands) with CUBLAS_GEMM_DEFAULT, on handles left in CUBLAS_DEFAULT_MATH (CuPy's, and the
CUDA graph's own), never CuPy's process-wide compute-type switch; the stand-in checks every call's
compute type. But FAST_TF32 *allows* TF32 tensor cores, it does not force them: cuBLAS's heuristics
pick a kernel per call (strided batched or one product, the shape, the handle's workspace), some on
TF32 tensor cores, some in float32 (bench/gpu_checks/precision.py on an H200: a batched TF32 product
was 2.9e-4 from float64 at 128x64x64 and 6.9e-8, float32's, at 24x16x8). So one side may round a
product's operands to TF32 (unit roundoff u = 2^-11, 10 stored mantissa bits) where the other does not.
The contract is therefore in two parts:

1. The arithmetic, at equal weights (test_each_member_computes_its_mlps_gradients_on_cuda): the loss and
   every gradient of a member within GRADIENT_TOL of its MLP's, where training has not yet amplified
   anything. tf32: 16u = 2^-7. A gradient is the end of a chain of six products (three forward, dA of
   two layers, dW); one operand pair rounded to TF32 on one side only moves a product by about u
   relative (random-sign roundings, summed), so six give about 6u; in the NumPy emulation, every product
   rounded on one side and not on the other came to 1.4u-2.7u over six data sets, and one side
   truncating where the other rounds (a bias, not random) to 4.9u-11u: 16u bounds both. bf16: both sides
   round the same values to bfloat16 and a bf16 x bf16 product is exact in float32, so only the float32
   summation order differs, and with it, rarely, the bfloat16 neighbour a stored hidden value rounds to:
   one bf16 rounding, 2u_bf16 = 2^-8. Smooth activations only (tanh, gelu): a ReLU unit whose
   pre-activation lies within a rounding of zero is on for one side only, which moves a gradient by that
   row's share, not by a rounding (the emulation: up to 27u).
2. The training (test_each_member_trains_as_its_own_mlp_on_cuda: 2 epochs, 10 steps): the steps amplify
   those differences. A momentum step with tanh carries them along (H200: 4.4e-5), but Adam's
   m / sqrt(v) turns a gradient coordinate of rounding size into a whole learning-rate step, either way,
   and with ReLU a unit switched on for one side changes the gradients from there: the two runs drift
   apart (H200, tf32: 1.17e-2 with relu/Adam, 2.7e-4 with gelu/AdamW; the emulation with one side's
   products in float32, relu/Adam over 24 data sets: median 1e-3, largest 1.7e-2). A coordinate that
   took one step at the largest rate (1e-2) the other way is 2e-2 from where it would be, 1.5e-2 of the
   largest weight (1.35): that is the drift's size, and bf16's where a sum lands on the other side of a
   bfloat16 rounding boundary (a hidden value moves by 2^-8 relative; bf16's products are exact in
   float32, so it drifts less often: H200 1.3e-4). Both are bounded alike: GPU_TOL, 2e-2 of the largest
   weight (the validation losses too). A
   bug in the training loop (another member's rate, a step lost, a stale graph replay) moves a member by
   a whole update: the stand-in, where both parts are exact (0.0), catches it; on a GPU this bound would
   miss a small one (10 steps at 1e-3 move member 0 by about 2% of its weights), so part 1 is the GPU's
   sharp check.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import gpunn
import gpunn.model as gm

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SIZES = [6, 16, 12, 2]
LRS = [1e-3, 3e-3, 1e-2]
FAKE = os.environ.get("GPUNN_FAKE_CUPY") == "1"
# part 1 (the module's docstring): one loss-and-gradients pass at equal weights; tf32 16u (u = 2^-11, its
# operands' unit roundoff: one side's TF32 rounding through six products), bf16 one bfloat16 rounding (2^-8)
GRADIENT_TOL = {"tf32": 16 * 2.0**-11, "bf16": 2.0**-8}
# part 2: after 10 steps of training, weights and validation losses, relative to the largest: the drift of two
# runs whose products round differently, which Adam and ReLU amplify (H200 tf32 relu/Adam: 1.17e-2)
GPU_TOL = {"tf32": 2e-2, "bf16": 2e-2}


def _data(rows=300):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, SIZES[0])).astype(np.float32)
    Y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1).astype(np.float32)
    return X, Y


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _rel(a, b):
    a, b = _host(a), _host(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _worst(*differences):
    """The largest of ``differences``, NaN where one is: Python's max(0.0, nan) is 0.0, which passed a member whose
    gradients or weights were NaN (a GPU kernel's garbage) as equal to its MLP's."""
    return float(np.max(differences))


@pytest.fixture
def emulate(monkeypatch):
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)


def _contract(device, precision, act, optimizer, graph=False, members=3):
    """(largest relative difference of a member from its MLP, the ensemble): 3 members, 2 epochs."""
    X, Y = _data()
    kwargs = dict(epochs=2, batch_size=64, seed=4, validation_fraction=0.1, verbose=False, optimizer=optimizer)
    ens = gpunn.Ensemble(SIZES, members, activation=act, device=device, seed=10, precision=precision, graph=graph)
    history = ens.fit(X, Y, lr=LRS[:members], **kwargs)
    worst = 0.0
    for k in range(members):
        twin = gpunn.MLP(SIZES, activation=act, device=device, seed=10 + k, precision=precision)
        h = twin.fit(X, Y, lr=LRS[k], **kwargs)
        worst = _worst(worst, _rel(ens.member_params[k], twin.params))
        # (on a GPU the losses drift as the weights do: GPU_TOL, not a tighter bound than the weights')
        np.testing.assert_allclose(history.member(k)["val_loss"], h["val_loss"],
                                   rtol=1e-3 if FAKE else max(1e-3, GPU_TOL[precision]))
    return worst, ens


def _gradient_contract(device, precision, act, members=3):
    """The largest relative difference of a member's loss and gradients (every dW and db) from its MLP's, over all
    rows of _data(), at the weights both start from: equal bit for bit (drawn on the host from seed + k)."""
    X, Y = _data()
    ens = gpunn.Ensemble(SIZES, members, activation=act, device=device, seed=10, precision=precision)
    loss, dW, db = ens.loss_and_gradients(X, Y)
    worst = 0.0
    for k in range(members):
        twin = gpunn.MLP(SIZES, activation=act, device=device, seed=10 + k, precision=precision)
        assert _rel(ens.member_params[k], twin.params) == 0.0, f"member {k} starts elsewhere"
        twin_loss, twin_dW, twin_db = twin.loss_and_gradients(X, Y)
        worst = _worst(worst, abs(float(loss[k]) - twin_loss) / abs(twin_loss),
                       *[_rel(a[k], b) for a, b in zip(dW + db, twin_dW + twin_db)])
    return worst


def test_a_members_nan_gradient_is_the_contracts_worst_difference_not_dropped(monkeypatch):
    """The contract's worst difference was Python's max, and max(0.0, nan) is 0.0: an ensemble whose member gradients
    came back NaN (with its MLP's finite) passed the GPU test at a difference of 0."""
    loss_and_gradients = gpunn.Ensemble.loss_and_gradients

    def nan_in_member_1(self, X, Y):
        loss, dW, db = loss_and_gradients(self, X, Y)
        dW[0][1] = np.nan
        return loss, dW, db

    monkeypatch.setattr(gpunn.Ensemble, "loss_and_gradients", nan_in_member_1)
    assert np.isnan(_gradient_contract("cpu", "float32", "relu"))


# ---- the CPU: refused; the emulation keeps the contract --------------------------------------------------

def test_the_cpu_refuses_tensor_core_precisions_as_for_one_model():
    for precision in ("tf32", "bf16"):
        with pytest.raises(ValueError, match=rf"precision='{precision}' .*needs a CUDA GPU.*'cpu'"):
            gpunn.Ensemble([4, 8, 1], 2, device="cpu", precision=precision)
    with pytest.raises(ValueError, match="precision must be one of"):
        gpunn.Ensemble([4, 8, 1], 2, device="cpu", precision="fp16")
    assert gpunn.Ensemble([4, 8, 1], 2, device="cpu").precision == "float32"


def test_tensor_core_precisions_need_float32_master_weights(emulate):
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        gpunn.Ensemble([4, 8, 1], 2, device="cpu", precision="bf16", dtype="float64")


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_each_emulated_member_trains_as_its_own_mlp(emulate, precision):
    """In the NumPy emulation every member's arithmetic is its MLP's: the same products (a stacked matmul is
    each member's matmul), the same roundings to bf16: bit for bit."""
    worst, ens = _contract("cpu", precision, "gelu", "adam")
    assert worst == 0.0
    assert _gradient_contract("cpu", precision, "gelu") == 0.0
    assert ens[2].precision == precision and ens.best().precision == precision


def test_the_emulated_bf16_tensors_are_one_models(emulate):
    """Hidden activations, the copies of X, of the parameters and of the output layer's dZ in bf16; the
    output layer, parameters, gradients and predictions in float32."""
    X, Y = _data(9)
    ens = gpunn.Ensemble(SIZES, 2, activation=["gelu", "relu"], device="cpu", seed=0, precision="bf16")
    ens.loss_and_gradients(X, Y)
    ws = ens._workspace(9)
    for l in (0, 1):
        assert ws.Z[l].dtype == ws.A[l].dtype == ws.dA[l].dtype == BF16
    assert ws.Z[2].dtype == ws.A[2].dtype == ws.dA[2].dtype == np.float32
    assert ws.input16(X).dtype == ws.dZ16.dtype == ens.params16.dtype == BF16
    assert ens.params.dtype == ens.grads.dtype == ens.predict(X).dtype == np.float32
    np.testing.assert_array_equal(ens.params16, ens.params.astype(BF16))  # refreshed at each forward pass
    ref = gpunn.Ensemble(SIZES, 2, activation=["gelu", "relu"], device="cpu", seed=0)
    loss, dW, _ = ens.loss_and_gradients(X, Y)
    loss32, dW32, _ = ref.loss_and_gradients(X, Y)
    np.testing.assert_allclose(loss, loss32, rtol=4e-2)
    assert 0 < np.linalg.norm(dW[0] - dW32[0]) < 4e-2 * np.linalg.norm(dW32[0])  # bf16: close, not float32


def test_the_memory_check_counts_the_bf16_copies(emulate, monkeypatch):
    """An ensemble that fits in float32 but not with bf16's copies of the parameters and rows is refused
    before allocating, saying how much it needs (gpunn sweep splits by the same count)."""
    from gpunn.ensemble import member_bytes

    sizes, rows = [30, 200, 1], gpunn.Ensemble.chunk_rows
    params = 30 * 200 + 200 + 200 + 1
    assert member_bytes(sizes, 4, rows, precision="bf16") - member_bytes(sizes, 4, rows) == 2 * (params + 31 * rows)
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 4 * member_bytes(sizes, 4, rows) + 1)
    gpunn.Ensemble(sizes, 4, device="cpu", seed=0)
    with pytest.raises(MemoryError, match="an ensemble of 4 x"):
        gpunn.Ensemble(sizes, 4, device="cpu", seed=0, precision="bf16")


def test_set_precision_switches_an_ensemble_back_to_float32(emulate):
    X, Y = _data(50)
    ens = gpunn.Ensemble(SIZES, 2, device="cpu", seed=1, precision="bf16")
    ens.fit(X, Y, epochs=1, batch_size=25, verbose=False)
    twin = gpunn.Ensemble(SIZES, 2, device="cpu", seed=1)
    twin.params[...] = ens.params
    assert not np.array_equal(ens.predict(X), twin.predict(X))  # bf16 arithmetic
    ens.set_precision("float32")
    assert ens.precision == "float32" and ens.params16 is None and ens[0].precision == "float32"
    np.testing.assert_array_equal(ens.predict(X), twin.predict(X))


# ---- the CuPy path (a GPU, or tests/fakecupy) ---------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("act,optimizer,graph", [("relu", "adam", False), ("tanh", "momentum", False),
                                                 ("gelu", "adamw", True)])
def test_each_member_trains_as_its_own_mlp_on_cuda(gpu, precision, act, optimizer, graph):
    """Part 2 of the contract (the module's docstring): after 10 steps a member's weights and validation losses are
    its MLP's to GPU_TOL on a GPU, the drift that Adam and ReLU make of products rounded differently (part 1 bounds
    the arithmetic itself); bit for bit on the stand-in, where a bug in the training loop cannot hide in a drift."""
    fakecupy = __import__("sys").modules.get("fakecupy")
    if fakecupy is not None and not fakecupy.in_use():  # a GPU run, where test_fakecupy.py imported the stand-in
        fakecupy = None
    if fakecupy is not None:
        fakecupy.state.gemms.clear()
        fakecupy.state.launches.clear()
    worst, ens = _contract("cuda", precision, act, optimizer, graph)
    assert worst <= (0.0 if FAKE else GPU_TOL[precision]), worst
    if graph:
        assert ens.graph_trainer.captured, ens.graph_trainer.reason
    if fakecupy is not None:  # the precision's compute type, and the member kernels' bf16 instances
        assert set(fakecupy.state.gemms) == {"32F_FAST_TF32" if precision == "tf32" else "32F"}
        names = " ".join(str(launch[0]) for launch in fakecupy.state.launches)
        assert ("member_bias_act_forward<gpunn::bf16" in names) == (precision == "bf16")
        assert ("member_bias_grad<gpunn::bf16>" in names) == (precision == "bf16")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_each_member_computes_its_mlps_gradients_on_cuda(gpu, precision, act):
    """Part 1 of the contract (the module's docstring): at equal weights, before any step could amplify a rounding,
    a member's loss and gradients are its MLP's to GRADIENT_TOL (tf32: 16 of TF32's unit roundoff, one side's TF32
    rounding through six products; bf16: one bfloat16 rounding); smooth activations, whose derivatives a rounding
    moves by a rounding. Bit for bit on the stand-in, with the precision's compute type in every product."""
    fakecupy = __import__("sys").modules.get("fakecupy")
    if fakecupy is not None and not fakecupy.in_use():
        fakecupy = None
    if fakecupy is not None:
        fakecupy.state.gemms.clear()
    worst = _gradient_contract("cuda", precision, act)
    assert worst <= (0.0 if FAKE else GRADIENT_TOL[precision]), worst
    if fakecupy is not None:
        assert set(fakecupy.state.gemms) == {"32F_FAST_TF32" if precision == "tf32" else "32F"}


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_a_one_member_ensemble_trains_as_its_mlp_on_cuda(gpu, precision):
    """K = 1: the member axis of every product is one long, still the batched GemmEx of the precision."""
    fakecupy = __import__("sys").modules.get("fakecupy")
    if fakecupy is not None and not fakecupy.in_use():
        fakecupy = None
    if fakecupy is not None:
        fakecupy.state.gemms.clear()
    worst, _ = _contract("cuda", precision, "tanh", "adam", members=1)
    assert worst <= (0.0 if FAKE else GPU_TOL[precision]), worst
    if fakecupy is not None:
        assert set(fakecupy.state.gemms) == {"32F_FAST_TF32" if precision == "tf32" else "32F"}


@pytest.mark.gpu
def test_members_copies_and_saved_files_keep_the_precision(gpu, tmp_path):
    X, Y = _data()
    ens = gpunn.Ensemble(SIZES, 2, device="cuda", seed=3, precision="bf16")
    ens.fit(X, Y, epochs=1, batch_size=64, validation_fraction=0.1, verbose=False)
    import copy

    assert ens[1].precision == ens.best().precision == copy.deepcopy(ens).precision == "bf16"
    assert "precision='bf16'" in repr(ens)
    # the member's own arithmetic: bit for bit on the stand-in; on a GPU its MLP's products are one-product GemmEx
    # calls where the ensemble's are strided batched ones, which cuBLAS may sum in another order
    member, stacked = _host(ens[1].predict(X)), _host(ens.predict(X)[1])
    if FAKE:
        np.testing.assert_array_equal(member, stacked)
    else:
        np.testing.assert_allclose(member, stacked, rtol=0, atol=GPU_TOL["bf16"] * np.abs(stacked).max())
    gpunn.save(tmp_path / "ens.npz", ens)
    gpunn.save(tmp_path / "best.npz", ens.best())
    loaded, best = gpunn.load(tmp_path / "ens.npz", device="cuda"), gpunn.load(tmp_path / "best.npz", device="cuda")
    assert loaded.precision == best.precision == "bf16"
    np.testing.assert_array_equal(_host(loaded.predict(X)), _host(ens.predict(X)))
    # on the CPU (no tensor cores) the same float32 weights load in float32
    cpu = gpunn.load(tmp_path / "ens.npz", device="cpu")
    assert cpu.precision == "float32"
    np.testing.assert_array_equal(cpu.params, _host(ens.params))
    assert gpunn.load(tmp_path / "best.npz", device="cpu").precision == "float32"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_an_interrupted_run_resumes_in_its_precision(gpu, tmp_path, interrupt_at, precision):
    """The checkpoint records the precision; the resumed run continues in it and ends where the
    uninterrupted one does (the same launches on the same device)."""
    X, Y = _data()
    kwargs = dict(epochs=3, batch_size=48, lr=[2e-3, 1e-2], seed=4, validation_fraction=0.2, verbose=False)
    reference = gpunn.Ensemble(SIZES, 2, device="cuda", seed=7, precision=precision)
    ref_hist = reference.fit(X, Y, **kwargs)
    path = tmp_path / "run.npz"
    gpunn.Ensemble(SIZES, 2, device="cuda", seed=7, precision=precision).fit(
        X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)], **kwargs)
    ckpt = gpunn.load_checkpoint(path, device="cuda")
    assert ckpt.model.precision == precision
    resumed = ckpt.resume(X, Y, verbose=False)
    assert _rel(ckpt.model.params, reference.params) <= (0.0 if FAKE else 1e-6)
    np.testing.assert_allclose(resumed["val_loss"], ref_hist["val_loss"], rtol=1e-6)



@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mlp", "ensemble"])
def test_a_gpu_run_in_bf16_resumes_on_the_gpu_and_is_refused_on_the_cpu(gpu, tmp_path, kind):
    """Loaded on the CPU, a bf16 run's checkpoint predicts in float32; resuming it there is refused before
    anything trains (it would continue in float32); on the GPU it resumes in bf16."""
    X, Y = _data(120)
    model = (gpunn.MLP(SIZES, device="cuda", seed=3, precision="bf16") if kind == "mlp"
             else gpunn.Ensemble(SIZES, 2, device="cuda", seed=3, precision="bf16"))
    path = tmp_path / "run.npz"
    model.fit(X, Y, epochs=1, batch_size=40, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    cpu = gpunn.load_checkpoint(path, device="cpu")
    assert cpu.model.precision == "float32"
    np.testing.assert_array_equal(cpu.model.params, _host(model.params))
    with pytest.raises(ValueError, match=r"run.npz holds a run trained in precision 'bf16'.*resume it on a CUDA GPU"):
        cpu.resume(X, Y, epochs=2, verbose=False)
    np.testing.assert_array_equal(cpu.model.params, _host(model.params))
    ckpt = gpunn.load_checkpoint(path, device="cuda")
    assert len(ckpt.resume(X, Y, epochs=2, verbose=False)["loss"]) == 2 and ckpt.model.precision == "bf16"


# ---- the benchmark's rows (gpunn bench --ensemble K --precision bf16, bench/gpu_checks/ensemble.py) ----------

def test_the_bench_skips_tensor_core_ensemble_rows_on_the_cpu_with_a_line():
    from gpunn import bench
    from gpunn.bench.ensemble import run_ensembles

    lines = []
    results = run_ensembles([bench.parse_config("lin:4:8:1:16-x2")], [gpunn.backend.resolve("cpu")], peers=[],
                            repeats=1, seconds=0.01, log=lines.append, profile=False, variants=[("bf16", None)],
                            max_seconds=1)
    assert [r["impl"] for r in results] == ["gpunn"]
    assert any("gpunn Ensemble bf16 skipped (GPU only)" in line for line in lines), lines



@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mlp", "ensemble"])
def test_set_precision_between_fits_captures_anew(gpu, kind):
    """A fit with graph=True, set_precision, then a fit with the same optimizer: the second fit must not
    replay the first fit's graphs (their launches write the bf16 copy of the parameters that set_precision
    freed, and run in the old precision): it trains as the same sequence without a graph."""
    X, Y = _data(128)

    def run(graph):
        if kind == "mlp":
            model = gpunn.MLP(SIZES, device="cuda", seed=2, precision="bf16", graph=graph)
        else:
            model = gpunn.Ensemble(SIZES, 2, device="cuda", seed=2, precision="bf16", graph=graph)
        opt = gpunn.Adam()
        kw = dict(epochs=1, batch_size=32, optimizer=opt, lr=1e-3, verbose=False)
        model.fit(X, Y, **kw)
        model.set_precision("float32")
        model.fit(X, Y, **kw)
        return model

    captured, eager = run(True), run(False)
    assert captured.graph_trainer.captured, captured.graph_trainer.reason
    for step in captured.graph_trainer._steps.values():  # the second fit's steps, in float32
        assert step.ws.Z[0].dtype == np.float32
    assert _rel(captured.params, eager.params) <= (0.0 if FAKE else 1e-5)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_emulated_precisions_never_split_their_members_into_groups(emulate, monkeypatch, precision):
    """tf32 and bf16 run as one pass on the CPU however much work there is: a step has no member groups (mut17a B1),
    and predict's products are the single-model emulated ones, not split into groups of NumPy float32 products
    (mut17a A105b), so two threads predict the bits of one."""
    import gpunn.ops.ensemble as ens_ops

    for name in ("MIN_GROUP_FLOPS", "MIN_GROUP_FLOPS_ONE_CALL", "MIN_GROUP_ELEMENTS"):
        monkeypatch.setattr(ens_ops, name, 0)  # groups however small the work
    X, _ = _data(64)
    Y = X[:, :1].copy()
    predictions = []
    for threads in (1, 2):
        ens = gpunn.Ensemble([6, 16, 1], 4, device="cpu", seed=1, precision=precision)
        ens.member_ops.threads = threads
        assert ens._groups(X, Y) is None
        predictions.append(ens.predict(X))
    np.testing.assert_array_equal(predictions[1], predictions[0])
    float32 = gpunn.Ensemble([6, 16, 1], 4, device="cpu", seed=1)
    assert not np.array_equal(float32.predict(X), predictions[0])  # the emulation rounds
