"""The precision and streams hooks of bench/gpu_check.sh (bench/gpu_checks/precision.py, streams.py) on injected
measurements: the numbers each writes for bench/gpu_report.py, the verdict it gives, and what it keeps when a part
fails or its time runs out. Their first run on a GPU is the next GPU session's, which has no rerun, so their GPU
branches run here on tests/fakecupy (-m gpu) with the timings and the fits replaced where a real one would take
minutes.
"""
from __future__ import annotations

import ast
import json
import pathlib
import re
import time
import types

import numpy
import pytest

from bench_scripts import load

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _precision():
    return load("bench/gpu_checks/precision.py", "precision_hook")


# ---- bench/gpu_checks/precision.py --------------------------------------------------------------------------


def _parametrized(function, names):
    """The cases of ``function``'s @pytest.mark.parametrize(``names``, [...])."""
    (cases,) = [mark.args[1] for mark in function.pytestmark if mark.name == "parametrize" and mark.args[0] == names]
    return cases


def test_the_precision_hooks_bounds_are_the_gpu_tests_bounds():
    """The hook reports against the GPU test suite's bounds (its header): the member contract's GRADIENT_TOL and
    GPU_TOL, the
    batched GemmEx cases of tests/test_precision_gpu.py (precision, result dtype, relative error) and its R² margin.
    A bound of its own would judge the same GPU run other than the tests stage does."""
    import test_ensemble_precision

    hook = _precision()
    assert hook.MEMBER_TOL == test_ensemble_precision.GPU_TOL
    assert hook.GRADIENT_TOL == test_ensemble_precision.GRADIENT_TOL
    source = (ROOT / "tests" / "test_precision_gpu.py").read_text()
    (decorator,) = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                    and getattr(node.func, "attr", None) == "parametrize"
                    and ast.literal_eval(node.args[0]) == "precision,out_dtype,rel"]
    gpu_cases = {(ast.literal_eval(p), ast.unparse(out), ast.literal_eval(rel)) for p, out, rel in
                 (case.elts for case in decorator.args[1].elts)}
    ours = {(precision, "BF16" if result == "bf16" else "np.float32", bound)
            for precision, operands, result, bound in hook.GEMM_CASES.values()}
    assert len(ours) == 3 and ours <= gpu_cases, (ours, gpu_cases)
    assert {p: operands for p, operands, _, _ in hook.GEMM_CASES.values()} == {"bf16": "bf16", "tf32": "float32"}
    margins = set(re.findall(r'abs\(scores\["(?:tf32|bf16)"\] - scores\["float32"\]\) < ([\d.]+)', source))
    assert margins == {str(hook.R2_TOL)}


def test_the_member_part_runs_the_contracts_gpu_cases_and_judges_each_at_its_bound(monkeypatch):
    """On a GPU, every case of tests/test_ensemble_precision.py's CUDA contract per precision, its gradients at equal
    weights first (--quick: the gelu gradients and the graph case; the CPU: the gelu gradients and one eager case); a
    member at its bound is within (the test's <=); a graph case passes only where it was captured (else the reason,
    or None without a graph trainer); a case that raises is kept as its error."""
    import test_ensemble_precision as contract

    hook = _precision()
    calls = []

    def gradients(device, precision, act):
        calls.append((device, precision, act))
        if (precision, act) == ("bf16", "gelu"):
            raise RuntimeError("made to fail by the test")
        return {"tf32": 2.0**-7 if act == "tanh" else 2.0**-6, "bf16": 1e-5}[precision]

    def injected(device, precision, act, optimizer, graph):
        calls.append((device, precision, act, optimizer, graph))
        if (precision, act) == ("bf16", "tanh"):
            raise RuntimeError("made to fail by the test")
        trainer = types.SimpleNamespace(captured=precision == "bf16", reason="capture refused by the test")
        worst = {"tf32": 2e-2, "bf16": 2.5e-2 if act == "relu" else 1e-3}[precision]
        return worst, types.SimpleNamespace(graph_trainer=trainer if device == "cuda" else None)

    monkeypatch.setattr(contract, "_contract", injected)
    monkeypatch.setattr(contract, "_gradient_contract", gradients)
    got = hook.member_contract("cuda", quick=False)
    cases = _parametrized(contract.test_each_member_trains_as_its_own_mlp_on_cuda, "act,optimizer,graph")
    smooth = _parametrized(contract.test_each_member_computes_its_mlps_gradients_on_cuda, "act")
    assert calls == [call for p in ("tf32", "bf16") for call in
                     [("cuda", p, act) for act in smooth] + [("cuda", p, *case) for case in cases]]
    u = 2.0**-11
    assert got == {
        "tf32 tanh gradients": dict(precision="tf32", tolerance=16 * u, worst=16 * u, ok=True),
        "tf32 gelu gradients": dict(precision="tf32", tolerance=16 * u, worst=32 * u, ok=False),
        "tf32 relu adam": dict(precision="tf32", tolerance=2e-2, worst=2e-2, ok=True),
        "tf32 tanh momentum": dict(precision="tf32", tolerance=2e-2, worst=2e-2, ok=True),
        "tf32 gelu adamw graph": dict(precision="tf32", tolerance=2e-2, worst=2e-2, ok=False, captured=False,
                                      reason="capture refused by the test"),
        "bf16 tanh gradients": dict(precision="bf16", tolerance=2.0**-8, worst=1e-5, ok=True),
        "bf16 gelu gradients": dict(precision="bf16", tolerance=2.0**-8, error="RuntimeError: made to fail by the test",
                                    ok=False),
        "bf16 relu adam": dict(precision="bf16", tolerance=2e-2, worst=2.5e-2, ok=False),
        "bf16 tanh momentum": dict(precision="bf16", tolerance=2e-2, error="RuntimeError: made to fail by the test",
                                   ok=False),
        "bf16 gelu adamw graph": dict(precision="bf16", tolerance=2e-2, worst=1e-3, ok=True, captured=True,
                                      reason="capture refused by the test")}
    calls.clear()
    hook.member_contract("cuda", quick=True)
    assert calls == [call for p in ("tf32", "bf16") for call in
                     [("cuda", p, "gelu")] + [("cuda", p, *case) for case in cases if case[2]]]
    calls.clear()
    monkeypatch.setattr(contract, "_contract", lambda *args: (calls.append(args) or 0.0, types.SimpleNamespace(
        graph_trainer=None)))
    assert hook.member_contract("cuda", quick=True)["tf32 gelu adamw graph"] == dict(
        precision="tf32", tolerance=2e-2, worst=0.0, ok=False, captured=False, reason=None)
    calls.clear()
    hook.member_contract("cpu", quick=False)
    assert calls == [call for p in ("tf32", "bf16") for call in [("cpu", p, "gelu"), ("cpu", p, "relu", "adam", False)]]


