"""Ctrl-C (or SIGTERM, SIGUSR1) while the ``gpunn`` command starts: one line and status 130, as later in the command.

The command's imports (NumPy, Numba, gpunn's modules) take about a second, more on a loaded machine; a
Ctrl-C then printed Python's KeyboardInterrupt traceback of whichever import it cut short. ``gpunn``'s
``__init__`` calls :func:`install` first: only when this process is the command (the ``gpunn`` script, or
``python -m gpunn``) it sets a handler that prints the line and ends the process at once (nothing has been
read or written yet); :func:`started`, at the start of ``gpunn.cli.main``, puts the previous handlers back.
``import gpunn`` in any other program changes no handler. Cheap: os, signal, sys and gpunn.environment (os alone).
``gpunn/__init__.py`` imports this module first, and the import calls :func:`install`.
"""
from __future__ import annotations

import os
import signal
import sys

from . import environment


def _is_the_command() -> bool:
    """Whether this process is the ``gpunn`` command, importing gpunn to run it: the console script (its
    ``__main__`` is the script named gpunn) or ``python -m gpunn`` (runpy imports the package while
    ``sys.argv[0]`` is still ``-m``; the name given to -m stands before the command's arguments)."""
    argv = sys.argv
    if not argv:
        return False
    if argv[0] == "-m":
        orig = getattr(sys, "orig_argv", [])
        name = orig[len(orig) - len(argv)] if 0 < len(argv) < len(orig) else ""
        return name == "gpunn" or (name.startswith("-") and not name.startswith("--") and name.endswith("mgpunn"))
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    return script == argv[0] and os.path.splitext(os.path.basename(script))[0] == "gpunn"


def _debug_requested() -> bool:
    """--debug or GPUNN_DEBUG (as gpunn.cli.debug_requested takes it, which cannot be imported yet; a value neither on
    nor off counts as on, and the command notes it): keep the traceback."""
    try:
        return "--debug" in sys.argv or environment.flag("GPUNN_DEBUG", False)
    except environment.SettingError:
        return True


# Environment variables by which MPI launchers tell a process how many ranks were started (MPICH/Intel MPI/Slurm
# PMI, Open MPI, MVAPICH): here, so that `import gpunn` can see a launched job without importing gpunn.distributed
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")


# ... and which of them this process is (gpunn.distributed.comm.launched_rank reads them)
LAUNCHER_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
# what an MPI wire-up leaves in each process's environment besides: srun --mpi=pmi2's PMI_FD, --mpi=pmix's namespace
_MPI_WIREUP_VARIABLES = (*LAUNCHER_SIZE_VARIABLES, *LAUNCHER_RANK_VARIABLES, "PMI_FD", "PMIX_NAMESPACE")


def launched() -> bool:
    """Whether an MPI launcher's size variable is set, or srun started several tasks wired up by MPI without one
    (srun_tasks_with_mpi): gpunn.distributed.comm.launched_size reads how many."""
    return (any(environment.text(name) is not None for name in LAUNCHER_SIZE_VARIABLES)
            or (srun_tasks_with_mpi() or 0) > 1)


def _srun_step_tasks() -> int | None:
    """How many tasks srun started in this process's job step (SLURM_STEP_NUM_TASKS); None where it is unset or not
    a whole number (sbatch's batch script is no step: srun sets it, sbatch does not)."""
    tasks = environment.text("SLURM_STEP_NUM_TASKS")
    return int(tasks) if tasks is not None and tasks.isascii() and tasks.isdigit() else None


def srun_tasks_with_mpi() -> int | None:
    """How many tasks srun started in this step where an MPI wire-up of them is in the environment but no launcher's
    size variable: srun --mpi=pmix sets PMIX_RANK and PMIX_NAMESPACE, not a size, so the tasks are MPI's world.
    None otherwise (a size variable says it: PMI_SIZE under --mpi=pmi2, mpiexec's)."""
    if any(environment.text(name) is not None for name in LAUNCHER_SIZE_VARIABLES):
        return None
    if not any(environment.text(name) is not None for name in _MPI_WIREUP_VARIABLES):
        return None
    return _srun_step_tasks()


