"""`gpunn sweep`: a grid trained as one ensemble, ranked; split into ensembles that fit; outputs."""
import collections
import csv
import json
import os
import re

import numpy
import pytest
from checkpoint_edits import rewrite_meta, run_options
from cli_args import with_options

import gpunn
from gpunn import cli
from gpunn.checks import read_by_position
from gpunn.hints import shell_word

ARGS = ["sweep", "--lr", "1e-3,1e-2", "--weight-decay", "0,1e-2", "--seeds", "2", "--rows", "600", "--features", "5",
        "--hidden", "8,8", "--epochs", "3", "--batch-size", "64", "--quiet", "--device", "cpu", "--dtype", "float64"]


def run(args, capsys, status=0):
    code = cli.main(args)
    out = capsys.readouterr()
    assert code == status, out.err
    return out.out


def test_a_member_count_is_singular_for_one_member_only():
    from gpunn.cli.common import counted

    assert [counted(n, "member") for n in (1, 2, 3, 1000)] == ["1 member", "2 members", "3 members", "1,000 members"]


@pytest.mark.parametrize("max_members, names", [(None, "ensemble-0.npz"), ("3", "ensemble-0.npz ... ensemble-2.npz")])
def test_the_checkpoints_line_names_the_files_written(tmp_path, capsys, max_members, names):
    """It printed DIR/ensemble-G.npz, a pattern named nowhere in the output: the files it writes are named."""
    split = ["--max-members", max_members] if max_members else []
    out = run([*ARGS[:ARGS.index("--epochs")], "--epochs", "1", *ARGS[ARGS.index("--epochs") + 2:], *split,
               "--save", str(tmp_path / "run")], capsys)
    assert f"checkpoints: {tmp_path / 'run'}/{names} (continue with gpunn sweep --resume {tmp_path / 'run'})" in out
    written = sorted(f for f in os.listdir(tmp_path / "run") if f.startswith("ensemble-"))
    assert written[0] == "ensemble-0.npz" and written[-1] == names.split(" ... ")[-1]


def test_sweep_ranks_the_grid_and_splitting_changes_nothing(tmp_path, capsys):
    one, split = tmp_path / "one.json", tmp_path / "split.json"
    out = run(ARGS + ["--json", str(one), "--csv", str(tmp_path / "t.csv"), "--save-best", str(tmp_path / "b.npz")],
              capsys)
    assert "8 members (2 lr x 2 weight decay x 2 seed(s))" in out and "split" not in out
    # named as gpunn predict names its files (it said INPUT OUTPUT)
    assert f"best member saved: {tmp_path / 'b.npz'} (gpunn predict {tmp_path / 'b.npz'} IN OUT)" in out
    out = run(ARGS + ["--json", str(split), "--max-members", "3"], capsys)
    assert "the grid is split into 3 ensembles of up to 3 members (--max-members 3)" in out
    out = run(ARGS[:3] + ARGS[5:] + ["--max-members", "1"], capsys)  # one weight decay: 4 members
    assert "the grid is split into 4 ensembles of up to 1 member (--max-members 1)" in out
    a, b = (json.loads(p.read_text())["members"] for p in (one, split))
    assert [r["val_mse"] for r in a] == sorted(r["val_mse"] for r in a)  # ranked
    key = lambda r: (r["lr"], r["weight_decay"], r["seed"])  # noqa: E731
    assert {key(r) for r in a} == {(lr, wd, s) for lr in (1e-3, 1e-2) for wd in (0.0, 1e-2) for s in (0, 1)}
    # members are numbered lr x weight decay x seed, in that order: a saved sweep's ensemble g resumes members g x
    # per ..., so the order is part of its checkpoints (their check compares the seeds alone)
    assert [key(r) for r in sorted(a, key=lambda r: r["member"])] == [
        (lr, wd, s) for lr in (1e-3, 1e-2) for wd in (0.0, 1e-2) for s in (0, 1)]
    assert sorted(r["member"] for r in a) == list(range(8))  # from 0, as README says (best_epoch from 1)
    # members are independent: the same member in another ensemble trains to the same result
    numpy.testing.assert_allclose([r["val_mse"] for r in sorted(a, key=key)], [r["val_mse"] for r in sorted(b, key=key)],
                                  rtol=1e-10)
    rows = list(csv.DictReader((tmp_path / "t.csv").read_text().splitlines()))
    assert len(rows) == 8 and float(rows[0]["val_mse"]) == a[0]["val_mse"]
    lines = list(csv.reader((tmp_path / "t.csv").read_text().splitlines()))  # the table's columns, no curve: one field per column
    assert lines[0] == ["member", "lr", "weight_decay", "seed", "val_mse", "val_r2", "weights_epoch", "partial_epoch",
                        "best_epoch", "stopped_early", "diverged"] and {len(line) for line in lines} == {11}


def test_a_grid_split_to_fit_the_memory_fits_it(tmp_path, capsys, monkeypatch):
    one, split = tmp_path / "one.json", tmp_path / "split.json"
    run(ARGS + ["--json", str(one)], capsys)
    # room for about three members as the Ensemble counts them (1024 rows of workspace each), though the
    # sweep's own count (a batch and 60 validation rows) would put all eight in one ensemble
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 1_600_000)
    out = run(ARGS + ["--json", str(split)], capsys)
    assert "the grid is split into 3 ensembles of up to 3 members (0.4 MiB per member, 1.5 MiB free on cpu)" in out
    key = lambda r: (r["lr"], r["weight_decay"], r["seed"])  # noqa: E731
    assert sorted(members(one), key=key) == sorted(members(split), key=key)
    # --max-members above what the memory holds lowers nothing: the memory's split stands
    out = run(ARGS + ["--max-members", "5"], capsys)
    assert "the grid is split into 3 ensembles of up to 3 members (0.4 MiB per member, 1.5 MiB free on cpu)" in out
    # saved, the sweep resumes in the split it started with, whatever memory is free now
    saved = tmp_path / "sweep"
    run(with_options(ARGS, "--epochs", "1", "--save", str(saved)), capsys)
    monkeypatch.undo()
    out = run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet"], capsys)
    assert "the grid is split into 3 ensembles of up to 3 members (as the sweep being resumed was split)" in out
    assert [gpunn.load_checkpoint(saved / f"ensemble-{g}.npz").epoch for g in range(3)] == [2, 2, 2]
    # a split in two says so too
    out = run(ARGS + ["--max-members", "4"], capsys)
    assert "the grid is split into 2 ensembles of up to 4 members (--max-members 4)" in out
    # memory for less than one member: ensembles of one, which the Ensemble's own check then refuses in its words
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 100_000)
    assert cli.main(ARGS) == 2
    captured = capsys.readouterr()
    assert "the grid is split into 8 ensembles of up to 1 member (0.4 MiB per member, 0.1 MiB free on cpu)" in captured.out
    assert "out of memory: an ensemble of 1 x [5, 8, 8, 1] (float64) needs about 0.4 MiB" in captured.err


def test_a_split_by_memory_leaves_a_fifth_of_the_free_memory_spare(monkeypatch):
    import types

    from gpunn.backend import CPU
    from gpunn.cli.sweep import bytes_per_member, members_per_ensemble

    args = types.SimpleNamespace(batch_size=64, dtype="float64", no_bias=False, precision="float32", max_members=None)
    sizes = [5, 8, 8, 1]
    per = bytes_per_member(sizes, 64, 60, 8)
    for free, members in ((4 * per, 3), (5 * per, 4), (per, 1)):  # 80% of the memory free, in whole members
        monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: free)
        assert members_per_ensemble(args, CPU, sizes, 60, 8)[0] == members
    assert members_per_ensemble(args, CPU, sizes, 60, 1) == (1, "")  # a grid that fits says no memory reason


def test_a_task_too_large_for_the_memory_is_refused_before_its_rows_are_generated(capsys, monkeypatch):
    """README: memory is checked before any work, the data and their shuffled copy with the model, saying how
    many rows would fit. gpunn sweep split its grid by memory but generated any --rows: a task larger than the
    memory failed in NumPy's allocation ('out of memory: Unable to allocate 596. GiB'), or, where Linux
    overcommits, was killed later without a word."""
    made = []
    monkeypatch.setattr(gpunn.datasets, "make", lambda *a, **k: made.append(a))
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 10 * 2**20)
    assert cli.main(with_options(ARGS, "--rows", "1_000_000")) == 2
    err = capsys.readouterr().err
    assert "--rows 1,000,000 needs about" in err and "10.0 MiB is available; about" in err and "rows would fit" in err
    assert "--data" in err and not made  # refused before a row was generated; a file is read chunk by chunk

def test_a_data_parallel_sweep_splits_its_grid_for_the_rank_with_the_least_memory_free():
    # under mpiexec each rank holds the whole ensemble on its own GPU: rank 0's split (what every rank took)
    # would not fit on a rank whose GPU has less memory free
    from gpunn.cli.sweep import split_over_ranks

    class Ranks:  # the 3 ranks' own members_per_ensemble, this one rank 1, each with its error's words (none failed)
        def allgather(self, mine, label=None):
            return [((6, "0.1 MiB per member, 0.60 GiB free on cuda:0"), None), mine, ((6, ""), None)]

    assert split_over_ranks(2, "0.1 MiB per member, 0.20 GiB free on cuda:1", Ranks()) == (
        2, "0.1 MiB per member, 0.20 GiB free on cuda:1 (rank 1)")
    assert split_over_ranks(8, "", Ranks()) == (6, "0.1 MiB per member, 0.60 GiB free on cuda:0")
    assert split_over_ranks(6, "", Ranks()) == (6, "0.1 MiB per member, 0.60 GiB free on cuda:0")  # the first


def test_a_data_parallel_sweep_takes_that_split(capsys, monkeypatch):
    import gpunn.distributed

    class Ranks:  # rank 1 of 2 has room for two members an ensemble (no error's words: the split's agreement)
        def allgather(self, mine, label=None):
            return [mine, ((2, "0.4 MiB per member, 1.0 MiB free on cuda:1"), None)]

    def training(*args, **kwargs):
        raise RuntimeError("training")

    monkeypatch.setattr(gpunn.distributed, "world", lambda: Ranks())
    monkeypatch.setattr(gpunn.cli.sweep, "_launch", lambda device: (True, True, device))  # as rank 0 of mpiexec -n 2
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", training)
    assert cli.main(ARGS) == 1
    assert ("the grid is split into 4 ensembles of up to 2 members (0.4 MiB per member, 1.0 MiB free on cuda:1 "
            "(rank 1))") in capsys.readouterr().out


def test_saved_best_member_is_the_mlp_its_settings_train(tmp_path, capsys):
    path, js = tmp_path / "best.npz", tmp_path / "s.json"
    run(ARGS + ["--save-best", str(path), "--json", str(js)], capsys)
    best = json.loads(js.read_text())["members"][0]
    X, Y = gpunn.datasets.make("teacher", 600, 5, 1, noise=0.1, seed=0, device="cpu", dtype="float64")
    twin = gpunn.MLP([5, 8, 8, 1], dtype="float64", seed=best["seed"], device="cpu")
    twin.fit(X[60:], Y[60:], epochs=3, batch_size=64, optimizer=gpunn.Adam(weight_decay=best["weight_decay"]),
             lr=best["lr"], seed=0, verbose=False)
    numpy.testing.assert_allclose(gpunn.load(path, device="cpu").params, twin.params, rtol=1e-10)


def test_the_network_options_reach_every_member(tmp_path, capsys):
    path = tmp_path / "best.npz"
    run(with_options(ARGS, "--lr", "1e-2", "--weight-decay", "0", "--seeds", "1", "--epochs", "1", "--no-bias",
                     "--activation", "tanh", "--output-activation", "sigmoid", "--save-best", str(path)), capsys)
    best = gpunn.load(path, device="cpu")
    assert best.layer_sizes == [5, 8, 8, 1] and best.biases is None
    assert [a.name for a in best.activations] == ["tanh", "tanh", "sigmoid"]


def test_the_best_line_says_when_a_members_best_epoch_scored_better_than_the_weights_it_holds(tmp_path, capsys):
    path = tmp_path / "best.npz"
    grid = ["sweep", "--lr", "0.1", "--optimizer", "sgd", "--rows", "600", "--features", "5", "--hidden", "8,8",
            "--epochs", "6", "--batch-size", "64", "--quiet", "--device", "cpu", "--dtype", "float64"]
    js = tmp_path / "s.json"
    out = run(grid + ["--save-best", str(path), "--json", str(js)], capsys)
    best = members(js)[0]
    # the row is the weights the member holds, the last epoch's; its best validation MSE was one epoch before
    assert best["weights_epoch"] == 6 and best["best_epoch"] == 5 and best["val_mse"] == best["val_curve"][-1]
    assert best["val_curve"][4] < best["val_mse"]
    # its R² is that epoch's too: 1 - MSE / the variance of the 60 held-out targets
    X, Y = gpunn.datasets.make("teacher", 600, 5, 1, seed=0, device="cpu", dtype="float64")
    assert best["val_r2"] == pytest.approx(1 - best["val_mse"] / Y[:60].var(), rel=1e-9)
    assert gpunn.load(path, device="cpu").evaluate(X[:60], Y[:60])["mse"] == pytest.approx(best["val_mse"], rel=1e-9)
    assert f"at epoch 6 (its best epoch, 5, scored {best['val_curve'][4]:.5g}: --early-stopping keeps each member's " \
           "best epoch's weights)" in out
    out = run(grid + ["--save-best", str(path), "--early-stopping", "--patience", "3"], capsys)
    assert "at epoch 5\n" in out and "its best epoch" not in out


def test_the_best_line_says_why_an_early_stopping_member_interrupted_holds_no_best_epochs_weights(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """With --early-stopping, Ctrl-C at epoch 6's end leaves each member the weights it reached (as the checkpoint
    written then holds them), not its best epoch's (5): the table ranks epoch 6's, and the best line said "at epoch 6"
    alone, where --early-stopping was to keep epoch 5's. It says the best epoch's score and why; not "--early-stopping
    keeps" them, which the run had."""
    fit = gpunn.ensemble.Ensemble.fit
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *a, **k: fit(
        self, *a, **{**k, "callbacks": [*k["callbacks"], interrupt_at(5, 8)]}))  # epoch 6's last batch of 9
    js = tmp_path / "s.json"
    out = run(["sweep", "--lr", "0.1", "--optimizer", "sgd", "--rows", "600", "--features", "5", "--hidden", "8,8",
               "--epochs", "8", "--batch-size", "64", "--quiet", "--device", "cpu", "--dtype", "float64",
               "--early-stopping", "--patience", "3", "--json", str(js)], capsys, status=130)
    best = members(js)[0]
    assert best["weights_epoch"] == 6 and best["best_epoch"] == 5 and best["val_curve"][4] < best["val_mse"]
    assert (f"at epoch 6 (its best epoch, 5, scored {best['val_curve'][4]:.5g}: the interrupt left each member the "
            "weights it had reached; early stopping puts the best epoch's back as a run ends)\n") in out, out


