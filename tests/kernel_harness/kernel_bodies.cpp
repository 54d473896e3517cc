// kernel_bodies.cpp -- gpunn's kernels/*.cu themselves (not only their per-element math), run on the host
// through cuda_host.h, for tests/test_kernel_bodies_host.py. Each extern "C" function launches one kernel,
// in double (the indexing and the reductions are the same for every T), on the grid and block it is given;
// it returns 0, or -1 when the launch could not finish (cuda_host::error says why), -2 for an activation id
// not built here. Built with g++ -std=c++17 -I kernels.
#include "cuda_host.h"

#include <math.h>

#include <type_traits>

// Every pow a kernel calls, counted, for the tests of how many a launch forms (Adam's bias corrections: two per
// block and member, not per thread). adam_bias_correction's unqualified pow, inside namespace gpunn, finds this
// one before the C library's; a rule that named ::pow or std::pow would count none, and those tests would fail.
namespace gpunn {
inline long long pow_calls = 0;
inline double pow(double x, double y) {
    ++pow_calls;
    return ::pow(x, y);
}
}  // namespace gpunn

#include "elementwise.cu"
#include "ensemble.cu"
#include "optimizers.cu"
#include "random.cu"
#include "reductions.cu"

using namespace gpunn;
using D = double;
using LL = long long;

namespace {

// A few activations, each with g' from the input and from the output: the per-element math is
// test_kernel_math_host.py's; here what matters is which element each thread computes.
template <typename Fn>
int with_act(int act, Fn&& fn) {
    switch (act) {
        case kIdentity: return fn(std::integral_constant<int, kIdentity>{});
        case kRelu: return fn(std::integral_constant<int, kRelu>{});
        case kTanh: return fn(std::integral_constant<int, kTanh>{});
        case kElu: return fn(std::integral_constant<int, kElu>{});
        default: return -2;
    }
}

int run(unsigned gx, unsigned gy, unsigned bx, unsigned by, const std::function<void()>& fn) {
    return cuda_host::launch(dim3{gx, gy, 1}, dim3{bx, by, 1}, fn) ? 0 : -1;
}

// gpunn.rng's draws in float and double (4 and 2 values a Philox block): which values each thread writes.
template <typename T>
int philox(int uniform, unsigned gx, unsigned gy, unsigned bx, const unsigned long long* streams, LL n_streams, LL n,
           double low, double scale, void* out) {
    T* o = static_cast<T*>(out);
    if (uniform) return run(gx, gy, bx, 1, [&] { philox_uniform<T>(streams, n_streams, n, T(low), T(scale), o); });
    return run(gx, gy, bx, 1, [&] { philox_normal<T>(streams, n_streams, n, o); });
}

// The weighted loss gradient in float or double: its terms' roundings are compared with the reference's bit for bit.
template <typename T>
int weighted_mse_grad_in(unsigned gx, unsigned bx, const void* A, const void* Y, LL y_stride, const void* w,
                         LL w_stride, void* dA, double scale, LL rows, LL cols, double* sum_sq) {
    return run(gx, 1, bx, 1, [&] {
        weighted_mse_grad<T>(static_cast<const T*>(A), static_cast<const T*>(Y), y_stride, static_cast<const T*>(w),
                             w_stride, static_cast<T*>(dA), T(scale), rows, cols, sum_sq);
    });
}

}  // namespace

// The harness itself: each of gx blocks of bx threads reads slot threadIdx.x of a __shared__ array into
// seen[block][thread] before thread 0 writes every slot (1.0). On a GPU a block's shared memory holds
// whatever was there, never the last block's values by design: the harness starts each block with NaN.
// (A template, as the kernels are: its static is a unique global symbol, which the test finds.)
template <typename T>
__global__ void shared_probe(T* seen) {
    __shared__ T slots[64];
    seen[blockIdx.x * blockDim.x + threadIdx.x] = slots[threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 0; i < 64; ++i) slots[i] = 1.0;
    }
}

