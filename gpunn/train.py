"""The fit loop: epochs of shuffled mini-batches, history, progress, callbacks.

Nothing crosses to the host inside an epoch: the per-batch squared errors are
summed on the device and read back once per epoch (the logging interval).
"""
from __future__ import annotations

import math
import time

import numpy

from .optim import make_optimizer, make_schedule
from .rng import DeviceRNG
from .validation import check_rows_match, positive_int


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


class Callback:
    """Hooks called by :func:`fit`; set ``trainer.stop = True`` to end training after this epoch."""

    def on_train_begin(self, trainer): ...
    def on_epoch_begin(self, trainer, epoch): ...
    def on_batch_end(self, trainer, batch): ...
    def on_epoch_end(self, trainer, epoch, logs): ...
    def on_train_end(self, trainer): ...


class History(dict):
    """Per-epoch lists: epoch, loss, lr, time_s, samples_per_s (and whatever callbacks add)."""

    def append(self, logs: dict):
        for key, value in logs.items():
            self.setdefault(key, []).append(value)

    @property
    def last(self) -> dict:
        return {k: v[-1] for k, v in self.items() if v}


class ProgressBar(Callback):
    """A tqdm bar over epochs, with loss and samples/s from the last epoch."""

    def on_train_begin(self, trainer):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=trainer.epochs, initial=trainer.start_epoch, unit="epoch",
                        desc=f"train [{trainer.model.device}]", dynamic_ncols=True)

    def on_epoch_end(self, trainer, epoch, logs):
        shown = {"loss": f"{logs['loss']:.4g}", "samples/s": f"{logs['samples_per_s']:,.0f}"}
        shown.update({k: f"{v:.4g}" for k, v in logs.items() if k.startswith("val_")})
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer):
        self.bar.close()


class Trainer:
    """State of one fit call, visible to callbacks."""

    def __init__(self, model, X, Y, *, epochs, batch_size, optimizer, schedule, shuffle, seed, callbacks,
                 start_epoch=0):
        self.model, self.X, self.Y = model, X, Y
        self.epochs, self.batch_size, self.shuffle, self.seed = epochs, batch_size, shuffle, seed
        self.optimizer, self.schedule = optimizer, schedule
        self.callbacks = list(callbacks)
        self.start_epoch = start_epoch
        self.history = History()
        self.stop = False
        self.epoch = start_epoch

    def lr_at(self, epoch):
        return self.optimizer.lr * self.schedule.factor(epoch, self.epochs)

    def _batches(self, epoch):
        """Device batches (X_b, Y_b) for one epoch: a fresh device-side permutation, gathered into reused buffers."""
        model, X, Y, b = self.model, self.X, self.Y, self.batch_size
        m, xp = X.shape[0], model.xp
        if not self.shuffle:
            for start in range(0, m, b):
                yield X[start:start + b], Y[start:start + b]
            return
        order = DeviceRNG(model.backend, self.seed, "shuffle", epoch).permutation(m)
        full = (xp.empty((b, X.shape[1]), X.dtype), xp.empty((b, Y.shape[1]), Y.dtype))
        for start in range(0, m, b):
            idx = order[start:start + b]
            if len(idx) == b:
                Xb, Yb = full
            else:
                Xb, Yb = xp.empty((len(idx), X.shape[1]), X.dtype), xp.empty((len(idx), Y.shape[1]), Y.dtype)
            xp.take(X, idx, axis=0, out=Xb)
            xp.take(Y, idx, axis=0, out=Yb)
            yield Xb, Yb

    def run_epoch(self, epoch):
        model, xp = self.model, self.model.xp
        lr = self.lr_at(epoch)
        total = xp.zeros((), "float64")
        t0 = time.perf_counter()
        for batch, (Xb, Yb) in enumerate(self._batches(epoch)):
            total += model._train_step_gradients(Xb, Yb)
            self.optimizer.step(model.params, model.grads, lr)
            for cb in self.callbacks:
                cb.on_batch_end(self, batch)
        loss = float(total) / self.X.shape[0]  # the one host synchronisation of the epoch
        seconds = time.perf_counter() - t0
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} in epoch {epoch + 1} (learning rate {lr:.3g}); "
                "lower the learning rate, or scale the targets (standardise Y) and inputs"
            )
        return {"epoch": epoch + 1, "loss": loss, "lr": lr, "time_s": seconds,
                "samples_per_s": self.X.shape[0] / seconds if seconds > 0 else float("inf")}

    def run(self):
        # Divergence is detected and reported once per epoch (TrainingDiverged); NumPy's
        # per-operation overflow warnings on the way there would only be noise.
        with numpy.errstate(over="ignore", invalid="ignore"):
            return self._run()

    def _run(self):
        for cb in self.callbacks:
            cb.on_train_begin(self)
        try:
            for epoch in range(self.start_epoch, self.epochs):
                self.epoch = epoch
                for cb in self.callbacks:
                    cb.on_epoch_begin(self, epoch)
                logs = self.run_epoch(epoch)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                self.history.append(logs)
                if self.stop:
                    break
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return self.history


def fit(model, X, Y, *, epochs=10, batch_size=256, optimizer="adam", lr=None, schedule="constant",
        momentum=None, nesterov=None, weight_decay=None, beta1=None, beta2=None, eps=None,
        step_size=None, gamma=None, shuffle=True, seed=None, verbose=True, callbacks=()):
    """Train ``model`` on (X, Y) with mini-batch gradient descent; returns a :class:`History`.

    optimizer: "sgd" (the seed's W <- W - lr dW), "momentum", "nesterov", "adam", "adamw",
    or an Optimizer. schedule: "constant", "step" (x gamma every step_size epochs),
    "exponential" (x gamma per epoch) or "cosine" (to zero over the run).
    batch_size=None trains full-batch. seed (default: the model's) fixes the shuffles.
    """
    epochs = positive_int(epochs, "epochs")
    with model.backend.use():
        X, Y = model._as_input(X), model._as_target(Y)
        check_rows_match(X, Y)
        batch_size = X.shape[0] if batch_size is None else min(positive_int(batch_size, "batch_size"), X.shape[0])
        opt = make_optimizer(optimizer, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                             beta1=beta1, beta2=beta2, eps=eps)
        opt.bind(model.params, model.ops)
        sched = make_schedule(schedule, step_size=step_size, gamma=gamma)
        cbs = list(callbacks) + ([ProgressBar()] if verbose else [])
        trainer = Trainer(model, X, Y, epochs=epochs, batch_size=batch_size, optimizer=opt, schedule=sched,
                          shuffle=shuffle, seed=model.seed if seed is None else int(seed), callbacks=cbs)
        model.optimizer = opt
        return trainer.run()
