"""Elementwise-op bandwidth: each op's achieved GB/s against a device-to-device copy, fused vs unfused.

Bytes are the fewest an op must move (every input read once, every output written once), so
GB/s / copy GB/s is the fraction of the memory roofline reached. On the GPU, "fused" is CupyOps'
kernels and "unfused" the plain CuPy expressions of the reference Ops; on the CPU only the
reference runs. One row is an ensemble's: the Adam step of K = 256 members on the same n elements
(n / K each), in one launch of kernels/ensemble.cu's member_adam_step on the GPU (CupyEnsembleOps;
unfused: the generic EnsembleOps), beside the one-model "adam step" row of the same size.
Usage: python -m gpunn.bench.kernels [--device cuda] [--sizes 24] [--json out.json]
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy

from .. import backend as _backend
from ..activations import ACTIVATIONS
from ..ops import ensemble_ops_for
from ..ops.base import Ops
from ..ops.ensemble import EnsembleOps
from ..ops.member_rates import ACTIVE, BETA1, BETA2, HYPER_FIELDS, LR, MemberRates
from ..rng import DeviceRNG

MEMBERS = 256  # the ensemble row's K: issue 11's ensembles of 256 small nets
COLS = 1024  # each op's n elements are laid out as n / COLS rows of COLS (the ensemble row's as MEMBERS rows)
SMALLEST = COLS.bit_length() - 1  # --sizes' least log2 size: one row (2^10 elements; the ensemble row 4 each)


def timer(backend, fn, repeat):
    """Median seconds of fn() over ``repeat`` runs after warm-up (device events on the GPU)."""
    if backend.is_gpu:
        from cupyx.profiler import benchmark

        return float(statistics.median(benchmark(fn, n_repeat=repeat, n_warmup=3).gpu_times[0]))
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def member_rates(xp, members):
    """The ensemble row's per-member settings: every member active, Adam's defaults, lr 1e-3."""
    row = numpy.zeros(HYPER_FIELDS)  # no weight decay, no momentum
    row[[LR, BETA1, BETA2, ACTIVE]] = 1e-3, 0.9, 0.999, 1.0
    return MemberRates(xp, numpy.tile(row, (members, 1)))


def cases(backend, ops, n, dtype, cols=COLS, members=MEMBERS, member_ops=None):
    """(name, callable, bytes moved) for each op at n elements laid out as (n/cols) x cols; the ensemble row's
    parameters are the same n elements as ``members`` rows, stepped by ``member_ops`` (default: the member-axis ops
    over ``ops`` on the GPU, the generic reference on the CPU)."""
    if member_ops is None:
        member_ops = ensemble_ops_for(ops) if backend.is_gpu else EnsembleOps(ops)
    rows = n // cols
    rng = DeviceRNG(backend, 0, "kernel-bench")

    def new():  # random data: zeros would hide unwritten outputs and can time faster than real data
        return rng.normal((rows, cols), dtype)

    Z, Zr, dA, Y, out = new(), new(), new(), new(), new()
    b = 0.1 * rng.normal((cols,), dtype)
    flat = [new().reshape(-1) for _ in range(4)]
    w, g, m, v = flat
    v *= v  # a second moment is non-negative
    size = Z.itemsize * rows * cols
    rates = member_rates(backend.xp, members)
    W, G, M, V = (a.reshape(members, a.size // members) for a in flat)  # views: member k's n / K parameters: row k
    relu, gelu, tanh = ACTIVATIONS["relu"], ACTIVATIONS["gelu"], ACTIVATIONS["tanh"]
    return [
        ("forward relu (A=g(Z+b), in place)", lambda: ops.bias_activation(Zr, b, relu, Zr, keep_z=False), 2 * size),
        ("forward gelu (keep Z, write A)", lambda: ops.bias_activation(Z, b, gelu, out, keep_z=True), 3 * size),
        ("backward relu from A", lambda: ops.activation_backward(dA, relu, Z, True, out), 3 * size),
        ("backward tanh from A", lambda: ops.activation_backward(dA, tanh, Z, True, out), 3 * size),
        ("backward gelu from Z", lambda: ops.activation_backward(dA, gelu, Z, False, out), 3 * size),
        ("loss + dA[L]", lambda: ops.loss_gradient(Z, Y, out), 3 * size),
        ("bias gradient (column sums)", lambda: ops.bias_gradient(dA, b), size),
        ("sgd momentum step", lambda: ops.sgd_step(w, g, m, 1e-3, 0.9, False, 0.0), 5 * size),
        ("adam step", lambda: ops.adam_step(w, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 10, 0.0, False), 7 * size),
        # the same seven passes, and the members' settings table read once
        (f"ensemble adam step, K={members}", lambda: member_ops.adam_step(W, G, M, V, rates, 1e-8, 10, False),
         7 * size + rates.host.nbytes),
    ]


def copy_seconds(backend, xp, n, dtype, repeat):
    """(seconds, bytes moved, how) of the fastest device-to-device copy of n elements, measured at this size:
    a copy kernel (xp.copyto) and, on the GPU, cudaMemcpyAsync; read + write count as bytes."""
    src, dst = xp.ones(n, dtype), xp.empty(n, dtype)
    best = (timer(backend, lambda: xp.copyto(dst, src), repeat), "copy kernel")
    if backend.is_gpu:
        memcpy = timer(backend, lambda: dst.data.copy_from_device_async(src.data, src.nbytes), repeat)
        best = min(best, (memcpy, "cudaMemcpy"))
    return best[0], 2 * src.nbytes, best[1]


def run(device="auto", log2_sizes=(24,), dtype="float32", repeat=20, on_size=None):
    """The rows for each size; ``on_size(result so far)`` after each size (so a killed run keeps them)."""
    backend = _backend.resolve(device)
    xp = backend.xp
    variants = {"reference": Ops(xp)}
    if backend.is_gpu:
        from ..ops.cuda import CupyOps

        variants = {"fused": CupyOps(fused=True), "unfused": CupyOps(fused=False)}
    rows = []
    with backend.use():
        for log2 in log2_sizes:
            n = 2**log2
            copy_s, copy_bytes, copy_how = copy_seconds(backend, xp, n, dtype, repeat)  # at every size: small
            copy_gbs = copy_bytes / copy_s / 1e9  # copies are launch-bound, large ones bandwidth-bound
            results = {}
            for label, ops in variants.items():
                for name, fn, nbytes in cases(backend, ops, n, dtype):
                    results.setdefault(name, {"bytes": nbytes})[label] = timer(backend, fn, repeat)
            for name, r in results.items():
                best = r.get("fused", r.get("reference"))
                row = {"op": name, "elements": n, "dtype": dtype, "seconds": best, "gb_per_s": r["bytes"] / best / 1e9,
                       "copy_gb_per_s": copy_gbs, "copy_by": copy_how}
                row["fraction_of_copy"] = row["gb_per_s"] / copy_gbs
                if "unfused" in r:
                    row["unfused_seconds"] = r["unfused"]
                    row["fused_speedup"] = r["unfused"] / best
                rows.append(row)
            if on_size is not None:
                on_size({"device": backend.describe(), "dtype": dtype, "rows": list(rows)})
    return {"device": backend.describe(), "dtype": dtype, "rows": rows}


def table(result) -> str:
    lines = [f"elementwise ops on {result['device']}, {result['dtype']} (bytes = each input read once, each output "
             "written once; \"of copy\": against a device-to-device copy of the same size, measured at that size)",
             f"{'op':<36}{'2^k':>5}{'GB/s':>9}{'copy GB/s':>11}{'of copy':>9}{'fused vs unfused':>18}"]
    for r in result["rows"]:
        speedup = f"{r['fused_speedup']:.2f}x" if "fused_speedup" in r else "-"
        lines.append(f"{r['op']:<36}{r['elements'].bit_length() - 1:>5}{r['gb_per_s']:>9.1f}{r['copy_gb_per_s']:>11.1f}"
                     f"{r['fraction_of_copy']:>8.0%}{speedup:>18}")
    seen = {}
    for r in result["rows"]:
        seen.setdefault(r["elements"], r)
    for n, r in seen.items():
        lines.append(f"device-to-device copy at 2^{n.bit_length() - 1}: {r['copy_gb_per_s']:.1f} GB/s (read + write, "
                     f"{r.get('copy_by', 'copy kernel')})")
    return "\n".join(lines)


def log2_sizes(parser, text) -> list:
    """--sizes as log2 element counts, each SMALLEST or more; else the parser's one-line refusal (status 2). A smaller
    size has no row of COLS elements: its rows measured 0 elements (0 GB/s), and a non-number was a traceback."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"--sizes {text!r}: give comma-separated whole numbers, the log2 element counts (e.g. 20,24)")
    small = [str(k) for k in sizes if k < SMALLEST]
    if small:
        parser.error(f"--sizes {text}: {', '.join(small)} {'is' if len(small) == 1 else 'are'} under {SMALLEST}: each "
                     f"op's data is laid out in rows of {COLS:,} elements (2^{SMALLEST}), so a smaller size would "
                     "measure none")
    return sizes


