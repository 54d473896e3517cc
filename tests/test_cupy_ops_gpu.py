"""CupyOps' fused kernels on a GPU, each against the NumPy reference in float64.

Inputs are fresh random values (plus the activation edge cases); outputs are filled with NaN
beforehand so an element a kernel fails to write shows up. Sizes 1, 31, 1000 and 2**20 + 3
(more than one grid-stride pass), and a tiny grid cap to force many passes. Skipped without
CuPy or a CUDA device.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from gpunn.activations import ACTIVATIONS
from stand_in import is_stand_in
from torch_formulas import torch_adam, torch_sgd

try:
    import cupy

    _GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # not installed, or no driver / device
    cupy, _GPU = None, False

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _GPU, reason="needs CuPy and a CUDA device")]

# 2**20 + 3: several grid-stride passes on a GPU; under GPUNN_FAKE_CUPY=1 or gpu (tests/fakecupy) the kernels
# are NumPy references with no grid-stride loop to exercise, so the big size only costs CI time there.
SIZES = [1, 31, 1000] + ([] if os.environ.get("GPUNN_FAKE_CUPY") in ("1", "gpu") else [2**20 + 3])
DTYPES = [np.float32, np.float64]
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}
ACTS = list(ACTIVATIONS.values())
DT_IDS = ["float32", "float64"]


@pytest.fixture(params=[None, 3], ids=["grid", "3blocks"])
def ops(request):
    """Fused ops: as shipped ("grid"), and with 3 blocks (and bias_grad in 3 row chunks) to loop more."""
    from gpunn.ops.cuda import CupyOps

    o = CupyOps(fused=True)
    o.max_blocks = request.param
    o.bias_grad_chunks = request.param
    return o


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _values(rng, n, dtype, edge=True):
    """n values: normal x 3, a log-uniform spread and (edge) the activations' edge cases."""
    x = rng.standard_normal(n) * 3
    spread = rng.random(n) < 0.2
    x[spread] = rng.choice([-1, 1], spread.sum()) * 10.0 ** rng.uniform(-6, 2, spread.sum())
    if edge:
        special = np.array([0, 1e-30, -1e-30, 20, -20, 50, -50, 88, -88, 710, -710, 1e30, -1e30, np.inf, -np.inf, np.nan])
        k = min(n // 4, special.size)
        x[rng.choice(n, k, replace=False)] = special[:k]
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _ref(f, x):
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        f(np, x, out)
    return out


def _poisoned(shape, dtype):
    return cupy.full(shape, np.nan, dtype)


def _check(got, want, dtype, what, scale=None, k_rel=16, k_abs=8):
    """|got - want| <= k_rel eps |want| + k_abs eps scale; NaN where NaN, equal infs."""
    got = cupy.asnumpy(got).astype(np.float64).ravel()
    want = np.asarray(want, np.float64).ravel()
    scale = np.ones_like(want) if scale is None else np.broadcast_to(np.asarray(scale, np.float64).ravel(), want.shape)
    eps = EPS[dtype]
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    inf = np.isinf(got) | np.isinf(want)
    bad = (nan_g != nan_w) | (inf & ~nan_g & ~nan_w & (got != want))
    fin = ~(nan_g | nan_w | inf)
    with np.errstate(all="ignore"):
        tol = k_rel * eps * np.abs(want) + k_abs * eps * np.nan_to_num(scale, nan=1.0, posinf=1e308)
        bad |= fin & ~(np.abs(got - want) <= tol)
    if bad.any():
        i = np.flatnonzero(bad)[:6]
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} wrong; e.g. " +
                    "; ".join(f"[{j}] got {got[j]!r} want {want[j]!r}" for j in i))


