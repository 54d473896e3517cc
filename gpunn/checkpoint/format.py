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
(``_check_drawn_by``; a file from before the record drew them with NumPy's PCG64 on the CPU, with cuRAND on a GPU).

Writing is atomic (temp file in the same directory, flush, fsync, ``os.replace``, fsync of
the directory): a process killed mid-write leaves the previous checkpoint intact. Loading
reads with ``allow_pickle=False``, checks the zip's CRCs, the format and version, that the
members are exactly the manifest's, and every shape and dtype against the architecture;
anything else raises :class:`CheckpointError` before any array is used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import json
import math
import os
import tempfile
import warnings
import zipfile

import numpy

from .. import backend as _backend
from .._version import __version__
from ..activations import ACTIVATIONS
from ..checks import check_rows_match, flag, held_warnings, positive_int, warn_read_by_position
from ..hints import shell_word
from ..optim import OPTIMIZERS, SCHEDULES, Schedule, options_of
from ..preflight import (CHECKPOINT_META, archive_words, check_output, file_kind, foreign_file, kind_words, same_file,
                        writes_in_place)
from ..rng import CPU_SHUFFLE, GPU_GENERATOR, GPU_SHUFFLE, generator, shuffler
from ..training import callbacks as cbmod
from ..training.callbacks import Callback, History, _Monitoring, order_callbacks
from ..training import ensemble as ens_training
from ..training.ensemble import MemberEarlyStopping
from ..training.fit import split_validation
from ..training.loop import train
from ..training.protocols import is_source
from ..training.sources import ArraySource, fingerprint_matches
from ..training.state import FitSettings, TrainState, position_words

FORMAT = "gpunn-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
META = CHECKPOINT_META  # the member every checkpoint holds (preflight's: what a checkpoint writer may replace reads it)
MAX_META_BYTES = 64 << 20
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A file is not a valid gpunn checkpoint (foreign, truncated, corrupt or from a newer gpunn)."""


# ---- writing -----------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _remove_stale_temps(directory, base, own=False) -> None:
    """Delete temp files an earlier, killed writer of ``base`` left behind (named ``.BASE.PID.*.tmp``,
    PID no longer running); ``own``: this process's instead (one write to a path at a time)."""
    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or (int(pid) == os.getpid()) != own:
            continue
        if not own:
            try:
                os.kill(int(pid), 0)
                continue  # that writer is still running
            except ProcessLookupError:
                pass
            except OSError:  # exists but is not ours (EPERM): leave it
                continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _naming(exc: OSError, path) -> OSError:
    """The same error, saying which file could not be written (not the temp file's name)."""
    message = f"cannot write {path}: {exc.strerror or exc}"
    try:
        return type(exc)(exc.errno, message) if exc.errno else type(exc)(message)
    except TypeError:  # an OSError subclass with another constructor
        return OSError(exc.errno, message) if exc.errno else OSError(message)


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, make it durable, then rename over ``path``.

    The temp file (``.NAME.PID.random.tmp``) is removed on any failure, Ctrl-C included, and one left
    by a killed process is removed by the next write to the same path. Errors name ``path``, not the
    temp file. A device, pipe or terminal (:func:`writes_in_place`) is written into directly. ``path`` may be
    str, bytes or a path object.
    """
    path = os.fsdecode(path)  # a bytes name failed below, mixing bytes and str ("startswith first arg must be bytes")
    if writes_in_place(path):
        try:
            with open(path, "wb") as fh:
                write(fh)
        except OSError as exc:
            raise _naming(exc, path) from None
        return
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temps(directory, base)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _naming(exc, path) from None
    except BaseException:  # Ctrl-C inside mkstemp, once it had made the file (its open may block on a busy
        _remove_stale_temps(directory, base, own=True)  # disk): its name never came back, so by pattern
        raise
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
        except OSError as exc:
            raise _naming(exc, path) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _members(model):
    """K for a gpunn.Ensemble, None for one model."""
    return getattr(model, "n_models", None)


def model_config(model, trained_in=False) -> dict:
    """The architecture section; an Ensemble's adds ``members`` and ``seeds`` (``seed`` is member 0's).

    ``precision`` is the model's; for a tf32/bf16 model loaded on the CPU, which runs it in float32, the one its
    file recorded (``saved_precision``), so that a saved file's round trip through a CPU keeps it. A training
    checkpoint (``trained_in=True``) records the precision the run trains in, which its resume checks."""
    members = _members(model)
    config = {"layer_sizes": list(model.layer_sizes),
              "activations": [a.name for a in model.activations[:-1]],
              "output_activation": model.activations[-1].name,
              "bias": model.bias, "dtype": model.dtype.name,
              "seed": int(model.seed if members is None else model.seeds[0])}
    if members is not None:
        config.update(members=int(members), seeds=[int(x) for x in model.seeds])
    precision = getattr(model, "precision", "float32")
    if not trained_in:
        precision = getattr(model, "saved_precision", None) or precision
    if precision != "float32":  # (absent: float32, as in files from before it)
        config["precision"] = precision
    if getattr(model, "standardizer", None) is not None:
        config["standardizer"] = model.standardizer.state()[0]
    if getattr(model, "data_columns", None):
        config["columns"] = model.data_columns
    return config


def _model_arrays(model) -> dict:
    """The parameters, and the standardization statistics (float64) when the model has them."""
    arrays = {"params": _backend.host_array(model.params)}
    if getattr(model, "standardizer", None) is not None:
        arrays.update({f"standardizer.{k}": numpy.asarray(v, "float64")
                       for k, v in model.standardizer.state()[1].items()})
    return arrays


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


def save(path, model) -> None:
    """Save a model (architecture, dtype, seed, parameters) for :func:`load` / ``gpunn predict``.

    An :class:`gpunn.Ensemble` is saved whole (kind "ensemble": its members' seeds beside the model
    section, the flat buffer of all members as ``params``); :func:`load` gives the Ensemble back."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        swapped = " (the arguments go the other way round: gpunn.save(path, model))" \
            if isinstance(model, (str, bytes, os.PathLike)) else ""
        raise TypeError(f"gpunn.save(path, model): path must be a file name, got a {type(path).__name__}{swapped}")
    from ..model import DeviceModel

    if not isinstance(model, DeviceModel):  # it failed inside, on an attribute the object lacks
        # (its __dict__, not hasattr: an MLPRegressor unpickled without a usable device builds model_ on access)
        fitted = {"model_", "_unbuilt"} & set(getattr(model, "__dict__", {}))
        hint = " (the network is its model_; the estimator itself pickles)" if fitted else ""
        raise TypeError(f"gpunn.save(path, model): model must be a gpunn.MLP or gpunn.Ensemble, got "
                        f"{type(model).__name__}{hint}")
    kind = "model" if _members(model) is None else "ensemble"
    meta = {"kind": kind, "device": model.device, "model": model_config(model)}
    if kind == "ensemble":  # its diverged members, whose parameters alone may be NaN or infinite
        meta["ensemble"] = {"diverged": [int(k) for k in model.diverged]}
    _write(path, meta, _model_arrays(model))


