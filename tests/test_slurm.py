"""README's "On a Slurm cluster" job script, run as Slurm runs it: by bash, with SLURM_JOB_ID set, its output
appended to a file (no terminal), signalled with kill as slurmstepd signals it, and run again as a requeue runs it.
There is no Slurm here; what Slurm does (the #SBATCH lines) is done by the test."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import waiting

import gpunn

ROOT = Path(__file__).resolve().parents[1]


def readme_job_script() -> str:
    section = (ROOT / "README.md").read_text().split("\n## On a Slurm cluster\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^```sh\n(#!/bin/bash\n.*?)^```", section, re.S | re.M).group(1)


def test_readmes_job_script_is_a_script_of_one_gpunn_line_that_saves_and_resumes_one_file():
    script = readme_job_script()
    assert "#SBATCH --signal=B:USR1@120" in script and "#SBATCH --requeue" in script
    line = script.splitlines()[-1]
    assert line.startswith("exec gpunn train ")  # exec: the batch script's process, which B: signals, is gpunn
    assert line.count('"run-$SLURM_JOB_ID.npz"') == 2


@pytest.mark.slow
def test_readmes_job_script_stops_on_slurms_warning_and_its_requeued_start_goes_on(tmp_path):
    """SIGUSR1 (--signal=B:USR1@120) ended gpunn at once, the checkpoint an epoch behind; and the same line run
    again was refused (--resume of a file not yet written) or, once the run had ended, failed (status 2)."""
    script = tmp_path / "job.sh"
    script.write_text(readme_job_script().replace("--rows 2000000", "--rows 2000"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPUNN_DEVICE": "cpu", "SLURM_JOB_ID": "777",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    log, checkpoint = tmp_path / "gpunn-777.out", tmp_path / "run-777.npz"

    def start(restarts):
        with open(log, "a") as out:  # --output=gpunn-%j.out, --open-mode=append
            return subprocess.Popen(["bash", str(script)], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env={**env, "SLURM_RESTART_COUNT": str(restarts)})

    job = start(0)
    deadline = waiting.Deadline(300)  # a ceiling, for a hang: the first epoch takes ~1 s on an idle machine
    while not checkpoint.exists():
        if deadline.expired() or job.poll() is not None:
            job.kill()
            raise AssertionError(f"no checkpoint written: {log.read_text()}")
        time.sleep(0.01)
    job.send_signal(signal.SIGUSR1)  # to the batch script's process (B:), which exec made gpunn
    assert waiting.communicate(job, 120) == (None, None) and job.returncode == 130, log.read_text()
    text = log.read_text()
    assert text.startswith("starting the run: --resume run-777.npz is not written yet")
    # (", at 1 epoch and 5 of 8 batches of epoch 2" where the signal lands within an epoch; nothing at its end)
    assert re.search(r"\ninterrupted after .*; checkpoint in run-777\.npz(, at .*)? \(the same command goes on from it\)\n",
                     text), text
    stopped = gpunn.load_checkpoint(checkpoint, device="cpu")
    assert stopped.epoch < 40

    requeued = start(1)
    assert waiting.communicate(requeued, 600) == (None, None) and requeued.returncode == 0, log.read_text()
    assert "resuming run-777.npz: " in log.read_text()
    assert gpunn.load_checkpoint(checkpoint, device="cpu").epoch == 40

    again = start(2)
    assert waiting.communicate(again, 120) == (None, None) and again.returncode == 0, log.read_text()
    assert log.read_text().endswith("run-777.npz: the run has trained its 40 epochs: nothing left to train (--epochs "
                                    "above 40 trains it further)\n")
    assert "\r" not in log.read_text()  # a line per epoch in a log file, no progress bar's carriage returns
