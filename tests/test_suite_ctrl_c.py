"""The suite's own Ctrl-C: one ends the test run (pytest's status 2, interrupted), also while a test trains.

A fit takes SIGINT itself, as it does in a user's script: it stops after its batch and returns
(gpunn.training.loop.sigint_stops), and gpunn's command line, called in the test's process, answers a Ctrl-C with
status 130 and returns. Either way the test went on, then the next ones: `make test` needed a second Ctrl-C, pressed
while a fit ran. tests/conftest.py's handler ends the run there (_ctrl_c_ends_the_run)."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import waiting

ROOT = Path(__file__).resolve().parents[1]

THE_NEXT_TEST = '''

def test_next():
    print("the run went on", flush=True)
'''
# each child test says so on stdout once it is where the Ctrl-C is to land, and waits for it there
CHILD_TESTS = {
    "a fit": '''
import time

import numpy

import gpunn


class CtrlCHere(gpunn.Callback):
    def on_batch_end(self, trainer, batch):
        if batch == 1:
            print("ready for the Ctrl-C", flush=True)
            while not trainer.interrupt_asked():  # the fit's handler took it: the fit stops after this batch
                time.sleep(0.01)


def test_trains():
    x = numpy.linspace(-1, 1, 64).reshape(32, 2)
    gpunn.MLP([2, 4, 1], device="cpu", seed=0).fit(x, x[:, :1], epochs=10_000, batch_size=8, verbose=False,
                                                   callbacks=[CtrlCHere()])
''',
    "code that catches KeyboardInterrupt": '''
import time


def test_catches_it():  # as gpunn.cli.main does, which then returns 130
    print("ready for the Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(0.01)
    except KeyboardInterrupt:
        pass
''',
}


def _sigint_reaches_it():
    """The child's SIGINT at its default action, whatever this process was started with (`make test &` in a shell
    without job control starts it ignored, and Python would leave it so: no Ctrl-C would reach the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("where", CHILD_TESTS)
def test_one_ctrl_c_ends_the_test_run_where_the_code_under_test_took_it(tmp_path, where):
    (tmp_path / "test_child.py").write_text(CHILD_TESTS[where] + THE_NEXT_TEST)
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k not in ("GPUNN_FAKE_CUPY", "GPUNN_TESTS_ONE_SIGINT")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "tests")])
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-c",
                             str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "test_child.py"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_reaches_it)
    waiting.read_until(proc, "ready for the Ctrl-C", 300)
    proc.send_signal(signal.SIGINT)  # once
    out, err = waiting.communicate(proc, 300)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out + err
    assert "KeyboardInterrupt" in out and "the run went on" not in out, out + err


def test_under_gpu_checks_one_sigint_the_runs_handler_ignores_the_signals_after_the_first(monkeypatch):
    """bench/gpu_check.sh's tests stage (GPUNN_TESTS_ONE_SIGINT=1): its timeout signals pytest and then the process
    group, and a second SIGINT landing while pytest unwinds, before pytest_keyboard_interrupt ignores the rest, cut
    its junit XML and counts short (test_gpu_check's cap test, once under load). The run's handler ignores them from
    the first on; without the setting a second Ctrl-C keeps its effect."""
    import conftest

    before = signal.getsignal(signal.SIGINT)
    try:
        for one_sigint, after in (("1", signal.SIG_IGN), (None, conftest._ctrl_c_ends_the_run)):
            if one_sigint is None:
                monkeypatch.delenv("GPUNN_TESTS_ONE_SIGINT", raising=False)
            else:
                monkeypatch.setenv("GPUNN_TESTS_ONE_SIGINT", one_sigint)
            signal.signal(signal.SIGINT, conftest._ctrl_c_ends_the_run)
            with pytest.raises(KeyboardInterrupt):
                conftest._ctrl_c_ends_the_run(signal.SIGINT, None)
            assert signal.getsignal(signal.SIGINT) == after, one_sigint
    finally:
        signal.signal(signal.SIGINT, before)
        conftest._CTRL_C.clear()  # what the calls above remembered: this test's teardown is not to end the run