def save_checkpoint(path, *, model, optimizer, settings: FitSettings, state: TrainState, callbacks=(),
                    source=None, validation=None) -> None:
    """Save everything needed to resume a run (see the module docstring): the model, the optimizer's
    config and state, the run's settings and state, the source's config and each callback's state;
    for a run given ``validation_data``, what its evaluator ``validation`` describes of them (``describe()``:
    arrays' row count and checksum, a validation source's config), which a resume compares.

    For a gpunn.Ensemble the same, per member: the optimizer's config lists every member's, its state
    arrays are the flat (K * P) buffers, ``frozen`` lists the members that no longer train (stopped
    early or diverged), the position's partial sum is K floats and ``training["ensemble"]`` lists the
    diverged members."""
    opt = optimizer
    arrays = _model_arrays(model)
    for name in opt.state_names():
        arrays[f"optimizer.{name}"] = _backend.host_array(opt.state[name]).reshape(-1)
    saved_callbacks, order = [], []
    for i, cb in enumerate(callbacks):
        order.append(_class_record(type(cb)))
        if not hasattr(cb, "state_dict"):
            continue
        cb_state, cb_arrays = cb.state_dict()
        for name, array in cb_arrays.items():
            arrays[f"callback.{i}.{name}"] = _backend.host_array(array)
        saved_callbacks.append({"class": type(cb).__name__, "index": i, "state": cb_state,
                                "config": cb.get_config() if hasattr(cb, "get_config") else None,
                                "arrays": sorted(cb_arrays)})
    training = {
        "settings": settings.to_dict(),
        **state.to_dict(),
        "source": None if source is None else source.config(),
        **_validation_record(settings, validation),
        "callbacks": saved_callbacks,
        "callback_order": order,
    }
    if settings.shuffle:  # what ordered its epochs' rows: a resume part-way through one on another warns (_other_shuffle)
        training["shuffled_by"] = shuffler(model.backend)
    optimizer = {"config": opt.config(), "steps": opt.steps, "state": list(opt.state_names())}
    if _members(model) is not None:
        optimizer["frozen"] = opt.frozen
        diverged = [int(k) for k in getattr(state.history, "diverged", ())]
        training["ensemble"] = {"diverged": diverged}
        restored = [k for k in diverged if k not in model.diverged]  # by EarlyStopping, to their best epoch
        if restored:  # (absent: none, as in files from before it)
            training["ensemble"]["restored"] = restored
    _write(path, {"kind": "training", "device": model.device, "model": model_config(model, trained_in=True),
                  "optimizer": optimizer, "training": training}, arrays)


def _class_record(cls) -> dict:
    """A callback's class as ``callback_order`` holds it: its name, module and qualified name (compared with the
    classes a resuming process defines, never imported)."""
    module = getattr(cls, "__module__", None)
    return {"class": cls.__name__, "module": module if isinstance(module, str) else "", "qualname": cls.__qualname__}


def _validation_record(settings, validation) -> dict:
    """``{"validation_data": what the evaluator describes}`` for a run given validation_data, else {}."""
    describe = getattr(validation, "describe", None)
    record = describe() if settings.validation == "data" and describe is not None else None
    return {} if record is None else {"validation_data": record}


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
    _require(isinstance(cfg.get("seed"), int), path, "invalid seed")
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
             and _is_int(st.get("train_rows"), 1) and isinstance(st.get("shuffle"), bool) and _is_int(st.get("seed"), -2**63)
             and st.get("validation") in (None, "data", "fraction"), path, "invalid fit settings")
    sched = st.get("schedule")
    fields = {f.name for f in dataclasses.fields(Schedule)}
    _require(isinstance(sched, dict) and set(sched) == fields and sched.get("name") in SCHEDULES, path,
             "invalid schedule")
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
    held = training.get("validation_data")  # what resume compares validation_data with (see _check_validation)
    _require(held is None or (isinstance(held, dict) and isinstance(held.get("kind"), str) and (
        held["kind"] != "arrays" or (_is_int(held.get("rows"), 1) and isinstance(held.get("fingerprint"), list)
                                     and len(held["fingerprint"]) == 6
                                     and all(isinstance(v, (int, float)) for v in held["fingerprint"])))),
             path, "invalid validation_data record")
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
    if head[:4] != _ZIP_MAGIC and os.fspath(path).lower().endswith(".toml"):  # what --save writes beside a checkpoint
        beside = os.fspath(path)[:-len(".toml")]
        _fail(path, f"a run's config (gpunn train --config {shell_word(path)}), not a checkpoint"
                    + (f": the checkpoint beside it is {beside}" if os.path.isfile(beside) else ""))
    _require(head[:4] == _ZIP_MAGIC, path,
             f"not a gpunn checkpoint ({kind_words(file_kind(path))}, not an .npz/zip archive)")


def _parse(path, data: bytes):
    """(meta, host arrays) from the file's bytes, fully validated; raises CheckpointError."""
    _check_head(path, data)
    zf = zipfile.ZipFile(_io.BytesIO(data))
    bad = zf.testzip()  # reads every member and checks its CRC-32
    _require(bad is None, path, f"corrupt checkpoint: member {bad!r} fails its CRC check")
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
    _require(f"{META}.npy" in members, path, f"not a gpunn checkpoint ({archive_words(members)})")
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
    _require(set(members) == {f"{k}.npy" for k in [META, *expected]}, path,
             f"unexpected members in the file: {sorted(set(members) - {f'{k}.npy' for k in [META, *expected]})}")
    return meta, expected, diverged, n_members


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


def read(path):
    """(metadata, host arrays) of a checkpoint, validated, without building anything."""
    with open(path, "rb") as fh:
        data = fh.read()
    return _validated(path, lambda: _parse(path, data))


def read_meta(path) -> dict:
    """A checkpoint's metadata, validated as :func:`read` validates it, without reading its arrays (the
    options a run recorded, read before it is loaded; its arrays are checked when it is)."""
    with open(path, "rb") as fh:
        _check_head(path, fh.read(4))
        fh.seek(0)
        return _validated(path, lambda: _parse_meta(path, zipfile.ZipFile(fh))[0])


def _validated(path, parse):
    try:
        return parse()
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile, numpy's reader, json: all mean the bytes are not a valid checkpoint
        raise CheckpointError(f"{os.fspath(path)}: corrupt, truncated or foreign file "
                              f"({type(exc).__name__}: {exc})") from None


