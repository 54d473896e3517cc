"""What a synthetic stream costs before its first row: setting up its chunk table, and one epoch's plan.

    python bench/stream_setup.py [ROWS ...]     # default 1e9 1e10 1e11 1e12; each in a fresh process

Each row count is a fresh Python process that makes `gpunn.data.synthetic("teacher", rows, 32,
validation_fraction=0.1)` (what `gpunn train --rows ROWS` streams: 10% held out), then plans epoch 0
(`source.plan(0)`: the training runs in the epoch's order, cut into windows), and reports the seconds of each and
the process's peak resident memory after them (`ru_maxrss`, which counts the imports: ~100 MB with nothing made).
No row is generated. The set-up and the plan are the host work a stream adds per run and per epoch whatever its
device; they were lists of Python ints until session 34 (~600 bytes per chunk: 10^12 rows, 15 million chunks, ran
out of memory at 9 GB). Results: bench/RESULTS.md.
"""
import json
import os
import platform
import math
import subprocess
import sys

from script_args import refusals_said, refuse

CHILD = r"""
import json, resource, sys, time
import gpunn.data as data
rows = int(float(sys.argv[1]))
t = time.perf_counter()
source = data.synthetic("teacher", rows=rows, n_features=32, validation_fraction=0.1)
made = time.perf_counter()
windows = source.plan(0)
planned = time.perf_counter()
print(json.dumps({"rows": rows, "chunks": len(source.chunk_sizes), "windows": len(windows), "set_up_s": made - t,
                  "plan_s": planned - made, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def row_count(text) -> str:
    """ROWS as given ("1e12" or "1000000000000"), refused unless it is a whole number of rows, 1 or more."""
    try:
        rows = float(text)
    except ValueError:
        rows = math.nan
    if not (math.isfinite(rows) and rows >= 1 and rows == int(rows)):
        refuse(f"ROWS must be a whole number of rows, 1 or more (1e12 or 1000000000000), got {text!r}")
    return text


def main(argv):
    if {"-h", "--help"} & set(argv):  # the arguments are read by position: --help is the docstring
        print(__doc__.strip())
        return
    rows = [row_count(value) for value in argv] or ["1e9", "1e10", "1e11", "1e12"]  # refused before any child runs
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}")
    print(f"{'rows':>8} {'chunks':>11} {'windows':>9} {'set-up s':>9} {'plan s':>7} {'peak MB':>8}")
    for value in rows:
        done = subprocess.run([sys.executable, "-c", CHILD, value], env=env, capture_output=True, text=True)
        if done.returncode:
            print(f"{value:>8} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            continue
        got = json.loads(done.stdout)
        print(f"{value:>8} {got['chunks']:>11,} {got['windows']:>9,} {got['set_up_s']:>9.2f} {got['plan_s']:>7.2f} "
              f"{got['peak_mb']:>8.0f}")


if __name__ == "__main__":
    with refusals_said():
        main(sys.argv[1:])
