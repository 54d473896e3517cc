"""kernels/philox.cuh in NumPy: Philox4x32-10 over arrays of counters (uint32 words, products in uint64), its
uniform and Box-Muller conversions, and what kernels/random.cu writes for one stream's draw.

The reference the header is checked against on the host (tests/test_philox_host.py, bit for bit for the words and
uniforms, to a few ulps for normals: the libm's log, sin and cos), that tests/fakecupy computes random.cu's
launches with, and that a GPU test compares the device's draws with (tests/test_rng.py).
"""
from __future__ import annotations

import numpy

M0, M1 = numpy.uint64(0xD2511F53), numpy.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
LOW32 = numpy.uint64(0xFFFFFFFF)
TWO_PI = 6.283185307179586


def philox4x32_10(counter, key):
    """The 4 output words (a uint32 array shaped like each counter word) of counters ``counter`` (4 arrays or
    ints) under keys ``key`` (2 arrays or ints), all broadcast together."""
    c0, c1, c2, c3 = (numpy.asarray(c, numpy.uint64) for c in counter)
    k0, k1 = (numpy.asarray(k, numpy.uint64) for k in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + numpy.uint64(W0)) & LOW32, (k1 + numpy.uint64(W1)) & LOW32
        p0, p1 = M0 * c0, M1 * c2  # 32 x 32 -> 64 bits: no wrap in uint64
        c0, c1, c2, c3 = (p1 >> numpy.uint64(32)) ^ c1 ^ k0, p1 & LOW32, (p0 >> numpy.uint64(32)) ^ c3 ^ k1, p0 & LOW32
    return numpy.stack(numpy.broadcast_arrays(c0, c1, c2, c3)).astype(numpy.uint32)


def blocks(key: int, draw: int, first: int, count: int):
    """The words of value blocks first .. first + count - 1 of draw ``draw`` of the stream keyed ``key``: (4, count)."""
    b = numpy.arange(first, first + count, dtype=numpy.uint64)
    draw, key = int(draw), int(key)
    return philox4x32_10((b & LOW32, b >> numpy.uint64(32), draw & 0xFFFFFFFF, draw >> 32),
                         (key & 0xFFFFFFFF, key >> 32))


def uniform01_f32(x):
    """(float(x) + 1/2) 2^-32 in float32: (0, 1]."""
    return (numpy.asarray(x, numpy.uint32).astype(numpy.float32) + numpy.float32(0.5)) * numpy.float32(2.0 ** -32)


def uniform01_f64(hi, lo):
    """(the high 53 bits of (hi, lo) + 1) 2^-53: (0, 1]."""
    bits = ((numpy.asarray(hi, numpy.uint64) << numpy.uint64(32)) | numpy.asarray(lo, numpy.uint64)) >> numpy.uint64(11)
    return (bits + numpy.uint64(1)).astype(numpy.float64) * 2.0 ** -53


def box_muller(u1, u2):
    """r cos(2 pi u2), r sin(2 pi u2), r = sqrt(-2 log u1), in u1's dtype."""
    t = u1.dtype.type
    with numpy.errstate(all="ignore"):
        r = numpy.sqrt(t(-2) * numpy.log(u1))
        theta = t(TWO_PI) * u2
        return r * numpy.cos(theta), r * numpy.sin(theta)


def per_block(dtype) -> int:
    return 4 if numpy.dtype(dtype).itemsize == 4 else 2


def normals_of(words, dtype):
    """The normals of blocks of words (4, n): (n * per_block) values in block order."""
    if numpy.dtype(dtype) == numpy.float32:
        u = uniform01_f32(words)
        pairs = [*box_muller(u[0], u[1]), *box_muller(u[2], u[3])]
    else:
        pairs = box_muller(uniform01_f64(words[0], words[1]), uniform01_f64(words[2], words[3]))
    return numpy.stack(pairs, axis=1).reshape(-1)


def uniforms_of(words, dtype, low=0.0, scale=1.0):
    """The uniforms low + scale u of blocks of words (4, n), in dtype's arithmetic."""
    t = numpy.dtype(dtype).type
    if t is numpy.float32:
        u = uniform01_f32(words).T
    else:
        u = numpy.stack([uniform01_f64(words[0], words[1]), uniform01_f64(words[2], words[3])], axis=1)
    return (t(low) + t(scale) * u).reshape(-1)


def draw(kind: str, key: int, draw_index: int, count: int, dtype, low=0.0, scale=1.0):
    """Values 0 .. count - 1 of a stream's draw as kernels/random.cu writes them: kind "normal" or "uniform"."""
    per = per_block(dtype)
    words = blocks(key, draw_index, 0, -(-int(count) // per))
    values = normals_of(words, dtype) if kind == "normal" else uniforms_of(words, dtype, low, scale)
    return values[:int(count)]
