"""The small MLP's CPU step as one Numba call (gpunn.ops.mlp_step, MLP.train_step_and_update) against the generic
step (train_step, then the optimizer's step), bit for bit: where it runs, training gives the generic path's
parameters, optimizer state and losses exactly; where the generic path would compute differently (another
product, another kernel, another optimizer) or the net is not small, it does not run."""
import numpy
import pytest

import gpunn
import gpunn.model
from gpunn.ops import mlp_step
from gpunn.ops.cblas import mkl_blas, numpy_blas
from gpunn.ops.cpu import numba

pytestmark = pytest.mark.skipif(numba is None or numpy_blas("float32") is None or numpy_blas("float64") is None,
                                reason="the one-call step needs Numba and NumPy's BLAS bound (gpunn.ops.cblas)")


@pytest.fixture
def kernel_calls(monkeypatch):
    """The one calls run so far: "step" (with Adam's step in it) or "gradients" (forward and backward) each."""
    calls = []

    def counted(name, fn):
        def run(*args):
            result = fn(*args)
            if result is not None:
                calls.append(name)
            return result
        return run

    monkeypatch.setattr(gpunn.model, "one_call_step", counted("step", mlp_step.one_call_step))
    monkeypatch.setattr(gpunn.model, "one_call_gradients", counted("gradients", mlp_step.one_call_gradients))
    return calls


def generic(m):
    """The generic step from here on (in monkeypatch context m)."""
    m.setattr(gpunn.model, "one_call_step", lambda *args: None)
    m.setattr(gpunn.model, "one_call_gradients", lambda *args: None)


def each_way(monkeypatch, run):
    """[run() as it is, run() with the generic step forced]."""
    results = []
    for generic_step in (False, True):
        with monkeypatch.context() as m:
            if generic_step:
                generic(m)
            results.append(run())
    return results


def data(rows=300, inputs=16, outputs=1, dtype="float32", scale=1):
    rng = numpy.random.default_rng(0)
    X = scale * rng.standard_normal((rows, inputs))
    Y = numpy.sin(X[:, :outputs]) + 0.1 * rng.standard_normal((rows, outputs))
    return X.astype(dtype), Y.astype(dtype)


def trained(monkeypatch, generic_step, sizes=(16, 32, 24, 1), optimizer="adam", rows=300, fit=None, **options):
    """(params, losses, optimizer state, steps) of a fit, the generic step forced where ``generic_step``."""
    with monkeypatch.context() as m:
        if generic_step:
            generic(m)
        scale = options.pop("scale", 1)
        X, Y = data(rows, sizes[0], sizes[-1], options.get("dtype", "float32"), scale)
        model = gpunn.MLP(list(sizes), device="cpu", seed=3, **options)
        opt = optimizer() if callable(optimizer) else optimizer
        history = model.fit(X, Y, optimizer=opt, verbose=False, handle_interrupt=False, seed=5,
                            **{"epochs": 3, "batch_size": 64, **(fit or {})})
        state = {k: v.copy() for k, v in model.optimizer.state.items()}
        return model.params.copy(), history["loss"] + history.get("val_loss", []), state, model.optimizer.steps


def assert_same(a, b):
    assert a[0].tobytes() == b[0].tobytes()
    assert a[1] == b[1]
    assert a[2].keys() == b[2].keys() and all(a[2][k].tobytes() == b[2][k].tobytes() for k in a[2])
    assert a[3] == b[3]


def row_weights(rows):
    return numpy.random.default_rng(7).uniform(0, 3, rows)


