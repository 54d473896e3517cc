"""The CUDA-graph training step on a GPU (marked gpu): captured, replayed, and training as the eager step.

On a GPU the graph calls cuBLAS on its own handle (other workspace, so possibly other GEMM kernels than
CuPy's matmul; Adam's bias corrections are the device's pow in both forms): weights agree to float32
rounding accumulated over the steps, not bit for bit. On tests/fakecupy (GPUNN_FAKE_CUPY=1, CI) the
capture is emulated -- the graph records the kernel launches and GemmEx calls of the step and replays
them at each launch, checking every launch again -- and its products are what its cupy.matmul
computes, so there the captured step must equal the eager step bit for bit (and runs fewer rows).
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from stand_in import is_stand_in

import gpunn
from gpunn.optim import OPTIMIZERS
from gpunn.training.graph import GraphWarning

try:
    import cupy

    _GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # not installed, or no driver / device
    cupy, _GPU = None, False

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _GPU, reason="needs CuPy and a CUDA device")]

FAKE = is_stand_in(cupy)
ROWS = 500 if FAKE else 2100  # with a last partial batch either way


def _train(graph, precision="float32", optimizer="adam", epochs=3, rows=ROWS, dtype="float32", sample_weight=None):
    X, Y = gpunn.datasets.make("teacher", n_samples=rows, n_features=16, n_outputs=2, seed=0, device="cuda",
                               dtype=dtype)
    m = gpunn.MLP([16, 64, 64, 2], activation=["relu", "gelu"], device="cuda", seed=0, graph=graph,
                  precision=precision, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)  # a capture that falls back fails here
        h = m.fit(X, Y, epochs=epochs, batch_size=128, optimizer=OPTIMIZERS[optimizer](weight_decay=1e-4),
                  schedule=gpunn.Schedule("exponential", gamma=0.7), verbose=False,  # a new rate each epoch
                  sample_weight=sample_weight)
    return m, h


def _weights(rows=ROWS):
    w = np.random.default_rng(1).uniform(0.0, 3.0, rows)
    w[::7] = 0.0  # rows that do not count
    return w


def _agree(m, ref, h, h_ref, rel):
    p, p_ref = cupy.asnumpy(m.params), cupy.asnumpy(ref.params)
    if FAKE:
        np.testing.assert_array_equal(p, p_ref)
        assert list(h["loss"]) == list(h_ref["loss"])
        return
    assert np.linalg.norm(p - p_ref) <= rel * np.linalg.norm(p_ref), np.abs(p - p_ref).max()
    np.testing.assert_allclose(h["loss"], h_ref["loss"], rtol=rel)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_the_default_captures_and_trains_like_the_eager_step(optimizer):
    ref, h_ref = _train(False, optimizer=optimizer)
    captures = cupy.state.captures if FAKE else None
    m, h = _train(None, optimizer=optimizer)  # the default: on for a CUDA GPU
    trainer = m.graph_trainer
    if FAKE:  # one capture per batch shape (the full batches, the last partial one), then replays only
        assert cupy.state.captures - captures == 2
    assert trainer is not None and trainer.captured and trainer.reason is None, getattr(trainer, "reason", None)
    batches = -(-ROWS // 128)  # full batches and a partial one per epoch
    assert m.optimizer.steps == ref.optimizer.steps == 3 * batches
    assert sorted(trainer._steps) == [ROWS % 128, 128] and all(s.graph is not None for s in trainer._steps.values())
    _agree(m, ref, h, h_ref, 1e-4)


def test_the_captured_step_is_ordered_with_the_callers_stream():
    """Fit under a stream of the caller's (non-blocking: it does not wait for the legacy null stream): the
    batches are made and the loss is read on it, so the graph's stream waits for it and it for the graph,
    through events (under tests/fakecupy, ordering with the null stream only fails the stream-order check)."""
    ref, h_ref = _train(None, epochs=2)
    with cupy.cuda.Stream(non_blocking=True):
        m, h = _train(None, epochs=2)
    assert m.graph_trainer.captured, m.graph_trainer.reason
    _agree(m, ref, h, h_ref, 1e-4)


def test_an_optimizer_buffer_replaced_by_one_whose_array_has_the_old_ones_id_is_captured_again():
    """A captured graph has the optimizer state's device addresses baked in. A buffer replaced between fits
    is noticed by its address: CPython may give the new array object the id of the old one, freed just
    before (here a view of another buffer replaces a view), so comparing ids let the graph update the old
    buffer and leave the optimizer's new one as it was."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")
    m = gpunn.MLP([16, 64, 64, 2], device="cuda", seed=0)
    opt = gpunn.optim.Adam(lr=1e-3)  # the same optimizer every fit: its trainer and graphs are reused
    m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)
    first, second = cupy.zeros_like(opt.state["m"]), cupy.zeros_like(opt.state["m"])
    first[...] = opt.state["m"]
    opt.state["m"] = first[:]
    m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)  # captured again at first's address
    old_id = id(opt.state["m"])
    second[...] = opt.state["m"]
    opt.state["m"] = None  # the view of first is freed, first stays alive (so its address is not reused)
    kept = []  # views of second kept alive until one gets the freed view's id (CPython's allocator hands its
    for _ in range(5000):  # memory out again once the blocks before it in line are taken)
        view = second[:]
        if id(view) == old_id:
            break
        kept.append(view)
    else:
        pytest.skip("this Python did not reuse the freed array's id")
    opt.state["m"] = view
    del kept
    before = cupy.asnumpy(second)
    m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)
    assert m.graph_trainer.captured
    assert not np.array_equal(cupy.asnumpy(second), before)  # the graph's Adam updated the optimizer's buffer