def test_the_table_ranks_the_weights_each_member_holds_as_ensemble_best_does(tmp_path, capsys):
    """Without --early-stopping each member ends with its last epoch's weights. The table ranked the members by their
    best epoch, so it put first lr 0.3 (0.083 at epoch 4, but its weights score 0.196), and --save-best saved those
    weights, while Ensemble.best() picked lr 0.1, whose weights score 0.138: the two now agree, on the weights."""
    js, path = tmp_path / "s.json", tmp_path / "best.npz"
    lrs = [0.01, 0.03, 0.1, 0.3]
    out = run(["sweep", "--lr", ",".join(map(str, lrs)), "--optimizer", "sgd", "--rows", "400", "--features", "5",
               "--hidden", "8", "--epochs", "6", "--batch-size", "32", "--seed", "1", "--quiet", "--device", "cpu",
               "--dtype", "float64", "--json", str(js), "--save-best", str(path)], capsys)
    rows = members(js)
    by_best_epoch = min(rows, key=lambda r: min(r["val_curve"]))
    assert by_best_epoch["lr"] == 0.3 and by_best_epoch["best_epoch"] == 4  # the old table's first: not the weights'
    assert [r["lr"] for r in rows] == [0.1, 0.03, 0.3, 0.01]  # by the last epoch's val MSE, the weights held
    assert [r["val_mse"] for r in rows] == [r["val_curve"][-1] for r in rows] == sorted(r["val_mse"] for r in rows)
    assert {r["weights_epoch"] for r in rows} == {6} and "best: lr 0.1," in out
    X, Y = gpunn.datasets.make("teacher", 400, 5, 1, seed=1, device="cpu", dtype="float64")
    assert gpunn.load(path, device="cpu").evaluate(X[:40], Y[:40])["mse"] == pytest.approx(rows[0]["val_mse"], rel=1e-9)
    ens = gpunn.Ensemble([5, 8, 1], 4, seed=[1] * 4, dtype="float64", device="cpu")  # the sweep, in Python
    ens.fit(X[40:], Y[40:], epochs=6, batch_size=32, optimizer="sgd", lr=lrs, seed=1, validation_data=(X[:40], Y[:40]),
            verbose=False)
    assert lrs[ens.best_index()] == 0.1
    numpy.testing.assert_allclose(ens.best().params, gpunn.load(path, device="cpu").params, rtol=1e-12)


def test_a_member_stopped_early_is_ranked_by_the_epoch_whose_weights_it_keeps(tmp_path, capsys):
    """With --min-delta, early stopping's best epoch is the first fall of more than it, not the least val_mse's: the
    table said "best epoch 4" and epoch 4's val MSE while the member (and --save-best) held epoch 1's weights. The
    row is the history's best epoch now (history.best_epoch, as gpunn train's --json), and its val MSE and R²."""
    js, path = tmp_path / "s.json", tmp_path / "best.npz"
    out = run(["sweep", "--lr", "0.01", "--rows", "400", "--hidden", "8", "--epochs", "4", "--early-stopping",
               "--patience", "3", "--min-delta", "1e6", "--quiet", "--device", "cpu", "--dtype", "float64",
               "--json", str(js), "--save-best", str(path)], capsys)
    member, = members(js)
    curve = member["val_curve"]
    assert min(curve) < curve[0] and member["stopped_early"]  # the least val_mse is a later epoch's
    assert member["best_epoch"] == 1 and member["val_mse"] == curve[0] and "at epoch 1" in out
    X, Y = gpunn.datasets.make("teacher", 400, 16, 1, seed=0, device="cpu", dtype="float64")  # the first tenth held out
    assert gpunn.load(str(path), device="cpu").evaluate(X[:40], Y[:40])["mse"] == pytest.approx(curve[0], rel=1e-9)


def test_each_member_says_whether_it_stopped_early(tmp_path, capsys):
    js = tmp_path / "s.json"
    grid = ["sweep", "--lr", "0.1,0.3", "--optimizer", "sgd", "--rows", "600", "--features", "5", "--hidden", "8,8",
            "--epochs", "6", "--batch-size", "64", "--early-stopping", "--patience", "1", "--quiet", "--device", "cpu",
            "--dtype", "float64", "--json", str(js), "--csv", str(tmp_path / "t.csv")]
    out = run(grid, capsys)
    # lr 0.1 is best at epoch 5 and stops after one epoch without improvement; lr 0.3 improves to the last
    assert {(r["lr"], r["best_epoch"], r["stopped_early"]) for r in members(js)} == {(0.1, 5, True), (0.3, 6, False)}
    assert [line.split()[-1] for line in out.splitlines() if line.lstrip()[:1] in ("1", "2")] == ["yes", "no"]
    assert [r["stopped_early"] for r in csv.DictReader((tmp_path / "t.csv").read_text().splitlines())] == ["True", "False"]


def test_sweep_plot_and_bad_grid(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    run(ARGS[:5] + ["--rows", "200", "--epochs", "2", "--quiet", "--device", "cpu", "--plot", str(png)], capsys)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", "--lr", "1e-3,-1"])
    assert exc.value.code == 2 and "--lr: every value must be positive and finite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--weight-decay", "0,x"])
    assert "--weight-decay: takes comma-separated numbers" in capsys.readouterr().err


def test_the_plots_tick_whole_epochs(tmp_path, monkeypatch):
    """A 3-epoch run's curves (gpunn sweep's --plot, and gpunn train's) were drawn over ticks at 1.25, 1.5, 1.75...
    epochs (newuser39)."""
    pytest.importorskip("matplotlib")
    from gpunn import atomic
    from gpunn.cli.sweep import plot_curves
    from gpunn.cli.train import plot_history

    figures, save = [], atomic.save_figure
    monkeypatch.setattr(atomic, "save_figure", lambda fig, path, **options: (figures.append(fig),
                                                                            save(fig, path, **options)))
    rows = [{"lr": 1e-2, "weight_decay": 0.0, "seed": s, "val_curve": [0.5 - s / 10, 0.3, 0.2]} for s in range(2)]
    plot_curves(rows, tmp_path / "c.png")
    plot_history({"epoch": [1, 2, 3], "loss": [0.5, 0.3, 0.2], "val_loss": [0.6, 0.4, 0.3]}, tmp_path / "t.png")
    for figure in figures:
        ax, = figure.axes
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ax.get_xlabel() == "epoch" and ticks and all(t == int(t) for t in ticks), ticks


@pytest.mark.parametrize("option, values, said", [
    # a value left out was dropped without a word: 1e-3,,3e-3 swept two rates
    ("--lr", "1e-3,,3e-3", "has an empty value in '1e-3,,3e-3': write each value, comma-separated"),
    ("--weight-decay", "0,", "has an empty value in '0,'"),
    # a repeat trained the same members twice, to the same weights (0.001 is 1e-3)
    ("--lr", "1e-3,0.001,3e-3", "names 0.001 more than once in '1e-3,0.001,3e-3': a repeated value trains the same "
                                "members again, to the same weights; name each once (--seeds trains repeats that "
                                "differ)"),
    ("--weight-decay", "0,1e-4,0", "names 0 more than once"),
])
def test_a_grid_with_a_value_left_out_or_repeated_is_refused(capsys, option, values, said):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", option, values])
    assert exc.value.code == 2 and f"argument {option}: {said}" in capsys.readouterr().err


@pytest.mark.parametrize("hidden", ["32;64", "32,32 64,64", "[32,64]", "32/64"])
def test_several_hidden_architectures_are_refused_saying_a_sweep_trains_one(capsys, hidden):
    # the refusal said only how one architecture is written, not that a sweep's grid never varies it
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", "--hidden", hidden])
    assert exc.value.code == 2
    assert (f"--hidden takes positive integers separated by commas or x (256,256 or 256x256), got {hidden!r}; a "
            "sweep's members share one architecture (they train as one ensemble; its grid is --lr, --weight-decay, "
            "--clip-norm (or --clip-value) and --seeds): run one sweep per --hidden to compare sizes") in capsys.readouterr().err


@pytest.mark.parametrize("option, values, rule", [
    ("--lr", "1e-3,0", "positive and finite"),  # a rate of 0 trains nothing, as gpunn train's --lr 0 is refused
    ("--lr", "1e-3,inf", "positive and finite"),
    ("--weight-decay", "0,inf", "zero or more, and finite"),
    ("--weight-decay", "0,-1e-4", "zero or more, and finite"),
])
def test_a_grid_value_at_or_past_its_options_bound_is_refused_by_the_option(capsys, option, values, rule):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", option, values])
    assert exc.value.code == 2
    assert f"{option}: every value must be {rule}, got '{values}'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:members .* diverged")
def test_an_ensemble_whose_members_all_diverge_ranks_them_last_as_the_unsplit_sweep_does(tmp_path, capsys):
    grid = ["sweep", "--lr", "1e-3,100,3e-3", "--optimizer", "sgd", "--rows", "300", "--features", "3", "--hidden", "4",
            "--epochs", "2", "--quiet", "--device", "cpu", "--dtype", "float64"]
    one, split = tmp_path / "one.json", tmp_path / "split.json"
    run(grid + ["--json", str(one), "--csv", str(tmp_path / "t.csv")], capsys)
    table = (tmp_path / "t.csv").read_bytes()  # as train's --csv: \n line ends (the csv module's default is \r\n)
    assert b"\r" not in table and table.splitlines()[-1].startswith(b"1,100.0,0.0,0,")
    out = run(grid + ["--json", str(split), "--max-members", "1", "--save-best", str(tmp_path / "b.npz")], capsys)
    assert "ensemble 1: every member diverged; they are ranked last" in out
    a, b = members(one), members(split)
    assert [(r["lr"], r["diverged"]) for r in a] == [(r["lr"], r["diverged"]) for r in b] == \
           [(3e-3, False), (1e-3, False), (100.0, True)]
    assert [r["val_mse"] for r in a[:2]] == [r["val_mse"] for r in b[:2]]
    assert cli.main(with_options(grid, "--lr", "100", "--max-members", "1")) == 2  # every member of the grid: as one ensemble
    assert "the training loss of every member became NaN" in capsys.readouterr().err
    # saved, the diverged ensemble 0 leaves no checkpoint; the sweep still resumes (here: extends) from the others
    saved, extended, straight = tmp_path / "saved", tmp_path / "extended.json", tmp_path / "straight.json"
    split_grid = grid[:2] + ["100,1e-3"] + grid[3:] + ["--max-members", "1"]
    run(split_grid + ["--save", str(saved)], capsys)
    assert sorted(p.name for p in saved.iterdir()) == ["ensemble-1.npz"]
    run(with_options(split_grid, "--epochs", "3", "--json", str(straight)), capsys)
    out = run(["sweep", "--resume", str(saved), "--epochs", "3", "--json", str(extended), "--quiet"], capsys)
    assert "ensemble 1: 2 of 3 epochs done" in out and members(extended) == members(straight)
    assert cli.main(split_grid + ["--save", str(saved)]) == 2
    assert "already holds a sweep's checkpoints" in capsys.readouterr().err


@pytest.mark.parametrize("lr, split, said", [
    ("1e-3,100", [], "member 1 (lr 100, weight decay 0, seed 0)"),
    # a split grid: the second ensemble's member 1 is the grid's member 3, as the table and --csv name it
    ("1e-3,3e-3,2e-3,100", ["--max-members", "2"], "member 3 (lr 100, weight decay 0, seed 0)"),
])
def test_a_member_that_diverges_is_said_in_a_note_line_by_the_grids_number_and_settings(capsys, lr, split, said):
    # it was "/.../gpunn/training/loop.py:262: RuntimeWarning: members [1] diverged ..." and the line of gpunn's
    # code that warned: a place inside gpunn, which a sweep's user has no use for, and the member's place in its
    # ensemble, which a split grid numbers from 0 again
    assert cli.main(["sweep", "--lr", lr, "--optimizer", "sgd", "--rows", "300", "--features", "3", "--hidden", "4",
                     "--epochs", "2", "--quiet", "--device", "cpu", "--dtype", "float64", *split]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"^note: {re.escape(said)} diverged in epoch \d \(loss NaN, infinite or exploding\) and is "
                     r"frozen; the others go on$", err, re.M), err
    assert "Warning" not in err and ".py:" not in err


