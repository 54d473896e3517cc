"""The training loop: epochs of mini-batches from a data source, callbacks, Ctrl-C as a clean stop.

A :class:`Trainer` is built in one place, :func:`train`, from a trainable, a data source, an optimizer,
:class:`~gpunn.training.state.FitSettings` and an optional :class:`~gpunn.training.state.TrainState`
(``fit``, checkpoint resumption and ``MLPRegressor.partial_fit`` all call it). Each step is
``trainable.train_step(X_b, Y_b)``, then the optional gradient hook, then the optimizer (the seams are
in :mod:`gpunn.training.protocols`); with no hook, a trainable with ``train_step_and_update(X_b, Y_b,
optimizer, lr)`` (gpunn.Ensemble, gpunn.MLP) does both in one call. Nothing crosses to the host inside an epoch: the per-batch
squared errors are summed on the device and read back once per epoch (the logging interval).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time

import numpy

from ..checks import flag
from ..metrics import VALIDATION_KEYS
from ..ops.denormals import flush_denormals
from ..ops.fit_threads import fit_threads
from .. import sample_weights
from .callback_protocol import Callback
from .history import History
from .monitoring import EarlyStopping
from .state import FitSettings, TrainState, position_words


DIVERGENCE_FACTOR = 1e4  # an epoch's loss this many times the run's first batch loss means divergence
EPOCH_KEYS = ("epoch", "loss", "lr", "time_s", "samples_per_s")  # epoch_logs' (and an ensemble trainer's)


def reference_loss(xp, sum_sq, Yb, weighted=False) -> float:
    """What divergence is measured against: the first batch's loss before any step (the largest
    member's, for K), or the loss of predicting zero (the mean squared norm of a target row) when
    that is larger. Taken once a run, at its first batch (a run resumed from a checkpoint that holds no
    reference, an older file, takes it at the first batch after the resume: see TrainState.reference_loss).
    A run that starts converged (fine-tuning a trained model: a first loss near float rounding) may then
    move its loss up by far more than DIVERGENCE_FACTOR without diverging.
    A bootstrapped ensemble's batch is (K, rows, columns), each member its own rows: a loss is per row.
    ``weighted``: Yb's last column is each row's weight (gpunn.sample_weights), and predicting zero's loss is
    sum_i w_i ||y_i||^2 / rows, weighted as the batch's sum is (a bootstrap batch's: its members' mean of it)."""
    first = xp.max(sum_sq).astype("float64") / Yb.shape[-2]
    if weighted:
        targets, weights = sample_weights.split(Yb, Yb.shape[-1] - 1)
        squares = (targets * targets).sum(axis=-1, dtype="float64")
        zero_loss = xp.dot(squares.reshape(-1), weights.astype("float64").reshape(-1)) / weights.size
    else:
        zero_loss = xp.sum(Yb * Yb, dtype="float64") * (Yb.shape[-1] / Yb.size)
    return float(xp.maximum(first, zero_loss))  # one host read


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite, or grew past DIVERGENCE_FACTOR times its first value
    (or the loss of predicting zero, when larger: see reference_loss); or the weights did, in an epoch's last steps
    (its validation metrics are not finite: see Trainer.check_validation). Also what ``score``/``evaluate`` raise
    for a model whose weights are NaN or infinite (an ensemble's: every member's), which has no score."""


class ValidationNotFinite(FloatingPointError):
    """An epoch's validation metric became NaN or infinite while its training loss and the weights stayed finite:
    the model's output overflows its dtype on validation rows (a value far outside the training rows' range; or
    weights grown huge in the epoch's last steps). No later epoch's validation would mean anything (EarlyStopping
    never sees an improvement, ReduceLROnPlateau lowers the rate for nothing), so the fit stops there, before the
    callbacks see the epoch, as for TrainingDiverged; the weights are the epoch's. The words name the epoch, the
    metrics, an ensemble's members and the first validation row (in the user's array, or as a data source names
    it; data parallel too) and column the output overflows on. Also what ``score``/``evaluate`` raise where
    ``predict(X)`` is NaN or infinite and the weights are finite (an ensemble's: for no member a score), naming the
    first such row and column of X."""


def agreed(exc: BaseException) -> BaseException:
    """``exc``, an error of the loop's own checks of what every rank of a data-parallel fit holds alike (the epoch's
    summed losses, the validation logs, the weights), marked so (gpunn.distributed.comm.raised_on_every_rank): the
    fit's ranks raise it at the same point and end no job. The same classes raised elsewhere (score() in a callback
    of one rank) are one rank's errors."""
    from ..distributed.comm import raised_on_every_rank

    return raised_on_every_rank(exc)


