"""Training from data beyond memory: throughput and peak memory of a source against in-memory arrays.

    python -m gpunn.bench.stream make-npy DIR --rows 40000000          # a .npy pair, written chunk by chunk
    python -m gpunn.bench.stream npy DIR --rows 2000000 --epochs 1      # train from it (pread, reader thread)
    python -m gpunn.bench.stream memory DIR --rows 2000000 --epochs 1   # the same rows loaded in memory
    python -m gpunn.bench.stream synthetic --rows 100000000 --epochs 1  # a task generated chunk by chunk
    python -m gpunn.bench.stream synthetic-memory --rows 2000000        # the same task made in memory
    python -m gpunn.bench.stream suite DIR --device cuda                # all of it, one process per run
    python -m gpunn.bench.stream npy DIR --standardize                  # standardized, as gpunn train --standardize

Each run is one process (so its peak resident memory, ru_maxrss, is its own) and prints one JSON
line: rows trained, seconds, samples/s (after a warm-up fit of two batches that compiles the CPU
kernels; on a GPU a source's run also fits a spare model on two batches of a source made as its own, so that CuPy
compiles that path's kernels, which it does at their first call, before the timing), peak RSS; on a GPU also the
device memory CuPy's pool holds at the end (``pool_held_gib``: its ``total_bytes()``, blocks in use and the freed
ones it keeps for reuse; gpunn never frees the pool's blocks, so this is the most the pool held in the process, the
set-up and warm-up included: at least the peak in use, not that peak, which CuPy does not record; the device pool
alone: the pinned host buffers a source stages its windows through (two per pipeline, gpunn.data.pipeline) and the
bandwidth copy's come from CuPy's pinned memory pool, which keeps its freed blocks too but counts no bytes
(``PinnedMemoryPool`` has ``n_free_blocks()`` alone), so no figure here is of them: they are page-locked host memory,
and whether the OS counts them in ``peak_rss_gib`` was not checked on a GPU) and
the host-to-device bandwidth of a pinned copy of one window, timed in the same run. ``--rows`` on
npy/memory takes the first rows of the pair (a source over a prefix of the files). The step is
fit's (gpunn.training): ``model.fit(source)`` for sources, ``model.fit(X, Y)`` for arrays.

``--standardize`` times the path ``gpunn train --standardize`` takes: a source made with standardize=True
standardizes each window on the model's device as it trains (float32 values: the .npy pair, the synthetic task)
and checks it (gpunn.data.overflow); its statistics pass is set-up (``setup_s``), outside the timing. The
in-memory runs standardize their arrays once, before the timing, as the ideal the sources are measured against.
"""
from __future__ import annotations

import json
import os
import resource
import time

import numpy

CONFIG = {"features": 32, "outputs": 1, "hidden": "256,256", "batch_size": 1024}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system): on a shared machine, rows per CPU
    second compare two runs better than rows per wall second."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_npy(directory, rows, features, outputs, seed=0, device="cpu"):
    """X.npy and Y.npy of the teacher task (datasets.stream's rows, generated on ``device``), written
    one chunk at a time."""
    from .. import datasets
    from ..backend import resolve
    from ..data.files import NpyWriter

    backend = resolve(device)
    os.makedirs(directory, exist_ok=True)
    wx = NpyWriter(os.path.join(directory, "X.npy"), features, "float32")
    wy = NpyWriter(os.path.join(directory, "Y.npy"), outputs, "float32")
    for X, Y in datasets.stream("teacher", rows, 65536, features, outputs, seed=seed, device=backend):
        wx.write(backend.to_host(X))
        wy.write(backend.to_host(Y))
    for w in (wx, wy):
        w.close()
        w.commit()


def _prefix(path, rows):
    """(array of the first ``rows`` rows, loaded into memory)."""
    mm = numpy.load(path, mmap_mode="r", allow_pickle=False)
    return numpy.array(mm[:rows])


def copy_bandwidth(backend, rows, columns, dtype="float32", repeats=5):
    """GB/s of a pinned host-to-device copy of a (rows x columns) window, timed with CUDA events."""
    import cupyx

    cp = backend.xp
    host = cupyx.empty_pinned((rows, columns), dtype)
    host[...] = 1
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:  # from the copy stream's own pool: a block freed on another stream may still be in use there
        dev = cp.empty((rows, columns), dtype)
    dev.set(host, stream=stream)
    stream.synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(stream)
    for _ in range(repeats):
        dev.set(host, stream=stream)
    end.record(stream)
    end.synchronize()
    seconds = cp.cuda.get_elapsed_time(start, end) / 1e3
    return host.nbytes * repeats / seconds / 1e9


