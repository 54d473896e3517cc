"""Training an Ensemble: per-member optimizer settings, validation, early stopping, the loop.

The loop is :func:`gpunn.training.loop.train` with the Ensemble as its Trainable (``train_step`` returns
the K members' sums of squared errors) and the same :class:`ArraySource` (so every member sees the
batches one MLP would see with the same ``seed``); the K losses are read back in one transfer per
epoch. What differs per member lives here:
- :class:`EnsembleOptimizer`: SGD/momentum/Nesterov/Adam/AdamW whose lr, weight decay, momentum
  and betas may differ per member (each member's settings are checked as one model's would be);
- :class:`EnsembleEvaluator`: validation MSE, MAE and R² of every member, one host read;
- :class:`MemberEarlyStopping`: early stopping per member; a stopped member is frozen (its
  parameters and optimizer state no longer change) and, if asked, restored to its best epoch.
A member whose loss becomes NaN or infinite is frozen and reported (``history.diverged``); the
fit raises TrainingDiverged only when every member has diverged.

Checkpoints: ``gpunn.ModelCheckpoint`` in ``callbacks`` writes the whole run (gpunn.checkpoint: the
members' parameters and optimizer state, the frozen members, MemberEarlyStopping's state, the K
partial losses, the history); ``gpunn.load_checkpoint(path).resume(X, Y)`` continues it through
:func:`run_ensemble`, bit for bit on the CPU.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
import warnings

import numpy

from ..backend import backend_of, host_array, user_stacklevel
from ..checks import (flag, held_warnings, member_index, non_negative_int, per_member, positive_int,
                      refuse_a_file_to_fit, seed_int, validation_share, verbosity)
from ..metrics import VALIDATION_KEYS, RegressionEvaluator, SourceEvaluator, by_member
from ..ops import ensemble_ops_for
from ..ops.fit_threads import member_blas_threads
from ..ops.member_rates import (ACTIVE, BETA1, BETA2, CLIP_NORM, CLIP_VALUE, HYPER_FIELDS, LR, MOMENTUM, WEIGHT_DECAY,
                                MemberRates)
from ..optim import CLIP_OPTIONS, Adam, Optimizer, check_lr, make_optimizer, make_schedule, options_of
from ..rng import DeviceRNG, generator
from ..sample_weights import checked_weights, mean_one
from .callback_protocol import Callback, writes_checkpoints
from .callbacks import order_callbacks
from .fit import (checked_arrays, is_weighted, not_data_parallel, refuse_a_weighted_source,
                  refuse_standardize_with_a_source, refuse_weights_where_unweighted, rows_trained_on, split_validation,
                  statistics_kept_before_a_step, statistics_kept_on_refusal, weighted_rows, weights_trained_on)
from .history import History
from .protocols import is_source
from .loop import (DIVERGENCE_FACTOR, Trainer, TrainingDiverged, ValidationNotFinite, agreed, not_finite_validation,
                   train)
from .monitoring import (EarlyStopping, ReduceLROnPlateau, check_logged, checked_monitoring, default_monitor, improves,
                         missing_monitor, monitor_mode)
from .progress import ProgressBar, four_digits, lines_for
from .sources import ArraySource
from .state import FitSettings, TrainState


class MembersDivergedWarning(RuntimeWarning):
    """Members of an ensemble diverged in a fit and are frozen; the others go on (the command line shows it as a
    ``note:`` line). ``members`` (their indices), ``epoch`` (from 1) and ``how`` are kept, for ``renamed``."""

    def __init__(self, members, epoch, how, names=None):
        if names:  # "member 3 (lr 100, ...) diverged ... and is frozen"
            one = len(members) == 1
            said = f"member{'' if one else 's'} " + ", ".join(f"{k} ({name})" for k, name in zip(members, names))
            verb = "is" if one else "are"
        else:
            said, verb = f"members {list(members)}", "are"
        super().__init__(f"{said} diverged in epoch {epoch} ({how}) and {verb} frozen; the others go on")
        self.members, self.epoch, self.how, self.names = list(members), epoch, how, names

    def __reduce__(self):  # (an exception pickles as its class called with its args: here, the message alone)
        return type(self), (self.members, self.epoch, self.how, self.names)

    def renamed(self, number, name) -> "MembersDivergedWarning":
        """The same warning of member k called ``number(k)`` and described by ``name(k)`` (a sweep's grid)."""
        return MembersDivergedWarning([number(k) for k in self.members], self.epoch, self.how,
                                      [name(k) for k in self.members])


# (number, name) while members_named holds in this context: how a fit's MembersDivergedWarning names members
_member_naming = contextvars.ContextVar("gpunn_member_naming", default=None)


def _shared_weights(model, sample_weight, rows):
    """``sample_weight``, refused where it holds one vector per member (shape K x rows): every member weighs the rows
    by the same weights (the check's "must be 1-D" said nothing of the members)."""
    if sample_weight is not None and numpy.shape(sample_weight) == (model.n_models, rows) and rows != model.n_models:
        raise ValueError(f"sample_weight of shape {numpy.shape(sample_weight)}, one vector of weights per member, is "
                         "not taken: every member weighs the rows by the same weights, one a row (member k with its "
                         "own: gpunn.MLP(sizes, seed=seed + k).fit(X, Y, sample_weight=w_k); bootstrap=True gives "
                         "each member its own resample of the rows)")
    return sample_weight


@contextlib.contextmanager
def members_named(number, name):
    """While it holds, an ensemble's fit in this thread says a diverged member k as ``number(k)``, described by
    ``name(k)`` (MembersDivergedWarning.renamed): gpunn sweep's grid numbers and settings. The warning is made
    so, before Python's filters see it: renamed as it was shown (warnings.showwarning swapped, for the whole
    process), a split grid's second "members [0] diverged in epoch 1" was the first's text again, which the
    default filter shows once, so its note was never printed."""
    token = _member_naming.set((number, name))
    try:
        yield
    finally:
        _member_naming.reset(token)


class EnsembleHistory(History):
    """Per-epoch lists as :class:`gpunn.History`; per-member entries (loss, lr, val_*) are lists of K.

    After fit: ``best_epoch`` and ``best`` (per member, lists of K, as one model's History has them: the epoch
    and value of the best monitored result, early stopping's monitor, else the least val_loss where validated;
    None without either), ``stopped_early`` (per member), ``diverged`` (indices of members whose loss became
    NaN or infinite) and ``interrupted``. In the epochs after a member stopped early its entries are those of the
    weights it stopped with (its val_* repeat the epoch it stopped in's); ``member(k)`` ends at that epoch.
    ``weights_epoch`` (per member, from 1): the epoch whose weights the member ends with, its best epoch where early
    stopping restored it, else the epoch it stopped in or the last; what ``Ensemble.best()`` ranks it by. None for
    a member that holds the weights of an epoch an interrupt cut short (``interrupted`` with ``cut_batch`` of its
    batches run), which no epoch's validation scored; ``best()`` ranks it by the last epoch it finished.
    """

    diverged = ()
    stopped_epoch = None
    weights_epoch = None

    def member(self, k) -> dict:
        """Member k's history as one model's: {name: per-epoch list}, up to the epoch it stopped at."""
        # the member count: from the losses, or, where no epoch finished, the per-member flags a fit sets (an
        # index out of range said "list index out of range")
        members = len(self["loss"][0]) if self.get("loss") else (
            len(self.stopped_early) if isinstance(self.stopped_early, list) else None)
        if members is not None:
            k = member_index(k, members)
        last = self.stopped_epoch[k] if self.stopped_epoch and self.stopped_epoch[k] else None
        return {name: [v[k] if isinstance(v, list) else v for v in values][:last] for name, values in self.items()}


class EnsembleOptimizer:
    """One optimizer of the gpunn.optim family for K members, with per-member settings.

    ``optimizer`` is a name or an Optimizer whose settings are the default for every member; ``lr``,
    ``momentum``, ``weight_decay``, ``beta1``, ``beta2``, ``clip_norm``, ``clip_value`` (a value, or K values)
    replace them. Each member's settings are checked as one model's are (the error names the member). A clip given
    replaces the optimizer's clip of the other kind (clip_value=0.5 with Adam(clip_norm=1.0): by value), and None in
    a list of clips leaves that member unclipped.
    """

    def __init__(self, optimizer, n_models, xp, *, lr=None, momentum=None, weight_decay=None, beta1=None,
                 beta2=None, clip_norm=None, clip_value=None):
        if isinstance(optimizer, Optimizer):
            # its config, less what its class does not take (Nesterov records nesterov=True, which it implies)
            template, name = optimizer.config(), optimizer.name
            template = {key: value for key, value in template.items() if key in options_of(type(optimizer))}
        else:
            template, name = {}, optimizer
        if clip_norm is not None or clip_value is not None:  # the given kind of clip, not the optimizer's other kind
            template = {key: value for key, value in template.items() if key not in CLIP_OPTIONS}
        given = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "beta1": beta1, "beta2": beta2,
                 "clip_norm": clip_norm, "clip_value": clip_value}
        lists = {key: per_member(value if value is not None else template.get(key), n_models, key)
                 for key, value in given.items()}
        for key, value in given.items():  # (None in a list of the members' values fell back to the class default,
            # not to the Optimizer given's: lr=[1e-3, None] with SGD(lr=0.05) trained member 1 at 0.01; a clip's None
            # is its default, none)
            missing = [k for k, v in enumerate(lists[key]) if v is None] if value is not None and key not in CLIP_OPTIONS \
                else []
            if missing:
                raise ValueError(f"{key} lists None for member {missing[0]}: a list gives each member its value; leave "
                                 f"{key} out for the optimizer's own, for every member")
        shared = {key: template[key] for key in ("nesterov", "eps") if key in template}
        members = []
        for k in range(n_models):
            try:
                members.append(make_optimizer(name, **shared, **{key: values[k] for key, values in lists.items()}))
            except ValueError as exc:
                raise ValueError(f"member {k}: {exc}" if n_models > 1 else str(exc)) from None
        self._set_members(members, xp)

    @classmethod
    def from_members(cls, members, xp, frozen=()):
        """The ensemble optimizer of these K member Optimizers (one kind, one ``nesterov`` and ``eps``), with
        the members in ``frozen`` frozen: how a checkpoint's ``config()`` is rebuilt."""
        members = list(members)
        if not members:
            raise ValueError("an ensemble optimizer needs at least one member")
        kinds = {(type(opt), bool(getattr(opt, "nesterov", False)), float(getattr(opt, "eps", 0.0))) for opt in members}
        if len(kinds) != 1:
            raise ValueError("every member must use one optimizer kind with one nesterov flag and eps")
        self = cls.__new__(cls)
        self._set_members(members, xp)
        frozen = list(frozen)
        if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(members) for k in frozen):
            raise ValueError(f"frozen members {frozen!r} are not indices of {len(members)} members")
        if frozen:
            self.freeze(frozen)
        return self

    def _set_members(self, members, xp):
        n_models = len(members)
        self.members = members
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
            for key, field in zip(CLIP_OPTIONS, (CLIP_NORM, CLIP_VALUE)):  # 0.0: none
                table[k, field] = getattr(opt, key, None) or 0.0
        self.rates = MemberRates(xp, table)
        self.lr = numpy.array([opt.lr for opt in self.members])  # the base rates, before any schedule
        self.n_models = n_models
        self.steps = 0
        self.state = {}
        self._rows = None  # (params, grads, their (K, P) views): _member_rows
        self._params = None  # the buffer it was last bound to

    def bind(self, params, ops):
        """State for the flat buffer of K members (gpunn.training.loop.train calls this). Bound again to the same
        buffer (a later fit of the same ensemble given this optimizer), its moments, step count and frozen members
        go on; bound to another buffer, it starts afresh, as one model's Optimizer does. State given before the first
        bind (a checkpoint's) is kept."""
        if self._params is not None and self._params is not params:
            for moment in self.state.values():  # in place: a CUDA graph captured with them keeps working
                moment.fill(0)
            self.steps = 0
            self.rates.update(ACTIVE, numpy.ones(self.n_models))
        self._params = params
        self.member_ops = ensemble_ops_for(ops)
        shape = (self.n_models, params.size // self.n_models)
        for key in self.state_names():
            if key not in self.state or self.state[key].shape != shape:
                self.state[key] = ops.xp.zeros(shape, params.dtype)
        return self

    def state_names(self):
        """The (K, P) state arrays this optimizer keeps: Adam's moments, the velocity of momentum."""
        return ("m", "v") if self.is_adam else (("velocity",) if self.rates.column(MOMENTUM).any() else ())

    @property
    def frozen(self) -> list:
        """Indices of the members that no longer train (stopped early or diverged)."""
        return [int(k) for k in numpy.flatnonzero(~self.active)]

    def freeze(self, members):
        active = self.rates.column(ACTIVE).copy()
        active[list(members)] = 0.0
        self.rates.update(ACTIVE, active)

    @property
    def active(self):
        return self.rates.active

    def set_rates(self, lr):
        """The step's K learning rates into the members' table (a change: once an epoch at most, or every step with a
        per-step schedule)."""
        # numpy.array_equal's answer for a column of floats (NaN unequal, -0.0 == 0.0, another shape unequal) from
        # Python's list equality: asked every step, array_equal took ~1.4 us of a 42 us tiny-x4 step
        if self.rates.column(LR).tolist() != numpy.asarray(lr).tolist():
            self.rates.update(LR, lr)

    def _member_rows(self, params, grads):
        """The (K, P) views of the flat ``params`` and ``grads``: the same view objects while they are the same
        arrays, so that the member ops' update made for them is kept (CpuEnsembleOps.adam_members)."""
        rows = self._rows
        if rows is None or rows[0] is not params or rows[1] is not grads:
            rows = self._rows = (params, grads, params.reshape(self.n_models, -1), grads.reshape(self.n_models, -1))
        return rows[2], rows[3]

    def step(self, params, grads, lr):
        """One step of every active member; ``lr`` holds the K members' rates for this epoch."""
        self.set_rates(lr)
        self.steps += 1
        w, g = self._member_rows(params, grads)
        s = self.state
        if self.is_adam:
            self.member_ops.adam_step(w, g, s["m"], s["v"], self.rates, self.eps, self.steps, self.decoupled)
        else:
            self.member_ops.sgd_step(w, g, s.get("velocity"), self.rates, self.nesterov)

    def member_update(self, params, grads, lr):
        """step() as a function of a slice of the members, which a training step in member groups runs on each
        group's thread after its backward pass (gpunn.Ensemble.train_step_and_update), or None where there is no
        such form (SGD, the generic ops): then step() runs. Counts the step and takes this epoch's rates now."""
        if not self.is_adam:
            return None
        w, g = self._member_rows(params, grads)
        s = self.state
        self.set_rates(lr)
        members = self.member_ops.adam_members(w, g, s["m"], s["v"], self.rates, self.eps, self.steps + 1,
                                               self.decoupled)
        if members is not None:
            self.steps += 1
        return members

    def graph_update(self, params, grads, state):
        """step() for CUDA-graph replay (gpunn.training.graph): the step count in ``state[0]``, advanced on
        the device; the rates from the members' table, which the host rewrites in place (set_rates)."""
        self.member_ops.ops.optimizer_tick(state, 0.0, 0.0)
        w, g = params.reshape(self.n_models, -1), grads.reshape(self.n_models, -1)
        s = self.state
        if self.is_adam:
            self.member_ops.adam_step_dev(w, g, s["m"], s["v"], self.rates, self.eps, state, self.decoupled)
        else:
            self.member_ops.sgd_step(w, g, s.get("velocity"), self.rates, self.nesterov)

    def config(self) -> dict:
        return {"name": self.name, "members": [opt.config() for opt in self.members]}

    def __repr__(self) -> str:
        """The kind, each setting (one value where every member has it, else the K values; clip_norm and clip_value
        where some member clips), the steps taken and any
        frozen members: what ``ens.optimizer`` and a loaded checkpoint's optimizer show, as one model's does."""
        configs = [opt.config() for opt in self.members]
        settings = []
        for key in options_of(type(self.members[0])):
            values = [config.get(key) for config in configs]  # (a clip is in the configs of the members it clips)
            if key in configs[0] if key not in CLIP_OPTIONS else values.count(None) < len(values):
                settings.append(f"{key}={values[0] if values.count(values[0]) == len(values) else values!r}")
        frozen = f", frozen={self.frozen}" if self.frozen else ""
        return (f"EnsembleOptimizer({self.name!r}, n_models={self.n_models}, {', '.join(settings)}, "
                f"steps={self.steps}{frozen})")


class EnsembleEvaluator(RegressionEvaluator):
    """Validation MSE, MAE and R² of every member on one fixed (X, Y): lists of K, one host read. Rows go
    through in the ensemble's ``chunk_rows`` per member, as its memory check counts them."""

    def __init__(self, model, X, Y, chunk_rows=None, rows_in=("X_val", None), weights=None):
        super().__init__(model, X, Y, model.chunk_rows if chunk_rows is None else chunk_rows, rows_in, weights)



class MemberEarlyStopping(Callback):
    """EarlyStopping (gpunn.training.monitoring) for each member on its own; a stopped member is frozen.

    The same rule per member, by the same functions (gpunn.training.monitoring: ``default_monitor``,
    ``monitor_mode`` for mode "auto", ``improves``): an improvement is a finite value better than the best by more
    than ``min_delta``; ``patience`` epochs without one stop the member; with
    ``restore_best_weights`` it ends with its best epoch's parameters (kept in one device copy
    of the flat buffer). Training ends when every member has stopped. A checkpoint written after that
    restore (the run's last) also keeps the weights the members had reached (``last_params``), which a
    resume that trains further (``epochs=`` raised) continues from, as the run started with that total would.
    """

    def __init__(self, monitor=None, patience=10, min_delta=0.0, mode="auto", restore_best_weights=True):
        self.monitor, self.min_delta, self.mode = checked_monitoring(monitor, min_delta, mode)  # EarlyStopping's
        self.patience = non_negative_int(patience, "patience")
        self.restore_best_weights = flag(restore_best_weights, "restore_best_weights")
        self._restored = None  # (state, host best_params, host last_params) from a checkpoint, for on_train_begin
        self.last_params = None  # the members' weights when on_train_end put the best ones back

    def get_config(self):
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "mode": self.mode, "restore_best_weights": self.restore_best_weights}

    def on_train_begin(self, trainer):
        model = trainer.model
        K = model.n_models
        self._monitor = self.monitor or default_monitor(trainer.validation is not None)
        check_logged(self._monitor, trainer, self, "early stopping")
        self._mode = monitor_mode(self._monitor, self.mode)
        self.best = [None] * K
        self.best_epoch = [None] * K
        self.wait = [0] * K
        self.stopped_epoch = [None] * K
        self.best_params = self.last_params = None
        if self._restored is not None:  # a resumed run: each member's progress as the checkpoint left it
            state, best_params, last_params = self._restored
            self._restored = None
            for key in ("best", "best_epoch", "wait", "stopped_epoch"):
                values = state[key]
                if not isinstance(values, list) or len(values) != K:
                    raise ValueError(f"MemberEarlyStopping state {key!r} should list {K} members, got {values!r}")
                setattr(self, key, list(values))
            if best_params is not None:
                self.best_params = model.xp.asarray(best_params).reshape(model.member_params.shape)
            if last_params is not None:  # the run's last checkpoint holds the best weights: go on from those reached
                model.member_params[...] = model.xp.asarray(last_params).reshape(model.member_params.shape)
        if not trainer.optimizer.active.any():  # resuming a run whose members had all stopped: it is over
            trainer.stop = True

    def state_dict(self):
        """Each member's best value and epoch, patience count and stopping epoch; ``best_params``: the
        flat (K * P) buffer of the members' best weights."""
        arrays = {}
        if self.best_params is not None:
            arrays["best_params"] = host_array(self.best_params).reshape(-1)
        if self.last_params is not None:
            arrays["last_params"] = host_array(self.last_params).reshape(-1)
        return {"best": list(self.best), "best_epoch": list(self.best_epoch), "wait": list(self.wait),
                "stopped_epoch": list(self.stopped_epoch)}, arrays

    def load_state_dict(self, state, arrays):
        missing = [key for key in ("best", "best_epoch", "wait", "stopped_epoch") if key not in state]
        if missing:
            raise KeyError(f"state lacks {missing}")
        self._restored = (state, arrays.get("best_params"), arrays.get("last_params"))  # (last: absent before it)

    def on_epoch_end(self, trainer, epoch, logs):
        if self._monitor not in logs:
            raise ValueError(missing_monitor("early stopping", self._monitor, logs))
        model, active = trainer.model, trainer.optimizer.active
        improved, stopping = numpy.zeros(model.n_models, bool), []
        for k, value in enumerate(logs[self._monitor]):
            if not active[k]:
                continue
            if improves(value, self.best[k], self._mode, self.min_delta):
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
        diverged = getattr(trainer, "diverged", False)  # every member diverged: each goes back to its best epoch
        if trainer.interrupted or (trainer.failed and not diverged) or not self.restore_best_weights \
                or self.best_params is None:
            return
        last_epoch = history["epoch"][-1] if history.get("epoch") else None
        restore = [k for k in range(trainer.model.n_models) if self.best_epoch[k] is not None
                   and (diverged or self.best_epoch[k] != (self.stopped_epoch[k] or last_epoch))]
        if restore:
            history.weights_epoch = weights_epochs(history, trainer.model.n_models, list(self.stopped_epoch),
                                                   list(self.best_epoch), restored=True)
            if not diverged and writes_checkpoints(trainer):  # for the checkpoint written now: a resume that
                self.last_params = trainer.model.member_params.copy()  # trains further goes on from them
            rows = trainer.model.xp.asarray(restore)
            trainer.model.member_params[rows] = self.best_params[rows]
            # a diverged member back at its best epoch holds that epoch's weights, finite and validated: it
            # counts in the mean and best() again (history.diverged still lists it)
            trainer.model.diverged = [k for k in trainer.model.diverged if k not in restore]


