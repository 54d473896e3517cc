"""Device resolution: auto fallback (said once, with the reason), explicit requests, the env override."""
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


def _without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError


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
        assert "auto:N is cuda:N where a GPU is usable and the CPU otherwise; cpu:0 is cpu" in text, name
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
    assert capsys.readouterr().err.count(f"{backend.ENV_DEVICE}='tpu': unknown device 'tpu'") == 2


@pytest.mark.parametrize("env, error", [("tpu", ValueError), ("cpu:1", ValueError), ("cuda", backend.DeviceError)])
def test_an_env_device_that_fails_names_the_variable(fresh_probe, env, error):
    # the user passed no device (or "auto"): the error must say where the device came from
    fresh_probe.setenv(backend.ENV_DEVICE, env)
    _without_cupy(fresh_probe)
    with pytest.raises(error, match=f"^{backend.ENV_DEVICE}={env!r}: "):
        backend.resolve("auto")


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
