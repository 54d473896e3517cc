"""Checkpoints record which generator drew a source's rows (a synthetic source's, a bootstrap's resamples), and a
resume that would draw them with another one (another kind of device, or cuRAND in an older gpunn's GPU run) is
refused: it would go on with other rows. A CPU file from before the record resumes as it did, bit for bit. A shuffled
run's file records what ordered its epochs' rows (NumPy's permutation on the CPU, gpunn's hash permutation on a GPU:
other orders for the same seed and epoch), and a resume part-way through an epoch where the other orders them warns."""
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
def test_rows_another_generator_drew_are_refused_saying_which_and_where_to_resume(tmp_path, role, no_gpu):
    """On the CPU, files as a GPU run writes them: with gpunn's Philox4x32-10 recorded (resume it on a GPU), and
    from before the record, whose rows cuRAND drew (no gpunn now draws them); a validation source's rows alike. On a
    machine without a GPU (here), "resume it on a GPU: gpunn.load_checkpoint(path, device='cuda')", which that load
    refuses there ("Use device 'cpu' or 'auto'"), is a machine with one, and what this one can do (where a GPU is,
    test_a_gpu_run_resumed_on_the_cpu_or_a_cpu_run_on_a_gpu_is_refused checks the load it names)."""
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
                                         r"not the run's. Resume it on a machine with a GPU \(.*\); on this "
                                         r"one, the loaded model predicts \(ckpt.model\), and ckpt.model.fit\(...\) "
                                         r"trains it on as a new run$"):
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


SHUFFLED_ON = {"cpu": "numpy PCG64 permutation", "cuda": "gpunn hash_permutation"}
OTHER_ORDER = r"the rest of that epoch is another order's batches, some of its rows trained twice and others not at all"


def _stopped(device, path, interrupt_at, shuffle=True):
    """A run on 200 in-memory rows (4 batches an epoch) stopped after batch 2 of epoch 1 (a file written there)."""
    X = numpy.random.default_rng(0).standard_normal((200, 3))
    model = gpunn.MLP([3, 4, 1], device=device, seed=0)
    model.fit(X, X[:, :1], epochs=2, batch_size=50, shuffle=shuffle, verbose=False,
              callbacks=[gpunn.ModelCheckpoint(path), interrupt_at(0, 1)])
    return X, X[:, :1]


