"""Synthetic tasks: seeded, shaped, on the target device, and streamable past memory."""
import re

import numpy
import pytest
from stand_in import is_stand_in

import gpunn
from gpunn import datasets


@pytest.mark.parametrize("task", list(datasets.TASKS))
def test_shapes_dtype_and_seeding(task, device, to_host):
    X, Y = datasets.make(task, 300, 6, seed=3, device=device, dtype="float64")
    assert X.shape == (300, 6) and Y.shape == (300, 1) and X.dtype == Y.dtype == numpy.float64
    X2, Y2 = datasets.make(task, 300, 6, seed=3, device=device, dtype="float64")
    numpy.testing.assert_array_equal(to_host(X), to_host(X2))
    numpy.testing.assert_array_equal(to_host(Y), to_host(Y2))
    X3, _ = datasets.make(task, 300, 6, seed=4, device=device, dtype="float64")
    assert not numpy.array_equal(to_host(X), to_host(X3))


@pytest.mark.parametrize("task", ["teacher", "linear", "sinusoid"])
def test_multi_output(task):
    X, Y = datasets.make(task, 100, 5, n_outputs=3, device="cpu")
    assert Y.shape == (100, 3)


def test_targets_follow_the_formula_without_noise():
    X, Y = datasets.make("friedman1", 500, 7, noise=0, device="cpu", dtype="float64")
    x = X.T
    want = 10 * numpy.sin(numpy.pi * x[0] * x[1]) + 20 * (x[2] - 0.5) ** 2 + 10 * x[3] + 5 * x[4]
    numpy.testing.assert_allclose(Y[:, 0], want, rtol=1e-12)
    assert X.min() >= 0 and X.max() <= 1


def test_noise_has_the_requested_scale():
    _, clean = datasets.make("linear", 20000, 4, noise=0, seed=1, device="cpu", dtype="float64")
    _, noisy = datasets.make("linear", 20000, 4, noise=0.5, seed=1, device="cpu", dtype="float64")
    assert numpy.std(noisy - clean) == pytest.approx(0.5, rel=0.03)


def test_stream_yields_exactly_the_rows_of_make_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK_ROWS", 1000)  # several chunks, batches straddling them
    X, Y = datasets.make("teacher", 4321, 5, seed=7, device="cpu")
    batches = list(datasets.stream("teacher", 4321, 300, 5, seed=7, device="cpu"))
    assert [len(b[0]) for b in batches] == [300] * 14 + [121]
    numpy.testing.assert_array_equal(numpy.concatenate([b[0] for b in batches]), X)
    numpy.testing.assert_array_equal(numpy.concatenate([b[1] for b in batches]), Y)


def test_stream_is_lazy_so_it_can_exceed_memory():
    stream = datasets.stream("linear", 10**12, 64, 3, device="cpu")  # 10^12 rows: never materialised
    Xb, Yb = next(stream)
    assert Xb.shape == (64, 3) and Yb.shape == (64, 1)


@pytest.mark.gpu
def test_data_is_born_on_the_gpu(gpu):
    import cupy

    X, Y = datasets.make("teacher", 1000, 4, device="cuda")
    assert isinstance(X, cupy.ndarray) and isinstance(Y, cupy.ndarray)
    assert float(Y.std()) == pytest.approx(1.0, abs=0.2)


def test_each_chunk_and_each_task_draws_from_a_stream_of_its_own(monkeypatch):
    """Chunk k is drawn from the stream (seed, task, k): chunks of one dataset are not the same rows over again,
    and two tasks of one seed (both X ~ N(0, 1)) do not share their inputs."""
    monkeypatch.setattr(datasets, "CHUNK_ROWS", 100)
    X, _ = datasets.make("linear", 300, 3, seed=5, device="cpu", dtype="float64")
    assert not numpy.array_equal(X[:100], X[100:200]) and not numpy.array_equal(X[100:200], X[200:])
    X_teacher, _ = datasets.make("teacher", 300, 3, seed=5, device="cpu", dtype="float64")
    assert not numpy.isin(X, X_teacher).any()


def test_a_task_used_in_both_dtypes_computes_its_targets_in_each_from_its_own_constants():
    """A Task keeps its constants on the device per dtype: the float64 rows of a task first used in float32 are
    those of a fresh task, not targets computed from constants rounded to float32."""
    from gpunn.backend import CPU

    task = datasets.get_task("linear", 6, seed=2)
    datasets.make(task, 50, device="cpu", dtype="float32")
    assert [c.dtype for c in task.constants(CPU, numpy.float32)] == [numpy.float32]
    _, Y = datasets.make(task, 50, device="cpu", dtype="float64")
    _, fresh = datasets.make("linear", 50, 6, seed=2, device="cpu", dtype="float64")
    numpy.testing.assert_array_equal(Y, fresh)


