"""gpunn.cli's failure words in process: the status and one line each kind of failure gets, --debug's traceback,
the notes gpunn's own warnings become, and which command line is a data-parallel run (the same end to end, as
processes: tests/test_cli_failures.py)."""
import os
import signal
import subprocess
import sys
import threading
import warnings

import pytest

from gpunn import cli
from gpunn.cli import common
from gpunn.backend import CPUFallbackWarning, DeviceError
from gpunn.checks import MissingExtra
from gpunn.data.base import HeldOutShareWarning
from gpunn.distributed.comm import DistributedError
from gpunn.ops.cpu import KernelFallbackWarning
from gpunn.training.graph import GraphWarning


def test_a_failures_line_is_its_words_on_one_line_or_its_type():
    assert cli.one_line(ValueError("rows 3\n  and   4\tdiffer ")) == "rows 3 and 4 differ"
    assert cli.one_line(KeyError()) == "KeyError"


def test_a_config_mismatchs_settings_are_said_apart_on_its_one_line():
    """Ranks given other files differ in several settings, a line each; the command's one line ran them together
    ("... 5001 on rank 1 data.x_path: ..."). They are joined by "; " now."""
    from gpunn.distributed.digest import ConfigMismatch, check_same_config, digest

    class TwoRanks:  # each collective hands back both ranks' values: the digests, then the settings
        def allgather(self, value):
            return [digest(s) for s in halves] if isinstance(value, str) else halves

    halves = [{"data": {"x_path": f"X{rank}.npy", "rows": 5000 + rank}} for rank in (0, 1)]
    with pytest.raises(ConfigMismatch) as refused:
        check_same_config(TwoRanks(), halves[0])
    assert cli.one_line(refused.value).endswith(
        'these settings differ (before the first step): data.rows: 5000 on rank 0; 5001 on rank 1; '
        'data.x_path: "X0.npy" on rank 0; "X1.npy" on rank 1')
    one = ConfigMismatch("the ranks do not all run the same command; give every rank the same command:\n"
                         '  command: "train" on rank 0; "info" on rank 1')
    assert cli.one_line(one) == ('the ranks do not all run the same command; give every rank the same command: '
                                 'command: "train" on rank 0; "info" on rank 1')
    assert cli.one_line(ConfigMismatch()) == "ConfigMismatch"
    assert cli.one_line(ConfigMismatch(" \n\n")) == "ConfigMismatch"  # blank lines are no setting (audit37d l3)


@pytest.mark.parametrize("argv,env,asked", [(["train", "--debug"], None, True), (["train"], " ON ", True),
                                             (["train"], " Off ", False), (["train"], "no", False),
                                             (["train"], "", False), (["train"], None, False)])
def test_debug_is_the_flag_or_the_environment(monkeypatch, argv, env, asked):
    if env is None:
        monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    else:
        monkeypatch.setenv(cli.DEBUG_ENV, env)
    assert cli.debug_requested(argv) is asked


@pytest.mark.parametrize("exc,status", [(ValueError("v"), 2), (TypeError("v"), 2), (DeviceError("v"), 2),
                                        (FloatingPointError("v"), 2), (OSError("v"), 2), (MissingExtra("v"), 2),
                                        (DistributedError("v"), 2)])
def test_a_refused_or_failed_command_is_status_2_in_its_own_words(exc, status, capsys):
    assert cli._describe(exc, debug=False, command="predict") == (status, "gpunn predict: error: v")
    assert capsys.readouterr().err == ""


def test_out_of_memory_is_status_2_and_says_so():
    assert cli._describe(MemoryError("Unable to allocate 8 GiB"), debug=False) == (
        2, "gpunn train: error: out of memory: Unable to allocate 8 GiB")


def test_a_bug_in_gpunn_is_status_1_and_points_to_debug_unless_debug_is_on(capsys):
    assert cli._describe(RuntimeError("x\ny"), debug=False) == (
        1, "gpunn train: internal error: RuntimeError: x y (rerun with --debug for the traceback)")
    assert capsys.readouterr().err == ""
    try:
        raise RuntimeError("x")
    except RuntimeError as exc:
        assert cli._describe(exc, debug=True, command="sweep") == (1, "gpunn sweep: internal error: RuntimeError: x")
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.endswith("RuntimeError: x\n")


@pytest.mark.parametrize("command", ["train", "sweep", "predict", "bench", None])
def test_ctrl_c_and_sigterm_say_what_the_command_leaves(command):
    left = {"train": "; any checkpoint is the last one completely written",
            "sweep": "; any checkpoint is the last one completely written",
            "predict": "; OUT is as it was (it is written only once complete)",
            "bench": "; a --json file holds the configurations that finished, if any did", None: ""}[command]
    prog = f"gpunn {command}" if command else "gpunn"
    assert cli._describe(KeyboardInterrupt(), False, command) == (130, f"{prog}: interrupted (Ctrl-C){left}")
    assert cli._describe(cli.Terminated(), False, command) == (130, f"{prog}: interrupted (SIGTERM){left}")
    assert cli._describe(cli.Terminated("SIGUSR1"), False, command) == (130, f"{prog}: interrupted (SIGUSR1){left}")


