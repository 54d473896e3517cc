"""Training an Ensemble: per-member optimizer settings, validation, early stopping, the loop.

The loop is :class:`gpunn.training.loop.Trainer`'s (the same device shuffle, so every member sees the
batches one MLP would see with the same ``seed``), with an epoch that steps all members at
once and reads their K losses back in one transfer. What differs per member lives here:
- :class:`EnsembleOptimizer`: SGD/momentum/Nesterov/Adam/AdamW whose lr, weight decay, momentum
  and betas may differ per member (each member's settings are checked as one model's would be);
- :class:`EnsembleEvaluator`: validation MSE, MAE and R² of every member, one host read;
- :class:`MemberEarlyStopping`: early stopping per member; a stopped member is frozen (its
  parameters and optimizer state no longer change) and, if asked, restored to its best epoch.
A member whose loss becomes NaN or infinite is frozen and reported (``history.diverged``); the
fit raises TrainingDiverged only when every member has diverged.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy

from ..checks import check_rows_match, per_member, positive_int
from ..metrics import RegressionEvaluator
from ..ops.ensemble import ACTIVE, BETA1, BETA2, HYPER_FIELDS, LR, MOMENTUM, WEIGHT_DECAY, MemberRates
from ..optim import Adam, SGD, make_optimizer, make_schedule
from ..rng import DeviceRNG
from .callbacks import Callback, History, ProgressBar, order_callbacks
from .fit import split_validation
from .loop import Trainer, TrainingDiverged, run


class EnsembleHistory(History):
    """Per-epoch lists as :class:`gpunn.History`; per-member entries (loss, lr, val_*) are lists of K.

    After fit: ``best_epoch`` and ``best`` (per member: the epoch and value of the best monitored
    result), ``stopped_early`` (per member), ``diverged`` (indices of members whose loss became
    NaN or infinite) and ``interrupted``.
    """

    best = None
    diverged = ()
    stopped_epoch = None

    def member(self, k) -> dict:
        """Member k's history as one model's: {name: per-epoch list}, up to the epoch it stopped at."""
        last = self.stopped_epoch[k] if self.stopped_epoch and self.stopped_epoch[k] else None
        return {name: [v[k] if isinstance(v, list) else v for v in values][:last] for name, values in self.items()}


class EnsembleOptimizer:
    """One optimizer of the gpunn.optim family for K members, with per-member settings."""

    def __init__(self, name, n_models, xp, *, lr=None, momentum=None, nesterov=None, weight_decay=None,
                 beta1=None, beta2=None, eps=None):
        lists = {key: per_member(value, n_models, key) for key, value in
                 (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay), ("beta1", beta1),
                  ("beta2", beta2))}
        self.members = []
        for k in range(n_models):
            try:
                self.members.append(make_optimizer(name, nesterov=nesterov, eps=eps,
                                                   **{key: values[k] for key, values in lists.items()}))
            except ValueError as exc:
                raise ValueError(f"member {k}: {exc}" if n_models > 1 else str(exc)) from None
        first = self.members[0]
        self.name, self.is_adam = first.name, isinstance(first, Adam)
        self.decoupled = bool(getattr(first, "decoupled", False))
        self.nesterov = bool(getattr(first, "nesterov", False))
        self.eps = float(getattr(first, "eps", 0.0))
        table = numpy.zeros((n_models, HYPER_FIELDS))
        for k, opt in enumerate(self.members):
            table[k, LR], table[k, WEIGHT_DECAY] = opt.lr, opt.weight_decay
            table[k, MOMENTUM] = getattr(opt, "momentum", 0.0)
            table[k, BETA1], table[k, BETA2] = getattr(opt, "beta1", 0.0), getattr(opt, "beta2", 0.0)
            table[k, ACTIVE] = 1.0
        self.rates = MemberRates(xp, table)
        self.lr = numpy.array([opt.lr for opt in self.members])  # the base rates, before any schedule
        self.steps = 0
        self.state = {}

    def bind(self, model):
        xp, shape = model.xp, model.member_params.shape
        names = ("m", "v") if self.is_adam else (("velocity",) if self.rates.column(MOMENTUM).any() else ())
        for key in names:
            if key not in self.state or self.state[key].shape != shape:
                self.state[key] = xp.zeros(shape, model.dtype)
        self.model = model
        return self

    def set_lr(self, lrs):
        if not numpy.array_equal(self.rates.column(LR), lrs):
            self.rates.update(LR, lrs)

    def freeze(self, members):
        active = self.rates.column(ACTIVE).copy()
        active[list(members)] = 0.0
        self.rates.update(ACTIVE, active)

    @property
    def active(self):
        return self.rates.active

    def step(self):
        self.steps += 1
        model, s = self.model, self.state
        if self.is_adam:
            model.member_ops.adam_step(model.member_params, model.member_grads, s["m"], s["v"], self.rates,
                                       self.eps, self.steps, self.decoupled)
        else:
            model.member_ops.sgd_step(model.member_params, model.member_grads, s.get("velocity"), self.rates,
                                      self.nesterov)

    def config(self) -> dict:
        return {"name": self.name, "members": [opt.config() for opt in self.members]}


class EnsembleEvaluator(RegressionEvaluator):
    """Validation MSE, MAE and R² of every member on one fixed (X, Y): lists of K, one host read."""

    def evaluate(self, model) -> dict:
        xp, X, Y = model.xp, self.X, self.Y
        K = model.n_models
        ss_res = xp.zeros((K, Y.shape[1]), "float64")
        abs_sum = xp.zeros(K, "float64")
        for start in range(0, X.shape[0], self.chunk_rows):
            Xc, Yc = X[start:start + self.chunk_rows], Y[start:start + self.chunk_rows]
            D = model._forward(Xc, model._workspace(Xc.shape[0])) - Yc
            ss_res += (D * D).sum(axis=1, dtype="float64")
            abs_sum += xp.abs(D).sum(axis=(1, 2), dtype="float64")
        ok = self.ss_tot > 0
        r2 = xp.where(ok, 1 - ss_res / xp.where(ok, self.ss_tot, 1), xp.where(ss_res == 0, 1.0, 0.0))
        count = Y.shape[0] * Y.shape[1]
        packed = model.backend.to_host(xp.stack([ss_res.sum(axis=1) / count, abs_sum / count, r2.mean(axis=1)]))
        mse_, mae_, r2_ = (row.tolist() for row in packed)  # the one host sync
        return {"val_loss": mse_, "val_mse": mse_, "val_mae": mae_, "val_r2": r2_}


class MemberEarlyStopping(Callback):
    """EarlyStopping (gpunn.training.callbacks) for each member on its own; a stopped member is frozen.

    The same rule per member: an improvement is a finite value better than the best by more
    than ``min_delta``; ``patience`` epochs without one stop the member; with
    ``restore_best_weights`` it ends with its best epoch's parameters (kept in one device copy
    of the flat buffer). Training ends when every member has stopped.
    """

    def __init__(self, monitor=None, patience=10, min_delta=0.0, restore_best_weights=True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be a non-negative number, got {min_delta!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, trainer):
        K = trainer.model.n_models
        self._monitor = self.monitor or ("val_loss" if trainer.validation is not None else "loss")
        self._maximise = self._monitor.endswith("r2")
        self.best = [None] * K
        self.best_epoch = [None] * K
        self.wait = [0] * K
        self.stopped_epoch = [None] * K
        self.best_params = None

    def on_epoch_end(self, trainer, epoch, logs):
        if self._monitor not in logs:
            hint = " (pass validation_data or validation_fraction to fit)" if self._monitor.startswith("val_") else ""
            raise ValueError(f"early stopping monitors {self._monitor!r}, which the logs lack{hint}; "
                             f"available: {', '.join(sorted(logs))}")
        model, active = trainer.model, trainer.optimizer.active
        improved, stopping = numpy.zeros(model.n_models, bool), []
        for k, value in enumerate(logs[self._monitor]):
            if not active[k]:
                continue
            best = self.best[k]
            if best is None:
                better = math.isfinite(value)
            else:
                better = value > best + self.min_delta if self._maximise else value < best - self.min_delta
            if better:
                self.best[k], self.best_epoch[k], self.wait[k] = value, epoch + 1, 0
                improved[k] = True
                continue
            self.wait[k] += 1
            if self.wait[k] >= self.patience:
                self.stopped_epoch[k] = epoch + 1
                stopping.append(k)
        if self.restore_best_weights and improved.any():
            params = model.member_params
            if self.best_params is None:
                self.best_params = params.copy()
            else:
                rows = model.xp.asarray(numpy.flatnonzero(improved))
                self.best_params[rows] = params[rows]
        if stopping:
            trainer.optimizer.freeze(stopping)
        if not trainer.optimizer.active.any():
            trainer.stop = True

    def on_train_end(self, trainer):
        history = trainer.history
        history.best_epoch, history.best = list(self.best_epoch), list(self.best)
        history.stopped_early = [e is not None for e in self.stopped_epoch]
        history.stopped_epoch = list(self.stopped_epoch)
        if trainer.interrupted or trainer.failed or not self.restore_best_weights or self.best_params is None:
            return
        last_epoch = history["epoch"][-1] if history.get("epoch") else None
        restore = [k for k in range(trainer.model.n_models)
                   if self.best_epoch[k] is not None and self.best_epoch[k] != (self.stopped_epoch[k] or last_epoch)]
        if restore:
            rows = trainer.model.xp.asarray(restore)
            trainer.model.member_params[rows] = self.best_params[rows]


class EnsembleProgressBar(ProgressBar):
    """The epoch bar, showing the best member's loss (and validation loss) and member-samples/s."""

    def on_epoch_end(self, trainer, epoch, logs):
        shown = {"best loss": f"{numpy.nanmin(logs['loss']):.4g}", "member-samples/s": f"{logs['samples_per_s']:,.0f}"}
        if "val_loss" in logs:
            shown["best val_loss"] = f"{numpy.nanmin(logs['val_loss']):.4g}"
        shown["training"] = f"{int(trainer.optimizer.active.sum())}/{trainer.model.n_models}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)


