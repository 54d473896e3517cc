"""Data-parallel throughput on the CPU: ``mpiexec -n P python bench/dist_bench.py CONFIG BATCH [STEPS [source]]``;
``mpiexec -n P python bench/dist_bench.py allreduce`` times the MPI all-reduce alone, and
``mpiexec -n P python bench/dist_bench.py overlap`` whether it can hide behind compute (see overlap()).

CONFIG is a ``gpunn bench`` configuration (medium, wide, ...; ``small-x16``: a gpunn.Ensemble of 16 small
nets); BATCH the per-rank batch; an epoch has STEPS steps (default 60) of P x BATCH rows, from in-memory
arrays (made before the timed fit: every rank makes them all and trains its shard), or with ``source`` from a
``gpunn.data.synthetic`` teacher stream (each rank generating its shard as it trains). Run without mpiexec
(P = 1) it trains the plain loop (no hook): the baseline, which is a separate run, so the script prints no
ratio; alternate the runs you compare (bench/RESULTS.md). Each step is timed on its own (the CPU path is
synchronous), and so is each gradient all-reduce (including any wait for the slower rank); rank 0 prints one
JSON line with the setup (ranks, batches, steps, members, dtype, optimizer, the thread variables set, the BLAS
threads during the fit, the MPI library, the load), the minimum and the median of both over 3 epochs after a
warm-up epoch (the MPI library and the all-reduce null for one process, which has neither), and the CPU
seconds all ranks spent (each rank's too; samples per CPU-second). Samples are rows; an ensemble's
member-samples are ``members`` times as many. On a shared machine the minimum step and the samples per
CPU-second are the numbers to read: the first is the step when neither rank was descheduled, the second does
not count the time the scheduler gave to others (but counts MPI's and BLAS's busy-waiting). Threads: as the
environment sets them (OPENBLAS_NUM_THREADS, GPUNN_CPU_THREADS, ...), else a data-parallel fit gives each rank
its share of the cores (README, "Cores per rank"); bench/RESULTS.md has the commands. Under mpiexec the ranks
compare their arguments before anything else: ranks given different ones (an MPMD launch) stop, status 2; then
they agree on who refused its arguments or a GPUNN_ variable: a refusal every rank meets is said once, by rank 0,
and one rank's ends the job with its line. Every run of allreduce and overlap (raw mpi4py calls) is timed by gpunn's
watchdog: a rank that stops mid-measurement ends the job after GPUNN_DIST_TIMEOUT seconds, as in a fit (a rank left
waiting says where; the watchdog times a run whole, so a rank hung inside one while running may say it of itself).
"""
import json
import os
import sys
import time

import numpy

import gpunn
from script_args import Refused, prog as _prog, refusal_line as _line, refuse, whole

SETUP_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GPUNN_CPU_THREADS",
                   "OPENBLAS_CORETYPE")
EPOCHS = 3  # timed, after one warm-up epoch


class StepTimes(gpunn.Callback):
    """Times each step and, data parallel, each gradient all-reduce; notes the setup the fit ran with (the BLAS
    threads while it trains: a data-parallel fit sets each rank's share; the MPI library, None without one)."""

    def __init__(self):
        self.steps, self.allreduce, self.setup = [], [], {}
        self._restore = None

    def on_train_begin(self, trainer):
        from gpunn.bench.system import blas_threads

        self.steps.clear()
        self.allreduce.clear()
        self.setup = {"blas_threads_in_fit": blas_threads(), "mpi": None}  # one process: no MPI library
        hook = trainer.hook
        if hook is not None:  # time each all-reduce call, until on_train_end puts the comm's own back
            comm = hook.comm
            inner = comm.allreduce_sum_
            self._restore = comm, inner

            def timed(array):
                t = time.perf_counter()
                inner(array)
                self.allreduce.append(time.perf_counter() - t)
            comm.allreduce_sum_ = timed
            self.setup["mpi"] = comm.describe()
        self.t = time.perf_counter()

    def on_batch_end(self, trainer, batch):
        now = time.perf_counter()
        self.steps.append(now - self.t)
        self.t = now

    def on_epoch_end(self, trainer, epoch, logs):
        self.t = time.perf_counter()  # leave the epoch-end work out of the next step

    def on_train_end(self, trainer):
        if self._restore is not None:  # the next fit's comm is this one (world()): a wrapper left would time twice
            comm, inner = self._restore
            comm.allreduce_sum_ = inner
            self._restore = None