def test_gpunns_own_warnings_are_notes_and_others_keep_pythons_form(capsys, monkeypatch):
    others = []
    monkeypatch.setattr(common, "_default_showwarning", lambda *args: others.append(args))
    for category in (CPUFallbackWarning, GraphWarning, HeldOutShareWarning, KernelFallbackWarning):
        common.show_note(category(f"gpunn: {category.__name__} said"), category, "x.py", 1)
    message = UserWarning("gpunn: someone else's")
    common.show_note(message, UserWarning, "x.py", 7)
    assert capsys.readouterr().err.splitlines() == ["note: CPUFallbackWarning said", "note: GraphWarning said",
                                                    "note: HeldOutShareWarning said",
                                                    "note: KernelFallbackWarning said"]
    assert others == [(message, UserWarning, "x.py", 7, None, None)]


def test_notes_are_shown_while_a_command_runs_and_the_callers_way_is_back_after_it_even_after_an_error():
    """A command's main is also called in process (a notebook, a test, a program): its notes_shown puts the
    caller's warnings.showwarning back when it ends, also when it ends by an error."""
    def mine(*args):
        pass

    before = warnings.showwarning
    try:
        warnings.showwarning = mine
        with common.notes_shown():
            assert warnings.showwarning is common.show_note
        assert warnings.showwarning is mine
        with pytest.raises(KeyError), common.notes_shown():
            raise KeyError("inside")
        assert warnings.showwarning is mine
    finally:
        warnings.showwarning = before


def test_a_tools_option_repeated_after_a_double_dash_is_an_argument_not_a_repeat(capsys):
    """parse_strictly (the python -m gpunn.bench.* tools) refuses an option given twice before ``--`` only: after it
    the words are arguments, whatever they look like."""
    parser = common.Parser(prog="tool")
    parser.add_argument("--x")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_strictly(["--x", "1", "--", "--x", "2"])
    assert args.x == "1" and args.rest == ["--x", "2"]
    with pytest.raises(SystemExit):
        parser.parse_strictly(["--x", "1", "--x", "2"])
    assert "--x is given twice (1, then 2)" in capsys.readouterr().err


def test_a_reports_json_writes_numpys_numbers_as_pythons_and_a_non_finite_one_as_null():
    """json_text, every report's JSON: NumPy's bool as true/false, its integers as integers, its floats as floats,
    NaN and infinities as null (no JSON reader takes Python's NaN token)."""
    import json

    import numpy

    text = common.json_text({"a": numpy.bool_(True), "b": [numpy.int64(3), numpy.float32(0.5)],
                             "c": (float("nan"), -numpy.inf, None, "x")})
    assert json.loads(text) == {"a": True, "b": [3, 0.5], "c": [None, None, None, "x"]}
    assert b'"a": true' in text and b"3.0" not in text and text.endswith(b"}\n")


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e999"])
def test_a_number_option_refuses_what_is_not_finite(text):
    """positive and non_negative (--lr, --weight-decay, ...) take finite numbers only: inf is above 0, and was a
    learning rate."""
    import argparse

    for kind in (common.positive(float), common.non_negative(float)):
        with pytest.raises(argparse.ArgumentTypeError, match=f"^must be a finite number, got {text}$"):
            kind(text)


def test_the_command_is_the_first_word_that_is_no_option():
    assert cli._command(["--debug", "-q", "train", "--rows", "5"]) == "train"
    assert cli._command(["--version"]) is None


@pytest.mark.parametrize("size,argv,launched", [(1, ["train"], False), (2, ["train"], True), (2, ["sweep"], True),
                                                (2, ["--debug", "sweep"], True), (2, ["predict"], False),
                                                (3, ["bench"], False)])
def test_a_data_parallel_run_is_train_or_sweep_under_a_launcher_of_several_processes(monkeypatch, size, argv,
                                                                                    launched):
    from gpunn import distributed

    monkeypatch.setattr(distributed, "launched_size", lambda: size)
    assert cli._in_launched_run(argv) is launched


