"""gpunn train and gpunn sweep's per-step schedules: --warmup-steps and --schedule onecycle with its options, each
refused where the run's schedule does not read it, recorded and kept on --resume, shown by gpunn info."""
import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy
import pytest
from checkpoint_edits import rewrite_meta, run_options

import gpunn
from gpunn import cli

# 200 rows: 180 train, 3 batches of 60 per epoch; sgd: --lr 1e-2
TINY = ["--rows", "200", "--features", "3", "--hidden", "4", "--batch-size", "60", "--optimizer", "sgd", "--device",
        "cpu", "--quiet"]
PER_EPOCH = 3
NEW = ("warmup_steps", "pct_start", "div_factor", "final_div_factor", "anneal", "total_steps")


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(args))
    return status, out.getvalue(), err.getvalue()


def one_cycle(step, total, lr, pct_start=0.3, div_factor=25.0, final_div_factor=1e4, anneal="cos"):
    """torch.optim.lr_scheduler.OneCycleLR's rate of ``step`` (its get_lr, three_phase=False), written out."""
    initial = lr / div_factor
    phases = [(float(pct_start * total) - 1, initial, lr), (total - 1, lr, initial / final_div_factor)]
    start = 0
    for i, (end, high, low) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start)
            if anneal == "cos":
                return low + (high - low) / 2 * (math.cos(math.pi * pct) + 1)
            return (low - high) * pct + high
        start = end


def test_onecycle_and_its_options_reach_the_run_its_checkpoint_its_saved_config_and_json(tmp_path):
    """--schedule onecycle trains at OneCycleLR's rate with --lr its peak: each epoch's recorded lr is its last
    step's; the checkpoint, PATH.toml and --json record the options as used (--anneal in any letter case, lower)."""
    from gpunn import config as cfgmod

    path, js = tmp_path / "run.npz", tmp_path / "run.json"
    options = ["--schedule", "OneCycle", "--pct-start", "0.5", "--div-factor", "10", "--final-div-factor", "100",
               "--anneal", "Linear"]
    status, _, err = run("train", *TINY, "--epochs", "2", *options, "--save", str(path), "--json", str(js))
    assert status == 0, err
    used = dict(pct_start=0.5, div_factor=10.0, final_div_factor=100.0, anneal="linear", total_steps=0)
    total = 2 * PER_EPOCH
    last_steps = [one_cycle(step, total, 1e-2, **{k: v for k, v in used.items() if k != "total_steps"})
                  for step in (PER_EPOCH - 1, total - 1)]
    assert json.loads(js.read_text())["history"]["lr"] == pytest.approx(last_steps, rel=1e-12)
    assert gpunn.load_checkpoint(path).settings.schedule == gpunn.Schedule("onecycle", **used)
    saved = cfgmod.read_toml(str(path) + ".toml")
    assert saved["schedule"] == "onecycle"
    assert {k.replace("-", "_"): v for k, v in saved.items() if k.replace("-", "_") in NEW} == used  # no warm-up
    config = json.loads(js.read_text())["config"]
    assert {k: config[k] for k in (*NEW, "gamma", "step_size", "min_factor")} == {
        **dict.fromkeys(("warmup_steps", "gamma", "step_size", "min_factor")), **used}


def test_a_warm_up_reaches_the_run_and_is_recorded_beside_the_schedules_options(tmp_path):
    """--warmup-steps 4 with step's x 0.5 per epoch: epoch 1's last step (2) is at 3/4 of the rate, epoch 2's (5)
    at the decayed rate, warmed up; recorded with step's options, onecycle's left out."""
    from gpunn import config as cfgmod

    path, js = tmp_path / "run.npz", tmp_path / "run.json"
    status, _, err = run("train", *TINY, "--epochs", "2", "--schedule", "step", "--step-size", "1", "--gamma", "0.5",
                         "--warmup-steps", "4", "--save", str(path), "--json", str(js))
    assert status == 0, err
    assert json.loads(js.read_text())["history"]["lr"] == pytest.approx([1e-2 * 3 / 4, 1e-2 * 0.5], rel=1e-12)
    assert gpunn.load_checkpoint(path).settings.schedule == gpunn.Schedule("step", step_size=1, gamma=0.5,
                                                                           warmup_steps=4)
    saved = cfgmod.read_toml(str(path) + ".toml")
    assert saved["warmup-steps"] == 4 and not {"pct-start", "div-factor", "anneal", "total-steps"} & set(saved)


