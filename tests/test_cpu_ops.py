"""CpuOps (the fused CPU path) against Ops (the NumPy reference), method by method.

Every public method of Ops exists on CpuOps with the same signature, and gives the same numbers:
bit for bit where the kernel does the reference's arithmetic in its order (elementwise, Adam),
to float rounding where a sum is split differently (bias gradient, small-k products).
"""
import inspect
import re
import warnings

import numpy
import pytest

import gpunn
from gpunn import ACTIVATIONS, MLP
from gpunn.ops.cpu import PARALLEL_MIN_ELEMENTS, CpuOps, numba
from gpunn.ops import Ops
from torch_formulas import torch_adam, torch_sgd

DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=2e-6, atol=1e-6), "float64": dict(rtol=1e-13, atol=1e-14)}
# Shapes below and above the size where CpuOps splits work across threads.
SHAPES = [(7, 5), (300, 256)]
assert 300 * 256 >= PARALLEL_MIN_ELEMENTS > 7 * 5


def public_methods(cls):
    return {n: m for n, m in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


def test_cpu_ops_exposes_every_ops_method_with_the_same_signature():
    ref, fast = public_methods(Ops), public_methods(CpuOps)
    assert set(ref) <= set(fast)
    for name in ref:
        assert list(inspect.signature(fast[name]).parameters) == list(inspect.signature(ref[name]).parameters), name


def test_cpu_backend_uses_cpu_ops():
    model = MLP([3, 4, 1], device="cpu")
    assert isinstance(model.ops, CpuOps)
    assert model.ops.fused == (numba is not None)


@pytest.fixture(params=[(True, 1), (True, 2), (False, 1)], ids=["fused", "fused-2-threads", "unfused"])
def cpu_ops(request):
    fused, threads = request.param
    return CpuOps(fused=fused, threads=threads)


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ["relu", "identity", "tanh"])
@pytest.mark.parametrize("separate_a", [False, True])
def test_bias_activation(cpu_ops, dtype, shape, act, separate_a):
    rng = numpy.random.default_rng(0)
    Z0, b = rand(rng, shape, dtype), rand(rng, shape[1], dtype)
    outs = []
    for ops in (Ops(), cpu_ops):
        Z = Z0.copy()
        A = numpy.empty_like(Z) if separate_a else Z
        ops.bias_activation(Z, b, ACTIVATIONS[act], A, keep_z=separate_a)
        outs.append((Z, A))
    numpy.testing.assert_array_equal(outs[1][0], outs[0][0])
    numpy.testing.assert_array_equal(outs[1][1], outs[0][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_activation_backward_and_bias_gradient(cpu_ops, dtype, shape, act, with_bias):
    rng = numpy.random.default_rng(1)
    dA0, source = rand(rng, shape, dtype), rand(rng, shape, dtype)
    source[0, 0] = 0  # g'(0) = 0 for ReLU, on both paths
    results = []
    for ops in (Ops(), cpu_ops):
        dA = dA0.copy()
        db = numpy.full(shape[1], numpy.nan, dtype) if with_bias else None
        ops.activation_bias_backward(dA, ACTIVATIONS[act], source, act == "sigmoid", dA, db)
        dZ2 = numpy.empty_like(dA0)
        ops.activation_backward(dA0, ACTIVATIONS[act], source, act == "sigmoid", dZ2)
        results.append((dA, db, dZ2))
    (ref_dz, ref_db, ref_dz2), (dz, db, dz2) = results
    numpy.testing.assert_array_equal(dz, ref_dz)
    numpy.testing.assert_array_equal(dz2, ref_dz2)
    if with_bias:  # a sum split into per-thread pieces: rounding error up to ~eps * rows * |terms|
        numpy.testing.assert_allclose(db, ref_db, rtol=0, atol=4 * numpy.finfo(dtype).eps * shape[0] * numpy.abs(dz).max())


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_the_reference_backward_is_da_times_the_derivative(act):
    """Ops.activation_backward into a separate dZ (the out-of-place form the other paths are compared
    with) is dA * g'(z), g' taken by central differences of g, from Z and, where g' is known from A, from
    A = g(Z) (float64)."""
    act = ACTIVATIONS[act]
    rng = numpy.random.default_rng(2)
    Z, dA = rng.uniform(-3, 3, (6, 5)), rng.standard_normal((6, 5))
    Z[numpy.abs(Z) < 1e-3] = 0.5  # away from ReLU's kink
    h, plus, minus = 1e-6, numpy.empty_like(Z), numpy.empty_like(Z)
    act.forward(numpy, Z + h, plus)
    act.forward(numpy, Z - h, minus)
    want = dA * (plus - minus) / (2 * h)
    sources = [(Z, False)]
    if act.grad_from_output is not None:
        A = numpy.empty_like(Z)
        sources.append((act.forward(numpy, Z, A), True))
    for source, from_output in sources:
        dZ = numpy.full_like(dA, numpy.nan)
        Ops().activation_backward(dA, act, source, from_output, dZ)
        numpy.testing.assert_allclose(dZ, want, rtol=1e-6, atol=1e-8, err_msg=f"from_output={from_output}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, n, transpose_b", [(300, 1, 256, True), (300, 4, 256, True), (300, 4, 256, False),
                                                   (5, 3, 4, False), (64, 32, 48, True), (64, 32, 48, False)])
def test_matmul(cpu_ops, dtype, m, k, n, transpose_b):
    rng = numpy.random.default_rng(2)
    a = rand(rng, (m, k), dtype)
    b = rand(rng, (n, k), dtype).T if transpose_b else rand(rng, (k, n), dtype)
    want = Ops().matmul(a, b, out=numpy.empty((m, n), dtype))
    got = cpu_ops.matmul(a, b, out=numpy.empty((m, n), dtype))
    numpy.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_with_transposed_left_operand(cpu_ops, dtype):
    rng = numpy.random.default_rng(3)
    A, dZ = rand(rng, (300, 4), dtype), rand(rng, (300, 256), dtype)
    want = Ops().matmul(A.T, dZ, out=numpy.empty((4, 256), dtype))
    got = cpu_ops.matmul(A.T, dZ, out=numpy.empty((4, 256), dtype))
    numpy.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_loss_gradient_and_squared_error(cpu_ops, dtype, shape):
    rng = numpy.random.default_rng(4)
    A, Y = rand(rng, shape, dtype), rand(rng, shape, dtype)
    d_ref, d = numpy.empty_like(A), numpy.empty_like(A)
    s_ref, s = Ops().loss_gradient(A, Y, d_ref), cpu_ops.loss_gradient(A, Y, d)
    numpy.testing.assert_array_equal(d, d_ref)
    assert float(s) == pytest.approx(float(s_ref), rel=1e-6)
    assert float(cpu_ops.squared_error(A, Y)) == pytest.approx(float(Ops().squared_error(A, Y)), rel=1e-6)
    db_ref, db = numpy.empty(shape[1], dtype), numpy.empty(shape[1], dtype)
    numpy.testing.assert_allclose(cpu_ops.bias_gradient(A, db), Ops().bias_gradient(A, db_ref), **TOL[dtype])


def _state(rng, n, dtype):
    w, g = rand(rng, n, dtype), rand(rng, n, dtype)
    m = (0.1 * rand(rng, n, dtype)).astype(dtype)
    v = numpy.abs(0.01 * rand(rng, n, dtype)).astype(dtype)
    return w, g, m, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [37, PARALLEL_MIN_ELEMENTS + 101])
@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.01, False), (0.01, True)])
def test_adam_step(cpu_ops, dtype, n, weight_decay, decoupled):
    rng = numpy.random.default_rng(5)
    ref = _state(rng, n, dtype)
    got = tuple(a.copy() for a in ref)
    g_before = ref[1].copy()
    for step in (1, 2, 50):
        Ops().adam_step(*ref, 3e-3, 0.9, 0.999, 1e-8, step, weight_decay, decoupled)
        cpu_ops.adam_step(*got, 3e-3, 0.9, 0.999, 1e-8, step, weight_decay, decoupled)
    for r, g in zip(ref, got):  # w, g (untouched), m, v
        numpy.testing.assert_allclose(g, r, **TOL[dtype])
    numpy.testing.assert_array_equal(got[1], g_before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 0.01), (0.9, True, 0.0)])
def test_sgd_step(cpu_ops, dtype, momentum, nesterov, weight_decay):
    rng = numpy.random.default_rng(6)
    w, g, vel, _ = _state(rng, 1000, dtype)
    ref, got = (w.copy(), g.copy(), vel.copy()), (w.copy(), g.copy(), vel.copy())
    Ops().sgd_step(*ref, 0.01, momentum, nesterov, weight_decay)
    cpu_ops.sgd_step(*got, 0.01, momentum, nesterov, weight_decay)
    for r, g_ in zip(ref, got):
        numpy.testing.assert_allclose(g_, r, **TOL[dtype])


@pytest.mark.parametrize("momentum, nesterov, weight_decay",
                         [(0.0, False, 0.0), (0.0, False, 0.1), (0.9, False, 0.1), (0.9, True, 0.1)])
