"""Checkpoints: a model, or a whole training run, in one ``.npz`` file without pickle.

Format (version 2; version 1 files still load): a zip of ``.npy`` members as ``numpy.savez``
writes them.

* ``gpunn_meta``: uint8 bytes of UTF-8 JSON: format name and version, the model's
  architecture (layer sizes, activations, bias, dtype, seed; ``precision`` when it is not float32), a manifest of every other
  member (shape, dtype), and for a training checkpoint the optimizer (its ``config()`` and step
  count) and ``training``: ``settings`` (:class:`~gpunn.training.state.FitSettings`, the schedule
  included), the :class:`~gpunn.training.state.TrainState` (``position``: epoch, batches done in it
  and their summed squared error; ``lr_scale``; ``history``; ``interrupted``), the data source's
  ``config()``, ``validation_data`` (a run given validation data: arrays' row count and checksum, or a
  validation source's ``config()``), each stateful callback's class name, place in the run (``index``),
  ``get_config()`` and ``state_dict()`` (``callbacks``), and ``callback_order``: every callback of the run in the
  order it ran, stateless ones too, each its class's ``class`` (name), ``module`` and ``qualname``, which a resume
  compares with the classes it defines (never imports) to give each state to its own class and put every callback
  back in its place. (Version 1 kept the schedule beside the settings rather than in them. Files from before
  ``callback_order``, version 2 as well, name a state's class alone, and a resume goes by that name as it did; an
  older gpunn reading a newer file ignores ``callback_order`` the same way: the version stays 2.)
* ``params``: the flat parameter buffer; ``optimizer.<moment>``: the flat optimizer
  moments; ``callback.<i>.<name>``: callback arrays (early stopping's best weights).

A :class:`gpunn.Ensemble` of K members (kind "ensemble" from :func:`save`, or a training checkpoint
whose model section has ``members`` and ``seeds``): every array is the flat buffer of all K members
(K x P values, member-major); the optimizer's config lists each member's settings and ``frozen`` the
members that no longer train; the position's partial sum is K floats; ``training["ensemble"]`` (a saved
Ensemble's: ``ensemble``) lists the diverged members, whose rows alone may hold NaN or infinities (a training
checkpoint's ``restored``: those of them early stopping put back to their best epoch, not in ``ens.diverged``).

Random state: shuffles are drawn from streams keyed by (seed, epoch) and the validation
split from (seed, "validation"), so the seed and the position are the whole RNG state;
no generator state is stored. (Older files hold ``training.rng``, a copy of the seed with a note: ignored.) Model initialisation is drawn from ``model.seed``.
A source whose rows are drawn (a synthetic source's, a bootstrap's resamples) records in its config which generator
drew them (``rng``: :func:`gpunn.rng.generator`), and a resume where another would draw them is refused
(``resume._check_drawn_by``; a file from before the record drew them with NumPy's PCG64 on the CPU, with cuRAND
on a GPU).

Writing is atomic (temp file in the same directory, flush, fsync, ``os.replace``, fsync of
the directory): a process killed mid-write leaves the previous checkpoint intact. Loading
reads with ``allow_pickle=False``, checks the zip's CRCs, the format and version, that the
members are exactly the manifest's, and every shape and dtype against the architecture;
anything else raises :class:`CheckpointError` before any array is used.
"""
from __future__ import annotations

import ast
import dataclasses
import io as _io
import json
import math
import os
import re
import zipfile

import numpy

from .._version import __version__
from ..activations import ACTIVATIONS
from ..hints import shell_word
from ..optim import OPTIMIZERS, PER_STEP_FIELDS, SCHEDULES, Schedule, options_of
from ..preflight import (CHECKPOINT_META, ZIP_MAGIC, archive_words, file_kind, foreign_file, kind_words,
                         misnamed_member, torch_saved)
from ..training import ensemble as ens_training
from ..training.state import FitSettings, position_words
from ..atomic import atomic_write


