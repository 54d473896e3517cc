"""``gpunn train``: train an MLP on a built-in synthetic regression or on your own data files, report held-out metrics and throughput."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

import numpy

from .. import backend as _backend, cpuload, datasets, metrics
from ..activations import ACTIVATIONS
from ..config import as_key
from ..hints import folding, shell_word
from ..model import PRECISIONS
from ..optim import OPTIMIZERS, default_of, make_optimizer, options_of
from ..training.state import position_words
from . import data as data_cli, lr_schedule
from .common import (DEVICE_NAMES, Parser, add_debug, add_progress, bounded, check_report_outputs, counted, csv_text,
                     device_name, dtype, epoch_axis, file_path, json_text, non_negative, number, positive,
                     refuse_replacing_data, verbose_of, write_output)

MIN_ROWS = 20  # a tenth is held out, and R² needs at least two held-out rows
DEFAULTS = dict(task="teacher", rows=2_000_000, features=None, outputs=1, noise=None, hidden="256,256",
                activation="relu", epochs=12, batch_size=256, optimizer="adam", lr=None)
# --lr and --weight-decay left unset are the optimizer's own defaults (gpunn.optim.default_of), in gpunn sweep too
LR_DEFAULT = "the optimizer's: 1e-3 for adam and adamw, 1e-2 for sgd, momentum and nesterov"
# --noise left unset is the task's own (gpunn.datasets.default_noise), as datasets.make's noise=None, in gpunn sweep too
NOISE_HELP = "target noise std (default: the task's: " + ", ".join(
    f"{datasets.default_noise(name)} for {name}" for name in sorted(datasets.TASKS)) + ")"
FEATURES = 32  # --features left unset, of a task that has no width of its own (teacher, linear); gpunn sweep's is 16


def features_help(features) -> str:
    """--features' help, for a command whose unset --features is ``features`` where the task has no width of its
    own (gpunn.datasets.default_features)."""
    own = {name: datasets.default_features(name) for name in sorted(datasets.TASKS)}
    widths = [f"{width} for {name}" for name, width in own.items() if width is not None]
    without = " and ".join(name for name, width in own.items() if width is None)
    return (f"input features of a synthetic task (default: the task's own, as in gpunn.datasets.make: "
            f"{', '.join(widths)}; {features} for {without}, which have none), or the feature columns of a --data "
            "table, comma-separated, quoted as --target's (default: every column but the targets)")


HIDDEN_FORM = "positive integers separated by commas or x (256,256 or 256x256)"  # --hidden's help and refusals


def _hidden_sizes(text: str) -> list[int]:
    """--hidden 256,256 (or 256x256); an empty value is no hidden layer: a linear model."""
    if not text.strip():
        return []
    parts = text.replace("x", ",").split(",")
    if not all(s.strip() for s in parts):  # 64,,64: a size left out, which was dropped without a word
        # '16,x' too: x separates sizes (64x64), which the refusal said no word of
        raise argparse.ArgumentTypeError(f"--hidden has an empty size in {text!r}: sizes are {HIDDEN_FORM}; write "
                                         "each size, or '' for no hidden layer")
    try:
        sizes = [number(s, int) for s in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"--hidden takes {HIDDEN_FORM}, got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


_hidden_sizes.toml_types = (int, str)  # hidden = 64 or "64,64" (a list of sizes: gpunn.config), not 64.0


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``train`` to the subparsers ``sub``; returns its parser."""
    t = sub.add_parser("train", help="train an MLP on a built-in synthetic regression or your own data "
                                     "(--data: .npy, .parquet, .csv)",
                       description="Train an MLP on a synthetic regression task (or on your own data with "
                                   "--data), then report held-out metrics "
                                   "and throughput. README says how long the defaults took, and on which CPU. "
                                   "Launched by mpiexec with P > 1 processes it trains data parallel (MPI on the "
                                   "CPU, NCCL on GPUs, one per rank): --batch-size is then per rank, rank 0 "
                                   "alone prints and writes.")
    d = DEFAULTS
    t.add_argument("--task", choices=sorted(datasets.TASKS), type=folding(datasets.TASKS, "task"), default=d["task"],
                   help="synthetic task, in any letter case (default: %(default)s)")
    t.add_argument("--rows", type=bounded(int, MIN_ROWS, inclusive=True, what=f"must be at least {MIN_ROWS}, got {{text}} (a tenth is held out, and R² needs 2 held-out rows)"), default=d["rows"], help="rows generated, 10%% held out (default: %(default)s)")
    t.add_argument("--features", type=data_cli.feature_count_or_names, default=d["features"],
                   help=features_help(FEATURES))
    t.add_argument("--outputs", type=positive(int), default=d["outputs"], help="targets per row (default: %(default)s)")
    t.add_argument("--noise", type=non_negative(float), default=d["noise"], help=NOISE_HELP)
    t.add_argument("--hidden", type=_hidden_sizes, default=d["hidden"],
                   help="hidden layer sizes, e.g. 256,256 or 256x256; '' for none, a linear model (default: %(default)s)")
    t.add_argument("--activation", choices=list(ACTIVATIONS), type=folding(ACTIVATIONS, "activation"), default=d["activation"],
                   help="hidden activation, in any letter case (default: %(default)s)")
    t.add_argument("--output-activation", choices=list(ACTIVATIONS), type=folding(ACTIVATIONS, "activation"), default="identity",
                   help="output layer's activation, in any letter case (default: %(default)s)")
    t.add_argument("--no-bias", action="store_true", help="layers without bias terms (Z = A W: README, \"The math\")")
    t.add_argument("--epochs", type=positive(int), default=d["epochs"], help="passes over the training rows (default: %(default)s)")
    t.add_argument("--batch-size", type=positive(int), default=d["batch_size"],
                   help="rows per step; per rank under mpiexec (default: %(default)s)")
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), type=folding(OPTIMIZERS, "optimizer"), default=d["optimizer"],
                   help="optimizer, in any letter case (default: %(default)s)")
    t.add_argument("--lr", type=positive(float), default=d["lr"], help=f"learning rate (default: {LR_DEFAULT}); the schedule scales it, and --schedule onecycle rises to it: "
                        "its peak, OneCycleLR's max_lr")
    lr_schedule.add_arguments(t)
    t.add_argument("--weight-decay", type=non_negative(float), default=None, help="weight decay: L2 for sgd, momentum, nesterov and adam, decoupled for adamw "
                   "(default: 0; adamw: 0.01, as in PyTorch)")
    t.add_argument("--momentum", type=non_negative(float), default=None, help="momentum of sgd, momentum and nesterov (default: 0.9 for momentum and nesterov, 0 for sgd)")
    t.add_argument("--clip-norm", type=positive(float), default=None, metavar="C",
                   help="clip the gradients before each step to a global 2-norm of at most C, all of them as one "
                        "vector, as PyTorch's clip_grad_norm_(max_norm=C) (default: no clipping)")
    t.add_argument("--clip-value", type=positive(float), default=None, metavar="V",
                   help="clamp each gradient element to [-V, V] before each step, as PyTorch's clip_grad_value_ "
                        "(default: no clipping; one of --clip-norm and --clip-value)")
    t.add_argument("--device", type=device_name, default="auto", help=f"auto, {DEVICE_NAMES} (default: %(default)s; env GPUNN_DEVICE)")
    t.add_argument("--dtype", type=dtype, default="float32", help="float32 or float64, or any NumPy spelling of them "
                   "(f4, single, double...) (default: %(default)s)")
    t.add_argument("--precision", choices=PRECISIONS, type=folding(PRECISIONS, "precision", any_case=False),
                   default="float32",
                   help="GPU only: tf32 runs the matrix products on TF32 tensor cores; bf16 keeps activations in "
                        "bfloat16 with float32 master weights, optimizer state and loss (default: %(default)s)")
    t.add_argument("--graph", action=argparse.BooleanOptionalAction, default=None,
                   help="capture each training step as a CUDA graph and replay it per batch: the default on a CUDA "
                        "GPU where the step can be captured (--graph forces it, with a warning where it cannot "
                        "capture; --no-graph turns it off)")
    t.add_argument("--seed", type=non_negative(int), default=0, help="seeds data, initialisation and shuffles (default: %(default)s)")
    t.add_argument("--json", type=file_path, metavar="PATH", help="also write the history and final metrics as JSON, the best epoch "
                   "and its val_loss among them (result's best_epoch, best_val_loss; the held-out metrics null where "
                   "an interrupt cut their pass short, result's interrupted true; result's partial_epoch the epoch an "
                   "interrupt cut short, whose steps so far the scored weights hold); - for standard output: the "
                   "lines of text then go to stderr, so gpunn train --json - | jq works; a name that says another "
                   "kind of file, .csv or .npz..., is refused")
    t.add_argument("--csv", type=file_path, metavar="PATH", help="also write the history as CSV, one row per epoch (- for standard "
                   "output; a name that says another kind of file, .json or .npz..., is refused)")
    add_progress(t)
    r = t.add_argument_group("runs you can trust")
    r.add_argument("--config", type=file_path, metavar="TOML", help="read options from a TOML file (keys are these options' long "
                   "names, top level or in a [train] table; a [sweep] table, gpunn sweep's, is skipped); flags on the command line override it; a key this run would not use (patience without "
                   "early-stopping, a synthetic task's with --data) is noted, not refused")
    r.add_argument("--save", type=file_path, metavar="PATH", help="write a resumable checkpoint (.npz, atomic) every epoch, at the end "
                   "and on Ctrl-C, and the run's resolved config beside it as PATH.toml (without --json, --csv, --plot, "
                   "--progress, --quiet: each command's own; nor the options the run did not use); a name that says a "
                   "data file, report or plot (.csv, .json...) is refused")
    r.add_argument("--overwrite", action="store_true",
                   help="let --save replace the checkpoint of an earlier run (refused without it: go on with that "
                        "run with --resume PATH, or save elsewhere)")
    r.add_argument("--resume", type=file_path, metavar="PATH", help="continue the run saved in PATH exactly: its checkpoint records "
                   "every option; --epochs can extend it, --save, --json, --csv, --plot, --progress, --quiet and --device (same kind) apply, "
                   "--data, --targets and --weights may say where its files are now (the same data), "
                   "any other option that differs from the recorded one is refused (--batch-size may also give the "
                   "per-rank batch the run goes on at on another number of ranks: its global batch over them); keeps "
                   "saving to PATH unless --save says otherwise. With --save PATH too (a batch job's line, run again "
                   "when the job is requeued): a PATH not yet written starts the run with the options given, and a "
                   "run that has trained all its epochs, or that early stopping ended, says so with status 0 (where "
                   "a signal cut its held-out pass, "
                   "or its --json, --csv or --plot file is missing, it makes that pass again and writes them)")
    r.add_argument("--checkpoint-every", type=positive(int), default=1, help="epochs between the checkpoints --save writes (default: %(default)s)")
    r.add_argument("--early-stopping", action="store_true", help="stop when the validation loss stops improving; keep the best weights")
    r.add_argument("--patience", type=positive(int), default=5, help="with --early-stopping: epochs without improvement before stopping (default: %(default)s)")
    r.add_argument("--min-delta", type=non_negative(float), default=0.0, help="with --early-stopping: the smallest fall of the validation loss that counts as an improvement (default: %(default)s)")
    r.add_argument("--reduce-lr-patience", type=positive(int), default=None, help="halve the learning rate after this many epochs without improvement of the validation loss (of the "
                        "training loss where no rows are held out: see the data: line) (default: off)")
    r.add_argument("--plot", type=file_path, metavar="PNG", help="draw the training and validation loss curves: .png, .pdf or .svg "
                   "(needs matplotlib: gpunn[plot])")
    data_cli.add_arguments(t)
    add_debug(t)
    t.set_defaults(func=run)
    return t


