"""MPI_Init timed from a process of its own, so that a rank waiting there for a process that never comes ends the job.

A process of the job that leaves before it starts MPI (an exit status, ``sys.exit(1)``, which no excepthook sees; a
failure before ``import gpunn``) is not noticed by MPICH's ``mpiexec``: it ends a job when a process is killed or
aborts, or exits after starting MPI (src/pm/hydra/proxy/pmip_cb.c: the PMI socket closed of a process that began
PMI). The others waited for it in MPI_Init forever. No thread of the rank can time that wait: mpi4py calls MPI_Init
while importing ``mpi4py.MPI``, holding the GIL, so no Python thread runs (gpunn's watchdog included) and a signal's
Python handler waits too. So a child process (``python -I -S`` running this file: no site, no gpunn, ~10 ms, beside
MPI_Init) waits on a pipe that the rank closes once MPI has started. Should the rank not have closed it within the
timeout, the child writes the rank's line to the stderr it shares with the rank, waits until the launcher has read it
(:func:`gpunn.distributed.output.read_by_the_launcher`) and kills the rank: SIGKILL, which nothing in the rank can
delay (it is held in C; a Python handler of SIGTERM or SIGALRM would never run). The launcher sees a rank killed and
ends the job (MPICH's ``mpiexec``: status 9). The wait is counted as the watchdog counts it: a stretch in which the
processes were stopped (SIGSTOP) counts as one look.

The child holds no end of the rank's stdout or stderr where they are pipes (a launcher's): it opens them again
through /proc only when it has to speak. A launcher reports a rank's end once every holder of its pipes has closed
them (hydra's proxy reads them to their end first), so a child inheriting them held back the report of a rank that
ended the job with MPI_Abort (gpunn.distributed.comm._abort_job, timed by this child) until the child had left: the
launcher meanwhile killed the other ranks, and mpiexec returned their status 9, not the abort's code (in a third of
the test runs of a hung rank's job, tests/test_distributed.py, on a 2-core Xeon).
"""
from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time


@contextlib.contextmanager
def timed_start(line: str, timeout: float):
    """A context in which this process starts MPI (``from mpi4py import MPI``): a child process ends it, saying
    ``line`` (a format field in it, ``{:.0f}`` say: the seconds waited), where it is still in the context after ``timeout`` seconds of
    waiting. Nothing under ``timeout`` inf, off POSIX, or where the child cannot start (the wait is then untimed, as
    it was)."""
    watcher = None
    if os.name == "posix" and timeout < math.inf and os.path.isfile(__file__):  # (not from a zip)
        reopened = _pipes_to_reopen()
        with contextlib.suppress(OSError, ValueError):  # (ValueError: no sys.executable, an embedded interpreter)
            watcher = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()),
                                        repr(float(timeout)), line, ",".join(map(str, reopened))],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL if 1 in reopened else None,
                                       stderr=subprocess.DEVNULL if 2 in reopened else None)
    try:
        yield
    finally:
        if watcher is not None:
            watcher.stdin.close()  # the child sees the pipe's end, and leaves: reaped by a thread, not waited for
            with contextlib.suppress(RuntimeError):  # (no thread at interpreter shutdown: a zombie till this exits)
                threading.Thread(target=watcher.wait, name="gpunn-init-watch-reaper", daemon=True).start()


def _pipes_to_reopen() -> list:
    """Of this process's stdout and stderr (fds 1 and 2), the pipes the child can open again through /proc (Linux),
    and so need not inherit; anything else (a file, a terminal, a socket, no /proc) it inherits, as it always did."""
    fds = []
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and os.path.exists(f"/proc/{os.getpid()}/fd/{fd}"):
                fds.append(fd)
    return fds


def _reopen(rank: int, fds) -> None:
    """The rank's pipes ``fds`` (:func:`_pipes_to_reopen`) opened again through /proc onto this process's own fds,
    where the rank still has them: what the child writes, and waits to see read, is then on the rank's streams."""
    for fd in fds:
        with contextlib.suppress(OSError):
            opened = os.open(f"/proc/{rank}/fd/{fd}", os.O_WRONLY | os.O_APPEND)
            os.dup2(opened, fd)
            os.close(opened)


def _watch(rank: int, timeout: float, line: str, reopened=()) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a Ctrl-C is the rank's to handle: no traceback of this child)
    period = min(1.0, max(timeout / 4, 0.05))  # the watchdog's (comm._Watchdog)
    waited, last = 0.0, time.monotonic()
    while waited <= timeout:
        if select.select([sys.stdin], [], [], period)[0]:
            return  # the rank closed its end: MPI started, or the rank ended
        now = time.monotonic()
        waited, last = waited + min(now - last, 2 * period), now
    _reopen(rank, reopened)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line.format(waited))
        sys.stderr.flush()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from output import read_by_the_launcher  # (output.py needs the standard library alone: no gpunn import here)

    read_by_the_launcher()
    with contextlib.suppress(ProcessLookupError):
        os.kill(rank, signal.SIGKILL)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], [int(fd) for fd in sys.argv[4].split(",") if fd])
