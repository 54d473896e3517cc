"""The per-element math of kernels/activations.cuh and kernels/optimizers.cuh, checked on the CPU.

The headers are compiled as plain C++ (g++ -O2, no -ffast-math) into a shared library
(tests/kernel_harness/harness.cpp) and compared, element for element, with the NumPy
reference: gpunn/activations.py for the activations (evaluated in float64 on the same inputs)
and a NumPy transcription of torch.optim.SGD / Adam / AdamW for the optimizers. The grid
covers zeros, denormals, saturation (+-20 .. +-1e30, where exp overflows), +-inf and NaN.

What this cannot see: the device's own libm and -ftz=true (CuPy's default) flushing float
denormals; tests/test_cupy_ops_gpu.py covers the kernels on a GPU.
"""
from __future__ import annotations

import ctypes
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpunn.activations import ACTIVATIONS, GELU_C, GELU_K, GELU_SATURATION
from host_library import build_host_library
from torch_formulas import torch_adam, torch_sgd

HARNESS = Path(__file__).resolve().parent / "kernel_harness" / "harness.cpp"

EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}
FN_FORWARD, FN_GRAD_INPUT, FN_GRAD_OUTPUT = 0, 1, 2
# Piecewise-linear activations: g'(NaN) is the value of the z <= 0 branch (comparisons with NaN are false).
GRAD_OF_NAN = {"identity": 1.0, "relu": 0.0, "leaky_relu": 0.01}


@pytest.fixture(scope="session")
def harness(tmp_path_factory):
    _, h = build_host_library(tmp_path_factory, HARNESS, "harness", ["-O2", "-Wall", "-Wextra", "-Werror"],
                              "the host math harness")
    for suffix, ct in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        ptr = ctypes.POINTER(ct)
        getattr(h, f"act_{suffix}").argtypes = [ctypes.c_int, ctypes.c_int, ptr, ptr, ctypes.c_longlong]
        getattr(h, f"act_{suffix}").restype = ctypes.c_int
        getattr(h, f"sgd_{suffix}").argtypes = [ptr, ptr, ptr, ct, ct, ct, ctypes.c_int, ctypes.c_longlong]
        getattr(h, f"adam_{suffix}").argtypes = [ptr] * 4 + [ct] * 7 + [ctypes.c_int, ctypes.c_longlong]
        dptr, ll = ctypes.POINTER(ctypes.c_double), ctypes.c_longlong
        getattr(h, f"member_sgd_{suffix}").argtypes = [ptr, ptr, ptr, dptr, ctypes.c_int, ll, ll]
        getattr(h, f"member_adam_{suffix}").argtypes = [ptr] * 4 + [dptr, ct, ctypes.c_double, ctypes.c_int, ll, ll]
        getattr(h, f"member_clip_{suffix}").argtypes = [ptr, dptr, dptr, ll, ll]
    h.bias_correction.argtypes, h.bias_correction.restype = [ctypes.c_double, ctypes.c_double], ctypes.c_double
    h.clip_factor_of.argtypes, h.clip_factor_of.restype = [ctypes.c_double, ctypes.c_double], ctypes.c_double
    h.clip_value_f32.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_float, ctypes.c_longlong]
    h.clip_value_f64.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_double, ctypes.c_longlong]
    u16 = ctypes.POINTER(ctypes.c_uint16)
    h.act_bf16.argtypes = [ctypes.c_int, ctypes.c_int, u16, u16, ctypes.c_longlong]
    h.act_bf16.restype = ctypes.c_int
    h.bf16_from_float.argtypes = [ctypes.POINTER(ctypes.c_float), u16, ctypes.c_longlong]
    h.bf16_to_float_array.argtypes = [u16, ctypes.POINTER(ctypes.c_float), ctypes.c_longlong]
    ll = ctypes.c_longlong
    h.member_bias_act_bf16.argtypes = [ctypes.c_int, u16, u16, ll, u16, u16, ll, ll, ll]
    h.member_bias_act_bf16.restype = ctypes.c_int
    h.member_bias_grad_bf16.argtypes = [u16, ctypes.POINTER(ctypes.c_float), ll, ll, ll, ll]
    return h


def _ptr(a, dtype):
    if a is None:
        return None
    assert a.dtype == dtype and a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double))


def _suffix(dtype):
    return "f32" if dtype == np.float32 else "f64"


def header_act(h, dtype, act, fn, x):
    x = np.ascontiguousarray(x, dtype=dtype)
    out = np.full_like(x, np.nan)
    rc = getattr(h, f"act_{_suffix(dtype)}")(act.kernel_id, fn, _ptr(x, dtype), _ptr(out, dtype), x.size)
    assert rc == 0, f"harness returned {rc} for {act.name} fn {fn}"
    return out


