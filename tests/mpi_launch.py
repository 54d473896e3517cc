"""Launching ``mpiexec`` from the tests: where it is, whether MPI tests can run, the thread variables a launch
sets itself, and a job that ends with the test run, in a session of its own too (shared by
tests/test_distributed.py and tests/test_dist_bench.py; a plain module, so that no test module imports another)."""
import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest
import waiting


def mpiexec():
    """The mpiexec beside this Python (the mpich wheel's), else the one on PATH, else None."""
    here = pathlib.Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _missing_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install "gpunn[mpi]")'
    if mpiexec() is None:
        return "no mpiexec on PATH or beside the Python executable"
    return None


needs_mpi = pytest.mark.skipif(_missing_mpi() is not None, reason=str(_missing_mpi()))


# run as ``python -S -c`` before the command: the kernel kills it when its parent dies (prctl PR_SET_PDEATHSIG,
# SIGKILL; kept across exec), unless the parent has died already
_DIE_WITH_PARENT = ("import ctypes, os, sys\n"
                    "ctypes.CDLL(None).prctl(1, 9)\n"
                    "if os.getppid() != int(sys.argv[1]):\n"
                    "    os._exit(137)\n"
                    "os.execvp(sys.argv[2], sys.argv[2:])\n")


def ending_with_this_process(args):
    """``args`` (an mpiexec command line) made so that the kernel kills that process when this one ends, however it
    ends: a runner that ends the test run (a mutation harness's or CI's timeout, SIGTERM or SIGKILL) may kill pytest
    alone, or its process group, which a job started in a session of its own (``own_session``) is not in; either
    way the job lived on, its ranks waiting in MPI. mpiexec so killed ends its ranks (each in a session of its own,
    under a proxy that sees it gone). Linux only (prctl; elsewhere ``args`` as they are). Start it from the test's
    own thread: the kernel acts when the thread that started the child ends."""
    if not sys.platform.startswith("linux"):
        return list(args)
    return [sys.executable, "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *map(str, args)]


def own_session(args, **popen):
    """``subprocess.Popen(args, start_new_session=True, **popen)`` that ends with this process
    (``ending_with_this_process``): a test starts an mpiexec job in a session of its own to kill the whole job
    (``os.killpg``) without killing pytest."""
    return subprocess.Popen(ending_with_this_process(args), start_new_session=True, **popen)


def ended(proc, seconds, hung="the job hung"):
    """(stdout, stderr) of ``proc``, an ``own_session`` job, once it ends within ``seconds`` (counted as
    :func:`waiting.communicate` counts them). Past them, mpiexec is killed, and so is what outlived it in its session,
    and the test fails with ``hung`` and what the job had written, so that a hang says where the ranks were (a CI run's
    hang said nothing: the group's kill raised ProcessLookupError where nothing outlived mpiexec, hiding the failure)."""
    try:
        return waiting.communicate(proc, seconds)
    except subprocess.TimeoutExpired as timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{hung}; what it wrote:\n{timed_out.stdout or ''}{timed_out.stderr or ''}")


# the variables that set a process's thread counts: a launch removes them from its environment and sets its own
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "GPUNN_CPU_THREADS")
