"""The runs of ``gpunn bench``: training throughput against the GEMM roofline and against peers.

For each configuration and backend it measures, interleaved so that background load hits
every implementation alike:
- gpunn's steady-state training samples/s (``MLP.fit`` on shuffled mini-batches, Adam, float32),
  the median over repeats after a warm-up, with the spread;
- achieved FLOP/s = 6 * weights * samples/s, as a fraction of one GEMM of the configuration's own
  hidden-layer shape (batch x widest x widest) through the library gpunn chose for that shape, timed
  in the same interleaved rounds ("% of GEMM"), and of the best float32 GEMM rate measured ("% of
  peak": the faster median of that product and of a large square product through every GEMM library
  installed, which is timed in rounds of its own after the others: see timed_peaks);
- the share of a step spent in matrix products, elementwise work and the optimizer (a separate,
  instrumented run that times each ``ops`` method, synchronising the GPU around each);
- the peers on the same data: the plain-NumPy loop of README's "The math" (gpunn/bench/naive.py),
  PyTorch eager (same device), PyTorch eager under bfloat16 autocast (GPU) and scikit-learn's
  MLPRegressor (CPU, float64 input), each as a ratio to gpunn.

``max_seconds`` bounds the whole run: configurations share the budget, and within one the warm-ups,
the peers' set-up (the torch import included), the repeats, the square GEMMs' rounds and the profile run
are each skipped or cut when the budget is spent. ``on_result`` receives the data so far after each
configuration, so a run killed part-way keeps what it finished.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy

from .. import backend as _backend, datasets
from ..ops.cpu import usable_cores
from ..ops import fit_threads
from ..ops.fit_threads import asks_one_thread, one_thread_for
from .configs import Config
from .system import OthersCpu, SpeedProbe, blas_threads, setup_info, threads_words

# ---- devices and clocks ------------------------------------------------------------------

def synchronize(backend) -> None:
    if backend.is_gpu:
        backend.xp.cuda.get_current_stream().synchronize()


def available_backends() -> list:
    """cpu always; cuda:0 when CuPy sees a device."""
    out = [_backend.CPU]
    cupy, count, _ = _backend.probe_cuda()
    if cupy is not None and count:
        out.append(_backend.resolve("cuda"))
    return out


def measure_gemm(backend, dtype, m, k, n, seconds=0.3, repeats=5) -> float:
    """FLOP/s of out = a @ b for (m x k) @ (k x n) on the backend: median over repeats, warm-up excluded."""
    xp = backend.xp
    with backend.use():
        rng = numpy.random.default_rng(0)
        a = xp.asarray(rng.standard_normal((m, k)), dtype=dtype)
        b = xp.asarray(rng.standard_normal((k, n)), dtype=dtype)
        out = xp.empty((m, n), dtype)
        xp.matmul(a, b, out=out)
        synchronize(backend)
        t0 = time.perf_counter()
        xp.matmul(a, b, out=out)
        synchronize(backend)
        once = max(time.perf_counter() - t0, 1e-7)
        inner = max(1, min(1000, int(seconds / repeats / once)))
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                xp.matmul(a, b, out=out)
            synchronize(backend)
            rates.append(2.0 * m * k * n * inner / (time.perf_counter() - t0))
    return statistics.median(rates)


# ---- the implementations under test --------------------------------------------------------

def _dataset_rows(cfg: Config, backend) -> int:
    """Rows per epoch: about 1.2e11 FLOPs of work on CPU (0.3 s at 400 GFLOP/s), capped at 65,536
    rows, at least 8 batches; on GPU at least 16 batches. Always whole batches."""
    budget = 2.0e12 if backend.is_gpu else 1.2e11
    rows = min(65536, budget / cfg.flops_per_sample)
    batches = max(16 if backend.is_gpu else 8, math.ceil(rows / cfg.batch))
    batches = min(batches, 512)
    return batches * cfg.batch


def timed_fit(model, *data, **options):
    """``model.fit(*data, **options)`` as the bench runs every fit it times: quiet, and leaving Ctrl-C and
    SIGTERM to end the bench (``handle_interrupt=False``). A fit that handled them would stop, return, and
    let the bench go on to time the next one: ``timeout -s INT 8 gpunn bench`` ran 66 s (f5da8fb)."""
    return model.fit(*data, verbose=False, handle_interrupt=False, **options)


class Runner:
    """Runs whole epochs of one implementation; ``epochs(n)`` returns after the device is idle. A runner
    trains gpunn's models through ``self.fit`` (:func:`timed_fit`), never ``model.fit`` itself."""

    key = "runner"
    label = "runner"
    dtype = "float32"
    available = True
    fit = staticmethod(timed_fit)

    def epochs(self, n: int) -> None:
        raise NotImplementedError

    def on_its_threads(self):
        """A context holding the BLAS thread count this runner's epochs run on (GemmRunner's), over its warm-up and
        calibration (bench_config); none for the others, whose epochs set their own."""
        return contextlib.nullcontext()


