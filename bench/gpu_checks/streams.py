"""gpu_check hook for issue 12: data sources on the GPU (pinned side-stream copies, side-stream generation).

    python bench/gpu_checks/streams.py --device cuda --out DIR --max-seconds 35     # what gpu_check.sh runs
    python bench/gpu_checks/streams.py --device cuda --out DIR --max-seconds 240    # reaches the 10^9-row stream
    python bench/gpu_checks/streams.py --device cuda --out DIR --max-seconds 180 --parts synthetic,synthetic_long
                                        # the 10^9-row stream alone (gpu_check.sh's second GPU command)
    python bench/gpu_checks/streams.py --device cpu --out DIR                        # the plumbing, no GPU
    python bench/gpu_checks/streams.py --device cuda --out DIR --quick               # the GPU code, CPU sizes

Checks (exit 0 when the correctness checks pass and no part raised; DIR/streams.json holds the details,
rewritten after each part, so a kill keeps what finished; a part that raises is kept as its error in
streams.json's "errors" and the next parts still run, so a failure in the checks cannot cost issue 12's
throughput parts, the 10^9-row stream of gpu_check.sh's second command included):
1. a synthetic source on the device holds exactly ``datasets.make``'s rows (as a multiset), and a resume
   part-way through an epoch replays the same batches;
2. a .npy pair read through the pinned buffers and the side stream arrives intact, and a resume part-way
   replays the same batches;
3. throughput, reported against the issue's targets (>= 0.9x in memory) but not failing the hook, in this order
   while time is left. Each part's two fits (a source, and the same rows in memory) each train a warm-up epoch,
   then alternate one epoch each (A, B, A, B, ...) for up to ROUNDS rounds, as long as another round fits in the
   part's share of --max-seconds; each round's pair is kept ("rounds"), and the part's ratio is the median over
   rounds of the two rates' ratio in each ("paired by round", as gpunn bench's ratios), with its spread
   ("ratio_spread": the lowest and highest round's):
   - synthetic: a 2^23-row stream against the same task materialized, float32 32-256-256-1, batch 4096;
     with the host seconds spent issuing one window's generation (16 chunks made together, Task.chunks, as the
     source makes them), as a share of the window's training time (the stream's main-thread overhead);
   - npy_large: the issue's large configuration (1024-4096x4-1, batch 8192) on a 2^18-row .npy pair read
     in windows of 2 x 16,384 rows, against the same rows in memory, with the pinned host-to-device
     bandwidth of one window measured in the same run and the window's copy time as a share of its
     training time (the copy is hidden when the ratio is ~1 and the share is small);
   - npy: the small configuration on a 2^21-row .npy pair, against memory;
   - synthetic_long: the issue's 10^9-row stream (one epoch, about 145 s on an H200), against the synthetic
     part's in-memory fit, which trains one epoch just before it and one just after it (A, B, A): the ratio is
     the median of the epoch's rate over each of the two ("bracketed"; "before" where the epoch was stopped, or
     the one after failed). Its progress is saved into streams.json every 5 s (the rows the device has
     trained, and their rate after the first report, the start-up left out), so a kill keeps the last;
     not done 5 s (and the in-memory epoch after it) before --max-seconds, it is stopped there, and its entry is
     that partial epoch ("partial": why; bench/gpu_report.py gives it no verdict: not 10^9 rows). Skipped when
     under 4x the 2^23 rows would fit (with the seconds 10^9 rows need: gpu_check.sh's
     GPUNN_CHECK_STREAMS_SECONDS gives the hook more). With it to follow, the synthetic part runs LONG_ROUNDS
     rounds at most, leaving the epoch the time.
Each measured part says how many rows it ran, and how each of its two fits' step ran ("steps": "graph", or
"eager: <why>": the default CUDA graph falls back silently; synthetic_long's also its in-memory epochs just before
and after it, "memory_before" and "memory_after"); a ratio of a graph step and an eager one is not judged (the
line says "NOT judged", bench/gpu_report.py gives no verdict).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback

import numpy
from hook_args import hook_parser, write_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from gpunn import Callback  # noqa: E402 - from this checkout (the line above)


PARTS = ("synthetic", "npy_large", "npy", "synthetic_long")  # the throughput parts, in the order they run
LONG_ROWS = 10 ** 9  # issue 12's stream: one epoch of it
PROGRESS_SECONDS = 5.0  # the long epoch's progress is saved this often: a kill loses at most this much of it
STOP_RESERVE_SECONDS = 5.0  # it stops this long before --max-seconds, to save, print and exit inside the cap
ROUNDS = 5  # a throughput part's two fits alternate this many rounds at most (one epoch each per round)
LONG_ROUNDS = 3  # the synthetic part's rounds at most where the 10^9-row stream follows (its epoch wants the time)
# the in-memory epoch after the 10^9-row one is kept this many times the seconds the part's last took, the fit's
# set-up included (a GPU that slowed as it heated would otherwise leave it no time)
AFTER_EPOCH_FACTOR = 2.0


def host(a):
    return a.get() if hasattr(a, "get") else numpy.asarray(a)


def sorted_rows(X, Y):
    XY = numpy.hstack([host(X), host(Y)])
    return XY[numpy.lexsort(XY.T[::-1])]


def replay_ok(source, epoch, batch_size, first):
    full = [(host(a), host(b)) for a, b in source.batches(epoch, batch_size)]
    tail = [(host(a), host(b)) for a, b in source.batches(epoch, batch_size, first)]
    return len(tail) == len(full) - first and all(
        numpy.array_equal(a, c) and numpy.array_equal(b, d) for (a, b), (c, d) in zip(full[first:], tail)), full


def epoch_fitter(model_args, train, batch_size):
    """One side of a throughput part's pair: a model made once, and a function that trains it one more epoch on
    ``train`` and returns (that epoch's samples/s, how the fit's step ran: ``step_kind``). Its first call trains a
    warm-up epoch before the timed one (kernels compiled, the CUDA graph captured, pools warm). One optimizer is
    kept from call to call, as gpunn bench's runners keep theirs: the step is captured once per (model, optimizer),
    so a fresh optimizer per fit would capture it again (after an eager step) in every timed epoch."""
    import gpunn

    model = gpunn.MLP(*model_args)
    optimizer = gpunn.Adam(lr=1e-3)
    calls = []

    def epoch():
        calls.append(len(calls))
        # handle_interrupt=False: gpu_check.sh's SIGINT at the stage's cap ends the hook at once (a traceback); a
        # fit that handled it would stop part-trained and return, and what the hook compares or times next would be
        # false
        # a new shuffle per call for arrays; a source orders its rows by its own seed (fit refuses another one)
        order = {"seed": len(calls)} if train[1] is not None else {}
        history = model.fit(*train, epochs=2 if len(calls) == 1 else 1, batch_size=batch_size, optimizer=optimizer,
                            verbose=False, handle_interrupt=False, **order)
        return history["samples_per_s"][-1], step_kind(model)

    return epoch


def paired_rounds(sides, deadline, rounds=None, clock=None):
    """Alternate the epochs of ``sides`` ({name: epoch_fitter's function}, in the order they run in each round):
    up to ``rounds`` rounds (default ROUNDS), more while one more, as long as the last, would end before
    ``deadline`` (a ``clock`` time, default time.monotonic); one round at least. Returns ({name: samples/s of its
    epoch in each round}, {name: how its step ran}, {name: seconds its last call took, the fit's set-up too})."""
    rounds = ROUNDS if rounds is None else rounds
    clock = clock or time.monotonic
    rates, steps, took = {name: [] for name in sides}, {}, {}
    for _ in range(rounds):
        began = clock()
        for name, epoch in sides.items():
            t = clock()
            rate, steps[name] = epoch()
            rates[name].append(rate)
            took[name] = clock() - t
        now = clock()
        if now + (now - began) > deadline:
            break
    return rates, steps, took


def paired_entry(rates, side, base="memory"):
    """A throughput entry's rates from paired_rounds' ``rates``: each side's median samples/s, ``ratio`` (``side``
    over ``base``) paired by round, the median over rounds of the two rates' ratio in each, its ``ratio_spread``
    (the lowest and highest round's) and the ``rounds`` themselves."""
    ratios = [a / b for a, b in zip(rates[side], rates[base])]
    return {f"{side}_samples_per_s": statistics.median(rates[side]),
            f"{base}_samples_per_s": statistics.median(rates[base]), "ratio": statistics.median(ratios),
            "ratio_spread": [min(ratios), max(ratios)], "rounds": {side: rates[side], base: rates[base]},
            "statistic": "paired"}


def step_kind(model):
    """'graph' where the fit's step was captured as a CUDA graph, else 'eager: <why>'. The default (graph=None)
    falls back silently, and a stream against memory is a fair ratio only with the same step on both sides (on
    an H200 the small net's graph step ran ~10x the eager one)."""
    trainer = model.graph_trainer
    if trainer is not None and trainer.captured:
        return "graph"
    return f"eager: {trainer.reason or 'not captured' if trainer is not None else 'no graph trainer'}"


class EpochProgress(Callback):
    """A gpunn callback for a long epoch: its progress as it goes, and its end at a deadline.

    Every ``every`` seconds of ``clock`` (default PROGRESS_SECONDS) it waits for the device (``sync``) and calls
    ``report(rows, seconds, steady)``: the rows trained so far, the seconds since the epoch began, and the samples/s
    since its first report (the start-up, the graph's capture and the first windows, left out; None at the first
    report). At ``deadline`` (a ``clock`` time) it reports once more and stops the fit after that batch
    (``trainer.interrupt()``, as Ctrl-C does: the fit returns with ``history.interrupted``).
    The deadline is read at batch ends: a batch stuck in a CUDA call is left to the call's own ``timeout``."""

    def __init__(self, batch_size, rows, deadline, report, sync=lambda: None, every=None, clock=time.monotonic):
        self.batch_size, self.rows, self.deadline, self.report = batch_size, rows, deadline, report
        self.sync, self.clock = sync, clock
        self.every = PROGRESS_SECONDS if every is None else every

    def on_epoch_begin(self, trainer, epoch):
        self.start = self.clock()
        self.next, self.first = self.start + self.every, None

    def on_batch_end(self, trainer, batch):
        now = self.clock()
        if now < self.next and now < self.deadline:
            return
        self.sync()  # the rows counted are the rows the device has trained
        now = self.clock()
        rows = min((batch + 1) * self.batch_size, self.rows)
        if self.first is None:
            self.first, steady = (rows, now), None
        else:
            steady = (rows - self.first[0]) / (now - self.first[1]) if now > self.first[1] else None
        self.report(rows, now - self.start, steady)
        self.next = now + self.every
        if now >= self.deadline:
            trainer.interrupt()


def partial_entry(rows, asked, seconds, steady, why):
    """The entry of an ``asked``-row epoch before its end: ``rows`` trained in ``seconds``, at ``steady`` samples/s
    after its first progress report (else, with the start-up, ``rows / seconds``), with ``partial`` saying why it
    holds fewer rows than asked (bench/gpu_report.py gives it no verdict)."""
    rate = steady if steady is not None else rows / seconds if seconds > 0 else 0.0
    return {"rows": rows, "rows_asked": asked, "seconds": round(seconds, 1), "partial": why,
            "stream_samples_per_s": rate, "rate_leaves_out_the_start": steady is not None}


def long_epoch(model_args, rows, batch, synthetic, deadline, keep, stop_words, sync=lambda: None,
               clock=time.monotonic, every=None, before=None, before_step=None):
    """The entry of one epoch of a ``rows``-row synthetic stream (the 32-1 teacher task, as the synthetic part's),
    set against ``synthetic``'s in-memory rate (that part's entry, with its memory fit's step): ``before``, the rate
    of the in-memory epoch run just before it (then held in ``memory_before_after``, to which long_part adds the one
    after), else the entry's own. ``before_step``: how that epoch's step ran, kept in ``steps`` as ``memory_before``
    (the ratio is over that epoch, so a graph stream over an eager one is not judged).

    ``keep(entry)`` gets a partial entry at each progress report (EpochProgress; the hook saves it, so a kill keeps
    the last one); the epoch is stopped at ``deadline`` (a ``clock`` time), and then the entry is partial, its
    ``partial`` the words ``stop_words`` ("{seconds}" filled in). Whole, it has the fit's own samples/s (the start-up
    in it), as every other part."""
    import gpunn
    from gpunn import data
    from gpunn.bench.stream import peak_rss_bytes

    memory = synthetic["memory_samples_per_s"] if before is None else before
    model = gpunn.MLP(*model_args)
    last = []

    def entry(got):
        ratio = got["stream_samples_per_s"] / memory
        paired = {} if before is None else {"memory_before_after": [before], "ratio_spread": [ratio, ratio],
                                            "statistic": "before"}
        before_steps = {} if before_step is None else {"memory_before": before_step}
        return with_steps({**got, "memory_samples_per_s": memory, "ratio": ratio,
                           "peak_rss_gib": peak_rss_bytes() / 2**30, **paired},
                          memory=synthetic["steps"]["memory"], stream=step_kind(model), **before_steps)

    def progress(done, seconds, steady):
        last[:] = done, seconds, steady
        keep(entry(partial_entry(done, rows, seconds, steady, f"the last progress saved, {seconds:.0f} s into the "
                                 "epoch")))

    watch = EpochProgress(batch, rows, deadline, progress, sync, every, clock)
    # handle_interrupt=False: as epoch_fitter's (the stage's SIGINT ends the hook); the deadline stops it by interrupt()
    history = model.fit(data.synthetic("teacher", rows, 32, 1, seed=0), None, epochs=1, batch_size=batch,
                        verbose=False, lr=1e-3, handle_interrupt=False, callbacks=[watch])
    if history["samples_per_s"]:  # the whole epoch (a stop at its last batch comes after it)
        return entry({"rows": rows, "stream_samples_per_s": history["samples_per_s"][-1]})
    done, seconds, steady = last
    return entry(partial_entry(done, rows, seconds, steady, stop_words.format(seconds=f"{seconds:.0f}")))


def throughput_line(name, t):
    """The printed line of throughput entry ``t``: its rate against memory and the 0.9x target, which is not judged
    where its two fits' steps differ (one a CUDA graph, one eager) or where it is part of an epoch."""
    rate = t.get("stream_samples_per_s", t.get("npy_samples_per_s"))
    met = "met" if t["ratio"] >= 0.9 else "NOT met"
    if not t["same_step"]:
        met = "NOT judged: " + ", ".join(f"{side}'s step {kind}" for side, kind in t["steps"].items())
    elif "partial" in t:
        met = f"NOT judged: a partial epoch, {t['rows']:,} of {t['rows_asked']:,} rows ({t['partial']})"
    extra = f", pinned H2D {t['h2d_gbps_pinned']:.1f} GB/s" if "h2d_gbps_pinned" in t else ""
    if "copy_share" in t:
        extra += (f"; a window's copy {t['window_copy_ms']:.1f} ms = {100 * t['copy_share']:.1f}% of its "
                  f"training ({t['window_train_ms']:.0f} ms)")
    if "generation_host_share" in t:
        extra += f"; issuing a window's generation takes {100 * t['generation_host_share']:.1f}% of its training"
    return (f"{name}: {rate:,.0f} samples/s = {t['ratio']:.2f}x in memory ({t['memory_samples_per_s']:,.0f}"
            f"{pairing(t)}) on {t['rows']:,} rows{' (' + t['config'] + ')' if 'config' in t else ''}; target 0.9x "
            f"{met}{extra}")


def pairing(t) -> str:
    """How entry ``t``'s ratio was taken, in words (its ``statistic``; paired_entry, long_part), with its spread."""
    lo, hi = t.get("ratio_spread") or (t["ratio"], t["ratio"])
    how = t.get("statistic")
    if how == "paired":
        rounds = len(next(iter(t["rounds"].values())))
        return f"; paired over {rounds} round{'s' if rounds > 1 else ''}, {lo:.2f}-{hi:.2f}x"
    if how == "bracketed":
        return f"; against the in-memory epochs just before and after it, {lo:.2f}-{hi:.2f}x"
    return "; against the in-memory epoch just before it" if how == "before" else ""


def long_part(report, save, max_seconds, t0, model_args, batch, least_rows, synthetic, sync, memory_epoch=None,
              memory_seconds=0.0):
    """The synthetic_long part into ``report`` (saved by ``save(report)``): an epoch of LONG_ROWS rows until
    STOP_RESERVE_SECONDS before the hook's ``max_seconds`` (from ``t0``, a time.monotonic()), where at
    ``synthetic``'s stream rate at least ``least_rows`` rows fit; else ``skipped`` says what 10^9 rows need.

    ``memory_epoch`` (the synthetic part's in-memory epoch_fitter function, whose last epoch took ``memory_seconds``)
    trains one epoch just before the long one and one just after it (A, B, A): the entry's ratio is the median of the
    long epoch's rate over each ("bracketed"), its spread the two; the epoch stops early enough to leave the one
    after AFTER_EPOCH_FACTOR times ``memory_seconds``. A partial epoch, or one whose epoch after fails or is cut,
    keeps the ratio over the one before ("before"). How the two epochs' steps ran is kept in the entry's ``steps``
    (``memory_before``, ``memory_after``). Without ``memory_epoch``: over ``synthetic``'s in-memory rate."""
    rate = synthetic["stream_samples_per_s"]
    after = AFTER_EPOCH_FACTOR * memory_seconds if memory_epoch is not None else 0.0
    stop_at = max_seconds - STOP_RESERVE_SECONDS - after  # seconds into the hook
    left = stop_at - (time.monotonic() - t0) - (memory_seconds if memory_epoch is not None else 0.0)
    if rate * left < least_rows:
        need = LONG_ROWS / rate + STOP_RESERVE_SECONDS + after
        report["skipped"] = {"synthetic_long": f"10^9 rows need about {need:.0f} s; this hook had {max(left, 0):.1f} s "
                                               "left for them"}
        return
    before, before_step = memory_epoch() if memory_epoch is not None else (None, None)
    # saved before the epoch, None after it: a call killed in it (its time ran out before the hook's) leaves this and
    # the epoch's last progress saved, which bench/gpu_report.py reports as such
    report["started"] = {"synthetic_long": {"rows": LONG_ROWS, "at_s": round(time.monotonic() - t0, 1),
                                            "expected_s": round(LONG_ROWS / rate, 1), "stops_at_s": stop_at}}
    save(report)

    def keep(entry):
        report["throughput"]["synthetic_long"] = entry
        save(report)

    entry = report["throughput"]["synthetic_long"] = long_epoch(
        model_args, LONG_ROWS, batch, synthetic, t0 + stop_at, keep,
        f"stopped {{seconds}} s into the epoch by the hook's time limit (--max-seconds {max_seconds:g} less "
        f"{STOP_RESERVE_SECONDS:g} s{' and the in-memory epoch after it' if after else ''})", sync, before=before,
        before_step=before_step)
    report["started"] = {"synthetic_long": None}  # (None, not absent: it replaces an earlier call's)
    if memory_epoch is not None and "partial" not in entry:
        save(report)
        rate_after, step_after = memory_epoch()
        ratios = [entry["stream_samples_per_s"] / m for m in (before, rate_after)]
        entry.update(memory_before_after=[before, rate_after],
                     memory_samples_per_s=statistics.median([before, rate_after]),
                     ratio=statistics.median(ratios), ratio_spread=[min(ratios), max(ratios)], statistic="bracketed")
        entry.update(with_steps(entry, **entry["steps"], memory_after=step_after))
        save(report)


def with_steps(entry, **steps):
    """``entry`` with how its two fits' steps ran (``steps``: side -> step_kind) and ``same_step``: False where one
    was a CUDA graph and the other eager, whose ratio measures the step, not the data path (bench/gpu_report.py
    then gives no verdict)."""
    kinds = {kind.split(":")[0] for kind in steps.values() if kind}
    return {**entry, "steps": steps, "same_step": len(kinds) < 2}


def generation_host_seconds(backend, task, chunks=16):
    """Host seconds to issue the generation of ``chunks`` chunks of 65,536 rows (one window) as a synthetic source
    issues it (``Task.chunks``: the window's chunks made together), the device idle first: the work a stream adds to
    the training thread per window."""
    from gpunn.bench.runners import synchronize

    with backend.use():
        task.chunks(backend, [(k, 65536) for k in range(chunks)], "float32")  # compiled, constants on the device
        synchronize(backend)
        t = time.perf_counter()
        task.chunks(backend, [(k, 65536) for k in range(chunks)], "float32")
        seconds = time.perf_counter() - t
        synchronize(backend)
    return seconds


def load_on(backend, files):
    """The (X, Y) of a .npy pair, in memory on ``backend``."""
    X, Y = numpy.load(files[0]), numpy.load(files[1])
    if backend.is_gpu:
        with backend.use():
            X, Y = backend.xp.asarray(X), backend.xp.asarray(Y)
    return X, Y


def main(argv=None) -> int:
    parser = hook_parser(__doc__, max_seconds=35.0)
    parser.add_argument("--parts", default=",".join(PARTS), help="the throughput parts to run, comma-separated "
                        f"(default: all, {','.join(PARTS)}); synthetic_long needs synthetic's rates")
    parser.add_argument("--quick", action="store_true", help="the small sizes of a CPU run on any device (a test of "
                        "the code paths, e.g. on tests/fakecupy), no 10^9-row stream")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - set(PARTS) or ("synthetic_long" in parts and "synthetic" not in parts):
        parser.error(f"--parts: a comma-separated choice of {', '.join(PARTS)} (synthetic_long with synthetic)")
    t0 = time.monotonic()

    def left():
        return args.max_seconds - (time.monotonic() - t0)

    from gpunn import backend as _backend, data, datasets
    from gpunn.bench.stream import copy_bandwidth, make_npy, peak_rss_bytes

    def save(report):
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "streams.json"), {**report, "seconds": time.monotonic() - t0})

    backend = _backend.resolve(args.device)
    gpu = backend.is_gpu
    big = gpu and not args.quick  # the sizes worth timing
    long_follows = big and "synthetic_long" in parts
    memory_epoch, memory_seconds = None, 0.0  # the synthetic part's in-memory side, for the 10^9-row stream's pairs
    # each part starts only with more than this much of --max-seconds left; the rounds of a part leave the later ones
    # theirs (the 10^9-row stream takes what is left)
    gates = {"synthetic": 12, "npy_large": 25 if big else 8, "npy": 12}
    order = [p for p in PARTS if p in parts]

    def deadline(name):
        """When the part's rounds end (paired_rounds): --max-seconds less STOP_RESERVE_SECONDS and, for each later
        part, its gate and 1 s more (so that it still starts)."""
        later = order[order.index(name) + 1:]
        return t0 + args.max_seconds - STOP_RESERVE_SECONDS - sum(gates[p] + 1 for p in later if p in gates)

    report = {"device": backend.describe(), "quick": args.quick, "checks": {}, "throughput": {}, "errors": {}}

    @contextlib.contextmanager
    def part(name):
        """A part that raises fails the hook, its error kept in streams.json; the next parts still run (after a
        sticky CUDA error they fail too, each saying so). streams.json is saved after each part."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported as this part's failure
            traceback.print_exc()
            report["errors"][name] = f"{type(exc).__name__}: {exc}"[:400]
        save(report)

    rows = 3 * 65536 + 1000
    X, Y = datasets.make("teacher", rows, 8, 2, seed=5, device=backend)  # the rows of both checks
    # 1. synthetic: make's rows, exact replay
    with part("synthetic checks"):
        src = data.synthetic("teacher", rows, 8, 2, seed=5, window=2, device=backend)
        replay, full = replay_ok(src, 1, 4096, 17)
        same = numpy.array_equal(sorted_rows(numpy.concatenate([b[0] for b in full]),
                                             numpy.concatenate([b[1] for b in full])), sorted_rows(X, Y))
        report["checks"]["synthetic_rows_are_makes"] = bool(same)
        report["checks"]["synthetic_resume_replays"] = bool(replay)

    tmp = tempfile.mkdtemp(prefix="gpunn-streams-")
    try:
        # 2. npy through the pinned side-stream pipeline
        with part("npy checks"):
            Xh, Yh = host(X), host(Y)
            numpy.save(os.path.join(tmp, "x.npy"), Xh)
            numpy.save(os.path.join(tmp, "y.npy"), Yh)
            src = data.npy(os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy"), chunk_rows=20000, window=3,
                           seed=2, device=backend)
            replay, full = replay_ok(src, 0, 3000, 11)
            same = numpy.array_equal(sorted_rows(numpy.concatenate([b[0] for b in full]),
                                                 numpy.concatenate([b[1] for b in full])), sorted_rows(Xh, Yh))
            report["checks"]["npy_rows_arrive_intact"] = bool(same)
            report["checks"]["npy_resume_replays"] = bool(replay)

        # 3. throughput (reported, not judged)
        batch, sizes = 4096, [32, 32, 1] if args.quick else [32, 256, 256, 1]
        model_args = (sizes, "relu", "identity", True, "float32", backend, 0)
        n = (1 << 23) if big else (1 << 13) if args.quick else (1 << 15)  # CPU: the plumbing, fast in CI
        if "synthetic" in parts and left() > gates["synthetic"]:
            with part("synthetic"):
                sides = {"memory": epoch_fitter(model_args, datasets.make("teacher", n, 32, 1, seed=0, device=backend),
                                                batch),
                         "stream": epoch_fitter(model_args, (data.synthetic("teacher", n, 32, 1, seed=0), None), batch)}
                rates, steps, took = paired_rounds(sides, deadline("synthetic"),
                                                   LONG_ROUNDS if long_follows else ROUNDS)
                entry = report["throughput"]["synthetic"] = with_steps(
                    {"rows": n, **paired_entry(rates, "stream")}, memory=steps["memory"], stream=steps["stream"])
                if long_follows:  # its in-memory epochs, before and after it (the rows stay on the device till then)
                    memory_epoch, memory_seconds = sides["memory"], took["memory"]
                del sides
            # on the CPU generation runs on the reader thread, not the training thread. A part of its own, after the
            # rates are kept: it has never run on a GPU, and the 10^9-row stream needs those rates (it is not run
            # without them)
            if gpu and "synthetic" in report["throughput"]:
                with part("synthetic generation"):
                    chunks = 16 if big else 2  # a window of the default 16 chunks
                    issue = generation_host_seconds(backend, datasets.get_task("teacher", 32, 1, seed=0), chunks)
                    entry.update(generation_host_s_per_window=issue * 16 / chunks,
                                 generation_host_share=issue / (chunks * 65536 / entry["memory_samples_per_s"]))

        # the large configuration from a .npy pair: is the host-to-device copy hidden behind compute?
        large_rows, features, hidden, large_batch, chunk = (
            ((1 << 18), 1024, [4096] * 4, 8192, 16384) if big else
            ((1 << 11), 64, [32], 256, 256) if args.quick else ((1 << 13), 64, [64, 64], 512, 1024))
        if "npy_large" in parts and left() > gates["npy_large"]:
            with part("npy_large"):
                directory = os.path.join(tmp, "large")
                make_npy(directory, large_rows, features, 1, device=backend)
                files = (os.path.join(directory, "X.npy"), os.path.join(directory, "Y.npy"))
                large_args = ([features, *hidden, 1], "relu", "identity", True, "float32", backend, 0)
                sides = {"npy": epoch_fitter(large_args, (data.npy(*files, chunk_rows=chunk, window=2), None),
                                             large_batch),
                         "memory": epoch_fitter(large_args, load_on(backend, files), large_batch)}
                rates, steps, _ = paired_rounds(sides, deadline("npy_large"))
                del sides
                window_rows = 2 * chunk
                entry = with_steps({"rows": large_rows, "window_rows": window_rows,
                                    "config": f"{'-'.join(map(str, [features, *hidden, 1]))}, batch {large_batch}",
                                    **paired_entry(rates, "npy")}, npy=steps["npy"], memory=steps["memory"])
                memory = entry["memory_samples_per_s"]
                if gpu:
                    with backend.use():
                        gbps = copy_bandwidth(backend, window_rows, features + 1)
                    copy_s = window_rows * (features + 1) * 4 / (gbps * 1e9)
                    entry.update(h2d_gbps_pinned=gbps, window_copy_ms=1e3 * copy_s,
                                 window_train_ms=1e3 * window_rows / memory, copy_share=copy_s * memory / window_rows)
                report["throughput"]["npy_large"] = entry
                shutil.rmtree(directory, ignore_errors=True)

        if "npy" in parts and left() > gates["npy"]:
            with part("npy"):
                m = n // 4
                make_npy(tmp, m, 32, 1)
                files = (os.path.join(tmp, "X.npy"), os.path.join(tmp, "Y.npy"))
                sides = {"npy": epoch_fitter(model_args, (data.npy(*files), None), batch),
                         "memory": epoch_fitter(model_args, load_on(backend, files), batch)}
                rates, steps, _ = paired_rounds(sides, deadline("npy"))
                del sides
                entry = with_steps({"rows": m, **paired_entry(rates, "npy")}, npy=steps["npy"], memory=steps["memory"])
                if gpu:
                    with backend.use():
                        entry["h2d_gbps_pinned"] = copy_bandwidth(backend, 16 * 65536 if big else 8192, 33)
                report["throughput"]["npy"] = entry

        # the issue's 10^9-row stream, until the hook's time is up (GPU only: CI's dry run stays short)
        synthetic = report["throughput"].get("synthetic")
        if big and synthetic and "synthetic_long" in parts:
            with part("synthetic_long"):
                long_part(report, save, args.max_seconds, t0, model_args, batch, 4 * n, synthetic,
                          lambda: backend.xp.cuda.Device().synchronize(),  # (inside the fit: the model's device)
                          memory_epoch, memory_seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report["seconds"] = time.monotonic() - t0
    save(report)
    ok = all(report["checks"].values()) and not report["errors"]
    for name, passed in report["checks"].items():
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    for name, error in report["errors"].items():
        print(f"FAIL {name}: {error}")
    for name, t in report["throughput"].items():
        print(throughput_line(name, t))
    for name, why in report.get("skipped", {}).items():
        print(f"{name}: skipped: {why}")
    print(f"streams: {'pass' if ok else 'FAIL'} in {report['seconds']:.1f}s on {report['device']}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
