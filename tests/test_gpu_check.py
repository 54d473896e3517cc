"""bench/gpu_check.sh's precision hook (bench/gpu_checks/precision.py) and its report (bench/gpu_report.py).

The hook's GPU code runs here on tests/fakecupy (the -m gpu pass of CI, at --quick sizes) and on a GPU in
gpu_check.sh's tests stage; the report runs on checked-in gpu_check output folders: one of CI's CPU dry
run, and one rebuilt from the H200 run that bench/RESULTS.md records.
"""
from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import re
import shutil
import statistics

import numpy
import pytest
import waiting

from bench_scripts import load as _load

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_precision_hook_measures_the_emulated_precisions_on_the_cpu(tmp_path, capsys):
    assert _load("bench/gpu_checks/precision.py", "precision_hook").main(["--device", "cpu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "precision.json").read_text())
    assert set(report["members"]) == {"tf32 gelu gradients", "tf32 relu adam", "bf16 gelu gradients", "bf16 relu adam"}
    assert all(e["worst"] == 0.0 and e["ok"] for e in report["members"].values())  # the emulation: bit for bit
    assert set(report["r2"]["r2"]) == {"float32", "tf32", "bf16"} and set(report["skipped"]) == {"gemm", "alignment"}
    assert "precision: pass" in capsys.readouterr().out


@pytest.mark.gpu
def test_the_nccl_hooks_shard_reads_check_passes_on_the_cupy_path(gpu, tmp_path):
    """bench/gpu_checks/nccl.py's shard-read check: on the GPU a .npy source's windows are shuffled by hashes of
    the row numbers (gpunn.rng.hash_permutation), so the rows come in another order than on the CPU; the check
    compared them in order, so it could only fail on a GPU (it ran only with --device cpu in CI's dry run)."""
    assert _load("bench/gpu_checks/nccl.py", "nccl_hook").shard_reads_interleave("cuda", str(tmp_path))


@pytest.mark.gpu
def test_the_precision_hook_answers_each_question_on_the_cupy_path(gpu, tmp_path, capsys):
    """Every part at small sizes: the contract's gelu gradients and graph case per precision, the six batched GemmEx
    calls (eager and captured), the R² and the packed/padded timing."""
    assert _load("bench/gpu_checks/precision.py", "precision_hook").main(
        ["--device", "cuda", "--out", str(tmp_path), "--quick", "--max-seconds", "600"]) == 0
    report = json.loads((tmp_path / "precision.json").read_text())
    members = report["members"]
    assert set(members) == {f"{p} gelu {case}" for p in ("tf32", "bf16") for case in ("gradients", "adamw graph")}
    assert all(e["ok"] and e["worst"] <= e["tolerance"] for e in members.values()), members
    assert all(e["captured"] for name, e in members.items() if name.endswith("graph")), members
    assert len(report["gemm"]) == 6 and all(e["accepted"] and e["ok"] for e in report["gemm"].values()), report["gemm"]
    assert {k.rsplit(", ", 1)[1] for k in report["gemm"]} == {"eager", "captured"}
    assert report["alignment"]["per_member"] == 5313 and report["alignment"]["padded"] == 5320
    assert report["alignment"]["packed_us"] > 0 and not report["skipped"]
    assert report["quick"] is True  # gpu_report gives --quick's sizes no verdict
    assert "precision: pass" in capsys.readouterr().out


def _clip_hook(monkeypatch):
    """bench/gpu_checks/clip.py with tiny nets (one MLP: 3 clips and onecycle; an Ensemble of 3: 2 and onecycle), 3
    steps an epoch, 3 rounds."""
    hook = _load("bench/gpu_checks/clip.py", "clip_hook")
    monkeypatch.setattr(hook, "ROUNDS", 3)
    monkeypatch.setattr(hook, "nets", lambda gpu: [
        ("t", [4, 6, 1], 1, 8, 3, ("unclipped", "clip_norm", "clip_value", "onecycle")),
        ("t-x3", [4, 6, 1], 3, 8, 3, ("unclipped", "clip_norm", "onecycle"))])
    return hook


@pytest.mark.slow
def test_the_clip_hook_times_each_clip_against_the_unclipped_step_paired_by_round(tmp_path, monkeypatch, capsys):
    """Each net's clipped cases against its unclipped one: every round times each case's epoch, and a ratio is the
    median over rounds of the clipped case's time over the unclipped one's of the same round."""
    hook = _clip_hook(monkeypatch)
    assert hook.main(["--device", "cpu", "--out", str(tmp_path), "--max-seconds", "600"]) == 0
    report = json.loads((tmp_path / "clip.json").read_text())
    assert report["finished"] and not report["errors"] and report["device"].startswith("cpu")
    nets = report["nets"]
    assert set(nets["t"]["ratio"]) == {"clip_norm", "clip_value", "onecycle"}
    assert set(nets["t-x3"]["ratio"]) == {"clip_norm", "onecycle"}
    for net in nets.values():
        us = net["us_per_step"]
        assert all(len(times) == 3 and min(times) > 0 for times in us.values()), us
        for clip, ratio in net["ratio"].items():
            assert ratio == pytest.approx(statistics.median(c / u for c, u in zip(us[clip], us["unclipped"])))
    out = capsys.readouterr().out
    assert out.count("(paired by round over 3 rounds: ") == 5 and out.rstrip().endswith("clip check: PASS"), out
    assert out.count("schedule onecycle ") == 2, out


@pytest.mark.gpu
def test_the_clip_hooks_every_case_is_its_captured_graph_on_the_cupy_path(gpu, tmp_path, monkeypatch):
    """On CUDA (the stand-in, and the GPU's tests stage) every case's step, clipped, scheduled per step or neither,
    replays its CUDA graph."""
    hook = _clip_hook(monkeypatch)
    assert hook.main(["--device", "cuda", "--out", str(tmp_path), "--max-seconds", "600"]) == 0
    nets = json.loads((tmp_path / "clip.json").read_text())["nets"]
    assert all(set(net["step"].values()) == {"CUDA graph"} for net in nets.values()), nets


@pytest.mark.gpu
def test_the_clip_hook_fails_where_a_clip_breaks_the_capture(gpu, tmp_path, monkeypatch, capsys):
    """Where the clip cannot be captured (one MLP's clip_norm by CuPy's generic expressions, as before
    kernels/optimizers.cu's clip kernels: the stand-in's capture refuses them, as it records only raw kernels, copies
    and cuBLAS calls), "auto" trains eagerly without a word, and the hook fails, naming the clip: its ratio would be
    the eager step's. The stand-in's only: on a GPU those expressions may well be captured."""
    from stand_in import is_stand_in

    if not is_stand_in(gpu.xp):
        pytest.skip("the stand-in's capture refuses CuPy's generic expressions; a GPU's need not")
    hook = _clip_hook(monkeypatch)
    from gpunn.ops import Ops
    from gpunn.ops.cuda import CupyOps

    monkeypatch.setattr(CupyOps, "clip_grad_norm", Ops.clip_grad_norm)
    assert hook.main(["--device", "cuda", "--out", str(tmp_path), "--max-seconds", "600"]) == 1
    nets = json.loads((tmp_path / "clip.json").read_text())["nets"]
    assert nets["t"]["step"]["clip_norm"].startswith("eager: ") and nets["t"]["step"]["unclipped"] == "CUDA graph"
    out = capsys.readouterr().out
    assert "NOT CAPTURED with: clip_norm\n" in out and out.rstrip().endswith("clip check: FAIL"), out


# ---- bench/gpu_report.py ----------------------------------------------------------------------------------

RUNS = ROOT / "tests" / "gpu_check_runs"


def _report(folder, *args, capsys):
    assert _load("bench/gpu_report.py", "gpu_report").main([str(folder), *args]) == 0
    return capsys.readouterr().out


def _targets(markdown):
    """{target: (measured, verdict)} from the report's targets table."""
    table = markdown.split("### The open issues' GPU targets", 1)[1].split("###", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| 1")]
    return {cells[1]: (cells[2], cells[3].rstrip(" |").strip()) for cells in rows}


def test_the_rebuilt_h200_run_prints_as_results_md_recorded_it():
    """The fixture holds RESULTS.md's numbers and no others: its rows print as that section's table."""
    from gpunn import bench

    train = json.loads((RUNS / "h200-2026-11-28" / "train.json").read_text())
    results_md = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    assert bench.format_table(train["results"]) in results_md
    assert (RUNS / "h200-2026-11-28" / "summary.txt").read_text() in results_md


def test_the_report_of_the_h200_run_gives_each_target_its_value_and_verdict(capsys):
    out = _report(RUNS / "h200-2026-11-28", "--add", f"streams={RUNS / 'h200-2026-11-28' / 'streams-long.json'}",
                  capsys=capsys)
    assert out.startswith("## `bench/gpu_check.sh` — NVIDIA H200 (143771 MiB), driver 580.159.04, CuPy 14.2.0, "
                          "torch 2.11.0+cu130 — 2026-11-28 18:43 UTC\n")
    assert "on commit e381b4e: **PASSED in 218 s** of a 420 s budget." in out
    t = _targets(out)
    # the hand-made table of RESULTS.md, from the same rows (ratios of the default rows' medians)
    assert t["large tf32 ≥ 3× float32"] == ("850,066 / 155,556 = 5.46×", "met")
    assert t["large bf16 ≥ 5× float32"] == ("1,681,106 / 155,556 = 10.81×", "met")
    assert t["large bf16 ≥ 1.0× PyTorch bf16 autocast"] == ("1,681,106 / 1,621,573 = 1.04×", "met")
    assert t["large float32 ≥ 85% of the same-shape SGEMM"][1] == "met"
    assert t["small ≥ 3× PyTorch eager with the graph (the default step)"] == ("1,904,072 / 76,020 = 25.05×", "met")
    assert t["medium ≥ 1.2× PyTorch eager (the eager step)"] == ("341,618 / 152,601 = 2.24×", "met")
    graph = next(v for k, v in t.items() if k.startswith("the default step is a captured CUDA graph"))
    assert "small float32 11.53×" in graph[0] and "deep float32 4.76×" in graph[0] and graph[1] == "met"
    assert t["K=256 small nets ≥ 3× the torch vmap ensemble"] == ("eager 2.55×", "**not met**")
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"][1] == "met"
    stream = t["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
    assert "0.86× in memory" in stream[0] and "1,000,000,000 rows" in stream[0] and stream[1] == "**not met**"
    assert next(v for k, v in t.items() if k.startswith(".npy on the large"))[0].startswith("not measured")
    assert next(v for k, v in t.items() if k.startswith("a one-rank NCCL run")) == ("3 of 3 checks passed", "met")
    held_out = next(v for k, v in t.items() if k.startswith("tf32 and bf16 reach"))
    assert held_out == ("not measured: this run had no precision stage", "")
    assert "the ensemble hook took 31 s" in out  # 204 s - 173 s, from summary.txt
    assert "small   cuda:0  gpunn (cuda:0) graph" in out  # the stage's table


def test_the_report_of_the_cpu_dry_run_measures_no_gpu_target(capsys):
    """CI's dry run: every part is read, and no GPU target is called met or not met from CPU numbers."""
    out = _report(RUNS / "cpu-dry-run", capsys=capsys)
    assert out.startswith("## `bench/gpu_check.sh` — no nvidia-smi, no CuPy, no torch — 2026-11-29")
    assert "**PASSED in" in out
    t = _targets(out)
    assert len(t) == 17
    assert all(verdict == "" for _, verdict in t.values()), t
    assert t["large tf32 ≥ 3× float32"][0] == "not measured: no large rows in train.json (configurations run: tiny)"
    # the precision hook's R² ran in the CPU's emulation of tf32/bf16 (2 epochs, R² 0.14): no verdict on it
    held_out = next(v for k, v in t.items() if k.startswith("tf32 and bf16 reach"))[0]
    assert held_out.startswith("not measured on a GPU: float32 0.1360") and "cpu (NumPy)" in held_out
    assert "tf32 relu adam: 0 (bound 0.0001, within)" in out  # the precision hook's values
    assert "**precision hook**" in out and "**nccl hook**" in out and "| adam step | 2^12 |" in out
    assert '"communicator":' not in out  # nccl.txt's JSON dump is left out of the hook's lines


def _refused(token):
    raise ValueError(f"{token} is not JSON")


def _reports_with_nan_and_null(tmp_path, capsys, edit):
    """The H200 run's report twice, with the JSON files that ``edit(run)`` returns ({path: data}, NaN in it) written
    as before 2026-12-02 (NaN) and as now (strict JSON, null): gpunn bench's train.json, the hooks' others."""
    from gpunn.bench.report import write_json

    hook_args = _load("bench/gpu_checks/hook_args.py", "hook_args_for_nulls")
    reports = []
    for how in ("NaN", "null"):
        run = tmp_path / how
        shutil.copytree(RUNS / "h200-2026-11-28", run)
        (run / "precision").mkdir()
        for path, data in edit(run).items():
            if how == "NaN":
                path.write_text(json.dumps(data))
            else:
                write_json(data, path) if path.name == "train.json" else hook_args.write_json(path, data)
                json.loads(path.read_text(), parse_constant=_refused)  # strict JSON
        summary = (run / "summary.txt").read_text().replace("\n", "\nok   precision: precision.txt (5s)\n", 1)
        (run / "summary.txt").write_text(summary)
        reports.append(_report(run, capsys=capsys))
    return reports


def test_a_figure_not_measured_reads_the_same_as_null_as_it_did_as_nan(tmp_path, capsys):
    """gpunn bench and the hooks wrote a figure they did not measure (nan) as NaN, which is not JSON (jq, JSON.parse
    and Go refuse it); they write null now, and the report reads such a file as it reads the older NaN ones: the
    H200 run's rows with graph_speedup, others_cpu and spread not measured, its precision part with bf16 unscored."""
    def edit(run):
        train = json.loads((run / "train.json").read_text())
        for r in train["results"]:
            r.update(graph_speedup=math.nan, others_cpu=math.nan, spread=[math.nan, math.nan])
        precision = json.loads((RUNS / "cpu-dry-run" / "precision" / "precision.json").read_text())
        precision["r2"]["r2"]["bf16"] = math.nan
        return {run / "train.json": train, run / "precision" / "precision.json": precision}

    reports = _reports_with_nan_and_null(tmp_path, capsys, edit)
    assert reports[0] == reports[1]
    assert "graph over eager (ratios of medians): small float32 11.53×" in reports[1]
    assert "bf16 nan (+nan)" in reports[1]


def test_a_hooks_check_that_met_nan_reads_as_nan_from_null_not_as_not_measured(tmp_path, capsys):
    """A check's figure is NaN where the GPU's numbers were (NaN weights, a NaN product): the hooks write it null now,
    and the report read that null as no figure, failing to format a member's or a GEMM's (TypeError) or saying the
    ensemble's exactness was "not measured", where the NaN of an older file fails the check."""
    def edit(run):
        ensemble = json.loads((run / "ensemble" / "ensemble.json").read_text())
        ensemble.update(exactness_max_rel_err=math.nan, exact=False)
        precision = json.loads((RUNS / "cpu-dry-run" / "precision" / "precision.json").read_text())
        precision["members"]["bf16 relu adam"].update(worst=math.nan, ok=False)
        precision["gemm"] = {"bf16, eager": {"accepted": True, "rel_err": math.nan, "ok": False}}
        return {run / "ensemble" / "ensemble.json": ensemble, run / "precision" / "precision.json": precision}

    reports = _reports_with_nan_and_null(tmp_path, capsys, edit)
    assert reports[0] == reports[1]
    assert "bf16 relu adam: nan (bound 0.02" in reports[1]
    assert "bf16, eager: nan" in reports[1]
    exactness = next(v for k, v in _targets(reports[1]).items() if k.startswith("each member equals its MLP"))
    assert exactness == ("nan (cuda)", "**not met**")

def test_a_cpu_runs_large_rows_get_no_gpu_verdict(tmp_path, capsys):
    """Issue 10's throughput targets read train.json's large/small/medium rows without their device: a CPU
    bench with those configurations got 'met'/'not met' from NumPy numbers."""
    for name in ("summary.txt", "device.txt", "gpu_tests.xml"):
        (tmp_path / name).write_bytes((RUNS / "cpu-dry-run" / name).read_bytes())
    data = json.loads((RUNS / "cpu-dry-run" / "train.json").read_text())
    gpunn_row = next(r for r in data["results"] if r["impl"] == "gpunn")
    data["results"] = [dict(gpunn_row, config=config, impl=impl, graph=graph)
                       for config in ("large", "small", "medium") for impl, graph in
                       (("gpunn", ""), ("gpunn", "eager"), ("torch", ""))]
    (tmp_path / "train.json").write_text(json.dumps(data))
    t = _targets(_report(tmp_path, capsys=capsys))
    assert t["large float32 ≥ 85% of the same-shape SGEMM"] == ("not measured on a GPU: 62% (15 of 27 GFLOP/s) (cpu)",
                                                                "")
    assert t["large float32 ≥ 0.95× PyTorch eager"][0].startswith("not measured on a GPU: 1,927,803 / 1,927,803")
    assert all(verdict == "" for _, verdict in t.values()), t
    data["results"].append(dict(data["results"][0], backend="cuda:0"))  # a bench on both: the GPU's row is read
    (tmp_path / "train.json").write_text(json.dumps(data))
    t = _targets(_report(tmp_path, capsys=capsys))
    assert t["large float32 ≥ 85% of the same-shape SGEMM"] == ("62% (15 of 27 GFLOP/s)", "**not met**")


def _folder_of(device):
    """A checked-in run's folder on the kind of device a hook JSON's ``device`` names (--add refuses another kind)."""
    return RUNS / ("h200-2026-11-28" if device.startswith("cuda") else "cpu-dry-run")


def test_a_cpu_streams_10_9_rows_get_no_gpu_verdict(tmp_path, capsys):
    """Issue 12's 10^9-row target read the row count, not the device: a CPU stream that long was judged."""
    streams = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    for device, verdict in (("cpu (NumPy)", ""), (streams["device"], "**not met**")):
        (tmp_path / "streams.json").write_text(json.dumps(dict(streams, device=device)))
        t = _targets(_report(_folder_of(device), "--add", f"streams={tmp_path / 'streams.json'}", capsys=capsys))
        measured, got = t["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
        assert got == verdict and "1,000,000,000 rows" in measured, measured
    assert measured.endswith("GiB") and "not measured on a GPU (cpu (NumPy))" not in measured


def test_a_cpu_streams_large_npy_part_is_measured_without_a_verdict(tmp_path, capsys):
    """Issue 12's .npy row of a CPU run put "not measured on a GPU" in the verdict column, where every other row
    puts it beside the value measured, and leaves the verdict empty."""
    large = {"config": "large", "rows": 40_000, "ratio": 0.95}
    old = "0.95× in memory (one epoch of each, not paired; large, 40,000 rows)"  # (its JSON has no rounds)
    for device, measured, verdict in (("cpu (NumPy)", old + ": not measured on a GPU (cpu (NumPy))", ""),
                                      ("cuda:0 (NVIDIA H200, CuPy 14.2.0)", old, "met")):
        (tmp_path / "streams.json").write_text(json.dumps({"device": device, "throughput": {"npy_large": large}}))
        t = _targets(_report(_folder_of(device), "--add", f"streams={tmp_path / 'streams.json'}", capsys=capsys))
        assert next(v for k, v in t.items() if k.startswith(".npy on the large")) == (measured, verdict)


def test_a_gpu_streams_ratio_of_a_graph_step_and_an_eager_one_is_not_judged(tmp_path, capsys):
    """The default CUDA graph falls back silently. Where one of the two timed fits ran eagerly and the other as a
    graph (about 10x apart for the small net on the H200), the ratio measures the step, not the data path: no
    verdict, and the steps named with the fallback's reason; both eager is a fair ratio, said beside it."""
    eager = "eager: capture failed: CUDARuntimeError: cudaErrorStreamCaptureUnsupported"
    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    cases = (({"npy": "graph", "memory": "graph"}, "", "met"),
             ({"npy": eager, "memory": "graph"}, f"; not judged: npy's step {eager}, memory's step graph", ""),
             ({"npy": eager, "memory": eager}, f"; npy's step {eager}, memory's step {eager}", "met"))
    for steps, words, verdict in cases:
        large = hook.with_steps({"config": "large", "rows": 40_000, "ratio": 0.95}, **steps)
        (tmp_path / "streams.json").write_text(json.dumps({"device": "cuda:0 (NVIDIA H200, CuPy 14.2.0)",
                                                           "throughput": {"npy_large": large}}))
        t = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                             capsys=capsys))
        assert next(v for k, v in t.items() if k.startswith(".npy on the large")) == (
            "0.95× in memory (one epoch of each, not paired; large, 40,000 rows)" + words, verdict)
    long = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    long["throughput"]["synthetic_long"] = hook.with_steps(long["throughput"]["synthetic_long"], memory="graph",
                                                           stream=eager)
    (tmp_path / "streams.json").write_text(json.dumps(long))
    measured, verdict = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                                         capsys=capsys))["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
    assert verdict == "" and measured.endswith(f"; not judged: memory's step graph, stream's step {eager}"), measured


def test_a_gpu_streams_ratio_whose_data_checks_failed_is_not_met(tmp_path, capsys):
    """A fast stream of wrong rows meets nothing: where the streams hook's checks of a source's rows (made's rows,
    exact replay; rows arriving intact through the .npy pipeline) failed or raised, its throughput target is not met,
    whatever the ratio, and the row says which check. The other source's checks do not count against it."""
    large = {"config": "large", "rows": 40_000, "ratio": 0.95}
    long = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())["throughput"]["synthetic_long"]
    long = dict(long, ratio=0.95)  # (the H200's 10^9-row stream ran 0.86x: not met on its own)
    cases = (({"npy_rows_arrive_intact": True, "synthetic_rows_are_makes": True}, {}, "met", "met", ""),
             ({"npy_rows_arrive_intact": False, "synthetic_rows_are_makes": True}, {}, "met", "**not met**",
              "; its data checks failed: npy_rows_arrive_intact"),
             ({"synthetic_resume_replays": False}, {}, "**not met**", "met", ""),
             ({}, {"npy checks": "RuntimeError: boom"}, "met", "**not met**",
              "; its data checks failed: npy checks (RuntimeError: boom)"))
    for checks, errors, long_verdict, npy_verdict, npy_words in cases:
        (tmp_path / "streams.json").write_text(json.dumps({
            "device": "cuda:0 (NVIDIA H200, CuPy 14.2.0)", "checks": checks, "errors": errors,
            "throughput": {"npy_large": large, "synthetic_long": long}}))
        t = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                             capsys=capsys))
        measured, verdict = next(v for k, v in t.items() if k.startswith(".npy on the large"))
        unpaired = "0.95× in memory (one epoch of each, not paired; large, 40,000 rows)"  # (no rounds in its JSON)
        assert (measured, verdict) == (unpaired + npy_words, npy_verdict)
        measured, verdict = t["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
        assert verdict == long_verdict and ("data checks failed" in measured) == (long_verdict != "met"), measured


def test_a_sticky_cuda_error_in_the_ensemble_benchmark_is_named_with_where_it_came_first(tmp_path, capsys):
    """After a sticky CUDA error (an illegal address, a kernel's assert...) every later CUDA call of the process fails
    with it, so a benchmark that failed with one may have been poisoned by a check before it in its process: the
    report names the error as sticky, and where it came first: in the eager process the exactness check or the
    benchmark's rows, in the graph process (ensemble.py --graph-rows) the graph check or that process's rows."""
    sticky = ("CUDARuntimeError: cudaErrorIllegalAddress: an illegal memory access was encountered")
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    saved = tmp_path / "run" / "ensemble" / "ensemble.json"
    words = "cudaErrorIllegalAddress is a sticky CUDA error: every later CUDA call of the process fails with it"
    for exactness, graph, first in (
            (None, sticky, "a row of the benchmark (the eager ensemble, a peer) caused it"),
            (sticky, None, "the exactness check (an Ensemble against its members' MLPs) failed with it before")):
        saved.write_text(json.dumps({"device": "cuda", "exact": exactness is None, "exactness_error": exactness,
                                     "graph": {"error": graph} if graph else {"captured": True},
                                     "benchmark_error": sticky}))
        out = _report(tmp_path / "run", capsys=capsys)
        assert _targets(out)["K=256 small nets ≥ 50× K sequential gpunn fits"][0] == (
            f"not measured: no sequential row in ensemble.json: the benchmark failed: {sticky} ({words}; {first})")
    eager = {"sequential": {"speedup": 180.0, "target": 50.0}, "torch-vmap": {"speedup": 2.5, "target": 3.0}}
    for exactness, graph, first in (
            (sticky, None, "a row of that process (the ensemble's graph row, its eager row, torch vmap) caused it"),
            (None, sticky, "the ensemble's CUDA graph check failed with it before")):
        saved.write_text(json.dumps({"device": "cuda", "exact": exactness is None, "exactness_error": exactness,
                                     "targets": eager, "graph": {"error": graph} if graph else {"captured": True},
                                     "graph_error": sticky}))
        out = _report(tmp_path / "run", capsys=capsys)
        assert _targets(out)["K=256 small nets ≥ 3× the torch vmap ensemble"] == (
            f"eager 2.50×, the graph rows failed: {sticky} ({words}; {first})", "")
        check = f"the check failed: {graph}" if graph else "captured (cuda)"
        assert f"is captured and trains as the eager step | {check} |" in out


def test_a_killed_run_says_so_and_its_missing_stages_are_not_measured(tmp_path, capsys):
    for name in ("summary.txt", "device.txt", "gpu_tests.xml"):
        (tmp_path / name).write_bytes((RUNS / "cpu-dry-run" / name).read_bytes())
    lines = (tmp_path / "summary.txt").read_text().splitlines()
    (tmp_path / "summary.txt").write_text("\n".join(lines[:2]) + "\n")  # killed during the kernels stage
    out = _report(tmp_path, capsys=capsys)
    assert "**The run did not finish** (summary.txt has no closing line: the script was killed, in its kernels " \
           "stage)." in out
    t = _targets(out)
    assert t["large bf16 ≥ 5× float32"] == ("not measured: not reached: the run was killed in its kernels stage, "
                                            "before this one", "")
    assert "member vs MLP" in out and "not reached: the run was killed in its kernels stage" in out


def test_a_stage_skipped_killed_or_not_reached_reads_no_earlier_runs_files(tmp_path, capsys):
    """bench/out is reused: a stage that wrote nothing in this run (skipped for budget, not reached after a kill)
    had the earlier run's files in the folder read as its own: the H200's train.json gave a rerun issue 10's
    figures and verdicts. Only a stage whose line says it ran, or the one the run was killed in (whose files it
    rewrote as it went: gpu_check.sh removes the earlier run's as it starts), is read; the one killed says so."""
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    summary = tmp_path / "run" / "summary.txt"
    lines = summary.read_text().splitlines()
    skipped = [re.sub(r"^ok   (train|ensemble): .*$", r"SKIP \1: no budget left (the run is incomplete: it fails) (99s)",
                      line) for line in lines]
    summary.write_text("\n".join(skipped) + "\n")
    out = _report(tmp_path / "run", capsys=capsys)
    t = _targets(out)
    skip = "not measured: `SKIP train: no budget left (the run is incomplete: it fails) (99s)`"
    assert t["large bf16 ≥ 5× float32"] == (skip, "") and t["small ≥ 1.2× PyTorch eager (the eager step)"] == (skip, "")
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"][0].startswith("not measured: `SKIP ensemble")
    assert "**Training throughput**" not in out and "**ensemble hook**" not in out and "1,681,106" not in out
    assert "torch: not run in this call" in out.splitlines()[0]  # nor train.json's torch, nor "unknown"
    assert t["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"][0].startswith("not measured")  # its own
    summary.write_text("\n".join(lines[:3]) + "\n")  # killed in the train stage: its train.json (this run's) read
    out = _report(tmp_path / "run", capsys=capsys)
    t = _targets(out)
    assert "killed, in its train stage)" in out and t["large bf16 ≥ 5× float32"][0].startswith("1,681,106")
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"] == (
        "not measured: not reached: the run was killed in its train stage, before this one", "")
    assert "**ensemble hook**" not in out and "**nccl hook**" not in out
    (tmp_path / "run" / "train.json").unlink()
    assert _targets(_report(tmp_path / "run", capsys=capsys))["large bf16 ≥ 5× float32"] == (
        "not measured: killed: the run ended while its train stage ran (summary.txt has no train line); no "
        "train.json", "")


def test_every_fit_of_the_nccl_hook_says_whether_it_is_data_parallel():
    """The hook runs under mpiexec, and rank 0's one-process reference fits left distributed out: since fit warns of
    that under a launcher (each rank training the whole run, 532d9d3), the hook's log said so of its own references."""
    import ast

    tree = ast.parse((ROOT / "bench" / "gpu_checks" / "nccl.py").read_text())
    saying = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
              and any(k.arg == "distributed" for k in node.value.keywords) for target in node.targets}  # kw = dict(...)
    fits = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "fit"]
    assert len(fits) >= 6 and "kw" in saying
    assert [ast.unparse(f)[:70] for f in fits if not any(
        k.arg == "distributed" or k.arg is None and getattr(k.value, "id", None) in saying for k in f.keywords)] == []


def test_the_nccl_hooks_largest_difference_is_nan_where_one_is():
    """Its checks took Python's max of the runs' differences, which drops a NaN that is not first: an Ensemble check
    whose bootstrapped run came out NaN passed at the arrays run's 1e-12."""
    largest = _load("bench/gpu_checks/nccl.py", "nccl_hook_for_nan").largest
    assert math.isnan(largest({"arrays": 1e-12, "bootstrap": math.nan, "npy source": 2e-12}.values()))
    assert not largest([1e-12, math.nan]) < 1e-10 and largest([1e-12, 3e-11]) == 3e-11


def test_a_nccl_hook_cut_short_after_passing_checks_is_not_met(tmp_path, capsys):
    """The nccl hook rewrites nccl.json after each check, so a hook ended part-way (its stage timed out, or the call
    ran out of time in it) leaves only the checks before the cut, all passed: the report counted them and said
    "met" for issue 13, whose later checks (a source's shards, the Ensemble's fits) never ran. Only a hook that
    finished (its stage line "ok", or, for an --add file no summary line speaks for, the last thing it writes)
    gets a verdict; a failed check is "not met" whether or not it finished."""
    target = "a one-rank NCCL run: communicator, all-reduce and broadcast, distributed fits equal to one process"
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    summary = tmp_path / "run" / "summary.txt"
    lines = summary.read_text().splitlines()
    cut = "FAIL nccl: timed out, partial: /tmp/gc/nccl.txt"
    for text, words in (("\n".join(line if not line.startswith("ok   nccl") else cut for line in lines),
                         f"incomplete: `{cut}`"),  # the stage ended at its cap
                        ("\n".join(lines[:6]), "incomplete: killed: the run ended while the nccl hook ran (summary.txt has no nccl "
                                               "line)")):
        summary.write_text(text + "\n")
        measured, verdict = _targets(_report(tmp_path / "run", capsys=capsys))[target]
        assert measured == f"3 of 3 checks passed; {words}" and verdict == "", measured
    saved = tmp_path / "run" / "nccl" / "nccl.json"
    nccl = json.loads(saved.read_text())
    for check, words in (("NCCL communicator", "not measured on a GPU with NCCL: 2 of 3 checks passed; failed: "),
                         ("in-place all-reduce and broadcast", "2 of 3 checks passed; failed: ")):
        saved.write_text(json.dumps(dict(nccl, checks=dict(nccl["checks"], **{check: False}))))
        measured, verdict = _targets(_report(tmp_path / "run", capsys=capsys))[target]
        assert measured == words + check and verdict == "**not met**", measured  # the failure, not the cut, named
    saved.unlink()  # a later call's nccl.json: finished when the hook's last save wrote "finished": true
    added = tmp_path / "nccl.json"
    timing = {"medium_float32_step_us": {"plain": 410.2, "distributed": 431.0}, "hook_cost_us_per_step": 20.8}
    for extra, verdict in (({}, ""), (timing, ""), ({**timing, "finished": False}, ""),
                           ({**timing, "finished": True}, "met")):
        added.write_text(json.dumps({**{k: v for k, v in nccl.items() if k != "finished"}, **extra}))
        measured, got = _targets(_report(tmp_path / "run", "--add", f"nccl={added}", capsys=capsys))[target]
        cost = "; the hook costs 20.8 us per medium float32 step" if extra else ""
        assert got == verdict and measured == "3 of 3 checks passed" + cost + (
            "" if verdict else "; incomplete: the --add file has no 'finished' (the hook's last record)"), measured


def test_a_train_json_cut_short_gets_no_graph_verdict_for_every_configuration(tmp_path, capsys):
    """gpunn bench rewrites train.json after each configuration ("complete": false until the end), so a train stage
    ended at its cap leaves the first configurations' rows: issue 10's "captured CUDA graph on every configuration"
    read them and said "met" for configurations that never ran. Now no verdict, saying so; one slower than its
    eager row is still "not met"."""
    target = ("the default step is a captured CUDA graph on every configuration, never slower than eager (≥ 0.95×: "
              "at large the GEMMs dominate and the two are equal)")
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    train = json.loads((tmp_path / "run" / "train.json").read_text())
    small_medium = [r for r in train["results"] if r["config"] in ("small", "medium")]
    for complete, verdict in ((False, ""), (True, "met"), (None, "met")):  # None: a bench before "complete" (c00b728),
        kept = {"complete": complete} if complete is not None else {}  # which wrote train.json once, at its end
        (tmp_path / "run" / "train.json").write_text(json.dumps(
            dict({k: v for k, v in train.items() if k != "complete"}, results=small_medium, **kept)))
        measured, got = _targets(_report(tmp_path / "run", capsys=capsys))[target]
        assert got == verdict and "medium float32 9.00×" in measured and "deep" not in measured, measured
        assert measured.endswith("; incomplete: train.json was last written after small, medium (the bench was cut "
                                 "before its end)") == (complete is False), measured
    slow = next(r for r in small_medium if r["config"] == "small" and r["graph"] == "eager" and r["dtype"] == "bf16")
    for speedup, complete, verdict in ((0.9, False, "**not met**"), (0.95, True, "met"), (0.9499, True, "**not met**")):
        slow["graph_speedup"] = speedup  # never slower than eager: at least 0.95x
        (tmp_path / "run" / "train.json").write_text(json.dumps(dict(train, results=small_medium, complete=complete)))
        measured, got = _targets(_report(tmp_path / "run", capsys=capsys))[target]
        assert got == verdict and f"small bf16 {speedup:.2f}×" in measured, measured

def test_a_default_row_that_ran_without_its_graph_is_not_captured(tmp_path, capsys):
    """gpunn bench writes a default (graph) row whose CUDA graph was not captured as graph "eager", with the note
    "graph not captured: why" (gpu_check.sh's train stage fails on it). The report took every "eager" row for the
    --eager step: the fallen-back row left issue 10's "captured CUDA graph on every configuration" target, which
    said "met", and the bench's own order (the default row first) made it the eager step's row."""
    note = "graph not captured: CUDARuntimeError: cudaErrorStreamCaptureUnsupported"
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    train = json.loads((tmp_path / "run" / "train.json").read_text())
    rows = train["results"]
    default = next(r for r in rows if r["config"] == "small" and r["dtype"] == "float32" and r["graph"] == "graph")
    eager = next(r for r in rows if r["config"] == "small" and r["dtype"] == "float32" and r["graph"] == "eager")
    default.update(graph="eager", note=note, samples_per_s=0.9 * eager["samples_per_s"])
    rows.remove(default)
    (tmp_path / "run" / "train.json").write_text(json.dumps(dict(train, results=[default, *rows])))
    t = _targets(_report(tmp_path / "run", capsys=capsys))
    measured, verdict = next(v for k, v in t.items() if k.startswith("the default step is a captured"))
    assert measured.startswith(f"NOT captured: small float32 ({note}); graph over eager (ratios of medians): "
                               "small tf32") and (
        verdict == "**not met**"), measured
    torch = next(r for r in rows if r["config"] == "small" and r["impl"] == "torch")["samples_per_s"]
    assert t["small ≥ 1.2× PyTorch eager (the eager step)"][0].startswith(f"{eager['samples_per_s']:,.0f} / ")
    assert t["small ≥ 3× PyTorch eager with the graph (the default step)"][0] == (
        f"{default['samples_per_s']:,.0f} / {torch:,.0f} = {default['samples_per_s'] / torch:.2f}× (small float32's "
        f"default step ran eagerly: {note})")

def test_issue_10s_ratios_are_paired_by_round_where_train_json_holds_the_rounds(tmp_path, capsys):
    """gpunn bench records each row's samples/s per round ("rounds"); issue 10's ratios of two rows are then the
    median of the per-round ratios, as the bench's own "gpunn is" column, not the ratio of the medians. Here the
    large float32 default row's medians beat torch eager's (1.01x, met) while its rounds give 0.94x, 0.94x, 1.11x
    (not met); graph over eager likewise. Rows without rounds (the recorded H200 run) keep the medians, said so."""
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    path = tmp_path / "run" / "train.json"
    train = json.loads(path.read_text())
    target = "large float32 ≥ 0.95× PyTorch eager"
    graph_target = next(k for k in _targets(_report(tmp_path / "run", capsys=capsys))
                        if k.startswith("the default step is a captured CUDA graph"))
    measured, verdict = _targets(_report(tmp_path / "run", capsys=capsys))[graph_target]
    assert measured.startswith("graph over eager (ratios of medians): small float32 11.53×, ") and verdict == "met"
    rows = {(r["config"], r["impl"], r["dtype"], r["graph"]): r for r in train["results"]}
    rows["large", "gpunn", "float32", "graph"]["rounds"] = [145000.0, 160000.0, 155556.0]
    rows["large", "torch", "float32", ""]["rounds"] = [154659.0, 170000.0, 140000.0]
    rows["large", "gpunn", "float32", "eager"]["rounds"] = [155148.0, 170000.0, 150000.0]
    path.write_text(json.dumps(train))
    t = _targets(_report(tmp_path / "run", capsys=capsys))
    assert t[target] == ("0.94× paired by round (medians 155,556 / 154,659 = 1.01×)", "**not met**")
    measured, verdict = t[graph_target]  # 145/155.148, 160/170, 155.556/150: 0.94x (under 0.95x)
    assert "large float32 0.94×," in measured and "small float32 11.53× (ratio of medians)" in measured, measured
    assert measured.startswith("graph over eager: ") and verdict == "**not met**", measured
    rows["large", "torch", "float32", ""]["rounds"] = [154659.0, 170000.0]  # not the same rounds: the medians
    path.write_text(json.dumps(train))
    assert _targets(_report(tmp_path / "run", capsys=capsys))[target] == ("155,556 / 154,659 = 1.01×", "met")


def test_a_failed_r2_test_is_not_met_when_the_precision_hook_did_not_run(tmp_path, capsys):
    """Without precision.json the R² target falls back to the GPU test's outcome; _test_outcome reports a
    failure as 'failed: ids', which the fallback read as no outcome at all ('not measured')."""
    for name in ("summary.txt", "device.txt"):
        (tmp_path / name).write_bytes((RUNS / "cpu-dry-run" / name).read_bytes())
    name = "test_tf32_and_bf16_train_to_the_float32_r2"
    for kid, verdict in (("<failure/>", "**not met**"), ("", "met")):
        (tmp_path / "gpu_tests.xml").write_text(f'<testsuites><testsuite><testcase classname="tests.'
                                                f'test_precision_gpu" name="{name}">{kid}</testcase>'
                                                "</testsuite></testsuites>")
        measured, got = next(v for k, v in _targets(_report(tmp_path, capsys=capsys)).items()
                             if k.startswith("tf32 and bf16 reach"))
        assert got == verdict, measured


def test_a_gpu_test_that_failed_with_a_sticky_cuda_error_says_so(tmp_path, capsys):
    """The GPU tests stage runs the tests in a few pytest processes (xdist workers): after a sticky CUDA error (an
    illegal address...) in one test, every later test of that process fails with it, the proofs the report reads
    among them (the R² test where the precision hook did not run, the contract and resume tests). A failed test's
    outcome now names the sticky error it failed with and what that means; the verdict stays not met."""
    for name in ("summary.txt", "device.txt"):
        (tmp_path / name).write_bytes((RUNS / "cpu-dry-run" / name).read_bytes())
    name, sticky = "test_tf32_and_bf16_train_to_the_float32_r2", "cudaErrorIllegalAddress: an illegal memory access"
    for message, words in ((f"cupy_backends.cuda.api.runtime.CUDARuntimeError: {sticky}",
                            " (with cudaErrorIllegalAddress, a sticky CUDA error: a fault in it, or in an earlier test "
                            "of the same pytest process (an xdist worker), whose later tests all fail with it; 2 of "
                            "the stage's tests failed with one)"),
                           ("AssertionError: R² 0.80 against 0.81", "")):
        (tmp_path / "gpu_tests.xml").write_text(
            '<testsuites><testsuite><testcase classname="tests.test_graph_gpu" name="test_x">'
            f'<failure message="CUDARuntimeError: {sticky}">trace</failure></testcase>'
            f'<testcase classname="tests.test_precision_gpu" name="{name}"><failure message="{message}">E ...'
            "</failure></testcase></testsuite></testsuites>")
        measured, got = next(v for k, v in _targets(_report(tmp_path, capsys=capsys)).items()
                             if k.startswith("tf32 and bf16 reach"))
        assert (measured, got) == (f"tests/test_precision_gpu.py::{name} failed: {name}{words} (the values are in "
                                   "the precision hook, which did not run)", "**not met**")


def test_an_errored_or_skipped_r2_test_is_not_met(tmp_path, capsys):
    """Without precision.json the R² target reads the GPU test's outcome in gpu_tests.xml: a test that errored (in
    its set-up, say) failed, and one skipped (no usable GPU) measured nothing; neither is "met". A parametrized
    test passed where its cases passed and the others were skipped."""
    for name in ("summary.txt", "device.txt"):
        (tmp_path / name).write_bytes((RUNS / "cpu-dry-run" / name).read_bytes())
    name = "test_tf32_and_bf16_train_to_the_float32_r2"

    def case(kid, param=""):
        return f'<testcase classname="tests.test_precision_gpu" name="{name}{param}">{kid}</testcase>'

    for cases, words, verdict in (([case('<error message="fixture failed"/>')], f"failed: {name}", "**not met**"),
                                  ([case('<skipped message="no usable GPU"/>')], "not measured", ""),
                                  ([case("", "[a]"), case("<skipped/>", "[b]"), case("<failure/>", "_on_x")],
                                   f"{name} passed", "met")):  # (another test, its name longer: not this one)
        (tmp_path / "gpu_tests.xml").write_text("<testsuites><testsuite>" + "".join(cases) + "</testsuite></testsuites>")
        measured, got = next(v for k, v in _targets(_report(tmp_path, capsys=capsys)).items()
                             if k.startswith("tf32 and bf16 reach"))
        assert got == verdict and words in measured, measured


def test_a_sticky_driver_error_is_named_and_blamed_on_the_exactness_check_only_when_it_had_it(tmp_path, capsys):
    """CuPy's driver wording of a sticky error (CUDADriverError: 'CUDA_ERROR_ILLEGAL_ADDRESS: ...', what a RawKernel
    launch raises) is named as the runtime's is; an exactness or graph check that failed with another error did not
    cause it."""
    sticky = "CUDADriverError: CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered"
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    (tmp_path / "run" / "ensemble" / "ensemble.json").write_text(json.dumps(
        {"device": "cuda", "exact": False, "exactness_error": "RuntimeError: made to fail by the test",
         "graph": {"error": "RuntimeError: the graph check made to fail by the test"}, "benchmark_error": sticky,
         "peak_column_ok": False, "bf16_skipped": "under 15 s left for its process"}))
    out = _report(tmp_path / "run", capsys=capsys)
    assert "| the ensemble's '% of peak' column is finite on the GPU | NO |" in out
    e = json.loads((tmp_path / "run" / "ensemble" / "ensemble.json").read_text())
    (tmp_path / "run" / "ensemble" / "ensemble.json").write_text(json.dumps(dict(e, peak_column_why="no base: why")))
    assert "| the ensemble's '% of peak' column is finite on the GPU | NO (no base: why) |" in _report(
        tmp_path / "run", capsys=capsys)
    assert "| the bf16 ensemble row's speed (small-x256, CUDA graph) | not measured: under 15 s left for its process" in out
    assert _targets(out)["K=256 small nets ≥ 50× K sequential gpunn fits"][0] == (
        f"not measured: no sequential row in ensemble.json: the benchmark failed: {sticky} (CUDA_ERROR_ILLEGAL_ADDRESS "
        "is a sticky CUDA error: every later CUDA call of the process fails with it; a row of the benchmark (the "
        "eager ensemble, a peer) caused it)")


def test_an_add_file_replaces_only_its_own_parts_and_one_not_an_object_is_not_merged(tmp_path, capsys):
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    added = tmp_path / "precision.json"
    added.write_text(json.dumps({"device": "cpu (NumPy)", "alignment": {
        "members": 256, "batch": 128, "packed_us": 10.0, "padded": 5320, "padded_us": 8.0, "packed_over_padded": 1.25}}))
    out = _report(tmp_path / "run", "--add", f"precision={added}", capsys=capsys)
    assert "K=256, batch 128: packed 10.0 us, padded to 5,320 elements 8.0 us: packed/padded 1.25×" in out
    assert "tf32 relu adam: 0 (bound 0.0001, within)" in out  # the folder's own part stays
    added.write_text("[1, 2]")  # JSON, but not a hook's object
    out = _report(tmp_path / "run", "--add", f"precision={added}", capsys=capsys)
    assert f"**Not merged** (not a JSON object: a file cut short while it was written?): precision ({added})." in out
    assert "tf32 relu adam: 0 (bound 0.0001, within)" in out


def test_an_add_file_from_another_kind_of_device_than_the_folders_is_refused(tmp_path, capsys):
    """--add keeps the folder's other parts and takes the file's device, by which the report judges them all: the
    second GPU call's streams.json (the 10^9-row stream alone) over today's CPU dry run's folder had the CPU's .npy
    part (2.33x in memory) judged "met" as a GPU's, its row checks standing for the GPU stream's, and a CPU file over
    a GPU run's folder left the GPU's parts unjudged. Such a
    merge is refused, naming both devices; a file that names no device cannot be checked and is refused too. The
    same file over a folder of its own kind is merged."""
    report = _load("bench/gpu_report.py", "gpu_report")
    call2 = tmp_path / "streams-long.json"
    call2.write_text((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    with pytest.raises(SystemExit):
        report.main([str(RUNS / "cpu-dry-run"), "--add", f"streams={call2}"])
    err = capsys.readouterr().err
    assert (f"--add streams={call2}: not merged: it was measured on cuda:0 (NVIDIA H200, CuPy 14.2.0) (GPU), the "
            "folder's streams/streams.json on cpu (NumPy) (CPU): merged, the folder's parts would be judged as GPU "
            "measurements; report the two apart") in err, err
    on_cpu = tmp_path / "nccl.json"
    on_cpu.write_text((RUNS / "cpu-dry-run" / "nccl" / "nccl.json").read_text())
    with pytest.raises(SystemExit):
        report.main([str(RUNS / "h200-2026-11-28"), "--add", f"nccl={on_cpu}"])
    assert "it was measured on cpu (CPU), the folder's nccl/nccl.json on cuda:0 (GPU)" in capsys.readouterr().err
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "streams")  # no streams.json of its own: the other hooks' devices decide
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "run"), "--add", f"streams={call2}"])
    assert "the folder's precision/precision.json on cpu (NumPy) (CPU)" in capsys.readouterr().err
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"throughput": {}}))
    with pytest.raises(SystemExit):
        report.main([str(RUNS / "h200-2026-11-28"), "--add", f"streams={nameless}"])
    assert "it names no device (every hook's JSON does)" in capsys.readouterr().err
    out = _report(RUNS / "h200-2026-11-28", "--add", f"streams={call2}", capsys=capsys)
    assert "Merged from a later call: streams (streams-long.json)." in out


def test_a_stage_not_landed_or_failed_is_named_where_its_targets_are_not_measured(tmp_path, capsys):
    for name in ("summary.txt", "device.txt", "gpu_tests.xml"):
        (tmp_path / name).write_bytes((RUNS / "cpu-dry-run" / name).read_bytes())
    summary = tmp_path / "summary.txt"
    text = re.sub(r"(?m)^ok   nccl: .*$", "--   nccl: not landed (bench/gpu_checks/nccl.py absent)", summary.read_text())
    summary.write_text(re.sub(r"(?m)^ok   train: .*$", "FAIL train (exit 1): /tmp/gc/train.txt, /tmp/gc/train.json", text))
    t = _targets(_report(tmp_path, capsys=capsys))
    assert next(v for k, v in t.items() if k.startswith("a one-rank NCCL run")) == (
        "not measured: `--   nccl: not landed (bench/gpu_checks/nccl.py absent)`", "")
    assert t["large bf16 ≥ 5× float32"] == ("not measured: `FAIL train (exit 1): /tmp/gc/train.txt, /tmp/gc/train.json`",
                                            "")


def test_issue_10s_ratios_are_met_at_their_targets_and_not_below(tmp_path, capsys):
    """Each of issue 10's throughput targets is "at least": a ratio exactly at it is met, one just below is not (the
    quotients of these round rates are the targets' own doubles). A GPU row against a peer's CPU row is no GPU
    ratio."""
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    path = tmp_path / "run" / "train.json"
    train = json.loads(path.read_text())
    targets = ("large float32 ≥ 85% of the same-shape SGEMM", "large float32 ≥ 0.95× PyTorch eager",
               "large tf32 ≥ 3× float32", "large bf16 ≥ 5× float32", "large bf16 ≥ 1.0× PyTorch bf16 autocast",
               *(f"{c} ≥ {t}" for c in ("small", "medium") for t in (
                   "1.2× PyTorch eager (the eager step)", "3× PyTorch eager with the graph (the default step)")))
    for rates, fraction, verdict in (
            (dict(torch=1000, bf16_peer=4750, float32=950, tf32=2850, bf16=4750, eager=1200, default=3000), 0.85, "met"),
            (dict(torch=1000, bf16_peer=4751, float32=949, tf32=2846, bf16=4744, eager=1199, default=2999), 0.8499,
             "**not met**")):
        for r in train["results"]:
            if r["impl"] != "gpunn":
                r["samples_per_s"] = float(rates["torch" if r["impl"] == "torch" else "bf16_peer"])
            elif r["config"] == "large" and r["graph"] == "graph":
                r["samples_per_s"] = float(rates[r["dtype"]])
                r["fraction_of_gemm"] = fraction
            elif r["config"] in ("small", "medium") and r["dtype"] == "float32":
                r["samples_per_s"] = float(rates["eager" if r["graph"] == "eager" else "default"])
        path.write_text(json.dumps(train))
        t = _targets(_report(tmp_path / "run", capsys=capsys))
        assert {k: t[k][1] for k in targets} == {k: verdict for k in targets}
    torch = next(r for r in train["results"] if r["config"] == "large" and r["impl"] == "torch")
    torch["backend"] = "cpu"
    path.write_text(json.dumps(train))
    measured, verdict = _targets(_report(tmp_path / "run", capsys=capsys))["large float32 ≥ 0.95× PyTorch eager"]
    assert measured == "not measured on a GPU: 949 / 1,000 = 0.95× (cpu)" and verdict == "", measured

def test_the_gpu_r2_is_met_only_where_tf32_and_bf16_are_both_within(tmp_path, capsys):
    """Issue 10's R² target names both precisions: one of them outside, or missing from the hook's "within", is not
    met; the --quick sizes measure the plumbing, not the target."""
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    path = tmp_path / "run" / "precision" / "precision.json"
    p = dict(json.loads(path.read_text()), device="cuda:0 (NVIDIA H200, CuPy 14.2.0)")
    for within, quick, verdict in (({"tf32": True, "bf16": True}, False, "met"),
                                   ({"tf32": True, "bf16": False}, False, "**not met**"),
                                   ({"tf32": True}, False, "**not met**"),
                                   ({"tf32": True, "bf16": True}, True, "")):
        path.write_text(json.dumps(dict(p, quick=quick, r2=dict(p["r2"], within=within))))
        measured, got = next(v for k, v in _targets(_report(tmp_path / "run", capsys=capsys)).items()
                             if k.startswith("tf32 and bf16 reach"))
        assert got == verdict and measured.startswith("not measured on a GPU: ") == quick, measured
    r2 = dict(p["r2"], r2=dict(p["r2"]["r2"], bf16=float("nan")), within={"tf32": True, "bf16": False},
              errors={"bf16": "ValidationNotFinite: 3 predictions are not finite"})
    path.write_text(json.dumps(dict(p, quick=False, r2=r2)))  # score() refused bf16's predictions: said, not met
    measured, got = next(v for k, v in _targets(_report(tmp_path / "run", capsys=capsys)).items()
                         if k.startswith("tf32 and bf16 reach"))
    assert got == "**not met**" and measured.endswith("; bf16: ValidationNotFinite: 3 predictions are not finite"), measured


def test_issue_11s_ensemble_targets_take_the_better_of_eager_and_graph_and_are_met_at_their_bounds(tmp_path, capsys):
    """The ensemble hook times the eager ensemble (targets) and its CUDA graph (graph_targets) against each peer; a
    target is met when either reaches it, at the bound itself too, and the exactness check at 1e-10."""
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    path = tmp_path / "run" / "ensemble" / "ensemble.json"
    texts = ("K=256 small nets ≥ 50× K sequential gpunn fits", "K=256 small nets ≥ 3× the torch vmap ensemble",
             "each member equals its MLP on the GPU (float64, 3 members, ≤ 1e-10 relative)")
    for sequential, vmap, err, verdicts in (((40.0, 60.0), (3.0, 2.0), 1e-10, ("met", "met", "met")),
                                            ((40.0, 49.9), (2.9, 2.99), 1.01e-10, ("**not met**",) * 3)):
        path.write_text(json.dumps({
            "device": "cuda", "exact": err <= 1e-10, "exactness_max_rel_err": err,
            "targets": {"sequential": {"speedup": sequential[0], "target": 50.0},
                        "torch-vmap": {"speedup": vmap[0], "target": 3.0}},
            "graph_targets": {"sequential": {"speedup": sequential[1], "target": 50.0, "statistic": "paired"},
                              "torch-vmap": {"speedup": vmap[1], "target": 3.0, "statistic": "paired"}}}))
        t = _targets(_report(tmp_path / "run", capsys=capsys))
        assert tuple(t[k][1] for k in texts) == verdicts, t
        assert t[texts[0]][0] == f"eager {sequential[0]:.2f}×, graph {sequential[1]:.2f}×"


def test_issue_12s_ratios_are_met_at_0_9_and_not_below(tmp_path, capsys):
    long = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    path = tmp_path / "streams.json"
    for ratio, verdict in ((0.9, "met"), (0.8999, "**not met**")):
        throughput = {"synthetic_long": dict(long["throughput"]["synthetic_long"], ratio=ratio),
                      "npy_large": {"config": "large", "rows": 40_000, "ratio": ratio}}
        path.write_text(json.dumps(dict(long, throughput=throughput)))
        t = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={path}", capsys=capsys))
        assert t["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"][1] == verdict
        assert next(v for k, v in t.items() if k.startswith(".npy on the large"))[1] == verdict


def test_a_skipped_stage_is_counted_with_the_failed_ones(tmp_path, capsys):
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    summary = tmp_path / "run" / "summary.txt"
    text = re.sub(r"(?m)^ok   nccl: .*$", "SKIP nccl: no budget left (the run is incomplete: it fails)",
                  summary.read_text())
    summary.write_text(text.replace("budget: PASSED", "budget: FAILED"))
    out = _report(tmp_path / "run", capsys=capsys)
    assert "**FAILED in 71 s** of a 330 s budget; 1 stage(s) failed or skipped." in out

def test_a_ratio_with_a_row_missing_names_the_row(tmp_path, capsys):
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    path = tmp_path / "run" / "train.json"
    train = json.loads(path.read_text())
    train["results"] = [r for r in train["results"] if r["config"] != "large" or (
        r["impl"] != "torch" and not (r["dtype"] == "tf32" and r["graph"] == "graph"))]
    path.write_text(json.dumps(train))
    t = _targets(_report(tmp_path / "run", capsys=capsys))
    assert t["large tf32 ≥ 3× float32"] == ("not measured: no gpunn tf32 row for large in train.json", "")
    assert t["large float32 ≥ 0.95× PyTorch eager"] == ("not measured: no torch eager row for large in train.json", "")


def test_the_report_refuses_a_bad_add(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _load("bench/gpu_report.py", "gpu_report").main([str(tmp_path), "--add", "bogus=x.json"])
    assert "HOOK=PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a file that is not there: a mistyped path, not a hook cut short
        _load("bench/gpu_report.py", "gpu_report").main([str(tmp_path), "--add", f"streams={tmp_path / 'x.json'}"])
    assert f"--add streams={tmp_path / 'x.json'}: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _load("bench/gpu_report.py", "gpu_report").main([str(tmp_path / "gc")])
    assert f"{tmp_path / 'gc'}: no such folder" in capsys.readouterr().err


def test_a_failed_precision_part_is_reported_as_failed(tmp_path, capsys):
    """The hook keeps a part's exception as {"error": ...} and goes on; the report shows it, not a crash."""
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    path = tmp_path / "run" / "precision" / "precision.json"
    p = json.loads(path.read_text())
    p["gemm"] = {"error": "GemmError: cublasGemmStridedBatchedEx failed with cuBLAS status 15"}
    p["r2"] = {"error": "RuntimeError: boom"}
    p["alignment"] = {"error": "RuntimeError: the alignment part made to fail"}
    p["members"]["bf16 relu adam"].update(worst=0.03, ok=False, captured=False, reason="made to fail by the test")
    path.write_text(json.dumps(p))
    out = _report(tmp_path / "run", capsys=capsys)
    assert "the part failed: GemmError: cublasGemmStridedBatchedEx failed with cuBLAS status 15" in out
    assert "| 5,313-parameter members not 16-byte aligned: do the bf16 products slow down? | the part failed: " \
        "RuntimeError: the alignment part made to fail |" in out
    assert "bf16 relu adam: 0.03 (bound 0.02, NOT within)" in out
    assert "bf16 relu adam: NOT captured (made to fail by the test)" in out
    assert _targets(out)[next(k for k in _targets(out) if k.startswith("tf32 and bf16 reach"))] == (
        "the precision hook's R² part failed: RuntimeError: boom", "**not met**")


def test_an_r2_part_failed_by_an_earlier_parts_sticky_cuda_error_takes_the_gpu_tests_verdict(tmp_path, capsys):
    """The precision hook's parts share one process: after a sticky CUDA error (an illegal address...) in its gemm
    part (raw cuBLAS calls with a shared X, never run on a GPU), the R² part fails with it too whatever tf32 and bf16
    do, and the report gave issue 10's held-out R² target "not met" from that. It then takes the verdict of
    tests/test_precision_gpu.py's R² test (the tests stage, other processes), saying why; an R² part that failed on
    its own (no sticky error before it) stays "not met"."""
    sticky = "CUDARuntimeError: cudaErrorIllegalAddress: an illegal memory access was encountered"
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    path = tmp_path / "run" / "precision" / "precision.json"
    p = json.loads(path.read_text())
    p["r2"] = {"error": sticky}
    name = "test_tf32_and_bf16_train_to_the_float32_r2"
    for gemm, kid, want in (
            ({"bf16 -> float32, eager": {"bound": 0.012, "accepted": False, "error": sticky, "ok": False}}, "",
             (f"tests/test_precision_gpu.py::{name} passed (the precision hook's R² part failed with "
              "cudaErrorIllegalAddress, a sticky CUDA error its gemm part met first)", "met")),
            ({"error": sticky}, "<failure/>", (f"tests/test_precision_gpu.py::{name} failed: {name} (the precision "
                                               "hook's R² part failed with cudaErrorIllegalAddress, a sticky CUDA "
                                               "error its gemm part met first)", "**not met**")),
            ({"error": "GemmError: refused"}, "", (f"the precision hook's R² part failed: {sticky}", "**not met**"))):
        path.write_text(json.dumps(dict(p, gemm=gemm)))
        (tmp_path / "run" / "gpu_tests.xml").write_text(
            f'<testsuites><testsuite><testcase classname="tests.test_precision_gpu" name="{name}">{kid}</testcase>'
            "</testsuite></testsuites>")
        got = next(v for k, v in _targets(_report(tmp_path / "run", capsys=capsys)).items()
                   if k.startswith("tf32 and bf16 reach"))
        assert got == want


def test_an_r2_part_failed_after_a_sticky_error_needs_the_gpu_test_to_have_passed(tmp_path, capsys):
    """The fallback to tests/test_precision_gpu.py's R² test where the precision hook's R² part failed after an
    earlier part's sticky CUDA error: met only where that test passed; not collected or skipped is no verdict; an
    R² part that failed with an error of its own stays not met, a sticky error before it or not. A sticky error
    named only in a failure's text (the traceback) counts; a skipped test's words do not."""
    sticky = "CUDARuntimeError: cudaErrorIllegalAddress: an illegal memory access was encountered"
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    path = tmp_path / "run" / "precision" / "precision.json"
    p = dict(json.loads(path.read_text()), gemm={"error": sticky})
    name = "test_tf32_and_bf16_train_to_the_float32_r2"
    skipped = f'<testcase classname="tests.test_x" name="test_y"><skipped message="{sticky}"/></testcase>'
    for r2, cases, want in (
            ("RuntimeError: boom", f'<testcase classname="tests.test_precision_gpu" name="{name}"/>',
             ("the precision hook's R² part failed: RuntimeError: boom", "**not met**")),
            (sticky, skipped, (f"tests/test_precision_gpu.py::{name} not collected (the precision hook's R² part "
                               "failed with cudaErrorIllegalAddress, a sticky CUDA error its gemm part met first)", "")),
            (sticky, f'<testcase classname="tests.test_precision_gpu" name="{name}"><skipped/></testcase>',
             (f"tests/test_precision_gpu.py::{name} skipped (the precision hook's R² part failed with "
              "cudaErrorIllegalAddress, a sticky CUDA error its gemm part met first)", "")),
            (sticky, skipped + f'<testcase classname="tests.test_precision_gpu" name="{name}"><failure message="E">'
                               f"{sticky}</failure></testcase>",
             (f"tests/test_precision_gpu.py::{name} failed: {name} (with cudaErrorIllegalAddress, a sticky CUDA error: "
              "a fault in it, or in an earlier test of the same pytest process (an xdist worker), whose later tests "
              "all fail with it; 1 of the stage's tests failed with one) (the precision hook's R² part failed with "
              "cudaErrorIllegalAddress, a sticky CUDA error its gemm part met first)", "**not met**"))):
        path.write_text(json.dumps(dict(p, r2={"error": r2})))
        (tmp_path / "run" / "gpu_tests.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
        got = next(v for k, v in _targets(_report(tmp_path / "run", capsys=capsys)).items()
                   if k.startswith("tf32 and bf16 reach"))
        assert got == want, got

def test_the_precision_hook_leaves_the_cpu_emulation_off_behind_it(tmp_path):
    import gpunn.model

    _load("bench/gpu_checks/precision.py", "precision_hook").main(["--device", "cpu", "--out", str(tmp_path)])
    assert gpunn.model._EMULATE_PRECISION_ON_CPU is False
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        gpunn.MLP([2, 1], device="cpu", precision="bf16")


def test_the_owed_tests_are_read_from_gpu_tests_xml_by_module_and_name(tmp_path, capsys):
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    cases = [("test_ensemble_gpu", "test_each_member_trains_as_its_own_mlp_on_cuda[float32-adam]", "<failure/>"),
             ("test_ensemble_precision", "test_each_member_trains_as_its_own_mlp_on_cuda[relu-adam-False-tf32]", ""),
             ("test_ensemble_precision", "test_set_precision_between_fits_captures_anew[mlp]", ""),
             ("test_ensemble_precision", "test_set_precision_between_fits_captures_anew[ensemble]", "<failure/>")]
    (tmp_path / "run" / "gpu_tests.xml").write_text(
        "<testsuites><testsuite>" + "".join(f'<testcase classname="tests.{m}" name="{n}">{k}</testcase>'
                                            for m, n, k in cases) + "</testsuite></testsuites>")
    out = _report(tmp_path / "run", capsys=capsys)
    assert "test_each_member_trains_as_its_own_mlp_on_cuda: passed" in out  # the other module's failure is not it
    assert ("test_set_precision_between_fits_captures_anew: failed: "
            "test_set_precision_between_fits_captures_anew[ensemble]") in out
    assert "test_an_interrupted_run_resumes_in_its_precision: not collected" in out
    assert ("(2 passed, 2 failed, 0 skipped in gpu_tests.xml)\n- failed: `tests.test_ensemble_gpu::test_each_member_"
            "trains_as_its_own_mlp_on_cuda[float32-adam]`\n- failed: `tests.test_ensemble_precision::test_set_precision_"
            "between_fits_captures_anew[ensemble]`") in out  # the stages' GPU tests line


