"""NumPy's BLAS on one thread while gpunn fits a small net or an Ensemble on the CPU, the count put back at the end.

A small net (fewer than PARALLEL_MIN_ELEMENTS = 65,536 parameters; a 16-64-64-1 net at batch 128: 128x64x64,
262,144 multiply-adds a product) gains little from OpenBLAS's second thread: quiet, 2 threads 4-6% faster than 1 on
the 2-core Zen 3 of session 24. With another busy process on the machine each product waits for a descheduled worker
thread, and the fit runs 10-50x slower (bench/RESULTS.md, session 24). A medium net (64-256-256-1, 83k parameters,
batch 256) gains 20-66% from 2 threads quiet (220k and 190k samples/s against 133k and 158k on one, on the 2-core
Zen 3; bench/RESULTS.md, session 25), so the bound stays where the one-call step's is (raise it only where 2 threads
gain under 10%). Under load its 2 threads lose far more (on the 2-core Zen 4 at load 3.87-7.29 medium trained 3.7-33x
slower than on one; session 39), which is README's case for OPENBLAS_NUM_THREADS=1 on a shared machine: a count chosen
from the load at each fit was left undone (bench/RESULTS.md, session 39, says why). An Ensemble's products are many
small ones, and its members split over the cores instead (member_blas_threads: one BLAS thread, or
GPUNN_ENSEMBLE_BLAS_THREADS). One thread also gives
one thread's bits whatever the core count (two threads split a 128x64x64 product otherwise: its last bits differ),
with the one-call step (gpunn.ops.mlp_step) or without it alike.

The rule, the same for both: a library whose count the user set in a variable it reads (OpenBLAS:
OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS; MKL: MKL_NUM_THREADS, OMP_NUM_THREADS; BLIS: BLIS_NUM_THREADS,
OMP_NUM_THREADS) is left as it is, the others are set (MKL_NUM_THREADS is no count of OpenBLAS's: until session 40 any
of them left every library alone); GPUNN_ENSEMBLE_BLAS_THREADS, set, gives an Ensemble's count over it. A
threadpoolctl limit (or a data-parallel rank's share, gpunn.distributed.threads) is a ceiling: one thread stays under
it, and the limit comes back as the fit ends. Without threadpoolctl nothing is changed.

One mechanism for both, ~30 us a fit: threadpoolctl's controllers of the BLAS libraries loaded (every BLAS: OpenBLAS,
MKL, BLIS), from its cached controller (threadpoolctl 3.8+), which looks for the libraries again (~1 ms) only where a
module was imported since; with an older threadpoolctl gpunn keeps one by the same rule (_libraries).
threadpool_limits would look for them at every fit: ~1 ms (what an Ensemble's fit paid before session 25). The
count is the process's, so fits that overlap (on several Python threads, or one inside another's callback) share
it: the first sets it, the last to end puts it back, and a later fit's own count (GPUNN_ENSEMBLE_BLAS_THREADS)
waits for a time no other is running. A library whose count was changed while the fit ran (by another thread's
threadpoolctl limit, say) is left at that count. A child forked while fits run keeps those of the thread that forked;
where that thread ran none, the child's counts are put back as it starts (_forked). Should threadpoolctl fail (a
library it cannot read or set), the fit trains on the counts as they are, with a RuntimeWarning (said_as_a_warning).
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import warnings

import numpy

from .. import environment
from ..forksafe import ForkSafeLock
from . import gemm
from .cpu import PARALLEL_MIN_ELEMENTS, SLURM_CPUS, affinity_cores, slurm_cpus

# Variables in which a user sets a BLAS library's thread count (OpenBLAS reads the first three; MKL, BLIS and OpenMP
# builds read OMP_NUM_THREADS too).
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
# Those each library reads (by threadpoolctl's internal_api), first the one it takes first
_READ_BY = {"openblas": BLAS_ENV[:3], "mkl": ("MKL_NUM_THREADS", "OMP_NUM_THREADS"),
            "blis": ("BLIS_NUM_THREADS", "OMP_NUM_THREADS")}

_lock = ForkSafeLock()
_holders = {}  # thread ident -> its contexts inside blas_threads's count
_changed = []  # [(library, its count before, the count set)] while they are: the last one out puts them back
_made = None  # (threadpoolctl's controller, len(sys.modules) as it was made) where it has no cached one (before 3.8)
_reached = None  # the count gpunn last set on every BLAS library, read back from each; None where one did not take it
_capped = None  # (count, the largest before) where a command held NumPy's BLAS to Slurm's --cpus-per-task
_holding = False  # whether a command called cap_at_slurm_cpus: a library loaded later is held too (_gemm_loaded)


def _libraries() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded, or []: from its cached controller (3.8+: ~2 us), which
    looks for them again only where a module was imported since; an older threadpoolctl's made by the same rule here
    (made once, it never saw a BLAS loaded after the first fit: SciPy's, torch's MKL)."""
    global _made
    try:
        import threadpoolctl
    except ImportError:
        return []
    cached = getattr(threadpoolctl, "get_cached_controller", None)
    if cached is not None:
        controller = cached()
    else:
        if _made is None or _made[1] != len(sys.modules):
            _made = (threadpoolctl.ThreadpoolController(), len(sys.modules))
        controller = _made[0]
    return controller.select(user_api="blas").lib_controllers


