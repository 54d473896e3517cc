"""``gpunn info``: its lines, in order and aligned, the device it resolves (status 2 where it cannot) and the CPU
kernels' line (more in tests/test_cli.py's test_info_*)."""
import warnings

import numpy
import pytest

from gpunn import cli
from gpunn.cli import info

KEYS = ["gpunn", "python", "numpy", "cpu", "blas", "cpu gemm", "cpu subnormals", "cupy", "cuda devices", "mpi",
        "cpu kernels", "environment", "device"]


def _info(capsys, *argv):
    status = cli.main(["info", *argv])
    lines = capsys.readouterr().out.splitlines()
    rows = {}
    for line in lines:
        if not line.startswith(" "):  # a value's further lines are indented to its column
            key, _, value = line.partition("  ")
            rows[key.rstrip()] = value.lstrip()
    return status, lines, rows


def test_info_shows_every_line_in_order_with_the_values_in_one_column(capsys, monkeypatch):
    from gpunn import backend

    monkeypatch.setattr(backend, "probe_cuda", lambda: (None, 0, "no CuPy here"))
    status, lines, rows = _info(capsys, "--device", "cpu")
    assert status == 0 and list(rows) == KEYS
    column = len("cpu subnormals") + 2
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines if not line.startswith(" "))
    assert (rows["cupy"], rows["cuda devices"]) == ("unavailable: no CuPy here", "0")
    step = next(line for line in lines if line.startswith(" "))  # the CPU GEMM's products, measured now
    assert step.startswith(" " * 16 + "default net's step: ") and "ᵀ" in step  # the transposed product too
    assert rows["device"] == "cpu (NumPy)"
    assert rows["cpu"].endswith((", 1 core", " cores"))  # the model name before: tests/test_bench.py's cpu_name test


def test_the_mpi_line_names_mpi4py_the_mpi_wheel_and_the_mpiexec_found_or_where_it_is_or_how_to_install(
        monkeypatch, tmp_path):
    """A data-parallel user's setup check (is mpi4py there? which mpiexec runs?) had no line in gpunn info, and an
    environment not activated finds no mpiexec while the mpich wheel's sits beside its Python."""
    import importlib.metadata
    import importlib.util
    import shutil
    import sys

    versions = {"mpi4py": "4.1.2", "mpich": "5.0.2"}

    def version(name):
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(importlib.metadata, "version", version)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))  # (no mpiexec beside it yet)
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/mpi/bin/mpiexec")
    assert info.mpi_info() == "mpi4py 4.1.2, mpich 5.0.2, mpiexec /opt/mpi/bin/mpiexec"
    (bin_dir / "mpiexec").touch()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert info.mpi_info() == (f"mpi4py 4.1.2, mpich 5.0.2, mpiexec {bin_dir / 'mpiexec'}, not on the PATH (activate "
                               "the environment, or call it by that path)")
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/mpi/bin/mpiexec")  # a system MPI's first on the PATH
    assert info.mpi_info() == (f"mpi4py 4.1.2, mpich 5.0.2, mpiexec /opt/mpi/bin/mpiexec, not the one beside Python "
                               f"({bin_dir / 'mpiexec'}), which is the one to launch with where mpi4py runs on its MPI "
                               "(another MPI's mpiexec is refused)")
    monkeypatch.setattr(shutil, "which", lambda name: str(bin_dir / "mpiexec"))  # the environment activated
    assert info.mpi_info() == f"mpi4py 4.1.2, mpich 5.0.2, mpiexec {bin_dir / 'mpiexec'}"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (bin_dir / "mpiexec").unlink()
    assert info.mpi_info().endswith(", no mpiexec on the PATH (pip install 'gpunn[mpi]' installs MPICH's, or use "
                                    "your system MPI's)")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert info.mpi_info() == ("unavailable: mpi4py is not installed (pip install 'gpunn[mpi]' for mpiexec -n P gpunn "
                               "train)")


@pytest.mark.parametrize("device,says", [("bogus", "error: unknown device 'bogus'"),
                                         ("cuda:99", "error: ")])
def test_a_device_info_cannot_resolve_is_its_error_line_and_status_2(capsys, device, says):
    status, _, rows = _info(capsys, "--device", device)
    assert status == 2 and rows["device"].startswith(says)


