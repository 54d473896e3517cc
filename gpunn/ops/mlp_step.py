"""One small MLP's training step on the CPU as one Numba call: forward and backward (one_call_gradients, for
MLP.train_step), with Adam's or AdamW's step in the same call (one_call_step, for MLP.train_step_and_update).

A small net's step (16-64-64-1 at batch 128) made ~64 Python calls through MLP._forward, MLP._backward,
``CpuOps`` and Adam.step. Here it is the Ensemble's member-group kernel (gpunn.ops.ensemble._member_group_pass)
run on one member: the same BLAS calls at NumPy's addresses (gpunn.ops.cblas; MKL's where GPUNN_GEMM forces mkl, whose
products the generic path then makes) with the same operands (or CpuOps.matmul's small-k kernel where it computes a
forward product), the same elementwise kernels (NumPy's own tanh and exp loops for tanh and sigmoid:
gpunn.ops.ufuncs), the same float64 sums, Adam's constants formed in the same float64 arithmetic. So the bits
are those of the generic path, and it is taken only where that path makes exactly these calls
(one_call_step lists where), or where GPUNN_GEMM asks for a per-shape choice of library (auto: NumPy's BLAS, whatever
the generic path would choose; no bit-for-bit promise there); everywhere else the generic step runs.
"""
from __future__ import annotations

import numpy

from .base import GEMM_INT_MAX
from .cblas import mkl_blas, numpy_blas
from . import lazynumba
from .cpu import PARALLEL_MIN_ELEMENTS, SMALL_K, CpuOps, numba

from ..optim import Adam, AdamW

if numba is not None:
    from . import ensemble  # its _member_group_pass read at each call: the kernel itself once defined (lazynumba)
    from .ensemble import LAYER_SMALL_K, group_pass_activations, no_optimizer_arguments
    from .member_rates import ACTIVE, BETA1, BETA2, CLIP_NORM, CLIP_VALUE, HYPER_FIELDS, LR, WEIGHT_DECAY

_ADAMS = (Adam, AdamW)  # exactly these classes: a subclass may step otherwise
# the methods the one call stands in for: where one is set on the object (a spy, gpunn bench's timed profile run),
# the generic step runs, and so that one
_MODEL_METHODS = frozenset(("train_step", "_forward", "_backward"))
_OPS_METHODS = frozenset(("matmul", "bias_activation", "activation_backward", "activation_bias_backward",
                          "bias_gradient", "loss_gradient", "adam_step", "_split", "_sum_rows", "clip_grad_norm",
                          "clip_grad_value", "_clip"))
# CpuOps.matmul computes a product of inner dimension k <= SMALL_K and an out of at least this many elements
# outside BLAS (_small_k_matmul; k = 1 by a broadcast multiply)
_SMALL_K_MIN_OUT = 4096


def _blas_product(k, rows, cols) -> bool:
    """Whether CpuOps.matmul gives a (rows, k) @ (k, cols) product to numpy.matmul (BLAS)."""
    return not (k <= SMALL_K and rows * cols >= _SMALL_K_MIN_OUT)


def _step_blas(ops, dtype) -> tuple:
    """(the CBLAS the step calls, as gpunn.ops.cblas's array; gpunn.ops.gemm's MKL where they are MKL's, else None):
    NumPy's BLAS unless GPUNN_GEMM forces another library (CpuOps.one_call_numpy_blas); MKL's where it forces MKL,
    whose products the generic step then makes; (None, None) where it forces BLIS (no CBLAS of its own to call from
    Numba) or the library's could not be bound."""
    if ops.one_call_numpy_blas:
        return numpy_blas(dtype), None
    if [lib.name for lib in ops.gemm.libraries] == ["numpy", "mkl"]:  # forced (else one_call_numpy_blas)
        return mkl_blas(dtype), ops.gemm._impl["mkl"]
    return None, None


