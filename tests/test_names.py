"""Optimizer, activation, schedule and synthetic task names in any letter case ("Adam", "ReLU", "Cosine",
"Friedman1"), as Keras takes optimizer names; each is kept as gpunn spells it (lower case), so models, checkpoints and config files name it
one way. A name that is not one in any case is refused, with the name meant where there is one."""
import re

import numpy
import pytest
from cli_args import with_options

import gpunn
from gpunn import cli


def _data(rows=64):
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((rows, 3)).astype("float32")
    return X, X[:, :1] - 0.5 * X[:, 1:2]


def test_names_in_other_letter_case_train_as_the_lower_case_names():
    X, Y = _data()
    runs = {}
    for optimizer, activation, output, schedule in (("adam", "relu", "identity", "cosine"),
                                                    ("Adam", "ReLU", "Identity", "Cosine"),
                                                    ("ADAM", "RELU", "IDENTITY", "COSINE")):
        model = gpunn.MLP([3, 8, 1], activation=activation, output_activation=output, device="cpu", seed=0)
        history = model.fit(X, Y, epochs=2, batch_size=16, optimizer=optimizer, schedule=schedule, verbose=False)
        runs[optimizer] = model.predict(X), history["lr"]
        assert [a.name for a in model.activations] == ["relu", "identity"]
    for optimizer in ("Adam", "ADAM"):
        numpy.testing.assert_array_equal(runs[optimizer][0], runs["adam"][0])
        assert runs[optimizer][1] == runs["adam"][1]
    assert gpunn.optim.make_optimizer("AdamW").name == "adamw"
    assert gpunn.Schedule("Step", step_size=2).name == "step"
    assert [a.name for a in gpunn.Ensemble([3, 4, 1], 2, activation="GELU", device="cpu").activations] == ["gelu",
                                                                                                         "identity"]
    for got, want in zip(gpunn.datasets.make("Friedman1", 50, device="cpu"), gpunn.datasets.make("friedman1", 50,
                                                                                                device="cpu")):
        numpy.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="^the teacher task needs n_features"):  # named as gpunn spells it
        gpunn.datasets.make("Teacher", 50, device="cpu")