def test_each_ensembles_diverged_member_gets_its_note_under_pythons_default_warning_filter(capsys):
    # the note was renamed as it was shown, after the filter: the second ensemble's "members [0] diverged in
    # epoch 1" was the first's text, from the same line, which the default action shows once: no second note
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # python -m gpunn's, for a RuntimeWarning
        assert cli.main(["sweep", "--lr", "100,1e-3,200,2e-3", "--optimizer", "sgd", "--rows", "300", "--features", "3",
                         "--hidden", "4", "--epochs", "2", "--quiet", "--device", "cpu", "--dtype", "float64",
                         "--max-members", "2"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert [note.split(" diverged")[0] for note in notes] == ["note: member 0 (lr 100, weight decay 0, seed 0)",
                                                               "note: member 2 (lr 200, weight decay 0, seed 0)"]


def test_a_members_naming_holds_in_its_own_thread_only():
    """gpunn sweep names a diverged member by its place in the grid in its fit's own context: another thread's fit
    at the same time says its own members' places (the swap of warnings.showwarning renamed every thread's)."""
    import threading
    import warnings

    from gpunn.training.ensemble import MembersDivergedWarning, members_named

    X, Y = gpunn.datasets.make("teacher", 300, 3, 1, seed=0, dtype="float64")

    def fit_one_to_diverge():
        gpunn.Ensemble([3, 4, 1], 2, dtype="float64", seed=0).fit(X, Y, epochs=1, optimizer="sgd", lr=[1e-3, 100],
                                                                  verbose=False)

    with members_named(lambda k: k + 10, lambda k: "lr 100"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elsewhere = threading.Thread(target=fit_one_to_diverge)
        elsewhere.start()
        elsewhere.join()
        fit_one_to_diverge()
    said = [str(w.message).split(" diverged")[0] for w in caught if isinstance(w.message, MembersDivergedWarning)]
    assert said == ["members [1]", "member 11 (lr 100)"]


GRID = ARGS[:ARGS.index("--epochs")] + ["--batch-size", "64", "--quiet", "--device", "cpu", "--dtype", "float64",
                                        "--max-members", "3"]  # 8 members in ensembles of 3, 3 and 2


def _not_json(token):
    raise ValueError(f"{token} is not JSON")


@pytest.mark.filterwarnings("ignore:members .* diverged")
def test_an_ensemble_that_scores_no_held_out_row_finitely_is_ranked_last_as_a_diverged_one(tmp_path, capsys,
                                                                                           monkeypatch):
    """A split sweep's ensemble whose members all score the held-out rows as not finite (ValidationNotFinite: in
    one ensemble of the whole grid they would be frozen beside members that scored) is ranked last as a diverged
    one, and the sweep goes on; where that is every member of the grid, the sweep fails with that error."""
    fit = gpunn.Ensemble.fit

    def overflowing_at_lr_100(self, *args, lr=None, **kwargs):
        if lr is not None and 100.0 in list(lr):
            raise gpunn.ValidationNotFinite("epoch 1's validation is not finite (val_loss inf)")
        return fit(self, *args, lr=lr, **kwargs)

    monkeypatch.setattr(gpunn.Ensemble, "fit", overflowing_at_lr_100)
    grid = ["sweep", "--lr", "1e-3,100,3e-3", "--optimizer", "sgd", "--rows", "300", "--features", "3", "--hidden", "4",
            "--epochs", "2", "--quiet", "--device", "cpu", "--dtype", "float64", "--max-members", "1"]
    out = run(grid + ["--json", str(tmp_path / "s.json")], capsys)
    assert "ensemble 1: no member scored the held-out rows finitely; they are ranked last" in out
    assert [(r["lr"], r["diverged"]) for r in members(tmp_path / "s.json")] == \
           [(3e-3, False), (1e-3, False), (100.0, True)]
    assert cli.main(with_options(grid, "--lr", "100")) == 2
    assert "epoch 1's validation is not finite" in capsys.readouterr().err


def members(path):
    return json.loads(path.read_text())["members"]


def test_an_interrupted_sweep_resumes_to_the_sweep_that_never_stopped(tmp_path, capsys, monkeypatch, interrupt_at):
    straight = tmp_path / "straight.json"
    run(GRID + ["--epochs", "3", "--json", str(straight), "--save-best", str(tmp_path / "a.npz")], capsys)
    fit, calls = gpunn.ensemble.Ensemble.fit, []

    def second_ensemble_interrupted(self, *args, **kwargs):  # as Ctrl-C in epoch 2 of the second ensemble
        calls.append(1)
        if len(calls) == 2:
            kwargs["callbacks"] = [*kwargs["callbacks"], interrupt_at(1, 3)]
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", second_ensemble_interrupted)
    saved = tmp_path / "sweep"
    out = run(GRID + ["--epochs", "3", "--save", str(saved)], capsys, status=130)  # 130: Ctrl-C, as gpunn train
    assert "interrupted" in out and f"gpunn sweep --resume {saved}" in out
    assert sorted(p.name for p in saved.iterdir()) == ["ensemble-0.npz", "ensemble-1.npz"]
    fresh = []
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *a, **k: fresh.append(1) or fit(self, *a, **k))

    resumed = tmp_path / "resumed.json"
    out = run(["sweep", "--resume", str(saved), "--json", str(resumed), "--save-best", str(tmp_path / "b.npz"),
               "--quiet"], capsys)
    # (the words of gpunn train's resume line: one function, training.state.position_words)
    assert "ensemble 0: 3 of 3 epochs done" in out and "ensemble 1: 1 of 3 epochs and 4 of 9 batches of epoch 2 " \
                                                       "done" in out
    assert len(fresh) == 1  # only the third ensemble starts from scratch
    assert members(resumed) == members(straight)  # every member's curve, bit for bit (CPU, float64)
    numpy.testing.assert_array_equal(gpunn.load(tmp_path / "b.npz", device="cpu").params,
                                     gpunn.load(tmp_path / "a.npz", device="cpu").params)
    assert gpunn.load_checkpoint(saved / "ensemble-2.npz").epoch == 3


def test_a_sweep_extended_then_interrupted_resumes_to_its_new_epochs_whatever_order_the_directory_lists(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """Its options are read from ensemble 0's checkpoint, the one resumed first: --epochs 2, where ensemble 2's (not
    reached before Ctrl-C) still records 1, which would refuse to shorten ensemble 0."""
    from gpunn import checkpoint

    saved, straight, resumed = tmp_path / "sweep", tmp_path / "straight.json", tmp_path / "resumed.json"
    run(GRID + ["--epochs", "2", "--json", str(straight)], capsys)
    run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)
    resume, calls = checkpoint.Checkpoint.resume, []

    def second_ensemble_interrupted(self, *args, **kwargs):  # Ctrl-C in epoch 2 of the second ensemble
        calls.append(1)
        if len(calls) == 2:
            kwargs["callbacks"] = [*kwargs["callbacks"], interrupt_at(1, 3)]
        return resume(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpoint, "resume", second_ensemble_interrupted)
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet"], capsys, status=130)
    monkeypatch.undo()
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: sorted(listdir(path), reverse=True))
    out = run(["sweep", "--resume", str(saved), "--json", str(resumed), "--quiet"], capsys)
    assert "ensemble 0: 2 of 2 epochs done" in out and "ensemble 2: 1 of 2 epochs done" in out
    assert members(resumed) == members(straight)


def test_a_train_checkpoint_named_as_a_sweeps_is_refused_as_not_a_sweeps(tmp_path, capsys):
    saved = tmp_path / "sweep"
    saved.mkdir()
    run(["train", "--rows", "200", "--features", "3", "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet",
         "--save", str(saved / "ensemble-0.npz")], capsys)
    assert cli.main(["sweep", "--resume", str(saved), "--quiet"]) == 2
    assert (f"--resume {saved / 'ensemble-0.npz'} is not a checkpoint of gpunn sweep (written by gpunn sweep --save)"
            in capsys.readouterr().err)


def test_a_sweep_saved_with_early_stopping_resumes(tmp_path, capsys):
    """Its checkpoints list EarlyStopping before the callback that records the sweep's options: those are found by
    their class, not as the first callback's state."""
    saved, straight, resumed = tmp_path / "sweep", tmp_path / "straight.json", tmp_path / "resumed.json"
    stopping = GRID + ["--early-stopping", "--patience", "2"]
    run(stopping + ["--epochs", "2", "--json", str(straight)], capsys)
    run(stopping + ["--epochs", "1", "--save", str(saved)], capsys)
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--json", str(resumed)], capsys)
    assert members(resumed) == members(straight)


def test_a_resumed_sweep_reads_each_checkpoints_arrays_once(tmp_path, capsys, monkeypatch):
    """--resume read the first ensemble's checkpoint whole three times: for its recorded options, for its
    metadata, and to resume it. Only the last needs the arrays; the first two read the metadata alone."""
    from gpunn.checkpoint import format as checkpoint_format

    saved = tmp_path / "sweep"
    run(with_options(ARGS, "--epochs", "1", "--max-members", "4", "--save", str(saved)), capsys)
    parse, whole = checkpoint_format._parse, []
    monkeypatch.setattr(checkpoint_format, "_parse", lambda path, data: whole.append(str(path)) or parse(path, data))
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet"], capsys)
    assert sorted(whole) == [str(saved / "ensemble-0.npz"), str(saved / "ensemble-1.npz")]


def test_a_resumed_sweep_reads_each_checkpoints_metadata_once(tmp_path, capsys, monkeypatch):
    """The sweep read its first checkpoint's metadata twice: for its options, then again with every checkpoint's for
    the --epochs check. It reads each once now; the first is read once more, before, by the command line, whose
    options' defaults it records (gpunn.cli.resume.recorded)."""
    saved, read_meta, reads = tmp_path / "sweep", gpunn.checkpoint.read_meta, collections.Counter()
    run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)
    monkeypatch.setattr(gpunn.checkpoint, "read_meta",
                        lambda path: reads.update([os.path.basename(path)]) or read_meta(path))
    run(["sweep", "--resume", str(saved), "--epochs", "1"], capsys)
    assert reads == {"ensemble-0.npz": 2, "ensemble-1.npz": 1, "ensemble-2.npz": 1}


def test_save_best_over_a_training_runs_checkpoint_is_refused_and_over_an_earlier_best_member_is_not(tmp_path, capsys):
    """--save-best PATH where gpunn train --save PATH had saved a run replaced that run with the best member, a model
    saved alone, without a word (as train --save over an earlier run did, refused since 4155c1e). Refused now, the
    run left as it was; a sweep's ensemble checkpoint likewise. An earlier sweep's best member there is replaced, as
    a re-run replaces its own output."""
    run_path, best = tmp_path / "my run.npz", tmp_path / "best.npz"  # (a path of a space: quoted, as shell_word)
    run(["train", "--rows", "300", "--features", "3", "--hidden", "4", "--epochs", "1", "--device", "cpu", "--quiet",
         "--save", str(run_path)], capsys)
    saved = run_path.read_bytes()
    grid = GRID + ["--epochs", "1"]
    run(grid + ["--save", str(tmp_path / "sweep")], capsys)
    for path in (run_path, tmp_path / "sweep" / "ensemble-0.npz"):
        before = path.read_bytes()
        assert cli.main(grid + ["--save-best", str(path)]) == 2
        assert capsys.readouterr().err == (
            f"gpunn sweep: error: --save-best {shell_word(path)} holds the checkpoint of a training run, which the best "
            f"member would replace: save it elsewhere (gpunn info {shell_word(path)} says what the run is)\n")
        assert path.read_bytes() == before
    assert run_path.read_bytes() == saved
    run(grid + ["--save-best", str(best)], capsys)
    first = best.read_bytes()
    run(grid + ["--seed", "3", "--save-best", str(best)], capsys)
    assert best.read_bytes() != first  # the earlier best member, replaced
    empty, alone = tmp_path / "empty.npz", tmp_path / "ensemble.npz"  # (an empty file, tempfile's, say: free, as
    empty.touch()  # for gpunn train --save; an Ensemble saved alone, no run's checkpoint, is replaced as a model is)
    gpunn.save(alone, gpunn.Ensemble([3, 4, 1], 2, device="cpu"))
    for path in (empty, alone):
        run(grid + ["--save-best", str(path)], capsys)
        assert isinstance(gpunn.load(path), gpunn.MLP)  # the best member


def test_a_resumed_sweep_may_save_to_its_own_directory_however_spelled_but_a_new_one_not_over_a_saved_sweep(tmp_path):
    import types

    from gpunn.cli.sweep import _check_save_dir

    saved, elsewhere, a_file = tmp_path / "saved", tmp_path / "new" / "dir", tmp_path / "file"
    saved.mkdir()
    (saved / "ensemble-0.npz").write_bytes(b"")
    a_file.write_bytes(b"")
    for spelled in (str(saved), str(saved) + os.sep, str(tmp_path / "new" / ".." / "saved")):
        assert _check_save_dir(types.SimpleNamespace(save=spelled, resume=str(saved))) == spelled
    assert _check_save_dir(types.SimpleNamespace(save=None, resume=str(saved))) == str(saved)
    assert _check_save_dir(types.SimpleNamespace(save=str(elsewhere), resume=str(saved))) == str(elsewhere)
    assert elsewhere.is_dir()
    with pytest.raises(ValueError, match="already holds a sweep's checkpoints; continue it with --resume"):
        _check_save_dir(types.SimpleNamespace(save=str(saved), resume=None))
    with pytest.raises(ValueError, match="exists and is not a directory"):
        _check_save_dir(types.SimpleNamespace(save=str(a_file), resume=None))
    assert _check_save_dir(types.SimpleNamespace(save=None, resume=None)) is None


def test_a_saved_sweeps_checkpoints_are_numbered_in_the_digits_0_to_9_only(tmp_path):
    """``ensemble-٣.npz`` (an Arabic-Indic 3) or ``ensemble-３.npz`` (full width) is no checkpoint gpunn sweep wrote:
    ``\\d`` took it as ensemble 3, so --resume read it and --save refused the directory. Nor is a name that only
    begins as one (a copy kept beside it, ``ensemble-3.npz.bak``)."""
    from gpunn.cli.sweep import saved_checkpoints

    for name in ("ensemble-\u0663.npz", "ensemble-\uff13.npz", "ensemble-10.npz", "ensemble-2.npz", "ensemble-x.npz",
                 "ensemble-3.npz.bak"):
        (tmp_path / name).write_bytes(b"")
    assert saved_checkpoints(tmp_path) == [str(tmp_path / "ensemble-2.npz"), str(tmp_path / "ensemble-10.npz")]


def test_a_finished_sweep_resumed_says_once_that_its_ensembles_are_done(tmp_path, capsys):
    """Its line "ensemble 0: 1 of 1 epoch done" was followed by the progress bar's "nothing left to train
    (1 of 1 epochs done)"; an ensemble with epochs left still draws its bar. The line's checkpoint is quoted as a
    shell takes it, as the other lines quote paths."""
    saved = tmp_path / "my sweep"
    run(with_options(ARGS, "--epochs", "1", "--save", str(saved)), capsys)
    assert cli.main(["sweep", "--resume", str(saved)]) == 0
    captured = capsys.readouterr()
    assert f"ensemble 0: 1 of 1 epoch done ('{saved / 'ensemble-0.npz'}')" in captured.out
    assert "nothing left to train" not in captured.err
    assert cli.main(["sweep", "--resume", str(saved), "--epochs", "2"]) == 0
    assert "sweep (8 members) [cpu] epoch 2/2" in capsys.readouterr().err


def test_the_progress_lines_name_the_sweep_and_the_ensemble_that_runs(capsys):
    """They said "train [cpu] epoch 1/1", as one model's fit: a sweep's name the sweep, its members, and which
    ensemble where the grid is split (its other lines' "ensemble 1")."""
    shown = [token for token in ARGS if token != "--quiet"]
    for more, names in (((), ["sweep (8 members)"]),
                        (("--max-members", "5"), ["sweep ensemble 0 (5 members)", "sweep ensemble 1 (3 members)"])):
        assert cli.main(with_options(shown, "--progress", "lines", "--epochs", "1", *more)) == 0
        assert [line.split(":")[0] for line in capsys.readouterr().err.splitlines()] == [
            f"{name} [cpu] epoch 1/1" for name in names]


def test_a_sweep_interrupted_in_its_first_epoch_says_so_and_resumes(tmp_path, capsys, monkeypatch, interrupt_at):
    fit = gpunn.ensemble.Ensemble.fit

    def interrupted(self, *args, **kwargs):  # as Ctrl-C in the first epoch of the first ensemble
        return fit(self, *args, **{**kwargs, "callbacks": [*kwargs["callbacks"], interrupt_at(0, 2)]})

    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", interrupted)
    saved, js, best = tmp_path / "sweep", tmp_path / "s.json", tmp_path / "best.npz"
    out = run(GRID + ["--epochs", "2", "--save", str(saved), "--json", str(js), "--save-best", str(best)], capsys,
              status=130)
    # it said "before any member finished an epoch: nothing to rank" and wrote nothing, where the members hold 3
    # batches' weights: scored by a pass of their own, as an interrupt part-way through a later epoch's are
    assert f"interrupted in ensemble 0 (1 of 3: members 0-2) after 0 of 2 epochs and 3 of 9 batches of epoch 1: " \
           f"the table ranks what was trained so far; continue with gpunn sweep --resume {saved}" in out
    record = json.loads(js.read_text())
    rows = record["members"]
    assert [(r["member"], r["weights_epoch"], r["partial_epoch"], r["val_curve"]) for r in sorted(
        rows, key=lambda r: r["member"])] == [(k, None, 1, []) for k in range(3)]
    assert record["result"]["interrupted"] is True and record["result"]["ensembles"] == []  # (no epoch to time)
    assert [r["val_mse"] for r in rows] == sorted(r["val_mse"] for r in rows)
    X, Y = gpunn.datasets.make("teacher", 600, 5, 1, seed=0, device="cpu", dtype="float64")
    held = gpunn.load(best, device="cpu").evaluate(X[:60], Y[:60])  # the saved best member on the held-out rows
    assert rows[0]["val_mse"] == pytest.approx(held["mse"], rel=1e-12)
    assert f"R2 {rows[0]['val_r2']:.4f} part-way through epoch 1 (3 of 9 batches)" in out
    js.unlink()
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", fit)
    straight = tmp_path / "straight.json"
    run(GRID + ["--epochs", "2", "--json", str(straight)], capsys)
    out = run(["sweep", "--resume", str(saved), "--json", str(js), "--quiet"], capsys)
    assert "ensemble 0: 0 of 2 epochs and 3 of 9 batches of epoch 1 done" in out
    assert members(js) == members(straight)