def _build_model(meta, arrays, device):
    from ..model import MLP, runnable_precision

    cfg = meta["model"]
    backend = _backend.resolve(device)
    # tf32/bf16 where the device runs them; on the CPU (no tensor cores) float32, on the same float32 weights
    recorded = cfg.get("precision", "float32")
    precision = runnable_precision(recorded, backend)
    if "members" in cfg:  # a saved Ensemble, or a training checkpoint of one
        from ..ensemble import Ensemble

        model = Ensemble(cfg["layer_sizes"], cfg["members"], activation=list(cfg["activations"]),
                         output_activation=cfg["output_activation"], bias=cfg["bias"], dtype=cfg["dtype"],
                         device=backend, seed=list(cfg["seeds"]), precision=precision)
    else:
        model = MLP(cfg["layer_sizes"], activation=list(cfg["activations"]), output_activation=cfg["output_activation"],
                    bias=cfg["bias"], dtype=cfg["dtype"], device=backend, seed=cfg["seed"], precision=precision)
    if precision != recorded:  # kept, for gpunn.save to write back
        model.saved_precision = recorded
    with backend.use():
        model.params[...] = backend.xp.asarray(arrays["params"])
    if "standardizer" in cfg:
        from ..data.stats import Standardizer

        stats = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("standardizer.")}
        model.standardizer = Standardizer.from_state(cfg["standardizer"], stats)
    model.data_columns = cfg.get("columns")
    if "members" in cfg:  # its diverged members (a training checkpoint's: of the run so far, less those restored)
        section = (meta.get("training") or {}).get("ensemble") or meta.get("ensemble") or {}
        restored = set(section.get("restored", []))
        model.diverged = sorted(int(k) for k in section.get("diverged", []) if k not in restored)
    return model


def load(path, device="auto"):
    """The model in a checkpoint (model-only, training, or a saved Ensemble), on ``device`` ("cpu", "cuda", ...).

    A checkpoint written on the GPU loads on the CPU and back: arrays are stored on the host. A model saved
    with precision "tf32" or "bf16" gets it back on a GPU; on the CPU, which has no tensor cores, it loads
    in float32 (its parameters are the float32 master weights), to predict, and keeps the recorded precision
    in ``model.saved_precision``: :func:`save` writes it back. Resuming such a training checkpoint there is
    refused (:func:`check_resume_precision`).
    """
    meta, arrays = read(path)
    return _build_model(meta, arrays, device)


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
               handle_interrupt=True, distributed=False):
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
        ``epochs`` (the run's total) may raise it, never below the epochs done.
        ``checkpoint``: True keeps writing to this file, a path writes elsewhere, False stops
        checkpointing; a resume that trains nothing (early stopping ended the run, or its epochs are all done)
        leaves this file as it was, whatever settings the callbacks passed have; a run saved with several writers
        (whose paths the file does not hold) needs them passed in ``callbacks``, or False. Other data are refused:
        another row count, or in-memory arrays whose values, row order or column order differ from the run's (the
        checkpoint keeps a checksum of them; one written before it recorded its ``fingerprint_rule`` is checked by
        plain row sums, as then, blind to the columns' order); so are other
        ``validation_data`` than the run's (arrays by the same checksum, a validation source by its config),
        and ``validation_data`` for a run that had none or held out ``validation_fraction``; and a synthetic
        source's rows or a bootstrap's resamples where another generator would draw them than the file records
        (a GPU run loaded on the CPU, a CPU run on a GPU, a GPU run from before the record, whose rows cuRAND
        drew). A DataFrame X is read by the checkpoint's column names (``model.data_columns``, kept: a resume records
        none, it continues the run), as a fit reads one: the same columns in another order resume the same run, one
        missing is refused by name, and columns read by position though one side has names are warned of (see
        ``MLP.predict``). On the CPU the result is bit-identical to a run that was never interrupted.
        ``distributed=True`` resumes data parallel (every rank loads this file) on any number of ranks that divides
        the run's global batch; without it a data-parallel run continues in one process at its global batch.

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
                          distributed=distributed)


def load_checkpoint(path, device="auto") -> Checkpoint:
    """Load a checkpoint with its training state onto ``device``; see :class:`Checkpoint`."""
    meta, arrays = read(path)
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
    return Checkpoint(os.fspath(path), model, optimizer, meta, arrays)


# ---- checkpointing during training, and resumption -------------------------------------
class ModelCheckpoint(Callback):
    """Write a resumable checkpoint (this module's format) every ``every`` epochs, when training
    ends, and when it is interrupted (Ctrl-C; part-way through an epoch of a source that cannot resume there,
    gpunn.data.iterable's, the file is left at the last epoch's end, with a warning). Each write is atomic: a
    crash mid-write leaves the previous checkpoint in place. With ``save_best_only`` the epoch-end writes
    happen only when ``monitor`` improves (the final/interrupt writes still happen so the
    run can be resumed; point ``path`` elsewhere to keep a best-only file); ``monitor`` and ``mode``
    are EarlyStopping's.
    """

    rank_zero_only = True  # data parallel: rank 0 writes; the other ranks hold the same state

    def __init__(self, path, every=1, save_best_only=False, monitor=None, mode="auto"):
        self.path, self.every = os.fspath(path), positive_int(every, "every")
        if not self.path:  # (found at the first save, after an epoch's work)
            raise ValueError("ModelCheckpoint's path is empty; name a file to write (run.npz)")
        self.save_best_only = flag(save_best_only, "save_best_only")
        self._tracker = _Monitoring(monitor, 0.0, mode)
        self.saves = 0

    writes_checkpoint = True  # order_callbacks runs it after the callbacks whose state it saves

    def get_config(self):
        return {"every": self.every, "save_best_only": self.save_best_only,
                "monitor": self._tracker.monitor, "mode": self._tracker.mode}

    def __repr__(self):
        return f"ModelCheckpoint({self.path!r}, {super().__repr__().split('(', 1)[1]}"

    def on_train_begin(self, trainer):
        check_output(self.path, "ModelCheckpoint's path")  # before the first epoch trains, not at its first save
        check_replaceable(self.path)
        self._tracker.on_train_begin(trainer)
        if self.save_best_only:  # (its monitor is read only then)
            self._tracker.check_logged(trainer, self)

    def save(self, trainer, logs=None):
        """Write the run's checkpoint; ``logs``: an epoch's logs not yet in the history."""
        save_checkpoint(self.path, model=trainer.model, optimizer=trainer.optimizer, settings=trainer.settings,
                        state=trainer.snapshot(logs), callbacks=trainer.callbacks, source=trainer.source,
                        validation=trainer.validation)
        self.saves += 1

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best_only:
            value = self._tracker._value(logs, self)
            if not self._tracker._improved(value):
                return
            self._tracker.best = value
        elif (epoch + 1) % self.every:
            return
        self.save(trainer, logs)

    def on_train_end(self, trainer):
        if trainer.failed:  # never overwrite a good checkpoint with a diverged or half-stepped model
            return
        if trainer.state.batch and not getattr(trainer.source, "resumable", True):
            # stopped part-way through an epoch of a source that cannot resume there (gpunn.data.iterable): such a
            # file could never be resumed, and it would replace the last epoch's, which can
            warnings.warn(f"the run stopped part-way through epoch {trainer.state.epoch + 1}, and "
                          f"{type(trainer.source).__name__} cannot resume part-way through an epoch: {self.path} was "
                          "left as it was (the end of the last epoch it was written at, if any)", RuntimeWarning,
                          stacklevel=2)
            return
        self.save(trainer)

    def state_dict(self):
        return {"best": self._tracker.best}, {}

    def load_state_dict(self, state, arrays):
        self._tracker._load_base({"best": state.get("best"), "best_epoch": None, "wait": 0})