def test_the_reference_sgd_step_is_torchs(momentum, nesterov, weight_decay):
    """Ops.sgd_step, which CpuOps and the kernels are compared with, is itself torch.optim.SGD's update
    (float64, three steps so that the velocity carries over); without torch installed too."""
    rng = numpy.random.default_rng(8)
    w, vel = rng.standard_normal(64), numpy.zeros(64)
    want_w, want_vel = w.copy(), numpy.zeros(64)
    for _ in range(3):
        g = rng.standard_normal(64)
        Ops().sgd_step(w, g, vel, 0.05, momentum, nesterov, weight_decay)
        want_w, want_vel = torch_sgd(want_w, g, want_vel, 0.05, momentum, weight_decay, nesterov)
        numpy.testing.assert_allclose(w, want_w, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("weight_decay, decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_the_reference_adam_step_is_torchs(weight_decay, decoupled):
    """Ops.adam_step is torch.optim.Adam / AdamW at steps 1, 2, 3 (bias corrections with beta1 != beta2,
    an eps large enough to matter); and its CUDA-graph form (the step count and corrections advanced in a
    device array by optimizer_tick) takes the same steps."""
    rng = numpy.random.default_rng(9)
    lr, beta1, beta2, eps = 0.01, 0.8, 0.95, 1e-3
    w = rng.standard_normal(64)
    m, v = numpy.zeros(64), numpy.zeros(64)
    w_dev, m_dev, v_dev = w.copy(), m.copy(), v.copy()
    state = numpy.array([0.0, lr, 0.0, 0.0])
    want = (w.copy(), m.copy(), v.copy())
    for t in (1, 2, 3):
        g = rng.standard_normal(64)
        Ops().adam_step(w, g, m, v, lr, beta1, beta2, eps, t, weight_decay, decoupled)
        Ops().optimizer_tick(state, beta1, beta2)
        Ops().adam_step_dev(w_dev, g, m_dev, v_dev, state, beta1, beta2, eps, weight_decay, decoupled)
        want = torch_adam(*want[:1], g, *want[1:], t, lr, beta1, beta2, eps, weight_decay, decoupled)
        for got, expected in zip((w, m, v), want):
            numpy.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
        numpy.testing.assert_array_equal(w_dev, w)
        # what the CUDA kernels read: the step and both bias corrections, Python's pow as adam_step's (NumPy
        # 1.26's power(0.95, 2.0) was 1 ulp from Python's)
        assert state.tolist() == [t, lr, 1 - beta1**t, 1 - beta2**t]


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_matches_the_reference_ops(dtype):
    """A few epochs with CpuOps and with Ops land on the same weights (to float rounding)."""
    rng = numpy.random.default_rng(7)
    X, Y = rng.standard_normal((600, 12)), rng.standard_normal((600, 3))
    models = []
    for ops in (Ops(), CpuOps()):
        model = MLP([12, 300, 260, 3], dtype=dtype, device="cpu", seed=0)
        model.ops = ops
        model.fit(X, Y, epochs=2, batch_size=300, lr=1e-3, verbose=False)
        models.append(model)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(models[1].params, models[0].params, **tol)


def test_nan_propagates_like_the_reference():
    """And ReLU(-0.0) is the reference's +0.0: the same bits."""
    Z = numpy.array([[numpy.nan, -1.0, 2.0, -0.0]] * 4, numpy.float32)
    b = numpy.array([0.0, 0.0, 0.0, -0.0], numpy.float32)
    ref, got = Z.copy(), Z.copy()
    Ops().bias_activation(ref, b, ACTIVATIONS["relu"], ref, False)
    CpuOps().bias_activation(got, b, ACTIVATIONS["relu"], got, False)
    numpy.testing.assert_array_equal(got.view(numpy.uint32), ref.view(numpy.uint32))
    assert numpy.isnan(got[:, 0]).all() and not numpy.signbit(got[:, 3]).any()


def test_pieces_on_gpunns_threads_run_under_the_callers_floating_point_error_state():
    # numpy.errstate is per thread: the training loop's must reach an ensemble's member groups
    from gpunn.ops.cpu import run_pieces

    def invalid(_):
        numpy.subtract(numpy.inf, numpy.inf)

    with numpy.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError):
            run_pieces(invalid, [(0,), (1,)], name="errstate-test")  # the piece on the pool's thread raises too
    with numpy.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        run_pieces(invalid, [(0,), (1,)], name="errstate-test")


def waiting_for_the_pieces(thread, most_s=5.0):
    """Until ``thread`` waits inside gpunn.ops.cpu.wait_uninterrupted (at most ``most_s`` of the time this process ran,
    as tests/waiting.py counts it: code without it never does), so that a signal sent now comes while it waits, not a
    few bytecodes before (a wall-clock limit would run out at once after the machine had stopped the process)."""
    import sys
    import time

    import waiting

    deadline = waiting.Deadline(most_s)
    while not deadline.expired():
        frame, names = sys._current_frames().get(thread), []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        if "wait_uninterrupted" in names[1:]:  # in what it calls: its try
            return
        time.sleep(0.001)


@pytest.mark.parametrize("interrupt", [False, True], ids=["the-callers-piece-raises", "ctrl-c-while-it-waits"])
@pytest.mark.parametrize("workers", ["pool", "spinning"])
def test_no_piece_outlives_the_call_that_hands_it_to_gpunns_threads(workers, interrupt):
    """run_pieces and _SpinningWorkers.run (an ensemble's member groups) return, or raise, once every piece has
    ended. A piece left running after the caller's own had raised (an error, or Ctrl-C in its group: MLPRegressor's
    fit, fit's second Ctrl-C; run_pieces), or after a Ctrl-C while the caller waited (both), went on writing into
    the model's buffers while the caller used them."""
    import signal
    import threading
    import time
    from signal import SIGINT, pthread_kill

    from gpunn.ops.cpu import run_pieces
    from gpunn.ops.ensemble import _spinning_workers

    if workers == "pool":
        def run(fn, pieces):
            run_pieces(fn, [(p,) for p in pieces], name="outlive-test")
    else:
        spinning = _spinning_workers(1)
        if spinning is None:
            pytest.skip("no Numba")

        def run(fn, pieces):
            spinning.run(fn, pieces)
    caller_in, finished = threading.Event(), threading.Event()

    def piece(i, signal=None):
        if signal is not None:  # _SpinningWorkers' start signal, which its caller waits for
            signal[0][signal[1]] = signal[2]
        if i == 0:
            caller_in.set()
            if not interrupt:
                raise RuntimeError("the caller's piece")
            return
        caller_in.wait(10)
        if interrupt:
            waiting_for_the_pieces(threading.main_thread().ident)
            pthread_kill(threading.main_thread().ident, SIGINT)
        time.sleep(0.3)  # still at work when the caller's piece has ended
        finished.set()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt if interrupt else RuntimeError):
            run(piece, [0, 1])
            time.sleep(1)  # (a signal that reached the main thread only after the call raises here)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finished.is_set()


class Injected(BaseException):
    """An exception raised into the calling thread where a signal handler's would come: a Ctrl-C's
    KeyboardInterrupt, a SIGALRM timeout, sys.exit in a SIGTERM handler."""


def test_wait_uninterrupted_waits_through_any_exception_and_raises_the_first():
    """Any exception that comes while it waits, not only KeyboardInterrupt, is raised once the wait has ended (it
    left at once, a piece still running); and a wait that fails of itself ends once the pieces have."""
    from gpunn.ops.cpu import wait_uninterrupted

    calls = []

    def wait():
        calls.append(len(calls))
        if len(calls) < 3:
            raise (Injected, KeyboardInterrupt)[len(calls) - 1]("meanwhile")

    with pytest.raises(Injected):
        wait_uninterrupted(wait, lambda: False)
    assert calls == [0, 1, 2]  # waited to its end after both

    checks = []

    def broken():
        raise RuntimeError("a wait that fails of itself")

    with pytest.raises(RuntimeError, match="fails of itself"):
        wait_uninterrupted(broken, lambda: checks.append(None) or len(checks) == 3)  # settled at the third check
    assert len(checks) == 3


@pytest.mark.parametrize("workers", ["pool", "spinning"])
def test_an_exception_at_any_call_of_a_hand_off_leaves_no_piece_running(workers):
    """An exception raised in the calling thread at the entry of any function it runs while it hands pieces to
    gpunn's threads and waits for them (where a signal handler's lands: Python runs the handler as a function is
    entered, a loop turns or a C call returns) leaves only once every piece handed over has ended, or will never
    start. Each such point in turn, by sys.settrace (but those in threading.py), on a thread of the test's own, so
    that a call that hangs fails the test. run_pieces left a piece running after a KeyboardInterrupt inside
    ThreadPoolExecutor.submit once it had queued the piece (no future to wait for) or one that came as the wait was
    entered (before wait_uninterrupted's try), and hung where one came inside concurrent.futures.wait (a future's
    lock left held, which the worker then waited on); _SpinningWorkers.run left its group running after one that
    came as its wait was entered, or any exception but KeyboardInterrupt while it waited."""
    import gc
    import sys
    import threading
    import time

    import waiting

    from gpunn.ops import ensemble
    from gpunn.ops.cpu import run_pieces

    log = []  # (call, piece, "start" or "end"), appended by the workers
    hooked = getattr(sys.modules.get("fakecupy_setitem"), "__file__", None)  # tests/conftest.py's import hook

    def piece(call, i, signal=None):
        if signal is not None:  # _SpinningWorkers' start signal, which its caller waits for
            signal[0][signal[1]] = signal[2]
        if i:
            log.append((call, i, "start"))
            time.sleep(0.002)
            log.append((call, i, "end"))

    if workers == "pool":
        def run(call):
            run_pieces(piece, [(call, 0), (call, 1), (call, 2)], name="inject-test")
    else:
        pause = ensemble._sched_yield()
        if ensemble.numba is None or pause is None:
            pytest.skip("no Numba")
        spinning = ensemble._SpinningWorkers(1, pause)  # the test's own: a hang here leaves the others' as they are

        def run(call):
            assert spinning.run(lambda group, signal: piece(*group, signal=signal), [(call, 0), (call, 1)])

    def calls_made(call, at=None):
        """run(call), raising Injected at the entry of its ``at``-th function call; how many it made."""
        made = 0

        def trace(frame, event, arg):
            nonlocal made
            if frame.f_code.co_filename == threading.__file__:  # Python's own windows (an exception as a lock's
                return  # Condition.__exit__ is entered leaves it held), which no caller of them can close
            if frame.f_code.co_filename == hooked:  # the tests' import hook's checks of subscripts: no such call in
                return  # gpunn's own code (a subscript runs NumPy's C code, where no signal's handler runs)
            made += 1
            if made == at:
                sys.settrace(None)
                raise Injected(at)

        # no automatic collection meanwhile: a gc callback (hypothesis registers one) is a call on this thread too, and
        # an exception injected there is printed and dropped ("Exception ignored in"), so the run would go on past it
        gc.disable()
        sys.settrace(trace)  # this thread's 'call' events (no line events: trace returns None)
        try:
            run(call)
        finally:
            sys.settrace(None)
            gc.enable()
        return made

    left, failed = {}, []

    def every_call():
        try:
            calls_made(-1)  # the pool's threads started
            at = 0
            while True:  # (the spinning workers' path, and so its calls, depend on whether a worker sleeps)
                at += 1
                try:
                    calls_made(at, at)
                except Injected:
                    pass
                else:
                    break  # it made fewer calls: ran through
                left[at] = len(log)
                started = {i for call, i, what in log if call == at and what == "start"}
                assert started == {i for call, i, what in log if call == at and what == "end"}, f"an exception at call {at}"
                assert at < 1000
            assert at > 5  # calls were made, each failing in turn (21 in the pool's path, 9 in the spinning one's)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=every_call, daemon=True)
    thread.start()
    deadline = waiting.Deadline(120)  # the time this process ran (tests/waiting.py), not the wall clock
    while thread.is_alive() and not deadline.expired():
        thread.join(waiting.POLL)
    assert not thread.is_alive(), f"a call hung after an exception at call {max(left, default=0) + 1}"
    if failed:
        raise failed[0]
    time.sleep(0.05)  # a piece queued but never waited for starts late
    late = [(call, i) for n, (call, i, what) in enumerate(log) if call in left and n >= left[call]]
    assert not late, f"pieces that started after their call had left: {late}"


