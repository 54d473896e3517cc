// philox_harness.cpp -- kernels/philox.cuh compiled as plain C++, for tests/test_philox_host.py.
//
// Built with g++ -O2 (no -ffast-math) into a shared library called through ctypes; each function applies one of
// the header's rules over arrays.
#include "philox.cuh"

using namespace gpunn;

extern "C" {

// out[4i..4i+3] = Philox4x32-10 of counter[4i..4i+3] under key[2i], key[2i+1].
void philox_words(const unsigned* counter, const unsigned* key, unsigned* out, long long n) {
    for (long long i = 0; i < n; ++i) {
        const PhiloxWords c{{counter[4 * i], counter[4 * i + 1], counter[4 * i + 2], counter[4 * i + 3]}};
        const PhiloxWords w = philox4x32_10(c, key[2 * i], key[2 * i + 1]);
        for (int k = 0; k < 4; ++k) out[4 * i + k] = w.x[k];
    }
}

// The words of blocks first .. first + n - 1 of draw `draw` of the stream keyed `key`: out[4 n].
void philox_blocks(unsigned long long key, unsigned long long draw, unsigned long long first, unsigned* out,
                   long long n) {
    for (long long i = 0; i < n; ++i) {
        const PhiloxWords w = philox_block(key, draw, first + (unsigned long long)i);
        for (int k = 0; k < 4; ++k) out[4 * i + k] = w.x[k];
    }
}

void uniform01_float(const unsigned* x, float* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = uniform01_f32(x[i]);
}

void uniform01_double(const unsigned* hi, const unsigned* lo, double* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = uniform01_f64(hi[i], lo[i]);
}

// The values of n blocks of words (words[4 n]): out[n * per_block] in block order.
void normals_float(const unsigned* words, float* out, long long n) {
    for (long long i = 0; i < n; ++i) {
        const PhiloxWords w{{words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]}};
        philox_normals(w, out + 4 * i);
    }
}

void normals_double(const unsigned* words, double* out, long long n) {
    for (long long i = 0; i < n; ++i) {
        const PhiloxWords w{{words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]}};
        philox_normals(w, out + 2 * i);
    }
}

void uniforms_float(const unsigned* words, float low, float scale, float* out, long long n) {
    for (long long i = 0; i < n; ++i) {
        const PhiloxWords w{{words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]}};
        philox_uniforms(w, low, scale, out + 4 * i);
    }
}

void uniforms_double(const unsigned* words, double low, double scale, double* out, long long n) {
    for (long long i = 0; i < n; ++i) {
        const PhiloxWords w{{words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]}};
        philox_uniforms(w, low, scale, out + 2 * i);
    }
}

}  // extern "C"