class EnsembleProgressBar(ProgressBar):
    """The progress of an ensemble: the best loss (and validation loss) of the members that trained in the epoch,
    member-samples/s and the members still training. A member frozen before the epoch (stopped early, diverged)
    is left out: its values stay those of the epoch it stopped in, which held the line still while the others
    trained, at a value that was neither its best nor the others'."""

    _trained = None  # the members training as the epoch began (a host bool per member)

    def default_label(self, trainer) -> str:
        return f"ensemble of {trainer.model.n_models}"

    def on_epoch_begin(self, trainer, epoch):
        super().on_epoch_begin(trainer, epoch)
        self._trained = trainer.optimizer.active.copy()

    def _best(self, values):
        values = numpy.asarray(values, "float64")
        if self._trained is not None and self._trained.any():
            values = values[self._trained]
        values = values[~numpy.isnan(values)]  # (the members that trained all NaN: "nan", not nanmin's warning)
        return four_digits(values.min() if values.size else numpy.nan)

    def shown(self, trainer, logs) -> dict:
        shown = {"best loss": self._best(logs['loss']), "member-samples/s": f"{logs['samples_per_s']:,.0f}"}
        if "val_loss" in logs:
            shown["best val_loss"] = self._best(logs['val_loss'])
        shown["training"] = f"{int(trainer.optimizer.active.sum())}/{trainer.model.n_models}"
        return shown


