"""The operations of an ensemble's training step, with a member axis.

An :class:`gpunn.Ensemble` of K members stacks each layer's activations as (K, rows, n) arrays
and keeps member k's parameters as the k-th row of a (K, P) view of one flat buffer, laid out
as one MLP's flat buffer (so a bias is a (K, n) view whose rows lie P values apart). These
methods do for all K members what ``gpunn.ops.base.Ops`` does for one model, with the same
arithmetic per member, so that member k trains exactly as ``MLP(seed=seed + k)`` would.

``EnsembleOps`` is the generic reference, written against ``xp`` through the single-model
``Ops`` it wraps; ``gpunn.ops.ensemble_cuda.CupyEnsembleOps`` overrides it with the kernels of
``kernels/ensemble.cu``; this module's ``CpuEnsembleOps`` with Numba loops over members that
call the single-model kernels of ``gpunn.ops.cpu``. As with ``Ops``, every method writes into
caller-owned buffers and none synchronises with the host.

The optimizer's per-member settings are :class:`gpunn.ops.member_rates.MemberRates`: a (K, HYPER_FIELDS) float64
table (learning rate for the epoch, weight decay, momentum, beta1, beta2, active, clip_norm, clip_value), kept on the
host for the CPU and copied once per epoch to the device for the kernels (kernels/ensemble.cuh). Each optimizer step
first clips each active member's gradient row by its own clip_norm or clip_value (``clip_gradients``).
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
import weakref

import numpy

from ..activations import ACTIVATIONS, Activation
from ..forksafe import ForkSafeLock
from .base import CLIP_EPS, GEMM_INT_MAX, is_bf16, sum_rows_into, sums_of_squares64
from . import denormals
from . import cblas
from .cblas import COL_MAJOR, NO_TRANS, ROW_MAJOR, TRANS, numpy_blas
from .cpu import _FLOATS, _bounds, numba, run_pieces, threads_setting, usable_cores, wait_uninterrupted
# (ENV_BLAS_THREADS, blas_threads_setting, member_blas_threads, MemberRates: re-exported, their home moved)
from .fit_threads import ENV_BLAS_THREADS, blas_threads_setting, member_blas_threads
from .lazynumba import kernels
from .member_rates import (ACTIVE, BETA1, BETA2, CLIP_NORM, CLIP_VALUE, HYPER_FIELDS, LR, MOMENTUM, WEIGHT_DECAY,
                           BetaPowers, MemberRates)
from .ufuncs import numpy_exp, numpy_tanh


def _column(xp, values, dtype):
    """A (K, 1) device column of ``values`` rounded once to ``dtype``: how one model rounds a Python float."""
    return xp.asarray(numpy.asarray(values, dtype=numpy.float64).astype(dtype)[:, None])


class EnsembleOps:
    """Member-axis ops over the single-model ``ops`` (its ``xp``, scratch buffers and kernels)."""

    def __init__(self, ops):
        self.ops = ops
        self.xp = ops.xp

    # ---- matrix products -------------------------------------------------------------
    def member_groups(self, members: int, flops=None, elements=None, one_call=False):
        """Slices of the members that a training step runs on threads of their own, or None (one pass).
        ``flops`` (per member) or ``elements`` (per member, for a memory-bound update): the work, when
        known, below which a group is not worth its thread (CpuEnsembleOps)."""
        return None

    def matmul(self, a, b, out):
        """out = a @ b over the member axis (a or b may be one matrix shared by all members).

        An inner dimension of 1 (the output layer's dA = dZ @ W^T for one output) is an outer
        product: a broadcast multiply, as the single-model CPU path does it. With precision "tf32" or
        bf16 operands the single-model ``Ops.matmul`` computes it (the emulation of tensor cores).
        """
        if self.ops.precision != "float32" or is_bf16(a.dtype):
            return self.ops.matmul(a, b, out)
        if a.shape[-1] == 1 and b.shape[-2] == 1:
            return self.xp.multiply(a, b, out=out)
        return self.xp.matmul(a, b, out=out)

    # ---- forward ---------------------------------------------------------------------
    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        """Z <- Z + b[k] (when keep_z or A is Z) and A <- g(Z + b[k]) for each member k; b is (K, n) or None."""
        return self.ops.bias_activation(Z, None if b is None else b[:, None, :], act, A, keep_z)

    # ---- backward --------------------------------------------------------------------
    def activation_bias_backward(self, dA, act: Activation, source, from_output: bool, dZ, db):
        """dZ <- dA * g'(source); db[k] <- column sums of dZ[k] (when db is not None)."""
        cols = dA.shape[-1]
        # the single-model op on the (K * rows, n) matrix: the same per-element math
        self.ops.activation_backward(dA.reshape(-1, cols), act, source.reshape(-1, cols), from_output,
                                     dZ.reshape(-1, cols))
        if db is not None:
            self.bias_gradient(dZ, db)
        return dZ

    def outer_activation_bias_backward(self, dZ, W, act: Activation, source, from_output: bool, dA, db) -> bool:
        """For a one-column dZ (K, rows, 1) (the output layer's, one output) and W (K, n, 1): dA <- dZ @ W^T,
        then dA <- dA * g'(source) and db[k] <- column sums of dA[k], in one pass where a fused kernel does it.
        False (nothing written) where none does: the caller then runs the product and activation_bias_backward."""
        return False

    def bias_gradient(self, dZ, db):
        """db[k] <- column sums of dZ[k], summed in float64 as the kernel sums them (a bf16 dZ into a float32 db)."""
        return sum_rows_into(self.xp, dZ, db, axis=1)

    def loss_gradient(self, A, Y, dA, out=None, weights=None):
        """dA <- (2/m)(A - Y); returns each member's sum((A - Y)^2) as a (K,) float64 device array
        (written into ``out`` when given: a CUDA graph's fixed buffer).

        A is (K, m, n); Y is (m, n) (shared by the members) or (K, m, n). ``weights``, one a row (gpunn.sample_weights),
        (m,) shared or (K, m): dA <- (2/m) w (A - Y), and each member's sum of w (A - Y)^2, with the roundings of
        ``Ops.loss_gradient(weights=)`` (its float64 dot product of w (A - Y) and (A - Y), per member).
        """
        xp = self.xp
        xp.subtract(A, Y, out=dA)
        if weights is None:
            sums = self._member_sums_of_squares(dA)
        else:
            D = dA.astype(numpy.float64)
            Dw = (D * weights.astype(numpy.float64)[..., None]).reshape(D.shape[0], 1, -1)
            sums = xp.matmul(Dw, D.reshape(D.shape[0], -1, 1))[:, 0, 0]
        dA *= 2.0 / max(A.shape[1], 1)  # a data-parallel rank may get an empty last batch
        if weights is not None:
            dA *= weights[..., None]
        if out is not None:
            out[...] = sums
            return out
        return sums

    def squared_error(self, A, Y):
        """Each member's sum((A - Y)^2) as a (K,) float64 device array."""
        diff = self.ops.scratch(A.shape, A.dtype)
        self.xp.subtract(A, Y, out=diff)
        return self._member_sums_of_squares(diff)

    def _member_sums_of_squares(self, D):
        """Each member's sum of D's squares, formed in float64, as a (K,) float64 array."""
        return sums_of_squares64(self.xp, D.reshape(D.shape[0], -1))

    # ---- optimizer updates over the (K, P) parameter rows ------------------------------
    def clip_gradients(self, g, rates: MemberRates):
        """Each active member's gradient row ``g[k]`` clipped in place by its own setting (the table's CLIP_NORM,
        CLIP_VALUE; 0: none), as its MLP's optimizer clips: by norm c, g[k] *= min(c / (||g[k]|| + 1e-6), 1), the
        2-norm of the member's whole row (every dW and db), its squares summed in float64 (torch's
        clip_grad_norm_); by value v, each element into [-v, v]. The optimizer steps below call it first."""
        rows = self._active_rows(rates) if rates.clips else None
        if rows is None:
            return g
        xp, dt, G, table = self.xp, g.dtype, g[rows], self._active_table(rates, rows)
        limit = table[:, CLIP_NORM]
        if limit.any():
            coef = xp.asarray(limit) / (xp.sqrt(sums_of_squares64(xp, G)) + CLIP_EPS)
            G *= xp.where(xp.asarray(limit > 0) & ~(coef >= 1), coef, 1.0).astype(dt)[:, None]  # (NaN: all NaN, as torch)
        value = table[:, CLIP_VALUE]
        if value.any():
            bound = _column(xp, numpy.where(value > 0, value, numpy.inf), dt)
            xp.clip(G, -bound, bound, out=G)
        if rows is not Ellipsis:  # fancy indexing copied the active rows: write them back
            g[rows] = G
        return g

    def sgd_step(self, w, g, velocity, rates: MemberRates, nesterov: bool):
        """Each active member's PyTorch SGD step (``Ops.sgd_step`` with its own lr, momentum, decay), after
        clip_gradients."""
        rows = self._active_rows(rates)
        if rows is None:
            return w
        xp, dt = self.xp, w.dtype
        table = self._active_table(rates, rows)
        W, G = w[rows], self.clip_gradients(g, rates)[rows]
        V = None if velocity is None else velocity[rows]
        if table[:, WEIGHT_DECAY].any():
            G = xp.add(G, _column(xp, table[:, WEIGHT_DECAY], dt) * W)
        lr = _column(xp, table[:, LR], dt)
        if V is None:
            W -= lr * G
        else:
            V *= _column(xp, table[:, MOMENTUM], dt)
            V += G
            if nesterov:
                step = V * _column(xp, table[:, MOMENTUM], dt)
                step += G
            else:
                step = V
            W -= lr * step
        if rows is not Ellipsis:  # fancy indexing copied the active rows: write them back
            w[rows] = W
            if V is not None:
                velocity[rows] = V
        return w

    def adam_step(self, w, g, m, v, rates: MemberRates, eps, step, decoupled: bool):
        """Each active member's Adam/AdamW step at ``step`` (``Ops.adam_step`` with its own settings), after
        clip_gradients."""
        rows = self._active_rows(rates)
        if rows is None:
            return w
        xp, dt = self.xp, w.dtype
        table = self._active_table(rates, rows)
        W, G, M, V = w[rows], self.clip_gradients(g, rates)[rows], m[rows], v[rows]
        lr, wd = table[:, LR], table[:, WEIGHT_DECAY]
        beta1, beta2 = table[:, BETA1], table[:, BETA2]
        if wd.any() and decoupled:
            W *= _column(xp, 1.0 - lr * wd, dt)
        elif wd.any():
            G = xp.add(G, _column(xp, wd, dt) * W)
        M *= _column(xp, beta1, dt)
        tmp = G * _column(xp, 1.0 - beta1, dt)
        M += tmp
        V *= _column(xp, beta2, dt)
        xp.multiply(G, G, out=tmp)
        tmp *= _column(xp, 1.0 - beta2, dt)
        V += tmp
        bias_c1, bias_c2 = 1.0 - BetaPowers.of(beta1, step), 1.0 - BetaPowers.of(beta2, step)
        xp.sqrt(V, out=tmp)
        tmp *= _column(xp, 1.0 / numpy.sqrt(bias_c2), dt)
        tmp += eps
        xp.divide(M, tmp, out=tmp)
        tmp *= _column(xp, lr / bias_c1, dt)
        W -= tmp
        if rows is not Ellipsis:
            w[rows], m[rows], v[rows] = W, M, V
        return w

    def group_pass(self, X, Y, weights, biases, dW, db, acts, ws, sums, update=None, weighted=False):
        """A member group's whole training pass (and ``update``) as one call per group (CpuEnsembleOps); None here.
        ``weighted``: Y's last column is each row's weight (gpunn.sample_weights)."""
        return None

    def one_call_applies(self, X, Y, weights, biases, acts, weighted=False) -> bool:
        """Whether group_pass gives a function for these arguments (False here)."""
        return False

    def adam_members(self, w, g, m, v, rates: MemberRates, eps, step, decoupled: bool):
        """adam_step as a function of a slice of the members (CpuEnsembleOps); None here: no such form."""
        return None

    def forget_kept(self):
        """Drops what is kept between steps for an optimizer's arrays (CpuEnsembleOps: adam_members' _MemberAdam)."""

    def adam_step_dev(self, w, g, m, v, rates: MemberRates, eps, state, decoupled: bool):
        """adam_step at the step t = state[0], a float64 device array (a CUDA graph's step counter, advanced
        by ``Ops.optimizer_tick``); here read back, the eager form of the graph's launch."""
        return self.adam_step(w, g, m, v, rates, eps, int(state[0]), decoupled)

    def _active_rows(self, rates):
        """Ellipsis when every member trains, None when none does, else the active rows' indices (an array of
        ``xp``: on a GPU a device array, which indexes the device's (K, P) rows but not the host table)."""
        active = rates.active
        if active.all():
            return Ellipsis
        if not active.any():
            return None
        return self.xp.asarray(numpy.flatnonzero(active))

    @staticmethod
    def _active_table(rates, rows):
        """The host table's rows of ``rows`` (_active_rows'), by the host mask of the same rows in the same order:
        the device indices would be read back (CuPy refuses the implicit conversion), a sync per step."""
        return rates.host if rows is Ellipsis else rates.host[rates.active]


# ---- the CPU: Numba loops over members around the single-model kernels ----------------------
# The hidden-layer activations the member-group pass computes, by their kernel ids (gpunn.activations): ReLU with its
# fused kernels; tanh and sigmoid in Ops.bias_activation's and Ops.activation_backward's arithmetic, numpy.tanh and
# numpy.exp called as NumPy's own loops (gpunn.ops.ufuncs)
RELU, SIGMOID, TANH = (ACTIVATIONS[name].kernel_id for name in ("relu", "sigmoid", "tanh"))
# The columns of the group pass's table of hidden layers: the activation's kernel id; 1 where the layer's forward
# product is CpuOps.matmul's small-k product (_small_k_matmul, not BLAS: a single model's, gpunn.ops.mlp_step)
LAYER_ACTIVATION, LAYER_SMALL_K = 0, 1
# The rows of the group pass's table of NumPy loops (each [loop, data]: gpunn.ops.ufuncs); a row no layer calls is 0
LOOP_TANH, LOOP_EXP = 0, 1


def group_pass_activations(acts, dtype):
    """(loops, layers) for _member_group_pass: NumPy's loops for ``dtype`` (int64, rows LOOP_TANH and LOOP_EXP:
    gpunn.ops.ufuncs.numpy_tanh's where a hidden layer is tanh, numpy_exp's where one is sigmoid) and the hidden
    layers' table (int64, a row per layer: LAYER_ACTIVATION, the activation's id; LAYER_SMALL_K, 0: each product by
    BLAS); None where a hidden layer's activation (all of ``acts`` but the output layer's) is not ReLU, tanh or
    sigmoid, or is one whose NumPy loop could not be bound."""
    layers = numpy.zeros((len(acts) - 1, 2), numpy.int64)
    layers[:, LAYER_ACTIVATION] = [a.kernel_id for a in acts[:-1]]
    if not numpy.isin(layers[:, LAYER_ACTIVATION], (RELU, SIGMOID, TANH)).all():
        return None
    loops = numpy.zeros((2, 2), numpy.int64)
    for kind, row, find in ((TANH, LOOP_TANH, numpy_tanh), (SIGMOID, LOOP_EXP, numpy_exp)):
        if (layers[:, LAYER_ACTIVATION] == kind).any():
            loop = find(dtype)
            if loop is None:
                return None
            loops[row] = loop
    return loops, layers


KERNELS = ("_member_bias_relu", "_member_column_sums", "_member_relu_backward_bias", "_outer_relu_backward_bias",
           "_member_outer_relu_backward_bias", "_bias_activation_inplace", "_derivative_from_output",
           "_activation_backward_bias", "_outer_backward_bias", "_member_adam", "_adam_row", "_member_adam_in_pass",
           "_member_group_pass", "_wait_for", "_store_and_wait", "_member_clip")


@kernels(KERNELS)
def _define():
    """Defines the member kernels (gpunn.ops.lazynumba), after the single-model ones they call: at the first call of
    one."""
    global _member_bias_relu, _member_column_sums, _member_relu_backward_bias, _outer_relu_backward_bias
    global _member_outer_relu_backward_bias, _bias_activation_inplace, _derivative_from_output
    global _activation_backward_bias, _outer_backward_bias, _member_adam, _adam_row, _member_adam_in_pass
    global _member_group_pass, _wait_for, _store_and_wait, _member_clip
    global _adam, _adam_l2, _clip_row, _bias_relu_inplace, _column_sums, _relu_backward_bias_inplace, _small_k_matmul
    global loop_inplace
    from numba import njit

    from . import cpu, ufuncs
    from .cpu import _jit

    single = {**cpu._define(), **ufuncs._define()}
    cblas._define()
    # the kernels themselves as this module's globals, which Numba compiles the calls to: as defined, not what the
    # modules' names hold now (a test's monkeypatch there would stay here after the test)
    _adam, _adam_l2, _bias_relu_inplace, _column_sums = single["_adam"], single["_adam_l2"], \
        single["_bias_relu_inplace"], single["_column_sums"]
    _relu_backward_bias_inplace, _small_k_matmul = single["_relu_backward_bias_inplace"], single["_small_k_matmul"]
    _clip_row = single["_clip_row"]  # (one model's clip: a member's row is clipped as one MLP's gradient)
    loop_inplace = single["loop_inplace"]

    @njit(**_jit)
    def _member_bias_relu(Z, b):
        """Z[k] <- max(Z[k] + b[k], 0) for every member k (in place)."""
        for k in range(Z.shape[0]):
            _bias_relu_inplace(Z[k], b[k], 0, Z.shape[1])

    @njit(**_jit)
    def _member_column_sums(dZ, db):
        """db[k] <- the column sums of dZ[k] (in float64, rounded once), for every member k."""
        for k in range(dZ.shape[0]):
            _column_sums(dZ[k], db[k], 0, dZ.shape[1])

    @njit(**_jit)
    def _member_relu_backward_bias(dZ, source, db):
        """dZ[k] <- dZ[k] * [source[k] > 0] and db[k] <- its column sums, for every member k."""
        for k in range(dZ.shape[0]):
            _relu_backward_bias_inplace(dZ[k], source[k], db[k], 0, dZ.shape[1])

    @njit(**_jit)
    def _outer_relu_backward_bias(dz, w, S, D, sums):
        """D <- (dz outer w) * [S > 0] and sums <- its column sums (in row order): the numpy outer product
        followed by _relu_backward_bias_inplace, element for element (the sums in float64)."""
        acc = numpy.zeros(D.shape[1], numpy.float64)
        for i in range(D.shape[0]):
            a = dz[i]
            for j in range(D.shape[1]):
                d = (a * w[j]) * (S[i, j] > 0)
                D[i, j] = d
                acc[j] += d
        sums[:] = acc

    @njit(**_jit)
    def _member_outer_relu_backward_bias(dz, w, S, D, db):
        """_outer_relu_backward_bias for every member k: dz (K, rows), w (K, n), S and D (K, rows, n), db (K, n)."""
        for k in range(D.shape[0]):
            _outer_relu_backward_bias(dz[k], w[k], S[k], D[k], db[k])

    @njit(**_jit)
    def _bias_activation_inplace(Z, b, kind, loops, one):
        """Z <- g(Z + b) in place for a hidden layer's activation ``kind`` (RELU, TANH or SIGMOID), in
        Ops.bias_activation's arithmetic: ReLU by its kernel; tanh(Z + b) and sigmoid's 1 / (1 + e^-(Z + b))
        (gpunn.activations) with NumPy's own tanh and exp loops (``loops``: gpunn.ops.ufuncs), each operation
        rounded to Z's dtype as NumPy's ufuncs round it (``one``: 1 in that dtype)."""
        if kind == RELU:
            _bias_relu_inplace(Z, b, 0, Z.shape[0])
            return
        sigmoid = kind == SIGMOID
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                z = Z[i, j] + b[j]
                Z[i, j] = -z if sigmoid else z
        loop_inplace(loops[LOOP_EXP] if sigmoid else loops[LOOP_TANH], Z)
        if sigmoid:
            for i in range(Z.shape[0]):
                for j in range(Z.shape[1]):
                    Z[i, j] = one / (Z[i, j] + one)

    @njit(**_jit)
    def _derivative_from_output(a, tanh, one):
        """g'(Z) from the layer's output A = g(Z): tanh's 1 - A * A or sigmoid's A * (1 - A), formed as
        gpunn.activations forms them (each operation rounded to A's dtype)."""
        return (one - a * a) if tanh else (a * (one - a))

    @njit(**_jit)
    def _activation_backward_bias(dZ, S, sums, kind, one):
        """dZ <- dZ * g'(A) in place, from the layer's output S = A, and sums <- dZ's column sums (in row order, in
        float64, rounded once): ReLU by its kernel; tanh's 1 - A * A and sigmoid's A * (1 - A) formed as
        gpunn.activations forms them, then the product, as Ops.activation_backward; the sums as _column_sums."""
        if kind == RELU:
            _relu_backward_bias_inplace(dZ, S, sums, 0, dZ.shape[0])
            return
        acc, tanh = numpy.zeros(dZ.shape[1], numpy.float64), kind == TANH
        for i in range(dZ.shape[0]):
            for j in range(dZ.shape[1]):
                d = dZ[i, j] * _derivative_from_output(S[i, j], tanh, one)
                dZ[i, j] = d
                acc[j] += d
        sums[:] = acc

    @njit(**_jit)
    def _outer_backward_bias(dz, w, S, D, sums, kind, one):
        """D <- (dz outer w) * g'(A) from the layer's output S = A, and sums <- D's column sums: the product (one term
        per element) followed by _activation_backward_bias, element for element."""
        if kind == RELU:
            _outer_relu_backward_bias(dz, w, S, D, sums)
            return
        acc, tanh = numpy.zeros(D.shape[1], numpy.float64), kind == TANH
        for i in range(D.shape[0]):
            x = dz[i]
            for j in range(D.shape[1]):
                d = (x * w[j]) * _derivative_from_output(S[i, j], tanh, one)
                D[i, j] = d
                acc[j] += d
        sums[:] = acc

    @njit(**_jit)
    def _member_clip(g, rates, active):
        """_clip_row on each active member's row of g (K, P), with its table row's CLIP_NORM and CLIP_VALUE."""
        c = numpy.empty(1, g.dtype)
        for k in range(g.shape[0]):
            if active[k]:
                _clip_row(g[k], rates[k, CLIP_NORM], rates[k, CLIP_VALUE], c)

    @njit(**_jit)
    def _member_adam(w, g, m, v, beta1, omb1, beta2, omb2, inv_sqrt_bc2, eps, lr_bc1, decay, l2, active):
        """The single-model Adam kernel on each active member's row, with its own scalars."""
        n = w.shape[1]
        for k in range(w.shape[0]):
            if not active[k]:
                continue
            if l2:
                _adam_l2(w[k], g[k], m[k], v[k], beta1[k], omb1[k], beta2[k], omb2[k], inv_sqrt_bc2[k], eps,
                         lr_bc1[k], decay[k], 0, n)
            else:
                _adam(w[k], g[k], m[k], v[k], beta1[k], omb1[k], beta2[k], omb2[k], inv_sqrt_bc2[k], eps,
                      lr_bc1[k], 0, n)


    @njit(**_jit)
    def _adam_row(w, g, m, v, rate, pow1, pow2, eps, l2, c, lo, hi):
        """One member's Adam on elements lo..hi of its rows w, g, m, v: the constants of adam_members (_MemberAdam)
        formed from its row ``rate`` of the members' table and beta1**step, beta2**step (``pow1``, ``pow2``, which
        NumPy formed), the same float64 arithmetic rounded once to the rows' dtype (through ``c``, scratch of that
        dtype), then the single-model kernel."""
        b1, b2 = rate[BETA1], rate[BETA2]
        c[0], c[1], c[2], c[3] = b1, 1.0 - b1, b2, 1.0 - b2
        c[4] = 1.0 / numpy.sqrt(1.0 - pow2)
        c[5] = rate[LR] / (1.0 - pow1)
        c[6] = rate[WEIGHT_DECAY]
        if l2:
            _adam_l2(w, g, m, v, c[0], c[1], c[2], c[3], c[4], eps, c[5], c[6], lo, hi)
        else:
            _adam(w, g, m, v, c[0], c[1], c[2], c[3], c[4], eps, c[5], lo, hi)

    @njit(**_jit)
    def _member_adam_in_pass(k, w, g, m, v, rates, pow1, pow2, eps, flags, c):
        """The group pass's Adam step of its member k (flags: [run it, coupled L2, AdamW]): its gradient row
        clipped (_clip_row, by the table's CLIP_NORM and CLIP_VALUE), AdamW's w *= 1 - lr * wd, then Adam on every
        element of the member's row."""
        if not flags[0] or rates[k, ACTIVE] == 0:
            return
        _clip_row(g[k], rates[k, CLIP_NORM], rates[k, CLIP_VALUE], c)
        row = w[k]
        if flags[2]:
            c[0] = 1.0 - rates[k, LR] * rates[k, WEIGHT_DECAY]
            s = c[0]
            for i in range(row.size):
                row[i] *= s
        _adam_row(row, g[k], m[k], v[k], rates[k], pow1[k], pow2[k], eps, flags[1], c, 0, row.size)

    @njit(**_jit)
    def _member_group_pass(blas, loops, layers, X, Y, W, b, dW, db, Zo, dAo, sums, one, zero, scale, aw, ag, am, av,
                           rates, pow1, pow2, eps, flags, Zh, dAh, d64, k0, k1, signal, slot, value):
        """Members k0..k1's forward and backward pass, member after member, with no Python (and no GIL)
        between its products: the arithmetic of Ensemble._forward and _backward for ReLU, tanh or sigmoid hidden
        layers with bias (``layers``: each hidden layer's RELU, TANH or SIGMOID and whether its forward product is a
        small-k one; ``loops``: NumPy's tanh and exp loops; from group_pass_activations), an identity output layer of
        one column, each product the BLAS call numpy.matmul makes for it (gemm, gemv, dot at the addresses in ``blas``:
        gpunn.ops.cblas), or for a single model's small-k forward product the kernel CpuOps.matmul calls
        (_small_k_matmul), and each elementwise pass the kernel or NumPy operations those methods run.

        X (1 or K, rows, n0) and Y (1 or K, rows, 1): shared by the K members or one per member; Y (1 or K, rows, 2)
        is a weighted batch's (gpunn.sample_weights), each row's weight its second column: dA = (2/m) w (A - Y) and the
        sum is the float64 dot product of w (A - Y) and (A - Y), EnsembleOps.loss_gradient(weights=)'s roundings. W,
        b, dW, db: tuples of the (K, n_in, n_out) / (K, n_out) parameter and gradient views; Zo, dAo (K, rows, 1): the
        output layer's buffers; sums (K,): each member's sum of squared errors, in float64. Zh, dAh: one
        member's hidden-layer buffers (rows, n), reused by each member of the group in turn (they stay in cache);
        d64: (2 rows,) float64 scratch. The output layer's bias gradient is summed here as bias_gradient sums it
        (_column_sums: in float64, in row order, rounded once). With flags[0], each member's Adam step follows its backward pass (_member_adam_in_pass; aw,
        ag, am, av: the (K, P) rows of the parameters, gradients and moments; rates, pow1, pow2: the members' table
        and beta1**step, beta2**step). On entry, with the GIL released, signal[slot] = value (_SpinningWorkers'
        hand-off)."""
        signal[slot] = value
        c = numpy.empty(7, aw.dtype)
        gemm, gemv, dot, ilp = blas[0], blas[1], blas[2], blas[3]
        L = len(W)
        m = Zo.shape[1]
        for k in range(k0, k1):
            Xk = X[k if X.shape[0] > 1 else 0]
            a, lda = Xk.ctypes.data, Xk.shape[1]
            for l in range(L - 1):  # hidden layers: Z = A_prev @ W (gemm), then bias + activation in place
                Wl, Z = W[l][k], Zh[l]
                n = Z.shape[1]
                if layers[l, LAYER_SMALL_K]:  # as CpuOps.matmul computes k <= SMALL_K into >= 4096 elements
                    _small_k_matmul(Xk if l == 0 else Zh[l - 1], Wl, Z, 0, m)
                else:
                    cblas.gemm(gemm, ilp, ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, lda, one, a, lda, Wl.ctypes.data, n,
                               zero, Z.ctypes.data, n)
                bl = numpy.ascontiguousarray(b[l][k])  # a contiguous row: the loops vectorise
                _bias_activation_inplace(Z, bl, layers[l, LAYER_ACTIVATION], loops, one)
                a, lda = Z.ctypes.data, n
            # the output layer: matrix @ vector, numpy.matmul's gemv (column-major, transposed); + bias
            Zk, dk, Yk = Zo[k], dAo[k], Y[k if Y.shape[0] > 1 else 0]
            cblas.gemv(gemv, ilp, COL_MAJOR, TRANS, lda, m, one, a, lda, W[L - 1][k].ctypes.data, 1, zero,
                       Zk.ctypes.data, 1)
            bo = b[L - 1][k, 0]
            for i in range(m):
                Zk[i, 0] += bo
            # loss_gradient: dA = A - Y; its squares summed in float64 (numpy.matmul's ddot); dA *= 2/rows. Weighted
            # (Y's second column): the ddot of w (A - Y) and (A - Y), each product in float64, and dA *= w after
            weighted = Yk.shape[1] == 2
            for i in range(m):
                d = Zk[i, 0] - Yk[i, 0]
                dk[i, 0] = d
                d64[i] = d
                if weighted:
                    d64[m + i] = numpy.float64(d) * numpy.float64(Yk[i, 1])
            second = d64.ctypes.data + (8 * m if weighted else 0)
            sums[k] = cblas.dot(dot, ilp, m, second, 1, d64.ctypes.data, 1)
            out_bias = 0.0  # db of the output layer: dA's column sum in float64, rounded once (bias_gradient's)
            for i in range(m):
                dk[i, 0] *= scale
                if weighted:
                    dk[i, 0] *= Yk[i, 1]
                out_bias += dk[i, 0]
            db[L - 1][k, 0] = out_bias
            # backward: dW[L-1] = A^T @ dZ (gemv, row-major transposed), dA below = the outer product dZ w^T,
            # fused with the activation's backward and bias sums; then each hidden layer's dW = A_prev^T @ dZ and
            # dA_prev = dZ @ W^T (gemm), with the activation's backward and bias sums of the layer below
            top = L - 2
            cblas.gemv(gemv, ilp, ROW_MAJOR, TRANS, m, Zh[top].shape[1], one, Zh[top].ctypes.data, Zh[top].shape[1],
                       dk.ctypes.data, 1, zero, dW[L - 1][k].ctypes.data, 1)
            _outer_backward_bias(numpy.ascontiguousarray(dk[:, 0]), numpy.ascontiguousarray(W[L - 1][k][:, 0]),
                                 Zh[top], dAh[top], db[top][k], layers[top, LAYER_ACTIVATION], one)
            for l in range(top, -1, -1):
                dZ = dAh[l]
                n = dZ.shape[1]
                if l:
                    A_prev, n_prev = Zh[l - 1].ctypes.data, Zh[l - 1].shape[1]
                else:
                    A_prev, n_prev = Xk.ctypes.data, Xk.shape[1]
                cblas.gemm(gemm, ilp, ROW_MAJOR, TRANS, NO_TRANS, n_prev, n, m, one, A_prev, n_prev, dZ.ctypes.data, n,
                           zero, dW[l][k].ctypes.data, n)
                if l:
                    cblas.gemm(gemm, ilp, ROW_MAJOR, NO_TRANS, TRANS, m, n_prev, n, one, dZ.ctypes.data, n,
                               W[l][k].ctypes.data, n, zero, dAh[l - 1].ctypes.data, n_prev)
                    _activation_backward_bias(dAh[l - 1], Zh[l - 1], db[l - 1][k], layers[l - 1, LAYER_ACTIVATION],
                                              one)
            _member_adam_in_pass(k, aw, ag, am, av, rates, pow1, pow2, eps, flags, c)


    @njit(**_jit)
    def _wait_for(state, column, value, spins, pause):
        """Spin (calling the function at the address ``pause``, sched_yield) until every row's state[:, column] >=
        value, at most ``spins`` rounds, with the GIL released; True when they got there."""
        for _ in range(spins):
            done = True
            for w in range(state.shape[0]):
                if state[w, column] < value:
                    done = False
            if done:
                return True
            cblas.call_int(pause)
        return False

    @njit(**_jit)
    def _store_and_wait(state, store_column, stored, wait_column, value, spins, pause):
        """state[:, store_column] = stored, then _wait_for(state, wait_column, value, ...): both without the GIL,
        so a thread the store releases finds the GIL free when it needs it."""
        for w in range(state.shape[0]):
            state[w, store_column] = stored
        return _wait_for(state, wait_column, value, spins, pause)


GO, STARTED, DONE = range(3)  # the columns of _SpinningWorkers.state: a task's number, its start, its end


def _sched_yield():
    """The address of libc's sched_yield (the pause of the spin loops), or None where there is none."""
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value
    except (OSError, AttributeError, TypeError):  # pragma: no cover - not a POSIX libc
        return None


class _SpinningWorkers:
    """Threads for member groups 2..n that spin, with the GIL released, between one step's group and the next.

    gpunn's pool (run_pieces) wakes its worker through a futex per step; on the 2-core VM that hand-off cost
    the K=64 small-net step ~90 us of its ~1.44 ms (the caller's pass started 50 us into the step and the
    worker's 30 us after that; the caller woke ~40 us after the worker's end). Here the caller stores the
    task's number and spins until each worker's group pass has started (its kernel stores that, with the GIL
    released, so neither thread waits for the GIL in between), runs its own group, then spins until each
    worker has stored its end; a worker spins (sched_yield) up to SPINS_IDLE rounds (about a millisecond)
    for the next task, then sleeps on a condition. Only for the one-call group pass (group_pass), whose
    kernel gives the start signal."""

    SPINS_IDLE = 3000
    SPINS_START = 3000

    def __init__(self, workers: int, pause):
        self.pid, self.pause = os.getpid(), pause
        self.state = numpy.zeros((workers, 3), numpy.int64)
        self.tasks, self.errors, self.sleeping = [None] * workers, [None] * workers, [False] * workers
        self.seq, self.cond, self.busy = 0, threading.Condition(), threading.Lock()
        self.mine = numpy.zeros(3, numpy.int64)  # the caller's own group's (unread) start signal
        for w in range(workers):
            threading.Thread(target=self._loop, args=(w,), daemon=True, name=f"gpunn-members-{w + 1}").start()

    def _loop(self, w):
        row, seen, flush = self.state[w:w + 1], 0, denormals.flush_mode()
        waiting = _wait_for(row, GO, 1, self.SPINS_IDLE, self.pause)
        while True:
            if not waiting:
                with self.cond:
                    while row[0, GO] <= seen:
                        self.sleeping[w] = True
                        self.cond.wait()
                    self.sleeping[w] = False
            seen = int(row[0, GO])
            fn, group, errors, caller_flush = self.tasks[w]
            if caller_flush != flush:  # the caller's subnormal mode (gpunn.ops.cpu.run_pieces says why)
                denormals.follow(caller_flush)
                flush = caller_flush
            try:
                if errors is None:  # a task that calls no NumPy (a kernel alone): no errstate to carry
                    fn(group, signal=(self.state[w], STARTED, seen))
                else:
                    with numpy.errstate(**errors):
                        fn(group, signal=(self.state[w], STARTED, seen))
            except BaseException as exc:  # the caller raises it
                self.errors[w] = exc
            fn = group = None  # keep nothing of the step (its closure holds the batch's workspace) while idle
            # the end stored, then the next task awaited, both without the GIL
            waiting = _store_and_wait(row, DONE, seen, GO, seen + 1, self.SPINS_IDLE, self.pause)

    def run(self, fn, groups, errstate=True) -> bool:
        """fn(group, signal=...) for every group, the first on the calling thread; False (nothing run) when
        another thread is using the workers. The workers run fn in the caller's subnormal mode (FTZ/DAZ), and
        under its numpy.errstate unless ``errstate`` is False (a function that calls no NumPy)."""
        if len(groups) != len(self.tasks) + 1:  # a worker without a task would die outside its try, unwaited for
            raise ValueError(f"{len(groups)} member groups for the caller and {len(self.tasks)} spinning workers")
        if not self.busy.acquire(blocking=False):
            return False
        try:
            self.seq += 1
            seq, errors, flush = self.seq, (numpy.geterr() if errstate else None), denormals.flush_mode()
            for w, group in enumerate(groups[1:]):
                self.tasks[w] = (fn, group, errors, flush)
            try:
                if any(self.sleeping):
                    with self.cond:
                        self.state[:, GO] = seq
                        self.cond.notify_all()
                else:
                    _store_and_wait(self.state, GO, seq, STARTED, seq, self.SPINS_START, self.pause)
                    with self.cond:  # one that went to sleep just before the store
                        if any(self.sleeping):
                            self.cond.notify_all()
                fn(groups[0], signal=(self.mine, STARTED, seq))
            finally:  # every group ended, also where the caller's raised or an exception comes meanwhile (a Ctrl-C
                # in the spin above is raised as it returns); where none was handed over (GO is stored in one step,
                # for every worker at once), none is waited for
                try:
                    if self.state[0, GO] == seq:
                        wait, settled = functools.partial(self._wait_done, seq), functools.partial(self._done, seq)
                        try:
                            wait_uninterrupted(wait, settled)
                        except BaseException:  # one that came as the wait began, before its try: wait, then raise it
                            wait_uninterrupted(wait, settled)
                            raise
                finally:  # also where the wait raises what came meanwhile
                    self.tasks = [None] * len(self.tasks)
                    # this step's, and only its: where the caller's raised, the workers' are dropped with the step
                    errors, self.errors = self.errors, [None] * len(self.errors)
            for exc in errors:
                if exc is not None:
                    raise exc
            return True
        finally:
            self.busy.release()


    def _done(self, seq) -> bool:
        """Whether every worker has stored the end of task ``seq``: a check that neither blocks nor fails."""
        return bool((self.state[:, DONE] >= seq).all())

    def _wait_done(self, seq):
        """Until every worker has stored the end of task ``seq``, waking any asleep: a Ctrl-C may have come between
        run's store of the task and its notify."""
        while not _wait_for(self.state, DONE, seq, self.SPINS_IDLE, self.pause):
            if any(self.sleeping):
                with self.cond:
                    self.cond.notify_all()
            time.sleep(50e-6)


_SPINNERS: dict = {}
# A child forked while another thread made spinning workers gets a new lock, and makes workers of its own
# (_spinning_workers), as it makes pools (gpunn.ops.cpu).
_SPINNERS_LOCK = ForkSafeLock()


def _spinning_workers(workers: int):
    """The process's _SpinningWorkers with ``workers`` threads (made again in a forked child), or None without
    Numba or sched_yield."""
    if numba is None:
        return None
    with _SPINNERS_LOCK.current:
        pool = _SPINNERS.get(workers)
        if pool is None or pool.pid != os.getpid():
            pause = _sched_yield()
            pool = _SPINNERS[workers] = _SpinningWorkers(workers, pause) if pause is not None else None
        return pool


def _contiguous_floats(*arrays) -> bool:
    dtype = arrays[0].dtype
    return dtype in _FLOATS and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


# Member groups pay a hand-off to their threads (run_pieces) per step: below this much work per group
# they cost more than they save. Measured on the 2-core machine (2026-11-29, gpunn bench --ensemble K,
# member-samples/s with two groups against one pass): small nets (16-64-64-1, batch 128, 4 MFLOP per
# member and step) K=2 0.88M / 2.04M, K=4 1.62M / 2.45M, K=8 (16 MFLOP per group) 2.42M / 2.72M,
# K=16 (33 MFLOP) 3.26M / 2.93M, K=64 4.45M / 2.90M; medium nets (128 MFLOP per member) gain at K=2 already
# (0.33M / 0.24M).
MIN_GROUP_FLOPS = 24e6
# With the one-call group pass on spinning threads (group_pass, _SpinningWorkers) the hand-off costs far less:
# small nets with groups against the rule above (gpunn's bench data, batch 128, quiet runs of 6 alternating
# pairs, 2026-11-29): K=8 (16 MFLOP per group) 3.38-4.16M / 2.74-2.76M, K=6 (12 MFLOP) 4.25M / 2.66M; K=4
# (8 MFLOP) 3.44-3.45M / 2.45-2.50M in two runs but 2.32M / 2.40M in a third, K=2 as often slower as faster.
# Since session 16 the unsplit step is one call too (Ensemble._one_pass). Fits of the ensemble alone, 4 alternating
# pairs (2026-11-30): two groups still won from K=4 (3.8-4.2M / 2.8-2.9M; K=6 5.0M / 3.1M; K=16 6.0-6.2M / 3.3M),
# but right after sequential MLP fits they lost at K=6 (2.4-2.8M / 3.1M): an MLP's small-net products run on
# OpenBLAS's own threads, whose worker spins ~100 ms after its last call, on the core a group's thread needs.
MIN_GROUP_FLOPS_ONE_CALL = 12e6
MIN_GROUP_ELEMENTS = 65536  # the optimizer's update (memory-bound): parameters per group
SPIN = True  # the one-call group pass hands its groups to _SpinningWorkers (False: gpunn's pool)


# the per-op methods of a step that group_pass's one call does the work of
_STANDS_IN_FOR = frozenset(("matmul", "unsplit_matmul", "bias_activation", "activation_bias_backward",
                            "outer_activation_bias_backward", "bias_gradient", "loss_gradient", "adam_step"))


class CpuEnsembleOps(EnsembleOps):
    """EnsembleOps with the single-model Numba kernels looped over members (when Numba is installed).

    A training step runs ``threads`` groups of members (GPUNN_CPU_THREADS when set, else every core this
    process may use), each its whole forward and backward pass on a thread of its own (member_groups,
    run_groups; BLAS itself on one thread: member_blas_threads). Outside a step (predict, evaluation)
    each batched product is split into the same groups instead. Whole passes per group took K=64
    small nets from 3.7M to 4.9M member-samples/s on the idle 2-core machine against one split per
    product (one synchronisation per step instead of seven, the elementwise passes in parallel too).
    Where the network allows, a group's whole pass is one Numba call into NumPy's BLAS (group_pass).
    """

    def __init__(self, ops):
        super().__init__(ops)
        threads = threads_setting()
        self.threads = usable_cores() if threads is None else threads
        self._member_adam = None  # adam_members' last answer

    def __getattr__(self, name):
        # only for an attribute not set: ``fused``, the single-model ops', read at its first read rather than in the
        # constructor, where reading it would import Numba (gpunn.ops.cpu.CpuOps decides it at its first read)
        if name != "fused":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        # Numba imported now (CpuOps.kernels_now): the member kernels have no stand-in
        self.fused = fused = bool(getattr(self.ops, "fused", False)) and numba is not None and \
            self.ops.kernels_now(same_bits=False)
        return fused

    def member_groups(self, members: int, flops=None, elements=None, one_call=False):
        """``threads`` contiguous slices of the members (None for one thread or one member, or for work
        per group under MIN_GROUP_FLOPS / MIN_GROUP_ELEMENTS when ``flops`` / ``elements`` per member
        is given; MIN_GROUP_FLOPS_ONE_CALL for a step that runs its groups as one call each, ``one_call``)."""
        parts = min(self.threads, members)
        if parts <= 1:
            return None
        per_group = members / parts
        if (flops is not None and per_group * flops < (MIN_GROUP_FLOPS_ONE_CALL if one_call else MIN_GROUP_FLOPS)) or \
                (elements is not None and per_group * elements < MIN_GROUP_ELEMENTS):
            return None
        bounds = _bounds(members, parts)
        return [slice(bounds[t], bounds[t + 1]) for t in range(parts)]

    def run_groups(self, fn, groups, signals=False, errstate=True):
        """fn(group) for every group, the first on the calling thread. A pool of its own, not the one the
        single-model kernels a group calls may split their work over. ``signals``: fn takes ``signal=``, which
        it passes to the group pass (group_pass), and the groups run on _SpinningWorkers (``errstate`` False: fn
        calls no NumPy, so they need not carry the caller's numpy.errstate)."""
        if signals and SPIN:
            workers = _spinning_workers(len(groups) - 1)
            if workers is not None and workers.run(fn, groups, errstate):
                return
        run_pieces(fn, [(g,) for g in groups], name="members")

    def unsplit_matmul(self, a, b, out):
        """The product on the calling thread (inside a member group)."""
        return super().matmul(a, b, out)

    def matmul(self, a, b, out):
        groups = self.member_groups(out.shape[0] if out.ndim == 3 else 1, flops=2.0 * out[0].size * a.shape[-1])
        if groups is None or (a.shape[-1] == 1 and b.shape[-2] == 1) or self.ops.precision != "float32":
            return super().matmul(a, b, out)

        def group(sl):
            numpy.matmul(a[sl] if a.ndim == 3 else a, b[sl] if b.ndim == 3 else b, out=out[sl])

        run_pieces(group, [(g,) for g in groups])
        return out

    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        if (self.fused and act.name == "relu" and b is not None and A is Z and Z.ndim == 3
                and _contiguous_floats(Z) and b.dtype == Z.dtype and b.strides[-1] == b.itemsize):
            _member_bias_relu(Z, numpy.ascontiguousarray(b))  # contiguous rows: the kernel's loop vectorises
            return A
        return super().bias_activation(Z, b, act, A, keep_z)

    def activation_bias_backward(self, dA, act: Activation, source, from_output: bool, dZ, db):
        if (self.fused and db is not None and act.name == "relu" and dZ is dA and dA.ndim == 3
                and _contiguous_floats(dA, source) and db.dtype == dA.dtype and db.strides[-1] == db.itemsize):
            _member_relu_backward_bias(dA, source, db)
            return dZ
        return super().activation_bias_backward(dA, act, source, from_output, dZ, db)

    def bias_gradient(self, dZ, db):
        if not (self.fused and dZ.ndim == 3 and _contiguous_floats(dZ) and db.dtype == dZ.dtype
                and db.strides[-1] == db.itemsize):
            return super().bias_gradient(dZ, db)
        _member_column_sums(dZ, db)
        return db

    def outer_activation_bias_backward(self, dZ, W, act: Activation, source, from_output: bool, dA, db) -> bool:
        # One pass instead of two (NumPy's broadcast multiply, 64 x 128 short rows of 64, then the ReLU kernel):
        # the K=64 small-net step's dA of its last hidden layer took 57 + 28 us per 32 members, now 32.
        if not (self.fused and db is not None and act.name == "relu" and from_output and dA.ndim == 3
                and dZ.shape[-1] == 1 and W.shape[-1] == 1 and _contiguous_floats(dA, source, dZ)
                and W.dtype == db.dtype == dA.dtype and db.strides[-1] == db.itemsize and self.ops.precision == "float32"):
            return False
        _member_outer_relu_backward_bias(dZ.reshape(dZ.shape[0], -1), numpy.ascontiguousarray(W[:, :, 0]), source, dA,
                                         db)
        return True

    def group_pass(self, X, Y, weights, biases, dW, db, acts, ws, sums, update=None, weighted=False):
        """A member group's whole forward and backward pass in one Numba call without the GIL
        (_member_group_pass), as a _GroupPass: ``run(group, signal)`` for each group (a slice of the members), which
        writes the gradients, ws's output-layer buffers and ``sums``. Or None where that pass
        does not apply: then the caller runs Ensemble._forward and _backward. It applies to ReLU, tanh or sigmoid
        hidden layers with bias, an identity output layer of one column (a weighted batch's Y of two: its second the rows'
        weights, gpunn.sample_weights), no other size under 2, at least 2 rows,
        C-ordered X and Y, where NumPy's own BLAS could be bound (gpunn.ops.cblas), and for tanh or sigmoid NumPy's
        tanh or exp loop (gpunn.ops.ufuncs): the same products (the calls numpy.matmul makes), the same kernels and
        per-element arithmetic, the same bits as the two methods. Each group's hidden-layer buffers are one member's,
        reused member after member (``ws.group_buffers``), so they stay in cache: with two groups on the 2-core
        machine the K=64 small-net step took 1.53-1.55 ms instead of 1.59-1.64 (bench/RESULTS.md).

        ``update``: the members' optimizer step (Ensemble.train_step_and_update), run on each group's thread after
        its pass; an Adam step of adam_members (_MemberAdam) runs inside the kernel, each member's right after its
        backward pass (its gradients still in cache), and ``run`` is then the kernel alone: no Python on the
        worker's thread between the hand-off and the kernel (bench/RESULTS.md).

        The _GroupPass is kept on the workspace while it was made for the same views, network, update (by identity)
        and class; a step then writes only its batch and ``sums`` into it. With adam_members' kept update, the
        Python around the kernel in a tiny-x4 step (8-32-32-1 at batch 64, K=4; the kernel 31.5 us) took 6 us of
        CPU time instead of 11 (2-core AMD EPYC, 2026-11-30)."""
        if not self.one_call_applies(X, Y, weights, biases, acts, weighted):
            return None
        cls, hidden = _GroupPass, self._one_call_network(weights, biases, acts)
        made = ws.group_pass
        if not (type(made) is cls and made.made_for(weights, biases, dW, db, hidden, update)):
            made = ws.group_pass = cls(self, weights, biases, dW, db, hidden, ws, X.shape[-2], update)
        return made.on(X, Y, sums)

    def one_call_applies(self, X, Y, weights, biases, acts, weighted=False) -> bool:
        """Whether group_pass gives a function for these arguments (see there). Not while a method it stands in
        for is set on these ops (``gpunn bench``'s step profile times them so, as one small MLP's one call steps
        aside: gpunn.ops.mlp_step). ``weighted``: Y's second column is each row's weight (a weighted batch's)."""
        return (_STANDS_IN_FOR.isdisjoint(vars(self))
                and 2 <= X.shape[-2] <= GEMM_INT_MAX  # a CBLAS of C int dimensions (LP64) may be the one bound
                and Y.shape[-1] == 1 + bool(weighted)  # one output (below), and a weighted batch's weights
                and X.dtype == Y.dtype == weights[0].dtype and X.flags.c_contiguous
                and Y.flags.c_contiguous and self._one_call_network(weights, biases, acts) is not None)

    def _one_call_network(self, weights, biases, acts):
        """one_call_applies' conditions on the network (asked twice a step: remembered for the last one): the
        hidden layers' (loops, layers) of group_pass_activations where they hold, else None."""
        key = (id(weights), id(biases), id(acts), self.ops.precision, self.fused)
        memo = getattr(self, "_network_memo", None)
        if memo is None or memo[0] != key:
            applies = (self.fused and biases is not None and len(weights) >= 2 and self.ops.precision == "float32"
                       and acts[-1].name == "identity" and weights[-1].shape[-1] == 1
                       and min(w.shape[1] for w in weights) >= 2 and numpy_blas(weights[0].dtype) is not None)
            hidden = group_pass_activations(acts, weights[0].dtype) if applies else None
            memo = self._network_memo = (key, hidden, (weights, biases, acts))  # holding them keeps the ids theirs
        return memo[1]

    def adam_members(self, w, g, m, v, rates: MemberRates, eps, step, decoupled: bool):
        """adam_step as a function of a slice of the members (a _MemberAdam), which updates those members' rows
        (each member's update is its own: any split of the members gives the same bits); None where the Numba
        kernel does not apply (then adam_step runs the generic update). Kept while it is for the same arrays, table
        (and its version) and settings, and moved to each ``step`` (_MemberAdam.at): the object of the last call."""
        if not self.fused or "adam_step" in vars(self):  # (timed by gpunn bench's profile: as one_call_applies)
            return None
        made = self._member_adam
        if made is None or not made.made_for(w, g, m, v, rates, eps, decoupled):
            if not _contiguous_floats(w, g, m, v):
                return None
            made = self._member_adam = _MemberAdam(self, w, g, m, v, rates, eps, decoupled)
        return made.at(step)

    def forget_kept(self):
        self._member_adam = None  # it holds the optimizer's moments

    def adam_step(self, w, g, m, v, rates: MemberRates, eps, step, decoupled: bool):
        members = self.adam_members(w, g, m, v, rates, eps, step, decoupled)
        if members is None:
            return super().adam_step(w, g, m, v, rates, eps, step, decoupled)
        # Each member's update is independent: the groups' rows on their threads (a K=64 small-net
        # or K=16 medium-net step spent 7-9% of its time in this update on one thread). A training step
        # in member groups runs it inside its groups instead (Ensemble.train_step_and_update).
        groups = self.member_groups(w.shape[0], elements=w.shape[1])
        if groups is None:
            members(slice(None))
        else:
            self.run_groups(members, groups)
        return w

    def _adam_flags(self, adam):
        """_member_group_pass's flags for a _MemberAdam step: [1, coupled L2, AdamW] (cached while the same)."""
        key = (adam.wd_any and not adam.decoupled, adam.wd_any and adam.decoupled)
        if getattr(self, "_flags_key", None) != key:
            self._flags, self._flags_key = numpy.array([1, *key], numpy.int64), key
        return self._flags

    def _adam_constants(self, rates, dt):
        """beta1, 1 - beta1, beta2, 1 - beta2 and the weight decay per member, rounded to ``dt``, and whether any
        member has weight decay; cached while the table and dtype are the same."""
        key = (id(rates), rates.version, dt)
        if getattr(self, "_adam_key", None) != key:
            h = rates.host
            self._adam_fixed = tuple(numpy.ascontiguousarray(x.astype(dt)) for x in (
                h[:, BETA1], 1.0 - h[:, BETA1], h[:, BETA2], 1.0 - h[:, BETA2], h[:, WEIGHT_DECAY])) + (
                bool(h[:, WEIGHT_DECAY].any()),)
            self._adam_key, self._adam_rates = key, rates  # holding it keeps the id its own
        return self._adam_fixed


class _MemberAdam:
    """One Adam step of the members as a function of a slice of them (CpuEnsembleOps.adam_members): ``update(sl)``
    steps the rows of ``sl``. Made for its arrays, table and settings (``made_for``), then moved to each step by
    ``at(step)``, which writes ``pow1``, ``pow2`` (beta1**step and beta2**step, by Python's pow as the single
    model's Adam: BetaPowers) in place. Its per-member constants are formed on the step's first call,
    unless a one-call group pass runs the step inside its kernel (_GroupPass), which forms them there from the
    members' table and ``pow1``, ``pow2``, read where they stay."""

    def __init__(self, mops, w, g, m, v, rates, eps, decoupled):
        dt = w.dtype
        self.w, self.g, self.m, self.v, self.rates = w, g, m, v, rates
        self.version, self.eps_given = rates.version, eps
        self.eps, self.decoupled = dt.type(eps), decoupled
        h = rates.host
        self.powers1, self.powers2 = BetaPowers(h[:, BETA1]), BetaPowers(h[:, BETA2])
        self.pow1, self.pow2 = numpy.empty(h.shape[0]), numpy.empty(h.shape[0])
        self.constants = mops._adam_constants(rates, dt)  # for this table's version, which made_for checks
        self.wd_any = self.constants[-1]
        self._members = None

    def made_for(self, w, g, m, v, rates, eps, decoupled) -> bool:
        """Whether it steps these arrays with this table, unchanged since (its version), and these settings."""
        return (self.w is w and self.g is g and self.m is m and self.v is v and self.rates is rates
                and self.version == rates.version and self.eps_given == eps and self.decoupled == decoupled)

    def at(self, step):
        """This object as step ``step``'s update."""
        self.powers1.into(self.pow1, step)
        self.powers2.into(self.pow2, step)
        self._members = None
        return self

    def __call__(self, sl):
        (self._members or self._prepare())(sl)

    def _prepare(self):
        w, g, m, v, rates = self.w, self.g, self.m, self.v, self.rates
        dt = w.dtype
        h, active = rates.host, rates.active
        lr, wd = h[:, LR], h[:, WEIGHT_DECAY]
        # AdamW: w *= 1 - lr * wd first, as the single-model path does
        scale = numpy.where(active, 1.0 - lr * wd, 1.0).astype(dt)[:, None] if self.wd_any and self.decoupled else None
        b1, omb1, b2, omb2, decay, _ = self.constants
        inv_sqrt_bc2 = (1.0 / numpy.sqrt(1.0 - self.pow2)).astype(dt)
        lr_bc1 = (lr / (1.0 - self.pow1)).astype(dt)
        eps, l2 = self.eps, bool(self.wd_any and not self.decoupled)
        clips = rates.clips

        def members(sl):
            if clips:
                _member_clip(g[sl], h[sl], active[sl])
            if scale is not None:
                w[sl] *= scale[sl]
            _member_adam(w[sl], g[sl], m[sl], v[sl], b1[sl], omb1[sl], b2[sl], omb2[sl], inv_sqrt_bc2[sl], eps,
                         lr_bc1[sl], decay[sl], l2, active[sl])

        self._members = members
        return members


class _GroupPass:
    """CpuEnsembleOps.group_pass's answer: ``run(group, signal=None)`` runs a group's pass (from any thread): its
    gradients, and its members' Adam step where that runs inside the kernel, or else the ``update`` after it.
    ``pure``: run is the Numba kernel alone (no NumPy calls, so no errstate to carry to a worker).
    The kernel takes the whole (K, ...) arrays and the group's range of members: nothing is sliced per step.
    Made for one workspace (one batch size: ``rows``), the network's views and the update (``made_for``); ``on``
    sets the step's batch and sums. An Adam update inside the kernel (``adam``, a _MemberAdam) writes each step's
    beta**step where ``args`` holds them."""

    def __init__(self, mops, weights, biases, dW, db, hidden, ws, rows, update):
        # the workspace keeps this pass (group_pass): a reference back would keep a dropped workspace's buffers
        # until the cyclic garbage collector ran (loss_and_gradients on many rows: test_gradients)
        self.ws = weakref.ref(ws)
        self.made = (weights, biases, dW, db, hidden, update)
        dt = weights[0].dtype
        # the kernel steps Adam's parameters and gradients only where they are these views' rows
        # (a C-ordered (K, P) view of a flat buffer of K * P values starts where the buffer does, as do W[0], dW[0])
        members = weights[0].shape[0]
        adam = update if (isinstance(update, _MemberAdam) and update.w.dtype == dt and update.w.base is not None
                          and update.w.base is weights[0].base and update.g.base is dW[0].base
                          and update.w.shape == update.g.shape == (members, update.w.base.size // members)
                          and update.g.base is not None) else None
        self.adam, self.update = adam, (None if adam is not None else update)
        self.pure = update is None or adam is not None
        if adam is None:
            optimizer = no_optimizer_arguments(dt)
        else:
            optimizer = (adam.w, adam.g, adam.m, adam.v, adam.rates.host, adam.pow1, adam.pow2, adam.eps,
                         mops._adam_flags(adam))
        # the arguments before X and Y, between them and sums (dA *= 2/rows, as loss_gradient), and after sums
        self.lead = (numpy_blas(dt), *hidden)
        self.mid = (tuple(weights), tuple(biases), tuple(dW), tuple(db), ws.Z[-1], ws.dA[-1])
        self.tail = (dt.type(1), dt.type(0), dt.type(2.0 / rows), *optimizer)
        self.args = None

    def made_for(self, weights, biases, dW, db, hidden, update) -> bool:
        w, b, gw, gb, h, u = self.made
        return w is weights and b is biases and gw is dW and gb is db and h is hidden and u is update

    def on(self, X, Y, sums):
        """This pass for the batch (X, Y), writing its members' sums of squared errors into ``sums``; ``done`` after
        the step."""
        self.args = (*self.lead, X if X.ndim == 3 else X[None], Y if Y.ndim == 3 else Y[None], *self.mid, sums,
                     *self.tail)
        return self

    def done(self):
        """Lets go of the step's batch and sums: kept on the workspace, this pass would otherwise keep the caller's
        X and Y alive after the step (an unshuffled fit's batches are views of all its rows)."""
        self.args = None

    def run(self, sl, signal=None):
        buffers = self.ws().group_buffers(sl.start)
        _member_group_pass(*self.args, *buffers, sl.start, sl.stop,
                           *(signal or (buffers[2].view(numpy.int64), 0, 0)))  # without signal: a slot nobody reads
        if self.update is not None:  # an update that is not the kernel's: after this group's pass
            self.update(sl)


def no_optimizer_arguments(dt):
    """_member_group_pass's optimizer arguments (aw, ag, am, av, rates, pow1, pow2, eps, flags) for a pass with no
    optimizer step in it, for float dtype ``dt`` (made once per dtype)."""
    return _NO_ADAM.get(dt) or _NO_ADAM.setdefault(dt, (
        *(numpy.empty((0, 0), dt) for _ in range(4)), numpy.empty((0, HYPER_FIELDS)), numpy.empty(0),
        numpy.empty(0), dt.type(0), numpy.zeros(3, numpy.int64)))


_NO_ADAM: dict = {}  # per dtype: no_optimizer_arguments
