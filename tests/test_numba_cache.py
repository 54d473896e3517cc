"""Numba's on-disk cache of gpunn's CPU kernels is keyed on every file they are compiled from
(gpunn.ops.lazynumba.SOURCES), not only on the file that defines each (numba/numba#1833)."""
import ast
import importlib.util
import os
import pathlib
import shutil
import sys
import types

import pytest

import waiting

pytest.importorskip("numba")

ROOT = pathlib.Path(__file__).resolve().parent.parent

MEMBER_CLIP = """
import numpy
from gpunn.ops import ensemble
from gpunn.ops.member_rates import CLIP_VALUE, HYPER_FIELDS

rates = numpy.zeros((1, HYPER_FIELDS))
rates[0, CLIP_VALUE] = 1.0
g = numpy.full((1, 4), 10.0, numpy.float32)
ensemble._member_clip(g, rates, numpy.ones(1, numpy.bool_))
print(g[0, 0], sum(ensemble._member_clip.stats.cache_hits.values()))
"""


@pytest.mark.slow
def test_an_edit_of_cpu_py_alone_recompiles_the_ensemble_kernel_that_inlines_its_clip(tmp_path):
    """ensemble.py's _member_clip inlines cpu.py's _clip_row. In a copy of the package, with a cache of its own: the
    second process loads the kernel from the cache; after an edit of _clip_row's clamp in cpu.py alone (ensemble.py
    untouched), the next process runs the edited clamp (before: the cached kernel, with the old one: 1.0)."""
    shutil.copytree(ROOT / "gpunn", tmp_path / "gpunn", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTHONDONTWRITEBYTECODE": "1"}

    def clipped():
        proc = waiting.run([sys.executable, "-c", MEMBER_CLIP], timeout=300, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        value, hits = proc.stdout.split()
        return float(value), int(hits)

    assert clipped() == (1.0, 0)
    assert clipped() == (1.0, 1)
    cpu_py = tmp_path / "gpunn" / "ops" / "cpu.py"
    source = cpu_py.read_text()
    assert source.count("            c[0] = clip_value\n") == 1
    cpu_py.write_text(source.replace("            c[0] = clip_value\n", "            c[0] = clip_value + 1\n"))
    assert clipped() == (2.0, 0)


def _code_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _origins(module, name, seen):
    """The gpunn modules a top-level name of ``module`` takes its value from: the module, where it is imported from,
    and those of the names its assignment reads."""
    if (module, name) in seen or not module.startswith("gpunn"):
        return set()
    seen.add((module, name))
    tree = ast.parse(pathlib.Path(importlib.util.find_spec(module).origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and name in [a.asname or a.name for a in node.names]:
            package = module if module.endswith("__init__") else module.rpartition(".")[0]
            source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            return {module} | _origins(source, name, seen)
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if name in {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}:
                read = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
                return {module}.union(*(_origins(module, other, seen) for other in read))
    return {module}


def test_sources_lists_every_module_a_kernel_is_compiled_from():
    """Every gpunn file that defines a Numba kernel or intrinsic is in SOURCES, and so is the module of each kernel,
    intrinsic, gpunn module and constant that a kernel reads (a constant: where it is assigned, and what that reads)."""
    from gpunn.ops import cblas, cpu, ensemble, lazynumba, ufuncs

    defining = {f"gpunn.{p.relative_to(ROOT / 'gpunn').with_suffix('').as_posix().replace('/', '.')}"
                for p in (ROOT / "gpunn").rglob("*.py") if "njit(" in p.read_text() or "@intrinsic" in p.read_text()}
    assert defining <= set(lazynumba.SOURCES)
    kernels = {**cpu._define(), **ufuncs._define(), **cblas._define(), **ensemble._define()}
    found = set()
    for kernel in kernels.values():
        func = getattr(kernel, "py_func", None)
        if func is None:  # an intrinsic: its code is its module's
            continue
        for name in _code_names(func.__code__) & set(func.__globals__):
            value = func.__globals__[name]
            if isinstance(value, types.ModuleType):
                found.add(value.__name__)
            elif hasattr(value, "py_func") or type(value).__name__ == "_Intrinsic":
                found.add(getattr(value, "py_func", getattr(value, "_defn", None)).__module__)
            else:
                found |= _origins(func.__module__, name, set())
    gpunn_found = {m for m in found if m.split(".")[0] == "gpunn"}
    assert {"gpunn.activations", "gpunn.ops.member_rates", "gpunn.ops.cpu"} <= gpunn_found
    assert gpunn_found <= set(lazynumba.SOURCES)


def test_a_kernels_cache_is_keyed_on_the_sources_or_else_turned_off():
    """key_cache adds sources_digest() to the stamp of Numba's index file; where a Numba's cache has no such stamp,
    it turns the cache off rather than leave it unkeyed; a kernel without a cache (an intrinsic) is left alone."""
    from gpunn.ops import lazynumba

    index = types.SimpleNamespace(_source_stamp=("stamp",))
    lazynumba.key_cache(types.SimpleNamespace(_cache=types.SimpleNamespace(_cache_file=index)))
    assert index._source_stamp == (("stamp",), lazynumba.sources_digest())

    class Unstamped:
        disabled = False

        def disable(self):
            self.disabled = True

    cache = Unstamped()
    lazynumba.key_cache(types.SimpleNamespace(_cache=cache))
    assert cache.disabled
    lazynumba.key_cache(object())