def _standardize(train, backend):
    """--standardize's set-up: a source's statistics pass (bound as fit binds it, which then keeps them), or the
    in-memory arrays (X, Y) standardized in place, once."""
    if train[1] is None:  # (source, None)
        train[0].bind(backend, "float32")  # the model's dtype (fit binds it again: the statistics are kept)
        return
    from ..data.stats import Standardizer

    X, Y = train
    with backend.use():
        Standardizer.from_pieces([train], X.shape[1], Y.shape[1]).transform_(backend.xp, X, Y)


def _source(args, rows):
    """The run's data source (modes synthetic and npy) over its first ``rows`` rows (None: the files' all), made as
    the run makes it, standardized or not."""
    from .. import data

    if args.mode == "synthetic":
        return data.synthetic("teacher", rows, args.features, args.outputs, seed=0, window=args.window,
                              standardize=args.standardize)
    x, y = os.path.join(args.dir, "X.npy"), os.path.join(args.dir, "Y.npy")
    source = data.npy(x, y, window=args.window, standardize=args.standardize)
    if rows and rows < source.rows:  # train on a prefix: keep the first chunks
        keep = -(-rows // source.chunk_rows)
        sizes = source.chunk_sizes[:keep].copy()
        sizes[-1] = rows - (keep - 1) * source.chunk_rows
        source._set_chunks(sizes)
        source.hold_out(None)
    return source


def _warm_source(args, backend, sizes):
    """A source's warm-up on a GPU: a spare model's fit on a source made as the run's over two batches of rows.
    CuPy compiles a kernel at an operation's first call with given dtypes and dimensions (kept in
    ~/.cupy/kernel_cache for later processes; a fresh GPU machine has none), and a source's path makes calls the
    in-memory warm-up does not (the synthetic task's generation, each window's shuffle; standardized, each window's
    transform, gpunn.data.overflow's check and its flag read with the loss): they compiled in the first timed epoch.
    A spare model: one fit on a standardized source keeps its statistics, and would scale the timed source by them."""
    from ..model import MLP
    from .runners import timed_fit

    timed_fit(MLP(sizes, device=backend, seed=0), _source(args, 2 * args.batch_size), epochs=1,
              batch_size=args.batch_size)


def run(args) -> dict:
    from ..backend import resolve
    from ..model import MLP
    from .runners import timed_fit

    backend = resolve(args.device)
    hidden = [int(h) for h in args.hidden.split(",")]
    result = {"mode": args.mode, "device": backend.device, "epochs": args.epochs, "batch_size": args.batch_size,
              "hidden": hidden, "standardize": args.standardize}
    t0 = time.perf_counter()
    if args.mode in ("synthetic", "npy"):
        source = _source(args, args.rows)
        n_in, n_out, rows = source.n_features, source.n_outputs, source.rows
        train = (source, None)
    elif args.mode == "synthetic-memory":
        from .. import datasets

        train = datasets.make("teacher", args.rows, args.features, args.outputs, seed=0, device=backend)
        n_in, n_out, rows = args.features, args.outputs, args.rows
    else:
        x, y = os.path.join(args.dir, "X.npy"), os.path.join(args.dir, "Y.npy")
        rows = args.rows or numpy.load(x, mmap_mode="r").shape[0]
        X, Y = _prefix(x, rows), _prefix(y, rows)
        n_in, n_out = X.shape[1], Y.shape[1]
        if backend.is_gpu:
            with backend.use():
                X, Y = backend.xp.asarray(X), backend.xp.asarray(Y)
        train = (X, Y)
    if args.standardize:
        _standardize(train, backend)
    result["setup_s"] = time.perf_counter() - t0
    model = MLP([n_in, *hidden, n_out], device=backend, seed=0)
    warm = numpy.random.default_rng(0).standard_normal((2 * args.batch_size, n_in + n_out)).astype("float32")
    timed_fit(model, warm[:, :n_in], warm[:, n_in:], epochs=1, batch_size=args.batch_size)  # JIT, workspaces
    if train[1] is None and backend.is_gpu:  # a source: its own path's kernels
        _warm_source(args, backend, [n_in, *hidden, n_out])
    model.init_parameters()
    cpu0 = _cpu_seconds()
    history = timed_fit(model, *train, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3)
    seconds, cpu = sum(history["time_s"]), _cpu_seconds() - cpu0
    result.update(rows=rows, seconds=seconds, samples_per_s=rows * len(history["time_s"]) / seconds,
                  cpu_seconds=cpu, samples_per_cpu_s=rows * len(history["time_s"]) / cpu,
                  epoch_samples_per_s=history["samples_per_s"], loss=history["loss"][-1],
                  peak_rss_gib=peak_rss_bytes() / 2**30)
    if backend.is_gpu:
        with backend.use():
            result["pool_held_gib"] = backend.xp.get_default_memory_pool().total_bytes() / 2**30
            result["h2d_gbps_pinned"] = copy_bandwidth(backend, 16 * 65536, n_in + n_out)
    return result


def main(argv=None) -> int:
    from ..cli.common import notes_shown

    with notes_shown():  # gpunn's own warnings as its commands show them: one note: line each
        return _main(argv)


def _main(argv) -> int:
    from ..cli.common import Parser

    # gpunn's commands' rules (Parser.parse_strictly): options in full, one given twice refused, one-line errors
    p = Parser(prog="python -m gpunn.bench.stream", description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("make-npy", "npy", "memory", "synthetic", "synthetic-memory", "suite"))
    p.add_argument("dir", nargs="?", default="bench/out/stream", help="folder of X.npy and Y.npy (default: %(default)s)")
    p.add_argument("--rows", type=int, default=None, help="rows (make-npy: all, default 2,000,000; synthetic: all, "
                   "default 10,000,000; synthetic-memory: all, needed; npy, memory: a prefix, default every row)")
    p.add_argument("--features", type=int, default=CONFIG["features"], help="(default: %(default)s)")
    p.add_argument("--outputs", type=int, default=CONFIG["outputs"], help="(default: %(default)s)")
    p.add_argument("--hidden", default=CONFIG["hidden"], help="hidden layer sizes (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=CONFIG["batch_size"], help="(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs (default: %(default)s)")
    p.add_argument("--window", type=int, default=16, help="chunks shuffled together (default: %(default)s)")
    p.add_argument("--device", default="auto", help="(default: %(default)s)")
    p.add_argument("--standardize", action="store_true", help="standardize inputs and targets, as gpunn train "
                   "--standardize: sources on the device, window by window, as they train (their statistics pass "
                   "untimed); in-memory arrays once, before the timing")
    p.add_argument("--json", metavar="PATH", help="append the result line to PATH")
    p.add_argument("--stream-rows", type=int, default=100_000_000, help="suite: rows of the synthetic stream "
                   "(default: 100,000,000)")
    p.add_argument("--memory-rows", type=int, default=2_000_000, help="suite: rows of the in-memory baselines "
                   "(default: 2,000,000)")
    p.add_argument("--npy-rows", type=int, default=2_000_000, help="suite: rows of the .npy pair, made if absent "
                   "(default: 2,000,000)")
    args = p.parse_strictly(argv)
    if args.mode == "suite":
        return suite(args)
    if args.mode == "make-npy":
        t0, rows = time.perf_counter(), args.rows or 2_000_000
        make_npy(args.dir, rows, args.features, args.outputs)
        print(json.dumps({"mode": "make-npy", "rows": rows, "seconds": time.perf_counter() - t0,
                          "bytes": sum(os.path.getsize(os.path.join(args.dir, f)) for f in ("X.npy", "Y.npy"))}))
        return 0
    if args.mode == "synthetic" and not args.rows:
        args.rows = 10_000_000
    if args.mode == "synthetic-memory" and not args.rows:
        p.error("synthetic-memory needs --rows (the suite gives it --memory-rows)")
    result = run(args)
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(line + "\n")
    return 0


def suite(args) -> int:
    """Each comparison in its own process: a synthetic stream against the task in memory, then the
    .npy pair (made first when missing) against its rows in memory; prints ratios of samples/s."""
    import subprocess
    import sys

    common = ["--features", str(args.features), "--outputs", str(args.outputs), "--hidden", args.hidden,
              "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--window", str(args.window),
              "--device", args.device] + (["--json", args.json] if args.json else []) + \
        (["--standardize"] if args.standardize else [])

    def one(mode, *extra):
        out = subprocess.run([sys.executable, "-m", "gpunn.bench.stream", mode, *extra, *common],
                             capture_output=True, text=True)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        print(line or out.stderr[-2000:], flush=True)
        return json.loads(line) if line.startswith("{") else None

    results = {"memory": one("synthetic-memory", "--rows", str(args.memory_rows)),
               "stream": one("synthetic", "--rows", str(args.stream_rows))}
    x_path = os.path.join(args.dir, "X.npy")
    if not os.path.exists(x_path) or numpy.load(x_path, mmap_mode="r").shape[0] < args.npy_rows:
        one("make-npy", args.dir, "--rows", str(args.npy_rows))
    results["npy"] = one("npy", args.dir, "--rows", str(args.npy_rows))
    results["npy_memory"] = one("memory", args.dir, "--rows", str(args.npy_rows))
    for name, base in (("stream", "memory"), ("npy", "npy_memory")):
        a, b = results[name], results[base]
        if a and b:
            print(f"{name}: {a['samples_per_s']:,.0f} samples/s = {a['samples_per_s'] / b['samples_per_s']:.2f}x "
                  f"in memory ({b['samples_per_s']:,.0f}); peak RSS {a['peak_rss_gib']:.2f} GiB "
                  f"(in memory {b['peak_rss_gib']:.2f} GiB)" +
                  (f"; H2D {a['h2d_gbps_pinned']:.1f} GB/s pinned" if "h2d_gbps_pinned" in a else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
