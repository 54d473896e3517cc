// cuda_host.h -- just enough of CUDA's execution model, in plain C++, to run gpunn's kernels/*.cu on the host.
//
// tests/test_kernel_bodies_host.py includes the kernel sources after this header (kernel_bodies.cpp) and
// launches them on small arrays with several grid and block shapes. A launch runs its blocks one after
// another; the threads of a block are fibers (ucontext) on one OS thread, each running until it finishes or
// waits at a barrier, scheduled in thread order or (cuda_host::schedule = 1) the last warp first, each warp
// as far as it can go:
//   __syncthreads()       every live thread of the block has arrived (an exited thread counts as arrived)
//   __shfl_down_sync()    the live lanes of the warp exchange values (two warp barriers: write, read)
// Shared memory is a function-local static (blocks never overlap); the statics registered with
// add_shared (the test finds them in the library's symbols) start each block with every byte 0xff (a double
// reads NaN), as a GPU's shared memory holds whatever was there: a read of a slot no thread of the block
// wrote shows, which zero-initialised statics or the last block's values would hide. atomicAdd is a plain
// add (nothing runs at once). Indexing, grid-stride loops, row chunks, member strides, reductions and
// barriers that are missing between a shared write and another thread's read or the next round's write (one
// order or the other runs a thread or a warp ahead until it waits) show here; the device's
// arithmetic (-ftz, its libm) and real concurrency do not: that is the GPU run's (bench/gpu_check.sh).
#pragma once

#include <ucontext.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

namespace cuda_host {

enum State { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
    ucontext_t ctx;
    State state = kRunnable;
    dim3 tid;
    int linear = 0;
};

inline dim3 thread_idx, block_idx, block_dim, grid_dim;
inline std::vector<Fiber>* fibers = nullptr;
inline int current = -1;
inline ucontext_t scheduler;
inline const std::function<void()>* body = nullptr;
inline std::vector<char> stacks;
inline double shuffle[1024];
inline const char* error = nullptr;  // why the last launch failed (nullptr: it did not)
// 0: each pass runs the threads in order; 1: the last warp first, each warp as far as it can go before
// the next (so a warp can reach the next round of a loop while warp 0 still reads this round's shared data)
inline int schedule = 0;
constexpr std::size_t kStackBytes = 64 * 1024;

inline void fiber_main() {
    (*body)();
    (*fibers)[current].state = kDone;  // returning resumes the scheduler (uc_link)
}

inline void wait(State why) {
    Fiber& f = (*fibers)[current];
    f.state = why;
    swapcontext(&f.ctx, &scheduler);
}

// Release warp w's lanes if every live one waits at the warp barrier; whether any was released.
inline bool release_warp(std::vector<Fiber>& fs, std::size_t w) {
    bool ready = true, released = false;
    const std::size_t end = (w + 1) * 32 < fs.size() ? (w + 1) * 32 : fs.size();
    for (std::size_t i = w * 32; i < end; ++i) ready &= fs[i].state == kDone || fs[i].state == kAtWarpBarrier;
    for (std::size_t i = w * 32; ready && i < end; ++i) {
        if (fs[i].state == kAtWarpBarrier) fs[i].state = kRunnable, released = true;
    }
    return released;
}

// Release the threads waiting at a barrier that every live participant has reached; false: none could go on.
inline bool release(std::vector<Fiber>& fs) {
    bool released = false, block_ready = true;
    for (const Fiber& f : fs) block_ready &= f.state == kDone || f.state == kAtBlockBarrier;
    for (Fiber& f : fs) {
        if (block_ready && f.state == kAtBlockBarrier) f.state = kRunnable, released = true;
    }
    for (std::size_t w = 0; w * 32 < fs.size(); ++w) released |= release_warp(fs, w);
    return released;
}

inline void run_fiber(std::vector<Fiber>& fs, int i) {
    current = i;
    thread_idx = fs[i].tid;
    swapcontext(&scheduler, &fs[i].ctx);
}

// The __shared__ variables (address, bytes), filled with 0xff before each block. (g++ ignores a section
// attribute on a template's static, so the linker cannot gather them; the test registers them by symbol.)
inline std::vector<std::pair<void*, std::size_t>> shared_vars;

inline void add_shared(void* address, std::size_t bytes) { shared_vars.emplace_back(address, bytes); }

inline bool run_block(const std::function<void()>& fn) {
    const int n = (int)(block_dim.x * block_dim.y * block_dim.z);
    for (const auto& [address, bytes] : shared_vars) std::memset(address, 0xff, bytes);
    std::vector<Fiber> fs(n);
    if (stacks.size() < (std::size_t)n * kStackBytes) stacks.resize((std::size_t)n * kStackBytes);
    for (int i = 0; i < n; ++i) {
        Fiber& f = fs[i];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks.data() + (std::size_t)i * kStackBytes;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
        f.tid = {(unsigned)i % block_dim.x, ((unsigned)i / block_dim.x) % block_dim.y,
                 (unsigned)i / (block_dim.x * block_dim.y)};
        f.linear = i;
    }
    fibers = &fs;
    body = &fn;
    for (;;) {
        if (schedule == 0) {
            for (int i = 0; i < n; ++i) {
                if (fs[i].state == kRunnable) run_fiber(fs, i);
            }
        } else {
            for (int w = (n + 31) / 32 - 1; w >= 0; --w) {
                do {
                    for (int i = w * 32; i < n && i < (w + 1) * 32; ++i) {
                        if (fs[i].state == kRunnable) run_fiber(fs, i);
                    }
                } while (release_warp(fs, (std::size_t)w));
            }
        }
        bool done = true;
        for (const Fiber& f : fs) done &= f.state == kDone;
        if (done) return true;
        if (!release(fs)) {
            error = "deadlock: threads wait at barriers that the others never reach";
            return false;
        }
    }
}

// Runs fn as a kernel launch <<<grid, block>>>; false (and `error`) when it could not finish.
inline bool launch(dim3 grid, dim3 block, const std::function<void()>& fn) {
    error = nullptr;
    if (block.x * block.y * block.z > 1024 || block.x * block.y * block.z == 0) {
        error = "a block of more than 1024 threads (or none)";
        return false;
    }
    grid_dim = grid;
    block_dim = block;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                block_idx = {x, y, z};
                if (!run_block(fn)) return false;
            }
    return true;
}

}  // namespace cuda_host

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define threadIdx cuda_host::thread_idx
#define blockIdx cuda_host::block_idx
#define blockDim cuda_host::block_dim
#define gridDim cuda_host::grid_dim

inline void __syncthreads() { cuda_host::wait(cuda_host::kAtBlockBarrier); }

template <typename T>
T __shfl_down_sync(unsigned /*mask*/, T v, int offset) {
    const int me = (*cuda_host::fibers)[cuda_host::current].linear;
    cuda_host::shuffle[me] = (double)v;
    cuda_host::wait(cuda_host::kAtWarpBarrier);
    const T got = (me % 32) + offset < 32 ? (T)cuda_host::shuffle[me + offset] : v;
    cuda_host::wait(cuda_host::kAtWarpBarrier);
    return got;
}

inline double atomicAdd(double* address, double v) {
    const double old = *address;
    *address = old + v;
    return old;
}