def timings(steps, allreduce, rows_per_step) -> dict:
    """The line's timing fields from the durations (seconds) of each step and each all-reduce (none: one
    process); rows_per_step is the global batch."""
    step = numpy.array(steps)
    ar = numpy.array(allreduce) if len(allreduce) else None
    return {"steps_timed": len(step), "allreduce_timed": 0 if ar is None else len(ar),
            "step_ms_min": step.min() * 1e3, "step_ms_median": float(numpy.median(step)) * 1e3,
            "samples_per_s_at_min": rows_per_step / step.min(),  # rows: times the members for member-samples
            "allreduce_ms_min": None if ar is None else ar.min() * 1e3,
            "allreduce_ms_median": None if ar is None else float(numpy.median(ar)) * 1e3}


def measure(name, batch, steps=60, streamed=False):
    """The result rank 0 prints: the fit of ``name`` at ``batch`` rows per rank, ``steps`` steps an epoch,
    ``EPOCHS`` epochs after a warm-up epoch, on arrays (or a synthetic source if ``streamed``)."""
    import gpunn.data
    from gpunn.bench.configs import parse_config
    from gpunn.distributed import launched_size

    config = parse_config(name)
    ranks = launched_size()
    rows = steps * batch * ranks

    def data(n):  # (X, Y), or the stream of the same task as a source
        if streamed:
            return (gpunn.data.synthetic("teacher", rows=n, n_features=config.inputs, n_outputs=config.outputs,
                                         seed=0, device="cpu"),)
        X, Y = gpunn.datasets.make("teacher", n, config.inputs, config.outputs, device="cpu", seed=0)
        return X, Y

    probe = StepTimes()
    if config.members > 1:
        model = gpunn.Ensemble(config.sizes, config.members, device="cpu", seed=0)
    else:
        model = gpunn.MLP(config.sizes, device="cpu", seed=0)
    kw = dict(batch_size=batch, optimizer="adam", verbose=False, callbacks=[probe], distributed=ranks > 1)
    model.fit(*data(batch * ranks * 5), epochs=1, **kw)  # warm-up: JIT, workspaces
    timed_data = data(rows)  # made before the CPU clock starts (a source generates its rows as it trains)
    cpu0 = time.process_time()
    history = model.fit(*timed_data, epochs=EPOCHS, **kw)
    cpu = [time.process_time() - cpu0]  # this process's CPU seconds, every thread (BLAS's spinning ones too)
    if ranks > 1:
        from gpunn.distributed import world

        cpu = [float(c) for c in world().allgather(cpu[0])]
    epoch_rows_per_s = numpy.array(history["samples_per_s"]) / config.members  # an ensemble's are member-samples
    return {"config": name, "data": "source" if streamed else "arrays", "ranks": ranks, "batch_per_rank": batch,
            "global_batch": batch * ranks, "steps_per_epoch": steps, "epochs": EPOCHS, "members": config.members,
            "params": model.params.size, "dtype": str(model.params.dtype), "optimizer": "adam",
            "threads": {k: os.environ.get(k) for k in SETUP_VARIABLES}, **probe.setup,
            **timings(probe.steps, probe.allreduce, batch * ranks),
            "samples_per_s_epoch_median": float(numpy.median(epoch_rows_per_s)),  # rows too
            "cpu_s": round(sum(cpu), 3), "cpu_s_per_rank": [round(c, 3) for c in cpu],
            "samples_per_cpu_s": EPOCHS * rows / sum(cpu) if sum(cpu) else None, "load": round(os.getloadavg()[0], 1)}


def _stop(line):
    sys.stderr.write(line + "\n")
    raise SystemExit(2)


def same_arguments_on_every_rank(argv):
    """Under mpiexec with several processes, before anything else: the ranks compare their arguments in one gather
    (gpunn.distributed.comm.same_command_on_every_rank). A rank of an MPMD launch given others (``--help``, which
    prints the docstring and leaves; an argument refused on that rank alone) left the rest waiting for it in
    MPI_Init forever; every rank now stops with status 2, rank 0 saying which differ. Nothing without a launcher."""
    from gpunn.distributed import ConfigMismatch, DistributedError, launched_rank
    from gpunn.distributed.comm import same_command_on_every_rank

    try:
        same_command_on_every_rank(" ".join(argv) or "(no arguments)", what="arguments")
    except ConfigMismatch as exc:
        if launched_rank() != 0:  # rank 0 says it, once
            raise SystemExit(2) from None
        _stop(_line(" ".join(str(exc).split())))
    except DistributedError as exc:  # a launcher's variable or GPUNN_DIST_TIMEOUT it cannot read, before the ranks
        # had a communicator to agree over: said by this rank, which ends the job (MPI_Abort), where the others waited
        # for it in the check until their watchdog (GPUNN_DIST_TIMEOUT, 300 s)
        from gpunn.distributed.comm import end_launched_job, launched_size, rank_words

        line = _line(" ".join(str(exc).split()))
        try:
            prog, _, said = line.partition(": ")
            line = f"{prog} [{rank_words(launched_rank(), launched_size())}]: {said}"
        except DistributedError:  # the launcher's variables themselves: no rank to name
            pass
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        end_launched_job(2)
        raise SystemExit(2) from None


