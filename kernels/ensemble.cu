// ensemble.cu -- the fused kernels of a training step with a member axis (gpunn.Ensemble).
//
// K models of one architecture train as one step: activations are [K x rows x cols] stacks, the
// parameters of member k are the k-th contiguous run of `per_member` values of one flat buffer
// (so a bias row lies `b_stride` values after the previous member's), and the optimizer reads
// each member's settings from a K x kHyperFields double vector (ensemble.cuh). Every kernel runs
// on a grid whose y index walks the members (blockIdx.y, stepping by gridDim.y) and whose x index
// is a grid-stride loop inside one member, so no element index is ever divided by a member size.
// Templates instantiated by name ("gpunn::member_adam_step<float>", ...); see gpunn/ops/kernels.py.
// The per-element math is the single-model one: activations.cuh and optimizers.cuh. T is float or
// double, and for the forward and bias-gradient kernels also bf16 (Ensemble(precision="bf16"):
// bfloat16 activations, math in float, float32 bias gradients; bfloat16.cuh).
#include "activations.cuh"
#include "bfloat16.cuh"
#include "block_sum.cuh"
#include "ensemble.cuh"

namespace gpunn {

// A = g(Z_in + b[k]) for each member k, b[k] broadcast over the member's rows.
//   Z_in   [K x rows x cols]  pre-activation (read)
//   b      bias of member k at b + k * b_stride, cols values; nullptr for none
//   Z_keep [K x rows x cols]  receives Z_in + b, or nullptr; may be Z_in (in place)
//   A      [K x rows x cols]  receives the activation; may be Z_in (in place)
template <typename T, int ACT>
__global__ void member_bias_act_forward(const T* Z_in, const T* b, long long b_stride, T* Z_keep, T* A,
                                        long long members, long long rows, long long cols) {
    const long long n = rows * cols;
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (first >= n) return;
    // Follow the column incrementally: two divisions per thread, none per element or member.
    const long long first_col = first % cols;
    const long long col_step = stride % cols;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const T* bk = b != nullptr ? b + k * b_stride : nullptr;
        const long long base = k * n;
        long long col = first_col;  // each member's rows start at column 0: i = first is in column first % cols
        for (long long i = first; i < n; i += stride) {
            bias_act_element<T, ACT>(Z_in[base + i], bk != nullptr ? bk + col : nullptr,
                                     Z_keep != nullptr ? Z_keep + base + i : nullptr, A + base + i);
            col += col_step;
            if (col >= cols) col -= cols;
        }
    }
}

// db[k][c] = sum over r of dZ[k, r, c], accumulated in double, rows in a fixed order per lane.
// Launch with blockDim = (32, Y), Y a power of two <= 32, gridDim = (ceil(cols / 32), <= K).
//   dZ [K x rows x cols]  gradient w.r.t. the pre-activation (read)
//   db bias gradient of member k at db + k * db_stride, cols values (written; float for bf16 dZ)
template <typename T>
__global__ void member_bias_grad(const T* dZ, master_t<T>* db, long long db_stride, long long members,
                                 long long rows, long long cols) {
    __shared__ double sums[32][33];  // [y][x], padded against bank conflicts
    const long long col = (long long)blockIdx.x * 32 + threadIdx.x;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const T* dZk = dZ + k * rows * cols;
        double acc = 0.0;
        if (col < cols) {
            for (long long r = threadIdx.y; r < rows; r += blockDim.y) acc += (double)load(dZk[r * cols + col]);
        }
        sums[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        for (unsigned half = blockDim.y >> 1; half > 0; half >>= 1) {
            if (threadIdx.y < half) sums[threadIdx.y][threadIdx.x] += sums[threadIdx.y + half][threadIdx.x];
            __syncthreads();
        }
        if (threadIdx.y == 0 && col < cols) db[k * db_stride + col] = (master_t<T>)sums[0][threadIdx.x];
        __syncthreads();  // sums is reused by the next member
    }
}

// dA = scale * (A - Y) and sum_sq[k] += sum over member k of (A - Y)^2, in double (one atomicAdd
// per block and member). Launch with blockDim.x a multiple of 32.
//   A      [K x n]   predictions (read)
//   Y      targets of member k at Y + k * y_stride, n values (y_stride 0: one Y for all members)
//   dA     [K x n]   receives scale * (A - Y), or nullptr for the sums alone; may be A
//   sum_sq [K]       accumulators, zeroed by the caller
template <typename T>
__global__ void member_mse_grad(const T* A, const T* Y, long long y_stride, T* dA, T scale, long long members,
                                long long n, double* sum_sq) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const T* Ak = A + k * n;
        const T* Yk = Y + k * y_stride;
        double acc = 0.0;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            const T d = Ak[i] - Yk[i];
            if (dA != nullptr) dA[k * n + i] = scale * d;
            acc += (double)d * (double)d;
        }
        acc = block_sum(acc);
        if (threadIdx.x == 0) atomicAdd(sum_sq + k, acc);
        __syncthreads();  // block_sum's shared memory is reused by the next member
    }
}