def reference_act(act, fn, x):
    """The NumPy reference in float64 on the (already rounded) inputs."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    f = (act.forward, act.grad_from_input, act.grad_from_output)[fn]
    with np.errstate(all="ignore"):
        f(np, x, out)
    return out


def grid(dtype):
    """Edge cases and a few hundred random values across scales, rounded to dtype."""
    tiny = [1e-30, 1e-40, 1e-45] if dtype == np.float32 else [1e-30, 1e-310, 5e-324]
    huge = [3e38] if dtype == np.float32 else [1e300, 1.7e308]
    mags = [0.0, *tiny, 1e-8, 0.5, 1, 3, 8, 17, 19.9, 20, 20.1, 37, 50, 88, 89, 100, 709, 710, 711, 1e4, 1e15, 1e30,
            *huge, np.inf]
    rng = np.random.default_rng(20240611)
    random = np.concatenate([
        rng.uniform(-30, 30, 200),
        rng.choice([-1, 1], 300) * 10.0 ** rng.uniform(-8, 3, 300),
    ])
    with np.errstate(over="ignore"):
        values = np.concatenate([mags, np.negative(mags), [np.nan], random]).astype(dtype)
    return values


def assert_close(got, want, x, dtype, what, k_rel=8, k_abs=4):
    """|got - want| <= k_rel eps |want| + k_abs eps max(1, |x|); NaN exactly where NaN, infs equal.

    The absolute term is the rounding of a cancelling sum such as 1 + tanh(z) near z = -3
    (gelu), whose size grows with |z|.
    """
    eps = EPS[dtype]
    got = got.astype(np.float64)
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    bad = nan_got != nan_want
    inf = np.isinf(want) | np.isinf(got)
    bad |= inf & (got != want)
    fin = ~(nan_got | nan_want | inf)
    with np.errstate(over="ignore", invalid="ignore"):
        tol = k_rel * eps * np.abs(want) + k_abs * eps * np.fmax(1.0, np.abs(x.astype(np.float64)))
        bad |= fin & ~(np.abs(got - want) <= tol)
    if bad.any():
        idx = np.flatnonzero(bad)[:8]
        rows = "\n".join(f"  x={x[i]!r}: got {got[i]!r}, want {want[i]!r}" for i in idx)
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} differ\n{rows}")


DTYPES = [np.float32, np.float64]
ACTS = list(ACTIVATIONS.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_forward_and_grad_from_input(harness, act, dtype):
    z = grid(dtype)
    for fn, label in ((FN_FORWARD, "g(z)"), (FN_GRAD_INPUT, "g'(z)")):
        assert_close(header_act(harness, dtype, act, fn, z), reference_act(act, fn, z), z, dtype,
                     f"{act.name} {label} {np.dtype(dtype)}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("act", [a for a in ACTS if a.grad_from_output], ids=lambda a: a.name)
def test_grad_from_output(harness, act, dtype):
    z = grid(dtype)
    a = reference_act(act, FN_FORWARD, z).astype(dtype)  # the outputs the forward pass would keep
    got = header_act(harness, dtype, act, FN_GRAD_OUTPUT, a)
    assert_close(got, reference_act(act, FN_GRAD_OUTPUT, a), a, dtype, f"{act.name} g'(a) {np.dtype(dtype)}")
    # and it is g'(z): the same derivative as from the input (up to the rounding of a)
    want = reference_act(act, FN_GRAD_INPUT, z)
    assert_close(got, want, z, dtype, f"{act.name} g'(a) vs g'(z) {np.dtype(dtype)}", k_rel=16, k_abs=16)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["identity", "relu", "leaky_relu"])
def test_the_piecewise_linear_ones_are_the_references_very_bits(harness, name, dtype):
    """g and g' of identity, relu and leaky_relu take one rounding at most (z * 0.01 in the dtype), so the header and
    the reference run in the same dtype agree bit for bit, not only to the ulps the tests above allow. (A reference
    of z / 100 for z * 0.01, an ulp off at some z, passed them.)"""
    act, z = ACTIVATIONS[name], grid(dtype)
    for fn, reference in ((FN_FORWARD, act.forward), (FN_GRAD_INPUT, act.grad_from_input),
                          (FN_GRAD_OUTPUT, act.grad_from_output)):
        want = np.empty_like(z)
        with np.errstate(all="ignore"):
            reference(np, z, want)
        np.testing.assert_array_equal(header_act(harness, dtype, act, fn, z), want, err_msg=f"{name} fn {fn}")

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_edge_semantics(harness, act, dtype):
    """g(NaN) = NaN; g'(NaN) = NaN but for the piecewise-linear ones; nothing else is NaN."""
    nan = np.array([np.nan], dtype)
    fns = [FN_GRAD_INPUT] + ([FN_GRAD_OUTPUT] if act.grad_from_output else [])
    for impl in ("header", "reference"):
        run = (lambda fn, x: header_act(harness, dtype, act, fn, x)) if impl == "header" else \
              (lambda fn, x: reference_act(act, fn, x))
        assert np.isnan(run(FN_FORWARD, nan)[0]), f"{impl} {act.name}(NaN)"
        for fn in fns:
            got = run(fn, nan)[0]
            want = GRAD_OF_NAN.get(act.name, np.nan)
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want), f"{impl} {act.name}' (NaN) = {got}"
        z = grid(dtype)
        z = z[~np.isnan(z)]
        for fn in [FN_FORWARD] + fns:
            x = z if fn != FN_GRAD_OUTPUT else reference_act(act, FN_FORWARD, z).astype(dtype)
            out = run(fn, x)
            assert not np.isnan(out).any(), f"{impl} {act.name} fn {fn} gives NaN at {x[np.isnan(out)]}"


@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_reference_in_float32_is_nan_free(act):
    """The NumPy reference is also the CPU implementation: in float32 too, no NaN from overflow."""
    z = grid(np.float32)
    z = z[~np.isnan(z)]
    fns = [act.forward, act.grad_from_input] + ([act.grad_from_output] if act.grad_from_output else [])
    for f in fns:
        out = np.empty_like(z)
        with np.errstate(all="ignore"):
            f(np, z, out)
        assert out.dtype == np.float32 and not np.isnan(out).any(), f"{act.name} {f.__name__}"