def not_finite_validation(epoch, metrics, training, dtype, who="", where="") -> str:
    """ValidationNotFinite's words for ``epoch`` (from 0): ``metrics`` {name: value} of its validation logs that are
    not finite, ``training`` its training loss(es) as shown, ``who`` whose they are ("members [0, 1]: their "),
    ``where`` the validation rows' values that are not (Trainer.not_finite_places), if known."""
    said = ", ".join(f"{name} {value}" for name, value in metrics.items())
    where = f" ({where})" if where else ""
    return (f"{who}validation metrics became NaN or infinite in epoch {epoch + 1} ({said}) while the training loss "
            f"({training}) and the weights stayed finite: the model's output overflows {dtype} on validation "
            f"rows{where}. "
            "A validation value far outside the training rows' range does that (find the rows where predict(X) is not "
            "finite, and clean them), or weights grown huge in the epoch's last steps (lower the learning rate)")


def not_finite_metrics(logs) -> dict:
    """The validation metrics of one model's epoch ``logs`` that are NaN or infinite, by name."""
    return {key: logs[key] for key in VALIDATION_KEYS if key in logs and not math.isfinite(logs[key])}


_KERAS_STOP = ("stop_training is Keras's; a gpunn callback ends the run with trainer.stop = True (after this epoch), or "
               "trainer.interrupt() (after the current batch)")


