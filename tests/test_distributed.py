"""Data-parallel training (gpunn.distributed): the sharding and the configuration check in process,
and the whole contract under ``mpiexec -n 2`` (tests/mpi_script.py) where mpi4py and mpiexec exist."""
import ast
import contextlib
import io
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy
import pytest
import waiting
from mpi_launch import THREAD_ENV, ended, ending_with_this_process, mpiexec, needs_mpi, own_session

from gpunn.backend import CPU
from gpunn.data import DataError
from gpunn.distributed.digest import describe_differences, digest
from gpunn.distributed.shard import ShardedArraySource
from gpunn.distributed.threads import cores_per_rank
from gpunn.ops.cpu import usable_cores
from gpunn.distributed.training import per_rank_batch_on_resume
from gpunn.rng import DeviceRNG

SCRIPT = pathlib.Path(__file__).with_name("mpi_script.py")


@pytest.mark.parametrize("rows,ranks,batch", [(203, 2, 8), (17, 2, 8), (50, 3, 4), (7, 3, 1), (40, 1, 8)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_the_ranks_pieces_make_up_the_single_process_batches_in_order(rows, ranks, batch, shuffle):
    X = numpy.arange(rows, dtype="float64")[:, None]
    sources = [ShardedArraySource(CPU, X, X, rank=r, size=ranks, seed=5, shuffle=shuffle) for r in range(ranks)]
    order = DeviceRNG(CPU, 5, "shuffle", 2).permutation(rows) if shuffle else numpy.arange(rows)
    per_rank = [list(s.batches(2, batch)) for s in sources]
    B = ranks * batch
    assert {len(b) for b in per_rank} == {-(-rows // B)}  # every rank the same steps, the one process's
    for i in range(len(per_rank[0])):
        joined = numpy.concatenate([per_rank[r][i][0][:, 0] for r in range(ranks)])
        assert joined.tolist() == order[i * B:(i + 1) * B].tolist()
    assert sum(s.rows_for(batch) for s in sources) == rows
    # resuming at batch 3 gives the same later batches
    later = list(sources[-1].batches(2, batch, first_batch=3))
    assert [b[0].tolist() for b in later] == [b[0].tolist() for b in per_rank[-1][3:]]


def test_a_rank_outside_the_ranks_is_refused():
    X = numpy.zeros((4, 1))
    for rank in (-1, 2):  # (a rank of -1 took the last rank's rows, as a list's index does)
        with pytest.raises(ValueError, match=rf"rank {rank} is not in \[0, 2\)"):
            ShardedArraySource(CPU, X, X, rank=rank, size=2, seed=0)


@pytest.mark.parametrize("rows,ranks,batch", [(203, 2, 8), (17, 2, 8), (50, 3, 4)])
def test_any_source_split_by_pieces_gives_the_single_process_batches(rows, ranks, batch):
    from gpunn.distributed.shard import PieceOfEachBatch
    from gpunn.training.sources import ArraySource

    X = numpy.arange(rows, dtype="float64")[:, None]
    single = [b[0][:, 0].tolist() for b in ArraySource(X, X, CPU, seed=5).batches(1, ranks * batch)]
    pieces = [PieceOfEachBatch(ArraySource(X, X, CPU, seed=5), rank=r, size=ranks, batch_size=batch)
              for r in range(ranks)]
    per_rank = [[b[0][:, 0].tolist() for b in p.batches(1, batch)] for p in pieces]
    assert [sum((per_rank[r][i] for r in range(ranks)), []) for i in range(len(single))] == single
    assert sum(p.rows for p in pieces) == rows
    assert {len(r) for r in per_rank} == {len(single)}  # every rank the same steps, the one process's


@pytest.mark.parametrize("rows,ranks,batch", [(203, 2, 8), (17, 2, 8), (50, 3, 4)])
def test_a_bootstrapped_ensembles_ranks_gather_only_their_piece_of_each_members_batch(rows, ranks, batch):
    # every rank gathered each member's whole global batch (K x P x b rows a step) and sliced its piece, a
    # strided view that the GPU's fused ensemble kernels do not take (they fall back); now K x b, contiguous
    from gpunn.distributed.shard import PieceOfEachBatch, piece
    from gpunn.training.ensemble import BootstrapSource

    X = numpy.arange(2 * rows, dtype="float64").reshape(rows, 2)
    single = list(BootstrapSource(X, X[:, :1], CPU, 3, seed=5).batches(1, ranks * batch, first_batch=1))
    sources = [PieceOfEachBatch(BootstrapSource(X, X[:, :1], CPU, 3, seed=5), rank=r, size=ranks, batch_size=batch)
               for r in range(ranks)]
    per_rank = [list(s.batches(1, batch, first_batch=1)) for s in sources]  # from batch 1, as a resume draws them
    for i, (Xb, Yb) in enumerate(single):
        M = Xb.shape[1]
        for r in range(ranks):
            lo, hi = piece(M, r, ranks)
            for got, whole in zip(per_rank[r][i], (Xb, Yb)):
                assert got.flags.c_contiguous
                numpy.testing.assert_array_equal(got, whole[:, lo:hi])
    for s in sources:  # the gradient hook's global batch rows, as each piece is trained
        seen = [s.global_batch_rows for _ in s.batches(1, batch)]
        assert seen == [min(ranks * batch, rows - k * ranks * batch) for k in range(len(seen))]
    assert sum(s.rows for s in sources) == rows


def test_a_shard_reads_its_parts_of_a_sources_runs_as_runs():
    # a synthetic source cuts each generated chunk of 65,536 rows into pieces read front to back (a run): a shard keeps
    # its pieces of each run together, the part of a piece its boundary cuts included
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    source = gpunn.data.synthetic("teacher", rows=300_000, n_features=3, seed=1, device="cpu", chunk_rows=16384)
    assert list(map(int, source.run_lengths)) == [4, 4, 4, 4, 2]
    first, second = ShardedSource(source, 2).views()
    assert [k for k, _, _ in second.parts][:3] == [9, 10, 11] and second.parts[0][1] > 0  # from inside chunk 9
    assert [list(map(int, view.run_lengths)) for view in (first, second)] == [[4, 4, 2], [3, 4, 2]]


def test_a_shards_parts_are_its_row_ranges_of_the_training_chunks_and_never_empty():
    # rows [floor(s N / S), floor((s + 1) N / S)) of the training chunks laid end to end; a boundary that falls on a
    # chunk's end gives no empty part of the next chunk (a shard of no rows has no parts, and no view)
    from gpunn.distributed.shard import shard_parts

    sizes, chunks = numpy.array([4, 4, 5, 3]), numpy.array([0, 1, 3])  # chunk 2 held out: N = 11
    assert [shard_parts(sizes, chunks, s, 2) for s in range(2)] == [[(0, 0, 4), (1, 0, 1)], [(1, 1, 4), (3, 0, 3)]]
    assert [shard_parts(sizes, chunks[:2], s, 2) for s in range(2)] == [[(0, 0, 4)], [(1, 0, 4)]]
    assert [shard_parts(numpy.array([1]), numpy.array([0]), s, 3) for s in range(3)] == [[], [], [(0, 0, 1)]]


def test_a_source_of_member_stacks_that_cannot_cut_is_cut_by_rows_on_its_second_last_axis():
    # (K, rows, columns) batches of a source without cut=: each rank keeps its rows of every member's batch
    import types

    from gpunn.distributed.shard import PieceOfEachBatch
    from gpunn.training.ensemble import BootstrapSource

    X = numpy.arange(34, dtype="float64").reshape(17, 2)
    bootstrap = BootstrapSource(X, X[:, :1], CPU, 3, seed=5)
    uncut = types.SimpleNamespace(rows=bootstrap.rows, n_features=2, n_outputs=1, resumable=True,
                                  batches=lambda epoch, B, first: bootstrap.batches(epoch, B, first))
    cutting = [list(PieceOfEachBatch(BootstrapSource(X, X[:, :1], CPU, 3, seed=5), rank=r, size=2,
                                     batch_size=4).batches(1, 4)) for r in range(2)]
    for r in range(2):
        pieces = PieceOfEachBatch(uncut, rank=r, size=2, batch_size=4)
        got = list(pieces.batches(1, 4))
        assert len(got) == len(cutting[r]) == 3
        for (Xb, Yb), (Xc, Yc) in zip(got, cutting[r]):
            assert Xb.shape[0] == 3
            numpy.testing.assert_array_equal(Xb, Xc)
            numpy.testing.assert_array_equal(Yb, Yc)
        assert pieces.global_batch_rows == 1  # the last global batch: 17 - 2 x 8 rows


@pytest.mark.parametrize("shards,batch", [(2, 8), (3, 5)])
@pytest.mark.parametrize("kind", ["npy", "synthetic", "parquet", "csv"])
def test_rank_shards_of_a_chunked_source_make_up_the_one_process_batches(tmp_path, kind, shards, batch, device,
                                                                         to_host):
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    rows = 1000  # chunks of 64 rows (npy, parquet), of about 1 KB (csv): the shards' boundaries cut chunks
    X = numpy.arange(rows, dtype="float64")[:, None] * [1.0, -1.0]
    if kind == "npy":
        numpy.save(tmp_path / "x.npy", X)
        numpy.save(tmp_path / "y.npy", X[:, :1])

        def source():
            return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=64, window=3, seed=4,
                                  device=device, dtype="float64")
    elif kind in ("parquet", "csv"):  # parquet: one row group of 1000 rows, read as a run of 16 pieces
        pa = pytest.importorskip("pyarrow")
        table = pa.table({"a": X[:, 0], "b": X[:, 1], "y": X[:, 0]})
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp_path / "t.parquet", row_group_size=rows)

            def source():
                return gpunn.data.parquet(tmp_path / "t.parquet", "y", chunk_rows=64, window=3, seed=4,
                                          device=device, dtype="float64")
        else:
            import pyarrow.csv as pc

            pc.write_csv(table, tmp_path / "t.csv")

            def source():
                return gpunn.data.csv(tmp_path / "t.csv", "y", block_size=1024, window=3, seed=4, device=device,
                                      dtype="float64")
    else:
        rows = 65536 + 999  # two chunks of the generated task: the boundaries cut the first; a window of two
        # chunks holds a shard's pieces of both, each cut at its own place in the generated window

        def source():
            return gpunn.data.synthetic("teacher", rows=rows, n_features=2, n_outputs=1, seed=4, window=2,
                                        device=device, dtype="float64")
        batch *= 100
    one = [to_host(b[0][:, 0]) for b in ShardedSource(source(), shards).batches(2, shards * batch)]
    ranks = [ShardedSource(source(), shards, [r]) for r in range(shards)]
    per_rank = [[to_host(b[0][:, 0]) for b in r.batches(2, batch)] for r in ranks]
    B = shards * batch
    assert [len(b) for b in one] == [B] * (rows // B) + ([rows % B] if rows % B else [])  # as at batch B
    for i, joined in enumerate(one):  # global batch i = the ranks' batches i, in rank order
        assert numpy.array_equal(joined, numpy.concatenate([per_rank[r][i] for r in range(shards)]))
    everything = numpy.sort(numpy.concatenate(one))
    plain = numpy.sort(numpy.concatenate([to_host(b[0][:, 0]) for b in source().batches(2, B)]))
    assert numpy.array_equal(everything, plain)  # every row once an epoch
    assert [r.rows for r in ranks] == [(s + 1) * rows // shards - s * rows // shards for s in range(shards)]
    later = [to_host(b[0][:, 0]) for b in ShardedSource(source(), shards).batches(2, B, first_batch=3)]
    assert all(numpy.array_equal(a, b) for a, b in zip(later, one[3:], strict=True))  # a resume at batch 3
    single = [to_host(b[0][:, 0]) for b in ShardedSource(source(), 1).batches(2, B)]  # one shard: the source's order
    assert all(numpy.array_equal(a, to_host(b[0][:, 0])) for a, b in zip(single, source().batches(2, B), strict=True))


@pytest.mark.gpu
@pytest.mark.parametrize("read", ["shard of a generated source", "generated source", "shard of a file"])
def test_on_the_gpu_an_epoch_read_as_training_reads_it_frees_no_window_the_training_stream_may_still_read(
        gpu, read, tmp_path):
    """The pipeline (gpunn.data.pipeline) hands each window over with a release, called once the training stream
    has enqueued its last read of the window: only after that may the window's memory (CuPy's pool, on the side
    stream) go to a later window's generation, or its device buffer take a later copy. A rank's shard of a
    generated source cuts the generated windows its boundaries split (_ShardView._sliced_windows: a fresh array
    of the parts) and releases them itself. Read as training reads (device arrays, no host synchronisation until
    the epoch has ended), a release not called or an event not waited for fails the test under tests/fakecupy
    (its stream-order check: a block the side stream's next allocation gets while the training stream may still
    read it). The shape matters: a shard's cut window left unreleased is covered by the next window's release,
    unless that window is cut too; rank 1 of 3 ranks of this source has both its cut windows first in epoch 2,
    and two more windows after them."""
    from gpunn import data
    from gpunn.distributed.shard import ShardedSource

    epoch, b = 2, 4096
    if read == "shard of a file":
        X = numpy.arange(30000, dtype="float32")[:, None]
        numpy.save(tmp_path / "x.npy", X)
        numpy.save(tmp_path / "y.npy", -X)
        source = data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=2000, window=1, seed=7, device=gpu)
        b = 1000
    else:
        source = data.synthetic("linear", rows=10 * 65536, n_features=1, seed=7, window=1, device=gpu,
                                dtype="float32")
    reader = source if read == "generated source" else ShardedSource(source, 3, [1])
    if read == "shard of a generated source":
        view = reader.views()[0]
        cut = [any(lo > 0 or hi < source.chunk_sizes[k] for k, lo, hi in (view.parts[j] for j in w))
               for w in view.plan(epoch)]
        assert cut == [True, True, False, False], "not the shape this test needs (see its docstring)"
    got = list(reader.batches(epoch, b))
    synced = [(Xb.get(), Yb.get()) for Xb, Yb in reader.batches(epoch, b)]  # each batch on the host at once
    assert len(got) == len(synced) == -(-reader.rows // b)
    for (Xb, Yb), (want_X, want_Y) in zip(got, synced):
        numpy.testing.assert_array_equal(Xb.get(), want_X)
        numpy.testing.assert_array_equal(Yb.get(), want_Y)


def test_the_shards_of_an_unshuffled_source_keep_the_file_order(tmp_path):
    """shuffle=False: each shard is read in file order, as its source is; a batch is b rows of each shard, and a
    batch that does not split into equal pieces is refused, as are shards that are not the source's."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    numpy.save(tmp_path / "x.npy", numpy.arange(1000.0)[:, None])
    numpy.save(tmp_path / "y.npy", numpy.zeros((1000, 1)))
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=64, window=3, shuffle=False,
                            device="cpu")
    ids = numpy.stack([b[0][:, 0] for b in ShardedSource(source, 2).batches(1, 100)])
    assert numpy.array_equal(ids.reshape(10, 2, 50), numpy.arange(1000.0).reshape(2, 10, 50).transpose(1, 0, 2))
    with pytest.raises(ValueError, match="batch_size 101 does not split into 2 shards of equal batches; use a "
                                         "multiple of 2"):
        next(ShardedSource(source, 2).batches(1, 101))  # (it trained 2 x 50 rows a batch)
    for owned in ([-1], [2], []):  # (shard -1 was taken, and read no rows)
        with pytest.raises(ValueError, match=rf"owned shards {re.escape(str(owned))} must be some of 0\.\.1"):
            ShardedSource(source, 2, owned)


def test_a_shard_with_no_rows_left_gives_an_empty_piece_so_every_rank_steps_together(tmp_path):
    """1001 rows in 2 shards (500, 501) at b = 500: the last global batch is shard 1's one row; rank 0's share of
    it is an empty batch (it takes the step with the others), not the end of its batches. The source is bound
    when first read (device "auto", float32), as a source fit has not bound."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    numpy.save(tmp_path / "x.npy", numpy.arange(1001.0)[:, None])
    numpy.save(tmp_path / "y.npy", numpy.zeros((1001, 1)))
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=100)
    assert [len(X) for X, _ in ShardedSource(source, 2).batches(0, 1000)] == [1000, 1]
    assert [X.shape for X, _ in ShardedSource(source, 2, [0]).batches(0, 500)] == [(500, 1), (0, 1)]
    assert source.dtype == numpy.float32


def test_each_shard_is_shuffled_from_a_seed_of_its_own(tmp_path):
    """Two shards alike (2 chunks of 1000 rows each, a window per chunk) are shuffled differently: with one
    seed for both, the rows at the same place of the two shards would always be 2000 apart."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    numpy.save(tmp_path / "x.npy", numpy.arange(4000.0)[:, None])
    numpy.save(tmp_path / "y.npy", numpy.zeros((4000, 1)))
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1000, window=1, seed=4, device="cpu")
    ids = numpy.stack([b[0][:, 0].reshape(2, 1000) for b in ShardedSource(source, 2).batches(0, 2000)])
    assert (ids[:, 0] < 2000).all() and (ids[:, 1] >= 2000).all()  # shard 0, then shard 1, in each batch
    assert not (ids[:, 1] - ids[:, 0] == 2000).all()


@pytest.mark.python312
def test_one_process_fits_a_sharded_source_whose_sizes_come_from_the_wrapped_source():
    """ShardedSource gives its wrapped source's n_features and n_outputs through __getattr__. On Python 3.12,
    whose isinstance against a Protocol looks members up statically, fit took it for an array ("X must be an
    array of numbers, got a ShardedSource"): the one-process run that a data-parallel fit equals. One shard
    reads the source's own order, so it trains the source's weights."""
    import gpunn.data
    from gpunn import MLP
    from gpunn.distributed.shard import ShardedSource

    def fitted(wrap):
        model = MLP(layer_sizes=[3, 8, 1], dtype="float64", device="cpu", seed=3)
        source = gpunn.data.synthetic("teacher", rows=3000, n_features=3, seed=1, device="cpu")
        model.fit(wrap(source), epochs=2, batch_size=256, verbose=False)
        return model.params

    numpy.testing.assert_array_equal(fitted(lambda source: ShardedSource(source, 1)), fitted(lambda source: source))
    assert numpy.isfinite(fitted(lambda source: ShardedSource(source, 2))).all()


def test_shards_read_after_chunks_were_held_out_read_only_the_training_chunks(tmp_path):
    """A sharded source's shards follow its training chunks: holding chunks out after the shards were read (fit's
    validation_fraction on a source made without one) cuts them again from the chunks left, so an epoch reads
    each training row once and no held-out row."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    X = numpy.arange(1000.0)[:, None] * [1.0, 0.5]  # column 0: the row's number
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", X[:, :1])
    sharded = ShardedSource(gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=100, seed=2,
                                           device="cpu", dtype="float64"), 2)
    assert len(numpy.concatenate([Xb[:, 0] for Xb, _ in sharded.batches(0, 100)])) == 1000
    sharded.hold_out(0.3)
    training = numpy.concatenate([numpy.arange(k * 100, (k + 1) * 100) for k in sharded.source.train_chunks])
    read = numpy.concatenate([Xb[:, 0] for Xb, _ in sharded.batches(0, 100)])
    assert len(training) == sharded.rows == 700
    numpy.testing.assert_array_equal(numpy.sort(read), training)


def test_a_nan_read_by_a_shard_is_named_by_its_row_in_the_file(tmp_path):
    """A shard whose rows start inside a chunk (1,000 rows in chunks of 300, two shards: shard 1 starts at row 500,
    in chunk 1) names a NaN by its row in the file, as the source read whole does."""
    import gpunn.data
    from gpunn.data import DataError
    from gpunn.distributed.shard import ShardedSource

    X = numpy.ones((1000, 2))
    X[550, 1] = numpy.nan
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", numpy.ones((1000, 1)))
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=300, shuffle=False, device="cpu")
    for read in (source, ShardedSource(source, 2, [1])):
        with pytest.raises(DataError, match=r"x\.npy row 550: column 1: nan is NaN; clean or impute it first$"):
            list(read.batches(0, 100))


def test_a_shard_names_the_files_first_nan_though_another_shard_holds_its_row(tmp_path):
    """Each rank reads its shard shuffled; a NaN met is named by the file's first (ChunkedSource._check_finite), the
    other shards' rows included: shard 1 (rows 500-999, from inside chunk 1) names row 350, in shard 0's part of
    chunk 1, not its own 850, so every rank names the same row."""
    import gpunn.data
    from gpunn.data import DataError
    from gpunn.distributed.shard import ShardedSource

    X = numpy.ones((1000, 2))
    X[[350, 850], 1] = numpy.nan
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", numpy.ones((1000, 1)))
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=300, device="cpu")
    for read in (source, ShardedSource(source, 2, [0]), ShardedSource(source, 2, [1])):
        with pytest.raises(DataError, match=r"x\.npy row 350: column 1: nan is NaN; clean or impute it first$"):
            list(read.batches(0, 100))


def test_a_shard_that_starts_inside_a_chunk_names_the_files_first_nan_in_that_chunks_other_rows(tmp_path):
    """Shard 1 (rows 500-999) starts inside chunk 1 (rows 300-599): a NaN it meets in its own part of that chunk (row
    550) is named by the file's first, row 350 of the same chunk, in shard 0's part, which shard 1 reads again."""
    import gpunn.data
    from gpunn.data import DataError
    from gpunn.distributed.shard import ShardedSource

    X = numpy.ones((1000, 2))
    X[[350, 550], 1] = numpy.nan
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", numpy.ones((1000, 1)))
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=300, device="cpu")
    with pytest.raises(DataError, match=r"x\.npy row 350: column 1: nan is NaN; clean or impute it first \(1 more "
                                        r"missing or not finite among the 300 rows read with it, at row 550; "):
        list(ShardedSource(source, 2, [1]).batches(0, 100))


def test_a_value_a_shard_standardizes_past_float32_is_named_by_its_row_in_the_file(tmp_path):
    """Shard 1 of 24 rows in chunks of 5 starts at row 12, inside chunk 2: its value past float32 once standardized
    (no earlier chunk is read again for it, as for a NaN) is named by its row in the file, 13, and its value."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    X = numpy.column_stack([numpy.linspace(-1, 1, 24), numpy.linspace(2, 3, 24)]).astype(numpy.float32)
    numpy.save(tmp_path / "clean.npy", X)
    numpy.save(tmp_path / "y.npy", X[:, :1])
    X[13, 1] = 3e38
    numpy.save(tmp_path / "x.npy", X)

    def source(x):
        return gpunn.data.npy(tmp_path / x, tmp_path / "y.npy", chunk_rows=5, shuffle=False, standardize=True)

    read = source("x.npy")
    read.standardizer = source("clean.npy").bind(CPU, "float32").standardizer  # statistics without the value
    read.bind(CPU, "float32")
    with pytest.raises(DataError, match=r"x\.npy row 13: column 1: 3e\+38 is 1e\+39 once standardized, infinite in "
                                        r"float32"):
        list(ShardedSource(read, 2, [1]).batches(0, 4))


def test_on_a_gpu_a_value_a_shard_standardizes_past_float32_is_refused_by_the_fit_that_reads_the_shards(tmp_path,
                                                                                                        fake_cupy):
    """On a GPU a window is standardized on the device and checked by the source's OverflowWatch, whose flag the fit
    reads with the loss: a shard reads its windows into its source's watch, so the fit refuses the value, naming
    it, rather than training on inf (the stand-in in every run)."""
    import gpunn
    from gpunn.distributed.shard import ShardedSource

    X = numpy.column_stack([numpy.linspace(-1, 1, 24), numpy.linspace(2, 3, 24)]).astype(numpy.float32)
    numpy.save(tmp_path / "clean.npy", X)
    numpy.save(tmp_path / "y.npy", X[:, :1])
    X[13, 1] = 3e38
    numpy.save(tmp_path / "x.npy", X)
    model = gpunn.MLP([2, 4, 1], device="cuda", dtype="float32", seed=0)

    def source(x):
        return gpunn.data.npy(tmp_path / x, tmp_path / "y.npy", chunk_rows=5, shuffle=False, standardize=True)

    read = source("x.npy")
    read.standardizer = source("clean.npy").bind(model.backend, "float32").standardizer  # statistics without it
    with pytest.raises(DataError, match=r"x\.npy row 13: column 1: 3e\+38 is 1e\+39 once standardized"), \
            numpy.errstate(invalid="ignore", over="ignore"):
        model.fit(ShardedSource(read, 2), epochs=1, batch_size=8, verbose=False)


def _Memory(X, Y, standardize=False):
    """A chunked source of one's own over in-memory (X, Y), in chunks of 300 rows read in order, with no file to
    read a value again from (ChunkedSource._not_finite says nothing)."""
    from gpunn.data.base import ChunkedSource, chunk_sizes

    class Memory(ChunkedSource):
        def __init__(self):
            super().__init__(shuffle=False, standardize=standardize)
            self.X, self.Y, self.n_features, self.n_outputs = X, Y, X.shape[1], Y.shape[1]
            self._ready(chunk_sizes(len(X), 300))

        def _fill(self, k, X_k, Y_k):
            start = self._row_offset(k)
            X_k[...], Y_k[...] = self.X[start:start + len(X_k)], self.Y[start:start + len(Y_k)]

        def _where(self, k):
            return f"memory chunk {k}"

    return Memory()


def test_a_nan_read_by_a_shard_of_a_source_without_a_file_is_named_by_its_chunk_and_row():
    """A chunked source of one's own (no file to read the value again: ChunkedSource._not_finite says nothing) is
    named by its own _where and row: the shard's part of chunk 1 (rows 500-599), as the source read whole names
    it, not the shard's chunk 0 and row 50 of it (or row 350, the part's row from the chunk's start)."""
    from gpunn.distributed.shard import ShardedSource

    X = numpy.ones((1000, 2))
    X[550, 1] = numpy.nan
    source = _Memory(X, numpy.ones((1000, 1)))
    source.bind(CPU, "float64")
    for read in (source, ShardedSource(source, 2, [1])):
        with pytest.raises(DataError, match=r"^memory chunk 1: 1 NaN or infinite features value\(s\), the first at row "
                                            r"550 \(features column 1\); clean or impute them before training$"):
            list(read.batches(0, 100))


def test_a_value_a_shard_of_a_source_without_a_file_standardizes_past_float32_is_named_by_its_chunk_and_row():
    """As above, for a value past float32 once standardized (statistics without it): shard 1's part of chunk 1 starts
    at row 500, and the value's row is 550 of the source, not 350 (the part's row from the chunk's start)."""
    from gpunn.distributed.shard import ShardedSource

    X = numpy.column_stack([numpy.linspace(-1, 1, 1000), numpy.linspace(2, 3, 1000)]).astype("float32")
    clean = _Memory(X.copy(), X[:, :1].copy(), standardize=True).bind(CPU, "float32")
    X[550, 1] = 3e38
    source = _Memory(X, X[:, :1].copy(), standardize=True)
    source.standardizer = clean.standardizer
    source.bind(CPU, "float32")
    with pytest.raises(DataError, match=r"^memory chunk 1: 1 features value\(s\) infinite in float32 once "
                                        r"standardized, the first at row 550 \(features column 1\)"):
        list(ShardedSource(source, 2, [1]).batches(0, 100))


