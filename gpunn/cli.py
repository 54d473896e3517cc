"""The ``gpunn`` command: ``gpunn train``, ``gpunn predict``, ``gpunn bench`` and ``gpunn info``."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy

from . import __version__, backend as _backend, datasets, metrics
from .activations import ACTIVATIONS
from .optim import OPTIMIZERS, SCHEDULES

DEFAULTS = dict(task="teacher", rows=2_000_000, features=32, outputs=1, noise=0.1, hidden="256,256",
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
    r = t.add_argument_group("runs you can trust")
    r.add_argument("--config", metavar="TOML", help="read options from a TOML file (keys are these options' long "
                   "names); flags on the command line override it")
    r.add_argument("--save", metavar="PATH", help="write a resumable checkpoint (.npz, atomic) every epoch, at the end "
                   "and on Ctrl-C, and the resolved config beside it as PATH.toml")
    r.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH (its PATH.toml supplies the "
                   "defaults; --epochs can extend it); keeps saving to PATH unless --save says otherwise")
    r.add_argument("--checkpoint-every", type=_positive(int), default=1, help="epochs between checkpoints (default: %(default)s)")
    r.add_argument("--early-stopping", action="store_true", help="stop when the validation loss stops improving; keep the best weights")
    r.add_argument("--patience", type=_positive(int), default=5, help="epochs without improvement before stopping (default: %(default)s)")
    r.add_argument("--min-delta", type=float, default=0.0, help="smallest change that counts as an improvement (default: %(default)s)")
    r.add_argument("--reduce-lr-patience", type=_positive(int), default=None, help="halve the learning rate after this many epochs without improvement")
    r.add_argument("--plot", metavar="PNG", help="draw the training and validation loss curves (needs matplotlib: gpunn[plot])")
    t.set_defaults(func=cmd_train)
    parser.train_parser = t

    p = sub.add_parser("predict", help="predict with a saved model: gpunn predict MODEL IN.npy OUT.npy",
                       description="Load a checkpoint (from --save or gpunn.save), predict the rows of IN.npy "
                                   "(rows x features) and write OUT.npy (rows x outputs).")
    p.add_argument("model", help="checkpoint .npz")
    p.add_argument("input", help=".npy file of inputs (read without pickle)")
    p.add_argument("output", help=".npy file to write")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.set_defaults(func=cmd_predict)

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


def _check_plot_available(path):
    if path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib, which is not installed: pip install 'gpunn[plot]'") from None


def plot_history(history, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(history["epoch"], history["loss"], marker=".", label="training loss (MSE)")
    if "val_loss" in history:
        ax.plot(history["epoch"], history["val_loss"], marker=".", label="validation loss (MSE)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_train(args) -> int:
    from . import callbacks as cbmod, config as cfgmod, io
    from .model import MLP

    _check_plot_available(args.plot)
    ckpt = None
    if args.resume:
        ckpt = io.load_checkpoint(args.resume, device=args.device)
        print(f"resuming {args.resume}: {ckpt.epoch} epoch(s) done; model, optimizer, batch size and seed come "
              "from the checkpoint", flush=True)
    backend = ckpt.model.backend if ckpt else _backend.resolve(args.device)
    print(f"device: {backend.describe()}", flush=True)
    t0 = time.perf_counter()
    X, Y = datasets.make(args.task, args.rows, args.features, args.outputs, noise=args.noise, seed=args.seed,
                         device=backend, dtype=args.dtype)
    n_val = max(1, args.rows // 10) if args.rows > 1 else 0
    X_train, Y_train, X_val, Y_val = X[n_val:], Y[n_val:], X[:n_val], Y[:n_val]
    sizes = [args.features, *args.hidden, args.outputs]
    model = ckpt.model if ckpt else MLP(sizes, activation=args.activation, output_activation=args.output_activation,
                                        bias=not args.no_bias, dtype=args.dtype, device=backend, seed=args.seed)
    print(f"model: {model.layer_sizes} {model.activations[0].name}, {model.n_parameters:,} parameters; task {args.task}: "
          f"{len(X_train):,} training rows, {n_val:,} validation; data made in {time.perf_counter() - t0:.2f}s",
          flush=True)
    save_path = args.save or args.resume
    if save_path:
        resolved = {k: v for k, v in cfgmod.resolved(args, build_parser().train_parser).items() if k != "resume"}
        resolved["save"] = save_path
        cfgmod.save(save_path + ".toml", resolved)
    extra = []
    if args.reduce_lr_patience:
        extra.append(cbmod.ReduceLROnPlateau(factor=0.5, patience=args.reduce_lr_patience))
    validation = (X_val, Y_val) if n_val else None
    if ckpt:
        history = ckpt.resume(X_train, Y_train, epochs=args.epochs, validation_data=validation, verbose=not args.quiet,
                              checkpoint=args.save or True, callbacks=extra)
    else:
        history = model.fit(X_train, Y_train, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                            lr=args.lr, schedule=args.schedule, weight_decay=args.weight_decay, momentum=args.momentum,
                            verbose=not args.quiet, validation_data=validation,
                            early_stopping=args.early_stopping and validation is not None, patience=args.patience,
                            min_delta=args.min_delta, checkpoint=args.save, checkpoint_every=args.checkpoint_every,
                            callbacks=extra)
    if history.interrupted:
        print(f"interrupted after {len(history.get('epoch', []))} complete epoch(s)"
              + (f"; checkpoint in {save_path} (continue with --resume {save_path})" if save_path else ""), flush=True)
    if not history.get("epoch"):
        return 130 if history.interrupted else 0
    held_out = metrics.RegressionEvaluator(model, X_val, Y_val).evaluate(model)  # one pass, one read-back
    result = {"train_loss": history["loss"][-1], "val_mse": held_out["val_mse"],
              "val_mae": held_out["val_mae"], "val_r2": held_out["val_r2"],
              "samples_per_s": float(numpy.median(history["samples_per_s"])),
              "train_seconds": float(sum(history["time_s"])), "device": backend.device,
              "epochs": len(history["epoch"]), "interrupted": history.interrupted,
              "best_epoch": getattr(history, "best_epoch", None)}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": {k: v for k, v in vars(args).items() if k != "func"}, "history": history,
                       "result": result}, fh, indent=2)
    if args.plot:
        plot_history(history, args.plot)
        print(f"loss curves: {args.plot}")
    if history.stopped_early:
        print(f"early stopping: best epoch {history.best_epoch} of {len(history['epoch'])}; its weights are kept")
    print(f"held-out: mse {result['val_mse']:.5g}  mae {result['val_mae']:.5g}  r2 {result['val_r2']:.4f}")
    print(f"throughput: {result['samples_per_s']:,.0f} samples/s (median epoch), {result['train_seconds']:.1f}s "
          f"training on {backend.device}, {args.dtype}, batch {args.batch_size}")
    if save_path:
        print(f"checkpoint: {save_path} (config: {save_path}.toml)")
    return 130 if history.interrupted else 0


def cmd_predict(args) -> int:
    from . import io

    model = io.load(args.model, device=args.device)
    try:
        X = numpy.load(args.input, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{args.input} could not be read as a .npy array without pickle: {exc}") from None
    P = model.backend.to_host(model.predict(X))
    io.atomic_write(args.output, lambda fh: numpy.save(fh, numpy.asarray(P), allow_pickle=False))
    print(f"{args.output}: {P.shape[0]} x {P.shape[1]} predictions ({model.dtype.name}) from {args.model} "
          f"on {model.device}")
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


def parse_args(argv=None):
    """Parse the command line; for ``train``, defaults come from --resume's saved config, then
    --config, and flags on the command line override both."""
    from . import config as cfgmod

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "train" or not (args.config or args.resume):
        return args
    train = parser.train_parser
    layered = {}
    if args.resume and os.path.exists(args.resume + ".toml"):
        layered.update(cfgmod.convert(train, cfgmod.read_toml(args.resume + ".toml"), args.resume + ".toml"))
        layered.pop("save", None)
        layered.pop("resume", None)
    if args.config:
        layered.update(cfgmod.convert(train, cfgmod.read_toml(args.config), args.config))
    train.set_defaults(**layered)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    warnings.showwarning = _show_note
    try:
        args = parse_args(argv)
        return args.func(args)
    except (ValueError, TypeError, _backend.DeviceError, FloatingPointError, OSError) as exc:
        print(f"gpunn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
