"""gpunn's environment variables (gpunn.environment): each refuses a value it does not take where it is read, naming
itself, the value and what it takes; blank is the default; README's table and `gpunn info` cover every one."""
import os
import re
import warnings
from pathlib import Path

import numpy
import pytest
from mirror_ranks import as_rank

from gpunn import backend, cli, environment
from gpunn.distributed.comm import DistributedError, _timeout_from_env
from gpunn.ops import cpu, denormals, ensemble, fit_threads, gemm, ops_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean(monkeypatch):
    """None of gpunn's variables set (the tests' cache directory kept: conftest's)."""
    for name in environment.NAMES:
        if name != "GPUNN_CACHE_DIR":
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _fused():
    return ops_for(backend.resolve("cpu")).fused


def _member_threads():
    return ensemble.CpuEnsembleOps(cpu.CpuOps(threads=1)).threads


def _blas_threads():
    with fit_threads.member_blas_threads(numpy):  # a refusal before any limit is set
        return fit_threads.blas_threads_setting()


BAD = [  # (variable, value, where gpunn reads it, what the refusal says it takes)
    ("GPUNN_CPU_THREADS", "abc", cpu.default_threads, "a whole number of threads, 1 or more (unset: 1 "),
    ("GPUNN_CPU_THREADS", "0", cpu.default_threads, "a whole number of threads, 1 or more"),
    ("GPUNN_CPU_THREADS", "-2", _member_threads, "a whole number of threads, 1 or more"),
    ("GPUNN_CPU_THREADS", "1.5", _member_threads, "every usable core for an Ensemble's member groups)"),
    ("GPUNN_ENSEMBLE_BLAS_THREADS", "-1", _blas_threads, "a whole number of BLAS threads, 0 or more (0: "),
    ("GPUNN_ENSEMBLE_BLAS_THREADS", "one", _blas_threads, "unset: 1)"),
    # digits 0-9 alone: int() took each of these (1_0 as 10 threads, +3 as 3, other scripts' digits)
    *[("GPUNN_CPU_THREADS", v, cpu.default_threads, "a whole number of threads, 1 or more") for v in
      ["1_0", "+3", " +3 ", "\u0663", "\uff11\uff10"]],
    *[("GPUNN_ENSEMBLE_BLAS_THREADS", v, _blas_threads, "a whole number of BLAS threads, 0 or more") for v in
      ["0_0", "+0", "\u0662"]],
    ("GPUNN_FUSED_KERNELS", "maybe", _fused, "on or off: 1, true, yes or on; 0, false, no or off (unset: on)"),
    ("GPUNN_FUSED_KERNELS", "2", _fused, "on or off: "),
    ("GPUNN_FLUSH_DENORMALS", "maybe", denormals.enabled, "on or off: 1, true, yes or on; 0, false, no or off"),
    ("GPUNN_FLUSH_DENORMALS", "-1", lambda: denormals.flush_denormals().__enter__(), "on or off: "),
    ("GPUNN_GEMM", ",", gemm.requested, "auto, one of numpy, blis, mkl, or a comma list of them (unknown: no name; "
                                        "unset: numpy)"),
    ("GPUNN_GEMM", " ON ", gemm.requested, "(unknown: on; unset: numpy)"),
    ("GPUNN_DIST_TIMEOUT", "nan", lambda: _timeout_from_env(None), "a positive number of seconds in the digits 0-9 "
                                                                   "and one point at most, or inf (how long"),
    # plain decimal or inf: float() took each of these (1_0 as 10 s, infinity and 1e400 as inf, other scripts' digits)
    *[("GPUNN_DIST_TIMEOUT", v, lambda: _timeout_from_env(None), "a positive number of seconds") for v in
      ["1_0", "+5", "1e3", "infinity", " Infinity ", "-inf", "\u0661\u0660", "\uff15", "0.0", "1" + "0" * 400, "."]],
]


@pytest.mark.parametrize("name, value, read, takes", BAD,
                         ids=[f"{n}={v!r}" if len(v) < 20 else f"{n}={v[:3]}...({len(v)} chars)" for n, v, _, _ in BAD])
