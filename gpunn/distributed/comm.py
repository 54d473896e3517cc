"""Communicators: the few collectives data-parallel training needs, over MPI or NCCL.

``MpiComm`` runs every collective on host (NumPy) arrays through mpi4py. ``NcclComm`` sends
the gradient buffer and the parameter broadcast through NCCL (``cupy.cuda.nccl``) on the
model's device, so gradients never leave the GPU; the small control messages (config
digests, the stop flag, epoch sums) still go over MPI, which also carries NCCL's unique id
from rank 0 to the others.

Faults. MPI cannot recover a job from the middle of a collective, so gpunn makes sure none
waits forever: every blocking collective is timed by a watchdog thread, and a rank that has
waited longer than ``timeout`` seconds (``GPUNN_DIST_TIMEOUT``, default 300; time the process
was stopped, as a suspended job is, does not count) prints which
collective it was in and aborts the whole job (``MPI_Abort``). A rank that raises inside a
distributed fit prints its error and aborts the job at once (see :func:`abort_on_error`), and so does
one whose exception nothing caught before its fit (:func:`end_job_on_uncaught_exception`); a
rank that is killed is noticed by the launcher (mpiexec ends the others). MPI_Init, which no thread of a rank can
time, is timed by a child process wherever gpunn starts MPI (:mod:`gpunn.distributed.init_watch`): for a fit, for
the ranks' command check, to end the job. A rank whose MPI_Abort returns ends itself with its status, and one
whose MPI_Abort has not ended the job after ABORT_GRACE_S seconds is killed by a child process (:func:`_abort_job`).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import time
import traceback
import warnings

import numpy

from .. import _startup, environment
from ..checks import got, real
from .digest import ConfigMismatch
from .output import read_by_the_launcher

ENV_TIMEOUT = "GPUNN_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
# Environment variables by which MPI launchers tell a process how many ranks were started and which it is
# (MPICH/Intel MPI/Slurm PMI, Open MPI, MVAPICH), read without initialising MPI.
_SIZE_VARIABLES = _startup.LAUNCHER_SIZE_VARIABLES
_RANK_VARIABLES = _startup.LAUNCHER_RANK_VARIABLES
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")
# ... and how many it started on this process's node (Slurm's srun: per node, in SLURM_STEP_TASKS_PER_NODE)
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


class DistributedError(RuntimeError):
    """Data-parallel training cannot start or continue (no MPI, no NCCL, a mismatch...)."""


def _from_launcher(names, default: int, says: str) -> int:
    """The first of the launcher variables ``names`` that is set (not blank), a whole number in the digits 0-9 as
    launchers write it; ``default`` where none is. Another value is refused naming it (``says``: what the launcher
    says in it), where it was passed over (``x``), or a bare ValueError of int()'s (``²``, which str.isdigit takes)."""
    for name in names:
        value = environment.text(name)
        if value is None:
            continue
        if not (value.isascii() and value.isdigit()):
            raise environment.refusal(name, f"a whole number (an MPI launcher's variable: {says})", DistributedError)
        return int(value)
    return default


def launched_size() -> int:
    """How many processes an MPI launcher started (1 when not launched by one): its size variable, else srun's tasks
    where MPI wired them up without one (srun --mpi=pmix: _startup.srun_tasks_with_mpi). Does not import MPI."""
    size = _from_launcher(_SIZE_VARIABLES, None, "how many processes it started")
    return size if size is not None else _startup.srun_tasks_with_mpi() or 1


def launched_rank() -> int:
    """This process's rank as the launcher says (0 when not launched by one). Does not import MPI."""
    return _from_launcher(_RANK_VARIABLES, 0, "this process's rank")


def _launched_local_rank_variable() -> int | None:
    """The local rank as a launcher's variable says it; None where none is set."""
    return _from_launcher(_LOCAL_RANK_VARIABLES, None, "this process's rank on its node")


def launched_local_rank() -> int:
    """This process's rank among those on its node, as the launcher says (its rank where it says none)."""
    local = _launched_local_rank_variable()
    return launched_rank() if local is None else local


def _launched_local_size_variable() -> int | None:
    """The processes on this node as a launcher's variable says it; None where none is set."""
    return _from_launcher(_LOCAL_SIZE_VARIABLES, None, "how many processes it started on this node")


def launched_local_size() -> int:
    """How many processes the launcher started on this node, which share its host memory: 1 when not launched by
    one, or where it does not say. srun says it per node: ``SLURM_STEP_TASKS_PER_NODE=2(x3),1`` (three nodes of two
    tasks, then one of one), this node's by ``SLURM_NODEID``."""
    local = _launched_local_size_variable()
    if local is None and launched_size() > 1:
        local = _slurm_tasks_here()
    return max(1, local or 1)


def _slurm_tasks_here() -> int | None:
    counts = []
    for part in (environment.text("SLURM_STEP_TASKS_PER_NODE") or "").split(","):
        found = re.fullmatch(r"([0-9]+)(?:\(x([0-9]+)\))?", part.strip())
        if found is None:
            return None
        counts += [int(found[1])] * int(found[2] or 1)
    node = environment.text("SLURM_NODEID")
    if node is None or not (node.isascii() and node.isdigit()) or int(node) >= len(counts):
        return None
    return counts[int(node)]


# each refuses the variables of its own kind that it cannot read: each bad variable once (launched_local_rank also
# reads the rank's where no local rank is set, and PMI_RANK='²' was said twice in one line)
LAUNCHER_READERS = (launched_size, launched_rank, _launched_local_rank_variable, _launched_local_size_variable)


_SAID_EACH_TRAINS_IT_ALL = []  # (said once per process)


