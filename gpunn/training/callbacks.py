"""The callback protocol, the history and the built-in training callbacks: a progress bar, early
stopping and learning-rate reduction on plateau. All but the progress bar (a counter per batch)
act once per epoch.
Checkpointing (``ModelCheckpoint``) lives in :mod:`gpunn.checkpoint`, which imports this module.

Every built-in callback with progress to keep follows the callback-state protocol documented on
:class:`Callback`; :mod:`gpunn.checkpoint` stores and restores it, so a resumed run continues with the
same patience counters, best value and best weights.
"""
from __future__ import annotations

import functools
import inspect
import math
import os
import sys
import threading
import time

import numpy

from ..backend import host_array
from ..checks import flag, got, non_negative_int, non_negative_number, real, verbosity
from ..hints import a_type, keywords_hinted, missing_attribute, value_repr
from ..optim import Optimizer, misplaced

__all__ = ["Callback", "History", "ProgressBar", "EarlyStopping", "ReduceLROnPlateau", "CALLBACKS", "order_callbacks"]


class Callback:
    """Hooks called by :func:`fit`; set ``trainer.stop = True`` to end training after this epoch (in
    ``on_train_begin``: before the first).

    Order: on_train_begin; per epoch on_epoch_begin, on_batch_end for each batch, with validation
    on_validation_begin (the epoch's training done, its pass over the held-out rows next), on_epoch_end
    (``logs`` holds the epoch's loss, lr and, with validation, val_loss/val_mse/val_mae/val_r2);
    on_train_end (also after an interruption or an error, another callback's on_train_begin's too: every callback
    whose on_train_begin ran gets it). ``trainer.interrupt()`` stops after
    the current batch, as Ctrl-C does. on_batch_end is called only for callbacks that override
    it, so epoch-level callbacks add no per-batch work. ``epoch`` and ``batch`` are indexes from 0, as
    Keras passes them (``batch`` within its epoch, a resumed one's too), where ``logs["epoch"]``,
    ``history["epoch"]``, the progress line and every message count from 1: ``on_epoch_end(trainer, 0,
    logs)`` ends the epoch they call epoch 1 (``logs["epoch"] == 1``).

    Callback state (what a checkpoint keeps). A callback whose progress must survive a checkpoint
    defines three methods:

    - ``state_dict(self)`` returns ``(json_dict, arrays)``: a JSON-able dict of its progress and a dict
      ``{name: array}`` (names are identifiers; arrays as long as the model's parameters, e.g. best
      weights; host or device arrays);
    - ``load_state_dict(self, json_dict, arrays)`` restores that progress; ``arrays`` are host (NumPy)
      arrays: move them to the device in ``on_train_begin`` (``trainer.model.xp.asarray``) if needed;
    - ``get_config(self)`` returns the JSON-able keyword arguments of its constructor.

    A checkpoint stores all three per callback, and every callback's class (module and qualified name) in the
    run's order. On resume a built-in callback, or a subclass of one defined in the resuming process (found by
    its module and qualified name; in a file from before they were recorded, by its class name), is rebuilt as
    ``cls(**config)`` (a ModelCheckpoint's as ``cls(path, **config)``) and given its state; a callback you pass
    to ``resume(callbacks=[...])`` receives, through ``load_state_dict``, the state saved for its class: the
    k-th one of a class the k-th state saved for that class, so pass as many of a class as the run had, in its
    order, or none (a built-in one whose settings differ from the saved one's takes it over with a warning
    naming them: the run goes on by other rules). Any other callback of the run (one of your own that subclasses
    no built-in) is not rebuilt: pass it again, or the resume leaves it and its state out, with a warning. A
    class of your own named like a built-in (``EarlyStopping``) is not the built-in: each takes its own state.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keywords_hinted(cls)  # EarlyStopping(patiance=3): did you mean patience?

    def __repr__(self):
        get_config = getattr(self, "get_config", None)
        if get_config is None:
            return super().__repr__()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in get_config().items())})"

    def on_train_begin(self, trainer): ...
    def on_epoch_begin(self, trainer, epoch): ...
    def on_batch_end(self, trainer, batch): ...
    def on_validation_begin(self, trainer, epoch): ...
    def on_epoch_end(self, trainer, epoch, logs): ...
    def on_train_end(self, trainer): ...


# the arguments the loop passes each hook (after self), and Keras's batch hooks, which gpunn never calls
HOOK_ARGUMENTS = {"on_train_begin": ("trainer",), "on_epoch_begin": ("trainer", "epoch"),
                  "on_batch_end": ("trainer", "batch"), "on_validation_begin": ("trainer", "epoch"),
                  "on_epoch_end": ("trainer", "epoch", "logs"),
                  "on_train_end": ("trainer",)}
_KERAS_BATCH_HOOKS = ("on_batch_begin", "on_train_batch_begin", "on_train_batch_end")
# ... and the state methods a checkpoint calls, where a callback has them (PyTorch's load_state_dict takes one dict)
_STATE_ARGUMENTS = {"state_dict": (), "load_state_dict": ("state", "arrays"), "get_config": ()}


def refuse_foreign_hooks(cb, i: int) -> None:
    """Refuse, before the run, a hook of the callback ``callbacks[i]`` that the loop cannot call as it calls its
    hooks: Keras's ``on_epoch_end(self, epoch, logs=None)`` failed in epoch 1 with Python's "takes from 2 to 3
    positional arguments but 4 were given", an ``on_batch_end`` taking Keras's logs after the first batch, and
    ``on_train_batch_end`` was never called. So are its state methods, where it has them: PyTorch's
    ``load_state_dict(self, state)`` failed only when a resume called it, the run's time spent."""
    name = type(cb).__name__
    for hook in _KERAS_BATCH_HOOKS:
        if callable(getattr(cb, hook, None)):
            raise TypeError(f"callbacks[{i}]: {name}.{hook} is no gpunn hook (Keras's): gpunn's batch hook is "
                            "on_batch_end(trainer, batch), called after each batch")
    why = {**dict.fromkeys(HOOK_ARGUMENTS, "the trainer first (the model is trainer.model; Keras's hooks take no "
                                           "trainer, and no logs in on_batch_end)"),
           **dict.fromkeys(_STATE_ARGUMENTS, "as a checkpoint keeps a callback's state: a pair, state_dict() -> "
                                             "(json_dict, arrays) (see gpunn.Callback)")}
    for hook, arguments in {**HOOK_ARGUMENTS, **_STATE_ARGUMENTS}.items():
        try:
            signature = inspect.signature(getattr(cb, hook))
        except (AttributeError, TypeError, ValueError):  # none (a state method), or one Python cannot read: left be
            continue
        try:
            signature.bind(*arguments)
        except TypeError:
            raise TypeError(f"callbacks[{i}]: {name}.{hook}{signature} cannot take the arguments gpunn passes it: "
                            f"{hook}({', '.join(arguments)}), {why[hook]}") from None


