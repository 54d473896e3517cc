"""Training behaviour: accuracy on a teacher task, determinism, every optimizer and schedule."""
import dataclasses
import sys
from pathlib import Path

import numpy
import pytest
import waiting

import gpunn
from gpunn import MLP, TrainingDiverged, datasets, metrics
from gpunn import SGD, Adam, AdamW, Momentum, Nesterov, Schedule
from gpunn.optim import OPTIMIZERS, SCHEDULE_FIELDS, SCHEDULES


@pytest.fixture(scope="module")
def teacher():
    X, Y = datasets.make("teacher", 6000, 8, noise=0.05, seed=11, device="cpu")
    return X[:5000], Y[:5000], X[5000:], Y[5000:]


def test_reaches_r2_095_on_held_out_teacher_data(teacher, device, to_host):
    X, Y, Xt, Yt = teacher
    model = MLP([8, 64, 64, 1], device=device, seed=0)
    model.fit(X, Y, epochs=30, batch_size=64, lr=3e-3, schedule="cosine", verbose=False)
    P = to_host(model.predict(Xt))
    assert metrics.r2(numpy, P, Yt) >= 0.95


def test_same_seed_gives_identical_weights(teacher):
    X, Y = teacher[0][:1000], teacher[1][:1000]
    runs = []
    for _ in range(2):
        model = MLP([8, 16, 1], activation="tanh", device="cpu", seed=5)
        model.fit(X, Y, epochs=3, batch_size=50, verbose=False)
        runs.append(model.params.copy())
    numpy.testing.assert_array_equal(runs[0], runs[1])
    other = MLP([8, 16, 1], activation="tanh", device="cpu", seed=6)
    assert not numpy.array_equal(other.params, runs[0])


def halving(schedule) -> Schedule:
    """The schedule named ``schedule`` given the options it reads of step_size 2 and gamma 0.5 (it refuses others)."""
    return Schedule(schedule, **{key: value for key, value in dict(step_size=2, gamma=0.5).items()
                                 if key in SCHEDULE_FIELDS[schedule]})


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_every_optimizer_and_schedule_decreases_the_loss(teacher, optimizer, schedule):
    X, Y = teacher[0][:2000], teacher[1][:2000]
    model = MLP([8, 32, 1], device="cpu", seed=1)
    before = model.loss(X, Y)
    history = model.fit(X, Y, epochs=4, batch_size=100, optimizer=optimizer,
                        schedule=halving(schedule), lr=0.01 if "adam" in optimizer else 0.05, verbose=False)
    assert history["loss"][-1] < history["loss"][0]
    assert model.loss(X, Y) < 0.8 * before


def test_schedules_shape_the_learning_rate(teacher):
    X, Y = teacher[0][:500], teacher[1][:500]
    lrs = {}
    for schedule in SCHEDULES:
        h = MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=4, lr=0.1, optimizer="sgd",
                                                      schedule=halving(schedule), verbose=False)
        lrs[schedule] = h["lr"]
    assert lrs["constant"] == [0.1] * 4
    assert lrs["step"] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert lrs["exponential"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert lrs["cosine"] == pytest.approx([0.1, 0.1 * (2 + 2**0.5) / 4, 0.05, 0.1 * (2 - 2**0.5) / 4])


def test_a_cosine_schedule_with_its_own_period_and_floor():
    """total_epochs sets the period (then the rate stays at the floor) and min_factor the floor:
    factor(e) = min_factor + (1 - min_factor) (1 + cos(pi min(e, T) / T)) / 2."""
    schedule = Schedule("cosine", total_epochs=4, min_factor=0.2)
    factors = [schedule.factor(epoch, 8) for epoch in range(6)]
    assert factors == pytest.approx([1.0, 0.2 + 0.8 * (2 + 2**0.5) / 4, 0.6, 0.2 + 0.8 * (2 - 2**0.5) / 4, 0.2, 0.2])


def test_optimizer_defaults_are_torchs():
    """The documented defaults (README: PyTorch's formulas; AdamW's decay 0.01 as torch.optim.AdamW), so a
    run ported from torch.optim by name trains the same."""
    assert Adam().config() == {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999,
                               "eps": 1e-8}
    assert AdamW().config() == {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999,
                                "eps": 1e-8}
    assert SGD().config() == {"name": "sgd", "lr": 1e-2, "weight_decay": 0.0, "momentum": 0.0, "nesterov": False}
    assert Momentum().momentum == Nesterov().momentum == 0.9 and Nesterov().nesterov


# (the optimizer as made, torch.optim's options written out: not read back from the object, so a default counts)
TORCH_CASES = {
    "SGD()": (lambda: SGD(), "sgd", dict(momentum=0.0, weight_decay=0.0, nesterov=False)),
    "SGD(decay)": (lambda: SGD(weight_decay=0.1), "sgd", dict(momentum=0.0, weight_decay=0.1, nesterov=False)),
    "Momentum()": (lambda: Momentum(), "sgd", dict(momentum=0.9, weight_decay=0.0, nesterov=False)),
    "Momentum(nesterov)": (lambda: Momentum(nesterov=True, weight_decay=0.1), "sgd",
                           dict(momentum=0.9, weight_decay=0.1, nesterov=True)),
    "Nesterov()": (lambda: Nesterov(momentum=0.8), "sgd", dict(momentum=0.8, weight_decay=0.0, nesterov=True)),
    "Adam()": (lambda: Adam(), "adam", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)),
    "Adam(beta1 0, decay)": (lambda: Adam(beta1=0, beta2=0.5, eps=1e-3, weight_decay=0.1), "adam",
                             dict(beta1=0.0, beta2=0.5, eps=1e-3, weight_decay=0.1, decoupled=False)),
    "AdamW()": (lambda: AdamW(), "adam", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True)),
    "AdamW(decay)": (lambda: AdamW(beta1=0.8, weight_decay=0.5), "adam",
                     dict(beta1=0.8, beta2=0.999, eps=1e-8, weight_decay=0.5, decoupled=True)),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_each_optimizers_steps_are_torch_optims_formulas(case):
    """Optimizer.step over four steps at changing rates is torch.optim's update (tests/torch_formulas, float64)
    with the options the object was made with: AdamW's decay decoupled, Adam's coupled, the bias corrections
    at steps 1, 2, 3, 4, Nesterov's look-ahead, a velocity only with momentum (mut17b's O36, O43, O45, O74)."""
    from torch_formulas import torch_adam, torch_sgd
    from gpunn.ops import Ops

    make, kind, options = TORCH_CASES[case]
    rng = numpy.random.default_rng(3)
    params = rng.standard_normal(40)
    optimizer = make().bind(params, Ops())
    assert set(optimizer.state) == ({"m", "v"} if kind == "adam" else {"velocity"} if options["momentum"] else set())
    want, moments = params.copy(), [numpy.zeros(40), numpy.zeros(40)]
    for t, lr in enumerate((0.05, 0.05, 0.02, 0.01), 1):  # a schedule's rates: lr is the step's, not the object's
        grads = rng.standard_normal(40)
        optimizer.step(params, grads, lr)
        if kind == "sgd":
            want, moments[0] = torch_sgd(want, grads, moments[0], lr, options["momentum"], options["weight_decay"],
                                         options["nesterov"])
        else:
            want, *moments = torch_adam(want, grads, *moments, t, lr, **options)
        numpy.testing.assert_allclose(params, want, rtol=1e-12, atol=1e-14)
    assert optimizer.steps == 4


def test_lr_given_with_an_optimizer_object_replaces_its_rate(teacher):
    X, Y = teacher[0][:200], teacher[1][:200]
    history = MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, optimizer=SGD(lr=0.5),
                                                        lr=0.01, verbose=False)
    assert history["lr"] == [0.01]


def test_weight_decay_shrinks_weights(teacher):
    X, Y = teacher[0][:500], teacher[1][:500]
    norms = []
    for decay in (0.0, 0.5):
        model = MLP([8, 16, 1], device="cpu", seed=0)
        model.fit(X, Y, epochs=5, batch_size=32, optimizer=AdamW(lr=0.01, weight_decay=decay), verbose=False)
        norms.append(float(numpy.linalg.norm(model.params)))
    assert norms[1] < 0.9 * norms[0]


def test_divergence_stops_with_an_actionable_error(teacher):
    X, Y = teacher[0][:500], teacher[1][:500] * 1e30
    model = MLP([8, 16, 1], device="cpu", seed=0)
    with pytest.raises(TrainingDiverged, match=r"epoch 1 .*lower the learning rate.*standardize the targets"):
        model.fit(X, Y, epochs=3, optimizer="sgd", lr=10.0, verbose=False)


def test_a_diverging_run_reports_training_diverged_alone_not_numpys_overflow_warnings(teacher):
    """Trainer.run: NumPy's overflow and invalid-value warnings on the way to a diverged epoch are noise, the
    report is TrainingDiverged (mut17b's L68: without the errstate the run warned "overflow encountered")."""
    import warnings

    X, Y = teacher[0][:500], teacher[1][:500] * 1e30
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(TrainingDiverged):
            MLP([8, 16, 1], device="cpu", seed=0).fit(X, Y, epochs=3, optimizer="sgd", lr=10.0, verbose=False)


def test_history_records_loss_and_throughput(teacher):
    X, Y = teacher[0][:500], teacher[1][:500]
    h = MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=64, verbose=False)
    assert h["epoch"] == [1, 2, 3]
    assert all(s > 0 for s in h["samples_per_s"]) and len(h["loss"]) == 3


def test_verbose_false_prints_nothing_and_verbose_shows_progress(teacher, terminal_stderr):
    capsys = terminal_stderr
    X, Y = teacher[0][:300], teacher[1][:300]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, verbose=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, verbose=True)
    err = capsys.readouterr().err
    assert "loss=" in err and "rows/s" in err and "epoch 2/2" in err
    assert "600/600" in err  # counted per batch: 3 batches x 2 epochs of 100 rows


def test_progress_moves_every_batch_not_only_every_epoch(teacher):
    from gpunn.training.callbacks import ProgressBar

    X, Y = teacher[0][:1000], teacher[1][:1000]
    seen = []

    class Watch(ProgressBar):
        def on_batch_end(self, trainer, batch):
            super().on_batch_end(trainer, batch)
            seen.append(self.bar.n)

    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=300, verbose=False,
                                            callbacks=[Watch(lines=False)])
    assert seen == [300, 600, 900, 1000, 1300, 1600, 1900, 2000]


def test_the_bar_shows_the_time_left_in_the_epoch_when_the_run_has_several(teacher, terminal_stderr, monkeypatch):
    capsys = terminal_stderr
    from gpunn.training.callbacks import ProgressBar

    monkeypatch.setattr(ProgressBar, "eta_every_s", 0.0)  # at every batch, rather than every second
    X, Y = teacher[0][:600], teacher[1][:600]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, verbose=True)
    err = capsys.readouterr().err
    assert "epoch_eta=00:00" in err and "rows/s" in err
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=100, verbose=True)
    assert "epoch_eta" not in capsys.readouterr().err  # one epoch: the bar's own time left is the epoch's


def test_progress_in_a_log_is_one_line_per_epoch_without_carriage_returns(teacher, capsys, progress_clock):
    """stderr not a terminal (Slurm, nohup, > log 2>&1): a line per epoch with what the bar shows, no redraws."""
    X, Y = teacher[0][:600], teacher[1][:600]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=100, validation_fraction=0.2)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"train [cpu] epoch {e}/3" for e in (1, 2, 3)]
    for line in lines:
        for fact in ("loss=", "val_loss=", "val_mae=", "val_r2=", "rows/s", "elapsed ", "left "):
            assert fact in line, (fact, line)
    assert lines[-1].endswith("left 00:00")


