"""`gpunn sweep`: a grid trained as one ensemble, ranked; split into ensembles that fit; outputs."""
import csv
import json

import numpy
import pytest

import gpunn
from gpunn import cli

ARGS = ["sweep", "--lr", "1e-3,1e-2", "--weight-decay", "0,1e-2", "--seeds", "2", "--rows", "600", "--features", "5",
        "--hidden", "8,8", "--epochs", "3", "--batch-size", "64", "--quiet", "--device", "cpu", "--dtype", "float64"]


def run(args, capsys):
    code = cli.main(args)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_sweep_ranks_the_grid_and_splitting_changes_nothing(tmp_path, capsys):
    one, split = tmp_path / "one.json", tmp_path / "split.json"
    out = run(ARGS + ["--json", str(one), "--csv", str(tmp_path / "t.csv"), "--save-best", str(tmp_path / "b.npz")],
              capsys)
    assert "8 members (2 lr x 2 weight decay x 2 seed(s))" in out and "split" not in out
    out = run(ARGS + ["--json", str(split), "--max-members", "3"], capsys)
    assert "the grid is split into 3 ensembles of up to 3 members (--max-members 3)" in out
    a, b = (json.loads(p.read_text())["members"] for p in (one, split))
    assert [r["val_mse"] for r in a] == sorted(r["val_mse"] for r in a)  # ranked
    key = lambda r: (r["lr"], r["weight_decay"], r["seed"])  # noqa: E731
    assert {key(r) for r in a} == {(lr, wd, s) for lr in (1e-3, 1e-2) for wd in (0.0, 1e-2) for s in (0, 1)}
    # members are independent: the same member in another ensemble trains to the same result
    numpy.testing.assert_allclose([r["val_mse"] for r in sorted(a, key=key)], [r["val_mse"] for r in sorted(b, key=key)],
                                  rtol=1e-10)
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 8 and float(rows[0]["val_mse"]) == a[0]["val_mse"]


def test_saved_best_member_is_the_mlp_its_settings_train(tmp_path, capsys):
    path, js = tmp_path / "best.npz", tmp_path / "s.json"
    run(ARGS + ["--save-best", str(path), "--json", str(js)], capsys)
    best = json.loads(js.read_text())["members"][0]
    X, Y = gpunn.datasets.make("teacher", 600, 5, 1, noise=0.1, seed=0, device="cpu", dtype="float64")
    twin = gpunn.MLP([5, 8, 8, 1], dtype="float64", seed=best["seed"])
    twin.fit(X[60:], Y[60:], epochs=3, batch_size=64, optimizer=gpunn.Adam(weight_decay=best["weight_decay"]),
             lr=best["lr"], seed=0, verbose=False)
    numpy.testing.assert_allclose(gpunn.load(path, device="cpu").params, twin.params, rtol=1e-10)


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