def _network_applies(model, ops):
    """The conditions on the model that do not change between steps (see one_call_step): (the CBLAS to call, MKL
    or None: _step_blas; the hidden layers' loops and layers for the kernel: group_pass_activations) where they
    hold, else None."""
    sizes, acts = model.layer_sizes, model.activations
    applies = (numba is not None and type(ops) is CpuOps and ops.fused
               and model.steps_as_mlp() and model.bias and not model._bf16
               and model.precision == "float32" and len(sizes) >= 3 and sizes[-1] == 1 and min(sizes[:-1]) >= 2
               and acts[-1].name == "identity" and model.params.size < PARALLEL_MIN_ELEMENTS)
    blas, mkl = _step_blas(ops, model.dtype) if applies else (None, None)
    activations = group_pass_activations(acts, model.dtype) if blas is not None else None
    return None if activations is None else (blas, mkl, *activations)


def _batch_applies(sizes, rows, mkl=None) -> bool:
    """The conditions on a batch of ``rows``: each product one the generic path gives to BLAS, but a hidden layer's
    Z = A W, which the kernel also computes as CpuOps.matmul's small-k product (_small_k_forward), and the output
    layer's dA = dZ w^T, k = 1 (a broadcast multiply or BLAS, a product of one term each); every layer's buffers
    under PARALLEL_MIN_ELEMENTS (no elementwise pass split over threads). With ``mkl`` (gpunn.ops.gemm's), each
    product under its ONE_THREAD_MACS: the generic step runs those on one MKL thread, as the kernel runs all."""
    if not 2 <= rows <= GEMM_INT_MAX:
        return False
    if mkl is not None and max(rows * n * m for n, m in zip(sizes[:-1], sizes[1:])) >= mkl.ONE_THREAD_MACS:
        return False
    L = len(sizes) - 1
    for l in range(L):
        n_in, n_out = sizes[l], sizes[l + 1]
        if not _blas_product(rows, n_in, n_out):  # dW = A^T dZ
            return False
        if l == L - 1 and not _blas_product(n_in, rows, n_out):  # the output layer's Z = A w (gemv)
            return False
        if 0 < l < L - 1 and not _blas_product(n_out, rows, n_in):  # a hidden layer's dA below = dZ W^T
            return False
        if rows * n_out >= PARALLEL_MIN_ELEMENTS:
            return False
    return True


def _small_k_forward(sizes, rows) -> list:
    """Per hidden layer, whether the generic path computes its Z = A W outside BLAS: CpuOps.matmul's small-k product
    (an input or hidden width up to SMALL_K, rows x width of at least _SMALL_K_MIN_OUT)."""
    return [not _blas_product(sizes[l], rows, sizes[l + 1]) for l in range(len(sizes) - 2)]


def _settings(optimizer) -> tuple:
    return (optimizer.beta1, optimizer.beta2, optimizer.eps, optimizer.weight_decay, optimizer.decoupled,
            optimizer.clip_norm, optimizer.clip_value)


class _Net:
    """The model's part of the kernel's arguments for one workspace, made for the model's buffers (by identity):
    ``lead``, those before X and Y (NumPy's BLAS, its tanh and exp loops, the hidden layers' table for this batch size);
    ``gradients``, those after X and Y of a pass with no optimizer step; ``head`` and ``tail``, those
    before and after the optimizer's. ``runs`` False: the kernel does not apply (the generic step runs)."""

    def __init__(self, model, ws):
        self.params, self.grads, self.weights, self.dW = model.params, model.grads, model.weights, model._dW
        network = _network_applies(model, model.ops)
        self.mkl = None if network is None else network[1]
        self.runs = (network is not None and model.params.flags.c_contiguous and model.grads.flags.c_contiguous
                     and _batch_applies(model.layer_sizes, ws.Z[-1].shape[0], self.mkl))
        if not self.runs:
            return
        dt = model.dtype
        one = lambda views: tuple(v[None] for v in views)  # a member axis of one
        hidden = len(model.layer_sizes) - 2
        rows = ws.Z[-1].shape[0]
        d64 = numpy.empty(2 * rows, numpy.float64)  # (a weighted batch's loss takes both halves)
        blas, _, loops, layers = network
        layers = layers.copy()  # this batch size's products
        layers[:, LAYER_SMALL_K] = _small_k_forward(model.layer_sizes, rows)
        self.lead, self.sums = (blas, loops, layers), numpy.zeros(1)
        # W, b, dW, db, Zo, dAo, sums, one, zero, scale (dA *= 2/rows, as loss_gradient)
        self.head = (one(model.weights), one(model.biases), one(model._dW), one(model._db), ws.Z[-1][None],
                     ws.dA[-1][None], self.sums, dt.type(1), dt.type(0), dt.type(2.0 / rows))
        # Zh, dAh, d64, k0, k1 and the signal: a slot of d64 nobody reads
        self.tail = (tuple(ws.Z[:hidden]), tuple(ws.dA[:hidden]), d64, 0, 1, d64.view(numpy.int64), 0, 0)
        self.gradients = (*self.head, *no_optimizer_arguments(dt), *self.tail)

    def of(self, model) -> bool:
        return self.params is model.params and self.grads is model.grads and self.weights is model.weights and \
            self.dW is model._dW