def checked(argv) -> tuple:
    """(the part to run: allreduce, overlap or None for measure(); measure's arguments, or None) from the command
    line ``argv``, then the GPUNN_ variables checked, as gpunn's commands order them: Refused where either is one the
    script cannot run."""
    from gpunn.cli.common import bad_settings_line

    alone = {"allreduce": allreduce, "overlap": overlap}.get(argv[0] if argv else None)
    if alone is not None and len(argv) > 1:
        refuse(f"{argv[0]} takes no other argument, got {' '.join(argv[1:])}")
    args = None if alone else arguments(argv)
    line = bad_settings_line(_prog())
    if line is not None:
        raise Refused(line)
    return alone, args


def agreed(argv) -> tuple:
    """checked(argv), a refusal said in one line and status 2. Under mpiexec the ranks agree on who refused in one
    gather, their first collective after the arguments' check (gpunn.distributed.comm.agreeing_on_failure): where
    every rank refuses (the same arguments), rank 0 says the line they share once (each rank its own where they
    differ), and where only some do (a GPUNN_ variable set on one rank: mpiexec ... : -env GPUNN_DEVICE x ...),
    they end the job with their line, naming the rank. Each rank said its line and left, and where one rank alone
    refused the others waited for it in their first barrier forever (allreduce, overlap) or until the watchdog
    (GPUNN_DIST_TIMEOUT) in measure()'s fit."""
    from gpunn.distributed.comm import agreeing_on_failure, rank_words, report_failures_with, started_world

    control = started_world()  # (same_arguments_on_every_rank started it under a launcher)
    if control is None:
        try:
            return checked(argv)
        except Refused as exc:
            _stop(exc.line)

    def with_rank(line):
        prog, _, said = line.partition(": ")
        return f"{prog} [{rank_words(control.rank, control.size)}]: {said}"

    def report(exc):  # the line of a rank that refused alone, before it ends the job
        if isinstance(exc, Refused):
            return 2, with_rank(exc.line)
        return 1, with_rank(f"{_prog()}: internal error: {type(exc).__name__}: {exc}")

    report_failures_with(report, _prog())
    try:
        return agreeing_on_failure(control, lambda: checked(argv), "the check of the arguments and settings",
                                   gather=False)
    except Exception as exc:  # every rank failed, each raising its own (one rank's ended the job in the agreement)
        line = exc.line if isinstance(exc, Refused) else None
        lines = control.allgather(line, label="the comparison of the ranks' refusals")  # every rank, then
        if line is None:
            raise
        if len(set(lines)) > 1:
            _stop(with_rank(exc.line))
        if control.rank == 0:
            _stop(exc.line)
        raise SystemExit(2) from None


def arguments(argv) -> tuple:
    """(CONFIG, BATCH, STEPS, whether from a source) from the arguments ``argv``: CONFIG BATCH [STEPS [source]]."""
    from gpunn.bench.configs import parse_config

    if not 2 <= len(argv) <= 4:
        refuse(f"takes CONFIG BATCH [STEPS [source]], allreduce or overlap; got {len(argv)} argument(s)")
    try:
        parse_config(argv[0])
    except ValueError as exc:
        refuse(str(exc))
    if len(argv) == 4 and argv[3] != "source":  # any other word measured arrays without a word
        refuse(f"the fourth argument is source or none, got {argv[3]!r}")
    return argv[0], whole(argv[1], "BATCH"), whole(argv[2], "STEPS") if len(argv) > 2 else 60, len(argv) == 4


def main(args=None):
    """Measure and print: ``args`` as arguments() gives them, else read from the command line."""
    from gpunn.distributed import launched_rank

    result = measure(*(arguments(sys.argv[1:]) if args is None else args))
    if launched_rank() == 0:
        print(json.dumps(result), flush=True)


def allreduce_entry(nbytes, seconds) -> dict:
    """One buffer's entry in allreduce()'s line from each all-reduce's duration (seconds): the repeats, the best
    and the median in µs, GB/s at the best."""
    us = numpy.array(seconds) * 1e6
    return {"bytes": nbytes, "repeats": len(us), "min_us": round(float(us.min()), 1),
            "median_us": round(float(numpy.median(us)), 1), "GB_per_s_at_min": round(nbytes / us.min() / 1e3, 2)}


