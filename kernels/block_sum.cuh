// block_sum.cuh -- the sum of one double per thread over a thread block (warp shuffles, then
// shared memory). Shared by reductions.cu and ensemble.cu. CUDA only.
#pragma once

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

}  // namespace gpunn
