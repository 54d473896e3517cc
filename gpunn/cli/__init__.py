"""The ``gpunn`` command. Each subcommand is one module of this package with ``add_parser(sub)``
(adds its parser, sets ``func``) and ``run(args) -> int``; to add one, write the module and list it
in ``COMMANDS``."""
from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import io
import os
import signal
import sys
import threading
import traceback
import warnings

from .. import backend as _backend
from .. import environment
from .._startup import command_of as _command, launched as launcher_set, prog_of
from .._version import __version__
from ..checks import MissingExtra
from ..distributed.comm import DistributedError, speaking_as
from ..distributed.digest import ConfigMismatch
from . import bench, info, predict, sweep, train
from .common import (DEBUG_ENV, Parser, add_debug, notes_shown, option_names, refusals_said_by, refuse_bad_settings,
                     refuse_repeated, refuse_unknown, text_to_stderr)

COMMANDS = (train, predict, sweep, bench, info)
COMMAND_NAMES = tuple(command.__name__.rsplit(".", 1)[1] for command in COMMANDS)  # gpunn._startup's, before import


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gpunn", description="Train regression MLPs on a CUDA GPU or the CPU.",
                    epilog="The GPUNN_ environment variables (README: Environment variables) are checked as a "
                           "command starts: one set to a value gpunn does not take stops train, predict, sweep and "
                           "bench before they read a file, in one line naming it (status 2). gpunn info lists them.")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    add_debug(parser)  # gpunn --debug train ... as well as gpunn train ... --debug
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = {name: command.add_parser(sub) for name, command in zip(COMMAND_NAMES, COMMANDS)}
    parser.train_parser = parser.commands["train"]
    for command in parser.commands.values():  # an option of another command is refused saying whose it is
        command.siblings = parser.commands
    return parser


def parse_args(argv=None):
    """Parse the command line; for ``train``, defaults come from --resume's checkpoint (its recorded
    options, every option given checked against them: see gpunn.cli.resume), then --config, and
    flags on the command line override both; for ``sweep --resume DIR``, from DIR's first ensemble's.
    A GPUNN_ variable gpunn does not take is refused here, once the command line itself parses, for every
    command but ``info`` (gpunn.cli.common.refuse_bad_settings)."""
    from .. import config as cfgmod
    from . import resume

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and all(token.startswith("-") for token in argv):  # no command: argparse would say only that one is
        # required, not that 'gpunn --vers' (--version, before abbreviations were refused) is no option here
        own = set(option_names(parser))
        stray = [token for token in argv if token.split("=", 1)[0] not in own]
        if stray:
            refuse_unknown(parser, stray, "and a command is required")
    if _command(argv) is not None and _command(argv) not in parser.commands:
        _refuse_command(parser, argv)
    command = parser.commands.get(_command(argv))
    if command is not None:  # its unknown options, named too if argparse stops first at a missing argument
        own = set(option_names(command))
        after = argv[argv.index(_command(argv)) + 1:]
        after = after[:after.index("--")] if "--" in after else after
        command.stray = [token for token in after if token.startswith("--") and token.split("=", 1)[0] not in own]
        refuse_repeated(command, after)  # before the values are parsed: a repeat is the mistake whatever they are
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse_unknown(parser.commands[args.command], unknown)
    if args.command != "info":  # which reports them; the others refuse them before --config, --resume or data is read
        refuse_bad_settings()
    if args.command not in ("train", "sweep"):
        return args
    command = parser.commands[args.command]
    given = resume.explicit(argv, build_parser().commands[args.command])  # the options written out
    from_config = {}
    starts, finished = None, None  # --save PATH --resume PATH: PATH not yet written; or its run all trained
    if args.config or args.resume:  # defaults: the run's recorded options, then --config's; the flags override both
        other = parser.commands["sweep" if args.command == "train" else "train"]  # its keys are told apart
        from_config = (cfgmod.convert(command, cfgmod.read_toml(args.config, table=args.command), args.config, other)
                       if args.config else {})
        resume_path = given_as = args.resume or from_config.get("resume")  # resume = "run.npz" in the file resumes too
        in_place = resume.in_place(resume_path, args.save or from_config.get("save"))
        if in_place and not _written(resume_path, args.command):  # a job's first start: the run starts, saved there
            starts, resume_path = given_as, None
            from_config.pop("resume", None)
        if resume_path and args.command == "sweep":  # a sweep's options are recorded in its first checkpoint
            from .sweep import first_checkpoint

            resume_path = first_checkpoint(resume_path)
        try:
            command.set_defaults(**(resume.defaults_for(resume_path, given, command, from_config, command=args.command,
                                                        given_as=given_as, in_place=in_place, config=args.config)
                                   if resume_path else from_config))
        except resume.NothingLeft as exc:
            if not in_place:
                raise
            finished = exc
            command.set_defaults(**exc.defaults)  # (the run's own: its outputs may be left to write)
        args = parser.parse_args(argv)
    if starts is not None:
        args.resume, args.starts_in_place = None, starts
    if finished is not None:  # the job's command run again after its run ended: nothing to train, and no failure
        _after_the_end(args, finished)
    from .common import settle_progress
    from .train import refuse_idle_options

    settle_progress(args, given, args.config)
    refuse_idle_options(given, args, from_config, args.config)
    args.config_keys = frozenset(from_config) - frozenset(given)  # what --config set: a refusal of one names its key
    return args


