"""gpunn train --resume is exact or refused: the checkpoint alone continues its run bit for bit, and an
option that would change the run is refused by name before any file is touched."""
import contextlib
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy
import pytest
from checkpoint_edits import rewrite_meta, run_options
from hypothesis import HealthCheck, example, given, settings, strategies as st

import gpunn
from gpunn.cli import main

BASE = ["--rows", "200", "--features", "3", "--hidden", "4", "--batch-size", "50", "--lr", "0.01", "--seed", "1",
        "--device", "cpu", "--quiet"]
DONE = 2  # epochs in the checkpoint the runs below resume

# option -> (the value the run was started with, spelled as a user might; a value that changes the run)
OPTIONS = {
    "--lr": ("1e-2", "0.02"),
    "--batch-size": ("50", "40"),
    "--seed": ("1", "2"),
    "--task": ("teacher", "linear"),
    "--hidden": ("4", "5"),
    "--optimizer": ("adam", "sgd"),
    "--noise": ("0.1", "0.2"),
    "--rows": ("2e2", "220"),
    "--dtype": ("f4", "float64"),
    "--schedule": ("constant", "cosine"),
    "--features": ("3", "4"),
}


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def files(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(directory).iterdir()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The checkpoint after DONE epochs (its .toml removed: the .npz alone must do), and the parameters
    of uninterrupted runs of 3 and 4 epochs."""
    d = tmp_path_factory.mktemp("resume")
    assert run("train", *BASE, "--epochs", str(DONE), "--save", str(d / "base.npz"))[0] == 0
    (d / "base.npz.toml").unlink()
    straight = {}
    for epochs in (3, 4):
        assert run("train", *BASE, "--epochs", str(epochs), "--save", str(d / f"straight{epochs}.npz"))[0] == 0
        straight[epochs] = gpunn.load_checkpoint(d / f"straight{epochs}.npz", device="cpu")
    return d, straight


def test_the_checkpoint_alone_resumes_bit_for_bit(runs, tmp_path):
    d, straight = runs
    shutil.copy(d / "base.npz", tmp_path / "run.npz")
    status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "4", "--quiet")
    assert status == 0, err
    assert "batch 50" in out  # the summary tells what ran
    resumed = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    numpy.testing.assert_array_equal(resumed.model.params, straight[4].model.params)
    assert resumed.training["history"]["loss"] == straight[4].training["history"]["loss"]
    assert (tmp_path / "run.npz.toml").exists()  # written again once the resumed run has its checkpoint


def test_a_data_parallel_run_resumed_on_another_count_takes_the_batch_size_it_goes_on_at_there(runs, tmp_path):
    """A 2-rank run at --batch-size 25 (a global batch of 50) goes on in one process at 50; --batch-size 50 with
    --resume was refused as a change of the run ("which has --batch-size 25"), and its refusal of another value
    did not say which one continues it here."""
    d, straight = runs

    def as_two_ranks(meta):  # the run's global batch of 50 as 2 ranks x 25, as mpiexec -n 2 ... --batch-size 25
        meta["training"]["settings"].update(batch_size=25, ranks=2)
        run_options(meta)["batch_size"] = 25

    rewrite_meta(d / "base.npz", tmp_path / "run.npz", as_two_ranks)
    status, _, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "3", "--batch-size", "40")
    assert status == 2 and ("--batch-size 40 would change the run, which has --batch-size 25 (a global batch of 50: "
                            "--batch-size 50 in this launch's 1 process); a resumed run continues") in err, err
    status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "3", "--batch-size", "50")
    assert status == 0, err
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params,
                                     straight[3].model.params)  # the run it was, at its global batch
    rewrite_meta(d / "base.npz", tmp_path / "run.npz", as_two_ranks)  # without --batch-size, the same batch is
    status, _, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "3", "--quiet",  # recorded
                         "--json", str(tmp_path / "run.json"))
    assert status == 0, err
    report = json.loads((tmp_path / "run.json").read_text())  # (config's batch_size is per rank, beside ranks)
    assert (report["config"]["batch_size"], report["result"]["ranks"]) == (50, 1)
    assert "batch-size = 50\n" in (tmp_path / "run.npz.toml").read_text()
    assert run_options(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").meta)["batch_size"] == 50


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(options=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.booleans(), max_size=4),
       epochs=st.sampled_from([None, 1, 2, 3, 4]), save_elsewhere=st.booleans())
@example(options={"--lr": True, "--dtype": True, "--rows": True}, epochs=3, save_elsewhere=True)  # same, spelled apart
@example(options={"--batch-size": False, "--seed": True}, epochs=4, save_elsewhere=False)
def test_resume_with_random_options_is_exact_or_refused(runs, options, epochs, save_elsewhere):
    d, straight = runs
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(d / "base.npz", tmp / "run.npz")
        argv = ["train", "--resume", str(tmp / "run.npz"), "--quiet"]
        for name, same in options.items():
            argv += [name, OPTIONS[name][0 if same else 1]]
        if epochs is not None:
            argv += ["--epochs", str(epochs)]
        if save_elsewhere:
            argv += ["--save", str(tmp / "next.npz")]
        before = files(tmp)
        status, out, err = run(*argv)
        changed = sorted(name for name, same in options.items() if not same)
        total = DONE if epochs is None else epochs
        if changed or total <= DONE:  # refused: one line naming every reason checked first, no file touched
            assert status == 2
            assert len(err.strip().splitlines()) == 1 and out == ""
            if changed:
                assert all(f"{name} {OPTIONS[name][1]}" in err for name in changed), err
            else:
                assert f"give --epochs above {DONE} to train further" in err
            assert files(tmp) == before
        else:  # exact: the uninterrupted run's weights, bit for bit
            assert status == 0, err
            written = gpunn.load_checkpoint(tmp / ("next.npz" if save_elsewhere else "run.npz"), device="cpu")
            numpy.testing.assert_array_equal(written.model.params, straight[total].model.params)
            if save_elsewhere:
                assert files(tmp)["run.npz"] == before["run.npz"]


def test_a_jobs_line_that_saves_and_resumes_one_file_starts_the_run_goes_on_with_it_and_then_succeeds(runs, tmp_path):
    """A batch job's command, run again when Slurm requeues the job: `--save PATH --resume PATH`. Where PATH is not
    written yet the run starts (it was refused: does not exist, so a job script had to test for the file); where it
    is, the run goes on exactly; where its run has trained all its epochs, the command says so and succeeds (it was
    refused, status 2, failing a requeued job whose run had ended and its afterok dependants)."""
    d, straight = runs
    path = str(tmp_path / "run.npz")

    def job(epochs):
        return run("train", *BASE, "--epochs", str(epochs), "--save", path, "--resume", path)

    status, out, err = job(DONE)  # cut short after DONE epochs: as a run stopped by SIGTERM leaves it
    assert status == 0, err
    assert out.startswith(f"starting the run: --resume {path} is not written yet (--save writes it; ")
    status, out, err = job(4)  # requeued: the same line, its epochs
    assert status == 0, err
    assert out.startswith(f"resuming {path}: 2 epochs done")
    resumed = gpunn.load_checkpoint(path, device="cpu")
    numpy.testing.assert_array_equal(resumed.model.params, straight[4].model.params)
    assert resumed.training["history"]["loss"] == straight[4].training["history"]["loss"]
    before = files(tmp_path)
    assert job(4) == (0, f"{path}: the run has trained its 4 epochs: nothing left to train (--epochs above 4 trains "
                         "it further)\n", "")
    assert files(tmp_path) == before
    # the other forms are as they were: a resume with nothing to train, or of a file not there, is refused
    status, _, err = run("train", "--resume", path, "--epochs", "4", "--quiet")
    assert status == 2 and "--epochs 4 is not above the 4 epochs it has trained" in err
    assert job(3)[0] == 2  # the job's run has trained more than its line says: not this line's run
    status, _, err = run("train", *BASE, "--save", path, "--resume", str(tmp_path / "other.npz"))
    assert status == 2 and "other.npz does not exist" in err and files(tmp_path) == before
    # a config file's save and resume keys are the same line's
    (tmp_path / "job.toml").write_text(f'save = "{tmp_path / "cfg.npz"}"\nresume = "{tmp_path / "cfg.npz"}"\n')
    status, out, err = run("train", *BASE, "--epochs", "1", "--config", str(tmp_path / "job.toml"))
    assert status == 0 and out.startswith("starting the run: "), err
    status, out, err = run("train", *BASE, "--epochs", "1", "--config", str(tmp_path / "job.toml"))
    assert status == 0 and "the run has trained its 1 epoch: nothing left to train" in out, err


def test_options_from_a_config_file_are_checked_like_flags(runs, tmp_path):
    d, straight = runs
    shutil.copy(d / "base.npz", tmp_path / "run.npz")
    (tmp_path / "more.toml").write_text("epochs = 3\nlr = 0.5\n")
    before = files(tmp_path)
    status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--config", str(tmp_path / "more.toml"))
    assert status == 2 and files(tmp_path) == before
    assert f"{tmp_path / 'more.toml'}'s lr = 0.5 would change the run, which has --lr 0.01" in err
    (tmp_path / "more.toml").write_text("epochs = 3\nlr = 0.01\nquiet = true\n")
    status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--config", str(tmp_path / "more.toml"))
    assert status == 0, err
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params,
                                     straight[3].model.params)


def test_a_finished_early_stopping_run_extended_with_epochs_is_the_longer_run(tmp_path):
    """README's example: --early-stopping, --epochs 2 --save, then --resume --epochs 4. The first run's
    best epoch is 1 (--min-delta 100: nothing after it counts), so it ends holding epoch 1's weights, and
    its checkpoint too; the resume trained epochs 3 and 4 from those instead of from epoch 2's."""
    es = [*BASE, "--early-stopping", "--patience", "5", "--min-delta", "100"]
    assert run("train", *es, "--epochs", "2", "--save", str(tmp_path / "run.npz"))[0] == 0
    status, _, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "4", "--quiet")
    assert status == 0, err
    assert run("train", *es, "--epochs", "4", "--save", str(tmp_path / "straight.npz"))[0] == 0
    resumed, straight = (gpunn.load_checkpoint(tmp_path / name, device="cpu") for name in ("run.npz", "straight.npz"))
    assert resumed.history["loss"] == straight.history["loss"]
    numpy.testing.assert_array_equal(resumed.model.params, straight.model.params)
    numpy.testing.assert_array_equal(resumed.optimizer.state["m"], straight.optimizer.state["m"])