def test_the_r2_part_fits_on_the_rest_and_scores_the_held_out_rows_of_each_precision(monkeypatch):
    """A sixth of the rows held out and scored, the rest fitted, in each precision; within the margin of float32
    either way, as tests/test_precision_gpu.py's abs(...) < 0.005."""
    import gpunn
    import gpunn.model

    hook = _precision()
    monkeypatch.setattr(gpunn.model, "_EMULATE_PRECISION_ON_CPU", True)
    seen, scores = [], {"float32": 0.9, "tf32": 0.897, "bf16": 0.894}
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, X, Y, **kw: seen.append(
        ("fit", self.precision, len(X), len(Y), kw["epochs"], kw["handle_interrupt"])))
    monkeypatch.setattr(gpunn.MLP, "score", lambda self, X, Y: seen.append(
        ("score", self.precision, len(X), len(Y))) or scores[self.precision])
    got = hook.held_out_r2("cpu", quick=False)  # the CPU's sizes
    assert got == {"rows": 3000, "layers": "16-32-1", "epochs": 2, "r2": scores,
                   "within": {"tf32": True, "bf16": False}}
    assert seen == [step for p in scores for step in (("fit", p, 2500, 2500, 2, False), ("score", p, 500, 500))]
    scores.update(tf32=0.9049, bf16=0.8951)
    assert hook.held_out_r2("cpu", quick=True)["within"] == {"tf32": True, "bf16": True}
    scores.update(tf32=0.95)
    assert hook.held_out_r2("cpu", quick=True)["within"] == {"tf32": False, "bf16": True}
    scores.update(tf32=0.9)  # a precision whose predictions overflow: score() refuses them, the others still judged
    scores["bf16"] = gpunn.ValidationNotFinite("predictions not finite")
    monkeypatch.setattr(gpunn.MLP, "score", lambda self, X, Y: (_ for _ in ()).throw(scores[self.precision])
                        if isinstance(scores[self.precision], Exception) else scores[self.precision])
    got = hook.held_out_r2("cpu", quick=True)
    assert got["within"] == {"tf32": True, "bf16": False} and got["r2"]["tf32"] == 0.9
    assert got["errors"] == {"bf16": "ValidationNotFinite: predictions not finite"}


def _members(*oks):
    return {f"{p} relu adam": {"precision": p, "tolerance": 1e-4, "worst": 0.0 if ok else 0.5, "ok": ok}
            for p, ok in zip(("tf32", "bf16"), oks)}


