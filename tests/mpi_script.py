"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: data-parallel training checked against
one process. Rank 0 writes what it measured to the JSON file named by the last argument."""
import json
import sys

import numpy

import gpunn
import gpunn.data
from gpunn import MLP, datasets
from gpunn.distributed import ConfigMismatch, world

ARCH = dict(layer_sizes=[5, 16, 16, 2], activation="tanh", dtype="float64", device="cpu", seed=3)
FIT = dict(optimizer="adam", lr=1e-2, verbose=False)


def rel(a, b):
    return float(numpy.max(numpy.abs(a - b)) / numpy.max(numpy.abs(b)))


class Marker(gpunn.Callback):
    """Output-like callback: must run on rank 0 only."""

    rank_zero_only = True

    def __init__(self, tmp):
        self.path = f"{tmp}/marker"

    def on_train_begin(self, trainer):
        with open(self.path, "a") as fh:
            fh.write(f"{world().rank}\n")


class StopAt(gpunn.Callback):
    """Ctrl-C after batch ``batch`` of epoch ``epoch`` (0-based), on rank ``rank`` alone or on every rank."""

    def __init__(self, epoch, batch, rank=None):
        self.epoch, self.batch, self.rank = epoch, batch, rank

    def on_batch_end(self, trainer, batch):
        if trainer.epoch == self.epoch and batch == self.batch and self.rank in (None, world().rank):
            trainer.interrupt()


class SlowEnd(gpunn.Callback):
    """Rank 0 slow to write its last checkpoint (as a big model's is): it runs before the checkpoint writer's."""

    rank_zero_only = True

    def on_train_end(self, trainer):
        import time

        time.sleep(1.5)


def resumed_on_ranks(path, *data, **options):
    """Rank 0's checkpoint ``path`` resumed data parallel on every rank: (checkpoint, history, whether every rank
    ends with the same weights)."""
    comm = world()
    comm.barrier()
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    history = ckpt.resume(*data, distributed=True, verbose=False, checkpoint=False, **options)
    return ckpt, history, len(set(comm.allgather(ckpt.model.params.tobytes()))) == 1


def exactness(out, tmp):
    comm = world()
    # 203 rows, 8 per rank: 12 global batches of 16 and a last one of 11 (5 + 6 rows);
    # 17 rows: a last global batch of 1 row, so rank 0 has an empty piece.
    for rows in (203, 17):
        X, Y = datasets.make("teacher", rows, 5, 2, device="cpu", dtype="float64", seed=1)
        model = MLP(**ARCH)
        history = model.fit(X, Y, epochs=3, batch_size=8, distributed=True, **FIT)
        if comm.rank == 0:
            ref = MLP(**ARCH)
            ref_history = ref.fit(X, Y, epochs=3, batch_size=16, **FIT)
            out[f"params_rel_{rows}"] = rel(model.params, ref.params)
            out[f"loss_rel_{rows}"] = rel(numpy.array(history["loss"]), numpy.array(ref_history["loss"]))
        out[f"params_same_on_ranks_{rows}"] = len({model.params.tobytes() for _ in [0]} | set(
            comm.allgather(model.params.tobytes()))) == 1
    # any resumable DataSource (here an ArraySource): each rank draws the global batches, keeps its piece
    from gpunn.distributed.training import DataParallel
    from gpunn.optim import make_optimizer
    from gpunn.training.loop import train
    from gpunn.training.sources import ArraySource
    from gpunn.training.state import FitSettings

    X, Y = datasets.make("teacher", 203, 5, 2, device="cpu", dtype="float64", seed=1)
    model = MLP(**ARCH)
    dp = DataParallel(model, source=ArraySource(X, Y, model.backend, seed=7), batch_size=8, verbose=False)
    settings = FitSettings(epochs=3, batch_size=dp.batch_size, train_rows=203, seed=7, ranks=dp.size)
    dp.run(lambda: train(model, dp.source, make_optimizer("adam", lr=1e-2), settings, callbacks=dp.callbacks([]),
                         validation=None, hook=dp.hook, handle_interrupt=False))
    if comm.rank == 0:
        ref = MLP(**ARCH)
        ref.fit(X, Y, epochs=3, batch_size=16, seed=7, **FIT)
        out["source_params_rel"] = rel(model.params, ref.params)
    # fit on a gpunn.data stream (two chunks' worth of rows, so the windowed shuffle and a short last batch):
    # each rank generates its shard; one process reading the two shards interleaved is the same run
    from gpunn.distributed.shard import ShardedSource

    stream = dict(rows=70_000, n_features=5, n_outputs=2, seed=1)
    model = MLP(**ARCH)
    model.fit(gpunn.data.synthetic("teacher", **stream), epochs=1, batch_size=512, distributed=True, **FIT)
    if comm.rank == 0:
        ref = MLP(**ARCH)
        ref.fit(ShardedSource(gpunn.data.synthetic("teacher", **stream), 2), epochs=1, batch_size=1024, **FIT)
        out["stream_params_rel"] = rel(model.params, ref.params)
    # an ensemble of 3 members (issue 11): the same contract, K sums reduced per epoch
    if hasattr(gpunn, "Ensemble"):
        X, Y = datasets.make("teacher", 203, 5, 2, device="cpu", dtype="float64", seed=1)
        ens_arch = dict(layer_sizes=[5, 16, 2], n_models=3, activation="tanh", dtype="float64", device="cpu", seed=3)
        ens = gpunn.Ensemble(**ens_arch)
        h = ens.fit(X, Y, epochs=3, batch_size=8, lr=[1e-2, 3e-3, 1e-3], verbose=False, distributed=True,
                    validation_fraction=0.2)
        if comm.rank == 0:
            ref = gpunn.Ensemble(**ens_arch)
            h_ref = ref.fit(X, Y, epochs=3, batch_size=16, lr=[1e-2, 3e-3, 1e-3], verbose=False,
                            validation_fraction=0.2)
            out["ensemble_params_rel"] = rel(ens.params, ref.params)
            out["ensemble_val_rel"] = max(rel(numpy.array(h[k]), numpy.array(h_ref[k]))
                                          for k in ("val_loss", "val_mae", "val_r2"))
            out["ensemble_loss_rel"] = rel(numpy.array(h["loss"]), numpy.array(h_ref["loss"]))
        # its checkpoint (rank 0, member early stopping, a stop mid-epoch 2) resumed on 2 ranks to 4 epochs
        path = f"{tmp}/ens.npz"
        stop = dict(patience=1, min_delta=0.01)
        ens_fit = dict(batch_size=8, lr=[1e-2, 0.3, 1e-3], validation_fraction=0.1, verbose=False)
        gpunn.Ensemble(**ens_arch).fit(X, Y, epochs=4, distributed=True, handle_interrupt=False, callbacks=[
            gpunn.EarlyStopping(**stop), StopAt(1, 5), gpunn.ModelCheckpoint(path)], **ens_fit)
        ckpt, h, out["ensemble_resumed_same_on_ranks"] = resumed_on_ranks(path, X, Y)
        if comm.rank == 0:
            ref = gpunn.Ensemble(**ens_arch)
            h_ref = ref.fit(X, Y, epochs=4, callbacks=[gpunn.EarlyStopping(**stop)], **{**ens_fit, "batch_size": 16})
            out["ensemble_resumed_params_rel"] = rel(ckpt.model.params, ref.params)
            out["ensemble_resumed_val_loss_rel"] = rel(numpy.array(h["val_loss"]), numpy.array(h_ref["val_loss"]))
            # the interrupted epoch's training loss: the part before the stop summed over both ranks
            out["ensemble_resumed_loss_rel"] = rel(numpy.array(h["loss"]), numpy.array(h_ref["loss"]))
            out["ensemble_resumed_stopped"] = [h.stopped_epoch, h_ref.stopped_epoch]
        # 17 training rows at 8 per rank: the last global batch has one row, rank 0 an empty piece
        Xs, Ys = datasets.make("teacher", 21, 5, 2, device="cpu", dtype="float64", seed=1)
        small = dict(lr=[1e-2, 3e-3, 1e-3], validation_fraction=0.2, verbose=False)
        ens = gpunn.Ensemble(**ens_arch)
        ens.fit(Xs, Ys, epochs=2, batch_size=8, distributed=True, **small)
        # bootstrapped: each rank draws every member's global batch of its resample and trains its piece;
        # stopped in epoch 2 and resumed on 2 ranks
        path = f"{tmp}/boot.npz"
        gpunn.Ensemble(**ens_arch).fit(Xs, Ys, epochs=3, batch_size=8, bootstrap=True, distributed=True,
                                       handle_interrupt=False, callbacks=[StopAt(1, 0), gpunn.ModelCheckpoint(path)],
                                       **small)
        boot, h_boot, out["bootstrap_same_on_ranks"] = resumed_on_ranks(path, Xs, Ys)
        if comm.rank == 0:
            ref = gpunn.Ensemble(**ens_arch)
            ref.fit(Xs, Ys, epochs=2, batch_size=16, **small)
            out["ensemble_params_rel_17"] = rel(ens.params, ref.params)
            ref = gpunn.Ensemble(**ens_arch)
            h_ref = ref.fit(Xs, Ys, epochs=3, batch_size=16, bootstrap=True, **small)
            out["bootstrap_params_rel"] = rel(boot.model.params, ref.params)
            out["bootstrap_val_rel"] = rel(numpy.array(h_boot["val_loss"]), numpy.array(h_ref["val_loss"]))
            out["bootstrap_epochs"] = h_boot["epoch"]
    weighted(out, tmp)
    # checkpoint by rank 0 after 2 epochs (validation, early stopping on), resumed on 2 ranks to 4
    X, Y = datasets.make("teacher", 203, 5, 2, device="cpu", dtype="float64", seed=1)
    path = f"{tmp}/run.npz"
    opts = dict(FIT, validation_fraction=0.1)
    MLP(**ARCH).fit(X, Y, epochs=2, batch_size=8, distributed=True,
                    callbacks=[gpunn.EarlyStopping(patience=50), gpunn.ModelCheckpoint(path)], **opts)
    if comm.rank == 0:
        import shutil
        shutil.copy(path, f"{tmp}/after2.npz")
    comm.barrier()
    resumed_model = gpunn.load_checkpoint(path, device="cpu")
    # the bar, not a log's lines (stderr is a pipe here), for its count of the rows
    bar = gpunn.training.callbacks.ProgressBar(lines=False)
    resumed = resumed_model.resume(X, Y, epochs=4, distributed=True, verbose=True, callbacks=[Marker(tmp), bar])
    out["resumed_same_on_ranks"] = len(set(comm.allgather(resumed_model.model.params.tobytes()))) == 1
    out["rank_zero_only_ran_on"] = sorted(int(r) for r in open(f"{tmp}/marker").read().split())
    if comm.rank == 0:
        ref = MLP(**ARCH)
        ref_history = ref.fit(X, Y, epochs=4, batch_size=16, callbacks=[gpunn.EarlyStopping(patience=50)], **opts)
        single = gpunn.load_checkpoint(path, device="cpu")
        out["resumed_params_rel"] = rel(single.model.params, ref.params)
        out["resumed_val_loss_rel"] = rel(numpy.array(resumed["val_loss"]), numpy.array(ref_history["val_loss"]))
        out["epochs"] = resumed["epoch"]
        # the 2-rank checkpoint continued in one process (no distributed): at the global batch, the same run
        alone = gpunn.load_checkpoint(f"{tmp}/after2.npz", device="cpu")
        alone.resume(X, Y, epochs=4, verbose=False, checkpoint=False)
        out["one_process_resume_params_rel"] = rel(alone.model.params, ref.params)


def weighted(out, tmp):
    """sample_weight over MPI: a weighted run with a held-out fraction, stopped in epoch 2 and resumed on 2 ranks with
    its weights, against the one-process weighted run at the global batch; equal weights against the unweighted
    2-rank run, bit for bit."""
    comm = world()
    X, Y = datasets.make("teacher", 203, 5, 2, device="cpu", dtype="float64", seed=1)
    w = numpy.random.default_rng(2).uniform(0.0, 3.0, 203)
    w[::5] = 0.0
    path, opts = f"{tmp}/weighted.npz", dict(FIT, epochs=3, validation_fraction=0.1)
    MLP(**ARCH).fit(X, Y, batch_size=8, distributed=True, sample_weight=w, handle_interrupt=False,
                    callbacks=[StopAt(1, 3), gpunn.ModelCheckpoint(path)], **opts)
    ckpt, h, out["weighted_same_on_ranks"] = resumed_on_ranks(path, X, Y, sample_weight=w)
    plain, ones = MLP(**ARCH), MLP(**ARCH)
    plain.fit(X, Y, batch_size=8, distributed=True, **opts)
    ones.fit(X, Y, batch_size=8, distributed=True, sample_weight=numpy.ones(203), **opts)
    out["equal_weights_bit_for_bit"] = plain.params.tobytes() == ones.params.tobytes()
    if comm.rank == 0:
        ref = MLP(**ARCH)
        h_ref = ref.fit(X, Y, batch_size=16, sample_weight=w, **opts)
        out["weighted_params_rel"] = rel(ckpt.model.params, ref.params)
        out["weighted_rel"] = max(rel(numpy.array(h[k]), numpy.array(h_ref[k])) for k in ("loss", "val_loss", "val_r2"))
        out["weighted_epochs"] = h["epoch"]


def shards(out, tmp):
    """A .npy file trained by 2 ranks, each reading only its shard (rows counted where the file is
    read), against one process reading both shards; a mid-epoch stop resumed on 2 ranks and in one process."""
    import shutil

    from gpunn.data.sources import _NpyFile
    from gpunn.distributed.shard import ShardedSource

    comm = world()
    read = {"rows": 0, "bytes": 0}
    plain_read = _NpyFile.read

    def counted(self, start, buffer):
        read["rows"] += buffer.shape[0] if self.columns == 5 else 0  # the features file
        read["bytes"] += buffer.shape[0] * self.row_bytes
        return plain_read(self, start, buffer)

    _NpyFile.read = counted
    if comm.rank == 0:  # 1000 rows in chunks of 64: the shards' boundary (row 500) cuts chunk 7
        X, Y = datasets.make("teacher", 1000, 5, 2, device="cpu", dtype="float64", seed=2)
        numpy.save(f"{tmp}/x.npy", X)
        numpy.save(f"{tmp}/y.npy", Y)
    comm.barrier()

    def source():
        return gpunn.data.npy(f"{tmp}/x.npy", f"{tmp}/y.npy", chunk_rows=64, window=3, seed=4, standardize=True)

    model = MLP(**ARCH)
    history = model.fit(source(), epochs=3, batch_size=8, distributed=True, **FIT)
    out["rows_read"] = comm.allgather(read["rows"])
    out["bytes_read"] = comm.allgather(read["bytes"])
    # validation on held-out chunks: each rank reads and evaluates its share of them, the sums are reduced
    read["rows"] = 0
    validated = MLP(**ARCH).fit(source(), epochs=2, batch_size=8, distributed=True, validation_fraction=0.25, **FIT)
    out["validation_run_rows_read"] = comm.allgather(read["rows"])
    held = source().hold_out(0.25)  # statistics pass + 2 epochs of training rows, 2 validations of held-out rows
    out["validation_run_rows"] = 3 * held.rows + 2 * held.validation_rows
    # the one-process layout passed to a distributed fit: its 2P shards shared out, 2 per rank
    read["rows"] = 0
    MLP(**ARCH).fit(ShardedSource(source(), 2 * comm.size), epochs=1, batch_size=16, distributed=True, **FIT)
    out["wrapped_rows_read"] = comm.allgather(read["rows"])  # statistics pass + 1 epoch of its 2 shards
    path = f"{tmp}/shards.npz"  # Ctrl-C on rank 0 alone, part-way through epoch 2
    stopped = MLP(**ARCH).fit(source(), epochs=3, batch_size=8, distributed=True,
                              callbacks=[StopAt(1, 20, rank=0), gpunn.ModelCheckpoint(path)], **FIT)
    out["stopped"] = stopped.interrupted
    if comm.rank == 0:
        shutil.copy(path, f"{tmp}/stopped.npz")
    comm.barrier()
    resumed = gpunn.load_checkpoint(path, device="cpu")
    resumed_history = resumed.resume(source(), distributed=True, verbose=False)
    if comm.rank == 0:
        _NpyFile.read = plain_read
        ref = MLP(**ARCH)
        ref_history = ref.fit(ShardedSource(source(), comm.size), epochs=3, batch_size=8 * comm.size, **FIT)
        out["standardizer_rel"] = rel(model.standardizer.x_mean, ref.standardizer.x_mean)
        out["params_rel"] = rel(model.params, ref.params)
        out["loss_rel"] = rel(numpy.array(history["loss"]), numpy.array(ref_history["loss"]))
        out["resumed_params_rel"] = rel(resumed.model.params, ref.params)
        # the stopped epoch's loss: the part before the stop (in the checkpoint) counted once, not once a rank
        out["resumed_loss_rel"] = rel(numpy.array(resumed_history["loss"]), numpy.array(ref_history["loss"]))
        # the rows its throughput counts in the stopped epoch (samples_per_s = rows / time_s): what the ranks trained
        out["resumed_rows_timed"] = resumed_history["samples_per_s"][1] * resumed_history["time_s"][1]
        ref_validated = MLP(**ARCH).fit(ShardedSource(source(), comm.size), epochs=2, batch_size=8 * comm.size,
                                        validation_fraction=0.25, **FIT)
        out["val_rel"] = max(rel(numpy.array(validated[k]), numpy.array(ref_validated[k]))
                             for k in ("val_loss", "val_mae", "val_r2"))
        alone = gpunn.load_checkpoint(f"{tmp}/stopped.npz", device="cpu")
        out["stopped_at"] = [alone.state.epoch, alone.state.batch]
        alone.resume(source(), verbose=False, checkpoint=False)
        out["one_process_resume_params_rel"] = rel(alone.model.params, ref.params)


def ensemble_shards(out, tmp):
    """A gpunn.Ensemble on a .npy source, each rank reading its shard: against one process reading both
    shards at twice the batch, against each member's own MLP.fit(source, distributed=True), a validation
    source, and a mid-epoch checkpoint (a member stopped early) resumed on 2 ranks."""
    import shutil

    from gpunn.data.sources import _NpyFile
    from gpunn.distributed.shard import ShardedSource

    comm = world()
    read = {"rows": 0}
    plain_read = _NpyFile.read

    def counted(self, start, buffer):
        read["rows"] += buffer.shape[0] if self.columns == 5 else 0  # the features file
        return plain_read(self, start, buffer)

    _NpyFile.read = counted
    if comm.rank == 0:  # 600 training rows in chunks of 64 (a held-out quarter of them), 150 validation rows
        X, Y = datasets.make("teacher", 750, 5, 2, device="cpu", dtype="float64", seed=2)
        for name, rows in (("", slice(0, 600)), ("_val", slice(600, None))):
            numpy.save(f"{tmp}/x{name}.npy", X[rows])
            numpy.save(f"{tmp}/y{name}.npy", Y[rows])
    comm.barrier()

    def source(name="", **held):
        return gpunn.data.npy(f"{tmp}/x{name}.npy", f"{tmp}/y{name}.npy", chunk_rows=64, window=3, seed=4,
                              standardize=not name, **held)

    arch = dict(layer_sizes=[5, 16, 2], activation="tanh", dtype="float64", device="cpu", seed=3)
    lrs, stop = [1e-2, 0.3, 1e-3], dict(patience=1, min_delta=0.05)  # member 0 stops after epoch 2
    fit = dict(epochs=4, lr=lrs, validation_fraction=0.25, verbose=False)
    ens = gpunn.Ensemble(n_models=3, **arch)
    h = ens.fit(source(), batch_size=8, distributed=True, callbacks=[gpunn.EarlyStopping(**stop)], **fit)
    out["rows_read"] = comm.allgather(read["rows"])
    held = source().hold_out(0.25)
    out["rows"] = 5 * held.rows + 4 * held.validation_rows  # statistics pass, 4 epochs, 4 validations
    out["same_on_ranks"] = len(set(comm.allgather(ens.params.tobytes()))) == 1
    # each member: the data-parallel MLP.fit on the same source with that member's settings
    members_rel = []
    for k, lr in enumerate(lrs):
        mlp = MLP(**{**arch, "seed": 3 + k})
        mlp.fit(source(), epochs=4, batch_size=8, lr=lr, optimizer="adam", validation_fraction=0.25, verbose=False,
                distributed=True, callbacks=[gpunn.EarlyStopping(**stop)])
        members_rel.append(rel(ens[k].params, mlp.params))
    out["members_rel"] = members_rel
    # a validation source: its chunks split over the ranks, the K sums reduced
    hv = gpunn.Ensemble(n_models=3, **arch).fit(source(), batch_size=8, distributed=True, epochs=1, lr=lrs,
                                                validation_data=source("_val"), verbose=False)
    path = f"{tmp}/ens.npz"  # Ctrl-C on rank 0 alone, part-way through epoch 3 (member 0 frozen)
    stopped = gpunn.Ensemble(n_models=3, **arch).fit(
        source(), batch_size=8, distributed=True, callbacks=[gpunn.EarlyStopping(**stop), StopAt(2, 10, rank=0),
                                                             gpunn.ModelCheckpoint(path)], **fit)
    out["stopped"] = stopped.interrupted
    if comm.rank == 0:
        shutil.copy(path, f"{tmp}/stopped.npz")
    resumed, h_resumed, out["resumed_same_on_ranks"] = resumed_on_ranks(path, source(validation_fraction=0.25))
    if comm.rank == 0:
        _NpyFile.read = plain_read
        ref = gpunn.Ensemble(n_models=3, **arch)
        h_ref = ref.fit(ShardedSource(source(), comm.size), batch_size=8 * comm.size,
                        callbacks=[gpunn.EarlyStopping(**stop)], **fit)
        out["params_rel"] = rel(ens.params, ref.params)
        out["loss_rel"] = rel(numpy.array(h["loss"]), numpy.array(h_ref["loss"]))
        out["val_rel"] = max(rel(numpy.array(h[k]), numpy.array(h_ref[k])) for k in ("val_loss", "val_mae", "val_r2"))
        out["stopped_epoch"] = [h.stopped_epoch, h_ref.stopped_epoch]
        out["standardizer_rel"] = rel(ens.standardizer.x_mean, ref.standardizer.x_mean)
        hv_ref = gpunn.Ensemble(n_models=3, **arch).fit(ShardedSource(source(), comm.size), batch_size=16, epochs=1,
                                                        lr=lrs, validation_data=source("_val"), verbose=False)
        out["validation_source_rel"] = max(rel(numpy.array(hv[k]), numpy.array(hv_ref[k]))
                                           for k in ("val_loss", "val_mae", "val_r2"))
        out["resumed_params_rel"] = rel(resumed.model.params, ref.params)
        out["resumed_val_rel"] = rel(numpy.array(h_resumed["val_loss"]), numpy.array(h_ref["val_loss"]))
        alone = gpunn.load_checkpoint(f"{tmp}/stopped.npz", device="cpu")
        out["stopped_at"] = [alone.state.epoch, alone.state.batch]
        alone.resume(source(validation_fraction=0.25), verbose=False, checkpoint=False)  # the 2-rank run, one process
        out["one_process_resume_params_rel"] = rel(alone.model.params, ref.params)


def mismatch(out, tmp):
    comm = world()
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    try:
        MLP(**ARCH).fit(X, Y, epochs=1, batch_size=8, distributed=True, **dict(FIT, lr=1e-2 * (1 + comm.rank)))
    except ConfigMismatch as exc:
        out["error"] = str(exc)
    Xv, Yv = datasets.make("teacher", 16, 5, 2, device="cpu", dtype="float64", seed=2 + comm.rank)
    try:  # the same training data, each rank its own validation rows
        MLP(**ARCH).fit(X, Y, epochs=1, batch_size=8, distributed=True, validation_data=(Xv, Yv), **FIT)
    except ConfigMismatch as exc:
        out["validation_error"] = str(exc)
    try:  # models of other sizes: compared before rank 0's parameters are broadcast (MPI refused that broadcast)
        MLP(**dict(ARCH, layer_sizes=[5, 16 + comm.rank, 2])).fit(X, Y, epochs=1, batch_size=8, distributed=True,
                                                                  **FIT)
    except ConfigMismatch as exc:
        out["shape_error"] = str(exc)
    X, Y = numpy.round(X * 8) / 8, numpy.round(Y * 8) / 8  # sums exact in any order: plain sums could not tell
    try:  # the same training rows, in another order on rank 1
        MLP(**ARCH).fit(X if comm.rank == 0 else X[::-1].copy(), Y if comm.rank == 0 else Y[::-1].copy(), epochs=1,
                        batch_size=8, distributed=True, **FIT)
    except ConfigMismatch as exc:
        out["order_error"] = str(exc)


class _SlowToFlush:
    """A stream whose flush takes 0.3 s (a rank slowed by a loaded machine as it writes out what it printed)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(text)

    def flush(self):
        import time

        time.sleep(0.3)
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def mismatch_uncaught(out, tmp):
    """The ranks given other learning rates, and nothing catches the ConfigMismatch every rank raises; rank 1 printed
    a line before (block-buffered on the launcher's pipe), and is slow to write it out."""
    if world().rank == 1:
        print("rank 1 made its data")
        sys.stdout = _SlowToFlush(sys.stdout)
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=1, batch_size=8, distributed=True, **dict(FIT, lr=1e-2 * (1 + world().rank)))