@pytest.fixture(scope="module")
def momentum_run(tmp_path_factory):
    """A --optimizer momentum run on the CPU, --momentum, --weight-decay, --stream and --graph left unset, saved
    after 1 epoch (base.npz; old.npz: the same with --momentum and --weight-decay recorded as null, as gpunn
    train recorded them unset before it recorded the values used); and its parameters resumed to 2 epochs with
    no option."""
    d = tmp_path_factory.mktemp("effective")
    assert run("train", *BASE, "--optimizer", "momentum", "--epochs", "1", "--save", str(d / "base.npz"))[0] == 0
    shutil.copy(d / "base.npz", d / "plain.npz")
    assert run("train", "--resume", str(d / "plain.npz"), "--epochs", "2", "--quiet")[0] == 0
    rewrite_meta(d / "base.npz", d / "old.npz", lambda meta: run_options(meta).update(momentum=None, weight_decay=None))
    return d, gpunn.load_checkpoint(d / "plain.npz", device="cpu").model.params


def test_an_unset_momentum_and_weight_decay_are_recorded_as_used(momentum_run, tmp_path):
    """gpunn train records the momentum and weight decay it trains at, as it does the rate: a refusal names the
    recorded value (it was 'unset (0.9)'); a run that recorded them unset (old.npz) still resumes, bit for bit."""
    from gpunn import checkpoint

    d, params = momentum_run
    assert {k: run_options(checkpoint.read_meta(d / "base.npz"))[k] for k in ("momentum", "weight_decay")} == \
        {"momentum": 0.9, "weight_decay": 0.0}
    shutil.copy(d / "base.npz", tmp_path / "run.npz")
    status, _, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2", "--momentum", "0.5")
    assert status == 2 and "--momentum 0.5 would change the run, which has --momentum 0.9;" in err
    shutil.copy(d / "old.npz", tmp_path / "run.npz")
    assert run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2", "--quiet")[0] == 0
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params, params)


