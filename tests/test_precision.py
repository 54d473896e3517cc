"""precision="tf32" | "bf16" without a GPU: the cuBLAS argument plan, the refusals on the CPU, and the
NumPy emulation (gpunn.ops.Ops) that is the reference of the GPU path.

What this cannot show: that cuBLAS and the bf16 kernels do on a GPU what the plan and the
emulation say; tests/test_precision_gpu.py (marked gpu) compares them there.
"""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

import gpunn
import gpunn.model as gm
from gpunn.ops import Ops, cublas
from gpunn.ops.base import round_to_tf32

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


# ---- the cuBLAS plan ----------------------------------------------------------------------------

def _offset(view, base):
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // view.itemsize


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_plan_computes_a_times_b(ta, tb):
    """cuBLAS (emulated on flat column-major buffers) with the plan's arguments gives A @ B for every
    layout the model passes: C-ordered, transposed views (X.T, W.T), single rows and columns."""
    rng = np.random.default_rng(1)
    for n, k, m in itertools.product([1, 2, 5], [1, 3, 4], [1, 2, 7]):
        A0 = rng.standard_normal((k, n) if ta else (n, k)).astype(np.float32)
        B0 = rng.standard_normal((m, k) if tb else (k, m)).astype(np.float32)
        A, B = (A0.T if ta else A0), (B0.T if tb else B0)
        C = np.full((n, m), np.nan, np.float32)
        plan = cublas.plan_for(A, B, C)
        assert (plan.transa, plan.transb) == (int(tb), int(ta)) or 1 in (n, k, m)
        cublas.emulate_gemm(plan, B0.reshape(-1), A0.reshape(-1), C.reshape(-1))
        np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-5, atol=1e-6, err_msg=f"{n}x{k}x{m}")


def test_gemm_plan_handles_row_slices_of_a_bigger_matrix():
    """A view of rows 3..9 of a wider C-ordered buffer (leading dimension > columns), and the transpose of one."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((12, 10)).astype(np.float32)
    A = base[3:9, 2:6]  # 6 x 4, row stride 10
    B = rng.standard_normal((4, 5)).astype(np.float32)
    C = np.zeros((6, 5), np.float32)
    plan = cublas.plan_for(A, B, C)
    assert plan.ldb == 10
    cublas.emulate_gemm(plan, B.reshape(-1), base.reshape(-1), C.reshape(-1), offset_second=_offset(A, base))
    np.testing.assert_allclose(C, A @ B, rtol=1e-5)
    # and the transpose of such a view (unit row stride, column stride 10 > rows): cuBLAS's op T, ld 10
    B = base[2:7, 1:5].T  # 4 x 5
    A = rng.standard_normal((6, 4)).astype(np.float32)
    C = np.zeros((6, 5), np.float32)
    plan = cublas.plan_for(A, B, C)
    assert (plan.transa, plan.lda) == (cublas.OP_T, 10)
    cublas.emulate_gemm(plan, base.reshape(-1), A.reshape(-1), C.reshape(-1), offset_first=_offset(B, base))
    np.testing.assert_allclose(C, A @ B, rtol=1e-5)


def test_gemm_plan_writes_a_one_row_or_one_column_result_inside_a_bigger_buffer():
    """A result of one row whose row stride is a wider buffer's, or of one column whose column stride is, is still
    C-contiguous (its elements are adjacent): planned, not refused as strided."""
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((1, 4)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    wide = np.zeros((3, 9), np.float32)
    C = wide[1:2, 2:7]  # 1 x 5, row stride 9
    cublas.emulate_gemm(cublas.plan_for(A, B, C), B.reshape(-1), A.reshape(-1), wide.reshape(-1)[_offset(C, wide):])
    np.testing.assert_allclose(C, A @ B, rtol=1e-5)
    A, B = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((4, 1)).astype(np.float32)
    C = np.lib.stride_tricks.as_strided(wide, (5, 1), (4, 36))  # 5 x 1, column stride 9
    cublas.emulate_gemm(cublas.plan_for(A, B, C), B.reshape(-1), A.reshape(-1), wide.reshape(-1))
    np.testing.assert_allclose(C, A @ B, rtol=1e-5)


def test_gemm_plan_reads_a_one_column_or_one_row_operand_whatever_its_other_stride():
    """Views of every other column of a wider buffer (row stride 10, column stride 2 elements): a (p, 1) one is
    read row-major at its row stride, a (1, q) one column-major at its column stride; neither is refused as
    neither C- nor F-ordered."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 10)).astype(np.float32)
    column, row = base[:, ::2][:, 1:2], base[1:2, ::2]  # 6 x 1, 1 x 5
    for A, B, strided, op_ld in [(rng.standard_normal((3, 6)).astype(np.float32), column, "B", (cublas.OP_N, 10)),
                                 (row, rng.standard_normal((5, 3)).astype(np.float32), "A", (cublas.OP_T, 2))]:
        C = np.full((A.shape[0], B.shape[1]), np.nan, np.float32)
        plan = cublas.plan_for(A, B, C)
        # cuBLAS's first operand is the caller's B
        assert ((plan.transa, plan.lda) if strided == "B" else (plan.transb, plan.ldb)) == op_ld
        first, second = (base, A) if strided == "B" else (B, base)
        at = _offset(B if strided == "B" else A, base)
        cublas.emulate_gemm(plan, first.reshape(-1), second.reshape(-1), C.reshape(-1),
                            **({"offset_first": at} if strided == "B" else {"offset_second": at}))
        np.testing.assert_allclose(C, A @ B, rtol=1e-5)