class GemmRunner(Runner):
    """The roofline: out = a @ b of a representative shape; one "epoch" is one product.

    On the CPU the product goes through ``library`` (a name in gpunn.ops.gemm.LIBRARIES), or by
    default through the library gpunn's own training step chose for the shape; on the GPU, cuBLAS.
    ``threads``: as the NumPy peers' (numpy_blas_threads): 1 runs the products on one BLAS thread, as gpunn's fit
    of a small net runs its own, so that "% of GEMM" sets the step against the product on the same threads.
    """

    key = "gemm"

    def __init__(self, backend, dtype, m, k, n, library=None, threads=None):
        xp, self.backend, self.threads = backend.xp, backend, threads
        rng = numpy.random.default_rng(0)
        self.a = xp.asarray(rng.standard_normal((m, k)), dtype=dtype)
        self.b = xp.asarray(rng.standard_normal((k, n)), dtype=dtype)
        self.out = xp.empty((m, n), dtype)
        self.flops = 2.0 * m * k * n
        self.shape = f"{m}x{k}x{n}"
        self._matmul = lambda a, b, out: xp.matmul(a, b, out=out)
        self._chooser = None
        if not backend.is_gpu:
            from ..ops import gemm
            from ..ops.cpu import _split_rows

            self._chooser = (gemm.shared_chooser(_split_rows) if library is None
                             else gemm.GemmChooser(_split_rows, candidates=[library]))
            self._matmul = self._chooser.matmul
        self.library = library or ("cuBLAS" if backend.is_gpu else None)
        self.label = f"GEMM {self.shape} {dtype}"

    def chosen(self) -> str:
        """The library that ran the product (after the first epoch)."""
        if self._chooser is not None and self.library is None:
            from ..ops import gemm

            return self._chooser.choices.get(gemm.shape_key(self.a, self.b), "numpy")
        return self.library or "numpy"

    def epochs(self, n):
        matmul = self._matmul
        with self.on_its_threads():
            for _ in range(n):
                matmul(self.a, self.b, self.out)
        synchronize(self.backend)

    def on_its_threads(self):
        """One BLAS thread where ``threads`` is 1 (numpy_blas_threads). Held over the calibration too: its set and put
        back (~50 us through threadpoolctl) around the one product of a calibration epoch (5-20 us, a tiny or small
        net's) made the count of products 10-18x fewer than a repeat of ``seconds`` asks."""
        return numpy_blas_threads(None if self.backend.is_gpu else self.threads)


def best_gemm(gemm, gemm_rates, peak_times) -> tuple[float, str]:
    """(the best float32 GEMM rate measured, which GEMM that was), the base of "% of peak": the fastest median
    rate of the square products (``peak_times[g]``: seconds per product of each of their own rounds, timed_peaks)
    and of the same-shape product ``gemm`` (``gemm_rates``: FLOP/s of each of the rest's rounds), so never below
    the "% of GEMM" base. Single-model and ensemble rows both use it, so the column means the same in both."""
    medians = {g: statistics.median(g.flops / t for t in times) for g, times in peak_times.items()}
    medians[gemm] = statistics.median(gemm_rates)
    top = max(medians, key=medians.get)
    return medians[top], f"{top.shape} {top.chosen()}"


# The square "peak" products were timed in the same rounds as the rest, between the same-shape baseline and gpunn:
# under --quick 3 x 20 ms (numpy, blis, mkl) separated the two sides of every "% of GEMM" pair, so a change of load
# in between counted as a difference. And a threaded BLAS product leaves its workers spinning after it returns
# (OpenBLAS: about 0.1 s, its THREAD_TIMEOUT of 2^28 cycles; measured here as the process's CPU time growing for
# 9-10 polls of 10 ms while its main thread slept), taking CPU from whatever runs next. So the square products are
# timed in rounds of their own after the rest, and the next measurement waits for their workers (settle). In one
# process under other helpers' load (about 80% of the 2 cores), --quick-sized rounds alternated in the two orders
# gave "% of GEMM" quartiles of 22-169% the old way and 28-100% the new (40 each; bench20, 2026-11-30).
SETTLE_POLL_SECONDS = 0.01
SETTLE_MAX_SECONDS = 0.5


def settle(poll=SETTLE_POLL_SECONDS, most=SETTLE_MAX_SECONDS) -> float:
    """Wait until this process's threads stop using the CPU while it sleeps (BLAS workers still spinning after a
    threaded product), polling every ``poll`` seconds, at most ``most``; returns the seconds waited."""
    start = time.perf_counter()
    last = time.process_time()
    while time.perf_counter() - start < most:
        time.sleep(poll)
        now = time.process_time()
        if now - last < 0.1 * poll:
            break
        last = now
    return time.perf_counter() - start


def timed_peaks(peaks, repeats, seconds, deadline=None, rounds=None, log=None) -> dict:
    """Seconds per product of each repeat of each square GEMM ``peaks``, warmed up, calibrated and timed in
    interleaved rounds of their own (``rounds``: timed_rounds, or a module's stand-in for it), then settle():
    their BLAS workers left spinning slow whatever runs next, so nothing else is timed among or right after them.

    Within ``deadline``: each repeat is at most what is left over ``repeats`` rounds (two at least, which the rounds
    run past a deadline) of every product, and none is timed once it has passed ({}: best_gemm's "% of peak" base is
    then the same-shape product alone, and ``log`` says so). Timed with ``seconds`` as asked, after the rest had
    spent the budget, they ran past it: the ensemble hook's processes are killed at their share of --max-seconds."""
    if not peaks:
        return {}
    left = _left(deadline)
    if left <= 0:
        if log is not None:
            log("square GEMMs not timed (--max-seconds budget spent): '% of peak' is over the same-shape GEMM")
        return {}
    seconds = min(seconds, left / (max(2, repeats) * len(peaks)))
    _, times = (rounds or timed_rounds)(peaks, repeats, seconds, deadline)
    settle()
    return times


