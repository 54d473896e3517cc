"""Gradient clipping of one model (gpunn.optim's clip_norm and clip_value): the optimizer's options, and a fit's steps
against a NumPy reference of PyTorch's formulas in float64 (clip_grad_norm_: every gradient, as one vector, times
min(1, c / (||g||_2 + 1e-6)); clip_grad_value_: each element clamped to [-v, v]), applied to the loss's gradient
before weight decay and the optimizer's moments."""
import numpy
import pytest

import gpunn
from gpunn.optim import OPTIMIZERS

SIZES = [3, 8, 6, 2]


def _data(rows=48, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((rows, SIZES[0]))
    Y = numpy.stack([numpy.sin(3 * X[:, 0]) + X[:, 1] ** 2, 4 * X[:, 2]], axis=1)
    return X, Y


def _model(**options):
    return gpunn.MLP(SIZES, activation="tanh", dtype="float64", device="cpu", seed=1, **options)


def clip_norm_reference(g, c):
    """PyTorch's clip_grad_norm_(max_norm=c) of the flat gradient g, in NumPy."""
    total = numpy.sqrt(numpy.sum(numpy.asarray(g, numpy.float64) ** 2))
    return g * min(c / (total + 1e-6), 1.0)


def clip_value_reference(g, v):
    return numpy.minimum(numpy.maximum(g, -v), v)


def _reference_run(optimizer, clip, X, Y, epochs, batch_size):
    """A fit's parameters, stepped by hand: each batch's gradient (train_step), clipped by ``clip`` (the formula in
    NumPy), then the unclipped ``optimizer``'s step (its weight decay and moments on the clipped gradient)."""
    model = _model()
    optimizer.bind(model.params, model.ops)
    for _ in range(epochs):
        for lo in range(0, len(X), batch_size):
            model.train_step(X[lo:lo + batch_size], Y[lo:lo + batch_size])
            model.grads[...] = clip(model.grads.copy())
            optimizer.step(model.params, model.grads, optimizer.lr)
    return model.params.copy()


def unclipped(optimizer):
    """A fresh optimizer of ``optimizer``'s settings less its clip (its weight decay kept: a twin that differs from it
    by the clip alone)."""
    from gpunn.checkpoint.format import optimizer_from_config
    from gpunn.optim import CLIP_OPTIONS

    return optimizer_from_config({k: v for k, v in optimizer.config().items() if k not in CLIP_OPTIONS})


def _fit(optimizer, X, Y, epochs=3, batch_size=16):
    model = _model()
    model.fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, shuffle=False, verbose=False)
    return model


# ---- the options ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_takes_clip_norm_and_clip_value_keeps_them_in_its_config_and_shows_them_set(name):
    cls = OPTIMIZERS[name]
    plain = cls()
    assert plain.clip_norm is None and plain.clip_value is None
    assert "clip_norm" not in plain.config() and "clip_value" not in plain.config()  # (off: as before clipping)
    assert "clip" not in repr(plain)
    by_norm, by_value = cls(clip_norm=2), cls(clip_value=numpy.float32(0.5))
    assert (by_norm.clip_norm, by_norm.clip_value) == (2.0, None) and type(by_norm.clip_norm) is float
    assert (by_value.clip_norm, by_value.clip_value) == (None, 0.5) and type(by_value.clip_value) is float
    assert by_norm.config()["clip_norm"] == 2.0 and "clip_value" not in by_norm.config()
    assert by_value.config()["clip_value"] == 0.5 and "clip_norm" not in by_value.config()
    assert repr(by_norm).endswith(", clip_norm=2.0)") and repr(by_value).endswith(", clip_value=0.5)")
    assert eval(repr(by_norm), vars(gpunn)).config() == by_norm.config()


@pytest.mark.parametrize("option", ["clip_norm", "clip_value"])
@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), "1.0", True, [1.0]])
def test_a_clip_that_is_no_positive_finite_number_is_refused_naming_it(option, value):
    with pytest.raises(ValueError, match=rf"^{option} must be a positive finite number \(None: no clipping\), got "):
        gpunn.Adam(**{option: value})


def test_clip_norm_and_clip_value_together_are_refused_as_one_at_a_time():
    for cls in OPTIMIZERS.values():
        with pytest.raises(ValueError, match=r"^clip_norm=1.0 and clip_value=0.5: gpunn clips one way at a time; give "
                                             r"one of them \(clip_norm scales"):
            cls(clip_norm=1.0, clip_value=0.5)