# what scikit-learn's habit, model.fit(X, Y).predict(X), looks for on the History that gpunn's fit returns
_MODEL_ATTRIBUTES = ("predict", "score", "evaluate", "loss", "fit", "loss_and_gradients", "best", "best_index",
                     "weights", "biases", "params", "layer_sizes")


class History(dict):
    """Per-epoch lists: epoch, loss, lr, time_s, samples_per_s (and whatever callbacks add).

    ``loss`` is the training loss over the epoch's rows, each batch's taken before that batch's step (no
    extra pass over the data), so it is not ``model.loss(X, Y)`` after the epoch, which is lower while the loss falls.

    ``time_s`` and ``samples_per_s`` are the epoch's in this process: for the epoch a resume from a checkpoint written
    part-way through it finished, the seconds since the resume and the rate of the rows trained since (an interrupted
    process's part of that epoch is in neither, and the sum of ``time_s`` leaves its seconds out).

    ``interrupted`` is True when training stopped on Ctrl-C / ``trainer.interrupt()`` (only
    completed epochs are listed: a run stopped in its first epoch returns a History whose lists are empty,
    ``history["epoch"] == []``, as Keras's ``history.epoch`` lists the epochs completed);
    ``stopped_early`` when early stopping ended it. ``cut_batch``: where an interrupt stopped part-way through an
    epoch, how many of its batches ran (the model holds the weights of their steps, which no epoch's row scores, as
    the checkpoint written then does); 0 where it stopped at an epoch's end, or was not interrupted.

    ``best_epoch`` (from 1) and ``best`` (its value): EarlyStopping's best epoch and value by its monitor, whose
    weights the model ends with (``restore_best_weights``; not where ``interrupted``: the model then holds the weights
    it stopped with); without EarlyStopping, the epoch and value of the least
    ``val_loss`` where the run was validated (the model then ends with the last epoch's weights), as an Ensemble's
    history gives per member; else None.
    """

    interrupted = False
    cut_batch = 0
    stopped_early = False
    best_epoch = None
    best = None

    def __getattr__(self, name):
        raise missing_attribute(self, name, self._hint(name))

    def __missing__(self, key):
        # history["val_loss"] of a fit without validation, Keras's habit, said only KeyError: 'val_loss'
        if not isinstance(key, str):
            raise KeyError(key)
        hint = missing_log_hint(key, self, "this fit had no validation: pass validation_data or validation_fraction")
        raise KeyError(f"{key!r}: the history has no {key}{hint}; its keys: {', '.join(self)}")

    def _hint(self, name) -> str:
        """What a user of another library looks for under ``name``: Keras's ``history.history["loss"]``, a key
        (``history.loss``), or the model, which scikit-learn's fit returns (``model.fit(X, Y).predict(X)``)."""
        if name.startswith("__"):  # copy's and pickle's probes
            return ""
        if name in self:
            return f": the per-epoch lists are its items, history[{name!r}]"
        if name == "history":
            return ": gpunn's History is the dict of per-epoch lists itself (Keras's history.history): history['loss']"
        if name in _MODEL_ATTRIBUTES:
            return (f": fit returns the run's History, as Keras's fit does, not the model, as scikit-learn's does; "
                    f"call model.{name} on the model (gpunn.MLPRegressor's fit returns the estimator)")
        return ""

    def settle_best(self):
        """best_epoch and best for a validated run without EarlyStopping: the least val_loss and its epoch (the
        first of equals, as EarlyStopping counts only a fall; a NaN or infinite epoch never the best), where an
        epoch ended; None where no epoch's was finite. An ensemble's val_loss is epochs x K: per member, lists of K."""
        values = numpy.asarray(self.get("val_loss", []), dtype=numpy.float64)
        if self.best_epoch is None and self.best is None and values.size:
            filled = numpy.where(numpy.isfinite(values), values, numpy.inf)
            scored = numpy.isfinite(filled.min(axis=0))  # (a member no epoch scored has no best: None, not epoch 1)
            self.best_epoch = numpy.where(scored, filled.argmin(axis=0) + 1, None).tolist()  # (an int, or a list of K)
            self.best = numpy.where(scored, filled.min(axis=0), None).tolist()

    def expect(self, keys):
        """An empty list for each of ``keys`` it has not yet: the logs a run will append, so that a run stopped
        before its first epoch ended holds them, empty, not a history without the keys (``history["loss"]``
        raised KeyError)."""
        for key in keys:
            self.setdefault(key, [])

    def append(self, logs: dict):
        for key, value in logs.items():
            self.setdefault(key, []).append(value)

    @property
    def last(self) -> dict:
        return {k: v[-1] for k, v in self.items() if v}