CALLBACKS = {**cbmod.CALLBACKS, ModelCheckpoint.__name__: ModelCheckpoint,
             MemberEarlyStopping.__name__: MemberEarlyStopping}


def check_resume_precision(ckpt) -> None:
    """Refuse, before anything trains, to resume a run recorded in a precision ("tf32", "bf16") that the
    device it was loaded on cannot run: loading put its float32 weights in float32 there (right to predict
    with), and resuming would silently continue the run in another arithmetic. ``Checkpoint.resume`` and
    ``gpunn train --resume`` both call it."""
    from ..model import runnable_precision

    recorded = ckpt.meta["model"].get("precision", "float32")
    backend = ckpt.model.backend
    if runnable_precision(recorded, backend) != recorded:
        raise ValueError(f"{ckpt.path} holds a run trained in precision {recorded!r}, which runs the matrix products "
                         f"on NVIDIA tensor cores, and it was loaded on {backend.device!r}, which cannot run it (the "
                         "model loaded in float32): resume it on a CUDA GPU (load_checkpoint(path, device='cuda'), "
                         "gpunn train --resume on cuda). On the CPU its float32 weights predict, and a new fit "
                         "(model.fit) trains them further in float32, with a fresh optimizer")


def resume_run(ckpt, X, Y=None, *, epochs=None, validation_data=None, callbacks=(), verbose=True, checkpoint=True,
               handle_interrupt=True, distributed=False):
    """Continue the run saved in ``ckpt`` on (X, Y): see :meth:`Checkpoint.resume`."""
    check_resume_precision(ckpt)
    if isinstance(checkpoint, (str, bytes, os.PathLike)) and not os.fspath(checkpoint):
        # (the writer made of it refused its path as the file's "invalid saved state for ModelCheckpoint")
        raise ValueError("checkpoint='' names no file: pass the path to write the resumed run to, True (the file "
                         "loaded, the default) or False (no writer)")
    model, opt, training = ckpt.model, ckpt.optimizer, ckpt.training
    settings, state = ckpt.settings, ckpt.state
    ensemble = _members(model) is not None
    if epochs is not None:
        epochs = positive_int(epochs, "epochs")
        if epochs < state.epoch or (epochs == state.epoch and state.batch):
            # it trained nothing and then wrote a checkpoint past its own end, which no load accepted again
            done = position_words(state.epoch, state.batch, settings.batches_per_epoch)
            raise ValueError(f"{ckpt.path}: the run has done {done}; epochs={epochs} ends before that (epochs is "
                             f"the run's total, not the epochs to add): pass more to train on")
        settings = dataclasses.replace(settings, epochs=epochs)
    if ensemble:  # what an ensemble's run cannot do, refused before anything runs
        if is_source(X, Y) and (training.get("source") or {}).get("kind") == "bootstrap":
            raise ValueError(f"{ckpt.path} holds a bootstrapped ensemble's run (each member its own resample of "
                             "in-memory arrays): resume it with the same X and Y")
        callbacks = ens_training.member_callbacks(callbacks, verbose)
    with model.backend.use(), held_warnings() as checked:  # (columns read by position: warned once all is checked)
        if settings.validation == "data" and validation_data is None:
            raise ValueError(f"{ckpt.path} was trained with validation_data; pass the same validation_data to resume")
        if settings.validation != "data" and validation_data is not None:  # it was dropped without a word
            how = (f"held out validation_fraction={settings.validation_fraction} of its rows"
                   if settings.validation == "fraction" else "was given no validation_data")
            raise ValueError(f"{ckpt.path}: the run {how}; resuming it with validation_data would not use them "
                             "(the run continues as it started): resume without validation_data")
        shards = None
        if is_source(X, Y):
            source, evaluator = _resume_source(ckpt, X, validation_data if settings.validation == "data" else None)
            if ensemble:
                evaluator = ens_training.ensemble_evaluator(model, evaluator)
            # a data-parallel run on a chunked source read it as rank shards; 0: it read the source whole
            shards = (ckpt.training.get("source") or {}).get("shards", 0)
        else:
            X, Y, source, evaluator = _resume_arrays(ckpt, settings, X, Y, validation_data)
        _check_validation(ckpt, evaluator)
        other_order = _other_shuffle(ckpt, settings, state)
        over = _over(ckpt, settings)
        callbacks = order_callbacks(_resumed_callbacks(ckpt, list(callbacks), checkpoint, over), verbose)
        if over:  # nothing trains: a writer of the file resumed would only put this call's settings in it (patience
            # 50 for the 1 that stopped the run), and the file would no longer say which run it holds
            callbacks = [cb for cb in callbacks if not _writes_to(cb, ckpt.path)]
        ckpt._resumed = True  # the model and optimizer train on from here: Checkpoint.resume refuses a second run
        if distributed:
            from ..distributed.training import DataParallel

            dp = DataParallel(model, distributed=distributed, batch_size=None, verbose=verbose, source=source,
                              shards=shards, resuming=(ckpt.path, settings))  # the per-rank batch: the run's global one
            settings = dataclasses.replace(settings, batch_size=dp.batch_size, ranks=dp.size)
            checked.give()
            if other_order and dp.is_root:  # (a note on the run: rank 0's, once, not one a rank)
                warnings.warn(other_order, UserWarning, stacklevel=_backend.user_stacklevel())
            if not dp.is_root:  # rank 0 alone carries the saved part-epoch sum into the reduction
                state = dataclasses.replace(state, partial_sum_sq=0.0 if isinstance(state.partial_sum_sq, float)
                                            else [0.0] * len(state.partial_sum_sq))
            if ensemble:
                return ens_training.run_ensemble(model, dp.source, opt, settings, state,
                                                 callbacks=dp.callbacks(callbacks), validation=dp.validation(evaluator),
                                                 hook=dp.hook, handle_interrupt=handle_interrupt, dp=dp)
            return dp.run(lambda: train(model, dp.source, opt, settings, state, callbacks=dp.callbacks(callbacks),
                                        validation=dp.validation(evaluator), hook=dp.hook,
                                        handle_interrupt=handle_interrupt))
        if settings.ranks != 1:  # a data-parallel run continued in one process, at its global batch
            settings = dataclasses.replace(settings, batch_size=settings.batch_size * settings.ranks, ranks=1)
        if shards:  # ... reading every rank's shard, interleaved as the ranks were
            from ..distributed.shard import ShardedSource

            source = ShardedSource(source, shards)
        checked.give()
        if other_order:
            warnings.warn(other_order, UserWarning, stacklevel=_backend.user_stacklevel())
        if ensemble:
            return ens_training.run_ensemble(model, source, opt, settings, state, callbacks=callbacks,
                                             validation=evaluator, handle_interrupt=handle_interrupt)
        return train(model, source, opt, settings, state, callbacks=callbacks, validation=evaluator,
                     handle_interrupt=handle_interrupt)


