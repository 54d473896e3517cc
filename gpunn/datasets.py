"""Synthetic regression tasks, generated on the target device from a seed.

Rows are made in fixed chunks of CHUNK_ROWS, chunk k drawn from the stream
(seed, task, k). So ``make(...)`` and ``stream(...)`` give the same rows for the
same seed, and a stream can run far past device memory, one chunk at a time.
Several chunks can be made at once (``Task.chunks``: one elementwise launch for
all, still one matrix product per chunk), with the rows each has alone: a
synthetic source makes its GPU windows so.
Values are identical for a seed on one backend. The CPU draws from NumPy's generator, a GPU
from Philox4x32-10 keyed by the same words (gpunn.rng: kernels/random.cu, no cuRAND), so CPU and
GPU draw different (equally distributed) data; GPU rows also differ from those of gpunn before
Philox (its cuRAND draws). Targets are computed in
X's dtype; the teacher's go through BLAS matrix products, whose last bits can change with the
BLAS thread count (float32 did between 1 and 2 OpenBLAS threads).
"""
from __future__ import annotations

import inspect
import math

import numpy

from . import backend as _backend
from .rng import DeviceRNG, host_rng, normals, uniforms
from .checks import canonical_dtype, non_negative_number, positive_int, seed_int
from .hints import known_name

__all__ = ["make", "stream", "get_task", "TASKS", "Task", "Teacher", "Linear", "Friedman1", "Sinusoid", "CHUNK_ROWS"]

CHUNK_ROWS = 65536


class Task:
    """A regression task: n_features inputs -> n_outputs targets, plus Gaussian noise."""

    name = "task"

    def __init__(self, n_features, n_outputs=1, noise=0.1, seed=0):
        self.n_features = positive_int(n_features, "n_features")
        self.n_outputs = positive_int(n_outputs, "n_outputs")
        self.noise = non_negative_number(noise, "noise")
        self.seed = seed_int(seed)
        self._on_device = {}  # (device, dtype) -> the task's constants there

    def inputs(self, rngs, rows, dtype):
        """The inputs of chunks drawn from streams ``rngs`` (DeviceRNG), rows[i] from rngs[i], stacked: on a GPU one
        launch for all (gpunn.rng.normals)."""
        return normals(rngs, rows, self.n_features, dtype)

    def host_constants(self) -> tuple:
        """The host arrays ``targets`` uses (weights, directions), float64."""
        return ()

    def targets(self, xp, X, constants):
        """The noiseless f(X), float64 or X's dtype. ``xp``: NumPy, CuPy or a :class:`ChunkProducts` (whose
        ``matmul`` is per chunk): a product must be ``xp.matmul``, not ``@``."""
        raise NotImplementedError

    def constants(self, backend, dtype) -> tuple:
        """``host_constants()`` on ``backend`` in ``dtype``, copied once per device and dtype: a copy
        from host memory per chunk would make the host wait for the stream at every chunk."""
        key = (backend.device, numpy.dtype(dtype).str)
        cached = self._on_device.get(key)
        if cached is None:
            cached = tuple(backend.xp.asarray(a, dtype) for a in self.host_constants())
            if backend.is_gpu:  # the copies may be read from any stream later: let them land first
                backend.xp.cuda.get_current_stream().synchronize()
            self._on_device[key] = cached
        return cached

    def chunk(self, backend, index, rows, dtype):
        """Chunk ``index`` of make's rows, ``rows`` of them: (X, Y) on ``backend``."""
        return self.chunks(backend, [(index, rows)], dtype)

    def chunks(self, backend, chunks, dtype):
        """Several of make's chunks, ``chunks`` a list of (index, rows) in any order, stacked in that order:
        (X, Y) whose rows are each chunk's as ``chunk`` gives it alone.

        Each chunk's inputs, then its noise, are drawn from its own stream; the targets are computed once over
        all the rows: their matrix products one per chunk (:class:`ChunkProducts`: a product over other rows may
        take another BLAS kernel, and other last bits), the elementwise rest over the stack. On a GPU, where
        the host issuing a window's generation is what a stream's training waits for (bench/gpu_checks/
        streams.py), a window of 16 chunks so costs one Philox launch for every chunk's inputs and one for their
        noise (each after a copy of the streams' small table: gpunn.rng), 16 products per layer, and one
        elementwise launch per operation, where chunk by chunk it cost 16 of each launch (a synthetic source
        makes its GPU windows so). Its temporaries (a teacher's hidden layers) are the stack's rows wide: make and
        the CPU make one chunk at a time."""
        rngs = [DeviceRNG(backend, self.seed, self.name, index) for index, _ in chunks]
        sizes = [rows for _, rows in chunks]
        X = self.inputs(rngs, sizes, dtype)
        Y = self.targets(ChunkProducts(backend, sizes), X, self.constants(backend, X.dtype)).astype(dtype, copy=False)
        if self.noise:  # (each chunk's noise is the draw after its inputs', on its stream)
            Y += self.noise * normals(rngs, sizes, self.n_outputs, dtype)
        return X, Y