@pytest.mark.parametrize("schedule", [[], ["--schedule", "cosine", "--warmup-steps", "0"]], ids=["constant", "cosine"])
def test_a_run_without_a_per_step_rate_records_no_per_step_option_as_before_them(tmp_path, schedule):
    """A run without a warm-up or onecycle records its options, schedule and PATH.toml as gpunn did before them (an
    older gpunn refused an option it did not know, 'unknown option warmup-steps', and a schedule with more fields,
    'invalid schedule'); it resumes with --warmup-steps 0 taken, another count refused naming 0."""
    from gpunn import config as cfgmod

    path = tmp_path / "run.npz"
    assert run("train", *TINY, *schedule, "--epochs", "1", "--save", str(path))[0] == 0
    meta = gpunn.checkpoint.read_meta(path)
    assert not set(NEW) & set(run_options(meta)) and not set(NEW) & set(meta["training"]["settings"]["schedule"])
    assert not {name.replace("_", "-") for name in NEW} & set(cfgmod.read_toml(str(path) + ".toml"))
    status, _, err = run("train", "--resume", str(path), "--epochs", "2", "--warmup-steps", "2")
    assert status == 2 and "--warmup-steps 2 would change the run, which has --warmup-steps 0" in err, err
    assert run("train", "--resume", str(path), "--epochs", "2", "--warmup-steps", "0")[0] == 0
    assert not set(NEW) & set(run_options(gpunn.checkpoint.read_meta(path)))


def test_a_sweeps_members_take_onecycle_each_at_its_own_peak(tmp_path):
    """gpunn sweep --lr is each member's peak; the ensemble's checkpoint records the schedule and the options."""
    from gpunn.cli import resume

    saved = tmp_path / "sweep"
    status, _, err = run("sweep", *TINY, "--epochs", "2", "--lr", "1e-2,2e-2", "--schedule", "onecycle",
                         "--total-steps", "8", "--save", str(saved))
    assert status == 0, err
    ckpt = gpunn.load_checkpoint(saved / "ensemble-0.npz")
    assert ckpt.settings.schedule == gpunn.Schedule("onecycle", total_steps=8)
    options = resume.saved_options(gpunn.checkpoint.read_meta(saved / "ensemble-0.npz"))
    assert (options["total_steps"], options["pct_start"]) == (8, 0.3) and "warmup_steps" not in options
    expected = [one_cycle(step, 8, lr) for step in (PER_EPOCH - 1, 2 * PER_EPOCH - 1) for lr in (1e-2, 2e-2)]
    assert numpy.ravel(ckpt.training["history"]["lr"]).tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("schedule, option, says", [
    ("onecycle", ["--warmup-steps", "5"], "--warmup-steps 5 sets a linear warm-up over the run's first steps "
     "(--schedule onecycle rises over its own --pct-start), and this run's schedule is onecycle: choose --schedule "
     "constant or step or exponential or cosine (or drop it)"),
    ("constant", ["--pct-start", "0.4"], "--pct-start 0.4 sets the fraction of the steps --schedule onecycle rises "
     "over, and this run's schedule is constant: choose --schedule onecycle (or drop it)"),
    ("cosine", ["--anneal", "linear"], "--anneal linear sets how the rate of --schedule onecycle moves between its "
     "points, and this run's schedule is cosine: choose --schedule onecycle (or drop it)"),
    ("step", ["--total-steps", "100"], "--total-steps 100 sets the steps of the cycle of --schedule onecycle, and "
     "this run's schedule is step: choose --schedule onecycle (or drop it)"),
    ("exponential", ["--gamma", "0.5", "--div-factor", "2.5"], "--div-factor 2.5 sets the rate --schedule onecycle "
     "starts at, --lr / --div-factor, and this run's schedule is exponential: choose --schedule onecycle (or drop "
     "it)"),
    ("onecycle", ["--final-div-factor", "1e3", "--gamma", "0.5"], "--gamma 0.5 sets the factor of --schedule step (per "
     "decay) and exponential (per epoch), and this run's schedule is onecycle: choose --schedule step or exponential "
     "(or drop it)"),
])
def test_a_per_step_option_its_schedule_does_not_read_is_refused_naming_the_schedule_that_does(
        tmp_path, command, schedule, option, says):
    save = tmp_path / ("run.npz" if command == "train" else "sweep")
    status, _, err = run(command, *TINY, "--schedule", schedule, *option, "--save", str(save))
    assert (status, err) == (2, f"gpunn {command}: error: {says}\n")
    assert not save.exists()