def test_a_long_epoch_in_a_log_also_gets_a_line_every_line_every_s(teacher, capsys, monkeypatch):
    from gpunn.training.callbacks import ProgressBar

    monkeypatch.setattr(ProgressBar, "line_every_s", 0.0)  # at every batch, rather than every minute
    X, Y = teacher[0][:600], teacher[1][:600]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=250)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(": ")[1].split(" rows")[0] for line in lines if "epoch left" in line] == ["250/600", "500/600",
                                                                                             "600/600"] * 2
    assert all("rows/s" in line for line in lines) and sum("loss=" in line for line in lines) == 2


def test_the_progress_says_when_the_epochs_pass_over_the_held_out_rows_is_running(teacher, capsys, monkeypatch):
    """The bar stood full (a log of a long epoch silent after its last line) while a held-out source of many rows was
    read: on_validation_begin, between an epoch's last batch and its end, now puts "validating" in the bar's title,
    which the epoch's end takes back out, and writes a line in a log whose epoch wrote lines on the way."""
    from gpunn.training.callbacks import ProgressBar

    X, Y = teacher[0][:600], teacher[1][:600]
    titles = []

    class Watch(ProgressBar):
        def on_validation_begin(self, trainer, epoch):
            super().on_validation_begin(trainer, epoch)
            titles.append(self.bar.desc.removesuffix(": "))  # (tqdm adds ": ")

        def on_epoch_end(self, trainer, epoch, logs):
            super().on_epoch_end(trainer, epoch, logs)
            titles.append(self.bar.desc.removesuffix(": "))  # (tqdm adds ": ")

    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=250, verbose=False, validation_fraction=0.2,
                                            callbacks=[Watch(lines=False)])
    assert titles == ["train [cpu] epoch 1/2 validating", "train [cpu] epoch 1/2",
                      "train [cpu] epoch 2/2 validating", "train [cpu] epoch 2/2"]
    capsys.readouterr()
    monkeypatch.setattr(ProgressBar, "line_every_s", 0.0)  # every epoch is a long one
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=250, validation_fraction=0.2)
    lines = capsys.readouterr().err.splitlines()
    said = [n for n, line in enumerate(lines) if line.endswith(": validating on the held-out rows")]
    assert [lines[n].split(":")[0] for n in said] == ["train [cpu] epoch 1/2", "train [cpu] epoch 2/2"]
    assert all("val_loss=" in lines[n + 1] for n in said)  # each just before its epoch's line


def test_lines_or_the_bar_can_be_forced(teacher, terminal_stderr, monkeypatch, progress_clock):
    from gpunn.training import progress
    from gpunn.training.callbacks import ProgressBar

    X, Y = teacher[0][:300], teacher[1][:300]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, verbose=False, callbacks=[ProgressBar(lines=True)])
    err = terminal_stderr.readouterr().err
    assert "\r" not in err and len(err.splitlines()) == 2
    monkeypatch.setattr(progress, "draws_bar", lambda stream: False)
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, verbose=False, callbacks=[ProgressBar(lines=False)])
    assert "\r" in terminal_stderr.readouterr().err
    with pytest.raises(TypeError, match="lines must be True or False or None"):
        ProgressBar(lines="yes")


@pytest.mark.parametrize("lines", [True, False])
def test_a_cold_numba_cache_is_said_once_while_the_first_batch_compiles(teacher, terminal_stderr, monkeypatch, lines):
    """Where Numba's cache holds no kernel (the first run after an install), the first batch compiles them (12 s on
    2 cores) while the progress stood still: it says so, once, as the first compile starts. Numba's "numba:compile"
    event is fired here by hand, as a cold cache fires it for each kernel it compiles (nested: a kernel compiles
    those it calls; a warm cache loads them with none), rather than compiling for seconds."""
    numba_event = pytest.importorskip("numba.core.event")
    from gpunn.training.callbacks import Callback, ProgressBar

    monkeypatch.setattr(ProgressBar, "says_compiling", True)  # off for the other tests (tests/conftest.py)
    said = "train [cpu]: compiling CPU kernels (first run only: Numba caches them)..."

    def compile_kernel():
        with numba_event.trigger_event("numba:compile", data={"dispatcher": None, "args": (), "return_type": None}):
            with numba_event.trigger_event("numba:compile", data={"dispatcher": None, "args": (), "return_type": None}):
                pass

    class ColdCache(Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 0:
                compile_kernel()

        def on_batch_end(self, trainer, batch):
            if batch == 0:
                compile_kernel()  # and another kernel, the next one called

    X, Y = teacher[0][:300], teacher[1][:300]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, verbose=False,
                                            callbacks=[ColdCache(), ProgressBar(lines=lines)])
    err = terminal_stderr.readouterr().err
    assert err.count("compiling") == 1 and said in [part.strip() for part in err.replace("\r", "\n").split("\n")]
    if lines:  # before the first epoch's line, which it does not count as one
        assert [line.split(":")[0] for line in err.splitlines()] == ["train [cpu]", "train [cpu] epoch 1/2",
                                                                     "train [cpu] epoch 2/2"]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, verbose=False,
                                            callbacks=[ProgressBar(lines=lines)])  # a warm cache: no event
    compile_kernel()  # after the fits: nothing listens
    assert "compiling" not in terminal_stderr.readouterr().err


@pytest.mark.parametrize("cold", [False, True])
def test_an_epoch_line_says_the_seconds_numba_took_in_it(teacher, terminal_stderr, monkeypatch, cold):
    """A process's first epoch waits on Numba's start and its kernels' loads from the cache (0.6 s at load 2, every
    run: bench/first_epoch.py), or their compiles where the cache holds none: the epoch's line says those seconds
    beside its rate, which still counts them. Numba holds its compiler lock for them, and fires its
    "numba:compiler_lock" event (nested, from any thread) and, for a compile, "numba:compile" inside it; fired here
    by hand on a clock that stands still but for them."""
    numba_event = pytest.importorskip("numba.core.event")
    import types

    from gpunn.training import callbacks, numba_watch, progress

    monkeypatch.setattr(callbacks.ProgressBar, "says_compiling", True)  # off for the other tests (tests/conftest.py)
    now = [0.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(numba_watch, "time", progress.time)
    watches, numba_seconds = [], progress.numba_seconds  # the fit's watch, kept to read after the fit
    monkeypatch.setattr(progress, "numba_seconds", lambda *args: watches.append(numba_seconds(*args)) or watches[-1])

    def load_kernels():
        with numba_event.trigger_event("numba:compiler_lock"):
            now[0] += 0.5
            with numba_event.trigger_event("numba:compiler_lock"):  # a kernel's load takes it again inside
                now[0] += 0.24
                if cold:
                    with numba_event.trigger_event("numba:compile", data={"dispatcher": None, "args": (),
                                                                          "return_type": None}):
                        pass

    class FirstRun(callbacks.Callback):
        def on_batch_end(self, trainer, batch):
            now[0] += 0.001  # training
            if trainer.state.epoch == 0 and batch == 0:
                load_kernels()

    X, Y = teacher[0][:300], teacher[1][:300]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=100, verbose=False,
                                            callbacks=[FirstRun(), callbacks.ProgressBar(lines=True)])
    lines = terminal_stderr.readouterr().err.splitlines()
    if cold:  # the compile's note first (test_a_cold_numba_cache_is_said_once_while_the_first_batch_compiles)
        assert lines.pop(0) == "train [cpu]: compiling CPU kernels (first run only: Numba caches them)..."
    first, second = lines
    assert first.startswith("train [cpu] epoch 1/2: ") and second.startswith("train [cpu] epoch 2/2: ")
    assert first.endswith("left 00:00 (0.74s of it in Numba: its start and the CPU kernels' compile, first run only)"
                          if cold else
                          "left 00:00 (0.74s of it in Numba: its start and the CPU kernels' load, once per process)")
    assert "404 rows/s" in first  # 300 rows in 0.743 s: the rate counts them
    assert second.endswith("rows/s, elapsed 00:00, left 00:00")
    assert len(watches) == 1 and watches[0]() == pytest.approx(0.74)
    load_kernels()  # after the fit: nothing listens (the fit's watch stopped: its seconds stand)
    assert watches[0]() == pytest.approx(0.74)


def test_the_time_left_leaves_out_the_seconds_numba_took_once(teacher, terminal_stderr, monkeypatch):
    """A first run's Numba compile (12 s on 2 cores) happens once, in the first batch, but the time left was the rows
    left at the run's rate with those seconds in it: a 300,000-row run of 0.2 s epochs said "left 00:25" after its
    first, and "left 00:06" after its second with 0.2 s to go. The rate it is taken at leaves them out now (the
    epoch's own rate, beside it, still counts them). Epochs of 3 batches of 1 s here, 12 s of Numba in the first."""
    numba_event = pytest.importorskip("numba.core.event")
    import types

    from gpunn.training import callbacks, numba_watch, progress

    monkeypatch.setattr(callbacks.ProgressBar, "says_compiling", True)
    now = [0.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(numba_watch, "time", progress.time)

    class FirstRun(callbacks.Callback):
        def on_batch_end(self, trainer, batch):
            now[0] += 1.0  # training
            if trainer.state.epoch == 0 and batch == 0:
                with numba_event.trigger_event("numba:compiler_lock"):
                    now[0] += 12.0
                    with numba_event.trigger_event("numba:compile", data={"dispatcher": None, "args": (),
                                                                          "return_type": None}):
                        pass

    X, Y = teacher[0][:300], teacher[1][:300]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=3, batch_size=100, verbose=False,
                                            callbacks=[FirstRun(), callbacks.ProgressBar(lines=True)])
    lines = terminal_stderr.readouterr().err.splitlines()[1:]  # after the compile's note
    assert lines[0].endswith("; 20.0 rows/s, elapsed 00:15, left 00:06 (12.00s of it in Numba: its start and the "
                             "CPU kernels' compile, first run only)")  # 2 epochs of 3 s left, not 2 of 15 s
    assert lines[1].endswith("; 100 rows/s, elapsed 00:18, left 00:03")
    assert lines[2].endswith("; 100 rows/s, elapsed 00:21, left 00:00")


def test_a_fit_ending_while_another_thread_imports_numba_leaves_no_listener(monkeypatch):
    """A fit's Numba seconds wait for Numba's import (gpunn.ops.lazynumba.on_import) where it has not happened: a
    fit ending (its watch's stop()) after lazynumba.load on another thread took the watch's hook, before it called
    it, must not leave the watch listening to Numba's events for the rest of the process. Played in that order
    with events: the importing thread stops between taking the hook and calling it while the fit's thread ends."""
    numba_event = pytest.importorskip("numba.core.event")
    import threading

    from gpunn.ops import lazynumba
    from gpunn.training import numba_watch

    watch, taken, ended = numba_watch._NumbaWatch(None), threading.Event(), threading.Event()

    class Hooks(list):  # lazynumba's hooks: the fit ends between load()'s pop of the watch's hook and its call
        def pop(self, index=-1):
            hook = super().pop(index)
            taken.set()
            assert ended.wait(60)
            return hook

    monkeypatch.setattr(lazynumba, "_HOOKS", Hooks([watch.imported]))
    registered = {kind: list(numba_event._registered[kind]) for kind in numba_watch._NUMBA_EVENTS}
    importing = threading.Thread(target=lazynumba.load)  # a kernel's first call, which imports Numba
    importing.start()
    try:
        assert taken.wait(60)
        watch.stop()  # the fit ends
        ended.set()
        importing.join(60)
        assert not importing.is_alive()
        assert {kind: list(numba_event._registered[kind]) for kind in numba_watch._NUMBA_EVENTS} == registered
        assert watch.listener is None
    finally:
        ended.set()
        for kind in numba_watch._NUMBA_EVENTS:  # not to leave it listening in the other tests where this fails
            numba_event._registered[kind][:] = registered[kind]


