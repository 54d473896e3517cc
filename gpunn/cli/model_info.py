"""``gpunn info MODEL``: what a checkpoint holds, in lines: its kind, network, columns, standardization, training
and how to predict with it (read on the CPU: it runs nothing)."""
from __future__ import annotations

from ..hints import shell_word
from ..optim import CLIP_OPTIONS, SCHEDULE_FIELDS
from ..training.sources import resume_call
from .common import counted


def describe(path) -> dict:
    """{label: line} of the checkpoint ``path`` (gpunn train --save, gpunn.save, gpunn sweep --save's)."""
    from .. import checkpoint

    ckpt = checkpoint.load_checkpoint(path, device="cpu")
    model, meta = ckpt.model, ckpt.meta
    members, training = getattr(model, "n_models", None), meta.get("kind") == "training"
    source = (ckpt.training.get("source") or {}) if training else {}
    lines = {"checkpoint": _kind(path, meta, training, members, source.get("kind"), bool(source.get("sample_weight"))),
             "model": _network(model, members),
             "columns": _columns(model),
             "standardized": _standardized(model)}
    if training:
        lines["trained"] = _trained(ckpt)
        last = {k: v[-1] for k, v in (ckpt.history or {}).items() if v and k in ("loss", "val_mse", "val_mae", "val_r2")}
        if last:
            lines["last epoch"] = (f"{'per member: ' if members else ''}"
                                   + "  ".join(f"{k} {_value(v)}" for k, v in last.items()))
    if members is None:
        weighed = source.get("weight")  # a table's weight column: a held-out file scored as training weighed it
        npy_weighed = source.get("kind") == "npy" and source.get("sample_weight")  # (an .npy pair's --weights file)
        how = (f"--score --weight {shell_word(weighed)}" if weighed else
               "--score --targets Y.npy --weights W.npy" if npy_weighed else "")
        lines["predict"] = f"gpunn predict {shell_word(path)} IN OUT" + (
            f" (a held-out file's score weighted as its rows were: {how})" if how else "")
    else:
        from .predict import one_member_words

        lines["predict"] = f"gpunn predict takes one model: {one_member_words(path)}"
    return lines


def _kind(path, meta, training, members, data_kind=None, weighted=False) -> str:
    """What the checkpoint is, and how it resumes: by the command that wrote it (its options recorded in it), else
    in Python (a fit's ModelCheckpoint): a run on arrays with its arrays (``weighted``: and the sample_weight it
    took), a source's with the source made again (its weights too: a source holds its own); a run whose data are
    not recorded (``data_kind`` None) either way."""
    from .resume import saved_options, sweep_directory

    written = f"written by gpunn {meta.get('gpunn_version', '?')}"
    if not training:
        return f"a model (gpunn.save, --save-best), {written}; no training state: it predicts, it does not resume"
    sweep = sweep_directory(meta, path)
    resume = (f"gpunn sweep --resume {shell_word(sweep)}" if sweep else
              f"gpunn train --resume {shell_word(path)}" if saved_options(meta) and not members else
              f"in Python: gpunn.load_checkpoint(path).{resume_call(data_kind, weighted)}")
    what = f"an Ensemble's training run of {members} members" if members else "a training run"
    return f"{what}, resumable ({resume}), {written}"


def _network(model, members) -> str:
    sizes = "-".join(map(str, model.layer_sizes))
    activations = ", ".join(a.name for a in model.activations)
    parameters = int(model.params.size) // (members or 1)
    head = f"Ensemble of {members} x {sizes}" if members else f"MLP {sizes}"
    return (f"{head} ({activations}), {'bias' if model.bias else 'no bias'}, {model.dtype.name}, "
            f"{parameters:,} parameters{' each' if members else ''}")


def _columns(model) -> str:
    columns = getattr(model, "data_columns", None) or {}
    n_in, n_out = model.layer_sizes[0], model.layer_sizes[-1]
    if columns.get("features"):
        targets = f"; targets {', '.join(columns['targets'])}" if columns.get("targets") else ""
        return f"features {', '.join(columns['features'])}{targets} (a table IN is read by these names)"
    return (f"unnamed: {counted(n_in, 'feature')} read by position, {counted(n_out, 'output')} (arrays, an .npy pair "
            "or a synthetic task)")