class BootstrapSource(ArraySource):
    """ArraySource whose member k trains on its own resample of the rows: batches are (K, b, n) stacks.

    Member k's rows are drawn with replacement from the stream (seed, "bootstrap", k); each epoch all
    members take the same shuffled positions (the single-model permutation of (seed, "shuffle", e)), so
    member k sees exactly the batches one model trained on X[rows_k] would see. ``cut`` (a data-parallel
    rank's, gpunn.distributed.PieceOfEachBatch): the [lo, hi) positions of a batch of M to gather, so
    that each rank gathers only its piece of every member's batch.

    ``weights`` (host float64, one a row: gpunn.sample_weights), with a weighted Y (``weighted``): each member's
    resample is a set of rows weighed on its own, its rows' weights scaled to mean 1 over it, as one model's fit on
    X[rows_k] with the weights w[rows_k] scales them; each batch's weights' column is its member's (``member_weights``,
    (K, rows) in Y's dtype, by position in the resample).
    """

    cuts = True  # batches() takes cut=

    def __init__(self, X, Y, backend, members, *, seed=0, shuffle=True, weighted=False, weights=None):
        super().__init__(X, Y, backend, seed=seed, shuffle=shuffle, weighted=weighted)
        self.members = int(members)
        self.rows_of = backend.xp.stack([bootstrap_rows(backend, seed, k, self.rows) for k in range(members)])
        self.member_weights = None
        if weighted:
            rows_of = backend.to_host(self.rows_of)
            self.member_weights = backend.xp.asarray(numpy.stack([
                mean_one(weights[rows], f"member {k}'s bootstrap resample's rows") for k, rows in enumerate(rows_of)]),
                dtype=Y.dtype)

    def config(self) -> dict:
        return {**super().config(), "kind": "bootstrap", "members": self.members,
                "rng": generator(self.backend)}  # what drew the resamples: a resume compares it

    def batches(self, epoch, batch_size, first_batch=0, cut=None):
        return self.backend.made_on_device(self._batches(epoch, batch_size, first_batch, cut))

    def _batches(self, epoch, batch_size, first_batch, cut=None):
        xp, rows, weights = self.backend.xp, self.rows_of, self.member_weights
        if self.shuffle:
            order = DeviceRNG(self.backend, self.seed, "shuffle", epoch).permutation(self.rows)
            rows, weights = rows[:, order], (None if weights is None else weights[:, order])
        for start in range(first_batch * batch_size, self.rows, batch_size):
            lo, hi = start, min(start + batch_size, self.rows)
            if cut is not None:
                first, last = cut(hi - lo)
                lo, hi = start + first, start + last
            Y = xp.take(self.Y, rows[:, lo:hi], axis=0)
            if weights is not None:
                Y[..., -1] = weights[:, lo:hi]
            yield xp.take(self.X, rows[:, lo:hi], axis=0), Y