RUNS = {  # the one call runs every step of these: with the optimizer's step in it for Adam and AdamW
    "adam": {},
    "sgd": dict(optimizer="sgd"),
    "momentum": dict(optimizer="momentum"),
    "nesterov, weight decay": dict(optimizer=lambda: gpunn.Nesterov(lr=0.01, momentum=0.8, weight_decay=0.01)),
    "an Adam subclass": dict(optimizer=lambda: type("MyAdam", (gpunn.Adam,), {})()),
    "adamw": dict(optimizer=lambda: gpunn.AdamW(lr=2e-3, weight_decay=0.05)),
    "adam coupled L2": dict(optimizer=lambda: gpunn.Adam(lr=2e-3, weight_decay=0.05)),
    "adam betas eps": dict(optimizer=lambda: gpunn.Adam(lr=3e-3, beta1=0.5, beta2=0.9, eps=1e-3)),
    # beta1**t by Python's pow, as Adam.step forms it: NumPy's array power is an ulp off it at t = 3 for 0.99
    "adam beta1 0.99 float64": dict(dtype="float64", optimizer=lambda: gpunn.Adam(beta1=0.99, beta2=0.95)),
    "float64": dict(dtype="float64"),
    "adamw float64": dict(dtype="float64", optimizer=lambda: gpunn.AdamW(weight_decay=0.1)),
    "one hidden layer": dict(sizes=(16, 24, 1)),
    "three hidden layers": dict(sizes=(16, 48, 32, 24, 1)),
    "narrow 16-3-5-1": dict(sizes=(16, 3, 5, 1)),
    "input 2": dict(sizes=(2, 16, 1)),
    # the output layer's dA: a broadcast multiply at rows x width >= 4096, BLAS's k = 1 product below
    "batch 128 width 64": dict(sizes=(16, 64, 64, 1), fit=dict(batch_size=128)),
    "batch 9": dict(sizes=(16, 64, 64, 1), rows=45, fit=dict(batch_size=9)),
    "partial last batch, cosine, validation": dict(rows=301, fit=dict(schedule="cosine", validation_fraction=0.2)),
    "full batch": dict(fit=dict(batch_size=None)),
    # tanh and sigmoid hidden layers: NumPy's tanh and exp loops called from the kernel (gpunn.ops.ufuncs)
    "tanh": dict(activation="tanh"),
    "sigmoid": dict(activation="sigmoid"),
    "tanh sgd": dict(activation="tanh", optimizer="sgd"),
    "sigmoid momentum": dict(activation="sigmoid", optimizer="momentum"),
    "tanh adamw float64": dict(activation="tanh", dtype="float64", optimizer=lambda: gpunn.AdamW(weight_decay=0.1)),
    "sigmoid float64": dict(activation="sigmoid", dtype="float64"),
    "tanh saturating": dict(activation="tanh", scale=30),
    "sigmoid saturating float64": dict(activation="sigmoid", scale=30, dtype="float64"),
    "sigmoid, relu, tanh": dict(sizes=(16, 48, 32, 24, 1), activation=["sigmoid", "relu", "tanh"]),
    "tanh batch 128 width 64": dict(activation="tanh", sizes=(16, 64, 64, 1), fit=dict(batch_size=128)),
    "sigmoid batch 9": dict(activation="sigmoid", sizes=(16, 64, 64, 1), rows=45, fit=dict(batch_size=9)),
    "tanh narrow 16-3-5-1": dict(activation="tanh", sizes=(16, 3, 5, 1)),
    # a hidden layer's forward product of k <= 8 into >= 4096 elements: CpuOps.matmul's small-k kernel, not BLAS
    "input 4: a small-k forward product": dict(sizes=(4, 64, 64, 1), rows=256, fit=dict(batch_size=128)),
    "input 8, sgd": dict(sizes=(8, 64, 64, 1), rows=256, optimizer="sgd", fit=dict(batch_size=128)),
    "input 2, tanh, float64": dict(sizes=(2, 64, 64, 1), rows=256, activation="tanh", dtype="float64",
                                   fit=dict(batch_size=128)),
    "hidden width 8 into 64, sigmoid": dict(sizes=(16, 8, 64, 1), rows=256, activation="sigmoid",
                                            fit=dict(batch_size=128)),
    "input 3, 600 rows": dict(sizes=(3, 8, 1), rows=600, fit=dict(batch_size=None)),
    # the small-k forward product from exactly 4096 elements out: 65 x 63 = 4095 by BLAS, 64 x 64 = 4096 not
    "input 5, 65 rows x 63 = 4095: BLAS": dict(sizes=(5, 63, 16, 1), rows=65, fit=dict(batch_size=None)),
    "input 5, 64 rows x 64 = 4096: small-k": dict(sizes=(5, 64, 16, 1), rows=64, fit=dict(batch_size=None)),
    # the first hidden layer has no dA below it: a width of 8 over 128 x 64 inputs is no small-k product
    "first hidden width 8 over input 64": dict(sizes=(64, 8, 16, 1), rows=256, fit=dict(batch_size=128)),
    "65535 parameters": dict(sizes=(432, 151, 1), rows=128, fit=dict(batch_size=64, epochs=1)),
    # sample_weight: Y's second column is each row's weight (gpunn.sample_weights), which the kernel's loss reads
    "weighted": dict(fit=dict(sample_weight=row_weights(300))),
    "weighted sgd float64": dict(optimizer="sgd", dtype="float64", fit=dict(sample_weight=row_weights(300))),
    "weighted tanh adamw, validation": dict(activation="tanh", optimizer=lambda: gpunn.AdamW(weight_decay=0.05),
                                            fit=dict(sample_weight=row_weights(300), validation_fraction=0.2)),
    "weighted, zeros, batch 128 width 64": dict(sizes=(16, 64, 64, 1), fit=dict(
        batch_size=128, sample_weight=row_weights(300) * (numpy.arange(300) % 3 > 0))),
}


