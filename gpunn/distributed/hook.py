"""The gradient hook of data-parallel training: one all-reduce of the flat gradient buffer.

Each rank's backward pass runs the single-process equations on its m_r rows, so its buffer
holds the gradient of its own mean, g_r = (1/m_r) sum over its rows of the per-row gradient
(that is where dA = (2/m_r)(A - Y) puts the 1/m_r). The gradient of the global batch's mean
over M = sum of m_r rows is

    g = (1/M) sum over all rows = sum_r (m_r / M) g_r,

so each rank scales its buffer by m_r / M and the all-reduce sums: one pass over the buffer
and one collective, with no division by a host-synchronised count. With equal pieces the
factor is 1/P. M comes from the data source (``global_batch_rows``); a source that does not
know it costs one more small all-reduce of the row count.
"""
from __future__ import annotations

import numpy

from .comm import raised_on_every_rank, rank_words, said_by


class GradientAllReduce:
    """GradientHook: ``on_gradients`` makes every rank's ``grads`` the global batch's gradient;
    ``reduce_epoch`` sums an epoch's squared errors and rows over ranks."""

    def __init__(self, comm, source=None):
        self.comm, self.source = comm, source
        self.steps = 0
        self.refusal = None  # the data refusal first_refusal gave every rank to raise

    def on_gradients(self, trainable, rows):
        total = getattr(self.source, "global_batch_rows", 0)
        if not total:
            total = int(self.comm.sum_host([rows], label="the batch-size reduction")[0])
        grads = trainable.grads
        if rows != total:
            grads *= rows / total  # rows == 0 leaves zeros: a rank may have no rows in a tiny last batch
        self.comm.allreduce_sum_(grads)
        self.steps += 1

    def reduce_epoch(self, sum_sq, rows):
        """(sum of squared errors, rows) over all ranks: a float64 host array shaped like ``sum_sq``
        (0-d for one model, (K,) for an ensemble) and an int."""
        on_gpu = hasattr(sum_sq, "get")
        local = numpy.asarray(sum_sq.get() if on_gpu else sum_sq, dtype=numpy.float64)  # the epoch's one sync
        summed = self.comm.sum_host(numpy.append(local.reshape(-1), float(rows)))
        total = summed[:-1].reshape(local.shape)
        if on_gpu:  # back where the loop (and an ensemble's epoch_logs) expects it
            import cupy

            total = cupy.asarray(total)
        return total, int(round(summed[-1]))

    def from_root(self, value):
        """Rank 0's ``value`` on every rank (the divergence reference: each rank took its own from its piece
        of the first batch, and ranks that disagreed on divergence would not stop together)."""
        return self.comm.bcast_object(value, label="the divergence reference")

    def first_refusal(self, error):
        """The data refusal every rank raises where the reduced epoch loss is not finite (None: no rank's source
        refused a value; the run diverged): this rank's own ``error``, else the first refusing rank's words as a
        DataError. On a GPU a value standardized past the model's dtype is refused at the loss read, and the
        reduction gives every rank the NaN that one rank's window made, so the others said "training loss became
        nan ...; lower the learning rate, or standardize" (gpunn.data.overflow). The error comes back marked as raised on
        every rank, said alike only where every rank refused in the same words: the refusing rank's own, marked alike,
        was said for every rank by rank 0's uncaught-exception hook, in rank 0's words where rank 1 refused ("rank 1
        of ranks 0-1 refused its data: ...", under "every rank failed with this error"), and rank 1's unsaid. One
        gather, on this error path."""
        said = self.comm.allgather(None if error is None else str(error), label="the data refusal")
        if error is None:
            refused = [(rank, text) for rank, text in enumerate(said) if text is not None]
            if refused:
                from ..data.errors import DataError

                rank, text = refused[0]
                error = said_by(DataError(f"{rank_words(rank, len(said))} refused its data: {text}"), rank)
        if error is not None:
            raised_on_every_rank(error, alike=len(set(said)) == 1)
        self.refusal = error
        return error

    def broadcast_parameters(self, trainable, optimizer=None):
        """Make every rank start from rank 0's parameters (and optimizer moments, when resuming)."""
        self.comm.broadcast_(trainable.params)
        if optimizer is not None:
            for name in sorted(optimizer.state):
                self.comm.broadcast_(optimizer.state[name])