def allreduce():
    """MPI_Allreduce of the medium and wide gradient buffers and of the 4-byte stop flag, alone. Each run is timed by
    gpunn's watchdog (control.timed): a rank that stopped mid-measurement left the others waiting forever."""
    from mpi4py import MPI

    from gpunn.distributed import world

    comm, control = MPI.COMM_WORLD, world()
    out = {}
    for name, n, dtype, op in (("medium", 82_689, numpy.float32, MPI.SUM), ("wide", 2_363_393, numpy.float32, MPI.SUM),
                               ("flag", 1, numpy.int32, MPI.MAX)):
        a = numpy.zeros(n, dtype)  # a sum of zeros stays 0 (ones, summed in place, reach inf in float32 at call 128)
        times = []
        for _ in range(200 if n < 1_000_000 else 40):
            with control.timed(f"the all-reduce of the {name} buffer"):
                comm.Barrier()
                t = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, a, op=op)
                times.append(time.perf_counter() - t)
        out[name] = allreduce_entry(a.nbytes, times)
    if comm.rank == 0:
        print(json.dumps(dict(out, ranks=comm.size, load=round(os.getloadavg()[0], 1))), flush=True)


def overlap():
    """Can an all-reduce hide behind compute on this machine? Per configuration, the gradient buffer's
    all-reduce and a stand-in for the backward pass (the GEMMs of one rank's backward at its batch)
    are timed alone (the non-blocking MPI_Iallreduce too, waited for at once), one after the other,
    and overlapped: a non-blocking MPI_Iallreduce started
    before the compute and waited for after it, once with no MPI call in between and once polled
    (MPI_Test) between the GEMMs, the way a bucketed hook would progress it. Best of N repeats, each run of its
    own; hidden_share = (sequential - overlapped, polled) / the all-reduce alone, the share of the all-reduce
    that overlap hid (negative where the overlapped run was the slower; under load, noise can exceed 1). Each run is
    timed by gpunn's watchdog, as in allreduce()."""
    from mpi4py import MPI

    from gpunn.distributed import world

    comm, control = MPI.COMM_WORLD, world()
    rng = numpy.random.default_rng(0)
    out = {}
    # (name, gradient floats, per-rank batch, layer widths): medium 64-256-256-1 at 128, wide 256-1024x3-1 at 512
    for name, n, batch, widths, repeats in (("medium", 82_689, 128, [64, 256, 256, 1], 200),
                                            ("wide", 2_363_393, 512, [256, 1024, 1024, 1024, 1], 30)):
        grads = numpy.zeros(n, numpy.float32)  # summed in place again and again: zeros stay finite
        acts = [rng.standard_normal((batch, w), dtype=numpy.float32) for w in widths]
        weights = [rng.standard_normal((a, b), dtype=numpy.float32) for a, b in zip(widths, widths[1:])]

        def backward(poll=None):
            for i in reversed(range(len(weights))):  # dW = A^T dZ and dA = dZ W^T, layer by layer
                _ = acts[i].T @ acts[i + 1]
                if i:
                    _ = acts[i + 1] @ weights[i].T
                if poll is not None:
                    poll.Test()

        def timed(fn):
            best = float("inf")
            for _ in range(repeats):
                with control.timed(f"the {name} overlap measurement"):
                    comm.Barrier()
                    t = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t)
            return round(best * 1e6, 1)

        def overlapped(polled):
            def run():
                request = comm.Iallreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
                backward(request if polled else None)
                request.Wait()
            return run

        r = {"compute_us": timed(backward),
             "allreduce_us": timed(lambda: comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)),
             "iallreduce_wait_us": timed(lambda: comm.Iallreduce(MPI.IN_PLACE, grads, op=MPI.SUM).Wait()),
             "sequential_us": timed(lambda: (backward(), comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM))),
             "overlapped_us": timed(overlapped(False)), "overlapped_polled_us": timed(overlapped(True))}
        r["hidden_share"] = round((r["sequential_us"] - r["overlapped_polled_us"]) / r["allreduce_us"], 2)
        out[name] = r
    if comm.rank == 0:
        env = {k: v for k, v in os.environ.items() if k.startswith("MPIR_CVAR")}
        print(json.dumps(dict(out, ranks=comm.size, env=env, load=round(os.getloadavg()[0], 1))), flush=True)


if __name__ == "__main__":
    same_arguments_on_every_rank(sys.argv[1:])
    if {"-h", "--help"} & set(sys.argv[1:]):  # the arguments are read by position: --help is the docstring
        print(__doc__.strip())
        sys.exit(0)
    alone, args = agreed(sys.argv[1:])
    alone() if alone else main(args)