@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_the_reference_warns_of_nothing_at_saturation_or_inf(act, dtype):
    """The reference is the CPU's implementation: where its math overflows on purpose (gelu's z**3 past 1e102, the
    -inf * 0 a where() then settles), a NumPy RuntimeWarning would reach the user's console; over the grid, +-inf
    included, none is given (mut12m's A21: gelu's _quiet without invalid='ignore' warned at z = -inf)."""
    z = grid(dtype)
    z = z[~np.isnan(z)]
    calls = [(act.forward, z), (act.grad_from_input, z)]
    if act.grad_from_output:
        calls.append((act.grad_from_output, reference_act(act, FN_FORWARD, z).astype(dtype)))
    for f, x in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            f(np, x, np.empty_like(x))


@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_the_reference_leaves_numpys_error_settings_as_it_found_them(act):
    """Where the reference lets exp or z**3 overflow on purpose it silences NumPy for that call alone (_quiet): the
    user's own settings (np.seterr, np.errstate) hold again as each function returns, whatever they were. Not put
    back, a user's over='raise' or 'warn' would be 'ignore' for the rest of the process after one fit."""
    z = grid(np.float64)
    calls = [(act.forward, z), (act.grad_from_input, z)]
    if act.grad_from_output:
        calls.append((act.grad_from_output, reference_act(act, FN_FORWARD, z)))
    for settings in (dict(all="warn"), dict(all="raise", under="ignore")):
        with np.errstate(**settings):
            before = np.geterr()
            for f, x in calls:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        f(np, x, np.empty_like(x))
                    except FloatingPointError:  # (where the user asked for that: a settings check, not a math one)
                        pass
                assert np.geterr() == before, (f.__name__, settings)



def _tail_reference(name, fn, z):
    """g (fn 0) or g'(z) (fn 1) in extended precision (np.longdouble), by textbook formulas that cancel nowhere for
    2 <= |z| <= 100 and that the implementations do not share (e^x stays finite there: e^800 is 1e347)."""
    z = z.astype(np.longdouble)
    one = np.longdouble(1)
    sig = lambda x: one / (one + np.exp(-x))
    if name == "sigmoid":
        return sig(z) if fn == 0 else sig(z) * sig(-z)
    if name == "tanh":
        return np.tanh(z) if fn == 0 else one / np.cosh(z) ** 2
    if name == "softplus":
        return np.log1p(np.exp(z)) if fn == 0 else sig(z)
    if name == "silu":
        return z * sig(z) if fn == 0 else sig(z) * (one + z * sig(-z))
    if name == "elu":
        return np.where(z > 0, z if fn == 0 else one, np.expm1(z) if fn == 0 else np.exp(z))
    # gelu: 0.5 z (1 + tanh u) = z sigmoid(2u); 1 - tanh(u)^2 = 4 sigmoid(2u) sigmoid(-2u)
    c, k = np.sqrt(np.longdouble(2) / np.pi), np.longdouble("0.044715")
    v = 2 * c * (z + k * z ** 3)
    return z * sig(v) if fn == 0 else sig(v) * (one + 2 * z * sig(-v) * c * (one + 3 * k * z * z))


