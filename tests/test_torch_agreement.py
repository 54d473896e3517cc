"""Where PyTorch is installed (the bench extra; CI has none and skips): gpunn's loss, gradients and whole
training runs equal torch's autograd and torch.optim in float64, on the CPU."""
import numpy
import pytest

import gpunn
from gpunn import MLP

torch = pytest.importorskip("torch")
F = torch.nn.functional
TORCH_ACTIVATIONS = {"identity": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                     "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "softplus": F.softplus,
                     "gelu": lambda z: F.gelu(z, approximate="tanh"), "silu": F.silu, "elu": F.elu}


def _data(rows=37, n_in=5, n_out=3, seed=1):
    rng = numpy.random.default_rng(seed)
    return rng.standard_normal((rows, n_in)), rng.standard_normal((rows, n_out))


def _torch_forward(X, Ws, bs, hidden, output):
    A = torch.tensor(X)
    for l, W in enumerate(Ws):
        Z = A @ W + (bs[l] if bs else 0)
        A = TORCH_ACTIVATIONS[output if l == len(Ws) - 1 else hidden](Z)
    return A


@pytest.mark.parametrize("hidden", sorted(gpunn.ACTIVATIONS))
@pytest.mark.parametrize("bias", [False, True])
def test_loss_and_gradients_are_torch_autograd(hidden, bias):
    X, Y = _data()
    model = MLP([5, 7, 6, 3], activation=hidden, output_activation="sigmoid", bias=bias, dtype="float64", device="cpu",
                seed=3)
    if bias:
        for b in model.biases:
            b[...] = numpy.random.default_rng(0).standard_normal(b.shape) * 0.1
    loss, dW, db = model.loss_and_gradients(X, Y)
    Ws = [torch.tensor(numpy.array(W), requires_grad=True) for W in model.weights]
    bs = [torch.tensor(numpy.array(b), requires_grad=True) for b in model.biases] if bias else []
    f = ((_torch_forward(X, Ws, bs, hidden, "sigmoid") - torch.tensor(Y)) ** 2).sum() / X.shape[0]  # (1/m)||A - Y||^2
    f.backward()
    assert loss == pytest.approx(f.item(), rel=1e-13)
    for ours, theirs in zip(dW + (db or []), Ws + bs):
        numpy.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("ours, theirs", [
    (lambda: gpunn.SGD(lr=0.05, weight_decay=0.1), lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.1)),
    (lambda: gpunn.Momentum(lr=0.05, momentum=0.8, weight_decay=0.05),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.05)),
    (lambda: gpunn.Nesterov(lr=0.05, momentum=0.7, weight_decay=0.05),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05)),
    (lambda: gpunn.Adam(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    (lambda: gpunn.AdamW(lr=0.05, beta1=0.85, beta2=0.95, eps=1e-7, weight_decay=0.2),
     lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.85, 0.95), eps=1e-7, weight_decay=0.2)),
], ids=["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_a_fit_is_torch_optim_step_for_step(ours, theirs):
    # 40 rows in batches of 16 (the last one 8), a step schedule, weight decay on biases too
    X, Y = _data(40, 4, 2, seed=2)
    model = MLP([4, 6, 2], activation="tanh", dtype="float64", device="cpu", seed=5)
    params = _torch_params(model)
    opt = theirs(params)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    model.fit(X, Y, epochs=4, batch_size=16, shuffle=False, optimizer=ours(),
              schedule=gpunn.Schedule("step", step_size=2, gamma=0.5), verbose=False)
    _torch_fit(params, opt, X, Y, epochs=4, batch_size=16, per_epoch=scheduler)
    _assert_torchs(model, params)


def _torch_params(model):
    """An MLP's weights and biases, W0, b0, W1, b1, ... (model.params' order), as torch leaves (a copy)."""
    return [torch.tensor(numpy.array(t), requires_grad=True) for pair in zip(model.weights, model.biases) for t in pair]


def _assert_torchs(model, params, rtol=1e-12):
    for ours_p, theirs_p in zip([t for pair in zip(model.weights, model.biases) for t in pair], params):
        numpy.testing.assert_allclose(ours_p, theirs_p.detach().numpy(), rtol=rtol, atol=1e-14)


def _torch_fit(params, opt, X, Y, epochs, batch_size, activation="tanh", before_step=lambda: None, per_batch=None,
               per_epoch=None):
    """A torch loop over the rows in order, gpunn's loss (1/m)||A - Y||^2: backward, ``before_step()`` (a clip_grad_*_
    of params), opt.step(), ``per_batch.step()``; ``per_epoch.step()`` after each epoch. Returns what before_step gave
    at each step."""
    given = []
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            opt.zero_grad()
            A = _torch_forward(X[start:start + batch_size], params[0::2], params[1::2], activation, "identity")
            (((A - torch.tensor(Y[start:start + batch_size])) ** 2).sum() / A.shape[0]).backward()
            given.append(before_step())
            opt.step()
            if per_batch is not None:
                per_batch.step()
        if per_epoch is not None:
            per_epoch.step()
    return given


OPTIMIZERS = {  # name: (gpunn's, given weight_decay and a clip; torch.optim's, given the params and weight_decay)
    "sgd": (lambda **o: gpunn.SGD(lr=0.05, **o), lambda p, wd: torch.optim.SGD(p, lr=0.05, weight_decay=wd)),
    "momentum": (lambda **o: gpunn.Momentum(lr=0.05, momentum=0.8, **o),
                 lambda p, wd: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=wd)),
    "nesterov": (lambda **o: gpunn.Nesterov(lr=0.05, momentum=0.7, **o),
                 lambda p, wd: torch.optim.SGD(p, lr=0.05, momentum=0.7, nesterov=True, weight_decay=wd)),
    "adam": (lambda **o: gpunn.Adam(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6, **o),
             lambda p, wd: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)),
    "adamw": (lambda **o: gpunn.AdamW(lr=0.05, beta1=0.85, beta2=0.95, eps=1e-7, **o),
              lambda p, wd: torch.optim.AdamW(p, lr=0.05, betas=(0.85, 0.95), eps=1e-7, weight_decay=wd)),
}
CLIP_NORM, CLIP_VALUE = 1.5, 0.2  # these nets' gradient norms are 0.6-2.6, about half their elements past 0.2


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("clip", ["clip_norm", "clip_value"])
def test_a_clipped_fit_is_torchs_clip_grad_before_opt_step_step_for_step(clip, fused, name, weight_decay):
    """README's gradient clipping: clip_norm=c is loss.backward(); clip_grad_norm_(params, c); opt.step() (weight decay
    added inside the step, after the clip; AdamW's decoupled), clip_value=v clip_grad_value_(params, v), with
    every optimizer, with weight decay and without, on the CPU's fused paths (a small net's one-call step, its Adam
    inside the kernel) and the generic ops; most steps clip (by norm, not all: min(1, ...) keeps the others)."""
    ours, theirs = OPTIMIZERS[name]
    X, Y = _data(40, 4, 2, seed=2)
    model = MLP([4, 6, 2], activation="tanh", dtype="float64", device="cpu", seed=5, fused=fused)
    params = _torch_params(model)
    opt = theirs(params, weight_decay)
    limit = CLIP_NORM if clip == "clip_norm" else CLIP_VALUE
    model.fit(X, Y, epochs=6, batch_size=16, shuffle=False, optimizer=ours(weight_decay=weight_decay, **{clip: limit}),
              schedule=gpunn.Schedule("step", step_size=2, gamma=0.5), verbose=False)
    clipped = _torch_fit(params, opt, X, Y, epochs=6, batch_size=16,
                         before_step=lambda: _torch_clip(params, clip, limit),
                         per_epoch=torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5))
    assert len(clipped) // 2 < sum(clipped) <= len(clipped) - (clip == "clip_norm"), clipped  # (of 18 steps)
    _assert_torchs(model, params)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