def test_a_precision_part_that_fails_or_lacks_time_keeps_the_others_answers(tmp_path, monkeypatch, capsys):
    """The CPU's parts (members, R²) with the hook's clock and its parts replaced: a part that raises is its error
    in precision.json and fails the hook, which goes on; one with fewer seconds left than it needs (R²: 8) is skipped,
    saying so; a member off its bound fails the hook; the R² is reported, not judged. precision.json is written
    after each part (a stage cut in the next keeps it) and at the end with the verdict and the seconds."""
    hook = _precision()
    clock = [1000.0]
    monkeypatch.setattr(hook, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    def members(device, quick):
        clock[0] += 3
        return members.got

    r2 = {"rows": 3000, "layers": "16-32-1", "epochs": 2, "r2": {"float32": 0.9, "tf32": 0.897, "bf16": 0.89},
          "within": {"tf32": True, "bf16": False}}

    def held_out_r2(device, quick):
        if isinstance(held_out_r2.got, BaseException):
            raise held_out_r2.got
        return held_out_r2.got

    monkeypatch.setattr(hook, "member_contract", members)
    monkeypatch.setattr(hook, "held_out_r2", held_out_r2)
    path = tmp_path / "precision.json"

    def run(max_seconds, members_got, r2_got):
        members.got, held_out_r2.got = members_got, r2_got
        rc = hook.main(["--device", "cpu", "--out", str(tmp_path), "--max-seconds", str(max_seconds)])
        return rc, json.loads(path.read_text()), capsys.readouterr().out

    rc, saved, out = run(11, _members(True, True), RuntimeError("made to fail by the test"))  # 8 s left: R² runs
    assert rc == 1 and saved["ok"] is False and saved["seconds"] == 3
    assert saved["r2"] == {"error": "RuntimeError: made to fail by the test"} and saved["members"] == _members(True, True)
    assert "FAIL r2: RuntimeError: made to fail by the test" in out and "precision: FAIL" in out

    rc, saved, out = run(10.9, _members(True, False), r2)  # under 8 s left: skipped
    assert "r2" not in saved and saved["skipped"] == {"gemm": "a GPU measurement", "alignment": "a GPU measurement",
                                                      "r2": "under 8 s left of --max-seconds 10.9"}
    assert rc == 1 and "FAIL member vs MLP, bf16 relu adam: worst 0.5 (bound 0.0001)" in out

    rc, saved, out = run(40, {"error": "tests/test_ensemble_precision.py not importable: ImportError: x"}, r2)
    assert rc == 1 and "FAIL member vs MLP: tests/test_ensemble_precision.py not importable: ImportError: x" in out
    assert saved["r2"] == r2 and ("held-out R² (3,000 rows, 16-32-1): float32 0.9000, tf32 0.8970, bf16 0.8900; "
                                  "tf32 within 0.005 of float32, bf16 NOT within 0.005 of float32") in out
    rc, saved, out = run(40, _members(True, True), r2)
    assert rc == 0 and saved["ok"] is True and "precision: pass" in out  # the R² is reported, not judged

    path.unlink()
    with pytest.raises(KeyboardInterrupt):  # the stage's SIGINT at its cap, in the R² part
        run(40, _members(True, True), KeyboardInterrupt())
    saved = json.loads(path.read_text())
    assert saved["members"] == _members(True, True) and "r2" not in saved and "ok" not in saved


def _gemm_recorded(monkeypatch, change=None):
    """Every batched GemmEx call the hook makes, recorded as (class, a's dims, a's dtype, out's dtype, precision);
    ``change(cls, precision, out)`` runs after the real call (or raises in place of it)."""
    from gpunn.ops import cublas

    calls = []
    for cls in (cublas.CupyBlas, cublas.CapturableBlas):
        def recorded(self, a, b, out, precision="float32", real=cls.gemm_batched, name=cls.__name__):
            calls.append((name, a.ndim, a.dtype.name, out.dtype.name, precision))
            if change is not None and change(name, precision, out, before=True):
                return out
            real(self, a, b, out, precision)
            if change is not None:
                change(name, precision, out, before=False)
            return out
        monkeypatch.setattr(cls, "gemm_batched", recorded)
    return calls


@pytest.mark.gpu
def test_the_gemm_part_runs_each_case_on_cupys_handle_then_captured_on_gpunns_and_judges_its_error(gpu, monkeypatch):
    """Each case (operands, result dtype, precision) eagerly through CupyBlas, then captured through the capture
    resources' CapturableBlas (the handle an ensemble's graph uses), X shared (a 2-D operand: stride 0). A result 5% off
    is accepted but not ok; a call that raises is refused (its error kept), not ok."""
    from gpunn import backend
    from gpunn.ops import cublas

    def change(cls, precision, out, before):
        if before and cls == "CapturableBlas" and precision == "tf32":
            raise cublas.GemmError("refused by the test")
        if not before and cls == "CupyBlas" and out.dtype.name == "float32" and precision == "bf16":
            out *= 1.05

    calls = _gemm_recorded(monkeypatch, change)
    got = _precision().gemm_calls(backend.resolve("cuda"), quick=True)
    bf16 = calls[0][2]
    assert calls == [(cls, 2, a, out, p) for a, out, p in ((bf16, "float32", "bf16"), (bf16, bf16, "bf16"),
                                                           ("float32", "float32", "tf32"))
                     for cls in ("CupyBlas", "CapturableBlas")]
    assert list(got) == [f"{case}, {mode}" for case in ("bf16 -> float32", "bf16 -> bf16", "tf32 float32 -> float32")
                         for mode in ("eager", "captured")]
    off = got["bf16 -> float32, eager"]
    assert off["accepted"] and off["rel_err"] == pytest.approx(0.05, rel=0.02) and not off["ok"]
    assert got["tf32 float32 -> float32, captured"] == {"bound": 3e-3, "accepted": False,
                                                        "error": "GemmError: refused by the test", "ok": False}
    for name in ("bf16 -> float32, captured", "bf16 -> bf16, eager", "bf16 -> bf16, captured",
                 "tf32 float32 -> float32, eager"):
        assert got[name]["accepted"] and got[name]["ok"] and got[name]["rel_err"] < got[name]["bound"], got[name]


@pytest.mark.gpu
def test_the_gemm_parts_errors_hold_where_bf16_is_stored_as_uint16_bits(gpu, monkeypatch):
    """A GPU machine without ml_dtypes stores bf16 as uint16 bits (gpunn.ops.base.bf16_dtype): the hook compares
    the products against float64 values of the bits, not of the integers."""
    from gpunn import backend
    from gpunn.ops import base

    monkeypatch.setattr(base, "bf16_dtype", lambda: base.RAW_BF16)
    calls = _gemm_recorded(monkeypatch)
    got = _precision().gemm_calls(backend.resolve("cuda"), quick=True)
    assert calls[0][2] == "uint16" and calls[2][3] == "uint16"
    assert all(e["accepted"] and e["ok"] for e in got.values()), got


@pytest.mark.gpu
def test_the_alignment_part_times_each_layout_after_a_warm_up_and_with_the_device_done(gpu, monkeypatch):
    """The packed and the padded layout each: a warm-up step, then rounds of steps each timed from an idle device to
    an idle device; a step's microseconds (two products) and packed over padded. Here a product's device time is
    3 us on the packed layout and 1 us on the padded one, and the clock sees it only at a synchronize, as on a GPU."""
    from gpunn import backend
    from gpunn.bench import runners
    from gpunn.ops import cublas

    hook = _precision()
    clock, events = {"now": 0.0, "pending": 0.0}, []

    def gemm(self, a, b, out, precision="float32"):
        events.append("g")
        assert precision == "bf16" and b.strides[0] in (5313 * b.itemsize, 5320 * b.itemsize)
        clock["pending"] += 3e-6 if b.strides[0] == 5313 * b.itemsize else 1e-6

    def synchronize(backend):
        events.append("s")
        clock["now"] += clock["pending"]
        clock["pending"] = 0.0

    def perf_counter():
        events.append("t")
        return clock["now"]

    monkeypatch.setattr(cublas.CupyBlas, "gemm_batched", gemm)
    monkeypatch.setattr(runners, "synchronize", synchronize)
    monkeypatch.setattr(hook, "time", types.SimpleNamespace(perf_counter=perf_counter))
    for quick, members, batch, calls, rounds in ((True, 4, 8, 2, 2), (False, 256, 128, 200, 5)):  # small-x256 on a GPU
        events.clear()
        got = hook.alignment(backend.resolve("cuda"), quick=quick)
        assert got == pytest.approx({"members": members, "batch": batch, "per_member": 5313, "padded": 5320,
                                     "packed_us": 6.0, "padded_us": 2.0, "packed_over_padded": 3.0})
        assert "".join(events) == ("ggs" + ("t" + "gg" * calls + "st") * rounds) * 2


@pytest.mark.gpu
def test_the_gpu_parts_each_fail_alone_and_the_last_is_skipped_under_5_s_left(gpu, tmp_path, monkeypatch, capsys):
    """On a GPU all four parts run, in order, each with the hook's clock (stopped but for the parts' own seconds):
    a gemm or alignment part that raises is its error and fails the hook, a refused call fails it too; alignment,
    the last, is skipped with under 5 s left."""
    hook = _precision()
    clock, order = [1000.0], []
    monkeypatch.setattr(hook, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    def part(name, seconds, got):
        def run(*args):
            order.append(name)
            clock[0] += seconds
            if isinstance(got, Exception):
                raise got
            return got
        monkeypatch.setattr(hook, name, run)

    r2 = {"rows": 3000, "layers": "16-32-1", "epochs": 2, "r2": {"float32": 0.9, "tf32": 0.9, "bf16": 0.9},
          "within": {"tf32": True, "bf16": True}}
    refused = {"bf16 -> bf16, captured": {"bound": 1.5e-2, "accepted": False, "error": "GemmError: refused", "ok": False}}
    aligned = {"members": 4, "batch": 8, "per_member": 5313, "padded": 5320, "packed_us": 6.0, "padded_us": 2.0,
               "packed_over_padded": 3.0}
    part("member_contract", 1, _members(True, True))
    part("held_out_r2", 5, r2)
    for max_seconds, gemm, alignment, rc in ((13, RuntimeError("gemm made to fail"), aligned, 1),
                                             (13, refused, aligned, 1),
                                             (13, {}, RuntimeError("alignment made to fail"), 1),
                                             (12.9, {}, aligned, 0)):
        order.clear()
        part("gemm_calls", 2, gemm)
        part("alignment", 1, alignment)
        assert hook.main(["--device", "cuda", "--out", str(tmp_path), "--max-seconds", str(max_seconds)]) == rc
        saved = json.loads((tmp_path / "precision.json").read_text())
        out = capsys.readouterr().out
        assert order == ["member_contract", "gemm_calls", "held_out_r2", "alignment"][:4 if max_seconds == 13 else 3]
        if isinstance(gemm, Exception):
            assert saved["gemm"] == {"error": "RuntimeError: gemm made to fail"} and saved["alignment"] == aligned
            assert "FAIL gemm: RuntimeError: gemm made to fail" in out and "packed/padded 3.00x" in out
        elif gemm:
            assert saved["gemm"] == refused and saved["alignment"] == aligned
            assert "FAIL batched GemmEx, shared X (stride 0), bf16 -> bf16, captured: REFUSED: GemmError: refused" in out
        elif isinstance(alignment, Exception):
            assert saved["alignment"] == {"error": "RuntimeError: alignment made to fail"}
            assert "FAIL alignment: RuntimeError: alignment made to fail" in out
        else:
            assert saved["skipped"] == {"alignment": "under 5 s left of --max-seconds 12.9"} and saved["ok"] is True


# ---- bench/gpu_checks/streams.py ----------------------------------------------------------------------------


def _streams():
    return load("bench/gpu_checks/streams.py", "streams_hook")


class _Batches:
    """A source of fixed batches; ``resumed`` replaces what a resume (first batch > 0) yields."""

    def __init__(self, batches, resumed=None):
        self.all, self.resumed = batches, resumed

    def batches(self, epoch, batch_size, first=0):
        yield from (self.resumed if first and self.resumed is not None else self.all[first:])


def test_a_replay_must_yield_exactly_the_batches_after_the_one_resumed_from():
    hook = _streams()
    rng = numpy.random.default_rng(0)
    batches = [(rng.standard_normal((4, 3)), rng.standard_normal((4, 1))) for _ in range(5)]
    replay, full = hook.replay_ok(_Batches(batches), 0, 4, 2)
    assert replay and len(full) == 5 and all(numpy.array_equal(a, b) for (a, _), (b, _) in zip(full, batches))
    for resumed in (batches[2:4],  # one batch short
                    batches,  # from the start, not from batch 2
                    [(batches[2][0], batches[2][1] + 1)] + batches[3:]):  # a Y that differs
        assert not hook.replay_ok(_Batches(batches, resumed), 0, 4, 2)[0]


def test_rows_are_compared_as_a_multiset_whatever_their_order():
    """sorted_rows orders by every column: rows that tie on the first come out the same from any order."""
    hook = _streams()
    X = numpy.array([[1.0, 5.0], [1.0, 2.0], [0.0, 9.0], [1.0, 2.0]])
    Y = numpy.array([[1.0], [2.0], [3.0], [4.0]])
    for order in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]):
        assert numpy.array_equal(hook.sorted_rows(X[order], Y[order]), hook.sorted_rows(X, Y))
    assert not numpy.array_equal(hook.sorted_rows(X, Y + [[0], [0], [0], [1]]), hook.sorted_rows(X, Y))