def warn_each_rank_trains_it_all(call: str) -> None:
    """Warn, once per process and on the launcher's rank 0, where an MPI launcher started several processes and
    ``call`` (a fit without ``distributed``: gpunn.training.fit.not_data_parallel) trains the whole run on each:
    ``mpiexec -n 2 python script.py`` without ``distributed=True`` trained it twice, every rank writing the same
    files, with no word."""
    if _SAID_EACH_TRAINS_IT_ALL:
        return
    tasks = _startup.srun_tasks_without_mpi()
    if tasks is not None:  # srun -n 4 python script.py, no MPI: each task a whole fit, as distributed=True refuses
        _SAID_EACH_TRAINS_IT_ALL.append(True)
        if _startup.srun_task() == 0:
            from ..backend import user_stacklevel

            warnings.warn(f"{call}: {_startup.srun_tasks_words(tasks, 'each task trains the whole run')}; pass "
                          "distributed=False to train on each task on purpose (said once, by task 0)",
                          _startup.SrunTasksWarning, stacklevel=user_stacklevel())
        return
    try:
        size, rank = launched_size(), launched_rank()
    except (DistributedError, ValueError):  # (a variable gpunn cannot read: a data-parallel fit refuses it)
        return
    if size > 1:
        _SAID_EACH_TRAINS_IT_ALL.append(True)
        if rank == 0:
            from ..backend import user_stacklevel

            warnings.warn(f"{call}: an MPI launcher started {size} processes, and without distributed=True each "
                          "trains the whole run (the same batches, every rank writing the same files); pass "
                          "distributed=True to train one data-parallel run, each rank a piece of every batch, or "
                          "distributed=False to train on each on purpose (said once, by rank 0)",
                          stacklevel=user_stacklevel())


def rank_words(rank: int, size: int) -> str:
    """Which process a line is from: ``rank 1 of ranks 0-1``. Ranks count from 0, as MPI numbers them; "rank 1/2"
    read as the first of two."""
    return f"rank {rank} of ranks 0-{size - 1}"


# plain decimal seconds (2, 2.5, .5): float() also took 1_0, +5, 1e3, infinity and other scripts' digits (١٠)
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def _seconds_given(timeout) -> float:
    """world(timeout=)'s ``timeout`` as a float: a positive number of seconds, or math.inf (never abort), as
    GPUNN_DIST_TIMEOUT takes them. float() took 0 (every collective that has to wait at all aborts the job),
    a negative number (the same) and nan (no collective ever aborts, as inf, unsaid)."""
    seconds = real(timeout)
    if seconds is None or not seconds > 0:
        raise ValueError(f"timeout must be a positive number of seconds, or math.inf (never abort), {got(timeout)}")
    return seconds


def _timeout_from_env(timeout):
    """world(timeout=)'s ``timeout`` (_seconds_given), else GPUNN_DIST_TIMEOUT: a positive number of seconds in the
    digits 0-9 and one point at most, or inf (never abort); unset or blank, 300."""
    if timeout is not None:
        return _seconds_given(timeout)
    text = environment.text(ENV_TIMEOUT)
    if text is None:
        return DEFAULT_TIMEOUT_S
    if text.lower() == "inf":
        return math.inf
    seconds = float(text) if _SECONDS.fullmatch(text) else math.nan
    if not 0 < seconds < math.inf:  # 0 would abort any collective that has to wait at all; 400 digits are inf
        raise environment.refusal(ENV_TIMEOUT, "a positive number of seconds in the digits 0-9 and one point at most, "
                                               "or inf (how long a rank waits in a collective before it aborts the "
                                               f"job; unset: {DEFAULT_TIMEOUT_S:g})", DistributedError)
    return seconds


def timeout_setting(seconds, given) -> str:
    """Where a rank's collective timeout of ``seconds`` came from, as its aborting line says it: world(timeout=)
    where ``given`` (the script's own, which GPUNN_DIST_TIMEOUT does not change), else GPUNN_DIST_TIMEOUT."""
    return f"world(timeout={seconds:g})" if given else f"{ENV_TIMEOUT}={seconds:g} s"


def seconds_spec(timeout) -> str:
    """The format spec of a wait of about ``timeout`` seconds in a line: whole seconds from a 1 s timeout on, two
    significant digits below ("waited 0.26 s": a 0.2 s timeout's wait read "waited 0 s")."""
    return ".0f" if timeout >= 1 else ".2g"


class _Watchdog:
    """Aborts the job when one blocking collective has lasted more than ``timeout`` seconds of this
    process's running time.

    The main thread marks the start and end of each collective (attribute writes); a daemon thread
    looks every fraction of the timeout. mpi4py releases the GIL while it waits inside MPI, so the
    watchdog runs while a collective hangs. A stretch in which the process was stopped (SIGSTOP:
    Ctrl-Z, a batch scheduler suspending the job, every rank at once) counts as one look, not as
    waiting: the job goes on when it is resumed instead of aborting at once.
    """

    def __init__(self, timeout, on_timeout):
        self.timeout, self.on_timeout = timeout, on_timeout
        # (count of collectives begun, when the last began, its label or None once it ended): one attribute, written
        # and read at once, so the watchdog never pairs one collective's count with another's start
        self.current = (0, 0.0, None)
        self._thread = None

    def begin(self, label):
        self.current = (self.current[0] + 1, time.monotonic(), label)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="gpunn-dist-watchdog", daemon=True)
            self._thread.start()

    def end(self):
        count, since, _ = self.current
        self.current = (count, since, None)

    def _watch(self):
        last, watched, waited = time.monotonic(), None, 0.0
        while True:
            period = min(1.0, max(self.timeout / 4, 0.05))  # of the timeout now (world(timeout=) sets it anew)
            time.sleep(period)
            count, since, label = self.current
            now = time.monotonic()
            # the time since the last look, at most two periods: a late look under load counts in full, a
            # stopped process's stretch (its watchdog stopped too) does not
            step, last = min(now - last, 2 * period), now
            if label is None:
                continue
            waited = min(now - since, step) if count != watched else waited + step
            watched = count
            if waited > self.timeout:
                self.on_timeout(label, waited)
                return


