"""gpunn.ops.ufuncs: NumPy's own tanh and exp loops, called from Numba kernels (the member-group pass's tanh and
sigmoid layers), give numpy.tanh's and numpy.exp's bits; a loop that does not is refused."""
import ctypes

import numpy
import pytest

from gpunn.ops import ufuncs
from gpunn.ops.cpu import numba

pytestmark = pytest.mark.skipif(numba is None, reason="the loop is called from Numba kernels")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["tanh", "exp"])
def test_the_loop_gives_numpys_bits_in_place_on_a_matrix(name, dtype):
    loop = getattr(ufuncs, f"numpy_{name}")(dtype)
    if loop is None:
        pytest.skip(f"NumPy's {name} loop is not bound here (its ufunc struct did not read as expected)")
    rng = numpy.random.default_rng(1)
    Z = (rng.standard_normal((37, 29)) * numpy.logspace(-30, 3, 29)).astype(dtype)  # tiny to overflowing, per column
    Z[0, :4] = [0.0, -0.0, numpy.inf, -numpy.nan]
    with numpy.errstate(over="ignore"):
        expected = getattr(numpy, name)(Z)
    ufuncs.loop_inplace(loop, Z)
    assert Z.tobytes() == expected.tobytes()


def test_another_dtype_has_no_loop():
    assert ufuncs.numpy_tanh("float16") is None and ufuncs.numpy_tanh("int64") is None
    assert ufuncs.numpy_exp("float16") is None and ufuncs.numpy_exp("int64") is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_loop_that_is_not_numpys_tanh_is_refused_by_the_probe(dtype):
    """The probe compares bits: sinh's loop, found in its ufunc's struct as tanh's is, is read but refused."""
    dtype = numpy.dtype(dtype)
    sinh = ufuncs._loop(numpy.sinh, dtype)
    assert sinh is not None and not ufuncs._probe(dtype, sinh)
    tanh = ufuncs._loop(numpy.tanh, dtype)
    assert tanh is not None and ufuncs._probe(dtype, tanh)
    exp = ufuncs._loop(numpy.exp, dtype)  # exp's loop is probed against numpy.exp, and tanh's refused there
    assert exp is not None and ufuncs._probe(dtype, exp, numpy.exp) and not ufuncs._probe(dtype, tanh, numpy.exp)
    assert not ufuncs._probe(dtype, exp)


def test_a_ufunc_without_a_loop_of_the_dtype_gives_none():
    """A ufunc of Python objects (numpy.frompyfunc's: its struct read as any ufunc's) has no float loop."""
    objects = numpy.frompyfunc(lambda x: x, 1, 1)
    assert ufuncs._loop(objects, numpy.dtype("float32")) is None


