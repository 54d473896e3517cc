"""A faster CPU path: ``CpuOps`` overrides the elementwise and optimizer methods of ``Ops`` with
single-pass Numba kernels where that was measured to pay.

``gpunn.ops.base.Ops`` stays the reference: every override computes the same thing (the
reference's operations in its order, no fast-math: float32 results agree bit for bit, or to a
few ulps where a column sum is split; tests/test_cpu_ops.py) and falls back to the reference
for the cases it does not fuse (other activations, out-of-place calls, strided buffers).
Numba is optional (``pip install gpunn[cpu]``); without it ``CpuOps`` is the reference plus the
NumPy-only outer-product change below, and so it is with a Numba that is installed but does not import, with
a warning (fused_kernels). Where it is installed, a process imports it only once the kernels pay for its start
(NUMBA_START_SECONDS): before, NumPy gives the kernels' bits.

Measured in a training step on a 2-core AMD EPYC (Zen 5), float32, OpenBLAS 0.3.31 with
2 threads, per step (wide = 256-1024-1024-1024-1, batch 1024; deep = 128-512x6-4, batch 512):
- Adam over the flat buffer in one pass (read w, g, m, v; write w, m, v) instead of ~11 NumPy
  passes with temporaries: wide 3.7 -> 1.0 ms, deep 2.2 -> 0.6 ms.
- bias + ReLU in one in-place pass: wide 1.4 -> 0.27 ms.
- ReLU backward with the bias gradient (column sums) in the same pass: wide 1.6 -> 0.65 ms.
- the output layer's dA = dZ @ W^T has an inner dimension of 1..8 (the outputs): BLAS does
  this outer product slowly (1024x1x1024: 1.0 ms); a broadcast multiply (k = 1) or a short
  loop does it at memory speed (0.25 ms).
Whole step: wide 38.5 -> 33.3 ms, deep 13.8 -> 11.4 ms, medium 0.59 -> 0.39 ms, small
0.080 -> 0.050 ms. numexpr was measured on Adam (16 ms vs NumPy's 3.2 ms) and bias + ReLU
(1.06 vs 0.48 ms): slower than plain NumPy here, so it is not used.
"""
from __future__ import annotations

import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy

from . import denormals, gemm, lazynumba
from .. import environment
from ..activations import Activation
from ..backend import user_stacklevel
from ..checks import MissingExtra
from .base import ENV_FUSED, Ops
from .lazynumba import kernels, numba  # optional: the fused kernels (numba: None where it is not installed)

ENV_THREADS = "GPUNN_CPU_THREADS"
SMALL_K = 8  # inner dimensions up to this go to the outer-product path, not BLAS
PARALLEL_MIN_ELEMENTS = 1 << 16  # below this a kernel runs on the calling thread alone
_FLOATS = (numpy.dtype("float32"), numpy.dtype("float64"))
# Numba's start in a process (its import and its first cached kernel's load) took 0.7-1.2 s of CPU on the 2-core
# EPYC, 70% of a tiny `gpunn train`'s and of a `gpunn predict`'s (bench/RESULTS.md, "Start cost"). So by default
# (fused=None) CpuOps runs NumPy where it gives the kernel's very bits (every kernel but the small-k product and a
# column sum split over threads: tests/test_cpu_ops.py) until the process has spent NUMBA_START_SECONDS of CPU since
# the first such op, then imports Numba and runs the kernels (and a small net's one-call step, gpunn.ops.mlp_step):
# a short run (a small fit, a predict) never pays the start; a long one pays at most those seconds of slower steps
# (what the kernels save is less than the time spent; 0.5 s cost a 200k-row 3-epoch fit 0.3 s). An op whose NumPy
# bits differ imports Numba at its first call.
NUMBA_START_SECONDS = 0.25
_cpu_seconds = time.process_time
_deferred_since: list = []  # the process's CPU seconds at the first op that ran NumPy in a kernel's stead
_jit = dict(cache=True, error_model="numpy", nogil=True)
KERNELS = ("_bias_relu_inplace", "_relu_backward_inplace", "_relu_backward_bias_inplace", "_column_sums",
           "_small_k_matmul", "_adam", "_adam_l2", "_clip_row")