@pytest.mark.parametrize("reason", ["no CuPy here", "cudaGetDeviceCount: error: no CUDA-capable device"])
def test_no_gpu_under_auto_is_no_error_and_status_0(capsys, monkeypatch, reason):
    """Whatever words CuPy's failure has (an "error: " inside them too): only a line that starts with "error: "
    is gpunn's refusal of a setting."""
    from gpunn import backend

    monkeypatch.setattr(backend, "probe_cuda", lambda: (None, 0, reason))
    status, _, rows = _info(capsys)
    assert status == 0 and rows["cupy"] == f"unavailable: {reason}" and rows["device"].startswith("cpu")
    assert not [key for key, value in rows.items() if value.startswith("error")]


def test_the_cpu_fallback_is_said_once_on_the_cupy_line_not_again_as_a_note(capsys, monkeypatch):
    """gpunn info printed 'note: running on CPU (NumPy): <reason>' on stderr besides its cupy line's
    'unavailable: <reason>'; the cupy line says it, on stdout, where a script reading info looks. The note is
    silenced for the command alone: a program that calls gpunn.cli.main(["info"]) is still told of a later fallback."""
    from gpunn import backend

    monkeypatch.setattr(backend, "probe_cuda", lambda: (None, 0, "no CuPy here"))
    monkeypatch.setattr(backend, "_fallback_announced", False)  # as in a fresh process
    with warnings.catch_warnings():
        warnings.simplefilter("always", backend.CPUFallbackWarning)  # as outside pytest (tests/conftest.py ignores it)
        status = cli.main(["info"])
        out, err = capsys.readouterr()
        assert (status, err) == (0, "")
        assert [line for line in out.splitlines() if "no CuPy here" in line] == [
            "cupy            unavailable: no CuPy here"]
        status = cli.main(["info", "--device", "cuda"])  # an error: the device line says it too (status 2)
        out, err = capsys.readouterr()
        assert (status, err) == (2, "") and "device          error: device 'cuda' was requested but no CuPy here" in out
        monkeypatch.setattr(backend, "_fallback_announced", False)
        # elsewhere the fallback is still said: info's silencing of it ends with the command (the filters as the
        # command left them, not pytest.warns's own)
        with warnings.catch_warnings(record=True) as later:
            backend.resolve("auto")
        assert [str(w.message) for w in later] == ["gpunn: running on CPU (NumPy): no CuPy here"]


def test_info_resolves_auto_unless_told(capsys):
    assert cli.parse_args(["info"]).device == "auto"


def test_the_cpu_kernels_line_names_every_kernel_alphabetically_without_underscores_or_says_why_none(monkeypatch):
    from gpunn.ops import cpu

    pytest.importorskip("numba")
    names = info.cpu_kernels().split("): ", 1)[1].split(", ")
    assert "adam" in names and not any(name.startswith("_") or name.endswith("_") for name in names)
    assert names == sorted(name.strip("_") for name in cpu.KERNELS)  # every kernel, in an order a reader can scan
    for threads, words in ((1, "1 thread"), (2, "2 threads")):  # (not "1 thread(s)")
        monkeypatch.setattr(cpu, "default_threads", lambda: threads)
        assert info.cpu_kernels().startswith("fused (Numba ") and f", {words}): " in info.cpu_kernels()
    monkeypatch.setattr(cpu, "numba", None)
    monkeypatch.delenv("GPUNN_FUSED_KERNELS", raising=False)
    assert info.cpu_kernels() == "off: Numba is not installed (pip install 'gpunn[cpu]'); the NumPy reference runs"
    monkeypatch.setenv("GPUNN_FUSED_KERNELS", "0")
    assert info.cpu_kernels() == "off: Numba is not installed (pip install 'gpunn[cpu]'); the NumPy reference runs"
    monkeypatch.setenv("GPUNN_FUSED_KERNELS", "1")  # asked for: a CPU run is refused now, so the line is its error
    assert info.cpu_kernels() == ("error: GPUNN_FUSED_KERNELS=1 asks for gpunn's fused CPU kernels, which need Numba: it "
                                  "is not installed; install it (pip install 'gpunn[cpu]'), or set "
                                  "GPUNN_FUSED_KERNELS=0 to run the NumPy reference")


