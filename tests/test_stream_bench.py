"""python -m gpunn.bench.stream's arithmetic and plumbing, on injected fits and timings (nothing timed): the rows it
trains on, the rates it prints, the suite's pairs, and the pieces bench/gpu_checks/streams.py takes from it for issue
12 (make_npy's rows, the pinned copy's GB/s, the peak RSS)."""
import functools
import json
import os
import subprocess

import numpy
import pytest

from gpunn.bench import stream

from cupy_calls import record_cupy_calls


def test_make_npy_writes_the_rows_datasets_make_returns(tmp_path):
    from gpunn import datasets

    stream.make_npy(tmp_path, 1000, 3, 2, seed=7)
    X, Y = numpy.load(tmp_path / "X.npy"), numpy.load(tmp_path / "Y.npy")
    want_x, want_y = datasets.make("teacher", 1000, 3, 2, seed=7, dtype="float32", device="cpu")  # make_npy's default
    assert X.dtype == Y.dtype == numpy.float32 and X.shape == (1000, 3) and Y.shape == (1000, 2)
    numpy.testing.assert_array_equal(X, want_x)
    numpy.testing.assert_array_equal(Y, want_y)


def test_make_npy_says_how_many_rows_it_made(tmp_path, monkeypatch, capsys):
    """Without --rows, make-npy makes its default 2,000,000 rows; its JSON line said "rows": null."""
    made = []

    def small(directory, rows, features, outputs):
        made.append(rows)
        for name in ("X.npy", "Y.npy"):
            numpy.save(tmp_path / name, numpy.zeros((4, 1), "float32"))

    monkeypatch.setattr(stream, "make_npy", small)
    for argv, rows in (([], 2_000_000), (["--rows", "123"], 123)):
        assert stream.main(["make-npy", str(tmp_path), *argv]) == 0
        line = json.loads(capsys.readouterr().out)
        assert line["rows"] == rows == made[-1] and line["bytes"] == 2 * (tmp_path / "X.npy").stat().st_size


def test_the_peak_rss_is_the_kernels_high_water_mark_in_bytes():
    """ru_maxrss is in KiB on Linux: about /proc's VmHWM (kB there means KiB), not 1024 times it or a 1024th. Not
    equal, nor ordered: ru_maxrss also keeps the high-water mark of the memory this process had before its exec
    (the forked parent's pages: pytest's main process for an xdist worker), and the kernel's per-thread RSS
    counters are folded into VmHWM in batches (a full run saw ru_maxrss 104 KiB above VmHWM)."""
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh.read().splitlines() if line.startswith("VmHWM:")) * 1024
    assert hwm / 4 <= stream.peak_rss_bytes() <= hwm * 4


def test_the_peak_rss_is_ru_maxrss_read_as_kib(monkeypatch):
    import types

    monkeypatch.setattr(stream.resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=3))
    assert stream.peak_rss_bytes() == 3 * 1024


@pytest.mark.parametrize("rows, sizes", [(800, [400, 400]), (1000, [400, 400, 200]), (3000, [400] * 7 + [200])])
def test_a_prefix_of_the_npy_pair_is_its_first_whole_chunks_and_the_last_cut(tmp_path, monkeypatch, rows, sizes):
    import types

    from gpunn import data

    numpy.save(tmp_path / "X.npy", numpy.zeros((3000, 2), "float32"))
    numpy.save(tmp_path / "Y.npy", numpy.zeros((3000, 1), "float32"))
    monkeypatch.setattr(data, "npy", functools.partial(data.npy, chunk_rows=400))
    args = types.SimpleNamespace(mode="npy", dir=str(tmp_path), window=16, standardize=False)
    source = stream._source(args, rows)
    assert list(map(int, source.chunk_sizes)) == sizes and source.rows == rows


def test_the_cpu_seconds_are_the_processs_user_and_system_time():
    """samples_per_cpu_s's CPU time: user and system (the reader thread's pread, the kernel's page copies)."""
    start = os.times().system
    with open("/dev/urandom", "rb") as fh:  # system time: the kernel makes the bytes
        for _ in range(20000):
            if os.times().system - start > 0.1:
                break
            fh.read(1 << 20)
    times, cpu = os.times(), stream._cpu_seconds()
    assert times.system - start > 0.1 and cpu == pytest.approx(times.user + times.system, abs=0.03)