# a fresh process (Numba not imported): on_import registers a hook while another thread's kernel call imports Numba
ON_IMPORT_WHILE_ANOTHER_THREAD_IMPORTS = r"""
import sys, threading
from gpunn.ops import lazynumba
from gpunn.training import numba_watch
assert "numba" not in sys.modules


class Hooks(list):  # lazynumba's hooks: a kernel's first call on another thread imports Numba, start to end, while
    def append(self, hook):  # on_import registers this hook (lazynumba.load: the import, then the hooks' pops)
        loading = threading.Thread(target=lazynumba.load)
        loading.start()
        loading.join()
        super().append(hook)


lazynumba._HOOKS = Hooks()
watch = numba_watch.numba_seconds()  # a fit starts
print(watch.listener is not None, len(lazynumba._HOOKS))
watch.stop()


class Taken(list):  # Numba imported: a load() on another thread calls a hook registered meanwhile
    def remove(self, hook):
        loading = threading.Thread(target=lazynumba.load)
        loading.start()
        loading.join()
        super().remove(hook)


called = []
lazynumba._HOOKS = Taken()
print(lazynumba.on_import(called.append), len(called), len(lazynumba._HOOKS))
"""


def test_a_fit_starting_while_another_thread_imports_numba_listens_to_it():
    """A fit's Numba seconds wait for Numba's import (gpunn.ops.lazynumba.on_import) where it has not happened. The
    hook was appended after a look at sys.modules: another thread's kernel call that imported Numba and called the
    hooks in between left it uncalled for good, and the fit's Numba seconds uncounted (the watch never listened).
    Played in that order in a fresh process: the fit's watch listens, and no hook is left; a hook a load() took
    meanwhile is its to call (on_import says so)."""
    pytest.importorskip("numba")
    proc = waiting.run([sys.executable, "-c", ON_IMPORT_WHILE_ANOTHER_THREAD_IMPORTS], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["True 0", "True 1 0"]


def test_a_numba_lock_taken_before_the_watch_listened_ends_without_counting(monkeypatch):
    """A watch that starts listening while another thread holds (or waits for) Numba's compiler lock gets that lock's
    end without its start. It was counted against the open ones: the count went to -1 and the watch read the whole
    clock (seconds since boot), or it closed another thread's open lock early. Now only a start seen is ended: here
    the other thread's end, inside the watch's own 0.5 s, leaves those 0.5 s."""
    numba_event = pytest.importorskip("numba.core.event")
    import threading
    import types

    from gpunn.training import numba_watch

    now = [1000.0]
    monkeypatch.setattr(numba_watch, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    taken, release, released = threading.Event(), threading.Event(), threading.Event()

    def other_thread():  # takes the lock before the watch listens, releases it while the test thread holds it
        with numba_event.trigger_event("numba:compiler_lock"):
            taken.set()
            assert release.wait(60)
        released.set()

    watch = numba_watch._NumbaWatch(None)
    other = threading.Thread(target=other_thread)
    other.start()
    try:
        assert taken.wait(60)
        watch.listen()
        assert watch() == 0.0
        with numba_event.trigger_event("numba:compiler_lock"):
            now[0] += 0.2
            release.set()
            assert released.wait(60)
            now[0] += 0.3
            assert watch() == pytest.approx(0.5)  # still open
        assert watch() == pytest.approx(0.5)
        with numba_event.trigger_event("numba:compiler_lock"):  # a later lock counts as before
            now[0] += 0.25
        assert watch() == pytest.approx(0.75)
    finally:
        release.set()
        other.join(60)
        watch.stop()


def test_verbose_2_is_a_line_per_epoch_on_a_terminal_too(teacher, terminal_stderr, ensemble_data, progress_clock):
    """Keras' verbose=2; verbose=1 and True draw the bar there."""
    X, Y = teacher[0][:300], teacher[1][:300]
    MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, verbose=2)
    err = terminal_stderr.readouterr().err
    assert "\r" not in err and [line.split(":")[0] for line in err.splitlines()] == [
        "train [cpu] epoch 1/2", "train [cpu] epoch 2/2"]
    gpunn.Ensemble([5, 4, 2], 2, seed=0).fit(*ensemble_data, epochs=2, batch_size=30, verbose=2)
    err = terminal_stderr.readouterr().err
    assert "\r" not in err and len(err.splitlines()) == 2 and "best loss=" in err
    for verbose in (1, True):
        MLP([8, 4, 1], device="cpu", seed=0).fit(X, Y, epochs=2, verbose=verbose)
        assert "\r" in terminal_stderr.readouterr().err


def test_a_terminal_draws_the_bar_and_a_file_or_pipe_gets_lines():
    import io

    from gpunn.training.callbacks import draws_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    closed = io.StringIO()
    closed.close()  # (its isatty raises ValueError)
    assert draws_bar(Terminal()) and not draws_bar(io.StringIO()) and not draws_bar(closed)
    assert not draws_bar(object())  # no isatty at all


def test_a_notebook_draws_the_bar_whatever_its_stream(monkeypatch):
    """In a notebook tqdm.autonotebook picks the widget's tqdm, which draws though the cell's stream is no terminal."""
    import io

    from tqdm import autonotebook

    from gpunn.training.callbacks import draws_bar

    assert not draws_bar(io.StringIO())
    monkeypatch.setattr(autonotebook, "tqdm", type("NotebookTqdm", (autonotebook.tqdm,), {}))
    assert draws_bar(io.StringIO())


def test_a_notebooks_bar_ends_with_the_runs_mean_rate_as_a_terminals_does():
    """tqdm's close shows the bar's last line with the mean rate (rows over the time elapsed) on a terminal only: the
    notebook's bar (tqdm.notebook's widget) kept the smoothed rate of its last updates, which after a short run still
    weighed the first batch's wait (Numba's start): a fit of 10,800 rows in 1 s ended at "150rows/s" in a real
    notebook. ipywidgets is no test need: the stand-in has tqdm.notebook's ways (a gui bar, no status printer, that
    displays itself from format_dict at each refresh and once more as it closes)."""
    import io

    from tqdm.std import tqdm

    from gpunn.training.callbacks import _BAR_FORMAT, _readable_times

    class NotebookLike(tqdm):
        def __init__(self, *args, **kwargs):
            self.shown = []
            super().__init__(*args, gui=True, **kwargs)

        def display(self, msg=None, pos=None):
            self.shown.append(self.format_meter(**self.format_dict))

        def close(self):
            super().close()
            self.display()

    now = [0.0]
    bar = _readable_times(NotebookLike)(total=10_064, unit="rows", unit_scale=True, file=io.StringIO(),
                                        smoothing=0.1, bar_format=_BAR_FORMAT)
    bar._time = lambda: now[0]
    bar.start_t = bar.last_print_t = 0.0
    now[0] = 10.0
    bar.update(64)  # the first batch, after 10 s in Numba
    for _ in range(8):  # then 1,250 rows every 1/8 s
        now[0] += 0.125
        bar.update(1250)
    assert bar.shown[-1].endswith("| 10.1k/10.1k [00:11<00:00, 1.42krows/s]")  # running: the smoothed rate
    bar.close()
    assert bar.shown[-1].endswith("| 10.1k/10.1k [00:11<00:00, 915rows/s]")  # 10,064 rows in 11 s


def _notebook_bar(monkeypatch):
    """tqdm.notebook's bar class as gpunn's progress makes it (_readable_times), with stand-ins for IPython's display
    and for the widget (neither IPython nor ipywidgets is a test need: the bar is tqdm.notebook's own class, with the
    stand-in's status printer), and the outputs displayed: per output, the texts it held, the display's first, then
    each update's."""
    import types

    from tqdm import notebook
    from tqdm.notebook import tqdm_notebook

    from gpunn.training.callbacks import _readable_times

    class Widget:  # three children, as tqdm's TqdmHBox, and its text the bar's line, as TqdmHBox's repr
        def __init__(self):
            self.children = [types.SimpleNamespace(value="", bar_style="", style=types.SimpleNamespace(bar_color=None))
                             for _ in range(3)]

        def __repr__(self):
            return self.pbar.format_meter(**self.pbar.format_dict)

    class WidgetBar(tqdm_notebook):
        status_printer = staticmethod(lambda *args: Widget())

    outputs = []

    class Handle:
        def __init__(self, widget):
            self.texts = [repr(widget)]
            outputs.append(self.texts)

        def update(self, widget):
            self.texts.append(repr(widget))

    ipython = types.ModuleType("IPython")
    ipython.display = types.ModuleType("IPython.display")
    ipython.display.display = lambda widget, display_id=None: Handle(widget)
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython.display)
    monkeypatch.setattr(notebook, "display", ipython.display.display, raising=False)  # (tqdm's own display of it)
    return _readable_times(WidgetBar), outputs


def test_a_notebooks_bar_leaves_its_closed_line_as_its_outputs_text(monkeypatch):
    """The output of tqdm.notebook's widget holds the plain text of the moment it was displayed, the bar's first
    (``0%| 0.00/36.0k [00:00<?, ?rows/s]``), which a notebook run headless with nbclient and saved showed wherever
    the widget is not drawn (GitHub's view of it). Displayed under a display id, the output is updated as the bar
    closes."""
    import io

    from gpunn.training.callbacks import _BAR_FORMAT

    bar_class, outputs = _notebook_bar(monkeypatch)
    bar = bar_class(total=300, unit="rows", unit_scale=True, file=io.StringIO(), desc="fit", dynamic_ncols=True,
                    smoothing=0.1, bar_format=_BAR_FORMAT)
    bar.update(300)
    bar.close()
    bar.close()  # (as tqdm's __del__ does: nothing more)
    assert len(outputs) == 1 and len(outputs[0]) == 2, outputs
    first, last = outputs[0]
    assert first.startswith("fit:   0%|") and last.startswith("fit: 100%|") and "| 300/300 [" in last


def test_a_notebooks_bar_keeps_tqdms_delay_and_disable(monkeypatch):
    """tqdm's ``delay`` (TQDM_DELAY in the environment, which tqdm reads for every bar) holds a notebook's bar back
    until it has passed, and one that closes first is never shown: gpunn's displayed it at once, and tqdm displayed
    it again once the delay passed (two bars in the cell). ``disable`` (TQDM_DISABLE) shows none: gpunn's raised
    AttributeError (tqdm makes no widget for a disabled bar), ending the fit."""
    import io

    from gpunn.training.callbacks import _BAR_FORMAT

    bar_class, outputs = _notebook_bar(monkeypatch)

    def bar(**kwargs):
        return bar_class(total=300, unit="rows", unit_scale=True, file=io.StringIO(), desc="fit", dynamic_ncols=True,
                         smoothing=0.1, bar_format=_BAR_FORMAT, **kwargs)

    quick = bar(delay=3600)  # a fit that ends before its delay
    quick.update(300)
    quick.close()
    assert outputs == []
    later = bar(delay=1e-9, mininterval=0)  # its delay passed at the first update
    assert outputs == []
    later.update(100)
    later.update(200)
    later.close()
    assert len(outputs) == 1 and outputs[0][0].startswith("fit:  33%|") and outputs[0][-1].startswith("fit: 100%|")
    off = bar(disable=True)
    off.update(300)
    off.close()
    assert len(outputs) == 1


