"""``gpunn bench``: training throughput against GEMM rates measured in the same run, and against NumPy, PyTorch,
scikit-learn."""
from __future__ import annotations

import argparse
import sys

from .. import backend as _backend
from ..hints import bracketed_hint, shell_word
from ..preflight import is_stdout
from .common import (DEVICE_NAMES, add_debug, check_report_outputs, device_name, file_path, non_negative, positive,
                     refuse_replacing_data, write_output)


def add_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="training throughput, as %% of peak and %% of GEMM (rates measured in the same "
                       "run), and against NumPy, PyTorch, scikit-learn",
                       description="Training throughput (float32, ReLU, Adam) per configuration and backend: "
                                   "samples/s, FLOP/s as a fraction of a GEMM measured in the same run ('>100%' "
                                   "where it is over 100% and that GEMM's timing cannot be trusted), the share "
                                   "of a step in matmul/elementwise/optimizer, and the peers (a plain NumPy loop, "
                                   "PyTorch eager, scikit-learn's MLPRegressor) on the same data, as ratios. "
                                   "Between the rounds a fixed pure-Python loop gauges the CPU's own speed (a line "
                                   "under the table; (~) marks rows timed while it varied over 1.5x, as a shared "
                                   "virtual machine's does). "
                                   "Peers that are not installed are skipped (pip install 'gpunn[bench]').")
    b.add_argument("--config", action="append", metavar="NAME|SPEC",
                   help="a named configuration (small, medium, wide, deep, large, and tiny, --quick's 8:32x32:1:64) or "
                        "name:inputs:h1xh2:outputs:batch; "
                        "repeatable (default: small to large; large runs on GPU only)")
    b.add_argument("--ensemble", type=positive(int), metavar="K",
                   help="train each configuration as an ensemble of K >= 2 networks (gpunn.Ensemble) against K sequential "
                        "gpunn fits, a torch vmap ensemble and K torch models in a loop; throughput in member-samples/s. "
                        "Named ensembles: small-x64, medium-x16, small-x256 (GPU only), or append -xK to any config")
    b.add_argument("--device", type=device_name, default="all", help=f"all (cpu, plus cuda when CuPy sees a device), auto (cuda where a GPU is "
                                                   f"usable, else cpu), {DEVICE_NAMES} "
                                                   "(default: %(default)s)")
    b.add_argument("--peers", default="naive,torch,sklearn",
                   help="comma-separated peers to run: for single networks naive, torch, torch-bf16 (PyTorch with "
                        "bfloat16 autocast; GPU only), sklearn; for ensembles (--ensemble, NAME-xK) sequential, "
                        "torch-vmap, torch-loop; or none (default: %(default)s, or all three ensemble peers when "
                        "every configuration is an ensemble)")
    b.add_argument("--repeats", type=positive(int), default=None,
                   help="timed repeats per implementation (default: 5; 2 with --quick)")
    b.add_argument("--seconds", type=positive(float), default=None,
                   help="target duration of one repeat, in whole epochs (default: 0.3; 0.02 with --quick)")
    b.add_argument("--max-seconds", type=positive(float), default=None,
                   help="overall time budget: configurations share it; warm-ups, peers (the torch import too), repeats "
                        "(at least 2 kept), the profile run and the peak GEMM are cut or skipped to fit it (default: no budget)")
    b.add_argument("--precision", default="float32", metavar="LIST",
                   help="comma-separated gpunn precisions to time on the GPU: float32, tf32, bf16 (default: "
                        "%(default)s; the first row is always float32 with the defaults, the others are added "
                        "beside it, with the defaults too: a CUDA graph on a GPU; an ensemble configuration's alike)")
    b.add_argument("--eager", action="store_true",
                   help="also time gpunn's eager step (graph=False) beside each precision's default row, which on "
                        "a GPU captures the step as a CUDA graph (one network's and an ensemble's alike); the table's "
                        "last lines give graph over eager (GPU only)")
    b.add_argument("--sustain", type=non_negative(int), default=0, metavar="STEPS",
                   help="train each implementation STEPS more mini-batch steps before timing: the steady state of a "
                        "long run, where slowdowns that build up (subnormals in optimizer state) show; 1000 is "
                        "enough for those (default: %(default)s, time from a fresh start)")
    b.add_argument("--quick", action="store_true", help="CI-sized: a tiny configuration (unless --config names "
                                                         "others), 2 short repeats (unless --repeats/--seconds)")
    b.add_argument("--no-profile", action="store_true", help="skip the per-op timing run")
    b.add_argument("--json", type=file_path, metavar="PATH", help="write setup and results as strict JSON (a "
                                                  "figure not measured is null; rewritten after each configuration, "
                                                  "so a killed run keeps what finished; \"complete\" says which; "
                                                  "- for standard output, written once at the end, the table then "
                                                  "going to stderr; a name that says another kind of file, "
                                                  ".csv or .npz..., is refused)")
    b.add_argument("--plot", type=file_path, metavar="PATH", help="write a chart, .png, .pdf or .svg (needs matplotlib: gpunn[bench])")
    b.add_argument("--markdown", action="store_true", help="print the table as Markdown (for bench/RESULTS.md)")
    add_debug(b)
    b.set_defaults(func=run)
    return b


def variants(precision_list: str, eager: bool) -> list:
    """The extra gpunn runs, (precision, graph) pairs, beside the float32 one with the defaults: each
    precision with the default graph=None (a CUDA graph on a GPU) and, with ``eager``, graph=False."""
    from ..model import PRECISIONS

    precisions = [p.strip() for p in precision_list.split(",") if p.strip()] or ["float32"]
    unknown = [p for p in precisions if p not in PRECISIONS]  # (as written, as train's --precision takes them)
    if unknown:  # each with the name meant, as train's says it: fp32 ('fp32' is gpunn's 'float32')
        said = ", ".join(f"{p}{bracketed_hint(p, PRECISIONS, 'precision')}" for p in unknown)
        raise ValueError(f"unknown precision(s) {said}; choose from {', '.join(PRECISIONS)}")
    pairs = [(p, g) for p in dict.fromkeys(precisions) for g in ((None, False) if eager else (None,))]
    return [pair for pair in pairs if pair != ("float32", None)]