def test_the_pinned_copy_bandwidth_is_the_bytes_copied_between_its_events_over_their_time(fake_cupy, monkeypatch):
    """copy_bandwidth's GB/s: the bytes of the copies between its two events over the time between them, with
    the events on the stream that made the copies (on another they would time nothing of them). The stand-in's
    event time is injected: 2 ms per copy made between two events."""
    from gpunn import backend

    cp, copies, events = fake_cupy, [], []
    set_, record = cp.ndarray.set, cp.cuda.Event.record

    def counted_set(self, arr, stream=None):
        copies.append((arr.nbytes, stream))
        return set_(self, arr, stream=stream)

    def counted_record(self, stream=None):
        self._copies_before = len(copies)
        events.append(stream)
        return record(self, stream)

    monkeypatch.setattr(cp.ndarray, "set", counted_set)
    monkeypatch.setattr(cp.cuda.Event, "record", counted_record)
    monkeypatch.setattr(cp.cuda, "get_elapsed_time", lambda a, b: 2.0 * (b._copies_before - a._copies_before))
    gpu = backend.resolve("cuda")
    with gpu.use():
        gbps = stream.copy_bandwidth(gpu, 1000, 33, repeats=3)
    window = 1000 * 33 * 4
    assert gbps == pytest.approx(window / 2e-3 / 1e9)
    assert {n for n, _ in copies} == {window} and len(events) == 2
    assert all(on is not None and on is copies[-1][1] for on in events)  # the copies' stream, recorded on