@pytest.mark.parametrize("same", [["--momentum", "0.9"], ["--weight-decay", "0"], ["--stream", "off"], ["--no-graph"],
                                  ["--graph"]], ids=" ".join)
def test_an_option_that_resolves_to_what_the_run_used_is_accepted(momentum_run, tmp_path, same):
    """The momentum optimizer's default momentum is 0.9 (and every optimizer's weight decay here 0); --stream auto
    chose the rows in memory for 200 rows; on the CPU no step runs as a CUDA graph, --graph or not (a note says
    so). Each was refused as changing the run. (old.npz: unset values recorded as null, which resolve so.)"""
    d, params = momentum_run
    shutil.copy(d / "old.npz", tmp_path / "run.npz")
    status, _, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2", "--quiet", *same)
    assert status == 0, err
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params, params)


@pytest.mark.parametrize("other, message", [
    (["--momentum", "0.5"], "--momentum 0.5 would change the run, which has --momentum unset (0.9);"),
    (["--weight-decay", "0.1"], "--weight-decay 0.1 would change the run, which has --weight-decay unset (0.0);"),
    (["--stream", "on"], "--stream on would change the run, which has --stream auto (off);"),
])
def test_an_option_that_resolves_to_another_value_is_still_refused(momentum_run, tmp_path, other, message):
    d, _ = momentum_run
    shutil.copy(d / "old.npz", tmp_path / "run.npz")
    before = files(tmp_path)
    status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2", *other)
    assert status == 2 and message in err and out == "" and files(tmp_path) == before


