"""kernels/philox.cuh on the host: Philox4x32-10 against Random123's known answers, and the header (g++, through
tests/kernel_harness/philox_harness.cpp) against its NumPy reference (tests/philox_reference.py): the words and the
uniforms bit for bit, the normals to a few ulps (each side's libm log, sin and cos). Then the reference's draws as a
generator: moments within sampling error, and no correlation between adjacent streams, draws or values."""
from __future__ import annotations

import ctypes
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

import philox_reference as ref
from host_library import build_host_library

HARNESS = Path(__file__).resolve().parent / "kernel_harness" / "philox_harness.cpp"

# Random123's known-answer vectors for philox4x32 10 (Random123 tests/kat_vectors, also quoted by cuRAND's and
# JAX's tests): counter[4] key[2] -> output[4].
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
EDGE_WORDS = [0, 1, 2, 255, 256, 2**23, 2**24 - 1, 2**24, 2**24 + 1, 2**31 - 1, 2**31, 2**32 - 257, 2**32 - 129,
              2**32 - 128, 2**32 - 2, 2**32 - 1]


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    _, lib = build_host_library(tmp_path_factory, HARNESS, "philox_harness", ["-O2", "-Wall", "-Wextra", "-Werror"],
                                "the Philox harness")
    u32, ll = ctypes.POINTER(ctypes.c_uint32), ctypes.c_longlong
    f32, f64 = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_double)
    u64 = ctypes.c_ulonglong
    lib.philox_words.argtypes = [u32, u32, u32, ll]
    lib.philox_blocks.argtypes = [u64, u64, u64, u32, ll]
    lib.uniform01_float.argtypes = [u32, f32, ll]
    lib.uniform01_double.argtypes = [u32, u32, f64, ll]
    lib.normals_float.argtypes = [u32, f32, ll]
    lib.normals_double.argtypes = [u32, f64, ll]
    lib.uniforms_float.argtypes = [u32, ctypes.c_float, ctypes.c_float, f32, ll]
    lib.uniforms_double.argtypes = [u32, ctypes.c_double, ctypes.c_double, f64, ll]
    for fn in (lib.philox_words, lib.philox_blocks, lib.uniform01_float, lib.uniform01_double, lib.normals_float,
               lib.normals_double, lib.uniforms_float, lib.uniforms_double):
        fn.restype = None
    return lib


def _p(a):
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.POINTER({np.uint32: ctypes.c_uint32, np.float32: ctypes.c_float,
                                            np.float64: ctypes.c_double}[a.dtype.type]))


def header_words(h, counters, keys):
    counters, keys = np.ascontiguousarray(counters, np.uint32), np.ascontiguousarray(keys, np.uint32)
    out = np.zeros_like(counters)
    h.philox_words(_p(counters), _p(keys), _p(out), len(counters))
    return out


def random_words(shape, seed):
    return np.random.default_rng(seed).integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)


def test_philox4x32_10_gives_random123s_known_answers_in_the_header_and_the_reference(h):
    counters = np.array([c for c, _, _ in KAT], np.uint32)
    keys = np.array([k for _, k, _ in KAT], np.uint32)
    want = np.array([w for _, _, w in KAT], np.uint32)
    np.testing.assert_array_equal(header_words(h, counters, keys), want)
    np.testing.assert_array_equal(ref.philox4x32_10(counters.T, keys.T).T, want)


def test_the_header_and_the_reference_give_the_same_words_for_any_counter_and_key(h):
    counters, keys = random_words((20000, 4), 1), random_words((20000, 2), 2)
    edges = np.array(EDGE_WORDS, np.uint32)
    counters[:len(edges)] = edges[:, None]  # every word of the counter and key at an edge value
    keys[:len(edges)] = edges[::-1, None]
    got = header_words(h, counters, keys)
    np.testing.assert_array_equal(got, ref.philox4x32_10(counters.T, keys.T).T)
    assert len(np.unique(got)) > 0.99 * got.size  # (no degenerate output)


@pytest.mark.parametrize("key, draw, first", [(0, 0, 0), (0xFEDCBA9876543210, 1, 2**32 - 3), (2**64 - 1, 2**33 + 7, 5)])
def test_a_streams_block_is_its_counter_block_and_draw_under_its_64_bit_key(h, key, draw, first):
    """Block b of draw d of the stream keyed K is Philox of the counter (b, b >> 32, d, d >> 32) under the key
    (K, K >> 32): the header's philox_block, the reference's blocks and the definition agree, across the carry of
    b into its high word."""
    n = 6
    out = np.zeros((n, 4), np.uint32)
    h.philox_blocks(key, draw, first, _p(out), n)
    b = np.arange(first, first + n, dtype=np.uint64)
    by_definition = ref.philox4x32_10((b & ref.LOW32, b >> np.uint64(32), draw % 2**32, draw >> 32),
                                      (key % 2**32, key >> 32)).T
    np.testing.assert_array_equal(out, by_definition)
    np.testing.assert_array_equal(ref.blocks(key, draw, first, n).T, by_definition)


