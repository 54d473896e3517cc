// ensemble.cuh -- per-member optimizer hyperparameters of an ensemble, read from one small vector.
//
// An ensemble of K members keeps its optimizer settings in a device vector of K rows of
// kHyperFields doubles (gpunn/ensemble_ops.py writes it, once per epoch): row k holds member k's
// learning rate for the epoch, weight decay, momentum, Adam's beta1 and beta2, whether it is
// still training, and its gradient clipping by norm and by value (0: none). The rules below
// turn a row into the arguments of sgd_update / adam_update and member_clip_grad's clipping
// (optimizers.cuh) exactly as one model's launch does: each value rounded once to T, and
// 1 - beta and the bias corrections 1 - beta^t (adam_bias_correction, on the device as one
// model's adam_step and optimizer_tick form them) computed in double first.
// Compiles as CUDA and as plain C++ (tests/test_kernel_math_host.py checks it against NumPy).
#pragma once

#include "activations.cuh"  // act_forward
#include "bfloat16.cuh"     // load, store, compute_t, master_t (bfloat16 storage)
#include "optimizers.cuh"   // sgd_update, adam_update, adam_bias_correction, GPUNN_HD

namespace gpunn {

enum HyperField : int { kLr = 0, kWeightDecay = 1, kMomentum = 2, kBeta1 = 3, kBeta2 = 4, kActive = 5,
                        kClipNorm = 6, kClipValue = 7, kHyperFields = 8 };

template <typename T>
struct MemberSgd {
    T lr, momentum, weight_decay;
};

template <typename T>
struct MemberAdam {
    T lr, one_minus_beta1, one_minus_beta2, bias_c1, bias_c2, weight_decay;
};

// Whether member row h still trains (a frozen member's parameters and state stay as they are).
GPUNN_HD bool member_active(const double* h) { return h[kActive] != 0.0; }

// Whether member row h trains and clips its gradient by its norm (member_grad_sum_sq sums its squares).
GPUNN_HD bool member_clips_by_norm(const double* h) { return member_active(h) && h[kClipNorm] > 0.0; }

// A member's gradient clipping (torch's clip_grad_norm_ and clip_grad_value_, gpunn.ops.ensemble's
// clip_gradients): g <- g * scale where `scales`, then into [-bound, bound] where `clamps`.
template <typename T>
struct MemberClip {
    bool scales, clamps;
    T scale, bound;
};

// Row h's clipping, given sum_sq, the double sum of its gradient's squares (read only where it clips by norm): one
// model's rules (optimizers.cuh): scale = T(clip_norm_factor(sum_sq, c)) where that is not 1 (under 1, or NaN:
// torch's), formed in double and rounded once, bound = T(v).
template <typename T>
GPUNN_HD MemberClip<T> member_clip(const double* h, double sum_sq) {
    MemberClip<T> c{false, h[kClipValue] > 0.0, T(1), T(h[kClipValue])};
    if (h[kClipNorm] > 0.0) {
        const double coef = clip_norm_factor(sum_sq, h[kClipNorm]);
        c.scales = !(coef >= 1.0);  // a NaN norm scales by NaN: every gradient NaN, as torch's clip_grad_norm_
        if (c.scales) c.scale = T(coef);
    }
    return c;
}

// One gradient element clipped by c (clip_to_value's clamp: a NaN stays NaN, as NumPy's clip keeps it).
template <typename T>
GPUNN_HD T clip_element(T g, const MemberClip<T>& c) {
    if (c.scales) g = g * c.scale;
    if (c.clamps) g = clip_to_value(g, c.bound);
    return g;
}

template <typename T>
GPUNN_HD MemberSgd<T> member_sgd(const double* h) {
    return {T(h[kLr]), T(h[kMomentum]), T(h[kWeightDecay])};
}

// Member row h's bias corrections at the optimizer step t (counted from 1): bias_c[0] = 1 - beta1^t,
// bias_c[1] = 1 - beta2^t, in double (adam_bias_correction). ensemble.cu forms them once per block and member.
GPUNN_HD void member_bias_corrections(const double* h, double step, double* bias_c) {
    bias_c[0] = adam_bias_correction(h[kBeta1], step);
    bias_c[1] = adam_bias_correction(h[kBeta2], step);
}

// bias_c: member_bias_corrections of row h at this step.
template <typename T>
GPUNN_HD MemberAdam<T> member_adam(const double* h, const double* bias_c) {
    return {T(h[kLr]), T(1.0 - h[kBeta1]), T(1.0 - h[kBeta2]), T(bias_c[0]), T(bias_c[1]), T(h[kWeightDecay])};
}

// One element of member_bias_act_forward (ensemble.cu): z = Z_in (+ b) in compute_t<T> (a bf16 value
// widened exactly to float), then Z_keep <- z and A <- g(z), each rounded to T on store (bf16: to
// nearest even). z_in is taken by value: Z_keep and A may be the element it was read from.
//   b      this element's bias (its member's, its column's), or nullptr
//   z_keep where z goes, or nullptr
//   a      where g(z) goes
template <typename T, int ACT>
GPUNN_HD void bias_act_element(T z_in, const T* b, T* z_keep, T* a) {
    using C = compute_t<T>;
    C z = load(z_in);
    if (b != nullptr) z += load(*b);
    if (z_keep != nullptr) store(*z_keep, z);
    store(*a, act_forward<C, ACT>(z));
}

}  // namespace gpunn
