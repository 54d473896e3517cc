"""bench/dist_bench.py, the data-parallel CPU benchmark: what its JSON line says beside its numbers, in one
process (the baseline) and under ``mpiexec -n 2``."""
import json
import os
import subprocess
import sys
import time
import types

import numpy
import pytest
import waiting
from bench_scripts import ROOT, load
from mpi_launch import THREAD_ENV, ended, ending_with_this_process, mpiexec, needs_mpi, own_session

import gpunn

TINY = "t:4:8:1:8"  # 4-8-1, 89 parameters


@pytest.fixture(scope="module")
def dist_bench():
    return load("bench/dist_bench.py", "dist_bench")


def test_the_timing_fields_are_the_minimum_and_median_of_each_list_in_ms(dist_bench):
    t = dist_bench.timings([0.004, 0.001, 0.002], [0.0005, 0.0001, 0.0002], rows_per_step=8)
    assert (t["steps_timed"], t["allreduce_timed"]) == (3, 3)
    assert t["step_ms_min"] == pytest.approx(1.0) and t["step_ms_median"] == pytest.approx(2.0)  # (mean 2.33)
    assert t["samples_per_s_at_min"] == pytest.approx(8000.0)
    assert t["allreduce_ms_min"] == pytest.approx(0.1) and t["allreduce_ms_median"] == pytest.approx(0.2)
    alone = dist_bench.timings([0.002], [], rows_per_step=8)
    assert (alone["allreduce_timed"], alone["allreduce_ms_min"], alone["allreduce_ms_median"]) == (0, None, None)


def test_an_all_reduce_entry_is_the_best_and_median_of_its_repeats(dist_bench):
    e = dist_bench.allreduce_entry(330_756, [0.0003, 0.0001, 0.0002])
    assert e == {"bytes": 330_756, "repeats": 3, "min_us": 100.0, "median_us": 200.0, "GB_per_s_at_min": 3.31}