def draws_bar(stream) -> bool:
    """Whether progress on ``stream`` is a bar redrawn in place (a terminal; a notebook, whose tqdm draws a widget) or
    lines of text (a file, a pipe: a log of Slurm, nohup or ``> log 2>&1``, where a bar's carriage-return
    redraws piled up, some 2.5 MB an hour, with no line per epoch). The one place that decides it. A terminal of
    no columns (a pseudo-terminal never sized: ``script`` run from a pipe) gets the lines: tqdm draws nothing there."""
    import tqdm.auto  # noqa: F401 (imports tqdm.autonotebook, which picks the notebook's tqdm or the plain one)
    from tqdm import autonotebook, std

    if autonotebook.tqdm is not std.tqdm:
        return True
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # a stream without isatty, or a closed one
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):  # a terminal-like stream without a descriptor: the bar, as it asks
        return True


def four_digits(value) -> str:
    """A loss or metric as progress shows it: 4 significant digits, trailing zeros kept ("4.000", "0.01230",
    "1.000e-05"; "1234", not "1234."), as Keras keeps them ("4.0003" at 4 decimals). :.4g dropped them, so a loss of
    4.0003 showed as "4", as if exact, and the line's width jumped from epoch to epoch."""
    text = f"{value:#.4g}"
    return text[:-1] if text.endswith(".") else text


