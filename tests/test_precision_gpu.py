"""precision="tf32" | "bf16" on a GPU (marked gpu; skipped without CuPy and a CUDA device).

- tf32 and bf16 train the teacher task to a held-out R² within 0.005 of float32;
- the bf16 kernels agree with the float32 ones to bf16 rounding (and to_storage with the host rule, bit
  for bit); the bias gradient of bf16 dZ sums in double into float32;
- GemmEx products for every layout the model uses, against float64; TF32 is really used (its error
  is TF32's) and does not leak to CuPy's own matmul;
- the bf16 model's loss and gradients match the NumPy emulation (tests/test_precision.py) on the
  same parameters and data.
Kept small: the whole file runs in a few seconds on an H100/H200.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import gpunn
import gpunn.model as gm
from gpunn.activations import ACTIVATIONS
from gpunn.ops.base import bf16_dtype, is_bf16, narrow, widen

try:
    import cupy

    _GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # not installed, or no driver / device
    cupy, _GPU = None, False

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _GPU, reason="needs CuPy and a CUDA device")]
# ml_dtypes.bfloat16 where installed, else uint16 bits: everything here runs either way (host rounding
# by gpunn.ops.base.narrow/widen, themselves checked against ml_dtypes in tests/test_precision.py)
BF16 = bf16_dtype()
ACTS = list(ACTIVATIONS.values())
HALF_ULP = 2.0**-8  # bf16 round to nearest: relative error at most 2^-8


def _cupy_ops(precision="bf16"):
    from gpunn.ops.cuda import CupyOps

    return CupyOps(fused=True, precision=precision)


def _bf16(host_f32):
    """Host float32 values rounded to bf16 (in BF16 storage)."""
    return narrow(np.asarray(host_f32, np.float32), BF16)


def _exact(host_f32):
    """float32 values that are exactly representable in bf16."""
    return widen(_bf16(host_f32))


def _to_device_bf16(host_f32):
    return cupy.asarray(_bf16(host_f32))


def _host(a):
    h = cupy.asnumpy(a)
    return (widen(h) if is_bf16(h.dtype) else h).astype(np.float64)


def test_tf32_and_bf16_train_to_the_float32_r2():
    X, Y = gpunn.datasets.make("teacher", n_samples=24_000, n_features=16, seed=0, device="cuda")
    Xt, Yt, X, Y = X[:4000], Y[:4000], X[4000:], Y[4000:]
    scores = {}
    for precision in ("float32", "tf32", "bf16"):
        m = gpunn.MLP([16, 64, 64, 1], device="cuda", seed=0, precision=precision)
        m.fit(X, Y, epochs=6, batch_size=256, lr=3e-3, verbose=False)
        scores[precision] = m.score(Xt, Yt)
    assert scores["float32"] > 0.6, scores
    assert abs(scores["tf32"] - scores["float32"]) < 0.005, scores
    assert abs(scores["bf16"] - scores["float32"]) < 0.005, scores


@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_bf16_activation_kernels_agree_with_float32(act):
    rng = np.random.default_rng(act.kernel_id)
    rows, cols = 1000, 37
    z = _exact(rng.standard_normal((rows, cols)) * 3)  # bf16-exact inputs
    b = _exact(rng.standard_normal(cols))
    ops16, ops32 = _cupy_ops("bf16"), _cupy_ops("float32")
    keep = act.needs_input_for_grad
    # forward: bf16 in and out vs the float32 kernel on the same (widened) values
    Z16, A16 = _to_device_bf16(z), cupy.empty((rows, cols), BF16)
    Z32, A32 = cupy.asarray(z), cupy.empty((rows, cols), np.float32)
    ops16.bias_activation(Z16, _to_device_bf16(b), act, A16, keep_z=keep)
    ops32.bias_activation(Z32, cupy.asarray(b), act, A32, keep_z=keep)
    want = _host(A32)
    assert np.all(np.abs(_host(A16) - want) <= HALF_ULP * np.abs(want) + 1e-30), act.name
    if keep:
        assert np.all(np.abs(_host(Z16) - _host(Z32)) <= HALF_ULP * np.abs(_host(Z32))), act.name
    # backward, from the kept Z or from A
    da = _exact(rng.standard_normal((rows, cols)))
    from_output = not act.needs_input_for_grad
    src = cupy.asnumpy(A32 if from_output else Z32)  # rounded to bf16 on the host
    dZ16, dZ32 = cupy.empty((rows, cols), BF16), cupy.empty((rows, cols), np.float32)
    ops16.activation_backward(_to_device_bf16(da), act, _to_device_bf16(src), from_output, dZ16)
    ops32.activation_backward(cupy.asarray(da), act, cupy.asarray(_exact(src)), from_output, dZ32)
    want = _host(dZ32)
    assert np.all(np.abs(_host(dZ16) - want) <= HALF_ULP * np.abs(want) + 1e-30), act.name


@pytest.mark.parametrize("rows", [1, 300, 1024, 5000])
def test_bf16_bias_gradient_sums_in_double_into_float32(rows):
    """One launch up to 1024 rows, two above; dZ bf16, db float32."""
    rng = np.random.default_rng(rows)
    dz = _bf16(rng.standard_normal((rows, 45)))
    db = cupy.full(45, np.nan, np.float32)
    _cupy_ops("bf16").bias_gradient(cupy.asarray(dz), db)
    want = widen(dz).astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(cupy.asnumpy(db), want, rtol=1e-6, atol=1e-6)


def test_bf16_to_storage_rounds_exactly_as_the_host_rule():
    rng = np.random.default_rng(9)
    bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    dst = cupy.empty(x.size, BF16)
    _cupy_ops("bf16").to_storage(cupy.asarray(x), dst)
    got = cupy.asnumpy(dst).view(np.uint16)
    # the device flushes float denormals to zero (-ftz=true); compare the normal range bit for bit
    normal = np.abs(x) >= np.finfo(np.float32).tiny
    np.testing.assert_array_equal(got[normal], _bf16(x[normal]).view(np.uint16))


@pytest.mark.parametrize("precision,out_dtype,rel", [("tf32", np.float32, 3e-3), ("bf16", BF16, 1.5e-2),
                                                      ("bf16", np.float32, 1.2e-2), ("float32", np.float32, 1e-5)])
def test_gemm_ex_for_every_layout_the_model_uses(precision, out_dtype, rel):
    from gpunn.ops.cublas import CupyBlas

    rng = np.random.default_rng(4)
    n, k, m = 257, 129, 65
    in_dtype = BF16 if precision == "bf16" else np.float32
    a, b = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    a, b = (_bf16(a), _bf16(b)) if in_dtype == BF16 else (a.astype(in_dtype), b.astype(in_dtype))
    blas = CupyBlas()
    for A, B in ((a, b), (np.ascontiguousarray(a.T).T, b), (a, np.ascontiguousarray(b.T).T)):
        # the device arrays keep the host layout: a C-ordered one, or the .T of a C-ordered one
        dA = cupy.asarray(np.ascontiguousarray(A)) if A.flags.c_contiguous else cupy.asarray(np.ascontiguousarray(A.T)).T
        dB = cupy.asarray(np.ascontiguousarray(B)) if B.flags.c_contiguous else cupy.asarray(np.ascontiguousarray(B.T)).T
        out = cupy.empty((n, m), out_dtype)
        blas.gemm(dA, dB, out, precision)
        host = (lambda x: widen(x).astype(np.float64)) if in_dtype == BF16 else (lambda x: x.astype(np.float64))
        want = host(A) @ host(B)
        err = np.linalg.norm(_host(out) - want) / np.linalg.norm(want)
        assert err < rel, (precision, out_dtype, A.flags.c_contiguous, B.flags.c_contiguous, err)


@pytest.mark.parametrize("members", [None, 3])
def test_a_strided_operand_is_copied_contiguous_and_the_product_retried(members):
    """An operand GemmEx cannot read as it is (every other column: neither C- nor F-ordered) is copied
    contiguous on CuPy's handle and the product retried into ``out``: one model's product (CupyOps.matmul)
    and an ensemble's batched one (CupyEnsembleOps.matmul) share CupyOps.gemm_ex."""
    from gpunn.ops import ensemble_ops_for

    ops = _cupy_ops("tf32")
    rng = np.random.default_rng(7)
    stack = () if members is None else (members,)
    a = rng.standard_normal((*stack, 33, 34)).astype(np.float32)
    b = rng.standard_normal((*stack, 17, 18)).astype(np.float32)
    product = ops.matmul if members is None else ensemble_ops_for(ops).matmul
    da, db = cupy.asarray(a), cupy.asarray(b)
    # A strided (every other column), then B; the other operand a view GemmEx reads as it is
    for dA, dB, A, B in ((da[..., ::2], db[..., :9], a[..., ::2], b[..., :9]),
                         (da[..., :17], db[..., ::2], a[..., :17], b[..., ::2])):
        out = cupy.empty((*stack, 33, 9), np.float32)
        assert product(dA, dB, out) is out
        want = A.astype(np.float64) @ B
        assert np.linalg.norm(_host(out) - want) / np.linalg.norm(want) < 3e-3  # TF32's rounding