TAIL_ACTS = ["sigmoid", "tanh", "softplus", "gelu", "silu", "elu"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", TAIL_ACTS)
def test_g_and_g_prime_keep_their_relative_accuracy_in_the_tails(harness, name, dtype):
    """For 2 <= |z| <= 100, where outputs such as silu(-60) = -5e-25 or tanh'(40) = 7e-35 are tiny, the header and
    the NumPy reference are within 8 ulps of the true value relative to that value (not to 1, as assert_close
    allows): no 1 - sigmoid, 1 + tanh or 1 - tanh^2 cancelling to 0 or to an ulp of 1. GELU's e^2u amplifies the
    rounding of its argument 2u = 2 sqrt(2/pi) (z + 0.044715 z^3) by |2u| (up to 900 at z = -21): that much more
    is allowed there. The sigmoid's g too: 1 / (1 + e^-z), as the seed writes it (0.5 (1 + tanh(z/2)) until
    2026-12 was 0 from z = -18 in float32). Where that exponential (e^-|z|, e^-2|z| for tanh, e^-|2u|) or the output is below the dtype's
    smallest normal (no -ftz here; the GPU flushes those) only the size is checked."""
    if dtype == np.float64 and np.finfo(np.longdouble).nmant < 60:
        pytest.skip("np.longdouble is no wider than float64 here: no reference for float64's last digits")
    act, eps, tiny = ACTIVATIONS[name], EPS[dtype], float(np.finfo(dtype).tiny)
    mags = np.concatenate([np.linspace(2, 100, 785), np.random.default_rng(32).uniform(2, 100, 400)])
    z = np.concatenate([mags, -mags]).astype(dtype)
    amplification, exponent = 1.0, np.abs(z.astype(np.float64)) * (2 if name == "tanh" else 1)
    if name == "gelu":
        z = z[np.abs(z) <= GELU_SATURATION]
        exponent = np.abs(2 * GELU_C * (z + GELU_K * z.astype(np.float64) ** 3))
        amplification = 1 + exponent
    for fn in (FN_FORWARD, FN_GRAD_INPUT):
        want = _tail_reference(name, fn, z).astype(np.float64)
        for impl, got in (("header", header_act(harness, dtype, act, fn, z)),
                          ("reference", _apply(act, fn, z))):
            got = got.astype(np.float64)
            normal = (np.abs(want) >= tiny) & (exponent < -np.log(tiny))
            ulps = np.abs(got - want) / (eps * np.abs(want) + (~normal))
            bad = (normal & ~(ulps <= 8 * amplification)) | (~normal & ~(np.abs(got) <= 2 * np.abs(want) + 2 * tiny))
            if bad.any():
                rows = "\n".join(f"  z={z[i]!r}: got {got[i]!r}, want {want[i]!r} ({ulps[i]:.3g} ulps)"
                                  for i in np.flatnonzero(bad)[:8])
                pytest.fail(f"{impl} {name} fn {fn} {np.dtype(dtype)}: {bad.sum()} of {z.size} off\n{rows}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_gelu_is_cut_to_max_z_0_only_where_its_formula_rounds_to_that(dtype):
    """Past GELU_SATURATION the reference takes g = max(z, 0) and g' = [z > 0] as they are: that is the formula's
    value to the last bit only where e^2u has sunk under half the smallest subnormal. At -22 it has (g is -1e-344);
    cut at -10, g(-15) would be 0 for a float64 -1.6e-114, and the tail test above, which stops at the cut, would not
    see it."""
    z = np.array([-GELU_SATURATION, GELU_SATURATION], dtype)
    for fn, cut in ((FN_FORWARD, np.maximum(z, 0)), (FN_GRAD_INPUT, (z > 0).astype(dtype))):
        assert np.array_equal(_tail_reference("gelu", fn, z).astype(dtype), cut), (fn, GELU_SATURATION)


def _apply(act, fn, x):
    """The NumPy reference run in x's own dtype, as the CPU runs it."""
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        (act.forward, act.grad_from_input)[fn](np, x, out)
    return out


# ---- optimizers --------------------------------------------------------------------------------

def _random_params(rng, dtype, n=100_003):
    scale = 10.0 ** rng.uniform(-4, 1, n)
    w = (rng.standard_normal(n) * scale).astype(dtype)
    grads = [(rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 1, n)).astype(dtype) for _ in range(4)]
    grads[0][:5] = 0  # zero gradients too
    return w, grads


def _check_state(got, want, scale, dtype, what, k=32):
    err = np.abs(got.astype(np.float64) - want)
    tol = k * EPS[dtype] * scale + np.finfo(dtype).tiny
    bad = ~(err <= tol)
    if bad.any():
        rows = "; ".join(f"[{i}] got {got[i]!r} want {want[i]!r} (tol {tol[i]:.3g})" for i in np.flatnonzero(bad)[:4])
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} differ: {rows}")


SGD_CASES = [(0.0, False, 0.0), (0.0, False, 1e-2), (0.9, False, 0.0), (0.9, True, 0.0), (0.9, True, 1e-3),
             (0.5, False, 5e-4)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CASES)
def test_sgd_update(harness, dtype, momentum, nesterov, weight_decay):
    rng = np.random.default_rng(7)
    w, grads = _random_params(rng, dtype)
    vel = np.zeros_like(w) if momentum else None
    rw, rbuf = w.astype(np.float64), np.zeros(w.size)
    scale_w, scale_v = np.abs(rw), np.zeros(w.size)
    lr = 0.05
    f = getattr(harness, f"sgd_{_suffix(dtype)}")
    for g in grads:
        f(_ptr(w, dtype), _ptr(g, dtype), _ptr(vel, dtype), dtype(lr), dtype(momentum), dtype(weight_decay),
          int(nesterov), w.size)
        new_w, rbuf = torch_sgd(rw, g.astype(np.float64), rbuf, lr, momentum, weight_decay, nesterov)
        scale_w += np.abs(new_w - rw)  # the rounding error grows with the updates' sizes
        scale_v = momentum * scale_v + np.abs(g) + weight_decay * np.abs(rw)
        rw = new_w
        _check_state(w, rw, scale_w, dtype, "w")
        if vel is not None:
            _check_state(vel, rbuf, scale_v, dtype, "velocity")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_sgd_update_without_weight_decay_keeps_an_infinite_weight_infinite(harness, dtype):
    """torch.optim.SGD adds weight_decay * w only when weight_decay != 0: a diverged (infinite) weight then
    stays +-inf and a finite one is untouched by 0 * w, never NaN from 0 * inf."""
    w = np.array([np.inf, -np.inf, 1.0], dtype)
    g = np.array([1.0, 1.0, 1.0], dtype)
    getattr(harness, f"sgd_{_suffix(dtype)}")(_ptr(w, dtype), _ptr(g, dtype), None, dtype(0.1), dtype(0.0),
                                            dtype(0.0), 0, w.size)
    np.testing.assert_array_equal(w, np.array([np.inf, -np.inf, 0.9], dtype))