class _Struct:
    """A copy of ``ufunc``'s PyUFuncObject head (_loop's fields) that _loop reads in its place (through ``id``):
    its fields may be changed, each the way another NumPy's struct could read."""

    def __init__(self, monkeypatch, ufunc):
        self.ptr, head = ctypes.sizeof(ctypes.c_void_p), object.__basicsize__
        self.buffer = ctypes.create_string_buffer(ctypes.string_at(id(ufunc), head + 24 + 4 * self.ptr))
        self.head, self.keep = head, []
        monkeypatch.setattr(ufuncs, "id", lambda obj: ctypes.addressof(self.buffer), raising=False)

    def set(self, offset, ctype, value):
        ctype.from_address(ctypes.addressof(self.buffer) + self.head + offset).value = value

    def get(self, offset, ctype):
        return ctype.from_address(ctypes.addressof(self.buffer) + self.head + offset).value

    def point(self, offset, data):
        """The field at ``offset`` points at a copy of ``data`` (bytes)."""
        self.keep.append(ctypes.create_string_buffer(data, len(data) + 1))
        self.set(offset, ctypes.c_void_p, ctypes.addressof(self.keep[-1]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_loop_is_read_only_where_the_ufunc_struct_reads_as_numpys(monkeypatch, dtype):
    """_loop checks each field it relies on against the ufunc's own attributes before it reads the loop: a struct
    whose counts, name, type numbers or pointers do not match gives None; an intact one, the first loop of the
    dtype (tanh has two float32 and two float64 entries) with its data."""
    dtype = numpy.dtype(dtype)
    tanh, ptr = numpy.tanh, ctypes.sizeof(ctypes.c_void_p)
    NTYPES, NAME, TYPES, FUNCTIONS, DATA = 16 + 2 * ptr, 24 + 2 * ptr, 24 + 3 * ptr, 16, 16 + ptr
    real = ufuncs._loop(tanh, dtype)
    assert real is not None
    types = ctypes.string_at(_Struct(monkeypatch, tanh).get(TYPES, ctypes.c_void_p), tanh.ntypes * tanh.nargs)
    entries = [i for i in range(tanh.ntypes) if types[2 * i:2 * i + 2] == bytes([dtype.num] * 2)]
    assert len(entries) == 2  # (else this NumPy's table differs from the one this test was written for)

    def read(change):
        struct = _Struct(monkeypatch, tanh)
        change(struct)
        return ufuncs._loop(tanh, dtype)

    assert read(lambda s: None).tolist() == real.tolist()
    for field in range(3):  # nin, nout, nargs
        assert read(lambda s: s.set(4 * field, ctypes.c_int, s.get(4 * field, ctypes.c_int) + 1)) is None, field
    assert read(lambda s: s.set(NTYPES, ctypes.c_int, tanh.ntypes - 1)) is None
    for pointer in (FUNCTIONS, NAME, TYPES):
        assert read(lambda s: s.set(pointer, ctypes.c_void_p, None)) is None, pointer
    assert read(lambda s: s.point(NAME, b"sinh")) is None
    other = bytearray(types)
    other[-1] = numpy.dtype("float16").num  # the last loop's output type
    assert read(lambda s: s.point(TYPES, bytes(other))) is None
    # a table of loops and data of its own: the first entry of the dtype is read, with its data; none without a loop
    table = (ctypes.c_void_p * tanh.ntypes)(*range(1000, 1000 + tanh.ntypes))
    data = (ctypes.c_void_p * tanh.ntypes)(*range(2000, 2000 + tanh.ntypes))

    def own_table(s):
        s.set(FUNCTIONS, ctypes.c_void_p, ctypes.addressof(table))
        s.set(DATA, ctypes.c_void_p, ctypes.addressof(data))

    assert read(own_table).tolist() == [1000 + entries[0], 2000 + entries[0]]
    table[entries[0]] = None
    assert read(own_table) is None


LOOP = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64),
                        ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p)


def _loop_of(dtype, change, keep):
    """[loop, 0]: an inner loop (in Python) that writes numpy.tanh of its input, then ``change(x, y)`` to it."""
    ctype = numpy.ctypeslib.as_ctypes_type(dtype)

    def loop(args, dims, steps, data):
        n = dims[0]
        assert steps[0] == steps[1] == dtype.itemsize
        x = numpy.ctypeslib.as_array((ctype * n).from_address(args[0])).copy()
        y = numpy.tanh(x)
        change(x, y)
        numpy.ctypeslib.as_array((ctype * n).from_address(args[1]))[:] = y

    keep.append(LOOP(loop))
    return numpy.array([ctypes.cast(keep[-1], ctypes.c_void_p).value, 0], numpy.int64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_probe_refuses_a_loop_off_in_one_ulp_on_subnormals_or_on_minus_zero(dtype):
    """numpy.tanh's bits or nothing: a loop one ulp off at a single input, one that flushes subnormal results to zero,
    one that gives +0.0 for -0.0: each refused, and numpy_tanh gives None for a loop its probe refuses. The same
    loop changing nothing is taken."""
    dtype, keep = numpy.dtype(dtype), []

    def ulp_off(x, y):
        at = numpy.argmax((x > 0.1) & (x < 1))  # the first such input
        y[at] = numpy.nextafter(y[at], dtype.type(1))

    def flushed(x, y):
        y[(y != 0) & (numpy.abs(y) < numpy.finfo(dtype).tiny)] = 0

    def plus_zero(x, y):
        y[y == 0] = 0.0

    assert ufuncs._probe(dtype, _loop_of(dtype, lambda x, y: None, keep))
    for change in (ulp_off, flushed, plus_zero):
        assert not ufuncs._probe(dtype, _loop_of(dtype, change, keep)), change.__name__


@pytest.mark.parametrize("name", ["tanh", "exp"])
def test_numpy_tanh_and_exp_give_none_where_the_probe_refuses_the_loop_read(monkeypatch, name):
    find = getattr(ufuncs, f"numpy_{name}").__wrapped__  # without its cache per dtype
    assert find(numpy.dtype("float64")) is not None
    loop = ufuncs._loop
    monkeypatch.setattr(ufuncs, "_loop", lambda ufunc, dtype: loop(numpy.sinh, dtype))
    assert find(numpy.dtype("float64")) is None