def test_each_ensemble_member_clips_by_its_own_norm_as_a_torch_loop_does(fused, name):
    """An Ensemble's clip_norm=[None, c1, c2]: member k is the torch loop from its initial weights with
    clip_grad_norm_(its params, c_k) before each opt.step() (member 0 unclipped), weight decay added after the clip."""
    ours, theirs = OPTIMIZERS[name]
    X, Y = _data(40, 4, 2, seed=2)
    ens = gpunn.Ensemble([4, 6, 2], 3, activation="tanh", dtype="float64", device="cpu", seed=5, fused=fused)
    members = [_torch_params(ens.member(k)) for k in range(3)]
    clips = [None, CLIP_NORM, CLIP_NORM / 3]
    ens.fit(X, Y, epochs=6, batch_size=16, shuffle=False, optimizer=ours(weight_decay=0.1), clip_norm=clips,
            schedule=gpunn.Schedule("step", step_size=2, gamma=0.5), verbose=False)
    for k, (params, limit) in enumerate(zip(members, clips)):
        opt = theirs(params, 0.1)
        clipped = _torch_fit(params, opt, X, Y, epochs=6, batch_size=16,
                             before_step=lambda: limit is not None and _torch_clip(params, "clip_norm", limit),
                             per_epoch=torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5))
        assert sum(clipped) > len(clipped) // 2 or limit is None, (k, clipped)
        _assert_torchs(ens.member(k), params)


