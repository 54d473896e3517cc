"""The collectives a data-parallel gpunn command begins, on each of its paths: from each point where every rank's next
collective must be an agreement on who failed (gpunn.distributed.comm.next_collective_agrees: the ranks' command
check; in gpunn sweep, each ensemble after the first), the next one is one. A rank that failed before it joins it with
its failure (comm.agreeing_before_any_collective, from gpunn.cli), so an error every rank meets there is said once
and a rank that failed alone ends the job; a collective of another kind put in between would leave such a rank in a
gather the others are not in, until the watchdog (GPUNN_DIST_TIMEOUT, 300 s). Each command runs whole, in this
process, as rank 0 and as rank 1 of two ranks that do the same (tests/mirror_ranks.py)."""
import pathlib
import runpy
import sys

import numpy
import pytest
from mirror_ranks import as_rank

from gpunn import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN = ["train", "--hidden", "4", "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--quiet"]
SWEEP = ["sweep", "--lr", "1e-3,1e-2", "--max-members", "1", "--hidden", "4", "--epochs", "1", "--batch-size", "16",
         "--device", "cpu", "--quiet"]
TASK = ["--rows", "200", "--features", "3"]
STATISTICS, SETTINGS, SPLIT = ("the standardization statistics", "the check of the data-parallel settings",
                               "the sweep's split")
DIST_BENCH_CHECK = "the check of the arguments and settings"


def _files(tmp_path):
    numpy.save(tmp_path / "X.npy", numpy.random.default_rng(0).normal(size=(200, 3)))
    numpy.save(tmp_path / "Y.npy", numpy.ones((200, 1)))
    return ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]


def _in_one_process(monkeypatch, argv):
    with monkeypatch.context() as one_process:
        for name in ("PMI_SIZE", "PMI_RANK"):
            one_process.delenv(name, raising=False)
        assert cli.main(argv) == 0


def _resumed_run(tmp_path, monkeypatch):
    _in_one_process(monkeypatch, [*TRAIN, *TASK, "--save", str(tmp_path / "run.npz")])
    # (saved elsewhere: rank 1 then resumes the run rank 0 resumed, as every rank of a job reads it before rank 0 saves)
    return ["train", "--resume", str(tmp_path / "run.npz"), "--epochs", "3", "--save", "resumed.npz", "--quiet"]


def _resumed_sweep(tmp_path, monkeypatch):
    """A sweep of two ensembles saved by one process, resumed for a second epoch."""
    _in_one_process(monkeypatch, [*SWEEP, *TASK, "--save", str(tmp_path / "saved")])
    return ["sweep", "--resume", str(tmp_path / "saved"), "--epochs", "2", "--save", "resumed", "--quiet"]


PATHS = {  # the command line, and the agreement expected first after each point
    "train a task": (lambda tmp, mp: [*TRAIN, *TASK], [SETTINGS]),
    "train a task --standardize": (lambda tmp, mp: [*TRAIN, *TASK, "--standardize"], [SETTINGS]),
    "train a streamed task --standardize": (lambda tmp, mp: [*TRAIN, *TASK, "--stream", "on", "--standardize"],
                                            [STATISTICS]),
    "train --data --standardize": (lambda tmp, mp: [*TRAIN, *_files(tmp), "--standardize"], [STATISTICS]),
    "train --resume": (_resumed_run, [SETTINGS]),
    "sweep a task, two ensembles": (lambda tmp, mp: [*SWEEP, *TASK], [SPLIT, SETTINGS]),
    "sweep --data --standardize, two ensembles": (lambda tmp, mp: [*SWEEP, *_files(tmp), "--standardize"],
                                                  [SPLIT, SETTINGS]),
    "sweep --resume, two ensembles": (_resumed_sweep, [SETTINGS, SETTINGS]),
}


def _first_after_each_point(monkeypatch, run) -> list:
    """comm.next_collective_agrees's points, with the (label, is an agreement) of the first collective after each,
    of ``run()`` as rank 0 and as rank 1 of two (which takes rank 0's broadcasts); asserted the same on both ranks."""
    broadcasts, firsts = None, []
    for rank in (0, 1):
        with monkeypatch.context() as launched:
            control = as_rank(launched, rank, broadcasts=broadcasts)
            run()
        firsts.append(control.first_after_each_point())
        broadcasts = control.comm.broadcasts
    assert firsts[0] == firsts[1], firsts
    return firsts[0]