def test_the_report_reads_the_gpu_rows_gpunn_bench_writes(tmp_path, capsys, monkeypatch):
    """The H200 fixture is in today's schema by a rebuild; here are gpunn bench's own GPU rows (through
    tests/fakecupy, timed on nothing real): the default CUDA graph rows and the eager rows in float32, tf32
    and bf16, and a peer. The report pairs each eager row with its graph row and reads the bench's ratios."""
    import fakecupy

    from gpunn import backend, bench
    from gpunn.bench import runners

    fakecupy.install(monkeypatch)
    fakecupy.forget_gpunn_state(monkeypatch)
    try:
        monkeypatch.setattr(runners, "_dataset_rows", lambda cfg, backend: 4 * cfg.batch)  # small for NumPy
        monkeypatch.setattr(runners, "measure_gemm", lambda *a, **k: 1e9)  # a 4096^3 product takes seconds here
        variants = [(p, None) for p in ("tf32", "bf16")] + [(p, False) for p in ("float32", "tf32", "bf16")]
        data = bench.run([bench.QUICK_CONFIG], [backend.resolve("cuda")], peers=["naive"], repeats=1, seconds=0.001,
                         variants=variants, log=lambda msg: None)
    finally:
        fakecupy.forget_gpunn_state(None)
    bench.write_json(data, tmp_path / "train.json")
    (tmp_path / "summary.txt").write_text("ok   train: train.txt, train.json (9s)\n"
                                          "gpu_check on a stand-in, 2026-11-29, 9s of a 330s budget: PASSED\n")
    out = _report(tmp_path, capsys=capsys)
    measured, verdict = next(v for k, v in _targets(out).items() if k.startswith("the default step is a captured"))
    ratios = {r["dtype"]: r["graph_speedup"] for r in data["results"] if r["graph"] == "eager"}
    assert measured == "graph over eager: " + ", ".join(f"tiny {p} {ratios[p]:.2f}×" for p in ("float32", "tf32", "bf16"))
    assert verdict in ("met", "**not met**")
    assert _targets(out)["large tf32 ≥ 3× float32"][0].startswith("not measured: no large rows")
    assert "gpunn (cuda:0) bf16 eager" in out and "CUDA graph vs eager step" in out