class EnsembleTrainer(Trainer):
    """Trainer whose epoch steps all members, with per-member rates and one host read of K losses."""

    bootstrap_rows = None  # (K, m) device row indices: member k's resample of the training rows

    def lr_at(self, epoch):
        return self.optimizer.lr * self.schedule.factor(epoch, self.epochs) * self.lr_scale

    def _batches(self, epoch, first_batch=0):
        if self.bootstrap_rows is None:
            yield from super()._batches(epoch, first_batch)
            return
        xp, X, Y, b = self.model.xp, self.X, self.Y, self.batch_size
        m = X.shape[0]
        rows = self.bootstrap_rows
        if self.shuffle:  # one shuffle for all members: the same positions, each member's own rows
            rows = rows[:, DeviceRNG(self.model.backend, self.seed, "shuffle", epoch).permutation(m)]
        for start in range(first_batch * b, m, b):
            idx = rows[:, start:start + b]
            yield xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)

    def run_epoch(self, epoch, first_batch=0):
        model, xp, opt = self.model, self.model.xp, self.optimizer
        lrs = self.lr_at(epoch)
        opt.set_lr(lrs)
        total = xp.zeros(model.n_models, "float64")
        if first_batch:
            total += xp.asarray(self._start_total)
        batch_callbacks = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        t0 = time.perf_counter()
        batch = first_batch - 1
        for batch, (Xb, Yb) in enumerate(self._batches(epoch, first_batch), first_batch):
            total += model.train_step(Xb, Yb)
            opt.step()
            for cb in batch_callbacks:
                cb.on_batch_end(self, batch)
            if self._halt:
                break
        done = batch + 1
        if done * self.batch_size < self.X.shape[0]:
            self.position, self.partial_total = (epoch, done), model.backend.to_host(total)
            return None
        losses = model.backend.to_host(total) / self.X.shape[0]  # the one host synchronisation of the epoch
        seconds = time.perf_counter() - t0
        bad = [int(k) for k in numpy.flatnonzero(~numpy.isfinite(losses)) if opt.active[k]]
        if bad:
            self.history.diverged = sorted(set(self.history.diverged) | {int(k) for k in bad})
            opt.freeze(bad)
            if not opt.active.any() and len(self.history.diverged) == model.n_models:
                raise TrainingDiverged(
                    f"the training loss of every member became NaN or infinite (by epoch {epoch + 1}); "
                    "lower the learning rates, or scale the targets (standardise Y) and inputs")
            warnings.warn(f"members {bad} diverged in epoch {epoch + 1} (loss NaN or infinite) and are frozen; "
                          "the others go on", RuntimeWarning, stacklevel=2)
            if not opt.active.any():
                self.stop = True
        rows = self.X.shape[0] - first_batch * self.batch_size
        return {"epoch": epoch + 1, "loss": losses.tolist(), "lr": [float(x) for x in lrs], "time_s": seconds,
                "samples_per_s": model.n_models * rows / seconds if seconds > 0 else float("inf")}