def test_shards_of_float64_files_are_standardized_in_float64_like_their_source(tmp_path):
    """A float32 model on float64 data: each shard's statistics and rows are standardized before the
    cast, as the whole source's are (gpunn.data.base.ChunkedSource._wide_dtype)."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource

    rng = numpy.random.default_rng(1)
    X = numpy.column_stack([1.7e9 + rng.uniform(0, 100, 1000), rng.standard_normal(1000)])
    Y = X[:, :1] - 1.7e9
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)

    class OneProcess:  # both shards owned here: allgather returns this process's part
        @staticmethod
        def allgather(value, label=None):
            return [value]

    def source():
        return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=64, window=3, seed=4,
                              standardize=True)

    whole = source().bind("cpu", "float32")
    plain = source()
    plain.standardize = False  # bound without its own statistics pass, as a data-parallel fit binds it
    plain.bind("cpu", "float32")
    plain.standardize = True
    sharded = ShardedSource(plain, 2)
    stats = sharded.standardizer_over_shards(OneProcess)
    numpy.testing.assert_allclose(stats.x_mean, X.mean(axis=0), rtol=1e-12)
    numpy.testing.assert_allclose(stats.x_scale, X.std(axis=0), rtol=1e-9)
    assert stats.y_mean is not None
    plain.standardize = "inputs"  # the inputs only: the targets keep their units
    assert ShardedSource(plain, 2).standardizer_over_shards(OneProcess).y_mean is None
    plain.standardize = True
    plain.standardizer = whole.standardizer
    rows = numpy.concatenate([b[0] for b in sharded.batches(0, 100)])
    expected = ((X - whole.standardizer.x_mean) * (1.0 / whole.standardizer.x_scale)).astype("float32")
    numpy.testing.assert_array_equal(numpy.sort(rows[:, 0]), numpy.sort(expected[:, 0]))


def test_a_configuration_difference_names_the_setting_and_the_ranks():
    same = {"model": {"layer_sizes": [4, 8, 1]}, "optimizer": {"lr": 0.01}}
    other = {"model": {"layer_sizes": [4, 8, 1]}, "optimizer": {"lr": 0.02}}
    assert digest(same) == digest(dict(same)) != digest(other)
    text = describe_differences([same, same, other])
    assert text.strip() == "optimizer.lr: 0.01 on ranks 0, 1; 0.02 on rank 2"


class _Ranks:
    """The communicator of one rank among ranks holding ``settings`` (one dict per rank): allgather hands back every
    rank's value of the collective it stands for, and each collective is counted."""

    def __init__(self, settings):
        self.settings, self.gathered = settings, []

    def allgather(self, value):
        self.gathered.append(value)
        return [digest(s) for s in self.settings] if isinstance(value, str) else list(self.settings)


def test_the_configuration_check_gathers_the_settings_only_when_a_digest_differs_and_names_them():
    from gpunn.distributed.digest import ConfigMismatch, check_same_config

    same, other = {"optimizer": {"lr": 0.01}}, {"optimizer": {"lr": 0.02}}
    ranks = _Ranks([same, same, same])
    assert check_same_config(ranks, same) is None and ranks.gathered == [digest(same)]  # one string gathered
    ranks = _Ranks([same, other, same])  # the first and last ranks agree
    with pytest.raises(ConfigMismatch, match=r"these settings differ \(before the first step\):\n"
                                             r"  optimizer.lr: 0.01 on ranks 0, 2; 0.02 on rank 1$"):
        check_same_config(ranks, same)
    assert ranks.gathered == [digest(same), same]


def test_ranks_given_a_part_of_the_data_each_are_told_to_give_every_rank_all_of_it():
    """mpiexec -n 1 gpunn train --data X0.npy : -n 1 gpunn train --data X1.npy (files split per rank, or X[rank::2]
    in a script) listed the paths and rows that differ, with no word that every rank takes the whole data."""
    from gpunn.distributed.digest import ConfigMismatch, check_same_config

    halves = [{"data": {"x_path": f"X{rank}.npy", "rows": 5000 + rank}, "optimizer": {"lr": 0.01}} for rank in (0, 1)]
    with pytest.raises(ConfigMismatch) as refused:
        check_same_config(_Ranks(halves), halves[0])
    assert str(refused.value).startswith(
        "the ranks are not training the same run; give every rank the same data, all of it: each reads (or gathers) "
        "only its own share of the rows; these settings differ (before the first step):\n  data.rows: 5000 on rank 0")
    other_lr = [{"data": {"x_path": "X.npy"}, "optimizer": {"lr": lr}} for lr in (0.01, 0.02)]
    with pytest.raises(ConfigMismatch, match=r"^the ranks are not training the same run; these settings differ"):
        check_same_config(_Ranks(other_lr), other_lr[0])  # no word of the data where it is the same
    seeded = [{"data": {"kind": "arrays", "seed": rank, "shuffle": True}, "fit": {"seed": rank}} for rank in (0, 1)]
    with pytest.raises(ConfigMismatch, match=r"^the ranks are not training the same run; these settings differ"):
        check_same_config(_Ranks(seeded), seeded[0])  # MLP(seed=rank): the same rows, ordered by another seed


@pytest.mark.parametrize("key, values", [("shuffle", (True, False)), ("window", (4, 8)),
                                         ("validation_fraction", (0.1, 0.2)), ("standardize", (False, "inputs"))])
def test_ranks_reading_the_same_rows_another_way_are_not_told_to_give_every_rank_all_of_the_data(key, values):
    """A source's settings of how its rows are read (its shuffle, window, hold-out, statistics) differ where the
    ranks' fits differ, not where each was given a part of the rows; a difference of the rows beside another
    setting's is still said."""
    from gpunn.distributed.digest import ConfigMismatch, check_same_config

    ranks = [{"data": {"kind": "npy", "x_path": "X.npy", key: value}} for value in values]
    with pytest.raises(ConfigMismatch, match=r"^the ranks are not training the same run; these settings differ"):
        check_same_config(_Ranks(ranks), ranks[0])
    halves = [{"data": {"x_path": f"X{rank}.npy"}, "optimizer": {"lr": lr}} for rank, lr in ((0, 0.01), (1, 0.02))]
    with pytest.raises(ConfigMismatch, match=r"^the ranks are not training the same run; give every rank the same "
                                             r"data, all of it"):
        check_same_config(_Ranks(halves), halves[0])


def test_ranks_whose_files_of_one_name_and_shape_hold_other_values_stop_naming_the_files_checksum(tmp_path,
                                                                                                 monkeypatch):
    """Each node's own copy of X.npy and Y.npy, of the run's shape but other values: the ranks' settings hold the
    source's config, whose sampled checksum of its files (gpunn.data.contents) differs, so the check before the
    first step names data.contents (README: Several processes, Before the first step)."""
    import gpunn
    from gpunn.distributed.digest import ConfigMismatch, check_same_config

    settings = []
    for node, value in enumerate((1.0, 2.0)):
        (tmp_path / str(node)).mkdir()
        monkeypatch.chdir(tmp_path / str(node))
        numpy.save("X.npy", numpy.full((200, 3), value))
        numpy.save("Y.npy", numpy.ones((200, 1)))
        with gpunn.data.npy("X.npy", "Y.npy") as source:
            config = source.config()
        settings.append({"data": dict(config, x_path="X.npy", y_path="Y.npy")})  # (one path on every node)
    with pytest.raises(ConfigMismatch, match=r"these settings differ \(before the first step\):\n  data.contents: "
                                             r'"[0-9a-f]{32}" on rank 0; "[0-9a-f]{32}" on rank 1$'):
        check_same_config(_Ranks(settings), settings[0])


def test_a_settings_order_is_no_difference_and_a_setting_one_rank_lacks_is_one():
    assert digest({"a": 1, "b": {"c": 2, "d": 3}}) == digest({"b": {"d": 3, "c": 2}, "a": 1})
    assert describe_differences([{"a": None}, {}]).strip() == 'a: null on rank 0; "<missing>" on rank 1'
    assert describe_differences([{}, {"a": None}]).strip() == 'a: "<missing>" on rank 0; null on rank 1'


def test_the_differing_settings_are_listed_by_name_whatever_order_each_rank_holds_them_in():
    # every rank prints the same lines in the same order (a set of the names, in each process's own hash order, did
    # not): sorted by the dotted name
    names = ["optimizer.lr", "model.seed", "fit.epochs", "data.rows", "start.batch", "backend", "fit.batch_size",
             "model.dtype", "data.seed", "start.epoch"]
    ours = {name: 0 for name in names}
    theirs = {name: 1 for name in reversed(names)}
    lines = describe_differences([ours, theirs]).splitlines()
    assert lines == [f"  {name}: 0 on rank 0; 1 on rank 1" for name in sorted(names)]


@pytest.mark.parametrize("ranks, listed", [(9, "0, 1, 2, 3, 4, 5, 6, 7"), (12, "0..10 (11)")])
def test_a_value_held_by_many_ranks_lists_up_to_8_of_them_and_counts_more(ranks, listed):
    per_rank = [{"seed": 0}] * (ranks - 1) + [{"seed": 1}]
    assert describe_differences(per_rank).strip() == f"seed: 0 on ranks {listed}; 1 on rank {ranks - 1}"


def test_gpunn_distributed_is_reachable_from_import_gpunn_and_picks_the_cpu_here(no_gpu):
    import gpunn

    assert gpunn.distributed.local_device() == "cpu"  # no CuPy (CI): the CPU, as device="auto" would
    # and so are the sources a data-parallel fit reads (gpunn.data.npy(...) after import gpunn alone raised
    # AttributeError); a fresh interpreter, as this one has imported gpunn.data already
    code = "import gpunn; print(gpunn.data.npy.__name__, gpunn.distributed.ShardedSource.__name__)"
    run = waiting.run([sys.executable, "-c", code], timeout=60,
                      env=dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent)))
    assert run.stdout == "npy ShardedSource\n", run.stderr


def test_callbacks_that_write_or_print_are_marked_for_rank_0():
    import gpunn

    from gpunn.training.callbacks import ProgressBar

    assert gpunn.ModelCheckpoint.rank_zero_only and ProgressBar.rank_zero_only
    assert not getattr(gpunn.EarlyStopping, "rank_zero_only", False)


def test_resuming_on_another_number_of_ranks_needs_an_even_split_of_the_global_batch():
    from gpunn.training.state import FitSettings

    settings = FitSettings(epochs=1, batch_size=6, train_rows=100, ranks=2)  # global batch 12
    assert per_rank_batch_on_resume("run.npz", settings, 1) == 12
    assert per_rank_batch_on_resume("run.npz", settings, 4) == 3
    with pytest.raises(ValueError, match=r"^run.npz was written by 2 ranks at a global batch of 12 rows; 5 ranks "
                                         r"cannot split it evenly, so the run would change\. Resume on a number of "
                                         r"ranks that divides 12: 1, 2, 3, 4, 6 or 12 \(1: in one process\)\.$"):
        per_rank_batch_on_resume("run.npz", settings, 5)
    # a run on 4 shards: the counts that split both (it said 'e.g. 2', and 6 was then refused for the shards)
    with pytest.raises(ValueError, match=r"Resume on a number of ranks that divides both 12 \(the global batch\) and 4 "
                                         r"\(the shards\): 1, 2 or 4 \(1: in one process\)\.$"):
        per_rank_batch_on_resume("run.npz", settings, 5, shards=4)


@pytest.fixture
def one_process(monkeypatch):
    """distributed=True in this process, as a run without MPI installed and with no launcher; the monkeypatch."""
    from gpunn.distributed import comm

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(comm, "_WORLD", {})
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_distributed_fit_started_without_a_launcher_says_it_is_the_plain_fit_and_how_to_start_ranks(one_process,
                                                                                                       capsys):
    """python script.py, where mpiexec -n 2 python script.py was meant, said "data parallel: 1 rank(s) over MPI ...;
    batch 4 per rank, 4 global", as if the run were spread over ranks."""
    import gpunn

    X, Y = gpunn.datasets.make("teacher", 16, 3, 1, device="cpu", seed=1)
    gpunn.MLP([3, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=4, verbose=True, distributed=True)
    assert capsys.readouterr().out.splitlines()[0] == ("data parallel: 1 process (no MPI), so the plain fit, batch 4 "
                                                       "(start it with mpiexec -n P to train on P ranks)")


def test_a_distributed_fit_in_one_process_on_a_gpu_without_nccl_is_the_plain_fit(one_process, fake_cupy, capsys):
    """python script.py of a GPU script fitting with distributed=True, on a machine without NCCL: README and the
    fit's line call it the plain fit, and it was refused with "CuPy cannot load NCCL: pip install ...". One process
    needs no NCCL (every sum over ranks is its own): it trains the plain fit's weights, bit for bit (the stand-in's
    kernels), and says so; two ranks still need NCCL."""
    import gpunn
    from gpunn import backend
    from gpunn.distributed import comm

    one_process.setattr(comm, "_load_nccl", lambda: None)
    X, Y = gpunn.datasets.make("teacher", 64, 3, 1, device="cpu", seed=1)
    ranks = gpunn.MLP([3, 4, 1], device="cuda", seed=0)
    ranks.fit(X, Y, epochs=2, batch_size=16, verbose=True, distributed=True)
    assert capsys.readouterr().out.splitlines()[0] == ("data parallel: 1 process (no MPI), without NCCL, so the plain "
                                                       "fit, batch 16 (start it with mpiexec -n P to train on P ranks)")
    plain = gpunn.MLP([3, 4, 1], device="cuda", seed=0)
    plain.fit(X, Y, epochs=2, batch_size=16, verbose=False)
    numpy.testing.assert_array_equal(ranks.params.get(), plain.params.get())

    class TwoRanks(comm.LocalComm):
        size, local_size = 2, 2

    one_process.setattr(comm, "check_one_gpu_per_rank", lambda control, backend: None)
    with pytest.raises(comm.DistributedError, match="^CuPy cannot load NCCL: pip install"):
        comm.NcclComm(backend.resolve("cuda"), TwoRanks())


def test_a_fit_under_a_launcher_of_several_processes_without_distributed_warns_once_on_rank_0(launched_as, tmp_path):
    """mpiexec -n 2 python script.py, its fit without distributed=True: each rank trained the whole run, writing the
    same files, with no word. Rank 0 warns once per process (fit, Ensemble.fit, resume alike), pointing at the
    user's line; the other ranks and distributed=False (on purpose) say nothing, nor does a process not launched."""
    import warnings

    import gpunn

    X, Y = gpunn.datasets.make("teacher", 16, 3, 1, device="cpu", seed=1)
    options = dict(epochs=1, batch_size=4, verbose=False)

    def said(fit, **given):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(**options, **given)
        return [(str(w.message), os.path.basename(w.filename)) for w in caught]

    mlp = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
    assert said(lambda **k: mlp.fit(X, Y, **k)) == []  # not launched
    launched_as(2, 1)
    assert said(lambda **k: mlp.fit(X, Y, **k)) == []  # rank 1
    launched_as(2, 0)
    assert said(lambda **k: mlp.fit(X, Y, **k), distributed=False) == []  # on purpose
    assert said(lambda **k: mlp.fit(X, Y, **k)) == [(
        "fit: an MPI launcher started 2 processes, and without distributed=True each trains the whole run (the same "
        "batches, every rank writing the same files); pass distributed=True to train one data-parallel run, each rank "
        "a piece of every batch, or distributed=False to train on each on purpose (said once, by rank 0)",
        "test_distributed.py")]
    assert said(lambda **k: mlp.fit(X, Y, **k)) == []  # once per process
    ensemble = gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0)
    assert said(lambda **k: ensemble.fit(X, Y, **k)) == []
    launched_as(2, 0)  # (the warning not yet said, for the next call's own)
    assert said(lambda **k: ensemble.fit(X, Y, **k))[0][0].startswith("Ensemble.fit: an MPI launcher started 2 ")
    path = tmp_path / "run.npz"
    mlp.fit(X, Y, epochs=2, batch_size=4, verbose=False, distributed=False,
            callbacks=[gpunn.ModelCheckpoint(path), gpunn.EarlyStopping("loss", patience=0, min_delta=1e9)])
    launched_as(2, 0)  # (the warning not yet said, for the next call's own)
    resumed = said(lambda **k: gpunn.load_checkpoint(path).resume(X, Y, verbose=False, epochs=3))
    assert resumed[0][0].startswith("Checkpoint.resume: an MPI launcher started 2 ") and resumed[0][1] == \
        "test_distributed.py"


def test_a_fit_under_a_launcher_of_one_process_is_not_warned_that_each_process_trains_it_all(launched_as):
    """mpiexec -n 1 python script.py: one process trains the run, as without the launcher; nothing to warn of."""
    import warnings

    import gpunn
    from gpunn.training.fit import not_data_parallel

    launched_as(1, 0)
    X, Y = gpunn.datasets.make("teacher", 16, 3, 1, device="cpu", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpunn.MLP([3, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=4, verbose=False)
    assert not_data_parallel(None, "fit") is False


def test_a_fit_under_a_launcher_variable_gpunn_cannot_read_trains_as_one_process_unwarned(launched_as):
    """The warning of each rank training the whole run reads the launcher's size and rank; one it cannot read
    (PMI_RANK='x') is a data-parallel fit's to refuse: a plain fit trains as it did before the warning was added."""
    import warnings

    import gpunn

    launched_as(2, "x")
    X, Y = gpunn.datasets.make("teacher", 16, 3, 1, device="cpu", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = gpunn.MLP([3, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=4, verbose=False)
    assert len(history["loss"]) == 1


def test_a_job_whose_launcher_sets_no_variable_gpunn_reads_is_not_refused_for_mpis_count(monkeypatch):
    """The check that the launcher's count is MPI's compares the two where the launcher says one; a launcher that
    sets none of PMI_SIZE, OMPI_COMM_WORLD_SIZE, ... leaves MPI's count alone to say the job's size."""
    from gpunn.distributed import comm

    for name in comm._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    comm._check_launcher_is_mpis(4, "MPICH Version: 5.0.2")


def test_the_refusal_of_another_mpis_mpiexec_names_mpi4pys_mpiexec_only_where_it_is_beside_python(monkeypatch,
                                                                                                   tmp_path):
    from gpunn.distributed import comm

    for name in comm._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(comm.DistributedError, match=r"Launch with the mpiexec of mpi4py's MPI, or install"):
        comm._check_launcher_is_mpis(1, "MPICH Version: 5.0.2")
    (tmp_path / "mpiexec").write_text("")
    with pytest.raises(comm.DistributedError, match=rf"Launch with the mpiexec of mpi4py's MPI "
                                                    rf"\({re.escape(str(tmp_path / 'mpiexec'))}\), or install"):
        comm._check_launcher_is_mpis(1, "MPICH Version: 5.0.2")


def _save_columns(tmp_path, X):
    """X.npy, and Y.npy of X's first column, for _fit_standardized."""
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X[:, :1])


def _fit_standardized(tmp_path, device):
    """One epoch of a data-parallel fit on ``device`` of the standardized npy source that _save_columns wrote."""
    import gpunn

    return gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0).fit(
        gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=4, standardize=True),
        epochs=1, batch_size=4, verbose=False, distributed=True)


def test_a_nan_in_the_statistics_pass_of_a_one_process_distributed_fit_is_raised_to_the_caller(one_process,
                                                                                                 tmp_path):
    """Alone there are no other ranks to end: a one-process distributed fit raises the statistics pass's DataError
    as any fit does, and aborts no job (the one process's abort is os._exit: the caller's Python would end without
    a word of it; mut20 L02)."""
    from gpunn.distributed import comm

    aborts = []
    one_process.setattr(comm, "abort_on_error", lambda c, exc: aborts.append(exc))
    X = numpy.column_stack([numpy.linspace(0, 1, 24), numpy.ones(24)]).astype(numpy.float32)
    X[20, 1] = numpy.nan
    _save_columns(tmp_path, X)
    with pytest.raises(DataError, match="row 20: column 1: nan is NaN"):
        _fit_standardized(tmp_path, "cpu")
    assert aborts == []


def test_distributed_fit_in_one_process_without_mpi_is_the_plain_fit(one_process):
    import gpunn
    from gpunn.distributed import comm

    X, Y = gpunn.datasets.make("teacher", 300, 5, 2, device="cpu", dtype="float64", seed=1)
    models = [gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0) for _ in range(2)]
    runs = [m.fit(X, Y, epochs=2, batch_size=32, verbose=False, distributed=d) for m, d in zip(models, (True, False))]
    assert comm.world().describe() == "1 process (no MPI)"
    assert numpy.array_equal(models[0].params, models[1].params)
    assert runs[0]["loss"] == runs[1]["loss"]


def test_a_distributed_fit_standardizes_a_source_by_the_ranks_statistics_and_leaves_the_source_as_made(one_process,
                                                                                                      tmp_path):
    """A data-parallel fit of a source made with standardize=True takes its statistics from the ranks' shards
    (gpunn.distributed.shard.statistics_over_ranks; in one process, the whole source's): the model gets the plain
    fit's statistics and weights, and the source still says standardize=True. A model that has statistics (a
    later fit, on other rows) keeps its own."""
    import gpunn
    from gpunn import data

    rng = numpy.random.default_rng(0)
    for name, loc in (("a", 5.0), ("b", -2.0)):
        numpy.save(tmp_path / f"x{name}.npy", rng.normal(loc, 3.0, (400, 3)))
        numpy.save(tmp_path / f"y{name}.npy", rng.normal(loc, 2.0, (400, 1)))

    def source(name="a"):
        return data.npy(tmp_path / f"x{name}.npy", tmp_path / f"y{name}.npy", chunk_rows=100, standardize=True)

    models = [gpunn.MLP([3, 4, 1], device="cpu", dtype="float64", seed=0) for _ in range(2)]
    sources = [source(), source()]
    for model, src, distributed in zip(models, sources, (True, False)):
        model.fit(src, epochs=1, batch_size=50, verbose=False, distributed=distributed)
    ranks, plain = (model.standardizer for model in models)
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        numpy.testing.assert_allclose(getattr(ranks, name), getattr(plain, name), rtol=1e-12)
    numpy.testing.assert_allclose(models[0].params, models[1].params, rtol=1e-9)
    assert sources[0].standardize is True
    models[0].fit(source("b"), epochs=1, batch_size=50, verbose=False, distributed=True)
    assert models[0].standardizer is ranks
    # a source already cut into 2 shards (as a 2-rank run's): this one process reads both for the statistics
    from gpunn.distributed.shard import ShardedSource

    sharded = gpunn.MLP([3, 4, 1], device="cpu", dtype="float64", seed=0)
    sharded.fit(ShardedSource(source(), 2), epochs=1, batch_size=50, verbose=False, distributed=True)
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        numpy.testing.assert_allclose(getattr(sharded.standardizer, name), getattr(plain, name), rtol=1e-12)


def test_the_ranks_statistics_of_a_source_cut_into_more_shards_than_ranks_are_those_of_every_row(monkeypatch):
    """A source already cut into 4 shards, fitted on 2 ranks: each rank reads its run of the shards for the
    standardization statistics (gpunn.distributed.shard.statistics_over_ranks), 0-1 and 2-3, as DataParallel gives
    it them to train on, so the gathered parts are every row's statistics once."""
    import gpunn
    from gpunn.distributed import comm
    from gpunn.distributed.shard import ShardedSource, statistics_over_ranks

    source = gpunn.data.synthetic("teacher", 1024, 3, 2, seed=1, chunk_rows=128, dtype="float64", device="cpu",
                                  standardize=True)
    source.standardize = False  # bound without its own statistics pass, as a data-parallel fit binds it
    source.bind("cpu", "float64")
    source.standardize = True
    parts = []

    class Rank:  # rank ``rank`` of 2; rank 1's gather gets rank 0's part as gathered before it
        size = 2

        def __init__(self, rank):
            self.rank = rank

        def allgather(self, value, label=None):
            parts.append(value)
            return [parts[0], value]

    for rank in (0, 1):
        monkeypatch.setattr(comm, "world", lambda rank=rank: Rank(rank))
        gathered = statistics_over_ranks(ShardedSource(source, 4))

    class OneProcess:  # every shard read here
        @staticmethod
        def allgather(value, label=None):
            return [value]

    whole = ShardedSource(source, 4).standardizer_over_shards(OneProcess)
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        numpy.testing.assert_allclose(getattr(gathered, name), getattr(whole, name), rtol=1e-12)


def test_early_stopping_in_one_process_without_mpi_stops_as_the_plain_fit(one_process):
    # the ranks' early-stopping agreement is this process's own stop here
    import gpunn

    X, Y = gpunn.datasets.make("teacher", 300, 5, 2, device="cpu", dtype="float64", seed=1)
    runs = [gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0).fit(
        X, Y, epochs=6, batch_size=32, verbose=False, validation_fraction=0.2, distributed=d,
        callbacks=[gpunn.EarlyStopping(patience=1, min_delta=1e9)]) for d in (True, False)]
    assert runs[0]["epoch"] == runs[1]["epoch"] == [1, 2]


def test_the_ranks_compare_the_model_optimizer_schedule_data_and_where_the_run_starts(one_process, tmp_path):
    """What each rank hands the configuration check (gpunn.distributed.digest): a setting left out would let ranks
    that differ in it train apart, each with its own model, unnoticed."""
    import gpunn
    from gpunn.distributed import training
    from gpunn.distributed.digest import flatten
    from gpunn.training.sources import fingerprint

    seen = []
    one_process.setattr(training, "check_same_config", lambda comm, settings: seen.append(flatten(settings)))
    X, Y = gpunn.datasets.make("teacher", 300, 5, 2, device="cpu", dtype="float64", seed=1)

    class StopAfterBatch3(gpunn.Callback):
        def on_batch_end(self, trainer, batch):
            if batch == 3:
                trainer.interrupt()

    path = str(tmp_path / "run.npz")
    gpunn.MLP([5, 8, 2], activation="tanh", dtype="float64", device="cpu", seed=4).fit(
        X[50:], Y[50:], epochs=1, batch_size=32, lr=0.01, verbose=False, distributed=True,
        validation_data=(X[:50], Y[:50]), callbacks=[StopAfterBatch3(), gpunn.ModelCheckpoint(path)])
    first = seen[0]
    assert {k: first[k] for k in ("backend", "model.layer_sizes", "model.activations", "model.dtype", "model.bias",
                                  "model.seed", "optimizer.name", "optimizer.lr", "fit.batch_size", "fit.epochs",
                                  "fit.schedule.name", "start.epoch", "start.batch", "start.steps")} == {
        "backend": "cpu", "model.layer_sizes": [5, 8, 2], "model.activations": ["tanh", "identity"],
        "model.dtype": "float64", "model.bias": True, "model.seed": 4, "optimizer.name": "adam",
        "optimizer.lr": 0.01, "fit.batch_size": 32, "fit.epochs": 1, "fit.schedule.name": "constant",
        "start.epoch": 0, "start.batch": 0, "start.steps": 0}
    assert first["data.fingerprint"] == fingerprint(numpy, X[50:], Y[50:])
    assert first["data.validation_fingerprint"] == fingerprint(numpy, X[:50], Y[:50])
    gpunn.load_checkpoint(path, device="cpu").resume(X[50:], Y[50:], epochs=2, validation_data=(X[:50], Y[:50]),
                                                     verbose=False, distributed=True, checkpoint=False)
    assert {k: v for k, v in seen[-1].items() if k.startswith("start.")} == {"start.epoch": 0, "start.batch": 4,
                                                                           "start.steps": 4}
    gpunn.Ensemble([5, 8, 2], 2, dtype="float64", device="cpu", seed=[0, 1]).fit(
        X, Y, epochs=1, batch_size=32, verbose=False, distributed=True)
    assert (seen[-1]["model.n_models"], seen[-1]["model.seeds"]) == (2, [0, 1])


def test_validation_split_over_ranks_reads_every_row_of_its_piece_in_chunks():
    # in chunks of 7 rows (65,536 by default: a validation set that fits in one chunk hid a lost row per chunk)
    import gpunn
    from gpunn.distributed.comm import LocalComm
    from gpunn.distributed.training import _ShardedValidation
    from gpunn.metrics import RegressionEvaluator

    X, Y = gpunn.datasets.make("teacher", 50, 5, 2, device="cpu", dtype="float64", seed=1)
    model = gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0)
    evaluator = RegressionEvaluator(model, X, Y, chunk_rows=7)
    split = _ShardedValidation(evaluator, LocalComm()).evaluate(model)
    assert split == pytest.approx(evaluator.evaluate(model), rel=1e-12)