FORMAT = "gpunn-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
META = CHECKPOINT_META  # the member every checkpoint holds (preflight's: what a checkpoint writer may replace reads it)
MAX_META_BYTES = 64 << 20


class CheckpointError(ValueError):
    """A file is not a valid gpunn checkpoint (foreign, truncated, corrupt or from a newer gpunn)."""


# ---- writing -----------------------------------------------------------------------------
def check_replaceable(path) -> None:
    """Refuse to write a checkpoint over a file that is not one (:func:`gpunn.preflight.not_a_checkpoint`): an
    existing file of another kind (a CSV file, an .npy array, numpy.savez's arrays, text) is someone's data, which
    ``gpunn.save("data.csv", model)`` replaced without a word."""
    refusal = foreign_file(path)
    if refusal:
        raise FileExistsError(f"{os.fsdecode(path)} {refusal}")


def _write(path, meta: dict, arrays: dict) -> None:
    check_replaceable(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "gpunn_version": __version__, **meta,
            "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()}}
    blob = numpy.frombuffer(json.dumps(meta).encode(), dtype=numpy.uint8)
    atomic_write(path, lambda fh: _savez(fh, {META: blob, **arrays}))


def _savez(fh, arrays: dict) -> None:
    """``numpy.savez(fh, **arrays)``'s file, its zip closed on any exception. NumPy 1.x's savez left it open
    when interrupted: after a second Ctrl-C inside a checkpoint write, the zip's ``__del__`` later printed
    "Exception ignored in: <function ZipFile.__del__> ... ValueError: seek of closed file" below the one
    line ``gpunn train`` prints (atomic_write had closed and removed the temp file by then)."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                numpy.lib.format.write_array(member, numpy.asanyarray(array), allow_pickle=False)


# ---- reading -----------------------------------------------------------------------------
def _fail(path, why):
    raise CheckpointError(f"{os.fspath(path)}: {why}")


def _require(cond, path, why):
    if not cond:
        _fail(path, why)


def _check_model_config(cfg, path):
    from ..model import DTYPES, PRECISIONS

    _require(isinstance(cfg, dict), path, "model section is missing")
    sizes = cfg.get("layer_sizes")
    _require(isinstance(sizes, list) and len(sizes) >= 2
             and all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**31 for n in sizes),
             path, f"invalid layer_sizes {sizes!r}")
    acts = cfg.get("activations")
    _require(isinstance(acts, list) and len(acts) == len(sizes) - 2 and all(a in ACTIVATIONS for a in acts),
             path, f"invalid hidden activations {acts!r}")
    _require(cfg.get("output_activation") in ACTIVATIONS, path, "invalid output activation")
    _require(isinstance(cfg.get("bias"), bool), path, "invalid bias flag")
    _require(cfg.get("dtype") in DTYPES, path, f"invalid dtype {cfg.get('dtype')!r}")
    _require(_is_int(cfg.get("seed")), path, f"invalid seed {cfg.get('seed')!r} (a seed is a non-negative int)")
    precision = cfg.get("precision", "float32")
    _require(precision in PRECISIONS and (precision == "float32" or cfg["dtype"] == "float32"), path,
             f"invalid precision {precision!r} for dtype {cfg['dtype']!r}")
    n = sum(a * b + (b if cfg["bias"] else 0) for a, b in zip(sizes[:-1], sizes[1:]))
    _require(n < 2**40, path, "implausible parameter count")
    return n


def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _check_training(training, path, members=None, diverged=()):
    """``members``: K for an ensemble's run (its partial sum is K floats; a ``diverged`` member's may be
    NaN or infinite), None for one model's."""
    _require(isinstance(training, dict), path, "missing training section")
    pos = training.get("position")
    _require(isinstance(pos, dict) and _is_int(pos.get("epoch")) and _is_int(pos.get("batch")), path,
             "invalid training position")
    partial = pos.get("partial_sum_sq")  # a float; K floats for an ensemble part-way through an epoch
    partials = partial if members is not None and isinstance(partial, list) and len(partial) == members else [partial]
    _require(all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in partials), path,
             "invalid training position")
    st = training.get("settings")
    _require(isinstance(st, dict) and _is_int(st.get("epochs"), 1) and _is_int(st.get("batch_size"), 1)
             and _is_int(st.get("train_rows"), 1) and isinstance(st.get("shuffle"), bool)
             and st.get("validation") in (None, "data", "fraction"), path, "invalid fit settings")
    # (fit takes no negative seed: one edited in failed at the resume's first shuffle, NumPy's "expected non-negative
    # integer", naming no file)
    _require(_is_int(st.get("seed")), path, f"invalid fit settings: seed {st.get('seed')!r} (a seed is a non-negative "
                                            "int)")
    sched = st.get("schedule")
    fields = {f.name for f in dataclasses.fields(Schedule)}
    # (gamma recorded as the number the run used: a null would be read as a schedule's default; a file from before
    # per-step schedules has none of their fields, which take their defaults)
    _require(isinstance(sched, dict) and fields - PER_STEP_FIELDS <= set(sched) <= fields
             and sched.get("name") in SCHEDULES
             and sched.get("gamma") is not None, path, "invalid schedule")
    try:
        settings = FitSettings.from_dict(st)
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid fit settings ({exc})")
    # a position the run can be at: within its epochs, a batch inside the epoch, a real partial sum; said as the
    # counts done that it stores, in the words of every other message (epochs and batches counted from 1)
    epoch, batch, per_epoch = pos["epoch"], pos["batch"], settings.batches_per_epoch
    _require(batch < per_epoch and (epoch < settings.epochs or (epoch == settings.epochs and batch == 0)), path,
             f"impossible position: {position_words(epoch, batch, per_epoch, settings.epochs)} done (a run stands "
             f"within its epochs, fewer than {per_epoch} batches into one)")
    sane = [p for k, p in enumerate(partials) if len(partials) == 1 or k not in diverged]
    _require(all(math.isfinite(p) and p >= 0 for p in sane) and (batch > 0 or not any(p != 0 for p in partials)),
             path, "impossible position: invalid partial squared error")
    _require(isinstance(training.get("lr_scale"), (int, float)) and training["lr_scale"] > 0, path, "invalid lr scale")
    history = training.get("history")
    _require(isinstance(history, dict) and all(isinstance(v, list) for v in history.values()), path, "invalid history")
    # what resume compares validation_data and validation_fraction's held-out rows with (see _check_validation)
    for key in ("validation_data", "held_out"):
        held = training.get(key)
        _require(held is None or (isinstance(held, dict) and isinstance(held.get("kind"), str) and (
            held["kind"] != "arrays" or (_is_int(held.get("rows"), 1) and isinstance(held.get("fingerprint"), list)
                                         and len(held["fingerprint"]) == 6
                                         and all(isinstance(v, (int, float)) for v in held["fingerprint"])))),
                 path, f"invalid {key} record")
    cbs = training.get("callbacks")
    _require(isinstance(cbs, list) and all(
        isinstance(c, dict) and isinstance(c.get("class"), str) and _is_int(c.get("index"))
        and isinstance(c.get("state"), dict) and isinstance(c.get("arrays"), list)
        and all(isinstance(a, str) and a.isidentifier() for a in c["arrays"]) for c in cbs), path,
        "invalid callback states")
    _require(training.get("shuffled_by") is None or isinstance(training["shuffled_by"], str), path,
             "invalid shuffled_by (the name of what ordered the epochs' rows)")
    order = training.get("callback_order")  # every callback of the run, in its order (absent in files from before it)
    _require(order is None or (isinstance(order, list) and all(
        isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("class", "module", "qualname")) for c in order)
        and len({c["index"] for c in cbs}) == len(cbs)
        and all(c["index"] < len(order) and order[c["index"]]["class"] == c["class"] for c in cbs)), path,
        "invalid callback order (each callback's class, and the saved states' places in it)")