def _over(ckpt, settings) -> str | None:
    """Why the run saved in ``ckpt`` trains no more when resumed with ``settings`` (its epochs as passed), in words;
    None when it has epochs to train. A run early stopping ended stays ended (EarlyStopping's saved stop, every
    member's in an ensemble; or an ensemble's members all frozen, some stopped early and the others diverged),
    whatever the callbacks passed."""
    order = _run_order(ckpt)
    for entry in ckpt.training.get("callbacks", []):
        cls = _callback_class(_saved_key(entry, order))
        if cls is None or not issubclass(cls, (cbmod.EarlyStopping, MemberEarlyStopping)):
            continue
        stopped = entry["state"].get("stopped_epoch") if isinstance(entry.get("state"), dict) else None
        if stopped is None:
            continue
        if not isinstance(stopped, list) or all(e is not None for e in stopped):
            return (f"early stopping ended the run after epoch {ckpt.state.epoch}, and this resume trains no more "
                    "(a stopped run stays stopped)")
        if len(ckpt.optimizer.frozen) == len(stopped):  # every member frozen (the others diverged): it is over too
            early = [k for k, e in enumerate(stopped) if e is not None]
            diverged = [k for k, e in enumerate(stopped) if e is None]
            return (f"early stopping ended members {early} and divergence members {diverged} by epoch "
                    f"{ckpt.state.epoch}, and this resume trains no more (a stopped run stays stopped)")
    if settings.epochs == ckpt.state.epoch and not ckpt.state.batch:
        return (f"the run has done its {position_words(ckpt.state.epoch, 0, 0, settings.epochs)}, and this resume "
                "trains no more (pass more epochs to train on by them)")
    return None


def _writes_to(cb, path) -> bool:
    """Whether callback ``cb`` is a checkpoint writer of the file ``path``."""
    return isinstance(cb, ModelCheckpoint) and same_file(cb.path, path)


def _resumed_callbacks(ckpt, user, checkpoint, over=None) -> list:
    """The resumed run's callbacks: the ``user``'s, each stateful one given the state saved for it, and the run's
    others rebuilt from their saved settings and state, with a writer to ``checkpoint`` (True: the file loaded)
    unless it is False.

    Saved states go to callbacks by class, in the run's order: the k-th callback of a class passed takes over the
    k-th state the run saved for that class. The file names each class by module and qualified name
    (``callback_order``; gpunn's own by qualified name alone, _class_key), so a user's own class that shares a
    built-in's name ("EarlyStopping") is another class. A file from before it names a state's class alone: there a
    callback passed of another class of that name takes the state only where none of the class the name stands for
    here is passed and its own has a state (_passed_for); one without a state leaves the run's restored. Another
    number of a class than the run saved (other than none) is refused: which state would go to which callback is
    not known. A class none of which is passed is rebuilt, each callback from its settings and state, where it is a
    built-in callback or a subclass of one defined once in this process (found by its module and qualified name, in
    an older file by its name, so a user's own ModelCheckpoint keeps its rule); writers go to ``checkpoint``, so a
    run saved with several is refused (they would all write one file). A class not found here is not restored,
    with a warning (its saved state is dropped: a user's own Callback must be passed). With no writer restored, a
    plain ModelCheckpoint writes ``checkpoint``: the run's, when its class is not found here, with a warning.
    ``over``: why the run trains no more (_over), said in a warning of other settings.

    Order: the run's (_in_the_runs_order), whatever the order passed: each rebuilt one at its place, and where the
    file has ``callback_order`` every callback passed that the run had (the k-th of a class passed at the k-th place
    of that class, with a state or not); in an older file only those passed that saved a state have a place (those
    that took one, and those of its name that write one and read none back), by their saved states' indexes."""
    target = ckpt.path if checkpoint is True else checkpoint
    order = _run_order(ckpt)
    saved, passed = {}, {}
    for entry in sorted(ckpt.training.get("callbacks", []), key=lambda entry: entry["index"]):
        saved.setdefault(_saved_key(entry, order), []).append(entry)
    for cb in user:
        passed.setdefault(_passed_key(cb, order), []).append(cb)
    rebuilt, taken, missing, writers = [], {}, [], []  # rebuilt: (the run's index, callback); taken: id -> index
    for key, entries in saved.items():
        name, cls = entries[0]["class"], _callback_class(key)
        takers = _passed_for(passed.get(key, []), cls) if order is None else passed.get(key)
        if takers is not None:
            stateful = [cb for cb in takers if hasattr(cb, "load_state_dict")]
            if stateful and len(stateful) != len(entries):
                _refuse_other_count(ckpt, name, entries, len(stateful), cls is not None)
            for cb, entry in zip(stateful, entries):
                _warn_other_settings(ckpt, cb, entry, over)
                # a state a built-in refuses is the file's fault, as where it is restored; a user's class: its own
                with _saved_state_of(ckpt, entry) if CALLBACKS.get(name) is type(cb) else contextlib.nullcontext():
                    cb.load_state_dict(entry["state"], _callback_arrays(ckpt, entry["index"], entry))
                taken[id(cb)] = entry["index"]
            if not stateful:  # (a class that writes a state and reads none back) the places its states were saved at:
                # in a file from before callback_order, of those passed of its name that write a state (one that does
                # not cannot be the run's that did)
                writers_of = takers if order is not None else [cb for cb in takers if hasattr(cb, "state_dict")]
                taken.update((id(cb), entry["index"]) for cb, entry in zip(writers_of, entries))
            continue
        if cls is None:  # (by its module too where the file has it: one of that name may be found, not this one)
            missing.append(name if order is None or key[0] == "gpunn" else ".".join(key))
            continue
        writes = issubclass(cls, ModelCheckpoint)
        if writes and checkpoint is False:
            continue
        writers += entries if writes else []
        for entry in entries:
            cb = _rebuilt(ckpt, cls, entry, target if writes else None)
            if cb is not None:
                rebuilt.append((entry["index"], cb))
    if len(writers) > 1:
        raise ValueError(f"{ckpt.path}'s run had {len(writers)} checkpoint writers ({_said(writers)}), and a "
                         f"resume would point them all at {target} (their paths are not saved): pass them in "
                         "callbacks, each with its path, in the run's order, or resume with checkpoint=False")
    if order is not None:  # the callbacks passed that the run had without a state: the k-th of a class its k-th place
        places = {}
        for index, key in enumerate(order):
            if key not in saved:
                places.setdefault(key, []).append(index)
        for key, cbs in passed.items():
            taken.update((id(cb), index) for cb, index in zip(cbs, places.get(key, ())))
    ordered = _in_the_runs_order(user, taken, sorted(rebuilt, key=lambda pair: pair[0]))
    plain = checkpoint is not False and not any(isinstance(cb, ModelCheckpoint) for cb in ordered)
    if missing:
        found = (f"{ckpt.path}'s run had callbacks of classes not found in this process ({', '.join(missing)}; not "
                 "defined, defined twice, or not a built-in callback's subclass): they are not restored")
        if plain:  # one of them may have been the run's writer: its rule is not known here
            warnings.warn(f"{found}, and a plain ModelCheckpoint writes {target} every epoch; to keep a writer's own "
                          "rule, define its class (once) before resuming, or pass it in callbacks", UserWarning,
                          stacklevel=_backend.user_stacklevel())
        else:  # their saved state would be dropped without a word, from this run and the files it writes
            warnings.warn(f"{found}, and the checkpoints this resume writes do not hold their saved state; to go on "
                          "from it, pass them in callbacks (as many of a class as the run had, in its order)",
                          UserWarning, stacklevel=_backend.user_stacklevel())
    if plain:
        ordered.append(ModelCheckpoint(target))
    return ordered