def test_an_optimizer_from_before_clipping_clips_nothing():
    """One unpickled from before the options (no clip_norm in its __dict__): the class's None, clipping off."""
    opt = gpunn.Adam()
    del opt.__dict__["clip_norm"], opt.__dict__["clip_value"]
    X, Y = _data()
    expected = _fit(gpunn.Adam(), X, Y).params
    numpy.testing.assert_array_equal(_fit(opt, X, Y).params, expected)


# ---- the generic CPU step ------------------------------------------------------------------------------------------
CLIPPED = {  # (clipping optimizer, the same unclipped, the clip in NumPy): limits that clip most steps, not all
    "sgd clip_norm": (lambda: gpunn.SGD(lr=0.05, clip_norm=0.5), lambda: gpunn.SGD(lr=0.05),
                      lambda g: clip_norm_reference(g, 0.5)),
    "momentum, weight decay, clip_norm": (
        lambda: gpunn.Momentum(lr=0.02, momentum=0.8, weight_decay=0.1, clip_norm=0.7),
        lambda: gpunn.Momentum(lr=0.02, momentum=0.8, weight_decay=0.1), lambda g: clip_norm_reference(g, 0.7)),
    "nesterov clip_value": (lambda: gpunn.Nesterov(lr=0.02, clip_value=0.05), lambda: gpunn.Nesterov(lr=0.02),
                            lambda g: clip_value_reference(g, 0.05)),
    "adam, L2, clip_norm": (lambda: gpunn.Adam(lr=1e-2, weight_decay=0.2, clip_norm=0.3),
                            lambda: gpunn.Adam(lr=1e-2, weight_decay=0.2), lambda g: clip_norm_reference(g, 0.3)),
    "adamw clip_value": (lambda: gpunn.AdamW(lr=1e-2, weight_decay=0.1, clip_value=0.02),
                         lambda: gpunn.AdamW(lr=1e-2, weight_decay=0.1), lambda g: clip_value_reference(g, 0.02)),
}


@pytest.mark.parametrize("case", CLIPPED)
def test_a_fit_clips_each_steps_gradient_before_the_optimizers_decay_and_moments(case):
    clipped, plain, clip = CLIPPED[case]
    X, Y = _data()
    model = _fit(clipped(), X, Y)
    expected = _reference_run(plain(), clip, X, Y, epochs=3, batch_size=16)
    numpy.testing.assert_allclose(model.params, expected, rtol=1e-12, atol=1e-14)
    unclipped = _fit(plain(), X, Y).params
    assert numpy.abs(unclipped - expected).max() > 1e-3  # (the clip clipped)


def test_clip_norm_is_the_2_norm_of_every_gradient_together_and_leaves_a_smaller_one_as_it_is():
    """One full-batch SGD step by hand: the weights and biases of every layer form the one norm; a clip_norm above it
    changes nothing, bit for bit."""
    X, Y = _data()
    loss, dW, db = _model().loss_and_gradients(X, Y)
    g = numpy.concatenate([a.ravel() for a in dW + db])
    norm = numpy.linalg.norm(g)
    for c in (norm / 4, norm / 2):
        model = _fit(gpunn.SGD(lr=0.1, clip_norm=c), X, Y, epochs=1, batch_size=None)
        start = _model()
        coef = c / (norm + 1e-6)
        for W, W0, G in zip(model.weights + model.biases, start.weights + start.biases, dW + db):
            numpy.testing.assert_allclose(W, W0 - 0.1 * coef * G, rtol=1e-12, atol=1e-15)
    above = _fit(gpunn.SGD(lr=0.1, clip_norm=norm * 1.01), X, Y, epochs=1, batch_size=None)
    assert above.params.tobytes() == _fit(gpunn.SGD(lr=0.1), X, Y, epochs=1, batch_size=None).params.tobytes()