ADAM_CASES = [(0.0, False), (1e-2, False), (1e-2, True), (0.0, True)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("weight_decay,decoupled", ADAM_CASES)
def test_adam_update(harness, dtype, weight_decay, decoupled):
    rng = np.random.default_rng(11)
    w, grads = _random_params(rng, dtype)
    m, v = np.zeros_like(w), np.zeros_like(w)
    rw, rm, rv = w.astype(np.float64), np.zeros(w.size), np.zeros(w.size)
    scale_w, scale_m, scale_v = np.abs(rw), np.zeros(w.size), np.zeros(w.size)
    lr, beta1, beta2, eps = 1e-3, 0.9, 0.999, 1e-8
    f = getattr(harness, f"adam_{_suffix(dtype)}")
    for t, g in enumerate(grads, start=1):
        bc1, bc2 = 1 - beta1**t, 1 - beta2**t
        f(_ptr(w, dtype), _ptr(g, dtype), _ptr(m, dtype), _ptr(v, dtype), *map(dtype, (
            lr, 1 - beta1, 1 - beta2, eps, bc1, bc2, weight_decay)), int(decoupled), w.size)
        g64 = g.astype(np.float64)
        geff = np.abs(g64) + (0 if decoupled else weight_decay * scale_w)  # scale_w: |w| and its error
        new_w, rm, rv = torch_adam(rw, g64, rm, rv, t, lr, beta1, beta2, eps, weight_decay, decoupled)
        scale_w_step = np.abs(new_w - rw) + lr * weight_decay * np.abs(rw)
        scale_m = beta1 * scale_m + (1 - beta1) * geff
        scale_v = beta2 * scale_v + (1 - beta2) * geff**2
        # The step is ill-conditioned where sqrt(v_hat) ~ eps (coupled L2 makes g + wd*w cancel
        # there): errors eps*scale_m in m and eps*sqrt(scale_v) in sqrt(v) move w by lr/bc1 times
        # (scale_m + |m| sqrt(scale_v/bc2) / denom) / denom, times eps.
        denom = np.sqrt(rv / bc2) + eps
        cond = lr / bc1 * (scale_m + np.abs(rm) * np.sqrt(scale_v / bc2) / denom) / denom
        scale_w += scale_w_step + cond  # an error made at one step stays in w
        rw = new_w
        _check_state(w, rw, scale_w, dtype, f"w at step {t}")
        _check_state(m, rm, scale_m, dtype, f"m at step {t}")
        _check_state(v, rv, scale_v, dtype, f"v at step {t}")


def test_the_kernels_bias_correction_is_one_minus_pythons_pow_at_every_step(harness):
    """adam_bias_correction (optimizers.cuh), the one rule of every kernel that forms Adam's 1 - beta^t (adam_step,
    optimizer_tick, member_bias_corrections), is 1 - pow(beta, t) in double: on the host, where pow is the C
    library's, exactly Python's 1 - beta**t, as the CPU's Adam takes it. Steps 1..3000 cover steps where NumPy's
    array power was an ulp off Python's (0.999 first at t = 7, 0.9 at t = 12, on the AMD EPYC) and where a running
    product beta^(t-1) * beta is (checked here), which the rule is not."""
    betas = (0.9, 0.99, 0.999, 0.9999, 0.5, 0.0)
    running = dict.fromkeys(betas, 1.0)
    product_differs = set()
    for t in range(1, 3001):
        for beta in betas:
            running[beta] *= beta
            if running[beta] != beta**t:
                product_differs.add(beta)
            assert harness.bias_correction(beta, float(t)) == 1.0 - beta**t, (beta, t)
    assert {0.9, 0.999} <= product_differs


# ---- bfloat16 (kernels/bfloat16.cuh) against ml_dtypes ---------------------------------------------

def _u16(a):
    assert a.dtype == np.uint16 and a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16))


def _f32(a):
    assert a.dtype == np.float32 and a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


@pytest.fixture(scope="module")
def bfloat16():
    return pytest.importorskip("ml_dtypes").bfloat16


def test_bf16_widening_is_exact_for_every_bit_pattern(harness, bfloat16):
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = np.empty(bits.size, np.float32)
    harness.bf16_to_float_array(_u16(bits), _f32(got), bits.size)
    want = bits.view(bfloat16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))  # -0 and denormals too


def test_bf16_rounding_matches_ml_dtypes(harness, bfloat16):
    """float -> bf16 rounds to nearest, ties to even, exactly as ml_dtypes (so as cuBLAS and torch)."""
    rng = np.random.default_rng(3)
    random_bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    # every tie and its neighbours (low 16 bits 0x7fff, 0x8000, 0x8001) around odd and even mantissas
    base = rng.integers(0, 1 << 16, 4096, dtype=np.uint64).astype(np.uint32) << 16
    ties = (base[:, None] | np.array([0x7FFF, 0x8000, 0x8001], np.uint32)).ravel()
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, 1.17549435e-38,
                      3.4028235e38, -3.4028235e38, 3.3961776e38, 3.3961775e38, 1.0, 1.00390625, 1.01171875],
                     np.float32)
    x = np.concatenate([random_bits.view(np.float32), ties.view(np.float32), edges])
    got = np.empty(x.size, np.uint16)
    harness.bf16_from_float(_f32(x), _u16(got), x.size)
    with np.errstate(invalid="ignore"):  # NaN inputs
        want = x.astype(bfloat16).view(np.uint16)
    nan = np.isnan(x)
    assert np.isnan(got[nan].view(bfloat16).astype(np.float32)).all()
    bad = np.flatnonzero(got[~nan] != want[~nan])
    assert bad.size == 0, [(float(x[~nan][i]), hex(got[~nan][i]), hex(want[~nan][i])) for i in bad[:5]]


def header_act_bf16(h, act, fn, x_bits):
    out = np.zeros_like(x_bits)
    rc = h.act_bf16(act.kernel_id, fn, _u16(x_bits), _u16(out), x_bits.size)
    assert rc == 0, f"harness returned {rc} for {act.name} fn {fn}"
    return out