def test_an_ensemble_hook_killed_in_its_benchmark_keeps_its_checks_for_the_report(tmp_path, capsys, monkeypatch):
    """ENSEMBLE_SECONDS=90 brings the torch loop and the bf16 row, whose warm-ups the rounds' deadline does
    not bound: if the stage's timeout kills the hook there, ensemble.json still holds the exactness check."""
    from gpunn import bench

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # what the stage's timeout would end, mid-benchmark

    monkeypatch.setattr(bench, "run_ensembles", killed)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    (tmp_path / "run" / "ensemble" / "ensemble.json").unlink()
    with pytest.raises(KeyboardInterrupt):
        _load("bench/gpu_checks/ensemble.py", "ensemble_hook").main(
            ["--device", "cpu", "--out", str(tmp_path / "run" / "ensemble")])
    saved = json.loads((tmp_path / "run" / "ensemble" / "ensemble.json").read_text())
    assert saved["exact"] and saved["exactness_max_rel_err"] < 1e-10 and "targets" not in saved
    summary = tmp_path / "run" / "summary.txt"
    summary.write_text(summary.read_text().replace(
        next(line for line in summary.read_text().splitlines() if line.startswith("ok   ensemble")),
        "FAIL ensemble: timed out, partial: ensemble.txt"))
    capsys.readouterr()
    t = _targets(_report(tmp_path / "run", capsys=capsys))
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"][0] == (
        "not measured: no sequential row in ensemble.json (`FAIL ensemble: timed out, partial: ensemble.txt`)")
    assert next(v for k, v in t.items() if k.startswith("each member equals its MLP"))[0].endswith("(cpu)")