def fewer_rows_than_ranks(out, tmp):
    """One training row on 2 ranks: rank 0's piece of the first batch is empty. In memory and from a .npy source."""
    X, Y = datasets.make("teacher", 1, 5, 2, device="cpu", dtype="float64", seed=1)
    numpy.save(f"{tmp}/X.npy", X)
    numpy.save(f"{tmp}/Y.npy", Y)
    for name, data in (("arrays", (X, Y)), ("npy", (gpunn.data.npy(f"{tmp}/X.npy", f"{tmp}/Y.npy"),))):
        try:
            MLP(**ARCH).fit(*data, epochs=1, batch_size=8, distributed=True, **FIT)
        except ValueError as exc:
            out[name] = str(exc)


def broadcast(out, tmp):
    """Rank 1 starts from other parameters (and, resuming, other optimizer moments) than rank 0's, which the
    configuration check does not compare: rank 0's are broadcast before the first step, so both ranks train
    the one-process run from rank 0's state."""
    from mpi4py import MPI

    comm = world()
    # gpunn's messages on a communicator of its own (the same ranks), never mixed with the caller's COMM_WORLD
    out["own_communicator"] = MPI.Comm.Compare(comm.comm, MPI.COMM_WORLD) == MPI.CONGRUENT
    out["timeout"] = comm.timeout  # GPUNN_DIST_TIMEOUT, set by the test
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    model = MLP(**ARCH)
    if comm.rank == 1:
        model.params[:] = 0.5
    seen = []

    class Logs(gpunn.Callback):  # every callback of every rank sees rank 0's logs, timings included
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(json.dumps(logs, sort_keys=True))

    history = model.fit(X, Y, epochs=2, batch_size=8, distributed=True, callbacks=[Logs()], **FIT)
    out["same_on_ranks"] = len(set(comm.allgather(model.params.tobytes()))) == 1
    # rank 0's epoch logs on every rank, the per-rank timings too
    out["histories_same_on_ranks"] = len(set(comm.allgather(json.dumps(dict(history), sort_keys=True)))) == 1
    out["callbacks_saw_the_same_logs"] = len(set(comm.allgather(tuple(seen)))) == 1
    path = f"{tmp}/run.npz"
    MLP(**ARCH).fit(X, Y, epochs=1, batch_size=8, distributed=True, callbacks=[gpunn.ModelCheckpoint(path)], **FIT)
    comm.barrier()
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    if comm.rank == 1:
        for name in ckpt.optimizer.state_names():
            ckpt.optimizer.state[name][:] = 1.0
    ckpt.resume(X, Y, epochs=2, distributed=True, verbose=False, checkpoint=False)
    out["resumed_same_on_ranks"] = len(set(comm.allgather(ckpt.model.params.tobytes()))) == 1
    if comm.rank == 0:
        ref = MLP(**ARCH)
        ref.fit(X, Y, epochs=2, batch_size=16, **FIT)
        out["params_rel"] = rel(model.params, ref.params)
        out["resumed_params_rel"] = rel(ckpt.model.params, ref.params)
    world(timeout=20)  # a rank that trained on while the other stopped ends the job by the watchdog

    class StopOnRankOne(gpunn.Callback):  # a callback's stop on one rank (rank 0's EarlyStopping sees the same logs)
        def on_epoch_end(self, trainer, epoch, logs):
            if comm.rank == 1 and epoch == 1:
                trainer.stop = True

    history = MLP(**ARCH).fit(X, Y, epochs=5, batch_size=8, distributed=True, callbacks=[StopOnRankOne()], **FIT)
    out["epochs_after_a_stop_on_rank_1"] = comm.allgather(history["epoch"])