class Trainer:
    """One run of the loop, visible to callbacks.

    Callbacks read ``model`` (the trainable), ``optimizer``, ``settings`` (FitSettings), ``state``
    (TrainState), ``history``, ``epoch``, ``epochs``, ``validation``, ``log_keys`` (what the loop puts in every
    epoch's logs, before the callbacks' own), ``lr`` (the rate of the step being taken: in ``on_batch_end``, the one
    just taken; an Ensemble's K rates); they may set ``stop = True`` (end
    after this epoch; in ``on_train_begin``, before any), ``lr_scale`` (ReduceLROnPlateau) or call
    ``interrupt()``; ``failure`` is the exception ending the run, where one is, and ``position(epoch, batch)`` says
    where a run is in words. Build it with :func:`train`, not directly.
    """

    def __init__(self, trainable, source, optimizer, settings: FitSettings, state: TrainState | None = None, *,
                 callbacks=(), validation=None, hook=None):
        self.model, self.source, self.optimizer, self.settings = trainable, source, optimizer, settings
        state = TrainState() if state is None else state
        self.state = dataclasses.replace(state, interrupted=False)
        self.callbacks = list(callbacks)
        self.validation = validation  # a metrics.RegressionEvaluator, or None
        self.hook = hook  # a protocols.GradientHook, or None
        self.start_epoch = self.epoch = self.state.epoch
        self.stop = False
        self.failed = False  # an exception is ending the run
        self.failure = None  # ... that exception (a KeyboardInterrupt: the progress says where it landed)
        self.diverged = False  # ... and the weights are garbage: TrainingDiverged, or spoiled
        self.spoiled = False  # steps took a value the source standardized past the dtype (refuse_bad_data)
        self._halt = False
        self._reference_shared = False  # see run_epoch: a data-parallel run's divergence reference is rank 0's
        self._graph, self._graph_decided = None, False  # see _graph_trainer
        self.lr = None  # the rate of the step being taken (run_epoch)
        settings.schedule.check_run(settings.epochs * settings.batches_per_epoch)  # onecycle's total_steps

    # the run's settings and state under the names callbacks use
    @property
    def epochs(self) -> int:
        return self.settings.epochs

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def schedule(self):
        return self.settings.schedule

    @property
    def history(self) -> History:
        return self.state.history

    @property
    def lr_scale(self) -> float:
        return self.state.lr_scale

    @lr_scale.setter
    def lr_scale(self, value):
        self.state.lr_scale = float(value)

    @property
    def stop_training(self):
        raise AttributeError(_KERAS_STOP)

    @stop_training.setter
    def stop_training(self, value):  # set by a Keras habit, nothing read it: the run trained on to its end
        raise AttributeError(_KERAS_STOP)

    @property
    def interrupted(self) -> bool:
        return self.state.interrupted

    def interrupt(self):
        """Stop after the current batch (what Ctrl-C does during fit). Safe from a signal handler."""
        self._halt = True

    def interrupt_asked(self) -> bool:
        """Whether a stop was asked of this process already (a Ctrl-C now is the second: it raises)."""
        return self._halt

    def position(self, epoch, batch) -> str:
        """Where ``batch`` batches of epoch ``epoch`` (from 0) are in this run, in words (state.position_words):
        "3 of 10 epochs and 2 of 27 batches of epoch 4"; "3 of 10 epochs" at an epoch's end."""
        return position_words(epoch, batch, self.settings.batches_per_epoch, self.epochs)

    def lr_at(self, epoch, batch=0):
        """The rate of batch ``batch`` of epoch ``epoch`` (both from 0): the optimizer's lr x the schedule's factor at
        that global step (epoch x batches per epoch + batch, so a resume part-way through an epoch takes the same
        rates) x ReduceLROnPlateau's scale."""
        return self.scheduled_lr(epoch, batch) * self.lr_scale

    def step_rates(self, epoch):
        """``batch -> lr_at(epoch, batch)``, the same floats, with what it reads but ReduceLROnPlateau's scale read once:
        a per-step schedule's rate each step (run_epoch)."""
        schedule, epochs, lr, state = self.schedule, self.epochs, self.optimizer.lr, self.state
        per_epoch = self.settings.batches_per_epoch
        first, total = epoch * per_epoch, epochs * per_epoch

        def rate(batch):
            if batch >= per_epoch:  # (the step would be the next epoch's, or past a onecycle's last)
                self._past_the_epoch(epoch, per_epoch)
            return lr * schedule.rate_factor(epoch, epochs, first + batch, total) * state.lr_scale
        return rate

    def _past_the_epoch(self, epoch, per_epoch):
        """Refuse a batch past the epoch's ``per_epoch``: a source that gave more rows than it said (an iterable told
        ``rows=`` too few), which the source refuses at the epoch's end, where a per-step schedule needs its step
        now."""
        from ..data.errors import DataError

        rows = self.settings.train_rows
        raise DataError(f"the source gave more than its {rows:,} rows ({per_epoch} batches of "
                        f"{self.settings.batch_size * self.settings.ranks}) in epoch {epoch + 1}, which a per-step "
                        "schedule counts its steps by: give the source its rows (gpunn.data.iterable(..., rows=N))")

    def scheduled_lr(self, epoch, batch=0):
        """:meth:`lr_at` before ReduceLROnPlateau's scale."""
        per_epoch = self.settings.batches_per_epoch
        return self.optimizer.lr * self.schedule.rate_factor(epoch, self.epochs, epoch * per_epoch + batch,
                                                             self.epochs * per_epoch)

    def snapshot(self, pending_logs=None) -> TrainState:
        """A copy of the state for a checkpoint; ``pending_logs``: an epoch's logs not yet in the history
        (callbacks run before the history is appended)."""
        history = type(self.history)()  # an ensemble's EnsembleHistory stays one (its diverged members)
        history.__dict__.update(self.history.__dict__)
        for key, values in self.history.items():
            history[key] = list(values)
        if pending_logs is not None:
            history.append(pending_logs)
        return dataclasses.replace(self.state, history=history)

    def _graph_trainer(self):
        """The GraphTrainer that runs this run's steps, or None (the ordinary step); decided once per run.

        ``model.graph``: None (the default, "auto": on for a CUDA GPU where the step can be captured),
        True (forced: the eager form of the captured step where it cannot capture, with a warning) or
        False: one MLP's and an Ensemble's alike. A trainable without the attribute never uses one. The
        trainer is kept on the model (``graph_trainer.captured`` / ``.reason`` say what happened, also when
        it was not used), and the next fit with the same optimizer replays the graphs already captured (while
        its settings but lr are the same: graph.captured_settings)."""
        if self._graph_decided:
            return self._graph
        self._graph_decided = True
        mode = getattr(self.model, "graph", False)
        if mode is False:
            return None
        from .graph import captured_settings, graph_trainer_for

        if self.hook is not None:  # nothing set up: the hook must see the gradients before the update
            self.model.graph_trainer = graph_trainer_for(
                self.model, self.optimizer, auto=mode is None,
                blocked="a gradient hook (data-parallel training) runs between backward and the optimizer")
            self.model.graph_trainer.warn_if_forced()
            return None
        previous = getattr(self.model, "graph_trainer", None)
        if (previous is not None and previous.optimizer is self.optimizer
                and previous.settings == captured_settings(self.optimizer)):  # (else its graphs hold the old ones)
            previous.resync()
            trainer = previous
        else:
            trainer = self.model.graph_trainer = graph_trainer_for(self.model, self.optimizer, auto=mode is None)
        trainer.auto = mode is None
        trainer.warn_if_forced()  # graph=True where the reason is known already (a failed capture warns then)
        self._graph = trainer if trainer.active else None
        return self._graph

    def run_epoch(self, epoch, first_batch=0, start_sum_sq=0.0):
        """One epoch's logs; None when interrupt() stopped it part-way (``state`` says where)."""
        trainable, optimizer, hook = self.model, self.optimizer, self.hook
        xp, source, batch_size = trainable.xp, self.source, self.settings.batch_size
        rate = self.step_rates(epoch) if self.schedule.per_step else None  # a warm-up, onecycle; else once an epoch
        lr = self.lr = self.lr_at(epoch, first_batch)
        total = None
        batch_callbacks = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        graph = self._graph_trainer()
        # a trainable that runs the optimizer's step inside its own (gpunn.Ensemble on the CPU: in its member
        # groups); not with a gradient hook, which must see the gradients before the step
        fused_update = getattr(trainable, "train_step_and_update", None) if graph is None and hook is None else None
        t0 = time.perf_counter()
        batch = first_batch - 1
        for batch, (Xb, Yb) in enumerate(source.batches(epoch, batch_size, first_batch), first_batch):
            if rate is not None:
                lr = self.lr = rate(batch)
            if graph is not None:  # forward, backward and optimizer: one replayed CUDA graph
                sum_sq = graph.step(Xb, Yb, lr)
            elif fused_update is not None:  # forward, backward and the optimizer's step in one call
                sum_sq = fused_update(Xb, Yb, optimizer, lr)
            else:
                sum_sq = trainable.train_step(Xb, Yb)
            if total is None:  # shaped like the trainable's sums: 0-d for one model, (K,) for K
                total = xp.zeros(getattr(sum_sq, "shape", ()), "float64")
                if first_batch:  # a float for one model, K floats for an ensemble
                    total += xp.asarray(start_sum_sq, "float64")
            total += sum_sq
            if self.state.reference_loss is None:  # the run's first batch, before any step (one host read)
                self.state.reference_loss = reference_loss(xp, sum_sq, Yb, getattr(source, "weighted", False))
            if graph is None and fused_update is None:
                if hook is not None:
                    hook.on_gradients(trainable, Xb.shape[-2])  # (K, rows, n) when bootstrapped
                optimizer.step(trainable.params, trainable.grads, lr)
            for cb in batch_callbacks:
                cb.on_batch_end(self, batch)
            if self._halt:
                break
        done = batch + 1
        watch = getattr(source, "overflow_watch", None)  # windows the source standardized on the device
        flag = None if watch is None or total is None else watch.take(xp)
        if flag is not None:  # 0.0, or NaN where one held a value standardized past the dtype: read with the loss
            total = total + flag
        if done < self.settings.batches_per_epoch:  # interrupted before the epoch's last batch
            if hook is not None and total is not None:  # the checkpoint holds every process's part
                total, _ = hook.reduce_epoch(total, source.rows)
            partial = start_sum_sq if total is None else (float(total) if total.ndim == 0 else total.tolist())
            if not numpy.isfinite(partial).all():
                self.refuse_bad_data()
            self.state.epoch, self.state.batch, self.state.partial_sum_sq = epoch, done, partial
            return None
        rows = source.rows
        if hook is not None:
            total, rows = hook.reduce_epoch(total, rows)
            if not self._reference_shared and hasattr(hook, "from_root"):
                # every process judges divergence against the same reference: rank 0's (its checkpoint's)
                self.state.reference_loss = hook.from_root(self.state.reference_loss)
                self._reference_shared = True
        seen = rows - first_batch * batch_size * self.settings.ranks  # fewer when resumed mid-epoch
        return self.epoch_logs(epoch, total, rows, seen, lr, t0)  # (lr: the epoch's last step's)

    def epoch_logs(self, epoch, total, rows, seen, lr, t0) -> dict:
        """The logs of a finished epoch from its device sum of squared errors ``total`` over ``rows``
        (``seen`` of them trained in this call, which started at ``t0``); raises TrainingDiverged.
        An ensemble's trainer (gpunn.training.ensemble) overrides it for K sums."""
        loss = float(total) / rows  # the one host synchronisation of the epoch
        seconds = time.perf_counter() - t0
        ref = self.state.reference_loss
        grew = ref is not None and ref > 0 and loss > DIVERGENCE_FACTOR * ref
        if not math.isfinite(loss):
            self.refuse_bad_data()
        if not math.isfinite(loss) or grew:
            how = (f"{loss:.4g}, {loss / ref:.3g} times its reference {ref:.4g} (the first batch's loss, or the "
                   "loss of predicting zero if larger)," if grew else f"{loss}")
            raise agreed(TrainingDiverged(
                f"training loss became {how} in epoch {epoch + 1} (learning rate {lr:.3g}); "
                "lower the learning rate, or standardize the targets and inputs (fit(X, Y, standardize=True), a "
                "gpunn.data source's standardize=True, gpunn train --standardize)"
            ))
        return {"epoch": epoch + 1, "loss": loss, "lr": lr, "time_s": seconds,
                "samples_per_s": seen / seconds if seconds > 0 else float("inf")}

    def check_validation(self, epoch, logs):
        """Refuse an epoch whose validation metrics (in ``logs``, read already) are NaN or infinite, before any
        callback sees them: TrainingDiverged where the weights are not finite (the epoch's last steps diverged,
        which its training loss, each batch's taken before its step, cannot show), else ValidationNotFinite. One
        more host read, on that path only. An ensemble's trainer overrides it (per member)."""
        bad = not_finite_metrics(logs)
        if not bad:
            return
        model = self.model
        if not bool(model.xp.isfinite(model.params).all()):
            raise agreed(TrainingDiverged(
                f"the weights became NaN or infinite in the last steps of epoch {epoch + 1} (learning rate "
                f"{logs['lr']:.3g}; its validation loss is {logs.get('val_loss')}); lower the learning rate, or "
                "standardize the targets and inputs (fit(X, Y, standardize=True), a gpunn.data source's "
                "standardize=True, gpunn train --standardize)"))
        raise agreed(ValidationNotFinite(not_finite_validation(epoch, bad, f"{logs['loss']:.4g}", model.dtype.name,
                                                               where=self.not_finite_places().get(0, ""))))

    def not_finite_places(self) -> dict:
        """{member: words} naming how many of the validation rows' output values are NaN or infinite and the first
        one's place (0 for one model): in the user's array, or as a source names its row; the evaluator's, in one
        more pass over the rows (a source's read again), on ValidationNotFinite's path only. Data parallel, the
        ranks' passes over their rows are gathered, so every rank gives the same words. {} for an evaluator
        that cannot say (one of yours without the method)."""
        find = getattr(self.validation, "not_finite_places", None)
        return {} if find is None else find(self.model)

    def refuse_bad_data(self):
        """Where the epoch's loss came back NaN or infinite: the source's refusal of a value it standardized past
        the model's dtype on the device in the epoch (gpunn.data.overflow: its flag was added to the loss), if
        there was one, which steps have spread into the weights (``spoiled``). One more host read, on this
        error's path only; nothing where the source saw no such value (a diverged run). Data parallel, the
        epoch's reduction spreads one rank's flag to every rank's loss, and only that rank's source can name the
        value: every rank raises a refusal (the hook's ``first_refusal``), not "training diverged" on the others."""
        watch = getattr(self.source, "overflow_watch", None)
        if watch is None:
            return
        error = None
        try:
            watch.refuse(self.model.backend)
        except ValueError as exc:  # the source's DataError (an iterable's NotFinite)
            error = exc
        agree = getattr(self.hook, "first_refusal", None)
        if agree is not None:  # (every rank is here: each read the same reduced loss)
            error = agree(error)
        if error is not None:
            self.spoiled = True
            raise error

    def run(self):
        # Divergence is detected and reported once per epoch (TrainingDiverged); NumPy's
        # per-operation overflow warnings on the way there would only be noise.
        # On the CPU, subnormals flush to zero while training, as the GPU kernels do (gpunn.ops.denormals).
        on_cpu = not self.model.backend.is_gpu
        with numpy.errstate(over="ignore", invalid="ignore"), flush_denormals(None if on_cpu else False):
            return self._run()

    def _run(self):
        state = self.state
        start_batch, start_sum_sq = state.batch, state.partial_sum_sq
        self.log_keys = EPOCH_KEYS + (VALIDATION_KEYS if self.validation is not None else ())
        self.history.expect(self.log_keys)
        begun = []  # the callbacks whose on_train_begin ran: each gets its on_train_end, whatever fails after it
        try:
            for cb in self.callbacks:
                cb.on_train_begin(self)
                begun.append(cb)
            for epoch in range(self.start_epoch, self.epochs):
                if self.stop:  # a callback ended the run: after an epoch, or already at its start (a resumed
                    break      # run that had stopped early)
                self.epoch = epoch
                first_batch = start_batch if epoch == self.start_epoch else 0
                for cb in self.callbacks:
                    cb.on_epoch_begin(self, epoch)
                logs = self.run_epoch(epoch, first_batch, start_sum_sq)
                if logs is None:  # interrupted mid-epoch: the model holds the last full step
                    state.interrupted = self.history.interrupted = True
                    break
                if self.validation is not None:
                    for cb in self.callbacks:
                        cb.on_validation_begin(self, epoch)
                    logs.update(self.validation.evaluate(self.model))  # one more host sync per epoch
                    self.check_validation(epoch, logs)
                state.epoch, state.batch, state.partial_sum_sq = epoch + 1, 0, 0.0
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                self.history.append(logs)
                if self._halt:
                    state.interrupted = self.history.interrupted = True
                    break
        except BaseException as exc:
            self.failed, self.failure = True, exc  # e.g. TrainingDiverged: callbacks must not save this state as good
            # the weights are garbage (EarlyStopping restores, no checkpoint is written)
            self.diverged = isinstance(exc, TrainingDiverged) or self.spoiled
            raise
        finally:
            for cb in begun:
                cb.on_train_end(self)
        return self.history


