"""The fit loop: epochs of shuffled mini-batches, history, progress, callbacks.

Nothing crosses to the host inside an epoch: the per-batch squared errors are
summed on the device and read back once per epoch (the logging interval).
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time

import numpy

from ..rng import DeviceRNG
from .callbacks import Callback, History


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


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


@contextlib.contextmanager
def sigint_stops(trainer, enabled=True):
    """While active, the first Ctrl-C asks ``trainer`` to stop after its current batch; a second
    one raises KeyboardInterrupt at once. Installed only in the main thread; the previous
    handler is restored on exit."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):
        yield
        return

    def handler(signum, frame):
        if trainer._halt:  # second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        trainer.interrupt()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def run(trainer, handle_interrupt=True):
    with sigint_stops(trainer, handle_interrupt):
        history = trainer.run()
    history.interrupted = trainer.interrupted
    return history