@pytest.mark.gpu
def test_a_task_used_on_two_gpus_keeps_its_constants_on_each(gpu):
    """A Task's constants are copied once per device: a task first used on cuda:0 and then on cuda:1 computes
    cuda:1's targets from constants there, as a fresh task does, in make and in stream (each on cuda:1)."""
    from gpunn import backend

    if backend.probe_cuda()[1] < 2:
        pytest.skip("needs two GPUs")
    task = datasets.get_task("linear", 4, seed=2)
    datasets.make(task, 50, device="cuda:0")
    _, Y = datasets.make(task, 50, device="cuda:1")
    _, fresh = datasets.make("linear", 50, 4, seed=2, device="cuda:1")
    assert Y.device.id == 1
    assert [c.device.id for c in task.constants(backend.resolve("cuda:1"), numpy.float32)] == [1]
    numpy.testing.assert_array_equal(Y.get(), fresh.get())
    _, Y_streamed = next(datasets.stream(task, 50, 50, device="cuda:1"))
    assert Y_streamed.device.id == 1
    numpy.testing.assert_array_equal(Y_streamed.get(), fresh.get())


def test_the_noise_is_gaussian_centred_and_drawn_for_each_output_apart():
    """noise: the standard deviation of Gaussian noise added to Y. Standardized, the difference from the noiseless
    rows has mean 0, about 4.55% of its values beyond 2 (a Gaussian's two-sided tail), and no correlation between
    two outputs."""
    _, clean = datasets.make("linear", 20000, 4, n_outputs=2, noise=0, seed=1, device="cpu", dtype="float64")
    _, noisy = datasets.make("linear", 20000, 4, n_outputs=2, noise=0.5, seed=1, device="cpu", dtype="float64")
    E = (noisy - clean) / 0.5
    numpy.testing.assert_allclose(E.mean(axis=0), 0, atol=0.03)  # 4 standard errors (1/sqrt(20000))
    numpy.testing.assert_allclose((abs(E) > 2).mean(axis=0), 0.0455, atol=0.006)  # 4 standard errors
    assert abs(numpy.corrcoef(E.T)[0, 1]) < 0.03


def _affine_residual(X, Y):
    """The largest residual of the least-squares fit of Y by X and an intercept, and the fit's coefficients."""
    A = numpy.hstack([X, numpy.ones((len(X), 1))])
    coef = numpy.linalg.lstsq(A, Y, rcond=None)[0]
    return abs(A @ coef - Y).max(), coef


def test_a_teacher_is_an_mlp_of_its_hidden_widths_with_standardized_outputs():
    """hidden=() leaves one affine layer (no tanh on the output); the default (32, 32) is no affine map. Each
    output has mean 0 and variance 1 (up to the 4,096 rows the scaling is measured on), whatever the seed."""
    X, Y = datasets.make("teacher", 500, 4, n_outputs=2, noise=0, hidden=(), seed=1, device="cpu", dtype="float64")
    assert _affine_residual(X, Y)[0] < 1e-9
    X, Y = datasets.make("teacher", 500, 4, noise=0, seed=1, device="cpu", dtype="float64")
    assert _affine_residual(X, Y)[0] > 0.1
    for seed in range(3):
        _, Y = datasets.make("teacher", 20000, 5, n_outputs=3, noise=0, seed=seed, device="cpu", dtype="float64")
        numpy.testing.assert_allclose(Y.mean(axis=0), 0, atol=0.06)
        numpy.testing.assert_allclose(Y.std(axis=0), 1, atol=0.06)
    # standardized exactly on the 4,096 rows of its calibration draw (the rows it measures them on)
    from gpunn.backend import CPU
    from gpunn.rng import host_rng

    task = datasets.get_task("teacher", 5, n_outputs=3, seed=2)
    calibration = host_rng(2, "teacher-calibration").standard_normal((4096, 5))
    Y = task.targets(numpy, calibration, task.constants(CPU, numpy.float64))
    numpy.testing.assert_allclose(Y.mean(axis=0), 0, atol=1e-12)
    numpy.testing.assert_allclose(Y.std(axis=0), 1, rtol=1e-9)
    # each layer's weights are N(0, 1/fan_in), its biases N(0, 1/4): a hidden unit's input has variance about 1.25
    # for unit-variance inputs, so its tanh is neither linear nor saturated
    W1, b1, W2, b2, W3, b3, *_ = datasets.get_task("teacher", 2, seed=0).host_constants()
    for W in (W1, W2, W3):
        assert W.std() * numpy.sqrt(W.shape[0]) == pytest.approx(1, abs=0.3), W.shape
    assert numpy.concatenate([b1, b2, b3]).std() == pytest.approx(0.5, abs=0.15)