def train(trainable, source, optimizer, settings: FitSettings, state: TrainState | None = None, *, callbacks=(),
          validation=None, hook=None, handle_interrupt=True, trainer_class=None) -> History:
    """Run the loop: the one place a :class:`Trainer` is built. Returns the history.

    ``state`` (default: a fresh run) says where to start; ``callbacks`` run in the order given;
    ``validation`` (a RegressionEvaluator) adds val_* logs; ``hook`` is a GradientHook or None. With
    ``handle_interrupt`` (main thread only) the first Ctrl-C (or SIGTERM) stops after the current batch.
    ``trainer_class``: a Trainer subclass (an ensemble's, for K losses per epoch); default Trainer.
    """
    optimizer.bind(trainable.params, trainable.ops)
    trainable.optimizer = optimizer
    trainer = (trainer_class or Trainer)(trainable, source, optimizer, settings, state, callbacks=callbacks,
                                         validation=validation, hook=hook)
    with sigint_stops(trainer, handle_interrupt), fit_threads(trainable):  # a small net's BLAS on one thread
        history = trainer.run()
    history.interrupted = trainer.interrupted
    history.cut_batch = trainer.state.batch if trainer.interrupted else 0  # the model holds those steps' weights
    if validation is not None and not any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks):
        history.settle_best()  # the least val_loss's epoch, where no EarlyStopping names one
    return history


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; timeout, Slurm's end of a job, docker stop