def peak_size_for(seconds, peak_size=None):
    """The square GEMM's size: ``peak_size``, or 256 for CI-sized runs (``seconds`` under 0.05, where the
    peak is not the point), else None (the device's default: 2048 on CPU, 4096 on GPU)."""
    if peak_size is None and seconds < 0.05:
        return 256
    return peak_size


def peak_runners(backend, dtype="float32", size=None) -> list:
    """Square GEMMs (2048^3 on CPU, 4096^3 on GPU), one per GEMM library installed: the practical peak."""
    if backend.is_gpu:
        return [GemmRunner(backend, dtype, *3 * [size or 4096])]
    from ..ops import gemm

    return [GemmRunner(backend, dtype, *3 * [size or 2048], library=name) for name in gemm.available()]


class GpunnRunner(Runner):
    key = "gpunn"

    def __init__(self, cfg, backend, X, Y, lr=1e-3, precision="float32", graph=None):
        from ..model import MLP
        from ..optim import Adam

        self.backend, self.X, self.Y, self.batch = backend, X, Y, cfg.batch
        self.model = MLP(cfg.sizes, activation="relu", output_activation="identity", dtype="float32",
                         device=backend, seed=0, precision=precision, graph=graph)
        self.optimizer = Adam(lr=lr)
        self.dtype = precision
        # on the GPU the default (graph=None) captures the step as a CUDA graph: "graph"; graph=False: "eager"
        mode = ("eager" if graph is False else "graph") if backend.is_gpu else ""
        extra = " ".join(x for x in ((precision if precision != "float32" else ""), mode) if x)
        self.label = f"gpunn ({backend.device})" + (f" {extra}" if extra else "")
        self._seed = 0

    def captured(self) -> bool:
        """Whether the steps ran as a replayed CUDA graph."""
        trainer = self.model.graph_trainer
        return trainer is not None and trainer.active and trainer.captured

    def epochs(self, n):
        self._seed += 1
        self.fit(self.model, self.X, self.Y, epochs=n, batch_size=self.batch, optimizer=self.optimizer,
                 seed=self._seed)
        synchronize(self.backend)


def load_naive():
    """The naive baseline module, :mod:`gpunn.bench.naive` (an ordinary module of the package)."""
    from . import naive

    return naive


class NaiveRunner(Runner):
    key = "naive"

    def __init__(self, cfg, backend, X, Y, lr=1e-3, threads=None):
        naive = load_naive()
        self.backend = backend
        self.net = naive.NaiveMLP(cfg.sizes, dtype="float32", seed=0, lr=lr, xp=backend.xp)
        self.X, self.Y, self.batch = X, Y, cfg.batch
        self.rng = numpy.random.default_rng(0)
        self.label = "naive numpy loop" if not backend.is_gpu else "naive loop (CuPy)"
        self.threads = threads  # NumPy's BLAS threads on the CPU, as gpunn's fit of the net sets them (1), or None

    def epochs(self, n):
        with self.backend.use(), numpy_blas_threads(None if self.backend.is_gpu else self.threads):
            for _ in range(n):
                self.net.train_epoch(self.X, self.Y, self.batch, self.rng)
        synchronize(self.backend)


def numpy_blas_threads(threads):
    """The context a NumPy peer's epochs run in on the CPU (the naive loop's, scikit-learn's: NumPy's BLAS does their
    products): one BLAS thread (fit_threads.blas_threads) where ``threads`` is 1, as gpunn's fit of a small net runs
    in; else the count as it is."""
    return fit_threads.blas_threads(1) if threads == 1 else contextlib.nullcontext()


def torch_device(backend, threads=None):
    """(torch, device) for a backend: its CUDA device, or the CPU with ``threads`` threads; seeded.
    ImportError when torch (or its CUDA build) is missing, so the peer is skipped."""
    import torch

    if backend.is_gpu:
        if not torch.cuda.is_available():
            raise ImportError("torch has no CUDA device")
        device = torch.device(f"cuda:{backend.device_id}")
    else:
        device = torch.device("cpu")
        if threads:
            torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    return torch, device


