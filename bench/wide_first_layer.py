"""An ensemble's first layer as one wide product per chunk of members, against one product per member.

    python bench/wide_first_layer.py [CONFIG] [ROUNDS]     # CONFIG: small (default) or medium; ROUNDS: 3

All members read the same X, so the K first-layer products X @ W1[k] are one X @ [W1[0] ... W1[K-1]], and the K
dW1[k] = X^T @ dZ1[k] one X^T @ [dZ1[0] ... dZ1[K-1]]. This times both forms as the one-call group pass makes its
products: NumPy's own BLAS called at its CBLAS addresses from a Numba loop (gpunn.ops.cblas), no Python between the
calls, on one BLAS thread. small: K=64 16-64-64-1 at batch 128; medium: K=16 64-256-256-1 at batch 256. Per round,
the K forward and K dW1 products of one step, per member and in chunks of G members (the products alone: the
gathers of W1 and the scatters of dW1 the wide form needs come on top), each the median of 7 repeats of 20 steps
in process CPU time (so a busy machine slows it less), in microseconds. Then, per G, the share of the chunk's
elements whose bits differ from the per-member products: where they differ, the wide form would break the
one-call pass's bit-for-bit equality with the per-op path and with each member's own MLP. Results:
bench/RESULTS.md ("Wide first layer, session 25").
"""
import statistics
import sys
import time

import numpy as np

from script_args import refusals_said, refuse, whole

CONFIGS = {"small": (64, 128, 16, 64), "medium": (16, 256, 64, 256)}  # K, batch, n0, h1


def main():
    given = sys.argv[1:]
    if len(given) > 2:
        refuse(f"takes [CONFIG] [ROUNDS], got {len(given)} arguments")
    name = given[0] if given else "small"
    if name not in CONFIGS:
        refuse(f"unknown CONFIG {name!r}: use small or medium")
    rounds = whole(given[1], "ROUNDS") if len(given) > 1 else 3
    from numba import njit
    from threadpoolctl import threadpool_limits

    from gpunn.ops import cblas
    from gpunn.ops.cblas import NO_TRANS, ROW_MAJOR, TRANS, numpy_blas

    blas = numpy_blas(np.float32)
    if blas is None:
        refuse("NumPy's BLAS could not be bound (gpunn.ops.cblas): nothing to time")
    gemm = cblas.gemm

    @njit
    def products(blas, X, W, Z, D, dW, reps):
        """reps x a step's first-layer products, chunk after chunk of members: Z[c % R] = X @ W[c] and
        dW[c % R'] = X^T @ D[c % R] for each chunk c. W: (K / G, n0, G * h1), the chunk's members side by side
        (G = 1: one product per member, as the one-call pass makes them); Z, D: (R, batch, G * h1), dW (R', n0,
        G * h1), R = 1 being one chunk's buffers, reused as the pass reuses one member's."""
        m, n0 = X.shape
        cols = W.shape[2]
        one, zero = np.float32(1), np.float32(0)
        for _ in range(reps):
            for c in range(W.shape[0]):
                gemm(blas[0], blas[3], ROW_MAJOR, NO_TRANS, NO_TRANS, m, cols, n0, one, X.ctypes.data, n0,
                     W[c].ctypes.data, cols, zero, Z[c % Z.shape[0]].ctypes.data, cols)
            for c in range(W.shape[0]):
                gemm(blas[0], blas[3], ROW_MAJOR, TRANS, NO_TRANS, n0, cols, m, one, X.ctypes.data, n0,
                     D[c % D.shape[0]].ctypes.data, cols, zero, dW[c % dW.shape[0]].ctypes.data, cols)

    K, m, n0, h1 = CONFIGS[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, n0)).astype(np.float32)
    W = rng.standard_normal((K, n0, h1)).astype(np.float32)
    D = rng.standard_normal((K, m, h1)).astype(np.float32)
    side = lambda A, g: np.ascontiguousarray(A.reshape(K // g, g, *A.shape[1:]).transpose(0, 2, 1, 3)).reshape(
        K // g, A.shape[1], g * h1)  # (K, r, h1) as (K / G, r, G * h1): G members' columns side by side
    chunks = [g for g in (2, 4, 8, 16, 32, 64) if g <= K]

    def empty(*shape):
        return np.empty(shape, np.float32)

    def forms(R):  # per G, the arguments, with R output buffers (1: reused, as the pass's; K / G: every chunk's)
        out = {}
        for g in [1, *chunks]:
            r = 1 if R == 1 else K // g
            # G = 1 writes each member's dW, as the pass writes its gradients' rows
            out[g] = (X, side(W, g), empty(r, m, g * h1), side(D, g)[:r], empty(K if g == 1 else r, n0, g * h1))
        return out

    def timed(args):
        runs = []
        for _ in range(7):
            start = time.process_time()
            products(blas, *args, 20)
            runs.append((time.process_time() - start) / 20 * 1e6)
        return statistics.median(runs)

    with threadpool_limits(1, user_api="blas"):
        timing, every = forms(1), forms(K)
        for args in (*timing.values(), *every.values()):  # compiled, and every product's outputs written
            products(blas, *args, 1)
        print(f"{name}: K={K}, first layer {n0}-{h1} at batch {m}, one BLAS thread; us per step for the K forward "
              f"and K dW1 products (G: members per product)")
        keys = list(timing)
        for r in range(rounds):
            times = {g: timed(timing[g]) for g in (keys if r % 2 == 0 else keys[::-1])}
            print("  " + "  ".join(f"{'per member' if g == 1 else f'G={g}'} {times[g]:.0f}" for g in keys),
                  flush=True)
    Z, dW = every[1][2], every[1][4]
    print("elements whose bits differ from the per-member products (forward, dW1): " + "  ".join(
        f"G={g} {100 * np.mean(every[g][2] != side(Z, g)):.1f}%, {100 * np.mean(every[g][4] != side(dW, g)):.1f}%"
        for g in chunks))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the arguments are read by position: --help is the docstring
        print(__doc__.strip())
        sys.exit(0)
    with refusals_said():
        main()
