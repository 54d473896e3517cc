"""CPU threads per rank: the node's cores shared out among the ranks that run on it.

OpenBLAS starts as many threads as the process may use cores, in every rank, and its threads wait for
work by spinning: P ranks on one node then run P times as many BLAS threads as there are cores, and
each product waits for threads that another rank holds. Measured on the project's idle 2-core machine,
``mpiexec -n 2 gpunn train --rows 20000``: 5,500-12,000 samples/s with two BLAS threads per rank, 267,000
with one (one process alone: 251,000). So while a data-parallel fit runs on the CPU, each rank's BLAS
(an ensemble's member groups; its BLAS runs on one thread anyway) uses its share of the node's cores: the cores this process may
use, divided by the ranks on the node, unless the launcher already gave each rank its own cores
(their affinity sets add up to no more than the node has). A thread count the user set
(OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS, or GPUNN_CPU_THREADS for the member groups)
is left as it is.
"""
from __future__ import annotations

import contextlib
import os

from ..ops.cpu import usable_cores

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cores_per_rank(local_size: int, mine: int | None = None, node: int | None = None) -> int:
    """This rank's share of the node's cores, with ``local_size`` ranks on the node."""
    mine = usable_cores() if mine is None else mine
    node = (os.cpu_count() or mine) if node is None else node
    if local_size <= 1 or mine * local_size <= node:  # alone, or the launcher bound each rank to its own cores
        return mine
    return max(1, mine // local_size)


@contextlib.contextmanager
def rank_threads(comm, model):
    """While it is active, a CPU model's BLAS and member groups use this rank's share of the node's cores.
    Yields what was done, as a phrase for the start line (None when nothing was changed)."""
    local = getattr(comm, "local_size", 1)
    if model.backend.is_gpu or local <= 1:
        yield None
        return
    share = cores_per_rank(local)
    said, stack = [], contextlib.ExitStack()
    member_ops = getattr(model, "member_ops", None)  # an ensemble: its BLAS already runs on one thread
    with stack:
        if member_ops is None and not any(os.environ.get(v, "").strip() for v in BLAS_ENV):
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                said.append(f"BLAS threads unchanged (install threadpoolctl, or set OPENBLAS_NUM_THREADS={share}, "
                            f"to give each of the {local} ranks on this node {share} core(s))")
            else:
                stack.enter_context(threadpool_limits(limits=share, user_api="blas"))
                said.append(f"{share} BLAS thread(s) per rank")
        if member_ops is not None and hasattr(member_ops, "threads") and not os.environ.get("GPUNN_CPU_THREADS"):
            before = member_ops.threads
            member_ops.threads = min(before, share)
            stack.callback(setattr, member_ops, "threads", before)
            said.append(f"member groups on {member_ops.threads} thread(s)")
        yield f"{'; '.join(said)} ({local} ranks on this node)" if said else None