def _standardized(model) -> str:
    scaler = model.standardizer
    if scaler is None:
        return "no"
    what = "inputs and targets" if scaler.scales_targets else "inputs"
    return f"{what} (predict takes raw inputs and gives targets in their units)"


def _trained(ckpt) -> str:
    from ..checkpoint.resume import source_files
    from .resume import saved_options

    settings, training = ckpt.settings, ckpt.training
    where = f"epoch {ckpt.epoch} of {settings.epochs}"
    if ckpt.state.batch:
        where += f", and {counted(ckpt.state.batch, 'batch', 'batches')} of epoch {ckpt.epoch + 1}"
    stopped = " (interrupted)" if training.get("interrupted") else ""
    config = _settings(ckpt.meta["optimizer"]["config"])
    lr = config.get("lr")
    source = training.get("source") or {}
    options = saved_options(ckpt.meta) or {}  # a command's synthetic task, held in memory ("arrays") or streamed
    task = options.get("task") if not options.get("data") else None
    files = [f for f in source_files(source) if f != source.get("w_path")]  # a table; an .npy pair (weights: below)
    data = (f", on {' and '.join(files)}" if files else f", on task {task}" if task
            else f", on {source['kind']}" if source.get("kind") else "")
    rows = f" ({counted(settings.train_rows, 'training row')})" if settings.train_rows else ""
    if source.get("sample_weight"):  # (a resume passes the same weights again, or a source made with them)
        by = (source["w_path"] if source.get("w_path") else f"its column {source['weight']}"
              if source.get("weight") else "sample_weight")
        rows = f"{rows[:-1]}, weighted by {by})" if rows else f" (weighted by {by})"
    clipping = "".join(f", {key} {_value(config[key])}" for key in CLIP_OPTIONS if config.get(key) is not None)
    return (f"{where}{stopped}; {config.get('name', '?')}{'' if lr is None else f' lr {_value(lr)}'}{clipping}"
            f"{_schedule(settings)}, batch {settings.batch_size}{data}{rows}")


RUNS_OWN = {"total_epochs": "epochs", "total_steps": "steps"}  # a schedule's fields whose 0 is the run's count


def _schedule(settings) -> str:
    """", schedule onecycle (pct_start 0.3, ..., total_steps 40 (the run's))": the run's schedule and the options it
    reads, a warm-up where it has one (a count of 0 that means the run's shown as the run's count); "" for a
    constant rate without a warm-up, the line as it was before the schedule was shown."""
    schedule = settings.schedule
    runs = {"epochs": settings.epochs, "steps": settings.epochs * settings.batches_per_epoch}
    options = [f"{field} {runs[RUNS_OWN[field]]} (the run's)" if field in RUNS_OWN and not value else
               f"{field} {_value(value)}" for field in SCHEDULE_FIELDS[schedule.name]
               if (value := getattr(schedule, field)) or field != "warmup_steps"]
    if schedule.name == "constant" and not options:
        return ""
    return f", schedule {schedule.name}" + (f" ({', '.join(options)})" if options else "")


def _settings(config) -> dict:
    """An optimizer's config as the trained line reads it: an Ensemble's (its members' configs) as one, each setting
    one value where every member has it, else the K values ("none" for a member without a clip)."""
    members = config.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        return config
    settings = {"name": config.get("name", members[0].get("name"))}
    for key in ("lr", *CLIP_OPTIONS):
        values = [m.get(key) for m in members]
        if any(v is not None for v in values):
            settings[key] = values[0] if values.count(values[0]) == len(values) else [
                "none" if v is None else v for v in values]
    return settings


def _value(v) -> str:
    """A number as the lines show it (5 significant digits); a list (an ensemble's, one per member) comma-joined."""
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_value, v))
    return f"{v:.5g}" if isinstance(v, float) else str(v)
