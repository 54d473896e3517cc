// elementwise.cu -- the activation kernels: bias + activation forward, and dZ = dA * g'.
//
// Templates (no extern "C") instantiated by name, e.g. "gpunn::bias_act_forward<float, 6>",
// through cupy.RawModule(name_expressions=...) -- see gpunn/ops/kernels.py for the full list.
// T is float, double or bf16 (bfloat16 storage, math in float: bfloat16.cuh); ACT is an
// ActivationId from activations.cuh, where all per-element math lives. Every kernel is a
// grid-stride loop over row-major, C-contiguous arrays and works for any launch shape.
#include "activations.cuh"
#include "bfloat16.cuh"

namespace gpunn {

// A = g(Z_in + b), b broadcast over the rows; Z_keep = Z_in + b when the backward pass needs Z.
//   Z_in   [rows x cols]  pre-activation X @ W (read)
//   b      [cols]         bias, or nullptr for none
//   Z_keep [rows x cols]  receives Z_in + b, or nullptr; may be Z_in (in place)
//   A      [rows x cols]  receives the activation; may be Z_in (in place)
template <typename T, int ACT>
__global__ void bias_act_forward(const T* Z_in, const T* b, T* Z_keep, T* A, long long rows, long long cols) {
    const long long n = rows * cols;
    const long long stride = (long long)blockDim.x * gridDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    // Follow the column incrementally: two divisions per thread, none per element.
    long long col = i % cols;
    const long long col_step = stride % cols;
    using C = compute_t<T>;
    for (; i < n; i += stride) {
        C z = load(Z_in[i]);
        if (b != nullptr) z += load(b[col]);
        if (Z_keep != nullptr) store(Z_keep[i], z);
        store(A[i], act_forward<C, ACT>(z));
        col += col_step;
        if (col >= cols) col -= cols;
    }
}

// dZ = dA * g'(Z).
//   dA [n] gradient of the loss w.r.t. the activation output (read)
//   Z  [n] pre-activation Z = X @ W + b (read)
//   dZ [n] receives the gradient w.r.t. Z; may be dA (in place)
template <typename T, int ACT>
__global__ void act_backward_from_input(const T* dA, const T* Z, T* dZ, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        store(dZ[i], load(dA[i]) * act_grad_from_input<compute_t<T>, ACT>(load(Z[i])));
    }
}

// dZ = dA * g'(z) computed from the output A = g(Z) (only where has_grad_from_output(ACT)).
//   dA [n] gradient of the loss w.r.t. the activation output (read)
//   A  [n] activation output g(Z) (read)
//   dZ [n] receives the gradient w.r.t. Z; may be dA (in place)
template <typename T, int ACT>
__global__ void act_backward_from_output(const T* dA, const T* A, T* dZ, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        store(dZ[i], load(dA[i]) * act_grad_from_output<compute_t<T>, ACT>(load(A[i])));
    }
}

// dst = src rounded to T: the bfloat16 copies of the float32 master parameters and inputs
// (instantiated for bf16 only).
//   src [n] float values (read)
//   dst [n] receives them rounded to nearest even
template <typename T>
__global__ void to_storage(const master_t<T>* src, T* dst, long long n) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        store(dst[i], src[i]);
    }
}

}  // namespace gpunn
