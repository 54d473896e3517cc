"""gpu_check hook for gradient clipping and per-step schedules: what a clipped training step, and one whose learning
rate changes every step, costs against the plain step, in one run.

    python bench/gpu_checks/clip.py --device cuda --out DIR --max-seconds 35     # what gpu_check.sh runs
    python bench/gpu_checks/clip.py --device cpu --out DIR                        # the plumbing, no GPU

Float32, Adam (lr 1e-3), the step as fit runs it (on a GPU the default: a captured CUDA graph), limits small enough
that every step clips:
- one MLP, medium (64-256-256-1 at batch 256, the configuration of gpunn bench's and the nccl hook's timings):
  unclipped, clip_norm=1e-3 (kernels/optimizers.cu clip_sum_sq, clip_factor, clip_scale) and clip_value=1e-4
  (clip_by_value), and Schedule("onecycle") (the rate of each step written into the captured step's state before
  its replay: one small fill where the rate is the same all epoch);
- an Ensemble, small-x256 (256 members 16-64-64-1 at batch 128, the ensemble hook's): unclipped, clip_norm=1e-3
  (kernels/ensemble.cu member_grad_sum_sq, member_grad_sum_total, member_clip_grad) and onecycle (the members'
  (K, 8) settings table copied to the device before each replay, where a per-epoch schedule copies it once an
  epoch).
Each case keeps its model and optimizer from fit to fit (its step captured once, in an untimed warm-up fit). A round
times one epoch of each case of a net in turn (the order rotated from round to round: the history's time_s, which
ends at the epoch's loss read, so on the device's time, and leaves fit's set-up out); a ratio is the
median over rounds of the clipped epoch's seconds over the unclipped one's in the same round (paired by round).
Rounds go on to ROUNDS, or while half the time cap is left. Exit 1 where a case raised or (on a GPU) a clipped
or scheduled step ran eagerly while its unclipped one was captured: the clip broke the capture, which "auto" falls back from
silently. DIR/clip.json holds the rounds, rewritten after each net. CPU figures: bench/mlp_clip.py and
bench/ensemble_clip.py. With --device cpu: tiny nets (8-32-32-1 at batch 64, and K=4), few steps.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import traceback

from hook_args import hook_parser, write_json

ROUNDS = 9
LR = 1e-3
CLIPS = {"unclipped": {}, "clip_norm": {"clip_norm": 1e-3}, "clip_value": {"clip_value": 1e-4}}
SCHEDULES = {"onecycle": "onecycle"}  # a case's fit(schedule=...): its rate changes every step (epochs x steps long)


def case_words(case):
    """"clip_norm=0.001", "schedule onecycle": what a case changes from the unclipped step."""
    return f"schedule {SCHEDULES[case]}" if case in SCHEDULES else f"{case}={CLIPS[case][case]:g}"


def nets(gpu):
    """(name, sizes, members (1: one MLP), batch, steps per epoch, the clips timed) per net."""
    if gpu:
        return [("medium", [64, 256, 256, 1], 1, 256, 200, ("unclipped", "clip_norm", "clip_value", "onecycle")),
                ("small-x256", [16, 64, 64, 1], 256, 128, 100, ("unclipped", "clip_norm", "onecycle"))]
    return [("tiny", [8, 32, 32, 1], 1, 64, 20, ("unclipped", "clip_norm", "clip_value", "onecycle")),
            ("tiny-x4", [8, 32, 32, 1], 4, 64, 20, ("unclipped", "clip_norm", "onecycle"))]


def step_words(model, gpu):
    """"CUDA graph" where the last fit's steps replayed a captured graph, else "eager" (with why, on a GPU)."""
    trainer = model.graph_trainer
    if trainer is not None and trainer.active and trainer.captured:
        return "CUDA graph"
    return f"eager: {getattr(trainer, 'reason', None)}" if gpu else "eager"