def bootstrap_rows(backend, seed, member, rows):
    """Member ``member``'s resample of ``rows`` training rows (with replacement), drawn on the device
    from the stream (seed, "bootstrap", member)."""
    u = DeviceRNG(backend, seed, "bootstrap", member).uniform((rows,), 0.0, 1.0, "float64")
    return backend.xp.minimum((u * rows).astype("int64"), rows - 1)


def fit_ensemble(model, X, Y, *, epochs=10, batch_size=256, optimizer="adam", lr=None, schedule="constant",
                 momentum=None, nesterov=None, weight_decay=None, beta1=None, beta2=None, eps=None, step_size=None,
                 gamma=None, shuffle=True, seed=None, verbose=True, callbacks=(), validation_data=None,
                 validation_fraction=None, early_stopping=False, patience=10, min_delta=0.0, monitor=None,
                 restore_best_weights=True, bootstrap=False, handle_interrupt=True):
    """Train every member of ``model`` (an Ensemble) on (X, Y); returns an :class:`EnsembleHistory`.

    The options are :func:`gpunn.fit`'s; ``lr``, ``weight_decay``, ``momentum``, ``beta1`` and
    ``beta2`` also take a length-K sequence (one value per member). All members see the same
    batches in the same order, shuffled by ``seed`` (default: member 0's seed), unless
    ``bootstrap=True``: then member k trains on its own resample of the training rows (drawn with
    replacement from the stream (seed, "bootstrap", k)), shuffled alike each epoch. Early stopping
    is per member (see MemberEarlyStopping). Per-member values in the history are lists of K.
    """
    epochs = positive_int(epochs, "epochs")
    with model.backend.use():
        X, Y = model._as_input(X), model._as_target(Y)
        check_rows_match(X, Y)
        seed = model.seeds[0] if seed is None else int(seed)
        X, Y, validation = split_validation(model, X, Y, validation_data, validation_fraction, seed)
        if validation is not None:
            validation = EnsembleEvaluator(model, validation.X, validation.Y)
        batch_size = X.shape[0] if batch_size is None else min(positive_int(batch_size, "batch_size"), X.shape[0])
        if isinstance(optimizer, (SGD, Adam)):
            raise TypeError("an Ensemble takes the optimizer by name (with per-member lr, weight_decay, ...), "
                            f"not an Optimizer object; got {optimizer!r}")
        opt = EnsembleOptimizer(optimizer, model.n_models, model.xp, lr=lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps).bind(model)
        sched = make_schedule(schedule, step_size=step_size, gamma=gamma)
        cbs = list(callbacks)
        if early_stopping:
            cbs.append(MemberEarlyStopping(monitor, patience, min_delta, restore_best_weights))
        if verbose:
            cbs.append(EnsembleProgressBar())
        trainer = EnsembleTrainer(model, X, Y, epochs=epochs, batch_size=batch_size, optimizer=opt, schedule=sched,
                                  shuffle=shuffle, seed=seed, callbacks=order_callbacks(cbs, False),
                                  validation=validation, history=EnsembleHistory())
        if bootstrap:
            trainer.bootstrap_rows = model.xp.stack([bootstrap_rows(model.backend, seed, k, X.shape[0])
                                                     for k in range(model.n_models)])
        trainer.settings = {"epochs": epochs, "batch_size": batch_size, "shuffle": bool(shuffle), "seed": seed,
                            "train_rows": int(X.shape[0]), "bootstrap": bool(bootstrap)}
        model.optimizer = opt
        history = run(trainer, handle_interrupt)
        if history.best is None and validation is not None:  # best per member without early stopping
            values = numpy.asarray(history.get("val_loss", []), dtype=numpy.float64)
            if values.size:
                filled = numpy.where(numpy.isfinite(values), values, numpy.inf)
                history.best_epoch = (filled.argmin(axis=0) + 1).tolist()
                history.best = filled.min(axis=0).tolist()
        model.history = history
        return history
