"""Device resolution: auto fallback (said once, with the reason), explicit requests, the env override."""
import contextlib
import re
import sys
import types
import warnings
from pathlib import Path

import numpy
import pytest

import gpunn
from gpunn import MLP, backend, datasets


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget the cached CuPy probe and the fallback announcement around a test."""
    backend.probe_cuda.cache_clear()
    monkeypatch.setattr(backend, "_fallback_announced", False)
    monkeypatch.delenv(backend.ENV_DEVICE, raising=False)
    yield monkeypatch
    backend.probe_cuda.cache_clear()


def _without_cupy(monkeypatch, driver=True):
    """CuPy not installed, on a machine with an NVIDIA driver (a GPU gpunn could use with CuPy) or, driver=False,
    without one (a laptop)."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    monkeypatch.setattr(backend, "nvidia_driver_found", lambda: driver)


def _cupy_without_device(monkeypatch, error=None):
    fake = types.ModuleType("cupy")

    def count():
        if error:
            raise error
        return 0

    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
    monkeypatch.setitem(sys.modules, "cupy", fake)


def test_auto_without_cupy_runs_on_numpy_and_says_why_once(fresh_probe):
    _without_cupy(fresh_probe)
    with pytest.warns(backend.CPUFallbackWarning, match="CuPy is not installed"):
        model = MLP([2, 3, 1], device="auto")
    assert model.device == "cpu" and model.xp is numpy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLP([2, 3, 1], device="auto")  # said once only