def standalone_parser() -> argparse.ArgumentParser:
    """The ``train`` parser on its own (what a saved config is resolved against)."""
    return add_parser(Parser(prog="gpunn").add_subparsers())


def _check_plot_available(path):
    if path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib, which is not installed: pip install 'gpunn[plot]'") from None


def plot_history(history, path) -> None:
    from ..atomic import new_figure, save_figure

    fig = new_figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(history["epoch"], history["loss"], marker=".", label="training loss")
    if "val_loss" in history:
        ax.plot(history["epoch"], history["val_loss"], marker=".", label="validation loss")
    epoch_axis(ax)
    ax.set_ylabel("loss (mean squared error, summed over outputs)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def history_csv(history) -> bytes:
    """The per-epoch history as CSV: a header row (epoch, loss, lr, time_s, samples_per_s, then the val_*
    columns a run with held-out rows has), then one row per epoch; a non-finite value is an empty field."""
    columns = [k for k, v in history.items() if isinstance(v, list) and len(v) == len(history["epoch"])]
    return csv_text(columns, zip(*(history[k] for k in columns)))


def constant_targets_note(ss_tot, target_names=None, r2_said="r2", judge="the fit by mse and mae") -> str | None:
    """A note for held-out targets that do not vary (a constant column, or one value in every held-out row): R² =
    1 - (squared error) / (the targets' sum of squares about their mean) divides by 0 there, and r2 counts such an
    output as 0 (1 where predicted exactly), scikit-learn's r2_score convention (force_finite), which printed
    "r2 0.0000" with no word of why. ``ss_tot``: that sum of squares per output, on the host, as the held-out
    evaluation computed it; ``target_names``: the targets' column names, or None; ``r2_said``: what the output
    calls the score (train's "r2", sweep's "val R2"); ``judge``: what to judge by instead. None where every
    output varies."""
    ss_tot = numpy.asarray(ss_tot).reshape(-1)
    constant = numpy.flatnonzero(ss_tot == 0)
    if not constant.size:
        return None
    convention = f"scikit-learn's r2_score convention; judge {judge}"
    if ss_tot.size == 1:
        return ("note: the held-out targets are all the same value, so R² (1 - squared error / their variance) is "
                f"undefined: {r2_said} says 0 (1 where they are predicted exactly), {convention}")
    several = constant.size > 1
    which = (f"target{'s' * several} {', '.join(repr(target_names[j]) for j in constant)}" if target_names
             else f"output{'s' * several} {', '.join(str(j) for j in constant)}")
    return (f"note: the held-out values of {which} are all the same, so {'their' if several else 'its'} R² is "
            f"undefined: {r2_said}, the mean of the {ss_tot.size} outputs' R², counts {'them' if several else 'it'} "
            f"as 0 (1 where predicted exactly), {convention}")


def _graph_note(model) -> str:
    """", CUDA graph" when the steps ran as a captured graph; ", no CUDA graph (why)" when --graph asked
    for one that did not capture; nothing otherwise (the CPU's ordinary step)."""
    trainer = model.graph_trainer
    if trainer is not None and trainer.captured:
        return ", CUDA graph"
    if model.graph and trainer is not None:
        return f", no CUDA graph ({trainer.reason})"
    return ""


def idle_options(args, resumed_too=False) -> dict:
    """The options this run would not use, whoever set them, as dest -> (what the option does, what would use it,
    why this run does not): early stopping's settings without --early-stopping, --checkpoint-every without a
    checkpoint to write, a table's or file's targets without --data, --window for rows held in memory (--stream
    off; every synthetic task of ``gpunn sweep``), and with --data the synthetic task's options, --features as a
    count among them: not those of a resumed run, which the resume's own check compares, unless ``resumed_too``
    (the saved PATH.toml, which leaves them out as the first run's did)."""
    idle = {}
    if not getattr(args, "data", None):
        for dest, what in (("target", "targets"), ("targets", "targets"), ("weight", "rows' weights"),
                           ("weights", "rows' weights")):
            idle[dest] = (f"names the {what} of a --data file, and this run trains on the synthetic task {args.task}",
                          ": add --data PATH (or drop it)", f"this run trains on the synthetic task {args.task}")
        if getattr(args, "stream", None) == "off":
            sweep = getattr(args, "command", None) == "sweep"  # which has no --stream
            held, add = ("", "--data") if sweep else (" (--stream off)", "--data or --stream on")
            idle["window"] = ("sets how many chunks of a --data file or a stream are shuffled together, and this run "
                              f"holds its rows in memory{held}", f": add {add} (or drop it)",
                              f"this run holds its rows in memory{held}")
    elif resumed_too or not getattr(args, "resume", None):
        for dest in data_cli.TASK_OPTIONS + (() if isinstance(args.features, list) else ("features",)):
            idle[dest] = ("sets up a synthetic task, which --data replaces",
                          "; drop it (the file gives the rows, features and outputs)", "--data replaces the synthetic task")
    if not args.early_stopping:
        for dest in ("patience", "min_delta"):
            idle[dest] = ("sets early stopping, which this run does not use", ": add --early-stopping (or drop it)",
                          "this run does not use early stopping")
    idle.update(lr_schedule.idle_options(args))
    if not (args.save or args.resume):
        idle["checkpoint_every"] = ("sets how often the checkpoint is written, and this run writes none",
                                    ": add --save PATH (or drop it)", "this run writes no checkpoint")
    return idle


def _a_column_so_named(dest, args) -> str:
    """How to name a --data table's column whose name is a whole number (a year: 2020,2021,price), which --features
    2021 reads as a count: the refusal said only "drop it". "" for another option, or an .npy pair (no names)."""
    if dest != "features" or args.data.lower().endswith(".npy"):
        return ""
    quoted = '"%d"' % args.features
    return f", or, to name the column {args.features}, write it in double quotes: --features {shell_word(quoted)}"


def refuse_idle_options(given: dict, args, config=None, path=None) -> None:
    """An option written on the command line (``given``) that this run would not use (idle_options) is refused by
    name. One that a --config file (``path``, its options ``config``) gives is a note on stderr naming the file
    and key, not a refusal: a config file is shared between runs (--save writes one to be fed back in, with flags
    that override it: --data over a synthetic run's task, say), and a key the run leaves unused says so. A
    table's --features names without --data are refused whoever gives them (they would fail the task)."""
    from ..config import as_key
    from ..distributed import launched_rank

    if not getattr(args, "data", None) and isinstance(args.features, list):
        # the one check, for train and sweep (parse_args calls this before run): before the task is built from it
        # (friedman1's own check) or a stream is sized by it
        raise ValueError("--features names columns of a --data table; for a synthetic task give a count")
    idle = idle_options(args)
    for dest, (what, use, _) in idle.items():
        if dest in given:
            raise ValueError(f"--{dest.replace('_', '-')} {given[dest]} {what}{use}{_a_column_so_named(dest, args)}")
    unused = {}
    for dest, value in (config or {}).items():
        if dest in idle and dest not in given and dest != "window":  # (the data: line says so: data.unused_window)
            unused.setdefault(idle[dest][2], []).append(as_key(dest.replace("_", "-"), value))
    if unused and launched_rank() != 0:  # under mpiexec rank 0 says it, once; the other ranks are silent
        return
    for why, keys in unused.items():
        print(f"note: {path}: {', '.join(keys)} not used: {why}", file=sys.stderr, flush=True)


def saved_position(path) -> str:
    """Where the run saved in ``path`` stopped part-way through an epoch, as ", at 1 epoch and 3 of 27 batches of
    epoch 2" (read from its metadata alone); "" for a checkpoint at an epoch's end."""
    words, part_way = _position_saved(path)
    return f", at {words}" if part_way else ""


def _position_saved(path) -> tuple[str, bool]:
    """(where the run saved in ``path`` is, "2 epochs" or "1 epoch and 3 of 27 batches of epoch 2"; whether that is
    part-way through an epoch), read from its metadata alone."""
    from ..checkpoint import read_meta
    from ..training.state import FitSettings

    training = read_meta(path).get("training") or {}
    position = training.get("position", {})
    per_epoch = FitSettings.from_dict(training["settings"]).batches_per_epoch
    return position_words(position["epoch"], position.get("batch", 0), per_epoch), bool(position.get("batch"))


def _batch_trained(args, ckpt, distributed, rows):
    """The (per-rank) batch this run trained at: --batch-size, at most the ``rows`` training rows (over the
    ranks, data parallel) as fit caps it; a resumed run keeps its checkpoint's global batch, split over this
    run's ranks (a data-parallel checkpoint continued in one process trains at the global batch)."""
    if ckpt is None:
        return min(args.batch_size, -(-rows // (_ranks() if distributed else 1)))
    return ckpt.settings.batch_size * ckpt.settings.ranks // (_ranks() if distributed else 1)


def _ranks():
    from ..distributed import launched_size

    return launched_size()


def _launch(device):
    """(distributed, is rank 0, device) for this process. Under ``mpiexec -n P`` with P > 1 the run is
    data parallel (said at start by rank 0); the other ranks print nothing (errors still reach stderr),
    and with GPUs each rank takes the one its local rank picks."""
    if _ranks() == 1:
        return False, True, device
    import sys
    import warnings

    from ..distributed import launched_rank, local_device

    root = launched_rank() == 0
    if not root:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
        warnings.simplefilter("ignore")
    print(f"launched by MPI with {_ranks()} processes: training data parallel, --batch-size per rank", flush=True)
    return True, root, local_device(device) if device in ("auto", "cuda") else device


def ignore_late_interrupts():
    """After a data-parallel run stopped on Ctrl-C: mpiexec hands Ctrl-C to each rank in turn, and this rank's
    may still be on its way after the ranks agreed to stop on another's; it would end the job (MPI_Abort)
    while rank 0 writes the outputs. From here Ctrl-C (and SIGTERM, which the launcher forwards to each rank
    alike) is ignored; mpiexec's second Ctrl-C still ends the job at once."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _check_outputs(args):
    """Every output path of a train run, checked before anything is generated or trained."""
    from .. import preflight

    save = args.save or args.resume
    if args.save:
        # (over the checkpoint being resumed is how a run continues in place)
        preflight.check_checkpoint_output(args.save, "--save", reads=preflight.inputs_read(args, resume=False))
        _check_replaced_run(args)
    if save:
        preflight.check_output(save + ".toml", "--save (its config)")
    # (--json Y.npy overwrote the --targets file the run had trained on)
    reports = check_report_outputs(args, reads=preflight.inputs_read(args))
    preflight.check_distinct([("--save", save), *reports, ("--config", args.config)])
    refuse_replacing_data(args, reports)


def outputs_left(args, epochs) -> str | None:
    """What the outputs of an in-place run (--save PATH --resume PATH) that has trained its ``epochs`` lack, in words,
    or None: a --json file that records a run cut short (a signal in its held-out pass: null held-out metrics) or
    fewer epochs (an earlier process's: this one was killed before writing it), or that is missing or no record; a
    --csv file of fewer epochs, or missing; a --plot file missing. An output to stdout cannot be read back: not
    counted."""
    import json

    for option in ("json", "csv", "plot"):
        path = getattr(args, option, None)
        if not path or path == "-":
            continue
        said = f"--{option} {shell_word(path)}"
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace") if option != "plot" else ""
        except OSError:
            return f"{said} is not written"
        if option == "json":
            try:
                result = json.loads(text)["result"]
                interrupted, recorded, scored = result["interrupted"], result["epochs"], result.get("val_mse")
            except (ValueError, KeyError, TypeError):
                return f"{said} holds no record of it"
            if recorded != epochs:
                return f"{said} records {counted(recorded, 'epoch')} of its {epochs}"
            if interrupted and scored is None:  # (a Ctrl-C in the last epoch's last batch ends a run whole, scored)
                return f"{said} records it cut short (its held-out pass, no held-out metrics)"
        elif option == "csv" and len([line for line in text.splitlines() if line.strip()]) - 1 != epochs:
            return f"{said} does not hold its {counted(epochs, 'epoch')}"
    return None


def _check_replaced_run(args) -> None:
    """--save naming the checkpoint of an earlier run that this run does not resume: refused without --overwrite
    (a note with it), as gpunn sweep refuses to save over a saved sweep. Replacing it loses that run, and its first
    checkpoint (an epoch's end, or a Ctrl-C's) did so before a note at the start could be acted on: gpunn train
    --config run.npz.toml, re-run to go on, records save = "run.npz" and started over it."""
    from .. import preflight

    if not (os.path.isfile(args.save) and preflight.file_kind(args.save) == "zip"
            and not preflight.not_a_checkpoint(args.save)
            and not (args.resume and preflight.same_file(args.resume, args.save))):
        return
    said = (f"{shell_word(args.config)}'s {as_key('save', args.save)}" if _from_config(args, "save")
            else f"--save {shell_word(args.save)}")
    if not args.overwrite:
        raise preflight.PreflightError(
            f"{said} holds the checkpoint of an earlier run, which this run would replace: go on with that run with "
            f"gpunn train --resume {shell_word(args.save)}, save this one elsewhere, or add --overwrite to replace it")
    print(f"note: {said} replaces the checkpoint of an earlier run there (--overwrite)", file=sys.stderr, flush=True)


def _check_precision(args, backend, dtype) -> None:
    """--precision against the device and the dtype, in the command's words, before any data is generated or
    read (MLP checks it too, but only once the data is there: seconds to minutes for the default 2M rows)."""
    if args.precision == "float32":
        return
    if not backend.is_gpu:
        there = ("give --precision float32 there (the command line overrides the file)" if _from_config(args, "precision")
                 else "leave --precision at float32 there")
        raise ValueError(f"{_said(args, 'precision')} runs the matrix products on NVIDIA tensor cores and needs a "
                         f"CUDA GPU, and this run is on {backend.device}: {there}")
    if numpy.dtype(dtype) != numpy.float32:
        raise ValueError(f"{_said(args, 'precision')} keeps float32 master weights and needs --dtype float32, "
                         f"got {numpy.dtype(dtype).name}")


def _from_config(args, dest) -> bool:
    """Whether the --config file set option ``dest`` (the command line did not)."""
    return dest in getattr(args, "config_keys", ())


def _said(args, dest) -> str:
    """Option ``dest`` as it was given: ``--precision bf16``, or ``run.toml: precision = "bf16"`` where the --config
    file set it (a GPU machine's RUN.npz.toml on a laptop: the user typed no --precision)."""
    value = getattr(args, dest)
    if _from_config(args, dest):
        return f"{shell_word(args.config)}: {as_key(dest.replace('_', '-'), value)}"
    return f"--{dest.replace('_', '-')} {value}"


def resolved_device(args, device):
    """The backend of ``device``; a device the --config file set and this machine has not is refused naming the
    file's key, which --device on the command line overrides (as GPUNN_DEVICE's refusal names the variable)."""
    try:
        return _backend.resolve(device)
    except _backend.DeviceError as exc:
        if not _from_config(args, "device"):
            raise
        raise _backend.DeviceError(f"{_said(args, 'device')}: {str(exc).rstrip('.')}; --device on the command line "
                                   "overrides the file") from None


def resolve_task(args, features) -> None:
    """An unset --noise is the task's own, and so is an unset --features where the task has a width of its own
    (friedman1's 10, sinusoid's 1), ``features`` (the command's) where it has none; recorded so: a saved run
    records the data it was made of. (With --data the task's options go unused, as before.)"""
    if args.noise is None:
        args.noise = datasets.default_noise(args.task)
    if args.features is None:
        args.features = datasets.default_features(args.task) or features


def optimizer_of(name, momentum=None, **settings):
    """Optimizer ``name`` with --momentum (and ``settings``), made before the data is generated or read:
    --momentum with an optimizer that has none is refused at once, by its flag (train and sweep)."""
    if momentum is not None and "momentum" not in options_of(OPTIMIZERS[name]):
        takes = [n for n, cls in OPTIMIZERS.items() if "momentum" in options_of(cls)]
        raise ValueError(f"--momentum {momentum}: --optimizer {name} has no momentum; "
                         f"{', '.join(takes)} do (or drop --momentum)")
    return make_optimizer(name, momentum=momentum, **settings)


def _optimizer(args):
    """The optimizer of --optimizer, --lr, --weight-decay, --momentum, --clip-norm and --clip-value (see
    optimizer_of)."""
    if args.clip_norm is not None and args.clip_value is not None:
        raise ValueError(f"--clip-norm {args.clip_norm:g} and --clip-value {args.clip_value:g}: gpunn clips one way at "
                         "a time; give one of them")
    return optimizer_of(args.optimizer, args.momentum, lr=args.lr, weight_decay=args.weight_decay,
                        clip_norm=args.clip_norm, clip_value=args.clip_value)


def check_task_memory(args, backend, hidden, hint, graph=False):
    """Refuse a synthetic task whose rows, their shuffled copy and a model of ``hidden`` layers (a CUDA graph's
    buffers with ``graph``) cannot all fit, before a row is generated (Linux overcommits: NumPy's allocation may
    succeed and the process be killed later); ``hint``: the command's way out. gpunn train and gpunn sweep (one
    member: the grid's split, members_per_ensemble, is counted once the data are made)."""
    from .. import preflight

    sizes = [args.features, *hidden, args.outputs]
    need = preflight.train_memory(args.rows, args.features, args.outputs, numpy.dtype(args.dtype).itemsize, sizes,
                                  args.batch_size, graph=graph, standardize=args.standardize)
    preflight.check_train_memory(need, args.rows, backend, hint=hint)


def throughput(history, done_before=0) -> tuple[float, float, bool]:
    """(samples/s, seconds, whether the first epoch was left out) of the epochs this process trained (from
    ``done_before`` on; a resume's earlier epochs ran in another process): the median epoch, leaving out the
    first when there are others, since it also pays the process's start-up (Numba's first dispatch on the
    CPU, 0.5-0.9 s here; kernel compilation on a GPU), and their seconds. The whole history's when this
    process finished no epoch."""
    rates, times = history["samples_per_s"][done_before:], history["time_s"][done_before:]
    if not rates:
        rates, times = history["samples_per_s"], history["time_s"]
    after_first = len(rates) > 1
    return float(numpy.median(rates[1:] if after_first else rates)), float(sum(times)), after_first


def _save_config(args, save_path) -> None:
    """The run's resolved config beside its checkpoint, ``PATH.toml``, written once the run has a checkpoint. It
    holds the run (what the checkpoint records, and where it is saved), not this process's own outputs and display
    (--json, --csv, --plot, --progress, --quiet): a resume's "--csv -" would otherwise replace the first run's, and
    --config would print a CSV; nor the options it left unused (idle_options: with --data, the synthetic task's, also
    where a resume's checkpoint recorded them), which the file fed back in would note."""
    from .. import config as cfgmod
    from . import resume

    idle = idle_options(args, resumed_too=True)
    resolved = {k: v for k, v in lr_schedule.as_recorded(cfgmod.resolved(args, standalone_parser())).items()
                if k not in resume.RUN_LOCAL and k not in idle}
    resolved["save"] = save_path
    for name in resume.MOVABLE:  # absolute, as the checkpoint records them: --config works from anywhere
        if resolved.get(name):
            resolved[name] = os.path.abspath(resolved[name])
    cfgmod.save(save_path + ".toml", resolved)


def _config_after_failure(args, save_path, tell_kept=True):
    """An exit callback (ExitStack.push) that, where the command fails (a second Ctrl-C, which raises at once; a
    diverged run) after it wrote its checkpoint, writes the config beside it, as a run that returns does: the
    checkpoint written, its PATH.toml was not. Not where the checkpoint is another run's, left as it was.
    ``tell_kept``: a failure of the disk or the data (an OSError, a DataError) after a checkpoint of this run (one
    it wrote, or the one it resumed in place) gets where that checkpoint is, and the command that goes on from it,
    added to its line (_kept_words: a full disk said "cannot write run.npz: No space left on device" alone, as if
    the run were lost)."""
    def identity():
        try:
            st = os.stat(save_path)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_mtime_ns  # (each checkpoint is a new file, renamed over the last)

    before = identity()

    def on_exit(exc_type, exc, tb):
        now = identity()
        if exc_type is not None and now not in (None, before):
            with contextlib.suppress(Exception):  # the error that ended the run is the one to tell
                _save_config(args, save_path)
        from ..data.errors import DataError

        ours = now is not None and (now != before or (args.resume and os.path.abspath(args.resume)
                                                       == os.path.abspath(save_path)))
        if tell_kept and ours and isinstance(exc, (OSError, DataError)):
            with contextlib.suppress(Exception):  # (words the error cannot take are left out, not raised)
                exc.gpunn_kept = _kept_words(args, save_path, on_exit.trained)
        return False
    on_exit.trained = False  # set once the fit has returned (the run has no more to train)
    return on_exit


def _kept_words(args, save_path, trained) -> str:
    """Where the checkpoint in ``save_path`` is, and what goes on from it: "checkpoint in run.npz, after 2 epochs
    (continue with gpunn train --resume run.npz once that is fixed)"; where the fit had ``trained`` (a failure in the
    outputs' writes after it), where it is alone."""
    from . import resume

    where = f"checkpoint in {shell_word(save_path)}, after {_position_saved(save_path)[0]}"
    if trained:
        return where
    again = (resume.GOES_ON if resume.goes_on_in_place(args)
             else f"continue with gpunn train --resume {shell_word(save_path)}")
    return f"{where} ({again} once that is fixed)"


def run(args) -> int:
    with contextlib.ExitStack() as opened, lr_schedule.said_in_options():  # (the source of --data, or a stream,
        return _run(args, opened)  # closed at the end, on an error too)


def _run(args, opened) -> int:
    from .. import checkpoint as io
    from ..data.binding import standardize_arrays
    from ..model import MLP
    from ..training import callbacks as cbmod
    from . import resume

    for option in ("lr", "weight_decay", "momentum"):  # resolved, so that the checkpoint, its PATH.toml and --json
        if getattr(args, option) is None:              # record what it trains at (None: the optimizer has no such)
            setattr(args, option, default_of(args.optimizer, option))
    schedule = None if args.resume else lr_schedule.schedule_of(args)  # (a resumed run's is its checkpoint's)
    resolve_task(args, FEATURES)
    distributed, root, device = _launch(args.device)
    if root:  # the one process that writes them (under mpiexec, another node may not even have the directory)
        _check_outputs(args)
        _check_plot_available(args.plot)
    ckpt = None
    if getattr(args, "starts_in_place", None):  # --save PATH --resume PATH, PATH not yet written
        print(resume.starting_line(args.starts_in_place), flush=True)
    if getattr(args, "outputs_left", None):  # --save PATH --resume PATH, its run ended and its outputs not all written
        print(args.outputs_left, flush=True)
    if args.resume:
        ckpt = io.load_checkpoint(args.resume, device=device)
        done = position_words(ckpt.epoch, ckpt.state.batch, ckpt.settings.batches_per_epoch)
        print(f"resuming {shell_word(args.resume)}: {done} done; model, optimizer, batch size and seed come from the checkpoint",
              flush=True)
        here, run_global = _ranks() if distributed else 1, ckpt.settings.batch_size * ckpt.settings.ranks
        if ckpt.settings.ranks != here and run_global % here == 0:  # (another split: the fit refuses it, naming those
            # that work) the per-rank batch the run goes on at, as its checkpoint's options, PATH.toml and --json's
            # config (per rank, beside result.ranks) record it: a 2-rank run's 128 goes on at 256 in one process
            args.batch_size = run_global // here
    backend = ckpt.model.backend if ckpt else resolved_device(args, device)
    if ckpt:  # --precision is the recorded one: the library's refusal of a resume it cannot run here
        io.check_resume_precision(ckpt)
    else:
        _check_precision(args, backend, args.dtype)
    optimizer = None if ckpt else _optimizer(args)
    if not (ckpt or args.data):  # the task's own checks (friedman1's 5 features), before its rows are generated
        datasets.get_task(args.task, args.features, args.outputs, args.noise, args.seed)
    t0 = time.perf_counter()  # the set-up: a file's source is made here (a CSV file parsed to index it), a task's
    source, chosen = data_cli.make_source(args, backend, ckpt)  # rows are generated below
    if source is not None:
        opened.callback(source.close)
    if source is None:
        check_task_memory(args, backend, ckpt.model.layer_sizes[1:-1] if ckpt else args.hidden,
                          ", or stream the rows instead (--stream auto or on)", data_cli.counts_graph(args, backend))
    print(f"device: {backend.describe()}", flush=True)
    print(chosen, flush=True)
    if source is None:
        X, Y = datasets.make(args.task, args.rows, args.features, args.outputs, noise=args.noise, seed=args.seed,
                             device=backend, dtype=args.dtype)
        n_val = max(1, args.rows // 10) if args.rows > 1 else 0
        X_train, Y_train, X_val, Y_val = X[n_val:], Y[n_val:], X[:n_val], Y[:n_val]
        n_in, n_out, n_train = args.features, args.outputs, len(X_train)
    else:
        n_in, n_out, n_train, n_val = source.n_features, source.n_outputs, source.rows, source.validation_rows
    if args.early_stopping and not n_val:
        raise ValueError("--early-stopping watches the held-out rows, and this run has none (see the data: line); "
                         "drop --early-stopping, or train on more rows")
    sizes = [n_in, *args.hidden, n_out]
    if args.data and not ckpt:  # a file's widths are known only now (a streamed task's were checked in make_source)
        from .. import preflight

        preflight.check_model_memory(sizes, args.batch_size, numpy.dtype(args.dtype).itemsize, backend,
                                     graph=data_cli.counts_graph(args, backend), rows=n_train)
    model = ckpt.model if ckpt else MLP(sizes, activation=args.activation, output_activation=args.output_activation,
                                        bias=not args.no_bias, dtype=args.dtype, device=backend, seed=args.seed,
                                        precision=args.precision, graph=args.graph)
    if ckpt:  # compute settings: this run's flags apply (--precision defaults to the one the run recorded)
        model.set_precision(args.precision)
        model.graph = args.graph
    print(f"model: {model.layer_sizes} {model.activations[0].name}, {model.n_parameters:,} parameters; "
          f"{shell_word(args.data) if args.data else 'task ' + args.task}: {n_train:,} training rows, {n_val:,} validation; "
          f"set up in {time.perf_counter() - t0:.2f}s", flush=True)
    save_path = args.save or args.resume
    extra = [resume.record(args, standalone_parser(), backend)]  # the options, in every checkpoint
    if args.reduce_lr_patience:
        extra.append(cbmod.ReduceLROnPlateau(factor=0.5, patience=args.reduce_lr_patience))
    if verbose_of(args):  # the bar fit would show, less its interrupted line: this command prints its own below
        extra.append(cbmod.ProgressBar(lines=cbmod.lines_for(verbose_of(args))))
        extra[-1].says_interrupted = False
    callbacks = list(extra)
    if args.early_stopping and n_val:
        callbacks.append(cbmod.EarlyStopping(patience=args.patience, min_delta=args.min_delta))
    if args.save:
        callbacks.append(io.ModelCheckpoint(args.save, every=args.checkpoint_every))
    after_failure = None
    if save_path and root:  # a run that a second Ctrl-C or an error ends: its config too, beside the checkpoint it wrote
        after_failure = _config_after_failure(args, save_path, tell_kept=not distributed)
        opened.push(after_failure)
    load = cpuload.OthersCpu().start()  # the CPU other processes take while it trains (_busy_blas_note)
    if source is not None:  # gpunn.data: a file or a stream, with whole chunks held out
        if args.standardize and not (ckpt or distributed):  # (a resumed model keeps its own; ranks: their shards')
            data_cli.standardize_first(source, model.backend, model.dtype, verbose_of(args))
        # (the progress bar of verbose runs counts rows per batch: no second, per-epoch bar)
        if ckpt:
            history = ckpt.resume(source, epochs=args.epochs, verbose=verbose_of(args), checkpoint=args.save or True,
                                  callbacks=extra, distributed=distributed)
        else:
            history = model.fit(source, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                                schedule=schedule, verbose=verbose_of(args), callbacks=callbacks,
                                distributed=distributed)

        def held_out_evaluator():  # the held-out chunks, streamed again
            return metrics.SourceEvaluator(source)
    else:
        validation = (X_val, Y_val) if n_val else None
        if args.standardize:  # the model then takes raw units: fit trains on a standardized copy
            with backend.use():  # on cuda:N, the statistics run on device N
                standardize_arrays(model, X_train, Y_train)

        def held_out_evaluator():  # made after training, so that its standardized copy of the held-out rows
            Xv, Yv = model._checked(X_val, Y_val)  # (scored in training's units) is not held beside the one fit made
            return metrics.RegressionEvaluator(model, Xv, Yv)
        if ckpt:
            history = ckpt.resume(X_train, Y_train, epochs=args.epochs, validation_data=validation,
                                  verbose=verbose_of(args), checkpoint=args.save or True, callbacks=extra,
                                  distributed=distributed)
        else:
            history = model.fit(X_train, Y_train, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                                schedule=schedule, verbose=verbose_of(args), validation_data=validation,
                                callbacks=callbacks, distributed=distributed)
    load.stop()
    if after_failure is not None:  # the fit returned: a failure now (an output's write) leaves nothing to go on with
        after_failure.trained = True
    busy = None if backend.is_gpu or distributed else _busy_blas_note(model, load)  # said as the run ends
    if distributed and history.interrupted:
        ignore_late_interrupts()
    untouched = _resumed_file_untouched(args, ckpt, history)
    if save_path and root and os.path.exists(save_path) and not untouched:  # (a run that fails validation rewrites
        _save_config(args, save_path)  # nothing; nor one that trained nothing: its PATH.toml describes the file)
    completed = len(history["epoch"])
    if history.interrupted:
        unwritten = [option for option in ("--json", "--csv", "--plot") if getattr(args, option[2:])]
        nothing = "" if completed else (": no epoch to report, no held-out metrics" + (
            f" ({', '.join(unwritten)} not written)" if unwritten else ""))
        saved = save_path and root and os.path.exists(save_path)  # (rank 0 writes it; only rank 0 prints)
        again = f"mpiexec -n {_ranks()} gpunn train" if distributed else "gpunn train"  # a command to paste
        if saved:
            again = (resume.GOES_ON if resume.goes_on_in_place(args)  # a job's line
                     else f"continue with {again} --resume {shell_word(save_path)}")
        # without --save the run's weights end with the process: said, as a new user Ctrl-C'd to resume later
        unsaved = "" if save_path else "; not saved: --save PATH keeps a run that gpunn train --resume PATH continues"
        print(f"interrupted after {counted(completed, 'complete epoch')}{nothing}"
              + (f"; checkpoint in {shell_word(save_path)}{saved_position(save_path)} ({again})" if saved else unsaved),
              flush=True)
    if not completed:  # (a first epoch Ctrl-C'd as it crawled: the busy machine's note too)
        if busy:
            print(busy, file=sys.stderr, flush=True)
        return 130 if history.interrupted else 0
    if not root:  # the other ranks print and write nothing: no second pass over every held-out row
        return 130 if history.interrupted else 0
    # a pass of its own, not the last epoch's val_* figures: the model may hold other weights (early stopping's best
    # epoch's, a Ctrl-C's part-way through an epoch, a resume's with nothing left to train at another --precision),
    # and a source's pass gives the held-out targets' spread that the constant-targets note reads. It costs a forward
    # pass over the held-out rows, about 1% of a run (0.14 s after a 12.5 s epoch over a 1M-row CSV file, 2 cores)
    with backend.use():  # on cuda:N the evaluation's arrays and kernels belong to device N
        evaluator, held_out, cut = held_out_pass(held_out_evaluator if n_val else None, model)
    if cut:  # the run trained and its checkpoint is written: its outputs still are, without held-out metrics
        print("interrupted during the held-out pass, after training: no held-out metrics (null in --json)", flush=True)
    done_before = ckpt.epoch if ckpt else 0  # epochs an earlier process trained
    rate, seconds, after_first = throughput(history, done_before)
    result = {"train_loss": history["loss"][-1], "val_mse": held_out["val_mse"],
              "val_mae": held_out["val_mae"], "val_r2": held_out["val_r2"],
              "samples_per_s": rate, "train_seconds": seconds, "device": backend.device,
              # (config's batch_size is per rank: with this, a 2-rank run's record is not a 1-process run's)
              "ranks": _ranks() if distributed else 1,
              "epochs": len(history["epoch"]), "interrupted": history.interrupted or cut,
              # where an interrupt cut an epoch short: the held-out metrics are of the weights part-way through it
              "partial_epoch": len(history["epoch"]) + 1 if history.interrupted and history.cut_batch else None,
              # the fit's History.best: val_loss is what gpunn train's early stopping monitors (and, without it, the
              # least val_loss's epoch is best_epoch), so the key names it; "best" beside val_mse would be ambiguous
              "best_epoch": getattr(history, "best_epoch", None), "best_val_loss": getattr(history, "best", None)}
    scaled = model.standardizer is not None and model.standardizer.scales_targets  # metrics of scaled targets
    if args.json and root:
        text = json_text({"config": data_cli.json_config(args),
                          "units": "standardized targets" if scaled else "targets",  # of the losses and metrics
                          "history": history, "result": result})
        write_output(args.json, text, announce=True)
    if args.csv and root:
        write_output(args.csv, history_csv(history), announce=True)
    if args.plot and root:
        plot_history(history, args.plot)
        print(f"loss curves: {args.plot}")
    best, last = getattr(history, "best_epoch", None), history["epoch"][-1]
    if history.interrupted:  # the model keeps the weights it stopped with: the held-out line below says which
        pass
    elif history.stopped_early:
        print(f"early stopping: best epoch {best} of {last}; its weights are kept")
    elif args.early_stopping and best is not None and best != last:  # the held-out metrics below are that epoch's
        # (without early stopping best_epoch is the least val_loss's, and the model keeps the last epoch's weights)
        print(f"early stopping: best epoch {best} of {last} (the epochs ran out before its patience); its weights "
              "are kept")
    if not cut:
        where = (f"the weights {history.cut_batch:,} batch{'' if history.cut_batch == 1 else 'es'} into epoch "
                 f"{result['partial_epoch']}"
                 if result["partial_epoch"] else "")  # (else the last epoch's, or early stopping's best, as said)
        said = ", ".join(filter(None, (where, "standardized targets" if scaled else "")))
        print(f"held-out{f' ({said})' if said else ''}: mse {result['val_mse']:.5g}  "
              f"mae {result['val_mae']:.5g}  r2 {result['val_r2']:.4f}" if evaluator
              else "held-out: none (no rows were held out)")
    if evaluator and args.data and model.standardizer is None and result["val_r2"] < 0:
        # a user's file of prices and years trained unscaled reached r2 -5 with no word of why; r2 = 1 - mse / var
        # gives the held-out targets' spread, so that a run merely too short (unit-scale targets) is not told this
        spread = math.sqrt(result["val_mse"] / (1 - result["val_r2"]))
        if not 0.1 <= spread <= 10:
            print(f"note: the held-out r2 is below 0, worse than predicting the targets' mean, whose spread there is "
                  f"{spread:.3g} (std), far from unit scale: columns of prices, years or counts train poorly as they "
                  "are; try --standardize", file=sys.stderr, flush=True)
    if evaluator:
        note = constant_targets_note(model.backend.to_host(evaluator.ss_tot),
                                     (model.data_columns or {}).get("targets"))
        if note:
            print(note, file=sys.stderr, flush=True)
    which = "median epoch after the first" if after_first else "one epoch, start-up included"
    when = ""
    if done_before:  # stopped before an epoch of its own ended, a resume reports the earlier process's epochs
        when = " since the resume" if len(history["time_s"]) > done_before else " before the resume (none since)"
    print(f"throughput: {rate:,.0f} samples/s ({which}), {seconds:.1f}s training{when} on {backend.device}, "
          f"{args.dtype}"
          + (f" ({args.precision})" if args.precision != "float32" else "") + _graph_note(model)
          + f", batch {_batch_trained(args, ckpt, distributed, n_train)}"
          + (f" per rank x {_ranks()} ranks" if distributed else ""))
    if untouched:
        print(f"checkpoint: none written, as nothing trained ({shell_word(save_path)} is as it was)")
    elif save_path:
        print(f"checkpoint: {shell_word(save_path)} (config: {shell_word(save_path + '.toml')})")
    if busy:
        print(busy, file=sys.stderr, flush=True)
    return 130 if history.interrupted or cut else 0


def _resumed_file_untouched(args, ckpt, history) -> bool:
    """Whether the resume of ``ckpt`` that gave ``history`` left the file it resumed as it was, that file being where
    this command saves (--resume PATH alone, or with --save PATH): it trained nothing (early stopping had ended the
    run, or its held-out pass and outputs alone were left to do), and gpunn.checkpoint.resume then drops the writer of
    the resumed file. A writer of another file (--save NEW.npz) still writes it."""
    from . import resume

    return (ckpt is not None and resume.in_place(args.resume, args.save or args.resume) and not history.interrupted
            and len(history["epoch"]) == ckpt.epoch)


BUSY_SHARE = 0.25  # of the machine's CPU time taken by other processes while a fit trained: gpunn bench's (!) too
BUSY_MIN_SECONDS = 5.0  # a shorter fit loses little, and its share is of fewer clock ticks (10 ms)


def _busy_blas_note(model, load) -> str | None:
    """A note where other processes took over BUSY_SHARE of the machine's CPU while the fit of ``model`` ran NumPy's
    BLAS (MKL's, where GPUNN_GEMM sent the products there) on more threads than the cores they left idle: each product
    then waits for whichever of its threads is descheduled. On the 2-core AMD EPYC under load, the medium net trained
    3.7-33x faster on one thread than on two, and 0.28x PyTorch eager on two (bench/RESULTS.md, sessions 39 and 45);
    a small net's fit is on one already."""
    from ..ops import fit_threads
    from ..ops.cpu import usable_cores

    if not load.seconds >= BUSY_MIN_SECONDS or not load.share > BUSY_SHARE or fit_threads.one_thread_for(model):
        return None
    threads, variable, library = fit_threads.products_count(model.ops)
    # the cores the others left idle, at most those this process may run on: the share is of every core of the
    # machine, and a job held to 2 cores (taskset, Slurm) of a 64-core node busy on the other 62 has its 2 to itself
    idle = max(1, math.floor(min(usable_cores(), cpuload.machine_cores() * (1 - load.share))))
    if threads is None or threads <= idle:
        return None
    return (f"note: other processes took {load.share:.0%} of this machine's CPU time while it trained, and {library} "
            f"ran this net's products on {threads} threads, each product waiting for whichever is descheduled: "
            f"on a machine this busy, {variable}={idle} may train it several times faster, to other last bits (README, "
            "CPU speed that holds)")


def held_out_pass(evaluator_of, model):
    """(evaluator, metrics, cut) of the pass over the held-out rows after training: the evaluator ``evaluator_of()``
    makes and the metrics of ``model`` it gives, NaN for all three where there is none (no rows held out, or the pass
    cut short); ``cut``: whether a Ctrl-C, SIGTERM or SIGUSR1 (gpunn.cli's Terminated, a KeyboardInterrupt) landed in
    it. The run has trained and its checkpoint is written by then: the command still writes its outputs (--json:
    the metrics null, interrupted true) and exits 130, where the interrupt ended it with none of them."""
    none = dict.fromkeys(("val_mse", "val_mae", "val_r2"), float("nan"))
    if evaluator_of is None:
        return None, none, False
    try:
        evaluator = evaluator_of()
        return evaluator, evaluator.evaluate(model), False  # one pass, one read-back
    except KeyboardInterrupt:
        return None, none, True
