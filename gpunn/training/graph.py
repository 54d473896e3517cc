"""A whole training step -- forward, backward, optimizer -- captured once as a CUDA graph and
replayed for every batch of the same shape: the default on a CUDA GPU (``graph=None``, "auto") for one
model and for an ensemble's K members alike, forced with ``MLP(graph=True)`` / ``Ensemble(graph=True)`` /
``fit(..., graph=True)``, off with ``graph=False``.

A small net's step is about two dozen kernel launches of a few microseconds each, so the GPU
waits on the launches, not the math. Replaying a graph makes it one launch (plus two copies of
the batch into the graph's fixed input buffers).

What makes the step capturable:
- every buffer is allocated before capture (the workspace, the kernels' scratch, the batch
  buffers, the 0-d loss, the optimizer state) by one eager warm-up step on the same stream and thread;
- the matrix products go to cuBLAS through ``gpunn.ops.cublas.CapturableBlas`` (CuPy refuses its own
  cuBLAS calls during capture), on a handle bound to the capture stream, with a fixed workspace;
- the optimizer's per-step scalars (learning rate, Adam's bias corrections) are read from a
  device array that the graph itself advances (``optimizer_tick``), so the same graph serves
  every step; the host writes the learning rate when it changes.

Where a step cannot be captured -- the CPU, ``fused=False`` (CuPy's generic expressions allocate
temporaries), an optimizer without ``graph_update``, a gradient hook between backward and the
optimizer (data-parallel training), a capture that fails, or a product cuBLAS refuses on the
capture handle (in the first, eager step of a shape, before any update) -- ``reason`` says why, and:

- by default ("auto") the ordinary step runs, silently (``model.graph_trainer.reason`` keeps the why);
- with ``graph=True`` a GraphWarning says so, and the same launches run eagerly: the same kernels
  with the same device-side state, so the math is the same either way (tests/test_graph.py compares
  this eager form with ordinary training on the CPU; tests/test_graph_gpu.py the captured one).

Each batch shape gets its own graph (the last partial batch of an epoch too: it runs eagerly the
first time, then is captured when it recurs); the last three shapes are kept. gpunn's data sources
cut every epoch into full batches and one partial batch, so a run has at most two shapes. Neither
the partial batch nor callbacks are reasons to fall back: per-batch callbacks run on the host
between two replays, ordered with them through the caller's stream, and may read or change the
parameters in place (a parameter buffer that is replaced is noticed, and the step captured again).

Where it wins (bench/RESULTS.md, H200): the graph step ran 11.5x (small), 9.0x (medium) and 4.8x
(deep) the eager one, and tied it on large (within 0.3%, float32, tf32 and bf16: the GEMMs take 95%
of that step, the launches it saves are noise there). It never lost, so "auto" uses it for every
shape rather than by a size rule; what it costs is a 32 MiB cuBLAS workspace, a copy of each batch
into fixed buffers, and one eager step plus one capture per batch shape. An ensemble's step (K
members' batched products and member kernels, EnsembleGraphTrainer) is launches of the same kind:
at 256 small nets (small-x256) the graph ran 5.5x the eager step with the same weights (0 relative
difference, float64) and 267x 256 sequential fits, 9.7x a torch vmap ensemble (H200, session 23),
so it is the default there too, for every shape, by the same rule.
"""
from __future__ import annotations

import threading
import warnings

import numpy

from ..backend import user_stacklevel
from ..ops.cublas import GemmError


class GraphWarning(RuntimeWarning):
    """The training step could not be captured; it runs without a graph."""


def graph_mode(value):
    """``graph=`` as given to MLP / fit: None ("auto": on for CUDA where it can capture), True, False."""
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None
    if isinstance(value, (bool, numpy.bool_)):
        return bool(value)
    raise ValueError(f"graph must be None or 'auto' (the default: on for a CUDA GPU where the step can be captured), "
                     f"True or False, got {value!r}")


