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
    """Hooks called by :func:`fit`; set ``trainer.stop = True`` to end training after this epoch.

    Order: on_train_begin; per epoch on_epoch_begin, on_batch_end for each batch, on_epoch_end
    (``logs`` holds the epoch's loss, lr and, with validation, val_loss/val_mse/val_mae/val_r2);
    on_train_end (also after an interruption or an error). ``trainer.interrupt()`` stops after
    the current batch, as Ctrl-C does. on_batch_end is called only for callbacks that override
    it, so epoch-level callbacks add no per-batch work. A callback whose progress must survive
    a checkpoint implements ``state_dict() -> (json_dict, {name: host array})``,
    ``load_state_dict(json_dict, arrays)`` and ``get_config() -> dict`` (see gpunn.callbacks).
    """

    def on_train_begin(self, trainer): ...
    def on_epoch_begin(self, trainer, epoch): ...
    def on_batch_end(self, trainer, batch): ...
    def on_epoch_end(self, trainer, epoch, logs): ...
    def on_train_end(self, trainer): ...


class History(dict):
    """Per-epoch lists: epoch, loss, lr, time_s, samples_per_s (and whatever callbacks add).

    ``interrupted`` is True when training stopped on Ctrl-C / ``trainer.interrupt()`` (only
    completed epochs are listed); ``stopped_early`` when early stopping ended it.
    """

    interrupted = False
    stopped_early = False
    best_epoch = None  # set by EarlyStopping: the epoch whose weights the model ends with

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
        # val_mse is val_loss under another name: shown once
        shown.update({k: f"{v:.4g}" for k, v in logs.items() if k.startswith("val_") and k != "val_mse"})
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer):
        self.bar.close()


class Trainer:
    """State of one fit call, visible to callbacks."""

    def __init__(self, model, X, Y, *, epochs, batch_size, optimizer, schedule, shuffle, seed, callbacks,
                 start_epoch=0, validation=None, start_batch=0, start_total=0.0, history=None, lr_scale=1.0):
        self.model, self.X, self.Y = model, X, Y
        self.epochs, self.batch_size, self.shuffle, self.seed = epochs, batch_size, shuffle, seed
        self.optimizer, self.schedule = optimizer, schedule
        self.callbacks = list(callbacks)
        self.start_epoch = start_epoch
        self.history = History() if history is None else history
        self.stop = False
        self.epoch = start_epoch
        self.validation = validation  # a metrics.RegressionEvaluator, or None
        self.lr_scale = float(lr_scale)  # ReduceLROnPlateau's factor, on top of the schedule
        self.interrupted = False  # stopped mid-run by interrupt() (Ctrl-C)
        self.failed = False  # an exception is ending the run
        self.settings = {}  # the fit options a checkpoint needs to resume (set by fit)
        self._halt = False
        # Where the next step starts: (epoch, batches already done in it) and the device sum of
        # squared errors of those batches, so a mid-epoch checkpoint resumes bit for bit.
        self.position = (start_epoch, start_batch)
        self._start_batch, self._start_total = start_batch, float(start_total)
        self.partial_total = 0.0

    def interrupt(self):
        """Stop after the current batch (what Ctrl-C does during fit). Safe from a signal handler."""
        self._halt = True

    def lr_at(self, epoch):
        return self.optimizer.lr * self.schedule.factor(epoch, self.epochs) * self.lr_scale

    def _batches(self, epoch, first_batch=0):
        """Device batches (X_b, Y_b) for one epoch, in a fresh device-side permutation.

        The whole epoch is gathered once into a reused shuffled copy of the data, so each batch is a
        contiguous slice: one gather per epoch instead of two per batch (the same bytes, far fewer
        launches). Where that copy does not fit in memory, each batch is gathered on its own.
        """
        model, X, Y, b = self.model, self.X, self.Y, self.batch_size
        m, xp = X.shape[0], model.xp
        if not self.shuffle:
            for start in range(first_batch * b, m, b):
                yield X[start:start + b], Y[start:start + b]
            return
        order = DeviceRNG(model.backend, self.seed, "shuffle", epoch).permutation(m)
        shuffled = self._shuffled_copy()
        if shuffled is not None:
            Xs, Ys = shuffled
            xp.take(X, order, axis=0, out=Xs)
            xp.take(Y, order, axis=0, out=Ys)
            for start in range(first_batch * b, m, b):
                yield Xs[start:start + b], Ys[start:start + b]
            return
        full = (xp.empty((b, X.shape[1]), X.dtype), xp.empty((b, Y.shape[1]), Y.dtype))
        for start in range(first_batch * b, m, b):
            idx = order[start:start + b]
            if len(idx) == b:
                Xb, Yb = full
            else:
                Xb, Yb = xp.empty((len(idx), X.shape[1]), X.dtype), xp.empty((len(idx), Y.shape[1]), Y.dtype)
            xp.take(X, idx, axis=0, out=Xb)
            xp.take(Y, idx, axis=0, out=Yb)
            yield Xb, Yb

    def _shuffled_copy(self):
        """Buffers shaped like (X, Y) for the shuffled epoch, made once; None if they do not fit."""
        if not hasattr(self, "_shuffle_buffers"):
            xp = self.model.xp
            try:
                self._shuffle_buffers = (xp.empty_like(self.X), xp.empty_like(self.Y))
            except MemoryError:  # cupy's OutOfMemoryError is a MemoryError too
                self._shuffle_buffers = None
        return self._shuffle_buffers

    def run_epoch(self, epoch, first_batch=0):
        """One epoch's logs; None when interrupt() stopped it part-way (see ``position``)."""
        model, xp = self.model, self.model.xp
        lr = self.lr_at(epoch)
        total = xp.zeros((), "float64")
        if first_batch:
            total += self._start_total
        batch_callbacks = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        t0 = time.perf_counter()
        batch = first_batch - 1
        for batch, (Xb, Yb) in enumerate(self._batches(epoch, first_batch), first_batch):
            total += model._train_step_gradients(Xb, Yb)
            self.optimizer.step(model.params, model.grads, lr)
            for cb in batch_callbacks:
                cb.on_batch_end(self, batch)
            if self._halt:
                break
        done = batch + 1
        if done * self.batch_size < self.X.shape[0]:  # interrupted before the epoch's last batch
            self.position, self.partial_total = (epoch, done), float(total)
            return None
        loss = float(total) / self.X.shape[0]  # the one host synchronisation of the epoch
        seconds = time.perf_counter() - t0
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became {loss} in epoch {epoch + 1} (learning rate {lr:.3g}); "
                "lower the learning rate, or scale the targets (standardise Y) and inputs"
            )
        rows = self.X.shape[0] - first_batch * self.batch_size  # fewer when resumed mid-epoch
        return {"epoch": epoch + 1, "loss": loss, "lr": lr, "time_s": seconds,
                "samples_per_s": rows / seconds if seconds > 0 else float("inf")}

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
                first_batch = self._start_batch if epoch == self.start_epoch else 0
                for cb in self.callbacks:
                    cb.on_epoch_begin(self, epoch)
                logs = self.run_epoch(epoch, first_batch)
                if logs is None:  # interrupted mid-epoch: the model holds the last full step
                    self.interrupted = self.history.interrupted = True
                    break
                if self.validation is not None:
                    logs.update(self.validation.evaluate(self.model))  # one more host sync per epoch
                self.position, self.partial_total = (epoch + 1, 0), 0.0
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                self.history.append(logs)
                if self._halt:
                    self.interrupted = self.history.interrupted = True
                    break
                if self.stop:
                    break
        except BaseException:
            self.failed = True  # e.g. TrainingDiverged: callbacks must not save this state as good
            raise
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return self.history