def test_sigterm_interrupts_the_command_then_the_handler_before_is_back():
    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        with cli.sigterm_interrupts():
            with pytest.raises(cli.Terminated):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigusr1_does_what_sigterm_does_in_the_command_then_its_handler_before_is_back():
    """Slurm's warning before a job's time limit (sbatch --signal=USR1@120): SIGUSR1's default action ended the
    command at once. Now it is SIGTERM's handler's: the command's Terminated (naming it), a fit's stop (told SIGTERM,
    which the fit passes on as its own), and nothing where SIGTERM is ignored."""
    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGUSR1, mine)
    try:
        with cli.sigterm_interrupts():
            with pytest.raises(cli.Terminated) as raised:
                signal.raise_signal(signal.SIGUSR1)
            assert raised.value.args == ("SIGUSR1",)
            told = []
            signal.signal(signal.SIGTERM, lambda signum, frame: told.append(signum))  # a fit's handler
            signal.raise_signal(signal.SIGUSR1)
            assert told == [signal.SIGTERM]
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a data-parallel run that has stopped
            signal.raise_signal(signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_sigterm_interrupts_changes_nothing_outside_the_main_thread():
    seen = []

    def in_thread():
        try:
            with cli.sigterm_interrupts():
                seen.append(signal.getsignal(signal.SIGTERM))
        except Exception as exc:  # signal.signal refuses other threads (ValueError)
            seen.append(exc)

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]


def test_no_command_is_refused_as_the_missing_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("gpunn: error: the following arguments are required: command "
                                                        "(see gpunn --help)")


def test_a_command_shows_gpunns_own_warnings_as_notes(capsys, monkeypatch):
    from gpunn.cli import info

    monkeypatch.setattr(info, "run", lambda args: warnings.warn(GraphWarning("gpunn: no capture here")) or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["info"]) == 0
    assert "note: no capture here" in capsys.readouterr().err.splitlines()


def test_a_program_that_runs_a_command_in_process_keeps_its_way_of_showing_warnings(monkeypatch):
    """main's notes are its own: it set warnings.showwarning for the rest of the process, so a program (or test)
    that called cli.main showed every later gpunn warning as a bare 'note:' line."""
    from gpunn.cli import info

    def mine(*args, **kwargs):
        pass

    monkeypatch.setattr(warnings, "showwarning", mine)  # (monkeypatch puts it back whatever main did)
    monkeypatch.setattr(info, "run", lambda args: 0)
    assert cli.main(["info"]) == 0
    assert warnings.showwarning is mine
    monkeypatch.setattr(info, "run", lambda args: 1 / 0)  # a command that fails: the same
    assert cli.main(["info"]) == 1
    assert warnings.showwarning is mine


@pytest.mark.parametrize("command", cli.COMMAND_NAMES)
def test_every_failure_of_a_command_starts_with_its_prog_as_argparses_own_refusals_do(capsys, monkeypatch, command):
    """argparse refused an option as 'gpunn train: error: ...' and gpunn refused a value as 'gpunn: error: ...'; a
    command's every line of failure now names it (refused, failed, a bug, Ctrl-C)."""
    module = dict(zip(cli.COMMAND_NAMES, cli.COMMANDS))[command]
    argv = [command, "m.npz", "x.npy", "o.npy"] if command == "predict" else [command]
    with pytest.raises(SystemExit):
        cli.main([*argv, "--bogus"])
    said = [capsys.readouterr().err.splitlines()[-1]]
    for exc in (ValueError("refused"), RuntimeError("a bug"), KeyboardInterrupt()):
        def run(args, exc=exc):
            raise exc

        monkeypatch.setattr(module, "run", run)
        cli.main(argv)
        said.append(capsys.readouterr().err.strip())
    assert [line.split(": ", 1)[0] for line in said] == [f"gpunn {command}"] * 4, said
    assert said[1:] == [f"gpunn {command}: error: refused",
                        f"gpunn {command}: internal error: RuntimeError: a bug (rerun with --debug for the traceback)",
                        cli._describe(KeyboardInterrupt(), False, command)[1]]


def test_a_command_line_that_names_no_command_fails_as_gpunn():
    assert cli.prog_of(None) == cli.prog_of("trian") == "gpunn"
    assert cli._describe(ValueError("v"), False, None) == (2, "gpunn: error: v")


def test_the_startup_line_names_the_command_as_the_commands_own_lines_do(monkeypatch):
    from gpunn import _startup

    assert _startup.COMMAND_NAMES == cli.COMMAND_NAMES
    for argv, prog in ((["gpunn", "--debug", "sweep", "--lr", "1"], "gpunn sweep"), (["-m", "predict"], "gpunn predict"),
                       (["gpunn", "--version"], "gpunn"), (["gpunn", "trian"], "gpunn")):
        monkeypatch.setattr("sys.argv", argv)
        assert _startup._prog() == prog == cli.prog_of(cli._command(argv[1:]))