@pytest.mark.parametrize("worker", ["spinning", "asleep"])
def test_a_ctrl_c_during_the_hand_off_to_the_spinning_workers_waits_for_their_groups(monkeypatch, worker):
    """A Ctrl-C that comes while _SpinningWorkers.run hands the groups over (its spin until every worker has started,
    Numba without the GIL, after which Python raises it; or its notify of sleeping workers) is raised only once every
    group handed over has ended: it was raised before the wait's try, and the worker's group went on writing."""
    import signal
    import threading
    import time

    from gpunn.ops import ensemble

    spinning = ensemble._spinning_workers(1)
    if spinning is None:
        pytest.skip("no Numba")
    fired = []

    def with_ctrl_c(real, way, before):
        def call(*args):
            if threading.current_thread() is threading.main_thread() and not fired:  # (the worker calls it too)
                fired.append(way)
                if before:  # between the store of the task and the notify of the sleeping worker
                    signal.raise_signal(signal.SIGINT)
                result = real(*args)
                signal.raise_signal(signal.SIGINT)  # as a signal delivered meanwhile: raised here, on return
                return result
            return real(*args)
        return call

    finished = threading.Event()

    def piece(i, signal=None):
        signal[0][signal[1]] = signal[2]
        if i == 1:
            time.sleep(0.3)  # still at work when the caller's Ctrl-C comes
            finished.set()

    # the hand-off takes one of two ways (the worker spinning or asleep): a Ctrl-C at the end of either
    if worker == "spinning":
        spinning.run(piece, [2, 2])  # the worker spins for the next task (about a millisecond)
    else:
        time.sleep(0.2)  # it has gone to sleep
    monkeypatch.setattr(ensemble, "_store_and_wait", with_ctrl_c(ensemble._store_and_wait, "spinning", False))
    monkeypatch.setattr(spinning.cond, "notify_all", with_ctrl_c(spinning.cond.notify_all, "asleep", True))
    rescued, over = [], threading.Event()

    def rescue():  # where nothing woke the sleeping worker, the wait would last for ever: the test fails instead
        import waiting

        deadline = waiting.Deadline(20)  # the time this process ran (a wall-clock timer fires at once after a stop)
        while not over.wait(waiting.POLL):
            if deadline.expired():
                rescued.append(True)
                with spinning.cond:
                    spinning.cond.notify_all()
                return

    rescuer = threading.Thread(target=rescue, name="rescuer", daemon=True)
    rescuer.start()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            spinning.run(piece, [0, 1])
    finally:
        signal.signal(signal.SIGINT, previous)
        over.set()
        rescuer.join()
    assert fired and finished.is_set() and not rescued  # (fired: which way, mostly the one asked for; a loaded machine may differ)


def test_a_workers_error_in_a_step_whose_caller_raised_is_not_raised_by_the_next_step():
    """Where the caller's own group raised (Ctrl-C, an error) and a worker's group raised too, the caller's error
    leaves _SpinningWorkers.run; the worker's was kept and raised by the next run, a later step that did not fail.
    Likewise the second of two workers' errors in one step."""
    from gpunn.ops.ensemble import _spinning_workers

    spinning = _spinning_workers(1)
    if spinning is None:
        pytest.skip("no Numba")

    def piece(fails, signal=None):
        signal[0][signal[1]] = signal[2]
        if fails:
            raise fails

    with pytest.raises(RuntimeError):
        spinning.run(piece, [RuntimeError("the caller's group"), ValueError("the worker's group")])
    assert spinning.run(piece, [None, None])  # the next step runs, raising nothing
    with pytest.raises(ValueError):  # (a worker's error alone is still raised)
        spinning.run(piece, [None, ValueError("the worker's group")])
    two = _spinning_workers(2)  # two workers' errors in one step: the first raised, the second not kept either
    with pytest.raises(ValueError, match="first"):
        two.run(piece, [None, ValueError("first"), KeyError("second")])
    assert two.run(piece, [None, None, None])


@pytest.mark.parametrize("hand_off", ["pool", "spinning workers"])
def test_a_child_forked_after_its_parent_used_gpunns_threads_runs_pieces_on_threads_of_its_own(hand_off):
    """A child forked (multiprocessing's default start on Linux: a Pool that predicts with an ensemble fitted in
    the parent) inherited the parent's pool without its worker threads, which took the child's pieces and never
    ran them: its first run_pieces hung (here: SIGALRM after 20 s). The same for the one-call group pass's
    _SpinningWorkers (mut18a A83: the child's run waited for a group handed to a thread that is not there). A
    fresh process, as a fork from pytest's own threads could deadlock."""
    import sys

    import waiting

    if hand_off == "pool":
        run = ("from gpunn.ops.cpu import run_pieces\n"
               "def say(word):\n"
               "    os.write(1, word + b'\\n')  # one write: two threads' lines never interleave\n"
               "def run(words):\n"
               "    run_pieces(say, [(w,) for w in words])\n")
    else:
        from gpunn.ops import ensemble

        if ensemble._spinning_workers(1) is None:
            pytest.skip("no Numba or sched_yield")
        run = ("from gpunn.ops import ensemble\n"
               "def say(word, signal):\n"
               "    signal[0][signal[1]] = signal[2]  # what the group pass's kernel does on entry\n"
               "    os.write(1, word + b'\\n')\n"
               "def run(words):\n"
               "    assert ensemble._spinning_workers(1).run(say, words)\n")
    code = ("import os, signal\n" + run +
            "run([b'parent', b'parent'])\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    signal.alarm(20)\n"
            "    run([b'child', b'child'])\n"
            "    os._exit(0)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "raise SystemExit(os.waitstatus_to_exitcode(status))")
    proc = waiting.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["parent"] * 2 + ["child"] * 2


FORK_WHILE_HELD = """
import os, signal, sys, threading
import numpy
from gpunn.ops import cblas, ensemble, gemm

def blocking_find(dtype):  # a binding being found, under once_per_float_dtype's lock, by the parent's thread
    if threading.current_thread() is not threading.main_thread():
        held.set()
        release.wait()

slow = cblas.once_per_float_dtype(blocking_find)

def under(lock):
    def hold():
        with lock.current:
            held.set()
            release.wait()
    return hold

cases = {  # name: (what the parent's thread holds, what the child then calls)
    "spinning workers": (under(ensemble._SPINNERS_LOCK), lambda: ensemble._spinning_workers(1)),
    "gemm libraries": (under(gemm._LOAD_LOCK), lambda: gemm.library("numpy")),
    "cblas bindings": (lambda: slow(numpy.float32), lambda: slow(numpy.float64)),
}
for name in sys.argv[1:]:
    hold, call = cases[name]
    held, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)
        call()
        os._exit(0)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    print(name, os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork here")
def test_a_child_forked_while_another_thread_holds_one_of_gpunns_locks_finds_it_released():
    """A lock another thread holds at the fork stays held for ever in the child, which has only the forking thread:
    the first call there that takes one of gpunn's module-level locks (the spinning workers' registry, the GEMM
    libraries' loading, each CBLAS binding's finding) hung (here: SIGALRM after 10 s, exit status -14). A child
    gets new ones, beside its new thread pools (d224d62). A fresh process, as a fork from pytest's own threads
    could deadlock."""
    import sys

    import waiting

    names = ["spinning workers", "gemm libraries", "cblas bindings"]
    proc = waiting.run([sys.executable, "-c", FORK_WHILE_HELD, *names], timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"{name} 0" for name in names]


def test_the_bias_gradient_of_a_large_batch_is_summed_in_float64_as_on_the_gpu():
    """float32 column sums of 2**17 rows drift (each add rounds to the running sum's ulp, 2**-10 past 8,192);
    the GPU's bias_grad sums in double and rounds once. Every CPU path does too now: the NumPy reference, the
    fused column sums (one thread and two), ReLU's fused backward, and an ensemble's member sums (the plain, the
    fused ReLU and the one-output outer-product paths): each within an ulp of the float64 sum rounded once."""
    from gpunn.ops import ensemble_ops_for

    rng = numpy.random.default_rng(0)
    dZ = (0.1 + 0.01 * rng.random((2**17, 3))).astype(numpy.float32)
    exact = dZ.astype(numpy.float64).sum(axis=0).astype(numpy.float32)  # what kernels/reductions.cu computes
    drift = numpy.abs(dZ.sum(axis=0) / exact - 1).max()
    assert drift > 4e-6  # float32 sums (NumPy's, the kernels' before) are 70 ulps off or more

    def close(db, want=exact):
        numpy.testing.assert_array_max_ulp(db, want, maxulp=1)

    relu, ones = ACTIVATIONS["relu"], numpy.ones_like(dZ)
    for ops in (Ops(numpy), CpuOps(threads=1), CpuOps(threads=2)):
        db = numpy.full(3, numpy.nan, numpy.float32)
        close(ops.bias_gradient(dZ, db))
        dA, db = dZ.copy(), numpy.full(3, numpy.nan, numpy.float32)
        ops.activation_bias_backward(dA, relu, ones, True, dA, db)
        close(db)
        members = ensemble_ops_for(ops)
        stack = numpy.stack([dZ, dZ[::-1]])
        db = numpy.full((2, 3), numpy.nan, numpy.float32)
        close(members.bias_gradient(stack, db), numpy.stack([exact, exact]))
        dA, db = stack.copy(), numpy.full((2, 3), numpy.nan, numpy.float32)
        members.activation_bias_backward(dA, relu, numpy.ones_like(stack), True, dA, db)
        close(db, numpy.stack([exact, exact]))
    dz = numpy.ascontiguousarray(dZ[:, :1])[None]  # (K=1, rows, 1): the output layer's dZ, times w = 1 for 3 columns
    dA, db = numpy.empty((1, 2**17, 3), numpy.float32), numpy.full((1, 3), numpy.nan, numpy.float32)
    assert members.outer_activation_bias_backward(dz, numpy.ones((1, 3, 1), numpy.float32), relu,
                                                  numpy.ones_like(dA), True, dA, db) == (numba is not None)
    if numba is not None:
        close(db[0], numpy.full(3, exact[0]))


class PieceError(BaseException):
    """Not an Exception: what a worker's piece may raise besides errors (SystemExit, a signal handler's)."""


def test_run_pieces_raises_a_workers_error_the_first_in_the_pieces_order():
    """An error raised only by a piece on a worker is raised by run_pieces once every piece has ended (not lost
    with the worker's future); of two workers' errors the first piece's; a BaseException too."""
    from gpunn.ops.cpu import run_pieces

    ran = []

    def piece(i, error=None):
        ran.append(i)
        if error is not None:
            raise error

    with pytest.raises(ValueError, match="worker's"):
        run_pieces(piece, [(0,), (1, ValueError("the worker's"))], name="errors-test")
    assert sorted(ran) == [0, 1]
    ran.clear()
    with pytest.raises(KeyError, match="first"):
        run_pieces(piece, [(0,), (1, KeyError("first")), (2, ValueError("second"))], name="errors-test")
    assert sorted(ran) == [0, 1, 2]
    with pytest.raises(PieceError):
        run_pieces(piece, [(0,), (1, PieceError())], name="errors-test")
    run_pieces(piece, [(0,), (1,)], name="errors-test")  # nothing kept from the calls before


def _busy_pool(name, release):
    """gpunn's pool for two pieces of ``name`` (one worker), that worker held by a task until ``release()``
    returns; the pool."""
    from gpunn.ops import cpu

    pool = cpu._pool(2, name)
    held = __import__("threading").Event()

    def hold():
        held.set()
        release()

    pool.submit(hold)
    assert held.wait(60)
    return pool


def test_a_piece_queued_behind_a_busy_worker_runs_before_run_pieces_returns():
    """run_pieces returns only once every piece has run, also those a worker takes only after the caller's own
    piece has ended (here the pool's worker is busy until the caller waits)."""
    import threading

    from gpunn.ops.cpu import run_pieces

    caller = threading.get_ident()
    _busy_pool("queued-test", lambda: waiting_for_the_pieces(caller))
    ran = []
    run_pieces(ran.append, [(0,), (1,)], name="queued-test")
    assert sorted(ran) == [0, 1]


def test_a_piece_no_worker_started_is_cancelled_when_the_callers_piece_raises():
    """Where the caller's own piece raises, a piece still queued (the pool's worker busy) never runs: run_pieces
    raises at once, not after the worker has got to the piece and run it."""
    import threading

    from gpunn.ops.cpu import run_pieces

    released, ran = threading.Event(), []
    pool = _busy_pool("cancel-test", lambda: released.wait(10))

    def piece(i):
        ran.append(i)
        if i == 0:
            raise RuntimeError("the caller's piece")

    try:
        with pytest.raises(RuntimeError, match="caller's"):
            run_pieces(piece, [(0,), (1,)], name="cancel-test")
    finally:
        released.set()
    pool.submit(lambda: None).result(60)  # the worker has been through the queue
    assert ran == [0]


def test_run_pieces_keeps_one_pool_per_name_and_size():
    """The calls of one name and piece count share one pool of count - 1 workers, started as needed, that stay for
    the next call: a hundred calls start no hundred threads."""
    import threading

    from gpunn.ops.cpu import run_pieces

    workers = set()
    run_pieces(lambda i: None, [(0,), (1,), (2,)], name="reuse-test")
    before = threading.active_count()
    for _ in range(100):
        run_pieces(lambda i: workers.add(threading.get_ident()) if i else None, [(0,), (1,), (2,)], name="reuse-test")
    assert len(workers) <= 2 and threading.active_count() <= before + 1  # the first call started one at least


def test_pieces_that_run_pieces_on_a_pool_of_another_name_do_not_wait_on_themselves():
    """A piece on a pool's worker that itself runs pieces (an ensemble's member group splitting a kernel) hands
    them to the pool of its own name: handed to the pool it runs on, they would queue behind it for ever."""
    import threading

    import waiting

    from gpunn.ops.cpu import run_pieces

    ran, done = [], threading.Event()

    def outer(i):
        run_pieces(ran.append, [(2 * i,), (2 * i + 1,)], name="nested-inner")

    def call():
        run_pieces(outer, [(0,), (1,)], name="nested-outer")
        done.set()

    threading.Thread(target=call, daemon=True).start()
    deadline = waiting.Deadline(30)
    while not done.wait(waiting.POLL) and not deadline.expired():
        pass
    assert done.is_set() and sorted(ran) == [0, 1, 2, 3]


@pytest.mark.parametrize("value, threads", [(None, 1), ("", 1), ("  ", 1), (" 3 ", 3), ("2", 2), ("1", 1)])
def test_gpunn_cpu_threads_sets_the_kernels_threads_one_by_default(monkeypatch, value, threads):
    # 0 and negative numbers were taken as 1: now refused (tests/test_environment.py)
    from gpunn.ops import cpu

    if value is None:
        monkeypatch.delenv("GPUNN_CPU_THREADS", raising=False)
    else:
        monkeypatch.setenv("GPUNN_CPU_THREADS", value)
    assert cpu.default_threads() == threads
    assert CpuOps().threads == threads  # unless given: CpuOps(threads=...)
    assert CpuOps(threads=5).threads == 5 and CpuOps(threads=0).threads == 1


def test_usable_cores_are_those_this_process_may_run_on(monkeypatch):
    from gpunn.ops import cpu

    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {3, 5, 7}, raising=False)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 64)
    assert cpu.usable_cores() == 3


