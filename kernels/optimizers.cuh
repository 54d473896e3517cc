// optimizers.cuh -- per-element SGD (momentum, Nesterov, L2 weight decay) and Adam/AdamW updates.
//
// The same formulas as torch.optim.SGD (dampening 0) and torch.optim.Adam / AdamW, one
// parameter at a time; kernels/optimizers.cu applies them over the flat parameter buffer.
// Compiles as CUDA and as plain C++ (tests/test_kernel_math_host.py checks it against NumPy).
#pragma once

#include "activations.cuh"  // GPUNN_HD, m_sqrt

namespace gpunn {

// SGD. g' = g + wd*w; with momentum: v = mu*v + g', step = g' + mu*v (nesterov) or v;
// without (mu == 0): step = g' and v is not touched. Returns the new w.
template <typename T>
GPUNN_HD T sgd_update(T w, T g, T& v, T lr, T momentum, T weight_decay, int nesterov) {
    T d = weight_decay != T(0) ? g + weight_decay * w : g;  // as torch: 0 * inf never makes NaN
    if (momentum != T(0)) {
        v = momentum * v + d;
        d = nesterov ? d + momentum * v : v;
    }
    return w - lr * d;
}

// Adam's bias correction 1 - beta^t at step t (counted from 1), in double, by the device's pow (CUDA's double
// pow; the C library's when compiled as C++, which is Python's float pow). The one rule of every kernel that
// forms it (optimizers.cu's adam_step and optimizer_tick, ensemble.cuh's member_bias_corrections), so that one
// model's eager and graph steps and an ensemble's members take the same bits on a device: no host pow, which can
// be an ulp off the device's, and no running product beta^(t-1) * beta, which is not pow either (see README,
// "Exact").
GPUNN_HD double adam_bias_correction(double beta, double t) { return 1.0 - pow(beta, t); }

// Adam. coupled (decoupled == 0): g += wd*w (L2, torch.optim.Adam);
// decoupled (AdamW): w *= 1 - lr*wd before the step. Then, as torch (m.lerp_(g, 1 - beta1)):
//   m += (1-beta1) * (g - m);  v += (1-beta2) * (g^2 - v)
//   w -= lr/bias_c1 * m / (sqrt(v)/sqrt(bias_c2) + eps),   bias_c = 1 - beta^t at step t.
// The caller passes 1 - beta computed in double: rounding beta = 0.999 to float first would
// make 1 - beta off by 1.3e-5 relative (and then v_hat = g^2 no longer holds at step 1).
// Returns the new w; m and v are updated in place.
template <typename T>
GPUNN_HD T adam_update(T w, T g, T& m, T& v, T lr, T one_minus_beta1, T one_minus_beta2, T eps, T bias_c1,
                       T bias_c2, T weight_decay, int decoupled) {
    if (decoupled) {
        w = w * (T(1) - lr * weight_decay);
    } else if (weight_decay != T(0)) {
        g = g + weight_decay * w;
    }
    m = m + one_minus_beta1 * (g - m);
    v = v + one_minus_beta2 * (g * g - v);
    T denom = m_sqrt(v) / m_sqrt(bias_c2) + eps;
    return w - (lr / bias_c1) * m / denom;
}

// Gradient clipping before the update (gpunn.optim's clip_norm and clip_value), as torch.nn.utils does it.
// clip_grad_norm_'s factor from the sum of the squares of every gradient (formed and summed in double):
// min(1, max_norm / (sqrt(sum_sq) + 1e-6)), a NaN kept (a NaN norm makes every gradient NaN, as there).
GPUNN_HD double clip_norm_factor(double sum_sq, double max_norm) {
    const double coef = max_norm / (m_sqrt(sum_sq) + 1e-6);
    return coef > 1.0 ? 1.0 : coef;
}

// clip_grad_value_'s clamp of one gradient element to [-v, v]; a NaN stays NaN (no fmin/fmax, which drop it).
template <typename T>
GPUNN_HD T clip_to_value(T g, T v) {
    return g < -v ? -v : (g > v ? v : g);
}

}  // namespace gpunn
