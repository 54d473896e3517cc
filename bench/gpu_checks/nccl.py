"""gpu_check hook for issue 13: the data-parallel GPU path (NCCL through CuPy) end to end, on one GPU.

    python bench/gpu_checks/nccl.py --device cuda --out DIR --max-seconds 35     # what gpu_check.sh runs
    mpiexec -n P python bench/gpu_checks/nccl.py --device cuda --out DIR          # P GPUs, one per rank (mpi4py)
    python bench/gpu_checks/nccl.py --device cpu --out DIR                        # the plumbing, no GPU

Checks (exit 0 when all pass; DIR/nccl.json holds the details, rewritten after each check, so a kill keeps what
finished; a check that raises is a failed check, its error in nccl.json's "errors", and the next ones still run):
1. a NCCL communicator is made (CuPy's NCCL, or a pip nvidia-nccl-cu12/13 wheel such as torch's), its id
   shared over MPI when mpi4py is there, else within the one process;
2. the in-place all-reduce (sum over ranks) and broadcast of a 1M-float device buffer;
3. fit(distributed=True) on the GPU, float64, 128 rows per rank, equals the plain fit at the global batch
   (128 x ranks) to 1e-10 relative (with one rank: the all-reduce must change nothing); the same on a
   standardized gpunn.data stream with a held-out chunk, each rank generating its shard and validating
   its share of the held-out chunks, against one process reading every shard (ShardedSource); and, on rank 0, shard reads on the device (a generated chunk cut by a shard
   boundary, .npy row ranges through the pinned pipeline) interleaving exactly, the same rows as on the CPU
   (in another order: the windows are shuffled on the device);
   a 3-member gpunn.Ensemble the same way (K loss sums and validation sums reduced): on arrays with
   validation rows, bootstrapped (each rank gathering its piece of every member's resampled batch) and on
   a standardized .npy source with held-out chunks (each rank reading its shard);
4. on the GPU, if time is left: the float32 medium step with and without the hook (what one rank pays
   for the NCCL call and the per-step stop-flag exchange).
With --device cpu the same fit goes over MPI or the one-process communicator (checks 1, 2 and 4 skipped).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback

import numpy
from hook_args import hook_parser, write_json


def largest(differences) -> float:
    """The largest of the relative ``differences``, NaN where one is (numpy's max): Python's max drops a NaN that is
    not first (max(1e-12, nan) is 1e-12), and a NaN run passed its check."""
    return float(numpy.max(list(differences)))


def shard_reads_interleave(device, out, synthetic_rows=70_001) -> bool:
    """Whether ShardedSource(source, 3) reads the batches of its 3 one-rank shards interleaved, for a generated
    source (``synthetic_rows``: 70,001 cuts a chunk at a shard boundary) and a .npy file read by row ranges
    through the pinned pipeline on ``device`` and on the CPU; each .npy read holding every row once, the same
    rows on both devices. Not in the same order: a window's shuffle is drawn on the source's device (hashes of the
    row numbers on a GPU, gpunn.rng.hash_permutation; NumPy's generator on the CPU)."""
    import gpunn.data
    from gpunn.backend import resolve
    from gpunn.distributed.shard import ShardedSource

    xp = resolve(device).xp
    same = True
    Xn = numpy.arange(3000 * 4, dtype="float64").reshape(3000, 4)
    os.makedirs(out, exist_ok=True)
    numpy.save(os.path.join(out, "shard_x.npy"), Xn)
    numpy.save(os.path.join(out, "shard_y.npy"), Xn[:, :1])
    host = None
    for kind in ("synthetic", "npy", "npy-cpu"):
        on = "cpu" if kind == "npy-cpu" else device

        def make(kind=kind, on=on):
            if kind == "synthetic":
                return gpunn.data.synthetic("teacher", rows=synthetic_rows, n_features=4, n_outputs=1, seed=2,
                                            device=on, dtype="float64")
            return gpunn.data.npy(os.path.join(out, "shard_x.npy"), os.path.join(out, "shard_y.npy"),
                                  chunk_rows=256, window=2, device=on, dtype="float64")

        def rows(batch, on=on):
            return xp.asnumpy(batch[0]) if on != "cpu" else numpy.array(batch[0])
        whole = [rows(b) for b in ShardedSource(make(), 3).batches(1, 3 * 100)]
        parts = [[rows(b) for b in ShardedSource(make(), 3, [r]).batches(1, 100)] for r in range(3)]
        same &= all(numpy.array_equal(w, numpy.concatenate([p[i] for p in parts])) for i, w in enumerate(whole))
        if kind != "synthetic":
            flat = numpy.concatenate(whole)
            flat = flat[numpy.argsort(flat[:, 0], kind="stable")]  # the rows, not their order (see above)
            same &= bool(numpy.array_equal(flat[:, 0], Xn[:, 0]))  # every row once
            host = flat if host is None else host
            same &= bool(numpy.array_equal(host, flat))  # the GPU read the rows the CPU read
    return bool(same)


def main(argv=None) -> int:
    parser = hook_parser(__doc__, max_seconds=35.0)
    args = parser.parse_args(argv)
    t_start = time.monotonic()

    import gpunn
    import gpunn.data
    from gpunn.distributed import local_device, world
    from gpunn.distributed.comm import NcclComm

    gpu = args.device != "cpu"
    device = local_device(args.device) if gpu else "cpu"
    model = gpunn.MLP([16, 64, 64, 2], activation="tanh", dtype="float64", device=device, seed=3)
    xp = model.xp
    comm = world(model.backend)
    result = {"device": device, "communicator": comm.describe(), "ranks": comm.size}
    checks, errors = {}, {}

    def save():
        if comm.rank == 0:
            os.makedirs(args.out, exist_ok=True)
            write_json(os.path.join(args.out, "nccl.json"), {**result, "checks": checks, "errors": errors,
                                                             "seconds": round(time.monotonic() - t_start, 1)})

    @contextlib.contextmanager
    def check(name):
        """A check that raises fails, its error kept, and the next ones run (one GPU run answers them all)."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported as this check's failure
            checks[name] = False
            errors[name] = f"{type(exc).__name__}: {exc}"[:400]
            traceback.print_exc()
        save()

    def sync():
        if gpu:
            xp.cuda.get_current_stream().synchronize()

    with model.backend.use():
        if gpu:
            with check("in-place all-reduce and broadcast"):
                checks["NCCL communicator"] = isinstance(comm, NcclComm)
                a = xp.arange(1 << 20, dtype=xp.float32)
                want = a * comm.size
                comm.allreduce_sum_(a)
                comm.broadcast_(a)
                sync()
                checks["in-place all-reduce and broadcast"] = bool((a == want).all())

        X, Y = gpunn.datasets.make("teacher", 4096, 16, 2, device=device, dtype="float64", seed=1)
        # handle_interrupt=False: gpu_check.sh's SIGINT at the stage's cap ends the hook at once (a traceback); a fit
        # that handled it would stop part-trained and return, and what the hook compares or times next would be false
        opts = dict(epochs=3, optimizer="adam", lr=1e-2, verbose=False, handle_interrupt=False)
        # Each rel < 1e-10 below holds with room on a GPU: the distributed fit runs its step eagerly (its gradient
        # hook is not captured) and the plain MLP fit as a CUDA graph, so their products are CuPy's GemmEx on its
        # handle and the graph's GemmEx on gpunn's handle and workspace, which may take other (each deterministic)
        # cuBLAS kernels: float64 products ~1e-16 apart. Adam at lr 1e-2 magnifies that most where a gradient is as
        # small as its eps (1e-8): ~2.5e-11 of a weight in that step, rare; elsewhere ~1e-15. No atomics reach the
        # weights (the loss sums' atomicAdd order moves a validation loss by ~1e-16 relative). The Ensembles alike:
        # the distributed one eagerly, the one-process reference as a CUDA graph (an Ensemble's default too, since
        # an H200 measured the two 0 apart in float64: bench/RESULTS.md, session 23).
        with check("distributed fit == plain fit at the global batch (rel < 1e-10)"):
            history = model.fit(X, Y, distributed=True, batch_size=128, **opts)
            if comm.rank == 0:
                ref = gpunn.MLP([16, 64, 64, 2], activation="tanh", dtype="float64", device=device, seed=3)
                # (distributed=False: rank 0's one-process reference, on purpose, unwarned under mpiexec: 532d9d3)
                ref_history = ref.fit(X, Y, batch_size=128 * comm.size, distributed=False, **opts)
                rel = float(abs(model.params - ref.params).max() / abs(ref.params).max())
                result["params_rel_diff"] = rel
                result["losses"] = {"distributed": history["loss"], "plain": ref_history["loss"]}
                checks["distributed fit == plain fit at the global batch (rel < 1e-10)"] = rel < 1e-10

        # a gpunn.data source: each rank reads (or generates) only its shard of the rows; one process reading
        # every shard interleaved (ShardedSource) is the same run. Standardized: the shards' moments merged.
        from gpunn.distributed.shard import ShardedSource

        def stream():  # 9 chunks (pieces of 8,192 rows, and 4,173), 4 held out for validation (split over the ranks too)
            return gpunn.data.synthetic("teacher", rows=65536 + 4096 + 77, n_features=16, n_outputs=2, seed=1,
                                        standardize=True, validation_fraction=0.5)

        with check("distributed fit on a source, each rank its shard == one process reading the shards"):
            net = gpunn.MLP([16, 64, 64, 2], activation="tanh", dtype="float64", device=device, seed=3)
            h = net.fit(stream(), distributed=True, batch_size=128, **opts)
            if comm.rank == 0:
                ref = gpunn.MLP([16, 64, 64, 2], activation="tanh", dtype="float64", device=device, seed=3)
                h_ref = ref.fit(ShardedSource(stream(), comm.size), batch_size=128 * comm.size, distributed=False,
                                **opts)
                rel = float(abs(net.params - ref.params).max() / abs(ref.params).max())
                val_rel = largest(abs(numpy.array(h[k]) - numpy.array(h_ref[k])).max()
                                  / abs(numpy.array(h_ref[k])).max() for k in ("val_loss", "val_r2"))
                result["source_params_rel_diff"], result["source_val_rel_diff"] = rel, val_rel
                checks["distributed fit on a source, each rank its shard == one process reading the shards"] = (
                    rel < 1e-10 and val_rel < 1e-10)
        if comm.rank == 0:
            # the shard reads on this device: a generated chunk cut by a shard boundary, a .npy file read by
            # row ranges through the host pipeline; 3 shards' batches interleave into one process's
            with check("shard reads on the device (generated, .npy row ranges) interleave exactly"):
                checks["shard reads on the device (generated, .npy row ranges) interleave exactly"] = (
                    shard_reads_interleave(device, args.out))

        # an Ensemble (issue 11): its K sums over the ranks (loss, validation), the NCCL all-reduce of its
        # members' gradients, a bootstrapped run's pieces, its shards of a standardized .npy source
        ens_arch = dict(layer_sizes=[16, 32, 2], n_models=3, activation="tanh", dtype="float64", device=device, seed=3)
        ens_opts = dict(epochs=2, lr=[1e-2, 3e-3, 1e-3], verbose=False, handle_interrupt=False)
        paths = [os.path.join(args.out, name) for name in ("ensemble_x.npy", "ensemble_y.npy")]
        if comm.rank == 0:
            os.makedirs(args.out, exist_ok=True)
            for path, A in zip(paths, (X, Y)):
                numpy.save(path, model.backend.to_host(A))
        comm.barrier()

        def ens_source():  # 16 chunks, a quarter held out
            return gpunn.data.npy(*paths, chunk_rows=256, window=2, seed=4, standardize=True,
                                  validation_fraction=0.25, device=device, dtype="float64")

        ens_rel = {}
        with check("Ensemble distributed fit (arrays, bootstrapped, .npy source) == one process (rel < 1e-10)"):
            for name, extra in (("arrays", dict(validation_fraction=0.1)),
                                ("bootstrap", dict(validation_fraction=0.1, bootstrap=True)), ("npy source", {})):
                data = (ens_source(),) if name == "npy source" else (X, Y)
                ens = gpunn.Ensemble(**ens_arch)
                h = ens.fit(*data, distributed=True, batch_size=128, **ens_opts, **extra)
                if comm.rank == 0:
                    ref = gpunn.Ensemble(**ens_arch)
                    h_ref = ref.fit(*((ShardedSource(ens_source(), comm.size),) if name == "npy source" else data),
                                    batch_size=128 * comm.size, distributed=False, **ens_opts, **extra)
                    ens_rel[name] = largest([float(abs(ens.params - ref.params).max() / abs(ref.params).max()),
                                             *(float(abs(numpy.array(h[k]) - numpy.array(h_ref[k])).max()
                                                     / abs(numpy.array(h_ref[k])).max()) for k in ("loss", "val_loss"))])
            if comm.rank == 0:
                checks["Ensemble distributed fit (arrays, bootstrapped, .npy source) == one process (rel < 1e-10)"] = (
                    largest(ens_rel.values()) < 1e-10)
        result["ensemble_rel_diff"] = ens_rel

        left = args.max_seconds - (time.monotonic() - t_start)
        go_on = comm.bcast_object(gpu and left > 12 if comm.rank == 0 else None)
        if go_on:
            with check("the medium float32 step with and without the hook"):  # a check only where it raises
                Xm, Ym = gpunn.datasets.make("teacher", 256 * 200, 64, 1, device=device, dtype="float32", seed=2)
                step_us = {}
                for label, dist in (("plain", False), ("distributed", True)):
                    net = gpunn.MLP([64, 256, 256, 1], device=device, seed=0)
                    kw = dict(batch_size=256, verbose=False, distributed=dist, handle_interrupt=False)
                    net.fit(Xm[:256 * 10 * comm.size], Ym[:256 * 10 * comm.size], epochs=1, **kw)  # warm-up
                    sync()
                    t0 = time.perf_counter()
                    net.fit(Xm, Ym, epochs=2, **kw)
                    sync()
                    steps = -(-Xm.shape[0] // (256 * (comm.size if dist else 1)))
                    step_us[label] = round((time.perf_counter() - t0) / (2 * steps) * 1e6, 1)
                result["medium_float32_step_us"] = step_us
                result["hook_cost_us_per_step"] = round(step_us["distributed"] - step_us["plain"], 1)
        else:
            result["medium_float32_step_us"] = "skipped: " + ("under 12 s left" if gpu else "a GPU measurement")

    ok = all(checks.values())
    if comm.rank != 0:
        return 0 if ok else 1
    result["finished"] = True  # the last record: gpu_report reads a file without it as cut short
    save()
    with open(os.path.join(args.out, "nccl.json")) as fh:
        print(fh.read())
    print("nccl check:", "PASS" if ok else "FAIL: " + ", ".join(
        k + (f" ({errors[k]})" if k in errors else "") for k, v in checks.items() if not v))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
