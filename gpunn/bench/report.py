"""The benchmark's output: the setup block, the results table (plain or Markdown), the GEMM note, JSON."""
from __future__ import annotations

import json
import math
import statistics

from .system import BUSY_SHARE, SPEED_SPREAD, busy, speed_varied


def _si(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "n/a"


def format_setup(setup: dict) -> str:
    lines = [f"gpunn {setup['gpunn']} bench, {setup['date']}",
             f"machine: {setup['machine']}, {setup['cores']} cores; devices: {'; '.join(setup['devices'])}",
             f"BLAS: {setup['blas']}; gpunn CPU path: {setup['gpunn_cpu_path']}",
             # (no run-wide dtype: each row's is in its dtype column, tf32, bf16 or torch's bf16 autocast beside float32
             # on a GPU, and scikit-learn's float64; a JSON from before holds "dtype": "float32", unread)
             f"python {setup['python']}, numpy {setup['numpy']}, torch {setup['torch']}, sklearn {setup['sklearn']}"]
    if setup.get("gemm"):
        lines.append(f"CPU GEMM: {setup['gemm']}; subnormals: {setup.get('subnormals', '?')}")
    if setup.get("gemm_choices"):
        lines.append(f"CPU GEMM chosen per shape: {setup['gemm_choices']}")
    if setup.get("sustain_steps"):
        lines.append(f"timed after {setup['sustain_steps']}+ more training steps of each implementation (--sustain)")
    if setup.get("env"):
        lines.append("env: " + ", ".join(f"{k}={v}" for k, v in setup["env"].items()))
    if setup.get("peak_gemm_gflops"):
        # not every row's base: each configuration's "% of peak" is over the fastest GEMM of its own rounds (the
        # note under the table), which --max-seconds or a busy machine can leave far below this one
        lines.append("fastest float32 GEMM measured in the run: " +
                     ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in setup["peak_gemm_gflops"].items()) +
                     " (each configuration's '% of peak' is over the fastest of its own rounds: under the table)")
    return "\n".join(lines)


def _gemm_marked(r) -> bool:
    """Whether a row's "% of GEMM" gets (!): its baseline's repeats differed by over 30%, or other processes kept the
    machine busy during the rounds."""
    return bool(r.get("gemm_noisy")) or busy(r.get("others_cpu"))


def gemm_untrusted(r) -> bool:
    """Whether a row's "% of GEMM" over 100% is withheld (">100%" in the table, the figure in gemm_note, no bar in the
    plot): its baseline could not be trusted ((!), or (~): the machine's own speed changed in its rounds). A base
    slowed by either in some rounds made a small CPU configuration's figure 18708% under load 8; a trusted one over
    100% is shown as measured (tensor cores, a CUDA graph, call cost: see gemm_note)."""
    fraction = r.get("fraction_of_gemm")
    return (fraction is not None and fraction > 1
            and (_gemm_marked(r) or speed_varied(r.get("machine_spread"))))


def _gemm_cell(r) -> str:
    """A row's "% of GEMM" cell: the figure (">100%" where gemm_untrusted), (!) and (~) as they apply."""
    fraction = r.get("fraction_of_gemm")
    text = ">100%" if gemm_untrusted(r) else _percent(float("nan") if fraction is None else fraction)
    return text + (" (!)" if _gemm_marked(r) else "") + (" (~)" if speed_varied(r.get("machine_spread")) else "")