@contextlib.contextmanager
def sigint_stops(trainer, enabled=True):
    """While active, the first Ctrl-C (or SIGTERM: ``timeout``, Slurm at the end of a job's time,
    ``docker stop``) asks ``trainer`` to stop after its current batch, so that a checkpoint holds the
    batch reached; a second one raises KeyboardInterrupt at once (``KeyboardInterrupt('SIGTERM')`` for SIGTERM). Installed only in the main thread;
    the previous handlers are restored on exit, and a fit running inside another's (from a callback) passes
    the stop on to the outer fit. A SIGTERM is then passed on when the process had no
    handler of its own for it (the default action: the process ends, status 143), so a script under
    ``timeout`` or Slurm still ends, after the checkpoint, instead of running on past its time. So it is
    when the handler was set outside Python (``signal.getsignal`` gives None: a program embedding Python),
    which Python cannot put back: the default action is restored, and the signal ends the process."""
    if not flag(enabled, "handle_interrupt") or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    except (ValueError, OSError):
        yield
        return

    asked = []

    def handler(signum, frame):
        if trainer.interrupt_asked():  # a second signal: the user really wants out (a SIGTERM's named: no Ctrl-C's)
            raise KeyboardInterrupt(*(() if signum == signal.SIGINT else (signal.Signals(signum).name,)))
        asked.append(signum)
        trainer.interrupt()

    handler.stops_a_fit = True  # passed the stop when it is a fit's outer one (tests/conftest.py's handler says so too)
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, handler_before in previous.items():
            signal.signal(s, handler_before if handler_before is not None else signal.SIG_DFL)
    for s in dict.fromkeys(asked):  # a fit run inside another's (a callback's): the stop is the outer fit's too
        if getattr(previous[s], "stops_a_fit", False):
            previous[s](s, None)
    if signal.SIGTERM in asked and previous[signal.SIGTERM] in (signal.SIG_DFL, None):
        # SIGTERM was only deferred: the run stopped cleanly (checkpoint written), and now the process
        # ends as it would have at once, rather than run on past a `timeout` or a job's end. A program
        # that handles SIGTERM itself (gpunn's command line does) gets the history back instead.
        for stream in (sys.stdout, sys.stderr):  # what the script printed (a file's or a pipe's buffer: Slurm's
            with contextlib.suppress(Exception):  # log) is not lost with the process
                stream.flush()
        signal.raise_signal(signal.SIGTERM)