def _check_outputs(args) -> None:
    """--json and --plot checked before the first measurement, as gpunn train checks its outputs: a bench
    runs for minutes, and a path it cannot write would lose them."""
    from .. import preflight

    reports = check_report_outputs(args)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib, which is not installed: pip install 'gpunn[bench]'") from None
    preflight.check_distinct(reports)
    refuse_replacing_data(args, reports)


def _rewrites(path) -> bool:
    """Whether --json PATH can be rewritten after each configuration: a file, not standard output, a pipe or
    a device, which would get one JSON document after another."""
    from ..preflight import writes_in_place

    return bool(path) and not is_stdout(path) and not writes_in_place(path)


def run(args) -> int:
    from .. import bench

    _check_outputs(args)
    if args.device == "all":
        backends = bench.available_backends()
    elif not _backend.is_device_name(args.device):  # bench takes resolve's names and its own "all"
        raise _backend.unknown_device(args.device, ("'all' (the default)",) + _backend.DEVICE_NAMES)
    else:
        backends = [_backend.resolve(args.device)]
    peers = [] if args.peers.strip() in ("", "none") else [p.strip() for p in args.peers.split(",") if p.strip()]
    if args.quick:
        configs = [bench.parse_config(c) for c in args.config] if args.config else [bench.QUICK_CONFIG]
    else:
        configs = [bench.parse_config(c) for c in (args.config or [c for c in bench.CONFIGS])]
    # --quick's shorter defaults; --repeats and --seconds, when given, are what was asked for
    repeats = args.repeats or (2 if args.quick else 5)
    seconds = args.seconds or (0.02 if args.quick else 0.3)
    extra = variants(args.precision, args.eager)  # a bad --precision refused before anything is printed
    if args.ensemble == 1:  # (it ran the plain configurations, in rows named NAME-x1)
        raise ValueError("--ensemble 1: an ensemble needs K of 2 or more; without --ensemble each configuration times "
                         "one network")
    if args.ensemble:
        clash = [c.name for c in configs if c.members > 1 and c.members != args.ensemble]
        if clash:  # small-x2 --ensemble 3 ran small-x3
            raise ValueError(f"--ensemble {args.ensemble} and --config {clash[0]} name different ensembles; give one "
                             "of them")
        configs = [c.ensemble(args.ensemble) for c in configs]
    ensembles = [c for c in configs if c.members > 1]
    configs = [c for c in configs if c.members == 1]
    if peers == ["naive", "torch", "sklearn"] and ensembles and not configs:  # the default list: the ensemble peers
        peers = list(bench.ENSEMBLE_PEERS)
    known = (bench.PEERS if configs else ()) + (bench.ENSEMBLE_PEERS if ensembles else ())
    unknown = [p for p in peers if p not in bench.PEERS + bench.ENSEMBLE_PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(known)} or none")
    idle = [p for p in peers if p not in known]  # --peers naive with ensembles only: no row, silently
    if idle:
        kind = "ensemble" if ensembles else "single-network"
        raise ValueError(f"--peers {','.join(idle)}: no such peer runs on {kind} configurations; choose from "
                         f"{', '.join(known)} or none")
    print(f"gpunn bench: {len(configs) + len(ensembles)} configuration(s) on {', '.join(b.device for b in backends)}; "
          f"peers: {', '.join(peers) or 'none'}", flush=True)
    command = "gpunn " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "gpunn bench"

    def on_result(data, new):  # each configuration's rows as soon as they exist: a kill keeps them
        print(bench.format_table(new, markdown=args.markdown), flush=True)
        if _rewrites(args.json):
            data["setup"]["command"] = command
            bench.write_json(data, args.json)

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    budget = args.max_seconds
    if configs and ensembles and budget is not None:  # share the budget by the number of configurations
        budget = budget * len(configs) / (len(configs) + len(ensembles))
    data = bench.run(configs, backends, peers=[p for p in peers if p in bench.PEERS], repeats=repeats,
                     seconds=seconds, max_seconds=budget, profile=not args.no_profile, log=log,
                     variants=extra, on_result=on_result, sustain_steps=args.sustain)
    if ensembles:
        left = None if args.max_seconds is None else max(1.0, args.max_seconds - data["setup"]["wall_seconds"])
        new = bench.run_ensembles(ensembles, backends, peers=[p for p in peers if p in bench.ENSEMBLE_PEERS],
                                  repeats=repeats, seconds=seconds, max_seconds=left, log=log,
                                  profile=not args.no_profile, variants=extra)
        data["results"] += new
        data["setup"].update(bench.peer_versions())  # the torch the ensembles' peers loaded: its build
        on_result(data, new)
    data["setup"]["command"] = command
    print()
    print(bench.format_setup(data["setup"]))
    print()
    print(bench.format_table(data["results"], markdown=args.markdown))
    print()
    print(bench.gemm_note(data["results"]))
    if bench.graph_note(data["results"]):
        print(bench.graph_note(data["results"]))
    print("gpunn is: gpunn's samples/s over the peer's. GFLOP/s = 6 x weights x samples/s.")
    if args.json:
        write_output(args.json, bench.json_bytes(data), announce=True)
    if args.plot:
        bench.plot(data, args.plot)
        print(f"wrote {shell_word(args.plot)}")
    return 0