def _written(path, command) -> bool:
    """Whether an in-place command's ``path`` (``--save PATH --resume PATH``) holds its run: gpunn train's checkpoint
    file; gpunn sweep's directory with an ensemble's checkpoint in it (a sweep stopped before its first checkpoint, while
    it made its data, leaves the directory made and empty; a file there is refused as not a directory)."""
    if command == "sweep" and os.path.isdir(path):
        from .sweep import saved_checkpoints

        return bool(saved_checkpoints(path))
    return os.path.lexists(path)


def _after_the_end(args, finished) -> None:
    """``gpunn train --save PATH --resume PATH`` whose run has trained all its epochs (``finished``: resume's
    NothingLeft), a job run again after its run ended (a requeued one). Where its outputs are written, or go to
    stdout, it says so and succeeds (_finished). Where a signal cut its held-out pass (--json records no held-out
    metrics), or killed it before it wrote them (train.outputs_left), it goes on as a resume with nothing to train:
    the held-out pass again, then --json, --csv and --plot. Under a launcher the ranks could see other files (another
    node's) and part ways, so there it says what to run instead."""
    from ..distributed.comm import launched_size
    from .train import outputs_left

    left = outputs_left(args, finished.done) if args.command == "train" else None
    if left is None or launched_size() > 1:
        args.func = functools.partial(_finished, finished, left)
    else:
        args.outputs_left = (f"{finished.where}: {finished.said}, and {left}: the held-out pass again, then the "
                             "outputs")


def _finished(said, left, args) -> int:
    """The run has trained all its epochs (:func:`_after_the_end`): it says so (rank 0, under a launcher), and
    succeeds, as a job's dependency on it (afterok) expects; ``left``: what its outputs lack, which one process
    writes."""
    from ..distributed import launched_rank

    if launched_rank() == 0:
        print(f"{said.where}: {said.said}: nothing left to train ({said.further})"
              + (f"; {left}: the same command in one process (without the launcher) writes them" if left else ""),
              flush=True)
    return 0