def reference(out, tmp):
    """Rank 1's piece of the first batch has targets about 1000 times rank 0's (unshuffled: rank 0 trains rows 0-7
    of each 16, rank 1 rows 8-15), and so does the rest of the data: the epoch's loss is over 10^4 times rank 0's
    first loss and near rank 1's. Each rank's message (or how many epochs it trained), gathered on rank 0."""
    comm = world(timeout=20)  # a rank that trained on while the other stopped ends the job by the watchdog
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    Y[8:] += 1000.0
    try:
        history = MLP(**ARCH).fit(X, Y, epochs=2, batch_size=8, shuffle=False, distributed=True, **FIT)
        said = f"trained {len(history['epoch'])} epochs"
    except gpunn.TrainingDiverged as exc:
        said = str(exc)
    out["said"] = comm.allgather(said)


def fail(out, tmp):
    comm = world(timeout=20)

    class Boom(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if comm.rank == 1 and epoch == 1:
                print("rank 1 ends epoch 1")  # (not flushed: stdout is a pipe, block-buffered)
                raise RuntimeError("rank 1 fails on purpose")

    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=100, batch_size=8, distributed=True, callbacks=[Boom()], **FIT)


def fail_before_the_fit(out, tmp):
    """Rank 1 raises before it started MPI (loading its data, say); rank 0 goes on to its fit (MPI_Init)."""
    from gpunn.distributed import launched_rank

    if launched_rank() == 1:
        print("rank 1 looks for its data")
        raise FileNotFoundError(f"{tmp}/X.npy: rank 1 finds no data, on purpose")
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=100, batch_size=8, distributed=True, **FIT)


