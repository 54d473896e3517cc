"""gpu_check hook for the tensor-core precisions (issues 10 and 11): the values, not only the bounds.

    python bench/gpu_checks/precision.py --device cuda --out DIR --max-seconds 40    # what gpu_check.sh runs
    python bench/gpu_checks/precision.py --device cuda --out DIR --quick             # the GPU code, small sizes
    python bench/gpu_checks/precision.py --device cpu --out DIR                       # the plumbing, no GPU

The GPU test suite checks these against bounds and says pass or fail; this hook writes the measured
numbers into DIR/precision.json (rewritten after each part, so a kill keeps what finished) for
bench/gpu_report.py, answering the questions of the ensemble-precision review (notes revprec-s6):
1. member vs MLP: for tf32 and bf16, the largest relative difference of a member of
   ``Ensemble(precision=p)`` from its own ``MLP(precision=p)``, in the two parts of
   tests/test_ensemble_precision.py's contract (its docstring says why cuBLAS may round a member's
   products other than its MLP's, and derives the bounds): the loss and gradients at equal weights
   ("tf32 gelu gradients"; tanh and gelu), against GRADIENT_TOL (tf32 16 x 2^-11, bf16 2^-8), and the
   weights after 2 epochs per case of the training contract (relu/adam, tanh/momentum, gelu/adamw with
   the CUDA graph), against GPU_TOL (2e-2, the drift Adam and ReLU make of such roundings), and whether
   the graph case captured;
2. the cuBLAS calls an ensemble makes, eagerly (CuPy's handle) and captured in a CUDA graph (gpunn's
   own handle, as the ensemble's graph runs them), each against float64: gemmStridedBatchedEx with the
   batch X shared (stride 0), bf16 operands into float32 and into bf16 (COMPUTE_32F), and float32 in TF32
   (COMPUTE_32F_FAST_TF32): accepted or refused (the cuBLAS status), and the relative error;
3. the held-out R² of float32, tf32 and bf16 on the teacher task (issue 10: within 0.005 of float32);
4. alignment (GPU only): the bf16 small-x256 products (K=256 members of 5,313 parameters each, so most
   members' matrices are not 16-byte aligned) timed at the members' packed offsets and at offsets padded
   to 8 elements; a ratio well above 1 means cuBLAS picks slower kernels for the packed layout.
With --device cpu, parts 1 and 3 run in the NumPy emulation of the precisions (one case each, small)
and parts 2 and 4 are skipped: the plumbing only.
Exit 0 when every part that ran is within its bound (1: the contract's bounds and the graph captured;
2: every call accepted, its error within the GPU tests' bounds); the R² and the timings are reported.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import numpy
from hook_args import hook_parser, write_json

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

# the GPU tests' bounds (tests/test_ensemble_precision.py GRADIENT_TOL and GPU_TOL; tests/test_precision_gpu.py's
# GemmEx bounds)
GRADIENT_TOL = {"tf32": 16 * 2.0**-11, "bf16": 2.0**-8}
MEMBER_TOL = {"tf32": 2e-2, "bf16": 2e-2}
GEMM_CASES = {"bf16 -> float32": ("bf16", "bf16", "float32", 1.2e-2),
              "bf16 -> bf16": ("bf16", "bf16", "bf16", 1.5e-2),
              "tf32 float32 -> float32": ("tf32", "float32", "float32", 3e-3)}
R2_TOL = 0.005


def member_contract(device, quick) -> dict:
    """The hook's part 1, through the suite's own ``_gradient_contract`` and ``_contract``
    (tests/test_ensemble_precision.py)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        import test_ensemble_precision as contract
    except BaseException as exc:  # noqa: BLE001 - pytest.importorskip raises Skipped (a BaseException)
        return {"error": f"tests/test_ensemble_precision.py not importable: {type(exc).__name__}: {exc}"}
    gpu = device != "cpu"
    cases = ([("relu", "adam", False), ("tanh", "momentum", False), ("gelu", "adamw", True)] if gpu and not quick
             else [("gelu", "adamw", True)] if gpu else [("relu", "adam", False)])
    smooth = ["tanh", "gelu"] if gpu and not quick else ["gelu"]
    out = {}
    for precision in ("tf32", "bf16"):
        for act in smooth:  # the arithmetic at equal weights (the contract's part 1)
            entry = {"precision": precision, "tolerance": GRADIENT_TOL[precision]}
            try:
                worst = contract._gradient_contract(device, precision, act)
            except Exception as exc:  # noqa: BLE001 - reported as the training cases are
                entry.update(error=f"{type(exc).__name__}: {exc}"[:400], ok=False)
            else:
                entry.update(worst=worst, ok=worst <= GRADIENT_TOL[precision])
            out[f"{precision} {act} gradients"] = entry
        for act, optimizer, graph in cases:  # the training (part 2)
            name = f"{precision} {act} {optimizer}{' graph' if graph else ''}"
            entry = {"precision": precision, "tolerance": MEMBER_TOL[precision]}
            try:
                worst, ens = contract._contract(device, precision, act, optimizer, graph)
            except Exception as exc:  # noqa: BLE001 - a refused call or a loss off its bound: reported
                entry.update(error=f"{type(exc).__name__}: {exc}"[:400], ok=False)
            else:
                entry.update(worst=worst, ok=worst <= MEMBER_TOL[precision])
                if graph:
                    trainer = ens.graph_trainer
                    entry["captured"] = bool(trainer is not None and trainer.captured)
                    entry["reason"] = None if trainer is None else trainer.reason
                    entry["ok"] = entry["ok"] and entry["captured"]
            out[name] = entry
    return out


