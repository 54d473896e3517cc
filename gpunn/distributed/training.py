"""How a fit runs data parallel: what each rank sets up, checks and does differently.

* The per-rank batch is ``batch_size``; the global batch is ``size x batch_size`` and each rank
  trains its piece of it (:mod:`gpunn.distributed.shard`), so training is the single-process
  run at the global batch size, summed in another order.
* Before the first step (``on_train_begin``): the ranks compare a digest of their settings
  (:mod:`.digest`), then rank 0's parameters (and optimizer moments, when resuming) are broadcast.
* Rank 0 does all output: callbacks marked ``rank_zero_only`` (the progress bar, checkpoint
  writers; set it on your own) run on rank 0 alone. In-memory validation data and a source's
  held-out chunks are split over the ranks and their sums reduced (other evaluators run on rank 0);
  rank 0's epoch logs are broadcast, so early stopping and learning-rate plateaus decide the same on
  every rank.
* Ctrl-C (mpiexec forwards it to every rank) is agreed on after each batch, so all ranks stop
  after the same step and rank 0's checkpoint is a valid resume point; no rank leaves a fit, stopped or
  finished, before rank 0 has written its last checkpoint (a SIGTERM, passed on as the fit returns, then ends every
  rank after it; a rank that loads the file after its fit reads the run's end).
* A rank that raises prints its error and aborts the job; consistent errors that every rank
  raises at the same point (a configuration mismatch, a diverged loss, validation metrics that are not finite:
  every rank checks the same validation logs) are raised normally. So are DataParallel's refusals of its arguments
  where every rank refuses them: the ranks agree on who refused in one gather of flags before the fit; and a resume's
  refusals where only some ranks refuse (:func:`resume_refusals_agreed`: each raises, naming who refused).
"""
from __future__ import annotations

import contextlib
import math

import numpy

from ..metrics import (RegressionEvaluator, column_words, error_sums, forward_places, merged_places, place_words,
                       r2_per_output, row_pieces, source_column_words, source_row_words, validation_logs,
                       window_pieces)
from ..training.callbacks import Callback
from ..training.sources import ArraySource
from .comm import DistributedError, abort_on_error, agreeing_on_failure, is_raised_on_every_rank, world
from .digest import check_same_config
from .hook import GradientAllReduce
from .shard import PieceOfEachBatch, ShardedArraySource, ShardedSource, piece
from .threads import rank_threads


SETTINGS_CHECK = "the check of the data-parallel settings"  # every rank's first collective of a fit (a resume's too)
RESUMING = "refused to resume the run"  # a resume's refusal by another rank, as this rank says it


@contextlib.contextmanager
def resume_refusals_agreed():
    """Around a data-parallel resume's own checks, which come before its DataParallel (gpunn.checkpoint.resume: its
    data and validation data against the run's, its device's precision, its epochs...): a rank that refuses the
    resume there tells the others in their first collective, DataParallel's check of the settings, which it joins
    with its failure as gpunn train's ranks join it with theirs before the fit (comm.agreeing_before_any_collective);
    every rank then raises at once: each refusing rank its own error, the others a ConfigMismatch naming the first
    of them and its words (comm.agreeing_on_failure's ``refused``). No rank aborts: every rank leaves the resume at
    the same point, before it trains. The rank raised alone, and the others waited in that check until
    GPUNN_DIST_TIMEOUT. Nothing more in one process, or where no communicator can be made (each rank's DataParallel
    says why)."""
    try:
        yield
    except BaseException as exc:
        _told_in_the_settings_check(exc)
        raise


def _told_in_the_settings_check(exc: BaseException) -> None:
    """``exc``, this rank's refusal of a resume, told in the others' check of the settings (raised from there,
    marked as raised on every rank); nothing where this rank has no other."""
    try:
        control = world(None)
    except DistributedError:
        return
    if control.size == 1:
        return

    def refused():
        raise exc

    agreeing_on_failure(control, refused, SETTINGS_CHECK, gather=False, refused=RESUMING)


class _Start(Callback):
    """First of all: before the first step, the settings compared and rank 0's state everywhere;
    at each epoch end, every rank takes rank 0's logs (loss, timing, validation)."""

    def __init__(self, dp):
        self.dp = dp

    def on_train_begin(self, trainer):
        # the settings first: ranks whose models differ in size would meet in a broadcast of another length,
        # which MPI refuses ("message sizes do not match") and which aborts the job without naming the setting
        check_same_config(self.dp.comm, self.dp.settings(trainer))
        self.dp.hook.broadcast_parameters(trainer.model, trainer.optimizer if trainer.optimizer.steps else None)

    def on_epoch_end(self, trainer, epoch, logs):
        comm = self.dp.comm
        shared = comm.bcast_object(dict(logs) if comm.rank == 0 else None, label="the epoch-log broadcast")
        logs.clear()
        logs.update(shared)