def leave_before_starting_mpi(out, tmp):
    """Rank 1 leaves with an exit status before it started MPI: no excepthook sees it, and mpiexec does not notice a
    process that never began MPI; rank 0 goes on to its fit (MPI_Init, where it waited forever)."""
    from gpunn.distributed import launched_rank

    if launched_rank() == 1:
        sys.exit("rank 1 leaves on purpose, before starting MPI")
    world(timeout=2)


def leave_after_starting_mpi(out, tmp):
    """Both ranks start MPI (a script's own ``from mpi4py import MPI``); rank 1 then leaves with an exit status, which
    no excepthook sees, and rank 0 goes on to its fit (gpunn's communicator: MPI_Comm_dup on COMM_WORLD)."""
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == 1:
        sys.exit("rank 1 leaves on purpose")
    print("rank 0 starts its fit")
    world(timeout=2)


def nan_in_a_shard(out, tmp):
    comm = world(timeout=20)
    if comm.rank == 0:  # a NaN in rank 1's shard (the second half of the rows), read by it alone
        X = numpy.column_stack([numpy.linspace(0, 1, 40), numpy.ones(40)])
        X[30, 1] = numpy.nan
        numpy.save(f"{tmp}/X.npy", X)
        numpy.save(f"{tmp}/Y.npy", X[:, :1])
    comm.barrier()
    source = gpunn.data.npy(f"{tmp}/X.npy", f"{tmp}/Y.npy", chunk_rows=5, standardize=True)  # statistics: a pass
    MLP([2, 4, 1], device="cpu", seed=0).fit(source, epochs=1, batch_size=4, distributed=True, verbose=False)