@pytest.mark.parametrize("shards", [0, 2])
def test_a_run_on_a_source_resumes_in_one_distributed_process_on_the_shards_its_checkpoint_says(one_process, tmp_path,
                                                                                               shards):
    # 0: a one-process run that read the source whole; 2: a data-parallel run's two rank shards (here one rank
    # read both). Resumed with distributed=True on one rank: the batches of the resume without it.
    import gpunn
    from gpunn.distributed import ShardedSource

    def source():
        return gpunn.data.synthetic("teacher", 1024, 5, 2, seed=1, chunk_rows=128, dtype="float64", device="cpu")

    path = str(tmp_path / "run.npz")
    gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0).fit(
        ShardedSource(source(), 2) if shards else source(), epochs=1, batch_size=16, verbose=False,
        distributed=bool(shards), callbacks=[gpunn.ModelCheckpoint(path)])
    assert gpunn.load_checkpoint(path, device="cpu").training["source"].get("shards", 0) == shards
    alone = gpunn.load_checkpoint(path, device="cpu")
    alone.resume(source(), epochs=2, verbose=False, checkpoint=False)
    for data in (source(), ShardedSource(source(), 4)):  # the checkpoint's shards, not the source's
        resumed = gpunn.load_checkpoint(path, device="cpu")
        resumed.resume(data, epochs=2, verbose=False, checkpoint=False, distributed=True)
        assert numpy.array_equal(resumed.model.params, alone.model.params)


class _RankOfTwo:
    """What DataParallel asks of its communicator before training, as rank ``rank`` of 2 (no MPI)."""

    engine, size, local_size = "stub", 2, 2

    def __init__(self, rank=1):
        self.rank = self.local_rank = rank

    def describe(self):
        return "2 stub ranks"

    def allgather(self, mine, label=None):  # the other rank, running the same code, gives the same
        return [mine] * self.size


def test_a_data_parallel_batch_is_capped_at_one_global_batch_of_every_row_and_the_data_shared_by_rows(monkeypatch,
                                                                                                     capsys):
    import types

    import gpunn
    from gpunn.distributed import training
    from gpunn.training.sources import ArraySource

    ranks = {"rank": 1}
    monkeypatch.setattr(training, "world", lambda backend, timeout: _RankOfTwo(ranks["rank"]))
    X, Y = gpunn.datasets.make("teacher", 17, 5, 2, device="cpu", dtype="float64", seed=1)
    model = gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0)
    assert [training.DataParallel(model, X, Y, batch_size=b, verbose=False).batch_size
            for b in (None, 100, 4)] == [9, 9, 4]  # 17 rows on 2 ranks: 9 a rank holds every row in one global batch
    with pytest.raises(ValueError, match="needs a source whose batches are a pure function of"):
        training.DataParallel(model, source=gpunn.data.iterable([(X, Y)]), batch_size=4, verbose=False)
    own = types.SimpleNamespace(rows=17, n_features=5, n_outputs=2, batches=lambda *a: iter([(X, Y)]))  # (no word)
    with pytest.raises(ValueError, match="needs a source whose batches are a pure function of"):
        training.DataParallel(model, source=own, batch_size=4, verbose=False)
    ranks["rank"] = 0  # rank 0 says how it runs
    resumed = training.DataParallel(model, source=ArraySource(X, Y, model.backend, seed=7), batch_size=4, verbose=True)
    assert type(resumed.source) is ShardedArraySource  # a resume's arrays shared by rows as fit's, not whole batches
    assert capsys.readouterr().out == "data parallel: 2 stub ranks; batch 4 per rank, 8 global\n"


def test_a_validation_source_and_held_out_chunks_are_split_over_the_ranks_by_chunks(monkeypatch):
    import gpunn
    from gpunn.distributed import training
    from gpunn.metrics import SourceEvaluator

    monkeypatch.setattr(training, "world", lambda backend, timeout: _RankOfTwo())  # rank 1 of 2
    model = gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0)
    X, Y = gpunn.datasets.make("teacher", 40, 5, 2, device="cpu", dtype="float64", seed=1)
    dp = training.DataParallel(model, X, Y, batch_size=4, verbose=False)

    def source(**options):
        made = gpunn.data.synthetic("teacher", 1024, 5, 2, seed=2, chunk_rows=128, **options)
        made.bind(model.backend, model.dtype)
        return made

    validation = source()  # validation_data=: its 8 chunks, rank 1 the second half
    assert dp.validation(SourceEvaluator(validation, windows=validation.ordered_windows)).chunks == [4, 5, 6, 7]
    held = source(validation_fraction=0.5)  # a source's held-out chunks: rank 1 the second half of them
    assert dp.validation(SourceEvaluator(held)).chunks == list(held.validation_chunks)[2:]


def held_out_value_past_float32_scored_by_the_ranks_validation(monkeypatch, tmp_path, device):
    """What a data-parallel fit's validation of held-out chunks (split over the ranks by chunks, each rank scoring
    its own: here the one rank of a LocalComm) gives for a float32 .npy pair standardized on the device, 3e38 in a
    held-out chunk (about 1e39 under the training chunks' spread)."""
    import gpunn
    from gpunn.distributed import training
    from gpunn.distributed.comm import LocalComm
    from gpunn.metrics import SourceEvaluator

    monkeypatch.setattr(training, "world", lambda backend, timeout: LocalComm())
    X = numpy.column_stack([numpy.linspace(-1, 1, 24), numpy.linspace(2, 3, 24)]).astype(numpy.float32)
    X[7, 1] = 3e38  # chunk 1 of 4 rows
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X[:, :1] - numpy.linspace(2, 3, 24, dtype=numpy.float32)[:, None])

    def source(seed):
        return gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=4, shuffle=False,
                              validation_fraction=0.2, seed=seed, standardize=True)

    model = gpunn.MLP([2, 4, 1], device=device, dtype="float32", seed=0)
    held = source(next(s for s in range(100) if 1 in source(s).validation_chunks)).bind(model.backend, model.dtype)
    validation = training.DataParallel(model, source=held, batch_size=4, verbose=False).validation(SourceEvaluator(held))
    assert type(validation) is training._ShardedSourceValidation
    with numpy.errstate(invalid="ignore"):  # the stand-in's forward pass over inf, as fit's loop has it
        return validation.evaluate(model)


PAST_FLOAT32_HELD_OUT = r"X\.npy row 7: column 1: 3e\+38 is \S+ once standardized, infinite in float32 "


def test_a_held_out_value_standardized_past_float32_is_refused_by_the_ranks_validation(monkeypatch, tmp_path,
                                                                                        device):
    """The ranks' validation of held-out chunks reads the source's check of the windows it standardized with its
    sums: without it, on a GPU, the value became inf and the metrics NaN without a word (the CPU refuses the
    window as it is read)."""
    with pytest.raises(DataError, match=PAST_FLOAT32_HELD_OUT):
        held_out_value_past_float32_scored_by_the_ranks_validation(monkeypatch, tmp_path, device)


def test_on_a_gpu_the_ranks_validation_reads_the_check_with_its_sums(monkeypatch, tmp_path, fake_cupy):
    """The test above on tests/fakecupy in every run (the CPU's window refusal would pass without the check)."""
    with pytest.raises(DataError, match=PAST_FLOAT32_HELD_OUT):
        held_out_value_past_float32_scored_by_the_ranks_validation(monkeypatch, tmp_path, "cuda")


def test_on_gpus_a_nan_in_one_ranks_shard_read_for_the_statistics_ends_the_job_naming_it(tmp_path, fake_cupy,
                                                                                          monkeypatch, capsys):
    """A source standardized data parallel: each rank reads its own shard for the statistics, before the fit's loop.
    A NaN in rank 1's shard was refused there, outside the loop's failure handling: rank 1 left the fit with its
    error, and rank 0 waited in the statistics' gather until GPUNN_DIST_TIMEOUT (300 s) aborted the job saying
    "another rank has stopped". Now rank 1 ends the job at once with its error, as it would in the loop. Two ranks
    on the stand-in's two GPUs (tests/thread_ranks.py); on the CPU under mpiexec: the nan_in_a_shard mode above."""
    from thread_ranks import run_ranks

    X = numpy.column_stack([numpy.linspace(0, 1, 24), numpy.ones(24)]).astype(numpy.float32)
    X[20, 1] = numpy.nan  # rank 1's shard: rows 12-23
    _save_columns(tmp_path, X)
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: _fit_standardized(tmp_path, f"cuda:{rank}"))
    # rank 0, which read its shard, waits for rank 1's abort (which ends it), and aborts nothing of its own
    assert aborted == [(1, 1)] and type(outcomes[1][1]) is DataError, (aborted, outcomes)
    said = capsys.readouterr().err
    assert said.startswith("gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\nTraceback "), said
    assert said.rstrip().endswith(f"DataError: {tmp_path / 'X.npy'} row 20: column 1: nan is NaN; clean or impute it "
                                  "first"), said


def test_on_gpus_an_interrupt_one_rank_meets_in_the_statistics_pass_ends_the_job_with_status_2(tmp_path, fake_cupy,
                                                                                                monkeypatch):
    """A KeyboardInterrupt one rank meets while it reads its shard for the statistics (Ctrl-C on its terminal) ends
    the job as one in the fit's loop does, with status 2: it is no Exception, and caught as one it left the others
    waiting in the statistics' gather until GPUNN_DIST_TIMEOUT (mut20 L01). Two ranks on the stand-in's GPUs."""
    from gpunn.distributed import shard
    from thread_ranks import run_ranks

    reads = shard.ShardedSource.owned_moments

    def interrupted_on_rank_1(self):
        if list(self.owned) == [1]:  # rank 1's shard
            raise KeyboardInterrupt
        return reads(self)

    monkeypatch.setattr(shard.ShardedSource, "owned_moments", interrupted_on_rank_1)
    X = numpy.column_stack([numpy.linspace(0, 1, 24), numpy.ones(24)]).astype(numpy.float32)
    _save_columns(tmp_path, X)
    outcomes, aborted = run_ranks(monkeypatch, 2, lambda rank: _fit_standardized(tmp_path, f"cuda:{rank}"))
    assert aborted == [(1, 2)] and type(outcomes[1][1]) is KeyboardInterrupt, (aborted, outcomes)


@pytest.mark.parametrize("where", ["both shards", "merged spread", "every row"])
def test_on_gpus_an_error_every_rank_meets_in_the_statistics_pass_is_raised_on_each_and_ends_no_job(
        tmp_path, fake_cupy, monkeypatch, where):
    """An error every rank meets in the statistics pass is raised on every rank as a one-process fit raises it: a
    script can catch it, and no rank waits for another, so nothing aborts the job. Each rank raised it before
    d99e428; since then any error there aborted the job. The ranks agree on who failed in the statistics' own gather
    (comm.agreeing_on_failure). Both shards: a NaN in each, each rank naming the file's first (rank 1's own was
    row 20 before the refusal named the file's first: ChunkedSource._check_finite). Merged spread: each shard's
    values are alike, rank 0's 1e200 and rank 1's -1e200, and their merged spread overflows float64 (the same
    error from the same gathered bits). Every row: a source of 3 shards, which 2 ranks cannot share, read whole
    by each (the ranks agree on failure in a gather of flags)."""
    from gpunn.distributed import comm
    from gpunn.distributed.shard import ShardedSource
    from thread_ranks import run_ranks

    X = numpy.column_stack([numpy.linspace(0, 1, 24), numpy.ones(24)])
    if where == "merged spread":
        X[:, 1] = numpy.repeat([1e200, -1e200], 12)  # rows 0-11: rank 0's shard, 12-23: rank 1's
    else:
        X[[5, 20], 1] = numpy.nan
    _save_columns(tmp_path, X)

    def fit(rank):
        import gpunn

        source = gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=4, standardize=True)
        try:
            gpunn.MLP([2, 4, 1], device=f"cuda:{rank}", seed=0).fit(
                ShardedSource(source, 3) if where == "every row" else source, epochs=1, batch_size=4, verbose=False,
                distributed=True)
        except DataError as caught:  # as a script catches it
            return str(caught), comm.is_raised_on_every_rank(caught)

    outcomes, aborted = run_ranks(monkeypatch, 2, fit)
    assert aborted == [] and [exc for _, exc in outcomes] == [None, None], (aborted, outcomes)
    said = [value for value, _ in outcomes]
    assert all(marked for _, marked in said), said  # gpunn train says an error every rank raised once (gpunn.cli)
    expected = {"both shards": ["row 5: column 1: nan is NaN"] * 2,
                "merged spread": ["features column 1 cannot be standardized: its spread overflows float64"] * 2,
                "every row": ["row 5: column 1: nan is NaN"] * 2}[where]
    assert all(part in text for (text, _), part in zip(said, expected)), said


@pytest.mark.parametrize("who", ["every rank", "one rank"])
def test_a_source_the_ranks_cannot_share_out_is_refused_alike_on_every_rank_without_an_abort(tmp_path, fake_cupy,
                                                                                             monkeypatch, who):
    """DataParallel's own refusals (here 3 shards, which 2 ranks cannot share out) come before any collective of the
    fit: every rank raised its error unmarked, so gpunn train said it once per rank and aborted the job; and a rank
    that refused alone (another source on it) left the other waiting in the fit's first collective until the
    watchdog. The ranks now agree on who refused in one gather of flags: where every rank refuses, each raises its
    error marked as raised on every rank (said once, no abort); where one does, it ends the job as before. Two thread
    ranks on the CPU (tests/thread_ranks.py)."""
    import gpunn
    from gpunn.distributed import comm
    from gpunn.distributed.shard import ShardedSource
    from thread_ranks import run_ranks

    monkeypatch.setattr(comm, "_REPORT", [])  # (a launched command's way of saying a rank's failure: not here)
    _save_columns(tmp_path, numpy.column_stack([numpy.linspace(0, 1, 24), numpy.ones(24)]))

    def fit(rank):
        source = gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), chunk_rows=4)
        gpunn.MLP([2, 4, 1], device="cpu", seed=0).fit(
            ShardedSource(source, 3) if who == "every rank" or rank == 1 else source, epochs=1, batch_size=4,
            verbose=False, distributed=True)

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=10.0)
    said = "the source is cut into 3 shards (ShardedSource(source, 3)), which 2 ranks cannot share out evenly"
    if who == "every rank":
        assert aborted == [], aborted
        for _, exc in outcomes:
            assert type(exc) is ValueError and said in str(exc) and comm.is_raised_on_every_rank(exc), outcomes
    else:
        assert aborted == [(1, 1)], (aborted, outcomes)
        assert said in str(outcomes[1][1]) and not comm.is_raised_on_every_rank(outcomes[1][1]), outcomes


@pytest.mark.parametrize("who", ["one rank", "every rank", "one rank interrupted"])
def test_a_resume_that_one_rank_refuses_ends_every_ranks_resume_at_once_naming_that_rank_and_why(tmp_path, fake_cupy,
                                                                                                  monkeypatch, who):
    """A data-parallel resume that one rank refuses before the ranks' first collective (here rank 1's files hold other
    values than the run's: their sampled checksum differs, gpunn.data.contents): that rank raised its refusal, and
    the other waited for it in the check of the settings until GPUNN_DIST_TIMEOUT (its first collective). The
    refusing rank now tells the others in that check, the agreement on who failed that gpunn train's ranks take
    (comm.agreeing_on_failure), and every rank raises at once: that rank its own refusal, the others a
    ConfigMismatch naming it and its words (said by that rank alone: gpunn_said_by); nothing aborts. Where every
    rank refuses, each raises its own, marked as raised on every rank. Where rank 1 is interrupted in its checks (a
    Ctrl-C on it alone), the other raises a KeyboardInterrupt saying so, where it raised "rank 1 of ranks 0-1 refused
    to resume the run: KeyboardInterrupt", a ValueError that a script caught as a refusal. Two thread ranks on the
    stand-in's GPUs (tests/thread_ranks.py), whose 10 s barrier only guards against a regression's wait."""
    import gpunn
    from gpunn.distributed import ConfigMismatch, comm
    from thread_ranks import run_ranks

    monkeypatch.setattr(comm, "_REPORT", [])  # (a launched command's way of saying a rank's failure: not here)
    X = numpy.column_stack([numpy.linspace(0, 1, 16), numpy.ones(16)])
    for name, values in (("run", X), ("other", X[::-1].copy())):  # the same shape, other values
        numpy.save(tmp_path / f"X_{name}.npy", values)
        numpy.save(tmp_path / f"Y_{name}.npy", values[:, :1])

    def source(name):
        return gpunn.data.npy(str(tmp_path / f"X_{name}.npy"), str(tmp_path / f"Y_{name}.npy"), chunk_rows=4)

    path = tmp_path / "run.npz"
    gpunn.MLP([2, 4, 1], device="cuda:0", seed=0).fit(source("run"), epochs=1, batch_size=8, verbose=False,
                                                      callbacks=[gpunn.ModelCheckpoint(path)])

    def interrupted_on_rank_1(ckpt):
        if comm.world().rank == 1:
            raise KeyboardInterrupt

    if who == "one rank interrupted":
        monkeypatch.setattr(gpunn.checkpoint.resume, "check_resume_precision", interrupted_on_rank_1)

    def resume(rank):
        refuses = who == "every rank" or (who == "one rank" and rank == 1)
        gpunn.load_checkpoint(path, device=f"cuda:{rank}").resume(source("other" if refuses else "run"), epochs=2,
                                                                  verbose=False, checkpoint=False, distributed=True)

    outcomes, aborted = run_ranks(monkeypatch, 2, resume, timeout=10.0)
    assert aborted == [], (aborted, outcomes)
    said = "was trained on other values: "
    errors = [exc for _, exc in outcomes]
    assert all(comm.is_raised_on_every_rank(exc) for exc in errors), outcomes
    if who == "one rank interrupted":
        assert [type(exc) for exc in errors] == [KeyboardInterrupt] * 2 and errors[0].gpunn_said_by == 1, outcomes
        assert str(errors[0]) == "rank 1 of ranks 0-1 was interrupted (KeyboardInterrupt)", outcomes
        return
    assert type(errors[1]) is ValueError and said in str(errors[1]), outcomes
    if who == "every rank":
        assert type(errors[0]) is ValueError and said in str(errors[0]), outcomes
        return
    assert type(errors[0]) is ConfigMismatch and errors[0].gpunn_said_by == 1, outcomes
    assert str(errors[0]) == f"rank 1 of ranks 0-1 refused to resume the run: ValueError: {errors[1]}", outcomes


def test_a_data_refusal_of_one_rank_is_said_once_by_that_rank(fake_cupy, monkeypatch, capsys):
    """The data refusal the ranks agree on (the hook's first_refusal: every rank raises it) was said by gpunn train
    in two lines that said the same thing in other words, the holder's own and the other's "rank 1 of ranks 0-1
    refused its data: ...". The holder now says it alone; every rank exits with status 2, and nothing aborts. Two
    thread ranks (tests/thread_ranks.py) each running the command's last step (gpunn.cli._failed)."""
    from gpunn import cli
    from gpunn.distributed import comm
    from gpunn.distributed.hook import GradientAllReduce
    from thread_ranks import run_ranks

    monkeypatch.setattr(comm, "started_world", lambda: comm.world())  # (run_ranks's world: this thread's rank)
    monkeypatch.setattr(comm, "launched_rank", lambda: comm.world().rank)
    monkeypatch.setattr(comm, "launched_size", lambda: 2)
    said = "X.npy row 19: column 1: 3e+38 is past float32 once standardized"

    def refused(rank):
        error = GradientAllReduce(comm.world()).first_refusal(DataError(said) if rank == 1 else None)
        return cli._failed(*cli._describe(error, False, "train"), ["train"], error)

    outcomes, aborted = run_ranks(monkeypatch, 2, refused)
    assert outcomes == [(2, None), (2, None)] and aborted == [], (outcomes, aborted)
    assert capsys.readouterr().err.splitlines() == [f"gpunn train [rank 1 of ranks 0-1]: error: {said}"]


def test_a_resume_interrupted_on_one_rank_is_said_by_that_rank_alone(fake_cupy, monkeypatch, capsys):
    """A Ctrl-C on rank 1 alone during a data-parallel resume's checks (comm.agreeing_on_failure's ``refused``): rank 0
    raised "rank 1 of ranks 0-1 refused to resume the run: KeyboardInterrupt", a ConfigMismatch (status 2, a refusal
    to a script). It raises a KeyboardInterrupt naming rank 1 now, and gpunn train's line of it, the same words as rank
    1's own ("interrupted (Ctrl-C)"), is said by rank 1 alone, naming it, not "[ranks 0-1]" by rank 0; status 130 on
    every rank. Two thread ranks (tests/thread_ranks.py) each running the command's last step (gpunn.cli._failed)."""
    from gpunn import cli
    from gpunn.distributed import comm, training
    from thread_ranks import run_ranks

    monkeypatch.setattr(comm, "started_world", lambda: comm.world())  # (run_ranks's world: this thread's rank)
    monkeypatch.setattr(comm, "launched_rank", lambda: comm.world().rank)
    monkeypatch.setattr(comm, "launched_size", lambda: 2)

    def interrupted(rank):
        def checks():
            if rank == 1:
                raise KeyboardInterrupt

        try:
            comm.agreeing_on_failure(comm.world(), checks, training.SETTINGS_CHECK, gather=False,
                                     refused=training.RESUMING)
        except KeyboardInterrupt as exc:
            return cli._failed(*cli._describe(exc, False, "train"), ["train"], exc)

    outcomes, aborted = run_ranks(monkeypatch, 2, interrupted)
    assert outcomes == [(130, None), (130, None)] and aborted == [], (outcomes, aborted)
    assert capsys.readouterr().err.splitlines() == [
        "gpunn train [rank 1 of ranks 0-1]: interrupted (Ctrl-C); any checkpoint is the last one completely written"]


def test_errors_every_rank_raises_in_its_own_words_are_each_said_by_their_rank(fake_cupy, monkeypatch, capsys):
    """An error every rank raises at the same point, in other words on each (here each rank's own statistics
    refusal): the ranks compare their lines and each says its own, naming its rank, as one line; every rank exits
    with its status and nothing aborts. (The MPI end-to-end case of it, a NaN in each rank's shard, became one shared
    line once every rank named the file's first NaN.) Two thread ranks (tests/thread_ranks.py), as above."""
    from gpunn import cli
    from gpunn.distributed import comm
    from thread_ranks import run_ranks

    monkeypatch.setattr(comm, "started_world", lambda: comm.world())
    monkeypatch.setattr(comm, "launched_rank", lambda: comm.world().rank)
    monkeypatch.setattr(comm, "launched_size", lambda: 2)
    said = ["X.npy column 1 cannot be standardized: its spread overflows float64",
            "Y.npy row 7: column 0: inf is infinite"]

    def refused(rank):
        error = DataError(said[rank])
        comm.raised_on_every_rank(error)
        return cli._failed(*cli._describe(error, False, "train"), ["train"], error)

    outcomes, aborted = run_ranks(monkeypatch, 2, refused)
    assert outcomes == [(2, None), (2, None)] and aborted == [], (outcomes, aborted)
    assert sorted(capsys.readouterr().err.splitlines()) == [f"gpunn train [rank {r} of ranks 0-1]: error: {said[r]}"
                                                             for r in (0, 1)]


@pytest.mark.parametrize("other", ["same GPU", "next GPU", "other node"])
def test_two_ranks_of_a_node_on_one_gpu_are_refused_naming_the_device_before_nccls_init(monkeypatch, fake_cupy, other):
    """Over the control collectives, before NCCL's init: NCCL refuses a shared GPU itself (ncclInvalidUsage,
    "Duplicate GPU detected"), but only on the ranks that share it, leaving a rank on a GPU of its own in its init.
    Here a device check passed reaches the NCCL load (stubbed as missing)."""
    from gpunn import backend
    from gpunn.distributed import comm
    from gpunn.distributed.digest import ConfigMismatch

    class Gathers(_RankOfTwo):  # rank 0; rank 1 (running the same code) tells where it trains
        def allgather(self, mine, label=None):
            if other == "same GPU":
                return [mine, mine]
            return [mine, (mine[0], mine[1] + 1) if other == "next GPU" else ("another-node", mine[1])]

    monkeypatch.setattr(comm, "_load_nccl", lambda: None)
    expected = {"same GPU": (ConfigMismatch, r"^ranks \[0, 1\] all train on cuda:0; give each rank its own GPU")}.get(
        other, (comm.DistributedError, r"^CuPy cannot load NCCL"))
    with pytest.raises(expected[0], match=expected[1]):
        comm.NcclComm(backend.resolve("cuda:0"), Gathers(0))


def test_a_rank_alone_on_its_node_takes_part_in_the_device_check_and_refuses_with_the_others(monkeypatch, fake_cupy):
    """Three ranks, two of them on node a sharing cuda:0, rank 2 alone on node b: the device check is a collective
    of every rank, so rank 2 (local_size 1) must gather too, and refuse as the others do. It skipped the check (taken
    where its node held several ranks) and went on to NCCL's init while the others waited in the check's gather."""
    from gpunn import backend
    from gpunn.distributed import comm
    from gpunn.distributed.digest import ConfigMismatch

    class AloneOnItsNode(_RankOfTwo):
        size, local_size = 3, 1

        def allgather(self, mine, label=None):
            return [("a", 0), ("a", 0), mine]

    monkeypatch.setattr(comm, "_load_nccl", lambda: None)
    with pytest.raises(ConfigMismatch, match=r"^ranks \[0, 1\] all train on cuda:0 of a; give each rank its own GPU"):
        comm.NcclComm(backend.resolve("cuda:0"), AloneOnItsNode(2))


def test_a_stop_that_a_callback_of_rank_0_alone_asks_for_stops_every_rank_after_the_same_epoch(monkeypatch, fake_cupy):
    """A rank_zero_only callback (a writer's, say) that sets trainer.stop runs on rank 0 alone: the ranks agree on
    the stop after each epoch, so every rank ends after epoch 2 (without it, rank 1 trained on alone and waited in
    its next collective). Two thread ranks on the stand-in (tests/thread_ranks.py)."""
    import gpunn
    from gpunn.training.callbacks import Callback
    from thread_ranks import run_ranks

    class StopAfterTwo(Callback):
        rank_zero_only = True

        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop = epoch >= 1  # (from 0: after the second)

    X, Y = gpunn.datasets.make("teacher", 32, 3, 1, device="cpu", dtype="float32", seed=1)

    def fit(rank):
        history = gpunn.MLP([3, 4, 1], device=f"cuda:{rank}", seed=0).fit(
            X, Y, epochs=5, batch_size=4, verbose=False, distributed=True, callbacks=[StopAfterTwo()])
        return len(history["loss"])

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=10.0)
    assert outcomes == [(2, None), (2, None)] and aborted == [], (outcomes, aborted)


def test_a_value_one_ranks_shard_standardizes_past_float32_is_raised_on_every_rank_and_ends_no_job(tmp_path,
                                                                                                   monkeypatch,
                                                                                                   fake_cupy):
    """On GPUs the value is refused at the epoch's loss read, which the reduction gave every rank as NaN: the ranks
    agree on the refusing rank's words (the hook's first_refusal) and every rank raises them, the DataError marked
    as every rank's, so that no rank ends the job (tests/thread_ranks.py's two ranks on the stand-in)."""
    import gpunn
    from gpunn.distributed.comm import is_raised_on_every_rank
    from thread_ranks import run_ranks

    X = numpy.column_stack([numpy.linspace(-1, 1, 24), numpy.linspace(2, 3, 24)]).astype(numpy.float32)
    numpy.save(tmp_path / "clean.npy", X)
    numpy.save(tmp_path / "y.npy", X[:, :1])
    X[13, 1] = 3e38  # in rank 1's shard (rows 12-23)
    numpy.save(tmp_path / "x.npy", X)

    def fit(rank):
        model = gpunn.MLP([2, 4, 1], device=f"cuda:{rank}", dtype="float32", seed=0)
        clean, read = (gpunn.data.npy(tmp_path / x, tmp_path / "y.npy", chunk_rows=5, shuffle=False,
                                      standardize=True) for x in ("clean.npy", "x.npy"))
        read.standardizer = clean.bind(model.backend, "float32").standardizer  # statistics without the value
        with numpy.errstate(invalid="ignore", over="ignore"):
            return model.fit(read, epochs=1, batch_size=4, verbose=False, distributed=True)

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=10.0)
    errors = [exc for _, exc in outcomes]
    assert aborted == [] and all(isinstance(exc, DataError) and is_raised_on_every_rank(exc) for exc in errors), \
        (outcomes, aborted)
    assert "x.npy row 13: column 1: 3e+38 is 1e+39 once standardized" in str(errors[0])