_RESOURCES = threading.local()
_IDLE: dict = {}  # device -> the (stream, CapturableBlas) pairs of threads that have exited, for the next threads
_IDLE_LOCK = threading.Lock()


class _ThreadResources(dict):
    """One thread's capture resources by device. When the thread exits (Python drops its locals, before join()
    returns) they go to ``_IDLE`` for the next thread instead of being destroyed: cublasDestroy synchronizes the
    device (cuBLAS docs), which CUDA refuses while any stream captures and which invalidates those captures, so a
    worker thread ending would end the capture another thread holds open. So gpunn makes as many pairs as threads
    use them at once, and destroys them only in release_capture_resources (or at exit)."""

    released = False

    def __del__(self):
        if not self.released and self:
            try:
                with _IDLE_LOCK:
                    for device, got in self.items():
                        _IDLE.setdefault(device, []).append(got)
            except Exception:  # noqa: BLE001 - at interpreter exit the module's globals may be gone
                pass


def capture_resources(device: str):
    """(stream, CapturableBlas) that every GraphTrainer of this thread on ``device`` (e.g. "cuda:1", the
    current device) captures and replays on: made once (or taken up from a thread that exited), so a fit
    costs no cuBLAS handle, stream or 32 MiB workspace of its own (graphs on one stream run one at a time,
    so they can share them)."""
    table = getattr(_RESOURCES, "table", None)
    if table is None:
        table = _RESOURCES.table = _ThreadResources()
    got = table.get(device)
    if got is None:
        with _IDLE_LOCK:
            idle = _IDLE.get(device)
            got = idle.pop() if idle else None
        if got is None:
            import cupy

            from ..ops.cublas import CapturableBlas

            stream = cupy.cuda.Stream(non_blocking=True)
            got = (stream, CapturableBlas(stream.ptr))
        table[device] = got
    return got


def graph_trainer_for(model, optimizer, **kwargs):
    """The GraphTrainer for a trainable: an MLP's, or an Ensemble's (K members in one graph)."""
    cls = EnsembleGraphTrainer if getattr(model, "n_models", None) is not None else GraphTrainer
    return cls(model, optimizer, **kwargs)


def captured_settings(optimizer):
    """What a captured step holds of one model's optimizer: its settings but lr (a graph reads its lr from the device
    each step), so clip_norm, clip_value, weight_decay, betas..., as launch arguments or as the kernels launched. A
    next fit with the same optimizer replays the graphs only while these are the same (opt.clip_norm set between fits
    is the next fit's clip). None for an ensemble's optimizer: its members' settings are a device table."""
    config = getattr(optimizer, "config", None)
    if config is None or getattr(optimizer, "members", None) is not None:
        return None
    return {key: value for key, value in config().items() if key != "lr"}


def release_capture_resources():
    """Drop this thread's shared capture streams and cuBLAS handles and those left by exited threads (after
    the graphs that use them; destroying a handle synchronizes the device: not while a stream captures)."""
    table = getattr(_RESOURCES, "table", None)
    if table is not None:
        table.released = True
    _RESOURCES.table = None
    with _IDLE_LOCK:
        _IDLE.clear()