def test_on_the_capture_handle_a_strided_operand_is_refused_not_copied():
    """On the graph's own handle (CapturableBlas) the GemmError goes up instead of the contiguous copy and retry:
    in a capture, the copy would be an allocation and a CuPy kernel on the capturing stream; the graph path gives
    the capture up on a GemmError instead."""
    from gpunn.ops.cublas import CapturableBlas, GemmError

    ops = _cupy_ops("tf32")
    stream = cupy.cuda.Stream(non_blocking=True)  # kept alive while its handle is
    ops.blas = CapturableBlas(stream.ptr)
    rng = np.random.default_rng(7)
    a = cupy.asarray(rng.standard_normal((33, 34)).astype(np.float32))[:, ::2]
    b = cupy.asarray(rng.standard_normal((17, 9)).astype(np.float32))
    try:
        with pytest.raises(GemmError, match="neither C- nor F-ordered"):
            ops.matmul(a, b, cupy.empty((33, 9), np.float32))
    finally:
        ops.blas.close()


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_the_products_of_an_empty_piece_run_and_its_weight_gradient_is_zero(precision):
    """A rank's empty piece of the last batch (0 rows): Z = X @ W runs (nothing to write), and dW = A^T dZ
    (k = 0) makes no cuBLAS call and is zero, not what the gradient buffer held from the last step."""
    dtype = BF16 if precision == "bf16" else np.float32
    ops = _cupy_ops(precision)
    X, W = cupy.zeros((0, 5), dtype), cupy.ones((5, 3), dtype)
    ops.matmul(X, W, cupy.empty((0, 3), dtype))
    A, dZ = cupy.zeros((0, 5), dtype), cupy.zeros((0, 3), dtype)
    dW = cupy.full((5, 3), 7.0, np.float32)
    ops.matmul(A.T, dZ, dW)
    np.testing.assert_array_equal(cupy.asnumpy(dW), np.zeros((5, 3), np.float32))