def test_a_teachers_weights_and_a_linear_tasks_coefficients_follow_the_seed():
    """The seed draws the task itself, not only its inputs: one X maps to other targets under another seed, and
    not to the same ones scaled and shifted (a teacher's outputs are standardized per seed)."""
    from gpunn.backend import CPU

    X = numpy.random.default_rng(0).standard_normal((20, 4))
    for name in ("teacher", "linear"):
        one, two = (datasets.get_task(name, 4, noise=0, seed=s) for s in (1, 2))
        Y1, Y2 = (t.targets(numpy, X, t.constants(CPU, numpy.float64)) for t in (one, two))
        assert _affine_residual(Y1, Y2)[0] > 0.1, name


def test_a_linear_task_is_x_times_a_dense_gaussian_b_of_variance_one_over_n():
    """Y = X B exactly (no intercept), every feature counts, and B's entries have standard deviation
    1/sqrt(n_features), so each output's variance is about 1."""
    n = 100
    X, Y = datasets.make("linear", 300, n, n_outputs=2, noise=0, seed=3, device="cpu", dtype="float64")
    residual, coef = _affine_residual(X, Y)
    assert residual < 1e-9 and abs(coef[-1]).max() < 1e-9
    B = coef[:-1]
    assert abs(B).min() > 1e-9  # no feature left out
    assert B.std() * numpy.sqrt(n) == pytest.approx(1, abs=0.2)  # 200 draws: 0.2 is 4 standard errors
    numpy.testing.assert_allclose(Y.std(axis=0), 1, atol=0.35)


def test_a_sinusoid_of_one_feature_is_a_unit_sine_of_the_frequency_asked_with_a_phase_per_output():
    """y_k = sin(frequency x d_k + phase_k) with d_k a unit direction (+1 or -1 for one feature): each output is
    exactly a sin(f x) + b cos(f x) with a^2 + b^2 = 1, its phases differ, and x spans (-pi, pi)."""
    f = 2.0
    X, Y = datasets.make("sinusoid", 2000, 1, n_outputs=3, noise=0, frequency=f, seed=4, device="cpu",
                         dtype="float64")
    assert -numpy.pi <= X.min() < -3 and 3 < X.max() <= numpy.pi
    A = numpy.hstack([numpy.sin(f * X), numpy.cos(f * X)])
    (a, b), residual = numpy.linalg.lstsq(A, Y, rcond=None)[:2]
    assert residual.max() < 1e-18
    numpy.testing.assert_allclose(a**2 + b**2, 1, rtol=1e-9)
    phases = numpy.sort(numpy.arctan2(b, a) % (2 * numpy.pi))
    assert numpy.diff(phases).min() > 1e-3


def test_rebatch_cuts_pieces_of_any_size_into_whole_batches_in_order():
    """Batches of exactly batch_size rows (the last shorter) over pieces shorter and longer than a batch, the
    first skip rows dropped: the rows of the concatenated pieces, cut in order."""
    sizes, batch, skip = [3, 1, 4, 2, 12, 1], 5, 2
    X = numpy.arange(sum(sizes) * 2.0).reshape(-1, 2)
    Y = -numpy.arange(sum(sizes) * 1.0).reshape(-1, 1)
    cuts = numpy.cumsum([0, *sizes])
    pieces = [(X[lo:hi], Y[lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:])]
    got = list(datasets.rebatch(pieces, batch, numpy, skip=skip))
    want = [(X[i:i + batch], Y[i:i + batch]) for i in range(skip, len(X), batch)]
    assert [len(b[0]) for b in got] == [len(b[0]) for b in want] == [5, 5, 5, 5, 1]
    for (gx, gy), (wx, wy) in zip(got, want):
        numpy.testing.assert_array_equal(gx, wx)
        numpy.testing.assert_array_equal(gy, wy)
    # a batch completed by a whole piece, one row short of batch_size: it waits for the next piece's row
    pieces = [(X[:2], Y[:2]), (X[2:4], Y[2:4]), (X[4:7], Y[4:7])]
    assert [len(x) for x, _ in datasets.rebatch(pieces, 5, numpy)] == [5, 2]


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="friedman1", n_features=4), "friedman1 needs at least 5 features"),
    (dict(task="friedman1", n_features=5, n_outputs=2), "friedman1 has one output"),
    (dict(task=["teacher"]), r"unknown task \['teacher'\]; choose one of: teacher, linear, friedman1, sinusoid"),
])
def test_friedman1s_bounds_and_a_task_that_is_no_name_are_refused(kwargs, match):
    """Friedman #1 reads features 0-4 and gives one output: 4 features or 2 outputs are refused as such (4 had
    NumPy's IndexError at the first chunk; 2 outputs were one column written twice); a list is no task name."""
    with pytest.raises(ValueError, match=match):
        datasets.make(**{"n_samples": 10, "device": "cpu", **kwargs})
    datasets.make("friedman1", 10, 5, device="cpu")  # the least it takes


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples must be a positive integer"), (dict(batch_size=0), "batch_size must be a positive"),
    (dict(dtype="float16"), "dtype must be one of .*got 'float16'")])
