"""``gpunn train --resume CK.npz``: exact or refused.

A run's checkpoint records every ``gpunn train`` option the run was started with (the data's task,
rows, features, noise and seed, the network, optimizer, schedule, batch size, epochs, callbacks,
dtype, and which backend generated the data), through :class:`RunOptions`, a stateful callback. So
``--resume CK.npz`` needs nothing else: the recorded options become the defaults.

An option given with ``--resume`` (on the command line or in ``--config``) either legitimately
changes the continuation, or is refused, by name, before anything is generated, trained or written:

- ``--epochs`` raises the total (it must exceed the epochs already done);
- ``--save`` writes the continuation elsewhere; ``--json``, ``--csv``, ``--plot``, ``--progress``, ``--quiet``, ``--debug``
  concern this process's output only; ``--device`` may name another device of the same kind
  (``auto`` as it resolves here; CuPy's generator is not NumPy's, so the synthetic data, and a data file's
  shuffle, depend on the kind); ``--data`` and ``--targets`` may say where the run's files are now (they are recorded as absolute paths, and the
  checkpoint checks that the files hold the same data);
- anything else must equal what the run recorded: a different ``--lr``, ``--batch-size``,
  ``--seed``, ``--task``, ``--hidden`` ... would silently train something else, so it is refused.
  Values are compared as they resolve in the run (``--momentum 0.9`` equals an unset momentum of the
  momentum optimizer, ``--stream off`` an ``auto`` that held the rows in memory; see ``_effective``).

``gpunn sweep --save DIR`` records its options the same way in each ensemble's checkpoint (with how the
grid was split, GROUP_KEY), and ``gpunn sweep --resume DIR`` is checked by the same rules.
"""
from __future__ import annotations

import argparse
import os

from ..csvtext import joined_columns
from ..hints import shell_word
from ..optim import SCHEDULE_FIELDS, default_of
from ..training.callbacks import Callback
from . import lr_schedule
from .common import counted

# options that only say where this process writes and what it shows: free with --resume, never recorded
# (csv and save_best are gpunn sweep's)
RUN_LOCAL = frozenset({"resume", "save", "overwrite", "json", "csv", "plot", "save_best", "progress", "quiet", "config",
                       "debug"})
BACKEND_KEY = "data_backend"  # recorded beside the options: "cpu" or "cuda", the generator of the data
# where the data files are: recorded as absolute paths; with --resume they may name where the files are
# now (the checkpoint then checks that the source holds the same data: rows, columns, chunks, ...)
MOVABLE = ("data", "targets", "weights")
GROUP_KEY = "members_per_ensemble"  # gpunn sweep: recorded beside the options, how the grid was split


class RunOptions(Callback):
    """Records a ``gpunn train`` run's options in each of its checkpoints (``state_dict``); restoring
    keeps this run's own options, which were checked against the recorded ones before it started."""

    def __init__(self, options: dict):
        self.options = dict(options)

    def get_config(self):
        return {}

    def state_dict(self):
        return {"options": self.options}, {}

    def load_state_dict(self, state, arrays, model=None):
        pass


def record(args, parser, backend) -> RunOptions:
    from .. import config as cfgmod

    options = {k: v for k, v in lr_schedule.as_recorded(cfgmod.resolved(args, parser)).items() if k not in RUN_LOCAL}
    for name in MOVABLE:  # absolute, so that --resume finds the files from any directory
        if options.get(name):
            options[name] = os.path.abspath(options[name])
    options[BACKEND_KEY] = "cuda" if backend.is_gpu else "cpu"
    return RunOptions(options)


def _flag(dest) -> str:
    return "--" + dest.replace("_", "-")


def _said(dest, value, negatable=()) -> str:
    """An option as written: --lr 0.5, --data 'my dir/t.csv' (quoted as a shell takes it, as gpunn's refusals
    quote paths); a flag on (--early-stopping) or off (no --early-stopping), or off as the user types it where the
    flag has a --no- form (``negatable``: those options' dests): --no-graph."""
    if isinstance(value, bool) and dest in negatable:
        return _flag(dest) if value else "--no-" + _flag(dest)[2:]
    if isinstance(value, bool):
        return _flag(dest) if value else f"no {_flag(dest)}"
    return f"{_flag(dest)} {shell_word(_shown(value))}"


def _said_given(dest, value, negatable, from_file) -> str:
    """An option given to a resume, as given: a --config file's key as the file writes it (run.toml's lr = 0.1)."""
    if from_file is not None and dest in from_file[1]:
        from ..config import as_key

        return f"{shell_word(from_file[0])}'s {as_key(dest.replace('_', '-'), value)}"
    return _said(dest, value, negatable)


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):  # --hidden 64,64; --features '"a,b",c' (a name with a comma, quoted)
        return joined_columns(value)
    return "unset" if value is None else str(value)