@kernels(KERNELS)
def _define():
    """Defines the kernels (gpunn.ops.lazynumba): at the first call of one."""
    global _bias_relu_inplace, _relu_backward_inplace, _relu_backward_bias_inplace, _column_sums, _small_k_matmul
    global _adam, _adam_l2, _clip_row
    from numba import njit

    # Serial kernels over a range [lo, hi) of rows (or elements); CpuOps splits large arrays across
    # its own threads. nogil: those threads run truly in parallel. error_model="numpy": no
    # Python-style ZeroDivisionError checks, which stop vectorisation. No fastmath: results keep
    # the reference's rounding (no FMA contraction; IEEE division and sqrt).
    # Measured rules for LLVM to vectorise these loops (each 4-10x when it does):
    # - loop over a slice taken inside the kernel (X = Z[lo:hi]; range(X.shape[0])), not over
    #   range(lo, hi) into the full array;
    # - write each element once, through one array: a kernel that writes Z and A (which may be
    #   the same buffer) or reads dA and writes dZ (ditto) cannot prove they do not overlap and
    #   stays scalar. So the kernels work in place, which is how the model calls them;
    # - accumulate into a local array, not into an argument that might alias the data.

    @njit(**_jit)
    def _bias_relu_inplace(Z, b, lo, hi):
        """Z <- max(Z + b, 0) on rows lo..hi (a NaN stays NaN, as with numpy.maximum)."""
        X = Z[lo:hi]
        for i in range(X.shape[0]):
            for j in range(X.shape[1]):
                z = X[i, j] + b[j]
                X[i, j] = z if not z <= 0 else 0

    @njit(**_jit)
    def _relu_backward_inplace(dZ, source, lo, hi):
        """dZ <- dZ * [source > 0] on rows lo..hi."""
        D, S = dZ[lo:hi], source[lo:hi]
        for i in range(D.shape[0]):
            for j in range(D.shape[1]):
                D[i, j] = D[i, j] * (S[i, j] > 0)

    @njit(**_jit)
    def _relu_backward_bias_inplace(dZ, source, sums, lo, hi):
        """dZ <- dZ * [source > 0] on rows lo..hi; sums <- the column sums of those rows (in row order, in
        float64, as the GPU's bias_grad sums them; rounded once into ``sums``)."""
        D, S = dZ[lo:hi], source[lo:hi]
        acc = numpy.zeros(D.shape[1], numpy.float64)
        for i in range(D.shape[0]):
            for j in range(D.shape[1]):
                d = D[i, j] * (S[i, j] > 0)
                D[i, j] = d
                acc[j] += d
        sums[:] = acc

    @njit(**_jit)
    def _column_sums(dZ, sums, lo, hi):
        """sums <- the column sums of dZ's rows lo..hi (in row order, in float64; rounded once into ``sums``)."""
        D = dZ[lo:hi]
        acc = numpy.zeros(D.shape[1], numpy.float64)
        for i in range(D.shape[0]):
            for j in range(D.shape[1]):
                acc[j] += D[i, j]
        sums[:] = acc

    @njit(**_jit)
    def _small_k_matmul(a, b, out, lo, hi):
        """out = a @ b on rows lo..hi, for a tiny inner dimension, summed in order p = 0..k-1."""
        A, O = a[lo:hi], out[lo:hi]
        k = A.shape[1]
        for i in range(O.shape[0]):
            for j in range(O.shape[1]):
                O[i, j] = A[i, 0] * b[0, j]
            for p in range(1, k):
                for j in range(O.shape[1]):
                    O[i, j] += A[i, p] * b[p, j]

    @njit(**_jit)
    def _adam(w, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bc2, eps, lr_bc1, lo, hi):
        """The reference's arithmetic, in its order, per element of lo..hi."""
        W, G, M, V = w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
        for i in range(W.size):
            gi = G[i]
            mi = M[i] * beta1 + gi * one_minus_beta1
            vi = V[i] * beta2 + (gi * gi) * one_minus_beta2
            M[i] = mi
            V[i] = vi
            W[i] -= (mi / (numpy.sqrt(vi) * inv_sqrt_bc2 + eps)) * lr_bc1

    @njit(**_jit)
    def _adam_l2(w, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_sqrt_bc2, eps, lr_bc1, decay,
                 lo, hi):
        """_adam with coupled L2 decay, g' = g + decay * w (g itself is left as it is)."""
        W, G, M, V = w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
        for i in range(W.size):
            gi = G[i] + decay * W[i]
            mi = M[i] * beta1 + gi * one_minus_beta1
            vi = V[i] * beta2 + (gi * gi) * one_minus_beta2
            M[i] = mi
            V[i] = vi
            W[i] -= (mi / (numpy.sqrt(vi) * inv_sqrt_bc2 + eps)) * lr_bc1


    @njit(**_jit)
    def _clip_row(g, clip_norm, clip_value, c):
        """Gradient clipping of the flat gradient g in place (``c``: scratch of g's dtype), as
        gpunn.optim.Optimizer.clip asks it: by norm (clip_norm > 0), g *= T(clip_norm / (sqrt(s) + 1e-6)) where that
        is not 1 or more (NaN where s is), s the float64 sum of the squares in four interleaved partial sums (i mod
        4), added as (s0 + s1) + (s2 + s3) (a fixed order, which _clip_row_numpy gives too; one chain of additions
        took ~4x as long); by value (clip_value > 0), each element into [-T(clip_value), T(clip_value)]. One rule for one
        model's step (CpuOps) and an Ensemble's members (gpunn.ops.ensemble: in its group pass too)."""
        n = g.size
        if clip_norm > 0:
            s0 = s1 = s2 = s3 = 0.0
            n4 = n - n % 4
            for i in range(0, n4, 4):
                a, b, d, e = numpy.float64(g[i]), numpy.float64(g[i + 1]), numpy.float64(g[i + 2]), \
                    numpy.float64(g[i + 3])
                s0 += a * a
                s1 += b * b
                s2 += d * d
                s3 += e * e
            for i in range(n4, n):
                a = numpy.float64(g[i])
                s0 += a * a
            coef = clip_norm / (numpy.sqrt((s0 + s1) + (s2 + s3)) + 1e-6)
            if not coef >= 1.0:  # (a NaN norm scales by NaN: every gradient NaN, as torch's clip_grad_norm_)
                c[0] = coef
                scale = c[0]
                for i in range(n):
                    g[i] *= scale
        if clip_value > 0:
            c[0] = clip_value
            hi = c[0]
            lo = -hi
            for i in range(n):
                if g[i] > hi:
                    g[i] = hi
                elif g[i] < lo:
                    g[i] = lo