def test_graph_and_stream_auto_resolve_by_the_runs_device_and_source():
    """On a CUDA GPU the graph is the default where the step captures: --no-graph changes the run there (and
    not on the CPU). --stream auto is on for a run that streamed its synthetic task, off for one in memory."""
    from gpunn.cli import resume

    recorded = {"graph": None, "stream": "on", "optimizer": "adam"}
    with pytest.raises(ValueError, match="^--resume r.npz: --no-graph would change the run, which has --graph unset;"):
        resume.check("r.npz", {"graph": False}, recorded, 0, "cuda", source="synthetic", negatable={"graph"})
    resume.check("r.npz", {"graph": False, "stream": "auto"}, recorded, 0, "cpu", source="synthetic")
    with pytest.raises(ValueError, match=r"--stream auto would change the run, which has --stream on;"):
        resume.check("r.npz", {"stream": "auto"}, recorded, 0, "cpu", source="arrays")


def test_an_unset_option_resolves_by_the_runs_optimizer_and_one_it_takes_not_is_compared_as_given():
    """check()'s resolved values: an unset --lr is the optimizer's own default (sgd's 1e-2), and --momentum given
    to an adam run, which takes none, is refused as a change, not a failure looking up adam's momentum."""
    from gpunn.cli import resume
    from gpunn.optim import default_of

    assert (default_of("sgd", "lr"), default_of("adamw", "weight_decay"), default_of("nesterov", "momentum")) == (
        1e-2, 0.01, 0.9)
    assert default_of("adam", "momentum") is None and default_of("no-such", "lr") is None
    resume.check("r.npz", {"lr": 1e-2}, {"optimizer": "sgd", "lr": None}, 0, "cpu")
    with pytest.raises(ValueError, match="^--resume r.npz: --momentum 0.9 would change the run, which has --momentum "
                                         "unset;"):
        resume.check("r.npz", {"momentum": 0.9}, {"optimizer": "adam", "momentum": None}, 0, "cpu")


def test_device_auto_resumes_where_it_resolves_to_the_runs_kind_and_is_refused_elsewhere(momentum_run, tmp_path,
                                                                                          monkeypatch):
    """--device auto is compared as it resolves here, as --device cuda is: a CPU run resumes with it on a machine
    without a GPU, bit for bit, and is refused, naming the device auto found, where it finds one (tests/fakecupy
    stands in for CuPy and a CUDA device). It was let through unchecked, to continue on the GPU's other random data.
    """
    import sys

    from gpunn import backend

    d, params = momentum_run
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError: auto is the CPU here
    backend.probe_cuda.cache_clear()
    shutil.copy(d / "base.npz", tmp_path / "run.npz")
    status, _, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2", "--quiet", "--device", "auto")
    assert status == 0, err
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params, params)

    shutil.copy(d / "base.npz", tmp_path / "run.npz")
    before = files(tmp_path)
    with stand_in_gpu(monkeypatch):
        for device, said in [("auto", "--device auto (here cuda:0)"), ("cuda", "--device cuda (here cuda:0)")]:
            status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2", "--device", device)
            assert status == 2 and out == "" and files(tmp_path) == before, err
            assert f"{said}: the run being resumed generated its data on cpu" in err
            assert "resume on cpu (--device cpu, or leave --device out)" in err


