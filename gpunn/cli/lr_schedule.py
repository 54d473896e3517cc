"""The learning-rate schedule of ``gpunn train`` and ``gpunn sweep``: --schedule and the options of its fields,
--gamma, --step-size, --min-factor, --warmup-steps and onecycle's --pct-start, --div-factor, --final-div-factor,
--anneal and --total-steps, each read by some schedules only (gpunn.optim.SCHEDULE_FIELDS)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re

from ..hints import folding
from ..optim import ANNEALS, PER_STEP_FIELDS, SCHEDULE_FIELDS, SCHEDULES, Schedule, make_schedule
from .common import bounded, non_negative, positive

# the Schedule fields the command line sets, by their dests
OPTIONS = ("gamma", "step_size", "min_factor", "warmup_steps", "pct_start", "div_factor", "final_div_factor", "anneal",
           "total_steps")
ONECYCLE = "--schedule onecycle"
WHAT = {"gamma": "sets the factor of --schedule step (per decay) and exponential (per epoch)",
        "step_size": "sets the epochs between the decays of --schedule step",
        "min_factor": "sets the floor of --schedule cosine",
        "warmup_steps": f"sets a linear warm-up over the run's first steps ({ONECYCLE} rises over its own --pct-start)",
        "pct_start": f"sets the fraction of the steps {ONECYCLE} rises over",
        "div_factor": f"sets the rate {ONECYCLE} starts at, --lr / --div-factor",
        "final_div_factor": f"sets the rate {ONECYCLE} ends at, its first / --final-div-factor",
        "anneal": f"sets how the rate of {ONECYCLE} moves between its points",
        "total_steps": f"sets the steps of the cycle of {ONECYCLE}"}
NEEDS_GAMMA = ("--schedule exponential needs --gamma, its factor per epoch: it has no default, as PyTorch's "
               "ExponentialLR has none (0.1, step's, would take --lr 1e-3 to 1e-8 by epoch 6); give e.g. --gamma 0.95 "
               "(gamma = 0.95 in a config file)")


def _unit_interval(zero: bool, one: bool = True):
    """An argparse type: a number in (0, 1], with ``zero`` from 0, without ``one`` short of 1."""
    span = f"{'[' if zero else '('}0, 1{']' if one else ')'}"
    above = bounded(float, 0, inclusive=zero, what=f"must be in {span}, got {{text}}")

    def parse(text):
        value = above(text)
        if value > 1 or (value == 1 and not one):
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text}")
        return value
    parse.toml_types = above.toml_types
    return parse


def _default(field) -> object:
    """What gpunn.Schedule takes for ``field`` left unset (the --help texts say it)."""
    default = next(f.default for f in dataclasses.fields(Schedule) if f.name == field)
    return f"{default:g}" if isinstance(default, float) else default


def add_arguments(parser) -> None:
    parser.add_argument("--schedule", choices=SCHEDULES, type=folding(SCHEDULES, "schedule"), default="constant",
                        help="learning-rate schedule, in any letter case (default: %(default)s): step (x --gamma every "
                             "--step-size epochs), exponential (x --gamma each epoch; give its --gamma), cosine (to "
                             "--min-factor x the rate over the run), onecycle (PyTorch's OneCycleLR, stepped after each "
                             "batch: from --lr / --div-factor up to --lr, its peak, over --pct-start of the steps, then "
                             "down to the start / --final-div-factor; the momentum (--momentum, adam's beta1) is not "
                             "cycled, as with cycle_momentum=False)")
    parser.add_argument("--gamma", type=_unit_interval(zero=False), default=None,
                        help="the schedule's factor, in (0, 1]: per decay for step (default: 0.1, PyTorch's StepLR's), "
                             "per epoch for exponential (no default, as PyTorch's ExponentialLR: give it, e.g. 0.95)")
    parser.add_argument("--step-size", type=positive(int), default=None,
                        help="step: epochs between the decays (default: 10)")
    parser.add_argument("--min-factor", type=_unit_interval(zero=True), default=None,
                        help="cosine: the rate's floor, as a fraction of --lr, in [0, 1] (default: 0)")
    parser.add_argument("--warmup-steps", type=non_negative(int), default=None, metavar="N",
                        help="constant, step, exponential and cosine: a linear warm-up over the run's first N steps "
                             "(batches, counted across epochs): step s (from 0) at min(1, (s + 1) / N) x the "
                             "schedule's rate, as PyTorch's LinearLR(start_factor=1/N, total_iters=N-1) stepped "
                             f"after each batch (default: {_default('warmup_steps')}, none)")
    parser.add_argument("--pct-start", type=_unit_interval(zero=False, one=False), default=None,
                        help="onecycle: the fraction of the steps over which the rate rises to --lr, in (0, 1) "
                             f"(default: {_default('pct_start')}, PyTorch's)")
    parser.add_argument("--div-factor", type=positive(float), default=None,
                        help="onecycle: the first rate is --lr / --div-factor "
                             f"(default: {_default('div_factor')}, PyTorch's)")
    parser.add_argument("--final-div-factor", type=positive(float), default=None,
                        help="onecycle: the last rate is the first / --final-div-factor "
                             f"(default: {_default('final_div_factor')}, PyTorch's)")
    parser.add_argument("--anneal", choices=ANNEALS, type=folding(ANNEALS, "anneal strategy"), default=None,
                        help="onecycle: how the rate moves between its points, cos or linear, PyTorch's "
                             f"anneal_strategy (default: {_default('anneal')})")
    parser.add_argument("--total-steps", type=non_negative(int), default=None, metavar="N",
                        help="onecycle: the steps of the cycle, 0 for the run's, its epochs x batches per epoch; a "
                             f"run of more steps is refused (default: {_default('total_steps')}; a resume that "
                             "raises --epochs stretches a cycle of 0 over the new total)")


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


def as_recorded(options: dict) -> dict:
    """``options`` (dest -> value) as a checkpoint's options and PATH.toml record them: without the per-step ones a run
    does not use, None (onecycle's options of another schedule) or a warm-up of 0, as gpunn.Schedule.record leaves
    them out of its schedule, so that an older gpunn, which refuses an option it does not know, reads them; a resume
    takes the missing ones from the schedule (recorded_options)."""
    return {dest: value for dest, value in options.items()
            if dest not in PER_STEP_FIELDS or (value if dest == "warmup_steps" else value is not None)}


def recorded_options(schedule: dict) -> dict:
    """The options a run used, from the schedule its checkpoint records (FitSettings' fields): a run recorded
    before the command line had them (no gamma among its options) ran at these; one recorded before a field
    existed (no warmup_steps in its schedule) ran at the field's default (no warm-up)."""
    recorded = Schedule.recorded(schedule)
    return {dest: getattr(recorded, dest) for dest in OPTIONS if dest in SCHEDULE_FIELDS[recorded.name]}


# gpunn.Schedule.check_run's refusal of a onecycle run longer than its cycle, in the library's words
_CYCLE_TOO_SHORT = re.compile(r"this run takes (\d+) optimizer steps and the onecycle schedule's total_steps is (\d+): "
                              r"give total_steps=\d+ or more \(0: the run's\), or train fewer epochs")


@contextlib.contextmanager
def said_in_options():
    """gpunn.Schedule.check_run's refusal (a fit's or a resume's, before it trains) in the command line's words:
    --total-steps and --epochs, not the Python arguments total_steps= and epochs; any other error as it is."""
    try:
        yield
    except ValueError as exc:
        said = _CYCLE_TOO_SHORT.fullmatch(str(exc))
        if said is None:
            raise
        steps, total = said.groups()
        words = ValueError(f"this run takes {steps} optimizer steps and --total-steps is {total}: give --total-steps "
                           f"{steps} or more (0: the run's), or fewer --epochs")
        words.__dict__.update(exc.__dict__)  # (gpunn_kept: where a failed run's checkpoint is)
        raise words from None
