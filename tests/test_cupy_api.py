"""gpunn's CuPy API against the real CuPy package, with no GPU needed.

tests/fakecupy proves that gpunn drives the stand-in correctly; a GPU run cannot afford to find that the stand-in
had a name, an argument or an argument order CuPy lacks. Where the real CuPy is importable (``pip install
cupy-cuda13x[ctk]`` on any Linux machine: no driver is needed to import it and read its signatures) these check:

- every CuPy name gpunn and bench/ reach in their source (``cupy.X``, ``xp.X``, ``from cupy... import``) exists;
- the stand-in offers nothing CuPy lacks: the public names of its classes and namespaces are CuPy's, the names
  tests/fakecupy/names.py lets through are in ``cupy`` and ``cupy.linalg``, and each ``numpy.ndarray`` attribute
  that ``cupy.ndarray`` lacks is refused by the stand-in's arrays;
- the stand-in's signatures are CuPy's: each parameter it accepts, CuPy accepts at the same position or by the
  same keyword, with the same default (it may lack optional ones: it is then stricter, which is safe).

Skipped where CuPy is not installed, and under GPUNN_FAKE_CUPY (``cupy`` is then the stand-in). Checked against
cupy-cuda13x 14.2.0 on Python 3.12 without a driver (cupyapi11), and on Python 3.11 in session 35
(gpureview35: cupy-cuda13x without [ctk], plus nvidia-curand on LD_LIBRARY_PATH, which ``cupy.cuda.curand`` loads).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import pathlib
import re
import types

import numpy
import pytest
from stand_in import is_stand_in

# (the marker: bench/gpu_check.sh's tests stage, -m "gpu or cupy_api", runs these where CuPy is, on the GPU machine;
# nothing else installs CuPy, so until session 35 they ran nowhere by default and two had gone stale)
pytestmark = pytest.mark.cupy_api

if os.environ.get("GPUNN_FAKE_CUPY") in ("1", "gpu"):
    pytest.skip("GPUNN_FAKE_CUPY: cupy is the stand-in here, not the package these tests compare it with",
                allow_module_level=True)
cupy = pytest.importorskip("cupy", reason="the real CuPy is not installed (pip install 'cupy-cuda13x[ctk]')")
if is_stand_in(cupy):
    pytest.skip("cupy is tests/fakecupy here", allow_module_level=True)

import cupyx.profiler  # noqa: E402
import fakecupy  # noqa: E402
import fakecupy.nccl  # noqa: E402
from fakecupy import names as fake_names  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---- the names gpunn uses --------------------------------------------------------------------------------


def _chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def _assigned_names(tree):
    return {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def used_cupy_names():
    """{dotted CuPy name: the first 'file:line' using it} read from gpunn/ and bench/: attribute chains on
    ``cupy``, ``cupyx``, ``cp`` and ``xp`` (alone or as ``backend.xp``, ``self.xp``...), and ``from cupy... import``.
    A local variable named ``cupy`` (a version string) is not CuPy."""
    found = {}
    for path in sorted([*ROOT.glob("gpunn/**/*.py"), *ROOT.glob("bench/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        local = _assigned_names(tree)
        inner = {id(child) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 for child in ast.iter_child_nodes(node)}
        where = lambda node: f"{path.relative_to(ROOT)}:{node.lineno}"  # noqa: E731
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("cupy", "cupyx", "cupy_backends"):
                for alias in node.names:
                    found.setdefault(f"{node.module}.{alias.name}", where(node))
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain = _chain(node)
            if chain is None:
                continue
            if chain[0] in ("cupy", "cupyx") and chain[0] not in local:
                name = chain
            elif chain[0] in ("cp", "xp"):
                name = ["cupy", *chain[1:]]
            elif "xp" in chain[1:]:
                name = ["cupy", *chain[chain.index("xp", 1) + 1:]]
            else:
                continue
            for i in range(2, len(name) + 1):
                found.setdefault(".".join(name[:i]), where(node))
    return found


def _resolve(dotted):
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i + 1]))  # a submodule not yet imported
    return obj


def test_the_scan_finds_the_cupy_names_gpunn_is_known_to_use():
    """The scan itself: names from each way gpunn reaches CuPy (a local ``cupy`` string is left out)."""
    found = used_cupy_names()
    for name in ("cupy.RawModule", "cupy.cuda.runtime.getDeviceCount", "cupy.cuda.Stream", "cupy.argsort",
                 "cupy_backends.cuda.libs.cublas", "cupyx.empty_pinned", "cupy.cuda.device.get_cublas_handle",
                 "cupy.take"):
        assert name in found, name
    assert "cupy.startswith" not in found  # bench/gpu_report.py: cupy = info.get("cupy", ...)


def test_every_cupy_name_gpunn_uses_exists_in_cupy():
    missing = []
    for name, where in used_cupy_names().items():
        if name.startswith("cupy_backends.cuda.libs.") or name.startswith("cupy.cuda.nccl"):
            continue  # need their C library: the next test
        try:
            _resolve(name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name} ({where}): {type(exc).__name__}: {exc}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("library", ["cublas", "nccl"])
def test_the_cuda_library_bindings_gpunn_imports_exist(library):
    """``from cupy_backends.cuda.libs import cublas`` loads libcublas first (cuda-pathfinder: the [ctk] wheels);
    NCCL comes from nvidia-nccl-cu13. Skipped where the library itself is not installed."""
    try:
        module = getattr(importlib.import_module("cupy_backends.cuda.libs"), library)  # loads lib{library} first
    except ImportError as exc:
        pytest.skip(f"lib{library} is not installed here: {exc}")
    used = {"cublas": ("gemmEx", "gemmStridedBatchedEx", "CUBLASError"),
            "nccl": ("NcclCommunicator", "get_unique_id", "get_version", "NCCL_FLOAT32", "NCCL_FLOAT64", "NCCL_SUM")}
    assert [name for name in used[library] if not hasattr(module, name)] == []
    if library == "cublas":  # what CupyBlas catches and reads (gpunn.ops.cublas.CublasError), as the stand-in raises it
        real, fake = module.CUBLASError(15), fakecupy._cublas_module.CUBLASError(15)
        assert (str(real), real.status, isinstance(real, RuntimeError)) == (str(fake), fake.status, True)
    if library == "nccl":
        assert (module.NCCL_FLOAT32, module.NCCL_FLOAT64, module.NCCL_SUM) == (fakecupy.nccl.NCCL_FLOAT32,
                                                                          fakecupy.nccl.NCCL_FLOAT64, fakecupy.nccl.NCCL_SUM)
        for method in ("allReduce", "bcast", "abort"):
            assert [p[0] for p in _params(getattr(module.NcclCommunicator, method))] == [
                p[0] for p in _params(getattr(fakecupy.nccl.NcclCommunicator, method))], method


# ---- the stand-in offers nothing CuPy lacks -----------------------------------------------------------


def test_the_names_the_stand_in_lets_through_are_cupys():
    """(names.py had cupyx and importlib, which cupy/__init__.py imports inside functions: not attributes.)"""
    assert sorted(name for name in fake_names.CUPY if not hasattr(cupy, name)) == []
    assert sorted(name for name in fake_names.LINALG if not hasattr(cupy.linalg, name)) == []


# tests/fakecupy's own module-level helpers, which the tests reach as fakecupy.X (CuPy has the classes elsewhere:
# cupy.cuda.Event...). gpunn's use of any of them as cupy.X would fail test_every_cupy_name_gpunn_uses_exists_in_cupy.
FAKE_HELPERS = {"CUDARuntimeError", "CompileException", "Device", "Event", "Graph", "MemoryPointer", "MemoryPool",
                "RandomState", "StreamOrderError", "check_matmul_ints", "cublas_library", "forget_gpunn_state",
                "gemm_ex", "gemm_strided_batched_ex", "in_use", "install", "load_as_cupy", "refuse_host_conversions",
                "reset", "state"}


def test_the_stand_ins_module_has_only_cupys_names_and_its_own_helpers():
    own = {name for name, value in vars(fakecupy).items()
           if not name.startswith("_") and not hasattr(cupy, name) and not isinstance(value, types.ModuleType)}
    assert sorted(own - FAKE_HELPERS) == []


def _fake_objects():
    fakecupy.reset()
    return {
        "cupy.cuda.Stream": (fakecupy.cuda.Stream(non_blocking=True), {"ptr", "device_id"}),  # set in __init__
        "cupy.cuda.Event": (fakecupy.cuda.Event(), {"ptr"}),
        "cupy.cuda.Device": (fakecupy.cuda.Device(0), set()),
        "cupy.cuda.MemoryPointer": (fakecupy.MemoryPointer(0, 0), set()),
        "cupy.cuda.MemoryPool": (fakecupy.get_default_memory_pool(), set()),
        "cupy._core.flags.Flags": (fakecupy.ones(2).flags, set()),
        "cupy.cuda.graph.Graph": (fakecupy.Graph(fakecupy._Recording(0)), set()),
        "cupy.random.RandomState": (fakecupy.random.RandomState(0), set()),
        "cupy.RawModule": (fakecupy.RawModule(code="__global__ void k(float* x) {}"), set()),
        "cupy.RawKernel": (fakecupy.RawKernel("__global__ void k(float* x) {}", "k"), set()),
        "cupy.cuda": (fakecupy.cuda, set()),
        "cupy.cuda.runtime": (fakecupy.cuda.runtime, set()),
        "cupy.cuda.device": (fakecupy.cuda.device, set()),
        "cupy.cuda.graph": (fakecupy.cuda.graph, set()),
        "cupy.cuda.compiler": (fakecupy.cuda.compiler, set()),
        "cupy.random": (fakecupy.random, set()),
        "cupyx": (fakecupy.cupyx, set()),
        "cupyx.profiler": (fakecupy.cupyx.profiler, set()),
    }


def test_the_stand_ins_classes_and_namespaces_have_only_cupys_public_names():
    """A public name of the stand-in that CuPy lacks would let gpunn use it in CI and fail on the GPU (it had
    Event.query and Stream.device, where CuPy has the property Event.done and Stream.device_id)."""
    extra = {}
    for real_name, (fake, set_in_init) in _fake_objects().items():
        real = _resolve(real_name)
        names = {a for a in dir(fake) if not a.startswith("_") and not hasattr(real, a) and a not in set_in_init}
        if names:
            extra[real_name] = sorted(names)
    assert extra == {}


def test_the_stand_ins_arrays_refuse_what_numpy_has_and_cupy_lacks():
    lacking = sorted(a for a in dir(numpy.ndarray) if not a.startswith("_") and not hasattr(cupy.ndarray, a))
    assert lacking  # NumPy 2: ctypes, getfield, resize, setfield, setflags, to_device
    fakecupy.reset()
    a = fakecupy.asarray(numpy.ones(4, numpy.float32))
    took = []
    for name in lacking:
        try:
            getattr(a, name)
            took.append(name)
        except AttributeError:
            pass
    assert took == []


# ---- signatures ------------------------------------------------------------------------------------------


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return inspect.Parameter.empty  # not a literal (float, a name): not compared


def _params(fn):
    """[(name, kind, default)] of ``fn`` (``self`` left out): from inspect, or for a Cython function from its
    embedded signature (the docstring's first line, e.g. ``gemmEx(intptr_t handle, int transa, ...)``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
        return [(p.name, p.kind.name, p.default) for p in parameters if p.name != "self"]
    except (TypeError, ValueError):
        pass
    first = ((fn.__doc__ or "").strip().splitlines() or [""])[0]
    match = re.match(r"^[\w.]+\((.*)\)", first)
    assert match, f"no signature for {fn!r}: {first!r}"
    out, kind = [], "POSITIONAL_OR_KEYWORD"
    for raw in (p.strip().replace("\\*", "*") for p in match.group(1).split(",")):
        if raw in ("", "/", "self") or raw.endswith(" self"):
            continue
        if raw == "*":
            kind = "KEYWORD_ONLY"
        elif raw.startswith("**"):
            out.append((raw[2:], "VAR_KEYWORD", inspect.Parameter.empty))
        elif raw.startswith("*"):
            out.append((raw[1:], "VAR_POSITIONAL", inspect.Parameter.empty))
            kind = "KEYWORD_ONLY"
        else:
            declared, _, default = raw.partition("=")
            out.append((declared.split()[-1], kind, _literal(default) if default else inspect.Parameter.empty))
    return out


def signature_problems(fake, real):
    """How the stand-in's ``fake`` accepts what CuPy's ``real`` does not: a positional parameter CuPy has elsewhere
    or not at all, a keyword CuPy lacks, ``*args``/``**kwargs`` CuPy lacks, a default that differs. Parameters with
    a leading underscore are the stand-in's own."""
    fake_p = [p for p in _params(fake) if not p[0].startswith("_")]
    real_p = _params(real)
    positional = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
    real_pos = [p for p in real_p if p[1] in positional]
    real_kw = {p[0]: p for p in real_p if p[1] in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    real_var = {p[1] for p in real_p} & {"VAR_POSITIONAL", "VAR_KEYWORD"}
    problems = []
    for i, (name, kind, default) in enumerate(p for p in fake_p if p[1] in positional):
        if i < len(real_pos):
            if real_pos[i][0] != name and kind == "POSITIONAL_OR_KEYWORD":
                problems.append(f"positional {i} is {name!r}, CuPy's is {real_pos[i][0]!r}")
        elif "VAR_POSITIONAL" not in real_var:
            problems.append(f"positional {i} ({name!r}): CuPy takes {len(real_pos)}")
    for name, kind, default in fake_p:
        if kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if kind not in real_var:
                problems.append(f"*{name} or **{name}: CuPy has none")
            continue
        if kind == "POSITIONAL_ONLY":
            continue
        if name not in real_kw:
            if "VAR_KEYWORD" not in real_var:
                problems.append(f"keyword {name!r}: CuPy has none")
            continue
        real_default = real_kw[name][2]
        if (default is not inspect.Parameter.empty and real_default is not inspect.Parameter.empty
                and real_default is not None and not _same(default, real_default)):
            problems.append(f"{name}={default!r}, CuPy's default is {real_default!r}")
        if kind == "KEYWORD_ONLY" and real_kw[name][1] == "POSITIONAL_OR_KEYWORD":
            pass  # stricter than CuPy
    return problems


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b) or (a is b)
    except Exception:
        return a is b


def _real_cublas(name):
    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError as exc:
        pytest.skip(f"libcublas is not installed here: {exc}")
    return getattr(cublas, name)


# CuPy's callables the stand-in has (and gpunn or its tests call), by their names in CuPy
SIGNATURES = [
    "cupy.RawModule.compile", "cupy.RawModule.get_function", "cupy.RawKernel.__call__", "cupy.cuda.Stream",
    "cupy.cuda.Stream.begin_capture", "cupy.cuda.Stream.end_capture", "cupy.cuda.Stream.is_capturing",
    "cupy.cuda.Stream.record", "cupy.cuda.Stream.wait_event", "cupy.cuda.Stream.synchronize", "cupy.cuda.Stream.use",
    "cupy.cuda.Event", "cupy.cuda.Event.record", "cupy.cuda.Event.synchronize", "cupy.cuda.graph.Graph.launch",
    "cupy.cuda.graph.Graph.upload", "cupy.cuda.get_elapsed_time", "cupy.cuda.get_current_stream", "cupy.cuda.Device",
    "cupy.cuda.Device.use", "cupy.cuda.Device.synchronize", "cupy.cuda.runtime.getDeviceCount",
    "cupy.cuda.runtime.getDevice", "cupy.cuda.runtime.deviceGetAttribute", "cupy.cuda.runtime.getDeviceProperties",
    "cupy.cuda.runtime.runtimeGetVersion", "cupy.cuda.runtime.memGetInfo", "cupy.get_default_memory_pool",
    "cupy.cuda.MemoryPool.used_bytes", "cupy.cuda.MemoryPool.total_bytes", "cupy.cuda.MemoryPool.free_bytes",
    "cupy.cuda.MemoryPool.free_all_blocks", "cupy.cuda.MemoryPointer.memset_async",
    "cupy.cuda.MemoryPointer.copy_from_device_async", "cupy.ndarray.get", "cupy.ndarray.set", "cupy.ndarray.fill",
    "cupy.ndarray.copy", "cupy.ndarray.astype", "cupy.ndarray.tolist", "cupy.asarray", "cupy.array", "cupy.take",
    "cupy.ascontiguousarray", "cupy.asnumpy", "cupy.matmul", "cupy.random.RandomState",
    "cupy.random.RandomState.seed", "cupy.random.RandomState.standard_normal", "cupy.random.RandomState.uniform",
    "cupy.random.RandomState.permutation", "cupyx.empty_pinned", "cupyx.zeros_pinned", "cupyx.profiler.benchmark",
    "cupy_backends.cuda.libs.cublas.gemmEx", "cupy_backends.cuda.libs.cublas.gemmStridedBatchedEx",
]
# where the stand-in keeps what CuPy has elsewhere
FAKE_HOMES = {"cupy.cuda.MemoryPointer": lambda: fakecupy.MemoryPointer, "cupy.cuda.MemoryPool": lambda: fakecupy.MemoryPool,
              "cupyx": lambda: fakecupy.cupyx, "cupy_backends.cuda.libs.cublas": lambda: fakecupy._cublas_module,
              "cupy": lambda: fakecupy}


def _fake(dotted):
    """The stand-in's object for CuPy's name ``dotted``."""
    home = max((h for h in FAKE_HOMES if dotted == h or dotted.startswith(h + ".")), key=len)
    obj = FAKE_HOMES[home]()
    for part in dotted[len(home):].split(".")[1:]:
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", SIGNATURES)
def test_the_stand_in_takes_cupys_arguments(name):
    if name.startswith("cupy_backends.cuda.libs.cublas."):
        real = _real_cublas(name.rsplit(".", 1)[1])
    else:
        real = _resolve(name)
    assert signature_problems(_fake(name), real) == []


def test_the_signature_check_finds_what_the_stand_in_used_to_accept():
    """The stand-in's signatures before cupyapi11, each taken where CuPy raises TypeError."""
    def elapsed(start, end): ...
    def deviceGetAttribute(attr, device): ...  # noqa: N802
    def benchmark(func, args=(), kwargs=None, n_repeat=10000, n_warmup=10, **ignored): ...
    def array(a, dtype=None, copy=True, order="K", ndmin=0): ...
    def matmul(a, b, out=None, **kwargs): ...

    assert signature_problems(elapsed, cupy.cuda.get_elapsed_time) == [
        "positional 0 is 'start', CuPy's is 'start_event'", "positional 1 is 'end', CuPy's is 'end_event'",
        "keyword 'start': CuPy has none", "keyword 'end': CuPy has none"]
    assert "keyword 'attr': CuPy has none" in signature_problems(deviceGetAttribute, cupy.cuda.runtime.deviceGetAttribute)
    assert signature_problems(benchmark, cupyx.profiler.benchmark) == [
        "positional 4 ('n_warmup'): CuPy takes 4", "kwargs=None, CuPy's default is {}",
        "*ignored or **ignored: CuPy has none"]
    assert "positional 4 is 'ndmin', CuPy's is 'subok'" in signature_problems(array, cupy.array)
    assert "*kwargs or **kwargs: CuPy has none" in signature_problems(matmul, cupy.matmul)


@pytest.mark.parametrize("cls, args", [
    ("RawModule", dict(code="__global__ void k(float* x) {}")),
    ("RawKernel", ("__global__ void k(float* x) {}", "k")),
])
def test_the_kernel_classes_take_the_stand_ins_keywords(cls, args):
    """RawModule and RawKernel are Cython classes whose docstrings misstate their signatures (RawModule's code is
    keyword-only in cupy/_core/raw.pyx), so CuPy is asked by constructing them (nothing compiles until first use,
    so no GPU is needed): each keyword the stand-in takes, CuPy takes; positional code is refused by both."""
    real, fake = getattr(cupy, cls), getattr(fakecupy, cls)
    positional, keywords = (args, {}) if isinstance(args, tuple) else ((), args)
    taken = [p for p in _params(fake) if not p[0].startswith("_") and p[1] != "POSITIONAL_OR_KEYWORD"]
    for name, _kind, default in taken:
        if name not in keywords:
            real(*positional, **keywords, **{name: default})
    with pytest.raises(TypeError):
        real(*positional, **keywords, not_a_cupy_keyword=1)
    with pytest.raises(TypeError):
        fake(*positional, **keywords, not_a_cupy_keyword=1)
    if cls == "RawModule":
        with pytest.raises(TypeError):
            real(args["code"])
        with pytest.raises(TypeError):
            fake(args["code"])


# ---- no driver ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_usable_gpu(monkeypatch):
    """The real CuPy's probe, afresh; skipped where it finds a usable GPU."""
    from gpunn import backend

    backend.probe_cuda.cache_clear()
    monkeypatch.setattr(backend, "_fallback_announced", False)
    monkeypatch.delenv("GPUNN_DEVICE", raising=False)
    found, _count, reason = backend.probe_cuda()
    if found is not None:
        backend.probe_cuda.cache_clear()
        pytest.skip("a GPU is usable here")
    yield reason
    backend.probe_cuda.cache_clear()


def test_without_a_usable_gpu_auto_runs_on_the_cpu_and_cuda_says_why(no_usable_gpu):
    """CuPy installed, no driver (or no device): "auto" falls back with the probe's reason, "cuda" is a DeviceError
    with it (on this machine: cudaErrorInsufficientDriver, read as the driver missing or too old)."""
    from gpunn import MLP, backend

    assert no_usable_gpu
    with pytest.warns(backend.CPUFallbackWarning, match=re.escape(no_usable_gpu)):
        assert MLP([2, 3, 1], device="auto", seed=0).device == "cpu"
    with pytest.raises(backend.DeviceError, match=re.escape(no_usable_gpu)):
        MLP([2, 3, 1], device="cuda", seed=0)


def test_the_command_line_asked_for_cuda_without_a_usable_gpu_says_why_in_one_line(no_usable_gpu, capsys):
    from gpunn.cli import main

    assert main(["train", "--device", "cuda", "--rows", "2000", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpunn train: error: device 'cuda' was requested but") and "\n" not in err
    assert no_usable_gpu in err and "Traceback" not in err