def main(argv=None):
    from ..cli.common import notes_shown

    with notes_shown():  # gpunn's own warnings as its commands show them: one note: line each
        _main(argv)


def _main(argv):
    from ..cli.common import Parser, json_text

    # gpunn's commands' parser and rules: one-line errors, options in full (--rep: --repeat named), an option
    # given twice refused (plain argparse kept the last: --sizes 12 --sizes 20 measured 2^20 alone)
    parser = Parser(prog="python -m gpunn.bench.kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="the device to measure: auto, cpu, cuda or cuda:N (default: "
                        "%(default)s; on the CPU only the reference ops run)")
    parser.add_argument("--sizes", default="24", help=f"comma-separated log2 element counts, each {SMALLEST} or more "
                        "(default: 24)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="the arrays' dtype (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each op at each size, of which the "
                        "median counts (default: %(default)s)")
    parser.add_argument("--json", help="write the rows here (rewritten after each size, so a killed run keeps the "
                        "sizes that finished)")
    args = parser.parse_strictly(argv)

    def save(result):  # after each size, atomically: a killed run keeps the sizes that finished
        if args.json:
            tmp = Path(args.json + ".tmp")
            tmp.write_bytes(json_text(result))
            tmp.replace(args.json)

    result = run(args.device, log2_sizes(parser, args.sizes), args.dtype, args.repeat, on_size=save)
    save(result)
    print(table(result))


if __name__ == "__main__":
    main()
