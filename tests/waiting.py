"""Time limits for tests that wait on a child process, counted in the time this process ran, at the share of
the CPUs the machine's load left it.

A wall-clock limit fails a test whose processes were stopped for a while, though nothing in them was slow:
on a shared machine a benchmark lock freezes every nice-19 process (SIGSTOP) for minutes, and Ctrl-Z or a
batch scheduler's suspend does the same. Here the time is counted by polls: each counts what it really took,
but at most ``CAP`` seconds, so a stretch in which this process (and the children it was frozen with) did
not run counts as one poll. A child that really hangs still runs out of time: every poll counts something.
On a loaded machine the child runs slower for want of CPU, not for a fault: each poll counts its time times
:func:`cpu_share` (the CPUs over the load average), so 120 s is 120 s on an idle machine and 600 s of wall
clock at a load of five times the CPUs. A hang still fails: at worst (``MIN_SHARE``) ten times its limit, and
never past ``STRETCHED_MOST`` seconds, so that the test fails with its own message before pytest-timeout (1200 s,
pyproject.toml) ends the whole run.
"""
import os
import subprocess
import threading
import time

POLL = 0.25  # seconds between looks at the child
CAP = 1.0  # the most one look counts: late under load in full, a stopped stretch as this
MIN_SHARE = 0.1  # the least share of a CPU a look counts at: a limit stretches at most tenfold under load
STRETCHED_MOST = 900  # seconds a limit stretched by the load reaches at most: under pytest-timeout's 1200 s


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


CPUS = _cpus()


def cpu_share() -> float:
    """The share of a CPU a runnable process gets now, by the 1-minute load average: CPUS / load, at most 1 (an
    idle machine, or one as busy as it has CPUs) and at least MIN_SHARE; 1 where there is no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0
    return 1.0 if load <= CPUS else max(MIN_SHARE, CPUS / load)


class Deadline:
    """``seconds`` of this process's running time from now (see the module's docstring)."""

    def __init__(self, seconds: float):
        self.seconds, self.spent, self._last = float(seconds), 0.0, time.monotonic()
        # the least share a look counts at: MIN_SHARE, or more for a long limit (600 s: 2/3), so that no limit
        # stretches past STRETCHED_MOST
        self._least_share = min(1.0, max(MIN_SHARE, self.seconds / STRETCHED_MOST))

    def tick(self) -> float:
        """Count the time since the last tick (at most CAP, at the load's cpu_share); the seconds left."""
        now = time.monotonic()
        self.spent += min(now - self._last, CAP) * max(cpu_share(), self._least_share)
        self._last = now
        return self.seconds - self.spent

    def expired(self) -> bool:
        return self.tick() <= 0

    def sleep(self, seconds: float = POLL) -> None:
        time.sleep(seconds)
        self.tick()


def communicate(proc: subprocess.Popen, timeout) -> tuple:
    """``proc.communicate()`` within ``timeout`` (seconds or a Deadline, which then holds the time spent): its
    (stdout, stderr). Past it, the child is killed and subprocess.TimeoutExpired raised, as communicate does."""
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    while True:
        try:
            result = proc.communicate(timeout=POLL)
        except subprocess.TimeoutExpired:
            if deadline.expired():
                proc.kill()
                out, err = proc.communicate()
                raise subprocess.TimeoutExpired(proc.args, deadline.seconds, out, err) from None
        else:
            deadline.tick()
            return result


def run(args, timeout, **popen) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True, timeout=timeout, **popen) with the timeout counted
    as :class:`Deadline` counts it."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    out, err = communicate(proc, timeout)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def read_until(proc: subprocess.Popen, wanted, timeout):
    """The first line of ``proc``'s stdout holding ``wanted`` (str, or bytes for a binary pipe), read within
    ``timeout`` (seconds or a Deadline); the lines before it are dropped, the ones after it left in the pipe
    for a later :func:`communicate` (read a byte at a time: a buffered readline takes in what follows the line,
    where communicate, reading the pipe itself, never sees it). A plain readline also blocks for as long as
    the child lives without writing a line: here a thread reads, and the wait is counted as Deadline counts
    it. Past the time, or when the output ends first, the child is killed and AssertionError raised with its
    status and stderr (where that is a pipe)."""
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    text = isinstance(wanted, str)
    needle = wanted.encode(proc.stdout.encoding) if text else wanted
    fd, found = proc.stdout.fileno(), []

    def read():
        line = bytearray()
        while byte := os.read(fd, 1):
            line += byte
            if byte == b"\n":
                if needle in line:
                    found.append(line.decode(proc.stdout.encoding, proc.stdout.errors) if text else bytes(line))
                    return
                line.clear()

    reader = threading.Thread(target=read, name="waiting.read_until", daemon=True)
    reader.start()
    while reader.is_alive():
        reader.join(POLL)
        if reader.is_alive() and deadline.expired():
            raise AssertionError(f"no line with {wanted!r} within {deadline.seconds:.0f} s{_killed(proc)}")
    deadline.tick()
    if not found:
        raise AssertionError(f"the output ended without a line with {wanted!r}{_killed(proc)}")
    return found[0]


def _killed(proc: subprocess.Popen) -> str:
    """Kill the child (if it still runs); its status and what it wrote to a stderr pipe, for a failure message."""
    proc.kill()
    err = proc.stderr.read() if proc.stderr is not None else ""
    proc.wait()
    return f" (status {proc.returncode})" + (f", stderr:\n{err[-3000:]!s}" if err else "")