def test_a_fits_step_is_graph_only_where_captured_and_two_eager_steps_are_the_same_step():
    hook = _streams()

    def model(trainer):
        return types.SimpleNamespace(graph_trainer=trainer)

    assert hook.step_kind(model(types.SimpleNamespace(captured=True, reason=None))) == "graph"
    assert hook.step_kind(model(types.SimpleNamespace(captured=False, reason="capture failed: X"))) == \
        "eager: capture failed: X"
    assert hook.step_kind(model(types.SimpleNamespace(captured=False, reason=None))) == "eager: not captured"
    assert hook.step_kind(model(None)) == "eager: no graph trainer"
    entry = {"rows": 4, "ratio": 0.5}
    assert hook.with_steps(entry, npy="eager: a", memory="eager: b") == dict(
        entry, steps={"npy": "eager: a", "memory": "eager: b"}, same_step=True)
    assert hook.with_steps(entry, npy="graph", memory="eager: b")["same_step"] is False
    assert hook.with_steps(entry, npy="graph", memory="graph")["same_step"] is True


def test_an_epoch_fitter_trains_one_model_with_one_optimizer_its_first_call_after_a_warm_up_epoch(monkeypatch):
    """epoch_fitter: one model for all of a side's epochs, one Adam kept from fit to fit (a fresh optimizer per fit
    would capture the CUDA graph again in each timed epoch), two epochs in the first fit (the warm-up's rate is not
    the one returned), one in each later; a seed per fit, the stage's SIGINT left to end the hook."""
    import gpunn

    hook = _streams()
    made = []

    class Recorded:
        def __init__(self, *args):
            made.append(("init", args))
            self.graph_trainer = types.SimpleNamespace(captured=False, reason="made eager by the test")

        def fit(self, *train, **kwargs):
            made.append(("fit", train, kwargs))
            return {"samples_per_s": [9.0, 7.0][-kwargs["epochs"]:]}  # (the warm-up epoch is not the rate)

    monkeypatch.setattr(gpunn, "MLP", Recorded)
    args, train = ([4, 8, 1], "relu", "identity", True, "float32", "cpu", 0), ("X", "Y")
    epoch = hook.epoch_fitter(args, train, 64)
    assert made == [("init", args)]
    assert [epoch(), epoch(), epoch()] == 3 * [(7.0, "eager: made eager by the test")]
    fits = [m[2] for m in made[1:]]
    assert [m[:2] for m in made[1:]] == 3 * [("fit", train)] and [f["epochs"] for f in fits] == [2, 1, 1]
    optimizer = fits[0]["optimizer"]
    assert isinstance(optimizer, gpunn.Adam) and optimizer.lr == 1e-3
    assert fits == [dict(epochs=e, batch_size=64, optimizer=optimizer, seed=k, verbose=False, handle_interrupt=False)
                    for k, e in ((1, 2), (2, 1), (3, 1))]


def test_paired_rounds_alternate_the_sides_and_stop_where_one_more_round_would_pass_the_deadline():
    """paired_rounds: A, B, A, B, ... one epoch each per round in the order given, up to ``rounds``; after a round, one
    more only if it would end by the deadline at the last round's length (the first, with its warm-ups, longer), and
    one at least; each side's rate of each round kept in order, its step, and its last call's seconds."""
    hook = _streams()
    clock, calls = [0.0], []

    def side(name, rates, seconds):
        def epoch():
            calls.append(name)
            clock[0] += seconds.pop(0) if len(seconds) > 1 else seconds[0]
            return rates[len([c for c in calls if c == name]) - 1], f"graph {name}"
        return epoch

    def sides():
        calls.clear()
        clock[0] = 0.0
        return {"memory": side("memory", [10.0, 11.0, 12.0, 13.0, 14.0, 15.0], [4.0, 1.0]),
                "stream": side("stream", [9.0, 9.0, 12.0, 13.0, 7.0, 15.0], [4.0, 1.0])}

    rates, steps, took = hook.paired_rounds(sides(), deadline=100.0, rounds=5, clock=lambda: clock[0])
    assert calls == ["memory", "stream"] * 5 and rates == {"memory": [10.0, 11.0, 12.0, 13.0, 14.0],
                                                          "stream": [9.0, 9.0, 12.0, 13.0, 7.0]}
    assert steps == {"memory": "graph memory", "stream": "graph stream"} and took == {"memory": 1.0, "stream": 1.0}
    # rounds end at 8 (the first 8 s long), 10, 12, 14, 16: by 16 a sixth would end at 18
    rates, _, _ = hook.paired_rounds(sides(), deadline=16.0, rounds=6, clock=lambda: clock[0])
    assert calls == ["memory", "stream"] * 5 and len(rates["memory"]) == 5
    rates, _, _ = hook.paired_rounds(sides(), deadline=15.9, rounds=6, clock=lambda: clock[0])
    assert calls == ["memory", "stream"] and rates == {"memory": [10.0], "stream": [9.0]}


