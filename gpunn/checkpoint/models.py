"""Saving and loading models: :func:`save` and :func:`load`'s files, a training checkpoint's writer
(:func:`save_checkpoint`), and the model a file's architecture section builds."""
from __future__ import annotations

import os
import reprlib

import numpy

from .. import backend as _backend
from ..hints import a_type
from ..rng import shuffler
from ..training.state import FitSettings, TrainState
from .format import _write, read


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


def file_name(path, call: str):
    """``path`` where it names a file (a str, bytes or os.PathLike: a pathlib.Path), else the TypeError of ``call``
    (``"gpunn.load(path)"``). An open file is refused saying to pass its name: a checkpoint is read and written by
    name (a write goes to a temporary file beside it, renamed over it), where numpy.load and torch.load take one."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return path
    said = f"{call}: path must be a file name (a str or a pathlib.Path)"
    if not (hasattr(path, "read") or hasattr(path, "write")):
        raise TypeError(f"{said}, got {reprlib.repr(path)} ({type(path).__name__})")
    named = (f"pass its name, {call.replace('path', 'f.name', 1)}"
             if isinstance(getattr(path, "name", None), (str, bytes, os.PathLike))
             else "write it to a file and pass the file's name")  # (io.BytesIO)
    raise TypeError(f"{said}, got an open file ({type(path).__name__}); gpunn reads and writes checkpoints by name: "
                    f"{named}")


def save(path, model) -> None:
    """Save a model (architecture, dtype, seed, parameters) for :func:`load` / ``gpunn predict``.

    An :class:`gpunn.Ensemble` is saved whole (kind "ensemble": its members' seeds beside the model
    section, the flat buffer of all members as ``params``); :func:`load` gives the Ensemble back."""
    if not isinstance(path, (str, bytes, os.PathLike)) and isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(f"gpunn.save(path, model): path must be a file name, got {a_type(path)} (the "
                        "arguments go the other way round: gpunn.save(path, model))")
    file_name(path, "gpunn.save(path, model)")
    from ..model import DeviceModel

    if not isinstance(model, DeviceModel):  # it failed inside, on an attribute the object lacks
        # (its __dict__, not hasattr: an MLPRegressor unpickled without a usable device builds model_ on access)
        fitted = {"model_", "_unbuilt"} & set(getattr(model, "__dict__", {}))
        hint = " (the network is its model_; the estimator itself pickles)" if fitted else ""
        attribute = getattr(model, "model_attribute", None)  # model.weights: a ParamList, gpunn's inner class
        given = f"model.{attribute}" if attribute else type(model).__name__
        hint += f" (the model saves its {attribute} with its architecture)" if attribute else ""
        raise TypeError(f"gpunn.save(path, model): model must be a gpunn.MLP or gpunn.Ensemble, got {given}{hint}")
    kind = "model" if _members(model) is None else "ensemble"
    meta = {"kind": kind, "device": model.device, "model": model_config(model)}
    if kind == "ensemble":  # its diverged members, whose parameters alone may be NaN or infinite
        meta["ensemble"] = {"diverged": [int(k) for k in model.diverged]}
    _write(path, meta, _model_arrays(model))


def save_checkpoint(path, *, model, optimizer, settings: FitSettings, state: TrainState, callbacks=(),
                    source=None, validation=None) -> None:
    """Save everything needed to resume a run (see gpunn.checkpoint.format): the model, the optimizer's
    config and state, the run's settings and state, the source's config and each callback's state;
    for a run given ``validation_data``, what its evaluator ``validation`` describes of them (``describe()``:
    arrays' row count and checksum, a validation source's config), and for one holding out validation_fraction of
    in-memory arrays the same of those rows, which a resume compares.

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
        cb_state, cb_arrays = _callback_state(cb)
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


def _callback_state(cb) -> tuple:
    """``cb.state_dict()``, checked to be gpunn's pair (json_dict, arrays) that a checkpoint can hold. PyTorch's
    state_dict returns one dict, which failed at the first save as "not enough values to unpack" or "'str' object has
    no attribute 'items'" (its keys unpacked), and a NumPy scalar in the JSON part as "Object of type float32 is not
    JSON serializable"; neither named the callback."""
    said = f"{type(cb).__name__}.state_dict() returned"
    got = cb.state_dict()
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], dict)):
        shape = a_type(got) + (f" of {len(got)}" if isinstance(got, tuple) else "")
        raise TypeError(f"{said} {shape}; a gpunn callback's returns a pair (json_dict, arrays): a dict of its progress "
                        "that JSON holds, and a dict {name: array} (empty for none): return {'seen': self.seen}, {} "
                        "(PyTorch's state_dict returns one dict)")
    state, arrays = got
    if not isinstance(arrays, dict):
        raise TypeError(f"{said} a pair whose arrays are {a_type(arrays)}, not a dict {{name: array}}")
    for key, value in state.items():
        foreign = _not_json(value)
        if foreign is not None:
            raise TypeError(f"{said} a state whose {key!r} {'is' if foreign is type(value) else 'holds'} a "
                            f"{foreign.__name__}, which JSON does not hold: give it as a Python float, int, str, bool, "
                            "list or dict (float(x)), an array among the arrays")
    return state, arrays


def _not_json(value):
    """The type of the first part of ``value`` that JSON does not hold (a NumPy scalar or array, a set...), or None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    parts = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else None
    if parts is None:
        return type(value)
    for key, part in parts:
        if isinstance(value, dict) and not (key is None or isinstance(key, (bool, int, float, str))):  # (json's keys)
            return type(key)
        foreign = _not_json(part)
        if foreign is not None:
            return foreign
    return None


def _class_record(cls) -> dict:
    """A callback's class as ``callback_order`` holds it: its name, module and qualified name (compared with the
    classes a resuming process defines, never imported)."""
    module = getattr(cls, "__module__", None)
    return {"class": cls.__name__, "module": module if isinstance(module, str) else "", "qualname": cls.__qualname__}


# where a checkpoint records what its evaluator describes, by how the run validated (FitSettings.validation)
_VALIDATION_RECORDS = {"data": "validation_data", "fraction": "held_out"}


def _validation_record(settings, validation) -> dict:
    """``{"validation_data": what the evaluator describes}`` for a run given validation_data; ``{"held_out": ...}``
    for one holding out validation_fraction of in-memory arrays (their rows' count and checksum: a source's
    held-out chunks describe nothing, its config and files' checksum cover them); else {}."""
    describe = getattr(validation, "describe", None)
    key = _VALIDATION_RECORDS.get(settings.validation)
    record = describe() if key is not None and describe is not None else None
    return {} if record is None else {key: record}


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
    refused, saying to resume it on a GPU. A directory (a gpunn sweep --save DIR, a ModelCheckpoint's folder) is
    refused as the OS refuses it, an IsADirectoryError, naming the checkpoints in it to give.
    """
    meta, arrays = read(file_name(path, "gpunn.load(path)"))
    return _build_model(meta, arrays, device)