def _refuse_command(parser, argv):
    """argparse's refusal of a command gpunn has not, with the command meant: a run goes on with ``gpunn train --resume
    PATH``, which a user whose run was cut short types as ``gpunn resume PATH`` (or ``gpunn --resume PATH``, copying
    the --resume of the interrupted run's line); a misspelt command gets the one it stands for (trian: train)."""
    import difflib

    from ..hints import shell_word

    named = _command(argv)
    at = argv.index(named)
    after = _path_typed(argv[at + 1:])
    if named in ("resume", "continue"):
        path = shell_word(after) if after else "PATH"
        hint = f"; a run goes on with gpunn train --resume {path} (a sweep with gpunn sweep --resume DIR)"
    elif at and argv[at - 1] == "--resume":  # gpunn --resume run.npz
        hint = f"; did you mean gpunn train --resume {shell_word(named)}?"
    else:
        close = difflib.get_close_matches(named.lower(), list(parser.commands), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    choices = ", ".join(repr(name) for name in parser.commands)
    parser.error(f"argument command: invalid choice: {named!r} (choose from {choices}){hint}")


def _path_typed(tokens):
    """The path among the words typed after ``gpunn resume``: a .npz name, else the first word that is neither an
    option nor the word after one (its value, as far as can be told: ``gpunn resume --epochs 8 run.npz`` named 8)."""
    words = [token for i, token in enumerate(tokens) if not token.startswith("-")
             and not (i and tokens[i - 1].startswith("-") and tokens[i - 1] != "--" and "=" not in tokens[i - 1])]
    return next((token for token in tokens if token.endswith(".npz")), words[0] if words else None)


EXPECTED_ERRORS = (ValueError, TypeError, _backend.DeviceError, FloatingPointError, OSError, MissingExtra,
                   DistributedError)


def debug_requested(argv) -> bool:
    """--debug anywhere on the command line, or GPUNN_DEBUG on (1, true, yes, on). A value neither on nor off (0,
    false, no, off, or unset) is taken as on, with a note: it only adds tracebacks, and gpunn._startup has taken it
    so before anything could be said."""
    try:
        env = environment.flag(DEBUG_ENV, False)
    except environment.SettingError as exc:
        warnings.warn(f"{exc}; taken as on", environment.SettingWarning)
        env = True
    return "--debug" in argv or env


def one_line(exc: BaseException) -> str:
    """``exc``'s words on one line, each run of spaces and line breaks as one space, or its type's name where it has
    none. A ConfigMismatch's settings, a line each under its first, are joined by "; ": they ran together ("... 0.02
    on rank 1 data.rows: ...")."""
    if isinstance(exc, ConfigMismatch):
        lines = [" ".join(line.split()) for line in str(exc).splitlines()]
        head, *settings = [line for line in lines if line] or [type(exc).__name__]
        return f"{head} {'; '.join(settings)}" if settings else head
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    """Run a command. Every failure is one line on stderr and a non-zero status (2: the command was
    refused or failed; 1: an internal error; 130: Ctrl-C); --debug or GPUNN_DEBUG=1 adds the traceback."""
    if argv is not None:
        return _main(list(argv))
    from .._startup import started

    started()  # Ctrl-C and SIGTERM as the command handles them from here (gpunn._startup set them while it started)
    try:
        return _main(sys.argv[1:])
    finally:
        # The process is about to exit with its status decided. A Ctrl-C now (say the second of two, when
        # the first already stopped the run) would land in interpreter teardown (thread-pool joins), where
        # an uncaught KeyboardInterrupt makes Python kill itself with SIGINT: status -2 instead of ours.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        _forget_interrupts_caught_in_source_text()


def _forget_interrupts_caught_in_source_text() -> None:
    """CPython marks a KeyboardInterrupt that ends code run from source text (exec or eval of a string: the code
    Numba generates as it loads the kernels, a namedtuple's or a dataclass's methods) as unhandled, even where gpunn
    caught it and said so; ``python -m gpunn`` then ended the process by SIGINT (status -2 to its parent) instead of
    with the status returned (130). Evaluating a string that completes clears the mark (CPython resets it before
    each such evaluation)."""
    eval("None")


DATA_PARALLEL = ("train", "sweep")  # the commands that train data parallel under an MPI launcher


def _in_launched_run(argv) -> bool:
    """``gpunn train`` or ``gpunn sweep`` started by an MPI launcher with several processes: a data-parallel run.
    Not where the launcher's variables cannot be read (PMI_SIZE='x', or PMI_RANK='x' beside a size): the start check
    refuses them in one line, which could not name the rank."""
    from ..distributed import launched_rank, launched_size

    try:
        return launched_size() > 1 and _command(argv) in DATA_PARALLEL and launched_rank() >= 0
    except DistributedError:
        return False


def _check_launch(command: str) -> None:
    """Only ``gpunn train`` and ``gpunn sweep`` are data parallel. Another command started by an MPI launcher with
    several processes first takes part in the ranks' check that each runs the same command (same_command_on_every_rank):
    beside training ranks (``mpiexec -n 1 gpunn train ... : -n 1 gpunn info``) it left them waiting for it
    forever in MPI_Init; now every rank is refused, in one line. Where every rank runs it, ``predict`` and ``bench``
    are refused (each would run whole, every one writing the same files) and ``info`` prints on each."""
    from ..distributed import launched_rank, launched_size
    from ..distributed.comm import LAUNCHER_READERS, same_command_on_every_rank

    if command in DATA_PARALLEL:
        return
    try:
        several = launched_size() > 1
        if command == "info":
            for read in LAUNCHER_READERS:
                read()
    except DistributedError:
        if command == "info":  # a launcher's variable gpunn cannot read: info names it among its findings
            return
        raise
    if not several:
        return
    same_command_on_every_rank(command)
    if command in ("predict", "bench"):
        if launched_rank() != 0:  # rank 0 says why, once
            raise SystemExit(2)
        raise ValueError(f"this command runs in one process, and an MPI launcher started {launched_size()}: "
                         f"each would run all of it and write the same files. Run it without mpiexec (only gpunn "
                         "train and gpunn sweep train data parallel: mpiexec -n P gpunn train ...)")


def _note_srun_tasks(command: str) -> None:
    """A note, by task 0, where srun started several tasks with no MPI wire-up (``srun -n 4 gpunn train``, the
    cluster's MpiDefault none): each runs the whole command alone, every one writing the same files, where one
    data-parallel run was likely meant. A note, not a refusal: ``srun -n 4 bash -c 'gpunn train --seed $SLURM_PROCID
    --save m$SLURM_PROCID.npz'`` runs four on purpose, each writing its own."""
    from .. import _startup

    tasks = _startup.srun_tasks_without_mpi()
    if tasks is not None and command != "info" and _startup.srun_task() == 0:
        said = _startup.srun_tasks_words(tasks, "each task runs all of this command", command in DATA_PARALLEL)
        warnings.warn(f"{said}; where each task is meant to run on its own (its own --save, --json), this is as "
                      "asked (said once, by task 0)", _startup.SrunTasksWarning)


def _printed_on_every_rank(argv) -> None:
    """After ``gpunn train --help`` (or sweep's, or ``gpunn --help``/``--version``) printed its text: under an MPI
    launcher with several processes, the ranks' check that each runs the same command (gpunn.distributed.comm.
    same_command_on_every_rank), which every rank of gpunn train and sweep takes before reading data. Every rank that
    asked alike leaves with status 0; one that asked alone while others train is refused with them (ConfigMismatch,
    said once), where it left them waiting for it forever."""
    command = _command(argv)
    if command not in (*DATA_PARALLEL, None):
        return
    from ..distributed import launched_size

    try:
        if launched_size() <= 1:
            return
    except DistributedError:  # a launcher's variable gpunn cannot read: the training ranks refuse it themselves
        return
    tokens = argv[:argv.index("--")] if "--" in argv else argv
    printed = next((t for t in tokens if t in ("-h", "--help", "--version")), "--help")
    from ..distributed.comm import same_command_on_every_rank

    same_command_on_every_rank(" ".join(filter(None, (command, "--help" if printed == "-h" else printed))))


class CommandLineRefused(ValueError):
    """argparse's refusal of a launched rank's command line (its message), said by gpunn.cli._failed as the command's
    other failures are."""


def _join_the_command_check(argv) -> None:
    """For a launched rank of gpunn train or sweep whose command line was refused (argparse, a GPUNN_ variable, a
    --resume or --config it cannot read): the ranks' command check, which the others take next, so that the ranks then
    agree on who failed (_failed). A refusal every rank met, the same mpiexec command line's, was said by every rank,
    each aborting the job (MPI's "Abort(2) on node ..." lines after them); it is said once now, by rank 0. Where MPI
    cannot start (no mpi4py, another MPI's mpiexec) the rank says its own line and ends the job, as before."""
    from ..distributed.comm import same_command_on_every_rank

    try:
        same_command_on_every_rank(_command(argv))
    except DistributedError:
        pass


def _with_rank(text: str) -> str:
    """A command's one line with this process's rank after its prog: ``gpunn train [rank 1 of ranks 0-1]: ...``."""
    from ..distributed.comm import launched_rank, launched_size, rank_words

    prog, _, said = text.partition(": ")
    return f"{prog} [{rank_words(launched_rank(), launched_size())}]: {said}"


def _failed(status: int, text: str, argv, exc: BaseException | None = None) -> int:
    """``text`` as one line on stderr, and ``status``. Under ``mpiexec -n P gpunn train`` (or sweep) the line names this
    process's rank, and the whole job ends here (MPI_Abort): the other ranks may be waiting for this one in
    MPI_Init or a collective, and mpiexec does not end them when a process exits with an error status. An error
    ``exc`` that every rank raised at the same point (gpunn.distributed.comm.is_raised_on_every_rank; or raised before
    any collective since the ranks' command check or a sweep's end of an ensemble, where the ranks agree on who failed
    in the next one of the others: agreeing_before_any_collective) waits for no rank: the ranks compare their lines,
    rank 0 says a line every rank has once (``gpunn train [ranks 0-1]: ...``), each rank says its own where they differ
    (but for a rank that only repeats another's refusal of its data or of a resume, or its interrupt, which that rank
    says, even where the lines are the same: "interrupted (Ctrl-C)" on both), and every rank exits with its status."""
    from ..distributed.comm import (agreeing_before_any_collective, end_launched_job, is_raised_on_every_rank,
                                    started_world)

    if exc is not None and not is_raised_on_every_rank(exc) and _in_launched_run(argv):
        agreeing_before_any_collective(exc)  # failed before the fit's first collective: the ranks agree on it there
    control = started_world() if exc is not None and is_raised_on_every_rank(exc) else None
    if control is None and not _in_launched_run(argv):
        print(text, file=sys.stderr, flush=True)
        return status
    prog, _, said = text.partition(": ")  # (a rank that printed gpunn --version speaks as gpunn: its words compared)
    repeats = None if exc is None else getattr(exc, "gpunn_said_by", None)  # another rank's refusal (of its data, of
    # a resume) or interrupt, in other words: that rank says it (one interrupted: in the same words as this rank's)
    lines = None if control is None else control.allgather((said, repeats),
                                                           label="the comparison of the ranks' error lines")
    if lines is not None and len({line for line, _ in lines}) == 1 and all(by is None for _, by in lines):
        if control.rank == 0:
            sys.stderr.write(f"{prog} [ranks 0-{control.size - 1}]: {said}\n")
            sys.stderr.flush()
        return status
    if lines is not None and repeats is not None:
        return status
    # one write: the launcher merges the ranks' stderr, and a separate newline can land after another rank's line
    sys.stderr.write(_with_rank(text) + "\n")
    sys.stderr.flush()
    # a Ctrl-C (SIGTERM) on mpiexec reaches every process: one interrupted as it started (gpunn._startup) left
    # without MPI, so ending the job from here, which starts MPI, waited for it GPUNN_DIST_TIMEOUT s in MPI_Init
    if lines is None and not (isinstance(exc, KeyboardInterrupt) and "mpi4py.MPI" not in sys.modules):
        end_launched_job(status)
    return status


INTERRUPTED = {  # what a Ctrl-C leaves, per command
    "train": "any checkpoint is the last one completely written",
    "sweep": "any checkpoint is the last one completely written",
    "predict": "OUT is as it was (it is written only once complete)",
    "bench": "a --json file holds the configurations that finished, if any did",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, Slurm, ``docker stop``), or SIGUSR1 (Slurm's warning before a job's time limit,
    ``--signal=USR1@120``), outside a fit: ends the command as Ctrl-C does. ``args[0]``: the signal's name."""


# Slurm's usual warning signal before a job's time limit (sbatch --signal=USR1@120): its default action ended the
# command at once, with no checkpoint of the batch reached and no word (status 138). The command takes it as SIGTERM.
WARNING_SIGNAL = signal.SIGUSR1


def _terminated(signum, frame):
    raise Terminated(signal.Signals(signum).name)


def _as_sigterm(signum, frame):
    """SIGUSR1 does what SIGTERM does now: the handler SIGTERM has (a fit's stops it after the batch, and is told
    SIGTERM, which it passes on as its own, and a second one ends the fit at once, as :class:`Terminated` naming
    SIGUSR1; the command's raises :class:`Terminated` naming SIGUSR1), nothing where SIGTERM is ignored (a
    data-parallel run that has stopped)."""
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return
    try:
        handler(signum if handler is _terminated else signal.SIGTERM, frame)
    except KeyboardInterrupt as exc:  # a fit's, at a second stop signal: named SIGTERM, which it was told
        if isinstance(exc, Terminated):
            raise
        raise Terminated(signal.Signals(signum).name) from None


# The terminal closed (its window, an ssh session that dropped): its default action ended the command at once (status
# 129), the batches since the last checkpoint lost. Not on Windows, which has none.
HANGUP_SIGNAL = getattr(signal, "SIGHUP", None)


def _hung_up(signum, frame):
    """SIGHUP: the command stops as at SIGTERM (:func:`_as_sigterm`), once. Its standard output and error, where
    they are the terminal that hung up, go to /dev/null first: each write to it fails (EIO), and the stop's progress
    line or its "interrupted after" line would have ended the command before its checkpoint was written or with
    another error. Later SIGHUPs (the shell's and the kernel's, for the same hangup) are ignored from here, to the
    process's end: the second of them would have ended the fit at once, as a second SIGTERM does."""
    signal.signal(signum, signal.SIG_IGN)
    _off_a_hung_up_terminal()
    _as_sigterm(signum, frame)


def _off_a_hung_up_terminal() -> bool:
    """Standard output and error onto /dev/null where they are a terminal that has hung up (asked for its settings,
    it answers EIO; a file or a pipe answers ENOTTY, and keeps its lines, as does a terminal still open, which a
    ``kill -HUP`` from elsewhere leaves); whether one was."""
    import termios

    moved = False
    for fd in (1, 2):
        try:
            termios.tcgetattr(fd)
            continue
        except termios.error as exc:
            if exc.args[0] != errno.EIO:
                continue
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
            moved = True
        finally:
            os.close(devnull)
    return moved


class _PastAHangup(io.FileIO):
    """A terminal's descriptor (1 or 2) as the file under sys.stdout or sys.stderr while _hung_up takes SIGHUP: a
    write the terminal refuses because it has hung up (EIO) goes to /dev/null (_off_a_hung_up_terminal), as
    _hung_up sends it there. The kernel signals the hangup as it happens, and Python runs _hung_up only at its next
    check between bytecodes: a line printed in between (the epoch's progress line, print being one call) failed,
    and the command ended with status 2 (its line lost), the stop's checkpoint unwritten (1 run in 450 under load).
    Any other error, EIO from a terminal still open too, is raised as it was."""

    def write(self, b):
        try:
            return super().write(b)
        except OSError as exc:
            if exc.errno != errno.EIO or not _off_a_hung_up_terminal():
                raise
            return super().write(b)  # (the same descriptor, now /dev/null)


@contextlib.contextmanager
def _terminal_streams_past_a_hangup():
    """sys.stdout and sys.stderr, where each is a terminal's text stream, written through :class:`_PastAHangup`
    while the block runs (the same descriptor, encoding and buffering; flushed and put back after)."""
    swapped = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            if not isinstance(stream, io.TextIOWrapper) or not os.isatty(stream.fileno()):
                continue
            stream.flush()
        except (OSError, ValueError):  # (closed, or no descriptor)
            continue
        swapped[name] = stream
        setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(_PastAHangup(stream.fileno(), "w", closefd=False)),
                                            encoding=stream.encoding, errors=stream.errors,
                                            line_buffering=stream.line_buffering, write_through=stream.write_through))
    try:
        yield
    finally:
        for name, stream in swapped.items():
            with contextlib.suppress(OSError, ValueError):
                getattr(sys, name).flush()
            setattr(sys, name, stream)


