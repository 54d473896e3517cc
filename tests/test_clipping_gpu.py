"""Gradient clipping on a GPU (marked gpu): CupyOps' kernels (kernels/optimizers.cu: clip_sum_sq, clip_factor,
clip_scale, clip_by_value) against the reference's formula, with no host read, captured into the training step's
CUDA graph in every precision. On tests/fakecupy (GPUNN_FAKE_CUPY=1) the captured step equals the eager one bit for
bit; on a GPU to float32's rounding over the steps (tests/test_graph_gpu.py says why)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gpunn
from gpunn.ops import Ops
from gpunn.training.graph import GraphWarning
from stand_in import is_stand_in

pytestmark = pytest.mark.gpu  # (skipped without a GPU: tests/conftest.py)
cupy = pytest.importorskip("cupy")
FAKE = is_stand_in(cupy)
ROWS = 500 if FAKE else 2100  # with a last partial batch either way


@pytest.fixture
def no_host_reads(monkeypatch):
    """A context in which, on the stand-in, any synchronous read of a device array (get, float(), bool()...) fails the
    test (a GPU's: nothing checked)."""
    import contextlib

    @contextlib.contextmanager
    def refusing():
        if not FAKE:
            yield
            return
        import fakecupy

        def refused(a, what, stream=None):
            raise AssertionError(f"a host read during clipping: {what}")
        with monkeypatch.context() as m:
            m.setattr(fakecupy, "_synchronous_read", refused)
            yield
    return refusing


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 1000, 300_001])  # one element; one block's; many blocks', their grid-stride loops
def test_the_kernels_clip_by_the_references_formula_on_the_device(no_host_reads, dtype, n):
    g = np.random.default_rng(n).standard_normal(n).astype(dtype) * 3
    ops = gpunn.MLP([2, 1], device="cuda", dtype=dtype).ops
    norm = float(np.linalg.norm(g.astype(np.float64)))
    for c in (norm / 3, norm * 2):  # one that clips, one that leaves g as it is
        want = g.copy()
        Ops().clip_grad_norm(want, c)
        d = cupy.asarray(g)
        with no_host_reads():
            assert ops.clip_grad_norm(d, c) is d
        got = cupy.asnumpy(d)
        np.testing.assert_allclose(got, want, rtol=2 * np.finfo(dtype).eps, atol=0)  # the sum's order: an ulp
        if c > norm:
            assert got.tobytes() == g.tobytes()
    d = cupy.asarray(g)
    with no_host_reads():
        ops.clip_grad_value(d, 0.5)
    assert cupy.asnumpy(d).tobytes() == np.clip(g, -0.5, 0.5).tobytes()


def test_a_nan_gradient_stays_nan_under_either_clip():
    g = np.array([1.0, np.nan, -3.0, 4.0], np.float32)
    ops = gpunn.MLP([2, 1], device="cuda").ops
    d = cupy.asarray(g)
    ops.clip_grad_value(d, 2.0)
    np.testing.assert_array_equal(cupy.asnumpy(d), [1.0, np.nan, -2.0, 2.0])
    d = cupy.asarray(g)
    ops.clip_grad_norm(d, 1.0)  # a NaN norm: every gradient NaN, as torch's clip_grad_norm_ (error_if_nonfinite off)
    assert np.isnan(cupy.asnumpy(d)).all()



def test_a_float32_gradient_past_float32s_squares_is_clipped_to_the_norm_on_the_device():
    """clip_sum_sq squares each element in double: a float32 gradient of 3e19 and -4e19 (norm 5e19, whose square
    float32 cannot hold) is scaled to the limit, not zeroed by an infinite sum (on a GPU this runs the .cu itself)."""
    g = np.array([3e19, -4e19, 0.0, 1e18, -2e18], np.float32)
    want = g.astype(np.float64) / np.linalg.norm(g.astype(np.float64))
    d = cupy.asarray(g)
    gpunn.MLP([2, 1], device="cuda").ops.clip_grad_norm(d, 1.0)
    np.testing.assert_allclose(cupy.asnumpy(d), want, rtol=1e-6, atol=0)