def test_graph_true_is_the_same_captured_step():
    a, h_a = _train(None, epochs=2)
    b, h_b = _train(True, epochs=2)
    assert b.graph_trainer.captured
    np.testing.assert_array_equal(cupy.asnumpy(a.params), cupy.asnumpy(b.params))
    assert list(h_a["loss"]) == list(h_b["loss"])


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_captured_graph_with_tensor_core_precisions(precision):
    ref, h_ref = _train(False, precision=precision, epochs=2)
    m, h = _train(None, precision=precision, epochs=2)
    assert m.graph_trainer.captured
    # bf16 rounding boundaries can flip between two GEMM kernels: a looser bound
    _agree(m, ref, h, h_ref, 2e-2)


def test_a_fit_after_set_precision_captures_the_new_precisions_step():
    """set_precision drops the last fit's graphs (they baked in the old precision's launches and its bf16 copies):
    the next fit with the same optimizer object captures the float32 step and trains as the eager one does
    (mut12m's M33: with the bf16 fit's trainer kept, its graphs replayed in the float32 model, reading the freed
    bf16 copies, and no test failed; on tests/fakecupy the captured and eager steps are equal bit for bit)."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")

    def run(graph):
        m = gpunn.MLP([16, 64, 64, 2], device="cuda", seed=0, precision="bf16", graph=graph)
        opt = gpunn.optim.Adam(lr=1e-3)
        m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)
        m.set_precision("float32")
        return m, m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)

    (m, h), (ref, h_ref) = run(None), run(False)
    assert m.graph_trainer.captured, m.graph_trainer.reason
    _agree(m, ref, h, h_ref, 2e-2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_weighted_fit_captures_its_step_and_trains_like_the_eager_step(dtype):
    """The weighted loss is one kernel (weighted_mse_grad, reading Y and its weights' column in the graph's batch
    buffer), so a fit with sample_weight captures its step as an unweighted one does (it ran eagerly while the
    weighted loss was CuPy's generic calls, which allocate: tests/fakecupy refuses an allocation in a capture)."""
    ref, h_ref = _train(False, epochs=2, dtype=dtype, sample_weight=_weights())
    captures = cupy.state.captures if FAKE else None
    m, h = _train(None, epochs=2, dtype=dtype, sample_weight=_weights())
    assert m.graph_trainer.captured and m.graph_trainer.reason is None, m.graph_trainer.reason
    if FAKE:
        assert cupy.state.captures - captures == 2  # the full batches and the last partial one
    unweighted, _ = _train(False, epochs=2, dtype=dtype)
    assert not np.allclose(cupy.asnumpy(unweighted.params), cupy.asnumpy(ref.params))  # the weights told
    _agree(m, ref, h, h_ref, 1e-4 if dtype == "float32" else 1e-10)


def test_a_fit_with_the_same_optimizer_captures_again_when_its_rows_gain_or_lose_their_weights():
    """A weighted fit's batches carry one more column of Y (the weights: gpunn.sample_weights) and its captured step
    reads it; the next fit with the same optimizer object keeps the trainer, and a batch of the same rows without the
    column (or with it, after an unweighted fit) gets a step of its own, captured again, never the other's graph."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")

    def run(graph):
        m = gpunn.MLP([16, 64, 64, 2], device="cuda", seed=0, graph=graph)
        opt = gpunn.optim.Adam(lr=1e-3)
        histories = [m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False, sample_weight=w)
                     for w in (None, _weights(), None)]
        return m, histories

    captures = cupy.state.captures if FAKE else None
    (m, hs), (ref, hs_ref) = run(None), run(False)
    assert m.graph_trainer.captured, m.graph_trainer.reason
    if FAKE:  # each fit's full batches (a one-epoch fit's partial batch runs once, eagerly)
        assert cupy.state.captures - captures == 3
    for h, h_ref in zip(hs, hs_ref):
        _agree(m, ref, h, h_ref, 1e-4)



@pytest.mark.parametrize("optimizer, setting, value", [("adam", "weight_decay", 0.05), ("adam", "beta2", 0.9),
                                                        ("momentum", "momentum", 0.5), ("sgd", "lr", 0.003)])
def test_an_optimizer_setting_set_between_fits_is_the_next_fits_in_the_graph_and_an_lr_replays_it(optimizer, setting,
                                                                                                   value):
    """A next fit with the same optimizer replays the graphs captured only while its settings but lr are the same
    (graph.captured_settings): weight_decay, beta2 or momentum set between fits is the next fit's, captured anew (the
    old graph held the old value as a launch argument), as the eager step trains; an lr set between fits, which a
    graph reads from the device, replays the graphs already captured (audit49: settings without weight_decay, and
    settings with lr, passed every test)."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")

    def run(graph, change=True):
        m = gpunn.MLP([16, 64, 64, 2], device="cuda", seed=0, graph=graph)
        opt = OPTIMIZERS[optimizer](lr=1e-2)
        histories = [m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)]
        first = m.graph_trainer
        if change:
            setattr(opt, setting, value)
        histories.append(m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False))
        return m, histories, first

    (m, hs, first), (ref, hs_ref, _) = run(None), run(False)
    assert m.graph_trainer.captured, m.graph_trainer.reason
    assert (m.graph_trainer is first) == (setting == "lr")  # (replayed, or captured anew)
    for h, h_ref in zip(hs, hs_ref):
        _agree(m, ref, h, h_ref, 1e-4)
    unchanged, _, _ = run(False, change=False)
    assert not np.array_equal(cupy.asnumpy(unchanged.params), cupy.asnumpy(ref.params))  # (the setting told)