# ---- forward ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
@pytest.mark.parametrize("rows,cols", [(1, 1), (31, 1), (1, 31), (1000, 7), (2**20 + 3, 3)])
def test_bias_activation(ops, act, dtype, rows, cols):
    rng = _rng("fwd", act.name, rows, cols)
    Z0 = _values(rng, rows * cols, dtype).reshape(rows, cols)
    b0 = (rng.standard_normal(cols)).astype(dtype)
    z = Z0.astype(np.float64) + b0.astype(np.float64)
    z_t = (Z0 + b0)  # Z + b rounded in dtype, as the kernel keeps it
    want = _ref(act.forward, z_t)
    scale = np.fmax(1.0, np.abs(z))
    # keep_z: Z <- Z + b, A separate (poisoned)
    Z, A = cupy.asarray(Z0), _poisoned((rows, cols), dtype)
    ops.bias_activation(Z, cupy.asarray(b0), act, A, keep_z=True)
    _check(A, want, dtype, f"{act.name} A", scale)
    np.testing.assert_array_equal(cupy.asnumpy(Z), z_t)
    # in place: A is Z
    Z = cupy.asarray(Z0)
    ops.bias_activation(Z, cupy.asarray(b0), act, Z, keep_z=False)
    _check(Z, want, dtype, f"{act.name} A in place", scale)
    # no bias, Z untouched when not kept
    Z, A = cupy.asarray(Z0), _poisoned((rows, cols), dtype)
    ops.bias_activation(Z, None, act, A, keep_z=False)
    _check(A, _ref(act.forward, Z0), dtype, f"{act.name} A without bias", np.fmax(1.0, np.abs(Z0.astype(np.float64))))
    np.testing.assert_array_equal(cupy.asnumpy(Z), Z0)


# ---- backward --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
@pytest.mark.parametrize("n", SIZES)
def test_activation_backward(ops, act, dtype, n):
    rng = _rng("bwd", act.name, n)
    z = _values(rng, n, dtype).reshape(-1, 1)
    dA0 = _values(rng, n, dtype, edge=False).reshape(-1, 1)
    scale = np.abs(dA0.astype(np.float64)) * np.fmax(1.0, np.abs(z.astype(np.float64)))
    sources = [(False, z, _ref(act.grad_from_input, z))]
    if act.grad_from_output is not None:
        a = _ref(act.forward, z).astype(dtype)
        sources.append((True, a, _ref(act.grad_from_output, a)))
    for from_output, src, grad in sources:
        want = dA0.astype(np.float64) * grad
        dZ = _poisoned(z.shape, dtype)
        ops.activation_backward(cupy.asarray(dA0), act, cupy.asarray(src), from_output, dZ)
        _check(dZ, want, dtype, f"{act.name} dZ (from_output={from_output})", scale)
        dA = cupy.asarray(dA0)  # in place, as the model calls it
        ops.activation_backward(dA, act, cupy.asarray(src), from_output, dA)
        _check(dA, want, dtype, f"{act.name} dZ in place (from_output={from_output})", scale)


# ---- loss and bias gradient ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (31, 1), (1000, 3), (2**20 + 3, 1)])
def test_loss_gradient_and_squared_error(ops, dtype, rows, cols):
    rng = _rng("mse", rows, cols)
    A0 = rng.standard_normal((rows, cols)).astype(dtype)
    Y0 = rng.standard_normal((rows, cols)).astype(dtype)
    diff = A0.astype(np.float64) - Y0.astype(np.float64)
    want_sum = float(np.sum(diff * diff))
    dA = _poisoned((rows, cols), dtype)
    s = ops.loss_gradient(cupy.asarray(A0), cupy.asarray(Y0), dA)
    assert isinstance(s, cupy.ndarray) and s.shape == ()
    _check(dA, 2.0 / rows * diff, dtype, "dA", k_rel=4, k_abs=0)
    rel = 4 * EPS[dtype] + 1e-12  # the diffs rounded to dtype; then double sums in any order
    assert float(s) == pytest.approx(want_sum, rel=rel)
    A, Y = cupy.asarray(A0), cupy.asarray(Y0)
    e = ops.squared_error(A, Y)
    assert float(e) == pytest.approx(want_sum, rel=rel)
    np.testing.assert_array_equal(cupy.asnumpy(A), A0)  # only read (the kernel's dA is null)
    np.testing.assert_array_equal(cupy.asnumpy(Y), Y0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (31, 1), (1000, 3), (2**20 + 3, 1)])
