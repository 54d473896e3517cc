"""A loaded training checkpoint: :class:`Checkpoint` (the model, its optimizer with its state, the run's position,
settings and history), from :func:`load_checkpoint`."""
from __future__ import annotations

import dataclasses
import functools
import numbers
import os

import numpy

from ..checks import flag, validation_share
from ..hints import keywords_checked, unexpected_resume_keyword
from ..optim import Schedule, make_schedule
from ..training.callbacks import History
from ..training.fit import fit, fit_options
from ..training import ensemble as ens_training
from ..training.sources import ARRAY_KINDS
from ..training.state import FitSettings, TrainState
from .format import CheckpointError, _optimizer_from_meta, read
from .models import _build_model, _members, file_name
from .resume import resume_run


@dataclasses.dataclass
class Checkpoint:
    """A loaded training checkpoint: ``model``, ``optimizer`` (with its state on the model's
    device), and ``training`` (position, settings, history, callback states). ``resume`` continues it."""

    path: str
    model: object
    optimizer: object
    meta: dict
    arrays: dict

    @property
    def training(self) -> dict:
        return self.meta.get("training") or {}

    @property
    def epoch(self) -> int:
        """Epochs completed (the next epoch to run, counting from 0)."""
        return self.training.get("position", {}).get("epoch", 0)

    @property
    def settings(self) -> FitSettings | None:
        """The run's FitSettings (None for a model-only checkpoint)."""
        return FitSettings.from_dict(self.training["settings"]) if self.training else None

    @property
    def state(self) -> TrainState | None:
        """The run's TrainState when it was saved (None for a model-only checkpoint); an ensemble's
        history is an EnsembleHistory (its diverged members included)."""
        if not self.training:
            return None
        state = TrainState.from_dict(self.training)
        if _members(self.model) is not None:
            state.history = ens_training.ensemble_history(state.history, self.training["ensemble"]["diverged"])
        return state

    @property
    def history(self):
        return self.state.history if self.training else History()

    def __repr__(self):
        # the file, what it holds and where its run is: the dataclass's repr printed all of ``meta``, a run's
        # history and settings included (11,000 characters after 50 epochs)
        where = ""
        if self.training:
            position = self.training.get("position", {})
            where = (f", epoch={position.get('epoch', 0)}, batch={position.get('batch', 0)}, "
                     f"epochs={self.training['settings']['epochs']}")
        return (f"Checkpoint({self.path!r}, kind={self.meta.get('kind')!r}, model={self.model!r}, "
                f"optimizer={self.optimizer!r}{where})")

    def resume(self, X, Y=None, *, epochs=None, validation_data=None, callbacks=(), verbose=True, checkpoint=True,
               handle_interrupt=True, distributed=None, sample_weight=None):
        """Continue training on the same (X, Y), or the same data source passed alone as X (left open, as fit
        leaves it: yours to close), from where the checkpoint was written.

        The optimizer, schedule, batch size, seed, validation split and built-in callbacks (and subclasses of
        them defined in this process, a writer of your own included) come from the checkpoint; a callback passed
        in ``callbacks`` takes over its class's saved state instead (a built-in one with a warning when its
        settings differ), the k-th passed of a class the k-th saved: another number of a class than the run
        had (but none) is refused. A class is the same class by module and qualified name (a class of your own
        named ``EarlyStopping`` is not gpunn's); a file written before gpunn recorded them goes by the class name.
        The run's callbacks of other classes (your own Callback with a state) are not
        made again: pass them in ``callbacks``, or they are left out, with a warning (the files this resume writes
        do not hold their state). The run's callbacks run in the run's order, those passed and those made again
        alike, whatever order they are passed in (a stopper made again sees what a callback of yours logs, and of
        two stoppers that restore their best weights the run's last one's stay); one passed that the run did not
        have, or, in a file from before the run's order was recorded, one without a saved state, runs just after the
        callback passed before it (first, if none was).
        ``epochs`` (the run's total) may raise it, never below the epochs done. A fit's option at the run's own
        value (``batch_size``, ``lr``, ``optimizer`` by name, ``schedule``, ``seed``, ``shuffle``,
        ``validation_fraction``: a script passing its fit's options again) is taken and left to the checkpoint, as
        is fit's None where it resolves to the run's (``seed``, ``optimizer``, ``schedule``) or keeps the optimizer's
        own (``lr``, and an Ensemble's ``weight_decay``, ``momentum``, ``beta1``, ``beta2``); another value is
        refused, showing the fit of the loaded model that trains on with it.
        ``checkpoint``: True keeps writing to this file, a path writes elsewhere, False stops
        checkpointing; a resume that trains nothing (early stopping ended the run, or its epochs are all done)
        leaves this file as it was, whatever settings the callbacks passed have; a run saved with several writers
        (whose paths the file does not hold) needs them passed in ``callbacks``, or False. Other data are refused:
        another row count, or in-memory arrays whose values, row order or column order differ from the run's (the
        checkpoint keeps a checksum of them; one written before it recorded its ``fingerprint_rule`` is checked by
        plain row sums, as then, blind to the columns' order), or a data source that describes other data (its
        config: rows, widths, chunks, seed, column names; not its files' paths) or, a file source, whose files hold
        other values (a checksum of their sizes and of blocks sampled through them, gpunn.data.contents: other files
        of the run's shape, or its files rewritten); so are other
        ``validation_data`` than the run's (arrays by the same checksum, a validation source by its config and its
        files' checksum),
        and ``validation_data`` for a run that had none or held out ``validation_fraction``; a run fit with
        ``sample_weight`` (not all equal) resumes with the same weights, passed again (other weights are other data,
        by the same checksum; none, or weights for a run fit without, are refused); and a synthetic
        source's rows or a bootstrap's resamples where another generator would draw them than the file records
        (a GPU run loaded on the CPU, a CPU run on a GPU, a GPU run from before the record, whose rows cuRAND
        drew). A DataFrame X is read by the checkpoint's column names (``model.data_columns``, kept: a resume records
        none, it continues the run), as a fit reads one: the same columns in another order resume the same run, one
        missing is refused by name, and columns read by position though one side has names are warned of (see
        ``MLP.predict``). On the CPU the result is bit-identical to a run that was never interrupted.
        ``distributed=True`` resumes data parallel (every rank loads this file) on any number of ranks that divides
        the run's global batch; without it a data-parallel run continues in one process at its global batch (under
        a launcher of several processes, each process then trains all of it: warned once, by rank 0, unless
        ``distributed=False`` is passed).

        ``verbose`` and ``handle_interrupt`` are this call's, with fit's defaults, not the run's: the checkpoint
        records neither (no result depends on them), so a script that fit with ``verbose=False`` passes it here
        too; with ``verbose=True`` a run fit on a terminal (a bar) and resumed into a log shows lines there.

        An Ensemble's run resumes the same way on the same (X, Y) (a bootstrapped run redraws its
        members' resamples from the seed): frozen and diverged members stay frozen, each member's early
        stopping continues, and the result is bit-identical on the CPU. ``distributed=True`` resumes it
        data parallel as one model's (a bootstrapped run too); a run on a data source resumes on that
        source, in one process or data parallel (each rank reading its shards, as one model's run does).

        A run trained in precision "tf32" or "bf16" resumes in it on a GPU; loaded on the CPU (where it
        loads in float32, to predict) it is refused before anything trains: resume it on a GPU.

        A Checkpoint resumes once: its model and optimizer then train on (they are the run's), so a second
        ``resume`` of the same object (after a Ctrl-C, or to extend the run) is refused; load the file again.
        A resume refused before training (other data, too few epochs) may be called again.
        """
        if self.optimizer is None:
            raise CheckpointError(f"{self.path} holds a model only (gpunn.save); it cannot resume training")
        if self.__dict__.get("_resumed"):  # its model and optimizer went on past the position it holds
            raise ValueError(f"this Checkpoint of {self.path} was resumed already: its model and optimizer have "
                             "trained on from the position it was loaded at, which a second resume would start from "
                             "again. Load the file again (gpunn.load_checkpoint(path)) to continue the run")
        return resume_run(self, X, Y, epochs=epochs, validation_data=validation_data, callbacks=callbacks,
                          verbose=verbose, checkpoint=checkpoint, handle_interrupt=handle_interrupt,
                          distributed=distributed, sample_weight=sample_weight)


