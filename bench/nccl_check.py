"""One-rank NCCL check of gpunn.distributed on a GPU (the end-to-end proof of the GPU path).

    python3 bench/nccl_check.py [OUT.json]              # one process; MPI is used if mpi4py is there
    mpiexec -n P python3 bench/nccl_check.py [OUT.json]  # P GPUs, one per rank (needs mpi4py)

What it proves: CuPy loads NCCL (from CuPy's build or a pip nvidia-nccl-cu12/13 wheel), a NCCL
communicator is made from an id shared over the control channel, the all-reduce and broadcast run
in place on device buffers, and fit(distributed=True) on the GPU trains exactly the weights of the
plain fit at the global batch (float64; P ranks at 128 rows each against one process at 128 P; with
one rank the all-reduce must change nothing). It also times
a float32 training step of the medium net with and without the hook (what one rank pays for the
NCCL call and the per-step stop-flag exchange). Exit status 0 when every check passes.
Runs from a checkout with PYTHONPATH set to it (as bench/gpu_check.sh does). Budget: ~30 s.
"""
from __future__ import annotations

import json
import sys
import time

import numpy


def main(out_path=None) -> int:
    import cupy

    import gpunn
    from gpunn.distributed import local_device, world
    from gpunn.distributed.comm import NcclComm

    device = local_device("cuda")
    result = {"device": device, "cupy": cupy.__version__}
    checks = {}

    # 1. The communicator and its two device collectives.
    model = gpunn.MLP([16, 64, 64, 2], activation="tanh", dtype="float64", device=device, seed=3)
    comm = world(model.backend)
    result["communicator"] = comm.describe()
    checks["nccl communicator"] = isinstance(comm, NcclComm)
    with model.backend.use():
        a = cupy.arange(1 << 20, dtype=cupy.float32)
        want = a.copy()
        comm.allreduce_sum_(a)
        comm.broadcast_(a)
        cupy.cuda.get_current_stream().synchronize()
        checks["all-reduce (sum over ranks) and broadcast in place"] = bool((a == want * comm.size).all())

        # 2. fit(distributed=True) == fit, float64, same rows in the same order.
        X, Y = gpunn.datasets.make("teacher", 4096, 16, 2, device=device, dtype="float64", seed=1)
        opts = dict(epochs=3, optimizer="adam", lr=1e-2, verbose=False)
        history = model.fit(X, Y, distributed=True, batch_size=128, **opts)
        if comm.rank == 0:
            ref = gpunn.MLP([16, 64, 64, 2], activation="tanh", dtype="float64", device=device, seed=3)
            ref_history = ref.fit(X, Y, batch_size=128 * comm.size, **opts)
            rel = float(abs(model.params - ref.params).max() / abs(ref.params).max())
            result["params_rel_diff"] = rel
            result["loss"] = [history["loss"], ref_history["loss"]]
            checks["distributed fit == fit at the global batch (rel < 1e-10)"] = rel < 1e-10

        # 3. Step time of the medium net (float32), with and without the hook.
        Xm, Ym = gpunn.datasets.make("teacher", 256 * 400, 64, 1, device=device, dtype="float32", seed=2)
        times = {}
        for label, dist in (("plain", False), ("distributed", True)):
            net = gpunn.MLP([64, 256, 256, 1], device=device, seed=0)
            net.fit(Xm[:256 * 20], Ym[:256 * 20], epochs=1, batch_size=256, verbose=False, distributed=dist)  # warm-up
            cupy.cuda.get_current_stream().synchronize()
            t0 = time.perf_counter()
            h = net.fit(Xm, Ym, epochs=2, batch_size=256, verbose=False, distributed=dist)
            cupy.cuda.get_current_stream().synchronize()
            steps = -(-Xm.shape[0] // (256 * (comm.size if dist else 1)))  # per epoch
            times[label] = (time.perf_counter() - t0) / (2 * steps)
            result[f"medium_{label}_samples_per_s"] = float(numpy.median(h["samples_per_s"]))
        result["medium_step_us"] = {k: round(v * 1e6, 1) for k, v in times.items()}
        result["medium_hook_overhead_us"] = round((times["distributed"] - times["plain"]) * 1e6, 1)

    result["checks"] = checks
    ok = all(checks.values())
    if comm.rank != 0:
        return 0 if ok else 1
    text = json.dumps(result, indent=2)
    print(text)
    if out_path:
        with open(out_path, "w") as fh:
            fh.write(text)
    print("NCCL check:", "PASS" if ok else "FAIL " + ", ".join(k for k, v in checks.items() if not v))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