def test_a_throughput_entrys_ratio_is_paired_by_round_with_its_spread_not_a_ratio_of_medians():
    """paired_entry: each side's median rate, the ratio the median over rounds of the two rates' ratio in each round,
    the lowest and highest round's, and the rounds. A load burst that slows both sides of one round moves the medians'
    ratio (here 1.0 against 0.75 paired), not the paired one."""
    hook = _streams()
    rates = {"stream": [6.0, 6.0, 2.0, 9.0, 9.0], "memory": [8.0, 8.0, 3.0, 12.0, 12.0]}
    entry = hook.paired_entry(rates, "stream")
    assert entry == {"stream_samples_per_s": 6.0, "memory_samples_per_s": 8.0, "ratio": 0.75,
                     "ratio_spread": [2.0 / 3.0, 0.75], "rounds": rates, "statistic": "paired"}
    rates = {"npy": [5.0, 10.0, 4.0], "memory": [10.0, 10.0, 4.0]}  # medians 5/10, rounds 0.5, 1.0, 1.0
    assert hook.paired_entry(rates, "npy")["ratio"] == 1.0 and hook.paired_entry(rates, "npy")["ratio_spread"] == [
        0.5, 1.0]
    line = hook.throughput_line("npy", hook.with_steps({"rows": 8, **hook.paired_entry(rates, "npy")}, npy="graph",
                                                       memory="graph"))
    assert line == ("npy: 5 samples/s = 1.00x in memory (10; paired over 3 rounds, 0.50-1.00x) on 8 rows; target 0.9x "
                    "met"), line


def test_a_windows_generation_is_timed_on_the_host_after_a_warm_up_window_with_the_device_idle(monkeypatch):
    """generation_host_seconds: the window once first (compiled, constants on the device), the device idle, then the
    host seconds to issue ``chunks`` chunks of 65,536 rows made together as a synthetic source makes a window
    (Task.chunks), read before the device is waited for (what the training thread pays per window, not the
    generation itself)."""
    from gpunn import backend
    from gpunn.bench import runners

    hook = _streams()
    clock, events = [0.0], []

    class Task:
        def chunks(self, backend, chunks, dtype):
            events.append("+".join(f"c{k}" for k, _ in chunks))
            assert {rows for _, rows in chunks} == {65536} and dtype == "float32"
            clock[0] += 0.25 * len(chunks)

    def perf_counter():
        events.append("t")
        return clock[0]

    monkeypatch.setattr(runners, "synchronize", lambda backend: events.append("s"))
    monkeypatch.setattr(hook, "time", types.SimpleNamespace(perf_counter=perf_counter))
    assert hook.generation_host_seconds(backend.resolve("cpu"), Task(), chunks=3) == 0.75
    assert events == ["c0+c1+c2", "s", "t", "c0+c1+c2", "t", "s"]


@pytest.mark.gpu
def test_a_windows_generation_is_timed_on_the_gpu_with_the_synthetic_parts_task(gpu):
    """generation_host_seconds as the streams hook calls it, on a GPU only (the test above and the hook's tests at GPU
    sizes stand in for it or for the task): its task's chunks issued on the device and the device waited for, two
    chunks of 65,536 rows here. It had never run on a GPU."""
    from gpunn import datasets

    seconds = _streams().generation_host_seconds(gpu, datasets.get_task("teacher", 32, 1, seed=0), chunks=2)
    assert isinstance(seconds, float) and 0 < seconds < float("inf")


def test_a_source_whose_rows_or_resume_are_wrong_fails_its_checks_alone(tmp_path, monkeypatch, capsys):
    """The synthetic source yielding a row that is not datasets.make's and a resume from batch 0; the .npy source
    missing its last batch (its resume then one batch longer than the rest of a full pass): each check that should
    fails, by its name, and the hook fails; the source's other checks are still run (their throughput is not)."""
    from gpunn import data

    hook = _streams()
    synthetic, npy = data.synthetic, data.npy

    class Wrong:
        def __init__(self, source, kind):
            self.source, self.kind = source, kind

        def batches(self, epoch, batch_size, first=0):
            got = list(self.source.batches(epoch, batch_size, 0 if self.kind == "synthetic" else first))
            if self.kind == "synthetic":
                got[3] = (got[3][0] + 1, got[3][1])
                return iter(got)
            return iter(got[:-1] if first == 0 else got)

    monkeypatch.setattr(data, "synthetic", lambda *a, **k: Wrong(synthetic(*a, **k), "synthetic"))
    monkeypatch.setattr(data, "npy", lambda *a, **k: Wrong(npy(*a, **k), "npy"))
    assert hook.main(["--device", "cpu", "--out", str(tmp_path), "--max-seconds", "1"]) == 1
    saved = json.loads((tmp_path / "streams.json").read_text())
    assert saved["checks"] == {"synthetic_rows_are_makes": False, "synthetic_resume_replays": False,
                               "npy_rows_arrive_intact": False, "npy_resume_replays": False}
    assert not saved["errors"] and not saved["throughput"]
    out = capsys.readouterr().out
    assert "FAIL synthetic_rows_are_makes" in out and "FAIL npy_resume_replays" in out and "streams: FAIL" in out


RATES = {  # samples/s the injected fits give: (part, side) -> rate, step
    ("synthetic", "memory"): (10e6, "graph"), ("synthetic", "stream"): (9.5e6, "graph"),
    ("npy_large", "npy"): (1.9e6, "graph"), ("npy_large", "memory"): (2e6, "graph"),
    ("npy", "npy"): (6e6, "eager: made eager by the test"), ("npy", "memory"): (12e6, "graph"),
    ("synthetic_long", "stream"): (8.7e6, "graph")}


def _matches(got, want):
    """``got`` has ``want``'s keys, its numbers within float rounding of them and its other values equal."""
    assert set(got) == set(want), (got, want)
    for key, value in want.items():
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), (key, got[key], value)
    return True