class _FakeFits:
    """gpunn.bench.runners.timed_fit as run() calls it: the warm-up fit, then the timed one, whose history is
    injected (two epochs of 0.5 s and 1.5 s); what each was given is kept."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, *data, **options):
        self.calls.append((data, options))
        n = options["epochs"]
        return {"time_s": [0.5, 1.5][:n], "samples_per_s": [7.0, 5.0][:n], "loss": [3.0, 2.0][:n]}


def _run(monkeypatch, *argv):
    from gpunn.bench import runners

    fits, clock = _FakeFits(), iter([10.0, 14.0])  # 4 CPU seconds in the timed fit
    monkeypatch.setattr(runners, "timed_fit", fits)
    monkeypatch.setattr(stream, "_cpu_seconds", lambda: next(clock))
    monkeypatch.setattr(stream, "peak_rss_bytes", lambda: 3 * 2**30)
    result = stream.run(stream_args(*argv))
    return result, fits.calls


def stream_args(*argv):
    """main's arguments, parsed by main's own parser (main stopped before it runs anything)."""
    seen = []
    real_run = stream.run
    try:
        stream.run = lambda args: seen.append(args) or {}
        device = [] if "--device" in argv else ["--device", "cpu"]
        stream.main([*argv, "--hidden", "8", "--batch-size", "64", *device])
    finally:
        stream.run = real_run
    return seen[0]


def test_a_runs_rates_are_its_rows_times_its_epochs_over_the_fits_seconds(monkeypatch):
    from gpunn import datasets

    result, calls = _run(monkeypatch, "synthetic-memory", "--rows", "640", "--epochs", "2")
    (warm, warm_options), (data, options) = calls
    # the warm-up: one epoch of two batches of the timed size (the kernels compiled, the workspaces that size)
    assert warm[0].shape == (128, 32) and (warm_options["epochs"], warm_options["batch_size"]) == (1, 64)
    assert options["epochs"] == 2 and options["batch_size"] == 64
    assert data[0].shape == (640, 32) and data[1].shape == (640, 1)
    # the rows of the synthetic stream's task (seed 0), made in memory
    numpy.testing.assert_array_equal(data[0], datasets.make("teacher", 640, 32, 1, seed=0, device="cpu")[0])
    assert (result["rows"], result["epochs"], result["hidden"]) == (640, 2, [8])
    assert result["seconds"] == 2.0 and result["samples_per_s"] == 640 * 2 / 2.0
    assert result["cpu_seconds"] == 4.0 and result["samples_per_cpu_s"] == 640 * 2 / 4.0
    assert result["epoch_samples_per_s"] == [7.0, 5.0] and result["loss"] == 2.0 and result["peak_rss_gib"] == 3.0


def test_without_rows_the_synthetic_stream_is_ten_million_rows_and_memory_reads_every_row(tmp_path, monkeypatch):
    assert stream_args("synthetic").rows == 10_000_000
    X = numpy.arange(300 * 2, dtype="float32").reshape(300, 2)
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X[:, :1])
    result, calls = _run(monkeypatch, "memory", str(tmp_path))
    assert result["rows"] == 300 and calls[1][0][0].shape == (300, 2)


def test_the_timed_fit_starts_from_the_models_fresh_weights_not_the_warm_ups(monkeypatch):
    from gpunn import MLP
    from gpunn.bench import runners

    class Training(_FakeFits):
        def __call__(self, model, *data, **options):
            self.weights = getattr(self, "weights", []) + [model.params.copy()]
            model.params[...] += 1.0  # what the fit's steps do to them
            return super().__call__(model, *data, **options)

    fits = Training()
    monkeypatch.setattr(runners, "timed_fit", fits)
    monkeypatch.setattr(stream, "_cpu_seconds", iter([10.0, 14.0]).__next__)
    stream.run(stream_args("synthetic-memory", "--rows", "640"))
    fresh = MLP([32, 8, 1], device="cpu", seed=0).params
    assert len(fits.weights) == 2
    numpy.testing.assert_array_equal(fits.weights[0], fresh)
    numpy.testing.assert_array_equal(fits.weights[1], fresh)


@pytest.mark.parametrize("mode", ["npy", "memory"])
def test_npy_and_memory_train_on_the_first_rows_of_the_pair(tmp_path, monkeypatch, mode):
    """--rows on npy/memory: a prefix of the files (npy: whole chunks, the last one cut), the same rows both ways."""
    from gpunn import data

    X = numpy.arange(3000 * 2, dtype="float32").reshape(3000, 2)
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X[:, :1] * 2)
    monkeypatch.setattr(data, "npy", functools.partial(data.npy, chunk_rows=400))  # 1000 rows: 2.5 chunks
    result, calls = _run(monkeypatch, mode, str(tmp_path), "--rows", "1000")
    (train, options) = calls[1]
    if mode == "npy":
        source = train[0]
        assert max(source.chunk_sizes) <= 400  # whole chunks, the last one cut, none longer than a chunk
        source.bind("cpu", "float32")
        got = numpy.concatenate([b[0] for b in source.batches(0, 64, 0)])
    else:
        got = train[0]
    assert result["rows"] == 1000 and got.shape == (1000, 2)
    numpy.testing.assert_array_equal(numpy.sort(got[:, 0]), X[:1000, 0])
    assert result["samples_per_s"] == 1000 * 1 / 0.5  # one epoch of 0.5 s


@pytest.mark.parametrize("mode", ["npy", "memory", "synthetic", "synthetic-memory"])
def test_standardize_trains_on_standardized_rows_with_the_statistics_taken_before_the_timing(tmp_path, monkeypatch,
                                                                                             mode):
    """--standardize, as gpunn train --standardize: a source made with standardize=True and bound (its statistics
    pass done) before the timed fit, which then standardizes each window as it trains; in-memory arrays
    standardized once, in place, before it. Either way the rows trained on have columns of mean 0 and spread 1."""
    rng = numpy.random.default_rng(0)
    X = rng.normal(5.0, 3.0, (1000, 2)).astype("float32")
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", X[:, :1] * 2 + 7)
    where = [str(tmp_path)] if mode in ("npy", "memory") else []
    result, calls = _run(monkeypatch, mode, *where, "--rows", "1000", "--features", "2", "--standardize")
    (train, _) = calls[1]
    if train[1] is None:  # a source: bound by the set-up, so fit's bind keeps its statistics
        source = train[0]
        assert source.standardize and source.standardizer is not None
        train = [numpy.concatenate(part) for part in zip(*source.batches(0, 64, 0))]
    assert result["standardize"] is True and result["rows"] == 1000
    for A in train:
        A = numpy.asarray(A, "float64")
        numpy.testing.assert_allclose(A.mean(axis=0), 0, atol=1e-4)
        numpy.testing.assert_allclose(A.std(axis=0), 1, rtol=1e-4)
    assert _run(monkeypatch, mode, *where, "--rows", "1000", "--features", "2")[0]["standardize"] is False


def test_a_runs_json_line_is_appended_to_the_file(tmp_path, monkeypatch, capsys):
    """--json appends (the suite's runs share one file)."""
    from gpunn.bench import runners

    monkeypatch.setattr(runners, "timed_fit", _FakeFits())
    path = tmp_path / "runs.jsonl"
    for rows in (64, 128):
        assert stream.main(["synthetic-memory", "--rows", str(rows), "--hidden", "4", "--batch-size", "64",
                            "--device", "cpu", "--json", str(path)]) == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["rows"] for r in lines] == [64, 128]
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == lines[-1]