def _clip_row_numpy(g, clip_norm, clip_value):
    """_clip_row's bits without Numba: each partial sum's additions in its order (numpy.add.accumulate down the
    columns of the (n/4, 4) squares, the last n mod 4 after, into s0), then the same double arithmetic."""
    if clip_norm > 0:
        n4 = g.size - g.size % 4
        squares = numpy.square(g.astype(numpy.float64))
        s = numpy.add.accumulate(squares[:n4].reshape(-1, 4), axis=0)[-1].tolist() if n4 else [0.0] * 4
        for square in squares[n4:].tolist():
            s[0] += square
        coef = clip_norm / (math.sqrt((s[0] + s[1]) + (s[2] + s[3])) + 1e-6)
        if not coef >= 1.0:
            g *= g.dtype.type(coef)
    if clip_value > 0:
        hi = g.dtype.type(clip_value)
        numpy.putmask(g, g > hi, hi)
        numpy.putmask(g, g < -hi, -hi)
    return g


_SUM_BLOCK_ROWS = 4096
_SUM_ROW_BY_ROW_COLUMNS = 128  # from this width a row's add in a Python loop costs less than accumulate's strided walk


def _column_sums_in_row_order(dZ, db):
    """db <- the column sums of dZ as _column_sums forms them, without Numba: in float64, row after row from 0.0,
    rounded once into db. Not Ops.bias_gradient's numpy.sum, which sums a contiguous column pairwise (a float64
    model's output bias) and keeps a column of -0.0 as -0.0. A NaN may come out with the other sign: the one of two
    NaNs that meet which the compiled add keeps (tests/test_cpu_ops.py). A wide dZ is added into a float64 row, row
    by row (numpy.add.accumulate walks each column with the row stride: 40x numpy.sum's time at 1024 columns); a
    narrow one is accumulated in blocks of _SUM_BLOCK_ROWS, each after the sums so far (no float64 copy of a large
    batch's dZ is made either way)."""
    if dZ.shape[1] >= _SUM_ROW_BY_ROW_COLUMNS:
        sums = numpy.zeros(dZ.shape[1], numpy.float64)  # from 0.0, as the kernel (-0.0 columns sum to 0.0)
        for row in dZ:
            sums += row
        db[...] = sums
        return db
    sums = numpy.zeros((1, dZ.shape[1]), numpy.float64)
    for lo in range(0, dZ.shape[0], _SUM_BLOCK_ROWS):
        block = numpy.concatenate([sums, dZ[lo:lo + _SUM_BLOCK_ROWS]], dtype=numpy.float64)
        sums = numpy.add.accumulate(block, axis=0)[-1:]
    db[...] = sums[0]
    return db