@pytest.mark.parametrize("make, message", [
    (lambda: gpunn.MLP([3, 4, 1], activation="leakyrelu", device="cpu"),
     "unknown activation 'leakyrelu' (did you mean 'leaky_relu'?); choose one of: identity, relu"),
    (lambda: gpunn.MLP([3, 4, 1], activation="LeakyReLU", device="cpu"),
     "unknown activation 'LeakyReLU' (did you mean 'leaky_relu'?)"),
    (lambda: gpunn.optim.make_optimizer("Adamm"), "unknown optimizer 'Adamm' (did you mean 'adam'?); choose one of"),
    (lambda: gpunn.Schedule("cosin"), "unknown schedule 'cosin' (did you mean 'cosine'?); choose one of"),
    (lambda: gpunn.optim.make_optimizer("lbfgs"),
     "unknown optimizer 'lbfgs' ('lbfgs' is not supported); choose one of: sgd, momentum"),
    (lambda: gpunn.optim.make_optimizer("bogus"), "unknown optimizer 'bogus'; choose one of: sgd, momentum"),
    # a task: it said only "unknown task 'friedman'; choose one of: ..."
    (lambda: gpunn.datasets.make("friedman", 10, device="cpu"),
     "unknown task 'friedman' (did you mean 'friedman1'?); choose one of: teacher, linear, friedman1, sinusoid"),
    (lambda: gpunn.datasets.stream("sinusiod", 10, device="cpu"), "unknown task 'sinusiod' (did you mean 'sinusoid'?)"),
    (lambda: gpunn.data.synthetic("Teachers", 10, 3), "unknown task 'Teachers' (did you mean 'teacher'?)"),
])
def test_a_name_that_is_none_in_any_case_names_the_one_meant(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: gpunn.MLPRegressor(solver="adma", max_iter=1).fit(*_data(8)),
     "solver must be one of ('adam', 'sgd', 'adamw'), got 'adma' (did you mean 'adam'?)"),
    (lambda: gpunn.MLPRegressor(learning_rate="adaptative", max_iter=1).fit(*_data(8)),
     "learning_rate must be one of ('constant', 'invscaling', 'adaptive'), got 'adaptative' (did you mean "
     "'adaptive'?)"),
    (lambda: gpunn.MLP([3, 1], device="cpu", precision="bf61"),
     "precision must be one of ('float32', 'tf32', 'bf16'), got 'bf61' (did you mean 'bf16'?)"),
    (lambda: gpunn.MLP([3, 1], device="cpu", precision="fp32"), "got 'fp32' ('fp32' is gpunn's 'float32')"),
    (lambda: gpunn.Ensemble([3, 1], 2, device="cpu", precision="fp16"), "got 'fp16' ('fp16' is not supported)"),
    (lambda: gpunn.MLP([3, 1], device="cdua"),
     "unknown device 'cdua' (did you mean 'cuda'?); use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (lambda: gpunn.MLP([3, 1], device="cdua:1"), "unknown device 'cdua:1' (did you mean 'cuda:1'?); use"),
    # another script's digit, refused: the name meant has 0-9's (it was the name refused, 'cuda:١')
    (lambda: gpunn.MLP([3, 1], device="cuda:١"), "unknown device 'cuda:١' (did you mean 'cuda:1'?); use"),
    (lambda: gpunn.MLP([3, 1], device="tpu"), "unknown device 'tpu'; use 'auto'"),
])
def test_a_solver_learning_rate_precision_or_device_refused_names_the_one_meant(make, message):
    """solver="adma", precision="bf61" and device="cdua" were refused with the valid names but no hint, where an
    optimizer, activation or schedule name says the one meant."""
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_the_command_line_and_config_files_take_names_in_any_case_and_record_them_lower(tmp_path, capsys):
    small = ["--rows", "200", "--features", "3", "--hidden", "8", "--epochs", "2", "--batch-size", "32",
             "--device", "cpu", "--quiet"]
    path = tmp_path / "run.npz"
    assert cli.main(["train", *small, "--optimizer", "Adam", "--activation", "ReLU", "--schedule", "Cosine",
                     "--save", str(path)]) == 0
    assert "model: [3, 8, 1] relu" in capsys.readouterr().out
    saved = (tmp_path / "run.npz.toml").read_text()
    assert 'optimizer = "adam"' in saved and 'activation = "relu"' in saved and 'schedule = "cosine"' in saved
    ckpt = gpunn.load_checkpoint(str(path), device="cpu")
    assert ckpt.optimizer.name == "adam" and ckpt.settings.schedule.name == "cosine"
    # --resume compares the options given with the run's: ADAM is its adam
    assert cli.main(with_options(["train", *small], "--resume", str(path), "--epochs", "3", "--optimizer", "ADAM")) == 0
    config = tmp_path / "run.toml"
    config.write_text('optimizer = "SGD"\nactivation = "Tanh"\noutput-activation = "Identity"\n')
    assert cli.main(["train", *small, "--config", str(config), "--save", str(tmp_path / "b.npz")]) == 0
    assert "model: [3, 8, 1] tanh" in capsys.readouterr().out
    saved = (tmp_path / "b.npz.toml").read_text()
    assert 'optimizer = "sgd"' in saved and 'activation = "tanh"' in saved
    assert cli.main(["sweep", *small, "--optimizer", "Momentum", "--activation", "SiLU"]) == 0
    # a name in no case, without a hint, is argparse's refusal, as written (one with a hint: the next test)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *small, "--optimizer", "BOGUS"])
    assert exit_info.value.code == 2 and "invalid choice: 'BOGUS'" in capsys.readouterr().err


def test_a_device_in_another_letter_case_is_recorded_lower_and_read_as_every_command_reads_it(tmp_path, capsys):
    """--device CPU was taken (resolve reads any letter case) but recorded as written: the checkpoint's options,
    PATH.toml and --json's config said "CPU", where README says each name is kept in lower case, the way models,
    checkpoints and --save's config name it; and the commands' own words for it ("all", "auto", "cuda" compared as
    written) missed it: gpunn bench --device ALL was refused, an MPI rank's --device CUDA went past
    local_device. Every command reads --device in lower case now, and a config file's device alike."""
    import json
    import tomllib

    from gpunn.checkpoint import read_meta
    from gpunn.cli import parse_args
    from gpunn.cli.resume import saved_options

    for argv in (["train"], ["sweep"], ["predict", "m.npz", "X.npy", "P.npy"], ["info"], ["bench"]):
        assert parse_args([*argv, "--device", " CPU "]).device == "cpu", argv
    assert parse_args(["bench", "--device", "ALL"]).device == "all"
    small = ["train", "--rows", "200", "--features", "3", "--hidden", "4", "--epochs", "1", "--quiet"]
    path = tmp_path / "run.npz"
    assert cli.main([*small, "--device", "CPU", "--save", str(path), "--json", str(tmp_path / "o.json")]) == 0
    assert tomllib.loads((tmp_path / "run.npz.toml").read_text())["device"] == "cpu"
    assert json.loads((tmp_path / "o.json").read_text())["config"]["device"] == "cpu"
    assert saved_options(read_meta(str(path)))["device"] == "cpu"
    (tmp_path / "cpu.toml").write_text('device = "Cpu"\n')
    assert cli.main([*small, "--config", str(tmp_path / "cpu.toml"), "--save", str(tmp_path / "b.npz")]) == 0
    assert tomllib.loads((tmp_path / "b.npz.toml").read_text())["device"] == "cpu"


