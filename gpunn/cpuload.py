"""What other processes took of the machine's CPU while something ran (/proc/stat): gpunn bench marks its timings
with it, and gpunn train says when a loaded machine stalls NumPy's BLAS threads. A module of its own, light to import:
importing gpunn.bench.system loads the whole benchmark."""
from __future__ import annotations

import math
import os
import time


def machine_cpu_seconds(path="/proc/stat") -> tuple[float, float] | None:
    """(CPU seconds the machine's cores have been busy, and have been in all, since boot) from the first line of
    /proc/stat (busy: every state but idle and iowait, the hypervisor's steal included), or None where it cannot
    be read (not Linux)."""
    try:
        with open(path) as fh:
            fields = fh.readline().split()
        ticks = [int(x) for x in fields[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(ticks) < 5:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def machine_cores() -> int:
    """The cores /proc/stat's busy and total times are of: every online CPU of the machine, not only those this
    process may run on (a taskset, a cgroup's cpuset, Slurm's --cpus-per-task)."""
    try:
        return max(1, os.sysconf("SC_NPROCESSORS_ONLN"))
    except (OSError, ValueError, AttributeError):
        return os.cpu_count() or 1


class OthersCpu:
    """``with OthersCpu() as load: ...``: then ``load.share`` is the part of the machine's CPU time that other
    processes (and a hypervisor's steal) took meanwhile: the cores' busy time less this process's own CPU time,
    over all the cores' time; nan where /proc/stat cannot be read or no clock tick (10 ms) passed; ``load.seconds``
    the wall time. On a shared 2-core machine a short timing round then got a fraction of a core, which changed from
    round to round: --quick's "% of GEMM" came out 15-441% for the same code with others at about 80% (bench20,
    2026-11-30)."""

    share = math.nan
    seconds = math.nan

    def start(self):
        self._start = machine_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def stop(self):
        (start, ours, wall), end = self._start, machine_cpu_seconds()
        self.seconds = time.perf_counter() - wall
        if start is not None and end is not None and end[1] > start[1]:
            others = (end[0] - start[0]) - (time.process_time() - ours)
            self.share = min(1.0, max(0.0, others / (end[1] - start[1])))
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
