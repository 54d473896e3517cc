"""The callbacks that watch a logged value, :class:`EarlyStopping` and :class:`ReduceLROnPlateau`, and the rules
every monitoring callback shares (ModelCheckpoint's save_best_only and an ensemble's per-member early stopping
too): the default monitor, which way a value improves (:func:`monitor_mode`), when it does (:func:`improves`), and
the refusal of a monitor that no epoch's logs can hold (:func:`check_logged`).

Both follow the callback-state protocol documented on :class:`gpunn.training.callback_protocol.Callback`;
:mod:`gpunn.checkpoint` stores and restores it, so a resumed run continues with the same patience counters, best
value and best weights.
"""
from __future__ import annotations

import inspect
import math

from ..backend import host_array
from ..checks import flag, got, non_negative_int, non_negative_number, real
from ..hints import value_repr
from ..optim import Optimizer
from .callback_protocol import Callback, writes_checkpoints
from .history import missing_log_hint

__all__ = ["EarlyStopping", "ReduceLROnPlateau", "check_logged", "checked_monitor", "checked_monitoring",
           "default_monitor", "improves", "may_add_logs", "missing_monitor", "monitor_mode"]


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """Which way ``monitor`` improves, "min" or "max": ``mode`` itself, or for "auto" "max" on a name ending in r2
    (R², val_r2: higher is better) and "min" on the rest (losses, errors). Any other mode raises ValueError. The
    one rule for every monitoring callback (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint's save_best_only,
    an ensemble's per-member early stopping), ``Ensemble.best`` and a checkpoint's record of their settings."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if monitor.endswith("r2") else "min"
    return mode


def checked_monitor(monitor):
    """A monitoring callback's ``monitor``: the name of a logged value, or None (:func:`default_monitor`). Checked
    before its truth is read: "" (or 0, False, []) watched the default without a word, and a number failed with
    "'int' object has no attribute 'endswith'"."""
    if monitor is None:
        return None
    if not isinstance(monitor, str) or not monitor:
        kind = TypeError if not isinstance(monitor, str) else ValueError
        raise kind(f"monitor must be the name of a logged value such as 'val_loss', or None (val_loss with "
                   f"validation, else loss), got {monitor!r}")
    return str(monitor)


def checked_monitoring(monitor, min_delta, mode) -> tuple:
    """(monitor, min_delta, mode) of a monitoring callback, checked in its order (min_delta a non-negative number,
    :func:`checked_monitor`, then the mode against the monitor or "loss": an unknown mode refused as it is made,
    not when fit starts): EarlyStopping's, ReduceLROnPlateau's, ModelCheckpoint's and an ensemble's per-member early
    stopping's alike."""
    min_delta, monitor = non_negative_number(min_delta, "min_delta"), checked_monitor(monitor)
    monitor_mode(monitor or "loss", mode)
    return monitor, min_delta, mode


def improves(value, best, mode: str, min_delta: float) -> bool:
    """Whether an epoch's monitored ``value`` improves on ``best`` (None before any): a first value if it is
    finite (a NaN never becomes the best), then one past ``best`` by more than ``min_delta`` in ``mode``'s
    direction ("min" or "max", :func:`monitor_mode`); an equal value is no improvement. One model's monitoring
    callbacks and each ensemble member's early stopping decide by it."""
    if best is None:
        return math.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


def missing_monitor(who, name, logs, more="") -> str:
    """The refusal of a callback (``who``) that monitors ``name``, which ``logs`` (an epoch's, or the names a run
    logs) lack: with missing_log_hint's hint and what they hold (``more``: what may add to it)."""
    hint = missing_log_hint(name, logs, "pass validation_data or validation_fraction to fit")
    return f"{who} monitors {name!r}, which the logs lack{hint}; available: {', '.join(sorted(logs))}{more}"