def test_help_says_the_names_take_any_letter_case(capsys):
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        # task, optimizer, schedule, two activations, --progress and --device; train's --stream too
        assert text.count("any letter case") == (8 if command == "train" else 7), (command, text)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # (2 epochs: scikit-learn's ConvergenceWarning)
def test_the_estimators_activation_takes_scikit_learns_name_in_any_letter_case_too():
    """MLPRegressor's activation is an activation name as MLP's is: "ReLU" was taken (get_activation folds the case)
    while scikit-learn's own "Logistic" (its sigmoid) was refused as an unknown activation, its mapping matching the
    lower case only."""
    X, Y = _data()
    for name, kept in (("Logistic", "sigmoid"), ("LOGISTIC", "sigmoid"), ("logistic", "sigmoid"), ("ReLU", "relu")):
        est = gpunn.MLPRegressor((4,), activation=name, max_iter=2, device="cpu", random_state=0).fit(X, Y[:, 0])
        assert [a.name for a in est.model_.activations] == [kept, "identity"], name


def test_an_entry_of_gpunn_activations_is_taken_as_its_name():
    """gpunn.ACTIVATIONS' entries stand for their names, as activation, in a list of them, and as output_activation:
    the same model, with the same start, as by name."""
    X, _ = _data()
    acts = gpunn.ACTIVATIONS
    by_entry = gpunn.MLP([3, 8, 6, 1], activation=[acts["tanh"], "elu"], output_activation=acts["identity"],
                         device="cpu", seed=0)
    by_name = gpunn.MLP([3, 8, 6, 1], activation=["tanh", "elu"], device="cpu", seed=0)
    assert by_entry.activations == by_name.activations == [acts["tanh"], acts["elu"], acts["identity"]]
    numpy.testing.assert_array_equal(by_entry.predict(X), by_name.predict(X))
    assert [a.name for a in gpunn.MLP([3, 4, 1], activation=acts["silu"], device="cpu").activations] == [
        "silu", "identity"]


OTHER_LIBRARIES = [  # (what, name, the hint): other libraries' names, which difflib found nothing for or misread
    ("activation", "swish", "'swish' is gpunn's 'silu'"),  # Keras's
    ("activation", "Linear", "'linear' is gpunn's 'identity'"),  # Keras's, in any case
    ("activation", "logistic", "'logistic' is gpunn's 'sigmoid'"),  # scikit-learn's
    ("activation", "lrelu", "'lrelu' is gpunn's 'leaky_relu'"),  # difflib: 'relu'
    ("activation", "hardtanh", "'hardtanh' is not supported"),  # PyTorch's: not tanh
    ("optimizer", "RMSprop", "'rmsprop' is not supported"),  # Keras's and PyTorch's
    ("optimizer", "adagrad", "'adagrad' is not supported"),
    ("optimizer", "nadam", "'nadam' is not supported"),  # difflib: 'adam', another optimizer
    ("schedule", "CosineAnnealingLR", "'cosineannealinglr' is gpunn's 'cosine'"),  # PyTorch's: difflib found none
    ("schedule", "StepLR", "'steplr' is gpunn's 'step'"),
    ("schedule", "OneCycleLR", "'onecyclelr' is gpunn's 'onecycle', with lr its peak (max_lr); momentum and Adam's "
                               "beta1 are not cycled (PyTorch's cycle_momentum=False)"),
    ("schedule", "LinearLR", "'linearlr' is gpunn's warmup_steps, a linear warm-up from lr / N to lr over the run's "
                             "first N optimizer steps, of any schedule but onecycle: gpunn.Schedule(\"constant\", "
                             "warmup_steps=N), or \"cosine\" and so on"),
    ("schedule", "CosineDecay", "'cosinedecay' is gpunn's 'cosine' with its warmup_steps: gpunn.Schedule(\"cosine\", "
                                "warmup_steps=N), a linear warm-up over the first N steps, then a cosine decay to "
                                "min_factor x lr over the run's epochs, once an epoch (not per step)"),  # Keras's
    ("schedule", "get_linear_schedule_with_warmup",  # Hugging Face's: a linear decay to 0, which gpunn has not
     "'get_linear_schedule_with_warmup' is not in gpunn, whose schedules do not decay linearly to 0: a warm-up is "
     "warmup_steps, gpunn.Schedule(\"cosine\", warmup_steps=N) a cosine decay after it (per epoch), and 'onecycle' with "
     "anneal='linear' rises and falls linearly per step"),
    ("schedule", "ExponentialLR", "'exponentiallr' is gpunn's 'exponential'"),  # audit37d h25
    ("schedule", "ConstantLR", "'constantlr' is not supported"),  # a warm-up factor: not gpunn's constant
    ("schedule", "CosineAnnealingWarmRestarts", "'cosineannealingwarmrestarts' is not supported"),  # restarts: not cosine
]


