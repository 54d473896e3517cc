"""Seeded random streams on the target device.

A stream is keyed by words (seed, purpose, index...), so any piece of work (an
epoch's shuffle, a chunk of a dataset) can be regenerated on its own: resuming
or streaming needs no saved generator state; a checkpoint records only which generator draws (:func:`generator`).
"""
from __future__ import annotations

import zlib

import numpy


def _words(words):
    return [w if isinstance(w, int) else zlib.crc32(str(w).encode()) for w in words]


class DeviceRNG:
    """Normal, uniform and permutation draws made directly in the backend's memory.

    On the CPU, NumPy's generator seeded by the words' SeedSequence. On a GPU, normal and uniform draws are
    Philox4x32-10 (kernels/philox.cuh, kernels/random.cu) under a 64-bit key from the same SeedSequence (the third
    word of its state; the first two key the permutations), each draw at the next draw number of its counter: a
    stream's draws take disjoint counters, and a value is a function of (key, draw number, position) alone. So a
    stream needs no generator state on the device, per thread or per CUDA stream, no seeding, and nothing of
    cuRAND's (whose re-seed and draws failed beside another thread's CUDA graph capture on an H200), and several
    streams' draws go in one launch (:func:`normals`, :func:`uniforms`: a synthetic window's chunks)."""

    def __init__(self, backend, *words):
        self.backend = backend
        seq = numpy.random.SeedSequence(_words(words))
        if backend.is_gpu:
            state = seq.generate_state(3, numpy.uint64)  # (a prefix of the state: the first two as before)
            self._keys = (state[0], state[1])  # the permutation's
            self.key, self.draws = int(state[2]), 0  # Philox's key; the normal and uniform draws taken
        else:
            self._cpu_gen = numpy.random.default_rng(seq)

    def normal(self, shape, dtype):
        if self.backend.is_gpu:
            return _philox(_NORMAL, [self], [_size(shape)], dtype).reshape(shape)
        return self._cpu_gen.standard_normal(shape, dtype=dtype)

    def uniform(self, shape, low, high, dtype):
        """Uniform on [low, high): NumPy's on the CPU; on a GPU low + (high - low) u, u in (0, 1], rounded in dtype,
        so within [low, high] (low through rounding only; high through rounding or u = 1)."""
        if self.backend.is_gpu:
            return _philox(_UNIFORM, [self], [_size(shape)], dtype, low, high).reshape(shape)
        return self._cpu_gen.uniform(low, high, shape).astype(dtype, copy=False)

    def permutation(self, n):
        if self.backend.is_gpu:
            return hash_permutation(self.backend.xp, n, *self._keys)
        return self._cpu_gen.permutation(n)


# What draws a DeviceRNG's normal and uniform values, as a checkpoint records it with a source whose rows are drawn
# (gpunn.data.SyntheticSource's, an ensemble's bootstrap resamples): a resume on another generator would train on other
# rows, which gpunn.checkpoint refuses. A change to what a stream draws on either (the key, the counter layout, the
# transform to normals or uniforms) must change its name here. (The shuffles' permutations are named apart, below.)
GPU_GENERATOR = "gpunn philox4x32-10"  # kernels/random.cu, keyed and laid out as DeviceRNG says
CPU_GENERATOR = "numpy " + type(numpy.random.default_rng(0).bit_generator).__name__  # default_rng's: "numpy PCG64"


def generator(backend) -> str:
    """The name of the generator that draws DeviceRNG's normal and uniform values on ``backend``."""
    return GPU_GENERATOR if backend.is_gpu else CPU_GENERATOR


# What orders an epoch's rows (DeviceRNG.permutation: in-memory arrays', an Ensemble's, a data-parallel run's global
# order, a data source's windows), as a checkpoint of a shuffled run records it ("shuffled_by"): the CPU's and the
# GPU's differ for the same (seed, epoch), so a run resumed part-way through an epoch on the other kind of device
# trains the rest of it in another order, which gpunn.checkpoint warns of. A change to either permutation must
# change its name here.
GPU_SHUFFLE = "gpunn hash_permutation"  # argsort of 32-bit splitmix64 keys of the row numbers
CPU_SHUFFLE = f"{CPU_GENERATOR} permutation"  # NumPy's Generator.permutation


def shuffler(backend) -> str:
    """The name of the permutation that DeviceRNG's ``permutation`` draws on ``backend``."""
    return GPU_SHUFFLE if backend.is_gpu else CPU_SHUFFLE