def may_add_logs(callback) -> bool:
    """Whether ``callback`` may put entries of its own into an epoch's logs: its on_epoch_end is not gpunn's
    (gpunn's callbacks add none), so a callback of yours, or any hook whose origin is unknown, may."""
    module = getattr(getattr(callback, "on_epoch_end", None), "__module__", None) or ""
    return not (module == "gpunn" or module.startswith("gpunn."))


def check_logged(name, trainer, owner, who) -> None:
    """Refuse, before the first epoch, a monitored ``name`` that no epoch's logs can hold: not one the loop logs
    (``trainer.log_keys``: loss, lr and timing, and val_* with validation data) and no callback ending the epoch
    before ``owner`` (the callback that reads it) may add it (:func:`may_add_logs`). A callback of yours that
    writes the name into the logs before ``owner`` runs is so never refused; one after it cannot reach ``owner``'s
    logs (each epoch's are a new dict). Where one before it may add it, the epoch's end checks (it raised only
    then for every run, after a first epoch that may be long)."""
    keys = getattr(trainer, "log_keys", None)
    if keys is None or name in keys:
        return
    callbacks = list(trainer.callbacks)
    at = next((i for i, cb in enumerate(callbacks) if cb is owner), len(callbacks))
    if not any(may_add_logs(cb) for cb in callbacks[:at]):
        raise ValueError(missing_monitor(who, name, keys, ", and what a callback of yours listed before it adds"))


def default_monitor(validated: bool) -> str:
    """What a monitoring callback without a ``monitor`` watches: val_loss (the training loss's formula on the
    validation rows) in a run with validation data (``validated``), else the training loss."""
    return "val_loss" if validated else "loss"


class _Monitoring(Callback):
    """Tracks the best value of a monitored log entry, with a minimum improvement."""

    def __init__(self, monitor=None, min_delta=0.0, mode="auto"):
        self.monitor, self.min_delta, self.mode = checked_monitoring(monitor, min_delta, mode)
        self._resumed = False
        self._reset()

    def _reset(self):
        """A fresh run's progress. on_train_begin calls it unless a checkpoint's state was just loaded, so a
        callback passed to a second fit starts that run afresh (it stopped the second fit at once, with an
        empty history, when the first had stopped early)."""
        self.best, self.best_epoch, self.wait = None, None, 0

    def on_train_begin(self, trainer):
        if not self._resumed:
            self._reset()
        self._resumed = False
        self._monitor = self.monitor or default_monitor(trainer.validation is not None)
        self._mode = monitor_mode(self._monitor, self.mode)
        if any(cb is self for cb in getattr(trainer, "callbacks", ())):  # (a tracker inside another callback,
            self.check_logged(trainer, self)                              # ModelCheckpoint's: its owner checks)

    def check_logged(self, trainer, owner):
        """Refuse the monitor before the first epoch where no epoch's logs can hold it (:func:`check_logged`)."""
        check_logged(self._monitor, trainer, owner, type(owner).__name__)

    def _value(self, logs, owner=None):
        """The monitored value of an epoch's ``logs``; ``owner``: the callback that reads it (default: this one)."""
        if self._monitor not in logs:
            raise ValueError(missing_monitor(type(owner or self).__name__, self._monitor, logs))
        return float(logs[self._monitor])

    def _improved(self, value) -> bool:
        return improves(value, self.best, self._mode, self.min_delta)

    def _base_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def _load_base(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], int(state["wait"])
        self._resumed = True  # the next run continues from this state