# each kind of model's fit options, which a resume does not take (the run's, from its checkpoint): its refusal shows
# one in the loaded model's fit, and says one that only the other kind's fit takes is that kind's (bootstrap: an
# Ensemble's), which the union of the two showed in a fit that refused it
_FIT_OPTIONS = {kind: fit_options(function)
                for kind, function in (("MLP", fit), ("Ensemble", ens_training.fit_ensemble))}


def _fit_options(checkpoint) -> dict:
    """_FIT_OPTIONS with the checkpoint's own kind first."""
    kind = "MLP" if _members(checkpoint.model) is None else "Ensemble"
    return {kind: _FIT_OPTIONS[kind], **_FIT_OPTIONS}


def _the_runs_own(checkpoint, key: str, value) -> bool:
    """Whether fit option ``key``, given to resume as ``value``, is the setting the run has (its checkpoint's): a
    script that passes its fit's options again (``resume(X, Y, batch_size=256)`` for a run of 256). A value that
    resolves otherwise, or one of an Ensemble's per-member settings, is not."""
    settings, members = checkpoint.settings, _members(checkpoint.model)
    if key == "standardize":  # the run's statistics, saved with its model (True: of X and Y; "inputs": of X)
        from ..data.base import standardize_option

        try:
            value = standardize_option(value)  # (numpy.True_ and 1 as fit takes them)
        except ValueError:  # not a standardize: refused, as fit refuses it
            return False
        scaler = checkpoint.model.standardizer
        if value is False or scaler is None:
            return value is False and scaler is None
        return scaler.scales_targets == (value is True)
    if settings is None:
        return False
    if key == "shuffle":  # as fit takes it (flag: a NumPy bool, 0 or 1 too)
        try:
            return flag(value, "shuffle") == settings.shuffle
        except TypeError:  # not a flag: refused, as fit refuses it
            return False
    if value is None and key in _NONE_KEEPS:  # fit's "not given": the optimizer's own rate (or an Ensemble's own
        return key == "lr" or members is not None  # hyperparameters) go on, as fit(optimizer=opt, lr=None) keeps opt's
    if isinstance(value, (bool, numpy.bool_)):  # a seed or batch size of True is no number of the run's
        return False
    if key == "batch_size":  # None: full-batch, the training rows; a size over them trained on them all
        return settings.ranks == 1 and (value is None and settings.batch_size == settings.train_rows or
                                        isinstance(value, numbers.Integral) and value > 0 and
                                        min(int(value), settings.train_rows) == settings.batch_size)
    if key == "validation_fraction":  # as fit records it: None and 0 alike (no hold-out), numpy.float32(0.2) as 0.2
        try:
            return validation_share(value) == settings.validation_fraction
        except ValueError:  # not a share: refused, as fit refuses it
            return False
    if key == "seed":  # a seed of 4.0 is refused by fit, as here
        if value is None:  # fit's default: a source's own seed (its config is checked by the resume), else the model's
            on_a_source = (checkpoint.training.get("source") or {}).get("kind") not in (None, *ARRAY_KINDS)
            return on_a_source or settings.seed == (checkpoint.model.seed if members is None else
                                                    checkpoint.model.seeds[0])
        return isinstance(value, numbers.Integral) and value == settings.seed
    if key == "schedule":
        try:  # (None: fit's "constant")
            return (value is None or isinstance(value, (str, Schedule))) and make_schedule(value) == settings.schedule
        except ValueError:  # no schedule ("cosin", "exponential" without its gamma): the refusal says so
            return False
    if key == "optimizer":  # a name (None: fit's "adam"): an object of one's own would be dropped for the run's
        return members is None and (value is None or isinstance(value, str)) and \
            (value or "adam").lower() == checkpoint.optimizer.name
    if key == "lr":
        return (members is None and isinstance(value, numbers.Real) and
                float(value) == float(checkpoint.optimizer.lr))
    return False