def _in_the_runs_order(user, taken, rebuilt) -> list:
    """The resumed run's callbacks in the run's order, whatever order they were passed in: those passed whose place
    in the run is known (``taken``: id -> the run's index) and those made again (``rebuilt``: (the run's index,
    callback)) by that place; each passed one whose place is not known (the run did not have it, or a file from
    before ``callback_order`` does not say: there only those that saved a state have one) just after the callback
    passed before it, first where none was. So a rebuilt EarlyStopping runs after the callback that logs what it
    monitors wherever that one is passed (passed after one the run had after the stopper, it ran first, and the
    stopper found nothing in the logs), of two stoppers that restore their best weights the run's last one's stay,
    and a callback that reads what another did (``trainer.stop``) sees it as in the run."""
    after, anchor = {None: []}, None  # the passed callbacks of no known place, by the placed one passed before them
    for cb in user:
        if id(cb) in taken:
            anchor = id(cb)
            after.setdefault(anchor, [])  # (one object passed twice: those after either place follow its first)
        else:
            after[anchor].append(cb)
    placed = sorted([(taken[id(cb)], n, cb) for n, cb in enumerate(user) if id(cb) in taken]
                    + [(index, len(user) + n, cb) for n, (index, cb) in enumerate(rebuilt)], key=lambda t: t[:2])
    out = after.pop(None)
    for _, _, cb in placed:
        out += [cb, *after.pop(id(cb), ())]
    return out


def _passed_for(named, cls):
    """Which of the callbacks passed whose class has a saved callback's name (``named``) stand for the run's of that
    name, whose class here is ``cls`` (_callback_class; None: not found): those of ``cls`` where any is passed; else
    those that have a state (a user's own class of that name, which may have saved it), or with no ``cls``, all of
    them; None where none does: the run's are made again (a class without a state saved none, whatever its name)."""
    if cls is None:
        return named or None
    of_class = [cb for cb in named if type(cb) is cls]
    stated = [cb for cb in named if hasattr(cb, "state_dict") or hasattr(cb, "load_state_dict")]
    return of_class or stated or None


def _callback_class(key):
    """The class a saved callback's ``key`` (_saved_key) stands for: gpunn's built-in one, or the one subclass of a
    built-in with that key defined in this process (a user's ModelCheckpoint, say); None when there is none, or
    several. A file from before ``callback_order`` keys by class name alone, which for a built-in's name is the
    built-in, whatever else has it; a file with it by module and qualified name, so a class of the user's own that
    shares a built-in's name is not the built-in."""
    if isinstance(key, str) and key in CALLBACKS:
        return CALLBACKS[key]

    def stands_for(cls):
        return cls.__name__ == key if isinstance(key, str) else _class_key_of(cls) == key

    found, todo = {cls for cls in CALLBACKS.values() if stands_for(cls)}, list(CALLBACKS.values())
    while todo:
        for sub in todo.pop().__subclasses__():
            if stands_for(sub):
                found.add(sub)
            todo.append(sub)
    return found.pop() if len(found) == 1 else None


def _class_key(module, qualname) -> tuple:
    """Which class a record of ``callback_order`` stands for: one of gpunn's own by its qualified name, wherever in
    gpunn it lives (a later gpunn may move it), and any other by its module and qualified name."""
    return ("gpunn" if module == "gpunn" or module.startswith("gpunn.") else module, qualname)


def _class_key_of(cls) -> tuple:
    record = _class_record(cls)
    return _class_key(record["module"], record["qualname"])


def _run_order(ckpt):
    """The class keys (_class_key) of the run's callbacks in the order they ran, or None for a file from before
    ``callback_order`` (whose saved states name their class alone)."""
    order = ckpt.training.get("callback_order")
    return None if order is None else [_class_key(c["module"], c["qualname"]) for c in order]


def _saved_key(entry, order):
    """A saved state's key to its class: its class name in a file without the run's ``order``, else its class's
    key there (_class_key)."""
    return entry["class"] if order is None else order[entry["index"]]


def _passed_key(cb, order):
    """A passed callback's key, as _saved_key's of the same file."""
    return type(cb).__name__ if order is None else _class_key_of(type(cb))


def _rebuilt(ckpt, cls, entry, path):
    """``cls`` made again from a saved ``entry`` (a writer's ``path`` first) and given its state. A built-in
    class that refuses them: the file's fault (CheckpointError); a user's subclass: a warning, and None."""
    args = () if path is None else (path,)
    if cls in CALLBACKS.values():
        with _saved_state_of(ckpt, entry):
            cb = cls(*args, **entry["config"])
            cb.load_state_dict(entry["state"], _callback_arrays(ckpt, entry["index"], entry))
        return cb
    try:
        cb = cls(*args, **(entry["config"] or {}))
        cb.load_state_dict(entry["state"], _callback_arrays(ckpt, entry["index"], entry))
    except (TypeError, ValueError, KeyError) as exc:
        warnings.warn(f"{ckpt.path}: the run's {entry['class']} cannot be made again from its saved settings "
                      f"{entry['config']!r} ({exc}): it is not restored; pass it in callbacks", UserWarning,
                      stacklevel=_backend.user_stacklevel())
        return None
    return cb


def _refuse_other_count(ckpt, name, entries, count, found) -> None:
    """Refuse callbacks of class ``name`` passed ``count`` times where the run saved ``entries``: which state
    goes to which is not known. ``found``: whether the class is found here (the run's are made again)."""
    otherwise = "or none to have the run's restored" if found else "or none to leave them out"
    saved = f"{len(entries)} {name} callback{'s' if len(entries) > 1 else ''}"
    raise ValueError(f"{ckpt.path}: the run saved the state of {saved} ({_said(entries)}), and {count} "
                     f"{'were' if count > 1 else 'was'} passed to resume; the k-th passed takes over the k-th saved: "
                     f"pass {len(entries)}, in the run's order, {otherwise}")


def _said(entries) -> str:
    """Saved callbacks as their settings read: "EarlyStopping(monitor='loss', patience=3, ...); ..."."""
    return "; ".join(f"{entry['class']}({', '.join(f'{k}={v!r}' for k, v in (entry['config'] or {}).items())})"
                     for entry in entries)


@contextlib.contextmanager
def _saved_state_of(ckpt, entry):
    """A saved callback's settings or state that its class refuses (TypeError, ValueError, KeyError) are the
    file's fault: a CheckpointError naming the class."""
    try:
        yield
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{ckpt.path}: invalid saved state for {entry['class']} ({exc})") from None


