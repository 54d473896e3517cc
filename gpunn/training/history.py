"""A run's :class:`History`, the per-epoch lists that ``fit`` returns, and :func:`missing_log_hint`: what to say of a
name that a run's logs or history lack (History's KeyError, a monitoring callback's refusal, ``Ensemble.best``'s).
"""
from __future__ import annotations

import numpy

from ..hints import missing_attribute

__all__ = ["History", "missing_log_hint"]


# what scikit-learn's habit, model.fit(X, Y).predict(X), looks for on the History that gpunn's fit returns
_MODEL_ATTRIBUTES = ("predict", "score", "evaluate", "loss", "fit", "loss_and_gradients", "best", "best_index",
                     "weights", "biases", "params", "layer_sizes")


class History(dict):
    """Per-epoch lists: epoch, loss, lr, time_s, samples_per_s (and whatever callbacks add).

    ``loss`` is the training loss over the epoch's rows, each batch's taken before that batch's step (no
    extra pass over the data), so it is not ``model.loss(X, Y)`` after the epoch, which is lower while the loss falls.

    ``time_s`` and ``samples_per_s`` are the epoch's in this process: for the epoch a resume from a checkpoint written
    part-way through it finished, the seconds since the resume and the rate of the rows trained since (an interrupted
    process's part of that epoch is in neither, and the sum of ``time_s`` leaves its seconds out).

    ``interrupted`` is True when training stopped on Ctrl-C / ``trainer.interrupt()`` (only
    completed epochs are listed: a run stopped in its first epoch returns a History whose lists are empty,
    ``history["epoch"] == []``, as Keras's ``history.epoch`` lists the epochs completed);
    ``stopped_early`` when early stopping ended it. ``cut_batch``: where an interrupt stopped part-way through an
    epoch, how many of its batches ran (the model holds the weights of their steps, which no epoch's row scores, as
    the checkpoint written then does); 0 where it stopped at an epoch's end, or was not interrupted.

    ``best_epoch`` (from 1) and ``best`` (its value): EarlyStopping's best epoch and value by its monitor, whose
    weights the model ends with (``restore_best_weights``; not where ``interrupted``: the model then holds the weights
    it stopped with); without EarlyStopping, the epoch and value of the least
    ``val_loss`` where the run was validated (the model then ends with the last epoch's weights), as an Ensemble's
    history gives per member; else None.
    """

    interrupted = False
    cut_batch = 0
    stopped_early = False
    best_epoch = None
    best = None

    def __getattr__(self, name):
        raise missing_attribute(self, name, self._hint(name))

    def __missing__(self, key):
        # history["val_loss"] of a fit without validation, Keras's habit, said only KeyError: 'val_loss'
        if not isinstance(key, str):
            raise KeyError(key)
        hint = missing_log_hint(key, self, "this fit had no validation: pass validation_data or validation_fraction")
        raise KeyError(f"{key!r}: the history has no {key}{hint}; its keys: {', '.join(self)}")

    def _hint(self, name) -> str:
        """What a user of another library looks for under ``name``: Keras's ``history.history["loss"]``, a key
        (``history.loss``), or the model, which scikit-learn's fit returns (``model.fit(X, Y).predict(X)``)."""
        if name.startswith("__"):  # copy's and pickle's probes
            return ""
        if name in self:
            return f": the per-epoch lists are its items, history[{name!r}]"
        if name == "history":
            return ": gpunn's History is the dict of per-epoch lists itself (Keras's history.history): history['loss']"
        if name in _MODEL_ATTRIBUTES:
            return (f": fit returns the run's History, as Keras's fit does, not the model, as scikit-learn's does; "
                    f"call model.{name} on the model (gpunn.MLPRegressor's fit returns the estimator)")
        return ""

    def settle_best(self):
        """best_epoch and best for a validated run without EarlyStopping: the least val_loss and its epoch (the
        first of equals, as EarlyStopping counts only a fall; a NaN or infinite epoch never the best), where an
        epoch ended; None where no epoch's was finite. An ensemble's val_loss is epochs x K: per member, lists of K."""
        values = numpy.asarray(self.get("val_loss", []), dtype=numpy.float64)
        if self.best_epoch is None and self.best is None and values.size:
            filled = numpy.where(numpy.isfinite(values), values, numpy.inf)
            scored = numpy.isfinite(filled.min(axis=0))  # (a member no epoch scored has no best: None, not epoch 1)
            self.best_epoch = numpy.where(scored, filled.argmin(axis=0) + 1, None).tolist()  # (an int, or a list of K)
            self.best = numpy.where(scored, filled.min(axis=0), None).tolist()

    def expect(self, keys):
        """An empty list for each of ``keys`` it has not yet: the logs a run will append, so that a run stopped
        before its first epoch ended holds them, empty, not a history without the keys (``history["loss"]``
        raised KeyError)."""
        for key in keys:
            self.setdefault(key, [])

    def append(self, logs: dict):
        for key, value in logs.items():
            self.setdefault(key, []).append(value)

    @property
    def last(self) -> dict:
        return {k: v[-1] for k, v in self.items() if v}


def missing_log_hint(name, logs, validate) -> str:
    """What to say after "no <name>" of ``logs`` (a run's logs or history): `` (validate)`` for a val_ name in a run
    without validation, `` (did you mean 'val_loss'?)`` for a misspelling of one it has (val_los, VAL_LOSS) or for
    evaluate's and score's name of one (r2, mse, mae: the held-out values carry val_), else nothing."""
    from ..hints import meant

    if name.startswith("val_") and not any(k.startswith("val_") for k in logs):
        return f" ({validate})"
    found = meant(name, list(logs), aliases=False)  # (the command line's names: no metric's)
    if found:
        return f" ({found.hint(lambda metric, value: repr(metric))})"
    if f"val_{name}" in logs:
        return f" (did you mean 'val_{name}'? the held-out rows' values carry val_)"
    return ""