def refused_apart(out, tmp):
    """Every rank refuses its data-parallel settings at the same point, each with its own words (the ranks given
    other arguments: distributed='rank0' and 'rank1'), and nothing catches them."""
    comm = world()
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=1, batch_size=8, distributed=f"rank{comm.rank}", **FIT)


def resume_refused_on_one_rank(out, tmp, caught=True):
    """Rank 0's run resumed on both ranks, rank 1's files holding other values than the run's (of its shape): each
    rank catches the error it raises, and rank 0 gathers them (type, words, marked as raised on every rank); or, not
    ``caught``, nothing catches them (gpunn's uncaught-exception hook ends the job)."""
    from gpunn.distributed.comm import is_raised_on_every_rank

    comm = world(timeout=20)  # a rank left waiting in the check of the settings ends the job by the watchdog
    X = numpy.column_stack([numpy.linspace(0, 1, 16), numpy.ones(16)])

    def source(name):
        return gpunn.data.npy(f"{tmp}/X_{name}.npy", f"{tmp}/Y_{name}.npy", chunk_rows=4)

    if comm.rank == 0:
        for name, values in (("run", X), ("other", X[::-1].copy())):
            numpy.save(f"{tmp}/X_{name}.npy", values)
            numpy.save(f"{tmp}/Y_{name}.npy", values[:, :1])
        MLP([2, 4, 1], device="cpu", seed=0).fit(source("run"), epochs=1, batch_size=8, verbose=False,
                                                 callbacks=[gpunn.ModelCheckpoint(f"{tmp}/run.npz")],
                                                 distributed=False)
    comm.barrier()
    said = None
    try:
        gpunn.load_checkpoint(f"{tmp}/run.npz", device="cpu").resume(
            source("other" if comm.rank == 1 else "run"), epochs=2, verbose=False, checkpoint=False, distributed=True)
    except ValueError as exc:
        if not caught:
            raise
        said = [type(exc).__name__, str(exc), is_raised_on_every_rank(exc)]
    out["said"] = comm.allgather(said)


