"""bench/gpu_check.sh's budget: the cap each stage runs under and the --max-seconds each hook is given, on a GPU
run (GPUNN_CHECK_DEVICE=cuda, which no CPU dry run takes) and on the dry run.

The script runs for real from a copy of it, every stage a stand-in that answers at once: PYTHON is a script that logs
its arguments (the probe says ok, pytest prints its counts), and `timeout` a shim on PATH that logs the limit it was
given before it runs the command. With no time spent in the stages, each cap is the budget's arithmetic alone, less
the few seconds the run itself took (the closing line's), which the assertions allow.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import stat
import sys

import pytest
import waiting

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOOKS = ("precision", "ensemble", "streams", "nccl")  # the stand-in's: the clip hook, last, is not landed in it
CLIP_NOT_LANDED = "--   clip: not landed (bench/gpu_checks/clip.py absent)"

PYTHON = """#!/usr/bin/env bash
echo "RUN $*" >> "$STUB_LOG"
case "$*" in
  *"import json, sys"*) exec "$STUB_REAL_PYTHON" "$@" ;;  # the train stage's look at train.json, run for real
  "-m gpunn bench --device "*) [ -z "${STUB_TRAIN_JSON:-}" ] || cp "$STUB_TRAIN_JSON" "${@: -1}" ;;  # (--json PATH)
  *probe_cuda*) echo "${STUB_PROBE-ok}" ;;
  "-m gpunn info "*) sleep "${STUB_INFO_SECONDS:-0}"; printf '%b' "${STUB_INFO-}"; exit "${STUB_RC_info:-0}" ;;
  "-m gpunn bench --help") echo "--precision P --eager" ;;
  "-m pytest "*) echo "${STUB_TESTS-3 passed in 0.01s}"; exit "${STUB_RC_pytest:-0}" ;;
  "-c import "*) exit 1 ;;  # no matplotlib, no pytest-xdist
  bench/gpu_checks/*) hook=${1#bench/gpu_checks/}; rc=STUB_RC_${hook%.py}; exit "${!rc:-0}" ;;
  bench/gpu_report.py*) exit "${STUB_RC_report:-0}" ;;
esac
exit 0
"""
TIMEOUT = """#!/usr/bin/env bash
echo "CAP $*" >> "$STUB_LOG"
exec {real} "$@"
"""


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(tmp_path, device="cuda", hooks=HOOKS, **env):
    """(caps: stage -> the limit `bounded` gave it, in the order they ran; runs: the stand-in's argument lines;
    summary lines; exit code; the run's seconds from its closing line) of gpu_check.sh from a copy with ``hooks``."""
    root = tmp_path / "root"
    (root / "bench" / "gpu_checks").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "gpu_check.sh", root / "bench" / "gpu_check.sh")
    for hook in hooks:
        (root / "bench" / "gpu_checks" / f"{hook}.py").write_text("")
    shims = tmp_path / "bin"
    shims.mkdir()
    _executable(shims / "python", PYTHON)
    _executable(shims / "timeout", TIMEOUT.format(real=shutil.which("timeout")))
    log, out = tmp_path / "log", tmp_path / "out"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GPUNN_CHECK_")}
    environ.update(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}", PYTHON=str(shims / "python"), STUB_LOG=str(log),
                   STUB_REAL_PYTHON=sys.executable, GPUNN_CHECK_DEVICE=device, **env)
    ran = waiting.run(["bash", str(root / "bench" / "gpu_check.sh"), str(out)], timeout=120, env=environ)
    lines = log.read_text().splitlines()
    caps = []
    for line in lines:
        if line.startswith("CAP "):
            words = line.split()
            assert words[1:5] == ["-s", "INT", "-k", "10"], line  # bounded(): SIGINT, SIGKILL 10 s later
            command = " ".join(words[6:])
            stage = next((h for h in HOOKS if f"bench/gpu_checks/{h}.py" in command), None) or next(
                name for key, name in (("nvidia-smi", "nvidia-smi"), ("gpunn info", "info"), ("probe_cuda", "probe"),
                                       ("-m pytest", "tests"), ("gpunn.bench.kernels", "kernels"),
                                       ("-m gpunn bench", "train")) if key in command)
            caps.append((stage, int(words[5])))
    summary = (out / "summary.txt").read_text().splitlines()
    closing = [line for line in summary if line.startswith("gpu_check on ")]
    seconds = int(re.search(r", (\d+)s of a \d+s budget", closing[0])[1]) if closing else None
    return caps, [line[4:] for line in lines if line.startswith("RUN ")], summary, ran.returncode, seconds


def _max_seconds(runs, what):
    """The --max-seconds of the stand-in's run whose arguments contain ``what``."""
    (line,) = [line for line in runs if what in line]
    return int(re.search(r"--max-seconds (\d+)", line)[1])


def _about(got, want, seconds):
    """``got`` is ``want`` less at most the ``seconds`` the run had spent when it was computed."""
    return want - seconds <= got <= want


def test_a_gpu_runs_stages_get_their_caps_under_the_default_budget(tmp_path):
    """360 s: the tests stage keeps 30 for the kernels, 90 for train and 30 per hook (120 - t of its 130 here, with
    four hooks; 90 - t with the clip hook, which the stand-in leaves out); every
    later stage its own cap; the train stage's gpunn bench 15% less (190 -> 162); each hook 5 s less than its cap."""
    caps, runs, summary, rc, seconds = _run(tmp_path)
    assert rc == 0 and summary[-1].endswith("360s budget: PASSED"), summary
    assert [stage for stage, _ in caps] == ["nvidia-smi", "info", "probe", "tests", "kernels", "train", *HOOKS]
    cap = dict(caps)
    assert (cap["nvidia-smi"], cap["info"], cap["probe"]) == (30, 60, 60)
    assert _about(cap["tests"], 120, seconds), cap
    assert (cap["kernels"], cap["train"]) == (45, 190)
    assert _max_seconds(runs, "-m gpunn bench --device cuda") == 162
    for hook in HOOKS:
        assert cap[hook] == 40 and _max_seconds(runs, f"gpu_checks/{hook}.py") == 35, (hook, caps)


def test_the_next_gpu_sessions_first_call_gives_each_hook_its_raised_cap(tmp_path):
    """The environment of call 1 in the script's header (the planned GPU run): every stage its full cap, the ensemble
    hook 90 s and the streams hook 60 s, each hook 5 s less as its --max-seconds."""
    header = (ROOT / "bench" / "gpu_check.sh").read_text().split("\nset -uo pipefail", 1)[0]
    call = re.search(r"^#    (.*timeout .* bash bench/gpu_check\.sh .*)$", header, re.M)[1]
    settings = dict(re.findall(r"\b(GPUNN_CHECK_\w+)=(\d+)", call))
    assert set(settings) == {"GPUNN_CHECK_BUDGET", "GPUNN_CHECK_ENSEMBLE_SECONDS", "GPUNN_CHECK_STREAMS_SECONDS"}
    assert " env GPUNN_CHECK_COMMIT=SHA " in call  # typed in: the machine's copy may carry a stale .git
    caps, runs, summary, rc, seconds = _run(tmp_path, **settings)
    assert rc == 0, summary
    cap = dict(caps)
    want = {"tests": 130, "kernels": 45, "train": 190, "precision": 40, "ensemble": int(
        settings["GPUNN_CHECK_ENSEMBLE_SECONDS"]), "streams": int(settings["GPUNN_CHECK_STREAMS_SECONDS"]), "nccl": 40}
    assert {k: cap[k] for k in want} == want
    assert {h: _max_seconds(runs, f"gpu_checks/{h}.py") for h in HOOKS} == {h: want[h] - 5 for h in HOOKS}


def test_a_short_budget_skips_the_stages_it_cannot_fit_and_the_run_fails(tmp_path):
    """150 s: the tests (130 less 240 reserved) and kernels (45 less 210) stages are skipped, saying so, train gets
    what the hooks' 120 s leave it, the hooks their caps; a run with a skipped stage fails. At 120 s train is skipped
    too and the first hook gets what the three after it leave (30 - t); at 95 s it is skipped, not run (under 10 s),
    and at 245 s the tests stage (5 s)."""
    caps, runs, summary, rc, seconds = _run(tmp_path, GPUNN_CHECK_BUDGET="150")
    assert rc == 1 and summary[-1].endswith("150s budget: FAILED"), summary
    skipped = [line.split()[1] for line in summary if line.startswith("SKIP")]
    assert skipped == ["tests:", "kernels:"], summary
    cap = dict(caps)
    assert "tests" not in cap and "kernels" not in cap and not any("-m pytest" in run for run in runs)
    assert _about(cap["train"], 30, seconds) and all(cap[h] == 40 for h in HOOKS), caps
    assert _max_seconds(runs, "-m gpunn bench --device cuda") == cap["train"] - 5  # 15% of under 34 s is under 5

    caps, runs, summary, rc, seconds = _run(tmp_path / "120", GPUNN_CHECK_BUDGET="120")
    assert rc == 1 and [line.split()[1] for line in summary if line.startswith("SKIP")] == [
        "tests:", "kernels:", "train:"], summary
    cap = dict(caps)
    assert _about(cap["precision"], 30, seconds) and _max_seconds(runs, "gpu_checks/precision.py") == cap[
        "precision"] - 5
    assert [cap[h] for h in HOOKS[1:]] == [40, 40, 40], caps

    caps, runs, summary, rc, seconds = _run(tmp_path / "95", GPUNN_CHECK_BUDGET="95")  # precision: 5 s, under 10
    assert "SKIP precision: no budget left (the run is incomplete: it fails)" in " ".join(summary), summary
    assert not any("gpu_checks/precision.py" in run for run in runs) and "precision" not in dict(caps)
    assert _about(dict(caps)["ensemble"], 35, seconds) and rc == 1

    caps, runs, summary, rc, seconds = _run(tmp_path / "245", GPUNN_CHECK_BUDGET="245")  # tests: 5 s, under 10
    assert [line.split()[1] for line in summary if line.startswith("SKIP")] == ["tests:"], summary
    assert _about(dict(caps)["kernels"], 35, seconds), caps


def test_the_seconds_a_stage_took_come_off_the_later_stages_caps(tmp_path):
    """At 120 s the precision hook gets what the three hooks after it leave (30 s) less the seconds already run: here
    the device stage's 3 s at least."""
    caps, runs, summary, rc, seconds = _run(tmp_path, GPUNN_CHECK_BUDGET="120", STUB_INFO_SECONDS="3")
    assert 10 <= dict(caps)["precision"] <= 27 and dict(caps)["ensemble"] == 40, caps


def test_a_raised_hook_cap_leaves_30_s_to_each_hook_after_it(tmp_path):
    """GPUNN_CHECK_STREAMS_SECONDS above what the budget has left: the streams hook gets the budget less the 30 s
    the nccl hook after it keeps, and the nccl hook still runs; the hooks before it keep theirs."""
    caps, runs, summary, rc, seconds = _run(tmp_path, GPUNN_CHECK_STREAMS_SECONDS="600")
    cap = dict(caps)
    assert _about(cap["streams"], 360 - 30, seconds) and cap["nccl"] == 40, caps
    assert cap["precision"] == cap["ensemble"] == 40 and rc == 0


def test_the_reserves_count_only_the_hooks_that_landed(tmp_path):
    """A hook absent from bench/gpu_checks is 'not landed' (no failure) and reserves nothing: with two hooks the
    tests stage keeps 30 + 90 + 2 x 30 s, so it gets its full 130 s of 360."""
    caps, runs, summary, rc, seconds = _run(tmp_path, hooks=("precision", "streams"))
    assert rc == 0 and summary[-1].endswith("PASSED"), summary
    assert [line for line in summary if line.startswith("--")] == [
        "--   ensemble: not landed (bench/gpu_checks/ensemble.py absent)",
        "--   nccl: not landed (bench/gpu_checks/nccl.py absent)", CLIP_NOT_LANDED]
    cap = dict(caps)
    assert cap["tests"] == 130 and set(cap) & set(HOOKS) == {"precision", "streams"}, caps


def test_the_rerun_after_fixes_gives_the_stages_asked_for_the_time_the_others_would_have_kept(tmp_path):
    """Step 3 of the script's header, the rerun after fixes (GPUNN_CHECK_STAGES: the tests and the hooks): kernels
    and train are not run (nor train's look at `gpunn bench --help`), their lines say they were not asked for, the
    run passes, and they reserve nothing: the tests stage gets its whole 130 s of 280 (with their 120 s kept, 40 less
    the seconds run), each hook its cap, the streams hook the 110 s its 10^9-row epoch needs."""
    header = (ROOT / "bench" / "gpu_check.sh").read_text().split("\nset -uo pipefail", 1)[0]
    call = re.search(r"^#    (.*timeout .* GPUNN_CHECK_STAGES=.* bash bench/gpu_check\.sh .*)$", header, re.M)[1]
    settings = dict(re.findall(r"\b(GPUNN_CHECK_\w+)=([\w,]+)", call))
    assert settings == {"GPUNN_CHECK_COMMIT": "SHA",  # typed in: the machine's copy may carry a stale .git
                        "GPUNN_CHECK_STAGES": "tests,precision,ensemble,streams,nccl", "GPUNN_CHECK_BUDGET": "280",
                        "GPUNN_CHECK_ENSEMBLE_SECONDS": "60", "GPUNN_CHECK_STREAMS_SECONDS": "110"}
    caps, runs, summary, rc, seconds = _run(tmp_path, **settings)
    assert rc == 0 and summary[-1].endswith("280s budget: PASSED"), summary
    assert [stage for stage, _ in caps] == ["nvidia-smi", "info", "probe", "tests", *HOOKS]
    assert [line for line in summary if line.startswith("--")] == [
        "--   kernels: not asked for (GPUNN_CHECK_STAGES)", "--   train: not asked for (GPUNN_CHECK_STAGES)",
        "--   clip: not asked for (GPUNN_CHECK_STAGES)"]
    assert not any("gpunn bench" in run or "import matplotlib" in run for run in runs), runs
    cap = dict(caps)
    assert {k: cap[k] for k in ("tests", *HOOKS)} == {"tests": 130, "precision": 40, "ensemble": 60, "streams": 110,
                                                      "nccl": 40}, caps


def test_a_hook_not_asked_for_reserves_nothing_and_says_so_landed_or_not(tmp_path):
    """GPUNN_CHECK_STAGES="tests, streams," (spaces and an empty name are let pass) at 150 s, with the ensemble hook
    not landed: the tests stage keeps 30 s for the streams hook alone (120 less the seconds run, of its 130; with
    every stage's reserves it is skipped at 150 s), the streams hook gets its 40, and every other stage says it was
    not asked for, the absent ensemble hook too."""
    caps, runs, summary, rc, seconds = _run(tmp_path, hooks=("precision", "streams", "nccl"), GPUNN_CHECK_BUDGET="150",
                                            GPUNN_CHECK_STAGES="tests, streams,")
    assert rc == 0 and summary[-1].endswith("150s budget: PASSED"), summary
    cap = dict(caps)
    assert _about(cap["tests"], 120, seconds) and cap["streams"] == 40 and set(cap) & set(HOOKS) == {"streams"}, caps
    assert [line for line in summary if line.startswith("--")] == [
        f"--   {stage}: not asked for (GPUNN_CHECK_STAGES)" for stage in
        ("kernels", "train", "precision", "ensemble", "nccl", "clip")], summary


def test_the_dry_run_gives_its_hooks_the_gpus_max_seconds_and_60_s_more_before_the_cut(tmp_path):
    """GPUNN_CHECK_DEVICE=cpu: each hook's --max-seconds is the GPU's (its cap less 5 s) and it is cut 60 s after its
    cap; the ensemble hook gets the next GPU session's 90 s unless told otherwise; the train stage wants 60 s (51 for
    gpunn bench, which runs --device cpu --quick --peers naive: 30 s was passed at load ~10); the tests stage runs tests/test_backend.py."""
    caps, runs, summary, rc, seconds = _run(tmp_path, device="cpu")
    assert rc == 0, summary
    cap = dict(caps)
    assert "probe" not in cap and not any("probe_cuda" in run for run in runs)
    assert {h: cap[h] for h in HOOKS} == {"precision": 100, "ensemble": 150, "streams": 100, "nccl": 100}
    assert {h: _max_seconds(runs, f"gpu_checks/{h}.py") for h in HOOKS} == {
        "precision": 35, "ensemble": 85, "streams": 35, "nccl": 35}
    assert cap["train"] == 60 and _max_seconds(runs, "-m gpunn bench --device cpu --quick --peers naive") == 51
    assert any(run.startswith("-m pytest -q -m gpu") and "tests/test_backend.py" in run for run in runs), runs
    caps, runs, summary, rc, seconds = _run(tmp_path / "40", device="cpu", GPUNN_CHECK_ENSEMBLE_SECONDS="40")
    assert dict(caps)["ensemble"] == 100 and _max_seconds(runs, "gpu_checks/ensemble.py") == 35


@pytest.mark.parametrize("case", ["no GPU test passed", "tests cut", "probe", "hook", "hook cut", "report"])
def test_a_gpu_run_fails_on_what_it_could_not_show(tmp_path, case):
    """A tests stage in which no GPU test passed (all skipped: CuPy unusable), or ended by its time limit (exit 124:
    its line keeps the cap, why it may have been slow and the counts pytest printed), a probe that is not ok (the run
    stops at once, exit 3, nothing else run), a hook that fails or is cut at its cap, a report that cannot be built:
    each fails the run, and the stages after it still run."""
    env = {"no GPU test passed": dict(STUB_TESTS="12 skipped in 0.50s"), "tests cut": dict(STUB_RC_pytest="124"),
           "probe": dict(STUB_PROBE="no CUDA device"), "hook": dict(STUB_RC_streams="1"),
           "hook cut": dict(STUB_RC_streams="124"), "report": dict(STUB_RC_report="1")}[case]
    caps, runs, summary, rc, seconds = _run(tmp_path, **env)
    assert rc == (3 if case == "probe" else 1), summary
    if case == "probe":
        assert summary == ["FAIL device: CuPy is not usable, nothing else was run: no CUDA device"]
        assert [stage for stage, _ in caps] == ["nvidia-smi", "info", "probe"]
        return
    assert summary[-1].startswith("FAIL report" if case == "report" else "gpu_check on"), summary
    failed = [line for line in summary if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith({
        "no GPU test passed": "FAIL tests: no GPU test passed",
        "tests cut": f"FAIL tests: timed out after {dict(caps)['tests']}s (one at a time: no pytest-xdist): 3 passed in "
                     "0.01s (", "hook": "FAIL streams (exit 1):",
        "hook cut": f"FAIL streams: timed out, partial: {tmp_path / 'out' / 'streams.txt'} (",
        "report": "FAIL report:"}[case]), summary
    assert [stage for stage, _ in caps][-4:] == list(HOOKS)  # the stages after it still ran


def test_a_gpu_runs_default_row_without_its_graph_fails_the_train_stage_naming_it(tmp_path):
    """The train stage reads train.json (its own Python, run here for real): a default row whose graph was not
    captured ("graph not captured: why", gpunn bench's note) fails the stage with the configuration, dtype and why;
    rows with an empty note or none pass."""
    rows = [{"config": "small", "dtype": "float32", "note": "graph not captured: CUDARuntimeError: capture refused"},
            {"config": "small", "dtype": "bf16", "note": ""}, {"config": "large", "dtype": "float32"}]
    for name, results, want in (("fell back", rows, "FAIL train: the default CUDA graph was not captured: small "
                                 "float32: graph not captured: CUDARuntimeError: capture refused ("),
                                ("captured", rows[1:], "ok   train: ")):
        train = tmp_path / f"{name}.json"
        train.write_text(json.dumps({"results": results}))
        caps, runs, summary, rc, seconds = _run(tmp_path / name, STUB_TRAIN_JSON=str(train))
        (line,) = [line for line in summary if " train" in line]
        assert line.startswith(want) and rc == (1 if name == "fell back" else 0), summary


REFUSED_GEMM = "GPUNN_GEMM='bogus' is not auto, one of numpy, blis, mkl, or a comma list of them"
REFUSED_TIMEOUT = "GPUNN_DIST_TIMEOUT='0' is not a positive number of seconds"
# gpunn info's lines with two refused settings, as it prints them: a bad GPUNN_GEMM on its cpu gemm line and again in
# the environment line's block, whose second error line is indented under it
INFO_REFUSING = (f"gpunn           0.1.0\\ncpu gemm        error: {REFUSED_GEMM}\\ncupy            14.2.0\\n"
                 f"environment     error: {REFUSED_GEMM}\\n                error: {REFUSED_TIMEOUT}\\n"
                 "device          cuda:0 (NVIDIA H200)\\n")


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_a_setting_gpunn_info_refuses_stops_the_run_naming_each_error_once(tmp_path, device):
    """gpunn info exits 2 when a line says error (a GPUNN_ variable it refuses): the device stage ignored the status,
    so the GPU's one call ran every stage under the setting, each that reads it failing there. Now the run stops
    after the device stage (exit 3, as for CuPy not usable), its one line naming each of info's errors once with its
    line's name; the dry run alike. CuPy not usable is said first: it is why nothing could run."""
    caps, runs, summary, rc, seconds = _run(tmp_path, device, STUB_INFO=INFO_REFUSING, STUB_RC_info="2")
    assert rc == 3 and summary == [
        "FAIL device: gpunn info says error (exit 2: a setting it refuses, or a device it cannot run), nothing else was run: "
        f"cpu gemm: error: {REFUSED_GEMM}; environment: error: {REFUSED_TIMEOUT}"], summary
    assert [stage for stage, _ in caps] == ["nvidia-smi", "info", "probe"][:3 if device == "cuda" else 2]
    assert not any("-m pytest" in run or "gpu_report" in run for run in runs)
    caps, runs, summary, rc, seconds = _run(tmp_path / "no-cupy", STUB_INFO=INFO_REFUSING, STUB_RC_info="2",
                                            STUB_PROBE="CuPy is not installed")
    assert rc == 3 and summary == ["FAIL device: CuPy is not usable, nothing else was run: CuPy is not installed"]


@pytest.mark.parametrize("status, said", [("1", "gpunn info (exit 1): RuntimeError: boom ("),
                                          ("124", "gpunn info (exit 124: timed out after 60 s): RuntimeError: boom (")])
def test_gpunn_info_failing_otherwise_fails_the_device_stage_and_the_run_goes_on(tmp_path, status, said):
    """Another status of gpunn info (its own crash, or its 60 s cap: 124) says nothing of the settings, and CuPy was
    found usable: the device stage's line fails with the status and info's last line, and the stages after it run."""
    crashed = "Traceback (most recent call last):\\nRuntimeError: boom\\n"
    caps, runs, summary, rc, seconds = _run(tmp_path, STUB_INFO=crashed, STUB_RC_info=status)
    assert rc == 1 and summary[0].startswith(f"FAIL device: {said}"), summary
    assert [line.split()[0] for line in summary[:-2]] == ["FAIL"] + ["ok"] * (len(summary) - 3), summary
    assert summary[-2] == CLIP_NOT_LANDED, summary
    assert [stage for stage, _ in caps][-7:] == ["tests", "kernels", "train", *HOOKS]
    assert summary[-1].endswith("FAILED")


def test_a_run_removes_an_earlier_runs_files_so_a_stage_that_writes_none_leaves_none(tmp_path, capsys):
    """The default folder (bench/out) is reused: the script emptied only summary.txt, so a stage skipped for budget
    (here every one: a 1 s budget) or killed before it wrote left the earlier run's train.json, kernels.json, hook
    JSON and gpu_tests.xml beside this run's summary, to be read as this run's (and the train stage's own check of
    train.json read it where gpunn bench wrote none). The script now removes the files its stages write, by name,
    as it starts (nothing else in the folder), and the report of the run gives every target no figure. The files a
    hook writes beside its JSON in its folder (the nccl hook's .npy sources, the ensemble hook's later processes'
    JSON) went into the next run's gc.tgz as its own: removed too, by name."""
    from bench_scripts import load

    out = tmp_path / "out"
    shutil.copytree(ROOT / "tests" / "gpu_check_runs" / "cpu-dry-run", out)
    for name in _hook_files():
        (out / name).write_bytes(b"an earlier run's")
    (out / "ensemble" / "ensemble-bf16.json.tmp").write_bytes(b"an earlier run's, cut short")
    (out / "streams" / "rows.npy").write_bytes(b"not the script's")  # the user's stay, in a hook's folder too
    (out / "notes.txt").write_text("mine")
    caps, runs, summary, rc, seconds = _run(tmp_path, GPUNN_CHECK_BUDGET="1")
    assert rc == 1 and [line.split()[0] for line in summary[1:-2]] == ["SKIP"] * 7, summary
    assert summary[-2] == CLIP_NOT_LANDED, summary
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    # this run's device stage and report stage (the stand-ins') wrote their files anew; the rest are gone
    assert left == ["device.txt", "notes.txt", "report.err", "report.md", "streams/rows.npy", "summary.txt"], left
    assert "numpy" not in (out / "device.txt").read_text() and (out / "report.md").read_text() == ""
    targets = _read_report(load, out, capsys).split("### The open issues' GPU targets", 1)[1].split("###", 1)[0]
    assert targets.count("| not measured: `SKIP ") == 17, targets


def _hook_files():
    """gpu_check.sh's HOOK_FILES: what the hooks write into their folders besides NAME.json, removed as a run starts."""
    text = (ROOT / "bench" / "gpu_check.sh").read_text()
    return re.search(r'^HOOK_FILES="([^"]*)"$', text, re.M)[1].replace("\\\n", "").split()


def test_the_files_a_hook_writes_into_its_folder_are_those_a_run_removes_as_it_starts():
    """Every file name a hook's source writes (a .json or .npy literal) is its NAME.json, on gpu_check.sh's
    HOOK_FILES under its folder, or written elsewhere (the streams hook's .npy pairs: in a tempfile.mkdtemp folder
    it removes): a hook that starts writing another file into its folder fails here until the script removes it."""
    import ast

    elsewhere = {"streams": {"x.npy", "y.npy", "X.npy", "Y.npy"}}
    listed = _hook_files()
    for hook in (*HOOKS, "clip"):
        tree = ast.parse((ROOT / "bench" / "gpu_checks" / f"{hook}.py").read_text())
        names = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                 and isinstance(node.value, str) and re.fullmatch(r"[\w.-]+\.(json|npy)", node.value)}
        assert f"{hook}.json" in names
        assert names - {f"{hook}.json"} - elsewhere.get(hook, set()) == {
            name.split("/", 1)[1] for name in listed if name.startswith(f"{hook}/")}, hook


def test_a_run_its_device_stage_stopped_is_reported_as_such_not_as_killed(tmp_path, capsys):
    """CuPy not usable: the script stops after the device stage (exit 3), before its closing line, and the report
    took that for a kill ("did not finish", the tests stage "killed" in it)."""
    from bench_scripts import load

    caps, runs, summary, rc, seconds = _run(tmp_path, STUB_PROBE="CuPy is not installed")
    report = _read_report(load, tmp_path / "out", capsys)
    assert rc == 3 and "**FAILED: its device stage stopped the run**, nothing else was run." in report
    assert report.count("not measured: the device stage stopped the run before it (`FAIL device: CuPy is not usable")
    assert "killed" not in report and "did not finish" not in report


def _read_report(load, out, capsys):
    assert load("bench/gpu_report.py", "gpu_report").main([str(out)]) == 0
    return capsys.readouterr().out