def _let_go():
    """threadpoolctl 3.8+ lets one Python thread at a time set OpenBLAS's (process-wide) count, the first to set it,
    until that thread lets go (its threadpool_limits contexts do as they end): after a change of ours, let go, so
    that the fit that ends last, on whichever thread, can put the count back."""
    try:
        import threadpoolctl
    except ImportError:
        return
    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None and getattr(threadpoolctl, "CONTROLLING_THREAD_OWNERSHIP", None) is not None and \
            threadpoolctl.CONTROLLING_THREAD_OWNERSHIP.count <= 0:  # no threadpool_limits of this thread's active
        clear()


@contextlib.contextmanager
def said_as_a_warning(doing: str):
    """threadpoolctl failing while gpunn does ``doing`` (a library it cannot read or set) said in a RuntimeWarning: a
    fit failed with threadpoolctl's traceback, for a thread count that changes its speed alone."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any of threadpoolctl's: the fit trains on
        warnings.warn(f"gpunn could not {doing} (threadpoolctl: {type(exc).__name__}: {exc}); the fit trains on, its "
                      "BLAS thread counts as they are", RuntimeWarning, stacklevel=2)


def _set(threads: int, forced: bool) -> list:
    """Each BLAS library on ``threads`` threads, but one whose count the user set in a variable it reads (unless
    ``forced``): [(library, count before, threads)] for those that changed (a library another thread's threadpoolctl
    limit holds does not), those changed before a failure too (put back at the end)."""
    global _reached
    changed, _reached = [], None
    with said_as_a_warning(f"set NumPy's BLAS to {threads} thread{'s' if threads != 1 else ''} for the fit"):
        libraries = _libraries() if forced else libraries_to_set()
        for lib in libraries:
            before = lib.get_num_threads()
            if before != threads:
                lib.set_num_threads(threads)
                if lib.get_num_threads() == threads:
                    changed.append((lib, before, threads))
        if libraries and all(lib.get_num_threads() == threads for lib in libraries):
            _reached = threads
        _let_go()
    return changed


def _put_back(changed):
    """The counts before _set, where a library is still at the count it set (one changed since is someone else's)."""
    for lib, before, threads in changed:
        if lib.get_num_threads() == threads:
            lib.set_num_threads(before)
    _let_go()


def user_set(library=None) -> bool:
    """Whether the environment sets the thread count of ``library`` (a threadpoolctl controller) in a variable that
    library reads (_READ_BY: MKL_NUM_THREADS is no count of OpenBLAS's); None: NumPy's BLAS (the one loaded from
    NumPy's folder, as gpunn bench's setup line: MKL loaded by GPUNN_GEMM, or SciPy's OpenBLAS, may come first in
    threadpoolctl's list; else the first), or without threadpoolctl to name it, the one NumPy's build configuration
    names (_count_variable)."""
    if library is None:
        try:
            libraries = _libraries()
        except Exception:  # noqa: BLE001 - threadpoolctl cannot read them (a fit warns): any variable, as without it
            libraries = []
        library = _numpys(libraries)
    return _count_variable(library) is not None


def _numpys(libraries: list):
    """Of threadpoolctl's BLAS controllers, NumPy's: the one loaded from NumPy's folder (MKL loaded by GPUNN_GEMM, or
    SciPy's OpenBLAS, may come first in threadpoolctl's list), else the first; None where there is none."""
    numpys = [lib for lib in libraries if "numpy" in str(getattr(lib, "filepath", "")).lower()]
    return (numpys or libraries or [None])[0]


def _every_count_set() -> bool:
    """Whether the user set the count of every BLAS library loaded, each in a variable it reads (none loaded, or no
    threadpoolctl to name them: NumPy's, named by its build configuration; threadpoolctl failing to read them: False,
    the fit warns)."""
    try:
        libraries = _libraries()
    except Exception:  # noqa: BLE001 - (the fit's _set says so)
        return False
    return all(user_set(lib) for lib in libraries) if libraries else user_set()


def libraries_to_set() -> list:
    """The BLAS libraries loaded (threadpoolctl's controllers) whose count the user set in no variable they read: those
    a small net's fit, an Ensemble's and a data-parallel rank's share put on their own count. MKL_NUM_THREADS=1 kept
    NumPy's OpenBLAS on every core for all three (as it did under Slurm before session 40)."""
    return [lib for lib in _libraries() if not user_set(lib)]


def numpys_count() -> tuple[int | None, str]:
    """(NumPy's BLAS thread count now, as threadpoolctl reads it, or None without threadpoolctl or where it cannot
    read it; the variable that library reads its count from first, OPENBLAS_NUM_THREADS for OpenBLAS): what gpunn
    train's note of a busy machine names."""
    try:
        library = _numpys(_libraries())
        threads = library.get_num_threads() if library is not None else None
    except Exception:  # noqa: BLE001 - threadpoolctl cannot read it (a fit says so): no count to name
        library, threads = None, None
    api = getattr(library, "internal_api", None) if library is not None else _built_with()
    return threads, _READ_BY.get(api, BLAS_ENV)[0]


def products_count(ops) -> tuple[int | None, str, str]:
    """(thread count, the variable it is read from first, the library in words) of the BLAS that ran the products of
    a fit on ``ops`` (a model's CPU ops): MKL's where GPUNN_GEMM sent any shape to it (gpunn.ops.gemm's chooser: mkl,
    or auto's choice), which reads MKL_NUM_THREADS (gpunn train's note of a busy machine named NumPy's count and
    OPENBLAS_NUM_THREADS, which leave MKL's threads as they are); else NumPy's BLAS's (numpys_count)."""
    chooser = getattr(ops, "gemm", None)
    if chooser is not None and "mkl" in chooser.choices.values():
        return chooser._impl["mkl"].threads(), _READ_BY["mkl"][0], "MKL"
    return (*numpys_count(), "NumPy's BLAS")


def _count_variable(library=None) -> str | None:
    """The variable of the environment that sets the thread count of ``library`` (a threadpoolctl controller; None:
    NumPy's BLAS as its build configuration names it, _built_with), of those it reads (_READ_BY) the first it takes;
    None where none is set. A library of no name in _READ_BY (Accelerate; a build configuration that names none) reads
    any BLAS_ENV variable."""
    api = getattr(library, "internal_api", None) if library is not None else _built_with()
    names = _READ_BY.get(api, BLAS_ENV)
    return next((name for name in names if os.environ.get(name, "").strip()), None)


@functools.lru_cache(maxsize=None)
def _built_with() -> str | None:
    """NumPy's BLAS as its build configuration names it, in threadpoolctl's internal_api words (openblas for NumPy's
    wheels' scipy-openblas; mkl; blis), for a process where threadpoolctl cannot name the library loaded: without it
    MKL_NUM_THREADS=1 was said to set the count of NumPy's OpenBLAS (gpunn info: 'threads set by
    MKL_NUM_THREADS=1'), which ran on every core. None where it names none of them, or NumPy cannot say."""
    try:
        name = str(numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]).lower()
    except Exception:  # noqa: BLE001 - an older NumPy without mode="dicts", or a configuration without the entry
        return None
    return next((api for api in _READ_BY if api in name), None)


