// optimizers.cu -- one-launch SGD and Adam/AdamW steps over the flat parameter buffer.
//
// Templates instantiated by name ("gpunn::sgd_step<float>", ...) through cupy.RawModule; the
// per-element rules, with their formulas, are in optimizers.cuh. T is float or double.
#include "optimizers.cuh"

namespace gpunn {

// w -= lr * step, PyTorch SGD (see sgd_update).
//   w   [n] parameters, updated in place
//   g   [n] gradient (read)
//   vel [n] momentum buffer, updated in place; may be nullptr when momentum == 0
template <typename T>
__global__ void sgd_step(T* w, const T* g, T* vel, T lr, T momentum, T weight_decay, int nesterov, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T v = vel != nullptr ? vel[i] : T(0);
        w[i] = sgd_update(w[i], g[i], v, lr, momentum, weight_decay, nesterov);
        if (vel != nullptr) vel[i] = v;
    }
}

// One Adam (decoupled == 0) or AdamW (decoupled != 0) step (see adam_update).
//   w [n] parameters, updated in place
//   g [n] gradient (read)
//   m [n] first-moment buffer, updated in place
//   v [n] second-moment buffer, updated in place
//   one_minus_beta1/2 = 1 - beta1/2, computed in double by the caller
//   bias_c1 = 1 - beta1^t, bias_c2 = 1 - beta2^t for step t (counted from 1)
template <typename T>
__global__ void adam_step(T* w, const T* g, T* m, T* v, T lr, T one_minus_beta1, T one_minus_beta2, T eps,
                          T bias_c1, T bias_c2, T weight_decay, int decoupled, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T mi = m[i], vi = v[i];
        w[i] = adam_update(w[i], g[i], mi, vi, lr, one_minus_beta1, one_minus_beta2, eps, bias_c1, bias_c2,
                           weight_decay, decoupled);
        m[i] = mi;
        v[i] = vi;
    }
}

}  // namespace gpunn