class GraphTrainer:
    """Runs training steps for one (model, optimizer): captured per batch shape where possible.

    ``auto`` (``graph=None``): where nothing can be captured, the ordinary step runs, silently;
    else (``graph=True``) a GraphWarning, and the eager form of the captured step. ``blocked``: a
    reason known before set-up (a gradient hook), so nothing is set up. ``active``: whether the
    training loop should hand it the steps."""

    def __init__(self, model, optimizer, auto=False, blocked=None):
        self.model, self.optimizer, self.auto = model, optimizer, bool(auto)
        self.settings = captured_settings(optimizer)
        xp = model.xp
        # [step t, lr, 1 - beta1^t, 1 - beta2^t]: see kernels/optimizers.cu
        self.state = xp.zeros(4, numpy.float64)
        self.state[0] = self._host_steps = optimizer.steps
        self._lr = None
        self._lr_writes = None  # on a GPU: gpunn.ops.pinned_writes into state[1]
        self._steps = {}  # rows (or a (K, rows, n) batch's shape) -> _Step
        self._warned = None  # the reason a GraphWarning gave last: each reason is said once
        self.reason = blocked or self._why_not_capture()
        self.stream = None
        self.blas = None
        self._events = None
        if self.reason is None:
            self._set_up_stream()

    # ---- set-up --------------------------------------------------------------------------
    def _why_not_capture(self):
        model, opt = self.model, self.optimizer
        if not model.backend.is_gpu:
            return "no GPU: the step runs eagerly"
        if not getattr(model.ops, "fused", False):
            return "fused=False: CuPy's generic expressions allocate temporaries"
        if getattr(opt, "graph_update", None) is None:
            return f"the optimizer {type(opt).__name__} has no graph_update"
        return None

    def _set_up_stream(self):
        try:
            self.stream, self.blas = capture_resources(self.model.backend.device)
        except Exception as exc:  # noqa: BLE001 - no library, no symbol, a CuPy without streams...
            self._give_up(f"cuBLAS could not be set up for capture: {type(exc).__name__}: {exc}")

    def _give_up(self, reason):
        self.reason = reason
        self.blas = None
        for step in self._steps.values():
            step.graph = None
        self.warn_if_forced()

    def warn_if_forced(self):
        """With graph=True, a GraphWarning saying why the step is not captured (the default, "auto", falls
        back silently; ``reason`` says why). Called when capture fails, and by the training loop when the
        reason is known before the first step (the CPU, fused=False, an optimizer without graph_update, a
        gradient hook)."""
        if not self.auto and self.reason is not None and self.reason != self._warned:
            self._warned = self.reason
            warnings.warn(f"graph=True: not capturing the training step ({self.reason}); it runs without a graph",
                          GraphWarning, stacklevel=user_stacklevel())

    @property
    def active(self) -> bool:
        """Whether steps go through this trainer: always with graph=True (the eager form where it cannot
        capture); by default only while it can capture."""
        return not (self.auto and self.reason is not None)

    def resync(self):
        """Before reuse by another fit: take up the optimizer's step count if it moved meanwhile."""
        if self.optimizer.steps != self._host_steps:
            self.state[0] = self._host_steps = self.optimizer.steps

    @property
    def captured(self) -> bool:
        """Whether some batch shape runs as a replayed graph."""
        return any(step.graph is not None for step in self._steps.values())

    # ---- one step ------------------------------------------------------------------------
    def step(self, X, Y, lr):
        """Forward, backward and optimizer on the batch (X, Y); returns the batch's 0-d sum of
        squared errors (an ensemble's (K,) sums; a device array, overwritten by the next step of the
        same shape)."""
        model, opt = self.model, self.optimizer
        shape = X.shape[0] if X.ndim == 2 else X.shape  # rows; an ensemble's bootstrap batch: (K, rows, n)
        if opt.graph_update is None or not self.active:  # nothing to replay with: the ordinary step
            sum_sq = model.train_step(X, Y)
            opt.step(model.params, model.grads, lr)
            return sum_sq
        step = self._steps.get(shape)
        if step is not None and step.Y.shape != Y.shape:
            # the same rows with or without the weights' column of Y (a weighted fit's, gpunn.sample_weights) after
            # a fit with the same optimizer: its graph reads the other layout, so a step of its own, captured anew
            del self._steps[shape]
            step = None
        if step is None:
            if len(self._steps) >= 3:  # batch size, last partial batch, ...
                self._steps.pop(next(iter(self._steps)))
            step = self._steps[shape] = _Step(self, X.shape, Y.shape)
        self._set_lr(lr)
        if self.stream is not None:
            self._follow_thread()
        if self.stream is None:  # the eager form (CPU, or nothing to capture with)
            step.load(X, Y)
            step.record()
        else:
            try:
                self._on_stream(step, X, Y)
            except GemmError as exc:  # cuBLAS refused a product on the capture handle: before any update
                self._give_up(f"cuBLAS refused a product on the capture handle: {exc}")
                if not self.active:  # the default: this batch and the rest take the ordinary step
                    return self.step(X, Y, lr)
                self._on_stream(step, X, Y)  # graph=True: the eager form, with CuPy's products
        self.optimizer.steps += 1
        self._host_steps = self.optimizer.steps
        return step.sum_sq

    def _follow_thread(self):
        """Capture and replay on the stream and cuBLAS handle of the thread running this step. capture_resources
        shares them among one thread's graphs because those run one at a time; a trainer taken up on another thread
        (a fit continued there with the same optimizer) must not keep the first thread's, which that thread may be
        using meanwhile for another model, capturing on it even: CUDA would record this step's work into that graph
        instead of running it, and two threads' replays would share one cuBLAS workspace. The graphs are made again
        on this thread's stream (after an eager step here, as any thread's first)."""
        try:
            stream, blas = capture_resources(self.model.backend.device)
        except Exception as exc:  # noqa: BLE001 - as _set_up_stream's
            self.stream = None
            self._give_up(f"cuBLAS could not be set up for capture: {type(exc).__name__}: {exc}")
            return
        if stream is not self.stream:
            # a trainer that gave up capturing keeps its eager form on CuPy's products (blas None) on the new stream
            self.stream, self.blas = stream, blas if self.reason is None else None
            for step in self._steps.values():
                step.graph = None

    def _set_lr(self, lr):
        """The step's rate into state[1] where it changed (once an epoch, or every step with a per-step schedule)."""
        if lr != self._lr:
            if self.model.xp is numpy:
                self.state[1] = lr
            else:  # an asynchronous copy from pinned memory: CuPy's setitem launched a fill kernel (16 us a step)
                if self._lr_writes is None:
                    from ..ops.pinned_writes import PinnedWrites

                    self._lr_writes = PinnedWrites(self.state[1:2])
                self._lr_writes.write(lr)
            self._lr = lr

    def _on_stream(self, step, X, Y):
        import cupy

        # the caller's stream (the legacy null stream unless the caller set another): the batch was made
        # there and the loss is read there, so the step is ordered with it by two events either way
        caller = cupy.cuda.get_current_stream()
        if self._events is None:  # made once: an event per step would be two more driver calls
            self._events = (cupy.cuda.Event(disable_timing=True), cupy.cuda.Event(disable_timing=True))
        before, after = self._events
        before.record(caller)
        self.stream.wait_event(before)  # after the batch was made and the last step read
        ops = self.model.ops
        saved, ops.blas = ops.blas, self.blas
        try:
            with self.stream:
                step.load(X, Y)
                if step.graph is not None and step.pointers() != step.captured_at:
                    step.graph = None  # a buffer it baked in moved: capture again
                # capture after an eager step on this thread: Ops.scratch is per thread, so a thread's first step
                # allocates its scratch (a bias gradient's row chunks), which must not happen in the capture
                if self.reason is None and step.graph is None and step.warm == threading.get_ident():
                    self._capture(step)
                if step.graph is not None:
                    step.graph.launch(self.stream)
                else:
                    step.record()
                    step.warm = threading.get_ident()
        finally:
            ops.blas = saved
            after.record(self.stream)  # also after a failure: what was queued is done before what follows
            caller.wait_event(after)

    def _capture(self, step):
        stream = self.stream
        step.graph = None
        import cupy

        # relaxed, by name (CuPy's default): another thread's allocations and syncs go on while this one captures
        stream.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeRelaxed)
        graph = None
        try:
            step.record()
        except BaseException as exc:  # noqa: BLE001 - any failure means: run without a graph
            # the capture ends whatever was raised, a KeyboardInterrupt too (Ctrl-C; a fit with handle_interrupt=False
            # lets it land anywhere): CUDA records what is issued to a capturing stream and never runs it, and this
            # stream is every fit's on this thread (capture_resources), so left capturing it would swallow their steps
            try:
                stream.end_capture()
            except Exception:  # noqa: BLE001
                pass
            if not isinstance(exc, Exception):
                raise
            self._give_up(f"capture failed: {type(exc).__name__}: {exc}")
            return
        try:
            graph = stream.end_capture()
        except Exception as exc:  # noqa: BLE001
            self._give_up(f"capture failed: {type(exc).__name__}: {exc}")
            return
        step.graph, step.captured_at = graph, step.pointers()