class _AgreedStop(Callback):
    """Last after each batch and epoch: the ranks agree on whether to stop (Ctrl-C, early stop).

    ``trainer.interrupt()`` (what Ctrl-C calls) only records the request here; the agreed
    answer sets the flag the loop reads, so no rank leaves the loop alone. A Ctrl-C is a second one
    only after this rank's own first: mpiexec delivers it to each rank in turn, and a rank whose
    Ctrl-C lands after the ranks already agreed to stop on another's must not take it as the second
    (which raises, and so aborts the job).
    """

    def __init__(self, comm):
        self.comm, self.requested = comm, False

    def _request(self):
        self.requested = True

    def on_train_begin(self, trainer):
        trainer.interrupt = self._request
        trainer.interrupt_asked = lambda: self.requested

    def on_batch_end(self, trainer, batch):
        trainer._halt = self.comm.any(self.requested)

    def on_epoch_end(self, trainer, epoch, logs):
        trainer._halt = self.comm.any(self.requested)
        trainer.stop = self.comm.any(trainer.stop, label="the early-stopping agreement")

    def on_train_end(self, trainer):
        # After the writers (this callback is the last): a run leaves the fit on every rank only once rank 0's
        # checkpoint is written. A SIGTERM is passed on when a stopped fit returns, and a rank that ended first would
        # have the launcher kill rank 0 mid-write (the batch reached lost); after a finished run, a rank that loads
        # the checkpoint (README's script) would read the file of an earlier epoch's write, or none yet.
        if not trainer.failed:
            self.comm.barrier(label="the barrier after the run's last checkpoint")


class _ShardedValidation:
    """Validation on in-memory (X_val, Y_val), split by rows: each rank evaluates its piece, the partial
    sums (squared and absolute errors) are added on rank 0 and broadcast, and MSE, MAE and R² follow as
    in gpunn.metrics (R²'s denominator from all rows): the single-process values up to summation order.
    An ensemble's evaluator the same way, with K sums (one per member) and lists of K metrics."""

    def __init__(self, evaluator, comm):
        self.comm, self.n_rows, self.chunk_rows = comm, evaluator.n_rows, evaluator.chunk_rows
        lo, hi = piece(evaluator.n_rows, comm.rank, comm.size)
        self.X, self.Y, self.ss_tot = evaluator.X[lo:hi], evaluator.Y[lo:hi], evaluator.ss_tot
        # validation_data's weights (mean 1 over all its rows): each rank's sums weighted, their total the one process's
        self.weights = None if evaluator.weights is None else evaluator.weights[lo:hi]
        self.describe = evaluator.describe  # a checkpoint records all the rows (rank 0 writes it)
        self._row_words = lambda row: evaluator.row_words(lo + row)  # this rank's row as the user's array has it

    def _pieces(self):
        return row_pieces(self.X, self.Y, self.weights, self.chunk_rows)

    def evaluate(self, model) -> dict:
        ss_res, abs_sum = _sum_over_ranks(_error_sums(model, self._pieces()), self.comm)
        return _metrics(ss_res, abs_sum, model.backend.to_host(self.ss_tot), self.n_rows, self.Y.shape[1])

    def not_finite_places(self, model) -> dict:
        """The single process's words (RegressionEvaluator.not_finite_places), the same on every rank: each rank's
        values that are not finite, gathered (ValidationNotFinite's path, which every rank takes alike)."""
        return _gathered_places(self.comm, forward_places(model, self._pieces()), self._row_words)