def _progress_trainer(rows, batch_size, epochs, start_epoch=0, batch=0, ranks=1):
    """What ProgressBar reads of a trainer: the epoch's training rows (every rank's), the per-rank batch, the ranks
    and where the run starts; the source is this rank's share (rows / ranks), as a data-parallel fit's is."""
    from types import SimpleNamespace

    return SimpleNamespace(settings=SimpleNamespace(train_rows=rows, ranks=ranks), batch_size=batch_size,
                           source=SimpleNamespace(rows=rows // ranks),
                           epochs=epochs, start_epoch=start_epoch, stop=False,
                           model=SimpleNamespace(device="cpu"), state=SimpleNamespace(batch=batch))


def test_the_bar_moves_by_every_ranks_rows_and_a_resumed_epoch_starts_at_its_batches_done():
    """Data parallel (2 ranks of batch 100), rank 0's bar moves by the global batch (200 rows) each step over the
    rows of every rank; a run resumed after batch 3 of its last epoch starts its bar at the 300 rows done."""
    from gpunn.training.callbacks import ProgressBar

    trainer = _progress_trainer(rows=1000, batch_size=100, epochs=2, ranks=2)
    progress = ProgressBar(lines=False)
    progress.on_train_begin(trainer)
    progress.on_epoch_begin(trainer, 0)
    for batch in range(5):
        progress.on_batch_end(trainer, batch)
    assert (progress.bar.n, progress.bar.total) == (1000, 2000)
    progress.on_train_end(trainer)
    resumed = ProgressBar(lines=False)
    resumed.on_train_begin(_progress_trainer(rows=1000, batch_size=100, epochs=2, start_epoch=1, batch=3))
    assert (resumed.bar.n, resumed.bar.total) == (300, 1000)
    resumed.on_train_end(trainer)


def test_a_logs_lines_give_the_epochs_rate_and_the_runs_time_left_and_come_at_most_every_line_every_s(
        monkeypatch, capsys):
    """Lines (a log): within an epoch a line once line_every_s (60 s) has passed since the last line, with the
    epoch's time left at the run's rate; at each epoch's end a line with the epoch's own rate and the run's
    time left. The clock is the test's: epoch 1 takes 100 s, epoch 2 50 s, epoch 3 90 s."""
    import types

    from gpunn.training import progress
    from gpunn.training.callbacks import ProgressBar

    times = iter([0,                          # train begins
                  0, 30, 70, 80, 100, 100,    # epoch 1: begin, 4 batches of 250 rows, end
                  100, 110, 140, 145, 150, 150,
                  150, 160, 212, 220, 230, 240])
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: float(next(times))))
    trainer = _progress_trainer(rows=1000, batch_size=250, epochs=3)
    progress = ProgressBar(lines=True)
    progress.on_train_begin(trainer)
    for epoch in range(3):
        progress.on_epoch_begin(trainer, epoch)
        for batch in range(4):
            progress.on_batch_end(trainer, batch)
        progress.on_epoch_end(trainer, epoch, {"loss": 0.5})
    progress.on_train_end(trainer)
    assert capsys.readouterr().err.splitlines() == [
        "train [cpu] epoch 1/3: 500/1,000 rows, 7.14 rows/s, epoch left 01:10",  # at 70 s: 500 rows in 70 s
        "train [cpu] epoch 1/3: loss=0.5000; 10.0 rows/s, elapsed 01:40, left 03:20",
        "train [cpu] epoch 2/3: loss=0.5000; 20.0 rows/s, elapsed 02:30, left 01:15",  # 1000 rows left at 2000 / 150 s
        "train [cpu] epoch 3/3: 500/1,000 rows, 11.8 rows/s, epoch left 00:42",  # at 212 s: 2500 rows in 212 s
        "train [cpu] epoch 3/3: loss=0.5000; 11.1 rows/s, elapsed 04:00, left 00:00"]


def test_a_resumed_runs_time_left_is_taken_at_the_rows_it_read_itself_a_short_last_batch_counted_as_its_rows(
        monkeypatch, capsys):
    """A run resumed after 2 of 5 batches of epoch 2 (of 3 epochs of 1,050 rows: batches of 250, the last of 50):
    the run's rate, which the time left is taken at, counts the 550 rows this process read in its 22 s, not the 500
    it resumed after (audit47's P20: 1,050 rows in 22 s put the 1,050 rows left at 00:22, not 00:42), and the
    short last batch adds its 50 rows, not a batch's 250 (audit47's P30: the epoch's rate 34.1, left 00:24)."""
    import types

    from gpunn.training import progress
    from gpunn.training.callbacks import ProgressBar

    times = iter([0, 0, 10, 20, 22, 22])  # train begins, epoch 2 begins, its batches 3, 4 and 5 end, it ends
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: float(next(times))))
    trainer = _progress_trainer(rows=1050, batch_size=250, epochs=3, start_epoch=1, batch=2)
    lines = ProgressBar(lines=True)
    lines.on_train_begin(trainer)
    lines.on_epoch_begin(trainer, 1)
    for batch in (2, 3, 4):
        lines.on_batch_end(trainer, batch)
    lines.on_epoch_end(trainer, 1, {"loss": 0.5})
    assert capsys.readouterr().err.splitlines() == [
        "train [cpu] epoch 2/3: loss=0.5000; 25.0 rows/s, elapsed 00:22, left 00:42"]


class _NumbaSeconds:
    """A stand-in for gpunn.training.numba_watch's watch: the seconds in Numba so far, and its compiles."""
    seconds, compiles = 0.0, 0

    def __call__(self):
        return self.seconds

    def stop(self):
        pass


def test_an_epoch_whose_seconds_in_numba_only_loaded_kernels_says_so_after_an_epoch_that_compiled(monkeypatch,
                                                                                                  capsys):
    """The compile's words are the epoch's whose seconds in Numba had a compile in them: a later epoch's (a kernel
    first called there, loaded from the cache) says a load (audit47's P18: every epoch after the first compile said
    "compile, first run only")."""
    import itertools
    import types

    from gpunn.training import progress
    from gpunn.training.callbacks import ProgressBar

    watch = _NumbaSeconds()
    monkeypatch.setattr(progress, "numba_seconds", lambda say: watch)
    monkeypatch.setattr(ProgressBar, "says_compiling", True)
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=itertools.count(0.0, 1.0).__next__))
    trainer = _progress_trainer(rows=300, batch_size=100, epochs=2)
    lines = ProgressBar(lines=True)
    lines.on_train_begin(trainer)
    for epoch, seconds, compiles in ((0, 0.74, 1), (1, 1.24, 1)):
        lines.on_epoch_begin(trainer, epoch)
        watch.seconds, watch.compiles = seconds, compiles
        for batch in range(3):
            lines.on_batch_end(trainer, batch)
        lines.on_epoch_end(trainer, epoch, {"loss": 0.5})
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith(" (0.74s of it in Numba: its start and the CPU kernels' compile, first run only)")
    assert second.endswith(" (0.50s of it in Numba: its start and the CPU kernels' load, once per process)")


def test_the_bars_epoch_time_left_leaves_out_the_seconds_numba_took_once(monkeypatch, capsys):
    """The bar's epoch_eta is taken at the run's rate without its seconds in Numba, as the lines' time left is
    (test_the_time_left_leaves_out_the_seconds_numba_took_once): batches of 100 rows a second, 12 s of Numba in the
    first; after two, the epoch's last 100 rows are 1 s away, not 7 (audit47's P12: the rate since the run began)."""
    import types

    from gpunn.training import progress
    from gpunn.training.callbacks import ProgressBar

    watch, now = _NumbaSeconds(), [0.0]
    monkeypatch.setattr(progress, "numba_seconds", lambda say: watch)
    monkeypatch.setattr(ProgressBar, "says_compiling", True)
    monkeypatch.setattr(ProgressBar, "eta_every_s", 0.0)
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    trainer = _progress_trainer(rows=300, batch_size=100, epochs=2)
    bar = ProgressBar(lines=False)
    bar.on_train_begin(trainer)
    bar.on_epoch_begin(trainer, 0)
    watch.seconds, now[0] = 12.0, 13.0
    bar.on_batch_end(trainer, 0)
    assert bar.bar.postfix == "epoch_eta=00:02"
    now[0] = 14.0
    bar.on_batch_end(trainer, 1)
    assert bar.bar.postfix == "epoch_eta=00:01"
    bar.on_train_end(trainer)


def test_a_resumed_bars_closed_rate_and_time_left_count_the_rows_it_moved_itself():
    """A closed bar shows the run's mean rate (test_a_notebooks_bar_ends_with_the_runs_mean_rate_as_a_terminals_does):
    for a bar that began at a resumed run's rows done, the rows it moved over the time elapsed, 200 in 10 s, and the
    500 rows left at that rate (audit47's P26: 500 rows over 10 s, 50 rows/s and 00:10 left)."""
    import io

    from tqdm.std import tqdm

    from gpunn.training.callbacks import _BAR_FORMAT, _readable_times

    bar = _readable_times(tqdm)(total=1000, initial=300, unit="rows", unit_scale=True, file=io.StringIO(),
                                smoothing=0.1, bar_format=_BAR_FORMAT)
    bar.start_t -= 10.0
    bar.update(200)
    bar.close()
    assert str(bar).endswith("| 500/1.00k [00:10<00:25, 20.0rows/s]")


def test_a_pass_over_rows_says_its_rows_rate_and_time_left_at_most_every_line_every_s(monkeypatch):
    """PassProgress's lines (the statistics pass of gpunn train --standardize in a log): one once line_every_s (60 s)
    has passed since the last, with the rows read, their rate and the time left for the rows not read yet (audit47's
    P27: a line at every piece after the first minute; P28: the time left of all 1,000 rows, 02:20)."""
    import io
    import types

    from gpunn.training import progress
    from gpunn.training.callbacks import PassProgress

    times = iter([0, 30, 70, 100, 140])  # made, then four pieces of 250 rows read
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: float(next(times))))
    stream = io.StringIO()
    said = PassProgress("statistics", 1000, lines=True, stream=stream)
    for _ in range(4):
        said(250)
    said.close()
    assert stream.getvalue().splitlines() == ["statistics: 500/1,000 rows, 7.14 rows/s, left 01:10",
                                              "statistics: 1,000/1,000 rows, 7.14 rows/s, left 00:00"]


@pytest.mark.parametrize("seconds, text", [(307, "05:07"), (11_107, "3:05:07"), (86_399, "23:59:59"),
                                            (86_400, "1d 00h"), (376 * 3600 + 1604, "15d 16h"),
                                            (40_812 * 3600, "4.7 years"), (150 * 365.25 * 86400, "150 years"),
                                            (1e16, "316,880,878 years"), (1e17, "3.2e+09 years"),
                                            (1e300, "3.2e+292 years"), (-5, "00:00")])
def test_a_time_past_a_day_is_said_in_days_and_hours_and_past_a_year_in_years(seconds, text):
    """And a time below 0 (a clock stepped back) is 00:00 (audit47's P22: "-1:59:55"); 100 years and more are whole
    years (audit47's P24: "150.0 years")."""
    from gpunn.training.callbacks import interval_text

    assert interval_text(seconds) == text


def test_a_stream_of_a_trillion_rows_says_its_time_left_in_years_in_the_lines_and_on_the_bar(monkeypatch, capsys):
    """10^12 rows at 6,000 rows/s, a laptop's CPU: tqdm's clock gave the time left as 41666:39:59 (hours)."""
    import io
    import types

    from gpunn.training import progress
    from gpunn.training.callbacks import ProgressBar

    clock = iter([0.0, 0.0, 100.0] + [100.0] * 5)  # train begins, epoch 1 begins, the batch ends 100 s later
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(ProgressBar, "line_every_s", 0.0)
    trainer = _progress_trainer(rows=10**12, batch_size=600_000, epochs=2)
    lines = ProgressBar(lines=True)
    lines.on_train_begin(trainer)
    lines.on_epoch_begin(trainer, 0)
    lines.on_batch_end(trainer, 0)
    assert capsys.readouterr().err == "train [cpu] epoch 1/2: 600,000/1,000,000,000,000 rows, 6.00k rows/s, " \
                                      "epoch left 5.3 years\n"
    bar = ProgressBar(lines=False)
    bar.on_train_begin(trainer)
    bar.bar.fp = io.StringIO()
    bar.bar.start_t -= 100.0
    bar.bar.update(600_000)  # the bar's own rate (its clock is tqdm's): 6,000 rows/s since it began
    assert "| 600k/2.00T [01:40<10.6 years, 6.00krows/s]" in str(bar.bar)
    bar.bar.close()