def _torch_clip(params, clip, limit) -> bool:
    """torch.nn.utils' clip_grad_norm_(params, limit) or clip_grad_value_(params, limit); whether it changed a grad."""
    if clip == "clip_norm":
        return torch.nn.utils.clip_grad_norm_(params, limit).item() > limit
    clips = any(bool((p.grad.abs() > limit).any()) for p in params)
    torch.nn.utils.clip_grad_value_(params, limit)
    return clips


ONECYCLE = [dict(), dict(pct_start=0.4, div_factor=10.0, final_div_factor=100.0)]  # torch's defaults; others


@pytest.mark.parametrize("options", ONECYCLE, ids=["defaults", "options"])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("name", ["momentum", "adamw"])
def test_a_onecycle_fit_is_torchs_onecycle_lr_stepped_per_batch(name, anneal, options):
    """Schedule("onecycle") is torch's OneCycleLR(opt, max_lr=lr, total_steps=epochs x batches, anneal_strategy,
    cycle_momentum=False) stepped after every batch (18 steps here, a partial last batch each epoch): the same
    weights, and each epoch's logged lr is the rate of its last step."""
    ours, theirs = OPTIMIZERS[name]
    X, Y = _data(40, 4, 2, seed=2)
    model = MLP([4, 6, 2], activation="tanh", dtype="float64", device="cpu", seed=5)
    params = _torch_params(model)
    opt = theirs(params, 0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=6 * 3, anneal_strategy=anneal,
                                                    cycle_momentum=False, **options)
    history = model.fit(X, Y, epochs=6, batch_size=16, shuffle=False, optimizer=ours(weight_decay=0.1),
                        schedule=gpunn.Schedule("onecycle", anneal=anneal, **options), verbose=False)
    rates = _torch_fit(params, opt, X, Y, epochs=6, batch_size=16, before_step=lambda: opt.param_groups[0]["lr"],
                       per_batch=scheduler)
    _assert_torchs(model, params)
    # (to an ulp of lr: linear's last rate, lr / 2.5e5, is a difference of numbers near 1 in gpunn's factor and near
    # lr in torch's rate, 1.4e-18 apart, 7e-12 of it)
    numpy.testing.assert_allclose(history["lr"], rates[2::3], rtol=1e-13, atol=1e-17)
    assert rates[0] == pytest.approx(0.05 / options.get("div_factor", 25.0))  # (up from lr / div_factor, then down)