class ProgressBar(Callback):
    """Progress on stderr: a bar on a terminal, lines of text elsewhere (:func:`draws_bar`); ``lines=True`` or
    ``False`` forces one or the other.

    The bar: a tqdm bar over the rows of the whole run (every rank's, in a data-parallel fit), moved every
    batch: rows/s and the time left from the first seconds on, the epoch in its title, and the last
    epoch's loss (and validation metrics) beside it; in a run of several epochs also the time left in
    the current epoch (``epoch_eta``, from the run's rate so far, recomputed every ``eta_every_s``
    seconds). Per batch it only adds to a counter and reads the clock; tqdm redraws a few times a second.

    The lines (Keras' verbose=2): one per epoch, with its loss and validation metrics, the epoch's rows/s, the
    time since the run began and the time left; within an epoch longer than ``line_every_s`` seconds also a
    line every ``line_every_s`` with the rows done, the run's rows/s and the epoch's time left. The run's rate,
    which every time left is taken at, leaves out the seconds in Numba (:meth:`_run_rate`).

    Each starts with what is running, ``label`` ("train [cpu] epoch 1/5"): by default "train" for one model's fit,
    "ensemble of K" for an Ensemble's; gpunn sweep names its ensembles."""

    rank_zero_only = True  # data parallel: only rank 0 draws it
    eta_every_s = 1.0
    line_every_s = 60.0
    # a run's first Numba compile, said once, and an epoch line's seconds in Numba (its start, kernels loaded or
    # compiled: once per process): see numba_seconds
    says_compiling = True
    # an interrupted run's line: where it stopped and what the model holds (interrupted_words). gpunn train and gpunn
    # sweep turn it off on their bars: they print their own, with the checkpoint and the command that goes on
    says_interrupted = True

    def __init__(self, lines=None, label=None):
        self.lines = flag(lines, "lines", allow_none=True)
        if label is not None and not (isinstance(label, str) and label):
            raise TypeError(f"label must be a non-empty str (what the lines name as running), or None, got {label!r}")
        self.label = label

    def get_config(self):
        return {"lines": self.lines, "label": self.label}

    def default_label(self, trainer) -> str:
        """What the lines name as running where ``label`` is None: "train" (one model's fit)."""
        return "train"

    def on_train_begin(self, trainer):
        from tqdm.auto import tqdm

        # the epoch's training rows, of every rank in data parallel (rank 0's own are 1/P of them; global
        # batches of P x b): FitSettings', which the epoch's batch count is cut from. Not a source's total_rows:
        # a synthetic source's counts its held-out rows too (the bar ended short of its total by them)
        self.rows = int(trainer.settings.train_rows)
        self.batch_size = int(trainer.batch_size) * trainer.settings.ranks
        epochs_left = trainer.epochs - trainer.start_epoch
        self.bar = None
        self._stepped = None  # the batches of epoch self._epoch whose step has ended (None: nothing to train)
        self.device = trainer.model.device
        self.heading = f"{self.label or self.default_label(trainer)} [{self.device}]"  # "ensemble of 8 [cpu]"
        if epochs_left <= 0 or trainer.stop:  # a resume of a run that had ended drew a bar of 0 rows (epoch 3/50: 0%)
            epochs_done = trainer.start_epoch
            ended = (f"early stopping ended it after epoch {epochs_done}" if trainer.stop
                     else f"{epochs_done} of {trainer.epochs} epochs done")
            print(f"{self.heading}: nothing left to train ({ended})", file=sys.stderr, flush=True)
            return
        done = min(trainer.state.batch * self.batch_size, self.rows)
        self.epochs, self.stream = trainer.epochs, sys.stderr
        self.total, self.done = epochs_left * self.rows, done  # the run's rows left when it began; those counted
        self._epoch, self._stepped = trainer.start_epoch, trainer.state.batch
        if self.lines is False or (self.lines is None and draws_bar(self.stream)):
            self.bar = _readable_times(tqdm)(total=self.total, initial=done, unit="rows", unit_scale=True,
                                             file=self.stream, desc=self._title(trainer.start_epoch),
                                             dynamic_ncols=True, smoothing=0.1, bar_format=_BAR_FORMAT)
        self._epoch_eta = epochs_left > 1  # with one epoch, the bar's own time left is the epoch's
        self._start, self._start_rows = time.monotonic(), done
        self._next_eta = self._start + self.eta_every_s
        self._next_line = self._start + self.line_every_s
        self._epoch_start, self._epoch_start_rows = self._start, done
        self._shown = {}
        self._numba = numba_seconds(self._say_compiling) if self.says_compiling else None
        self._numba_at, self._compiles_at = 0.0, 0

    def _say_compiling(self):
        """Numba compiles the CPU kernels on their first call where its cache holds none (the first run after an
        install or an update: 12 s on 2 cores), inside the first batch: the bar stood still at 0 rows meanwhile."""
        text = "compiling CPU kernels (first run only: Numba caches them)..."
        if self.bar is not None:
            self.bar.write(f"{self.heading}: {text}", file=self.stream)
        else:
            print(f"{self.heading}: {text}", file=self.stream, flush=True)

    def _title(self, epoch):
        return f"{self.heading} epoch {min(epoch + 1, self.epochs)}/{self.epochs}"

    def on_epoch_begin(self, trainer, epoch):
        if epoch != self._epoch:  # (a resumed run's first epoch began at its saved batch)
            self._stepped = 0
        self._epoch = epoch
        if self.bar is None:
            self._epoch_start, self._epoch_start_rows = time.monotonic(), self.done
            if self._numba is not None:
                self._numba_at, self._compiles_at = self._numba(), self._numba.compiles
        else:
            self.bar.set_description(self._title(epoch), refresh=False)

    def on_batch_end(self, trainer, batch):
        self._stepped = batch + 1
        rows_done = min((batch + 1) * self.batch_size, self.rows)
        self.done += rows_done - batch * self.batch_size
        now = time.monotonic()
        if self.bar is None:
            if now >= self._next_line:
                self._next_line = now + self.line_every_s
                # the run's rate, as the bar's epoch_eta: the epoch's own, a batch or two into it (its first batch
                # waits on a stream's first chunk), put an epoch of 20 s at two hours
                rate = self._run_rate(now)
                self._write(f"{rows_done:,}/{self.rows:,} rows, {self._format_rate(rate)}, "
                            f"epoch left {self._interval((self.rows - rows_done) / max(rate, 1e-9))}")
            return
        self.bar.update(rows_done - batch * self.batch_size)
        if self._epoch_eta and now >= self._next_eta:
            self._next_eta = now + self.eta_every_s
            rate = self._run_rate(now)
            self.bar.set_postfix({**self._shown, "epoch_eta": self._interval(
                (self.rows - rows_done) / max(rate, 1e-9))}, refresh=True)

    def on_validation_begin(self, trainer, epoch):
        """Say the epoch's pass over the held-out rows is running: the bar stood full, or a log of a long epoch
        silent after its last line, while a held-out source of many rows was read."""
        if self.bar is not None:
            self.bar.set_description(f"{self._title(epoch)} validating", refresh=True)
        elif time.monotonic() - self._epoch_start >= self.line_every_s:  # an epoch that wrote lines on the way
            self._write("validating on the held-out rows")

    def shown(self, trainer, logs) -> dict:
        """What an epoch's end shows of its logs, by name: the loss and validation metrics (:func:`four_digits`)."""
        shown = {"loss": four_digits(logs['loss'])}
        # val_mse is val_loss over the number of outputs: not shown again
        shown.update({k: four_digits(v) for k, v in logs.items() if k.startswith("val_") and k != "val_mse"})
        return shown

    def on_epoch_end(self, trainer, epoch, logs):
        self._shown = self.shown(trainer, logs)
        if self.bar is not None:
            self.bar.set_description(self._title(epoch), refresh=False)  # (not "validating" any more)
            self.bar.set_postfix(self._shown, refresh=True)
            return
        now = time.monotonic()
        self._next_line = now + self.line_every_s
        rate = self._rate(now, self._epoch_start, self._epoch_start_rows)
        left = (self.total - self.done) / max(self._run_rate(now), 1e-9)
        self._write(f"{', '.join(f'{k}={v}' for k, v in self._shown.items())}; {self._format_rate(rate)}, "
                    f"elapsed {self._interval(now - self._start)}, left {self._interval(left)}{self._in_numba()}")

    def _in_numba(self):
        """The epoch's seconds in Numba, beside its rate, which they are part of: with a warm cache a process's
        first epoch spends 0.6-1 s there (Numba's start and its kernels' loads), which put a small net's first
        epoch at a thousandth of the second's rate, with nothing to say why; with a cold one, its compiles."""
        if self._numba is None:
            return ""
        spent = self._numba() - self._numba_at
        if spent < 0.005:  # none: the kernels were ready (a second fit in the process), or it would read 0.00s
            return ""
        if self._numba.compiles > self._compiles_at:
            return f" ({spent:.2f}s of it in Numba: its start and the CPU kernels' compile, first run only)"
        return f" ({spent:.2f}s of it in Numba: its start and the CPU kernels' load, once per process)"

    def _rate(self, now, since, rows_then):
        return (self.done - rows_then) / max(now - since, 1e-9)

    def _run_rate(self, now):
        """The run's rows/s so far, which the time left is taken at: without its seconds in Numba (its start, the
        kernels' load or compile), which a process pays once and the rows left will not pay again. A first run's
        12 s compile put a 0.4 s epoch's time left at 25 s."""
        once = self._numba() if self._numba is not None else 0.0  # (since on_train_begin made the watch)
        return (self.done - self._start_rows) / max(now - self._start - once, 1e-9)

    @staticmethod
    def _interval(seconds):
        return interval_text(seconds)

    @staticmethod
    def _format_rate(rate):
        from tqdm.std import tqdm

        return f"{tqdm.format_sizeof(rate)} rows/s"

    def _write(self, text):
        print(f"{self._title(self._epoch)}: {text}", file=self.stream, flush=True)

    def on_train_end(self, trainer):
        if getattr(self, "_numba", None) is not None:
            self._numba.stop()
            self._numba = None
        if self.bar is not None:
            self.bar.close()
        counted = getattr(self, "_stepped", None) is not None  # (not where on_train_begin found nothing to train)
        said = self.interrupted_words(trainer) if self.says_interrupted and counted else ""
        if said:
            print(f"{self.heading}: {said}", file=self.stream, flush=True)

    def interrupted_words(self, trainer) -> str:
        """Where a run that was interrupted stopped and what the model holds, or "" for one that was not. A stop
        (Ctrl-C, SIGTERM, trainer.interrupt()) ends a step, and fit returns; a KeyboardInterrupt (a second Ctrl-C,
        handle_interrupt=False, one a callback raises) lands anywhere, inside a step's update too, and goes on up."""
        if getattr(trainer, "interrupted", False):  # (a trainer-like object of a test's may have neither)
            writer = next((cb for cb in trainer.callbacks if getattr(cb, "writes_checkpoint", False)), None)
            saved = "" if not getattr(writer, "path", None) else (
                f"; {writer.path} left as it was (the end of the last epoch it was written at, if any: this source "
                "cannot resume part-way through an epoch)" if getattr(writer, "left_as_was", False) else f"; checkpoint in {writer.path}")
            return (f"interrupted after {trainer.position(trainer.state.epoch, trainer.state.batch)}: the model "
                    f"holds the weights of that last step{saved}; fit returns the history of the complete epochs "
                    "(history.interrupted is True)")
        if isinstance(getattr(trainer, "failure", None), KeyboardInterrupt):
            epoch, stepped = self._epoch, self._stepped
            if stepped >= trainer.settings.batches_per_epoch:  # in the epoch's validation or its end
                epoch, stepped = epoch + 1, 0
            return (f"KeyboardInterrupt after {trainer.position(epoch, stepped)}: the model holds the weights of "
                    "those steps, or of part or all of the next one where it landed during that step")
        return ""


