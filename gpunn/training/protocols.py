"""The three seams of the training loop, each a small protocol documented here and only here.

The loop (:mod:`gpunn.training.loop`) iterates a :class:`DataSource`, asks a :class:`Trainable` for
the gradients of each batch, hands them to an optional :class:`GradientHook`, then steps the optimizer.
New data (streams, files, per-process shards), new models (an ensemble of K networks) and distributed
training (an all-reduce of the gradients) are each a new class behind one of these, not an ``if`` in
the loop. ``typing.Protocol``: implementations need not inherit from these classes. The loop is
:func:`gpunn.training.loop.train`; its ``hook`` argument takes a GradientHook (``fit`` passes none).
"""
from __future__ import annotations

import inspect
from typing import Any, Iterator, Protocol, runtime_checkable

from ..hints import a_type


@runtime_checkable
class DataSource(Protocol):
    """What the loop iterates: the rows of one process, in mini-batches, epoch after epoch.

    It owns batching, shuffling and the position a resume restarts from.

    - ``rows``: training rows per epoch seen by this process (the loss is the epoch's summed
      squared error over ``rows``).
    - ``n_features``, ``n_outputs``: the width of X and of Y.
    - ``resumable``: True when batch ``i`` of epoch ``e`` is a pure function of (seed, e, i), so a run
      stopped after batch ``i`` and resumed with ``first_batch=i + 1`` sees exactly the batches it would
      have seen (a stream that cannot replay sets it False, and checkpoints then resume at epoch starts).
    - ``batches(epoch, batch_size, first_batch=0)``: yields ``(X_b, Y_b)`` device arrays on the
      trainable's backend and dtype, starting at batch ``first_batch`` of ``epoch``. The arrays may be
      views of a buffer the source reuses: valid until the next batch is drawn.
    - ``config()``: a JSON-able dict describing the source, stored in checkpoints (and compared on resume).
    - optional ``overflow_watch``: a :class:`gpunn.data.overflow.OverflowWatch` of the windows the source
      standardized on the device; the loop adds its ``take`` to the epoch's loss before reading it and calls
      its ``refuse`` where that loss is not finite (the gpunn.data sources have one).

    :class:`gpunn.training.sources.ArraySource` (in-memory arrays with the per-epoch device-side shuffle)
    is the one built in; ``fit`` builds one from (X, Y).
    """

    rows: int
    n_features: int
    n_outputs: int
    resumable: bool

    def batches(self, epoch: int, batch_size: int, first_batch: int = 0) -> Iterator[tuple[Any, Any]]: ...

    def config(self) -> dict: ...


# DataSource's members: its attributes and its methods
_SOURCE_MEMBERS = (*DataSource.__annotations__, *(name for name, value in vars(DataSource).items()
                                                  if callable(value) and not name.startswith("_")))


def is_source(X, Y, *, strict=True) -> bool:
    """Whether ``fit``/``resume`` got a DataSource as X (rather than arrays); a source holds its own
    targets, so Y must then be None (a TypeError says so rather than a failure deep in the arrays path).
    With ``strict`` (fit's and resume's), an object with a ``batches`` method that lacks another member, a
    source written by hand that misses one, is refused by a TypeError naming what it lacks: it is no array
    either, and the arrays path said only "X must be an array of numbers"; so is PyTorch's DataLoader or Dataset,
    with Y or without, saying what fit takes.

    Each member is looked up with ``hasattr``, so a source may provide some through ``__getattr__``, as
    ``gpunn.distributed.ShardedSource`` does for its wrapped source's. (Not ``isinstance(X, DataSource)``:
    from Python 3.12 that looks members up statically and does not see those.)"""
    missing = [name for name in _SOURCE_MEMBERS if not _has(X, name)]
    if missing and strict and "batches" not in missing and callable(getattr(X, "batches")):
        raise TypeError(f"X ({type(X).__name__}) has a batches method but lacks {', '.join(missing)}, so it is no "
                        f"data source: a DataSource (gpunn.training.protocols) has {', '.join(_SOURCE_MEMBERS)}")
    if missing and strict and type(X).__module__.startswith("torch.utils.data"):  # (a DataLoader was "X must be an
        # array of numbers, got a DataLoader", with Y or without; a TensorDataset, NumPy's "inhomogeneous shape")
        given = "" if Y is None else " and Y is given"
        raise TypeError(f"X is PyTorch's {type(X).__name__}{given}: fit cuts and shuffles the batches itself from "
                        "arrays or tensors, fit(X, Y, batch_size=64) (a TensorDataset's are its .tensors: "
                        "fit(*dataset.tensors, ...); a DataLoader's rows are its .dataset); "
                        "gpunn.data.iterable(loader) trains on a DataLoader's (X, Y) batches in its order instead"
                        + ("" if Y is None else ", given without Y: fit(gpunn.data.iterable(loader), epochs=...)"))
    if missing and strict and Y is None and _a_pair(X):
        raise TypeError(f"X is {a_type(X)} of two arrays, an (X, Y) pair as a Keras or PyTorch dataset holds "
                        "them, and Y is None: pass them apart, fit(X, Y)")
    if missing:
        return False
    if Y is not None:
        raise TypeError(f"got a data source ({type(X).__name__}) and Y: a source holds its targets; pass it "
                        "without Y, e.g. fit(source, epochs=...)")
    return True