def test_a_failed_report_stage_after_the_closing_line_is_a_finished_run_that_failed(tmp_path, capsys):
    """gpu_check.sh writes 'FAIL report: ...' after its closing 'gpu_check on ... PASSED' line when
    bench/gpu_report.py fails on the GPU machine; the report, rebuilt here afterwards, took the run for killed
    ('did not finish', every stage it lacked 'stopped before it') because it read the last line only."""
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    summary = tmp_path / "run" / "summary.txt"
    summary.write_text(summary.read_text() + "FAIL report: bench/gpu_report.py /tmp/gc: KeyError: 'results'\n")
    out = _report(tmp_path / "run", capsys=capsys)
    assert "did not finish" not in out
    assert "**FAILED in 71 s** of a 330 s budget; 1 stage(s) failed or skipped." in out
    (tmp_path / "run" / "train.json").unlink()
    summary.write_text("\n".join(line for line in summary.read_text().splitlines() if " train:" not in line) + "\n")
    t = _targets(_report(tmp_path / "run", capsys=capsys))
    assert t["large bf16 ≥ 5× float32"] == ("not measured: this run had no train stage", "")


def test_the_next_gpu_sessions_two_calls_end_themselves_before_the_device_tool_kills_them():
    """bench/gpu_check.sh's header gives the next GPU session its two `run` calls. A call that outlives its
    timeout_s is killed with everything in it and brings back only what is already under $OUT: the first
    call wrote everything to /tmp and copied it to $OUT at the end, the second too, so an overrun (a hung stage
    killed 10 s after its cap, several times over) would have lost the whole run. Each now ends itself first,
    under its own budget, and fits the tool's 2,000-character command."""
    import re

    header = (ROOT / "bench" / "gpu_check.sh").read_text().split("\nset -uo pipefail", 1)[0]
    calls = re.findall(r"\(timeout_s (\d+)[;,:)][^\n]*(?:\n#    [^\n]*?)*?:\n#    (.*timeout -k .+)\n", header)
    assert len(calls) == 3, calls  # the session's two, and step 3, a rerun after fixes (in the time then left)
    # the session's 900 s of device time: a start of up to 180 s, the two calls, ~20 s between them, and 20 s for
    # the transfers and the give-back
    assert 180 + sum(int(limit) for limit, _ in calls[:2]) + 20 <= 900 - 20, calls
    # the rerun leaves its tar as call 1 does, with the same loop
    assert calls[2][1].split(" & ", 1)[0] == calls[0][1].split(" & ", 1)[0], calls
    for limit, command in calls:
        assert len(command) <= 2000 and "$OUT" in command
        ends = re.search(r"(?:^|& )timeout -k (\d+) (\d+) ", command)
        assert ends and int(ends[1]) + int(ends[2]) + 10 <= int(limit), command  # 10 s to copy what it made
        own = re.search(r"GPUNN_CHECK_BUDGET=(\d+)|--max-seconds (\d+)", command)
        assert int(own[1] or own[2]) + 5 <= int(ends[2]), command  # the run's own budget ends it before that


def test_the_gpu_runs_own_command_lines_still_parse_and_its_probe_line_runs(tmp_path):
    """The CPU dry run (.ci/run) gives the train stage other options (--device cpu --quick --peers naive) and skips
    the device stage's probe, so a renamed or refused option (a repeated one is refused since session 12:
    cli.common.refuse_repeated; --config is meant to repeat) or a changed probe_cuda would first fail on the GPU:
    the probe's failure ends the whole run ('CuPy is not usable, nothing else was run'). Here the GPU's `gpunn bench`
    line, built as the script builds it, is parsed by today's CLI, --help offers the options the script looks for
    (or they are silently left out), and the probe's line runs (on a machine without a GPU it prints the reason)."""
    import shlex
    import sys

    from gpunn.cli import build_parser, parse_args

    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    first = re.search(r"^args=\((.+)\)$", script, re.M)[1]  # the GPU's; the dry run's replaces it
    added = re.findall(r"args\+=\((.+?)\)", script)
    assert [a.split()[0] for a in added] == ["--precision", "--eager", "--plot"], added
    words = " ".join([first, *added]).replace('"$DEVICE"', "cuda").replace('"$OUT/', f'"{tmp_path}/')
    tokens = shlex.split(words) + ["--max-seconds", "161", "--json", str(tmp_path / "train.json")]
    args = parse_args(["bench", *tokens])
    assert (args.device, args.config, args.eager) == ("cuda", ["small", "medium", "deep", "large"], True)
    assert args.peers == "torch,torch-bf16" and args.precision == "float32,tf32,bf16"
    helped = build_parser().commands["bench"].format_help()
    assert "--precision" in helped and "--eager" in helped

    probe = re.search(r'reason=\$\(bounded 60 "\$PY" -c "([^"]+)"', script)[1]
    ran = waiting.run([sys.executable, "-c", probe], timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr[-2000:]


def test_the_dry_run_stops_at_a_setting_gpunn_info_refuses_naming_it(tmp_path):
    """The device stage with the real `gpunn info` (tests/test_gpu_check_budget.py has its stand-in): a GPUNN_
    variable it refuses (exit 2) ends the run after the device stage (exit 3), the summary's one line naming each
    refusal once, with the line of info's that said it (the environment line's second error is indented under it).
    The stage ignored info's status: on the GPU every stage would have run under the setting."""
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUNN_CHECK_", "GPUNN_FAKE_CUPY"))}
    env.update(GPUNN_CHECK_DEVICE="cpu", PYTHON=sys.executable, GPUNN_FUSED_KERNELS="maybe", GPUNN_DIST_TIMEOUT="0")
    ran = waiting.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(tmp_path)], timeout=120, env=env)
    (line,) = (tmp_path / "summary.txt").read_text().splitlines()
    assert ran.returncode == 3 and line.startswith("FAIL device: gpunn info says error (exit 2: a setting it refuses, or a device it cannot run), "
                                                   "nothing else was run: "), ran.stdout[-2000:]
    assert line.count("error: GPUNN_FUSED_KERNELS='maybe' is not on or off: ") == 1  # cpu kernels' and environment's
    assert "environment: error: GPUNN_DIST_TIMEOUT='0' is not a positive number of seconds" in line
    assert "error: GPUNN_DIST_TIMEOUT='0'" in (tmp_path / "device.txt").read_text()  # info's lines kept in full
    assert not (tmp_path / "gpu_tests.log").exists()


def _dry_run(out, **env):
    """bench/gpu_check.sh's CPU dry run into ``out`` under ``env``: (its exit code, its stderr)."""
    import sys

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GPUNN_CHECK_", "GPUNN_FAKE_CUPY"))}
    environ.update(GPUNN_CHECK_DEVICE="cpu", PYTHON=sys.executable, **env)
    ran = waiting.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out)], timeout=120, env=environ)
    return ran.returncode, ran.stderr


def test_a_stage_name_gpu_check_does_not_know_is_refused_before_anything_runs(tmp_path):
    """GPUNN_CHECK_STAGES names the stages to run: a misspelt one would have cost the device call the stage it
    meant (the run going on without it), so it ends the script at once, exit 2, naming the stages, with nothing run
    or written. (GPUNN_CHECK_BUDGET=1: a script that went on would skip every stage, not run it.)"""
    rc, err = _dry_run(tmp_path / "out", GPUNN_CHECK_STAGES="tests,trian,nccl", GPUNN_CHECK_BUDGET="1")
    assert rc == 2, err[-2000:]
    assert "GPUNN_CHECK_STAGES='tests,trian,nccl': no stage 'trian'; the stages are device, tests, kernels, train, " \
           "precision, ensemble, streams, nccl, clip (device always runs)" in err
    assert not (tmp_path / "out").exists()


def test_a_commit_the_caller_names_is_the_reports_and_the_checkouts_git_is_only_noted(tmp_path):
    """The device tool may ship a stale .git with the current tree (session 23: HEAD 5f9f806 under main at 50d5e2c),
    and the report then named the stale commit, "with uncommitted changes". GPUNN_CHECK_COMMIT names the commit:
    device.txt says it and, beside it, what the .git says; the report's first line says only it. Unset, device.txt
    and the report say what the .git says, as before. (Only the device stage runs: GPUNN_CHECK_STAGES=device.)"""
    ran = waiting.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], timeout=30)
    head = ran.stdout.strip() if ran.returncode == 0 else "unknown"
    for named, said in (("50d5e2c", f"commit 50d5e2c (named by GPUNN_CHECK_COMMIT; the checkout's .git says {head}"),
                        (None, f"commit {head}")):
        out = tmp_path / str(named)
        rc, err = _dry_run(out, GPUNN_CHECK_STAGES="device", GPUNN_CHECK_BUDGET="60",
                           **({"GPUNN_CHECK_COMMIT": named} if named else {}))
        assert rc == 0, err[-2000:]
        (line,) = [line for line in (out / "device.txt").read_text().splitlines() if line.startswith("commit ")]
        assert line.startswith(said) and (line.endswith(")") if named else "GPUNN_CHECK_COMMIT" not in line), line
        report = (out / "report.md").read_text()
        assert f"`bench/gpu_check.sh` on commit {named or line[len('commit '):]}: **PASSED in " in report
        # torch's version (or "not installed") from its package metadata, in every run: the heading says it
        (torch,) = re.findall(r"^torch {2,}(\S.*)$", (out / "device.txt").read_text(), re.M)
        assert (" no torch — " if torch == "not installed" else f" torch {torch} — ") in report.splitlines()[0]


def _all_reserves() -> int:
    """The seconds gpu_check.sh keeps for the stages after the tests when all of them run (270: kernels 30, train 90,
    30 for each of the five hooks in bench/gpu_checks), read from the script."""
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    kernels, train = (int(re.search(rf"wants {stage} && RESERVE_{stage.upper()}=(\d+)", script)[1])
                      for stage in ("kernels", "train"))
    per_hook = int(re.search(r"RESERVE_HOOKS=\$\(\(present \* (\d+)\)\)", script)[1])
    hooks = re.search(r'^HOOKS="(.+)"$', script, re.M)[1].split()
    return kernels + train + per_hook * sum((ROOT / "bench" / "gpu_checks" / f"{hook}.py").exists() for hook in hooks)


@pytest.mark.slow
def test_a_dry_run_of_the_stages_asked_for_reports_the_others_as_not_asked_for(tmp_path):
    """GPUNN_CHECK_STAGES=tests: the device and tests stages run; each other stage's summary line says it was not
    asked for, which fails nothing, and reserves no budget: at 279 s the tests stage gets its time (with the other
    stages' 270 s kept, it would have under the 10 s a stage needs from the start, and be skipped at any speed). The
    report built from the folder gives every target "not measured: not asked for", reading none of the files an
    earlier run left there (here CI's dry run's): they are not this run's. (The budget is the script's wall clock:
    at 60 s, a loaded machine (load 9 on 2 CPUs) once left the tests stage too little of it. At 279 s the stage has
    its whole cap, 130 s, until the device stage has taken 149 s.)"""
    out = tmp_path / "out"
    shutil.copytree(RUNS / "cpu-dry-run", out)
    (out / "summary.txt").unlink()
    budget = _all_reserves() + 9  # 279
    rc, err = _dry_run(out, GPUNN_CHECK_STAGES="tests", GPUNN_CHECK_BUDGET=str(budget))
    summary = (out / "summary.txt").read_text().splitlines()
    assert rc == 0 and summary[0].startswith("ok   device: ") and summary[1].startswith("ok   tests: 3 passed"), (
        summary, err[-2000:])
    assert summary[2:-1] == [f"--   {stage}: not asked for (GPUNN_CHECK_STAGES)" for stage in (
        "kernels", "train", "precision", "ensemble", "streams", "nccl", "clip")]
    assert summary[-1].endswith(f"{budget}s budget: PASSED")
    report = (out / "report.md").read_text()
    assert ("budget; not run, not asked for (GPUNN_CHECK_STAGES): kernels, train, precision, ensemble, streams, nccl, clip."
            in report)
    t = _targets(report)
    assert len(t) == 17 and set(t.values()) == {("not measured: not asked for in this run (GPUNN_CHECK_STAGES)", "")}, t
    assert "**GPU tests:** `ok   tests: 3 passed" in report and "**Kernels**" not in report and " hook** (" not in report
    assert "tf32 relu adam: 0 (bound" not in report  # the earlier run's precision.json


def test_the_report_of_a_run_that_left_out_the_tests_and_train_reads_neither(tmp_path, capsys):
    """The H200 run as a rerun without the tests and train stages: their targets and questions say they were not
    asked for (not "unknown: no gpu_tests.xml"), train.json left in the folder is not read (it would be "met"), and
    the stages that ran are reported as before."""
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    summary = tmp_path / "run" / "summary.txt"
    text = re.sub(r"^ok   (tests|train): .*$", r"--   \1: not asked for (GPUNN_CHECK_STAGES)", summary.read_text(),
                  flags=re.M)
    summary.write_text(text)
    out = _report(tmp_path / "run", capsys=capsys)
    assert "**PASSED in 218 s** of a 420 s budget; not run, not asked for (GPUNN_CHECK_STAGES): tests, train." in out
    t = _targets(out)
    assert t["large bf16 ≥ 5× float32"] == ("not measured: not asked for in this run (GPUNN_CHECK_STAGES)", "")
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"][1] == "met"
    assert ("test_set_precision_between_fits_captures_anew: not measured: not asked for in this run (GPUNN_CHECK_STAGES)"
            in out)
    assert "unknown" not in out and "torch: not run in this call" in out.splitlines()[0]
    assert "**GPU tests:**" not in out and "**Training throughput**" not in out and "**Kernels**" in out