def test_the_default_captures_float64_too():
    """float64 products go to GemmEx with CUBLAS_COMPUTE_64F on the capture handle."""
    ref, h_ref = _train(False, epochs=2, dtype="float64")
    m, h = _train(None, epochs=2, dtype="float64")
    assert m.graph_trainer.captured, m.graph_trainer.reason
    _agree(m, ref, h, h_ref, 1e-10)


def test_the_eager_and_the_captured_adam_take_the_devices_pow(request):
    """Both forms of the step form Adam's bias corrections 1 - beta**t on the device, by one rule
    (kernels/optimizers.cuh, adam_bias_correction): the eager adam_step kernel from the betas and the step it is
    given, the graph from optimizer_tick's. So with a device pow an ulp off the host's (the stand-in only), the
    float64 eager and captured steps still train the same bits (the eager step's host pow, as before, did not),
    and those bits are not the ones of the usual pow: the ulp reaches the weights."""
    usual, _ = _train(False, epochs=2, dtype="float64")
    request.getfixturevalue("device_pow_an_ulp_low")
    ref, h_ref = _train(False, epochs=2, dtype="float64")
    m, h = _train(None, epochs=2, dtype="float64")
    assert m.graph_trainer.captured, m.graph_trainer.reason
    _agree(m, ref, h, h_ref, 0.0)
    assert not np.array_equal(cupy.asnumpy(ref.params), cupy.asnumpy(usual.params))