def _train(graph, optimizer, precision="float32", dtype="float32", fused=True):
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda",
                               dtype=dtype)
    m = gpunn.MLP([16, 64, 64, 2], activation=["relu", "gelu"], device="cuda", seed=0, graph=graph,
                  precision=precision, dtype=dtype, fused=fused)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphWarning)  # a capture that falls back fails here
        h = m.fit(X, Y, epochs=2, batch_size=128, optimizer=optimizer(), verbose=False)
    return m, h


CLIPPING = {"adam clip_norm": lambda: gpunn.Adam(lr=1e-2, weight_decay=1e-4, clip_norm=0.05),
            "momentum clip_value": lambda: gpunn.Momentum(lr=0.05, clip_value=0.002)}


@pytest.mark.parametrize("precision", ["float32", "tf32", "bf16"])
@pytest.mark.parametrize("case", CLIPPING)
def test_the_clipped_step_is_captured_in_every_precision_and_trains_as_the_eager_step(case, precision):
    optimizer = CLIPPING[case]
    ref, h_ref = _train(False, optimizer, precision)
    captures = cupy.state.captures if FAKE else None
    m, h = _train(None, optimizer, precision)
    assert m.graph_trainer.captured and m.graph_trainer.reason is None, m.graph_trainer.reason
    if FAKE:  # the full batches' graph and the partial batch's
        assert cupy.state.captures - captures == 2
        assert cupy.asnumpy(m.params).tobytes() == cupy.asnumpy(ref.params).tobytes()
        assert list(h["loss"]) == list(h_ref["loss"])
    else:
        rel = 2e-2 if precision == "bf16" else 1e-4
        p, p_ref = cupy.asnumpy(m.params), cupy.asnumpy(ref.params)
        assert np.linalg.norm(p - p_ref) <= rel * np.linalg.norm(p_ref)
    from test_clipping import unclipped

    plain, _ = _train(None, lambda: unclipped(optimizer()), precision)  # (the clip alone apart)
    assert np.abs(cupy.asnumpy(plain.params) - cupy.asnumpy(ref.params)).max() > 1e-3  # (the clip clipped)


@pytest.mark.parametrize("case", CLIPPING)
def test_a_float64_fit_clips_with_the_kernels_as_with_cupys_generic_expressions(case):
    """The kernels' fit (captured) against fused=False's, the reference's CuPy expressions, eagerly: the same
    training to float64's rounding (the norm's sum in another order)."""
    gpu, _ = _train(None, CLIPPING[case], dtype="float64")
    generic, _ = _train(None, CLIPPING[case], dtype="float64", fused=False)
    assert gpu.graph_trainer.captured and not generic.graph_trainer.captured
    np.testing.assert_allclose(cupy.asnumpy(gpu.params), cupy.asnumpy(generic.params), rtol=1e-9, atol=1e-12)


def test_a_clip_set_on_the_optimizer_between_fits_is_the_next_fits_clip_in_the_graph():
    """The next fit with the same optimizer replays the graphs already captured (gpunn.training.loop): one captured
    with no clip held none, so opt.clip_norm = 0.05 then trained unclipped, silently. A changed setting now captures
    anew: the graph's three fits train as the eager steps' (bit for bit on the stand-in), clipped in the second."""
    X, Y = gpunn.datasets.make("teacher", n_samples=ROWS, n_features=16, n_outputs=2, seed=0, device="cuda")

    def run(graph, clips=(None, 0.05, None)):
        m = gpunn.MLP([16, 64, 2], device="cuda", seed=0, graph=graph)
        opt = gpunn.Adam(lr=1e-2)
        for clip_norm in clips:
            opt.clip_norm = clip_norm
            m.fit(X, Y, epochs=1, batch_size=128, optimizer=opt, verbose=False)
        assert m.graph_trainer is None or m.graph_trainer.captured == (graph is not False), m.graph_trainer.reason
        return cupy.asnumpy(m.params)

    eager, captured = run(False), run(None)
    if FAKE:
        assert captured.tobytes() == eager.tobytes()
    else:
        assert np.linalg.norm(captured - eager) <= 1e-4 * np.linalg.norm(eager)
    assert np.abs(run(False, (None, None, None)) - eager).max() > 1e-3  # (the second fit clipped)