def test_an_epoch_shows_its_loss_and_validation_metrics_and_not_val_mse_again():
    """val_mse is val_loss over the outputs: not shown beside it; the lr and timings are not the bar's."""
    from gpunn.training.callbacks import ProgressBar

    logs = {"epoch": 1, "loss": 0.123456, "lr": 0.001, "time_s": 2.0, "samples_per_s": 500.0, "val_loss": 0.25,
            "val_mse": 0.25, "val_mae": 0.375, "val_r2": 0.875}
    assert ProgressBar().shown(None, logs) == {"loss": "0.1235", "val_loss": "0.2500", "val_mae": "0.3750",
                                               "val_r2": "0.8750"}


@pytest.mark.parametrize("value, text", [(4.0, "4.000"), (4.0003, "4.000"), (0.0123, "0.01230"), (1234.0, "1234"),
                                         (123456.0, "1.235e+05"), (1e-5, "1.000e-05"), (0.0, "0.000"),
                                         (float("nan"), "nan")])
def test_progress_shows_four_significant_digits_with_their_trailing_zeros(value, text):
    """:.4g showed a loss of 4.0003 as "4", as if exact, and the line's width jumped with the digits (Keras shows
    "4.0003"): four digits always, without a bare trailing point ("1234", not "1234.")."""
    from gpunn.training.callbacks import ProgressBar

    assert ProgressBar().shown(None, {"loss": value}) == {"loss": text}


def test_only_verbose_2_asks_for_lines_and_the_bar_ends_on_a_line_of_its_own(teacher, terminal_stderr):
    """lines_for: Keras' verbose=2 is a line per epoch; 1, True and scikit-learn's higher levels leave it to
    draws_bar. The bar is closed when training ends (what stderr gets next starts a line), though a reference to
    it is kept."""
    from gpunn.training.callbacks import ProgressBar, lines_for

    assert lines_for(2) is True and lines_for(numpy.int64(2)) is True
    assert all(lines_for(verbose) is None for verbose in (1, 3, True, numpy.bool_(True)))
    bars = []

    class Keep(ProgressBar):
        def on_train_end(self, trainer):
            super().on_train_end(trainer)
            bars.append(self.bar)

    MLP([8, 4, 1], device="cpu", seed=0).fit(teacher[0][:300], teacher[1][:300], epochs=1, verbose=False,
                                            callbacks=[Keep(lines=False)])
    assert bars and terminal_stderr.readouterr().err.endswith("\n")


def test_a_progress_bar_of_ones_own_replaces_the_one_verbose_adds(teacher, capsys, progress_clock):
    from gpunn.training.callbacks import ProgressBar, order_callbacks

    mine = ProgressBar(lines=True)
    assert order_callbacks([mine], verbose=True) == [mine]
    MLP([8, 4, 1], device="cpu", seed=0).fit(teacher[0][:300], teacher[1][:300], epochs=2, verbose=True,
                                            callbacks=[mine])
    assert len(capsys.readouterr().err.splitlines()) == 2  # a line per epoch, once


def test_a_progress_bar_says_its_setting_in_its_repr():
    from gpunn.training.callbacks import ProgressBar

    assert [repr(ProgressBar(lines=lines)) for lines in (None, True)] == ["ProgressBar(lines=None, label=None)",
                                                                          "ProgressBar(lines=True, label=None)"]
    assert repr(ProgressBar(label="sweep")) == "ProgressBar(lines=None, label='sweep')"
    for label in ("", 3):
        with pytest.raises(TypeError, match=f"^label must be a non-empty str .*, or None, got {label!r}$"):
            ProgressBar(label=label)


# a fresh process: a terminal's bar (tqdm.std's, what tqdm.auto gives outside a notebook) made and closed
TERMINAL_BAR_ALONE = r"""
import io, sys
from tqdm import std
from gpunn.training import callbacks
bar = callbacks._readable_times(std.tqdm)(total=10, file=io.StringIO(), bar_format=callbacks._BAR_FORMAT)
bar.update(10)
bar.close()
print(sorted(name for name in ("tqdm.notebook", "ipywidgets", "IPython") if name in sys.modules))
"""


def test_a_terminals_progress_bar_imports_no_notebook_module():
    """A terminal's bar is tqdm's plain one; it imported tqdm.notebook all the same, to ask whether it was a
    notebook's, which loads ipywidgets and IPython where Jupyter is installed (some 0.1 s more at every
    verbose fit's start). A notebook's bar class comes from tqdm.notebook, imported already by whoever made it."""
    proc = waiting.run([sys.executable, "-c", TERMINAL_BAR_ALONE], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[]"]


def test_a_terminal_of_no_columns_gets_lines():
    """A pseudo-terminal never sized (0 x 0: ``script`` run from a pipe) is a terminal where tqdm draws nothing at
    all, not even the epoch's end: lines there; once sized, the bar."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    from gpunn.training.callbacks import draws_bar

    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as stream:
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            assert stream.isatty() and not draws_bar(stream)
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            assert draws_bar(stream)
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.slow
def test_a_terminal_gets_the_bar():
    """A real terminal (a pseudo-terminal as stderr): the bar, redrawn with carriage returns."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    code = ("import numpy; from gpunn import MLP; X = numpy.random.default_rng(0).normal(size=(600, 8)); "
            "MLP([8, 4, 1], device='cpu', seed=0).fit(X, X[:, :1], epochs=2, batch_size=100)")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # (a 0 x 0 one draws nothing)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower, env=env)
    os.close(follower)
    out, deadline = b"", waiting.Deadline(120)  # the time this process ran, not the wall clock (tests/waiting.py)
    try:
        while not deadline.expired():
            if not select.select([leader], [], [], waiting.POLL)[0]:
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child's end closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        waiting.communicate(proc, deadline)  # its exit, in what is left of the time (killed past it)
    assert proc.returncode == 0, out
    text = out.decode()
    assert "\r" in text and "epoch 2/2" in text and "rows/s" in text and "%|" in text
    assert "elapsed" not in text  # not the lines of a log


def test_a_loss_that_grows_past_its_first_value_by_1e4_is_divergence(teacher):
    import gpunn

    X, Y = teacher[0][:2000], teacher[1][:2000]
    model = MLP([8, 32, 1], device="cpu", seed=0)
    with pytest.raises(gpunn.TrainingDiverged, match="times its reference"):
        model.fit(X, Y, epochs=5, lr=10.0, verbose=False)


def test_divergence_is_a_loss_more_than_10000_times_the_reference():
    """README: "more than 10,000 times the run's first batch loss": 10,000 times is not divergence, a little more
    is (mut17b's L40 L41 L62: a factor of 1e5 or 1e3, or >=, passed the suite)."""
    import time

    from gpunn.training.loop import Trainer
    from gpunn.training.state import FitSettings, TrainState

    trainer = Trainer(None, None, None, FitSettings(epochs=1, batch_size=10, train_rows=100),
                      TrainState(reference_loss=0.5))
    logs = trainer.epoch_logs(0, numpy.float64(0.5 * 10_000 * 100), 100, 100, 0.1, time.perf_counter())
    assert logs["loss"] == 5000.0
    with pytest.raises(TrainingDiverged, match="times its reference 0.5"):
        trainer.epoch_logs(0, numpy.float64(0.5 * 10_001 * 100), 100, 100, 0.1, time.perf_counter())


def test_a_first_batch_that_fits_almost_exactly_does_not_make_a_run_look_diverged():
    """Divergence is measured against the first batch's loss or, when larger, the loss of predicting
    zero: a model that starts on its target for the first batch (fine-tuning) may end its epoch far
    above that near-zero loss and still be fine."""
    rng = numpy.random.default_rng(0)
    X, w = rng.standard_normal((400, 3)), rng.standard_normal((3, 1))
    Y = X @ w + numpy.where(numpy.arange(400)[:, None] < 100, 1e-7, 0.3) * rng.standard_normal((400, 1))
    model = MLP([3, 1], bias=False, device="cpu", dtype="float64", seed=0)
    model.params[...] = w.ravel()
    history = model.fit(X, Y, epochs=2, batch_size=100, optimizer="sgd", lr=1e-3, shuffle=False, verbose=False)
    assert history["loss"][-1] > 1e4 * model.loss(X[:100], Y[:100])  # the old rule's "divergence"
    assert history["loss"][-1] < 0.1


def test_a_first_batch_of_zeros_predicted_exactly_gives_no_growth_to_call_divergence():
    """A reference loss of 0 (the first batch's inputs and targets all zero, as in sparse data in file order, and
    predicted exactly) has no multiple to grow past: any later finite loss is no divergence."""
    rng = numpy.random.default_rng(1)
    X, w = rng.standard_normal((400, 3)), rng.standard_normal((3, 1))
    Y = X @ w + 0.3 * rng.standard_normal((400, 1))
    X[:100], Y[:100] = 0.0, 0.0
    model = MLP([3, 1], bias=False, device="cpu", dtype="float64", seed=0)
    history = model.fit(X, Y, epochs=2, batch_size=100, optimizer="sgd", lr=1e-3, shuffle=False, verbose=False)
    assert history["epoch"] == [1, 2] and 0 < history["loss"][-1] < 1


def test_the_divergence_reference_of_several_outputs_is_a_loss_per_row():
    """The loss of predicting zero is, like the training loss, summed over the outputs and averaged over
    rows: (1/m) sum ||y_i||^2; a batch of 4 rows of 3 outputs, each row's squared norm 14, gives 14."""
    from gpunn.training.loop import reference_loss

    Yb = numpy.tile([1.0, 2.0, 3.0], (4, 1))
    assert reference_loss(numpy, numpy.float64(0.0), Yb) == pytest.approx(14.0)
    assert reference_loss(numpy, numpy.float64(400.0), Yb) == pytest.approx(100.0)


def test_partial_last_batch_uses_every_row():
    """Loss weights every row once per epoch: 10 rows in batches of 4 = 4 + 4 + 2."""
    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((10, 2)), rng.standard_normal((10, 1))
    model = MLP([2, 1], bias=False, device="cpu", dtype="float64", seed=0)
    start = model.loss(X, Y)
    h = model.fit(X, Y, epochs=1, batch_size=4, optimizer="sgd", lr=1e-12, shuffle=False, verbose=False)
    assert h["loss"][0] == pytest.approx(start, rel=1e-9)


def test_help_of_model_fit_lists_every_option_with_its_default():
    # MLP.fit and Ensemble.fit were (X, Y=None, **kwargs): help(model.fit) and editors showed no option
    import inspect

    from gpunn.training.ensemble import fit_ensemble

    for method, function in ((gpunn.MLP.fit, gpunn.fit), (gpunn.Ensemble.fit, fit_ensemble)):
        ours, theirs = inspect.signature(method), inspect.signature(function)
        assert list(ours.parameters)[1:] == list(theirs.parameters)[1:]
        assert [p.default for p in ours.parameters.values()] == [p.default for p in theirs.parameters.values()]
        assert inspect.getdoc(function) in inspect.getdoc(method)
    assert "epochs: passes over the training rows (default 10)" in inspect.getdoc(gpunn.MLP.fit)


@pytest.mark.parametrize("cls,module,user", [(gpunn.MLP, "gpunn.model", "model.fit(X, Y, ...)"),
                                             (gpunn.Ensemble, "gpunn.ensemble", "ens.fit(X, Y, ...)")])
def test_help_of_model_fit_names_the_method_the_user_calls(cls, module, user):
    """help(gpunn.Ensemble.fit) showed 'fit_ensemble(self, X, ...)' in module gpunn.training.fit (the function the
    method wraps); MLP.fit said 'fit' of that module, where gpunn.fit lives."""
    import inspect
    import pickle
    import pydoc

    method = cls.fit
    assert (method.__name__, method.__qualname__, method.__module__) == ("fit", f"{cls.__name__}.fit", module)
    shown = pydoc.render_doc(method, renderer=pydoc.plaintext)
    assert f"function fit in module {module}" in shown and "\nfit(self, X, Y=None, *, epochs=10" in shown
    assert "fit_ensemble" not in shown and inspect.getdoc(method).startswith(user)
    assert pickle.loads(pickle.dumps(method)) is method  # found where it says it is


