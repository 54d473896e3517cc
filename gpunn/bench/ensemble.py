"""Ensemble benchmarks: K networks of one shape trained as one :class:`gpunn.Ensemble`, against the peers.

For a configuration with ``members`` = K > 1 (``small-x64``, or ``gpunn bench --ensemble K``), on the
same data and batches of ``batch`` rows, Adam, float32, interleaved rounds as in gpunn.bench.runners:
- gpunn: ``Ensemble(sizes, K).fit`` (one step for all members), with one optimizer for the K members kept from
  fit to fit: on a GPU by default (graph=None) its step is a CUDA graph, captured once, in the warm-up, and
  with ``variants`` (``gpunn bench --eager``) an eager row (graph=False) beside it;
- ``sequential``: K ``gpunn.MLP`` fits one after another (what a user does without an ensemble), each
  model with an Adam of its own kept from fit to fit (on a GPU its step's CUDA graph is captured once, in
  the warm-up, as a user's run of many epochs captures it once);
- ``torch-vmap``: PyTorch's recipe, the K models stacked by ``torch.func.stack_module_state`` and
  stepped through ``vmap(functional_call)`` with one ``torch.optim.Adam`` over the stacked parameters;
- ``torch-loop``: K PyTorch models and K Adam optimizers stepped in a Python loop.
Throughput is member-samples/s (K x rows per epoch / epoch time), and as a fraction of the rate of
the same-shape batched GEMM (K products of batch x widest x widest) measured in the same rounds: in
each round the fastest of the ways the ensemble's step may run it (gemm_strategies), or "n/a" with
the reason when none could be timed well (gemm_baseline).
"""
from __future__ import annotations

import math
import statistics
import time

import numpy

from .. import datasets
from .configs import Config
from .system import OthersCpu, SpeedProbe, threads_words
from .runners import (Result, Runner, _median_rate, best_gemm, differ, peak_runners, peak_size_for, profile_step,
                      scheduled_jobs, skipped_because, synchronize, timed_peaks, timed_rounds, torch_device)

ENSEMBLE_PEERS = ("sequential", "torch-vmap", "torch-loop")


def ensemble_rows(cfg: Config, backend) -> int:
    """Rows per epoch: the single-model budget (FLOPs, and 65,536 rows) shared by the K members, at
    least 8 whole batches."""
    budget = (2.0e12 if backend.is_gpu else 1.2e11) / cfg.members
    rows = min(65536 / cfg.members, budget / cfg.flops_per_sample)
    return max(8, min(512, math.ceil(rows / cfg.batch))) * cfg.batch


GEMM_MIN_REPEAT_SECONDS = 0.05  # each baseline repeat at least this long (--quick asks 0.02 s of the rest)
GEMM_MIN_TIMED_SECONDS = 0.01  # a baseline whose repeats came out shorter than this is not used ("n/a")

STACKED, STACKED_STEP_BLAS, GROUPS = "stacked", "stacked, step's BLAS threads", "member groups"


def gemm_strategies(backend, member_ops, members) -> list:
    """The ways an Ensemble's training step may run its batched products on this backend, each a candidate
    for the "% of GEMM" baseline. The GPU: cuBLAS's batched product. The CPU: one stacked numpy.matmul at
    BLAS's own threads (GPUNN_ENSEMBLE_BLAS_THREADS=0, or outside a step), the same under the step's BLAS
    thread limit (gpunn.ops.fit_threads.member_blas_threads: the step with one member group), and the member
    groups on threads of their own (the step's default with more than one core)."""
    if backend.is_gpu:
        return ["cuBLAS batched"]
    out = [STACKED, STACKED_STEP_BLAS]
    if member_ops.member_groups(members) is not None:
        out.append(GROUPS)
    return out