def _mpi_init_timed(timeout, why="", setting=None):
    """A context in which this process starts MPI, timed (:func:`gpunn.distributed.init_watch.timed_start`) where a
    launcher started several processes and MPI has not started here yet: a rank whose job has a process that never
    enters MPI_Init (it left before starting MPI) says so after ``timeout`` seconds and is killed (the launcher then
    ends the job), not waiting forever. ``why``: what it starts MPI for, said after "in MPI_Init" where not a fit;
    ``setting``: where the timeout came from, said last (:func:`_ending_timeout`; GPUNN_DIST_TIMEOUT=T s if None)."""
    try:
        size = launched_size()
    except DistributedError:  # (a launcher's variable gpunn cannot read: untimed, as before)
        size = 1
    if "mpi4py.MPI" in sys.modules or size <= 1:
        return contextlib.nullcontext()
    from .init_watch import timed_start

    setting = (setting or f"{ENV_TIMEOUT}={timeout:g} s").replace("{", "{{").replace("}", "}}")  # (a value's braces)
    return timed_start(f"{_speaker()}{_where()}: waited {{:{seconds_spec(timeout)}}} s in MPI_Init{why}, which every "
                       "process of the job enters; another has not started MPI (it left before starting it, or is "
                       f"that much later to its fit). Ending the job ({setting}).\n", timeout)


def _ranks(size: int) -> str:
    return f"{size} rank{'' if size == 1 else 's'}"


def _library(MPI) -> str:
    """The MPI library mpi4py runs on, in a few words: ``MPICH Version: 5.0.2``."""
    return " ".join(MPI.Get_library_version().splitlines()[0].split())


def _check_launcher_is_mpis(size: int, library: str) -> None:
    """Refuse a process whose MPI counts ``size`` processes in its job where the launcher says it started another
    number: that mpiexec is another MPI's than the one mpi4py runs on (Open MPI's starting processes whose mpi4py
    loads the mpich wheel). Each process then starts MPI as a job of its own and trains the whole run alone, every
    one writing the same files, where `gpunn train` said "launched by MPI with 2 processes"."""
    started = launched_size()
    if started <= 1 or started == size:
        return
    variable = next(name for name in _SIZE_VARIABLES if environment.text(name) is not None)
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    theirs = f" ({beside})" if os.path.exists(beside) else ""
    raise DistributedError(f"an MPI launcher started {started} processes ({variable}={started}), but the MPI that "
                           f"mpi4py runs on ({library}) counts {size} in this process's job: the mpiexec that started "
                           f"it is another MPI's. Launch with the mpiexec of mpi4py's MPI{theirs}, or install mpi4py "
                           "built against the MPI of your mpiexec (README: A system MPI)")


class MpiComm:
    """Collectives over MPI on host arrays (the CPU engine), and the control channel of NcclComm.

    ``comm`` is an mpi4py communicator (default: a duplicate of COMM_WORLD, so gpunn's
    messages never mix with the caller's).
    """

    engine = "mpi"
    timeout_given = False

    def __init__(self, comm=None, timeout=None):
        self.timeout = _timeout_from_env(timeout)
        self.timeout_given = timeout is not None  # world(timeout=)'s, not GPUNN_DIST_TIMEOUT's: the aborting line says so
        try:
            with _mpi_init_timed(self.timeout, setting=timeout_setting(self.timeout, self.timeout_given)):
                from mpi4py import MPI
        except ImportError:
            raise DistributedError('distributed training needs mpi4py and an MPI runtime: pip install "gpunn[mpi]" '
                                   "(mpi4py and the mpich wheel), or mpi4py built against your system MPI") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm  # (its duplicate's below: the watchdog's abort till then)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if comm is None:
            _check_launcher_is_mpis(self.size, _library(MPI))
        self._watchdog = _Watchdog(self.timeout, self._timed_out)
        # collectives too, every rank's first with gpunn (one that left after starting MPI was waited for forever)
        self._watchdog.begin("the set-up of gpunn's communicator")
        try:
            self.comm = self.comm.Dup()
            node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
            node.Free()
        finally:
            self._watchdog.end()
        self._flag = numpy.zeros(1, numpy.int32)
        self.collectives = 0  # begun on this rank (a rank that failed before any since the command check: cli)

    def describe(self) -> str:
        return f"{_ranks(self.size)} over MPI ({_library(self.MPI)})"

    @contextlib.contextmanager
    def _guard(self, label):
        self.collectives += 1
        self._watchdog.begin(label)
        try:
            yield
        finally:
            self._watchdog.end()

    def timed(self, label):
        """A context in which the caller's own collectives (mpi4py calls on a communicator of its own, such as
        bench/dist_bench.py's measured all-reduces) are timed as gpunn's are: a rank that waits in it longer than
        ``timeout`` seconds says ``label`` and aborts the job."""
        return self._guard(label)

    def _timed_out(self, label, seconds):
        _say(f"{_speaker()} [{rank_words(self.rank, self.size)}]: waited {seconds:{seconds_spec(self.timeout)}} s in "
             f"{label}; another rank has stopped (failed, hung or killed). Aborting the job "
             f"({timeout_setting(self.timeout, self.timeout_given)}).\n")
        self.abort(3)

    def abort(self, code=1):
        """End every rank of the job now (MPI_Abort), once the launcher has read what this rank wrote (the line
        saying why: :func:`gpunn.distributed.output.read_by_the_launcher`).

        COMM_WORLD's abort, not gpunn's communicator's: MPICH ends an abort of another communicator by telling the
        ranks and exiting, and ``mpiexec`` then returned the status of whichever rank it saw end first, the abort's
        code or 9 of a rank it killed (7 jobs in 60; COMM_WORLD's: 0 in 200, its code reaching ``mpiexec`` with the
        abort itself; MPICH 5.0.2, 2 ranks on a 2-core Xeon with one core kept busy). So a job's status says how it ended: 1 a rank's error,
        3 a collective's timeout."""
        read_by_the_launcher()
        _abort_job(self.MPI.COMM_WORLD, code)
        _end_this_process(code)  # (where MPI_Abort returned)

    # ---- gradients and parameters (device arrays; host arrays here) ----------------------
    def allreduce_sum_(self, array):
        """array <- the sum of ``array`` over ranks, in place."""
        with self._guard("the gradient all-reduce"):
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def broadcast_(self, array, root=0):
        """array <- rank ``root``'s ``array``, in place."""
        with self._guard("the parameter broadcast"):
            self.comm.Bcast(array, root=root)

    # ---- control: small host values ------------------------------------------------------
    def any(self, flag: bool, label="the stop-flag exchange") -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        self._flag[0] = 1 if flag else 0
        with self._guard(label):
            self.comm.Allreduce(self.MPI.IN_PLACE, self._flag, op=self.MPI.MAX)
        return bool(self._flag[0])

    def sum_host(self, values, label="the epoch-sum reduction") -> numpy.ndarray:
        """The float64 host vector ``values`` summed over ranks (a new array), bit for bit the same on
        every rank (summed on rank 0, then broadcast), so decisions taken from it agree."""
        mine = numpy.array(values, dtype=numpy.float64).reshape(-1)
        out = numpy.empty_like(mine)
        with self._guard(label):
            self.comm.Reduce(mine, out, op=self.MPI.SUM, root=0)
            self.comm.Bcast(out, root=0)
        return out

    def allgather(self, obj, label="the configuration check") -> list:
        with self._guard(label):
            return self.comm.allgather(obj)

    def bcast_object(self, obj, root=0, label="a broadcast from rank 0"):
        with self._guard(label):
            return self.comm.bcast(obj, root=root)

    def barrier(self, label="a barrier"):
        with self._guard(label):
            self.comm.Barrier()