extern "C" {

const char* last_error() { return cuda_host::error ? cuda_host::error : ""; }

void set_schedule(int schedule) { cuda_host::schedule = schedule; }

// The pows the kernels called since the last call (see gpunn::pow above).
long long take_pow_calls() {
    const long long n = gpunn::pow_calls;
    gpunn::pow_calls = 0;
    return n;
}

void add_shared(void* address, unsigned long bytes) { cuda_host::add_shared(address, bytes); }

int k_bias_act_forward(int act, unsigned gx, unsigned bx, const D* Z, const D* b, D* keep, D* A, LL rows, LL cols) {
    return with_act(act, [&](auto a) {
        return run(gx, 1, bx, 1, [&] { bias_act_forward<D, decltype(a)::value>(Z, b, keep, A, rows, cols); });
    });
}

int k_act_backward(int act, int from_output, unsigned gx, unsigned bx, const D* dA, const D* src, D* dZ, LL n) {
    return with_act(act, [&](auto a) {
        constexpr int ACT = decltype(a)::value;
        if (from_output) return run(gx, 1, bx, 1, [&] { act_backward_from_output<D, ACT>(dA, src, dZ, n); });
        return run(gx, 1, bx, 1, [&] { act_backward_from_input<D, ACT>(dA, src, dZ, n); });
    });
}

int k_mse_grad(unsigned gx, unsigned bx, const D* A, const D* Y, D* dA, D scale, LL n, double* sum_sq) {
    return run(gx, 1, bx, 1, [&] { mse_grad<D>(A, Y, dA, scale, n, sum_sq); });
}

int k_weighted_mse_grad(int is_double, unsigned gx, unsigned bx, const void* A, const void* Y, LL y_stride,
                        const void* w, LL w_stride, void* dA, double scale, LL rows, LL cols, double* sum_sq) {
    auto in = is_double ? weighted_mse_grad_in<double> : weighted_mse_grad_in<float>;
    return in(gx, bx, A, Y, y_stride, w, w_stride, dA, scale, rows, cols, sum_sq);
}

int k_bias_grad(unsigned gx, unsigned gy, unsigned bx, unsigned by, const D* dZ, D* db, double* partial, LL rows,
                LL cols, LL rows_per_chunk) {
    return run(gx, gy, bx, by, [&] { bias_grad<D>(dZ, db, partial, rows, cols, rows_per_chunk); });
}

int k_bias_grad_finish(unsigned gx, unsigned bx, const double* partial, D* db, LL chunks, LL cols) {
    return run(gx, 1, bx, 1, [&] { bias_grad_finish<D>(partial, db, chunks, cols); });
}

int k_sgd_step(unsigned gx, unsigned bx, D* w, const D* g, D* vel, D lr, D momentum, D weight_decay, int nesterov,
               LL n) {
    return run(gx, 1, bx, 1, [&] { sgd_step<D>(w, g, vel, lr, momentum, weight_decay, nesterov, n); });
}

int k_adam_step(unsigned gx, unsigned bx, D* w, const D* g, D* m, D* v, D lr, D omb1, D omb2, D eps, double beta1,
                double beta2, double step, D weight_decay, int decoupled, LL n) {
    return run(gx, 1, bx, 1, [&] {
        adam_step<D>(w, g, m, v, lr, omb1, omb2, eps, beta1, beta2, step, weight_decay, decoupled, n);
    });
}

int k_optimizer_tick(unsigned gx, unsigned bx, double* state, double beta1, double beta2) {
    return run(gx, 1, bx, 1, [&] { optimizer_tick<double>(state, beta1, beta2); });
}

int k_sgd_step_dev(unsigned gx, unsigned bx, D* w, const D* g, D* vel, const double* state, D momentum,
                   D weight_decay, int nesterov, LL n) {
    return run(gx, 1, bx, 1, [&] { sgd_step_dev<D>(w, g, vel, state, momentum, weight_decay, nesterov, n); });
}

int k_adam_step_dev(unsigned gx, unsigned bx, D* w, const D* g, D* m, D* v, const double* state, D omb1, D omb2,
                    D eps, D weight_decay, int decoupled, LL n) {
    return run(gx, 1, bx, 1, [&] { adam_step_dev<D>(w, g, m, v, state, omb1, omb2, eps, weight_decay, decoupled, n); });
}

int k_clip_sum_sq(unsigned gx, unsigned bx, const D* g, LL n, double* partial) {
    return run(gx, 1, bx, 1, [&] { clip_sum_sq<D>(g, n, partial); });
}

int k_clip_factor(unsigned bx, const double* partial, LL parts, double max_norm, double* factor) {
    return run(1, 1, bx, 1, [&] { clip_factor<D>(partial, parts, max_norm, factor); });
}

int k_clip_scale(unsigned gx, unsigned bx, D* g, const double* factor, LL n) {
    return run(gx, 1, bx, 1, [&] { clip_scale<D>(g, factor, n); });
}

int k_clip_by_value(unsigned gx, unsigned bx, D* g, D clip_value, LL n) {
    return run(gx, 1, bx, 1, [&] { clip_by_value<D>(g, clip_value, n); });
}

// The clip kernels in float, where they differ from double: each square formed in double (a float32 square of 3e19 is
// past float32), the factor rounded once to float before it scales.
int k_clip_sum_sq_f32(unsigned gx, unsigned bx, const float* g, LL n, double* partial) {
    return run(gx, 1, bx, 1, [&] { clip_sum_sq<float>(g, n, partial); });
}

int k_clip_scale_f32(unsigned gx, unsigned bx, float* g, const double* factor, LL n) {
    return run(gx, 1, bx, 1, [&] { clip_scale<float>(g, factor, n); });
}

int k_member_bias_act_forward(int act, unsigned gx, unsigned gy, unsigned bx, const D* Z, const D* b, LL b_stride,
                              D* keep, D* A, LL members, LL rows, LL cols) {
    return with_act(act, [&](auto a) {
        return run(gx, gy, bx, 1, [&] {
            member_bias_act_forward<D, decltype(a)::value>(Z, b, b_stride, keep, A, members, rows, cols);
        });
    });
}

int k_member_bias_grad(unsigned gx, unsigned gy, unsigned bx, unsigned by, const D* dZ, D* db, LL db_stride,
                       LL members, LL rows, LL cols) {
    return run(gx, gy, bx, by, [&] { member_bias_grad<D>(dZ, db, db_stride, members, rows, cols); });
}

int k_member_mse_grad(unsigned gx, unsigned gy, unsigned bx, const D* A, const D* Y, LL y_stride, D* dA, D scale,
                      LL members, LL n, double* sum_sq) {
    return run(gx, gy, bx, 1, [&] { member_mse_grad<D>(A, Y, y_stride, dA, scale, members, n, sum_sq); });
}

int k_member_weighted_mse_grad(unsigned gx, unsigned gy, unsigned bx, const D* A, const D* Y, LL y_member, LL y_row,
                               const D* w, LL w_member, LL w_row, D* dA, D scale, LL members, LL rows, LL cols,
                               double* sum_sq) {
    return run(gx, gy, bx, 1, [&] {
        member_weighted_mse_grad<D>(A, Y, y_member, y_row, w, w_member, w_row, dA, scale, members, rows, cols, sum_sq);
    });
}

int k_member_sgd_step(unsigned gx, unsigned gy, unsigned bx, D* w, const D* g, D* vel, const double* hyper,
                      int nesterov, LL members, LL per_member) {
    return run(gx, gy, bx, 1, [&] { member_sgd_step<D>(w, g, vel, hyper, nesterov, members, per_member); });
}

int k_member_adam_step(unsigned gx, unsigned gy, unsigned bx, D* w, const D* g, D* m, D* v, const double* hyper,
                       D eps, double step, int decoupled, LL members, LL per_member) {
    return run(gx, gy, bx, 1, [&] {
        member_adam_step<D>(w, g, m, v, hyper, eps, step, decoupled, members, per_member);
    });
}

int k_member_adam_step_dev(unsigned gx, unsigned gy, unsigned bx, D* w, const D* g, D* m, D* v,
                           const double* hyper, D eps, const double* state, int decoupled, LL members,
                           LL per_member) {
    return run(gx, gy, bx, 1, [&] {
        member_adam_step_dev<D>(w, g, m, v, hyper, eps, state, decoupled, members, per_member);
    });
}

int k_member_grad_sum_sq(unsigned gx, unsigned gy, unsigned bx, const D* g, const double* hyper, LL members,
                         LL per_member, double* partial) {
    return run(gx, gy, bx, 1, [&] { member_grad_sum_sq<D>(g, hyper, members, per_member, partial); });
}

int k_member_grad_sum_total(unsigned gy, unsigned bx, const double* partial, LL parts, const double* hyper,
                            LL members, double* sum_sq) {
    return run(1, gy, bx, 1, [&] { member_grad_sum_total<D>(partial, parts, hyper, members, sum_sq); });
}

int k_member_clip_grad(unsigned gx, unsigned gy, unsigned bx, D* g, const double* hyper, const double* sum_sq,
                       LL members, LL per_member) {
    return run(gx, gy, bx, 1, [&] { member_clip_grad<D>(g, hyper, sum_sq, members, per_member); });
}

int k_member_grad_sum_sq_f32(unsigned gx, unsigned gy, unsigned bx, const float* g, const double* hyper, LL members,
                             LL per_member, double* partial) {
    return run(gx, gy, bx, 1, [&] { member_grad_sum_sq<float>(g, hyper, members, per_member, partial); });
}

int k_philox(int is_double, int uniform, unsigned gx, unsigned gy, unsigned bx, const unsigned long long* streams,
             LL n_streams, LL n, double low, double scale, void* out) {
    if (is_double) return philox<double>(uniform, gx, gy, bx, streams, n_streams, n, low, scale, out);
    return philox<float>(uniform, gx, gy, bx, streams, n_streams, n, low, scale, out);
}

int k_shared_probe(unsigned gx, unsigned bx, D* seen) {
    return run(gx, 1, bx, 1, [&] { shared_probe<D>(seen); });
}

}  // extern "C"