def test_a_numba_that_does_not_import_is_the_cpu_kernels_lines_off_or_with_the_kernels_asked_for_its_error(
        capsys, monkeypatch):
    """Numba is imported at the CPU ops' first use (gpunn.ops.lazynumba), so info imports it to tell what a CPU run
    does with a Numba installed but broken (a NumPy newer than it supports): unasked, the run warns and uses the NumPy
    reference (gpunn.ops.cpu.fused_kernels), so the line says off and why, status 0, as no GPU under --device auto;
    with GPUNN_FUSED_KERNELS=1 the run is refused, so the line is that error and the status 2, as --device cuda's."""
    from gpunn.ops import cpu, lazynumba

    pytest.importorskip("numba")

    def broken():
        raise ImportError("Numba needs NumPy 2.2 or less.\nGot NumPy 2.4.")

    monkeypatch.setattr(lazynumba, "load", broken)
    monkeypatch.setattr(cpu, "_fallback_warned", False)
    monkeypatch.delenv("GPUNN_FUSED_KERNELS", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # info says it in its line, not in a warning too
        status, _, rows = _info(capsys, "--device", "cpu")
    assert status == 0 and rows["cpu kernels"] == (
        "off: Numba is installed but does not import (Numba needs NumPy 2.2 or less. Got NumPy 2.4.); CPU runs use the "
        "NumPy reference, with a warning (GPUNN_FUSED_KERNELS=0: without one; GPUNN_FUSED_KERNELS=1: refused)")
    monkeypatch.setenv("GPUNN_FUSED_KERNELS", "1")
    status, _, rows = _info(capsys, "--device", "cpu")
    assert status == 2 and rows["cpu kernels"] == (
        "error: GPUNN_FUSED_KERNELS=1 asks for gpunn's fused CPU kernels, which need Numba: it is installed but does "
        "not import (Numba needs NumPy 2.2 or less. Got NumPy 2.4.); install a Numba that supports NumPy "
        f"{numpy.__version__}, or set GPUNN_FUSED_KERNELS=0 to run the NumPy reference")


def test_a_bad_gpunn_gemm_is_the_cpu_gemm_lines_error_and_info_shows_the_rest_with_status_2(capsys, monkeypatch):
    # the whole command failed on it (status 2, one line): gemm.describe() read it outside the try meant for it;
    # then it showed every line with status 0, so a script checking the status took the setting for fine
    monkeypatch.setenv("GPUNN_GEMM", "bogus")
    status, _, rows = _info(capsys, "--device", "cpu")
    assert status == 2 and list(rows) == KEYS
    assert rows["cpu gemm"].startswith("error: GPUNN_GEMM='bogus' is not auto, ")
    assert rows["cpu kernels"].startswith("error: GPUNN_GEMM='bogus' is not auto, ") and rows["device"] == "cpu (NumPy)"


def test_on_a_gpu_info_gives_cupys_version_the_device_count_and_resolves_auto_to_the_gpu(capsys, fake_cupy):
    """The lines a GPU machine's user reads first (tests/fakecupy as CuPy): the cupy line is CuPy's version, not
    'unavailable', and --device auto resolves to the GPU, with status 0."""
    status, _, rows = _info(capsys)
    assert status == 0 and rows["cupy"] == fake_cupy.__version__
    assert rows["cuda devices"] == str(fake_cupy.cuda.runtime.getDeviceCount()) and rows["device"].startswith("cuda:0 (")


def test_under_slurm_the_cpu_and_blas_lines_say_its_cpus_per_task_and_the_blas_is_held_to_them():
    """A Slurm job's --cpus-per-task=N on a node Slurm does not bind it to (task/none) ran OpenBLAS on every core
    the process may run on, and gpunn info said "2 threads" with no word of where that came from. The command holds
    NumPy's BLAS to N (a count set in the environment stays as it is) and info says where each count comes from."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from gpunn.ops.cpu import affinity_cores

    pytest.importorskip("threadpoolctl")
    cores = affinity_cores()
    if cores < 2:
        pytest.skip("one core: no count for Slurm's to be below")
    root = str(Path(__file__).resolve().parents[1])

    def info(**env):
        environ = {k: v for k, v in os.environ.items() if k not in ("SLURM_CPUS_PER_TASK", "OPENBLAS_NUM_THREADS",
                                                                    "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
        out = subprocess.run([sys.executable, "-m", "gpunn", "info", "--device", "cpu"], capture_output=True, text=True,
                             env={**environ, "PYTHONPATH": root, **env}, timeout=300).stdout
        return {line[:16].strip(): line[16:] for line in out.splitlines() if not line.startswith(" ")}

    plain = info()
    if f"({cores} threads, " not in plain["blas"]:
        pytest.skip(f"NumPy's BLAS is not OpenBLAS on a thread per core here: {plain['blas']}")
    assert plain["cpu"].endswith(f", {cores} cores")
    assert plain["blas"].endswith("; threads: the library's own count, the cores the process may run on")
    slurm = info(SLURM_CPUS_PER_TASK="1")
    assert slurm["cpu"].endswith(f", 1 core (SLURM_CPUS_PER_TASK; the process may run on {cores})")
    assert "(1 thread, " in slurm["blas"]
    assert slurm["blas"].endswith(f"; threads held to SLURM_CPUS_PER_TASK=1 (the library started {cores})")
    kept = info(SLURM_CPUS_PER_TASK="1", OPENBLAS_NUM_THREADS=str(cores))
    assert f"({cores} threads, " in kept["blas"] and kept["blas"].endswith(f"; threads set by OPENBLAS_NUM_THREADS={cores}")


SMALL_RUN = ["--hidden", "8", "--batch-size", "100", "--epochs", "2", "--device", "cpu", "--quiet"]


def test_info_of_a_checkpoint_says_what_it_holds_and_how_to_predict_with_it(tmp_path, capsys):
    """Which columns a saved model reads, whether it standardizes, how far it trained: a user read them in Python
    (gpunn.load_checkpoint(path).model.data_columns, .standardizer, .history) or learned them from gpunn predict's
    refusals; gpunn info took no MODEL. gpunn info MODEL says them, for a training run, a model saved alone and a
    sweep's ensemble, whose predict line says how to save one member."""
    pytest.importorskip("pyarrow")
    import gpunn
    from gpunn import datasets

    X, Y = datasets.make("linear", 600, 3, seed=2, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([X, Y[:, 0]]), delimiter=",", header="a,b,c,y", comments="")
    run = str(tmp_path / "run.npz")
    assert cli.main(["train", "--data", str(tmp_path / "t.csv"), "--target", "y", "--standardize", "--save", run,
                     *SMALL_RUN]) == 0
    ckpt = gpunn.load_checkpoint(run, device="cpu")
    history, rows = ckpt.history, ckpt.settings.train_rows  # (the held-out chunks' rows left out)
    capsys.readouterr()
    assert cli.main(["info", run]) == 0
    lines = dict(line.split("  ", 1) for line in capsys.readouterr().out.splitlines())
    lines = {k.strip(): v.strip() for k, v in lines.items()}
    assert lines == {
        "checkpoint": f"a training run, resumable (gpunn train --resume {run}), written by gpunn {gpunn.__version__}",
        "model": "MLP 3-8-1 (relu, identity), bias, float32, 41 parameters",
        "columns": "features a, b, c; targets y (a table IN is read by these names)",
        "standardized": "inputs and targets (predict takes raw inputs and gives targets in their units)",
        "trained": f"epoch 2 of 2; adam lr 0.001, batch 100, on {tmp_path / 't.csv'} ({rows} training rows)",
        "last epoch": "  ".join(f"{k} {history[k][-1]:.5g}" for k in ("loss", "val_mse", "val_mae", "val_r2")),
        "predict": f"gpunn predict {run} IN OUT"}, lines
    python = str(tmp_path / "python.npz")  # a fit's ModelCheckpoint records no gpunn train options: resumed in Python
    gpunn.MLP([3, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, verbose=False,
                                                   callbacks=[gpunn.ModelCheckpoint(python)])
    assert cli.main(["info", python]) == 0
    out = capsys.readouterr().out
    assert ("a training run, resumable (in Python: gpunn.load_checkpoint(path).resume(X, Y)), "
            in out and "unnamed: 3 features read by position, 1 output (arrays, " in out and " on arrays (" in out)
    alone = str(tmp_path / "alone.npz")
    gpunn.save(alone, gpunn.MLP([4, 2], seed=0))
    assert cli.main(["info", alone]) == 0
    out = capsys.readouterr().out
    assert "a model (gpunn.save, --save-best)" in out and "no training state" in out and "trained" not in out
    assert "unnamed: 4 features read by position, 2 outputs" in out
    assert cli.main(["sweep", "--data", str(tmp_path / "t.csv"), "--target", "y", "--lr", "1e-3,1e-2",
                     "--save", str(tmp_path / "sw"), *SMALL_RUN]) == 0
    capsys.readouterr()
    assert cli.main(["info", str(tmp_path / "sw" / "ensemble-0.npz")]) == 0
    out = capsys.readouterr().out
    assert f"an Ensemble's training run of 2 members, resumable (gpunn sweep --resume {tmp_path / 'sw'})" in out
    assert "Ensemble of 2 x 3-8-1 (relu, identity), bias, float32, 41 parameters each" in out
    members = gpunn.load_checkpoint(tmp_path / "sw" / "ensemble-0.npz", device="cpu").history
    assert "\nlast epoch    per member: " + "  ".join(  # each metric's members, comma-joined
        f"{k} " + ", ".join(f"{v:.5g}" for v in members[k][-1]) for k in members
        if k in ("loss", "val_mse", "val_mae", "val_r2")) + "\n" in out, out
    assert (f"gpunn predict takes one model: save the sweep's best member with gpunn sweep --resume {tmp_path / 'sw'} "
            "--save-best best.npz") in out


def test_readmes_gpunn_info_example_is_what_gpunn_info_prints_for_such_a_run(tmp_path, capsys):
    """README's `$ gpunn info run.npz` block (under "Command line"): a run of `gpunn train --data /tmp/t.csv --target y
    --standardize --epochs 1 --save run.npz`, the default net, on a CSV file of columns a, b, c and y, gives those
    lines, in that order, each as README writes it but for its numbers (the rows, the metrics) and the file's
    path. A line renamed, added or reworded fails here, as does an example edited away from the output."""
    import re
    from pathlib import Path

    pytest.importorskip("pyarrow")
    import gpunn
    from gpunn import datasets

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("\n$ gpunn info run.npz\n", 1)[1].split("```", 1)[0]
    X, Y = datasets.make("linear", 600, 3, seed=2, device="cpu")
    data = tmp_path / "t.csv"
    numpy.savetxt(data, numpy.column_stack([X, Y[:, 0]]), delimiter=",", header="a,b,c,y", comments="")
    run = str(tmp_path / "run.npz")
    assert cli.main(["train", "--data", str(data), "--target", "y", "--standardize", "--epochs", "1", "--save", run,
                     "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["info", run]) == 0
    printed = capsys.readouterr().out.splitlines()

    def shape(line):  # (numbers and the data file's path left out)
        line = line.replace(str(data), "/tmp/t.csv").replace(run, "run.npz")
        return re.sub(r"(?<![A-Za-z_])-?\d[\d,]*(\.\d+)?", "N", line)  # (not float32's, val_r2's)

    assert [shape(line) for line in printed] == [shape(line) for line in block.splitlines()]


def test_info_of_a_checkpoint_cut_in_its_first_epoch_says_where_and_its_models_dtype_bias_and_statistics(
        tmp_path, capsys, interrupt_at):
    """A run interrupted part-way through its first epoch has no epoch's metrics: no "last epoch" line (it was one
    of no metrics, or an IndexError where a metric had none); "3 batches" (it said "3 batchs"), "(interrupted)", a
    model without bias in float64, inputs alone standardized, a DataFrame's feature names without target names, and
    the learning rate in 5 digits. Each was a mutation that passed the test above."""
    pandas = pytest.importorskip("pandas")
    import gpunn
    from gpunn import datasets

    X, Y = datasets.make("linear", 600, 3, seed=2, device="cpu")
    cut = str(tmp_path / "cut.npz")
    gpunn.MLP([3, 4, 1], bias=False, dtype="float64", device="cpu", seed=0).fit(
        pandas.DataFrame(X, columns=list("abc")), Y, epochs=2, batch_size=100, optimizer="sgd", lr=0.0123456789,
        standardize="inputs", verbose=False, callbacks=[interrupt_at(0, 2), gpunn.ModelCheckpoint(cut)])
    assert cli.main(["info", cut]) == 0
    lines = dict(line.split("  ", 1) for line in capsys.readouterr().out.splitlines())
    lines = {k.strip(): v.strip() for k, v in lines.items()}
    assert lines == {
        "checkpoint": "a training run, resumable (in Python: gpunn.load_checkpoint(path).resume(X, Y)), written by "
                      f"gpunn {gpunn.__version__}",
        "model": "MLP 3-4-1 (relu, identity), no bias, float64, 16 parameters",
        "columns": "features a, b, c (a table IN is read by these names)",
        "standardized": "inputs (predict takes raw inputs and gives targets in their units)",
        "trained": "epoch 0 of 2, and 3 batches of epoch 1 (interrupted); sgd lr 0.012346, batch 100, on arrays "
                   "(600 training rows)",
        "predict": f"gpunn predict {cut} IN OUT"}, lines


@pytest.mark.parametrize("fit_on", ["arrays", "ensemble bootstrap", "npy source"])
def test_info_of_a_python_runs_checkpoint_says_to_resume_with_what_it_trained_on(tmp_path, capsys, fit_on):
    """A fit's ModelCheckpoint resumes in Python with the data it trained on: arrays (an Ensemble's bootstrap
    resamples of them; a data-parallel run's, not started here: MPI would start in this process) with resume(X, Y), a
    source with resume(source). It said "resume(X, Y) or .resume(source)" of each, where the other is refused."""
    import gpunn
    from gpunn import datasets

    X, Y = datasets.make("linear", 200, 3, seed=2, device="cpu")
    path, data = str(tmp_path / "run.npz"), (X, Y)
    if fit_on == "npy source":
        numpy.save(tmp_path / "X.npy", X)
        numpy.save(tmp_path / "Y.npy", Y)
        data = (gpunn.data.npy(str(tmp_path / "X.npy"), str(tmp_path / "Y.npy")),)
    model = (gpunn.Ensemble([3, 4, 1], 2, device="cpu", seed=0) if fit_on == "ensemble bootstrap"
             else gpunn.MLP([3, 4, 1], device="cpu", seed=0))
    options = {"bootstrap": True} if fit_on == "ensemble bootstrap" else {}
    model.fit(*data, epochs=1, batch_size=50, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)], **options)
    assert cli.main(["info", path]) == 0
    call = "resume(source)" if fit_on == "npy source" else "resume(X, Y)"
    assert f"(in Python: gpunn.load_checkpoint(path).{call})," in capsys.readouterr().out


@pytest.mark.parametrize("name, says", [
    ("nope.npz", "MODEL {tmp}/nope.npz does not exist"),
    ("t.csv", "MODEL {tmp}/t.csv is not a gpunn checkpoint (CSV text); gpunn info MODEL describes one written by "
              "gpunn train --save or gpunn.save"),
    ("arrays.npz", "MODEL {tmp}/arrays.npz is not a gpunn checkpoint (an .npz archive of the array X)"),
    ("empty.npz", "MODEL {tmp}/empty.npz is not a gpunn checkpoint (an empty file)")])
def test_info_of_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path, capsys, name, says):
    (tmp_path / "t.csv").write_text("a,y\n1,2\n")
    numpy.savez(tmp_path / "arrays.npz", X=numpy.ones(3))
    (tmp_path / "empty.npz").write_bytes(b"")
    assert cli.main(["info", str(tmp_path / name)]) == 2
    assert f"gpunn info: error: {says.format(tmp=tmp_path)}" in capsys.readouterr().err


def test_info_names_the_task_or_the_npy_pair_a_run_trained_on(tmp_path, capsys):
    """The trained line said "on arrays" of a synthetic task held in memory (a sweep's too), "on synthetic" of a
    streamed one and "on npy" of --data X.npy --targets Y.npy: the source's kind, where a table's path was named."""
    from gpunn import datasets

    task = ["--rows", "500", "--features", "3", *SMALL_RUN]
    for name, more in (("held.npz", ["--stream", "off"]), ("streamed.npz", ["--stream", "on"])):
        assert cli.main(["train", *task, *more, "--save", str(tmp_path / name)]) == 0
    assert cli.main(["sweep", *task, "--lr", "1e-3,1e-2", "--save", str(tmp_path / "sw")]) == 0
    X, Y = datasets.make("linear", 500, 3, seed=2, device="cpu")
    numpy.save(tmp_path / "X.npy", X), numpy.save(tmp_path / "Y.npy", Y)
    assert cli.main(["train", "--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy"), *SMALL_RUN,
                     "--save", str(tmp_path / "pair.npz")]) == 0
    capsys.readouterr()
    said = {}
    for name in ("held.npz", "streamed.npz", "sw/ensemble-0.npz", "pair.npz"):
        assert cli.main(["info", str(tmp_path / name)]) == 0
        said[name] = _info_row(capsys.readouterr().out, "trained").split(", on ", 1)[1].split(" (")[0]
    assert said == {"held.npz": "task teacher", "streamed.npz": "task teacher", "sw/ensemble-0.npz": "task teacher",
                    "pair.npz": f"{tmp_path / 'X.npy'} and {tmp_path / 'Y.npy'}"}