def _rerun_of_the_h200_run(folder, **lines):
    """The H200 fixture as a later rerun (header step 3) into ``folder``: 87 min later, on commit abc1234 (named by
    GPUNN_CHECK_COMMIT), tests, kernels and train not asked for, its ensemble hook 3.50× torch vmap; ``lines``:
    {stage: its summary line instead}."""
    shutil.copytree(RUNS / "h200-2026-11-28", folder)
    text = re.sub(r"^ok   (tests|kernels|train): .*$", r"--   \1: not asked for (GPUNN_CHECK_STAGES)",
                  (folder / "summary.txt").read_text(), flags=re.M)
    for stage, line in lines.items():
        text = re.sub(rf"^\S+ +{stage}: .*$", line, text, flags=re.M)
    (folder / "summary.txt").write_text(text)
    device = (folder / "device.txt").read_text().replace("2026-11-28 18:43 UTC", "2026-11-28 20:10 UTC")
    (folder / "device.txt").write_text(device.replace(
        "commit e381b4e", "commit abc1234 (named by GPUNN_CHECK_COMMIT; the checkout's .git says e381b4e)"))
    ensemble = json.loads((folder / "ensemble" / "ensemble.json").read_text())
    ensemble["targets"]["torch-vmap"]["speedup"] = 3.5
    (folder / "ensemble" / "ensemble.json").write_text(json.dumps(ensemble))


def _runs(markdown, table="### The open issues' GPU targets"):
    """{first cell after the issue (a target or a question): the merged section's run cell}."""
    rows = markdown.split(table, 1)[1].split("###", 1)[0].splitlines()[4:]
    return {line.split(" | ")[1 if table.startswith("### The open") else 0].lstrip("| "): line.rsplit(" | ", 1)[1][:-2]
            for line in rows if line.startswith("| ")}


def test_a_rerun_merges_over_the_full_run_stage_by_stage_each_figure_named_by_its_run(tmp_path, capsys):
    """Session 23 merged its full run (call 1) and its rerun of the tests and hooks after fixes (call 3) into RESULTS.md
    by hand. --merge LATER_DIR makes one section of both: each stage's figures are the latest run's that ran it (its
    line ok or FAIL), a stage the rerun skipped or was not asked for keeps the first run's, and every figure, answer
    and block names its run's commit and time; each run's summary is there. The first run's --add file, for a hook
    the rerun ran again, is said to be replaced, not silently dropped."""
    first = RUNS / "h200-2026-11-28"
    _rerun_of_the_h200_run(tmp_path / "rerun")
    header = (ROOT / "bench" / "gpu_check.sh").read_text().split("\nset -uo pipefail", 1)[0]
    (command,) = re.findall(r"^#    python bench/gpu_report\.py (GC_DIR .*--merge GR_DIR) > section\.md$", header, re.M)
    words = command.replace("GC_DIR", str(first)).replace("CALL2/streams.json", str(first / "streams-long.json"))
    out = _report(*words.replace("GR_DIR", str(tmp_path / "rerun")).split(), capsys=capsys)  # the header's step 3
    assert out.startswith("## `bench/gpu_check.sh`, 2 runs merged — NVIDIA H200 (143771 MiB), driver 580.159.04, "
                          "CuPy 14.2.0, torch 2.11.0+cu130 — 2026-11-28 18:43 UTC and 2026-11-28 20:10 UTC\n")
    assert ("Run 1 on commit e381b4e, 2026-11-28 18:43 UTC: **PASSED in 218 s** of a 420 s budget. Run 2 on commit "
            "abc1234, 2026-11-28 20:10 UTC: **PASSED in 218 s** of a 420 s budget; not run, not asked for "
            "(GPUNN_CHECK_STAGES): tests, kernels, train.") in out
    assert "Run 1 (e381b4e, 2026-11-28 18:43 UTC):\n\n```\nok   device" in out
    assert "Run 2 (abc1234, 2026-11-28 20:10 UTC):\n\n```\nok   device" in out
    t, runs = _targets(out), _runs(out)
    one, two = "e381b4e, 2026-11-28 18:43 UTC", "abc1234, 2026-11-28 20:10 UTC"
    assert t["large bf16 ≥ 5× float32"] == ("1,681,106 / 155,556 = 10.81×", "met")
    assert runs["large bf16 ≥ 5× float32"] == one
    assert t["K=256 small nets ≥ 3× the torch vmap ensemble"] == ("eager 3.50×", "met")  # the rerun's, not 2.55×
    assert runs["K=256 small nets ≥ 3× the torch vmap ensemble"] == two
    assert runs["a one-rank NCCL run: communicator, all-reduce and broadcast, distributed fits equal to one process"] == two
    assert "Not used: streams (streams-long.json), merged into run 1: run 2's streams stage replaces it." in out
    answers = _runs(out, "### The ensemble-precision review's questions")
    assert answers["set_precision between fits captures anew on a GPU (1e-5)"] == one  # the tests: run 1's
    assert answers["the bf16 (and tf32) ensemble graph is captured"] == f"{two}; {one}"  # precision, tests
    assert f"**GPU tests — run 1 ({one}):**" in out and f"**Kernels — run 1 ({one})**" in out
    assert f"**Training throughput — run 1 ({one})**" in out and f"**ensemble hook — run 2 ({two})**" in out
    # a rerun that skipped a stage (budget) keeps the first run's figures for it; one that failed it wins
    _rerun_of_the_h200_run(tmp_path / "skipped", ensemble="SKIP ensemble: no budget left (the run is incomplete: "
                           "it fails) (204s)", nccl="FAIL nccl (exit 1): /tmp/gc/nccl.txt (218s)")
    nccl = tmp_path / "skipped" / "nccl" / "nccl.json"
    nccl.write_text(json.dumps({**json.loads(nccl.read_text()), "checks": {"NCCL communicator": True,
                                                                           "broadcast": False}}))
    out = _report(first, "--merge", str(tmp_path / "skipped"), capsys=capsys)
    t, runs = _targets(out), _runs(out)
    assert t["K=256 small nets ≥ 3× the torch vmap ensemble"] == ("eager 2.55×", "**not met**")
    assert runs["K=256 small nets ≥ 3× the torch vmap ensemble"] == one
    nccl_target = "a one-rank NCCL run: communicator, all-reduce and broadcast, distributed fits equal to one process"
    assert t[nccl_target] == ("1 of 2 checks passed; failed: broadcast", "**not met**") and runs[nccl_target] == two


def test_runs_on_other_cards_or_given_newest_first_are_not_merged(tmp_path, capsys):
    """A later run's stages replace an earlier's, so the runs must be given oldest first, and be of one card (its
    targets judged alike): else the report refuses (status 2), naming the folder."""
    first = RUNS / "h200-2026-11-28"
    _rerun_of_the_h200_run(tmp_path / "rerun")
    gpu_report = _load("bench/gpu_report.py", "gpu_report")
    for args, said in (([str(tmp_path / "rerun"), "--merge", str(first)],
                        f"--merge {first}: its run (2026-11-28 18:43 UTC) is older than the one before it "
                        "(2026-11-28 20:10 UTC): give the runs oldest first"),
                       ([str(RUNS / "cpu-dry-run"), "--merge", str(tmp_path / "rerun")],
                        f"--merge {tmp_path / 'rerun'}: its run was on NVIDIA H200, 580.159.04, 143771 MiB, the first "
                        "on no nvidia-smi: report the two apart")):
        with pytest.raises(SystemExit) as exc:
            gpu_report.main(args)
        assert exc.value.code == 2 and said in capsys.readouterr().err


def test_a_rerun_killed_in_a_stage_before_it_wrote_its_figures_keeps_the_earlier_runs_for_it(tmp_path, capsys):
    """A rerun killed in its streams hook before the hook saved streams.json owned the stage in a merge (it ran it):
    issue 12's targets said "killed", labelled with the rerun, and the full run's figures were not shown. Such a
    run has no figures to give: the earlier run's stand, labelled as its, and the section says why. A rerun killed
    there after the hook saved some of its file still speaks for the stage (what it measured, cut short)."""
    first, rerun = RUNS / "h200-2026-11-28", tmp_path / "rerun"
    _rerun_of_the_h200_run(rerun)
    (rerun / "summary.txt").write_text("".join(line for line in (rerun / "summary.txt").read_text().splitlines(True)
                                               if not line.startswith(("ok   streams", "ok   nccl", "gpu_check on "))))
    saved = (rerun / "streams" / "streams.json").read_text()
    (rerun / "streams" / "streams.json").unlink()  # killed before its first save (streams.txt has its first lines)
    call2 = f"streams={first / 'streams-long.json'}"  # the header's step 3: call 2's 10^9-row stream into run 1
    out = _report(first, "--add", call2, "--merge", str(rerun), capsys=capsys)
    t, runs = _targets(out), _runs(out)
    one, two = "e381b4e, 2026-11-28 18:43 UTC", "abc1234, 2026-11-28 20:10 UTC"
    stream = "a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"
    assert runs[stream] == one and t[stream] == _targets(_report(first, "--add", call2, capsys=capsys))[stream]
    assert t[stream][1] == "**not met**" and "Merged from a later call: streams (streams-long.json)." in out
    assert runs["K=256 small nets ≥ 3× the torch vmap ensemble"] == two  # the rerun's hook before the kill
    assert runs["a one-rank NCCL run: communicator, all-reduce and broadcast, distributed fits equal to one process"] == one
    assert ("Run 2 on commit abc1234, 2026-11-28 20:10 UTC: **The run did not finish** (summary.txt has no closing line: "
            "the script was killed, in its streams stage). Run 2 was killed in its streams hook before it wrote "
            "streams/streams.json: run 1's streams figures stand.") in out
    assert f"**streams hook — run 1 ({one})**" in out
    (rerun / "streams" / "streams.json").write_text(saved)  # killed after the hook saved what it had measured
    out = _report(first, "--add", call2, "--merge", str(rerun), capsys=capsys)
    assert _runs(out)[stream] == two and "figures stand" not in out


def test_runs_on_one_gpu_merge_across_a_driver_update_saying_so(tmp_path, capsys):
    """Runs were merged only where device.txt's first lines were equal: a rerun after the machine's driver was updated
    (nvidia-smi's line "NVIDIA H200, 590.48.01, 143771 MiB") was refused. Same GPU, another driver: merged, the
    heading giving each run's driver and the section saying the figures were measured under each; another GPU is
    still refused."""
    first, rerun = RUNS / "h200-2026-11-28", tmp_path / "rerun"
    _rerun_of_the_h200_run(rerun)
    device = rerun / "device.txt"
    device.write_text(device.read_text().replace("NVIDIA H200, 580.159.04,", "NVIDIA H200, 590.48.01,", 1))
    out = _report(first, "--merge", str(rerun), capsys=capsys)
    assert out.startswith("## `bench/gpu_check.sh`, 2 runs merged — NVIDIA H200 (143771 MiB), driver 580.159.04 in "
                          "run 1 and 590.48.01 in run 2, CuPy 14.2.0, torch 2.11.0+cu130 — ")
    assert ("The driver changed between the runs (580.159.04 in run 1 and 590.48.01 in run 2): each figure was "
            "measured under its own run's.") in out
    assert "driver changed" not in _report(first, "--merge", str(first), capsys=capsys)
    device.write_text(device.read_text().replace("NVIDIA H200, 590.48.01, 143771 MiB",
                                                 "NVIDIA H100 80GB HBM3, 590.48.01, 81559 MiB", 1))
    with pytest.raises(SystemExit) as exc:
        _load("bench/gpu_report.py", "gpu_report").main([str(first), "--merge", str(rerun)])
    assert exc.value.code == 2 and (f"--merge {rerun}: its run was on NVIDIA H100 80GB HBM3, 590.48.01, 81559 MiB, "
                                    "the first on NVIDIA H200, 580.159.04, 143771 MiB: report the two apart"
                                    ) in capsys.readouterr().err


def test_an_ensemble_eager_row_that_lost_its_profile_to_the_budget_is_said_in_the_report(tmp_path, capsys):
    """Session 23's call 1: the ensemble hook's first eager row had no step profile (its process's budget spent) and
    nothing said so: an empty column. The report now names each of the hook's processes whose eager row lacks it."""
    assert "no step profile" not in _report(RUNS / "cpu-dry-run", capsys=capsys)  # profiled
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    saved = tmp_path / "run" / "ensemble" / "ensemble.json"
    e = json.loads(saved.read_text())
    lost = [dict(r, profile=None) if r["impl"] == "gpunn" else r for r in e["results"]]
    for rows, said in (({"results": lost, "graph_results": e["results"]}, "first process"),
                       ({"results": lost, "graph_results": lost}, "first process and of its graph process")):
        saved.write_text(json.dumps({**e, **rows}))
        assert (f"**ensemble hook:** the eager ensemble row of its {said} has no step profile (matmul / elementwise / "
                "optimizer / other, the table's last column): gpunn bench skips a row's profile run where its "
                "--max-seconds budget is spent") in _report(tmp_path / "run", capsys=capsys)


@pytest.fixture
def sigint_in_a_fit(monkeypatch):
    """gpu_check.sh's SIGINT at a hook stage's cap (bounded: timeout -s INT) arriving while the hook trains: at the
    first epoch of each fit. Where the fit handles it (gpunn's default), it stops after that batch and returns. Not in
    a data-parallel fit (one with a gradient hook): any exception there ends the process, by design (abort_on_error:
    the other ranks would wait forever), which is what the stage's signal should do."""
    import signal

    from gpunn.training import loop

    run_epoch = loop.Trainer.run_epoch
    # Python raises KeyboardInterrupt on SIGINT only where it started with SIGINT at its default; a process started in
    # the background of a shell without job control (nohup cmd &, CI runners) inherits it ignored, and raise_signal
    # then did nothing: these tests failed there (DID NOT RAISE). The stage's SIGINT in gpu_check.sh reaches a hook
    # started in the foreground, with the default handler, which this puts back for the test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupted(self, *args, **kwargs):
        if self.hook is None:
            signal.raise_signal(signal.SIGINT)
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(loop.Trainer, "run_epoch", interrupted)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_ensemble_exactness_of_a_nan_member_is_nan_not_zero(monkeypatch):
    """exactness() took Python's max of the members' differences, and max(0.0, nan) is 0.0: NaN weights on the GPU
    read as exact (the report's "each member equals its MLP" met)."""
    import gpunn

    hook = _load("bench/gpu_checks/ensemble.py", "ensemble_hook_for_nan")
    fit = gpunn.MLP.fit

    def nan_weights(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)
        self.params[0] = math.nan
        return history

    monkeypatch.setattr(gpunn.MLP, "fit", nan_weights)
    assert math.isnan(hook.exactness("cpu"))


HOOK_FITS = {  # each hook's code that trains, called as the hook calls it (small sizes)
    "precision held-out R²": lambda hook: hook.held_out_r2("cpu", True),
    "ensemble exactness": lambda hook: hook.exactness("cpu"),
    "ensemble graph check": lambda hook: hook.graph_check("cpu"),
    "streams timed fit": lambda hook: hook.epoch_fitter(([4, 8, 1], "relu", "identity", True, "float32", "cpu", 0), (
        numpy.ones((256, 4), numpy.float32), numpy.ones((256, 1), numpy.float32)), 64)(),
}


@pytest.mark.parametrize("name", sorted(HOOK_FITS))
def test_the_stages_sigint_during_a_hooks_fit_ends_the_hook_not_the_fit(name, sigint_in_a_fit):
    """A hook's fit that handled the stage's SIGINT returned part-trained and the hook went on: the CPU dry run of
    .ci/run, under load, had its nccl stage cut at 40 s and nccl.json then recorded 'distributed fit on a source ==
    one process' as failed ('ValueError: operands could not be broadcast together with shapes (3,) (2,)': a 2-epoch
    history against a 3-epoch one), which the report gives as issue 13 not met; an R², exactness or samples/s of a
    fit cut short would be as false. Each hook's fits leave the signal to end the hook (handle_interrupt=False, as
    gpunn bench's timed_fit), so a stage cut short says 'timed out' with what it finished, and nothing false."""
    module = name.split()[0]
    hook = _load(f"bench/gpu_checks/{module}.py", f"{module}_hook")
    with pytest.raises(KeyboardInterrupt):
        HOOK_FITS[name](hook)


def test_the_stages_sigint_during_the_nccl_hooks_first_fit_records_no_false_check(tmp_path, monkeypatch,
                                                                                   sigint_in_a_fit):
    """As above, for the nccl hook's fits, which its main runs (one process without MPI, as the test above): its first
    check's one-process reference fit stopped at its first batch, and the check failed (params differ)."""
    import sys

    from gpunn.distributed import comm

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(comm, "_WORLD", {})
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    hook = _load("bench/gpu_checks/nccl.py", "nccl_hook")
    with pytest.raises(KeyboardInterrupt):
        hook.main(["--device", "cpu", "--out", str(tmp_path / "nccl")])
    saved = tmp_path / "nccl" / "nccl.json"
    assert not saved.exists() or all(json.loads(saved.read_text())["checks"].values())


HANGS_AFTER_ONE_PASS = """
import os, signal, time

def test_passes():
    pass

def test_hangs():
    os.kill(os.getppid(), signal.SIGALRM)  # pytest's parent is `timeout`, whose own timer signals it so: time is up
    time.sleep(60)
"""

SECOND_SIGINT = """
import os, signal, time, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):  # timeout's second SIGINT, to the process group, landing as pytest reports
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
"""


@pytest.mark.slow
def test_a_stage_ended_at_its_cap_keeps_what_ran_and_one_that_ignores_the_signal_is_killed(tmp_path):
    """Every stage of gpu_check.sh runs under bounded() (-k: SIGKILL's grace, 10 s). With timeout's SIGTERM, pytest
    died without a word: no gpu_tests.xml and no counts, so a tests stage cut short (a hang; a GPU machine without
    pytest-xdist running 600 tests one by one) said nothing of what passed or where it stopped. And the device
    stage's `timeout 60 gpunn info` had no -k: gpunn handles SIGTERM itself, so one stuck in a CUDA call would have
    held the script until the session's outer timeout, leaving no summary line. The stage's time running out is
    `timeout` receiving SIGALRM, its own timer's signal, sent by the test that hangs: nothing waits on a clock.
    timeout then signals pytest and its process group, so a second SIGINT may land while pytest writes its reports
    (seen under load) and lose both; the tests' conftest (copied here) with GPUNN_TESTS_ONE_SIGINT=1, as the stage
    sets it, ignores it."""
    import os
    import sys

    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    bounded = re.search(r"^bounded\(\) \{.*\}$", script, re.M).group(0)
    body = script.split("\nset -uo pipefail", 1)[1]
    assert [line for line in body.splitlines() if re.search(r"\btimeout\b", line.split("#")[0])] == [bounded]
    assert len(re.findall(r"GPUNN_TESTS_ONE_SIGINT=1 bounded \S+ \S+ -m pytest", body)) == 2  # dry run and GPU

    (tmp_path / "test_hang.py").write_text(HANGS_AFTER_ONE_PASS)
    (tmp_path / "second_sigint.py").write_text(SECOND_SIGINT)
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k != "GPUNN_FAKE_CUPY"}
    env.update(GPUNN_TESTS_ONE_SIGINT="1", PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "tests")]))
    # the same signal, a longer grace: pytest, interrupted, writes its reports and exits (its interpreter ends with
    # gpunn, NumPy and Numba loaded), 3-7 s on this 2-core machine at load 15 and past the stage's 10 s at load 20,
    # where timeout killed it (137). The grace is the second part's subject, below
    patient = re.sub(r" -k \d+ ", " -k 60 ", bounded)  # (still within waiting.run's 120 s, which kills bash alone)
    assert patient != bounded
    run = waiting.run(["bash", "-c", f"{patient}\nbounded 600 \"$@\"", "bash", sys.executable, "-m", "pytest", "-q",
                       "-p", "no:cacheprovider", "-p", "second_sigint", "test_hang.py", "--junitxml=out.xml"],
                      timeout=120, cwd=tmp_path, env=env)
    assert run.returncode == 124, run.stdout + run.stderr  # ended by its time limit, as the stage's line says
    assert re.search(r"^1 passed in ", run.stdout, re.M), run.stdout + run.stderr  # the counts the stage quotes
    assert 'name="test_passes"' in (tmp_path / "out.xml").read_text()  # what gpu_report reads the outcomes from
    assert re.search(r"\.py:\d+: KeyboardInterrupt", run.stdout)  # where it stopped (in the test, nearly always)

    stuck = ("import os, signal, time\nfor s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n"
             "os.kill(os.getppid(), signal.SIGALRM)\ntime.sleep(30)")
    brief = re.sub(r" -k \d+ ", " -k 1 ", bounded)  # the script's -k, its grace 1 s here (the test waited out 10 s)
    assert brief != bounded
    run = waiting.run(["bash", "-c", f"{brief}\nbounded 600 \"$@\"", "bash", sys.executable, "-c", stuck], timeout=120)
    assert run.returncode == 137  # SIGKILL 1 s after the signal it ignored, not 30 s later at its own end


