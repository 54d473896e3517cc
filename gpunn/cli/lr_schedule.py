"""The learning-rate schedule of ``gpunn train`` and ``gpunn sweep``: --schedule and the options of its fields,
--gamma, --step-size and --min-factor, each read by some schedules only (gpunn.optim.SCHEDULE_FIELDS)."""
from __future__ import annotations

import argparse

from ..hints import folding
from ..optim import SCHEDULE_FIELDS, SCHEDULES, Schedule, make_schedule
from .common import bounded, positive

OPTIONS = ("gamma", "step_size", "min_factor")  # the Schedule fields the command line sets, by their dests
WHAT = {"gamma": "sets the factor of --schedule step (per decay) and exponential (per epoch)",
        "step_size": "sets the epochs between the decays of --schedule step",
        "min_factor": "sets the floor of --schedule cosine"}
NEEDS_GAMMA = ("--schedule exponential needs --gamma, its factor per epoch: it has no default, as PyTorch's "
               "ExponentialLR has none (0.1, step's, would take --lr 1e-3 to 1e-8 by epoch 6); give e.g. --gamma 0.95 "
               "(gamma = 0.95 in a config file)")


def _unit_interval(zero: bool):
    """An argparse type: a number in (0, 1], or in [0, 1] with ``zero``."""
    span = "[0, 1]" if zero else "(0, 1]"
    above = bounded(float, 0, inclusive=zero, what=f"must be in {span}, got {{text}}")

    def parse(text):
        value = above(text)
        if value > 1:
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text}")
        return value
    parse.toml_types = above.toml_types
    return parse


def add_arguments(parser) -> None:
    parser.add_argument("--schedule", choices=SCHEDULES, type=folding(SCHEDULES, "schedule"), default="constant",
                        help="learning-rate schedule, in any letter case (default: %(default)s): step (x --gamma every "
                             "--step-size epochs), exponential (x --gamma each epoch; give its --gamma), cosine (to "
                             "--min-factor x the rate over the run)")
    parser.add_argument("--gamma", type=_unit_interval(zero=False), default=None,
                        help="the schedule's factor, in (0, 1]: per decay for step (default: 0.1, PyTorch's StepLR's), "
                             "per epoch for exponential (no default, as PyTorch's ExponentialLR: give it, e.g. 0.95)")
    parser.add_argument("--step-size", type=positive(int), default=None,
                        help="step: epochs between the decays (default: 10)")
    parser.add_argument("--min-factor", type=_unit_interval(zero=True), default=None,
                        help="cosine: the rate's floor, as a fraction of --lr, in [0, 1] (default: 0)")


def _readers(dest) -> str:
    """The schedules that read option ``dest``, as --schedule says them: "--schedule step or exponential"."""
    return "--schedule " + " or ".join(name for name, fields in SCHEDULE_FIELDS.items() if dest in fields)


def idle_options(args) -> dict:
    """The schedule options this run's --schedule does not read, in gpunn.cli.train.idle_options's form: dest ->
    (what it does, what would use it, why this run does not)."""
    this_run = f"this run's schedule is {args.schedule}"
    return {dest: (f"{WHAT[dest]}, and {this_run}", ": drop it (a resumed run keeps its schedule)" if
                   getattr(args, "resume", None) else f": choose {_readers(dest)} (or drop it)", this_run)
            for dest in OPTIONS if dest not in SCHEDULE_FIELDS[args.schedule]}


def schedule_of(args) -> Schedule:
    """The Schedule of --schedule and the options it reads, which are set in ``args`` to the numbers it uses (a
    step's unset --gamma is 0.1), so that the checkpoint, PATH.toml and --json record them; the options it does not
    read are left as they are (idle_options refused them on the command line). Made before any data is generated
    or read: --schedule exponential without --gamma is refused at once."""
    read = [dest for dest in OPTIONS if dest in SCHEDULE_FIELDS[args.schedule]]
    if args.schedule == "exponential" and args.gamma is None:
        raise ValueError(NEEDS_GAMMA)
    schedule = make_schedule(args.schedule, **{dest: getattr(args, dest) for dest in read})
    for dest in read:
        setattr(args, dest, getattr(schedule, dest))
    return schedule


def recorded_options(schedule: dict) -> dict:
    """The options a run used, from the schedule its checkpoint records (FitSettings' fields): a run recorded
    before the command line had them (no gamma among its options) ran at these."""
    return {dest: schedule[dest] for dest in OPTIONS if dest in SCHEDULE_FIELDS[schedule["name"]]}