@pytest.mark.parametrize("case", RUNS)
def test_the_one_call_step_trains_the_generic_steps_bits(monkeypatch, kernel_calls, case):
    options = dict(RUNS[case])
    one_call = trained(monkeypatch, False, **options)
    with_adam = type(one_call_optimizer(options)) in (gpunn.Adam, gpunn.AdamW)
    assert kernel_calls == ["step" if with_adam else "gradients"] * one_call[3]  # every step
    assert_same(one_call, trained(monkeypatch, True, **options))


def one_call_optimizer(options):
    opt = options.get("optimizer", "adam")
    return opt() if callable(opt) else gpunn.optim.make_optimizer(opt)


def test_a_second_fit_with_the_same_optimizer_goes_on_as_the_generic_one(monkeypatch, kernel_calls):
    def run():
        X, Y = data()
        model, opt = gpunn.MLP([16, 32, 1], device="cpu", seed=1), gpunn.Adam(lr=2e-3)
        losses = [model.fit(X, Y, optimizer=opt, epochs=2, batch_size=50, verbose=False, seed=s)["loss"]
                  for s in (1, 2)]
        return model.params.copy(), losses, {k: v.copy() for k, v in opt.state.items()}, opt.steps

    runs = each_way(monkeypatch, run)
    assert kernel_calls == ["step"] * 24
    assert_same(*runs)


NOT_RUN = {  # the generic path computes these otherwise (or the net is not small): the one call must not run
    "gelu": dict(activation="gelu"),
    "elu": dict(activation="elu"),
    "relu then softplus": dict(sizes=(16, 8, 8, 1), activation=["relu", "softplus"]),
    "tanh then leaky_relu": dict(sizes=(16, 8, 8, 1), activation=["tanh", "leaky_relu"]),
    "no bias": dict(bias=False),
    "tanh without bias": dict(activation="tanh", bias=False),
    "sigmoid output": dict(activation="tanh", output_activation="sigmoid"),
    "relu output": dict(output_activation="relu"),
    "two outputs": dict(sizes=(16, 32, 2)),
    "no hidden layer": dict(sizes=(16, 1)),
    "not fused": dict(fused=False),
    "hidden width 4 under 64: a small-k dA": dict(sizes=(16, 64, 4, 8, 1), rows=256, fit=dict(batch_size=128)),
    "batch 8: small-k dW": dict(sizes=(16, 64, 64, 1), rows=64, fit=dict(batch_size=8)),
    "a width of 1": dict(sizes=(16, 1, 8, 1)),
    "65536 parameters": dict(sizes=(16, 256, 256, 1)),
    "rows x width 65536": dict(sizes=(16, 64, 1), rows=1024, fit=dict(batch_size=1024, epochs=1)),
    "65536 parameters (255 x 255 + 511)": dict(sizes=(255, 255, 1), rows=128, fit=dict(batch_size=64, epochs=1)),
    "batch 1": dict(sizes=(16, 32, 1), rows=6, fit=dict(batch_size=1, epochs=1)),
    # the output layer's Z = A w, k = 8 into 4096 rows: CpuOps.matmul's small-k product, not the kernel's gemv
    "4096 rows into an output layer over width 8": dict(sizes=(16, 8, 1), rows=4096, fit=dict(batch_size=None,
                                                                                                epochs=1)),
}


@pytest.mark.parametrize("case", NOT_RUN)
def test_the_one_call_step_does_not_run_where_the_generic_step_differs(monkeypatch, kernel_calls, case):
    options = dict(NOT_RUN[case])
    assert_same(trained(monkeypatch, False, **options), trained(monkeypatch, True, **options))
    assert not kernel_calls