@pytest.mark.parametrize("what, name, hint", OTHER_LIBRARIES, ids=[name for _, name, _ in OTHER_LIBRARIES])
def test_another_librarys_name_is_refused_with_gpunns_name_for_it_or_not_supported(what, name, hint):
    """Another library's name is a hint, not a second name taken: gpunn's models, checkpoints and config files name
    each function one way. The refusal said only "unknown activation 'swish'" (or, for nadam, "did you mean
    'adam'?", another optimizer)."""
    make, names = {"activation": (lambda: gpunn.MLP([3, 4, 1], activation=name, device="cpu"),
                                  gpunn.activations.ACTIVATIONS),
                   "optimizer": (lambda: gpunn.optim.make_optimizer(name), gpunn.optim.OPTIMIZERS),
                   "schedule": (lambda: gpunn.Schedule(name), gpunn.optim.SCHEDULES)}[what]
    with pytest.raises(ValueError) as caught:
        make()
    assert str(caught.value) == f"unknown {what} {name!r} ({hint}); choose one of: {', '.join(names)}"


def _torchs(name, module):
    """A stand-in for PyTorch's class ``name`` of ``module`` (no torch needed): what the hints read of it."""
    return type(name, (), {"__module__": module, "__repr__": lambda self: f"{name}()"})


def _torchs_function(name, module):
    """A stand-in for PyTorch's function ``name`` of ``module`` (F.relu, torch.tanh): what the hints read of it."""
    def function(x):
        return x

    function.__name__, function.__qualname__, function.__module__ = name, name, module
    return function


@pytest.mark.parametrize("given, refusal", [
    (lambda: gpunn.MLP([3, 4, 1], activation=_torchs("Tanh", "torch.nn.modules.activation")()),
     r"^unknown activation Tanh\(\) \(a name, not torch's Tanh: did you mean 'tanh'\?\); choose one of: identity"),
    (lambda: gpunn.MLP([3, 4, 4, 1], activation=["relu", _torchs("LeakyReLU", "torch.nn.modules.activation")]),
     r"^unknown activation <class '.*LeakyReLU'> \(a name, not torch's LeakyReLU: did you mean 'leaky_relu'\?\)"),
    (lambda: gpunn.MLP([3, 4, 1], activation=_torchs("SELU", "torch.nn.modules.activation")()),
     r"\(a name, not torch's SELU: 'selu' is not supported\)"),
    (lambda: gpunn.optim.make_optimizer(_torchs("Adam", "torch.optim.adam")),
     r"^unknown optimizer <class '.*Adam'> \(a name, not torch's Adam: did you mean 'adam'\?\); choose one of: sgd"),
    (lambda: gpunn.optim.make_schedule(_torchs("CosineAnnealingLR", "torch.optim.lr_scheduler")()),
     r"^schedule must be a name \(constant, step, exponential, cosine, onecycle\) or a gpunn.Schedule, got "
     r"CosineAnnealingLR\(\) \(a name, not torch's CosineAnnealingLR: 'cosineannealinglr' is gpunn's 'cosine'\)$"),
    # activation=F.relu (torch.nn.functional's) or torch.tanh, PyTorch's functions, said "unknown activation
    # <function relu at 0x...>" alone where nn.ReLU() had its hint
    (lambda: gpunn.MLP([3, 4, 1], activation=_torchs_function("relu", "torch.nn.functional")),
     r"^unknown activation <function relu at .*> \(a name, not torch's function relu: did you mean 'relu'\?\); choose "),
    (lambda: gpunn.MLP([3, 4, 4, 1], activation=["relu", _torchs_function("tanh", "torch")]),
     r"\(a name, not torch's function tanh: did you mean 'tanh'\?\)"),
    (lambda: gpunn.MLPRegressor(activation=_torchs_function("mish", "torch.nn.functional")).fit([[1.0], [2.0]], [1, 2]),
     r"\(a name, not torch's function mish: 'mish' is not supported\)"),
], ids=["module", "class in a list", "none of gpunn's", "optimizer class", "scheduler", "function", "function in a list",
        "function none of gpunn's"])