class EarlyStopping(_Monitoring):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    monitor defaults to "val_loss" when fit has validation data, else "loss"; one that no epoch's logs can hold
    is refused before the first epoch (see :func:`check_logged`: a callback of yours listed before this one may
    write it into the logs). mode "auto" maximises names ending in r2 and minimises the rest. With ``restore_best_weights`` the
    model ends with the parameters of its best epoch (a device-side copy is kept; no host
    transfer) when training ends normally, stops early or diverges (TrainingDiverged still
    raises); after an interruption the model keeps its latest weights so that a checkpoint of it
    resumes exactly. A checkpoint written after the restore (the run's last) also keeps the weights the
    run had reached (``last_params``), which a resume that trains further (``epochs=`` raised) continues
    from, as the run started with that total would.
    """

    def __init__(self, monitor=None, patience=10, min_delta=0.0, mode="auto", restore_best_weights=True):
        super().__init__(monitor, min_delta, mode)
        self.patience = non_negative_int(patience, "patience")
        self.restore_best_weights = flag(restore_best_weights, "restore_best_weights")

    def _reset(self):
        super()._reset()
        self.best_params, self.stopped_epoch = None, None
        self.last_params = None  # the weights the run had reached when on_train_end put the best ones back

    def get_config(self):
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "mode": self.mode, "restore_best_weights": self.restore_best_weights}

    def on_train_begin(self, trainer):
        super().on_train_begin(trainer)
        if self.best_params is not None:  # restored from a checkpoint as a host array
            self.best_params = trainer.model.xp.asarray(self.best_params)
        if self.last_params is not None:  # the run's last checkpoint holds its best weights: it continues from
            trainer.model.params[...] = trainer.model.xp.asarray(self.last_params)  # those it had reached
            self.last_params = None
        if self.stopped_epoch is not None:  # resuming a run that had stopped early: it is over
            trainer.stop = True
            trainer.history.stopped_early = True

    def on_epoch_end(self, trainer, epoch, logs):
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best_weights:
                params = trainer.model.params
                if self.best_params is None or self.best_params.shape != params.shape:
                    self.best_params = params.copy()
                else:
                    self.best_params[...] = params
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            trainer.stop = True
            trainer.history.stopped_early = True

    def on_train_end(self, trainer):
        diverged = getattr(trainer, "diverged", False)  # the weights are garbage: the best epoch's are kept
        if trainer.failed and not diverged:
            return
        # the best of the epochs so far, an interrupted run's too (as an Ensemble's MemberEarlyStopping gives it)
        trainer.history.best_epoch, trainer.history.best = self.best_epoch, self.best
        if trainer.interrupted:  # the model keeps the weights it stopped with, as the checkpoint written now holds
            return
        last = trainer.history["epoch"][-1] if trainer.history.get("epoch") else None
        if self.restore_best_weights and self.best_params is not None and (diverged or self.best_epoch != last):
            if not diverged and writes_checkpoints(trainer):  # for the checkpoint written now: a resume that
                self.last_params = trainer.model.params.copy()  # trains further goes on from them
            trainer.model.params[...] = self.best_params

    def state_dict(self):
        arrays = {}
        if self.best_params is not None:
            arrays["best_params"] = host_array(self.best_params)
        if self.last_params is not None:
            arrays["last_params"] = host_array(self.last_params)
        return {**self._base_state(), "stopped_epoch": self.stopped_epoch}, arrays

    def load_state_dict(self, state, arrays):
        self._load_base(state)
        self.stopped_epoch = state.get("stopped_epoch")
        if "best_params" in arrays:
            self.best_params = arrays["best_params"]  # host; moved to the device in on_train_begin
        self.last_params = arrays.get("last_params")  # (absent: none, as in files from before it)


class ReduceLROnPlateau(_Monitoring):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    It scales the schedule rather than replacing it: the rate used in an epoch is
    ``lr x schedule(epoch) x plateau_scale``, so a cosine or step schedule keeps its shape
    and is lowered as a whole. ``min_lr`` bounds what the reductions can bring the rate
    to (the schedule itself may still go lower). ``cooldown`` epochs follow each reduction
    before the patience count restarts. ``monitor`` and ``mode`` are EarlyStopping's; an epoch improves
    when it beats the best value by more than ``min_delta`` (default 1e-4, as Keras').

    It counts as Keras's: the rate is lowered at the ``patience``-th epoch without improvement. PyTorch's
    ``ReduceLROnPlateau(optimizer, patience=p, cooldown=c, threshold=t, threshold_mode="abs")`` lowers it at the one
    after: it is ``ReduceLROnPlateau(patience=p + 1, cooldown=c + 1, min_delta=t)`` here. PyTorch's default
    threshold is a fraction of the best value (``threshold_mode="rel"``), ``min_delta`` an amount.
    """

    def __init__(self, monitor=None, factor=0.1, patience=10, min_delta=1e-4, mode="auto", cooldown=0, min_lr=0.0):
        if _an_optimizer(monitor):  # PyTorch's ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=3)
            defaults = inspect.signature(ReduceLROnPlateau).parameters
            options = {"factor": factor, "patience": patience, "min_delta": min_delta, "mode": mode,
                       "cooldown": cooldown, "min_lr": min_lr}
            if isinstance(factor, str):  # PyTorch's ReduceLROnPlateau(optimizer, "min"): its second place is mode
                options["factor"], options["mode"] = defaults["factor"].default, factor
            shown = ", ".join(f"{key}={value!r}" for key, value in options.items() if value != defaults[key].default)
            given = (value_repr(monitor) if isinstance(monitor, Optimizer)  # (PyTorch's repr runs over 14 lines)
                     else f"{type(monitor).__module__.split('.')[0]}'s {type(monitor).__name__}")
            raise TypeError(f"ReduceLROnPlateau() got an optimizer as its monitor ({given}), as "
                            f"PyTorch's takes one first: gpunn's is a callback, which lowers the rate of fit's "
                            f"optimizer: model.fit(X, Y, optimizer=..., callbacks=[gpunn.ReduceLROnPlateau({shown})])")
        super().__init__(monitor, min_delta, mode)
        self.factor = real(factor)
        if self.factor is None or not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), {got(factor)}")
        self.patience, self.cooldown = non_negative_int(patience, "patience"), non_negative_int(cooldown, "cooldown")
        self.min_lr = non_negative_number(min_lr, "min_lr")

    def _reset(self):
        super()._reset()
        self.cooldown_left, self.reductions = 0, 0

    def get_config(self):
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "min_delta": self.min_delta, "mode": self.mode, "cooldown": self.cooldown, "min_lr": self.min_lr}

    def on_epoch_end(self, trainer, epoch, logs):
        value = self._value(logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            next_lr = _next_rate(trainer, epoch)
            scale = trainer.lr_scale * self.factor
            if next_lr > 0 and next_lr * scale < self.min_lr:
                scale = min(trainer.lr_scale, self.min_lr / next_lr)  # (>= 0: min_lr is, next_lr > 0)
            if scale < trainer.lr_scale:
                trainer.lr_scale = scale
                self.reductions += 1
            self.cooldown_left, self.wait = self.cooldown, 0

    def state_dict(self):
        return {**self._base_state(), "cooldown_left": self.cooldown_left, "reductions": self.reductions}, {}

    def load_state_dict(self, state, arrays):
        self._load_base(state)
        self.cooldown_left, self.reductions = int(state["cooldown_left"]), int(state["reductions"])


def _next_rate(trainer, epoch):
    """The rate of the first step after epoch ``epoch`` (from 0) before a plateau's scale: the next epoch's; after the
    run's last epoch, for a resume that trains more, a per-step schedule's rate of the step after the run's (onecycle
    has none: its last)."""
    schedule = trainer.schedule
    if not schedule.per_step:
        return trainer.optimizer.lr * schedule.factor(epoch + 1, trainer.epochs)
    if epoch + 1 < trainer.epochs or schedule.name != "onecycle":
        return trainer.scheduled_lr(epoch + 1)
    return trainer.scheduled_lr(epoch, trainer.settings.batches_per_epoch - 1)


def _an_optimizer(value) -> bool:
    """Whether ``value`` is gpunn's optimizer or PyTorch's (a ``param_groups`` list, read without a ``__getattr__``)."""
    return isinstance(value, Optimizer) or isinstance(inspect.getattr_static(value, "param_groups", None), list)