def test_the_ops_clip_the_flat_buffer_in_place_by_the_formulas():
    from gpunn.ops import Ops

    g = numpy.random.default_rng(3).standard_normal(101) * 3
    for dtype in ("float64", "float32"):
        x = g.astype(dtype)
        out = Ops().clip_grad_norm(x, 2.0)
        assert out is x and x.dtype == dtype
        coef = numpy.float64(2.0) / (numpy.sqrt(numpy.dot(g.astype(dtype).astype("float64"),
                                                          g.astype(dtype).astype("float64"))) + 1e-6)
        assert x.tobytes() == (g.astype(dtype) * coef.astype(dtype)).tobytes()  # the factor rounded once to dtype
        assert numpy.linalg.norm(x.astype("float64")) == pytest.approx(2.0, rel=1e-6)
        y = g.astype(dtype)
        assert Ops().clip_grad_value(y, 0.5) is y
        assert y.tobytes() == numpy.clip(g.astype(dtype), -0.5, 0.5).tobytes()


# ---- checkpoints ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", [lambda: gpunn.Adam(lr=1e-2, weight_decay=0.01, clip_norm=0.3),
                                       lambda: gpunn.Momentum(lr=0.02, clip_value=0.05)], ids=["adam", "momentum"])
def test_a_clipped_run_interrupted_mid_epoch_resumes_bit_for_bit_clipping_as_it_ran(tmp_path, interrupt_at, optimizer):
    X, Y = _data(96)
    fit = dict(epochs=4, batch_size=16, verbose=False, seed=2)
    reference = _model()
    expected = reference.fit(X, Y, optimizer=optimizer(), **fit)
    path = tmp_path / "run.npz"
    _model().fit(X, Y, optimizer=optimizer(), callbacks=[interrupt_at(1, 3), gpunn.ModelCheckpoint(path)], **fit)
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    made = optimizer()
    assert (ckpt.optimizer.clip_norm, ckpt.optimizer.clip_value) == (made.clip_norm, made.clip_value)
    resumed = ckpt.resume(X, Y, verbose=False)
    assert ckpt.model.params.tobytes() == reference.params.tobytes()
    assert resumed["loss"] == expected["loss"]
    plain = _model()
    plain.fit(X, Y, optimizer=unclipped(made), **fit)
    assert numpy.abs(plain.params - reference.params).max() > 1e-3


# ---- data parallel -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", [lambda: gpunn.Adam(lr=1e-2, clip_norm=0.3),
                                       lambda: gpunn.SGD(lr=0.05, weight_decay=0.1, clip_value=0.05)],
                         ids=["adam clip_norm", "sgd clip_value"])
def test_two_ranks_clip_the_averaged_gradient_and_train_the_one_process_run_at_the_global_batch(monkeypatch, fake_cupy,
                                                                                                optimizer):
    """Ranks as threads on the stand-in's GPUs (tests/thread_ranks.py): each rank's piece of a global batch of 16,
    the gradient averaged over the ranks, then clipped: the one process's run at batch 16, to summation order (a
    rank clipping its own piece's gradient would take each piece's norm, not the batch's)."""
    from thread_ranks import run_ranks

    X, Y = _data(96)

    def fit(rank):
        model = gpunn.MLP(SIZES, activation="tanh", dtype="float64", device=f"cuda:{rank}", seed=1)
        model.fit(X, Y, epochs=3, batch_size=8, optimizer=optimizer(), distributed=True, verbose=False, seed=2)
        return model.backend.to_host(model.params)

    ref = gpunn.MLP(SIZES, activation="tanh", dtype="float64", device="cuda:0", seed=1)
    ref.fit(X, Y, epochs=3, batch_size=16, optimizer=optimizer(), verbose=False, seed=2)
    expected = ref.backend.to_host(ref.params)
    outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=20.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    for params, _ in outcomes:
        numpy.testing.assert_allclose(params, expected, rtol=1e-10, atol=1e-12)
    plain = gpunn.MLP(SIZES, activation="tanh", dtype="float64", device="cuda:0", seed=1)
    plain.fit(X, Y, epochs=3, batch_size=16, optimizer=unclipped(optimizer()), verbose=False, seed=2)
    assert numpy.abs(plain.backend.to_host(plain.params) - expected).max() > 1e-3


