"""The callback that writes a run's checkpoints while it trains (:class:`ModelCheckpoint`), and ``CALLBACKS``: the
built-in callbacks a resume makes again from their saved settings."""
from __future__ import annotations

import os
import string
import warnings

from ..checks import flag, positive_int
from ..preflight import check_output
from ..training import callbacks as cbmod
from ..training.callback_protocol import Callback
from ..training.monitoring import _Monitoring
from ..training.ensemble import MemberEarlyStopping
from .format import check_replaceable
from .models import save_checkpoint


# what Keras's ModelCheckpoint fills into its filepath: the epoch, the batch and the epoch's logs
_LOG_FIELDS = ("epoch", "batch", "loss", "lr", "time_s", "samples_per_s")


def _log_field(path: str) -> str:
    """The first format field of ``path`` that names the epoch, the batch or a log (``{epoch:02d}``,
    ``{val_loss:.2f}``), as written, or "": a directory named ``{run}`` is a name."""
    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(path) if name is not None]
    except ValueError:  # a lone brace: no field
        return ""
    for name, spec in fields:
        if name in _LOG_FIELDS or name.startswith("val_"):
            return "{" + name + (f":{spec}" if spec else "") + "}"
    return ""


class ModelCheckpoint(Callback):
    """Write a resumable checkpoint (gpunn.checkpoint.format's) every ``every`` epochs, when training
    ends, and when it is interrupted (Ctrl-C; part-way through an epoch of a source that cannot resume there,
    gpunn.data.iterable's, the file is left at the last epoch's end, with a warning). Each write is atomic: a
    crash mid-write leaves the previous checkpoint in place. With ``save_best_only`` the epoch-end writes
    happen only when ``monitor`` improves (the final/interrupt writes still happen so the
    run can be resumed; point ``path`` elsewhere to keep a best-only file); ``monitor`` and ``mode``
    are EarlyStopping's.
    """

    rank_zero_only = True  # data parallel: rank 0 writes; the other ranks hold the same state

    def __init__(self, path, every=1, save_best_only=False, monitor=None, mode="auto"):
        self.path, self.every = os.fspath(path), positive_int(every, "every")
        if not self.path:  # (found at the first save, after an epoch's work)
            raise ValueError("ModelCheckpoint's path is empty; name a file to write (run.npz)")
        field = _log_field(os.fsdecode(self.path))
        if field:  # Keras's filepath="ck-{epoch:02d}.npz": one file, literally so named, was written over each epoch
            raise ValueError(f"ModelCheckpoint's path {self.path!r} holds {field}, a field Keras's ModelCheckpoint fills "
                             "in; gpunn's writes one file, replaced at each save, which the run resumes from: name one "
                             "(run.npz). To keep each epoch's model too, save it in a callback of yours, "
                             "gpunn.save(f\"model-{epoch + 1:02d}.npz\", trainer.model) in its "
                             "on_epoch_end(self, trainer, epoch, logs)")
        self.save_best_only = flag(save_best_only, "save_best_only")
        self._tracker = _Monitoring(monitor, 0.0, mode)
        self.saves = 0

    writes_checkpoint = True  # order_callbacks runs it after the callbacks whose state it saves

    def get_config(self):
        return {"every": self.every, "save_best_only": self.save_best_only,
                "monitor": self._tracker.monitor, "mode": self._tracker.mode}

    def __repr__(self):
        return f"ModelCheckpoint({self.path!r}, {super().__repr__().split('(', 1)[1]}"

    def on_train_begin(self, trainer):
        check_output(self.path, "ModelCheckpoint's path")  # before the first epoch trains, not at its first save
        check_replaceable(self.path)
        self._tracker.on_train_begin(trainer)
        self.left_as_was = False  # the end's write skipped: the file holds an earlier epoch's end (ProgressBar says so)
        if self.save_best_only:  # (its monitor is read only then)
            self._tracker.check_logged(trainer, self)

    def save(self, trainer, logs=None):
        """Write the run's checkpoint; ``logs``: an epoch's logs not yet in the history."""
        save_checkpoint(self.path, model=trainer.model, optimizer=trainer.optimizer, settings=trainer.settings,
                        state=trainer.snapshot(logs), callbacks=trainer.callbacks, source=trainer.source,
                        validation=trainer.validation)
        self.saves += 1

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best_only:
            value = self._tracker._value(logs, self)
            if not self._tracker._improved(value):
                return
            self._tracker.best = value
        elif (epoch + 1) % self.every:
            return
        self.save(trainer, logs)

    def on_train_end(self, trainer):
        if trainer.failed:  # never overwrite a good checkpoint with a diverged or half-stepped model
            return
        if trainer.state.batch and not getattr(trainer.source, "resumable", True):
            # stopped part-way through an epoch of a source that cannot resume there (gpunn.data.iterable): such a
            # file could never be resumed, and it would replace the last epoch's, which can
            warnings.warn(f"the run stopped part-way through epoch {trainer.state.epoch + 1}, and "
                          f"{type(trainer.source).__name__} cannot resume part-way through an epoch: {self.path} was "
                          "left as it was (the end of the last epoch it was written at, if any)", RuntimeWarning,
                          stacklevel=2)
            self.left_as_was = True
            return
        self.save(trainer)

    def state_dict(self):
        return {"best": self._tracker.best}, {}

    def load_state_dict(self, state, arrays):
        self._tracker._load_base({"best": state.get("best"), "best_epoch": None, "wait": 0})


CALLBACKS = {**cbmod.CALLBACKS, ModelCheckpoint.__name__: ModelCheckpoint,
             MemberEarlyStopping.__name__: MemberEarlyStopping}
