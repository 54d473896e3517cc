"""gpunn.distributed.threads.rank_threads in one process: a stand-in communicator says where the other ranks run
(the same contract under mpiexec: tests/test_distributed.py's test_ranks_on_one_node_share_its_cores_out...)."""
import sys
import types

import pytest

from gpunn.distributed import threads
from gpunn.ops import fit_threads

FOUR = ("node", [0, 1, 2, 3])


class Gathers:
    def __init__(self, others):
        self.others, self.labels = others, []

    def allgather(self, obj, label=None):
        self.labels.append(label)
        return [obj, *self.others]


def _model(gpu=False, member_threads=None):
    model = types.SimpleNamespace(backend=types.SimpleNamespace(is_gpu=gpu))
    if member_threads is not None:
        model.member_ops = types.SimpleNamespace(threads=member_threads)
    return model


@pytest.fixture
def on_four_cores(monkeypatch):
    monkeypatch.setattr(threads, "_placement", lambda: FOUR)
    for name in (*threads.BLAS_ENV, "GPUNN_CPU_THREADS"):
        monkeypatch.delenv(name, raising=False)


def _blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pools = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    if not pools:
        pytest.skip("no BLAS threadpoolctl knows")
    return pools


def _blas_threads_not_one():
    before = _blas_threads()
    if set(before) == {1}:
        pytest.skip("BLAS runs on one thread already: a limit to one would not show")
    return before


def test_four_ranks_on_four_shared_cores_run_one_blas_thread_each_during_the_fit(on_four_cores):
    before = _blas_threads_not_one()
    comm = Gathers([FOUR, FOUR, FOUR])
    with threads.rank_threads(comm, _model()) as said:
        assert set(_blas_threads()) == {1}
    assert said == "1 BLAS thread per rank (its 4 cores shared with other ranks of this machine)"
    assert comm.labels == ["the core-placement exchange"] and _blas_threads() == before


@pytest.mark.parametrize("others", [[], [("other-node", [0, 1, 2, 3])], [("node", [4, 5])]])
def test_a_rank_alone_on_its_cores_changes_nothing(on_four_cores, others):
    before = _blas_threads_not_one()
    with threads.rank_threads(Gathers(others), _model()) as said:
        assert _blas_threads() == before
    assert said is None


def test_a_gpu_rank_exchanges_nothing():
    comm = Gathers([FOUR])
    with threads.rank_threads(comm, _model(gpu=True)) as said:
        pass
    assert said is None and comm.labels == []


