"""Ensembles: K MLPs of one architecture trained as one model, with a member axis.

Member k is the network of ``MLP(layer_sizes, ..., seed=seed + k)``; all K train in one step:
for layers l = 1..L, with A[0] = X shared by every member (or member k's own resample of the
rows with ``bootstrap=True``),
    Z[l][k] = A[l-1][k] @ W[l][k] (+ b[l][k]),   A[l][k] = g[l](Z[l][k])
and the backward pass of :mod:`gpunn.model` per member, as batched (K, rows, n) matrix products.
The parameters of all members live in one flat buffer, member-major: member k's P parameters
are the k-th run of P values, laid out as one MLP's flat buffer, so ``W[l]`` is a
(K, n[l-1], n[l]) view (member stride P) and an optimizer step is one pass over the buffer with
each member's settings read from a small table (:class:`gpunn.ops.member_rates.MemberRates`).

With the same options, member k after ``Ensemble.fit(X, Y, lr=lrs, seed=s)`` holds the weights
of ``MLP(seed=seed + k).fit(X, Y, lr=lrs[k], seed=s)``: the same batches in the same order and
the same arithmetic per member (tests/test_ensemble.py proves it to 1e-10 in float64).
"""
from __future__ import annotations

import copy
import warnings

import numpy

from . import preflight, sample_weights
from .backend import user_stacklevel
from .checks import (check_rows_match, flag, got, held_warnings, member_index, per_member, positive_int,
                     seed_int, warn_read_by_position)
from .model import MLP, DeviceModel, ParamList, gradients_over, source_given, weighted_row_errors
from .ops import ensemble_ops_for
from .training.history import missing_log_hint
from .training.monitoring import monitor_mode
from .training.ensemble import fit_ensemble, held_rows
from .training.fit import as_method, fit as _fit
from .training.graph import graph_mode


class _Workspace:
    """Per-layer (K, rows, n) buffers for one batch size.

    ``storage`` (bf16) is the dtype of the hidden layers' buffers, of the bf16 copy of the input
    (``input16``) and of ``dZ16`` (the output layer's dZ for the products); the output layer's are
    ``dtype``, as in one MLP's workspace (gpunn.model)."""

    def __init__(self, xp, members, rows, sizes, acts, dtype, storage=None):
        self.Z, self.A, self.dA = [], [], []
        storage = dtype if storage is None else storage
        for l, (n, act) in enumerate(zip(sizes[1:], acts)):
            dt = storage if l < len(acts) - 1 else dtype
            Z = xp.empty((members, rows, n), dt)
            self.Z.append(Z)
            self.A.append(xp.empty((members, rows, n), dt) if act.needs_input_for_grad else Z)
            self.dA.append(xp.empty((members, rows, n), dt))
        self.xp, self.storage, self._inputs16, self._groups = xp, storage, {}, {}
        self.group_pass = None  # CpuEnsembleOps.group_pass's last _GroupPass, kept for the next step
        if storage != dtype:
            self.dZ16 = xp.empty((members, rows, sizes[-1]), storage)

    def group_buffers(self, key):
        """A member group's own buffers for CpuEnsembleOps.group_pass (``key``: the group's first member): one
        member's hidden-layer Z and dA, (rows, n) each, as tuples, and a (2 rows,) float64 scratch (a weighted batch's
        loss takes both halves)."""
        bufs = self._groups.get(key)
        if bufs is None:
            Z = tuple(self.xp.empty(z.shape[1:], z.dtype) for z in self.Z[:-1])
            dA = tuple(self.xp.empty(z.shape[1:], z.dtype) for z in self.Z[:-1])
            bufs = self._groups[key] = (Z, dA, self.xp.empty(2 * self.Z[-1].shape[1], numpy.float64))
        return bufs

    def input16(self, X):
        """The bf16 buffer for an input batch of X's shape: (rows, n) shared by the members, or a bootstrap
        batch's (K, rows, n); made by the first (eager) step of a shape, before any CUDA-graph capture."""
        buf = self._inputs16.get(X.shape)
        if buf is None:
            buf = self._inputs16[X.shape] = self.xp.empty(X.shape, self.storage)
        return buf


