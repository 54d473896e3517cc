"""Training: the loop, its state, the built-in callbacks, ``fit``, and the seams other code plugs into.

- :mod:`gpunn.training.protocols`: the three seams (``DataSource``, ``Trainable``, ``GradientHook``).
- :mod:`gpunn.training.loop`: the ``Trainer`` that runs epochs of mini-batches.
- :mod:`gpunn.training.callbacks`: the callback protocol, ``History``, the built-in callbacks.
- :mod:`gpunn.training.fit`: :func:`fit` on in-memory arrays or a gpunn.data source.

Nothing here imports :mod:`gpunn.checkpoint` (which imports this package to resume runs).
"""
