"""Backward equations against central finite differences in float64 (torch gradcheck tolerances)."""
import numpy
import pytest

from gpunn import ACTIVATIONS, MLP

ATOL, RTOL, EPS = 1e-5, 1e-3, 1e-6


def numeric_gradient(model, X, Y, param):
    """Central differences of model.loss with respect to every entry of ``param`` (a view into the model)."""
    grad = numpy.zeros(param.shape)
    flat = param.reshape(-1)
    for i in range(flat.size):
        orig = float(flat[i])
        flat[i] = orig + EPS
        up = model.loss(X, Y)
        flat[i] = orig - EPS
        down = model.loss(X, Y)
        flat[i] = orig
        grad.reshape(-1)[i] = (up - down) / (2 * EPS)
    return grad


def check_gradients(model, X, Y, to_host):
    _, dW, db = model.loss_and_gradients(X, Y)
    for l, W in enumerate(model.weights):
        numpy.testing.assert_allclose(to_host(dW[l]), numeric_gradient(model, X, Y, W), atol=ATOL, rtol=RTOL,
                                      err_msg=f"dW[{l}]")
    if model.bias:
        for l, b in enumerate(model.biases):
            numpy.testing.assert_allclose(to_host(db[l]), numeric_gradient(model, X, Y, b), atol=ATOL, rtol=RTOL,
                                          err_msg=f"db[{l}]")
    else:
        assert db is None


def _data(rows, n_in, n_out, seed):
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((rows, n_in)), rng.standard_normal((rows, n_out))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("bias", [True, False])
def test_hidden_activation_gradients(name, bias, device, to_host):
    X, Y = _data(7, 3, 2, seed=1)
    model = MLP([3, 5, 4, 2], activation=name, bias=bias, dtype="float64", device=device, seed=2)
    if bias:  # non-zero biases, so their effect on the forward pass is exercised
        for b in model.biases:
            b[...] = model.xp.asarray(numpy.random.default_rng(3).standard_normal(b.shape) * 0.3)
    check_gradients(model, X, Y, to_host)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_output_activation_gradients(name, device, to_host):
    X, Y = _data(6, 4, 3, seed=4)
    model = MLP([4, 6, 3], activation="tanh", output_activation=name, dtype="float64", device=device, seed=5)
    check_gradients(model, X, Y, to_host)


@pytest.mark.parametrize("rows", [1, 2, 33])
def test_gradients_across_batch_sizes_and_mixed_activations(rows, device, to_host):
    X, Y = _data(rows, 3, 2, seed=rows)
    model = MLP([3, 4, 4, 4, 2], activation=["gelu", "elu", "sigmoid"], output_activation="softplus",
                dtype="float64", device=device, seed=6)
    check_gradients(model, X, Y, to_host)


def test_one_dimensional_target_is_one_column(to_host):
    X, Y = _data(5, 3, 1, seed=7)
    model = MLP([3, 4, 1], dtype="float64", device="cpu", seed=8)
    assert model.loss_and_gradients(X, Y[:, 0])[0] == pytest.approx(model.loss_and_gradients(X, Y)[0], rel=1e-15)


@pytest.mark.parametrize("kind", ["mlp", "ensemble"])
def test_loss_and_gradients_on_many_rows_keeps_no_workspace_for_them(kind):
    """loss_and_gradients runs one backward pass over every row; the workspace for that many rows (Z, A and dA
    of each layer) stayed in the model's cache after the call, as much memory again as the rows' activations
    (on a GPU, held until four other sizes evicted it). Only the returned gradients are kept now; a training
    batch's workspace, when the rows are a batch's size, stays."""
    import tracemalloc

    from gpunn import Ensemble

    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((4000, 8)), rng.standard_normal((4000, 1))
    model = (MLP([8, 64, 64, 1], device="cpu", seed=0) if kind == "mlp"
             else Ensemble([8, 64, 64, 1], 2, device="cpu", seed=0))
    model.fit(X[:64], Y[:64], epochs=1, batch_size=64, verbose=False)
    # the first pass of this many rows loads compiled code once per process (the ensemble's one-call member
    # groups, which a 64-row batch does not use): not what is measured
    model.loss_and_gradients(X[:3000], Y[:3000])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        first = model.loss_and_gradients(X, Y)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    gradients = sum(a.nbytes for a in [*first[1], *first[2]])
    assert kept < gradients + 200_000  # the workspace: 4000 x 64 x 4 bytes x several arrays, over 3 MB
    again = model.loss_and_gradients(X[:64], Y[:64])  # a batch's size: its workspace was made by fit and stays
    numpy.testing.assert_array_equal(model.loss_and_gradients(X, Y)[1][0], first[1][0])
    assert numpy.all(numpy.isfinite(again[1][0]))
