"""The suite's own time limit (pytest-timeout, set in pyproject.toml): a test that hangs ends the run instead of
stalling CI, and the same configuration still runs where the plugin is not installed (a pytest without the test
extra; the GPU machine's image has the plugin)."""
import subprocess
import sys
import types
from pathlib import Path

import pytest

import waiting

ROOT = Path(__file__).resolve().parents[1]
# bench/gpu_check.sh's GPU tests stage, less its selection (-m gpu) and xdist
GPU_CHECK_ARGS = ["-q", "-p", "no:cacheprovider", "-o", "faulthandler_timeout=60"]


def _pytest(tmp_path, *args, body):
    """pytest run on one test file with ``body`` under this repository's configuration, in a subprocess."""
    (tmp_path / "test_one.py").write_text(body)
    cmd = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
           *GPU_CHECK_ARGS, *args, str(tmp_path / "test_one.py")]
    return waiting.run(cmd, timeout=120, cwd=tmp_path)


def test_without_pytest_timeout_its_settings_are_a_warning_and_the_tests_run(tmp_path):
    """A pytest without pytest-timeout (installed without the test extra): pyproject's timeout keys are unknown
    there, which pytest reports as a PytestConfigWarning; an "error" warnings filter or --strict-config would make it
    fail every run."""
    proc = _pytest(tmp_path, "-p", "no:timeout", body="def test_it():\n    assert True\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "Unknown config option: timeout" in proc.stdout + proc.stderr  # the path this test is about was taken


def test_a_test_that_hangs_ends_the_run_with_the_threads_stacks(tmp_path):
    """With the plugin (CI's test extra), the configured method ends a hanging test: the thread method stops the
    whole run (the test after it never runs) and prints where each thread was."""
    pytest.importorskip("pytest_timeout")
    body = ("import time\n\n"
            "def test_hangs():\n    time.sleep(600)\n\n"
            "def test_after():\n    open('after-ran', 'w').close()\n")
    proc = _pytest(tmp_path, "--timeout", "3", body=body)  # the configured method, with a shorter limit
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Timeout" in out and "time.sleep(600)" in out, out  # the stack of the test where it hung
    assert not (tmp_path / "after-ran").exists()  # the thread method: the run ended there (signal goes on)


def _child(script, text=True):
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)


def test_read_until_gives_the_first_line_holding_the_text_and_leaves_the_rest():
    proc = _child("print('a'); print('b: here'); print('c', flush=True)")
    assert waiting.read_until(proc, "b:", 60) == "b: here\n"
    assert waiting.communicate(proc, 60) == ("c\n", "")


def test_read_until_does_not_block_on_a_child_that_writes_nothing(tmp_path):
    """A readline would wait for as long as the child lives; read_until gives up at its time, and kills it. The
    1 s starts once the child has written its stderr (a start-up slower than that, under load, left it empty)."""
    started = tmp_path / "started"
    proc = _child(f"import sys, time; sys.stderr.write('stuck'); sys.stderr.flush(); open({str(started)!r}, 'w')"
                  ".close(); time.sleep(600)", text=False)
    deadline = waiting.Deadline(60)
    while not started.exists() and not deadline.expired():
        deadline.sleep()
    with pytest.raises(AssertionError, match=r"no line with b'ready' within 1 s \(status -9\), stderr:\nb'stuck'"):
        waiting.read_until(proc, b"ready", 1)
    assert proc.returncode == -9


def test_read_until_fails_when_the_output_ends_without_the_text():
    proc = _child("import sys; print('other'); sys.exit('gave up')")
    with pytest.raises(AssertionError, match=r"ended without a line with 'ready' \(status 1\), stderr:\ngave up"):
        waiting.read_until(proc, "ready", 60)


@pytest.mark.parametrize("load, counted", [(1.0, 1.0), (2.0, 1.0), (10.0, 0.2), (100.0, 0.1)])
def test_a_deadline_counts_a_second_at_the_share_of_a_cpu_the_load_leaves(monkeypatch, load, counted):
    """On 2 CPUs at a load of 10 a child gets a fifth of one: a second of waiting counts 0.2 s, so a limit sized for
    the work stretches with the load (at most tenfold: a hang still fails). Not loaded: a second is a second."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(waiting, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    monkeypatch.setattr(waiting, "CPUS", 2)
    monkeypatch.setattr(waiting.os, "getloadavg", lambda: (load, load, load))
    deadline = waiting.Deadline(10)
    clock.now += 1.0
    assert deadline.tick() == pytest.approx(10 - counted)


@pytest.mark.parametrize("seconds, counted", [(10, 0.1), (120, 120 / 900), (600, 600 / 900), (1200, 1.0)])
def test_no_limit_stretches_past_what_pytest_timeout_allows_a_test(monkeypatch, seconds, counted):
    """At a load of 100 on 2 CPUs a second counted a tenth for every limit, so read_until's 600 s ceilings reached
    6000 s of wall clock, and a hang there was ended by pytest-timeout's 1200 s, which ends the whole run, not by
    the test's own failure. A limit now stretches to STRETCHED_MOST (900 s) at most, under pyproject's timeout."""
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as fh:
        assert waiting.STRETCHED_MOST < tomllib.load(fh)["tool"]["pytest"]["ini_options"]["timeout"]
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(waiting, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    monkeypatch.setattr(waiting, "CPUS", 2)
    monkeypatch.setattr(waiting.os, "getloadavg", lambda: (100.0, 100.0, 100.0))
    deadline = waiting.Deadline(seconds)
    clock.now += 1.0
    assert deadline.tick() == pytest.approx(seconds - counted)