def test_a_device_refusal_for_a_data_file_run_says_the_data_were_read_not_generated(tmp_path, monkeypatch):
    """A --data run's rows come from its file whatever the device: another kind shuffles and rounds otherwise. The
    refusal said the run "generated its data", as for a synthetic task."""
    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "X.npy", rng.standard_normal((64, 3)))
    numpy.save(tmp_path / "Y.npy", rng.standard_normal((64, 1)))
    save = str(tmp_path / "run.npz")
    data = ["--data", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "Y.npy")]
    assert run("train", *data, "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet", "--save", save)[0] == 0
    with stand_in_gpu(monkeypatch):
        status, out, err = run("train", "--resume", save, "--epochs", "2", "--device", "cuda")
    assert status == 2 and out == ""
    assert ("--device cuda (here cuda:0): the run being resumed trained on cpu on the data it read, and another kind "
            "of device shuffles them in another order and rounds otherwise; resume on cpu") in err
    assert "generated" not in err


def test_a_gpu_run_resumed_where_there_is_no_gpu_says_so_and_what_this_machine_can_do(momentum_run, tmp_path,
                                                                                       no_gpu):
    """A GPU machine's file resumed on a laptop was told "device 'cuda' was requested but ... Use device 'cpu' or
    'auto'", and with --device cpu or auto "resume on cuda (--device cuda, or leave --device out)": each pointed at the
    other. Now both say to resume it where a GPU is, and that here its model predicts and its config runs it again
    on the CPU, which the command shown does."""
    from gpunn.cli import resume

    d, _ = momentum_run
    gpu_run = tmp_path / "gpu.npz"
    rewrite_meta(d / "base.npz", gpu_run, lambda meta: run_options(meta).update({resume.BACKEND_KEY: "cuda"}))
    shutil.copy(d / "base.npz.toml", tmp_path / "gpu.npz.toml")
    before = files(tmp_path)
    for device, said in [((), f"--resume {gpu_run}: the run"), (("--device", "cpu"), "--device cpu: the run being resumed"),
                         (("--device", "auto"), "--device auto (here cpu): the run being resumed")]:
        status, out, err = run("train", "--resume", str(gpu_run), *device)  # (no --epochs: this comes first)
        assert status == 2 and out == "" and files(tmp_path) == before, err
        assert f"{said} generated its data on cuda, and another kind of device draws other random data; resume it " \
               "on a machine with a GPU (" in err
        assert "Use device" not in err and "leave --device out" not in err
        assert (f"on this one, gpunn predict {gpu_run} IN OUT uses its model, and gpunn train --config {gpu_run}.toml "
                "--device cpu --save NEW.npz runs it again on the CPU") in err
    status, _, err = run("train", "--config", f"{gpu_run}.toml", "--device", "cpu", "--save", str(tmp_path / "NEW.npz"),
                         "--epochs", "1", "--quiet")
    assert status == 0 and gpunn.load(tmp_path / "NEW.npz").device == "cpu", err


@contextlib.contextmanager
def stand_in_gpu(monkeypatch):
    """tests/fakecupy as CuPy, with CUDA devices, until the block ends (and monkeypatch undoes the rest)."""
    import fakecupy

    fakecupy.install(monkeypatch)
    fakecupy.forget_gpunn_state(monkeypatch)
    try:
        yield
    finally:
        fakecupy.forget_gpunn_state(None)


