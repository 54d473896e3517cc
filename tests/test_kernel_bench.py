"""The kernel benchmark (python -m gpunn.bench.kernels) keeps working (run tiny, on the CPU; its timings are not
asserted, the arithmetic on them is, with the timer replaced)."""
import json
import sys

import pytest
import waiting

from gpunn.bench import kernels
from gpunn.ops.member_rates import HYPER_FIELDS


def test_kernel_bench_runs_and_reports_every_op_and_gpu_report_prints_its_rows(tmp_path):
    """As gpu_check.sh's kernels stage runs it (its CPU dry run's sizes), and the report's Kernels table from its JSON,
    the ensemble's Adam row (K = 256 members of 16 parameters here) among them."""
    from bench_scripts import load

    out = tmp_path / "kernels.json"
    proc = waiting.run([sys.executable, "-m", "gpunn.bench.kernels", "--device", "cpu", "--sizes", "12",
                        "--repeat", "2", "--json", str(out)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["op"] for r in rows} >= {"adam step", "backward relu from A", "loss + dA[L]", "ensemble adam step, K=256"}
    assert all(r["gb_per_s"] > 0 and r["elements"] == 4096 for r in rows)
    assert "device-to-device copy" in proc.stdout and "ensemble adam step, K=256" in proc.stdout
    report = load("bench/gpu_report.py", "gpu_report")
    printed = report.details(report.Run(str(tmp_path)))
    assert "| adam step | 2^12 |" in printed and "| ensemble adam step, K=256 | 2^12 |" in printed, printed


def test_an_option_given_twice_is_refused_as_gpunns_commands_refuse_it(capsys):
    """argparse kept the last value without a word (--sizes 10 --sizes 11 measured 2^11 alone), where every gpunn
    command refuses a repeated option (cli.common.refuse_repeated); an abbreviation is refused, naming the option."""
    for argv, said in ((["--device", "cpu", "--repeat", "1", "--sizes", "10", "--sizes", "11"],
                        "--sizes is given twice (10, then 11), and only the last would count: give it once; several "
                        "values go in one comma-separated list: --sizes 10,11"),
                       (["--device", "cpu", "--rep", "1"], "--rep: options are written in full: did you mean --repeat?")):
        with pytest.raises(SystemExit) as exited:
            kernels.main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m gpunn.bench.kernels: error: ") and said in err, err


def test_a_size_under_one_row_or_not_a_number_is_refused_in_one_line(capsys):
    """--sizes 8 (2^8 elements, under one row of 1,024) measured rows of 0 elements at 0 GB/s without a word, and
    --sizes x was a ValueError traceback: both refused as gpunn's commands refuse, status 2, before anything runs."""
    for sizes, said in (("12,8,9", "--sizes 12,8,9: 8, 9 are under 10: each op's data is laid out in rows of 1,024 "
                                   "elements (2^10), so a smaller size would measure none"),
                        ("12,x", "--sizes '12,x': give comma-separated whole numbers, the log2 element counts")):
        with pytest.raises(SystemExit) as exited:
            kernels.main(["--device", "cpu", "--repeat", "1", "--sizes", sizes])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m gpunn.bench.kernels: error: ") and said in err, err


def test_the_stream_benchmark_refuses_a_repeated_or_shortened_option(capsys):
    """python -m gpunn.bench.stream by the same rules (cli.common.Parser.parse_strictly): argparse kept the last
    --rows of two and ran --epoch as --epochs."""
    from gpunn.bench import stream

    for argv, said in ((["synthetic", "--rows", "10", "--rows", "20"],
                        "--rows is given twice (10, then 20), and only the last would count: give it once"),
                       (["synthetic", "--epoch", "1"], "--epoch: options are written in full: did you mean --epochs?")):
        with pytest.raises(SystemExit) as exited:
            stream.main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m gpunn.bench.stream: error: ") and said in err, err


def test_the_stream_benchmark_in_memory_without_rows_says_it_needs_them(capsys):
    """synthetic-memory has no row count of its own (the suite passes --memory-rows): without --rows it ended in
    a traceback, 'n_samples must be a positive integer, got None', from datasets.make."""
    from gpunn.bench import stream

    with pytest.raises(SystemExit) as exited:
        stream.main(["synthetic-memory", "--device", "cpu"])
    assert exited.value.code == 2
    assert "synthetic-memory needs --rows" in capsys.readouterr().err


@pytest.mark.parametrize("module,argv", [("kernels", ["--device", "auto", "--sizes", "10", "--repeat", "1"]),
                                         ("stream", ["synthetic", "--rows", "10", "--device", "auto"])])
def test_the_benchmarks_show_the_cpu_fallback_as_gpunns_commands_do(module, argv, monkeypatch, capsys):
    """As `gpunn bench` does (cli.common.notes_shown): the warning read `<frozen runpy>:88: CPUFallbackWarning: gpunn:
    running on CPU ...` under python -m, its stack level landing in runpy; and each main puts the caller's
    warnings.showwarning back, as gpunn's main does (it is called in process too)."""
    import importlib
    import warnings

    from gpunn.backend import CPUFallbackWarning

    bench = importlib.import_module(f"gpunn.bench.{module}")

    def run(*args, **kwargs):
        warnings.warn(CPUFallbackWarning("gpunn: running on CPU (stand-in)"))
        return {}

    monkeypatch.setattr(bench, "run", run)
    monkeypatch.setattr(bench, "table", lambda result: "", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning
        bench.main(argv)
        assert warnings.showwarning is shown
    assert "note: running on CPU (stand-in)" in capsys.readouterr().err.splitlines()


class _RecordedOps:
    """Ops that record each call's arguments instead of computing."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.setdefault(name, args)


def test_each_op_counts_the_fewest_bytes_it_must_move_on_data_of_the_size_asked():
    """Every input read once, every output written once; the data is n elements laid out as (n/cols) x cols,
    random (a second moment, Adam's v, non-negative). The ensemble row steps the same n parameters as K rows, each
    member with Adam's defaults (its K x HYPER_FIELDS settings table read once)."""
    import numpy

    from gpunn import backend
    from gpunn.ops.member_rates import ACTIVE, BETA1, BETA2, LR, MOMENTUM, WEIGHT_DECAY

    ops, member_ops = _RecordedOps(), _RecordedOps()
    got = kernels.cases(backend.CPU, ops, 4096, "float64", cols=64, members=16, member_ops=member_ops)
    size = 8 * 4096
    assert {name: nbytes for name, _, nbytes in got} == {
        "forward relu (A=g(Z+b), in place)": 2 * size, "forward gelu (keep Z, write A)": 3 * size,
        "backward relu from A": 3 * size, "backward tanh from A": 3 * size, "backward gelu from Z": 3 * size,
        "loss + dA[L]": 3 * size, "bias gradient (column sums)": size, "sgd momentum step": 5 * size,
        "adam step": 7 * size, "ensemble adam step, K=16": 7 * size + 16 * HYPER_FIELDS * 8}
    for _, run_op, _ in got:
        run_op()
    Z, b = ops.calls["bias_activation"][:2]
    assert Z.shape == (64, 64) and Z.dtype == numpy.float64 and b.shape == (64,) and Z.std() > 0.5
    w, g, m, v = ops.calls["adam_step"][:4]
    assert w.shape == v.shape == (4096,) and (v >= 0).all() and v.max() > 0
    W, G, M, V, rates, eps, step, decoupled = member_ops.calls["adam_step"]
    assert W.shape == G.shape == M.shape == V.shape == (16, 256) and W.flags.c_contiguous and (V >= 0).all()
    assert rates.host.shape == (16, HYPER_FIELDS) and \
        (rates.host[:, [LR, BETA1, BETA2, ACTIVE]] == [1e-3, 0.9, 0.999, 1]).all()
    assert (rates.host[:, [WEIGHT_DECAY, MOMENTUM]] == 0).all()
    assert (eps, step, decoupled) == (1e-8, 10, False)  # as the one-model row's


def test_each_row_runs_the_op_its_name_says_with_that_activation_and_keeps_z_as_it_says():
    """A row that ran another activation or layout than its name says would print that op's bandwidth under the
    name."""
    from gpunn import backend
    from gpunn.activations import Activation

    calls = []

    class Ops:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(
                (name, *[a.name for a in args if isinstance(a, Activation)], *[a for a in args if isinstance(a, bool)],
                 *kwargs.values()))

    for _, run_op, _ in kernels.cases(backend.CPU, Ops(), 4096, "float64", cols=64, members=16, member_ops=Ops())[:5]:
        run_op()
    assert calls == [("bias_activation", "relu", False), ("bias_activation", "gelu", True),
                     ("activation_backward", "relu", True), ("activation_backward", "tanh", True),
                     ("activation_backward", "gelu", False)]


@pytest.mark.gpu
def test_a_gpu_rows_seconds_are_the_fused_sides_and_its_speedup_the_unfused_over_the_fused(gpu, monkeypatch):
    """On the GPU each op runs fused (CupyOps' kernels) and unfused (the reference's CuPy expressions): the row's
    seconds and GB/s are the fused side's, unfused_seconds the other's, fused_speedup unfused over fused."""
    monkeypatch.setattr(kernels, "cases", lambda backend, ops, n, dtype: [("op", "fused" if ops.fused else "unfused",
                                                                          10**9)])
    monkeypatch.setattr(kernels, "timer", lambda backend, side, repeat: {"fused": 0.5, "unfused": 2.0}[side])
    monkeypatch.setattr(kernels, "copy_seconds", lambda backend, xp, n, dtype, repeat: (1.0, 4 * 10**9, "cudaMemcpy"))
    (row,) = kernels.run("cuda", (12,), "float32", repeat=1)["rows"]
    assert (row["seconds"], row["unfused_seconds"], row["fused_speedup"]) == (0.5, 2.0, 4.0)
    assert (row["gb_per_s"], row["copy_gb_per_s"], row["fraction_of_copy"]) == (2.0, 4.0, 0.5)


class _Given:
    """Member ops that keep what adam_step was given (and w, m, v as they were) before stepping with ``real``."""

    def __init__(self, real):
        self.real = real

    def adam_step(self, *args):
        self.args, self.before = args, [a.copy() for a in (args[0], args[2], args[3])]
        return self.real.adam_step(*args)


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_the_ensemble_row_is_one_member_adam_launch_that_steps_each_member_as_one_models_adam(gpu, monkeypatch, fused):
    """On the GPU the ensemble row's fused side is one launch of kernels/ensemble.cu's member_adam_step (K = 256
    members: an Ensemble's launch shape), not the generic EnsembleOps it falls back to where a kernel does not apply
    (the unfused side, which launches no member kernel); either steps member k's row as one model's Adam steps it
    (float64, all members alike: the same numbers as the one-model Adam over the whole). run() gives the row."""
    import numpy

    from gpunn.ops import ensemble_ops_for
    from gpunn.ops import kernels as compiled
    from gpunn.ops.cuda import CupyOps

    launched, get_kernel = [], compiled.get_kernel
    monkeypatch.setattr(compiled, "get_kernel", lambda name, *args: (launched.append(name), get_kernel(name, *args))[1])
    with gpu.use():
        ops = CupyOps(fused=fused)
        member_ops = _Given(ensemble_ops_for(ops))
        name, step, nbytes = kernels.cases(gpu, ops, 1 << 12, "float64", member_ops=member_ops)[-1]
        assert name == "ensemble adam step, K=256" and nbytes == 7 * 8 * 4096 + 256 * HYPER_FIELDS * 8
        launched.clear()
        step()
        assert launched == (["member_adam_step"] if fused else []), launched
        W, G, M, V = member_ops.args[:4]
        assert W.shape == (256, 16) and not numpy.array_equal(W.get(), member_ops.before[0].get())
        w, m, v = (a.reshape(-1) for a in member_ops.before)  # stepped here as one model's 4096 parameters
        CupyOps(fused=False).adam_step(w, G.reshape(-1), m, v, 1e-3, 0.9, 0.999, 1e-8, 10, 0.0, False)
        for got, want in zip((W, M, V), (w, m, v)):  # to rounding (a GPU's FMAs, its pow): a wrong lr, step or
            want = want.get()  # row is off by ~1e-3
            numpy.testing.assert_allclose(got.reshape(-1).get(), want, rtol=1e-12, atol=1e-12 * abs(want).max())
    if fused:  # the benchmark's own row: both sides timed
        launched.clear()
        rows = kernels.run("cuda", (12,), "float32", repeat=1)["rows"]
        row = next(r for r in rows if r["op"] == "ensemble adam step, K=256")
        assert "member_adam_step" in launched and row["gb_per_s"] > 0 and row["fused_speedup"] > 0, row


def test_the_cpu_timer_runs_once_to_warm_up_then_takes_the_median(monkeypatch):
    from gpunn import backend

    clock, durations = [0.0], iter([0.5, 5.0, 6.0, 7.0, 8.0, 9.0])

    def op():  # takes the next duration on a clock of its own: no real time measured
        clock[0] += next(durations)

    monkeypatch.setattr(kernels.time, "perf_counter", lambda: clock[0])
    assert kernels.timer(backend.CPU, op, 5) == 7.0
    assert next(durations, None) is None


def test_the_copy_is_the_faster_of_the_copy_kernel_and_cudamemcpy(monkeypatch):
    import types

    import numpy

    for times, how in (([2.0, 1.0], "cudaMemcpy"), ([1.0, 2.0], "copy kernel")):
        seconds = iter(times)
        monkeypatch.setattr(kernels, "timer", lambda backend, fn, repeat: next(seconds))
        assert kernels.copy_seconds(types.SimpleNamespace(is_gpu=True), numpy, 1024, "float32", 3) == \
            (1.0, 2 * 4 * 1024, how)  # read + write
    seconds = iter([3.0])
    assert kernels.copy_seconds(types.SimpleNamespace(is_gpu=False), numpy, 1024, "float64", 3) == \
        (3.0, 2 * 8 * 1024, "copy kernel")


def test_the_rows_are_each_ops_bandwidth_against_the_copys_at_each_size(monkeypatch, tmp_path, capsys):
    """With every timing 0.5 s (timer replaced): each size's ten ops, GB/s = bytes / seconds, the copy's the
    same way, their ratio; the JSON rewritten after each size and at the end, in the dtype asked."""
    saved = []
    monkeypatch.setattr(kernels, "timer", lambda backend, fn, repeat: 0.5)
    real_replace = kernels.Path.replace
    monkeypatch.setattr(kernels.Path, "replace",
                        lambda self, target: (saved.append(json.loads(self.read_text())), real_replace(self, target))[1])
    out = tmp_path / "k.json"
    kernels.main(["--device", "cpu", "--sizes", "10,11", "--dtype", "float64", "--repeat", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["dtype"] == "float64" and len(result["rows"]) == 20
    assert [len(s["rows"]) for s in saved] == [10, 20, 20]  # after each size, then the whole
    for r in result["rows"]:
        n = r["elements"]
        copy = 2 * 8 * n / 0.5 / 1e9
        assert r["seconds"] == 0.5 and r["copy_gb_per_s"] == pytest.approx(copy) and r["copy_by"] == "copy kernel"
        table = 256 * HYPER_FIELDS * 8 if r["op"] == "ensemble adam step, K=256" else 0  # the members' settings
        assert (r["gb_per_s"] * 0.5 * 1e9 - table) / (8 * n) in (1, 2, 3, 5, 7) and r["dtype"] == "float64"
        assert r["fraction_of_copy"] == pytest.approx(r["gb_per_s"] / copy) and "fused_speedup" not in r
    assert sorted({r["elements"] for r in result["rows"]}) == [1024, 2048]
    assert "device-to-device copy at 2^10: " in capsys.readouterr().out


def test_the_table_gives_each_rows_size_as_a_power_of_two_and_one_copy_line_per_size():
    result = {"device": "cuda:0", "dtype": "float32", "rows": [
        {"op": "adam step", "elements": 1024, "gb_per_s": 10.0, "copy_gb_per_s": 20.0, "fraction_of_copy": 0.5},
        {"op": "adam step", "elements": 2048, "gb_per_s": 30.0, "copy_gb_per_s": 40.0, "fraction_of_copy": 0.75,
         "fused_speedup": 1.5, "copy_by": "cudaMemcpy"}]}
    lines = kernels.table(result).splitlines()
    assert lines[0].startswith("elementwise ops on cuda:0, float32")
    assert lines[2].split() == ["adam", "step", "10", "10.0", "20.0", "50%", "-"]
    assert lines[3].split() == ["adam", "step", "11", "30.0", "40.0", "75%", "1.50x"]
    assert lines[4:] == ["device-to-device copy at 2^10: 20.0 GB/s (read + write, copy kernel)",
                         "device-to-device copy at 2^11: 40.0 GB/s (read + write, cudaMemcpy)"]