def test_the_ranks_validation_metrics_are_those_of_every_validation_row(monkeypatch, fake_cupy):
    """Each rank scores its piece of the in-memory validation rows and the error sums are added over the ranks:
    the metrics are the one process's of the same weights on every row (two thread ranks on the stand-in)."""
    import gpunn
    from thread_ranks import run_ranks

    X, Y = gpunn.datasets.make("teacher", 32, 3, 1, device="cpu", dtype="float64", seed=1)

    def fit(rank):
        model = gpunn.MLP([3, 4, 1], device=f"cuda:{rank}", dtype="float64", seed=0)
        history = model.fit(X, Y, epochs=1, batch_size=4, verbose=False, distributed=True,
                            validation_data=(X[:9], Y[:9]))
        return history, model.evaluate(X[:9], Y[:9])

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=10.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    for (history, whole), _ in outcomes:
        for name in ("mse", "mae", "r2"):
            numpy.testing.assert_allclose(history[f"val_{name}"][-1], whole[name], rtol=1e-12)


def test_ranks_given_other_validation_rows_are_refused_by_the_configuration_check(monkeypatch, fake_cupy):
    """In-memory validation rows are split over the ranks, each scoring its piece: ranks holding other rows would
    score a mixture, so their checksum joins the settings compared before the first step. Two thread ranks on the
    stand-in (tests/thread_ranks.py)."""
    import gpunn
    from gpunn.distributed.digest import ConfigMismatch
    from thread_ranks import run_ranks

    X, Y = gpunn.datasets.make("teacher", 32, 3, 1, device="cpu", dtype="float32", seed=1)

    def fit(rank):
        return gpunn.MLP([3, 4, 1], device=f"cuda:{rank}", seed=0).fit(
            X, Y, epochs=1, batch_size=4, verbose=False, distributed=True, validation_data=(X[:8] + rank, Y[:8]))

    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=10.0)
    assert [type(exc) for _, exc in outcomes] == [ConfigMismatch] * 2 and aborted == [], outcomes
    assert "data.validation_fingerprint: " in str(outcomes[0][1])


def test_three_ranks_on_two_gpus_are_refused_by_every_rank_in_one_line(monkeypatch, fake_cupy):
    """Ranks 0 and 2 on cuda:0, rank 1 on cuda:1 (three thread ranks on the stand-in, tests/thread_ranks.py): every
    rank refuses, rank 1 too, in the same words. Only the ranks that shared a GPU refused: rank 1 went on alone into
    the configuration check's gather and waited there (here until the barrier's timeout; on MPI until
    GPUNN_DIST_TIMEOUT; on a GPU NCCL's init refused first, on the ranks that share alone)."""
    import gpunn
    from gpunn.distributed.digest import ConfigMismatch
    from thread_ranks import run_ranks

    X, Y = gpunn.datasets.make("teacher", 24, 3, 1, device="cpu", dtype="float32", seed=1)
    outcomes, aborted = run_ranks(monkeypatch, 3, lambda rank: gpunn.MLP(
        [3, 4, 1], device=f"cuda:{rank % 2}", seed=0).fit(X, Y, epochs=1, batch_size=4, verbose=False,
                                                          distributed=True), timeout=10.0)
    said = ("ranks [0, 2] all train on cuda:0; give each rank its own GPU with "
            "MLP(..., device=gpunn.distributed.local_device())")
    assert [(type(exc), str(exc)) for _, exc in outcomes] == [(ConfigMismatch, said)] * 3, outcomes
    assert aborted == []  # a consistent refusal: raised, as every rank raises it, no rank ends the job


def test_the_device_check_tells_the_ranks_its_host_so_one_device_index_on_two_nodes_is_no_shared_gpu(monkeypatch):
    """Each rank gives the device check its host and device index: two ranks on two nodes, each on cuda:0, share no
    GPU (mut20 G06: without the host, every rank's cuda:0 was one GPU, and a job over two nodes was refused)."""
    import socket

    from gpunn.distributed.comm import check_one_gpu_per_rank

    given = []

    class Gathers:  # rank 0 of two; rank 1 runs on another node, on its cuda:0 too
        def allgather(self, mine, label=None):
            given.append(mine)
            return [mine, ("node-b", mine[1])]

    class OnDevice:
        device_id = 0

    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    check_one_gpu_per_rank(Gathers(), OnDevice())
    assert given == [("node-a", 0)]


def test_every_shared_gpu_is_named_and_the_node_where_the_job_spans_several():
    from gpunn.distributed.comm import check_one_gpu_per_rank
    from gpunn.distributed.digest import ConfigMismatch

    class Gathers:
        def __init__(self, devices):
            self.devices = devices

        def allgather(self, mine, label=None):
            return self.devices

    class OnDevice:
        device_id = 0

    refusals = []
    for devices in ([("a", 0), ("a", 1), ("a", 0), ("a", 1)], [("a", 0), ("b", 0), ("b", 0)]):
        with pytest.raises(ConfigMismatch) as refused:
            check_one_gpu_per_rank(Gathers(devices), OnDevice())
        refusals.append(str(refused.value).split("; give")[0])
    assert refusals == ["ranks [0, 2] all train on cuda:0; ranks [1, 3] all train on cuda:1",
                        "ranks [1, 2] all train on cuda:0 of b"]
    check_one_gpu_per_rank(Gathers([("a", 0), ("b", 0), ("a", 1)]), OnDevice())  # one GPU each: no refusal


def test_the_engine_asked_for_must_fit_the_models_device(one_process, fake_cupy):
    import gpunn

    X, Y = gpunn.datasets.make("teacher", 40, 5, 2, device="cpu", dtype="float64", seed=1)
    cpu = gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"^distributed must be True, 'mpi' or 'nccl', got 'gloo'$"):
        cpu.fit(X, Y, epochs=1, verbose=False, distributed="gloo")
    with pytest.raises(ValueError, match=r"^distributed='nccl' needs a model on a GPU"):
        cpu.fit(X, Y, epochs=1, verbose=False, distributed="nccl")
    with pytest.raises(ValueError, match=r"^distributed='mpi' needs a CPU model"):
        gpunn.MLP([5, 8, 2], device="cuda", seed=0).fit(X, Y, epochs=1, verbose=False, distributed="mpi")


def test_the_engine_is_named_in_any_letter_case(one_process, fake_cupy):
    """distributed="MPI", the engine as it spells itself, was refused as "must be True, 'mpi' or 'nccl'" (optimizer,
    activation and device names are taken in any letter case)."""
    import gpunn

    X, Y = gpunn.datasets.make("teacher", 40, 5, 2, device="cpu", dtype="float64", seed=1)
    fits = [gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0) for _ in range(2)]
    for model, engine in zip(fits, ("MPI", "mpi")):
        model.fit(X, Y, epochs=2, verbose=False, distributed=engine)
    assert fits[0].params.tolist() == fits[1].params.tolist()
    with pytest.raises(ValueError, match=r"^distributed='nccl' needs a model on a GPU"):
        fits[0].fit(X, Y, epochs=1, verbose=False, distributed="NCCL")
    with pytest.raises(ValueError, match=r"^distributed='mpi' needs a CPU model"):
        gpunn.MLP([5, 8, 2], device="cuda", seed=0).fit(X, Y, epochs=1, verbose=False, distributed="Mpi")


def test_each_rank_takes_its_run_of_the_shards_and_a_count_it_cannot_share_out_is_refused(monkeypatch):
    import gpunn
    from gpunn.distributed import training

    monkeypatch.setattr(training, "world", lambda backend, timeout: _RankOfTwo())
    model = gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0)
    source = gpunn.data.synthetic("teacher", 1024, 5, 2, seed=1, chunk_rows=128, dtype="float64", device="cpu")
    dp = training.DataParallel(model, source=source, shards=4, batch_size=8, verbose=False)
    assert (dp.source.shards, dp.source.owned) == (4, [2, 3])
    # a ShardedSource of 3 passed to a fresh fit on 2 ranks was told to "Resume on a number of ranks that divides 3"
    with pytest.raises(ValueError, match=r"^the source is cut into 3 shards \(ShardedSource\(source, 3\)\), which 2 ranks "
                                         r"cannot share out evenly\. Train on a number of ranks that divides 3: 1 or 3, or "
                                         r"pass the source itself \(a shard per rank\)\.$"):
        training.DataParallel(model, source=gpunn.distributed.ShardedSource(source, 3), batch_size=8, verbose=False)
    from gpunn.training.state import FitSettings

    written = ("run.npz", FitSettings(epochs=1, batch_size=4, train_rows=1024, ranks=6))  # 6 ranks, global batch 24
    with pytest.raises(ValueError, match=r"^this run's data were read as 3 shards, one per rank of the run that "
                                         r"started it; 2 ranks cannot share them out evenly, so the batches would "
                                         r"change\. Resume on a number of ranks that divides both 24 \(the global "
                                         r"batch\) and 3 \(the shards\): 1 or 3 \(1: in one process\)\.$"):
        training.DataParallel(model, source=source, shards=3, resuming=written, verbose=False, batch_size=None)


def test_a_data_parallel_checkpoint_records_the_training_rows_checksum_that_a_resume_compares(one_process, tmp_path):
    """The data-parallel run's arrays (gpunn.distributed.ShardedArraySource) are checksummed by the rule of a
    one-process run's (gpunn.training.sources.fingerprint), once: the ranks' configuration check compares it
    (the same rows in another order differ, tests/mpi_script.py's mismatch), and its checkpoint records it, so a
    resume on other values of the same shape is refused. It recorded none, and such a resume went on."""
    import gpunn
    from gpunn.training.sources import fingerprint

    X, Y = gpunn.datasets.make("teacher", 300, 5, 2, device="cpu", dtype="float64", seed=1)
    gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0).fit(
        X, Y, epochs=1, batch_size=32, verbose=False, distributed=True,
        callbacks=[gpunn.ModelCheckpoint(str(tmp_path / "run.npz"))])
    ckpt = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    recorded = ckpt.training["source"]
    assert recorded["kind"] == "sharded-arrays" and recorded["fingerprint"] == fingerprint(numpy, X, Y)
    with pytest.raises(ValueError, match="trained on other values"):
        ckpt.resume(X[::-1], Y[::-1], epochs=2, verbose=False)
    ckpt = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    assert ckpt.resume(X, Y, epochs=2, verbose=False, checkpoint=False)["loss"][0] > 0


@pytest.mark.parametrize("members", [None, 2])
def test_a_data_parallel_resume_on_arrays_checksums_them_once(one_process, tmp_path, members):
    """resume(X, Y, distributed=True) checksummed the training rows twice: to compare them with the checkpoint's,
    and again for the ranks' configuration check (a new ShardedArraySource). Now once, for one model and an
    ensemble, also where the checkpoint recorded no checksum to compare; and the validation rows once."""
    import gpunn
    from gpunn.distributed import shard
    from gpunn.training import sources

    X, Y = gpunn.datasets.make("teacher", 300, 5, 2, device="cpu", dtype="float64", seed=1)
    train, validation = (X[60:], Y[60:]), (X[:60], Y[:60])
    model = (gpunn.MLP([5, 8, 2], dtype="float64", device="cpu", seed=0) if members is None else
             gpunn.Ensemble([5, 8, 2], members, dtype="float64", device="cpu", seed=[0, 1]))
    path = tmp_path / "run.npz"
    model.fit(*train, epochs=1, batch_size=32, verbose=False, distributed=True, validation_data=validation,
              callbacks=[gpunn.ModelCheckpoint(str(path))])
    summed, checksum = [], sources.fingerprint

    def counted(xp, *arrays):
        summed.append(arrays[0].shape[0])
        return checksum(xp, *arrays)

    for module in (sources, shard):  # (gpunn.metrics imports it from sources when it checksums)
        one_process.setattr(module, "fingerprint", counted)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    ckpt.resume(*train, epochs=2, validation_data=validation, verbose=False, distributed=True)
    assert sorted(summed) == [60, 240]
    summed.clear()
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    del ckpt.training["source"]["fingerprint"]  # as a checkpoint written before it was recorded
    ckpt.resume(*train, epochs=2, validation_data=validation, verbose=False, distributed=True, checkpoint=False)
    assert sorted(summed) == [60, 240]


def test_a_ranks_own_ctrl_c_after_the_ranks_agreed_to_stop_on_anothers_is_its_first(one_process, sends_itself_sigint):
    # mpiexec forwards Ctrl-C to each rank in turn: rank 0's can stop both ranks (they agree after each
    # batch) before rank 1's own arrives. Rank 1 took that as a second Ctrl-C, raised KeyboardInterrupt
    # and so aborted the job (status 2, rank 0 killed while it wrote the checkpoint)
    import gpunn
    from gpunn.distributed import comm, training

    monkeypatch = one_process
    monkeypatch.setattr(comm.LocalComm, "any", lambda self, flag, label=None: True)  # another rank's Ctrl-C

    def fail(comm, exc):  # what a rank does with an exception in the fit, without ending this process
        raise exc

    monkeypatch.setattr(training, "abort_on_error", fail)

    class OwnCtrlC(gpunn.Callback):
        def on_train_end(self, trainer):  # this rank's Ctrl-C, after the agreed stop
            os.kill(os.getpid(), signal.SIGINT)

    X, Y = gpunn.datasets.make("teacher", 300, 5, 2, device="cpu", dtype="float64", seed=1)
    try:
        history = gpunn.MLP([5, 8, 2], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=32, verbose=False,
                                                                 distributed=True, callbacks=[OwnCtrlC()])
    except KeyboardInterrupt:
        pytest.fail("the rank's own first Ctrl-C was taken for a second one")
    assert history.interrupted and not history.get("epoch")  # stopped after the first batch, as agreed


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "9" * 400])  # (400 digits: float() makes them inf)
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(monkeypatch, capsys, value):
    from gpunn import cli
    from gpunn.distributed.comm import DistributedError, _timeout_from_env

    monkeypatch.setenv("GPUNN_DIST_TIMEOUT", value)
    with pytest.raises(DistributedError, match=f"GPUNN_DIST_TIMEOUT='{value}' is not a positive number of seconds"):
        _timeout_from_env(None)  # 0 or less aborted any collective that had to wait; NaN never aborted
    for never in ("inf", "INF", "Inf"):  # never abort: allowed, in any letter case
        monkeypatch.setenv("GPUNN_DIST_TIMEOUT", never)
        assert _timeout_from_env(None) == float("inf")

    def fails(args):  # what gpunn train under mpiexec meets: a setting or a missing extra, not a bug in gpunn
        raise DistributedError("distributed training needs mpi4py")

    monkeypatch.setattr(cli.train, "run", fails)
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err == "gpunn train: error: distributed training needs mpi4py\n"


def test_an_uncaught_exception_of_a_launched_rank_names_it_and_ends_the_job(monkeypatch, capsys):
    """A script's rank that failed before its distributed fit left the others waiting for it forever (in MPI_Init):
    an exception nothing caught now ends the job (end_launched_job, stubbed), after this rank's line and the
    traceback of the hook it replaced; only under a launcher with several processes, installed once."""
    import types

    from gpunn.distributed import comm

    ended, shown = [], []
    monkeypatch.setattr(comm, "end_launched_job", ended.append)
    monkeypatch.setattr(sys, "excepthook", lambda kind, exc, tb: shown.append(kind))
    for name in comm._SIZE_VARIABLES + comm._RANK_VARIABLES + comm._LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = sys.excepthook
    for size in ("1", "x"):  # one process; a variable gpunn cannot read (a fit refuses it, not the import)
        monkeypatch.setenv("PMI_SIZE", size)
        comm.end_job_on_uncaught_exception()
        assert sys.excepthook is before
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    comm.end_job_on_uncaught_exception()
    hook = sys.excepthook
    comm.end_job_on_uncaught_exception()
    assert sys.excepthook is hook is not before
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    hook(FileNotFoundError, FileNotFoundError("X.npy"), None)
    assert ended == [1] and shown == [FileNotFoundError]
    assert capsys.readouterr().err == "gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\n"
    for finalized in (False, True):  # MPI started, and finalized by the script itself: it has left the job
        monkeypatch.setitem(sys.modules, "mpi4py.MPI", types.SimpleNamespace(Is_finalized=lambda: finalized))
        hook(ValueError, ValueError("after the fit"), None)
        hook(KeyboardInterrupt, KeyboardInterrupt(), None)  # (before MPI started, Python's own: the test below)
    assert ended == [1, 1, 2]  # MPI_Abort's status for a Ctrl-C, as abort_on_error's
    assert capsys.readouterr().err == "gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\n" * 4
    waited = []  # an error every rank raised: rank 0 says it for all; rank 1 waits for that, then says its own
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", types.SimpleNamespace(Is_finalized=lambda: False))
    monkeypatch.setattr(comm, "_let_that_rank_say_it", lambda: waited.append(True))
    monkeypatch.setattr(comm, "_let_the_others_say_theirs", lambda: waited.append("theirs"))
    from gpunn.distributed.digest import ConfigMismatch

    hook(ConfigMismatch, ConfigMismatch("lr: 0.01 on rank 0; 0.02 on rank 1"), None)
    assert waited == [True]
    assert capsys.readouterr().err == "gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\n"
    monkeypatch.setenv("PMI_RANK", "0")  # (which gives the others their time to write out what they printed)
    hook(ConfigMismatch, ConfigMismatch("lr: 0.01 on rank 0; 0.02 on rank 1"), None)
    assert waited == [True, "theirs"] and ended == [1, 1, 2, 1, 1]
    assert capsys.readouterr().err == "gpunn [ranks 0-1]: every rank failed with this error; aborting all ranks.\n"
    # every rank failed at the same point, each with its own error (each its own shard's file missing): each says
    # its own, rank 1 not waiting for rank 0's, which said "every rank failed with this error" of its own alone
    # (and each waits for the others to say theirs before its abort ends them)
    own = comm.raised_on_every_rank(FileNotFoundError("shard-0.npy"), alike=False)
    hook(FileNotFoundError, own, None)
    assert waited == [True, "theirs", "theirs"] and ended == [1, 1, 2, 1, 1, 1]
    assert capsys.readouterr().err == "gpunn [rank 0 of ranks 0-1]: this rank failed; aborting all ranks.\n"
    monkeypatch.setenv("PMI_RANK", "1")
    hook(FileNotFoundError, own, None)
    assert waited == [True, "theirs", "theirs", "theirs"] and ended == [1, 1, 2, 1, 1, 1, 1]
    assert capsys.readouterr().err == "gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\n"
    # one rank's refusal that the others raise in other words (said_by: a resume's, a data refusal's): that rank
    # says it; this one waits, having said nothing (and says its own only where that rank went on: the stub returns)
    monkeypatch.setattr(comm, "_let_that_rank_say_it", lambda: waited.append(capsys.readouterr().err))
    monkeypatch.setenv("PMI_RANK", "0")
    again = comm.said_by(ConfigMismatch("rank 1 of ranks 0-1 refused to resume the run: ValueError: ..."), 1)
    hook(ConfigMismatch, comm.raised_on_every_rank(again, alike=False), None)
    assert waited == [True, "theirs", "theirs", "theirs", ""] and ended == [1, 1, 2, 1, 1, 1, 1, 1]
    assert capsys.readouterr().err == "gpunn [rank 0 of ranks 0-1]: this rank failed; aborting all ranks.\n"


@pytest.mark.parametrize("errors, alike", [(["shard-0.npy", "shard-1.npy"], False), (["X.npy", "X.npy"], True)],
                         ids=["each-its-own", "the-same"])
def test_a_failure_of_every_rank_is_marked_alike_only_where_every_ranks_error_says_the_same(errors, alike):
    """agreeing_on_failure gathered whether each rank failed, and marked a failure of every rank as one error every
    rank raised: a script's uncaught one was said once, by rank 0 ("every rank failed with this error"), though rank 1
    had another (its own shard's file missing), which it never said. The ranks gather their errors' words now."""
    from gpunn.distributed import comm

    class Rank0Of2:
        rank, size = 0, 2

        def allgather(self, mine, label=None):
            theirs = (None, comm._error_words(FileNotFoundError(errors[1])))
            return [mine, theirs]

    def fails():
        raise FileNotFoundError(errors[0])

    with pytest.raises(FileNotFoundError) as raised:
        comm.agreeing_on_failure(Rank0Of2(), fails, "the statistics")
    assert comm.is_raised_on_every_rank(raised.value)
    assert comm.is_said_alike_on_every_rank(raised.value) is alike
    assert comm.is_said_alike_on_every_rank(comm.raised_on_every_rank(ValueError("marked without words")))


@pytest.fixture
def rank_with_piped_output(monkeypatch):
    """This process as rank 0 of 2 with its stdout and stderr pipes, as a launcher's process manager gives each rank
    (stdout block-buffered, as Python makes it on a pipe), made by the function this gives, called in the test's body
    (pytest's capture puts its own sys.stdout and sys.stderr back after a fixture's set-up): (an MpiComm whose
    MPI_Abort records its status and the bytes of the stderr pipe not yet read, and returns, those records, the pipes'
    read ends: the launcher's, stderr's first). The process's end that follows an MPI_Abort that returned
    (comm._end_this_process, os._exit) is recorded too, as ("ended", status)."""
    import types

    from gpunn.distributed import comm, output

    err_read, err_write = os.pipe()
    out_read, out_write = os.pipe()
    stderr, stdout = os.fdopen(err_write, "w"), os.fdopen(out_write, "w")

    def launched():
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stderr", stderr)
        monkeypatch.setattr(comm, "_REPORT", [])
        for name in comm._SIZE_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PMI_SIZE", "2")
        aborted = []
        rank = comm.MpiComm.__new__(comm.MpiComm)  # (its __init__ would start MPI)
        # COMM_WORLD's abort, not gpunn's communicator's (comm.MpiComm.abort: the job's status is then the abort's)
        world = types.SimpleNamespace(Abort=lambda code: aborted.append((code, output.unread(err_write))))
        rank.MPI = types.SimpleNamespace(COMM_WORLD=world)
        rank.comm = types.SimpleNamespace(Abort=lambda code: aborted.append(("gpunn's communicator aborted", code)))
        monkeypatch.setattr(comm, "_end_this_process", lambda code: aborted.append(("ended", code)))
        rank.rank, rank.size, rank.timeout = 0, 2, 2.0
        return rank, aborted, (err_read, out_read)

    yield launched
    stdout.close()
    stderr.close()
    os.close(out_read)
    os.close(err_read)


@pytest.mark.parametrize("ending", ["watchdog", "failure", "uncaught"])
def test_a_rank_that_ends_the_job_aborts_it_after_the_launcher_has_read_its_line(monkeypatch, rank_with_piped_output,
                                                                                  ending):
    """mpiexec (MPICH's hydra) exits as soon as a rank's MPI_Abort reaches it, and its proxy, finding the rank's abort
    and its stderr both waiting, forwarded the abort first: the line saying why the job ended was lost (10 jobs in 130
    of the bounded-time test's leave_after_starting_mpi on a quiet 2-core machine). The abort now waits until the
    launcher has read the rank's stderr pipe (here where the rank pauses for it): after the watchdog's line, a
    failing rank's traceback, the uncaught-exception hook's line (end_launched_job). And the script's own print()
    output, still in sys.stdout's buffer (block-buffered on a pipe), was lost at MPI_Abort, which ends the process
    without Python's exit: it is flushed first, and read too."""
    pytest.importorskip("mpi4py")
    import types

    import mpi4py

    from gpunn.distributed import comm, output

    rank, aborted, launcher = rank_with_piped_output()
    read = {fd: b"" for fd in launcher}

    def reads():  # the launcher, where the rank pauses: each pipe that holds something
        for fd in launcher:
            if output.unread(fd):
                read[fd] += os.read(fd, 65536)

    monkeypatch.setattr(output, "_pause", reads)
    print("the script's own line, before the job ends")
    if ending == "watchdog":
        rank._timed_out("the set-up of gpunn's communicator", 2.4)
        said, code = "[rank 0 of ranks 0-1]: waited 2 s in the set-up of gpunn's communicator; another rank", 3
    elif ending == "failure":
        comm.abort_on_error(rank, RuntimeError("rank 0 fails on purpose"))
        said, code = "RuntimeError: rank 0 fails on purpose", 1
    else:
        fake = types.SimpleNamespace(COMM_WORLD=rank.MPI.COMM_WORLD)
        monkeypatch.setattr(mpi4py, "MPI", fake, raising=False)
        monkeypatch.setitem(sys.modules, "mpi4py.MPI", fake)
        print("gpunn [rank 0 of ranks 0-1]: this rank failed; aborting all ranks.", file=sys.stderr, flush=True)
        comm.end_launched_job(1)
        said, code = "this rank failed; aborting all ranks.", 1
    assert aborted == [(code, 0), ("ended", code)]  # nothing left unread in the pipe at MPI_Abort
    assert said in read[launcher[0]].decode()
    assert read[launcher[1]] == b"the script's own line, before the job ends\n"


def test_a_rank_whose_launcher_reads_nothing_still_ends_the_job(monkeypatch, rank_with_piped_output):
    from gpunn.distributed import output

    rank, aborted, _ = rank_with_piped_output()
    monkeypatch.setattr(output, "WAIT_S", 0.05)
    rank._timed_out("the gradient all-reduce", 2.4)
    assert len(aborted) == 2 and aborted[0][0] == 3 and aborted[0][1] > 0  # after WAIT_S, the line still unread


def test_only_a_pipe_holds_bytes_its_reader_has_not_read(tmp_path):
    # a file holds what was written once write() returns: nothing to wait for before the abort, wherever its offset
    # is (FIONREAD asked of a regular file gives the bytes from the offset to its end)
    from gpunn.distributed import output

    path = tmp_path / "rank.out"
    path.write_bytes(b"written and held")
    with open(path, "rb") as held:
        assert output.unread(held.fileno()) == 0
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"line\n")
        assert output.unread(write_end) == output.unread(read_end) == 5
        os.read(read_end, 5)
        assert output.unread(write_end) == 0
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_wait_for_the_launcher_lasts_while_either_stream_holds_unread_bytes(monkeypatch):
    # the rank's stdout read already, its line on stderr not yet: the abort waits for stderr too
    from gpunn.distributed import output

    pending, pauses = {1: 0, 2: 40}, []

    def pause():
        pauses.append(pending[2])
        pending[2] = max(0, pending[2] - 16)  # the launcher reads 16 bytes each time the rank looks

    monkeypatch.setattr(output, "_written_to", lambda: [1, 2])
    monkeypatch.setattr(output, "unread", pending.get)
    monkeypatch.setattr(output, "_pause", pause)
    monkeypatch.setattr(output, "flushed", lambda deadline: None)
    output.read_by_the_launcher()
    assert pauses == [40, 24, 8] and pending == {1: 0, 2: 0}


def test_before_an_abort_a_script_that_replaced_stdout_and_stderr_has_those_and_pythons_own_flushed(monkeypatch):
    from gpunn.distributed import output

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert output._streams() == [out, err, sys.__stdout__, sys.__stderr__]
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    monkeypatch.setattr(sys, "stderr", sys.__stdout__)  # (2>&1 in a script: one stream, flushed once)
    assert output._streams() == [sys.__stdout__, sys.__stderr__]


def test_the_launcher_is_waited_for_on_the_files_under_stdout_and_stderr_each_once(monkeypatch):
    import types

    from gpunn.distributed import output

    def stream(fd):
        return types.SimpleNamespace(fileno=lambda: fd)

    monkeypatch.setattr(sys, "stdout", stream(7))
    monkeypatch.setattr(sys, "stderr", stream(9))
    assert output._written_to() == [7, 9]
    monkeypatch.setattr(sys, "stderr", stream(7))
    assert output._written_to() == [7]
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # (no file under it)
    assert output._written_to() == [7]


