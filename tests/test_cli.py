"""The gpunn command end to end, at small sizes."""
import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy
import pytest
import waiting
from cli_args import with_options

import gpunn
from gpunn import cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--rows", "3000", "--features", "6", "--hidden", "16,16", "--epochs", "3", "--batch-size", "64",
         "--device", "cpu"]


def test_train_prints_device_first_and_metrics_and_throughput_last(capsys, tmp_path):
    out_json = tmp_path / "run.json"
    assert cli.main(["train", *SMALL, "--quiet", "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "device: cpu (NumPy)"
    assert lines[-2].startswith("held-out: mse") and " r2 " in lines[-2]
    assert lines[-1].startswith("throughput:") and "samples/s" in lines[-1]
    saved = json.loads(out_json.read_text())
    assert saved["history"]["epoch"] == [1, 2, 3]
    assert saved["result"]["val_r2"] > 0.5


def test_the_result_is_the_last_epochs_loss_and_the_saved_models_held_out_metrics(capsys, tmp_path):
    out_json, path = tmp_path / "run.json", tmp_path / "run.npz"
    assert cli.main(["train", *SMALL, "--quiet", "--dtype", "float64", "--json", str(out_json), "--save", str(path)]) == 0
    saved = json.loads(out_json.read_text())
    result, history = saved["result"], saved["history"]
    assert not {"func", "debug"} & set(saved["config"])  # the run's options, not the process's
    assert result["train_loss"] == history["loss"][-1] and result["train_loss"] != history["loss"][0]
    assert result["train_seconds"] == sum(history["time_s"])  # every epoch's, the first too
    assert result["ranks"] == 1  # no launcher: one process
    X, Y = gpunn.datasets.make("teacher", 3000, 6, 1, seed=0, device="cpu", dtype="float64")  # the first tenth held out
    held_out = gpunn.load(path, device="cpu").evaluate(X[:300], Y[:300])
    assert [result[k] for k in ("val_mse", "val_mae", "val_r2")] == pytest.approx(
        [held_out["mse"], held_out["mae"], held_out["r2"]], rel=1e-12)


@pytest.mark.parametrize("args", [
    ["--activation", "gelu", "--optimizer", "nesterov", "--lr", "0.01", "--schedule", "cosine"],
    ["--task", "friedman1", "--features", "8", "--dtype", "float64", "--optimizer", "adamw"],
    ["--no-bias", "--optimizer", "sgd", "--outputs", "2"],
])
def test_train_options(capsys, args):
    assert cli.main(with_options(["train", *SMALL, "--quiet"], *args)) == 0
    assert "throughput:" in capsys.readouterr().out



SCHEDULED = ["--rows", "200", "--features", "3", "--hidden", "4", "--epochs", "2", "--optimizer", "sgd", "--device",
             "cpu", "--quiet"]  # sgd: --lr 1e-2


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_an_exponential_schedule_without_gamma_is_refused_before_anything_is_written(tmp_path, capsys, command):
    """--schedule exponential took 0.1 per epoch (lr 1e-3 was 1e-8 by epoch 6) with no way to say otherwise; it
    now needs --gamma, on the command line or in a config file, as PyTorch's ExponentialLR has no default."""
    save = tmp_path / ("run.npz" if command == "train" else "sweep")
    assert cli.main([command, *SCHEDULED, "--schedule", "Exponential", "--save", str(save)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gpunn {command}: error: --schedule exponential needs --gamma, its factor per epoch")
    assert "give e.g. --gamma 0.95" in err and not save.exists()
    (tmp_path / "run.toml").write_text('schedule = "exponential"\n')
    assert cli.main([command, *SCHEDULED, "--config", str(tmp_path / "run.toml")]) == 2
    assert "--schedule exponential needs --gamma" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "exponential (x --gamma each epoch; give its --gamma)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("options, lrs, recorded", [
    (["--schedule", "exponential", "--gamma", "0.5"], [1e-2, 5e-3], dict(gamma=0.5)),
    (["--schedule", "step", "--step-size", "1", "--gamma", "0.25"], [1e-2, 2.5e-3], dict(step_size=1, gamma=0.25)),
    (["--schedule", "step"], [1e-2, 1e-2], dict(step_size=10, gamma=0.1)),  # recorded as resolved
    (["--schedule", "cosine", "--min-factor", "0.5"], [1e-2, 7.5e-3], dict(min_factor=0.5)),
])
def test_the_schedule_options_reach_the_run_its_checkpoint_and_its_saved_config(tmp_path, options, lrs, recorded):
    """--gamma, --step-size and --min-factor set the Schedule the run trains by and the checkpoint records; the
    saved config and --json hold the numbers it used, and leave out those its schedule does not read."""
    from gpunn import config as cfgmod

    path, js = tmp_path / "run.npz", tmp_path / "run.json"
    assert cli.main(["train", *SCHEDULED, *options, "--save", str(path), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["history"]["lr"] == pytest.approx(lrs, rel=1e-12)
    assert gpunn.load_checkpoint(path).settings.schedule == gpunn.Schedule(options[1], **recorded)
    saved = cfgmod.read_toml(str(path) + ".toml")
    assert {k: v for k, v in saved.items() if k in ("gamma", "step-size", "min-factor")} == {
        k.replace("_", "-"): v for k, v in recorded.items()}
    config = json.loads(js.read_text())["config"]
    assert {k: config[k] for k in ("gamma", "step_size", "min_factor")} == {
        **dict.fromkeys(("gamma", "step_size", "min_factor")), **recorded}


def test_a_sweeps_schedule_options_reach_its_ensembles_and_their_checkpoints(tmp_path, capsys):
    from gpunn.cli import resume

    saved = tmp_path / "sweep"
    assert cli.main(["sweep", *SCHEDULED, "--schedule", "step", "--step-size", "1", "--gamma", "0.5", "--save",
                     str(saved), "--json", str(tmp_path / "s.json")]) == 0
    ckpt = gpunn.load_checkpoint(saved / "ensemble-0.npz")
    assert ckpt.settings.schedule == gpunn.Schedule("step", step_size=1, gamma=0.5)
    options = resume.saved_options(gpunn.checkpoint.read_meta(saved / "ensemble-0.npz"))
    assert (options["gamma"], options["step_size"], options["min_factor"]) == (0.5, 1, None)
    assert [lr for (lr,) in ckpt.training["history"]["lr"]] == pytest.approx([1e-2, 5e-3], rel=1e-12)  # one member


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("schedule, option, readers", [
    ("cosine", ["--gamma", "0.5"], "choose --schedule step or exponential (or drop it)"),
    ("constant", ["--gamma", "0.5"], "choose --schedule step or exponential (or drop it)"),
    ("exponential", ["--step-size", "3", "--gamma", "0.5"], "choose --schedule step (or drop it)"),
    ("step", ["--min-factor", "0.1"], "choose --schedule cosine (or drop it)"),
])
def test_a_schedule_option_its_schedule_does_not_read_is_refused_naming_the_schedule_that_does(
        capsys, command, schedule, option, readers):
    assert cli.main([command, *SCHEDULED, "--schedule", schedule, *option]) == 2
    err = capsys.readouterr().err
    assert f"error: {option[0]} {option[1]} sets " in err
    assert f"and this run's schedule is {schedule}: {readers}" in err


@pytest.mark.parametrize("schedule, option, says", [
    ("exponential", ["--step-size", "3", "--gamma", "0.5"], "--step-size 3 sets the epochs between the decays of "
     "--schedule step, and this run's schedule is exponential: choose --schedule step (or drop it)"),
    ("constant", ["--min-factor", "0.1"], "--min-factor 0.1 sets the floor of --schedule cosine, and this run's "
     "schedule is constant: choose --schedule cosine (or drop it)"),
    ("cosine", ["--gamma", "0.5"], "--gamma 0.5 sets the factor of --schedule step (per decay) and exponential (per "
     "epoch), and this run's schedule is cosine: choose --schedule step or exponential (or drop it)"),
])
def test_an_unread_schedule_option_is_refused_saying_what_it_sets(capsys, schedule, option, says):
    assert cli.main(["train", *SCHEDULED, "--schedule", schedule, *option]) == 2
    assert capsys.readouterr().err == f"gpunn train: error: {says}\n"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_the_schedule_options_help_gives_the_defaults_a_schedule_takes(capsys, command):
    """--help's defaults of step's --step-size and --gamma and cosine's --min-factor are the numbers gpunn.Schedule
    fills in for an option not given."""
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    step, cosine = gpunn.optim.make_schedule("step"), gpunn.optim.make_schedule("cosine")
    assert f"step: epochs between the decays (default: {step.step_size})" in text
    assert f"per decay for step (default: {step.gamma}, PyTorch's StepLR's)" in text
    assert f"as a fraction of --lr, in [0, 1] (default: {cosine.min_factor:g})" in text
    assert "learning-rate schedule, in any letter case (default: constant)" in text


def test_a_config_files_schedule_option_its_schedule_does_not_read_is_a_note(tmp_path, capsys):
    (tmp_path / "run.toml").write_text('schedule = "cosine"\ngamma = 0.5\n')
    assert cli.main(["train", *SCHEDULED, "--config", str(tmp_path / "run.toml")]) == 0
    assert f"note: {tmp_path / 'run.toml'}: gamma = 0.5 not used: this run's schedule is cosine" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--gamma", "0", r"must be in \(0, 1\], got 0"), ("--gamma", "1.5", r"must be in \(0, 1\], got 1.5"),
    ("--min-factor", "-0.1", r"must be in \[0, 1\], got -0.1"), ("--min-factor", "2", r"must be in \[0, 1\], got 2"),
    ("--step-size", "0", "must be positive, got 0"), ("--step-size", "1.5", "expected a whole number, got '1.5'"),
])
def test_a_schedule_option_out_of_its_range_is_refused_by_argparse(capsys, option, value, message):
    schedule = {"--gamma": "step", "--min-factor": "cosine", "--step-size": "step"}[option]
    with pytest.raises(SystemExit):
        cli.main(["train", *SCHEDULED, "--schedule", schedule, option, value])
    assert re.search(f"argument {option}: {message}", capsys.readouterr().err)


def test_the_closed_ends_of_the_schedule_options_ranges_are_taken():
    """--gamma is in (0, 1] and --min-factor in [0, 1], as their help says: 1 is a gamma (no decay) and 0 and 1 are
    floors (1: a constant rate)."""
    for option, value in (("--gamma", "1"), ("--min-factor", "1"), ("--min-factor", "0")):
        args = cli.parse_args(["train", "--schedule", "step" if option == "--gamma" else "cosine", option, value])
        assert getattr(args, option[2:].replace("-", "_")) == float(value)


def test_an_empty_hidden_is_a_linear_model_in_train_and_sweep(capsys):
    """--hidden '' (and hidden = [] in a config) trains no hidden layer, as --help now says."""
    assert cli.main(with_options(["train", *SMALL, "--quiet"], "--hidden", "")) == 0
    assert "model: [6, 1] identity, 7 parameters" in capsys.readouterr().out
    assert cli.main(with_options(["sweep", *SMALL, "--quiet"], "--hidden", " ")) == 0
    assert "1 member (1 lr x 1 weight decay x 1 seed(s)) of [6, 1]" in capsys.readouterr().out
    for name in ("train", "sweep"):
        hidden = next(a for a in cli.build_parser().commands[name]._actions if "--hidden" in a.option_strings)
        assert "'' for none, a linear model" in hidden.help and re.search(r"e\.g\. (\d+),\1 or \1x\1;", hidden.help)

@pytest.mark.parametrize("args, message", [
    (["--hidden", "16,-1"], "--hidden sizes must be positive"),
    (["--hidden", "16,0"], "--hidden sizes must be positive, got '16,0'"),
    (["--hidden", "16,,16"], "--hidden has an empty size in '16,,16'"),  # it trained [6, 16, 16, 1]
    (["--hidden", "16,"], "--hidden has an empty size in '16,'"),
    # x separates sizes (64x64): the refusal said "empty size" without a word of it, nor of the form taken
    (["--hidden", "16,x"], "--hidden has an empty size in '16,x': sizes are positive integers separated by commas "
                           "or x (256,256 or 256x256); write each size, or '' for no hidden layer"),
    (["--hidden", "16;16"], "--hidden takes positive integers separated by commas or x (256,256 or 256x256), got "
                            "'16;16'"),
    (["--lr", "0"], "must be positive"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs' ('lbfgs' is not supported); choose one of: sgd, momentum"),
    (["--optimizer", "bogus"], "invalid choice: 'bogus'"),  # no hint: argparse's refusal
    (["--rows", "19"], "--rows: must be at least 20, got 19 (a tenth is held out, and R² needs 2 held-out rows)"),
    (["--features", "0"], "--features: must be positive, got 0"),  # (audit35b's D4: a count of 0 taken)
])
def test_bad_options_fail_with_a_message(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(with_options(["train", *SMALL, "--quiet"], *args))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


PATH_OPTIONS = [("train", "--save"), ("train", "--resume"), ("train", "--config"), ("train", "--json"),
                ("train", "--csv"), ("train", "--plot"), ("train", "--data"), ("train", "--targets"), ("sweep", "--save"),
                ("sweep", "--resume"), ("sweep", "--save-best"), ("sweep", "--config"), ("sweep", "--data"),
                ("bench", "--json"), ("bench", "--plot")]


@pytest.mark.parametrize("argv, name", [
    # (at a small size: before, the run went on as if the option were left out)
    *(([command, *(["--quick"] if command == "bench" else [*SMALL, "--quiet"]), option, ""], option)
      for command, option in PATH_OPTIONS),
    (["predict", "", "in.npy", "out.npy"], "MODEL"), (["predict", "m.npz", "", "out.npy"], "IN"),
    (["predict", "m.npz", "in.npy", ""], "OUT"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_an_empty_path_is_refused_not_taken_as_the_option_left_out(capsys, argv, name):
    """`if args.save:` read "" as no --save: --save "" (a variable that expanded to nothing) wrote no checkpoint,
    --data "" trained on the synthetic task, --json "" wrote nothing, each without a word."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert f"gpunn {argv[0]}: error: argument {name}: expected a path, got ''" in capsys.readouterr().err


def test_every_option_that_names_a_file_refuses_an_empty_one():
    from gpunn.cli.common import file_path

    for name, command in cli.build_parser().commands.items():
        for action in command._actions:
            if action.metavar in ("PATH", "PNG", "TOML", "DIR", "Y.npy", "MODEL", "IN", "OUT"):
                assert action.type is file_path, (name, action.option_strings or action.metavar)


def test_a_path_from_the_home_directory_is_read_where_no_shell_expanded_its_tilde(tmp_path, capsys, monkeypatch):
    """bash expands ~ only at a word's start: --data=~/d/X.npy, a quoted '~/d/X.npy' and a config file's data =
    "~/d/X.npy" reached gpunn as written and were refused as missing ("~/d/X.npy: no such file"), --save's as
    "directory '/cwd/~/d' does not exist". Each is the home directory's, as a shell reads an unquoted one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    X = numpy.random.default_rng(0).standard_normal((40, 2))
    numpy.save(tmp_path / "d" / "X.npy", X)
    numpy.save(tmp_path / "d" / "Y.npy", X[:, :1])
    small = ["--epochs", "1", "--hidden", "4", "--device", "cpu", "--quiet"]
    assert cli.main(["train", "--data=~/d/X.npy", "--targets", "~/d/Y.npy", *small, "--save=~/d/m.npz"]) == 0
    assert cli.main(["predict", "~/d/m.npz", "~/d/X.npy", "~/d/o.npy"]) == 0
    assert numpy.load(tmp_path / "d" / "o.npy").shape == (40, 1)
    (tmp_path / "run.toml").write_text('data = "~/d/X.npy"\ntargets = "~/d/Y.npy"\nsave = "~/d/c.npz"\n')
    assert cli.main(["train", "--config", "run.toml", *small]) == 0
    assert (tmp_path / "d" / "c.npz").is_file() and not (tmp_path / "~").exists()
    capsys.readouterr()


def test_twenty_rows_are_the_fewest_train_and_sweep_take(capsys):
    """A tenth of --rows is held out and R² needs 2 held-out rows: 20 train and score in both commands; sweep
    refuses 19 in its own words (train's parser refuses it: test_bad_options_fail_with_a_message)."""
    assert cli.main(with_options(["train", *SMALL, "--quiet"], "--rows", "20", "--batch-size", "8")) == 0
    assert "18 training rows, 2 validation" in capsys.readouterr().out
    assert cli.main(with_options(["sweep", *SMALL, "--quiet"], "--rows", "20", "--batch-size", "8")) == 0
    assert "18 training rows, 2 validation rows" in capsys.readouterr().out
    assert cli.main(with_options(["sweep", *SMALL, "--quiet"], "--rows", "19")) == 2
    assert "--rows must be at least 20 (a tenth is held out), got 19" in capsys.readouterr().err


def test_the_memory_check_counts_the_standardized_copy_of_the_rows(capsys, monkeypatch):
    from gpunn import preflight

    need = {scaled: sum(preflight.train_memory(3000, 6, 1, 4, [6, 16, 16, 1], 64, standardize=scaled).values())
            for scaled in (False, True)}
    monkeypatch.setattr(preflight, "host_available_bytes", lambda: (need[False] + need[True]) // 2)
    args = with_options(["train", *SMALL, "--quiet"], "--epochs", "1", "--stream", "off")
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args + ["--standardize"]) == 2
    assert "--rows 3,000 needs about" in capsys.readouterr().err


def test_reduce_lr_patience_halves_the_rate_after_an_epoch_without_improvement(tmp_path, capsys):
    js = tmp_path / "run.json"
    assert cli.main(["train", "--rows", "300", "--features", "3", "--hidden", "4", "--optimizer", "sgd", "--lr", "0.5",
                     "--epochs", "5", "--batch-size", "128", "--reduce-lr-patience", "1", "--quiet", "--device", "cpu",
                     "--dtype", "float64", "--json", str(js)]) == 0
    history = json.loads(js.read_text())["history"]
    assert history["val_loss"][2] > history["val_loss"][1]  # epoch 3 did not improve: epoch 4 trains at half
    assert history["lr"] == [0.5, 0.5, 0.5, 0.25, 0.25]


@pytest.fixture
def npy_pair(tmp_path):
    X, Y = gpunn.datasets.make("teacher", 300, 3, 1, seed=2, device="cpu", dtype="float64")
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)
    return ["--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy")]


@pytest.mark.parametrize("where", ["task", "file"])
def test_the_schedule_and_a_resumes_save_reach_the_run_on_a_task_and_on_a_file(tmp_path, capsys, npy_pair, where):
    """--schedule cosine halves the rate in epoch 2 of 2; resumed with --save elsewhere, the continuation is written
    there and the checkpoint resumed stays as it was."""
    data = ["--rows", "300", "--features", "3"] if where == "task" else npy_pair
    js, first, moved = tmp_path / "run.json", tmp_path / "run.npz", tmp_path / "moved.npz"
    args = ["train", *data, "--hidden", "4", "--optimizer", "sgd", "--schedule", "cosine", "--epochs", "2",
            "--batch-size", "64", "--device", "cpu", "--quiet"]
    assert cli.main([*args, "--json", str(js)]) == 0
    assert json.loads(js.read_text())["history"]["lr"] == pytest.approx([1e-2, 5e-3], rel=1e-12)
    assert cli.main(with_options(args, "--epochs", "1", "--save", str(first))) == 0
    if where == "task":  # files given to a run that read none would change it: refused by name
        assert cli.main(["train", "--resume", str(first), "--epochs", "2", *npy_pair, "--quiet"]) == 2
        assert ("--data " + npy_pair[1] + ", --targets " + npy_pair[3] + " would change the run, which has --data "
                "unset, --targets unset") in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(first), "--epochs", "2", "--save", str(moved), "--quiet"]) == 0
    assert [gpunn.load_checkpoint(p).epoch for p in (first, moved)] == [1, 2]


def test_checkpoint_every_writes_the_checkpoint_every_that_many_epochs_and_at_the_end(tmp_path, capsys, monkeypatch):
    from gpunn import checkpoint

    saves, save = [], checkpoint.ModelCheckpoint.save
    monkeypatch.setattr(checkpoint.ModelCheckpoint, "save",
                        lambda self, trainer, logs=None: saves.append(1) or save(self, trainer, logs))
    assert cli.main(with_options(["train", *TINY, "--save", str(tmp_path / "run.npz"), "--checkpoint-every", "2"],
                                 "--epochs", "4")) == 0
    assert len(saves) == 3  # after epochs 2 and 4, and the end's


def test_a_network_too_big_for_the_memory_is_refused_before_training_on_a_data_file(tmp_path, capsys, monkeypatch):
    from gpunn import preflight

    numpy.save(tmp_path / "x.npy", numpy.ones((30, 2)))
    numpy.save(tmp_path / "y.npy", numpy.ones((30, 1)))
    monkeypatch.setattr(preflight, "host_available_bytes", lambda: 3_000_000)
    assert cli.main(["train", "--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), "--hidden",
                     "2048,2048", "--epochs", "1", "--quiet", "--device", "cpu"]) == 2
    assert "the network [2, 2048, 2048, 1] alone needs about 65.4 MiB of host memory" in capsys.readouterr().err


def test_seed_starts_the_model_as_mlp_seed_does_and_plot_is_never_standard_output(tmp_path, capsys):
    path = tmp_path / "run.npz"
    args = ["train", "--rows", "300", "--features", "3", "--hidden", "4", "--epochs", "1", "--batch-size", "64",
            "--device", "cpu", "--dtype", "float64", "--quiet"]
    assert cli.main([*args, "--seed", "3", "--save", str(path)]) == 0
    X, Y = gpunn.datasets.make("teacher", 300, 3, 1, seed=3, device="cpu", dtype="float64")
    twin = gpunn.MLP([3, 4, 1], seed=3, device="cpu", dtype="float64")
    twin.fit(X[30:], Y[30:], epochs=1, batch_size=64, validation_data=(X[:30], Y[:30]), verbose=False)
    numpy.testing.assert_array_equal(gpunn.load(path, device="cpu").params, twin.params)
    assert cli.main([*args, "--plot", "-"]) == 2  # - is standard output for --json and --csv only
    assert "--plot -: the name must end in .png, .pdf or .svg" in capsys.readouterr().err


def test_a_report_is_written_to_a_temp_file_renamed_into_place(tmp_path, capsys):
    """README: an output that is not a device or a pipe is written to a temp file that is renamed into place, so a
    run killed while writing leaves the old one whole; another name for the old file (a hard link) keeps it."""
    out, kept = tmp_path / "run.json", tmp_path / "kept.json"
    out.write_text("{}\n")
    os.link(out, kept)
    assert cli.main(["train", *TINY, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["history"]["epoch"] == [1] and kept.read_text() == "{}\n"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_plot_is_written_to_a_temp_file_renamed_into_place(tmp_path, capsys, monkeypatch, command):
    """README says so of every output; --plot was matplotlib's savefig(path), which wrote the file in place: a
    Ctrl-C (or a full disk) part-way cut an earlier plot of that name short. The run's plot replaces it whole, in
    the format its name says, and an interrupted one leaves it as it was, with no temp file."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    plot, kept = tmp_path / "loss.svg", tmp_path / "kept.svg"
    plot.write_text("an earlier run's plot\n")
    os.link(plot, kept)
    args = [command, *TINY, "--plot", str(plot)] + (["--lr", "1e-3,1e-2"] if command == "sweep" else [])
    assert cli.main(args) == 0
    assert plot.read_text().startswith("<?xml") and kept.read_text() == "an earlier run's plot\n"
    save = Figure.savefig

    def interrupted(fig, fname, **options):
        save(fig, fname, **options)  # most of it written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    before = plot.read_text()
    plot.write_text(before[:100])  # (another plot: the rerun's must not be it)
    before = plot.read_text()
    assert cli.main(args) == 130
    assert plot.read_text() == before and sorted(os.listdir(tmp_path)) == ["kept.svg", "loss.svg"]
    import matplotlib.pyplot as plt

    assert not plt.get_fignums()  # none left open (the plots draw on figures of no pyplot's)
    capsys.readouterr()


@pytest.mark.parametrize("plotter", ["train", "sweep", "bench"])
def test_a_plot_leaves_the_processs_matplotlib_backend_and_figures_alone(tmp_path, monkeypatch, plotter):
    """The plots called matplotlib.use("Agg") and drew with pyplot: in a notebook, `%run -m gpunn train --plot
    loss.png` (the command run in the kernel's process) switched its backend to Agg, and every later plt.show() in
    the notebook showed nothing. A plot now draws on a figure of no pyplot's: the backend, and a figure the user has
    open and current, stay as they were."""
    pytest.importorskip("matplotlib")
    import matplotlib
    import matplotlib.pyplot as plt

    from gpunn import bench
    from gpunn.cli import sweep, train

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend that is not Agg, as a notebook's inline one is not
    try:
        mine = plt.figure()
        path = tmp_path / "p.png"
        if plotter == "train":
            train.plot_history({"epoch": [1, 2], "loss": [2.0, 1.0]}, path)
        elif plotter == "sweep":
            sweep.plot_curves([{"val_curve": [2.0, 1.0], "lr": 0.1, "weight_decay": 0.0, "seed": 0}], path)
        else:
            row = dict(config="tiny", backend="cpu", impl="gpunn", label="gpunn (cpu)", samples_per_s=1e3,
                       fraction_of_gemm=0.5)
            bench.plot({"setup": {"date": "2026-12-02", "machine": "box", "cores": 2, "blas": "OpenBLAS"},
                        "results": [row]}, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == [mine.number] and plt.gcf() is mine
    finally:
        plt.close("all")
        matplotlib.use(before)


def test_where_the_memory_free_is_unknown_the_rows_are_held_in_memory(capsys, monkeypatch):
    from gpunn import preflight

    monkeypatch.setattr(preflight, "host_available_bytes", lambda: None)
    assert cli.main(with_options(["train", *SMALL, "--quiet"], "--epochs", "1")) == 0
    assert "data: 3,000 rows materialized on cpu (" in capsys.readouterr().out


def test_bad_device_fails_with_a_message_and_status_2(capsys):
    assert cli.main(with_options(["train", *SMALL, "--quiet"], "--device", "tpu")) == 2
    assert "gpunn train: error: unknown device 'tpu'" in capsys.readouterr().err


def test_info_names_backend_and_blas(capsys):
    assert cli.main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for key in ("gpunn", "numpy", "blas", "cupy", "device"):
        assert key in out


def test_the_command_line_does_not_load_the_benchmark_until_bench_or_info_runs():
    # gpunn.bench (its runners, peers and report) cost every command ~20 ms of start-up, gpunn predict too,
    # when gpunn info imported bench.system at the top (importing a submodule runs gpunn/bench/__init__)
    code = ("import sys, gpunn.cli; gpunn.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('gpunn.bench')))")
    proc = waiting.run([sys.executable, "-c", code], timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_console_entry_point_as_a_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPUNN_DEVICE": "cpu"}
    proc = waiting.run([sys.executable, "-m", "gpunn", *with_options(["train", *SMALL[:-2]], "--epochs", "2")],
                       env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("device: cpu")
    # progress goes to stderr; there a pipe, as a log file: a line per epoch, no bar's carriage-return redraws.
    # An epoch that lasts over a minute also gets a line inside it ("epoch left"), as a loaded machine's may
    assert "\r" not in proc.stderr
    assert [line.split(":")[0] for line in proc.stderr.splitlines() if "rows/s" in line and "epoch left" not in line
            ] == ["train [cpu] epoch 1/2", "train [cpu] epoch 2/2"]


def test_help_lists_every_option():
    text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in ("--rows", "--hidden", "--activation", "--epochs", "--batch-size", "--optimizer", "--lr",
                 "--device", "--dtype", "--seed"):
        assert flag in text



@pytest.mark.parametrize("columns", [60, 80, 100, 120])
def test_help_never_splits_a_word(monkeypatch, columns):
    """argparse wraps help with textwrap, which breaks a line inside a hyphenated word (and anywhere in one longer
    than the line): at 80 columns gpunn sweep --help printed "--save-" and "best" on two lines, gpunn bench --help
    "torch-" and "loop", gpunn train --help "--no-" and "graph", names a reader copies. Lines break between words
    only: every word of a help text is a word of the output."""
    monkeypatch.setenv("COLUMNS", str(columns))
    parser = cli.build_parser()
    for name, command in [("gpunn", parser), *parser.commands.items()]:
        words = set(command.format_help().split())
        actions = [*command._actions, *(a for action in command._actions for a in getattr(action, "_choices_actions", ()))]
        texts = [command.description or ""] + [action.help or "" for action in actions]
        split = {word for text in texts for word in text.split() if "%" not in word and word not in words}
        assert not split, (name, sorted(split))


def test_tensor_core_precision_on_the_cpu_fails_with_a_message_and_status_2(capsys):
    assert cli.main(["train", *SMALL, "--quiet", "--precision", "bf16"]) == 2
    captured = capsys.readouterr()
    assert "gpunn train: error: --precision bf16 runs the matrix products" in captured.err and "needs a CUDA GPU" in captured.err
    assert "data:" not in captured.out  # refused before the rows are generated (minutes for --rows 1e9)


@pytest.mark.gpu
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_tensor_core_precision_in_float64_is_refused_on_the_gpu_before_the_data(capsys, monkeypatch, command):
    def no_data(*args, **kwargs):
        raise AssertionError("the data were generated before --precision was refused")

    monkeypatch.setattr(gpunn.datasets, "make", no_data)
    args = with_options([command, *SMALL, "--quiet"], "--device", "cuda", "--precision", "bf16", "--dtype", "float64")
    assert cli.main(args) == 2
    assert "--precision bf16 keeps float32 master weights and needs --dtype float32, got float64" in \
        capsys.readouterr().err


@pytest.mark.gpu
def test_a_run_saved_on_the_cpu_resumes_there_where_auto_would_take_the_gpu(tmp_path, capsys, monkeypatch):
    """Another kind of device draws other random data: --device auto, resolved to the CPU when the run started
    (here by GPUNN_DEVICE), resumes on the recorded kind, not where auto resolves now."""
    path = tmp_path / "run.npz"
    with monkeypatch.context() as m:
        m.setenv("GPUNN_DEVICE", "cpu")
        assert cli.main(with_options(["train", *SMALL, "--quiet", "--save", str(path)], "--epochs", "1", "--device",
                                     "auto")) == 0
    assert "device: cpu" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(path), "--epochs", "2", "--quiet"]) == 0
    assert "device: cpu" in capsys.readouterr().out and gpunn.load_checkpoint(path).epoch == 2


def test_train_with_graph_on_the_cpu_runs_without_capture(capsys):
    assert cli.main(["train", *SMALL, "--quiet", "--graph"]) == 0
    assert "no CUDA graph (no GPU: the step runs eagerly), batch 64" in capsys.readouterr().out
    for flags in ([], ["--no-graph"]):  # the default (auto: off on the CPU, silently) and off
        assert cli.main(["train", *SMALL, "--quiet", *flags]) == 0
        out = capsys.readouterr().out
        assert "graph" not in out.lower() and ", batch 64" in out, flags


def test_bench_names_its_own_device_all_when_it_refuses_an_unknown_device(capsys):
    """gpunn bench --device tpu listed 'auto', 'cpu', 'cuda' or 'cuda:N', not the 'all' it takes by default."""
    assert cli.main(["bench", "--device", "tpu", "--quick"]) == 2
    assert capsys.readouterr().err.strip() == ("gpunn bench: error: unknown device 'tpu'; use 'all' (the default), 'auto', "
                                               "'cpu', 'cuda' or 'cuda:N'")
    assert cli.main(["train", "--device", "tpu"]) == 2
    assert "'all'" not in capsys.readouterr().err  # (train takes no 'all')


def test_bench_device_refusal_lists_resolves_names_not_its_words(capsys, monkeypatch):
    """bench built its list by rewriting resolve's message; it lists resolve's DEVICE_NAMES, whatever the words."""
    from gpunn import backend

    monkeypatch.setattr(backend, "DEVICE_NAMES", ("'cpu'", "'cuda'"))
    assert cli.main(["bench", "--device", "tpu", "--quick"]) == 2
    assert capsys.readouterr().err.strip() == "gpunn bench: error: unknown device 'tpu'; use 'all' (the default), 'cpu' or 'cuda'"
    with pytest.raises(ValueError, match=r"^unknown device 'tpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'$"):
        backend.resolve("tpu")  # (its default argument is the tuple as defined)


def test_bench_precision_variants():
    from gpunn.cli.bench import variants

    assert variants("float32", False) == []
    assert variants("float32,tf32,bf16", False) == [("tf32", None), ("bf16", None)]
    assert variants("bf16", True) == [("bf16", None), ("bf16", False)]
    assert variants("float32", True) == [("float32", False)]
    assert variants("", True) == variants(" , ", True) == [("float32", False)]  # no name given: float32, the default
    assert variants("bf16,tf32,bf16", False) == [("bf16", None), ("tf32", None)]  # a name given twice: one row
    with pytest.raises(ValueError, match="unknown precision"):
        variants("fp8", False)


def test_info_says_which_cpu_kernels_are_active(capsys, monkeypatch):
    pytest.importorskip("numba")
    assert cli.main(["info", "--device", "cpu"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("cpu kernels"))
    assert "fused (Numba" in line and "adam" in line and "bias_relu" in line
    monkeypatch.setenv("GPUNN_FUSED_KERNELS", "0")
    assert cli.main(["info", "--device", "cpu"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("cpu kernels"))
    assert line.split(None, 2)[2].startswith("off: GPUNN_FUSED_KERNELS=0")


def test_whole_numbers_may_be_written_with_underscores_or_an_exponent():
    # README: "Whole numbers may be written 2_000_000 or 1e6" -- --features and --hidden included
    args = cli.parse_args(["train", "--rows", "2_000", "--features", "1e1", "--hidden", "1_6,3.2e1", "--epochs", "1e0"])
    assert (args.rows, args.features, args.hidden, args.epochs) == (2000, 10, [16, 32], 1)
    assert cli.parse_args(["train", "--features", "1_0"]).features == 10
    assert cli.parse_args(["train", "--hidden", "64x64"]).hidden == [64, 64]
    assert cli.parse_args(["train", "--data", "t.csv", "--features", "a,b"]).features == ["a", "b"]  # a table's columns
    assert cli.parse_args(["train", "--data", "t.csv", "--features", "x1"]).features == ["x1"]
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "--hidden", "16,2.5"])


def test_the_result_line_says_the_batch_fit_trained_at(capsys):
    # 90 training rows at --batch-size 256: fit trains at 90 rows a step (full batch), and the line says so
    assert cli.main(["train", "--rows", "100", "--features", "3", "--hidden", "4", "--epochs", "1",
                     "--batch-size", "256", "--device", "cpu", "--quiet"]) == 0
    assert ", batch 90\n" in capsys.readouterr().out


def test_a_rank_other_than_0_does_not_evaluate_the_held_out_rows_after_training(monkeypatch, capsys):
    # under mpiexec every rank ran the final held-out evaluation (for --data or a stream: read every
    # held-out chunk again) though only rank 0 prints it
    from gpunn import metrics
    from gpunn.cli import train

    calls = []
    evaluate = metrics.RegressionEvaluator.evaluate
    monkeypatch.setattr(metrics.RegressionEvaluator, "evaluate", lambda self, m: calls.append(1) or evaluate(self, m))
    for root, after_fit in ((True, 1), (False, 0)):
        calls.clear()
        monkeypatch.setattr(train, "_launch", lambda device, root=root: (False, root, device))
        assert cli.main(["train", *SMALL, "--quiet"]) == 0
        assert len(calls) == 3 + after_fit  # one per epoch in fit, and the result line's
    capsys.readouterr()


def test_under_a_launcher_auto_and_cuda_take_the_gpu_of_the_local_rank_and_a_named_device_stays(monkeypatch, capsys):
    import gpunn.distributed
    from gpunn.cli import train

    monkeypatch.setattr(gpunn.distributed, "launched_size", lambda: 2)  # as rank 0 of mpiexec -n 2, local rank 1
    monkeypatch.setattr(gpunn.distributed, "launched_rank", lambda: 0)
    monkeypatch.setattr(gpunn.distributed, "local_device", lambda default: "cuda:1" if default != "cpu" else "cpu")
    assert [train._launch(device) for device in ("auto", "cuda", "cuda:0", "cpu")] == [
        (True, True, "cuda:1"), (True, True, "cuda:1"), (True, True, "cuda:0"), (True, True, "cpu")]
    assert "launched by MPI with 2 processes: training data parallel" in capsys.readouterr().out


def test_only_rank_0_checks_the_outputs_it_alone_writes(monkeypatch, tmp_path, capsys):
    # under mpiexec on several nodes, --json's directory may exist on rank 0's node only: the other ranks,
    # which write nothing, refused the run ('--json ...: no such directory') and so ended the job
    from gpunn.cli import train

    out = ["--json", str(tmp_path / "only-on-node-0" / "run.json")]
    monkeypatch.setattr(train, "_launch", lambda device: (False, False, device))
    assert cli.main(["train", *SMALL, "--quiet", *out]) == 0
    monkeypatch.setattr(train, "_launch", lambda device: (False, True, device))
    assert cli.main(["train", *SMALL, "--quiet", *out]) == 2  # rank 0 refuses before training
    assert "--json" in capsys.readouterr().err


def test_a_late_ctrl_c_after_an_agreed_data_parallel_stop_does_not_end_the_run(monkeypatch, capsys):
    # mpiexec hands Ctrl-C to each rank in turn: the ranks may have stopped on rank 1's before rank 0's own
    # arrives, after its fit returned; it raised KeyboardInterrupt there, and under mpiexec the job was
    # aborted while rank 0 wrote its outputs
    import os
    import signal
    import sys

    from gpunn import metrics
    from gpunn.cli import train
    from gpunn.distributed import comm

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # one process, no MPI: the LocalComm
    monkeypatch.setattr(comm, "_WORLD", {})
    calls = []

    def another_ranks_ctrl_c(self, flag, label=None):  # in epoch 2: the ranks agree to stop
        calls.append(label)
        return len(calls) > 50  # 43 batches an epoch

    monkeypatch.setattr(comm.LocalComm, "any", another_ranks_ctrl_c)
    monkeypatch.setattr(train, "_launch", lambda device: (True, True, device))
    evaluate = metrics.RegressionEvaluator.evaluate

    def late_ctrl_c(self, model):  # the result line's evaluation, after the fit
        os.kill(os.getpid(), signal.SIGINT)
        return evaluate(self, model)

    monkeypatch.setattr(metrics.RegressionEvaluator, "evaluate", late_ctrl_c)
    previous = signal.getsignal(signal.SIGINT)
    try:
        assert cli.main(["train", *SMALL, "--quiet"]) == 130  # interrupted, as agreed
    finally:
        signal.signal(signal.SIGINT, previous)
    out = capsys.readouterr().out
    assert ("interrupted after 1 complete epoch; not saved: --save PATH keeps a run that gpunn train --resume PATH "
            "continues\n" in out and "held-out (the weights " in out and " batches into epoch 2): mse " in out)


TINY = ["--rows", "200", "--features", "3", "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet"]


def test_saves_config_beside_it_is_checked_before_training(tmp_path, capsys):
    """--save PATH also writes PATH.toml once the run has a checkpoint: a directory there is refused at the start,
    not after the training it would have cost."""
    path = tmp_path / "run.npz"
    (tmp_path / "run.npz.toml").mkdir()
    assert cli.main(["train", *TINY, "--save", str(path)]) == 2
    assert f"--save (its config) {path}.toml is a directory; give a file name" in capsys.readouterr().err
    assert not path.exists()


def test_a_resumes_config_beside_its_checkpoint_is_checked_before_training_too(tmp_path, capsys):
    """--resume PATH without --save goes on saving to PATH, and writes PATH.toml: a directory there is refused before
    the run goes on, as for --save (audit35b's T33: only --save's was checked, and the resume trained first)."""
    path = tmp_path / "run.npz"
    assert cli.main(["train", *TINY, "--save", str(path)]) == 0
    (tmp_path / "run.npz.toml").unlink()
    (tmp_path / "run.npz.toml").mkdir()
    saved = path.read_bytes()
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(path), "--epochs", "2", "--quiet"]) == 2
    assert f"--save (its config) {path}.toml is a directory; give a file name" in capsys.readouterr().err
    assert path.read_bytes() == saved


@pytest.mark.parametrize("command, option", [("train", "--save"), ("sweep", "--save-best")])
def test_a_checkpoint_named_as_a_data_file_or_report_is_refused_before_training(tmp_path, capsys, command, option):
    """A model written as best.csv was taken for data by its name (gpunn train --resume best.csv: "it is a data
    file"), by gpunn and any other tool; train's --save and sweep's --save-best take any other name."""
    args = ["train", *TINY] if command == "train" else ["sweep", "--rows", "200", "--features", "3", "--hidden", "4",
                                                         "--epochs", "1", "--quiet", "--device", "cpu"]
    for name, kind in [("best.csv", "a data file"), ("best.Parquet", "a data file"), ("best.json", "a JSON report"),
                       ("best.toml", "a config file"), ("best.svg", "a plot")]:
        assert cli.main([*args, option, str(tmp_path / name)]) == 2
        out = capsys.readouterr()
        assert out.out == "" and not (tmp_path / name).exists()
        stem = tmp_path / name.split(".")[0]
        assert (f"{option} {tmp_path / name}: a .{name.split('.')[1]} name says {kind}, but this writes a gpunn "
                f"checkpoint (an .npz archive), which gpunn and other tools would then read as {kind}: name it .npz, "
                f"e.g. {stem}.npz") in out.err
    assert cli.main([*args, option, str(tmp_path / "best.ckpt")]) == 0
    assert gpunn.load(tmp_path / "best.ckpt")


def test_a_device_or_precision_from_the_config_file_that_this_machine_lacks_is_refused_by_its_key(tmp_path, capsys,
                                                                                                  no_gpu):
    """A GPU machine's RUN.npz.toml (device = "cuda", precision = "bf16") fed to gpunn train on a laptop was refused
    as "device 'cuda' was requested" and "--precision bf16 ...", neither naming the file the user did not think of
    as asking for a GPU. Each names the file and its key now, and that the command line overrides it; with
    --device cpu --precision float32 the file's run trains, and its --json config holds the options alone."""
    config = tmp_path / "gpu.npz.toml"
    config.write_text('rows = 200\nfeatures = 3\nhidden = [4]\nepochs = 1\ndevice = "cuda"\nprecision = "bf16"\n')
    assert cli.main(["train", "--config", str(config)]) == 2
    assert (f'error: {config}: device = "cuda": device \'cuda\' was requested but ') in capsys.readouterr().err
    for command in ("train", "sweep"):
        assert cli.main([command, "--config", str(config), "--device", "cpu"]) == 2
        assert (f'error: {config}: precision = "bf16" runs the matrix products on NVIDIA tensor cores and needs a CUDA '
                "GPU, and this run is on cpu: give --precision float32 there (the command line overrides the file)"
                ) in capsys.readouterr().err
    assert cli.main(["train", "--config", str(config), "--device", "cuda"]) == 2
    assert "error: device 'cuda' was requested" in capsys.readouterr().err  # typed: in its own words, as before
    report = tmp_path / "run.json"
    assert cli.main(["train", "--config", str(config), "--device", "cpu", "--precision", "float32", "--quiet",
                     "--json", str(report)]) == 0
    assert "config_keys" not in json.loads(report.read_text())["config"]


def test_a_report_over_the_config_file_the_run_reads_is_refused(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("epochs = 1\n")
    assert cli.main(["train", *TINY, "--config", str(config), "--json", str(config)]) == 2
    assert f"--json and --config both name {config}; give each its own file" in capsys.readouterr().err
    assert config.read_text() == "epochs = 1\n"


def test_a_report_refuses_to_replace_a_file_it_did_not_write(tmp_path, capsys):
    """gpunn train --csv t.csv, taken for a CSV input, trained the synthetic task and wrote its history over the
    data (--json over an array or a checkpoint alike). --json and --csv replace what they wrote (train's history,
    sweep's table), or an empty file; any other file is refused before the run, saying what it is and, for data, the
    option that reads it."""
    data, array, model, arrays = tmp_path / "t.csv", tmp_path / "x.npy", tmp_path / "m.npz", tmp_path / "xy.npz"
    data.write_text("a,b,y\n1,2,3\n")
    wide = tmp_path / "WIDE.CSV"  # a first line of 169 characters, in a name in capitals
    wide.write_text(",".join(f"column{i}" for i in range(20)) + "\n" + ",".join("1" * 20) + "\n")
    late = tmp_path / "late.csv"  # UTF-8 in its first 4 KiB (text), a Latin-1 byte on line 1001
    late.write_bytes(b"a,b,y\n" + b"1,2,3\n" * 999 + b"caf\xe9,2,3\n")
    numpy.save(array, numpy.zeros((2, 2)))
    gpunn.save(model, gpunn.MLP([3, 1], device="cpu"))
    numpy.savez(arrays, X=numpy.zeros((2, 2)), Y=numpy.zeros(2))
    before = {path: path.read_bytes() for path in (data, array, model, arrays, wide, late)}
    refusals = [("--csv", data, f"(a CSV file whose first line is 'a,b,y'); refusing to overwrite it: --csv writes "
                                f"this run's report, choose another name (to train on it: --data {data} --target "
                                "COLUMN)"),
                ("--json", array, f"(a .npy array); refusing to overwrite it: --json writes this run's report, choose "
                                  f"another name (to train on it: --data {array} --targets Y.npy)"),
                ("--csv", model, "(a gpunn checkpoint); refusing to overwrite it: --csv writes this run's report, "
                                 "choose another name"),
                # (it said "no gpunn_meta member", and "to train on it: --data xy.npz --targets Y.npy": no --data file)
                ("--json", arrays, "(an .npz archive of the arrays X, Y); refusing to overwrite it: --json writes this "
                                   "run's report, choose another name"),
                ("--json", wide, "(a CSV file whose first line is 'column0,column1,column2,column3,column4,column5,"
                                 "column6,colu'); refusing to overwrite it: --json writes this run's report, choose "
                                 f"another name (to train on it: --data {wide} --target COLUMN)"),
                ("--csv", late, f"(a CSV file whose first line is 'a,b,y'); refusing to overwrite it: --csv writes "
                                f"this run's report, choose another name (to train on it: --data {late} --target "
                                "COLUMN)")]
    for option, path, refusal in refusals:
        assert cli.main(["train", *TINY, option, str(path)]) == 2
        assert capsys.readouterr().err == (f"gpunn train: error: {option} {path} exists and is not a report gpunn "
                                           f"wrote {refusal}\n")
    assert cli.main(["sweep", *TINY, "--csv", str(data)]) == 2
    assert "--csv writes this run's report" in capsys.readouterr().err
    assert cli.main(["bench", "--quick", "--device", "cpu", "--peers", "none", "--json", str(array)]) == 2
    assert "(a .npy array); refusing to overwrite it: --json writes this run's report" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (data, array, model, arrays, wide, late)} == before
    report, empty = tmp_path / "h.csv", tmp_path / "empty.json"
    empty.write_text("")  # (mktemp's)
    assert cli.main(["train", *TINY, "--csv", str(report), "--json", str(empty)]) == 0
    assert cli.main(["train", *TINY, "--csv", str(report), "--json", str(empty)]) == 0  # its own reports, replaced
    assert report.read_text().startswith("epoch,loss,") and empty.read_text().startswith("{")
    table = tmp_path / "table.csv"
    assert cli.main(["sweep", *TINY, "--csv", str(table)]) == 0
    assert cli.main(["sweep", *TINY, "--csv", str(table)]) == 0  # a sweep's table, replaced by the next sweep
    assert table.read_text().startswith("member,lr,")
    capsys.readouterr()


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_report_whose_name_says_another_kind_of_file_is_refused_before_the_run(tmp_path, capsys, command):
    """gpunn sweep --csv out.json (and train's, and --json out.csv) wrote CSV into a .json name without a word, which
    a reader then took for JSON; refused now before the run, as --save best.csv is. A name of no kind (.txt) and
    the report's own suffix in any case are written."""
    for option, name, says, own in (("--csv", "out.json", "a JSON report", "CSV text"),
                                    ("--json", "out.csv", "a data file", "JSON"),
                                    ("--csv", "out.npz", "a gpunn checkpoint", "CSV text"),
                                    ("--json", "out.png", "a plot", "JSON")):
        path = tmp_path / name
        assert cli.main([command, *TINY, option, str(path)]) == 2
        right = tmp_path / ("out" + option.replace("--", "."))
        suffix = os.path.splitext(name)[1]
        assert capsys.readouterr().err == (f"gpunn {command}: error: {option} {path}: a {suffix} name says {says}, "
                                           f"but this writes {own}, which gpunn and other tools would then read as "
                                           f"{says}: name it {right.suffix}, e.g. {right}\n")
        assert not path.exists()
    for option, name in (("--csv", "out.txt"), ("--json", "OUT.JSON")):
        assert cli.main([command, *TINY, option, str(tmp_path / name)]) == 0
        assert (tmp_path / name).exists()
    capsys.readouterr()


def test_a_run_interrupted_in_its_first_epoch_says_it_has_nothing_to_report(tmp_path, capsys, monkeypatch,
                                                                            interrupt_at):
    """Ctrl-C before the first epoch ended: no held-out line and no reports, as before, now said (a --json left
    from an earlier run is not this run's); the checkpoint resumes."""
    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(0, 1)]}))
    js, path = tmp_path / "run.json", tmp_path / "run.npz"
    assert cli.main(["train", *TINY, "--batch-size", "32", "--json", str(js), "--save", str(path)]) == 130
    out = capsys.readouterr().out
    assert (f"interrupted after 0 complete epochs: no epoch to report, no held-out metrics (--json not written); "
            f"checkpoint in {path}, at 2 of 6 batches of epoch 1 (continue with gpunn train --resume {path})") in out
    assert "held-out" not in out.replace("no held-out", "") and not js.exists()
    state = gpunn.load_checkpoint(str(path), device="cpu").state  # README: the next step's indexes from 0
    assert (state.epoch, state.batch) == (0, 2)  # stopped after the hook's batch 1, "2 of 6 batches of epoch 1"
    monkeypatch.setattr(gpunn.MLP, "fit", fit)
    assert cli.main(["train", "--resume", str(path), "--json", str(js), "--quiet"]) == 0
    assert json.loads(js.read_text())["result"]["epochs"] == 1


def test_a_run_a_second_ctrl_c_ends_after_its_first_checkpoint_leaves_its_config_beside_it(tmp_path, capsys,
                                                                                           monkeypatch):
    """A second Ctrl-C raises at once (here: a KeyboardInterrupt in epoch 2, the checkpoint of epoch 1 written):
    the command exits 130 with run.npz on disk but no run.npz.toml, which it wrote only once the fit returned. It is
    written now, and --config takes it; a run that fails before it writes a checkpoint leaves another run's
    checkpoint and config as they were."""
    class SecondCtrlC(gpunn.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 1:
                raise KeyboardInterrupt

    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], SecondCtrlC()]}))
    path = tmp_path / "run.npz"
    assert cli.main(with_options(["train", *TINY, "--save", str(path)], "--epochs", "3")) == 130
    assert gpunn.load_checkpoint(path).epoch == 1
    assert 'epochs = 3' in (tmp_path / "run.npz.toml").read_text().splitlines()
    monkeypatch.setattr(gpunn.MLP, "fit", fit)
    assert cli.main(["train", "--config", str(tmp_path / "run.npz.toml"), "--save", str(tmp_path / "again.npz")]) == 0
    assert gpunn.load_checkpoint(tmp_path / "again.npz").epoch == 3

    (tmp_path / "run.npz.toml").write_text("# another run's\n")
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(with_options(["train", *TINY, "--save", str(path), "--overwrite"], "--epochs", "3")) == 130
    assert (tmp_path / "run.npz.toml").read_text() == "# another run's\n"
    capsys.readouterr()


