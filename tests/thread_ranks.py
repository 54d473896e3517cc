"""Data-parallel ranks as threads of this process, for tests on tests/fakecupy (a plain module, so that no test module
imports another): each thread a rank on its own stand-in device, its gradients over the stand-in's NCCL
(fakecupy/nccl.py, whose ranks are threads) and its control collectives over :class:`ThreadControl`, in place of
MPI. What a fit on P GPUs does end to end, where mpiexec cannot start P GPU processes (tests/test_distributed.py's
MPI tests run on the CPU)."""
import importlib
import threading

import numpy


class ThreadControl:
    """The control channel (gpunn.distributed.comm.MpiComm's collectives on host values) of rank ``rank`` of the
    threads sharing ``job``. ``abort`` is MPI_Abort's stand-in: recorded in ``job.aborted`` as (rank, status), and it
    breaks every collective in progress (control and NCCL), so that the other ranks fail at once instead of waiting,
    as MPI_Abort ends their processes; what they do after it is not the job's (their processes would be gone)."""

    engine = "threads"

    def __init__(self, rank, job):
        self.rank = self.local_rank = rank
        self.size = self.local_size = job.size
        self.job = job

    def describe(self):
        return f"{self.size} thread ranks"

    def _exchange(self, value):
        """Every rank's ``value``, in rank order, once all have given theirs."""
        job = self.job
        job.slots[self.rank] = value
        job.barrier.wait()
        got = list(job.slots)
        job.barrier.wait()  # nobody overwrites a slot before everyone has read them
        return got

    def any(self, flag, label=None):
        return any(self._exchange(bool(flag)))

    def sum_host(self, values, label=None):
        parts = self._exchange(numpy.array(values, numpy.float64).reshape(-1))
        total = parts[0].copy()
        for part in parts[1:]:  # in rank order on every rank: the same bits everywhere, as rank 0's broadcast
            total += part
        return total

    def allgather(self, obj, label=None):
        return self._exchange(obj)

    def bcast_object(self, obj, root=0, label=None):
        return self._exchange(obj)[root]

    def barrier(self, label=None):
        self._exchange(None)

    def abort(self, code=1):
        self.job.aborted.append((self.rank, code))
        self.job.barrier.abort()
        importlib.import_module("cupy.nccl").abort_all()


class _Job:
    def __init__(self, size, timeout):
        self.size, self.slots, self.aborted = size, [None] * size, []
        self.barrier = threading.Barrier(size, timeout=timeout)  # a rank that never joins fails the others


def _import_before_the_threads():
    """Import the gpunn modules a rank imports lazily (gpunn.ops.cuda on its first GPU array, the data and
    distributed modules in fit) here, in one thread: two threads compiling one module's source at once (a fresh
    checkout has no .pyc) can fail in CPython 3.11's compiler with "SystemError: AST constructor recursion depth
    mismatch" (gh-106905), a failure of the test's threads, not of gpunn."""
    import pkgutil

    for package in ("ops", "data", "distributed", "training"):
        module = importlib.import_module(f"gpunn.{package}")
        for info in pkgutil.iter_modules(module.__path__, f"{module.__name__}."):
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional extra's module (the test that needs it skips without it)
                pass


def run_ranks(monkeypatch, size, work, timeout=30.0):
    """``work(rank)`` on ``size`` threads, each a rank of a data-parallel job: gpunn.distributed's ``world`` gives
    the thread its NcclComm (on the model's device) over its ThreadControl. Returns ([(value returned, exception
    raised) per rank], the aborts [(rank, status)] in the order they came)."""
    from gpunn.distributed import comm, training

    nccl = importlib.import_module("cupy.nccl")  # the stand-in's, of the copy that is cupy
    monkeypatch.setattr(comm, "_load_nccl", lambda: nccl)
    job, here, made = _Job(size, timeout), threading.local(), {}

    def world(backend=None, timeout=None):
        control = here.control
        if backend is None or not backend.is_gpu:
            return control
        key = (control.rank, backend.device)
        if key not in made:
            made[key] = comm.NcclComm(backend, control)
        return made[key]

    monkeypatch.setattr(comm, "world", world)  # gpunn.distributed.shard's statistics pass looks it up there
    monkeypatch.setattr(training, "world", world)
    outcomes = [(None, None)] * size

    def run(rank):
        here.control = ThreadControl(rank, job)
        try:
            outcomes[rank] = (work(rank), None)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcomes[rank] = (None, exc)

    _import_before_the_threads()
    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, job.aborted
