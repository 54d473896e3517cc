"""A resumed run's callbacks (:func:`_resumed_callbacks`): which saved state goes to which callback passed, the
run's others made again from their saved settings, and all of them in the run's order."""
from __future__ import annotations

import contextlib
import json
import warnings

from .. import backend as _backend
from ..training import callbacks as cbmod
from .callback import CALLBACKS, ModelCheckpoint
from .format import CheckpointError
from .models import _class_record


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
    order = _run_order(ckpt.training)
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


def _run_order(training):
    """The class keys (_class_key) of the run's callbacks (``training``: a checkpoint's record of its run) in the order
    they ran, or None for a file from before ``callback_order`` (whose saved states name their class alone)."""
    order = training.get("callback_order")
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
    loss), mode "auto" follows the monitor (see gpunn.training.monitoring)."""
    if "monitor" not in config:
        return config
    monitor = config["monitor"] or cbmod.default_monitor(validated)
    return {**config, "monitor": monitor, "mode": cbmod.monitor_mode(monitor, config.get("mode", "auto"))}


def _callback_arrays(ckpt, index, entry):
    return {name: ckpt.arrays[f"callback.{index}.{name}"] for name in entry.get("arrays", [])}