def test_an_interrupted_run_prints_the_commands_line_and_not_the_progresss_too(tmp_path, capsys, monkeypatch,
                                                                                interrupt_at):
    """fit's progress says where an interrupted run stopped (ProgressBar.says_interrupted); gpunn train's own line
    says it with the checkpoint and the command that goes on, so its progress leaves that line out: one line."""
    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(0, 2)]}))
    shown = [token for token in TINY if token != "--quiet"]
    assert cli.main(["train", *shown, "--progress", "lines", "--batch-size", "32"]) == 130
    captured = capsys.readouterr()
    assert "interrupted after 0 complete epochs" in captured.out and "the model holds" not in captured.err


def test_an_interrupted_run_without_save_says_it_is_not_saved(capsys, monkeypatch, interrupt_at):
    """A new user's gpunn train --data t.parquet, Ctrl-C'd to resume later, said "interrupted after 0 complete
    epochs: no epoch to report, no held-out metrics" and exited: the weights went with the process, and nothing
    said that --save keeps them. Its line says so now, with the command a run with --save continues with."""
    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(0, 2)]}))
    assert cli.main(["train", *TINY, "--batch-size", "32"]) == 130
    assert capsys.readouterr().out.splitlines()[-1] == (
        "interrupted after 0 complete epochs: no epoch to report, no held-out metrics; not saved: --save PATH keeps "
        "a run that gpunn train --resume PATH continues")


