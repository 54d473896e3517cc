"""Seeded random streams on the target device.

A stream is keyed by words (seed, purpose, index...), so any piece of work (an
epoch's shuffle, a chunk of a dataset) can be regenerated on its own: resuming
or streaming needs no saved generator state.
"""
from __future__ import annotations

import threading
import zlib

import numpy


def _words(words):
    return [w if isinstance(w, int) else zlib.crc32(str(w).encode()) for w in words]


class DeviceRNG:
    """Normal, uniform and permutation draws made directly in the backend's memory."""

    def __init__(self, backend, *words):
        self.backend = backend
        seq = numpy.random.SeedSequence(_words(words))
        if backend.is_gpu:
            # the permutation's two keys, and cuRAND's seed, which is taken up at the first normal or uniform draw
            state = seq.generate_state(2, numpy.uint64)
            self._keys = (state[0], state[1])
            self._seed, self._cupy_gen = int(state[0]) >> 1, None
        else:
            self._cpu_gen = numpy.random.default_rng(seq)

    @property
    def _gen(self):
        """NumPy's generator on the CPU; on a GPU the cuRAND generator of this device, thread and current stream,
        re-seeded to this stream's seed (made or re-seeded at the first draw that needs it, with the device current)."""
        if not self.backend.is_gpu:
            return self._cpu_gen
        if self._cupy_gen is None:
            with self.backend.use():
                self._cupy_gen = _gpu_generator(self.backend, self._seed)
        return self._cupy_gen

    def normal(self, shape, dtype):
        return self._gen.standard_normal(shape, dtype=dtype)

    def uniform(self, shape, low, high, dtype):
        if self.backend.is_gpu:
            return self._gen.uniform(low, high, shape, dtype=dtype)
        return self._gen.uniform(low, high, shape).astype(dtype, copy=False)

    def permutation(self, n):
        if self.backend.is_gpu:
            return hash_permutation(self.backend.xp, n, *self._keys)
        return self._gen.permutation(n)


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


# One cupy.random.RandomState (one cuRAND generator) per device, re-seeded for each stream: building a
# generator per epoch or per dataset chunk costs a cuRAND set-up each time. Re-seeding gives exactly the
# state of a fresh RandomState(seed) (CuPy's __init__ calls the same seed()), so streams stay keyed by
# their words. One generator per thread, too; within a thread a stream's draws must be taken before
# another DeviceRNG on that device draws (true everywhere in gpunn: each stream is used at once).
# And one per CUDA stream: a generator's state lives in device memory, and kernels of two streams
# drawing from one generator (a window generated on a side stream while the training stream draws,
# gpunn.data.pipeline) would race on it. Permutations take none (hash_permutation).
_GPU_GENERATORS: dict = {}


def _gpu_generator(backend, seed: int):
    key = (backend.xp, backend.device_id, threading.get_ident(), backend.xp.cuda.get_current_stream().ptr)
    gen = _GPU_GENERATORS.get(key)
    if gen is None:
        gen = _GPU_GENERATORS[key] = backend.xp.random.RandomState(seed)
    else:
        gen.seed(seed)
    return gen


def host_rng(*words) -> numpy.random.Generator:
    return numpy.random.default_rng(numpy.random.SeedSequence(_words(words)))