def test_where_no_thread_can_start_the_streams_are_flushed_in_the_caller(monkeypatch):
    # at interpreter shutdown (an uncaught exception's hook ending the job) no thread starts: the print() output still
    # in Python's buffer is written out all the same, unbounded, before MPI_Abort ends the process
    import types

    from gpunn.distributed import output

    class NoThread(threading.Thread):
        def start(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")

    flushed = []
    stream = types.SimpleNamespace(flush=lambda: flushed.append("stdout"))
    monkeypatch.setattr(output, "threading", types.SimpleNamespace(Thread=NoThread))
    monkeypatch.setattr(output, "_streams", lambda: [stream])
    output.flushed(time.monotonic() + 5)
    assert flushed == ["stdout"]


def test_a_rank_whose_stdout_cannot_be_flushed_still_ends_the_job(monkeypatch, rank_with_piped_output):
    """The flush before the abort blocks where a pipe is full and its reader reads nothing (here a script's 256 KiB
    print() output still in the buffer, a pipe of 64 KiB): it is waited for WAIT_S at most, and the job ends."""
    import threading

    from gpunn.distributed import output

    rank, aborted, _ = rank_with_piped_output()
    read_end, write_end = os.pipe()
    stdout = os.fdopen(write_end, "w", buffering=1 << 20)
    stdout.write("x" * (1 << 18))
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(output, "WAIT_S", 0.2)
    try:
        rank._timed_out("the gradient all-reduce", 2.4)
    finally:  # the launcher reads at last: the blocked flush ends, and so does the stream
        def launcher():
            while os.read(read_end, 65536):
                pass

        reader = threading.Thread(target=launcher, daemon=True)
        reader.start()
        stdout.close()
        reader.join()
        os.close(read_end)
    assert [code for code, _ in aborted] == [3, "ended"]


@pytest.mark.parametrize("stderr", ["gone", "closed"])
@pytest.mark.parametrize("ending", ["watchdog", "failure", "uncaught"])
def test_a_rank_whose_stderr_is_gone_or_closed_still_ends_the_job(monkeypatch, stderr, ending):
    """The watchdog's line on a stderr that is gone (None, as under pythonw) or closed (a script's own sys.stderr)
    raised in the watchdog's thread, which died of it before its MPI_Abort: the rank then waited forever, where
    GPUNN_DIST_TIMEOUT promises the job ends. So did a failing rank's abort and the uncaught-exception hook's. The
    line is dropped now; the job ends."""
    import io

    from gpunn.distributed import comm

    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", None if stderr == "gone" else closed)
    monkeypatch.setattr(comm, "_REPORT", [])
    aborted = []

    class Rank:
        rank, size, timeout, timeout_given = 0, 2, 2.0, False

        def abort(self, code):
            aborted.append(code)

    if ending == "watchdog":
        comm.MpiComm._timed_out(Rank(), "the gradient all-reduce", 2.4)
    elif ending == "failure":
        comm.abort_on_error(Rank(), RuntimeError("rank 0 fails on purpose"))
    else:
        monkeypatch.setattr(comm, "end_launched_job", aborted.append)
        monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
        for name in comm._SIZE_VARIABLES + comm._RANK_VARIABLES + comm._LOCAL_RANK_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PMI_SIZE", "2")
        comm.end_job_on_uncaught_exception()
        with contextlib.suppress(ValueError):  # (Python's own hook, after it, on the closed stderr)
            sys.excepthook(RuntimeError, RuntimeError("rank 0 fails on purpose"), None)
    assert aborted == [3 if ending == "watchdog" else 1]


_STARTING_MPI = ("import sys, time\n"
                 "from gpunn.distributed.init_watch import timed_start\n"
                 "with timed_start('gpunn [rank 0 of ranks 0-1]: waited {:.0f} s in MPI_Init\\n', float(sys.argv[1])):\n"
                 "    time.sleep(float(sys.argv[2]))  # (MPI_Init, holding the GIL: no thread of this process runs)\n"
                 "print('MPI started')\n")


def test_a_rank_still_starting_mpi_after_the_timeout_says_so_and_is_ended():
    """A process of the job that left before starting MPI (sys.exit(1), which no excepthook sees) left the others
    waiting in MPI_Init forever: mpiexec does not notice it, and no thread of a rank runs while mpi4py holds the GIL
    in MPI_Init. A child process times that start: past the timeout it writes the rank's line to their shared stderr,
    waits until it is read, and kills the rank, which the launcher sees."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent))
    done = waiting.run([sys.executable, "-c", _STARTING_MPI, "0.2", "600"], timeout=120, env=env)
    assert done.returncode == -signal.SIGKILL and done.stdout == ""
    assert re.fullmatch(r"gpunn \[rank 0 of ranks 0-1\]: waited 0 s in MPI_Init\n", done.stderr), done.stderr


_WATCHER_STREAMS = ("import os, sys, time\n"
                    "from gpunn.distributed.init_watch import timed_start\n"
                    "with timed_start('never said {:.0f}\\n', 600):\n"
                    "    time.sleep(0.5)  # (the child's exec)\n"
                    "    me = os.getpid()\n"
                    "    child = next(int(p) for p in os.listdir('/proc') if p.isdigit() and\n"
                    "                 open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == str(me))\n"
                    "    print([os.readlink(f'/proc/{pid}/fd/{fd}') for pid in (me, child) for fd in (1, 2)])\n")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the child reopens a rank's pipes through /proc (Linux)")
def test_the_child_timing_a_rank_holds_no_end_of_its_stdout_or_stderr_pipes():
    """A launcher reports a rank's end once every holder of its stdout and stderr pipes has closed them: the child
    timing an MPI_Abort (comm._abort_job) held them, and mpiexec returned 9 (the other rank, killed meanwhile) for
    about a third of the watchdog's aborts. It opens them again through /proc only when it has to speak (tested by
    test_a_rank_still_starting_mpi_after_the_timeout_says_so_and_is_ended, whose stderr is a pipe)."""
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent))
    done = waiting.run([sys.executable, "-c", _WATCHER_STREAMS], timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    rank_out, rank_err, child_out, child_err = ast.literal_eval(done.stdout)
    assert rank_out.startswith("pipe:") and rank_err.startswith("pipe:")
    assert (child_out, child_err) == ("/dev/null", "/dev/null")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the child reopens a rank's pipes through /proc (Linux)")
def test_the_child_timing_a_rank_whose_stderr_is_a_file_inherits_that_file_and_holds_no_end_of_its_stdout_pipe(
        tmp_path):
    # each of the rank's two streams on its own: its stdout pipe is reopened when the child speaks, its stderr file
    # (no pipe: nothing to hold back) inherited as it always was
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent))
    log = tmp_path / "rank.err"
    to_file = f"import os; os.dup2(os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT), 2)\n"
    done = waiting.run([sys.executable, "-c", to_file + _WATCHER_STREAMS], timeout=120, env=env)
    assert done.returncode == 0, log.read_text()
    rank_out, rank_err, child_out, child_err = ast.literal_eval(done.stdout)
    assert rank_out.startswith("pipe:") and rank_err == str(log)
    assert (child_out, child_err) == ("/dev/null", str(log))


def test_a_rank_that_starts_mpi_within_the_timeout_is_left_alone():
    # the child leaves when the rank's start is over: it neither speaks nor kills after the timeout (30 s here,
    # when communicate(), which reads until every holder of the pipes has closed them, would still be waiting)
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent))
    done = waiting.run([sys.executable, "-c", _STARTING_MPI, "30", "0"], timeout=120, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "MPI started\n", "")


@pytest.mark.parametrize("timeout, children", [(math.inf, 0), (600.0, 1)])
def test_a_start_of_mpi_timed_by_an_infinite_timeout_starts_no_child(monkeypatch, timeout, children):
    # GPUNN_DIST_TIMEOUT=inf waits as long as it takes: no child process watches that wait (one that would wait
    # for ever beside it)
    from gpunn.distributed import init_watch

    started = []

    class Child:
        def __init__(self, argv, **kwargs):
            started.append(argv)
            self.stdin = io.BytesIO()

        def wait(self):
            return 0

    monkeypatch.setattr(init_watch.subprocess, "Popen", Child)
    with init_watch.timed_start("waited {:.0f} s\n", timeout):
        pass
    assert len(started) == children
    if children:
        assert started[0][-3:-1] == ["600.0", "waited {:.0f} s\n"]


def test_the_child_timing_a_start_of_mpi_looks_each_quarter_timeout_and_counts_a_stopped_stretch_as_one_look(
        monkeypatch, capsys):
    # as the watchdog counts (comm._Watchdog): a stretch in which the processes were stopped (SIGSTOP) counts as two
    # periods, not as waiting; here a 2 s timeout looked at every 0.5 s, with 100 s stopped after the second look
    import types

    from gpunn.distributed import init_watch

    clock, looks, killed = iter([0.0, 0.5, 1.0, 101.0, 101.5, 102.0]), [], []
    monkeypatch.setattr(init_watch, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(init_watch, "select", types.SimpleNamespace(select=lambda r, w, x, period: looks.append(
        period) or ([], [], [])))
    monkeypatch.setattr(init_watch, "signal", types.SimpleNamespace(signal=lambda *a: None, SIGINT=2, SIG_IGN=1,
                                                                    SIGKILL=9))
    monkeypatch.setattr(init_watch, "os", types.SimpleNamespace(path=os.path, kill=lambda *a: killed.append(a)))
    monkeypatch.setattr(sys, "path", list(sys.path))  # (the child puts its own folder first)
    launcher = types.SimpleNamespace(read_by_the_launcher=lambda: killed.append("read"))
    monkeypatch.setitem(sys.modules, "output", launcher)
    init_watch._watch(4321, 2.0, "waited {:.1f} s\n")
    assert looks == [0.5] * 4 and killed == ["read", (4321, 9)]  # killed once the launcher has read the line
    assert capsys.readouterr().err == "waited 2.5 s\n"


def test_import_gpunn_under_a_launcher_alone_makes_an_uncaught_exception_end_the_job():
    code = "import sys, gpunn; print(getattr(sys.excepthook, 'gpunn_ends_the_job', False))"
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                                                            "PMIX_SIZE")}
    env["PYTHONPATH"] = str(SCRIPT.parent.parent)
    said = [waiting.run([sys.executable, "-c", code], timeout=120, env=dict(env, **launched)).stdout.strip()
            for launched in ({}, {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"})]
    assert said == ["False", "True"]


def test_an_mpiexec_of_another_mpi_than_mpi4pys_is_refused_where_each_process_would_train_alone(monkeypatch):
    """Open MPI's mpiexec starting processes whose mpi4py runs on the mpich wheel: each process's MPI counts a job of
    one, so each trained the whole run alone and wrote the same files, while gpunn train said "launched by MPI with
    2 processes" and its throughput "x 2 ranks"."""
    import types

    from gpunn.distributed import comm

    pytest.importorskip("mpi4py")
    import mpi4py

    alone = types.SimpleNamespace(Get_rank=lambda: 0, Get_size=lambda: 1)
    fake = types.SimpleNamespace(COMM_WORLD=alone, Get_library_version=lambda: "MPICH Version:  5.0.2\nMPICH Release")
    monkeypatch.setattr(mpi4py, "MPI", fake, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", fake)
    for name in comm._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(comm.DistributedError, match=r"^an MPI launcher started 2 processes \(OMPI_COMM_WORLD_SIZE=2\), "
                       r"but the MPI that mpi4py runs on \(MPICH Version: 5.0.2\) counts 1 in this process's job: the "
                       r"mpiexec that started it is another MPI's. Launch with the mpiexec of mpi4py's MPI"):
        comm.MpiComm(timeout=5)
    comm._check_launcher_is_mpis(2, "MPICH Version: 5.0.2")  # the launcher's count is MPI's: no refusal
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    comm._check_launcher_is_mpis(1, "MPICH Version: 5.0.2")  # no launcher: a job of one, as MPI counts it


def test_a_process_no_launcher_started_ends_no_job(monkeypatch):
    # one process on its own has no job to end: it fails as any program does, MPI neither started nor aborted
    import types

    from gpunn.distributed import comm

    pytest.importorskip("mpi4py")
    import mpi4py

    done = []
    fake = types.SimpleNamespace(COMM_WORLD=types.SimpleNamespace(Abort=done.append))
    monkeypatch.setattr(mpi4py, "MPI", fake, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", fake)
    monkeypatch.setattr(comm, "_end_this_process", lambda code: done.append(("ended", code)))
    for name in comm._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert comm.end_launched_job(2) is None and done == []
    monkeypatch.setenv("PMI_SIZE", "1")
    assert comm.end_launched_job(2) is None and done == []


@pytest.mark.parametrize("value, timeout", [("2", 2.0), ("0.2", 0.2), ("abc", 300.0), ("inf", math.inf)])
def test_a_launched_process_ending_the_job_times_its_start_of_mpi_by_the_timeout(monkeypatch, value, timeout):
    # the start of MPI that its abort needs is timed by GPUNN_DIST_TIMEOUT (the default where the variable cannot be
    # read: this rank may be failing for it); inf, never (init_watch starts no watcher). It was a SIGALRM whose end
    # said only "Alarm clock"
    import types

    from gpunn.distributed import comm

    pytest.importorskip("mpi4py")
    import mpi4py

    aborted, timed = [], []
    fake = types.SimpleNamespace(COMM_WORLD=types.SimpleNamespace(Abort=aborted.append))
    monkeypatch.setattr(mpi4py, "MPI", fake, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", fake)
    monkeypatch.setattr(comm, "_mpi_init_timed", lambda *given: timed.append(given) or contextlib.nullcontext())
    monkeypatch.setattr(comm, "_end_this_process", lambda code: aborted.append(("ended", code)))
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("GPUNN_DIST_TIMEOUT", value)
    comm.end_launched_job(2)
    assert aborted == [2, ("ended", 2)]
    setting = "GPUNN_DIST_TIMEOUT='abc' cannot be read: the default 300 s" if value == "abc" else None
    assert timed == [(timeout, " (started to end the job: this rank failed)", setting)]


@pytest.mark.parametrize("timeout, setting, waited, said", [
    (0.2, None, 0.263, "waited 0.26 s in MPI_Init, which every process of the job enters; another has not started MPI "
                       "(it left before starting it, or is that much later to its fit). Ending the job "
                       "(GPUNN_DIST_TIMEOUT=0.2 s)."),
    (2.0, None, 2.4, "waited 2 s in MPI_Init, which every process of the job enters; another has not started MPI (it "
                     "left before starting it, or is that much later to its fit). Ending the job "
                     "(GPUNN_DIST_TIMEOUT=2 s)."),
    (300.0, "GPUNN_DIST_TIMEOUT='{5}' cannot be read: the default 300 s", 300.6,
     "waited 301 s in MPI_Init, which every process of the job enters; another has not started MPI (it left before "
     "starting it, or is that much later to its fit). Ending the job (GPUNN_DIST_TIMEOUT='{5}' cannot be read: the "
     "default 300 s).")])
def test_the_timed_start_of_mpi_says_its_wait_in_a_sensible_precision_and_where_its_timeout_came_from(
        monkeypatch, timeout, setting, waited, said):
    """A 0.2 s timeout's wait read "waited 0 s"; a failing rank's line said GPUNN_DIST_TIMEOUT=300 s of a variable set
    to a value it could not read (the line is format()ted by init_watch's child: a value's braces stay as given)."""
    from gpunn.distributed import comm, init_watch

    lines = []
    monkeypatch.setattr(init_watch, "timed_start", lambda line, seconds: lines.append(line) or contextlib.nullcontext())
    monkeypatch.setattr(comm, "_REPORT", [])
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    with comm._mpi_init_timed(timeout, "", setting):
        pass
    assert lines[0].format(waited) == f"gpunn [rank 0 of ranks 0-1]: {said}\n"


def test_a_rank_that_did_not_fail_waits_for_the_first_failed_ranks_abort_naming_it():
    from gpunn.distributed.comm import DistributedError, agreeing_on_failure

    class Rank1Of3:
        rank, size, waited = 1, 3, []

        def allgather(self, mine, label=None):
            return [("a", True), mine, ("c", True)]  # ranks 0 and 2 failed

        def barrier(self, label=None):
            self.waited.append(label)

    comm = Rank1Of3()
    with pytest.raises(DistributedError, match=r"^rank 0 of ranks 0-2 failed in the statistics$"):
        agreeing_on_failure(comm, lambda: "b", "the statistics")
    assert comm.waited == ["the statistics (waiting for rank 0 of ranks 0-2, which failed, to end the job)"]


def test_the_nccl_engine_says_its_version_as_major_minor_patch():
    import types

    from gpunn.distributed.comm import NcclComm

    comm = object.__new__(NcclComm)
    comm.size, comm.control = 2, types.SimpleNamespace(engine="mpi")
    comm.nccl = types.SimpleNamespace(get_version=lambda: 22305)
    assert comm.describe() == "2 ranks over NCCL 2.23.5 (control: mpi)"


def test_a_wait_is_said_in_whole_seconds_from_a_1_s_timeout_on_and_in_two_digits_below():
    from gpunn.distributed.comm import seconds_spec

    assert [format(1.26, seconds_spec(t)) for t in (0.2, 0.99, 1, 300)] == ["1.3", "1.3", "1", "1"]


@pytest.mark.parametrize("size, started, timed", [("1", False, 0), ("2", False, 1), ("2", True, 0)])
def test_only_a_process_of_a_launched_job_of_several_times_its_start_of_mpi(monkeypatch, size, started, timed):
    # alone (a singleton, or a launcher's one process) no other process can keep it waiting; once MPI has started
    # there is nothing left to time
    import types

    from gpunn.distributed import comm, init_watch

    lines = []
    monkeypatch.setattr(init_watch, "timed_start", lambda line, seconds: lines.append(line) or contextlib.nullcontext())
    if started:
        monkeypatch.setitem(sys.modules, "mpi4py.MPI", types.ModuleType("mpi4py.MPI"))
    else:
        monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    monkeypatch.setenv("PMI_SIZE", size)
    monkeypatch.setenv("PMI_RANK", "0")
    with comm._mpi_init_timed(300.0):
        pass
    assert len(lines) == timed


def test_the_watchdogs_line_says_a_sub_second_wait_in_hundredths(monkeypatch, capsys):
    from gpunn.distributed import comm

    monkeypatch.setattr(comm, "_REPORT", [])
    for timeout, shown in ((0.2, "0.26"), (5.0, "0")):
        rank = comm.MpiComm.__new__(comm.MpiComm)
        aborted = []
        rank.rank, rank.size, rank.timeout, rank.abort = 0, 2, timeout, aborted.append
        rank._timed_out("the all-reduce", 0.263)
        assert capsys.readouterr().err == (f"gpunn [rank 0 of ranks 0-1]: waited {shown} s in the all-reduce; another "
                                           "rank has stopped (failed, hung or killed). Aborting the job "
                                           f"(GPUNN_DIST_TIMEOUT={timeout:g} s).\n") and aborted == [3]


@pytest.mark.parametrize("env", [None, "7"])
def test_the_watchdogs_line_names_world_timeout_where_the_script_gave_it(monkeypatch, capsys, env):
    """world(timeout=)'s timeout overrides GPUNN_DIST_TIMEOUT: the aborting line said "GPUNN_DIST_TIMEOUT=0.5 s" of a
    variable unset or set to another value, sending the user to the wrong knob. A communicator made before
    world(timeout=) set it anew says the new setting; one left to the variable still names the variable."""
    from gpunn.distributed import comm

    monkeypatch.setattr(comm, "_REPORT", [])
    if env is None:
        monkeypatch.delenv("GPUNN_DIST_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("GPUNN_DIST_TIMEOUT", env)
    rank = comm.MpiComm.__new__(comm.MpiComm)
    aborted = []
    rank.rank, rank.size, rank.abort = 0, 2, aborted.append
    rank.timeout = comm._timeout_from_env(None)
    rank._watchdog = comm._Watchdog(rank.timeout, rank._timed_out)
    rank._timed_out("the all-reduce", 400.0)
    assert capsys.readouterr().err.endswith(f"Aborting the job (GPUNN_DIST_TIMEOUT={300 if env is None else 7} s).\n")
    monkeypatch.setitem(comm._WORLD, "control", rank)
    assert comm._control(0.5) is rank and (rank.timeout, rank._watchdog.timeout) == (0.5, 0.5)
    rank._timed_out("the all-reduce", 0.6)
    assert capsys.readouterr().err == ("gpunn [rank 0 of ranks 0-1]: waited 0.6 s in the all-reduce; another rank has "
                                       "stopped (failed, hung or killed). Aborting the job (world(timeout=0.5)).\n")
    assert aborted == [3, 3]


def test_gpunn_info_under_a_launcher_speaks_as_gpunn_info_in_its_lines_about_the_job(monkeypatch, capsys):
    """gpunn info (predict, bench) under a launcher of several processes starts MPI, timed, for the ranks' check that
    each runs the same command: its line said "gpunn [rank 0 of ranks 0-1]: waited ...", as a program of its own."""
    from gpunn import cli
    from gpunn.distributed import comm

    speakers = []
    monkeypatch.setattr(comm, "_REPORT", [])
    monkeypatch.setattr(comm, "same_command_on_every_rank", lambda command: speakers.append(comm._speaker()))
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    assert cli.main(["info", "--device", "cpu"]) == 0
    assert speakers == ["gpunn info"]


_FAKE_MPI = ("import os, sys\n"
             "class _World:\n"
             "    def Abort(self, code):  # as MPICH's can: its launcher's process manager gone\n"
             "        print('written while MPI_Abort ran')  # (block-buffered: lost unless flushed before the end)\n"
             "        if os.environ['FAKE_ABORT'] == 'raises':\n"
             "            raise RuntimeError('no process manager')\n"
             "        if os.environ['FAKE_ABORT'] == 'hangs':\n"
             "            import time; time.sleep(600)\n"
             "COMM_WORLD = _World()\n")

_ENDING = {"end_launched_job": "comm.end_launched_job(3)\n",
           "abort_on_error": ("rank = comm.MpiComm.__new__(comm.MpiComm)\n"
                              "rank.comm, rank.MPI, rank.rank, rank.size = MPI.COMM_WORLD, MPI, 0, 2\n"
                              "comm.abort_on_error(rank, RuntimeError('rank 0 fails on purpose'))\n")}


def _ended_with_fake_mpi(tmp_path, ending, abort, first):
    """The finished process that runs ``first`` (code) and then the ``ending`` of _ENDING as rank 0 of 2, beside a
    stand-in mpi4py.MPI whose Abort does as ``abort`` says (returns, raises or hangs)."""
    (tmp_path / "mpi4py").mkdir()
    (tmp_path / "mpi4py" / "__init__.py").write_text("")
    (tmp_path / "mpi4py" / "MPI.py").write_text(_FAKE_MPI)
    code = ("from mpi4py import MPI\n" if ending == "abort_on_error" else "") + (
        "from gpunn.distributed import comm\n" + first + _ENDING[ending] + "print('not reached')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                                                            "PMIX_SIZE", "PYTHONUNBUFFERED")}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(SCRIPT.parent.parent)]), PMI_SIZE="2",
               GPUNN_DIST_TIMEOUT="30", FAKE_ABORT=abort)
    return waiting.run([sys.executable, "-c", code], timeout=60, env=env)


@pytest.mark.parametrize("ending, abort, says", [
    ("end_launched_job", "returns", ""),
    ("end_launched_job", "raises", "gpunn [rank 0 of ranks 0-1]: MPI could not end the job (RuntimeError: no process "
                                   "manager); ending this process.\n"),
    ("abort_on_error", "returns", "RuntimeError: rank 0 fails on purpose\n")])
def test_a_rank_whose_mpi_abort_returns_still_ends_with_its_status_after_its_lines(tmp_path, ending, abort, says):
    """MPICH's MPI_Abort returns in some set-ups (the launcher's process manager gone, a singleton's init); the rank
    then went on, back into the excepthook or on with the script, after saying it was ending the job (exit status 0
    here). It now ends with the abort's status, once what it wrote is flushed and read (a stand-in mpi4py.MPI here,
    in a process of its own)."""
    done = _ended_with_fake_mpi(tmp_path, ending, abort, "print(\"the rank's own line\")\n")
    status = 3 if ending == "end_launched_job" else 1
    assert (done.returncode, done.stdout) == (status, "the rank's own line\nwritten while MPI_Abort ran\n"), done
    assert done.stderr.endswith(says) and ("could not end the job" in done.stderr) == (abort == "raises"), done.stderr


@pytest.mark.parametrize("ending", ["end_launched_job", "abort_on_error"])
def test_a_rank_whose_mpi_abort_hangs_is_killed_after_the_grace_and_says_so(tmp_path, ending):
    """MPI_Abort is a "best attempt": one that never returns nor ends the job (called from the watchdog's thread while
    the main thread waits inside MPI) left the job running, its watchdog's promise broken. A child process now kills
    the rank ABORT_GRACE_S after the abort began (0.5 s here), saying so, and the launcher ends the job on seeing a
    rank killed (a stand-in mpi4py.MPI whose Abort sleeps, in a process of its own)."""
    done = _ended_with_fake_mpi(tmp_path, ending, "hangs", "comm.ABORT_GRACE_S = 0.5\n")
    assert done.returncode == -signal.SIGKILL and "not reached" not in done.stdout, done
    assert re.search(r"(?m)^gpunn \[rank 0 of ranks 0-1\]: MPI_Abort has not ended the job after [12] s; killing "
                     r"this rank, which ends the job\.$", done.stderr), done.stderr


def test_a_launchers_variables_give_the_size_and_rank_without_starting_mpi(monkeypatch):
    from gpunn.distributed.comm import launched_rank, launched_size

    sizes = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
    ranks = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
    for name in sizes + ranks:
        monkeypatch.delenv(name, raising=False)
    assert (launched_size(), launched_rank()) == (1, 0)  # no launcher: one process, rank 0
    for n, (size, rank) in enumerate(zip(sizes, ranks), start=2):  # MPICH/Slurm PMI, Open MPI, MVAPICH, PMIx
        monkeypatch.setenv(size, str(n))
        monkeypatch.setenv(rank, "1")
        assert (launched_size(), launched_rank()) == (n, 1), size
        monkeypatch.delenv(size)
        monkeypatch.delenv(rank)
    monkeypatch.setenv("PMI_SIZE", "")  # a blank variable is as unset: the next one says
    monkeypatch.setenv("PMI_RANK", " ")
    monkeypatch.setenv("PMIX_SIZE", "3")
    monkeypatch.setenv("PMIX_RANK", "2")
    assert (launched_size(), launched_rank()) == (3, 2)


@pytest.mark.parametrize("name, value, read, says", [
    ("PMI_SIZE", "\u00b2", "launched_size", "how many processes it started"),
    ("OMPI_COMM_WORLD_SIZE", "x", "launched_size", "how many processes it started"),
    ("PMI_RANK", "-1", "launched_rank", "this process's rank"),
    ("PMIX_RANK", "\u0661", "launched_rank", "this process's rank"),
    ("SLURM_LOCALID", "1_0", "launched_local_rank", "this process's rank on its node")])
def test_a_launchers_variable_that_is_no_whole_number_is_refused_naming_it(monkeypatch, name, value, read, says):
    # PMI_SIZE='²' passed str.isdigit and failed in int() with a bare ValueError; 'x' and '-1' were passed over
    from gpunn.distributed import comm

    for other in comm._SIZE_VARIABLES + comm._RANK_VARIABLES + comm._LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(comm.DistributedError) as refused:
        getattr(comm, read)()
    assert str(refused.value) == f"{name}={value!r} is not a whole number (an MPI launcher's variable: {says})"


def test_a_timeout_given_to_world_is_taken_over_the_environment_and_a_refusal_names_the_default(monkeypatch):
    from gpunn.distributed.comm import DistributedError, _timeout_from_env

    monkeypatch.setenv("GPUNN_DIST_TIMEOUT", "abc")
    assert _timeout_from_env(7) == 7.0  # world(timeout=7): the environment is not read
    with pytest.raises(DistributedError, match=r"before it aborts the job; unset: 300\)$"):
        _timeout_from_env(None)
    monkeypatch.delenv("GPUNN_DIST_TIMEOUT")
    assert _timeout_from_env(None) == 300.0


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.nan, -math.inf, "5", True, None])
def test_a_timeout_given_to_world_that_is_no_positive_number_of_seconds_is_refused_before_mpi_starts(monkeypatch,
                                                                                                    timeout):
    # float() took 0 and negatives (every collective that waits at all aborts the job) and nan (none ever aborts);
    # inf is taken, as GPUNN_DIST_TIMEOUT=inf: never
    from gpunn.distributed import comm

    started = []
    monkeypatch.setattr(comm, "_control", lambda seconds: started.append(seconds) or comm.LocalComm())
    if timeout is None:  # the environment's, then: the check is on what was given only
        comm.world(timeout=timeout)
        assert started == [None]
        return
    with pytest.raises(ValueError) as refused:
        comm.world(timeout=timeout)
    shown = f"the string {timeout!r}; pass a number" if isinstance(timeout, str) else repr(timeout)  # text named as text
    assert str(refused.value) == f"timeout must be a positive number of seconds, or math.inf (never abort), got {shown}"
    assert started == []  # refused before the communicator (MPI) was made
    with pytest.raises(ValueError, match="^timeout must be"):
        comm._timeout_from_env(timeout)


@pytest.mark.parametrize("timeout, seconds", [(math.inf, math.inf), (2.5, 2.5), (7, 7.0), (numpy.float32(0.5), 0.5),
                                              (numpy.array(3), 3.0)])
def test_a_timeout_given_to_world_is_taken_as_seconds_inf_included(timeout, seconds):
    from gpunn.distributed.comm import _timeout_from_env

    assert _timeout_from_env(timeout) == seconds and type(_timeout_from_env(timeout)) is float


def test_each_rank_trains_on_the_gpu_its_local_rank_picks(monkeypatch):
    from gpunn import backend
    from gpunn.distributed.comm import local_device

    for name in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                 "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(backend, "probe_cuda", lambda: (None, 0, "no CuPy"))
    assert [local_device(d) for d in ("auto", "cpu", "cuda:1")] == ["cpu", "cpu", "cuda:1"]  # a named device stays
    monkeypatch.setattr(backend, "probe_cuda", lambda: (object(), 2, ""))  # two GPUs
    assert [local_device(d) for d in ("auto", "cpu")] == ["cuda:0", "cpu"]
    assert [local_device(d) for d in ("AUTO", " Cpu ")] == ["cuda:0", "cpu"]  # (any letter case: "CPU" gave cuda:0)
    for name in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.setenv(name, "3")  # the fourth rank of its node: GPU 3 mod 2
        assert local_device() == "cuda:1", name
        monkeypatch.delenv(name)
    monkeypatch.setenv("PMI_RANK", "1")  # no local rank given: the job's rank
    assert local_device() == "cuda:1"


def test_a_job_launched_without_mpi4py_is_refused_not_trained_as_separate_processes(one_process):
    from gpunn.distributed.comm import DistributedError, world

    one_process.setenv("PMI_SIZE", "2")
    with pytest.raises(DistributedError, match=r'^distributed training needs mpi4py and an MPI runtime: pip install '
                                               r'"gpunn\[mpi\]"'):
        world()


class _Clock:
    """time.monotonic and time.sleep for the watchdog: each sleep lasts ``late`` longer than asked (a loaded
    machine), and the one ending look ``stopped_at`` lasts ``stopped`` seconds more (the process was stopped:
    SIGSTOP, a batch scheduler suspending the job). For the thread that made it only: another test's watchdog thread,
    still looking in this process (a daemon), keeps the real clock; it moved this one's and, past its looks, raised
    in that thread (PytestUnhandledThreadExceptionWarning)."""

    def __init__(self, late=0.0, stopped_at=None, stopped=0.0):
        self.now, self.looks, self.late, self.stopped_at, self.stopped = 100.0, 0, late, stopped_at, stopped
        self._owner = threading.get_ident()

    def __getattribute__(self, name):
        if name in ("monotonic", "sleep") and threading.get_ident() != object.__getattribute__(self, "_owner"):
            return getattr(time, name)
        return object.__getattribute__(self, name)

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.looks += 1
        if self.looks > 10_000:  # over an hour of looks: a watchdog that never fires fails here, not hangs CI
            raise AssertionError(f"the watchdog looked {self.looks - 1:,} times without firing or ending")
        self.now += seconds + self.late + (self.stopped if self.looks == self.stopped_at else 0.0)


@pytest.mark.parametrize("late,stopped_at,ends_before", [(0.0, None, 3.0), (0.2, None, 3.0), (0.0, 3, 3.0 + 600),
                                                         (0.3, 2, 3.0 + 600), (0.0, 1, 3.0 + 600)])
def test_the_watchdog_counts_the_time_the_process_ran_not_the_time_it_was_stopped(monkeypatch, late, stopped_at,
                                                                                    ends_before):
    # A job suspended for 10 minutes (every rank stopped at once) aborted when it was resumed: the collective
    # it was in had "waited" 600 s. It counts as one look now; a collective that hangs still aborts after
    # the timeout of running time, on a machine whose sleeps run late too.
    from gpunn.distributed import comm

    clock = _Clock(late, stopped_at, 600.0)
    monkeypatch.setattr(comm, "time", clock)
    fired = []

    def on_timeout(label, seconds):
        fired.append((label, seconds, clock.now))

    dog = comm._Watchdog(2.0, on_timeout)
    dog._thread = "started"  # no thread: _watch runs here
    dog.begin("the stop-flag exchange")
    dog._watch()  # returns once it has fired
    (label, seconds, when), = fired
    assert label == "the stop-flag exchange" and 2.0 < seconds <= 2.0 + 2 * 0.5
    assert when - 100.0 < ends_before  # fired after the timeout of running time, the stopped stretch aside
    if stopped_at is not None:
        assert when - 100.0 > 600.0  # ... not as the process was resumed


def test_the_watchdog_times_each_collective_from_its_own_start(monkeypatch):
    # a collective that ends and the next that begins between two looks: the next one's wait starts at zero
    from gpunn.distributed import comm

    clock = _Clock()
    monkeypatch.setattr(comm, "time", clock)
    fired = []
    dog = comm._Watchdog(2.0, lambda label, seconds: fired.append((label, seconds, clock.now)))
    dog._thread = "started"
    sleep = clock.sleep

    def sleep_and_switch(seconds):
        sleep(seconds)
        if clock.looks == 3:  # 1.5 s into the first collective
            dog.end()
            dog.begin("the second")

    clock.sleep = sleep_and_switch
    dog.begin("the first")
    dog._watch()
    (label, seconds, when), = fired
    assert label == "the second" and 2.0 < seconds <= 3.0 and when - 101.5 > 2.0


def test_the_watchdog_does_not_count_the_time_between_collectives(monkeypatch):
    from gpunn.distributed import comm

    class Done(Exception):
        pass

    clock = _Clock()
    monkeypatch.setattr(comm, "time", clock)
    fired = []
    dog = comm._Watchdog(2.0, lambda label, seconds: fired.append(label))
    dog._thread = "started"
    sleep = clock.sleep

    def sleep_and_end(seconds):
        sleep(seconds)
        if clock.looks == 2:
            dog.end()
        elif clock.looks == 20:  # 9 s without a collective
            raise Done

    clock.sleep = sleep_and_end
    dog.begin("the first")
    with pytest.raises(Done):
        dog._watch()
    assert fired == []


@pytest.mark.parametrize("command", [["predict", "model.npz", "X.npy", "P.npy"], ["bench"]])
def test_commands_that_are_not_data_parallel_refuse_to_start_under_a_launcher(monkeypatch, capsys, tmp_path, command):
    from mirror_ranks import as_rank

    from gpunn import cli

    monkeypatch.chdir(tmp_path)
    control = as_rank(monkeypatch, 0)  # under mpiexec -n 2 (a mirrored world): each would run the whole command
    assert cli.main(command) == 2
    assert capsys.readouterr().err.startswith(f"gpunn {command[0]}: error: this command runs in one process, and an MPI "
                                              "launcher started 2")
    assert list(tmp_path.iterdir()) == []
    # first the ranks' command check, which training ranks beside it (an MPMD launch) wait in
    assert control.log[0] == ("collective", "the check that every rank runs the same command", False)
    as_rank(monkeypatch, 1)  # the other ranks stop without a word
    with pytest.raises(SystemExit) as stop:
        cli.main(command)
    assert stop.value.code == 2 and capsys.readouterr().err == ""


# ---- under mpiexec ------------------------------------------------------------------------------
def _launch(mode, tmp_path, timeout=120, threads_set=True, **popen):
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent), GPUNN_DEVICE="cpu", PYTHONWARNINGS="ignore")
    for name in THREAD_ENV + ("PYTHONUNBUFFERED",):  # (each rank's stdout block-buffered, as on a launcher's pipe)
        env.pop(name, None)
    if threads_set:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = ending_with_this_process([mpiexec(), "-n", "2", sys.executable, str(SCRIPT), mode, str(tmp_path)])
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _launch_and_wait(mode, tmp_path):
    """Launched, and a moment into training (the script touches tmp_path/started after its first epoch)."""
    proc = _launch(mode, tmp_path)
    deadline = waiting.Deadline(60)
    while not (tmp_path / "started").exists() and not deadline.expired() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    return proc