def test_a_ranks_line_names_it_from_0_with_the_ranks_there_are(monkeypatch):
    """'gpunn [rank 1/2]' read as the first of two, where it was the second (MPI counts ranks from 0)."""
    from gpunn.distributed import comm

    monkeypatch.setattr(comm, "launched_rank", lambda: 1)
    monkeypatch.setattr(comm, "launched_size", lambda: 2)
    assert cli._with_rank(cli._describe(ValueError("v: w"), False, "sweep")[1]) == \
        "gpunn sweep [rank 1 of ranks 0-1]: error: v: w"
    assert comm.rank_words(0, 8) == "rank 0 of ranks 0-7"


def test_a_rank_that_waited_too_long_is_led_by_the_command_it_runs_and_by_gpunn_in_a_program(monkeypatch, capsys):
    # the watchdog's line said 'gpunn [rank 0 of ranks 0-1]: waited ...' under gpunn train too, where every other line
    # of the command is led by 'gpunn train'
    from gpunn import distributed
    from gpunn.distributed import comm

    class Rank:
        rank, size, timeout, timeout_given = 0, 2, 2.0, False
        aborted = None

        def abort(self, code):
            Rank.aborted = code

    def waited():
        comm.MpiComm._timed_out(Rank(), "the stop-flag exchange", 3.4)
        return capsys.readouterr().err

    said = ("[rank 0 of ranks 0-1]: waited 3 s in the stop-flag exchange; another rank has stopped (failed, hung or "
            "killed). Aborting the job (GPUNN_DIST_TIMEOUT=2 s).\n")
    monkeypatch.setattr(comm, "_REPORT", [])
    assert waited() == "gpunn " + said and Rank.aborted == 3  # a distributed fit in a program: no command
    monkeypatch.setattr(distributed, "launched_size", lambda: 2)  # as a rank of mpiexec -n 2 gpunn sweep
    assert cli.main(["sweep", "--data", "/nonexistent-gpunn-input/t.csv", "--target", "y", "--lr", "1e-3"]) == 2
    capsys.readouterr()
    assert waited() == "gpunn sweep " + said


def test_a_failing_rank_without_the_commands_report_names_itself_from_0(monkeypatch, capsys):
    from gpunn.distributed import comm

    class Comm:
        rank, size = 2, 3
        aborted = None

        def abort(self, code):
            Comm.aborted = code

    monkeypatch.setattr(comm, "_REPORT", [])
    comm.abort_on_error(Comm(), RuntimeError("x"))
    assert capsys.readouterr().err.startswith("gpunn [rank 2 of ranks 0-2]: this rank failed; aborting all ranks.\n")
    assert Comm.aborted == 1


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="a system with SIGHUP")
def test_a_hangup_stops_the_command_once_and_later_ones_of_it_stay_ignored_after_the_command():
    """(audit46c) SIGHUP outside a fit ends the command as SIGTERM does (Terminated, naming it); the later SIGHUPs of
    the same hangup (the shell's, the kernel's) are ignored to the process's end: sigterm_interrupts does not put
    SIGHUP's default action back, which would end the process at once as it writes its outputs. Standard output and
    error that are not a hung-up terminal (here pytest's files) keep their lines. Without a hangup it is put back."""
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with pytest.raises(cli.Terminated, match="SIGHUP"):
            with cli.sigterm_interrupts():
                signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.raise_signal(signal.SIGHUP)  # (a second one: ignored)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with cli.sigterm_interrupts():
            assert signal.getsignal(signal.SIGHUP) is cli._hung_up
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)


PROBE_TERMINALS = """
import os, pty, sys
from gpunn import cli
m, s = pty.openpty()
out = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.dup2(s, 1); os.dup2(out, 2)
cli._off_a_hung_up_terminal()
seen = [os.readlink("/proc/self/fd/1") == os.ttyname(s), os.readlink("/proc/self/fd/2") == sys.argv[1]]
os.close(m)
cli._off_a_hung_up_terminal()
seen += [os.readlink("/proc/self/fd/1") == os.devnull, os.readlink("/proc/self/fd/2") == sys.argv[1]]
m, s = pty.openpty()
os.dup2(out, 1); os.dup2(s, 2)
os.close(m)
cli._off_a_hung_up_terminal()
seen += [os.readlink("/proc/self/fd/1") == sys.argv[1], os.readlink("/proc/self/fd/2") == os.devnull]
os.write(1, repr(seen).encode())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pty, and /proc/self/fd")
def test_only_a_terminal_that_has_hung_up_is_put_onto_dev_null(tmp_path):
    """(audit46c) _off_a_hung_up_terminal: a terminal still open (a kill -HUP from elsewhere) keeps standard output,
    and a file keeps standard error; once the terminal's other end is closed, its output goes to /dev/null, and so
    does standard error where it is that terminal."""
    said = tmp_path / "said.txt"
    said.write_text("")
    subprocess.run([sys.executable, "-c", PROBE_TERMINALS, str(said)], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(cli.__file__)))})
    assert said.read_text() == repr([True] * 6)