def _taking_the_runs_own(resume):
    """``resume`` taking fit's options at the run's own values, as ``gpunn train --resume --batch-size 256`` takes
    them (each is left to the checkpoint); another value is refused by the resume's keyword check, showing the fit
    that trains on with it."""
    @functools.wraps(resume)
    def checked(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (out of tracebacks: gpunn/hints.py's keywords_checked)
        kwargs = {key: value for key, value in kwargs.items()
                  if not (key in _RUN_OPTIONS and _the_runs_own(self, key, value))}
        return resume(self, *args, **kwargs)
    return checked


_RUN_OPTIONS = ("batch_size", "lr", "optimizer", "schedule", "shuffle", "seed", "validation_fraction", "standardize",
                "weight_decay", "momentum", "beta1", "beta2")
_NONE_KEEPS = ("lr", "weight_decay", "momentum", "beta1", "beta2")  # fit_ensemble's last four: None or refused
Checkpoint.resume = _taking_the_runs_own(keywords_checked(Checkpoint.resume, "Checkpoint.resume", _fit_options,
                                                          unexpected_resume_keyword))


def load_checkpoint(path, device="auto") -> Checkpoint:
    """Load a checkpoint with its training state onto ``device``; see :class:`Checkpoint`."""
    meta, arrays = read(file_name(path, "gpunn.load_checkpoint(path)"))
    model = _build_model(meta, arrays, device)
    optimizer = None
    if meta.get("kind") == "training":
        opt_meta = meta["optimizer"]
        members = _members(model)
        optimizer = _optimizer_from_meta(opt_meta, members, model.xp)
        optimizer.steps = opt_meta["steps"]
        with model.backend.use():
            for name in optimizer.state_names():
                state = model.xp.asarray(arrays[f"optimizer.{name}"])
                optimizer.state[name] = state if members is None else state.reshape(members, -1)
            optimizer.bind(model.params, model.ops)
        model.optimizer = optimizer
    loaded = Checkpoint(os.fspath(path), model, optimizer, meta, arrays)
    if optimizer is not None and _members(model) is not None:
        # an Ensemble's run so far, as its fit leaves it (ens.history): best() and best_index() rank by it, where
        # they said it had none (its best_epoch and best are set when a fit or resume ends)
        model.history = loaded.history
        model.history.weights_epoch = _weights_epochs(model.history, model.n_models, loaded.training)
    return loaded


def _weights_epochs(history, n_models, training):
    """The epoch whose weights each member of the saved ensemble holds (EnsembleHistory.weights_epoch), from its
    early stopping's saved state: a run's last checkpoint written after its best weights were put back keeps the
    weights reached beside them (``last_params``). A checkpoint written part-way through an epoch (an interrupt's)
    holds the weights of its steps so far: None for each member that trained in it."""
    partial = training.get("position", {}).get("batch", 0) > 0
    for entry in training.get("callbacks", []):
        if entry.get("class") == "MemberEarlyStopping" and isinstance(entry.get("state"), dict):
            state = entry["state"]
            return ens_training.weights_epochs(history, n_models, state.get("stopped_epoch"), state.get("best_epoch"),
                                               restored="last_params" in entry.get("arrays", []), partial=partial)
    return ens_training.weights_epochs(history, n_models, partial=partial)