def test_stream_refuses_what_make_refuses(kwargs, match):
    """stream takes make's options and checks them as make does, when it is called (it checked them only at the
    first batch, being a generator itself); a batch_size of 0 would yield empty batches for ever."""
    with pytest.raises(ValueError, match=match):
        datasets.stream(**{"n_samples": 10, "batch_size": 4, "n_features": 3, "device": "cpu", **kwargs})


@pytest.mark.parametrize("make", [datasets.make, datasets.stream, gpunn.data.synthetic])
@pytest.mark.parametrize("task, key, meant", [("linear", "n_feature", "n_features"), ("teacher", "hiden", "hidden"),
                                              ("friedman1", "noize", "noise")])
def test_a_misspelt_keyword_is_named_before_a_missing_n_features(make, task, key, meant):
    """make("linear", 100, n_feature=3) said "the linear task needs n_features (its input width), got None", and
    make("teacher", 100, 3, hiden=8) "Teacher.__init__() got an unexpected keyword argument 'hiden'": the keyword
    given was named by neither. make, stream and gpunn.data.synthetic name it, and the one meant, first."""
    call = getattr(make, "__name__", "")
    named = re.escape("gpunn.data.synthetic" if call == "synthetic" else call)  # (a maker names its own call)
    with pytest.raises(TypeError, match=rf"^{named}\(\) got an unexpected "
                                        rf"keyword argument '{key}' \(did you mean {meant}\?\)$"):
        make(task, 100, **{key: 3}, **({} if key == "n_feature" else {"n_features": 5}), device="cpu")


def _chunk_made_alone(task, backend, index, rows, dtype):
    """Chunk ``index`` made on its own, as make made each chunk before Task.chunks: the targets of its rows alone."""
    from gpunn.rng import DeviceRNG

    rng = DeviceRNG(backend, task.seed, task.name, index)
    X = task.inputs([rng], [rows], dtype)
    xp = datasets.ChunkProducts(backend, [rows])  # (on a GPU: cuBLAS's GemmEx, as the stack's products)
    Y = task.targets(xp, X, task.constants(backend, X.dtype)).astype(dtype, copy=False)
    if task.noise:
        Y += task.noise * rng.normal(Y.shape, dtype)
    return X, Y


@pytest.mark.parametrize("task", list(datasets.TASKS))
def test_chunks_made_together_hold_the_rows_each_has_alone(task, device, to_host):
    """Task.chunks (a synthetic source's window on a GPU) draws each chunk from its own stream and computes the
    targets once over the stack, a matrix product per chunk: in any order, a short chunk among them, each chunk's
    rows are exactly those it has made alone (as make and the CPU make them)."""
    import gpunn

    backend = gpunn.backend.resolve(device)
    made = datasets.get_task(task, 6, 1 if task == "friedman1" else 2, seed=7)
    chunks = [(5, 704), (2, 1024), (0, 1024), (9, 333)]  # (a GPU's chunks start 256-byte aligned, as in a source)
    with backend.use():
        X, Y = made.chunks(backend, chunks, "float32")
        alone = [_chunk_made_alone(made, backend, m, rows, "float32") for m, rows in chunks]
    assert X.shape == (3085, 6) and Y.shape == (3085, made.n_outputs)
    numpy.testing.assert_array_equal(to_host(X), numpy.concatenate([to_host(a[0]) for a in alone]))
    numpy.testing.assert_array_equal(to_host(Y), numpy.concatenate([to_host(a[1]) for a in alone]))