class TorchRunner(Runner):
    key = "torch"
    autocast = False  # bfloat16 autocast of the forward pass (TorchBf16Runner)

    def __init__(self, cfg, backend, X, Y, lr=1e-3, threads=None):
        if self.autocast and not backend.is_gpu:
            raise ImportError("the bfloat16 autocast peer runs on the GPU only")
        self.torch, self.device = torch_device(backend, threads)
        torch = self.torch
        layers = []
        sizes = cfg.sizes
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        host = backend.to_host
        self.X = torch.as_tensor(numpy.ascontiguousarray(host(X)), device=self.device)
        self.Y = torch.as_tensor(numpy.ascontiguousarray(host(Y)), device=self.device)
        self.batch = cfg.batch
        self.threads = torch.get_num_threads()
        self.label = f"torch {torch.__version__} eager ({self.device})" + (", bf16 autocast" if self.autocast else "")
        if self.autocast:
            self.dtype = "bf16 autocast"

    def epochs(self, n):
        torch, F = self.torch, self.torch.nn.functional
        m, b = self.X.shape[0], self.batch
        for _ in range(n):
            perm = torch.randperm(m, device=self.device)
            for start in range(0, m, b):
                idx = perm[start:start + b]
                xb, yb = self.X[idx], self.Y[idx]
                self.opt.zero_grad(set_to_none=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    out = self.net(xb)
                loss = F.mse_loss(out.float(), yb, reduction="sum") / xb.shape[0]  # (1/m)||A - Y||_F^2
                loss.backward()
                self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class SklearnRunner(Runner):
    key = "sklearn"

    def __init__(self, cfg, backend, X, Y, lr=1e-3, dtype="float64", threads=None):
        import sklearn
        from sklearn.neural_network import MLPRegressor

        if backend.is_gpu:
            raise ImportError("scikit-learn runs on the CPU only")
        self.X = numpy.asarray(X, dtype=dtype)
        Yh = numpy.asarray(Y, dtype=dtype)
        self.Y = Yh.ravel() if Yh.shape[1] == 1 else Yh
        self.reg = MLPRegressor(hidden_layer_sizes=cfg.hidden, activation="relu", solver="adam", alpha=0.0,
                                batch_size=cfg.batch, learning_rate_init=lr, shuffle=True, random_state=0)
        self.dtype = dtype
        self.label = f"sklearn {sklearn.__version__} MLPRegressor ({dtype} input)"
        self.threads = threads  # NumPy's BLAS threads, as gpunn's fit of the net sets them (1), or None

    def epochs(self, n):
        with warnings.catch_warnings(), numpy_blas_threads(self.threads):
            warnings.simplefilter("ignore")
            for _ in range(n):
                self.reg.partial_fit(self.X, self.Y)  # one epoch of mini-batches

    def ran_in(self) -> str:
        coefs = getattr(self.reg, "coefs_", None)
        return str(coefs[0].dtype) if coefs else self.dtype


class TorchBf16Runner(TorchRunner):
    """PyTorch's mixed precision: float32 weights and Adam, the forward (and its backward) in bfloat16."""

    key = "torch-bf16"
    autocast = True


PEERS = ("naive", "torch", "torch-bf16", "sklearn")
_PEER_CLASSES = {"naive": NaiveRunner, "torch": TorchRunner, "torch-bf16": TorchBf16Runner, "sklearn": SklearnRunner}
TORCH_IMPORT_SECONDS = 20.0  # what a cold `import torch` (CUDA) may take: not started with less budget left


# what installs a peer's module (README's Benchmarks), by the name its ImportError gives
_PEER_MODULES = {"torch": ("torch", "; on a machine without an NVIDIA GPU first pip install torch --index-url "
                                    "https://download.pytorch.org/whl/cpu, as the extra takes the CUDA build"),
                 "sklearn": ("scikit-learn", "")}


def skipped_because(exc: ImportError) -> str:
    """Why a peer was skipped, for its "skipped (...)" line: a module not installed says what installs it."""
    module = getattr(exc, "name", None)
    if module not in _PEER_MODULES:
        return str(exc)
    package, note = _PEER_MODULES[module]
    return f"{package} is not installed: pip install 'gpunn[bench]'{note}"


def _left(deadline) -> float:
    return math.inf if deadline is None else deadline - time.perf_counter()


# ---- the profile: share of a step per kind of op -------------------------------------------

CATEGORIES = {
    "matmul": "matmul",
    "unsplit_matmul": "matmul",  # an ensemble's products inside a member group (gpunn.ops.ensemble)
    "bias_activation": "elementwise",
    "activation_backward": "elementwise",
    "activation_bias_backward": "elementwise",
    "bias_gradient": "elementwise",
    "loss_gradient": "elementwise",
    "squared_error": "elementwise",
    "adam_step": "optimizer",
    "sgd_step": "optimizer",
}


@contextlib.contextmanager
def timed_ops(ops, backend, totals):
    """Time every ops method in CATEGORIES on this ops instance (outermost call only; GPU synchronised).

    Only the calling thread's calls are timed: an ensemble's member groups run the same ops on other
    threads at the same time, and the calling thread's shares (its own group, and waiting for the
    others as "other") are the step's."""
    depth = [0]
    originals = {}
    owner = threading.get_ident()

    def wrap(name, fn):
        kind = CATEGORIES[name]

        def timed(*args, **kwargs):
            if depth[0] or threading.get_ident() != owner:
                return fn(*args, **kwargs)
            depth[0] += 1
            try:
                synchronize(backend)
                t0 = time.perf_counter()
                result = fn(*args, **kwargs)
                synchronize(backend)
                totals[kind] = totals.get(kind, 0.0) + time.perf_counter() - t0
                return result
            finally:
                depth[0] -= 1
        return timed

    for name in CATEGORIES:
        fn = getattr(ops, name, None)
        if fn is not None:
            originals[name] = fn
            setattr(ops, name, wrap(name, fn))
    try:
        yield totals
    finally:
        for name in originals:
            delattr(ops, name)  # the instance attribute goes; the class method shows through again


def profile_step(runner: GpunnRunner, epochs: int, ops=None) -> dict:
    """Shares of the step time (matmul, elementwise, optimizer, other) from an instrumented run
    (of ``ops``, default the runner's model's ops: an ensemble's are its member_ops). A small MLP's step on the
    CPU, one compiled call in the timed runs (gpunn.ops.mlp_step), runs its generic methods here: the one call
    steps aside where they are set on the ops, as timing them does."""
    totals = {}
    with timed_ops(runner.model.ops if ops is None else ops, runner.backend, totals):
        synchronize(runner.backend)
        t0 = time.perf_counter()
        runner.epochs(epochs)
        wall = time.perf_counter() - t0
    shares = {k: totals.get(k, 0.0) / wall for k in ("matmul", "elementwise", "optimizer")}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


# ---- the run -------------------------------------------------------------------------------

@dataclass
class Result:
    config: str
    spec: str
    backend: str
    impl: str
    label: str
    dtype: str
    batch: int
    samples_per_s: float = float("nan")
    spread: tuple = (float("nan"), float("nan"))
    repeats: list = field(default_factory=list)
    gflops: float = float("nan")
    gemm_gflops: float = float("nan")
    fraction_of_gemm: float = float("nan")
    gemm_library: str = ""  # the library that ran the same-shape product (an ensemble's: the fastest strategy)
    gemm_strategies: dict = field(default_factory=dict)  # an ensemble's: GFLOP/s of each way to run the baseline
    gemm_na: str = ""  # why fraction_of_gemm is n/a (nan): the baseline could not be timed well
    peak_gflops: float = float("nan")  # the fastest median rate of the square GEMMs and the same-shape one
    peak_gemm: str = ""  # which GEMM that was
    fraction_of_peak: float = float("nan")
    gpunn_speedup: float = float("nan")  # gpunn's samples/s over this one's, median of per-round ratios
    # samples/s of each round, in the order run: every row of one configuration and backend ran in the same rounds,
    # so any two pair up round by round (paired_speedup); empty in JSON written before it was recorded
    rounds: list = field(default_factory=list)
    noisy: bool = False  # the fastest repeat beat the slowest by over 30%: background load
    gemm_noisy: bool = False  # so did the "% of GEMM" baseline's, in the same rounds: that percentage is as noisy
    others_cpu: float = float("nan")  # the share of the machine's CPU time other processes took during the rounds
    # the machine's own speed: thread-CPU ms of a fixed probe (system.SpeedProbe) before the first round and after
    # each, and the slowest over the fastest (over system.SPEED_SPREAD: samples/s marked (~)); the same for every
    # row of a configuration and backend, which ran in the same rounds
    machine_probe_ms: list = field(default_factory=list)
    machine_spread: float = float("nan")
    profile: dict | None = None
    note: str = ""
    graph: str = ""  # gpunn on a GPU: "graph" (the step ran as a replayed CUDA graph) or "eager"
    graph_speedup: float = float("nan")  # an eager row: the same precision's graph row's samples/s over its own


# A Result's figures that are nan where not measured: null in the JSON (strict JSON has no NaN), read back as nan
# by report.read_json
NOT_MEASURED = frozenset(f.name for f in fields(Result) if isinstance(f.default, (float, tuple)))


def _median_rate(times, samples):
    rates = sorted(samples / t for t in times)
    return statistics.median(rates), (rates[0], rates[-1]), rates


def paired_speedup(a, b) -> float:
    """Row ``a``'s samples/s over row ``b``'s (Result dicts), paired by round: the median over rounds of the two
    rows' ratio in each, as gpunn_speedup. The rows must have run in the same rounds (one configuration and backend
    of one run); nan where either holds no rounds (JSON from before they were recorded) or their counts differ."""
    ra, rb = a.get("rounds") or [], b.get("rounds") or []
    if not ra or len(ra) != len(rb):
        return float("nan")
    return statistics.median(x / y for x, y in zip(ra, rb))


def differ(rates) -> bool:
    """Whether the fastest of a runner's repeats beat the slowest by over 30%: background load (a Result's noisy)."""
    return max(rates) > 1.3 * min(rates)


def timed_rounds(runners, repeats, seconds, deadline=None, on_budget=None, min_seconds=None, between=None):
    """(epochs per repeat, seconds per epoch of each repeat) for each runner, in interleaved rounds.

    Warm-up (compiles, allocations, first-touch) and calibration first: each repeat is whole epochs,
    about ``seconds`` long, or at least ``min_seconds[runner]`` for a runner named there (a short
    baseline's repeat held long enough that its per-call costs do not dominate). Such a runner is
    calibrated on the fastest of CALIBRATION_EPOCHS epochs (see there). Past ``deadline`` (after at
    least 2 rounds) the rounds stop and ``on_budget(rounds done)`` is called. ``between``: as interleaved_rounds'.
    """
    counts, min_seconds = {}, min_seconds or {}
    for r in runners:
        r.epochs(1)
        asked = max(seconds, min_seconds.get(r, 0.0))
        once = fastest_epoch(r, CALIBRATION_EPOCHS if r in min_seconds else 1, calibration_seconds(asked))
        counts[r] = max(1, round(asked / once))
    return counts, interleaved_rounds(runners, counts, repeats, deadline, on_budget, between)


# A runner with a minimum repeat (timed_rounds' min_seconds) is calibrated on the fastest of this many epochs. On
# a loaded machine one short epoch can take a time slice longer (the process descheduled for milliseconds): a
# count from it made the repeats that much shorter than asked, and an ensemble's GEMM baseline, its repeats then
# under gpunn.bench.ensemble.GEMM_MIN_TIMED_SECONDS, "n/a" (% of GEMM nan). A stall only lengthens an epoch:
# the fastest is the one it is least likely to have reached.
CALIBRATION_EPOCHS = 3
# And each timing of a calibration is of as many epochs as last CALIBRATION_SECONDS together (a tenth of a shorter
# repeat). One epoch timed alone is a short runner's call overhead too, which a repeat of many epochs pays once: the
# same-shape GEMM's one product took 8.6 us timed alone and 4.9 us in 200s (tiny's 64x32x32; small's 128x64x64 19.5
# and 15.7 us; fastest of 2,000 and of 50, one thread, 2-core AMD EPYC, 2026-12-04), so its count was 1.2-1.8x too
# few (repeats of 0.1-0.15 s for 0.3, review45, under load too). The GEMM is calibrated on the fastest of
# CALIBRATION_EPOCHS such timings (a stall only lengthens one), so a repeat lasts at least what is asked: under load 5-7
# on those 2 cores, its repeats ran 0.1-0.9 s for 0.3 either way, the load's doing, which no count undoes.
CALIBRATION_SECONDS = 0.002


def calibration_seconds(asked) -> float:
    """How long each timing of a calibration lasts for repeats of ``asked`` seconds (fastest_epoch's ``least``)."""
    return min(CALIBRATION_SECONDS, asked / 10)


def fastest_epoch(runner, tries=1, least=0.0) -> float:
    """Seconds per epoch of ``runner``, the fastest of ``tries`` timings (at least 1 us), each of as many epochs as
    last ``least`` seconds together: 1, 2, 4, ... until one does (as timeit's autorange counts), the count then kept
    for the other tries, or as many as would last it at the floor of 1 us an epoch (a runner whose epochs cost
    nothing). A repeat runs its epochs in one ``epochs(n)`` call, as these are timed."""
    best, count = math.inf, 1
    for _ in range(tries):
        while True:
            t0 = time.perf_counter()
            runner.epochs(count)
            took = time.perf_counter() - t0
            if took >= least or count * MIN_EPOCH_SECONDS >= least:
                break
            count *= 2
        best = min(best, took / count)
    return max(best, MIN_EPOCH_SECONDS)


MIN_EPOCH_SECONDS = 1e-6


def interleaved_rounds(runners, counts, repeats, deadline=None, on_budget=None, between=None):
    """Seconds per epoch of each repeat, for each runner: ``repeats`` rounds, each running every runner
    ``counts[runner]`` epochs in turn. Past ``deadline`` (after at least 2 rounds) the rounds stop and
    ``on_budget(rounds done)`` is called. ``between()`` (a system.SpeedProbe), when given, is called before the
    first round and after each, outside the timings."""
    times = {r: [] for r in runners}
    if between is not None:
        between()
    for i in range(repeats):
        for r in runners:
            t0 = time.perf_counter()
            r.epochs(counts[r])
            times[r].append((time.perf_counter() - t0) / counts[r])
        if between is not None:
            between()
        if deadline is not None and time.perf_counter() > deadline and i >= 1:
            if on_budget is not None:
                on_budget(i + 1)
            break
    return times


def scheduled_jobs(configs, backends, deadline=None, log=print):
    """(configuration, backend, its deadline) for every pair that can run (GPU-only configurations are
    skipped on the CPU, saying so); each job gets an equal share of what is left of ``deadline``, and
    jobs are skipped, saying so, once it has passed."""
    jobs = [(c, b) for b in backends for c in configs if b.is_gpu or not c.gpu_only]
    for c, b in ((c, b) for b in backends for c in configs if c.gpu_only and not b.is_gpu):
        log(f"  {c.name} [{b.device}]: skipped (GPU-only configuration)")
    for i, (cfg, backend) in enumerate(jobs):
        job_deadline = None
        if deadline is not None:
            left = deadline - time.perf_counter()
            if left <= 0:
                log(f"  {cfg.name} [{backend.device}]: skipped, --max-seconds budget spent")
                continue
            job_deadline = time.perf_counter() + left / (len(jobs) - i)
        yield cfg, backend, job_deadline


def bench_config(cfg: Config, backend, peers=PEERS, repeats=5, seconds=0.3, deadline=None, profile=True,
                 threads=None, log=print, variants=(), peak_size=None, sustain_steps=0) -> list:
    """All implementations on one configuration and backend, interleaved; returns Results (gpunn first).

    ``variants``: more gpunn runs, as (precision, graph) pairs (GPU only), e.g. ("bf16", None) for the
    default (the CUDA graph) and ("bf16", False) for the eager step. The first gpunn row is float32 with
    the default (graph=None: captured on a GPU, the ordinary step on the CPU).
    ``peak_size``: the square GEMM timed as the practical peak (see run).
    ``sustain_steps``: train every implementation this many more steps before timing (see run)."""
    rows = _dataset_rows(cfg, backend)
    X, Y = datasets.make("teacher", rows, cfg.inputs, cfg.outputs, noise=0.1, seed=0, device=backend,
                         dtype="float32")
    gpunn = GpunnRunner(cfg, backend, X, Y)
    # the torch, NumPy and scikit-learn peers on the CPU threads gpunn's fit runs its BLAS on: one for a small net
    # (gpunn.ops.fit_threads). On every core they trained the tiny and small nets 10-100x slower than on one under
    # other processes' load (2-core Xeon, 2026-12-02), and gpunn's ratio over them measured that. The same-shape
    # GEMM too: on two threads under load it ran small's 128x64x64 at 2-5 GFLOP/s, one thread at 30-45 (2-core
    # AMD EPYC, 2026-12-04), and "% of GEMM" said 2072%
    peer_threads = 1 if asks_one_thread(gpunn.model) else threads
    gemm = GemmRunner(backend, "float32", *cfg.gemm_shape, threads=peer_threads)  # timed in the rounds of the rest
    peaks = peak_runners(backend, "float32", peak_size)  # timed in rounds of their own, after them (timed_peaks)
    runners, results = [gemm, gpunn], []
    where = f"{cfg.name} [{backend.device}]"
    for precision, graph in variants:
        if not backend.is_gpu:
            log(f"  {where}: gpunn {precision}{' eager' if graph is False else ''} skipped (GPU only)")
            continue
        runners.append(GpunnRunner(cfg, backend, X, Y, precision=precision, graph=graph))
    for key in peers:
        if _left(deadline) <= 0:
            log(f"  {where}: {key} skipped (--max-seconds budget spent)")
            continue
        if key.startswith("torch") and "torch" not in sys.modules and _left(deadline) < TORCH_IMPORT_SECONDS:
            log(f"  {where}: {key} skipped (under {TORCH_IMPORT_SECONDS:.0f} s of budget left to import torch)")
            continue
        try:
            runners.append(_PEER_CLASSES[key](cfg, backend, X, Y, threads=peer_threads))
        except ImportError as exc:
            log(f"  {where}: {key} skipped ({skipped_because(exc)})")
    # Warm-up (compiles, allocations, first-touch) and calibration: whole epochs, about `seconds` each,
    # less when the budget is short. gpunn (every variant) and its GEMM always run; a peer is dropped once it is spent.
    counts = {}
    for r in list(runners):
        if not isinstance(r, (GemmRunner, GpunnRunner)) and _left(deadline) <= 0:
            log(f"  {where}: {r.key} skipped (--max-seconds budget spent during the warm-ups)")
            runners.remove(r)
            continue
        with r.on_its_threads():
            r.epochs(1)
            counts[r] = fastest_epoch(r, CALIBRATION_EPOCHS if isinstance(r, GemmRunner) else 1,
                                      calibration_seconds(seconds))
    if sustain_steps:  # the state a long run reaches (e.g. subnormals built up in Adam's moments)
        ageing = math.ceil(sustain_steps / math.ceil(rows / cfg.batch))
        log(f"  {where}: {ageing} more epoch{'s' * (ageing != 1)} ({sustain_steps}+ steps) of each before timing")
        for r in runners:
            if not isinstance(r, GemmRunner):
                r.epochs(ageing)
    per_repeat = seconds
    if deadline is not None:  # every runner's repeats and the square GEMMs', at least two rounds, within what is left
        per_repeat = min(seconds, max(0.0, _left(deadline)) / (max(2, repeats) * (len(runners) + len(peaks))))
    counts = {r: max(1, round(per_repeat / once)) for r, once in counts.items()}
    speed = SpeedProbe()
    with OthersCpu() as load:
        times = interleaved_rounds(runners, counts, repeats, deadline,
                                   lambda done: log(f"  {where}: time budget reached after {done} repeats"), speed)
    peak_times = timed_peaks(peaks, repeats, per_repeat, deadline, log=lambda msg: log(f"  {where}: {msg}"))
    # Ratios are paired by round (the runs of one round are adjacent in time, so a burst of
    # background load hits both sides of a ratio), then the median over rounds is taken.
    gemm_times = times.pop(gemm)
    runners.remove(gemm)
    gemm_rate, _, gemm_rates = _median_rate(gemm_times, gemm.flops)
    peak_rate, peak_label = best_gemm(gemm, gemm_rates, peak_times)
    base_times = times[gpunn]
    graphs = {r.dtype: r for r in runners if isinstance(r, GpunnRunner) and r.captured()}
    for r in runners:
        med, spread, rates = _median_rate(times[r], rows)
        res = Result(cfg.name, cfg.spec(), backend.device, r.key, r.label, getattr(r, "dtype", "float32"),
                     cfg.batch, med, spread, rates)
        res.rounds = [rows / t for t in times[r]]
        res.gflops = cfg.flops_per_sample * med / 1e9
        res.gemm_gflops = gemm_rate / 1e9
        res.fraction_of_gemm = statistics.median(
            cfg.flops_per_sample * rows / t / (gemm.flops / g) for t, g in zip(times[r], gemm_times))
        res.gemm_library = gemm.chosen()
        res.peak_gflops = peak_rate / 1e9
        res.peak_gemm = peak_label
        res.fraction_of_peak = statistics.median(cfg.flops_per_sample * rows / t / peak_rate for t in times[r])
        res.gpunn_speedup = statistics.median(t / b for t, b in zip(times[r], base_times))
        res.noisy, res.gemm_noisy, res.others_cpu = differ(spread), differ(gemm_rates), load.share
        res.machine_probe_ms, res.machine_spread = list(speed.ms), speed.spread
        if isinstance(r, SklearnRunner):
            res.dtype = r.ran_in()
        if isinstance(r, TorchRunner) and not backend.is_gpu:
            res.note = threads_words(r.threads)
        if isinstance(r, (NaiveRunner, SklearnRunner)) and not backend.is_gpu:  # in gpunn's fit's context: as it
            one = r.threads == 1 and one_thread_for(gpunn.model)
            res.note = "BLAS " + threads_words(1 if one else blas_threads() or usable_cores())
        if isinstance(r, GpunnRunner) and not backend.is_gpu:  # a small net's fit: one (gpunn.ops.fit_threads)
            res.note = "BLAS " + threads_words(1 if one_thread_for(r.model) else blas_threads() or usable_cores())
        if isinstance(r, GpunnRunner) and backend.is_gpu:
            res.graph = "graph" if r.captured() else "eager"
            trainer = r.model.graph_trainer
            if r.model.graph is not False and res.graph == "eager":  # a "graph" row that ran without one says so
                res.note = f"graph not captured: {getattr(trainer, 'reason', None)}"
            elif res.graph == "eager" and r.dtype in graphs:
                res.graph_speedup = statistics.median(t / g for t, g in zip(times[r], times[graphs[r.dtype]]))
        results.append(res)
    if profile:  # of the float32 eager step: a replayed graph is one launch, its ops cannot be timed apart
        target = next((r for r in runners if isinstance(r, GpunnRunner) and r.dtype == "float32" and not r.captured()),
                      None)
        epochs = max(1, counts[target]) if target is not None else 0
        if target is None:
            log(f"  {where}: profile run skipped (the float32 step ran as a CUDA graph; --eager adds the eager "
                "step, which is profiled)")
        elif _left(deadline) > 2 * epochs * statistics.median(times[target]):
            results[runners.index(target)].profile = profile_step(target, epochs)
        else:
            log(f"  {where}: profile run skipped (--max-seconds budget spent)")
    return results


def run(configs, backends, peers=PEERS, repeats=5, seconds=0.3, max_seconds=None, profile=True, log=print,
        variants=(), on_result=None, peak_size=None, sustain_steps=0):
    """Benchmark every configuration on every backend; returns {"setup": ..., "results": [...]}.

    ``variants``: extra gpunn runs on the GPU, as (precision, graph) pairs (see bench_config).
    ``on_result(data, new)`` is called after each configuration with the data so far (``complete``
    False) and that configuration's new results.
    ``peak_size``: the square GEMM timed as the practical peak (default 2048 on CPU, 4096 on GPU; 256
    for CI-sized runs, ``seconds`` under 0.05, where the peak is not the point).
    ``sustain_steps``: before timing, train each implementation that many more steps, so that the
    timing is of the steady state of a long run (about 1,000 steps lets Adam's moments of dead units
    decay into the subnormal range, which slows a CPU that computes subnormals; 0: time from a fresh start).
    """
    peak_size = peak_size_for(seconds, peak_size)
    threads = blas_threads() or usable_cores()
    t_start = time.perf_counter()
    deadline = None if max_seconds is None else t_start + max_seconds
    setup = setup_info(backends)
    results = []
    for cfg, backend, job_deadline in scheduled_jobs(configs, backends, deadline, log):
        log(f"  {cfg.name} [{backend.device}] {cfg.sizes} batch {cfg.batch} ...")
        with backend.use():
            new = bench_config(cfg, backend, peers, repeats, seconds, job_deadline, profile, threads, log,
                               variants, peak_size, sustain_steps)
        results.extend(new)
        if on_result is not None:
            setup["wall_seconds"] = round(time.perf_counter() - t_start, 1)
            on_result({"setup": setup, "results": [asdict(r) for r in results], "complete": False},
                      [asdict(r) for r in new])
    setup = setup_info(backends)  # again: torch's build (+cpu, +cu130) is known once it is loaded
    setup["sustain_steps"] = sustain_steps
    # The device's practical peak: the best float32 GEMM rate measured for any configuration (square products
    # through every GEMM library installed, and the same-shape ones).
    setup["peak_gemm_gflops"] = {}
    for r in results:
        if r.impl == "gpunn" and math.isfinite(r.peak_gflops):
            best = setup["peak_gemm_gflops"].get(r.backend, 0.0)
            setup["peak_gemm_gflops"][r.backend] = max(best, round(r.peak_gflops, 1))
    from ..ops import gemm

    setup["gemm_choices"] = gemm.choices_summary()
    setup["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    return {"setup": setup, "results": [asdict(r) for r in results], "complete": True}