def test_tf32_is_used_and_does_not_leak():
    """A 1024^3 product in tf32 has TF32's error (about 1e-4 relative, float32's is about 1e-7), and
    CuPy's own matmul afterwards still computes in float32."""
    from gpunn.ops.cublas import CupyBlas

    if int(os.environ.get("CUPY_TF32", "0")) > 0:
        pytest.skip("CUPY_TF32 is set: CuPy's own products run in TF32 by request")
    rng = np.random.default_rng(6)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    want = a.astype(np.float64) @ b
    da, db = cupy.asarray(a), cupy.asarray(b)
    out = cupy.empty((1024, 1024), np.float32)
    CupyBlas().gemm(da, db, out, "tf32")
    err_tf32 = np.linalg.norm(_host(out) - want) / np.linalg.norm(want)
    model = gpunn.MLP([8, 16, 1], device="cuda", seed=0, precision="tf32")
    model.fit(np.ones((64, 8), np.float32), np.ones((64, 1), np.float32), epochs=1, verbose=False)
    err_cupy = np.linalg.norm(_host(cupy.matmul(da, db)) - want) / np.linalg.norm(want)
    assert err_tf32 > 2e-5, f"tf32 error {err_tf32:.2e}: cuBLAS did not use TF32 tensor cores"
    assert err_cupy < 1e-5, f"CuPy's matmul error {err_cupy:.2e} after a tf32 model: TF32 leaked"


def test_bf16_model_matches_the_numpy_emulation(monkeypatch):
    monkeypatch.setattr(gm, "_EMULATE_PRECISION_ON_CPU", True)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((512, 12)).astype(np.float32)
    Y = rng.standard_normal((512, 2)).astype(np.float32)
    for act in ("relu", "gelu", "tanh"):
        gpu = gpunn.MLP([12, 48, 40, 2], activation=act, device="cuda", seed=1, precision="bf16")
        cpu = gpunn.MLP([12, 48, 40, 2], activation=act, device="cpu", seed=1, precision="bf16")
        ref = gpunn.MLP([12, 48, 40, 2], activation=act, device="cpu", seed=1)
        loss_g, dW_g, db_g = gpu.loss_and_gradients(X, Y)
        loss_c, dW_c, db_c = cpu.loss_and_gradients(X, Y)
        loss_r, dW_r, db_r = ref.loss_and_gradients(X, Y)
        assert loss_g == pytest.approx(loss_c, rel=1e-3), act
        for g, c, r in zip(dW_g + db_g, dW_c + db_c, dW_r + db_r):
            g = cupy.asnumpy(g)
            assert g.dtype == np.float32
            # the emulation and the GPU differ only in summation order and rare rounding-boundary flips
            assert np.linalg.norm(g - c) <= 1e-2 * np.linalg.norm(c) + 1e-7, act
            assert np.linalg.norm(g - r) <= 5e-2 * np.linalg.norm(r) + 1e-7, act