def _has(X, name) -> bool:
    """``hasattr(X, name)``, also False where ``X.__getattr__`` raises KeyError for ``name``: an attribute dict's
    (``__getattr__ = dict.__getitem__``), whose KeyError stood in place of fit's "X must be an array of numbers".
    An error of a member X has (a property's) still raises, as hasattr lets it."""
    try:
        getattr(X, name)
    except AttributeError:
        return False
    except KeyError:
        try:
            inspect.getattr_static(X, name)
        except AttributeError:  # no such member: the KeyError is __getattr__'s
            return False
        raise
    return True


def _a_pair(X) -> bool:
    """Whether ``X`` is a tuple or list of two arrays, the first a matrix (not two rows of numbers): an (X, Y) pair
    passed as X."""
    return isinstance(X, (tuple, list)) and len(X) == 2 and getattr(X[0], "ndim", None) == 2


@runtime_checkable
class Trainable(Protocol):
    """What the loop needs of a model.

    - ``backend``: the :class:`gpunn.backend.Backend` it lives on; ``xp`` its array module (NumPy or CuPy);
      ``ops``: its :class:`gpunn.ops.Ops`; ``dtype``: its floating dtype.
    - ``params``, ``grads``: flat device buffers of the same shape (every parameter, every gradient);
      the optimizer steps ``params`` in place from ``grads``.
    - ``train_step(X, Y)``: forward and backward over one batch; fills ``grads`` with the gradient of the
      batch's mean squared error and returns the batch's device sum of squared errors (a 0-d array for
      :class:`gpunn.MLP`, shape ``(K,)`` for an ensemble of K models). It must not read anything back
      to the host.
    - optional ``train_step_and_update(X, Y, optimizer, lr)``: train_step, then
      ``optimizer.step(params, grads, lr)``, in one call; the loop uses it when no gradient hook runs
      between the two (:class:`gpunn.Ensemble`: on the CPU each member group updates its own members;
      :class:`gpunn.MLP`: a small net's CPU step with Adam is one Numba call, gpunn.ops.mlp_step).

    :class:`gpunn.MLP` is one.
    """

    backend: Any
    xp: Any
    ops: Any
    dtype: Any
    params: Any
    grads: Any

    def train_step(self, X, Y): ...


@runtime_checkable
class GradientHook(Protocol):
    """Called between the backward pass and the optimizer step; with no hook the step is exactly today's.

    - ``on_gradients(trainable, rows)``: after ``train_step`` filled ``trainable.grads`` from a batch of
      ``rows`` rows and before the optimizer reads them; may change ``grads`` in place (an all-reduce
      across processes goes here).
    - ``reduce_epoch(sum_sq, rows)``: the epoch's device sum of squared errors and this process's row
      count; returns ``(sum_sq, rows)`` over everything the loss should average (e.g. summed across
      processes), from which the loop computes the epoch's loss.
    - ``from_root(value)`` (optional): the value every process should use, once per run, for the
      divergence reference (gpunn.training.loop.reference_loss): rank 0's, so that all stop together.
    - ``first_refusal(error)`` (optional): where the reduced epoch loss is not finite, this process's refusal of
      its data (an exception, or None) in, the one every process should raise out (None: none refused).
    """

    def on_gradients(self, trainable: Trainable, rows: int) -> None: ...

    def reduce_epoch(self, sum_sq, rows: int) -> tuple[Any, int]: ...