def test_a_run_trained_on_the_cpu_under_device_auto_resumes_there_where_auto_now_finds_a_gpu(tmp_path, monkeypatch):
    """The recorded kind, not the recorded "auto", is a resume's device: a run that auto put on the CPU goes on on
    the CPU on a machine whose auto is a GPU (tests/fakecupy), bit for bit as it would have there (audit35b's R18:
    auto resolved anew, it went on on the GPU's other random data)."""
    import sys

    from gpunn import backend

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError: auto is the CPU here
    backend.probe_cuda.cache_clear()
    auto = BASE[:-3] + ["--quiet"]  # (BASE without --device cpu)
    for name, epochs in (("run.npz", "1"), ("straight.npz", "2")):
        assert run("train", *auto, "--epochs", epochs, "--save", str(tmp_path / name))[0] == 0
    with stand_in_gpu(monkeypatch):
        status, out, err = run("train", "--resume", str(tmp_path / "run.npz"), "--epochs", "2")
    assert status == 0 and "device: cpu" in out, err
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").model.params,
                                     gpunn.load_checkpoint(tmp_path / "straight.npz", device="cpu").model.params)


def test_a_refused_flag_off_is_written_as_the_user_types_it(tmp_path, monkeypatch):
    """On a GPU, --no-graph changes a run that left --graph unset (its steps ran as a CUDA graph): the refusal
    names it --no-graph, as typed and as --help writes it, where it said "no --graph"."""
    with stand_in_gpu(monkeypatch):
        save = str(tmp_path / "run.npz")
        assert run("train", *BASE[:-3], "--device", "cuda", "--epochs", "1", "--quiet", "--save", save)[0] == 0
        status, out, err = run("train", "--resume", save, "--epochs", "2", "--no-graph")
    assert status == 2 and out == ""
    assert f"--resume {save}: --no-graph would change the run, which has --graph unset;" in err


def test_an_sgd_run_saved_at_the_old_default_lr_resumes_at_it(tmp_path):
    """gpunn train --optimizer sgd without --lr trained at 1e-3 before the optimizer's own 1e-2 became the
    default, and recorded 0.001 (what --lr 1e-3 records now): resumed without --lr it continues at 1e-3,
    and --lr 1e-2, the default now, is refused as the change it is."""
    path = tmp_path / "old.npz"
    tiny = ["--rows", "200", "--features", "3", "--hidden", "4", "--device", "cpu", "--quiet"]
    assert run("train", *tiny, "--optimizer", "sgd", "--lr", "1e-3", "--epochs", "1", "--save", str(path))[0] == 0
    status, _, err = run("train", "--resume", str(path), "--epochs", "2", "--lr", "1e-2", "--quiet")
    assert status == 2 and "--lr 0.01 would change the run, which has --lr 0.001" in err
    assert run("train", "--resume", str(path), "--epochs", "2", "--quiet")[0] == 0
    ckpt = gpunn.load_checkpoint(path)
    assert ckpt.epoch == 2 and ckpt.optimizer.lr == 1e-3


def test_a_run_saved_at_the_old_default_noise_resumes_at_it(tmp_path):
    """gpunn train --task sinusoid without --noise made its data with 0.1 before the task's own 0.05 became the
    default, and recorded 0.1 (what --noise 0.1 records now): resumed without --noise it continues on those data,
    and --noise 0.05, the default now, is refused as the change it is."""
    path = tmp_path / "old.npz"
    tiny = ["--rows", "200", "--features", "3", "--hidden", "4", "--device", "cpu", "--quiet", "--task", "sinusoid"]
    assert run("train", *tiny, "--noise", "0.1", "--epochs", "1", "--save", str(path))[0] == 0
    status, _, err = run("train", "--resume", str(path), "--epochs", "2", "--noise", "0.05", "--quiet")
    assert status == 2 and "--noise 0.05 would change the run, which has --noise 0.1" in err
    assert run("train", "--resume", str(path), "--epochs", "2", "--quiet")[0] == 0
    assert gpunn.load_checkpoint(path).epoch == 2


def test_a_run_saved_at_the_old_default_features_resumes_at_them(tmp_path):
    """gpunn train --task friedman1 without --features made 32 before the task's own 10 became the default, and
    recorded 32: resumed without --features it continues at 32, and --features 10 is refused as the change it is."""
    path = tmp_path / "old.npz"
    tiny = ["--rows", "200", "--hidden", "4", "--device", "cpu", "--quiet", "--task", "friedman1"]
    assert run("train", *tiny, "--features", "32", "--epochs", "1", "--save", str(path))[0] == 0
    status, _, err = run("train", "--resume", str(path), "--epochs", "2", "--features", "10", "--quiet")
    assert status == 2 and "--features 10 would change the run, which has --features 32" in err
    assert run("train", "--resume", str(path), "--epochs", "2", "--quiet")[0] == 0
    ckpt = gpunn.load_checkpoint(path)
    assert ckpt.epoch == 2 and ckpt.model.layer_sizes[0] == 32


