"""What a rank wrote to its stdout and stderr, read by the launcher before the rank ends the job (MPI_Abort).

A launcher's process manager reads each rank's stdout and stderr through pipes and forwards them; the rank's
MPI_Abort reaches it another way, over its PMI socket. MPICH's (hydra: ``mpiexec`` and its ``hydra_pmi_proxy``)
exits as soon as the abort reaches ``mpiexec``, and the proxy, finding a rank's PMI socket and its stderr pipe both
ready, serves the socket first (it registered it first: src/pm/hydra/proxy/pmip_cb.c, MPICH 5.0). So the line a rank
wrote just before its abort, the one saying why the job ended, was lost whenever the proxy had not run between the
write and the abort: 10 jobs in 130 on a quiet 2-core machine. A rank that ends the job now first waits until its
pipes are empty: the proxy has then read the line, and sent it on before it reads the abort (it reads a pipe and
forwards what it read in one step). A launcher that reads nothing holds the abort :data:`WAIT_S` seconds at most.

Before that wait, Python's own buffers of the streams are written out: MPI_Abort ends the process in C, without
Python's exit, and the script's print() output still in sys.stdout's buffer (block-buffered where stdout is a pipe,
as under a launcher) was lost with it (a failing fit's abort, the watchdog's; Python flushes stdout itself before an
uncaught exception reaches its hook).

What the wait cannot cover: the line MPICH's MPI_Abort writes itself (``Abort(3) on node 0 (rank 0 in comm 0):
application called MPI_Abort(...)``, src/mpid/ch4/src/ch4_globals.c MPID_Abort), which it follows at once, in the
same C call, with its abort message to the proxy; no code of the rank runs between the two. On an abort of
COMM_WORLD, which every gpunn abort is, that message goes over the PMI socket and the line can be lost as gpunn's
was (2 jobs in 60). Aborting gpunn's own communicator kept it (MPICH tells the other ranks directly and the rank
exits, src/mpid/ch4/src/mpidig_comm_abort.c, and the proxy reads the rank's pipes to their end before it reports the
exit, src/pm/hydra/proxy/pmip.c), but then ``mpiexec`` returned either the abort's code or 9, of the rank it killed,
by which it saw end first (gpunn.distributed.comm.MpiComm.abort): a job's status that says how it ended was judged
worth more than MPICH's line repeating gpunn's.
"""
from __future__ import annotations

import os
import stat
import sys
import threading
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


def _streams() -> list:
    """sys.stdout and sys.stderr, and the streams Python started with where a script replaced those, once each."""
    streams = []
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None and all(stream is not seen for seen in streams):
            streams.append(stream)
    return streams


def _flush(streams) -> None:
    for stream in streams:
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - closed, a broken pipe, a script's own object: the abort goes on
            pass


def flushed(deadline: float) -> None:
    """Python's buffers of this process's streams (:func:`_streams`) written to their files, waited for until
    ``deadline`` (time.monotonic()) at most: a flush blocks where the pipe is full and its reader reads nothing, or
    where another thread holds the stream while it blocks so, and a rank must end the job all the same. In a thread
    of its own for that bound (at interpreter shutdown, where no thread starts, here)."""
    streams = _streams()
    flusher = threading.Thread(target=_flush, args=(streams,), name="gpunn-flush-before-abort", daemon=True)
    try:
        flusher.start()
    except RuntimeError:
        _flush(streams)
        return
    flusher.join(max(0.0, deadline - time.monotonic()))


def read_by_the_launcher() -> None:
    """Return once the reader of this process's stdout and stderr (its launcher) has read all that was written to
    them, Python's buffers flushed first (:func:`flushed`), or after :data:`WAIT_S` seconds; at once where they are
    no pipes. Called just before MPI_Abort."""
    deadline = time.monotonic() + WAIT_S
    flushed(deadline)
    fds = _written_to()
    while any(unread(fd) for fd in fds) and time.monotonic() < deadline:
        _pause()
