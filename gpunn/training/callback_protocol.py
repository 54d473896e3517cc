"""The callback protocol: :class:`Callback`, whose hooks the training loop calls and whose state methods a checkpoint
calls (its docstring says both), :func:`refuse_foreign_hooks`, the check before a run that a callback's hooks take what
gpunn passes them, and :func:`writes_checkpoints`.

The built-in callbacks subclass it in modules of their own (:mod:`gpunn.training.progress`,
:mod:`gpunn.training.monitoring`, :mod:`gpunn.checkpoint.callback`); :mod:`gpunn.training.callbacks` is where
they are all imported from.
"""
from __future__ import annotations

import inspect

from ..hints import keywords_hinted

__all__ = ["Callback", "HOOK_ARGUMENTS", "refuse_foreign_hooks", "writes_checkpoints"]


class Callback:
    """Hooks called by :func:`fit`; set ``trainer.stop = True`` to end training after this epoch (in
    ``on_train_begin``: before the first).

    Order: on_train_begin; per epoch on_epoch_begin, on_batch_end for each batch, with validation
    on_validation_begin (the epoch's training done, its pass over the held-out rows next), on_epoch_end
    (``logs`` holds the epoch's loss, lr and, with validation, val_loss/val_mse/val_mae/val_r2);
    on_train_end (also after an interruption or an error, another callback's on_train_begin's too: every callback
    whose on_train_begin ran gets it). ``trainer.interrupt()`` stops after
    the current batch, as Ctrl-C does. on_batch_end is called only for callbacks that override
    it, so epoch-level callbacks add no per-batch work. ``epoch`` and ``batch`` are indexes from 0, as
    Keras passes them (``batch`` within its epoch, a resumed one's too), where ``logs["epoch"]``,
    ``history["epoch"]``, the progress line and every message count from 1: ``on_epoch_end(trainer, 0,
    logs)`` ends the epoch they call epoch 1 (``logs["epoch"] == 1``).

    Callback state (what a checkpoint keeps). A callback whose progress must survive a checkpoint
    defines three methods:

    - ``state_dict(self)`` returns ``(json_dict, arrays)``: a JSON-able dict of its progress and a dict
      ``{name: array}`` (names are identifiers; arrays as long as the model's parameters, e.g. best
      weights; host or device arrays);
    - ``load_state_dict(self, json_dict, arrays)`` restores that progress; ``arrays`` are host (NumPy)
      arrays: move them to the device in ``on_train_begin`` (``trainer.model.xp.asarray``) if needed;
    - ``get_config(self)`` returns the JSON-able keyword arguments of its constructor.

    A checkpoint stores all three per callback, and every callback's class (module and qualified name) in the
    run's order. On resume a built-in callback, or a subclass of one defined in the resuming process (found by
    its module and qualified name; in a file from before they were recorded, by its class name), is rebuilt as
    ``cls(**config)`` (a ModelCheckpoint's as ``cls(path, **config)``) and given its state; a callback you pass
    to ``resume(callbacks=[...])`` receives, through ``load_state_dict``, the state saved for its class: the
    k-th one of a class the k-th state saved for that class, so pass as many of a class as the run had, in its
    order, or none (a built-in one whose settings differ from the saved one's takes it over with a warning
    naming them: the run goes on by other rules). Any other callback of the run (one of your own that subclasses
    no built-in) is not rebuilt: pass it again, or the resume leaves it and its state out, with a warning. A
    class of your own named like a built-in (``EarlyStopping``) is not the built-in: each takes its own state.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keywords_hinted(cls)  # EarlyStopping(patiance=3): did you mean patience?

    def __repr__(self):
        get_config = getattr(self, "get_config", None)
        if get_config is None:
            return super().__repr__()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in get_config().items())})"

    def on_train_begin(self, trainer): ...
    def on_epoch_begin(self, trainer, epoch): ...
    def on_batch_end(self, trainer, batch): ...
    def on_validation_begin(self, trainer, epoch): ...
    def on_epoch_end(self, trainer, epoch, logs): ...
    def on_train_end(self, trainer): ...


# the arguments the loop passes each hook (after self), and Keras's batch hooks, which gpunn never calls
HOOK_ARGUMENTS = {"on_train_begin": ("trainer",), "on_epoch_begin": ("trainer", "epoch"),
                  "on_batch_end": ("trainer", "batch"), "on_validation_begin": ("trainer", "epoch"),
                  "on_epoch_end": ("trainer", "epoch", "logs"),
                  "on_train_end": ("trainer",)}


_KERAS_BATCH_HOOKS = ("on_batch_begin", "on_train_batch_begin", "on_train_batch_end")


# ... and the state methods a checkpoint calls, where a callback has them (PyTorch's load_state_dict takes one dict)
_STATE_ARGUMENTS = {"state_dict": (), "load_state_dict": ("state", "arrays"), "get_config": ()}


def refuse_foreign_hooks(cb, i: int) -> None:
    """Refuse, before the run, a hook of the callback ``callbacks[i]`` that the loop cannot call as it calls its
    hooks: Keras's ``on_epoch_end(self, epoch, logs=None)`` failed in epoch 1 with Python's "takes from 2 to 3
    positional arguments but 4 were given", an ``on_batch_end`` taking Keras's logs after the first batch, and
    ``on_train_batch_end`` was never called. So are its state methods, where it has them: PyTorch's
    ``load_state_dict(self, state)`` failed only when a resume called it, the run's time spent."""
    name = type(cb).__name__
    for hook in _KERAS_BATCH_HOOKS:
        if callable(getattr(cb, hook, None)):
            raise TypeError(f"callbacks[{i}]: {name}.{hook} is no gpunn hook (Keras's): gpunn's batch hook is "
                            "on_batch_end(trainer, batch), called after each batch")
    why = {**dict.fromkeys(HOOK_ARGUMENTS, "the trainer first (the model is trainer.model; Keras's hooks take no "
                                           "trainer, and no logs in on_batch_end)"),
           **dict.fromkeys(_STATE_ARGUMENTS, "as a checkpoint keeps a callback's state: a pair, state_dict() -> "
                                             "(json_dict, arrays) (see gpunn.Callback)")}
    for hook, arguments in {**HOOK_ARGUMENTS, **_STATE_ARGUMENTS}.items():
        try:
            signature = inspect.signature(getattr(cb, hook))
        except (AttributeError, TypeError, ValueError):  # none (a state method), or one Python cannot read: left be
            continue
        try:
            signature.bind(*arguments)
        except TypeError:
            raise TypeError(f"callbacks[{i}]: {name}.{hook}{signature} cannot take the arguments gpunn passes it: "
                            f"{hook}({', '.join(arguments)}), {why[hook]}") from None


def writes_checkpoints(trainer) -> bool:
    """Whether a checkpoint writer (ModelCheckpoint: ``writes_checkpoint``) is among the run's callbacks."""
    return any(getattr(cb, "writes_checkpoint", False) for cb in trainer.callbacks)