def optimizer_from_config(config):
    """An Optimizer (unbound) from ``Optimizer.config()``."""
    cls = OPTIMIZERS[config["name"]]
    accepted = options_of(cls)
    return cls(**{k: v for k, v in config.items() if k in accepted})


def _optimizer_from_meta(opt, members, xp):
    """The run's optimizer (unbound) from a checkpoint's optimizer section: one model's, or for an
    ensemble of ``members`` the EnsembleOptimizer of its members' configs with its frozen members."""
    if members is None:
        return optimizer_from_config(opt["config"])
    configs, frozen = opt["config"].get("members"), opt.get("frozen")
    if not (isinstance(configs, list) and len(configs) == members and all(isinstance(c, dict) for c in configs)):
        raise ValueError(f"the ensemble's optimizer should list {members} member settings")
    if not (isinstance(frozen, list) and len(set(frozen)) == len(frozen)):
        raise ValueError("the ensemble's frozen members should be a list of distinct indices")
    return ens_training.EnsembleOptimizer.from_members([optimizer_from_config(c) for c in configs], xp, frozen=frozen)


def _check_head(path, head: bytes):
    """The file's first bytes: a zip file's, not a pickle's."""
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q"):
        _fail(path, "looks like a Python pickle; gpunn checkpoints never contain pickles and are not unpickled")
    if head[:4] not in ZIP_MAGIC and os.fspath(path).lower().endswith(".toml"):  # what --save writes beside a checkpoint
        beside = os.fspath(path)[:-len(".toml")]
        _fail(path, f"a run's config (gpunn train --config {shell_word(path)}), not a checkpoint"
                    + (f": the checkpoint beside it is {beside}" if os.path.isfile(beside) else ""))
    _require(head[:4] in ZIP_MAGIC, path,
             f"not a gpunn checkpoint ({kind_words(file_kind(path))}, not an .npz/zip archive)")