class BatchedGemmRunner(Runner):
    """K products (batch x widest) @ (widest x widest) run one way an ensemble's step may run them
    (``strategy``, from gemm_strategies). One "epoch" is ``inner`` batched products (one per step of
    the ensemble's epoch), with the per-call costs paid once per call as the ensemble's fit pays them
    (the BLAS thread limit's enter and exit, 0.6-1.6 ms through threadpoolctl here; the member groups'
    hand-off to their threads): the ideal of that strategy, so the best of them bounds the step's products."""

    key = "gemm"

    def __init__(self, backend, dtype, members, m, k, n, strategy=STACKED, inner=1, member_ops=None):
        from ..ops import ensemble_ops_for, ops_for

        xp, self.backend = backend.xp, backend
        self.member_ops = member_ops or ensemble_ops_for(ops_for(backend))
        self.strategy, self.inner = strategy, max(1, int(inner))
        self.groups = self.member_ops.member_groups(members) if strategy == GROUPS else None
        if strategy == GROUPS and self.groups is None:
            raise ValueError("member groups need more than one thread and one member")
        rng = numpy.random.default_rng(0)
        self.a = xp.asarray(rng.standard_normal((members, m, k)), dtype=dtype)
        self.b = xp.asarray(rng.standard_normal((members, k, n)), dtype=dtype)
        self.out = xp.empty((members, m, n), dtype)
        self.flops = 2.0 * members * m * k * n * self.inner  # per epoch
        self.shape = f"{members}x({m}x{k}x{n})"
        self.key = f"gemm {strategy}"
        self.label = f"batched GEMM {self.shape} {dtype}, {strategy}"

    def chosen(self) -> str:
        """What ran the products (for the notes)."""
        if self.strategy == GROUPS:
            return f"numpy, {len(self.groups)} member groups"
        return self.strategy if self.backend.is_gpu else f"numpy {self.strategy}"

    def epochs(self, n):
        from ..ops.fit_threads import member_blas_threads

        total, a, b, out = n * self.inner, self.a, self.b, self.out
        if self.strategy == GROUPS:
            def group(sl):
                ag, bg, og = a[sl], b[sl], out[sl]
                for _ in range(total):
                    numpy.matmul(ag, bg, out=og)

            with member_blas_threads(self.backend.xp):
                self.member_ops.run_groups(group, self.groups)
        elif self.strategy == STACKED_STEP_BLAS:
            with member_blas_threads(self.backend.xp):
                for _ in range(total):
                    self.member_ops.matmul(a, b, out=out)
        else:
            matmul = self.member_ops.matmul if self.backend.is_gpu else self.backend.xp.matmul
            for _ in range(total):
                matmul(a, b, out=out)
        synchronize(self.backend)


def gemm_baseline(gemm_times: dict, counts: dict, min_timed=GEMM_MIN_TIMED_SECONDS) -> tuple:
    """The "% of GEMM" base from the strategies' timings (runner -> seconds per epoch of each round;
    ``counts``: runner -> epochs per repeat): (the best rate of each round, the runner fastest in most
    rounds, "") or (None, None, why not) when every strategy's repeats were under ``min_timed`` seconds,
    too short to time against their per-call costs."""
    usable = {g: t for g, t in gemm_times.items() if counts[g] * statistics.median(t) >= min_timed}
    if not usable:
        shortest = min(counts[g] * statistics.median(t) for g, t in gemm_times.items()) if gemm_times else 0.0
        return None, None, (f"its repeats took {1e3 * shortest:.1f} ms, under the {1e3 * min_timed:.0f} ms "
                            "needed to time them")
    rounds = min(len(t) for t in usable.values())
    rates = [{g: g.flops / t[i] for g, t in usable.items()} for i in range(rounds)]
    winners = [max(r, key=r.get) for r in rates]
    return [max(r.values()) for r in rates], max(usable, key=winners.count), ""


class EnsembleRunner(Runner):
    key = "gpunn"

    def __init__(self, cfg, backend, X, Y, lr=1e-3, graph=None, precision="float32"):
        from ..ensemble import Ensemble
        from ..training.ensemble import EnsembleOptimizer

        self.backend, self.X, self.Y, self.batch = backend, X, Y, cfg.batch
        self.model = Ensemble(cfg.sizes, cfg.members, activation="relu", dtype="float32", device=backend, seed=0,
                              graph=graph, precision=precision)
        # one optimizer for the K members kept from fit to fit, as GpunnRunner keeps its Adam and the sequential peer
        # one per model: a graph row's step is captured once per (ensemble, optimizer), so a fresh optimizer per fit
        # captured it again (after an eager step) in every timed repeat, a cost the torch peers' timings do not hold
        self.optimizer = EnsembleOptimizer("adam", cfg.members, self.model.xp, lr=lr)
        # on a GPU the default (graph=None) and graph=True are meant to run as a CUDA graph: a "graph" row (key
        # gpunn-graph); graph=False an "eager" one (key gpunn); on the CPU there is no graph: gpunn, no word
        self._seed, self.precision = 0, precision
        self.graph = backend.is_gpu and graph is not False
        mode = ("graph" if self.graph else "eager") if backend.is_gpu else ""
        extra = " ".join(x for x in (mode, "" if precision == "float32" else precision) if x)
        self.label = f"gpunn Ensemble K={cfg.members} ({backend.device})" + (f" {extra}" if extra else "")
        self.key = "-".join(["gpunn"] + (["graph"] if self.graph else []) +
                            ([precision] if precision != "float32" else []))

    def captured(self) -> bool:
        """Whether the steps ran as a replayed CUDA graph."""
        trainer = self.model.graph_trainer
        return trainer is not None and trainer.active and trainer.captured

    def graph_note(self) -> str:
        """For a graph row: "" when the step ran as a replayed CUDA graph, else why not."""
        return "" if self.captured() else f", graph not captured: {getattr(self.model.graph_trainer, 'reason', None)}"

    def epochs(self, n):
        self._seed += 1
        self.fit(self.model, self.X, self.Y, epochs=n, batch_size=self.batch, optimizer=self.optimizer, seed=self._seed)
        synchronize(self.backend)