class ChunkProducts:
    """The array module ``targets`` computes with, over a stack of make's chunks (``sizes``: their rows, in order):
    its ``matmul`` makes one product per chunk, so each chunk's rows are what its product alone gives; everything
    else is the backend's module (NumPy or CuPy). On a GPU a chunk's product is one cuBLAS GemmEx issued directly
    (gpunn.ops.cublas.CupyBlas.gemm_rows, the call CuPy's matmul makes), without the host work of CuPy's matmul."""

    def __init__(self, backend, sizes):
        self._xp, self._gpu, self.sizes = backend.xp, backend.is_gpu, list(sizes)

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def matmul(self, A, W):
        out = self._xp.empty((A.shape[0], W.shape[1]), A.dtype)
        if self._gpu:
            _cupy_blas().gemm_rows(A, W, out, self.sizes)
            return out
        start = 0
        for rows in self.sizes:
            numpy.matmul(A[start:start + rows], W, out=out[start:start + rows])
            start += rows
        return out


_BLAS = []  # the CupyBlas the GPU's ChunkProducts use, made at the first


def _cupy_blas():
    if not _BLAS:
        from .ops.cublas import CupyBlas

        _BLAS.append(CupyBlas())
    return _BLAS[0]


class Teacher(Task):
    """A random MLP (tanh hidden layers) standardized so each output has mean 0 and unit variance."""

    name = "teacher"

    def __init__(self, n_features, n_outputs=1, noise=0.1, seed=0, hidden=(32, 32)):
        super().__init__(n_features, n_outputs, noise, seed)
        rng = host_rng(seed, "teacher-weights")
        sizes = [self.n_features, *hidden, self.n_outputs]
        self._layers = [(rng.standard_normal((a, b)) / math.sqrt(a), 0.5 * rng.standard_normal(b))
                        for a, b in zip(sizes[:-1], sizes[1:])]
        calib = host_rng(seed, "teacher-calibration").standard_normal((4096, self.n_features))
        out = self._apply(numpy, calib, self._layers)
        self._mean, self._std = out.mean(axis=0), out.std(axis=0) + 1e-12

    @staticmethod
    def _apply(xp, X, layers):
        A = X
        for i, (W, b) in enumerate(layers):
            A = xp.matmul(A, W)
            A += b
            if i < len(layers) - 1:
                xp.tanh(A, out=A)
        return A

    def host_constants(self):
        return (*(a for layer in self._layers for a in layer), self._mean, self._std)

    def targets(self, xp, X, constants):
        *weights, mean, std = constants
        A = self._apply(xp, X, list(zip(weights[0::2], weights[1::2])))
        A -= mean
        A /= std
        return A


class Linear(Task):
    """Y = X @ B with B ~ N(0, 1/n): unit-variance outputs."""

    name = "linear"

    def __init__(self, n_features, n_outputs=1, noise=0.1, seed=0):
        super().__init__(n_features, n_outputs, noise, seed)
        self._B = host_rng(seed, "linear-coefficients").standard_normal((self.n_features, self.n_outputs))
        self._B /= math.sqrt(self.n_features)

    def host_constants(self):
        return (self._B,)

    def targets(self, xp, X, constants):
        return xp.matmul(X, constants[0])


class Friedman1(Task):
    """Friedman #1: y = 10 sin(pi x0 x1) + 20 (x2 - 1/2)^2 + 10 x3 + 5 x4, x ~ U(0, 1); extra features are noise."""

    name = "friedman1"

    def __init__(self, n_features=10, n_outputs=1, noise=1.0, seed=0):
        super().__init__(n_features, n_outputs, noise, seed)
        if self.n_features < 5:
            raise ValueError(f"friedman1 needs at least 5 features (n_features; gpunn's --features), got "
                             f"{self.n_features}")
        if self.n_outputs != 1:
            raise ValueError(f"friedman1 has one output (n_outputs; gpunn's --outputs), got {self.n_outputs}")

    def inputs(self, rngs, rows, dtype):
        return uniforms(rngs, rows, self.n_features, 0.0, 1.0, dtype)

    def targets(self, xp, X, constants):
        x = [X[:, i] for i in range(5)]
        y = 10 * xp.sin(math.pi * x[0] * x[1]) + 20 * (x[2] - 0.5) ** 2 + 10 * x[3] + 5 * x[4]
        return y.reshape(-1, 1)


