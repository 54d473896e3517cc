"""What gradient clipping costs an Ensemble's CPU training step: fits with and without clip_norm, interleaved.

    python bench/ensemble_clip.py [PAIRS]        # default 7 pairs per case; prints the medians and their ratio

Two cases, Adam, float32, on the CPU: tiny-x4 (8-32-32-1 at batch 64, K=4: one call of the group pass, Adam and the
clip inside it) and small-x64 (16-64-64-1 at batch 128, K=64: member groups on both cores, the same kernel per group).
Each pair fits a fresh Ensemble twice, one epoch of 4,096 teacher rows, once unclipped and once with clip_norm=1.0
(every step of these nets clips some members), in alternating order, so that the machine's drift falls on both; a
fit's time per step is its epoch's seconds (the history's time_s, no set-up) over its steps. One untimed fit of each first (Numba's cache, the
threads). Results: bench/RESULTS.md.
"""
import os
import statistics
import sys

from script_args import refusals_said, refuse, whole

CASES = {"tiny-x4": ([8, 32, 32, 1], 4, 64), "small-x64": ([16, 64, 64, 1], 64, 128)}
ROWS = 4096


def step_us(gpunn, X, Y, sizes, members, batch, clip_norm):
    ens = gpunn.Ensemble(sizes, members, device="cpu", seed=1)
    history = ens.fit(X, Y, epochs=1, batch_size=batch, lr=1e-3, clip_norm=clip_norm, verbose=False, seed=2)
    return history["time_s"][0] / -(-len(X) // batch) * 1e6  # (the epoch's own seconds: no set-up)


def main():
    if len(sys.argv) > 2:
        refuse(f"takes [PAIRS], got {len(sys.argv) - 1} arguments")
    pairs = whole(sys.argv[1], "PAIRS") if len(sys.argv) > 1 else 7
    import gpunn
    from gpunn.ops import cpu

    cpu.NUMBA_START_SECONDS = 0  # the kernels from the first step on, as a longer fit runs them
    print(f"load average {os.getloadavg()[0]:.2f}; {pairs} pairs per case, us per step (median)")
    for name, (sizes, members, batch) in CASES.items():
        X, Y = gpunn.datasets.make("teacher", ROWS, sizes[0], 1, seed=0, device="cpu", dtype="float32")
        for clip in (None, 1.0):
            step_us(gpunn, X, Y, sizes, members, batch, clip)
        times = {None: [], 1.0: []}
        for i in range(pairs):
            for clip in ((None, 1.0) if i % 2 == 0 else (1.0, None)):
                times[clip].append(step_us(gpunn, X, Y, sizes, members, batch, clip))
        plain, clipped = statistics.median(times[None]), statistics.median(times[1.0])
        print(f"{name}: unclipped {plain:.1f}, clip_norm=1.0 {clipped:.1f}, ratio {clipped / plain:.3f} "
              f"(unclipped {min(times[None]):.1f}-{max(times[None]):.1f}, "
              f"clipped {min(times[1.0]):.1f}-{max(times[1.0]):.1f})")


if __name__ == "__main__":
    with refusals_said():
        main()