class LocalComm:
    """One process and no MPI (``distributed=True`` run without a launcher and without mpi4py):
    every collective is the identity."""

    engine = "local"
    rank, size, local_rank, local_size = 0, 1, 0, 1

    def describe(self) -> str:
        return "1 process (no MPI)"

    def abort(self, code=1):
        os._exit(code)

    def allreduce_sum_(self, array):
        pass

    def broadcast_(self, array, root=0):
        pass

    def any(self, flag, label=None) -> bool:
        return bool(flag)

    def sum_host(self, values, label=None):
        return numpy.array(values, dtype=numpy.float64).reshape(-1)

    def allgather(self, obj, label=None):
        return [obj]

    def bcast_object(self, obj, root=0, label=None):
        return obj

    def barrier(self, label=None):
        pass

    def timed(self, label):
        return contextlib.nullcontext()


def _load_nccl():
    """cupy.cuda.nccl, after making a pip-installed NCCL (nvidia-nccl-cu12/13) loadable; None if absent."""
    import ctypes
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia.nccl")
    except ImportError:  # no nvidia package at all (a CUDA toolkit of the system's, no nvidia-* wheel)
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        for lib in sorted(glob.glob(os.path.join(root, "lib", "libnccl.so*"))):
            with contextlib.suppress(OSError):
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)  # the soname CuPy's module links against
                break
    try:
        from cupy.cuda import nccl
        if getattr(nccl, "available", False) and hasattr(nccl, "NcclCommunicator"):
            return nccl
    except ImportError:
        pass
    try:  # the extension itself: cupy.cuda.nccl may have been imported (unavailable) before the preload
        from cupy_backends.cuda.libs import nccl
        return nccl
    except ImportError:
        return None


def check_one_gpu_per_rank(control, backend):
    """NCCL needs a distinct GPU per rank of a node; say which device to use when two share one, over the
    ``control`` collectives, before NCCL's init (which refuses a shared GPU only on the ranks that share it,
    ncclInvalidUsage "Duplicate GPU detected", and leaves a rank on a GPU of its own in its init). Every rank
    refuses, with the same line naming every shared GPU: a rank on a GPU of its own went on alone (three ranks
    on two GPUs) and waited in the next collective."""
    import socket

    devices = control.allgather((socket.gethostname(), backend.device_id), label="the device check")
    sharing = {}
    for rank, where in enumerate(devices):
        sharing.setdefault(where, []).append(rank)
    shared = [(where, ranks) for where, ranks in sharing.items() if len(ranks) > 1]
    if shared:
        nodes = len({host for host, _ in devices}) > 1  # name the node only where the job spans several
        said = "; ".join(f"ranks {ranks} all train on cuda:{device}" + (f" of {host}" if nodes else "")
                         for (host, device), ranks in shared)
        raise ConfigMismatch(f"{said}; give each rank its own GPU with "
                             "MLP(..., device=gpunn.distributed.local_device())")


class NcclComm:
    """Gradients and parameters over NCCL on the model's GPU; control (the NCCL id, flags, epoch
    sums) over ``control``: an MpiComm, or a LocalComm for one process without MPI.

    One GPU per rank: rank r must run on the device its local rank picks
    (:func:`gpunn.distributed.local_device`). The collectives are enqueued on CuPy's current
    stream, after the backward pass that wrote the gradients and before the optimizer step
    that reads them, so no host synchronisation is added.
    """

    engine = "nccl"

    def __init__(self, backend, control):
        self.control, self.backend = control, backend
        self.rank, self.size = control.rank, control.size
        self.local_rank, self.local_size = control.local_rank, control.local_size
        if self.size > 1:  # a collective: every rank takes part, one alone on its node too (its node's size is 1)
            check_one_gpu_per_rank(control, backend)
        nccl = _load_nccl()
        if nccl is None and self.size == 1:  # one process (no launcher): the plain fit, whose every collective is
            self.nccl = None  # the identity on its device arrays; a GPU without NCCL refused it, though README and
            return  # the fit's line call it the plain fit
        if nccl is None:
            raise DistributedError("CuPy cannot load NCCL: pip install nvidia-nccl-cu12 (or -cu13, matching your "
                                   "CuPy), or python -m cupyx.tools.install_library --library nccl --cuda 12.x; "
                                   "or train on the CPU over MPI")
        self.nccl = nccl
        self._types = {numpy.dtype("float32"): nccl.NCCL_FLOAT32, numpy.dtype("float64"): nccl.NCCL_FLOAT64}
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = control.bcast_object(uid, label="the NCCL id broadcast")
        with backend.use():
            self.gpu_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def __getattr__(self, name):  # the control collectives: any, sum_host, allgather, bcast_object, barrier
        if name == "control":  # not set yet (or being copied): no recursion
            raise AttributeError(name)
        return getattr(self.control, name)

    def describe(self) -> str:
        if self.nccl is None:  # (one process on a machine without NCCL)
            return f"{self.control.describe()}, without NCCL"
        version = self.nccl.get_version()
        return (f"{_ranks(self.size)} over NCCL {version // 10000}.{version // 100 % 100}.{version % 100} "
                f"(control: {self.control.engine})")

    def abort(self, code=1):
        with contextlib.suppress(Exception):
            if self.nccl is not None:
                self.gpu_comm.abort()
        self.control.abort(code)

    def _stream(self):
        return self.backend.xp.cuda.get_current_stream().ptr

    def allreduce_sum_(self, array):
        if self.nccl is None:  # one process: the sum over ranks is its own
            return
        ptr = array.data.ptr
        self.gpu_comm.allReduce(ptr, ptr, array.size, self._types[array.dtype], self.nccl.NCCL_SUM, self._stream())

    def broadcast_(self, array, root=0):
        if self.nccl is None:
            return
        self.gpu_comm.bcast(array.data.ptr, array.size, self._types[array.dtype], root, self._stream())