class _ShardedSourceValidation:
    """Validation on a chunked source's held-out chunks (or every chunk of a validation source), split by
    whole chunks: each rank reads and evaluates its share, the error sums are added on rank 0 and
    broadcast, and R²'s denominator comes from the ranks' target moments merged in rank order (first
    evaluation). The single process's metrics up to summation order; no rank reads another's chunks.
    An ensemble's the same way, with K sums and lists of K metrics. A source with weights (gpunn.data.row_weights):
    each rank's rows weighed by theirs, scaled over every rank's (the evaluator's ``weight_scale``), R²'s denominator
    from the ranks' WeightedMoments."""

    def __init__(self, evaluator, chunks, comm):
        self.comm, self.source, self.chunk_rows = comm, evaluator.source, evaluator.chunk_rows
        self.n_rows = evaluator.n_rows
        lo, hi = piece(len(chunks), comm.rank, comm.size)
        self.chunks, self.ss_tot = list(chunks[lo:hi]), None
        self.describe = evaluator.describe  # what a checkpoint records of a validation source
        self.weight_scale = evaluator.weight_scale

    def _pieces(self, moments=None):
        scale = self.weight_scale
        return window_pieces(self.source.ordered_windows(self.chunks, weights=scale, weights_apart=True),
                             self.chunk_rows, moments, weighted=scale is not None)

    def evaluate(self, model) -> dict:
        from ..data.row_weights import WeightedMoments
        from ..data.stats import Moments

        outputs = self.source.n_outputs
        kind = Moments if self.weight_scale is None else WeightedMoments
        moments = kind(outputs)
        first = self.ss_tot is None  # the first evaluation takes the targets' moments as it reads the windows
        # the pass is closed also when the forward pass stops it (SourceEvaluator.evaluate)
        with contextlib.closing(self._pieces(moments if first else None)) as passing:
            sums = _error_sums(model, passing, self.source.overflow_watch)
        if first:
            merged = kind(outputs)
            for part in self.comm.allgather(moments, label="the validation target moments"):
                merged.merge(part)
            self.ss_tot, self.n_rows = merged.m2, merged.count
        ss_res, abs_sum = _sum_over_ranks(sums, self.comm)
        return _metrics(ss_res, abs_sum, self.ss_tot, self.n_rows, outputs)

    def not_finite_places(self, model) -> dict:
        """The single process's words (SourceEvaluator.not_finite_places: the row as the source names it), the same
        on every rank: each rank reads its chunks again, and the ranks' first values are gathered."""
        places = forward_places(model, self._pieces())
        self.source.overflow_watch.take(model.xp)  # (the pass's windows were refused or passed in the evaluation's)
        return _gathered_places(self.comm, places, lambda row: source_row_words(self.source, self.chunks, row),
                                lambda column: source_column_words(self.source, column))


def _gathered_places(comm, places, where, column_named=column_words) -> dict:
    """{member: words} (gpunn.metrics.place_words) of this rank's ``places`` (gpunn.metrics.not_finite_places of
    its rows) and the other ranks', whose rows follow in rank order: each rank names its first row (``where``) and
    column (``column_named``), the ranks' places are gathered and merged in rank order, so every rank gives the same
    words (one gather)."""
    named = [(count, (None, None) if row is None else (where(row), column_named(column)))
             for count, (row, column) in places]
    merged = merged_places(comm.allgather(named, label="the validation values that are not finite"))
    return place_words(merged, str, str)


def _error_sums(model, pieces, watch=None):
    """This rank's (squared-error sums per output, absolute-error sum) of ``model`` over the (X, Y) device
    ``pieces`` (gpunn.metrics.error_sums), on the host. A rank without rows has zeros. ``watch``: the pieces'
    source's gpunn.data.overflow.OverflowWatch, whose flag is read with the sums (a value this rank
    standardized past the model's dtype is refused, and the job aborts)."""
    ss_res, abs_sum, _ = error_sums(model, pieces)
    backend = model.backend
    return backend.to_host(ss_res), (backend.to_host(abs_sum) if watch is None else
                                     watch.to_host_with(backend, abs_sum))


def _sum_over_ranks(sums, comm):
    """(ss_res, abs_sum) of :func:`_error_sums` added over the ranks (on rank 0, then broadcast), in one
    small all-reduce; the same shapes back."""
    ss_res, abs_sum = (numpy.asarray(a, "float64") for a in sums)
    total = comm.sum_host(numpy.concatenate([ss_res.reshape(-1), abs_sum.reshape(-1)]), label="the validation sums")
    return total[:ss_res.size].reshape(ss_res.shape), total[ss_res.size:].reshape(abs_sum.shape)


def _metrics(ss_res, abs_sum, ss_tot, rows, outputs) -> dict:
    """The validation logs (gpunn.metrics.validation_logs; R² with scikit-learn's convention for a constant
    target, NaN under 2 rows: r2_per_output) from host sums over ``rows`` rows: ``ss_res`` per output (floats
    back) or (K, outputs) for an ensemble (lists of K back)."""
    r2 = r2_per_output(numpy, ss_res, numpy.asarray(ss_tot), rows).mean(axis=-1)
    return validation_logs(ss_res.sum(axis=-1), abs_sum, r2, rows, outputs)