def _parse(path, data: bytes):
    """(meta, host arrays) from the file's bytes, fully validated; raises CheckpointError."""
    _check_head(path, data)
    zf = zipfile.ZipFile(_io.BytesIO(data))
    for info in zf.infolist():  # every member read: its CRC-32 checked, and its header's name (_damaged_member)
        try:
            fh = zf.open(info)
        except (RuntimeError, NotImplementedError):  # encrypted, or of a method zipfile lacks: someone's zip, which
            continue  # _parse_meta names (read_meta's words; RuntimeError's quoted the ZipInfo)
        with fh:
            while fh.read(1 << 20):
                pass
    meta, expected, diverged, n_members = _parse_meta(path, zf)
    members = {info.filename: info for info in zf.infolist()}
    manifest = meta["arrays"]
    npz = numpy.load(_io.BytesIO(data), allow_pickle=False)
    arrays = {}
    for name, shape in expected.items():
        dtype = numpy.dtype("float64") if name.startswith("standardizer.") else numpy.dtype(meta["model"]["dtype"])
        entry = manifest[name]
        _require(isinstance(entry, dict) and list(entry.get("shape", ())) == list(shape)
                 and numpy.dtype(entry.get("dtype")) == dtype, path,
                 f"array {name!r} should be {dtype.name} of shape {shape}, manifest says {entry!r}")
        # refuse to allocate more than the architecture implies (a forged header cannot blow up memory)
        _require(members[f"{name}.npy"].file_size <= dtype.itemsize * math.prod(shape) + 4096, path,
                 f"array {name!r} is larger than its shape allows")
        array = npz[name]
        _require(array.shape == shape and array.dtype == dtype, path,
                 f"array {name!r} is {array.dtype} {array.shape}, expected {dtype.name} {shape}")
        finite = array if not diverged else numpy.delete(array.reshape(n_members, -1), list(diverged), axis=0)
        _require(bool(numpy.isfinite(finite).all()), path, f"array {name!r} holds NaN or infinite values")
        arrays[name] = array
        if name.startswith("standardizer."):
            _require(numpy.isfinite(array).all() and (not name.endswith("_scale") or (array > 0).all()), path,
                     f"invalid standardization statistics in {name!r}")
    return meta, arrays