def test_weighted_loss_gradient_reads_y_and_its_weights_column(ops, dtype, rows, cols):
    """Training's Y carries each row's weight as its last column (gpunn.sample_weights), so the targets and the
    weights are views of it, whose rows are cols + 1 apart: weighted_mse_grad reads them so. Some weights are 0.
    Unit weights give the unweighted kernel's dA bit for bit, and its sum's terms (the same products: on a GPU, the
    same FMAs)."""
    rng = _rng("weighted mse", rows, cols)
    A0 = rng.standard_normal((rows, cols)).astype(dtype)
    w = rng.uniform(0.0, 3.0, rows)
    w[::5] = 0.0
    Y0 = np.concatenate([rng.standard_normal((rows, cols)), w[:, None]], axis=1).astype(dtype)
    diff, w64 = A0.astype(np.float64) - Y0[:, :cols].astype(np.float64), Y0[:, cols:].astype(np.float64)
    A, Y, dA = cupy.asarray(A0), cupy.asarray(Y0), _poisoned((rows, cols), dtype)
    s = ops.loss_gradient(A, Y[:, :cols], dA, weights=Y[:, cols])
    assert isinstance(s, cupy.ndarray) and s.shape == ()
    _check(dA, 2.0 / rows * w64 * diff, dtype, "dA", k_rel=4, k_abs=0)
    assert float(s) == pytest.approx(float(np.sum(w64 * diff * diff)), rel=4 * EPS[dtype] + 1e-12)
    Y[:, cols] = 1
    dA1, dA0, sums = _poisoned((rows, cols), dtype), _poisoned((rows, cols), dtype), cupy.zeros(2)
    ops.loss_gradient(A, Y[:, :cols], dA1, sums[0], weights=Y[:, cols])
    ops.loss_gradient(A, cupy.ascontiguousarray(Y[:, :cols]), dA0, sums[1])
    np.testing.assert_array_equal(cupy.asnumpy(dA1), cupy.asnumpy(dA0))
    # the same terms, summed in double per block; a GPU adds the blocks' sums by atomicAdd in the order they finish,
    # so two launches of several blocks agree to the last bits only (the H200, session 50: 6096.156619228275 against
    # 6096.1566192282735); the stand-in adds them in order, bit for bit
    if is_stand_in(cupy):
        assert float(sums[0]) == float(sums[1])
    else:
        assert float(sums[0]) == pytest.approx(float(sums[1]), rel=1e-13, abs=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("rows,cols", [(1, 1), (31, 1), (1, 31), (1000, 33), (2**20 + 3, 2), (64, 1000)])
def test_bias_gradient(ops, dtype, rows, cols):
    rng = _rng("db", rows, cols)
    dZ = rng.standard_normal((rows, cols)).astype(dtype)
    db = _poisoned((cols,), dtype)
    ops.bias_gradient(cupy.asarray(dZ), db)
    want = dZ.astype(np.float64).sum(axis=0)
    sum_abs = np.abs(dZ.astype(np.float64)).sum(axis=0)
    # double accumulation, one rounding to dtype at the end
    _check(db, want, dtype, "db", scale=sum_abs * (1e-12 / EPS[dtype]), k_rel=2, k_abs=1)


# ---- optimizers ------------------------------------------------------------------------

def _params(rng, n, dtype):
    w = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(dtype)
    grads = [(rng.standard_normal(n) * 10.0 ** rng.uniform(-5, 1, n)).astype(dtype) for _ in range(3)]
    return w, grads


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.0, False, 1e-2), (0.9, False, 0.0),
                                                 (0.9, True, 1e-3)])
@pytest.mark.parametrize("n", SIZES)
def test_sgd_step(ops, dtype, momentum, nesterov, wd, n):
    rng = _rng("sgd", momentum, nesterov, wd, n)
    w0, grads = _params(rng, n, dtype)
    w = cupy.asarray(w0)
    vel = cupy.zeros(n, dtype) if momentum else None
    rw, rbuf, lr = w0.astype(np.float64), np.zeros(n), 0.05
    scale = np.abs(rw)
    for g in grads:
        ops.sgd_step(w, cupy.asarray(g), vel, lr, momentum, nesterov, wd)
        new, rbuf = torch_sgd(rw, g.astype(np.float64), rbuf, lr, momentum, wd, nesterov)
        scale, rw = scale + np.abs(new - rw), new
        _check(w, rw, dtype, "w", scale, k_rel=0, k_abs=32)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (1e-2, False), (1e-2, True)])
