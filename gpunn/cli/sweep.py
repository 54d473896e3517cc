"""``gpunn sweep``: train a grid of learning rates, weight decays (gradient clips) and seeds as one gpunn.Ensemble,
ranked."""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import sys
import types

import numpy

from .. import backend as _backend, datasets
from ..activations import ACTIVATIONS
from ..config import as_key
from ..hints import ONE_ARCHITECTURE, folding, shell_word
from ..model import PRECISIONS
from ..optim import OPTIMIZERS, default_of
from ..training.callbacks import Callback
from ..training.ensemble import held_rows
from ..training.state import position_words
from . import data as data_cli, lr_schedule
from .common import (DEVICE_NAMES, TOML_TYPES, Parser, add_debug, add_progress, check_report_outputs, counted, csv_text,
                     device_name, dtype, epoch_axis, file_path, json_text, non_negative, positive,
                     refuse_replacing_data, verbose_of, write_output)
from .data import feature_count_or_names
from .train import (LR_DEFAULT, MIN_ROWS, NOISE_HELP, _check_plot_available, _check_precision, _from_config,
                    _hidden_sizes, _launch, _ranks, check_task_memory, constant_targets_note, features_help,
                    ignore_late_interrupts, optimizer_of, resolve_task, resolved_device, throughput)

CHECKPOINT = "ensemble-{}.npz"  # in --save DIR: ensemble g's training checkpoint
FEATURES = 16  # --features left unset, of a task that has no width of its own: smaller than gpunn train's, as
# the sweep's other defaults are (it trains the whole grid)


def _one_hidden(text: str) -> list[int]:
    """A sweep's --hidden: gpunn train's, whose refusal of several architectures ('32;64', '32 64') says why."""
    try:
        return _hidden_sizes(text)
    except argparse.ArgumentTypeError as exc:
        if any(mark in text for mark in ";/|[] "):  # how a list of architectures gets written
            raise argparse.ArgumentTypeError(f"{exc}; {ONE_ARCHITECTURE}") from None
        raise


_one_hidden.toml_types = _hidden_sizes.toml_types