@pytest.mark.parametrize("path", list(PATHS))
def test_every_gpunn_command_path_agrees_on_who_failed_in_its_first_collective(tmp_path, monkeypatch, capsys, path):
    monkeypatch.chdir(tmp_path)
    argv, expected = PATHS[path]
    argv = argv(tmp_path, monkeypatch)

    def run():
        assert cli.main(argv) == 0, capsys.readouterr().err

    assert _first_after_each_point(monkeypatch, run) == [(label, True) for label in expected]


def test_dist_bench_agrees_on_who_failed_in_its_first_collective(monkeypatch, capsys):
    """bench/dist_bench.py under mpiexec checks the ranks' arguments (same_command_on_every_rank) too."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "bench" / "dist_bench.py"), "small", "2", "1"])
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as python puts a script's folder first (script_args)
    firsts = _first_after_each_point(monkeypatch, lambda: runpy.run_path(sys.argv[0], run_name="__main__"))
    assert '"ranks": 2' in capsys.readouterr().out  # (rank 0's line)
    assert firsts == [(DIST_BENCH_CHECK, True)]


@pytest.mark.parametrize("argv", [["medium", "x"], ["allreduce", "8"]])
def test_a_refusal_every_rank_of_dist_bench_meets_is_said_once(monkeypatch, capsys, argv):
    """bench/dist_bench.py's arguments (the same on every rank: they are compared first) refused after that check
    were said by every rank, each then leaving; the ranks now agree on who refused in one gather (a GPUNN_ variable
    one rank alone has wrong ends the job: test_dist_bench.py), and rank 0 says the line they share once."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "bench" / "dist_bench.py"), *argv])
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as python puts a script's folder first (script_args)
    said = []

    def run():
        with pytest.raises(SystemExit) as stopped:
            runpy.run_path(sys.argv[0], run_name="__main__")
        said.append((stopped.value.code, capsys.readouterr().err.splitlines()))

    assert _first_after_each_point(monkeypatch, run) == [(DIST_BENCH_CHECK, True)]
    assert said[1] == (2, []) and said[0][0] == 2 and len(said[0][1]) == 1, said
    assert said[0][1][0].startswith("dist_bench.py: error: ") and said[0][1][0].endswith(
        " (see dist_bench.py --help)"), said


def test_a_collective_put_before_the_agreement_is_found(tmp_path, monkeypatch):
    """The check itself: a barrier begun before the fit (as a new collective in gpunn train would be) is the first
    collective after the command check, and no agreement."""
    from gpunn.distributed import comm, training

    monkeypatch.chdir(tmp_path)
    control = as_rank(monkeypatch, 0)
    set_up = training.DataParallel.__init__

    def barrier_first(self, *args, **kwargs):
        comm.world().barrier(label="a new collective")
        set_up(self, *args, **kwargs)

    monkeypatch.setattr(training.DataParallel, "__init__", barrier_first)
    assert cli.main([*TRAIN, *TASK]) == 0
    assert control.first_after_each_point() == [("a new collective", False)]


def test_an_error_every_rank_meets_between_a_sweeps_ensembles_is_said_once(tmp_path, monkeypatch, capsys):
    """A checkpoint of a resumed sweep's second ensemble that no rank can read: met after the first ensemble's
    collectives, so it was not told in an agreement, and every rank said it and ended the job (MPI_Abort; under
    mpiexec the first rank's line, then MPI's "Abort(2) ..."). The ranks now agree on who failed in the next
    ensemble's first collective: rank 0 says the line they share once, every rank exits with status 2, none aborts
    (test_distributed.py has one rank failing there, which still ends the job)."""
    monkeypatch.chdir(tmp_path)
    argv = _resumed_sweep(tmp_path, monkeypatch)
    (tmp_path / "saved" / "ensemble-1.npz").write_bytes(b"not a checkpoint")
    said = []

    def run():
        assert cli.main(argv) == 2
        said.append(capsys.readouterr().err.splitlines())

    _first_after_each_point(monkeypatch, run)  # (neither rank aborts: the mirror's MPI_Abort fails the test)
    assert said == [[f"gpunn sweep [ranks 0-1]: error: {tmp_path}/saved/ensemble-1.npz: not a gpunn checkpoint (text, "
                     "not an .npz/zip archive)"], []], said