def _host64(a):
    from gpunn.ops.base import is_bf16, widen

    h = a.get() if hasattr(a, "get") else numpy.asarray(a)
    return (widen(h) if is_bf16(h.dtype) else h).astype(numpy.float64)


def gemm_calls(backend, quick) -> dict:
    """Part 2: out[k] = X @ W[k] with X shared (stride 0), eagerly and inside a captured CUDA graph."""
    from gpunn.ops.base import bf16_dtype, narrow
    from gpunn.ops.cublas import CupyBlas
    from gpunn.training.graph import capture_resources

    xp = backend.xp
    K, rows, n_in, n_out = (4, 24, 16, 8) if quick else (64, 128, 64, 64)
    rng = numpy.random.default_rng(7)
    out = {}
    for name, (precision, operands, result, bound) in GEMM_CASES.items():
        X, W = rng.standard_normal((rows, n_in)), rng.standard_normal((K, n_in, n_out))
        if operands == "bf16":
            X, W = narrow(X.astype(numpy.float32), bf16_dtype()), narrow(W.astype(numpy.float32), bf16_dtype())
        else:
            X, W = X.astype(numpy.float32), W.astype(numpy.float32)
        want = numpy.einsum("ij,kjl->kil", _host64(X), _host64(W))
        dX, dW = xp.asarray(X), xp.asarray(W)
        c_dtype = bf16_dtype() if result == "bf16" else numpy.float32
        for mode in ("eager", "captured"):
            entry = {"bound": bound}
            try:
                C = xp.zeros((K, rows, n_out), c_dtype)
                if mode == "eager":
                    CupyBlas().gemm_batched(dX, dW, C, precision)
                    xp.cuda.get_current_stream().synchronize()
                else:
                    stream, blas = capture_resources(backend.device)
                    xp.cuda.get_current_stream().synchronize()
                    stream.begin_capture(mode=xp.cuda.runtime.streamCaptureModeRelaxed)
                    try:
                        blas.gemm_batched(dX, dW, C, precision)
                    finally:
                        graph = stream.end_capture()
                    graph.launch(stream)  # C was zero when captured: only the replay writes it
                    stream.synchronize()
                err = float(numpy.linalg.norm(_host64(C) - want) / numpy.linalg.norm(want))
                entry.update(accepted=True, rel_err=err, ok=err < bound)
            except Exception as exc:  # noqa: BLE001 - cuBLAS's refusal is the answer sought
                entry.update(accepted=False, error=f"{type(exc).__name__}: {exc}"[:400], ok=False)
            out[f"{name}, {mode}"] = entry
    return out


