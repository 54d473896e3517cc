"""The CUDA kernels of kernels/*.cu, run on the CPU: their indexing, loops, reductions and member strides.

Nothing else in CI runs a kernel body: tests/fakecupy computes each launch with a NumPy reference (it
reads only the kernel's signature), test_kernel_math_host.py runs the per-element math of the headers,
and test_kernel_compile.py only compiles. Here kernels/*.cu are compiled as plain C++ after
tests/kernel_harness/cuda_host.h (blocks run one after another, a block's threads as fibers that meet at
__syncthreads and warp shuffles) and launched, in double, on small arrays with the launch shapes gpunn
uses and with awkward ones (a grid-stride loop that wraps, a column step that is not a multiple of the
columns, fewer blocks in y than members, several row chunks, a partial last chunk), then compared with
NumPy (weighted_mse_grad in float too, its dA with the reference's bit for bit). What a GPU run must still check: the device's arithmetic (-ftz, its libm), float32/bf16
instances, and races between threads running at once.
"""
from __future__ import annotations

import ast
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gpunn.activations import ACTIVATIONS
from gpunn.ops import Ops
from gpunn.sample_weights import mean_one, split, with_weights
from host_library import build_host_library

ROOT = Path(__file__).resolve().parent.parent


def _launch_constants():
    """gpunn/ops/cuda.py's launch shapes (read from its source: importing it needs CuPy)."""
    tree = ast.parse((ROOT / "gpunn" / "ops" / "cuda.py").read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("BLOCK", "BIAS_GRAD_BLOCK", "BIAS_GRAD_ONE_LAUNCH_BLOCK")}


_C = _launch_constants()
BLOCK, BIAS_GRAD_BLOCK, BIAS_GRAD_ONE_LAUNCH_BLOCK = _C["BLOCK"], _C["BIAS_GRAD_BLOCK"], _C["BIAS_GRAD_ONE_LAUNCH_BLOCK"]
HARNESS = Path(__file__).resolve().parent / "kernel_harness"
ACTS = ("identity", "relu", "tanh", "elu")  # the ones kernel_bodies.cpp builds
D, LL, U, I = ctypes.c_double, ctypes.c_longlong, ctypes.c_uint, ctypes.c_int
P = ctypes.POINTER(ctypes.c_double)

SIGNATURES = {
    "k_bias_act_forward": [I, U, U, P, P, P, P, LL, LL],
    "k_act_backward": [I, I, U, U, P, P, P, LL],
    "k_mse_grad": [U, U, P, P, P, D, LL, P],
    "k_weighted_mse_grad": [I, U, U, ctypes.c_void_p, ctypes.c_void_p, LL, ctypes.c_void_p, LL, ctypes.c_void_p, D, LL,
                            LL, P],
    "k_bias_grad": [U, U, U, U, P, P, P, LL, LL, LL],
    "k_bias_grad_finish": [U, U, P, P, LL, LL],
    "k_sgd_step": [U, U, P, P, P, D, D, D, I, LL],
    "k_adam_step": [U, U, P, P, P, P, D, D, D, D, D, D, D, D, I, LL],
    "k_optimizer_tick": [U, U, P, D, D],
    "k_sgd_step_dev": [U, U, P, P, P, P, D, D, I, LL],
    "k_adam_step_dev": [U, U, P, P, P, P, P, D, D, D, D, I, LL],
    "k_clip_sum_sq": [U, U, P, LL, P],
    "k_clip_factor": [U, P, LL, D, P],
    "k_clip_scale": [U, U, P, P, LL],
    "k_clip_by_value": [U, U, P, D, LL],
    "k_clip_sum_sq_f32": [U, U, ctypes.c_void_p, LL, P],
    "k_clip_scale_f32": [U, U, ctypes.c_void_p, P, LL],
    "k_member_bias_act_forward": [I, U, U, U, P, P, LL, P, P, LL, LL, LL],
    "k_member_bias_grad": [U, U, U, U, P, P, LL, LL, LL, LL],
    "k_member_mse_grad": [U, U, U, P, P, LL, P, D, LL, LL, P],
    "k_member_weighted_mse_grad": [U, U, U, P, ctypes.c_void_p, LL, LL, ctypes.c_void_p, LL, LL, P, D, LL, LL, LL,
                                   P],
    "k_member_sgd_step": [U, U, U, P, P, P, P, I, LL, LL],
    "k_member_adam_step": [U, U, U, P, P, P, P, P, D, D, I, LL, LL],
    "k_member_adam_step_dev": [U, U, U, P, P, P, P, P, D, P, I, LL, LL],
    "k_member_grad_sum_sq": [U, U, U, P, P, LL, LL, P],
    "k_member_grad_sum_total": [U, U, P, LL, P, LL, P],
    "k_member_clip_grad": [U, U, U, P, P, P, LL, LL],
    "k_member_grad_sum_sq_f32": [U, U, U, ctypes.c_void_p, P, LL, LL, P],
    "k_shared_probe": [U, U, P],
    "k_philox": [I, I, U, U, U, ctypes.c_void_p, LL, LL, D, D, ctypes.c_void_p],
}