def test_a_sweeps_save_directory_as_model_is_told_its_checkpoints_and_what_to_run(tmp_path, capsys):
    """gpunn info DIR and gpunn predict DIR IN OUT, DIR a gpunn sweep --save's, said only "MODEL DIR is not a file"."""
    sweep = str(tmp_path / "sw")
    assert cli.main(["sweep", "--rows", "500", "--features", "3", *SMALL_RUN, "--lr", "1e-3,1e-2",
                     "--save", sweep]) == 0
    capsys.readouterr()
    first = str(tmp_path / "sw" / "ensemble-0.npz")
    assert cli.main(["info", sweep]) == 2
    assert capsys.readouterr().err == (f"gpunn info: error: MODEL {sweep} is a directory of gpunn sweep --save "
                                       f"checkpoints ({first}, one per ensemble); gpunn info {first} says what one "
                                       "holds\n")
    numpy.save(tmp_path / "in.npy", numpy.ones((4, 3), numpy.float32))
    assert cli.main(["predict", sweep, str(tmp_path / "in.npy"), str(tmp_path / "out.npy")]) == 2
    assert capsys.readouterr().err == (f"gpunn predict: error: MODEL {sweep} is a directory of gpunn sweep --save "
                                       f"checkpoints ({first}, one per ensemble); gpunn predict takes one model: save "
                                       f"the sweep's best member with gpunn sweep --resume {sweep} --save-best "
                                       "best.npz\n")
    assert not (tmp_path / "out.npy").exists()
    assert cli.main(["info", str(tmp_path)]) == 2  # a directory of no sweep: as before
    assert capsys.readouterr().err == f"gpunn info: error: MODEL {tmp_path} is not a file\n"


