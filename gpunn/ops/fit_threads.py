"""One OpenBLAS thread for the fit of a small net (fewer than PARALLEL_MIN_ELEMENTS = 65,536 parameters, on the CPU).

A small net's products (a 16-64-64-1 net at batch 128: 128x64x64, 262,144 multiply-adds) are above OpenBLAS's
threshold for its second thread, which gains little there: quiet, 2 threads 4-6% faster than 1 on the project's
2-core machine. With another busy process on the machine each product waits for a descheduled worker thread, and
the fit runs 10-50x slower (bench/RESULTS.md, session 24). So, as an ensemble's members do
(gpunn.ops.ensemble.member_blas_threads), such a fit runs the process's OpenBLAS on one thread, and puts the count
back as it ends (threadpoolctl: set once a fit, ~20 us; its controller is made once a process, ~1 ms). Its products
then give one thread's bits whatever the core count (two threads split a 128x64x64 product otherwise: its last bits
differ), with the one-call step (gpunn.ops.mlp_step) or without it alike. Larger nets keep OpenBLAS's count.

Left as it is: a count the user chose, that is OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS set, or a
count other than OpenBLAS's own (one thread per core the process may run on: a threadpoolctl limit or a
data-parallel rank's share in force, gpunn.distributed.threads); and a process without threadpoolctl. A limit to
exactly OpenBLAS's own count cannot be told from no limit: set OPENBLAS_NUM_THREADS to keep that count.
"""
from __future__ import annotations

import contextlib
import os

import numpy

from .cpu import PARALLEL_MIN_ELEMENTS, usable_cores

USER_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")

_openblas = None  # threadpoolctl's controller of the OpenBLAS libraries loaded at the first small fit (~1 ms), or False


def _controller():
    global _openblas
    if _openblas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _openblas = False
        else:
            _openblas = ThreadpoolController().select(internal_api="openblas") or False
    return _openblas


def _small(model) -> bool:
    """Whether ``model`` is one net (not an ensemble: member_blas_threads sets its count) of host parameters,
    fewer than PARALLEL_MIN_ELEMENTS."""
    params = getattr(model, "params", None)
    return (isinstance(params, numpy.ndarray) and params.size < PARALLEL_MIN_ELEMENTS
            and not hasattr(model, "n_models"))


def _user_chose(openblas, cores) -> bool:
    return (any(os.environ.get(name, "").strip() for name in USER_ENV)
            or any(lib["num_threads"] != cores for lib in openblas.info()))


@contextlib.contextmanager
def fit_threads(model):
    """While a fit of ``model`` runs (gpunn.training.loop.train): OpenBLAS on one thread where the model is small
    (_small), the process has threadpoolctl and may run on 2 cores or more, and the user chose no count (see the
    module); the count is put back as the fit ends (also on an error or an interruption)."""
    cores = usable_cores()
    openblas = _controller() if cores > 1 and _small(model) else False
    if not openblas or _user_chose(openblas, cores):
        yield
        return
    limiter = openblas.limit(limits=1)
    try:
        yield
    finally:
        limiter.restore_original_limits()