def test_a_schedule_option_the_resumed_runs_schedule_does_not_read_is_refused_as_unused_not_as_a_change(tmp_path):
    """A cosine run reads no --gamma: resumed with --gamma 0.2 it was told "--gamma 0.2 would change the run, which
    has --gamma unset", and a run from before a Schedule refused an option it does not read (its checkpoint and
    options recording gamma 0.5, as gpunn then took it) "... which has --gamma 0.5", yet --gamma 0.5 was refused as
    unused. Each is refused as the unused option it is, with what to do on a resume. Without it the older run
    resumes as the newer one does, bit for bit, its record kept as written."""
    from gpunn.checkpoint import read_meta

    new, old = tmp_path / "new.npz", tmp_path / "old.npz"
    assert run("train", *BASE, "--schedule", "cosine", "--epochs", "2", "--save", str(new))[0] == 0

    def before_the_refusal(meta):
        meta["training"]["settings"]["schedule"].update(gamma=0.5)
        run_options(meta)["gamma"] = 0.5

    rewrite_meta(new, old, before_the_refusal)
    for path in (new, old):
        for gamma in ("0.2", "0.5"):
            status, _, err = run("train", "--resume", str(path), "--epochs", "3", "--gamma", gamma)
            assert status == 2 and err == (f"gpunn train: error: --gamma {gamma} sets the factor of --schedule step (per "
                                           "decay) and exponential (per epoch), and this run's schedule is cosine: "
                                           "drop it (a resumed run keeps its schedule)\n"), err
    for path in (new, old):
        assert run("train", "--resume", str(path), "--epochs", "3", "--quiet")[0] == 0
    resumed = [gpunn.load_checkpoint(path, device="cpu") for path in (new, old)]
    numpy.testing.assert_array_equal(resumed[0].model.params, resumed[1].model.params)
    assert resumed[1].epoch == 3 and resumed[1].training["settings"]["schedule"]["gamma"] == 0.5
    assert run_options(read_meta(old))["gamma"] == 0.5


def as_saved_before_the_schedule_options(path):
    """The run saved at ``path`` as gpunn saved it before --gamma, --step-size and --min-factor: none of them among
    its options (its checkpoint's schedule holds all three), and no PATH.toml."""
    def before_them(meta):
        options = run_options(meta)
        for newer in ("gamma", "step_size", "min_factor"):
            del options[newer]

    rewrite_meta(path, path, before_them)
    Path(str(path) + ".toml").unlink()


def test_an_exponential_run_saved_before_gamma_was_an_option_resumes_at_its_checkpoints_gamma(tmp_path):
    """gpunn train --schedule exponential trained at gamma 0.1 before --gamma existed and recorded no gamma among its
    options (its checkpoint's schedule holds 0.1): resumed alone, it continues bit for bit at 0.1, now refused to a
    run started without --gamma; --gamma 0.1 passes, another value is refused naming 0.1; the new PATH.toml has it."""
    from gpunn import config as cfgmod

    old, straight = tmp_path / "old.npz", tmp_path / "straight.npz"
    exponential = [*BASE, "--schedule", "exponential", "--gamma", "0.1"]
    assert run("train", *exponential, "--epochs", "3", "--save", str(straight))[0] == 0
    assert run("train", *exponential, "--epochs", "2", "--save", str(old))[0] == 0

    as_saved_before_the_schedule_options(old)
    status, _, err = run("train", "--resume", str(old), "--epochs", "3", "--gamma", "0.5", "--quiet")
    assert status == 2 and "--gamma 0.5 would change the run, which has --gamma 0.1" in err
    status, _, err = run("train", "--resume", str(old), "--epochs", "3", "--gamma", "0.1", "--quiet")
    assert status == 0, err
    resumed = gpunn.load_checkpoint(old, device="cpu")
    numpy.testing.assert_array_equal(resumed.model.params, gpunn.load_checkpoint(straight, device="cpu").model.params)
    assert resumed.training["history"]["lr"] == pytest.approx([1e-2, 1e-3, 1e-4], rel=1e-12)
    assert cfgmod.read_toml(str(old) + ".toml")["gamma"] == 0.1