@contextlib.contextmanager
def sigterm_interrupts():
    """While a command runs, SIGTERM raises :class:`Terminated` (outside a fit; inside one, the fit's own
    handler stops it after the batch and returns, so the command still writes its outputs and exits
    130). Without a handler of the command's own, a fit passes SIGTERM on after stopping and the
    process dies there (status 143), its outputs unwritten. SIGUSR1 is taken as SIGTERM (:func:`_as_sigterm`), and
    SIGHUP too (:func:`_hung_up`), where it is at its default action: ignored (``nohup``), it stays so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signal.SIGTERM: _terminated, WARNING_SIGNAL: _as_sigterm}
    if HANGUP_SIGNAL is not None and signal.getsignal(HANGUP_SIGNAL) is signal.SIG_DFL:
        handlers[HANGUP_SIGNAL] = _hung_up
    before = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        with _terminal_streams_past_a_hangup() if handlers.get(HANGUP_SIGNAL) is _hung_up else contextlib.nullcontext():
            yield
    finally:
        for signum, handler in before.items():
            if signum != HANGUP_SIGNAL or signal.getsignal(signum) is _hung_up:  # (after a hangup, ignored: _hung_up)
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _interrupt_named(exc: KeyboardInterrupt) -> str:
    """What interrupted the command, as its line says it: the signal a :class:`Terminated` names (SIGTERM where it
    names none), or a fit's second stop signal (its KeyboardInterrupt('SIGTERM'): gpunn.training.loop.sigint_stops);
    else Ctrl-C."""
    said = exc.args[0] if exc.args else None
    if isinstance(exc, Terminated):
        return said or "SIGTERM"
    return said if said in signal.Signals.__members__ else "Ctrl-C"


def _describe(exc: BaseException, debug: bool, command: str | None = "train") -> tuple[int, str]:
    """(status, one line) for a failure of ``command``: 130 Ctrl-C, 2 refused or failed, 1 a bug in gpunn. The line
    starts with the command's prog (prog_of: ``gpunn train: error: ...``)."""
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    prog = prog_of(command)
    if isinstance(exc, KeyboardInterrupt):
        left = INTERRUPTED.get(command)
        how = _interrupt_named(exc)
        return 130, f"{prog}: interrupted ({how})" + (f"; {left}" if left else "")
    if isinstance(exc, MemoryError):
        return 2, f"{prog}: error: out of memory: {one_line(exc)}"
    if isinstance(exc, EXPECTED_ERRORS):  # (gpunn_kept: where a failed run's checkpoint is, gpunn train's words)
        kept = getattr(exc, "gpunn_kept", None)
        return 2, f"{prog}: error: {one_line(exc)}" + (f"; {kept}" if kept else "")
    return 1, (f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)}"  # still one line
               + ("" if debug else " (rerun with --debug for the traceback)"))


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of a closed pipe prints nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (an embedding, a test's capture)
        pass


def _main(argv) -> int:
    with notes_shown():
        return _run(argv)


def _run(argv) -> int:
    debug = debug_requested(argv)
    launched = _in_launched_run(argv)
    if launched:  # a rank that fails inside the fit says so in the same one line, and aborts
        from ..distributed.comm import report_failures_with

        def report(exc):
            status, text = _describe(exc, debug, _command(argv))
            return status, _with_rank(text)

        report_failures_with(report, prog_of(_command(argv)))  # the watchdog's line led by the command too
    elif launcher_set():  # gpunn info (predict, bench) starts MPI, timed, for the ranks' check: its line says so
        speaking_as(prog_of(_command(argv)))
    refused = []  # a launched rank's refusal of its command line, said once the ranks agree on who refused
    try:
        try:
            with refusals_said_by(refused.append) if launched else contextlib.nullcontext():
                args = parse_args(argv)
        except SystemExit as exc:
            if exc.code in (0, None):  # --help or --version printed: under a launcher, agreed on (or refused) first
                _printed_on_every_rank(argv)
            if not refused:
                raise
            _join_the_command_check(argv)
            raise CommandLineRefused(refused[-1].partition(": error: ")[2]) from None
        except Exception:
            if launched:
                _join_the_command_check(argv)
            raise
        _check_launch(args.command)
        _note_srun_tasks(args.command)
        if launched:  # before any data is read: a rank of the job that printed --help instead waits here too
            from ..distributed.comm import same_command_on_every_rank

            same_command_on_every_rank(args.command)
        from ..ops.fit_threads import cap_at_slurm_cpus

        cap_at_slurm_cpus()  # under Slurm, NumPy's BLAS on at most --cpus-per-task threads
        with text_to_stderr(args), sigterm_interrupts():  # --json -: stdout holds the JSON alone
            status = args.func(args)
        if launched:  # a command that trained nothing meets a rank that failed before its fit, as a fit would
            from ..distributed.comm import agreeing_before_any_collective

            agreeing_before_any_collective(None)
        return status
    except SystemExit as exc:  # argparse's refusal of the command line (its line said): under mpiexec, end the job
        # too, or the other ranks wait for this one in MPI_Init or their first collective (as after _failed's line)
        if launched and exc.code not in (0, None):
            from ..distributed.comm import end_launched_job

            end_launched_job(exc.code if isinstance(exc.code, int) else 1)
        raise
    except BrokenPipeError:  # the reader of stdout went away (gpunn train | head -1): end quietly, as Unix tools do
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except (KeyboardInterrupt, Exception) as exc:
        return _failed(*_describe(exc, debug, _command(argv)), argv, exc)


if __name__ == "__main__":
    sys.exit(main())