def saved_options(meta) -> dict | None:
    """The options a RunOptions callback recorded in a checkpoint's metadata, or None."""
    return next((cb["state"].get("options") for cb in (meta.get("training") or {}).get("callbacks", [])
                 if cb.get("class") == RunOptions.__name__ and isinstance(cb.get("state"), dict)), None)


def sweep_directory(meta, path) -> str | None:
    """The directory ``gpunn sweep --resume`` continues, where the checkpoint ``path`` (its metadata ``meta``) is one
    of a sweep's ensembles (written by gpunn sweep --save); else None."""
    saved = saved_options(meta)
    return os.path.dirname(path) or "." if saved and GROUP_KEY in saved else None


def recorded(path, parser, command="train"):
    """(options as parser defaults, epochs done, backend kind or None, the kind of data source the run
    trained on or None, its fit settings: batch size, ranks...) of the checkpoint ``path``.

    ``command``: "train" (one model's run) or "sweep" (one ensemble of a gpunn sweep). Checkpoints of
    ``gpunn train`` runs from before RunOptions fall back to the ``PATH.toml`` written beside them.
    """
    from .. import checkpoint, config as cfgmod, preflight

    if not os.path.exists(path):
        raise ValueError(f"--resume {shell_word(path)} does not exist{preflight.npz_meant(path)}")
    if os.path.isdir(path):
        raise ValueError(f"--resume {shell_word(path)} is a directory; gpunn train resumes a checkpoint file (--save PATH's), "
                         f"and a directory of gpunn sweep --save continues with gpunn sweep --resume {shell_word(path)}")
    try:
        meta = checkpoint.read_meta(path)  # the arrays are read (and checked) when the run is loaded
    except checkpoint.CheckpointError as exc:  # "PATH: why", the path quoted as the other refusals quote it
        where = preflight.misplaced(path, "--resume")
        raise ValueError(f"--resume {shell_word(path)} is not a gpunn checkpoint: {where}" if where else
                         f"--resume {shell_word(path)}: {str(exc).removeprefix(f'{path}: ')}") from None
    if meta.get("kind") != "training":
        raise ValueError(f"--resume {shell_word(path)} holds a model only (no optimizer or position); it cannot be resumed")
    training = meta["training"]
    done = int(training["position"]["epoch"])
    source = (training.get("source") or {}).get("kind")
    saved = saved_options(meta)
    if "members" in meta["model"] and command == "train":
        sweep = sweep_directory(meta, path)
        how = f"gpunn sweep --resume {shell_word(sweep)}" if sweep else "gpunn.load_checkpoint(path).resume(X, Y) from Python"
        raise ValueError(f"--resume {shell_word(path)} holds the run of a gpunn.Ensemble of {meta['model']['members']} members; "
                         f"gpunn train resumes one model's run: continue it with {how}")
    if command == "sweep" and (saved is None or GROUP_KEY not in saved):
        raise ValueError(f"--resume {shell_word(path)} is not a checkpoint of gpunn sweep (written by gpunn sweep --save)")
    if saved is None:
        toml = path + ".toml"
        if not os.path.exists(toml):
            raise ValueError(f"--resume {shell_word(path)} does not record its gpunn train options (written by gpunn.fit or an "
                             f"older gpunn) and there is no {shell_word(toml)}; resume it from Python: "
                             "gpunn.load_checkpoint(path).resume(X, Y)")
        options = cfgmod.convert(parser, cfgmod.read_toml(toml), toml)
        options = {**lr_schedule.recorded_options(training["settings"]["schedule"]), **options}
        return {k: v for k, v in options.items() if k not in RUN_LOCAL}, done, None, source, training["settings"]
    kind = saved.get(BACKEND_KEY)
    known = {k: v for k, v in saved.items() if k not in (BACKEND_KEY, GROUP_KEY)}
    try:
        options = cfgmod.convert(parser, {k.replace("_", "-"): v for k, v in known.items() if v is not None},
                                 "its recorded options")  # (after "--resume PATH: ", which names the file)
    except ValueError as exc:
        raise ValueError(f"--resume {shell_word(path)}: {exc}") from None
    options.update({k: None for k, v in known.items() if v is None})
    # a run recorded before --gamma, --step-size and --min-factor ran at its checkpoint's schedule's
    options = {**lr_schedule.recorded_options(training["settings"]["schedule"]), **options}
    return options, done, kind, source, training["settings"]