def _warn_other_settings(ckpt, cb, entry, over=None) -> None:
    """Warn when a built-in callback passed to resume (``cb``) takes over the state the run saved for its class
    (``entry``) with other settings: EarlyStopping(patience=1) for a run saved with patience 6 goes on from the
    saved wait and best by other rules, so the resumed run is not the run saved. ModelCheckpoint aside: where and
    when the run is written does not change it. ``over``: why the resume trains no more (_over), which the warning
    says instead of "the run goes on by these"."""
    if CALLBACKS.get(entry["class"]) is not type(cb) or type(cb) is ModelCheckpoint or not isinstance(entry["config"],
                                                                                                    dict):
        return
    with _saved_state_of(ckpt, entry):  # a hand-edited mode="sideways" is the file's fault
        CALLBACKS[entry["class"]](**entry["config"])
    validated = ckpt.settings.validation is not None
    saved = _as_run(entry["config"], validated)
    now = _as_run(json.loads(json.dumps(cb.get_config())), validated)  # as the checkpoint holds it (tuples as lists)
    changed = [f"{key} {saved.get(key)!r} -> {value!r}" for key, value in now.items() if saved.get(key) != value]
    if changed:
        effect = (f", which change nothing: {over}" if over else
                  ": the run goes on by these, not as the run saved would. Pass it with the saved settings, or leave "
                  "it out to have the saved one restored")
        warnings.warn(f"{cb!r} takes over the state of the {entry['class']} that {ckpt.path} saved, with other "
                      f"settings ({', '.join(changed)}){effect}", UserWarning, stacklevel=_backend.user_stacklevel())


def _as_run(config: dict, validated: bool) -> dict:
    """A monitoring callback's settings as they run: monitor None is val_loss in a run with validation (else
    loss), mode "auto" follows the monitor (see gpunn.training.callbacks)."""
    if "monitor" not in config:
        return config
    monitor = config["monitor"] or cbmod.default_monitor(validated)
    return {**config, "monitor": monitor, "mode": cbmod.monitor_mode(monitor, config.get("mode", "auto"))}


_ARRAY_KINDS = ("arrays", "bootstrap", "sharded-arrays")  # source kinds of a run on in-memory arrays (data parallel's too)


def _resume_arrays(ckpt, settings, X, Y, validation_data):
    """(X, Y, source, evaluator) for resuming on in-memory (X, Y): the training rows of the same validation
    split as the run had, their source and the evaluator; an ensemble's evaluator, and its members'
    resamples drawn again from the seed when the run was bootstrapped."""
    model = ckpt.model
    kind = (ckpt.training.get("source") or {}).get("kind")
    if kind is not None and kind not in _ARRAY_KINDS:  # in-memory arrays give other batches than its windows
        raise ValueError(f"{ckpt.path} was trained on a gpunn.data source ({kind}); in-memory arrays give other "
                         "batches (another shuffle): resume it on that source, resume(source)")
    _check_drawn_by(ckpt, ckpt.training.get("source"))  # a bootstrapped run's resamples
    warn_read_by_position(X, model.data_columns, "X", model)  # (the checkpoint's names, kept: see resume)
    X, Y = model._checked(X, Y)  # standardized copies for a model with statistics, as fit trains on
    check_rows_match(X, Y)
    given = X.shape[0]
    X, Y, evaluator = split_validation(model, X, Y, validation_data if settings.validation == "data" else None,
                                       settings.validation_fraction, settings.seed)
    if X.shape[0] != settings.train_rows:  # (it said "the checkpoint trained on 16200 rows; these data give 16195" of
        fraction = settings.validation_fraction  # an X of 17995 rows: the count after the split, unexplained)
        split = f" (those validation_fraction={fraction:g} left of X)" if settings.validation == "fraction" else ""
        after = f", {X.shape[0]:,} after that split" if split else ""
        raise ValueError(f"{ckpt.path} trained on {settings.train_rows:,} rows{split}; these X and Y have {given:,}"
                         f"{after}. Resume with the same X and Y.")
    saved = ckpt.training.get("source") or {}
    if _members(model) is None:
        source = ArraySource(X, Y, model.backend, seed=settings.seed, shuffle=settings.shuffle)
    else:
        source = ens_training.ensemble_source(model, X, Y, seed=settings.seed, shuffle=settings.shuffle,
                                              bootstrap=saved.get("kind") == "bootstrap")
        if evaluator is not None:
            evaluator = ens_training.ensemble_evaluator(model, evaluator)
    # a run saved before the fingerprint existed (a data-parallel one before ShardedArraySource recorded it) has
    # none: rows are all it checks
    if "fingerprint" in saved and not fingerprint_matches(saved, lambda: source.config()["fingerprint"], model.xp,
                                                          X, Y, where=ckpt.path):
        raise ValueError(f"{ckpt.path} trained on other values: these X and Y have its {X.shape[0]} training rows "
                         "but not its data (a checksum differs; rows or columns in another order count as other "
                         "data). Resume with the same X and Y, in the same order.")
    return X, Y, source, evaluator


def _resume_source(ckpt, source, validation_data):
    """(source, evaluator) for resuming on a gpunn.data source: it must describe the data the run was
    saved with (its config, paths aside), and it takes the checkpoint's standardization statistics."""
    from ..data.binding import prepare_source

    saved = ckpt.training.get("source") or {}
    if saved.get("kind") in _ARRAY_KINDS:
        raise ValueError(f"{ckpt.path} was trained on in-memory arrays; a gpunn.data source gives other batches (its "
                         "own windows and shuffle): resume it with the same X and Y, resume(X, Y)")
    if hasattr(source, "follow_saved_cut"):  # a synthetic source cut by default: into the pieces the run was cut into
        source.follow_saved_cut(saved)
    differ = _config_differences(saved, source.config(), ignored=("shards",))  # (how data-parallel ranks split it:
    if differ:                                                                   # the resume follows the checkpoint)
        raise ValueError(f"{ckpt.path} was trained on another source: {differ}. Resume with the same data.")
    _check_drawn_by(ckpt, saved)
    if hasattr(source, "standardizer"):
        source.standardizer = ckpt.model.standardizer  # exactly the statistics training used
    return source, prepare_source(ckpt.model, source, validation_data)


# the sources whose values a generator draws (gpunn.rng.generator, which their config records as "rng"): a synthetic
# source's rows, a bootstrapped ensemble's resamples of the rows
_DRAWN = {"synthetic": ("a synthetic source's rows", "rows"),
          "bootstrap": ("its members' bootstrap resamples", "resamples")}
_CPU_BEFORE_THE_RECORD = "numpy PCG64"  # default_rng's bit generator (NumPy >= 1.17), gpunn's on the CPU from its start
_GENERATOR_WORDS = {GPU_GENERATOR: "gpunn's Philox4x32-10 on a GPU", _CPU_BEFORE_THE_RECORD: "NumPy's PCG64 on the CPU"}