def _run(mode, tmp_path, timeout=120, threads_set=True):
    """(status, stdout, stderr) of ``mpiexec -n 2 mpi_script.py MODE``, within ``timeout`` (seconds or a
    waiting.Deadline) of this process's running time."""
    proc = _launch(mode, tmp_path, threads_set=threads_set)
    out, err = ended(proc, timeout)  # (a hang fails with what the job wrote)
    return proc.returncode, out, err


@needs_mpi
def test_two_ranks_at_batch_b_train_the_one_process_run_at_batch_2b(tmp_path):
    code, out, err = _run("exactness", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / "out.json").read_text())
    for rows in (203, 17):  # 17 rows: the last global batch has one row, rank 0 none
        assert result[f"params_rel_{rows}"] < 1e-10
        assert result[f"loss_rel_{rows}"] < 1e-10
        assert result[f"params_same_on_ranks_{rows}"]
    assert result["source_params_rel"] < 1e-10  # a DataSource split by PieceOfEachBatch
    assert result["stream_params_rel"] < 1e-10  # fit(gpunn.data.synthetic(...), distributed=True)
    if "ensemble_params_rel" in result:  # where gpunn.Ensemble exists (issue 11)
        assert result["ensemble_params_rel"] < 1e-10 and result["ensemble_loss_rel"] < 1e-10
        assert result["ensemble_val_rel"] < 1e-10  # its validation rows split over the ranks, K sums reduced
        # an ensemble's checkpoint (stopped mid-epoch, a member frozen by early stopping) resumed on 2 ranks
        assert result["ensemble_resumed_params_rel"] < 1e-10 and result["ensemble_resumed_val_loss_rel"] < 1e-10
        assert result["ensemble_resumed_loss_rel"] < 1e-10
        assert result["ensemble_resumed_same_on_ranks"]
        stopped, stopped_ref = result["ensemble_resumed_stopped"]
        assert stopped == stopped_ref and any(stopped), stopped
        assert result["ensemble_params_rel_17"] < 1e-10  # a last global batch of one row: rank 0's piece empty
        # bootstrap=True (each member its own resample), stopped mid-epoch and resumed on 2 ranks
        assert result["bootstrap_params_rel"] < 1e-10 and result["bootstrap_val_rel"] < 1e-10
        assert result["bootstrap_same_on_ranks"] and result["bootstrap_epochs"] == [1, 2, 3]
    # sample_weight with a held-out fraction, stopped in epoch 2 and resumed on 2 ranks with its weights: the
    # one-process weighted run at the global batch; equal weights: the unweighted 2-rank run bit for bit
    assert result["weighted_params_rel"] < 1e-10 and result["weighted_rel"] < 1e-10
    assert result["weighted_same_on_ranks"] and result["weighted_epochs"] == [1, 2, 3]
    assert result["equal_weights_bit_for_bit"]
    # written by rank 0 after 2 epochs, resumed on 2 ranks to 4: the uninterrupted single-process run
    assert result["epochs"] == [1, 2, 3, 4]
    assert result["resumed_params_rel"] < 1e-10 and result["resumed_val_loss_rel"] < 1e-10
    assert result["one_process_resume_params_rel"] < 1e-10  # a 2-rank checkpoint resumed without MPI
    assert result["resumed_same_on_ranks"]  # early stopping restored the same weights on both ranks
    assert result["rank_zero_only_ran_on"] == [0]  # checkpoint writers and bars: rank 0 alone
    assert out.count("data parallel: 2 ranks over MPI") == 1  # the verbose resume, on rank 0 only
    start = next(line for line in out.splitlines() if line.startswith("data parallel: 2 ranks over MPI"))
    assert "  " not in start  # the library's name as one line of words ('MPICH Version:      5.0.2' was)
    assert err.count("train [cpu]") >= 1 and "rank 1" not in err
    # its bar counts every rank's rows: 2 epochs of the 183 training rows (rank 0 trains 91 of them an epoch)
    assert re.findall(r"(\d+)/(\d+) \[", err)[-1] == ("366", "366")


@needs_mpi
def test_ranks_on_one_node_share_its_cores_out_while_they_train(tmp_path):
    # launched as a user would, without thread settings: OpenBLAS starts a thread per core in every rank
    code, out, err = _run("threads", tmp_path, threads_set=False)
    assert code == 0, err
    r = json.loads((tmp_path / "out.json").read_text())
    assert r["local_size"] == 2 and r["share"] == max(1, usable_cores() // 2)  # unbound: the two split the cores
    assert r["before"] == usable_cores()  # OpenBLAS's default: a thread per core, in every rank
    assert r["during"] == r["share"]  # each rank's BLAS on its share of the cores ...
    assert r["after"] == r["before"]  # ... during the fit only
    assert r["groups_during"] == min(r["groups_before"], r["share"]) and r["groups_after"] == r["groups_before"]


def test_a_rank_gets_its_share_of_its_cores_unless_the_launcher_bound_it():
    two, sixteen = ("a", [0, 1]), ("a", list(range(16)))
    assert cores_per_rank(sixteen, [sixteen]) == 16  # alone
    assert cores_per_rank(two, [two, two]) == 1  # this project's machine under mpiexec -n 2
    assert cores_per_rank(two, [two, two, two]) == 1
    assert cores_per_rank(sixteen, [sixteen, sixteen]) == 8
    assert cores_per_rank(sixteen, [sixteen, ("b", list(range(16)))]) == 16  # the other rank is on another machine
    bound = [("a", list(range(4 * r, 4 * r + 4))) for r in range(4)]  # each rank bound to 4 of the 16 cores
    assert cores_per_rank(bound[1], bound) == 4
    assert cores_per_rank(two, [two, two, ("a", list(range(2, 16)))]) == 1  # taskset around the job: 2 share 2


def test_more_ranks_than_cores_are_told_they_take_turns_and_how_many_to_start(monkeypatch):
    """mpiexec -n 3 and -n 4 gpunn train on the 2-core machine trained 4x and 33x slower than -n 2, and the start
    line said only "1 BLAS thread per rank (its 2 cores shared with other ranks of this machine)"."""
    import types

    from gpunn.distributed import threads

    class Ranks:  # every rank on this machine, with the same cores
        def __init__(self, count):
            self.count = count

        def allgather(self, mine, label=None):
            return [mine] * self.count

    model = types.SimpleNamespace(backend=types.SimpleNamespace(is_gpu=False))

    def said(cores, ranks):
        monkeypatch.setattr(threads, "_placement", lambda: ("a", list(range(cores))))
        with threads.rank_threads(Ranks(ranks), model) as words:
            return words

    for name in threads.BLAS_ENV:
        monkeypatch.delenv(name, raising=False)
    # no BLAS threads to change: a count set for every library loaded (MKL, loaded by an earlier test of the same
    # process through GPUNN_GEMM, reads OMP_NUM_THREADS, not OPENBLAS_NUM_THREADS: its count would be the rank's share)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert said(2, 2) is None and said(1, 1) is None
    assert said(2, 3) == "3 ranks on 2 cores take turns on them, many times slower than 2: start at most 2 on this machine"
    assert said(1, 2) == "2 ranks on 1 core take turns on them, many times slower than 1: start at most 1 on this machine"
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    pytest.importorskip("threadpoolctl")
    assert said(2, 4) == ("1 BLAS thread per rank (its 2 cores shared with other ranks of this machine; 4 ranks on 2 "
                          "cores take turns on them, many times slower than 2: start at most 2 on this machine)")
    assert said(4, 2) == "2 BLAS threads per rank (its 4 cores shared with other ranks of this machine)"
    # srun's tasks left on every core of the node (Slurm's task/none): each rank at most its --cpus-per-task, said
    # as Slurm's count (a rank alone on its 4 cores was said to share them "with other ranks of this machine")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert said(4, 2) == "1 BLAS thread per rank (SLURM_CPUS_PER_TASK=1 of the 4 cores it may run on)"
    assert said(4, 1) == "1 BLAS thread per rank (SLURM_CPUS_PER_TASK=1 of the 4 cores it may run on)"
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")  # more than the ranks' share: the cores shared, as without Slurm
    assert said(4, 2) == "2 BLAS threads per rank (its 4 cores shared with other ranks of this machine)"
    assert said(4, 1) == "3 BLAS threads per rank (SLURM_CPUS_PER_TASK=3 of the 4 cores it may run on)"


@needs_mpi
def test_each_rank_reads_only_its_shard_of_a_file_and_trains_the_one_process_run(tmp_path):
    code, out, err = _run("shards", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / "out.json").read_text())
    # 1000 rows, standardized, 3 epochs: each rank read its 500 rows (the parts of the chunk its boundary
    # cuts included) for the statistics and once per epoch, never the other rank's: 2000 rows
    assert result["rows_read"] == [2000, 2000]
    assert result["bytes_read"] == [2000 * (40 + 16)] * 2  # features (5 x 8 bytes) and targets (2 x 8)
    assert result["standardizer_rel"] < 1e-12  # the shards' moments merged == one pass over the file
    # with held-out chunks: every row read once per pass over all ranks, the held-out ones split too
    assert sum(result["validation_run_rows_read"]) == result["validation_run_rows"]
    assert max(result["validation_run_rows_read"]) < 0.6 * result["validation_run_rows"]
    assert result["val_rel"] < 1e-10  # val_loss, val_mae, val_r2 == one process
    assert result["wrapped_rows_read"] == [1000, 1000]  # fit(ShardedSource(source, 4), distributed=True)
    assert result["params_rel"] < 1e-10 and result["loss_rel"] < 1e-10  # == one process reading both shards
    assert result["stopped"] and result["stopped_at"] == [1, 21]
    assert result["resumed_params_rel"] < 1e-10  # the mid-epoch checkpoint resumed on 2 ranks
    assert result["resumed_loss_rel"] < 1e-10  # ... reporting the one-process epoch losses
    # ... and the throughput of the rows both ranks trained after the resume: 1000 less 21 global batches of 16
    assert result["resumed_rows_timed"] == pytest.approx(1000 - 21 * 16)
    assert result["one_process_resume_params_rel"] < 1e-10  # ... and in one process


@needs_mpi
def test_an_ensemble_on_a_source_trains_its_rank_shards_as_one_process_and_as_each_members_own_fit(tmp_path):
    code, out, err = _run("ensemble_shards", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / "out.json").read_text())
    # statistics pass, 4 epochs of training rows, 4 validations of held-out chunks: each rank about half
    assert sum(result["rows_read"]) == result["rows"] and max(result["rows_read"]) < 0.6 * result["rows"]
    assert result["same_on_ranks"] and result["resumed_same_on_ranks"]
    assert result["params_rel"] < 1e-10 and result["loss_rel"] < 1e-10  # == one process at twice the batch
    assert result["val_rel"] < 1e-10 and result["standardizer_rel"] < 1e-12
    stopped, stopped_ref = result["stopped_epoch"]
    assert stopped == stopped_ref and stopped[0] == 2  # member early stopping decided alike
    assert max(result["members_rel"]) < 1e-10  # member k == MLP.fit(source, distributed=True) with its settings
    assert result["validation_source_rel"] < 1e-10
    assert result["stopped"] and result["stopped_at"] == [2, 11]  # its checkpoint: member 0 frozen
    assert result["resumed_params_rel"] < 1e-10 and result["resumed_val_rel"] < 1e-10  # resumed on 2 ranks
    assert result["one_process_resume_params_rel"] < 1e-10  # ... and in one process


@needs_mpi
def test_ranks_that_disagree_stop_before_the_first_step_naming_the_setting(tmp_path):
    code, _, err = _run("mismatch", tmp_path)
    assert code == 0, err
    error = json.loads((tmp_path / "out.json").read_text())["error"]
    assert "optimizer.lr: 0.01 on rank 0; 0.02 on rank 1" in error
    shapes = json.loads((tmp_path / "out.json").read_text())["shape_error"]
    assert "model.layer_sizes: [5, 16, 2] on rank 0; [5, 17, 2] on rank 1" in shapes
    # validation_data=(Xv, Yv) that differ between ranks: each rank scored its piece of its own rows
    assert "data.validation_fingerprint: " in json.loads((tmp_path / "out.json").read_text())["validation_error"]
    # training rows in another order on one rank: the checksum a checkpoint records tells them apart
    assert "\n  data.fingerprint: " in json.loads((tmp_path / "out.json").read_text())["order_error"]


@needs_mpi
def test_every_rank_starts_from_rank_0s_parameters_and_moments_and_ends_each_epoch_with_its_logs(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setenv("GPUNN_DIST_TIMEOUT", "250")
    code, _, err = _run("broadcast", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["own_communicator"] and result["timeout"] == 250.0
    assert result["same_on_ranks"] and result["params_rel"] < 1e-10  # rank 1's own start was replaced by rank 0's
    assert result["histories_same_on_ranks"] and result["callbacks_saw_the_same_logs"]
    assert result["resumed_same_on_ranks"] and result["resumed_params_rel"] < 1e-10  # ... and its own moments
    assert result["epochs_after_a_stop_on_rank_1"] == [[1, 2], [1, 2]]  # every rank stops with it


@needs_mpi
def test_a_script_run_without_a_launcher_is_one_rank_over_mpi():
    code = ("from mpi4py import MPI; from gpunn.distributed import world; c = world(); "
            "print(c.engine, c.rank, c.size, c.local_rank, c.local_size, c.describe()); "
            "print(MPI.Get_library_version().splitlines()[0])")
    run = waiting.run([sys.executable, "-c", code], timeout=60,
                      env=dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent)))
    said, library = run.stdout.splitlines()
    # the library's first line ('MPICH Version:      5.0.2') as words, not its release date, device, configure...
    assert said == f"mpi 0 1 0 1 1 rank over MPI ({' '.join(library.split())})", run.stderr


@needs_mpi
def test_ranks_whose_first_losses_differ_judge_divergence_by_rank_0s_reference_and_stop_together(tmp_path):
    # each rank's reference is the loss of its own piece of the first batch; rank 1's is about 10^6 times rank
    # 0's here, and the epoch's (reduced) loss over 10^4 times rank 0's only: with its own reference, rank 1
    # would train on while rank 0 stopped, and wait for it in its next collective
    code, _, err = _run("reference", tmp_path, timeout=60)
    assert code == 0, err
    said = json.loads((tmp_path / "out.json").read_text())["said"]
    assert said[0] == said[1] and said[0].startswith("training loss became "), said
    ref = float(re.search(r"times its reference (\S+) ", said[0]).group(1))
    assert ref < 100  # rank 0's: its rows' targets are the teacher's, rank 1's over 1000
    assert "in epoch 1 " in said[0]


@needs_mpi
@pytest.mark.parametrize("mode,says", [("fail", r"\[rank 1 of ranks 0-1\]: this rank failed; aborting all ranks\.\nTraceback "
                                                r"[\s\S]*\nRuntimeError: rank 1 fails on purpose\n"),  # its traceback
                                       # the timeout is 2 s, and the watchdog looks every 0.5 s, each look counting
                                       # at most 1 s (a late one on a loaded machine); world(timeout=2)'s, not 300,
                                       # and the line says it came from there (GPUNN_DIST_TIMEOUT is not set)
                                       ("hang", r"\[rank 0 of ranks 0-1\]: waited [23] s in the stop-flag exchange; another rank "
                                                r"has stopped \(failed, hung or killed\)\. Aborting the job "
                                                r"\(world\(timeout=2\)\)\.\n"),
                                       ("die", ""),  # mpiexec's own report of the killed rank
                                       # before the fit, before MPI started on it: rank 0 waited in MPI_Init forever
                                       ("fail_before_the_fit", r"(?m)^gpunn \[rank 1 of ranks 0-1\]: this rank failed; "
                                                               r"aborting all ranks\.\nTraceback [\s\S]*\n"
                                                               r"FileNotFoundError: \S*X\.npy: rank 1 finds no data, "
                                                               r"on purpose\n"),
                                       # rank 1 left, with a status, before MPI started: rank 0 waited in MPI_Init
                                       # forever; a child process ends it now (gpunn/distributed/init_watch.py)
                                       ("leave_before_starting_mpi", r"\[rank 0 of ranks 0-1\]: waited [23] s in "
                                                                     r"MPI_Init, which every process of the job enters; "
                                                                     r"another has not started MPI \("),
                                       # rank 1 left, with a status, after MPI started: rank 0 waited in MPI_Comm_dup
                                       # forever (world(timeout=2))
                                       ("leave_after_starting_mpi", r"\[rank 0 of ranks 0-1\]: waited [23] s in the "
                                                                    r"set-up of gpunn's communicator; another rank has "
                                                                    r"stopped \(failed, hung or killed\)\."),
                                       # before the loop: the standardization statistics' pass over each rank's shard
                                       ("nan_in_a_shard", r"\[rank 1 of ranks 0-1\]: this rank failed; aborting all "
                                                          r"ranks\.\nTraceback [\s\S]*\ngpunn\.data\.errors\.DataError: "
                                                          r"\S*X\.npy row 30: column 1: nan is NaN; clean or impute it "
                                                          r"first\n")])
def test_a_rank_that_raises_hangs_or_dies_ends_the_job_within_bounded_time(tmp_path, mode, says):
    code, out, err = _run(mode, tmp_path, timeout=60)  # the time this process ran (not the minutes it may be stopped for)
    assert code != 0 and re.search(says, err), err
    # what the rank that ends the job printed, unflushed (block-buffered on the launcher's pipe): lost at MPI_Abort
    printed = {"fail": "rank 1 ends epoch 1\n", "hang": "rank 0 ends epoch 1\n",
               "fail_before_the_fit": "rank 1 looks for its data\n", "leave_after_starting_mpi": "rank 0 starts its fit\n"}
    assert printed.get(mode, "") in out, (out, err)
    if mode != "die":  # MPI_Abort's status, which mpiexec returns: 1 for a rank's error, 3 for a timeout
        assert code == {"fail": 1, "hang": 3, "nan_in_a_shard": 1, "fail_before_the_fit": 1,
                        "leave_after_starting_mpi": 3, "leave_before_starting_mpi": 9}[mode]  # (9: SIGKILL)
    # a failed or killed rank ends the job itself (its abort; the launcher), not the other rank's watchdog after
    # world(timeout=20): told by what the ranks wrote, not by a clock that a loaded machine runs past
    assert mode in ("hang", "leave_after_starting_mpi", "leave_before_starting_mpi") or "waited" not in err, err