def test_a_bad_value_is_refused_where_it_is_read_naming_the_variable_the_value_and_what_it_takes(
        clean, name, value, read, takes):
    # before: GPUNN_CPU_THREADS=abc failed with int()'s words, 0 and -2 were taken as 1; GPUNN_FUSED_KERNELS=maybe
    # and GPUNN_FLUSH_DENORMALS=maybe were taken as on; GPUNN_GEMM=, was NumPy alone
    clean.setenv(name, value)
    with pytest.raises((ValueError, DistributedError)) as refused:
        read()
    assert str(refused.value).startswith(f"{name}={value!r} is not ") and takes in str(refused.value)


GOOD = [  # (variable, value, where gpunn reads it, what it comes to)
    *[("GPUNN_FUSED_KERNELS", v, _fused, on) for v, on in
      [(None, True), ("", True), ("  ", True), ("1", True), (" TRUE ", True), ("Yes", True), ("on", True),
       ("0", False), ("False", False), ("NO", False), (" off ", False)]],
    *[("GPUNN_FLUSH_DENORMALS", v, denormals.enabled, on) for v, on in [(None, True), (" ", True), ("On", True),
                                                                          ("0", False), ("OFF", False)]],
    *[("GPUNN_CPU_THREADS", v, cpu.default_threads, n) for v, n in [(None, 1), (" ", 1), (" 3 ", 3), ("1", 1),
                                                                      ("10", 10), ("007", 7)]],
    ("GPUNN_CPU_THREADS", " 3 ", _member_threads, 3),
    ("GPUNN_CPU_THREADS", " ", _member_threads, cpu.usable_cores()),
    *[("GPUNN_ENSEMBLE_BLAS_THREADS", v, fit_threads.blas_threads_setting, n) for v, n in
      [(None, 1), ("", 1), (" 0 ", 0), ("2", 2)]],
    *[("GPUNN_GEMM", v, lambda: gemm.requested()[0], names) for v, names in
      [(None, ["numpy"]), (" ", ["numpy"]), (" Auto ", list(gemm.LIBRARIES)), ("numpy,", ["numpy"])]],
    *[("GPUNN_DIST_TIMEOUT", v, lambda: _timeout_from_env(None), s) for v, s in
      [(None, 300.0), (" ", 300.0), (" 2.5 ", 2.5), ("inf", float("inf")), (" INF ", float("inf")), ("007", 7.0),
       (".5", 0.5), ("5.", 5.0), ("1" + "0" * 12, 1e12)]],
    *[("GPUNN_DEVICE", v, lambda: backend.resolve("auto").name, "cpu") for v in (" ", " CPU ", "cpu:0")],
]


@pytest.mark.parametrize("name, value, read, expected", GOOD, ids=[f"{n}={v!r}" for n, v, _, _ in GOOD])
def test_good_values_keep_working_and_blank_is_the_default(clean, name, value, read, expected):
    # a blank GPUNN_DEVICE or GPUNN_DIST_TIMEOUT was refused, where an empty one was the default
    if value is not None:
        clean.setenv(name, value)
    if name == "GPUNN_DEVICE":
        clean.setattr(backend, "probe_cuda", lambda: (None, 0, "no CuPy here"))
    assert read() == expected