def test_auto_on_a_machine_with_neither_gpu_nor_cupy_runs_on_numpy_without_a_note(fresh_probe, capsys):
    """A laptop: no NVIDIA driver and no CuPy. Nothing asked for a GPU, so "auto" is the CPU without a
    CPUFallbackWarning (every script and command printed one, telling to pip install CuPy, which cannot help
    there); an explicit GPU is refused saying there is none, and gpunn info's cupy line says why."""
    from gpunn import cli

    _without_cupy(fresh_probe, driver=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MLP([2, 3, 1], device="auto")
        assert model.device == "cpu" and backend.resolve(None) is backend.CPU
    with pytest.raises(backend.DeviceError, match="was requested but this machine has no NVIDIA driver .* and CuPy "
                                                  "is not installed. Use device 'cpu' or 'auto'.$"):
        MLP([2, 1], device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("always", backend.CPUFallbackWarning)  # as outside pytest (tests/conftest.py ignores it)
        assert cli.main(["train", "--rows", "64", "--features", "2", "--hidden", "4", "--epochs", "1", "--quiet"]) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.startswith("device: cpu (NumPy)\n")
        assert cli.main(["info"]) == 0
        assert f"cupy            unavailable: {backend.NO_GPU_HERE}" in capsys.readouterr().out.splitlines()


def test_a_driver_is_found_by_nvidia_smi_on_the_path(tmp_path, monkeypatch):
    """As the Makefile's scripts/cuda_extra.py finds one (tests/test_packaging.py); /proc/driver/nvidia is the
    machine's own, so only the PATH half is checked where this machine has no driver."""
    import os

    monkeypatch.setenv("PATH", str(tmp_path))
    assert backend.nvidia_driver_found() == os.path.isdir("/proc/driver/nvidia")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    assert backend.nvidia_driver_found()


def test_a_driver_is_found_by_its_kernel_modules_directory_without_nvidia_smi(tmp_path, monkeypatch):
    """A machine whose driver's kernel module is loaded (/proc/driver/nvidia) but whose PATH has no nvidia-smi (a
    container given the device without the tools) has a driver: "auto" without CuPy says how to get it there."""
    import os

    monkeypatch.setenv("PATH", str(tmp_path))
    isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: path == "/proc/driver/nvidia" or isdir(path))
    assert backend.nvidia_driver_found()
    monkeypatch.setattr(os.path, "isdir", lambda path: path != "/proc/driver/nvidia" and isdir(path))
    assert not backend.nvidia_driver_found()


@pytest.mark.parametrize("make", [lambda: MLP([2, 3, 1]), lambda: datasets.make("linear", 10, 2),
                                  lambda: backend.resolve("auto")])
def test_the_fallback_note_points_at_the_callers_line_not_inside_gpunn(fresh_probe, make):
    _without_cupy(fresh_probe)
    with pytest.warns(backend.CPUFallbackWarning) as record:
        make()
    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("error, reason", [(None, "no CUDA device was found"),
                                           (RuntimeError("cudaErrorInsufficientDriver"), "driver")])
def test_auto_with_cupy_but_no_usable_device(fresh_probe, error, reason):
    _cupy_without_device(fresh_probe, error)
    with pytest.warns(backend.CPUFallbackWarning, match=reason):
        assert backend.resolve("auto").name == "cpu"


# the alias's id is not "gpu": a parameter id is one of a test's keywords, and the gpu marker's name among them
# had this case skipped on every machine without a GPU, the one kind it is about
@pytest.mark.parametrize("request_", ["cuda", "cuda:0", pytest.param("gpu", id="alias-gpu")])
def test_explicit_cuda_without_gpu_raises(fresh_probe, request_):
    _without_cupy(fresh_probe)
    with pytest.raises(backend.DeviceError, match="CuPy is not installed"):
        MLP([2, 1], device=request_)


def test_only_the_gpu_marker_has_a_test_skipped_without_a_gpu(request, monkeypatch):
    """tests/conftest.py skips a test marked gpu where there is no GPU; "gpu" among its keywords alone (a parameter
    id, as test_explicit_cuda_without_gpu_raises had, or a name) is no reason to skip it."""
    import conftest

    monkeypatch.setattr(conftest, "_gpu_reason", lambda: "no CUDA device was found")
    item = request.node
    item.keywords["gpu"] = True  # where a parameter id "gpu" puts it
    conftest.pytest_collection_modifyitems(request.config, [item])
    assert item.get_closest_marker("skip") is None
    item.add_marker(pytest.mark.gpu)
    conftest.pytest_collection_modifyitems(request.config, [item])
    assert item.get_closest_marker("skip").kwargs["reason"] == "no usable GPU: no CUDA device was found"


def test_a_gpu_asked_for_on_the_command_line_without_one_is_refused_in_its_words(fresh_probe, capsys):
    """The refusal said "Use device='cpu' or 'auto'.", Python's keyword, to the user of gpunn train --device."""
    from gpunn import cli

    _without_cupy(fresh_probe)
    assert cli.main(["train", "--rows", "100", "--features", "2", "--device", "cuda", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith("CuPy is not installed (pip install 'gpunn[cuda12]' or "
                                                    "'gpunn[cuda13]'). Use device 'cpu' or 'auto'.")


def test_cuda_index_beyond_device_count(fresh_probe):
    import fakecupy  # tests/fakecupy: a CuPy stand-in that passes the probe's smoke test

    fakecupy.install(fresh_probe)
    fakecupy.state.device_count = 1
    with pytest.raises(backend.DeviceError, match="only 1 CUDA device"):
        backend.resolve("cuda:3")
    with pytest.raises(backend.DeviceError, match="only 1 CUDA device"):  # it was cuda:3, failing at first use
        backend.resolve("auto:3")
    assert backend.resolve("cuda:0").device == "cuda:0" and backend.resolve("auto:0").device == "cuda:0"


def test_gpu_is_cudas_other_name_and_every_device_option_says_so(fresh_probe):
    """device "gpu" / "gpu:N" (JAX's and TensorFlow's name) resolves as "cuda" / "cuda:N"; it was taken but
    documented nowhere: every command's --device help and README's Devices section name it."""
    import fakecupy

    from gpunn import cli

    fakecupy.install(fresh_probe)
    fakecupy.state.device_count = 2
    assert backend.resolve("gpu").device == backend.resolve("cuda").device == "cuda:0"
    assert backend.resolve("GPU:1").device == "cuda:1"
    with pytest.raises(backend.DeviceError, match="'gpu:2' was requested but only 2 CUDA device"):
        backend.resolve("gpu:2")
    helps = {name: next(a.help for a in parser._actions if "--device" in a.option_strings)
             for name, parser in cli.build_parser().commands.items()}
    assert set(helps) == {"train", "predict", "sweep", "bench", "info"}
    for name, text in helps.items():
        assert "cuda or cuda:N (gpu and gpu:N are the same as cuda and cuda:N;" in text, name
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    devices = readme.split("## Devices", 1)[1].split("\n## ", 1)[0]
    assert '`"gpu"` and `"gpu:N"`' in " ".join(devices.split())


def test_auto_n_and_cpu_0_are_what_every_device_option_says(fresh_probe):
    """device "auto:N" is "cuda:N" where a GPU is usable, the CPU otherwise; "cpu:0" is "cpu". resolve took both,
    documented nowhere: every command's --device help and README's Devices section say what they are."""
    import fakecupy

    from gpunn import cli

    assert backend.resolve("cpu:0") is backend.CPU
    fakecupy.install(fresh_probe)
    fakecupy.state.device_count = 2
    assert backend.resolve("auto:1").device == "cuda:1"
    backend.probe_cuda.cache_clear()
    _without_cupy(fresh_probe)
    with pytest.warns(backend.CPUFallbackWarning, match="CuPy is not installed"):
        assert backend.resolve("auto:1") is backend.CPU
    for name, parser in cli.build_parser().commands.items():
        text = next(a.help for a in parser._actions if "--device" in a.option_strings)
        assert "auto:N is cuda:N where a GPU is usable and the CPU otherwise; cpu:0 is cpu; in any letter case" in text, \
            name  # (a device is read in lower case: gpunn.cli.common.device_name)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    devices = " ".join(readme.split("## Devices", 1)[1].split("\n## ", 1)[0].split())
    assert '`"auto:N"` is `"cuda:N"` where a GPU is usable and the CPU otherwise' in devices
    assert '`"cpu:0"` is `"cpu"`' in devices


def test_env_override_applies_to_auto_only(fresh_probe):
    fresh_probe.setenv(backend.ENV_DEVICE, "cpu")
    assert backend.resolve("auto").name == "cpu"
    fresh_probe.setenv(backend.ENV_DEVICE, "cuda")
    _without_cupy(fresh_probe)
    assert backend.resolve("cpu").name == "cpu"
    with pytest.raises(backend.DeviceError):
        backend.resolve("auto")


def test_every_command_whose_device_is_auto_names_the_variable_that_overrides_it(fresh_probe, tmp_path, capsys):
    """GPUNN_DEVICE overrides --device auto in gpunn predict, sweep and info as in train, whose help alone named it;
    gpunn bench's default, all, is not auto and takes no override."""
    from gpunn import cli

    for name, parser in cli.build_parser().commands.items():
        action = next(a for a in parser._actions if "--device" in a.option_strings)
        assert (action.default == "auto") == ("env GPUNN_DEVICE" in action.help), name
    gpunn.save(tmp_path / "m.npz", MLP([2, 1], device="cpu"))
    numpy.save(tmp_path / "x.npy", numpy.ones((3, 2)))
    fresh_probe.setenv(backend.ENV_DEVICE, "tpu")
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")]) == 2
    assert cli.main(["sweep", "--rows", "50", "--features", "2", "--epochs", "1", "--lr", "1e-3", "--quiet"]) == 2
    assert capsys.readouterr().err.count(f"{backend.ENV_DEVICE}='tpu' is not auto, cpu, cuda or cuda:N") == 2


@pytest.mark.parametrize("env, error", [("tpu", ValueError), ("cpu:1", ValueError), ("cuda", backend.DeviceError),
                                        (" tpu ", ValueError), (" cuda ", backend.DeviceError),
                                        ("cuda:١", ValueError)])  # an Arabic-Indic 1: ran as cuda:1
def test_an_env_device_that_fails_names_the_variable(fresh_probe, env, error):
    # the user passed no device (or "auto"): the error must say where the device came from, quoting the variable as
    # set (spaces included, as every variable's refusal does; it was quoted less its spaces)
    fresh_probe.setenv(backend.ENV_DEVICE, env)
    _without_cupy(fresh_probe)
    with pytest.raises(error, match=f"^{re.escape(backend.ENV_DEVICE)}={re.escape(repr(env))}") as refused:
        backend.resolve("auto")
    said = str(refused.value).partition(repr(env))[2]
    if error is ValueError:  # a name resolve does not take: the refusal's form every variable has (was 'NAME=v: ...')
        one_cpu = "the CPU backend has one device, cpu; " if env == "cpu:1" else ""
        meant = "did you mean 'cuda:1'? " if env == "cuda:١" else ""  # (not the name refused, as it was)
        assert said == f" is not auto, cpu, cuda or cuda:N ({one_cpu}{meant}unset: auto)"
    else:  # a device name, the device not here: resolve's own words, saying it came from the variable
        assert said.startswith(": device 'cuda' was requested but ")


@pytest.mark.parametrize("env, meant", [("cdua", "cuda"), ("CDUA:1", "cuda:1"), ("cpuu", "cpu"), ("aut", "auto"),
                                        ("cuda:١", "cuda:1")])  # (an Arabic-Indic 1, refused)
def test_an_env_device_misspelt_names_the_one_meant_as_the_device_argument_does(fresh_probe, env, meant):
    """GPUNN_DEVICE=cdua said only what the variable takes, where device="cdua" says "did you mean 'cuda'?"."""
    fresh_probe.setenv(backend.ENV_DEVICE, env)
    with pytest.raises(ValueError) as refused:
        backend.resolve("auto")
    assert str(refused.value) == (f"{backend.ENV_DEVICE}={env!r} is not auto, cpu, cuda or cuda:N (did you mean "
                                  f"{meant!r}? unset: auto)")
    fresh_probe.setenv(backend.ENV_DEVICE, meant)  # (the name meant is taken)
    assert backend.device_setting() == meant


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:1", ""])
def test_unknown_device_strings(fresh_probe, bad):
    with pytest.raises(ValueError, match="device"):
        backend.resolve(bad)


def test_probe_runs_once(fresh_probe):
    calls = []
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: calls.append(1) or 0))
    fresh_probe.setitem(sys.modules, "cupy", fake)
    for _ in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backend.resolve("auto")
    assert calls == [1]


def test_model_exposes_its_device():
    model = MLP([2, 1], device="cpu")
    assert model.device == "cpu" and isinstance(model.predict(numpy.ones((3, 2))), numpy.ndarray)


@pytest.mark.gpu
def test_everything_stays_on_the_gpu(gpu):
    import cupy

    from gpunn import datasets

    X, Y = datasets.make("linear", 512, 4, device="cuda")
    assert isinstance(X, cupy.ndarray)
    model = MLP([4, 8, 1], device="cuda", seed=0)
    assert model.device == "cuda:0" and isinstance(model.params, cupy.ndarray)
    model.fit(X, Y, epochs=2, verbose=False)
    assert isinstance(model.predict(X), cupy.ndarray)


class _SmokeStub:
    """Just what backend._smoke_test touches of CuPy, on NumPy, failing at the stage named (or computing wrong)."""

    def __init__(self, fail=None, error=None, wrong=None):
        self.fail, self.error, self.wrong = fail, error or RuntimeError("CUDA_ERROR_FILE_NOT_FOUND: no such file"), wrong
        stub = self

        class Array:
            def __init__(self, values):
                self.values = values

            def __mul__(self, k):
                stub._maybe_fail("elementwise")
                return Array(self.values * k + (1 if stub.wrong == "values" else 0))

            def get(self):
                stub._maybe_fail("copy")
                return self.values

            def reshape(self, *shape):
                return Array(self.values.reshape(shape))

        class Kernel:
            def __init__(self, code, name):
                self.compiled = False

            @property
            def attributes(self):
                stub._maybe_fail("compile")
                self.compiled = True
                return {}

            def __call__(self, grid, block, args):
                if not self.compiled:  # a kernel that compiles at its first launch fails there
                    stub._maybe_fail("compile")
                stub._maybe_fail("launch")
                args[0].values[:] = 2 * args[0].values + 1

        def matmul(a, b):
            stub._maybe_fail("cublas")
            return Array(a.values @ b.values + (1 if stub.wrong == "product" else 0))

        def device(index):
            stub._maybe_fail("context")
            return contextlib.nullcontext()

        self.Array, self.RawKernel = Array, Kernel
        self.cuda = types.SimpleNamespace(Device=device)
        self.matmul = matmul

    def _maybe_fail(self, stage):
        if stage == self.fail:
            raise self.error

    def asarray(self, values):
        self._maybe_fail("alloc")
        return self.Array(numpy.array(values))


@pytest.mark.parametrize("fail, stage, hint", [
    ("context", "creating a CUDA context", False), ("alloc", "allocating device memory", False),
    ("compile", "compiling a kernel with NVRTC", True), ("launch", "running a kernel", False),
    ("elementwise", "running CuPy's own elementwise kernels", True),
    ("cublas", "multiplying matrices with cuBLAS", True), ("copy", "copying results back", False)])
def test_the_smoke_test_names_the_stage_that_failed_and_the_toolkit_where_one_is_missing(fail, stage, hint):
    """A stage that needs the CUDA toolkit's libraries (NVRTC for compiling, which CuPy's own elementwise kernels
    use too; cuBLAS) adds how to get them; a failure elsewhere (a context, memory, a launch) does not. No cuRAND
    stage: gpunn draws from its own Philox kernel, so a machine without cuRAND must not fall back to the CPU."""
    reason = backend._smoke_test(_SmokeStub(fail))
    assert reason.startswith(f"CuPy sees a CUDA device but {stage} failed (RuntimeError: CUDA_ERROR_FILE_NOT_FOUND")
    assert (backend._TOOLKIT_HINT in reason) == hint


def test_the_smoke_tests_reason_is_one_line_of_at_most_300_characters_of_the_error_or_its_type():
    long = RuntimeError("nvrtc: error:\n  " + "x" * 400 + "\n\tend")
    reason = backend._smoke_test(_SmokeStub("launch", long))
    text = " ".join(str(long).split())[:300]
    assert reason == f"CuPy sees a CUDA device but running a kernel failed (RuntimeError: {text})"
    assert backend._smoke_test(_SmokeStub("launch", MemoryError())) == (
        "CuPy sees a CUDA device but running a kernel failed (MemoryError: MemoryError)")


def test_a_device_that_fails_the_smoke_test_is_no_usable_gpu(fresh_probe):
    """CuPy that counts a device whose first compile fails (a wheel without the CUDA toolkit) is no GPU: the probe
    answers the smoke test's reason, "auto" runs on NumPy saying it and "cuda" is refused with it."""
    stub = _SmokeStub("compile")
    stub.cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    fresh_probe.setitem(sys.modules, "cupy", stub)
    reason = backend._smoke_test(_SmokeStub("compile"))
    assert reason.startswith("CuPy sees a CUDA device but compiling a kernel with NVRTC failed")
    assert backend.probe_cuda() == (None, 0, reason)
    with pytest.warns(backend.CPUFallbackWarning, match="compiling a kernel with NVRTC failed"):
        assert backend.resolve("auto") is backend.CPU
    with pytest.raises(backend.DeviceError, match="compiling a kernel with NVRTC failed"):
        backend.resolve("cuda")


@pytest.mark.parametrize("wrong", ["values", "product"])
def test_the_smoke_test_refuses_a_device_that_computes_wrong_values_or_a_wrong_product(wrong):
    assert backend._smoke_test(_SmokeStub()) == ""
    assert backend._smoke_test(_SmokeStub(wrong=wrong)) == "CuPy sees a CUDA device but a test kernel computed wrong results"


def test_a_cupy_that_fails_to_import_with_another_error_falls_back_with_it(fresh_probe, tmp_path):
    """A broken CuPy install (one raising something other than ImportError, as a missing libcudart can) must not
    break the CPU path: "auto" falls back naming the error, "cuda" is refused with it."""
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text("raise RuntimeError('libcudart.so.12: cannot open shared object')\n")
    fresh_probe.delitem(sys.modules, "cupy", raising=False)
    fresh_probe.syspath_prepend(str(tmp_path))
    reason = "CuPy failed to import: libcudart.so.12: cannot open shared object"
    assert backend.probe_cuda() == (None, 0, reason)
    with pytest.warns(backend.CPUFallbackWarning, match=reason):
        assert backend.resolve("auto") is backend.CPU
    with pytest.raises(backend.DeviceError, match=reason):
        backend.resolve("cuda")


@pytest.mark.parametrize("text, reason", [
    ("cudaErrorStubLibrary: CUDA driver is a stub library", "the NVIDIA driver is missing or too old for this CuPy build"),
    ("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version",
     "the NVIDIA driver is missing or too old for this CuPy build"),
    ("cudaErrorNoDevice: no CUDA-capable device is detected", "no CUDA device is usable")])
def test_a_failed_device_count_is_said_with_the_runtimes_words(fresh_probe, text, reason):
    _cupy_without_device(fresh_probe, RuntimeError(text))
    assert backend.probe_cuda() == (None, 0, f"{reason} ({text})")


def test_a_gpu_backend_describes_its_device_by_name_and_cupys_version(fresh_probe):
    import fakecupy

    fakecupy.install(fresh_probe)
    assert backend.CPU.describe() == "cpu (NumPy)"
    name = fakecupy.cuda.runtime.getDeviceProperties(1)["name"]  # bytes, as CuPy gives it
    assert isinstance(name, bytes)
    assert backend.resolve("cuda:1").describe() == f"cuda:1 ({name.decode()}, CuPy {fakecupy.__version__})"


@pytest.mark.parametrize("auto", [None, "auto", "AUTO", " Auto "])
def test_none_and_auto_in_any_letter_case_are_overridden_by_gpunn_device_and_an_empty_one_overrides_nothing(
        fresh_probe, auto):
    """resolve(None) is resolve("auto"), the env override included; GPUNN_DEVICE set to "" is as unset. "AUTO" is
    "auto" (any letter case, as every device name), but was compared with "auto" as written before the override:
    device="AUTO" (or gpunn train --device AUTO) ignored GPUNN_DEVICE=cpu and fell back with a warning, and
    GPUNN_DEVICE=cuda went to the CPU without a word."""
    fresh_probe.setenv(backend.ENV_DEVICE, "cpu")
    _without_cupy(fresh_probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the override: no fallback
        assert backend.resolve(auto) is backend.CPU
    fresh_probe.setenv(backend.ENV_DEVICE, "cuda")
    with pytest.raises(backend.DeviceError, match="^GPUNN_DEVICE='cuda': "):
        backend.resolve(auto)
    fresh_probe.setenv(backend.ENV_DEVICE, "")
    with pytest.warns(backend.CPUFallbackWarning, match="CuPy is not installed"):
        assert backend.resolve(auto) is backend.CPU


def test_closing_on_the_device_what_has_no_close_does_nothing():
    """close_on_device closes a generator (its finally runs); an iterator with nothing to close (a list's, as a pass
    over in-memory pieces may be) is passed over, not an AttributeError."""
    done = []

    def items():
        try:
            yield 1
        finally:
            done.append("closed")

    generator = items()
    next(generator)
    backend.CPU.close_on_device(generator)
    backend.CPU.close_on_device(iter([1, 2]))
    assert done == ["closed"]


def test_host_array_is_a_c_contiguous_numpy_copy_of_host_values():
    X = numpy.arange(12.0).reshape(3, 4)
    got = backend.host_array(X.T)
    assert got.flags.c_contiguous and type(got) is numpy.ndarray
    numpy.testing.assert_array_equal(got, X.T)


@pytest.mark.gpu
def test_host_array_copies_a_device_array_to_the_host(gpu):
    X = gpu.xp.arange(12.0).reshape(3, 4)
    got = backend.host_array(X.T)
    assert type(got) is numpy.ndarray and got.flags.c_contiguous
    numpy.testing.assert_array_equal(got, numpy.arange(12.0).reshape(3, 4).T)


@pytest.mark.parametrize("name, taken", [
    ("cuda", True), (" CUDA:1 ", True), ("Gpu:0", True), ("cpu\n", True), ("AUTO", True), ("auto:2", True),
    ("tpu", False), ("cuda:x", False), ("cuda:", False), ("", False), ("cuda:1:2", False),
    ("cuda:١", False), ("gpu:１", False), ("auto:٢", False), ("cpu:٠", False)])  # other scripts' digits: were 0-9
def test_is_device_name_takes_what_resolve_takes_however_written(fresh_probe, name, taken):
    """is_device_name (gpunn bench's check before its own 'all') says whether resolve takes the name as written,
    in any case and with spaces around, as resolve itself reads it."""
    import fakecupy

    fakecupy.install(fresh_probe)
    fakecupy.state.device_count = 3
    assert backend.is_device_name(name) == taken
    if taken:
        backend.resolve(name)
    else:
        with pytest.raises(ValueError, match="unknown device"):
            backend.resolve(name)


@pytest.mark.parametrize("device", [0, b"cuda", ["cpu"]])
def test_a_device_that_is_no_string_is_a_type_error_saying_what_a_device_is(fresh_probe, device):
    with pytest.raises(TypeError, match=r"^device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', not "):
        backend.resolve(device)


def test_a_gpu_past_the_last_is_refused_naming_the_devices_there_are(fresh_probe):
    import fakecupy

    fakecupy.install(fresh_probe)
    fakecupy.state.device_count = 2
    with pytest.raises(backend.DeviceError, match=r"^device 'cuda:2' was requested but only 2 CUDA device\(s\) exist "
                                                  r"\(cuda:0\.\.cuda:1\)$"):
        backend.resolve("cuda:2")
    with pytest.raises(backend.DeviceError, match=r"^device 'gpu:12' was requested but only 2 CUDA device"):
        backend.resolve("gpu:12")  # a device of two digits is a number, not an unknown name


@pytest.mark.gpu
def test_backend_of_an_array_is_the_device_it_lives_on(gpu):
    from gpunn import backend as b

    if b.probe_cuda()[1] < 2:
        pytest.skip("needs two GPUs")
    with gpu.xp.cuda.Device(1):
        X = gpu.xp.ones(3)
    assert b.backend_of(X).device == "cuda:1" and b.backend_of(X).xp is gpu.xp
    assert b.backend_of(numpy.ones(3)) is b.CPU