class Kernels:
    def __init__(self, lib):
        self.lib = lib

    def __getattr__(self, name):
        fn = getattr(self.lib, f"k_{name}")

        def call(*args):
            conv = [(a.ctypes.data_as(P) if a.dtype == np.float64 else a.ctypes.data) if isinstance(a, np.ndarray)
                    else a for a in args]
            for a in args:  # (float32 and uint64 arrays: gpunn.rng's draws and their streams' table)
                assert not isinstance(a, np.ndarray) or (a.dtype in (np.float64, np.float32, np.uint64)
                                                         and a.flags.c_contiguous)
            rc = fn(*conv)
            assert rc == 0, f"{name}: {self.lib.last_error().decode()}"
        return call


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    lib, h = build_host_library(tmp_path_factory, HARNESS / "kernel_bodies.cpp", "kernel_bodies", ["-O1", "-Wall"],
                                "the kernel-body harness")
    for name, argtypes in SIGNATURES.items():
        getattr(h, name).argtypes = argtypes
        getattr(h, name).restype = ctypes.c_int
    h.last_error.restype = ctypes.c_char_p
    h.set_schedule.argtypes = [ctypes.c_int]
    h.take_pow_calls.restype = ctypes.c_longlong
    h.add_shared.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    for name, size in _shared_statics(lib):
        h.add_shared(ctypes.addressof(ctypes.c_char.in_dll(h, name)), size)
    return Kernels(h)


def _shared_statics(lib):
    """(symbol, bytes) of the library's function-local statics (mangled _ZZ...: every one is a __shared__
    array, which cuda_host.h fills with NaN before each block). Their count is checked against the
    __shared__ declarations of the sources, so that one the symbols miss would not go unpoisoned."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not found: the kernel-body harness finds the __shared__ arrays in the library's symbols")
    out = subprocess.run([nm, "-D", "-S", "--defined-only", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    found = [(f[3], int(f[1], 16)) for f in (line.split() for line in out.splitlines())
             if len(f) == 4 and f[3].startswith("_ZZ")]
    sources = list((ROOT / "kernels").glob("*.cu*")) + [HARNESS / "kernel_bodies.cpp"]
    declared = sum(line.lstrip().startswith("__shared__") for p in sources for line in p.read_text().splitlines())
    assert len(found) == declared, (found, declared)
    return found


@pytest.fixture
def schedule(k, request):
    """The order of a block's threads (cuda_host.h): 0, thread order; 1, the last warp first, each warp as far
    as it can go. The kernels that share memory between threads run in both."""
    k.lib.set_schedule(request.param)
    yield request.param
    k.lib.set_schedule(0)


BOTH_ORDERS = pytest.mark.parametrize("schedule", [0, 1], indirect=True, ids=["in-order", "last-warp-first"])


def rng(seed=0):
    return np.random.default_rng(seed)


def g(name, z):
    out = np.empty_like(z)
    ACTIVATIONS[name].forward(np, z, out)
    return out


def close(a, b, atol=1e-15):
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=atol)


SUMS = 1e-11  # the tolerance of a sum: another order of the additions than NumPy's


def test_a_blocks_shared_memory_starts_unwritten(k):
    """cuda_host.h fills __shared__ memory with NaN before each block, as a GPU's holds whatever was there: a
    kernel that reads a slot no thread of its block wrote (block_sum without its lane < warps guard) fails
    here, where zero-initialised statics, or the last block's values, would pass it."""
    seen = np.zeros((3, 32))
    k.shared_probe(3, 32, seen)  # every block, the first included: another launch wrote 1.0 before
    k.shared_probe(3, 32, seen)
    assert np.isnan(seen).all()


# (grid x, block x): gpunn's block with a grid that covers everything, and grids that make the
# grid-stride loops wrap with a stride that is no multiple of the columns
SHAPES_1D = [(64, BLOCK), (1, 32), (3, 64)]


@pytest.mark.parametrize("grid, block", SHAPES_1D)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias, keep", [(True, True), (True, False), (False, True)])
def test_bias_act_forward_adds_each_columns_bias_and_keeps_z(k, grid, block, act, bias, keep):
    rows, cols = 23, 7
    r = rng()
    Z = r.standard_normal((rows, cols))
    b = r.standard_normal(cols) if bias else None
    z = Z + b if bias else Z.copy()
    A = np.full_like(Z, np.nan)
    Zk = Z.copy()
    k.bias_act_forward(ACTIVATIONS[act].kernel_id, grid, block, Z, b, Zk if keep else None, A, rows, cols)
    close(A, g(act, z))
    close(Zk, z if keep else Z)
    # in place, as the model runs it: A and Z_keep are Z_in
    Zi = Z.copy()
    k.bias_act_forward(ACTIVATIONS[act].kernel_id, grid, block, Zi, b, None, Zi, rows, cols)
    close(Zi, g(act, z))


