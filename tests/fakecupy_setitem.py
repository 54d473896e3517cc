"""``host[key] = device_array`` and ``host[device_array]`` in gpunn's code refused as CuPy refuses them.

With CuPy, NumPy's subscript assignment converts the value with ``cupy.ndarray.__array__``, which raises TypeError
(cupy/_core/core.pyx, v14.2.0: "Implicit conversion to a NumPy array is not allowed"), and so does NumPy's indexing
of a host array by a CuPy array (``host[rows]``, ``host[rows] = x``: NumPy converts an index that is not a NumPy
array, cupy.ndarray having no ``__index__``). The stand-in's arrays are NumPy arrays, and NumPy's C code copies
from an ndarray subclass, and indexes by one, without calling any Python hook (not ``__array__``,
``__array_function__``, ``__array_ufunc__`` nor ``__index__``: an ndarray index is taken as it is), so the stand-in
cannot refuse either from the array side. Instead ``install()`` puts an import hook in front of gpunn (as pytest
rewrites its tests' asserts): each module of the package is compiled from its source with every subscript inside a
function checked

    T[K] = V        becomes        _v = V; _t = T; _k = K; check(_t, _k, _v); _t[_k] = _v
    T[K] (a read)   becomes        getitem(T, K)

(Python's own order of evaluation; K as Python passes it to ``__getitem__``; tuple targets unpacked first, as
Python does; numba's functions and annotations left alone), and ``check`` raises CuPy's TypeError when ``_t`` is a
host NumPy array and ``_v`` is a device array (or a list or tuple holding one), or ``_k`` is or holds one; ``getitem``
when ``T`` is a host array and ``K`` is or holds one. A 0-d device array stored into one element is let through:
NumPy packs it with ``float()``/``int()``, a synchronising read CuPy allows. ``host[k] += device`` needs no rewrite
(a ufunc with a host output: the stand-in's ``__array_ufunc__`` refuses it), nor ``numpy.copyto``
(``__array_function__``); ``del host[...]`` and ``host[device] += x`` are not checked.

Only gpunn's modules are rewritten, and only those imported after ``install()``: tests/conftest.py calls it
before anything imports gpunn (this module is not in the fakecupy package, whose ``__init__`` imports gpunn, and
pyproject's warning filter naming a gpunn class is added by conftest, not read from the ini file); module and
class bodies are left as they are. Part of tests/fakecupy's checks (its docstring lists them).
"""
from __future__ import annotations

import ast
import builtins
import importlib.abc
import importlib.machinery
import operator
import sys
import threading

import numpy

PACKAGES = ("gpunn",)
HELPER = "_fakecupy_setitem"  # the global name the rewritten modules reach this module by


def on_device(x) -> bool:
    """A stand-in device array (either copy: fakecupy, or the one GPUNN_FAKE_CUPY=gpu loads as cupy)."""
    return isinstance(x, numpy.ndarray) and type(x).__module__ == "cupy"


# keys that cannot be or hold a device array, by their exact type: the check of every subscript in gpunn's code
# (most of them read with one of these) costs a set lookup then
_PLAIN = frozenset({int, bool, slice, type(Ellipsis), type(None), str, numpy.ndarray, numpy.int64, numpy.intp})


def _holds_device_array(value) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return False
    if kind.__module__ == "cupy":
        return isinstance(value, numpy.ndarray)
    if kind is tuple or kind is list or isinstance(value, (list, tuple)):
        for x in value:  # a loop, not any() over a generator: a tuple key's check is the common slow case
            if type(x) not in _PLAIN and _holds_device_array(x):
                return True
    return False