def format_table(results, markdown=False) -> str:
    head = ["config", "device", "implementation", "dtype", "samples/s", "spread (min-max)", "GFLOP/s",
            "% of peak", "% of GEMM", "gpunn is", "step: matmul / elementwise / optimizer / other"]
    rows = []
    for r in results:
        prof = r.get("profile")
        prof_text = (" / ".join(f"{100 * prof[k]:.0f}%" for k in ("matmul", "elementwise", "optimizer", "other"))
                     if prof else "")
        lo, hi = r["spread"]
        speed = "—" if r["impl"] == "gpunn" else f"{r['gpunn_speedup']:.2f}x"
        label = r["label"] + (f", {r['note']}" if r.get("note") else "")
        rows.append([r["config"], r["backend"], label, r["dtype"],
                     f"{r['samples_per_s']:,.0f}" + (" (~)" if speed_varied(r.get("machine_spread")) else ""),
                     f"{_si(lo)}-{_si(hi)}" + (" (!)" if r.get("noisy") else ""), f"{r['gflops']:.1f}",
                     _percent(r.get("fraction_of_peak", float("nan"))),
                     _gemm_cell(r),
                     speed, prof_text])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    right = {4, 5, 6, 7, 8, 9}
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out, last = [fmt(head), fmt(["-" * w for w in widths])], None
    for row, r in zip(rows, results):
        key = (r["config"], r["backend"])
        if last is not None and key != last:
            out.append("")
        last = key
        out.append(fmt(row).rstrip())
    return "\n".join(out)


def graph_note(results) -> str:
    """The CUDA graph's step against the eager one, per configuration and precision (GPU rows with
    --eager): "" when there is no such pair."""
    parts = [f"{r['config']} {r['dtype']} {r['graph_speedup']:.2f}x" for r in results
             if r.get("graph") == "eager" and math.isfinite(r.get("graph_speedup", float("nan")))]
    if not parts:
        return ""
    return ("CUDA graph vs eager step (the default graph row's samples/s over the eager row's, same precision, "
            "median of per-round ratios): " + ", ".join(parts) + ".")


def gemm_note(results) -> str:
    seen, parts, peaks, missing, loaded = set(), [], [], [], []
    for r in results:
        key = (r["config"], r["backend"])
        if key not in seen and r["impl"] == "gpunn":
            seen.add(key)
            if busy(r.get("others_cpu")):
                loaded.append(f"{r['config']} [{r['backend']}] {_percent(r['others_cpu'])}")
            if r.get("gemm_na"):
                missing.append(f"{r['config']} [{r['backend']}]: {r['gemm_na']}")
            else:
                parts.append(f"{r['config']} [{r['backend']}] {r['gemm_gflops']:.0f}"
                             + (f" ({r['gemm_library']})" if r.get("gemm_library") else ""))
            peaks.append(f"{r['config']} [{r['backend']}] {r.get('peak_gflops', float('nan')):.0f}"
                         + (f" ({r['peak_gemm']})" if r.get("peak_gemm") else ""))
    text = ("% of peak: of the best float32 GEMM rate measured (the fastest median of square products through every "
            "GEMM library installed, timed in rounds of their own after the rest, and of the same-shape one), "
            "GFLOP/s: " + ", ".join(peaks) +
            ".\n% of GEMM: of one float32 GEMM of the configuration's hidden shape (batch x widest x widest) "
            "through the library gpunn chose for it, on the BLAS threads its fit runs on (for an ensemble NAME-xK: K such products, the fastest per "
            "round of the ways the ensemble's step may run them), timed in the same rounds, GFLOP/s: "
            + (", ".join(parts) or "none") + ".")
    if missing:
        text += "\n% of GEMM n/a (the baseline could not be timed well): " + "; ".join(missing) + "."
    over = [f"{r['config']} {r['label']} {_percent(r['fraction_of_gemm'])}" for r in results
            if (r.get("fraction_of_gemm") or 0) > 1 and not gemm_untrusted(r)]  # (None: a JSON's null)
    untrusted = [r for r in results if gemm_untrusted(r)]
    withheld = [f"{r['config']} {r['label']} {_percent(r['fraction_of_gemm'])}" for r in untrusted]
    marks = [mark for mark, marked in (("(!)", _gemm_marked), ("(~)", lambda r: speed_varied(r.get("machine_spread"))))
             if any(map(marked, untrusted))]
    if over:
        text += ("\n% of GEMM over 100% (" + ", ".join(over) + ") is as measured: the base is one float32 product "
                 "of the hidden shape per call, which a tf32 or bf16 row's tensor cores can outrun, and on a small "
                 "shape each call's fixed cost (NumPy's dispatch; a kernel launch on a GPU) is much of its time, "
                 "which a step may pay less of per FLOP (gpunn's compiled kernels; a CUDA graph). On a loaded "
                 "machine a short run's base can also be slowed by other processes in all its rounds, unmarked: "
                 "rerun a figure over 100% when it is quiet.")
    if withheld:
        text += ("\n% of GEMM >100% (measured " + ", ".join(withheld) + "): over 100% with a baseline that cannot be "
                 f"trusted ({' or '.join(marks)} beside it), so not a figure to read: the base was slowed in some "
                 "rounds more than the row; rerun when the machine is quiet.")
    if loaded:
        text += ("\nOther processes took " + ", ".join(loaded) + " of the machine's CPU time during the rounds (over "
                 f"{_percent(BUSY_SHARE)}): every timing there got what they left, unevenly, and % of GEMM most ((!) "
                 "beside it); rerun when the machine is quiet.")
    text += ("\nRatios and % of GEMM are medians of per-round pairs; samples/s the median over rounds, % of peak its "
             "FLOP/s over the best median GEMM rate.")
    if any(r.get("noisy") or _gemm_marked(r) for r in results):
        text += ("\n(!) beside the spread: the row's repeats differ by over 30%; beside % of GEMM: its GEMM baseline's "
                 f"do, or other processes took over {_percent(BUSY_SHARE)} of the CPU during the rounds: background "
                 "load on the machine; rerun when it is quiet.")
    speed = speed_note(results)
    return text + ("\n" + speed if speed else "")