@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_bf16_activation_math(harness, bfloat16, act):
    """The bf16 kernels' per-element path (widen, float math, round) against the float64 reference on
    the same bf16 inputs, rounded to bf16 by ml_dtypes: within one bf16 ulp (plus the float math's own
    error where a sum cancels); NaN exactly where NaN, infinities equal."""
    x = grid(np.float32).astype(bfloat16)
    fns = [FN_FORWARD, FN_GRAD_INPUT] + ([FN_GRAD_OUTPUT] if act.grad_from_output else [])
    for fn in fns:
        inputs = x if fn != FN_GRAD_OUTPUT else reference_act(act, FN_FORWARD, x.astype(np.float64)).astype(bfloat16)
        got = header_act_bf16(harness, act, fn, inputs.view(np.uint16)).view(bfloat16).astype(np.float64)
        with np.errstate(all="ignore"):
            want = reference_act(act, fn, inputs.astype(np.float64)).astype(bfloat16).astype(np.float64)
        xf = inputs.astype(np.float64)
        nan_got, nan_want = np.isnan(got), np.isnan(want)
        bad = nan_got != nan_want
        inf = np.isinf(got) | np.isinf(want)
        bad |= inf & (got != want)
        fin = ~(nan_got | nan_want | inf)
        with np.errstate(over="ignore", invalid="ignore"):
            tol = 2.0**-7 * np.abs(want) + 8 * EPS[np.float32] * np.fmax(1.0, np.abs(xf))
            bad |= fin & ~(np.abs(got - want) <= tol)
        assert not bad.any(), (f"{act.name} fn {fn}: " + "; ".join(
            f"x={xf[i]!r} got {got[i]!r} want {want[i]!r}" for i in np.flatnonzero(bad)[:6]))
# ---- the ensemble's per-member settings (kernels/ensemble.cuh) --------------------------------

MEMBER_TABLE = np.array([  # lr, weight decay, momentum, beta1, beta2, active, clip_norm, clip_value
    [1e-3, 0.0, 0.9, 0.9, 0.999, 1, 0.5, 0],
    [3e-2, 1e-2, 0.0, 0.8, 0.99, 1, 0, 0.25],
    [0.1, 1e-3, 0.5, 0.5, 0.9, 0, 0.5, 0],  # frozen
    [7e-3, 5e-4, 0.99, 0.95, 0.9999, 1, 0, 0],
])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("decoupled", [False, True])
def test_member_adam_decodes_each_row_as_one_model_passes_its_settings(harness, dtype, decoupled):
    """Member k's step equals adam_update with the arguments gpunn.ops.cuda passes one model: each
    value rounded once to T, 1 - beta and 1 - beta^t in double (bit for bit); frozen rows untouched."""
    rng = np.random.default_rng(5)
    K, P = MEMBER_TABLE.shape[0], 1001
    w = rng.standard_normal(K * P).astype(dtype)
    m, v = np.zeros_like(w), np.zeros_like(w)
    ref = [w.copy(), m.copy(), v.copy()]
    table = np.ascontiguousarray(MEMBER_TABLE)
    member = getattr(harness, f"member_adam_{_suffix(dtype)}")
    single = getattr(harness, f"adam_{_suffix(dtype)}")
    for step in (1, 2, 3):
        g = rng.standard_normal(K * P).astype(dtype)
        member(_ptr(w, dtype), _ptr(g, dtype), _ptr(m, dtype), _ptr(v, dtype),
               table.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), dtype(1e-8), float(step), int(decoupled), K, P)
        for k, (lr, wd, _mom, b1, b2, active, _, _) in enumerate(MEMBER_TABLE):
            if not active:
                continue
            rows = slice(k * P, (k + 1) * P)
            rw, rm, rv = (np.ascontiguousarray(a[rows]) for a in ref)
            single(_ptr(rw, dtype), _ptr(np.ascontiguousarray(g[rows]), dtype), _ptr(rm, dtype), _ptr(rv, dtype),
                   *map(dtype, (lr, 1 - b1, 1 - b2, 1e-8, 1 - b1**step, 1 - b2**step, wd)), int(decoupled), P)
            for a, r in zip(ref, (rw, rm, rv)):
                a[rows] = r
        np.testing.assert_array_equal(w, ref[0])
        np.testing.assert_array_equal(m, ref[1])
    frozen = slice(2 * P, 3 * P)
    assert not m[frozen].any() and np.array_equal(w[frozen], ref[0][frozen])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_member_sgd_decodes_each_row_as_one_model_passes_its_settings(harness, dtype, nesterov):
    rng = np.random.default_rng(6)
    table = MEMBER_TABLE.copy()
    if nesterov:
        table[:, 2] = np.maximum(table[:, 2], 0.5)  # Nesterov needs momentum
    K, P = table.shape[0], 777
    w, vel = rng.standard_normal(K * P).astype(dtype), np.zeros(K * P, dtype)
    rw, rvel = w.copy(), vel.copy()
    member = getattr(harness, f"member_sgd_{_suffix(dtype)}")
    single = getattr(harness, f"sgd_{_suffix(dtype)}")
    for _ in range(3):
        g = rng.standard_normal(K * P).astype(dtype)
        member(_ptr(w, dtype), _ptr(g, dtype), _ptr(vel, dtype), table.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
               int(nesterov), K, P)
        for k, (lr, wd, mom, _b1, _b2, active, _, _) in enumerate(table):
            if not active:
                continue
            rows = slice(k * P, (k + 1) * P)
            a, b = np.ascontiguousarray(rw[rows]), np.ascontiguousarray(rvel[rows])
            single(_ptr(a, dtype), _ptr(np.ascontiguousarray(g[rows]), dtype), _ptr(b, dtype), dtype(lr), dtype(mom),
                   dtype(wd), int(nesterov), P)
            rw[rows], rvel[rows] = a, b
        np.testing.assert_array_equal(w, rw)
        np.testing.assert_array_equal(vel, rvel)