class EnsembleTrainer(Trainer):
    """The loop's Trainer with K losses per epoch: a member whose loss is NaN, infinite or past
    DIVERGENCE_FACTOR times the run's reference loss (gpunn.training.loop.reference_loss) is frozen; TrainingDiverged only when all are."""

    def epoch_logs(self, epoch, total, rows, seen, lr, t0) -> dict:
        model, opt = self.model, self.optimizer
        losses = model.backend.to_host(total) / rows  # the one host synchronisation of the epoch
        seconds = time.perf_counter() - t0
        if not numpy.isfinite(losses[opt.active]).all():  # (a frozen member's NaN: not news)
            self.refuse_bad_data()
        ref = self.state.reference_loss
        with numpy.errstate(invalid="ignore"):
            grew = losses > DIVERGENCE_FACTOR * ref if ref is not None and ref > 0 else numpy.zeros(losses.shape, bool)
        bad = [int(k) for k in numpy.flatnonzero(~numpy.isfinite(losses) | grew) if opt.active[k]]
        if bad:
            shown = f" {ref:.4g}" if ref is not None and numpy.isfinite(ref) else ""
            self._freeze_diverged(bad, epoch, "loss NaN, infinite or exploding", lambda: (
                f"the training loss of every member became NaN, infinite or over {DIVERGENCE_FACTOR:,g} times its "
                f"reference{shown} (the first batch's loss, or the loss of predicting zero if larger; by epoch "
                f"{epoch + 1}); lower the learning rates, or standardize the targets and inputs (fit(X, Y, "
                "standardize=True), a gpunn.data source's standardize=True, gpunn sweep --standardize)"))
        return {"epoch": epoch + 1, "loss": losses.tolist(), "lr": [float(x) for x in lr], "time_s": seconds,
                "samples_per_s": model.n_models * seen / seconds if seconds > 0 else float("inf")}

    def _freeze_diverged(self, bad, epoch, how, every):
        """Members ``bad`` diverged in ``epoch`` (``how``): listed in the history (and ``model.diverged``) and
        frozen, with a RuntimeWarning; TrainingDiverged (``every()``'s words) when no member is left."""
        model, opt, history = self.model, self.optimizer, self.history
        history.diverged = sorted(set(history.diverged) | set(bad))
        model.diverged = list(history.diverged)  # (set here too: a fit whose members all diverge raises)
        opt.freeze(bad)
        if len(history.diverged) == model.n_models:
            raise agreed(TrainingDiverged(every()))
        warning, naming = MembersDivergedWarning(bad, epoch + 1, how), _member_naming.get()
        warnings.warn(warning.renamed(*naming) if naming else warning, stacklevel=user_stacklevel())
        if not opt.active.any():
            self.stop = True

    def check_validation(self, epoch, logs):
        """The loop's check of the validation metrics, per member still training (a frozen member's NaN is not
        news). Where a member still training scored the rows finitely, the members that did not diverged (their
        weights NaN or infinite in the epoch's last steps, or their outputs past the dtype where the others' are
        not): frozen, as by their training loss (TrainingDiverged when none is left). Where none did and a member's
        weights are finite, the rows overflow every member: ValidationNotFinite."""
        model, active = self.model, self.optimizer.active
        bad = numpy.zeros(model.n_models, bool)
        for key in VALIDATION_KEYS:
            if key in logs:
                bad |= ~numpy.isfinite(numpy.asarray(logs[key], "float64"))
        bad &= active
        if not bad.any():
            return
        finite = model.backend.to_host(model.xp.isfinite(model.member_params).all(axis=1))  # (this path only)

        def every():
            return (f"the weights of every member became NaN or infinite in the last steps of epoch {epoch + 1} (its "
                    "validation metrics are not finite); lower the learning rates, or standardize the targets and "
                    "inputs (fit(X, Y, standardize=True), a gpunn.data source's standardize=True, gpunn sweep "
                    "--standardize)")

        if (bad & ~finite).any():  # their weights: NaN or infinite
            self._freeze_diverged([int(k) for k in numpy.flatnonzero(bad & ~finite)], epoch,
                                  "weights NaN or infinite in its last steps", every)
        overflowed = [int(k) for k in numpy.flatnonzero(bad & finite)]
        if not overflowed:
            return
        if not (active & ~bad).any():  # no member scored the rows finitely
            metrics = {key: [logs[key][k] for k in overflowed] for key in VALIDATION_KEYS
                       if key in logs and not numpy.isfinite(numpy.asarray(logs[key], "float64")[overflowed]).all()}
            losses = ", ".join(f"{logs['loss'][k]:.4g}" for k in overflowed)
            places = self.not_finite_places()
            where = by_member({k: places[k] for k in overflowed if k in places})
            raise agreed(ValidationNotFinite(not_finite_validation(epoch, metrics, losses, model.dtype.name,
                                                                   f"members {overflowed}: their ", where)))
        self._freeze_diverged(overflowed, epoch, "validation metrics NaN or infinite, where the others' are finite",
                              every)


