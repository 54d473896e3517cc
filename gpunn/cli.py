"""The ``gpunn`` command: ``gpunn train``, ``gpunn bench`` and ``gpunn info``."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

import numpy

from . import __version__, backend as _backend, datasets, metrics
from .activations import ACTIVATIONS
from .optim import OPTIMIZERS, SCHEDULES

DEFAULTS = dict(task="teacher", rows=1_000_000, features=32, outputs=1, noise=0.1, hidden="256,256",
                activation="relu", epochs=12, batch_size=256, optimizer="adam", lr=1e-3)


def _hidden_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace("x", ",").split(",") if s.strip()] if text.strip() else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated positive integers, got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpunn", description="Train regression MLPs on a CUDA GPU or the CPU.")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an MLP on a built-in synthetic regression",
                       description="Train an MLP on a synthetic regression task, then report held-out metrics "
                                   "and throughput. The defaults are a ~1 minute job on a 2-core CPU.")
    d = DEFAULTS
    t.add_argument("--task", choices=sorted(datasets.TASKS), default=d["task"], help="synthetic task (default: %(default)s)")
    t.add_argument("--rows", type=_positive(int), default=d["rows"], help="rows generated, 10%% held out (default: %(default)s)")
    t.add_argument("--features", type=_positive(int), default=d["features"], help="input features (default: %(default)s)")
    t.add_argument("--outputs", type=_positive(int), default=d["outputs"], help="targets per row (default: %(default)s)")
    t.add_argument("--noise", type=float, default=d["noise"], help="target noise std (default: %(default)s)")
    t.add_argument("--hidden", type=_hidden_sizes, default=d["hidden"], help="hidden layer sizes, e.g. 256,256 (default: %(default)s)")
    t.add_argument("--activation", choices=list(ACTIVATIONS), default=d["activation"], help="hidden activation (default: %(default)s)")
    t.add_argument("--output-activation", choices=list(ACTIVATIONS), default="identity", help="(default: %(default)s)")
    t.add_argument("--no-bias", action="store_true", help="bias-free layers, as in the seed derivation")
    t.add_argument("--epochs", type=_positive(int), default=d["epochs"], help="(default: %(default)s)")
    t.add_argument("--batch-size", type=_positive(int), default=d["batch_size"], help="(default: %(default)s)")
    t.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d["optimizer"], help="(default: %(default)s)")
    t.add_argument("--lr", type=_positive(float), default=d["lr"], help="learning rate (default: %(default)s)")
    t.add_argument("--schedule", choices=SCHEDULES, default="constant", help="learning-rate schedule (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=None, help="L2 (adam, sgd) or decoupled (adamw) decay")
    t.add_argument("--momentum", type=float, default=None, help="momentum for momentum/nesterov (default 0.9)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s; env GPUNN_DEVICE)")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="(default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="seeds data, initialisation and shuffles (default: %(default)s)")
    t.add_argument("--json", metavar="PATH", help="also write the history and final metrics as JSON")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="training throughput vs the GEMM roofline and vs NumPy, PyTorch, scikit-learn",
                       description="Training throughput (float32, ReLU, Adam) per configuration and backend: "
                                   "samples/s, FLOP/s as a fraction of a GEMM measured in the same run, the share "
                                   "of a step in matmul/elementwise/optimizer, and the peers (a plain NumPy loop, "
                                   "PyTorch eager, scikit-learn's MLPRegressor) on the same data, as ratios. "
                                   "Peers that are not installed are skipped (pip install 'gpunn[bench]').")
    b.add_argument("--config", action="append", metavar="NAME|SPEC",
                   help="a named configuration (small, medium, wide, deep, large) or name:inputs:h1xh2:outputs:batch; "
                        "repeatable (default: all named ones; large runs on GPU only)")
    b.add_argument("--device", default="all", help="all (cpu, plus cuda when CuPy sees a device), cpu, cuda or cuda:N "
                                                   "(default: %(default)s)")
    b.add_argument("--peers", default="naive,torch,sklearn",
                   help="comma-separated peers to run: naive, torch, sklearn, or none (default: %(default)s)")
    b.add_argument("--repeats", type=_positive(int), default=5, help="timed repeats per implementation (default: %(default)s)")
    b.add_argument("--seconds", type=_positive(float), default=0.3,
                   help="target duration of one repeat, in whole epochs (default: %(default)s)")
    b.add_argument("--max-seconds", type=_positive(float), default=None,
                   help="overall time budget: repeats are cut (at least 2 kept) and configurations skipped to fit it")
    b.add_argument("--quick", action="store_true", help="CI-sized: a tiny configuration, 2 short repeats")
    b.add_argument("--no-profile", action="store_true", help="skip the per-op timing run")
    b.add_argument("--json", metavar="PATH", help="write setup and results as JSON")
    b.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    b.add_argument("--markdown", action="store_true", help="print the table as Markdown (for bench/RESULTS.md)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="show the backend, device, versions and BLAS in use")
    i.add_argument("--device", default="auto", help="device to resolve (default: %(default)s)")
    i.set_defaults(func=cmd_info)
    return parser


def cmd_train(args) -> int:
    from .model import MLP

    backend = _backend.resolve(args.device)
    print(f"device: {backend.describe()}", flush=True)
    t0 = time.perf_counter()
    X, Y = datasets.make(args.task, args.rows, args.features, args.outputs, noise=args.noise, seed=args.seed,
                         device=backend, dtype=args.dtype)
    n_val = max(1, args.rows // 10) if args.rows > 1 else 0
    X_train, Y_train, X_val, Y_val = X[n_val:], Y[n_val:], X[:n_val], Y[:n_val]
    sizes = [args.features, *args.hidden, args.outputs]
    model = MLP(sizes, activation=args.activation, output_activation=args.output_activation, bias=not args.no_bias,
                dtype=args.dtype, device=backend, seed=args.seed)
    print(f"model: {sizes} {args.activation}, {model.n_parameters:,} parameters; task {args.task}: "
          f"{len(X_train):,} training rows, {n_val:,} held out; data made in {time.perf_counter() - t0:.2f}s",
          flush=True)
    history = model.fit(X_train, Y_train, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                        lr=args.lr, schedule=args.schedule, weight_decay=args.weight_decay, momentum=args.momentum,
                        verbose=not args.quiet)
    xp = backend.xp
    P = model.predict(X_val)
    result = {"train_loss": history["loss"][-1], "val_mse": metrics.mse(xp, P, Y_val),
              "val_mae": metrics.mae(xp, P, Y_val), "val_r2": metrics.r2(xp, P, Y_val),
              "samples_per_s": float(numpy.median(history["samples_per_s"])),
              "train_seconds": float(sum(history["time_s"])), "device": backend.device}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": {k: v for k, v in vars(args).items() if k != "func"}, "history": history,
                       "result": result}, fh, indent=2)
    print(f"held-out: mse {result['val_mse']:.5g}  mae {result['val_mae']:.5g}  r2 {result['val_r2']:.4f}")
    print(f"throughput: {result['samples_per_s']:,.0f} samples/s (median epoch), {result['train_seconds']:.1f}s "
          f"training on {backend.device}, {args.dtype}, batch {args.batch_size}")
    return 0


def cmd_bench(args) -> int:
    from . import bench

    if args.device == "all":
        backends = bench.available_backends()
    else:
        backends = [_backend.resolve(args.device)]
    peers = [] if args.peers.strip() in ("", "none") else [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in bench.PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(bench.PEERS)} or none")
    if args.quick:
        configs = [bench.parse_config(c) for c in args.config] if args.config else [bench.QUICK_CONFIG]
        repeats, seconds = min(args.repeats, 2), min(args.seconds, 0.02)
    else:
        configs = [bench.parse_config(c) for c in (args.config or [c for c in bench.CONFIGS])]
        repeats, seconds = args.repeats, args.seconds
    print(f"gpunn bench: {len(configs)} configuration(s) on {', '.join(b.device for b in backends)}; "
          f"peers: {', '.join(peers) or 'none'}", flush=True)
    data = bench.run(configs, backends, peers=peers, repeats=repeats, seconds=seconds, max_seconds=args.max_seconds,
                     profile=not args.no_profile, log=lambda msg: print(msg, flush=True))
    data["setup"]["command"] = "gpunn " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "gpunn bench"
    print()
    print(bench.format_setup(data["setup"]))
    print()
    print(bench.format_table(data["results"], markdown=args.markdown))
    print()
    print(bench.gemm_note(data["results"]))
    print("gpunn is: gpunn's samples/s over the peer's. GFLOP/s = 6 x weights x samples/s.")
    if args.json:
        bench.write_json(data, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        try:
            bench.plot(data, args.plot)
            print(f"wrote {args.plot}")
        except ImportError:
            print("note: --plot needs matplotlib (pip install 'gpunn[bench]'); no chart written", file=sys.stderr)
    return 0


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            return f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, {p.get('architecture')})"
    except ImportError:
        pass
    try:
        cfg = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def cmd_info(args) -> int:
    cupy, count, reason = _backend.probe_cuda()
    lines = {
        "gpunn": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "blas": blas_info(),
        "cupy": getattr(cupy, "__version__", None) or f"unavailable: {reason}",
        "cuda devices": count,
    }
    try:
        resolved = _backend.resolve(args.device)
        lines["device"] = resolved.describe()
    except (_backend.DeviceError, ValueError) as exc:
        lines["device"] = f"error: {exc}"
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")
    return 0 if not str(lines["device"]).startswith("error") else 2


def _show_note(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, _backend.CPUFallbackWarning):
        print(f"note: {str(message).removeprefix('gpunn: ')}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_note
    try:
        return args.func(args)
    except (ValueError, TypeError, _backend.DeviceError, FloatingPointError) as exc:
        print(f"gpunn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