@pytest.mark.parametrize("call, key, hint", [
    ("MLP.fit", "validation_split", " (did you mean validation_fraction?)"),  # Keras's name (difflib: validation_data)
    ("MLP.fit", "nb_epoch", " (did you mean epochs?)"),
    ("fit", "learning_rate", " (did you mean lr?)"),
    ("Ensemble.fit", "max_iter", " (did you mean epochs?)"),  # scikit-learn's
    ("Ensemble.fit", "validation", " (did you mean validation_data or validation_fraction?)"),
    ("Ensemble.fit", "batchsize", " (did you mean batch_size?)"),
    ("MLP.fit", "colour", ""),  # nothing meant: Python's words alone
    # an optimizer's option, which an Ensemble's fit takes per member and a model's fit in its optimizer
    ("MLP.fit", "weight_decay",
     " (weight_decay is the optimizer's option: model.fit(X, Y, optimizer=gpunn.Adam(weight_decay=0.1)))"),
    ("fit", "momentum", " (momentum is the optimizer's option: model.fit(X, Y, optimizer=gpunn.SGD(momentum=0.1)))"),
    # an optimizer's or a schedule's option misspelt (it had no hint); an Ensemble's fit takes momentum itself
    ("MLP.fit", "momentun", " (did you mean momentum? momentum is the optimizer's option: model.fit(X, Y, "
                            "optimizer=gpunn.SGD(momentum=0.1)))"),
    ("Ensemble.fit", "momentun", " (did you mean momentum?)"),
    ("Ensemble.fit", "min_factr", " (did you mean min_factor? min_factor is the cosine schedule's option: model.fit(X, Y, "
                                  "schedule=gpunn.Schedule(\"cosine\", min_factor=0.1)))"),
    ("fit", "gama", " (did you mean gamma? gamma is an option of the step and exponential schedules: model.fit(X, Y, "
                    "schedule=gpunn.Schedule(\"step\", gamma=0.1)) or model.fit(X, Y, "
                    "schedule=gpunn.Schedule(\"exponential\", gamma=0.1)))"),
    # a name that begins two of the optimizer's options (beta1, beta2, and PyTorch's betas) is shown in neither
    # (audit39b m60: beta1 was shown, the first found)
    ("MLP.fit", "beta", ""),
    # the method's self, and gpunn.fit's model, given first, are no keyword a hint names (audit39b m89: "did you mean
    # model?" for the Ensemble's n_models given to a fit)
    ("Ensemble.fit", "n_models", ""),
    ("fit", "n_models", ""),
])
def test_an_unknown_fit_option_is_pythons_type_error_naming_the_option_meant(call, key, hint):
    """fit(X, Y, validation_split=0.1) said only "fit() got an unexpected keyword argument 'validation_split'"."""
    X, Y = numpy.zeros((8, 2)), numpy.zeros((8, 1))
    fits = {"MLP.fit": MLP([2, 1], device="cpu").fit, "Ensemble.fit": gpunn.Ensemble([2, 1], 2, device="cpu").fit,
            "fit": lambda *args, **kw: gpunn.fit(MLP([2, 1], device="cpu"), *args, **kw)}
    with pytest.raises(TypeError) as raised:
        fits[call](X, Y, verbose=False, **{key: 0.1})
    assert str(raised.value) == f"{call}() got an unexpected keyword argument {key!r}{hint}"


@pytest.mark.parametrize("call", ["fit", "fit_option", "predict", "npy"])
def test_a_traceback_leaves_out_gpunns_wrappers_that_only_pass_the_call_on(call, tmp_path):
    """In a notebook, a refused model.fit showed three frames of gpunn's plumbing between the user's line and the fit
    (as_method's method, keywords_checked's checked twice), each the same two lines. They mark themselves as IPython
    and pytest hide a frame (__tracebackhide__): what is left runs from the call to the check that refused it."""
    model = MLP([3, 4, 1], device="cpu")
    numpy.save(tmp_path / "x.npy", numpy.zeros((5, 3)))
    numpy.save(tmp_path / "y.npy", numpy.zeros((4, 1)))
    calls = {"fit": lambda: model.fit(numpy.zeros((8, 2)), numpy.zeros(8), verbose=False),
             "fit_option": lambda: model.fit(numpy.zeros((8, 3)), numpy.zeros(8), validation_split=0.1),
             "predict": lambda: model.predict(numpy.zeros((8, 2))),
             "npy": lambda: gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy")}
    with pytest.raises((TypeError, ValueError)) as raised:
        calls[call]()
    shown = [entry.name for entry in raised.traceback.filter(raised)]
    wrappers = {"method", "checked", "closing_init", "removing_init"}
    assert shown[1] == "<lambda>" and not wrappers & set(shown), shown
    assert len(shown) < len(raised.traceback)  # (there were such frames, hidden)


@pytest.mark.parametrize("kind, other", [("MLP", "Ensemble"), ("Ensemble", "MLP")])
def test_an_option_only_the_other_kinds_fit_takes_is_said_to_be_that_kinds(kind, other):
    """MLP.fit(X, Y, bootstrap=True) said only "unexpected keyword argument 'bootstrap'", where a resume of an MLP's
    run says bootstrap is an Ensemble's option; Ensemble.fit(X, Y, graph=True) the same, where an Ensemble takes
    graph when made. Each option only the other kind's fit takes (but an optimizer's, shown in the optimizer, and a
    schedule's) is told so, or a misspelling of it, and the call the hint shows runs."""
    from gpunn.hints import OPTIMIZER_OPTIONS
    from gpunn.training.ensemble import fit_ensemble
    from gpunn.training.fit import fit, fit_options

    X, Y = numpy.zeros((8, 2)), numpy.zeros((8, 1))
    makes = {"MLP": lambda **kw: MLP([2, 1], device="cpu", seed=0, **kw),
             "Ensemble": lambda **kw: gpunn.Ensemble([2, 1], 2, device="cpu", seed=0, **kw)}
    options = {"MLP": fit_options(fit), "Ensemble": fit_options(fit_ensemble)}
    # (sample_weight, the rows' weights one MLP's fit takes, has its own words for an Ensemble: test_sample_weight.py)
    only_others = [option for option in options[other]
                   if option not in options[kind] + list(OPTIMIZER_OPTIONS) + ["sample_weight"]]
    assert only_others == {"MLP": ["bootstrap"], "Ensemble": ["graph"]}[kind]  # (what the hints below are about)
    for option in only_others:
        for given in (option, option[:-1]):  # bootstrap, and bootstra: did you mean bootstrap?
            with pytest.raises(TypeError) as caught:
                makes[kind]().fit(X, Y, verbose=False, **{given: True})
            said = str(caught.value)
            meant = "" if given == option else f"did you mean {option}? "
            if kind == "Ensemble":  # (its constructor takes graph)
                shown = f"gpunn.{kind}(..., {option}=True)"
                assert said == (f"{kind}.fit() got an unexpected keyword argument {given!r} ({meant}{option} is an "
                                f"{other}'s fit option; an {kind} takes it when made: {shown})")
                with pytest.warns(gpunn.GraphWarning, match="no GPU"):  # (taken: forced, where no GPU captures)
                    assert makes[kind](**{option: True}).fit(X, Y, epochs=1, verbose=False)["epoch"] == [1]
            else:
                shown = f"gpunn.{other}(...).fit(X, Y, {option}=True)"
                assert said == (f"{kind}.fit() got an unexpected keyword argument {given!r} ({meant}{option} is an "
                                f"{other}'s fit option, and this is an {kind}: {shown})")
                assert makes[other]().fit(X, Y, epochs=1, verbose=False, **{option: True})["epoch"] == [1]


def test_gpunn_fit_given_an_ensembles_fit_option_says_whose_it_is_as_mlp_fit_does():
    """gpunn.fit(model, X, Y, bootstrap=True) said only "fit() got an unexpected keyword argument 'bootstrap'" where
    model.fit says it is an Ensemble's option (training.fit cannot name an Ensemble's options: training.ensemble
    imports it); gpunn.fit is still found where it says it is, by pickle, and shows its own docstring."""
    import inspect
    import pickle

    from gpunn.training.fit import fit

    X, Y = numpy.zeros((8, 2)), numpy.zeros((8, 1))
    for given, meant in (("bootstrap", ""), ("bootstrp", "did you mean bootstrap? ")):
        with pytest.raises(TypeError) as caught:
            gpunn.fit(MLP([2, 1], device="cpu"), X, Y, verbose=False, **{given: True})
        assert str(caught.value) == (f"fit() got an unexpected keyword argument {given!r} ({meant}bootstrap is an "
                                     "Ensemble's fit option, and gpunn.fit trains one MLP: "
                                     "gpunn.Ensemble(...).fit(X, Y, bootstrap=True))")
    assert gpunn.Ensemble([2, 1], 2, device="cpu").fit(X, Y, epochs=1, verbose=False, bootstrap=True)["epoch"] == [1]
    assert pickle.loads(pickle.dumps(gpunn.fit)) is gpunn.fit
    assert inspect.signature(gpunn.fit) == inspect.signature(fit) and gpunn.fit.__doc__ == fit.__doc__
    assert gpunn.fit(MLP([2, 1], device="cpu"), X, Y, epochs=1, verbose=False)["epoch"] == [1]


@pytest.mark.parametrize("make, call, key, hint", [
    (lambda **kw: gpunn.Adam(**kw), "Adam", "beta_1", " (did you mean beta1?)"),  # Keras's name
    (lambda **kw: gpunn.SGD(**kw), "SGD", "momentun", " (did you mean momentum?)"),
    (lambda **kw: gpunn.Schedule("step", **kw), "Schedule", "stepsize", " (did you mean step_size?)"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "activations", " (did you mean activation?)"),
    (lambda **kw: gpunn.Ensemble([2, 1], 2, device="cpu", **kw), "Ensemble", "sead", " (did you mean seed?)"),
    (lambda **kw: gpunn.EarlyStopping(**kw), "EarlyStopping", "patiance", " (did you mean patience?)"),
    (lambda **kw: gpunn.ModelCheckpoint("m.npz", **kw), "ModelCheckpoint", "save_best", " (did you mean save_best_only?)"),
    (lambda **kw: gpunn.data.synthetic("linear", 100, 2, **kw), "gpunn.data.synthetic", "chunkrows",
     " (did you mean chunk_rows?)"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "colour", ""),  # nothing meant: Python's words alone
    # PyTorch's betas pair, which difflib took for beta2 alone
    (lambda **kw: gpunn.AdamW(**kw), "AdamW", "betas",
     " (PyTorch's betas pair is two options here: AdamW(beta1=..., beta2=...))"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "weight_decay",
     " (weight_decay is the optimizer's option: model.fit(X, Y, optimizer=gpunn.Adam(weight_decay=0.1)))"),
    # fit's options given to the constructor, as Keras's and scikit-learn's constructors take them
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "lr", " (lr is fit's option: model.fit(X, Y, lr=0.1))"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "batch_size",
     " (batch_size is fit's option: model.fit(X, Y, batch_size=0.1))"),
    (lambda **kw: gpunn.Ensemble([2, 1], 2, device="cpu", **kw), "Ensemble", "epochs",
     " (epochs is fit's option: model.fit(X, Y, epochs=0.1))"),
    (lambda **kw: gpunn.Ensemble([2, 1], 2, device="cpu", **kw), "Ensemble", "optimizer",
     " (optimizer is fit's option: model.fit(X, Y, optimizer=0.1))"),
    # ... and another tool's name for one, or one misspelt, where it stands for no constructor's keyword
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "learning_rate",
     " (did you mean lr? lr is fit's option: model.fit(X, Y, lr=0.1))"),
    (lambda **kw: gpunn.Ensemble([2, 1], 2, device="cpu", **kw), "Ensemble", "validation_split",
     " (did you mean validation_fraction? validation_fraction is fit's option: model.fit(X, Y, "
     "validation_fraction=0.1))"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "epoch",
     " (did you mean epochs? epochs is fit's option: model.fit(X, Y, epochs=0.1))"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "valid",
     " (did you mean validation_data or validation_fraction? they are fit's options: model.fit(X, Y, ...))"),
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "random_state", " (did you mean seed?)"),  # MLP's own first
    # an Ensemble's fit takes the optimizer's options itself, per member: not shown in an Adam (audit39b m44)
    (lambda **kw: gpunn.Ensemble([2, 1], 2, device="cpu", **kw), "Ensemble", "weightdecay",
     " (did you mean weight_decay? weight_decay is fit's option: model.fit(X, Y, weight_decay=0.1))"),
    # a schedule's option to a call of no fit's schedule is not shown in one: MLPRegressor's fit takes X and y alone,
    # and predict trains nothing (audit39b m47)
    (lambda **kw: gpunn.MLPRegressor(**kw), "MLPRegressor", "gamma", ""),
    (lambda **kw: MLP([2, 1], device="cpu").predict(numpy.zeros((3, 2)), **kw), "MLP.predict", "gamma", ""),
    # fit's data and its self are no fit options shown to the constructor (audit39b m90: "X is fit's option:
    # model.fit(X, Y, X=0.1)")
    (lambda **kw: MLP([2, 1], device="cpu", **kw), "MLP", "X", ""),
    # an ensemble's size by other libraries' names (scikit-learn's n_estimators); its count is n_models
    (lambda **kw: gpunn.Ensemble([2, 1], **kw), "Ensemble", "k", " (did you mean n_models (the number of members)?)"),
    (lambda **kw: gpunn.Ensemble([2, 1], **kw), "Ensemble", "n_estimators",
     " (did you mean n_models (the number of members)?)"),
])
def test_an_unknown_keyword_of_a_public_class_names_the_one_meant(make, call, key, hint):
    """Adam(beta_1=0.9) (Keras's name; gpunn's is beta1) said only "Adam.__init__() got an unexpected keyword
    argument 'beta_1'": the constructors hint as fit does. A subclass's own __init__ is hinted too."""
    with pytest.raises(TypeError) as raised:
        make(**{key: 0.1})
    assert str(raised.value) == f"{call}() got an unexpected keyword argument {key!r}{hint}"


