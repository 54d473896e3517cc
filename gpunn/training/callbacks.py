"""The callback protocol, the history and the built-in training callbacks, every one importable from here: a progress
bar, early stopping and learning-rate reduction on plateau. All but the progress bar (a counter per batch) act once
per epoch. Checkpointing (``ModelCheckpoint``) lives in :mod:`gpunn.checkpoint`, which imports this module.

A module each job, and here what needs them all:

- :mod:`gpunn.training.callback_protocol`: :class:`Callback`, its hooks and the callback-state protocol a checkpoint
  stores and restores, so a resumed run continues with the same patience counters, best value and best weights;
- :mod:`gpunn.training.history`: :class:`History`;
- :mod:`gpunn.training.progress`: :class:`ProgressBar`, :class:`PassProgress` and how progress shows numbers and
  times; :mod:`gpunn.training.numba_watch`: the seconds Numba takes, which it says;
- :mod:`gpunn.training.monitoring`: :class:`EarlyStopping`, :class:`ReduceLROnPlateau` and the rules of a monitored
  value;
- here: :func:`order_callbacks`, a run's callbacks in the order they are called, and ``CALLBACKS``, the built-ins a
  checkpoint makes again.

A name imported here is a second binding of it: to patch one for the code that uses it, patch it in the module that
code is in (``gpunn.training.progress.draws_bar`` for the progress bar's choice of a bar or lines).
"""
from __future__ import annotations

from ..checks import verbosity
from ..hints import a_type
from ..optim import misplaced
# every name gpunn.training.callbacks held before it was split (private ones too: code that imported one from here
# still does)
from .callback_protocol import (_KERAS_BATCH_HOOKS, _STATE_ARGUMENTS, HOOK_ARGUMENTS, Callback, refuse_foreign_hooks,
                                writes_checkpoints)
from .history import _MODEL_ATTRIBUTES, History, missing_log_hint
from .monitoring import (EarlyStopping, ReduceLROnPlateau, _an_optimizer, _Monitoring, check_logged, checked_monitor,
                         checked_monitoring, default_monitor, improves, may_add_logs, missing_monitor, monitor_mode)
from .numba_watch import _NUMBA_EVENTS, _NumbaWatch, numba_seconds
from .progress import (_BAR_FORMAT, DAY, YEAR, PassProgress, ProgressBar, _readable_times, _text_kept_up, draws_bar,
                       four_digits, interval_text, lines_for)

__all__ = ["Callback", "History", "ProgressBar", "EarlyStopping", "ReduceLROnPlateau", "CALLBACKS", "order_callbacks"]


def order_callbacks(callbacks, verbose):
    """User callbacks first, then checkpoint writers (``writes_checkpoint = True``, so they save
    the others' updated state), then the progress bar."""
    if isinstance(callbacks, Callback):
        raise TypeError(f"callbacks is a list of gpunn.Callback; got one {type(callbacks).__name__}: write "
                        f"callbacks=[{type(callbacks).__name__}(...)]")
    show = verbosity(verbose)
    callbacks = list(callbacks or ())
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise TypeError(f"callbacks[{i}] is the class {cb.__name__}; pass an instance: {cb.__name__}(...)")
        if not isinstance(cb, Callback) and (said := misplaced(cb, f"callbacks[{i}]")):
            raise TypeError(said)
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}] is {a_type(cb)}, not a gpunn.Callback; subclass gpunn.Callback "
                            "and override the hooks it needs")
        refuse_foreign_hooks(cb, i)
    writers = [cb for cb in callbacks if getattr(cb, "writes_checkpoint", False)]
    others = [cb for cb in callbacks if not getattr(cb, "writes_checkpoint", False)]
    if show and not any(isinstance(cb, ProgressBar) for cb in others):
        others.append(ProgressBar(lines=lines_for(verbose)))
    bars = [cb for cb in others if isinstance(cb, ProgressBar)]
    return [cb for cb in others if not isinstance(cb, ProgressBar)] + writers + bars


CALLBACKS = {cls.__name__: cls for cls in (EarlyStopping, ReduceLROnPlateau)}
