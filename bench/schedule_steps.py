"""What a per-step learning-rate schedule costs a training step: constant, a warm-up and onecycle, interleaved.

    python bench/schedule_steps.py [ROUNDS]       # default 9 rounds; prints each case's median us per step and ratio
    GPUNN_DEVICE=cuda python bench/schedule_steps.py   # the same on a GPU (the steps replayed as CUDA graphs)

A constant schedule computes the rate once an epoch; Schedule("constant", warmup_steps=N) and "onecycle" compute it
every step (Trainer.lr_at: the schedule's factor at the global step) and hand it to the step; an Ensemble's K rates
go into its members' table (set_rates: on a GPU, the table's copy to the device, every step). Cases: tiny (MLP
8-32-32-1 at batch 64, Adam, float32: on the CPU, the one-call Numba step) and tiny-x4 (an Ensemble of 4 of it).
Each round fits a fresh model once per schedule, in rotating order (the machine's drift falls on all three), 2
epochs of 4,096 teacher rows; a fit's time per step is its epochs' seconds (the history's time_s, no set-up) over
its steps. One untimed fit of each first (Numba's cache, the threads; a GPU's capture). The warm-up lasts the whole
run (every step's rate differs). Results: bench/RESULTS.md.
"""
import os
import statistics
import sys

from script_args import count_argument, refusals_said

CASES = {"tiny": ([8, 32, 32, 1], None, 64), "tiny-x4": ([8, 32, 32, 1], 4, 64)}
ROWS, EPOCHS = 4096, 2


def schedules(gpunn):
    steps = EPOCHS * -(-ROWS // 64)
    return {"constant": gpunn.Schedule("constant"), "warmup": gpunn.Schedule("constant", warmup_steps=steps),
            "onecycle": gpunn.Schedule("onecycle")}


def step_us(gpunn, device, X, Y, sizes, members, batch, schedule):
    model = (gpunn.MLP(sizes, device=device, seed=1) if members is None
             else gpunn.Ensemble(sizes, members, device=device, seed=1))
    history = model.fit(X, Y, epochs=EPOCHS, batch_size=batch, lr=1e-3, schedule=schedule, verbose=False, seed=2)
    return sum(history["time_s"]) / (EPOCHS * -(-len(X) // batch)) * 1e6


def main(argv):
    rounds = count_argument(argv, "ROUNDS", 9, __doc__)
    from gpunn.cli.common import exit_on_bad_settings

    exit_on_bad_settings(os.path.basename(sys.argv[0]))  # as gpunn's commands, before anything is measured
    import gpunn
    from gpunn.ops import lazynumba

    device = os.environ.get("GPUNN_DEVICE") or "cpu"
    if device == "cpu":
        lazynumba.load()  # the kernels from the first step on, as a longer fit runs them
    print(f"device {device}; load average {os.getloadavg()[0]:.2f}; {rounds} rounds, us per step (median)")
    for name, (sizes, members, batch) in CASES.items():
        X, Y = gpunn.datasets.make("teacher", ROWS, sizes[0], 1, seed=0, device=device, dtype="float32")
        cases = schedules(gpunn)
        for schedule in cases.values():
            step_us(gpunn, device, X, Y, sizes, members, batch, schedule)
        times = {case: [] for case in cases}
        order = list(cases)
        for i in range(rounds):
            for case in order[i % 3:] + order[:i % 3]:
                times[case].append(step_us(gpunn, device, X, Y, sizes, members, batch, cases[case]))
        base = statistics.median(times["constant"])
        said = ", ".join(f"{case} {statistics.median(t):.1f} (x{statistics.median(t) / base:.3f}; "
                         f"{min(t):.1f}-{max(t):.1f})" for case, t in times.items())
        print(f"{name}: {said}")


if __name__ == "__main__":
    with refusals_said():
        main(sys.argv[1:])