def held_out_r2(device, quick) -> dict:
    """Part 3, tests/test_precision_gpu.py's run (at small sizes with --quick or on the CPU)."""
    import gpunn

    rows, sizes, epochs = (3000, [16, 32, 1], 2) if quick or device == "cpu" else (24_000, [16, 64, 64, 1], 6)
    X, Y = gpunn.datasets.make("teacher", n_samples=rows, n_features=16, seed=0, device=device)
    held = rows // 6
    Xt, Yt, X, Y = X[:held], Y[:held], X[held:], Y[held:]
    scores, errors = {}, {}
    for precision in ("float32", "tf32", "bf16"):
        model = gpunn.MLP(sizes, device=device, seed=0, precision=precision)
        # handle_interrupt=False: gpu_check.sh's SIGINT at the stage's cap ends the hook at once (a traceback); a fit
        # that handled it would stop part-trained and return, and what the hook compares or times next would be false
        model.fit(X, Y, epochs=epochs, batch_size=256, lr=3e-3, verbose=False, handle_interrupt=False)
        try:
            scores[precision] = float(model.score(Xt, Yt))
        except FloatingPointError as exc:  # score() refuses non-finite predictions (33f931a): this precision fails
            scores[precision], errors[precision] = float("nan"), f"{type(exc).__name__}: {exc}"[:400]
    out = {"rows": rows, "layers": "-".join(map(str, sizes)), "epochs": epochs, "r2": scores,
           "within": {p: abs(scores[p] - scores["float32"]) <= R2_TOL for p in ("tf32", "bf16")}}
    return {**out, "errors": errors} if errors else out