def _parse_meta(path, zf: zipfile.ZipFile):
    """(meta, {array name: shape}, diverged members, K or None) of an open checkpoint: the metadata member
    read (its CRC checked as it is read) and validated, with the file's list of members; no array is read."""
    members = {info.filename: info for info in zf.infolist()}
    if f"{META}.npy" not in members:
        _check_header_names(zf, zf.infolist())
        copied = (": torch.load reads it, and gpunn.MLP takes its weights layer by layer, each nn.Linear's transposed "
                  "(README: Coming from PyTorch)") if torch_saved(members) else ""
        _fail(path, f"not a gpunn checkpoint ({archive_words(members)}){copied}")
    _check_none_encrypted(path, zf.infolist())
    _require(members[f"{META}.npy"].file_size < MAX_META_BYTES, path, "metadata too large")
    with zf.open(f"{META}.npy") as fh:
        blob = numpy.lib.format.read_array(fh, allow_pickle=False)
    _require(blob.dtype == numpy.uint8 and blob.ndim == 1, path, "metadata member has the wrong type")
    meta = json.loads(blob.tobytes().decode("utf-8"))
    _require(isinstance(meta, dict) and meta.get("format") == FORMAT, path, "not a gpunn checkpoint (format tag)")
    version = meta.get("format_version")
    _require(isinstance(version, int), path, "missing format version")
    _require(version <= FORMAT_VERSION, path,
             f"format version {version} was written by a newer gpunn (this one reads up to {FORMAT_VERSION})")
    _require(version in READABLE_VERSIONS, path, f"unsupported format version {version}")
    n_params = _check_model_config(meta.get("model"), path)
    manifest = meta.get("arrays")
    _require(isinstance(manifest, dict), path, "missing array manifest")
    n_members = _check_members(meta, path)
    if n_members is not None:  # an Ensemble: K members' parameters in one flat buffer, and so each state array
        _require(n_params * n_members < 2**40, path, "implausible parameter count")
        n_params *= n_members
    expected = {"params": (n_params,)}
    diverged = ()  # members whose arrays may hold NaN or infinities (an ensemble's diverged members)
    expected.update(_standardizer_members(meta["model"], path))
    opt = meta.get("optimizer")
    if meta.get("kind") == "training":
        _require(isinstance(opt, dict) and isinstance(opt.get("config"), dict), path, "missing optimizer section")
        try:
            optimizer = _optimizer_from_meta(opt, n_members, numpy)
        except (KeyError, TypeError, ValueError) as exc:
            _fail(path, f"invalid optimizer settings ({exc})")
        _require(list(opt.get("state", [])) == list(optimizer.state_names()), path, "optimizer state does not match its kind")
        _require(isinstance(opt.get("steps"), int) and opt["steps"] >= 0, path, "invalid optimizer step count")
        for name in optimizer.state_names():
            expected[f"optimizer.{name}"] = (n_params,)
        training = meta.get("training")
        if version == 1 and isinstance(training, dict) and isinstance(training.get("settings"), dict):
            # version 1 kept the schedule beside the settings; version 2 keeps it in them
            training["settings"] = {**training["settings"], "schedule": training.pop("schedule", None)}
        if n_members is not None:
            section = training.get("ensemble") if isinstance(training, dict) else None
            diverged = section.get("diverged") if isinstance(section, dict) else None
            _require(isinstance(diverged, list) and all(_is_int(k) for k in diverged)
                     and set(diverged) <= set(optimizer.frozen), path,
                     "invalid ensemble section: diverged members must be a list of frozen members")
            restored = section.get("restored", [])
            _require(isinstance(restored, list) and set(restored) <= set(diverged), path,
                     "invalid ensemble section: restored members must be a list of diverged members")
        _check_training(training, path, n_members, set(diverged))
        for cb in training.get("callbacks", []):
            for name in cb.get("arrays", []):
                expected[f"callback.{cb['index']}.{name}"] = (n_params,)
    else:
        _require(meta.get("kind") in ("model", "ensemble"), path, f"unknown checkpoint kind {meta.get('kind')!r}")
        if n_members is not None:  # (absent in files from before it: none diverged)
            section = meta.get("ensemble", {"diverged": []})
            diverged = section.get("diverged") if isinstance(section, dict) else None
            _require(isinstance(diverged, list) and all(_is_int(k) and k < n_members for k in diverged), path,
                     "invalid ensemble section: diverged members must be a list of member indices")
    _require(set(manifest) == set(expected), path,
             f"members {sorted(manifest)} do not match what the metadata describes ({sorted(expected)})")
    unexpected = sorted(set(members) - {f"{k}.npy" for k in [META, *expected]})
    _check_header_names(zf, [members[name] for name in unexpected])
    _require(not unexpected, path, f"unexpected members in the file: {unexpected}")
    return meta, expected, diverged, n_members