@pytest.mark.parametrize("setting", ["numpy", "auto", "numpy,mkl,blis", "mkl", "blis"])
def test_the_one_call_step_runs_unless_gpunn_gemm_forces_blis(monkeypatch, kernel_calls, setting):
    """GPUNN_GEMM=auto (or a list) keeps a small net's one-call step on NumPy's BLAS, training the default's bits: off,
    its per-op step was 2-3x slower though auto chose NumPy for every product. GPUNN_GEMM=mkl runs it with MKL's
    products (test_forced_mkl_runs_the_one_call_step_with_mkls_products); BLIS, forced, takes every product in the
    generic step (it has no CBLAS to call from the kernel)."""
    from gpunn.ops import gemm

    forced = setting in ("mkl", "blis")
    if forced and gemm.library(setting) is None:
        pytest.skip(f"{setting} is not installed (GPUNN_GEMM={setting} is then NumPy alone)")
    if setting == "mkl" and mkl_blas("float32") is None:
        pytest.skip("MKL's CBLAS could not be bound for the kernel (gpunn.ops.cblas.mkl_blas)")
    X, Y = data(64)
    params = {}
    for value in ("numpy", setting):
        monkeypatch.setenv(gemm.ENV, value)
        model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
        opt = gpunn.Adam().bind(model.params, model.ops)
        assert model.train_step_and_update(X, Y, opt, 1e-3) is not None
        model.train_step(X, Y)
        params[value] = model.params.copy()
    assert kernel_calls == ["step", "gradients"] * (1 + (setting != "blis"))
    if not forced:
        numpy.testing.assert_array_equal(params[setting], params["numpy"])


FORCED_MKL_RUNS = ["adam", "float64", "adamw float64", "batch 128 width 64", "batch 9", "tanh", "sigmoid float64",
                   "input 4: a small-k forward product", "partial last batch, cosine, validation", "65535 parameters"]


@pytest.mark.parametrize("case", FORCED_MKL_RUNS)
def test_forced_mkl_runs_the_one_call_step_with_mkls_products(monkeypatch, kernel_calls, case):
    """GPUNN_GEMM=mkl: the one-call step calls MKL's CBLAS (gpunn.ops.cblas.mkl_blas) on one MKL thread, and trains
    the bits of the generic step, whose products then go to gpunn.ops.gemm's MKL (one thread under ONE_THREAD_MACS
    multiply-adds; a matrix times a vector by gemv, as the kernel's). Before, that step was the generic one, 16x
    slower than the default on the 2-core EPYC (each tiny product woke MKL's second thread)."""
    from gpunn.ops import gemm

    if gemm.library("mkl") is None or mkl_blas("float32") is None:
        pytest.skip("MKL is not installed here, or its CBLAS could not be bound for the kernel")
    monkeypatch.setenv(gemm.ENV, "mkl")
    options = dict(RUNS[case])
    one_call = trained(monkeypatch, False, **options)
    assert kernel_calls == ["step"] * one_call[3]
    assert_same(one_call, trained(monkeypatch, True, **options))
    assert gemm.shared_chooser().choices and set(gemm.shared_chooser().choices.values()) == {"mkl"}


def test_forced_mkl_leaves_a_product_of_many_threads_to_the_generic_step(monkeypatch, kernel_calls):
    """Under GPUNN_GEMM=mkl a batch whose largest product reaches ONE_THREAD_MACS multiply-adds (432 x 151 weights at
    65 rows: 4.24M) is the generic step's, whose MKL runs that product on its threads; 64 rows (4.17M) and the
    default's NumPy take the one call. A product of exactly ONE_THREAD_MACS (2^22) is the generic step's too."""
    from gpunn.ops import gemm

    if gemm.library("mkl") is None or mkl_blas("float32") is None:
        pytest.skip("MKL is not installed here, or its CBLAS could not be bound for the kernel")
    assert 64 * 432 * 151 < gemm.library("mkl").ONE_THREAD_MACS <= 65 * 432 * 151
    X, Y = data(65, 432)
    for setting, rows, runs in (("mkl", 64, True), ("mkl", 65, False), ("numpy", 65, True)):
        monkeypatch.setenv(gemm.ENV, setting)
        kernel_calls.clear()
        model = gpunn.MLP([432, 151, 1], device="cpu", seed=0)
        model.train_step_and_update(X[:rows], Y[:rows], gpunn.Adam().bind(model.params, model.ops), 1e-3)
        assert kernel_calls == ["step"] * runs, (setting, rows)
    # a product of exactly ONE_THREAD_MACS (128 x 128 x 256 = 2^22) is one gpunn.ops.gemm's MKL gives its threads
    assert 128 * 128 * 256 == gemm.library("mkl").ONE_THREAD_MACS
    X, Y = data(128, 128)
    monkeypatch.setenv(gemm.ENV, "mkl")
    for rows, runs in ((128, False), (127, True)):
        kernel_calls.clear()
        model = gpunn.MLP([128, 256, 1], device="cpu", seed=0)
        model.train_step_and_update(X[:rows], Y[:rows], gpunn.Adam().bind(model.params, model.ops), 1e-3)
        assert kernel_calls == ["step"] * runs, rows