class Ensemble(DeviceModel):
    """K regression MLPs of one architecture, trained together as batched products.

    ``n_models`` is K (>= 1); ``layer_sizes``, ``activation``, ``output_activation``, ``bias``, ``dtype``,
    ``device`` and ``fused`` are one MLP's, for every member. ``seed`` is an int (member k starts as
    ``MLP(layer_sizes, ..., seed=seed + k)``; a NumPy integer or a 0-d integer array too) or a list of K ints.
    ``ens.predict(X)`` gives (K, rows, outputs); ``ens.predict(X, return_std=True)`` the members' mean and
    population standard deviation; ``ens[k]`` a :class:`gpunn.MLP` copy of member k; ``ens.best()`` the
    member with the best validation loss of the last fit.
    ``ens.diverged``: the members whose loss diverged in the last fit and which hold the weights it diverged
    with (kept by ``gpunn.save``/``load``, checkpoints and copies): the mean and std leave them out (with a
    warning) and ``best()`` never picks one; ``predict(X)`` and ``ens[k]`` still give their own outputs (NaN or
    exploded). ``history.diverged`` lists every member that diverged, also one that
    ``EarlyStopping(restore_best_weights=True)`` put back to its best epoch: that one holds finite, validated
    weights, so it is not in ``ens.diverged`` and counts in the mean and ``best()``.
    ``graph``, as one MLP's: by default (None, "auto") on a CUDA GPU each training step of all K members is
    captured once as a CUDA graph and replayed (gpunn.training.graph.EnsembleGraphTrainer) wherever it can
    be captured, and runs as the ordinary step, silently, where it cannot (the CPU, ``fused=False``, a
    gradient hook: data-parallel training, a capture that fails); ``ens.graph_trainer.captured`` /
    ``.reason`` say which and why. ``graph=True`` forces it (a GraphWarning and the same launches run
    eagerly where it cannot capture, training exactly as ``graph=False``); ``graph=False`` turns it off.
    On an H200 the K=256 small nets' graph step ran 5.5x the eager one, with the same weights
    (bench/RESULTS.md, session 23).
    ``precision`` (GPU only, dtype float32) is one MLP's (gpunn.model): "float32" (default), "tf32" (the
    batched products on TF32 tensor cores) or "bf16" (float32 master weights, gradients and optimizer
    state; the hidden layers' activations, a bf16 copy of the parameters and of X, and the products'
    operands in bfloat16 with float32 accumulation; the output layer and loss in float32). Member k
    then trains as ``MLP(..., precision=precision, seed=seed + k)`` (on a GPU up to the kernel cuBLAS picks for
    each product: with tf32 a batched product may run on TF32 tensor cores where the MLP's runs in float32, or
    the reverse; tests/test_ensemble_precision.py states what holds); ``ens[k]``, ``best()``, copies,
    ``gpunn.save``/``load`` and checkpoints keep it. Refused on the CPU as MLP refuses it; a tf32/bf16
    ensemble loaded on the CPU runs in float32 and keeps the precision its file recorded in
    ``saved_precision``, which ``gpunn.save``, ``ens[k]`` and copies keep (as MLP's).
    """

    # Rows per member of the chunks predict and validation run in: their workspaces, K x rows x width,
    # stay as the memory check counts them (one MLP's 65,536-row chunks, times K, would not fit: 6 GiB
    # for 64 small nets).
    chunk_rows = 1024

    def __init__(self, layer_sizes, n_models, activation="relu", output_activation="identity", bias=True,
                 dtype="float32", device="auto", seed=None, fused=None, graph=None, precision="float32"):
        self.n_models = positive_int(n_models, "n_models")
        if seed is None:
            seed = int(numpy.random.SeedSequence().entropy % 2**62)
        scalar = isinstance(seed, (int, numpy.integer)) or numpy.ndim(seed) == 0
        seeds = [seed] if scalar else per_member(seed, self.n_models, "seed")
        try:
            seeds = [seed_int(s) for s in seeds]
        except ValueError:
            raise ValueError(f"seed must be a non-negative int or a list of {self.n_models} of them, "
                             f"{got(seed, 'an integer')}") \
                from None
        self.seeds = [seeds[0] + k for k in range(self.n_models)] if scalar else seeds
        if not isinstance(layer_sizes, (str, bytes)) and hasattr(layer_sizes, "__len__") and len(layer_sizes) \
                and all(hasattr(n, "__len__") and not isinstance(n, (str, bytes)) for n in layer_sizes):
            # [[10, 8, 1], [10, 16, 1]]: MLP's check said only "layer_sizes[0] must be a positive integer"
            raise ValueError(f"an Ensemble's members share one architecture: layer_sizes is one list of sizes, as "
                             f"[10, 64, 1], got {layer_sizes!r}; build one Ensemble per architecture")
        # One member's model: checks the options, and is the template each member is drawn from.
        # (its checks refuse a precision the device or dtype cannot run, in MLP's words)
        self._template = MLP(layer_sizes, activation, output_activation, bias, dtype, device, self.seeds[0], fused,
                             precision, graph=False)
        t = self._template
        self.layer_sizes, self.activations, self.bias = t.layer_sizes, t.activations, t.bias
        self.dtype, self.backend, self.xp = t.dtype, t.backend, t.xp
        self._activation_arg, self._output_activation_arg, self._fused = activation, output_activation, fused
        self.params_per_member = t.n_parameters
        self._check_fits_in_memory()
        self._build_buffers()
        self.set_precision(precision)
        self.init_parameters()
        self.history = None
        self.diverged = []  # members whose loss diverged in the last fit (set by fit; see predict and best)
        self.standardizer = None  # set by fit on a source made with standardize (see MLP.standardizer)
        self.data_columns = None  # a table source's or DataFrame's {"features": [...], "targets": [...]}, set by fit
        self.graph = graph_mode(graph)  # None (auto, the default), True or False: see gpunn.training.graph
        self.graph_trainer = None

    # ---- structure -------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def __len__(self):
        return self.n_models

    def _check_fits_in_memory(self, batch_rows=chunk_rows):
        """Raise MemoryError before allocating when parameters, gradients, optimizer state (Adam's two
        moments) and a batch's workspaces would not fit in the device's free memory."""
        need = self.n_models * member_bytes(self.layer_sizes, self.dtype.itemsize, batch_rows, self.bias,
                                            self._template.precision)
        self._refuse_over_free(need, f"(parameters, gradients, Adam state, workspaces for {batch_rows} rows)",
                               "fewer members (gpunn sweep splits a grid into ensembles that fit) or a smaller network")

    def check_fit_memory(self, batch_rows):
        """fit's check, before its optimizer state and workspaces exist: the construction counted workspaces
        for ``chunk_rows`` rows a member; a fit whose steps take more rows a member (``batch_rows``) is counted
        again, less the parameters and gradients (and bf16 copies) already held."""
        if batch_rows <= self.chunk_rows:
            return
        held = sum(a.nbytes for a in (self.params, self.grads, self.params16) if a is not None)
        need = self.n_models * member_bytes(self.layer_sizes, self.dtype.itemsize, batch_rows, self.bias,
                                            self._template.precision) - held
        self._refuse_over_free(need, f"more for a fit at {batch_rows} rows a step (Adam state and workspaces)",
                               "a smaller batch_size, fewer members or a smaller network")

    def _refuse_over_free(self, need, what, instead):
        free = preflight.available_bytes(self.backend)
        if free is not None and need > free:
            where = "the device has" if self.backend.is_gpu else "the host has"
            raise MemoryError(f"an ensemble of {self.n_models} x {self.layer_sizes} ({self.dtype.name}) needs about "
                              f"{preflight.size_text(need)} {what} but {where} {preflight.size_text(free)} free"
                              f"{preflight.share_words(self.backend)}; "
                              f"use {instead}")

    def _member_views(self, flat):
        """(K, n_in, n_out) weight and (K, n_out) bias views into a (K * P) flat buffer."""
        rows = flat.reshape(self.n_models, self.params_per_member)
        weights, biases, offset = ParamList(self.backend, "weights"), ParamList(self.backend, "biases"), 0
        for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            weights.append(rows[:, offset:offset + n_in * n_out].reshape(self.n_models, n_in, n_out))
            offset += n_in * n_out
            if self.bias:
                biases.append(rows[:, offset:offset + n_out])
                offset += n_out
        return weights, (biases if self.bias else None)

    def _build_buffers(self):
        total = self.n_models * self.params_per_member
        with self.backend.use():
            self.params = self.xp.zeros(total, self.dtype)
            self.grads = self.xp.zeros(total, self.dtype)
        self.member_params = self.params.reshape(self.n_models, self.params_per_member)
        self.member_grads = self.grads.reshape(self.n_models, self.params_per_member)
        self.weights, self.biases = self._member_views(self.params)
        self._dW, self._db = self._member_views(self.grads)

    def set_precision(self, precision):
        """Switch how the products and activations compute ("float32", "tf32", "bf16"; see the class
        docstring), as ``MLP.set_precision``: the float32 parameters are kept; an optimizer bound earlier must
        be bound again (``fit`` does that)."""
        t = self._template
        if precision != t.precision:
            t.set_precision(precision)
        self.precision, self.storage_dtype, self.ops = t.precision, t.storage_dtype, t.ops
        self.saved_precision = None  # as MLP.set_precision
        self.member_ops = ensemble_ops_for(self.ops)
        with self.backend.use():
            # bf16: the members' parameters rounded for the products, refreshed at each forward pass
            self.params16 = self.xp.empty(self.params.size, self.storage_dtype) if self._bf16 else None
        self._W16, self._b16 = self._member_views(self.params16) if self._bf16 else (None, None)
        self._workspaces = {}
        self.graph_trainer = None  # its graphs used the old buffers (as MLP.set_precision)

    @property
    def _bf16(self) -> bool:
        return self.storage_dtype != self.dtype

    def init_parameters(self):
        """Member k's parameters exactly as ``MLP(..., seed=seeds[k])`` draws them."""
        with self.backend.use():
            for k, seed in enumerate(self.seeds):
                self._template.init_parameters(seed)
                self.member_params[k] = self._template.params

    def _workspace(self, rows):
        ws = self._workspaces.get(rows)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = self._workspaces[rows] = _Workspace(self.xp, self.n_models, rows, self.layer_sizes,
                                                     self.activations, self.dtype, self.storage_dtype)
        return ws

    # ---- the math --------------------------------------------------------------------
    def _forward(self, X, ws, members=slice(None), matmul=None):
        """A[L] (K, rows, outputs) for X (rows, inputs) shared by all members, or (K, rows, inputs).
        ``members``: a slice of the members to compute (their rows of every buffer); ``matmul``: the
        product to use (default: the member ops', which may split the members over threads itself)."""
        mops, sl, bf16, last = self.member_ops, members, self._bf16, self.n_layers - 1
        matmul = matmul or mops.matmul
        if bf16:  # (all members: bf16 training runs as one pass, never in member groups)
            self.ops.to_storage(self.params, self.params16)
            X = self.ops.to_storage(X, ws.input16(X))
        A_prev = X if X.ndim == 2 else X[sl]
        weights, biases = (self._W16, self._b16) if bf16 else (self.weights, self.biases)
        for l, act in enumerate(self.activations):
            Z = ws.Z[l][sl]
            A = Z if ws.A[l] is ws.Z[l] else ws.A[l][sl]  # one object where one buffer: the fused ops test `A is Z`
            matmul(A_prev, weights[l][sl], out=Z)
            b = (biases[l] if l < last else self.biases[l])[sl] if self.bias else None  # float32 output layer
            if b is not None or ws.A[l] is not ws.Z[l] or act.name != "identity":
                mops.bias_activation(Z, b, act, A, keep_z=ws.A[l] is not ws.Z[l])
            A_prev = A
        return A_prev

    def _backward(self, X, Y, ws, sum_sq=None, members=slice(None), matmul=None):
        """Fill the flat gradient buffer; return each member's sum((A[L] - Y)^2), a (K,) device array
        (``sum_sq`` when given: a CUDA graph's fixed buffer). ``members``, ``matmul``: as in _forward. In a fit with
        sample_weight, Y's last column is each row's weight (gpunn.sample_weights), and the sums are of the weighted
        squares, as one MLP's (MLP._backward)."""
        mops, L, sl, bf16 = self.member_ops, self.n_layers, members, self._bf16
        matmul = matmul or mops.matmul
        if bf16:  # the forward pass's bf16 copy of X
            X = ws.input16(X)
        Y_sl = Y if Y.ndim == 2 else Y[sl]
        if self._weighted_batch(Y):
            targets, row_weights = sample_weights.split(Y_sl, self.layer_sizes[-1])
            sum_sq = mops.loss_gradient(ws.A[-1][sl], targets, ws.dA[-1][sl], sum_sq, row_weights)
        else:
            sum_sq = mops.loss_gradient(ws.A[-1][sl], Y_sl, ws.dA[-1][sl], sum_sq)
        done = None  # a layer whose dZ and db the fused outer product below computed already
        for l in range(L - 1, -1, -1):
            act, dZ = self.activations[l], ws.dA[l][sl]
            db = self._db[l][sl] if self.bias else None
            if l == done:
                pass
            elif act.name != "identity":
                from_output = not act.needs_input_for_grad
                mops.activation_bias_backward(dZ, act, (ws.A[l] if from_output else ws.Z[l])[sl], from_output, dZ, db)
            elif db is not None:
                mops.bias_gradient(dZ, db)
            if bf16 and l == L - 1:  # the output layer's dZ is float32: a bf16 copy for the products
                dZ = self.ops.to_storage(dZ, ws.dZ16)
            A_prev = ws.A[l - 1][sl] if l else (X if X.ndim == 2 else X[sl])
            matmul(A_prev.swapaxes(-1, -2), dZ, out=self._dW[l][sl])
            if l:
                below = self.activations[l - 1]
                from_output = not below.needs_input_for_grad
                if not bf16 and mops.outer_activation_bias_backward(
                        dZ, self.weights[l][sl], below, (ws.A[l - 1] if from_output else ws.Z[l - 1])[sl], from_output,
                        ws.dA[l - 1][sl], self._db[l - 1][sl] if self.bias else None):
                    done = l - 1
                else:
                    matmul(dZ, (self._W16 if bf16 else self.weights)[l][sl].swapaxes(-1, -2), out=ws.dA[l - 1][sl])
        return sum_sq

    def steps_as_ensemble(self) -> bool:
        """Whether this model's class steps as Ensemble does: its train_step, _forward and _backward are Ensemble's
        (not a subclass's, which a weighted fit would give Y with the weights' column: refused, as MLP's are)."""
        return (type(self).train_step is Ensemble.train_step and type(self)._forward is Ensemble._forward
                and type(self)._backward is Ensemble._backward)

    def train_step(self, X, Y):
        """Forward and backward on a device batch (the Trainable step): gradients land in ``grads``;
        returns the (K,) device sums of squared errors of the batch."""
        return self._step(X, Y, *self._plan(X, Y))

    def _groups(self, X, Y, one_call=None):
        """The member groups a CPU training step on the batch (X, Y) runs on threads of their own, or None (one
        pass; always on a GPU, and for tf32/bf16, which run on one). A step whose groups each run as one call
        (CpuEnsembleOps.group_pass; ``one_call``: whether they do, where the caller asked already) splits from less
        work."""
        if self.precision != "float32":
            return None
        if one_call is None:
            one_call = self.member_ops.one_call_applies(X, Y, self.weights, self.biases, self.activations,
                                                        self._weighted_batch(Y))
        # forward 2 and backward 4 multiply-adds' flops per parameter and row (weights; biases alike)
        return self.member_ops.member_groups(self.n_models, flops=6.0 * self.params_per_member * X.shape[-2],
                                             one_call=one_call)

    def _one_pass(self, X, Y) -> bool:
        """Whether a CPU step on (X, Y) that does not split (``_groups`` None) runs as one call of the group pass
        over all the members on the calling thread (CpuEnsembleOps.group_pass), not as Ensemble._forward and
        _backward: float32 where the group pass applies. The same bits; per step one call instead of ~7 per
        layer: the K=4 tiny-net (8-32-32-1, batch 64) step took 46 us instead of 77 on the 2-core machine."""
        return self.precision == "float32" and \
            self.member_ops.one_call_applies(X, Y, self.weights, self.biases, self.activations, self._weighted_batch(Y))

    def _plan(self, X, Y):
        """(groups, one_pass) of a step on (X, Y): its member groups (``_groups``), and where there are none,
        whether it is the group pass's one call over every member (``_one_pass``) rather than Ensemble._forward and
        _backward, after which the optimizer steps as a whole."""
        one_call = self._one_pass(X, Y)
        groups = self._groups(X, Y, one_call)
        return groups, groups is None and one_call

    def _step(self, X, Y, groups, one_pass=False, update=None):
        """train_step as ``_plan`` says: in ``groups``, or, with none, in one pass (the group pass's one call, or
        Ensemble._forward and _backward); with ``update`` (not for the last), each group (or the one call) also runs
        update(group), its members' optimizer step, right after its backward pass."""
        ws = self._workspace(X.shape[-2])
        if groups is None and not one_pass:
            self._forward(X, ws)
            return self._backward(X, Y, ws)
        # On the CPU: each group of members runs its whole forward and backward pass on its own
        # thread (one sync per step, elementwise passes in parallel too), not each product split.
        sums = self.xp.empty(self.n_models, numpy.float64)
        # where it applies, a group's whole pass is one call that does not take the GIL, with the update inside
        # when it is Adam's (CpuEnsembleOps.group_pass)
        one_call = self.member_ops.group_pass(X, Y, self.weights, self.biases, self._dW, self._db, self.activations,
                                              ws, sums, update, self._weighted_batch(Y))
        if one_call is not None:
            try:
                if groups is None:  # one pass, on this thread
                    one_call.run(slice(0, self.n_models))
                else:
                    self.member_ops.run_groups(one_call.run, groups, signals=True, errstate=not one_call.pure)
            finally:
                one_call.done()
            return sums
        matmul = self.member_ops.unsplit_matmul

        def run(sl):
            self._forward(X, ws, sl, matmul)
            self._backward(X, Y, ws, sums[sl], sl, matmul)
            if update is not None:
                update(sl)

        self.member_ops.run_groups(run, groups)
        return sums

    def _forget_kept_steps(self):
        """Drops the one-call steps kept from step to step (each workspace's _GroupPass, the member ops' _MemberAdam):
        a fit starts with its own optimizer, and those made for an earlier one would keep its state alive."""
        for ws in self._workspaces.values():
            ws.group_pass = None
        self.member_ops.forget_kept()

    def train_step_and_update(self, X, Y, optimizer, lr):
        """train_step, then ``optimizer.step(params, grads, lr)``: what the training loop does with no gradient
        hook between the two. On the CPU in member groups each group updates its own members right after its
        backward pass, in the same hand-off to the threads (the same bits: a member's update reads only its own
        gradients); where the groups run as one call each, Adam's step runs inside that call, each member's right
        after its own backward pass (CpuEnsembleOps.group_pass). Returns the (K,) device sums of squared errors of
        the batch."""
        groups, one_pass = self._plan(X, Y)
        update = None if groups is None and not one_pass else getattr(
            optimizer, "member_update", lambda *a: None)(self.params, self.grads, lr)
        sums = self._step(X, Y, groups, one_pass, update)
        if update is None:
            optimizer.step(self.params, self.grads, lr)
        return sums

    # ---- public API ------------------------------------------------------------------
    def predict(self, X, return_std=False):
        """Every member's A[L] for the rows of X: (K, rows, outputs) on the model's device.

        ``return_std=True`` returns (mean, std) over the members instead, each (rows, outputs):
        the population standard deviation (numpy.std's ddof=0), as scikit-learn's Gaussian
        processes return it, over the members not in ``ens.diverged`` (those that hold the weights they
        diverged with in the last fit are left out with a RuntimeWarning naming them, TrainingDiverged when
        that is every member; one that early stopping put back to its best epoch counts).
        The (K, rows, outputs) predictions keep every member's, a diverged member's NaN or exploded.
        Rows go through in chunks of ``chunk_rows`` per member. With a
        ``standardizer`` (fit on a source made with standardize), X is taken in raw units and the
        predictions are in the targets' units, in the dtype one MLP returns them in (see MLP.predict).
        X may be a data source (``gpunn.data``): every row of it, streamed, as for ``MLP.predict``; a DataFrame's
        columns are picked by name, or warned of where read by position, as ``MLP.predict`` says.
        """
        return_std = flag(return_std, "return_std")
        kept = self._kept_members() if return_std else None  # refused before any work when no member is left
        with self.backend.use():
            if source_given(X, None, None):
                out = self._predicted_source(X, self.chunk_rows, (self.n_models,))
            else:
                with held_warnings():  # (given once X is read: a refused X is not warned of first)
                    warn_read_by_position(X, self.data_columns, "X", self)
                    out = self._predicted(X, self.chunk_rows, (self.n_models,))
            if return_std:
                if kept is not None:
                    out = out[self.xp.asarray(kept)]
                return out.mean(axis=0), out.std(axis=0)
            return out

    def _kept_members(self):
        """The members an ensemble statistic is taken over: None for all, else those that did not diverge
        (with a warning naming the others)."""
        if not self.diverged:
            return None
        kept = self._members_left("to take a mean over")
        warnings.warn(f"members {self.diverged} diverged in the last fit (ens.diverged) and are left out of the mean "
                      f"and std, taken over the other {len(kept)} of {self.n_models}", RuntimeWarning, stacklevel=3)
        return kept

    def _members_left(self, what):
        """The members not in ens.diverged; TrainingDiverged when there is none."""
        diverged = set(self.diverged)
        kept = [k for k in range(self.n_models) if k not in diverged]
        if not kept:
            from .training.loop import TrainingDiverged

            raise TrainingDiverged(f"every member of the ensemble diverged in its last fit (ens.diverged == "
                                   f"{self.diverged}): there is no member {what}; fit again with lower learning "
                                   "rates, or standardize the targets and inputs")
        return kept

    def loss(self, X, Y, sample_weight=None):
        """Each member's loss f = (1/m) ||A[L] - Y||_F^2 on (X, Y) (with k outputs, k x the mean squared error): a
        (K,) NumPy array. With a ``standardizer``, X and Y are in raw units and so is the error (that of
        ``predict``), as for ``MLP.loss``; ``evaluate(X, Y)["loss"]`` gives the same. ``sample_weight``: each
        member's weighted loss, as ``MLP.loss``'s."""
        with self.backend.use(), held_warnings():
            Y = self._raw_target(Y)
            P = self.predict(X)
            check_rows_match(P[0], Y)
            if sample_weight is not None:
                return self.backend.to_host(weighted_row_errors(self.xp, P, Y, sample_weight)) / Y.shape[0]
            return self.backend.to_host(self.member_ops.squared_error(P, Y)) / Y.shape[0]

    def score(self, X, Y=None, sample_weight=None) -> list:
        """Every member's R² on (X, Y), averaged over outputs (a list of K), as ``MLP.score`` gives one; NaN for a
        member with no score (see ``evaluate``). ``score(source)``: on every row of a data source, streamed.
        ``sample_weight``: see ``evaluate``."""
        source_given(X, Y, "score")  # (its own name in the error)
        return self.evaluate(X, Y, sample_weight=sample_weight)["r2"]

    def evaluate(self, X, Y=None, sample_weight=None) -> dict:
        """Every member's {"loss", "mse", "mae", "r2"} of ``predict(X)`` against Y (lists of K), in one pass and
        one host read: the metrics validation logs each epoch, in Y's units as ``predict`` and ``loss`` are
        (``evaluate(X, Y)["loss"]`` is ``loss(X, Y)``; with a ``standardizer``, not the standardized units of
        the history: see MLP.evaluate).

        A member whose metrics are not finite (its weights NaN or infinite, as a member diverged in the last fit
        may hold, or its ``predict(X)`` NaN or infinite on some rows) has no score: its four are NaN (as
        scikit-learn's ``error_score``; ``numpy.nanargmax`` skips them), with a RuntimeWarning naming it and why,
        so the others are still scored. Where no member has a score, MLP.evaluate's error: TrainingDiverged
        where every member's weights are NaN or infinite, else ValidationNotFinite.

        ``evaluate(source)`` (Y omitted): over every row of a data source (training and held-out chunks), streamed a
        window at a time, raw rows with the ensemble's ``standardizer`` applied, as ``MLP.evaluate(source)``.

        ``sample_weight`` (arrays: one weight a row, 0 or more) weighs each row's errors in every member's metrics, as
        ``MLP.evaluate``'s: member k's are ``ens[k].evaluate(X, Y, sample_weight=w)``'s, the fit's validation metrics
        with the same weights (gpunn.sample_weights)."""
        from .metrics import by_member, unscored

        with self.backend.use():
            logs, on_source = self._evaluate_logs(X, Y, sample_weight, self.chunk_rows, (self.n_models,))
            bad = unscored(self, logs, None if on_source else X, self.chunk_rows, (self.n_models,))
        on = "the source" if on_source else "(X, Y)"
        if bad:
            said = by_member({k: why + (" (in ens.diverged)" if k in self.diverged else "")
                              for k, (_, why) in bad.items()})
            if len(bad) == self.n_models:
                from .training.loop import TrainingDiverged, ValidationNotFinite

                if not any(finite for finite, _ in bad.values()):
                    raise TrainingDiverged(f"no member of the ensemble has a score on {on}: {said}; fit it again "
                                           "with lower learning rates, or standardize the targets and inputs")
                raise ValidationNotFinite(f"no member of the ensemble has a score on {on}: {said}")
            warnings.warn(f"members {sorted(bad)} have no score on {on}: their metrics are NaN ({said})",
                          RuntimeWarning, stacklevel=user_stacklevel())
            for values in logs.values():
                for k in bad:
                    values[k] = float("nan")
        return {name.removeprefix("val_"): value for name, value in logs.items()}

    def loss_and_gradients(self, X, Y, sample_weight=None):
        """(loss, dW, db): loss (K,) on the host, dW[l] (K, n[l-1], n[l]), db[l] (K, n[l]); db is None without bias.
        With a ``standardizer``, X and Y are in raw units, standardized first: the loss and gradients
        training follows (standardized units), as for ``MLP.loss_and_gradients``; ``sample_weight`` too."""
        with self.backend.use():
            sum_sq, rows, dW, db = gradients_over(self, X, Y, sample_weight)
            return self.backend.to_host(sum_sq) / rows, dW, db

    def member(self, k) -> MLP:
        """Member k as a :class:`gpunn.MLP` holding a copy of its weights."""
        k = member_index(k, self.n_models)
        model = MLP(self.layer_sizes, self._activation_arg, self._output_activation_arg, self.bias, self.dtype.name,
                    self.backend, self.seeds[k], self._fused, self.precision)
        model.saved_precision = self.saved_precision
        with self.backend.use():
            model.params[...] = self.member_params[k]
        if self.data_columns:
            model.data_columns = copy.deepcopy(self.data_columns)  # (targets None where a DataFrame's Y had none)
        if self.standardizer is not None:
            from .data.stats import Standardizer  # here: gpunn.data is imported on first use (gpunn._LAZY)

            model.standardizer = Standardizer.from_state(*self.standardizer.state())
        return model

    __getitem__ = member

    def best(self, monitor="val_loss") -> MLP:
        """The member whose weights score best by ``monitor`` in the last fit (lowest; highest for names ending
        in r2), as an MLP: each member is ranked by the value of the epoch whose weights it holds
        (``history.weights_epoch``: its best epoch where early stopping restored it, else the last, not a better
        epoch its weights have since left; after an interrupt part-way through an epoch, which left a member with
        that epoch's steps so far and no score, the last epoch it finished); never a member in ``ens.diverged``
        (one that holds the weights it diverged with)."""
        return self.member(self.best_index(monitor))

    def best_index(self, monitor="val_loss") -> int:
        """The index k of the member ``best(monitor)`` returns: its place in the fit's per-member lists
        (``lr=[...]`` and the others) and in ``seeds``; never a member in ``ens.diverged``."""
        if self.history is None:
            # (a loaded ensemble was fitted, but gpunn.load gives no history: "call fit first" told one who had
            # fitted it, and best_index's caller of a best() not called)
            raise RuntimeError("best() and best_index() rank the members by the last fit's history, and this "
                               "ensemble has none: call fit first (gpunn.load gives its weights without one; the "
                               "model of a training checkpoint, gpunn.load_checkpoint(path).model, has its run's)")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor is the name of a logged value such as 'val_loss', got {monitor!r}")
        if monitor not in self.history:
            hint = missing_log_hint(monitor, self.history, "fit with validation_data or validation_fraction, or rank "
                                                           "the members by best('loss')")
            raise ValueError(f"the history has no {monitor!r}{hint}; it has {', '.join(sorted(self.history))}")
        if not self.history[monitor]:  # (numpy's min over no epochs: "zero-size array to reduction operation")
            raise ValueError(f"no epoch of the last fit finished (it was stopped in its first), so no member has a "
                             f"{monitor!r} to be picked by")
        values = numpy.asarray(self.history[monitor], dtype=numpy.float64)  # epochs x K
        maximise = monitor_mode(monitor) == "max"
        values = numpy.where(numpy.isfinite(values), values, -numpy.inf if maximise else numpy.inf)
        held = held_rows(self.history, self.n_models)
        if held is not None:  # the value of the weights each member holds
            per_member = values[held, numpy.arange(self.n_models)]
        else:  # a history without it (one made by hand; a loaded checkpoint's has it): each member's best epoch's
            per_member = values.max(axis=0) if maximise else values.min(axis=0)
        kept = self._members_left("to pick")  # a diverged member's best epoch may look best; its weights are not
        values = per_member[kept]
        return kept[int(numpy.argmax(values) if maximise else numpy.argmin(values))]

    fit = as_method(fit_ensemble, "Ensemble.fit", "ens.fit(X, Y, ...) trains all members on (X, Y), or on a data "
                                                  "source passed alone as X, and returns the history, as told below "
                                                  "(``model`` being this Ensemble).",
                    other_fits={"MLP": _fit}, made_with=__init__)

    # and the last fit's history (MLP's copy has none)
    _COPIED = (*DeviceModel._COPIED, "history", "diverged")
    _REPR_NAME, _PICKLE_NAMES = "Ensemble", ("an Ensemble", "ens")

    def _twin(self):
        """A new Ensemble like this one (see DeviceModel.__deepcopy__); its parameters are copied after."""
        return Ensemble(self.layer_sizes, self.n_models, [a.name for a in self.activations[:-1]],
                        self.activations[-1].name, self.bias, self.dtype, self.backend, list(self.seeds), self._fused,
                        self.graph, self.precision)

    @property
    def _REPR_HEAD(self):
        return f"n_models={self.n_models}, "


def member_bytes(layer_sizes, itemsize, rows, bias=True, precision="float32") -> int:
    """One member's parameters, gradients and optimizer state (Adam's two moments), and workspaces (Z, A,
    dA) for ``rows`` rows: what Ensemble's memory check and gpunn sweep's split count per member. With
    precision "bf16", also the 2-byte copies of its parameters, of the input rows and of the output
    layer's dZ (its hidden workspaces, 2 bytes a value there, are still counted at ``itemsize``)."""
    params = sum(a * b + (b if bias else 0) for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    copies = 2 * (params + (layer_sizes[0] + layer_sizes[-1]) * rows) if precision == "bf16" else 0
    return itemsize * (4 * params + 3 * sum(layer_sizes[1:]) * rows) + copies
