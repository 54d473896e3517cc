"""gpunn.ops.base's helpers on their own: products cut to what one GEMM call takes, TF32 rounding's non-finite
values. The methods of Ops, the reference, are tested against CpuOps and torch's formulas in test_cpu_ops.py."""
import numpy
import pytest

from gpunn.ops.base import GEMM_INT_MAX, Ops, blocks, round_to_tf32, squares64, sums_of_squares64


@pytest.mark.parametrize("n, limit", [(10, 4), (9, 4), (130, 40), (8, 4), (1, 4), (4, 4), (2**31 + 5, GEMM_INT_MAX)])
def test_blocks_cover_the_range_in_the_fewest_pieces_of_near_equal_sizes(n, limit):
    cut = blocks(n, limit)
    assert len(cut) == -(-n // limit)
    assert [lo for lo, _ in cut] == [0] + [hi for _, hi in cut[:-1]] and cut[-1][1] == n
    sizes = [hi - lo for lo, hi in cut]
    assert max(sizes) <= limit and max(sizes) - min(sizes) <= 1


def test_one_gemm_call_takes_dimensions_up_to_a_c_int():
    """cuBLAS's and LP64 CBLAS's m, n and k are C ints: the reference's limit is the largest one."""
    assert Ops.gemm_limit == GEMM_INT_MAX == numpy.iinfo(numpy.int32).max


@pytest.mark.parametrize("a_shape, b_shape", [
    ((10, 3), (3, 2)), ((3, 10), (10, 2)), ((11, 9), (9, 3)), ((2, 10, 3), (2, 3, 2)), ((2, 3, 9), (2, 9, 4)),
    ((4, 4), (4, 4))])
def test_a_product_over_the_gemm_limit_is_the_whole_product_by_calls_within_it(a_shape, b_shape):
    """Rows over the limit are cut into row blocks, a k over it into blocks summed into out (float32/float64):
    every call's m, k and n within the limit, out the product a @ b."""
    rng = numpy.random.default_rng(1)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    ops, calls = Ops(), []
    ops.gemm_limit = 4

    def product(x, y, out):
        calls.append(x.shape[-2:] + y.shape[-1:])
        return numpy.matmul(x, y, out=out)

    out = numpy.full(a_shape[:-1] + b_shape[-1:], numpy.nan)
    assert ops.in_gemm_blocks(product, a, b, out) is out
    numpy.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    assert max(max(c) for c in calls) <= 4


def test_a_product_the_gemm_limit_cannot_cut_is_refused():
    """More columns than one call takes (never cut), or a k over the limit summed into a dtype other than
    float32/float64 (the sum of the blocks would round at each), are refused rather than passed whole."""
    ops = Ops()
    ops.gemm_limit = 4
    product = lambda x, y, out: numpy.matmul(x, y, out=out)  # noqa: E731
    with pytest.raises(ValueError, match="a product with 5 columns: over the 4 a GEMM call takes"):
        ops.in_gemm_blocks(product, numpy.ones((3, 3)), numpy.ones((3, 5)), numpy.empty((3, 5)))
    with pytest.raises(ValueError, match="a product summing 6 terms .* into float16"):
        ops.in_gemm_blocks(product, numpy.ones((3, 6), numpy.float16), numpy.ones((6, 2), numpy.float16),
                           numpy.empty((3, 2), numpy.float16))


def test_tf32_rounding_keeps_nan_and_infinity():
    """A NaN whose mantissa is all ones would carry into the sign bit (-0.0) if rounded as a number; it stays a
    NaN, and infinities stay themselves."""
    bits = numpy.array([0x7FFFFFFF, 0xFFFFFFFF, 0x7FC00000, 0x7F800000, 0xFF800000], numpy.uint32)
    x = bits.view(numpy.float32)
    got = round_to_tf32(x)
    assert numpy.isnan(got[:3]).all()
    assert got[3] == numpy.inf and got[4] == -numpy.inf


def test_squares_of_float32_errors_are_formed_in_float64():
    """In float32 an error of 1e-20 squares to 0 and one of 1e20 to inf; squares64 and sums_of_squares64 form each
    square in float64 (as the CUDA kernels do), for a vector and for each row of a (K, n) matrix."""
    D = numpy.array([[1e-20, -3e-20, 2e-20], [1e20, -1e20, 4.0]], numpy.float32)
    want = D.astype(numpy.float64) ** 2
    got = squares64(numpy, D)
    assert got.dtype == numpy.float64
    numpy.testing.assert_array_equal(got, want)
    rows = sums_of_squares64(numpy, D)
    assert rows.dtype == numpy.float64 and rows.shape == (2,)
    numpy.testing.assert_allclose(rows, want.sum(axis=1), rtol=1e-15)
    for d, w in zip(D, want):
        assert sums_of_squares64(numpy, d) == pytest.approx(w.sum(), rel=1e-15)


def test_a_scratch_buffer_is_one_per_shape_dtype_slot_and_thread():
    """Ops.scratch gives the same buffer for the same shape, dtype and slot on one thread, and another for another
    dtype, slot or thread: an Ensemble's member groups run the same ops on threads of their own."""
    import threading

    ops = Ops()
    a = ops.scratch((3, 4), numpy.float32)
    assert ops.scratch([3, 4], "float32") is a and a.shape == (3, 4) and a.dtype == numpy.float32
    wide = ops.scratch((3, 4), numpy.float64)
    assert wide is not a and wide.dtype == numpy.float64
    assert ops.scratch((3, 4), numpy.float32, slot=1) is not a
    other = []
    thread = threading.Thread(target=lambda: other.append(ops.scratch((3, 4), numpy.float32)))
    thread.start()
    thread.join()
    assert other[0] is not a and other[0].shape == (3, 4)


def test_tf32_rounds_float32_operands_only():
    """precision "tf32" is a float32 product's: float64 operands are multiplied as they are (cuBLAS's COMPUTE_64F)."""
    rng = numpy.random.default_rng(2)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    out = numpy.empty((5, 4))
    Ops(precision="tf32").matmul(a, b, out)
    numpy.testing.assert_array_equal(out, numpy.matmul(a, b))


@pytest.mark.parametrize("keep_z", [False, True])
def test_a_bf16_identity_layer_written_in_place_gets_its_bias(keep_z):
    """bias_activation(Z, b, identity, A=Z): Z <- Z + b rounded to bf16 once, as the bf16 kernel stores it, whether
    or not Z is kept (the output layer's A is its Z)."""
    from gpunn.activations import get_activation

    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = numpy.dtype(ml_dtypes.bfloat16)
    rng = numpy.random.default_rng(3)
    Z = rng.standard_normal((6, 3)).astype(bf16)
    b = rng.standard_normal(3).astype(bf16)
    want = (Z.astype(numpy.float32) + b.astype(numpy.float32)).astype(bf16)
    assert Ops().bias_activation(Z, b, get_activation("identity"), Z, keep_z) is Z
    numpy.testing.assert_array_equal(Z.astype(numpy.float32), want.astype(numpy.float32))


def test_the_loss_gradient_of_an_empty_batch_is_empty_and_its_sum_zero():
    """A data-parallel rank may get an empty last batch: its loss gradient is (2/m)(A - Y) of no rows, no division
    by zero, and the sum of squares 0 (written into sum_sq when given)."""
    A, Y = numpy.empty((0, 2), numpy.float32), numpy.empty((0, 2), numpy.float32)
    dA = numpy.empty_like(A)
    assert Ops().loss_gradient(A, Y, dA) == 0
    sum_sq = numpy.full((), numpy.nan)
    assert Ops().loss_gradient(A, Y, dA, sum_sq) is sum_sq and sum_sq == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_loss_gradient_is_two_over_the_rows_times_the_error_and_the_sums_are_of_squares(dtype):
    """loss_gradient: dA = (2/m)(A - Y) for m rows, whatever the number of outputs, and the sum of squared errors;
    squared_error: that sum alone, from the errors in A's dtype (float64 errors kept to float64's digits)."""
    rng = numpy.random.default_rng(4)
    A, Y = (rng.standard_normal((5, 3)).astype(dtype) for _ in range(2))
    E = A.astype(numpy.float64) - Y.astype(numpy.float64)
    dA = numpy.empty_like(A)
    total = Ops().loss_gradient(A, Y, dA)
    numpy.testing.assert_allclose(dA, 2 / 5 * E, rtol=1e-6 if dtype == "float32" else 1e-12, atol=0)
    rel = 1e-6 if dtype == "float32" else 1e-12
    assert float(total) == pytest.approx((E**2).sum(), rel=rel, abs=0)
    assert float(Ops().squared_error(A, Y)) == pytest.approx((E**2).sum(), rel=rel, abs=0)
