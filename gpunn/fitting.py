"""What :func:`gpunn.train.fit` and checkpoint resumption share: the validation split, the
built-in callbacks, and running a Trainer with Ctrl-C turned into a clean stop."""
from __future__ import annotations

import contextlib
import signal
import threading

import numpy

from .io import CheckpointError
from .metrics import RegressionEvaluator
from .rng import host_rng
from .validation import check_rows_match, positive_int


def split_validation(model, X, Y, validation_data=None, validation_fraction=None, seed=0):
    """(X_train, Y_train, evaluator or None). X, Y are checked device matrices.

    A fraction holds out that share of rows, chosen by the stream (seed, "validation"), so a
    resumed run with the same data and seed gets the same split.
    """
    if validation_data is not None and validation_fraction:
        raise ValueError("pass validation_data or validation_fraction, not both")
    if validation_data is not None:
        try:
            Xv, Yv = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, Y_val)") from None
        Xv, Yv = model._as_input(Xv, "X_val"), model._as_target(Yv, "Y_val")
        check_rows_match(Xv, Yv, "X_val", "Y_val")
        return X, Y, RegressionEvaluator(model, Xv, Yv)
    if not validation_fraction:
        return X, Y, None
    if not (isinstance(validation_fraction, (int, float)) and 0 < validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    m = X.shape[0]
    n_val = max(1, int(round(validation_fraction * m)))
    if n_val >= m:
        raise ValueError(f"validation_fraction={validation_fraction} of {m} rows leaves no rows to train on")
    order = host_rng(seed, "validation").permutation(m)
    xp = model.xp
    val_idx, train_idx = xp.asarray(numpy.sort(order[:n_val])), xp.asarray(numpy.sort(order[n_val:]))
    Xv, Yv = xp.take(X, val_idx, axis=0), xp.take(Y, val_idx, axis=0)
    return xp.take(X, train_idx, axis=0), xp.take(Y, train_idx, axis=0), RegressionEvaluator(model, Xv, Yv)


def order_callbacks(callbacks, verbose):
    """User callbacks first, then checkpoint writers (so they save the others' updated state),
    then the progress bar."""
    from .callbacks import ModelCheckpoint
    from .train import ProgressBar

    callbacks = list(callbacks)
    writers = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    others = [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]
    if verbose and not any(isinstance(cb, ProgressBar) for cb in others):
        others.append(ProgressBar())
    bars = [cb for cb in others if isinstance(cb, ProgressBar)]
    return [cb for cb in others if not isinstance(cb, ProgressBar)] + writers + bars


@contextlib.contextmanager
def sigint_stops(trainer, enabled=True):
    """While active, the first Ctrl-C asks ``trainer`` to stop after its current batch; a second
    one raises KeyboardInterrupt at once. Installed only in the main thread; the previous
    handler is restored on exit."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, OSError):
        yield
        return

    def handler(signum, frame):
        if trainer._halt:  # second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        trainer.interrupt()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def run(trainer, handle_interrupt=True):
    with sigint_stops(trainer, handle_interrupt):
        history = trainer.run()
    history.interrupted = trainer.interrupted
    return history


def resume_run(ckpt, X, Y, *, epochs=None, validation_data=None, callbacks=(), verbose=True, checkpoint=True,
               handle_interrupt=True):
    from . import callbacks as cbmod
    from .optim import make_schedule, Schedule
    from .train import History, Trainer

    model, opt, training = ckpt.model, ckpt.optimizer, ckpt.training
    settings = training["settings"]
    total_epochs = settings["epochs"] if epochs is None else positive_int(epochs, "epochs")
    with model.backend.use():
        X, Y = model._as_input(X), model._as_target(Y)
        check_rows_match(X, Y)
        if settings.get("validation") == "data" and validation_data is None:
            raise ValueError(f"{ckpt.path} was trained with validation_data; pass the same validation_data to resume")
        X, Y, evaluator = split_validation(model, X, Y, validation_data if settings.get("validation") == "data" else None,
                                           settings.get("validation_fraction"), settings["seed"])
        if X.shape[0] != settings["train_rows"]:
            raise ValueError(f"the checkpoint trained on {settings['train_rows']} rows; these data give {X.shape[0]}. "
                             "Resume with the same X and Y.")
        opt.bind(model.params, model.ops)
        schedule = make_schedule(Schedule(**training["schedule"]))
        restored = []
        saved = {cb["index"]: cb for cb in training.get("callbacks", [])}
        user = list(callbacks)
        user_classes = {type(cb).__name__ for cb in user}
        for index, entry in sorted(saved.items()):
            cls = cbmod.CALLBACKS.get(entry["class"])
            if cls is None or entry["class"] in user_classes:
                continue
            if cls is cbmod.ModelCheckpoint and checkpoint is False:
                continue
            try:
                if cls is cbmod.ModelCheckpoint:
                    cb = cls(ckpt.path if checkpoint is True else checkpoint, **entry["config"])
                else:
                    cb = cls(**entry["config"])
                cb.load_state_dict(entry["state"], _callback_arrays(ckpt, index, entry), model)
            except (TypeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"{ckpt.path}: invalid saved state for {entry['class']} ({exc})") from None
            restored.append(cb)
        by_class = {}
        for index, entry in sorted(saved.items()):
            by_class.setdefault(entry["class"], entry | {"index": index})
        for cb in user:  # a user's own stateful callback picks up the state saved for its class
            entry = by_class.get(type(cb).__name__)
            if entry is not None and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(entry["state"], _callback_arrays(ckpt, entry["index"], entry), model)
        if checkpoint not in (True, False) and not any(isinstance(cb, cbmod.ModelCheckpoint) for cb in restored + user):
            restored.append(cbmod.ModelCheckpoint(checkpoint))
        history = History()
        for k, v in training.get("history", {}).items():
            history[k] = list(v)
        position = training["position"]
        trainer = Trainer(model, X, Y, epochs=total_epochs, batch_size=settings["batch_size"], optimizer=opt,
                          schedule=schedule, shuffle=settings["shuffle"], seed=settings["seed"],
                          callbacks=order_callbacks(restored + user, verbose), start_epoch=position["epoch"],
                          validation=evaluator, start_batch=position["batch"],
                          start_total=position["partial_sum_sq"], history=history, lr_scale=training["lr_scale"])
        trainer.settings = dict(settings, epochs=total_epochs)
        model.optimizer = opt
        return run(trainer, handle_interrupt)


def _callback_arrays(ckpt, index, entry):
    return {name: ckpt.arrays[f"callback.{index}.{name}"] for name in entry.get("arrays", [])}

