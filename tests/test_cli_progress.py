"""gpunn train/sweep --progress auto|lines|off and --quiet: what stderr shows, and where each may be given."""
import tomllib

import pytest

from gpunn.cli import main

SMALL = ["--rows", "400", "--features", "4", "--hidden", "8", "--batch-size", "64", "--device", "cpu", "--epochs", "2"]
SWEEP = [*SMALL, "--lr", "1e-3,1e-2"]


def epoch_lines(err: str) -> list[str]:
    return [line.split(":")[0] for line in err.splitlines() if " epoch " in line.split(":")[0]]


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_progress_lines_gives_a_line_per_epoch_on_a_terminal_and_auto_the_bar(command, terminal_stderr,
                                                                               progress_clock):
    args = SMALL if command == "train" else SWEEP
    assert main([command, *args, "--progress", "lines"]) == 0
    err = terminal_stderr.readouterr().err
    assert "\r" not in err and len(epoch_lines(err)) == 2
    for auto in ([], ["--progress", "auto"]):
        assert main([command, *args, *auto]) == 0
        assert "\r" in terminal_stderr.readouterr().err


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("off", [["--progress", "off"], ["--quiet"]])
def test_progress_off_and_quiet_show_none(command, off, capsys, progress_clock):
    args = SMALL if command == "train" else SWEEP
    assert main([command, *args]) == 0  # a file or pipe: a line per epoch
    assert len(epoch_lines(capsys.readouterr().err)) == 2
    assert main([command, *args, *off]) == 0
    assert epoch_lines(capsys.readouterr().err) == []


def test_quiet_and_progress_on_one_command_line_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *SMALL, "--quiet", "--progress", "lines"])
    assert exit_info.value.code == 2 and "--progress: not allowed with argument --quiet" in capsys.readouterr().err


@pytest.mark.parametrize("file, flags, lines", [
    ('progress = "lines"\n', ["--quiet"], 0),
    ("quiet = true\n", ["--progress", "lines"], 2),
    ('progress = "off"\n', ["--progress", "lines"], 2),
    ('quiet = true\nprogress = "off"\n', [], 0),
])
def test_the_command_lines_progress_overrides_the_config_files(tmp_path, terminal_stderr, progress_clock, file,
                                                               flags, lines):
    (tmp_path / "run.toml").write_text(file)
    assert main(["train", *SMALL, "--config", str(tmp_path / "run.toml"), *flags]) == 0
    err = terminal_stderr.readouterr().err
    assert len(epoch_lines(err)) == lines and "\r" not in err


def test_a_config_file_saying_quiet_and_lines_is_refused_by_name(tmp_path, capsys):
    (tmp_path / "run.toml").write_text('quiet = true\nprogress = "lines"\n')
    assert main(["train", *SMALL, "--config", str(tmp_path / "run.toml")]) == 2
    assert f'{tmp_path / "run.toml"}: quiet = true and progress = "lines" disagree' in capsys.readouterr().err


def test_progress_is_the_processs_own_not_recorded_and_free_on_resume(tmp_path, capsys, progress_clock):
    save = str(tmp_path / "run.npz")
    assert main(["train", *SMALL[:-1], "1", "--progress", "off", "--save", save]) == 0
    assert "progress" not in tomllib.loads((tmp_path / "run.npz.toml").read_text())
    capsys.readouterr()
    assert main(["train", "--resume", save, "--epochs", "2", "--progress", "lines"]) == 0
    assert epoch_lines(capsys.readouterr().err) == ["train [cpu] epoch 2/2"]