def test_graph_replay_is_repeatable_and_models_share_the_capture_stream():
    a, _ = _train(None, epochs=2)
    b, _ = _train(None, epochs=2)
    np.testing.assert_array_equal(cupy.asnumpy(a.params), cupy.asnumpy(b.params))
    # one stream and cuBLAS handle (and its 32 MiB workspace) per device and thread, not per model or fit
    assert a.graph_trainer.stream is b.graph_trainer.stream and a.graph_trainer.blas is b.graph_trainer.blas


def test_another_thread_allocates_while_a_fit_captures_its_step(monkeypatch):
    """gpunn begins its captures in relaxed mode (by name, not by CuPy's default): in CUDA's global mode another
    thread's potentially unsafe call (a device allocation, a sync) is refused while the capture runs, and invalidates
    it, so a data pipeline or a second model on another thread would break the first one's capture."""
    begin = cupy.cuda.Stream.begin_capture
    elsewhere = []

    def begin_then_allocate_on_another_thread(stream, *args, **kwargs):
        begin(stream, *args, **kwargs)

        def allocate():
            try:
                elsewhere.append(cupy.ones(1 << 20, dtype=cupy.float32).sum().item())
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                elsewhere.append(exc)

        thread = threading.Thread(target=allocate)
        thread.start()
        thread.join()

    monkeypatch.setattr(cupy.cuda.Stream, "begin_capture", begin_then_allocate_on_another_thread)
    m, _ = _train(None, epochs=2)  # a capture that falls back fails here (GraphWarning as an error)
    assert elsewhere and all(value == float(1 << 20) for value in elsewhere), elsewhere
    assert m.graph_trainer.reason is None and all(step.graph is not None for step in m.graph_trainer._steps.values())