def test_the_test_a_time_limit_interrupted_is_not_counted_as_passed(tmp_path, capsys):
    """A tests stage ended by its time limit: pytest's junit XML (SIGINT, bounded()) holds the tests that ran and,
    for the one interrupted, a testcase with no name and no outcome, which the report counted as passed."""
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    (tmp_path / "run" / "gpu_tests.xml").write_text(  # as pytest 9 writes it (bounded() on a hanging test)
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" '
        'failures="0" skipped="0" tests="1" time="0.560"><testcase classname="tests.test_backend" '
        'name="test_probe" time="0.008" /><testcase time="0.000" /></testsuite></testsuites>')
    summary = tmp_path / "run" / "summary.txt"
    summary.write_text(re.sub(r"(?m)^ok   tests: .*$", "FAIL tests: timed out after 130s: 1 passed in 131.02s",
                              summary.read_text()))
    out = _report(tmp_path / "run", capsys=capsys)
    assert "(1 passed, 0 failed, 0 skipped in gpu_tests.xml)" in out


def test_a_second_call_cut_short_in_the_long_stream_is_reported_as_such(tmp_path, capsys):
    """gpu_check.sh's second command runs the 10^9-row stream with about 20 s to spare. The hook saved
    streams.json only after it, so a call whose time ran out in it left the synthetic part alone, and the report
    said 'not run' (or, merged over the first call's shorter run, only 'not 10^9 rows'). The hook now saves a
    'started' entry before the epoch, None after it; an --add file that is no JSON object is named, not
    silently left out."""
    long = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    started = {"synthetic_long": {"rows": 10 ** 9, "at_s": 14.2, "expected_s": 145.3}}
    call2 = tmp_path / "streams.json"
    cases = [(dict(long, throughput={}, started=started), None),  # cut short, over a first call without the part
             (dict(long, throughput={}, started=started), 10 ** 8),  # ... over a first call's 10^8 rows
             (dict(long, started={"synthetic_long": None}), 10 ** 8)]  # finished: the 10^9 rows replace it
    for added, first_rows in cases:
        run = tmp_path / f"run{first_rows}{len(added['throughput'])}"
        shutil.copytree(RUNS / "h200-2026-11-28", run)
        if first_rows:
            first = dict(long["throughput"]["synthetic_long"], rows=first_rows)
            (run / "streams" / "streams.json").write_text(json.dumps(dict(long, throughput={"synthetic_long": first},
                                                                        started={"synthetic_long": dict(
                                                                            started["synthetic_long"], rows=first_rows)})))
        call2.write_text(json.dumps(added))
        measured, verdict = _targets(_report(run, "--add", f"streams={call2}", capsys=capsys))[
            "a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
        if not added["throughput"]:
            assert ("a 1,000,000,000-row stream started 14 s into the hook (about 145 s long) did not finish"
                    in measured) and verdict == "", measured
            assert ("on 100,000,000 rows" in measured and ": not 10^9 rows; a 1,000,000,000-row stream" in measured
                    ) == bool(first_rows), measured
        else:
            assert "1,000,000,000 rows" in measured and "did not finish" not in measured and verdict == "**not met**"
    call2.write_text('{"device": "cuda:0 (NVIDIA H200, CuPy 14.2.0)", "throughput": {"synth')  # cut mid-write
    out = _report(RUNS / "h200-2026-11-28", "--add", f"streams={call2}", capsys=capsys)
    assert f"**Not merged** (not a JSON object: a file cut short while it was written?): streams ({call2})." in out
    assert "Merged from a later call" not in out


def test_a_nccl_hook_check_that_raises_fails_alone_and_the_next_ones_still_run(tmp_path, monkeypatch, capsys):
    """bench/gpu_checks/nccl.py runs the data-parallel paths that first meet NCCL on the GPU machine (an Ensemble's
    among them, never run on a GPU before). A check that raised ended the hook with no nccl.json (written only at
    the end), so the checks before it were lost too and the report said 'not measured'; the checks after it never
    ran. Now each check's exception is that check's failure, kept with its error, nccl.json is rewritten after each
    check, and the report names the error. One process without MPI (as tests/test_distributed.py's one_process)."""
    import sys

    import gpunn
    from gpunn.distributed import comm

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(comm, "_WORLD", {})
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def broken(self, *args, **kwargs):
        raise RuntimeError("made to fail by the test")

    monkeypatch.setattr(gpunn.MLP, "fit", broken)
    monkeypatch.setattr(gpunn.Ensemble, "fit", broken)
    hook = _load("bench/gpu_checks/nccl.py", "nccl_hook")
    monkeypatch.setattr(hook, "shard_reads_interleave", lambda device, out: True)  # (the slow one, left passing)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    assert hook.main(["--device", "cpu", "--out", str(tmp_path / "run" / "nccl")]) == 1
    saved = json.loads((tmp_path / "run" / "nccl" / "nccl.json").read_text())
    failed = {k for k, v in saved["checks"].items() if not v}
    assert len(saved["checks"]) == 4 and len(failed) == 3 and failed == set(saved["errors"])
    assert saved["finished"] is True  # its last save (gpu_report reads an --add'ed file without it as cut short)
    assert saved["checks"]["shard reads on the device (generated, .npy row ranges) interleave exactly"]
    assert set(saved["errors"].values()) == {"RuntimeError: made to fail by the test"}
    assert "FAIL: distributed fit == plain fit at the global batch (rel < 1e-10) (RuntimeError: made to fail" in (
        capsys.readouterr().out)
    measured, verdict = next(v for k, v in _targets(_report(tmp_path / "run", capsys=capsys)).items()
                             if k.startswith("a one-rank NCCL run"))
    assert "1 of 4 checks passed" in measured and "Ensemble distributed fit (arrays, bootstrapped, .npy " \
        "source) == one process (rel < 1e-10) (RuntimeError: made to fail by the test)" in measured
    assert verdict == "**not met**"  # a check that failed, on the CPU too


def test_a_streams_hook_part_that_raises_fails_alone_and_the_next_parts_still_run(tmp_path, monkeypatch, capsys):
    """bench/gpu_checks/streams.py runs its correctness checks before issue 12's throughput parts, in both GPU calls
    (the second is the 10^9-row stream alone). A check or part that raised ended the hook: the npy check (the pinned
    side-stream pipeline) took the synthetic check's results with it (streams.json was first written after both) and
    every throughput part after it, the 10^9-row stream included. Now each part's exception is its error in
    streams.json, the hook fails, and the next parts run; the report names the error."""
    from gpunn.bench import stream

    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    replay_ok, make_npy, made = hook.replay_ok, stream.make_npy, []

    def npy_check_fails(source, epoch, batch_size, first):
        if epoch == 0:  # the npy check's (the synthetic check replays epoch 1)
            raise RuntimeError("the npy check made to fail by the test")
        return replay_ok(source, epoch, batch_size, first)

    def first_fails(*args, **kwargs):  # npy_large's file; npy's, the next, is made
        made.append(args)
        if len(made) == 1:
            raise RuntimeError("npy_large made to fail by the test")
        return make_npy(*args, **kwargs)

    monkeypatch.setattr(hook, "replay_ok", npy_check_fails)
    monkeypatch.setattr(stream, "make_npy", first_fails)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    out_dir = tmp_path / "run" / "streams"
    # --quick: the small sizes (the CPU's 32-256-256-1 fits took 2 s of the test's 7; their rates are not its subject)
    argv = ["--device", "cpu", "--out", str(out_dir), "--max-seconds", "600", "--parts", "npy_large,npy", "--quick"]
    assert hook.main(argv) == 1
    saved = json.loads((out_dir / "streams.json").read_text())
    assert saved["checks"] == {"synthetic_rows_are_makes": True, "synthetic_resume_replays": True}
    assert saved["errors"] == {"npy checks": "RuntimeError: the npy check made to fail by the test",
                               "npy_large": "RuntimeError: npy_large made to fail by the test"}
    assert set(saved["throughput"]) == {"npy"} and len(made) == 2
    out = capsys.readouterr().out
    assert "FAIL npy checks: RuntimeError: the npy check made to fail by the test" in out and "streams: FAIL" in out
    measured, verdict = next(v for k, v in _targets(_report(tmp_path / "run", capsys=capsys)).items()
                             if k.startswith(".npy on the large configuration"))
    assert (measured, verdict) == ("not measured: the part failed: RuntimeError: npy_large made to fail by the test",
                                   "")


def test_a_10_9_row_stream_that_raised_is_reported_with_its_error(tmp_path, capsys):
    """The 10^9-row stream's part saves 'started' before its epoch; one that raised there is reported with its error,
    not as a call whose time ran out; where the synthetic part it starts from failed, the report says that."""
    shutil.copytree(RUNS / "h200-2026-11-28", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "streams")  # the second call's streams.json alone
    calls = json.loads((RUNS / "h200-2026-11-28" / "streams" / "streams.json").read_text())
    started = {"rows": 10 ** 9, "at_s": 20.0, "expected_s": 150.0}
    for throughput, errors, why in (
            ({"synthetic": calls["throughput"]["synthetic"]},
             {"synthetic_long": "CUDARuntimeError: cudaErrorMemoryAllocation: out of memory"},
             "the part failed: CUDARuntimeError: cudaErrorMemoryAllocation: out of memory"),
            ({}, {"synthetic": "RuntimeError: made to fail"},
             "the synthetic part it starts from failed: RuntimeError: made to fail")):
        (tmp_path / "streams.json").write_text(json.dumps(dict(
            calls, throughput=throughput, errors=errors, started={"synthetic_long": started} if throughput else {})))
        t = _targets(_report(tmp_path / "run", "--add", f"streams={tmp_path / 'streams.json'}", capsys=capsys))
        assert t["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"] == (f"not measured: {why}", "")


def _ensemble_rows(rounds=None, **rates):
    """gpunn.bench.run_ensembles' rows (dicts of its Results) with these member-samples/s, by impl: in each of
    three rounds, or as ``rounds`` gives them (impl: samples/s per round; the median is the row's samples/s)."""
    from dataclasses import asdict

    from gpunn.bench.runners import Result

    rounds = {impl: (rounds or {}).get(impl, [rate] * 3) for impl, rate in rates.items()}
    rows = [asdict(Result("small-x256", "16-64-64-1 x256", "cuda:0", impl, impl, "bf16" if "bf16" in impl else
                          "float32", 128, rate, (rate, rate), gpunn_speedup=statistics.median(
                              g / r for g, r in zip(rounds["gpunn"], rounds[impl])),
                          fraction_of_peak=0.1, fraction_of_gemm=0.2, rounds=rounds[impl]))
            for impl, rate in rates.items()]
    # as a JSON file holds them (no NaN: a row read back then equals the row)
    return json.loads(json.dumps([{k: 0.0 if v != v else v for k, v in row.items()} for row in rows]))


def _ensemble_hook(monkeypatch, benchmark_error=None, checks_pass=True):
    """bench/gpu_checks/ensemble.py with run_ensembles giving issue 11's eager rows (or raising ``benchmark_error``),
    and (variants, graph) of each call made in this process. Its exactness check passes, or (``checks_pass``
    False) raises."""
    from gpunn import bench

    hook = _load("bench/gpu_checks/ensemble.py", "ensemble_hook")
    calls = []

    def run_ensembles(configs, backends, peers=(), graph=None, variants=(), **kwargs):
        calls.append((tuple(variants), graph))
        if benchmark_error is not None:
            raise benchmark_error
        return _ensemble_rows(**{"gpunn": 36e6, "sequential": 0.2e6, "torch-vmap": 14e6})

    def broken(device):
        raise RuntimeError("the check made to fail by the test")

    monkeypatch.setattr(hook, "exactness", (lambda device: 0.0) if checks_pass else broken)
    monkeypatch.setattr(bench, "run_ensembles", run_ensembles)
    return hook, calls


def _python(code, *argv):
    import sys

    return [sys.executable, "-c", code, *argv]


def _children(graph, bf16=None, started=None):
    """child_command for the hook's later processes: ``graph`` / ``bf16`` are _python() commands (bf16 None: one that
    exits 1 having written nothing); ``started`` gets each process's flag and --max-seconds."""
    commands = {"--graph-rows": graph, "--bf16-row": bf16 or _python("raise SystemExit(1)")}

    def command(args, flag, seconds):
        if started is not None:
            started[flag] = seconds
        return commands[flag]
    return command


GRAPH_CHECK = {"captured": True, "reason": None, "max_rel_err": 1e-16}
# a graph process's rows (its eager row, its graph row, its own torch vmap) and what it writes
GRAPH_ROWS = _ensemble_rows(**{"gpunn": 35e6, "gpunn-graph": 48e6, "torch-vmap": 12e6})
WRITES = "import sys; open(sys.argv[2], 'w').write(sys.argv[1])"  # a later process that wrote its file


def _writes(out_dir, name, got):
    return _python(WRITES, json.dumps(got), str(out_dir / name))


# a later process made to die as a sticky CUDA fault (or a driver's) may end it: after checking that the eager rows
# were in ensemble.json before it started (else it exits 3), and writing what argv[2] holds into argv[3] first
DIES = ("import json, os, sys; saved = json.load(open(sys.argv[1]))\n"
        "if 'torch-vmap' not in saved.get('targets', {}): sys.exit(3)\n"
        "open(sys.argv[3], 'w').write(sys.argv[2])\n"
        "os.abort()")


def _dies(out_dir, name, got=None):
    return _python(DIES, str(out_dir / "ensemble.json"), json.dumps(got or {}), str(out_dir / name))


@pytest.mark.gpu
def test_a_bf16_ensemble_row_that_kills_its_process_costs_none_of_issue_11s_targets(gpu, tmp_path, monkeypatch,
                                                                                     capsys):
    """With GPUNN_CHECK_ENSEMBLE_SECONDS=90 (the next GPU session) the hook benchmarks a bf16 ensemble row whose path
    (Ensemble(precision="bf16", graph=True): packed bf16 members, strided batched GemmEx) has never run on a GPU. It
    ran in the same run_ensembles call as issue 11's rows, and on failure again without it in the same process: after
    a sticky CUDA fault (an illegal address...) in it, every later CUDA call of the process fails, the retry too, and
    issue 11's targets were lost for the run. Now the float32 rows are measured and saved first, and the bf16 row
    runs in a process of its own (here one that ends by SIGABRT), whose end costs nothing of them."""
    hook, calls = _ensemble_hook(monkeypatch)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    out_dir = tmp_path / "run" / "ensemble"
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": GRAPH_ROWS}),
        _dies(out_dir, "ensemble-bf16.json")))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "90"]) == 0
    assert calls == [((), False)]  # neither the graph row nor the bf16 row in this process
    saved = json.loads((out_dir / "ensemble.json").read_text())
    assert saved["bf16_error"] == "its process was ended by SIGABRT without writing its rows"
    assert saved["targets"]["sequential"]["met"] and saved["graph_targets"]["torch-vmap"]["met"]
    capsys.readouterr()
    out = _report(tmp_path / "run", capsys=capsys)
    t = _targets(out)
    assert t["K=256 small nets ≥ 3× the torch vmap ensemble"] == ("eager 2.57×, graph 4.00×", "met")
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"] == (
        "eager 180.00×, graph 246.86× (paired by round in each of two processes, through the eager row both ran)", "met")
    assert "the row failed: its process was ended by SIGABRT without writing its rows" in out


@pytest.mark.gpu
def test_a_graph_process_that_dies_costs_none_of_the_eager_targets_and_keeps_its_check(gpu, tmp_path, monkeypatch,
                                                                                        capsys):
    """Ensemble(graph=True) (the graph check, float64, and the K=256 graph row) has never run on a GPU. Both ran in
    this process with the eager rows (the graph check before them, the graph row in their rounds), so a sticky CUDA
    fault there lost issue 11's eager targets and the exactness check's peers for the run. Now they run after the
    eager rows are saved, in a process of their own (--graph-rows, here one that writes its check and then ends by
    SIGABRT in its rows): the eager targets stand, the check is kept, the graph rows' failure is said (and fails the
    hook), the bf16 row's process still runs, and the vmap target, which only the graph row may meet, gets no
    verdict from the eager row alone."""
    hook, calls = _ensemble_hook(monkeypatch)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    out_dir = tmp_path / "run" / "ensemble"
    bf16_rows = _ensemble_rows(**{"gpunn": 30e6, "gpunn-graph": 40e6, "gpunn-graph-bf16": 60e6})
    started = {}
    monkeypatch.setattr(hook, "child_command", _children(
        _dies(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK}),
        _writes(out_dir, "ensemble-bf16.json", {"results": bf16_rows}), started))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "90"]) == 1
    assert calls == [((), False)]
    # the graph process may take all of the 90 s but 2 s to save and the bf16 process's least (its row decides a
    # target, the bf16 row none); the bf16 process what the graph process left
    assert 70 < started["--graph-rows"] <= 90 - 2 - hook.BF16_MIN_SECONDS, started
    assert hook.BF16_MIN_SECONDS <= started["--bf16-row"] <= 90 - 2, started
    saved = json.loads((out_dir / "ensemble.json").read_text())
    assert saved["graph_error"] == "its process was ended by SIGABRT without writing its rows"
    assert saved["graph"] == GRAPH_CHECK and "graph_targets" not in saved
    assert saved["targets"]["sequential"]["met"] and not saved["targets"]["torch-vmap"]["met"]
    assert saved["bf16"] == {"gpunn-graph": 1.5, "torch-vmap": pytest.approx(60 / 30 * 36 / 14)}
    capsys.readouterr()
    out = _report(tmp_path / "run", capsys=capsys)
    assert ("| the ensemble's CUDA graph (Ensemble()'s default, float64, 3 members) is captured and trains as the eager "
            "step | captured; largest relative difference from the eager fit 1e-16 (cuda) |") in out
    t = _targets(out)
    lost = "the graph rows failed: its process was ended by SIGABRT without writing its rows"
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"] == (f"eager 180.00×, {lost}", "met")
    assert t["K=256 small nets ≥ 3× the torch vmap ensemble"] == (f"eager 2.57×, {lost}", "")
    assert t["each member equals its MLP on the GPU (float64, 3 members, ≤ 1e-10 relative)"][1] == "met"


@pytest.mark.gpu
@pytest.mark.parametrize("flag", ["--graph-rows", "--bf16-row"])
def test_a_hook_ended_while_a_later_process_runs_says_so_and_its_target_gets_no_verdict(gpu, tmp_path, monkeypatch,
                                                                                        capsys, flag):
    """The stage's SIGINT at its cap ends the hook wherever it is: in the graph process, ensemble.json then held the
    eager targets alone, and the report judged the torch-vmap target "not met" from the eager row (2.55x on the
    H200), as if no graph row had been meant to run. Each later process's error is saved before it starts, and
    replaced by its outcome."""
    hook, _ = _ensemble_hook(monkeypatch)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    out_dir = tmp_path / "run" / "ensemble"
    run_child = hook.run_child
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": GRAPH_ROWS})))

    def ended_in(args, child, name, left):
        if child != flag:
            return run_child(args, child, name, left)
        raise KeyboardInterrupt  # the stage's SIGINT, while that process runs

    monkeypatch.setattr(hook, "run_child", ended_in)
    with pytest.raises(KeyboardInterrupt):
        hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "90"])
    saved = json.loads((out_dir / "ensemble.json").read_text())
    key = "graph_error" if flag == "--graph-rows" else "bf16_error"
    assert re.fullmatch(r"the hook was ended while its process ran \(started \d+ s into the hook\)", saved[key]), saved
    assert ("graph_error" in saved) == (flag == "--graph-rows") and saved["targets"]["sequential"]["met"]
    capsys.readouterr()
    out = _report(tmp_path / "run", capsys=capsys)
    measured, verdict = _targets(out)["K=256 small nets ≥ 3× the torch vmap ensemble"]
    if flag == "--graph-rows":
        assert (measured, verdict) == (f"eager 2.57×, the graph rows failed: {saved[key]}", "")
    else:
        assert (measured, verdict) == ("eager 2.57×, graph 4.00×", "met")
        assert f"| the bf16 ensemble row's speed (small-x256, CUDA graph) | the row failed: {saved[key]} |" in out