class SequentialRunner(Runner):
    key = "sequential"

    def __init__(self, cfg, backend, X, Y, lr=1e-3):
        from ..model import MLP
        from ..optim import Adam

        self.backend, self.X, self.Y, self.batch = backend, X, Y, cfg.batch
        self.models = [MLP(cfg.sizes, activation="relu", dtype="float32", device=backend, seed=k)
                       for k in range(cfg.members)]
        # each model's own Adam, kept from fit to fit as GpunnRunner keeps its one: on a GPU a model's step is
        # captured as a CUDA graph once per (model, optimizer), so a fresh optimizer per fit ("adam") captured all
        # K steps again in every timed repeat (and ran each model's first step eagerly), a cost no other row's
        # timing holds; now they are captured in the warm-up and replayed in the rounds
        self.optimizers = [Adam(lr=lr) for _ in self.models]
        self.label = f"{cfg.members} sequential gpunn fits ({backend.device})"
        self._seed = 0

    def epochs(self, n):
        self._seed += 1
        for model, optimizer in zip(self.models, self.optimizers):
            self.fit(model, self.X, self.Y, epochs=n, batch_size=self.batch, optimizer=optimizer, seed=self._seed)
        synchronize(self.backend)


class _TorchBase(Runner):
    def __init__(self, cfg, backend, X, Y, threads=None):
        self.torch, self.device = torch_device(backend, threads)
        torch = self.torch
        host = backend.to_host
        self.X = torch.as_tensor(numpy.ascontiguousarray(host(X)), device=self.device)
        self.Y = torch.as_tensor(numpy.ascontiguousarray(host(Y)), device=self.device)
        self.batch, self.members, self.sizes = cfg.batch, cfg.members, cfg.sizes
        self.threads = torch.get_num_threads()

    def make_net(self):
        torch, layers = self.torch, []
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(self.sizes) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers).to(self.device)

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def batches(self, n):
        """n epochs of shuffled (xb, yb) batches, then a device synchronisation."""
        m, b = self.X.shape[0], self.batch
        for _ in range(n):
            perm = self.torch.randperm(m, device=self.device)
            for start in range(0, m, b):
                idx = perm[start:start + b]
                yield self.X[idx], self.Y[idx]
        self._sync()


class TorchVmapRunner(_TorchBase):
    """torch.func.stack_module_state + vmap(functional_call), one Adam over the stacked parameters."""

    key = "torch-vmap"

    def __init__(self, cfg, backend, X, Y, lr=1e-3, threads=None):
        super().__init__(cfg, backend, X, Y, threads)
        import copy

        from torch.func import functional_call, stack_module_state, vmap

        torch = self.torch
        nets = [self.make_net() for _ in range(cfg.members)]
        self.params, self.buffers = stack_module_state(nets)
        base = copy.deepcopy(nets[0]).to("meta")

        def one(params, buffers, x):
            return functional_call(base, (params, buffers), (x,))

        self.forward = vmap(one, in_dims=(0, 0, None))  # every member reads the same batch
        self.opt = torch.optim.Adam(list(self.params.values()), lr=lr)
        self.label = f"torch {torch.__version__} vmap ensemble K={cfg.members} ({self.device})"

    def epochs(self, n):
        for xb, yb in self.batches(n):
            self.opt.zero_grad(set_to_none=True)
            out = self.forward(self.params, self.buffers, xb)  # (K, b, outputs)
            # the sum over members of each member's (1/b)||A - Y||^2: member k's gradient is its own
            loss = ((out - yb) ** 2).sum() / xb.shape[0]
            loss.backward()
            self.opt.step()