def _source_validation_chunks(evaluator):
    """The chunks a SourceEvaluator reads, when they can be split by rank: a chunked source's held-out
    chunks, or every chunk of a chunked validation source (SourceEvaluator.chunks); else None."""
    from ..metrics import SourceEvaluator

    return evaluator.chunks() if type(evaluator) is SourceEvaluator else None


class _ValidatedOnRankZero:
    """Validation that cannot be split by rank (any other evaluator): rank 0 evaluates, and every rank takes its
    val_* logs in one broadcast, so that every rank checks the same logs (the loop's check_validation) and raises
    alike (the others did no work, and took the logs only in the epoch-log broadcast, after that check)."""

    def __init__(self, evaluator, comm):
        self.evaluator, self.comm = evaluator, comm
        self.n_rows = getattr(evaluator, "n_rows", None)
        if hasattr(evaluator, "describe"):  # what a checkpoint records of a validation source (rank 0 writes it)
            self.describe = evaluator.describe

    def evaluate(self, model) -> dict:
        logs = self.evaluator.evaluate(model) if self.comm.rank == 0 else None
        return self.comm.bcast_object(logs, label="the validation logs")

    def not_finite_places(self, model) -> dict:
        """Rank 0's evaluator's words ({} where it has none to say), on every rank, in one broadcast."""
        find = getattr(self.evaluator, "not_finite_places", None)
        places = (find(model) if find is not None else {}) if self.comm.rank == 0 else None
        return self.comm.bcast_object(places, label="the validation values that are not finite")


