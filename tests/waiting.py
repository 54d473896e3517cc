"""Time limits for tests that wait on a child process, counted in the time this process ran.

A wall-clock limit fails a test whose processes were stopped for a while, though nothing in them was slow:
on a shared machine a benchmark lock freezes every nice-19 process (SIGSTOP) for minutes, and Ctrl-Z or a
batch scheduler's suspend does the same. Here the time is counted by polls: each counts what it really took,
but at most ``CAP`` seconds, so a stretch in which this process (and the children it was frozen with) did
not run counts as one poll. A child that really hangs still runs out of time: every poll counts something.
"""
import subprocess
import time

POLL = 0.25  # seconds between looks at the child
CAP = 1.0  # the most one look counts: late under load in full, a stopped stretch as this


class Deadline:
    """``seconds`` of this process's running time from now (see the module's docstring)."""

    def __init__(self, seconds: float):
        self.seconds, self.spent, self._last = float(seconds), 0.0, time.monotonic()

    def tick(self) -> float:
        """Count the time since the last tick (at most CAP); the seconds left."""
        now = time.monotonic()
        self.spent += min(now - self._last, CAP)
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