REFUSALS = {  # a bad value of each variable gpunn refuses, and the one line each command gives for it
    "GPUNN_DEVICE": ("tpu", "GPUNN_DEVICE='tpu' is not auto, cpu, cuda or cuda:N (unset: auto)"),
    "GPUNN_GEMM": ("bogus", "GPUNN_GEMM='bogus' is not auto, one of numpy, blis, mkl, or a comma list of them "
                            "(unknown: bogus; unset: numpy)"),
    "GPUNN_CPU_THREADS": ("abc", "GPUNN_CPU_THREADS='abc' is not a whole number of threads, 1 or more (unset: 1 for "
                                 "a model's CPU kernels, every usable core for an Ensemble's member groups)"),
    "GPUNN_ENSEMBLE_BLAS_THREADS": ("-1", "GPUNN_ENSEMBLE_BLAS_THREADS='-1' is not a whole number of BLAS threads, 0 "
                                          "or more (0: NumPy's BLAS as it is; unset: 1)"),
    "GPUNN_FUSED_KERNELS": ("maybe", "GPUNN_FUSED_KERNELS='maybe' is not on or off: 1, true, yes or on; 0, false, no "
                                     "or off (unset: on)"),
    "GPUNN_FLUSH_DENORMALS": ("2", "GPUNN_FLUSH_DENORMALS='2' is not on or off: 1, true, yes or on; 0, false, no or "
                                   "off (unset: on)"),
    "GPUNN_DIST_TIMEOUT": ("0", "GPUNN_DIST_TIMEOUT='0' is not a positive number of seconds in the digits 0-9 and one "
                                "point at most, or inf (how long a rank waits in a collective before it aborts the job; "
                                "unset: 300)"),
}
MISSING = "/nonexistent-gpunn-input"  # each command below, with good settings, fails on this path
COMMANDS = {
    "train": ["train", "--data", f"{MISSING}/t.csv", "--target", "y", "--epochs", "1", "--device", "cpu"],
    "train --config": ["train", "--config", f"{MISSING}/c.toml"],
    "train --resume": ["train", "--resume", f"{MISSING}/r.npz"],
    "predict": ["predict", f"{MISSING}/m.npz", f"{MISSING}/x.npy", f"{MISSING}/p.npy", "--device", "cpu"],
    "sweep": ["sweep", "--data", f"{MISSING}/t.csv", "--target", "y", "--epochs", "1", "--lr", "1e-3", "--device",
              "cpu"],
    "sweep --resume": ["sweep", "--resume", f"{MISSING}/dir"],
    "bench": ["bench", "--config", "small", "--device", "cpu", "--json", f"{MISSING}/b.json"],
}
CASES = [(command, name) for command in COMMANDS for name in REFUSALS]


def test_the_commands_fail_on_the_missing_path_with_good_settings(clean, capsys):
    for command, argv in COMMANDS.items():
        assert cli.main(argv) == 2, command
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith(f"gpunn {argv[0]}: error: ") and MISSING in err[-1], command


@pytest.mark.parametrize("command, name", CASES, ids=[f"{c}-{n}" for c, n in CASES])
def test_every_command_refuses_a_bad_setting_as_it_starts_before_it_reads_a_file(clean, capsys, command, name):
    # before: train read its data first (GPUNN_CPU_THREADS, _FUSED_KERNELS, _GEMM were refused after its data
    # line); GPUNN_ENSEMBLE_BLAS_THREADS only as an ensemble trained, GPUNN_DIST_TIMEOUT only under mpiexec;
    # GPUNN_DEVICE not at all under --device cpu; predict and bench read their files first
    value, refusal = REFUSALS[name]
    clean.setenv(name, value)
    status = cli.main(COMMANDS[command])
    out, err = capsys.readouterr()
    assert (status, out, err.splitlines()) == (2, "", [f"gpunn {COMMANDS[command][0]}: error: {refusal}"])


def test_several_bad_settings_are_refused_together_in_one_line(clean, capsys):
    for name, (value, _) in REFUSALS.items():
        clean.setenv(name, value)
    assert cli.main(COMMANDS["train"]) == 2
    assert capsys.readouterr().err.splitlines() == ["gpunn train: error: " + "; ".join(r for _, r in REFUSALS.values())]


LAUNCHER_REFUSAL = "PMI_SIZE='\u00b2' is not a whole number (an MPI launcher's variable: how many processes it started)"