def test_pytorchs_module_optimizer_or_scheduler_where_gpunn_takes_a_name_is_told_the_name(given, refusal):
    """activation=nn.Tanh(), a PyTorch Sequential's layer, said "unknown activation Tanh()" alone; so did
    optimizer=torch.optim.Adam and a StepLR or CosineAnnealingLR as the schedule ("schedule must be a name ... got
    <torch.optim.lr_scheduler.StepLR object at 0x...>"). The class's name finds gpunn's, as a name would. Stand-ins
    of PyTorch's classes, by their module's name."""
    with pytest.raises(ValueError, match=refusal):
        given()
    with pytest.raises(ValueError, match=r"^unknown activation <object object at .*>; choose one of"):  # no hint
        gpunn.MLP([3, 4, 1], activation=object())
    for python_or_numpys in (len, numpy.tanh, lambda x: x):  # nor for Python's functions, NumPy's or a lambda
        with pytest.raises(ValueError, match=r"^unknown activation <[^(]*; choose one of"):
            gpunn.MLP([3, 4, 1], activation=python_or_numpys)


@pytest.mark.parametrize("key, value, hint", [
    ("anneal_strategy", "linear", "did you mean anneal? PyTorch's anneal_strategy is gpunn's anneal, 'cos' or 'linear': "
                                  "gpunn.Schedule('onecycle', anneal='linear')"),
    ("max_lr", 0.1, "onecycle's peak is the optimizer's lr, OneCycleLR's max_lr: "
                    "fit(X, Y, lr=max_lr, schedule=gpunn.Schedule('onecycle'))"),
    ("steps_per_epoch", 10, "onecycle's length is total_steps, 0 (its default) for the run's, epochs x batches per "
                            "epoch, which OneCycleLR(epochs=..., steps_per_epoch=...) makes it"),
    ("cycle_momentum", True, "gpunn's onecycle does not cycle the momentum or Adam's beta1"),
    ("three_phase", True, "gpunn's onecycle has OneCycleLR's two phases (three_phase=False), up to lr and down"),
    # LinearLR's: total_iters was "did you mean total_steps?", onecycle's length, not a warm-up's
    ("total_iters", 4, "a warm-up is warmup_steps=N: from lr / N up to lr over the run's first N optimizer steps, "
                       "PyTorch's LinearLR(start_factor=1/N, end_factor=1, total_iters=N - 1) stepped after every batch"),
    ("alpha", 0.1, "did you mean min_factor? Keras's CosineDecay alpha"),  # Keras CosineDecay's
    ("decay_steps", 100, "gpunn's cosine decays once an epoch, over total_epochs"),
])
def test_pytorchs_and_keras_schedule_options_say_gpunns(key, value, hint):
    """OneCycleLR's, LinearLR's and Keras CosineDecay's keywords given to gpunn.Schedule said only "unexpected keyword
    argument" (or named onecycle's total_steps for LinearLR's total_iters); fit's max_lr and anneal_strategy too."""
    with pytest.raises(TypeError) as caught:
        gpunn.Schedule("onecycle", **{key: value})
    assert str(caught.value).startswith(f"Schedule() got an unexpected keyword argument {key!r} ({hint}")
    X, Y = _data()
    if key in ("max_lr", "anneal_strategy"):
        with pytest.raises(TypeError, match=rf"^MLP.fit\(\) got an unexpected keyword argument '{key}' \(.*onecycle"):
            gpunn.MLP([3, 4, 1], device="cpu").fit(X, Y, schedule="onecycle", **{key: value})


