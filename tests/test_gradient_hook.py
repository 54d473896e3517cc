"""The data-parallel gradient hook (gpunn.distributed.hook) on a stand-in for two ranks' communicator: what it
scales, sums and broadcasts, without MPI (the whole contract under mpiexec is tests/test_distributed.py's)."""
import types

import numpy
import pytest

from gpunn.distributed.hook import GradientAllReduce


class TwoRanks:
    """This rank's collectives with another rank whose contributions are ``other_grads`` and ``other_rows``."""

    def __init__(self, other_grads=None, other_rows=0, other_sums=None):
        self.other_grads, self.other_rows, self.other_sums = other_grads, other_rows, other_sums
        self.calls = []

    def sum_host(self, values, label="the epoch-sum reduction"):
        mine = numpy.array(values, dtype=numpy.float64).reshape(-1)
        self.calls.append(("sum_host", label, mine.tolist()))
        other = numpy.array(self.other_sums if self.other_sums is not None else [self.other_rows], numpy.float64)
        return mine + other

    def allreduce_sum_(self, array):
        self.calls.append(("allreduce", array.copy()))
        array += self.other_grads

    def bcast_object(self, obj, root=0, label=None):
        self.calls.append(("bcast_object", label, obj))
        return "rank 0's"

    def broadcast_(self, array, root=0):
        self.calls.append(("broadcast", array))


def _trainable(grads):
    return types.SimpleNamespace(grads=numpy.array(grads, dtype=numpy.float64), params=numpy.zeros(3))


def test_each_rank_weighs_its_mean_gradient_by_its_share_of_the_global_batch_rows():
    # rank 0 has 3 of the global batch's 8 rows, the other rank 5: g = 3/8 g_0 + 5/8 g_1
    g0, g1 = numpy.array([8.0, -16.0]), numpy.array([1.6, 3.2])
    comm = TwoRanks(other_grads=5 / 8 * g1)
    hook, trainable = GradientAllReduce(comm, types.SimpleNamespace(global_batch_rows=8)), _trainable(g0)
    hook.on_gradients(trainable, 3)
    numpy.testing.assert_allclose(trainable.grads, 3 / 8 * g0 + 5 / 8 * g1, rtol=1e-15)
    assert [c[0] for c in comm.calls] == ["allreduce"]  # the source knew the rows: no reduction of the count
    numpy.testing.assert_allclose(comm.calls[0][1], 3 / 8 * g0, rtol=1e-15)  # scaled before the sum
    assert hook.steps == 1


@pytest.mark.parametrize("source", [None, types.SimpleNamespace(), types.SimpleNamespace(global_batch_rows=0)])
def test_a_source_that_does_not_know_the_global_rows_costs_one_reduction_of_the_count(source):
    comm = TwoRanks(other_grads=numpy.zeros(2), other_rows=6)
    hook, trainable = GradientAllReduce(comm, source), _trainable([4.0, 2.0])
    hook.on_gradients(trainable, 2)
    assert comm.calls[0] == ("sum_host", "the batch-size reduction", [2.0])
    numpy.testing.assert_allclose(trainable.grads, [1.0, 0.5], rtol=1e-15)  # 2 of 8 rows


def test_the_whole_batch_on_this_rank_and_no_rows_on_it():
    comm = TwoRanks(other_grads=numpy.zeros(2))
    alone = _trainable([4.0, 2.0])
    GradientAllReduce(comm, types.SimpleNamespace(global_batch_rows=5)).on_gradients(alone, 5)
    assert alone.grads.tolist() == [4.0, 2.0]  # its own mean is the global one
    empty = _trainable([0.0, 0.0])  # a rank without rows in a tiny last batch adds zeros (here from the 2nd step)
    hook = GradientAllReduce(TwoRanks(other_grads=numpy.array([1.0, 1.0])), types.SimpleNamespace(global_batch_rows=5))
    hook.on_gradients(empty, 0)
    hook.on_gradients(empty, 0)
    assert empty.grads.tolist() == [1.0, 1.0] and hook.steps == 2  # its own (nonzero) buffer weighed 0/5


@pytest.mark.parametrize("sum_sq", [numpy.float32(2.5), numpy.array([1.0, 2.0, 3.0], numpy.float32),
                                    numpy.array([0.1, 1 / 3])])  # float64 sums summed as float64
