"""graph=True on the CuPy path where it cannot capture (marked gpu; also runs on tests/fakecupy).

With the capture set-up made to fail, GraphTrainer says so (GraphWarning, ``reason``) and runs the
step eagerly with the graph's own launches -- the fixed batch buffers, the preallocated loss, and
the device-side optimizer state (optimizer_tick, sgd_step_dev, adam_step_dev) -- which must train
like the ordinary step. Adam's bias corrections come from the device's pow in both (kernels/optimizers.cuh's
adam_bias_correction; before, the ordinary step took Python's); the weights are checked to float32 rounding,
not yet bit for bit: no GPU has run the two since.
"""
from __future__ import annotations

import numpy as np
import pytest

import gpunn
import gpunn.ops.cublas as cublas_mod
from gpunn.training import graph as graph_mod
from gpunn.optim import OPTIMIZERS
from gpunn.training.graph import GraphWarning

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("optimizer", ["adam", "nesterov"])
def test_eager_graph_step_on_the_gpu_path_is_ordinary_training(monkeypatch, optimizer):
    import cupy

    def no_capture(stream_ptr):
        raise cublas_mod.GemmError("made to fail by the test")

    X, Y = gpunn.datasets.make("teacher", n_samples=700, n_features=8, n_outputs=2, seed=0, device="cuda")
    runs = []
    for graph in (False, True):
        m = gpunn.MLP([8, 24, 16, 2], activation=["gelu", "relu"], device="cuda", seed=0, graph=graph)
        if graph:
            monkeypatch.setattr(cublas_mod, "CapturableBlas", no_capture)
            graph_mod.release_capture_resources()  # not the shared ones made by earlier tests
            with pytest.warns(GraphWarning, match="not capturing"):
                h = m.fit(X, Y, epochs=2, batch_size=128, optimizer=OPTIMIZERS[optimizer](weight_decay=1e-3),
                          verbose=False)
            assert not m.graph_trainer.captured and m.graph_trainer.reason
        else:
            h = m.fit(X, Y, epochs=2, batch_size=128, optimizer=OPTIMIZERS[optimizer](weight_decay=1e-3),
                      verbose=False)
        runs.append((cupy.asnumpy(m.params), h["loss"], m.optimizer.steps))
    (p0, l0, s0), (p1, l1, s1) = runs
    assert s0 == s1 == 12  # 5 full batches and a partial one per epoch
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)


def test_the_default_falls_back_to_the_ordinary_step_silently(monkeypatch):
    """graph=None (the default) where capture cannot be set up: no warning, the reason kept on the
    model, and the ordinary step itself (its Adam scalars passed to adam_step), so the weights equal graph=False's
    bit for bit."""
    import warnings

    import cupy

    def no_capture(stream_ptr):
        raise cublas_mod.GemmError("made to fail by the test")

    X, Y = gpunn.datasets.make("teacher", n_samples=700, n_features=8, n_outputs=2, seed=0, device="cuda")
    runs = []
    for graph in (False, None):
        m = gpunn.MLP([8, 24, 2], device="cuda", seed=0, graph=graph)
        if graph is None:
            monkeypatch.setattr(cublas_mod, "CapturableBlas", no_capture)
            graph_mod.release_capture_resources()  # not the shared ones made by earlier tests
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m.fit(X, Y, epochs=2, batch_size=128, verbose=False)
        runs.append(cupy.asnumpy(m.params))
    assert not m.graph_trainer.active and "made to fail by the test" in m.graph_trainer.reason
    np.testing.assert_array_equal(runs[0], runs[1])


def test_fused_false_and_an_optimizer_without_graph_update_are_not_captured_and_say_why():
    """Reasons known before set-up: fused=False (CuPy's generic expressions allocate temporaries, which a capture
    cannot) and an optimizer without graph_update; graph=True says which (mut12m's G3 and G4: without the fused
    check a capture was tried, failed on CuPy's add and said that; without the optimizer's, graph=True said
    nothing)."""
    from gpunn.optim import Adam

    class Plain(Adam):
        graph_update = None

    X, Y = gpunn.datasets.make("teacher", n_samples=300, n_features=8, n_outputs=2, seed=0, device="cuda")
    m = gpunn.MLP([8, 24, 2], device="cuda", seed=0, fused=False, graph=True)
    with pytest.warns(GraphWarning, match="fused=False: CuPy's generic expressions allocate temporaries"):
        m.fit(X, Y, epochs=1, batch_size=128, verbose=False)
    assert not m.graph_trainer.captured
    m = gpunn.MLP([8, 24, 2], device="cuda", seed=0, graph=True)
    with pytest.warns(GraphWarning, match="the optimizer Plain has no graph_update"):
        m.fit(X, Y, epochs=1, batch_size=128, optimizer=Plain(lr=1e-3), verbose=False)
    assert not m.graph_trainer.captured