def test_the_suite_pairs_each_source_with_the_same_rows_in_memory(tmp_path, monkeypatch, capsys):
    """suite: each run in its own process (their JSON lines injected here), the .npy pair made when missing, and
    each source's samples/s over its in-memory peer's."""
    rates = {"synthetic-memory": (200_000, 2.0), "synthetic": (50_000, 1.0), "npy": (90_000, 1.5),
             "memory": (100_000, 2.5), "make-npy": None}
    commands = []

    def fake_run(command, **kwargs):
        mode = command[3]
        commands.append(command[3:])
        rate = rates[mode]
        line = {"mode": mode} if rate is None else {"mode": mode, "samples_per_s": rate[0], "peak_rss_gib": rate[1]}
        if mode == "npy":
            line["h2d_gbps_pinned"] = 12.5
        return subprocess.CompletedProcess(command, 0, json.dumps(line) + "\n", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    path = tmp_path / "suite.jsonl"
    assert stream.main(["suite", str(tmp_path), "--stream-rows", "3000", "--memory-rows", "2000", "--npy-rows", "1000",
                        "--epochs", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {c[0]: c[c.index("--rows") + 1] for c in commands}
    assert [c[0] for c in commands] == ["synthetic-memory", "synthetic", "make-npy", "npy", "memory"]
    assert rows == {"synthetic-memory": "2000", "synthetic": "3000", "make-npy": "1000", "npy": "1000", "memory": "1000"}
    assert all(c[c.index("--json") + 1] == str(path) and c[c.index("--epochs") + 1] == "2" for c in commands)
    assert all(c[1] == str(tmp_path) for c in commands if c[0] in ("make-npy", "npy", "memory"))
    assert not any("--standardize" in c for c in commands)
    assert ("stream: 50,000 samples/s = 0.25x in memory (200,000); peak RSS 1.00 GiB (in memory 2.00 GiB)\n"
            in out)
    assert ("npy: 90,000 samples/s = 0.90x in memory (100,000); peak RSS 1.50 GiB (in memory 2.50 GiB); "
            "H2D 12.5 GB/s pinned\n" in out)
    # a pair already there, with enough rows, is not made again
    numpy.save(tmp_path / "X.npy", numpy.zeros((1000, 1), "float32"))
    commands.clear()
    stream.main(["suite", str(tmp_path), "--npy-rows", "1000"])
    assert "make-npy" not in [c[0] for c in commands]
    numpy.save(tmp_path / "X.npy", numpy.zeros((999, 1), "float32"))
    commands.clear()
    stream.main(["suite", str(tmp_path), "--npy-rows", "1000"])
    assert "make-npy" in [c[0] for c in commands]
    commands.clear()
    stream.main(["suite", str(tmp_path), "--npy-rows", "1000", "--standardize"])  # each run standardizes
    assert all("--standardize" in c for c in commands if c[0] != "make-npy") and len(commands) == 5


def test_a_gpu_run_adds_what_the_pool_holds_and_a_windows_pinned_copy_rate(fake_cupy, monkeypatch):
    """On tests/fakecupy's GPU: the pinned copy timed is one window of the stream, 16 chunks of 65,536 rows of
    the features and the outputs (copy_bandwidth recorded, not run); what CuPy's pool holds in GiB, its
    total_bytes(): named pool_held_gib, as it is not the peak in use (it was pool_peak_gib)."""
    copies = []
    monkeypatch.setattr(stream, "copy_bandwidth", lambda backend, rows, columns: copies.append((rows, columns)) or 9.5)
    monkeypatch.setattr(fake_cupy.get_default_memory_pool(), "total_bytes", lambda: 2**30)
    result, calls = _run(monkeypatch, "synthetic-memory", "--rows", "640", "--features", "6", "--outputs", "2",
                         "--device", "cuda")
    assert copies == [(16 * 65536, 8)] and result["h2d_gbps_pinned"] == 9.5 and result["pool_held_gib"] == 1.0 and "pool_peak_gib" not in result
    assert result["device"].startswith("cuda")


@pytest.mark.parametrize("mode", ["synthetic", "synthetic-memory"])
def test_standardize_on_a_gpu_standardizes_on_the_device(fake_cupy, monkeypatch, mode):
    """--standardize on tests/fakecupy's GPU: the in-memory arrays standardized where they are, on the device; the
    source bound to the device, its statistics taken there, before the timed fit."""
    monkeypatch.setattr(stream, "copy_bandwidth", lambda backend, rows, columns: 9.5)
    result, calls = _run(monkeypatch, mode, "--rows", "640", "--features", "3", "--device", "cuda", "--standardize")
    (train, _) = calls[-1]  # the timed fit (after the warm-ups: a spare model's too, on a GPU)
    if train[1] is None:
        source = train[0]
        assert source.backend.is_gpu and source.standardizer is not None
        train = [numpy.concatenate([source.backend.to_host(b[k]) for b in source.batches(0, 64, 0)]) for k in (0, 1)]
    else:
        assert all(isinstance(A, fake_cupy.ndarray) for A in train)
        train = [A.get() for A in train]
    for A in train:
        numpy.testing.assert_allclose(numpy.asarray(A, "float64").mean(axis=0), 0, atol=1e-4)


def first_calls_in_the_timed_fit(fake_cupy, monkeypatch, *argv):
    """(the CuPy calls python -m gpunn.bench.stream ``argv`` makes for the first time inside its timed fit, the last
    one; the operations it called; the timed fit's model; its source's statistics as that fit started), on
    tests/fakecupy's GPU with the fits run. A call is keyed as CuPy keys the kernel it compiles at a first call
    (cupy_calls.record_cupy_calls)."""
    from gpunn.bench import runners

    seen, fits = record_cupy_calls(fake_cupy, monkeypatch), []

    def timed(model, *data, **options):
        start, statistics = len(seen), getattr(data[0], "standardizer", None)  # a source's, from the set-up
        try:
            return runners.timed_fit.__wrapped__(model, *data, **options)
        finally:
            fits.append((start, len(seen), model, statistics))

    timed.__wrapped__ = runners.timed_fit
    monkeypatch.setattr(runners, "timed_fit", timed)
    monkeypatch.setattr(stream, "copy_bandwidth", lambda backend, rows, columns: 9.5)
    try:
        stream.run(stream_args(*argv, "--device", "cuda"))
    finally:
        monkeypatch.setattr(runners, "timed_fit", timed.__wrapped__)
    start, end, model, statistics = fits[-1]
    return set(seen[start:end]) - set(seen[:start]), {what for what, _ in seen}, model, statistics


@pytest.mark.parametrize("standardize", [False, True], ids=["plain", "standardized"])
@pytest.mark.parametrize("mode", ["npy", "synthetic"])
def test_on_a_gpu_a_sources_timed_fit_makes_no_first_cupy_call(tmp_path, fake_cupy, monkeypatch, mode, standardize):
    """CuPy compiles a kernel at an operation's first call with given dtypes and dimensions (kept in
    ~/.cupy/kernel_cache for later processes, none on a fresh GPU machine): a first call inside the timed fit times
    a compile. A source's path makes calls the in-memory warm-up never makes: each window's shuffle, the synthetic
    task's generation (plain: first run in the timed epoch; standardized: in the statistics pass), and standardized,
    each window's transform, gpunn.data.overflow's check and its flag read with the loss. Both compiled in the first
    timed epoch, and --standardize's cost against the plain run (CLOSING18's line for the next GPU run) was their
    difference. Now a spare model fits two batches of a source made as the run's first: the timed fit makes none."""
    where = []
    if mode == "npy":
        X = numpy.random.default_rng(0).normal(5.0, 3.0, (640, 3)).astype("float32")
        numpy.save(tmp_path / "X.npy", X)
        numpy.save(tmp_path / "Y.npy", X[:, :1] * 2 + 7)
        where = [str(tmp_path)]
    first, ran, model, statistics = first_calls_in_the_timed_fit(
        fake_cupy, monkeypatch, mode, *where, "--rows", "640", "--features", "3", *["--standardize"][:standardize])
    # the window's shuffle ran, and standardized, the transform and the check
    assert ({"take", "ufunc subtract", "isfinite", "where", "ufunc minimum"} if standardize else {"take"}) <= ran
    assert first == set()
    if standardize:  # the timed model trained on the statistics the set-up took of the source (a model fit on a
        # standardized source keeps its statistics and scales a later source by them: a warm-up of this model would
        # have left the warm-up's)
        assert model.standardizer is statistics is not None


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["npy", "memory", "synthetic", "synthetic-memory"])
def test_standardize_runs_on_the_gpu_as_a_whole(gpu, tmp_path, monkeypatch, mode):
    """`python -m gpunn.bench.stream MODE --standardize --device cuda` with its fits (its warm-ups included) and its
    pinned copy run, at a few hundred rows, on the GPU: the tests above run on tests/fakecupy alone (not gpu-marked,
    so gpu_check.sh's tests stage leaves them out) or stand in for the fits, and gpu_check.sh does not run the path.
    Sources standardize each window on the device as they train (gpunn.data.overflow's check included), arrays once
    on the device before the fit; either way the rows trained have columns of mean 0 and spread 1, and the JSON
    line has a finite loss, rates and the copy's GB/s."""
    from gpunn.bench import runners

    trained, timed_fit = [], runners.timed_fit
    monkeypatch.setattr(runners, "timed_fit", lambda model, *data, **options: trained.append(data) or timed_fit(
        model, *data, **options))
    where = []
    if mode in ("npy", "memory"):
        stream.make_npy(str(tmp_path), 640, 3, 1, device=gpu)
        where = [str(tmp_path)]
    out = tmp_path / "run.jsonl"
    assert stream.main([mode, *where, "--rows", "640", "--features", "3", "--hidden", "8", "--batch-size", "64",
                        "--device", "cuda", "--standardize", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["standardize"] is True and result["rows"] == 640 and result["device"] == gpu.device
    assert numpy.isfinite(result["loss"]) and result["samples_per_s"] > 0 and result["h2d_gbps_pinned"] > 0
    data = trained[-1]  # the timed fit's, after the warm-ups
    if data[1] is None:
        source = data[0]
        assert source.backend == gpu and source.standardizer is not None
        data = [numpy.concatenate([gpu.to_host(b[k]) for b in source.batches(0, 64, 0)]) for k in (0, 1)]
    else:
        assert all(isinstance(A, gpu.xp.ndarray) for A in data)
        data = [gpu.to_host(A) for A in data]
    for A in data:
        assert A.shape[0] == 640
        numpy.testing.assert_allclose(numpy.asarray(A, "float64").mean(axis=0), 0, atol=1e-4)
        numpy.testing.assert_allclose(numpy.asarray(A, "float64").std(axis=0), 1, rtol=1e-4)