@pytest.mark.parametrize("grid, block", SHAPES_1D)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("from_output", [False, True])
def test_act_backward_is_da_times_g_prime(k, grid, block, act, from_output):
    n = 161
    r = rng(1)
    dA, Z = r.standard_normal(n), r.standard_normal(n)
    src = g(act, Z) if from_output else Z
    expect = np.empty_like(Z)
    a = ACTIVATIONS[act]
    (a.grad_from_output if from_output else a.grad_from_input)(np, src, expect)
    expect *= dA
    dZ = np.full_like(dA, np.nan)
    k.act_backward(a.kernel_id, int(from_output), grid, block, dA, src, dZ, n)
    close(dZ, expect)
    inplace = dA.copy()
    k.act_backward(a.kernel_id, int(from_output), grid, block, inplace, src, inplace, n)
    close(inplace, expect)


@pytest.mark.parametrize("grid, block", SHAPES_1D + [(2, 1024)])
@pytest.mark.parametrize("with_grad", [True, False])
@BOTH_ORDERS
def test_mse_grad_scales_the_difference_and_sums_its_squares_over_all_blocks(k, schedule, grid, block, with_grad):
    n = 300
    r = rng(2)
    A, Y = r.standard_normal(n), r.standard_normal(n)
    dA = np.full_like(A, np.nan)
    total = np.array([0.5])  # accumulated into: the caller zeroes it
    k.mse_grad(grid, block, A, Y, dA if with_grad else None, 2.0 / 30, n, total)
    if with_grad:
        close(dA, (2.0 / 30) * (A - Y))
    close(total[0], 0.5 + np.sum((A - Y) ** 2), SUMS)


