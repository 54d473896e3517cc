// bfloat16.cuh -- bfloat16 storage for the kernels: loads widen to float, math runs in float,
// stores round to nearest even.
//
// gpunn::bf16 is 16 bits: the upper half of an IEEE-754 float (sign, 8-bit exponent, 7-bit
// mantissa), bit for bit the layout of CUDA's __nv_bfloat16, of cuBLAS's CUDA_R_16BF and of
// ml_dtypes.bfloat16 (the dtype of gpunn's bfloat16 CuPy arrays). It is defined here rather than
// taken from <cuda_bf16.h> so that one and the same code compiles under NVRTC (which has no
// toolkit headers), nvcc and g++: tests/test_kernel_math_host.py runs these very conversions on the
// CPU against ml_dtypes. A kernel templated on T reads T, computes in compute_t<T> and writes T;
// buffers that hold master values (gradients, parameters) are master_t<T>: T itself for float
// and double, float for bf16.
#pragma once

#include "activations.cuh"  // GPUNN_HD

namespace gpunn {

struct bf16 {
    unsigned short bits;
};

GPUNN_HD float bits_to_float(unsigned int u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    __builtin_memcpy(&f, &u, sizeof f);
    return f;
#endif
}

GPUNN_HD unsigned int float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    unsigned int u;
    __builtin_memcpy(&u, &f, sizeof u);
    return u;
#endif
}

// Exact: every bfloat16 is a float.
GPUNN_HD float bf16_to_float(bf16 h) { return bits_to_float((unsigned int)h.bits << 16); }

// Round to nearest, ties to even (as ml_dtypes and __float2bfloat16_rn); overflow rounds to +-inf,
// NaN stays NaN (quiet, sign kept), +-inf and +-0 are kept.
GPUNN_HD bf16 float_to_bf16(float f) {
    unsigned int u = float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{(unsigned short)((u >> 16) | 0x0040u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return bf16{(unsigned short)(u >> 16)};
}

// compute_t<T>: the type the per-element math runs in; master_t<T>: the type of the gradient and
// parameter buffers next to T's activations (float32 master weights for bf16 activations).
template <typename T>
struct Compute {
    using type = T;
};
template <>
struct Compute<bf16> {
    using type = float;
};
template <typename T>
using compute_t = typename Compute<T>::type;
template <typename T>
using master_t = typename Compute<T>::type;

GPUNN_HD float load(float x) { return x; }
GPUNN_HD double load(double x) { return x; }
GPUNN_HD float load(bf16 x) { return bf16_to_float(x); }

GPUNN_HD void store(float& dst, float x) { dst = x; }
GPUNN_HD void store(double& dst, double x) { dst = x; }
GPUNN_HD void store(bf16& dst, float x) { dst = float_to_bf16(x); }

}  // namespace gpunn
