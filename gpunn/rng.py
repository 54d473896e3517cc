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
            with backend.use():
                self._gen = _gpu_generator(backend, int(seq.generate_state(1, numpy.uint64)[0]) >> 1)
        else:
            self._gen = numpy.random.default_rng(seq)

    def normal(self, shape, dtype):
        return self._gen.standard_normal(shape, dtype=dtype)

    def uniform(self, shape, low, high, dtype):
        if self.backend.is_gpu:
            return self._gen.uniform(low, high, shape, dtype=dtype)
        return self._gen.uniform(low, high, shape).astype(dtype, copy=False)

    def permutation(self, n):
        return self._gen.permutation(n)


# One cupy.random.RandomState (one cuRAND generator) per device, re-seeded for each stream: building a
# generator per epoch or per dataset chunk costs a cuRAND set-up each time. Re-seeding gives exactly the
# state of a fresh RandomState(seed) (CuPy's __init__ calls the same seed()), so streams stay keyed by
# their words. One generator per thread, too; within a thread a stream's draws must be taken before
# the next DeviceRNG on that device is made (true everywhere in gpunn: each stream is used at once).
# And one per CUDA stream: a generator's state lives in device memory, and kernels of two streams
# drawing from one generator (a window permuted on the training stream while the next is generated
# on a side stream, gpunn.data.pipeline) would race on it.
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