class TorchLoopRunner(_TorchBase):
    """K PyTorch models with K Adam optimizers, stepped one after another on each batch."""

    key = "torch-loop"

    def __init__(self, cfg, backend, X, Y, lr=1e-3, threads=None):
        super().__init__(cfg, backend, X, Y, threads)
        torch = self.torch
        self.nets = [self.make_net() for _ in range(cfg.members)]
        self.opts = [torch.optim.Adam(net.parameters(), lr=lr) for net in self.nets]
        self.label = f"torch {torch.__version__} loop of K={cfg.members} models ({self.device})"

    def epochs(self, n):
        F = self.torch.nn.functional
        for xb, yb in self.batches(n):
            for net, opt in zip(self.nets, self.opts):
                opt.zero_grad(set_to_none=True)
                loss = F.mse_loss(net(xb), yb, reduction="sum") / xb.shape[0]
                loss.backward()
                opt.step()


_PEER_CLASSES = {"sequential": SequentialRunner, "torch-vmap": TorchVmapRunner, "torch-loop": TorchLoopRunner}


def bench_ensemble_config(cfg: Config, backend, peers=ENSEMBLE_PEERS, repeats=5, seconds=0.3, deadline=None,
                          threads=None, log=print, profile=True, graph=None, variants=()) -> list:
    """The ensemble and its peers on one configuration and backend, interleaved; Results (gpunn first).
    The first row is the float32 ensemble with ``graph`` (default None, what users get: on a GPU its step is
    a CUDA graph; False: the eager step). ``variants``: more ensemble rows, as (precision, graph) pairs (GPU
    only, as gpunn.bench.runners.bench_config's), e.g. ("float32", False) for the eager step beside the
    default row and ("bf16", None) for bf16 as the default runs it (a CUDA graph)."""
    rows = ensemble_rows(cfg, backend)
    X, Y = datasets.make("teacher", rows, cfg.inputs, cfg.outputs, noise=0.1, seed=0, device=backend, dtype="float32")
    gpunn = EnsembleRunner(cfg, backend, X, Y, graph=graph)
    # the baseline: each way the step may run its batched products, one product per step of the epoch
    gemms = [BatchedGemmRunner(backend, "float32", cfg.members, *cfg.gemm_shape, strategy=s, inner=rows // cfg.batch,
                               member_ops=gpunn.model.member_ops)
             for s in gemm_strategies(backend, gpunn.model.member_ops, cfg.members)]
    # square GEMMs, as the single-model rows use: timed in rounds of their own, after the rest (timed_peaks)
    peaks = peak_runners(backend, "float32", peak_size_for(seconds))
    runners = [*gemms, gpunn]
    for precision, mode in dict.fromkeys(variants):
        if backend.is_gpu:
            runners.append(EnsembleRunner(cfg, backend, X, Y, graph=mode, precision=precision))
        else:
            log(f"  {cfg.name} [{backend.device}]: gpunn Ensemble {precision}{' eager' if mode is False else ''} "
                "skipped (GPU only)")
    for key in peers:
        try:
            kwargs = {"threads": threads} if key.startswith("torch") else {}
            runners.append(_PEER_CLASSES[key](cfg, backend, X, Y, **kwargs))
        except ImportError as exc:
            log(f"  {cfg.name} [{backend.device}]: {key} skipped ({skipped_because(exc)})")
    speed = SpeedProbe()
    with OthersCpu() as load:  # (the warm-ups' time too: a few epochs against the rounds')
        counts, times = timed_rounds(runners, repeats, seconds, deadline,
                                     lambda n: log(f"  {cfg.name} [{backend.device}]: time budget reached after {n} "
                                                   "repeats"),
                                     min_seconds={g: GEMM_MIN_REPEAT_SECONDS for g in gemms}, between=speed)
    peak_times = timed_peaks(peaks, repeats, seconds, deadline, rounds=timed_rounds,
                             log=lambda msg: log(f"  {cfg.name} [{backend.device}]: {msg}"))
    gemm_times = {g: times.pop(g) for g in gemms}
    for g in gemms:
        runners.remove(g)
    best, top, why = gemm_baseline(gemm_times, counts)
    if best is None:
        log(f"  {cfg.name} [{backend.device}]: % of GEMM n/a ({why})")
        top = gemms[0]
    peak_rate, peak_label = best_gemm(top, best or [0.0], peak_times)  # an n/a baseline's rate 0: never the peak
    member_samples = cfg.members * rows
    flops_per_member_sample = cfg.flops_per_sample
    # the same for every row: the GEMM baseline's median, each way of running the batched product, the peak
    baseline_gflops = statistics.median(best) / 1e9 if best is not None else None
    strategy_gflops = {g.chosen(): round(_median_rate(t, g.flops)[0] / 1e9, 1) for g, t in gemm_times.items()}
    # as gpunn bench's single-model rows (runners.bench_config): on a GPU each ensemble row says how its step ran, and
    # an eager row the same precision's graph row's speed-up over it, paired by round
    graphs = {r.precision: r for r in runners if isinstance(r, EnsembleRunner) and r.graph and r.captured()}
    results = []
    for r in runners:
        med, spread, rates = _median_rate(times[r], member_samples)
        res = Result(cfg.name, cfg.spec(), backend.device, r.key, r.label,
                     getattr(r, "precision", "float32"), cfg.batch, med, spread, rates)
        res.rounds = [member_samples / t for t in times[r]]
        res.gflops = flops_per_member_sample * med / 1e9
        if best is not None:
            res.gemm_gflops = baseline_gflops
            res.fraction_of_gemm = statistics.median(
                flops_per_member_sample * member_samples / t / g for t, g in zip(times[r], best))
            res.gemm_library = top.chosen()
        res.gemm_na = why
        res.gemm_strategies = dict(strategy_gflops)
        res.peak_gflops = peak_rate / 1e9
        res.peak_gemm = peak_label
        # (no base where the baseline was n/a and the square products were not timed: the budget was spent)
        res.fraction_of_peak = statistics.median(flops_per_member_sample * member_samples / t / peak_rate
                                                 for t in times[r]) if peak_rate > 0 else float("nan")
        res.gpunn_speedup = statistics.median(t / b for t, b in zip(times[r], times[gpunn]))
        res.noisy, res.gemm_noisy, res.others_cpu = differ(spread), best is not None and differ(best), load.share
        res.machine_probe_ms, res.machine_spread = list(speed.ms), speed.spread
        res.note = "member-samples/s" + (f", {threads_words(r.threads)}" if hasattr(r, "threads") else "")
        if isinstance(r, EnsembleRunner) and r.graph:
            res.note += r.graph_note()
        if isinstance(r, EnsembleRunner) and backend.is_gpu:
            res.graph = "graph" if r.captured() else "eager"
            if not r.graph and r.precision in graphs:
                res.graph_speedup = statistics.median(t / g for t, g in zip(times[r], times[graphs[r.precision]]))
        results.append(res)
    if profile:
        # of the float32 eager step, as the single-model rows': a replayed graph is one launch, its ops cannot be
        # timed apart
        target = next((r for r in runners if isinstance(r, EnsembleRunner) and r.precision == "float32"
                       and not r.captured()), None)
        if target is None:
            log(f"  {cfg.name} [{backend.device}]: profile run skipped (the float32 step ran as a CUDA graph; --eager "
                "adds the eager step, which is profiled)")
        elif deadline is None or time.perf_counter() < deadline:
            results[runners.index(target)].profile = profile_step(target, 1, ops=target.model.member_ops)
        else:  # said, as the single-model rows' (runners.bench_config): the row's step column is left empty
            log(f"  {cfg.name} [{backend.device}]: profile run skipped (--max-seconds budget spent)")
    return results


def run_ensembles(configs, backends, peers=ENSEMBLE_PEERS, repeats=5, seconds=0.3, max_seconds=None, threads=None,
                  log=print, profile=True, graph=None, variants=()) -> list:
    """bench_ensemble_config for every ensemble configuration and backend; a list of Result dicts (``graph``: the
    first ensemble row's, default None: a CUDA graph on GPUs; ``variants``: more ensemble rows on GPUs, as
    (precision, graph) pairs)."""
    from dataclasses import asdict

    from ..ops.cpu import usable_cores
    from .system import blas_threads

    threads = threads or blas_threads() or usable_cores()
    t_start = time.perf_counter()
    deadline = None if max_seconds is None else t_start + max_seconds
    results = []
    for cfg, backend, job_deadline in scheduled_jobs(configs, backends, deadline, log):
        log(f"  {cfg.name} [{backend.device}] {cfg.members} x {cfg.sizes} batch {cfg.batch} ...")
        with backend.use():
            results.extend(asdict(r) for r in bench_ensemble_config(cfg, backend, peers, repeats, seconds,
                                                                    job_deadline, threads, log, profile, graph,
                                                                    variants))
    return results