class DataParallel:
    """One rank's share of a data-parallel fit (made by ``fit(..., distributed=True)``).

    ``batch_size``: the per-rank batch (None: one global batch of every row); ``source`` and
    ``hook`` go to the training loop, ``callbacks()`` and ``validation()`` filter what rank 0
    alone does, ``run()`` starts the loop with the error handling of a distributed job. The data:
    in-memory (X, Y) (each rank gathers only its rows; so also ``source=`` an ArraySource of them, a resume's,
    whose checksum is kept), or ``source=`` a bound gpunn.data chunked
    source (each rank reads only its shard of the rows: :class:`~.shard.ShardedSource`, ``shards``
    of them, default one per rank; a resumed run's as its checkpoint says) or any other resumable
    DataSource (each rank draws every global batch and keeps its piece; also ``shards=0``: a resumed
    run that read a chunked source whole).
    """

    def __init__(self, model, X=None, Y=None, *, distributed=True, batch_size, seed=0, shuffle=True, verbose,
                 timeout=None, source=None, shards=None, resuming=None, weighted=False):
        control = world(None, timeout)
        self.rank, self.size = control.rank, control.size
        self.model, self.verbose = model, verbose
        # every rank checks the same arguments here, and the ranks agree on who refused them in one small gather:
        # where every rank refuses (the same arguments, as mpiexec -n P gives them), each raises its error as one
        # process does, marked as raised on every rank (gpunn train says it once), and no rank aborts; where some do,
        # they end the job, as before, and the others, which cannot train without them, wait for that
        # (a resume: where some refuse, every rank raises, and no rank aborts: resume_refusals_agreed)
        self.source = agreeing_on_failure(control, lambda: self._set_up(model, X, Y, distributed, batch_size, seed,
                                                                        shuffle, source, shards, resuming,
                                                                        weighted),
                                          SETTINGS_CHECK, gather=False, refused=None if resuming is None else RESUMING)
        self.comm = world(model.backend, timeout)  # (on GPUs, ranks of a node that share one are refused there)
        self.hook = GradientAllReduce(self.comm, self.source)
        self._validation_described = None  # in-memory validation rows' checksum, set by validation()
        if verbose and self.is_root and self.size == 1:  # (python script.py, where mpiexec -n P was meant)
            print(f"data parallel: {self.comm.describe()}, so the plain fit, batch {self.batch_size} (start it with "
                  "mpiexec -n P to train on P ranks)", flush=True)
        elif verbose and self.is_root:
            print(f"data parallel: {self.comm.describe()}; batch {self.batch_size} per rank, "
                  f"{self.batch_size * self.size} global", flush=True)

    def _set_up(self, model, X, Y, distributed, batch_size, seed, shuffle, source, shards, resuming, weighted):
        """This rank's share of the data, after the checks of the arguments (the same on every rank);
        ``resuming``: (checkpoint path, its FitSettings), whose global batch sets the per-rank one; ``weighted``: Y's
        last column is each row's weight (gpunn.sample_weights)."""
        if isinstance(distributed, str):  # "MPI" and "NCCL", as the engines spell themselves, were refused
            distributed = distributed.lower()
        if distributed not in (True, "mpi", "nccl"):
            raise ValueError(f"distributed must be True, 'mpi' or 'nccl', got {distributed!r}")
        backend = model.backend
        if distributed == "mpi" and backend.is_gpu:
            raise ValueError("distributed='mpi' needs a CPU model; a GPU model's gradients go over NCCL")
        if distributed == "nccl" and not backend.is_gpu:
            raise ValueError("distributed='nccl' needs a model on a GPU (device=gpunn.distributed.local_device())")
        self._resumed_global_batch = None  # a resume's global batch, which the shards' refusal names too
        if resuming is not None:
            batch_size = per_rank_batch_on_resume(*resuming, self.size, shards=shards or None)
            self._resumed_global_batch = resuming[1].batch_size * resuming[1].ranks
        rows = int(source.rows if source is not None else X.shape[0])
        if 1 < self.size and rows < self.size:  # rank 0's piece of the first batch, which sets the divergence reference, is empty
            fewer = "in one process" if rows <= 1 else f"on at most {rows} ranks"
            raise ValueError(f"{rows} training row{'' if rows == 1 else 's'} on {self.size} ranks: rank 0 would have no "
                             f"row to train on (each rank trains its piece of every batch); train {fewer}")
        cap = -(-rows // self.size)  # one global batch holds every row
        self.batch_size = cap if batch_size is None else min(batch_size, cap)
        if source is None:
            return ShardedArraySource(backend, X, Y, rank=self.rank, size=self.size, seed=seed, shuffle=shuffle,
                                      batch_size=self.batch_size, weighted=weighted)
        if not getattr(source, "resumable", False):
            raise ValueError("data-parallel training needs a source whose batches are a pure function of "
                             "(seed, epoch, batch) (resumable), so that every rank draws the same ones")
        return self._split(source, shards)

    def _split(self, source, shards):
        """This rank's share of a source: its shards of a chunked one, its piece of each batch otherwise."""
        from ..data.base import ChunkedSource

        if type(source) is ArraySource:  # in-memory rows (a resume's): sharded as fit's (X, Y) are, keeping the
            # checksum the resume compared them by (computing it again took a second pass over every row)
            return ShardedArraySource(self.model.backend, source.X, source.Y, rank=self.rank, size=self.size,
                                      seed=source.seed, shuffle=source.shuffle, batch_size=self.batch_size,
                                      fingerprint=source.config()["fingerprint"], weighted=source.weighted)
        if isinstance(source, ShardedSource):  # the one-process layout passed in: its shards, shared out
            source, shards = source.source, source.shards if shards is None else shards
        if not isinstance(source, ChunkedSource) or shards == 0:  # 0: a resumed run that read the source whole
            return PieceOfEachBatch(source, rank=self.rank, size=self.size, batch_size=self.batch_size)
        shards = self.size if shards is None else int(shards)
        if shards % self.size and self._resumed_global_batch is not None:
            raise ValueError(f"this run's data were read as {shards} shards, one per rank of the run that started it; "
                             f"{self.size} ranks cannot share them out evenly, so the batches would change. Resume "
                             f"on {ranks_dividing(self._resumed_global_batch, shards)} (1: in one process).")
        if shards % self.size:  # a ShardedSource passed to a fresh fit
            raise ValueError(f"the source is cut into {shards} shards (ShardedSource(source, {shards})), which "
                             f"{self.size} ranks cannot share out evenly. Train on {ranks_dividing(shards)}, or pass "
                             "the source itself (a shard per rank).")
        own = shards // self.size
        return ShardedSource(source, shards, range(self.rank * own, (self.rank + 1) * own))

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def callbacks(self, callbacks):
        """Rank 0 keeps every callback; the others drop the ones that write or print."""
        kept = [cb for cb in callbacks if self.is_root or not getattr(cb, "rank_zero_only", False)]
        return [_Start(self), *kept, _AgreedStop(self.comm)]

    def validation(self, evaluator):
        """In-memory validation data (a RegressionEvaluator: a model's or an ensemble's) is split over
        the ranks by rows, a chunked source's held-out chunks (or a chunked validation source) by
        chunks. Other evaluators run on rank 0, which broadcasts their logs, so that every rank's
        callbacks see a run with validation (EarlyStopping monitors val_loss everywhere) and every rank checks
        them; every rank then takes rank 0's logs."""
        if isinstance(evaluator, RegressionEvaluator):  # in-memory rows: a model's or an ensemble's
            # their checksum joins the configuration check, as the training arrays': the one a checkpoint records
            # (describe() computes it once, so the checkpoint's writes reuse it)
            self._validation_described = evaluator.describe()
            return _ShardedValidation(evaluator, self.comm)
        chunks = _source_validation_chunks(evaluator)
        if chunks is not None:
            return _ShardedSourceValidation(evaluator, chunks, self.comm)
        return None if evaluator is None else _ValidatedOnRankZero(evaluator, self.comm)

    def settings(self, trainer) -> dict:
        """What every rank must agree on before the first step (see :mod:`.digest`)."""
        model = trainer.model
        data = dict(self.source.config())  # in-memory arrays' holds the checksum a checkpoint records of them
        if self._validation_described is not None:
            data["validation_fingerprint"] = self._validation_described["fingerprint"]
            if self._validation_described.get("sample_weight"):  # (its weights are in the checksum)
                data["validation_sample_weight"] = True
        described = {k: getattr(model, k) for k in ("bias", "seed", "seeds", "n_models") if hasattr(model, k)}
        return {"model": dict(described, layer_sizes=list(model.layer_sizes), dtype=model.dtype.name,
                              activations=[a.name for a in model.activations]),
                "backend": model.backend.name, "optimizer": trainer.optimizer.config(),
                "fit": trainer.settings.to_dict(),
                "start": {"epoch": trainer.state.epoch, "batch": trainer.state.batch,
                          "steps": trainer.optimizer.steps},
                "data": data}

    def run(self, train):
        """``train()`` (the loop) on this rank's share of the node's cores (:mod:`.threads`), turning a
        one-rank failure into the end of the whole job (of more than one process; one alone raises it)."""
        with rank_threads(self.comm, self.model) as threads:
            if threads and self.verbose and self.is_root:
                print(f"data parallel on the CPU: {threads}", flush=True)
            try:
                return train()
            except BaseException as exc:
                # every rank raises at the same point the settings check's ConfigMismatch, the loop's own checks'
                # TrainingDiverged and ValidationNotFinite (training.loop.agreed: each rank checks the same sums, logs
                # and weights) and a data refusal the ranks agreed on (the hook's first_refusal, which marks it);
                # another error ends the job (alone, no rank waits for this one: the caller gets it, as from fit), a
                # ValidationNotFinite of score() in a callback of one rank too
                if exc is not self.hook.refusal and self.comm.size > 1 and not is_raised_on_every_rank(exc):
                    abort_on_error(self.comm, exc)
                raise


def per_rank_batch_on_resume(path, settings, size, shards=None):
    """The per-rank batch that continues a checkpointed run on ``size`` ranks: the global batch
    (ranks x per-rank batch when it was written) must split evenly, so that batch i of every
    epoch holds the same rows in the same order. ``shards``: a run on a chunked source's, which the ranks
    must share out evenly too (DataParallel._split): the refusal names the counts that meet both."""
    global_batch = settings.batch_size * settings.ranks
    if global_batch % size:
        written = f"{settings.ranks} rank{'' if settings.ranks == 1 else 's'}"
        raise ValueError(f"{path} was written by {written} at a global batch of {global_batch} rows; "
                         f"{size} ranks cannot split it evenly, so the run would change. Resume on "
                         f"{ranks_dividing(global_batch, *([shards] if shards else []))} (1: in one process).")
    return global_batch // size


def ranks_dividing(*counts) -> str:
    """The numbers of ranks that divide each of ``counts`` (a global batch, a run's shards), in words: "a number of
    ranks that divides 128: 1, 2, 4, 8, 16, 32, 64 or 128"; for both, "... divides both 128 (the global batch) and 2
    (the shards): 1 or 2". A refusal said only "e.g. 2", and a run on shards was refused again for the count it
    then tried where the shards did not split."""
    common = math.gcd(*counts)
    fits = [str(n) for n in range(1, common + 1) if common % n == 0]
    shown = fits if len(fits) <= 10 else [*fits[:9], "...", fits[-1]]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    which = f"{counts[0]}" if len(counts) == 1 else f"both {counts[0]} (the global batch) and {counts[1]} (the shards)"
    return f"a number of ranks that divides {which}: {listed}"