@needs_mpi
@pytest.mark.slow
def test_ctrl_c_on_mpiexec_stops_every_rank_and_leaves_a_valid_checkpoint(tmp_path):
    import gpunn

    proc = _launch_and_wait("interrupt", tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = waiting.communicate(proc, 60)
    assert proc.returncode == 0, err
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["interrupted"] and result["epochs"] >= 1
    ckpt = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    assert ckpt.training["settings"]["ranks"] == 2
    assert ckpt.epoch >= result["epochs"]


@needs_mpi
@pytest.mark.slow
def test_sigterm_on_mpiexec_ends_every_rank_after_rank_0_wrote_the_stopped_runs_checkpoint(tmp_path):
    """The fit passes SIGTERM on as it returns; a rank > 0 (nothing to write) must not end first, or the
    launcher kills rank 0 while it writes the checkpoint of the batch reached."""
    import gpunn

    proc = _launch_and_wait("terminate", tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = waiting.communicate(proc, 60)
    assert proc.returncode != 0, err
    assert not list(tmp_path.glob("after*")), "a rank ran on past the fit"
    ckpt = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    assert ckpt.training["interrupted"], "the checkpoint is an epoch end's, not the stopped run's"
    assert ckpt.training["settings"]["ranks"] == 2


@needs_mpi
def test_an_error_every_rank_raises_and_no_script_catches_is_said_once_by_rank_0(tmp_path):
    """Each rank printed "this rank failed" and its traceback of the same ConfigMismatch, the ranks' lines
    interleaved (one per rank: 64 on 64 ranks). Rank 0 now says it once, for every rank, and ends the job, once the
    others have had EACH_SAYS_S to write out what their scripts printed: rank 1's line, slow to flush here (0.3 s),
    was lost to rank 0's abort (as it was, flushed at once, once in a full test run on a loaded machine)."""
    code, out, err = _run("mismatch_uncaught", tmp_path)
    assert code == 1, err
    assert "rank 1 made its data" in out  # written out before rank 1 waits for rank 0's abort, which ends it
    assert err.count("gpunn.distributed.digest.ConfigMismatch: the ranks are not training the same run") == 1, err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert "gpunn [ranks 0-1]: every rank failed with this error; aborting all ranks." in err
    assert "this rank failed" not in err


@needs_mpi
def test_every_ranks_own_error_at_one_point_is_said_by_each_rank(tmp_path):
    """Every rank refused its settings at the same point, each with its own words (here other arguments; each its own
    shard's file missing, in a user's script): each rank says its own, rank 1's too, where rank 0 said one error "for
    every rank" (4352a35); the contrast, the same error on every rank, is said once
    (test_an_error_every_rank_raises_and_no_script_catches_is_said_once_by_rank_0)."""
    code, _, err = _run("refused_apart", tmp_path)
    assert code == 1, err
    for rank in (0, 1):
        assert f"gpunn [rank {rank} of ranks 0-1]: this rank failed; aborting all ranks." in err, err
        assert err.count(f"ValueError: distributed must be True, 'mpi' or 'nccl', got 'rank{rank}'") == 1, err
    assert "every rank failed with this error" not in err


@needs_mpi
def test_a_resume_one_rank_refuses_under_mpiexec_is_raised_on_every_rank_and_ends_no_job(tmp_path):
    """The thread ranks' test_a_resume_that_one_rank_refuses_ends_every_ranks_resume_at_once_naming_that_rank_and_why
    under mpiexec: rank 1's files hold other values than the run's; each rank raises at once (rank 1 its refusal,
    rank 0 one naming rank 1 and its words), each script catches its own and goes on, and the job ends with status 0,
    not by the watchdog of rank 0 waiting in the check of the settings (world(timeout=20) there)."""
    code, _, err = _run("resume_refused_on_one_rank", tmp_path, timeout=60)
    assert code == 0, err
    said = json.loads((tmp_path / "out.json").read_text())["said"]
    assert said[1][0] == "ValueError" and " was trained on other values: " in said[1][1] and said[1][2], said
    assert said[0] == ["ConfigMismatch", f"rank 1 of ranks 0-1 refused to resume the run: ValueError: {said[1][1]}",
                       True], said


@needs_mpi
def test_a_resume_one_rank_refuses_that_no_script_catches_is_said_by_that_rank_alone(tmp_path):
    """test_a_resume_one_rank_refuses_under_mpiexec_is_raised_on_every_rank_and_ends_no_job with nothing catching
    the errors: rank 0 printed its traceback of the ConfigMismatch that only repeats rank 1's refusal (marked
    gpunn_said_by), under rank 1's own. Rank 1 now says it, and rank 0 nothing, as gpunn train's line is said by that
    rank alone; rank 1's abort ends the job, status 1."""
    code, _, err = _run("resume_refused_on_one_rank_uncaught", tmp_path, timeout=60)
    assert code == 1, err
    assert "gpunn [rank 1 of ranks 0-1]: this rank failed; aborting all ranks.\nTraceback " in err, err
    assert err.count("Traceback (most recent call last)") == 1 and " was trained on other values: " in err, err
    assert "refused to resume the run" not in err and "rank 0 of ranks 0-1" not in err, err


@needs_mpi
def test_fewer_training_rows_than_ranks_is_refused_on_every_rank(tmp_path):
    """Rank 0's piece of the first batch was empty: its divergence reference divided by zero rows, and
    ZeroDivisionError aborted the job (3 rows on 4 ranks, in memory or from a .npy source; here 1 on 2)."""
    code, _, err = _run("fewer_rows_than_ranks", tmp_path)
    assert code == 0, err
    said = json.loads((tmp_path / "out.json").read_text())
    for name in ("arrays", "npy"):
        assert said[name] == ("1 training row on 2 ranks: rank 0 would have no row to train on (each rank trains "
                              "its piece of every batch); train in one process"), name


@needs_mpi
def test_readmes_script_runs_under_mpiexec_and_rank_0_alone_saves_and_prints(tmp_path):
    """README's script.py as written, under mpiexec -n 2: it trains, every rank resumes from rank 0's checkpoint,
    and rank 0 alone saves the model and prints its metrics (each rank's print() showed)."""
    readme = (SCRIPT.parent.parent / "README.md").read_text()
    script = readme.split("A `script.py` for that last line", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "script.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent), GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    proc = own_session([mpiexec(), "-n", "2", sys.executable, "script.py"], cwd=tmp_path, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = ended(proc, 120)
    assert proc.returncode == 0, err
    assert re.findall(r"^R² (\S+)$", out, flags=re.M) == ["0.710"], out  # README's number for 2 ranks
    import gpunn

    model, ckpt = gpunn.load(tmp_path / "model.npz"), gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    assert ckpt.epoch == 6 and ckpt.training["settings"]["ranks"] == 2
    assert numpy.array_equal(model.params, ckpt.model.params)


@needs_mpi
def test_every_rank_that_loads_the_checkpoint_after_its_fit_reads_the_runs_last_one(tmp_path):
    """README's script loads run.npz on every rank right after the fit. Rank 1 left its fit while rank 0 was still
    writing the last checkpoint: it read the file of the epoch before (or none: FileNotFoundError aborted the job)."""
    code, _, err = _run("load_after_fit", tmp_path)
    assert code == 0, err
    assert json.loads((tmp_path / "out.json").read_text())["epochs"] == [3, 3]


@needs_mpi
@pytest.mark.parametrize("data", ["arrays", "stream"])
def test_gpunn_train_under_mpiexec_is_data_parallel_and_only_rank_0_writes(tmp_path, data):
    gpunn_cli = pathlib.Path(sys.executable).with_name("gpunn")
    env = dict(os.environ, GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    rows = ["--rows", "3000"] if data == "arrays" else ["--rows", "70000", "--stream", "on"]  # 17 pieces, 2 held out
    cmd = [mpiexec(), "-n", "2", str(gpunn_cli), "train", *rows, "--features", "4", "--hidden", "8",
           "--epochs", "2", "--batch-size", "64", "--device", "cpu", "--quiet",
           "--save", str(tmp_path / "run.npz"), "--json", str(tmp_path / "run.json")]
    proc = waiting.run(ending_with_this_process(cmd), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("launched by MPI with 2 processes") == 1
    assert proc.stdout.count("held-out:") == 1  # rank 1 prints nothing
    assert "batch 64 per rank x 2 ranks" in proc.stdout
    import gpunn

    ckpt = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    assert (ckpt.settings.ranks, ckpt.settings.batch_size) == (2, 64)
    if data == "stream":  # each rank generated its shard of the stream
        assert ckpt.training["source"]["shards"] == 2
    else:  # continued in one process: at the global batch, and says so
        cmd = [str(gpunn_cli), "train", "--resume", str(tmp_path / "run.npz"), "--epochs", "3", "--quiet"]
        proc = waiting.run(cmd, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert ", batch 128\n" in proc.stdout
    result = json.loads((tmp_path / "run.json").read_text())["result"]
    assert (result["epochs"], result["ranks"]) == (2, 2)  # (config's batch_size, 64, is per rank)


def _sweep_on_two_ranks(tmp_path, *options):
    """``mpiexec -n 2 gpunn sweep OPTIONS``, rank 0 in tmp_path and rank 1 in tmp_path/other (relative output
    paths then land apart, and rank 1's directory stays empty unless it writes): the finished process."""
    gpunn_cli = str(pathlib.Path(sys.executable).with_name("gpunn"))
    (tmp_path / "other").mkdir()
    env = dict(os.environ, GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    rank = ["sweep", "--hidden", "8", "--lr", "1e-3,1e-2", "--dtype", "float64", "--device", "cpu", "--quiet", *options]
    cmd = [mpiexec(), "-n", "1", "-wdir", str(tmp_path), gpunn_cli, *rank,
           ":", "-n", "1", "-wdir", str(tmp_path / "other"), gpunn_cli, *rank]
    proc = waiting.run(ending_with_this_process(cmd), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("launched by MPI with 2 processes") == 1 and proc.stdout.count("stopped early") == 1  # the table, once
    assert list((tmp_path / "other").iterdir()) == []  # rank 1 wrote nothing
    return proc


def _same_table(got, expected):
    """Two sweeps' --json members: the same ranking, validation curves equal to 1e-10 relative."""
    assert [(m["lr"], m["seed"], m["best_epoch"]) for m in got] == [(m["lr"], m["seed"], m["best_epoch"])
                                                                   for m in expected]
    for a, b in zip(got, expected):
        numpy.testing.assert_allclose(a["val_curve"], b["val_curve"], rtol=1e-10)


@needs_mpi
def test_gpunn_sweep_under_mpiexec_ranks_the_one_process_sweep_at_twice_the_batch_and_only_rank_0_writes(tmp_path):
    from gpunn import cli

    import gpunn

    task = ["--rows", "400", "--features", "4", "--epochs", "2", "--early-stopping"]
    _sweep_on_two_ranks(tmp_path, *task, "--batch-size", "16", "--json", "s.json", "--csv", "s.csv",
                        "--plot", "s.png", "--save-best", "best.npz", "--save", "saved")
    assert cli.main(["sweep", "--hidden", "8", "--lr", "1e-3,1e-2", "--dtype", "float64", "--device", "cpu", "--quiet",
                     *task, "--batch-size", "32", "--json", str(tmp_path / "one.json")]) == 0
    records = [json.loads((tmp_path / name).read_text()) for name in ("s.json", "one.json")]
    _same_table(*[record["members"] for record in records])
    assert [record["result"]["ranks"] for record in records] == [2, 1]  # (config's batch_size is per rank)
    assert (tmp_path / "s.csv").exists() and (tmp_path / "s.png").exists()
    assert isinstance(gpunn.load(tmp_path / "best.npz", device="cpu"), gpunn.MLP)
    ckpt = gpunn.load_checkpoint(tmp_path / "saved" / "ensemble-0.npz", device="cpu")
    assert (ckpt.settings.ranks, ckpt.settings.batch_size) == (2, 16)


@needs_mpi
def test_gpunn_sweep_on_a_file_under_mpiexec_reads_rank_shards_and_resumes_in_one_process(tmp_path, monkeypatch):
    # each rank reads its shard: the one-process order is the two shards' (ShardedSource(source, 2)) at 2b
    from gpunn import cli
    from gpunn.cli import data as data_cli
    from gpunn.distributed.shard import ShardedSource

    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((600, 4))
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X @ [[1.0], [2.0], [-1.0], [0.5]] + 0.1 * rng.standard_normal((600, 1)))
    data = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--standardize", "--seeds", "2",
            "--max-members", "2"]  # two ensembles: rank 0's split broadcast
    _sweep_on_two_ranks(tmp_path, *data, "--epochs", "1", "--batch-size", "8", "--save", "saved")
    # the 2-rank sweep resumed in one process, at the global batch: as the one process reading the two shards.
    # Ensemble 1 as if the sweep had stopped before it: started by the resumed run, at the global batch and on
    # the shards (it trained at the per-rank batch, then on the file's own order, so another table)
    (tmp_path / "saved" / "ensemble-1.npz").unlink()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--resume", "saved", "--epochs", "2", "--quiet", "--json", "resumed.json"]) == 0
    make_source = data_cli.make_source
    monkeypatch.setattr(data_cli, "make_source", lambda *a: (ShardedSource(make_source(*a)[0], 2), "2 shards"))
    assert cli.main(["sweep", "--hidden", "8", "--lr", "1e-3,1e-2", "--dtype", "float64", "--device", "cpu", "--quiet",
                     *data, "--epochs", "2", "--batch-size", "16", "--json", "one.json"]) == 0
    _same_table(*[json.loads((tmp_path / name).read_text())["members"] for name in ("resumed.json", "one.json")])


@needs_mpi
def test_gpunn_sweep_on_a_weighted_file_under_mpiexec_is_the_one_process_sweep_of_its_rank_shards(tmp_path,
                                                                                                 monkeypatch):
    """mpiexec -n 2 gpunn sweep --weights W.npy ran, untested: each rank weighs its shard's rows, and the table is the
    one process's of the two shards at the global batch (as unweighted, above), not the unweighted sweep's."""
    from gpunn import cli
    from gpunn.cli import data as data_cli
    from gpunn.distributed.shard import ShardedSource

    rng = numpy.random.default_rng(1)
    X = rng.standard_normal((600, 4))
    w = rng.uniform(0.0, 3.0, 600)
    w[::7] = 0.0  # rows that do not count
    for name, a in (("X", X), ("Y", X @ [[1.0], [2.0], [-1.0], [0.5]] + 0.1 * rng.standard_normal((600, 1))),
                    ("w", w)):
        numpy.save(tmp_path / f"{name}.npy", a)
    data = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), "--epochs", "2"]
    _sweep_on_two_ranks(tmp_path, *data, "--weights", str(tmp_path / "w.npy"), "--batch-size", "8", "--json",
                        "two.json")
    monkeypatch.chdir(tmp_path)
    make_source = data_cli.make_source
    monkeypatch.setattr(data_cli, "make_source", lambda *a: (ShardedSource(make_source(*a)[0], 2), "2 shards"))
    sweep = ["sweep", "--hidden", "8", "--lr", "1e-3,1e-2", "--dtype", "float64", "--device", "cpu", "--quiet", *data,
             "--batch-size", "16"]
    assert cli.main([*sweep, "--weights", str(tmp_path / "w.npy"), "--json", "one.json"]) == 0
    assert cli.main([*sweep, "--json", "unweighted.json"]) == 0
    two, one, unweighted = (json.loads((tmp_path / f"{name}.json").read_text())["members"]
                            for name in ("two", "one", "unweighted"))
    _same_table(two, one)
    assert not numpy.allclose(two[0]["val_curve"], unweighted[0]["val_curve"], rtol=1e-3)  # (the weights count)


def test_a_refused_command_line_names_the_rank_and_ends_the_job_only_in_a_launched_run(monkeypatch, capsys):
    """A rank of mpiexec gpunn train whose command line argparse refuses says so naming its rank and ends the job
    (end_launched_job, stubbed here). Outside a launch, and in a later command of the same process, the line is
    argparse's own and nothing ends (mut20: F04 named the rank outside a launch, F06 left the rank's words in place
    after a refusal, F03 ended the job outside a launch)."""
    from gpunn import cli
    from gpunn.distributed import comm

    ended, checked = [], []
    monkeypatch.setattr(comm, "end_launched_job", ended.append)
    monkeypatch.setattr(comm, "same_command_on_every_rank", checked.append)  # MPI never started here: no agreement
    monkeypatch.setattr(comm, "_REPORT", [])  # the launched command sets how a rank's failure is said: not for later
    for name in comm._SIZE_VARIABLES + comm._RANK_VARIABLES + comm._LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    argv = ["train", "--data", "X.npy", "--targets", "Y.npy", "--bogus"]
    said = "error: unrecognized arguments: --bogus (see gpunn train --help)"
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    assert cli.main(argv) == 2 and ended == [2] and checked == ["train"]  # (the others' next collective: joined)
    assert capsys.readouterr().err.splitlines() == [f"gpunn train [rank 1 of ranks 0-1]: {said}"]
    monkeypatch.delenv("PMI_SIZE")
    monkeypatch.delenv("PMI_RANK")
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2 and ended == [2]
    assert capsys.readouterr().err.splitlines()[-1] == f"gpunn train: {said}"


@needs_mpi
@pytest.mark.parametrize("command,where", [("train", "before"), ("train", "inside"), ("sweep", "inside"),
                                           ("train", "held out"), ("train", "option"), ("sweep", "option")])
def test_gpunn_train_or_sweep_failing_on_one_rank_ends_the_job_in_one_line(tmp_path, command, where):
    # before the fit: a file that one rank cannot read (another node's disk, a typo in a per-rank command),
    # so that rank fails before MPI starts and the other waited for it in MPI_Init forever (mpiexec does
    # not end it). Inside the fit: a NaN in one rank's shard, found as it reads it, which printed a
    # traceback where gpunn train prints one line (gpunn sweep under mpiexec the same, 8e1ccbe). Held out: a
    # float32 value that the training chunks' statistics take past float32, in rank 1's share of the validation
    # chunks, refused by that rank's validation alone (the sharded validation's check). An option one rank's
    # command line has and gpunn does not: argparse's refusal (SystemExit, which the command's except did not
    # take) left the rank without ending the job, and the other waited for it (killed at 30 s)
    gpunn_cli = pathlib.Path(sys.executable).with_name("gpunn")
    X = numpy.ones((400, 3))
    X[390, 1] = numpy.nan  # in the second half: rank 1's shard
    numpy.save(tmp_path / "X.npy", X if where == "inside" else numpy.ones((400, 3)))
    numpy.save(tmp_path / "Y.npy", numpy.ones((400, 1)))
    standardize = []
    says = {"before": "missing.npy: no such file", "inside": "X.npy row 390: column 1: nan is NaN",
            "option": f"unrecognized arguments: --bogus (see gpunn {command} --help)"}.get(where)
    if where == "held out":  # gpunn train holds out a tenth of the chunks (seed 0); rank 1 scores the second half
        import gpunn.data
        from gpunn.distributed.shard import piece

        X = numpy.column_stack([numpy.linspace(0, 1, 400), numpy.linspace(0, 0.1, 400), numpy.linspace(2, 3, 400)])
        numpy.save(tmp_path / "Y.npy", X[:, :1].astype(numpy.float32))
        numpy.save(tmp_path / "X.npy", X.astype(numpy.float32))
        held = gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy"), validation_fraction=0.1)
        chunks = list(held.validation_chunks)
        row = sum(held.chunk_sizes[:chunks[slice(*piece(len(chunks), 1, 2))][0]]) + 3
        X[row, 1] = 3e38  # about 1e40 under the training chunks' spread of 0.03
        numpy.save(tmp_path / "X.npy", X.astype(numpy.float32))
        standardize, says = ["--standardize"], f"X.npy row {row}: column 1: 3e+38 is "
    env = dict(os.environ, GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

    def rank(data):
        return ["-n", "1", str(gpunn_cli), command, "--data", str(tmp_path / data), "--targets",
                str(tmp_path / "Y.npy"), "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet", *standardize]

    second = rank("missing.npy" if where == "before" else "X.npy") + (["--bogus"] if where == "option" else [])
    proc = own_session([mpiexec(), *rank("X.npy"), ":", *second], env=env, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    # a job that failed to end waits in MPI_Init forever, or until the 300 s watchdog
    _, err = ended(proc, 120, "the job hung after one rank failed")
    assert proc.returncode == 2, err
    assert re.search(rf"^gpunn {command} \[rank 1 of ranks 0-1\]: error: .*" + re.escape(says), err, re.M), err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith(f"gpunn {command} [rank 1 of ranks 0-1]: error: "))
    assert "Abort(" not in line  # a line of its own: MPI's report of the abort follows on the next


def test_a_scripts_rank_interrupted_before_mpi_started_leaves_as_python_does(monkeypatch):
    """Ctrl-C on mpiexec -n 2 python script.py while one rank still imported gpunn: that rank left with Python's
    KeyboardInterrupt, and the other, past the import, went to end the job, which starts MPI, and waited in MPI_Init
    for it GPUNN_DIST_TIMEOUT s (then hydra's "Segmentation fault (signal 11)" of the rank killed there). A Ctrl-C
    reaches every process: where MPI has not started, the hook leaves it to Python. Another exception still ends
    the job (stubbed here)."""
    from gpunn.distributed import comm

    ended, said = [], []
    monkeypatch.setattr(comm, "end_launched_job", ended.append)
    monkeypatch.setattr(comm, "_say", lambda text: None)
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    for name in comm._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(sys, "excepthook", lambda kind, exc, tb: said.append(kind))
    comm.end_job_on_uncaught_exception()
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert said == [KeyboardInterrupt] and ended == []
    sys.excepthook(ValueError, ValueError("no data"), None)
    assert said == [KeyboardInterrupt, ValueError] and ended == [1]


def test_a_rank_interrupted_before_mpi_started_leaves_without_starting_mpi_to_end_the_job(monkeypatch, capsys):
    """Ctrl-C on mpiexec -n 2 gpunn train half a second in: rank 0, still starting (gpunn._startup), left without
    MPI, and rank 1, interrupted just after, started MPI to end the job and waited for rank 0 in MPI_Init for
    GPUNN_DIST_TIMEOUT (300 s) until the watchdog killed it. Every process got the Ctrl-C: one that has not started
    MPI now says its line and leaves. Another failure still ends the job (stubbed here)."""
    from gpunn import cli
    from gpunn.distributed import comm

    ended = []
    monkeypatch.setattr(comm, "end_launched_job", ended.append)
    monkeypatch.setattr(comm, "_WORLD", {})
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    for name in comm._SIZE_VARIABLES + comm._RANK_VARIABLES + comm._LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    argv = ["train", "--rows", "200"]
    line = "gpunn train: interrupted (Ctrl-C); any checkpoint is the last one completely written"
    assert cli._failed(130, line, argv, KeyboardInterrupt()) == 130 and ended == []
    assert capsys.readouterr().err == f"gpunn train [rank 1 of ranks 0-1]: {line.partition(': ')[2]}\n"
    assert cli._failed(2, "gpunn train: error: no such file", argv, ValueError("no such file")) == 2 and ended == [2]


@needs_mpi
@pytest.mark.parametrize("refused, says", [
    (["--batch-size", "0"], "argument --batch-size: must be positive, got 0 (see gpunn train --help)"),
    (["--resume", "missing.npz"], "--resume missing.npz does not exist")])
def test_a_command_line_every_rank_refuses_is_said_once_and_aborts_nothing(tmp_path, refused, says):
    """mpiexec -n 2 gpunn train --batch-size 0 (a typo any rank's argparse refuses; a --resume file that is not
    there) was said by every rank, each naming its own rank and aborting the job: MPI's "Abort(2) on node ..."
    after the lines, as if gpunn had crashed."""
    train = ["train", "--rows", "200", "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet", *refused]
    code, _, err = _gpunn_ranks(tmp_path, train, train)
    assert [line for line in err.splitlines() if line.startswith("gpunn")] == [
        f"gpunn train [ranks 0-1]: error: {says}"], err
    assert code == 2 and "Abort(" not in err, err


def _gpunn_ranks(tmp_path, *ranks):
    """(status, stdout, stderr) of ``mpiexec -n 1 gpunn ARGS : ...``, one rank per ``ranks`` entry (its arguments),
    in ``tmp_path``, within 120 s; a job that does not end fails the test."""
    gpunn_cli = pathlib.Path(sys.executable).with_name("gpunn")
    env = dict(os.environ, GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [mpiexec()]
    for own in ranks:
        cmd += [":"] if len(cmd) > 1 else []
        cmd += ["-n", "1", str(gpunn_cli), *own]
    proc = own_session(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    out, err = ended(proc, 120)
    return proc.returncode, out, err


def _save_train_files(tmp_path, X):
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", numpy.ones((X.shape[0], 1)))
    return ["train", "--data", "X.npy", "--targets", "Y.npy", "--hidden", "4", "--epochs", "1", "--device", "cpu",
            "--quiet"]


@needs_mpi
@pytest.mark.parametrize("case", ["settings", "a NaN in each shard"])
def test_gpunn_train_says_an_error_every_rank_raises_alike_once(tmp_path, case):
    """An error every rank raises at the same point (the settings check: ranks given different --lr; a NaN in each
    rank's shard, met in the statistics pass) was said by every rank, each line naming its rank, and each rank then
    aborted the job (MPI's "Abort(2) on node ..." lines after them, and a line lost where one rank's abort ended
    another before it wrote). Now the ranks compare their lines: one the ranks share is said once by rank 0, naming
    the ranks (each rank's own where they differ); every rank exits with status 2, and nothing aborts. The NaNs
    were each rank's own line (rows 5 and 390) until every rank named the file's first
    (ChunkedSource._check_finite)."""
    X = numpy.random.default_rng(0).normal(size=(400, 3))
    if case != "settings":
        X[[5, 390], 1] = numpy.nan  # rank 0's shard and rank 1's
    train = _save_train_files(tmp_path, X)
    own = [["--lr", "0.01"], ["--lr", "0.02"]] if case == "settings" else [["--standardize"]] * 2
    code, _, err = _gpunn_ranks(tmp_path, *[train + o for o in own])
    said = [line for line in err.splitlines() if line.startswith("gpunn train [")]
    if case == "settings":
        assert said == ["gpunn train [ranks 0-1]: error: the ranks are not training the same run; these settings "
                        "differ (before the first step): optimizer.lr: 0.01 on rank 0; 0.02 on rank 1"], err
    else:
        assert said == ["gpunn train [ranks 0-1]: error: X.npy row 5: column 1: nan is NaN; clean or impute it "
                        "first"], err
    assert code == 2 and "Abort(" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("failed", [(0, 1), (1,), ()])
def test_ranks_that_failed_before_any_collective_agree_on_it_with_the_others(fake_cupy, monkeypatch, failed):
    """comm.agreeing_before_any_collective, on two thread ranks (tests/thread_ranks.py) that have begun no collective
    since the command check: every rank failed -> each gets its error back marked as raised on every rank, nothing
    aborts; one rank -> it aborts the job, the other (whose command ended with no fit) waits for that; none -> one
    gather, nothing raised. A rank that has begun a collective since takes no part (it failed inside the fit)."""
    from gpunn.distributed import comm
    from thread_ranks import run_ranks

    monkeypatch.setattr(comm, "started_world", lambda: comm.world())  # (run_ranks's world: this thread's rank)
    monkeypatch.setattr(comm, "_REPORT", [])

    def rank(r):
        control = comm.world()
        control.collectives = 3
        comm.next_collective_agrees()  # (as the ranks' command check notes it: the next collective is an agreement)
        error = ValueError("missing.npy: no such file") if r in failed else None
        comm.agreeing_before_any_collective(error)
        control.collectives += 1  # one collective begun since: no part in any agreement (no gather here to wait in)
        comm.agreeing_before_any_collective(error)
        return error is not None and comm.is_raised_on_every_rank(error)

    outcomes, aborted = run_ranks(monkeypatch, 2, rank, timeout=10.0)
    if len(failed) == 2:
        assert outcomes == [(True, None), (True, None)] and aborted == [], (outcomes, aborted)
    elif failed:
        assert aborted == [(1, 1)] and outcomes[1] == (False, None), (outcomes, aborted)
        assert type(outcomes[0][1]).__name__ == "BrokenBarrierError", outcomes  # waited for the abort
    else:
        assert outcomes == [(False, None), (False, None)] and aborted == [], (outcomes, aborted)


@needs_mpi
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_gpunn_train_or_sweep_failing_alike_on_every_rank_before_the_fit_says_it_once(tmp_path, command):
    """An error every rank meets before the fit (here a --data file no rank can read; also the command's own checks)
    was said by every rank, each then aborting the job (MPI's "Abort(2) ..." lines after them): nothing marked it as
    raised on every rank. A rank that failed before any collective since the command check now says so in the
    others' first one, an agreement on who failed (the statistics pass, the data-parallel settings, the sweep's
    split): where every rank failed, the line they share is said once, status 2, nothing aborts. One rank alone still
    ends the job (test_gpunn_train_or_sweep_failing_on_one_rank_ends_the_job_in_one_line, "before")."""
    train = _save_train_files(tmp_path, numpy.ones((40, 3)))
    train[0:3] = [command, "--data", "missing.npy"]
    code, _, err = _gpunn_ranks(tmp_path, train, train)
    assert [line for line in err.splitlines() if "error" in line] == [
        f"gpunn {command} [ranks 0-1]: error: missing.npy: no such file (features)"], err
    assert code == 2 and "Abort(" not in err, err


@needs_mpi
@pytest.mark.slow
def test_gpunn_sweep_failing_on_one_rank_between_its_ensembles_ends_the_job(tmp_path, monkeypatch):
    """The ranks agree on who failed in each ensemble's first collective after the first (an error every rank meets
    there is said once: test_agreement_points.py). A rank that alone cannot read the second ensemble's checkpoint
    (here rank 0 resumes a copy of the sweep whose ensemble-1.npz is not one, rank 1 the sweep) still ends the job at
    once with its line, where rank 1 waits for it in that agreement (the watchdog's 300 s otherwise)."""
    from gpunn import cli

    sweep = ["sweep", "--lr", "1e-3,1e-2", "--max-members", "1", "--hidden", "4", "--epochs", "1", "--batch-size",
             "16", "--rows", "200", "--features", "3", "--device", "cpu", "--quiet"]
    for name in ("PMI_SIZE", "PMI_RANK"):  # (saved by one process)
        monkeypatch.delenv(name, raising=False)
    assert cli.main([*sweep, "--save", str(tmp_path / "good")]) == 0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ensemble-0.npz").write_bytes((tmp_path / "good" / "ensemble-0.npz").read_bytes())
    (tmp_path / "bad" / "ensemble-1.npz").write_bytes(b"not a checkpoint")

    def rank(saved):
        return ["sweep", "--resume", saved, "--epochs", "2", "--save", f"{saved}-2", "--quiet"]

    code, _, err = _gpunn_ranks(tmp_path, rank("bad"), rank("good"))
    assert [line for line in err.splitlines() if "error" in line] == [
        "gpunn sweep [rank 0 of ranks 0-1]: error: bad/ensemble-1.npz: not a gpunn checkpoint (text, not an "
        ".npz/zip archive)"], err
    # rank 0's line (not the ranks' shared one) and status 2: its abort. Not MPICH's "Abort(2) on node 0" line, which
    # MPI_Abort writes just before the abort reaches mpiexec, which exits then and may never forward it (gpunn's own
    # line is read by the launcher before the abort: gpunn/distributed/output.py)
    assert code == 2, err


@needs_mpi
@pytest.mark.parametrize("asks,who", [(["train", "-h"], "one rank"), (["--version"], "one rank"),
                                      (["train", "--help"], "every rank"), (["--version"], "every rank")])
def test_help_or_version_on_one_rank_of_an_mpmd_launch_refuses_the_job_and_on_every_rank_prints_it(tmp_path, asks,
                                                                                                   who):
    """mpiexec -n 1 gpunn train --help : -n 1 gpunn train ...: the rank that printed its help left with status 0, and
    the other waited for it in MPI_Init forever (no abort, no timeout reaches there). Every rank of a launched gpunn
    train now says what it does in one gather before it reads data, the rank that printed help or version too: where
    they differ, every rank is refused in one line said once, status 2; where every rank asked for help alike, each
    prints it and the job ends with status 0, as gpunn train --help does."""
    train = _save_train_files(tmp_path, numpy.ones((40, 3)))
    code, out, err = _gpunn_ranks(tmp_path, *([asks, train] if who == "one rank" else [asks, asks]))
    from gpunn import __version__

    printed = f"gpunn {__version__}" if asks == ["--version"] else "usage: gpunn train "
    if who == "every rank":
        assert code == 0 and out.count(printed) == 2 and "error" not in err, (out, err)
        return
    said = " ".join(a if a != "-h" else "--help" for a in asks)
    assert code == 2 and out.count(printed) == 1, (out, err)
    prog = "gpunn" if asks == ["--version"] else "gpunn train"  # rank 0's, which says it
    printed = "version" if asks == ["--version"] else "help"
    assert [line for line in err.splitlines() if "error" in line] == [
        f'{prog} [ranks 0-1]: error: the ranks do not all run the same command, and one that prints its {printed} and '
        'leaves would leave the others waiting for it; give every rank the same command: command: '
        f'"{said}" on rank 0; "train" on rank 1'], err


@needs_mpi
@pytest.mark.parametrize("other", [["info"], pytest.param(["predict", "model.npz", "X.npy", "P.npy"],
                                                          marks=pytest.mark.slow)])
def test_a_command_that_is_not_data_parallel_beside_training_ranks_refuses_the_job_in_one_line(tmp_path, other):
    """mpiexec -n 1 gpunn train ... : -n 1 gpunn info: info printed and left (predict refused, on a rank other than 0
    without a word), and the training rank waited for it in MPI_Init forever. Under a launcher with several processes
    every command takes part in the ranks' command check now: every rank is refused, in one line said once."""
    train = _save_train_files(tmp_path, numpy.ones((40, 3)))
    code, out, err = _gpunn_ranks(tmp_path, train, other)
    assert code == 2 and "gpunn " not in out, (out, err)
    assert [line for line in err.splitlines() if "error" in line] == [
        'gpunn train [ranks 0-1]: error: the ranks do not all run the same command; give every rank the same command: '
        f'command: "train" on rank 0; "{other[0]}" on rank 1'], err


@pytest.mark.parametrize("said,what,why", [
    (["train", "sweep"], "command", "the ranks do not all run the same command; "),
    (["train --help", "--version"], "command", "the ranks do not all run the same command, and one that prints its "
                                               "help or version and leaves would leave the others waiting for it; "),
    (["small 0 3", "small 4 3"], "arguments", "the ranks were not all given the same arguments; "),
    (["-h", "small 4 3"], "arguments", "the ranks were not all given the same arguments, and one that prints its help "
                                       "and leaves would leave the others waiting for it; ")])
def test_ranks_that_differ_in_their_command_or_arguments_are_told_what_differs(said, what, why):
    """comm.differing_commands, the refusal of same_command_on_every_rank: ranks given other arguments (dist_bench's
    BATCH on one rank) or another command (train beside sweep) were told that "one that prints its help or version
    and leaves would leave the others waiting", which no rank had asked for; it is said only where one did, naming
    which it printed."""
    from gpunn.distributed.comm import differing_commands

    assert " ".join(str(differing_commands(said, what)).split()) == (
        f'{why}give every rank the same {what}: {what}: "{said[0]}" on rank 0; "{said[1]}" on rank 1')


def test_a_failure_in_a_one_process_distributed_fit_reaches_the_caller():
    # one process without MPI (LocalComm): no other rank waits for this one, so an error in the fit (here a second
    # Ctrl-C, KeyboardInterrupt) is raised to the caller as from any fit, whose own except/finally runs; it ended
    # the process at once (os._exit), which killed a notebook's kernel
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import gpunn\n"
            "class SecondCtrlC(gpunn.Callback):\n"
            "    def on_batch_end(self, trainer, batch):\n"
            "        raise KeyboardInterrupt\n"
            "X, Y = gpunn.datasets.make('teacher', 40, 5, 2, device='cpu', seed=1)\n"
            "try:\n"
            "    gpunn.MLP([5, 8, 2], device='cpu', seed=0).fit(X, Y, epochs=1, verbose=False, distributed=True,\n"
            "                                                   callbacks=[SecondCtrlC()])\n"
            "except KeyboardInterrupt:\n"
            "    print('caught by the caller')\n"
            "print('after the fit')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                                                            "PMIX_SIZE")}
    run = waiting.run([sys.executable, "-c", code], timeout=60, env=dict(env, PYTHONPATH=str(SCRIPT.parent.parent)))
    assert run.returncode == 0 and run.stdout == "caught by the caller\nafter the fit\n", (run.returncode, run.stdout,
                                                                                              run.stderr)
    assert "aborting" not in run.stderr, run.stderr


@needs_mpi
def test_a_launched_process_that_fails_before_mpi_ends_the_job_even_where_the_others_left_without_mpi(tmp_path):
    # end_launched_job initialises MPI to abort; with no other process there to initialise it too, MPI_Init
    # never finishes, and after GPUNN_DIST_TIMEOUT seconds (2 here) the process says so and is killed (init_watch):
    # mpiexec's status 9. It was a SIGALRM, whose end said only "Alarm clock" (status 14)
    code = ("import sys\n"
            "from gpunn.distributed.comm import end_launched_job, launched_rank\n"
            "if launched_rank() == 1:\n"
            "    sys.exit(0)\n"
            "end_launched_job(2)\n"
            "print('not reached')\n")
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent.parent), GPUNN_DIST_TIMEOUT="2")
    proc = own_session([mpiexec(), "-n", "2", sys.executable, "-c", code], env=env, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    out, err = ended(proc, 60, "the process waited in MPI_Init for ranks that had left")
    assert proc.returncode == 9 and "not reached" not in out, out
    assert re.search(r"(?m)^gpunn \[rank 0 of ranks 0-1\]: waited [23] s in MPI_Init \(started to end the job: this "
                     r"rank failed\), which every process of the job enters; another has not started MPI \(.*\)\. "
                     r"Ending the job \(GPUNN_DIST_TIMEOUT=2 s\)\.$", err), err



@needs_mpi
def test_gpunn_info_beside_a_process_that_never_starts_mpi_says_what_it_waited_for_and_ends_the_job(tmp_path):
    """gpunn info under a launcher of several processes starts MPI for the ranks' check that each runs the same
    command. Beside a process that never starts MPI (no gpunn in it) an alarm ended it after GPUNN_DIST_TIMEOUT
    saying only "Alarm clock" (status 14); gpunn's timed start of MPI now says what the rank waited for and the
    variable, and the job ends (status 9)."""
    gpunn_cli = pathlib.Path(sys.executable).with_name("gpunn")
    env = dict(os.environ, GPUNN_DEVICE="cpu", GPUNN_DIST_TIMEOUT="2")
    proc = own_session([mpiexec(), "-n", "1", str(gpunn_cli), "info", ":", "-n", "1", sys.executable, "-c", "pass"],
                       env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    _, err = ended(proc, 60, "gpunn info waited in MPI_Init for a process that never starts MPI")
    assert proc.returncode == 9, err
    assert re.search(r"(?m)^gpunn info \[rank 0 of ranks 0-1\]: waited [23] s in MPI_Init, which every process of "
                     r"the job enters; another has not started MPI \(.*\)\. Ending the job \(GPUNN_DIST_TIMEOUT=2 s\)\.$",
                     err), err

def _marked(marker):
    """The processes whose command line holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    found.append(int(pid))
        except OSError:  # ended meanwhile
            pass
    return found


@needs_mpi
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the kernel's parent-death signal")
@pytest.mark.parametrize("launch", ["own_session(job)", "subprocess.Popen(ending_with_this_process(job))"])
def test_an_mpiexec_job_a_test_starts_ends_when_the_test_run_is_killed(launch):
    """A runner that ends a test run (a mutation harness's timeout) kills pytest, or its process group; an mpiexec
    job that a test started in a session of its own (mpi_launch.own_session) is in neither, and lived on with its
    ranks, as one in pytest's group did when pytest alone was killed. Now the kernel kills mpiexec with the process
    that started it, and mpiexec's ranks end with it."""
    import uuid

    marker = f"gpunn-own-session-{uuid.uuid4().hex}"
    tests = str(pathlib.Path(__file__).parent)
    code = ("import os, subprocess, sys, time\n"
            f"sys.path.insert(0, {tests!r})\n"
            "from mpi_launch import ending_with_this_process, mpiexec, own_session\n"
            "job = [mpiexec(), '-n', '2', sys.executable, '-c', 'import time; time.sleep(300)', os.environ['MARKER']]\n"
            f"{launch}\n"
            "print('launched', flush=True)\n"
            "time.sleep(300)\n")
    # the marker in the job's command lines only (the runner's holds the code, which reads it from its environment)
    runner = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, MARKER=marker), stdout=subprocess.PIPE,
                              text=True)
    try:
        waiting.read_until(runner, "launched", 60)
        deadline = waiting.Deadline(60)
        while len(_marked(marker)) < 3 and not deadline.expired():  # mpiexec and its two ranks
            time.sleep(0.1)
        assert len(_marked(marker)) >= 3, "the job did not start"
        runner.kill()  # as a harness's SIGKILL ends pytest (alone: the job in its group is not signalled either)
        runner.wait()
        deadline = waiting.Deadline(30)
        while _marked(marker) and not deadline.expired():
            time.sleep(0.1)
        assert _marked(marker) == [], "the job outlived the process that started it"
    finally:
        runner.kill()
        for pid in _marked(marker):  # only this test's own job
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_nccl_unloadable_without_any_nvidia_wheel_says_what_to_install(fake_cupy, monkeypatch):
    """A CuPy on a system CUDA toolkit has no nvidia-* wheel, so no ``nvidia`` package: find_spec("nvidia.nccl")
    raised ModuleNotFoundError (No module named 'nvidia') out of NcclComm, instead of returning None and the
    DistributedError that says what to install (found by bench/gpu_checks/nccl.py on the stand-in, Python 3.12)."""
    import sys

    from gpunn import backend
    from gpunn.distributed import comm
    from gpunn.distributed.comm import DistributedError, LocalComm, NcclComm

    class TwoRanks(LocalComm):  # (one process needs no NCCL: its fit is the plain fit)
        size, local_size = 2, 2

    monkeypatch.setitem(sys.modules, "nvidia", None)  # import nvidia fails, as with no such package
    monkeypatch.setattr(comm, "check_one_gpu_per_rank", lambda control, backend: None)
    with pytest.raises(DistributedError, match="CuPy cannot load NCCL: pip install nvidia-nccl-cu12"):
        NcclComm(backend.resolve("cuda"), TwoRanks())


def test_a_sharded_pass_closes_every_shards_pass_when_it_ends_early(tmp_path, monkeypatch):
    """A pass over a ShardedSource that ends early closes each shard's pass it opened (its reader thread, its
    pipeline's buffers), as a generator's close() would: when one shard raises (a NaN in shard 1) the other's is
    closed before the error reaches the caller (it stayed open for as long as the traceback lived: in a notebook,
    until the next error); a close that raises does not keep the others open, and is raised from close()."""
    import gpunn.data
    from gpunn.distributed.shard import ShardedSource, _ShardView

    opened, closed, failing = [], [], []
    real = _ShardView.batches

    def batches(view, *args):  # the real pass, which says when it is closed
        opened.append(view)
        try:
            yield from real(view, *args)
        finally:
            closed.append(view)
            if view in failing:
                raise RuntimeError("shard 0's close failed")

    monkeypatch.setattr(_ShardView, "batches", batches)
    Y = numpy.zeros((40, 1))
    Y[30] = numpy.nan  # in shard 1: rows 20-39
    numpy.save(tmp_path / "x.npy", numpy.arange(40.0)[:, None])
    numpy.save(tmp_path / "y.npy", Y)
    source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=5, window=1, shuffle=False,
                            device="cpu")
    with pytest.raises(DataError, match="row 30") as caught:  # (caught holds the traceback, as a notebook does)
        for _ in ShardedSource(source, 2).batches(0, 10):
            pass
    assert len(opened) == len(closed) == 2 and set(closed) == set(opened)
    opened.clear(), closed.clear()
    batches = ShardedSource(source, 2).batches(0, 10)
    next(batches)
    failing.append(opened[0])
    with pytest.raises(RuntimeError, match="shard 0's close failed"):
        batches.close()
    assert len(opened) == len(closed) == 2 and set(closed) == set(opened)
    del caught


def test_on_gpus_a_run_stopped_part_way_through_an_epoch_resumes_on_two_ranks_with_that_epochs_loss(
        tmp_path, fake_cupy, monkeypatch, interrupt_at):
    """A data-parallel run stopped after batch 2 of epoch 2 and resumed on two ranks reports the epoch losses of the
    run that never stopped: rank 0 alone carries the saved part-epoch sum into the epoch's reduction (carried by
    every rank, it was counted twice). Two ranks on the stand-in's GPUs (tests/thread_ranks.py); the same under
    mpiexec: tests/mpi_script.py's resume."""
    import gpunn
    from thread_ranks import run_ranks

    X, Y = gpunn.datasets.make("teacher", 96, 3, 1, device="cpu", seed=1)
    X, Y = numpy.asarray(X), numpy.asarray(Y)
    path = tmp_path / "run.npz"

    def fit(rank, callbacks=()):
        model = gpunn.MLP([3, 8, 1], device=f"cuda:{rank}", seed=0)
        return model.fit(X, Y, epochs=3, batch_size=8, callbacks=list(callbacks), verbose=False, distributed=True)

    def resume(rank):
        return gpunn.load_checkpoint(path, device=f"cuda:{rank}").resume(X, Y, verbose=False, distributed=True)

    straight, _ = run_ranks(monkeypatch, 2, fit)[0][0]
    run_ranks(monkeypatch, 2, lambda rank: fit(rank, [interrupt_at(1, 2), gpunn.ModelCheckpoint(path)]))
    outcomes, aborted = run_ranks(monkeypatch, 2, resume)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    for resumed, _ in outcomes:
        assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-6)


def test_on_gpus_a_data_parallel_resume_refuses_held_out_rows_other_than_the_runs(tmp_path, fake_cupy, monkeypatch):
    """A two-rank run holding out validation_fraction of in-memory arrays records those rows' checksum (every row's,
    rank 0 writing it), and a two-rank resume on arrays whose held-out rows alone differ is refused by every rank;
    it went on, its val_loss on other rows. Two ranks on the stand-in's GPUs (tests/thread_ranks.py)."""
    import gpunn
    from gpunn.training.fit import held_out_rows
    from thread_ranks import run_ranks

    X, Y = gpunn.datasets.make("teacher", 96, 3, 1, device="cpu", seed=1)
    X, Y = numpy.asarray(X), numpy.asarray(Y)
    path = tmp_path / "run.npz"
    run_ranks(monkeypatch, 2, lambda rank: gpunn.MLP([3, 8, 1], device=f"cuda:{rank}", seed=0).fit(
        X, Y, epochs=1, batch_size=8, validation_fraction=0.25, verbose=False, distributed=True,
        callbacks=[gpunn.ModelCheckpoint(path)]))
    assert gpunn.load_checkpoint(path, device="cpu").training["held_out"]["rows"] == 24
    other = Y.copy()
    other[held_out_rows(96, 0.25, gpunn.load_checkpoint(path, device="cpu").settings.seed)[0][0]] += 1

    def resume(Y):
        return lambda rank: gpunn.load_checkpoint(path, device=f"cuda:{rank}").resume(
            X, Y, epochs=2, verbose=False, checkpoint=False, distributed=True)

    outcomes, aborted = run_ranks(monkeypatch, 2, resume(other), timeout=10.0)
    assert aborted == [], (aborted, outcomes)
    for _, exc in outcomes:
        assert type(exc) is ValueError and "held out other rows: the held-out rows (validation_fraction=0.25's 24)" \
            in str(exc), outcomes
    outcomes, aborted = run_ranks(monkeypatch, 2, resume(Y))
    assert aborted == [] and [history["epoch"] for history, _ in outcomes] == [[1, 2]] * 2, outcomes


@pytest.fixture
def srun_step(monkeypatch):
    """``srun_step(tasks, task, **more)``: this process as task ``task`` of an srun step of ``tasks`` tasks
    (SLURM_STEP_NUM_TASKS, SLURM_PROCID) with no MPI launcher's variable set but ``more``; the once-per-process
    warning of each task training the whole run not yet said."""
    from gpunn import _startup
    from gpunn.distributed import comm

    def step(tasks=None, task=None, **more):
        for name in (*_startup._MPI_WIREUP_VARIABLES, "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_NTASKS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {"SLURM_STEP_NUM_TASKS": tasks, "SLURM_PROCID": task, **more}.items():
            if value is not None:
                monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(comm, "_SAID_EACH_TRAINS_IT_ALL", [])
        return _startup.srun_tasks_without_mpi()

    step()
    return step


def test_an_srun_step_of_several_tasks_without_mpi_is_told_by_srun_not_by_sbatch_or_an_mpi_wire_up(srun_step):
    """srun -n 4 with the cluster's MpiDefault none (no --mpi=pmix) starts 4 processes whose MPI is each a job of one:
    SLURM_STEP_NUM_TASKS says 4 and no launcher's variable is set. sbatch -n 4's batch script is no step (SLURM_NTASKS
    alone), srun -n 1 is one task, and srun --mpi=pmi2 or pmix (PMI_FD, PMIX_NAMESPACE, a rank or size variable) is
    MPI's own wire-up, which MPI's start checks."""
    assert srun_step() is None
    assert srun_step(4, 0) == 4 and srun_step(4, 3) == 4
    assert srun_step(1, 0) is None and srun_step(None, 0, SLURM_NTASKS=4) is None  # srun -n 1; sbatch's batch step
    for wire_up in ("PMI_FD", "PMIX_NAMESPACE", "PMI_RANK", "PMIX_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        assert srun_step(4, 0, **{wire_up: "3"}) is None, wire_up
    assert srun_step("x", 0) is None and srun_step(" 2 ", 1) == 2


def test_srun_with_pmix_which_sets_no_size_variable_is_a_launch_of_its_step_tasks(srun_step):
    """srun --mpi=pmix sets PMIX_RANK and PMIX_NAMESPACE and no size variable (Slurm's pmix plugin; PMI_SIZE is pmi2's):
    launched_size() read 1, so gpunn saw no launcher until MPI started: gpunn train (and sweep), which is data parallel
    by the launcher's size, trained the whole run on each task, README's `srun --mpi=pmix -n 4 gpunn train` four
    runs, not four ranks of one; `import gpunn` set no excepthook ending the job where a rank's script fails (the
    others waited in their next collective), and a fit without distributed was not warned. The step's tasks are
    now the launch's size; a size variable, where one is set, still says it."""
    from gpunn import _startup, cli
    from gpunn.distributed import comm

    srun_step(4, 2, PMIX_RANK=2, PMIX_NAMESPACE="slurm.pmix.7.0", SLURM_STEP_TASKS_PER_NODE="2(x2)", SLURM_NODEID=1)
    assert (comm.launched_size(), comm.launched_rank(), _startup.launched()) == (4, 2, True)
    assert comm.launched_local_size() == 2
    assert cli._in_launched_run(["train", "--rows", "100"]) and cli.train._ranks() == 4  # a data-parallel gpunn train
    srun_step(4, 2, PMI_RANK=2, PMI_SIZE=4, PMI_FD=7)  # srun --mpi=pmi2
    assert (comm.launched_size(), _startup.srun_tasks_with_mpi()) == (4, None)
    srun_step(1, 0, PMIX_RANK=0, PMIX_NAMESPACE="slurm.pmix.7.0")  # srun -n 1 --mpi=pmix: one process
    assert (comm.launched_size(), _startup.launched()) == (1, False)
    srun_step(None, 0, PMIX_RANK=0, PMIX_NAMESPACE="prterun-host-1@1")  # PMIx outside Slurm: no step to count
    assert (comm.launched_size(), _startup.launched()) == (1, False)


def test_a_fit_in_an_srun_step_of_several_tasks_without_mpi_warns_on_task_0_and_refuses_distributed(srun_step):
    """srun -n 2 python script.py with no MPI wire-up: each task's fit trained the whole run, writing the same files,
    with no word, and fit(distributed=True) trained it on a world of one rank in each. Task 0 warns once (as under a
    launcher: warn_each_rank_trains_it_all), distributed=False says nothing, and distributed=True is refused."""
    import warnings

    import gpunn
    from gpunn._startup import SrunTasksWarning

    X, Y = gpunn.datasets.make("teacher", 16, 3, 1, device="cpu", seed=1)
    mlp = gpunn.MLP([3, 4, 1], device="cpu", seed=0)

    def said(**given):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mlp.fit(X, Y, epochs=1, batch_size=4, verbose=False, **given)
        return [(w.category, str(w.message), os.path.basename(w.filename)) for w in caught]

    srun_step(2, 1)
    assert said() == []  # task 1
    srun_step(2, 0)
    assert said(distributed=False) == []
    (category, message, where), = said()
    assert (category, where) == (SrunTasksWarning, "test_distributed.py")
    assert message == (
        "fit: srun started 2 tasks (SLURM_STEP_NUM_TASKS=2) with no MPI wire-up (no PMI_RANK, PMIX_RANK or other MPI "
        "launcher's variable): each task's MPI is a job of one process, and each task trains the whole run, every "
        "task writing the same files. For one data-parallel run of 2 ranks: srun --mpi=pmix -n 2 (or --mpi=pmi2; "
        "srun --mpi=list names the cluster's), or mpiexec -n 2; for one run: srun -n 1; pass distributed=False to "
        "train on each task on purpose (said once, by task 0)")
    assert said() == []  # once per process
    with pytest.raises(gpunn.distributed.DistributedError, match=r"^srun started 2 tasks .* and a data-parallel run "
                                                                 r"of one rank on each trains all of it, every task"):
        said(distributed=True)
    srun_step(2, 0, PMIX_NAMESPACE="slurm.pmix.7.0", PMIX_RANK=0)  # srun --mpi=pmix: MPI's wire-up, told as mpiexec's
    (category, message, _), = said()
    assert category is UserWarning and message.startswith("fit: an MPI launcher started 2 processes, and without "
                                                           "distributed=True each trains the whole run")


def test_a_command_in_an_srun_step_of_several_tasks_without_mpi_is_noted_by_task_0(srun_step, capsys):
    """srun -n 2 gpunn train (no --mpi=pmix where MpiDefault is none) ran the whole command on each task with no word.
    Task 0 says so in a note (not a refusal: srun -n 4 bash -c 'gpunn train --save m$SLURM_PROCID.npz' is on purpose);
    predict and bench are told they run in one process; info, and the other tasks, say nothing."""
    import warnings

    from gpunn import cli

    command = ["train", "--rows", "64", "--features", "2", "--hidden", "4", "--epochs", "1", "--quiet"]
    srun_step(2, 0)
    assert cli.main(command) == 0
    note = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: srun")]
    assert note == ["note: srun started 2 tasks (SLURM_STEP_NUM_TASKS=2) with no MPI wire-up (no PMI_RANK, PMIX_RANK "
                    "or other MPI launcher's variable): each task's MPI is a job of one process, and each task runs "
                    "all of this command, every task writing the same files. For one data-parallel run of 2 ranks: "
                    "srun --mpi=pmix -n 2 (or --mpi=pmi2; srun --mpi=list names the cluster's), or mpiexec -n 2; for "
                    "one run: srun -n 1; where each task is meant to run on its own (its own --save, --json), this is "
                    "as asked (said once, by task 0)"]
    srun_step(2, 1)
    assert cli.main(command) == 0
    assert "srun" not in capsys.readouterr().err
    srun_step(2, 0)
    with cli.notes_shown(), warnings.catch_warnings():
        warnings.simplefilter("always")  # (the same note twice, from one line: said each time)
        for one_process in ("predict", "bench"):
            cli._note_srun_tasks(one_process)
            assert "every task writing the same files. It runs in one process: srun -n 1; where each task" in \
                capsys.readouterr().err, one_process
        cli._note_srun_tasks("info")
    assert capsys.readouterr().err == ""