ENCRYPTED = 0x1  # a zip member's flag: encrypted (zipfile reads it from the zip's directory)


def _check_none_encrypted(path, infos) -> None:
    """No member of a gpunn checkpoint is marked encrypted (``infos``: its zip's directory), which gpunn never writes:
    one so marked is said in plain words, by read_meta as by read, where zipfile's refusal came out as a foreign
    file's ("RuntimeError: File 'gpunn_meta.npy' is encrypted, password required for extraction", or a ZipInfo's
    repr), and read_meta read past an array's."""
    marked = next((info.filename for info in infos if info.flag_bits & ENCRYPTED), None)
    if marked is not None:
        _fail(path, f"corrupt checkpoint: member {marked!r} is marked encrypted, which gpunn never writes (a damaged "
                    "flag bit, or the file encrypted since)")


def _check_header_names(zf: zipfile.ZipFile, infos) -> None:
    """Members read_meta does not read (ones it does not expect, or every one where the metadata's name is not
    there): one whose name in the zip's directory was damaged is refused as read's pass over every member refuses
    it (zipfile's BadZipFile: _damaged_member), not as an unexpected member or a file of someone's arrays."""
    misnamed = misnamed_member(zf, infos)
    if misnamed is not None:
        raise misnamed


def _check_members(meta, path):
    """K of an ensemble's file (kind "ensemble", or a training checkpoint of an ensemble run), checked with its
    seeds; None for one model's."""
    cfg, kind = meta["model"], meta.get("kind")
    if kind == "ensemble" or (kind == "training" and "members" in cfg):
        k = cfg.get("members")
        _require(_is_int(k, 1) and k < 2**20, path, f"invalid member count {k!r}")
        seeds = cfg.get("seeds")
        _require(isinstance(seeds, list) and len(seeds) == k and all(_is_int(x) for x in seeds), path,
                 "invalid member seeds")
        return k
    _require("members" not in cfg and "seeds" not in cfg, path, f"a {kind!r} file describes one model, not members")
    return None


def _dtype_name(name) -> bool:
    """Whether ``name`` is a NumPy name of a numeric dtype ("float64", "int64"...)."""
    try:
        return isinstance(name, str) and numpy.dtype(name).kind in "biuf"
    except TypeError:
        return False