def explicit(argv, parser) -> dict:
    """The train options written on the command line (not their defaults), parsed."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    parser.set_defaults(func=argparse.SUPPRESS)
    parser._defaults.clear()
    args, _ = parser.parse_known_args(argv)
    return vars(args)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _effective(dest, value, options, kind, source):
    """What an option's ``value`` comes to in the run being resumed (``options``: its recorded ones; ``kind``:
    its backend kind; ``source``: the kind of data source it trained on), so that a value spelled otherwise
    but resolving to what the run used passes: --lr, --momentum or --weight-decay left unset is the
    optimizer's default (gpunn.optim.default_of: 0.9 for momentum and nesterov); --stream auto is what it chose (a stream for a synthetic
    source, the rows in memory for arrays); and on the CPU no step runs as a CUDA graph, whatever --graph
    says. Anything else is its value."""
    if dest in ("lr", "momentum", "weight_decay") and value is None:
        default = default_of(options.get("optimizer"), dest)
        if default is not None:
            return default
    elif dest == "stream" and value == "auto" and source in ("synthetic", "arrays"):
        return "on" if source == "synthetic" else "off"
    elif dest == "graph" and kind == "cpu":
        return False
    return value


def batch_here(settings: dict) -> tuple[int, int, int] | None:
    """(per-rank batch, global batch, processes) at which a run (its checkpoint's fit ``settings``) goes on under this
    launch: its global batch (the ranks x per-rank batch it was last written at) over this launch's processes, as the
    fit splits it (gpunn.distributed.training.per_rank_batch_on_resume); None where they cannot split it (the fit
    refuses that, naming the counts that can)."""
    from ..distributed.comm import launched_size

    global_batch, here = settings["batch_size"] * settings.get("ranks", 1), max(launched_size(), 1)
    return None if global_batch % here else (global_batch // here, global_batch, here)


def check(path, given: dict, options: dict, done: int, kind, defaults=None, source=None, negatable=(),
          resumed="run", batch=None, from_file=None) -> None:
    """Refuse, in one line naming them, the options that would not continue the recorded run exactly (``resumed``
    names it in the refusal: a "run" of gpunn train, a "sweep").
    An option the run did not record (its gpunn was older than the option) ran at its default
    (``defaults``, the parser's): only that passes. A data file (MOVABLE) may be named where it is now,
    but not given to a run that had none. Values are compared as they resolve in the run (``kind``, its
    backend kind, and ``source``, its data source's kind: see :func:`_effective`). ``negatable``: the options
    with a --no- form (:func:`negatable`), which the refusal writes so (--no-graph). ``batch``: the per-rank batch
    the run goes on at under this launch, with its global batch and processes (:func:`batch_here`), which
    --batch-size may give as well as the recorded one: a 2-rank run's 128 continued in one process trains at 256,
    which was refused as a change of the run. ``from_file``: (the --config file, the dests it alone gave), which the
    refusal names as the file writes them (run.toml's lr = 0.1), not as flags the user did not type."""
    from .. import backend as _backend

    options = {**{d: v for d, v in (defaults or {}).items() if d not in options}, **options}
    differing = []
    for dest, value in sorted(given.items()):
        if dest in RUN_LOCAL or (dest in MOVABLE and options.get(dest) is not None) or dest == "epochs":
            continue
        if dest == "device":
            if kind is not None:  # "auto" as it resolves here: the kind this run would train on
                resolved = _backend.resolve(value)
                if ("cuda" if resolved.is_gpu else "cpu") != kind:
                    said = f"--device {value}" + (f" (here {resolved.device})" if value != resolved.device else "")
                    raise ValueError(f"{said}: the {resumed} being resumed {_kind_bound(kind, options)}; "
                                     f"{_resume_on(kind, path, resumed, options)}")
            continue
        if dest not in options:  # not recorded, and no default known to compare with
            continue
        if dest in lr_schedule.OPTIONS and dest not in SCHEDULE_FIELDS.get(options.get("schedule"), (dest,)):
            continue  # not read by the run's schedule: refused as unused (train.refuse_idle_options), changing nothing
        if dest == "batch_size" and batch is not None and value == batch[0]:
            continue  # the run's global batch over this launch's ranks: the same run
        ours, theirs = (_effective(dest, v, options, kind, source) for v in (value, options[dest]))
        if not _same(ours, theirs):
            differing.append((dest, value, options[dest], theirs))
    if differing:
        names = ", ".join(_said_given(d, v, negatable, from_file) for d, v, _, _ in differing)
        had = ", ".join(_said(d, s, negatable) + ("" if _same(s, e) else f" ({_shown(e)})")
                        + (_batch_words(*batch) if d == "batch_size" and batch is not None and batch[0] != s else "")
                        for d, _, s, e in differing)
        given = next((v for d, v, _, _ in differing if d == "batch_size"), None)
        other = _other_launch(given, batch) if batch is not None and batch[0] == options.get("batch_size") else ""
        raise ValueError(f"--resume {shell_word(path)}: {names} would change the {resumed}, which has {had}{other}; a "
                         f"resumed {resumed} continues exactly as it started (start a new {resumed}, without --resume, "
                         "to change it)")
    total = given.get("epochs", options.get("epochs"))
    if total is not None and total <= done:
        trained = counted(done, "epoch")
        said = (f"--epochs {total} is not above the {trained} it has trained" if "epochs" in given
                else f"the run has trained its {counted(total, 'epoch')}")
        message = f"--resume {shell_word(path)}: {said}; give --epochs above {done} to train further"
        if total < done:
            raise ValueError(message)
        raise NothingLeft(message, where=shell_word(path), said=f"the run has trained its {trained}", done=done)


class NothingLeft(ValueError):
    """A resume whose run has trained the epochs asked for: refused, except in place (:func:`in_place`), where the
    command succeeds saying so, or writes the outputs its run left unwritten (gpunn.cli.train.outputs_left); in place
    too, a run early stopping ended (:func:`defaults_for`). ``where``, ``said`` and ``done``: the path as written, what
    it holds, its epochs; ``further``: what trains it further, in words; ``defaults``: the parser's defaults for the
    run, its options checked (:func:`defaults_for`)."""

    def __init__(self, message, where="", said="", done=0, further=None):
        super().__init__(message)
        self.where, self.said, self.done, self.defaults = where, said, done, {}
        self.further = further or f"--epochs above {done} trains it further"


def in_place(resume, save) -> bool:
    """Whether a command resumes and saves one place, ``gpunn train --save PATH --resume PATH`` (one file) or ``gpunn
    sweep --save DIR --resume DIR`` (one directory): a job's command line that starts the run where PATH holds none
    yet, and goes on with it (or says it has ended) when run again."""
    from .. import preflight

    return bool(resume and save) and preflight.same_file(resume, save)


def starting_line(path, command="train") -> str:
    """What an in-place command (:func:`in_place`) says as it starts its run, ``path`` holding none yet."""
    if command == "train":
        return (f"starting the run: --resume {shell_word(path)} is not written yet (--save writes it; the same command "
                "then goes on from it)")
    return (f"starting the {command}: --resume {shell_word(path)} holds no checkpoint yet (--save writes them; the same "
            "command then goes on from them)")


GOES_ON = "the same command goes on from it"  # an in-place run's interrupted line, where another says --resume PATH


def goes_on_in_place(args) -> bool:
    """Whether the command ``args`` saves where it resumes from (:func:`in_place`), started there or resumed: its
    interrupted line then says :data:`GOES_ON`, not a --resume line of its own, in a job's log."""
    return bool(getattr(args, "starts_in_place", None)) or in_place(args.resume, args.save)


def _batch_words(per_rank, global_batch, processes) -> str:
    """What --batch-size continues a run at here, after the recorded one: "(a global batch of 256: --batch-size 256
    in this launch's 1 process)"."""
    launch = f"{processes:,} process{'' if processes == 1 else 'es'}"  # (counted's plural would be "processs")
    return f" (a global batch of {global_batch}: --batch-size {per_rank} in this launch's {launch})"


def _other_launch(given, batch) -> str:
    """Where a refused --batch-size ``given`` is the run's per-rank batch on another number of ranks than this
    launch's (``batch``: :func:`batch_here`'s, the run going on at its recorded batch here), that, in words: a job line that started the run on 2 ranks at
    --batch-size 64 and was continued in one process (at 128, which its checkpoint records since) was refused in one
    process again as a change of the run that it is not."""
    if not isinstance(given, int) or given <= 0 or batch[1] % given or batch[1] // given == batch[2]:
        return ""
    ranks, launch = batch[1] // given, f"{batch[2]:,} process{'' if batch[2] == 1 else 'es'}"
    where = "its batch in one process" if ranks == 1 else f"its per-rank batch on {ranks:,} ranks, mpiexec -n {ranks}"
    return f" ({given} is {where}; in this launch's {launch} it is {batch[0]})"


def _kind_bound(kind, options) -> str:
    """Why a run goes on on the kind of device it trained on only (``options``: its recorded ones)."""
    if options.get("data"):
        return (f"trained on {kind} on the data it read, and another kind of device shuffles them in another order "
                "and rounds otherwise")
    return f"generated its data on {kind}, and another kind of device draws other random data"


def _gpu_missing(kind) -> str:
    """Why this machine has no GPU, where a run of ``kind`` needs one ("cuda"); else ""."""
    from .. import backend

    return backend.probe_cuda()[2] if kind == "cuda" else ""


def _resume_on(kind, path, resumed, options) -> str:
    """Where a run of ``kind`` resumes: --device kind here; a GPU's run, where this machine has no GPU (a laptop
    resuming a GPU machine's file was told "Use device 'cpu' or 'auto'", which the resume then refused), on a machine
    with one, and what this one can do instead: predict with its model, or run it again on the CPU."""
    missing = _gpu_missing(kind)
    if not missing:
        return f"resume on {kind} (--device {kind}, or leave --device out)"
    float32 = "" if options.get("precision", "float32") == "float32" else " --precision float32"
    if resumed != "run":
        return (f"resume it on a machine with a GPU ({missing}); on this one, the {resumed} runs again on the CPU "
                f"with its options and --device cpu{float32}")
    return (f"resume it on a machine with a GPU ({missing}); on this one, gpunn predict {shell_word(path)} IN OUT "
            f"uses its model, and gpunn train --config {shell_word(path + '.toml')} --device cpu{float32} --save "
            "NEW.npz runs it again on the CPU (the config is the one gpunn train --save wrote beside it)")


def negatable(parser) -> frozenset:
    """The dests of ``parser``'s options that have a --no- form (argparse.BooleanOptionalAction: --graph)."""
    return frozenset(a.dest for a in parser._actions if isinstance(a, argparse.BooleanOptionalAction))


def defaults_for(path, on_command_line: dict, parser, config_values: dict, command="train", given_as=None,
                 in_place=False, config=None) -> dict:
    """The command parser's defaults for ``--resume path``: the recorded options, then --config's
    values; every option given (``on_command_line``: :func:`explicit`'s, or --config) checked first, a refusal
    naming ``--resume given_as`` (a sweep's directory, whose first checkpoint is ``path``; it named that file, which
    its user had not typed; ``config``, the --config file that gave ``config_values``, by its keys). A sweep's epochs are checked against each of its checkpoints (gpunn.cli.sweep), not here.
    ``in_place`` (gpunn train --save PATH --resume PATH): a run early stopping ended is NothingLeft, as one that has
    trained its epochs: the job's line run again read its data, made the held-out pass and rewrote --json (its config
    as resolved: device "cpu", stream "off") and PATH.toml every time, training nothing."""
    options, done, kind, source, settings = recorded(path, parser, command)
    given = {**config_values, **on_command_line}
    defaults = {a.dest: a.type(a.default) if isinstance(a.default, str) and callable(a.type) else a.default
                for a in parser._actions if a.dest != "help"}  # as argparse converts a string default
    if "device" not in given and _gpu_missing(kind):  # first: no option given makes it resumable here (resolving
        resumed = "run" if command == "train" else command  # "cuda" said "Use device 'cpu'", which check refuses)
        raise ValueError(f"--resume {shell_word(given_as or path)}: the {resumed} {_kind_bound(kind, options)}; "
                         f"{_resume_on(kind, given_as or path, resumed, options)}")
    if kind is not None and "device" not in given:
        options["device"] = kind  # the recorded kind, even where "auto" would now find another
    try:
        check(given_as or path, given, options, done if command == "train" else 0, kind, defaults, source,
              negatable(parser), "run" if command == "train" else command, batch_here(settings),
              (config, set(config_values) - set(on_command_line)) if config else None)
        if in_place and command == "train":
            _refuse_stopped(given_as or path, path, done)
    except NothingLeft as exc:  # (checked: an in-place command's run that has ended may still write its outputs)
        exc.defaults = {**options, **config_values}
        raise
    return {**options, **config_values}


def _refuse_stopped(where, path, done) -> None:
    """NothingLeft where early stopping ended the run of the checkpoint ``path`` (a stopped run stays stopped,
    whatever --epochs says: gpunn.checkpoint.resume)."""
    from .. import checkpoint
    from ..checkpoint.resume import stopped_epochs

    if stopped_epochs(checkpoint.read_meta(path)["training"]):
        said = f"early stopping ended its run after epoch {done}"
        raise NothingLeft(f"--resume {shell_word(where)}: {said}", where=shell_word(where), said=said, done=done,
                          further="a stopped run stays stopped")