def test_a_cosine_run_saved_before_the_schedule_options_resumes_recording_only_the_option_its_schedule_reads(tmp_path):
    """A run from before --gamma, --step-size and --min-factor records none of them among its options; its
    checkpoint's schedule holds all three fields. Resumed, it records the one its cosine reads (min_factor, 0.0): not
    step's gamma 0.1 and step size 10, which the resumed PATH.toml would pass to a run started from it, to be noted
    there as not used."""
    from gpunn import config as cfgmod
    from gpunn.checkpoint import read_meta

    old = tmp_path / "old.npz"
    assert run("train", *BASE, "--schedule", "cosine", "--epochs", "2", "--save", str(old))[0] == 0
    as_saved_before_the_schedule_options(old)
    status, _, err = run("train", "--resume", str(old), "--epochs", "3", "--quiet")
    assert status == 0, err
    saved = cfgmod.read_toml(str(old) + ".toml")
    assert saved["schedule"] == "cosine" and saved["min-factor"] == 0.0
    assert "gamma" not in saved and "step-size" not in saved
    options = run_options(read_meta(old))
    assert (options["gamma"], options["step_size"], options["min_factor"]) == (None, None, 0.0)


def test_the_batch_size_a_data_parallel_run_goes_on_at_is_its_global_batch_over_this_launchs_processes(monkeypatch):
    """A 4-rank run at --batch-size 25 (a global batch of 100) goes on at 50 on 2 ranks: --batch-size 50 is taken
    there, 100 refused saying so; where the processes cannot split it, no batch is taken but the recorded one (the
    fit refuses the split, naming the counts that can); a run going on at its recorded batch is said no global
    batch."""
    from gpunn.cli import resume as cli_resume
    from gpunn.distributed import comm

    for name in comm._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_SIZE", "2")
    assert cli_resume.batch_here({"batch_size": 25, "ranks": 4}) == (50, 100, 2)
    cli_resume.check("run.npz", {"batch_size": 50}, {"batch_size": 25}, 0, None, batch=(50, 100, 2))
    with pytest.raises(ValueError, match=r"--batch-size 100 would change the run, which has --batch-size 25 \(a global "
                                         r"batch of 100: --batch-size 50 in this launch's 2 processes\); a resumed"):
        cli_resume.check("run.npz", {"batch_size": 100}, {"batch_size": 25}, 0, None, batch=(50, 100, 2))
    monkeypatch.setenv("PMI_SIZE", "3")
    assert cli_resume.batch_here({"batch_size": 25, "ranks": 4}) is None
    with pytest.raises(ValueError, match=r"--batch-size 40 would change the run, which has --batch-size 25; a resumed"):
        cli_resume.check("run.npz", {"batch_size": 40}, {"batch_size": 25}, 0, None, batch=(25, 25, 1))


def test_a_refused_batch_size_that_is_the_runs_per_rank_batch_on_other_ranks_is_said_so():
    """A job line at --batch-size 64 started the run on 2 ranks; continued in one process (at 128, which its
    checkpoint records since), the same line in one process again was refused as a change of the run, which it is
    not on 2 ranks: the refusal says so. A value that no count of ranks makes the run's says nothing more."""
    from gpunn.cli import resume as cli_resume

    with pytest.raises(ValueError, match=r"--batch-size 64 would change the run, which has --batch-size 128 \(64 is its "
                                         r"per-rank batch on 2 ranks, mpiexec -n 2; in this launch's 1 process it is "
                                         r"128\); a resumed run continues"):
        cli_resume.check("run.npz", {"batch_size": 64}, {"batch_size": 128}, 0, None, batch=(128, 128, 1))
    with pytest.raises(ValueError, match=r"--batch-size 100 would change the run, which has --batch-size 128; a resumed"):
        cli_resume.check("run.npz", {"batch_size": 100}, {"batch_size": 128}, 0, None, batch=(128, 128, 1))
    with pytest.raises(ValueError, match=r"which has --batch-size 64 \(128 is its batch in one process; in this launch's "
                                         r"2 processes it is 64\); a resumed"):  # the one-process line under mpiexec -n 2
        cli_resume.check("run.npz", {"batch_size": 128}, {"batch_size": 64}, 0, None, batch=(64, 128, 2))