def _openblas_alone():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if {p["internal_api"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"} != {"openblas"}:
        pytest.skip("a BLAS other than OpenBLAS is loaded")


@pytest.mark.parametrize("name", ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"])
def test_a_blas_thread_count_the_user_set_is_left_as_it_is(on_four_cores, monkeypatch, name):
    _openblas_alone()
    monkeypatch.setenv(name, "3")
    before = _blas_threads_not_one()
    with threads.rank_threads(Gathers([FOUR, FOUR, FOUR]), _model()) as said:
        assert _blas_threads() == before
    assert said is None


@pytest.mark.parametrize("name", ["MKL_NUM_THREADS", "BLIS_NUM_THREADS"])
def test_another_librarys_thread_variable_leaves_openblas_its_share(on_four_cores, monkeypatch, name):
    """OpenBLAS does not read MKL_NUM_THREADS: any BLAS_ENV variable left a rank's OpenBLAS on every core of the
    machine, shared with the other ranks (the rule of the Slurm cap, 32120e2, for the rank's share too)."""
    _openblas_alone()
    monkeypatch.setenv(name, "3")
    before = _blas_threads_not_one()
    with threads.rank_threads(Gathers([FOUR, FOUR, FOUR]), _model()) as said:
        assert set(_blas_threads()) == {1}
    assert said == "1 BLAS thread per rank (its 4 cores shared with other ranks of this machine)"
    assert _blas_threads() == before


def test_a_blank_thread_setting_is_no_setting(on_four_cores, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", " ")
    _blas_threads_not_one()
    with threads.rank_threads(Gathers([FOUR, FOUR, FOUR]), _model()) as said:
        assert set(_blas_threads()) == {1}
    assert said.startswith("1 BLAS thread per rank")


@pytest.mark.parametrize("ranks, share", [(4, "1 core"), (2, "2 cores")])
def test_without_threadpoolctl_the_start_line_says_what_to_set(on_four_cores, monkeypatch, ranks, share):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    with threads.rank_threads(Gathers([FOUR] * (ranks - 1)), _model()) as said:  # the ranks share the 4 cores
        pass
    assert said == (f"BLAS threads unchanged (install threadpoolctl, or set OPENBLAS_NUM_THREADS={share[0]}, to give "
                    f"each rank {share}) (its 4 cores shared with other ranks of this machine)")


def test_without_threadpoolctl_mkls_variable_is_no_count_of_numpys_openblas(on_four_cores, monkeypatch):
    """NumPy's wheels' OpenBLAS (by NumPy's build configuration) reads no MKL_NUM_THREADS: a rank's start line said
    nothing of its BLAS threads, left on every core, where it was set."""
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    if fit_threads._built_with() != "openblas":
        pytest.skip("NumPy is built with another BLAS than OpenBLAS")
    with threads.rank_threads(Gathers([FOUR]), _model()) as said:
        pass
    assert said.startswith("BLAS threads unchanged (install threadpoolctl, or set OPENBLAS_NUM_THREADS=2")


def test_an_ensembles_member_groups_take_the_share_and_get_their_threads_back(on_four_cores):
    before = _blas_threads_not_one()
    model = _model(member_threads=3)
    with threads.rank_threads(Gathers([FOUR]), model) as said:
        assert model.member_ops.threads == 2
        assert _blas_threads() == before  # its BLAS runs on one thread already: left to the ensemble
    assert said == "member groups on 2 threads (its 4 cores shared with other ranks of this machine)"
    assert model.member_ops.threads == 3
    fewer = _model(member_threads=1)  # already fewer than the share
    with threads.rank_threads(Gathers([FOUR]), fewer) as said:
        assert fewer.member_ops.threads == 1
    assert said == "member groups on 1 thread (its 4 cores shared with other ranks of this machine)"


def test_member_groups_the_user_sized_are_left_as_they_are(on_four_cores, monkeypatch):
    monkeypatch.setenv("GPUNN_CPU_THREADS", "3")
    model = _model(member_threads=3)
    with threads.rank_threads(Gathers([FOUR]), model) as said:
        assert model.member_ops.threads == 3
    assert said is None


def test_member_groups_without_a_thread_count_are_left_alone(on_four_cores):
    model = _model()
    model.member_ops = types.SimpleNamespace()  # ops that run no thread pool of their own
    with threads.rank_threads(Gathers([FOUR]), model) as said:
        pass
    assert said is None and vars(model.member_ops) == {}


def test_a_blank_gpunn_cpu_threads_is_as_unset_and_the_member_groups_take_the_share(on_four_cores, monkeypatch):
    monkeypatch.setenv("GPUNN_CPU_THREADS", " ")  # it counted as set: the groups kept 3 threads on 2 cores' share
    model = _model(member_threads=3)
    with threads.rank_threads(Gathers([FOUR]), model):
        assert model.member_ops.threads == 2


class _Unreadable(Exception):
    pass


def _refuses(*_, **__):
    raise _Unreadable("no threadpool info for libfoo.so")


@pytest.mark.parametrize("fails", ["libraries", "limits"])
def test_threadpoolctl_failing_to_read_or_set_a_library_is_a_warning_and_the_run_goes_on(on_four_cores, monkeypatch,
                                                                                          fails):
    """threadpoolctl raising (a library it cannot read: its threadpool info missing) ended the data-parallel run with
    its traceback, for a thread count that changes its speed alone: a RuntimeWarning, as in a fit, the counts as they
    are, and the start line says nothing was changed."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if fails == "libraries":
        monkeypatch.setattr(threads, "libraries_to_set", _refuses)
    else:
        monkeypatch.setattr(threads, "libraries_to_set", lambda: [types.SimpleNamespace(prefix="libfoo")])
        monkeypatch.setattr(threadpoolctl, "threadpool_limits", _refuses)
    with pytest.warns(RuntimeWarning, match=r"gpunn could not give each rank 1 BLAS thread \(threadpoolctl: _Unreadable: "
                                            r"no threadpool info for libfoo.so\)"):
        with threads.rank_threads(Gathers([FOUR, FOUR, FOUR]), _model()) as said:
            pass
    assert said is None


def test_threadpoolctl_failing_to_put_the_count_back_is_a_warning_after_the_run(on_four_cores, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    class Limits:
        def __init__(self, limits):
            self.limits = limits

        def __enter__(self):
            return self

        def __exit__(self, *_):
            _refuses()

    monkeypatch.setattr(threads, "libraries_to_set", lambda: [types.SimpleNamespace(prefix="libfoo")])
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", Limits)
    with pytest.warns(RuntimeWarning, match=r"could not put the BLAS thread count back after the run"):
        with threads.rank_threads(Gathers([FOUR, FOUR, FOUR]), _model()) as said:
            pass
    assert said == "1 BLAS thread per rank (its 4 cores shared with other ranks of this machine)"
