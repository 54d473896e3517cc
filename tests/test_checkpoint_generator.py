"""Checkpoints record which generator drew a source's rows (a synthetic source's, a bootstrap's resamples), and a
resume that would draw them with another one (another kind of device, or cuRAND in an older gpunn's GPU run) is
refused: it would go on with other rows. A CPU file from before the record resumes as it did, bit for bit."""
from __future__ import annotations

import warnings

import numpy
import pytest

import gpunn
from checkpoint_edits import rewrite_meta
from gpunn import rng

GPU_NAME, CPU_NAME = "gpunn philox4x32-10", "numpy PCG64"
CURAND = r"drawn on a GPU by cuRAND, as gpunn drew them before its own Philox4x32-10 generator"


def _source(**options):
    # 4 pieces of 1,024 rows in one window: 16 batches of 256 an epoch
    return gpunn.data.synthetic("teacher", rows=4096, n_features=3, chunk_rows=1024, seed=3, **options)


def _fit(device, path, epochs=1, **options):
    model = gpunn.MLP([3, 4, 1], device=device, seed=0)
    callbacks = [gpunn.ModelCheckpoint(path)] if path else []
    model.fit(_source(**options), epochs=epochs, batch_size=256, verbose=False, callbacks=callbacks)
    return model


def _recorded(path, section="source"):
    return gpunn.load_checkpoint(path, device="cpu").training[section]


def _as_written(path, to, *, rng_name=None, device=None, section="source"):
    """``path``'s checkpoint as another gpunn wrote it: without the generator (an older one's) or with ``rng_name``,
    and its run on ``device``."""
    def change(meta):
        meta["training"][section].pop("rng")
        if rng_name is not None:
            meta["training"][section]["rng"] = rng_name
        if device is not None:
            meta["device"] = device

    rewrite_meta(path, to, change)
    return to


def test_a_checkpoint_records_what_drew_a_synthetic_sources_rows(device, tmp_path):
    path = tmp_path / "run.npz"
    model = _fit(device, path)
    assert _recorded(path)["rng"] == rng.generator(model.backend) == {"cpu": CPU_NAME, "cuda": GPU_NAME}[device]
    history = gpunn.load_checkpoint(path, device=device).resume(_source(), epochs=2, verbose=False)
    assert history["epoch"] == [1, 2] and _recorded(path)["rng"] == rng.generator(model.backend)


