"""Progress on stderr: :class:`ProgressBar`, a fit's bar (on a terminal) or lines (in a log), and
:class:`PassProgress`, a pass over rows before training; and how both show things: a bar or lines
(:func:`draws_bar`, :func:`lines_for`), a loss (:func:`four_digits`), a time (:func:`interval_text`) and tqdm's bar
with those times (``_readable_times``). The seconds an epoch spent in Numba come from :mod:`gpunn.training.numba_watch`.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time

import numpy

from ..checks import flag
from .callback_protocol import Callback
from .numba_watch import numba_seconds

__all__ = ["PassProgress", "ProgressBar", "draws_bar", "four_digits", "interval_text", "lines_for"]


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
                "cannot resume part-way through an epoch)" if getattr(writer, "left_as_was", False) else
                f"; checkpoint in {writer.path}{_resumed_by(trainer, writer.path)}")
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


def _resumed_by(trainer, path) -> str:
    """" (resume: gpunn.load_checkpoint('run.npz').resume(X, Y))" for the checkpoint of ``trainer``'s run, as gpunn
    info says it (its source's config, computed at the checkpoint's write, says the kind of data and its weights)."""
    from .sources import resume_call

    config = getattr(getattr(trainer, "source", None), "config", None)
    config = config() if config is not None else {}
    call = resume_call(config.get("kind"), bool(config.get("sample_weight")))
    return f" (resume: gpunn.load_checkpoint({os.fspath(path)!r}).{call})"


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


def lines_for(verbose):
    """The ``lines`` of the ProgressBar that ``verbose`` asks for: verbose=2 is Keras' line per epoch wherever stderr
    goes (True); any other level lets :func:`draws_bar` decide (None)."""
    return True if not isinstance(verbose, (bool, numpy.bool_)) and verbose == 2 else None
