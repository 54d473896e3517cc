"""The CuPy code path end to end on CPU-only CI, through tests/fakecupy (a NumPy-backed CuPy stand-in).

Every ``RawKernel`` launch gpunn makes here is checked against the kernel's signature parsed from
kernels/*.cu (pointer vs scalar, exact NumPy scalar type, dtype, null pointers, launch shape, rows
covered) and computed by the NumPy reference registered in tests/fakecupy/kernels.py; every CuPy call
must use device arrays on the current device. So these tests prove that gpunn drives CuPy and its
kernels correctly: the training loop, datasets, checkpoints and predict on ``device="cuda"`` and
``"cuda:1"``. They do not prove the CUDA code right (nothing here compiles or runs it): that is
tests/test_kernel_compile.py, tests/test_kernel_math_host.py, tests/test_kernel_bodies_host.py and, on a
GPU, bench/gpu_check.sh.

Adding a kernel (a bf16 instantiation, an ensemble kernel): register its NumPy reference with
``@fakecupy.kernels.reference("name")`` (see that module's docstring); the signature comes from the
source. Running every GPU-marked test against the stand-in: ``GPUNN_FAKE_CUPY=1 pytest -m gpu``.
"""
from __future__ import annotations

import itertools
import json
import sys

import numpy
import pytest

import fakecupy
from fakecupy import kernels as fk


def _data(rows=240, features=6, outputs=2, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((rows, features))
    Y = numpy.column_stack([numpy.sin(X[:, :2].sum(axis=1)), X[:, 2] * X[:, 3]])[:, :outputs]
    return X, Y


# ---- the stand-in itself -----------------------------------------------------------------------

def test_signatures_are_parsed_from_the_kernel_sources():
    from gpunn.ops import kernels as gk

    sigs = fk.parse_signatures(gk.load_source("optimizers.cu"))
    adam = sigs["adam_step"]
    assert [t for t in adam.template] == [("typename", "T")]
    assert [(p.name, p.ctype, p.pointer) for p in adam.params[:5]] == [
        ("w", "T", True), ("g", "T", True), ("m", "T", True), ("v", "T", True), ("lr", "T", False)]
    assert (adam.params[-2].ctype, adam.params[-1].ctype) == ("int", "long long")
    for source in gk.SOURCES:  # every kernel gpunn instantiates has a signature and a reference
        sigs = fk.parse_signatures(gk.load_source(source))
        for name in gk.name_expressions(source):
            sig, bound = fk.resolve(name, sigs)
            assert sig.name in fk.REFERENCES, f"no reference for {sig.name}"


@pytest.mark.parametrize("bad, message", [
    (lambda cp, a: (a, a, a, numpy.float32(1e-3), 0.9, numpy.float32(0), numpy.int32(0), numpy.int64(4)),
     "needs exactly numpy.float32"),  # a Python float for a float scalar
    (lambda cp, a: (a, a, a, numpy.float32(1e-3), numpy.float32(0.9), numpy.float32(0), numpy.int32(0), 4),
     "needs exactly numpy.int64"),
    (lambda cp, a: (a, a, a, numpy.float64(1e-3), numpy.float32(0.9), numpy.float32(0), numpy.int32(0), numpy.int64(4)),
     "needs exactly numpy.float32"),
    (lambda cp, a: (a, a.astype("float64"), a, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0),
                    numpy.int64(4)), r"is T\* \(float32\) but the array is float64"),
    (lambda cp, a: (a, a.get(), a, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0),
                    numpy.int64(4)), "is a pointer"),
    (lambda cp, a: (a, 0, a, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0), numpy.int64(4)),
     "is a pointer"),
    (lambda cp, a: (a, a, a, numpy.float32(1)), "4 arguments for 8 parameters"),
    (lambda cp, a: (a, a, numpy.uintp(0), numpy.float32(1), numpy.float32(0.9), numpy.float32(0), numpy.int32(0),
                    numpy.int64(4)), "null velocity"),
    (lambda cp, a: (a, a, a, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0), numpy.int64(5)),
     "holds 4 elements but the kernel touches 5"),
    (lambda cp, a: (a, a, a, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0), numpy.int64(-4)),
     "negative count of -4"),  # a count that wrapped (the slice took all but the last 4 elements)
    (lambda cp, a: (cp.ones(8, "float32")[::-2], a, a, numpy.float32(1),
                    numpy.float32(0), numpy.float32(0), numpy.int32(0), numpy.int64(4)), "cannot index that flat"),
    (lambda cp, a: (lambda s: (s, s, s, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0),
                               numpy.int64(8)))(cp.ones(8, "float32")[::2]), "holds 7 elements"),  # a view spans 7
])
def test_wrong_launches_are_refused(fake_cupy, bad, message):
    from gpunn.ops import kernels as gk

    a = fake_cupy.ones(4, "float32")
    kernel = gk.get_kernel("sgd_step", "float32")
    with pytest.raises(fk.LaunchError, match=message):
        kernel((1,), (32,), bad(fake_cupy, a))


def test_wrong_launch_shapes_and_devices_are_refused(fake_cupy):
    from gpunn.ops import kernels as gk

    a = fake_cupy.ones(4, "float32")
    args = (a, a, a, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0), numpy.int64(4))
    kernel = gk.get_kernel("sgd_step", "float32")
    for grid, block, message in [((0,), (32,), "empty dimension"), ((1,), (2048,), "exceeds 1024"),
                                 ((1.0,), (32,), "tuple of 1-3 ints")]:
        with pytest.raises(fk.LaunchError, match=message):
            kernel(grid, block, args)
    with fake_cupy.cuda.Device(1), pytest.raises(fk.LaunchError, match="on device 0, the launch on 1"):
        kernel((1,), (32,), args)
    with pytest.raises(TypeError, match="host NumPy array"):
        fake_cupy.add(a, numpy.ones(4, "float32"))
    with fake_cupy.cuda.Device(1), pytest.raises(ValueError, match="current device"):
        a + 1


def test_an_unregistered_kernel_says_how_to_add_it(fake_cupy):
    mod = fake_cupy.RawModule(code="template <typename T> __global__ void k(T* x, long long n) {}",
                              name_expressions=["k<float>"])
    with pytest.raises(fk.LaunchError, match="no NumPy reference registered for kernel 'k'.*@reference"):
        mod.get_function("k<float>")((1,), (32,), (fake_cupy.ones(2, "float32"), numpy.int64(2)))


# ---- gpunn on the stand-in -------------------------------------------------------------------

def test_probe_runs_a_kernel_and_falls_back_with_the_reason(fake_cupy):
    from gpunn import backend

    cp, count, reason = backend.probe_cuda()
    assert cp is fake_cupy and count == 2 and reason == ""
    assert any(name == "gpunn_probe" for name, _, _ in fakecupy.state.launches)
    for stage, words in [("compile", "compiling a kernel"), ("launch", "running a kernel"),
                         ("cublas", "cuBLAS"), ("count", "driver")]:
        fakecupy.state.fail = stage
        backend.probe_cuda.cache_clear()
        cp, count, reason = backend.probe_cuda()
        assert cp is None and words in reason, reason
        with pytest.warns(backend.CPUFallbackWarning, match="running on CPU"):
            backend._fallback_announced = False
            assert backend.resolve("auto") is backend.CPU
        with pytest.raises(backend.DeviceError, match=words):
            backend.resolve("cuda")
    fakecupy.state.fail = None
    backend.probe_cuda.cache_clear()
    assert backend.resolve("auto").device == "cuda:0"


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "identity"])
@pytest.mark.parametrize("optimizer", ["adam", "nesterov", "sgd"])
def test_training_on_the_cupy_path_is_the_numpy_training(fake_cupy, activation, optimizer):
    """Same start, same batches (no shuffle): the fused CuPy path -- the step captured as a CUDA graph, the
    default -- lands on the NumPy reference's weights."""
    from gpunn import MLP

    X, Y = _data()
    kwargs = dict(activation=activation, dtype="float64", seed=5)
    cpu = MLP([6, 40, 3 * 7, 2], device="cpu", fused=False, **kwargs)
    gpu = MLP([6, 40, 3 * 7, 2], device="cuda", **kwargs)
    assert type(gpu.ops).__name__ == "CupyOps" and gpu.ops.fused
    fit = dict(epochs=3, batch_size=64, optimizer=optimizer, lr=1e-2, shuffle=False, verbose=False)
    h_cpu, h_gpu = cpu.fit(X, Y, **fit), gpu.fit(X, Y, **fit)
    numpy.testing.assert_allclose(gpu.params.get(), cpu.params, rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=1e-10)
    assert gpu.graph_trainer.captured and fakecupy.state.graph_launches >= 3 * 3  # 3 full batches of 4 replayed
    names = {name.split("<")[0].split("::")[-1].removesuffix("_dev") for name, _, _ in fakecupy.state.launches}
    assert {"mse_grad", "bias_grad", "bias_act_forward"} <= names  # the fused kernels ran
    assert (optimizer == "adam") == ("adam_step" in names) and (optimizer != "adam") == ("sgd_step" in names)


def test_two_stage_bias_gradient_and_empty_batches(fake_cupy):
    from gpunn.activations import ACTIVATIONS
    from gpunn.ops import Ops, ops_for
    from gpunn import backend

    ops = ops_for(backend.resolve("cuda"))
    rng = numpy.random.default_rng(1)
    # (100_001 rows in 1000 chunks: 101 rows each, so 991 chunks, none starting past the last row)
    for rows, cols, chunks in [(1000, 70, 7), (65, 3, None), (1, 1, None), (0, 5, None), (0, 5, 3), (3, 0, None),
                               (100_001, 1, 1000)]:
        ops.bias_grad_chunks = chunks
        dZ = rng.standard_normal((rows, cols))
        db = fake_cupy.full(cols, numpy.nan)
        ops.bias_gradient(fake_cupy.asarray(dZ), db)
        numpy.testing.assert_allclose(db.get(), dZ.sum(axis=0), rtol=1e-12, atol=1e-12)
    Z = fake_cupy.zeros((0, 4))
    ops.bias_activation(Z, fake_cupy.ones(4), ACTIVATIONS["relu"], Z, keep_z=False)
    Ops(numpy).bias_gradient(numpy.zeros((0, 2)), numpy.ones(2))
    # a rank's empty piece of the last batch: its loss and gradient (2/m with m = 0 rows: no division by 0)
    assert float(ops.loss_gradient(Z, Z, fake_cupy.empty((0, 4)))) == 0.0 and float(ops.squared_error(Z, Z)) == 0.0


def test_launch_shapes_are_the_documented_ones(fake_cupy, monkeypatch):
    """What gpunn/ops/cuda.py says of its launches, which no value shows (a grid-stride kernel computes the same on
    any grid): a block of 256 threads and a grid of one block per 256 elements up to 16 per multiprocessor; no
    launch for nothing; the bias gradient in one launch of (32, 32) threads up to 1024 rows, above in row chunks
    (enough blocks for 4 per multiprocessor, no more than one chunk per 64 rows) and a second launch, or in
    ``bias_grad_chunks`` chunks when set."""
    from gpunn.activations import ACTIVATIONS
    from gpunn.ops.cuda import CupyOps

    monkeypatch.setattr(fakecupy.state, "sm_count", 2)
    relu = ACTIVATIONS["relu"]

    def launches(call):
        fakecupy.state.launches.clear()
        call()
        return [(name.split("<")[0].removeprefix("gpunn::"), grid, block) for name, grid, block in fakecupy.state.launches]

    ops = CupyOps()
    for n, blocks in [(1, 1), (300, 2), (2560, 10), (8192, 32), (8193, 32)]:  # a grid cap of 32 blocks
        Z = fake_cupy.zeros((1, n))
        assert launches(lambda: ops.bias_activation(Z, None, relu, Z, False)) == [("bias_act_forward", (blocks,), (256,))]
    Z = fake_cupy.zeros((0, 4))
    assert launches(lambda: ops.bias_activation(Z, fake_cupy.ones(4), relu, Z, False)) == []
    for rows, cols in [(1024, 70), (1025, 70), (5000, 33), (100_000, 1)]:
        got = launches(lambda: ops.bias_gradient(fake_cupy.zeros((rows, cols)), fake_cupy.zeros(cols)))
        col_blocks = -(-cols // 32)
        if rows <= 1024:
            assert got == [("bias_grad", (col_blocks, 1), (32, 32))], (rows, cols)
            continue
        (name, (gx, chunks), block), finish = got
        assert (name, gx, block, finish[0]) == ("bias_grad", col_blocks, (32, 16), "bias_grad_finish"), (rows, cols)
        assert gx * chunks >= 4 * 2 and chunks <= -(-rows // 64), (rows, cols, chunks)
    for chunks, want in [(3, 3), (50, 5)]:  # 301 rows: 5 chunks at most; 300 columns: 2 blocks of the second launch
        ops.bias_grad_chunks = chunks
        got = launches(lambda: ops.bias_gradient(fake_cupy.zeros((301, 300)), fake_cupy.zeros(300)))
        assert [(name, grid) for name, grid, _ in got] == [("bias_grad", (10, want)), ("bias_grad_finish", (2,))]


def test_the_member_kernels_launch_shapes_are_the_documented_ones(fake_cupy, monkeypatch):
    """What gpunn/ops/ensemble_cuda.py says of its launches, which no value shows (the member kernels step through
    the members by gridDim.y and through a member's values by a grid-stride loop): one launch per op for all
    members, the grid's y one per member up to CUDA's 65535 (more members: the kernels step through them), x
    enough 256-thread blocks for a member's values but about 16 blocks per multiprocessor in all; the bias
    gradient one (32, 16) block per 32 columns and member (cuda.BIAS_GRAD_BLOCK); no launch for nothing."""
    from gpunn.activations import ACTIVATIONS
    from gpunn.ops.cuda import CupyOps
    from gpunn.ops.member_rates import MemberRates
    from gpunn.ops.ensemble_cuda import CupyEnsembleOps

    monkeypatch.setattr(fakecupy.state, "sm_count", 2)  # 32 blocks in all
    relu, members = ACTIVATIONS["relu"], CupyEnsembleOps(CupyOps())

    def launches(call):
        fakecupy.state.launches.clear()
        call()
        return [(name.split("<")[0].removeprefix("gpunn::"), grid, block) for name, grid, block in fakecupy.state.launches]

    # (K, rows, cols) -> grid: 1, 3 or 40 blocks of 256 per member; at most 32 // K of them, and one at least
    for (K, rows, cols), grid in [((3, 1, 1), (1, 3)), ((3, 2, 300), (3, 3)), ((3, 100, 100), (10, 3)),
                                  ((40, 100, 100), (1, 40)), ((65536, 1, 1), (1, 65535))]:
        Z = fake_cupy.zeros((K, rows, cols))
        assert launches(lambda: members.bias_activation(Z, None, relu, Z, False)) == [
            ("member_bias_act_forward", grid, (256,))], (K, rows, cols)
        if K > 3:
            continue
        assert launches(lambda: members.loss_gradient(Z, Z, Z)) == [("member_mse_grad", grid, (256,))]
        w = fake_cupy.zeros((K, rows * cols))
        rates = MemberRates(fake_cupy, [[0.1, 0.0, 0.9, 0.9, 0.999, 1, 0, 0]] * K)
        assert launches(lambda: members.sgd_step(w, w, w, rates, False)) == [("member_sgd_step", grid, (256,))]
        assert launches(lambda: members.adam_step(w, w, w, w, rates, 1e-8, 1, False)) == [
            ("member_adam_step", grid, (256,))]
    for K, cols, grid in [(3, 40, (2, 3)), (3, 64, (2, 3)), (65536, 1, (1, 65535))]:
        dZ = fake_cupy.ones((K, 2, cols))
        db = fake_cupy.zeros((K, cols))
        assert launches(lambda: members.bias_gradient(dZ, db)) == [("member_bias_grad", grid, (32, 16))], (K, cols)
        assert db.get().tolist() == [[2.0] * cols] * K  # every member's sums, past the 65535th too
    Z = fake_cupy.zeros((3, 0, 4))
    assert launches(lambda: members.bias_activation(Z, fake_cupy.ones((3, 4)), relu, Z, False)) == []
    no_columns = fake_cupy.zeros((3, 8))[:, 2:2]  # rows of a parameter buffer, 0 wide (a (3, 0) array: strides 0)
    assert launches(lambda: members.bias_gradient(fake_cupy.zeros((3, 4, 0)), no_columns)) == []


def test_member_rates_are_copied_to_the_device_once_per_change_and_stay_at_one_address(fake_cupy, monkeypatch):
    """MemberRates.device: made on first use; after update() (an epoch's learning rates, a member frozen) the same
    device array holds the new table, by one copy however many changes came before it and however often it is read
    after; no copy while nothing changed. A captured CUDA graph reads the table at that address."""
    from gpunn.ops.member_rates import ACTIVE, LR, MemberRates

    copies, set_ = [], fake_cupy.ndarray.set
    monkeypatch.setattr(fake_cupy.ndarray, "set", lambda self, arr, stream=None: (copies.append(arr.copy()),
                                                                                  set_(self, arr, stream))[1])
    table = [[0.1, 0.0, 0.9, 0.9, 0.999, 1.0, 0.0, 0.0]] * 3
    rates = MemberRates(fake_cupy, table)
    assert rates.device_copy is None
    device = rates.device
    assert rates.device_copy is device and device.get().tolist() == table
    assert rates.device is device and not copies
    rates.update(LR, [0.2, 0.3, 0.4])
    rates.update(ACTIVE, [1.0, 0.0, 1.0])
    assert rates.device is device and rates.device is device and rates.device_copy is device
    assert len(copies) == 1 and device.get().tolist() == rates.host.tolist() == [
        [0.2, 0.0, 0.9, 0.9, 0.999, 1.0, 0.0, 0.0], [0.3, 0.0, 0.9, 0.9, 0.999, 0.0, 0.0, 0.0],
        [0.4, 0.0, 0.9, 0.9, 0.999, 1.0, 0.0, 0.0]]
    # a table of fewer columns (the six before the clips) is refused: the kernels would read past each member's row
    with pytest.raises(ValueError, match=r"a member settings table is \(members, 8\), got shape \(3, 6\)"):
        MemberRates(fake_cupy, [row[:6] for row in table])


def test_adams_scalars_are_rounded_once_from_double(fake_cupy, monkeypatch):
    """adam_step's 1 - beta are computed in double and rounded once to the kernel's T (as torch does), not computed
    in float32 from rounded betas; the betas and the step go as doubles, from which the kernel forms the bias
    corrections 1 - beta^t in double on the device (adam_bias_correction), as the graph's tick does."""
    from gpunn.ops import cuda, kernels

    got, get_kernel = [], kernels.get_kernel

    def recording(name, dtype, act=None):
        kernel = get_kernel(name, dtype, act)
        return lambda grid, block, args: (got.append(args), kernel(grid, block, args))

    monkeypatch.setattr(cuda.kernels, "get_kernel", recording)
    w, g, m, v = (fake_cupy.ones(4, "float32") for _ in range(4))
    cuda.CupyOps().adam_step(w, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 3, 0.0, False)
    f32, f64 = numpy.float32, numpy.float64
    scalars = got[0][5:11]
    assert scalars == (f32(1 - 0.9), f32(1 - 0.999), f32(1e-8), 0.9, 0.999, 3.0)
    assert [type(a) for a in scalars] == [f32, f32, f32, f64, f64, f64]


def test_unfused_ops_launch_no_kernel_and_bf16_always_does(fake_cupy):
    """CupyOps(fused=False) runs the generic code (what the fused kernels are compared with): no kernel of its own,
    the optimizer's device tick included; bf16 arrays have no generic path and always go to the kernels, the bias
    gradient summing into float32."""
    from gpunn.activations import ACTIVATIONS
    from gpunn.ops.base import bf16_dtype
    from gpunn.ops.cuda import CupyOps

    def kernels_run(ops, dtype):
        fakecupy.state.launches.clear()
        Z, b = fake_cupy.ones((8, 5), dtype), fake_cupy.ones(5, dtype)
        ops.bias_activation(Z, b, ACTIVATIONS["tanh"], Z, False)
        ops.activation_backward(Z, ACTIVATIONS["tanh"], Z, True, Z)
        ops.bias_gradient(Z, fake_cupy.zeros(5, "float32" if dtype != "float64" else dtype))
        return {name.split("<")[0].removeprefix("gpunn::") for name, _, _ in fakecupy.state.launches}

    unfused = CupyOps(fused=False)
    assert kernels_run(unfused, "float64") == set()
    w, g = fake_cupy.ones(6), fake_cupy.ones(6)
    m, v, state = fake_cupy.zeros(6), fake_cupy.zeros(6), fake_cupy.zeros(4)
    fakecupy.state.launches.clear()
    unfused.sgd_step(w, g, fake_cupy.zeros(6), 0.1, 0.9, False, 0.0)
    unfused.adam_step(w, g, m, v, 0.1, 0.9, 0.999, 1e-8, 1, 0.0, False)
    unfused.optimizer_tick(state, 0.9, 0.999)
    assert fakecupy.state.launches == [] and state.get().tolist()[0] == 1.0
    assert kernels_run(unfused, bf16_dtype()) == {"bias_act_forward", "act_backward_from_output", "bias_grad"}


def test_device_attributes_are_queried_once(fake_cupy):
    from gpunn import MLP, Ensemble

    X, Y = _data()
    model = MLP([6, 16, 2], device="cuda", seed=0)
    model.fit(X, Y, epochs=1, batch_size=16, verbose=False)
    before = fakecupy.state.attribute_queries
    launches = len(fakecupy.state.launches)
    model.fit(X, Y, epochs=2, batch_size=16, verbose=False)
    assert len(fakecupy.state.launches) - launches > 50
    assert fakecupy.state.attribute_queries == before  # none per launch
    ensemble = Ensemble([6, 16, 2], n_models=3, device="cuda", seed=0)
    ensemble.fit(X, Y, epochs=1, batch_size=16, verbose=False)
    before, launches = fakecupy.state.attribute_queries, len(fakecupy.state.launches)
    ensemble.fit(X, Y, epochs=1, batch_size=16, verbose=False)
    assert len(fakecupy.state.launches) - launches > 50 and fakecupy.state.attribute_queries == before


def test_shuffles_take_no_curand_generator_and_a_seed_gives_the_same_ones(fake_cupy):
    """An epoch's shuffle on a GPU is gpunn.rng.hash_permutation of its words (no cuRAND generator, made or
    re-seeded: one per thread and stream, and on an H200 a draw failed beside another thread's capture)."""
    from gpunn import MLP

    X, Y = _data()
    model = MLP([6, 8, 2], device="cuda", seed=0)
    made = fakecupy.state.generators  # the backend's probe draws once, at the first model on cuda
    model.fit(X, Y, epochs=2, batch_size=32, verbose=False)
    first = model.params.get()
    model2 = MLP([6, 8, 2], device="cuda", seed=0)
    model2.fit(X, Y, epochs=2, batch_size=32, verbose=False)
    model2.fit(X, Y, epochs=6, batch_size=32, verbose=False)
    assert fakecupy.state.generators == made  # none for a shuffle
    model3 = MLP([6, 8, 2], device="cuda", seed=0)
    model3.fit(X, Y, epochs=2, batch_size=32, verbose=False)
    numpy.testing.assert_array_equal(model3.params.get(), first)  # (seed, epoch) -> the same shuffle


def test_everything_stays_on_cuda_1(fake_cupy, tmp_path):
    """On cuda:1 every allocation, kernel and CuPy call happens with device 1 current (else ValueError)."""
    import gpunn
    from gpunn import MLP, datasets

    X, Y = datasets.make("teacher", 600, 5, 2, seed=0, device="cuda:1", dtype="float64")
    assert X.device.id == 1
    model = MLP([5, 16, 16, 2], device="cuda:1", seed=0, dtype="float64")
    assert model.params.device.id == 1 and model.device == "cuda:1"
    model.weights[0] = numpy.ones((5, 16)) * 0.1  # ParamList copies on the model's device
    history = model.fit(X, Y, epochs=3, batch_size=64, validation_fraction=0.2, verbose=False,
                        callbacks=[gpunn.EarlyStopping(patience=2), gpunn.ModelCheckpoint(str(tmp_path / "run.npz"))])
    assert len(history["loss"]) >= 1 and numpy.isfinite(history["val_r2"][-1])
    assert model.predict(X[:7]).device.id == 1 and numpy.isfinite(model.score(X, Y))
    model.loss_and_gradients(X[:10], Y[:10])
    gpunn.save(str(tmp_path / "m.npz"), model)
    back = gpunn.load(str(tmp_path / "m.npz"), device="cuda:1")
    numpy.testing.assert_array_equal(back.predict(X[:9]).get(), model.predict(X[:9]).get())
    on_cpu = gpunn.load(str(tmp_path / "m.npz"), device="cpu")
    numpy.testing.assert_allclose(on_cpu.predict(X[:9].get()), model.predict(X[:9]).get(), rtol=1e-12)
    resumed = gpunn.load_checkpoint(str(tmp_path / "run.npz"), device="cuda:1")
    resumed.resume(X, Y, epochs=5, verbose=False)
    assert fakecupy.state.current == 0  # every use() was left


@pytest.mark.parametrize("kind", ["synthetic", "npy"])
def test_sources_read_on_two_devices_in_one_process_each_use_a_side_stream_of_their_device(fake_cupy, tmp_path, kind):
    """The side streams that read (or generate) the next window are kept per device: a source on cuda:1 read after
    one on cuda:0 gets a stream of device 1, and the same rows in the same order (a kernel or event of device 1
    on device 0's stream fails, as in CUDA)."""
    import gpunn

    X = numpy.random.default_rng(0).standard_normal((3000, 4))
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", X[:, :1] * 2 + 1)
    got = []
    for device in ("cuda:0", "cuda:1"):
        if kind == "synthetic":
            source = gpunn.data.synthetic("teacher", rows=2 * 65536 + 300, n_features=4, seed=3, window=1,
                                          device=device, dtype="float64")
        else:
            source = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=300, window=2, seed=3,
                                    device=device, dtype="float64")
        with source.backend.use():
            got.append(numpy.concatenate([Xb.get() for Xb, _ in source.batches(0, 4096)]))
    numpy.testing.assert_array_equal(got[0], got[1])


def test_graphs_on_cuda_0_then_cuda_1_capture_on_their_own_devices_stream(fake_cupy):
    """capture_resources keeps a stream and a cuBLAS handle per device: a fit on cuda:1 after one on cuda:0 captures
    on device 1's (mut12m's G26: the pair kept for any device, here device 0's, passed every test; it fails here as
    in CUDA, a device 1 event recorded on device 0's stream)."""
    from gpunn import MLP, datasets

    for device in ("cuda:0", "cuda:1"):
        X, Y = datasets.make("teacher", 300, 5, 2, seed=0, device=device)
        model = MLP([5, 16, 2], device=device, seed=0)
        model.fit(X, Y, epochs=2, batch_size=64, verbose=False)
        assert model.graph_trainer.captured, model.graph_trainer.reason
        assert model.graph_trainer.stream.device_id == int(device[-1])


def _standardized_cuda_1_source(kind, tmp_path):
    """A synthetic or .npy source made with device="cuda:1" and standardize=True (it binds at once)."""
    import gpunn

    if kind == "synthetic":
        return gpunn.data.synthetic("teacher", rows=2 * 65536 + 300, n_features=4, n_outputs=1, seed=3, window=1,
                                    standardize=True, validation_fraction=0.4, device="cuda:1", dtype="float64")
    X = numpy.random.default_rng(0).standard_normal((3000, 4))
    numpy.save(tmp_path / "x.npy", X)
    numpy.save(tmp_path / "y.npy", X[:, :1] * 2 + 1)
    return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=300, window=2, standardize=True,
                          validation_fraction=0.2, device="cuda:1", dtype="float64")