class EnsembleGraphTrainer(GraphTrainer):
    """GraphTrainer for a gpunn.Ensemble: the K members' step -- batched products (cuBLAS strided batched
    on the graph's handle), the member-axis kernels, the K losses into a fixed (K,) buffer and the members'
    optimizer step (``EnsembleOptimizer.graph_update``) -- captured as one graph. The epoch's K learning
    rates and the frozen members live in the members' table on the device, rewritten in place before a
    replay when they change (once per epoch at most), so one graph serves the whole run."""

    def _set_lr(self, lr):
        self.optimizer.set_rates(lr)
        self.optimizer.rates.device  # the copy to the device happens here, outside any capture


class _Step:
    """The fixed buffers of one batch shape, and the step's launches on them."""

    def __init__(self, trainer, x_shape, y_shape):
        model = trainer.model
        xp = model.xp
        rows = x_shape[-2]  # an ensemble's bootstrap batch is (K, rows, n)
        self.trainer, self.rows = trainer, rows
        self.X = xp.empty(x_shape, model.dtype)
        self.Y = xp.empty(y_shape, model.dtype)
        members = getattr(model, "n_models", None)
        self.sum_sq = xp.zeros(() if members is None else (members,), numpy.float64)
        self.graph = None
        self.warm = None  # the thread that ran an eager step: kernels compiled, every buffer (its scratch) allocated
        self.captured_at = None
        # held here: a captured graph's workspace must stay alive even if the model drops it
        self.ws = model._workspace(rows)

    def pointers(self):
        """The device addresses a captured graph has baked in (of the parameters, gradients and optimizer
        state); if any moved, capture again. Addresses, not the arrays' ids: a buffer replaced twice can get
        the first one's id back (CPython reuses a freed object's memory) at another address."""
        model, opt = self.trainer.model, self.trainer.optimizer
        arrays = [model.params, model.grads, *opt.state.values()]
        if hasattr(opt, "rates"):  # an ensemble's members' table (rewritten in place, never moved)
            arrays.append(opt.rates.device)
        return tuple((a.data.ptr, a.nbytes) for a in arrays)

    def load(self, X, Y):
        """The batch into the fixed buffers, on the current stream: on the GPU one cudaMemcpyAsync per
        array where the batch is contiguous (a CuPy copy kernel costs several times its host time, and
        this runs before every replay); elsewhere an ordinary copy."""
        on_device = self.trainer.stream is not None
        for dst, src in ((self.X, X), (self.Y, Y)):
            if on_device and src.dtype == dst.dtype and src.shape == dst.shape and src.flags.c_contiguous:
                dst.data.copy_from_device_async(src.data, dst.nbytes)
            else:
                dst[...] = src

    def record(self):
        """The step's launches, on the current stream: nothing allocates, nothing reads back."""
        t = self.trainer
        model = t.model
        model._forward(self.X, self.ws)
        model._backward(self.X, self.Y, self.ws, sum_sq=self.sum_sq)
        t.optimizer.graph_update(model.params, model.grads, t.state)