def test_a_config_files_per_step_option_its_schedule_does_not_read_is_a_note(tmp_path):
    (tmp_path / "run.toml").write_text('schedule = "onecycle"\nwarmup-steps = 3\n')
    status, _, err = run("train", *TINY, "--epochs", "1", "--config", str(tmp_path / "run.toml"))
    assert status == 0, err
    assert f"note: {tmp_path / 'run.toml'}: warmup-steps = 3 not used: this run's schedule is onecycle" in err


@pytest.mark.parametrize("option, value, message", [
    ("--pct-start", "0", r"must be in \(0, 1\), got 0"), ("--pct-start", "1", r"must be in \(0, 1\), got 1"),
    ("--div-factor", "0", "must be positive, got 0"), ("--final-div-factor", "inf", "must be a finite number, got inf"),
    ("--warmup-steps", "-1", "must be zero or more, got -1"), ("--total-steps", "2.5", "expected a whole number"),
    ("--anneal", "cosine", "invalid choice: 'cosine'"),
])
def test_a_per_step_option_out_of_its_range_is_refused_by_argparse(capsys, option, value, message):
    schedule = "cosine" if option == "--warmup-steps" else "onecycle"
    with pytest.raises(SystemExit):
        cli.main(["train", *TINY, "--schedule", schedule, option, value])
    assert re.search(f"argument {option}: {message}", capsys.readouterr().err)


def test_the_ends_of_the_per_step_options_ranges_and_any_letter_case_are_taken():
    args = cli.parse_args(["train", "--schedule", "onecycle", "--pct-start", "0.999", "--anneal", "LINEAR",
                           "--total-steps", "0"])
    assert (args.pct_start, args.anneal, args.total_steps) == (0.999, "linear", 0)
    assert cli.parse_args(["train", "--schedule", "constant", "--warmup-steps", "0"]).warmup_steps == 0


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_gives_pytorchs_defaults_and_says_lr_is_onecycles_peak(capsys, command):
    """The defaults --help gives are the numbers gpunn.Schedule fills in for an option not given (PyTorch's)."""
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    onecycle, warm = gpunn.optim.make_schedule("onecycle"), gpunn.optim.make_schedule("constant")
    assert f"(default: {onecycle.pct_start:g}, PyTorch's)" in text and onecycle.pct_start == 0.3
    assert f"--lr / --div-factor (default: {onecycle.div_factor:g}, PyTorch's)" in text and onecycle.div_factor == 25
    assert f"the first / --final-div-factor (default: {onecycle.final_div_factor:g}, PyTorch's)" in text
    assert onecycle.final_div_factor == 1e4 and onecycle.anneal == "cos" and onecycle.total_steps == 0
    assert f"anneal_strategy (default: {onecycle.anneal})" in text
    assert f"(default: {onecycle.total_steps}; a resume" in text
    assert f"stepped after each batch (default: {warm.warmup_steps}, none)" in text
    assert "up to --lr, its peak" in text and "is not cycled, as with cycle_momentum=False" in text
    assert "OneCycleLR's max_lr" in text  # --lr's own help