def resume_refused_on_one_rank_uncaught(out, tmp):
    resume_refused_on_one_rank(out, tmp, caught=False)


def die(out, tmp):
    comm = world(timeout=20)

    class Killed(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if comm.rank == 1 and epoch == 1:
                import os
                import signal
                os.kill(os.getpid(), signal.SIGKILL)  # no Python cleanup, no MPI_Abort: the launcher must notice

    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=100, batch_size=8, distributed=True, callbacks=[Killed()], **FIT)


def hang(out, tmp):
    comm = world()

    class Stall(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0:  # a short timeout from here: the first epoch (Numba's first calls) takes longer on a
                world(timeout=2)  # loaded machine, and one rank's can end 2 s after the other's
            if comm.rank == 1 and epoch == 1:
                import time
                time.sleep(600)  # a rank stuck outside any collective
            if comm.rank == 0 and epoch == 1:
                print("rank 0 ends epoch 1")

    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=100, batch_size=8, distributed=True, callbacks=[Stall()], **FIT)


def interrupt(out, tmp):
    """Trains until Ctrl-C, checkpointing to tmp/run.npz; says when the first epoch is done."""
    import pathlib

    class Started(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0 and world().rank == 0:
                pathlib.Path(f"{tmp}/started").touch()

    X, Y = datasets.make("teacher", 2000, 5, 2, device="cpu", dtype="float64", seed=1)
    history = MLP(**ARCH).fit(X, Y, epochs=100000, batch_size=8, distributed=True,
                              callbacks=[Started(), gpunn.ModelCheckpoint(f"{tmp}/run.npz")], **FIT)
    out["interrupted"] = history.interrupted
    out["epochs"] = len(history["epoch"])


def terminate(out, tmp):
    """Trains until SIGTERM (no handler of the script's own), rank 0 slow to write its last checkpoint (as a
    big model's is); the line after the fit is never reached."""
    import pathlib

    class Started(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0 and world().rank == 0:
                pathlib.Path(f"{tmp}/started").touch()

    X, Y = datasets.make("teacher", 2000, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=100000, batch_size=8, distributed=True,
                    callbacks=[Started(), SlowEnd(), gpunn.ModelCheckpoint(f"{tmp}/run.npz")], **FIT)
    pathlib.Path(f"{tmp}/after{world().rank}").touch()


def load_after_fit(out, tmp):
    """README's script: every rank loads rank 0's checkpoint as soon as its fit returns; rank 0 slow to write its
    last one, and the file's last epoch-end write (every=2) an epoch before the end."""
    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    MLP(**ARCH).fit(X, Y, epochs=3, batch_size=8, distributed=True,
                    callbacks=[SlowEnd(), gpunn.ModelCheckpoint(f"{tmp}/run.npz", every=2)], **FIT)
    out["epochs"] = world().allgather(gpunn.load_checkpoint(f"{tmp}/run.npz", device="cpu").epoch)


def threads(out, tmp):
    """Launched without thread settings: the BLAS and member-group threads of a rank during a fit."""
    from gpunn.bench.system import numpy_blas_pool
    from gpunn.distributed.threads import cores_per_rank

    def blas():  # the BLAS NumPy calls: gpunn's products (SciPy's own copy, loaded later by Numba, idles)
        return numpy_blas_pool()["num_threads"]

    seen = {}

    class Probe(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            ops = getattr(trainer.model, "member_ops", None)
            seen["groups" if ops is not None else "blas"] = ops.threads if ops is not None else blas()

    X, Y = datasets.make("teacher", 64, 5, 2, device="cpu", dtype="float64", seed=1)
    out["before"] = blas()
    MLP(**ARCH).fit(X, Y, epochs=1, batch_size=8, distributed=True, callbacks=[Probe()], **FIT)
    out["after"] = blas()
    ens = gpunn.Ensemble([5, 8, 2], 4, device="cpu", dtype="float64", seed=0)
    out["groups_before"] = ens.member_ops.threads
    ens.fit(X, Y, epochs=1, batch_size=8, distributed=True, callbacks=[Probe()], verbose=False)
    from gpunn.distributed.threads import _placement

    places = world().allgather(_placement())
    out.update(during=seen["blas"], groups_during=seen["groups"], groups_after=ens.member_ops.threads,
               share=cores_per_rank(_placement(), places), local_size=world().local_size)


if __name__ == "__main__":
    out = {}
    globals()[sys.argv[1]](out, sys.argv[2])
    if world().rank == 0:
        with open(f"{sys.argv[2]}/out.json", "w") as fh:
            json.dump(out, fh)
