// philox.cuh -- the counter-based generator Philox4x32-10 and its conversions to uniform and normal values.
//
// Philox4x32-10 (Salmon, Moraes, Dror and Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3"; the
// round of Random123 and of cuRAND's curand_Philox4x32_10, which JAX and PyTorch draw from too) maps a
// 128-bit counter and a 64-bit key to 128 random bits: no state, so any value of any stream is computed on
// its own, by any thread, in any launch. gpunn's layout (gpunn/rng.py, kernels/random.cu): the key is a
// stream's (its words' SeedSequence), the counter (block, block >> 32, draw, draw >> 32) for value block
// `block` of the stream's draw number `draw`.
//
// The NumPy reference, tested against this header element for element (tests/test_philox_host.py), is
// tests/philox_reference.py. Compiles as CUDA (nvcc, NVRTC) and as plain C++ (g++).
#pragma once

#include "activations.cuh"  // GPUNN_HD, m_sqrt, m_log, m_cos, m_sin

namespace gpunn {

// 32-bit words: `unsigned` is 32 bits wherever CUDA runs (NVRTC has no <stdint.h>).
struct PhiloxWords {
    unsigned x[4];
};

constexpr unsigned kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;  // the multipliers
constexpr unsigned kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;  // the key's Weyl increments

// One round: (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)).
GPUNN_HD PhiloxWords philox_round(PhiloxWords c, unsigned k0, unsigned k1) {
    const unsigned long long p0 = (unsigned long long)kPhiloxM0 * c.x[0];
    const unsigned long long p1 = (unsigned long long)kPhiloxM1 * c.x[2];
    return PhiloxWords{{(unsigned)(p1 >> 32) ^ c.x[1] ^ k0, (unsigned)p1, (unsigned)(p0 >> 32) ^ c.x[3] ^ k1,
                        (unsigned)p0}};
}

// Ten rounds, the key bumped by the Weyl increments before each round after the first.
GPUNN_HD PhiloxWords philox4x32_10(PhiloxWords counter, unsigned k0, unsigned k1) {
    counter = philox_round(counter, k0, k1);
    for (int r = 1; r < 10; ++r) {
        k0 += kPhiloxW0;
        k1 += kPhiloxW1;
        counter = philox_round(counter, k0, k1);
    }
    return counter;
}

// The 128 bits of value block `block` of draw `draw` of the stream keyed `key`.
GPUNN_HD PhiloxWords philox_block(unsigned long long key, unsigned long long draw, unsigned long long block) {
    const PhiloxWords counter{{(unsigned)block, (unsigned)(block >> 32), (unsigned)draw, (unsigned)(draw >> 32)}};
    return philox4x32_10(counter, (unsigned)key, (unsigned)(key >> 32));
}

// A word to a uniform in (0, 1]: (float(x) + 1/2) 2^-32 (float(x) rounded to nearest, as CUDA's and C's
// conversions round; cuRAND's curand_uniform). Small values keep their low bits (2^-33 at least), so a
// Box-Muller radius reaches 6.7 standard deviations; 1 is reached from the top 128 words.
GPUNN_HD float uniform01_f32(unsigned x) { return ((float)x + 0.5f) * 0x1p-32f; }

// Two words to a uniform in (0, 1] on the grid k 2^-53, k = 1 .. 2^53 (exact in double): the high 53 bits
// of (hi, lo), plus one.
GPUNN_HD double uniform01_f64(unsigned hi, unsigned lo) {
    const unsigned long long bits = (((unsigned long long)hi << 32) | lo) >> 11;
    return (double)(bits + 1) * 0x1p-53;
}

// low + scale u, each operation rounded on its own: the device must not fuse them into an FMA (nvcc and NVRTC do
// by default), so that the value has the bits NumPy's two operations give. (Plain C++ under -std=c++17 does not
// contract.)
template <typename T>
GPUNN_HD T affine_rn(T low, T scale, T u) {
#ifdef __CUDA_ARCH__
    if constexpr (sizeof(T) == 4) {
        return __fadd_rn(low, __fmul_rn(scale, u));
    } else {
        return __dadd_rn(low, __dmul_rn(scale, u));
    }
#else
    return low + scale * u;
#endif
}

// Box-Muller: u1, u2 in (0, 1] -> r cos(2 pi u2), r sin(2 pi u2), r = sqrt(-2 log u1), in T's own arithmetic
// (as cuRAND's curand_normal; products only, so nothing to fuse).
template <typename T>
GPUNN_HD void box_muller(T u1, T u2, T& n0, T& n1) {
    const T r = m_sqrt(T(-2) * m_log(u1));
    const T theta = T(6.283185307179586) * u2;  // 2 pi rounded to T
    n0 = r * m_cos(theta);
    n1 = r * m_sin(theta);
}

// How many values of T one block of 128 bits makes: 4 float (a word each), 2 double (two words each).
template <typename T>
GPUNN_HD constexpr int philox_per_block() {
    return sizeof(T) == 4 ? 4 : 2;
}

// A block's normals: float, Box-Muller on the uniforms of words (0, 1) and (2, 3); double, on the uniforms of
// the pairs (0, 1) and (2, 3).
GPUNN_HD void philox_normals(const PhiloxWords& w, float* v) {
    box_muller(uniform01_f32(w.x[0]), uniform01_f32(w.x[1]), v[0], v[1]);
    box_muller(uniform01_f32(w.x[2]), uniform01_f32(w.x[3]), v[2], v[3]);
}
GPUNN_HD void philox_normals(const PhiloxWords& w, double* v) {
    box_muller(uniform01_f64(w.x[0], w.x[1]), uniform01_f64(w.x[2], w.x[3]), v[0], v[1]);
}

// A block's uniforms on (low, low + scale]: low + scale u, u in (0, 1] as above.
GPUNN_HD void philox_uniforms(const PhiloxWords& w, float low, float scale, float* v) {
    for (int k = 0; k < 4; ++k) v[k] = affine_rn(low, scale, uniform01_f32(w.x[k]));
}
GPUNN_HD void philox_uniforms(const PhiloxWords& w, double low, double scale, double* v) {
    v[0] = affine_rn(low, scale, uniform01_f64(w.x[0], w.x[1]));
    v[1] = affine_rn(low, scale, uniform01_f64(w.x[2], w.x[3]));
}

}  // namespace gpunn