DAY, YEAR = 86400, 365.25 * 86400


def interval_text(seconds) -> str:
    """A time left or elapsed as the progress shows it: tqdm's clock under a day (``05:07``, ``3:05:07``), then days
    and hours (``15d 16h``), then years (``4.7 years``, ``15,855 years``). A stream of 10^10 rows on a laptop's CPU
    takes weeks an epoch and one of 10^12 years: tqdm's clock said ``40812:01:01``, hours to divide by 24 and 8,766
    in one's head."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)  # (a clock stepped back)
    if seconds < DAY:  # tqdm.format_interval's [H:]MM:SS
        minutes, secs = divmod(int(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
    if seconds < YEAR:
        days, hours = divmod(int(seconds) // 3600, 24)
        return f"{days}d {hours:02d}h"
    years = seconds / YEAR
    if years >= 1e9:  # (a rate near 0 at the start: 1e300 s printed 293 digits)
        return f"{years:.1e} years"
    return f"{years:.1f} years" if years < 100 else f"{years:,.0f} years"


# tqdm's own bar, its times given by interval_text (the {elapsed} and {remaining} of tqdm's format_meter are its
# clock, computed inside a static method that a subclass cannot reach)
_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed_text}<{left_text}, {rate_fmt}{postfix}]"


@functools.cache
def _readable_times(tqdm_class):
    """``tqdm_class`` (tqdm.auto's: a terminal's or a notebook's), with ``_BAR_FORMAT``'s times in format_dict,
    which every tqdm's display formats its line from."""
    class ReadableTimes(tqdm_class):
        @property
        def format_dict(self):
            shown = super().format_dict
            # closed: the run's mean rate (rows over the time elapsed). tqdm's close shows it on a terminal only; a
            # notebook's bar (tqdm.notebook's widget) kept the smoothed rate of its last updates, which after a run of
            # a few seconds still weighed the first batch's wait (Numba's start or compile): a fit of 10,800 rows in
            # 1 s ended at "150rows/s", one of 36,000 rows in 29 s at "125rows/s"
            if self.disable:
                shown["rate"] = None
            n, total, elapsed, rate = shown["n"], shown["total"], shown["elapsed"], shown["rate"]
            if rate is None and elapsed:  # format_meter's own fallback: the mean rate
                rate = (n - shown["initial"]) / elapsed
            left = interval_text((total - n) / rate) if rate and total else "?"
            return {**shown, "elapsed_text": interval_text(elapsed), "left_text": left}

    # a notebook's bar class comes from tqdm.notebook, imported already; importing it here for a terminal's bar loaded
    # ipywidgets and IPython (some 0.1 s) into every verbose fit where Jupyter is installed
    notebook = sys.modules.get("tqdm.notebook")
    if notebook is not None and issubclass(tqdm_class, notebook.tqdm_notebook):
        ReadableTimes = _text_kept_up(ReadableTimes)
    ReadableTimes.__name__ = ReadableTimes.__qualname__ = f"ReadableTimes{tqdm_class.__name__}"
    return ReadableTimes


def _text_kept_up(widget_class):
    """tqdm.notebook's bar class ``widget_class``, whose output's plain text is its closed bar's line. The output of
    a widget holds the plain text of the moment it was displayed, the bar's first (``epoch 1/20: 0%| 0.00/36.0k
    [00:00<?, ?rows/s]``), which is what a notebook run headless (nbclient, papermill) and saved shows wherever the
    widget is not drawn (GitHub's view of it, say). Displayed under a display id, the output is updated as the bar
    closes, the widget with it. As tqdm.notebook's own, a bar with a ``delay`` (TQDM_DELAY in the environment) is
    displayed once that delay has passed, and not where it closes first; a disabled one (TQDM_DISABLE) not at all."""
    class TextKeptUp(widget_class):
        def __init__(self, *args, **kwargs):
            self._output = None
            super().__init__(*args, display=False, **kwargs)
            if not self.disable and self.delay <= 0:  # (disabled, tqdm made no widget: it raised AttributeError here)
                self._display()

        def _display(self):
            from IPython.display import display

            self._output, self.displayed = display(self.container, display_id=True), True

        def display(self, *args, check_delay=True, **kwargs):
            # tqdm's own display of the widget once the delay has passed had no display id; displayed at once here
            # regardless of the delay, the bar then showed twice
            shown = super().display(*args, check_delay=False, **kwargs)
            if check_delay and self.delay > 0 and not self.displayed:
                self._display()
            return shown

        def close(self):
            if self.disable:  # closed already: tqdm's __del__ closes again, where the container's link to the bar
                return  # is dead (its text would raise ReferenceError)
            super().close()
            if self._output is not None:  # (None: display found no IPython shell, and printed the widget's text)
                self._output.update(self.container)

    return TextKeptUp


class PassProgress:
    """Progress of a pass over rows before training, which no epoch's bar shows (the statistics pass of ``gpunn train
    --standardize``: an hour on a laptop's CPU for a stream of 10^10 rows, said by nothing until the first batch).
    Called with the rows of each piece read. A bar on a terminal (:func:`draws_bar`), else a line every
    ``line_every_s`` seconds with the rows read, the rate and the time left, as :class:`ProgressBar` gives an epoch's;
    ``lines=True`` or ``False`` forces one or the other. ``close()`` ends the bar."""

    line_every_s = 60.0

    def __init__(self, label: str, rows: int, lines=None, stream=None):
        self.label, self.rows, self.done = label, int(rows), 0
        self.stream = sys.stderr if stream is None else stream
        self.bar = None
        if lines is False or (lines is None and draws_bar(self.stream)):
            from tqdm.auto import tqdm

            self.bar = _readable_times(tqdm)(total=self.rows, unit="rows", unit_scale=True, file=self.stream,
                                             desc=label, dynamic_ncols=True, smoothing=0.1, bar_format=_BAR_FORMAT)
        self._start = time.monotonic()
        self._next_line = self._start + self.line_every_s

    def __call__(self, rows: int) -> None:
        self.done += int(rows)
        if self.bar is not None:
            self.bar.update(int(rows))
            return
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + self.line_every_s
            rate = self.done / max(now - self._start, 1e-9)
            print(f"{self.label}: {self.done:,}/{self.rows:,} rows, {ProgressBar._format_rate(rate)}, left "
                  f"{interval_text((self.rows - self.done) / max(rate, 1e-9))}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def numba_seconds(say_compiling=None):
    """A function that reads the seconds Numba has spent loading or compiling kernels since this call, in any thread
    (the time some thread waited for or held Numba's compiler lock, from a wait that starts after this call: a
    kernel's first call in a process takes it, whether its cache holds the kernel or not, and Numba's start,
    0.3-0.8 s, happens there), and the seconds of
    Numba's import where a kernel's first call imports it (gpunn.ops.lazynumba); None without Numba.
    ``say_compiling()`` is called at the first compile from now on (a kernel its cache holds is loaded, with no
    "numba:compile" event; ``reader.compiles`` counts those). Numba's documented event API, listened to from Numba's
    import on; ``reader.stop()`` stops listening."""
    from ..ops import lazynumba

    if lazynumba.numba is None and "numba" not in sys.modules:  # not installed: nothing compiles
        return None
    watch = _NumbaWatch(say_compiling)
    if not lazynumba.on_import(watch.imported):
        watch.listen()
    return watch


_NUMBA_EVENTS = ("numba:compile", "numba:compiler_lock")  # what _NumbaWatch listens to, from listen() to stop()


class _NumbaWatch:
    # the lock's events nest (a kernel's load takes it again inside) and come from several threads (an
    # ensemble's member groups): the clock runs while any is open. Each is counted on its thread, which both its
    # events come from (Numba's compiler lock is an RLock, released where taken): an end whose start came before
    # listen() is not counted against another thread's open one
    def __init__(self, say_compiling):
        self.say_compiling, self.listener = say_compiling, None
        self.said, self.open, self.since, self.seconds, self.compiles = False, 0, 0.0, 0.0, 0
        self.depth = {}  # thread ident -> its lock events open, of those whose start this watch saw
        self.guard, self.stopped = threading.Lock(), False

    def imported(self, seconds):
        """lazynumba's hook: Numba was imported (by a kernel's first call), taking ``seconds``."""
        with self.guard:
            self.seconds += seconds
        self.listen()

    def listen(self):
        from numba.core import event

        watch = self

        class Listener(event.Listener):
            def on_start(self, ev):
                watch.on_start(ev)

            def on_end(self, ev):
                watch.on_end(ev)

        # under the guard, as stop() reads the listener: a fit ending on its thread while a kernel's first call on
        # another imports Numba (lazynumba.load has taken this hook, not yet called it) leaves no listener behind
        with self.guard:
            if self.stopped:
                return
            self.listener = Listener()
            for kind in _NUMBA_EVENTS:
                event.register(kind, self.listener)

    def on_start(self, ev):
        if ev.kind == "numba:compile":
            self.compiles += 1
            if not self.said and self.say_compiling is not None:
                self.said = True
                self.say_compiling()
            return
        thread = threading.get_ident()
        with self.guard:
            self.depth[thread] = self.depth.get(thread, 0) + 1
            self.open += 1
            if self.open == 1:
                self.since = time.monotonic()

    def on_end(self, ev):
        if ev.kind == "numba:compile":
            return
        thread = threading.get_ident()
        with self.guard:
            if not self.depth.get(thread):  # its start came before listen() (another thread held the lock then)
                return
            self.depth[thread] -= 1
            self.open -= 1
            if self.open == 0:
                self.seconds += time.monotonic() - self.since

    def __call__(self):
        with self.guard:
            return self.seconds + (time.monotonic() - self.since if self.open else 0.0)

    def stop(self):
        from ..ops import lazynumba

        lazynumba.forget(self.imported)
        with self.guard:
            self.stopped, listener, self.listener = True, self.listener, None
        if listener is not None:
            from numba.core import event

            for kind in _NUMBA_EVENTS:
                event.unregister(kind, listener)


def lines_for(verbose):
    """The ``lines`` of the ProgressBar that ``verbose`` asks for: verbose=2 is Keras' line per epoch wherever stderr
    goes (True); any other level lets :func:`draws_bar` decide (None)."""
    return True if not isinstance(verbose, (bool, numpy.bool_)) and verbose == 2 else None


def writes_checkpoints(trainer) -> bool:
    """Whether a checkpoint writer (ModelCheckpoint: ``writes_checkpoint``) is among the run's callbacks."""
    return any(getattr(cb, "writes_checkpoint", False) for cb in trainer.callbacks)


def order_callbacks(callbacks, verbose):
    """User callbacks first, then checkpoint writers (``writes_checkpoint = True``, so they save
    the others' updated state), then the progress bar."""
    if isinstance(callbacks, Callback):
        raise TypeError(f"callbacks is a list of gpunn.Callback; got one {type(callbacks).__name__}: write "
                        f"callbacks=[{type(callbacks).__name__}(...)]")
    show = verbosity(verbose)
    callbacks = list(callbacks or ())
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(f"callbacks[{i}] is the class {cb.__name__}; pass an instance: {cb.__name__}(...)")
        if not isinstance(cb, Callback) and (said := misplaced(cb, f"callbacks[{i}]")):
            raise TypeError(said)
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}] is {a_type(cb)}, not a gpunn.Callback; subclass gpunn.Callback "
                            "and override the hooks it needs")
        refuse_foreign_hooks(cb, i)
    writers = [cb for cb in callbacks if getattr(cb, "writes_checkpoint", False)]
    others = [cb for cb in callbacks if not getattr(cb, "writes_checkpoint", False)]
    if show and not any(isinstance(cb, ProgressBar) for cb in others):
        others.append(ProgressBar(lines=lines_for(verbose)))
    bars = [cb for cb in others if isinstance(cb, ProgressBar)]
    return [cb for cb in others if not isinstance(cb, ProgressBar)] + writers + bars



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