def test_a_onecycle_of_more_steps_than_the_run_is_torchs_cut_short():
    """Schedule("onecycle", total_steps=T) with T past the run's steps: torch's OneCycleLR(total_steps=T) stopped
    after the run's 18 (the rate not yet at its floor)."""
    ours, theirs = OPTIMIZERS["adam"]
    X, Y = _data(40, 4, 2, seed=2)
    model = MLP([4, 6, 2], activation="tanh", dtype="float64", device="cpu", seed=5)
    params = _torch_params(model)
    opt = theirs(params, 0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=30, cycle_momentum=False)
    history = model.fit(X, Y, epochs=6, batch_size=16, shuffle=False, optimizer=ours(),
                        schedule=gpunn.Schedule("onecycle", total_steps=30), verbose=False)
    rates = _torch_fit(params, opt, X, Y, epochs=6, batch_size=16, before_step=lambda: opt.param_groups[0]["lr"],
                       per_batch=scheduler)
    _assert_torchs(model, params)
    assert history["lr"][-1] == pytest.approx(rates[-1], rel=1e-13) and rates[-1] > 0.05 / 25 / 2


PER_EPOCH = {  # gpunn's schedule's name and options; torch's scheduler of the optimizer, stepped after each epoch
    "constant": ({}, lambda opt: None),
    "step": (dict(step_size=1, gamma=0.5), lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)),
    "exponential": (dict(gamma=0.8), lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)),
    "cosine": ({}, lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)),
}


@pytest.mark.parametrize("warmup_steps", [2, 5, 30])
@pytest.mark.parametrize("schedule", sorted(PER_EPOCH))
def test_a_warm_up_is_torchs_linear_lr_per_batch_chained_with_the_per_epoch_scheduler(schedule, warmup_steps):
    """Schedule(name, warmup_steps=N) is LinearLR(opt, start_factor=1/N, end_factor=1, total_iters=N - 1) stepped
    after every batch and the name's torch scheduler after every epoch: warm(s) = min(1, (s + 1) / N) over the
    run's global step s. N = 5 spans the first epoch's 3 steps and (step_size 1) a decay; N = 30 outlasts the run."""
    options, per_epoch = PER_EPOCH[schedule]
    ours, theirs = OPTIMIZERS["nesterov"]
    X, Y = _data(40, 4, 2, seed=2)
    model = MLP([4, 6, 2], activation="tanh", dtype="float64", device="cpu", seed=5)
    params = _torch_params(model)
    opt = theirs(params, 0.1)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup_steps, end_factor=1.0,
                                             total_iters=warmup_steps - 1)
    model.fit(X, Y, epochs=6, batch_size=16, shuffle=False, optimizer=ours(weight_decay=0.1),
              schedule=gpunn.Schedule(schedule, warmup_steps=warmup_steps, **options), verbose=False)
    rates = _torch_fit(params, opt, X, Y, epochs=6, batch_size=16, before_step=lambda: opt.param_groups[0]["lr"],
                       per_batch=warm, per_epoch=per_epoch(opt))
    _assert_torchs(model, params)
    assert rates[0] == pytest.approx(0.05 / warmup_steps)


@pytest.mark.parametrize("schedule", ["onecycle", "warm-up"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "generic"])
def test_each_ensemble_member_takes_a_per_step_schedule_as_its_torch_loop(fused, schedule):
    """An Ensemble's members at their own rates [0.05, 0.02] under Schedule("onecycle", anneal="linear") or
    Schedule("cosine", warmup_steps=5): member k is the torch loop at lr_k with OneCycleLR(max_lr=lr_k) per batch, or
    LinearLR per batch and CosineAnnealingLR per epoch."""
    ours, theirs = OPTIMIZERS["adam"]
    X, Y = _data(40, 4, 2, seed=2)
    ens = gpunn.Ensemble([4, 6, 2], 2, activation="tanh", dtype="float64", device="cpu", seed=5, fused=fused)
    members, lrs = [_torch_params(ens.member(k)) for k in range(2)], [0.05, 0.02]
    ours_schedule = (gpunn.Schedule("onecycle", anneal="linear") if schedule == "onecycle" else
                     gpunn.Schedule("cosine", warmup_steps=5))
    ens.fit(X, Y, epochs=6, batch_size=16, shuffle=False, optimizer=ours(weight_decay=0.1), lr=lrs,
            schedule=ours_schedule, verbose=False)
    for k, (params, lr) in enumerate(zip(members, lrs)):
        opt = theirs(params, 0.1)
        opt.param_groups[0]["lr"] = lr
        if schedule == "onecycle":
            per_batch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=6 * 3, anneal_strategy="linear",
                                                            cycle_momentum=False)
            per_epoch = None
        else:
            per_batch = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 5, end_factor=1.0, total_iters=4)
            per_epoch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)
        _torch_fit(params, opt, X, Y, epochs=6, batch_size=16, per_batch=per_batch, per_epoch=per_epoch)
        _assert_torchs(ens.member(k), params)


