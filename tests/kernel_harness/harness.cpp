// harness.cpp -- the device math of kernels/*.cuh compiled as plain C++, for the host tests.
//
// Built by tests/test_kernel_math_host.py with g++ -O2 (no -ffast-math) into a shared library
// and called through ctypes: each function applies one per-element rule over an array.
#include "activations.cuh"
#include "bfloat16.cuh"
#include "ensemble.cuh"
#include "optimizers.cuh"

using namespace gpunn;

namespace {

template <typename T, int ACT>
int apply(int fn, const T* in, T* out, long long n) {
    if (fn == 0) {
        for (long long i = 0; i < n; ++i) out[i] = act_forward<T, ACT>(in[i]);
    } else if (fn == 1) {
        for (long long i = 0; i < n; ++i) out[i] = act_grad_from_input<T, ACT>(in[i]);
    } else if constexpr (has_grad_from_output(ACT)) {
        for (long long i = 0; i < n; ++i) out[i] = act_grad_from_output<T, ACT>(in[i]);
    } else {
        return -1;  // no g' from the output for this activation
    }
    return 0;
}

// The bf16 kernels' per-element path: widen, compute in float, round (as kernels/elementwise.cu).
template <int ACT>
int apply_bf16(int fn, const bf16* in, bf16* out, long long n) {
    for (long long i = 0; i < n; ++i) {
        const float z = load(in[i]);
        if (fn == 0) {
            store(out[i], act_forward<float, ACT>(z));
        } else if (fn == 1) {
            store(out[i], act_grad_from_input<float, ACT>(z));
        } else if constexpr (has_grad_from_output(ACT)) {
            store(out[i], act_grad_from_output<float, ACT>(z));
        } else {
            return -1;
        }
    }
    return 0;
}

int apply(int act, int fn, const bf16* in, bf16* out, long long n) {
    switch (act) {
        case kIdentity: return apply_bf16<kIdentity>(fn, in, out, n);
        case kRelu: return apply_bf16<kRelu>(fn, in, out, n);
        case kSigmoid: return apply_bf16<kSigmoid>(fn, in, out, n);
        case kTanh: return apply_bf16<kTanh>(fn, in, out, n);
        case kLeakyRelu: return apply_bf16<kLeakyRelu>(fn, in, out, n);
        case kSoftplus: return apply_bf16<kSoftplus>(fn, in, out, n);
        case kGelu: return apply_bf16<kGelu>(fn, in, out, n);
        case kSilu: return apply_bf16<kSilu>(fn, in, out, n);
        case kElu: return apply_bf16<kElu>(fn, in, out, n);
        default: return -2;
    }
}

template <typename T>
int dispatch(int act, int fn, const T* in, T* out, long long n) {
    switch (act) {
        case kIdentity: return apply<T, kIdentity>(fn, in, out, n);
        case kRelu: return apply<T, kRelu>(fn, in, out, n);
        case kSigmoid: return apply<T, kSigmoid>(fn, in, out, n);
        case kTanh: return apply<T, kTanh>(fn, in, out, n);
        case kLeakyRelu: return apply<T, kLeakyRelu>(fn, in, out, n);
        case kSoftplus: return apply<T, kSoftplus>(fn, in, out, n);
        case kGelu: return apply<T, kGelu>(fn, in, out, n);
        case kSilu: return apply<T, kSilu>(fn, in, out, n);
        case kElu: return apply<T, kElu>(fn, in, out, n);
        default: return -2;
    }
}

template <typename T>
void sgd(T* w, const T* g, T* vel, T lr, T momentum, T weight_decay, int nesterov, long long n) {
    for (long long i = 0; i < n; ++i) {
        T v = vel ? vel[i] : T(0);
        w[i] = sgd_update(w[i], g[i], v, lr, momentum, weight_decay, nesterov);
        if (vel) vel[i] = v;
    }
}

template <typename T>
void adam(T* w, const T* g, T* m, T* v, T lr, T c1m, T c2m, T eps, T bias_c1, T bias_c2, T weight_decay,
          int decoupled, long long n) {
    for (long long i = 0; i < n; ++i)
        w[i] = adam_update(w[i], g[i], m[i], v[i], lr, c1m, c2m, eps, bias_c1, bias_c2, weight_decay, decoupled);
}

// Every active member's step, with its settings decoded from its row of `hyper` (ensemble.cuh),
// as kernels/ensemble.cu does it: members of `per_member` values each.
template <typename T>
void members_sgd(T* w, const T* g, T* vel, const double* hyper, int nesterov, long long members, long long per_member) {
    for (long long k = 0; k < members; ++k) {
        const double* h = hyper + k * kHyperFields;
        if (!member_active(h)) continue;
        const MemberSgd<T> s = member_sgd<T>(h);
        sgd(w + k * per_member, g + k * per_member, vel ? vel + k * per_member : nullptr, s.lr, s.momentum,
            s.weight_decay, nesterov, per_member);
    }
}

template <typename T>
void members_adam(T* w, const T* g, T* m, T* v, const double* hyper, T eps, double step, int decoupled,
                 long long members, long long per_member) {
    for (long long k = 0; k < members; ++k) {
        const double* h = hyper + k * kHyperFields;
        if (!member_active(h)) continue;
        double bias_c[2];
        member_bias_corrections(h, step, bias_c);
        const MemberAdam<T> a = member_adam<T>(h, bias_c);
        const long long o = k * per_member;
        adam(w + o, g + o, m + o, v + o, a.lr, a.one_minus_beta1, a.one_minus_beta2, eps, a.bias_c1, a.bias_c2,
             a.weight_decay, decoupled, per_member);
    }
}

// Every active member's gradient clipped as member_clip_grad does it (ensemble.cuh's member_clip, clip_element),
// given the members' sums of squares sum_sq.
template <typename T>
void members_clip(T* g, const double* hyper, const double* sum_sq, long long members, long long per_member) {
    for (long long k = 0; k < members; ++k) {
        const double* h = hyper + k * kHyperFields;
        if (!member_active(h)) continue;
        const MemberClip<T> c = member_clip<T>(h, sum_sq[k]);
        for (long long i = 0; i < per_member; ++i) g[k * per_member + i] = clip_element(g[k * per_member + i], c);
    }
}

// member_bias_act_forward's loop (kernels/ensemble.cu) on one thread, over bf16 arrays: members of
// rows x cols, member k's bias at b + k * b_stride; the element is the kernel's own bias_act_element.
template <int ACT>
void member_bias_act(const bf16* Z_in, const bf16* b, long long b_stride, bf16* Z_keep, bf16* A, long long members,
                     long long rows, long long cols) {
    const long long n = rows * cols;
    for (long long k = 0; k < members; ++k) {
        for (long long i = 0; i < n; ++i) {
            const long long at = k * n + i;
            bias_act_element<bf16, ACT>(Z_in[at], b != nullptr ? b + k * b_stride + i % cols : nullptr,
                                        Z_keep != nullptr ? Z_keep + at : nullptr, A + at);
        }
    }
}

int member_bias_act(int act, const bf16* Z_in, const bf16* b, long long b_stride, bf16* Z_keep, bf16* A,
                    long long members, long long rows, long long cols) {
    switch (act) {
#define GPUNN_CASE(id) case id: member_bias_act<id>(Z_in, b, b_stride, Z_keep, A, members, rows, cols); return 0;
        GPUNN_CASE(kIdentity) GPUNN_CASE(kRelu) GPUNN_CASE(kSigmoid) GPUNN_CASE(kTanh) GPUNN_CASE(kLeakyRelu)
        GPUNN_CASE(kSoftplus) GPUNN_CASE(kGelu) GPUNN_CASE(kSilu) GPUNN_CASE(kElu)
#undef GPUNN_CASE
        default: return -2;
    }
}

}  // namespace