def test_a_run_interrupted_at_an_epochs_end_names_no_batch_and_resumes_with_its_checkpoint_interval(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """Ctrl-C after an epoch's last batch: the checkpoint is at that epoch's end, said without a batch; a resume
    that writes its checkpoint (to the --resume file) takes --checkpoint-every, which the run recorded, and --save
    may name that file."""
    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(0, 5)]}))  # batch 6 of 6
    path = tmp_path / "run.npz"
    assert cli.main(with_options(["train", *TINY, "--batch-size", "32", "--save", str(path)], "--epochs", "2")) == 130
    assert (f"interrupted after 1 complete epoch; checkpoint in {path} (continue with gpunn train --resume {path})\n"
            in capsys.readouterr().out)
    monkeypatch.setattr(gpunn.MLP, "fit", fit)
    assert cli.main(["train", "--resume", str(path), "--checkpoint-every", "1", "--quiet", "--debug"]) == 0  # (this
    assert gpunn.load_checkpoint(path).epoch == 2  # process's traceback on an error: not the run's, never compared)
    # --save may name the checkpoint being resumed: the run goes on in place (any other output may not overwrite it)
    assert cli.main(["train", "--resume", str(path), "--save", str(path), "--epochs", "3", "--quiet"]) == 0
    assert gpunn.load_checkpoint(path).epoch == 3