def _launches(cupy, work):
    """What ``work()`` issues on tests/fakecupy: its CuPy operations that launch a kernel (allocations left out), its
    RawKernel launches, its copies from the host, its cuRAND draws and its cuBLAS products."""
    import collections

    before = collections.Counter(cupy.state.ops)
    work()
    issued = cupy.state.ops - before
    return sum(n for name, n in issued.items() if name not in ("empty", "empty_like"))


@pytest.mark.gpu
def test_a_window_of_chunks_issues_two_draws_and_one_elementwise_launch_per_operation(gpu):
    """A GPU stream's training thread issues its windows' generation, which bounded a graph step's stream at 0.82x
    the in-memory rate on an H200 (issue 12; bench/gpu_checks/streams.py). Made together (Task.chunks), a window's
    16 teacher chunks cost 16 x 3 products, 2 Philox draws for all (inputs, noise: kernels/random.cu, each after a
    copy of its streams' table) and 9 elementwise launches (3 bias adds, 2 tanh, 2 to standardize, the noise's
    scaling and add): 61. With cuRAND they cost 91: 16 x (2 draws + 3 products), 11 elementwise (the draws' 2
    stacks), and 16 generator re-seeds not counted here (each a host set-up and a launch)."""
    cupy = pytest.importorskip("cupy")
    if not is_stand_in(cupy):
        pytest.skip("counts the launches tests/fakecupy records")
    task = datasets.get_task("teacher", 4, 1, seed=1)  # hidden (32, 32): 3 products per chunk
    with gpu.use():
        task.chunk(gpu, 0, 1000, "float32")  # the constants on the device (copied once)
        one = _launches(cupy, lambda: task.chunk(gpu, 3, 1000, "float32"))
        window = _launches(cupy, lambda: task.chunks(gpu, [(m, 1000) for m in range(16)], "float32"))
    assert one == 2 * 2 + 3 + 9
    assert window == 2 * 2 + 16 * 3 + 9


def test_make_draws_its_rows_in_chunks_of_65536_each_from_its_own_stream():
    """The module's layout, which fixes a seed's rows: row 65,536 is the first of chunk 1 (rows made with another
    chunk size would be other rows for the same seed), and the rows before it are chunk 0's."""
    X, Y = datasets.make("linear", 65_537, 2, seed=3, device="cpu", dtype="float64")
    task = datasets.get_task("linear", 2, seed=3)
    X0, Y0 = task.chunk(gpunn.backend.CPU, 0, 65_536, "float64")
    X1, Y1 = task.chunk(gpunn.backend.CPU, 1, 1, "float64")
    assert datasets.CHUNK_ROWS == 65_536
    numpy.testing.assert_array_equal(X, numpy.concatenate([X0, X1]))
    numpy.testing.assert_array_equal(Y, numpy.concatenate([Y0, Y1]))


def test_a_task_object_takes_no_task_options_and_no_keyword_stands_for_the_others():
    """A Task made already has its options set: make(Teacher(3), hidden=...) is refused, not run with the object's
    own hidden widths without a word. The names a refusal may hint are make's own and the task's, never the
    ``**kwargs`` that collects the task's ('kwarg' is no misspelt option)."""
    with pytest.raises(TypeError, match=r"^make\(\) got an unexpected keyword argument 'hidden'"):
        datasets.make(datasets.Teacher(3), 10, hidden=(4,), device="cpu")
    with pytest.raises(TypeError, match=r"^make\(\) got an unexpected keyword argument 'kwarg'$"):
        datasets.make("linear", 10, 2, kwarg=1, device="cpu")


def test_each_tasks_defaults_are_those_make_says():
    """make's docstring: noise 0.1 for teacher and linear, 1.0 for friedman1, 0.05 for sinusoid; friedman1 10
    features and sinusoid 1, teacher and linear none of their own; a sinusoid's frequency 1 (y = sin(+-x + phase)
    for one feature). gpunn train's unset --noise and --features are these (default_noise, default_features)."""
    assert {name: datasets.default_noise(name) for name in datasets.TASKS} == {
        "teacher": 0.1, "linear": 0.1, "friedman1": 1.0, "sinusoid": 0.05}
    assert {name: datasets.default_features(name) for name in datasets.TASKS} == {
        "teacher": None, "linear": None, "friedman1": 10, "sinusoid": 1}
    X, Y = datasets.make("sinusoid", 500, noise=0, seed=4, device="cpu", dtype="float64")
    A = numpy.hstack([numpy.sin(X), numpy.cos(X)])
    (a, b), residual = numpy.linalg.lstsq(A, Y, rcond=None)[:2]
    assert residual.max() < 1e-18 and a**2 + b**2 == pytest.approx(1, rel=1e-9)