def _streams_at_gpu_sizes(monkeypatch, tmp_path):
    """The streams hook at its GPU sizes on tests/fakecupy (its correctness checks for real), with every timed epoch
    (epoch_fitter's), rate and size-dependent step replaced, and the 10^9-row epoch's fit (a whole epoch, or the
    stage's SIGINT in it where ``fit.interrupt``); the hook's clock stopped but for ``fit.seconds`` per timed epoch.
    Returns (hook, what the injected pieces were called with: "fits" holds (part, side, sizes, batch, the side's
    epoch count, a source's rows) for each timed epoch, the injected epoch_fitter)."""
    import gpunn
    from gpunn.bench import stream

    hook = _streams()
    seen = {"fits": [], "npy": [], "copies": [], "generation": [], "windows": []}
    clock = [500.0]
    monkeypatch.setattr(hook, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    make, make_npy = gpunn.datasets.make, stream.make_npy

    def small_make(task, n_samples, *args, **kwargs):  # the throughput parts' 2^23 rows: never fitted here
        return make(task, 4096 if n_samples >= 1 << 20 else n_samples, *args, **kwargs)

    def small_npy(directory, rows, features, outputs, **kwargs):
        seen["npy"].append((rows, features, outputs))
        return make_npy(directory, 300, features, outputs, **kwargs)

    def timed_fit(model_args, train, batch_size):  # (epoch_fitter)
        sizes, source = model_args[0], train[0]
        memory = train[1] is not None  # arrays: the synthetic part's made rows, or a .npy pair's 300 loaded
        part = ("npy_large" if sizes[0] == 1024 else
                "synthetic" if (len(source) > 300 if memory else type(source).__name__ == "SyntheticSource") else "npy")
        side = "memory" if memory else "stream" if part == "synthetic" else "npy"
        if side == "npy":
            seen["windows"].append((source.chunk_rows, source.window))
        if memory and model_args[5].is_gpu:  # in memory is on the device, as the stream's batches are
            assert all(isinstance(a, model_args[5].xp.ndarray) for a in train), part
        epochs = []

        def epoch():
            epochs.append(1)
            seen["fits"].append((part, side, sizes, batch_size, len(epochs), getattr(source, "rows", None)))
            clock[0] += timed_fit.seconds
            if part == timed_fit.interrupt:
                raise KeyboardInterrupt
            return RATES[part, side]

        return epoch

    class LongEpoch:  # gpunn.MLP for the 10^9-row epoch (long_epoch), a whole epoch at RATES' rate
        graph_trainer = types.SimpleNamespace(captured=True, reason=None)

        def __init__(self, *args):
            self.sizes = args[0]

        def fit(self, source, Y, epochs, batch_size, **kwargs):
            seen["fits"].append(("synthetic_long", "stream", self.sizes, batch_size, epochs, source.rows))
            if timed_fit.interrupt == "synthetic_long":
                raise KeyboardInterrupt
            return {"samples_per_s": [RATES["synthetic_long", "stream"][0]]}

    def copy_bandwidth(backend, rows, columns):
        seen["copies"].append((rows, columns))
        return 20.0

    def generation_host_seconds(backend, task, chunks=16):
        seen["generation"].append((task.n_features, task.n_outputs, chunks))
        return 0.016

    timed_fit.interrupt, timed_fit.seconds = None, 0  # interrupt: the part whose fit the stage's SIGINT ends
    monkeypatch.setattr(gpunn.datasets, "make", small_make)
    monkeypatch.setattr(gpunn, "MLP", LongEpoch)
    monkeypatch.setattr(stream, "make_npy", small_npy)
    monkeypatch.setattr(stream, "copy_bandwidth", copy_bandwidth)
    monkeypatch.setattr(stream, "peak_rss_bytes", lambda: 3 * 2 ** 30)
    monkeypatch.setattr(hook, "epoch_fitter", timed_fit)
    monkeypatch.setattr(hook, "generation_host_seconds", generation_host_seconds)
    return hook, seen, timed_fit


@pytest.mark.gpu
@pytest.mark.slow
def test_the_streams_hooks_gpu_sizes_give_issue_12s_numbers_and_the_report_reads_them(gpu, tmp_path, monkeypatch,
                                                                                      capsys):
    """The parts a GPU runs at full size, never run before on a GPU (nor here: --quick stops short of them): each
    configuration timed as the docstring says, each ratio stream (or .npy) over memory, the copy and generation
    shares from the same run's rates, the 10^9-row stream against the synthetic part's in-memory rate, with 'started'
    saved before its epoch; and bench/gpu_report.py's issue 12 rows from that streams.json."""
    from gpunn import backend

    hook, seen, timed_fit = _streams_at_gpu_sizes(monkeypatch, tmp_path)
    replay_ok, checked = hook.replay_ok, []

    def on_the_device(source, epoch, batch_size, first):  # the checks read the GPU pipelines, not the host's
        checked.append(all(isinstance(a, backend.resolve("cuda").xp.ndarray) for a in next(source.batches(epoch,
                                                                                                      batch_size))))
        return replay_ok(source, epoch, batch_size, first)

    monkeypatch.setattr(hook, "replay_ok", on_the_device)
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")  # a source left to the default device would be read on the host
    out_dir = tmp_path / "out"
    assert hook.main(["--device", "cuda", "--out", str(out_dir), "--max-seconds", "200"]) == 0
    assert checked == [True, True]
    saved = json.loads((out_dir / "streams.json").read_text())
    assert saved["checks"] == dict.fromkeys(["synthetic_rows_are_makes", "synthetic_resume_replays",
                                             "npy_rows_arrive_intact", "npy_resume_replays"], True)
    n, large, small = 1 << 23, [1024, 4096, 4096, 4096, 4096, 1], [32, 256, 256, 1]
    # each part's two sides alternate, one epoch each per round: the synthetic part's LONG_ROUNDS (the 10^9-row stream
    # follows, and takes the time), the others' ROUNDS; the 10^9-row epoch between two of the in-memory side's
    assert seen["fits"] == (
        [("synthetic", side, small, 4096, k, rows) for k in (1, 2, 3)
         for side, rows in (("memory", None), ("stream", n))]
        + [("npy_large", side, large, 8192, k, rows) for k in range(1, 6) for side, rows in (("npy", 300),
                                                                                              ("memory", None))]
        + [("npy", side, small, 4096, k, rows) for k in range(1, 6) for side, rows in (("npy", 300), ("memory", None))]
        + [("synthetic", "memory", small, 4096, 4, None), ("synthetic_long", "stream", small, 4096, 1, 10 ** 9),
           ("synthetic", "memory", small, 4096, 5, None)]), seen["fits"]
    assert seen["npy"] == [(1 << 18, 1024, 1), (n // 4, 32, 1)] and seen["windows"][0] == (16384, 2)
    assert seen["copies"] == [(2 * 16384, 1025), (16 * 65536, 33)] and seen["generation"] == [(32, 1, 16)]
    t = saved["throughput"]
    graphs = {"memory": "graph", "stream": "graph"}
    assert _matches(t["synthetic"], dict(
        rows=n, stream_samples_per_s=9.5e6, memory_samples_per_s=10e6, ratio=0.95, steps=graphs, same_step=True,
        rounds={"stream": [9.5e6] * 3, "memory": [10e6] * 3}, ratio_spread=[0.95, 0.95], statistic="paired",
        generation_host_s_per_window=0.016, generation_host_share=0.016 / (16 * 65536 / 10e6)))
    copy_s = 2 * 16384 * 1025 * 4 / 20e9
    assert _matches(t["npy_large"], dict(
        rows=1 << 18, window_rows=32768, config="1024-4096-4096-4096-4096-1, batch 8192", npy_samples_per_s=1.9e6,
        memory_samples_per_s=2e6, ratio=0.95, steps={"npy": "graph", "memory": "graph"}, same_step=True,
        rounds={"npy": [1.9e6] * 5, "memory": [2e6] * 5}, ratio_spread=[0.95, 0.95], statistic="paired",
        h2d_gbps_pinned=20.0, window_copy_ms=1e3 * copy_s, window_train_ms=1e3 * 32768 / 2e6,
        copy_share=copy_s * 2e6 / 32768))
    assert _matches(t["npy"], dict(
        rows=n // 4, npy_samples_per_s=6e6, memory_samples_per_s=12e6, ratio=0.5, same_step=False,
        rounds={"npy": [6e6] * 5, "memory": [12e6] * 5}, ratio_spread=[0.5, 0.5], statistic="paired",
        steps={"npy": "eager: made eager by the test", "memory": "graph"}, h2d_gbps_pinned=20.0))
    assert _matches(t["synthetic_long"], dict(
        rows=10 ** 9, stream_samples_per_s=8.7e6, memory_samples_per_s=10e6, ratio=0.87, peak_rss_gib=3.0,
        steps=dict(graphs, memory_before="graph", memory_after="graph"), same_step=True,
        memory_before_after=[10e6, 10e6], ratio_spread=[0.87, 0.87],
        statistic="bracketed"))
    assert saved["started"] == {"synthetic_long": None} and "skipped" not in saved
    out = capsys.readouterr().out
    assert ("synthetic_long: 8,700,000 samples/s = 0.87x in memory (10,000,000; against the in-memory epochs just "
            "before and after it, 0.87-0.87x) on 1,000,000,000 rows; target 0.9x NOT met") in out
    assert ("npy: 6,000,000 samples/s = 0.50x in memory (12,000,000; paired over 5 rounds, 0.50-0.50x) on 2,097,152 "
            "rows; target 0.9x NOT judged: npy's step eager: made eager by the test, memory's step graph, pinned H2D "
            "20.0 GB/s") in out
    assert ("npy_large: 1,900,000 samples/s = 0.95x in memory (2,000,000; paired over 5 rounds, 0.95-0.95x) on "
            "262,144 rows (1024-4096-4096-4096-4096-1, batch 8192); target 0.9x met, pinned H2D 20.0 GB/s; a window's "
            "copy 6.7 ms = 41.0% of its training (16 ms)") in out
    assert "synthetic: 9,500,000 samples/s = 0.95x in memory (10,000,000; paired over 3 rounds, 0.95-0.95x) on " \
        "8,388,608 rows; target 0.9x met; issuing a window's generation takes 15.3% of its training" in out

    from test_gpu_check import RUNS, _report, _targets

    rows = _targets(_report(RUNS / "h200-2026-11-28", "--add", f"streams={out_dir / 'streams.json'}", capsys=capsys))
    long = rows["a 10^9-row synthetic stream ≥ 0.9× the in-memory throughput"]
    assert long == ("8,700,000 samples/s = 0.87× in memory (10,000,000; the median of its ratios to the in-memory "
                    "epochs just before and after it, 0.87-0.87×) on 1,000,000,000 rows, peak RSS 3.00 GiB",
                    "**not met**"), long
    npy_row = next(v for k, v in rows.items() if k.startswith(".npy on the large"))
    assert npy_row == ("0.95× in memory (paired by round over 5 rounds, 0.95-0.95×; 1024-4096-4096-4096-4096-1, batch "
                       "8192, 262,144 rows); pinned H2D 20.0 GB/s, a window's copy 6.7 ms = 41.0% of its training",
                       "met"), npy_row


@pytest.mark.gpu
@pytest.mark.slow
def test_the_streams_hook_runs_the_parts_its_time_allows_and_saves_a_long_stream_before_its_epoch(gpu, tmp_path,
                                                                                                  monkeypatch):
    """With the clock moved 3 s by each timed epoch alone, --max-seconds less those is what each part finds left: the
    synthetic and npy parts need more than 12 s, npy_large (at GPU sizes) more than 25; a part's rounds go on while one
    more ends before --max-seconds less 5 s and the later parts' needs (1 s more each). The 10^9-row stream runs where
    at the synthetic stream's rate 4 x 2^23 rows fit before its stop (5 s before --max-seconds, and twice the
    in-memory epoch's 3 s before that for the epoch after it), the epoch before it counted, else is skipped, saying how
    long 10^9 rows take. A stage cut in its epoch leaves 'started' (rows, when, how long it should take, when it
    stops) in streams.json; one cut in an earlier part leaves the parts before it."""
    hook, seen, timed_fit = _streams_at_gpu_sizes(monkeypatch, tmp_path)
    timed_fit.seconds = 3
    # the correctness checks' rows, not compared here (the test above does): fast, each check then False
    monkeypatch.setattr(hook, "replay_ok", lambda *args: (True, [(numpy.zeros((1, 8)), numpy.zeros((1, 2)))]))

    def run(max_seconds, name, *more):
        out = tmp_path / name
        seen["fits"].clear()
        rc = hook.main(["--device", "cuda", "--out", str(out), "--max-seconds", str(max_seconds), *more])
        return rc, json.loads((out / "streams.json").read_text())

    def rounds(part):
        return max((f[4] for f in seen["fits"] if f[0] == part), default=0)

    rc, saved = run(12, "12")
    assert saved["throughput"] == {} and "skipped" not in saved
    rc, saved = run(31, "31")  # npy_large finds 25 s left, under its 25+
    assert set(saved["throughput"]) == {"synthetic", "npy"} and (rounds("synthetic"), rounds("npy")) == (1, 3)
    rc, saved = run(31.5, "31.5")  # each part leaves the later ones theirs
    assert set(saved["throughput"]) == {"synthetic", "npy_large", "npy"}
    assert (rounds("synthetic"), rounds("npy_large"), rounds("npy")) == (1, 1, 2)
    # the second GPU call's parts: the synthetic part's 3 rounds end at 18 s; at 35 s the stream stops at 24 s, and
    # after the epoch before it (3 s) 3 s are left: 28.5M rows, under 4 x 2^23
    long = ("--parts", "synthetic,synthetic_long")
    rc, saved = run(35, "35", *long)
    assert set(saved["throughput"]) == {"synthetic"} and rounds("synthetic") == 3
    # the seconds 10^9 rows need (its stop's 5 s and the epoch after it's 6 s in them) and the seconds there were
    assert saved["skipped"] == {"synthetic_long": "10^9 rows need about 116 s; this hook had 3.0 s left for them"}
    rc, saved = run(36, "36", *long)  # 4 s: 38M rows
    assert set(saved["throughput"]) == {"synthetic", "synthetic_long"} and "skipped" not in saved
    assert [f[:2] + (f[4],) for f in seen["fits"][-3:]] == [("synthetic", "memory", 4), ("synthetic_long", "stream", 1),
                                                            ("synthetic", "memory", 5)]
    timed_fit.interrupt = "synthetic_long"
    with pytest.raises(KeyboardInterrupt):
        run(200, "cut")
    saved = json.loads((tmp_path / "cut" / "streams.json").read_text())
    # after 3 + 5 + 5 rounds of two 3 s epochs and the in-memory epoch before it; stopping 5 + 6 s before the end
    assert saved["started"] == {"synthetic_long": {"rows": 10 ** 9, "at_s": 81.0, "expected_s": 105.3,
                                                   "stops_at_s": 189.0}}
    assert "synthetic_long" not in saved["throughput"] and set(saved["throughput"]) == {"synthetic", "npy_large", "npy"}
    timed_fit.interrupt = "npy"  # in a part before it: streams.json holds what was saved after each part before
    with pytest.raises(KeyboardInterrupt):
        run(200, "cut in npy")
    saved = json.loads((tmp_path / "cut in npy" / "streams.json").read_text())
    assert set(saved["throughput"]) == {"synthetic", "npy_large"} and len(saved["checks"]) == 4


@pytest.mark.gpu
def test_a_failed_synthetic_part_leaves_one_error_and_no_generation_timing_or_long_stream(gpu, tmp_path, monkeypatch):
    """The generation timing and the 10^9-row stream run only against the synthetic part's rates: with that part
    failed, neither runs, and streams.json holds its one error (mut17c's L24: a generation part run anyway added a
    second, a NameError on the synthetic entry it never had)."""
    hook, seen, timed_fit = _streams_at_gpu_sizes(monkeypatch, tmp_path)
    monkeypatch.setattr(hook, "replay_ok", lambda *args: (True, [(numpy.zeros((1, 8)), numpy.zeros((1, 2)))]))
    injected = hook.epoch_fitter

    def failing(model_args, train, batch_size):
        epoch = injected(model_args, train, batch_size)

        def failing_epoch():
            rate = epoch()
            if seen["fits"][-1][:2] == ("synthetic", "stream"):
                raise RuntimeError("the stream's fit failed")
            return rate

        return failing_epoch

    monkeypatch.setattr(hook, "epoch_fitter", failing)
    out = tmp_path / "out"
    assert hook.main(["--device", "cuda", "--out", str(out), "--max-seconds", "200"]) == 1
    saved = json.loads((out / "streams.json").read_text())
    assert saved["errors"] == {"synthetic": "RuntimeError: the stream's fit failed"}, saved["errors"]
    assert seen["generation"] == [] and "synthetic_long" not in {f[0] for f in seen["fits"]}
    assert set(saved["throughput"]) == {"npy_large", "npy"}


@pytest.mark.slow
def test_the_cpu_dry_run_times_its_own_small_sizes_and_no_long_stream(tmp_path, monkeypatch):
    """--device cpu (gpu_check.sh's dry run): the plumbing at CPU sizes (2^15 rows, the large configuration as
    64-64-64-1 in windows of 2 x 1,024), no copy bandwidth or generation timing, no 10^9-row stream."""
    from gpunn.bench import stream

    hook = _streams()
    fits, made = [], []
    monkeypatch.setattr(hook, "time", types.SimpleNamespace(monotonic=lambda: 500.0))
    monkeypatch.setattr(hook, "epoch_fitter", lambda args, train, batch: lambda: fits.append(
        (args[0], batch, train[0].rows if train[1] is None else len(train[0]), train[1] is None)) or (1e6, "eager: cpu"))
    make_npy = stream.make_npy
    monkeypatch.setattr(stream, "make_npy", lambda d, rows, *a, **k: made.append((rows, *a)) or make_npy(d, rows, *a, **k))
    monkeypatch.setattr(stream, "copy_bandwidth", lambda *a: pytest.fail("a copy timed on the CPU"))
    monkeypatch.setattr(hook, "generation_host_seconds", lambda *a: pytest.fail("generation timed on the CPU"))
    assert hook.main(["--device", "cpu", "--out", str(tmp_path), "--max-seconds", "600"]) == 0
    small, large = [32, 256, 256, 1], [64, 64, 64, 1]
    # (the clock stopped: every part's ROUNDS rounds)
    assert fits == (5 * [(small, 4096, 1 << 15, False), (small, 4096, 1 << 15, True)]
                    + 5 * [(large, 512, 1 << 13, True), (large, 512, 1 << 13, False)]
                    + 5 * [(small, 4096, 1 << 13, True), (small, 4096, 1 << 13, False)]), fits
    assert made == [(1 << 13, 64, 1), (1 << 13, 32, 1)]
    saved = json.loads((tmp_path / "streams.json").read_text())
    assert set(saved["throughput"]) == {"synthetic", "npy_large", "npy"} and "started" not in saved
    assert saved["throughput"]["npy_large"]["window_rows"] == 2 * 1024


def test_the_parts_named_must_be_the_hooks_and_the_long_stream_needs_the_synthetic_rates(tmp_path, capsys):
    hook = _streams()
    for parts in ("synthetic_long", "npy,bogus"):
        with pytest.raises(SystemExit):
            hook.main(["--device", "cpu", "--out", str(tmp_path), "--parts", parts])
        assert "--parts: a comma-separated choice of synthetic, npy_large, npy, synthetic_long (synthetic_long with " \
            "synthetic)" in capsys.readouterr().err
    assert not (tmp_path / "streams.json").exists()


def test_an_ensemble_peak_column_without_a_base_says_so_rather_than_a_bug():
    """'% of peak' is NaN where the GEMM baseline was n/a and the square GEMMs were not timed (the budget spent,
    226007e): the hook says the column has no base, and blames gpunn.bench.ensemble only where a base was measured."""
    hook = load("bench/gpu_checks/ensemble.py", "ensemble_hook")
    row = {"fraction_of_peak": float("nan"), "gemm_na": "no GEMM baseline here", "peak_gflops": 0.0, "gemm_gflops": 0}
    assert not hook.peak_ok([row]) and "has no base" in hook.why_no_peak([row])
    row.update(peak_gflops=100.0, gemm_na=None, gemm_gflops=200.0, fraction_of_peak=0.5)
    assert not hook.peak_ok([row]) and "a bug in gpunn.bench.ensemble" in hook.why_no_peak([row])