def bootstrap_rows(backend, seed, member, rows):
    """Member ``member``'s resample of ``rows`` training rows (with replacement), drawn on the device
    from the stream (seed, "bootstrap", member)."""
    u = DeviceRNG(backend, seed, "bootstrap", member).uniform((rows,), 0.0, 1.0, "float64")
    return backend.xp.minimum((u * rows).astype("int64"), rows - 1)


def member_callbacks(callbacks, verbose=False):
    """The callbacks of an ensemble run: each gpunn.EarlyStopping replaced by its per-member form, the
    ensemble's progress bar when ``verbose``; those that need one value per epoch refused by name."""
    out, show = [], verbosity(verbose)
    for cb in callbacks:
        if isinstance(cb, EarlyStopping):
            cb = MemberEarlyStopping(**cb.get_config())
        elif isinstance(cb, ReduceLROnPlateau):
            raise ValueError("ReduceLROnPlateau lowers one learning rate on one monitored value; an ensemble logs a "
                             "value per member and has no per-member plateau rule yet: use a schedule "
                             "(schedule='cosine', 'step', ...) or per-member lr")
        elif getattr(cb, "writes_checkpoint", False) and getattr(cb, "save_best_only", False):
            raise ValueError("ModelCheckpoint(save_best_only=True) keeps the epoch with the best monitored value; an "
                             "ensemble logs one per member: checkpoint every epoch (the default) and pick members "
                             "afterwards with ens.best()")
        out.append(cb)
    if show and not any(isinstance(cb, ProgressBar) for cb in out):
        out.append(EnsembleProgressBar(lines=lines_for(verbose)))
    return out