@pytest.mark.parametrize("n", SIZES)
def test_adam_step(ops, dtype, wd, decoupled, n):
    rng = _rng("adam", wd, decoupled, n)
    w0, grads = _params(rng, n, dtype)
    w, m, v = cupy.asarray(w0), cupy.zeros(n, dtype), cupy.zeros(n, dtype)
    rw, rm, rv = w0.astype(np.float64), np.zeros(n), np.zeros(n)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    scale, scale_m, scale_v = np.abs(rw), np.zeros(n), np.zeros(n)
    for t, g in enumerate(grads, start=1):
        ops.adam_step(w, cupy.asarray(g), m, v, lr, b1, b2, eps, t, wd, decoupled)
        g64 = g.astype(np.float64)
        geff = np.abs(g64) + (0 if decoupled else wd * scale)  # scale: |w| and its error
        scale_m = b1 * scale_m + (1 - b1) * geff
        scale_v = b2 * scale_v + (1 - b2) * geff**2
        new, rm, rv = torch_adam(rw, g64, rm, rv, t, lr, b1, b2, eps, wd, decoupled)
        # The step is ill-conditioned where sqrt(v_hat) ~ eps (coupled L2 makes g + wd*w cancel
        # there): errors eps*scale_m in m and eps*sqrt(scale_v) in sqrt(v) move w by lr/bc1 times
        # (scale_m + |m| sqrt(scale_v/bc2) / denom) / denom, times eps.
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        denom = np.sqrt(rv / bc2) + eps
        cond = lr / bc1 * (scale_m + np.abs(rm) * np.sqrt(scale_v / bc2) / denom) / denom
        scale, rw = scale + np.abs(new - rw) + lr * wd * np.abs(rw) + cond, new  # errors stay in w
        _check(w, rw, dtype, f"w at step {t}", scale, k_rel=0, k_abs=32)
        _check(m, rm, dtype, f"m at step {t}", scale_m, k_rel=0, k_abs=32)  # m cancels: scale by |g|
        _check(v, rv, dtype, f"v at step {t}", scale_v, k_rel=0, k_abs=32)  # (g + wd*w)^2 cancels too


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam", "adamw"])
def test_optimizers_match_torch(name):
    """Where PyTorch is installed: the kernels' steps equal torch.optim's, float32, to rounding."""
    torch = pytest.importorskip("torch")
    from gpunn.ops.cuda import CupyOps

    ops = CupyOps()
    rng = np.random.default_rng(5)
    w0, grads = _params(rng, 4099, np.float32)
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float32))
    kw = dict(lr=1e-2, weight_decay=1e-2)
    opt = {"sgd": lambda: torch.optim.SGD([p], momentum=0.9, **kw),
           "nesterov": lambda: torch.optim.SGD([p], momentum=0.9, nesterov=True, **kw),
           "adam": lambda: torch.optim.Adam([p], **kw),
           "adamw": lambda: torch.optim.AdamW([p], **kw)}[name]()
    w = cupy.asarray(w0)
    state = [cupy.zeros_like(w), cupy.zeros_like(w)]
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor(g)
        opt.step()
        if name in ("sgd", "nesterov"):
            ops.sgd_step(w, cupy.asarray(g), state[0], 1e-2, 0.9, name == "nesterov", 1e-2)
        else:
            ops.adam_step(w, cupy.asarray(g), state[0], state[1], 1e-2, 0.9, 0.999, 1e-8, t, 1e-2, name == "adamw")
    np.testing.assert_allclose(cupy.asnumpy(w), p.detach().numpy(), rtol=2e-6, atol=1e-6)


# ---- dispatch --------------------------------------------------------------------------

def test_unfused_and_other_dtypes_use_the_generic_code():
    from gpunn.ops.cuda import CupyOps

    dZ = cupy.asarray(np.arange(12, dtype=np.float16).reshape(4, 3))
    db = cupy.empty(3, np.float16)
    CupyOps().bias_gradient(dZ, db)  # float16: no kernel
    np.testing.assert_array_equal(cupy.asnumpy(db), np.array([18, 22, 26], np.float16))
    Z = cupy.asarray(np.linspace(-3, 3, 12).reshape(4, 3))
    A_fused, A_plain = cupy.empty_like(Z), cupy.empty_like(Z)
    CupyOps(fused=True).bias_activation(Z.copy(), None, ACTIVATIONS["gelu"], A_fused, keep_z=False)
    CupyOps(fused=False).bias_activation(Z.copy(), None, ACTIVATIONS["gelu"], A_plain, keep_z=False)
    np.testing.assert_allclose(cupy.asnumpy(A_fused), cupy.asnumpy(A_plain), rtol=1e-12, atol=1e-14)
    Zs = Z[:, ::2]  # strided: falls back instead of reading the wrong elements
    A = cupy.empty(Zs.shape)
    CupyOps().bias_activation(Zs, None, ACTIVATIONS["tanh"], A, keep_z=False)
    np.testing.assert_allclose(cupy.asnumpy(A), np.tanh(cupy.asnumpy(Zs)), rtol=1e-14)