@pytest.mark.parametrize("kind", ["MLP", "Ensemble"])
@pytest.mark.parametrize("graph", [None, True])
def test_a_product_refused_on_the_capture_handle_falls_back(monkeypatch, graph, kind):
    """cuBLAS refusing a product on the graph's own handle (its first, eager step of a shape) leaves the
    run going: the default takes the ordinary step from that batch on (no warning), graph=True warns
    and runs the eager form; either way the weights are graph=False's (the refusal comes before any
    update). float64, which the graph's GemmEx also serves. An Ensemble's too (its batched products): its
    default's ordinary step called one MLP's old name for train_step and failed, unseen while the
    ensemble's graph was opt-in."""
    import warnings

    import cupy

    def refuse(self, a, b, out, precision="float32"):
        raise cublas_mod.GemmError("CUBLAS_STATUS_NOT_SUPPORTED (made so by the test)")

    def make(graph):
        if kind == "MLP":
            return gpunn.MLP([8, 16, 2], device="cuda", seed=0, graph=graph, dtype="float64")
        return gpunn.Ensemble([8, 16, 2], 3, device="cuda", seed=0, graph=graph, dtype="float64")

    X, Y = gpunn.datasets.make("teacher", n_samples=600, n_features=8, n_outputs=2, seed=1, device="cuda",
                               dtype="float64")
    ref = make(False)
    ref.fit(X, Y, epochs=2, batch_size=128, optimizer="momentum", verbose=False)
    monkeypatch.setattr(cublas_mod.CapturableBlas, "gemm", refuse)
    monkeypatch.setattr(cublas_mod.CapturableBlas, "gemm_batched", refuse)
    m = make(graph)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.fit(X, Y, epochs=2, batch_size=128, optimizer="momentum", verbose=False)
    said = [w for w in caught if issubclass(w.category, GraphWarning)]
    assert (len(said) == 1) == (graph is True) and not m.graph_trainer.captured
    assert "refused a product" in m.graph_trainer.reason and m.optimizer.steps == ref.optimizer.steps == 10
    np.testing.assert_allclose(cupy.asnumpy(m.params), cupy.asnumpy(ref.params), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("graph", [None, True])
def test_a_product_refused_for_a_later_batch_shape_ends_the_replays_of_the_shapes_captured_before(monkeypatch, graph):
    """The full batches' step is captured in the first epoch; cuBLAS then refuses a product of the last, partial
    batch on the graph's handle. From there no graph replays, as ``reason`` says (``captured`` is False): the default
    takes the ordinary step, graph=True the eager form, and the weights are graph=False's."""
    import warnings

    import cupy

    def make(graph):
        return gpunn.MLP([8, 16, 2], device="cuda", seed=0, graph=graph, dtype="float64")

    X, Y = gpunn.datasets.make("teacher", n_samples=600, n_features=8, n_outputs=2, seed=1, device="cuda",
                               dtype="float64")  # four batches of 128 rows and one of 88
    ref = make(False)
    ref.fit(X, Y, epochs=2, batch_size=128, optimizer="momentum", verbose=False)
    gemm = cublas_mod.CapturableBlas.gemm

    def refuse_the_partial_batch(self, a, b, out, precision="float32"):
        if a.shape[0] == 88:  # the partial batch's first product
            raise cublas_mod.GemmError("CUBLAS_STATUS_NOT_SUPPORTED (made so by the test)")
        return gemm(self, a, b, out, precision)

    monkeypatch.setattr(cublas_mod.CapturableBlas, "gemm", refuse_the_partial_batch)
    m = make(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GraphWarning)
        m.fit(X, Y, epochs=2, batch_size=128, optimizer="momentum", verbose=False)
    assert "refused a product" in m.graph_trainer.reason and not m.graph_trainer.captured
    assert m.optimizer.steps == ref.optimizer.steps == 10
    np.testing.assert_allclose(cupy.asnumpy(m.params), cupy.asnumpy(ref.params), rtol=1e-12, atol=1e-14)
