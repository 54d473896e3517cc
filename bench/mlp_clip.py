"""What gradient clipping costs one small MLP's CPU training step: Adam unclipped, with clip_norm and with clip_value.

    python bench/mlp_clip.py [ROUNDS]          # default 9 rounds; prints each case's median us per step and ratio

Two nets, float32, on the CPU, each the one-call step's (gpunn.ops.mlp_step): tiny (8-32-32-1 at batch 64) and small
(16-64-64-1 at batch 128). A step is model.train_step_and_update(X, Y, optimizer, lr) on one fixed batch, as the
training loop calls it, 2,000 to a timing; the three optimizers take turns within each round (the machine's drift
falls on all three), after one untimed fit of each (Numba's cache, the optimizer's state). Limits that clip every
step (clip_norm=1e-3, clip_value=1e-4). The line of each case says which path its step took: "one call" (forward,
backward and the clipped Adam step in one Numba call) or "gradients call + generic" (the one call's gradients, then
Ops.clip_grad_norm and the Adam step). Results: bench/RESULTS.md.
"""
import os
import statistics
import sys
import time

from script_args import count_argument, refusals_said

NETS = {"tiny": ((8, 32, 32, 1), 64), "small": ((16, 64, 64, 1), 128)}
STEPS = 2000


def main(argv):
    rounds = count_argument(argv, "ROUNDS", 9, __doc__)
    from gpunn.cli.common import exit_on_bad_settings

    exit_on_bad_settings(os.path.basename(sys.argv[0]))  # as gpunn's commands, before anything is measured
    import numpy

    import gpunn
    from gpunn.ops import lazynumba, mlp_step

    lazynumba.load()  # the kernels from the first step on, as a longer fit runs them
    print(f"load average {os.getloadavg()[0]:.2f}; {rounds} rounds of {STEPS} steps, us per step (median)")
    for name, (sizes, batch) in NETS.items():
        rng = numpy.random.default_rng(0)
        X = rng.standard_normal((batch, sizes[0])).astype("float32")
        Y = rng.standard_normal((batch, 1)).astype("float32")
        cases = {"adam": gpunn.Adam(), "clip_norm": gpunn.Adam(clip_norm=1e-3), "clip_value": gpunn.Adam(clip_value=1e-4)}
        models = {}
        for case, opt in cases.items():
            models[case] = gpunn.MLP(list(sizes), device="cpu", seed=0)
            models[case].fit(X, Y, epochs=1, batch_size=batch, optimizer=opt, verbose=False)  # binds, warms
        times = {case: [] for case in cases}
        for _ in range(rounds):
            for case, opt in cases.items():
                model = models[case]
                t0 = time.perf_counter()
                for _ in range(STEPS):
                    model.train_step_and_update(X, Y, opt, 1e-4)
                times[case].append((time.perf_counter() - t0) / STEPS * 1e6)
        base = statistics.median(times["adam"])
        for case, opt in cases.items():
            path = ("one call" if mlp_step.one_call_step(models[case], X, Y, opt, 1e-4) is not None
                    else "gradients call + generic")
            median = statistics.median(times[case])
            print(f"{name} {case}: {median:.1f} us ({min(times[case]):.1f}-{max(times[case]):.1f}), "
                  f"x{median / base:.3f}, {path}")


if __name__ == "__main__":
    with refusals_said():
        main(sys.argv[1:])
