"""CPU threads per rank: the node's cores shared out among the ranks that run on it.

OpenBLAS starts as many threads as the process may use cores, in every rank, and its threads wait for
work by spinning: P ranks on one node then run P times as many BLAS threads as there are cores, and
each product waits for threads that another rank holds. Measured on the project's idle 2-core machine,
``mpiexec -n 2 gpunn train --rows 20000``: 5,500-12,000 samples/s with two BLAS threads per rank,
267,000-268,000 with one (one process alone: 251,000; 2026-11-28, bench/RESULTS.md). So while a
data-parallel fit runs on the CPU, each rank's BLAS (an ensemble's member groups; its BLAS runs on one
thread anyway) uses its share of the cores it may run on: those cores divided by the ranks of the same
machine that may run on them too. The ranks compare their affinity sets, so ranks a launcher bound to
cores of their own keep all of theirs, and ranks that share a set (no binding, or ``taskset`` around the
whole job) split it. A BLAS library whose thread count the user set in a variable it reads (OpenBLAS:
OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS; MKL_NUM_THREADS is MKL's: gpunn.ops.fit_threads.user_set),
and the member groups where GPUNN_CPU_THREADS is set, are left as they are.
"""
from __future__ import annotations

import contextlib
import os
import socket

from ..ops.cpu import SLURM_CPUS, slurm_cpus, threads_setting, usable_cores
from ..ops.fit_threads import BLAS_ENV, libraries_to_set, user_set  # noqa: F401 (BLAS_ENV: user_set's variables)
from ..ops.fit_threads import said_as_a_warning


def _sharing(mine: tuple, ranks: list) -> int:
    """How many of ``ranks`` (every rank's (host, affinity set)) run on ``mine``'s host with a core it may use too,
    itself included."""
    host, cores = mine[0], set(mine[1])
    return sum(1 for h, other in ranks if h == host and cores & set(other))


def cores_per_rank(mine: tuple, ranks: list) -> int:
    """This rank's share of its cores: ``mine`` is its (host, affinity set), ``ranks`` every rank's. The cores
    it may use, divided by the ranks on its host whose sets overlap its own (itself included)."""
    return max(1, len(mine[1]) // max(1, _sharing(mine, ranks)))


def crowding(mine: tuple, ranks: list) -> str | None:
    """Where more ranks than cores share this rank's cores, what that costs, for the start line: they take turns on
    the cores, each collective waiting for the rank that is not running. mpiexec -n 3 and -n 4 gpunn train on the
    project's 2-core machine trained at 106,000 and 13,000 samples/s where -n 2 trained at 429,000 (--rows 20000
    --hidden 32 --batch-size 32, load 8-10 from others, 2026-12-02), with no word of why."""
    sharing, cores = _sharing(mine, ranks), len(mine[1])
    if sharing <= cores:
        return None
    return (f"{sharing} ranks on {cores} core{'s' * (cores != 1)} take turns on them, many times slower than "
            f"{cores}: start at most {cores} on this machine")


def _placement() -> tuple:
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux: assume every core
        cores = list(range(usable_cores()))
    return socket.gethostname(), cores


@contextlib.contextmanager
def _limited(threadpool_limits, share, threads):
    """While it is active, each BLAS library on ``share`` threads, but one whose count a variable it reads sets
    (MKL_NUM_THREADS left OpenBLAS on all); yields whether any was limited. threadpoolctl failing to read or set a
    library (or to put it back) is a RuntimeWarning, as in a fit (fit_threads): it ended the data-parallel run with
    its traceback, for a thread count that changes its speed alone."""
    limiter = None
    with said_as_a_warning(f"give each rank {threads}"):
        limits = {lib.prefix: share for lib in libraries_to_set()}
        limiter = threadpool_limits(limits=limits).__enter__() if limits else None
    try:
        yield limiter is not None
    finally:
        if limiter is not None:
            with said_as_a_warning("put the BLAS thread count back after the run"):
                limiter.__exit__(None, None, None)


@contextlib.contextmanager
def rank_threads(comm, model):
    """While it is active, a CPU model's BLAS and member groups use this rank's share of its cores (every
    rank of a CPU job must enter it: the ranks exchange their placement). Yields what was done, as a
    phrase for the start line (None when nothing was changed)."""
    if model.backend.is_gpu:
        yield None
        return
    mine = _placement()
    ranks = comm.allgather(mine, label="the core-placement exchange")  # every CPU rank takes part
    # (at most Slurm's --cpus-per-task, where Slurm left its tasks on every core of the node: each rank is a task)
    share, crowded, slurm = cores_per_rank(mine, ranks), crowding(mine, ranks), slurm_cpus()
    held = slurm is not None and slurm < share  # the share is Slurm's, not the cores divided among the ranks
    share = slurm if held else share
    cores = len(mine[1])
    if share >= cores:  # alone on its cores (or the only core): nothing to change
        yield crowded
        return
    said, stack = [], contextlib.ExitStack()
    member_ops = getattr(model, "member_ops", None)  # an ensemble: its BLAS already runs on one thread
    with stack:
        if member_ops is None:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                if not user_set():
                    said.append(f"BLAS threads unchanged (install threadpoolctl, or set OPENBLAS_NUM_THREADS={share}, "
                                f"to give each rank {share} core{'s' * (share != 1)})")
            else:
                threads = f"{share} BLAS thread{'s' * (share != 1)}"
                if stack.enter_context(_limited(threadpool_limits, share, threads)):
                    said.append(f"{threads} per rank")
        if member_ops is not None and hasattr(member_ops, "threads") and threads_setting() is None:
            before = member_ops.threads
            member_ops.threads = min(before, share)
            stack.callback(setattr, member_ops, "threads", before)
            said.append(f"member groups on {member_ops.threads} thread{'s' * (member_ops.threads != 1)}")
        # (a rank alone on its cores, held to Slurm's count, was said to share them "with other ranks")
        shared = (f"{SLURM_CPUS}={slurm} of the {cores} cores it may run on" if held
                  else f"its {cores} cores shared with other ranks of this machine")
        yield (f"{'; '.join(said)} ({shared}{'' if crowded is None else f'; {crowded}'})" if said else crowded)