class SrunTasksWarning(UserWarning):
    """srun started several tasks with no MPI wire-up, and each runs the whole of what it was given
    (srun_tasks_without_mpi)."""


def srun_tasks_without_mpi() -> int | None:
    """How many tasks Slurm's srun started in this process's job step, where it started several and no MPI wire-up
    of them is in the environment (``srun -n 4 gpunn train`` where the cluster's MpiDefault is none and no --mpi=pmix
    was given): each task's MPI is then a job of one process, which trains the whole run alone, every task writing
    the same files. None otherwise: one task, no srun step (sbatch's batch script is no step: srun sets
    SLURM_STEP_NUM_TASKS, sbatch does not), or an MPI launcher's variables there, which MPI's own start checks."""
    tasks = _srun_step_tasks()
    if tasks is None or tasks <= 1:
        return None
    if any(environment.text(name) is not None for name in _MPI_WIREUP_VARIABLES):
        return None
    return tasks


def srun_task() -> int:
    """This process's task in its srun step (SLURM_PROCID; 0 where unset or unreadable)."""
    task = environment.text("SLURM_PROCID") or "0"
    return int(task) if task.isascii() and task.isdigit() else 0


def srun_tasks_words(tasks: int, each: str, data_parallel: bool = True) -> str:
    """What srun_tasks_without_mpi's ``tasks`` means, for a warning or refusal; ``each``: what each task does alone;
    ``data_parallel``: whether it could run as ranks of one run (gpunn train and sweep, a fit), else it runs in one
    process."""
    ways = (f"For one data-parallel run of {tasks} ranks: srun --mpi=pmix -n {tasks} (or --mpi=pmi2; srun --mpi=list "
            f"names the cluster's), or mpiexec -n {tasks}; for one run: srun -n 1" if data_parallel else
            "It runs in one process: srun -n 1")
    return (f"srun started {tasks} tasks (SLURM_STEP_NUM_TASKS={tasks}) with no MPI wire-up (no PMI_RANK, PMIX_RANK or "
            f"other MPI launcher's variable): each task's MPI is a job of one process, and {each}, every task writing "
            f"the same files. {ways}")


# the gpunn command's subcommands (gpunn.cli.COMMAND_NAMES, which cannot be imported yet: a test keeps them equal)
COMMAND_NAMES = ("train", "predict", "sweep", "bench", "info")


def command_of(argv) -> str | None:
    """The subcommand named on the command line ``argv`` (its arguments): the first that is no option (gpunn's own
    options take no value), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def prog_of(command: str | None) -> str:
    """Who speaks in a failure's line: the subcommand's prog (``gpunn train``), as argparse's own refusals of its
    options say it, wherever the command line names a command gpunn has; ``gpunn`` where it names none. Here, not
    in gpunn.cli, so that the line said while starting (before gpunn.cli is imported) says it the same way."""
    return f"gpunn {command}" if command in COMMAND_NAMES else "gpunn"


def _prog() -> str:
    """Who speaks while the command starts (prog_of)."""
    return prog_of(command_of(sys.argv[1:]))


def _interrupted(signum, frame):
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    try:
        sys.stderr.write(f"{_prog()}: interrupted ({how}) while starting; nothing was read or written\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


_previous = {}  # signal -> the handler before install()


def install() -> None:
    """The startup handlers, when this process is the command, signals are at their defaults (not ignored:
    a background job's ignored Ctrl-C stays ignored), and no traceback was asked for."""
    try:
        if _previous or not _is_the_command() or _debug_requested():
            return
        for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL),
                                (signal.SIGUSR1, signal.SIG_DFL)):  # (SIGUSR1: Slurm's warning, --signal=USR1@120)
            if signal.getsignal(signum) is default:
                _previous[signum] = signal.signal(signum, _interrupted)
    except (ValueError, OSError, AttributeError):  # not the main thread; no such signal here
        pass


def started() -> None:
    """The command has started (gpunn.cli.main): the handlers that install() replaced, back."""
    while _previous:
        signum, handler = _previous.popitem()
        if signal.getsignal(signum) is _interrupted:
            signal.signal(signum, handler)


install()  # on import: gpunn/__init__.py imports this module before anything else