@pytest.mark.gpu
def test_the_graph_rows_vmap_target_is_from_its_own_rounds_and_the_sequential_one_across_processes(
        gpu, tmp_path, monkeypatch, capsys):
    """The graph row's speed-up over torch vmap is from its process's own rounds (its own vmap row, not the eager
    benchmark's), paired by round; over the sequential fits, which its process does not run, chained through the
    eager row both processes ran (each factor paired by round), said so. A process that wrote rows without a graph row failed; one killed at its time is said so, with what it wrote
    of its check kept. Its process runs this hook with --graph-rows (the hook's own command, checked here)."""
    import sys

    hook, _ = _ensemble_hook(monkeypatch)
    out_dir = tmp_path / "ensemble"
    args = type("Args", (), {"device": "cuda", "out": str(out_dir)})
    for flag in ("--graph-rows", "--bf16-row"):
        assert hook.child_command(args, flag, 70.25) == [
            sys.executable, str(ROOT / "bench" / "gpu_checks" / "ensemble.py"), flag, "--device", "cuda", "--out",
            str(out_dir), "--max-seconds", "70.2"]
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": GRAPH_ROWS})))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "50"]) == 0
    saved = json.loads((out_dir / "ensemble.json").read_text())
    assert saved["graph_targets"] == {  # over the sequential fits: graph/eager in its rounds x eager/sequential
        "sequential": {"speedup": pytest.approx(48 / 35 * 36 / 0.2), "target": 50.0, "met": True, "processes": 2,
                       "statistic": "chained"},
        "torch-vmap": {"speedup": 4.0, "target": 3.0, "met": True, "processes": 1, "statistic": "paired"}}
    assert saved["graph"] == GRAPH_CHECK and saved["graph_results"] == GRAPH_ROWS and "bf16_skipped" not in saved
    assert "bf16_error" not in saved and "bf16" not in saved  # under 60 s: no bf16 process
    rows = [r for r in GRAPH_ROWS if r["impl"] != "gpunn-graph"]
    monkeypatch.setattr(hook, "child_command", _children(_writes(out_dir, "ensemble-graph.json",
                                                                 {"graph": GRAPH_CHECK, "results": rows})))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "50"]) == 1
    saved = json.loads((out_dir / "ensemble.json").read_text())
    assert saved["graph_error"] == "its process ran no gpunn-graph row" and "graph_targets" not in saved
    monkeypatch.setattr(hook, "GRAPH_MIN_SECONDS", 1)
    monkeypatch.setattr(hook, "child_command", _children(_python(
        "import sys, time; open(sys.argv[2], 'w').write(sys.argv[1]); time.sleep(600)",
        json.dumps({"graph": GRAPH_CHECK}), str(out_dir / "ensemble-graph.json"))))
    got = hook.graph_rows(type("Args", (), {"device": "cuda", "out": str(out_dir), "max_seconds": 6.0}),
                          __import__("time").monotonic(), "cuda", [])
    assert got == {"graph": GRAPH_CHECK,
                   "graph_error": "its process was still running after 4 s, and was killed without writing its rows"}


@pytest.mark.gpu
def test_the_graph_rows_alone_write_their_check_and_rows_or_their_errors_for_the_hook(gpu, tmp_path, monkeypatch):
    """ensemble.py --graph-rows (what the hook's graph process runs): the graph check, saved at once, then a benchmark
    of the graph row beside the eager row and torch vmap, into DIR/ensemble-graph.json; a check that raises is kept
    as its error and the rows still run, rows that raise are written as the error."""
    from gpunn import bench

    hook = _load("bench/gpu_checks/ensemble.py", "ensemble_hook")
    calls = []

    def run_ensembles(configs, backends, peers=(), graph=None, variants=(), **kwargs):
        calls.append((configs[0].name, tuple(peers), tuple(variants), graph))
        assert json.loads((tmp_path / "ensemble-graph.json").read_text())["graph"]  # the check, saved before
        if len(calls) > 1:
            raise RuntimeError("made to fail by the test")
        return GRAPH_ROWS

    def broken(device):
        raise RuntimeError("the check made to fail by the test")

    monkeypatch.setattr(bench, "run_ensembles", run_ensembles)
    monkeypatch.setattr(hook, "graph_check", lambda device: GRAPH_CHECK)
    argv = ["--graph-rows", "--device", "cuda", "--out", str(tmp_path), "--max-seconds", "25"]
    assert hook.main(argv) == 0
    assert calls == [("small-x256", ("torch-vmap",), (("float32", False),), None)]  # the default (a graph), and eager
    assert json.loads((tmp_path / "ensemble-graph.json").read_text()) == {"graph": GRAPH_CHECK, "results": GRAPH_ROWS}
    monkeypatch.setattr(hook, "graph_check", broken)
    (tmp_path / "ensemble-graph.json").unlink()
    assert hook.main(argv) == 1
    assert json.loads((tmp_path / "ensemble-graph.json").read_text()) == {
        "graph": {"error": "RuntimeError: the check made to fail by the test"},
        "error": "RuntimeError: made to fail by the test"}
    assert not (tmp_path / "ensemble.json").exists()


@pytest.mark.gpu
def test_the_graph_targets_are_paired_by_round_not_a_ratio_of_medians(gpu, tmp_path, monkeypatch, capsys):
    """The eager targets were the median of per-round ratios (gpunn_speedup) and the graph row's a ratio of the two
    rows' medians, which a burst of load in one round can move past the target though no round's pair reaches it.
    Here torch vmap's slow round is a different round from the graph row's: the medians give 48/12 = 4.0x (met),
    while the rounds give 3.5x, 1.5x, 2.4x: 2.4x (not met; the eager row 2.57x leaves the target not met). Rounds of
    unequal counts (never written by the bench) fall back to the medians, said so."""
    hook, _ = _ensemble_hook(monkeypatch)
    out_dir = tmp_path / "ensemble"
    rounds = {"gpunn": [35e6, 35e6, 35e6], "gpunn-graph": [42e6, 48e6, 60e6], "torch-vmap": [12e6, 32e6, 25e6]}
    rows = _ensemble_rows(rounds, **{"gpunn": 35e6, "gpunn-graph": 48e6, "torch-vmap": 25e6})
    rows[2]["samples_per_s"] = 12e6  # the medians' ratio 4.0, as a burst in one round may leave it
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": rows})))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "50"]) == 0
    got = json.loads((out_dir / "ensemble.json").read_text())["graph_targets"]["torch-vmap"]
    assert got == {"speedup": pytest.approx(2.4), "target": 3.0, "met": False, "processes": 1, "statistic": "paired"}
    rows[2]["rounds"] = [12e6, 32e6]
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": rows})))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "50"]) == 0
    got = json.loads((out_dir / "ensemble.json").read_text())["graph_targets"]["torch-vmap"]
    assert got == {"speedup": 4.0, "target": 3.0, "met": True, "processes": 1, "statistic": "medians"}


@pytest.mark.gpu
def test_the_bf16_ensemble_rows_process_is_compared_with_its_own_graph_row_and_the_hooks_torch_vmap(
        gpu, tmp_path, monkeypatch, capsys):
    """The bf16 row's speed-up over the float32 graph row is within its process's rounds; over torch vmap it is
    against the eager benchmark's torch vmap row, chained through the eager row both processes ran. Its process runs this hook with
    --bf16-row, killed when --max-seconds runs out."""
    hook, _ = _ensemble_hook(monkeypatch)
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    out_dir = tmp_path / "run" / "ensemble"
    rows = _ensemble_rows(**{"gpunn": 30e6, "gpunn-graph": 40e6, "gpunn-graph-bf16": 60e6})
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": GRAPH_ROWS}),
        _writes(out_dir, "ensemble-bf16.json", {"results": rows})))
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "90"]) == 0
    saved = json.loads((out_dir / "ensemble.json").read_text())
    assert saved["bf16"] == {"gpunn-graph": 1.5, "torch-vmap": pytest.approx(60 / 30 * 36 / 14)}
    assert saved["bf16_statistic"] == {"gpunn-graph": "paired", "torch-vmap": "chained"}
    assert saved["bf16_results"] == rows
    assert "bf16_error" not in saved and saved["targets"]["torch-vmap"]["speedup"] == pytest.approx(36 / 14)
    capsys.readouterr()
    assert "1.50× gpunn-graph, 5.14× torch-vmap (paired by round in each of two processes, through the eager row both ran)" in _report(tmp_path / "run", capsys=capsys)


@pytest.mark.gpu
def test_the_bf16_row_alone_writes_its_rows_or_its_error_for_the_hook(gpu, tmp_path, monkeypatch):
    """ensemble.py --bf16-row (what the hook's bf16 process runs): a benchmark of the bf16 row beside its float32
    graph and eager rows, no peers, into DIR/ensemble-bf16.json; an exception is written there as its error."""
    from gpunn import bench

    hook = _load("bench/gpu_checks/ensemble.py", "ensemble_hook")
    calls, rows = [], _ensemble_rows(**{"gpunn": 30e6, "gpunn-graph": 40e6, "gpunn-graph-bf16": 60e6})

    def run_ensembles(configs, backends, peers=(), graph=None, variants=(), **kwargs):
        calls.append((configs[0].name, tuple(peers), tuple(variants), graph))
        if len(calls) > 1:
            raise RuntimeError("made to fail by the test")
        return rows

    monkeypatch.setattr(bench, "run_ensembles", run_ensembles)
    argv = ["--bf16-row", "--device", "cuda", "--out", str(tmp_path), "--max-seconds", "30"]
    assert hook.main(argv) == 0
    assert calls == [("small-x256", (), (("float32", False), ("bf16", None)), None)]
    assert json.loads((tmp_path / "ensemble-bf16.json").read_text()) == {"results": rows}
    assert hook.main(argv) == 1
    assert json.loads((tmp_path / "ensemble-bf16.json").read_text()) == {
        "error": "RuntimeError: made to fail by the test"}
    assert not (tmp_path / "ensemble.json").exists()


def test_a_bf16_row_process_that_outlives_the_hooks_time_is_killed_and_said_so(tmp_path, monkeypatch):
    """A bf16 process stuck in a CUDA call (or in a hang) is killed at --max-seconds less 2 s, and that is its error;
    with under BF16_MIN_SECONDS left it is not started. (bf16_row alone: the hook's main needs 60 s for the row.)"""
    import argparse
    import time

    hook = _load("bench/gpu_checks/ensemble.py", "ensemble_hook")
    monkeypatch.setattr(hook, "BF16_MIN_SECONDS", 1)
    monkeypatch.setattr(hook, "child_command", _children(None, _python("import time; time.sleep(600)")))
    args = argparse.Namespace(device="cuda", out=str(tmp_path), max_seconds=4.0)
    assert hook.bf16_row(args, time.monotonic(), []) == {
        "bf16_error": "its process was still running after 2 s, and was killed without writing its rows"}
    monkeypatch.setattr(hook, "BF16_MIN_SECONDS", 15)
    args.max_seconds = 16.0
    assert hook.bf16_row(args, time.monotonic(), []) == {
        "bf16_skipped": "14 s of --max-seconds 16 left, under the 15 s it needs"}


@pytest.mark.gpu
def test_an_ensemble_benchmark_that_fails_is_saved_and_raised_after_the_later_processes(gpu, tmp_path, monkeypatch,
                                                                                        capsys):
    """The eager benchmark raised (a torch peer, the sequential fits...): ensemble.json keeps its error as
    benchmark_error and the hook fails with it, after the graph rows and the bf16 row, which run in fresh processes
    whatever this one's state (the graph row's speed-up then over its own torch vmap row alone, the bf16 row's over
    its own graph row alone); the report gives the graph row's vmap target with the eager row's failure and no
    verdict. An exactness check that raised before is kept as its error, and the benchmark still ran."""
    hook, calls = _ensemble_hook(monkeypatch, RuntimeError("made to fail by the test"), checks_pass=False)
    rows = _ensemble_rows(**{"gpunn": 30e6, "gpunn-graph": 40e6, "gpunn-graph-bf16": 60e6})
    shutil.copytree(RUNS / "cpu-dry-run", tmp_path / "run")
    out_dir = tmp_path / "run" / "ensemble"
    monkeypatch.setattr(hook, "child_command", _children(
        _writes(out_dir, "ensemble-graph.json", {"graph": GRAPH_CHECK, "results": GRAPH_ROWS}),
        _writes(out_dir, "ensemble-bf16.json", {"results": rows})))
    with pytest.raises(RuntimeError, match="made to fail by the test"):
        hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "90"])
    assert calls == [((), False)]
    saved = json.loads((out_dir / "ensemble.json").read_text())
    assert saved["benchmark_error"] == "RuntimeError: made to fail by the test" and "targets" not in saved
    assert saved["graph_targets"] == {"torch-vmap": {"speedup": 4.0, "target": 3.0, "met": True, "processes": 1,
                                                     "statistic": "paired"}}
    assert saved["bf16"] == {"gpunn-graph": 1.5}
    assert saved["exact"] is False and saved["exactness_error"] == "RuntimeError: the check made to fail by the test"
    capsys.readouterr()
    out = _report(tmp_path / "run", capsys=capsys)
    t = _targets(out)
    assert t["K=256 small nets ≥ 50× K sequential gpunn fits"][0] == (
        "not measured: no sequential row in ensemble.json: the benchmark failed: RuntimeError: made to fail by the test")
    assert t["K=256 small nets ≥ 3× the torch vmap ensemble"] == (
        "eager not measured (the benchmark failed: RuntimeError: made to fail by the test), graph 4.00×", "met")
    assert "1.50× gpunn-graph" in out
    assert t["each member equals its MLP on the GPU (float64, 3 members, ≤ 1e-10 relative)"] == (
        "failed: RuntimeError: the check made to fail by the test (cuda)", "**not met**")


@pytest.mark.parametrize("hook", ["precision", "ensemble", "streams", "nccl", "clip"])
def test_each_hooks_help_says_what_its_contract_options_mean_and_their_defaults(hook):
    """`python bench/gpu_checks/NAME.py --help`, as a person on the GPU machine would read it, names gpu_check.sh's
    three options with a word on each and its default (the hook's own time cap differs per hook)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_checks" / f"{hook}.py"), "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    options = re.split(r"\n  (?=-)", out.split("options:", 1)[1])
    for name, default in (("--device", "cuda"), ("--out", "."), ("--max-seconds", None)):
        (text,) = [o for o in options if o.startswith(name)]
        said = " ".join(text.split())
        assert len(said) > len(name) + 20 and "(default: " in said, said
        if default is not None:
            assert f"(default: {default})" in said, said


def test_every_stage_line_gpu_check_writes_ends_with_the_runs_seconds_so_far(tmp_path):
    """gpu_report charges each stage the seconds between its summary line and the line before (Run.stage_seconds):
    FAIL and SKIP lines without "(Ns)" left the next stage charged with the failed one's time too (mut15c). Each
    line outcome() and skip() write, and every other FAIL line of a stage that goes on, ends with it."""
    import subprocess

    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    body = script.split("\nset -uo pipefail", 1)[1]
    functions = [re.search(rf"^{name}\(\) \{{.*?\}}$", body, re.M | re.S).group(0) for name in ("record", "ended", "outcome", "skip")]
    calls = 'outcome precision 0 "p.txt"; SECONDS=$((SECONDS + 5)); outcome ensemble 1 "e.txt"; outcome streams 124 ' \
            '"s.txt"; skip nccl'
    summary = tmp_path / "summary.txt"
    subprocess.run(["bash", "-c", "\n".join([f"SUMMARY={summary}; t0=$SECONDS; failed=0", *functions, calls])],
                   check=True, capture_output=True, timeout=60)
    lines = summary.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "FAIL", "FAIL", "SKIP"], lines
    assert all(re.search(r"\(\d+s\)$", line) for line in lines), lines
    seconds = _load("bench/gpu_report.py", "gpu_report").Run.stage_seconds(type("R", (), {"summary": "\n".join(lines)}))
    assert set(seconds) == {"precision", "ensemble", "streams", "nccl"} and seconds["ensemble"] >= 5, seconds
    others = [line for line in body.splitlines() if re.search(r'\b(record|ended) "(ok|FAIL|SKIP)', line)
              and "nothing else was run" not in line and "report:" not in line]  # (the device stage's stops)
    assert len(others) >= 6 and all(re.search(r'\bended "', line) for line in others), others


def test_a_hook_json_cut_while_written_leaves_the_last_whole_one(tmp_path, monkeypatch):
    """Each hook rewrites its JSON as it goes (after each part, the streams hook every few seconds of its long epoch),
    and the stage's SIGINT, the call's SIGTERM or its SIGKILL can land while it writes: written in place, the file was
    then cut short and the report read nothing of it (gpu_report: "not a JSON object"), the parts saved before
    included. hook_args.write_json writes beside it and renames: the last whole file stays."""
    hook_args = _load("bench/gpu_checks/hook_args.py", "hook_args_for_test")
    path = tmp_path / "streams.json"
    hook_args.write_json(path, {"checks": {"synthetic_rows_are_makes": True}})

    class Interrupted:  # the file hook_args opens: half the text written, then the stage's SIGINT
        def __init__(self, *args):
            self.fh = open(*args)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, text):
            self.fh.write(text[:len(text) // 2])
            self.fh.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(hook_args, "open", Interrupted, raising=False)
    with pytest.raises(KeyboardInterrupt):
        hook_args.write_json(path, {"checks": {"synthetic_rows_are_makes": True}, "throughput": {"synthetic": 1}})
    assert json.loads(path.read_text()) == {"checks": {"synthetic_rows_are_makes": True}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streams.json"]  # nothing left beside it
    monkeypatch.delattr(hook_args, "open")
    hook_args.write_json(path, {"throughput": {}})
    assert json.loads(path.read_text()) == {"throughput": {}}


class _Ticks:
    """A clock that moves one second at each read: an epoch's progress without timing anything."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_the_long_streams_epoch_saves_its_progress_and_stops_itself_at_its_deadline():
    """gpu_check.sh's second GPU call had ~20 s to spare over an H200's 10^9-row epoch (143 s): a stream ~12% slower
    was killed in it, and the call left only 'started, did not finish', the stream's rate lost. The epoch now saves
    its progress (the device's rows so far, their rate after the first report) as a partial entry, and stops itself
    at the hook's deadline with that entry; a whole epoch keeps the fit's own rate."""
    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    args = ([32, 8, 1], "relu", "identity", True, "float32", "cpu", 0)
    synthetic = {"memory_samples_per_s": 1000.0, "steps": {"memory": "eager: no GPU"}}
    kept, synced = [], []
    clock = _Ticks()
    # batches of 64 over 2,560 rows: 40 batches, a clock read at each (a report reads it twice: before and after the
    # device's sync); the epoch begins at 1 and reports at batches 5, 10 and 15 (ticks 7, 13 and 19), then at the
    # deadline, 20: batch 16, tick 21
    entry = hook.long_epoch(args, 2560, 64, synthetic, 20.0, kept.append, "stopped {seconds} s in",
                            lambda: synced.append(1), clock, every=5)
    assert entry["partial"] == "stopped 20 s in" and entry["rows_asked"] == 2560, entry
    assert [e["rows"] for e in kept] == [320, 640, 960, 1024] and entry["rows"] == 1024 and len(synced) == 4
    assert all(e["partial"].startswith("the last progress saved") for e in kept)
    assert kept[0]["rate_leaves_out_the_start"] is False and kept[0]["stream_samples_per_s"] == 320 / 6
    # after the first report: (rows since it) / (ticks since it); the ratio against the memory rate given
    assert entry["rate_leaves_out_the_start"] and entry["stream_samples_per_s"] == (1024 - 320) / (21 - 7)
    assert entry["ratio"] == entry["stream_samples_per_s"] / 1000.0 and entry["steps"]["memory"] == "eager: no GPU"
    kept.clear()
    # 2,530 rows: the 40th batch holds 34, and the report after it counts them, not a whole batch
    whole = hook.long_epoch(args, 2530, 64, synthetic, float("inf"), kept.append, "unused", clock=_Ticks(), every=5)
    assert whole["rows"] == 2530 and "partial" not in whole and whole["stream_samples_per_s"] > 0
    assert [e["rows"] for e in kept] == [320 * k for k in range(1, 8)] + [2530] and whole["ratio"] == whole[
        "stream_samples_per_s"] / 1000.0
    line = hook.throughput_line("synthetic_long", dict(entry, ratio=1.5))
    assert "target 0.9x NOT judged: a partial epoch, 1,024 of 2,560 rows (stopped 20 s in)" in line, line