def test_pytorchs_cosine_annealing_options_say_gpunns():
    """Schedule("cosine", T_max=20) and fit(..., T_max=20), PyTorch CosineAnnealingLR's period, said only "unexpected
    keyword argument"; eta_min, its floor, is a rate where gpunn's min_factor is a fraction of lr: said so, not shown
    as the same value."""
    with pytest.raises(TypeError, match=r"^Schedule\(\) got an unexpected keyword argument 'T_max' \(did you mean "
                                        r"total_epochs\?\)$"):
        gpunn.Schedule("cosine", T_max=20)
    eta_min = (r"\(PyTorch's eta_min is a rate; gpunn's cosine floor is min_factor, a fraction of lr: "
               r"gpunn.Schedule\('cosine', min_factor=eta_min / lr\)\)$")
    with pytest.raises(TypeError, match=r"^Schedule\(\) got an unexpected keyword argument 'eta_min' " + eta_min):
        gpunn.Schedule("cosine", eta_min=1e-5)
    X, Y = _data()
    with pytest.raises(TypeError, match=r"^MLP.fit\(\) got an unexpected keyword argument 'eta_min' " + eta_min):
        gpunn.MLP([3, 4, 1], device="cpu").fit(X, Y, schedule="cosine", eta_min=1e-5)
    with pytest.raises(TypeError, match=r"'T_max' \(did you mean total_epochs\? total_epochs is the cosine schedule's "
                                        r"option: model.fit\(X, Y, schedule=gpunn.Schedule\(\"cosine\", "
                                        r"total_epochs=20\)\)\)$"):
        gpunn.MLP([3, 4, 1], device="cpu").fit(X, Y, schedule="cosine", T_max=20)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_the_command_line_and_a_config_file_hint_another_librarys_name(command, tmp_path, capsys):
    """--activation swish was argparse's "invalid choice: 'swish' (choose from ...)", a config file's "activation =
    'swish' is not one of ...": the Python API's words now, hint included; a misspelling gets its did-you-mean too."""
    for option, name, hint in (("--activation", "swish", "'swish' is gpunn's 'silu'"),
                               ("--optimizer", "RMSprop", "'rmsprop' is not supported"),
                               ("--schedule", "cosin", "did you mean 'cosine'?"),
                               ("--task", "friedman", "did you mean 'friedman1'?")):
        what = option[2:]
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--device", "cpu", option, name])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"argument {option}: unknown {what} {name!r} ({hint}); choose one of: " \
            in err, err
    (tmp_path / "c.toml").write_text('activation = "swish"\n')
    assert cli.main([command, "--device", "cpu", "--config", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert "invalid activation = 'swish' (--activation: unknown activation 'swish' ('swish' is gpunn's 'silu')" in err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_the_command_lines_precision_hints_as_the_python_argument_does_taking_its_names_as_written(command, tmp_path,
                                                                                                   capsys):
    """--precision fp32 was argparse's "invalid choice: 'fp32' (choose from 'float32', 'tf32', 'bf16')", where
    MLP(precision="fp32") says "'fp32' is gpunn's 'float32'". The hint is a hint: TF32 is refused as
    precision="TF32" is, not taken, and a name with no hint keeps argparse's words."""
    for name, hint in (("fp32", "'fp32' is gpunn's 'float32'"), ("bfloat16", "'bfloat16' is gpunn's 'bf16'"),
                       ("fp16", "'fp16' is not supported"), ("TF32", "did you mean 'tf32'?"),
                       ("bf61", "did you mean 'bf16'?")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--device", "cpu", "--precision", name])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and (f"argument --precision: unknown precision {name!r} ({hint}); choose one "
                                              "of: float32, tf32, bf16 (see") in err, err
        with pytest.raises(ValueError, match=re.escape(f"got {name!r} ({hint})")):  # the Python argument's hint
            gpunn.MLP([3, 1], device="cpu", precision=name)
    with pytest.raises(SystemExit):
        cli.main([command, "--device", "cpu", "--precision", "xx"])
    said = capsys.readouterr().err
    assert "argument --precision: invalid choice: 'xx' (choose from 'float32', 'tf32', 'bf16')" in said
    (tmp_path / "c.toml").write_text('precision = "fp32"\n')
    assert cli.main([command, "--device", "cpu", "--config", str(tmp_path / "c.toml")]) == 2
    assert ("invalid precision = 'fp32' (--precision: unknown precision 'fp32' ('fp32' is gpunn's 'float32')"
            in capsys.readouterr().err)