def test_the_step_falls_back_where_a_call_differs(monkeypatch, kernel_calls):
    """Per call: a learning rate that is not a Python float (Adam's float64 scalars would differ) or an Adam step set
    on the optimizer: the gradients in one call, then Adam.step; strided or other-dtype batches, a train_step set
    on the model, a subclass's _forward: the generic step. Each gives the generic step's bits."""
    X, Y = data(64)

    def step(model, X=X, Y=Y, lr=1e-3, opt=None):
        opt = opt or gpunn.Adam().bind(model.params, model.ops)
        sum_sq = model.train_step_and_update(X, Y, opt, lr)
        return sum_sq, model.params.copy()

    def same_as_generic(make, **kwargs):
        one_call = step(make(), **kwargs)
        with monkeypatch.context() as m:
            generic(m)
            plain = step(make(), **kwargs)
        assert one_call[0] == plain[0] and one_call[1].tobytes() == plain[1].tobytes()

    mlp = lambda: gpunn.MLP([16, 32, 1], device="cpu", seed=0)
    step(mlp())
    assert kernel_calls == ["step"]
    for lr in (numpy.float32(1e-3), numpy.float64(1e-3)):
        same_as_generic(mlp, lr=lr)
    model = mlp()
    opt = gpunn.Adam().bind(model.params, model.ops)
    opt.step = lambda *args: gpunn.Adam.step(opt, *args)
    step(model, opt=opt)
    assert kernel_calls == ["step", "gradients", "gradients", "gradients"]
    wide = numpy.empty((64, 32), numpy.float32)
    wide[:, ::2] = X
    same_as_generic(mlp, X=wide[:, ::2])
    same_as_generic(mlp, Y=numpy.repeat(Y, 2, 1)[:, :1])
    step(mlp(), X=X.astype("float64"), Y=Y.astype("float64"))
    same_as_generic(mlp, X=X.astype("float64"))  # X alone of another dtype: the kernel would read it as float32
    same_as_generic(mlp, Y=Y.astype("float64"))
    model = mlp()
    model.train_step = lambda X, Y: model.__class__.train_step(model, X, Y)
    step(model)

    class Traced(gpunn.MLP):
        def _forward(self, X, ws):
            return super()._forward(X, ws)

    step(Traced([16, 32, 1], device="cpu", seed=0))
    assert len(kernel_calls) == 4


def test_a_target_of_another_shape_raises_as_in_the_generic_step(kernel_calls):
    """Y of two columns or of twice the rows: the generic step's loss gradient cannot broadcast it (ValueError); the
    one call, which reads Y's first column and first rows, must not run on it."""
    X, Y = data(64)
    for wrong in (numpy.repeat(Y, 2, 1), numpy.concatenate([Y, Y])):
        model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
        opt = gpunn.Adam().bind(model.params, model.ops)
        with pytest.raises(ValueError):
            model.train_step_and_update(X, wrong, opt, 1e-3)
        with pytest.raises(ValueError):
            model.train_step(X, wrong)
    assert not kernel_calls


