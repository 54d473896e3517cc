// reductions.cu -- kernels that sum: the MSE gradient with its loss (unweighted and weighted), and the bias gradient.
//
// Templates instantiated by name ("gpunn::mse_grad<float>", ...) through cupy.RawModule;
// see gpunn/ops/kernels.py. T is float or double (mse_grad, weighted_mse_grad), or also bf16 (bias_grad, whose
// db is then float: master_t<T>, bfloat16.cuh).
#include "activations.cuh"
#include "bfloat16.cuh"
#include "block_sum.cuh"

namespace gpunn {

// dA = scale * (A - Y) and *sum_sq += sum((A - Y)^2), the sum accumulated in double
// (one atomicAdd per block). Launch with blockDim.x a multiple of 32.
//   A      [n] predictions (read)
//   Y      [n] targets (read)
//   dA     [n] receives scale * (A - Y), or nullptr to compute only the sum; may be A
//   scale  2/m for the mean over m rows of the summed squared error
//   sum_sq [1] accumulator, zeroed by the caller
template <typename T>
__global__ void mse_grad(const T* A, const T* Y, T* dA, T scale, long long n, double* sum_sq) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T d = A[i] - Y[i];
        if (dA != nullptr) dA[i] = scale * d;
        acc += (double)d * (double)d;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) atomicAdd(sum_sq, acc);
}

// The weighted loss's gradient (gpunn/sample_weights.py): dA[r, c] = (scale * d) * w_r with d = A[r, c] - Y[r, c],
// and *sum_sq += sum over r, c of (d * w_r) * d, each term formed in double and accumulated in double (one atomicAdd
// per block), as mse_grad accumulates: the reference's roundings (Ops.loss_gradient), and with unit weights mse_grad's
// very bits. Training's Y carries each row's weight as one more, last column, so Y's rows are cols + 1 apart and the
// weights a column of it: hence a row stride for Y and a stride for w, where A and dA are contiguous.
// Launch with blockDim.x a multiple of 32.
//   A        [rows x cols] predictions (read)
//   Y        row r's cols targets at Y + r * y_stride (read)
//   w        row r's weight at w[r * w_stride] (read)
//   dA       [rows x cols] receives the gradient; may be A
//   scale    2/m for the mean over m rows of the summed weighted squared error
//   sum_sq   [1] accumulator, zeroed by the caller
template <typename T>
__global__ void weighted_mse_grad(const T* A, const T* Y, long long y_stride, const T* w, long long w_stride, T* dA,
                                  T scale, long long rows, long long cols, double* sum_sq) {
    const long long stride = (long long)blockDim.x * gridDim.x, n = rows * cols;
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const long long r = i / cols;
        const T d = A[i] - Y[r * y_stride + (i - r * cols)];
        const T wr = w[r * w_stride];
        dA[i] = (scale * d) * wr;
        acc += ((double)d * (double)wr) * (double)d;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) atomicAdd(sum_sq, acc);
}

// db[c] = sum over r of dZ[r, c] (column sums, accumulated in double), in one or two stages.
// Launch with blockDim = (32, Y), Y a power of two <= 32, and gridDim = (ceil(cols / 32), chunks):
// block (bx, by) sums rows [by * rows_per_chunk, (by + 1) * rows_per_chunk) of columns
// bx * 32 .. bx * 32 + 31; thread (x, y) takes every Y-th row of its column, then the Y partial
// sums are added in shared memory. With one chunk the block writes db itself; with several,
// each writes its chunk's sums to `partial` and bias_grad_finish adds them in a fixed order,
// so the result is the same from run to run. Chunks over rows keep a tall, narrow dZ (many rows,
// few columns) from running on a handful of blocks.
//   dZ      [rows x cols]   gradient w.r.t. the pre-activation (read)
//   db      [cols]          receives the column sums when gridDim.y == 1 (float for bf16 dZ)
//   partial [chunks x cols] receives each chunk's column sums when gridDim.y > 1 (else unused)
template <typename T>
__global__ void bias_grad(const T* dZ, master_t<T>* db, double* partial, long long rows, long long cols,
                          long long rows_per_chunk) {
    __shared__ double sums[32][33];  // [y][x], padded against bank conflicts
    const long long col = (long long)blockIdx.x * 32 + threadIdx.x;
    const long long first = (long long)blockIdx.y * rows_per_chunk;
    const long long last = first + rows_per_chunk < rows ? first + rows_per_chunk : rows;
    double acc = 0.0;
    if (col < cols) {
        for (long long r = first + threadIdx.y; r < last; r += blockDim.y) acc += (double)load(dZ[r * cols + col]);
    }
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    for (unsigned half = blockDim.y >> 1; half > 0; half >>= 1) {
        if (threadIdx.y < half) sums[threadIdx.y][threadIdx.x] += sums[threadIdx.y + half][threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && col < cols) {
        if (gridDim.y == 1) db[col] = (master_t<T>)sums[0][threadIdx.x];
        else partial[blockIdx.y * cols + col] = sums[0][threadIdx.x];
    }
}

// db[c] = sum over k of partial[k, c], k in order: the second stage of bias_grad.
//   partial [chunks x cols] column sums of each row chunk (read)
//   db      [cols]          receives the totals
template <typename T>
__global__ void bias_grad_finish(const double* partial, master_t<T>* db, long long chunks, long long cols) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
        double acc = 0.0;
        for (long long k = 0; k < chunks; ++k) acc += partial[k * cols + c];
        db[c] = (master_t<T>)acc;
    }
}

}  // namespace gpunn