def speed_note(results) -> str:
    """The machine-speed probe's times per configuration and backend (system.SpeedProbe), and what (~) means where
    a row has it; "" where no row holds them (a JSON written before they were recorded)."""
    seen, parts = set(), []
    for r in results:
        key, ms = (r["config"], r["backend"]), r.get("machine_probe_ms")
        if key not in seen and ms:
            seen.add(key)
            spread = r.get("machine_spread")
            parts.append(f"{r['config']} [{r['backend']}] {min(ms):.2f}-{statistics.median(ms):.2f}-{max(ms):.2f}"
                         + (f", varied {spread:.2f}x" if spread is not None and math.isfinite(spread) else ""))
    if not parts:
        return ""
    text = ("Machine speed: a fixed pure-Python loop timed between the rounds, in thread CPU ms (fastest-median-slowest; "
            "the same work every time, so a higher time is a slower CPU): " + ", ".join(parts) + ".")
    if any(speed_varied(r.get("machine_spread")) for r in results):
        text += (f"\n(~) beside samples/s and % of GEMM: that probe's slowest time was over {SPEED_SPREAD:.1f}x its "
                 "fastest in the configuration's rounds: the CPU itself changed speed meanwhile (a shared virtual "
                 "machine's does, from second to second, with no other process running), and the row's samples/s, "
                 "ratios and % of GEMM moved with it, not with the code; compare the medians of several runs.")
    return text


def json_bytes(data) -> bytes:
    """The results as strict, indented JSON (gpunn.cli.common.json_text): a figure not measured, nan in a row, is
    null (read_json reads it back as nan); NumPy numbers are floats."""
    from ..cli.common import json_text

    return json_text(data)


def _nan_for_null(obj: dict, figures) -> dict:
    for key in figures.intersection(obj):
        value = obj[key]
        if value is None:
            obj[key] = math.nan
        elif isinstance(value, list):  # spread: (lowest, highest)
            obj[key] = [math.nan if v is None else v for v in value]
    return obj


def read_json(text, figures=()):
    """A JSON that gpunn bench (``--json``) or a gpu_check hook wrote, with each row's figure not measured (null in
    the file, NaN in one written before 2026-12-02) read back as nan, the value its row held: a reader's arithmetic
    and math.isfinite take it as they took it in the run. ``figures``: the names of more figures read so (a hook's
    checks, whose NaN is a failed check: bench/gpu_report.py's HOOK_FIGURES)."""
    from .runners import NOT_MEASURED

    names = NOT_MEASURED.union(figures)
    return json.loads(text, object_hook=lambda obj: _nan_for_null(obj, names))


def write_json(data, path) -> None:
    """Write atomically (gpunn.atomic.atomic_write): a run killed mid-write keeps the last whole file."""
    from ..atomic import atomic_write

    atomic_write(path, lambda fh: fh.write(json_bytes(data)))