def test_an_epochs_squared_errors_and_rows_are_summed_over_ranks_in_one_reduction(sum_sq):
    local = numpy.asarray(sum_sq, numpy.float64).reshape(-1)
    comm = TwoRanks(other_sums=[*(10 * local), 6.9999999])  # the other rank's row count as floats carry it
    total, rows = GradientAllReduce(comm).reduce_epoch(sum_sq, 4)
    assert comm.calls == [("sum_host", "the epoch-sum reduction", [*local, 4.0])]
    assert total.dtype == numpy.float64 and total.shape == numpy.shape(sum_sq)
    numpy.testing.assert_allclose(total, 11 * numpy.asarray(sum_sq, numpy.float64), rtol=1e-15)
    assert rows == 11 and type(rows) is int  # rounded, not truncated to 10


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(), (3,)], ids=["model", "ensemble"])
def test_on_a_gpu_the_epochs_sums_come_back_on_the_device_where_the_loop_reads_them(gpu, shape):
    # an ensemble's epoch_logs reads them with backend.to_host (.get()): host sums there raised AttributeError
    sum_sq = gpu.xp.asarray(numpy.full(shape, 2.5))
    comm = TwoRanks(other_sums=[*numpy.full(shape, 0.5).reshape(-1), 3.0])
    total, rows = GradientAllReduce(comm).reduce_epoch(sum_sq, 4)
    assert rows == 7 and total.shape == shape
    assert gpu.to_host(total).tolist() == numpy.full(shape, 3.0).tolist()


def test_rank_0s_reference_and_parameters_reach_every_rank():
    comm = TwoRanks()
    hook = GradientAllReduce(comm)
    assert hook.from_root(1.5) == "rank 0's"
    assert comm.calls == [("bcast_object", "the divergence reference", 1.5)]
    trainable = _trainable([0.0])
    state = {"v": numpy.ones(3), "m": numpy.zeros(3)}
    comm.calls.clear()
    hook.broadcast_parameters(trainable, types.SimpleNamespace(state=state))
    # the same order on every rank (sorted names), the parameters first
    sent = [c[1] for c in comm.calls]
    assert len(sent) == 3 and all(a is b for a, b in zip(sent, [trainable.params, state["m"], state["v"]]))
    comm.calls.clear()
    hook.broadcast_parameters(trainable)
    assert len(comm.calls) == 1 and comm.calls[0][1] is trainable.params


class Gathered:
    """A rank whose allgather returns ``said``: each rank's data refusal, None where it refused nothing."""

    def __init__(self, said):
        self.said = said

    def allgather(self, obj, label=None):
        return list(self.said)


def test_the_ranks_agree_on_the_first_refusing_ranks_words_and_keep_the_refusal_they_raise():
    """Every rank's refusal comes back marked as raised on every rank (DataParallel.run raises it so, ending no job),
    and said alike only where every rank refused in the same words: the refusing rank's own was marked alike, so that
    a script's uncaught-exception hook on rank 0 said rank 1's refusal for every rank, in rank 0's words, and rank
    1's went unsaid (gpunn.distributed.comm._rank_that_says: who says it)."""
    from gpunn.data.errors import DataError
    from gpunn.distributed.comm import _rank_that_says, is_raised_on_every_rank

    hook = GradientAllReduce(Gathered([None, "X.npy row 3: nan", "X.npy row 9: inf"]))
    error = hook.first_refusal(None)
    assert isinstance(error, DataError) and error.gpunn_said_by == 1
    assert str(error) == "rank 1 of ranks 0-2 refused its data: X.npy row 3: nan"
    assert hook.refusal is error  # what DataParallel.run raises on every rank, not as this rank's failure alone
    assert is_raised_on_every_rank(error) and _rank_that_says(error) == 1
    own = DataError("Y.npy row 2: inf")
    hook = GradientAllReduce(Gathered(["Y.npy row 2: inf", None, "X.npy row 9: inf"]))
    assert hook.first_refusal(own) is own and hook.refusal is own
    assert is_raised_on_every_rank(own) and _rank_that_says(own) is None  # this rank says its own
    alike = DataError("X.npy row 3: nan")
    assert GradientAllReduce(Gathered(["X.npy row 3: nan"] * 2)).first_refusal(alike) is alike
    assert _rank_that_says(alike) == 0  # every rank's in the same words: rank 0 says it for all
    hook = GradientAllReduce(Gathered([None, None]))
    assert hook.first_refusal(None) is None and hook.refusal is None