class _Plan:
    """The kernel's arguments for one (workspace, optimizer): built once, then per step only the step's learning
    rate and beta**step are written into its tables. ``runs`` False: the generic step runs instead."""

    def __init__(self, net, model, optimizer):
        s = optimizer.state
        # what it was made for: the model's part, the optimizer's state (by identity) and its settings
        self.net, self.optimizer, self.m, self.v, self.settings = net, optimizer, s.get("m"), s.get("v"), \
            _settings(optimizer)
        self.runs = net.runs and _optimizer_applies(model, optimizer)
        if not self.runs:
            return
        dt = model.dtype
        self.rates = numpy.zeros((1, HYPER_FIELDS))
        self.rates[0, BETA1], self.rates[0, BETA2], self.rates[0, ACTIVE] = optimizer.beta1, optimizer.beta2, 1
        self.rates[0, WEIGHT_DECAY] = optimizer.weight_decay
        self.rates[0, CLIP_NORM] = optimizer.clip_norm or 0.0  # (0: none; the kernel clips as CpuOps.clip_grad_norm)
        self.rates[0, CLIP_VALUE] = optimizer.clip_value or 0.0
        self.pow1, self.pow2 = numpy.zeros(1), numpy.zeros(1)
        decay = bool(optimizer.weight_decay)
        flags = numpy.array([1, decay and not optimizer.decoupled, decay and optimizer.decoupled], numpy.int64)
        self.args = (*net.head, model.params[None], model.grads[None], s["m"][None], s["v"][None], self.rates,
                     self.pow1, self.pow2, dt.type(optimizer.eps), flags, *net.tail)


def _net(model, ws) -> _Net:
    net = ws.one_call_net
    if net is None or not net.of(model):
        net = ws.one_call_net = _Net(model, ws)
    return net


def _steps_as_made(model) -> bool:
    """No method the one call stands in for is set on the model or its ops."""
    return _MODEL_METHODS.isdisjoint(model.__dict__) and _OPS_METHODS.isdisjoint(model.ops.__dict__)


def _takes(model, X, Y) -> bool:
    """The per-call conditions on the batch (see one_call_step)."""
    dt = model.dtype
    return (X.dtype == dt and Y.dtype == dt and X.flags.c_contiguous and Y.flags.c_contiguous
            and X.ndim == Y.ndim == 2 and X.shape[1] == model.layer_sizes[0]
            and Y.shape == (X.shape[0], 1 + model._weighted_batch(Y)))  # (a weighted batch: each row's weight too)


def _optimizer_applies(model, optimizer) -> bool:
    """one_call_step's conditions on the optimizer (see there)."""
    s = optimizer.state
    m, v = s.get("m"), s.get("v")
    return (optimizer._params is model.params and optimizer.ops is model.ops
            and m is not None and v is not None
            and all(a.dtype == model.dtype and a.shape == model.params.shape and a.flags.c_contiguous for a in (m, v))
            and all(type(x) is float for x in _settings(optimizer)[:4]))