K = 3  # outputs: gpunn's loss sums their squared errors, nn.MSELoss means over them, so its gradients are K times


@pytest.mark.parametrize("ours, theirs", [
    (lambda: gpunn.SGD(lr=0.05 / K, weight_decay=0.02 * K), lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.02)),
    (lambda: gpunn.SGD(lr=0.05 / K, momentum=0.9, nesterov=True, weight_decay=0.02 * K),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02)),
    (lambda: gpunn.Adam(lr=0.01, eps=1e-8 * K, weight_decay=0.02 * K),
     lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.02)),
    (lambda: gpunn.AdamW(lr=0.01, eps=1e-8 * K), lambda p: torch.optim.AdamW(p, lr=0.01)),
], ids=["sgd", "nesterov", "adam", "adamw"])
def test_readmes_rates_for_k_outputs_give_a_pytorch_loop_with_mseloss_step_for_step(ours, theirs):
    """README's "Coming from PyTorch": with k outputs, PyTorch's nn.MSELoss loop and gpunn's fit take the same steps
    at the SGD family's lr / k and weight_decay x k, Adam's eps x k and weight_decay x k, AdamW's eps x k. A porter's
    loop as written (nn.Sequential of Linear, ReLU, Linear, Tanh, Linear; a cosine schedule; the weights copied
    over transposed, as README's block does), its rows in order; the epoch losses are K times MSELoss's."""
    X, Y = _data(48, 4, K, seed=4)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5), torch.nn.Tanh(),
                              torch.nn.Linear(5, K)).double()
    model = MLP([4, 6, 5, K], activation=["relu", "tanh"], dtype="float64", device="cpu")
    linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
    for W, b, linear in zip(model.weights, model.biases, linears):
        W[...] = linear.weight.detach().numpy().T
        b[...] = linear.bias.detach().numpy()
    opt = theirs(net.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    epoch_losses = []
    for _ in range(4):
        total = 0.0
        for start in range(0, 48, 20):  # (a partial last batch, as gpunn's)
            opt.zero_grad()
            xb, yb = torch.tensor(X[start:start + 20]), torch.tensor(Y[start:start + 20])
            loss = torch.nn.MSELoss()(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        epoch_losses.append(total / 48)
        scheduler.step()
    history = model.fit(X, Y, epochs=4, batch_size=20, shuffle=False, optimizer=ours(), schedule="cosine",
                        verbose=False)
    numpy.testing.assert_allclose(history["loss"], K * numpy.array(epoch_losses), rtol=1e-12)
    for W, b, linear in zip(model.weights, model.biases, linears):
        numpy.testing.assert_allclose(W, linear.weight.detach().numpy().T, rtol=1e-11, atol=1e-14)
        numpy.testing.assert_allclose(b, linear.bias.detach().numpy(), rtol=1e-11, atol=1e-14)


def test_readmes_coming_from_pytorch_block_runs_and_prints_what_it_says(capsys):
    """README's PyTorch section copies a torch net's weights into a gpunn model and back, and sets a MultiStepLR's
    rates from a callback; it needs torch, which CI has not, so it runs here rather than in tests/test_packaging.py's
    examples."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    body = text.split("## Coming from PyTorch\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in body.split("```python")[1:]]
    said = [line[2:] for block in blocks for line in block.splitlines() if line.startswith("# ")]
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == said == ["True", "True 0.001"]


def test_readmes_reduce_lr_on_plateau_for_pytorchs_lowers_the_rate_at_the_same_epochs():
    """README's "Coming from PyTorch": torch's ReduceLROnPlateau(opt, patience=p, cooldown=c, threshold=t,
    threshold_mode="abs") lowers the rate where gpunn's ReduceLROnPlateau(patience=p + 1, cooldown=c + 1, min_delta=t)
    does (PyTorch's waits for more than patience epochs without improvement, gpunn's, as Keras's, for patience), and
    at its default threshold_mode "rel" a small loss's plateau is another one's than gpunn's min_delta sees."""
    from types import SimpleNamespace

    def run(values, ours):
        trainer = SimpleNamespace(optimizer=SimpleNamespace(lr=1.0), schedule=gpunn.Schedule("constant"), epochs=100,
                                  lr_scale=1.0, validation=True)
        ours.on_train_begin(trainer)
        rates = []
        for epoch, value in enumerate(values):
            ours.on_epoch_end(trainer, epoch, {"val_mse": value})
            rates.append(trainer.lr_scale)
        return rates

    def theirs(values, **options):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **options)
        rates = []
        for value in values:
            scheduler.step(value)
            rates.append(opt.param_groups[0]["lr"])
        return rates

    rng = numpy.random.default_rng(7)
    for trial in range(40):  # a falling loss with plateaus and noise
        values = list(1.0 / (1 + numpy.cumsum(rng.random(60) < 0.25)) + rng.choice([0.0, 1e-3], 60))
        p, c, factor = int(rng.integers(0, 5)), int(rng.integers(0, 4)), float(rng.choice([0.1, 0.5]))
        expected = theirs(values, factor=factor, patience=p, cooldown=c, threshold=1e-3, threshold_mode="abs",
                          min_lr=1e-3)
        ours = gpunn.ReduceLROnPlateau(monitor="val_mse", factor=factor, patience=p + 1, cooldown=c + 1,
                                       min_delta=1e-3, min_lr=1e-3)
        assert run(values, ours) == pytest.approx(expected, rel=1e-12), (trial, p, c)
        assert min(expected) < 1.0  # (each trial lowers the rate)
    values = [0.01 * 0.999 ** e for e in range(12)]  # 0.1% better an epoch: PyTorch's default sees it improve
    assert theirs(values, patience=2) == [1.0] * 12
    assert run(values, gpunn.ReduceLROnPlateau(monitor="val_mse", patience=3))[-1] < 1.0  # min_delta 1e-4 does not


def test_readmes_early_stopping_for_a_pytorch_loops_is_that_loop():
    """README's "Coming from PyTorch": a loop that keeps the best validation nn.MSELoss, breaks after `patience` epochs
    without an improvement of more than `delta` and loads the best state back is EarlyStopping(monitor="val_mse",
    patience=patience, min_delta=delta) with validation_data: it stops after the same epoch, with the same weights."""
    import copy

    (X, noise), (Xv, noise_v) = _data(60, 4, 2, seed=6), _data(30, 4, 2, seed=8)
    Y, Yv = numpy.tanh(X[:, :2]) + 0.3 * noise, numpy.tanh(Xv[:, :2]) + 0.3 * noise_v  # a signal and noise
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).double()
    model = MLP([4, 32, 2], activation="tanh", dtype="float64", device="cpu")
    linears = [net[0], net[2]]
    for W, b, linear in zip(model.weights, model.biases, linears):
        W[...] = linear.weight.detach().numpy().T
        b[...] = linear.bias.detach().numpy()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    patience, delta = 3, 1e-3
    best, best_state, bad, losses = float("inf"), None, 0, []
    for epoch in range(200):
        for start in range(0, 60, 16):
            opt.zero_grad()
            loss = torch.nn.MSELoss()(net(torch.tensor(X[start:start + 16])), torch.tensor(Y[start:start + 16]))
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = torch.nn.MSELoss()(net(torch.tensor(Xv)), torch.tensor(Yv)).item()
        losses.append(val)
        if val < best - delta:
            best, best_state, bad = val, copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    net.load_state_dict(best_state)
    assert 4 < epoch + 1 < 200  # (it stopped early, after epochs of improvement: 6 here, its best the third)
    history = model.fit(X, Y, epochs=200, batch_size=16, shuffle=False, optimizer=gpunn.Adam(lr=0.01, eps=1e-8 * 2),
                        validation_data=(Xv, Yv), verbose=False,
                        callbacks=[gpunn.EarlyStopping(monitor="val_mse", patience=patience, min_delta=delta)])
    assert history.stopped_early and len(history["epoch"]) == epoch + 1
    numpy.testing.assert_allclose(history["val_mse"], losses, rtol=1e-10)
    assert history.best == pytest.approx(best, rel=1e-10)
    for W, b, linear in zip(model.weights, model.biases, linears):
        numpy.testing.assert_allclose(W, linear.weight.detach().numpy().T, rtol=1e-10, atol=1e-13)
        numpy.testing.assert_allclose(b, linear.bias.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_a_float32_fit_from_pytorchs_weights_stays_within_rounding_of_pytorchs():
    """README's "Coming from PyTorch", the dtype: from the same weights and rows in the same order, float32 runs of
    gpunn and torch (3 outputs, Adam with weight decay at README's rates for k outputs, a step schedule, 4 epochs of
    47 steps) end within float32 rounding of each other (measured 1.2e-7 in the weights), not merely alike."""
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((3000, 8)).astype(numpy.float32)
    Y = numpy.tanh(X @ rng.standard_normal((8, 3))).astype(numpy.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, 3))
    model = MLP([8, 64, 64, 3], activation=["relu", "tanh"], device="cpu")
    linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
    for W, b, linear in zip(model.weights, model.biases, linears):
        W[...] = linear.weight.detach().numpy().T
        b[...] = linear.bias.detach().numpy()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    for _ in range(4):
        for start in range(0, 3000, 64):
            opt.zero_grad()
            torch.nn.MSELoss()(net(torch.from_numpy(X[start:start + 64])), torch.from_numpy(Y[start:start + 64])).backward()
            opt.step()
        scheduler.step()
    model.fit(X, Y, epochs=4, batch_size=64, shuffle=False, optimizer=gpunn.Adam(lr=3e-3, eps=3e-8, weight_decay=3e-4),
              schedule=gpunn.Schedule("step", step_size=2, gamma=0.5), verbose=False)
    assert model.params.dtype == numpy.float32
    for W, linear in zip(model.weights, linears):
        numpy.testing.assert_allclose(W, linear.weight.detach().numpy().T, rtol=0, atol=2e-6)
    with torch.no_grad():
        numpy.testing.assert_allclose(model.predict(X), net(torch.from_numpy(X)).numpy(), rtol=0, atol=5e-6)


def test_pytorchs_flat_parameter_vector_fits_model_params_but_is_not_its_layout():
    """README's "Coming from PyTorch", the weights: model.params holds the layers in net.parameters()'s order, each W
    in x out, so parameters_to_vector's vector (each weight out x in) has its size, is taken without a word and gives
    another function; the layer-by-layer copy, each weight transposed, gives PyTorch's."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    model = MLP([3, 5, 2], dtype="float64", device="cpu")
    X = numpy.random.default_rng(0).standard_normal((7, 3))
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    model.params[...] = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    assert numpy.abs(model.predict(X) - expected).max() > 1e-3
    for W, b, linear in zip(model.weights, model.biases, [net[0], net[2]]):
        W[...] = linear.weight.detach().numpy().T
        b[...] = linear.bias.detach().numpy()
    numpy.testing.assert_allclose(model.predict(X), expected, rtol=1e-13, atol=1e-15)
    flat = [t for pair in zip(model.weights, model.biases) for t in pair]
    assert [t.size for t in flat] == [p.numel() for p in net.parameters()]  # (the order, sizes, of parameters())
    assert numpy.array_equal(numpy.concatenate([t.ravel() for t in flat]), model.params)