@pytest.mark.parametrize("kind", ["synthetic", "npy"])
def test_a_source_bound_to_cuda_1_when_made_reads_and_standardizes_on_cuda_1(fake_cupy, tmp_path, kind):
    """A source made with device="cuda:1" binds at once, outside any use(): its standardization pass (and
    hold_out's, again) must still run on device 1. It ran on the current device 0: a synthetic chunk drew
    from device 1's cuRAND generator with device 0 current, and a file's side stream was made on device 0
    and kept for device 1 (a kernel or event of device 1 on it fails, as in CUDA)."""
    from gpunn import MLP

    source = _standardized_cuda_1_source(kind, tmp_path)
    assert fakecupy.state.current == 0 and source.standardizer is not None
    source.hold_out(0.3)  # statistics again, from the new training chunks
    model = MLP([4, 8, 1], device="cuda:1", seed=0, dtype="float64")
    history = model.fit(source, epochs=1, batch_size=512, verbose=False)
    assert numpy.isfinite(history["val_loss"][-1]) and fakecupy.state.current == 0


@pytest.mark.parametrize("kind", ["synthetic", "npy"])
def test_a_cuda_1_sources_windows_read_with_device_0_current_stay_on_cuda_1(fake_cupy, tmp_path, kind):
    """ordered_windows() and validation_windows() of a cuda:1 source, iterated with device 0 current (they make no
    device current while the consumer holds a window): each window is copied, standardized and released on device
    1, as read with device 1 current. The copy ran on the current device: refused here, and in CuPy a copy to
    device 0 (standardized there with device 1's statistics)."""
    source = _standardized_cuda_1_source(kind, tmp_path)
    for windows in (source.ordered_windows, source.validation_windows):
        with source.backend.use():
            expected = [(X.get(), Y.get()) for X, Y in windows()]
        got = []
        for X, Y in windows():
            assert X.device.id == Y.device.id == 1 and fakecupy.state.current == 0
            got.append((X, Y))
        with source.backend.use():
            assert len(got) == len(expected) > 0
            for (X, Y), (eX, eY) in zip(got, expected):
                numpy.testing.assert_array_equal(X.get(), eX)
                numpy.testing.assert_array_equal(Y.get(), eY)


@pytest.mark.parametrize("kind", ["synthetic", "npy", "sharded", "iterable", "datasets.stream"])
def test_batches_of_a_cuda_1_source_leave_the_consumers_device_current_between_next_calls(fake_cupy, tmp_path, kind):
    """A cuda:1 source's batches, iterated with device 0 current: each batch is made with device 1 current, but
    between next() calls the consumer has its own device current (its arrays are made there). The pass held
    device 1 current across its yields, until the generator ended or was collected (a half-read pass: at some
    later garbage collection, switching the device under whatever ran then)."""
    import gpunn
    from gpunn.distributed.shard import ShardedSource

    if kind == "iterable":
        pieces = [(numpy.full((50, 4), i, "float64"), numpy.full((50, 1), -i, "float64")) for i in range(4)]
        source = gpunn.data.iterable(pieces).bind("cuda:1", "float64")
        batches = source.batches(0, 64)
    elif kind == "datasets.stream":
        batches = gpunn.datasets.stream("linear", n_samples=300, batch_size=64, n_features=4, device="cuda:1")
    else:
        source = _standardized_cuda_1_source("npy" if kind == "sharded" else kind, tmp_path)
        batches = (ShardedSource(source, 2) if kind == "sharded" else source).batches(0, 256)
    X, Y = next(batches)
    assert X.device.id == Y.device.id == 1 and fakecupy.state.current == 0
    mine = fake_cupy.ones(2)  # the consumer's own work, between next() calls
    assert mine.device.id == 0
    read = 1
    for X, Y in itertools.islice(batches, 2):
        assert X.device.id == 1 and fakecupy.state.current == 0
        read += 1
    assert read == 3
    batches.close()  # a half-read pass closed: its pipeline stops (on device 1), and device 0 stays current
    assert fakecupy.state.current == 0


def test_a_cuda_1_iterables_factory_is_called_with_device_1_current(fake_cupy):
    """A callable epoch -> iterable of a cuda:1 source, whose batches are read with device 0 current, is called
    with device 1 current: a factory that makes its device arrays at once makes them on the source's device. It
    was called on the consumer's device (the pieces then crossed devices, refused here)."""
    import gpunn

    called_on = []

    def pieces(epoch):
        called_on.append(fakecupy.state.current)
        return [(fake_cupy.full((20, 3), epoch + i, "float64"), fake_cupy.full((20, 1), -i, "float64"))
                for i in range(3)]

    # rows and widths given: the source reads no piece to count them (made before it knows its device)
    source = gpunn.data.iterable(pieces, rows=60, n_features=3, n_outputs=1).bind("cuda:1", "float64")
    for epoch in (0, 1):
        batches = source.batches(epoch, 32)
        X, Y = next(batches)
        assert X.device.id == 1 and fakecupy.state.current == 0
        assert len(list(batches)) == 1  # 60 rows in batches of 32
    assert called_on == [1, 1]


@pytest.mark.parametrize("given", ["callable", "iterator"])
def test_a_cuda_1_iterables_pass_closed_early_closes_your_iterator_with_device_1_current(fake_cupy, given):
    """A cuda:1 iterable source's pass, read with device 0 current and closed half-read, closes the iterator it
    read (a generator's finally runs, with device 1 current, as every other step of the pass) and leaves device 0
    current. The callable's generator was closed when the collector took it, with device 0 current; a one-shot
    iterator was never closed (the source holds it)."""
    import gpunn

    closed_on = []

    def pieces(epoch=0):
        try:
            for i in range(3):
                yield fake_cupy.full((20, 3), i, "float64"), fake_cupy.full((20, 1), -i, "float64")
        finally:
            closed_on.append(fakecupy.state.current)

    with gpunn.backend.resolve("cuda:1").use():  # (a one-shot iterator's first piece is read by the constructor)
        made = pieces if given == "callable" else pieces()
        source = gpunn.data.iterable(made, rows=60, n_features=3, n_outputs=1).bind("cuda:1", "float64")
    batches = source.batches(0, 20)
    next(batches)
    batches.close()
    assert closed_on == [1] and fakecupy.state.current == 0


@pytest.mark.parametrize("device", ["cpu", "cuda:1"])
def test_made_on_device_passes_send_throw_and_close_to_the_iterator_with_its_device_current(fake_cupy, device):
    """Backend.made_on_device(items) is ``items`` itself on the CPU, so send(), throw() and close() reach it; on a
    GPU they reach it too (as through a ``yield from``), each with the backend's device current, the consumer's
    current again after, and so is ``items`` closed when it is dropped unclosed. The GPU's wrapper took a value sent
    as next() (None reached items) and raised a thrown error itself, closing items, which never saw it."""
    from gpunn import backend

    inside = 1 if device == "cuda:1" else 0  # (on the CPU no device is made current)
    seen, started = [], []

    def items():
        try:
            started.append(fakecupy.state.current)  # (the first next() runs this far)
            while True:
                try:
                    seen.append(((yield len(seen)), fakecupy.state.current))
                except KeyError as exc:
                    seen.append((exc.args[0], fakecupy.state.current))
        finally:
            seen.append(("closed", fakecupy.state.current))

    made = backend.resolve(device).made_on_device(items())
    assert next(made) == 0 and made.send("sent") == 1 and made.throw(KeyError("thrown")) == 2
    assert fakecupy.state.current == 0
    made.close()
    assert seen == [("sent", inside), ("thrown", inside), ("closed", inside)] and fakecupy.state.current == 0
    assert started == [inside]  # next() too
    made = backend.resolve(device).made_on_device(items())
    next(made)
    del made  # dropped unclosed (a loop left by a break): items is closed so too
    assert seen[-1] == ("closed", inside) and fakecupy.state.current == 0


@pytest.mark.parametrize("device", ["cpu", "cuda:1"])
def test_to_host_gives_a_device_array_as_a_numpy_array_of_its_values(fake_cupy, device):
    """Backend.to_host: a GPU backend's array copied to the host, a NumPy array (the one host synchronisation of an
    epoch's losses); the CPU's array itself."""
    from gpunn import backend

    on = backend.resolve(device)
    with on.use():
        values = on.xp.arange(6.0).reshape(2, 3)
    got = on.to_host(values)
    assert type(got) is numpy.ndarray and backend.is_device_array(values) == (device != "cpu")
    numpy.testing.assert_array_equal(got, numpy.arange(6.0).reshape(2, 3))
    if device == "cpu":
        assert got is values