def test_a_fit_on_another_thread_runs_an_eager_step_there_before_it_captures():
    """Ops.scratch is per thread (3023ed2), so a thread's first step of a shape allocates its scratch (here the bias
    gradient's row chunks); a thread that continues a run whose graph for a shape was not captured yet (the last
    partial batch after one epoch) must not capture at once: the allocation would be inside the capture. Real CuPy
    lets its pool allocate in a (relaxed) capture, tests/fakecupy refuses it, as gpunn's captured step promises
    (before the fix: GraphWarning 'capture failed: ... CuPy's empty while a stream is being captured')."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")

    def run(graph, second_fit_on_a_thread):
        m = gpunn.MLP([16, 64, 2], activation="tanh", device="cuda", seed=0, graph=graph)
        m.ops.bias_grad_chunks = 2  # the bias gradient in row chunks (its scratch) at any batch size
        opt = gpunn.optim.Adam(lr=1e-3)  # one optimizer: the second fit takes up the first's trainer and graphs

        def fit(epochs, errors):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", GraphWarning)
                    histories.append(m.fit(X, Y, epochs=epochs, batch_size=128, optimizer=opt, verbose=False))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        errors, histories = [], []
        fit(1, errors)  # the full batches captured on this thread; the partial batch ran once, eagerly
        if second_fit_on_a_thread:  # this thread is alive meanwhile, so the other has another ident
            thread = threading.Thread(target=fit, args=(2, errors))
            thread.start()
            thread.join()
        else:
            fit(2, errors)
        assert not errors, errors
        return m, histories[-1]

    (m, h), (ref, h_ref) = run(True, True), run(False, False)
    assert any(key[2] == "bias" for key in m.ops._scratch)  # the chunked bias gradient did take scratch
    trainer = m.graph_trainer
    assert trainer.reason is None and all(step.graph is not None for step in trainer._steps.values())
    _agree(m, ref, h, h_ref, 1e-4)


def _capturing_while(device, go, thread, ended, done=None):
    """Hold a capture open on this thread's capture stream while ``thread`` goes on (``go``) and ends (or, given
    ``done``, until it sets that event: its exit then comes after the capture); what end_capture raised (CUDA
    invalidated the capture for what the thread did) goes to ``ended``."""
    from gpunn.training.graph import capture_resources

    stream = capture_resources(device)[0]
    with stream:
        # relaxed, as CuPy's default and gpunn's own captures: a capture begun in global mode forbids every
        # other thread (in CUDA's default global mode) "potentially unsafe" calls, cudaMalloc among them, so
        # the other thread's fit would be refused ("operation not permitted when stream is capturing") for
        # the test's doing. The capture stream is non-blocking (capture_resources), so the other thread's
        # use of the legacy stream (its batches, the loss it reads) is legal during the capture too.
        stream.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeRelaxed)
        try:
            go.set()
            done.wait() if done is not None else thread.join()
        finally:
            try:
                stream.end_capture()
            except Exception as exc:  # noqa: BLE001 - reported by the caller, after the other thread's own error
                ended.append(exc)


def test_a_fit_continued_on_another_thread_leaves_the_first_threads_capture_stream_alone():
    """capture_resources gives each thread one capture stream and cuBLAS workspace, shared by that thread's graphs
    because they run one at a time. A trainer taken up on another thread (a fit continued there with the same
    optimizer) kept the first thread's stream (before the fix), which that thread may meanwhile use for another
    model's step, capturing on it even: CUDA then records what the second thread issues into that graph instead of
    running it (here: its replay launched into the capture, which CUDA nests as a child graph, never run, and the
    stand-in refuses). Now each step runs on its own thread's stream (GraphTrainer._follow_thread): the moved fit
    drops the first thread's graphs, takes one eager step on its own thread's stream and cuBLAS handle, then captures
    its graphs there and replays them, while the first thread's capture stays open on the first thread's stream."""
    from gpunn.training.graph import capture_resources

    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")

    def run(graph, busy_stream_meanwhile):
        m = gpunn.MLP([16, 64, 2], device="cuda", seed=0, graph=graph)
        opt = gpunn.optim.Adam(lr=1e-3)  # one optimizer: the second fit takes up the first's trainer and graphs
        m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)
        if graph:
            firsts.extend(step.graph for step in m.graph_trainer._steps.values() if step.graph is not None)
        errors, histories, ready, go = [], [], threading.Event(), threading.Event()

        def continue_there():
            try:
                # its stream and cuBLAS handles made first, as by an earlier fit there (only the fit overlaps the capture)
                capture_resources(m.backend.device)
                ready.set()
                go.wait()
                with warnings.catch_warnings():
                    warnings.simplefilter("error", GraphWarning)
                    histories.append(m.fit(X, Y, epochs=2, batch_size=128, optimizer=opt, verbose=False))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                ready.set()

        # a daemon: where this thread fails before go.set() (begin_capture refused on a GPU), the other waits on go
        # for ever, and a thread of its own would hold pytest's exit until gpu_check's cap (a 'timed out' stage)
        thread = threading.Thread(target=continue_there, daemon=True)
        thread.start()
        ready.wait()
        ended = []  # this thread's capture, if CUDA refused to end it (invalidated by what the other thread did)
        if busy_stream_meanwhile:  # this thread holds a capture open on its stream while the other thread trains
            _capturing_while(m.backend.device, go, thread, ended)
        else:
            go.set()
            thread.join()
        assert not errors, errors  # the moved fit's own failure first: it may be what invalidated the capture
        assert not ended, ended  # the other thread issued work into this thread's capture
        return m, histories[-1]

    firsts = []  # the graphs the first thread captured, on its stream and cuBLAS workspace
    (m, h), (ref, h_ref) = run(True, True), run(False, False)
    trainer = m.graph_trainer
    assert trainer.reason is None and all(step.graph is not None for step in trainer._steps.values())
    assert firsts and not any(step.graph is graph for step in trainer._steps.values() for graph in firsts)
    _agree(m, ref, h, h_ref, 1e-4)



def test_a_fit_continued_where_no_capture_stream_can_be_made_runs_eagerly_off_the_first_threads_stream(monkeypatch):
    """Where a thread cannot make its capture stream and cuBLAS handle (no stream, a cuBLAS that fails), a fit
    continued there says why (graph=True) and runs the eager form on that thread's own stream, not on the first
    thread's capture stream, which the first thread may be capturing on meanwhile: CUDA would record the steps into
    that capture instead of running them."""
    from gpunn.training import graph as graph_mod

    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")
    make_resources, first_thread = graph_mod.capture_resources, threading.get_ident()

    def none_on_other_threads(device):
        if threading.get_ident() != first_thread:
            raise RuntimeError("no stream on this thread (made so by the test)")
        return make_resources(device)

    def run(graph, moved):
        m = gpunn.MLP([16, 64, 2], device="cuda", seed=0, graph=graph)
        opt = gpunn.optim.Adam(lr=1e-3)  # one optimizer: the second fit takes up the first's trainer
        m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)
        errors, said, histories, go = [], [], [], threading.Event()
        done, release = threading.Event(), threading.Event()

        def continue_there():
            try:
                go.wait()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    histories.append(m.fit(X, Y, epochs=2, batch_size=128, optimizer=opt, verbose=False))
                said.extend(str(w.message) for w in caught if issubclass(w.category, GraphWarning))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                # alive until the capture has ended: the eager form's products made CuPy's cuBLAS handle on this
                # thread, which CuPy destroys as the thread exits, and cublasDestroy synchronizes the device,
                # invalidating any capture (the H200, session 50: the capture was found invalidated only after
                # the thread's last call, its fit's work issued off the capture stream as the test means)
                done.set()
                release.wait(600)

        if not moved:
            go.set()
            release.set()  # (nothing to wait for on this thread)
            continue_there()
            return m, histories[-1], errors, said, []
        monkeypatch.setattr(graph_mod, "capture_resources", none_on_other_threads)
        thread = threading.Thread(target=continue_there, daemon=True)  # daemon: as the continued-fit test's
        thread.start()
        ended = []
        try:  # the first thread captures while the other trains
            _capturing_while(m.backend.device, go, thread, ended, done)
        finally:
            release.set()
            thread.join()
        return m, histories[-1] if histories else None, errors, said, ended

    m, h, errors, said, ended = run(True, True)
    assert not errors, errors
    assert not ended, ended  # the moved fit issued work into the first thread's capture
    assert said and "cuBLAS could not be set up for capture: RuntimeError: no stream on this thread" in said[0]
    ref, h_ref, *_ = run(False, False)
    _agree(m, ref, h, h_ref, 1e-4)

def test_a_thread_that_set_up_capture_resources_exits_without_ending_another_threads_capture():
    """A thread's capture stream and cuBLAS handle, and the cuBLAS handle CuPy keeps per thread, went when the thread
    exited, before join() returned: each cublasDestroy synchronizes the device (cuBLAS docs), which CUDA refuses
    while a stream captures, invalidating that capture (CUDA's documented rules; on an H200, session 23, the
    continued-fit test above saw its capture so invalidated after its second thread's fit, not yet confirmed to be
    this). Now gpunn makes no CuPy handle on the thread and keeps the thread's pair for the next thread, which takes
    it up: a thread pool that captures makes as many as it runs at once."""
    import weakref

    from gpunn.training.graph import capture_resources, release_capture_resources

    release_capture_resources()  # none left by an earlier test's threads: the thread below makes its own
    device = gpunn.backend.resolve("cuda").device
    got, ready, go = [], threading.Event(), threading.Event()

    def set_up_then_exit():  # made before the capture, as by a fit there: only the thread's exit overlaps it
        try:
            got.append(weakref.ref(capture_resources(device)[1]))  # not kept alive by the test
        finally:
            ready.set()
            go.wait()

    thread = threading.Thread(target=set_up_then_exit, daemon=True)
    thread.start()
    ready.wait()
    assert got, "capture_resources failed on the thread"
    ended = []
    _capturing_while(device, go, thread, ended)
    assert not ended, ended  # cudaErrorStreamCaptureInvalidated before the fix
    stream, again = capture_resources(device)[0], []
    second = threading.Thread(target=lambda: again.append(capture_resources(device)), daemon=True)
    second.start()
    second.join()
    assert got[0]() is not None and again[0][1] is got[0]() and again[0][0] is not stream


def test_an_interrupt_inside_the_capture_ends_it_and_the_next_fit_on_the_thread_captures():
    """A KeyboardInterrupt can land anywhere in the step's Python, also between begin_capture and end_capture: a
    second Ctrl-C, or a fit with handle_interrupt=False (gpu_check's hooks, gpunn bench) at its first. CUDA records
    what is issued to a capturing stream and runs none of it (CuPy: begin_capture 'must be paired with a call to
    end_capture', cupy/cuda/stream.pyx), and the capture stream is shared by every fit on the thread
    (capture_resources). Left capturing (before the fix), the next fit's eager steps were recorded, not run, and its
    capture raised cudaErrorIllegalState ('already capturing')."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")
    m = gpunn.MLP([16, 64, 2], device="cuda", seed=0)
    opt = gpunn.optim.Adam(lr=1e-3)
    update = opt.graph_update

    def interrupted_in_capture(*args):  # the signal arriving while the step is being recorded
        if cupy.cuda.get_current_stream().is_capturing():
            raise KeyboardInterrupt
        return update(*args)

    opt.graph_update = interrupted_in_capture
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False, handle_interrupt=False)
    stream = m.graph_trainer.stream
    assert not stream.is_capturing()
    ref, h_ref = _train(False, epochs=2)
    after, h = _train(None, epochs=2)  # its own model and optimizer, the same capture stream
    assert after.graph_trainer.stream is stream and after.graph_trainer.captured, after.graph_trainer.reason
    _agree(after, ref, h, h_ref, 1e-4)