def one_call_step(model, X, Y, optimizer, lr):
    """model.train_step(X, Y) then optimizer.step(model.params, model.grads, lr) as one call of the member-group
    kernel, returning the batch's sum of squared errors (numpy.float64, as train_step's); None, having done
    nothing, where the generic path would not make exactly its calls, or where the net is not small. It runs only
    for a gpunn.MLP whose train_step, _forward and _backward are MLP's (not a subclass's, not set on the model), on
    CpuOps with Numba's kernels (no method set on the ops) and NumPy's BLAS: GPUNN_GEMM unset or numpy, or a
    per-shape choice (auto, a list), under which the generic step might give a product to another library and it
    runs all the same (CpuOps.one_call_numpy_blas says why); or with MKL's (gpunn.ops.cblas.mkl_blas) where
    GPUNN_GEMM forces mkl, on one MKL thread, for products under its ONE_THREAD_MACS; not where it forces blis; with bias,
    ReLU, tanh or sigmoid hidden layers (tanh and sigmoid where NumPy's tanh or exp loop could be bound:
    gpunn.ops.ufuncs), an identity output of one column (Y's, and in a fit with sample_weight a second, each row's
    weight: gpunn.sample_weights), no size under 2, float32 precision and under
    PARALLEL_MIN_ELEMENTS parameters; with an Adam or AdamW (exactly; its step not set on it; its clip_norm or
    clip_value, if any, clipped in the kernel by CpuOps' rule, gpunn.ops.cpu._clip_row) bound to the model, with float
    settings, and a Python float ``lr``; on C-ordered X and Y of the model's dtype whose rows make each
    product one the generic path gives to BLAS, but a hidden layer's forward product, which may be its small-k
    product (an input or hidden width up to SMALL_K), and every layer's rows x width under PARALLEL_MIN_ELEMENTS
    (_batch_applies). Not before Numba is imported: until then (gpunn.ops.cpu.NUMBA_START_SECONDS) the generic
    step's ops run the reference, with the same bits, and import it once it pays."""
    if type(optimizer) not in _ADAMS or type(lr) is not float or "step" in optimizer.__dict__ or \
            not _steps_as_made(model) or not lazynumba.imported():
        return None
    ws = model._workspace(X.shape[0])  # (train_step's)
    net, plan, s = _net(model, ws), ws.one_call_plan, optimizer.state
    if plan is None or not (plan.net is net and plan.optimizer is optimizer and plan.m is s.get("m")
                            and plan.v is s.get("v") and plan.settings == _settings(optimizer)):
        plan = ws.one_call_plan = _Plan(net, model, optimizer)
    if not (plan.runs and _takes(model, X, Y)):
        return None
    optimizer.steps += 1
    step = optimizer.steps
    plan.pow1[0], plan.pow2[0] = optimizer.beta1**step, optimizer.beta2**step  # Python's pow, as Adam.step's
    plan.rates[0, LR] = lr
    if net.mkl is None:
        ensemble._member_group_pass(*net.lead, X[None], Y[None], *plan.args)
    else:
        _on_one_mkl_thread(net.mkl, net.lead, X, Y, plan.args)
    return net.sums[0]


def _on_one_mkl_thread(mkl, lead, X, Y, args):
    """The kernel with MKL on the calling thread alone (as gpunn.ops.gemm's MKL runs the generic step's products)."""
    with mkl.one_thread():
        ensemble._member_group_pass(*lead, X[None], Y[None], *args)


def one_call_gradients(model, X, Y):
    """model.train_step(X, Y) as one call of the member-group kernel with no optimizer step in it (for the other
    optimizers, a gradient hook, loss_and_gradients), returning the batch's sum of squared errors; None, having
    done nothing, where it does not apply: one_call_step's conditions on the model and the batch."""
    if not (_steps_as_made(model) and lazynumba.imported()):
        return None
    net = _net(model, model._workspace(X.shape[0]))
    if not (net.runs and _takes(model, X, Y)):
        return None
    if net.mkl is None:
        ensemble._member_group_pass(*net.lead, X[None], Y[None], *net.gradients)
    else:
        _on_one_mkl_thread(net.mkl, net.lead, X, Y, net.gradients)
    return net.sums[0]