def test_an_interrupted_sweep_says_which_ensemble_of_how_many_and_where_and_its_json_times_each(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """The line said "interrupted: the table ranks what was trained so far", not where; it now names the ensemble
    (of the split's), its members and the position, as gpunn train's line and a resume's do. The JSON had no timing:
    its result gives gpunn train --json's train_seconds (and samples_per_s, member-samples/s) per ensemble trained.
    The progress leaves out its own interrupted line, which the sweep's says."""
    fit, calls = gpunn.ensemble.Ensemble.fit, []

    def second_interrupted(self, *args, **kwargs):  # Ctrl-C in the second epoch of the second ensemble
        calls.append(1)
        more = [interrupt_at(1, 2)] if len(calls) == 2 else []
        return fit(self, *args, **{**kwargs, "callbacks": [*kwargs["callbacks"], *more]})

    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", second_interrupted)
    js = tmp_path / "s.json"
    shown = [token for token in GRID if token != "--quiet"]
    assert cli.main(shown + ["--epochs", "2", "--json", str(js), "--progress", "lines"]) == 130
    said = capsys.readouterr()
    assert ("interrupted in ensemble 1 (2 of 3: members 3-5) after 1 of 2 epochs and 3 of 9 batches of epoch 2: the "
            "table ranks what was trained so far; not saved: --save DIR keeps a sweep that gpunn sweep --resume DIR "
            "continues\n") in said.out  # (without --save: as gpunn train says it)
    assert "the model holds" not in said.err
    result = json.loads(js.read_text())["result"]
    assert result["interrupted"] is True and result["device"] == "cpu"
    assert [(e["ensemble"], e["members"], e["epochs"]) for e in result["ensembles"]] == [(0, 3, 2), (1, 3, 1)]
    assert all(e["samples_per_s"] > 0 and e["train_seconds"] > 0 for e in result["ensembles"])
    assert result["train_seconds"] == pytest.approx(sum(e["train_seconds"] for e in result["ensembles"]))
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", fit)
    run(GRID + ["--epochs", "1", "--json", str(js)], capsys)
    result = json.loads(js.read_text())["result"]
    assert result["interrupted"] is False and [e["members"] for e in result["ensembles"]] == [3, 3, 2]
    calls.clear()
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", second_interrupted)
    one_each = with_options(GRID, "--max-members", "1", "--weight-decay", "0", "--seeds", "1", "--epochs", "2")
    assert cli.main(one_each) == 130  # (it said "members 1-1")
    assert "interrupted in ensemble 1 (2 of 2: member 1) after 1 of 2 epochs" in capsys.readouterr().out


def test_a_resumed_sweep_interrupted_again_says_where_it_goes_on_and_every_rank_exits_130(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """Resumed without --save it keeps saving to the --resume directory, which its hint names; under mpiexec the
    ranks other than 0, which print nothing, end with Ctrl-C's status too."""
    import signal

    from gpunn import checkpoint

    saved = tmp_path / "sweep"
    run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)
    resume = checkpoint.Checkpoint.resume

    def interrupted(self, *args, **kwargs):  # Ctrl-C in the second epoch of the first ensemble
        return resume(self, *args, **{**kwargs, "callbacks": [*kwargs["callbacks"], interrupt_at(1, 2)]})

    monkeypatch.setattr(checkpoint.Checkpoint, "resume", interrupted)
    out = run(["sweep", "--resume", str(saved), "--epochs", "3", "--quiet"], capsys, status=130)
    assert (f"interrupted in ensemble 0 (1 of 3: members 0-2) after 1 of 3 epochs and 3 of 9 batches of epoch 2: the "
            f"table ranks what was trained so far; continue with gpunn sweep --resume {saved}\n") in out
    monkeypatch.setattr(gpunn.cli.sweep, "_launch", lambda device: (True, False, device))  # rank 1 of mpiexec -n 2
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:  # (a data-parallel sweep stopped by Ctrl-C ignores the signals from there: restored for the next tests)
        run(["sweep", "--resume", str(saved), "--epochs", "3", "--quiet"], capsys, status=130)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def test_a_data_parallel_sweep_stopped_by_ctrl_c_ignores_a_late_one_while_it_writes(tmp_path, capsys, monkeypatch,
                                                                                     interrupt_at):
    """mpiexec hands Ctrl-C to each rank in turn: once the ranks agreed to stop, another arriving while rank 0
    writes the table would end the job, so the sweep ignores it from there, as gpunn train does."""
    import signal

    fit = gpunn.ensemble.Ensemble.fit
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *args, **kwargs: fit(
        self, *args, **{**kwargs, "callbacks": [*kwargs["callbacks"], interrupt_at(1, 2)]}))
    monkeypatch.setattr(gpunn.cli.sweep, "_launch", lambda device: (True, True, device))  # as rank 0 of mpiexec -n 2
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        run(GRID + ["--epochs", "2", "--json", str(tmp_path / "s.json")], capsys, status=130)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert len(members(tmp_path / "s.json")) == 3  # the first ensemble's, ranked