def alignment(backend, quick) -> dict:
    """Part 4: the small-x256 bf16 forward products (X shared @ W1[k], A1[k] @ W2[k]) with the members'
    matrices at k x 5,313 elements (packed, as gpunn stores them) and at k x 5,320 (16-byte aligned)."""
    from gpunn.bench.runners import synchronize
    from gpunn.ops.base import bf16_dtype, narrow
    from gpunn.ops.cublas import CupyBlas

    xp = backend.xp
    K, batch, sizes = (4, 8, (16, 64, 64, 1)) if quick else (256, 128, (16, 64, 64, 1))
    per_member = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))  # 5,313 for small
    padded = -(-per_member // 8) * 8
    bf16, blas = bf16_dtype(), CupyBlas()
    rng = numpy.random.default_rng(3)
    def draw(*shape):
        return xp.asarray(narrow(rng.standard_normal(shape).astype(numpy.float32), bf16))

    X, A1 = draw(batch, sizes[0]), draw(K, batch, sizes[1])
    Z1, Z2 = xp.empty((K, batch, sizes[1]), bf16), xp.empty((K, batch, sizes[2]), bf16)
    w2_at = sizes[0] * sizes[1] + sizes[1]
    report = {"members": K, "batch": batch, "per_member": per_member, "padded": padded}
    for label, stride in (("packed", per_member), ("padded", padded)):
        flat = draw(K, stride)
        W1 = flat[:, :sizes[0] * sizes[1]].reshape(K, sizes[0], sizes[1])
        W2 = flat[:, w2_at:w2_at + sizes[1] * sizes[2]].reshape(K, sizes[1], sizes[2])
        assert W2.strides[0] == stride * W2.itemsize, W2.strides  # views, not copies

        def step():
            blas.gemm_batched(X, W1, Z1, "bf16")
            blas.gemm_batched(A1, W2, Z2, "bf16")

        step()
        synchronize(backend)
        calls, rounds = (2, 2) if quick else (200, 5)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(calls):
                step()
            synchronize(backend)
            times.append((time.perf_counter() - t) / calls)
        report[f"{label}_us"] = 1e6 * statistics.median(times)
    report["packed_over_padded"] = report["packed_us"] / report["padded_us"]
    return report


def main(argv=None) -> int:
    parser = hook_parser(__doc__, max_seconds=40.0)
    parser.add_argument("--quick", action="store_true", help="small sizes on any device (a test of the code "
                        "paths, e.g. on tests/fakecupy)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    from gpunn import backend as _backend

    import gpunn.model

    backend = _backend.resolve(args.device)
    # the precisions need a GPU; on the CPU the tests' NumPy emulation of them runs the same code (and is put
    # back afterwards: a caller in the same process, such as the test suite, must not inherit it)
    emulating = gpunn.model._EMULATE_PRECISION_ON_CPU
    gpunn.model._EMULATE_PRECISION_ON_CPU = emulating or not backend.is_gpu
    try:
        return _run(args, backend, t0)
    finally:
        gpunn.model._EMULATE_PRECISION_ON_CPU = emulating


def _run(args, backend, t0) -> int:
    gpu = backend.is_gpu
    report = {"device": backend.describe(), "quick": args.quick, "skipped": {}}

    def save():
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "precision.json"), {**report, "seconds": time.monotonic() - t0})

    parts = [("members", lambda: member_contract(args.device, args.quick), 0),
             ("gemm", (lambda: gemm_calls(backend, args.quick)) if gpu else None, 0),
             ("r2", lambda: held_out_r2(args.device, args.quick), 8),
             ("alignment", (lambda: alignment(backend, args.quick)) if gpu else None, 5)]
    for name, run, needs in parts:
        if run is None:
            report["skipped"][name] = "a GPU measurement"
        elif args.max_seconds - (time.monotonic() - t0) < needs:
            report["skipped"][name] = f"under {needs} s left of --max-seconds {args.max_seconds:g}"
        else:
            try:
                with backend.use():
                    report[name] = run()
            except Exception as exc:  # noqa: BLE001 - one part's failure must not lose the others' answers
                report[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        save()

    ok = True
    failed = {name for name in ("gemm", "r2", "alignment") if "error" in report.get(name, {})}
    for name in sorted(failed):
        print(f"FAIL {name}: {report[name]['error']}")
        ok = False
    for name, e in report.get("members", {}).items():
        if name == "error":
            print(f"FAIL member vs MLP: {e}")
            ok = False
            continue
        ok &= e["ok"]
        got = f"worst {e['worst']:.3g}" if "worst" in e else e["error"]
        graph = "" if "captured" not in e else (", graph captured" if e["captured"] else
                                                 f", graph NOT captured ({e['reason']})")
        print(f"{'ok  ' if e['ok'] else 'FAIL'} member vs MLP, {name}: {got} (bound {e['tolerance']:g}){graph}")
    for name, e in ({} if "gemm" in failed else report.get("gemm", {})).items():
        ok &= e["ok"]
        got = f"relative error {e['rel_err']:.3g} (bound {e['bound']:g})" if e["accepted"] else f"REFUSED: {e['error']}"
        print(f"{'ok  ' if e['ok'] else 'FAIL'} batched GemmEx, shared X (stride 0), {name}: {got}")
    if "r2" in report and "r2" not in failed:
        r2 = report["r2"]["r2"]
        print(f"held-out R² ({report['r2']['rows']:,} rows, {report['r2']['layers']}): " +
              ", ".join(f"{p} {v:.4f}" for p, v in r2.items()) +
              "; " + ", ".join(f"{p} {'within' if report['r2']['within'][p] else 'NOT within'} {R2_TOL} of float32"
                               for p in ("tf32", "bf16")))
    if "alignment" in report and "alignment" not in failed:
        a = report["alignment"]
        print(f"bf16 small-x{a['members']} products at batch {a['batch']}: members packed ({a['per_member']:,} "
              f"elements apart) {a['packed_us']:.1f} us, padded to {a['padded']:,} {a['padded_us']:.1f} us: "
              f"packed/padded {a['packed_over_padded']:.2f}x")
    for name, why in report["skipped"].items():
        print(f"{name}: skipped: {why}")
    report["ok"] = bool(ok)
    save()
    print(f"precision: {'pass' if ok else 'FAIL'} in {time.monotonic() - t0:.1f}s on {report['device']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