def _number_list(kind, check):
    def parse(text):
        items = text.replace(" ", "").split(",")
        if len(items) > 1 and not all(items):  # 1e-3,,3e-3: a value left out, which was dropped without a word
            raise argparse.ArgumentTypeError(f"has an empty value in {text!r}: write each value, comma-separated")
        try:
            values = [kind(v) for v in items if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes comma-separated numbers, got {text!r}") from None
        if not values or not all(check(v) for v in values):
            raise argparse.ArgumentTypeError(f"every value must be {check.__doc__}, got {text!r}")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:  # the same members again: same settings, same seeds, same batches, same weights
            raise argparse.ArgumentTypeError(
                f"names {', '.join(f'{v:g}' for v in repeated)} more than once in {text!r}: a repeated value trains "
                "the same members again, to the same weights; name each once (--seeds trains repeats that differ)")
        return values
    parse.toml_types = TOML_TYPES[kind]
    return parse


def _positive(v):
    """positive and finite"""
    return numpy.isfinite(v) and v > 0


def _non_negative(v):
    """zero or more, and finite"""
    return numpy.isfinite(v) and v >= 0


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("sweep", help="train a grid of learning rates, weight decays and seeds as one ensemble",
                       description="Train every combination of --lr, --weight-decay, --clip-norm (or --clip-value) "
                                   "and --seeds as the members of one "
                                   "gpunn.Ensemble (one step trains them all), then rank them by the validation MSE of the "
                                   "weights each holds (the last epoch's; the best epoch's with --early-stopping), "
                                   "the weights --save-best saves and Ensemble.best() ranks by. A member "
                                   "of the first seed trains as gpunn train would with its --lr, --weight-decay (and "
                                   "--clip-norm or --clip-value) and "
                                   "the same other options (to rounding: an ensemble sums in another order), though "
                                   "some defaults here are smaller (--rows, --hidden, --epochs, --batch-size, and "
                                   "--features for teacher and linear); the members of later seeds start from "
                                   "MLP(seed=--seed + 1), ... on the same data and batches. The data are a synthetic task or your own file (--data, "
                                   "read chunk by chunk as gpunn train reads it, 10% of the chunks held out). A grid "
                                   "larger than the device's memory (or --max-members) is split into ensembles that "
                                   "fit. Launched by mpiexec with P > 1 processes it trains data parallel, as gpunn "
                                   "train does: --batch-size is then per rank (on a task the table is the one-process "
                                   "sweep's at P x --batch-size), each rank reads its shard of --data, and rank 0 "
                                   "alone prints and writes.")
    s.add_argument("--lr", type=_number_list(float, _positive), default=None,
                   help=f"learning rates, comma-separated, e.g. 1e-4,3e-4,1e-3,3e-3 (default: {LR_DEFAULT}); with --schedule "
                        "onecycle each is its member's peak, OneCycleLR's max_lr")
    s.add_argument("--weight-decay", type=_number_list(float, _non_negative), default=None,
                   help="weight decays, comma-separated (default: the optimizer's, as gpunn train's: 0.01 for adamw, "
                        "0 for the others)")
    s.add_argument("--clip-norm", type=_number_list(float, _positive), default=None,
                   help="gradient clipping by norm, comma-separated values to grid over, e.g. 0.5,1,5: a member clips "
                        "its gradient (every dW and db) to this 2-norm before each step, by its own norm, as gpunn "
                        "train --clip-norm clips one model's (default: no clipping)")
    s.add_argument("--clip-value", type=_number_list(float, _positive), default=None,
                   help="gradient clipping by value, comma-separated values to grid over: each gradient element into "
                        "[-v, v] before each step, as gpunn train --clip-value; not with --clip-norm (default: no "
                        "clipping)")
    s.add_argument("--seeds", type=seed_count, default=1, help="seeds per setting: members start as MLP(seed=s), "
                   "s = --seed, --seed + 1, ...; with more than one, a second table gives each setting's mean and std over "
                   "them (default: %(default)s)")
    s.add_argument("--task", choices=sorted(datasets.TASKS), type=folding(datasets.TASKS, "task"), default="teacher",
                   help="synthetic task, in any letter case (default: %(default)s)")
    s.add_argument("--rows", type=positive(int), default=20_000, help="rows generated, 10%% held out (default: %(default)s)")
    s.add_argument("--features", type=feature_count_or_names, default=None, help=features_help(FEATURES))
    s.add_argument("--outputs", type=positive(int), default=1, help="targets per row (default: %(default)s)")
    s.add_argument("--noise", type=non_negative(float), default=None, help=NOISE_HELP)
    s.add_argument("--hidden", type=_one_hidden, default="64,64",
                   help="hidden layer sizes of every member, e.g. 64,64 or 64x64; '' for none, a linear model; one "
                        "architecture per sweep: run a sweep per --hidden to compare sizes (default: %(default)s)")
    s.add_argument("--activation", choices=list(ACTIVATIONS), type=folding(ACTIVATIONS, "activation"), default="relu",
                   help="hidden activation, in any letter case (default: %(default)s)")
    s.add_argument("--output-activation", choices=list(ACTIVATIONS), type=folding(ACTIVATIONS, "activation"), default="identity",
                   help="output layer's activation, in any letter case (default: %(default)s)")
    s.add_argument("--no-bias", action="store_true", help="bias-free layers")
    s.add_argument("--epochs", type=positive(int), default=10, help="passes over the training rows (default: %(default)s)")
    s.add_argument("--batch-size", type=positive(int), default=128,
                   help="rows per step; per rank under mpiexec (default: %(default)s)")
    s.add_argument("--optimizer", choices=list(OPTIMIZERS), type=folding(OPTIMIZERS, "optimizer"), default="adam",
                   help="optimizer, in any letter case (default: %(default)s)")
    lr_schedule.add_arguments(s)
    s.add_argument("--early-stopping", action="store_true", help="stop each member when its validation loss stops "
                   "improving (it is then frozen and keeps its best weights)")
    s.add_argument("--patience", type=positive(int), default=5, help="with --early-stopping: epochs without improvement before a member stops (default: %(default)s)")
    s.add_argument("--min-delta", type=non_negative(float), default=0.0,
                   help="with --early-stopping: the smallest fall of a member's validation loss that counts as an "
                        "improvement (default: %(default)s)")
    s.add_argument("--momentum", type=non_negative(float), default=None,
                   help="momentum of every member, for sgd, momentum and nesterov (default: 0.9 for momentum and "
                        "nesterov, 0 for sgd)")
    s.add_argument("--device", type=device_name, default="auto", help=f"auto, {DEVICE_NAMES} (default: %(default)s; env GPUNN_DEVICE)")
    s.add_argument("--dtype", type=dtype, default="float32", help="float32 or float64, or any NumPy spelling of them (default: %(default)s)")
    s.add_argument("--precision", choices=PRECISIONS, type=folding(PRECISIONS, "precision", any_case=False),
                   default="float32",
                   help="GPU only, as gpunn train's: tf32 runs every member's matrix products on TF32 tensor cores; "
                        "bf16 keeps activations in bfloat16 with float32 master weights, optimizer state and loss; "
                        "the saved best member keeps it (default: %(default)s)")
    s.add_argument("--graph", action=argparse.BooleanOptionalAction, default=None,
                   help="as gpunn train's: capture each ensemble's training step (all its members) as a CUDA graph "
                        "and replay it per batch: the default on a CUDA GPU where the step can be captured (--graph "
                        "forces it, with a warning where it cannot capture; --no-graph turns it off)")
    s.add_argument("--seed", type=non_negative(int), default=0, help="seeds the data and the shuffles; the first seed's members start from MLP(seed=--seed) (default: "
                        "%(default)s)")
    s.add_argument("--max-members", type=positive(int), default=None,
                   help="at most this many members per ensemble (default: as many as the device memory holds)")
    s.add_argument("--json", type=file_path, metavar="PATH", help="write the ranked members as JSON, each with member (its place in "
                   "the grid), lr, weight_decay, clip_norm or clip_value where the sweep clips, seed, val_mse and val_r2 (of the weights it holds and --save-best saves, "
                   "as Ensemble.best() ranks them), weights_epoch (their epoch: the last, the best with --early-stopping; "
                   "null where an interrupt cut an epoch short, partial_epoch naming it), "
                   "best_epoch, stopped_early, diverged and "
                   "val_curve (its validation MSE per epoch), and per setting (lr, weight decay, clip) the mean and std of its "
                   "members' val_mse and val_r2 over the seeds (settings), beside the sweep's config, units and result (its "
                   "train_seconds, and each ensemble's train_seconds and samples_per_s, of one that finished an epoch) (- for standard output: the "
                   "lines of text then go to stderr; a name that says another kind of file, .csv or .npz..., is "
                   "refused)")
    s.add_argument("--csv", type=file_path, metavar="PATH", help="write the ranked table as CSV (- for standard output); an infinite "
                   "score is inf, a member no epoch scored has empty fields (- in the printed table); a name that "
                   "says another kind of file, .json or .npz..., is refused")
    s.add_argument("--plot", type=file_path, metavar="PNG", help="draw every member's validation curve, the best highlighted: .png, "
                   ".pdf or .svg (needs matplotlib: gpunn[plot])")
    s.add_argument("--save-best", type=file_path, metavar="PATH", help="save the best member as a gpunn model, an .npz archive "
                   "(gpunn.load, gpunn predict), with the weights the table scored (after a Ctrl-C, those it held "
                   "part-way through an epoch; nothing where no member was scored); a name that says a data file, report or plot (.csv, .json...) is refused")
    s.add_argument("--save", type=file_path, metavar="DIR", help="write each ensemble's resumable checkpoint, DIR/ensemble-0.npz, -1, ..., every "
                   "epoch, at the end and on Ctrl-C; the sweep's options are recorded in them")
    s.add_argument("--resume", type=file_path, metavar="DIR", help="continue the sweep saved in DIR exactly: ensembles that finished "
                   "are read back, an interrupted one resumes, the rest train; its checkpoints record every option; "
                   "--epochs can extend it, --json, --csv, --plot, --save-best, --save, --progress, --quiet and --device (same kind) "
                   "apply, --data, --targets and --weights may say where its files are now (the same data), any other option that "
                   "differs "
                   "from the recorded one is refused; keeps saving to DIR unless --save says otherwise. With --save DIR too (a "
                   "batch job's line, run again when the job is requeued): a DIR that holds no checkpoint yet (not made, "
                   "or empty) starts the sweep with the options given. Under mpiexec "
                   "a --data sweep started in one process resumes only once each of its ensembles has started")
    s.add_argument("--config", type=file_path, metavar="TOML", help="read options from a TOML file (keys are these options' long "
                   "names, lists for the grid: lr = [1e-4, 1e-3]; top level or in a [sweep] table; a [train] table, gpunn train's, is skipped); flags on the "
                   "command line override it; a key this sweep would not use is noted, not refused")
    add_progress(s)
    data_cli.add_arguments(s, stream=False)
    add_debug(s)
    for action in s._actions:  # the training's numbers, one for every member: told so where given a list
        if action.dest in _ONE_VALUE:
            action.type = _one_value(action.type, action.option_strings[-1])
    s.set_defaults(func=run)
    return s


_ONE_VALUE = ("momentum", "gamma", "step_size", "min_factor", "warmup_steps", "pct_start", "div_factor", "final_div_factor",
              "total_steps", "patience", "min_delta", "batch_size", "epochs", "seed")


def _one_value(parse, flag):
    """An option's argparse type ``parse``, whose refusal of a comma-separated list of numbers (--momentum 0.9,0.99)
    says that the option is one value for every member, and what the grid is: it said "expected a number" alone,
    to one who took the grid for any option's."""
    def parse_one(text):
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:
            values = [part.strip() for part in str(text).split(",")]
            if len(values) < 2 or not all(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", v) for v in values):
                raise
            seeds = flag == "--seed" and all(v.isdigit() for v in values) and _counted_seeds([int(v) for v in values])
            how = seeds or f"run a sweep for each {flag}"
            hinted = argparse.ArgumentTypeError(f"{exc}: {flag} is one value for every member (a sweep's grid is "
                                                "--lr, --weight-decay, --clip-norm (or --clip-value) and --seeds); "
                                                f"{how}")
            hinted.unhinted = exc  # (a config file's seed = [1, 2] is hinted in its own words: gpunn.config)
            hinted.in_keys = lambda key: (  # (momentum = [0.9, 0.99])
                f"{key} is one value for every member (a sweep's grid is lr, weight-decay, clip-norm (or clip-value) "
                f"and seeds); run a sweep for each {key}")
            raise hinted from None
    parse_one.toml_types = getattr(parse, "toml_types", None)  # (a config file's epochs = 5.0, as train's)
    return parse_one


def standalone_parser() -> argparse.ArgumentParser:
    """The ``sweep`` parser on its own (what a saved sweep's options are resolved against)."""
    return add_parser(Parser(prog="gpunn").add_subparsers())


def saved_checkpoints(directory) -> list[str]:
    """The ensembles' checkpoints in ``directory``, in ensemble order (one whose members all diverged in
    their first epoch has none)."""
    return [path for _, path in numbered_checkpoints(directory)]


def numbered_checkpoints(directory) -> list[tuple[int, str]]:
    """(ensemble number, checkpoint) of each of :func:`saved_checkpoints`. Ensemble numbers in the digits 0-9 only
    (``\\d`` took ``ensemble-٣.npz`` as 3)."""
    pattern = re.compile(re.escape(CHECKPOINT).replace(r"\{\}", r"([0-9]+)") + "$")
    found = [(int(m.group(1)), name) for name in (os.listdir(directory) if os.path.isdir(directory) else ())
             if (m := pattern.match(name))]
    return [(g, os.path.join(directory, name)) for g, name in sorted(found)]


def first_checkpoint(directory) -> str:
    """The checkpoint of a saved sweep's first saved ensemble: each records the sweep's options."""
    if not os.path.isdir(directory):
        raise ValueError(f"--resume {shell_word(directory)} is not a directory (gpunn sweep --save DIR writes one)"
                         f"{_checkpoint_resumed(directory)}")
    saved = saved_checkpoints(directory)
    if not saved:
        raise ValueError(f"--resume {shell_word(directory)} holds no {CHECKPOINT.format('G')}: it is not a saved sweep, or the "
                         "sweep was stopped before its first checkpoint")
    return saved[0]


def _training_meta(path) -> dict | None:
    """The metadata of the training run's checkpoint at ``path`` (gpunn train --save's, a fit's ModelCheckpoint's, a
    sweep's ensemble), or None: no file there, not a checkpoint, or a model saved alone."""
    from .. import checkpoint

    try:
        meta = checkpoint.read_meta(path) if os.path.isfile(path) else None
    except Exception:  # noqa: BLE001 - not a checkpoint: the caller's refusal as it was
        return None
    return meta if meta is not None and meta.get("kind") == "training" else None


def _checkpoint_resumed(path) -> str:
    """How the checkpoint file ``path``, given to gpunn sweep --resume, goes on: one ensemble's of a sweep with its
    directory, a gpunn train run's with gpunn train --resume; '' for another file."""
    from .resume import saved_options, sweep_directory

    meta = _training_meta(path)
    if meta is None:
        return ""
    sweep = sweep_directory(meta, path)
    if sweep:
        return f"; it is one ensemble's checkpoint of the sweep saved in {shell_word(sweep)}: continue that with gpunn " \
               f"sweep --resume {shell_word(sweep)}"
    return f"; it is a gpunn train run's checkpoint: continue it with gpunn train --resume {shell_word(path)}" \
        if saved_options(meta) else ""


def _check_save_dir(args) -> str | None:
    """The directory a sweep checkpoints to (made here), or None; a new sweep never overwrites a saved one."""
    directory = args.save or args.resume
    if directory is None:
        return None
    elsewhere = args.save and (not args.resume or os.path.abspath(args.save) != os.path.abspath(args.resume))
    if elsewhere and saved_checkpoints(args.save):
        raise ValueError(f"--save {shell_word(args.save)} already holds a sweep's checkpoints; continue it with --resume "
                         f"{shell_word(args.save)}, or save this sweep elsewhere")
    option = "--save" if args.save else "--resume"
    said = (f"{shell_word(args.config)}: {as_key(option[2:], directory)}" if _from_config(args, option[2:])
            else f"{option} {shell_word(directory)}")
    if os.path.exists(directory) and not os.path.isdir(directory):  # a train PATH.toml's save = "run.npz", say
        raise ValueError(f"{said} exists and is not a directory: gpunn sweep saves a directory of checkpoints (gpunn "
                         "train's --save is a file); name a directory")
    from .. import preflight

    try:  # (a file above it, a read-only file system: "[Errno 20] Not a directory: 'notes.txt/sweep'", no option)
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        parent = os.path.dirname(os.path.abspath(directory))
        why = preflight.no_directory(parent) if not os.path.isdir(parent) else exc.strerror or exc
        raise preflight.PreflightError(f"{said}: cannot make the directory: {why}") from None
    # refused before any member trains, in --save's words (a ModelCheckpoint's refusal came after the lines of the
    # sweep's start, "checkpoints: D/ensemble-0.npz (continue with gpunn sweep --resume D)", in the API's words)
    first = os.path.join(directory, "ensemble-0.npz")
    try:
        preflight.check_output(first, "--save")
    except preflight.PreflightError as exc:  # ("--save D/ensemble-0.npz: directory D is not writable ...": its words
        # after that prefix, which a directory named "a: b" holds ': ' in)
        raise preflight.PreflightError(f"{said}: {str(exc).removeprefix(f'--save {shell_word(first)}: ')}") from None
    return directory


def resolve_grid(args) -> None:
    """An unset --lr, --weight-decay or --momentum is the optimizer's default (gpunn.optim.default_of), as gpunn
    train's is; resolved before the grid is drawn and recorded (a saved sweep, and --json, record the values its
    members trained with; momentum stays None for an optimizer that has none)."""
    if args.lr is None:
        args.lr = [default_of(args.optimizer, "lr")]
    if args.weight_decay is None:
        args.weight_decay = [default_of(args.optimizer, "weight_decay")]
    if args.momentum is None:  # one value, every member's
        args.momentum = default_of(args.optimizer, "momentum")


CLIP_WORDS = {"clip_norm": "clip norm", "clip_value": "clip value"}  # a member's clip in the grid, and in words


def clipping(args):
    """(the grid's clip key, its values): ("clip_norm", [0.5, 1.0]) for --clip-norm 0.5,1, ("clip_value", ...) for
    --clip-value; (None, [None]) for a sweep that does not clip. Both given: refused (a member clips by one)."""
    norm, value = getattr(args, "clip_norm", None), getattr(args, "clip_value", None)
    if norm and value:
        raise ValueError("--clip-norm and --clip-value: a member clips its gradient by its norm or by value, not "
                         "both; run a sweep for each")
    return ("clip_norm", norm) if norm else ("clip_value", value) if value else (None, [None])


def clip_of(row):
    """The grid's clip key of a member's settings or table row (clip_norm or clip_value), or None."""
    return next((key for key in CLIP_WORDS if key in row), None)


def grid(args) -> list[dict]:
    """Every member's settings: lr x weight decay x clip (where the sweep clips) x seed, in that order."""
    key, clips = clipping(args)
    return [{"lr": lr, "weight_decay": wd, **({key: clip} if key else {}), "seed": args.seed + s}
            for lr, wd, clip, s in itertools.product(args.lr, args.weight_decay, clips, range(args.seeds))]


def bytes_per_member(sizes, batch_size, val_rows, itemsize, bias=True, precision="float32") -> int:
    """Parameters, gradients, two optimizer moments, and the (batch and validation) workspaces of one member;
    at least what the Ensemble's own memory check counts (gpunn.ensemble.member_bytes), so an ensemble of
    the split is never refused by it."""
    from ..ensemble import Ensemble, member_bytes

    rows = max(batch_size + min(val_rows, Ensemble.chunk_rows), Ensemble.chunk_rows)
    return member_bytes(sizes, itemsize, rows, bias, precision)


def members_per_ensemble(args, backend, sizes, val_rows, total) -> tuple[int, str]:
    """How many members one ensemble may hold, and why (for the message when the grid is split)."""
    from .. import preflight

    per = bytes_per_member(sizes, args.batch_size, val_rows, numpy.dtype(args.dtype).itemsize, not args.no_bias,
                           args.precision)
    limit, why = total, ""
    free = preflight.available_bytes(backend)
    if free:
        fit = max(1, int(0.8 * free) // per)
        if fit < limit:
            limit, why = fit, (f"{preflight.size_text(per)} per member, {preflight.size_text(free)} free on "
                               f"{backend.device}{preflight.share_words(backend)}")
    if args.max_members is not None and args.max_members < limit:
        limit, why = args.max_members, f"--max-members {args.max_members}"
    return limit, why


def split_over_ranks(per, why, comm) -> tuple[int, str]:
    """The split of a data-parallel sweep (under mpiexec), from each rank's own ``members_per_ensemble``: the
    smallest, as every rank holds the whole ensemble on its own device (rank 0's alone would not fit on a
    rank whose GPU has less memory free), and the same on every rank."""
    from ..distributed.comm import agreeing_on_failure

    # an agreement on who failed, as a fit's first collective is (a rank that failed before it joins it: gpunn.cli)
    splits = agreeing_on_failure(comm, lambda: (per, why), "the sweep's split")
    r = min(range(len(splits)), key=lambda i: splits[i][0])
    per, why = splits[r]
    return per, (f"{why} (rank {r})" if r and why else why)


def seed_count(text):
    """--seeds's type: how many seeds each setting trains. A list of seeds (``--seeds 1,2``, ``seeds = [1, 2]``) is
    told how to ask for them: they said "expected a whole number", the seeds given being whole numbers."""
    try:
        return positive(int)(text)
    except argparse.ArgumentTypeError:
        seeds = [part.strip() for part in text.split(",")]
        if len(seeds) < 2 or not all(re.fullmatch(r"\d+", seed) for seed in seeds):
            raise
        how = (_counted_seeds([int(seed) for seed in seeds])
               or "the members' seeds follow on from --seed: --seed, --seed + 1, ...")
        said = f"is how many seeds each setting trains, got the seeds {text!r}"
        hinted = argparse.ArgumentTypeError(f"{said}: {how}")
        hinted.unhinted = argparse.ArgumentTypeError(said)  # (a config file's seeds = [0, 1]: in its keys)
        raise hinted from None


seed_count.toml_types = TOML_TYPES[int]


def _counted_seeds(seeds) -> str:
    """The flags that train ``seeds`` where each follows on from the one before ("--seed 3 --seeds 2 trains seeds 3,
    4"), else "" (a config file's ``seed = [3, 4]`` or ``seeds = [3, 4]`` is told in its own keys: gpunn.config)."""
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        return ""
    return f"--seed {seeds[0]} --seeds {len(seeds)} trains seeds {', '.join(map(str, seeds))}"


def rank(settings, history_of, offset=0, held_scores=None):
    """One row per member: settings, the validation MSE and R² of the weights it holds (those --save-best saves and
    Ensemble.best() ranks by: EnsembleHistory.weights_epoch, its best epoch where early stopping restored it, else
    the last) and their epoch, its best epoch (EnsembleHistory.best_epoch: early stopping's, else the least
    val_loss's; the least val_mse's where it has none, an interrupted run), stopped early. A history without
    weights_epoch (one made by hand) is scored at its best epoch. A member holding the weights of an epoch an
    interrupt cut short (weights_epoch None) is scored by ``held_scores`` (_Reached.held: the validation logs of
    the weights held, NaN where that pass was cut short too), ``partial_epoch`` naming that epoch."""
    rows = []
    for k, s in enumerate(settings):
        history, j = history_of(k)
        val = numpy.asarray([v[j] for v in history["val_mse"]], dtype=numpy.float64)
        r2 = [v[j] for v in history["val_r2"]]
        kept = getattr(history, "best_epoch", None)  # (with --min-delta, not always the least val_mse's)
        if numpy.isnan(val).all():  # no epoch scored it
            best = None
        elif isinstance(kept, list) and kept[j] is not None:
            best = kept[j] - 1
        else:  # an infinite MSE is a score (the worst); NaN none
            best = int(numpy.argmin(numpy.where(numpy.isnan(val), numpy.inf, val)))
        held = held_rows(history, len(history["val_mse"][0])) if history["val_mse"] else None
        at = None if best is None else best if held is None else held[j]
        stopped = bool(history.stopped_early[j])
        nan = float("nan")
        score = (nan, nan) if at is None else (float(val[at]), float(r2[at]))
        partial = history.interrupted and (not history["epoch"]  # (cut in its first epoch: no weights_epoch list)
                                           or isinstance(history.weights_epoch, list) and history.weights_epoch[j] is None)
        if partial:  # the weights held part-way through the next epoch, as --save-best saves them
            at = None
            score = (nan, nan) if held_scores is None else (float(held_scores["val_mse"][j]),
                                                            float(held_scores["val_r2"][j]))
        rows.append({"member": offset + k, **s, "val_mse": score[0], "val_r2": score[1],
                     "weights_epoch": None if at is None else at + 1,
                     "partial_epoch": len(history["epoch"]) + 1 if partial else None,
                     "best_epoch": None if best is None else best + 1, "stopped_early": stopped,
                     "diverged": j in history.diverged, "val_curve": val.tolist()})
    return rows


class _Reached(Callback):
    """What the sweep says of an ensemble's fit: the epoch it began at (a resumed one's earlier epochs ran in another
    process: its timing is this process's epochs', as gpunn train's) and, where it was interrupted, where it
    stopped, in words (its progress bar leaves its own line out)."""

    def __init__(self):
        self.start_epoch, self.stopped_at = 0, ""
        self.held, self.cut = None, ""  # an epoch cut short: the validation logs of the weights held, and where

    def on_train_begin(self, trainer):
        self.start_epoch = trainer.start_epoch

    def on_train_end(self, trainer):
        if trainer.interrupted:
            self.stopped_at = trainer.position(trainer.state.epoch, trainer.state.batch)
        if trainer.interrupted and trainer.state.batch and trainer.validation is not None:
            # the members hold the weights of the cut epoch's steps, which --save-best saves and no epoch's
            # validation scored: scored here, as gpunn train's held-out pass scores its model (one more pass)
            self.cut = f"{trainer.state.batch} of {trainer.settings.batches_per_epoch} batches"
            try:
                self.held = trainer.validation.evaluate(trainer.model)
            except KeyboardInterrupt:  # a second Ctrl-C: those members go unscored ("-"), ranked last
                self.held = None


def timing(g, group, history, reached) -> dict:
    """Ensemble g's timing in the JSON's result, named and taken as gpunn train --json's (cli.train.throughput):
    ``train_seconds``, the seconds of the epochs this process trained (all of them where it trained none: one that
    had finished before a --resume), and ``samples_per_s``, member-samples/s of their median epoch after the first
    (an Ensemble's history counts each member's rows)."""
    rate, seconds, _ = throughput(history, reached.start_epoch)
    return {"ensemble": g, "members": len(group), "epochs": len(history["epoch"]), "train_seconds": seconds,
            "samples_per_s": rate}


def format_table(rows) -> str:
    """The ranked table as printed: the val MSE and R2 of the weights each member holds, of epoch ``epoch``. A member
    with no score (NaN: no epoch scored it) shows "-", as its epochs do and as --csv leaves the cell empty; an
    infinite score shows inf, as --csv writes it."""
    clip = clip_of(rows[0]) if rows else None
    head = f"{'rank':>4}  {'lr':>9}  {'weight_decay':>12}  {_clip_head(clip)}{'seed':>4}  {'val MSE':>10}  " \
           f"{'val R2':>7}  {'epoch':>5}  {'best epoch':>10}  stopped early"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows, 1):
        flag = "diverged" if r["diverged"] else ("yes" if r["stopped_early"] else "no")
        held, epoch = ("-" if r[key] is None else r[key] for key in ("weights_epoch", "best_epoch"))
        if r.get("partial_epoch"):  # weights part-way through that epoch (the note under the table says where)
            held = f"{r['partial_epoch']}*"
        r2 = r["val_r2"]  # (a diverged member's -5e104 took 100 digits in .4f)
        lines.append(f"{i:>4}  {r['lr']:>9.3g}  {r['weight_decay']:>12.3g}  {_clip_cell(r, clip)}{r['seed']:>4}  "
                     f"{_score(r['val_mse'], '.5g'):>10}  {_score(r2, '.4f' if abs(r2) < 1e4 else '.4g'):>7}  "
                     f"{held:>5}  {epoch:>10}  {flag}")
    return "\n".join(lines)


def _clip_head(clip) -> str:
    """The table's clip column's head and its gap ('' for a sweep that does not clip)."""
    return f"{clip:>10}  " if clip else ""


def _clip_cell(row, clip) -> str:
    return f"{row[clip]:>10.3g}  " if clip else ""


def by_setting(rows, seeds) -> list[dict]:
    """Per setting (lr, weight decay; and clip, where the sweep clips), the val MSE and R² of its members over the
    seeds: their mean and std (ddof 1, as pandas' ``.std()`` gives it: the spread of the seeds as a sample; NaN with
    one score), over the members that
    scored and did not diverge, ``scored`` of the ``seeds`` (members holds the grid's places of those trained).
    Ranked as the members are: by mean val MSE, a setting no member of which scored last."""
    groups, clip = {}, clip_of(rows[0]) if rows else None
    for r in rows:
        groups.setdefault((r["lr"], r["weight_decay"], r[clip] if clip else None), []).append(r)
    nan, out = float("nan"), []
    for (lr, wd, c), members in groups.items():
        kept = [r for r in members if not r["diverged"] and not numpy.isnan(r["val_mse"])]
        summary = {"lr": lr, "weight_decay": wd, **({clip: c} if clip else {}),
                   "members": sorted(r["member"] for r in members), "seeds": seeds, "scored": len(kept)}
        for key in ("val_mse", "val_r2"):
            values = numpy.array([r[key] for r in kept], dtype=numpy.float64)
            summary[key + "_mean"] = float(values.mean()) if kept else nan
            summary[key + "_std"] = float(values.std(ddof=1)) if len(kept) > 1 else nan
        out.append(summary)
    out.sort(key=lambda s: (not s["scored"], s["val_mse_mean"] if s["scored"] else numpy.inf))
    return out


def format_settings(settings) -> str:
    """by_setting's summary as printed, under the members' table: "-" for no score (a std of one seed), and the
    seeds column as "2/3" where some of a setting's members diverged, scored no epoch or were not trained."""
    clip = clip_of(settings[0]) if settings else None
    head = (f"{'rank':>4}  {'lr':>9}  {'weight_decay':>12}  {_clip_head(clip)}{'seeds':>5}  {'val MSE':>10}  "
            f"{'std':>10}  {'val R2':>7}  {'std':>7}")
    lines = ["by setting, over the seeds (mean and std of its members; std with ddof 1, as pandas' .std()):", head,
             "-" * len(head)]
    for i, s in enumerate(settings, 1):
        seeds = s["scored"] if s["scored"] == s["seeds"] else f"{s['scored']}/{s['seeds']}"
        r2, r2_std = s["val_r2_mean"], s["val_r2_std"]
        lines.append(f"{i:>4}  {s['lr']:>9.3g}  {s['weight_decay']:>12.3g}  {_clip_cell(s, clip)}{seeds:>5}  "
                     f"{_score(s['val_mse_mean'], '.5g'):>10}  {_score(s['val_mse_std'], '.3g'):>10}  "
                     f"{_score(r2, '.4f' if abs(r2) < 1e4 else '.4g'):>7}  {_score(r2_std, '.3g'):>7}")
    return "\n".join(lines)


def _earlier_best(args, row) -> str:
    """What the best line adds where the member's weights (the epoch it is ranked by) are not its best epoch's: that
    epoch and its val MSE, and why: a run without --early-stopping, which keeps them, or with it one that Ctrl-C
    stopped (the weights reached are kept, as the checkpoint written then holds them; early stopping puts the best
    epoch's back as a run ends). With --early-stopping the line said nothing of it, the table's "epoch" 6 beside
    "best epoch" 5 unexplained."""
    held, best = row["weights_epoch"], row["best_epoch"]
    if held is None or best is None or held == best:
        return ""
    why = ("the interrupt left each member the weights it had reached; early stopping puts the best epoch's back as "
           "a run ends" if args.early_stopping else "--early-stopping keeps each member's best epoch's weights")
    return f" (its best epoch, {best}, scored {row['val_curve'][best - 1]:.5g}: {why})"


def _score(value, spec) -> str:
    return "-" if numpy.isnan(value) else format(value, spec)


def plot_curves(rows, path) -> None:
    from ..atomic import new_figure, save_figure

    fig = new_figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    for r in rows[1:]:
        ax.plot(range(1, len(r["val_curve"]) + 1), r["val_curve"], color="0.7", lw=0.8)
    best = rows[0]
    ax.plot(range(1, len(best["val_curve"]) + 1), best["val_curve"], color="C3", lw=2,
            label=f"best: lr {best['lr']:.3g}, wd {best['weight_decay']:.3g}{_clip_words(best, ', ')}, "
                  f"seed {best['seed']}")
    epoch_axis(ax)
    ax.set_ylabel("validation MSE")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{len(rows)} members")
    fig.tight_layout()
    save_figure(fig, path)


def _members_of_the_grid(offset, group):
    """Members said to diverge while ensemble ``group`` (the grid's members from ``offset``) trains are named as the
    table and --csv name them, with their settings: "members 3 (lr 100, weight decay 0, seed 0) diverged ...", not
    by their place in the ensemble ("members [1]"), which a split grid numbers from 0 again."""
    from ..training.ensemble import members_named

    return members_named(lambda k: offset + k, lambda k: f"lr {group[k]['lr']:.3g}, weight decay "
                                                         f"{group[k]['weight_decay']:.3g}"
                                                         f"{_clip_words(group[k])}, seed {group[k]['seed']}")


def _clip_words(row, gap=", ") -> str:
    """A member's clip as its lines say it, after ``gap`` ("", ", clip norm 0.5")."""
    clip = clip_of(row)
    return f"{gap}{CLIP_WORDS[clip]} {row[clip]:.3g}" if clip else ""


def progress_of(args, g, groups) -> list:
    """The callbacks that show ensemble g's progress: none with --quiet (or --progress off), else its bar (or
    lines) naming what runs, "sweep (8 members) [cpu] epoch 1/5" (an Ensemble's own says "ensemble of 8"), and
    which ensemble where the grid is split into several: "sweep ensemble 1 (8 members)", as its other lines say."""
    from ..training.progress import lines_for
    from ..training.ensemble import EnsembleProgressBar

    verbose = verbose_of(args)
    if not verbose:
        return []
    which = f" ensemble {g}" if len(groups) > 1 else ""
    bar = EnsembleProgressBar(lines=lines_for(verbose), label=f"sweep{which} ({counted(len(groups[g]), 'member')})")
    bar.says_interrupted = False  # the sweep prints its own line: the ensemble reached, the --resume that goes on
    return [bar]


def _resume_group(path, save_to, group, g, args, backend, train, validation, record, distributed=False, progress=(),
                  reached=None):
    """Ensemble g of a saved sweep, continued from its checkpoint ``path`` to --epochs (a finished one trains
    no further), checkpointing to ``save_to``, data parallel under mpiexec: (the ensemble, its history).
    ``progress``: its progress bar (progress_of); ``reached``: the sweep's _Reached."""
    from .. import checkpoint

    ckpt = checkpoint.load_checkpoint(path, device=backend)
    seeds = [s["seed"] for s in group]
    if ckpt.model.n_models != len(group) or list(ckpt.model.seeds) != seeds:
        raise ValueError(f"--resume: {shell_word(path)} holds members seeded {list(ckpt.model.seeds)}, but the sweep's ensemble {g} "
                         f"is seeded {seeds}: the directory holds another sweep's checkpoints")
    done = position_words(ckpt.epoch, ckpt.state.batch, ckpt.settings.batches_per_epoch, args.epochs)
    print(f"ensemble {g}: {done} done ({shell_word(path)})", flush=True)
    left = ckpt.epoch < args.epochs  # (else the bar would say this line again: "nothing left to train")
    ckpt.model.graph = args.graph  # (a checkpoint records no graph: the run's --graph, recorded with its options)
    shown = verbose_of(args) if left else False
    history = ckpt.resume(*train, epochs=args.epochs, validation_data=validation, verbose=shown, checkpoint=save_to,
                          callbacks=[record, *(progress if left else ()), *([reached] if reached else [])],
                          distributed=distributed)
    return ckpt.model, history


def _read_saved_sweep(args) -> dict:
    """The metadata of the first checkpoint of the sweep being resumed (:func:`first_checkpoint`'s: it records the
    sweep's options), having read every checkpoint's (each once) to refuse --epochs below what an ensemble has
    trained, before any data is made or read and any ensemble trains: each ensemble's turn came after the earlier
    ones had trained (a wait for a large sweep, to be refused then). A checkpoint part-way through the epoch after
    --epochs is past it too."""
    from .. import checkpoint
    from ..training.state import FitSettings

    numbered = numbered_checkpoints(args.resume)
    if not numbered:
        first_checkpoint(args.resume)  # its refusal: not a directory, or no checkpoint in it
    metas = []
    for g, path in numbered:
        metas.append(checkpoint.read_meta(path))
        training = metas[-1].get("training")
        if not training:  # (gpunn.save's file under a checkpoint's name: it said "internal error: KeyError")
            raise ValueError(f"--resume {shell_word(args.resume)}: {shell_word(path)} holds a model only (no optimizer "
                             f"or position), not ensemble {g}'s run; it cannot be resumed")
        epoch, batch = training["position"]["epoch"], training["position"]["batch"]
        if epoch > args.epochs or (epoch == args.epochs and batch):
            done = position_words(epoch, batch, FitSettings.from_dict(training["settings"]).batches_per_epoch)
            needed = epoch + (1 if batch else 0)
            raise ValueError(f"--resume {shell_word(args.resume)}: ensemble {g} has already trained {done} "
                             f"({shell_word(path)}); --epochs {args.epochs} cannot shorten it: give --epochs {needed} "
                             "or more")
    return metas[0]


def _batch_size(args, meta, distributed) -> int:
    """The (per-rank) batch of the ensembles this run starts: --batch-size, or, resuming, the saved sweep's
    global batch split over this run's ranks (a sweep started under mpiexec -n 2 and resumed in one process
    trains its remaining ensembles at twice the per-rank batch, as its started ones resume)."""
    if meta is None:
        return args.batch_size
    from ..training.state import FitSettings
    from ..distributed.training import per_rank_batch_on_resume

    return per_rank_batch_on_resume(f"--resume {shell_word(args.resume)}", FitSettings.from_dict(meta["training"]["settings"]),
                                    _ranks() if distributed else 1)


def _started_shards(meta) -> int:
    """The rank shards a resumed sweep's first checkpoint (``meta``, or None) trained on: 0 when it read no
    shards (it started in one process)."""
    return (((meta or {}).get("training") or {}).get("source") or {}).get("shards", 0)


def _fresh_train(train, meta):
    """What the ensembles this run starts train on: ``train``, or, resuming a --data sweep started data
    parallel, its source read as the rank shards its started ensembles resume on (``ShardedSource(source,
    P)``, split over this run's ranks), so that a 2-rank sweep resumed in one process (or on other ranks) is the
    sweep it continues; its not-yet-started ensembles read the source in another order otherwise."""
    shards = _started_shards(meta)
    if not shards:
        return train
    from ..distributed.shard import ShardedSource

    return (ShardedSource(train[0], shards),)


def _check_resume_order(args, meta, groups, distributed) -> None:
    """Refuse to resume under mpiexec a --data sweep that started in one process while some of its ensembles
    have no checkpoint (not started yet): they would read the file as the ranks' shards, another row order
    than the one process's (which its started ensembles keep, every rank reading the file whole), and so
    train other members than the sweep being continued."""
    if not (distributed and args.data and meta is not None):
        return
    if _started_shards(meta):
        return  # started data parallel: the ensembles not started read its shards too (_fresh_train)
    missing = [g for g in range(len(groups)) if not os.path.exists(os.path.join(args.resume, CHECKPOINT.format(g)))]
    if missing:
        which = ", ".join(map(str, missing))
        raise ValueError(f"--resume {shell_word(args.resume)}: this --data sweep started in one process, and ensemble(s) {which} "
                         f"of {len(groups)} have not started; under mpiexec they would read {shell_word(args.data)} as the ranks' "
                         "shards, not in the order the sweep started with, and train other members than the sweep "
                         f"you are continuing. Resume it in one process (gpunn sweep --resume {shell_word(args.resume)}), or "
                         "start the sweep anew under mpiexec")


def _held_out_spread(backend, validation, source):
    """R²'s denominator per output, on the host: the held-out targets' sum of squares about their mean, as the
    members' validation computed it (gpunn.metrics: ``total_squares`` of the held-out rows ``validation``, or the
    moments of the held-out chunks of ``source``, a --data sweep's, read once more: weighted by their rows' weights
    where the source has them, --weights or --weight, as validation weighs them: in float64, a float32 model's too)."""
    from ..data.row_weights import WeightedMoments
    from ..data.stats import Moments
    from ..metrics import total_squares

    if validation is not None:
        return backend.to_host(total_squares(validation[1]))
    scale = source.weight_scale("validation")
    if scale is None:
        moments = Moments(source.n_outputs)
        for _, Y in source.validation_windows():
            moments.update(Y)
        return moments.m2
    moments = WeightedMoments(source.n_outputs)
    for _, Y, w in source.validation_windows(weights=scale, weights_apart=True):  # (w in float64, as validation's)
        moments.update(Y, w)
    return moments.m2


def _check_outputs(args):
    from .. import preflight

    reads = preflight.inputs_read(args)
    reports = check_report_outputs(args, reads)
    if args.save_best:  # a foreign file there is refused, as gpunn train --save refuses one
        preflight.check_checkpoint_output(args.save_best, "--save-best", reads=reads)
        _refuse_best_over_a_run(args.save_best)
    preflight.check_distinct([*reports, ("--save-best", args.save_best)])
    refuse_replacing_data(args, reports)


def _refuse_best_over_a_run(path) -> None:
    """--save-best naming the checkpoint of a training run (gpunn train --save's, a fit's ModelCheckpoint's, a sweep's
    ensemble): refused, as gpunn train --save refuses one without --overwrite. The best member, a model saved alone,
    replaced the run there without a word; an earlier sweep's best member (a model alone) is replaced as before."""
    if _training_meta(path) is not None:
        raise ValueError(f"--save-best {shell_word(path)} holds the checkpoint of a training run, which the best member "
                         f"would replace: save it elsewhere (gpunn info {shell_word(path)} says what the run is)")


def run(args) -> int:
    with contextlib.ExitStack() as opened, lr_schedule.said_in_options():  # (the source of --data, or a stream,
        return _run(args, opened)  # closed at the end, on an error too)


def _run(args, opened) -> int:
    from .. import checkpoint
    from ..data.stats import Standardizer
    from ..ensemble import Ensemble
    from ..training.callbacks import EarlyStopping
    from ..training.loop import TrainingDiverged, ValidationNotFinite
    from . import resume

    if args.rows < MIN_ROWS and not args.data:
        raise ValueError(f"--rows must be at least {MIN_ROWS} (a tenth is held out), got {args.rows}")
    optimizer = optimizer_of(args.optimizer, args.momentum)  # each member's lr and weight decay go on top
    clip, clips = clipping(args)  # and its clip
    schedule = lr_schedule.schedule_of(args)  # (resumed: the recorded options, for the ensembles not started)
    resolve_grid(args)
    resolve_task(args, FEATURES)
    distributed, root, device = _launch(args.device)
    if root:  # the one process that writes (under mpiexec, the other ranks print nothing and write nothing)
        _check_outputs(args)
        _check_plot_available(args.plot)
        save_dir = _check_save_dir(args)
    else:
        save_dir = args.save or args.resume
    if getattr(args, "starts_in_place", None):  # --save DIR --resume DIR, DIR holding no checkpoint yet
        print(resume.starting_line(args.starts_in_place, "sweep"), flush=True)
    backend = resolved_device(args, device)
    _check_precision(args, backend, args.dtype)  # before any data is generated or read
    meta = _read_saved_sweep(args) if args.resume else None
    batch_size = _batch_size(args, meta, distributed)
    if meta is not None and meta["training"]["settings"].get("ranks", 1) != (_ranks() if distributed else 1):
        args.batch_size = batch_size  # the per-rank batch it goes on at here, as --json's config and the
        # checkpoints' options record it (beside result.ranks), as gpunn train's does
    if args.data:  # read chunk by chunk, as gpunn train --data reads it (cut as the resumed sweep cut it)
        saved = types.SimpleNamespace(training=meta.get("training") or {}) if meta else None
        source, chosen = data_cli.make_source(args, backend, saved)
        opened.callback(source.close)
        if not source.validation_rows:  # a resumed sweep only: a new one's file is refused so by make_source
            raise ValueError(f"--data {shell_word(args.data)} is one chunk ({counted(source.rows, 'row')}), as the sweep was cut "
                             "when it was saved, so no chunk can be held out to rank the members on; a sweep needs "
                             "at least two: start it anew, without --resume, which cuts the file afresh")
        train, validation = (source,), None
        sizes, n_val = [source.n_features, *args.hidden, source.n_outputs], source.validation_rows
    else:
        check_task_memory(args, backend, args.hidden, ", or sweep over a file, read chunk by chunk (--data)")
        X, Y = datasets.make(args.task, args.rows, args.features, args.outputs, noise=args.noise, seed=args.seed,
                             device=backend, dtype=args.dtype)
        n_val = max(2, args.rows // 10)
        train, validation = (X[n_val:], Y[n_val:]), (X[:n_val], Y[:n_val])
        sizes = [args.features, *args.hidden, args.outputs]
        chosen = (f"data: task {args.task}, {args.rows - n_val:,} training rows, {n_val:,} validation rows"
                  f"{data_cli.unused_window(args)}")
    fresh = _fresh_train(train, meta)
    # the training rows' statistics, once for every ensemble of the split (fit scales a copy); a --data
    # source computes its own in the first fit and keeps them for the others
    statistics = (Standardizer.from_pieces([train], sizes[0], sizes[-1]) if args.standardize and not args.data
                  else None)
    settings = grid(args)
    if meta is not None:  # the split the sweep started with, whatever memory there is now
        per, why = int(resume.saved_options(meta)[resume.GROUP_KEY]), "as the sweep being resumed was split"
    else:
        per, why = members_per_ensemble(args, backend, sizes, n_val, len(settings))
        if distributed:  # every rank splits the grid alike, for the rank with the least memory free
            from ..distributed import world

            per, why = split_over_ranks(per, why, world())
    groups = [settings[i:i + per] for i in range(0, len(settings), per)]
    _check_resume_order(args, meta, groups, distributed)
    print(f"device: {backend.describe()}; {counted(len(settings), 'member')} ({len(args.lr)} lr x "
          f"{len(args.weight_decay)} weight decay x " + (f"{len(clips)} {CLIP_WORDS[clip]} x " if clip else "")
          + f"{args.seeds} seed(s)) of {sizes}", flush=True)
    print(chosen, flush=True)
    if len(groups) > 1:
        print(f"the grid is split into {len(groups)} ensembles of up to {counted(per, 'member')} ({why})", flush=True)
    if args.data and args.standardize and not (meta or distributed):  # (the first fit's pass, said and shown)
        data_cli.standardize_first(source, backend, args.dtype, verbose_of(args))
    record = None
    if save_dir:
        names = CHECKPOINT.format(0) + (f" ... {CHECKPOINT.format(len(groups) - 1)}" if len(groups) > 1 else "")
        # (a job's in-place line, --save DIR --resume DIR, goes on as it is: its log told it another command too)
        again = ("the same command goes on from them" if resume.goes_on_in_place(args)
                 else f"continue with gpunn sweep --resume {shell_word(save_dir)}")
        print(f"checkpoints: {os.path.join(save_dir, names)} ({again})", flush=True)
        record = resume.record(args, standalone_parser(), backend)
        record.options[resume.GROUP_KEY] = per
    rows, models, interrupted, all_diverged, timings = [], [], False, None, []
    cut = ""  # where the interrupted ensemble's epoch was cut: "4 of 9 batches", its members' weights held there
    for g, group in enumerate(groups):
        path = os.path.join(save_dir, CHECKPOINT.format(g)) if save_dir else None
        saved = os.path.join(args.resume, CHECKPOINT.format(g)) if args.resume else None
        offset, reached = g * per, _Reached()
        if distributed and g:  # an error every rank meets from here to the next fit's first collective (a checkpoint
            # of this ensemble they cannot read) said once, one rank's ending the job, as before the first fit
            from ..distributed.comm import next_collective_agrees

            next_collective_agrees()
        try:
            with _members_of_the_grid(offset, group):  # (a member that diverges named by its place in the grid)
                if saved and os.path.exists(saved):
                    ens, history = _resume_group(saved, path, group, g, args, backend, train, validation, record,
                                                 distributed, progress_of(args, g, groups), reached)
                else:
                    ens = Ensemble(sizes, len(group), activation=args.activation,
                                   output_activation=args.output_activation, bias=not args.no_bias, dtype=args.dtype,
                                   device=backend, seed=[s["seed"] for s in group], precision=args.precision,
                                   graph=args.graph)
                    ens.standardizer = statistics
                    callbacks = ([EarlyStopping(patience=args.patience, min_delta=args.min_delta)]
                                 if args.early_stopping else [])
                    if path:
                        callbacks += [checkpoint.ModelCheckpoint(path), record]
                    callbacks += [*progress_of(args, g, groups), reached]
                    history = ens.fit(*fresh, epochs=args.epochs, batch_size=batch_size,
                                      optimizer=optimizer, lr=[s["lr"] for s in group],
                                      weight_decay=[s["weight_decay"] for s in group], schedule=schedule,
                                      **({clip: [s[clip] for s in group]} if clip else {}),
                                      **({} if args.data else {"seed": args.seed}), validation_data=validation,
                                      callbacks=callbacks, verbose=verbose_of(args), distributed=distributed)
        except (TrainingDiverged, ValidationNotFinite) as exc:  # every member of this ensemble diverged, or none
            all_diverged = exc  # scores the rows finitely: in one ensemble of the whole grid they would be frozen
            # and listed as diverged (where another member scored), and so they are here
            print(f"ensemble {g}: " + ("no member scored the held-out rows finitely" if isinstance(
                exc, ValidationNotFinite) else "every member diverged") + "; they are ranked last", flush=True)
            rows += [{"member": offset + k, **s, "val_mse": float("nan"), "val_r2": float("nan"), "weights_epoch": None,
                      "partial_epoch": None,
                      "best_epoch": None, "stopped_early": False, "diverged": True, "val_curve": []}
                     for k, s in enumerate(group)]
            models.append(None)
            continue
        # an ensemble interrupted in its first epoch is ranked by the pass over the weights it holds (none where the
        # interrupt came before its first step or a second one cut that pass short: nothing to rank); its timing,
        # of the epochs it finished, is left out
        if history.get("val_loss") or reached.held is not None:
            rows += rank(group, lambda k, h=history: (h, k), offset, reached.held)
        if history.get("val_loss"):
            timings.append(timing(g, group, history, reached))
        models.append(ens)
        if history.interrupted:
            interrupted, cut = True, reached.cut
            resume_hint = ("; not saved: --save DIR keeps a sweep that gpunn sweep --resume DIR continues"  # (as train)
                           if not save_dir else f"; {resume.GOES_ON}" if resume.goes_on_in_place(args)  # a job's line
                           else f"; continue with gpunn sweep --resume {shell_word(save_dir)}")
            which = f"member {offset}" if len(group) == 1 else f"members {offset}-{offset + len(group) - 1}"
            where = (f" in ensemble {g} ({g + 1} of {len(groups)}: {which})"
                     if len(groups) > 1 else "") + f" after {reached.stopped_at}"
            if not rows:
                # (since 44944d1 a first epoch's weights are scored: this is a second interrupt in that pass, or a
                # first before any step; "before any member finished an epoch" had stopped saying why)
                print(f"interrupted{where}, before any member's weights were scored: nothing to rank{resume_hint}",
                      flush=True)
                return 130
            print(f"interrupted{where}: the table ranks what was trained so far{resume_hint}", flush=True)
            break
    if all_diverged is not None and all(r["diverged"] for r in rows):
        raise all_diverged  # as one ensemble of the whole grid fails when every member diverged
    if distributed and interrupted:
        ignore_late_interrupts()
    if not root:  # every rank holds the same table (rank 0's epoch logs); rank 0 alone prints and writes it
        return 130 if interrupted else 0
    # diverged members last (settings to avoid, even where early stopping restored their best epoch), the others by
    # validation MSE
    rows.sort(key=lambda r: (r["diverged"], r["val_mse"] if numpy.isfinite(r["val_mse"]) else numpy.inf))
    print()
    if args.standardize:
        print("(validation MSE in standardized target units; the saved best member takes raw inputs and predicts "
              "in the targets' units)")
    print(format_table(rows))
    partial = [r for r in rows if r["partial_epoch"]]
    if partial:
        print(f"* part-way through epoch {partial[0]['partial_epoch']} ({cut}), where the interrupt stopped it: the "
              "weights the members hold (and --save-best saves), scored by a pass of their own"
              + ("" if not numpy.isnan([r["val_mse"] for r in partial]).all()
                 else " (cut short by a second interrupt: unscored, -)"))
    settings = by_setting(rows, args.seeds)
    if args.seeds > 1:
        print()
        print(format_settings(settings))
    best = rows[0]
    ens = models[best["member"] // per]
    member = ens[best["member"] % per]
    scored = not numpy.isnan(best["val_mse"])  # (none: a second interrupt cut short the pass over the weights held)
    print(f"\nbest: lr {best['lr']:.3g}, weight decay {best['weight_decay']:.3g}{_clip_words(best)}, seed "
          f"{best['seed']}: val MSE "
          f"{best['val_mse']:.5g}, R2 {best['val_r2']:.4f} "
          + (f"part-way through epoch {best['partial_epoch']} ({cut})" if best["partial_epoch"]
             else f"at epoch {best['weights_epoch']}") + _earlier_best(args, best) if scored
          else "\nbest: none, no member's weights were scored", flush=True)
    try:  # a pass over the held-out targets (a --data sweep's chunks, read again), for the note alone
        spread = _held_out_spread(backend, validation, train[0])
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGUSR1: the sweep has trained, its outputs are still written
        spread, interrupted = None, True
        print("interrupted during the held-out pass, after training: the table ranks the trained sweep", flush=True)
    note = spread is not None and constant_targets_note(spread, (member.data_columns or {}).get("targets"), "val R2",
                                                        "the members by val MSE")
    if note:  # once: every member is scored on the same held-out rows
        print(note, file=sys.stderr, flush=True)
    table = [{k: v for k, v in r.items() if k != "val_curve"} for r in rows]
    if args.json:
        result = {"train_seconds": sum(t["train_seconds"] for t in timings), "device": backend.device,
                  "ranks": _ranks() if distributed else 1,  # (--batch-size in config is per rank)
                  "interrupted": interrupted, "ensembles": timings}
        text = json_text({"config": data_cli.json_config(args),
                          "units": "standardized targets" if args.standardize else "targets",  # of val_mse, val_r2
                          "members": rows, "settings": settings, "result": result})
        write_output(args.json, text, announce=True)
    if args.csv:
        write_output(args.csv, csv_text(list(table[0]), (r.values() for r in table)), announce=True)
    if args.plot:
        plot_curves(rows, args.plot)
        print(f"validation curves: {args.plot}")
    if args.save_best and not scored:
        print(f"--save-best {shell_word(args.save_best)}: not written, no member was scored")
    elif args.save_best:
        checkpoint.save(args.save_best, member)
        print(f"best member saved: {shell_word(args.save_best)} (gpunn predict {shell_word(args.save_best)} IN OUT)")
    return 130 if interrupted else 0  # as gpunn train: 130 for Ctrl-C
