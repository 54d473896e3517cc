"""The CPU's matrix products through the fastest library the machine has, chosen by measurement.

Candidates, each used only where it is installed:
- ``numpy``: ``numpy.matmul`` (the BLAS NumPy was built with: OpenBLAS in the PyPI wheels). Always
  there, and the fallback for everything the others do not take.
- ``blis``: the ``blis`` package (Thinc's CPU GEMM; BLIS with kernels for each x86 generation,
  picked at run time), float32 only (its float64 entry point mishandles transposes), run on the
  calling thread and split across gpunn's CPU threads by rows of the output (the package's BLIS is
  single-threaded).
- ``mkl``: Intel's MKL from the ``mkl`` package, called through its CBLAS ``cblas_?gemm`` (``cblas_?gemv`` for a
  matrix times a vector) with ctypes (no Python binding is needed), with the threads it picks itself but for
  products under ``_Mkl.ONE_THREAD_MACS`` multiply-adds, which run on the calling thread alone (a gpunn command
  under Slurm holds it to ``--cpus-per-task``, as NumPy's BLAS: LOADED_HOOKS, gpunn.ops.fit_threads).

``GemmChooser.matmul(a, b, out)`` keys a product by (dtype, m, k, n, a transposed, b transposed),
times every candidate on the real operands the first time it sees the key (single calls, the
libraries alternating, 3-15 rounds, the median kept), and from then on calls the winner. A
candidate must beat NumPy by ``MARGIN`` to be chosen, so measurement noise does not move a shape off NumPy for nothing. Every
candidate computes the same product in float32 / float64 (sums in a different order: results
agree with NumPy to rounding, tests/test_gemm.py).

``GPUNN_GEMM`` = ``numpy`` (default: NumPy alone) | ``auto`` (choose per shape among everything
installed) | ``blis`` | ``mkl`` (force one; shapes it cannot take fall back to NumPy) | a comma list
(the candidates to choose among).

Why NumPy is the default:
- On the project's machine (2-core AMD EPYC, Zen 5, OpenBLAS with its Haswell kernels) NumPy is the
  fastest library on every shape of a training step (quiet machine, float32: 1024³ OpenBLAS 255, MKL
  215, BLIS 83 GFLOP/s; 128x64x64 173 / 90 / 35), so ``auto`` lands on NumPy anyway (bench/RESULTS.md); on the
  Zen 3 machine of session 24, one thread, a 16-64-64-1 step's 8 products took 130 us with OpenBLAS, 129 with MKL;
  on the Zen 4 of session 38 (family 25 model 17) a small step took 57 us with OpenBLAS, 104 with MKL, 176 with BLIS,
  a medium step 1372 / 1388 / 3737 us: MKL 2-3x slower on small products there.
- The choice is a timing, so two processes may choose differently for a near-tie and round their sums
  differently: with one fixed library a run is reproducible to the bit, and a checkpoint resumed in a
  new process continues exactly. Set ``GPUNN_GEMM=auto`` (or ``mkl``) where another library is faster,
  as MKL may be on Intel CPUs only (on session 32's 2-core Xeon, timed on two threads, it was not by the margin).
An earlier measurement blamed mixing libraries within one step for a 2-3x slower medium step. The
cause was MKL's OpenMP workers spinning for 200 ms after every call (KMP_BLOCKTIME), holding the
cores the next OpenBLAS product needed; gpunn now sets KMP_BLOCKTIME=0 before loading MKL, and the
per-shape choice runs about as fast as NumPy alone here (3 alternating runs each, 2026-11-28: medium
0.27-0.40M samples/s against 0.27-0.41M, small 1.96-2.02M against 2.11-2.13M; bench/RESULTS.md,
"Quiet-machine runs for issues 8 and 9").
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import statistics
import sys
import time

import numpy

from .. import environment
from ..forksafe import ForkSafeLock
from .base import GEMM_INT_MAX

ENV = "GPUNN_GEMM"
DEFAULT = "numpy"  # the per-shape choice is opt-in (GPUNN_GEMM=auto): see the module docstring
LIBRARIES = ("numpy", "blis", "mkl")
MARGIN = 1.05  # a candidate must be this much faster than NumPy to be chosen
_FLOATS = (numpy.dtype("float32"), numpy.dtype("float64"))


# ---- the candidates ----------------------------------------------------------------------------

def _operand(x):
    """(C-contiguous base, transposed?) for a 2-D operand, or None when it is neither x nor x.T of one."""
    if x.flags.c_contiguous:
        return x, False
    if x.flags.f_contiguous and x.ndim == 2:
        return x.T, True
    return None


class _Blis:
    name = "blis"

    def __init__(self):
        from blis import about, py

        self._gemm = py.gemm
        self.version = about.__version__

    def takes(self, a, b, out) -> bool:
        return (a.dtype == b.dtype == out.dtype == numpy.float32 and out.flags.c_contiguous
                and _operand(a) is not None and _operand(b) is not None)

    def __call__(self, a, b, out, split=None):
        (A, ta), (B, tb) = _operand(a), _operand(b)
        m = out.shape[0]
        if split is None or m < 256:
            self._gemm(A, B, out=out, trans1=ta, trans2=tb, beta=0.0)
            return out

        def rows(lo, hi):
            # out[lo:hi] = a[lo:hi] @ b: rows of a are columns of A when a is transposed
            if ta:
                part = A[:, lo:hi]
                if not part.flags.c_contiguous:
                    part = numpy.ascontiguousarray(part)  # a (k x rows) copy: small next to the product
                self._gemm(part, B, out=out[lo:hi], trans1=True, trans2=tb, beta=0.0)
            else:
                self._gemm(A[lo:hi], B, out=out[lo:hi], trans1=False, trans2=tb, beta=0.0)

        split(rows, m)
        return out


class _Mkl:
    name = "mkl"
    _ROW_MAJOR, _COL_MAJOR, _NO_TRANS, _TRANS = 101, 102, 111, 112
    # A product under this many multiply-adds runs on one MKL thread. With KMP_BLOCKTIME=0 (below) MKL wakes its
    # sleeping workers at every call: about 160 us a product on the 2-core Zen 3 EPYC at load 1.2-1.5 (a 16-64-64-1
    # step at batch 128 took 1.42 ms on MKL's 2 threads, 0.28 ms on one, for its 7 MKL products). Splitting saves
    # half a product's time, so it pays from about 2 x 160 us of one-thread work, ~6M multiply-adds at ~40 GFLOP/s
    # a core; 2^22 is the rule's cautious end (where waking costs less, as on a quiet machine, splitting pays sooner).
    ONE_THREAD_MACS = 1 << 22

    def __init__(self):
        # Intel OpenMP's workers spin for KMP_BLOCKTIME (200 ms by default) after each parallel call,
        # holding the cores that OpenBLAS's threads, gpunn's pool and the next product need. On the
        # 2-core EPYC, merely timing MKL in the same process made medium's NumPy-only step 1.6x slower
        # (gpunn bench medium: 1.39x the naive peer with KMP_BLOCKTIME=0, 0.88x without). Read when
        # the OpenMP runtime starts, so it must be set before the library is loaded; a user's value wins.
        os.environ.setdefault("KMP_BLOCKTIME", "0")
        lib = None
        names = ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"]
        for name in names:  # a system install, or the one on the loader's path
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                pass
        if lib is None:  # the `mkl` wheel puts it in <prefix>/lib, which the loader does not search
            for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
                for path in sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*"))):
                    try:
                        lib = ctypes.CDLL(path)
                        break
                    except OSError:
                        pass
                if lib is not None:
                    break
        if lib is None:
            raise ImportError("MKL (libmkl_rt) not found; pip install mkl")
        self._lib = lib
        c_int, ptr = ctypes.c_int, ctypes.c_void_p
        for fn, real in ((lib.cblas_sgemm, ctypes.c_float), (lib.cblas_dgemm, ctypes.c_double)):
            fn.restype = None
            fn.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, real, ptr, c_int, ptr, c_int, real, ptr, c_int]
        for fn, real in ((lib.cblas_sgemv, ctypes.c_float), (lib.cblas_dgemv, ctypes.c_double)):
            fn.restype = None
            fn.argtypes = [c_int, c_int, c_int, c_int, real, ptr, c_int, ptr, c_int, real, ptr, c_int]
        try:  # the calling thread's thread count, for small products (the C API's; mkl_set_num_threads_local
            # is the Fortran one, which takes a pointer)
            self.local_threads = lib.MKL_Set_Num_Threads_Local
            self.local_threads.argtypes, self.local_threads.restype = [c_int], c_int
        except AttributeError:  # pragma: no cover - an MKL older than 10.3
            self.local_threads = None
        self.version = self._version()

    def _version(self) -> str:
        try:
            buf = ctypes.create_string_buffer(256)
            self._lib.mkl_get_version_string(buf, 256)
            text = buf.value.decode(errors="replace")  # "Intel(R) oneAPI Math Kernel Library Version 2026.2-Product Build ..."
            return text.split("Version", 1)[-1].split("-Product")[0].strip()
        except (AttributeError, OSError):
            return ""

    def threads(self) -> int | None:
        try:
            return int(self._lib.MKL_Get_Max_Threads())
        except (AttributeError, OSError):
            return None

    def takes(self, a, b, out) -> bool:
        return (a.dtype == b.dtype == out.dtype and a.dtype in _FLOATS and out.flags.c_contiguous
                and _operand(a) is not None and _operand(b) is not None)

    def __call__(self, a, b, out, split=None):
        m, n = out.shape
        k = a.shape[1]
        if m * n * k >= self.ONE_THREAD_MACS or self.local_threads is None:
            return self._product(a, b, out, m, n, k)
        before = self.local_threads(1)  # (one_thread's, inline: a generator's context costs ~2 us, per product here)
        try:
            return self._product(a, b, out, m, n, k)
        finally:
            self.local_threads(before)  # 0: the process's setting again

    @contextlib.contextmanager
    def one_thread(self):
        """MKL on the calling thread alone (its thread-local count), the count before put back as it ends (0: the
        process's setting again). Where ``local_threads`` is bound. For a whole step or a probe; a single product
        (``__call__``) sets it inline."""
        before = self.local_threads(1)
        try:
            yield
        finally:
            self.local_threads(before)

    def _product(self, a, b, out, m, n, k):
        (A, ta), (B, tb) = _operand(a), _operand(b)
        single = out.dtype == numpy.float32
        if n == 1 and k >= 1:  # matrix @ vector: gemv, in the call forms of the one-call step (gpunn.ops.cblas)
            fn = self._lib.cblas_sgemv if single else self._lib.cblas_dgemv
            if ta:  # A is (k, m): out = A^T b
                fn(self._ROW_MAJOR, self._TRANS, k, m, 1.0, A.ctypes.data, max(1, m), B.ctypes.data, 1, 0.0,
                   out.ctypes.data, 1)
            else:  # A is (m, k), read as the column-major (k, m) matrix it is, transposed (numpy.matmul's form)
                fn(self._COL_MAJOR, self._TRANS, k, m, 1.0, A.ctypes.data, k, B.ctypes.data, 1, 0.0,
                   out.ctypes.data, 1)
            return out
        fn = self._lib.cblas_sgemm if single else self._lib.cblas_dgemm
        fn(self._ROW_MAJOR, self._TRANS if ta else self._NO_TRANS, self._TRANS if tb else self._NO_TRANS,
           m, n, k, 1.0, A.ctypes.data, max(1, A.shape[1]), B.ctypes.data, max(1, B.shape[1]), 0.0,
           out.ctypes.data, max(1, n))
        return out


class _Numpy:
    name = "numpy"
    version = numpy.__version__

    def takes(self, a, b, out) -> bool:
        return True

    def __call__(self, a, b, out, split=None):
        return numpy.matmul(a, b, out=out)


_LOADED: dict = {}
_LOAD_LOCK = ForkSafeLock()  # a child forked while another thread loaded a library gets a new one
# Called, with no argument, after a library is loaded: gpunn.ops.fit_threads's, so that threadpoolctl sees MKL (loaded
# with ctypes, no module imported: its cached controller looks for libraries again only after an import) and a
# command held to Slurm's --cpus-per-task holds MKL too (loaded after the cap, it ran on every core of the node)
LOADED_HOOKS: list = []


def library(name: str):
    """The candidate ``name`` (loaded once), or None where it is not installed."""
    with _LOAD_LOCK.current:
        loaded = name not in _LOADED
        if loaded:
            try:
                _LOADED[name] = {"numpy": _Numpy, "blis": _Blis, "mkl": _Mkl}[name]()
            except (ImportError, OSError, AttributeError):
                _LOADED[name] = None
        lib = _LOADED[name]
    if loaded and lib is not None and name != "numpy":
        for hook in LOADED_HOOKS:
            hook()
    return lib


def available() -> list:
    """Names of the candidates installed here (numpy first)."""
    return [n for n in LIBRARIES if library(n) is not None]


def requested() -> tuple:
    """(the candidates GPUNN_GEMM allows, in LIBRARIES order with numpy always in as the fallback,
    whether it forces one library)."""
    text = (environment.text(ENV) or DEFAULT).lower()
    if text == "auto":
        names = list(LIBRARIES)
    else:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in names if t not in LIBRARIES]
        if unknown or not names:
            raise environment.refusal(ENV, f"auto, one of {', '.join(LIBRARIES)}, or a comma list of them (unknown: "
                                           f"{', '.join(unknown) or 'no name'}; unset: {DEFAULT})")
    return [n for n in LIBRARIES if n in names or n == "numpy"], (text != "auto" and len(names) == 1)


# ---- the choice ---------------------------------------------------------------------------------

def shape_key(a, b) -> tuple:
    """What a choice is cached by: (dtype, m, k, n, a transposed, b transposed)."""
    # dtype.char, not dtype.name: .name costs microseconds a call, paid on every product of every step
    return (_DTYPE_NAMES.get(a.dtype.char) or a.dtype.name, a.shape[0], a.shape[1], b.shape[1],
            not a.flags.c_contiguous, not b.flags.c_contiguous)


_DTYPE_NAMES = {"f": "float32", "d": "float64"}


def describe_key(key) -> str:
    dtype, m, k, n, ta, tb = key
    return f"{m}x{k}{'ᵀ' if ta else ''}·{k}x{n}{'ᵀ' if tb else ''} {dtype}"


class GemmChooser:
    """out = a @ b by the fastest installed library for the shape, measured on first use and cached.

    ``split(fn, n)`` (optional) runs fn(lo, hi) over [0, n) on gpunn's CPU threads (for BLIS).
    """

    def __init__(self, split=None, candidates=None):
        names, forced = requested() if candidates is None else (list(candidates), len(candidates) == 1)
        self.libraries = [lib for lib in (library(n) for n in names) if lib is not None]
        if not any(lib.name == "numpy" for lib in self.libraries):
            self.libraries.insert(0, library("numpy"))
        self.forced = forced
        self.split = split
        self.choices: dict = {}  # key -> library name
        self.rates: dict = {}  # key -> {library name: GFLOP/s measured at the choice}
        self._impl = {lib.name: lib for lib in self.libraries}

    def matmul(self, a, b, out):
        if max(a.shape + b.shape[1:]) > GEMM_INT_MAX:  # MKL's and BLIS's dimensions are C ints (ctypes wraps
            return numpy.matmul(a, b, out=out)  # them unchecked); NumPy's matmul takes any size
        key = shape_key(a, b)
        name = self.choices.get(key)
        if name is None:
            name = self._choose(key, a, b, out)
        lib = self._impl[name]
        if name != "numpy" and not lib.takes(a, b, out):
            return numpy.matmul(a, b, out=out)
        return lib(a, b, out, self.split)

    def _choose(self, key, a, b, out) -> str:
        takers = [lib for lib in self.libraries if lib.takes(a, b, out)]
        if self.forced:
            forced = [lib for lib in takers if lib.name != "numpy"]
            name = forced[0].name if forced else "numpy"
            self.choices[key] = name
            return name
        if len(takers) == 1:
            self.choices[key] = takers[0].name
            return takers[0].name
        flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
        times = {lib.name: [] for lib in takers}
        for lib in takers:  # warm-up: first calls load code, start thread pools, touch memory
            lib(a, b, out, self.split)
        # One product per library per round, the libraries alternating (in a rotating order): in a
        # training step each product comes after other work, so a library's worker threads are not
        # still spinning from its previous call. Timing back-to-back calls of one library hides the
        # cost of waking them, which favoured multi-threaded BLAS on a busy machine.
        once = max(1e-6, self._time(takers[0], a, b, out, 1))
        rounds = 15 if once < 1e-3 else 7 if once < 5e-3 else 3  # the choice costs well under a second
        for r in range(rounds):
            for lib in takers[r % len(takers):] + takers[:r % len(takers)]:
                times[lib.name].append(self._time(lib, a, b, out, 1))
        med = {n: statistics.median(t) for n, t in times.items()}
        best = min(med, key=med.get)
        if best != "numpy" and med[best] * MARGIN > med["numpy"]:
            best = "numpy"
        self.choices[key] = best
        self.rates[key] = {n: flops / t / 1e9 for n, t in med.items()}
        return best

    def _time(self, lib, a, b, out, calls) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            lib(a, b, out, self.split)
        return time.perf_counter() - t0

    def summary(self) -> str:
        """Which library each measured shape went to, e.g. 'numpy 3 shapes, blis 2 (1024x1024·1024x1024 ...)'."""
        if not self.choices:
            return "no products yet"
        by = {}
        for key, name in self.choices.items():
            by.setdefault(name, []).append(key)
        parts = []
        for name, keys in sorted(by.items(), key=lambda kv: -len(kv[1])):
            parts.append(f"{name}: " + ", ".join(describe_key(k) for k in keys))
        return "; ".join(parts)


_SHARED: dict = {}


def shared_chooser(split=None) -> GemmChooser:
    """The process-wide chooser for the current GPUNN_GEMM: a shape is measured once per process."""
    env = (environment.text(ENV) or DEFAULT).lower()
    with _LOAD_LOCK.current:
        chooser = _SHARED.get(env)
    if chooser is None:
        chooser = GemmChooser(split)
        with _LOAD_LOCK.current:
            chooser = _SHARED.setdefault(env, chooser)
    return chooser


def choices_summary() -> str:
    """The shapes measured so far in this process and where they went (for the bench's setup line); "" where no
    product went through a chooser (a GPU's run, an ensemble's: their products are not chosen per shape)."""
    return "; ".join(c.summary() for c in _SHARED.values() if c.choices)


def threads_words(n) -> str:
    """"1 thread", "4 threads" (and "None threads" where a library does not say)."""
    return f"{n} thread{'' if n == 1 else 's'}"


def describe() -> str:
    """The candidates installed here, with versions, for ``gpunn info`` and the bench's setup line."""
    names, forced = requested()
    out = []
    for n in LIBRARIES:
        lib = library(n)
        if lib is None:
            out.append(f"{n} not installed")
            continue
        text = f"{n} {lib.version}".strip()
        threads = lib.threads() if n == "mkl" else None
        if threads:  # (a job bound to one core: "mkl 2026.2 (1 thread)")
            text += f" ({threads_words(threads)})"
        if n not in names:
            text += " (off: " + ENV + ")"
        out.append(text)
    if forced and names == ["numpy"]:
        mode = f"NumPy alone ({ENV}=auto chooses per shape among the installed libraries)"
    else:
        mode = f"forced by {ENV}" if forced else "fastest per shape, measured at first use"
    return f"{mode}; " + ", ".join(out)