# ---- the ensemble's bf16 kernels (Ensemble(precision="bf16")): member_bias_act_forward, member_bias_grad ----

@pytest.mark.parametrize("act", ACTS, ids=[a.name for a in ACTS])
def test_member_bias_act_bf16_rounds_each_member_as_one_model(harness, bfloat16, act):
    """bias_act_element over K members of bf16 Z with member k's bias P values after member k-1's: Z_keep is
    the float sum Z + b[k] rounded to bf16 (bit for bit), A is g of that float sum within one bf16 ulp of the
    float64 reference (as the single-model bf16 kernels, test_bf16_activation_math)."""
    rng = np.random.default_rng(act.kernel_id)
    K, rows, cols, P = 3, 5, 7, 11  # the bias rows lie P values apart, as in the flat parameter buffer
    Z = (rng.standard_normal((K, rows, cols)) * 3).astype(bfloat16)
    b = rng.standard_normal(K * P).astype(bfloat16)
    keep, A = np.zeros((K, rows, cols), np.uint16), np.zeros((K, rows, cols), np.uint16)
    rc = harness.member_bias_act_bf16(act.kernel_id, _u16(Z.view(np.uint16)), _u16(b.view(np.uint16)), P, _u16(keep),
                                      _u16(A), K, rows, cols)
    assert rc == 0
    bias = np.stack([b[k * P:k * P + cols] for k in range(K)]).astype(np.float32)[:, None, :]
    z = Z.astype(np.float32) + bias  # the float sum the kernel forms (one IEEE add)
    np.testing.assert_array_equal(keep, z.astype(bfloat16).view(np.uint16))
    got = A.view(bfloat16).astype(np.float64)
    with np.errstate(all="ignore"):
        want = reference_act(act, FN_FORWARD, z).astype(bfloat16).astype(np.float64)
    tol = 2.0**-7 * np.abs(want) + 8 * EPS[np.float32] * np.fmax(1.0, np.abs(z))
    assert np.all(np.abs(got - want) <= tol), act.name
    # in place (Z_keep and A are Z itself, as the ensemble's identity layers run it): the same values
    inplace = Z.view(np.uint16).copy()
    harness.member_bias_act_bf16(act.kernel_id, _u16(inplace), _u16(b.view(np.uint16)), P, _u16(inplace),
                                 _u16(inplace), K, rows, cols)
    np.testing.assert_array_equal(inplace, A)


def test_member_bias_grad_bf16_sums_widened_values_in_double_into_float(harness, bfloat16):
    rng = np.random.default_rng(21)
    K, rows, cols, P = 4, 300, 9, 20
    dZ = rng.standard_normal((K, rows, cols)).astype(bfloat16)
    db = np.full(K * P, np.nan, np.float32)
    harness.member_bias_grad_bf16(_u16(dZ.view(np.uint16)), _f32(db), P, K, rows, cols)
    want = dZ.astype(np.float64).sum(axis=1).astype(np.float32)
    for k in range(K):
        np.testing.assert_array_equal(db[k * P:k * P + cols], want[k])
        assert np.isnan(db[k * P + cols:(k + 1) * P]).all()  # the rest of the member's row is not touched


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_member_clip_scales_by_each_members_norm_and_clamps_by_its_value_as_the_cpus_clip(harness, dtype):
    """ensemble.cuh's member_clip and clip_element (member_clip_grad's math), given each member's sum of squares: the
    bits of EnsembleOps.clip_gradients' g * T(c / (sqrt(s) + 1e-6)) where that is under 1 (member 0; member 3's limit
    is over its norm: kept) and numpy.clip to [-T(v), T(v)] (member 1, a NaN kept); a frozen member (2) untouched."""
    from gpunn.ops import Ops
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import MemberRates

    rng = np.random.default_rng(8)
    K, P = MEMBER_TABLE.shape[0], 301
    g = rng.standard_normal(K * P).astype(dtype)
    g[P + 5] = np.nan
    sums = (g.reshape(K, P).astype(np.float64) ** 2).sum(axis=1)
    table = MEMBER_TABLE.copy()
    table[3, 6] = 2 * np.sqrt(sums[3])
    got = g.copy()
    getattr(harness, f"member_clip_{_suffix(dtype)}")(_ptr(got, dtype), table.ctypes.data_as(ctypes.POINTER(
        ctypes.c_double)), _ptr(sums, np.float64), K, P)
    want = g.reshape(K, P).copy()
    want[0] *= dtype(0.5 / (np.sqrt(sums[0]) + 1e-6))
    np.clip(want[1], -dtype(0.25), dtype(0.25), out=want[1])
    np.testing.assert_array_equal(got.reshape(K, P), want)
    generic = g.reshape(K, P).copy()  # (member 0: its sum of squares formed by the op, in its own order)
    EnsembleOps(Ops(np)).clip_gradients(generic, MemberRates(np, table))
    np.testing.assert_array_equal(generic[1:], want[1:])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_member_clip_scales_a_row_of_nan_norm_by_nan_as_torch_and_the_generic_op(harness, dtype):
    """A member clipping by norm whose sum of squares is NaN (a NaN in its row): every element of its row NaN, as
    torch's clip_grad_norm_, one model's clip_norm_factor and EnsembleOps.clip_gradients give, where member_clip left
    the finite ones unscaled; the other members as before."""
    from gpunn.ops import Ops
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import MemberRates

    K, P = MEMBER_TABLE.shape[0], 37
    g = np.linspace(-2.0, 2.0, K * P).astype(dtype)
    g[5] = np.nan  # member 0's row, clip_norm 0.5
    sums = (g.reshape(K, P).astype(np.float64) ** 2).sum(axis=1)
    got = g.copy()
    getattr(harness, f"member_clip_{_suffix(dtype)}")(_ptr(got, dtype), MEMBER_TABLE.ctypes.data_as(ctypes.POINTER(
        ctypes.c_double)), _ptr(sums, np.float64), K, P)
    generic = g.reshape(K, P).copy()
    EnsembleOps(Ops(np)).clip_gradients(generic, MemberRates(np, MEMBER_TABLE.copy()))
    assert np.isnan(got[:P]).all()
    np.testing.assert_array_equal(got.reshape(K, P), generic)