def ensemble_evaluator(model, evaluator):
    """A one-model validation evaluator (or None) made fit for ``model``'s K members: rows go through
    in the ensemble's ``chunk_rows`` per member, as its memory check counts them; weighted rows (a held-out
    fraction's, validation_data's third item: gpunn.sample_weights) keep their weights."""
    if isinstance(evaluator, SourceEvaluator):
        evaluator.chunk_rows = model.chunk_rows
        return evaluator
    return None if evaluator is None else EnsembleEvaluator(model, evaluator.X, evaluator.Y,
                                                            rows_in=evaluator.rows_in, weights=evaluator.weights)


def ensemble_source(model, X, Y, *, seed, shuffle, bootstrap, weights=None):
    """The training rows as the loop's data source: shared by all members, or a resample per member. A weighted Y's
    last column (gpunn.sample_weights) goes with its rows; in a member's resample, their ``weights`` (host float64,
    the training rows': ``weights_trained_on``) scaled over that resample (BootstrapSource)."""
    if bootstrap:
        return BootstrapSource(X, Y, model.backend, model.n_models, seed=seed, shuffle=shuffle,
                               weighted=is_weighted(model, Y), weights=weights)
    return ArraySource(X, Y, model.backend, seed=seed, shuffle=shuffle, weighted=is_weighted(model, Y))


def run_ensemble(model, source, optimizer, settings, state, *, callbacks, validation, hook=None,
                 handle_interrupt=True, dp=None) -> EnsembleHistory:
    """The loop for an Ensemble (:func:`gpunn.training.loop.train` with :class:`EnsembleTrainer`), from
    ``state`` (a fresh run or a checkpoint's): fit and a checkpoint's resume both end here."""

    def loop():
        return train(model, source, optimizer, settings, state, callbacks=callbacks, validation=validation, hook=hook,
                     handle_interrupt=handle_interrupt, trainer_class=EnsembleTrainer)

    model.check_fit_memory(settings.batch_size)  # (rows a step on this rank) before the optimizer binds its state
    model._forget_kept_steps()
    model.diverged = sorted(int(k) for k in getattr(state.history, "diverged", ()))  # this run's (a resume's: so far)
    with member_blas_threads(model.xp), weighted_rows(model, getattr(source, "weighted", False)):
        history = dp.run(loop) if dp is not None else loop()
    if not isinstance(history.stopped_early, list):  # per member, also without early stopping
        history.stopped_early = [False] * model.n_models
    if history.weights_epoch is None:  # (early stopping sets it where it restored; an interrupt restores none)
        history.weights_epoch = weights_epochs(history, model.n_models, history.stopped_epoch,
                                               partial=history.interrupted and history.cut_batch > 0)
    model.history = history
    return history


def weights_epochs(history, n_models, stopped_epoch=None, best_epoch=None, restored=False, partial=False):
    """Per member, the epoch (from 1) whose weights it ends a run with (``history.weights_epoch``): the best epoch
    where early stopping ``restored`` it (``best_epoch``, where that is not the epoch it stopped in or the last),
    else the epoch it stopped in (``stopped_epoch``), else the run's last; None where no epoch finished. Where the
    run was interrupted ``partial``-way through an epoch, None for each member that trained in it (not stopped
    early, not diverged): it holds the weights of that epoch's steps so far, as the checkpoint written then does,
    which no epoch's validation scored."""
    if not history.get("epoch"):
        return None
    last = history["epoch"][-1]
    stopped = stopped_epoch if isinstance(stopped_epoch, list) else [None] * n_models
    cut = set(range(n_models)) - set(getattr(history, "diverged", ())) if partial else ()
    reached = [None if e is None and k in cut else e or last for k, e in enumerate(stopped)]
    if not restored or not isinstance(best_epoch, list):
        return reached
    return [b if b is not None and b != e else e for b, e in zip(best_epoch, reached)]