def test_a_batch_of_another_shape_raises_or_trains_as_in_the_generic_step(monkeypatch, kernel_calls):
    """X of another width or of three axes (the kernel would read its first rows x 16 values as the batch), or a
    model of two outputs given one target column (broadcast over both in the generic step; the kernel forms one
    output): the one call must not run on them. The generic step's ValueError, or its bits; the step's sum of
    squares a numpy.float64 either way, as train_step's."""
    X, Y = data(64)
    mlp = lambda sizes=(16, 32, 1): gpunn.MLP(list(sizes), device="cpu", seed=0)
    for wrong in (numpy.ones((64, 17), numpy.float32), numpy.ones((64, 15), numpy.float32), X[:, :, None].copy(),
                  X[:, :1, None].repeat(16, 1)):
        model = mlp()
        with pytest.raises(ValueError):
            model.train_step_and_update(wrong, Y, gpunn.Adam().bind(model.params, model.ops), 1e-3)
        with pytest.raises(ValueError):
            model.train_step(wrong, Y)

    def two_outputs():
        model = mlp((16, 32, 2))
        opt = gpunn.Adam().bind(model.params, model.ops)
        sums = [model.train_step_and_update(X, Y, opt, 1e-3), model.train_step(X, Y)]
        return sums, model.params.copy()

    runs = each_way(monkeypatch, two_outputs)
    assert runs[0][0] == runs[1][0] and runs[0][1].tobytes() == runs[1][1].tobytes()
    assert not kernel_calls
    model = mlp()
    sums = model.train_step_and_update(X, Y, gpunn.Adam().bind(model.params, model.ops), 1e-3), model.train_step(X, Y)
    assert kernel_calls == ["step", "gradients"] and [type(s) for s in sums] == [numpy.float64] * 2


def test_moments_given_or_replaced_are_the_ones_stepped(monkeypatch, kernel_calls):
    """Adam's moments as a checkpoint gives them before the first bind (kept by bind where their shape fits: float64
    for a float32 model, or every other value of a longer array), or replaced between steps: a float32 C-ordered
    moment replaced is stepped by the one call (its arguments made anew for it), any other by Adam.step after the
    gradients' call; each the generic step's bits."""
    X, Y = data(64)

    def run(given):
        model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
        opt = gpunn.Adam()
        P = model.params.size
        if given == "float64":
            opt.state = {"m": numpy.full(P, 1e-3), "v": numpy.full(P, 1e-6)}
        elif given == "strided":
            opt.state = {k: numpy.full(2 * P, value, numpy.float32)[::2] for k, value in (("m", 1e-3), ("v", 1e-6))}
        opt.bind(model.params, model.ops)
        sums = [model.train_step_and_update(X, Y, opt, 1e-3)]
        if given == "replaced":
            opt.state["m"] = numpy.full(P, 1e-3, numpy.float32)  # (the first moment alone)
            sums.append(model.train_step_and_update(X, Y, opt, 1e-3))
        return sums, model.params.copy(), {k: v.copy() for k, v in opt.state.items()}

    for given, calls in (("float64", ["gradients"]), ("strided", ["gradients"]), ("replaced", ["step", "step"])):
        kernel_calls.clear()
        runs = each_way(monkeypatch, lambda: run(given))
        assert kernel_calls == calls, given
        assert runs[0][0] == runs[1][0] and runs[0][1].tobytes() == runs[1][1].tobytes(), given
        assert all(runs[0][2][k].tobytes() == runs[1][2][k].tobytes() for k in ("m", "v")), given


@pytest.mark.parametrize("method", ["matmul", "bias_activation", "activation_bias_backward",
                                    "bias_gradient", "loss_gradient", "adam_step", "_split", "_sum_rows"])
def test_a_method_set_on_the_ops_runs_from_the_next_step_on(kernel_calls, method):
    """An ops method replaced on the model's ops (a spy, gpunn bench's timed profile run) is what the one call
    would stand in for: the generic step runs from then on and calls it, and the one call again once it goes."""
    X, Y = data(64)
    model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
    opt = gpunn.Adam().bind(model.params, model.ops)
    model.train_step_and_update(X, Y, opt, 1e-3)
    assert kernel_calls == ["step"]
    seen, original = [], getattr(model.ops, method)
    setattr(model.ops, method, lambda *args, **kwargs: (seen.append(1), original(*args, **kwargs))[1])
    model.train_step_and_update(X, Y, opt, 1e-3)
    model.train_step(X, Y)
    assert seen and kernel_calls == ["step"]
    delattr(model.ops, method)
    model.train_step_and_update(X, Y, opt, 1e-3)
    model.train_step(X, Y)
    assert kernel_calls == ["step", "step", "gradients"]