def cap_at_slurm_cpus() -> None:
    """For a gpunn command (gpunn.cli, as it starts): each BLAS library on at most SLURM_CPUS_PER_TASK threads, where
    the environment sets no count in a variable it reads (MKL_NUM_THREADS is no count of OpenBLAS's). OpenBLAS starts
    as many threads as the process may run on cores: where Slurm binds a task to its --cpus-per-task cores
    (task/affinity, a cgroup's cpuset) that is the job's count already, but where it does not (task/none, Slurm's
    default) it is every core of the node, which the job shares with others. Kept for the process: its fits put their
    own counts back to it. Without threadpoolctl nothing changes (``gpunn info``'s blas line says so)."""
    global _capped, _holding
    slurm = slurm_cpus()
    if slurm is None:
        return
    _holding = True
    try:
        for lib in libraries_to_set():
            before = lib.get_num_threads()
            if before is not None and before > slurm:
                lib.set_num_threads(slurm)
                _capped = (slurm, max(before, _capped[1] if _capped else 0))
        _let_go()
    except Exception as exc:  # noqa: BLE001 - any of threadpoolctl's: the command runs on the counts as they are
        warnings.warn(f"gpunn could not hold NumPy's BLAS to {SLURM_CPUS}={slurm} threads (threadpoolctl: "
                      f"{type(exc).__name__}: {exc}); set OPENBLAS_NUM_THREADS={slurm}", RuntimeWarning, stacklevel=2)