def _standardizer_members(cfg, path) -> dict:
    """The members a model's standardizer and column names need, checked: {name: shape}."""
    sizes = cfg["layer_sizes"]
    columns = cfg.get("columns")
    if columns is not None:
        _require(isinstance(columns, dict) and all(
            isinstance(columns.get(k), list) and len(columns[k]) == n and all(isinstance(c, str) for c in columns[k])
            or k == "targets" and columns.get(k, ()) is None  # a fit on a DataFrame X with an unnamed Y
            for k, n in (("features", sizes[0]), ("targets", sizes[-1]))), path, "invalid column names")
    std = cfg.get("standardizer")
    if std is None:
        return {}
    _require(isinstance(std, dict) and isinstance(std.get("targets"), bool) and _dtype_name(std.get("y_dtype", "f8")),
             path, "invalid standardizer section")
    members = {"standardizer.x_mean": (sizes[0],), "standardizer.x_scale": (sizes[0],)}
    if std["targets"]:
        members.update({"standardizer.y_mean": (sizes[-1],), "standardizer.y_scale": (sizes[-1],)})
    return members


def _opened(path):
    """``path`` opened to read. A directory is refused as the OS refuses it (IsADirectoryError), naming the
    checkpoints in it: a gpunn sweep --save DIR's ensembles, or a ModelCheckpoint's folder, given for its file."""
    try:
        return open(path, "rb")
    except IsADirectoryError as exc:
        try:
            names = sorted(name for name in os.listdir(path) if name.lower().endswith(".npz"))
        except OSError:  # (not listable: said without its contents)
            names = None
        held = (f"; it holds {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}: give one of them, "
                f"{os.path.join(os.fsdecode(path), names[0])!r}" if names else "" if names is None else
                "; it holds no .npz file")
        raise IsADirectoryError(exc.errno, f"{os.fsdecode(path)} is a directory, not a checkpoint file{held}") from None


def read(path):
    """(metadata, host arrays) of a checkpoint, validated, without building anything."""
    with _opened(path) as fh:
        data = fh.read()
    return _validated(path, lambda: _parse(path, data))


def read_meta(path) -> dict:
    """A checkpoint's metadata, validated as :func:`read` validates it, without reading its arrays (the
    options a run recorded, read before it is loaded; its arrays are checked when it is)."""
    with _opened(path) as fh:
        _check_head(path, fh.read(4))
        fh.seek(0)
        return _validated(path, lambda: _parse_meta(path, zipfile.ZipFile(fh))[0])


def _validated(path, parse):
    try:
        return parse()
    except CheckpointError:
        raise
    except zipfile.BadZipFile as exc:
        raise _damaged_member(path, exc) from None
    except Exception as exc:
        raise _bytes_refused(path, exc) from None


def _damaged_member(path, exc: zipfile.BadZipFile) -> CheckpointError:
    """zipfile's refusal of a member as it is opened or read, in the same words for every reader (read reads every
    member; read_meta the metadata, and the header of a member it does not expect): a CRC-32 that fails, or a name
    in the zip's directory that is not its header's (one of the two damaged: read said the member failed its CRC
    check, and gpunn train --resume that it was an unexpected member); else zipfile's words."""
    crc = re.fullmatch(r"Bad CRC-32 for file ('.*'|\".*\")", str(exc))
    names = re.fullmatch(r"File name in directory ('.*'|\".*\") and header (b'.*'|b\".*\") differ\.", str(exc))
    if crc:
        said = f"member {ast.literal_eval(crc.group(1))!r} fails its CRC check"
    elif names:
        directory, header = (ast.literal_eval(name) for name in names.groups())
        said = (f"member {directory!r} (so named in the zip's directory) is {header.decode('utf-8', 'replace')!r} "
                "in its own header: one of the names is damaged")
    else:
        return _bytes_refused(path, exc)
    return CheckpointError(f"{os.fspath(path)}: corrupt checkpoint: {said}")


def _bytes_refused(path, exc) -> CheckpointError:
    """zipfile's, numpy's reader's, json's error: all mean the bytes are not a valid checkpoint."""
    return CheckpointError(f"{os.fspath(path)}: corrupt, truncated or foreign file ({type(exc).__name__}: {exc})")
