"""tests/fakecupy_setitem.py: ``host[key] = device_array`` and ``host[device_array]`` in gpunn's code refused as CuPy
refuses them."""
import sys

import numpy
import pytest

import fakecupy
import fakecupy_setitem

SOURCE = '''
from __future__ import annotations  # as gpunn's modules

log = []

def note(what, value):
    log.append(what)
    return value

def store(target, key, value):
    target[key] = value

def store_slice(target, value):
    target[1:3] = value

def store_both(first, second, value):
    first[...] = second[...] = value

def store_pair(a, b, x, y):
    a[0], (b[0], name) = x, (y, "z")
    return name

def store_starred(a, values):
    a[0], *rest = values
    return rest

def ordered(target, value):
    note("target", target)[note("key", 0)] = note("value", value)

@njit
def jitted(target, value):
    target[...] = value

def pair(a, values):
    a[0], a[1] = values

def load(target, key):
    return target[key]

def load_rows(table, rows):
    return table[rows, 1:]

def load_ordered(target):
    return note("target", target)[note("key", 0)]

def annotated(a: list[int]) -> dict[str, int]:
    b: list[int] = a
    return b

class Table:
    rows = numpy.zeros(2)
    rows[0] = 1.0
    first = rows[0]

module_level = numpy.zeros(2)
module_level[...] = 2.0
'''


@pytest.fixture
def module(monkeypatch):
    """SOURCE compiled as the hook compiles gpunn's modules, with the stand-in as cupy."""
    fakecupy.install(monkeypatch)
    namespace = {"numpy": numpy, "njit": lambda f: f, fakecupy_setitem.HELPER: fakecupy_setitem}
    exec(fakecupy_setitem.rewrite(SOURCE, "<setitem test>"), namespace)
    return namespace


@pytest.mark.parametrize("key", [Ellipsis, slice(None), slice(0, 4), [0, 1, 2, 3], (slice(None),)])
def test_a_device_array_stored_into_a_host_array_is_refused(module, key):
    device = fakecupy.arange(4, dtype="float64")
    host = numpy.zeros(4)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        module["store"](host, key, device)
    assert not host.any()  # refused before anything was copied


def test_a_list_holding_a_device_array_and_a_slice_of_a_host_array_are_refused(module):
    host = numpy.zeros(4)
    with pytest.raises(TypeError, match="Implicit conversion"):
        module["store"](host, Ellipsis, [fakecupy.asarray(1.0), 2.0, 3.0, 4.0])
    with pytest.raises(TypeError, match="Implicit conversion"):
        module["store_slice"](host, fakecupy.ones(2))
    with pytest.raises(TypeError, match="Implicit conversion"):  # a 0-d array broadcast over several elements
        module["store_slice"](host, fakecupy.asarray(1.0))


def test_what_cupy_allows_still_stores(module):
    host, device = numpy.zeros((2, 2)), fakecupy.zeros((2, 2))
    module["store"](host, (0, 1), fakecupy.asarray(5.0))  # one element from a 0-d array: float(), a read CuPy allows
    module["store"](host, (1, 0), 6.0)
    module["store"](device, Ellipsis, fakecupy.ones((2, 2)))
    module["store"](host, slice(None), numpy.ones((2, 2)) * host)
    module["store"]({}, "key", device)  # not an array: nothing to convert
    objects = numpy.empty(1, dtype=object)
    module["store"](objects, 0, device)  # an object array holds the array itself
    assert host.tolist() == [[0.0, 5.0], [6.0, 0.0]] and device.get().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert objects[0] is device


def test_chained_and_tuple_targets_are_each_checked(module):
    host, device = numpy.zeros(2), fakecupy.zeros(2)
    module["store_both"](device, fakecupy.zeros(2), fakecupy.ones(2))
    assert device.get().tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="Implicit conversion"):
        module["store_both"](device, host, fakecupy.ones(2))
    assert device.get().tolist() == [1.0, 1.0]
    assert module["store_pair"](host, device, 3.0, fakecupy.asarray(4.0)) == "z"
    assert host.tolist() == [3.0, 0.0] and device.get().tolist() == [4.0, 1.0]
    with pytest.raises(TypeError, match="Implicit conversion"):
        module["store_pair"](numpy.zeros(2), numpy.zeros((2, 2)), 3.0, fakecupy.ones(2))
    with pytest.raises(ValueError, match=r"not enough values to unpack \(expected 2, got 1\)"):
        module["pair"](host, [1.0])
    assert module["store_starred"](host, [7.0, 8.0]) == [8.0] and host[0] == 7.0  # starred: left as it was


