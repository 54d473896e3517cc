"""Launching ``mpiexec`` from the tests: where it is, whether MPI tests can run, and the thread variables a launch
sets itself (shared by tests/test_distributed.py and tests/test_dist_bench.py; a plain module, so that no test
module imports another)."""
import pathlib
import shutil
import sys

import pytest


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


# the variables that set a process's thread counts: a launch removes them from its environment and sets its own
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "GPUNN_CPU_THREADS")