def normals(rngs, rows, cols, dtype):
    """Each stream's next draw of (rows[i], cols) standard normals, stacked in order: (sum(rows), cols), each
    stream's rows what its own ``normal`` gives. On a GPU one launch for every stream; on the CPU each stream's
    NumPy draw (one stream's array itself, not a copy)."""
    if rngs[0].backend.is_gpu:
        return _philox(_NORMAL, rngs, [r * cols for r in rows], dtype).reshape(-1, cols)
    return _stacked([rng.normal((r, cols), dtype) for rng, r in zip(rngs, rows)])


def uniforms(rngs, rows, cols, low, high, dtype):
    """As :func:`normals`, uniform draws from low to high (:meth:`DeviceRNG.uniform`)."""
    if rngs[0].backend.is_gpu:
        return _philox(_UNIFORM, rngs, [r * cols for r in rows], dtype, low, high).reshape(-1, cols)
    return _stacked([rng.uniform((r, cols), low, high, dtype) for rng, r in zip(rngs, rows)])


def _stacked(arrays):
    return arrays[0] if len(arrays) == 1 else numpy.concatenate(arrays)


def _size(shape) -> int:
    return int(numpy.prod(shape, dtype=numpy.int64))


_NORMAL, _UNIFORM = "philox_normal", "philox_uniform"
BLOCK = 256  # threads per block of kernels/random.cu's draws: one Philox block (4 float or 2 double values) each
MAX_GRID = (4096, 65535)  # blocks in x (a stream's values: a grid-stride loop beyond) and y (streams: CUDA's limit)


def _philox(kernel, rngs, sizes, dtype, low=None, high=None):
    """One launch of ``kernel`` (kernels/random.cu) drawing sizes[i] values from stream rngs[i] at its next draw
    number, the streams' values one after another in a new flat array. The streams' table (key, draw number, first
    value) goes to the device with the launch (a copy from pinned memory, asynchronous: CuPy's)."""
    backend = rngs[0].backend
    xp, dtype = backend.xp, numpy.dtype(dtype)
    table, start = [], 0
    for rng, size in zip(rngs, sizes):
        table.append((rng.key, rng.draws, start))
        rng.draws += 1
        start += size
    out = xp.empty(start, dtype)
    if start:
        from .ops.kernels import get_kernel

        per = 4 if dtype.itemsize == 4 else 2  # values of one Philox block (kernels/philox.cuh philox_per_block)
        grid = (min(-(-max(sizes) // (per * BLOCK)), MAX_GRID[0]), min(len(rngs), MAX_GRID[1]))
        bounds = () if low is None else (dtype.type(low), dtype.type(float(high) - float(low)))
        args = (xp.asarray(numpy.array(table, numpy.uint64)), numpy.int64(len(rngs)), numpy.int64(start), *bounds, out)
        get_kernel(kernel, dtype)(grid, (BLOCK,), args)
    return out


# splitmix64's constants (Steele, Lea and Flood 2014; the finalizer is Stafford's Mix13)
_GOLDEN = numpy.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = numpy.uint64(0xBF58476D1CE4E5B9), numpy.uint64(0x94D049BB133111EB)


def _mix64(z):
    """splitmix64's finalizer, in place on a uint64 array: a bijection of 64-bit words with full avalanche."""
    z ^= z >> 30
    z *= _MIX1
    z ^= z >> 27
    z *= _MIX2
    z ^= z >> 31
    return z


def hash_permutation(xp, n: int, key0, key1):
    """A permutation of range(n) on ``xp``'s device: the argsort of the rows' 32-bit keys, the high half of
    mix(mix(i * golden + key0) ^ key1) (a bijection of 64-bit words). A function of the two keys alone: the same
    on every thread and stream. 32-bit keys, as CuPy's permutation sorted (README, "Data sources"): 8 bytes a row
    fewer in the sort than 64-bit ones; the rows whose keys tie (about n**2 / 2**33 pairs) stay in index order
    (CuPy's sort is stable), each pair two random rows.

    Why not cuRAND (CuPy's RandomState.permutation, which sorts n cuRAND draws): a cuRAND generator is
    state on the device, so its draws need one generator per thread and stream, re-seeded for each
    stream of draws; and on an H200 (CuPy 14.2) a cuRAND draw on one thread failed with
    CURAND_STATUS_LAUNCH_FAILURE while another thread held a CUDA graph capture open, where CuPy's own
    kernels ran (tests/test_graph_gpu.py). These are CuPy's elementwise kernels and its sort, on the
    current stream."""
    z = xp.arange(n, dtype=xp.uint64)
    z *= _GOLDEN
    z += numpy.uint64(key0)
    _mix64(z)
    z ^= numpy.uint64(key1)
    keys = (_mix64(z) >> 32).astype(xp.uint32)
    del z  # before the sort, which needs the most memory
    return xp.argsort(keys)


def host_rng(*words) -> numpy.random.Generator:
    return numpy.random.default_rng(numpy.random.SeedSequence(_words(words)))
