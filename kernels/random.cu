// random.cu -- normal and uniform draws of several Philox streams in one launch (gpunn/rng.py).
//
// Templates on T (float or double) instantiated by name, e.g. "gpunn::philox_normal<float>". A stream s fills
// out[start_s .. end_s) with the first end_s - start_s values of one of its draws; value i comes from block
// i / P of that draw, P = philox_per_block<T>() (4 float, 2 double), so a draw's first values are the same
// whatever its length and whatever other streams share the launch. The streams' table, uint64 words:
//   streams [3 n_streams]  stream s: its key (the low word is Philox's k0, the high k1), its draw number, start_s
// (end_s is start_{s+1}, the last stream's n). Grid y walks the streams, grid x with the block's threads walks a
// stream's blocks (one Philox call per thread and block): any launch shape covers every value.
#include "philox.cuh"

namespace gpunn {

template <typename T, bool kUniform>
__device__ void philox_fill(const unsigned long long* streams, long long n_streams, long long n, T low, T scale,
                            T* out) {
    constexpr int per = philox_per_block<T>();
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long s = blockIdx.y; s < n_streams; s += gridDim.y) {
        const unsigned long long key = streams[3 * s], draw = streams[3 * s + 1];
        const long long start = (long long)streams[3 * s + 2];
        const long long end = s + 1 < n_streams ? (long long)streams[3 * s + 5] : n;
        const long long blocks = (end - start + per - 1) / per;
        for (long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
            T v[4];
            const PhiloxWords words = philox_block(key, draw, (unsigned long long)b);
            if constexpr (kUniform) {
                philox_uniforms(words, low, scale, v);
            } else {
                philox_normals(words, v);
            }
            const long long first = start + b * per;
            for (int k = 0; k < per && first + k < end; ++k) out[first + k] = v[k];
        }
    }
}

// Standard normals (Box-Muller on the draw's uniforms).
//   streams [3 n_streams]  the table above (read)
//   out     [n]            receives every stream's values
template <typename T>
__global__ void philox_normal(const unsigned long long* streams, long long n_streams, long long n, T* out) {
    philox_fill<T, false>(streams, n_streams, n, T(0), T(1), out);
}

// Uniforms on [low, low + scale]: low + scale u, u in (0, 1] (low itself where scale u rounds away).
//   streams [3 n_streams]  the table above (read)
//   out     [n]            receives every stream's values
template <typename T>
__global__ void philox_uniform(const unsigned long long* streams, long long n_streams, long long n, T low, T scale,
                               T* out) {
    philox_fill<T, true>(streams, n_streams, n, low, scale, out);
}

}  // namespace gpunn
