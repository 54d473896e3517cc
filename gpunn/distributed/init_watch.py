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
"""
from __future__ import annotations

import contextlib
import math
import os
import select
import signal
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
        with contextlib.suppress(OSError, ValueError):  # (ValueError: no sys.executable, an embedded interpreter)
            watcher = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()),
                                        repr(float(timeout)), line], stdin=subprocess.PIPE)
    try:
        yield
    finally:
        if watcher is not None:
            watcher.stdin.close()  # the child sees the pipe's end, and leaves: reaped by a thread, not waited for
            with contextlib.suppress(RuntimeError):  # (no thread at interpreter shutdown: a zombie till this exits)
                threading.Thread(target=watcher.wait, name="gpunn-init-watch-reaper", daemon=True).start()


def _watch(rank: int, timeout: float, line: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a Ctrl-C is the rank's to handle: no traceback of this child)
    period = min(1.0, max(timeout / 4, 0.05))  # the watchdog's (comm._Watchdog)
    waited, last = 0.0, time.monotonic()
    while waited <= timeout:
        if select.select([sys.stdin], [], [], period)[0]:
            return  # the rank closed its end: MPI started, or the rank ended
        now = time.monotonic()
        waited, last = waited + min(now - last, 2 * period), now
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line.format(waited))
        sys.stderr.flush()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from output import read_by_the_launcher  # (output.py needs the standard library alone: no gpunn import here)

    read_by_the_launcher()
    with contextlib.suppress(ProcessLookupError):
        os.kill(rank, signal.SIGKILL)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