def test_a_cpu_checkpoint_from_before_the_record_resumes_silently_and_exactly(tmp_path):
    """Rows on the CPU are NumPy's PCG64 draws, as they were before checkpoints recorded it: such a file resumes
    without a word, bit for bit the run that was never interrupted, and its checkpoints record it from then on."""
    straight = _fit("cpu", None, epochs=2)
    _fit("cpu", tmp_path / "run.npz")
    old = _as_written(tmp_path / "run.npz", tmp_path / "old.npz")
    assert "rng" not in _recorded(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt = gpunn.load_checkpoint(old, device="cpu")
        ckpt.resume(_source(), epochs=2, verbose=False)
    numpy.testing.assert_array_equal(ckpt.model.params, straight.params)
    assert _recorded(old)["rng"] == CPU_NAME


@pytest.mark.parametrize("role", ["training", "validation"])
def test_rows_another_generator_drew_are_refused_saying_which_and_where_to_resume(tmp_path, role):
    """On the CPU, files as a GPU run writes them: with gpunn's Philox4x32-10 recorded (resume it on a GPU), and
    from before the record, whose rows cuRAND drew (no gpunn now draws them); a validation source's rows alike."""
    path = tmp_path / "run.npz"
    if role == "training":
        _fit("cpu", path)
        section, again = "source", {}
    else:
        model = gpunn.MLP([3, 4, 1], device="cpu", seed=0)
        model.fit(_source(), epochs=1, batch_size=256, verbose=False, validation_data=_source(),
                  callbacks=[gpunn.ModelCheckpoint(path)])
        section, again = "validation_data", {"validation_data": _source()}
    said = "a synthetic source's rows" if role == "training" else r"validation rows \(a synthetic source's\)"
    philox = _as_written(path, tmp_path / "philox.npz", rng_name=GPU_NAME, device="cuda:0", section=section)
    with pytest.raises(ValueError, match=rf"philox.npz was trained on {said} drawn by gpunn's Philox4x32-10 on a "
                                         r"GPU, and on cpu they are drawn by NumPy's PCG64 on the CPU: other rows, "
                                         r"not the run's. Resume it on a GPU: "
                                         r"gpunn.load_checkpoint\(path, device='cuda'\)"):
        gpunn.load_checkpoint(philox, device="cpu").resume(_source(), epochs=2, verbose=False, **again)
    curand = _as_written(path, tmp_path / "curand.npz", device="cuda:0", section=section)
    with pytest.raises(ValueError, match=rf"curand.npz was trained on {said} {CURAND}, which draws other rows for "
                                         r"the same seed .*Resume it with the gpunn that wrote it"):
        gpunn.load_checkpoint(curand, device="cpu").resume(_source(), epochs=2, verbose=False, **again)


def test_a_bootstrapped_ensembles_checkpoint_records_what_drew_its_resamples(ensemble_data, tmp_path):
    """Its members' resamples are uniform draws: the same rule as a synthetic source's rows. A file from before the
    record resumes bit for bit on the CPU; one of a GPU run is refused as cuRAND's."""
    X, Y = ensemble_data
    fit = dict(batch_size=50, bootstrap=True, seed=1, verbose=False)
    straight = gpunn.Ensemble([5, 4, 2], 2, seed=0, device="cpu")
    straight.fit(X, Y, epochs=2, **fit)
    path = tmp_path / "run.npz"
    gpunn.Ensemble([5, 4, 2], 2, seed=0, device="cpu").fit(X, Y, epochs=1, callbacks=[gpunn.ModelCheckpoint(path)],
                                                            **fit)
    assert _recorded(path)["rng"] == CPU_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt = gpunn.load_checkpoint(_as_written(path, tmp_path / "old.npz"), device="cpu")
        ckpt.resume(X, Y, epochs=2, verbose=False)
    numpy.testing.assert_array_equal(ckpt.model.params, straight.params)
    curand = _as_written(path, tmp_path / "curand.npz", device="cuda:0")
    with pytest.raises(ValueError, match=rf"trained on its members' bootstrap resamples {CURAND}, which draws other "
                                         r"resamples for the same seed"):
        gpunn.load_checkpoint(curand, device="cpu").resume(X, Y, epochs=2, verbose=False)


# ---- on a GPU (tests/fakecupy under GPUNN_FAKE_CUPY=1) -------------------------------------------------------------
@pytest.mark.gpu
def test_a_gpu_run_resumed_on_the_cpu_or_a_cpu_run_on_a_gpu_is_refused(gpu, tmp_path):
    """Another kind of device draws other rows: load_checkpoint(path, device=...) of the other kind resumed silently
    on them; a CPU file from before the record too."""
    on_gpu, on_cpu = tmp_path / "gpu.npz", tmp_path / "cpu.npz"
    _fit("cuda", on_gpu)
    _fit("cpu", on_cpu)
    assert _recorded(on_gpu)["rng"] == GPU_NAME
    with pytest.raises(ValueError, match=r"drawn by gpunn's Philox4x32-10 on a GPU, and on cpu they are drawn by "
                                         r"NumPy's PCG64 on the CPU: other rows, not the run's. Resume it on a GPU"):
        gpunn.load_checkpoint(on_gpu, device="cpu").resume(_source(), epochs=2, verbose=False)
    for path in (on_cpu, _as_written(on_cpu, tmp_path / "old.npz")):
        with pytest.raises(ValueError, match=r"drawn by NumPy's PCG64 on the CPU, and on cuda:0 they are drawn by "
                                             r"gpunn's Philox4x32-10 on a GPU: other rows, not the run's. Resume it on "
                                             r"the CPU: gpunn.load_checkpoint\(path, device='cpu'\)"):
            gpunn.load_checkpoint(path, device="cuda").resume(_source(), epochs=2, verbose=False)


@pytest.mark.gpu
def test_a_gpu_checkpoint_from_before_the_record_is_refused_as_curands_rows(gpu, tmp_path, ensemble_data):
    """A GPU run's file without the record drew its rows with cuRAND (gpunn before its Philox4x32-10): resumed, it
    went on with Philox's rows, silently. Refused on the GPU and the CPU alike, a bootstrapped ensemble's too; a file
    with the record resumes."""
    path = tmp_path / "run.npz"
    _fit("cuda", path)
    old = _as_written(path, tmp_path / "old.npz")
    for device in ("cuda", "cpu"):
        with pytest.raises(ValueError, match=rf"old.npz was trained on a synthetic source's rows {CURAND}"):
            gpunn.load_checkpoint(old, device=device).resume(_source(), epochs=2, verbose=False)
    assert gpunn.load_checkpoint(path, device="cuda").resume(_source(), epochs=2, verbose=False)["epoch"] == [1, 2]
    X, Y = ensemble_data
    ens = tmp_path / "ensemble.npz"
    gpunn.Ensemble([5, 4, 2], 2, seed=0, device="cuda").fit(X, Y, epochs=1, batch_size=50, bootstrap=True,
                                                             callbacks=[gpunn.ModelCheckpoint(ens)], verbose=False)
    assert _recorded(ens)["rng"] == GPU_NAME
    with pytest.raises(ValueError, match=rf"trained on its members' bootstrap resamples {CURAND}"):
        gpunn.load_checkpoint(_as_written(ens, tmp_path / "old-ensemble.npz"), device="cuda").resume(
            X, Y, epochs=2, verbose=False)
    assert gpunn.load_checkpoint(ens, device="cuda").resume(X, Y, epochs=2, verbose=False)["epoch"] == [1, 2]