extern "C" {
// bf16 arrays travel as their 16-bit patterns.
int act_bf16(int act, int fn, const unsigned short* in, unsigned short* out, long long n) {
    static_assert(sizeof(bf16) == 2, "bf16 must be 16 bits");
    return apply(act, fn, reinterpret_cast<const bf16*>(in), reinterpret_cast<bf16*>(out), n);
}
void bf16_from_float(const float* in, unsigned short* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = float_to_bf16(in[i]).bits;
}
void bf16_to_float_array(const unsigned short* in, float* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = bf16_to_float(bf16{in[i]});
}

// fn: 0 = g(z), 1 = g'(z), 2 = g'(a). Returns 0, or -1 when fn 2 does not exist for act.
int act_f32(int act, int fn, const float* in, float* out, long long n) { return dispatch(act, fn, in, out, n); }
int act_f64(int act, int fn, const double* in, double* out, long long n) { return dispatch(act, fn, in, out, n); }

void sgd_f32(float* w, const float* g, float* vel, float lr, float mu, float wd, int nesterov, long long n) {
    sgd(w, g, vel, lr, mu, wd, nesterov, n);
}
void sgd_f64(double* w, const double* g, double* vel, double lr, double mu, double wd, int nesterov, long long n) {
    sgd(w, g, vel, lr, mu, wd, nesterov, n);
}
void adam_f32(float* w, const float* g, float* m, float* v, float lr, float omb1, float omb2, float eps, float c1,
              float c2, float wd, int decoupled, long long n) {
    adam(w, g, m, v, lr, omb1, omb2, eps, c1, c2, wd, decoupled, n);
}
void adam_f64(double* w, const double* g, double* m, double* v, double lr, double omb1, double omb2, double eps,
              double c1, double c2, double wd, int decoupled, long long n) {
    adam(w, g, m, v, lr, omb1, omb2, eps, c1, c2, wd, decoupled, n);
}
// optimizers.cuh's rule for Adam's bias correction 1 - beta^t, which every kernel forming it calls.
double bias_correction(double beta, double t) { return adam_bias_correction(beta, t); }
// optimizers.cuh's gradient clipping rules: clip_norm's factor of a sum of squares, clip_value's clamp per element.
double clip_factor_of(double sum_sq, double max_norm) { return clip_norm_factor(sum_sq, max_norm); }
void clip_value_f32(float* g, float v, long long n) {
    for (long long i = 0; i < n; ++i) g[i] = clip_to_value(g[i], v);
}
void clip_value_f64(double* g, double v, long long n) {
    for (long long i = 0; i < n; ++i) g[i] = clip_to_value(g[i], v);
}
void member_sgd_f32(float* w, const float* g, float* vel, const double* hyper, int nesterov, long long members,
                    long long per_member) {
    members_sgd(w, g, vel, hyper, nesterov, members, per_member);
}
void member_sgd_f64(double* w, const double* g, double* vel, const double* hyper, int nesterov, long long members,
                    long long per_member) {
    members_sgd(w, g, vel, hyper, nesterov, members, per_member);
}
void member_adam_f32(float* w, const float* g, float* m, float* v, const double* hyper, float eps, double step,
                     int decoupled, long long members, long long per_member) {
    members_adam(w, g, m, v, hyper, eps, step, decoupled, members, per_member);
}
void member_adam_f64(double* w, const double* g, double* m, double* v, const double* hyper, double eps, double step,
                     int decoupled, long long members, long long per_member) {
    members_adam(w, g, m, v, hyper, eps, step, decoupled, members, per_member);
}
void member_clip_f32(float* g, const double* hyper, const double* sum_sq, long long members, long long per_member) {
    members_clip(g, hyper, sum_sq, members, per_member);
}
void member_clip_f64(double* g, const double* hyper, const double* sum_sq, long long members, long long per_member) {
    members_clip(g, hyper, sum_sq, members, per_member);
}
// bf16 arrays travel as their 16-bit patterns (see act_bf16).
int member_bias_act_bf16(int act, const unsigned short* Z_in, const unsigned short* b, long long b_stride,
                         unsigned short* Z_keep, unsigned short* A, long long members, long long rows, long long cols) {
    return member_bias_act(act, reinterpret_cast<const bf16*>(Z_in), reinterpret_cast<const bf16*>(b), b_stride,
                           reinterpret_cast<bf16*>(Z_keep), reinterpret_cast<bf16*>(A), members, rows, cols);
}
// member_bias_grad's per-member column sums (kernels/ensemble.cu) for bf16 dZ: each value widened by load,
// summed in double in row order, stored as float (master_t<bf16>).
void member_bias_grad_bf16(const unsigned short* dZ, float* db, long long db_stride, long long members,
                           long long rows, long long cols) {
    const bf16* z = reinterpret_cast<const bf16*>(dZ);
    for (long long k = 0; k < members; ++k) {
        for (long long c = 0; c < cols; ++c) {
            double acc = 0.0;
            for (long long r = 0; r < rows; ++r) acc += (double)load(z[(k * rows + r) * cols + c]);
            db[k * db_stride + c] = (master_t<bf16>)acc;
        }
    }
}
}