def _gemm_loaded() -> None:
    """gpunn.ops.gemm loaded a library (gemm.LOADED_HOOKS): MKL, loaded with ctypes, imports no module, so
    threadpoolctl's cached controller (and _made) would not list it until one is (a small fit left it on its count);
    where a command held the BLAS to Slurm's count (cap_at_slurm_cpus), MKL is held too: loaded after the cap
    (GPUNN_GEMM=mkl or auto, at the first product), its large products ran on every core of the node (gpunn info
    under SLURM_CPUS_PER_TASK=1 on 2 cores: 'mkl 2026.2 (2 threads)')."""
    global _made
    _made = None
    try:
        import threadpoolctl
    except ImportError:
        return
    reset = getattr(threadpoolctl, "reset_cached_controller", None)
    if reset is not None:
        reset()
    if _holding:
        cap_at_slurm_cpus()


gemm.LOADED_HOOKS.append(_gemm_loaded)


def count_source() -> str:
    """Where NumPy's BLAS thread count comes from, in words (``gpunn info``'s blas line): a variable the user set
    that the library reads (BLAS_ENV: any of them without threadpoolctl to name it), Slurm's --cpus-per-task
    (cap_at_slurm_cpus), or the library's own: the cores the process may run on (where that is more than Slurm's
    count and threadpoolctl is not installed, what to do)."""
    libraries = _libraries()
    named = _count_variable(_numpys(libraries))
    if named is not None:
        return f"threads set by {named}={os.environ[named].strip()}"
    if _capped is not None:
        return f"threads held to {SLURM_CPUS}={_capped[0]} (the library started {_capped[1]})"
    slurm, cores = slurm_cpus(), affinity_cores()
    if slurm is not None and slurm < cores and not libraries:
        return (f"threads: the library's own count, up to the {cores} cores the process may run on, not {SLURM_CPUS}="
                f"{slurm}: install threadpoolctl (gpunn[cpu]) or export OPENBLAS_NUM_THREADS={slurm}")
    return "threads: the library's own count, the cores the process may run on"