def held_rows(history, n_models):
    """Per member, the row of ``history``'s per-epoch lists that scores the weights it holds: its
    ``weights_epoch``'s, the last row where that epoch is not among them (a member holding the weights of an epoch
    an interrupt cut short, None: the last epoch it finished, the nearest scored); None where the history has no
    ``weights_epoch`` (one made by hand). What ``Ensemble.best()`` ranks a member by (``gpunn sweep``'s table scores
    an interrupted member's weights by a pass of its own)."""
    held = getattr(history, "weights_epoch", None)
    if not isinstance(held, list) or len(held) != n_models:
        return None
    row = {epoch: i for i, epoch in enumerate(history["epoch"])}
    return [row.get(epoch, len(history["epoch"]) - 1) for epoch in held]


def ensemble_history(history, diverged=()) -> EnsembleHistory:
    """``history`` (a checkpoint's History of an ensemble run) as an EnsembleHistory, ``diverged`` restored."""
    out = EnsembleHistory(history)
    if diverged:  # else the class's empty default, as in a run that never diverged
        out.diverged = sorted(int(k) for k in diverged)
    return out


def continued(optimizer, model, *, lr=None, **settings) -> EnsembleOptimizer:
    """``optimizer`` (an EnsembleOptimizer: ``ens.optimizer``, the last fit's), checked for a fit of ``model`` that
    continues it. ``lr`` (one rate, or K) replaces its members' base rates, as one model's ``fit(optimizer=adam,
    lr=...)`` replaces the Adam's; its members' other settings are its own, so none of ``settings`` may be given."""
    given = [name for name, value in settings.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} with an ensemble's optimizer (ens.optimizer): it goes on with its "
                         "members' own settings (lr alone may be given); give a name or a gpunn Optimizer to set them")
    if optimizer.n_models != model.n_models:
        raise ValueError(f"the optimizer given holds {optimizer.n_models} members' settings; this ensemble has "
                         f"{model.n_models} members")
    if optimizer.rates.xp is not model.xp:
        raise ValueError("the optimizer given was made for an ensemble on another device")
    # its moments and members' table stay on the device they were made on (one xp for every GPU)
    held = (optimizer._params, *optimizer.state.values(), optimizer.rates.device_copy)
    elsewhere = {backend_of(array).device for array in held if array is not None} - {model.backend.device}
    if elsewhere:
        raise ValueError(f"the optimizer given was made for an ensemble on {min(elsewhere)}; this ensemble is on "
                         f"{model.backend.device}: give it a name or a gpunn Optimizer")
    if lr is not None:  # every rate checked before any is set
        rates = []
        for k, rate in enumerate(per_member(lr, model.n_models, "lr")):
            try:
                rates.append(check_lr(rate))
            except ValueError as exc:
                raise ValueError(f"member {k}: {exc}" if model.n_models > 1 else str(exc)) from None
        for member, rate in zip(optimizer.members, rates):
            member.lr = rate  # what a checkpoint of the run saves
        optimizer.lr = numpy.array(rates)  # the table takes this epoch's rates at its first step (set_rates)
    return optimizer


