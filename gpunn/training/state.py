"""What a training run is, as values: the settings it was started with and the state it has reached.

``FitSettings`` (frozen) and ``TrainState`` are all the loop needs besides the model, the data, the
optimizer and the callbacks: a :class:`~gpunn.training.loop.Trainer` is built from settings and an
optional state, and a checkpoint stores exactly ``to_dict()`` of each, so the Trainer's attribute names
are not the file format.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import got, real
from ..optim import Schedule
from .history import History

VALIDATION_KINDS = (None, "data", "fraction")


@dataclass(frozen=True)
class FitSettings:
    """The options a run was started with, fixed for its life (a resume may raise ``epochs``).

    ``train_rows``: rows per epoch after the validation split; ``validation``: None, "data" (the caller
    passed validation_data) or "fraction" (``validation_fraction`` of the rows held out by the seed).
    """

    epochs: int
    batch_size: int
    train_rows: int
    seed: int = 0
    shuffle: bool = True
    schedule: Schedule = field(default_factory=Schedule)
    validation: str | None = None
    validation_fraction: float | None = None
    ranks: int = 1  # data parallel: processes, each training batch_size rows of a global batch of ranks x that

    def __post_init__(self):
        if self.validation not in VALIDATION_KINDS:
            raise ValueError(f"validation must be one of {VALIDATION_KINDS}, got {self.validation!r}")
        if self.validation_fraction is not None:  # the float it holds (fit's numpy.array(0.2) too): JSON, and exact
            fraction = real(self.validation_fraction)
            if fraction is None:
                raise ValueError(f"validation_fraction must be a number, {got(self.validation_fraction)}")
            object.__setattr__(self, "validation_fraction", fraction)

    def to_dict(self) -> dict:
        """JSON-able: the schedule as its fields (Schedule.record: those of a per-step schedule where it has one)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "train_rows": self.train_rows,
                "seed": self.seed, "shuffle": self.shuffle, "schedule": self.schedule.record(),
                "validation": self.validation, "validation_fraction": self.validation_fraction, "ranks": self.ranks}

    @classmethod
    def from_dict(cls, d: dict) -> FitSettings:
        return cls(epochs=int(d["epochs"]), batch_size=int(d["batch_size"]), train_rows=int(d["train_rows"]),
                   seed=int(d["seed"]), shuffle=bool(d["shuffle"]), schedule=Schedule.recorded(d["schedule"]),
                   validation=d.get("validation"), validation_fraction=d.get("validation_fraction"),
                   ranks=int(d.get("ranks", 1)))

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.train_rows // (self.batch_size * self.ranks))


@dataclass
class TrainState:
    """Where a run is: the next step is batch ``batch`` of epoch ``epoch`` (both from 0).

    ``partial_sum_sq``: the summed squared error of the batches already done in that epoch (so a
    mid-epoch resume reports the same epoch loss); ``lr_scale``: ReduceLROnPlateau's factor on top of the
    schedule; ``history``: the completed epochs' logs; ``interrupted``: the run stopped on Ctrl-C /
    ``trainer.interrupt()``; ``reference_loss``: the loss of the run's first batch, before any step
    (or of predicting zero, when larger: gpunn.training.loop.reference_loss), which divergence is
    measured against (an epoch loss past 1e4 times it); a run resumed from a checkpoint that does not hold it
    (written before gpunn recorded it: version 1 and early version 2 files) takes the first batch it trains
    after the resume instead, that run's first batch loss being lost. The random state needs
    nothing more: shuffles are keyed by (seed, epoch).
    """

    epoch: int = 0
    batch: int = 0
    partial_sum_sq: float = 0.0
    lr_scale: float = 1.0
    history: History = field(default_factory=History)
    interrupted: bool = False
    reference_loss: float | None = None

    def to_dict(self) -> dict:
        """JSON-able: ``position`` (epoch, batch, partial_sum_sq), ``lr_scale``, ``history`` (plain lists),
        ``interrupted``, ``reference_loss``."""
        return {"position": {"epoch": self.epoch, "batch": self.batch, "partial_sum_sq": self.partial_sum_sq},
                "lr_scale": self.lr_scale, "history": {k: list(v) for k, v in self.history.items()},
                "interrupted": self.interrupted, "reference_loss": self.reference_loss}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        history = History()
        for key, values in d.get("history", {}).items():
            history[key] = list(values)
        pos = d["position"]
        partial = pos["partial_sum_sq"]
        return cls(epoch=int(pos["epoch"]), batch=int(pos["batch"]),
                   partial_sum_sq=float(partial) if isinstance(partial, (int, float)) else list(partial),
                   lr_scale=float(d.get("lr_scale", 1.0)), history=history, interrupted=bool(d.get("interrupted")),
                   reference_loss=_float_or_none(d.get("reference_loss")))


def position_words(epoch, batch, batches_per_epoch, epochs=None) -> str:
    """Where a run is, in words, as every message of gpunn says it (gpunn train's resume and stop lines, gpunn
    sweep's resume line, Checkpoint.resume's refusal): "3 epochs", or "3 epochs and 518 of 704 batches of epoch
    4" for a run stopped part-way through an epoch (Ctrl-C, SIGTERM), which a resume continues from that batch
    ("2 of 6 batches of epoch 1" in the first). ``epochs``: the run's total, said with the epochs done ("3 of 10
    epochs and 2 of 27 batches of epoch 4", "0 of 10 epochs and 2 of 27 batches of epoch 1")."""
    noun = "epoch" if (epoch if epochs is None else epochs) == 1 else "epochs"
    done = f"{epoch:,} {noun}" if epochs is None else f"{epoch:,} of {epochs:,} {noun}"
    if not batch:
        return done
    begun = done + " and " if epoch or epochs is not None else ""
    return f"{begun}{batch:,} of {batches_per_epoch:,} batches of epoch {epoch + 1}"


def _float_or_none(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