def test_a_onecycle_resume_keeps_its_schedule_and_continues_bit_for_bit(tmp_path):
    """A onecycle run of --total-steps 12 saved after 2 epochs (6 steps) goes on to 4 as the run of 4 did; another
    --schedule or option value is refused as a change, an option it does not read as unused, and --epochs past its
    12 steps before anything trains."""
    straight, path = tmp_path / "straight.npz", tmp_path / "run.npz"
    onecycle = [*TINY, "--schedule", "onecycle", "--total-steps", "12", "--anneal", "linear"]
    assert run("train", *onecycle, "--epochs", "4", "--save", str(straight))[0] == 0
    assert run("train", *onecycle, "--epochs", "2", "--save", str(path))[0] == 0
    before = path.read_bytes()
    for given, says in ((["--schedule", "cosine"], "--schedule cosine would change the run, which has --schedule "
                                                    "onecycle"),
                        (["--pct-start", "0.5"], "--pct-start 0.5 would change the run, which has --pct-start 0.3"),
                        (["--anneal", "cos"], "--anneal cos would change the run, which has --anneal linear"),
                        (["--warmup-steps", "2"], "--warmup-steps 2 sets a linear warm-up over the run's first steps "
                                                  "(--schedule onecycle rises over its own --pct-start), and this "
                                                  "run's schedule is onecycle: drop it (a resumed run keeps its "
                                                  "schedule)"),
                        (["--epochs", "5"], "this run takes 15 optimizer steps and --total-steps is 12: give "
                                            "--total-steps 15 or more (0: the run's), or fewer --epochs")):
        status, _, err = run("train", "--resume", str(path), *(given if given[0] == "--epochs" else
                                                                ["--epochs", "4", *given]))
        assert status == 2 and says in err, (given, err)
    assert path.read_bytes() == before
    status, _, err = run("train", "--resume", str(path), "--epochs", "4", "--total-steps", "12", "--quiet")
    assert status == 0, err
    resumed, whole = (gpunn.load_checkpoint(p, device="cpu") for p in (path, straight))
    numpy.testing.assert_array_equal(resumed.model.params, whole.model.params)
    assert resumed.training["history"]["lr"] == whole.training["history"]["lr"]


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_onecycle_run_with_more_steps_than_its_cycle_is_refused_in_the_options_words_before_it_trains(
        tmp_path, command):
    """gpunn.Schedule.check_run's refusal named total_steps=6, the Python argument: the command names its options."""
    save = tmp_path / ("run.npz" if command == "train" else "sweep")
    status, _, err = run(command, *TINY, "--epochs", "2", "--schedule", "onecycle", "--total-steps", "5", "--save",
                         str(save))
    assert (status, err) == (2, f"gpunn {command}: error: this run takes 6 optimizer steps and --total-steps is 5: "
                                "give --total-steps 6 or more (0: the run's), or fewer --epochs\n")
    assert not (save.exists() and any(save.iterdir()) if save.is_dir() else save.exists())


def as_saved_before_per_step_schedules(path):
    """The run saved at ``path`` as gpunn saved it before --warmup-steps and onecycle: neither its options nor its
    checkpoint's schedule hold the new fields, and there is no PATH.toml."""
    def before_them(meta):
        options = run_options(meta)
        for newer in NEW:
            options.pop(newer, None)
        for newer in NEW:
            meta["training"]["settings"]["schedule"].pop(newer, None)

    rewrite_meta(path, path, before_them)
    Path(str(path) + ".toml").unlink(missing_ok=True)  # (a sweep's ensembles have none)