def _small(model) -> bool:
    """Whether ``model`` is one net (not an ensemble: member_blas_threads sets its count) of host parameters,
    fewer than PARALLEL_MIN_ELEMENTS."""
    params = getattr(model, "params", None)
    return (isinstance(params, numpy.ndarray) and params.size < PARALLEL_MIN_ELEMENTS
            and not hasattr(model, "n_models"))


def asks_one_thread(model) -> bool:
    """Whether a fit of ``model`` asks NumPy's BLAS for one thread: ``model`` small and no count set in a variable
    that library reads (user_set; known before the fit: gpunn bench gives its torch peer the same count;
    one_thread_for says, after the fit, whether every library took it)."""
    return _small(model) and not user_set()


def one_thread_for(model) -> bool:
    """Whether the last fit of a model like ``model`` ran NumPy's BLAS on one thread (fit_threads): ``model`` small,
    no count set in a variable NumPy's BLAS reads, and every BLAS library gpunn set at one thread, as read back from
    each (gpunn bench's note, said after the fit). Not where threadpoolctl failed to read or set a library, nor where
    one kept its count (a setter that does nothing; another thread's threadpoolctl limit): that fit ran on the counts
    as they were. False before any such fit."""
    return asks_one_thread(model) and _reached == 1


@contextlib.contextmanager
def blas_threads(threads: int = 1, *, forced: bool = False):
    """While it is active: the BLAS libraries on ``threads`` threads, but one whose count the environment sets in a
    variable it reads (user_set; ``forced``: set all the same); shared with the contexts active on other threads (see
    the module), and put back by the last of them to end (also on an error or an interruption)."""
    global _changed
    me = threading.get_ident()
    with _lock.current:
        joined = bool(_holders) or forced or not _every_count_set()
        if joined:
            if not _holders:
                _changed = _set(threads, forced)
            _holders[me] = _holders.get(me, 0) + 1
    if not joined:
        yield
        return
    try:
        yield
    finally:
        with _lock.current:
            _holders[me] -= 1
            if not _holders[me]:
                del _holders[me]
            if not _holders:
                changed, _changed = _changed, []
                with said_as_a_warning("put NumPy's BLAS thread count back after the fit"):
                    _put_back(changed)


def _forked() -> None:
    """In a forked child, only the thread that forked goes on: the other threads' contexts never end there, and a
    count one of them set stayed in the child for good (its later fits, a larger net's too, on one thread). Their
    holds are dropped, and where none is left the counts are put back at once."""
    global _holders, _changed
    me = threading.get_ident()
    _holders = {me: _holders[me]} if me in _holders else {}
    if not _holders and _changed:
        changed, _changed = _changed, []
        with contextlib.suppress(Exception):  # (a library that cannot be set in the child keeps its count)
            _put_back(changed)


os.register_at_fork(after_in_child=_forked)


def fit_threads(model):
    """The context a fit of ``model`` runs in (gpunn.training.loop.train): one BLAS thread where the model is small
    (_small), for each BLAS library whose count the user set in no variable it reads (see the module)."""
    return blas_threads(1) if _small(model) else contextlib.nullcontext()


# OpenBLAS runs a product on the calling thread, whatever its count, where it is too small to split: a matrix
# product (gemm) of at most 65,536 x GEMM_MULTITHREAD_THRESHOLD (4 by default) multiply-adds (interface/gemm.c), and
# NumPy's matmul of one row or one column, a matrix-vector product (gemv) or a dot product, of under 2,304 x 4
# (gemv.c; dot.c's bound, 10,000, is above it). Measured on NumPy 2.4's OpenBLAS 0.3.31, 2 threads against 1: a
# float32 (rows x a)(a x b) took other bits from rows x a x b = 524,288 (two threads' share of 65,536 x 4 each),
# never below; a 1 x 16,384 dot product in float64 from 16,384.
GEMM_SPLIT_MIN = 65536 * 4
GEMV_SPLIT_MIN = 2304 * 4