class FakeClock:
    """dist_bench's ``time``: perf_counter reads ``now``, which the test moves."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_a_step_is_timed_from_the_last_batch_or_epoch_end_and_each_all_reduce_once_per_fit(dist_bench,
                                                                                             monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(dist_bench, "time", clock)

    class Comm:
        def allreduce_sum_(self, array):
            clock.now += 0.25

        def describe(self):
            return "2 rank(s) over a stand-in"
    comm = Comm()
    trainer = types.SimpleNamespace(hook=types.SimpleNamespace(comm=comm))
    probe = dist_bench.StepTimes()
    for fit in range(2):  # the warm-up fit, then the timed one: the same comm (world() keeps one)
        probe.on_train_begin(trainer)
        assert probe.setup["mpi"] == "2 rank(s) over a stand-in"
        clock.now += 1.0
        comm.allreduce_sum_(None)
        probe.on_batch_end(trainer, 0)
        clock.now += 5.0  # the epoch's end: validation, logs, the next epoch's shuffle
        probe.on_epoch_end(trainer, 0, {})
        clock.now += 2.0
        probe.on_batch_end(trainer, 0)
        clock.now += 3.0
        probe.on_batch_end(trainer, 1)
        probe.on_train_end(trainer)
        assert probe.steps == [1.25, 2.0, 3.0] and probe.allreduce == [0.25]  # (the step holds its all-reduce)
    comm.allreduce_sum_(None)  # after the fits: the comm's own, untimed
    assert probe.allreduce == [0.25]


def test_one_process_times_every_step_and_has_no_all_reduce(dist_bench, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.25, 2.0, 3.0))
    r = dist_bench.measure(TINY, 8, steps=3)
    assert (r["ranks"], r["batch_per_rank"], r["global_batch"], r["steps_per_epoch"]) == (1, 8, 8, 3)
    assert r["steps_timed"] == r["epochs"] * 3 == 9  # the warm-up fit's steps are not among them
    assert r["allreduce_timed"] == 0
    assert r["allreduce_ms_min"] is None and r["allreduce_ms_median"] is None  # none, not a 0 ms one
    assert (r["members"], r["params"], r["dtype"], r["optimizer"]) == (1, 4 * 8 + 8 + 8 + 1, "float32", "adam")
    assert r["mpi"] is None and set(r["threads"]) == set(dist_bench.SETUP_VARIABLES)  # no MPI library: null
    assert r["samples_per_s_at_min"] == pytest.approx(8 / (r["step_ms_min"] / 1e3))
    assert r["step_ms_min"] <= r["step_ms_median"]
    assert r["data"] == "arrays" and len(r["cpu_s_per_rank"]) == 1
    assert r["load"] == 1.2  # the last minute's
    json.dumps(r)  # one JSON line


def test_the_command_line_reads_config_batch_steps_and_source(dist_bench, monkeypatch, capsys):
    def no_arrays(*args, **kw):
        raise AssertionError("a source run made arrays")
    monkeypatch.setattr(gpunn.datasets, "make", no_arrays)
    monkeypatch.setattr(sys, "argv", ["dist_bench.py", TINY, "8", "2", "source"])
    dist_bench.main()
    r = json.loads(capsys.readouterr().out)
    assert (r["config"], r["batch_per_rank"], r["steps_per_epoch"], r["data"]) == (TINY, 8, 2, "source")
    assert r["steps_timed"] == r["epochs"] * 2


def test_an_ensembles_epoch_rate_is_in_rows_as_its_rate_at_the_minimum_step(dist_bench, monkeypatch):
    # the history's samples_per_s of an Ensemble counts member-samples; the line beside it counts rows
    histories = []
    fit = gpunn.Ensemble.fit

    def keep(self, *args, **kw):
        histories.append(fit(self, *args, **kw))
        return histories[-1]
    monkeypatch.setattr(gpunn.Ensemble, "fit", keep)
    r = dist_bench.measure(TINY + "-x2", 8, steps=3)  # (2: the fewest members an ensemble has)
    assert r["members"] == 2 and r["params"] == 2 * (4 * 8 + 8 + 8 + 1)
    member_samples = histories[-1]["samples_per_s"]
    assert len(member_samples) == r["epochs"]
    assert r["samples_per_s_epoch_median"] == pytest.approx(float(numpy.median(member_samples)) / 2)
    assert r["samples_per_s_at_min"] == pytest.approx(8 / (r["step_ms_min"] / 1e3))


def test_the_cpu_seconds_leave_out_making_the_arrays(dist_bench, monkeypatch):
    # each rank makes all the rows: counted, it charged a 2-rank run twice what it charged one process
    clock = [0.0]

    def process_time():
        clock[0] += 1.0
        return clock[0]
    make = gpunn.datasets.make

    def costly_make(*args, **kw):
        clock[0] += 100.0
        return make(*args, **kw)
    monkeypatch.setattr(dist_bench, "time", types.SimpleNamespace(process_time=process_time,
                                                                  perf_counter=time.perf_counter))
    monkeypatch.setattr(gpunn.datasets, "make", costly_make)
    r = dist_bench.measure(TINY, 8, steps=3)
    assert r["cpu_s"] == 1.0 and r["cpu_s_per_rank"] == [1.0]  # the two readings around the timed fit only
    assert r["samples_per_cpu_s"] == r["epochs"] * 3 * 8 / 1.0
    monkeypatch.setattr(dist_bench.time, "process_time", lambda: 5.0)  # a clock that did not move: no rate
    assert dist_bench.measure(TINY, 8, steps=3)["samples_per_cpu_s"] is None


def _on_two_ranks(tmp_path, *args):
    """The one line ``mpiexec -n 2 python bench/dist_bench.py ARGS`` prints, as a dict (rank 0's line only)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUNN_DEVICE="cpu", PYTHONWARNINGS="ignore")
    for name in THREAD_ENV:
        env.pop(name, None)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = ending_with_this_process([mpiexec(), "-n", "2", sys.executable, str(ROOT / "bench" / "dist_bench.py"), *args])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    out, err = waiting.communicate(proc, 120)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def _mpmd(tmp_path, first, second):
    """(status, stdout, stderr) of ``mpiexec -n 1 dist_bench.py FIRST : -n 1 dist_bench.py SECOND`` within 120 s
    (a job that does not end fails the test); ``-env NAME VALUE`` before a rank's arguments sets its variable."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    script = [sys.executable, str(ROOT / "bench" / "dist_bench.py")]
    cmd = [mpiexec()]
    for own in (first, second):
        own_env = own[:3] if own[:1] == ["-env"] else []
        cmd += [":"] * (len(cmd) > 1) + ["-n", "1", *own_env, *script, *own[len(own_env):]]
    return _ended(cmd, env, tmp_path)


def _ended(cmd, env, cwd):
    """(status, stdout, stderr) of the mpiexec job ``cmd`` within 120 s; a job that does not end fails the test."""
    proc = own_session(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    out, err = ended(proc, 120)
    return proc.returncode, out, err


@needs_mpi
@pytest.mark.parametrize("first,second,status", [(["--help"], [TINY, "4", "3"], 2),
                                                 ([TINY, "0", "3"], [TINY, "4", "3"], 2), (["--help"], ["--help"], 0)])
def test_ranks_of_an_mpmd_launch_given_other_arguments_stop_together(tmp_path, first, second, status):
    """mpiexec -n 1 python bench/dist_bench.py --help : -n 1 python bench/dist_bench.py CONFIG BATCH: the rank that
    printed the docstring (or refused its own arguments) left, and the other waited for it in MPI_Init forever. The
    ranks compare their arguments first (gpunn.distributed.comm.same_command_on_every_rank): where they differ every
    rank stops, rank 0 saying which, status 2; every rank given --help alike prints it, status 0."""
    code, out, err = _mpmd(tmp_path, first, second)
    assert code == status, err
    said = [line for line in err.splitlines() if "error" in line]
    if status == 0:
        assert out.count("Data-parallel throughput on the CPU") == 2 and said == [], (out, err)
    else:
        # (why a rank that printed its help stops the job, only where one did: ranks given another BATCH were told
        # of a help or version no rank had asked for)
        leaves = (", and one that prints its help and leaves would leave the others waiting for it"
                  * (first == ["--help"]))
        assert said == [f"dist_bench.py: error: the ranks were not all given the same arguments{leaves}; give every "
                        f'rank the same arguments: arguments: "{" ".join(first)}" on rank 0; "{" ".join(second)}" on '
                        "rank 1 (see dist_bench.py --help)"], err


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("name,value,says", [
    ("GPUNN_DEVICE", "bogus", "GPUNN_DEVICE='bogus' is not auto, cpu, cuda or cuda:N (unset: auto)"),
    ("GPUNN_DIST_TIMEOUT", "x", "GPUNN_DIST_TIMEOUT='x' is not a positive number of seconds in the digits 0-9 and one "
                                "point at most, or inf (how long a rank waits in a collective before it aborts the "
                                "job; unset: 300) (see dist_bench.py --help)")])
def test_a_gpunn_variable_one_rank_alone_has_wrong_ends_the_job_with_its_line(tmp_path, name, value, says):
    """mpiexec -n 1 dist_bench.py allreduce : -n 1 -env GPUNN_DEVICE bogus dist_bench.py allreduce: the arguments are
    the same, so the ranks' check let them through, and the rank that refused its variable said so and left; the
    other waited for it in its first barrier forever (measure()'s fit: until GPUNN_DIST_TIMEOUT). The ranks now agree
    on who refused in one gather: the rank that refused ends the job with its line, naming it. (Every rank refusing
    alike is said once: test_agreement_points.py.) GPUNN_DIST_TIMEOUT is read as the ranks start MPI for that check,
    before they have a communicator to agree over: the rank that cannot read it said so and left, and the other
    waited in the check for its watchdog's 300 s; it now ends the job with its line."""
    code, _, err = _mpmd(tmp_path, ["allreduce"], ["-env", name, value, "allreduce"])
    assert code == 2, err
    assert [line for line in err.splitlines() if "error" in line] == [
        f"dist_bench.py [rank 1 of ranks 0-1]: error: {says}"], err


@needs_mpi
@pytest.mark.slow
def test_two_ranks_time_one_all_reduce_a_step_and_name_the_mpi_library(tmp_path):
    # the second fit wrapped the first fit's wrapper (world() keeps one comm): every all-reduce was timed twice
    r = _on_two_ranks(tmp_path, TINY, "4", "3")
    assert (r["ranks"], r["batch_per_rank"], r["global_batch"]) == (2, 4, 8)
    assert r["samples_per_s_at_min"] == pytest.approx(8 / (r["step_ms_min"] / 1e3))  # the global batch's rows
    assert r["steps_timed"] == r["allreduce_timed"] == r["epochs"] * 3
    assert 0 < r["allreduce_ms_min"] <= r["allreduce_ms_median"]
    assert r["mpi"].startswith("2 ranks over MPI (") and r["blas_threads_in_fit"] == 1
    assert r["threads"]["OPENBLAS_NUM_THREADS"] == "1" and r["data"] == "arrays"
    assert len(r["cpu_s_per_rank"]) == 2 and r["cpu_s"] == pytest.approx(sum(r["cpu_s_per_rank"]), abs=2e-3)


@needs_mpi
@pytest.mark.slow
def test_the_all_reduce_alone_times_the_gradient_buffers_and_the_stop_flag(tmp_path):
    r = _on_two_ranks(tmp_path, "allreduce")
    assert r["ranks"] == 2
    sizes = {"medium": 82_689 * 4, "wide": 2_363_393 * 4, "flag": 4}  # float32 gradients, the int32 flag
    for name, nbytes in sizes.items():
        t = r[name]
        assert t["bytes"] == nbytes and 0 < t["min_us"] <= t["median_us"]
        assert t["repeats"] == (40 if name == "wide" else 200)  # as bench/RESULTS.md quotes them
        assert t["GB_per_s_at_min"] == pytest.approx(nbytes / t["min_us"] / 1e3, abs=0.01, rel=0.01)


# run under mpiexec as dist_bench.py MODE: rank 1 stops itself (SIGSTOP) at its first clock reading of a measurement,
# inside the window the watchdog times (a sleep there raced: rank 1's own watchdog, timing the same window, said
# "waited 2 s ...; another rank has stopped" about itself, and now and then first, its abort ending rank 0 unheard).
# The watchdog's timeout is 2 s from the first measured run on, set (world(timeout=)) before each run begins: a 2 s
# GPUNN_DIST_TIMEOUT timed the job's start too (MPI_Init, the communicator's set-up, the arguments' agreement), and
# under load one rank reached MPI_Init 2 s after the other now and then: the other's start of MPI was ended (status
# 9, "waited 2 s in MPI_Init"), not the measurement's wait
_STOPPING = """import os, runpy, signal, sys, time
from gpunn.distributed import MpiComm, world
clock, timed = time.perf_counter, MpiComm.timed
def stopping():
    if os.environ["PMI_RANK"] == "1" and sys._getframe(1).f_code.co_name in ("allreduce", "timed"):
        os.kill(os.getpid(), signal.SIGSTOP)
    return clock()
def timed_in_2_s(control, label):
    world(timeout=2)
    return timed(control, label)
time.perf_counter, MpiComm.timed = stopping, timed_in_2_s
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as python puts a script's folder first (bench/script_args.py)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@needs_mpi
@pytest.mark.parametrize("mode,label", [("allreduce", "the all-reduce of the medium buffer"),
                                        pytest.param("overlap", "the medium overlap measurement",
                                                     marks=pytest.mark.slow)])
def test_a_rank_that_stops_mid_measurement_ends_the_job_by_the_watchdog(tmp_path, mode, label):
    """allreduce and overlap call mpi4py on COMM_WORLD themselves, outside gpunn's collectives: a rank that stopped
    mid-measurement (here rank 1 is stopped, as by a debugger or `kill -STOP`) left the others waiting for it forever.
    Each run is timed by gpunn's watchdog now: rank 0 says where it waited and aborts the job after the timeout
    (2 s here, from the first measurement on: _STOPPING), status 3; the stopped rank, its watchdog stopped with it,
    says nothing."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUNN_DEVICE="cpu", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               GPUNN_DIST_TIMEOUT="60")  # the job's start only: under the test's 120 s
    code, _, err = _ended([mpiexec(), "-n", "2", sys.executable, "-c", _STOPPING, str(ROOT / "bench" / "dist_bench.py"),
                           mode], env, tmp_path)
    # (9: an MPI_Abort that had not ended the job 10 s on was ended for it, gpunn.distributed.comm._abort_job)
    assert code == 3 or (code == 9 and "MPI_Abort has not ended the job after" in err), err
    # the timeout is 2 s, and the watchdog looks every 0.5 s, each look counting at most 1 s (a late one under load)
    assert f"dist_bench.py [rank 0 of ranks 0-1]: waited 2 s in {label}; another rank has stopped" in err \
        or f"dist_bench.py [rank 0 of ranks 0-1]: waited 3 s in {label}; another rank has stopped" in err, err
    assert "[rank 1 of ranks 0-1]" not in err, err