// The weighted loss's gradient of every member (gpunn/sample_weights.py): weighted_mse_grad (reductions.cu) per
// member, with its roundings: dA[k, r, c] = (scale * d) * w_kr with d = A[k, r, c] - Y_k[r, c], and
// sum_sq[k] += sum over r, c of (d * w_kr) * d, each term formed in double and accumulated in double (one atomicAdd
// per block and member). Training's Y carries each row's weight as one more, last column, so Y's rows are cols + 1
// apart and the weights a column of it (a bootstrap batch: one such Y per member, each member's own weights): hence
// member and row strides for Y and for w, where A and dA are contiguous. Launch with blockDim.x a multiple of 32.
//   A        [K x rows x cols] predictions (read)
//   Y        member k's row r's cols targets at Y + k * y_member + r * y_row (y_member 0: one Y for all members)
//   w        member k's row r's weight at w[k * w_member + r * w_row] (w_member 0: one weight a row for all)
//   dA       [K x rows x cols] receives the gradient; may be A
//   scale    2/m for the mean over m rows of the summed weighted squared error
//   sum_sq   [K] accumulators, zeroed by the caller
template <typename T>
__global__ void member_weighted_mse_grad(const T* A, const T* Y, long long y_member, long long y_row, const T* w,
                                         long long w_member, long long w_row, T* dA, T scale, long long members,
                                         long long rows, long long cols, double* sum_sq) {
    const long long stride = (long long)blockDim.x * gridDim.x, n = rows * cols;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const T* Yk = Y + k * y_member;
        const T* wk = w + k * w_member;
        double acc = 0.0;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            const long long r = i / cols;
            const T d = A[k * n + i] - Yk[r * y_row + (i - r * cols)];
            const T wr = wk[r * w_row];
            dA[k * n + i] = (scale * d) * wr;
            acc += ((double)d * (double)wr) * (double)d;
        }
        acc = block_sum(acc);
        if (threadIdx.x == 0) atomicAdd(sum_sq + k, acc);
        __syncthreads();  // block_sum's shared memory is reused by the next member
    }
}

// partial[k * gridDim.x + blockIdx.x] = this block's sum over member k's gradient row of g^2 (grid-stride), in
// double, for each member that clips by norm (member_clips_by_norm; the others are skipped, whole blocks at a time,
// their slots left as they are). No atomics: member_grad_sum_total adds the blocks' sums in a fixed order, so a run
// clips with the same bits every time (as one model's clip_sum_sq / clip_factor). Launch with blockDim.x a multiple
// of 32.
//   g       [K x per_member] gradients (read)
//   hyper   [K x kHyperFields] member settings (read)
//   partial [K x gridDim.x] receives each block's sums
template <typename T>
__global__ void member_grad_sum_sq(const T* g, const double* hyper, long long members, long long per_member,
                                   double* partial) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        if (!member_clips_by_norm(hyper + k * kHyperFields)) continue;  // the same for the whole block
        const T* gk = g + k * per_member;
        double acc = 0.0;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < per_member; i += stride) {
            const double x = (double)gk[i];
            acc += x * x;
        }
        acc = block_sum(acc);
        if (threadIdx.x == 0) partial[k * gridDim.x + blockIdx.x] = acc;
        __syncthreads();  // block_sum's shared memory is reused by the next member
    }
}

// sum_sq[k] = the sum of member k's parts block sums partial[k * parts ...] (member_grad_sum_sq's), for each member
// that clips by norm: thread t adds sums t, t + blockDim.x, ... in order, then block_sum's fixed tree (the same bits
// every run). One block per member (grid x 1; grid y walks the members), blockDim.x a multiple of 32.
//   partial [K x parts] member_grad_sum_sq's block sums (read)
//   sum_sq  [K] receives each clipping member's sum of squares
template <typename T>
__global__ void member_grad_sum_total(const double* partial, long long parts, const double* hyper, long long members,
                                      double* sum_sq) {
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        if (!member_clips_by_norm(hyper + k * kHyperFields)) continue;  // the same for the whole block
        double acc = 0.0;
        for (long long i = threadIdx.x; i < parts; i += blockDim.x) acc += partial[k * parts + i];
        acc = block_sum(acc);
        if (threadIdx.x == 0) sum_sq[k] = acc;
        __syncthreads();
    }
}