def test_gemm_plan_takes_the_empty_views_of_an_empty_data_parallel_piece():
    """A rank's empty piece of the last batch: Z = X @ W with 0 rows, and dW = A^T dZ over 0 rows (k = 0,
    which the callers answer with a zeroed dW and no cuBLAS call). NumPy 2 gives empty views strides of 0
    (a CuPy stand-in built on it too): the plan must not refuse them as neither C- nor F-ordered."""
    f32 = np.float32
    X, W, Z = np.empty((0, 4), f32), np.empty((4, 3), f32), np.empty((0, 3), f32)
    assert (cublas.plan_for(X, W, Z).n, cublas.plan_for(X, W, Z).k) == (0, 4)
    A, dZ, dW = np.empty((0, 5), f32), np.empty((0, 3), f32), np.empty((5, 3), f32)
    plan = cublas.plan_for(A.T, dZ, dW)
    assert (plan.m, plan.n, plan.k, plan.ldc) == (3, 5, 0, 3)


def test_gemm_plan_refuses_what_cublas_cannot_read():
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(cublas.GemmError, match="neither C- nor F-ordered"):
        cublas.plan_for(a[:, ::2], np.zeros((3, 2), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(cublas.GemmError, match="C-contiguous"):
        cublas.plan_for(a, np.zeros((6, 3), np.float32), np.zeros((3, 4), np.float32).T)
    with pytest.raises(cublas.GemmError, match="do not match"):
        cublas.plan_for(a, np.zeros((5, 3), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(cublas.GemmError, match="do not match"):  # cuBLAS would write 4 rows into 2
        cublas.plan_for(a, np.zeros((6, 3), np.float32), np.zeros((2, 3), np.float32))
    odd = np.lib.stride_tricks.as_strided(np.zeros(8, np.float32), shape=(2, 2), strides=(6, 4))  # rows 1.5 apart
    with pytest.raises(cublas.GemmError, match=r"A: strides \(6, 4\) are not whole elements"):
        cublas.plan_for(odd, np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(cublas.GemmError, match="share a dtype"):  # GemmEx takes one type for both operands
        cublas.product_type(np.zeros((2, 2), BF16), np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), "bf16")


def test_compute_types_per_precision():
    f32, f64 = np.float32, np.float64
    assert cublas.compute_type(f32, f32, "float32") == cublas.COMPUTE_32F
    assert cublas.compute_type(f32, f32, "tf32") == cublas.COMPUTE_32F_FAST_TF32
    assert cublas.compute_type(BF16, BF16, "bf16") == cublas.COMPUTE_32F  # float32 accumulation
    assert cublas.compute_type(BF16, f32, "bf16") == cublas.COMPUTE_32F
    assert cublas.compute_type(f64, f64, "tf32") == cublas.COMPUTE_64F
    # a float32 product in a bf16 model (none today) keeps float32's compute type: TF32 only where asked for
    assert cublas.compute_type(f32, f32, "bf16") == cublas.COMPUTE_32F
    assert cublas.cuda_type(BF16) == cublas.CUDA_R_16BF == 14
    with pytest.raises(cublas.GemmError):
        cublas.compute_type(f32, BF16, "bf16")
    with pytest.raises(cublas.GemmError):  # no cuBLAS product of float64 operands into float32
        cublas.compute_type(f64, f32, "float32")


def test_round_to_tf32():
    one_ulp = np.float32(2.0**-10)
    x = np.array([1.0, 1 + one_ulp, 1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 1 + one_ulp / 4, -2.5, 0.0, np.inf,
                  -np.inf, np.nan, 3.4028235e38], np.float32)
    r = round_to_tf32(x)
    # ties to even: 1 + ulp/2 -> 1, 1 + 3ulp/2 -> 1 + 2ulp; 1 + ulp/4 -> 1
    np.testing.assert_array_equal(r[:7], np.array([1, 1 + one_ulp, 1, 1 + 2 * one_ulp, 1, -2.5, 0], np.float32))
    assert np.isposinf(r[7]) and np.isneginf(r[8]) and np.isnan(r[9])
    assert (r[np.isfinite(r)].view(np.uint32) & 0x1FFF == 0).all()  # 13 low mantissa bits cleared


def test_the_tf32_product_reads_both_operands_rounded_to_tf32():
    """Ops(precision="tf32").matmul is what a TF32 tensor core computes: bits below TF32's 10-bit mantissa
    (less than half its ulp here, so they round away) change nothing in either operand."""
    rng = np.random.default_rng(4)
    a0, b0 = (round_to_tf32(rng.standard_normal(shape).astype(np.float32)) for shape in ((6, 5), (5, 4)))
    a, b = ((x.view(np.uint32) | rng.integers(1, 0x1000, x.shape, dtype=np.uint32)).view(np.float32) for x in (a0, b0))
    assert (a != a0).all() and (b != b0).all()
    out = np.empty((6, 4), np.float32)
    Ops(precision="tf32").matmul(a, b, out)
    np.testing.assert_array_equal(out, np.matmul(a0, b0))


def test_the_bf16_bias_gradient_is_summed_in_float64():
    """db of a bf16 dZ is summed in float64 and rounded once, as the kernel does: 2^24 + 1 + 1 + 1 - 2^24 is
    3, where a float32 running sum loses every 1."""
    dZ = np.array([[2.0**24], [1.0], [1.0], [1.0], [-(2.0**24)]], np.float32).astype(BF16)
    db = np.full(1, np.nan, np.float32)
    Ops().bias_gradient(dZ, db)
    assert db[0] == 3.0


# ---- the public API refuses what cannot run ------------------------------------------------------

def test_cpu_refuses_tensor_core_precisions():
    for precision in ("tf32", "bf16"):
        with pytest.raises(ValueError, match=rf"precision='{precision}' .*needs a CUDA GPU.*'cpu'"):
            gpunn.MLP([4, 8, 1], device="cpu", precision=precision)
    with pytest.raises(ValueError, match="precision must be one of"):
        gpunn.MLP([4, 8, 1], device="cpu", precision="fp8")
    assert gpunn.MLP([4, 8, 1], device="cpu", precision="float32").precision == "float32"


def test_tensor_core_precisions_need_float32(monkeypatch):
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        gpunn.MLP([4, 8, 1], device="cpu", precision="tf32", dtype="float64")



@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("kind", ["mlp", "ensemble"])
def test_resuming_a_tensor_core_run_on_the_cpu_is_refused_before_it_trains(tmp_path, monkeypatch, kind, precision):
    """A tf32/bf16 training checkpoint loads on the CPU in float32 (its weights predict), but resuming it
    there would continue the run in float32: refused, naming the file and the precision, nothing trained."""
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)  # the run itself, written as a GPU would
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    Y = X[:, :1] * 0.5
    model = (gpunn.MLP([4, 6, 1], device="cpu", seed=1, precision=precision) if kind == "mlp"
             else gpunn.Ensemble([4, 6, 1], 2, device="cpu", seed=1, precision=precision))
    path = tmp_path / "run.npz"
    model.fit(X, Y, epochs=1, batch_size=20, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", False)  # the CPU as it is: no tensor cores
    written = path.read_bytes()
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert ckpt.model.precision == "float32"
    before = ckpt.model.params.copy()
    np.testing.assert_array_equal(ckpt.model.predict(X), gpunn.load(path, device="cpu").predict(X))
    with pytest.raises(ValueError, match=rf"{path.name} holds a run trained in precision '{precision}'.*'cpu'.*"
                                         r"resume it on a CUDA GPU"):
        ckpt.resume(X, Y, epochs=2, verbose=False)
    np.testing.assert_array_equal(ckpt.model.params, before)
    assert path.read_bytes() == written


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("kind", ["mlp", "ensemble"])
def test_a_saved_file_keeps_its_precision_through_a_cpu(tmp_path, monkeypatch, kind, precision):
    """A tf32/bf16 model loaded on the CPU runs in float32 there, but saving it again (itself, a copy, a
    member) writes the precision its file recorded: a round trip through a CPU machine changes nothing the
    file says. A CPU fit's training checkpoint records float32, the arithmetic it trained in (it resumes)."""
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)  # the file, written as a GPU would
    model = (gpunn.MLP([4, 6, 1], device="cpu", seed=1, precision=precision) if kind == "mlp"
             else gpunn.Ensemble([4, 6, 1], 2, device="cpu", seed=1, precision=precision))
    gpunn.save(tmp_path / "gpu.npz", model)
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", False)  # the CPU as it is: no tensor cores
    loaded = gpunn.load(tmp_path / "gpu.npz", device="cpu")
    assert (loaded.precision, loaded.saved_precision) == ("float32", precision)
    again = [loaded, copy.deepcopy(loaded)] + ([loaded[1]] if kind == "ensemble" else [])
    for i, m in enumerate(again):
        gpunn.save(tmp_path / f"{i}.npz", m)
        assert gpunn.checkpoint.read(tmp_path / f"{i}.npz")[0]["model"]["precision"] == precision
    np.testing.assert_array_equal(gpunn.load(tmp_path / "0.npz", device="cpu").params, model.params)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    loaded.fit(X, X[:, :1], epochs=1, batch_size=20, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "r")])
    assert "precision" not in gpunn.load_checkpoint(tmp_path / "r", device="cpu").meta["model"]
    loaded.set_precision("float32")  # chosen here: the file says what the model now is
    gpunn.save(tmp_path / "f32.npz", loaded)
    assert "precision" not in gpunn.checkpoint.read(tmp_path / "f32.npz")[0]["model"]


# ---- the emulation: which tensors are bf16, and training quality ---------------------------------

@pytest.fixture
def emulate(monkeypatch):
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)