def _could_split(model, rows: int) -> bool:
    """Whether NumPy's BLAS could split a product of a pass of ``model`` over ``rows`` rows: each layer's (rows x a)
    (a x b) forward, and the gradients' (a x rows)(rows x b) and (rows x b)(b x a), rows x a x b multiply-adds each;
    a matrix-vector one where rows, a or b is 1. OpenBLAS's gemm bound holds where NumPy's OpenBLAS makes every
    product (GPUNN_GEMM's default); another library's (MKL's: gpunn.ops.gemm) is taken at the vector bound."""
    sizes, ops = model.layer_sizes, getattr(model, "ops", None)
    openblas = getattr(ops, "_numpy_only", False) and _built_with() == "openblas"
    return any(rows * a * b >= (GEMM_SPLIT_MIN if openblas and 1 not in (rows, a, b) else GEMV_SPLIT_MIN)
               for a, b in zip(sizes, sizes[1:]))


def inference_threads(model, rows=None):
    """The context a pass of ``model`` over ``rows`` rows outside a fit runs in (predict, evaluate, loss,
    loss_and_gradients, and gpunn predict's): the BLAS count its fit runs with, one thread for a small net
    (fit_threads) and an Ensemble's count (member_blas_threads), so that ``evaluate`` on the validation rows gives the
    bits the fit's validation logged, and a small net's predictions are one thread's whatever the machine's cores. On
    OpenBLAS's two threads they differed in the last bits: a 32-64-64-1 net's val_loss 2.462753380911569 in its
    history, 2.462753390684636 from evaluate on the same rows. Where no product of ``rows`` rows could be split
    (_could_split) nothing is set: a predict of a few rows does not pay threadpoolctl's set and put back (~30 us
    quiet, 200 us under load: a 32-64-64-1 net's predict of 3-63 rows took 350 us for 130)."""
    if rows is not None and not _could_split(model, rows):
        return contextlib.nullcontext()
    return member_blas_threads(model.xp) if hasattr(model, "n_models") else fit_threads(model)


ENV_BLAS_THREADS = "GPUNN_ENSEMBLE_BLAS_THREADS"


def blas_threads_setting() -> int:
    """GPUNN_ENSEMBLE_BLAS_THREADS: a whole number, 0 or more (0: leave NumPy's BLAS alone), 1 where unset or blank."""
    return environment.whole(ENV_BLAS_THREADS, 1, 0, "a whole number of BLAS threads, 0 or more (0: NumPy's BLAS "
                                                     "as it is; unset: 1)")


def member_blas_threads(xp):
    """A context in which NumPy's BLAS runs on one thread while an ensemble trains on the CPU: a count set in a
    variable the library reads (OPENBLAS_NUM_THREADS for OpenBLAS, not MKL_NUM_THREADS: user_set) is left as it is, and
    GPUNN_ENSEMBLE_BLAS_THREADS, set, gives the count over it (0 leaves the BLAS alone). Through the mechanism a small
    net's fit uses (blas_threads: threadpoolctl's cached controller, the count shared with
    fits running beside it; a no-op without threadpoolctl). On a GPU the variable is not read, so a bad value is not
    refused there: the library reads each variable only where it acts (so is GPUNN_FLUSH_DENORMALS read on the CPU
    alone); gpunn's commands refuse it anywhere as they start.

    One thread, because the batched products of an ensemble are many small GEMMs (K of batch x n x n):
    OpenBLAS's threads cost more per product than they give. Measured on the project's 2-core machine
    under load 15-19 (bench/RESULTS.md): a K=64 small-net step 20x faster with one BLAS thread than
    with two. To use both cores, split the members instead (GPUNN_CPU_THREADS=2, CpuEnsembleOps).
    """
    if xp is not numpy:  # a GPU's ensemble: NumPy's BLAS does not train it, so the variable is not read (nor refused)
        return contextlib.nullcontext()
    threads = blas_threads_setting()
    if threads == 0:
        return contextlib.nullcontext()
    return blas_threads(threads, forced=bool(os.environ.get(ENV_BLAS_THREADS, "").strip()))