def test_not_on_a_subclass_of_cpu_ops(monkeypatch, kernel_calls):
    """The one call stands in for CpuOps' own methods: on a subclass's ops (which may compute otherwise) the generic
    step runs, with the subclass's methods."""
    from gpunn.ops.cpu import CpuOps

    seen = []

    class Counted(CpuOps):
        def matmul(self, *args, **kwargs):
            seen.append(1)
            return super().matmul(*args, **kwargs)

    X, Y = data(64)
    runs = []
    for ops in (Counted(), CpuOps()):
        model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
        model.ops = ops
        opt = gpunn.Adam().bind(model.params, model.ops)
        runs.append((model.train_step_and_update(X, Y, opt, 1e-3), model.train_step(X, Y), model.params.copy()))
    assert seen and kernel_calls == ["step", "gradients"]  # the subclass's steps: its products; CpuOps': the one call
    assert runs[0][:2] == runs[1][:2] and runs[0][2].tobytes() == runs[1][2].tobytes()


def test_optimizer_settings_that_are_not_python_floats_take_the_generic_step(monkeypatch, kernel_calls):
    """The kernel takes beta1, beta2, eps and weight_decay as float64 (eps in the model's dtype); Adam.step computes
    with the objects it is given, so a NumPy float32 setting runs the gradients' call, then Adam.step."""
    X, Y = data(64)
    for name in ("beta1", "beta2", "eps", "weight_decay"):
        def run():
            model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
            opt = gpunn.AdamW(lr=1e-2, weight_decay=0.3).bind(model.params, model.ops)
            setattr(opt, name, numpy.float32(getattr(opt, name)))
            return [model.train_step_and_update(X, Y, opt, 1e-2) for _ in range(2)] + [model.params.copy()]

        runs = each_way(monkeypatch, run)
        assert runs[0][:2] == runs[1][:2] and runs[0][2].tobytes() == runs[1][2].tobytes(), name
    assert kernel_calls == ["gradients"] * 8


def test_a_plan_follows_the_optimizer_and_its_settings(monkeypatch, kernel_calls):
    """The kernel's arguments are kept per workspace: a changed setting or another optimizer makes them anew."""
    X, Y = data(64)
    runs = []
    for generic_step in (False, True):
        with monkeypatch.context() as m:
            if generic_step:
                generic(m)
            model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
            opt = gpunn.Adam().bind(model.params, model.ops)
            sums = [model.train_step_and_update(X, Y, opt, 1e-3)]
            opt.beta1, opt.eps = 0.5, 1e-4
            sums.append(model.train_step_and_update(X, Y, opt, 2e-3))
            opt.weight_decay = 0.1
            sums.append(model.train_step_and_update(X, Y, opt, 2e-3))
            other = gpunn.AdamW(weight_decay=0.2).bind(model.params, model.ops)
            sums.append(model.train_step_and_update(X, Y, other, 1e-3))
            runs.append((model.params.copy(), sums, {**opt.state, **{"w" + k: v for k, v in other.state.items()}},
                         opt.steps))
    assert kernel_calls == ["step"] * 4
    assert_same(*runs)


def test_a_fit_mixes_the_two_by_batch_size(monkeypatch, kernel_calls):
    """Hidden width 4 under 64: the generic step computes the dA below it outside BLAS at 128 rows (a small-k
    product, 128 x 64 out) but by BLAS at the last batch's 44 rows; the one call runs only that batch."""
    options = dict(sizes=(16, 64, 4, 8, 1), fit=dict(batch_size=128))
    assert_same(trained(monkeypatch, False, **options), trained(monkeypatch, True, **options))
    assert kernel_calls == ["step"] * 3  # 300 rows: 128, 128, 44 in each of 3 epochs


def test_loss_and_gradients_take_the_gradients_call_with_the_generic_bits(monkeypatch, kernel_calls):
    X, Y = data(300)
    model = gpunn.MLP([16, 32, 24, 1], device="cpu", seed=2)
    one_call = model.loss_and_gradients(X, Y)
    assert kernel_calls == ["gradients"]
    with monkeypatch.context() as m:
        generic(m)
        plain = model.loss_and_gradients(X, Y)
    assert one_call[0] == plain[0]
    for a, b in zip(one_call[1] + one_call[2], plain[1] + plain[2]):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("activation, loop", [("tanh", "numpy_tanh"), ("sigmoid", "numpy_exp")])
def test_tanh_and_sigmoid_nets_take_the_generic_step_where_numpys_loop_is_not_bound(monkeypatch, kernel_calls,
                                                                                     activation, loop):
    """The kernel computes tanh and sigmoid's e^-z with NumPy's own loops (gpunn.ops.ufuncs.numpy_tanh, numpy_exp):
    where the one a net needs could not be bound, it trains by the generic step; ReLU nets still by the one call."""
    import gpunn.ops.ensemble as ens_ops

    monkeypatch.setattr(ens_ops, loop, lambda dtype: None)
    trained(monkeypatch, False, activation=activation, fit=dict(epochs=1))
    assert not kernel_calls
    trained(monkeypatch, False, fit=dict(epochs=1))
    assert kernel_calls == ["step"] * 5