@pytest.mark.parametrize("command", ["train", "predict", "sweep --resume"])
def test_an_mpi_launchers_variable_that_is_no_whole_number_is_refused_as_a_command_starts(clean, capsys, command):
    # before: PMI_SIZE='²' (str.isdigit takes it) failed every command with a bare ValueError of int()'s, a traceback
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        clean.delenv(name, raising=False)
    clean.setenv("PMI_SIZE", "\u00b2")
    status = cli.main(COMMANDS[command])
    out, err = capsys.readouterr()
    assert (status, out, err.splitlines()) == (2, "", [f"gpunn {COMMANDS[command][0]}: error: {LAUNCHER_REFUSAL}"])
    clean.setenv("GPUNN_CPU_THREADS", "abc")  # with a GPUNN_ variable's refusal: one line, the launcher's after
    assert cli.main(COMMANDS[command]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gpunn {COMMANDS[command][0]}: error: {REFUSALS['GPUNN_CPU_THREADS'][1]}; {LAUNCHER_REFUSAL}"]


LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_RANK",
                      "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID",
                      "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


def test_a_bad_rank_variable_is_refused_once_though_the_local_rank_falls_back_on_it(clean, capsys):
    # with no local rank set, the local rank is read from the rank's variable: its refusal was said twice in one line
    for name in LAUNCHER_VARIABLES:
        clean.delenv(name, raising=False)
    clean.setenv("PMI_RANK", "\u00b2")
    assert cli.main(COMMANDS["train"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "gpunn train: error: PMI_RANK='\u00b2' is not a whole number (an MPI launcher's variable: this process's rank)"]


@pytest.mark.parametrize("argv", [COMMANDS["train"], ["train", "--bogus"]], ids=["start check", "option error"])
def test_a_bad_rank_variable_beside_a_launchers_size_is_refused_in_one_line_not_a_traceback(clean, capsys, argv):
    # PMI_SIZE=2 made the run a launched one, whose lines name the rank: reading PMI_RANK='x' for that raised again
    # in _with_rank, and the refusal became two tracebacks (status 1); an option error likewise
    for name in LAUNCHER_VARIABLES:
        clean.delenv(name, raising=False)
    clean.setenv("PMI_SIZE", "2")
    clean.setenv("PMI_RANK", "x")
    refusal = "PMI_RANK='x' is not a whole number (an MPI launcher's variable: this process's rank)"
    if argv[-1] == "--bogus":
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        status, refusal = done.value.code, "unrecognized arguments: --bogus (see gpunn train --help)"
    else:
        status = cli.main(argv)
    assert (status, capsys.readouterr().err.splitlines()) == (2, [f"gpunn train: error: {refusal}"])


def test_gpunn_info_shows_a_launchers_variable_it_refuses_as_an_error_line_and_exits_2(clean, capsys):
    # info neither refused nor showed one (status 0) where every other command refuses it as it starts
    for name in LAUNCHER_VARIABLES:
        clean.delenv(name, raising=False)
    clean.setenv("PMI_SIZE", "2")  # taken: not listed (a launcher sets many; only a refused one is)
    clean.setenv("PMI_RANK", "x")
    clean.setenv("SLURM_LOCALID", "\u0661")
    clean.setenv("GPUNN_CPU_THREADS", "abc")
    clean.setenv("GPUNN_FUSED_KERNELS", "off")
    status = cli.main(["info", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("environment "))
    block = [lines[start][16:]] + [line[16:] for line in lines[start + 1:] if line.startswith(" " * 16)]
    assert status == 2 and block == [  # the GPUNN_ refusals, the launcher's, then the GPUNN_ variables taken
        f"error: {REFUSALS['GPUNN_CPU_THREADS'][1]}",
        "error: PMI_RANK='x' is not a whole number (an MPI launcher's variable: this process's rank)",
        "error: SLURM_LOCALID='\u0661' is not a whole number (an MPI launcher's variable: this process's rank on its "
        "node)",
        f"GPUNN_FUSED_KERNELS=off, GPUNN_CACHE_DIR={os.environ['GPUNN_CACHE_DIR']}"]
    clean.delenv("GPUNN_CPU_THREADS")
    clean.delenv("SLURM_LOCALID")
    as_rank(clean, 0)  # PMI_RANK=0; the ranks' command check, which info now takes part in, over a mirrored world
    assert cli.main(["info", "--device", "cpu"]) == 0
    assert "PMI_SIZE" not in capsys.readouterr().out


def test_a_bad_setting_leaves_help_and_the_command_lines_own_errors_first(clean, capsys):
    clean.setenv("GPUNN_CPU_THREADS", "abc")
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--help"])
    assert done.value.code == 0 and "usage: gpunn train" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        cli.main(["predict", "--bogus", "m.npz", "x.npy", "p.npy"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert "--bogus" in err and "GPUNN_CPU_THREADS" not in err


def test_the_start_check_reads_each_variable_gpunn_refuses_in_the_readers_own_words(clean):
    from gpunn.cli.common import setting_readers

    readers = setting_readers()
    assert list(readers) == [n for n in environment.NAMES if n not in ("GPUNN_CACHE_DIR", "GPUNN_DEBUG")]
    assert list(readers) == list(REFUSALS)
    for name, (value, refusal) in REFUSALS.items():
        clean.setenv(name, value)
        with pytest.raises((ValueError, DistributedError)) as refused:
            readers[name]()
        assert str(refused.value) == refusal
        clean.delenv(name)


def _hook(name):
    def main(argv):
        from bench_scripts import load

        return load(f"bench/gpu_checks/{name}.py", f"{name}_hook").main(argv)
    return main


def _bench(name):
    def main(argv):
        import importlib

        return importlib.import_module(f"gpunn.bench.{name}").main(argv)
    return main


TOOLS = {  # the entry points beside gpunn's commands: (their prog, main, argv writing into OUT, what they write)
    "bench.kernels": ("python -m gpunn.bench.kernels", _bench("kernels"),
                      ["--device", "cpu", "--sizes", "10", "--repeat", "1", "--json", "OUT"], "OUT"),
    "bench.stream": ("python -m gpunn.bench.stream", _bench("stream"), ["make-npy", "OUT", "--rows", "100"],
                     "OUT/X.npy"),
    **{f"hook {name}": (f"{name}.py", _hook(name), ["--device", "cpu", "--out", "OUT"], "OUT")
       for name in ("ensemble", "nccl", "precision", "streams", "clip")},
}
TOOL_CASES = [(tool, name) for tool in TOOLS for name in ("GPUNN_DEVICE", "GPUNN_CPU_THREADS", "GPUNN_DIST_TIMEOUT")]


@pytest.mark.parametrize("tool, name", TOOL_CASES, ids=[f"{t}-{n}" for t, n in TOOL_CASES])
def test_the_benchmarks_and_gpu_check_hooks_refuse_a_bad_setting_as_they_start(clean, capsys, tmp_path, tool, name):
    # before: python -m gpunn.bench.stream made its data and its model first and then failed with a traceback where a
    # variable was read; bench.kernels and the hooks measured on past a variable they did not read (a hook's parts
    # each failing on one they read, into its JSON)
    import sys

    prog, main, argv, written = TOOLS[tool]
    out = tmp_path / "out"
    value, refusal = REFUSALS[name]
    clean.setenv(name, value)
    clean.setattr(sys, "argv", [prog])  # argparse's prog for the hooks (python bench/gpu_checks/NAME.py)
    with pytest.raises(SystemExit) as stopped:
        main([str(out) if a == "OUT" else a for a in argv])
    assert stopped.value.code == 2
    assert capsys.readouterr() == ("", f"{prog}: error: {refusal}\n")
    assert not Path(written.replace("OUT", str(out))).exists()  # stopped before it did anything
    with pytest.raises(SystemExit) as helped:  # --help still comes first
        main(["--help"])
    assert helped.value.code == 0 and capsys.readouterr().out.startswith("usage: ")


def test_the_benchmarks_refuse_an_mpi_launchers_variable_that_is_no_whole_number_as_they_start(clean, capsys,
                                                                                                 tmp_path):
    import sys

    prog, main, argv, written = TOOLS["bench.stream"]
    clean.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    clean.setenv("PMI_SIZE", "\u00b2")
    clean.setattr(sys, "argv", [prog])
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path) if a == "OUT" else a for a in argv])
    assert (stopped.value.code, capsys.readouterr()) == (2, ("", f"{prog}: error: {LAUNCHER_REFUSAL}\n"))
    assert not Path(written.replace("OUT", str(tmp_path))).exists()


@pytest.mark.parametrize("name", REFUSALS)
def test_every_refusal_quotes_the_value_as_it_was_set_spaces_included(clean, name):
    # before: GPUNN_DEVICE=' tpu ' was quoted less its spaces ('tpu'), where the other variables quote theirs as set
    from gpunn.cli.common import setting_readers

    value = f" {REFUSALS[name][0]} "
    clean.setenv(name, value)
    with pytest.raises((ValueError, DistributedError)) as refused:
        setting_readers()[name]()
    assert str(refused.value).startswith(f"{name}={value!r}")


def test_the_library_refuses_a_setting_where_it_reads_it_and_leaves_those_it_does_not_read(clean):
    """gpunn.fit checks no variable up front: a fit on the CPU does not read GPUNN_DIST_TIMEOUT (a data-parallel
    run's) nor, for one model, GPUNN_ENSEMBLE_BLAS_THREADS; GPUNN_DEVICE is not read where the code names its
    device. A variable it reads is refused there, as the model is built."""
    import gpunn

    x = numpy.random.default_rng(0).standard_normal((32, 3)).astype(numpy.float32)
    y = x[:, :1].copy()
    for name in ("GPUNN_DIST_TIMEOUT", "GPUNN_ENSEMBLE_BLAS_THREADS", "GPUNN_DEVICE"):
        clean.setenv(name, REFUSALS[name][0])
    gpunn.fit(gpunn.MLP([3, 4, 1], device="cpu", seed=0), x, y, epochs=1, batch_size=16, verbose=False)
    clean.setenv("GPUNN_FUSED_KERNELS", "maybe")
    with pytest.raises(ValueError, match=re.escape(REFUSALS["GPUNN_FUSED_KERNELS"][1])):
        gpunn.MLP([3, 4, 1], device="cpu", seed=0)


def test_an_ensemble_on_a_gpu_does_not_read_gpunn_ensemble_blas_threads_which_sets_the_cpus_blas(clean, fake_cupy):
    """GPUNN_ENSEMBLE_BLAS_THREADS sets NumPy's BLAS threads while an Ensemble trains on the CPU; on a GPU it does
    nothing, and a GPU ensemble's fit refused a bad value all the same. The library reads it, and so refuses it,
    only where it acts, as GPUNN_FLUSH_DENORMALS (read on the CPU alone); the command line refuses both anywhere."""
    import gpunn

    x = numpy.random.default_rng(0).standard_normal((32, 3))
    y = x[:, :1].copy()
    for name in ("GPUNN_ENSEMBLE_BLAS_THREADS", "GPUNN_FLUSH_DENORMALS"):
        clean.setenv(name, REFUSALS[name][0])
    on_gpu = gpunn.Ensemble([3, 4, 1], n_models=2, device="cuda", seed=0)
    assert on_gpu.fit(x, y, epochs=1, batch_size=16, verbose=False)["loss"]
    assert gpunn.MLP([3, 4, 1], device="cuda", seed=0).fit(x, y, epochs=1, batch_size=16, verbose=False)["loss"]
    clean.delenv("GPUNN_FLUSH_DENORMALS")
    with pytest.raises(environment.SettingError, match=re.escape(REFUSALS["GPUNN_ENSEMBLE_BLAS_THREADS"][1])):
        gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0).fit(x, y, epochs=1, batch_size=16, verbose=False)


def test_gpunn_info_shows_each_refused_variable_as_an_error_line_and_exits_2(clean, capsys):
    bad = {"GPUNN_DEVICE": "tpu", "GPUNN_GEMM": "bogus", "GPUNN_CPU_THREADS": "0",
           "GPUNN_ENSEMBLE_BLAS_THREADS": "-1", "GPUNN_FUSED_KERNELS": "maybe", "GPUNN_FLUSH_DENORMALS": "2",
           "GPUNN_DIST_TIMEOUT": "0"}
    for name, value in bad.items():
        clean.setenv(name, value)
    clean.setenv("GPUNN_DEBUG", "maybe")
    status = cli.main(["info", "--device", "cpu"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("environment "))
    block = [lines[start][16:]] + [line[16:] for line in lines[start + 1:] if line.startswith(" " * 16)]
    assert status == 2 and lines[-1] == "device          cpu (NumPy)"  # every line still printed
    assert [re.match(r"error: (GPUNN_\w+)=", line).group(1) for line in block[:-1]] == list(bad)  # NAMES' order
    # it did not say what unset means, as the others do, and was worded NAME='value': reason
    assert block[0] == "error: GPUNN_DEVICE='tpu' is not auto, cpu, cuda or cuda:N (unset: auto)"
    assert block[2].startswith("error: GPUNN_CPU_THREADS='0' is not a whole number of threads, 1 or more")
    # GPUNN_DEBUG is taken as on, with a note; the tests' cache directory is fine
    assert block[-1] == f"GPUNN_CACHE_DIR={os.environ['GPUNN_CACHE_DIR']}, GPUNN_DEBUG=maybe (taken as on)"
    assert "note: GPUNN_DEBUG='maybe' is not on or off: 1, true, yes or on; 0, false, no or off (unset: off); " \
           "taken as on" in err
    rows = {line[:16].rstrip(): line[16:] for line in lines if not line.startswith(" ")}
    assert rows["cpu subnormals"].startswith("error: GPUNN_FLUSH_DENORMALS='2' is not on or off")  # info failed whole
    assert rows["cpu kernels"].startswith("error: GPUNN_FUSED_KERNELS='maybe'")


def test_gpunn_info_lists_the_variables_set_and_exits_0_when_gpunn_takes_them(clean, capsys):
    clean.setenv("GPUNN_FUSED_KERNELS", " Off ")
    clean.setenv("GPUNN_CPU_THREADS", "2")
    clean.setenv("GPUNN_DEBUG", "")  # blank: as unset, not listed
    assert cli.main(["info", "--device", "cpu"]) == 0
    environment_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("environment "))
    assert environment_line[16:] == (f"GPUNN_CPU_THREADS=2, GPUNN_FUSED_KERNELS=Off, "
                                     f"GPUNN_CACHE_DIR={os.environ['GPUNN_CACHE_DIR']}")
    clean.delenv("GPUNN_CACHE_DIR")
    clean.delenv("GPUNN_FUSED_KERNELS")
    clean.delenv("GPUNN_CPU_THREADS")
    from gpunn.cli import info

    assert info.settings() == "no GPUNN_ variable set"


def test_gpunn_info_shows_an_off_word_as_it_was_set(clean, capsys):
    # before: any off word read as =0 on the cpu kernels and cpu subnormals lines (GPUNN_FUSED_KERNELS=0 for off)
    pytest.importorskip("numba")
    clean.setenv("GPUNN_FUSED_KERNELS", " off ")
    clean.setenv("GPUNN_FLUSH_DENORMALS", "False")
    assert cli.main(["info", "--device", "cpu"]) == 0
    rows = {line[:16].rstrip(): line[16:] for line in capsys.readouterr().out.splitlines() if line[:1] != " "}
    assert rows["cpu kernels"] == "off: GPUNN_FUSED_KERNELS=off; the NumPy reference runs"
    assert rows["cpu subnormals"] == "off (GPUNN_FLUSH_DENORMALS=False)" or not denormals.supported()
    assert rows["environment"] == (f"GPUNN_FUSED_KERNELS=off, GPUNN_FLUSH_DENORMALS=False, "
                                   f"GPUNN_CACHE_DIR={os.environ['GPUNN_CACHE_DIR']}")


@pytest.mark.parametrize("value, on, noted", [("maybe", True, True), ("2", True, True), (" Yes ", True, False),
                                              ("OFF", False, False), (" ", False, False)])
def test_a_gpunn_debug_neither_on_nor_off_is_taken_as_on_with_a_note(clean, value, on, noted):
    from gpunn import _startup

    clean.setenv("GPUNN_DEBUG", value)
    clean.setattr("sys.argv", ["gpunn", "train"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.debug_requested(["train"]) is on and _startup._debug_requested() is on
    notes = [str(w.message) for w in caught if issubclass(w.category, environment.SettingWarning)]
    assert notes == ([f"GPUNN_DEBUG={value!r} is not on or off: 1, true, yes or on; 0, false, no or off (unset: "
                      "off); taken as on"] if noted else [])


def test_a_csv_index_gpunn_cannot_write_is_a_note_naming_the_directory(clean, tmp_path):
    pytest.importorskip("pyarrow")
    from gpunn import data
    from gpunn.data.tables import cache_directory

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    clean.setenv("GPUNN_CACHE_DIR", str(not_a_directory))  # the index was silently not kept
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i}\n" for i in range(50)))
    with pytest.warns(environment.SettingWarning, match=re.escape(f"the index of {path} is not kept: "
                                                                  f"{not_a_directory}/csv-index: ") +
                      r".*set GPUNN_CACHE_DIR to a directory gpunn may write"):
        source = data.csv(path, target="y", device="cpu")
    assert sum(source.chunk_sizes) == 50  # the source works without its index
    clean.setenv("GPUNN_CACHE_DIR", "~/gpunn-cache")  # quoted in a shell, the ~ is gpunn's to expand
    assert cache_directory() == os.path.expanduser("~/gpunn-cache")
    clean.setenv("GPUNN_CACHE_DIR", " ")
    clean.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == str(tmp_path / "xdg" / "gpunn")
    clean.setenv("XDG_CACHE_HOME", " ")  # blank too: as unset, not a directory named " "
    clean.setenv("HOME", str(tmp_path / "home"))
    assert cache_directory() == str(tmp_path / "home" / ".cache" / "gpunn")


def test_a_csv_index_whose_write_fails_leaves_no_temp_file_in_the_cache(clean, tmp_path, monkeypatch):
    """A write of the index that fails part-way (a full disk) is a note, and its temp file is removed: it stayed in
    the cache directory, one more at each run that parsed the file. The index kept is private (mode 0o600)."""
    pytest.importorskip("pyarrow")
    import errno
    import json
    import stat

    from gpunn import data

    clean.setenv("GPUNN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i}\n" for i in range(50)))

    def disk_full(record, fh):
        fh.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as full:
        full.setattr(json, "dump", disk_full)
        with pytest.warns(environment.SettingWarning, match=r"is not kept: .*No space left on device"):
            data.csv(path, target="y", device="cpu")
    assert os.listdir(tmp_path / "cache" / "csv-index") == []
    data.csv(path, target="y", device="cpu")
    [kept] = os.listdir(tmp_path / "cache" / "csv-index")
    assert kept.endswith(".json") and stat.S_IMODE(os.stat(tmp_path / "cache" / "csv-index" / kept).st_mode) == 0o600


def test_every_variable_gpunn_reads_is_in_names_readmes_table_and_gpunn_infos_check():
    code = "\n".join(p.read_text() for p in (ROOT / "gpunn").rglob("*.py"))
    read = set(re.findall(r"GPUNN_[A-Z0-9_]*[A-Z0-9]", code))
    assert read == set(environment.NAMES)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(GPUNN_\w+)` \| (.+?) \| (.+?) \| (.+?) \|$", section, re.M)
    assert [name for name, *_ in rows] == list(environment.NAMES)  # each with what it takes, its default, its use
    assert all(takes and unset and sets for _, takes, unset, sets in rows)


@pytest.mark.gpu
def test_the_gpu_paths_read_gpunn_device_and_gpunn_fused_kernels_by_the_same_rules(clean, gpu):
    """backend.resolve and ops_for's CUDA branch read their variables through gpunn.environment, as the CPU's readers
    do, but each test of them ran without a GPU (GPUNN_DEVICE naming one only where none is found). On a GPU
    machine: GPUNN_DEVICE wins over auto alone, in any case and spacing, and a GPU the machine lacks is refused
    naming the variable; GPUNN_FUSED_KERNELS off gives a model the CUDA ops' unfused expressions, which train as the
    fused kernels do (test_gpu_agreement.py: float64 steps agree to 1e-10), and a value neither on nor off is refused
    there too."""
    import gpunn
    from gpunn.ops.cuda import CupyOps

    for value in (" CUDA ", "gpu", "cuda:0"):
        clean.setenv("GPUNN_DEVICE", value)
        assert backend.resolve("auto") == gpu and backend.resolve(None) == gpu, value
    clean.setenv("GPUNN_DEVICE", "cpu")
    assert backend.resolve("auto") is backend.CPU and backend.resolve("cuda") == gpu  # named devices keep theirs
    count = backend.probe_cuda()[1]
    clean.setenv("GPUNN_DEVICE", f"cuda:{count}")
    with pytest.raises(backend.DeviceError, match=rf"^GPUNN_DEVICE='cuda:{count}': device 'cuda:{count}' was "
                                                  rf"requested but only {count} CUDA device\(s\) exist"):
        backend.resolve("auto")
    clean.delenv("GPUNN_DEVICE")

    XY = numpy.random.default_rng(0).standard_normal((64, 4))
    losses = {}
    for value in (None, " Off "):
        if value is not None:
            clean.setenv("GPUNN_FUSED_KERNELS", value)
        model = gpunn.MLP([3, 8, 1], device=gpu, dtype="float64", seed=0)  # float64: fused and not agree to ~1e-12
        assert type(model.ops) is CupyOps and model.ops.fused == (value is None), value
        losses[value] = model.fit(XY[:, :3], XY[:, 3:], epochs=2, batch_size=32, verbose=False)["loss"]
    numpy.testing.assert_allclose(losses[" Off "], losses[None], rtol=1e-8)
    clean.setenv("GPUNN_FUSED_KERNELS", "maybe")
    for make in (lambda: ops_for(gpu), lambda: gpunn.MLP([3, 8, 1], device=gpu)):
        with pytest.raises(environment.SettingError, match=r"^GPUNN_FUSED_KERNELS='maybe' is not on or off: "):
            make()
