"""A bench/gpu_check.sh output folder as a bench/RESULTS.md section (Markdown, on stdout).

    python bench/gpu_report.py OUT_DIR                                  # gpu_check.sh writes OUT_DIR/report.md so
    python bench/gpu_report.py OUT_DIR --add streams=streams.json  # with a later hook run's JSON merged in
                                                                   # (on the same kind of device: GPU, CPU)
    python bench/gpu_report.py OUT_DIR --merge LATER_DIR           # one section of two runs (or more, oldest first)

It reads what the script wrote: summary.txt, device.txt, gpu_tests.xml (or gpu_tests.log), train.json, kernels.json
and each hook's OUT_DIR/NAME/NAME.json and OUT_DIR/NAME.txt. It prints the heading (card, memory, driver, CuPy and
torch versions, date, commit: the one GPUNN_CHECK_COMMIT named, where set, not what the checkout's .git says), the
summary, one table of the open issues' GPU targets (10-13), each with its measured value and "met", "not met" or
"not measured" (saying why: a stage skipped for budget, "killed" (the run ended while it ran), "not reached" (after
the one killed), one GPUNN_CHECK_STAGES did not ask for ("not asked for in this run"), a CPU dry run; "incomplete"
where a stage cut short part-way finished only some of what a target needs: the nccl hook's checks, train.json's
configurations), one table answering the questions the ensemble-precision review
left for the GPU (notes revprec-s6), and the stages' own tables. A missing file is never an error: its targets are
"not measured". A ratio of two rows is the median over rounds of their ratio in each round ("paired by round"), as
gpunn bench's own "gpunn is" column, where the JSON holds the rows' rounds (gpunn bench's since 2026-11-30); in
older JSON it is the ratio of their median samples/s, written "a / b = r×" or marked "ratio of medians". Issue 12's
ratios are the streams hook's: since 2026-11-30 the median over rounds of alternated epochs of a source and memory,
with their spread, and the 10^9-row epoch's against the in-memory epochs just before and after it; older
streams.json holds one epoch of each, said so.

Only the files of a stage this run ran are read: its summary.txt line says "ok" or "FAIL", or the run was killed in
it. A stage skipped, not asked for, not reached or not in the run wrote none, so a file of its in the folder is an
earlier run's (gpu_check.sh removes those as it starts since 2026-12-01; a folder from before may hold them).

--merge LATER_DIR (repeatable, oldest first, one GPU) makes one section of several runs, e.g. a session's full run
and its rerun of the tests and hooks after fixes: each stage's figures and line are the latest run's that ran it (a
stage a later run skipped or was not asked for keeps the earlier run's, and so does one a later run was killed in
before it wrote its figures, said so), each target, answer and stage block names its run (commit, time), and each
run's summary and verdict is shown. Runs on one GPU across a driver update are merged, the heading giving each run's
driver. --add goes into OUT_DIR's run; where a later run ran that hook again, its file is said to be replaced.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

HOOKS = ("precision", "ensemble", "streams", "nccl", "clip")
STAGES = ("device", "tests", "kernels", "train", *HOOKS)  # gpu_check.sh's, in the order it runs them
# the file each stage's figures are read from (a stage's other files, e.g. its console, hold none of them)
FIGURES = {"device": "device.txt", "tests": "gpu_tests.xml", "kernels": "kernels.json", "train": "train.json",
           **{hook: f"{hook}/{hook}.json" for hook in HOOKS}}
# a stage GPUNN_CHECK_STAGES left out: gpu_check.sh's line "--   NAME: not asked for (GPUNN_CHECK_STAGES)"
NOT_ASKED = "not asked for"
MET, NOT_MET = "met", "**not met**"
# CUDA errors after which every later CUDA call of the process fails the same way (the context is unusable), in
# CuPy's runtime (CUDARuntimeError: 'cudaError...: text') and driver (CUDADriverError: 'CUDA_ERROR_...: text') words
STICKY = ("cudaErrorIllegalAddress", "cudaErrorLaunchFailure", "cudaErrorMisalignedAddress", "cudaErrorAssert",
          "cudaErrorIllegalInstruction", "cudaErrorInvalidAddressSpace", "cudaErrorInvalidPc",
          "cudaErrorHardwareStackError", "cudaErrorLaunchTimeout", "CUDA_ERROR_ILLEGAL_ADDRESS",
          "CUDA_ERROR_LAUNCH_FAILED", "CUDA_ERROR_MISALIGNED_ADDRESS", "CUDA_ERROR_ASSERT",
          "CUDA_ERROR_ILLEGAL_INSTRUCTION", "CUDA_ERROR_INVALID_ADDRESS_SPACE", "CUDA_ERROR_INVALID_PC",
          "CUDA_ERROR_HARDWARE_STACK_ERROR", "CUDA_ERROR_LAUNCH_TIMEOUT")


def _read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def killed_words(stage):
    """Why a stage the run was killed in has no line: said alike wherever its figures are missing or cut short."""
    what = f"the {stage} hook" if stage in HOOKS else f"its {stage} stage"
    return f"the run ended while {what} ran (summary.txt has no {stage} line)"


# the hooks' check figures that are NaN where the check met non-finite numbers (a NaN in the weights or the product
# on the GPU): written null since 2026-12-02, read back as nan, as the NaN of older files was (a null one stopped
# the report formatting it, or was said "not measured", where nan fails the check)
HOOK_FIGURES = frozenset({"worst", "rel_err", "max_rel_err", "exactness_max_rel_err"})


def _json(path):
    from gpunn.bench.report import read_json  # a row's null (not measured) as nan, as older files' NaN reads

    text = _read(path)
    if text is None:
        return None
    try:
        return read_json(text, HOOK_FIGURES)
    except ValueError:
        return None


def sticky_error(text):
    """The name of the sticky CUDA error ``text`` holds, or None."""
    return next((name for name in STICKY if name in (text or "")), None)


def sticky_words(e, key="benchmark_error"):
    """Where the ensemble hook's eager benchmark (``benchmark_error``) or its graph process (``graph_error``) failed
    with a sticky CUDA error: words saying that nothing after it could run in that process, and where it came first
    (each process runs its check before its rows); else ''."""
    name = sticky_error(e.get(key))
    if name is None:
        return ""
    if key == "graph_error":
        first = ("the ensemble's CUDA graph check failed with it before"
                 if sticky_error((e.get("graph") or {}).get("error"))
                 else "a row of that process (the ensemble's graph row, its eager row, torch vmap) caused it")
    else:
        first = ("the exactness check (an Ensemble against its members' MLPs) failed with it before"
                 if sticky_error(e.get("exactness_error"))
                 else "a row of the benchmark (the eager ensemble, a peer) caused it")
    return f" ({name} is a sticky CUDA error: every later CUDA call of the process fails with it; {first})"


def _x(value, digits=2):
    return f"{value:.{digits}f}×"


def _paired(a, b):
    """Row ``a``'s samples/s over ``b``'s paired by round (gpunn.bench's paired_speedup), nan without rounds."""
    from gpunn.bench.runners import paired_speedup

    return paired_speedup(a, b)


def _how(target):
    """How an ensemble.json speed-up (graph_targets', bf16's) was taken, in words: "" where paired by round, as
    the eager targets always are. ensemble.json from before 2026-11-30 has no "statistic": ratios of medians."""
    how = target.get("statistic", "medians")
    if how == "chained":
        return " (paired by round in each of two processes, through the eager row both ran)"
    if how == "medians":
        return " (medians of two processes)" if target.get("processes") == 2 else " (ratio of medians)"
    return ""


def device_kind(device):
    """"GPU" for a hook JSON's device on CUDA ("cuda", "cuda:0 (NVIDIA H200, CuPy 14.2.0)"), else "CPU"."""
    return "GPU" if str(device).startswith("cuda") else "CPU"


def add_conflict(run, name, extra):
    """Why the --add file ``extra`` (hook ``name``'s JSON object) may not be merged into ``run`` (its folder's hooks'
    JSON, this run's: Run.wrote), or None. The merge keeps the folder's other parts and takes the file's device, by
    which the report judges them all: a GPU file over a CPU run's folder had the CPU's parts (the stand-in's stream
    ratios, its .npy part) judged as a GPU's, and a CPU file over a GPU run's had the GPU's parts given no verdict. So
    the file must have been measured on the kind of device every hook of the folder names."""
    if "device" not in extra:
        return "it names no device (every hook's JSON does), so it cannot be checked against the folder's"
    kind = device_kind(extra["device"])
    for hook in sorted(HOOKS, key=lambda h: h != name):  # its own hook's file first
        mine = run.hooks.get(hook)
        if isinstance(mine, dict) and "device" in mine and device_kind(mine["device"]) != kind:
            return (f"it was measured on {extra['device']} ({kind}), the folder's {hook}/{hook}.json on "
                    f"{mine['device']} ({device_kind(mine['device'])}): merged, the folder's parts would be judged as "
                    f"{kind} measurements; report the two apart")
    return None


def _merge(base, extra):
    """A later run's hook JSON over the first: its parts replace the first's, the others stay."""
    if base is None:
        return extra
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


class Run:
    """What one gpu_check.sh output folder holds (each part None when its file is missing or not this run's)."""

    def __init__(self, out, added=()):
        self.out = out
        summary = _read(os.path.join(out, "summary.txt"))
        self.has_summary = summary is not None  # a folder of a stage's files alone (made by hand) has none
        self.summary = (summary or "").rstrip("\n")
        self.device = (_read(os.path.join(out, "device.txt")) or "").splitlines()
        # only the files of a stage this run ran (Run.wrote): the folder may hold an earlier run's (the script's
        # default folder, bench/out, is reused; gpu_check.sh removes them as it starts since 2026-12-01)
        self.train = _json(os.path.join(out, "train.json")) if self.wrote("train") else None
        self.kernels = _json(os.path.join(out, "kernels.json")) if self.wrote("kernels") else None
        self.hooks = {name: _json(os.path.join(out, name, f"{name}.json")) if self.wrote(name) else None
                      for name in HOOKS}
        self.add(added)
        self.sticky_tests = {}  # test id -> the sticky CUDA error it failed with (gpu_tests.xml)
        self.tests = self._tests()

    def add(self, added):
        """Merge the --add files (hook, path) over the hooks' JSON."""
        self.added, self.unread = [], []
        self.added_json = {}  # {hook: its last --add file's JSON, before the merge}
        for name, path in added:
            extra = _json(path)
            if not isinstance(extra, dict):  # cut short while it was written, or not the hook's file
                self.unread.append((name, path))
                continue
            self.added.append((name, path))
            self.added_json[name] = extra
            self.hooks[name] = _merge(self.hooks.get(name), extra)

    def source(self, stage):
        """The run whose files and line speak for ``stage``: this one (a merge of runs picks one per stage)."""
        return self

    def date(self):
        """device.txt's date ("2026-11-30 22:30 UTC"), or None."""
        return self.device[1] if len(self.device) > 1 and re.match(r"^\d{4}-\d\d-\d\d", self.device[1]) else None

    def label(self):
        """The run in a few words, for a merged section's figures: its commit and time."""
        return f"{commit_of(self)}, {self.date() or 'no date in device.txt'}"

    def line(self, stage):
        """summary.txt's line for a stage, or None."""
        for line in self.summary.splitlines():
            if re.match(rf"^(ok|FAIL|SKIP|--)\s+{re.escape(stage)}\b", line):
                return line
        return None

    def not_asked(self, stage):
        """Whether GPUNN_CHECK_STAGES left ``stage`` out of this run (its summary.txt line says so)."""
        line = self.line(stage)
        return line is not None and line.startswith("--") and NOT_ASKED in line

    def stopped(self):
        """The device stage's line where it stopped the run (CuPy not usable, a setting gpunn info refuses: exit 3,
        "nothing else was run"), else None."""
        line = self.line("device")
        return line if line and line.startswith("FAIL") and "nothing else was run" in line else None

    def killed_in(self):
        """The stage the run was killed in: where summary.txt has no closing line, the stage after the last one
        with a line (each stage writes its line as it ends, one left out or not landed at once). None where the run
        finished, its device stage stopped it, or it was killed after its last stage (writing the report)."""
        if self.finished() or self.stopped() or not self.has_summary:
            return None
        done = [i for i, stage in enumerate(STAGES) if self.line(stage) is not None]
        after = max(done) + 1 if done else 0
        return STAGES[after] if after < len(STAGES) else None

    def wrote(self, stage):
        """Whether ``stage``'s files in the folder are this run's: its line says it ran ("ok", "FAIL": what it
        wrote, whole or cut short at its cap), or the run was killed in it (what it wrote as it went). A stage
        skipped for budget, not asked for, not landed, not reached or not in this run wrote nothing: a file of
        its there is an earlier run's, never read as this one's. A folder without summary.txt (a stage's files
        gathered by hand) is read as it is."""
        line = self.line(stage)
        if not self.has_summary:  # nothing says which stages ran: every file is read, as it is
            return True
        return line.startswith(("ok", "FAIL")) if line is not None else stage == self.killed_in()

    def figures(self, stage):
        """Whether this run left figures of ``stage`` that the report reads (its FIGURES file, whole enough to read;
        device.txt is always read), where its files are this run's (Run.wrote)."""
        if stage == "tests":
            return self.tests is not None
        if stage in ("kernels", "train"):
            return getattr(self, stage) is not None
        return stage not in HOOKS or self.hooks.get(stage) is not None

    def why_missing(self, stage, what):
        line = self.line(stage)
        if self.not_asked(stage):
            return f"not measured: {NOT_ASKED} in this run (GPUNN_CHECK_STAGES)"
        if line is None and not self.has_summary:
            return f"not measured: {what} (the folder has no summary.txt)"
        if line is None:
            killed = self.killed_in()
            if self.stopped():
                return f"not measured: the device stage stopped the run before it (`{self.stopped().strip()}`)"
            if killed == stage:
                return f"not measured: killed: {killed_words(stage)}; {what}"
            if killed is not None and STAGES.index(stage) > STAGES.index(killed):
                return f"not measured: not reached: the run was killed in its {killed} stage, before this one"
            if self.finished() or killed is not None:
                return f"not measured: this run had no {stage} stage"
            return f"not measured: no {stage} line in summary.txt (the run stopped before it)"
        if not line.startswith("ok"):
            return f"not measured: `{line.strip()}`"
        return f"not measured: {what}"

    def closing(self):
        """summary.txt's closing line ("gpu_check on ..."), or None when the script was killed before it. It
        need not be the last line: a report stage that fails writes its FAIL line after it."""
        return next((line for line in reversed(self.summary.splitlines()) if line.startswith("gpu_check on ")), None)

    def finished(self):
        return self.closing() is not None

    def stage_seconds(self):
        """{stage: seconds it took}, from the running times summary.txt's lines end with."""
        out, last = {}, 0
        for line in self.summary.splitlines():
            m = re.match(r"^(ok|FAIL|SKIP)\s+(\w+)\b.*\((\d+)s\)\s*$", line)
            if m:
                out[m.group(2)] = int(m.group(3)) - last
                last = int(m.group(3))
        return out

    def _tests(self):
        """{test id: passed/failed/skipped} from gpu_tests.xml (pytest --junitxml), or None."""
        path = os.path.join(self.out, "gpu_tests.xml")
        if not self.wrote("tests") or not os.path.exists(path):
            return None
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            return None
        out = {}
        for case in root.iter("testcase"):
            if not case.get("name"):  # the test a time limit interrupted (SIGINT): pytest writes it nameless
                continue
            kids = {child.tag for child in case}
            outcome = "failed" if kids & {"failure", "error"} else "skipped" if "skipped" in kids else "passed"
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            out[test] = outcome
            for child in case:
                name = sticky_error(f"{child.get('message', '')} {child.text or ''}") if outcome == "failed" else None
                if name:
                    self.sticky_tests[test] = name
        return out

    # ---- train.json rows ------------------------------------------------------------------------------
    def row(self, config, impl="gpunn", dtype="float32", mode="default"):
        """A train.json row: gpunn's default (the CUDA graph on a GPU) or eager step, or a peer's; a GPU's
        row before a CPU's when the bench ran on both."""
        found = []
        for r in (self.train or {}).get("results", []):
            if r["config"] != config or r["impl"] != impl:
                continue
            if impl == "gpunn" and (r["dtype"] != dtype or _eager_step(r) != (mode == "eager")):
                continue
            found.append(r)
        return next((r for r in found if _on_gpu(r)), found[0] if found else None)


class Merged(Run):
    """Several gpu_check.sh runs on one GPU as one section, oldest first (a full run, then a rerun of some stages
    after fixes): per stage, the latest run that ran it (Run.wrote: its line "ok" or "FAIL", or killed in it) speaks
    for it, its files and its line, but for a run killed in the stage before it wrote its figures (Run.figures),
    which has none to give: the latest earlier run that ran it speaks (``cut``: such stages, said in the section);
    a stage no run ran, the latest that says why (skipped, not landed), else the latest. Each figure is labelled
    with its run's commit and time (Run.label)."""

    def __init__(self, runs):
        self.runs = runs
        self.out = runs[-1].out
        self.owner, self.cut = {}, []
        for stage in STAGES:
            ran = [r for r in runs if r.wrote(stage)]
            kept = [r for r in ran if r.killed_in() != stage or r.figures(stage)]
            said = [r for r in runs if r.line(stage) is not None and not r.not_asked(stage)]
            self.owner[stage] = (kept or ran or said or runs)[-1]
            self.cut += [(stage, runs.index(r) + 1, runs.index(self.owner[stage]) + 1) for r in ran
                         if r not in kept and runs.index(r) > runs.index(self.owner[stage])]
        self.device = runs[-1].device
        self.summary = "\n".join(r.summary for r in runs)
        self.train, self.kernels = self.owner["train"].train, self.owner["kernels"].kernels
        self.hooks = {name: self.owner[name].hooks[name] for name in HOOKS}
        self.tests, self.sticky_tests = self.owner["tests"].tests, self.owner["tests"].sticky_tests
        first = runs[0]  # --add belongs to the first folder (its later call's hook file); a later run's stage wins
        self.added = [(name, path) for name, path in first.added if self.owner[name] is first]
        self.replaced = [(name, path, runs.index(self.owner[name]) + 1) for name, path in first.added
                         if self.owner[name] is not first]
        self.unread = first.unread
        self.added_json = {h: v for h, v in first.added_json.items() if self.owner[h] is first}

    def source(self, stage):
        return self.owner.get(stage, self.runs[-1])

    def line(self, stage):
        return self.source(stage).line(stage)

    def not_asked(self, stage):
        return self.source(stage).not_asked(stage)

    def wrote(self, stage):
        return self.source(stage).wrote(stage)

    def why_missing(self, stage, what):
        return self.source(stage).why_missing(stage, what)

    def stage_seconds(self):
        return {stage: seconds for stage in STAGES
                if (seconds := self.source(stage).stage_seconds().get(stage)) is not None}

    def label(self, *stages):
        """The runs that speak for ``stages``, each as its commit and time."""
        return "; ".join(dict.fromkeys(self.source(stage).label() for stage in stages))


def _card(run):
    """device.txt's first line: nvidia-smi's "name, driver, memory" (or why there is none)."""
    return run.device[0] if run.device else "no device.txt"


def _gpu(run):
    """(name, driver, memory) of nvidia-smi's line, or None where device.txt has another ("no nvidia-smi")."""
    fields = [f.strip() for f in _card(run).split(",")]
    return tuple(fields) if len(fields) == 3 and fields[2].endswith("MiB") else None


def merge_conflict(runs, paths):
    """Why the runs in ``paths`` (oldest first) may not be merged into one section, or None: each must have run on the
    GPU of the first (one card's figures, its targets judged alike: nvidia-smi's name, the driver (a session's runs
    may straddle a driver update, said in the heading: merged_card) and memory aside; device.txt's whole first line
    where it is not nvidia-smi's), and none before the one given before it (a later run's stages win, so the order
    given is the order they ran)."""
    def card(run):
        gpu = _gpu(run)
        return ("nvidia-smi", gpu[0]) if gpu else ("line", _card(run))

    for before, run, path in zip(runs, runs[1:], paths[1:]):
        if card(run) != card(runs[0]):
            return f"--merge {path}: its run was on {_card(run)}, the first on {_card(runs[0])}: report the two apart"
        if run.date() and before.date() and run.date() < before.date():
            return (f"--merge {path}: its run ({run.date()}) is older than the one before it ({before.date()}): "
                    "give the runs oldest first (a later run's stages replace an earlier's)")
    return None


# ---- the targets -----------------------------------------------------------------------------------------

def _fell_back(r):
    """Whether a gpunn train.json row is the default step's whose CUDA graph was not captured: the bench writes it as
    graph "eager" with the note "graph not captured: why" (gpu_check.sh's train stage fails on that note)."""
    return r.get("graph") == "eager" and str(r.get("note") or "").startswith("graph not captured")


def _eager_step(r):
    """Whether a gpunn train.json row is the eager step (--eager), not a default row that fell back to it."""
    return r.get("graph") == "eager" and not _fell_back(r)


def _on_gpu(*rows):
    """Whether every train.json row was measured on a CUDA device (issue 10's targets are an H200's or H100's)."""
    return all(str(r.get("backend", "")).startswith("cuda") for r in rows)


def _not_on_gpu(text, *rows):
    """A measured value with no verdict: a CPU run's numbers say nothing of the GPU targets."""
    devices = sorted({str(r.get("backend")) for r in rows if not _on_gpu(r)})
    return f"not measured on a GPU: {text} ({', '.join(devices)})", ""


def _train_missing(run, config, *needs):
    if run.train is None:
        return run.why_missing("train", "no train.json")
    configs = {r["config"] for r in run.train.get("results", [])}
    if config not in configs:
        return f"not measured: no {config} rows in train.json (configurations run: {', '.join(sorted(configs))})"
    return f"not measured: no {' / '.join(needs)} row for {config} in train.json"


def _ratio_target(run, config, num, den, target, label_num, label_den):
    a, b = run.row(config, **num), run.row(config, **den)
    if a is None or b is None:
        return _train_missing(run, config, label_num if a is None else label_den), ""
    ratio = a["samples_per_s"] / b["samples_per_s"]
    text = f"{a['samples_per_s']:,.0f} / {b['samples_per_s']:,.0f} = {_x(ratio)}"
    paired = _paired(a, b)
    if math.isfinite(paired):  # the rows' rounds (gpunn bench since 2026-11-30): the target is judged on these
        ratio, text = paired, f"{_x(paired)} paired by round (medians {text})"
    text += "".join(f" ({r['config']} {r['dtype']}'s default step ran eagerly: {r['note']})" for r in (a, b)
                    if r["impl"] == "gpunn" and _fell_back(r))
    if not _on_gpu(a, b):
        return _not_on_gpu(text, a, b)
    return text, MET if ratio >= target else NOT_MET


def issue10(run):
    rows = []
    f32 = dict(impl="gpunn", dtype="float32")
    large = run.row("large", **f32)
    if large is None:
        rows.append(("large float32 ≥ 85% of the same-shape SGEMM", _train_missing(run, "large", "gpunn float32"), ""))
    else:
        frac = large["fraction_of_gemm"]
        text = f"{100 * frac:.0f}% ({large['gflops']:,.0f} of {large['gemm_gflops']:,.0f} GFLOP/s)"
        rows.append(("large float32 ≥ 85% of the same-shape SGEMM",
                     *((text, MET if frac >= 0.85 else NOT_MET) if _on_gpu(large) else _not_on_gpu(text, large))))
    for text, num, den, target, ln, ld in (
            ("large float32 ≥ 0.95× PyTorch eager", f32, dict(impl="torch"), 0.95, "gpunn float32", "torch eager"),
            ("large tf32 ≥ 3× float32", dict(dtype="tf32"), f32, 3.0, "gpunn tf32", "gpunn float32"),
            ("large bf16 ≥ 5× float32", dict(dtype="bf16"), f32, 5.0, "gpunn bf16", "gpunn float32"),
            ("large bf16 ≥ 1.0× PyTorch bf16 autocast", dict(dtype="bf16"), dict(impl="torch-bf16"), 1.0,
             "gpunn bf16", "torch bf16 autocast")):
        rows.append((text, *_ratio_target(run, "large", num, den, target, ln, ld)))
    rows.append(("tf32 and bf16 reach a held-out R² within 0.005 of float32 (teacher task)", *_r2(run)))
    for config in ("small", "medium"):
        rows.append((f"{config} ≥ 1.2× PyTorch eager (the eager step)",
                     *_ratio_target(run, config, dict(mode="eager"), dict(impl="torch"), 1.2, "gpunn float32 eager",
                                    "torch eager")))
        rows.append((f"{config} ≥ 3× PyTorch eager with the graph (the default step)",
                     *_ratio_target(run, config, {}, dict(impl="torch"), 3.0, "gpunn float32", "torch eager")))
    rows.append(("the default step is a captured CUDA graph on every configuration, never slower than eager "
                 "(≥ 0.95×: at large the GEMMs dominate and the two are equal)", *_graph(run)))
    return rows


def _r2(run):
    p = run.hooks.get("precision") or {}
    test = "test_tf32_and_bf16_train_to_the_float32_r2"
    if "error" in p.get("r2", {}):
        # the parts before it (precision.py: members, gemm) ran in the same process: after a sticky CUDA error there,
        # the R² part fails whatever tf32 and bf16 do, and the GPU test (its own process) is the answer
        first = next((part for part in ("members", "gemm") if sticky_error(json.dumps(p.get(part)))), None)
        if first is None or not sticky_error(p["r2"]["error"]):
            return f"the precision hook's R² part failed: {p['r2']['error']}", NOT_MET
        outcome = _test_outcome(run, test)
        return (f"tests/test_precision_gpu.py::{test} {outcome} (the precision hook's R² part failed with "
                f"{sticky_error(p['r2']['error'])}, a sticky CUDA error its {first} part met first)",
                MET if outcome == "passed" else NOT_MET if outcome.startswith("failed") else "")
    if "r2" in p:
        r2 = {k: math.nan if v is None else v for k, v in p["r2"]["r2"].items()}  # null: score() refused it (errors)
        text = ", ".join(f"{k} {v:.4f}" + ("" if k == "float32" else f" ({v - r2['float32']:+.4f})") for k, v in r2.items())
        text += f" ({p['r2']['rows']:,} rows, {p['r2']['layers']}, {p['r2']['epochs']} epochs; {p['device']})"
        text += "".join(f"; {k}: {v}" for k, v in p["r2"].get("errors", {}).items())  # score() refused its predictions
        if not str(p.get("device", "cpu")).startswith("cuda") or p.get("quick"):
            # the CPU's NumPy emulation of the precisions, or --quick's sizes: the plumbing, not the target
            return f"not measured on a GPU: {text}" + (" (--quick)" if p.get("quick") else ""), ""
        within = p["r2"]["within"]  # both precisions the target names: one the hook did not record is not within
        return text, MET if all(within.get(k) is True for k in ("tf32", "bf16")) else NOT_MET
    outcome = _test_outcome(run, test)
    if outcome == "passed" or outcome.startswith("failed"):  # "failed: ids" (_test_outcome)
        return (f"tests/test_precision_gpu.py::{test} {outcome} (the values are in the precision hook, which did "
                f"not run)", MET if outcome == "passed" else NOT_MET)
    return run.why_missing("precision", "no precision/precision.json and no test outcome"), ""


def _graph(run):
    if run.train is None:
        return run.why_missing("train", "no train.json"), ""
    gpunn_rows = [r for r in run.train["results"] if r["impl"] == "gpunn" and not _eager_step(r)]
    if not any(r.get("graph") for r in gpunn_rows):
        return "not measured: no CUDA graph rows (a CPU run)", ""
    missing = [f"{r['config']} {r['dtype']} ({r.get('note') or 'not captured'})" for r in gpunn_rows
               if r.get("graph") != "graph"]
    speedups = {}
    for r in run.train["results"]:
        graph = run.row(r["config"], dtype=r["dtype"]) if r["impl"] == "gpunn" and _eager_step(r) else None
        if graph is not None and graph.get("graph") == "graph":  # the bench's per-round median, or the medians'
            ratio = r.get("graph_speedup", float("nan"))
            ratio = ratio if math.isfinite(ratio) else _paired(graph, r)
            speedups[f"{r['config']} {r['dtype']}"] = (ratio, "") if math.isfinite(ratio) else (
                graph["samples_per_s"] / r["samples_per_s"], " (ratio of medians)")
    medians = all(how for _, how in speedups.values())  # said once where every figure is (older JSON)
    text = (("graph over eager (ratios of medians): " if medians else "graph over eager: ") + ", ".join(
        f"{k} {_x(v)}{'' if medians else how}" for k, (v, how) in speedups.items())) if speedups \
        else "captured (no eager rows to compare)"
    cut = ""
    if run.train.get("complete") is False:  # gpunn bench rewrites train.json after each configuration
        done = ", ".join(dict.fromkeys(r["config"] for r in run.train["results"]))
        cut = f"; incomplete: train.json was last written after {done} (the bench was cut before its end)"
    if missing:
        return f"NOT captured: {'; '.join(missing)}; {text}{cut}", NOT_MET
    return text + cut, NOT_MET if any(v < 0.95 for v, _ in speedups.values()) else "" if cut else MET


def issue11(run):
    e = run.hooks.get("ensemble")
    texts = ("K=256 small nets ≥ 50× K sequential gpunn fits", "K=256 small nets ≥ 3× the torch vmap ensemble",
             "each member equals its MLP on the GPU (float64, 3 members, ≤ 1e-10 relative)")
    if e is None:
        why = run.why_missing("ensemble", "no ensemble/ensemble.json")
        return [(t, why, "") for t in texts]
    rows = []
    gpu = e.get("device", "cpu") != "cpu"
    # the graph row ran in a process of its own after the eager rows (ensemble.py --graph-rows): where it did not
    # give its rows, why (its failure, or too little time left to start it)
    graph_lost = (f"the graph rows failed: {e['graph_error']}{sticky_words(e, 'graph_error')}" if e.get("graph_error")
                  else f"the graph rows were not run: {e['graph_skipped']}" if e.get("graph_skipped") else "")
    eager_lost = f"the benchmark failed: {e['benchmark_error']}{sticky_words(e)}" if e.get("benchmark_error") else ""
    for text, peer in zip(texts[:2], ("sequential", "torch-vmap")):
        got = e.get("targets", {}).get(peer)
        graph = e.get("graph_targets", {}).get(peer)
        if got is None and graph is None:
            stage = run.line("ensemble") or ""
            rows.append((text, f"not measured: no {peer} row in ensemble.json"
                         + (f": {eager_lost}" if eager_lost else "") + (f"; {graph_lost}" if graph_lost else "") +
                         (f" (`{stage.strip()}`)" if stage and not stage.startswith("ok") else ""), ""))
            continue
        parts = [f"eager {_x(got['speedup'])}" if got else f"eager not measured ({eager_lost or 'no row'})"]
        if graph:
            parts.append(f"graph {_x(graph['speedup'])}{_how(graph)}")
        elif graph_lost:
            parts.append(graph_lost)
        text_got = ", ".join(parts)
        best = max(x["speedup"] for x in (got, graph) if x)
        target = (got or graph)["target"]
        if not gpu:
            rows.append((text, f"not measured on a GPU ({text_got} on {e.get('device')} against its CPU target "
                               f"{target:g}×)", ""))
        elif best >= target:
            rows.append((text, text_got, MET))
        else:  # not met by what ran; where a row did not run (the graph row, meant to close the gap) no verdict
            rows.append((text, text_got, "" if graph_lost or not got else NOT_MET))
    err = e.get("exactness_max_rel_err")
    if "exactness_error" in e:  # the check raised (the hook went on to the benchmark)
        rows.append((texts[2], f"failed: {e['exactness_error']} ({e.get('device')})", NOT_MET))
    else:
        rows.append((texts[2], f"{err:.3g} ({e.get('device')})" if err is not None else "not measured",
                     "" if err is None or not gpu else MET if err <= 1e-10 else NOT_MET))
    return rows


# ensemble.json's row lists, each of one of the hook's processes (bench/gpu_checks/ensemble.py)
ENSEMBLE_PROCESSES = (("results", "first process"), ("graph_results", "graph process"), ("bf16_results", "bf16 process"))


def unprofiled(e):
    """The ensemble hook's processes whose eager float32 ensemble row (impl "gpunn", the one gpunn bench profiles)
    has no step profile: its process's time ran out before the profile run. Rows made by hand, without the key,
    say nothing."""
    return [words for key, words in ENSEMBLE_PROCESSES for r in (e or {}).get(key) or []
            if r.get("impl") == "gpunn" and "profile" in r and not r["profile"]]


def step_words(entry):
    """(words, comparable) for a streams throughput entry's two fits: how their steps ran where either ran
    eagerly (the default graph falls back silently; streams.py's step_kind), and the hook's ``same_step``: False
    where one side was a CUDA graph and the other eager (the ratio then measures the step, not the data path)."""
    steps = entry.get("steps") or {}
    if all(kind == "graph" for kind in steps.values()):
        return "", True
    comparable = entry.get("same_step", True)  # decided by the hook (streams.py with_steps)
    words = ", ".join(f"{side}'s step {kind}" for side, kind in steps.items())
    return (f"; {words}" if comparable else f"; not judged: {words}"), comparable


def stream_pairing(entry):
    """How a streams throughput entry's ratio to memory was taken, in words, with its spread (the hook's
    ``statistic``, since 2026-11-30): the median over rounds of alternated epochs ("paired"), the 10^9-row epoch's
    ratios to the in-memory epochs just before and after it ("bracketed") or to the one before ("before"); older
    JSON holds one epoch of each side, not paired."""
    how = entry.get("statistic")
    lo, hi = entry.get("ratio_spread") or (entry["ratio"], entry["ratio"])
    if how == "paired":
        rounds = len(next(iter(entry["rounds"].values())))
        return f"paired by round over {rounds} round{'s' if rounds > 1 else ''}, {lo:.2f}-{_x(hi)}"
    if how == "bracketed":
        return f"the median of its ratios to the in-memory epochs just before and after it, {lo:.2f}-{_x(hi)}"
    if how == "before":
        return "against the in-memory epoch just before it (one pair)"
    return "one epoch of each, not paired"


def issue12(run):
    s = run.hooks.get("streams")
    texts = ("a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput",
             ".npy on the large configuration: the host-to-device copy hidden behind compute (copy bandwidth "
             "measured in the same run)")
    if s is None:
        why = run.why_missing("streams", "no streams/streams.json")
        return [(t, why, "") for t in texts]
    gpu = s.get("device", "cpu").startswith("cuda")
    rows = []
    long = s.get("throughput", {}).get("synthetic_long")
    started = (s.get("started") or {}).get("synthetic_long")  # saved by the hook before the epoch, None after it
    cut = started and (long is None or started["rows"] > long["rows"]) and (
        f"a {started['rows']:,}-row stream started {started['at_s']:.0f} s into the hook (about "
        f"{started['expected_s']:.0f} s long) did not finish: the call's time ran out in it, or the hook failed there")
    errors = s.get("errors") or {}  # a part that raised (the hook went on to the next)

    def verdict(ratio, source):
        """MET / NOT_MET for a ratio, not met where the source's own data checks failed or raised: a fast stream of
        wrong rows meets nothing."""
        failed = [k for k, ok in (s.get("checks") or {}).items() if k.startswith(source) and not ok]
        failed += [f"{k} ({errors[k]})" for k in errors if k == f"{source} checks"]
        if failed:
            return f"; its data checks failed: {', '.join(failed)}", NOT_MET
        return "", MET if ratio >= 0.9 else NOT_MET

    if long is None:
        why = (errors.get("synthetic_long") and f"the part failed: {errors['synthetic_long']}" or cut
               or s.get("skipped", {}).get("synthetic_long")
               or errors.get("synthetic") and f"the synthetic part it starts from failed: {errors['synthetic']}"
               or ("a GPU measurement" if not gpu else "not run"))
        rows.append((texts[0], f"not measured: {why}", ""))
    else:
        partial = long.get("partial")  # the hook's time ran out in the epoch: its progress until then
        on = (f"over the first {long['rows']:,} rows of a {long.get('rows_asked', 10 ** 9):,}-row epoch ({partial}"
              + ("; the rate after its first progress report, the start-up left out" if long.get(
                  "rate_leaves_out_the_start") else "; the rate with the start-up") + ")"
              if partial else f"on {long['rows']:,} rows")
        text = (f"{long['stream_samples_per_s']:,.0f} samples/s = {long['ratio']:.2f}× in memory "
                f"({long['memory_samples_per_s']:,.0f}; {stream_pairing(long)}) {on}, peak RSS "
                f"{long['peak_rss_gib']:.2f} GiB")
        steps, comparable = step_words(long) if gpu else ("", True)
        if partial:  # a rate of part of the epoch: no verdict, however fast
            failed = f"; the part failed: {errors['synthetic_long']}" if errors.get("synthetic_long") else ""
            rows.append((texts[0], text + ": a partial epoch, not the 10^9-row target" + failed
                         + (f"; {cut}" if cut else "") + steps, ""))
        elif long["rows"] < 10 ** 9:
            rows.append((texts[0], text + ": not 10^9 rows" + (f"; {cut}" if cut else "") + steps, ""))
        elif not gpu:
            rows.append((texts[0], text + f": not measured on a GPU ({s.get('device')})", ""))
        else:
            failed, judged = verdict(long["ratio"], "synthetic")
            rows.append((texts[0], text + steps + failed, "" if not comparable and not failed else judged))
    large = s.get("throughput", {}).get("npy_large")
    if large is None:
        rows.append((texts[1], f"not measured: the part failed: {errors['npy_large']}" if "npy_large" in errors else
                     "not measured: no npy_large part in streams.json (the hook ran out of time before it, or predates "
                     "it)", ""))
    else:
        text = f"{large['ratio']:.2f}× in memory ({stream_pairing(large)}; {large['config']}, {large['rows']:,} rows)"
        if "h2d_gbps_pinned" in large:
            text += (f"; pinned H2D {large['h2d_gbps_pinned']:.1f} GB/s, a window's copy {large['window_copy_ms']:.1f} ms "
                     f"= {100 * large['copy_share']:.1f}% of its training")
        if not gpu:  # as the 10^9-row stream's: the value measured, no verdict (it read as one)
            rows.append((texts[1], text + f": not measured on a GPU ({s.get('device')})", ""))
        elif s.get("quick"):  # a hand-made --quick run: the CPU's sizes, not the large configuration
            rows.append((texts[1], text + ": not the large configuration (--quick)", ""))
        else:
            steps, comparable = step_words(large)
            failed, judged = verdict(large["ratio"], "npy")
            rows.append((texts[1], text + steps + failed, "" if not comparable and not failed else judged))
    return rows


def issue13(run):
    n = run.hooks.get("nccl")
    text = "a one-rank NCCL run: communicator, all-reduce and broadcast, distributed fits equal to one process"
    if n is None:
        return [(text, run.why_missing("nccl", "no nccl/nccl.json"), "")]
    checks = n.get("checks", {})
    failed = [k for k, v in checks.items() if not v]
    got = f"{len(checks) - len(failed)} of {len(checks)} checks passed" + (
        f" ({n['communicator']})" if n.get("communicator") else "")
    if failed:  # with the error of a check that raised (the hook goes on to the next)
        got += "; failed: " + "; ".join(f"{k} ({n['errors'][k]})" if k in n.get("errors", {}) else k for k in failed)
    if isinstance(n.get("hook_cost_us_per_step"), (int, float)):
        got += f"; the hook costs {n['hook_cost_us_per_step']} us per medium float32 step"
    if not checks.get("NCCL communicator"):
        return [(text, f"not measured on a GPU with NCCL: {got}", NOT_MET if failed else "")]
    cut = "" if failed else _unfinished(run, "nccl", "finished")
    return [(text, got + (f"; {cut}" if cut else ""), NOT_MET if failed else "" if cut else MET)]


def _unfinished(run, hook, last):
    """'' when the hook ran to its end, else why its JSON, rewritten after each check, may hold only the checks
    before a cut: its stage line is not "ok" (ended at its cap, or failed outside a check), or missing (the run
    was killed in it). A file merged with --add, which no summary line speaks for, ran to its end when it holds
    ``last``, the hook's last record (nccl.py writes ``"finished": true`` at its end)."""
    if hook in run.added_json:
        return "" if run.added_json[hook].get(last) else (
            f"incomplete: the --add file has no {last!r} (the hook's last record)")
    line = run.line(hook)
    if line is None:
        return f"incomplete: killed: {killed_words(hook)}"
    return "" if line.startswith("ok") else f"incomplete: `{line.strip()}`"


# ---- the review's questions --------------------------------------------------------------------------------

def _test_outcome(run, name):
    """'passed' when every test of that name ("module::test" or "test") passed, 'failed: ids' when one
    failed (naming a sticky CUDA error it failed with), else a reason."""
    if run.tests is None:  # "unknown" only where the tests ran and left no XML to read
        return "unknown: no gpu_tests.xml" if run.wrote("tests") else run.why_missing("tests", "no gpu_tests.xml")
    module, _, name = name.rpartition("::")
    hits = {k: v for k, v in run.tests.items() if k.split("::", 1)[1].split("[", 1)[0] == name
            and (not module or k.split("::", 1)[0].rsplit(".", 1)[-1] == module)}
    if not hits:
        return "not collected"
    failed = [k.split("::", 1)[1] for k, v in hits.items() if v == "failed"]
    if failed:
        sticky = sorted({run.sticky_tests[k] for k, v in hits.items() if v == "failed" and k in run.sticky_tests})
        return "failed: " + ", ".join(failed) + (
            f" (with {', '.join(sticky)}, a sticky CUDA error: a fault in it, or in an earlier test of the same "
            f"pytest process (an xdist worker), whose later tests all fail with it; {len(run.sticky_tests)} of the "
            "stage's tests failed with one)" if sticky else "")
    if all(v == "skipped" for v in hits.values()):
        return "skipped"
    return "passed"


def _graph_check(e):
    """The ensemble hook's graph check (its graph process, ensemble.py --graph-rows), in words."""
    g = e.get("graph")
    if not g:
        return f"not measured: {e['graph_skipped']}" if e.get("graph_skipped") else "not measured: no graph check"
    if "error" in g:
        return f"the check failed: {g['error']}"
    err = g.get("max_rel_err")
    return (("captured" if g.get("captured") else f"NOT captured ({g.get('reason')})")
            + (f"; largest relative difference from the eager fit {err:.3g}" if err is not None else "")
            + f" ({e.get('device')})")


# tests/test_ensemble_precision.py's two parts; each case's bound is in precision.json
MEMBER_QUESTION = ("member vs MLP, the largest relative difference: gradients at equal weights (tf32 ≤ 16 x 2^-11, "
                   "bf16 ≤ 2^-8), weights after training (≤ 2e-2)")


def questions(run):
    p = run.hooks.get("precision") or {}
    why = "" if p else run.why_missing("precision", "no precision/precision.json")
    rows = []
    members = p.get("members")
    if members:
        parts = []
        for name, m in members.items():
            if name == "error":
                parts.append(m)
                continue
            got = f"{m['worst']:.3g}" if "worst" in m else m.get("error", "?")
            parts.append(f"{name}: {got} (bound {m['tolerance']:g}, {'within' if m['ok'] else 'NOT within'})")
        rows.append((MEMBER_QUESTION,
                     "; ".join(parts) + f" [{p['device']}]"))
    else:
        rows.append((MEMBER_QUESTION, why or "not run"))
    rows.append(("the resume tests hold at 1e-6 (cuBLAS deterministic run to run)",
                 "test_an_interrupted_run_resumes_in_its_precision: "
                 + _test_outcome(run, "test_ensemble_precision::test_an_interrupted_run_resumes_in_its_precision")))
    gemm = p.get("gemm")
    if gemm and "error" in gemm:
        rows.append(("batched GemmEx with the shared X (stride 0): bf16 into float32 / bf16, TF32; eagerly and "
                     "captured", f"the part failed: {gemm['error']}"))
    elif gemm:
        rows.append(("batched GemmEx with the shared X (stride 0): bf16 into float32 / bf16, TF32; eagerly and "
                     "captured", "; ".join(f"{k}: " + (f"{v['rel_err']:.2g}" if v["accepted"] else
                                                      f"REFUSED ({v['error']})") for k, v in gemm.items())))
    else:
        rows.append(("batched GemmEx with the shared X (stride 0): bf16 into float32 / bf16, TF32; eagerly and "
                     "captured", why or f"not measured: {p.get('skipped', {}).get('gemm', 'not run')}"))
    captured = [f"{k}: {'captured' if v['captured'] else 'NOT captured (' + str(v['reason']) + ')'}"
                for k, v in (members or {}).items() if isinstance(v, dict) and "captured" in v]
    contract = "test_each_member_trains_as_its_own_mlp_on_cuda"
    rows.append(("the bf16 (and tf32) ensemble graph is captured", "; ".join(
        captured + [f"{contract}: " + _test_outcome(run, f"test_ensemble_precision::{contract}")])))
    e = run.hooks.get("ensemble") or {}
    rows.append(("the ensemble's CUDA graph (Ensemble()'s default, float64, 3 members) is captured and trains as the "
                 "eager step", _graph_check(e) if e else run.why_missing("ensemble", "no ensemble/ensemble.json")))
    seconds = run.stage_seconds().get("ensemble")
    bf16 = "the bf16 ensemble row's speed (small-x256, CUDA graph)"
    took = f"; the ensemble hook took {seconds} s" if seconds is not None else ""
    if e.get("bf16_error"):  # in a process of its own (ensemble.py --bf16-row), after issue 11's rows were saved
        rows.append((bf16, f"the row failed: {e['bf16_error']}"))
    elif e.get("bf16"):
        how = e.get("bf16_statistic") or {}  # none before 2026-11-30: each a ratio of medians
        rows.append((bf16, ", ".join(f"{_x(v)} {k}{_how({'statistic': how.get(k, 'medians')})}"
                                     for k, v in e["bf16"].items()) + took))
    elif e.get("bf16_skipped"):
        rows.append((bf16, f"not measured: {e['bf16_skipped']}{took}"))
    elif not e:
        rows.append((bf16, run.why_missing("ensemble", "no ensemble/ensemble.json")))
    else:
        rows.append((bf16, "not measured: no bf16 row (on a GPU it needs --max-seconds 60 or more: "
                     "GPUNN_CHECK_ENSEMBLE_SECONDS=65 or more, as the hook gets its cap less 5 s)" + took))
    a = p.get("alignment")
    if a and "error" in a:
        rows.append(("5,313-parameter members not 16-byte aligned: do the bf16 products slow down?",
                     f"the part failed: {a['error']}"))
    elif a:
        rows.append(("5,313-parameter members not 16-byte aligned: do the bf16 products slow down?",
                     f"K={a['members']}, batch {a['batch']}: packed {a['packed_us']:.1f} us, padded to "
                     f"{a['padded']:,} elements {a['padded_us']:.1f} us: packed/padded {_x(a['packed_over_padded'])}"))
    else:
        rows.append(("5,313-parameter members not 16-byte aligned: do the bf16 products slow down?",
                     why or f"not measured: {p.get('skipped', {}).get('alignment', 'not run')}"))
    rows.append(("set_precision between fits captures anew on a GPU (1e-5)",
                 "test_set_precision_between_fits_captures_anew: "
                 + _test_outcome(run, "test_ensemble_precision::test_set_precision_between_fits_captures_anew")))
    rows.append(("the ensemble's '% of peak' column is finite on the GPU",
                 ("yes" if e.get("peak_column_ok") else "NO" + (f" ({e['peak_column_why']})" if e.get("peak_column_why")
                                                                else "")) if "peak_column_ok" in e else
                  "not measured" if e else run.why_missing("ensemble", "no ensemble/ensemble.json")))
    return rows


# ---- the section -------------------------------------------------------------------------------------------

def _info(device):
    """{key: value} of device.txt's lines in gpunn info's layout ("cupy            14.2.0", "torch  2.11.0+cu130")."""
    info = {}
    for line in device:
        m = re.match(r"^(\w[\w ]*?)\s{2,}(.*)$", line)
        if m:
            info[m.group(1)] = m.group(2)
    return info


def torch_words(run):
    """The heading's torch: the version train.json's setup names (its stage ran torch), else device.txt's (gpu_check.sh
    writes it since 2026-12-01), else a hook's torch row's ("torch 2.11.0+cu130 vmap ensemble ..."); where none says
    it, why: the run did not ask for the train stage, which an older device.txt left the version to."""
    version = (run.train or {}).get("setup", {}).get("torch") or _info(run.device).get("torch")
    e = run.hooks.get("ensemble") or {}
    rows = [r for key, _ in ENSEMBLE_PROCESSES for r in e.get(key) or []]
    version = version or next((m[1] for r in rows if (m := re.match(r"torch (\S+) ", str(r.get("label"))))), None)
    if version == "not installed":
        return "no torch"
    if version:
        return f"torch {version.split(' (')[0]}"
    return "torch not recorded" if run.wrote("train") else "torch: not run in this call"


def _setup(run):
    """(card, CuPy, date) words of a run's heading, from device.txt."""
    gpu = _gpu(run)
    card = f"{gpu[0]} ({gpu[2]}), driver {gpu[1]}" if gpu else _card(run)
    cupy = _info(run.device).get("cupy", "version not in device.txt")
    cupy = f"CuPy {cupy}" if not cupy.startswith("unavailable") else "no CuPy"
    return card, cupy, run.date() or "no date in device.txt"


def per_run(runs, field):
    """nvidia-smi's ``field`` (1: the driver, 2: the memory) of the runs: the one value, or each with its runs
    ("580.95.05 in run 1 and 590.48.01 in runs 2, 3") where they differ; None where a run has no nvidia-smi line."""
    gpus = [_gpu(r) for r in runs]
    if None in gpus:
        return None
    runs_of = {}
    for i, gpu in enumerate(gpus, 1):
        runs_of.setdefault(gpu[field], []).append(str(i))
    if len(runs_of) == 1:
        return gpus[0][field]
    return " and ".join(f"{value} in run{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
                        for value, ids in runs_of.items())


def merged_card(runs):
    """The card words of a merged section's heading: the runs' GPU, with each driver (and memory) and its runs where
    they differ (merge_conflict lets a driver update through)."""
    if per_run(runs, 1) is None:  # not nvidia-smi's lines: one line, the same in every run (merge_conflict)
        return _setup(runs[0])[0]
    return f"{_gpu(runs[0])[0]} ({per_run(runs, 2)}), driver {per_run(runs, 1)}"


def heading(run):
    card, cupy, date = _setup(run)
    return f"## `bench/gpu_check.sh` — {card}, {cupy}, {torch_words(run)} — {date}", commit_of(run)


def commit_of(run):
    """The commit device.txt names: the one the caller named (GPUNN_CHECK_COMMIT), not what the checkout's .git
    said, which may be stale."""
    commit = next((line.split(" ", 1)[1] for line in run.device if line.startswith("commit ")), "not in device.txt")
    return re.sub(r" \(named by GPUNN_CHECK_COMMIT; .*\)$", "", commit)


def verdict(run):
    m = re.match(r"^gpu_check on .*, (\d+)s of a (\d+)s budget: (PASSED|FAILED)", run.closing() or "")
    if not m:
        if run.stopped():
            return "**FAILED: its device stage stopped the run**, nothing else was run."
        killed = run.killed_in()
        return ("**The run did not finish** (summary.txt has no closing line: the script was killed"
                + (f", in its {killed} stage" if killed else "") + ").")
    fails = [line for line in run.summary.splitlines() if line.startswith(("FAIL", "SKIP"))]
    lines = run.summary.splitlines()
    after = lines[len(lines) - lines[::-1].index(run.closing()):]  # a failed report stage, written after it
    outcome = "FAILED" if any(line.startswith("FAIL") for line in after) else m.group(3)
    left_out = [stage for stage in ("tests", "kernels", "train", *HOOKS) if run.not_asked(stage)]
    return f"**{outcome} in {m.group(1)} s** of a {m.group(2)} s budget" + (
        f"; {len(fails)} stage(s) failed or skipped" if fails else "") + (
        f"; not run, {NOT_ASKED} (GPUNN_CHECK_STAGES): {', '.join(left_out)}" if left_out else "") + "."


def _table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def details(run):
    """The stages' own output, as blocks of Markdown."""
    from gpunn import bench

    def run_of(stage):  # a merged section names the run each block comes from
        return f" — run {run.runs.index(run.source(stage)) + 1} ({run.label(stage)})" if isinstance(run, Merged) else ""

    blocks = []
    tests = run.line("tests")
    if tests and not run.not_asked("tests"):
        text = f"**GPU tests{run_of('tests')}:** `{tests.strip()}`"
        if run.tests:
            failed = sorted(k for k, v in run.tests.items() if v == "failed")
            text += (f" ({sum(v == 'passed' for v in run.tests.values())} passed, {len(failed)} failed, "
                     f"{sum(v == 'skipped' for v in run.tests.values())} skipped in gpu_tests.xml)")
            text += "".join(f"\n- failed: `{k}`" for k in failed)
        blocks.append(text)
    if run.kernels:
        rows = [(r["op"], f"2^{int(math.log2(r['elements']))}", f"{r['gb_per_s']:.1f}", f"{r['copy_gb_per_s']:.1f}",
                 f"{100 * r['fraction_of_copy']:.0f}%", f"{r['fused_speedup']:.2f}×" if "fused_speedup" in r else "")
                for r in run.kernels.get("rows", [])]
        blocks.append(f"**Kernels{run_of('kernels')}** ({run.kernels.get('device')}, {run.kernels.get('dtype')}; GB/s counting each input "
                      "read once and each output written once, against a device copy of the same size):\n\n"
                      + _table(("op", "size", "GB/s", "copy GB/s", "of copy", "fused vs unfused"), rows))
    if run.train:
        results = run.train["results"]
        text = [bench.format_setup(run.train["setup"]), "", bench.format_table(results), "", bench.gemm_note(results)]
        note = bench.graph_note(results)
        blocks.append(f"**Training throughput{run_of('train')}** (`" + run.train["setup"].get("command", "gpunn bench") + "`):\n\n```\n"
                      + "\n".join(text + ([note] if note else [])) + "\n```")
    for hook in HOOKS:
        text = _read(os.path.join(run.source(hook).out, f"{hook}.txt")) if run.source(hook).wrote(hook) else None
        if text:  # the hook's own lines: progress lines (indented) and JSON dumps left out
            lines = [line for line in text.splitlines() if line.strip() and not line.startswith((" ", "{", "}"))]
            blocks.append(f"**{hook} hook{run_of(hook)}** (`{hook}.txt`):\n\n```\n" + "\n".join(lines[-40:]) + "\n```")
        if hook == "ensemble" and unprofiled(run.hooks.get(hook)):
            blocks.append(f"**ensemble hook{run_of(hook)}:** the eager ensemble row of its "
                          + " and of its ".join(unprofiled(run.hooks[hook])) + " has no step profile (matmul / "
                          "elementwise / optimizer / other, the table's last column): gpunn bench skips a row's profile "
                          "run where its --max-seconds budget is spent (its log line: \"profile run skipped\").")
    return "\n\n".join(blocks)


# the stages each of the review's questions reads (questions()), and each issue's targets: a merged section labels
# each answer and figure with the run that speaks for those stages
QUESTION_STAGES = (("member vs MLP", ("precision",)), ("the resume tests", ("tests",)),
                   ("batched GemmEx", ("precision",)), ("the bf16 (and tf32)", ("precision", "tests")),
                   ("the ensemble's CUDA graph", ("ensemble",)), ("the bf16 ensemble row", ("ensemble",)),
                   ("5,313-parameter", ("precision",)), ("set_precision", ("tests",)),
                   ("the ensemble's '% of peak'", ("ensemble",)))
ISSUE_STAGES = {"10": "train", "11": "ensemble", "12": "streams", "13": "nccl"}


def _target_stages(issue, target, measured):
    if target.startswith("tf32 and bf16 reach"):  # the precision hook's R², or the GPU test's outcome (_r2)
        return ("precision", "tests") if "tests/test_precision_gpu.py" in measured else ("precision",)
    return (ISSUE_STAGES[issue],)


def _opening(run):
    """(heading, the sentence under it, the summary blocks) of the section."""
    written = "This section was written by `python bench/gpu_report.py` from the run's output folder."
    if not isinstance(run, Merged):
        title, commit = heading(run)
        return title, f"`bench/gpu_check.sh` on commit {commit}: {verdict(run)} {written}", [
            "```", run.summary or "(no summary.txt)", "```", ""]
    card, (_, cupy, _) = merged_card(run.runs), _setup(run.runs[0])
    words = list(dict.fromkeys(torch_words(r) for r in run.runs))
    torch = ", ".join([w for w in words if w.startswith(("torch ", "no torch")) and w != "torch not recorded"]
                      or words)
    cupy = ", ".join(dict.fromkeys([cupy] + [_setup(r)[1] for r in run.runs[1:]]))
    title = (f"## `bench/gpu_check.sh`, {len(run.runs)} runs merged — {card}, {cupy}, {torch} — "
             + " and ".join(r.date() or "no date" for r in run.runs))
    said = " ".join(f"Run {i} on commit {commit_of(r)}, {r.date() or 'no date in device.txt'}: {verdict(r)}"
                    for i, r in enumerate(run.runs, 1))
    drivers = {gpu[1] for r in run.runs if (gpu := _gpu(r))}
    changed = (f" The driver changed between the runs ({per_run(run.runs, 1)}): each figure was measured under its "
               "own run's." if len(drivers) > 1 else "")
    cut = "".join(f" Run {killed} was killed in its {stage} {'hook' if stage in HOOKS else 'stage'} before it wrote "
                  f"{FIGURES[stage]}: run {kept}'s {stage} figures stand." for stage, killed, kept in run.cut)
    intro = (f"`bench/gpu_check.sh`, {len(run.runs)} runs merged: each stage's figures are the latest run's that ran "
             f"it, and each figure names its run (commit, time). {said}{changed}{cut} This section was written by "
             "`python bench/gpu_report.py` from the runs' output folders.")
    blocks = []
    for i, r in enumerate(run.runs, 1):
        blocks += [f"Run {i} ({r.label()}):", "", "```", r.summary or "(no summary.txt)", "```", ""]
    return title, intro, blocks


def report(run) -> str:
    merged = isinstance(run, Merged)
    targets = [(n, *row) for n, rows in (("10", issue10(run)), ("11", issue11(run)), ("12", issue12(run)),
                                         ("13", issue13(run))) for row in rows]
    answers = questions(run)
    if merged:
        targets = [(*row, run.label(*_target_stages(*row[:3]))) for row in targets]
        answers = [(*row, run.label(*next(stages for start, stages in QUESTION_STAGES if row[0].startswith(start))))
                   for row in answers]
    title, intro, summaries = _opening(run)
    parts = [title, "", intro, "", *summaries,
             *([f"Merged from a later call: {', '.join(f'{name} ({os.path.basename(path)})' for name, path in run.added)}.",
                ""] if run.added else []),
             *([f"Not used: {', '.join(f'{name} ({os.path.basename(path)})' for name, path, _ in run.replaced)}, "
                "merged into run 1: " + ", ".join(f"run {i}'s {name} stage replaces it" for name, _, i in run.replaced)
                + ".", ""] if getattr(run, "replaced", None) else []),
             *([f"**Not merged** (not a JSON object: a file cut short while it was written?): "
                f"{', '.join(f'{name} ({path})' for name, path in run.unread)}.", ""] if run.unread else []),
             "### The open issues' GPU targets", "",
             _table(("issue", "target", "measured", "", *(("run",) if merged else ())), targets), "",
             "### The ensemble-precision review's questions (notes revprec-s6)", "",
             _table(("question", "answer", *(("run",) if merged else ())), answers), "",
             "### The stages", "", details(run)]
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the folder bench/gpu_check.sh wrote")
    parser.add_argument("--add", action="append", default=[], metavar="HOOK=PATH",
                        help=f"a later run's hook JSON ({', '.join(HOOKS)}), merged over the folder's: e.g. "
                        "streams=streams.json from the second GPU command (bench/gpu_check.sh's header); refused "
                        "where it was measured on another kind of device (GPU, CPU) than the folder's hooks")
    parser.add_argument("--merge", action="append", default=[], metavar="LATER_DIR",
                        help="a later gpu_check.sh run's folder (repeatable, oldest first), e.g. the rerun after fixes "
                        "(the header's step 3): one section of all, each stage's figures the latest run's that ran it "
                        "(its summary line ok or FAIL, or killed in it after writing its figures), each labelled with "
                        "its run's commit and time; refused for a run on another GPU (a driver update is said in the "
                        "heading), or older than the one given before it. --add goes into OUT's run")
    args = parser.parse_args(argv)
    added = []
    for item in args.add:
        name, _, path = item.partition("=")
        if name not in HOOKS or not path:
            parser.error(f"--add {item}: HOOK=PATH with HOOK one of {', '.join(HOOKS)}")
        if not os.path.exists(path):
            parser.error(f"--add {item}: no such file")
        added.append((name, path))
    for folder in (args.out, *args.merge):
        if not os.path.isdir(folder):
            parser.error(f"{folder}: no such folder")
    run = Run(args.out)
    for (name, path), item in zip(added, args.add):
        extra = _json(path)  # one that is not a JSON object is said in the report (Run.unread), not refused
        conflict = add_conflict(run, name, extra) if isinstance(extra, dict) else None
        if conflict:
            parser.error(f"--add {item}: not merged: {conflict}")
    run.add(added)
    if args.merge:
        runs = [run, *(Run(folder) for folder in args.merge)]
        conflict = merge_conflict(runs, [args.out, *args.merge])
        if conflict:
            parser.error(conflict)
        run = Merged(runs)
    sys.stdout.write(report(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