@pytest.mark.parametrize("optimizer, lr, weight_decay, momentum", [("sgd", 1e-2, 0.0, 0.0), ("nesterov", 1e-2, 0.0, 0.9),
                                                                    ("adamw", 1e-3, 0.01, None)])
def test_an_unset_lr_is_the_optimizers_own_default_in_train_and_sweep(tmp_path, capsys, optimizer, lr, weight_decay,
                                                                      momentum):
    """No --lr: the rate the Python API's optimizer takes by default (SGD's family 1e-2; it was 1e-3 for
    every optimizer), recorded as trained: in --json, the checkpoint's options and PATH.toml, the sweep's table.
    So are an unset --weight-decay and --momentum (recorded as null, where the optimizer has the option), by gpunn
    sweep as by gpunn train (the sweep recorded an unset momentum as null)."""
    from gpunn import checkpoint
    from gpunn.cli import resume

    path, js, saved = tmp_path / "run.npz", tmp_path / "s.json", tmp_path / "sweep"
    assert cli.main(["train", *TINY, "--optimizer", optimizer, "--save", str(path), "--json", str(js)]) == 0
    used = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum}
    config = json.loads(js.read_text())["config"]
    assert {k: config[k] for k in used} == used
    options = resume.saved_options(checkpoint.read_meta(path))
    assert {k: options[k] for k in used} == used
    assert gpunn.load_checkpoint(path).optimizer.lr == lr
    toml = (tmp_path / "run.npz.toml").read_text()
    assert f"lr = {lr}" in toml and f"weight-decay = {weight_decay}" in toml
    assert (f"momentum = {momentum}" in toml) == (momentum is not None)
    assert cli.main(["sweep", *TINY, "--optimizer", optimizer, "--json", str(js), "--save", str(saved)]) == 0
    assert [m["lr"] for m in json.loads(js.read_text())["members"]] == [lr]
    grid = {"lr": [lr], "weight_decay": [weight_decay], "momentum": momentum}
    config = json.loads(js.read_text())["config"]
    assert {k: config[k] for k in grid} == grid
    options = resume.saved_options(checkpoint.read_meta(saved / "ensemble-0.npz"))
    assert {k: options[k] for k in grid} == grid
    capsys.readouterr()
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "1e-2 for sgd, momentum and nesterov" in " ".join(capsys.readouterr().out.split())