def _fusable(*arrays) -> bool:
    """C-contiguous arrays of one float dtype (what the kernels are compiled for)."""
    dtype = arrays[0].dtype
    if dtype not in _FLOATS:
        return False
    for a in arrays:  # a loop, not all() over a generator: this runs six times in every small step
        if a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


def threads_setting() -> int | None:
    """GPUNN_CPU_THREADS (a whole number, 1 or more), None where unset or blank; any other value is refused."""
    return environment.whole(ENV_THREADS, None, 1, "a whole number of threads, 1 or more (unset: 1 for a model's "
                                                   "CPU kernels, every usable core for an Ensemble's member groups)")


def default_threads() -> int:
    """Threads for the fused kernels: GPUNN_CPU_THREADS, else 1.

    One, because that measured fastest: on a 2-core box a second thread for the elementwise
    kernels made every configuration's step 2-25% slower (the kernels are short and memory-bound;
    waking a worker costs tens of microseconds, and the other core is still busy with OpenBLAS's
    own threads finishing or spinning after the previous GEMM). Larger machines may differ:
    set GPUNN_CPU_THREADS and measure with ``gpunn bench``.
    """
    threads = threads_setting()
    return 1 if threads is None else threads


_POOLS: dict[tuple, ThreadPoolExecutor] = {}
# A forked child (multiprocessing's default start on Linux) has none of its parent's worker threads: a pool
# it inherited took its pieces and never ran them, so its first run_pieces hung. It makes its own. Its CPU clock
# starts at 0: its NUMBA_START_SECONDS count from its first deferred op.


def _forked():
    _POOLS.clear()
    _deferred_since.clear()


os.register_at_fork(after_in_child=_forked)


def _pool(threads: int, name: str = "cpu") -> ThreadPoolExecutor:
    """One process-wide pool per (name, size) (threads - 1 workers; the calling thread does a share too).
    Work that itself runs pieces on a pool uses one of another name: waiting on its own pool's workers
    from inside them could deadlock."""
    pool = _POOLS.get((name, threads))
    if pool is None:
        pool = _POOLS[name, threads] = ThreadPoolExecutor(threads - 1, thread_name_prefix=f"gpunn-{name}")
    return pool


def run_pieces(fn, pieces, name: str = "cpu"):
    """fn(*piece) for every piece at once: the first on the calling thread, the others on gpunn's pool
    ``name``; returns when all are done. The pool's pieces run under the caller's ``numpy.errstate`` and its
    subnormal mode (FTZ/DAZ, gpunn.ops.denormals), both per thread: the training loop's errstate (overflow
    and invalid ignored, divergence being reported once per epoch) would otherwise not reach an ensemble's
    member groups, which then warned; and a worker that flushed subnormals while the caller did not (predict
    outside fit) gave its members' or rows' results as 0 where the caller's were subnormal. The call leaves,
    also by an exception (its own piece's, a Ctrl-C, one a signal handler raises), only once no piece runs or
    ever will (_Handed)."""
    errors, flush = numpy.geterr(), denormals.flush_mode()

    def as_the_caller(*piece):
        denormals.follow(flush)
        with numpy.errstate(**errors):
            fn(*piece)

    handed, pool, whole = _Handed(len(pieces) - 1), _pool(len(pieces), name), False
    try:
        for i, piece in enumerate(pieces[1:]):
            pool.submit(handed.run, i, as_the_caller, piece)
        fn(*pieces[0])
        whole = True
    finally:  # no piece outlives the call: where it leaves early, a piece not yet started never will
        end = handed.wait if whole else handed.cancel_and_wait
        try:
            wait_uninterrupted(end, handed.settled)
        except BaseException:  # one that came as the wait began, before its try: wait, then raise it
            wait_uninterrupted(end, handed.settled)
            raise
    handed.raise_first()