def missing_log_hint(name, logs, validate) -> str:
    """What to say after "no <name>" of ``logs`` (a run's logs or history): `` (validate)`` for a val_ name in a run
    without validation, `` (did you mean 'val_loss'?)`` for a misspelling of one it has (val_los, VAL_LOSS) or for
    evaluate's and score's name of one (r2, mse, mae: the held-out values carry val_), else nothing."""
    from ..hints import meant

    if name.startswith("val_") and not any(k.startswith("val_") for k in logs):
        return f" ({validate})"
    found = meant(name, list(logs), aliases=False)  # (the command line's names: no metric's)
    if found:
        return f" ({found.hint(lambda metric, value: repr(metric))})"
    if f"val_{name}" in logs:
        return f" (did you mean 'val_{name}'? the held-out rows' values carry val_)"
    return ""


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
            next_lr = trainer.optimizer.lr * trainer.schedule.factor(epoch + 1, trainer.epochs)
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


def _an_optimizer(value) -> bool:
    """Whether ``value`` is gpunn's optimizer or PyTorch's (a ``param_groups`` list, read without a ``__getattr__``)."""
    return isinstance(value, Optimizer) or isinstance(inspect.getattr_static(value, "param_groups", None), list)


CALLBACKS = {cls.__name__: cls for cls in (EarlyStopping, ReduceLROnPlateau)}