def test_a_sweep_directory_of_several_ensembles_as_model_names_the_first_and_says_there_are_more(tmp_path, capsys):
    for g in (0, 1):
        (tmp_path / f"ensemble-{g}.npz").write_bytes(b"")
    first = tmp_path / "ensemble-0.npz"
    assert cli.main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"gpunn info: error: MODEL {tmp_path} is a directory of gpunn sweep --save "
                                       f"checkpoints ({first}, ..., one per ensemble); gpunn info {first} says what "
                                       "one holds\n")


def _info_row(out, key):
    return next(line[len(key):].strip() for line in out.splitlines() if line.startswith(key + " "))


def test_gpunn_help_and_info_help_say_that_info_describes_a_model(capsys):
    """gpunn --help's line for info, and info's description, named only the machine's lines: gpunn info MODEL, which
    README's command line shows, was found only in the MODEL argument's own help."""
    for argv in (["--help"], ["info", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert ("info show the backend, device, versions and BLAS in use; gpunn info MODEL: what a checkpoint holds"
                in text) if argv == ["--help"] else ("Show what gpunn runs on here (or, given MODEL, what that "
                                                     "checkpoint holds: see MODEL below): the device" in text)


def test_info_of_a_model_refuses_a_device_it_would_not_use(tmp_path, capsys, monkeypatch):
    """gpunn info MODEL reads the checkpoint on the CPU: --device cuda (and --device bogus) beside it were dropped
    without a word, where train and sweep refuse an option the run would not use. --device auto, the default, cpu,
    where it is read, and GPUNN_DEVICE, the machine's setting, pass."""
    import gpunn

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([3, 1], seed=0))
    for device in ("cuda", "bogus"):
        assert cli.main(["info", model, "--device", device]) == 2
        assert capsys.readouterr().err == (f"gpunn info: error: --device {device} sets the device gpunn info resolves "
                                           "without MODEL, and gpunn info MODEL reads the checkpoint on the CPU: drop "
                                           f"it (gpunn info --device {device} checks that device)\n")
    for device in ("auto", "cpu", "cpu:0", "CPU", " cpu "):  # where it is read, as resolve takes its names
        assert cli.main(["info", model, "--device", device]) == 0, device
    monkeypatch.setenv("GPUNN_DEVICE", "cuda")
    assert cli.main(["info", model]) == 0
    assert "MLP 3-1" in capsys.readouterr().out
