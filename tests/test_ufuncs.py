"""gpunn.ops.ufuncs: NumPy's own tanh loop, called from Numba kernels (the member-group pass's tanh and sigmoid
layers), gives numpy.tanh's bits; a loop that does not is refused."""
import numpy
import pytest

from gpunn.ops import ufuncs
from gpunn.ops.cpu import numba

pytestmark = pytest.mark.skipif(numba is None, reason="the loop is called from Numba kernels")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_loop_gives_numpy_tanhs_bits_in_place_on_a_matrix(dtype):
    tanh = ufuncs.numpy_tanh(dtype)
    if tanh is None:
        pytest.skip("NumPy's tanh loop is not bound here (its ufunc struct did not read as expected)")
    rng = numpy.random.default_rng(1)
    Z = (rng.standard_normal((37, 29)) * numpy.logspace(-30, 2, 29)).astype(dtype)  # tiny to saturating, per column
    Z[0, :4] = [0.0, -0.0, numpy.inf, -numpy.nan]
    expected = numpy.tanh(Z)
    ufuncs.tanh_inplace(tanh, Z)
    assert Z.tobytes() == expected.tobytes()


def test_another_dtype_has_no_loop():
    assert ufuncs.numpy_tanh("float16") is None and ufuncs.numpy_tanh("int64") is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_loop_that_is_not_numpys_tanh_is_refused_by_the_probe(dtype):
    """The probe compares bits: sinh's loop, found in its ufunc's struct as tanh's is, is read but refused."""
    dtype = numpy.dtype(dtype)
    sinh = ufuncs._loop(numpy.sinh, dtype)
    assert sinh is not None and not ufuncs._probe(dtype, sinh)
    tanh = ufuncs._loop(numpy.tanh, dtype)
    assert tanh is not None and ufuncs._probe(dtype, tanh)


def test_a_ufunc_without_a_loop_of_the_dtype_gives_none():
    """A ufunc of Python objects (numpy.frompyfunc's: its struct read as any ufunc's) has no float loop."""
    objects = numpy.frompyfunc(lambda x: x, 1, 1)
    assert ufuncs._loop(objects, numpy.dtype("float32")) is None