# ---- the command line ----------------------------------------------------------------------------------------------
def test_gpunn_train_clips_by_its_flags_records_them_and_info_and_resume_say_so(tmp_path, capsys):
    from gpunn import cli

    run = str(tmp_path / "run.npz")
    small = ["--rows", "300", "--features", "4", "--hidden", "8", "--batch-size", "100", "--device", "cpu", "--quiet"]
    assert cli.main(["train", *small, "--epochs", "2", "--clip-norm", "0.5", "--save", run]) == 0
    ckpt = gpunn.load_checkpoint(run, device="cpu")
    assert (ckpt.optimizer.clip_norm, ckpt.optimizer.clip_value) == (0.5, None)
    assert "clip-norm = 0.5\n" in open(run + ".toml").read()
    capsys.readouterr()
    assert cli.main(["info", run]) == 0
    assert "trained       epoch 2 of 2; adam lr 0.001, clip_norm 0.5, batch 100, on task teacher" in capsys.readouterr().out
    assert cli.main(["train", "--resume", run, "--epochs", "3", "--clip-norm", "0.7", "--quiet"]) == 2
    assert ("--clip-norm 0.7 would change the run, which has --clip-norm 0.5; a resumed run continues exactly"
            in capsys.readouterr().err)
    assert cli.main(["train", "--resume", run, "--epochs", "3", "--quiet"]) == 0
    assert gpunn.load_checkpoint(run, device="cpu").optimizer.clip_norm == 0.5
    by_value = str(tmp_path / "value.npz")
    assert cli.main(["train", *small, "--epochs", "1", "--optimizer", "sgd", "--clip-value", "0.01", "--save",
                     by_value]) == 0
    assert gpunn.load_checkpoint(by_value, device="cpu").optimizer.config()["clip_value"] == 0.01
    capsys.readouterr()
    assert cli.main(["train", *small, "--clip-norm", "1", "--clip-value", "2"]) == 2
    assert "error: --clip-norm 1 and --clip-value 2: gpunn clips one way at a time; give one of them" in \
        capsys.readouterr().err
    for flag in ("--clip-value", "--clip-norm"):
        with pytest.raises(SystemExit):
            cli.main(["train", *small, flag, "0"])
        assert f"{flag}: must be positive, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_nan_gradient_makes_every_gradient_nan_under_clip_norm_on_every_cpu_path(dtype):
    """torch's clip_grad_norm_ with a NaN norm scales by NaN (clamp keeps it), so every gradient is NaN: the reference
    (Ops), CpuOps' kernel (_clip_row, which the one-call step and an Ensemble's group pass run) and its NumPy stand-in
    alike, where the kernel and the stand-in left the finite ones unscaled. An infinite gradient: factor 0, as torch."""
    from gpunn.ops.cpu import CpuOps, numba

    g = numpy.linspace(-2.0, 3.0, 11).astype(dtype)
    g[4] = numpy.nan
    deferred = CpuOps(fused=True)
    deferred.kernels_now = lambda same_bits=True: False  # the stand-in, before Numba's start pays
    ops = [gpunn.ops.Ops(), deferred] + ([CpuOps(fused=True)] if numba is not None else [])
    for op in ops:
        got = g.copy()
        op.clip_grad_norm(got, 1.0)
        assert numpy.isnan(got).all(), (type(op).__name__, got)
        inf = g.copy()
        inf[4] = numpy.inf
        op.clip_grad_norm(inf, 1.0)
        numpy.testing.assert_array_equal(inf, numpy.where(numpy.arange(11) == 4, numpy.nan, 0.0 * g))


def test_clip_norm_sums_the_squares_in_float64_so_a_float32_gradient_past_float32s_squares_is_clipped_to_the_norm():
    """A float32 gradient of 3e19 and -4e19 (an exploding step, which clipping is for) has the norm 5e19, whose square
    float32 cannot hold: summed in float32 it is infinite and the factor 0, which would zero the step. Every CPU path
    sums in float64 and scales it to the limit: the reference (Ops), CpuOps(fused=False), CpuOps' kernel and its NumPy
    stand-in (audit49: the reference's sum in g's dtype passed every other test)."""
    from gpunn.ops.cpu import CpuOps, numba

    g = numpy.array([3e19, -4e19, 0.0, 1e18, -2e18], numpy.float32)
    want = g.astype(numpy.float64) / numpy.linalg.norm(g.astype(numpy.float64))
    deferred = CpuOps(fused=True)
    deferred.kernels_now = lambda same_bits=True: False  # the stand-in, before Numba's start pays
    ops = [gpunn.ops.Ops(), CpuOps(fused=False), deferred] + ([CpuOps(fused=True)] if numba is not None else [])
    for op in ops:
        got = g.copy()
        op.clip_grad_norm(got, 1.0)
        numpy.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=type(op).__name__)