def test_the_member_kernels_read_a_table_as_gpunn_writes_it(harness):
    """A table laid out by gpunn.ops.member_rates' column numbers and HYPER_FIELDS (as gpunn.training.ensemble fills
    it) steps every member as MEMBER_TABLE, written out in the header's HyperField order, does: bit for bit, Adam and
    SGD. A column number or a width apart from the header's would give a member another's or no settings; the
    CPU's ops read the table by the same numbers, so only the header can tell."""
    from gpunn.ops.member_rates import (ACTIVE, BETA1, BETA2, CLIP_NORM, CLIP_VALUE, HYPER_FIELDS, LR, MOMENTUM,
                                       WEIGHT_DECAY, MemberRates)

    K, P, dtype = MEMBER_TABLE.shape[0], 257, np.float64
    table = np.zeros((K, HYPER_FIELDS))
    for header_column, column in enumerate((LR, WEIGHT_DECAY, MOMENTUM, BETA1, BETA2, ACTIVE, CLIP_NORM, CLIP_VALUE)):
        table[:, column] = MEMBER_TABLE[:, header_column]
    written = MemberRates(np, table).host
    rng = np.random.default_rng(7)
    g = rng.standard_normal(K * P)
    w0 = rng.standard_normal(K * P)
    runs = []
    for rows in (MEMBER_TABLE, written):
        rows = np.ascontiguousarray(rows).ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        w, m, v = w0.copy(), np.zeros(K * P), np.zeros(K * P)
        for step in (1, 2):
            harness.member_adam_f64(_ptr(w, dtype), _ptr(g, dtype), _ptr(m, dtype), _ptr(v, dtype), rows, 1e-8,
                                    float(step), 0, K, P)
        ws, vel = w0.copy(), np.zeros(K * P)
        for _ in range(2):
            harness.member_sgd_f64(_ptr(ws, dtype), _ptr(g, dtype), _ptr(vel, dtype), rows, 0, K, P)
        clipped = g.copy()
        harness.member_clip_f64(_ptr(clipped, dtype), rows, _ptr(np.full(K, 9.0), dtype), K, P)
        runs.append([w, m, v, ws, vel, clipped])
    assert not np.array_equal(runs[0][5], g)  # (the clips read from their columns: the rows changed)
    for got, want in zip(runs[1], runs[0]):
        np.testing.assert_array_equal(got, want)


def test_the_clip_norm_factor_is_torchs_min_of_one_and_max_norm_over_the_norm_keeping_a_nan(harness):
    """optimizers.cuh's clip_norm_factor, which clip_factor (kernels/optimizers.cu) applies to the summed squares:
    min(1, c / (sqrt(s) + 1e-6)) in double, as gpunn.ops.Ops.clip_grad_norm forms it, bit for bit; a NaN sum gives
    NaN (torch's clamp keeps it; a min that returned 1 would leave NaN gradients' neighbours unclipped), inf 0."""
    for s in (0.0, 1e-300, 1e-12, 0.25, 1.0, 4.0, 123.456, 1e300, np.inf, np.nan):
        for c in (1e-3, 0.5, 1.0, 10.0):
            want = np.minimum(np.float64(c) / (np.sqrt(np.float64(s)) + 1e-6), 1.0)
            got = harness.clip_factor_of(s, c)
            assert got == want or (np.isnan(got) and np.isnan(want)), (s, c, got, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_clip_to_value_clamps_each_element_as_numpys_clip_keeping_a_nan(harness, dtype):
    g = np.array([0.0, -0.0, 0.3, -0.3, 0.5, -0.5, 0.7, -2.0, 1e30, -np.inf, np.inf, np.nan, 1e-40], dtype)
    want = np.clip(g, -0.5, 0.5)  # (NumPy rounds 0.5 to dtype, as the kernel's caller does)
    getattr(harness, f"clip_value_{_suffix(dtype)}")(_ptr(g, dtype), dtype(0.5), g.size)
    assert g.tobytes() == want.tobytes()

