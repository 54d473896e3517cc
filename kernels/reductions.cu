// reductions.cu -- kernels that sum: the MSE gradient with its loss, and the bias gradient.
//
// Templates instantiated by name ("gpunn::mse_grad<float>", ...) through cupy.RawModule;
// see gpunn/kernels.py. T is float or double.
#include "activations.cuh"

namespace gpunn {

// The sum of v over the block, valid in thread 0. blockDim.x must be a multiple of 32 (<= 1024)
// and every thread of the block must call it.
__device__ __forceinline__ double block_sum(double v) {
    __shared__ double warp_sums[32];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    return v;
}

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

// db[c] = sum over r of dZ[r, c] (column sums, accumulated in double).
// Launch with blockDim = (32, Y) for Y a power of two <= 32 and gridDim.x = ceil(cols / 32):
// thread (x, y) sums rows y, y + Y, ... of column blockIdx.x * 32 + x, then the Y partial sums
// of each column are added in shared memory.
//   dZ [rows x cols] gradient w.r.t. the pre-activation (read)
//   db [cols]        receives the column sums
template <typename T>
__global__ void bias_grad(const T* dZ, T* db, long long rows, long long cols) {
    __shared__ double partial[32][33];  // [y][x], padded against bank conflicts
    const long long col = (long long)blockIdx.x * 32 + threadIdx.x;
    double acc = 0.0;
    if (col < cols) {
        for (long long r = threadIdx.y; r < rows; r += blockDim.y) acc += (double)dZ[r * cols + col];
    }
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    for (unsigned half = blockDim.y >> 1; half > 0; half >>= 1) {
        if (threadIdx.y < half) partial[threadIdx.y][threadIdx.x] += partial[threadIdx.y + half][threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && col < cols) db[col] = (T)partial[0][threadIdx.x];
}

}  // namespace gpunn
