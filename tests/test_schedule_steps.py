"""Learning-rate schedules stepped per optimizer step: a linear warm-up (warmup_steps) before any per-epoch schedule,
and "onecycle", against pure-Python transcriptions of PyTorch's LinearLR and OneCycleLR (torch itself is not needed:
tests/test_torch_agreement.py compares with it where it is installed). The rate of a step depends only on its global
index epoch x batches per epoch + batch, so a resume part-way through an epoch trains as the run it continues."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy
import pytest

import gpunn
import gpunn.model
from gpunn import Callback, Schedule
from gpunn.optim import SCHEDULES


# ---- PyTorch's schedulers, transcribed (torch/optim/lr_scheduler.py), float64 --------------------------------------
class TorchOneCycleLR:
    """OneCycleLR(optimizer, max_lr, total_steps, pct_start, anneal_strategy, div_factor, final_div_factor,
    three_phase=False, cycle_momentum=False): its __init__ and get_lr; ``lr`` the group's rate, ``step()`` after
    every batch."""

    def __init__(self, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
                 final_div_factor=1e4):
        self.total_steps = total_steps
        self.phases = [
            {"end_step": float(pct_start * total_steps) - 1, "start_lr": "initial_lr", "end_lr": "max_lr"},
            {"end_step": total_steps - 1, "start_lr": "max_lr", "end_lr": "min_lr"},
        ]
        self.group = {"initial_lr": max_lr / div_factor, "max_lr": max_lr}
        self.group["min_lr"] = self.group["initial_lr"] / final_div_factor
        self.anneal = self._annealing_cos if anneal_strategy == "cos" else self._annealing_linear
        self.last_epoch = 0
        self.lr = self.get_lr()

    @staticmethod
    def _annealing_cos(start, end, pct):
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out

    @staticmethod
    def _annealing_linear(start, end, pct):
        return (end - start) * pct + start

    def get_lr(self):
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total steps is "
                             f"{self.total_steps}")
        start_step = 0
        for i, phase in enumerate(self.phases):
            end_step = phase["end_step"]
            if step_num <= end_step or i == len(self.phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                return self.anneal(self.group[phase["start_lr"]], self.group[phase["end_lr"]], pct)
            start_step = phase["end_step"]

    def step(self):
        self.last_epoch += 1
        self.lr = self.get_lr()


class TorchLinearLR:
    """LinearLR(optimizer, start_factor, end_factor, total_iters), its chainable get_lr, on a shared ``group``."""

    def __init__(self, group, start_factor, end_factor=1.0, total_iters=5):
        self.group, self.start_factor, self.end_factor, self.total_iters = group, start_factor, end_factor, total_iters
        self.last_epoch = 0
        group["lr"] = group["lr"] * start_factor

    def step(self):
        self.last_epoch += 1
        lr, t = self.group["lr"], self.last_epoch
        if t > self.total_iters:
            return
        self.group["lr"] = lr * (1.0 + (self.end_factor - self.start_factor) / (
            self.total_iters * self.start_factor + (t - 1) * (self.end_factor - self.start_factor)))


class TorchStepLR:
    """StepLR(optimizer, step_size, gamma), its chainable get_lr, stepped after every epoch."""

    def __init__(self, group, step_size, gamma):
        self.group, self.step_size, self.gamma, self.last_epoch = group, step_size, gamma, 0

    def step(self):
        self.last_epoch += 1
        if self.last_epoch % self.step_size == 0:
            self.group["lr"] *= self.gamma


def torch_warm_step_rates(lr, warmup, step_size, gamma, epochs, per_epoch):
    """Each batch's rate under LinearLR(start_factor=1/N, total_iters=N - 1) stepped after every batch and StepLR
    after every epoch, as PyTorch's users chain a warm-up with a schedule."""
    group = {"lr": lr}
    warm = TorchLinearLR(group, 1 / warmup, 1.0, warmup - 1) if warmup > 1 else None
    decay = TorchStepLR(group, step_size, gamma)
    rates = []
    for _ in range(epochs):
        for _ in range(per_epoch):
            rates.append(group["lr"])
            if warm is not None:
                warm.step()
        decay.step()
    return rates


