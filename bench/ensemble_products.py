"""Which batched product is fastest for an ensemble on the CPU: the step's products of K=64 small nets.

    python bench/ensemble_products.py [K] [batch]      # prints µs per product at 1 and 2 BLAS threads

For each product of a 16-64-64-1 ensemble step (float32, member-major parameter views as gpunn.Ensemble
lays them out) it times NumPy's stacked matmul, one BLAS call per member from a Python loop, and for
the first layer the shared-X form as one wide GEMM (with the two layout copies it needs). The median
of 5 repeats of 30 calls each, in microseconds. Needs threadpoolctl. Results: bench/RESULTS.md.
"""
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from script_args import refusals_said, refuse, whole


def timed(f, n=30):
    f()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return float(np.median(runs))


def main():
    if len(sys.argv) > 3:
        refuse(f"takes [K] [batch], got {len(sys.argv) - 1} arguments")
    given = sys.argv[1:]
    K, m = whole(given[0], "K") if given else 64, whole(given[1], "batch") if len(given) > 1 else 128
    dt = np.float32
    rng = np.random.default_rng(0)
    P = 16 * 64 + 64 + 64 * 64 + 64 + 64 + 1
    rows = rng.standard_normal(K * P).astype(dt).reshape(K, P)
    W0, W1, W2 = rows[:, :1024].reshape(K, 16, 64), rows[:, 1088:5184].reshape(K, 64, 64), rows[:, 5248:5312].reshape(K, 64, 1)
    grads = np.zeros_like(rows)
    dW0, dW1, dW2 = grads[:, :1024].reshape(K, 16, 64), grads[:, 1088:5184].reshape(K, 64, 64), grads[:, 5248:5312].reshape(K, 64, 1)
    X = rng.standard_normal((m, 16)).astype(dt)
    A1, A2, dZ1, dZ2 = (rng.standard_normal((K, m, 64)).astype(dt) for _ in range(4))
    dZ3 = rng.standard_normal((K, m, 1)).astype(dt)
    Z1, Z2, dA1, Z3 = np.empty((K, m, 64), dt), np.empty((K, m, 64), dt), np.empty((K, m, 64), dt), np.empty((K, m, 1), dt)
    wide_W, wide_Z = np.empty((16, K * 64), dt), np.empty((m, K * 64), dt)

    def wide():
        np.copyto(wide_W.reshape(16, K, 64), W0.transpose(1, 0, 2))
        np.matmul(X, wide_W, out=wide_Z)
        np.copyto(Z1, wide_Z.reshape(m, K, 64).transpose(1, 0, 2))

    products = {
        "Z1 = X @ W1": (lambda: np.matmul(X, W0, out=Z1), lambda: [np.matmul(X, W0[k], out=Z1[k]) for k in range(K)], wide),
        "Z2 = A1 @ W2": (lambda: np.matmul(A1, W1, out=Z2), lambda: [np.matmul(A1[k], W1[k], out=Z2[k]) for k in range(K)], None),
        "dW2 = A1^T @ dZ2": (lambda: np.matmul(A1.swapaxes(1, 2), dZ2, out=dW1),
                             lambda: [np.matmul(A1[k].T, dZ2[k], out=dW1[k]) for k in range(K)], None),
        "dA1 = dZ2 @ W2^T": (lambda: np.matmul(dZ2, W1.swapaxes(1, 2), out=dA1),
                             lambda: [np.matmul(dZ2[k], W1[k].T, out=dA1[k]) for k in range(K)], None),
        "dW1 = X^T @ dZ1": (lambda: np.matmul(X.T, dZ1, out=dW0), lambda: [np.matmul(X.T, dZ1[k], out=dW0[k]) for k in range(K)], None),
        "Z3 = A2 @ W3": (lambda: np.matmul(A2, W2, out=Z3), lambda: [np.matmul(A2[k], W2[k], out=Z3[k]) for k in range(K)], None),
        "dW3 = A2^T @ dZ3": (lambda: np.matmul(A2.swapaxes(1, 2), dZ3, out=dW2), None, None),
    }
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            print(f"BLAS threads {threads}, K={K}, batch {m}: µs per product (stacked / per-member loop / wide)")
            for name, (stacked, loop, wide_form) in products.items():
                cells = [f"{timed(f):8.0f}" if f else "       -" for f in (stacked, loop, wide_form)]
                print(f"  {name:18s}" + " ".join(cells), flush=True)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the arguments are read by position: --help is the docstring
        print(__doc__.strip())
        sys.exit(0)
    with refusals_said():
        main()
