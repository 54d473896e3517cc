"""graph=True on a GPU (marked gpu): the captured and replayed step trains as the ordinary one.

The graph calls cuBLAS on its own handle (other workspace, so possibly other GEMM kernels than
CuPy's matmul) and computes Adam's bias corrections with the device's pow: weights agree to
float32 rounding accumulated over the steps, not bit for bit.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunn
from gpunn.optim import OPTIMIZERS
from gpunn.training.graph import GraphWarning

try:
    import cupy

    _GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # not installed, or no driver / device
    cupy, _GPU = None, False

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _GPU, reason="needs CuPy and a CUDA device")]


def _train(graph, precision="float32", optimizer="adam", epochs=3, rows=2100):
    X, Y = gpunn.datasets.make("teacher", n_samples=rows, n_features=16, n_outputs=2, seed=0, device="cuda")
    m = gpunn.MLP([16, 64, 64, 2], activation=["relu", "gelu"], device="cuda", seed=0, graph=graph,
                  precision=precision)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)  # a capture that falls back fails here
        h = m.fit(X, Y, epochs=epochs, batch_size=128, optimizer=OPTIMIZERS[optimizer](weight_decay=1e-4),
                  verbose=False)
    return m, h


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_captured_graph_trains_like_the_ordinary_step(optimizer):
    ref, h_ref = _train(False, optimizer=optimizer)
    m, h = _train(True, optimizer=optimizer)
    trainer = m.graph_trainer
    assert trainer is not None and trainer.captured, getattr(trainer, "reason", None)
    assert m.optimizer.steps == ref.optimizer.steps == 3 * 17  # 16 full batches + 1 partial per epoch
    p, p_ref = cupy.asnumpy(m.params), cupy.asnumpy(ref.params)
    assert np.linalg.norm(p - p_ref) <= 1e-4 * np.linalg.norm(p_ref), np.abs(p - p_ref).max()
    np.testing.assert_allclose(h["loss"], h_ref["loss"], rtol=1e-4)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_captured_graph_with_tensor_core_precisions(precision):
    ref, h_ref = _train(False, precision=precision, epochs=2)
    m, h = _train(True, precision=precision, epochs=2)
    assert m.graph_trainer.captured
    p, p_ref = cupy.asnumpy(m.params), cupy.asnumpy(ref.params)
    # bf16 rounding boundaries can flip between two GEMM kernels: a looser bound
    assert np.linalg.norm(p - p_ref) <= 2e-2 * np.linalg.norm(p_ref)
    np.testing.assert_allclose(h["loss"], h_ref["loss"], rtol=2e-2)


def test_graph_replay_is_repeatable():
    a, _ = _train(True, epochs=2)
    b, _ = _train(True, epochs=2)
    np.testing.assert_array_equal(cupy.asnumpy(a.params), cupy.asnumpy(b.params))