# ---- Schedule: the per-step factor ----------------------------------------------------------------------------------
ONECYCLES = [dict(), dict(pct_start=0.25, anneal="linear"), dict(div_factor=10.0, final_div_factor=100.0),
             dict(pct_start=0.5, div_factor=4.0, anneal="Cos")]


@pytest.mark.parametrize("total", [7, 40, 101])
@pytest.mark.parametrize("options", ONECYCLES, ids=str)
def test_onecycle_is_pytorchs_onecyclelr_step_by_step(total, options):
    schedule = Schedule("onecycle", **options)
    theirs = TorchOneCycleLR(0.02, total, **{{"anneal": "anneal_strategy"}.get(k, k): v.lower() if k == "anneal"
                                             else v for k, v in options.items()})
    for step in range(total):
        ours = 0.02 * schedule.rate_factor(step // 10, -(-total // 10), step, total)
        # (a linear anneal's last steps cancel, (end - start) x pct + start: an ulp of lr, in ours and in theirs)
        assert ours == pytest.approx(theirs.lr, rel=1e-13, abs=1e-15 * 0.02), step
        theirs.step()
    assert schedule.per_step


def test_onecycle_rises_to_lr_at_its_peak_and_ends_at_lr_over_div_factor_over_final_div_factor():
    schedule = Schedule("onecycle", pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    factors = [schedule.rate_factor(0, 1, step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 25, rel=1e-14)
    assert max(factors) == factors[29] == 1.0  # step pct_start x T - 1
    assert factors[-1] == pytest.approx(1 / 25 / 1e4, rel=1e-12)
    assert all(a < b for a, b in zip(factors[:29], factors[1:30]))
    assert all(a > b for a, b in zip(factors[29:], factors[30:]))
    with pytest.raises(ValueError, match="step 101 is past the onecycle schedule's total_steps, 100"):
        schedule.rate_factor(0, 1, 100, 100)
    own = Schedule("onecycle", total_steps=50)  # its own length, whatever the run's
    assert own.rate_factor(0, 1, 49, 1000) == pytest.approx(1 / 25 / 1e4, rel=1e-12)


@pytest.mark.parametrize("warmup", [1, 2, 5, 13])
def test_a_warm_up_chained_with_a_step_schedule_is_pytorchs_linearlr_then_steplr(warmup):
    """warm(s) = min(1, (s + 1) / N): LinearLR(start_factor=1/N, end_factor=1, total_iters=N - 1) per batch, StepLR
    per epoch; the warm-up reaches lr at step N - 1."""
    per_epoch, epochs = 4, 5
    schedule = Schedule("step", step_size=2, gamma=0.5, warmup_steps=warmup)
    theirs = torch_warm_step_rates(0.1, warmup, 2, 0.5, epochs, per_epoch)
    ours = [0.1 * schedule.rate_factor(s // per_epoch, epochs, s, epochs * per_epoch)
            for s in range(epochs * per_epoch)]
    assert ours == pytest.approx(theirs, rel=1e-14, abs=0)
    assert ours[warmup - 1] == 0.1 * schedule.factor((warmup - 1) // per_epoch, epochs)
    assert schedule.per_step


@pytest.mark.parametrize("name", [name for name in SCHEDULES if name != "onecycle"])
def test_without_a_warm_up_a_per_epoch_schedules_step_factor_is_its_epochs_float(name):
    schedule = Schedule(name, **({"gamma": 0.7} if name == "exponential" else {}))
    assert not schedule.per_step and schedule.warmup_steps == 0
    for epoch in range(6):
        for step in (epoch * 3, epoch * 3 + 2):
            assert schedule.rate_factor(epoch, 6, step, 18) is schedule.factor(epoch, 6) or \
                schedule.rate_factor(epoch, 6, step, 18) == schedule.factor(epoch, 6)


def test_onecycles_factor_per_epoch_is_refused_saying_its_rate_is_per_step():
    with pytest.raises(ValueError, match="changes every optimizer step: rate_factor"):
        Schedule("onecycle").factor(0, 3)


@pytest.mark.parametrize("given, said", [  # (regular expressions)
    (dict(name="onecycle", pct_start=1.0), r"pct_start must be in \(0, 1\), got 1.0"),
    (dict(name="onecycle", pct_start=0), r"pct_start must be in \(0, 1\), got 0"),
    (dict(name="onecycle", div_factor=0), "div_factor must be a positive finite number, got 0"),
    (dict(name="onecycle", final_div_factor=math.inf), "final_div_factor must be a positive finite number, got inf"),
    (dict(name="onecycle", anneal="cosine"), "unknown anneal 'cosine'; choose one of: cos, linear"),
    (dict(name="onecycle", total_steps=-1), "total_steps must be a non-negative integer, got -1"),
    (dict(name="cosine", warmup_steps=2.5), "warmup_steps must be a non-negative integer, got 2.5"),
    (dict(name="onecycle", warmup_steps=10), r"warmup_steps=10 sets a linear warm-up over the run's first optimizer "
                                             r"steps \(onecycle has its own warm phase, pct_start\), and this "
                                             r'schedule is onecycle: choose Schedule\("constant", warmup_steps=10\) or '
                                             r'Schedule\("step", warmup_steps=10\) or .* \(or drop it\)$'),
    (dict(name="cosine", pct_start=0.3), r"pct_start=0.3 sets the share of a onecycle schedule's steps spent rising to "
                                         r"the peak, and this schedule is cosine: choose Schedule\(\"onecycle\", "
                                         r"pct_start=0.3\) \(or drop it\)"),
    (dict(name="step", anneal="cos"), "anneal='cos' sets how a onecycle schedule moves between its rates"),
    (dict(name="constant", total_steps=0), "total_steps=0 sets a onecycle schedule's length in optimizer steps"),
])
def test_a_per_step_option_out_of_range_or_given_to_a_schedule_that_does_not_read_it_is_refused(given, said):
    with pytest.raises(ValueError, match=said):
        Schedule(**given)


def test_per_step_options_go_through_repr_copies_and_a_checkpoints_record():
    onecycle = Schedule("onecycle", pct_start=0.4, anneal="LINEAR", total_steps=90)
    assert onecycle.anneal == "linear" and type(onecycle.total_steps) is int
    assert repr(onecycle) == ("Schedule(name='onecycle', pct_start=0.4, div_factor=25.0, final_div_factor=10000.0, "
                              "anneal='linear', total_steps=90)")
    warm = Schedule("cosine", warmup_steps=8)
    assert repr(warm) == "Schedule(name='cosine', total_epochs=0, min_factor=0.0, warmup_steps=8)"
    assert repr(Schedule("cosine")) == "Schedule(name='cosine', total_epochs=0, min_factor=0.0)"  # (none: unshown)
    for schedule in (onecycle, warm):
        assert eval(repr(schedule), {"Schedule": Schedule}) == schedule
        record = json.loads(json.dumps(dataclasses.asdict(schedule)))
        assert Schedule.recorded(record) == schedule
        assert dataclasses.replace(Schedule.recorded(record)) == schedule
    assert dataclasses.replace(warm, name="step") == Schedule("step", warmup_steps=8)
    # a record from before per-step schedules holds none of their fields: their defaults
    old = {"name": "step", "step_size": 3, "gamma": 0.5, "total_epochs": 0, "min_factor": 0.0}
    assert Schedule.recorded(old) == Schedule("step", step_size=3, gamma=0.5)


BEFORE_PER_STEP = {"name", "step_size", "gamma", "total_epochs", "min_factor"}  # the fields gpunn 0.1.0 checked for


@pytest.mark.parametrize("schedule, recorded", [
    (Schedule("constant"), BEFORE_PER_STEP), (Schedule("step", step_size=2, gamma=0.5), BEFORE_PER_STEP),
    (Schedule("exponential", gamma=0.9), BEFORE_PER_STEP), (Schedule("cosine", warmup_steps=0), BEFORE_PER_STEP),
    (Schedule("cosine", warmup_steps=5), BEFORE_PER_STEP | {"warmup_steps"}),
    (Schedule("onecycle", total_steps=40), BEFORE_PER_STEP | set(gpunn.optim.ONECYCLE_FIELDS))],
    ids=lambda value: repr(sorted(value)) if isinstance(value, set) else repr(value))  # (a set's repr: hash order,
# which differs between pytest-xdist's workers, whose collections must agree)
def test_a_checkpoint_records_a_per_step_field_only_where_the_run_uses_it(tmp_path, schedule, recorded):
    """A run without a per-step rate records its schedule as gpunn did before per-step schedules, exactly the five
    fields an older gpunn checked for (it refused a file with more: "invalid schedule"), as an optimizer's config
    leaves clip_norm out where it is unset; a warm-up records warmup_steps, onecycle its options (not a warm-up of
    0); each loads as the schedule it ran."""
    from gpunn import checkpoint as gio

    X, Y = data()
    path = tmp_path / "run.npz"
    gpunn.MLP([4, 8, 1], seed=0).fit(X, Y, epochs=2, batch_size=20, lr=0.01, optimizer="sgd", schedule=schedule,
                                     callbacks=[gpunn.ModelCheckpoint(str(path))], verbose=False)
    assert set(gio.read_meta(path)["training"]["settings"]["schedule"]) == recorded
    assert gpunn.load_checkpoint(path, device="cpu").settings.schedule == schedule


# ---- the training loop ----------------------------------------------------------------------------------------------
class Rates(Callback):
    """Each step's rate, as the loop gave it (trainer.lr after the step), by (epoch, batch)."""

    def __init__(self):
        self.rates = {}

    def on_epoch_begin(self, trainer, epoch):
        self.epoch = epoch

    def on_batch_end(self, trainer, batch):
        lr = trainer.lr
        self.rates[self.epoch, batch] = lr.tolist() if hasattr(lr, "tolist") else lr


def data(rows=200, inputs=4, outputs=1, seed=0):
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((rows, inputs))
    return X, numpy.sin(X[:, :outputs]) + 0.1 * rng.standard_normal((rows, outputs))


def expected_rates(schedule, lr, epochs, per_epoch):
    return [lr * schedule.rate_factor(s // per_epoch, epochs, s, epochs * per_epoch)
            for s in range(epochs * per_epoch)]


class RecordingSGD(gpunn.SGD):
    """SGD recording the rate each step is given (the loop's optimizer.step path)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.given = []

    def step(self, params, grads, lr):
        self.given.append(lr)
        super().step(params, grads, lr)


@pytest.mark.parametrize("schedule", [Schedule("onecycle"), Schedule("cosine", warmup_steps=7),
                                      Schedule("onecycle", pct_start=0.5, anneal="linear", total_steps=40)], ids=repr)
def test_each_step_gets_its_rate_and_the_history_the_epochs_last(schedule):
    X, Y = data()  # 200 rows at batch 32: 7 batches an epoch, the last of 8 rows
    opt, rates = RecordingSGD(lr=0.05, momentum=0.9), Rates()
    h = gpunn.MLP([4, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=4, batch_size=32, optimizer=opt,
                                                       schedule=schedule, callbacks=[rates], verbose=False)
    want = expected_rates(schedule, 0.05, 4, 7)
    assert opt.given == want
    assert list(rates.rates.values()) == want
    assert h["lr"] == [want[7 * e + 6] for e in range(4)]
    if schedule.name == "cosine":  # lr reached at step N - 1
        assert want[6] == 0.05 and want[:6] == pytest.approx([0.05 * (s + 1) / 7 for s in range(6)], rel=1e-15)


def test_onecycles_peak_is_the_optimizers_lr_and_its_last_step_lr_over_both_factors():
    X, Y = data()
    opt = RecordingSGD(lr=0.04)
    gpunn.MLP([4, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=10, batch_size=20, optimizer=opt,
                                                   schedule=Schedule("onecycle", pct_start=0.3), verbose=False)
    assert len(opt.given) == 100
    assert max(opt.given) == opt.given[29] == 0.04 and opt.given[0] == pytest.approx(0.04 / 25, rel=1e-14)
    assert opt.given[-1] == pytest.approx(0.04 / 25 / 1e4, rel=1e-12)


def test_per_epoch_schedules_without_a_warm_up_train_as_before_bit_for_bit():
    """warmup_steps=0 is no warm-up: the rate computed once an epoch, the same floats as ever."""
    X, Y = data()
    runs = []
    for schedule in (Schedule("cosine"), Schedule("cosine", warmup_steps=0)):
        opt = RecordingSGD(lr=0.05)
        model = gpunn.MLP([4, 8, 1], device="cpu", seed=0)
        model.fit(X, Y, epochs=3, batch_size=32, optimizer=opt, schedule=schedule, verbose=False)
        runs.append((model.params.copy(), opt.given))
    numpy.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] == [0.05 * Schedule("cosine").factor(s // 7, 3) for s in range(21)]


def test_a_run_longer_than_onecycles_total_steps_is_refused_before_it_trains_naming_both(tmp_path, interrupt_at):
    X, Y = data()
    model = gpunn.MLP([4, 8, 1], device="cpu", seed=0)
    before = model.params.copy()
    with pytest.raises(ValueError, match=r"^this run takes 28 optimizer steps and the onecycle schedule's "
                                         r"total_steps is 27: give total_steps=28 or more \(0: the run's\)"):
        model.fit(X, Y, epochs=4, batch_size=32, schedule=Schedule("onecycle", total_steps=27), verbose=False)
    numpy.testing.assert_array_equal(model.params, before)
    # a resume that raises the epochs past it, likewise
    path = tmp_path / "run.npz"
    model.fit(X, Y, epochs=2, batch_size=32, schedule=Schedule("onecycle", total_steps=20), verbose=False,
              callbacks=[gpunn.ModelCheckpoint(path)])
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    with pytest.raises(ValueError, match="this run takes 21 optimizer steps and the onecycle schedule's total_steps "
                                         "is 20"):
        ckpt.resume(X, Y, epochs=3, verbose=False, checkpoint=False)


@pytest.mark.parametrize("schedule", [Schedule("onecycle"), Schedule("step", step_size=1, gamma=0.5, warmup_steps=9)],
                         ids=repr)
def test_a_resume_part_way_through_an_epoch_trains_the_uninterrupted_runs_weights(tmp_path, interrupt_at, schedule):
    X, Y = data()
    fit = dict(epochs=3, batch_size=32, optimizer="adam", lr=0.01, schedule=schedule, verbose=False, seed=3)
    reference = gpunn.MLP([4, 8, 1], device="cpu", seed=1)
    whole = reference.fit(X, Y, **fit)
    path = tmp_path / "run.npz"
    cut = gpunn.MLP([4, 8, 1], device="cpu", seed=1)
    cut.fit(X, Y, callbacks=[interrupt_at(1, 2), gpunn.ModelCheckpoint(path)], **fit)  # after step 7 + 3
    ckpt = gpunn.load_checkpoint(path, device="cpu")
    assert (ckpt.state.epoch, ckpt.state.batch) == (1, 3)
    rates = Rates()
    resumed = ckpt.resume(X, Y, verbose=False, checkpoint=False, callbacks=[rates])
    numpy.testing.assert_array_equal(ckpt.model.params, reference.params)
    assert resumed["lr"] == whole["lr"]
    assert rates.rates[1, 3] == expected_rates(schedule, 0.01, 3, 7)[10]


def test_the_one_call_numba_step_takes_each_steps_rate(monkeypatch):
    """A small net with Adam on the CPU steps in one Numba call (gpunn.ops.mlp_step): given each step's rate, it
    trains the generic step's bits."""
    from gpunn.ops import mlp_step

    calls = []

    def counted(*args):
        result = mlp_step.one_call_step(*args)
        calls.append(result is not None)
        return result

    X, Y = (a.astype("float32") for a in data())

    def run():
        model = gpunn.MLP([4, 16, 1], device="cpu", seed=0)
        h = model.fit(X, Y, epochs=3, batch_size=32, optimizer="adam", lr=0.01, schedule=Schedule("onecycle"),
                      verbose=False)
        return model.params.copy(), h["loss"]

    monkeypatch.setattr(gpunn.model, "one_call_step", counted)
    fused = run()
    if not any(calls):
        pytest.skip("the one-call step does not run here (no Numba, or not NumPy's BLAS)")
    monkeypatch.setattr(gpunn.model, "one_call_step", lambda *args: None)
    generic = run()
    numpy.testing.assert_array_equal(fused[0], generic[0])
    assert fused[1] == generic[1]


def test_graph_true_on_the_cpu_writes_each_steps_rate_into_its_device_state():
    """The eager form of the captured step reads the rate from its device state (GraphTrainer._set_lr: state[1]),
    written where the rate changes: every step here; it trains the ordinary step's bits."""
    X, Y = data()
    runs, seen = [], []

    class DeviceRate(Callback):
        def on_batch_end(self, trainer, batch):
            seen.append((float(trainer.model.graph_trainer.state[1]), trainer.lr))

    for graph in (False, True):
        model = gpunn.MLP([4, 8, 1], device="cpu", seed=0, graph=graph)
        with pytest.warns(gpunn.training.graph.GraphWarning) if graph else _nothing():
            model.fit(X, Y, epochs=2, batch_size=32, optimizer="adam", lr=0.01, schedule=Schedule("onecycle"),
                      verbose=False, callbacks=[DeviceRate()] if graph else [])
        runs.append(model.params.copy())
    numpy.testing.assert_array_equal(runs[0], runs[1])
    assert [device for device, _ in seen] == [lr for _, lr in seen] == expected_rates(Schedule("onecycle"), 0.01, 2, 7)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_an_ensemble_member_k_steps_at_its_lr_times_the_factor():
    X, Y = data()
    lrs = [0.01, 0.02, 0.05]
    table, rates = [], Rates()

    class Table(Callback):
        def on_batch_end(self, trainer, batch):
            table.append(trainer.optimizer.rates.column(0).tolist())  # (the LR column the member kernels read)

    ens = gpunn.Ensemble([4, 8, 1], 3, device="cpu", seed=0)
    h = ens.fit(X, Y, epochs=3, batch_size=32, optimizer="sgd", lr=lrs, schedule=Schedule("onecycle"), seed=5,
                callbacks=[rates, Table()], verbose=False)
    factors = [Schedule("onecycle").rate_factor(s // 7, 3, s, 21) for s in range(21)]
    want = [[lr * f for lr in lrs] for f in factors]
    assert list(rates.rates.values()) == table == want
    assert h["lr"] == [want[7 * e + 6] for e in range(3)]
    for k, lr in enumerate(lrs):  # member k trains as its own model at its own rate
        twin = gpunn.MLP([4, 8, 1], device="cpu", seed=ens.seeds[k])
        twin.fit(X, Y, epochs=3, batch_size=32, optimizer="sgd", lr=lr, schedule=Schedule("onecycle"), seed=5,
                 verbose=False)
        numpy.testing.assert_allclose(ens.member_params[k], twin.params, rtol=1e-5)  # (float32: the contract's)


def test_an_iterable_of_batches_knows_its_steps_and_trains_a_onecycle():
    """An iterable source counts its rows (or is told them), so its batches per epoch are known: onecycle takes the
    run's steps from them; rows it was told wrongly are refused as ever."""
    X, Y = data()
    pieces = [(X[i:i + 50], Y[i:i + 50]) for i in range(0, 200, 50)]
    opt = RecordingSGD(lr=0.05)
    gpunn.MLP([4, 8, 1], device="cpu", seed=0).fit(gpunn.data.iterable(pieces), epochs=3, batch_size=32,
                                                   optimizer=opt, schedule="onecycle", verbose=False)
    assert opt.given == expected_rates(Schedule("onecycle"), 0.05, 3, 7)
    with pytest.raises(gpunn.data.DataError, match="the iterable gave 200 rows in epoch 1; rows=150 was expected"):
        gpunn.MLP([4, 8, 1], device="cpu", seed=0).fit(gpunn.data.iterable(pieces, rows=150), epochs=3,
                                                       batch_size=32, verbose=False)  # (a rate once an epoch)
    # a per-step schedule's step past the rows said (the next epoch's step, or past onecycle's last: "optimizer step 6
    # is past the onecycle schedule's total_steps, 5" in a run of 1 epoch) is refused as the source's, when it comes
    for epochs in (1, 3):
        with pytest.raises(gpunn.data.DataError, match=r"^the source gave more than its 150 rows \(5 batches of 32\) "
                                                       r"in epoch 1, which a per-step schedule counts its steps by"):
            gpunn.MLP([4, 8, 1], device="cpu", seed=0).fit(gpunn.data.iterable(pieces, rows=150), epochs=epochs,
                                                           batch_size=32, schedule="onecycle", verbose=False)


def test_reduce_lr_on_plateau_bounds_the_next_epochs_first_step_by_min_lr():
    """ReduceLROnPlateau's min_lr bounds the rate it leads to: with a per-step schedule, that of the next epoch's
    first step (a warm-up's, onecycle's rise), not the epoch's that ended."""
    X, Y = data()
    opt = RecordingSGD(lr=0.05)
    plateau = gpunn.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=1e9, min_lr=0.01)
    gpunn.MLP([4, 8, 1], device="cpu", seed=0).fit(X, Y, epochs=4, batch_size=32, optimizer=opt,
                                                   schedule=Schedule("onecycle", pct_start=0.9), verbose=False,
                                                   callbacks=[plateau])
    # no epoch after the first (the best so far) improves by 1e9: after each the scale falls, bounded so that the next
    # epoch starts at min_lr (onecycle rises through these epochs: the epoch that ended started lower)
    unscaled = expected_rates(Schedule("onecycle", pct_start=0.9), 0.05, 4, 7)
    assert opt.given[:14] == unscaled[:14]
    assert unscaled[14] * 0.1 < 0.01 < unscaled[14] and unscaled[13] < unscaled[14]  # (bounded by the next step's)
    for epoch in (2, 3):
        assert opt.given[7 * epoch] == pytest.approx(0.01, rel=1e-12)


# ---- on the GPU's code paths: tests/fakecupy (any machine), a GPU (marked gpu) -------------------------------------
class DeviceRates(Callback):
    """Each step's rate as the device holds it for the step just taken, beside trainer.lr: one model's graph state
    (GraphTrainer.state[1]), an Ensemble's table's LR column (its device copy, which the member kernels read)."""

    def __init__(self):
        self.seen = []

    def on_batch_end(self, trainer, batch):
        graph = trainer.model.graph_trainer
        if hasattr(trainer.optimizer, "rates"):
            held = trainer.model.backend.to_host(trainer.optimizer.rates.device_copy)[:, 0].tolist()
        else:
            held = float(trainer.model.backend.to_host(graph.state)[1])
        self.seen.append((held, trainer.lr.tolist() if hasattr(trainer.lr, "tolist") else trainer.lr))


def graph_runs(make, fit):
    """(the eager run's params and history, the captured run's, and the device's rate at each captured step)."""
    runs, rates = [], DeviceRates()
    for graph in (False, None):
        model = make(graph)
        h = model.fit(**fit, callbacks=[rates] if graph is None else [])
        runs.append((model.backend.to_host(model.params), h))
    assert model.graph_trainer.captured, model.graph_trainer.reason
    return runs, rates.seen


def check_graph_rates(device, dtype, exact):
    X, Y = gpunn.datasets.make("teacher", n_samples=300, n_features=6, n_outputs=2, seed=0, device=device,
                               dtype=dtype)
    fit = dict(X=X, Y=Y, epochs=3, batch_size=64, optimizer="adam", lr=0.01, seed=2, verbose=False,
               schedule=Schedule("onecycle", pct_start=0.4))
    runs, seen = graph_runs(lambda graph: gpunn.MLP([6, 32, 2], device=device, seed=0, graph=graph, dtype=dtype),
                            fit)
    want = expected_rates(fit["schedule"], 0.01, 3, 5)
    assert [held for held, _ in seen] == [lr for _, lr in seen] == want  # written every step, in float64
    (eager, h_eager), (graphed, h_graph) = runs
    if exact:
        numpy.testing.assert_array_equal(graphed, eager)
    else:
        numpy.testing.assert_allclose(graphed, eager, rtol=1e-4, atol=1e-6)
    assert h_graph["lr"] == h_eager["lr"] == [want[4], want[9], want[14]]

    lrs = [0.01, 0.003]
    fit = dict(fit, lr=lrs, schedule=Schedule("cosine", warmup_steps=8))
    runs, seen = graph_runs(lambda graph: gpunn.Ensemble([6, 16, 2], 2, device=device, seed=0, graph=graph,
                                                         dtype=dtype), fit)
    want = [[lr * f for lr in lrs] for f in expected_rates(fit["schedule"], 1.0, 3, 5)]
    assert [held for held, _ in seen] == want
    assert [lr for _, lr in seen] == want
    (eager, _), (graphed, _) = runs
    if exact:
        numpy.testing.assert_array_equal(graphed, eager)
    else:
        numpy.testing.assert_allclose(graphed, eager, rtol=1e-4, atol=1e-6)


def test_the_captured_cuda_graph_replays_each_steps_rate_on_the_stand_in(fake_cupy):
    """One model's captured step reads its rate from state[1] (GraphTrainer._set_lr), an Ensemble's from its members'
    table (EnsembleGraphTrainer._set_lr: set_rates, then the table's copy to the device): both rewritten before each
    replay where the rate changes, every step here. The stand-in's capture replays the recorded launches: the
    captured run is the eager run bit for bit."""
    check_graph_rates("cuda", "float64", exact=True)


@pytest.mark.gpu
def test_the_captured_cuda_graph_replays_each_steps_rate(gpu):
    """As above on a GPU (or GPUNN_FAKE_CUPY=1 -m gpu): the graph's products are cuBLAS calls on its own handle, so
    the captured run agrees with the eager one to float32 rounding; the rates are the same floats."""
    check_graph_rates("cuda", "float32", exact=False)


def test_data_parallel_ranks_take_the_global_steps_rates(monkeypatch, fake_cupy):
    """Two ranks as threads (tests/thread_ranks.py), each a piece of a global batch of 16: a run's steps are its
    global batches, so the warm-up and the onecycle take the one process's rates at batch 16 and train its weights
    (to summation order)."""
    from thread_ranks import run_ranks

    X, Y = data(96)
    for schedule in (Schedule("onecycle"), Schedule("step", step_size=1, gamma=0.5, warmup_steps=5)):
        def fit(rank):
            opt = RecordingSGD(lr=0.05, momentum=0.9)
            model = gpunn.MLP([4, 8, 1], dtype="float64", device=f"cuda:{rank}", seed=1)
            model.fit(X, Y, epochs=3, batch_size=8, optimizer=opt, distributed=True, verbose=False, seed=2,
                      schedule=schedule)
            return model.backend.to_host(model.params), opt.given

        ref = gpunn.MLP([4, 8, 1], dtype="float64", device="cuda:0", seed=1, graph=False)  # (its steps: opt.step)
        opt = RecordingSGD(lr=0.05, momentum=0.9)
        ref.fit(X, Y, epochs=3, batch_size=16, optimizer=opt, verbose=False, seed=2, schedule=schedule)
        assert opt.given == expected_rates(schedule, 0.05, 3, 6)
        outcomes, aborted = run_ranks(monkeypatch, 2, fit, timeout=20.0)
        assert aborted == [] and all(exc is None for _, exc in outcomes), outcomes
        for (params, given), _ in outcomes:
            assert given == opt.given
            numpy.testing.assert_allclose(params, ref.backend.to_host(ref.params), rtol=1e-10, atol=1e-12)


def test_a_pinned_slot_is_written_again_only_after_its_last_copy_is_done(fake_cupy, monkeypatch):
    """gpunn.ops.pinned_writes: each write is an asynchronous copy from its own slot of pinned memory; a slot is
    reused (here a ring of 2, so every third write) after the host waited for its last copy's event, which the
    stand-in's stream-order check (tests/fakecupy/ordering.py: pinned bytes written while a copy from them may be in
    flight) requires: without the wait this test fails there."""
    from gpunn.ops.pinned_writes import PinnedWrites

    monkeypatch.setattr(PinnedWrites, "SLOTS", 2)
    target = fake_cupy.zeros(3)
    writes = PinnedWrites(target[1:2])
    for value in (0.5, 0.25, 0.125, 2.0, 3.0):  # (no read between them: a read would wait for the stream)
        writes.write(value)
    assert fake_cupy.asnumpy(target).tolist() == [0.0, 3.0, 0.0]


def test_a_dropped_pinned_ring_waits_for_its_copies_before_going_back_to_the_pool(fake_cupy):
    """Dropped (a CUDA graph's trainer replaced, a members' table let go), the ring goes back to CuPy's pinned memory
    pool, which hands it to the next empty_pinned at once: only after the host waited for each slot's last copy. The
    stand-in's stream-order check (a pinned buffer freed while a copy from it may be in flight) fails this test
    without the finalizer's wait, as it failed test_cublas_errors' fallback, whose trainer it dropped."""
    import gc

    from gpunn.ops.pinned_writes import PinnedWrites

    target = fake_cupy.zeros(4)
    writes = PinnedWrites(target[1:3])
    writes.write([0.5, 0.25])
    writes.write([2.0, 3.0])
    del writes
    gc.collect()
    assert fake_cupy.asnumpy(target).tolist() == [0.0, 2.0, 3.0, 0.0]