class _Handed:
    """The pieces one run_pieces call hands to its pool's workers, kept so that the call leaves only once none of
    them runs or ever will, whatever exception comes and wherever. A piece is claimed, by a reentrant lock taken
    without blocking, either by the worker that starts it or by the caller leaving early, which cancels it (a
    second try of the caller's takes it again: a Ctrl-C between its claim and the next line loses nothing); a
    started piece stores its end, then releases a lock the caller waits on. The caller waits on nothing a worker
    needs: concurrent.futures.wait takes every future's lock in turn, and a Ctrl-C between two left one held, so
    that the worker setting that future's result blocked for ever. Nor does a piece handed over depend on the
    future submit returns: a Ctrl-C inside submit, after it had queued the piece, left that piece unwaited."""

    def __init__(self, count: int):
        self.claims = [threading.RLock() for _ in range(count)]
        self.ends = [threading.Lock() for _ in range(count)]
        for lock in self.ends:
            lock.acquire()
        self.ended, self.cancelled, self.errors = [False] * count, [False] * count, [None] * count

    def run(self, i, fn, piece):
        """On a worker: fn(*piece) unless the caller cancelled it first."""
        if not self.claims[i].acquire(blocking=False):
            return
        try:
            fn(*piece)
        except BaseException as exc:  # the caller raises it
            self.errors[i] = exc
        finally:
            self.ended[i] = True
            self.ends[i].release()

    def wait(self):
        """Until every piece not cancelled has ended."""
        for i, end in enumerate(self.ends):
            if not (self.ended[i] or self.cancelled[i]):
                end.acquire()  # released once, after ended[i] is stored: taken at most once

    def cancel_and_wait(self):
        """Cancel every piece no worker has started, then wait for those started."""
        for i, claim in enumerate(self.claims):
            self.cancelled[i] = claim.acquire(blocking=False)  # the caller's own claim, taken again, is still True
        self.wait()

    def settled(self) -> bool:
        """Whether every piece has ended or was cancelled: a check that neither blocks nor fails."""
        return all(ended or cancelled for ended, cancelled in zip(self.ended, self.cancelled))

    def raise_first(self):
        """The first piece's error (in the pieces' order), raised."""
        for exc in self.errors:
            if exc is not None:
                raise exc


def wait_uninterrupted(wait, settled):
    """wait() to its end; an exception that comes meanwhile (Ctrl-C's KeyboardInterrupt, or what a signal handler
    raises: a SIGALRM timeout, sys.exit on SIGTERM) is raised once it has returned, the first of them. So no piece
    on a worker goes on writing into the model's buffers after the call that handed it over has left (an
    interrupted fit's model, then used by predict or another fit). After an exception wait() is called again only
    while ``settled()`` (a check that neither blocks nor fails) says some piece still runs: a wait() that fails
    of itself ends once they have. The caller calls it in a try of its own, and once more where an exception
    comes as it is entered (before its try)."""
    raised = None
    while True:
        try:
            wait()
            break
        except BaseException as exc:
            raised = raised or exc
            if settled():
                break
    if raised is not None:
        raise raised


SLURM_CPUS = "SLURM_CPUS_PER_TASK"  # Slurm's --cpus-per-task, set in the job where it was asked for


def affinity_cores() -> int:
    """The cores this process may run on: its affinity set (a launcher's binding, taskset, a cgroup's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def slurm_cpus() -> int | None:
    """The CPUs Slurm gave each task of this job (SLURM_CPUS_PER_TASK, --cpus-per-task), or None: unset, or not a
    whole number 1 or more (Slurm's variable, not gpunn's: not refused). Where Slurm binds the task to its cores
    (task/affinity, a cgroup's cpuset) the affinity set says the same; where it does not (task/none, Slurm's
    default), the process may run on every core of the node, and this is its share."""
    value = os.environ.get(SLURM_CPUS, "").strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None


def usable_cores() -> int:
    """The cores this process may use: those it may run on (affinity_cores), at most Slurm's --cpus-per-task."""
    cores, slurm = affinity_cores(), slurm_cpus()
    return cores if slurm is None else min(cores, slurm)