def _check_drawn_by(ckpt, saved, validation=False) -> None:
    """Refuse to resume a run whose source draws its values (_DRAWN) where they would be drawn by another generator
    than the run's: the run would go on with other rows, and no run would reproduce it. The generator a file records
    (the source's "rng"), else what drew them when files did not record it: NumPy's PCG64 on the CPU, as now (those
    runs resume exactly); cuRAND on a GPU, whose draws this gpunn cannot make again (its own Philox4x32-10 draws other
    rows for a seed)."""
    saved = saved or {}
    if saved.get("kind") not in _DRAWN:
        return
    what, noun = _DRAWN[saved["kind"]]
    if validation:
        what, noun = "validation rows (a synthetic source's)", "rows"
    backend = ckpt.model.backend
    now = generator(backend)
    was = saved.get("rng")
    if was is None and not str(ckpt.meta.get("device", "cpu")).startswith("cuda"):
        was = _CPU_BEFORE_THE_RECORD
    if was == now:
        return
    if was is None:
        raise ValueError(
            f"{ckpt.path} was trained on {what} drawn on a GPU by cuRAND, as gpunn drew them before its own "
            f"Philox4x32-10 generator, which draws other {noun} for the same seed (CHANGELOG: \"On a GPU, a seed draws "
            f"other rows\"); this gpunn cannot draw the run's {noun} again, and resumed on other {noun} the run would "
            "be one that no run reproduces. Resume it with the gpunn that wrote it, or run it again from the start; to "
            "keep its weights, train the model gpunn.load(path) returns further (a new run, with a new optimizer)")
    on = ("a GPU: gpunn.load_checkpoint(path, device='cuda')" if was == GPU_GENERATOR else
          "the CPU: gpunn.load_checkpoint(path, device='cpu')" if was == _CPU_BEFORE_THE_RECORD else
          "the gpunn that wrote it")
    raise ValueError(f"{ckpt.path} was trained on {what} drawn by {_GENERATOR_WORDS.get(was, repr(was))}, and on "
                     f"{backend.device} they are drawn by {_GENERATOR_WORDS.get(now, repr(now))}: other {noun}, not the "
                     f"run's. Resume it on {on}")


_SHUFFLE_WORDS = {CPU_SHUFFLE: "NumPy's permutation on the CPU", GPU_SHUFFLE: "gpunn's hash permutation on a GPU"}


def _other_shuffle(ckpt, settings, state) -> str | None:
    """The warning where a shuffled run stopped part-way through an epoch is resumed where another permutation orders
    the rows (gpunn.rng.shuffler: the CPU's and the GPU's differ for the same seed and epoch): the rest of that epoch
    is the other order's batches, some of its rows trained twice and others not at all; else None. Warned (by rank 0
    alone in a data-parallel resume), not refused, as the rows are the run's (other rows drawn are refused:
    _check_drawn_by); at an epoch's end nothing is said, as the next epochs' other shuffles are as good, and the
    arithmetic differs between devices anyway. What ordered them is the file's "shuffled_by", else (a file from
    before the record) what orders them on the device it names."""
    if not settings.shuffle or not state.batch:
        return None
    was = ckpt.training.get("shuffled_by")
    if was is None:
        was = GPU_SHUFFLE if str(ckpt.meta.get("device", "cpu")).startswith("cuda") else CPU_SHUFFLE
    backend = ckpt.model.backend
    now = shuffler(backend)
    if was == now:
        return None
    on = ("a GPU: gpunn.load_checkpoint(path, device='cuda')" if was == GPU_SHUFFLE else
          "the CPU: gpunn.load_checkpoint(path, device='cpu')" if was == CPU_SHUFFLE else "the gpunn that wrote it")
    return (f"{ckpt.path} stopped part-way through epoch {state.epoch + 1} (after {state.batch} of its "
            f"{settings.batches_per_epoch} batches), whose rows {_SHUFFLE_WORDS.get(was, repr(was))} ordered, "
            f"and on {backend.device} {_SHUFFLE_WORDS.get(now, repr(now))} orders them: the rest of that epoch "
            "is another order's batches, some of its rows trained twice and others not at all (later epochs are "
            f"whole). For the run's order, resume it on {on}")


def _config_differences(saved: dict, now: dict, ignored=()) -> str:
    """How two sources' configs differ ("seed was 4, now 5; ..."), or "" when they describe the same data;
    paths aside (the same files may be read from another place) and the keys ``ignored``."""
    from ..datasets import CHUNK_ROWS

    moved = ("path", "x_path", "y_path", "rng")  # ("rng": _check_drawn_by's, which knows what a file without it drew)
    # a synthetic source records chunk_rows only when it is not make's 65,536 (as every run before pieces)
    unrecorded = {"chunk_rows": CHUNK_ROWS} if now.get("kind") == "synthetic" else {}

    def value(config, k):
        return config.get(k, unrecorded.get(k))

    differ = sorted(k for k in set(saved) | set(now) if k not in moved + tuple(ignored) and value(saved, k) != value(now, k))
    return "; ".join(f"{k} was {value(saved, k)!r}, now {value(now, k)!r}" for k in differ)


# what a validation source's scores do not depend on: it is read whole, chunk by chunk in file order, scaled by the
# training statistics (and a file's seed only shuffles; a synthetic source's draws its rows)
_VALIDATION_SOURCE_FREE = ("shards", "shuffle", "window", "validation_fraction", "standardize")


def _check_validation(ckpt, evaluator) -> None:
    """Refuse validation data other than the run's (early stopping, plateaus and the best weights follow
    them): arrays by row count and checksum, a validation source by its config. A checkpoint from before this
    was recorded (or without validation_data) has nothing to compare."""
    saved = ckpt.training.get("validation_data")
    describe = getattr(evaluator, "describe", None)
    now = describe() if saved is not None and describe is not None else None
    if now is None:
        return
    fix = "Resume with the same validation_data."
    if saved.get("kind") == "arrays" or now.get("kind") == "arrays":
        if saved.get("kind") != now.get("kind"):
            raise ValueError(f"{ckpt.path} was validated on {'arrays' if saved.get('kind') == 'arrays' else 'a source'}, "
                             f"and validation_data is {'arrays' if now.get('kind') == 'arrays' else 'a source'} now. {fix}")
        if saved["rows"] != now["rows"]:
            raise ValueError(f"{ckpt.path} was validated on {saved['rows']} rows; this validation_data has "
                             f"{now['rows']}. {fix}")
        if not fingerprint_matches(saved, lambda: now["fingerprint"], ckpt.model.xp, evaluator.X, evaluator.Y,
                                   where=ckpt.path):
            raise ValueError(f"{ckpt.path} was validated on other values: this validation_data has its {now['rows']} "
                             f"rows but not its data (a checksum differs; rows or columns in another order count "
                             f"as other data). {fix}")
        return
    free = _VALIDATION_SOURCE_FREE + (() if now.get("kind") == "synthetic" else ("seed",))
    differ = _config_differences(saved, now, ignored=free)
    if differ:
        raise ValueError(f"{ckpt.path} was validated on another source: {differ}. {fix}")
    _check_drawn_by(ckpt, saved, validation=True)


def _callback_arrays(ckpt, index, entry):
    return {name: ckpt.arrays[f"callback.{index}.{name}"] for name in entry.get("arrays", [])}