def test_the_long_streams_part_is_saved_started_then_done_and_a_failure_keeps_its_last_progress(tmp_path, monkeypatch,
                                                                                               capsys):
    """The synthetic_long part (streams.py long_part): 'started' saved before the epoch and None after it, the
    epoch's progress saved as it goes; an epoch that raises part-way leaves 'started' and its last progress, which
    the report gives with the error and no verdict. Skipped, saying what 10^9 rows need, when too few rows fit."""
    import time

    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    monkeypatch.setattr(hook, "LONG_ROWS", 4096)
    monkeypatch.setattr(hook, "PROGRESS_SECONDS", 0.0)  # a report at every batch
    args = ([32, 8, 1], "relu", "identity", True, "float32", "cpu", 0)
    h200 = json.loads((RUNS / "h200-2026-11-28" / "streams" / "streams.json").read_text())
    synthetic = dict(h200["throughput"]["synthetic"], steps={"memory": "eager: no GPU: the step runs eagerly"})
    saved = []

    def save(report):
        saved.append(json.loads(json.dumps(report)))

    report = {"throughput": {}}
    hook.long_part(report, save, 600.0, time.monotonic(), args, 256, 1, synthetic, lambda: None)
    assert saved[0]["started"]["synthetic_long"]["rows"] == 4096 and "synthetic_long" not in saved[0]["throughput"]
    assert [s["throughput"]["synthetic_long"]["rows"] for s in saved[1:]] == [256 * k for k in range(1, 17)]
    assert report["started"] == {"synthetic_long": None} and "partial" not in report["throughput"]["synthetic_long"]

    calls = []

    def sync():  # the device fails at the third report
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("cudaErrorLaunchFailure: unspecified launch failure")

    report, saved[:] = {"throughput": {}}, []
    with pytest.raises(RuntimeError):
        hook.long_part(report, save, 600.0, time.monotonic(), args, 256, 1, synthetic, sync)
    last = saved[-1]
    assert last["started"]["synthetic_long"]["rows"] == 4096 and last["throughput"]["synthetic_long"]["rows"] == 512
    (tmp_path / "streams.json").write_text(json.dumps(dict(h200, throughput={"synthetic": synthetic, **last[
        "throughput"]}, started=last["started"], errors={"synthetic_long": "RuntimeError: cudaErrorLaunchFailure"})))
    measured, verdict = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                                         capsys=capsys))["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
    assert "over the first 512 rows of a 4,096-row epoch (the last progress saved" in measured, measured
    assert "the part failed: RuntimeError: cudaErrorLaunchFailure" in measured and "did not finish" in measured
    assert verdict == ""

    monkeypatch.setattr(hook, "LONG_ROWS", 10 ** 9)
    report = {"throughput": {}}  # 10 s, less the 5 s kept to end in, at 6.88M rows/s: under a 10^9-row least
    hook.long_part(report, save, 10.0, time.monotonic(), args, 256, 10 ** 9, synthetic, lambda: None)
    assert set(report) == {"throughput", "skipped"} and report["throughput"] == {}, report
    assert re.fullmatch(r"10\^9 rows need about 150 s; this hook had (5\.0|4\.9) s left for them",
                        report["skipped"]["synthetic_long"]), report  # (4.9: 50 ms gone on a loaded machine)


def test_the_long_streams_epoch_lies_between_two_in_memory_epochs_and_its_ratio_is_the_median_of_the_two(
        tmp_path, monkeypatch, capsys):
    """The 10^9-row epoch's ratio was its rate over the in-memory rate of one epoch timed earlier (the synthetic part's,
    tens of seconds before it in the second GPU call): one pair of single epochs, apart in time. long_part now trains
    the synthetic part's in-memory side one epoch just before it and one just after it (A, B, A), keeps both rates,
    and takes the median of the two ratios, their spread beside it ("bracketed"); the epoch stops early enough to
    leave the one after twice its last seconds. A partial epoch keeps its ratio over the one before ("before"). The
    report gives the pairing and judges the bracketed ratio."""
    import time

    import gpunn.data

    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    monkeypatch.setattr(hook, "LONG_ROWS", 4096)
    # the stream's windows of one of make's chunks (65,536 rows), not 16: the 10^9-row epoch below stops at its
    # deadline after its first window, which it generated whole first (about 6 s for 16 chunks on 2 loaded cores)
    monkeypatch.setattr(gpunn.data, "synthetic", functools.partial(gpunn.data.synthetic, window=1))
    args = ([32, 8, 1], "relu", "identity", True, "float32", "cpu", 0)
    synthetic = {"stream_samples_per_s": 1e6, "memory_samples_per_s": 1e6,
                 "steps": {"memory": "eager: no GPU: the step runs eagerly"}}
    calls, saved = [], []

    def memory_epoch():
        calls.append(1)
        return (3e5, 7e5)[len(calls) - 1], "eager: no GPU: the step runs eagerly"

    def save(report):
        saved.append((len(calls), json.loads(json.dumps(report))))

    report = {"throughput": {}}
    hook.long_part(report, save, 600.0, time.monotonic(), args, 256, 1, synthetic, lambda: None, memory_epoch, 2.0)
    started = saved[0][1]["started"]["synthetic_long"]
    assert saved[0][0] == 1 and started["stops_at_s"] == 600 - 5 - 2 * 2.0, saved[0]  # after the epoch before it
    assert all(n == 1 for n, _ in saved[:-1]) and saved[-1][0] == 2 and len(calls) == 2  # and the one after it
    long = report["throughput"]["synthetic_long"]
    rate = long["stream_samples_per_s"]
    assert "partial" not in long and long["rows"] == 4096 and long["memory_before_after"] == [3e5, 7e5]
    assert long["statistic"] == "bracketed" and long["memory_samples_per_s"] == 5e5
    assert long["ratio"] == pytest.approx((rate / 3e5 + rate / 7e5) / 2) and long["ratio_spread"] == [rate / 7e5,
                                                                                                        rate / 3e5]
    assert saved[-1][1]["throughput"]["synthetic_long"] == long and report["started"] == {"synthetic_long": None}
    eager = "eager: no GPU: the step runs eagerly"  # how each of the A, B, A epochs ran (the one before was not kept)
    assert long["steps"] == {"memory": eager, "stream": eager, "memory_before": eager, "memory_after": eager}
    line = hook.throughput_line("synthetic_long", long)
    assert (f"in memory (500,000; against the in-memory epochs just before and after it, {rate / 7e5:.2f}-"
            f"{rate / 3e5:.2f}x) on 4,096 rows") in line, line

    # judged on the bracketed ratio, the pairing said: 0.95 met, where the old single pair's 0.86 was not
    h200 = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    entry = dict(h200["throughput"]["synthetic_long"], memory_before_after=[7.9e6, 7.5e6], ratio=0.95,
                 ratio_spread=[0.93, 0.97], statistic="bracketed")
    (tmp_path / "streams.json").write_text(json.dumps(dict(h200, throughput={"synthetic_long": entry})))
    measured, verdict = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                                         capsys=capsys))["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
    assert measured.startswith("6,977,072 samples/s = 0.95× in memory (8,106,972; the median of its ratios to the "
                               "in-memory epochs just before and after it, 0.93-0.97×) on 1,000,000,000 rows"), measured
    assert verdict == "met"

    # stopped at its deadline (5 s before --max-seconds, and 2 x 0.25 s): a partial epoch, no epoch after it
    monkeypatch.setattr(hook, "LONG_ROWS", 10 ** 9)
    calls.clear()
    report = {"throughput": {}}
    hook.long_part(report, save, 5.8, time.monotonic(), args, 256, 1, dict(synthetic, stream_samples_per_s=1e12),
                   lambda: None, memory_epoch, 0.25)
    long = report["throughput"]["synthetic_long"]
    assert "partial" in long and len(calls) == 1 and long["statistic"] == "before"
    assert long["memory_before_after"] == [3e5] and long["ratio"] == long["stream_samples_per_s"] / 3e5
    assert long["steps"] == {"memory": eager, "stream": eager, "memory_before": eager}
    assert "--max-seconds 5.8 less 5 s and the in-memory epoch after it" in long["partial"], long["partial"]


def test_a_long_stream_over_an_in_memory_epoch_before_it_that_ran_eagerly_is_not_judged(tmp_path, capsys):
    """The 10^9-row epoch's ratio is over the in-memory epochs just before and after it: where the one before fell
    back to the eager step (the default graph falls back silently) while the stream was captured, the ratio measures
    the step, not the data path; streams.json keeps how that epoch ran (steps' memory_before) and the report says it,
    with no verdict, as it does for the epoch after."""
    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    h200 = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    base = dict(h200["throughput"]["synthetic_long"], memory_before_after=[7.9e6, 7.5e6], ratio=0.95,
                ratio_spread=[0.93, 0.97], statistic="bracketed")
    for before, verdict in (("graph", "met"), ("eager: the capture failed (made up)", "")):
        entry = hook.with_steps(base, memory="graph", stream="graph", memory_before=before, memory_after="graph")
        assert entry["same_step"] == (before == "graph")
        (tmp_path / "streams.json").write_text(json.dumps(dict(h200, throughput={"synthetic_long": entry})))
        got = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                               capsys=capsys))["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
        assert got[1] == verdict, got
        assert ("memory_before's step eager: the capture failed (made up)" in got[0]) == (verdict == ""), got
        line = hook.throughput_line("synthetic_long", entry)  # the hook's own printed line, likewise
        assert ("NOT judged: " in line and "memory_before's step eager" in line) == (verdict == ""), line


def test_a_paired_npy_ratio_is_judged_with_its_rounds_said(tmp_path, capsys):
    """Issue 12's .npy row reads the hook's paired ratio (the median over rounds of npy over memory in each round) and
    gives its rounds and spread; where the medians' ratio would say otherwise (0.50 here), the paired one judges."""
    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    rates = {"npy": [5.0, 10.0, 4.0], "memory": [10.0, 10.0, 4.0]}
    large = hook.with_steps({"config": "large", "rows": 40_000, **hook.paired_entry(rates, "npy")}, npy="graph",
                            memory="graph")
    (tmp_path / "streams.json").write_text(json.dumps({"device": "cuda:0 (NVIDIA H200, CuPy 14.2.0)",
                                                       "throughput": {"npy_large": large}}))
    t = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}", capsys=capsys))
    assert next(v for k, v in t.items() if k.startswith(".npy on the large")) == (
        "1.00× in memory (paired by round over 3 rounds, 0.50-1.00×; large, 40,000 rows)", "met")


def test_a_long_stream_stopped_at_the_hooks_time_limit_gets_its_rate_and_no_verdict(tmp_path, capsys):
    """A 10^9-row epoch that the hook stopped at its deadline (streams.py long_epoch) gives the rate of the rows it
    trained, however fast, without a verdict: the target is a 10^9-row epoch; not a cut ('did not finish'), since
    the hook ended it itself ('started' is None)."""
    long = json.loads((RUNS / "h200-2026-11-28" / "streams-long.json").read_text())
    entry = dict(long["throughput"]["synthetic_long"], rows=912_000_000, rows_asked=10 ** 9, seconds=205.0,
                 stream_samples_per_s=7_400_000.0, ratio=0.95, rate_leaves_out_the_start=True, partial=(
                     "stopped 205 s into the epoch by the hook's time limit (--max-seconds 210 less 5 s)"))
    (tmp_path / "streams.json").write_text(json.dumps(dict(long, throughput={"synthetic_long": entry},
                                                            started={"synthetic_long": None})))
    measured, verdict = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}",
                                         capsys=capsys))["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
    assert measured.startswith("7,400,000 samples/s = 0.95× in memory (8,106,972; one epoch of each, not paired) over "
                               "the first 912,000,000 rows of a 1,000,000,000-row epoch (stopped 205 s into the epoch by the hook's time limit "
                               "(--max-seconds 210 less 5 s); the rate after its first progress report, the start-up "
                               "left out), peak RSS"), measured
    assert measured.endswith(": a partial epoch, not the 10^9-row target") and verdict == "", measured


@pytest.mark.gpu
def test_the_long_streams_progress_waits_for_the_device_between_captured_steps(gpu, monkeypatch):
    """On a GPU the epoch's progress reports synchronize the device between the captured steps' replays (as
    gpu_check.sh's second call runs it, its main()'s sync): the rows they count are the device's, the CUDA graph
    stays captured, and the whole epoch's steps are 'graph' on both sides."""
    import time

    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    monkeypatch.setattr(hook, "LONG_ROWS", 8192)
    monkeypatch.setattr(hook, "PROGRESS_SECONDS", 0.0)
    saved = []
    report = {"throughput": {}}
    hook.long_part(report, lambda r: saved.append(json.loads(json.dumps(r))), 600.0, time.monotonic(),
                   ([32, 16, 1], "relu", "identity", True, "float32", gpu, 0), 1024, 1,
                   {"stream_samples_per_s": 1e6, "memory_samples_per_s": 1e6, "steps": {"memory": "graph"}},
                   lambda: gpu.xp.cuda.Device().synchronize())
    long = report["throughput"]["synthetic_long"]
    assert long["rows"] == 8192 and "partial" not in long and long["steps"] == {"memory": "graph", "stream": "graph"}
    assert [s["throughput"]["synthetic_long"]["rows"] for s in saved[1:]] == [1024 * k for k in range(1, 9)]


@pytest.mark.gpu
def test_the_synthetic_generation_timing_that_raises_keeps_the_rates_the_long_stream_needs(gpu, tmp_path,
                                                                                          monkeypatch, capsys):
    """The synthetic part's timing of a window's generation (GPU only, never yet run on one) was taken before its
    entry was kept: raising, it took the part's stream and in-memory rates with it, and the 10^9-row stream, which
    runs only against those rates, was lost too. It is now a part of its own, after the rates are kept."""
    hook = _load("bench/gpu_checks/streams.py", "streams_hook")

    def fails(*args):
        raise TypeError("made to fail by the test")

    monkeypatch.setattr(hook, "generation_host_seconds", fails)
    assert hook.main(["--device", "cuda", "--out", str(tmp_path), "--quick", "--parts", "synthetic",
                      "--max-seconds", "600"]) == 1
    saved = json.loads((tmp_path / "streams.json").read_text())
    assert saved["errors"] == {"synthetic generation": "TypeError: made to fail by the test"}, saved["errors"]
    synthetic = saved["throughput"]["synthetic"]
    assert synthetic["rows"] == 8192 and synthetic["stream_samples_per_s"] > 0 and synthetic["memory_samples_per_s"] > 0
    assert "generation_host_share" not in synthetic and "FAIL synthetic generation" in capsys.readouterr().out


def _first_call(tmp_path, stage_seconds):
    """gpu_check.sh's header's first GPU command, as the device tool runs it (bash -c, $OUT set), with /tmp/ in
    ``tmp_path``, its snapshots every 0.2 s instead of 20, and for the script a stand-in that writes a summary line
    every ``stage_seconds``, 8 of them, then report.md."""
    header = (ROOT / "bench" / "gpu_check.sh").read_text().split("\nset -uo pipefail", 1)[0]
    command = re.search(r"^#    (\(while .*timeout -k .*)$", header, re.M)[1]
    stand_in = tmp_path / "stand_in.sh"
    tmp_path.mkdir(exist_ok=True)
    stand_in.write_text(f'mkdir -p "$1"; for i in 1 2 3 4 5 6 7 8; do echo "ok   stage$i" >> "$1/summary.txt"; '
                        f'echo "stage $i"; sleep {stage_seconds}; done; '
                        'echo "# report" > "$1/report.md"\n')
    assert command.count("bash bench/gpu_check.sh") == 1 and command.count("sleep 20") == 1
    command = command.replace("/tmp/", f"{tmp_path}/").replace("sleep 20", "sleep 0.2")
    out = tmp_path / "OUT"
    out.mkdir(parents=True)
    return command.replace("bash bench/gpu_check.sh", f"bash {stand_in}"), out


def _read_or_empty(path):
    try:
        return path.read_text()
    except OSError:
        return ""


def test_the_first_gpu_calls_command_leaves_a_tar_of_what_ran_when_the_device_tool_kills_it(tmp_path):
    """The device tool lowers a call's limit to the device time left (machine starts that failed or ran long eat it),
    and kills the command there with everything in it: the first call wrote its tar into $OUT only after the
    script's own end, so such a kill brought back nothing. It now leaves a tar of what ran so far every 20 s
    (gc-partial.tgz), removed once the whole one is written."""
    import signal
    import subprocess
    import tarfile
    import time

    def snapshot_summary():
        try:
            with tarfile.open(out / "gc-partial.tgz") as tar:
                return tar.extractfile("./summary.txt").read().decode()
        except (OSError, KeyError, tarfile.TarError, AttributeError):  # none yet, or of nothing yet
            return ""

    command, out = _first_call(tmp_path, 2.0)
    run = subprocess.Popen(["bash", "-c", command], env={**os.environ, "OUT": str(out)}, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # a snapshot with the first stage in it, its console too (waited for, not slept for: a loaded machine is slow)
    while time.monotonic() < deadline and not (
            "ok   stage1" in snapshot_summary() and "stage 1" in _read_or_empty(out / "console.log")):
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # the tool's kill: the command and everything it started
    run.wait(timeout=60)
    with tarfile.open(out / "gc-partial.tgz") as tar:
        summary = tar.extractfile("./summary.txt").read().decode()
    assert summary.startswith("ok   stage1\n") and "ok   stage8" not in summary, summary
    assert not (out / "gc.tgz").exists() and "stage 1" in (out / "console.log").read_text()

    command, out = _first_call(tmp_path / "whole", 0.05)
    ran = subprocess.run(["bash", "-c", command], env={**os.environ, "OUT": str(out)}, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0 and "# report" in ran.stdout, ran.stderr
    with tarfile.open(out / "gc.tgz") as tar:
        assert tar.extractfile("./summary.txt").read().decode().count("ok   stage") == 8
    assert {"console.log", "summary.txt", "report.md", "gc.tgz"} <= {p.name for p in out.iterdir()}
    assert len(list(out.iterdir())) <= 8


def test_the_first_gpu_calls_snapshot_loop_does_not_hold_the_calls_output_open(tmp_path):
    """The snapshot loop runs in the background and its `sleep` outlives the `kill $!` that ends the loop: with the
    loop on the command's stdout, that orphaned sleep held the device tool's pipe open up to 20 s after the command
    ended, device time spent on nothing (and past timeout_s at the worst). Its output goes to /dev/null now: the
    command's reader sees the end as soon as the command ends, the last sleep still running."""
    import signal
    import subprocess

    command, out = _first_call(tmp_path, 0.05)
    command = command.replace("sleep 0.2", "sleep 60")  # a sleep that is sure to be running at the end
    run = subprocess.Popen(["bash", "-c", command], env={**os.environ, "OUT": str(out)}, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed, _ = run.communicate(timeout=30)  # the stand-in takes ~0.4 s; a held pipe, 60 s
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)  # the orphaned sleep
        except ProcessLookupError:
            pass
    assert run.returncode == 0 and "# report" in printed


@pytest.mark.gpu
def test_a_quick_streams_run_on_a_gpu_gives_the_large_npy_target_no_verdict(gpu, tmp_path, monkeypatch, capsys):
    """--quick runs the GPU code at the CPU's sizes (its npy_large part a 32-256-256-1 net on 2,048 rows): merged
    into a report by hand (`--add streams=`), its ratio was judged as issue 12's large-configuration target, as
    streams.json did not say it was quick (precision.json does). It says so now, and the report gives no verdict."""
    hook = _load("bench/gpu_checks/streams.py", "streams_hook")
    assert hook.main(["--device", "cuda", "--out", str(tmp_path), "--quick", "--parts", "npy_large",
                      "--max-seconds", "600"]) == 0
    saved = json.loads((tmp_path / "streams.json").read_text())
    assert saved["quick"] is True and "npy_large" in saved["throughput"]
    capsys.readouterr()
    rows = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={tmp_path / 'streams.json'}", capsys=capsys))
    value, judged = next(v for k, v in rows.items() if k.startswith(".npy on the large"))
    assert judged == "" and value.endswith(": not the large configuration (--quick)"), (value, judged)