def _one_element(target, key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    if len(keys) != target.ndim:
        return False
    for k in keys:
        if isinstance(k, (bool, numpy.bool_, numpy.ndarray)):
            return False
        try:
            operator.index(k)
        except TypeError:
            return False
    return True


def _on_host(target) -> bool:
    """A host NumPy array (not an object array, which holds a device array itself)."""
    return isinstance(target, numpy.ndarray) and not on_device(target) and target.dtype != object


def _refuse_key():
    raise TypeError("host_array[device_array]: Implicit conversion to a NumPy array is not allowed. Please use "
                    "`.get()` to construct a NumPy array explicitly (CuPy's ndarray.__array__, which NumPy calls "
                    "for an index that is not a NumPy array; tests/fakecupy_setitem.py refuses it in gpunn's code)")


def getitem(target, key):
    """``target[key]``, refused as NumPy refuses it with CuPy when ``key`` is (or holds) a device array."""
    if _holds_device_array(key) and _on_host(target):
        _refuse_key()
    return target[key]


def check(target, key, value):
    """Raise as NumPy does with CuPy when ``target[key] = value`` would convert a device array implicitly (the
    value, or an index array in ``key``)."""
    if not _on_host(target):
        return
    if _holds_device_array(key):
        _refuse_key()
    if not _holds_device_array(value):
        return
    if on_device(value) and value.ndim == 0 and _one_element(target, key):
        return
    raise TypeError("host_array[...] = a CuPy array: Implicit conversion to a NumPy array is not allowed. Please use "
                    "`.get()` to construct a NumPy array explicitly (CuPy's ndarray.__array__, which NumPy calls "
                    "for the value; tests/fakecupy_setitem.py refuses it in gpunn's code)")


slice = builtins.slice  # the rewritten modules' slices are made by this name (a module may shadow the builtin)


class _Key:
    """``key[K]`` is K as Python passes it to ``__setitem__`` (slices, tuples, Ellipsis)."""

    def __getitem__(self, key):
        return key


key = _Key()


def unpack(value, count):
    """``a, b = value``'s unpacking, with Python's messages."""
    items = tuple(value)
    if len(items) > count:
        raise ValueError(f"too many values to unpack (expected {count})")
    if len(items) < count:
        raise ValueError(f"not enough values to unpack (expected {count}, got {len(items)})")
    return items


class _Rewrite(ast.NodeTransformer):
    def __init__(self):
        self.scopes = ["module"]
        self.count = 0

    def _scoped(self, kind, node):
        self.scopes.append(kind)
        self.generic_visit(node)
        self.scopes.pop()
        return node

    def visit_FunctionDef(self, node):
        if any(word in ast.unparse(d) for d in node.decorator_list for word in ("jit", "vectorize")):
            return node  # numba compiles its bytecode: no Python calls in there (and no CuPy arrays)
        returns, node.returns = node.returns, None  # an annotation, as visit_arg's
        node = self._scoped("function", node)
        node.returns = returns
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        return self._scoped("class", node)

    def visit_arg(self, node):
        return node  # an annotation: left as written (a string under ``from __future__ import annotations``)

    def visit_AnnAssign(self, node):
        node.target = self.visit(node.target)
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if self.scopes[-1] != "function" or not isinstance(node.ctx, ast.Load) or _no_array_in(node.slice):
            return node
        # T[K] read becomes getitem(T, K), K as Python passes it to __getitem__ (key[K] where K holds a slice)
        key = node.slice
        if isinstance(key, ast.Slice) or (isinstance(key, ast.Tuple) and not any(
                isinstance(k, ast.Starred) for k in key.elts)):
            key = _as_value(key)  # a:b as slice(a, b, None), as Python builds it (no call of key[...] per read)
        if _has_slice(key):
            key = ast.Subscript(value=_helper("key"), slice=key, ctx=ast.Load())
        call = ast.Call(func=_helper("getitem"), args=[node.value, key], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))

    def visit_Assign(self, node):
        if self.scopes[-1] != "function":
            return node
        self.generic_visit(node)  # the subscripts read in it: its value, and the targets' arrays and keys
        if not any(_has_subscript(t) for t in node.targets) or any(_has_starred(t) for t in node.targets):
            return node
        self.temps = []
        value = self._temp()
        body = [ast.Assign(targets=[_store(value)], value=node.value)]
        for target in node.targets:
            body += self._assign(target, _load(value))
        body.append(ast.Delete(targets=[ast.Name(id=name, ctx=ast.Del()) for name in self.temps]))
        for statement in body:
            ast.copy_location(statement, node)
        return [ast.fix_missing_locations(statement) for statement in body]

    def _temp(self):
        self.count += 1
        name = f"_fakecupy_{self.count}"
        self.temps.append(name)
        return name

    def _assign(self, target, value):
        if isinstance(target, ast.Subscript):
            t, k = self._temp(), self._temp()
            key_of = ast.Subscript(value=_helper("key"), slice=target.slice, ctx=ast.Load())
            return [ast.Assign(targets=[_store(t)], value=target.value),
                    ast.Assign(targets=[_store(k)], value=key_of),
                    ast.Expr(ast.Call(func=_helper("check"), args=[_load(t), _load(k), value], keywords=[])),
                    ast.Assign(targets=[ast.Subscript(value=_load(t), slice=_load(k), ctx=ast.Store())], value=value)]
        if isinstance(target, (ast.Tuple, ast.List)) and _has_subscript(target):
            items = self._temp()
            body = [ast.Assign(targets=[_store(items)], value=ast.Call(
                func=_helper("unpack"), args=[value, ast.Constant(len(target.elts))], keywords=[]))]
            for i, element in enumerate(target.elts):
                body += self._assign(element, ast.Subscript(value=_load(items), slice=ast.Constant(i), ctx=ast.Load()))
            return body
        return [ast.Assign(targets=[target], value=value)]