def time_net(gpunn, device, sizes, members, batch, steps, clips, deadline):
    """{clip: (model, fit)} warmed up, then {clip: [seconds per step of each round]}."""
    from gpunn.training.ensemble import EnsembleOptimizer

    X, Y = gpunn.datasets.make("teacher", batch * steps, sizes[0], 1, seed=0, device=device, dtype="float32")
    runs = {}
    for clip in clips:
        if members == 1:
            model = gpunn.MLP(sizes, device=device, dtype="float32", seed=0)
            optimizer = gpunn.Adam(lr=LR, **CLIPS.get(clip, {}))
        else:
            model = gpunn.Ensemble(sizes, members, device=device, dtype="float32", seed=0)
            optimizer = EnsembleOptimizer("adam", members, model.xp, lr=LR, **CLIPS.get(clip, {}))

        def fit(seed, model=model, optimizer=optimizer, schedule=SCHEDULES.get(clip, "constant")):
            """The epoch's own seconds (the history's time_s: to its loss's read, which waits for the device; not
            fit's set-up, which would water the ratio down)."""
            return model.fit(X, Y, epochs=1, batch_size=batch, optimizer=optimizer, schedule=schedule, seed=seed,
                             verbose=False, handle_interrupt=False)["time_s"][0]
        fit(0)  # the warm-up: kernels compiled, the step captured
        runs[clip] = (model, fit)
    times = {clip: [] for clip in clips}
    for r in range(ROUNDS):
        if r >= 2 and time.monotonic() > deadline:
            break
        order = clips[r % len(clips):] + clips[:r % len(clips)]
        for clip in order:
            times[clip].append(runs[clip][1](r + 1) / steps)
    return runs, times


def main(argv=None) -> int:
    parser = hook_parser(__doc__, max_seconds=35.0)
    args = parser.parse_args(argv)
    t_start = time.monotonic()

    import gpunn
    from gpunn.backend import resolve

    backend = resolve(args.device)
    gpu = backend.is_gpu
    report = {"device": backend.describe(), "lr": LR, "clips": CLIPS, "schedules": SCHEDULES, "nets": {},
              "errors": {}}

    def save():
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "clip.json"),
                   {**report, "seconds": round(time.monotonic() - t_start, 1)})

    ok = True
    for name, sizes, members, batch, steps, clips in nets(gpu):
        kind = "MLP" if members == 1 else f"Ensemble K={members}"
        setup = f"{name} {kind} {'-'.join(map(str, sizes))}, batch {batch}, float32, Adam lr {LR:g}"
        deadline = t_start + args.max_seconds / 2
        try:
            runs, times = time_net(gpunn, backend.device, sizes, members, batch, steps, clips, deadline)
        except Exception as exc:  # noqa: BLE001 - this net's failure, the next net still runs
            ok = False
            report["errors"][name] = f"{type(exc).__name__}: {exc}"[:400]
            traceback.print_exc()
            print(f"{setup}: FAILED: {report['errors'][name]}")
            save()
            continue
        step = {clip: step_words(runs[clip][0], gpu) for clip in clips}
        medians = {clip: statistics.median(t) * 1e6 for clip, t in times.items()}
        ratios = {clip: [c / u for c, u in zip(times[clip], times["unclipped"])] for clip in clips[1:]}
        report["nets"][name] = {"sizes": sizes, "members": members, "batch": batch, "steps_per_epoch": steps,
                                "step": step, "us_per_step": {c: [t * 1e6 for t in ts] for c, ts in times.items()},
                                "median_us_per_step": medians,
                                "ratio": {c: statistics.median(r) for c, r in ratios.items()}}
        save()
        broke = [clip for clip in clips[1:] if gpu and step["unclipped"] == "CUDA graph" and step[clip] != "CUDA graph"]
        ok &= not broke
        words = "; ".join(
            f"{case_words(clip)} {medians[clip]:.1f} us, {statistics.median(ratios[clip]):.3f}x "
            f"(paired by round over {len(ratios[clip])} rounds: {min(ratios[clip]):.3f}-{max(ratios[clip]):.3f}x)"
            + ("" if step[clip] == step["unclipped"] else f", {step[clip]}") for clip in clips[1:])
        print(f"{setup}, {step['unclipped']} ({report['device']}): unclipped {medians['unclipped']:.1f} us per step; "
              f"{words}" + (f"; NOT CAPTURED with: {', '.join(broke)}" if broke else ""))
    report["finished"] = True  # the last record: a file without it was cut short
    save()
    print("clip check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