_REPORT = []  # (report or None, prog) of the gpunn command this process runs, once it has said them


def report_failures_with(report, prog: str = "gpunn") -> None:
    """How :func:`abort_on_error` reports a rank's failure from now on: ``report(exc) -> (status, line)``; and
    ``prog``, who speaks in the watchdog's line (``gpunn train``). The gpunn command sets them, so that a rank
    failing inside the fit prints the command's one line (and exits with its status) rather than a traceback,
    and a rank that waited too long is led by the command, as every other line of it is."""
    _REPORT[:] = [(report, prog)]


def speaking_as(prog: str) -> None:
    """Who speaks in this rank's lines about the job (its timed start of MPI's, the watchdog's) where the gpunn command
    runs one that trains nothing under a launcher (``gpunn info``: it said ``gpunn``); a failure is said as in a
    program of its own (report_failures_with sets both for a training command)."""
    _REPORT[:] = [(None, prog)]


def _speaker() -> str:
    """Who speaks in a rank's line: the command's prog where the gpunn command runs (gpunn._startup.prog_of), else
    ``gpunn`` (a distributed fit in a program of its own)."""
    return _REPORT[0][1] if _REPORT else "gpunn"


def _where() -> str:
    """This process's rank as the launcher says, for a line before MPI has started: `` [rank 1 of ranks 0-1]``;
    nothing where the launcher's variables cannot be read."""
    try:
        return f" [{rank_words(launched_rank(), launched_size())}]"
    except DistributedError:
        return ""


ABORT_GRACE_S = 10.0  # seconds MPI_Abort has to end the job before this rank is killed (SIGKILL, which it cannot hold)


def _abort_job(comm, code: int) -> None:
    """``comm.Abort(code)``, with a way out should MPI_Abort never end the job: where this process is still there after
    :data:`ABORT_GRACE_S` seconds, a child process (:func:`gpunn.distributed.init_watch.timed_start`) says so and kills
    it, and the launcher, seeing a rank killed, ends the job (MPICH's mpiexec: status 9). MPI_Abort is a "best
    attempt" in the standard, and it is called from the watchdog's thread while the main thread waits inside MPI, an
    abort that MPI implementations have been seen to hang in; a job whose watchdog fired must end. Where MPI_Abort
    returns, the child leaves with it (the caller ends this process)."""
    from .init_watch import timed_start

    with timed_start(f"{_speaker()}{_where()}: MPI_Abort has not ended the job after {{:.0f}} s; killing this rank, "
                     "which ends the job.\n", ABORT_GRACE_S):
        comm.Abort(code)


def _end_this_process(code: int) -> None:
    """End this process with status ``code`` (``os._exit``: no Python exit, as MPI_Abort's end), once the launcher
    has read what it wrote (:func:`gpunn.distributed.output.read_by_the_launcher`). For a rank whose MPI_Abort
    returned (the MPI standard asks only for a "best attempt"; MPICH 5.0's ends the process, in a singleton's job
    too): it went on, back into the caller's excepthook or on with a script, where it had said it was ending the job."""
    read_by_the_launcher()
    os._exit(code)