def fit(model, X, Y, *, epochs=10, batch_size=256, optimizer="adam", lr=None, schedule="constant",
        momentum=None, nesterov=None, weight_decay=None, beta1=None, beta2=None, eps=None,
        step_size=None, gamma=None, shuffle=True, seed=None, verbose=True, callbacks=(),
        validation_data=None, validation_fraction=None, early_stopping=False, patience=10, min_delta=0.0,
        monitor=None, restore_best_weights=True, checkpoint=None, checkpoint_every=1, handle_interrupt=True):
    """Train ``model`` on (X, Y) with mini-batch gradient descent; returns a :class:`History`.

    optimizer: "sgd" (the seed's W <- W - lr dW), "momentum", "nesterov", "adam", "adamw",
    or an Optimizer. schedule: "constant", "step" (x gamma every step_size epochs),
    "exponential" (x gamma per epoch) or "cosine" (to zero over the run).
    batch_size=None trains full-batch. seed (default: the model's) fixes the shuffles.

    Validation: ``validation_data=(X_val, Y_val)`` or ``validation_fraction`` (rows held out
    by the seed) adds val_loss (= val_mse), val_mse, val_mae and val_r2 to each epoch's logs,
    at one extra host synchronisation per epoch.
    Early stopping: ``early_stopping=True`` stops when ``monitor`` (default val_loss with
    validation, else loss) has not improved by more than ``min_delta`` for ``patience``
    epochs and, with ``restore_best_weights``, ends with the best epoch's weights (see
    gpunn.callbacks.EarlyStopping; ReduceLROnPlateau goes in ``callbacks``).
    Checkpoints: ``checkpoint="run.npz"`` writes a resumable checkpoint atomically every
    ``checkpoint_every`` epochs, at the end, and on Ctrl-C (``gpunn.load_checkpoint(path).resume``).
    Ctrl-C (with ``handle_interrupt``, main thread only) stops after the current batch and
    returns the history so far with ``history.interrupted = True``.
    """
    from . import callbacks as cbmod
    from .fitting import order_callbacks, run, split_validation

    epochs = positive_int(epochs, "epochs")
    with model.backend.use():
        X, Y = model._as_input(X), model._as_target(Y)
        check_rows_match(X, Y)
        seed = model.seed if seed is None else int(seed)
        X, Y, validation = split_validation(model, X, Y, validation_data, validation_fraction, seed)
        batch_size = X.shape[0] if batch_size is None else min(positive_int(batch_size, "batch_size"), X.shape[0])
        opt = make_optimizer(optimizer, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                             beta1=beta1, beta2=beta2, eps=eps)
        opt.bind(model.params, model.ops)
        sched = make_schedule(schedule, step_size=step_size, gamma=gamma)
        cbs = list(callbacks)
        if early_stopping:
            cbs.append(cbmod.EarlyStopping(monitor, patience, min_delta, restore_best_weights=restore_best_weights))
        if checkpoint is not None:
            cbs.append(cbmod.ModelCheckpoint(checkpoint, every=checkpoint_every))
        trainer = Trainer(model, X, Y, epochs=epochs, batch_size=batch_size, optimizer=opt, schedule=sched,
                          shuffle=shuffle, seed=seed, callbacks=order_callbacks(cbs, verbose), validation=validation)
        trainer.settings = {"epochs": epochs, "batch_size": batch_size, "shuffle": bool(shuffle), "seed": seed,
                            "train_rows": int(X.shape[0]),
                            "validation": "data" if validation_data is not None else
                                          ("fraction" if validation_fraction else None),
                            "validation_fraction": validation_fraction or None}
        model.optimizer = opt
        return run(trainer, handle_interrupt)
