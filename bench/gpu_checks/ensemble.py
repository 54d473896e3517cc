"""gpu_check hook for issue 11: gpunn.Ensemble on one GPU, exact and fast.

    python bench/gpu_checks/ensemble.py --device cuda --out DIR --max-seconds 90    # what gpu_check.sh runs
    python bench/gpu_checks/ensemble.py --device cpu --out DIR --max-seconds 60     # the plumbing, no GPU

1. exactness: a 3-member float64 ensemble (Adam, per-member learning rates and weight decays) against
   three MLP fits on the same device, to 1e-10 relative (tests/test_ensemble_gpu.py has the full set);
2. the benchmark: ``gpunn bench --config small-x256`` (K=256 small nets; a tiny-x4 with --device cpu)
   against K sequential gpunn fits, the torch vmap ensemble and K torch models in a loop, in
   member-samples/s (the torch loop only with --max-seconds 60 or more). The issue's GPU targets (>= 50x sequential, >= 3x torch vmap) are reported in
   DIR/ensemble.json as met or not; they do not change the exit status.
3. on a GPU, the ensemble's CUDA graph (``Ensemble(graph=True)``, opt-in): the same fit with and without it
   (whether it captured, and the largest relative difference: the graph's products are cuBLAS strided
   batched calls where the eager step uses CuPy's matmul), and a "graph" row in the benchmark; the 3x
   torch-vmap target is reported for the faster of the two gpunn rows.
4. on a GPU with --max-seconds 60 or more, a bf16 row (``Ensemble(precision="bf16", graph=True)``) and its
   speed-up over torch vmap and over the float32 graph row; left out under gpu_check.sh's default 40 s cap
   (its first step compiles the bf16 kernels), GPUNN_CHECK_ENSEMBLE_SECONDS=90 brings it in.
Exit 0 when the exactness check passes and the benchmark ran. DIR/ensemble.json is written after the checks
and again at the end. A check that raises is kept as its error and the benchmark still runs; a benchmark that
raises with the bf16 row (whose path first meets a GPU here) runs again without it, so the issue's targets are
measured either way: the error is ``bf16_error`` when the run without the row passes, else ``benchmark_error``
(a benchmark that raises is saved as that, and the hook fails with its traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import numpy

TARGETS = {"cuda": {"sequential": 50.0, "torch-vmap": 3.0}, "cpu": {"sequential": 3.0, "torch-vmap": 2.5}}


def exactness(device) -> float:
    import gpunn

    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((400, 8)), rng.standard_normal((400, 2))
    lrs, wds = [1e-3, 3e-3, 1e-2], [0.0, 1e-3, 1e-2]
    # handle_interrupt=False: gpu_check.sh's SIGINT at the stage's cap ends the hook at once (a traceback); a fit
    # that handled it would stop part-trained and return, and what the hook compares or times next would be false
    kw = dict(epochs=3, batch_size=64, seed=1, verbose=False, handle_interrupt=False)
    ens = gpunn.Ensemble([8, 32, 32, 2], 3, dtype="float64", device=device, seed=5)
    ens.fit(X, Y, optimizer="adam", lr=lrs, weight_decay=wds, **kw)
    worst = 0.0
    for k in range(3):
        twin = gpunn.MLP([8, 32, 32, 2], dtype="float64", device=device, seed=5 + k)
        twin.fit(X, Y, optimizer=gpunn.Adam(weight_decay=wds[k]), lr=lrs[k], **kw)
        a, b = ens.backend.to_host(ens.member_params[k]), twin.backend.to_host(twin.params)
        worst = max(worst, float(numpy.abs(a - b).max() / numpy.abs(b).max()))
    return worst


def graph_check(device) -> dict:
    """Ensemble(graph=True).fit against Ensemble().fit (float64, Adam, a frozen member): captured? how close?"""
    import gpunn

    rng = numpy.random.default_rng(1)
    X, Y = rng.standard_normal((512, 8)), rng.standard_normal((512, 2))
    kw = dict(epochs=3, batch_size=64, seed=2, lr=[1e-3, 3e-3, 1e-2], verbose=False, handle_interrupt=False)
    runs = []
    for graph in (False, True):
        ens = gpunn.Ensemble([8, 32, 32, 2], 3, dtype="float64", device=device, seed=5, graph=graph)
        ens.fit(X, Y, **kw)
        runs.append(ens)
    eager, captured = (ens.backend.to_host(e.params) for e in runs)
    trainer = runs[1].graph_trainer
    return {"captured": bool(trainer is not None and trainer.captured),
            "reason": None if trainer is None else trainer.reason,
            "max_rel_err": float(numpy.abs(captured - eager).max() / numpy.abs(eager).max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=".")
    parser.add_argument("--max-seconds", type=float, default=90.0)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    os.makedirs(args.out, exist_ok=True)
    from gpunn import backend as _backend, bench

    kind = "cpu" if args.device == "cpu" else "cuda"
    report = {"device": args.device}

    def save():  # after each part: a hook killed in the benchmark's warm-ups keeps the checks before it
        with open(os.path.join(args.out, "ensemble.json"), "w") as fh:
            json.dump(report, fh, indent=2)

    def error(exc):
        traceback.print_exc()
        return f"{type(exc).__name__}: {exc}"[:400]

    try:
        err = exactness(args.device)
    except Exception as exc:  # noqa: BLE001 - a failed check, reported; the benchmark still runs
        report["exactness_error"], report["exact"] = error(exc), False
        print(f"ensemble exactness ({args.device}): FAILED: {report['exactness_error']}", flush=True)
    else:
        report["exactness_max_rel_err"] = err
        # 1e-10 with room: float64, and nothing that reaches the weights depends on the order of atomics (only the
        # losses' sums use atomicAdd; the bias sums are two deterministic stages). What may differ is the GEMM kernel
        # cuBLAS picks: the members' products are CuPy's strided batched GemmEx on its handle, the MLPs' the CUDA
        # graph's GemmEx on gpunn's handle and 32 MiB workspace (each deterministic for its own configuration), so
        # products round apart by ~1e-16 of their terms' size. Adam magnifies that most where a gradient is as small
        # as its eps (1e-8): 1/(4 eps) x 1e-16 x lr 1e-2, ~2.5e-11 of a weight in that step, rare; elsewhere ~1e-15.
        # The H200 measured 1.44e-16 with both eager (RESULTS.md, 2026-11-28).
        report["exact"] = err <= 1e-10
        print(f"ensemble exactness ({args.device}, float64, 3 members vs 3 MLP fits): max relative error {err:.3g} "
              f"({'ok' if report['exact'] else 'FAILED'})", flush=True)
    if kind == "cuda":
        try:
            report["graph"] = g = graph_check(args.device)
        except Exception as exc:  # noqa: BLE001 - reported (not a pass/fail check)
            report["graph"] = {"error": error(exc)}
            print(f"ensemble CUDA graph: FAILED: {report['graph']['error']}", flush=True)
        else:
            print(f"ensemble CUDA graph: {'captured' if g['captured'] else 'NOT captured (' + str(g['reason']) + ')'}, "
                  f"max relative difference from the eager fit {g['max_rel_err']:.3g}", flush=True)
    save()
    cfg = bench.parse_config("small-x256" if kind == "cuda" else "tiny:8:32x32:1:64-x4")
    # The K torch models in a loop (379x slower than the ensemble on the H200) cost most of gpu_check.sh's
    # 40 s hook in warm-up and two rounds alone; they run when the budget allows (--max-seconds 60 and up).
    roomy = kind == "cuda" and args.max_seconds >= 60
    peers = ("sequential", "torch-vmap") + (("torch-loop",) if roomy else ())

    def benchmark(precisions):  # on the CPU (plumbing only): no torch loop, torch on one thread (two fight
        budget = max(10.0, args.max_seconds - (time.monotonic() - t0) - 5)  # OpenBLAS for 2 cores)
        return bench.run_ensembles([cfg], [_backend.resolve(args.device)],
                                   peers=peers,
                                   repeats=3 if kind == "cuda" else 2, seconds=0.3 if kind == "cuda" else 0.05,
                                   max_seconds=budget, threads=None if kind == "cuda" else 1,
                                   log=lambda msg: print(msg, flush=True), graph=kind == "cuda",
                                   precisions=precisions)

    def measured(precisions):  # the benchmark, or its error saved before it goes up
        try:
            return benchmark(precisions)
        except Exception as exc:
            report.setdefault("benchmark_error", error(exc))
            save()
            raise

    if not roomy:
        results = measured(())
    else:
        try:
            results = benchmark(("bf16",))
        except Exception as exc:  # noqa: BLE001 - the bf16 row must not cost the issue's targets
            report["benchmark_error"] = error(exc)  # the bf16 row's only if the run without it passes
            save()
            print(f"the benchmark with the bf16 row failed ({report['benchmark_error']}); again without it", flush=True)
            results = measured(())  # raises the same way: the error was not the bf16 row's (benchmark_error stays)
            report["bf16_error"] = report.pop("benchmark_error")
            print(f"without the bf16 row it ran: the error was the bf16 row's ({report['bf16_error']})", flush=True)
    print(bench.format_table(results), flush=True)
    print(bench.gemm_note(results), flush=True)  # the GFLOP/s behind "% of peak" and "% of GEMM"
    ours = {r["impl"]: r for r in results}
    report["peak_column_ok"] = all(0 < r["fraction_of_peak"] <= r["fraction_of_gemm"] for r in results)
    if not report["peak_column_ok"]:
        print("'% of peak' is missing or above '% of GEMM' in a row: a bug in gpunn.bench.ensemble", flush=True)
    report["results"] = results
    report["targets"] = {}
    graph_row = ours.get("gpunn-graph")
    for peer, target in TARGETS[kind].items():
        if peer in ours:
            speedup = ours[peer]["gpunn_speedup"]  # the eager ensemble's, paired by round
            if graph_row is not None:  # the graph row's, from the medians
                graph_speedup = graph_row["samples_per_s"] / ours[peer]["samples_per_s"]
                report.setdefault("graph_targets", {})[peer] = {"speedup": graph_speedup, "target": target,
                                                               "met": graph_speedup >= target}
                print(f"gpunn Ensemble graph vs {peer}: {graph_speedup:.2f}x (target >= {target}x: "
                      f"{'met' if graph_speedup >= target else 'not met'})", flush=True)
            report["targets"][peer] = {"speedup": speedup, "target": target, "met": speedup >= target}
            print(f"gpunn Ensemble vs {peer}: {speedup:.2f}x (target >= {target}x: "
                  f"{'met' if speedup >= target else 'not met'})", flush=True)
    bf16_row = ours.get("gpunn-graph-bf16")
    if bf16_row is not None:  # tensor cores for the K members (not a target of the issue: reported)
        report["bf16"] = {peer: bf16_row["samples_per_s"] / ours[peer]["samples_per_s"]
                          for peer in ("gpunn-graph", "torch-vmap") if peer in ours}
        print("gpunn Ensemble bf16 (graph): " + ", ".join(f"{v:.2f}x {k}" for k, v in report["bf16"].items()),
              flush=True)
    save()
    ran = "gpunn" in ours and ours["gpunn"]["samples_per_s"] > 0
    return 0 if report["exact"] and ran else 1


if __name__ == "__main__":
    sys.exit(main())