def _has_subscript(target):
    return isinstance(target, ast.Subscript) or (
        isinstance(target, (ast.Tuple, ast.List)) and any(_has_subscript(t) for t in target.elts))


def _no_array_in(key) -> bool:
    """Whether a key cannot be or hold an array, as written: constants and slices alone (a device array as a
    slice's bound is refused by the stand-in itself: NumPy asks it for ``__index__``, which CuPy's arrays lack).
    Such reads (``a[:, 0]``, ``ws.Z[-1]``, ``X[start:stop]``) are left as they are: most of the hot path's."""
    if isinstance(key, ast.Tuple):
        return all(_no_array_in(k) for k in key.elts)
    if isinstance(key, ast.UnaryOp):
        return _no_array_in(key.operand)
    return isinstance(key, (ast.Constant, ast.Slice))


def _as_value(key):
    """The expression of a subscript's key as a value: its slices (``a:b:c``) as ``slice(a, b, c)`` calls."""
    if isinstance(key, ast.Slice):
        bounds = [ast.Constant(None) if x is None else x for x in (key.lower, key.upper, key.step)]
        return ast.Call(func=_helper("slice"), args=bounds, keywords=[])
    if isinstance(key, ast.Tuple):
        return ast.Tuple(elts=[_as_value(k) for k in key.elts], ctx=ast.Load())
    return key


def _has_slice(key):
    return isinstance(key, (ast.Slice, ast.Starred)) or (
        isinstance(key, ast.Tuple) and any(isinstance(k, (ast.Slice, ast.Starred)) for k in key.elts))


def _has_starred(target):
    return isinstance(target, (ast.Tuple, ast.List)) and any(
        isinstance(t, ast.Starred) or _has_starred(t) for t in target.elts)


def _store(name):
    return ast.Name(id=name, ctx=ast.Store())


def _load(name):
    return ast.Name(id=name, ctx=ast.Load())


def _helper(attribute):
    return ast.Attribute(value=_load(HELPER), attr=attribute, ctx=ast.Load())


# Python 3.11 keeps the AST converter's recursion depth per interpreter, not per thread: two threads importing
# gpunn modules at once (the thread ranks of tests/thread_ranks.py, each its first import of gpunn.ops.cuda) could
# switch inside ast.parse (a garbage collection running Python code) and one failed, "SystemError: AST constructor
# recursion depth mismatch", the other then finding the module half made (seen in threaded programs: CPython
# gh-106905). One parse at a time.
_PARSING = threading.RLock()


def rewrite(source: str, path: str):
    """The code object of a module's source with its subscript assignments checked."""
    with _PARSING:
        tree = _Rewrite().visit(ast.parse(source, path))
        return compile(tree, path, "exec", dont_inherit=True)


class _Loader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):  # from the source every time: no bytecode cache read or written
        return rewrite(self.get_data(self.path), self.path)

    def exec_module(self, module):
        module.__dict__[HELPER] = sys.modules[__name__]
        super().exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _Loader(spec.loader.name, spec.loader.path)
        return spec


def install():
    """Rewrite gpunn's modules imported from now on (before any is imported, to cover them all)."""
    if not installed():
        sys.meta_path.insert(0, _Finder())


def installed() -> bool:
    return any(isinstance(finder, _Finder) for finder in sys.meta_path)


def installed_in(module) -> bool:
    """Whether ``module`` was compiled with its subscript assignments checked."""
    return getattr(module, HELPER, None) is sys.modules[__name__]