def test_uniforms_from_words_agree_bit_for_bit_and_lie_in_0_excluded_to_1_included(h):
    x = np.concatenate([np.array(EDGE_WORDS, np.uint32), random_words(50000, 3)])
    got = np.zeros(len(x), np.float32)
    h.uniform01_float(_p(x), _p(got), len(x))
    np.testing.assert_array_equal(got.view(np.uint32), ref.uniform01_f32(x).view(np.uint32))
    assert got[0] == 2.0 ** -33 and got[1] == 1.5 * 2.0 ** -32 and got[len(EDGE_WORDS) - 1] == 1.0
    assert got.min() > 0 and got.max() <= 1
    hi, lo = np.concatenate([x, x[::-1]]), np.concatenate([x[::-1], x])
    got64 = np.zeros(len(hi), np.float64)
    h.uniform01_double(_p(hi), _p(lo), _p(got64), len(hi))
    np.testing.assert_array_equal(got64.view(np.uint64), ref.uniform01_f64(hi, lo).view(np.uint64))
    both_zero, both_ones = np.uint32(0), np.uint32(2**32 - 1)
    assert ref.uniform01_f64(both_zero, both_zero) == 2.0 ** -53 and ref.uniform01_f64(both_ones, both_ones) == 1.0
    assert got64.min() > 0 and got64.max() <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_normals_agree_to_a_few_ulps_and_uniforms_with_bounds_bit_for_bit(h, dtype):
    """Box-Muller in T's arithmetic: the header (g++'s libm) and NumPy (its own float32 log, sin and cos) differ by
    a few ulps at most; low + scale u is two roundings on both sides (the device's too: no FMA), so exactly equal."""
    n = 40000
    words = random_words((n, 4), 4)
    words[:len(EDGE_WORDS)] = np.array(EDGE_WORDS, np.uint32)[:, None]  # u = 1 (radius 0) and the smallest u
    per = ref.per_block(dtype)
    suffix = "float" if dtype == np.float32 else "double"
    got = np.zeros(n * per, dtype)
    getattr(h, f"normals_{suffix}")(_p(words), _p(got), n)
    want = ref.normals_of(words.T, dtype)
    eps = np.finfo(dtype).eps
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    # (float32 here: 5 ulps at most, a fifth of the values differ; float64: none, both sides glibc's libm)
    assert np.isfinite(got).all() and (err <= eps * (8 * np.abs(want) + 2)).all(), (err / eps).max()
    low, high = (dtype(-np.pi), dtype(np.pi))
    scale = dtype(float(high) - float(low))
    uni = np.zeros(n * per, dtype)
    getattr(h, f"uniforms_{suffix}")(_p(words), low, scale, _p(uni), n)
    np.testing.assert_array_equal(uni, ref.uniforms_of(words.T, dtype, low, scale))
    assert uni.min() >= low and uni.max() <= low + scale  # (low itself: low + scale u rounded, u small)


# ---- the reference's draws as a generator (what a GPU's rows are drawn with) ---------------------------------

def _keys(*words):
    return int(np.random.SeedSequence([w if isinstance(w, int) else zlib.crc32(w.encode()) for w in words])
               .generate_state(3, np.uint64)[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_million_normals_have_the_moments_of_a_standard_normal(dtype):
    """Mean 0, variance 1, skewness 0 and kurtosis 3 within 5 standard errors of 2^20 draws, and the tail
    beyond 3 sigma at its probability (0.0027) within 5 standard errors."""
    n = 2**20
    x = ref.draw("normal", _keys(7, "teacher", 0), 0, n, dtype).astype(np.float64)
    se = 1 / math.sqrt(n)
    assert abs(x.mean()) < 5 * se
    assert abs(x.var() - 1) < 5 * math.sqrt(2) * se
    assert abs(((x - x.mean()) ** 3).mean()) < 5 * math.sqrt(15) * se
    assert abs((x ** 4).mean() - 3) < 5 * math.sqrt(96) * se
    tail, p = (np.abs(x) > 3).mean(), math.erfc(3 / math.sqrt(2))
    assert abs(tail - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_uniforms_fill_their_bins_evenly():
    """2^20 float32 uniforms in 256 bins: chi-square within its mean 255 + 5 standard deviations (sqrt(510))."""
    u = ref.draw("uniform", _keys(7, "bootstrap", 3), 0, 2**20, np.float32)
    counts = np.bincount(np.minimum((u * 256).astype(np.int64), 255), minlength=256)
    expected = len(u) / 256
    assert ((counts - expected) ** 2 / expected).sum() < 255 + 5 * math.sqrt(2 * 255)


def test_adjacent_streams_draws_and_values_are_uncorrelated():
    """What a dataset puts side by side: chunk k's and chunk k+1's inputs (streams keyed by adjacent words), a
    chunk's inputs and its noise (draws 0 and 1 of one stream), and neighbouring values of one draw (the four of a
    block, and one block's with the next's): every correlation within 5 / sqrt(n) of 0."""
    n = 2**18
    a = ref.draw("normal", _keys(1, "teacher", 4), 0, n, np.float32).astype(np.float64)
    pairs = {
        "chunk k, k + 1": ref.draw("normal", _keys(1, "teacher", 5), 0, n, np.float32),
        "draws 0, 1": ref.draw("normal", _keys(1, "teacher", 4), 1, n, np.float32),
        "values i, i + 1": np.roll(a, -1),
        "values i, i + 4": np.roll(a, -4),
        "seed s, s + 1": ref.draw("normal", _keys(2, "teacher", 4), 0, n, np.float32),
    }
    for what, b in pairs.items():
        r = np.corrcoef(a, b.astype(np.float64))[0, 1]
        assert abs(r) < 5 / math.sqrt(n), (what, r)