def test_a_shuffled_runs_checkpoint_records_what_ordered_its_rows_and_warns_of_another_part_way(tmp_path,
                                                                                                interrupt_at):
    """Resumed part-way through an epoch where another permutation orders the rows (a GPU's file on the CPU), the rest
    of the epoch is other batches: a warning, not a refusal (the rows are the run's), saying where to resume; at an
    epoch's end, or where the same permutation orders them, nothing is said."""
    path = tmp_path / "run.npz"
    X, Y = _stopped("cpu", path, interrupt_at)
    # (the run's device, the CPU: gpunn.load(path) is on "auto", a GPU where there is one, the stand-in's too)
    assert _recorded(path, "shuffled_by") == rng.shuffler(gpunn.backend.resolve("cpu")) == SHUFFLED_ON["cpu"]
    on_gpu = tmp_path / "gpu.npz"
    rewrite_meta(path, on_gpu, lambda meta: meta.update(device="cuda:0") or
                 meta["training"].update(shuffled_by=SHUFFLED_ON["cuda"]))
    with pytest.warns(UserWarning, match=r"gpu.npz stopped part-way through epoch 1 \(after 2 of its 4 batches\), "
                                         r"whose rows gpunn's hash permutation on a GPU ordered, and on cpu NumPy's "
                                         rf"permutation on the CPU orders them: {OTHER_ORDER} \(later epochs are "
                                         r"whole\). For the run's order, resume it on a GPU: "
                                         r"gpunn.load_checkpoint\(path, device='cuda'\)"):
        gpunn.load_checkpoint(on_gpu, device="cpu").resume(X, Y, verbose=False, checkpoint=False)
    old_gpu = tmp_path / "old-gpu.npz"  # a GPU's from before the record: a GPU's order (audit37b r32: the CPU's)
    rewrite_meta(path, old_gpu, lambda meta: meta.update(device="cuda:0") or meta["training"].pop("shuffled_by"))
    with pytest.warns(UserWarning, match=r"old-gpu.npz stopped part-way .* whose rows gpunn's hash permutation on a "
                                         r"GPU ordered, and on cpu NumPy's permutation on the CPU orders them"):
        gpunn.load_checkpoint(old_gpu, device="cpu").resume(X, Y, verbose=False, checkpoint=False)
    old = tmp_path / "old.npz"  # from before the record: what orders them on the device it names (the CPU)
    rewrite_meta(path, old, lambda meta: meta["training"].pop("shuffled_by"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpunn.load_checkpoint(old, device="cpu").resume(X, Y, verbose=False, checkpoint=False)
        gpunn.load_checkpoint(path, device="cpu").resume(X, Y, verbose=False)
        assert _recorded(path, "position") == {"epoch": 2, "batch": 0, "partial_sum_sq": 0.0}
        rewrite_meta(path, on_gpu, lambda meta: meta.update(device="cuda:0") or
                     meta["training"].update(shuffled_by=SHUFFLED_ON["cuda"]))
        gpunn.load_checkpoint(on_gpu, device="cpu").resume(X, Y, epochs=3, verbose=False)  # at an epoch's end
    _stopped("cpu", path, interrupt_at, shuffle=False)
    assert "shuffled_by" not in gpunn.load_checkpoint(path, device="cpu").training  # no order to record
    rewrite_meta(path, on_gpu, lambda meta: meta.update(device="cuda:0"))  # nor a GPU's to differ (audit37b r31)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpunn.load_checkpoint(on_gpu, device="cpu").resume(X, Y, verbose=False, checkpoint=False)


def test_a_data_parallel_resume_part_way_where_another_permutation_orders_the_rows_warns_once(tmp_path, interrupt_at,
                                                                                                fake_cupy, monkeypatch):
    """The warning above is a note on the run, as the others a data-parallel run gives: every rank resuming the file
    warned it (P copies under mpiexec); now rank 0 alone. A CPU run's file resumed on two thread ranks, each on its
    own GPU of the stand-in (tests/thread_ranks.py)."""
    from thread_ranks import run_ranks

    path = tmp_path / "run.npz"
    X, Y = _stopped("cpu", path, interrupt_at)

    def resume(rank):
        gpunn.load_checkpoint(path, device=f"cuda:{rank}").resume(X, Y, verbose=False, checkpoint=False,
                                                                 distributed=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes, aborted = run_ranks(monkeypatch, 2, resume, timeout=30.0)
    assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
    assert [str(w.message).startswith(f"{path} stopped part-way through epoch 1") for w in caught] == [True], \
        [str(w.message) for w in caught]


# ---- on a GPU (tests/fakecupy under GPUNN_FAKE_CUPY=1) -------------------------------------------------------------
@pytest.mark.gpu
def test_the_cpu_and_a_gpu_order_an_epoch_otherwise_and_a_resume_part_way_on_the_other_says_so(gpu, tmp_path,
                                                                                             interrupt_at):
    """NumPy's permutation and gpunn's hash permutation give other orders for the same seed and epoch (so the
    checkpoint names the one that ordered a run): a CPU run stopped part-way through an epoch warns resumed on a
    GPU, and a GPU run does not."""
    cpu = gpunn.backend.resolve("cpu")
    for n in (50, 1000):
        orders = [b.to_host(rng.DeviceRNG(b, 7, "shuffle", 1).permutation(n)) for b in (cpu, gpu)]
        assert sorted(orders[1]) == list(range(n)) and list(orders[0]) != list(orders[1])
    on_cpu, on_gpu = tmp_path / "cpu.npz", tmp_path / "gpu.npz"
    X, Y = _stopped("cpu", on_cpu, interrupt_at)
    _stopped("cuda", on_gpu, interrupt_at)
    assert [_recorded(p, "shuffled_by") for p in (on_cpu, on_gpu)] == [SHUFFLED_ON["cpu"], SHUFFLED_ON["cuda"]]
    with pytest.warns(UserWarning, match=r"whose rows NumPy's permutation on the CPU ordered, and on cuda:0 gpunn's "
                                         rf"hash permutation on a GPU orders them: {OTHER_ORDER} .* resume it on the "
                                         r"CPU: gpunn.load_checkpoint\(path, device='cpu'\)"):
        gpunn.load_checkpoint(on_cpu, device="cuda").resume(X, Y, verbose=False, checkpoint=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpunn.load_checkpoint(on_gpu, device="cuda").resume(X, Y, verbose=False, checkpoint=False)
@pytest.mark.gpu
def test_a_gpu_run_resumed_on_the_cpu_or_a_cpu_run_on_a_gpu_is_refused(gpu, tmp_path):
    """Another kind of device draws other rows: load_checkpoint(path, device=...) of the other kind resumed silently
    on them; a CPU file from before the record too."""
    on_gpu, on_cpu = tmp_path / "gpu.npz", tmp_path / "cpu.npz"
    _fit("cuda", on_gpu)
    _fit("cpu", on_cpu)
    assert _recorded(on_gpu)["rng"] == GPU_NAME
    with pytest.raises(ValueError, match=r"drawn by gpunn's Philox4x32-10 on a GPU, and on cpu they are drawn by "
                                         r"NumPy's PCG64 on the CPU: other rows, not the run's. Resume it on a GPU: "
                                         r"gpunn.load_checkpoint\(path, device='cuda'\)$"):
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