def test_the_rewrite_keeps_pythons_order_of_evaluation_and_leaves_numba_class_and_module_code(module):
    module["ordered"](numpy.zeros(1), 1.0)
    assert module["log"] == ["value", "target", "key"]
    assert module["Table"].rows.tolist() == [1.0, 0.0] and module["module_level"].tolist() == [2.0, 2.0]
    jitted = module["jitted"].__code__
    assert fakecupy_setitem.HELPER not in jitted.co_names
    assert not any(name.startswith("_fakecupy") for name in jitted.co_varnames)
    store = module["store"].__code__
    assert fakecupy_setitem.HELPER in store.co_names


@pytest.mark.skipif(not fakecupy_setitem.installed(), reason="the hook is off where the real CuPy is installed")
def test_gpunns_modules_are_compiled_with_the_check():
    import gpunn.model
    import gpunn.training.monitoring

    assert fakecupy_setitem.installed_in(gpunn.training.monitoring) and fakecupy_setitem.installed_in(gpunn.model)
    assert fakecupy_setitem.installed_in(sys.modules["gpunn"])  # the package itself: nothing imported it before


@pytest.mark.parametrize("key", ["rows", "mask", "zero-d", "in a tuple", "in a list"])
def test_a_host_array_indexed_by_a_device_array_is_refused(module, key):
    """NumPy converts an index that is not a NumPy array with ``__array__``, which CuPy refuses; the stand-in's
    arrays are NumPy arrays, taken as an index without a word (before: gpunn.ops.ensemble indexed its host table
    of member rates by the device rows of the active members)."""
    host = numpy.arange(12.0).reshape(4, 3)
    keys = {"rows": fakecupy.asarray([0, 2]), "mask": fakecupy.asarray([True, False, True, False]),
            "zero-d": fakecupy.asarray(1), "in a tuple": (slice(None), fakecupy.asarray([0, 1])),
            "in a list": [fakecupy.asarray(0), 1]}
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        module["load"](host, keys[key])
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        module["load_rows"](host, keys[key])
    with pytest.raises(TypeError, match="Implicit conversion"):  # a store by a device index, of a host value
        module["store"](host, keys[key], 0.0)
    assert host.tolist() == numpy.arange(12.0).reshape(4, 3).tolist()


def test_reads_cupy_allows_still_read(module):
    host, device = numpy.arange(12.0).reshape(4, 3), fakecupy.arange(12.0).reshape(4, 3)
    assert module["load_rows"](host, numpy.array([0, 2])).tolist() == [[1.0, 2.0], [7.0, 8.0]]
    assert module["load_rows"](host, numpy.array([True, False, True, False])).tolist() == [[1.0, 2.0], [7.0, 8.0]]
    assert module["load_rows"](device, fakecupy.asarray([0, 2])).get().tolist() == [[1.0, 2.0], [7.0, 8.0]]
    assert module["load"](host, (Ellipsis, None)).shape == (4, 3, 1)
    assert module["load"]({"rows": device}, "rows") is device  # not an array: nothing to convert
    objects = numpy.empty(1, dtype=object)
    objects[0] = device
    assert module["load"](objects, 0) is device
    assert module["load"](list, int) == list[int]  # a generic alias, as Python's own subscript makes it


def test_the_read_rewrite_keeps_pythons_order_and_leaves_annotations_class_and_module_code(module):
    assert module["load_ordered"](numpy.ones(1)) == 1.0
    assert module["log"] == ["target", "key"]
    assert module["annotated"].__annotations__ == {"a": "list[int]", "return": "dict[str, int]"}
    assert module["Table"].first == 1.0
    load = module["load"].__code__
    assert fakecupy_setitem.HELPER in load.co_names
    assert fakecupy_setitem.HELPER not in module["jitted"].__code__.co_names
