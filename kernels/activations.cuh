// activations.cuh -- per-element activation math g(z), g'(z) and g'(a) for float and double.
//
// The device twin of gpunn/activations.py (the reference it is tested against, element for
// element, by tests/test_kernel_math_host.py). Compiles as CUDA (nvcc, NVRTC) and as plain
// C++ (g++), so the same code is checked on a machine without a GPU.
//
// Edge cases (the same in the reference): g(NaN) = NaN; g'(NaN) = NaN except for the
// piecewise-linear ones (identity 1, relu 0, leaky_relu 0.01: comparisons with NaN are false);
// large |z| and +-inf saturate to the limits, never to NaN.
#pragma once

#ifndef __CUDACC_RTC__
#include <math.h>  // expf, tanhf, log1pf, expm1f, fabsf, sqrtf, logf, cosf, sinf and their double versions
#endif

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define GPUNN_HD __host__ __device__ __forceinline__
#else
#define GPUNN_HD inline
#endif

namespace gpunn {

// The kernel_id of each entry of gpunn.activations.ACTIVATIONS.
enum ActivationId : int {
    kIdentity = 0,
    kRelu = 1,
    kSigmoid = 2,
    kTanh = 3,
    kLeakyRelu = 4,
    kSoftplus = 5,
    kGelu = 6,
    kSilu = 7,
    kElu = 8,
};

// g' can be written in terms of the output a = g(z) for these (the forward pass then need not keep Z).
GPUNN_HD constexpr bool has_grad_from_output(int act) {
    return act == kIdentity || act == kRelu || act == kSigmoid || act == kTanh || act == kLeakyRelu ||
           act == kElu;
}

// Single- and double-precision math under one name, so the rules below are written once.
GPUNN_HD float m_exp(float x) { return expf(x); }
GPUNN_HD double m_exp(double x) { return exp(x); }
GPUNN_HD float m_expm1(float x) { return expm1f(x); }
GPUNN_HD double m_expm1(double x) { return expm1(x); }
GPUNN_HD float m_log1p(float x) { return log1pf(x); }
GPUNN_HD double m_log1p(double x) { return log1p(x); }
GPUNN_HD float m_tanh(float x) { return tanhf(x); }
GPUNN_HD double m_tanh(double x) { return tanh(x); }
GPUNN_HD float m_abs(float x) { return fabsf(x); }
GPUNN_HD double m_abs(double x) { return fabs(x); }
GPUNN_HD float m_sqrt(float x) { return sqrtf(x); }
GPUNN_HD double m_sqrt(double x) { return sqrt(x); }
GPUNN_HD float m_log(float x) { return logf(x); }
GPUNN_HD double m_log(double x) { return log(x); }
GPUNN_HD float m_cos(float x) { return cosf(x); }
GPUNN_HD double m_cos(double x) { return cos(x); }
GPUNN_HD float m_sin(float x) { return sinf(x); }
GPUNN_HD double m_sin(double x) { return sin(x); }

constexpr double kLeakySlope = 0.01;
constexpr double kGeluC = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluK = 0.044715;
// Beyond |z| = 22, g = max(z, 0) and g' = [z > 0] to the last bit in float and double (below -22 both are under
// half the smallest double subnormal). Branching there also keeps z^3 from overflowing (inf * 0 = NaN).
constexpr double kGeluSaturation = 22.0;

// s = 1 / (1 + e^-z): the sigmoid activation's g(z), to a few ulps of s itself at every z; 1 - s is logistic(-z),
// just as accurate. (0.5 (1 + tanh(z/2)), its form until 2026-12, was 0 from z = -17 in float: 1 + tanh cancels.) e^-z
// overflows to inf only where s is under the smallest normal (z < -88.7 float, -709.8 double): s is then 0, and
// so is silu's z s, a normal float down to z = -92.5 (as it is under -ftz with any formula that forms e^z first).
// Measured (NumPy, float32): a third cheaper than forming s from e^-|z|, which needs a select or a second exp.
template <typename T>
GPUNN_HD T logistic(T z) {
    return T(1) / (T(1) + m_exp(-z));
}

// s (1 - s) = e / (1 + e)^2 with e = e^-|z|: no 1 - s to cancel, no overflow.
template <typename T>
GPUNN_HD T logistic_slope(T z) {
    T e = m_exp(-m_abs(z));
    T d = T(1) + e;
    return e / (d * d);
}

template <typename T, int ACT>
GPUNN_HD T act_forward(T z) {
    static_assert(ACT >= kIdentity && ACT <= kElu, "unknown activation id");
    if constexpr (ACT == kIdentity) {
        return z;
    } else if constexpr (ACT == kRelu) {
        return z < T(0) ? T(0) : z;  // keeps NaN
    } else if constexpr (ACT == kSigmoid) {
        return logistic(z);  // the seed's 1 / (1 + e^-z), to a few ulps of itself (also the CPU's, bit for bit)
    } else if constexpr (ACT == kTanh) {
        return m_tanh(z);
    } else if constexpr (ACT == kLeakyRelu) {
        return z > T(0) ? z : z * T(kLeakySlope);
    } else if constexpr (ACT == kSoftplus) {
        // log(1 + e^z) = max(z, 0) + log1p(e^-|z|): exact for large |z|, no overflow.
        return (z > T(0) ? z : T(0)) + m_log1p(m_exp(-m_abs(z)));
    } else if constexpr (ACT == kGelu) {
        // 0.5 z (1 + tanh u) = z logistic(2u), u = sqrt(2/pi) (z + 0.044715 z^3): no 1 + tanh to cancel for z < 0.
        if (m_abs(z) > T(kGeluSaturation)) return z > T(0) ? z : T(0);
        return z * logistic(T(2 * kGeluC) * (z + T(kGeluK) * z * z * z));
    } else if constexpr (ACT == kSilu) {
        T s = logistic(z);
        return s == T(0) ? T(0) : z * s;  // s == 0 only where z * s would be -0 (or NaN at -inf)
    } else {  // kElu, alpha = 1
        return z > T(0) ? z : m_expm1(z);
    }
}

template <typename T, int ACT>
GPUNN_HD T act_grad_from_input(T z) {
    static_assert(ACT >= kIdentity && ACT <= kElu, "unknown activation id");
    if constexpr (ACT == kIdentity) {
        return T(1);
    } else if constexpr (ACT == kRelu) {
        return z > T(0) ? T(1) : T(0);  // g'(0) = 0, as PyTorch
    } else if constexpr (ACT == kSigmoid) {
        return logistic_slope(z);
    } else if constexpr (ACT == kTanh) {
        // 1 - tanh(z)^2 = 4 s (1 - s) for s = logistic(2z): no 1 - t * t to cancel (0 from |z| = 9 in float).
        return T(4) * logistic_slope(T(2) * z);
    } else if constexpr (ACT == kLeakyRelu) {
        return z > T(0) ? T(1) : T(kLeakySlope);
    } else if constexpr (ACT == kSoftplus) {
        return logistic(z);
    } else if constexpr (ACT == kGelu) {
        // With s = logistic(2u) (see g): 0.5 (1 + tanh u) = s and 1 - tanh(u)^2 = 4 s (1 - s), so
        // g' = s (1 + 2 z (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 z^2)), 1 - s = logistic(-2u) without cancelling.
        if (m_abs(z) > T(kGeluSaturation)) return z > T(0) ? T(1) : T(0);
        T v = T(2 * kGeluC) * (z + T(kGeluK) * z * z * z);
        return logistic(v) * (T(1) + z * logistic(-v) * T(2 * kGeluC) * (T(1) + T(3 * kGeluK) * z * z));
    } else if constexpr (ACT == kSilu) {
        // d/dz z*s(z) = s * (1 + z * (1 - s)), 1 - s = logistic(-z). Where s is 0 that is 0 (and 0 * inf = NaN
        // at z = -inf); where 1 - s is 0 the term z * (1 - s) is 0 (not inf * 0 = NaN at z = +inf).
        T s = logistic(z);
        T one_minus_s = logistic(-z);
        if (s == T(0)) return T(0);
        return s * (T(1) + (one_minus_s == T(0) ? T(0) : z * one_minus_s));
    } else {  // kElu
        return z > T(0) ? T(1) : m_exp(z);
    }
}

// g'(z) from a = g(z). Instantiate only where has_grad_from_output(ACT).
template <typename T, int ACT>
GPUNN_HD T act_grad_from_output(T a) {
    static_assert(has_grad_from_output(ACT), "this activation has no derivative in terms of its output");
    if constexpr (ACT == kIdentity) {
        return T(1);
    } else if constexpr (ACT == kRelu) {
        return a > T(0) ? T(1) : T(0);
    } else if constexpr (ACT == kSigmoid) {
        return a * (T(1) - a);
    } else if constexpr (ACT == kTanh) {
        return T(1) - a * a;
    } else if constexpr (ACT == kLeakyRelu) {
        return a > T(0) ? T(1) : T(kLeakySlope);  // a > 0 exactly when z > 0
    } else {  // kElu: for z <= 0, a = e^z - 1, so g'(z) = e^z = a + 1
        return a > T(0) ? T(1) : a + T(1);
    }
}

}  // namespace gpunn
