"""What a rank wrote to its stdout and stderr, read by the launcher before the rank ends the job (MPI_Abort).

A launcher's process manager reads each rank's stdout and stderr through pipes and forwards them; the rank's
MPI_Abort reaches it another way, over its PMI socket. MPICH's (hydra: ``mpiexec`` and its ``hydra_pmi_proxy``)
exits as soon as the abort reaches ``mpiexec``, and the proxy, finding a rank's PMI socket and its stderr pipe both
ready, serves the socket first (it registered it first: src/pm/hydra/proxy/pmip_cb.c, MPICH 5.0). So the line a rank
wrote just before its abort, the one saying why the job ended, was lost whenever the proxy had not run between the
write and the abort: 10 jobs in 130 on a quiet 2-core machine. A rank that ends the job now first waits until its
pipes are empty: the proxy has then read the line, and sent it on before it reads the abort (it reads a pipe and
forwards what it read in one step). A launcher that reads nothing holds the abort :data:`WAIT_S` seconds at most.
"""
from __future__ import annotations

import os
import stat
import sys
import time

WAIT_S = 2.0  # a proxy starved of CPU on a loaded node reads within a few scheduler periods, well under this


def unread(fd: int) -> int:
    """How many bytes written to the pipe ``fd`` its reader has not read yet (FIONREAD, asked of either end); 0 where
    ``fd`` is no pipe (a file or a terminal holds what was written once write() returns) or where the system cannot
    say (no fcntl: Windows)."""
    try:
        import array
        import fcntl
        import termios

        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return 0
        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count)
        return count[0]
    except (ImportError, OSError):
        return 0


def _written_to() -> list:
    """The file descriptors under sys.stdout and sys.stderr, where they have one (io.StringIO has none)."""
    fds = []
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation is both of the last two)
            continue
        if fd not in fds:
            fds.append(fd)
    return fds


def _pause() -> None:
    time.sleep(0.005)


def read_by_the_launcher() -> None:
    """Return once the reader of this process's stdout and stderr (its launcher) has read all that was written to
    them, or after :data:`WAIT_S` seconds; at once where they are no pipes. Called just before MPI_Abort."""
    deadline = time.monotonic() + WAIT_S
    fds = _written_to()
    while any(unread(fd) for fd in fds) and time.monotonic() < deadline:
        _pause()
