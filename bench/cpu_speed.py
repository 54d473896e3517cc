"""Whether a small fit's slow stretches are the machine's: the fit beside fixed loops that hold no gpunn.

    taskset -c 0 python bench/cpu_speed.py [SECONDS]     # default 30; pinning keeps one CPU's story

Over and over for SECONDS: one fit of issue 11's sequential peer (gpunn bench --config small-x64: a 16-64-64-1 net,
1,024 teacher rows, batch 128, Adam kept from fit to fit, float32, 3 epochs), then a fixed pure-Python loop (20,000
multiply-adds), then 200 NumPy 128x64x64 float32 products on one BLAS thread, each timed in the thread's CPU time
(so descheduling does not count). Per one-second window it prints the medians and, on Linux, how busy the other
CPUs were (/proc/stat); then the correlation of the fit's medians with each loop's over the windows. A
correlation near 1 with the loops slowing by the fit's factor says the CPU itself ran slower in those stretches
(on a shared virtual machine: the host's other tenants or its clock), not gpunn's code: session 25 found the
sequential peer's two speeds so (bench/RESULTS.md, "The sequential peer's two speeds").
"""
import os
import statistics
import sys
import time

from script_args import refusals_said, refuse, whole

PYTHON_LOOP, PRODUCTS = 20_000, 200


def python_loop() -> float:
    x = 0
    for j in range(PYTHON_LOOP):
        x += j * j
    return x


def busy_elsewhere():
    """(busy, total) jiffies of every CPU but the one this thread runs on, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    here = f"cpu{os.sched_getcpu()}" if hasattr(os, "sched_getcpu") else None
    busy = total = 0
    for name, *values in lines:
        if name != here:
            v = [int(x) for x in values[:8]]
            busy, total = busy + sum(v) - v[3] - v[4], total + sum(v)  # all but idle and iowait
    return busy, total


def main(argv):
    if len(argv) > 1:
        refuse(f"takes [SECONDS], got {len(argv)} arguments")
    seconds = whole(argv[0], "SECONDS") if argv else 30
    from gpunn.cli.common import exit_on_bad_settings

    exit_on_bad_settings(os.path.basename(sys.argv[0]))  # as gpunn's commands, before anything is measured
    import numpy
    from threadpoolctl import threadpool_limits

    import gpunn
    from gpunn.optim import Adam

    X, Y = gpunn.datasets.make("teacher", 1024, 16, 1, noise=0.1, seed=0, device="cpu", dtype="float32")
    model, optimizer = gpunn.MLP([16, 64, 64, 1], activation="relu", dtype="float32", device="cpu", seed=0), Adam(lr=1e-3)
    a, b = numpy.ones((128, 64), numpy.float32), numpy.ones((64, 64), numpy.float32)
    out = numpy.empty((128, 64), numpy.float32)

    def fit(seed):
        model.fit(X, Y, epochs=3, batch_size=128, optimizer=optimizer, seed=seed, verbose=False, handle_interrupt=False)

    def products():
        for _ in range(PRODUCTS):
            numpy.matmul(a, b, out=out)

    fit(0)  # compiles or loads the kernels
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; per 1 s window, medians in ms of thread CPU:")
    print("   s  fits  fit    python loop  products  other CPUs busy")
    windows, start, seed = [], time.perf_counter(), 0
    limit = threadpool_limits(1, user_api="blas")  # the products' one thread, set once (a small fit runs on one too)
    while time.perf_counter() - start < seconds:
        rows, t0, cpus = [], time.perf_counter(), busy_elsewhere()
        while time.perf_counter() - t0 < 1.0:
            seed += 1
            row = []
            for work in (lambda: fit(seed), python_loop, products):
                c = time.thread_time()
                work()
                row.append(1e3 * (time.thread_time() - c))
            rows.append(row)
        after = busy_elsewhere()
        busy = (f"{(after[0] - cpus[0]) / (after[1] - cpus[1]):.0%}" if cpus and after and after[1] > cpus[1] else "n/a")
        medians = [statistics.median(r[i] for r in rows) for i in range(3)]
        windows.append(medians)
        print(f"{len(windows):4d}  {len(rows):4d}  {medians[0]:5.2f}  {medians[1]:11.3f}  {medians[2]:8.3f}  {busy}")
    limit.restore_original_limits()
    if len(windows) > 2:
        fits = [w[0] for w in windows]
        for i, name in ((1, "python loop"), (2, "products")):
            others = [w[i] for w in windows]
            r = statistics.correlation(fits, others) if len(set(fits)) > 1 and len(set(others)) > 1 else float("nan")
            print(f"fit against {name}: correlation {r:.2f}; slowest window / fastest: fit "
                  f"{max(fits) / min(fits):.2f}x, {name} {max(others) / min(others):.2f}x")
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the argument is read by position: --help is the docstring
        print(__doc__.strip())
        sys.exit(0)
    with refusals_said():
        main(sys.argv[1:])