class _FortranBatches:
    """A user's DataSource whose batches are column-major views (the protocol allows any layout: 'may be views of a
    buffer the source reuses'), as none of gpunn's own sources hands them."""

    resumable = True

    def __init__(self, X, Y):
        self.X, self.Y = X, Y
        self.rows, self.n_features, self.n_outputs = X.shape[0], X.shape[1], Y.shape[1]

    def batches(self, epoch, batch_size, first_batch=0):
        for start in range(first_batch * batch_size, self.rows, batch_size):
            yield (cupy.asfortranarray(self.X[start:start + batch_size]),
                   cupy.asfortranarray(self.Y[start:start + batch_size]))

    def config(self):
        return {"kind": "fortran batches", "rows": self.rows}


def test_a_sources_column_major_batches_are_copied_into_the_graphs_buffers_by_value():
    """The captured step reads its batch from fixed buffers; a C-ordered batch goes in by one device memcpy, any
    other by an ordinary copy (_Step.load). A memcpy of a column-major batch would hand the step its bytes in
    another order (mut12m's G21: the C-order check removed passed every test, no source of gpunn's hands one)."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")
    runs = {}
    for graph in (False, True):
        m = gpunn.MLP([16, 32, 2], device="cuda", seed=0, graph=graph)
        with warnings.catch_warnings():
            warnings.simplefilter("error", GraphWarning)
            h = m.fit(_FortranBatches(X, Y), epochs=2, batch_size=128, verbose=False)
        runs[graph] = (m, h)
    assert runs[True][0].graph_trainer is not None and runs[True][0].graph_trainer.captured
    _agree(runs[True][0], runs[False][0], runs[True][1], runs[False][1], rel=1e-5)
