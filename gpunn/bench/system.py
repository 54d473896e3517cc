"""What machine a benchmark ran on: CPU, cores, BLAS and its threads, library versions, how busy other
processes kept it while the timings ran (OthersCpu), and how fast the CPU itself ran meanwhile (SpeedProbe).

``blas_info`` is also what ``gpunn info`` prints; it lives here, once.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import sys
import time

import numpy

from .._version import __version__
from ..cpuload import OthersCpu, machine_cpu_seconds  # noqa: F401 - (the bench's names for them)
from ..ops.cpu import usable_cores
from ..ops.gemm import threads_words


def setup_info(backends) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "gpunn": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": cpu_name(),
        "cores": usable_cores(),
        "devices": [b.describe() for b in backends],
        "blas": _blas(),
    }
    # what README says changes a CPU step's speed (KMP_BLOCKTIME is left out: gpunn sets it to 0 itself as it loads
    # MKL, so its value would not say what the user set)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "GPUNN_CPU_THREADS", "GPUNN_ENSEMBLE_BLAS_THREADS", "GPUNN_GEMM",
                "GPUNN_FUSED_KERNELS"):
        if os.environ.get(var):
            info.setdefault("env", {})[var] = os.environ[var]
    from ..ops.cpu import CpuOps, numba
    from ..ops.lazynumba import version

    ops = CpuOps()
    # (Numba imported now: ``fused`` reads True before it is, where a short run's NumPy stands in for the kernels,
    # also where it turns out not to import; the bench's fits need it anyway)
    fused = ops.fused and ops.kernels_now(same_bits=False)
    info["gpunn_cpu_path"] = (f"fused Numba {version()} kernels, {ops.threads} thread{'s' if ops.threads > 1 else ''}" if fused
                              else f"NumPy reference (Numba {'not installed' if numba is None else 'does not import'})")
    from ..ops import denormals, gemm

    info["gemm"] = gemm.describe()
    info["subnormals"] = denormals.describe()
    info.update(peer_versions())
    return info


def peer_versions() -> dict:
    """The setup's "torch" and "sklearn": each one's version, with the build's local tag (+cu130) once it is loaded.
    Before that, versions from the package metadata (importing torch only to print its version can take
    longer than a whole --max-seconds budget on a cold machine), without it. No thread count: the bench sets torch's
    per row (one for a small net, gpunn.bench.runners.bench_config), so a count read here is the last row's, and
    each torch row says its own."""
    info = {}
    for mod, dist in (("torch", "torch"), ("sklearn", "scikit-learn")):
        m = sys.modules.get(mod)
        try:
            version = m.__version__ if m is not None else importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[mod] = "not installed"
            continue
        info[mod] = version
    return info


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, on x86 with its family, model and widest vector instructions:
    "AMD EPYC (family 25 model 17, AVX-512)". A virtual machine's model name may be all a vendor's machines share
    ("AMD EPYC" on the project's Zen 3, Zen 4 and Zen 5 machines), and which BLAS kernels run, and how fast, turns on
    the rest. Else the platform's processor or machine name."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if not sep:
                    if fields:  # the first processor's block ends: the others repeat it
                        break
                    continue
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name")
    if not name:
        return platform.processor() or platform.machine()
    details = [f"family {fields['cpu family']} model {fields['model']}"] if "cpu family" in fields and "model" in fields \
        else []
    flags = set(fields.get("flags", "").split())
    if "avx512f" in flags:
        details.append("AVX-512, AMX" if "amx_tile" in flags else "AVX-512")
    elif "avx2" in flags:
        details.append("AVX2")
    return f"{name} ({', '.join(details)})" if details else name


def numpy_blas_pool() -> dict | None:
    """threadpoolctl's record of the BLAS NumPy itself calls (not SciPy's or torch's own copy): the library
    gpunn.ops.fit_threads takes for NumPy's (_numpys), as a dict (internal_api, version, architecture, num_threads,
    filepath); None without threadpoolctl or a BLAS it finds."""
    from ..ops.fit_threads import _libraries, _numpys

    library = _numpys(_libraries())
    return library.info() if library is not None else None


def _blas() -> str:
    p = numpy_blas_pool()
    if p:
        return (f"{p.get('internal_api')} {p.get('version')}, {p.get('architecture')} kernels, "
                f"{threads_words(p.get('num_threads'))}{gpunn_fits_words(p.get('num_threads'))}")
    return blas_info()


def gpunn_fits_words(threads) -> str:
    """Where gpunn's fits run the BLAS on another count than the process's ``threads`` (gpunn.ops.fit_threads), as
    words to follow that count; "" where they do not."""
    from ..ops.fit_threads import ENV_BLAS_THREADS, blas_threads_setting
    from ..ops.fit_threads import PARALLEL_MIN_ELEMENTS, user_set

    nets = 1 if not user_set() else threads
    ensembles = blas_threads_setting() if os.environ.get(ENV_BLAS_THREADS, "").strip() else nets
    said = [f"{what}: {threads_words(n)}" for what, n in ((f"a gpunn fit of a net under {PARALLEL_MIN_ELEMENTS:,} "
                                                             "parameters", nets), ("an Ensemble's", ensembles))
            if n not in (threads, 0)]
    return f" ({'; '.join(said)})" if said else ""


def blas_threads() -> int | None:
    p = numpy_blas_pool()
    return p.get("num_threads") if p else None


def blas_info() -> str:
    """The BLAS NumPy uses, as one line (threadpoolctl's view of it, numpy_blas_pool, when installed, else NumPy's build
    config)."""
    p = numpy_blas_pool()
    if p:
        return f"{p.get('internal_api')} {p.get('version')} ({threads_words(p.get('num_threads'))}, {p.get('architecture')})"
    try:
        cfg = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


# Over this share of the machine's CPU time taken by other processes during a configuration's rounds
# (Result.others_cpu), its rows' "% of GEMM" is marked (!): its base, one short product per call, is the figure
# other processes' time slices move most, and often in every round alike, which the repeats' spread cannot show.
BUSY_SHARE = 0.25


def busy(others_cpu) -> bool:
    """Whether other processes took over BUSY_SHARE of the machine's CPU time (False where it is not known: None
    from a JSON written before the field, or nan)."""
    return others_cpu is not None and others_cpu > BUSY_SHARE


# The machine's own speed. On a shared virtual machine the CPU itself runs at two speeds from second to second, with
# no other process in the guest (bench/RESULTS.md, "The sequential peer's two speeds, session 25"): a fixed
# pure-Python loop slowed by the same factor as the bench's fits, which moved issue 11's ratios 2.7x-3.4x, and
# OthersCpu cannot see it. So a fixed probe runs between the rounds (SpeedProbe), timed in the thread's CPU time
# (another process's turn on the core does not count: OthersCpu's part). Its time, 0.25 ms or 0.45 ms here: the
# fastest of PROBE_TRIES runs, so one interrupt does not count as a slow stretch, which lasts 0.1 s or more.
PROBE_STEPS, PROBE_TRIES = 5_000, 3
# Over this ratio of the slowest probe to the fastest in a configuration's rounds, its rows' samples/s are marked
# (~). Measured on the 2-core Zen 3 under other helpers' load (7 on 2 cores; 2026-12-01 07:25): within one of the
# two speeds 6 probes 0.3 s apart spread 1.06-1.27x (deciles), at most 1.34x; between the two, 1.7-1.9x.
SPEED_SPREAD = 1.5


def probe_loop(steps=PROBE_STEPS) -> int:
    """The probe's fixed work: ``steps`` multiply-adds in pure Python (no BLAS threads, no memory to speak of)."""
    total = 0
    for j in range(steps):
        total += j * j
    return total


def probe_seconds(tries=PROBE_TRIES) -> float:
    """Thread CPU seconds of the fastest of ``tries`` runs of probe_loop."""
    best = math.inf
    for _ in range(tries):
        start = time.thread_time()
        probe_loop()
        best = min(best, time.thread_time() - start)
    return best


class SpeedProbe:
    """Called between a configuration's rounds (runners.interleaved_rounds' ``between``), it times the fixed probe:
    ``ms`` holds each time in milliseconds, ``spread`` the slowest over the fastest (nan under two)."""

    def __init__(self):
        self.ms = []

    def __call__(self):
        self.ms.append(round(1e3 * probe_seconds(), 4))

    @property
    def spread(self) -> float:
        return max(self.ms) / min(self.ms) if len(self.ms) > 1 and min(self.ms) > 0 else math.nan


def speed_varied(spread) -> bool:
    """Whether the machine's speed probe varied by over SPEED_SPREAD in a configuration's rounds (False where it is
    not known: None from a JSON written before the field, or nan)."""
    return spread is not None and spread > SPEED_SPREAD