@pytest.mark.parametrize("method, clip", [("clip_grad_norm", {"clip_norm": 0.05}), ("_clip", {"clip_norm": 0.05}),
                                          ("clip_grad_value", {"clip_value": 0.01})])
def test_a_clip_method_set_on_the_ops_runs_the_clipped_step_generically(kernel_calls, method, clip):
    """The clip the one call runs inside its kernel is one it stands in for too: a clip method replaced on the model's
    ops (a spy) is called by the generic step from then on, and the one call comes back once it goes (audit49: without
    the clip methods among those it stands in for, the one call ran on and the spy was never called)."""
    X, Y = data(64)
    model = gpunn.MLP([16, 32, 1], device="cpu", seed=0)
    opt = gpunn.Adam(lr=1e-2, **clip).bind(model.params, model.ops)
    model.train_step_and_update(X, Y, opt, 1e-2)
    assert kernel_calls == ["step"]
    seen, original = [], getattr(model.ops, method)
    setattr(model.ops, method, lambda *args, **kwargs: (seen.append(1), original(*args, **kwargs))[1])
    model.train_step_and_update(X, Y, opt, 1e-2)
    assert seen and kernel_calls == ["step"]
    delattr(model.ops, method)
    model.train_step_and_update(X, Y, opt, 1e-2)
    assert kernel_calls == ["step", "step"]

CLIPPED = {  # limits that clip most of these fits' steps (sgd: the gradients call, then CpuOps' clip and step)
    "adam clip_norm": lambda: gpunn.Adam(lr=1e-2, clip_norm=0.05),
    "adamw clip_value": lambda: gpunn.AdamW(lr=1e-2, weight_decay=0.05, clip_value=0.01),
    "adam L2 clip_norm float64": lambda: gpunn.Adam(lr=1e-2, weight_decay=0.05, clip_norm=0.05),
    "sgd clip_norm": lambda: gpunn.SGD(lr=0.05, clip_norm=0.05),
}


@pytest.mark.parametrize("case", CLIPPED)
def test_a_clipped_fit_clips_in_the_one_call_step_with_the_generic_steps_bits(monkeypatch, kernel_calls, case):
    """The one call clips each step's gradient inside the kernel (the table's CLIP_NORM / CLIP_VALUE, by CpuOps'
    rule, gpunn.ops.cpu._clip_row) between the backward pass and Adam's step: the generic step's bits, where a clipped
    fit took the gradients call and the generic clip and step (bench/mlp_clip.py: 1.23-1.48x the unclipped step)."""
    dtype = "float64" if "float64" in case else "float32"
    one_call = trained(monkeypatch, False, optimizer=CLIPPED[case], dtype=dtype)
    adam = isinstance(CLIPPED[case](), gpunn.Adam)
    assert kernel_calls == ["step" if adam else "gradients"] * one_call[3]
    assert_same(one_call, trained(monkeypatch, True, optimizer=CLIPPED[case], dtype=dtype))
    from test_clipping import unclipped as twin

    unclipped = trained(monkeypatch, False, optimizer=lambda: twin(CLIPPED[case]()), dtype=dtype)  # (its decay kept)
    assert numpy.abs(unclipped[0] - one_call[0]).max() > 1e-3


def test_a_clip_changed_on_the_optimizer_between_fits_is_the_next_steps_clip(monkeypatch, kernel_calls):
    """The plan (the kernel's table) follows the optimizer's clip_norm and clip_value as its other settings."""
    def run():
        X, Y = data()
        model, opt = gpunn.MLP([16, 32, 1], device="cpu", seed=1), gpunn.Adam(lr=1e-2)
        for clip_norm, clip_value in ((None, None), (0.05, None), (None, 0.01), (None, None)):
            opt.clip_norm, opt.clip_value = clip_norm, clip_value
            model.fit(X, Y, optimizer=opt, epochs=1, batch_size=50, verbose=False, seed=1)
        return model.params.copy(), [], {k: v.copy() for k, v in opt.state.items()}, opt.steps

    runs = each_way(monkeypatch, run)
    assert kernel_calls == ["step"] * 24
    assert_same(*runs)