// Each active member's gradient row clipped in place by its own setting (member_clip, clip_element): by norm
// from sum_sq[k] (member_grad_sum_total's), by value.
//   g      [K x per_member] gradients, clipped in place
//   hyper  [K x kHyperFields] member settings (read)
//   sum_sq [K] the sums of squares of the members that clip by norm; nullptr where none does
template <typename T>
__global__ void member_clip_grad(T* g, const double* hyper, const double* sum_sq, long long members,
                                 long long per_member) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const double* h = hyper + k * kHyperFields;
        if (!member_active(h)) continue;
        const MemberClip<T> c = member_clip<T>(h, member_clips_by_norm(h) ? sum_sq[k] : 0.0);
        if (!c.scales && !c.clamps) continue;
        T* gk = g + k * per_member;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < per_member; i += stride)
            gk[i] = clip_element(gk[i], c);
    }
}

// One SGD step of every active member (sgd_update with member k's lr, momentum, weight decay).
//   w     [K x per_member] parameters, updated in place
//   g     [K x per_member] gradients (read)
//   vel   [K x per_member] momentum buffers, updated in place; nullptr when no member has momentum
//   hyper [K x kHyperFields] member settings (read)
template <typename T>
__global__ void member_sgd_step(T* w, const T* g, T* vel, const double* hyper, int nesterov, long long members,
                                long long per_member) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const double* h = hyper + k * kHyperFields;
        if (!member_active(h)) continue;
        const MemberSgd<T> s = member_sgd<T>(h);
        const long long base = k * per_member;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < per_member; i += stride) {
            T v = vel != nullptr ? vel[base + i] : T(0);
            w[base + i] = sgd_update(w[base + i], g[base + i], v, s.lr, s.momentum, s.weight_decay, nesterov);
            if (vel != nullptr) vel[base + i] = v;
        }
    }
}

// One Adam (decoupled == 0) or AdamW step of every active member at step t (adam_update).
//   w, m, v [K x per_member] parameters and moments, updated in place
//   g       [K x per_member] gradients (read)
//   hyper   [K x kHyperFields] member settings (read)
// Thread 0 of each block forms the member's two bias corrections (double pows: a GPU's double rate may be
// 1/64 of its float rate) into shared memory, as optimizers.cu's adam_step does; every thread of the block
// meets it at both barriers (the member and whether it is active are the same for the whole block).
template <typename T>
__device__ void member_adam_loop(T* w, const T* g, T* m, T* v, const double* hyper, T eps, double step,
                                 int decoupled, long long members, long long per_member) {
    __shared__ double bias_c[2];  // this member's 1 - beta1^t, 1 - beta2^t
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long k = blockIdx.y; k < members; k += gridDim.y) {
        const double* h = hyper + k * kHyperFields;
        if (!member_active(h)) continue;
        if (threadIdx.x == 0) member_bias_corrections(h, step, bias_c);
        __syncthreads();
        const MemberAdam<T> a = member_adam<T>(h, bias_c);
        __syncthreads();  // every thread has read bias_c before thread 0 writes the block's next member's
        const long long base = k * per_member;
        for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < per_member; i += stride) {
            T mi = m[base + i], vi = v[base + i];
            w[base + i] = adam_update(w[base + i], g[base + i], mi, vi, a.lr, a.one_minus_beta1, a.one_minus_beta2,
                                      eps, a.bias_c1, a.bias_c2, a.weight_decay, decoupled);
            m[base + i] = mi;
            v[base + i] = vi;
        }
    }
}

template <typename T>
__global__ void member_adam_step(T* w, const T* g, T* m, T* v, const double* hyper, T eps, double step,
                                 int decoupled, long long members, long long per_member) {
    member_adam_loop(w, g, m, v, hyper, eps, step, decoupled, members, per_member);
}

// member_adam_step at the step t = state[0], read from device memory (a captured CUDA graph replays its
// arguments, so the step count lives on the device, advanced by optimizers.cu's optimizer_tick).
template <typename T>
__global__ void member_adam_step_dev(T* w, const T* g, T* m, T* v, const double* hyper, T eps, const double* state,
                                     int decoupled, long long members, long long per_member) {
    member_adam_loop(w, g, m, v, hyper, eps, state[0], decoupled, members, per_member);
}

}  // namespace gpunn