def _bounds(n: int, parts: int) -> list:
    """parts + 1 boundaries of contiguous, nearly equal pieces of [0, n)."""
    return [n * t // parts for t in range(parts + 1)]


def _split_rows(fn, n, threads=None):
    """fn(lo, hi) over [0, n) in contiguous pieces, one per core, on gpunn's pool (for BLIS's GEMM)."""
    parts = min(threads or usable_cores(), n)
    if parts <= 1:
        fn(0, n)
        return
    bounds = _bounds(n, parts)
    run_pieces(fn, [(bounds[t], bounds[t + 1]) for t in range(parts)])


class KernelFallbackWarning(RuntimeWarning):
    """Numba is installed but does not import (a NumPy newer than it supports): the CPU runs the NumPy reference
    instead of the fused kernels: slower, and what GPUNN_FUSED_KERNELS=0 runs, which runs it without the warning."""


_fallback_warned = False  # KernelFallbackWarning is given once per process, as backend.CPUFallbackWarning is


def fused_kernels(asked: bool | None, by_variable: bool = False) -> bool:
    """Whether CpuOps runs the fused kernels: not where ``asked`` is False; else Numba is imported here
    (gpunn.ops.lazynumba.load: as the ops are made where asked, else once the kernels pay, CpuOps.kernels_now).
    Where it is not installed, or does not import, ``asked`` True (fused=True, or GPUNN_FUSED_KERNELS on:
    ``by_variable``) raises MissingExtra, as device="cuda" without a GPU is refused; None (the default) runs the
    reference: silently without Numba (as documented: the [cpu] extra is optional), with one warning for a broken
    install, common after a NumPy upgrade, which neither stops a run nor goes unsaid."""
    global _fallback_warned
    if asked is False:
        return False
    if numba is None:
        if asked:
            by, instead = _asked_by(by_variable)
            raise MissingExtra(f"{by} asks for gpunn's fused CPU kernels, which need Numba: it is not installed; "
                               f"install it (pip install 'gpunn[cpu]'), or {instead} to run the NumPy reference")
        return False
    try:
        lazynumba.load()
    except ImportError as exc:
        why = " ".join(str(exc).split())
        if asked:
            by, instead = _asked_by(by_variable)
            raise MissingExtra(f"{by} asks for gpunn's fused CPU kernels, which need Numba: it is installed but does "
                               f"not import ({why}); install a Numba that supports NumPy {numpy.__version__}, or "
                               f"{instead} to run the NumPy reference") from exc
        if not _fallback_warned:
            _fallback_warned = True
            warnings.warn(f"gpunn: Numba is installed but does not import ({why}): the CPU runs the NumPy reference "
                          f"instead of the fused kernels (slower); {ENV_FUSED}=0 runs it without this warning",
                          KernelFallbackWarning, stacklevel=user_stacklevel())
        return False
    return True


def _numba_deferred() -> bool:
    """Whether the default CpuOps starts without Numba (NUMBA_START_SECONDS): it is installed, not yet imported, and
    the ops may run NumPy in its kernels' stead."""
    return numba is not None and not lazynumba.imported() and NUMBA_START_SECONDS > 0


def _asked_by(by_variable: bool) -> tuple[str, str]:
    """What asked for the fused kernels, GPUNN_FUSED_KERNELS on (``by_variable``) or fused=True, and how to run the
    reference instead: the variable set to 0, or the argument changed (fused=True is kept over the variable, so that
    with the variable on too, fused=False alone runs it; it said "set GPUNN_FUSED_KERNELS=0" there)."""
    setting = environment.text(ENV_FUSED)
    if by_variable:
        return f"{ENV_FUSED}={setting}", f"set {ENV_FUSED}=0"
    if (setting or "").lower() in environment.ON:
        return "fused=True", "pass fused=False"
    return "fused=True", "leave fused unset (or pass fused=False)"


class CpuOps(Ops):
    """``Ops`` for NumPy with fused Numba kernels (when Numba is installed); GPUNN_CPU_THREADS > 1 splits them.

    ``fused``: True asks for the kernels (an error at once where Numba is not installed or does not import), False
    runs the reference, None (the default) runs the kernels where Numba imports, once they pay for its start: until
    then NumPy with their bits (NUMBA_START_SECONDS, kernels_now), so that a short run never imports Numba; where it
    then does not import, the reference, with a warning (fused_kernels). Decided at the first read of ``self.fused``,
    after the constructor, so that making a CPU model does not import Numba (gpunn.ops.lazynumba)."""

    def __init__(self, fused: bool | None = None, threads: int | None = None, *, by_variable: bool = False):
        super().__init__(numpy)
        if fused is not None:  # (by_variable: fused is GPUNN_FUSED_KERNELS's, as its refusal then says)
            self.fused = fused_kernels(bool(fused), by_variable)
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.gemm = gemm.shared_chooser(_split_rows)  # the fastest installed GEMM per shape (gpunn.ops.gemm)
        # NumPy alone (GPUNN_GEMM's default): call numpy.matmul directly. The chooser's per-call key and
        # dispatch cost about 10% of a small net's step (16-64-64-1 at batch 128), for no choice to make.
        self._numpy_only = [lib.name for lib in self.gemm.libraries] == ["numpy"]
        # A small net's step as one Numba call (gpunn.ops.mlp_step) calls NumPy's BLAS unless GPUNN_GEMM forces
        # another library (MKL's then). A per-shape choice (auto, a list) keeps NumPy's: off, the step's ~64 Python
        # calls cost more than any library saves on products this small (16-64-64-1 at batch 128 on the 2-core
        # EPYC: one call 1.46M samples/s, auto's per-op step 0.59-0.74M with NumPy chosen for every shape; MKL's
        # single-thread products took 129 us a step to OpenBLAS's 130).
        self.one_call_numpy_blas = self._numpy_only or not self.gemm.forced

    def __getattr__(self, name):
        # only for an attribute not set: ``fused`` left undecided by the constructor, decided at its first read;
        # set then, so that later reads (every op) are a plain attribute's. True without importing Numba while the
        # NumPy stands in for its kernels (NUMBA_START_SECONDS): kernels_now imports it when they pay
        if name != "fused":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.fused = fused = True if _numba_deferred() else fused_kernels(None)
        return fused

    def kernels_now(self, same_bits: bool = True) -> bool:
        """Whether a fused op (``self.fused`` True) calls its Numba kernel now: where Numba is imported. Else an op
        whose NumPy gives the kernel's bits (``same_bits``) runs NumPy until the process has spent
        NUMBA_START_SECONDS of CPU since the first such op; then, or at once for an op whose bits differ, Numba is
        imported (fused_kernels: where it does not import, ``fused`` becomes False, with its one warning, and the
        reference runs)."""
        if lazynumba.imported():
            return True
        if same_bits:
            now = _cpu_seconds()
            if not _deferred_since:
                _deferred_since.append(now)
            if now - _deferred_since[0] < NUMBA_START_SECONDS:
                return False
        self.fused = fused = fused_kernels(None)
        return fused

    def _split(self, kernel, n, work, *args):
        """kernel(*args, lo, hi) over [0, n), in `threads` contiguous pieces when the work is large.

        gpunn's own pool, whose threads block rather than spin: Numba's parallel=True (OpenMP
        layer, spinning workers) fought OpenBLAS's threads for the cores and made steps 2-10x slower.
        """
        if work < PARALLEL_MIN_ELEMENTS or self.threads <= 1 or n <= 1:
            kernel(*args, 0, n)
            return 1
        parts = min(self.threads, n)
        bounds = _bounds(n, parts)
        run_pieces(kernel, [(*args, bounds[t], bounds[t + 1]) for t in range(parts)])
        return parts

    # ---- matrix products -------------------------------------------------------------
    def matmul(self, a, b, out):
        k = a.shape[-1]
        if k <= SMALL_K and a.ndim == 2 and b.ndim == 2 and a.shape[0] * b.shape[1] >= 4096:
            if k == 1:
                return numpy.multiply(a, b, out=out)  # an outer product (broadcast)
            if self.fused and out.flags.c_contiguous and a.dtype == b.dtype == out.dtype and a.dtype in _FLOATS \
                    and self.kernels_now(same_bits=False):  # BLAS's sums are not the kernel's
                if not b.flags.c_contiguous:  # W^T: a k x n copy is tiny, and strided reads are 8x slower
                    contiguous = self.scratch(b.shape, b.dtype, slot=4)
                    numpy.copyto(contiguous, b)
                    b = contiguous
                self._split(_small_k_matmul, a.shape[0], out.size * k, a, b, out)
                return out
        if self._numpy_only or out is None or a.ndim != 2 or b.ndim != 2:
            return numpy.matmul(a, b, out=out)
        return self.gemm.matmul(a, b, out)

    # ---- forward ---------------------------------------------------------------------
    def bias_activation(self, Z, b, act: Activation, A, keep_z: bool):
        if self.fused and act.name == "relu" and b is not None and A is Z and Z.ndim == 2 and _fusable(Z, b) \
                and self.kernels_now():
            self._split(_bias_relu_inplace, Z.shape[0], Z.size, Z, b)
            return A
        return super().bias_activation(Z, b, act, A, keep_z)

    # ---- backward --------------------------------------------------------------------
    def activation_backward(self, dA, act: Activation, source, from_output: bool, dZ):
        if self.fused and act.name == "relu" and dZ is dA and dA.ndim == 2 and _fusable(dA, source) \
                and self.kernels_now():
            self._split(_relu_backward_inplace, dA.shape[0], dA.size, dA, source)
            return dZ
        return super().activation_backward(dA, act, source, from_output, dZ)

    def activation_bias_backward(self, dA, act: Activation, source, from_output: bool, dZ, db):
        if not (self.fused and db is not None and act.name == "relu" and dZ is dA and dA.ndim == 2
                and _fusable(dA, source, db)):
            return super().activation_bias_backward(dA, act, source, from_output, dZ, db)
        if not self.kernels_now(self._sums_whole(dA)):
            if not self.fused:  # Numba does not import: the reference
                return super().activation_bias_backward(dA, act, source, from_output, dZ, db)
            super().activation_backward(dA, act, source, from_output, dZ)  # the kernel's bits (elementwise)
            _column_sums_in_row_order(dZ, db)
            return dZ
        self._sum_rows(_relu_backward_bias_inplace, (dA, source), db)
        return dZ

    def bias_gradient(self, dZ, db):
        if not (self.fused and dZ.ndim == 2 and _fusable(dZ, db)):
            return super().bias_gradient(dZ, db)
        if not self.kernels_now(self._sums_whole(dZ)):
            return _column_sums_in_row_order(dZ, db) if self.fused else super().bias_gradient(dZ, db)
        self._sum_rows(_column_sums, (dZ,), db)
        return db

    def _sums_whole(self, dZ) -> bool:
        """Whether _sum_rows sums dZ's columns in one piece (the reference's bits), not split over threads."""
        return dZ.size < PARALLEL_MIN_ELEMENTS or self.threads <= 1 or dZ.shape[0] <= 1

    def _sum_rows(self, kernel, args, db):
        """kernel(*args, sums, lo, hi), which writes the float64 column sums of rows lo..hi of args[0] into
        ``sums``, over all the rows: into db directly, or in `threads` pieces summed in float64 into db."""
        rows, cols = args[0].shape
        if self._sums_whole(args[0]):
            kernel(*args, db, 0, rows)  # the column sums land in db directly
            return
        parts = min(self.threads, rows)
        sums = self.scratch((parts, cols), numpy.float64, slot=3)
        bounds = _bounds(rows, parts)
        run_pieces(kernel, [(*args, sums[t], bounds[t], bounds[t + 1]) for t in range(parts)])
        db[...] = sums.sum(axis=0)

    # ---- gradient clipping -------------------------------------------------------------
    def clip_grad_norm(self, g, max_norm):
        if not self._clips(g):
            return super().clip_grad_norm(g, max_norm)
        return self._clip(g, max_norm, 0.0)

    def clip_grad_value(self, g, clip_value):
        if not self._clips(g):
            return super().clip_grad_value(g, clip_value)
        return self._clip(g, 0.0, clip_value)

    def _clips(self, g) -> bool:
        """Whether the clips below take g: a flat buffer the kernels are compiled for (else the reference: its sum of
        squares in BLAS's order, a few ulps off _clip_row's)."""
        return self.fused and g.ndim == 1 and _fusable(g)

    def _clip(self, g, clip_norm, clip_value):
        """_clip_row (NumPy with its bits until Numba is imported): the clip the one-call step runs inside its kernel
        (gpunn.ops.mlp_step), so that the two steps keep the same bits."""
        if self.kernels_now():
            _clip_row(g, clip_norm, clip_value, self.scratch((1,), g.dtype, slot="clip"))
        else:
            _clip_row_numpy(g, clip_norm, clip_value)  # (Numba not imported yet, or it did not import)
        return g

    # ---- optimizer -------------------------------------------------------------------
    def adam_step(self, w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled):
        if not (self.fused and w.ndim == 1 and _fusable(w, g, m, v) and self.kernels_now()):
            return super().adam_step(w, g, m, v, lr, beta1, beta2, eps, step, weight_decay, decoupled)
        if weight_decay and decoupled:  # AdamW: w *= 1 - lr * wd first, as the reference does
            w *= 1.0 - lr * weight_decay
        s = w.dtype.type  # scalars in the array dtype: the rounding NumPy gives Python floats
        bias_c1 = 1.0 - beta1**step
        bias_c2 = 1.0 - beta2**step
        args = (w, g, m, v, s(beta1), s(1.0 - beta1), s(beta2), s(1.0 - beta2), s(1.0 / math.sqrt(bias_c2)),
                s(eps), s(lr / bias_c1))
        if weight_decay and not decoupled:
            self._split(_adam_l2, w.size, w.size, *args, s(weight_decay))
        else:
            self._split(_adam, w.size, w.size, *args)
        return w