def fit_ensemble(model, X, Y=None, *, epochs=10, batch_size=256, optimizer="adam", lr=None, weight_decay=None,
                 momentum=None, beta1=None, beta2=None, clip_norm=None, clip_value=None, schedule="constant",
                 shuffle=True, seed=None, verbose=True, callbacks=(), validation_data=None, validation_fraction=None,
                 standardize=False, bootstrap=False, handle_interrupt=True, distributed=None, sample_weight=None):
    """Train every member of ``model`` (an Ensemble) on (X, Y), or on a data source (``gpunn.data``)
    passed alone as X, as :func:`gpunn.fit` takes one (and leaves it open: it is yours to close); returns an
    :class:`EnsembleHistory`.

    The options are :func:`gpunn.fit`'s; ``lr``, ``weight_decay``, ``momentum``, ``beta1`` and
    ``beta2`` take one value or K values (one per member), over the settings of ``optimizer`` (a name
    or an Optimizer, from which each fit makes a fresh optimizer for the K members); so do ``clip_norm`` and
    ``clip_value``, the optimizer's gradient clipping (gpunn.optim; None in a list: that member unclipped): member k
    clips by the norm of its own gradient, as its MLP with that optimizer does. ``optimizer=ens.optimizer``
    (the last fit's, or a loaded checkpoint's) continues that one, as an Optimizer object continues for one
    model: its moments, step count and frozen members (early-stopped or diverged: one that diverged stays in
    ``ens.diverged`` and the history's ``diverged``), and on a GPU the CUDA graphs
    captured with it (a fresh optimizer means a new capture); ``lr`` replaces its members' base rates (as one
    model's ``fit(optimizer=adam, lr=...)``), its other settings are its own, and the other six above are refused
    with it (as is an ensemble of another member count or device). All members see the same batches in the same
    order, shuffled by ``seed``
    (default: member 0's seed; a source's are its own, as for one model), unless ``bootstrap=True``: then member k trains on its own resample of
    the training rows (see BootstrapSource). A ``gpunn.EarlyStopping`` in ``callbacks`` stops each
    member on its own (MemberEarlyStopping). Per-member values in the history are lists of K. A
    ``gpunn.ModelCheckpoint`` writes a resumable checkpoint (``gpunn.load_checkpoint(path).resume(X, Y)``, or
    ``resume(source)`` for a run on a source, which takes no ``bootstrap``);
    ReduceLROnPlateau and ModelCheckpoint(save_best_only=True) are refused (one value per epoch).
    ``distributed=True`` trains data parallel under ``mpiexec`` as :func:`gpunn.fit` does (batch_size per
    rank; the same K members on every rank, each rank computing its piece of every global batch): on
    arrays each rank gathers its rows of each batch, on a chunked source each rank reads only its
    shard (the single-process order is ``gpunn.distributed.ShardedSource(source, P)``'s), and with
    ``bootstrap=True`` each rank gathers its piece of every member's global batch of its resample. Member k is then ``MLP.fit(..., distributed=True)`` with member k's settings, and the
    one-process ensemble at P x batch_size, to rounding. ``distributed=None`` (the default) is False, warned of
    under a launcher of several processes, as gpunn.fit's.
    ``sample_weight`` (arrays) is :func:`gpunn.fit`'s: every member weighs the rows by the same weights
    (with ``bootstrap=True`` each row's weight goes with it into every resample), so member k is
    ``MLP.fit(X, Y, sample_weight=w)`` with member k's settings; a held-out ``validation_fraction``'s rows and
    ``validation_data=(X_val, Y_val, w_val)`` weigh every member's val_* metrics. Data parallel too (every rank
    passing the same weights), as a weighted source: each rank's piece of every global batch carries its rows'
    weights (a bootstrap's scaled over the member's whole resample), so the run is the one process's at P x batch_size.
    """
    from ..data.base import standardize_option

    distributed = not_data_parallel(distributed, "Ensemble.fit")
    if sample_weight is not None:
        refuse_weights_where_unweighted(model, X, Y)
    epochs, bootstrap = positive_int(epochs, "epochs"), flag(bootstrap, "bootstrap")
    standardize, given = standardize_option(standardize), model.standardizer
    if isinstance(schedule, (list, tuple)):  # (make_schedule's refusal said only "must be a name ...")
        raise ValueError(f"schedule={schedule!r}: an Ensemble's members train under one schedule, a name or a "
                         "gpunn.Schedule (lr, weight_decay, momentum, beta1 and beta2 take one value per member; a "
                         "schedule does not): fit an Ensemble for each schedule")
    if isinstance(optimizer, (list, tuple)):  # (it said "member 0: unknown optimizer ['adam', 'sgd']")
        raise ValueError(f"optimizer={optimizer!r}: an Ensemble's members train with one kind of optimizer, a name or "
                         "a gpunn Optimizer (lr, weight_decay, momentum, beta1 and beta2 take one value per member): fit "
                         "an Ensemble for each optimizer")
    if isinstance(seed, (list, tuple)) or getattr(seed, "ndim", 0) > 0:  # (seed_int said only "must be an int")
        raise ValueError(f"seed={seed!r}: fit's seed orders the rows, one order for every member; each member's "
                         "starting weights take a seed of their own from the ensemble: "
                         f"gpunn.Ensemble({list(model.layer_sizes)}, n_models={model.n_models}, "
                         f"seed={numpy.asarray(seed).tolist()!r})")
    refuse_a_file_to_fit(X, Y, "ens.fit")
    with model.backend.use(), held_warnings() as checked:  # (columns read by position: warned once all is checked)
        with statistics_kept_on_refusal(model):  # (statistics that standardize set, unset by a refusal)
            source = None
            if is_source(X, Y):
                from ..data.binding import prepare_source, source_order

                source = X
                refuse_standardize_with_a_source(standardize, source)
                refuse_a_weighted_source(model, (source, validation_data))
                if bootstrap:
                    raise ValueError("bootstrap=True draws each member's resample from in-memory rows; pass arrays "
                                     "(X, Y), or the source without bootstrap")
                seed, shuffle = source_order(source, seed, shuffle, model.seeds[0])
                statistics = None
                if distributed:  # standardization statistics from each rank's own shard, as for one model
                    from ..distributed.shard import statistics_over_ranks as statistics
                validation = ensemble_evaluator(model, prepare_source(model, source, validation_data,
                                                                      validation_fraction, statistics))
                getattr(source, "refuse_epochs_past_its_pass", lambda epochs: None)(epochs)
                rows = source.rows  # once held out: the training rows
            else:
                seed, shuffle = model.seeds[0] if seed is None else seed_int(seed), flag(shuffle, "shuffle")
                X, Y = checked_arrays(model, X, Y, standardize,  # standardized copies for an ensemble with statistics
                                      rows_trained_on(validation_data, validation_fraction, seed))
                weights = checked_weights(_shared_weights(model, sample_weight, X.shape[0]), X.shape[0])
                X, Y, validation = split_validation(model, X, Y, validation_data, validation_fraction, seed, weights)
                weights = weights_trained_on(weights, validation_data, validation_fraction, seed)
                validation, rows = ensemble_evaluator(model, validation), X.shape[0]
            if batch_size is not None:
                batch_size = positive_int(batch_size, "batch_size")
            opt = (continued(optimizer, model, lr=lr, momentum=momentum, weight_decay=weight_decay, beta1=beta1,
                             beta2=beta2, clip_norm=clip_norm, clip_value=clip_value)
                   if isinstance(optimizer, EnsembleOptimizer) else
                   EnsembleOptimizer(optimizer, model.n_models, model.xp, lr=lr, momentum=momentum,
                                     weight_decay=weight_decay, beta1=beta1, beta2=beta2, clip_norm=clip_norm,
                                     clip_value=clip_value))
            settings = FitSettings(epochs=epochs, batch_size=rows if batch_size is None else min(batch_size, rows),
                                   train_rows=int(rows), seed=seed, shuffle=bool(shuffle),
                                   schedule=make_schedule(schedule),
                                   validation="data" if validation_data is not None else
                                              ("fraction" if validation_fraction else None),
                                   validation_fraction=validation_share(validation_fraction))  # float32(0.1) as 0.1
            callbacks, hook, dp = order_callbacks(member_callbacks(callbacks, verbose), False), None, None
            if distributed:
                from ..distributed.training import DataParallel

                if bootstrap:  # every rank gathers its piece of each member's global batch of its resample (its
                    # weights scaled over the whole resample: each rank's piece carries the one process's values)
                    source = ensemble_source(model, X, Y, seed=seed, shuffle=shuffle, bootstrap=True, weights=weights)
                dp = DataParallel(model, X, Y, distributed=distributed, batch_size=batch_size, seed=seed,
                                  shuffle=shuffle, verbose=verbose, source=source,
                                  weighted=source is None and is_weighted(model, Y))
                settings = dataclasses.replace(settings, batch_size=dp.batch_size, ranks=dp.size)
                source, hook = dp.source, dp.hook
                callbacks, validation = dp.callbacks(callbacks), dp.validation(validation)
            elif source is None:
                source = ensemble_source(model, X, Y, seed=seed, shuffle=shuffle, bootstrap=bootstrap, weights=weights)

        checked.give()
        history = EnsembleHistory()
        if opt is optimizer:  # continued: a member that diverged and stays frozen holds the weights it diverged with
            history.diverged = [k for k in model.diverged if k in opt.frozen]
        with statistics_kept_before_a_step(model, opt, given):
            return run_ensemble(model, source, opt, settings, TrainState(history=history), callbacks=callbacks,
                                validation=validation, hook=hook, handle_interrupt=handle_interrupt, dp=dp)