class Sinusoid(Task):
    """y_k = sin(freq * x . d_k + phase_k) with random unit directions d_k, x ~ U(-pi, pi)."""

    name = "sinusoid"

    def __init__(self, n_features=1, n_outputs=1, noise=0.05, seed=0, frequency=1.0):
        super().__init__(n_features, n_outputs, noise, seed)
        rng = host_rng(seed, "sinusoid")
        d = rng.standard_normal((self.n_features, self.n_outputs))
        self._D = frequency * d / numpy.linalg.norm(d, axis=0, keepdims=True)
        self._phase = rng.uniform(0, 2 * math.pi, self.n_outputs)

    def inputs(self, rngs, rows, dtype):
        return uniforms(rngs, rows, self.n_features, -math.pi, math.pi, dtype)

    def host_constants(self):
        return (self._D, self._phase)

    def targets(self, xp, X, constants):
        D, phase = constants
        Y = xp.matmul(X, D)
        Y += phase
        return xp.sin(Y, out=Y)


TASKS = {cls.name: cls for cls in (Teacher, Linear, Friedman1, Sinusoid)}


def default_noise(task) -> float:
    """The noise std task ``task`` (a name) adds by default: what :func:`make` with ``noise=None`` uses, and an
    unset ``gpunn train --noise``."""
    return inspect.signature(get_task_class(task)).parameters["noise"].default


def default_features(task) -> int | None:
    """The input width task ``task`` (a name) has by default (friedman1's 10, sinusoid's 1), or None where it has
    none and needs ``n_features`` (teacher, linear): what :func:`make` with ``n_features=None`` uses."""
    default = inspect.signature(get_task_class(task)).parameters["n_features"].default
    return None if default is inspect.Parameter.empty else default


def get_task_class(task):
    """The Task class named ``task``, in any letter case as an optimizer's or activation's name ("Friedman1"), or
    ValueError naming the tasks there are, with the one meant where there is one ("friedman": 'friedman1')."""
    return TASKS[known_name(task, list(TASKS), "task")]


def task_keywords(task) -> tuple:
    """The keyword options of the task named ``task`` beyond every task's (Teacher's ``hidden``, Sinusoid's
    ``frequency``); none for a Task object, whose options are set."""
    if isinstance(task, Task):
        return ()
    shared = inspect.signature(Task.__init__).parameters
    return tuple(p for p in inspect.signature(get_task_class(task).__init__).parameters if p not in shared)


def refuse_unknown_options(call: str, function, task, options) -> None:
    """A TypeError for a keyword of ``options`` that is neither ``function``'s own (``call``'s, the name said) nor an
    option of ``task`` (task_keywords), hinting the one meant (hints.unexpected_keyword): checked before the task
    is made, where ``n_feature=3`` was refused as n_features missing, and a task option misspelt (``hiden``) in its
    class's name ("Teacher.__init__()"), neither naming the keyword."""
    from .hints import unexpected_keyword

    taken = task_keywords(task)
    for key in options:
        if key not in taken:
            own = [p for p, spec in inspect.signature(function).parameters.items()
                   if spec.kind != spec.VAR_KEYWORD and p != "self"]
            raise unexpected_keyword(call, key, [*own, *taken])


def get_task(task="teacher", n_features=None, n_outputs=1, noise=None, seed=0, **kwargs) -> Task:
    """The task named ``task`` (see :func:`make`); None for n_features or noise: the task's default."""
    if isinstance(task, Task):
        return task
    cls = get_task_class(task)
    task = cls.name  # ("Friedman1": friedman1, as its messages name it)
    args = dict(n_outputs=n_outputs, seed=seed, **kwargs)
    if n_features is not None:
        args["n_features"] = n_features
    elif default_features(task) is None:
        # (it raised "Teacher.__init__() missing 1 required positional argument")
        raise ValueError(f"the {task} task needs n_features (its input width), got None")
    if noise is not None:
        args["noise"] = noise
    return cls(**args)


def _chunks(task, backend, n_samples, dtype, first_chunk=0):
    for index in range(first_chunk, math.ceil(n_samples / CHUNK_ROWS)):
        rows = min(CHUNK_ROWS, n_samples - index * CHUNK_ROWS)
        yield task.chunk(backend, index, rows, dtype)