def _say(text: str) -> None:
    """``text`` on stderr, flushed; nothing where stderr is gone or closed (None, a closed file, a broken pipe): a
    rank that ends the job must end it whatever became of its stderr (the watchdog's thread died of the error, and
    its rank waited forever)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()


def abort_on_error(comm, exc: BaseException) -> None:
    """Print ``exc`` as this rank's failure and abort the whole MPI job.

    Once one rank has left the training loop, the others would wait in their next collective
    forever: MPI offers no way to tell them, so the job ends here.
    """
    if _REPORT and _REPORT[0][0] is not None:
        code, text = _REPORT[0][0](exc)
        text += "\n"
    else:
        code = 2 if isinstance(exc, KeyboardInterrupt) else 1
        text = (f"gpunn [{rank_words(comm.rank, comm.size)}]: this rank failed; aborting all ranks.\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    _say(text)
    comm.abort(code)


def raised_on_every_rank(exc: BaseException, alike: bool = True) -> BaseException:
    """Mark ``exc`` as raised by every rank of the job at the same point, so that no rank waits for another (the
    command then says it once where the ranks' lines are the same: gpunn.cli); ``alike``: whether every rank's error
    says the same (:func:`agreeing_on_failure` compares them), so that a script's uncaught one is said once, by rank 0
    (:func:`end_job_on_uncaught_exception`); ``exc`` back."""
    with contextlib.suppress(AttributeError, TypeError):  # (an exception that takes no attribute stays unmarked)
        exc.gpunn_every_rank, exc.gpunn_alike = True, alike
    return exc


def said_by(exc: BaseException, rank: int) -> BaseException:
    """Mark ``exc`` as rank ``rank``'s error said again on this rank, in other words (``rank 1 of ranks 0-1 refused
    ...``): that rank says it itself, and gpunn train says it once (gpunn.cli._failed); ``exc`` back."""
    exc.gpunn_said_by = rank
    return exc


def is_raised_on_every_rank(exc: BaseException) -> bool:
    """Whether every rank raised ``exc`` at the same point: marked by :func:`raised_on_every_rank`, or a
    ConfigMismatch (every rank refuses with it, by design)."""
    return isinstance(exc, ConfigMismatch) or getattr(exc, "gpunn_every_rank", False) is True


def is_said_alike_on_every_rank(exc: BaseException) -> bool:
    """Whether every rank raised ``exc`` at the same point (:func:`is_raised_on_every_rank`) with the same words: one
    rank's saying it says every rank's."""
    return is_raised_on_every_rank(exc) and getattr(exc, "gpunn_alike", True) is not False


class _InterruptWords(str):
    """The words of an interrupt (KeyboardInterrupt, or gpunn's SIGTERM as one) as a rank gathers them: the others
    tell it from a refusal by its type, which a subclass's words (``gpunn.cli.Terminated: SIGTERM``) do not say."""


def _error_words(exc: BaseException) -> str:
    """``exc`` as the last line of its traceback says it (its type and message), for the ranks to compare."""
    words = "".join(traceback.format_exception_only(type(exc), exc))
    return _InterruptWords(words) if isinstance(exc, KeyboardInterrupt) else words


def agreeing_on_failure(comm, compute, label, gather=True, refused=None):
    """``compute()`` on every rank, the ranks agreeing on who failed in one gather (that of the results, where
    ``gather``: every rank's result in rank order back; else this rank's result alone, the gather only of whether
    each failed). A failure every rank has (each its own error, alike or not) is raised on every rank as it is, marked
    :func:`raised_on_every_rank` (alike where every rank's says the same: the ranks gather their errors' words, so
    that one rank's saying it says all only then): a script can catch it, and no rank waits for another. A failure
    of some ranks ends
    the job: each failed rank prints its error and aborts (:func:`abort_on_error`); the others, who have no part of
    the result to go on with, wait in a barrier for that abort (timed, as every collective). Unless ``refused`` (what
    a failed rank did, in the others' words: "refused to resume the run", the same on every rank) is given: then it
    is raised on every rank too, each failed rank its own error and the others a ConfigMismatch naming the first
    failed rank and its error's words (:func:`said_by` it), and no rank aborts; where that rank was interrupted
    (Ctrl-C on it alone), a KeyboardInterrupt saying so (``rank 1 of ranks 0-1 was interrupted (KeyboardInterrupt)``),
    which read "refused to resume the run: KeyboardInterrupt" and was caught as a refusal (a ValueError)."""
    error = part = None
    try:
        part = compute()
    except BaseException as exc:  # noqa: BLE001 - a Ctrl-C too: the ranks agree on it as on any failure
        error = exc
    gathered = comm.allgather((part if gather else None, None if error is None else _error_words(error)), label=label)
    failed = [rank for rank, (_, words) in enumerate(gathered) if words is not None]
    if error is not None:
        if len(failed) < comm.size and refused is None:
            abort_on_error(comm, error)
            raise error  # (where the abort returns: a test's stand-in)
        raise raised_on_every_rank(error, alike=len({words for _, words in gathered}) == 1)
    if failed and refused is not None:
        words = gathered[failed[0]][1]
        told = (KeyboardInterrupt(f"{rank_words(failed[0], comm.size)} was interrupted ({words.strip()})")
                if isinstance(words, _InterruptWords)
                else ConfigMismatch(f"{rank_words(failed[0], comm.size)} {refused}: {words.strip()}"))
        raise raised_on_every_rank(said_by(told, failed[0]), alike=False)
    if failed:
        comm.barrier(label=f"{label} (waiting for {rank_words(failed[0], comm.size)}, which failed, to end the job)")
        raise DistributedError(f"{rank_words(failed[0], comm.size)} failed in {label}")  # (its abort ends this rank)
    return [p for p, _ in gathered] if gather else part


AGREEMENT_NEXT = "collectives_before_agreement"  # the control communicator's count where next_collective_agrees


def next_collective_agrees() -> None:
    """Note that from here every rank's next collective is an agreement on who failed (:func:`agreeing_on_failure`,
    of one shape: an allgather of (part, failed)), so that a rank that fails before it, having begun no other since,
    can join it with its failure (:func:`agreeing_before_any_collective`). Every rank must be at the same point: after
    the ranks' command check (same_command_on_every_rank), where the fit's first collective is one (the statistics
    pass, the data-parallel settings, the sweep's split), and in gpunn sweep before each ensemble after the first,
    where that ensemble's fit's is. A collective added after such a point that is not an agreement breaks it
    (tests/test_agreement_points.py walks the commands' paths). Nothing without a started world of several ranks."""
    control = started_world()
    if control is not None:
        setattr(control, AGREEMENT_NEXT, control.collectives)


def agreeing_before_any_collective(exc: BaseException | None) -> None:
    """For a rank of gpunn train or sweep that has begun no collective since the last point from which every rank's
    next one is an agreement on who failed (:func:`next_collective_agrees`: the ranks' command check, a sweep's next
    ensemble): this rank's failure ``exc`` (None: the command ended without one, and without any collective since)
    told in that agreement. Where every rank failed, ``exc`` comes back marked :func:`raised_on_every_rank`; where
    only some did, the failed ones end the job (:func:`abort_on_error`) and the others wait for that. Nothing for a
    rank that has begun a collective since (one that failed inside the fit)."""
    control = started_world()
    noted = getattr(control, AGREEMENT_NEXT, None)
    if noted is None or noted != control.collectives:
        return

    def told():
        if exc is not None:
            raise exc

    label = "the agreement on who failed before the fit" if exc is not None else "the end of a command with no fit"
    try:
        agreeing_on_failure(control, told, label, gather=False)
    except BaseException as raised:  # noqa: BLE001 - exc back (marked where every rank failed): the caller says it
        if raised is not exc:
            raise


def _ending_timeout() -> tuple[float, str | None]:
    """(GPUNN_DIST_TIMEOUT, None), or where it cannot be read (this rank may be failing for that very value), the
    default and how the line says so: a failing rank must still end the job, and its line said "GPUNN_DIST_TIMEOUT=300
    s" of a variable set to something else."""
    try:
        return _timeout_from_env(None), None
    except DistributedError:
        return DEFAULT_TIMEOUT_S, (f"{ENV_TIMEOUT}={environment.text(ENV_TIMEOUT)!r} cannot be read: the default "
                                   f"{DEFAULT_TIMEOUT_S:g} s")


def end_launched_job(code: int) -> None:
    """End every process of this MPI-launched job now (``MPI_Abort`` with ``code``, once the launcher has read what
    this process wrote: :func:`gpunn.distributed.output.read_by_the_launcher`), from a process that failed outside a
    distributed fit: ``mpiexec`` does not end the others when a process exits with an
    error status, and they would wait for it forever in ``MPI_Init`` (which every rank must enter) or in
    a collective. Initialises MPI here if this process had not (the others are in, or on their way to,
    ``MPI_Init``), timed as every start of MPI by gpunn (:func:`_mpi_init_timed`): should they all have exited
    without MPI, the initialisation cannot finish, and after ``GPUNN_DIST_TIMEOUT`` seconds (300 where it cannot be
    read, and the line says so; none under ``inf``, which waits, as it says) this process says so and is killed. This process ends here
    with ``code`` whatever becomes of the abort (:func:`_end_this_process`). Nothing without mpi4py or a launcher."""
    if launched_size() <= 1:
        return
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return
    read_by_the_launcher()  # (before MPI starts: a rank killed for waiting there too long aborts nothing)
    timeout, setting = _ending_timeout()
    try:
        with _mpi_init_timed(timeout, " (started to end the job: this rank failed)", setting):
            from mpi4py import MPI
        _abort_job(MPI.COMM_WORLD, code)
    except Exception as exc:  # noqa: BLE001 - said, and this process ends as promised
        _say(f"{_speaker()}{_where()}: MPI could not end the job ({type(exc).__name__}: {exc}); ending this process.\n")
    finally:
        _end_this_process(code)


def _rank_that_says(exc: BaseException) -> int | None:
    """The rank whose uncaught-exception hook says ``exc`` for this rank: the rank whose refusal ``exc`` says again in
    other words (:func:`said_by`: a resume or data refusal of that rank alone), else rank 0 where every rank raised it
    with the same words (:func:`is_said_alike_on_every_rank`); None where this rank says its own."""
    said = getattr(exc, "gpunn_said_by", None)
    if said is not None:
        return said
    return 0 if is_said_alike_on_every_rank(exc) else None


def _let_that_rank_say_it() -> None:
    """On a rank whose error another rank says (:func:`_rank_that_says`): wait, saying nothing, while that rank says
    it and ends the job, which ends this rank; after ABORT_GRACE_S and the launcher's read (that rank caught its
    error and went on, say), return, and this rank says its own and ends the job. What the script printed is written
    out first: the abort that ends this rank would lose what Python still held of it."""
    from . import output

    read_by_the_launcher()
    time.sleep(output.WAIT_S + ABORT_GRACE_S)


EACH_SAYS_S = 1.0  # an error every rank met at one point: the others' time to say theirs (or to write out theirs)


def _let_the_others_say_theirs() -> None:
    """On a rank whose error every rank met at the same point, each its own words (each its own shard's file
    missing): wait :data:`EACH_SAYS_S` before ending the job, as the others, past the same gather, say theirs; the
    first rank's abort ended them, their words unsaid, where one was slower to format its traceback. On a rank that
    says the others' error for them (rank 0 where every rank's says the same): as the others write out what their
    scripts printed (:func:`_let_that_rank_say_it`), which its abort lost where one was slower (a line of rank 1's,
    in a full test run on a loaded 2-core machine)."""
    time.sleep(EACH_SAYS_S)


def end_job_on_uncaught_exception() -> None:
    """Under an MPI launcher with several processes (``import gpunn`` calls this): an exception that nothing caught
    ends the whole job, as it ends a one-process run, rather than this process alone. A script's rank that failed
    before its distributed fit (loading its data, say) left the others waiting for it forever in MPI_Init, where no
    timeout reaches (mpiexec ends a job when a process is killed or aborts, not when one exits with an error), or,
    after MPI had started, in their first collective until GPUNN_DIST_TIMEOUT. Now the rank's line and traceback,
    then MPI_Abort (:func:`end_launched_job`), as ``python -m mpi4py script.py`` does. The hook before is called for
    the traceback; ``sys.excepthook = sys.__excepthook__`` after ``import gpunn`` puts Python's own back. In a job
    whose other processes never start MPI (independent runs under mpiexec), the rank waits for them in MPI_Init
    until end_launched_job's timed start of MPI (GPUNN_DIST_TIMEOUT) says so and ends it: measured 3.6 s at
    GPUNN_DIST_TIMEOUT=2. An error every rank raised at the same point with the same words
    (:func:`is_said_alike_on_every_rank`) is said once, by rank 0, for every rank; the others wait for its abort
    (:func:`_let_that_rank_say_it`). So is one rank's refusal that the others raise in other words (a resume or the
    data it refused: :func:`said_by`), by that rank alone, as gpunn train says its line: each other rank printed its
    traceback of ``rank 1 of ranks 0-1 refused ...`` too. Where the ranks' errors differ (each its own file missing),
    each says its own, and waits for the others to say theirs before it ends the job
    (:func:`_let_the_others_say_theirs`)."""
    try:
        if launched_size() <= 1:
            return
    except DistributedError:  # a launcher's variable gpunn cannot read: a distributed fit refuses it, not the import
        return
    if getattr(sys.excepthook, "gpunn_ends_the_job", False):
        return
    before = sys.excepthook

    def ends_the_job(kind, exc, tb):
        if issubclass(kind, KeyboardInterrupt) and "mpi4py.MPI" not in sys.modules:
            # a Ctrl-C (SIGTERM) on mpiexec reaches every process, and one interrupted while it imported gpunn (before
            # this hook) left without MPI: ending the job from here starts MPI, which waited for it in MPI_Init for
            # GPUNN_DIST_TIMEOUT s (then hydra's "Segmentation fault (signal 11)" of the rank killed there)
            return before(kind, exc, tb)
        # an error every rank raised at the same point (a ConfigMismatch, a diverged fit's): each rank's traceback of
        # it, its lines interleaved with the others' (one per rank), said nothing more than rank 0's; one rank's
        # refusal that the others say again in other words, nothing more than that rank's
        try:
            speaker = _rank_that_says(exc)
            rank = None if speaker is None else launched_rank()
        except DistributedError:  # (a launcher's rank variable gpunn cannot read: each rank says its own)
            speaker = rank = None
        if rank != speaker:
            _let_that_rank_say_it()  # (returns where that rank has not ended the job: this rank then says its own)
        try:
            if rank == speaker == 0:
                _say(f"gpunn [ranks 0-{launched_size() - 1}]: every rank failed with this error; aborting all ranks.\n")
            else:
                _say(f"gpunn{_where()}: this rank failed; aborting all ranks.\n")
            before(kind, exc, tb)
            _say("")
        finally:  # (the hook before failing, on a closed stderr say, ends the job all the same)
            mpi = sys.modules.get("mpi4py.MPI")
            if mpi is None or not mpi.Is_finalized():  # (a script that finalized MPI itself has left the job)
                if is_raised_on_every_rank(exc) and rank == speaker:
                    _let_the_others_say_theirs()  # (said for them: what the others' scripts printed, written out)
                end_launched_job(2 if issubclass(kind, KeyboardInterrupt) else 1)

    ends_the_job.gpunn_ends_the_job = True
    sys.excepthook = ends_the_job


def same_command_on_every_rank(doing: str, what: str = "command") -> None:
    """Under an MPI launcher with several processes, before any of them reads data: every process says what it does
    (``doing``: its command, ``train``; or what it printed instead of running one, ``train --help``) in one gather
    over the control communicator (:func:`world`, which starts MPI), and where they differ every rank raises the same
    ConfigMismatch naming them (:func:`differing_commands`; ``what``: what ``doing`` is, ``command``, or a script's
    ``arguments``). A rank of an MPMD launch (``mpiexec -n 1 gpunn train --help : -n 1 gpunn train ...``)
    that printed its help and left, alone, left the others waiting for it forever (in MPI_Init, where no watchdog
    reaches; gpunn's start of MPI is timed now, so that a process of the job that never starts MPI, one that is no
    gpunn train, ends it after ``GPUNN_DIST_TIMEOUT``). Nothing without a launcher or mpi4py (a training rank then
    refuses the run in world())."""
    if launched_size() <= 1:
        return
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return
    control = world()
    said = control.allgather(doing, label="the check that every rank runs the same command" if what == "command"
                             else f"the check that every rank was given the same {what}")
    next_collective_agrees()  # (a ConfigMismatch below is raised on every rank: no rank joins it)
    if len(set(said)) > 1:
        raise differing_commands(said, what)


def differing_commands(said: list, what: str = "command") -> ConfigMismatch:
    """The refusal of ranks that said different things in :func:`same_command_on_every_rank` (``said``: each rank's,
    ``what``: ``command`` or ``arguments``), naming each rank's. Where a rank printed its help or version instead
    (``--help``, ``-h``, ``--version`` among its words), why that stops the job too: it left the others waiting. Only
    there: ranks given other arguments (``small 0 3`` and ``small 4 3``) were told about a help or version no rank
    had asked for."""
    from .digest import describe_differences

    words = {word for text in said for word in text.split()}
    printed = [name for name, flags in (("help", {"--help", "-h"}), ("version", {"--version"})) if words & flags]
    subject = ("the ranks do not all run the same command" if what == "command"
               else f"the ranks were not all given the same {what}")
    leaves = (f", and one that prints its {' or '.join(printed)} and leaves would leave the others waiting for it"
              if printed else "")
    return ConfigMismatch(f"{subject}{leaves}; give every rank the same {what}:\n"
                          + describe_differences([{what: text} for text in said]))


_WORLD = {}


def _control(timeout):
    """MPI when mpi4py is there or a launcher started several processes; else the one-process LocalComm."""
    comm = _WORLD.get("control")
    if comm is None:
        try:
            import mpi4py  # noqa: F401
            have_mpi = True
        except ImportError:
            have_mpi = False
        comm = _WORLD["control"] = MpiComm(timeout=timeout) if have_mpi or launched_size() > 1 else LocalComm()
    elif timeout is not None and isinstance(comm, MpiComm):
        comm.timeout = comm._watchdog.timeout = _seconds_given(timeout)
        comm.timeout_given = True
    return comm


def started_world():
    """The control communicator of this process's job where a distributed fit has made it (:func:`world`), with
    more than one rank; else None."""
    comm = _WORLD.get("control")
    return comm if comm is not None and comm.size > 1 else None


def world(backend=None, timeout=None):
    """The communicator for this process's job (made once): NCCL for a GPU backend, with control
    over MPI; MPI for the CPU. Without mpi4py and without a launcher, one process on its own.
    ``timeout``: how many seconds a rank waits in a collective before it aborts the job, a positive number or
    math.inf (never), over GPUNN_DIST_TIMEOUT; 0, a negative number or nan is a ValueError, before MPI starts."""
    if timeout is not None:
        _seconds_given(timeout)
    tasks = _startup.srun_tasks_without_mpi()
    if tasks is not None:  # (each task's world would be of one rank, each training the whole run)
        raise DistributedError(_startup.srun_tasks_words(tasks, "a data-parallel run of one rank on each trains "
                                                                "all of it"))
    control = _control(timeout)
    if backend is None or not backend.is_gpu:
        return control
    key = ("nccl", backend.device)
    if key not in _WORLD:
        _WORLD[key] = NcclComm(backend, control)
    return _WORLD[key]


def local_device(default="auto") -> str:
    """The device this rank should train on: ``cuda:<local rank mod GPUs>`` where GPUs are usable,
    else ``default`` resolved as usual. Reads the launcher's environment; does not start MPI."""
    from .. import backend as _backend

    default = default.strip().lower() if isinstance(default, str) else default  # (any letter case, as resolve reads
    # it: local_device("CPU") gave a GPU)
    cupy, count, _ = _backend.probe_cuda()
    if cupy is None or count == 0 or default == "cpu":
        return "cpu" if default in ("auto", "cpu") else default
    return f"cuda:{launched_local_rank() % count}"
