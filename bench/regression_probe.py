"""CPU timings to compare two checkouts of gpunn for a slowdown (bench/RESULTS.md, "Has the CPU step got
slower?"). The same calls work at 32853ea (session 3), so run it with each checkout first on the path,
alternating, on a quiet machine, with one BLAS thread (the least noisy small-net step):

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=CHECKOUT python bench/regression_probe.py [PART ...]

PARTs (default: all but partial_fit and score): small (16-64-64-1, batch 128, 262,144 rows, 8 epochs), medium
(64-256-256-1, batch 256, 131,072 rows, 5 epochs), ens (Ensemble of 16 small nets, 65,536 rows, 5 epochs),
stream (the small net on gpunn.data.synthetic, 262,144 rows, 5 epochs), predict (1e6 x 16 float32 rows: in
process, and `gpunn predict` to .npy and .csv, start-up included), partial_fit (6,000 MLPRegressor.partial_fit
calls of 128 rows: microseconds per call over each thousand), score (`gpunn predict` of 1e6 x 16 Parquet rows to
.npy by a 16-256-256-1 net, gpunn train's default hidden layers, without and with --score, alternated, 3 each,
start-up included: a checkout of session 41 on, with pyarrow). Rates are the median and best epoch after the first;
"params" is a digest of the weights after the fit, equal between checkouts whose training is the same.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

import gpunn
import gpunn.data
from script_args import refusals_said, refuse


def digest(a):
    return hashlib.sha1(np.ascontiguousarray(np.asarray(a)).tobytes()).hexdigest()[:10]


def rates(history):
    r = list(history["samples_per_s"])[1:]
    return f"median {np.median(r) / 1e6:.3f}M best {max(r) / 1e6:.3f}M"


def fit_line(name, model, data, epochs, batch, unit="samples/s"):
    t = time.perf_counter()
    order = {"seed": 1} if len(data) == 2 else {}  # a source (data alone) shuffles by its own seed: fit refuses one
    h = model.fit(*data, epochs=epochs, batch_size=batch, optimizer="adam", lr=1e-3, verbose=False, **order)
    wall = time.perf_counter() - t
    return f"{name}: {rates(h)} {unit}, wall {wall:.2f}s, params {digest(model.params)}"


def teacher(rows, features):
    return gpunn.datasets.make("teacher", n_samples=rows, n_features=features, seed=0, device="cpu")


def small():
    return fit_line("small 16-64-64-1/128", gpunn.MLP([16, 64, 64, 1], seed=0, device="cpu"), teacher(262144, 16),
                    8, 128)


def medium():
    return fit_line("medium 64-256-256-1/256", gpunn.MLP([64, 256, 256, 1], seed=0, device="cpu"), teacher(131072, 64),
                    5, 256)


def ens():
    return fit_line("ens small-x16/128", gpunn.Ensemble([16, 64, 64, 1], 16, seed=0, device="cpu"), teacher(65536, 16),
                    5, 128, "member-samples/s")


def stream():
    source = gpunn.data.synthetic("teacher", rows=262144, n_features=16, seed=0)
    return fit_line("stream synthetic small/128", gpunn.MLP([16, 64, 64, 1], seed=0, device="cpu"), (source,), 5, 128)


def predict():
    with tempfile.TemporaryDirectory() as d:
        X = np.random.default_rng(0).standard_normal((1_000_000, 16), dtype=np.float32)
        np.save(f"{d}/X.npy", X)
        model = gpunn.MLP([16, 64, 64, 1], seed=0, device="cpu")
        gpunn.save(f"{d}/model.npz", model)
        inside = []
        for _ in range(3):
            t = time.perf_counter()
            P = model.predict(X)
            inside.append(time.perf_counter() - t)
        cli = {}
        for ext in ("npy", "csv"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gpunn", "predict", "--device", "cpu", f"{d}/model.npz", f"{d}/X.npy",
                            f"{d}/P.{ext}"], check=True, stdout=subprocess.DEVNULL)
            cli[ext] = time.perf_counter() - t
    return (f"predict 1e6 rows: in-process min {min(inside):.3f}s, CLI .npy {cli['npy']:.2f}s, "
            f"CLI .csv {cli['csv']:.2f}s, pred {digest(P)}")


def score():
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as d:
        X, Y = teacher(1_000_000, 16)
        columns = {**{f"f{i}": np.asarray(X)[:, i] for i in range(16)}, "y": np.asarray(Y)[:, 0]}
        pq.write_table(pa.table(columns), f"{d}/in.parquet")
        pq.write_table(pa.table({k: v[:20000] for k, v in columns.items()}), f"{d}/train.parquet")
        model = gpunn.MLP([16, 256, 256, 1], seed=0, device="cpu")  # fit on named columns: --score reads by them
        with gpunn.data.parquet(f"{d}/train.parquet", target=["y"]) as source:
            model.fit(source, epochs=1, batch_size=256, verbose=0)
        gpunn.save(f"{d}/model.npz", model)
        seconds = {"plain": [], "--score": []}
        for _ in range(3):  # alternated, so that the load's drift falls on both alike
            for how in seconds:
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "gpunn", "predict", "--device", "cpu", "--overwrite",
                                f"{d}/model.npz", f"{d}/in.parquet", f"{d}/P.npy", *[how] * (how != "plain")],
                               check=True, stdout=subprocess.DEVNULL)
                seconds[how].append(time.perf_counter() - t)
                digests = digest(np.load(f"{d}/P.npy"))
    plain, scored = (sorted(v)[1] for v in seconds.values())
    return (f"predict 1e6 Parquet rows: CLI .npy median {plain:.2f}s, with --score {scored:.2f}s "
            f"({scored / plain:.2f}x), pred {digests}")


def partial_fit():
    from gpunn.estimator import MLPRegressor

    warnings.simplefilter("ignore")
    X, Y = teacher(128, 16)
    X, y = np.asarray(X), np.asarray(Y)[:, 0]
    est = MLPRegressor(hidden_layer_sizes=(64, 64), batch_size=128, random_state=0, device="cpu")
    per, last = [], time.perf_counter()
    for i in range(1, 6001):
        est.partial_fit(X, y)
        if i % 1000 == 0:
            now = time.perf_counter()
            per.append(f"{(now - last) / 1000 * 1e6:.0f}")
            last = now
    return f"partial_fit us per call, by thousand calls: {' '.join(per)}, coefs {digest(est.coefs_[0])}"


PARTS = {"small": small, "stream": stream, "ens": ens, "medium": medium, "predict": predict, "partial_fit": partial_fit,
         "score": score}


def refuse_bad_settings():
    """A GPUNN_ variable the checkout on the path does not take, refused in one line (status 2) before any part
    runs, as gpunn's commands and tools do; a checkout older than that check (session 20) refuses it where it
    reads it, if at all."""
    try:
        from gpunn.cli.common import exit_on_bad_settings
    except ImportError:
        return
    exit_on_bad_settings(os.path.basename(sys.argv[0]))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the arguments are read by position: --help is the docstring
        print(__doc__.strip())
        sys.exit(0)
    unknown = [part for part in sys.argv[1:] if part not in PARTS]
    with refusals_said():
        if unknown:  # before any part runs (it was a KeyError once the parts before it had run)
            refuse(f"unknown PART {', '.join(map(repr, unknown))}: use {', '.join(PARTS)}")
    refuse_bad_settings()
    for part in sys.argv[1:] or [p for p in PARTS if p not in ("partial_fit", "score")]:
        print(PARTS[part](), flush=True)
