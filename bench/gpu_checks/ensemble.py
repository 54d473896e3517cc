"""gpu_check hook for issue 11: gpunn.Ensemble on one GPU, exact and fast.

    python bench/gpu_checks/ensemble.py --device cuda --out DIR --max-seconds 90    # what gpu_check.sh runs
    python bench/gpu_checks/ensemble.py --device cpu --out DIR --max-seconds 60     # the plumbing, no GPU

Up to three processes, each started after the one before has saved its results into DIR/ensemble.json, so that
a sticky CUDA fault (an illegal address, a kernel's assert: every later CUDA call of its process fails with it)
in a path no GPU has run yet poisons only its own process's CUDA context, never what was measured before it:
1. this process, the eager ensemble: exactness (a 3-member float64 ensemble, Adam, per-member learning rates and
   weight decays, against three MLP fits on the same device, to 1e-10 relative; tests/test_ensemble_gpu.py has
   the full set), then the benchmark: ``gpunn bench --config small-x256`` (K=256 small nets; a tiny-x4 with
   --device cpu) against K sequential gpunn fits and the torch vmap ensemble (and K torch models in a loop with
   --max-seconds 120 or more), in member-samples/s: issue 11's targets (>= 50x sequential, >= 3x torch vmap on
   a GPU) as met or not, saved before anything else runs;
2. the ensemble's CUDA graph (``Ensemble()``'s default on a GPU, graph=None), in a process of its own
   (``--graph-rows``, DIR/ensemble-graph.json): the graph check (the same fit by default and with graph=False:
   whether the default captured, and the largest relative difference; the graph's products are cuBLAS strided
   batched calls where the eager step uses CuPy's matmul), then the "graph" row (the default ensemble) in rounds
   of its own beside the eager ensemble (graph=False) and the torch vmap ensemble: its speed-up over torch vmap paired by round in those rounds (as the eager targets are in step 1's),
   over the sequential fits (step 1's rows only) through the eager row both processes ran: the graph row over it
   paired in its rounds, times it over the sequential fits paired in step 1's ("chained"); the targets reported
   for the faster of the two gpunn rows. On the CPU (the dry
   run) the process runs its check and rows too, with no graph row (a CPU has no CUDA graph): the plumbing;
3. on a GPU with --max-seconds 60 or more: a bf16 row (``Ensemble(precision="bf16")``, its default: a CUDA
   graph) in a process of its own (``--bf16-row``, DIR/ensemble-bf16.json), beside that process's
   own float32 graph row; its speed-up over that graph row (paired in its rounds) and over step 1's torch vmap row
   (chained through the eager row, as the graph row's over the sequential fits). Left out under gpu_check.sh's
   default 40 s cap (its first step compiles the bf16 kernels); GPUNN_CHECK_ENSEMBLE_SECONDS=90 brings it in.
Each later process is killed when the time left for it runs out and is not started with under its minimum left
(``graph_skipped``, ``bf16_skipped``): step 1's rounds end in time to leave GRAPH_SECONDS and BF16_SECONDS, and the
graph process may take all but the bf16 process's least (its row decides a target, the bf16 row none); its failure
(its exception, a signal that ended it, its time) is ``graph_error`` / ``bf16_error``, saved as the hook's end in it
before it starts (the stage's time limit may end the hook there), a graph check's own exception ``graph["error"]``.
A check that raises in step 1 is kept as its error and the benchmark still runs; a benchmark that raises is saved as
``benchmark_error`` and the hook fails with its traceback after the later processes, which it cannot reach.
Exit 0 when the exactness check passes, the eager benchmark ran and the graph rows did not fail (the targets and
the bf16 row are reported, not judged).
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import traceback

import numpy
from hook_args import hook_parser, write_json

TARGETS = {"cuda": {"sequential": 50.0, "torch-vmap": 3.0}, "cpu": {"sequential": 3.0, "torch-vmap": 2.5}}
# The later processes' shares of --max-seconds, kept free by the eager benchmark, and the least each is started
# with. Graph: start-up (imports, torch's included, and a CUDA context, ~5-8 s), the graph check (two float64
# fits, one captured), its runners' warm-ups and capture, three rounds of five runners (~0.3 s each). bf16:
# start-up, its runners' warm-ups and captures (the bf16 kernels compiled), three rounds of four rows.
GRAPH_SECONDS, GRAPH_MIN_SECONDS = 25, 10
BF16_SECONDS, BF16_MIN_SECONDS = 30, 15
# The K torch models in a loop (379x slower than the ensemble on the H200: ~2.7 s an epoch, ~15 s of warm-up and
# rounds) are no target of issue 11: they run only with this much time
LOOP_SECONDS = 120


def exactness(device) -> float:
    import gpunn

    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((400, 8)), rng.standard_normal((400, 2))
    lrs, wds = [1e-3, 3e-3, 1e-2], [0.0, 1e-3, 1e-2]
    # handle_interrupt=False: gpu_check.sh's SIGINT at the stage's cap ends the hook at once (a traceback); a fit
    # that handled it would stop part-trained and return, and what the hook compares or times next would be false
    kw = dict(epochs=3, batch_size=64, seed=1, verbose=False, handle_interrupt=False)
    # the eager ensemble (step 1 runs no graph: graph_check compares the default's with it, in step 2's process)
    ens = gpunn.Ensemble([8, 32, 32, 2], 3, dtype="float64", device=device, seed=5, graph=False)
    ens.fit(X, Y, optimizer="adam", lr=lrs, weight_decay=wds, **kw)
    worst = 0.0
    for k in range(3):
        twin = gpunn.MLP([8, 32, 32, 2], dtype="float64", device=device, seed=5 + k)
        twin.fit(X, Y, optimizer=gpunn.Adam(weight_decay=wds[k]), lr=lrs[k], **kw)
        a, b = ens.backend.to_host(ens.member_params[k]), twin.backend.to_host(twin.params)
        # (numpy's max: a NaN member is the worst, where Python's max(0.0, nan) is 0.0, a pass)
        worst = float(numpy.max([worst, numpy.abs(a - b).max() / numpy.abs(b).max()]))
    return worst


def graph_check(device) -> dict:
    """Ensemble().fit (the default: a CUDA graph on a GPU) against Ensemble(graph=False).fit (float64, Adam):
    captured? how close?"""
    import gpunn

    rng = numpy.random.default_rng(1)
    X, Y = rng.standard_normal((512, 8)), rng.standard_normal((512, 2))
    kw = dict(epochs=3, batch_size=64, seed=2, lr=[1e-3, 3e-3, 1e-2], verbose=False, handle_interrupt=False)
    runs = []
    for graph in (False, None):
        ens = gpunn.Ensemble([8, 32, 32, 2], 3, dtype="float64", device=device, seed=5, graph=graph)
        ens.fit(X, Y, **kw)
        runs.append(ens)
    eager, captured = (ens.backend.to_host(e.params) for e in runs)
    trainer = runs[1].graph_trainer
    return {"captured": bool(trainer is not None and trainer.captured),
            "reason": None if trainer is None else trainer.reason,
            "max_rel_err": float(numpy.abs(captured - eager).max() / numpy.abs(eager).max())}


def main(argv=None) -> int:
    parser = hook_parser(__doc__, max_seconds=90.0)
    parser.add_argument("--graph-rows", action="store_true", help="the graph check and the graph row alone, into "
                        "DIR/ensemble-graph.json (what the hook runs in a process of its own)")
    parser.add_argument("--bf16-row", action="store_true", help="the bf16 row alone, into DIR/ensemble-bf16.json "
                        "(what the hook runs in a process of its own)")
    args = parser.parse_args(argv)
    if args.graph_rows:
        return graph_main(args)
    if args.bf16_row:
        return bf16_main(args)
    t0 = time.monotonic()
    os.makedirs(args.out, exist_ok=True)

    kind = "cpu" if args.device == "cpu" else "cuda"
    report = {"device": args.device}

    def save():  # after each part: a hook killed in the benchmark's warm-ups keeps the checks before it
        write_json(os.path.join(args.out, "ensemble.json"), report)

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
    save()
    roomy = kind == "cuda" and args.max_seconds >= 60
    peers = ("sequential", "torch-vmap") + (("torch-loop",) if kind == "cuda" and args.max_seconds >= LOOP_SECONDS
                                            else ())
    failure = None
    try:
        results = benchmark(args, t0, _config(args), peers, graph=False,
                            reserve=GRAPH_SECONDS + (BF16_SECONDS if roomy else 0))
    except Exception as exc:  # saved, and raised after the later processes (which a fault here cannot reach)
        report["benchmark_error"], failure = error(exc), exc
    else:
        report.update(summary(results, kind))
    save()  # issue 11's eager rows, before anything else runs

    def later(key, run):
        """A later process's keys into ensemble.json: saved first as its error should the hook be ended while it
        runs (the stage's time limit), so that a missing graph row is never read as one that was not meant to run."""
        report[key] = f"the hook was ended while its process ran (started {time.monotonic() - t0:.0f} s into the hook)"
        save()
        got = run()
        del report[key]
        report.update(got)
        if key in report:
            print(f"the {'graph rows' if key == 'graph_error' else 'bf16 row'} failed: {report[key]}", flush=True)
        save()

    later("graph_error", lambda: graph_rows(args, t0, kind, report.get("results", []),
                                            reserve=BF16_MIN_SECONDS if roomy else 0))
    if roomy:
        later("bf16_error", lambda: bf16_row(args, t0, report.get("results", [])))
    if failure is not None:
        raise failure
    return 0 if report["exact"] and report.get("ran") and "graph_error" not in report else 1


def error(exc) -> str:
    """An exception as ensemble.json holds it, its traceback printed."""
    traceback.print_exc()
    return f"{type(exc).__name__}: {exc}"[:400]


def _config(args):
    from gpunn import bench

    return bench.parse_config("small-x256" if args.device != "cpu" else "tiny:8:32x32:1:64-x4")


# the rows beside the default (graph) row in the later processes: the eager step (what the chained ratios go through)
EAGER = ("float32", False)


def benchmark(args, t0, cfg, peers, graph, variants=(), reserve=0):
    """bench.run_ensembles on ``cfg``, its first row with ``graph`` (False: eager; None: the default, a CUDA graph on
    a GPU) and ``variants`` beside it (GPU only): its rounds end ``reserve`` + 5 s before --max-seconds (warm-ups are
    not bounded). On the CPU (plumbing only): no torch loop, torch on one thread (two fight OpenBLAS for 2 cores)."""
    from gpunn import backend as _backend, bench

    gpu = args.device != "cpu"
    budget = max(10.0, args.max_seconds - (time.monotonic() - t0) - 5 - reserve)
    return bench.run_ensembles([cfg], [_backend.resolve(args.device)], peers=peers,
                               repeats=3 if gpu else 2, seconds=0.3 if gpu else 0.05,
                               max_seconds=budget, threads=None if gpu else 1,
                               log=lambda msg: print(msg, flush=True), graph=graph, variants=variants if gpu else ())


def peak_ok(results) -> bool:
    """Whether every row's '% of peak' is finite and above 0, and its base (the best median GEMM rate) at least the
    '% of GEMM' base, or that baseline n/a with the reason."""
    return all(0 < r["fraction_of_peak"] and (r["gemm_na"] or r["peak_gflops"] >= r["gemm_gflops"]) for r in results)


def why_no_peak(results) -> str:
    """Why peak_ok is False: no base (the GEMM baseline n/a and the square products not timed, the budget spent:
    gpunn.bench.ensemble leaves '% of peak' NaN then), else a bug."""
    if any(not r["peak_gflops"] for r in results):
        return "'% of peak' has no base: the GEMM baseline was n/a and the square GEMMs were not timed (budget spent)"
    return "'% of peak' is missing, or its base below '% of GEMM''s, in a row: a bug in gpunn.bench.ensemble"


def summary(results, kind) -> dict:
    """ensemble.json's keys from the eager benchmark's rows: the targets, '% of peak', ran."""
    from gpunn import bench

    print(bench.format_table(results), flush=True)
    print(bench.gemm_note(results), flush=True)  # the GFLOP/s behind "% of peak" and "% of GEMM"
    ours = {r["impl"]: r for r in results}
    out = {"peak_column_ok": peak_ok(results), "results": results, "targets": {}}
    if not out["peak_column_ok"]:
        out["peak_column_why"] = why_no_peak(results)
        print(out["peak_column_why"], flush=True)
    for peer, target in TARGETS[kind].items():
        if peer in ours:
            speedup = ours[peer]["gpunn_speedup"]  # the eager ensemble's, paired by round
            out["targets"][peer] = {"speedup": speedup, "target": target, "met": speedup >= target}
            print(f"gpunn Ensemble vs {peer}: {speedup:.2f}x (target >= {target}x: "
                  f"{'met' if speedup >= target else 'not met'})", flush=True)
    out["ran"] = "gpunn" in ours and ours["gpunn"]["samples_per_s"] > 0
    return out


def child_command(args, flag, seconds) -> list:
    """A later step's process: this hook with ``flag`` (--graph-rows, --bf16-row), on the gpunn this process
    imported."""
    return [sys.executable, os.path.abspath(__file__), flag, "--device", args.device, "--out", args.out,
            "--max-seconds", f"{seconds:.1f}"]


def run_child(args, flag, name, left) -> tuple:
    """This hook with ``flag`` in a process of its own, killed after ``left`` seconds: (what it wrote into
    DIR/``name``, or {}, and how its process ended, in words)."""
    import gpunn
    from gpunn.bench.report import read_json

    path = os.path.join(args.out, name)
    if os.path.exists(path):
        os.remove(path)
    env = dict(os.environ)  # the same gpunn as this process
    root = os.path.dirname(os.path.dirname(os.path.abspath(gpunn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        rc = subprocess.run(child_command(args, flag, left), env=env, timeout=left).returncode
    except subprocess.TimeoutExpired:
        ended = f"was still running after {left:.0f} s, and was killed"
    else:
        ended = (f"was ended by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals()
                 else f"exited with status {rc}")
    try:
        with open(path) as fh:
            got = read_json(fh.read())  # the rows' null (not measured) as nan, as the bench held them
    except (OSError, ValueError):
        got = {}
    return (got if isinstance(got, dict) else {}), ended


def time_left(args, t0, reserve, least, what) -> tuple:
    """(seconds a later step's process may run: what is left of --max-seconds less ``reserve`` and 2 s to save and
    exit, or None, why it is not started: under ``least``)."""
    left = args.max_seconds - (time.monotonic() - t0) - 2 - reserve
    if left < least:
        why = f"{max(left, 0):.0f} s of --max-seconds {args.max_seconds:g} left, under the {least} s it needs"
        print(f"{what}: skipped ({why})", flush=True)
        return None, why
    return left, ""


def graph_rows(args, t0, kind, results, reserve=0) -> dict:
    """ensemble.json's keys for the graph check and the graph row, run in a process of its own (``--graph-rows``)
    killed when its share of --max-seconds is spent: ``graph`` (the check), ``graph_targets`` (the graph row's
    speed-up over each peer, graph_speedup's: torch vmap in its process's rounds, the sequential fits in
    ``results``; "statistic" says how) and
    ``graph_results`` (its process's rows), else ``graph_error`` or ``graph_skipped``."""
    left, why = time_left(args, t0, reserve, GRAPH_MIN_SECONDS, "the graph rows")
    if left is None:
        return {"graph_skipped": why}
    print(f"the graph check and rows, in a process of their own ({left:.0f} s):", flush=True)
    got, ended = run_child(args, "--graph-rows", "ensemble-graph.json", left)
    out = {"graph": got.get("graph") or {"error": f"its process {ended} before the check's result was written"}}
    if "results" not in got:
        out["graph_error"] = got.get("error") or f"its process {ended} without writing its rows"
        return out
    out["graph_results"] = rows = got["results"]
    out["peak_column_ok"] = peak_ok(results) and peak_ok(rows)
    if not peak_ok(rows):
        out["peak_column_why"] = why_no_peak(rows)
    ours = {r["impl"]: r for r in rows}
    graph = ours.get("gpunn-graph")
    if graph is None:
        if kind == "cuda":
            out["graph_error"] = "its process ran no gpunn-graph row"
        return out
    eager = {r["impl"]: r for r in results}
    for peer, target in TARGETS[kind].items():
        if peer in ours or peer in eager:
            speedup, how = graph_speedup(graph, peer, ours, eager)
            processes = 1 if peer in ours else 2
            out.setdefault("graph_targets", {})[peer] = {"speedup": speedup, "target": target,
                                                         "met": speedup >= target, "processes": processes,
                                                         "statistic": how}
            print(f"gpunn Ensemble graph vs {peer}: {speedup:.2f}x (target >= {target}x: "
                  f"{'met' if speedup >= target else 'not met'}) ({STATISTIC_WORDS[how]})", flush=True)
    return out


# how a graph row's speed-up was taken (graph_targets' "statistic"), as ensemble.json's reader words it
STATISTIC_WORDS = {"paired": "paired by round", "chained": "paired by round in each of two processes, through "
                   "the eager row both ran", "medians": "ratio of medians"}


def graph_speedup(row, peer, ours, eager) -> tuple:
    """(``row``'s samples/s over ``peer``'s, how it was taken): paired by round, as the eager targets
    (gpunn_speedup) are, where ``peer`` ran in ``row``'s rounds (``ours``, its process's rows by impl); else,
    the peer having run only in the eager benchmark's process (``eager``), chained through the eager ensemble, which
    ran in both: ``row`` over that eager row paired in ``row``'s rounds, times the eager row over the peer paired
    in the first process's (its gpunn_speedup). A medians' ratio only where rows hold no rounds (made by hand)."""
    from gpunn.bench.runners import paired_speedup

    if peer in ours:
        speedup, how = paired_speedup(row, ours[peer]), "paired"
        other = ours[peer]
    else:
        here = ours.get("gpunn")
        speedup = (paired_speedup(row, here) * eager[peer]["gpunn_speedup"]) if here else float("nan")
        how, other = "chained", eager[peer]
    if speedup > 0 and math.isfinite(speedup):
        return speedup, how
    return row["samples_per_s"] / other["samples_per_s"], "medians"


def graph_main(args) -> int:
    """--graph-rows: the graph check, then the graph row beside the eager ensemble and the torch vmap ensemble,
    into DIR/ensemble-graph.json (written after each)."""
    from gpunn import bench

    t0 = time.monotonic()
    os.makedirs(args.out, exist_ok=True)
    got = {}

    def save():
        write_json(os.path.join(args.out, "ensemble-graph.json"), got)

    try:
        got["graph"] = g = graph_check(args.device)
    except Exception as exc:  # noqa: BLE001 - reported (not a pass/fail check); the rows still run
        got["graph"] = {"error": error(exc)}
        print(f"ensemble CUDA graph: FAILED: {got['graph']['error']}", flush=True)
    else:
        print(f"ensemble CUDA graph: {'captured' if g['captured'] else 'NOT captured (' + str(g['reason']) + ')'}, "
              f"max relative difference from the eager fit {g['max_rel_err']:.3g}", flush=True)
    save()
    try:
        got["results"] = benchmark(args, t0, _config(args), ("torch-vmap",), graph=None, variants=[EAGER])
    except Exception as exc:  # noqa: BLE001 - written for the hook, which reports it
        got["error"] = error(exc)
    else:
        print(bench.format_table(got["results"]), flush=True)
    save()
    return 0 if "results" in got else 1


def bf16_row(args, t0, results) -> dict:
    """ensemble.json's keys for the bf16 row, run in a process of its own (``--bf16-row``) and killed when
    --max-seconds is spent: ``bf16`` (its speed-up over its process's float32 graph row and over ``results``'
    torch vmap row, graph_speedup's; ``bf16_statistic`` says how each was taken) and ``bf16_results`` (its
    process's rows), else ``bf16_error`` or ``bf16_skipped``."""
    left, why = time_left(args, t0, 0, BF16_MIN_SECONDS, "the bf16 row")
    if left is None:
        return {"bf16_skipped": why}
    print(f"the bf16 row, in a process of its own ({left:.0f} s):", flush=True)
    got, ended = run_child(args, "--bf16-row", "ensemble-bf16.json", left)
    if "results" not in got:
        return {"bf16_error": got.get("error") or f"its process {ended} without writing its rows"}
    rows = {r["impl"]: r for r in got["results"]}
    if "gpunn-graph-bf16" not in rows:
        return {"bf16_error": "its process ran no gpunn-graph-bf16 row", "bf16_results": got["results"]}
    eager = {r["impl"]: r for r in results}
    out = {"bf16": {}, "bf16_statistic": {}, "bf16_results": got["results"]}
    for peer in ("gpunn-graph", "torch-vmap"):
        if peer in rows or peer in eager:
            out["bf16"][peer], out["bf16_statistic"][peer] = graph_speedup(rows["gpunn-graph-bf16"], peer, rows, eager)
    print("gpunn Ensemble bf16 (graph): " + ", ".join(f"{v:.2f}x {k} ({STATISTIC_WORDS[out['bf16_statistic'][k]]})"
                                                     for k, v in out["bf16"].items()), flush=True)
    return out


def bf16_main(args) -> int:
    """--bf16-row: the bf16 row and this process's float32 rows (eager, graph) in DIR/ensemble-bf16.json."""
    from gpunn import bench

    t0 = time.monotonic()
    os.makedirs(args.out, exist_ok=True)
    try:
        got = {"results": benchmark(args, t0, _config(args), (), graph=None, variants=[EAGER, ("bf16", None)])}
    except Exception as exc:  # noqa: BLE001 - written for the hook, which reports it
        got = {"error": error(exc)}
    else:
        print(bench.format_table(got["results"]), flush=True)
    write_json(os.path.join(args.out, "ensemble-bf16.json"), got)
    return 0 if "results" in got else 1


if __name__ == "__main__":
    sys.exit(main())
