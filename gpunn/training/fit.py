"""``fit``: train a model on in-memory arrays, and the validation split it (and resumption) use."""
from __future__ import annotations

import numpy

from ..checks import check_rows_match, positive_int
from ..metrics import RegressionEvaluator
from ..optim import make_optimizer, make_schedule
from ..rng import host_rng
from . import callbacks as cbmod
from .callbacks import order_callbacks
from .loop import Trainer, run


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


def fit(model, X, Y, *, epochs=10, batch_size=256, optimizer="adam", lr=None, schedule="constant",
        momentum=None, nesterov=None, weight_decay=None, beta1=None, beta2=None, eps=None,
        step_size=None, gamma=None, shuffle=True, seed=None, verbose=True, callbacks=(),
        validation_data=None, validation_fraction=None, early_stopping=False, patience=10, min_delta=0.0,
        monitor=None, restore_best_weights=True, handle_interrupt=True):
    """Train ``model`` on (X, Y) with mini-batch gradient descent; returns a :class:`History`.

    optimizer: "sgd" (the seed's W <- W - lr dW), "momentum", "nesterov", "adam", "adamw",
    or an Optimizer. schedule: "constant", "step" (x gamma every step_size epochs),
    "exponential" (x gamma per epoch) or "cosine" (to zero over the run).
    batch_size=None trains full-batch. seed (default: the model's) fixes the shuffles.

    Validation: ``validation_data=(X_val, Y_val)`` or ``validation_fraction`` (rows held out
    by the seed) adds val_loss (= val_mse), val_mse, val_mae and val_r2 to each epoch's logs,
    at one extra host synchronisation per epoch.
    Early stopping: ``early_stopping=True`` stops when ``monitor`` (default val_loss with
    validation, else loss) has not improved by more than ``min_delta`` for ``patience``
    epochs and, with ``restore_best_weights``, ends with the best epoch's weights (see
    gpunn.EarlyStopping; ReduceLROnPlateau goes in ``callbacks``).
    Checkpoints: ``callbacks=[gpunn.ModelCheckpoint("run.npz")]`` writes a resumable checkpoint
    atomically every epoch, at the end, and on Ctrl-C (``gpunn.load_checkpoint(path).resume``).
    Ctrl-C (with ``handle_interrupt``, main thread only) stops after the current batch and
    returns the history so far with ``history.interrupted = True``.
    """
    epochs = positive_int(epochs, "epochs")
    with model.backend.use():
        X, Y = model._as_input(X), model._as_target(Y)
        check_rows_match(X, Y)
        seed = model.seed if seed is None else int(seed)
        X, Y, validation = split_validation(model, X, Y, validation_data, validation_fraction, seed)
        batch_size = X.shape[0] if batch_size is None else min(positive_int(batch_size, "batch_size"), X.shape[0])
        opt = make_optimizer(optimizer, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                             beta1=beta1, beta2=beta2, eps=eps)
        opt.bind(model.params, model.ops)
        sched = make_schedule(schedule, step_size=step_size, gamma=gamma)
        cbs = list(callbacks)
        if early_stopping:
            cbs.append(cbmod.EarlyStopping(monitor, patience, min_delta, restore_best_weights=restore_best_weights))
        trainer = Trainer(model, X, Y, epochs=epochs, batch_size=batch_size, optimizer=opt, schedule=sched,
                          shuffle=shuffle, seed=seed, callbacks=order_callbacks(cbs, verbose), validation=validation)
        trainer.settings = {"epochs": epochs, "batch_size": batch_size, "shuffle": bool(shuffle), "seed": seed,
                            "train_rows": int(X.shape[0]),
                            "validation": "data" if validation_data is not None else
                                          ("fraction" if validation_fraction else None),
                            "validation_fraction": validation_fraction or None}
        model.optimizer = opt
        return run(trainer, handle_interrupt)