def test_a_cuda_1_pass_alive_at_the_interpreters_exit_is_closed_with_device_1_current_without_a_word():
    """A python process that exits with a cuda:1 pass half-read (made_on_device's iterator), in __main__ or held by
    a module imported before cupy and gpunn (the teardown of modules clears that one's names after theirs): each
    is closed with device 1 current, nothing on stderr. Its __del__ ran during the teardown, cupy's names None:
    "Exception ignored in: <function _MadeOnDevice.__del__ ...> AttributeError: 'NoneType' object has no
    attribute 'Device'", and the items closed later with device 0 current, or not at all."""
    import os
    import pathlib
    import sys
    import textwrap

    import waiting

    tests = pathlib.Path(__file__).parent
    code = textwrap.dedent("""
        import os, sys
        import fakecupy
        sys.modules["cupy"], sys.modules["cupyx"] = fakecupy, fakecupy.cupyx
        sys.modules.update(fakecupy._backends_modules())
        from gpunn import backend

        def items(where, state=fakecupy.state, out=sys.__stdout__):  # (names bound now: __main__'s are cleared)
            try:
                yield from range(3)
            finally:
                out.write(f"{where} closed with device {state.current} current\\n")

        in_main = backend.resolve("cuda:1").made_on_device(items("in __main__"))
        os.kept = [backend.resolve("cuda:1").made_on_device(items("held by os"))]
        next(in_main), next(os.kept[0])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    done = waiting.run([sys.executable, "-c", code], env=env, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert sorted(done.stdout.splitlines()) == ["held by os closed with device 1 current",
                                                "in __main__ closed with device 1 current"]


def _in_memory_cuda_1_source(kind, shuffle):
    """An in-memory source of 70 rows on cuda:1, made with device 1 current (as fit makes it)."""
    from gpunn import backend
    from gpunn.distributed.shard import PieceOfEachBatch, ShardedArraySource
    from gpunn.training.ensemble import BootstrapSource
    from gpunn.training.sources import ArraySource

    gpu1 = backend.resolve("cuda:1")
    with gpu1.use():
        X = gpu1.xp.asarray(numpy.arange(140, dtype="float64").reshape(70, 2))
        Y = gpu1.xp.asarray(numpy.arange(70, dtype="float64").reshape(70, 1))
        if kind == "arrays":
            return ArraySource(X, Y, gpu1, seed=3, shuffle=shuffle)
        if kind == "bootstrap":
            return BootstrapSource(X, Y, gpu1, 2, seed=3, shuffle=shuffle)
        if kind == "sharded arrays":
            return ShardedArraySource(gpu1, X, Y, rank=1, size=2, seed=3, shuffle=shuffle)
        inner = (BootstrapSource(X, Y, gpu1, 2, seed=3, shuffle=shuffle) if kind == "piece of bootstrap"
                 else ArraySource(X, Y, gpu1, seed=3, shuffle=shuffle))
        return PieceOfEachBatch(inner, rank=1, size=2, batch_size=8)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("kind", ["arrays", "bootstrap", "sharded arrays", "piece of arrays", "piece of bootstrap"])
def test_in_memory_cuda_1_sources_make_their_batches_on_device_1_whatever_device_is_current(fake_cupy, kind,
                                                                                           shuffle):
    """ArraySource, BootstrapSource, ShardedArraySource and PieceOfEachBatch (of either) on cuda:1, iterated by hand
    with device 0 current: each batch is gathered on device 1 (the batches read with device 1 current), and device
    0 stays current between next() calls. Their shuffle and gathers ran on the current device: a device mismatch
    (CuPy 14: 'Peer access is unavailable between these devices'), or a permutation drawn on device 0."""
    source = _in_memory_cuda_1_source(kind, shuffle)
    with source.source.backend.use() if kind.startswith("piece") else source.backend.use():
        expected = [(X.get(), Y.get()) for X, Y in source.batches(1, 8, first_batch=1)]
    got = []
    batches = source.batches(1, 8, first_batch=1)
    for X, Y in batches:
        assert X.device.id == Y.device.id == 1 and fakecupy.state.current == 0
        assert fake_cupy.ones(1).device.id == 0  # the consumer's own work, between next() calls
        got.append((X.get(), Y.get()))
    assert len(got) == len(expected) > 1
    for (X, Y), (eX, eY) in zip(got, expected):
        numpy.testing.assert_array_equal(X, eX)
        numpy.testing.assert_array_equal(Y, eY)
    half_read = source.batches(2, 8)
    next(half_read)
    half_read.close()
    assert fakecupy.state.current == 0


@pytest.mark.parametrize("path", ["generated", "copied"])
@pytest.mark.parametrize("device_0_for", ["release", "everything"])
def test_a_pass_on_cuda_1_keeps_to_device_1_whatever_device_is_current(fake_cupy, path, device_0_for):
    """gpunn.data.pipeline's passes on cuda:1 driven with device 0 current: the consumer reads each window with
    device 1 current (on device 1's null stream, its training stream) and calls release() with device 0 current,
    and, for "everything", asks for the next window with device 0 current too. The pass took the null stream at its
    start and recorded on it later, which CUDA resolves to the *current* device's null stream: release() ordered
    the reuse of a window's memory after device 0's work, not after the consumer's reads on device 1 (a
    StreamOrderError here); and a pass resumed with device 0 current entered its device-1 side stream there
    (refused, as in CuPy) or made its device buffers on device 0."""
    from gpunn import backend
    from gpunn.data.pipeline import generated_windows, host_windows

    cp, gpu1, windows = fake_cupy, backend.resolve("cuda:1"), [1, 2, 3, 4]
    if path == "generated":
        def generate(w):  # each output written by the op that makes it, on the side stream
            return cp.full((4, 2), w, "float32"), cp.full((4, 1), -w, "float32")
        passes = generated_windows(gpu1, windows, generate)
    else:
        def fill(w, X, Y):
            X[:4], Y[:4] = w, -w
            return 4
        passes = host_windows(gpu1, windows, fill, 4, 2, 1, "float32")
    copies = []
    while True:
        with gpu1.use() if device_0_for == "release" else cp.cuda.Device(0):
            item = next(passes, None)
        if item is None:
            break
        X, Y, release = item
        assert X.device.id == 1 and fakecupy.state.current == 0
        with gpu1.use():
            copies.append((X.copy(), Y.copy()))  # no host read here: it would order everything before it
        del X, Y, item
        release()
    with gpu1.use():
        assert [(float(X[0, 0]), float(Y[-1, 0])) for X, Y in copies] == [(w, -w) for w in windows]
    assert fakecupy.state.current == 0


def test_a_second_generated_pass_on_cuda_1_started_with_device_0_current_waits_for_the_first_ones_reads(fake_cupy):
    """A generated pass orders its first generation after the windows an earlier pass gave were read (their memory
    goes back to the side stream's arena, which hands it to the next allocation there at once): it records the
    training stream when it starts, with its backend's device current. With device 0 current it recorded device 0's
    null stream, and the second pass's first window was written over memory device 1's reads of the first pass's
    last window were not known to be done with (mut20 D04: a StreamOrderError)."""
    from gpunn import backend
    from gpunn.data.pipeline import generated_windows

    cp, gpu1 = fake_cupy, backend.resolve("cuda:1")

    def generate(w):
        X, Y = cp.empty((4, 2), "float32"), cp.empty((4, 1), "float32")
        X.fill(w), Y.fill(-w)
        return X, Y

    copies = []
    for windows in ([1, 2], [3, 4]):
        passes = generated_windows(gpu1, windows, generate)
        while True:
            with cp.cuda.Device(0):
                item = next(passes, None)
            if item is None:
                break
            X, Y, release = item
            with gpu1.use():
                copies.append((X.copy(), Y.copy()))  # (no host read: it would order everything before it)
            del X, Y, item
            release()
    with gpu1.use():
        assert [(float(X[0, 0]), float(Y[-1, 0])) for X, Y in copies] == [(w, -w) for w in [1, 2, 3, 4]]


def test_a_generated_pass_on_cuda_1_stopped_with_device_0_current_has_device_1_wait_for_its_generation(fake_cupy):
    """A generated pass stopped part-way has the next window's generation in flight, reading the task's constants:
    the training stream waits for it, so what it frees next is not reused under that read. Stopped with device 0
    current, that wait went to device 0's null stream, and device 1's reuse of the freed constants was not ordered
    after the generation's read (mut20 D08: a StreamOrderError)."""
    from gpunn import backend
    from gpunn.data.pipeline import generated_windows

    cp, gpu1 = fake_cupy, backend.resolve("cuda:1")
    with gpu1.use():
        constants = cp.ones((4, 2), "float32")  # on device 1's null stream, the training stream

    def generate(w):
        return constants * w, constants[:, :1] * -w

    passes = generated_windows(gpu1, [1, 2, 3], generate)
    with gpu1.use():
        X, Y, release = next(passes)
        first = X.copy()
    del X, Y
    release()
    with cp.cuda.Device(0):
        passes.close()  # window 2's generation still in flight
    with gpu1.use():
        del constants
        reused = cp.empty((4, 2), "float32")  # the freed block, handed on at once
        reused.fill(5)
        assert float(first[0, 0]) == 1 and float(reused[0, 0]) == 5


def test_cli_train_and_predict_on_cuda_1(fake_cupy, tmp_path, capsys):
    from gpunn import cli

    save = str(tmp_path / "run.npz")
    code = cli.main(["train", "--device", "cuda:1", "--rows", "800", "--features", "4", "--hidden", "8",
                     "--epochs", "2", "--quiet", "--save", save])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "cuda:1 (Fake GPU 1" in out.out and "held-out: mse" in out.out
    numpy.save(tmp_path / "in.npy", numpy.ones((3, 4), "float32"))
    assert cli.main(["predict", save, str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--device", "cuda:1"]) == 0
    assert numpy.load(tmp_path / "out.npy").shape == (3, 1)
    for extra in (["--standardize"], ["--stream", "on", "--window", "256"]):  # in memory, and gpunn.data's stream
        code = cli.main(["train", "--device", "cuda:1", "--rows", "800", "--features", "4", "--hidden", "8",
                         "--epochs", "2", "--quiet", *extra])
        out = capsys.readouterr()
        assert code == 0 and "held-out" in out.out, (extra, out.err)


def test_cli_predict_score_and_keep_on_cuda_1(fake_cupy, tmp_path, capsys):
    """gpunn predict --score --keep on the CuPy path: the one pass's predictions copied to the host a piece at a time
    as evaluate's sums add up on the device, beside IN's kept column, and the metrics evaluate(source)'s."""
    pytest.importorskip("pyarrow")
    import gpunn
    from gpunn import cli, datasets

    X, Y = datasets.make("linear", 600, 3, seed=4, device="cpu")
    numpy.savetxt(tmp_path / "t.csv", numpy.column_stack([numpy.arange(600), X, Y[:, 0]]), delimiter=",",
                  header="id,a,b,c,y", comments="", fmt=["%d", "%.17g", "%.17g", "%.17g", "%.17g"])
    save = str(tmp_path / "m.npz")
    assert cli.main(["train", "--device", "cuda:1", "--data", str(tmp_path / "t.csv"), "--target", "y", "--features",
                     "a,b,c", "--hidden", "8", "--epochs", "2", "--quiet", "--save", save]) == 0
    capsys.readouterr()
    model = gpunn.load(save, device="cuda:1")
    with gpunn.data.csv(tmp_path / "t.csv", target=["y"], features=["a", "b", "c"]) as source:
        predicted, metrics = model.predict(source).get()[:, 0], model.evaluate(source)
    import pyarrow.parquet as pq

    # (a CSV OUT takes the device's rows too, by tolist(), a synchronous read CuPy allows; a Parquet OUT's columns
    # are NumPy arrays, which CuPy's arrays are refused as: each piece copied to the host first)
    for out_name in ("p.csv", "p.parquet"):
        assert cli.main(["predict", save, str(tmp_path / "t.csv"), str(tmp_path / out_name), "--device", "cuda:1",
                         "--score", "--keep", "id", "--json", str(tmp_path / "s.json"), "--overwrite"]) == 0
        assert "on cuda:1" in capsys.readouterr().out
        out = pq.read_table(tmp_path / out_name).to_pandas() if out_name.endswith(".parquet") else \
            numpy.loadtxt(tmp_path / out_name, delimiter=",", skiprows=1)
        out = numpy.asarray(out, "float64")
        numpy.testing.assert_array_equal(out[:, 1].astype("float32"), predicted)
        assert out[:, 0].tolist() == list(range(600))
        assert json.loads((tmp_path / "s.json").read_text())["score"]["mse"] == metrics["mse"]


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # the row made to overflow
def test_evaluate_on_cuda_1_names_the_row_whose_output_overflows_as_on_the_cpu(fake_cupy):
    """evaluate's no-score path predicts the rows again on the model's device to name the first bad row
    (metrics.unscored): on cuda:1 too, under the model's device (model._scored's backend.use(); without it the rows
    were predicted under device 0, a mutation no CPU test saw)."""
    import gpunn
    from gpunn import datasets

    X, Y = datasets.make("teacher", 50, 3, 1, device="cpu", seed=1)
    X, Y = numpy.asarray(X), numpy.asarray(Y)
    X_val = X[40:].copy()
    X_val[3] = 3e38  # finite in float32; the output overflows
    model = gpunn.MLP([3, 8, 1], device="cuda:1", seed=0)
    model.fit(X[:40], Y[:40], epochs=1, batch_size=8, verbose=False)
    with pytest.raises(gpunn.ValidationNotFinite, match=r"predict\(X\) is NaN or infinite \(1 value, the first at "
                                                        r"row 3 of X, column 0\) while the weights are finite"):
        model.evaluate(X_val, Y[40:])


def test_shuffled_training_gathers_on_the_device(fake_cupy):
    from gpunn import MLP, datasets

    X, Y = datasets.make("linear", 500, 4, 1, seed=1, device="cuda", dtype="float32")
    model = MLP([4, 32, 1], device="cuda", seed=0)
    history = model.fit(X, Y, epochs=15, batch_size=50, lr=1e-2, verbose=False)
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert model.score(X, Y) > 0.9


def test_the_gpu_benchmarks_run_on_the_cupy_path(fake_cupy, tmp_path, capsys, monkeypatch):
    """What gpu_check.sh runs on the GPU, through the stand-in: the kernel benchmark (fused vs unfused,
    the copy per size) and gpunn bench's GPU rows (the default CUDA graph in float32, tf32 and bf16, and the
    eager step), timed on nothing real."""
    import json

    from gpunn import backend, bench
    from gpunn.bench import kernels as kb

    kb.main(["--device", "cuda", "--sizes", "10,11", "--repeat", "2", "--json", str(tmp_path / "k.json")])
    rows = json.loads((tmp_path / "k.json").read_text())["rows"]
    assert {r["elements"] for r in rows} == {1024, 2048} and all("fused_speedup" in r for r in rows)
    assert "device-to-device copy at 2^11" in capsys.readouterr().out
    from gpunn.bench import runners

    monkeypatch.setattr(runners, "_dataset_rows", lambda cfg, backend: 4 * cfg.batch)  # small for NumPy
    monkeypatch.setattr(runners, "measure_gemm", lambda *a, **k: 1e9)  # a 4096^3 product takes seconds here
    variants = [("tf32", None), ("bf16", None), ("float32", False)]
    data = bench.run([bench.QUICK_CONFIG], [backend.resolve("cuda")], peers=["naive"], repeats=1, seconds=0.001,
                     variants=variants, log=lambda msg: None)
    rows = data["results"]
    labels = [r["label"] for r in rows]
    assert len(labels) == 5 and data["complete"] and data["setup"]["peak_gemm_gflops"]["cuda:0"] > 0, labels
    # the default rows ran as CUDA graphs, the eager row did not and carries the profile and graph/eager ratio
    assert [r["graph"] for r in rows] == ["graph", "graph", "graph", "eager", ""], labels
    assert labels[0] == "gpunn (cuda:0) graph" and labels[3] == "gpunn (cuda:0) eager"
    assert rows[0]["profile"] is None and rows[3]["profile"] is not None and rows[3]["graph_speedup"] > 0
    assert "CUDA graph vs eager step" in bench.graph_note(rows) and "tiny float32" in bench.graph_note(rows)
    assert {"32F_FAST_TF32", "32F"} <= set(fakecupy.state.gemms)  # tf32 and bf16 went through gemmEx


def test_the_kernel_benchmark_times_the_fused_ops_and_their_speedup_over_the_unfused(fake_cupy, monkeypatch):
    """On the GPU a row's seconds and GB/s are CupyOps' fused kernels', its fused_speedup unfused / fused (each op
    and the timer replaced: 1 s fused, 4 s unfused)."""
    from gpunn.bench import kernels as kb

    monkeypatch.setattr(kb, "cases", lambda backend, ops, n, dtype: [("op", ops, 1000)])
    monkeypatch.setattr(kb, "timer", lambda backend, fn, repeat: (4.0, 1.0)[fn.fused] if hasattr(fn, "fused") else 0.5)
    row, = kb.run("cuda", (10,), repeat=1)["rows"]
    assert (row["seconds"], row["unfused_seconds"], row["fused_speedup"]) == (1.0, 4.0, 4.0)
    assert row["gb_per_s"] == 1000 / 1.0 / 1e9


# ---- CUDA graphs: stream capture and replay ----------------------------------------------------

def _sgd_args(cp, w, g, lr):
    return (w, g, numpy.uintp(0), numpy.float32(lr), numpy.float32(0), numpy.float32(0), numpy.int32(0),
            numpy.int64(w.size))


def test_a_captured_graph_records_launches_and_replays_them(fake_cupy):
    """Nothing runs while capturing; each graph launch runs the recorded kernels and memsets on the memory
    at the captured addresses, with the scalars' values at capture."""
    from gpunn.ops import kernels as gk

    kernel = gk.get_kernel("sgd_step", "float32")
    w, g = fake_cupy.ones(4, "float32"), fake_cupy.full(4, 2.0, "float32")
    s = fake_cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        kernel((1,), (32,), _sgd_args(fake_cupy, w[1:], g[1:], 0.25))  # a view: its offset is kept
        g.data.memset_async(0, 4)  # g[0] = 0 after the launch
        graph = s.end_capture()
    numpy.testing.assert_array_equal(w.get(), [1, 1, 1, 1])  # nothing ran yet
    graph.launch(s)
    graph.launch(s)
    s.synchronize()  # before the host reads what the graph wrote on s (fakecupy.ordering checks it)
    numpy.testing.assert_array_equal(w.get(), [1, 0, 0, 0])  # 1 - 2 x 0.25 x 2
    numpy.testing.assert_array_equal(g.get(), [0, 2, 2, 2])
    assert fakecupy.state.captures == 1 and fakecupy.state.graph_launches == 2
    with pytest.raises(fake_cupy.CUDARuntimeError, match="legacy null stream"):
        fake_cupy.cuda.Stream.null.begin_capture()
    with s:  # a wrong launch is refused when captured, not at the first replay
        s.begin_capture()
        with pytest.raises(fk.LaunchError, match="needs exactly numpy.float32"):
            kernel((1,), (32,), (w, g, numpy.uintp(0), 0.5) + _sgd_args(fake_cupy, w, g, 0)[4:])
        s.end_capture()


def test_work_on_the_legacy_stream_is_refused_while_a_blocking_stream_captures_and_runs_beside_a_non_blocking_one(
        fake_cupy):
    """As CUDA: the legacy stream waits for every stream made without non_blocking, so work for it while such a
    stream captures would depend on the capture (cudaErrorStreamCaptureImplicit). Beside a non-blocking stream's
    capture (gpunn's, graph.capture_resources) the legacy stream's work runs."""
    for non_blocking in (False, True):
        s = fake_cupy.cuda.Stream(non_blocking=non_blocking)
        s.begin_capture()
        try:
            if non_blocking:
                assert float(fake_cupy.ones(4, "float32").sum()) == 4.0
            else:
                with pytest.raises(fake_cupy.CUDARuntimeError, match="StreamCaptureImplicit"):
                    fake_cupy.ones(4, "float32")
        finally:
            s.end_capture()


@pytest.mark.parametrize("what, run", [
    ("CuPy's ufunc add", lambda cp, a, out, blas: a + 1),
    ("allocation", lambda cp, a, out, blas: cp.asarray(numpy.ones(2))),
    ("copy to the host", lambda cp, a, out, blas: a.get()),
    (r"float\(\)", lambda cp, a, out, blas: float(a[:1].reshape(()))),
    ("CuPy's binding", lambda cp, a, out, blas: blas.gemm(a.reshape(2, 2), a.reshape(2, 2), out, "tf32")),
    ("cuRAND generator created", lambda cp, a, out, blas: cp.random.RandomState(0)),
    ("CuPy's fill", lambda cp, a, out, blas: out.fill(0)),
    ("an event recorded on the capturing stream", lambda cp, a, out, blas: cp.cuda.get_current_stream().record()),
    # an event of work outside the capture: CUDA refuses the dependency (cudaErrorStreamCaptureIsolation)
    ("a wait for an event", lambda cp, a, out, blas: cp.cuda.get_current_stream().wait_event(
        cp.cuda.Stream(non_blocking=True).record())),
])
def test_what_a_captured_step_must_not_do_invalidates_the_capture(fake_cupy, what, run):
    from gpunn.ops.cublas import CupyBlas

    a, out = fake_cupy.ones(4, "float32"), fake_cupy.empty((2, 2), "float32")
    s = fake_cupy.cuda.Stream()
    with s:
        s.begin_capture()
        with pytest.raises(fake_cupy.CUDARuntimeError, match=f"{what}.*while a stream is being captured"):
            run(fake_cupy, a, out, CupyBlas())
        with pytest.raises(fake_cupy.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated"):
            s.end_capture()


def test_stream_order_is_checked_as_cuda_and_cupys_pools_need_it(fake_cupy):
    """fakecupy.ordering: work on one stream that touches memory another stream's unfinished work uses fails,
    unless an event wait (or a host synchronisation, or the legacy null stream's implicit waits) orders it;
    a fresh allocation is ordered after the work issued before it on its stream (CuPy's pool may hand it a
    block that work still uses); a pinned buffer freed, or written again, while a copy from it may be in
    flight is a hazard."""
    import gc

    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    side = cp.cuda.Stream(non_blocking=True)
    x = cp.zeros(8, "float32")  # made on the null stream
    with pytest.raises(ordering.StreamOrderError, match="memory pool hands a block freed on the null stream"):
        x.set(numpy.ones(8, "float32"), stream=side)  # side has not waited for the null stream's work
    side.wait_event(null.record())
    x.set(numpy.ones(8, "float32"), stream=side)
    with pytest.raises(ordering.StreamOrderError, match="wrote in its op"):
        x + 1  # the null stream reads what side writes, without waiting for it
    null.wait_event(side.record())
    y = x + 1
    with side, pytest.raises(ordering.StreamOrderError, match="memory pool hands a block"):
        y * 2  # y was made on the null stream after side's last wait
    side.synchronize()
    null.synchronize()  # the host saw everything: nothing is in flight
    with side:
        y * 2
    blocking = cp.cuda.Stream()  # a blocking stream and the legacy null stream wait for each other
    with blocking:
        z = y * 3
    assert float(z[0]) == 6.0
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    x.set(pinned, stream=side)
    del pinned
    gc.collect()
    assert any("pinned host buffer of 32 bytes was freed while a copy from it" in h for h in ordering.hazards)
    ordering.hazards.clear()
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    x.set(pinned, stream=side)
    side.record().synchronize()
    del pinned
    gc.collect()
    assert [h for h in ordering.hazards if "pinned" in h] == []
    # a pinned buffer written again before the host waited for the copy from it: that copy may read the new values
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    pinned[...] = 1
    x.set(pinned, stream=side)
    pinned[...] = 2  # the next window read into the same buffer, too early
    x.set(pinned, stream=side)
    assert any("pinned host memory (32 bytes) was written while a copy from it" in h for h in ordering.hazards)
    ordering.hazards.clear()
    done = side.record()
    done.synchronize()
    pinned[...] = 3  # after the wait: fine
    x.set(pinned, stream=side)
    side.synchronize()
    assert [h for h in ordering.hazards if "pinned" in h] == []
    ordering.hazards.clear()  # the hazards raised above were expected


@pytest.mark.parametrize("make", [
    "full", "concatenate", "arithmetic", "astype", "copy", "asarray from the host", "cuRAND draw", "array index"])
def test_an_op_making_its_output_in_a_block_another_stream_still_reads_is_a_hazard_at_that_op(fake_cupy, make):
    """CuPy allocates an op's output on the current stream, from that stream's arena of its pool, and the op's kernel
    writes it: a block freed there while another stream may still read it, taken over by the op, is written under
    that read. Flagged at the op, though nothing but the reading stream touches the new array afterwards (its own
    earlier read is no hazard to it); an ``empty`` array is flagged at its first write instead."""
    import gc

    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    side = cp.cuda.Stream(non_blocking=True)
    with side:
        operand = cp.arange(4, dtype="float32")
        rng = cp.random.RandomState(0)
        window = cp.full(8, 1.0, "float32")
    null.wait_event(side.record())
    total = window.sum()  # the null stream reads the window, and (release) gives it back before that read is done
    del window
    gc.collect()
    makers = {
        "full": lambda: cp.full(8, 2.0, "float32"),
        "concatenate": lambda: cp.concatenate([operand, operand]),
        "arithmetic": lambda: operand * 2,
        "astype": lambda: operand.astype("float64"),
        "copy": lambda: operand.copy(),
        "asarray from the host": lambda: cp.asarray(numpy.ones(8, "float32")),
        "cuRAND draw": lambda: rng.standard_normal(8, dtype="float32"),
        "array index": lambda: operand[[1, 0, 3]],
    }
    with side, pytest.raises(ordering.StreamOrderError, match=r"\(writing its new output\) on stream 0x\w+ writes "
                             "device memory allocated on stream .*not ordered after the null stream's work"):
        makers[make]()
    ordering.hazards.clear()  # the hazard raised above was expected
    null.wait_event(side.record())
    float(total)  # the null stream's work is done and the host knows it: the block is free to take over
    with side:
        makers[make]()  # no hazard now


_GATHERS = {
    "a[device index]": lambda a, idx: a[idx],
    "a[host list]": lambda a, idx: a[[1, 0, 3]],
    "a[:, device index]": lambda a, idx: a.reshape(1, 4)[:, idx],
    "take": lambda a, idx: a.take(idx),
    "permutation(array)": lambda a, idx: _permutation_of(a),
}


def _permutation_of(a):
    import cupy

    return cupy.random.RandomState(0).permutation(a)


@pytest.mark.parametrize("gather", list(_GATHERS))
@pytest.mark.parametrize("unordered", ["source", "index"])
def test_an_array_index_reads_its_source_and_index_in_stream_order(fake_cupy, gather, unordered):
    """An array index is a gather kernel on the current stream (CuPy's _take): reading an array another stream
    wrote, or a device index another stream wrote, needs that stream's event waited for, as any kernel does.
    Ints and slices make views, and launch nothing."""
    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    side = cp.cuda.Stream(non_blocking=True)
    source, index = cp.arange(4, dtype="float32"), cp.asarray(numpy.array([3, 1, 0]))
    if gather in ("a[host list]", "permutation(array)") and unordered == "index":
        pytest.skip("no device index to write")
    side.wait_event(null.record())
    with side:
        (source if unordered == "source" else index).fill(2 if unordered == "index" else 5)
        source[1:3]  # a view: no read, so no hazard even here
    with pytest.raises(ordering.StreamOrderError, match=r"CuPy's (indexing \(a gather\)|take) on the null stream reads"):
        _GATHERS[gather](source, index)
    ordering.hazards.clear()  # the hazard raised above was expected
    null.wait_event(side.record())
    _GATHERS[gather](source, index)  # ordered now


@pytest.mark.parametrize("gather", list(_GATHERS))
@pytest.mark.parametrize("elsewhere", ["source", "index"])
def test_an_array_index_reads_only_arrays_of_the_current_device(fake_cupy, gather, elsewhere):
    """CuPy launches a gather on the current device: an array or device index of another device is refused there
    (without peer access, CuPy 14's ValueError). A view (ints, slices) of another device's array is not."""
    cp = fake_cupy
    if gather in ("a[host list]", "permutation(array)") and elsewhere == "index":
        pytest.skip("no device index")
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32"), cp.asarray(numpy.array([3, 1, 0]))
    here = cp.arange(4, dtype="float32"), cp.asarray(numpy.array([3, 1, 0]))
    source, index = (there[0], here[1]) if elsewhere == "source" else (here[0], there[1])
    assert source[1:3].device.id == source.device.id  # a view: allowed from any device
    with pytest.raises(ValueError, match="current device"):
        _GATHERS[gather](source, index)
    with cp.cuda.Device(1):
        _GATHERS[gather](*there)  # its own device current: fine


def test_an_array_index_written_into_reads_its_device_index_in_stream_order(fake_cupy):
    """a[idx] = v is a scatter kernel: it reads the device index, and another stream's write of it needs
    waiting for; an index of another device is refused."""
    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    side = cp.cuda.Stream(non_blocking=True)
    target, index = cp.zeros(4, "float32"), cp.asarray(numpy.array([3, 1]))
    side.wait_event(null.record())
    with side:
        index.fill(2)
    with pytest.raises(ordering.StreamOrderError, match="CuPy's __setitem__ on the null stream reads"):
        target[index] = 1.0
    ordering.hazards.clear()
    null.wait_event(side.record())
    target[index] = 1.0
    with cp.cuda.Device(1):
        elsewhere = cp.asarray(numpy.array([0]))
    with pytest.raises(ValueError, match="current device"):
        target[elsewhere] = 1.0
    assert target.get().tolist() == [0, 0, 1, 0]


def test_a_host_index_is_copied_to_the_device_as_cupy_array_copies_it_straight_from_pinned_memory(fake_cupy):
    """CuPy copies a NumPy index to the device first (cupy.array, on the current stream): from pinned memory, an
    asynchronous copy straight from the buffer (which CuPy keeps alive until it is done), so the host must not write
    the buffer before it has waited for that copy; freeing it is no hazard. ``cupy.asarray`` copies so too."""
    import gc

    import fakecupy
    from fakecupy import ordering

    cp = fake_cupy
    side = cp.cuda.Stream(non_blocking=True)
    a = cp.arange(4, dtype="float32")
    side.wait_event(cp.cuda.Stream.null.record())
    index = fakecupy.cupyx.empty_pinned((2,), "int64")
    index[...] = [3, 1]
    with side:
        taken = a[index]
    index[...] = [0, 0]  # the next permutation written into the buffer, before the host waited for the copy
    ordering.settle()
    assert any("pinned host memory (16 bytes) was written while a copy from it" in h for h in ordering.hazards)
    ordering.hazards.clear()
    side.synchronize()
    assert taken.get().tolist() == [3, 1]
    with side:
        a[index], cp.asarray(index)
    del index
    gc.collect()
    side.synchronize()
    assert ordering.hazards == []  # freed in flight: CuPy keeps the buffer until its copy is done


def test_a_boolean_index_waits_on_the_host_for_the_current_stream_as_cupy_counts_it(fake_cupy):
    """CuPy sizes a boolean index's result with int() of a scan of it: the host waits for the current stream there,
    so work issued on another stream after it is ordered after that stream's work (an integer index waits for
    nothing). A host mask is copied to the device first."""
    from fakecupy import ordering

    cp = fake_cupy
    side = cp.cuda.Stream(non_blocking=True)
    a = cp.arange(4, dtype="float32")
    for index, waits in [(numpy.array([0, 2]), False), (numpy.array([True, False, True, False]), True),
                         (cp.asarray(numpy.array([True, False, True, False])), True)]:
        x = cp.zeros(4, "float32")  # written on the null stream
        taken = a[index]
        with side:
            if waits:
                x.fill(1)
            else:
                with pytest.raises(ordering.StreamOrderError, match="CuPy's fill on stream 0x"):
                    x.fill(1)
                ordering.hazards.clear()  # the hazard raised above was expected
        side.synchronize()
        assert taken.get().tolist() == [0, 2]


def test_a_host_value_stored_through_an_array_index_is_copied_to_the_device_and_refused_through_a_slice(fake_cupy):
    """CuPy's scatter takes a host value as cupy.array(value) (a copy to the device); through ints and slices it
    fills, which takes a scalar only: a host array that is not 0-d is refused (ValueError)."""
    cp = fake_cupy
    a = cp.zeros(4, "float32")
    a[numpy.array([1, 3])] = numpy.array([5.0, 7.0])
    a[numpy.array([True, False, False, False])] = [2.0]
    a[1:2] = numpy.array(9.0)  # 0-d: a fill
    assert a.get().tolist() == [2, 9, 0, 7]
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[...] = numpy.ones(4, "float32")
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[:2] = [1.0, 2.0]


# NumPy's C methods that bypass __array_function__ (found by calling each ndarray method on another device's
# array): each is a CuPy kernel on the current device and stream
_KERNEL_METHODS = {
    "argmax": lambda a: a.argmax(),
    "argmin": lambda a: a.argmin(axis=0),
    "argsort": lambda a: a.argsort(),
    "argpartition": lambda a: a.argpartition(1),
    "sort": lambda a: a.sort(),
    "partition": lambda a: a.partition(1),
    "repeat": lambda a: a.repeat(2),
    "nonzero": lambda a: a.nonzero(),
    "compress": lambda a: a.compress([True, False, True, True]),
    "searchsorted": lambda a: a.searchsorted(a[:2]),
    "dot": lambda a: a.dot(a),
    "put": lambda a: a.put([0], 7.0),
    "flatten": lambda a: a.flatten(),
    "ravel (a copy)": lambda a: a.reshape(2, 2).T.ravel(),
    "reshape (a copy)": lambda a: a.reshape(2, 2).T.reshape(4),
    "copy.copy": lambda a: __import__("copy").copy(a),
    # CuPy 14.1's byteswap, its choose and its round (NumPy's C method skips the ufunc for integers) are kernels too
    "byteswap": lambda a: a.byteswap(),
    "byteswap (in place)": lambda a: a.byteswap(True),
    "choose": lambda a: a.view("int32").choose(a[None], mode="clip"),
    "round (integers)": lambda a: a.view("int32").round(),
}


# CuPy's flatten, copying reshape/ravel and copy.copy take ndarray.copy, which copies another device's array to the
# current one
_COPIES_BETWEEN_DEVICES = ("flatten", "ravel (a copy)", "reshape (a copy)", "copy.copy")


@pytest.mark.parametrize("method", [m for m in _KERNEL_METHODS if m not in _COPIES_BETWEEN_DEVICES])
def test_an_array_method_that_launches_a_kernel_reads_only_arrays_of_the_current_device(fake_cupy, method):
    cp = fake_cupy
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32")
    with pytest.raises(ValueError, match="current device"):
        _KERNEL_METHODS[method](there)
    with cp.cuda.Device(1):
        _KERNEL_METHODS[method](there)  # its own device current: fine


def _written_on_a_side_stream(cp):
    """An array that a side stream (which waited for the null stream) wrote last, and that stream."""
    side = cp.cuda.Stream(non_blocking=True)
    a = cp.arange(4, dtype="float32")
    side.wait_event(cp.cuda.Stream.null.record())
    with side:
        a.fill(3)
    return a, side


@pytest.mark.parametrize("method", list(_KERNEL_METHODS))
def test_an_array_method_that_launches_a_kernel_reads_its_array_in_stream_order(fake_cupy, method):
    from fakecupy import ordering

    null = fake_cupy.cuda.Stream.null
    a, side = _written_on_a_side_stream(fake_cupy)
    with pytest.raises(ordering.StreamOrderError, match="on the null stream reads"):
        _KERNEL_METHODS[method](a)
    ordering.hazards.clear()  # the hazard raised above was expected
    null.wait_event(side.record())
    _KERNEL_METHODS[method](a)  # ordered now


def test_a_reshape_or_ravel_that_is_a_view_launches_nothing_and_is_allowed_on_any_device(fake_cupy):
    """CuPy reshapes a contiguous array as a view (no kernel), as a slice; only a copy is a kernel. A deepcopy
    copies with the array's own device current (cupy/_core/core.pyx, __deepcopy__)."""
    import copy

    cp = fake_cupy
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32")
    assert there.reshape(2, 2).device.id == there.ravel().device.id == there.reshape(-1).device.id == 1
    twin = copy.deepcopy(there)
    assert twin.device.id == 1 and twin.get().tolist() == [0, 1, 2, 3]
    assert str(there) == "[0. 1. 2. 3.]"  # CuPy's str(self.get()); NumPy's ran isfinite on the current device
    assert cp.cuda.Device().id == 0


@pytest.mark.parametrize("method", _COPIES_BETWEEN_DEVICES)
def test_flatten_or_a_copying_reshape_of_another_devices_array_copies_it_between_devices_as_cupy_does(fake_cupy,
                                                                                                       method):
    """CuPy's flatten, and a reshape or ravel that cannot be a view, take ndarray.copy (cupy/_core/core.pyx), which
    copies an array of another device to the current one: a cudaMemcpyAsync on the current device's stream, which
    CUDA orders after nothing on the array's device, so that device's work on it must have been waited for; a
    non-contiguous array is first made contiguous by a copy kernel on its own device, which nothing orders before
    that copy: CuPy's own race, always a hazard. A 1-d ravel copies with a kernel on the current device (refused)."""
    from fakecupy import ordering

    cp = fake_cupy
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32")  # written on device 1's null stream
    contiguous, strided = {"flatten": (there.flatten, there.reshape(2, 2).T.flatten),
                           "copy.copy": (lambda: __import__("copy").copy(there), there.reshape(2, 2).T.copy),
                           "ravel (a copy)": (None, there.reshape(2, 2).T.ravel),
                           "reshape (a copy)": (None, there.reshape(2, 2).T.reshape)}[method]
    args = (4,) if method == "reshape (a copy)" else ()
    if contiguous is not None:
        with pytest.raises(ordering.StreamOrderError, match=r"copy from device 1 \(cudaMemcpyAsync\) on the null "):
            contiguous()
        ordering.hazards.clear()  # the hazard raised above was expected
    cp.cuda.Device(1).synchronize()
    if contiguous is not None:
        copied = contiguous()
        assert copied.device.id == 0 and copied.get().tolist() == [0, 1, 2, 3]
    with pytest.raises(ordering.StreamOrderError, match="of what its copy kernel there wrote on the null stream"):
        strided(*args)
    ordering.hazards.clear()
    with pytest.raises(ValueError, match="current device"):
        there[::2].ravel()
    assert cp.cuda.Device().id == 0


# Each copies an array of another device to the current one (cupy/_core/core.pyx: ndarray.copy, and
# _array_from_cupy_ndarray for asarray/array, whatever copy= says; cupy/_creation/from_data.py: cupy.copy)
_COPIES_FROM_ANOTHER_DEVICE = {
    "a.copy()": lambda cp, a: a.copy(),
    "a.copy('F') of an F-ordered view": lambda cp, a: a.T.copy("F").T,
    "cupy.copy": lambda cp, a: cp.copy(a),
    "cupy.asarray": lambda cp, a: cp.asarray(a),
    "cupy.asarray(copy=False)": lambda cp, a: cp.asarray(a, copy=False),
    "cupy.array": lambda cp, a: cp.array(a),
    "cupy.array with a cast": lambda cp, a: cp.array(a, dtype="float64"),
}


@pytest.mark.parametrize("how", list(_COPIES_FROM_ANOTHER_DEVICE))
def test_a_copy_of_another_devices_array_copies_it_to_the_current_device_after_its_writes_were_waited_for(fake_cupy,
                                                                                                          how):
    """CuPy 14 copies an array of another device to the current one (a cudaMemcpyAsync on the current device's
    stream; peer access is enabled where possible but not needed, memory.pyx copy_from_device_async), and records
    no event: the copy is ordered after nothing on the array's device, so a hazard until that device's work was
    waited for (here, by the host)."""
    from fakecupy import ordering

    cp = fake_cupy
    with cp.cuda.Device(1):
        there = cp.arange(6, dtype="float32").reshape(2, 3)  # written on device 1's null stream
    copy = _COPIES_FROM_ANOTHER_DEVICE[how]
    with pytest.raises(ordering.StreamOrderError, match=r"copy from device 1 \(cudaMemcpyAsync\) on the null "):
        copy(cp, there)
    ordering.hazards.clear()  # the hazard raised above was expected
    cp.cuda.Device(1).synchronize()
    copied = copy(cp, there)
    assert copied.device.id == 0 and copied is not there and copied.get().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert copied.dtype == ("float64" if "cast" in how else "float32")
    copied += 1  # the copy is device 0's own memory, written in order there
    assert there.get().tolist() == [[0, 1, 2], [3, 4, 5]] and cp.cuda.Device().id == 0


def test_cupy_refuses_to_copy_an_array_contiguous_in_neither_order_between_devices_in_order_k(fake_cupy):
    """In order 'K' (cupy.asarray's and cupy.array's default, and copy(None)) CuPy's copy between devices keeps the
    array as it is (astype(copy=False)), and refuses one contiguous in neither C nor F order: "CuPy cannot copy
    non-contiguous array between devices." (NotImplementedError). In order 'C' it copies it with a kernel on its
    device first, which nothing orders before the copy (CuPy's own race: a hazard). An empty array is a new array
    on the current device: nothing to copy, nothing refused."""
    from fakecupy import ordering

    cp = fake_cupy
    with cp.cuda.Device(1):
        there = cp.arange(8, dtype="float32")
        empty = cp.zeros((0, 3), dtype="float32")
    cp.cuda.Device(1).synchronize()
    for copy in (lambda: cp.asarray(there[::2]), lambda: cp.array(there[::2]), lambda: cp.copy(there[::2]),
                 lambda: there.reshape(2, 2, 2).transpose(1, 0, 2).copy(None)):
        with pytest.raises(NotImplementedError, match="CuPy cannot copy non-contiguous array between devices"):
            copy()
    with pytest.raises(ordering.StreamOrderError, match="of what its copy kernel there wrote on the null stream"):
        cp.asarray(there[::2], order="C")
    ordering.hazards.clear()
    assert cp.asarray(there.reshape(2, 4).T).get().tolist() == there.get().reshape(2, 4).T.tolist()  # F-contiguous
    for copied in (empty.copy(), empty.flatten(), cp.asarray(empty)):
        assert copied.device.id == 0 and copied.shape in ((0, 3), (0,))


def test_asarray_of_an_array_of_the_current_device_launches_nothing_and_copy_false_refuses_a_needed_copy(fake_cupy):
    """cupy.asarray of an array of the current device that needs no copy returns it (nothing launched, so nothing
    read: no hazard while another stream writes it); copy=False refuses a copy it would need (a cast)."""
    a, side = _written_on_a_side_stream(fake_cupy)
    assert fake_cupy.asarray(a) is a and fake_cupy.asarray(a, dtype="float32", copy=False) is a
    with pytest.raises(ValueError, match="Unable to avoid copy while creating an array as requested"):
        fake_cupy.asarray(a, dtype="float64", copy=False)
    fake_cupy.cuda.Stream.null.wait_event(side.record())


@pytest.mark.parametrize("given", [{"casting": "unsafe"}, {"casting": "same_kind"}, {"subok": True},
                                   {"subok": False}, {"positional": ("K", "unsafe")}])
def test_astype_refuses_any_casting_or_subok_as_cupy_14_does(fake_cupy, given):
    """CuPy 14's astype takes casting=None, subok=None and refuses any other value, NumPy's defaults included
    (cupy/_core/core.pyx, _astype: "casting is not supported yet"), so code passing them fails on a GPU."""
    a = fake_cupy.arange(4, dtype="float32")
    given = dict(given)
    args = given.pop("positional", ())
    with pytest.raises(TypeError, match=f"{'subok' if 'subok' in given else 'casting'} is not supported yet"):
        a.astype("float64", *args, **given)
    assert a.astype("float64", "K", None, None, True).dtype == "float64"


def test_astype_copy_false_returns_an_array_that_fits_as_it_is_on_any_device_and_else_copies(fake_cupy):
    """CuPy 14's astype(copy=False) asks for no copy, never forbids one (cupy/_core/core.pyx: astype passes
    copy=None to _astype): the array itself where the dtype is its own and it fits the order ('K' always; 'C', 'F'
    or 'A' when contiguous so), with no device check and nothing launched, so nothing read in stream order; else a
    copy on the current device, whose copy kernel refuses another device's array, an empty one excepted (nothing to
    copy, so no kernel)."""
    cp = fake_cupy
    a, side = _written_on_a_side_stream(cp)  # side still writing it: a read on the null stream is a hazard
    assert a.astype("float32", copy=False) is a and a.astype("float32", order="C", copy=False) is a
    cp.cuda.Stream.null.wait_event(side.record())
    grid = cp.arange(6, dtype="float32").reshape(2, 3)
    for order, view in (("C", grid.T), ("F", grid), ("A", grid[:, ::2]), ("C", grid[:, ::2])):
        copied = view.astype("float32", order=order, copy=False)
        assert copied is not view and copied.get().tolist() == view.get().tolist()
        assert copied.flags.f_contiguous if order == "F" else copied.flags.c_contiguous
    for order, view in (("K", grid[:, ::2]), ("F", grid.T), ("A", grid.T)):
        assert view.astype("float32", order=order, copy=False) is view
    with cp.cuda.Device(1):
        there = cp.arange(6, dtype="float32").reshape(2, 3)
        empty = cp.zeros((0, 3), dtype="float32")
    for fits in ("K", "C", "A"):
        assert there.astype("float32", order=fits, copy=False) is there
    transposed = there.T
    assert transposed.astype("float32", order="F", copy=False) is transposed
    for needs_a_kernel in (lambda: there.astype("float32", order="F", copy=False),
                           lambda: there.astype("float64", copy=False), lambda: there.astype("float32")):
        with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
            needs_a_kernel()
    cast = empty.astype("float64")
    assert cast.device.id == 0 and cast.shape == (0, 3) and cast.dtype == "float64"


def test_ascontiguousarray_returns_a_c_contiguous_array_of_its_dtype_as_it_is_on_any_device(fake_cupy):
    """CuPy 14's ascontiguousarray (cupy/_core/core.pyx) returns an array already C-contiguous, of the dtype asked
    for, as it is, whatever its device, launching nothing (so nothing read in stream order); a 0-d one raveled (a
    view); else a copy kernel on the current device, which refuses another device's array and reads in stream
    order. It takes device arrays only (a Cython-typed argument)."""
    from fakecupy import ordering

    cp = fake_cupy
    a, side = _written_on_a_side_stream(cp)
    assert cp.ascontiguousarray(a) is a and cp.ascontiguousarray(a, dtype="float32") is a
    with pytest.raises(ordering.StreamOrderError, match="ascontiguousarray on the null stream reads"):
        cp.ascontiguousarray(a.reshape(2, 2).T)
    ordering.hazards.clear()  # the hazard raised above was expected
    cp.cuda.Stream.null.wait_event(side.record())
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32")
    assert cp.ascontiguousarray(there) is there and cp.ascontiguousarray(there, "float32") is there
    scalar = cp.ascontiguousarray(there[1])
    assert scalar.shape == (1,) and scalar.base is not None and scalar.device.id == 1 and scalar.get().tolist() == [1]
    for needs_a_kernel in (lambda: cp.ascontiguousarray(there.reshape(2, 2).T),
                           lambda: cp.ascontiguousarray(there, "float64")):
        with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
            needs_a_kernel()
    copied = cp.ascontiguousarray(a.reshape(2, 2).T)
    assert copied.flags.c_contiguous and copied.get().tolist() == [[3, 3], [3, 3]]
    for host in (numpy.zeros(2, "float32"), [1.0, 2.0]):
        with pytest.raises(TypeError, match=r"Argument 'a' has incorrect type \(expected cupy._core.core._ndarray_base"):
            cp.ascontiguousarray(host)


def test_copying_an_empty_array_reads_nothing_as_cupy_launches_nothing(fake_cupy):
    """CuPy 14's ndarray.copy of an empty array is astype's new array, filled by nothing; ascontiguousarray of one
    needing a cast runs the copy ufunc, which checks the array's device and returns before launching (no elements):
    neither reads the array in stream order (here an empty view of one a side stream still writes) nor counts a
    kernel; another device's empty array is still refused by ascontiguousarray's device check."""
    import fakecupy

    cp = fake_cupy
    a, side = _written_on_a_side_stream(cp)
    launched = dict(fakecupy.state.ops)
    copied, cast = a[:0].copy(), cp.ascontiguousarray(a[:0], dtype="float64")
    assert copied.shape == (0,) and copied.dtype == "float32" and cast.shape == (0,) and cast.dtype == "float64"
    assert dict(fakecupy.state.ops) == launched
    cp.cuda.Stream.null.wait_event(side.record())
    with cp.cuda.Device(1):
        there = cp.zeros((0, 3), dtype="float32")
    with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
        cp.ascontiguousarray(there, "float64")


# operations on an array ``a`` that touch none of its elements: each is a CuPy kernel (or copy) with an empty output
# or nothing to do (a sort of one element), which CuPy returns from before launching (fakecupy._launches cites where);
# given ``cp`` and ``a``, each makes what it
# needs (an index: a kernel of its own) and returns the operation
_NOTHING_TOUCHED = {
    "fill": lambda cp, a: lambda: a[:0].fill(1),
    "fill with zero (a memset)": lambda cp, a: lambda: a[:0].fill(0),
    "a ufunc": lambda cp, a: lambda: a[:0] + 1,
    "a ufunc into it": lambda cp, a: lambda: cp.add(a[:0], 1, out=a[:0]),
    "a ufunc broadcast to nothing": lambda cp, a: lambda: a[None, :] * a[:0, None],
    "a reduction to nothing": lambda cp, a: lambda: cp.sum(a.reshape(4, 1)[:, :0], axis=0),
    "copyto": lambda cp, a: lambda: cp.copyto(a[:0], a[:0]),
    "concatenate": lambda cp, a: lambda: cp.concatenate([a[:0], a[:0]]),
    "an empty slice set": lambda cp, a: lambda: a.__setitem__(slice(2, 2), 5),
    "a scatter through a mask of no True": lambda cp, a: (
        lambda index: lambda: a.__setitem__(index, 5))(cp.zeros(4, "bool")),
    "a gather of no index": lambda cp, a: (lambda index: lambda: a[index])(cp.zeros(0, "int64")),
    "a gather through an empty mask": lambda cp, a: (lambda index: lambda: a[:0][index])(cp.zeros(0, "bool")),
    "sort": lambda cp, a: lambda: a[:0].sort(),
    "sort along an axis of one element": lambda cp, a: lambda: a.reshape(4, 1).sort(),
    "put of no index": lambda cp, a: (lambda index: lambda: a.put(index, 1.0))(cp.zeros(0, "int64")),
    "byteswap": lambda cp, a: lambda: a[:0].byteswap(True),
    "flatten": lambda cp, a: lambda: a[:0].flatten(),
    "get": lambda cp, a: lambda: a[:0].get(),
    "tolist": lambda cp, a: lambda: a[:0].tolist(),
    "set": lambda cp, a: lambda: a[:0].set(numpy.zeros(0, "float32")),
    "memset of no bytes": lambda cp, a: lambda: a.data.memset_async(0, 0),
    "a device copy of no bytes": lambda cp, a: lambda: a.data.copy_from_device_async(a.data, 0),
}


@pytest.mark.parametrize("operation", list(_NOTHING_TOUCHED))
def test_an_operation_that_touches_no_element_launches_nothing_and_is_no_hazard(fake_cupy, operation):
    """CuPy's kernels return before launching when their output is empty (ElementwiseKernel and ufuncs on a 0 in the
    shape, reductions on an empty output, fill's memset of 0 bytes, the gathers and scatters), and its copies of 0
    bytes copy nothing: on an empty view of an array that a side stream still writes (or an empty selection of it),
    such an operation is no stream-order hazard (it touches no byte of it), issues nothing on the stream and counts
    no kernel; a get() of nothing waits for nothing. (A boolean index is still scanned and waited for, by the host:
    that orders the null stream's work, not the side stream's.)"""
    import collections

    from fakecupy import ordering

    cp = fake_cupy
    a, side = _written_on_a_side_stream(cp)
    run = _NOTHING_TOUCHED[operation](cp, a)
    null = ordering.null_clock(0)
    tick, launched = null._tick, collections.Counter(fakecupy.state.ops)
    run()
    made = collections.Counter(fakecupy.state.ops) - launched
    assert not ordering.hazards
    assert set(made) <= {"__setitem__ (a boolean index's scan)"}, made  # a non-empty mask is scanned
    assert null._tick - tick == sum(made.values())
    with pytest.raises(ordering.StreamOrderError, match="on the null stream reads"):
        a + 1  # the side stream's write is still not waited for: get() of nothing waited for nothing
    ordering.hazards.clear()  # the hazard raised above was expected
    side.synchronize()  # (its write left pending, a later test's first allocation on the null stream, handed the
    # block freed from it, was refused as a hazard: the backend's probe under GPUNN_FAKE_CUPY=1 with pytest -n 2)


def test_a_reduction_of_an_empty_array_and_a_raw_kernel_launch_on_one_still_launch(fake_cupy):
    """A reduction of no element with an output still launches (it writes the identity: cupy/_core/_reduction.pyx
    returns only on an empty output), and a RawKernel launch is a launch whatever its arrays hold (cupy/_core/raw.pyx
    has no such return): each is issued on the stream and counted, but touches no byte of an empty view of an array a
    side stream writes, so neither is a hazard."""
    import collections

    from fakecupy import ordering
    from gpunn.ops import kernels as gk

    cp = fake_cupy
    a, side = _written_on_a_side_stream(cp)
    kernel, empty = gk.get_kernel("sgd_step", "float32"), a[:0]
    null = ordering.null_clock(0)
    tick, launched = null._tick, collections.Counter(fakecupy.state.ops)
    total = cp.sum(empty)
    kernel((1,), (32,), (empty, empty, empty, numpy.float32(1), numpy.float32(0), numpy.float32(0), numpy.int32(0),
                         numpy.int64(0)))
    made = collections.Counter(fakecupy.state.ops) - launched
    assert made == {"sum": 1, "kernel sgd_step": 1} and null._tick - tick == 2 and not ordering.hazards
    assert float(total) == 0.0


# NumPy's C methods that copy to the host: CuPy's are self.get() and then NumPy's (cupy/_core/core.pyx)
_HOST_COPIES = {
    "tobytes": lambda a, tmp_path: a.tobytes(),
    "tofile": lambda a, tmp_path: a.tofile(str(tmp_path / "a.bin")),
    "bytes()": lambda a, tmp_path: bytes(a),
    "complex()": lambda a, tmp_path: complex(a[:1].reshape(())),
}


@pytest.mark.parametrize("method", list(_HOST_COPIES))
def test_an_array_method_that_copies_to_the_host_reads_in_stream_order_with_its_device_current(fake_cupy, tmp_path,
                                                                                                 method):
    """A copy to the host on the current stream (as get()): reading what another stream wrote needs its event waited
    for; then the host has waited for that stream. Made with the array's device current: allowed from another."""
    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    a, side = _written_on_a_side_stream(cp)
    with pytest.raises(ordering.StreamOrderError, match=r"on the null stream reads"):
        _HOST_COPIES[method](a, tmp_path)
    ordering.hazards.clear()  # the hazard raised above was expected
    null.wait_event(side.record())
    _HOST_COPIES[method](a, tmp_path)
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32")
    _HOST_COPIES[method](there, tmp_path)
    assert cp.cuda.Device().id == 0


def test_empty_memory_taken_over_from_a_block_another_stream_reads_is_a_hazard_at_its_first_write(fake_cupy):
    import gc

    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    side = cp.cuda.Stream(non_blocking=True)
    with side:
        window = cp.full(8, 1.0, "float32")
    null.wait_event(side.record())
    window.sum()
    del window
    gc.collect()
    with side:
        buffer = cp.empty(8, "float32")  # no write yet: CuPy's empty launches nothing
        with pytest.raises(ordering.StreamOrderError, match="CuPy's fill on stream"):
            buffer.fill(0)
    ordering.hazards.clear()


def test_a_device_synchronize_finishes_the_work_of_streams_since_dropped(fake_cupy):
    """cudaDeviceSynchronize waits for all the device's work, on streams already destroyed too (cudaStreamDestroy
    lets their work finish): after it, what a dropped stream wrote or copied is neither a hazard to read nor to
    free, nor is writing its pinned source."""
    import gc
    import weakref

    from fakecupy import ordering

    cp = fake_cupy
    side = cp.cuda.Stream(non_blocking=True)
    x = cp.zeros(8, "float32")
    side.wait_event(cp.cuda.Stream.null.record())
    pinned = fakecupy.cupyx.empty_pinned((8,), "float32")
    pinned[...] = 1
    x.set(pinned, stream=side)  # in flight on side, which nothing waits for
    dropped = weakref.ref(side)
    del side
    gc.collect()
    assert dropped() is None
    cp.cuda.Device().synchronize()
    pinned[...] = 2  # the copy from it has finished
    assert float((x + 1)[0]) == 2.0  # the null stream reads what side wrote
    del pinned
    gc.collect()
    assert ordering.hazards == []


def test_a_device_synchronize_waits_for_that_devices_streams_only(fake_cupy):
    """CuPy's Device(i).synchronize() is cudaDeviceSynchronize with device i current: it waits for device i's
    streams (and what they waited for, on any device), not for another device's. (The stand-in's used to mark
    every device's work finished, which hid this hazard.)"""
    from fakecupy import ordering

    cp = fake_cupy
    with cp.cuda.Device(1):
        side = cp.cuda.Stream(non_blocking=True)
        x = cp.zeros(8, "float32")
        side.wait_event(cp.cuda.Stream.null.record())
        x.set(numpy.ones(8, "float32"), stream=side)  # device 1's side stream writes x
    cp.cuda.Device(0).synchronize()  # device 0's work: not side's
    with cp.cuda.Device(1), pytest.raises(ordering.StreamOrderError, match="wrote in its op"):
        x + 1
    ordering.hazards.clear()  # the hazard raised above was expected
    cp.cuda.Device(1).synchronize()
    with cp.cuda.Device(1):
        assert float((x + 1)[0]) == 2.0
        x.set(numpy.full(8, 3, "float32"), stream=side)
        copied = side.record()
    s0 = cp.cuda.Stream(non_blocking=True)  # a stream of device 0 that waits for side's copy
    s0.wait_event(copied)
    cp.cuda.Device(0).synchronize()  # s0's wait has run, so side's copy before it has
    with cp.cuda.Device(1):
        assert float((x + 1)[0]) == 4.0
    assert ordering.hazards == []


def test_a_query_answers_not_done_until_asked_again_or_the_host_knows_the_work_has_run(fake_cupy):
    """Event.done and Stream.done (cudaEventQuery, cudaStreamQuery) of work the host has not seen finish answer False
    the first time, as a GPU may while it runs (code's not-done branch runs here), then True, which tells the host,
    as a wait does. (Event.done was always True here, and the stand-in had no Stream.done.) An event never recorded
    is done, and a synchronize on it returns at once, as in CUDA: it tells the host nothing, so a wait taken for
    one fails at the access it was to order."""
    from fakecupy import ordering

    cp = fake_cupy
    side, other = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    x = cp.zeros(8, "float32")
    made = cp.cuda.Stream.null.record()
    side.wait_event(made), other.wait_event(made)
    never = cp.cuda.Event()
    assert never.done is True
    x.set(numpy.ones(8, "float32"), stream=side)
    never.synchronize()  # returns (CUDA: cudaSuccess at once), and orders nothing
    with other, pytest.raises(ordering.StreamOrderError, match="wrote in its op"):
        x + 1
    ordering.hazards.clear()  # the hazard raised above was expected
    written = side.record()
    assert written.done is False and side.done is False  # each asked once: not yet
    assert written.done is True  # asked again: it has run, and the host knows
    with other:
        assert float((x + 1)[0]) == 2.0  # ordered by the host: no hazard
    x.set(numpy.full(8, 3, "float32"), stream=side)
    assert side.done is False and side.done is True  # its new work: not yet, then done
    with other:
        assert float((x + 1)[0]) == 4.0
    again = side.record()
    side.synchronize()
    assert again.done is True and side.done is True  # the host already knows: done at the first ask
    with side:
        side.begin_capture()
        with pytest.raises(fake_cupy.cuda.runtime.CUDARuntimeError, match="a query of the capturing stream"):
            side.done
        with pytest.raises(fake_cupy.cuda.runtime.CUDARuntimeError, match="Invalidated"):
            side.end_capture()
    assert ordering.hazards == []


def test_each_device_has_its_own_null_stream(fake_cupy):
    """cupy.cuda.Stream.null is one object (handle 0), but CUDA takes handle 0 as the current device's legacy
    stream: device 0's null stream does not wait for device 1's work, on its null stream or its blocking streams;
    an event of device 0 cannot be recorded on device 1's null stream."""
    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    y = cp.zeros(8, "float32")  # on device 0
    with cp.cuda.Device(1):
        x = cp.ones(8, "float32")  # made on device 1's null stream
    with pytest.raises(ordering.StreamOrderError, match="on the null stream reads .* the null stream of device 1"):
        y.data.copy_from_device_async(x.data, x.nbytes)  # a peer copy on device 0's null stream
    with cp.cuda.Device(1):
        made = null.record()
        blocking = cp.cuda.Stream()
        x.set(numpy.full(8, 2, "float32"), stream=blocking)  # waits for device 1's null stream, not device 0's
    null.wait_event(made)
    with pytest.raises(ordering.StreamOrderError, match=f"that stream {blocking.ptr:#x} wrote"):
        y.data.copy_from_device_async(x.data, x.nbytes)
    ordering.hazards.clear()  # the hazards raised above were expected
    with cp.cuda.Device(1):
        copied = null.record()  # device 1's null stream waits for its blocking stream's copy first
    null.wait_event(copied)
    y.data.copy_from_device_async(x.data, x.nbytes)
    assert float(y[0]) == 2.0
    x.set(numpy.full(8, 5, "float32"))  # CuPy makes x's device current for the copy: device 1's null stream
    with cp.cuda.Device(1):
        assert float((x + 1)[0]) == 6.0
    device0_event = cp.cuda.Event()
    with cp.cuda.Device(1), pytest.raises(cp.CUDARuntimeError, match="event of device 0 on a stream of device 1"):
        device0_event.record()  # on the current stream: device 1's null stream
    assert ordering.hazards == []


def test_the_null_stream_waits_for_the_work_of_blocking_streams_since_dropped(fake_cupy):
    """The legacy null stream waits for the work of the device's blocking streams before it, of one destroyed
    meanwhile too (cudaStreamDestroy lets its work run); a non-blocking stream's work it never waits for."""
    import gc
    import weakref

    from fakecupy import ordering

    cp = fake_cupy
    x = cp.zeros(8, "float32")
    blocking = cp.cuda.Stream()  # waits for the null stream's work before its own: x is made
    x.set(numpy.ones(8, "float32"), stream=blocking)
    dropped = weakref.ref(blocking)
    del blocking
    gc.collect()
    assert dropped() is None
    assert float((x + 1)[0]) == 2.0  # the null stream reads what the dropped stream wrote, after it
    side = cp.cuda.Stream(non_blocking=True)
    side.wait_event(cp.cuda.Stream.null.record())
    x.set(numpy.full(8, 2, "float32"), stream=side)
    del side
    gc.collect()
    with pytest.raises(ordering.StreamOrderError, match="wrote in its op"):
        x + 1
    ordering.hazards.clear()  # the hazard raised above was expected


def test_a_graph_launch_on_freed_memory_fails(fake_cupy):
    from gpunn.ops import kernels as gk

    kernel = gk.get_kernel("sgd_step", "float32")
    w, g = fake_cupy.ones(4, "float32"), fake_cupy.full(4, 2.0, "float32")
    s = fake_cupy.cuda.Stream()
    with s:
        s.begin_capture()
        kernel((1,), (32,), _sgd_args(fake_cupy, w, g, 0.5))
        graph = s.end_capture()
    del g
    import gc

    gc.collect()
    with pytest.raises(fake_cupy.CUDARuntimeError, match="freed since the capture"):
        graph.launch(s)


def _strided(cp, shape):
    """A device view of ``shape`` over one element (strides 0): a 2**31-row operand without its memory."""
    one = cp.zeros(1, "float64").view(numpy.ndarray)
    return numpy.lib.stride_tricks.as_strided(one, shape, (0,) * len(shape)).view(fakecupy.ndarray)


def test_a_product_over_a_batch_of_2_31_rows_reaches_cupy_in_blocks_its_int_arguments_take(fake_cupy, monkeypatch):
    """CuPy's matmul casts m, n and k to C int unchecked (fakecupy.check_matmul_ints refuses what would wrap): a
    full batch of 2**31 rows or more goes in row blocks (Z = A W), and a weight gradient's k = rows in blocks
    summed into dW. Checked on views of one element; the products are recorded, not computed (k = each block's
    rows is written instead, so dW's sum counts the rows)."""
    from gpunn.ops.cuda import CupyOps
    from gpunn.ops.ensemble_cuda import CupyEnsembleOps

    rows, calls = 2**31 + 5, []

    def product(a, b, out=None):
        fakecupy.check_matmul_ints(a, b)
        calls.append((a.shape[-2], a.shape[-1]))
        if out.size < 100:  # dW; Z's blocks (views of one element) are left alone
            out[...] = a.shape[-1]
        return out

    monkeypatch.setattr(fake_cupy, "matmul", product)
    ops = CupyOps()
    ops.matmul(_strided(fake_cupy, (rows, 3)), fake_cupy.ones((3, 2)), _strided(fake_cupy, (rows, 2)))
    assert calls == [(rows // 2, 3), (rows - rows // 2, 3)]
    calls.clear()
    dW = fake_cupy.zeros((3, 2))
    ops.matmul(_strided(fake_cupy, (rows, 3)).T, _strided(fake_cupy, (rows, 2)), dW)
    assert calls == [(3, rows // 2), (3, rows - rows // 2)] and (dW.get() == rows).all()
    calls.clear()
    members = CupyEnsembleOps(ops)  # (K, rows, n) stacks: X shared by the members, then each member's dW
    members.matmul(_strided(fake_cupy, (rows, 3)), fake_cupy.ones((4, 3, 2)), _strided(fake_cupy, (4, rows, 2)))
    dW = fake_cupy.zeros((4, 3, 2))
    members.matmul(_strided(fake_cupy, (4, rows, 3)).transpose(0, 2, 1), _strided(fake_cupy, (4, rows, 2)), dW)
    assert calls == [(rows // 2, 3), (rows - rows // 2, 3), (3, rows // 2), (3, rows - rows // 2)]
    assert (dW.get() == rows).all()
    with pytest.raises(OverflowError, match=r"matmul: argument 'rows' = 2147483653 does not fit a C int"):
        fakecupy.check_matmul_ints(_strided(fake_cupy, (rows, 3)), fake_cupy.ones((3, 2)))


@pytest.mark.parametrize("precision, ensemble", [("float32", False), ("tf32", False), ("bf16", False), ("tf32", True)])
def test_products_cut_into_row_blocks_train_as_whole_products_do(fake_cupy, monkeypatch, precision, ensemble):
    """A full batch of 130 rows with ``gemm_limit`` 40 (the 2**31 - 1 of a real run, small): every cuBLAS call
    (CuPy's matmul, gemmEx, the graph's GemmEx) gets at most 40 rows or terms, and training lands where the
    whole products take it (to the float32 rounding of the weight gradient's sums in four parts)."""
    from gpunn import MLP, Ensemble

    dims, check, gemm = [], fakecupy.check_matmul_ints, fakecupy._gemm
    monkeypatch.setattr(fakecupy, "check_matmul_ints", lambda a, b: dims.append(a.shape[-2:] + b.shape[-1:]) or check(a, b))
    monkeypatch.setattr(fakecupy, "_gemm", lambda *args, **kw: dims.append(args[2:5]) or gemm(*args, **kw))
    X, Y = _data(rows=130)
    results = []
    for limit in (None, 40):
        make = (lambda: Ensemble([6, 16, 2], n_models=3, device="cuda", seed=0, precision=precision)) if ensemble else (
            lambda: MLP([6, 16, 2], device="cuda", seed=0, precision=precision))
        model = make()
        ops = model.ops
        if limit:
            ops.gemm_limit = limit
        dims.clear()
        model.fit(X, Y, epochs=3, batch_size=None, shuffle=False, lr=1e-2, verbose=False)
        results.append(model.params.get())
        assert max(max(d) for d in dims) == 130 if limit is None else 30 <= max(max(d) for d in dims) <= limit
    numpy.testing.assert_allclose(results[1], results[0], rtol=2e-5, atol=1e-6)


def test_the_ctypes_cublas_checks_its_calls_and_captures_gemms(fake_cupy):
    """CapturableBlas on the stand-in's libcublas: argtypes are required and checked, a GemmEx on the
    handle's capturing stream is recorded (with alpha/beta read at the call) and run by the graph."""
    import ctypes

    from gpunn.ops.cublas import CapturableBlas

    lib = fakecupy.cublas_library()
    with pytest.raises(ctypes.ArgumentError, match="argtypes not set"):
        lib.cublasCreate_v2(ctypes.byref(ctypes.c_void_p()))
    lib.cublasSetStream_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    with pytest.raises(ctypes.ArgumentError, match="argument 1: a pointer"):
        lib.cublasSetStream_v2(1.5, None)
    # argtypes must be the C prototype's: a long long stride declared c_int (or a size_t as c_int) would pass
    # every value here and reach the real library as a garbage upper half
    vp, i = ctypes.c_void_p, ctypes.c_int
    lib.cublasGemmStridedBatchedEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, i, vp, i, i, i, vp, vp, i, i, i, i,
                                               i, i]
    with pytest.raises(ctypes.ArgumentError, match=r"argument 11: c_int for c_(long)?long\b.*argument 20"):
        lib.cublasGemmStridedBatchedEx(1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 68, -1)
    lib.cublasSetWorkspace_v2.argtypes = [vp, vp, i]
    with pytest.raises(ctypes.ArgumentError, match=r"argument 3: c_int for c_(ulong|size_t)"):
        lib.cublasSetWorkspace_v2(1, 0, 0)
    s = fake_cupy.cuda.Stream(non_blocking=True)
    blas = CapturableBlas(s.ptr)
    a, b = fake_cupy.asarray(numpy.arange(6.0, dtype="float32").reshape(2, 3)), fake_cupy.ones((3, 4), "float32")
    out = fake_cupy.zeros((2, 4), "float32")
    with s:
        s.begin_capture()
        blas.gemm(a, b, out)
        graph = s.end_capture()
    assert not out.get().any() and fakecupy.state.gemms == []
    graph.launch(s)
    s.synchronize()
    numpy.testing.assert_array_equal(out.get(), numpy.arange(6.0).reshape(2, 3) @ numpy.ones((3, 4)))
    assert fakecupy.state.gemms == ["32F"]
    other = fake_cupy.cuda.Stream()
    with other:  # a product on a handle bound to another stream would escape the graph
        other.begin_capture()
        with pytest.raises(fake_cupy.CUDARuntimeError, match="another stream than the capturing one"):
            blas.gemm(a, b, out)
    blas.close()


def test_the_ctypes_cublas_resets_a_handles_workspace_at_cublas_set_stream(fake_cupy):
    """cublasSetStream resets the handle's workspace to cuBLAS's default pool (cuBLAS docs, cublasSetStream), so
    cublasSetWorkspace must come after it: a workspace set first is dropped, and the graph's products then run on
    the default pool, which allocates in the capture, not on CapturableBlas's 32 MiB shared by one thread's graphs.
    CapturableBlas sets the stream, then the workspace; the stand-in resets the workspace as cuBLAS does and reports
    a product captured without a workspace of its own as a hazard (the tests' conftest fails on it)."""
    import ctypes

    from gpunn.ops.cublas import CapturableBlas

    s = fake_cupy.cuda.Stream(non_blocking=True)
    blas = CapturableBlas(s.ptr)
    a, b, out = fake_cupy.ones((2, 3), "float32"), fake_cupy.ones((3, 4), "float32"), fake_cupy.zeros((2, 4), "float32")

    def captured():
        with s:
            s.begin_capture()
            blas.gemm(a, b, out)
            s.end_capture()
        found = list(fakecupy.ordering.hazards)
        fakecupy.ordering.hazards.clear()
        return found

    assert captured() == []  # CapturableBlas's order: the stream, then the workspace
    assert blas._lib.cublasSetStream_v2(blas.handle, ctypes.c_void_p(s.ptr)) == 0  # after it: the swapped order's end
    assert captured() == [f"a cuBLAS product captured on handle {blas.handle.value:#x} with cuBLAS's default "
                          "workspace pool, not a workspace of its own (cublasSetStream resets the handle's workspace: "
                          "cublasSetWorkspace must come after it)"]
    assert blas._lib.cublasSetWorkspace_v2(blas.handle, ctypes.c_void_p(blas.workspace.data.ptr),
                                           blas.workspace.nbytes) == 0
    assert captured() == []
    blas.close()


def test_a_capture_refuses_allocations_as_its_capture_mode_rules_them(fake_cupy):
    """CUDA forbids a thread "potentially unsafe" calls (cudaMalloc among them, which CuPy's pool may make for any new
    array) while that thread has a capture not begun in relaxed mode, or another thread one begun in global mode (a
    thread's own mode is global unless it exchanges it: cudaThreadExchangeStreamCaptureMode): the call fails with
    cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing", and a capture refused so on
    its own thread is invalidated. CuPy's begin_capture defaults to relaxed (cupy/cuda/stream.pyx v14.2.0
    l.395-403), as gpunn's captures and tests/test_graph_gpu's moved-fit test use it: in global mode that test's
    second thread would fail for the test's doing. A device-wide synchronize is refused while any stream captures,
    whatever the mode (CUDA Programming Guide, stream capture's prohibited operations), and invalidates the capture (an
    invalid operation during capture invalidates the captures it meets, same section); a capture not begun in
    relaxed mode ends on its own thread only."""
    import threading

    rt = fake_cupy.cuda.runtime
    before = fake_cupy.zeros(8, "float32")

    def outcome(call):
        try:
            call()
        except fake_cupy.CUDARuntimeError as exc:
            return str(exc).split(":")[0]
        return "ok"

    def elsewhere(call):
        box = []
        thread = threading.Thread(target=lambda: box.append(outcome(call)))
        thread.start()
        thread.join()
        return box[0]

    refused = "cudaErrorStreamCaptureUnsupported"
    s = fake_cupy.cuda.Stream(non_blocking=True)
    for mode, here, there in ((None, "ok", "ok"), (rt.streamCaptureModeRelaxed, "ok", "ok"),
                              (rt.streamCaptureModeThreadLocal, refused, "ok"),
                              (rt.streamCaptureModeGlobal, refused, refused)):
        relaxed = mode in (None, rt.streamCaptureModeRelaxed)
        s.begin_capture(mode)
        assert elsewhere(lambda: fake_cupy.zeros(4, "float32")) == there, mode  # another thread's new array
        assert elsewhere(lambda: before[2:]) == "ok"  # a view allocates nothing
        assert elsewhere(fake_cupy.cuda.Device(1).synchronize) == "ok"
        assert outcome(lambda: fake_cupy.zeros(4, "float32")) == here, mode  # this thread's, in its own capture
        assert elsewhere(s.end_capture) == ("ok" if relaxed else "cudaErrorStreamCaptureWrongThread"), mode
        if not relaxed:
            with pytest.raises(fake_cupy.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated: a device "
                                                                  "allocation in a capture begun in mode"):
                s.end_capture()
    for mode in (rt.streamCaptureModeRelaxed, rt.streamCaptureModeThreadLocal, rt.streamCaptureModeGlobal):
        s.begin_capture(mode)
        assert elsewhere(fake_cupy.cuda.Device(0).synchronize) == refused  # in any mode: the device holds s
        with pytest.raises(fake_cupy.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated: a device "
                                                              "synchronize"):
            s.end_capture()


def test_a_curand_draw_is_refused_on_a_capturing_stream_and_fails_beside_another_threads_capture(fake_cupy):
    """CuPy 14 checks the current stream before each cuRAND call (cupy_backends/cuda/libs/curand.pyx v14.2.0
    l.141-146: NotImplementedError, before any CUDA call, so the capture goes on). On an H200 a draw on one thread's
    legacy stream failed with CURAND_STATUS_LAUNCH_FAILURE while another thread held a relaxed capture open on a
    non-blocking stream, where CuPy's allocations and kernels run (the allocation below): the stand-in fails the same
    way, on that device only, and draws again once the capture has ended."""
    import threading

    def elsewhere(call):
        box = []

        def run():
            try:
                box.append(call())
            except Exception as exc:  # noqa: BLE001 - returned to the assertions
                box.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return box[0]

    rng = fake_cupy.random.RandomState(0)
    s = fake_cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture(fake_cupy.cuda.runtime.streamCaptureModeRelaxed)
        with pytest.raises(NotImplementedError, match="calling cuRAND API during stream capture"):
            rng.standard_normal(4, dtype="float32")
    failed = elsewhere(lambda: fake_cupy.random.RandomState(1).uniform(size=4))
    assert isinstance(failed, fake_cupy.cuda.curand.CURANDError) and failed.status == 201
    assert str(failed) == "CURAND_STATUS_LAUNCH_FAILURE"
    assert elsewhere(lambda: fake_cupy.ones(4, "float32").sum().item()) == 4.0  # CuPy's own work goes on
    with fake_cupy.cuda.Device(1):
        assert rng is not None and fake_cupy.random.RandomState(2).uniform(size=4).shape == (4,)  # another device
    assert s.end_capture() is not None  # the refused draw on the capturing stream did not invalidate it
    assert elsewhere(lambda: fake_cupy.random.RandomState(1).uniform(size=4)).shape == (4,)


def test_a_cublas_handle_destroyed_while_another_thread_captures_ends_that_capture(fake_cupy):
    """cublasDestroy synchronizes the device (cuBLAS docs), which CUDA refuses while any stream of it captures, and
    that invalidates the capture (CUDA Programming Guide, stream capture). CuPy keeps a cuBLAS handle per thread and
    device and destroys it when the thread exits, before join() returns: a thread that took one ends another
    thread's capture; one that took none (CuPy's own kernels only) does not; a handle destroyed through the library
    (gpunn's CapturableBlas.close) does, on its device only."""
    import threading

    def in_a_thread(work):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    def capture_while(work, device=0):
        with fake_cupy.cuda.Device(device):
            s = fake_cupy.cuda.Stream(non_blocking=True)
            with s:
                s.begin_capture(fake_cupy.cuda.runtime.streamCaptureModeRelaxed)
                work()
                return s.end_capture()

    assert capture_while(lambda: in_a_thread(lambda: fake_cupy.ones(4, "float32").sum().item())) is not None
    with pytest.raises(fake_cupy.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated: cublasDestroy of CuPy's"):
        capture_while(lambda: in_a_thread(fake_cupy.cuda.device.get_cublas_handle))
    from gpunn.ops.cublas import CapturableBlas

    blas, streams = [], []
    for device in (0, 1):
        with fake_cupy.cuda.Device(device):
            streams.append(fake_cupy.cuda.Stream(non_blocking=True))
            blas.append(CapturableBlas(streams[-1].ptr))
    assert capture_while(blas[1].close, device=0) is not None  # another device's
    with pytest.raises(fake_cupy.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated: cublasDestroy "):
        capture_while(lambda: in_a_thread(blas[0].close))


# ---- NCCL: gradients and parameters between ranks (threads here; fakecupy/nccl.py) ----------------------

def _thread_ranks(size, work):
    """``work(rank, control)`` on ``size`` threads, each a rank whose control collectives (the NCCL id's
    broadcast) go through the others; the results in rank order (a rank's exception is raised here)."""
    import threading

    barrier, box = threading.Barrier(size, timeout=30), {}

    class Control:
        engine = "threads"

        def __init__(self, rank):
            self.rank, self.size, self.local_rank, self.local_size = rank, size, rank, size

        def bcast_object(self, obj, root=0, label=None):
            if self.rank == root:
                box["obj"] = obj
            barrier.wait()
            got = box["obj"]
            barrier.wait()
            return got

        def allgather(self, obj, label=None):  # (NcclComm's device check: a rank per device)
            box[self.rank] = obj
            barrier.wait()
            got = [box[rank] for rank in range(size)]
            barrier.wait()
            return got

    results, errors = [None] * size, []

    def run(rank):
        try:
            results[rank] = work(rank, Control(rank))
        except BaseException as exc:  # noqa: BLE001 - raised in the test below
            errors.append(exc)
            barrier.abort()
            fakecupy.nccl.abort_all()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_nccl_sums_the_gradients_and_broadcasts_rank_0s_parameters_on_the_callers_stream(fake_cupy, monkeypatch,
                                                                                          dtype):
    """NcclComm on two ranks, each on its own device (cuda:0, cuda:1), its gradient written on a stream of the
    caller's: the all-reduce is a sum of every element in the array's own type, the broadcast rank 0's, both
    enqueued on that stream (the fake NCCL checks the address, count, type, device and stream order)."""
    import fakecupy.nccl

    from gpunn import backend
    from gpunn.distributed import comm as dcomm

    monkeypatch.setattr(dcomm, "_load_nccl", lambda: fakecupy.nccl)
    rng = numpy.random.default_rng(0)
    grads = [rng.standard_normal(37).astype(dtype) for _ in range(2)]
    params = [rng.standard_normal(37).astype(dtype) for _ in range(2)]

    def rank(r, control):
        device = backend.resolve(f"cuda:{r}")
        nccl = dcomm.NcclComm(device, control)  # made with device 0 current in both threads
        with device.use(), fake_cupy.cuda.Stream(non_blocking=True):
            g, p = fake_cupy.asarray(grads[r]), fake_cupy.asarray(params[r])
            nccl.allreduce_sum_(g)
            nccl.broadcast_(p)
            return g.get(), p.get(), nccl.describe()

    for g, p, said in _thread_ranks(2, rank):
        numpy.testing.assert_array_equal(g, grads[0] + grads[1])
        numpy.testing.assert_array_equal(p, params[0])
        assert said == "2 ranks over NCCL 2.21.5 (control: threads)"


def test_an_nccl_collective_on_stream_0_runs_on_its_communicators_devices_null_stream(fake_cupy):
    """NCCL makes its communicator's device current before it enqueues a collective (src/enqueue.cc,
    ncclEnqueueCheck: cudaSetDevice(comm->cudaDev); its docs' group example drives several devices' communicators
    from one thread without a cudaSetDevice), so stream 0 is that device's legacy stream, whichever device the
    caller has current. (The stand-in took the current device's: device 0's null stream reading device 1's fresh
    array, a false hazard.)"""
    cp, nccl = fake_cupy, _nccl()
    with cp.cuda.Device(1):
        comm = nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)
        a = cp.arange(4, dtype="float32")  # made on device 1's null stream
    comm.allReduce(a.data.ptr, a.data.ptr, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)  # device 0 current
    comm.bcast(a.data.ptr, 4, nccl.NCCL_FLOAT32, 0, 0)
    with cp.cuda.Device(1):
        b = a + 1  # device 1's null stream, after the collectives there
        assert b.get().tolist() == [1, 2, 3, 4]
    assert fakecupy.state.current == 0


def test_nccl_is_made_once_per_device_and_aborts_with_the_status_given(fake_cupy, monkeypatch):
    """world(backend) keeps one NcclComm per device (each made costs an NCCL communicator and a control broadcast);
    its abort ends NCCL's communicator and then the job through the control channel, with the caller's status."""
    import fakecupy.nccl

    from gpunn import backend
    from gpunn.distributed import comm as dcomm

    monkeypatch.setattr(dcomm, "_load_nccl", lambda: fakecupy.nccl)
    monkeypatch.setattr(dcomm, "_WORLD", {"control": dcomm.LocalComm()})  # one process without MPI
    first, second = backend.resolve("cuda:0"), backend.resolve("cuda:1")
    assert dcomm.world(first) is dcomm.world(first) is not dcomm.world(second)
    aborted = []
    nccl = dcomm.world(first)
    monkeypatch.setattr(nccl.control, "abort", aborted.append)
    monkeypatch.setattr(nccl.gpu_comm, "abort", lambda: aborted.append("nccl"))
    nccl.abort(3)
    assert aborted == ["nccl", 3]


def test_a_cupy_whose_nccl_is_unavailable_is_refused_saying_what_to_install(fake_cupy, monkeypatch):
    import sys
    import types

    from gpunn import backend
    from gpunn.distributed import comm
    from gpunn.distributed.comm import DistributedError, LocalComm, NcclComm

    class TwoRanks(LocalComm):  # (one process needs no NCCL: its fit is the plain fit, 4333776)
        size, local_size = 2, 2

    monkeypatch.setattr(comm, "check_one_gpu_per_rank", lambda control, backend: None)
    unavailable = types.ModuleType("cupy.cuda.nccl")  # CuPy built without NCCL: the module, available False
    unavailable.available = False
    monkeypatch.setitem(sys.modules, "cupy.cuda", fake_cupy.cuda)  # importable as a module, as CuPy's is
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", unavailable)
    monkeypatch.setattr(fake_cupy.cuda, "nccl", unavailable, raising=False)
    monkeypatch.setitem(sys.modules, "nvidia", None)
    with pytest.raises(DistributedError, match="CuPy cannot load NCCL: pip install nvidia-nccl-cu12"):
        NcclComm(backend.resolve("cuda"), TwoRanks())


# ---- where NumPy is more permissive than CuPy 14 (each as cupy/_core/core.pyx, cuda/stream.pyx, raw.pyx says) ---

def _event_pair(cp, timing):
    start, end = cp.cuda.Event(disable_timing=not timing), cp.cuda.Event(disable_timing=not timing)
    start.record(), end.record()
    return cp.cuda.get_elapsed_time(start, end)


@pytest.mark.parametrize("what, error, run", [
    # ndarray.__array__ raises: NumPy's conversions refuse a device array, or a list holding one
    ("numpy.asarray", TypeError, lambda cp, a: numpy.asarray(a)),
    ("numpy.array of a list", TypeError, lambda cp, a: numpy.array([a[0], a[1]])),
    ("numpy.ascontiguousarray", TypeError, lambda cp, a: numpy.ascontiguousarray(a)),
    ("numpy.testing", TypeError, lambda cp, a: numpy.testing.assert_array_equal(a, a)),
    # a[i] is a 0-d device array, not a NumPy scalar: unhashable, no __index__
    ("hash of a[i]", TypeError, lambda cp, a: hash(a[0])),
    ("a[i] as an index", TypeError, lambda cp, a: range(a.astype("int64")[1])),
    ("round of a[i]", TypeError, lambda cp, a: round(a[1])),
    ("a.ctypes", AttributeError, lambda cp, a: a.ctypes.data),
    ("a.__array_interface__", AttributeError, lambda cp, a: a.__array_interface__),
    ("a.__array__() called directly", TypeError, lambda cp, a: a.__array__()),
    # DLPack (cupy/_core/core.pyx __dlpack__, dlpack.pyx from_dlpack)
    ("a DLPack copy to its own device", BufferError, lambda cp, a: a.__dlpack__(copy=True)),
    ("a DLPack export to the host without a copy", ValueError, lambda cp, a: a.__dlpack__(dl_device=(1, 0), copy=False)),
    ("a DLPack export to another device", BufferError, lambda cp, a: a.__dlpack__(dl_device=(2, 1))),
    ("a DLPack consumer stream below -1", ValueError, lambda cp, a: a.__dlpack__(stream=-2)),
    ("cupy.from_dlpack of a host array", TypeError, lambda cp, a: cp.from_dlpack(numpy.ones(2))),
    ("cupy.from_dlpack(device=)", NotImplementedError, lambda cp, a: cp.from_dlpack(a, device=(2, 0))),
    ("a DLPack capsule consumed twice", ValueError, lambda cp, a: _consumed_twice(cp, a)),
    ("cupy.from_dlpack of a host DLPack capsule", RuntimeError,
     lambda cp, a: cp.from_dlpack(numpy.ones(2).__dlpack__(max_version=(1, 0)))),
    # ndarray.set/get(out=): no cast, no broadcast
    ("set of another dtype", TypeError, lambda cp, a: a.set(numpy.ones(4, "float64"))),
    ("set of another shape", ValueError, lambda cp, a: a.set(numpy.ones(1, "float32"))),
    ("set of a list", TypeError, lambda cp, a: a.set([1.0, 2.0, 3.0, 4.0])),
    ("set into a strided view", RuntimeError, lambda cp, a: a[::2].set(numpy.ones(2, "float32"))),
    ("get into another dtype", TypeError, lambda cp, a: a.get(out=numpy.empty(4, "float64"))),
    ("get into another shape", ValueError, lambda cp, a: a.get(out=numpy.empty((1, 4), "float32"))),
    ("get into a strided host view", RuntimeError, lambda cp, a: a.get(out=numpy.empty(8, "float32")[::2])),
    ("item with an index", TypeError, lambda cp, a: a.item(0)),
    # what NumPy has and CuPy 14 does not
    ("cupy.errstate", AttributeError, lambda cp, a: cp.errstate),
    ("numpy.einsum_path on the device", TypeError, lambda cp, a: numpy.einsum_path("i,i", a, a)),
    # Cython-typed arguments: tuples and strs, not lists
    ("grid as a list", TypeError, lambda cp, a: cp.RawKernel("__global__ void k(float* x) {}", "k")([1], (32,), (a,))),
    ("options as a list", TypeError, lambda cp, a: cp.RawModule(code="__global__ void k() {}", options=["-O3"])),
    ("a seed past 2**64", TypeError, lambda cp, a: cp.random.RandomState(2**64)),  # an object array to CuPy
    ("a negative seed", ValueError, lambda cp, a: cp.random.RandomState(-1)),
    ("a float seed", TypeError, lambda cp, a: cp.random.RandomState(1.0)),
    ("permutation of a NumPy integer", TypeError, lambda cp, a: cp.random.RandomState(0).permutation(numpy.int64(4))),
    ("gemmEx with a float lda", TypeError, lambda cp, a: _gemm_ex(cp, lda=2.0)),
    ("an NCCL id as a tuple (CuPy before 14)", TypeError, lambda cp, a: _nccl().NcclCommunicator(1, (1,), 0)),
    ("an NCCL count as a float", TypeError, lambda cp, a: _nccl().NcclCommunicator(1, _nccl().get_unique_id(), 0)
     .allReduce(a.data.ptr, a.data.ptr, 4.0, 7, 0, 0)),
    # a stream of device 1 entered with device 0 current (CuPy 14's check_stream_device_match)
    ("stream of another device", RuntimeError, lambda cp, a: cp.cuda.Stream.__enter__(_stream_on_1(cp))),
    # cudaEventElapsedTime of events made with disable_timing
    ("elapsed time without timing", fakecupy.CUDARuntimeError, lambda cp, a: _event_pair(cp, timing=False)),
    # (mut9: without each of these, its refusal could be removed and no test failed)
    ("an interprocess event with timing", ValueError, lambda cp, a: cp.cuda.Event(interprocess=True)),
    ("use() of a stream of another device", RuntimeError, lambda cp, a: _stream_on_1(cp).use()),
    ("gemmEx with an lda past a C int", OverflowError, lambda cp, a: _gemm_ex(cp, lda=2**31)),
    ("gemmStridedBatchedEx with a stride past a C long long", OverflowError,
     lambda cp, a: _gemm_batched(cp, stride=2**63)),
    # cuBLAS's own refusals, from its own values (mut14c: the stand-in took a null handle and any algo, and judged
    # the types by gpunn's compute_type, the function under test)
    ("gemmEx on a handle that is not the current device's", fakecupy._CUBLASError,
     lambda cp, a: _gemm_ex(cp, lda=2, handle=0)),
    ("gemmEx on device 1's handle with device 0 current", fakecupy._CUBLASError,
     lambda cp, a: _gemm_ex(cp, lda=2, handle=_handle_of_1(cp))),
    ("gemmEx with an algorithm cuBLAS lacks", fakecupy._CUBLASError, lambda cp, a: _gemm_ex(cp, lda=2, algo=1000)),
    ("gemmEx of float32 in CUBLAS_COMPUTE_64F", fakecupy._CUBLASError, lambda cp, a: _gemm_ex(cp, lda=2, compute=70)),
    ("gemmEx of bfloat16 in CUBLAS_COMPUTE_32F_FAST_TF32", fakecupy._CUBLASError,
     lambda cp, a: _gemm_ex(cp, lda=2, types=14, compute=77)),
    ("an NCCL rank past a C int", OverflowError, lambda cp, a: _nccl().NcclCommunicator(1, _nccl().get_unique_id(), 2**31)),
    ("an NCCL bcast count as a float", TypeError, lambda cp, a: _nccl().NcclCommunicator(1, _nccl().get_unique_id(), 0)
     .bcast(a.data.ptr, 4.0, 7, 0, 0)),    # signatures as CuPy 14's (cupyapi11: the stand-in took these, CuPy raises TypeError or AttributeError)
    ("RawModule's code given positionally", TypeError, lambda cp, a: cp.RawModule("__global__ void k() {}")),
    ("RawModule with a keyword CuPy lacks", TypeError, lambda cp, a: cp.RawModule(code="__global__ void k() {}",
                                                                                  name_expression=["k"])),
    ("RawKernel with a keyword CuPy lacks", TypeError, lambda cp, a: cp.RawKernel("__global__ void k() {}", "k",
                                                                                  name_expressions=["k"])),
    ("a float16 cuRAND draw", TypeError, lambda cp, a: cp.random.RandomState(0).standard_normal(4, dtype="float16")),
    ("an int32 cuRAND uniform draw", TypeError, lambda cp, a: cp.random.RandomState(0).uniform(0, 1, 4, dtype="int32")),
    ("Event.query (CuPy's is the property done)", AttributeError, lambda cp, a: cp.cuda.Event().query()),
    ("Stream.device (CuPy's is device_id)", AttributeError, lambda cp, a: cp.cuda.Stream(non_blocking=True).device),
    ("get_elapsed_time(start=)", TypeError, lambda cp, a: cp.cuda.get_elapsed_time(start=cp.cuda.Event(),
                                                                                     end=cp.cuda.Event())),
    ("benchmark's n_warmup given positionally", TypeError, lambda cp, a: cp.cupyx.profiler.benchmark(
        lambda: None, (), {}, 1, 1)),
    ("a.to_device (NumPy 2's array API)", AttributeError, lambda cp, a: a.to_device("cpu")),
    ("a.flags.writeable (CuPy's flags: c_contiguous, f_contiguous, owndata)", AttributeError,
     lambda cp, a: a.flags.writeable),
    ("take into an out of another dtype", TypeError, lambda cp, a: cp.take(a, cp.arange(2), axis=0,
                                                                           out=cp.empty(2, "float64"))),
    ("take into an out of another shape", ValueError, lambda cp, a: cp.take(a, cp.arange(2), axis=0,
                                                                            out=cp.empty(3, "float32"))),
    # keywords NumPy takes and CuPy 14 does not (a ufunc: out, dtype, casting; no function where= but copyto's, nor
    # initial=, like=, device=; no reduction where= or initial=)
    ("a ufunc's where=", TypeError, lambda cp, a: numpy.add(a, a, where=True)),
    ("cupy.exp(order=)", TypeError, lambda cp, a: cp.exp(a, order="C")),
    ("a.max(initial=)", TypeError, lambda cp, a: a.max(initial=0)),
    ("a.sum(where=) of a mask (where=True: NumPy's own default, let through)", TypeError,
     lambda cp, a: a.sum(where=numpy.ones(4, bool))),
    ("numpy.sum(device array, where=)", TypeError, lambda cp, a: numpy.sum(a, where=a > 0)),
    ("cupy.max(initial=)", TypeError, lambda cp, a: cp.max(a, initial=0)),
    ("cupy.zeros(device=)", TypeError, lambda cp, a: cp.zeros(2, device="cuda")),
    # ufunc methods CuPy 14 implements for add (and multiply) only (a.max() is CuPy's own method, let through)
    ("numpy.maximum.reduce of a device array", NotImplementedError, lambda cp, a: numpy.maximum.reduce(a)),
    ("numpy.logical_or.accumulate of a device array", NotImplementedError,
     lambda cp, a: numpy.logical_or.accumulate(a > 1)),
    ("numpy.multiply.reduceat of a device array", NotImplementedError,
     lambda cp, a: numpy.multiply.reduceat(a, cp.arange(2))),
])
def test_the_stand_in_refuses_what_cupy_refuses(fake_cupy, what, error, run):
    """Where NumPy, under the stand-in, would accept what CuPy 14 refuses, fakecupy refuses it too: gpunn code
    relying on NumPy's leniency would pass CI and fail on the GPU."""
    a = fake_cupy.arange(4, dtype="float32")
    with pytest.raises(error):
        run(fake_cupy, a)


def test_the_keywords_cupy_takes_pass_the_stand_ins_keyword_checks(fake_cupy):
    """The keyword checks refuse only what CuPy lacks: a ufunc's out, dtype and casting, copyto's where, and the
    reductions NumPy's methods hand to a ufunc with where=True (a.mean() also divides with subok=False: NumPy's own)."""
    cp = fake_cupy
    a = cp.arange(4, dtype="float32")
    flags = cp.empty(4, "float32")
    cp.greater(a, 1, out=flags, casting="unsafe")
    assert flags.tolist() == [0, 0, 1, 1]
    assert [float(a.mean()), float(a.sum()), float(a.max()), float(numpy.mean(a)), float(a.std() ** 2)] == [
        1.5, 6.0, 3.0, 1.5, 1.25]
    assert [float(numpy.add.reduce(a)), float(a.max()), float(a.min()), bool(a.all()), a.cumsum().tolist()] == [
        6.0, 3.0, 0.0, False, [0, 1, 3, 6]]
    cp.copyto(a, cp.zeros(4, "float32"), where=a > 1)
    assert a.tolist() == [0, 1, 0, 0]


def _consumed_twice(cp, a):
    capsule = a.__dlpack__()
    cp.from_dlpack(capsule)
    cp.from_dlpack(capsule)


def test_pickling_a_device_array_copies_it_to_the_host_and_unpickling_to_the_current_device(fake_cupy):
    """CuPy pickles an array as ``cupy.array`` of ``self.get(order="A")`` (cupy/_core/core.pyx __reduce__): a
    synchronous copy to the host on the current stream, so what another stream writes must be waited for first, and
    the bytes (never the device memory, whatever the protocol) unpickle onto the device current then."""
    import pickle

    from fakecupy import ordering

    cp = fake_cupy
    a, side = _written_on_a_side_stream(cp)
    with pytest.raises(ordering.StreamOrderError, match=r"a copy to the host \(get\) on the null stream reads"):
        pickle.dumps(a)
    ordering.hazards.clear()  # the hazard raised above was expected
    cp.cuda.Stream.null.wait_event(side.record())
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with cp.cuda.Device(1):
            back = pickle.loads(pickle.dumps(a[::2], protocol=protocol))
        assert type(back) is type(a) and back.device.id == 1 and back.get().tolist() == [3, 3]
    rebuild, (host,) = a.__reduce_ex__(pickle.HIGHEST_PROTOCOL)  # not NumPy's, which pickles the memory itself
    assert rebuild is cp.array and type(host) is numpy.ndarray


@pytest.mark.python312
@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ (the buffer protocol from Python) is 3.12's")
def test_the_buffer_protocol_is_refused_as_cupy_refuses_device_memory_the_host_cannot_reach(fake_cupy, tmp_path):
    """CuPy's __getbuffer__ hands out only memory the host can reach (managed memory, HMM/ATS): memoryview of a
    device array, writing it to a file as bytes, hashing it, are TypeErrors (get() first)."""
    import hashlib

    a = fake_cupy.arange(4, dtype="float32")
    def write(a):
        with open(tmp_path / "a.bin", "wb") as f:
            f.write(a)

    for use in (memoryview, hashlib.sha256, bytearray, lambda a: numpy.frombuffer(a, "float32"), write):
        with pytest.raises(TypeError, match="Accessing a CuPy ndarry on CPU is not allowed"):
            use(a)
    assert bytes(memoryview(a.get())) == a.tobytes()  # the host copy, and tobytes (a get()), are fine


def test_dlpack_exports_device_memory_that_numpy_refuses_and_cupy_takes_back_in_stream_order(fake_cupy):
    """CuPy's __dlpack__ exports the array's own memory as a CUDA tensor (kDLCUDA, its device), so NumPy's
    from_dlpack refuses it in NumPy's words, unless asked for the host (dl_device=(kDLCPU, 0)): then a copy, as get()
    makes it. A consumer's stream waits for an event of CuPy's current stream (__dlpack__'s stream=); cupy.from_dlpack
    asks with the producer's device current and its current stream there, and shares the memory."""
    from fakecupy import ordering

    cp = fake_cupy
    with cp.cuda.Device(1):
        there = cp.arange(4, dtype="float32")
    assert there.__dlpack_device__() == (2, 1)
    with pytest.raises((RuntimeError, BufferError), match="Unsupported device in DLTensor"):
        numpy.from_dlpack(there)
    with cp.cuda.Device(1):
        host = numpy.from_dlpack(there, device="cpu")  # a get(): the host waited for device 1's null stream
    assert type(host) is numpy.ndarray and host.tolist() == [0, 1, 2, 3]
    shared = cp.from_dlpack(there)
    assert shared.device.id == 1 and cp.cuda.Device().id == 0
    with cp.cuda.Device(1):
        shared += 1
        assert there.get().tolist() == [1, 2, 3, 4]
    a = cp.arange(4, dtype="float32")  # written on device 0's null stream
    side = cp.cuda.Stream(non_blocking=True)
    with pytest.raises(ordering.StreamOrderError, match="on stream"):
        with side:
            a.fill(0)
    ordering.hazards.clear()  # the hazard raised above was expected
    capsule = a.__dlpack__(stream=side.ptr)  # side waits for the null stream now
    with side:
        cp.from_dlpack(capsule).fill(2)
    side.synchronize()
    assert a.get().tolist() == [2, 2, 2, 2]
    with pytest.warns(UserWarning, match="Stream 0 is passed"):
        cp.from_dlpack(a.__dlpack__(stream=0))


def _gemm_ex(cp, lda, handle=None, types=0, compute=68, algo=-1):
    import ctypes

    from cupy_backends.cuda.libs import cublas

    handle = cp.cuda.device.get_cublas_handle() if handle is None else handle
    x, out, one, zero = cp.ones((2, 2), "float32"), cp.empty((2, 2), "float32"), ctypes.c_float(1), ctypes.c_float(0)
    cublas.gemmEx(handle, 0, 0, 2, 2, 2, ctypes.addressof(one), x.data.ptr, types, lda, x.data.ptr, types, 2,
                  ctypes.addressof(zero), out.data.ptr, types, 2, compute, algo)
    return out


def _gemm_batched(cp, stride):
    import ctypes

    from cupy_backends.cuda.libs import cublas

    x, out, one, zero = cp.ones((2, 2, 2), "float32"), cp.empty((2, 2, 2), "float32"), ctypes.c_float(1), ctypes.c_float(0)
    cublas.gemmStridedBatchedEx(cp.cuda.device.get_cublas_handle(), 0, 0, 2, 2, 2, ctypes.addressof(one), x.data.ptr, 0, 2, stride, x.data.ptr, 0, 2, 4,
                                ctypes.addressof(zero), out.data.ptr, 0, 2, 4, 2, 68, -1)
    return out


def _nccl():
    import fakecupy.nccl

    return fakecupy.nccl


def _handle_of_1(cp):
    with cp.cuda.Device(1):
        return cp.cuda.device.get_cublas_handle()


def _stream_on_1(cp):
    with cp.cuda.Device(1):
        return cp.cuda.Stream(non_blocking=True)


def test_what_cupy_gives_where_numpy_gives_host_values(fake_cupy):
    """a[i] is a 0-d device view; bool() and format() of a device array are synchronising reads (refused in a
    capture); what CuPy accepts still runs: the right types, a timed event pair, a stream of the current device."""
    a = fake_cupy.arange(4, dtype="float32")
    x = a[1]
    assert isinstance(x, fake_cupy.ndarray) and x.shape == () and float(x) == 1.0
    x[...] = 7  # a view, as CuPy's
    assert a.get()[1] == 7 and f"{a[1]:.1f}" == "7.0" and bool(a[1]) and int(a.astype("int64")[1]) == 7
    assert [float(v) for v in a] == [0.0, 7.0, 2.0, 3.0] and isinstance(next(iter(a)), fake_cupy.ndarray)
    a.set(numpy.arange(4, dtype="float32"))
    out = numpy.empty(4, "float32")
    assert a.get(out=out) is out and out.tolist() == [0, 1, 2, 3]
    assert _event_pair(fake_cupy, timing=True) >= 0
    uid = _nccl().get_unique_id()
    assert isinstance(uid, bytes) and len(uid) == 128  # CuPy 14's, which NcclCommunicator requires
    _nccl().NcclCommunicator(1, uid, 0).allReduce(a.data.ptr, a.data.ptr, 4, 7, 0, 0)
    assert _gemm_ex(fake_cupy, lda=numpy.int64(2)).get().tolist() == [[2, 2], [2, 2]]
    assert _gemm_batched(fake_cupy, stride=numpy.int64(4)).get().tolist() == [[[2, 2], [2, 2]]] * 2
    with fake_cupy.cuda.Device(1):
        with _stream_on_1(fake_cupy):
            pass
    assert numpy.asarray(a.get()).tolist() == [0, 1, 2, 3] and fake_cupy.einsum("i,i", a, a).shape == ()
    s = fake_cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        with pytest.raises(fake_cupy.CUDARuntimeError, match="bool"):
            bool(a[0])
        with pytest.raises(fake_cupy.CUDARuntimeError):
            s.end_capture()


def test_empty_arrays_hold_no_zeros_as_cupys_pool_memory_need_not(fake_cupy):
    """cupy.empty / empty_like give a block of the memory pool as its last user left it; the stand-in's are
    all bytes 0xFF (NaN, -1), so a read of an element nobody wrote shows (numpy.empty often gives zeros)."""
    from gpunn.ops.base import bf16_dtype

    assert numpy.isnan(fake_cupy.empty((2, 3)).get()).all()
    assert numpy.isnan(fake_cupy.empty(4, bf16_dtype()).get().astype("float32")).all()
    assert fake_cupy.empty_like(fake_cupy.zeros((3, 2), "int32").T).get().tolist() == [[-1] * 3] * 2
    assert fake_cupy.empty((2, 2), order="F").flags.f_contiguous and fake_cupy.zeros(3).get().tolist() == [0.0] * 3
    # empty_like keeps a permuted prototype's axis order (order "K": CuPy 14's _creation/basic.py,
    # _get_strides_for_order_K): neither C nor F contiguous, and all of it uninitialised too
    like = fake_cupy.empty_like(fake_cupy.zeros((2, 3, 4)).transpose(0, 2, 1))
    assert like.strides == (96, 8, 32) and not (like.flags.c_contiguous or like.flags.f_contiguous)
    assert numpy.isnan(like.get()).all()


def test_matmul_in_place_makes_a_new_array_as_cupy_does(fake_cupy):
    """cupy.ndarray has no __imatmul__, so ``w @= x`` is ``w = w @ x`` there: a view into a parameter buffer is
    rebound to a new array and the buffer keeps its values (NumPy would write into it)."""
    buffer = fake_cupy.ones((2, 2), "float32")
    w = buffer[:]
    view = w
    w @= 2 * fake_cupy.ones((2, 2), "float32")
    assert w is not view and w.get().tolist() == [[4, 4], [4, 4]] and buffer.get().tolist() == [[1, 1], [1, 1]]


def test_events_and_streams_answer_as_cupys_do(fake_cupy):
    """Event.done and Stream.done are properties (cudaEventQuery, cudaStreamQuery): True for an event never recorded,
    as in CUDA, and once the host has waited; a stream's device_id is the device it was made on, -1 for the null
    stream (cupy/cuda/stream.pyx)."""
    cuda = fake_cupy.cuda
    event = cuda.Event()
    assert event.done is True and event.ptr
    cuda.get_current_stream().record(event)
    event.synchronize()
    assert event.done is True and cuda.Stream.null.done is True
    with cuda.Device(1):
        assert cuda.Stream(non_blocking=True).device_id == 1
    assert cuda.Stream.null.device_id == -1 and cuda.get_current_stream(0) is cuda.Stream.null


def test_the_gpu_memory_check_reads_the_devices_free_memory(fake_cupy):
    """preflight on the CuPy path: cudaMemGetInfo's free bytes plus the memory pool's free blocks. (The stand-in
    had neither before cupyapi11: the GPU branch raised AttributeError, which it swallows, so it never ran in CI.)
    An ensemble too big for them is refused, naming the device."""
    import gpunn
    from gpunn import backend, preflight

    gpu = backend.resolve("cuda")
    assert preflight.available_bytes(gpu) == fakecupy.state.free_memory == 12 << 30
    fakecupy.state.free_memory = 1 << 20
    with pytest.raises(MemoryError, match=r"but the device has 1\.0 MiB free"):
        gpunn.Ensemble([8, 64, 1], 64, device="cuda", seed=0)
    fakecupy.state.free_memory = 12 << 30
    ensemble = gpunn.Ensemble([8, 64, 1], 64, device="cuda", seed=0)
    assert fake_cupy.get_default_memory_pool().used_bytes() >= ensemble.params.nbytes > 0


def test_reading_cupy_functions_named_as_python_builtins_leaves_the_stand_ins_own_code_alone(fake_cupy):
    """The stand-in caches the NumPy functions it hands out as its module's globals; cupy.sum, cupy.min and
    cupy.any were then the sum(), min() and any() its own code calls (the memory pool's sum, gemm's stride check,
    the host-conversion guard)."""
    a = fake_cupy.ones(4, "float32")
    assert float(fake_cupy.sum(a)) == 4 and float(fake_cupy.min(a)) == 1 and bool(fake_cupy.any(a))
    assert fake_cupy.get_default_memory_pool().used_bytes() >= a.nbytes
    assert _gemm_batched(fake_cupy, stride=4).get().tolist() == [[[2, 2], [2, 2]]] * 2
    with pytest.raises(TypeError, match="Implicit conversion"):
        numpy.asarray([a, a])


def test_the_current_stream_is_per_device_as_in_cupy(fake_cupy):
    """CuPy keeps a current stream per thread and device (cupy/cuda/stream.pyx, _ThreadLocal): inside a stream of
    device 0, entering device 1 makes device 1's own current stream (the null stream) current, and leaving it gives
    device 0's stream back; a stream entered on device 1 is left on device 1."""
    cuda = fake_cupy.cuda
    s0 = cuda.Stream(non_blocking=True)
    with s0:
        assert cuda.get_current_stream() is s0
        with cuda.Device(1):
            assert cuda.get_current_stream() is cuda.Stream.null
            fake_cupy.ones(2) + 1  # on device 1's null stream (was: a kernel on a stream of device 0)
            s1 = cuda.Stream(non_blocking=True)
            with s1:
                assert cuda.get_current_stream() is s1
            assert cuda.get_current_stream() is cuda.Stream.null
        assert cuda.get_current_stream() is s0
    assert cuda.get_current_stream() is cuda.Stream.null


def test_bool_and_format_of_a_device_array_are_synchronising_reads(fake_cupy):
    """bool() and format() copy to the host on the current stream (CuPy: bool(self.get()), format(self.get(), spec)):
    reading what another stream's unfinished work writes is a stream-order error, and both are refused while a
    stream is captured, as float() is."""
    from fakecupy import ordering

    cp, null = fake_cupy, fake_cupy.cuda.Stream.null
    side = cp.cuda.Stream(non_blocking=True)
    x = cp.zeros(4, "float32")
    side.wait_event(null.record())
    x.set(numpy.ones(4, "float32"), stream=side)  # side writes x; the null stream has not waited for it
    for read in (lambda: bool(x[0]), lambda: format(x[0], ".1f")):
        with pytest.raises(ordering.StreamOrderError, match="wrote in its op"):
            read()
    side.synchronize()
    assert bool(x[0]) and format(x[0], ".1f") == "1.0"
    ordering.hazards.clear()  # the hazards raised above were expected
    s = cp.cuda.Stream()
    with s:
        s.begin_capture()
        with pytest.raises(cp.CUDARuntimeError, match="formatting a device array"):
            format(x[0], ".1f")
        with pytest.raises(cp.CUDARuntimeError):
            s.end_capture()


def test_a_stream_is_left_on_the_device_it_was_entered_on(fake_cupy):
    """CuPy pops a stream on the device it pushed it on: a stream of device 0 left while device 1 is current gives
    device 0 its previous stream back and leaves device 1's alone."""
    cuda = fake_cupy.cuda
    s0 = cuda.Stream(non_blocking=True)
    s0.__enter__()
    cuda.Device(1).use()
    s0.__exit__(None, None, None)
    assert cuda.get_current_stream() is cuda.Stream.null
    cuda.Device(0).use()
    assert cuda.get_current_stream() is cuda.Stream.null  # not s0, still current on device 0


def test_device_arrays_take_the_device_path_though_the_stand_ins_are_numpy_arrays(fake_cupy, monkeypatch):
    """tests/fakecupy's arrays are NumPy subclasses, so ``isinstance(a, numpy.ndarray)`` sent them down the host
    path (numpy.ascontiguousarray on a device array in ops.base.narrow, NumPy's may_share_memory for a device
    view) where a GPU takes the CuPy one: gpunn tells device arrays by gpunn.backend.is_device_array."""
    from gpunn import backend, model
    from gpunn.ops.base import bf16_dtype, narrow, round_to_tf32, widen

    host = numpy.array([1.0, 1.00390625, -3.5, 1e-40, numpy.nan, numpy.inf], "float32")
    x = fake_cupy.asarray(host)
    assert backend.is_device_array(x) and not backend.is_device_array(host)
    for fn in (lambda a: narrow(a, bf16_dtype()), round_to_tf32, lambda a: widen(narrow(a, bf16_dtype()))):
        on_device = fn(x)
        assert isinstance(on_device, fake_cupy.ndarray)
        numpy.testing.assert_array_equal(on_device.get().view(numpy.uint8), fn(host).view(numpy.uint8))

    def host_only(*args):
        raise AssertionError("NumPy's may_share_memory given a device array (a GPU takes the owner rule)")
    monkeypatch.setattr(numpy, "may_share_memory", host_only)
    z = fake_cupy.zeros((4, 3))
    assert model._may_share_memory(z[:2].reshape(3, 2), z[:2]) and not model._may_share_memory(z, fake_cupy.zeros(3))


def test_the_stand_in_is_in_use_only_where_it_is_cupy(monkeypatch):
    """On a GPU the tests stage collects this module too, so ``fakecupy`` is in sys.modules beside the real CuPy
    and its counters never move: a test that took its presence for 'running on the stand-in' asserted on them
    there (test_ensemble_precision.py's member test: ``set() == {'32F'}`` in its 6 cases; reproduced by loading
    the stand-in a second time as ``cupy``). ``fakecupy.in_use()`` asks whether it is the ``cupy`` imported."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))  # a GPU's CuPy, for this question
    assert "fakecupy" in sys.modules and not fakecupy.in_use()
    monkeypatch.delitem(sys.modules, "cupy")
    assert not fakecupy.in_use()
    fakecupy.install(monkeypatch)
    assert fakecupy.in_use()


def test_gpunn_fake_cupy_gpu_makes_a_second_copy_the_cupy_and_leaves_fakecupy_a_bystander(monkeypatch):
    """GPUNN_FAKE_CUPY=gpu (tests/conftest.py) arranges the stand-in as a GPU run has CuPy: the cupy in use is
    not the fakecupy module the tests import, whose counters stay still, and the tests take their GPU branches."""
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # put back after the test
    before = set(sys.modules)
    try:
        copy = fakecupy.load_as_cupy()
        assert sys.modules["cupy"] is copy and copy is not fakecupy
        assert copy.in_use() and not fakecupy.in_use()
        x = copy.asarray(numpy.arange(3.0))
        assert isinstance(x, copy.ndarray) and not isinstance(x, fakecupy.ndarray)
        assert copy.state is not fakecupy.state
    finally:
        for name in set(sys.modules) - before:  # its submodules (cupy.kernels, ...)
            del sys.modules[name]
