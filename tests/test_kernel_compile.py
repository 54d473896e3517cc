"""Every CUDA kernel instance compiles, for sm_80 and sm_90, without a GPU.

- nvcc: one translation unit per source takes the address of every name expression that
  gpunn.ops.kernels lists (each kernel x dtype x activation), which instantiates it, and is
  compiled to SASS for both architectures; ptxas's report must show each instance per
  architecture, without spills. A missing nvcc FAILS, unless GPUNN_NO_CUDA_COMPILER=1 or the
  machine has a usable GPU (then CuPy's NVRTC compiles every instance in the GPU tests: skipped, saying so).
- NVRTC (what cupy.RawModule uses at run time): the exact code and options of
  gpunn.ops.kernels.module() (plus what CuPy 14 adds: -ftz=true, --device-as-default-execution-space,
  --pch with NVRTC >= 12.8), compiled to a cubin per architecture,
  every name expression resolved. Needs ``cuda-bindings`` and ``nvidia-cuda-nvrtc`` (the ``nvrtc``
  extra: ``make`` installs it without a GPU and with cuda13; no GPU needed); skipped without them.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import waiting

import gpunn.ops.kernels as gk

ROOT = Path(__file__).resolve().parent.parent
ARCHS = ("sm_80", "sm_90")
NO_COMPILER_ENV = "GPUNN_NO_CUDA_COMPILER"


# Where the nvcc tests look for nvcc, in this order, as README's Tests section and the failure below name them: the
# PATH, then the bin/ of $CUDA_HOME, of $CUDA_PATH and of /usr/local/cuda. (gpunn itself never runs nvcc: CuPy
# compiles its kernels with NVRTC at run time.)
NVCC_PLACES = ("PATH", "$CUDA_HOME", "$CUDA_PATH", "/usr/local/cuda")


def _nvcc_place(place):
    if place == "PATH":
        return shutil.which("nvcc")
    if place.startswith("$"):
        return os.environ.get(place[1:])
    return place


def _find_nvcc():
    for candidate in map(_nvcc_place, NVCC_PLACES):
        if not candidate:
            continue
        path = Path(candidate)
        if path.is_dir():
            path = path / "bin" / "nvcc"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


@pytest.fixture(scope="module")
def nvcc():
    path = _find_nvcc()
    if path is None:
        if os.environ.get(NO_COMPILER_ENV) == "1":
            pytest.skip(f"no CUDA compiler: {NO_COMPILER_ENV}=1 is set")
        from gpunn import backend

        if backend.probe_cuda()[0] is not None:  # a usable GPU: CuPy's NVRTC compiles every kernel here
            pytest.skip("no nvcc on this GPU machine (a driver and pip's CUDA libraries need none): NVRTC "
                        "compiles every kernel instance in this run's GPU tests, and test_nvrtc_* where installed")
        pytest.fail(f"nvcc not found ({', '.join(NVCC_PLACES)}): the CUDA kernels cannot be "
                    f"compile-checked. Install the CUDA toolkit, or set {NO_COMPILER_ENV}=1 to skip.")
    return path


def test_readme_names_every_place_the_nvcc_tests_look():
    """README's Tests section tells a machine without the toolkit where nvcc is looked for: those places, in order
    (it left out $CUDA_PATH, which _find_nvcc reads)."""
    text = " ".join((ROOT / "README.md").read_text().split())
    found = re.findall(r"\(no `nvcc` on the PATH([^)]*)\)", text)
    assert len(found) == 1, found
    assert ("PATH", *re.findall(r"`(\$\w+|/[^`]+)`", found[0])) == NVCC_PLACES


@pytest.mark.parametrize("place", NVCC_PLACES[1:3])
def test_nvcc_is_found_in_the_bin_of_each_variable_readme_names(place, tmp_path, monkeypatch):
    nvcc_file = tmp_path / "bin" / "nvcc"
    nvcc_file.parent.mkdir()
    nvcc_file.write_text("#!/bin/sh\n")
    nvcc_file.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for variable in NVCC_PLACES[1:3]:
        monkeypatch.delenv(variable[1:], raising=False)
    monkeypatch.setenv(place[1:], str(tmp_path))
    assert _find_nvcc() == str(nvcc_file)


@pytest.mark.parametrize("source", list(gk.SOURCES))
def test_nvcc_compiles_every_instance(nvcc, source, tmp_path):
    names = gk.name_expressions(source)
    unit = tmp_path / f"{Path(source).stem}_instances.cu"
    body = "\n".join(f"    (const void*)&{name}," for name in names)
    unit.write_text(f'#include "{source}"\nconst void* gpunn_instances[] = {{\n{body}\n}};\n')
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in ARCHS]
    # --threads: the architectures' front end and ptxas side by side (on CI's 2 cores ensemble.cu took 17 s, each
    # architecture's share of it in turn)
    cmd = [nvcc, "-std=c++17", f"-I{gk.kernel_dir()}", *gencode, f"--threads={len(ARCHS)}", "--Werror",
           "all-warnings", "--resource-usage", "-c", str(unit), "-o", str(tmp_path / "out.o")]
    proc = waiting.run(cmd, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{log}"
    for arch in ARCHS:
        entries = set(re.findall(rf"Compiling entry function '(\w+)' for '{arch}'", log))
        assert len(entries) == len(names), f"{arch}: {len(entries)} kernels compiled, {len(names)} expected\n{log}"
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert spills and all(s == ("0", "0") for s in spills), f"register spills:\n{log}"


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # cuda-python < 12.6
        except ImportError:
            return None
    try:
        nvrtc.nvrtcVersion()
    except Exception:  # the bindings without the libnvrtc they load
        return None
    return nvrtc


def _nvrtc_compile(nvrtc, source, arch):
    """NVRTC's compile of ``source`` for ``arch`` as gpunn.ops.kernels.module() asks for it (with what CuPy adds):
    (its result, its log, the cubin's size, {name expression: (result, lowered name)})."""
    names = gk.name_expressions(source)
    err, prog = nvrtc.nvrtcCreateProgram(gk.load_source(source).encode(), source.encode(), 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    try:
        for name in names:
            (err,) = nvrtc.nvrtcAddNameExpression(prog, name.encode())
            assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, name
        opts = [o.encode() for o in gk.COMPILE_OPTIONS + gk.CUPY_ADDED_OPTIONS] + [f"-arch={arch}".encode()]
        _, major, minor = nvrtc.nvrtcVersion()
        if (major, minor) >= (12, 8):  # CuPy 14 adds --pch from NVRTC 12.8 on (cupy/cuda/compiler.py)
            opts.append(b"--pch")
        (result,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        # A fresh mutable buffer: NVRTC writes into it, and b" " * 1 would be CPython's shared
        # one-byte bytes object, whose corruption turned every unpickled 32 (0x20) into 0 later on.
        log = bytearray(size)
        nvrtc.nvrtcGetProgramLog(prog, log)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return result, bytes(log), 0, {}
        _, cubin_size = nvrtc.nvrtcGetCUBINSize(prog)
        return result, bytes(log), cubin_size, {name: nvrtc.nvrtcGetLoweredName(prog, name.encode()) for name in names}
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


# source -> {arch: Future}: a source's compiles for every architecture start together, at its first test, in threads
# (the bindings let go of the GIL while NVRTC compiles): on 2 cores the two took ensemble.cu's 14 s in turn
_NVRTC_COMPILES = {}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", list(gk.SOURCES))
def test_nvrtc_compiles_every_instance(source, arch):
    nvrtc = _nvrtc()
    if nvrtc is None:
        pytest.skip("NVRTC bindings not installed (pip install -e '.[nvrtc]'; not with cuda12, whose CuPy "
                    "compiles every kernel in the GPU tests)")
    if source not in _NVRTC_COMPILES:
        pool = concurrent.futures.ThreadPoolExecutor(len(ARCHS), thread_name_prefix=f"nvrtc {source}")
        _NVRTC_COMPILES[source] = {a: pool.submit(_nvrtc_compile, nvrtc, source, a) for a in ARCHS}
        pool.shutdown(wait=False)
    result, log, cubin_size, lowered = _NVRTC_COMPILES[source][arch].result()
    assert result == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace")
    assert cubin_size > 0
    assert list(lowered) == gk.name_expressions(source)
    for name, (err, lowered_name) in lowered.items():
        assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS and lowered_name.startswith(b"_Z"), name


# ---- gpunn.ops.kernels itself (no compiler needed) -------------------------------------------------

def test_name_expressions_cover_every_kernel_dtype_and_activation():
    from gpunn.activations import ACTIVATIONS

    names = gk.all_name_expressions()
    n_acts = len(ACTIVATIONS)
    n_from_output = sum(a.grad_from_output is not None for a in ACTIVATIONS.values())
    # float, double and bf16 activation kernels, and to_storage for bf16 only
    assert len(names["elementwise.cu"]) == 3 * (2 * n_acts + n_from_output) + 1
    # mse_grad and weighted_mse_grad for float and double; bias_grad and bias_grad_finish for bf16 too; the 5 optimizer
    # steps and 4 clipping kernels for float and double
    assert len(names["reductions.cu"]) == 10 and len(names["optimizers.cu"]) == 18
    assert {"gpunn::weighted_mse_grad<float>", "gpunn::weighted_mse_grad<double>"} <= set(names["reductions.cu"])
    assert "gpunn::to_storage<gpunn::bf16>" in names["elementwise.cu"]
    assert "gpunn::bias_grad<gpunn::bf16>" in names["reductions.cu"]
    assert not any("bf16" in n for n in names["optimizers.cu"])  # float32 master weights and state
    # built at run time as two modules: bf16 instances apart, so float32 never compiles them
    for source in gk.SOURCES:
        bf16, plain = gk.name_expressions(source, True), gk.name_expressions(source, False)
        assert sorted(bf16 + plain) == sorted(names[source]) and all("gpunn::bf16" in n for n in bf16)
        assert not any("gpunn::bf16" in n for n in plain)
    # bias + activation per activation, 9 more (the clip's three among them), in float and double; bf16
    # (Ensemble(precision="bf16")): the forward per activation and the bias gradient; the rest works on float32 master
    # values
    assert len(names["ensemble.cu"]) == 2 * (n_acts + 9) + n_acts + 1
    assert {f"gpunn::{kernel}<{t}>" for kernel in ("member_grad_sum_sq", "member_grad_sum_total", "member_clip_grad")
            for t in ("float", "double")} <= set(names["ensemble.cu"])
    assert {"gpunn::member_weighted_mse_grad<float>", "gpunn::member_weighted_mse_grad<double>"} <= \
        set(names["ensemble.cu"])
    assert "gpunn::member_bias_act_forward<float, 1>" in names["ensemble.cu"]
    assert "gpunn::member_bias_act_forward<gpunn::bf16, 1>" in names["ensemble.cu"]
    assert "gpunn::member_bias_grad<gpunn::bf16>" in names["ensemble.cu"]
    assert not any("bf16" in n for n in names["ensemble.cu"] if "member_bias" not in n)
    assert "gpunn::act_backward_from_output<double, 8>" in names["elementwise.cu"]
    assert "gpunn::act_backward_from_output<float, 6>" not in names["elementwise.cu"]  # gelu: no g'(a)
    assert gk.name_expression("adam_step", "float32") == "gpunn::adam_step<float>"
    assert gk.name_expression("bias_act_forward", "bfloat16", 1) == "gpunn::bias_act_forward<gpunn::bf16, 1>"
    for loss in ("mse_grad", "weighted_mse_grad", "member_weighted_mse_grad"):  # a bf16 model's output layer: float32
        with pytest.raises(gk.KernelError, match=f"no {loss} kernel for dtype bfloat16"):
            gk.name_expression(loss, "bfloat16")
    with pytest.raises(gk.KernelError, match="no to_storage kernel for dtype float32"):
        gk.name_expression("to_storage", "float32")


def test_sources_are_nvrtc_safe():
    """NVRTC has no standard headers: every <...> include must sit under #ifndef __CUDACC_RTC__."""
    for path in sorted(gk.kernel_dir().glob("*.cu*")):
        depth_rtc = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith("#if"):
                depth_rtc.append(s.replace(" ", "") == "#ifndef__CUDACC_RTC__")
            elif s.startswith("#endif"):
                depth_rtc.pop()
            elif re.match(r"#\s*include\s*<", s):
                assert any(depth_rtc), f"{path.name}:{lineno}: {s} outside #ifndef __CUDACC_RTC__"


def test_load_source_inlines_headers_once_with_line_markers():
    code = gk.load_source("optimizers.cu")
    assert '#include "' not in code
    assert code.count("namespace gpunn {") == 4  # optimizers.cu, block_sum.cuh, optimizers.cuh, activations.cuh once
    assert gk.load_source("elementwise.cu").count("namespace gpunn {") == 3  # + bfloat16.cuh
    lines = code.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'#line (\d+) "(.+)"', line)
        if m:  # the next line of the inlined text is line N of that file
            original = (gk.kernel_dir() / m.group(2)).read_text().splitlines()
            if i + 1 < len(lines) and not lines[i + 1].startswith("#line"):
                assert lines[i + 1] == original[int(m.group(1)) - 1]


def test_every_line_of_an_inlined_source_is_marked_with_its_file_and_line():
    """NVRTC's errors name the file and line the #line markers give: each line of load_source's text is that
    line of that file (an include directive gives way to the header's text, or to nothing the second time;
    an inlined header ends with an empty line)."""
    include = re.compile(r'\s*#\s*include\s+"')
    for source in gk.SOURCES:
        files, where = {}, None
        for line in gk.load_source(source).splitlines():
            marker = re.fullmatch(r'#line (\d+) "(.+)"', line)
            if marker:
                where = [marker.group(2), int(marker.group(1))]
                continue
            assert where is not None, f"{source}: {line!r} comes before any #line marker"
            name, number = where
            if name not in files:
                files[name] = (gk.kernel_dir() / name).read_text().splitlines()
            original = files[name][number - 1] if number <= len(files[name]) else ""
            assert line == original or (line == "" and include.match(original)), (source, name, number, line)
            where[1] += 1


def test_each_module_is_built_once_and_float32_never_builds_the_bf16_instances(monkeypatch):
    """get_kernel builds a source's module on first use and keeps it (one NVRTC compile per process), the
    bfloat16 instances as a module of their own: float32 and float64 kernels never wait for their compile,
    and a bf16 kernel is looked up in a module that holds only bf16 instances. A kernel is looked up once."""
    built = []

    class RawModule:
        def __init__(self, code, options, name_expressions):
            built.append(list(name_expressions))
            self.names = set(name_expressions)

        def compile(self):
            pass

        def get_function(self, name):
            assert name in self.names, name
            return object()

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(compiler=types.SimpleNamespace(CompileException=Exception))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    from gpunn.activations import ACTIVATIONS

    gk.module.cache_clear()
    gk._get.cache_clear()
    try:
        relu = ACTIVATIONS["relu"]
        first = gk.get_kernel("bias_act_forward", "float32", relu)
        assert gk.get_kernel("bias_act_forward", "float32", relu.kernel_id) is first
        gk.get_kernel("bias_act_forward", "float64", relu)
        gk.get_kernel("act_backward_from_input", "float32", relu)
        gk.get_kernel("member_bias_grad", "float32")
        assert built == [gk.name_expressions("elementwise.cu", False), gk.name_expressions("ensemble.cu", False)]
        assert not any("bf16" in name for names in built for name in names)
        gk.get_kernel("bias_act_forward", "bfloat16", relu)
        gk.get_kernel("member_bias_grad", "bfloat16")
        gk.get_kernel("bias_act_forward", "float32", relu)
        assert built[2:] == [gk.name_expressions("elementwise.cu", True), gk.name_expressions("ensemble.cu", True)]
    finally:
        gk.module.cache_clear()
        gk._get.cache_clear()


def test_import_does_not_import_cupy():
    code = "import sys, gpunn.ops.kernels; gpunn.ops.kernels.all_name_expressions(); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_compile_error_is_raised_as_kernel_error_with_the_log(monkeypatch):
    class CompileException(Exception):
        def get_message(self):
            return "elementwise.cu(12): error: identifier \"oops\" is undefined"

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert "-std=c++17" in options and name_expressions

        def compile(self):
            raise CompileException("nvrtc failed")

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(compiler=types.SimpleNamespace(CompileException=CompileException))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    gk.module.cache_clear()
    try:
        with pytest.raises(gk.KernelError, match=r"(?s)elementwise\.cu.*identifier \"oops\""):
            gk.module("elementwise.cu")
    finally:
        gk.module.cache_clear()


def test_no_compile_option_of_gpunns_relaxes_the_arithmetic():
    """The kernels must agree with the NumPy reference to float rounding (test_kernel_math_host.py builds the
    headers without -ffast-math): none of gpunn's own NVRTC options may trade accuracy for speed. CuPy's
    -ftz=true is the known exception (CUPY_ADDED_OPTIONS), which a GPU run's comparison tolerates."""
    relaxing = ("fast_math", "fast-math", "ftz=true", "prec-div=false", "prec-sqrt=false", "prec_div=false",
                "prec_sqrt=false")
    assert not [o for o in gk.COMPILE_OPTIONS if any(r in o for r in relaxing)], gk.COMPILE_OPTIONS
