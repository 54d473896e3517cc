"""One rank of an MPI job whose other ranks do just what it does, in this process, for tests of the collectives gpunn's
commands issue (a plain module, so that no test module imports another): :class:`MirrorComm` is
gpunn.distributed.comm.MpiComm itself over a stand-in of mpi4py's communicator, which answers each collective as if
every other rank had passed the same values (an allgather gives this rank's value from each rank; a sum is this rank's
times the ranks). MpiComm's own methods run, so every collective it begins is logged, with whether it is an agreement
on who failed (comm.agreeing_on_failure), and so is each point from which every rank's next collective must be one
(comm.next_collective_agrees). The whole command runs (tests/thread_ranks.py runs ranks as threads, where gpunn's
commands, which set process-wide state per rank, cannot)."""
import copy
import sys

import numpy

from gpunn.distributed import comm as _comm

AGREEMENT = _comm.agreeing_on_failure.__code__


class _MPI:
    """What MpiComm uses of mpi4py.MPI."""
    IN_PLACE, SUM, MAX = object(), "sum", "max"

    @staticmethod
    def Get_library_version():
        return "the mirror of one rank (tests/mirror_ranks.py)"


class _Mirror:
    """mpi4py's communicator for rank ``rank`` of ``size`` identical ranks. Its object broadcasts from rank 0 are
    recorded in ``broadcasts`` on rank 0 and, on another rank, taken from rank 0's, in order (``broadcasts``)."""

    def __init__(self, rank, size, broadcasts):
        self.rank, self.size, self.broadcasts = rank, size, broadcasts

    def allgather(self, obj):
        return [obj] * self.size

    def bcast(self, obj, root=0):
        assert root == 0, root
        if self.rank == 0:
            self.broadcasts.append(copy.deepcopy(obj))
            return obj
        return copy.deepcopy(self.broadcasts.pop(0))

    def Allreduce(self, _in_place, array, op):
        if op == _MPI.SUM:
            array *= self.size

    def Reduce(self, mine, out, op, root=0):
        out[...] = mine * self.size if op == _MPI.SUM else mine

    def Bcast(self, array, root=0):
        pass

    def Barrier(self):
        pass

    def Abort(self, code=1):
        raise AssertionError(f"MPI_Abort({code}) on the mirror of rank {self.rank}")


def _in_agreement() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is AGREEMENT:
            return True
        frame = frame.f_back
    return False


class MirrorComm(_comm.MpiComm):
    """MpiComm on rank ``rank`` of ``size`` mirrored ranks (``broadcasts``: rank 0's, for another rank); ``log``:
    ("collective", label, is an agreement) per collective begun, ("agreement next",) where
    comm.next_collective_agrees said every rank's next one is an agreement (its attribute written)."""

    def __init__(self, rank, size=2, broadcasts=None):  # noqa: super().__init__ would start MPI
        self.MPI, self.comm = _MPI, _Mirror(rank, size, [] if broadcasts is None else list(broadcasts))
        self.rank, self.size, self.local_rank, self.local_size = rank, size, rank, size
        self.timeout = float("inf")
        self._watchdog = _comm._Watchdog(self.timeout, self._timed_out)
        self._flag = numpy.zeros(1, numpy.int32)
        self.collectives = 0
        self.log = []

    def _guard(self, label):
        self.log.append(("collective", label, _in_agreement()))
        return super()._guard(label)

    def __setattr__(self, name, value):
        if name == _comm.AGREEMENT_NEXT:
            self.log.append(("agreement next",))
        super().__setattr__(name, value)

    def first_after_each_point(self) -> list:
        """The (label, is an agreement) of the first collective after each point from which one must be an
        agreement (None: no collective after it)."""
        firsts = []
        for i, event in enumerate(self.log):
            if event[0] == "agreement next":
                later = [e for e in self.log[i + 1:] if e[0] == "collective"]
                firsts.append(later[0][1:] if later else None)
        return firsts


def _no_abort(code):
    raise AssertionError(f"the job ended (MPI_Abort({code}))")


def as_rank(monkeypatch, rank, size=2, broadcasts=None) -> MirrorComm:
    """This process as rank ``rank`` of ``size``, launched by an MPI launcher (its variables set) whose world (the
    control communicator gpunn.distributed.comm.world gives) is a MirrorComm, returned. What a launched command sets
    for the life of its process (a rank's stdout to /dev/null, the failure report) is put back after the test.
    ``broadcasts``: rank 0's (its MirrorComm's ``comm.broadcasts``), for a rank that is not rank 0."""
    monkeypatch.setenv("PMI_SIZE", str(size))
    monkeypatch.setenv("PMI_RANK", str(rank))
    for name in ("OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    control = MirrorComm(rank, size, broadcasts)
    monkeypatch.setitem(_comm._WORLD, "control", control)
    monkeypatch.setattr(_comm, "_REPORT", [])
    monkeypatch.setattr(_comm, "end_launched_job", _no_abort)  # (it would start MPI and abort this process)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # gpunn.cli.train._launch points a rank's other than 0's at devnull
    return control