def test_bf16_tensors_are_the_documented_ones(emulate):
    m = gpunn.MLP([5, 7, 6, 2], activation=["gelu", "relu"], device="cpu", seed=0, precision="bf16")
    X = np.random.default_rng(0).standard_normal((9, 5)).astype(np.float32)
    Y = np.zeros((9, 2), np.float32)
    m.loss_and_gradients(X, Y)
    ws = m._workspace(9)
    for l in (0, 1):  # hidden layers
        assert ws.Z[l].dtype == ws.A[l].dtype == ws.dA[l].dtype == BF16
    assert ws.Z[2].dtype == ws.A[2].dtype == ws.dA[2].dtype == np.float32  # the output layer
    assert ws.X16.dtype == ws.dZ16.dtype == m.params16.dtype == BF16
    assert m.params.dtype == m.grads.dtype == np.float32
    assert m.predict(X).dtype == np.float32
    # the bf16 parameters are the float32 ones rounded (refreshed at each forward pass)
    np.testing.assert_array_equal(m.params16, m.params.astype(BF16))


def test_bf16_and_tf32_gradients_are_close_to_float32(emulate):
    """Also where the backward pass reads Z (gelu: g' from the input, so Z + b is kept) and the biases
    are not zero (they start at zero: a Z kept without its bias would not show)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    Y = rng.standard_normal((64, 1)).astype(np.float32)
    biases = [rng.uniform(0.5, 1.5, n).astype(np.float32) for n in (16, 16, 1)]
    ref = gpunn.MLP([6, 16, 16, 1], activation=["gelu", "tanh"], device="cpu", seed=3)
    for b, value in zip(ref.biases, biases):
        b[...] = value
    loss32, dW32, db32 = ref.loss_and_gradients(X, Y)
    for precision, rel in (("tf32", 5e-3), ("bf16", 4e-2)):
        m = gpunn.MLP([6, 16, 16, 1], activation=["gelu", "tanh"], device="cpu", seed=3, precision=precision)
        for b, value in zip(m.biases, biases):
            b[...] = value
        loss, dW, db = m.loss_and_gradients(X, Y)
        assert loss == pytest.approx(loss32, rel=rel)
        for g, g32 in zip(dW + db, dW32 + db32):
            assert g.dtype == np.float32
            err = np.linalg.norm(g - g32) / np.linalg.norm(g32)
            assert 0 < err < rel, f"{precision}: relative gradient error {err}"  # close, and not float32 itself


def test_emulated_tf32_and_bf16_train_to_the_float32_r2(emulate):
    X, Y = gpunn.datasets.make("teacher", n_samples=6000, n_features=8, seed=1, device="cpu")
    Xt, Yt, X, Y = X[:1000], Y[:1000], X[1000:], Y[1000:]
    scores = {}
    for precision in ("float32", "tf32", "bf16"):
        m = gpunn.MLP([8, 32, 32, 1], device="cpu", seed=0, precision=precision)
        m.fit(X, Y, epochs=4, batch_size=64, lr=3e-3, verbose=False)
        scores[precision] = m.score(Xt, Yt)
    assert scores["float32"] > 0.6, scores
    assert abs(scores["tf32"] - scores["float32"]) < 0.005, scores
    assert abs(scores["bf16"] - scores["float32"]) < 0.005, scores


# ---- bf16 without ml_dtypes: uint16 storage of the same bits -------------------------------------

def test_narrow_and_widen_are_ml_dtypes_rounding():
    from gpunn.ops.base import RAW_BF16, narrow, widen

    rng = np.random.default_rng(12)
    x = rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint64).astype(np.uint32).view(np.float32)
    # 1 + 2^-8 and 1 + 3 x 2^-8 are ties between two bf16 values: to the even one, down and up
    ties = [1.00390625, 1.01171875, -1.00390625, -1.01171875]
    x = np.concatenate([x, np.array([0.0, -0.0, np.inf, -np.inf, 3.4028235e38, *ties], np.float32)])
    with np.errstate(invalid="ignore"):
        want = x.astype(BF16)
    for storage in (BF16, RAW_BF16):
        got = narrow(x, storage)
        assert got.dtype == storage
        finite = ~np.isnan(x)
        np.testing.assert_array_equal(got.view(np.uint16)[finite], want.view(np.uint16)[finite])
        assert np.isnan(widen(got)[~finite]).all()
        np.testing.assert_array_equal(widen(got)[finite], want.astype(np.float32)[finite])


def test_bf16_training_is_the_same_with_raw_uint16_storage(emulate, monkeypatch):
    """Where ml_dtypes is missing, bf16 is stored as uint16 bits: the same training, bit for bit."""
    from gpunn.ops.base import RAW_BF16

    X, Y = gpunn.datasets.make("teacher", n_samples=800, n_features=5, seed=2, device="cpu")
    params = []
    for storage in (BF16, RAW_BF16):
        monkeypatch.setattr(gm, "bf16_dtype", lambda storage=storage: storage)
        m = gpunn.MLP([5, 16, 12, 1], activation=["gelu", "relu"], device="cpu", seed=0, precision="bf16")
        assert m.params16.dtype == storage and m._workspace(4).Z[0].dtype == storage
        m.fit(X, Y, epochs=2, batch_size=100, verbose=False)
        params.append(m.params.copy())
    np.testing.assert_array_equal(params[0], params[1])
    assert gpunn.ops.cublas.cuda_type(RAW_BF16) == gpunn.ops.cublas.CUDA_R_16BF


def test_the_kernel_loader_tells_bf16_from_every_spelling():
    """gpunn.ops.kernels.is_bf16 (run at every kernel launch, so by itemsize and kind for a dtype) against
    gpunn.ops.base.is_bf16 and the names and types it is also given."""
    from gpunn.ops import kernels
    from gpunn.ops.base import bf16_dtype, is_bf16

    dtypes = [np.dtype(t) for t in ("float32", "float64", "float16", "int16", "uint16", "int32", "uint8")]
    dtypes.append(np.dtype(bf16_dtype()))
    for d in dtypes:
        assert kernels.is_bf16(d) == is_bf16(d) == (d.name in ("bfloat16", "uint16")), d
    assert kernels.is_bf16("bfloat16") and kernels.is_bf16(np.dtype(bf16_dtype()).type)
    assert kernels.is_bf16("uint16") and kernels.is_bf16(np.uint16)  # bf16 bits without ml_dtypes
    assert not kernels.is_bf16("float32") and not kernels.is_bf16(np.float32)
    assert not kernels.is_bf16("int16") and not kernels.is_bf16(np.float16)