@pytest.mark.parametrize("value, cores", [("8", 8), ("128", 64), (" 4 ", 4), ("0", 64), ("8(x2)", 64), ("", 64),
                                          (None, 64)])
def test_slurms_cpus_per_task_caps_the_usable_cores(monkeypatch, value, cores):
    """A Slurm job of --cpus-per-task=8 on a 64-core node that Slurm does not bind to its cores (task/none, its
    default) may run on all 64: gpunn used them all (its member groups, BLIS's pieces). A value that is not a whole
    number 1 or more is Slurm's business, not refused: the affinity set counts then."""
    from gpunn.ops import cpu

    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    if value is None:
        monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    else:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", value)
    assert cpu.usable_cores() == cores and cpu.affinity_cores() == 64


@pytest.mark.parametrize("setting", [None, "1", "1 and fused=True"])
def test_without_numba_cpu_ops_is_the_reference_and_the_kernels_asked_for_are_refused(monkeypatch, setting):
    """Numba not installed: the default runs the reference, silently (the [cpu] extra is optional); fused=True or
    GPUNN_FUSED_KERNELS=1 asks for the kernels and is refused, as a Numba that does not import is (it ran the
    reference without a word)."""
    from gpunn.checks import MissingExtra
    from gpunn.ops import cpu

    monkeypatch.setattr(cpu, "numba", None)
    asked = dict(fused=True)
    if setting is not None:
        monkeypatch.setenv("GPUNN_FUSED_KERNELS", "1")
        asked = {} if setting == "1" else asked
    # fused=True is kept over the variable: with both, "set GPUNN_FUSED_KERNELS=0" (as it said) would not help
    by, instead = {None: ("fused=True", "leave fused unset (or pass fused=False)"),
                   "1": ("GPUNN_FUSED_KERNELS=1", "set GPUNN_FUSED_KERNELS=0"),
                   "1 and fused=True": ("fused=True", "pass fused=False")}[setting]
    with pytest.raises(MissingExtra, match=rf"^{by} asks for gpunn's fused CPU kernels, which need Numba: it is not "
                                           rf"installed; install it \(pip install 'gpunn\[cpu\]'\), or "
                                           rf"{re.escape(instead)} to run the NumPy reference$"):
        MLP([3, 4, 1], device="cpu", **asked)
    monkeypatch.delenv("GPUNN_FUSED_KERNELS", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # silently: the default asked for nothing
        ops = CpuOps()
        assert not ops.fused
    monkeypatch.setattr(Ops, "bias_activation", lambda *args: "the reference's")
    Z = numpy.ones((4, 3), numpy.float32)
    assert ops.bias_activation(Z, numpy.ones(3, numpy.float32), ACTIVATIONS["relu"], Z, False) == "the reference's"


@pytest.mark.parametrize("n, threads", [(10, 3), (2, 3), (7, 1), (1, 4), (2**16 + 1, 2)])
def test_split_rows_calls_fn_over_contiguous_nearly_equal_pieces_one_per_thread(n, threads):
    """_split_rows (BLIS's row split) gives fn(lo, hi) pieces that cover [0, n) in order, one per thread but no
    more than the rows (none empty), their sizes within one row of each other; a single one on the calling thread."""
    import threading

    from gpunn.ops.cpu import _split_rows

    calls = []
    _split_rows(lambda lo, hi: calls.append((lo, hi, threading.get_ident())), n, threads=threads)
    pieces = sorted(call[:2] for call in calls)
    assert len(pieces) == min(n, threads)
    assert [lo for lo, _ in pieces] == [0] + [hi for _, hi in pieces[:-1]] and pieces[-1][1] == n
    sizes = [hi - lo for lo, hi in pieces]
    assert min(sizes) >= max(sizes) - 1 >= 0
    if len(pieces) == 1:
        assert calls[0][2] == threading.get_ident()


def test_split_rows_takes_a_piece_per_usable_core_by_default(monkeypatch):
    from gpunn.ops import cpu

    monkeypatch.setattr(cpu, "usable_cores", lambda: 3)
    calls = []
    cpu._split_rows(lambda lo, hi: calls.append((lo, hi)), 9)
    assert sorted(calls) == [(0, 3), (3, 6), (6, 9)]  # (nine rows split in three)


@pytest.mark.skipif(numba is None, reason="no Numba")
def test_gpunn_cpu_threads_splits_the_kernels_work_from_parallel_min_elements_on(monkeypatch):
    """With threads > 1 a kernel's work of at least PARALLEL_MIN_ELEMENTS elements (multiply-adds, for a small-k
    product) is split into one piece of rows (of elements, for Adam) per thread, but no more pieces than rows; less
    work runs on the calling thread alone."""
    from gpunn.ops import cpu

    handed = []

    def recording(fn, pieces, name="cpu"):
        handed.append([piece[-2:] for piece in pieces])
        return run_pieces(fn, pieces, name)

    def split(n, parts):
        """Whether ``handed`` holds one call's ``parts`` pieces covering [0, n) in order, within one of each other."""
        if len(handed) != 1 or len(handed[0]) != parts:
            return False
        (pieces,) = handed
        sizes = [hi - lo for lo, hi in pieces]
        return ([lo for lo, _ in pieces] == [0] + [hi for _, hi in pieces[:-1]] and pieces[-1][1] == n
                and min(sizes) >= max(sizes) - 1)

    run_pieces = cpu.run_pieces
    monkeypatch.setattr(cpu, "run_pieces", recording)
    ops, relu, f32 = CpuOps(threads=3), ACTIVATIONS["relu"], numpy.float32
    assert PARALLEL_MIN_ELEMENTS % 2**13 == 0  # (so that these shapes sit at the threshold and just under it)
    at = PARALLEL_MIN_ELEMENTS // 2**10
    for rows, cols, parts in [(2**10, at - 1, 0), (2**10, at, 3), (2, PARALLEL_MIN_ELEMENTS // 2, 2)]:
        Z, db = numpy.ones((rows, cols), f32), numpy.zeros(cols, f32)
        for call in (lambda: ops.bias_activation(Z, db, relu, Z, False), lambda: ops.bias_gradient(Z, db),
                     lambda: ops.activation_backward(Z, relu, Z, True, Z),
                     lambda: ops.activation_bias_backward(Z, relu, Z, True, Z, db)):
            handed.clear()
            call()
            assert split(rows, parts) if parts else handed == [], (rows, cols, handed)
    k = 8  # a small-k product's work: its multiply-adds, out.size * k
    cols = PARALLEL_MIN_ELEMENTS // (2**10 * k)
    for rows, parts in [(2**10 - 1, 0), (2**10, 3)]:
        handed.clear()
        ops.matmul(numpy.ones((rows, k), f32), numpy.ones((k, cols), f32), numpy.empty((rows, cols), f32))
        assert split(rows, parts) if parts else handed == [], (rows, handed)
    for n, parts in [(PARALLEL_MIN_ELEMENTS - 1, 0), (PARALLEL_MIN_ELEMENTS, 3)]:
        handed.clear()
        ops.adam_step(*_state(numpy.random.default_rng(0), n, "float32"), 3e-3, 0.9, 0.999, 1e-8, 1, 0.0, False)
        assert split(n, parts) if parts else handed == [], (n, handed)


@pytest.mark.skipif(numba is None, reason="no Numba")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernels_take_every_case_they_are_written_for(monkeypatch, dtype, threads):
    """In-place ReLU forward and backward (with and without the bias gradient), column sums, small-k products
    (k = 1..8 into >= 4096 elements, W^T too) and Adam / AdamW on C-contiguous float32 and float64 arrays run
    the fused kernels, on one thread and split over two, and none of the reference's methods."""
    for name in ("bias_activation", "activation_backward", "activation_bias_backward", "bias_gradient",
                 "adam_step", "matmul"):
        monkeypatch.setattr(Ops, name, lambda *args, name=name: pytest.fail(f"the reference's {name}"))
    monkeypatch.setattr(numpy, "matmul", lambda *args, **kwargs: pytest.fail("numpy.matmul"))
    ops, relu = CpuOps(threads=threads), ACTIVATIONS["relu"]
    rng = numpy.random.default_rng(10)
    Z, b = rand(rng, (300, 256), dtype), rand(rng, 256, dtype)
    assert ops.bias_activation(Z, b, relu, Z, False) is Z  # each returns what it wrote, as the reference does
    assert ops.activation_backward(Z, relu, Z, True, Z) is Z
    assert ops.activation_bias_backward(Z, relu, Z, True, Z, b) is Z
    assert ops.bias_gradient(Z, b) is b
    for k in range(1, 9):  # into 4096 elements, the least
        a, w = rand(rng, (256, k), dtype), rand(rng, (16, k), dtype)
        out = numpy.empty((256, 16), dtype)
        assert ops.matmul(a, w.T, out) is out
        assert ops.matmul(a, numpy.ascontiguousarray(w.T), out) is out
    for weight_decay, decoupled in [(0.0, False), (0.01, False), (0.01, True)]:
        state = _state(rng, PARALLEL_MIN_ELEMENTS + 101, dtype)
        assert ops.adam_step(*state, 3e-3, 0.9, 0.999, 1e-8, 1, weight_decay, decoupled) is state[0]


def _unfused_cases(rng):
    """(method, args, indices of the arrays it writes) for calls the kernels do not take: no bias, a stack of
    members (3-D), out-of-place, a strided or Fortran-ordered array, mixed dtypes, float16, 2-D Adam buffers, a
    1-D bias gradient. Each large enough to be split over two threads were it fused."""
    relu = ACTIVATIONS["relu"]
    f32, f64 = numpy.float32, numpy.float64
    Z, Z3, b = rand(rng, (300, 256), f32), rand(rng, (2, 150, 256), f32), rand(rng, 256, f32)
    wide, Z16 = rand(rng, (300, 512), f32), rand(rng, (300, 256), numpy.float16)
    big = _state(rng, PARALLEL_MIN_ELEMENTS + 1, f32)
    cases = {
        "forward, no bias": ("bias_activation", (Z, None, relu, Z, False), [0]),
        "forward, members": ("bias_activation", (Z3, b, relu, Z3, False), [0]),
        "forward, strided": ("bias_activation", (wide[:, ::2], b, relu, wide[:, ::2], False), [0]),
        "forward, float64 bias": ("bias_activation", (Z, b.astype(f64), relu, Z, False), [0]),
        "forward, float16": ("bias_activation", (Z16, b.astype(numpy.float16), relu, Z16, False), [0]),
        "backward, members": ("activation_backward", (Z3, relu, -Z3, False, Z3), [0]),
        "backward, Fortran order": ("activation_backward", (numpy.asfortranarray(Z), relu, Z, False, None), [0]),
        "backward, float64 source": ("activation_backward", (Z, relu, Z.astype(f64), False, None), [0]),
        "backward, out of place": ("activation_backward", (Z, relu, -Z, False, numpy.empty_like(Z)), [4]),
        "backward + bias, out of place": ("activation_bias_backward",
                                          (Z, relu, -Z, False, numpy.empty_like(Z), numpy.empty(256, f32)), [4, 5]),
        "backward + bias, members": ("activation_bias_backward",
                                     (Z3, relu, -Z3, False, Z3, numpy.empty((150, 256), f32)), [0, 5]),
        "backward + bias, float64 db": ("activation_bias_backward", (Z, relu, -Z, False, Z, numpy.empty(256, f64)),
                                        [0, 5]),
        "backward + bias, no db": ("activation_bias_backward", (Z, relu, -Z, False, Z, None), [0]),
        "bias gradient, members": ("bias_gradient", (Z3, numpy.empty((150, 256), f32)), [1]),
        "bias gradient, 1-D": ("bias_gradient", (rand(rng, 2**17, f32), numpy.empty((), f32)), [1]),
        "bias gradient, strided": ("bias_gradient", (wide[:, ::2], numpy.empty(256, f32)), [1]),
        "bias gradient, float64 db": ("bias_gradient", (Z, numpy.empty(256, f64)), [1]),
        "small-k product, float64 weights": ("matmul", (Z[:, :4], rand(rng, (4, 256), f64), Z.copy()), [2]),
        "small-k product, strided out": ("matmul", (Z[:, :4], rand(rng, (4, 256), f32), wide[:, ::2]), [2]),
        "small-k product, float16": ("matmul", (Z16[:, :4], rand(rng, (4, 256), numpy.float16), Z16.copy()), [2]),
        "adam, 2-D": ("adam_step", (*(a.reshape(300, -1) for a in _state(rng, 300 * 256, f32)), 3e-3, 0.9, 0.999,
                                    1e-8, 2, 0.01, False), [0, 2, 3]),
        "adam, float64 moments": ("adam_step", (*big[:2], *(a.astype(f64) for a in big[2:]), 3e-3, 0.9, 0.999, 1e-8, 2,
                                                0.0, False), [0, 2, 3]),
    }
    for name, (method, args, written) in cases.items():
        if method == "activation_backward" and args[4] is None:  # in place
            args = (*args[:4], args[0])
        cases[name] = (method, args, written)
    return cases


@pytest.mark.parametrize("case", sorted(_unfused_cases(numpy.random.default_rng(0))))
@pytest.mark.parametrize("threads", [1, 2])
def test_calls_the_kernels_do_not_take_give_the_references_numbers(case, threads):
    """The reference's results, exactly, for every call the fused kernels are not written for (where one went to
    a kernel it raised, wrote into the wrong array or summed at another precision)."""
    results = []
    for ops in (Ops(), CpuOps(threads=threads)):
        method, args, written = _unfused_cases(numpy.random.default_rng(11))[case]
        getattr(ops, method)(*args)
        results.append([args[i] for i in written])
    for got, want in zip(*results):
        numpy.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_adam_is_the_references_bit_for_bit(dtype, threads):
    """The fused Adam and AdamW do the reference's arithmetic in its order with its roundings (the scalars rounded
    to the array's dtype, as NumPy rounds a Python float): the same bits, one thread or two."""
    rng = numpy.random.default_rng(12)
    for weight_decay, decoupled in [(0.0, False), (0.01, False), (0.01, True)]:
        ref = _state(rng, PARALLEL_MIN_ELEMENTS + 101, dtype)
        got = tuple(a.copy() for a in ref)
        for step in (1, 2, 50):
            Ops().adam_step(*ref, 3e-3, 0.9, 0.999, 1e-8, step, weight_decay, decoupled)
            CpuOps(threads=threads).adam_step(*got, 3e-3, 0.9, 0.999, 1e-8, step, weight_decay, decoupled)
        for r, g in zip(ref, got):
            numpy.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_single_row_of_many_columns(threads):
    """One row of more than PARALLEL_MIN_ELEMENTS columns (nothing to split by rows): the reference's numbers."""
    rng = numpy.random.default_rng(13)
    relu, cols = ACTIVATIONS["relu"], PARALLEL_MIN_ELEMENTS + 3
    results = []
    for ops in (Ops(), CpuOps(threads=threads)):
        Z, b = rand(rng, (1, cols), "float32"), rand(rng, cols, "float32")
        ops.bias_activation(Z, b, relu, Z, False)
        dA, db = rand(rng, (1, cols), "float32"), numpy.empty(cols, numpy.float32)
        ops.activation_bias_backward(dA, relu, Z, True, dA, db)
        dA2 = rand(rng, (1, cols), "float32")
        ops.activation_backward(dA2, relu, Z, True, dA2)
        db2 = ops.bias_gradient(dA2, numpy.empty(cols, numpy.float32)).copy()
        results.append((Z, dA, db, dA2, db2))
        rng = numpy.random.default_rng(13)
    for got, want in zip(*results):
        numpy.testing.assert_array_equal(got, want)


def _a_started_piece(handed, i):
    """Piece i of ``handed`` started on a worker thread of the test's own, running until the event returned is set."""
    import threading

    started, release = threading.Event(), threading.Event()
    threading.Thread(target=handed.run, args=(i, lambda: started.set() or release.wait(60), ()), daemon=True).start()
    assert started.wait(60)
    return release


def test_handed_pieces_are_settled_once_each_has_ended_or_was_cancelled():
    """_Handed.settled (the check wait_uninterrupted makes after an exception) is true once every piece has ended
    or was cancelled, not while one runs or waits; a cancelled piece never runs."""
    import threading

    from gpunn.ops.cpu import _Handed

    handed, ran = _Handed(3), []
    handed.run(0, ran.append, (0,))
    release = _a_started_piece(handed, 1)
    assert not handed.settled()
    cancelled = _Handed(2)
    cancelled.cancel_and_wait()  # (no worker started either piece)
    assert cancelled.settled()
    late = threading.Thread(target=cancelled.run, args=(0, ran.append, ("cancelled",)))  # a worker getting to it
    late.start()
    late.join(60)
    release.set()
    handed.cancel_and_wait()  # piece 2 cancelled, piece 1 waited for
    assert handed.settled() and ran == [0] and handed.ended == [True, True, False]


def test_a_cancel_interrupted_and_tried_again_keeps_the_pieces_it_cancelled():
    """Where an exception interrupts the caller's cancel (after it claimed the pieces no worker had started, while
    it waited for those started), its next try takes those claims again (a reentrant lock): it counts them as
    cancelled and waits only for the started ones, instead of waiting for ever on pieces that will never run."""
    import threading

    import waiting

    from gpunn.ops.cpu import _Handed, wait_uninterrupted

    handed, done, failed = _Handed(2), threading.Event(), []
    release = _a_started_piece(handed, 1)
    wait, tries = handed.wait, []

    def interrupted_once():
        tries.append(None)
        if len(tries) == 1:
            raise KeyboardInterrupt  # as a Ctrl-C between the claims and the wait
        release.set()
        wait()

    handed.wait = interrupted_once

    def cancel():
        try:
            wait_uninterrupted(handed.cancel_and_wait, handed.settled)
        except KeyboardInterrupt:
            done.set()
        except BaseException as exc:
            failed.append(exc)

    threading.Thread(target=cancel, daemon=True).start()
    deadline = waiting.Deadline(30)
    while not done.wait(waiting.POLL) and not failed and not deadline.expired():
        pass
    release.set()
    assert done.is_set() and not failed and len(tries) == 2
    assert handed.cancelled == [True, False] and handed.ended == [False, True]


def test_cpu_ops_hands_its_gemm_chooser_the_row_split_over_gpunns_threads(monkeypatch):
    """The GEMM chooser CpuOps makes gives a library that takes it (BLIS) the row split over the usable cores."""
    from gpunn.ops import gemm
    from gpunn.ops.cpu import _split_rows

    monkeypatch.setattr(gemm, "_SHARED", {})  # the process-wide choosers: CpuOps makes the one for GPUNN_GEMM
    assert CpuOps().gemm.split is _split_rows


def test_products_the_gemm_chooser_does_not_take_are_numpys(monkeypatch):
    """With GEMM libraries to choose from (GPUNN_GEMM), a stack of products (3-D) and a product without ``out``
    are still NumPy's, as the reference computes them (the chooser keys and calls 2-D products into ``out``)."""
    from gpunn.ops import gemm

    monkeypatch.setenv(gemm.ENV, "auto")
    ops = CpuOps()
    ops._numpy_only = False  # (where only NumPy is installed)
    rng = numpy.random.default_rng(14)
    a, b = rand(rng, (3, 40, 32), "float32"), rand(rng, (3, 32, 24), "float32")
    out = numpy.empty((3, 40, 24), numpy.float32)
    numpy.testing.assert_array_equal(ops.matmul(a, b, out), Ops().matmul(a, b, numpy.empty_like(out)))
    numpy.testing.assert_array_equal(ops.matmul(a[0], b[0], None), Ops().matmul(a[0], b[0], None))


@pytest.mark.parametrize("threads", [1, 2])
def test_column_sums_split_over_threads_are_rounded_once(threads):
    """The fused column sums, split over threads or not, keep each piece's sum in float64 and round the total once:
    the float64 sum rounded once, bit for bit (these sums are exact in float64: 2**12 float32 terms near 0.1)."""
    rng = numpy.random.default_rng(15)
    dZ = (0.1 + 0.01 * rng.random((2**12, 64))).astype(numpy.float32)
    assert dZ.size >= PARALLEL_MIN_ELEMENTS
    exact = dZ.astype(numpy.float64).sum(axis=0).astype(numpy.float32)
    ops = CpuOps(threads=threads)
    numpy.testing.assert_array_equal(ops.bias_gradient(dZ, numpy.empty(64, numpy.float32)), exact)
    dA, db = dZ.copy(), numpy.empty(64, numpy.float32)
    ops.activation_bias_backward(dA, ACTIVATIONS["relu"], numpy.ones_like(dZ), True, dA, db)
    numpy.testing.assert_array_equal(db, exact)


NO_NUMBA_UNTIL_A_KERNEL = """
import contextlib, io, sys
import numpy
import gpunn
from gpunn.cli import main
from gpunn.ops import cpu
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["--help"])
model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
from gpunn.ops import lazynumba
from gpunn.training.callbacks import numba_seconds
watch, imports = numba_seconds(), []  # a progress line's Numba seconds, made before the import
lazynumba.on_import(imports.append)
before = sorted(name for name in sys.modules if name.split(".")[0] in ("numba", "llvmlite"))
Z = numpy.full((2, 3), -1.0, numpy.float32)
cpu._bias_relu_inplace(Z, numpy.array([0.5, 1.0, 2.0], numpy.float32), 0, 2)
print(before, "numba" in sys.modules, Z.tolist())
print(watch.listener is not None, len(imports), imports[0] > 0, watch() >= imports[0])
"""


def test_numba_is_imported_at_the_first_kernel_call_not_by_import_gpunn():
    """Numba's import (0.3 s) waits for the first call of a CPU kernel (gpunn.ops.lazynumba): ``import gpunn``, the
    CLI (gpunn --help) and a CPU model's construction do not import it; the first kernel call does, and computes. A
    progress line's Numba seconds made before (gpunn.training.numba_watch.numba_seconds) listen from the import on and
    count the import's seconds."""
    pytest.importorskip("numba")
    import sys

    import waiting

    proc = waiting.run([sys.executable, "-c", NO_NUMBA_UNTIL_A_KERNEL], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[] True [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]", "True 1 True True"]


def test_a_kernel_group_is_defined_once_at_its_first_call_keeping_a_name_set_meanwhile(monkeypatch):
    """gpunn.ops.lazynumba.kernels: each name is a stub until the first call of any, which runs ``_define()`` once
    (then the names are what it bound); a name set on the module before that (a test's monkeypatch) is kept, and its
    stub still calls the definition; a Numba that does not import is named in the error, with the way around it."""
    from gpunn.ops import lazynumba

    made = []
    monkeypatch.setattr(lazynumba, "load", lambda: None)
    monkeypatch.setitem(globals(), "_lazy_double", None)
    monkeypatch.setitem(globals(), "_lazy_triple", None)

    @lazynumba.kernels(("_lazy_double", "_lazy_triple"))
    def define():
        global _lazy_double, _lazy_triple
        made.append(True)
        _lazy_double, _lazy_triple = (lambda x: 2 * x), (lambda x: 3 * x)

    stub = _lazy_triple
    assert isinstance(_lazy_double, lazynumba.Stub) and made == []
    monkeypatch.setitem(globals(), "_lazy_triple", lambda x: -x)  # set before the definitions
    assert _lazy_double(5) == 10 and made == [True]
    assert _lazy_double(6) == 12 and stub(2) == 6 and _lazy_triple(2) == -2
    define()
    assert made == [True]

    def broken():
        raise ImportError("Numba needs NumPy 2.3 or less")

    monkeypatch.setattr(lazynumba, "load", broken)
    monkeypatch.setitem(globals(), "_lazy_quadruple", None)
    lazynumba.kernels(("_lazy_quadruple",))(lambda: None)
    with pytest.raises(ImportError, match=r"need Numba, which is installed but does not import \(Numba needs NumPy "
                                          r"2.3 or less\); GPUNN_FUSED_KERNELS=0 runs the NumPy reference"):
        _lazy_quadruple(1)


ENSEMBLE_KERNELS_AFTER_A_PATCH = """
from gpunn.ops import cpu, ensemble, ufuncs
cpu._define()  # the single-model kernels defined (a CPU fit ran), then one patched by a test
real_adam, patched = cpu._adam, object()
cpu._adam = patched
ufuncs.loop_inplace = patched  # patched before its module's kernels are defined
ensemble._define()  # the first call of an ensemble kernel, meanwhile
cpu._adam = real_adam  # the test's monkeypatch undone
print(ensemble._adam is real_adam, ensemble.loop_inplace is not patched, type(ensemble.loop_inplace).__name__)
"""


def test_ensemble_kernels_call_the_single_model_kernels_as_defined_not_a_patch_set_meanwhile():
    """The ensemble's member kernels call the single-model ones (gpunn.ops.cpu, ufuncs), bound as gpunn.ops.ensemble's
    globals when its kernels are first defined: those are the kernels as their modules defined them, not what a
    test had set on those modules then (which would stay in the ensemble's kernels for the rest of the process).
    A fresh process: in this one the ensemble's kernels may already be defined."""
    pytest.importorskip("numba")
    import sys

    import waiting

    proc = waiting.run([sys.executable, "-c", ENSEMBLE_KERNELS_AFTER_A_PATCH], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True", "CPUDispatcher"]


@pytest.fixture
def broken_numba(monkeypatch):
    """Numba installed but failing to import, as after an upgrade to a NumPy it does not support."""
    from gpunn.ops import cpu, lazynumba

    if cpu.numba is None:
        pytest.skip("Numba is not installed")
    loads = []

    def broken():
        loads.append(True)
        raise ImportError("Numba needs NumPy 2.2 or less.\nGot NumPy 2.4.")

    monkeypatch.setattr(lazynumba, "load", broken)
    monkeypatch.setattr(cpu, "_fallback_warned", False)
    monkeypatch.delenv("GPUNN_FUSED_KERNELS", raising=False)
    return loads


def test_a_numba_that_does_not_import_is_found_at_the_ops_first_use_and_the_reference_runs_with_one_warning(
        broken_numba, monkeypatch):
    """By default (fused=None, GPUNN_FUSED_KERNELS unset) the CPU ops try Numba at the first read of ``fused``, before
    any kernel call but not as they are made (making a CPU model leaves Numba unimported); where it does not import
    they run the NumPy reference and say so once per process (KernelFallbackWarning), rather than stopping the run at
    its first kernel call. The member-axis ops follow. GPUNN_FUSED_KERNELS=0 neither tries Numba nor warns."""
    from gpunn import KernelFallbackWarning
    from gpunn.backend import resolve
    from gpunn.ops import cpu, ensemble_ops_for, ops_for

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops = ops_for(resolve("cpu"))
        members = ensemble_ops_for(ops)
    assert broken_numba == []
    with pytest.warns(KernelFallbackWarning) as said:
        assert members.fused is False and ops.fused is False
    assert [str(w.message) for w in said] == [
        "gpunn: Numba is installed but does not import (Numba needs NumPy 2.2 or less. Got NumPy 2.4.): the CPU runs "
        "the NumPy reference instead of the fused kernels (slower); GPUNN_FUSED_KERNELS=0 runs it "
        "without this warning"]
    assert said[0].filename == __file__  # the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CpuOps().fused is False  # said once
        monkeypatch.setenv("GPUNN_FUSED_KERNELS", "0")
        monkeypatch.setattr(cpu, "_fallback_warned", False)
        assert ops_for(resolve("cpu")).fused is False
    assert len(broken_numba) == 2


@pytest.mark.parametrize("setting", [None, "1", "On"])
def test_fused_kernels_asked_for_with_a_numba_that_does_not_import_are_refused_as_the_ops_are_made(
        broken_numba, monkeypatch, setting):
    """fused=True or GPUNN_FUSED_KERNELS on asks for the kernels: there a Numba that does not import is an error
    (MissingExtra: the command line's one line and status 2) as the model is made, naming what asked, the reason and
    the ways out, as --device cuda without a GPU is; not a fallback the user said not to want."""
    from gpunn.checks import MissingExtra

    asked = {}
    if setting is not None:
        monkeypatch.setenv("GPUNN_FUSED_KERNELS", setting)
    else:
        asked = dict(fused=True)
    by, instead = (("fused=True", "leave fused unset (or pass fused=False)") if setting is None else
                   (f"GPUNN_FUSED_KERNELS={setting}", "set GPUNN_FUSED_KERNELS=0"))  # fused=True is kept over it
    with pytest.raises(MissingExtra) as refused:
        MLP([3, 4, 1], device="cpu", **asked)
    assert str(refused.value) == (
        f"{by} asks for gpunn's fused CPU kernels, which need Numba: it is installed but does not import (Numba needs "
        f"NumPy 2.2 or less. Got NumPy 2.4.); install a Numba that supports NumPy {numpy.__version__}, or {instead} "
        "to run the NumPy reference")
    if setting is not None:  # the argument is kept over the variable, as for the GPU's kernels
        assert MLP([3, 4, 1], device="cpu", fused=False).ops.fused is False


FAKE_BROKEN_NUMBA = "raise ImportError('Numba needs NumPy 2.2 or less. Got NumPy ' + __import__('numpy').__version__)\n"

FALLS_BACK = """
import json, os, sys, warnings
import numpy
import gpunn
from gpunn.checks import MissingExtra
from gpunn.ops import cpu

cpu.NUMBA_START_SECONDS = 0  # Numba tried at the first op, as in the tests' process (tests/conftest.py)
X = numpy.random.default_rng(0).standard_normal((96, 3)).astype(numpy.float32)
Y = numpy.sin(X).sum(axis=1, keepdims=True)

def train(make):
    model = make()
    model.fit(X, Y, epochs=3, batch_size=16, seed=0, verbose=False)
    return model

runs = {"mlp": lambda: gpunn.MLP([3, 8, 8, 1], device="cpu", seed=0),
        "ensemble": lambda: gpunn.Ensemble([3, 8, 1], n_models=3, device="cpu", seed=0)}
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter("always")
    fell_back = {name: train(make) for name, make in runs.items()}
os.environ["GPUNN_FUSED_KERNELS"] = "0"
reference = {name: train(make) for name, make in runs.items()}
out = {"said": [(w.category.__name__, str(w.message)) for w in said],
       "fused": [fell_back["mlp"].ops.fused, fell_back["ensemble"].member_ops.fused],
       "same": [numpy.array_equal(fell_back[name].params, reference[name].params) for name in runs],
       "trained": bool(numpy.isfinite(fell_back["mlp"].params).all()), "numba": "numba" in sys.modules}
del os.environ["GPUNN_FUSED_KERNELS"]
try:
    gpunn.MLP([3, 8, 1], device="cpu", fused=True)
except MissingExtra as exc:
    out["refused"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_numba_package_that_raises_on_import_trains_as_gpunn_fused_kernels_0_with_one_warning(tmp_path):
    """End to end, with a ``numba`` package first on the path that raises ImportError as it is imported (as Numba
    does under a NumPy it does not support): an MLP and an Ensemble train on the CPU to the very parameters of
    GPUNN_FUSED_KERNELS=0, with one KernelFallbackWarning for the process; fused=True is refused. ``gpunn train``
    prints the warning as a note line where it needs the kernels (a small-k product: gpunn.ops.cpu.NUMBA_START_SECONDS)
    and finishes (status 0), and says nothing where its short run never needed them; with GPUNN_FUSED_KERNELS=1 it
    stops before training in one line, status 2. (Before: the first CPU kernel call raised ImportError, part-way
    into the first epoch.)"""
    import json
    import os
    import pathlib
    import sys

    import waiting

    fake = tmp_path / "numba"
    fake.mkdir()
    (fake / "__init__.py").write_text(FAKE_BROKEN_NUMBA)
    root = pathlib.Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "GPUNN_FUSED_KERNELS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(root), env.get("PYTHONPATH", "")])
    why = f"Numba needs NumPy 2.2 or less. Got NumPy {numpy.__version__}"

    proc = waiting.run([sys.executable, "-c", FALLS_BACK], timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["said"] == [["KernelFallbackWarning", f"gpunn: Numba is installed but does not import ({why}): the CPU "
                            "runs the NumPy reference instead of the fused kernels (slower); "
                            "GPUNN_FUSED_KERNELS=0 runs it without this warning"]]
    assert out["fused"] == [False, False] and out["same"] == [True, True] and out["trained"] and not out["numba"]
    assert out["refused"].startswith(f"fused=True asks for gpunn's fused CPU kernels, which need Numba: it is "
                                     f"installed but does not import ({why}); ")

    train = [sys.executable, "-m", "gpunn", "train", "--device", "cpu", "--rows", "300", "--epochs", "1", "--hidden",
             "8", "--quiet"]
    proc = waiting.run(train, timeout=300, env=env)
    assert proc.returncode == 0 and "Numba" not in proc.stderr, proc.stderr[-3000:]
    small_k = train[:-2] + ["4,64", "--batch-size", "290", "--quiet"]  # 290 x 64 outputs of a product of k = 4
    proc = waiting.run(small_k, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[0] == (f"note: Numba is installed but does not import ({why}): the CPU runs the "
                                           "NumPy reference instead of the fused kernels (slower); "
                                           "GPUNN_FUSED_KERNELS=0 runs it without this warning")
    proc = waiting.run(train, timeout=300, env={**env, "GPUNN_FUSED_KERNELS": "1"})
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"gpunn train: error: GPUNN_FUSED_KERNELS=1 asks for gpunn's fused CPU kernels, which need Numba: it is "
        f"installed but does not import ({why}); install a Numba that supports NumPy {numpy.__version__}, or set "
        "GPUNN_FUSED_KERNELS=0 to run the NumPy reference"], proc.stderr[-3000:]


def _special(rng, shape, dtype):
    """Normal values with NaN, infinities, signed zeros, subnormals and huge values among them."""
    a = rand(rng, shape, dtype)
    tiny, big = numpy.finfo(dtype).smallest_subnormal, numpy.finfo(dtype).max / 4
    specials = numpy.array([numpy.nan, numpy.inf, -numpy.inf, 0.0, -0.0, tiny, -tiny, big, -big], dtype)
    flat = a.reshape(-1)
    flat[rng.choice(flat.size, min(flat.size, 40), replace=False)] = rng.choice(specials, min(flat.size, 40))
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_what_stands_in_for_each_deferred_kernel_gives_its_very_bits(dtype, threads, monkeypatch):
    """Until Numba's start pays (gpunn.ops.cpu.NUMBA_START_SECONDS) CpuOps runs NumPy in the stead of the kernels whose
    bits it can give: the reference's bias + ReLU, ReLU backward and Adam (L2, AdamW), and the column sums in row
    order (the bias gradient, and the ReLU backward's, in one piece). Bit for bit (the float words compared, so a
    -0.0 for a 0.0 would fail), on NaN, infinities, signed zeros, subnormals and huge values, a single column (a
    float64 model's output bias: numpy.sum would sum it pairwise), a column of -0.0 and no rows, one thread or two
    (elementwise kernels split); but for a column sum that meets two NaNs (an input's and inf - inf's): NaN on both,
    whose sign is the one of the two that the compiled add keeps (LLVM may swap an add's operands). Such a sum is a
    diverged step's. The row-order sums of a narrow dZ go in blocks of rows (no float64 copy of a large dZ): blocks of
    7 here, so that every shape spans several; a wide one's (300 x 256) row by row."""
    if numba is None:
        pytest.skip("Numba is not installed")
    monkeypatch.setattr("gpunn.ops.cpu._SUM_BLOCK_ROWS", 7)
    rng = numpy.random.default_rng(20)
    relu = ACTIVATIONS["relu"]
    bits = numpy.uint32 if dtype == "float32" else numpy.uint64
    kernels, deferred = CpuOps(fused=True, threads=threads), CpuOps(fused=True, threads=threads)
    deferred.kernels_now = lambda same_bits=True: False  # as before Numba's start pays
    for shape in [*SHAPES, (64, 1), (0, 3)]:
        Z, b = _special(rng, shape, dtype), _special(rng, shape[1:], dtype)
        dA, source, dZ = (_special(rng, shape, dtype) for _ in range(3))
        if shape[1] == 1:  # finite, of magnitudes where the order of the sum shows
            dA, dZ = ((rand(rng, shape, dtype) * 10.0 ** rng.integers(-8, 9, shape)).astype(dtype) for _ in range(2))
        else:
            dZ[:, 0] = -0.0
        whole = kernels._sums_whole(dZ)  # else split over threads: another order, which imports Numba at once
        with numpy.errstate(all="ignore"):
            results = []
            for ops in (kernels, deferred):
                out = [Z.copy(), dA.copy(), dA.copy()]
                ops.bias_activation(out[0], b, relu, out[0], False)
                ops.activation_backward(out[1], relu, source, False, out[1])
                if whole:
                    sums = [numpy.empty(shape[1], dtype), numpy.empty(shape[1], dtype)]
                    ops.activation_bias_backward(out[2], relu, source, False, out[2], sums[0])
                    ops.bias_gradient(dZ, sums[1])
                    out += [numpy.where(numpy.isnan(s), numpy.nan, s).astype(dtype) for s in sums]  # one NaN
                results.append(out)
        assert len(results[0]) == (5 if whole else 3)
        if whole and shape[1] > 1:
            assert results[1][4][0] == 0 and not numpy.signbit(results[1][4][0])  # the column of -0.0 sums to 0.0
        for got, want in zip(*results):
            numpy.testing.assert_array_equal(got.view(bits), want.view(bits))
    for weight_decay, decoupled in [(0.0, False), (0.01, False), (0.01, True)]:
        state = [_special(rng, PARALLEL_MIN_ELEMENTS + 7, dtype) for _ in range(4)]
        state[3][...] = numpy.abs(state[3])  # v, a mean of squares
        got, want = [a.copy() for a in state], [a.copy() for a in state]
        with numpy.errstate(all="ignore"):
            for step in (1, 2, 50):
                kernels.adam_step(*got, 3e-3, 0.9, 0.999, 1e-8, step, weight_decay, decoupled)
                deferred.adam_step(*want, 3e-3, 0.9, 0.999, 1e-8, step, weight_decay, decoupled)
        for g, w in zip(got, want):
            numpy.testing.assert_array_equal(g.view(bits), w.view(bits))


def test_the_row_order_stand_in_sums_a_wide_batch_at_about_numpys_cost():
    """The NumPy stand-in for the column-sum kernel (until NUMBA_START_SECONDS) sums a wide dZ (1024 columns) row by
    row into a float64 row, not by numpy.add.accumulate down each column with the row stride, which took 40x
    numpy.sum's time (107 ms for 1024 x 1024 on the 2-core EPYC; 1.5 s for 16,384 rows, on one op, where the kernel
    takes 34 ms): the budget is checked before each op, so one such op ran past it by its own length. Per-thread CPU
    time, the least of 5, so that other processes' load does not count. The bits are
    test_what_stands_in_for_each_deferred_kernel_gives_its_very_bits's (300 x 256 there)."""
    import time

    from gpunn.ops.cpu import _column_sums_in_row_order

    dZ = numpy.random.default_rng(0).standard_normal((1024, 1024)).astype(numpy.float32)
    db = numpy.empty(1024, numpy.float32)

    def least(run):
        times = []
        for _ in range(5):
            start = time.thread_time()
            run()
            times.append(time.thread_time() - start)
        return min(times)

    numpys = least(lambda: numpy.sum(dZ, axis=0, dtype=numpy.float64))
    assert least(lambda: _column_sums_in_row_order(dZ, db)) < 8 * numpys + 0.005
    numpy.testing.assert_array_equal(db, numpy.add.accumulate(dZ.astype(numpy.float64), axis=0)[-1].astype(db.dtype))


@pytest.fixture
def numba_not_yet_imported(monkeypatch):
    """This process as one where Numba is not yet imported (gpunn.ops.lazynumba.imported False) until CpuOps imports
    it (fused_kernels, through kernels_now, or a model's ``fused`` once it is); the list returned then holds a True.
    CpuOps' CPU clock (gpunn.ops.cpu._cpu_seconds) is a fake that moves on by 0.001 s at each read."""
    from gpunn.ops import cpu, lazynumba

    if numba is None:
        pytest.skip("Numba is not installed")
    imports, real, clock = [], cpu.fused_kernels, [0.0]

    def importing(asked, by_variable=False):
        if not imports:
            imports.append(True)
        return real(asked, by_variable)

    def ticks():
        clock[0] += 0.001
        return clock[0]

    monkeypatch.setattr(lazynumba, "imported", lambda: bool(imports))
    monkeypatch.setattr(cpu, "fused_kernels", importing)
    monkeypatch.setattr(cpu, "_cpu_seconds", ticks)
    monkeypatch.setattr(cpu, "_deferred_since", [])
    return imports


def test_ops_run_numpy_until_numbas_start_would_be_repaid_then_the_kernels(numba_not_yet_imported, monkeypatch):
    """The ops run NumPy until the process has spent NUMBA_START_SECONDS of CPU since the first of them; the op that
    finds them spent imports Numba and runs its kernel, as every op after it does. Reading ``fused`` before does not
    import it."""
    from gpunn.ops import cpu

    calls = []
    real = cpu._bias_relu_inplace
    monkeypatch.setattr(cpu, "_bias_relu_inplace", lambda *args: calls.append(args[-1]) or real(*args))
    monkeypatch.setattr(cpu, "NUMBA_START_SECONDS", 0.0015)  # spent at the third op (0.002 s after the first)
    ops, relu = CpuOps(), ACTIVATIONS["relu"]
    assert ops.fused is True and numba_not_yet_imported == []
    for i in range(4):
        Z = numpy.full((2, 3), -1.0, numpy.float32)
        ops.bias_activation(Z, numpy.array([0.5, 1.0, 2.0], numpy.float32), relu, Z, False)
        assert Z.tolist() == [[0.0, 0.0, 1.0]] * 2
        assert (len(numba_not_yet_imported), len(calls)) == ((0, 0) if i < 2 else (1, i - 1))


FORKED_CLOCK = """
import os
from gpunn.ops import cpu, lazynumba

assert not lazynumba.imported()
clock = [100.0]  # the parent's CPU seconds: its first deferred op came after 100 s of CPU
cpu._cpu_seconds = lambda: clock[0]
cpu.fused_kernels = lambda asked, by_variable=False: True  # as Numba imported (not imported here: it costs a second)
ops = cpu.CpuOps()
assert ops.kernels_now() is False
pid = os.fork()
if pid == 0:
    clock[0] = 0.5  # a child's CPU clock starts again at 0
    first = ops.kernels_now()
    clock[0] = 0.8  # 0.3 s of the child's CPU after its first deferred op
    os._exit(0 if (first, ops.kernels_now()) == (False, True) else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork here")
def test_a_forked_child_counts_numbas_start_from_its_own_first_deferred_op_not_its_parents_clock():
    """A forked child's CPU clock starts at 0: counted from the parent's first deferred op (100 s here), its ops
    would run NumPy in the kernels' stead until it too had spent 100 s of CPU. The child counts
    NUMBA_START_SECONDS from its own first deferred op. A fresh process, as a fork from pytest's own threads
    could deadlock."""
    import sys

    import waiting

    if numba is None:
        pytest.skip("Numba is not installed")
    proc = waiting.run([sys.executable, "-c", FORKED_CLOCK], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_small_k_product_imports_numba_at_once(numba_not_yet_imported):
    """The small-k product's kernel sums in another order than BLAS: no reference stands in for it."""
    a, b = numpy.ones((512, 4), numpy.float32), numpy.ones((4, 64), numpy.float32)
    assert (CpuOps().matmul(a, b, numpy.empty((512, 64), numpy.float32)) == 4).all()
    assert numba_not_yet_imported == [True]


@pytest.mark.parametrize("options", [dict(), dict(optimizer=gpunn.AdamW(weight_decay=0.01)),
                                     dict(optimizer=gpunn.Adam(weight_decay=0.01)), dict(activation="tanh"),
                                     dict(dtype="float64"), dict(optimizer=gpunn.Momentum(lr=1e-2)),
                                     dict(sizes=[10, 4, 64, 1])], ids=["adam", "adamw", "adam-l2", "tanh", "float64",
                                                                       "momentum", "small-k"])
def test_a_fit_that_imports_numba_part_way_gives_the_bits_of_one_with_the_kernels_throughout(
        numba_not_yet_imported, monkeypatch, options):
    """A fit whose first steps run the reference and whose later ones the kernels and the one-call step
    (gpunn.ops.mlp_step), Numba imported part-way, trains to the very parameters, optimizer state and predictions of
    a fit with the kernels from its first step, as does one that never imports Numba (but a width of 4 before 64:
    a small-k product, which imports it in the first step's forward pass)."""
    import copy

    from gpunn.ops import cpu

    options = dict(options)
    sizes = options.pop("sizes", [10, 32, 16, 1])
    made = {name: options.pop(name) for name in ("dtype", "activation") if name in options}
    fit = dict(epochs=3, batch_size=64, seed=0, verbose=False, **options)
    rng = numpy.random.default_rng(21)
    X = rng.standard_normal((200, sizes[0])).astype(made.get("dtype", "float32"))
    Y = numpy.sin(X[:, :1])

    def trained(start_seconds):
        monkeypatch.setattr(cpu, "NUMBA_START_SECONDS", start_seconds)
        model = MLP(sizes, device="cpu", seed=0, **made)
        model.fit(X, Y, **{**fit, "optimizer": copy.deepcopy(fit.get("optimizer", "adam"))})
        state = [numpy.asarray(a).copy() for a in model.optimizer.state.values()]
        return model, [model.params.copy(), *state, model.predict(X)]

    _, never = trained(1e9)
    never_imported = list(numba_not_yet_imported)
    monkeypatch.setattr(cpu, "_deferred_since", [])
    part_way, switched = trained(0.0095)  # spent at the eleventh op: in the first steps
    _, throughout = trained(0)
    assert never_imported == ([True] if sizes[1] == 4 else [])
    assert numba_not_yet_imported == [True] and part_way.ops.fused is True
    assert len(throughout) >= 3  # the parameters, the optimizer's state, the predictions
    for a, b, c in zip(never, switched, throughout):
        numpy.testing.assert_array_equal(a.view(numpy.uint8), c.view(numpy.uint8))
        numpy.testing.assert_array_equal(b.view(numpy.uint8), c.view(numpy.uint8))


SHORT_RUNS_WITHOUT_NUMBA = """
import sys
from gpunn.cli import main
main(["train", "--device", "cpu", "--rows", "300", "--epochs", "2", "--hidden", "16,8", "--batch-size", "32",
      "--quiet", "--save", sys.argv[1]])
main(["predict", sys.argv[1], sys.argv[2], sys.argv[3]])
print("numba" in sys.modules)
"""


def test_a_short_gpunn_train_and_predict_never_import_numba_and_give_the_kernels_bits(tmp_path, monkeypatch):
    """Numba's start (0.7-1 s of CPU, most of a short command's) is not paid by a short `gpunn train` nor a `gpunn
    predict` in a fresh process; their checkpoint and predictions are those of the same commands run with the
    kernels (this process: tests/conftest.py sets NUMBA_START_SECONDS to 0)."""
    if numba is None:
        pytest.skip("Numba is not installed")
    import sys

    import waiting

    from gpunn.cli import main

    X = numpy.random.default_rng(22).standard_normal((50, 32)).astype(numpy.float32)
    numpy.save(tmp_path / "x.npy", X)
    paths = {}
    for who in ("child", "here"):
        paths[who] = (tmp_path / f"{who}.npz", tmp_path / "x.npy", tmp_path / f"{who}.npy")
    proc = waiting.run([sys.executable, "-c", SHORT_RUNS_WITHOUT_NUMBA, *map(str, paths["child"])], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "False"
    for command in SHORT_RUNS_WITHOUT_NUMBA.split("main(")[1:3]:
        monkeypatch.setattr(sys, "argv", ["-c", *map(str, paths["here"])])
        exec("main(" + command, {"main": main, "sys": sys})
    child, here = numpy.load(paths["child"][0]), numpy.load(paths["here"][0])
    assert [name for name in child.files if name != "gpunn_meta"] == ["params", "optimizer.m", "optimizer.v"]
    for name in ("params", "optimizer.m", "optimizer.v"):
        numpy.testing.assert_array_equal(child[name].view(numpy.uint32), here[name].view(numpy.uint32))
    numpy.testing.assert_array_equal(numpy.load(paths["child"][2]).view(numpy.uint32),
                                     numpy.load(paths["here"][2]).view(numpy.uint32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_clips_numpy_stand_in_gives_the_kernels_bits_and_both_are_the_references_formula(dtype):
    """CpuOps' gradient clipping (gpunn.ops.cpu._clip_row, which the one-call step runs inside its kernel) and its
    NumPy stand-in until Numba's start pays: bit for bit, over sizes of every remainder mod 4 (the kernel's four
    partial sums), limits that clip and one that does not, and clip_value on NaN and infinities; both the reference's
    formula (Ops.clip_grad_norm: its sum in BLAS's order) to the float64 sum's rounding (n ulps at most) and an ulp
    of the factor in float32."""
    if numba is None:
        pytest.skip("Numba is not installed")
    rng = numpy.random.default_rng(21)
    bits = numpy.uint32 if dtype == "float32" else numpy.uint64
    kernels, deferred = CpuOps(fused=True), CpuOps(fused=True)
    deferred.kernels_now = lambda same_bits=True: False  # as before Numba's start pays
    for n in (1, 2, 3, 4, 5, 7, 1001, PARALLEL_MIN_ELEMENTS + 3):
        g = (rand(rng, n, dtype) * 10.0 ** rng.integers(-3, 4, n)).astype(dtype)
        norm = numpy.linalg.norm(g.astype(numpy.float64))
        for max_norm in (norm / 7, norm * 2):
            got, want, ref = g.copy(), g.copy(), g.copy()
            assert kernels.clip_grad_norm(got, max_norm) is got and deferred.clip_grad_norm(want, max_norm) is want
            numpy.testing.assert_array_equal(got.view(bits), want.view(bits))
            Ops().clip_grad_norm(ref, max_norm)
            numpy.testing.assert_allclose(got, ref, rtol=max(2 * numpy.finfo(dtype).eps, 1e-13), atol=0)
        special = g.copy()
        special[: min(n, 3)] = [numpy.nan, numpy.inf, -numpy.inf][: min(n, 3)]
        got, want = special.copy(), special.copy()
        kernels.clip_grad_value(got, 0.3)
        deferred.clip_grad_value(want, 0.3)
        numpy.testing.assert_array_equal(got.view(bits), want.view(bits))
        numpy.testing.assert_array_equal(got, numpy.clip(special, -0.3, 0.3))


def test_the_clips_stand_in_adds_the_squares_past_a_multiple_of_4_into_the_first_partial_sum_as_the_kernel_does():
    """g = [1, t, 0, 0, t], t^2 0.6 of an ulp of 1: the kernel adds the fifth square into s0 (1 + t^2: 1 + ulp), then s1
    (1 + 2 ulp), where into s1 the sum is 1 + ulp: the norm and so the float64 factor an ulp apart. The stand-in gives
    the kernel's bits (audit49: adding it into s1 passed every other test), both the sums written out in that order;
    CpuOps(fused=False) clips by the reference's formula (Ops.clip_grad_norm), bit for bit."""
    import math

    if numba is None:
        pytest.skip("Numba is not installed")
    t = math.sqrt(0.6 * numpy.finfo(numpy.float64).eps)
    g = numpy.array([1.0, t, 0.0, 0.0, t])
    kernels, deferred = CpuOps(fused=True), CpuOps(fused=True)
    deferred.kernels_now = lambda same_bits=True: False  # as before Numba's start pays
    got, want = g.copy(), g.copy()
    kernels.clip_grad_norm(got, 0.5)
    deferred.clip_grad_norm(want, 0.5)
    s = ((1.0 + t * t) + t * t) + (0.0 + 0.0)
    assert s == 1.0 + 2 * numpy.finfo(numpy.float64).eps
    expected = g * (0.5 / (math.sqrt(s) + 1e-6))
    assert got.tobytes() == expected.tobytes() and want.tobytes() == expected.tobytes()
    rng = numpy.random.default_rng(5)
    for n in (5, 1001, PARALLEL_MIN_ELEMENTS + 3):
        for dtype in DTYPES:
            g = (rand(rng, n, dtype) * 10.0 ** rng.integers(-3, 4, n)).astype(dtype)
            got, want = g.copy(), g.copy()
            CpuOps(fused=False).clip_grad_norm(got, 0.1)
            Ops().clip_grad_norm(want, 0.1)
            assert got.tobytes() == want.tobytes(), (n, dtype)