def test_a_step_schedule_by_name_is_a_tenth_every_10_epochs_recorded_as_numbers():
    """"step" alone takes PyTorch's StepLR default gamma, 0.1, every 10 epochs; the Schedule holds that number (a
    checkpoint records it), so it equals the one given in full. (A Python float: one not given is of a subclass,
    which a copy gives back as not given.)"""
    import json

    step = gpunn.Schedule("step")
    assert [step.factor(e, 30) for e in (0, 9, 10, 19, 20)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert step == gpunn.Schedule("step", step_size=10, gamma=0.1) and isinstance(step.gamma, float)
    assert json.loads(json.dumps(dataclasses.asdict(step))) == {"name": "step", "step_size": 10, "gamma": 0.1,
                                                                "total_epochs": 0, "min_factor": 0.0,
                                                                "warmup_steps": 0, "pct_start": 0.3,
                                                                "div_factor": 25.0, "final_div_factor": 1e4,
                                                                "anneal": "cos", "total_steps": 0}
    assert gpunn.optim.make_schedule("step", gamma=None, step_size=None) == step


def test_an_exponential_schedule_without_its_gamma_is_refused_saying_what_to_give(teacher):
    """"exponential" alone was a tenth of the rate per epoch (lr 1e-3 was 1e-8 by epoch 6), where PyTorch's
    ExponentialLR has no default gamma: now it must be given one, by the Schedule, fit or an Ensemble's fit,
    before any step."""
    X, Y = teacher[0][:200], teacher[1][:200]
    said = r'exponential schedule needs its gamma.*gpunn\.Schedule\("exponential", gamma=0\.95\)'
    with pytest.raises(ValueError, match=said):
        gpunn.Schedule("Exponential")
    model = MLP([8, 4, 1], device="cpu", seed=0)
    before = model.params.copy()
    with pytest.raises(ValueError, match=said):
        model.fit(X, Y, epochs=1, schedule="exponential", verbose=False)
    numpy.testing.assert_array_equal(model.params, before)
    with pytest.raises(ValueError, match=said):
        gpunn.Ensemble([8, 4, 1], 2, device="cpu", seed=0).fit(X, Y, epochs=1, schedule="exponential", verbose=False)
    given = gpunn.Schedule("exponential", gamma=0.95)
    assert given.factor(2, 5) == pytest.approx(0.95**2)


def test_pytorchs_betas_pair_is_shown_as_gpunns_two_options():
    """Adam(betas=(0.9, 0.99)), PyTorch's, said "did you mean beta2?", which would set the one and drop the other."""
    with pytest.raises(TypeError, match=r"'betas' \(PyTorch's betas pair is two options here: "
                                        r"Adam\(beta1=0.9, beta2=0.99\)\)$"):
        gpunn.Adam(lr=1e-3, betas=(0.9, 0.99))
    with pytest.raises(TypeError, match=r"Adam\(beta1=0.9, beta2=0.99\)\)$"):  # a list too, as a config gives it
        gpunn.Adam(lr=1e-3, betas=[0.9, 0.99])  # (audit38b h16: "beta1=..., beta2=..." for a list)
    with pytest.raises(TypeError, match=r"'betas' \(betas is the optimizer's option: model.fit\(X, Y, "
                                        r"optimizer=gpunn.Adam\(beta1=0.9, beta2=0.99\)\)\)$"):
        MLP([2, 1], device="cpu").fit(numpy.zeros((4, 2)), numpy.zeros(4), betas=(0.9, 0.99), verbose=False)


def test_the_hints_table_of_optimizer_options_is_the_optimizers_own():
    """gpunn.hints.OPTIMIZER_OPTIONS (kept by hand: hints imports no optimizer) names every option of the SGD and
    Adam families but lr, each in a class that takes it, and PyTorch's betas in one that takes beta1 and beta2."""
    from gpunn.hints import OPTIMIZER_OPTIONS
    from gpunn.optim import OPTIMIZERS, options_of

    taken = {name for cls in OPTIMIZERS.values() for name in options_of(cls)} - {"lr"}
    assert set(OPTIMIZER_OPTIONS) - {"betas"} == taken
    for option, cls in OPTIMIZER_OPTIONS.items():
        wanted = {"beta1", "beta2"} if option == "betas" else {option}
        assert wanted <= set(options_of(getattr(gpunn, cls))), option


def test_a_schedules_option_given_to_fit_is_shown_in_its_schedule():
    """fit(schedule="exponential", gamma=0.95), what the refusal of a bare "exponential" invites, said only
    "unexpected keyword argument 'gamma'"; gpunn.hints.SCHEDULE_OPTIONS (kept by hand) names every Schedule
    field but the name, each with the schedules that read it."""
    from gpunn.hints import SCHEDULE_OPTIONS
    from gpunn.optim import SCHEDULE_FIELDS

    with pytest.raises(TypeError, match=r"'gamma' \(gamma is the exponential schedule's option: model\.fit\(X, Y, "
                                        r'schedule=gpunn\.Schedule\("exponential", gamma=0\.95\)\)\)$'):
        MLP([2, 1], device="cpu").fit(numpy.zeros((4, 2)), numpy.zeros(4), schedule="exponential", gamma=0.95)
    fields = {f.name for f in dataclasses.fields(Schedule)} - {"name"}
    assert set(SCHEDULE_OPTIONS) == fields == {f for used in SCHEDULE_FIELDS.values() for f in used}
    for option, readers in SCHEDULE_OPTIONS.items():
        assert set(readers) == {name for name, used in SCHEDULE_FIELDS.items() if option in used}, option


@pytest.mark.parametrize("given, shown", [
    (dict(gamma=0.5), ['Schedule("step", gamma=0.5)', 'Schedule("exponential", gamma=0.5)']),
    (dict(schedule="Step", gamma=0.5), ['Schedule("step", gamma=0.5)']),
    (dict(schedule=Schedule("exponential", gamma=0.9), gamma=0.5), ['Schedule("exponential", gamma=0.5)']),
    (dict(gamma=0.5, step_size=2), ['Schedule("step", gamma=0.5, step_size=2)']),
    (dict(schedule="cosine", gamma=0.5), ['Schedule("step", gamma=0.5)', 'Schedule("exponential", gamma=0.5)']),
    # an option of another schedule (cosine's) is not shown in these (audit38b h27)
    (dict(gamma=0.5, total_epochs=10), ['Schedule("step", gamma=0.5)', 'Schedule("exponential", gamma=0.5)']),
], ids=["alone", "step-named", "exponential-given", "with-step_size", "cosine-named", "with-total_epochs"])
def test_gamma_given_to_fit_is_shown_in_each_schedule_that_reads_it_or_the_one_meant(given, shown):
    """The hint named exponential's schedule alone, though a step schedule reads gamma too: fit(schedule="step",
    gamma=0.5) was shown Schedule("exponential", gamma=0.5). Each fit shown runs."""
    X, Y = numpy.zeros((4, 2)), numpy.zeros(4)
    model = MLP([2, 1], device="cpu", seed=0)
    with pytest.raises(TypeError) as caught:
        model.fit(X, Y, verbose=False, **given)
    said = str(caught.value)
    fits = [f"model.fit(X, Y, schedule=gpunn.{schedule})" for schedule in shown]
    readers = " and ".join(schedule.split('"')[1] for schedule in shown)
    words = f"is the {readers} schedule's option" if len(fits) == 1 else f"is an option of the {readers} schedules"
    assert said.endswith(f" {words}: {' or '.join(fits)})"), said
    for call in fits:
        history = eval(call[:-1] + ", epochs=2, verbose=False)", {"model": model, "X": X, "Y": Y, "gpunn": gpunn})
        assert history["epoch"] == [1, 2]


@pytest.mark.parametrize("given, shown", [
    (dict(step=3), 'Schedule("step", step_size=3)'),
    (dict(schedule="cosine", step=3), 'Schedule("step", step_size=3)'),
    (dict(schedule=Schedule("step", step_size=2, gamma=0.5), step=3), 'Schedule("step", step_size=3, gamma=0.5)'),
], ids=["alone", "cosine-named", "step-given"])
def test_step_given_to_fit_is_shown_as_the_step_schedules_step_size_keeping_the_given_schedules_options(given, shown):
    """fit(step=3) is step_size misspelt (PyTorch's StepLR's name; a prefix of it), a Schedule's option: the hint said
    "step_size is the schedule's option" where the call named cosine, which reads none, and the Schedule it showed
    dropped the given Schedule's gamma=0.5, so that the fit it showed trained at another rate. The fit shown runs the
    rates the call meant."""
    X, Y = numpy.zeros((4, 2)), numpy.zeros(4)
    model = MLP([2, 1], device="cpu", seed=0)
    with pytest.raises(TypeError) as caught:
        model.fit(X, Y, verbose=False, **given)
    call = f"model.fit(X, Y, schedule=gpunn.{shown})"
    assert str(caught.value).endswith(f"'step' (did you mean step_size? step_size is the step schedule's option: "
                                      f"{call})"), str(caught.value)
    history = eval(call[:-1] + ", lr=1.0, epochs=7, verbose=False)", {"model": model, "X": X, "Y": Y, "gpunn": gpunn})
    gamma = given["schedule"].gamma if "schedule" in given and not isinstance(given["schedule"], str) else 0.1
    numpy.testing.assert_allclose(history["lr"], [1, 1, 1, gamma, gamma, gamma, gamma**2])


@pytest.mark.parametrize("name, given, said", [
    ("cosine", dict(gamma=0.5), 'gamma=0.5 sets the factor of a step schedule (per decay) and of an exponential one '
                                '(per epoch), and this schedule is cosine: choose Schedule("step", gamma=0.5) or '
                                'Schedule("exponential", gamma=0.5) (or drop it)'),
    ("Constant", dict(step_size=5), "step_size=5 sets the epochs between a step schedule's decays, and this schedule "
                                    'is constant: choose Schedule("step", step_size=5) (or drop it)'),
    ("step", dict(min_factor=0.2), "min_factor=0.2 sets a cosine schedule's floor, and this schedule is step: "
                                   'choose Schedule("cosine", min_factor=0.2) (or drop it)'),
    ("exponential", dict(gamma=0.9, total_epochs=4), "total_epochs=4 sets a cosine schedule's period"),
])
def test_a_schedule_refuses_an_option_it_does_not_read_as_the_command_line_does(name, given, said):
    """Schedule("cosine", gamma=0.5) trained a cosine schedule without a word about its gamma, where gpunn train
    --schedule cosine --gamma 0.5 is refused. A copy (dataclasses.replace, which gives every field back) and a
    pasted repr make the schedule again."""
    with pytest.raises(ValueError) as caught:
        Schedule(name, **given)
    assert str(caught.value).startswith(said)
    with pytest.raises(ValueError, match="and this schedule is cosine"):
        MLP([2, 1], device="cpu").fit(numpy.zeros((4, 2)), numpy.zeros(4), schedule=Schedule("cosine", gamma=0.5))
    assert dataclasses.replace(Schedule("cosine", total_epochs=3), min_factor=0.2).min_factor == 0.2
    cosine = Schedule("cosine", min_factor=0.2)
    assert repr(cosine) == "Schedule(name='cosine', total_epochs=0, min_factor=0.2)"  # (the options it reads)
    assert eval(repr(cosine), {"Schedule": Schedule}) == cosine
    assert eval(repr(Schedule("step")), {"Schedule": Schedule}) == Schedule("step")


@pytest.mark.parametrize("name, option, default", [("cosine", "gamma", 0.1), ("constant", "step_size", 10),
                                                   ("exponential", "total_epochs", 0), ("step", "min_factor", 0.0)])
def test_a_schedule_refuses_an_option_it_does_not_read_given_at_its_default_value_too(name, option, default):
    """Schedule("cosine", gamma=0.1) passed silently (a value equal to the unset default was taken for a copy's);
    now an option given is refused whatever its value. Not given, it holds its default as before (every schedule
    records its gamma, 0.1 where it reads none), and dataclasses.replace, which gives every field back, keeps the
    defaults as not given: also to another schedule, where an option the caller gave is refused."""
    other = {"gamma": 0.5} if name == "exponential" else {}
    with pytest.raises(ValueError, match=rf"^{option}={default!r} .*and this schedule is {name}: choose "):
        Schedule(name, **other, **{option: default})
    made = Schedule(name, **other)
    assert getattr(made, option) == default and dataclasses.asdict(made)["gamma"] == other.get("gamma", 0.1)
    assert dataclasses.replace(made) == made
    assert dataclasses.replace(Schedule("step"), name=name, **other) == made  # (step's step_size and gamma: not given)
    if option != "gamma":  # (a reader of it, given it)
        given = {"step_size": 3, "total_epochs": 3, "min_factor": 0.5}[option]
        reader = Schedule("step" if option == "step_size" else "cosine", **{option: given})
        with pytest.raises(ValueError, match=rf"^{option}={given} "):
            dataclasses.replace(reader, name=name, **other)


def test_a_fit_option_given_to_the_constructor_is_shown_with_a_short_value_only():
    """validation_data's arrays are not spelled out in the fit the refusal shows."""
    with pytest.raises(TypeError, match=r"^MLP\(\) got an unexpected keyword argument 'validation_data' "
                                        r"\(validation_data is fit's option: model\.fit\(X, Y, validation_data=\.\.\.\)\)$"):
        MLP([2, 1], device="cpu", validation_data=(numpy.zeros((20, 2)), numpy.zeros(20)))


def test_a_subclass_of_a_callback_hints_its_own_keywords_and_takes_any_with_kwargs():
    class Every(gpunn.Callback):
        def __init__(self, every=1):
            self.every = every

    class Anything(gpunn.Callback):
        def __init__(self, **options):
            self.options = options

    with pytest.raises(TypeError, match=r"^Every\(\) got an unexpected keyword argument 'evry' \(did you mean every\?\)$"):
        Every(evry=2)
    assert Every(every=2).every == 2 and Anything(colour=1).options == {"colour": 1}


def test_a_callbacks_positional_only_parameter_given_by_keyword_is_pythons_refusal_and_named_in_no_hint():
    """A user's callback taking ``every`` positionally only, given every=2, was told "got an unexpected keyword
    argument 'every' (did you mean every?)", the parameter named as the one meant; a misspelling of it was told to pass
    it by keyword too (audit39b, from mutant m87). Python refuses the first in its own words; the second has no hint."""
    class Every(gpunn.Callback):
        def __init__(self, every, /, verbose=False):
            self.every = every

    with pytest.raises(TypeError, match=r"Every.__init__\(\) got some positional-only arguments passed as keyword "
                                        r"arguments: 'every'$"):
        Every(every=2)
    with pytest.raises(TypeError) as caught:
        Every(2, evry=2)
    assert str(caught.value) == "Every() got an unexpected keyword argument 'evry'"
    with pytest.raises(TypeError, match=r"'verbos' \(did you mean verbose\?\)$"):
        Every(2, verbos=True)
    assert Every(3, verbose=True).every == 3


def test_a_validation_set_of_one_row_is_refused_and_r2_of_one_row_is_nan():
    """R² is undefined on 1 row: fit reported 0 for such a validation set and trained on; scikit-learn refuses
    (its MLPRegressor) or gives NaN (r2_score). Every fit refuses it by the parameter; a score is NaN."""
    X, Y = datasets.make("teacher", 20, 3, 1, seed=0)
    model = MLP([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match=r"validation_fraction=0.05 of 20 rows gives a validation set of 1 row"):
        model.fit(X, Y, epochs=1, validation_fraction=0.05, verbose=False)
    with pytest.raises(ValueError, match=r"validation_data gives a validation set of 1 row"):
        model.fit(X, Y, epochs=1, validation_data=(X[:1], Y[:1]), verbose=False)
    with pytest.raises(ValueError, match=r"validation_data gives a validation set of 1 row"):
        model.fit(gpunn.data.synthetic("teacher", 20, 3, 1, seed=0), epochs=1,
                  validation_data=(X[:1], Y[:1]), verbose=False)
    ens = gpunn.Ensemble([3, 4, 1], 2, seed=0)
    with pytest.raises(ValueError, match=r"validation_fraction=0.05 of 20 rows gives a validation set of 1 row"):
        ens.fit(X, Y, epochs=1, validation_fraction=0.05, verbose=False)
    history = model.fit(X, Y, epochs=1, validation_fraction=0.1, verbose=False)  # 2 rows: scored
    assert numpy.isfinite(history["val_r2"][-1])
    with pytest.warns(metrics.UndefinedMetricWarning):  # (tests/test_validation_not_finite.py: its words)
        assert numpy.isnan(metrics.r2(numpy, Y[:1] + 1, Y[:1])) and numpy.isnan(model.score(X[:1], Y[:1]))
        assert all(numpy.isnan(ens.score(X[:1], Y[:1])))
    assert metrics.r2(numpy, Y[:2], Y[:2]) == 1.0
    # the data-parallel evaluators' logs from summed errors follow the same rule (one R² function)
    from gpunn.distributed.training import _metrics
    with pytest.warns(metrics.UndefinedMetricWarning):
        assert numpy.isnan(_metrics(numpy.ones(1), 1.0, numpy.zeros(1), 1, 1)["val_r2"])
    assert _metrics(numpy.zeros(1), 0.0, numpy.zeros(1), 2, 1)["val_r2"] == 1.0


def test_a_source_validation_set_of_one_row_is_refused_as_arrays_are(tmp_path):
    """A validation source of 1 row, or a source's held-out chunks of 1 row, trained on with val_r2 NaN every
    epoch while arrays of 1 row were refused (5e77b85)."""
    model = MLP([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match=r"validation_data \(SyntheticSource\) gives a validation set of 1 row"):
        model.fit(gpunn.data.synthetic("teacher", 20, 3, 1, seed=0), epochs=1,
                  validation_data=gpunn.data.synthetic("teacher", 1, 3, 1, seed=1), verbose=False)
    X, Y = datasets.make("teacher", 20, 3, 1, seed=0)
    numpy.save(tmp_path / "x.npy", X), numpy.save(tmp_path / "y.npy", Y)
    held = gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1, validation_fraction=0.05)
    with pytest.raises(ValueError, match=r"NpySource's validation_fraction=0.05 \(whole chunks\) gives a "
                                         r"validation set of 1 row"):
        model.fit(held, epochs=1, verbose=False)
    history = model.fit(gpunn.data.synthetic("teacher", 20, 3, 1, seed=0), epochs=1,
                        validation_data=gpunn.data.synthetic("teacher", 2, 3, 1, seed=1), verbose=False)
    assert numpy.isfinite(history["val_r2"][-1])


def test_the_bar_counts_a_held_out_synthetic_sources_training_rows():
    """A synthetic source's total_rows counts its held-out rows too; the bar (and its epoch time left) is over
    the rows trained on, as the epoch's batches are: it ended at 18,000 of 20,000 rows (each epoch's last batch, of 476 rows, moved it by
    500) where 2 x 8,976 rows were trained on."""
    from gpunn import data
    from gpunn.training.callbacks import ProgressBar

    source = data.synthetic("linear", 10_000, 3, 1, seed=0, chunk_rows=1024, validation_fraction=0.1, device="cpu")
    assert source.rows < source.total_rows
    bars = []

    class Watch(ProgressBar):
        def on_train_end(self, trainer):
            bars.append((self.bar.n, self.bar.total))
            super().on_train_end(trainer)

    MLP([3, 4, 1], device="cpu", seed=0).fit(source, epochs=2, batch_size=500, verbose=False,
                                             callbacks=[Watch(lines=False)])
    assert bars == [(2 * source.rows, 2 * source.rows)]


def test_evaluate_on_the_validation_rows_gives_the_logged_val_metrics_of_the_weights_the_model_holds():
    """MLP.evaluate's docstring: on the validation rows its metrics are the history's val_* exactly for the weights
    the model holds, the last epoch's, or the best epoch's where EarlyStopping restored them (it said the last
    epoch's alone)."""
    X, Y = datasets.make("teacher", 2048, 8, seed=0, device="cpu")
    Xv, Yv = datasets.make("teacher", 512, 8, seed=1, device="cpu")
    model = MLP([8, 16, 1], device="cpu", seed=0)
    history = model.fit(X, Y, epochs=2, batch_size=128, validation_data=(Xv, Yv), verbose=False)
    logs = model.evaluate(Xv, Yv)
    names = ("loss", "mse", "mae", "r2")
    assert [logs[k] for k in names] == [history[f"val_{k}"][-1] for k in names]
    model = MLP([8, 16, 1], device="cpu", seed=0)
    stopper = gpunn.EarlyStopping(patience=1, restore_best_weights=True)
    history = model.fit(X, Y, epochs=8, batch_size=128, lr=0.3, validation_data=(Xv, Yv), callbacks=[stopper],
                        verbose=False)
    best = int(numpy.argmin(history["val_loss"]))
    assert best < len(history["val_loss"]) - 1  # (restored: the last epoch's weights are not the ones held)
    assert model.evaluate(Xv, Yv)["loss"] == history["val_loss"][best] != history["val_loss"][-1]
