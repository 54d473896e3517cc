"""Training: the loop, its state, the built-in callbacks, ``fit``, and the seams other code plugs into.

- :mod:`gpunn.training.protocols`: the three seams (``DataSource``, ``Trainable``, ``GradientHook``).
- :mod:`gpunn.training.loop`: the ``Trainer`` that runs epochs of mini-batches.
- :mod:`gpunn.training.callbacks`: the callback protocol, ``History``, the built-in callbacks, all importable from
  there; each lives in a module of its own: :mod:`~gpunn.training.callback_protocol` (``Callback``),
  :mod:`~gpunn.training.history` (``History``), :mod:`~gpunn.training.progress` (the progress bar, and
  :mod:`~gpunn.training.numba_watch`, the seconds Numba takes, which it says), :mod:`~gpunn.training.monitoring`
  (early stopping, learning-rate reduction on plateau).
- :mod:`gpunn.training.fit`: :func:`fit` on in-memory arrays or a gpunn.data source.

Nothing here imports :mod:`gpunn.checkpoint` (which imports this package to resume runs).
"""