def test_a_run_saved_before_warm_ups_resumes_as_it_ran_without_one(tmp_path):
    """A step run from before --warmup-steps records no warmup_steps, in its options or its schedule: resumed alone
    it goes on bit for bit without a warm-up; --warmup-steps 0 passes, another count is refused naming 0, and the
    resumed PATH.toml records neither a warm-up nor an option of onecycle (as a file from before them)."""
    from gpunn import config as cfgmod

    old, straight = tmp_path / "old.npz", tmp_path / "straight.npz"
    step = [*TINY, "--schedule", "step", "--step-size", "1", "--gamma", "0.5"]
    assert run("train", *step, "--epochs", "3", "--save", str(straight))[0] == 0
    assert run("train", *step, "--epochs", "2", "--save", str(old))[0] == 0
    as_saved_before_per_step_schedules(old)
    status, _, err = run("train", "--resume", str(old), "--epochs", "3", "--warmup-steps", "2")
    assert status == 2 and "--warmup-steps 2 would change the run, which has --warmup-steps 0" in err, err
    status, _, err = run("train", "--resume", str(old), "--epochs", "3", "--warmup-steps", "0", "--quiet")
    assert status == 0, err
    resumed = gpunn.load_checkpoint(old, device="cpu")
    numpy.testing.assert_array_equal(resumed.model.params, gpunn.load_checkpoint(straight, device="cpu").model.params)
    assert resumed.training["history"]["lr"] == pytest.approx([1e-2, 5e-3, 2.5e-3], rel=1e-12)
    saved = cfgmod.read_toml(str(old) + ".toml")
    assert not {"warmup-steps", "pct-start", "div-factor", "anneal", "total-steps"} & set(saved)


def test_a_sweep_saved_before_warm_ups_resumes_its_ensembles_not_started_without_one(tmp_path):
    """A sweep's ensembles not started when it stopped train at the schedule its checkpoints record: one saved
    before --warmup-steps, without a warm-up."""
    saved = tmp_path / "sweep"
    sweep = ["sweep", *TINY, "--epochs", "2", "--lr", "1e-2,2e-2", "--max-members", "1", "--schedule", "cosine",
             "--save", str(saved)]
    assert run(*sweep)[0] == 0
    (saved / "ensemble-1.npz").unlink()
    as_saved_before_per_step_schedules(saved / "ensemble-0.npz")
    status, _, err = run("sweep", "--resume", str(saved), "--quiet")
    assert status == 0, err
    assert gpunn.load_checkpoint(saved / "ensemble-1.npz").settings.schedule == gpunn.Schedule("cosine")
    assert "warmup_steps" not in run_options(gpunn.checkpoint.read_meta(saved / "ensemble-1.npz"))


@pytest.mark.parametrize("options, shown", [  # the options the schedule reads, in its fields' order
    (["--schedule", "onecycle", "--lr", "0.05"], "sgd lr 0.05, schedule onecycle (pct_start 0.3, div_factor 25, "
     "final_div_factor 10000, anneal cos, total_steps 6 (the run's)), batch 60"),
    (["--schedule", "step", "--step-size", "1", "--gamma", "0.5", "--warmup-steps", "4"],
     "sgd lr 0.01, schedule step (step_size 1, gamma 0.5, warmup_steps 4), batch 60"),
    (["--schedule", "cosine"], "sgd lr 0.01, schedule cosine (total_epochs 2 (the run's), min_factor 0), batch 60"),
    (["--warmup-steps", "2"], "sgd lr 0.01, schedule constant (warmup_steps 2), batch 60"),
    ([], "sgd lr 0.01, batch 60"),  # a constant rate: the line as it was
])
def test_info_shows_the_runs_schedule_and_its_options(tmp_path, options, shown):
    path = tmp_path / "run.npz"
    assert run("train", *TINY, "--epochs", "2", *options, "--save", str(path))[0] == 0
    status, out, err = run("info", str(path))
    assert status == 0, err
    trained = next(line for line in out.splitlines() if line.startswith("trained"))
    assert trained.split("; ", 1)[1].startswith(shown), trained