def test_epochs_below_what_a_saved_ensemble_trained_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch,
                                                                                        interrupt_at):
    """It was refused at that ensemble's turn: after the data was made and the ensembles before it had trained."""
    saved, more, fit = tmp_path / "sweep", tmp_path / "more", gpunn.ensemble.Ensemble.fit
    run(GRID + ["--epochs", "2", "--save", str(saved)], capsys)
    run(["sweep", "--resume", str(saved), "--epochs", "4", "--save", str(more)], capsys)
    (more / "ensemble-0.npz").unlink()  # as if its members had all diverged: the others keep their numbers
    monkeypatch.setattr(gpunn.datasets, "make", lambda *a, **k: pytest.fail("the data was made"))
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda *a, **k: pytest.fail("an ensemble trained"))
    assert cli.main(["sweep", "--resume", str(more), "--epochs", "3"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert (f"--resume {more}: ensemble 1 has already trained 4 epochs ({more / 'ensemble-1.npz'}); --epochs 3 "
            "cannot shorten it: give --epochs 4 or more") in out.err
    model_only = more / "ensemble-2.npz"  # gpunn.save's file, not a run: it was "internal error: KeyError"
    gpunn.save(model_only, gpunn.load(model_only))
    assert cli.main(["sweep", "--resume", str(more), "--epochs", "5"]) == 2
    assert (f"--resume {more}: {model_only} holds a model only (no optimizer or position), not ensemble 2's run; it "
            "cannot be resumed") in capsys.readouterr().err
    monkeypatch.undo()
    interrupted = tmp_path / "interrupted"  # in epoch 2 of its first ensemble: past --epochs 1 too
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *args, callbacks, **kwargs: fit(
        self, *args, callbacks=[*callbacks, interrupt_at(1, 2)], **kwargs))
    run(GRID + ["--epochs", "2", "--save", str(interrupted)], capsys, status=130)
    assert cli.main(["sweep", "--resume", str(interrupted), "--epochs", "1"]) == 2
    assert (f"ensemble 0 has already trained 1 epoch and 3 of 9 batches of epoch 2 ({interrupted / 'ensemble-0.npz'}); "
            "--epochs 1 cannot shorten it: give --epochs 2 or more") in capsys.readouterr().err


def test_a_saved_sweep_extends_by_epochs_and_refuses_other_options(tmp_path, capsys):
    saved, straight, extended = tmp_path / "sweep", tmp_path / "s.json", tmp_path / "e.json"
    run(GRID + ["--epochs", "2", "--save", str(saved)], capsys)
    run(GRID + ["--epochs", "4", "--json", str(straight)], capsys)
    elsewhere = tmp_path / "elsewhere"
    run(["sweep", "--resume", str(saved), "--epochs", "4", "--json", str(extended), "--quiet", "--save",
         str(elsewhere)], capsys)
    assert members(extended) == members(straight)
    assert [gpunn.load_checkpoint(d / "ensemble-0.npz").epoch for d in (saved, elsewhere)] == [2, 4]
    run(["sweep", "--resume", str(saved), "--epochs", "4", "--quiet"], capsys)  # now in place
    refusals = [
        # the directory typed, not its first checkpoint, which the user never named
        (["--lr", "0.1"], f"--resume {saved}: --lr 0.1 would change the sweep, which has --lr 0.001,0.01; a resumed "
                          "sweep continues exactly as it started (start a new sweep, without --resume, to change it)"),
        (["--epochs", "3"], "ensemble 0 has already trained 4 epochs"),
    ]
    for extra, message in refusals:
        assert cli.main(["sweep", "--resume", str(saved), "--quiet", *extra]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(GRID + ["--save", str(saved)]) == 2
    assert "already holds a sweep's checkpoints; continue it with --resume" in capsys.readouterr().err
    # a resumed sweep saving elsewhere does not write over another saved sweep either
    assert cli.main(["sweep", "--resume", str(saved), "--quiet", "--save", str(elsewhere)]) == 2
    assert f"--save {elsewhere} already holds a sweep's checkpoints" in capsys.readouterr().err
    (tmp_path / "notes").write_text("mine")
    assert cli.main(GRID + ["--save", str(tmp_path / "notes")]) == 2
    assert f"--save {tmp_path / 'notes'} exists and is not a directory" in capsys.readouterr().err
    assert cli.main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "holds no ensemble-G.npz" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(saved / "ensemble-0.npz")]) == 2
    assert f"continue it with gpunn sweep --resume {saved}" in capsys.readouterr().err
    # gpunn predict of one of the sweep's ensembles: said "gpunn.save(path, ens.best())", Python only
    numpy.save(tmp_path / "x.npy", numpy.zeros((2, gpunn.load(saved / "ensemble-0.npz").layer_sizes[0])))
    assert cli.main(["predict", str(saved / "ensemble-0.npz"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")]) == 2
    assert (f"is an ensemble of 3 members; gpunn predict takes one model: save the sweep's best member with gpunn "
            f"sweep --resume {saved} --save-best best.npz") in capsys.readouterr().err
    run(["sweep", "--resume", str(saved), "--quiet", "--save-best", str(tmp_path / "best.npz")], capsys)
    run(["predict", str(tmp_path / "best.npz"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")], capsys)


def test_a_sweep_resumed_on_another_kind_of_device_is_refused_as_the_sweep(tmp_path, capsys, no_gpu):
    """The refusal said "the run being resumed", gpunn train's words, of a sweep (its options' refusal, "would change
    the run", too: test_a_saved_sweep_extends_by_epochs_and_refuses_other_options). Here, with no GPU, it says to
    resume it where one is (tests/test_resume.py: a run's)."""
    from gpunn.cli import resume


    saved = tmp_path / "sweep"
    run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)
    rewrite_meta(saved / "ensemble-0.npz", saved / "ensemble-0.npz",
                 lambda meta: run_options(meta).update({resume.BACKEND_KEY: "cuda"}))
    for device, said in [(["--device", "cpu"], "--device cpu: the sweep being resumed"), ([], f"--resume {saved}: the sweep")]:
        assert cli.main(["sweep", "--resume", str(saved), "--epochs", "2", *device]) == 2
        assert (f"{said} generated its data on cuda, and another kind of device draws other random data; resume it on "
                "a machine with a GPU (") in capsys.readouterr().err


def test_a_checkpoint_of_another_sweep_in_the_directory_is_refused_by_its_seeds(tmp_path, capsys):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    run(GRID + ["--epochs", "1", "--save", str(ours)], capsys)
    run(GRID + ["--epochs", "1", "--seed", "5", "--save", str(theirs)], capsys)
    (ours / "ensemble-1.npz").write_bytes((theirs / "ensemble-1.npz").read_bytes())
    assert cli.main(["sweep", "--resume", str(ours), "--epochs", "2", "--quiet"]) == 2
    assert (f"{ours / 'ensemble-1.npz'} holds members seeded [6, 5, 6], but the sweep's ensemble 1 is seeded "
            "[1, 0, 1]: the directory holds another sweep's checkpoints") in capsys.readouterr().err
    assert gpunn.load_checkpoint(ours / "ensemble-1.npz").epoch == 1


def test_a_sweep_saved_before_an_option_existed_resumes_only_with_its_default(tmp_path, capsys, files):
    """A checkpoint whose recorded options lack the newer ones (--momentum, --min-delta, --standardize, --data,
    ...: a sweep saved by an older gpunn) ran with their defaults. Another value was accepted and then ignored
    (the ensemble resumed with its checkpoint's optimizer, on its task) while the new checkpoint recorded it."""
    saved = tmp_path / "sweep"
    run(ARGS[:ARGS.index("--epochs")] + ["--epochs", "1", "--optimizer", "nesterov", "--save", str(saved)], capsys)
    path = saved / "ensemble-0.npz"

    def older(meta):
        options = run_options(meta)
        for newer in ("momentum", "min_delta", "standardize", "data", "targets", "target", "window"):
            del options[newer]

    rewrite_meta(path, path, older)
    refusals = [(["--momentum", "0.5"], "--momentum 0.5 would change the sweep, which has --momentum unset"),
                (["--standardize"], "--standardize would change the sweep, which has no --standardize"),
                (files, "--data"), (["--window", "4"], "--window 4 would change the sweep, which has --window 16")]
    for extra, message in refusals:
        assert cli.main(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", *extra]) == 2
        assert message in capsys.readouterr().err
    assert gpunn.load_checkpoint(path).epoch == 1
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet"], capsys)
    assert gpunn.load_checkpoint(path).epoch == 2


def test_a_sweep_that_recorded_an_unset_momentum_as_null_resumes_as_the_sweep_that_never_stopped(tmp_path, capsys):
    """A sweep saved before gpunn sweep recorded the momentum it trains at (as gpunn train does) holds null for an
    unset --momentum: it resumes at the optimizer's 0.9, bit for bit the sweep that never stopped, accepts
    --momentum 0.9 and refuses another value naming 0.9; its continued checkpoint records 0.9."""
    from gpunn import checkpoint

    saved, straight, resumed = tmp_path / "sweep", tmp_path / "straight.json", tmp_path / "resumed.json"
    nesterov = with_options(GRID, "--optimizer", "nesterov", "--lr", "1e-3")
    run(nesterov + ["--epochs", "2", "--json", str(straight)], capsys)
    run(nesterov + ["--epochs", "1", "--save", str(saved)], capsys)
    for path in sorted(saved.iterdir()):
        assert run_options(checkpoint.read_meta(path))["momentum"] == 0.9
        rewrite_meta(path, path, lambda meta: run_options(meta).update(momentum=None))
    assert cli.main(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--momentum", "0.5"]) == 2
    assert "--momentum 0.5 would change the sweep, which has --momentum unset (0.9);" in capsys.readouterr().err
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--momentum", "0.9", "--json", str(resumed)],
        capsys)
    assert members(resumed) == members(straight)
    assert json.loads(resumed.read_text())["config"]["momentum"] == 0.9
    assert run_options(checkpoint.read_meta(saved / "ensemble-0.npz"))["momentum"] == 0.9


def test_an_exponential_sweep_saved_before_gamma_was_an_option_starts_its_other_ensembles_at_the_recorded_gamma(
        tmp_path, capsys):
    """A sweep saved by a gpunn without --gamma recorded none (its exponential schedule ran at 0.1, which its
    checkpoints' schedule holds): an ensemble not started yet trains at that 0.1 when the sweep resumes, where
    --schedule exponential without --gamma is refused now, and the sweep ends as the one that never stopped."""
    grid = ["sweep", "--lr", "1e-3,1e-2", "--rows", "300", "--features", "3", "--hidden", "4", "--epochs", "2",
            "--max-members", "1", "--quiet", "--device", "cpu", "--dtype", "float64", "--schedule", "exponential",
            "--gamma", "0.1"]
    saved, straight, resumed = tmp_path / "sweep", tmp_path / "straight.json", tmp_path / "resumed.json"
    run(grid + ["--json", str(straight)], capsys)
    run(grid + ["--save", str(saved)], capsys)
    (saved / "ensemble-1.npz").unlink()  # as a sweep stopped before its second ensemble's first checkpoint

    def before_gamma(meta):
        options = run_options(meta)
        for newer in ("gamma", "step_size", "min_factor"):
            del options[newer]

    rewrite_meta(saved / "ensemble-0.npz", saved / "ensemble-0.npz", before_gamma)
    run(["sweep", "--resume", str(saved), "--json", str(resumed), "--quiet"], capsys)
    assert members(resumed) == members(straight)
    assert gpunn.load_checkpoint(saved / "ensemble-1.npz").settings.schedule == gpunn.Schedule("exponential", gamma=0.1)


def test_a_diverged_member_is_ranked_last_though_the_epoch_it_kept_scored_best(tmp_path, capsys, monkeypatch):
    # early stopping restores a member's best epoch, so a member that diverged after it can hold the least val MSE:
    # its settings are still ones to avoid, listed after every member that trained through
    from gpunn.cli import sweep

    ranked = sweep.rank

    def diverged_after_its_best_epoch(settings, history_of, offset=0, held_scores=None):
        rows = ranked(settings, history_of, offset, held_scores)
        rows[0].update(diverged=True, val_mse=1e-9)  # the grid's member 0: lr 1e-3
        return rows

    monkeypatch.setattr(sweep, "rank", diverged_after_its_best_epoch)
    path = tmp_path / "s.json"
    run(["sweep", "--lr", "1e-3,3e-3,1e-2", "--rows", "200", "--features", "3", "--hidden", "4", "--epochs", "1",
         "--quiet", "--device", "cpu", "--json", str(path)], capsys)
    assert [(r["lr"], r["diverged"]) for r in members(path)][-1] == (1e-3, True)


@pytest.mark.filterwarnings("ignore:members .* diverged")
def test_the_json_is_strict_when_a_members_loss_became_nan(tmp_path, capsys):
    path = tmp_path / "s.json"
    run(["sweep", "--lr", "1e-3,1e10", "--optimizer", "sgd", "--rows", "300", "--features", "3", "--hidden", "4",
         "--epochs", "2", "--quiet", "--device", "cpu", "--json", str(path), "--csv", str(tmp_path / "t.csv")], capsys)
    blown = json.loads(path.read_text(), parse_constant=_not_json)["members"][1]  # no NaN/Infinity tokens
    assert blown["lr"] == 1e10 and blown["diverged"] and blown["val_mse"] is None and blown["val_curve"] == [None] * 2
    last = list(csv.DictReader((tmp_path / "t.csv").read_text().splitlines()))[1]  # and the CSV's NaN fields are empty, as null
    assert last["lr"] == "10000000000.0" and last["val_mse"] == last["val_r2"] == ""


def test_a_sweep_over_seeds_gives_each_settings_mean_and_std_over_them(tmp_path, capsys):
    """A researcher's --seeds 3 had to aggregate the JSON to compare settings (newuser39): the table is followed by one
    row per setting, ranked by its members' mean val MSE, with the std over the seeds (ddof 1, as pandas' .std());
    the JSON holds them as "settings". One seed prints no such table."""
    js = tmp_path / "s.json"
    grid = ["sweep", "--lr", "1e-3,3e-2", "--seeds", "3", "--rows", "300", "--features", "3", "--hidden", "4",
            "--epochs", "2", "--quiet", "--device", "cpu", "--dtype", "float64", "--json", str(js)]
    out = run(grid, capsys)
    saved = json.loads(js.read_text())
    rows, settings = saved["members"], saved["settings"]
    assert [s["lr"] for s in settings] == [3e-2, 1e-3]  # ranked by mean val MSE
    for s in settings:
        mine = [r for r in rows if r["lr"] == s["lr"]]
        assert sorted(r["member"] for r in mine) == s["members"] and s["seeds"] == s["scored"] == 3
        for key in ("val_mse", "val_r2"):
            values = [r[key] for r in mine]
            assert s[key + "_mean"] == pytest.approx(numpy.mean(values), rel=1e-12)
            assert s[key + "_std"] == pytest.approx(numpy.std(values, ddof=1), rel=1e-12)
    lines = out.split("by setting, over the seeds (mean and std of its members; std with ddof 1, as pandas' .std()):\n",
                      1)[1].splitlines()
    assert lines[0].split() == ["rank", "lr", "weight_decay", "seeds", "val", "MSE", "std", "val", "R2", "std"]
    top = settings[0]
    assert lines[2].split() == ["1", "0.03", "0", "3", f"{top['val_mse_mean']:.5g}", f"{top['val_mse_std']:.3g}",
                                f"{top['val_r2_mean']:.4f}", f"{top['val_r2_std']:.3g}"]
    out = run([*grid[:4], "1", *grid[5:]], capsys)
    assert "by setting" not in out and json.loads(js.read_text())["settings"][0]["scored"] == 1


def test_a_settings_mean_leaves_out_its_diverged_and_unscored_members_and_says_how_many_scored():
    from gpunn.cli.sweep import by_setting, format_settings

    nan = float("nan")

    def row(member, lr, val_mse, diverged=False):
        return {"member": member, "lr": lr, "weight_decay": 0.0, "seed": member % 3, "val_mse": val_mse,
                "val_r2": 1 - val_mse, "diverged": diverged}

    rows = [row(0, 0.1, 2.0), row(1, 0.1, 1e-3, diverged=True), row(2, 0.1, nan),  # one of three scored
            row(3, 0.01, 0.5), row(4, 0.01, 1.5), row(5, 0.01, 1.0),
            row(6, 1.0, nan, diverged=True), row(7, 1.0, nan), row(8, 1.0, nan)]  # none did
    settings = by_setting(rows, 3)
    assert [(s["lr"], s["scored"]) for s in settings] == [(0.01, 3), (0.1, 1), (1.0, 0)]
    assert (settings[0]["val_mse_mean"], settings[0]["val_mse_std"]) == (1.0, 0.5)
    assert settings[1]["val_mse_mean"] == 2.0 and numpy.isnan(settings[1]["val_mse_std"])
    assert numpy.isnan(settings[2]["val_mse_mean"])
    lines = format_settings(settings).splitlines()[3:]
    assert lines[0].split()[3:6] == ["3", "1", "0.5"]
    assert lines[1].split()[3:] == ["1/3", "2", "-", "-1.0000", "-"] and lines[2].split()[3:] == ["0/3", "-", "-", "-",
                                                                                                 "-"]


def test_the_table_and_the_csv_say_a_members_infinite_or_missing_score_alike():
    """An infinite validation MSE is inf in both (the CSV's cell was empty, as for no score: pandas read NaN);
    a member no epoch scored (NaN in every epoch) shows "-" in the table, best epoch included (it said "nan" and
    "best epoch 1"), and an empty CSV cell; a diverged member's R2 of -5e104 is written short."""
    import io

    import pandas

    from gpunn.cli.common import csv_text
    from gpunn.cli.sweep import format_table, rank
    from gpunn.training.ensemble import EnsembleHistory

    history = EnsembleHistory(val_mse=[[2.5, numpy.inf, numpy.nan, 3e104], [2.0, numpy.nan, numpy.nan, 1e120]],
                                    val_r2=[[0.5, -numpy.inf, numpy.nan, -5e104], [0.6, numpy.nan, numpy.nan, -1e120]])
    history.stopped_early, history.diverged, history.best_epoch = [False] * 4, [1, 2, 3], [2, 1, 1, 1]
    settings = [{"lr": lr, "weight_decay": 0.0, "seed": 0} for lr in (1e-3, 100.0, 1e3, 10.0)]
    rows = rank(settings, lambda k: (history, k))
    assert [(r["val_mse"], r["best_epoch"]) for r in rows[:2]] == [(2.0, 2), (numpy.inf, 1)]
    assert numpy.isnan(rows[2]["val_mse"]) and rows[2]["best_epoch"] is None
    lines = format_table(rows).splitlines()[2:]
    assert lines[1].split()[4:7] == ["inf", "-inf", "1"] and lines[2].split()[4:7] == ["-", "-", "-"]
    assert lines[3].split()[4:6] == ["3e+104", "-5e+104"] and len(lines[3]) == len(lines[1])
    table = [{k: v for k, v in r.items() if k != "val_curve"} for r in rows]
    text = csv_text(list(table[0]), (r.values() for r in table)).decode()
    assert [line.split(",")[4:7] for line in text.splitlines()[2:4]] == [["inf", "-inf", "1"], ["", "", ""]]
    read = pandas.read_csv(io.StringIO(text))
    assert read["val_mse"].tolist()[:2] == [2.0, numpy.inf] and read["val_mse"].isna().tolist() == [False] * 2 + [True, False]


def test_a_report_and_the_best_member_on_one_file_are_refused_before_training(tmp_path, capsys):
    path = tmp_path / "best.npz"
    assert cli.main(GRID + ["--epochs", "1", "--json", str(path), "--save-best", str(path)]) == 2
    assert f"--json and --save-best both name {path}; give each its own file" in capsys.readouterr().err
    assert not path.exists()


def test_patience_without_early_stopping_is_refused_not_ignored(capsys):
    assert cli.main(GRID + ["--epochs", "1", "--patience", "3"]) == 2
    assert "--patience 3 sets early stopping, which this run does not use" in capsys.readouterr().err


@pytest.fixture
def files(tmp_path):
    X, Y = gpunn.datasets.make("teacher", 800, 4, 2, noise=0.1, seed=3, device="cpu", dtype="float64")
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)
    return ["--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy")]


DATA = ["sweep", "--lr", "1e-3,1e-2", "--seeds", "2", "--hidden", "8", "--epochs", "2", "--batch-size", "32",
        "--window", "4", "--quiet", "--device", "cpu", "--dtype", "float64"]


def test_a_sweep_on_a_file_trains_each_member_as_gpunn_train_does_on_it(files, tmp_path, capsys):
    js, best = tmp_path / "s.json", tmp_path / "best.npz"
    out = run(DATA + files + ["--json", str(js), "--save-best", str(best)], capsys)
    assert "4 members (2 lr x 1 weight decay x 2 seed(s)) of [4, 8, 2]" in out
    assert "data: " in out and "validation rows (whole chunks)" in out
    saved = json.loads(js.read_text())
    assert saved["units"] == "targets" and saved["config"]["data"] == files[1]
    assert not {"task", "rows", "features"} & set(saved["config"])  # the synthetic task's, which --data replaced
    top = saved["members"][0]
    twin = gpunn.MLP([4, 8, 2], dtype="float64", seed=top["seed"], device="cpu")
    source = gpunn.data.npy(files[1], files[3], window=4, seed=0, validation_fraction=0.1)
    history = twin.fit(source, epochs=2, batch_size=32, lr=top["lr"], verbose=False)
    numpy.testing.assert_allclose(gpunn.load(best, device="cpu").params, twin.params, rtol=1e-10)
    assert top["val_mse"] == pytest.approx(min(history["val_mse"]), rel=1e-10)


def test_a_one_member_sweep_on_a_file_is_the_gpunn_train_run(files, tmp_path, capsys):
    swept, alone = tmp_path / "best.npz", tmp_path / "alone.npz"
    common = ["--hidden", "8", "--epochs", "2", "--batch-size", "32", "--window", "4", "--lr", "3e-3", "--device",
              "cpu", "--dtype", "float64", "--quiet"]
    run(["sweep", *files, *common, "--save-best", str(swept)], capsys)
    run(["train", *files, *common, "--save", str(alone)], capsys)
    numpy.testing.assert_allclose(gpunn.load(swept, device="cpu").params, gpunn.load(alone, device="cpu").params,
                                  rtol=1e-10)


def test_a_sweep_says_once_why_its_val_r2_is_0_where_the_held_out_targets_are_all_one_value(tmp_path, capsys):
    """It printed "val R2 0.0000" for every member with no word that R² is undefined there, where gpunn train adds
    a note: the sweep says it once (every member is scored on the same held-out rows, however the grid is split),
    in train's words, naming the constant output where there are several. Targets that vary get no note."""
    X = numpy.random.default_rng(0).uniform(-1, 1, (800, 2))
    numpy.save(tmp_path / "x.npy", X)
    one = ["--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), "--max-members", "2"]
    numpy.save(tmp_path / "y.npy", numpy.full((800, 1), 5.0))
    assert cli.main(DATA + one) == 0
    out, err = capsys.readouterr()
    assert "the grid is split into 2 ensembles" in out and re.search(r"R2 0\.0000 at epoch", out)
    assert err.count("note:") == 1 and (
        "note: the held-out targets are all the same value, so R² (1 - squared error / their variance) is undefined: "
        "val R2 says 0 (1 where they are predicted exactly), scikit-learn's r2_score convention; judge the members "
        "by val MSE\n") in err, err
    numpy.save(tmp_path / "y.npy", numpy.column_stack([2 * X[:, 0], numpy.full(800, 5.0)]))
    assert cli.main(DATA + one) == 0
    assert ("note: the held-out values of output 1 are all the same, so its R² is undefined: val R2, the mean of the "
            "2 outputs' R², counts it as 0 (1 where predicted exactly)") in capsys.readouterr().err
    numpy.save(tmp_path / "y.npy", 2 * X[:, :1])
    assert cli.main(DATA + one) == 0
    assert "all the same" not in capsys.readouterr().err


def test_a_sweep_on_a_table_saves_a_best_member_that_predicts_the_table(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, Y = gpunn.datasets.make("linear", 600, 3, 1, seed=1, device="cpu", dtype="float64")
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": Y[:, 0]}), tmp_path / "t.parquet",
                   row_group_size=100)
    best = tmp_path / "best.npz"
    js = tmp_path / "s.json"
    run(DATA + ["--data", str(tmp_path / "t.parquet"), "--target", "y", "--features", "c, a", "--save-best", str(best),
                "--json", str(js)], capsys)  # (a space after the comma is no part of a name)
    assert json.loads(js.read_text())["config"]["features"] == ["c", "a"]  # the columns, where a count is dropped
    model = gpunn.load(best, device="cpu")
    assert model.layer_sizes[0] == 2 and model.data_columns == {"features": ["c", "a"], "targets": ["y"]}
    assert cli.main(["predict", str(best), str(tmp_path / "t.parquet"), str(tmp_path / "p.npy")]) == 0
    with read_by_position():  # (X's columns c, a: the model's, in its order)
        numpy.testing.assert_allclose(numpy.load(tmp_path / "p.npy"), model.predict(X[:, [2, 0]]), rtol=1e-6)


def test_an_interrupted_sweep_on_a_file_resumes_to_the_sweep_that_never_stopped(files, tmp_path, capsys, monkeypatch,
                                                                               interrupt_at):
    straight, resumed, saved = tmp_path / "straight.json", tmp_path / "resumed.json", tmp_path / "sweep"
    grid = DATA + files + ["--max-members", "2"]
    run(grid + ["--json", str(straight)], capsys)
    fit, calls = gpunn.ensemble.Ensemble.fit, []

    def second_ensemble_interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            kwargs["callbacks"] = [*kwargs["callbacks"], interrupt_at(1, 3)]
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", second_ensemble_interrupted)
    run(grid + ["--save", str(saved)], capsys, status=130)
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", fit)
    out = run(["sweep", "--resume", str(saved), "--json", str(resumed), "--quiet"], capsys)
    assert "ensemble 1: 1 of 2 epochs and 4 of 23 batches of epoch 2 done" in out
    assert members(resumed) == members(straight)


def test_a_file_sweep_started_in_one_process_is_not_resumed_under_mpiexec_before_all_its_ensembles_start(
        files, tmp_path, capsys, monkeypatch):
    """Its ensembles not started would read the file as the ranks' shards, not in the one process's order (the
    started ones resume in it): refused, saying how to go on, before anything trains. Under mpiexec it ran."""
    saved = tmp_path / "sweep"
    run(DATA + files + ["--max-members", "2", "--save", str(saved)], capsys)
    (saved / "ensemble-1.npz").unlink()  # as a sweep stopped before its second ensemble leaves it
    kept = (saved / "ensemble-0.npz").read_bytes()
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(gpunn.cli.sweep, "_launch", lambda device: (True, True, device))  # as under mpiexec -n 2
    assert cli.main(["sweep", "--resume", str(saved), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "this --data sweep started in one process, and ensemble(s) 1 of 2 have not started" in err
    assert f"Resume it in one process (gpunn sweep --resume {saved})" in err
    assert (saved / "ensemble-0.npz").read_bytes() == kept and not (saved / "ensemble-1.npz").exists()
    monkeypatch.undo()
    run(["sweep", "--resume", str(saved), "--quiet"], capsys)  # in one process it goes on
    assert (saved / "ensemble-1.npz").exists()


@pytest.mark.parametrize("started", ["task in one process", "file data parallel"])
def test_a_sweep_resumed_under_mpiexec_before_all_its_ensembles_start_goes_on_unless_a_file_was_read_whole(
        files, tmp_path, capsys, monkeypatch, started):
    """The refusal above is for a --data sweep started in one process, whose ensembles not started would read the
    file as rank shards; a synthetic task's sweep, or a --data sweep that started data parallel (its checkpoints
    record the shards, which the ensembles not started then read too), goes on to train (here: stopped there)."""
    saved = tmp_path / "sweep"
    if started == "task in one process":
        run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)
    else:
        run(DATA + files + ["--max-members", "2", "--save", str(saved)], capsys)
        rewrite_meta(saved / "ensemble-0.npz", saved / "ensemble-0.npz",  # as saved by mpiexec -n 2 gpunn sweep
                     lambda meta: meta["training"]["source"].update(shards=2))
    (saved / "ensemble-1.npz").unlink()

    def training(*args, **kwargs):
        raise RuntimeError("resumed ensemble 0")

    monkeypatch.setattr(gpunn.cli.sweep, "_resume_group", training)
    monkeypatch.setattr(gpunn.cli.sweep, "_launch", lambda device: (True, True, device))  # as under mpiexec -n 2
    assert cli.main(["sweep", "--resume", str(saved), "--epochs", "3", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "resumed ensemble 0" in err and "started in one process" not in err


def test_a_sweep_of_two_ranks_resumed_in_one_process_records_the_batch_it_goes_on_at(tmp_path, capsys):
    """A sweep at --batch-size 32 on 2 ranks (a global batch of 64) goes on in one process at 64, but its --json
    config said batch_size 32 beside result.ranks 1 (config's batch_size is per rank): a one-process sweep at 32."""
    saved = tmp_path / "sweep"
    run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)

    def as_two_ranks(meta):  # as saved by mpiexec -n 2 gpunn sweep ... --batch-size 32
        meta["training"]["settings"].update(batch_size=32, ranks=2)
        run_options(meta)["batch_size"] = 32

    for path in saved.glob("ensemble-*.npz"):
        rewrite_meta(path, path, as_two_ranks)
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--json", str(tmp_path / "s.json")], capsys)
    report = json.loads((tmp_path / "s.json").read_text())
    assert (report["config"]["batch_size"], report["result"]["ranks"]) == (64, 1)
    assert run_options(gpunn.load_checkpoint(saved / "ensemble-0.npz", device="cpu").meta)["batch_size"] == 64


@pytest.mark.parametrize("extra, match", [
    (["--rows", "900"], "--rows 900 sets up a synthetic task, which --data replaces"),
    (["--features", "3"], "--features 3 sets up a synthetic task"),
])
def test_a_sweep_on_a_file_refuses_the_synthetic_tasks_options(files, capsys, extra, match):
    assert cli.main(DATA + files + extra) == 2
    assert match in capsys.readouterr().err


def test_a_sweep_on_a_file_of_one_chunk_says_it_has_nothing_to_rank_on(tmp_path, capsys):
    numpy.save(tmp_path / "x.npy", numpy.ones((1, 2)))
    numpy.save(tmp_path / "y.npy", numpy.ones((1, 1)))
    assert cli.main(DATA + ["--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy")]) == 2
    # refused as `gpunn train --data` refuses it (tidy24's 7080a3b: nothing held out, none to score on), before the
    # sweep's own "is one chunk ..., so no chunk can be held out to rank the members on" (now a resumed sweep's)
    err = capsys.readouterr().err
    assert "x.npy: 1 row in one chunk, none of which can be held out for validation, and R² needs 2" in err, err
    assert len(err.splitlines()) == 1, err


def test_a_sweep_resumed_in_one_chunk_is_told_to_start_anew(files, tmp_path, capsys):
    """A resumed sweep is cut as it was saved; one saved in one chunk (here: by a hand edit) cannot rank its members.
    The refusal advised "more rows, or a Parquet file with more row groups", which a resume cannot take (its file
    is the saved run's) and a new sweep does not need (chunks are cut within row groups)."""
    saved = tmp_path / "sweep"
    run(DATA + files + ["--max-members", "4", "--save", str(saved)], capsys)
    rewrite_meta(saved / "ensemble-0.npz", saved / "ensemble-0.npz",
                 lambda meta: meta["training"]["source"].update(chunk_rows=800))
    assert cli.main(["sweep", "--resume", str(saved), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("x.npy is one chunk (800 rows), as the sweep was cut when it was saved, so no chunk can be "
                        "held out to rank the members on; a sweep needs at least two: start it anew, without "
                        "--resume, which cuts the file afresh\n"), err


@pytest.mark.parametrize("where", ["task", "file"])
def test_a_standardized_one_member_sweep_is_the_standardized_gpunn_train_run(files, tmp_path, capsys, where):
    swept, alone = tmp_path / "best.npz", tmp_path / "alone.npz"
    data = files if where == "file" else ["--rows", "400", "--features", "4"]
    common = [*data, "--hidden", "8", "--epochs", "2", "--batch-size", "32", "--lr", "3e-3", "--standardize",
              "--device", "cpu", "--dtype", "float64", "--quiet"]
    out = run(["sweep", *common, "--save-best", str(swept), "--json", str(tmp_path / "s.json")], capsys)
    assert "validation MSE in standardized target units" in out
    assert json.loads((tmp_path / "s.json").read_text())["units"] == "standardized targets"
    run(["train", *common, "--save", str(alone)], capsys)
    best, reference = gpunn.load(swept, device="cpu"), gpunn.load(alone, device="cpu")
    numpy.testing.assert_allclose(best.params, reference.params, rtol=1e-10)
    numpy.testing.assert_array_equal(best.standardizer.y_scale, reference.standardizer.y_scale)


def test_a_sweep_takes_trains_momentum_and_min_delta(files, tmp_path, capsys):
    swept, alone = tmp_path / "best.npz", tmp_path / "alone.npz"
    common = [*files, "--hidden", "8", "--epochs", "3", "--batch-size", "32", "--lr", "1e-2", "--optimizer",
              "nesterov", "--momentum", "0.5", "--early-stopping", "--patience", "1", "--min-delta", "0.5",
              "--device", "cpu", "--dtype", "float64", "--quiet"]
    run(["sweep", *common, "--save-best", str(swept)], capsys)
    run(["train", *common, "--save", str(alone)], capsys)
    numpy.testing.assert_allclose(gpunn.load(swept, device="cpu").params, gpunn.load(alone, device="cpu").params,
                                  rtol=1e-10)
    assert cli.main(["sweep", *files, "--momentum", "0.5", "--quiet", "--device", "cpu"]) == 2
    assert "--momentum 0.5: --optimizer adam has no momentum" in capsys.readouterr().err


def test_a_sweep_reads_its_options_from_a_config_file_and_the_flags_override_it(tmp_path, capsys):
    (tmp_path / "grid.toml").write_text('seeds = 2\n[sweep]\nlr = [1e-3, 1e-2]\nweight-decay = [0, 1e-2]\nrows = 600\n'
                                        'features = 5\nhidden = [8, 8]\nepochs = 5\nbatch_size = 64\n'
                                        'dtype = "float64"\ndevice = "cpu"\n')
    by_file, by_flags = tmp_path / "file.json", tmp_path / "flags.json"
    run(["sweep", "--config", str(tmp_path / "grid.toml"), "--epochs", "3", "--quiet", "--json", str(by_file)], capsys)
    run(ARGS + ["--json", str(by_flags)], capsys)
    assert members(by_file) == members(by_flags)
    (tmp_path / "bad.toml").write_text("lr = [0.001, -1]\n")
    assert cli.main(["sweep", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "invalid lr = [0.001, -1]" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_tensor_core_precision_on_the_cpu_is_refused_before_the_data(tmp_path, capsys, monkeypatch, where):
    """--precision tf32|bf16 (or precision = ... in a --config [sweep] table) needs a GPU: refused in the
    command's words before any row is generated, as gpunn train refuses it; the file's, by its key."""
    def no_data(*args, **kwargs):
        raise AssertionError("the data were generated before --precision was refused")

    monkeypatch.setattr(gpunn.datasets, "make", no_data)
    if where == "flag":
        args = ARGS + ["--precision", "bf16"]
    else:
        (tmp_path / "grid.toml").write_text('[sweep]\nprecision = "bf16"\ndevice = "cpu"\nrows = 600\n')
        args = ["sweep", "--config", str(tmp_path / "grid.toml"), "--quiet"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    said = "--precision bf16" if where == "flag" else f'{tmp_path / "grid.toml"}: precision = "bf16"'
    assert f"{said} runs the matrix products on NVIDIA tensor cores and needs a CUDA GPU" in err, err
    (tmp_path / "bad.toml").write_text('precision = "fp8"\n')
    assert cli.main(["sweep", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "precision = 'fp8' is not one of float32, tf32, bf16" in capsys.readouterr().err
    assert "--precision {float32,tf32,bf16}" in cli.build_parser()._subparsers._group_actions[0].choices[
        "sweep"].format_help()


@pytest.mark.gpu
def test_a_sweeps_ensemble_trains_its_step_as_a_cuda_graph_by_default(tmp_path, capsys, monkeypatch):
    """On a GPU (or tests/fakecupy) gpunn sweep's ensembles take Ensemble's default: the members' step captured as a
    CUDA graph (it was the eager step, Ensemble's graph=False, until an H200 showed the graph 5.5x it at K=256).
    --no-graph gives the eager step, as gpunn train's, and a --resume goes on with the run's recorded --no-graph."""
    from gpunn import checkpoint

    fitted, fit, resume = [], gpunn.Ensemble.fit, checkpoint.Checkpoint.resume

    def recording(self, *args, **kwargs):
        fitted.append(self)
        return fit(self, *args, **kwargs)

    def resuming(self, *args, **kwargs):
        fitted.append(self.model)
        return resume(self, *args, **kwargs)

    monkeypatch.setattr(gpunn.Ensemble, "fit", recording)
    monkeypatch.setattr(checkpoint.Checkpoint, "resume", resuming)
    common = ["sweep", "--rows", "400", "--hidden", "8", "--lr", "1e-3,3e-3", "--batch-size", "32", "--quiet",
              "--device", "cuda"]
    run([*common, "--epochs", "2"], capsys)
    assert len(fitted) == 1 and fitted[0].graph is None
    assert fitted[0].graph_trainer.captured, fitted[0].graph_trainer.reason
    run([*common, "--epochs", "1", "--no-graph", "--save", str(tmp_path / "run")], capsys)
    run(["sweep", "--resume", str(tmp_path / "run"), "--epochs", "2", "--quiet"], capsys)
    assert [e.graph for e in fitted[1:]] == [False, False] and all(e.graph_trainer is None for e in fitted[1:])
    capsys.readouterr()
    assert cli.main(["sweep", "--resume", str(tmp_path / "run"), "--epochs", "3", "--quiet", "--graph"]) != 0
    assert "--no-graph" in capsys.readouterr().err  # the run's, named by the refusal


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_a_sweep_in_a_tensor_core_precision_saves_a_best_member_in_it(tmp_path, capsys, precision):
    """On a GPU (or tests/fakecupy): every member trains in the precision, and the best member saved with
    --save-best carries it (gpunn.load gives it back on the GPU); a one-member sweep is that member's
    gpunn train run with --precision."""
    X, Y = gpunn.datasets.make("teacher", 400, 4, 1, noise=0.1, seed=3, device="cpu")
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", Y)
    common = ["--data", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), "--window", "4", "--hidden",
              "8", "--epochs", "2", "--batch-size", "32", "--quiet", "--device", "cuda"]
    run(["sweep", *common, "--lr", "3e-3", "--precision", precision, "--save-best", str(tmp_path / "best.npz")], capsys)
    best = gpunn.load(tmp_path / "best.npz", device="cuda")
    assert best.precision == precision
    run(["train", *common, "--lr", "3e-3", "--precision", precision, "--save", str(tmp_path / "alone.npz")], capsys)
    alone = gpunn.load(tmp_path / "alone.npz", device="cuda")
    assert alone.precision == precision
    # the stand-in computes a batched product exactly as one model's; on a GPU another cuBLAS kernel may sum in
    # another order (tests/test_ensemble_precision.py)
    fake = os.environ.get("GPUNN_FAKE_CUPY") == "1"
    # relative to the largest weight, as tests/test_ensemble_precision.py measures its bounds (an elementwise rtol
    # would hold the near-zero weights to far less than the drift those bounds allow)
    a, b = best.params.get(), alone.params.get()
    assert numpy.abs(a - b).max() <= (1e-6 if fake else {"tf32": 1e-4, "bf16": 2e-2}[precision]) * numpy.abs(b).max()
    (tmp_path / "grid.toml").write_text(f'[sweep]\nprecision = "{precision}"\nlr = [1e-3, 3e-3]\n')
    run(["sweep", "--config", str(tmp_path / "grid.toml"), *common, "--save-best", str(tmp_path / "b2.npz")], capsys)
    assert gpunn.load(tmp_path / "b2.npz", device="cuda").precision == precision


def test_a_sweep_member_takes_the_optimizers_weight_decay_as_gpunn_train_does(tmp_path, capsys):
    """No --weight-decay: AdamW's own 0.01 in both commands (the sweep's was 0), so the one member is the train
    run."""
    swept, alone, js = tmp_path / "best.npz", tmp_path / "alone.npz", tmp_path / "s.json"
    common = ["--rows", "200", "--features", "3", "--hidden", "4", "--epochs", "2", "--batch-size", "32",
              "--optimizer", "adamw", "--lr", "3e-2", "--device", "cpu", "--dtype", "float64", "--quiet"]
    out = run(["sweep", *common, "--save-best", str(swept), "--json", str(js)], capsys)
    assert "1 member (1 lr x 1 weight decay x 1 seed(s))" in out and "weight decay 0.01," in out
    assert json.loads(js.read_text())["config"]["weight_decay"] == [0.01]
    run(["train", *common, "--save", str(alone)], capsys)
    # to rounding, as every member is (README: the ensemble's arithmetic is not the MLP's bit for bit); a weight
    # decay of 0 instead of 0.01 moves the weights by ~1e-4 relative
    numpy.testing.assert_allclose(gpunn.load(swept, device="cpu").params, gpunn.load(alone, device="cpu").params,
                                  rtol=1e-12)
    # and a --weight-decay and --schedule given are each command's: the sweep's member and the train run
    given = with_options(common, "--optimizer", "sgd", "--weight-decay", "0.1", "--schedule", "cosine")
    run(["sweep", *given, "--save-best", str(swept)], capsys)
    run(["train", *given, "--save", str(alone), "--overwrite"], capsys)
    numpy.testing.assert_allclose(gpunn.load(swept, device="cpu").params, gpunn.load(alone, device="cpu").params,
                                  rtol=1e-12)


def test_an_adamw_sweep_saved_with_the_old_default_weight_decay_resumes_with_it(tmp_path, capsys):
    """A sweep saved before --weight-decay took the optimizer's default recorded the 0 it trained with (what
    --weight-decay 0 records now): resumed without --weight-decay it continues at 0, and 0.01 is refused."""
    saved, js = tmp_path / "sweep", tmp_path / "s.json"
    common = ["--rows", "200", "--features", "3", "--hidden", "4", "--batch-size", "32", "--quiet"]
    run(["sweep", *common, "--optimizer", "adamw", "--weight-decay", "0", "--epochs", "1", "--device", "cpu",
         "--save", str(saved)], capsys)
    assert cli.main(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--weight-decay", "0.01"]) == 2
    assert "--weight-decay 0.01 would change the sweep, which has --weight-decay 0.0" in capsys.readouterr().err
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--json", str(js)], capsys)
    assert [r["weight_decay"] for r in json.loads(js.read_text())["members"]] == [0.0]


def test_the_defaults_sweeps_help_calls_smaller_are_those_that_differ_from_gpunn_trains():
    """gpunn sweep --help: 'some defaults here are smaller (--rows, --hidden, ...)' than gpunn train's. The options
    it names are the ones whose defaults differ between the two commands (and --features, which both resolve per
    task: 16 against 32 for teacher and linear), each smaller, so a default changed on one side is named here."""
    import re

    commands = cli.build_parser().commands
    defaults = {name: {s: a.default for a in commands[name]._actions for s in a.option_strings}
                for name in ("train", "sweep")}
    said = " ".join(commands["sweep"].description.split()).split("some defaults here are smaller (", 1)[1]
    named = set(re.findall(r"--[a-z][\w-]*", said.split(")", 1)[0]))
    differ = {o for o in defaults["sweep"].keys() & defaults["train"].keys()
              if defaults["sweep"][o] != defaults["train"][o]}
    assert named == differ | {"--features"}, (named, differ)
    size = lambda v: sum(int(x) for x in v.split(",")) if isinstance(v, str) else v  # noqa: E731 -- --hidden
    assert all(size(defaults["sweep"][o]) < size(defaults["train"][o]) for o in differ)


def test_the_json_options_help_names_what_a_members_record_holds(tmp_path, capsys):
    """--help said --json writes "every member's settings, result and history": a member's record holds its validation
    curve alone (no training loss, rates or times), so the help names the keys it holds."""
    path = tmp_path / "s.json"
    run(["sweep", "--lr", "1e-3", "--rows", "400", "--epochs", "2", "--hidden", "4", "--quiet", "--json", str(path)],
        capsys)
    member = json.loads(path.read_text())["members"][0]
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    said = help_text[help_text.index("--json PATH write"):help_text.index("--csv PATH write")]
    assert "history" not in said
    for key in member:
        assert key in said, (key, said)


def test_a_split_by_memory_under_a_launcher_says_the_free_memory_is_this_processs_share(monkeypatch):
    """Each rank of a sweep under mpiexec on one machine counts its share of the host's free memory for its
    members; the reason for the split says so, as gpunn train's memory refusal does."""
    import types

    from gpunn.backend import CPU
    from gpunn.cli.sweep import bytes_per_member, members_per_ensemble
    from gpunn.distributed import comm

    for name in (*comm._SIZE_VARIABLES, *comm._LOCAL_SIZE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    args = types.SimpleNamespace(batch_size=64, dtype="float64", no_bias=False, precision="float32", max_members=None)
    per = bytes_per_member([5, 8, 8, 1], 64, 60, 8)
    monkeypatch.setattr(gpunn.preflight, "host_available_bytes", lambda: 8 * per)
    members, why = members_per_ensemble(args, CPU, [5, 8, 8, 1], 60, 8)
    assert members == 3 and why.endswith("free on cpu, this process's share: 2 processes of the job on this node")


def test_a_resumed_sweeps_json_times_the_epochs_this_process_trained(tmp_path, capsys):
    """An ensemble's train_seconds is gpunn train --json's: the epochs this process trained, not those its
    checkpoint's history holds from the process that trained it first."""
    saved, resumed = tmp_path / "sweep", tmp_path / "resumed.json"
    run(GRID + ["--epochs", "1", "--save", str(saved)], capsys)
    run(["sweep", "--resume", str(saved), "--epochs", "2", "--quiet", "--json", str(resumed)], capsys)
    timed = json.loads(resumed.read_text())["result"]["ensembles"]
    for ensemble in timed:
        history = gpunn.load_checkpoint(saved / f"ensemble-{ensemble['ensemble']}.npz").training["history"]
        assert ensemble["train_seconds"] == pytest.approx(history["time_s"][1]) and len(history["time_s"]) == 2


def test_a_jobs_sweep_line_that_saves_and_resumes_one_directory_starts_goes_on_and_then_succeeds(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """gpunn train's one line for every start of a Slurm job, for a sweep: `--save DIR --resume DIR`. Where DIR holds
    no checkpoint yet (not made, or made and left empty by a start stopped before its first epoch) the sweep starts;
    it was refused (`--resume DIR is not a directory`, `holds no ensemble-G.npz`), so a job script had to test for
    the directory. Stopped, it says the same command goes on; run again, it does, to the sweep that never stopped."""
    straight, js = tmp_path / "straight.json", tmp_path / "s.json"
    run(GRID + ["--epochs", "2", "--json", str(straight)], capsys)
    saved = tmp_path / "sweep"
    line = GRID + ["--epochs", "2", "--save", str(saved), "--resume", str(saved), "--json", str(js)]
    fit, calls = gpunn.ensemble.Ensemble.fit, []

    def second_interrupted(self, *args, **kwargs):  # a signal in the second epoch of the second ensemble
        calls.append(1)
        more = [interrupt_at(1, 2)] if len(calls) == 2 else []
        return fit(self, *args, **{**kwargs, "callbacks": [*kwargs["callbacks"], *more]})

    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", second_interrupted)
    out = run(line, capsys, status=130)
    first = json.loads(js.read_text())["config"]  # --json's config, the same at every start of the same command
    assert first["resume"] == str(saved) and "starts_in_place" not in first
    assert out.startswith(f"starting the sweep: --resume {saved} holds no checkpoint yet (--save writes them; the same "
                          "command then goes on from them)\n")
    assert "\ninterrupted in ensemble 1 (2 of 3: members 3-5) after 1 of 2 epochs and 3 of 9 batches of epoch 2: the " \
           "table ranks what was trained so far; the same command goes on from it\n" in out
    # and so does the checkpoints line, at every start (it said "continue with gpunn sweep --resume DIR" in the log)
    checkpoints = f"\ncheckpoints: {saved}/ensemble-0.npz ... ensemble-2.npz (the same command goes on from them)\n"
    assert checkpoints in out
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", fit)
    out = run(line, capsys)  # the requeued start
    assert checkpoints in out
    assert "starting the sweep" not in out and "ensemble 1: 1 of 2 epochs and 3 of 9 batches of epoch 2 done" in out
    assert members(js) == members(straight) and json.loads(js.read_text())["config"] == first
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    out = run(line, capsys)  # run again once the sweep has ended: each ensemble done, status 0
    assert "ensemble 2: 2 of 2 epochs done" in out and members(js) == members(straight)
    assert json.loads(js.read_text())["config"] == first
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    # a directory made but holding no checkpoint (a start stopped while it generated the data) starts too
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run(with_options(line, "--save", str(empty), "--resume", str(empty)), capsys)
    assert out.startswith(f"starting the sweep: --resume {empty} holds no checkpoint yet") and members(js) == members(
        straight)
    # --resume DIR alone is refused where DIR holds no sweep, as before, and so is a DIR that is a file
    for where in (tmp_path / "missing", tmp_path / "made"):
        (tmp_path / "made").mkdir(exist_ok=True)
        assert cli.main(GRID + ["--epochs", "2", "--resume", str(where)]) == 2
        assert "--resume" in capsys.readouterr().err and not (where / "ensemble-0.npz").exists()
    (tmp_path / "a file").write_bytes(b"")
    assert cli.main(with_options(line, "--save", str(tmp_path / "a file"), "--resume", str(tmp_path / "a file"))) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_signal_during_the_held_out_pass_after_training_still_writes_the_sweeps_outputs_and_exits_130(
        tmp_path, capsys, monkeypatch):
    """After the table, the sweep reads the held-out targets once more (a --data sweep's held-out chunks, for the note
    on targets that do not vary). SIGTERM there ended the command with no --json, --csv or best member saved, the
    sweep trained. The pass is cut short: the outputs are written, --json's result says interrupted, status 130."""
    import signal

    from gpunn.cli import sweep

    spread = sweep._held_out_spread

    def signalled(*args):  # the signal arrives in the pass, as kill sends it
        os.kill(os.getpid(), signal.SIGTERM)
        return spread(*args)

    monkeypatch.setattr(sweep, "_held_out_spread", signalled)
    js, table, best = tmp_path / "s.json", tmp_path / "s.csv", tmp_path / "best.npz"
    out = run(with_options(ARGS, "--epochs", "1", "--json", str(js), "--csv", str(table), "--save-best", str(best)),
              capsys, status=130)
    assert "\ninterrupted during the held-out pass, after training: the table ranks the trained sweep\n" in out
    record = json.loads(js.read_text())
    assert record["result"]["interrupted"] is True and len(record["members"]) == 8
    assert len(table.read_text().splitlines()) == 9 and best.exists()


def test_a_sweep_interrupted_part_way_through_an_epoch_scores_the_weights_it_holds_and_saves(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """Ctrl-C after 4 of epoch 2's 9 batches: the members hold those steps' weights, which --save-best saved, but
    the table scored them at epoch 1 (history.weights_epoch, the last finished) and said so. The weights held are
    now scored by a pass of their own, as gpunn train's held-out line scores its model's, and labelled part-way
    through epoch 2: weights_epoch null, partial_epoch 2 in the JSON, "2*" in the table, and the best line."""
    fit = gpunn.ensemble.Ensemble.fit
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *a, **k: fit(
        self, *a, **{**k, "callbacks": [*k["callbacks"], interrupt_at(1, 3)]}))
    js, best = tmp_path / "s.json", tmp_path / "b.npz"
    out = run(with_options(ARGS, "--task", "teacher", "--noise", "0.5", "--json", str(js), "--save-best", str(best)),
              capsys, status=130)
    rows = json.loads(js.read_text())["members"]
    assert {(r["weights_epoch"], r["partial_epoch"], len(r["val_curve"])) for r in rows} == {(None, 2, 1)}
    X, Y = gpunn.datasets.make("teacher", 600, 5, 1, noise=0.5, seed=0, device="cpu", dtype="float64")
    held = gpunn.load(best, device="cpu").evaluate(X[:60], Y[:60])  # the saved best member on the held-out rows
    assert rows[0]["val_mse"] == pytest.approx(held["mse"], rel=1e-12) and rows[0]["val_r2"] == pytest.approx(
        held["r2"], rel=1e-12)
    assert rows[0]["val_mse"] != rows[0]["val_curve"][0]  # (not epoch 1's)
    assert [r["val_mse"] for r in rows] == sorted(r["val_mse"] for r in rows)
    assert re.search(r"\n   1  .* 2\*           1  no\n", out), out
    assert f"R2 {rows[0]['val_r2']:.4f} part-way through epoch 2 (4 of 9 batches)" in out


def test_a_second_interrupt_during_the_pass_over_the_weights_held_leaves_them_unscored(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """A second Ctrl-C while the sweep scores the weights an interrupt left part-way through epoch 2: the table still
    comes (as a second one in the held-out pass after the table lets it), those members unscored, "-", and said;
    with no member scored, no best is named and --save-best writes nothing."""
    from gpunn.training.ensemble import EnsembleEvaluator

    fit, evaluate, calls = gpunn.ensemble.Ensemble.fit, EnsembleEvaluator.evaluate, []
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *a, **k: fit(
        self, *a, **{**k, "callbacks": [*k["callbacks"], interrupt_at(1, 3)]}))

    def second_interrupt_in_the_second_pass(self, model):
        calls.append(1)
        if len(calls) == 2:  # epoch 1's validation, then the pass over the weights held
            raise KeyboardInterrupt
        return evaluate(self, model)

    monkeypatch.setattr(EnsembleEvaluator, "evaluate", second_interrupt_in_the_second_pass)
    js, best = tmp_path / "s.json", tmp_path / "b.npz"
    out = run(with_options(ARGS, "--weight-decay", "0", "--seeds", "1", "--json", str(js), "--save-best", str(best)),
              capsys, status=130)
    rows = json.loads(js.read_text())["members"]
    assert len(calls) == 2 and [(r["val_mse"], r["partial_epoch"]) for r in rows] == [(None, 2), (None, 2)]
    assert "(cut short by a second interrupt: unscored, -)" in out
    assert "\nbest: none, no member's weights were scored\n" in out  # (it named one: "val MSE nan, R2 nan")
    assert f"--save-best {best}: not written, no member was scored\n" in out and not best.exists()


def test_a_sweep_interrupted_at_an_epochs_end_scores_that_epoch_with_no_pass_of_its_own(
        tmp_path, capsys, monkeypatch, interrupt_at):
    """Ctrl-C in epoch 2's last batch stops at its end: the members hold epoch 2's weights, which its validation
    scored, so the table is that epoch's (weights_epoch 2, no partial_epoch) and no further pass runs (audit: the
    pass over the weights held ran at an epoch's end too, its result unused, and no test saw it)."""
    from gpunn.training.ensemble import EnsembleEvaluator

    fit, evaluate, calls = gpunn.ensemble.Ensemble.fit, EnsembleEvaluator.evaluate, []
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *a, **k: fit(
        self, *a, **{**k, "callbacks": [*k["callbacks"], interrupt_at(1, 8)]}))  # batch 9 of 9
    monkeypatch.setattr(EnsembleEvaluator, "evaluate", lambda self, model: calls.append(1) or evaluate(self, model))
    js = tmp_path / "s.json"
    out = run(with_options(ARGS, "--weight-decay", "0", "--seeds", "1", "--json", str(js)), capsys, status=130)
    rows = json.loads(js.read_text())["members"]
    assert len(calls) == 2 and {(r["weights_epoch"], r["partial_epoch"]) for r in rows} == {(2, None)}
    assert all(r["val_mse"] == r["val_curve"][1] for r in rows) and "part-way" not in out


def test_a_second_interrupt_in_the_first_epochs_pass_says_no_member_was_scored(tmp_path, capsys, monkeypatch,
                                                                                interrupt_at):
    """Since 44944d1 an interrupt in the first epoch scores the weights held; "nothing to rank" is left for a second
    interrupt cutting that pass short, and it said "before any member finished an epoch", no longer the reason."""
    from gpunn.training.ensemble import EnsembleEvaluator

    fit = gpunn.ensemble.Ensemble.fit
    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", lambda self, *a, **k: fit(
        self, *a, **{**k, "callbacks": [*k["callbacks"], interrupt_at(0, 2)]}))

    def second_interrupt(self, model):  # the pass over the weights held, epoch 1 having no validation of its own
        raise KeyboardInterrupt

    monkeypatch.setattr(EnsembleEvaluator, "evaluate", second_interrupt)
    saved = tmp_path / "sweep"
    out = run(GRID + ["--epochs", "2", "--save", str(saved)], capsys, status=130)
    assert ("interrupted in ensemble 0 (1 of 3: members 0-2) after 0 of 2 epochs and 3 of 9 batches of epoch 1, "
            f"before any member's weights were scored: nothing to rank; continue with gpunn sweep --resume {saved}"
            in out), out


def test_a_checkpoint_file_given_to_sweep_resume_is_told_which_command_continues_it(tmp_path, capsys):
    """gpunn sweep --resume DIR/ensemble-0.npz (the file, not its directory) or a gpunn train checkpoint said only
    "is not a directory (gpunn sweep --save DIR writes one)", as gpunn train --resume DIR names gpunn sweep's."""
    small = ["--rows", "300", "--features", "3", "--hidden", "4", "--epochs", "1", "--quiet", "--device", "cpu"]
    sweep, train = tmp_path / "sw", tmp_path / "run.npz"
    run(["sweep", *small, "--save", str(sweep)], capsys)
    run(["train", *small, "--save", str(train)], capsys)
    said = {}
    for path in (sweep / "ensemble-0.npz", train, tmp_path / "nope"):
        assert cli.main(["sweep", "--resume", str(path)]) == 2
        said[path] = capsys.readouterr().err
    refused = "gpunn sweep: error: --resume {} is not a directory (gpunn sweep --save DIR writes one)"
    assert said == {
        sweep / "ensemble-0.npz": refused.format(sweep / "ensemble-0.npz") + "; it is one ensemble's checkpoint of the "
                                  f"sweep saved in {sweep}: continue that with gpunn sweep --resume {sweep}\n",
        train: refused.format(train) + f"; it is a gpunn train run's checkpoint: continue it with gpunn train --resume "
                                       f"{train}\n",
        tmp_path / "nope": refused.format(tmp_path / "nope") + "\n"}


def test_a_python_fits_checkpoint_given_to_sweep_resume_is_not_told_gpunn_train_continues_it(tmp_path, capsys):
    """A training checkpoint of MLP.fit's ModelCheckpoint records no command's options: gpunn train --resume cannot
    go on with it, and the refusal does not send it there."""
    X = numpy.random.default_rng(0).standard_normal((64, 3)).astype(numpy.float32)
    path = tmp_path / "py.npz"
    gpunn.MLP([3, 4, 1], seed=0).fit(X, X[:, :1], epochs=1, batch_size=32, verbose=0,
                                     callbacks=[gpunn.ModelCheckpoint(str(path))])
    assert cli.main(["sweep", "--resume", str(path)]) == 2
    assert capsys.readouterr().err == (f"gpunn sweep: error: --resume {path} is not a directory (gpunn sweep --save "
                                       "DIR writes one)\n")


def test_a_save_that_is_a_file_names_the_config_key_that_set_it_and_what_to_give(tmp_path, capsys):
    """gpunn train --save's PATH.toml records save = "run.npz", a file; given to gpunn sweep (checkpoint-every and the
    like dropped, as README says) it said "--save run.npz exists and is not a directory", a flag the user had not
    typed, and not what a sweep's --save takes."""
    (tmp_path / "run.npz").write_bytes(b"a checkpoint")
    (tmp_path / "run.npz.toml").write_text(f'rows = 300\nsave = "{tmp_path / "run.npz"}"\n')
    assert cli.main(["sweep", "--config", str(tmp_path / "run.npz.toml"), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f'gpunn sweep: error: {tmp_path / "run.npz.toml"}: save = "{tmp_path / "run.npz"}" exists and is not a '
        "directory: gpunn sweep saves a directory of checkpoints (gpunn train's --save is a file); name a directory\n")
    assert cli.main(["sweep", "--rows", "300", "--save", str(tmp_path / "run.npz"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"gpunn sweep: error: --save {tmp_path / 'run.npz'} exists and is not a "
                                              "directory: gpunn sweep saves a directory of checkpoints")


def test_a_save_directory_that_cannot_be_made_or_written_is_refused_in_saves_words_before_any_member_trains(
        tmp_path, capsys, monkeypatch):
    """--save DIR under a file said "[Errno 20] Not a directory: 'notes.txt/sweep'", naming no option; a directory that
    refuses new files (a read-only file system) was refused by the first ensemble's ModelCheckpoint, in the API's
    words ("ModelCheckpoint's path DIR/ensemble-0.npz: ..."), after the lines of the sweep's start."""
    from gpunn import preflight

    (tmp_path / "notes.txt").write_text("mine")
    for under in ("notes.txt/sweep", "notes.txt/a/sweep"):
        assert cli.main(["sweep", "--rows", "300", "--save", str(tmp_path / under), "--quiet"]) == 2
        captured = capsys.readouterr()
        assert captured.err == (f"gpunn sweep: error: --save {tmp_path / under}: cannot make the directory: "
                                f"{tmp_path / 'notes.txt'} is a file, not a directory\n")
        assert captured.out == ""
    (tmp_path / "sealed").mkdir()
    writable = os.access
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: writable(path, mode) and "sealed" not in str(path))
    assert cli.main(["sweep", "--rows", "300", "--save", str(tmp_path / "sealed"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"gpunn sweep: error: --save {tmp_path / 'sealed'}: directory {tmp_path / 'sealed'} is not "
                            "writable\n")
    assert captured.out == "" and sorted(os.listdir(tmp_path)) == ["notes.txt", "sealed"]
    assert os.listdir(tmp_path / "sealed") == []


def test_a_save_directory_refused_by_its_file_system_or_a_resumed_one_not_writable_is_said_in_its_options_words(
        tmp_path, monkeypatch):
    """(audit46b) os.makedirs refused under a directory that is there (a read-only file system) says the system's
    words, not that a directory is missing; a --resume DIR that refuses new files is --resume's, not --save's, its
    name whole though it holds ': ' (it was cut there: "--save 'D/run: 2': 2/ensemble-0.npz': directory ...")."""
    import errno
    import types

    from gpunn import preflight
    from gpunn.cli.sweep import _check_save_dir

    made = os.makedirs

    def read_only(path, *args, **kwargs):
        if "mounted" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        made(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", read_only)
    target = tmp_path / "mounted"
    with pytest.raises(preflight.PreflightError) as caught:
        _check_save_dir(types.SimpleNamespace(save=str(target), resume=None))
    assert str(caught.value) == f"--save {target}: cannot make the directory: Read-only file system"
    monkeypatch.undo()
    saved = tmp_path / "run: 2"  # (a name holding ': ', as the refusal's own words do)
    saved.mkdir()
    writable = os.access
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: writable(path, mode) and "run: 2" not in str(path))
    with pytest.raises(preflight.PreflightError) as caught:
        _check_save_dir(types.SimpleNamespace(save=None, resume=str(saved)))
    assert str(caught.value) == f"--resume '{saved}': directory '{saved}' is not writable"


@pytest.mark.slow
def test_readmes_sweep_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """README's `gpunn sweep` block (under "Many models at once"), run as written in a directory where "Data beyond
    memory"'s first block made its files, on the CPU (GPUNN_DEVICE=cpu: the commands leave --device at auto), but for
    the first line's size: --rows 2000 and --epochs 3 here (README's 20,000 rows and 10 epochs, 24 members, cost 10 s
    of wall time on 2 loaded cores; run by hand as written). Each command succeeds and writes what it names: the
    members' JSON and CSV, the plot, the best member, and its predictions of the table's rows under the targets'
    names. README's second and third lines named `runs.parquet` with a column `y`, a file nothing in README makes."""
    import shlex
    from pathlib import Path

    pytest.importorskip("pyarrow")
    pytest.importorskip("matplotlib")
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    setup = text.split("## Data beyond memory\n", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    section = text.split("## Many models at once: ensembles and sweeps\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("`gpunn sweep` trains a grid as one ensemble", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    assert [command[:2] for command in commands] == [["gpunn", "sweep"]] * 2 + [["gpunn", "predict"]]
    first = commands[0]
    assert first[first.index("--rows") + 1] == "20000" and first[first.index("--epochs") + 1] == "10"
    first[first.index("--rows") + 1], first[first.index("--epochs") + 1] = "2000", "3"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")
    exec(compile(setup, "README.md", "exec"), {})
    for command in commands:
        run(command[1:] + (["--quiet"] if command[1] == "sweep" else []), capsys)
    members = json.loads((tmp_path / "sweep.json").read_text())["members"]
    assert len(members) == 24 and [r["val_mse"] for r in members] == sorted(r["val_mse"] for r in members)
    assert len(list(csv.DictReader((tmp_path / "sweep.csv").read_text().splitlines()))) == 24
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert gpunn.load(tmp_path / "best.npz").data_columns is not None  # the second sweep's best: of the table's columns
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0] == '"y1","y2"' and len(rows) == 1 + 40


CLIPPED = ["sweep", "--optimizer", "sgd", "--lr", "0.05", "--clip-norm", "0.1,1", "--seeds", "2", "--rows", "600",
           "--features", "5", "--hidden", "8,8", "--epochs", "3", "--batch-size", "64", "--quiet", "--device", "cpu",
           "--dtype", "float64"]


def test_a_clip_norm_grid_trains_each_member_as_the_mlp_its_optimizers_clip_trains(tmp_path, capsys):
    """--clip-norm 0.1,1: a dimension of the grid (lr x weight decay x clip x seed), a column of the table, the JSON
    and the by-setting summary; each member clips by its own gradient's norm, so the saved best member is the MLP
    trained with gpunn.SGD(clip_norm=its clip), and the members of one seed but another clip differ."""
    path, js = tmp_path / "best.npz", tmp_path / "s.json"
    out = run(CLIPPED + ["--save-best", str(path), "--json", str(js)], capsys)
    assert "4 members (1 lr x 1 weight decay x 2 clip norm x 2 seed(s))" in out
    assert re.search(r"rank +lr +weight_decay +clip_norm +seed +val MSE", out)
    assert re.search(r"rank +lr +weight_decay +clip_norm +seeds +val MSE", out)  # (by setting)
    result = json.loads(js.read_text())
    members = sorted(result["members"], key=lambda r: r["member"])
    assert [(r["clip_norm"], r["seed"]) for r in members] == [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)]
    assert sorted(s["clip_norm"] for s in result["settings"]) == [0.1, 1.0]
    assert members[0]["val_mse"] != members[2]["val_mse"]
    best = result["members"][0]
    assert f"best: lr 0.05, weight decay 0, clip norm {best['clip_norm']:.3g}, seed {best['seed']}:" in out
    X, Y = gpunn.datasets.make("teacher", 600, 5, 1, noise=0.1, seed=0, device="cpu", dtype="float64")
    twin = gpunn.MLP([5, 8, 8, 1], dtype="float64", seed=best["seed"], device="cpu")
    twin.fit(X[60:], Y[60:], epochs=3, batch_size=64, optimizer=gpunn.SGD(clip_norm=best["clip_norm"]), lr=0.05,
             seed=0, verbose=False)
    numpy.testing.assert_allclose(gpunn.load(path, device="cpu").params, twin.params, rtol=1e-10)


def test_a_clip_value_grid_names_its_clip_and_both_clips_are_refused(tmp_path, capsys):
    js = tmp_path / "s.json"
    unclipped = CLIPPED[:CLIPPED.index("--clip-norm")] + CLIPPED[CLIPPED.index("--clip-norm") + 2:]
    out = run(with_options(unclipped, "--clip-value", "0.01,0.1", "--seeds", "1", "--json", str(js)), capsys)
    assert "2 members (1 lr x 1 weight decay x 2 clip value x 1 seed(s))" in out and "clip_value" in out
    assert sorted(r["clip_value"] for r in json.loads(js.read_text())["members"]) == [0.01, 0.1]
    assert cli.main(with_options(CLIPPED, "--clip-value", "0.1")) == 2
    assert "--clip-norm and --clip-value: a member clips its gradient by its norm or by value, not both" in \
        capsys.readouterr().err


def test_an_interrupted_clipped_sweep_resumes_to_the_sweep_that_never_stopped(tmp_path, capsys, monkeypatch,
                                                                             interrupt_at):
    """Each ensemble's checkpoint keeps its members' clips (their optimizers' config), and --resume the grid's."""
    grid = CLIPPED + ["--max-members", "3"]  # ensembles of 3 and 1
    straight = tmp_path / "straight.json"
    run(grid + ["--json", str(straight)], capsys)
    fit, calls = gpunn.ensemble.Ensemble.fit, []

    def first_ensemble_interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            kwargs["callbacks"] = [*kwargs["callbacks"], interrupt_at(1, 3)]
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(gpunn.ensemble.Ensemble, "fit", first_ensemble_interrupted)
    saved = tmp_path / "sweep"
    run(grid + ["--save", str(saved)], capsys, status=130)
    assert [m.clip_norm for m in gpunn.load_checkpoint(saved / "ensemble-0.npz").optimizer.members] == [0.1, 0.1, 1.0]
    assert cli.main(["info", str(saved / "ensemble-0.npz")]) == 0  # (gpunn info's trained line: the members' clips)
    assert "; sgd lr 0.05, clip_norm 0.1, 0.1, 1, batch 64, on task teacher" in capsys.readouterr().out
    resumed = tmp_path / "resumed.json"
    run(["sweep", "--resume", str(saved), "--json", str(resumed), "--quiet"], capsys)
    assert members(resumed) == members(straight)
    assert cli.main(["sweep", "--resume", str(saved), "--clip-norm", "0.5", "--quiet"]) != 0
    assert "clip" in capsys.readouterr().err