def test_an_unset_noise_is_the_tasks_own_as_in_datasets_make(tmp_path, capsys):
    """No --noise: the task's default, which gpunn.datasets.make(task) adds (sinusoid's 0.05; it was 0.1 for every
    task), recorded as used, in gpunn train and gpunn sweep; --help says so."""
    from gpunn import checkpoint
    from gpunn.cli import resume

    sinusoid, js = [*TINY, "--task", "sinusoid"], tmp_path / "s.json"
    assert gpunn.datasets.default_noise("sinusoid") == gpunn.datasets.get_task("sinusoid").noise == 0.05
    assert cli.main(["train", *sinusoid, "--save", str(tmp_path / "unset.npz"), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["config"]["noise"] == 0.05
    assert resume.saved_options(checkpoint.read_meta(tmp_path / "unset.npz"))["noise"] == 0.05
    assert cli.main(["train", *sinusoid, "--noise", "0.05", "--save", str(tmp_path / "given.npz")]) == 0
    numpy.testing.assert_array_equal(gpunn.load_checkpoint(tmp_path / "unset.npz", device="cpu").model.params,
                                     gpunn.load_checkpoint(tmp_path / "given.npz", device="cpu").model.params)
    assert cli.main(["sweep", *sinusoid, "--save", str(tmp_path / "sweep")]) == 0
    saved, = (tmp_path / "sweep").glob("*.npz")
    assert resume.saved_options(checkpoint.read_meta(saved))["noise"] == 0.05
    capsys.readouterr()
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "(default: the task's: 1.0 for friedman1, 0.1 for linear, 0.05 for sinusoid, 0.1 for teacher)" in \
            " ".join(capsys.readouterr().out.split())


def test_an_unset_features_is_the_tasks_own_width_as_in_datasets_make(tmp_path, capsys):
    """No --features: the width gpunn.datasets.make(task) gives (friedman1's 10, sinusoid's 1; it was the command's
    32 or 16 for every task), recorded as used, in gpunn train and gpunn sweep alike; teacher and linear, which have
    none, keep the command's (32 for train, 16 for the sweep's smaller problem); --help says so."""
    from gpunn import checkpoint
    from gpunn.cli import resume

    tiny = [arg for arg in TINY if arg not in ("--features", "3")]
    assert [gpunn.datasets.default_features(t) for t in ("friedman1", "sinusoid", "teacher")] == [10, 1, None]
    js = tmp_path / "s.json"
    for task, train_width, sweep_width in (("friedman1", 10, 10), ("sinusoid", 1, 1), ("teacher", 32, 16)):
        assert cli.main(["train", *tiny, "--task", task, "--json", str(js)]) == 0
        assert json.loads(js.read_text())["config"]["features"] == train_width
        saved = tmp_path / task
        assert cli.main(["sweep", *tiny, "--task", task, "--json", str(js), "--save", str(saved)]) == 0
        assert json.loads(js.read_text())["config"]["features"] == sweep_width
        assert resume.saved_options(checkpoint.read_meta(saved / "ensemble-0.npz"))["features"] == sweep_width
        assert gpunn.load_checkpoint(saved / "ensemble-0.npz").model.layer_sizes[0] == sweep_width
    capsys.readouterr()
    for command, width in (("train", 32), ("sweep", 16)):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert (f"(default: the task's own, as in gpunn.datasets.make: 10 for friedman1, 1 for sinusoid; {width} for "
                "linear and teacher, which have none)") in " ".join(capsys.readouterr().out.split())


def test_json_to_standard_output_is_the_json_alone(tmp_path, monkeypatch, capsys):
    """--json - (and --csv -): stdout holds the document alone, so it pipes into jq; the lines of text go to
    stderr."""
    monkeypatch.chdir(tmp_path)  # (before the fix, a file named "-")
    assert cli.main(["train", *TINY, "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["result"]["epochs"] == 1
    assert "held-out: mse" in captured.err and "throughput:" in captured.err
    assert "wrote -" not in captured.err
    # train announces a file it writes, as sweep and bench do (it wrote --json and --csv without a word)
    assert cli.main(["train", *TINY, "--json", "-", "--csv", str(tmp_path / "t.csv")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["result"]["epochs"] == 1 and f"wrote {tmp_path / 't.csv'}\n" in captured.err
    assert cli.main(["train", *TINY, "--json", "t.json", "--csv", "t.csv"]) == 0
    assert "wrote t.json\nwrote t.csv\n" in capsys.readouterr().out
    os.remove(tmp_path / "t.json")
    os.remove(tmp_path / "t.csv")
    assert cli.main(["sweep", *TINY, "--lr", "1e-3,1e-2", "--csv", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("member,lr,") and len(captured.out.splitlines()) == 3
    assert "best: lr" in captured.err
    assert "wrote -" not in captured.err  # (it said so)
    assert cli.main(["sweep", *TINY, "--lr", "1e-3,1e-2", "--csv", "-", "--json", str(tmp_path / "s.json")]) == 0
    assert f"wrote {tmp_path / 's.json'}" in capsys.readouterr().err  # a file is still announced
    os.remove(tmp_path / "s.json")
    assert cli.main(["train", *TINY]) == 0 and "held-out: mse" in capsys.readouterr().out  # text on stdout otherwise
    assert os.listdir(tmp_path) == []


def test_an_output_that_is_a_pipe_is_written_into_not_replaced(tmp_path, capsys):
    """A named pipe (as /dev/stdout, bash's >(jq .) or /dev/null are devices or pipes) is written into: a temp
    file renamed over it replaced it with a plain file (as root, /dev/null itself) and its reader got nothing."""
    import stat

    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waiting on the pipe, as jq would
    try:
        assert cli.main(["train", *TINY, "--json", str(fifo)]) == 0
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        data = b""
        while chunk := os.read(reader, 1 << 16):
            data += chunk
    finally:
        os.close(reader)
    assert json.loads(data)["result"]["epochs"] == 1
    assert os.listdir(tmp_path) == ["out.json"]


@pytest.mark.parametrize("option, message", [(["--json", "nodir/b.json"], "--json nodir/b.json: directory"),
                                             (["--plot", "b.txt"], "--plot b.txt: the name must end in .png"),
                                             (["--plot", "nodir/b.png"], "--plot nodir/b.png: directory")])
def test_bench_checks_its_outputs_before_measuring(tmp_path, monkeypatch, capsys, option, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--quick", "--device", "cpu", "--peers", "none", *option]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "configuration" not in captured.out
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum 0.9: --optimizer adam has no momentum; sgd, momentum"),
    (["--resume", "."], "--resume . is a directory; gpunn train resumes a checkpoint file"),
    (["--config", "."], "config file . is a directory; give a TOML file"),
    (["--task", "friedman1", "--features", "5", "--outputs", "2"], "friedman1 has one output (n_outputs; gpunn's --outputs), got 2"),
    (["--target", "price"], "--target price names the targets of a --data file, and this run trains on the synthetic"),
    (["--targets", "Y.npy"], "--targets Y.npy names the targets of a --data file"),
    (["--features", "a,b"], "--features names columns of a --data table; for a synthetic task give a count"),
    (["--stream", "off", "--window", "4"], "--window 4 sets how many chunks of a --data file or a stream are"),
])
def test_a_mistake_is_named_in_the_commands_words_before_any_data(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(with_options(["train", *TINY], *args)) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("gpunn train: error: ")
    assert message in captured.err and "data:" not in captured.out


def test_sweep_names_only_its_own_options_when_it_refuses_window(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--rows", "200", "--epochs", "1", "--quiet", "--device", "cpu", "--window", "4"]) == 2
    err = capsys.readouterr().err
    assert "--window 4 sets how many chunks" in err and "add --data (or drop it)" in err
    assert "--stream" not in err  # gpunn sweep has no --stream to add


def test_sweep_refuses_feature_names_without_data_as_train_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--rows", "200", "--epochs", "1", "--quiet", "--device", "cpu", "--features", "a,b"]) == 2
    err = capsys.readouterr().err
    assert err == "gpunn sweep: error: --features names columns of a --data table; for a synthetic task give a count\n"


def test_an_unknown_option_names_the_commands_help_and_the_option_meant(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--batchsize", "64", "--checkpoint_every", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "gpunn train: error: unrecognized arguments: --batchsize 64 --checkpoint_every 2 (--batchsize: did you mean "
        "--batch-size?; --checkpoint_every: did you mean --checkpoint-every?) (see gpunn train --help)")
    with pytest.raises(SystemExit):
        cli.main(["--quiet", "train"])  # a train option before the command
    assert "unrecognized arguments: --quiet (--quiet: write it after 'train')" in capsys.readouterr().err
    assert cli.main(["--debug", "info"]) == 0  # --debug goes either side of the command, as README says


@pytest.mark.parametrize("argv, hints", [
    (["train", "t.csv"], "t.csv: a data file follows --data, as in --data t.csv"),  # it said "did you mean --csv?"
    (["sweep", "X.npy", "Y.NPY"], "X.npy: a data file follows --data, as in --data X.npy; Y.NPY: a targets file "
                                  "follows --targets, as in --targets Y.NPY"),
    (["train", "run.toml"], "run.toml: a config file follows --config, as in --config run.toml"),
])
def test_a_file_given_without_its_option_is_told_the_option(argv, hints, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    command = argv[0]
    assert capsys.readouterr().err == (f"gpunn {command}: error: unrecognized arguments: {' '.join(argv[1:])} ({hints}) "
                                       f"(see gpunn {command} --help)\n")


def test_a_directory_given_without_its_option_is_told_data(tmp_path, monkeypatch, capsys):
    """A directory (a Parquet dataset's) given bare is a data file's place too: --data DIR."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows").mkdir()
    with pytest.raises(SystemExit):
        cli.main(["train", "rows"])
    assert "(rows: a data file follows --data, as in --data rows)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, hint", [
    (["train", "--learning-rate", "3e-3"], "--learning-rate: did you mean --lr?"),
    (["sweep", "--learning_rate", "3e-3"], "--learning_rate: did you mean --lr?"),
    (["train", "--verbose"], "--verbose: progress is shown by default; --quiet turns it off"),
    (["train", "--hidden-layers", "64,64"], "--hidden-layers: did you mean --hidden (the hidden layers' widths"),
    (["bench", "--gpu"], "--gpu: did you mean --device cuda (or cuda:N)?"),
    (["train", "--cpu"], "--cpu: did you mean --device cpu?"),  # (a laptop's user, where --gpu was hinted)
    (["predict", "m.npz", "i.npy", "o.npy", "--cpu"], "--cpu: did you mean --device cpu?"),
    (["sweep", "-q"], "-q: did you mean --quiet?"),
])
def test_an_option_named_as_other_tools_name_it_gets_the_option_meant(argv, hint, capsys):
    """Names from other tools too far from gpunn's for difflib (--learning-rate against --lr) got no hint."""
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize("argv, unknown, hints", [
    # Python's name, a column's: the value after it was hinted too ("w.npy: a data file follows --data", beside
    # --data; "w: options are written in full: did you mean --weight-decay or --weights or --weight or --window?")
    (["train", "--data", "X.npy", "--targets", "Y.npy"], ["--sample-weight", "w.npy"],
     "--sample-weight: did you mean --weights or --weight?"),
    (["sweep", "--data", "t.csv", "--target", "y"], ["--weight-column", "w"],
     "--weight-column: did you mean --weights or --weight?"),
    (["train", "--data", "t.csv", "--target", "y"], ["--weight_column=w"],
     "--weight_column: did you mean --weights or --weight?"),
    (["train"], ["--verbose", "t.csv"],  # a flag meant: the file after it is no value of its
     "--verbose: progress is shown by default; --quiet turns it off; t.csv: a data file follows --data, as in --data "
     "t.csv"),
])
def test_a_name_for_the_rows_weights_is_hinted_as_both_options_and_its_value_alone(argv, unknown, hints, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv + unknown)
    assert capsys.readouterr().err == (f"gpunn {argv[0]}: error: unrecognized arguments: {' '.join(unknown)} ({hints}) "
                                       f"(see gpunn {argv[0]} --help)\n")


@pytest.mark.parametrize("argv, hint", [
    (["train", "--rows", "1e10", "--max-steps", "100"], "--max-steps: gpunn train runs whole epochs (--epochs): fewer "
     "--rows of a synthetic task (or a smaller --data file) make a shorter one, and Ctrl-C stops after the current batch (with --save, in a checkpoint that --resume "
     "continues)"),
    (["sweep", "--steps-per-epoch", "5"], "--steps-per-epoch: gpunn sweep runs whole epochs (--epochs)"),
    (["train", "--validation-fraction", "0.01"], "--validation-fraction: gpunn train holds out 10% of the rows for "
     "validation (a --data file's in whole chunks, a stream's in whole pieces of its chunks); another share is "
     "validation_fraction= of a gpunn.data source in Python"),
    (["sweep", "--validation_split", "0.2"], "--validation_split: gpunn sweep holds out 10% of the rows for "
     "validation (a --data file's in whole chunks);"),
    # PyTorch OneCycleLR's names (were "unrecognized arguments" alone)
    (["train", "--schedule", "onecycle", "--max-lr", "0.1"], "--max-lr: did you mean --lr? it is --schedule onecycle's "
     "peak, OneCycleLR's max_lr"),
    (["sweep", "--anneal-strategy", "linear"], "--anneal-strategy: did you mean --anneal? it is PyTorch's "
     "anneal_strategy, cos or linear"),
])
def test_a_step_limit_or_a_held_out_share_the_commands_lack_is_told_what_they_do_instead(argv, hint, capsys):
    """A user of 10^10 streamed rows asks for a short run or a smaller held-out share first: --max-steps and
    --validation-fraction were "unrecognized arguments" alone."""
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert hint in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["predict", "m.npz", "i.npy", "o.npy", "--max-steps", "3"])  # a command that runs no epochs: no hint
    assert capsys.readouterr().err == ("gpunn predict: error: unrecognized arguments: --max-steps 3 (see gpunn predict "
                                       "--help)\n")


@pytest.mark.parametrize("argv, hint", [
    (["resume", "run.npz"], "; a run goes on with gpunn train --resume run.npz (a sweep with gpunn sweep --resume DIR)"),
    (["continue"], "; a run goes on with gpunn train --resume PATH (a sweep with gpunn sweep --resume DIR)"),
    # the path, not an option's value (it said 'gpunn train --resume 8'), nor a flag's neighbour
    (["resume", "--epochs", "8", "run.npz"], "; a run goes on with gpunn train --resume run.npz (a sweep with gpunn "
     "sweep --resume DIR)"),
    (["resume", "--quiet", "out"], "; a run goes on with gpunn train --resume PATH (a sweep with gpunn sweep --resume "
     "DIR)"),
    (["continue", "sweep_dir", "--epochs", "9"], "; a run goes on with gpunn train --resume sweep_dir (a sweep with "
     "gpunn sweep --resume DIR)"),
    (["--resume", "my run.npz"], "; did you mean gpunn train --resume 'my run.npz'?"),  # the interrupted line's option
    (["trian", "--rows", "5"], "; did you mean 'train'?"), (["Predict"], "; did you mean 'predict'?"), (["foo"], ""),
])
def test_a_command_gpunn_has_not_is_told_the_command_meant(argv, hint, capsys):
    """An interrupted run says to continue with --resume: gpunn resume run.npz, and gpunn --resume run.npz, were
    argparse's "invalid choice" alone, as was a misspelt command."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    named = argv[1] if argv[0] == "--resume" else argv[0]
    assert capsys.readouterr().err == (f"gpunn: error: argument command: invalid choice: {named!r} (choose from "
                                       f"'train', 'predict', 'sweep', 'bench', 'info'){hint} (see gpunn --help)\n")


def test_an_unknown_option_is_named_when_required_arguments_are_missing_too(capsys):
    """argparse stops at the missing positionals first: 'gpunn predict --hel' said only that model, input and
    output are required, not that --hel is no option (--help)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", "m.npz", "--hel"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "gpunn predict: error: unrecognized arguments: --hel (--hel: options are written in full: did you mean "
        "--help?) and the following arguments are required: IN, OUT (see gpunn predict --help)")
    with pytest.raises(SystemExit):
        cli.main(["predict", "--", "--hel"])  # after --, a positional (a file named --hel)
    assert capsys.readouterr().err.strip() == ("gpunn predict: error: the following arguments are required: IN, "
                                               "OUT (see gpunn predict --help)")


@pytest.mark.parametrize("argv, hint", [
    (["bench", "--ep", "1"], None), (["info", "--ice"], None),
    (["bench", "--hep"], "--hep: did you mean --help?"), (["train", "--sed", "1"], "--sed: did you mean --seed?"),
    (["train", "--adta", "x"], "--adta: did you mean --data?"),  # (a rule that the first letter match refused it)
])
def test_an_unknown_option_is_hinted_only_an_option_it_could_stand_for(argv, hint, capsys):
    """difflib matched bench's --ep to --help (0.8, the shared "--" counted as likeness): "did you mean --help?"
    for what meant --epochs, which bench has not. Names are now compared without their "--" (ep: help 0.67)."""
    with pytest.raises(SystemExit):
        cli.main(argv)
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert hint in err if hint else "did you mean" not in err


@pytest.mark.parametrize("argv, hint", [
    (["train", "--save-best", "b.npz"], "--save-best: an option of gpunn sweep, not of gpunn train"),
    (["train", "--seeds", "2"], "--seeds: an option of gpunn sweep, not of gpunn train: did you mean --seed?"),
    (["sweep", "--stream", "off"], "--stream: an option of gpunn train, not of gpunn sweep"),
    (["sweep", "--checkpoint_every", "2"], "--checkpoint_every: an option of gpunn train, not of gpunn sweep"),
    (["predict", "m.npz", "i.csv", "o.csv", "--target", "y"],
     "--target: --score reads a table IN's targets by the names the model was trained on; an .npy IN's are a file, "
     "--score --targets Y.npy"),  # (not "did you mean --targets?", the .npy IN's file)
    (["info", "--json", "i.json"], "--json: an option of gpunn train, predict, sweep and bench, not of gpunn info"),
])
def test_an_option_of_another_command_is_refused_saying_whose_it_is(argv, hint, capsys):
    """gpunn train --save-best (gpunn sweep's) and gpunn sweep --stream (gpunn train's) said "unrecognized arguments"
    alone, as a made-up option does."""
    with pytest.raises(SystemExit):
        cli.main(argv)
    err = capsys.readouterr().err
    assert err.startswith(f"gpunn {argv[0]}: error: unrecognized arguments: ") and f"({hint})" in err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_misspelling_of_the_commands_own_option_is_not_told_another_commands(command, capsys):
    """--batch_size reads as --batch-size, which gpunn sweep (and predict) take too: it is this command's own, misspelt,
    and not "an option of gpunn sweep, not of gpunn train"."""
    with pytest.raises(SystemExit):
        cli.main([command, "--batch_size", "4"])
    assert capsys.readouterr().err == (f"gpunn {command}: error: unrecognized arguments: --batch_size 4 (--batch_size: "
                                       f"did you mean --batch-size?) (see gpunn {command} --help)\n")


@pytest.mark.parametrize("argv, hint", [
    (["train", "--Epochs", "3"], "--Epochs: options are written in lower case: did you mean --epochs?"),
    (["sweep", "--BATCH-SIZE=3"], "--BATCH-SIZE: options are written in lower case: did you mean --batch-size?"),
    (["train", "--Epoch", "3"], "--Epoch: options are written in full: did you mean --epochs?"),
    (["train", "--Sed", "1"], "--Sed: did you mean --seed?"),
    (["train", "--Learning-Rate", "1"], "--Learning-Rate: did you mean --lr?"),
    (["train", "--batch_size", "1"], "--batch_size: did you mean --batch-size?"),  # case as written: no case note
    (["--Debug", "info"], "--Debug: options are written in lower case: did you mean --debug?"),
])
def test_a_capitalised_option_is_hinted_in_lower_case(argv, hint, capsys):
    """The hint's matching was case-sensitive: ``gpunn train --Epochs 3`` was refused with no hint at all."""
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(argv)
    assert exit_.value.code == 2
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize("argv, hint", [
    (["train", "--batch", "1"], "--batch: options are written in full: did you mean --batch-size?"),
    (["predict", "m.npz", "in.npy", "out.npy", "--feat", "3"], "--feat: options are written in full: did you mean "
                                                                "--features?"),
    (["sweep", "--epo=1"], "--epo: options are written in full: did you mean --epochs?"),
    (["bench", "--max-sec", "5"], "--max-sec: options are written in full: did you mean --max-seconds?"),
    (["bench", "--s", "5"], "did you mean --seconds or --sustain?"),
    (["info", "--dev", "cpu"], "--dev: options are written in full: did you mean --device?"),
    (["--debu", "info"], "--debu: options are written in full: did you mean --debug?"),
    (["--vers"], "--vers: options are written in full: did you mean --version?"),  # no command: it said only that
])
def test_every_command_refuses_an_abbreviated_option_and_names_it_in_full(argv, hint, capsys):
    """argparse took ``--batch 1`` as ``--batch-size 1`` (allow_abbrev), in each subcommand's own parser."""
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(argv)  # (not main: before, the command ran)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: unrecognized arguments: " in err and hint in err
    parser = cli.build_parser()  # and each command added later: its parser is gpunn's Parser, which refuses them
    assert not parser.allow_abbrev and not any(p.allow_abbrev for p in parser.commands.values())
    assert not cli.train.standalone_parser().allow_abbrev and not cli.sweep.standalone_parser().allow_abbrev



def test_a_value_given_to_a_flag_of_gpunn_itself_is_refused_as_that_not_as_an_unknown_option(capsys):
    for flag in ("--version", "--debug"):  # no command: each token's name before '=' is checked, not the token
        with pytest.raises(SystemExit) as exc:
            cli.parse_args([f"{flag}=2"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"argument {flag}: ignored explicit argument '2'" in err, err
        assert "unrecognized" not in err and "command is required" not in err, err

def test_an_option_given_three_times_says_so_and_a_repeat_at_the_end_without_its_value_too(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--lr", "1e-3", "--lr", "3e-3", "--lr", "1e-2"])
    assert exc.value.code == 2
    assert "--lr is given 3 times (1e-3, then 3e-3, then 1e-2), and only the last would count" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--lr", "1e-3", "--lr"])  # the repeat check reads no value past the end
    assert exc.value.code == 2 and "--lr is given twice (1e-3, then )" in capsys.readouterr().err


def test_every_command_refuses_an_option_given_twice_and_names_it(capsys):
    """argparse kept the last of ``--lr 1e-3 --lr 3e-3`` without a word. Every option of every command that takes a
    value is refused when repeated, before its values are parsed (so any two values do); a flag with its other form
    too (--graph --no-graph); not bench's --config, which is meant to repeat."""
    commands = cli.build_parser().commands
    checked = 0
    for name, parser in commands.items():
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            option = action.option_strings[-1]
            if isinstance(action, argparse._AppendAction):
                continue
            with pytest.raises(SystemExit) as exit_:
                cli.parse_args([name, option, "1", f"{option}=2"])
            assert exit_.value.code == 2, (name, option)
            err = capsys.readouterr().err
            assert f"gpunn {name}: error: {option} is given twice (1, then 2), and only the last would count: give " \
                   f"it once" in err, err
            checked += 1
    assert checked > 60
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "--graph", "--no-graph"])
    assert "error: --graph and --no-graph are both given: give one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_args(["sweep", "--lr", "1e-3", "--weight-decay", "0", "--lr", "3e-3,1e-2", "--quiet"])
    assert ("--lr is given twice (1e-3, then 3e-3,1e-2), and only the last would count: give it once; several values "
            "go in one comma-separated list: --lr 1e-3,3e-3,1e-2 (see gpunn sweep --help)") in capsys.readouterr().err
    # meant to repeat, or the same twice; and a value after -- is not an option
    assert cli.parse_args(["bench", "--config", "small", "--config", "wide"]).config == ["small", "wide"]
    assert cli.parse_args(["train", "--quiet", "--quiet", "--debug", "--debug"]).quiet
    assert cli.parse_args(["predict", "--device", "cpu", "--", "--device", "in.npy", "out.npy"]).model == "--device"


def test_ctrl_c_says_what_each_command_leaves(tmp_path, monkeypatch, capsys):
    import numpy

    from gpunn import preflight

    assert cli.main(["train", *TINY, "--save", str(tmp_path / "m.npz")]) == 0
    numpy.save(tmp_path / "in.npy", numpy.ones((4, 3)))
    capsys.readouterr()

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(preflight, "read_matrix", ctrl_c)
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.npy"), str(tmp_path / "o.npy")]) == 130
    assert capsys.readouterr().err == "gpunn predict: interrupted (Ctrl-C); OUT is as it was (it is written only once complete)\n"


def test_too_few_or_many_feature_columns_named_for_predict(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    assert cli.main(["train", *TINY, "--save", str(tmp_path / "m.npz")]) == 0
    (tmp_path / "in.csv").write_text("a,b,c,d\n1,2,3,4\n")
    capsys.readouterr()
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "in.csv"), str(tmp_path / "o.csv"),
                     "--features", "a,b"]) == 2
    assert "in.csv: 2 feature columns (a, b), the model takes 3; --features must name 3" in capsys.readouterr().err


def test_train_writes_its_history_as_csv_as_sweep_writes_its_table(tmp_path, capsys):
    import csv

    path = tmp_path / "history.csv"
    assert cli.main(with_options(["train", *TINY], "--epochs", "2", "--csv", str(path))) == 0
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and list(rows[0])[:3] == ["epoch", "loss", "lr"]
    assert float(rows[1]["val_r2"]) < 1 and float(rows[1]["samples_per_s"]) > 0
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--csv", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("1,")


def test_readme_command_line_lists_every_option_of_every_command():
    """README's "Command line" block names each command's options (gpunn sweep's task, size and network
    options as "train's ... options"; its training options each by name: the block left out --epochs,
    --batch-size, --optimizer, --schedule, --device and --seed, which that phrase does not cover), so that
    an option added to --help is added there too, and names no option the command does not take."""
    import re

    block = (ROOT / "README.md").read_text().split("## Command line", 1)[1].split("```", 2)[1]
    commands = cli.build_parser().commands
    flags = {name: {s for a in sub._actions for s in a.option_strings if s.startswith("--")} - {"--help", "--debug"}
             for name, sub in commands.items()}
    for name in commands:
        usage = re.search(rf"^gpunn {name}\s(.*?)(?=^gpunn |\Z)", block, re.S | re.M).group(1)
        missing = {f for f in flags[name] if not re.search(re.escape(f) + r"(?![\w-])", usage)}
        if name == "sweep":
            assert "train's task, size and network options" in usage
            missing -= {"--task", "--rows", "--features", "--outputs", "--noise", "--hidden", "--activation",
                        "--output-activation", "--no-bias", "--dtype"}  # README's sweep prose: task, size, network
        assert not missing, f"README's gpunn {name} usage lacks {sorted(missing)}"
        # and the other way: an option renamed or removed (bench's --graph became --eager) leaves README
        unknown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", usage)) - flags[name] - {"--debug"}
        assert not unknown, f"README's gpunn {name} usage names options it does not take: {sorted(unknown)}"


def test_every_option_readmes_prose_names_is_an_option_of_the_command_it_gives():
    """The usage block is checked above; README's prose and examples name options too (`gpunn bench --eager`,
    `--stream auto`, `mpiexec -n 2 gpunn train --rows 20000 ...`). Each `--option` README writes is an option of
    some gpunn command (or one of the other tools' below), and each in a command README writes out (a code span
    or an example's line `gpunn CMD ...`) is CMD's own: an option renamed or removed (bench's --graph became
    --eager) or moved to another command leaves no sentence behind."""
    import re

    others = {"--batch": "the abbreviation README shows refused", "--timeout": "pytest-timeout's",
              "--pch": "NVRTC's", "--device-as-default-execution-space": "NVRTC's",
              "--out": "bench/gpu_checks/NAME.py's", "--merge": "bench/gpu_report.py's",
              "--index-url": "pip's (PyTorch's CPU wheel)", "--mpi": "srun's (README's Slurm section)"}
    others.update({f"--{name}": "sbatch's (README's Slurm job script)" for name in (
        "job-name", "time", "cpus-per-task", "mem", "output", "open-mode", "requeue", "signal")})
    from gpunn.hints import COMMAND_OPTIONS_ABSENT  # other tools' options README says train and sweep lack

    others.update({f"--{name}": "another tool's, which train and sweep lack" for name in COMMAND_OPTIONS_ABSENT})
    text = (ROOT / "README.md").read_text()
    parser = cli.build_parser()
    commands = parser.commands
    flags = {name: {s for a in sub._actions for s in a.option_strings if s.startswith("--")}
             for name, sub in commands.items()}
    own = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}  # gpunn's: --version
    named = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text))
    unknown = named - set().union(own, *flags.values()) - set(others)
    assert not unknown, f"README names options no gpunn command takes: {sorted(unknown)}"
    fenced = re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M)
    spans = re.findall(r"`([^`]+)`", re.sub(r"^```\w*\n.*?^```", "", text, flags=re.S | re.M))
    written = 0
    for line in (" ".join(s.split()) for s in spans + [line for block in fenced for line in block.splitlines()]):
        for command, rest in re.findall(r"\bgpunn (train|predict|sweep|bench|info)\b([^#|;]*)", line):
            wrong = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)) - flags[command]
            assert not wrong, f"README writes gpunn {command} with {sorted(wrong)}, which it does not take: {line}"
            written += 1
    assert written >= 50, written


def test_every_option_a_help_text_names_is_one_gpunn_takes():
    """A command's --help prose names options besides its own (predict: a model trained "with --standardize"); each
    is an option of the command or of another gpunn command, so a rename leaves no help text behind."""
    import re

    commands = cli.build_parser().commands
    flags = {s for sub in commands.values() for a in sub._actions for s in a.option_strings}
    named = 0
    for name, sub in commands.items():
        texts = [sub.description or "", *(str(a.help) for a in sub._actions if a.help)]
        found = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", " ".join(texts)))
        assert not found - flags, f"gpunn {name} --help names options no command takes: {sorted(found - flags)}"
        named += len(found)
    assert named >= 30, named


def test_a_value_readmes_command_line_gives_an_option_is_its_default():
    """README's usage writes an option with a default as that default (`[--hidden 256,256]`, `[--optimizer adam]`,
    `[--stream auto|on|off]`: the first of the choices), so a default changed in the code must change there too.
    A value in upper case is a placeholder (`[--epochs N]`), and one for an option without a default an example
    (`[--save run.npz]`). gpunn bench's usage lists choices (`[--peers naive,torch,...]`), not defaults."""
    import re

    block = (ROOT / "README.md").read_text().split("## Command line", 1)[1].split("```", 2)[1]
    commands = cli.build_parser().commands
    checked = 0
    for name in ("train", "predict", "sweep", "info"):
        usage = re.search(rf"^gpunn {name}\s(.*?)(?=^gpunn |\Z)", block, re.S | re.M).group(1)
        defaults = {s: a.default for a in commands[name]._actions for s in a.option_strings}
        for flag, value in re.findall(r"\[(--[a-z][\w-]*) ([^\]|\s]+)", usage):
            default = defaults[flag]
            if default is None or value.isupper():
                continue
            assert value == str(default), f"README's gpunn {name} usage: [{flag} {value}], and the default is {default}"
            checked += 1
    assert checked >= 10


def test_readmes_make_train_describes_the_default_run():
    """README's `make train` paragraph gives the default run's size (rows, features, net, optimizer, epochs and
    the training rows they make), and its timings are of that run: a default changed in gpunn train must
    change the paragraph (and the timings be measured again)."""
    import types

    from gpunn.cli.train import DEFAULTS, FEATURES, resolve_task

    text = " ".join((ROOT / "README.md").read_text().split("`make train` trains", 1)[1].split("prints", 1)[0].split())
    run = types.SimpleNamespace(**DEFAULTS)
    resolve_task(run, FEATURES)  # the unset --features as gpunn train resolves it: the task's own width, or 32
    d = vars(run)
    net = "-".join(map(str, [d["features"], *d["hidden"].split(","), d["outputs"]]))
    training_rows = (d["rows"] - d["rows"] // 10) * d["epochs"]
    for said in (f'"{d["task"]}"', f"{d['rows']:,} rows of which 10% are held out", f"{d['features']} features",
                 f"{net} {d['activation'].replace('relu', 'ReLU')} net", d["optimizer"].capitalize(),
                 f"{d['epochs']} epochs: {training_rows / 1e6:.1f} M training rows"):
        assert said in text, f"README's make train paragraph does not say {said!r}: {text}"
    # the measurements of that run (README's timings come from them) give its batch size, which README does not
    results = (ROOT / "bench" / "RESULTS.md").read_text().split("## The default `make train`", 1)[1].split("|", 1)[0]
    assert f"Adam, batch {d['batch_size']}, {d['epochs']} epochs" in " ".join(results.split())


def test_each_commands_help_says_what_it_does_and_predict_names_its_files_as_its_errors_do():
    """gpunn info --help had no description; gpunn predict's usage said 'model input output' where its description,
    README and its errors say MODEL, IN and OUT ('IN in.npy: X has 8 columns but the model expects 16')."""
    commands = cli.build_parser().commands
    assert all(sub.description for sub in commands.values()), [n for n, sub in commands.items() if not sub.description]
    assert " ".join(commands["predict"].format_usage().split()).endswith("MODEL IN OUT")


def test_every_option_s_help_says_what_it_is_besides_its_default():
    """train's --epochs, --optimizer and --output-activation, and eight of sweep's options, said only
    '(default: 12)'."""
    import re

    def said(sub, action):  # the help as --help shows it, without its "(default: ...)"
        return re.sub(r"\(default: [^)]*\)", "", sub._get_formatter()._expand_help(action)).strip()

    commands = cli.build_parser().commands
    bare = [(name, a.option_strings[-1]) for name, sub in commands.items() for a in sub._actions
            if a.option_strings and a.help and not said(sub, a)]
    assert not bare, bare
    assert said(commands["train"], next(a for a in commands["train"]._actions if "--epochs" in a.option_strings))


@pytest.mark.parametrize("command, flag, needed", [("train", "--patience", "--early-stopping"),
                                                   ("train", "--min-delta", "--early-stopping"),
                                                   ("train", "--checkpoint-every", "--save"),
                                                   ("sweep", "--patience", "--early-stopping"),
                                                   ("sweep", "--min-delta", "--early-stopping")])
def test_an_option_refused_without_another_names_that_one_in_its_help(command, flag, needed, tmp_path, capsys):
    """--patience and --min-delta are refused without --early-stopping, --checkpoint-every without --save, yet their
    help read as if they worked alone ("epochs between checkpoints")."""
    parser = cli.build_parser().commands[command]
    assert needed in next(a for a in parser._actions if flag in a.option_strings).help
    assert cli.main([command, *TINY, flag, "2"]) == 2
    assert needed in capsys.readouterr().err


def test_bench_peers_are_named_in_its_help_and_readme():
    """--peers accepted the ensemble peers (sequential, torch-vmap, torch-loop), which neither its help nor
    README's synopsis named."""
    from gpunn import bench

    action = next(a for a in cli.build_parser().commands["bench"]._actions if "--peers" in a.option_strings)
    block = (ROOT / "README.md").read_text().split("## Command line", 1)[1].split("```", 2)[1]
    synopsis = " ".join(block.split("gpunn bench", 1)[1].split("gpunn sweep", 1)[0].split())
    for peer in bench.PEERS + bench.ENSEMBLE_PEERS:
        assert peer in action.help, peer
        assert peer in synopsis.split("--peers", 1)[1].split("--repeats")[0], peer

def test_resume_names_a_flag_the_run_never_had_as_a_flag(tmp_path, capsys):
    run = str(tmp_path / "run.npz")
    assert cli.main(["train", *TINY, "--save", run]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", run, "--epochs", "2", "--early-stopping"]) == 2
    assert "--early-stopping would change the run, which has no --early-stopping;" in capsys.readouterr().err


DATA = ["--data", "X.npy", "--targets", "Y.npy", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_data_file_whose_held_out_chunks_are_one_row_is_refused_in_the_commands_terms(tmp_path, monkeypatch,
                                                                                         capsys, command):
    """A 12-row --data file held out 1 row: train printed 'r2 nan'; then the library refused it naming
    validation_fraction, which no option of the command sets."""
    import numpy

    monkeypatch.chdir(tmp_path)
    numpy.save("X.npy", numpy.random.default_rng(0).standard_normal((12, 3)))
    numpy.save("Y.npy", numpy.ones((12, 1)))
    assert cli.main([command, *DATA]) == 2
    assert ("--data X.npy: the tenth of its chunks held out for validation is 1 row of 12, and R² needs 2: use a "
            "file with more rows (20 at least)") in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["train", *DATA, "--json", "Y.npy"], "--json Y.npy is the --targets file this"),
    (["train", *DATA, "--csv", "X.npy"], "--csv X.npy is the --data file this"),
    (["sweep", *DATA, "--json", "X.npy"], "--json X.npy is the --data file this"),
    (["sweep", *TINY, "--save-best", "notes.txt"], "--save-best notes.txt exists and is not a gpunn checkpoint"),
])
def test_an_output_never_overwrites_what_the_run_reads_or_someones_file(tmp_path, monkeypatch, capsys, args, message):
    """--json Y.npy trained on Y.npy, then wrote the JSON over it; sweep --save-best replaced any file."""
    import numpy

    monkeypatch.chdir(tmp_path)
    numpy.save("X.npy", numpy.random.default_rng(0).standard_normal((200, 3)))
    numpy.save("Y.npy", numpy.ones((200, 1)))
    (tmp_path / "notes.txt").write_text("my notes\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_fresh_run_saved_over_an_earlier_runs_checkpoint_is_refused_without_overwrite(tmp_path, monkeypatch, capsys):
    """--save naming a checkpoint the run does not resume replaced an earlier run: re-running `gpunn train --config
    run.npz.toml` (which records save = "run.npz") to go on started over it, first without a word, then after a note
    that came too late (its first checkpoint, or a Ctrl-C's, had replaced the run). Refused now, as gpunn sweep
    refuses to save over a saved sweep, naming the way on; --overwrite replaces it, with a note. Resuming it says
    nothing: that is how a run continues in place. --overwrite is not recorded in PATH.toml."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", *TINY, "--save", "run.npz"]) == 0
    assert "note:" not in capsys.readouterr().err  # nothing there yet
    earlier = (tmp_path / "run.npz").read_bytes()
    for given in (["--save", "run.npz"], ["--config", "run.npz.toml"]):
        assert cli.main(["train", *TINY, *given]) == 2
        said = re.escape("--save run.npz") if given[0] == "--save" else r"run\.npz\.toml's save = \"(\S*/)?run\.npz\""
        assert re.fullmatch(f"gpunn train: error: {said} holds the checkpoint of an earlier run, which this run would "
                            r"replace: go on with that run with gpunn train --resume (\S*/)?run\.npz, save this one "
                            r"elsewhere, or add --overwrite to replace it\n", capsys.readouterr().err)
        assert (tmp_path / "run.npz").read_bytes() == earlier
    assert cli.main(["train", *TINY, "--save", "run.npz", "--overwrite", "--seed", "1"]) == 0
    assert capsys.readouterr().err == "note: --save run.npz replaces the checkpoint of an earlier run there (--overwrite)\n"
    assert (tmp_path / "run.npz").read_bytes() != earlier and "overwrite" not in (tmp_path / "run.npz.toml").read_text()
    assert cli.main(["train", "--resume", "run.npz", "--epochs", "2", "--quiet", "--save", "run.npz"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_save_over_an_empty_file_is_free_and_over_another_runs_checkpoint_while_resuming_is_refused(
        tmp_path, monkeypatch, capsys):
    """An empty file at --save (tempfile.NamedTemporaryFile's, to be written) holds no earlier run; a run resumed from
    one checkpoint and saved over another's would lose that other run, as a fresh run would."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.npz").write_bytes(b"")
    assert cli.main(["train", *TINY, "--save", "run.npz"]) == 0
    assert cli.main(["train", *TINY, "--save", "other.npz"]) == 0
    assert "note:" not in capsys.readouterr().err
    other = (tmp_path / "other.npz").read_bytes()
    assert cli.main(["train", "--resume", "run.npz", "--epochs", "2", "--quiet", "--save", "other.npz"]) == 2
    assert capsys.readouterr().err == (
        "gpunn train: error: --save other.npz holds the checkpoint of an earlier run, which this run would replace: go "
        "on with that run with gpunn train --resume other.npz, save this one elsewhere, or add --overwrite to replace "
        "it\n")
    assert (tmp_path / "other.npz").read_bytes() == other


def test_a_run_interrupted_part_way_through_an_epoch_says_its_held_out_metrics_are_the_weights_held(
        capsys, monkeypatch, interrupt_at):
    """Ctrl-C after 3 of epoch 2's 6 batches: the held-out line scores the model as it is, those steps' weights (as
    the checkpoint written then holds them), not epoch 1's, but said only "held-out: mse ...", after "interrupted
    after 1 complete epoch", and --json's result only epochs 1: it reads as epoch 1's. Both now say where the
    weights are (history.cut_batch, from the loop); a run interrupted at an epoch's end says nothing more."""
    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(1, 2)]}))
    assert cli.main(with_options(["train", *TINY, "--batch-size", "32", "--json", "-"], "--epochs", "3")) == 130
    out = capsys.readouterr()
    record = json.loads(out.out)
    assert record["result"]["partial_epoch"] == 2 and record["result"]["epochs"] == 1
    assert record["result"]["val_mse"] != record["history"]["val_mse"][-1]
    assert f"held-out (the weights 3 batches into epoch 2): mse {record['result']['val_mse']:.5g}  " in out.err
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(1, 5)]}))  # the epoch's last batch
    assert cli.main(with_options(["train", *TINY, "--batch-size", "32", "--json", "-"], "--epochs", "3")) == 130
    out = capsys.readouterr()
    assert json.loads(out.out)["result"]["partial_epoch"] is None and "held-out: mse " in out.err