def make(task="teacher", n_samples=10000, n_features=None, n_outputs=1, noise=None, seed=0,
         device="auto", dtype="float32", **kwargs):
    """(X, Y) for a task, generated on ``device``: X is (n_samples, n_features), Y (n_samples, n_outputs),
    always 2-D.

    task: "teacher" (a random MLP with tanh hidden layers of widths ``hidden=(32, 32)``, each output
    standardized to mean 0 and unit variance; X ~ N(0, 1)), "linear" (Y = X B, B ~ N(0, 1/n_features); X ~ N(0, 1)),
    "friedman1" (Friedman #1 on its first 5 features, the others noise; X ~ U(0, 1); one output) or
    "sinusoid" (y_k = sin(frequency x . d_k + phase_k) for random unit directions d_k, ``frequency=1.0``;
    X ~ U(-pi, pi)). n_features: the input width; teacher and linear need it, friedman1 defaults to 10
    (at least 5) and sinusoid to 1. noise: the standard deviation of the Gaussian noise added to Y;
    None is the task's default, 0.1 for teacher and linear, 1.0 for friedman1, 0.05 for sinusoid.
    seed: a non-negative int; one seed gives the same rows on one backend (a GPU draws from Philox, the
    CPU from NumPy's generator, so CPU and GPU rows differ). device: "auto", "cpu", "cuda" or "cuda:N". dtype: float32 or
    float64. Other keywords go to the task (``hidden`` for teacher, ``frequency`` for sinusoid).
    """
    refuse_unknown_options("make", make, task, kwargs)
    backend = _backend.resolve(device)
    dtype = canonical_dtype(dtype)  # NumPy said "Unsupported dtype dtype('float16') for standard_normal"
    n_samples = positive_int(n_samples, "n_samples")
    task = get_task(task, n_features, n_outputs, noise, seed, **kwargs)
    xp = backend.xp
    with backend.use():
        X = xp.empty((n_samples, task.n_features), dtype)
        Y = xp.empty((n_samples, task.n_outputs), dtype)
        for i, (Xc, Yc) in enumerate(_chunks(task, backend, n_samples, dtype)):
            X[i * CHUNK_ROWS:i * CHUNK_ROWS + len(Xc)] = Xc
            Y[i * CHUNK_ROWS:i * CHUNK_ROWS + len(Yc)] = Yc
    return X, Y


def stream(task="teacher", n_samples=10**9, batch_size=1024, n_features=None, n_outputs=1, noise=None,
           seed=0, device="auto", dtype="float32", **kwargs):
    """Yield (X, Y) batches of ``batch_size`` rows (the last may be shorter) of a dataset of n_samples
    rows, holding one chunk of 65,536 rows in memory at a time.

    The rows are exactly those ``make`` would return for the same arguments; the options are make's,
    checked here, as make checks them, not at the first batch.
    """
    refuse_unknown_options("stream", stream, task, kwargs)
    backend = _backend.resolve(device)
    dtype = canonical_dtype(dtype)
    batch_size = positive_int(batch_size, "batch_size")
    n_samples = positive_int(n_samples, "n_samples")
    task = get_task(task, n_features, n_outputs, noise, seed, **kwargs)
    return _batches(task, backend, n_samples, dtype, batch_size)


def _batches(task, backend, n_samples, dtype, batch_size):
    return backend.made_on_device(rebatch(_chunks(task, backend, n_samples, dtype), batch_size, backend.xp))


def rebatch(pieces, batch_size, xp, skip=0):
    """Batches of exactly ``batch_size`` rows (the last may be shorter) from (X, Y) pieces of any
    sizes, in order; a batch that straddles pieces is concatenated. The first ``skip`` rows of the
    first piece are dropped (a resume part-way through it)."""
    pending_X, pending_Y, pending = [], [], 0
    for X, Y in pieces:
        start, skip = skip, 0
        if pending:  # complete the batch that straddles the boundary
            take = min(batch_size - pending, len(X) - start)
            pending_X.append(X[start:start + take])
            pending_Y.append(Y[start:start + take])
            pending += take
            start += take
            if pending < batch_size:
                continue
            yield xp.concatenate(pending_X), xp.concatenate(pending_Y)
            pending_X, pending_Y, pending = [], [], 0
        while start + batch_size <= len(X):
            yield X[start:start + batch_size], Y[start:start + batch_size]
            start += batch_size
        if start < len(X):
            pending_X, pending_Y, pending = [X[start:]], [Y[start:]], len(X) - start
    if pending:
        yield xp.concatenate(pending_X), xp.concatenate(pending_Y)