def _weighted_launch(k, grid, block, A, Y, w, dA, total):
    """weighted_mse_grad on A and Y (rows at Y's row step) with the weights w (at theirs: a column of Y or a vector),
    scale 2/m in A's dtype."""
    rows, cols = A.shape
    scale = float(A.dtype.type(2.0 / rows))
    steps = [a.strides[0] // a.itemsize for a in (Y, w)]
    k.weighted_mse_grad(int(A.dtype == np.float64), grid, block, A.ctypes.data, Y.ctypes.data, steps[0], w.ctypes.data,
                        steps[1], dA.ctypes.data, scale, rows, cols, total)


@pytest.mark.parametrize("grid, block", SHAPES_1D + [(2, 1024)])
@pytest.mark.parametrize("rows, cols", [(1, 1), (37, 1), (300, 3), (64, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["double", "float"])
@pytest.mark.parametrize("layout", ["weights-in-Y", "weights-apart"])
def test_weighted_mse_grad_follows_y_and_its_weights_at_their_row_steps_with_the_references_roundings(
        k, grid, block, rows, cols, dtype, layout):
    """Training's Y carries each row's weight as one more column (gpunn.sample_weights): Y's rows are cols + 1 apart
    and the weights a column of it, where A and dA are contiguous. dA is Ops.loss_gradient(weights=)'s bit for bit
    (the same two products in the same order, in float and double), some weights 0; the sum is to a sum's rounding."""
    r = rng(5)
    A = r.standard_normal((rows, cols)).astype(dtype)
    w = r.uniform(0.0, 3.0, rows)
    w[1::4] = 0.0
    Y = with_weights(np, r.standard_normal((rows, cols)).astype(dtype), mean_one(w, "rows"))
    targets, weights = split(Y, cols)
    if layout == "weights-apart":
        targets, weights = np.ascontiguousarray(targets), np.ascontiguousarray(weights)
    want_dA = np.empty_like(A)
    want = float(Ops(np).loss_gradient(A, targets, want_dA, weights=weights))
    dA, total = np.full_like(A, np.nan), np.array([0.5])  # accumulated into: the caller zeroes it
    _weighted_launch(k, grid, block, A, targets, weights, dA, total)
    np.testing.assert_array_equal(dA, want_dA)
    assert (dA[weights == 0] == 0).all()
    close(total[0], 0.5 + want, SUMS)
    inplace = A.copy()  # dA may be A
    _weighted_launch(k, grid, block, inplace, targets, weights, inplace, total)
    np.testing.assert_array_equal(inplace, want_dA)


@pytest.mark.parametrize("grid, block", SHAPES_1D)
@pytest.mark.parametrize("rows, cols", [(37, 1), (100, 3)])
@BOTH_ORDERS
def test_weighted_mse_grad_with_unit_weights_is_mse_grads_bits(k, schedule, grid, block, rows, cols):
    r = rng(6)
    A = r.standard_normal((rows, cols))
    Y = with_weights(np, r.standard_normal((rows, cols)), np.ones(rows))
    targets, weights = split(Y, cols)
    dA, total = np.empty_like(A), np.zeros(1)
    _weighted_launch(k, grid, block, A, targets, weights, dA, total)
    dA_plain, total_plain = np.empty_like(A), np.zeros(1)
    k.mse_grad(grid, block, A, np.ascontiguousarray(targets), dA_plain, 2.0 / rows, rows * cols, total_plain)
    np.testing.assert_array_equal(dA, dA_plain)
    assert total[0] == total_plain[0]


@pytest.mark.parametrize("rows, cols", [(1, 1), (5, 3), (100, 40), (1000, 70)])
@BOTH_ORDERS
def test_bias_grad_in_one_launch_sums_every_row(k, schedule, rows, cols):
    dZ = rng(3).standard_normal((rows, cols))
    db = np.full(cols, np.nan)
    k.bias_grad(-(-cols // 32), 1, *BIAS_GRAD_ONE_LAUNCH_BLOCK, dZ, db, None, rows, cols, max(rows, 1))
    close(db, dZ.sum(axis=0), SUMS)


@pytest.mark.parametrize("rows, cols, chunks", [(1100, 33, 4), (200, 5, 3), (97, 64, 7)])
@pytest.mark.parametrize("block", [BIAS_GRAD_BLOCK, (32, 1), (32, 32)])
@BOTH_ORDERS
def test_bias_grad_in_row_chunks_then_finish(k, schedule, rows, cols, chunks, block):
    per = -(-rows // chunks)
    chunks = -(-rows // per)  # as CupyOps.bias_gradient: the last chunk is partial, none is empty
    dZ = rng(4).standard_normal((rows, cols))
    partial = np.full((chunks, cols), np.nan)
    db = np.full(cols, np.nan)
    k.bias_grad(-(-cols // 32), chunks, *block, dZ, db, partial, rows, cols, per)
    assert np.isnan(db).all()  # with several chunks only `partial` is written
    close(partial, np.stack([dZ[c * per:(c + 1) * per].sum(axis=0) for c in range(chunks)]), SUMS)
    for grid, threads in [(1, 32), (4, BLOCK)]:
        db[...] = np.nan
        k.bias_grad_finish(grid, threads, partial, db, chunks, cols)
        close(db, partial.sum(axis=0), SUMS)


@pytest.mark.parametrize("grid, block", SHAPES_1D)
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, 0, 0.0), (0.9, 0, 0.01), (0.9, 1, 0.0)])
@pytest.mark.parametrize("on_device", [False, True])
def test_sgd_step_updates_every_parameter_and_its_velocity(k, grid, block, momentum, nesterov, weight_decay,
                                                          on_device):
    n, lr = 150, 0.05
    r = rng(5)
    w, grad, vel = r.standard_normal(n), r.standard_normal(n), r.standard_normal(n)
    ew, ev = w.copy(), vel.copy()
    Ops(np).sgd_step(ew, grad.copy(), ev if momentum else None, lr, momentum, bool(nesterov), weight_decay)
    if on_device:
        state = np.array([3.0, lr, 0.0, 0.0])
        k.sgd_step_dev(grid, block, w, grad, vel if momentum else None, state, momentum, weight_decay, nesterov, n)
    else:
        k.sgd_step(grid, block, w, grad, vel if momentum else None, lr, momentum, weight_decay, nesterov, n)
    close(w, ew)
    close(vel, ev)


def _adam_reference(w, grad, m, v, lr, b1, b2, eps, step, wd, decoupled):
    w, m, v = w.copy(), m.copy(), v.copy()
    Ops(np).adam_step(w, grad.copy(), m, v, lr, b1, b2, eps, step, wd, bool(decoupled))
    return w, m, v


@BOTH_ORDERS  # adam_step's thread 0 forms the bias corrections for its block: the other warps wait for them
@pytest.mark.parametrize("grid, block", SHAPES_1D)
@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, 0), (0.01, 0), (0.01, 1)])
def test_adam_step_and_its_graph_form_update_every_parameter_and_both_moments(k, schedule, grid, block, weight_decay,
                                                                              decoupled):
    n, lr, b1, b2, eps = 150, 0.01, 0.9, 0.999, 1e-8
    r = rng(6)
    w, grad, m, v = r.standard_normal(n), r.standard_normal(n), r.standard_normal(n), r.random(n)
    for step in (1, 4, 7):  # 0.999**7: NumPy's array power was an ulp off the C library's (the AMD EPYC)
        ew, em, ev = _adam_reference(w, grad, m, v, lr, b1, b2, eps, step, weight_decay, decoupled)
        eager = [w.copy(), m.copy(), v.copy()]
        k.lib.take_pow_calls()
        k.adam_step(grid, block, eager[0], grad, eager[1], eager[2], lr, 1 - b1, 1 - b2, eps, b1, b2, float(step),
                    weight_decay, decoupled, n)
        assert k.lib.take_pow_calls() == 2 * grid  # 1 - beta1^t, 1 - beta2^t once per block, not per thread
        for a, b in zip(eager, (ew, em, ev)):
            close(a, b)
        # the graph form: optimizer_tick advances the step and the bias corrections, adam_step_dev reads them;
        # both forms take them from adam_bias_correction (here the C library's pow, Python's), so the same bits
        state = np.array([step - 1.0, lr, np.nan, np.nan])
        k.optimizer_tick(grid, block, state, b1, b2)
        assert state.tolist() == [step, lr, 1 - b1**step, 1 - b2**step]
        got = [w.copy(), m.copy(), v.copy()]
        k.adam_step_dev(grid, block, got[0], grad, got[1], got[2], state, 1 - b1, 1 - b2, eps, weight_decay, decoupled, n)
        for a, b in zip(got, eager):
            np.testing.assert_array_equal(a, b)


# ---- kernels/ensemble.cu: K members, the grid's y walking them (fewer y blocks than members too) -------
MEMBER_SHAPES = [(64, 3, BLOCK), (1, 1, 32), (2, 2, 64)]  # (grid x, grid y, block x)


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
@pytest.mark.parametrize("act", ACTS)
def test_member_bias_act_forward_uses_each_members_bias_row(k, gx, gy, block, act):
    K, rows, cols, stride = 3, 11, 7, 19  # member k's bias at b + k * stride (its run of parameters)
    r = rng(7)
    Z = r.standard_normal((K, rows, cols))
    flat = r.standard_normal(K * stride)
    b = flat.reshape(K, stride)[:, :cols]
    z = Z + b[:, None, :]
    A, Zk = np.full_like(Z, np.nan), Z.copy()
    k.member_bias_act_forward(ACTIVATIONS[act].kernel_id, gx, gy, block, Z, flat, stride, Zk, A, K, rows, cols)
    close(A, g(act, z))
    close(Zk, z)
    Zi = Z.copy()
    k.member_bias_act_forward(ACTIVATIONS[act].kernel_id, gx, gy, block, Zi, flat, stride, None, Zi, K, rows, cols)
    close(Zi, g(act, z))


# (grid x, block x, rows, cols): a grid stride (gx * block) that the columns divide (column step 0: 8 columns,
# 32, one); a stride one over the columns (step 1), a step over half the columns (every other element subtracts),
# strides under the columns (step = stride: 45 columns, and 33, step cols - 1), several blocks (step 6); each
# thread's loop wraps 3 to 7 times per member
COLUMN_WALKS = [(1, 32, 13, 8), (1, 32, 7, 32), (1, 32, 100, 1), (1, 32, 4, 31), (1, 32, 20, 7), (1, 32, 5, 45),
                (1, 32, 4, 33), (3, 32, 30, 10)]


@pytest.mark.parametrize("gx, block, rows, cols", COLUMN_WALKS)
@pytest.mark.parametrize("gy", [1, 2])
def test_member_bias_act_forward_follows_each_elements_column_through_the_wraps_of_every_member(k, gx, block, rows,
                                                                                                  cols, gy):
    """The kernel follows an element's column incrementally (one step of stride % cols and at most one subtract per
    element) from the thread's first column, first % cols, formed once per thread: each member's walk starts there
    again (gy < K: a thread walks several members), so every element gets its member's bias of its own column."""
    K, stride = 3, cols + 2
    r = rng(8)
    Z = r.standard_normal((K, rows, cols))
    flat = r.standard_normal(K * stride)
    z = Z + flat.reshape(K, stride)[:, None, :cols]
    A = np.full_like(Z, np.nan)
    k.member_bias_act_forward(ACTIVATIONS["identity"].kernel_id, gx, gy, block, Z, flat, stride, None, A, K, rows,
                              cols)
    np.testing.assert_array_equal(A, z)  # identity: Z + b exactly, each sum one rounding


@pytest.mark.parametrize("gy, block", [(3, BIAS_GRAD_BLOCK), (1, (32, 32)), (2, (32, 4))])
@BOTH_ORDERS
def test_member_bias_grad_writes_each_members_column_sums_at_its_stride(k, schedule, gy, block):
    K, rows, cols, stride = 3, 45, 37, 50
    dZ = rng(8).standard_normal((K, rows, cols))
    flat = np.full(K * stride, 7.0)
    k.member_bias_grad(-(-cols // 32), gy, *block, dZ, flat, stride, K, rows, cols)
    db = flat.reshape(K, stride)
    close(db[:, :cols], dZ.sum(axis=1), SUMS)
    assert (db[:, cols:] == 7.0).all()  # nothing written between the members' rows


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
@pytest.mark.parametrize("shared_y", [False, True])
@BOTH_ORDERS
def test_member_mse_grad_sums_each_member_apart(k, schedule, gx, gy, block, shared_y):
    K, n = 3, 130
    r = rng(9)
    A = r.standard_normal((K, n))
    Y = r.standard_normal(n) if shared_y else r.standard_normal((K, n))
    dA, sums = np.full_like(A, np.nan), np.zeros(K)
    k.member_mse_grad(gx, gy, block, A, Y, 0 if shared_y else n, dA, 0.25, K, n, sums)
    close(dA, 0.25 * (A - Y))
    close(sums, ((A - Y) ** 2).sum(axis=1), SUMS)


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
@pytest.mark.parametrize("shared_y", [False, True], ids=["bootstrap-batch", "shared-batch"])
@BOTH_ORDERS
def test_member_weighted_mse_grad_reads_each_members_targets_and_weights_at_their_steps(
        k, schedule, gx, gy, block, shared_y):
    """Training's weighted Y carries each row's weight as its last column (gpunn.sample_weights): one (rows, cols + 1)
    Y for every member, or a bootstrap batch's (K, rows, cols + 1), each member's rows and weights its own. dA is
    EnsembleOps.loss_gradient(weights=)'s bit for bit, some weights 0; each member's sum to a sum's rounding."""
    from gpunn.ops.ensemble import EnsembleOps

    K, rows, cols = 3, 45, 3
    r = rng(11)
    A = r.standard_normal((K, rows, cols))
    shape = (rows,) if shared_y else (K, rows)
    w = r.uniform(0.0, 3.0, shape)
    w[..., 1::4] = 0.0
    Y = np.empty((*shape, cols + 1))
    Y[..., :cols], Y[..., cols] = r.standard_normal((*shape, cols)), w
    targets, weights = split(Y, cols)
    want_dA = np.empty_like(A)
    want = EnsembleOps(Ops(np)).loss_gradient(A, targets, want_dA, weights=weights)
    dA, sums = np.full_like(A, np.nan), np.full(K, 0.5)  # accumulated into: the caller zeroes it
    y_member, w_member = (0, 0) if shared_y else (rows * (cols + 1),) * 2
    k.member_weighted_mse_grad(gx, gy, block, A, targets.ctypes.data, y_member, cols + 1, weights.ctypes.data,
                               w_member, cols + 1, dA, 2.0 / rows, K, rows, cols, sums)
    np.testing.assert_array_equal(dA, want_dA)
    assert (dA[np.broadcast_to(weights, (K, rows)) == 0] == 0).all()
    close(sums, 0.5 + want, SUMS)


def _hyper(K):
    # lr, weight decay, momentum, beta1, beta2, active, clip_norm, clip_value; member 1 is frozen; member 0 clips by
    # norm, member 2 by value (the optimizer kernels read neither: member_clip_grad does)
    return np.array([[0.05, 0.01, 0.9, 0.9, 0.999, 1, 0.5, 0], [0.2, 0.0, 0.5, 0.8, 0.99, 0, 0.5, 0.1],
                     [0.01, 0.02, 0.0, 0.85, 0.995, 1, 0, 0.3], [0.03, 0.0, 0.7, 0.9, 0.9, 1, 0, 0]][:K],
                    dtype=np.float64)


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
@pytest.mark.parametrize("nesterov", [0, 1])
def test_member_sgd_step_follows_each_members_row_and_leaves_a_frozen_one(k, gx, gy, block, nesterov):
    K, per = 4, 90
    r = rng(10)
    w, grad, vel = r.standard_normal((K, per)), r.standard_normal((K, per)), r.standard_normal((K, per))
    H = _hyper(K)
    ew, ev = w.copy(), vel.copy()
    for i, (lr, wd, mu, _, _, active, _, _) in enumerate(H):
        if active:
            Ops(np).sgd_step(ew[i], grad[i].copy(), ev[i] if mu else None, lr, mu, bool(nesterov), wd)
    k.member_sgd_step(gx, gy, block, w, grad, vel, H, nesterov, K, per)
    close(w, ew)
    close(vel, ev)


# thread 0 of each block forms its member's bias corrections: the block's other warps wait for them, and thread 0
# waits for every thread to have read them before it forms the block's next member's (gy < K)
@BOTH_ORDERS
@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
@pytest.mark.parametrize("decoupled", [0, 1])
@pytest.mark.parametrize("on_device", [False, True])
def test_member_adam_step_follows_each_members_row_and_leaves_a_frozen_one(k, schedule, gx, gy, block, decoupled,
                                                                           on_device):
    K, per, eps, step = 4, 90, 1e-8, 3
    r = rng(11)
    w, grad, m, v = (r.standard_normal((K, per)), r.standard_normal((K, per)), r.standard_normal((K, per)),
                     r.random((K, per)))
    H = _hyper(K)
    before = [w.copy(), m.copy(), v.copy()]
    expect = [w.copy(), m.copy(), v.copy()]
    for i, (lr, wd, _, b1, b2, active, _, _) in enumerate(H):
        if active:
            for a, b in zip(expect, _adam_reference(w[i], grad[i], m[i], v[i], lr, b1, b2, eps, step, wd, decoupled)):
                a[i] = b
    k.lib.take_pow_calls()
    if on_device:
        k.member_adam_step_dev(gx, gy, block, w, grad, m, v, H, eps, np.array([float(step), 0, 0, 0]), decoupled, K, per)
    else:
        k.member_adam_step(gx, gy, block, w, grad, m, v, H, eps, float(step), decoupled, K, per)
    for a, b in zip((w, m, v), expect):
        close(a, b)
    # each member's 1 - beta1^t, 1 - beta2^t: two pows in each of the gx blocks that step it, none per thread
    # (per-thread pows were 2 * gx * block per member: double pows, slow on a GPU); none for the frozen member
    assert k.lib.take_pow_calls() == 2 * gx * int(H[:, 5].sum())
    # and the bits of one model's adam_step kernel with the member's row (the same bias corrections and update)
    for i, (lr, wd, _, b1, b2, active, _, _) in enumerate(H):
        one = [a[i].copy() for a in before]
        if active:
            k.adam_step(gx, block, one[0], grad[i].copy(), one[1], one[2], lr, 1 - b1, 1 - b2, eps, b1, b2,
                        float(step), wd, decoupled, per)
        for a, b in zip((w, m, v), one):
            np.testing.assert_array_equal(a[i], b)


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
@BOTH_ORDERS
def test_member_grad_sum_sq_sums_the_squares_of_each_member_that_clips_by_norm_apart(k, schedule, gx, gy, block):
    """Member 0 clips by norm: each block's sum of its grid-stride squares in a slot of its own (no atomics, whose
    order of arrival a GPU does not fix), then member_grad_sum_total adds them in a fixed order, thread t the slots
    t, t + blockDim.x, ..., then block_sum's tree: the same bits whatever the blocks' order; member 1 (frozen),
    2 (by value) and 3 (none) are skipped, whole blocks at a time, their slots and sums left as they were (0.5)."""
    K, per = 4, 203
    g = rng(12).standard_normal((K, per))
    partial = np.full((K, gx), 0.5)
    k.member_grad_sum_sq(gx, gy, block, g, _hyper(K), K, per, partial)
    block_of = (np.arange(per) // block) % gx
    close(partial[0], np.bincount(block_of, weights=g[0] ** 2, minlength=gx), SUMS)
    assert (partial[1:] == 0.5).all()
    for threads in (32, 64):  # (fewer threads than slots, and more)
        sums = np.full(K, 0.5)
        k.member_grad_sum_total(gy, threads, partial, gx, _hyper(K), K, sums)
        close(sums[0], (g[0] ** 2).sum(), SUMS)
        assert (sums[1:] == 0.5).all()


@BOTH_ORDERS
@pytest.mark.parametrize("block", [64, BLOCK])
def test_member_grad_sum_sq_of_several_members_in_one_block_reuses_block_sums_memory_after_a_barrier(k, schedule,
                                                                                                     block):
    """One block (grid 1 x 1) sums every member that clips by norm in turn: block_sum's shared memory is the next
    member's only after every warp has read this one's (the barrier after it; audit49: without it every test passed,
    as none gave one block two members to sum)."""
    K, per = 3, 301
    g = rng(14).standard_normal((K, per))
    hyper = _hyper(K)
    hyper[:, 5], hyper[:, 6] = 1, 0.5  # every member active, clipping by norm
    sums = np.zeros(K)
    k.member_grad_sum_sq(1, 1, block, g, hyper, K, per, sums)
    close(sums, (g**2).sum(axis=1), SUMS)


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
def test_member_grad_sum_sq_of_float_squares_each_element_in_double(k, gx, gy, block):
    """member_grad_sum_sq<float>: member 0's squares of 3e19 and -4e19 (past float32) sum to 2.5e39 plus the rest, not
    infinity (audit49: a float square passed in double)."""
    K, per = 4, 203
    g = rng(13).standard_normal((K, per)).astype(np.float32)
    g[0, [0, 100]] = 3e19, -4e19
    partial = np.zeros((K, gx))  # (each block's sum: member_grad_sum_total adds them)
    k.member_grad_sum_sq_f32(gx, gy, block, g, _hyper(K), K, per, partial)
    close(partial[0].sum(), (g[0].astype(np.float64) ** 2).sum(), SUMS * 2.5e39)
    assert (partial[1:] == 0).all()


@pytest.mark.parametrize("gx, gy, block", MEMBER_SHAPES)
def test_member_clip_grad_scales_or_clamps_each_active_members_row_as_the_cpus_clip(k, gx, gy, block):
    """From the sums of squares: member 0 scaled to its limit (EnsembleOps.clip_gradients' bits), member 2 clamped,
    member 1 (frozen) and 3 (no clip) untouched; then a limit over member 0's norm leaves it too."""
    from gpunn.ops.ensemble import EnsembleOps
    from gpunn.ops.member_rates import MemberRates

    K, per = 4, 203
    g = rng(13).standard_normal((K, per))
    H = _hyper(K)
    sums = np.array([float(np.dot(g[i], g[i])) for i in range(K)])  # (the generic op's own sum of member 0's squares)
    got, want = g.copy(), g.copy()
    k.member_clip_grad(gx, gy, block, got, H, sums, K, per)
    EnsembleOps(Ops(np)).clip_gradients(want, MemberRates(np, H))
    np.testing.assert_array_equal(got[1:], want[1:])
    np.testing.assert_array_equal(got[0], g[0] * (0.5 / (np.sqrt(sums[0]) + 1e-6)))
    assert not np.array_equal(got[2], g[2]) and np.array_equal(got[[1, 3]], g[[1, 3]])
    H[0, 6] = 2 * np.sqrt(sums[0])
    again = g.copy()
    k.member_clip_grad(gx, gy, block, again, H, sums, K, per)
    np.testing.assert_array_equal(again[0], g[0])


# (grid x, grid y, block x): more threads than any stream's blocks, one block of 32 threads walking every stream,
# and grids whose loops wrap in x and in y
PHILOX_SHAPES = [(64, 8, 256), (1, 1, 32), (3, 2, 64)]


@pytest.mark.parametrize("gx, gy, block", PHILOX_SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["double", "float"])
@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_philox_draws_give_each_stream_the_first_values_of_its_own_draw(k, gx, gy, block, dtype, kind):
    """kernels/random.cu: stream s fills its run of the output with the first values of draw d_s under key K_s
    (tests/philox_reference.py's), whatever the launch shape: streams of 0 and 1 values, lengths off the 4 (float) or
    2 (double) values of a Philox block, a draw number past 2^32, and nothing written past the last stream."""
    import philox_reference as ref

    sizes = [37, 0, 1, 203, 6]
    keys = [0x0123456789ABCDEF, 7, 2**64 - 1, 0xFEDCBA9876543210, 0]
    draws = [0, 3, 1, 2**32 + 1, 0]
    starts = np.cumsum([0] + sizes[:-1])
    table = np.array([[key, draw, start] for key, draw, start in zip(keys, draws, starts)], np.uint64)
    n = sum(sizes)
    out = np.full(n + 5, np.nan, dtype)  # 5 past the end, which no thread may write
    low, scale = (-np.pi, 2 * np.pi) if kind == "uniform" else (0.0, 1.0)
    k.philox(int(dtype == np.float64), int(kind == "uniform"), gx, gy, block, table, len(sizes), n, low, scale, out)
    want = np.concatenate([ref.draw(kind, key, draw, size, dtype, dtype(low), dtype(scale))
                           for key, draw, size in zip(keys, draws, sizes)])
    assert np.isnan(out[n:]).all()
    if kind == "normal":  # NumPy's log, cos and sin against the C library's: float32 always, float64 where NumPy runs
        # its own SIMD loops (AVX-512 on this session's Xeon: 1 ulp apart in some values, where an AMD EPYC's matched)
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(out[:n], want, rtol=8 * eps, atol=2 * eps)
    else:
        np.testing.assert_array_equal(out[:n], want)


@BOTH_ORDERS  # block_sum's warps meet in shared memory
@pytest.mark.parametrize("grid, block", SHAPES_1D + [(2, 1024)])
@pytest.mark.parametrize("n", [1, 200, 1000])
def test_clip_norm_sums_each_blocks_squares_then_all_in_one_block_then_scales_every_element(k, schedule, grid, block,
                                                                                            n):
    """clip_sum_sq's per-block sums (a block's elements are those of its grid-stride loop), clip_factor's total and
    factor (one block, more threads than sums and fewer), clip_scale over every element: Ops.clip_grad_norm's
    arithmetic, to the order of the sum."""
    g = rng(9).standard_normal(n) * 2
    partial = np.full(grid, np.nan)
    k.clip_sum_sq(grid, block, g, n, partial)
    block_of = (np.arange(n) // block) % grid
    close(partial, [np.sum(g[block_of == b] ** 2) for b in range(grid)], SUMS)
    norm = np.sqrt(np.sum(g**2))
    for max_norm in (norm / 3, norm * 2):
        for threads in (32, 256):
            factor = np.array([np.nan])
            k.clip_factor(threads, partial, grid, max_norm, factor)
            close(factor[0], min(max_norm / (norm + 1e-6), 1.0), SUMS)
        scaled = g.copy()
        k.clip_scale(grid, block, scaled, factor, n)
        close(scaled, g * factor[0])  # (every element, the loop wrapping where the grid is short)
        expected = g.copy()
        Ops(np).clip_grad_norm(expected, max_norm)
        close(scaled, expected, SUMS)


@pytest.mark.parametrize("grid, block", SHAPES_1D)
def test_the_float_clip_kernels_square_in_double_and_scale_by_the_factor_rounded_once_to_float(k, grid, block):
    """clip_sum_sq<float> squares each element in double: 3e19 and -4e19 (squares past float32) sum to 2.5e39, not
    infinity (which makes the factor 0: the step zeroed); clip_scale<float> multiplies by float(factor), the
    reference's g * factor cast to g's dtype, bit for bit, not by the double factor (audit49: both passed in double)."""
    g = rng(11).standard_normal(300).astype(np.float32)
    g[[0, 150]] = 3e19, -4e19
    partial = np.full(grid, np.nan)
    k.clip_sum_sq_f32(grid, block, g, g.size, partial)
    close(partial.sum(), (g.astype(np.float64) ** 2).sum(), SUMS * 2.5e39)
    factor = np.array([0.1])
    scaled = rng(11).standard_normal(300).astype(np.float32)
    want = scaled * np.float32(0.1)
    assert want.tobytes() != (scaled.astype(np.float64) * 0.1).astype(np.float32).tobytes()  # (the two roundings)
    k.clip_scale_f32(grid, block, scaled, factor, scaled.size)
    assert scaled.tobytes() == want.tobytes()


@pytest.mark.parametrize("grid, block", SHAPES_1D)
def test_clip_by_value_clamps_every_element_keeping_a_nan(k, grid, block):
    g = rng(10).standard_normal(300)
    g[[3, 150, 299]] = np.nan, np.inf, -np.inf
    out = g.copy()
    k.clip_by_value(grid, block, out, 0.4, g.size)
    np.testing.assert_array_equal(out, np.clip(g, -0.4, 0.4))