def test_a_run_with_early_stopping_interrupted_gives_its_best_epoch_so_far_and_keeps_the_weights_it_stopped_with(
        capsys, monkeypatch, interrupt_at):
    """gpunn train --early-stopping, Ctrl-C in epoch 3: --json's best_epoch and best_val_loss were null (EarlyStopping
    set history.best_epoch only where the run ended by itself; without it, and an Ensemble's members, give the best
    so far), though two epochs were scored. They are now the best of those two; the model holds the weights it
    stopped with, and no "early stopping: ... its weights are kept" line says otherwise."""
    fit = gpunn.MLP.fit
    monkeypatch.setattr(gpunn.MLP, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [
        *k["callbacks"], interrupt_at(2, 2)]}))
    assert cli.main(with_options(["train", *TINY, "--batch-size", "32", "--json", "-", "--early-stopping"],
                                 "--epochs", "4")) == 130
    out = capsys.readouterr()
    record = json.loads(out.out)
    losses = record["history"]["val_loss"]
    assert len(losses) == 2 and record["result"]["best_epoch"] == losses.index(min(losses)) + 1
    assert record["result"]["best_val_loss"] == min(losses) and record["result"]["partial_epoch"] == 3
    assert "early stopping:" not in out.err and "held-out (the weights 3 batches into epoch 3): " in out.err


def test_stream_and_progress_take_any_letter_case_as_task_and_device_do(tmp_path, capsys):
    """--task TEACHER and --device CPU were taken, --stream ON and --progress Lines refused ("invalid choice"); both
    now take any letter case, on the command line and in a config file, and a near miss names the one meant."""
    small = ["train", "--rows", "400", "--features", "3", "--hidden", "4", "--epochs", "1", "--device", "CPU",
             "--task", "TEACHER"]
    assert cli.main([*small, "--stream", "ON", "--progress", "Off"]) == 0
    out = capsys.readouterr()
    assert "data: streaming teacher" in out.out and out.err == ""
    (tmp_path / "run.toml").write_text('stream = "Off"\nprogress = "LINES"\n')
    assert cli.main([*small, "--config", str(tmp_path / "run.toml")]) == 0
    out = capsys.readouterr()
    assert "data: streaming" not in out.out and "train [cpu] epoch 1/1: loss=" in out.err
    with pytest.raises(SystemExit):
        cli.main([*small, "--progress", "line"])
    assert "argument --progress: unknown progress 'line' (did you mean 'lines'?)" in capsys.readouterr().err
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "progress on stderr, in any letter case:" in text
        assert command == "sweep" or "materializing every row, in any letter case" in text
