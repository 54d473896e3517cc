// optimizers.cu -- one-launch SGD and Adam/AdamW steps over the flat parameter buffer, and the gradient clipping
// before them.
//
// Templates instantiated by name ("gpunn::sgd_step<float>", ...) through cupy.RawModule; the
// per-element rules, with their formulas, are in optimizers.cuh. T is float or double.
#include "block_sum.cuh"
#include "optimizers.cuh"

namespace gpunn {

// w -= lr * step, PyTorch SGD (see sgd_update).
//   w   [n] parameters, updated in place
//   g   [n] gradient (read)
//   vel [n] momentum buffer, updated in place; may be nullptr when momentum == 0
template <typename T>
__device__ __forceinline__ void sgd_loop(T* w, const T* g, T* vel, T lr, T momentum, T weight_decay, int nesterov,
                                         long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T v = vel != nullptr ? vel[i] : T(0);
        w[i] = sgd_update(w[i], g[i], v, lr, momentum, weight_decay, nesterov);
        if (vel != nullptr) vel[i] = v;
    }
}

template <typename T>
__global__ void sgd_step(T* w, const T* g, T* vel, T lr, T momentum, T weight_decay, int nesterov, long long n) {
    sgd_loop(w, g, vel, lr, momentum, weight_decay, nesterov, n);
}

// One Adam (decoupled == 0) or AdamW (decoupled != 0) step (see adam_update).
//   w [n] parameters, updated in place
//   g [n] gradient (read)
//   m [n] first-moment buffer, updated in place
//   v [n] second-moment buffer, updated in place
//   one_minus_beta1/2 = 1 - beta1/2, computed in double by the caller
//   bias_c1 = 1 - beta1^t, bias_c2 = 1 - beta2^t for step t (counted from 1): adam_bias_correction rounded to T
template <typename T>
__device__ __forceinline__ void adam_loop(T* w, const T* g, T* m, T* v, T lr, T one_minus_beta1, T one_minus_beta2,
                                          T eps, T bias_c1, T bias_c2, T weight_decay, int decoupled, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T mi = m[i], vi = v[i];
        w[i] = adam_update(w[i], g[i], mi, vi, lr, one_minus_beta1, one_minus_beta2, eps, bias_c1, bias_c2,
                           weight_decay, decoupled);
        m[i] = mi;
        v[i] = vi;
    }
}

// adam_step at step t = step, with the betas beta1, beta2 themselves (double): the bias corrections are formed
// on the device, as optimizer_tick forms them for the graph form; once per block, by its thread 0 (two double
// pows per block, not per thread: a GPU's double rate may be 1/64 of its float rate).
template <typename T>
__global__ void adam_step(T* w, const T* g, T* m, T* v, T lr, T one_minus_beta1, T one_minus_beta2, T eps,
                          double beta1, double beta2, double step, T weight_decay, int decoupled, long long n) {
    __shared__ double bias_c[2];  // 1 - beta1^t, 1 - beta2^t
    if (threadIdx.x == 0) {
        bias_c[0] = adam_bias_correction(beta1, step);
        bias_c[1] = adam_bias_correction(beta2, step);
    }
    __syncthreads();
    adam_loop(w, g, m, v, lr, one_minus_beta1, one_minus_beta2, eps, T(bias_c[0]), T(bias_c[1]), weight_decay,
              decoupled, n);
}

// ---- the same updates with their per-step scalars in device memory (CUDA-graph replay) --------
//
// A captured graph replays its kernels with the arguments they were captured with, so the
// scalars that change from step to step are read from a small device array instead:
//   state[0] the step t (advanced by optimizer_tick; the first update has t = 1)
//   state[1] the learning rate (written by the host when it changes)
//   state[2] 1 - beta1^t and state[3] 1 - beta2^t (Adam's bias corrections, in double)
// Each is rounded to T exactly as the host-side launch rounds its double scalars.

// state[0] += 1, then the bias corrections of that step. One thread (launch with any shape).
template <typename T>
__global__ void optimizer_tick(double* state, double beta1, double beta2) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const double t = state[0] + 1.0;
    state[0] = t;
    state[2] = adam_bias_correction(beta1, t);
    state[3] = adam_bias_correction(beta2, t);
}

// sgd_step with lr = state[1].
template <typename T>
__global__ void sgd_step_dev(T* w, const T* g, T* vel, const double* state, T momentum, T weight_decay, int nesterov,
                             long long n) {
    sgd_loop(w, g, vel, (T)state[1], momentum, weight_decay, nesterov, n);
}

// adam_step with lr = state[1], bias_c1 = state[2], bias_c2 = state[3].
template <typename T>
__global__ void adam_step_dev(T* w, const T* g, T* m, T* v, const double* state, T one_minus_beta1,
                              T one_minus_beta2, T eps, T weight_decay, int decoupled, long long n) {
    adam_loop(w, g, m, v, (T)state[1], one_minus_beta1, one_minus_beta2, eps, (T)state[2], (T)state[3], weight_decay,
              decoupled, n);
}

// ---- gradient clipping over the flat gradient buffer, before a step (optimizers.cuh's rules) ----------------
//
// clip_norm in three launches with no atomics, so that a run clips with the same bits every time: clip_sum_sq's sum
// of the squares per block, clip_factor's sum of those in a fixed order and the factor, clip_scale's product. The
// factor stays on the device (no host read), so a captured graph replays all three.

// partial[blockIdx.x] = the sum of (double)g[i]^2 over the block's elements (grid-stride), in double.
// Launch with blockDim.x a multiple of 32.
//   g       [n] gradient (read)
//   partial [gridDim.x] receives each block's sum
template <typename T>
__global__ void clip_sum_sq(const T* g, long long n, double* partial) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        acc += (double)g[i] * (double)g[i];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// factor[0] = clip_norm_factor(sum of partial[0 .. parts), max_norm). One block, blockDim.x a multiple of 32:
// thread t adds partials t, t + blockDim.x, ... in order, then block_sum's fixed tree (the same bits every run).
//   partial [parts] clip_sum_sq's sums (read)
//   factor  [1] receives the factor (may follow partial in one buffer)
template <typename T>
__global__ void clip_factor(const double* partial, long long parts, double max_norm, double* factor) {
    double acc = 0.0;
    for (long long i = threadIdx.x; i < parts; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) factor[0] = clip_norm_factor(acc, max_norm);
}

// g[i] *= factor[0], the factor rounded once to T (as the reference multiplies by it cast to the gradient's dtype).
//   g      [n] gradient, scaled in place
//   factor [1] clip_factor's (read)
template <typename T>
__global__ void clip_scale(T* g, const double* factor, long long n) {
    const T f = (T)factor[0];
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) g[i] = g[i] * f;
}

// g[i] = clip_to_value(g[i], clip_value): clip_value's clamp to [-clip_value, clip_value].
//   g [n] gradient, clamped in place
template <typename T>
__global__ void clip_by_value(T* g, T clip_value, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        g[i] = clip_to_value(g[i], clip_value);
    }
}

}  // namespace gpunn
