"""The "did you mean" rule of gpunn's refusals: which known name an unknown one stands for. One rule for a
command line's option (--lr), a config file's key (lr) and a metric ('val_loss'); each place words the hint."""
from __future__ import annotations

import argparse
import difflib
import functools
import inspect
from dataclasses import dataclass

# difflib's ratio for a misspelling, of names without their "--" (which would raise every ratio, and did: bench's
# --ep scored 0.8 against --help; ep against help is 0.67, refused; epoch against epochs 0.91)
CUTOFF = 0.75

# names other tools give gpunn's options, too far from them for difflib: {name: (the option meant, the hint's
# words, the values in them)}; each value is spelt by the place ({0}: --device cuda, or device = "cuda"), and
# a name is hinted only where that option exists. A short option is matched as written (-V is not -v).
_QUIET = ("quiet", "progress is shown by default; {0} turns it off", (True,))
_HIDDEN = ("hidden", "did you mean {0} (the hidden layers' widths, e.g. {1})?", (None, [256, 256]))
_DEVICE = ("device", "did you mean {0} (or cuda:N)?", ("cuda",))
_MEMBERS = ("n-models", "did you mean {0} (the number of members)?", (None,))
# each row's weight in the loss goes by three names, fit's sample_weight (scikit-learn's and Keras's), gpunn.data.npy's
# weights= (a file; the commands' --weights) and a table's weight= (a column; --weight): a name for them, these or
# other tools', is hinted as whichever of them the place takes (fit(X, Y, weight=w) was "did you mean weight_decay?")
ROW_WEIGHTS = ("sample-weight", "weights", "weight")
ROW_WEIGHT_NAMES = (*ROW_WEIGHTS, "sample-weights", "weight-column", "weights-column", "weight-col", "weights-col",
                    "weight-file", "weights-file")
WIDTHS = ("width", "widths", "hidden-size", "hidden-sizes", "units", "hidden-units", "neurons")  # a layer's width
OTHER_NAMES = {
    "learning-rate": ("lr", "did you mean {0}?", (None,)),
    "verbose": _QUIET, "-v": _QUIET, "-q": ("quiet", "did you mean {0}?", (True,)),
    "layers": _HIDDEN, "hidden-layers": _HIDDEN, "hidden-layer-sizes": _HIDDEN,
    # a width's names (a sweep over widths: --width 32 said "unrecognized arguments" alone; COMMAND_OPTIONS_ABSENT's
    # words for gpunn sweep)
    **dict.fromkeys(WIDTHS, _HIDDEN),
    "gpu": _DEVICE, "cuda": _DEVICE, "cpu": ("device", "did you mean {0}?", ("cpu",)),
    "load": ("resume", "did you mean {0} (continue a saved run)?", (None,)),
    # Keras's (nb-epoch: Keras 1's) and scikit-learn's names; difflib took validation-split for validation-data
    "validation-split": ("validation-fraction", "did you mean {0}?", (None,)),
    "nb-epoch": ("epochs", "did you mean {0}?", (None,)), "max-iter": ("epochs", "did you mean {0}?", (None,)),
    "random-state": ("seed", "did you mean {0}?", (None,)),
    # PyTorch's CosineAnnealingLR(T_max=...): gpunn's cosine schedule's period (its eta_min: OTHER_KEYWORDS)
    "t-max": ("total-epochs", "did you mean {0}?", (None,)),
    # a table's columns (gpunn.data.csv and parquet) by pandas' names (read_csv's sep and usecols) and others'
    "sep": ("delimiter", "did you mean {0}?", (None,)),
    "usecols": ("features", "did you mean {0} (the input columns; target names the output's)?", (None,)),
    "feature-columns": ("features", "did you mean {0}?", (None,)),
    "label": ("target", "did you mean {0}?", (None,)), "labels": ("target", "did you mean {0}?", (None,)),
    "target-column": ("target", "did you mean {0}?", (None,)), "label-column": ("target", "did you mean {0}?", (None,)),
    # and the other way, to gpunn.MLPRegressor, whose names are scikit-learn's (weight decay: its alpha, L2)
    "epochs": ("max-iter", "did you mean {0}?", (None,)), "seed": ("random-state", "did you mean {0}?", (None,)),
    "lr": ("learning-rate-init", "did you mean {0}?", (None,)),
    "weight-decay": ("alpha", "did you mean {0} (scikit-learn's L2 penalty)?", (None,)),
    # an ensemble's size: scikit-learn's ensembles' n_estimators, and the names of papers and other libraries
    "n-estimators": _MEMBERS, "n-members": _MEMBERS, "members": _MEMBERS, "ensemble-size": _MEMBERS, "k": _MEMBERS,
}


# other tools' options that gpunn train and gpunn sweep have none of, {name: {command: what it does instead}}: a run
# bounded by steps or time (Keras's steps_per_epoch, Lightning's max_steps and max_time) and a held-out share, which
# a user of 10^10 streamed rows reaches for first. difflib found nothing for them ("unrecognized arguments" alone)
_WHOLE_EPOCHS = ("gpunn {0} runs whole epochs (--epochs): fewer --rows of a synthetic task (or a smaller --data file) "
                 "make a shorter one, and Ctrl-C stops after the current batch (with --save, in a checkpoint that "
                 "--resume continues)")
_TENTH_HELD_OUT = {
    "train": ("gpunn train holds out 10% of the rows for validation (a --data file's in whole chunks, a stream's in "
              "whole pieces of its chunks); another share is validation_fraction= of a gpunn.data source in Python"),
    "sweep": ("gpunn sweep holds out 10% of the rows for validation (a --data file's in whole chunks); another share "
              "is validation_fraction= of a gpunn.data source in Python"),
}
# gpunn sweep's refusal of several --hidden, and of a width's name: --hidden 32,64 there is one net of two layers, the
# same for every member, where one who gave --widths 32,64 meant a grid of two widths
ONE_ARCHITECTURE = ("a sweep's members share one architecture (they train as one ensemble; its grid is --lr, "
                    "--weight-decay, --clip-norm (or --clip-value) and --seeds): run one sweep per --hidden to compare "
                    "sizes")
COMMAND_OPTIONS_ABSENT = {
    **{name: {command: _WHOLE_EPOCHS.format(command) for command in ("train", "sweep")}
       for name in ("max-steps", "steps", "steps-per-epoch", "max-time", "time-limit")},
    **{name: _TENTH_HELD_OUT for name in ("validation-fraction", "validation-split", "val-fraction", "val-split")},
    **{name: {"sweep": "did you mean --hidden (the hidden layers' widths: --hidden 32,64 is one net of two layers)? "
                       + ONE_ARCHITECTURE} for name in WIDTHS},
    # gpunn predict --score reads a table IN's targets by the model's names (a prefix hint said "did you mean
    # --targets?", the .npy IN's file of targets)
    **{name: {"predict": "--score reads a table IN's targets by the names the model was trained on; an .npy IN's "
                         "are a file, --score --targets Y.npy"} for name in ("target", "target-column")},
    # PyTorch's OneCycleLR(max_lr=..., anneal_strategy=...) (unrecognized, without a word)
    "max-lr": {command: "did you mean --lr? it is --schedule onecycle's peak, OneCycleLR's max_lr"
               for command in ("train", "sweep")},
    "anneal-strategy": {command: "did you mean --anneal? it is PyTorch's anneal_strategy, cos or linear"
                        for command in ("train", "sweep")},
}
# and a sweep's config file's key, in its words
ONE_ARCHITECTURE_KEYS = ("a sweep's members share one architecture: hidden = [32, 64] is one net of two layers, every "
                         "member's (its grid is lr, weight-decay, clip-norm (or clip-value) and seeds): run one sweep "
                         "per hidden to compare sizes")

# other libraries' names for gpunn's activations and optimizers: {what: {name: gpunn's name for the same function, or
# None where gpunn has none}}. A hint, not a second name accepted: gpunn's models, checkpoints and config files name
# each function one way. Among them the names difflib misreads (nadam, adamax, radam: "did you mean 'adam'?"; lrelu:
# 'relu') or finds nothing for (swish, linear, logistic, rmsprop).
OTHER_LIBRARIES = {
    "activation": {
        "linear": "identity", "none": "identity",  # Keras's (and activation=None), scikit-learn's "identity"
        "swish": "silu",  # Keras's and TensorFlow's x * sigmoid(x); PyTorch's SiLU
        "logistic": "sigmoid", "expit": "sigmoid",  # scikit-learn's, SciPy's
        "lrelu": "leaky_relu", "leaky": "leaky_relu",
        "selu": None, "prelu": None, "mish": None, "softsign": None, "softmax": None,
        "hardtanh": None, "hard_tanh": None, "hard_sigmoid": None, "hardsigmoid": None, "hardswish": None,
    },
    # the float formats' common shorthands, and PyTorch's dtype name bfloat16 (difflib took fp32 for tf32)
    "precision": {"fp32": "float32", "bfloat16": "bf16", "fp16": None, "float16": None, "half": None},
    "optimizer": {
        "rmsprop": None, "adagrad": None, "adadelta": None, "adamax": None, "nadam": None, "radam": None,
        "lbfgs": None, "l-bfgs": None, "ftrl": None, "lamb": None, "lion": None,
    },
    # PyTorch's lr schedulers, by their class names (difflib found nothing for CosineAnnealingLR; ConstantLR is a
    # warm-up factor, not gpunn's constant; LinearLR, a linear warm-up, is an option of gpunn's schedules:
    # OTHER_LIBRARY_WORDS)
    "schedule": {
        "steplr": "step", "exponentiallr": "exponential", "cosineannealinglr": "cosine", "cosineannealing": "cosine",
        "onecyclelr": "onecycle", "cycliclr": None, "constantlr": None,
        "lambdalr": None, "multiplicativelr": None, "multisteplr": None, "polynomiallr": None, "sequentiallr": None,
        "cosineannealingwarmrestarts": None,
    },
}
# what gpunn has for another library's name where it is no name of gpunn's (an option), or said with a caveat:
# "'{name}' is {words}"
_WARM_UP = ("gpunn's warmup_steps, a linear warm-up from lr / N to lr over the run's first N optimizer steps, of any "
            "schedule but onecycle: gpunn.Schedule(\"constant\", warmup_steps=N), or \"cosine\" and so on")
# Keras's CosineDecay and Hugging Face's schedules with a warm-up (their functions' and SchedulerType's names) decay
# per step where gpunn's cosine does per epoch
_LINEAR_DECAY = ("not in gpunn, whose schedules do not decay linearly to 0: a warm-up is warmup_steps, "
                 "gpunn.Schedule(\"cosine\", warmup_steps=N) a cosine decay after it (per epoch), and 'onecycle' with "
                 "anneal='linear' rises and falls linearly per step")
_COSINE_WITH_WARM_UP = ("gpunn's 'cosine' with its warmup_steps: gpunn.Schedule(\"cosine\", warmup_steps=N), a linear "
                        "warm-up over the first N steps, then a cosine decay to min_factor x lr over the run's epochs, "
                        "once an epoch (not per step)")
OTHER_LIBRARY_WORDS = {
    "schedule": {
        "linearlr": _WARM_UP, "warmup": _WARM_UP, "linearwarmup": _WARM_UP,
        "onecyclelr": "gpunn's 'onecycle', with lr its peak (max_lr); momentum and Adam's beta1 are not cycled "
                      "(PyTorch's cycle_momentum=False)",
        **dict.fromkeys(("cosinedecay", "get_cosine_schedule_with_warmup", "cosine_with_warmup"), _COSINE_WITH_WARM_UP),
        "constant_with_warmup": _WARM_UP, "get_constant_schedule_with_warmup": _WARM_UP,
        **dict.fromkeys(("linear", "get_linear_schedule_with_warmup"), _LINEAR_DECAY),
    },
}


# what users of other libraries look for on a model, {name: where gpunn has it}: the hint of a model's AttributeError
# (Keras: save, save_weights, load_weights, compile, summary, count_params, history; PyTorch: state_dict,
# load_state_dict, forward, parameters, to, cpu, cuda, double, float, half, bfloat16, eval, train)
_SAVED = "gpunn.save(path, model) writes the model and gpunn.load(path) reads it back"
_COPY_IN = "copy weights into the model, model.params[...] = other.params, or read a saved one with gpunn.load(path)"
# PyTorch's nn.Linear keeps weight as out x in, gpunn's W[l] is in x out: a square layer takes it untransposed, silently
_FROM_TORCH = ("copy a PyTorch state dict in layer by layer, each nn.Linear's weight transposed (it is out x in, "
               "gpunn's W in x out): model.weights[0][...] = state['0.weight'].T.numpy(), model.biases[0][...] = "
               "state['0.bias'].numpy(), and so on (README: Coming from PyTorch)")
_PARAMETERS = "the weights are model.params (one flat buffer) and its views model.weights and model.biases"
_MOVED = "a model stays on the device it was made on: gpunn.save(path, model), then gpunn.load(path, device={!r})"
# PyTorch's net.double(), .float() and .half(): a gpunn model's dtype is its constructor's, float32 or float64
_DTYPE = ("a model keeps the dtype it was made with, float32 or float64: copy its weights into one made with "
          "dtype={!r}, new.params[...] = model.params")
_HALF = ("a model's dtype is float32 or float64, its constructor's; on a GPU, gpunn.MLP(..., precision='bf16') "
         "computes in bfloat16 with float32 weights")
_NO_MODES = ("gpunn's models have no training and evaluation modes (no dropout or batch norm): fit trains, predict "
             "infers")
OTHER_MODEL_ATTRIBUTES = {
    "save": _SAVED, "save_weights": _SAVED, "load_weights": _COPY_IN, "load_state_dict": f"{_FROM_TORCH}; {_COPY_IN}",
    "state_dict": f"{_PARAMETERS}; {_SAVED}", "parameters": _PARAMETERS,
    "forward": "model.predict(X) gives the outputs",
    "compile": "fit takes the optimizer and its rate itself: model.fit(X, Y, optimizer='adam', lr=1e-3)",
    "summary": "print(model) shows its layers; model.params.size is its parameter count",
    "count_params": "model.params.size is its parameter count",
    "to": _MOVED.format("cpu"), "cpu": _MOVED.format("cpu"), "cuda": _MOVED.format("cuda"),
    "double": _DTYPE.format("float64"), "float": _DTYPE.format("float32"), "half": _HALF,
    "bfloat16": _HALF, "eval": _NO_MODES, "train": _NO_MODES,
    # Keras's model.history after fit (an Ensemble keeps its last fit's, for best(): never reaches the hint)
    "history": ("fit returns the run's history: history = model.fit(X, Y, ...), history['loss']; a training "
                "checkpoint's is gpunn.load_checkpoint(path).history"),
}


def torch_data(obj) -> str:
    """PyTorch's DataLoader or Dataset as a refusal names it, "PyTorch's DataLoader"; "" for anything else. Given where
    gpunn takes arrays (predict's X, validation_data), it said "X must be an array of numbers, got a DataLoader" or
    "validation_data must be a pair (X_val, Y_val)", or NumPy's "inhomogeneous shape" for a TensorDataset."""
    module = getattr(type(obj), "__module__", None)
    torchs = isinstance(module, str) and module.startswith("torch.utils.data")
    return f"PyTorch's {type(obj).__name__}" if torchs else ""


def torch_tensors(index="") -> str:
    """Where the tensors of PyTorch's data objects are, for a refusal of one: ``index`` "[0]" for the inputs',
    "[1]" for the targets', "" for the pair (fit's own refusal of them says it too)."""
    return f"dataset.tensors{index} of a TensorDataset, loader.dataset.tensors{index} of a DataLoader over one"


def missing_attribute(obj, name: str, hint: str = "") -> AttributeError:
    """Python's AttributeError for ``name``, which ``obj`` lacks, from a ``__getattr__``: with ``hint`` where it has
    one (": gpunn.save(path, model) writes the model"), and ``name`` and ``obj`` set, so that a traceback adds
    Python's own "Did you mean" (a plain AttributeError raised in ``__getattr__`` lost it: ``model.predcit``)."""
    return AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}{hint}", name=name, obj=obj)


def shell_word(text) -> str:
    """A path or a list of names as a message shows it, and as a command line takes it: bare where it holds nothing
    the shell reads (run.npz, a,b), else in single quotes ('my dir/a b.csv', 'first col,third'), so that its extent
    is clear in a sentence ("IN my dir/a b.csv does not exist" read as the file "my") and a command said can be
    pasted as it is ("gpunn predict my dir/m.npz IN OUT" named three files)."""
    import os
    import shlex

    return shlex.quote(os.fspath(text))


def other_library(name: str, what: str) -> str | None:
    """The hint for ``name``, another library's name of a ``what`` ("activation", "optimizer"): "'swish' is gpunn's
    'silu'", or "'rmsprop' is not supported" where gpunn has none; None for a name not in OTHER_LIBRARIES."""
    table = OTHER_LIBRARIES.get(what, {})
    low = name.lower()
    words = OTHER_LIBRARY_WORDS.get(what, {}).get(low)
    if words:
        return f"{low!r} is {words}"
    if low not in table:
        return None
    ours = table[low]
    return f"{low!r} is not supported" if ours is None else f"{low!r} is gpunn's {ours!r}"


@dataclass(frozen=True)
class Meant:
    """What an unknown name stands for: ``names`` (one, or each a shortened name begins), and how it was found:
    "case" (the name in other letter case), "alias" (another tool's name: ``words`` and ``values`` as in
    OTHER_NAMES), "weights" (a name for the rows' weights: ROW_WEIGHTS), "shortened" (the beginning of ``names``)
    or "close" (a misspelling)."""
    names: tuple
    how: str
    words: str = "did you mean {0}?"
    values: tuple = (None,)

    def hint(self, spell) -> str:
        """The hint in a place's words: ``spell(name, value)`` writes an option, or an option given a value
        (None: the name alone), as that place does."""
        if self.how == "alias":
            return self.words.format(*(spell(self.names[0], value) for value in self.values))
        return f"did you mean {' or '.join(spell(name, None) for name in self.names)}?"


def meant(name: str, names, aliases: bool = True) -> Meant | None:
    """The known name(s) among ``names`` that ``name`` stands for, or None. Letter case is not told apart
    (Epochs: epochs, where the lower case names one); then another tool's name (with ``aliases``); then a
    beginning (batch: batch-size); then a misspelling (batchsize: batch-size, adta: data)."""
    if not name:
        return None
    folded = {}
    for known in names:
        folded.setdefault(known.lower(), []).append(known)
    folded = {low: found[0] for low, found in folded.items() if len(found) == 1}
    low = name.lower()
    if low in folded:
        return Meant((folded[low],), "case")
    weights = tuple(known for known in ROW_WEIGHTS if known in names) if aliases and low in ROW_WEIGHT_NAMES else ()
    if weights:
        return Meant(weights, "weights")
    other = OTHER_NAMES.get(name if name.startswith("-") else low) if aliases else None
    if other and other[0] in names:
        return Meant((other[0],), "alias", other[1], other[2])
    shortened = tuple(folded[known] for known in folded if known.startswith(low))
    if shortened:
        return Meant(shortened, "shortened")
    close = difflib.get_close_matches(low, folded, n=1, cutoff=CUTOFF)
    return Meant((folded[close[0]],), "close") if close else None


# the optimizers' options, which a model's fit takes in its optimizer, by the class a hint shows them in (an
# Ensemble's fit takes them itself, per member); "betas" is PyTorch's pair, gpunn's beta1 and beta2
OPTIMIZER_OPTIONS = {"weight_decay": "Adam", "beta1": "Adam", "beta2": "Adam", "eps": "Adam", "betas": "Adam",
                     "momentum": "SGD", "nesterov": "SGD", "clip_norm": "Adam", "clip_value": "Adam"}

# a Schedule's options, which fit takes in its schedule, and the schedules that read each (kept by hand too: this
# module imports none of gpunn's; gpunn.optim.SCHEDULE_FIELDS is the same by schedule)
SCHEDULE_OPTIONS = {"gamma": ("step", "exponential"), "step_size": ("step",), "total_epochs": ("cosine",),
                    "min_factor": ("cosine",), "warmup_steps": ("constant", "step", "exponential", "cosine"),
                    **{option: ("onecycle",) for option in ("pct_start", "div_factor", "final_div_factor", "anneal",
                                                           "total_steps")}}


def _betas(value) -> str:
    """PyTorch's ``betas=(0.9, 0.99)`` in gpunn's options: "beta1=0.9, beta2=0.99"."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"beta1={_shown(value[0])}, beta2={_shown(value[1])}"
    return "beta1=..., beta2=..."


def a_type(value) -> str:
    """``value``'s type name with the article it is read with, for a refusal's "got {a_type(x)}": "an AttrDict",
    "an object", "a set"; "an MLP" (an initialism said letter by letter, "em-el-pee"), "a UserDict" (a U read
    "you"); "an ndarray" (NumPy's nd- said "en-dee": ndarray, nditer, ndindex). Leading underscores are not read:
    "an _AttrDict"."""
    name = type(value).__name__
    said = name.lstrip("_")
    vowel = (said[:1] in "aeioAEIO" and said[:1] != "" or (said[:2].isupper() and said[:1] in "FHLMNRSX")
             or said.startswith("nd"))
    return f"{'an' if vowel else 'a'} {name}"


def value_repr(value) -> str:
    """``repr(value)`` for a refusal that names a user's value, ``<Odd object>`` where its repr raises: the repr's error
    stood in place of the refusal (``MLP(..., activation=obj)``: ZeroDivisionError for "unknown activation")."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _shown(value) -> str:
    """A keyword's value as a hint writes it back: its repr, or "..." past 40 characters (validation_data's arrays) or
    where its repr raises (the repr's error stood in place of the refusal: fit(X, Y, batchsize=obj))."""
    try:
        text = repr(value)
    except Exception:
        return "..."
    return text if len(text) <= 40 else "..."


def user_attribute(obj, name: str, default=None):
    """``getattr(obj, name, default)`` of a user's object, ``default`` where reading it raises anything (an attribute
    dict's KeyError, a property's error): a hint's own code never stands in place of the refusal it words."""
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def _schedules_reading(key: str, value, given) -> tuple:
    """(the schedules, and each one's Schedule with the options ``given`` that it reads) for schedule option ``key``
    given where a schedule is meant (``step_size=5, gamma=0.5``: Schedule("step", step_size=5, gamma=0.5)). The
    schedules are the one the call names where it reads ``key`` (``schedule="step", gamma=0.5``), else each that reads
    all the options given, else each that reads ``key``: gamma alone is step's and exponential's, and the hint named
    exponential's alone."""
    given = given or {key: value}
    options = {option: given[option] for option in given if option in SCHEDULE_OPTIONS}
    schedule = given.get("schedule")
    named = user_attribute(schedule, "name", schedule)  # a name, or a Schedule's
    readers = SCHEDULE_OPTIONS[key]
    if isinstance(named, str) and named.lower() in readers:
        readers = (named.lower(),)
        if named is not schedule:  # a Schedule: the options it holds that the call does not give, kept (those it has)
            held = {option: user_attribute(schedule, option) for option, used in SCHEDULE_OPTIONS.items()
                    if readers[0] in used and option not in options}
            # (a warm-up of 0, the default, is none: not shown, as the Schedule's repr shows none)
            options.update({option: value for option, value in held.items()
                            if value is not None and (value or option != "warmup_steps")})
    else:
        readers = tuple(name for name in readers if all(name in SCHEDULE_OPTIONS[o] for o in options)) or readers
    schedules = []
    for name in readers:
        read = ", ".join(f"{option}={_shown(v)}" for option, v in options.items() if name in SCHEDULE_OPTIONS[option])
        schedules.append(f'gpunn.Schedule("{name}", {read})')
    return readers, schedules


def _in_schedule(key: str, value, given) -> str:
    """Schedule option ``key`` given to fit, in its place: the fit with the Schedule that reads it, with the other
    schedule options ``given`` (the call's keywords) that it reads (:func:`_schedules_reading`)."""
    readers, schedules = _schedules_reading(key, value, given)
    fits = [f"model.fit(X, Y, schedule={schedule})" for schedule in schedules]
    if len(fits) == 1:  # (named: the call may name another, schedule="cosine", step_size=3)
        return f"{key} is the {readers[0]} schedule's option: {fits[0]}"
    return f"{key} is an option of the {' and '.join(readers)} schedules: {' or '.join(fits)}"


def _as_keyword(name, value):
    name = name.replace("-", "_")
    return name if value is None else f"{name}={value!r}"


# keywords another library's method of the same name takes, and gpunn's does not, {method: {keyword: hint}}: Keras's
# predict(X, batch_size=32, verbose=0) and evaluate's, its fit's steps_per_epoch and initial_epoch, and the loss its
# compile takes. Too far from gpunn's names for difflib, or nearest another option
_ROWS_IN_CHUNKS = "it runs the rows in chunks of its own and shows no progress"
_EPOCHS_NOT_STEPS = "a fit runs epochs, passes over the training rows, each of ceil(rows / batch_size) steps: epochs=N"
OTHER_KEYWORDS = {
    "fit": {"loss": "gpunn's models train on the squared error only, (1/m)||A - Y||^2: the mean squared error with "
                    "one output, k x nn.MSELoss with k",
            "steps_per_epoch": "an epoch is one pass over the training rows",
            "steps": _EPOCHS_NOT_STEPS,  # (difflib's nearest was Adam's eps)
            "max_steps": _EPOCHS_NOT_STEPS,
            "initial_epoch": "a run goes on from its checkpoint: gpunn.load_checkpoint(path).resume(X, Y)",
            # PyTorch's DataLoader(batch_size=64, shuffle=True, drop_last=True), its options mapped onto fit's
            "drop_last": ("an epoch ends with a partial batch of the rows left over, as a DataLoader's with "
                          "drop_last=False: a batch_size that divides the training rows leaves none, and "
                          "gpunn.data.iterable(loader) trains on a loader's own batches")},
    "predict": {"batch_size": _ROWS_IN_CHUNKS, "verbose": _ROWS_IN_CHUNKS},
    "evaluate": {"batch_size": _ROWS_IN_CHUNKS, "verbose": _ROWS_IN_CHUNKS},
}
# PyTorch's CosineAnnealingLR(eta_min=...) is a rate, the cosine schedule's floor a fraction of lr: not the same value
_ETA_MIN = ("PyTorch's eta_min is a rate; gpunn's cosine floor is min_factor, a fraction of lr: "
            "gpunn.Schedule('cosine', min_factor=eta_min / lr)")
OTHER_KEYWORDS["fit"]["eta_min"] = _ETA_MIN
# PyTorch's OneCycleLR(max_lr=..., anneal_strategy=...) given to fit
OTHER_KEYWORDS["fit"].update({
    "max_lr": "did you mean lr? it is onecycle's peak, OneCycleLR's max_lr: fit(X, Y, lr=max_lr, schedule='onecycle')",
    "anneal_strategy": ("PyTorch's anneal_strategy is onecycle's anneal, 'cos' or 'linear': "
                        "fit(X, Y, schedule=gpunn.Schedule('onecycle', anneal='linear'))")})
# Keras's and PyTorch's gradient clipping, given to fit or to an optimizer: gpunn's optimizers clip (clip_norm,
# clip_value). Keras's clipnorm clips each variable's gradient by its own norm, which gpunn does not: its clip_norm is
# the global norm
_GLOBAL_NORM = "clips the global norm, of every gradient together, as Keras's global_clipnorm and PyTorch's clip_grad_norm_"
_BY_VALUE = "clamps each gradient element to [-clip_value, clip_value], as Keras's clipvalue and PyTorch's clip_grad_value_"
_PER_VARIABLE = "Keras's clipnorm clips each variable's gradient by its own norm, which gpunn does not"
_FIT_CLIPS = "clipping is the optimizer's option: model.fit(X, Y, optimizer=gpunn.Adam({}))"
OTHER_KEYWORDS["fit"].update({
    "clipnorm": f"{_PER_VARIABLE}; {_FIT_CLIPS.format('clip_norm=1.0')}: its clip_norm {_GLOBAL_NORM}",
    **dict.fromkeys(("global_clipnorm", "max_norm", "clip_grad_norm"),
                    f"{_FIT_CLIPS.format('clip_norm=1.0')}: clip_norm {_GLOBAL_NORM}"),
    **dict.fromkeys(("clipvalue", "clip_grad_value"), f"{_FIT_CLIPS.format('clip_value=0.5')}: clip_value {_BY_VALUE}")})
# PyTorch's model.to(device) done in fit (fit(X, Y, device="cuda")): a model's device is the one it was made on
OTHER_KEYWORDS["fit"]["device"] = ("a model trains on the device it was made on, its constructor's device='cuda', "
                                   "or gpunn.load(path, device='cuda') of a saved one")
# and those one model's method lacks where an Ensemble's takes them, {call: {keyword: hint}}: scikit-learn's
# GaussianProcessRegressor.predict(X, return_std=True), given to a member taken out of an Ensemble (ens.best())
OTHER_MODEL_KEYWORDS = {"MLP.predict": {"return_std": "one network gives no spread of its predictions; an Ensemble's "
                                                      "predict(X, return_std=True) gives the mean and std across its "
                                                      "members"}}
# one model kind's method's own words for a keyword of OTHER_KEYWORDS, which they replace there: an Ensemble's fit takes
# the clips itself, one or K, each member clipping by its own gradient's norm (not fit's words: the optimizer's option,
# "every gradient together")
_MEMBER_NORM = ("ens.fit(X, Y, clip_norm=1.0) (or K values, one per member) clips each member's gradient by its own "
                "global norm, as Keras's global_clipnorm and PyTorch's clip_grad_norm_ clip one model's")
_MEMBER_VALUE = ("ens.fit(X, Y, clip_value=0.5) (or K values) clamps each gradient element to [-clip_value, "
                 "clip_value], as Keras's clipvalue and PyTorch's clip_grad_value_")
OTHER_CALL_KEYWORDS = {"Ensemble.fit": {
    "clipnorm": f"{_PER_VARIABLE}; {_MEMBER_NORM}",
    **dict.fromkeys(("global_clipnorm", "max_norm", "clip_grad_norm"), f"did you mean clip_norm? {_MEMBER_NORM}"),
    **dict.fromkeys(("clipvalue", "clip_grad_value"), f"did you mean clip_value? {_MEMBER_VALUE}")}}

# Keras's keywords to its callbacks of gpunn's names, which gpunn's do not take, {class: {keyword: hint}}: pasted
# from Keras code (EarlyStopping(..., verbose=1)); difflib took save_weights_only for save_best_only, another option
_PRINTS_NOTHING = "gpunn's callbacks print nothing of their own"
OTHER_CALLBACK_KEYWORDS = {
    "ModelCheckpoint": {
        "filepath": "did you mean path? Keras's filepath is gpunn's path: ModelCheckpoint('run.npz')",
        "save_weights_only": ("a checkpoint holds the model with its run's state, which resume goes on from; "
                              "gpunn.load(path) reads the model alone from it"),
        "save_freq": "every=N writes every N epochs; a checkpoint is also written at the end and on Ctrl-C",
        "verbose": f"{_PRINTS_NOTHING}: it writes its file each epoch without a word",
    },
    "EarlyStopping": {"verbose": f"{_PRINTS_NOTHING}: history.stopped_early and history.best_epoch say how it ended"},
    "ReduceLROnPlateau": {"verbose": f"{_PRINTS_NOTHING}: history['lr'] holds each epoch's rate"},
}
# PyTorch's ReduceLROnPlateau(optimizer, threshold=1e-4, threshold_mode="rel"): its threshold is a fraction of the best
# value by default, gpunn's (and Keras's) min_delta an amount, as PyTorch's threshold_mode="abs" makes its threshold
_THRESHOLD = ("PyTorch's threshold is a fraction of the best value (threshold_mode='rel', its default: an epoch "
              "improves below best x (1 - threshold)); gpunn's min_delta is an amount, as with threshold_mode='abs': "
              "ReduceLROnPlateau(min_delta=...), 1e-4 by default")
OTHER_CALLBACK_KEYWORDS["ReduceLROnPlateau"].update(threshold=_THRESHOLD, threshold_mode=_THRESHOLD)
# and PyTorch's to its optimizers, which gpunn's do not take, {class: {keyword: hint}}: torch.optim.Adam's
# decoupled_weight_decay=True is AdamW, and its implementation switches choose nothing here
_ONE_PASS = ("gpunn's step is one pass over the flat parameter buffer (a fused kernel on a GPU): there is nothing "
             "to choose")
_TORCH_SWITCHES = {**dict.fromkeys(("foreach", "fused", "capturable", "differentiable"), _ONE_PASS),
                   "clipnorm": f"{_PER_VARIABLE}; clip_norm=1.0 {_GLOBAL_NORM}",
                   **dict.fromkeys(("global_clipnorm", "max_norm"), f"did you mean clip_norm? it {_GLOBAL_NORM}"),
                   "clipvalue": f"did you mean clip_value? it {_BY_VALUE}"}
OTHER_OPTIMIZER_KEYWORDS = {
    "Adam": {"decoupled_weight_decay": "PyTorch's Adam(decoupled_weight_decay=True) is gpunn.AdamW, Adam's step with "
                                       "the weight decay decoupled", **_TORCH_SWITCHES},
    **{name: _TORCH_SWITCHES for name in ("AdamW", "SGD", "Momentum", "Nesterov")},
}
# and PyTorch's to its lr schedulers, which gpunn's Schedule does not take, {class: {keyword: hint}}
_OUR_WARM_UP = ("a warm-up is warmup_steps=N: from lr / N up to lr over the run's first N optimizer steps, PyTorch's "
                "LinearLR(start_factor=1/N, end_factor=1, total_iters=N - 1) stepped after every batch")
_CYCLE_LENGTH = ("onecycle's length is total_steps, 0 (its default) for the run's, epochs x batches per epoch, which "
                 "OneCycleLR(epochs=..., steps_per_epoch=...) makes it")
_NOT_CYCLED = ("gpunn's onecycle does not cycle the momentum or Adam's beta1 (OneCycleLR's cycle_momentum=False): the "
               "optimizer's stays as set")
OTHER_SCHEDULE_KEYWORDS = {"Schedule": {
    "eta_min": _ETA_MIN,
    # PyTorch's OneCycleLR(optimizer, max_lr, total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy,
    # cycle_momentum, base_momentum, max_momentum, div_factor, final_div_factor, three_phase)
    "anneal_strategy": "did you mean anneal? PyTorch's anneal_strategy is gpunn's anneal, 'cos' or 'linear': "
                       "gpunn.Schedule('onecycle', anneal='linear')",
    "max_lr": ("onecycle's peak is the optimizer's lr, OneCycleLR's max_lr: "
               "fit(X, Y, lr=max_lr, schedule=gpunn.Schedule('onecycle'))"),
    **dict.fromkeys(("epochs", "steps_per_epoch"), _CYCLE_LENGTH),
    **dict.fromkeys(("cycle_momentum", "base_momentum", "max_momentum"), _NOT_CYCLED),
    "three_phase": "gpunn's onecycle has OneCycleLR's two phases (three_phase=False), up to lr and down",
    # PyTorch's LinearLR(optimizer, start_factor, end_factor, total_iters) (difflib took total_iters for total_steps,
    # onecycle's length)
    **dict.fromkeys(("start_factor", "end_factor", "total_iters"), _OUR_WARM_UP),
    # Keras's CosineDecay(initial_learning_rate, decay_steps, alpha, warmup_target, warmup_steps)
    "decay_steps": "gpunn's cosine decays once an epoch, over total_epochs (0, its default: the run's epochs)",
    "alpha": "did you mean min_factor? Keras's CosineDecay alpha, the floor as a fraction of the rate, is gpunn's "
             "cosine min_factor",
    "warmup_target": "gpunn's warm-up rises to the optimizer's lr (fit's lr=), from lr / warmup_steps",
}}
# fit's options given to a data source's maker (data.npy(x, y, batch_size=256)): the source cuts the batches fit
# asks for
SOURCE_MAKERS = ("SyntheticSource", "NpySource", "ParquetSource", "CsvSource", "IterableSource",
                 *(f"gpunn.data.{maker}" for maker in ("synthetic", "npy", "parquet", "csv", "iterable")))
FIT_OPTIONS_TO_A_SOURCE = {key: f"{key} is fit's option: model.fit(source, {key}=...)"
                           for key in ("batch_size", "epochs", "lr", "optimizer", "callbacks", "validation_data")}


def unexpected_keyword(call: str, key: str, names, value=None, fit_options=(), given=None, other_fits=None,
                       made_with=()) -> TypeError:
    """Python's TypeError for a keyword argument ``call`` (``"MLP.fit"``) does not take, with the parameter of
    ``names`` meant where one is (validation_split: validation_fraction; batchsize: batch_size): Python's own
    said only ``got an unexpected keyword argument``. A constructor given one of its class's ``fit_options``
    (``MLP([...], lr=0.1)``, as Keras's and scikit-learn's constructors take it) is shown the fit that takes it,
    with the ``value`` given; so is one that stands for a fit option (``learning_rate``: lr, another tool's name;
    ``epoch``: epochs), where it stands for none of ``names``; a schedule's option, in the Schedule that reads it and
    the other keywords ``given`` (:func:`_in_schedule`). A fit given an option of another kind of model's fit only
    (``other_fits``: ``{"Ensemble": [...]}``), or a name standing for one where it stands for none of ``names``, is
    told whose it is (``MLP.fit(bootstrap=True)``: an Ensemble's); where the model's own constructor takes it
    (``made_with``: an Ensemble's graph), it is shown there, as Checkpoint.resume's refusal says whose it is."""
    said = f"{call}() got an unexpected keyword argument {key!r}"
    shown = _shown(value)
    other = (OTHER_CALL_KEYWORDS.get(call, {}).get(key) or OTHER_KEYWORDS.get(call.rsplit(".", 1)[-1], {}).get(key)
             or OTHER_MODEL_KEYWORDS.get(call, {}).get(key) or OTHER_CALLBACK_KEYWORDS.get(call, {}).get(key)
             or OTHER_SCHEDULE_KEYWORDS.get(call, {}).get(key)
             or OTHER_OPTIMIZER_KEYWORDS.get(call, {}).get(key)
             or (FIT_OPTIONS_TO_A_SOURCE.get(key) if call in SOURCE_MAKERS else None))
    if other:
        return TypeError(f"{said} ({other})")
    if key in fit_options:
        return TypeError(f"{said} ({key} is fit's option: model.fit(X, Y, {key}={shown}))")
    if key == "betas" and {"beta1", "beta2"} <= set(names):  # Adam(betas=(0.9, 0.99)) was "did you mean beta2?"
        return TypeError(f"{said} (PyTorch's betas pair is two options here: {call}({_betas(value)}))")
    placed = _placed_option(key, [*names, *fit_options])  # (gama: gamma)
    meant_words = _did_you_mean(placed, key)
    if placed in OPTIMIZER_OPTIONS and "optimizer" in [*names, *fit_options]:
        option = _betas(value) if placed == "betas" else f"{placed}={shown}"
        return TypeError(f"{said} ({meant_words}{placed} is the optimizer's option: model.fit(X, Y, "
                         f"optimizer=gpunn.{OPTIMIZER_OPTIONS[placed]}({option})))")
    if placed in SCHEDULE_OPTIONS and "schedule" in [*names, *fit_options]:  # fit(schedule="exponential", gamma=0.95)
        return TypeError(f"{said} ({meant_words}{_in_schedule(placed, value, _as_meant(given, key, placed))})")
    found = _keyword_meant(key, names)
    for other, options in (other_fits or {}).items():
        other_option = key if key in options else None if found else _option_meant(key, options)
        if other_option:
            return TypeError(f"{said} ({_other_kinds_option(call, other, other_option, key, shown, made_with)})")
    # (MLP(weights=W) may mean a start, not fit's sample_weight)
    fit_found = None if found or key.replace("_", "-") in ROW_WEIGHT_NAMES else _keyword_meant(key, fit_options)
    if fit_found and len(fit_found.names) == 1:
        option = _as_keyword(fit_found.names[0], None)
        return TypeError(f"{said} (did you mean {option}? {option} is fit's option: model.fit(X, Y, {option}={shown}))")
    if fit_found:
        options = " or ".join(_as_keyword(name, None) for name in fit_found.names)
        return TypeError(f"{said} (did you mean {options}? they are fit's options: model.fit(X, Y, ...))")
    return TypeError(f"{said}{f' ({found.hint(_as_keyword)})' if found else ''}")


# the estimator's parameters that its partial_fit, one epoch without early stopping, does not read (as scikit-learn's)
ESTIMATOR_FIT_ONLY = ("max_iter", "early_stopping", "validation_fraction")


def unexpected_estimator_keyword(call: str, key: str, names, value=None, parameters=(), given=None) -> TypeError:
    """:func:`unexpected_keyword` for a scikit-learn estimator's ``call`` ("MLPRegressor.fit", partial_fit), which
    takes the data alone, as scikit-learn's: one of the estimator's ``parameters``, or a name standing for one
    (Keras's ``fit(X, y, epochs=10, verbose=0)``: max_iter), is shown set on the estimator. Python's said only
    "unexpected keyword argument"."""
    said, method = f"{call}() got an unexpected keyword argument {key!r}", call.rsplit(".", 1)[-1]
    parameter = None if _keyword_meant(key, names) else _option_meant(key, parameters)  # (x: X)
    if parameter is None:
        return unexpected_keyword(call, key, names, value)
    setting = f"{parameter}={_shown(value) if parameter == key else '...'}"
    read = ""
    if parameter == "validation_fraction":  # read only with early stopping: set alone, it held nothing out
        setting, read = f"early_stopping=True, {setting}", ", read with early_stopping=True"
    if method == "partial_fit" and parameter in ESTIMATOR_FIT_ONLY:  # (set_params(max_iter=5) changed nothing there)
        return TypeError(f"{said} ({_did_you_mean(parameter, key)}partial_fit trains one epoch without early stopping, "
                         f"as scikit-learn's, and does not read {parameter}: call it once per epoch, or "
                         f"est.set_params({setting}).fit(X, y))")
    return TypeError(f"{said} ({_did_you_mean(parameter, key)}{parameter} is the estimator's parameter{read}, set "
                     f"before fit, as in scikit-learn: est.set_params({setting}).{method}(X, y))")


def _placed_option(key: str, names) -> str | None:
    """The optimizer's or schedule's option that keyword ``key`` is, or misspells where it stands for none of the
    call's ``names`` (gama: gamma; momentun: momentum, where the call takes no momentum); else None."""
    if key in OPTIMIZER_OPTIONS or key in SCHEDULE_OPTIONS:
        return key
    return None if _keyword_meant(key, names) else _option_meant(key, [*OPTIMIZER_OPTIONS, *SCHEDULE_OPTIONS])


def _as_meant(given, key: str, option: str):
    """The call's keywords ``given``, ``key`` (gama) under the ``option`` it stands for (gamma), as a hint shows them."""
    return {option if name == key else name: value for name, value in given.items()} if given else given


def _other_kinds_option(call: str, other: str, option: str, key: str, shown: str, made_with) -> str:
    """The hint for fit option ``option`` of another kind of model (``other``: "Ensemble"), given as ``key`` (the
    option or a name meant for it) to ``call`` ("MLP.fit", or "fit": gpunn.fit, an MLP's): set when the model is made
    where its constructor takes it (``made_with``), else the other kind's fit that takes it."""
    kind = call.split(".")[0]
    if "." not in call:  # gpunn.fit, the function
        return (f"{_whose(option, key, other)}, and gpunn.{call} trains one MLP: "
                f"gpunn.{other}(...).fit(X, Y, {option}={shown})")
    if option in made_with:
        return f"{_whose(option, key, other)}; an {kind} takes it when made: gpunn.{kind}(..., {option}={shown})"
    return f"{_whose(option, key, other)}, and this is an {kind}: gpunn.{other}(...).fit(X, Y, {option}={shown})"


def _whose(option: str, key: str, other: str) -> str:
    """"bootstrap is an Ensemble's fit option", after "did you mean bootstrap?" where ``key`` (bootstrp) stands for
    ``option``. (Both kinds' names take "an": an MLP, an Ensemble.)"""
    return f"{_did_you_mean(option, key)}{option} is an {other}'s fit option"


def _did_you_mean(option: str, key: str) -> str:
    """"did you mean gamma? " where keyword ``key`` (gama) stands for ``option``; "" where it is the option."""
    return "" if option == key else f"did you mean {option}? "


def _keyword_meant(key: str, names):
    """:func:`meant` for keyword ``key`` among the parameter ``names``, underscores read as hyphens (learning_rate and
    learning-rate alike)."""
    return meant(key.replace("_", "-"), [name.replace("_", "-") for name in names])


def _option_meant(key: str, options) -> str | None:
    """The one option of ``options`` that keyword ``key`` is or stands for (``learning_rate``: lr), or None."""
    if key in options:
        return key
    found = _keyword_meant(key, options)
    return _as_keyword(found.names[0], None) if found and len(found.names) == 1 else None


def unexpected_resume_keyword(call: str, key: str, names, value=None, fit_options=None, given=None) -> TypeError:
    """:func:`unexpected_keyword` for ``Checkpoint.resume``, given a fit's option (or an optimizer's, or a
    schedule's: gamma, shown in the Schedules that read it) that a resume does not take, the name or one standing for
    it (``learning_rate``: lr): the run goes on with the settings its checkpoint holds, so the message shows the fit
    of the loaded model that trains on with another (Python's said only ``got an unexpected keyword argument
    'lr'``). ``fit_options``: each kind of model's fit options, ``{"MLP": [...], "Ensemble": [...]}``, the
    checkpoint's own kind first; an option that only another kind's fit takes (``bootstrap``, given an MLP's run) is
    said to be that kind's: the loaded model's fit would refuse it."""
    kinds = dict(fit_options or {})
    kind, own = next(iter(kinds.items()), (None, ()))
    exact = key in OPTIMIZER_OPTIONS or key in SCHEDULE_OPTIONS or any(key in options for options in kinds.values())
    if not exact and _keyword_meant(key, names):
        return unexpected_keyword(call, key, names, value)  # resume's own, misspelt (epoch: epochs)
    option = key if key in OPTIMIZER_OPTIONS or key in SCHEDULE_OPTIONS else (_option_meant(key, own)
                                                                              or _placed_option(key, names))
    for other, options in list(kinds.items())[1:] if option is None else ():
        other_option = _option_meant(key, options)
        if other_option:
            return TypeError(f"{call}() got an unexpected keyword argument {key!r} ({_whose(other_option, key, other)}, "
                             f"and this checkpoint holds an {kind}'s run: resume it without {other_option})")
    if option is None:
        return unexpected_keyword(call, key, names, value)
    shown = _shown(value)
    if value is None and option in OPTIMIZER_OPTIONS:  # fit's "not given", which no optimizer takes as a setting
        return TypeError(f"{call}() got an unexpected keyword argument {key!r} (a resume continues the run with the "
                         f"optimizer its checkpoint holds, its {option} among its settings; {key}=None changes "
                         f"nothing: resume without it)")
    if option == "optimizer":
        new_fits = [f"optimizer={shown}"]
    elif option in OPTIMIZER_OPTIONS:  # a new optimizer of that setting
        setting = _betas(value) if option == "betas" else f"{option}={shown}"
        new_fits = [f"optimizer=gpunn.{OPTIMIZER_OPTIONS[option]}({setting})"]
    elif option in SCHEDULE_OPTIONS:  # the run's optimizer goes on, under a schedule that reads the option
        new_fits = [f"optimizer=ckpt.optimizer, schedule={schedule}"
                    for schedule in _schedules_reading(option, value, _as_meant(given, key, option))[1]]
    else:  # the run's optimizer goes on, its moments and step count too
        new_fits = [f"optimizer=ckpt.optimizer, {option}={shown}"]
    meant_words = _did_you_mean(option, key)
    fits = " or ".join(f"ckpt.model.fit(X, Y, {new_fit})" for new_fit in new_fits)
    return TypeError(f"{call}() got an unexpected keyword argument {key!r} ({meant_words}a resume continues the run "
                     f"with the settings its checkpoint holds, {option} among them; to train on with another, fit "
                     f"the loaded model from the run's weights: {fits}, a new run whose epochs count from 1)")


def known_name(name, names, what: str) -> str:
    """The name of ``names`` (gpunn's, all lower case) that ``name`` is in any letter case: "Adam" is "adam", as
    Keras takes optimizer names, and a model, checkpoint or config file records "adam". Anything else is a
    ValueError naming ``what``, with a hint where there is one (:func:`name_hint`)."""
    folded = {known.lower(): known for known in names}
    found = folded.get(name.lower()) if isinstance(name, str) else None
    if found is not None:
        return found
    raise unknown_name(name, names, what)


def keyword_hint(key: str, names) -> str:
    """" (did you mean learning_rate_init?)" for keyword ``key``, none of the parameter ``names`` (lr, gpunn's name; a
    misspelling), as :func:`unexpected_keyword` words it; "" for none: for a refusal in another library's words
    (scikit-learn's set_params)."""
    found = _keyword_meant(key, names)
    return f" ({found.hint(_as_keyword)})" if found else ""


def unknown_name(name, names, what: str) -> ValueError:
    """The ValueError of :func:`known_name` for ``name``, none of ``names``: its hint, then the names to choose from."""
    return ValueError(f"unknown {what} {value_repr(name)}{bracketed_hint(name, names, what)}; choose one of: "
                      f"{', '.join(names)}")


def bracketed_hint(name, names, what: str) -> str:
    """:func:`name_hint` as a refusal shows it after the name refused, " (did you mean 'adam'?)"; "" for none: one
    call for a refusal in its own words (solver must be one of ..., got 'adma' (did you mean 'adam'?))."""
    hint = name_hint(name, names, what)
    return f" ({hint})" if hint else ""


def name_hint(name, names, what: str) -> str:
    """The hint for ``name``, no name of ``names`` (``what``'s): another library's name (swish: "'swish' is gpunn's
    'silu'"; rmsprop: "'rmsprop' is not supported"), else the name meant (leakyrelu: "did you mean 'leaky_relu'?");
    another library's object or class by its class's name (PyTorch's nn.Tanh(): "a name, not torch's Tanh: did you
    mean 'tanh'?"), its function by the function's (F.relu: "a name, not torch's function relu: ..."); "" for none."""
    if not isinstance(name, str):  # PyTorch's nn.ReLU() said "unknown activation ReLU()" alone, and F.relu still does
        foreign = _foreign_class(name)
        hint = name_hint(foreign[1], names, what) if foreign else ""
        return f"a name, not {foreign[0]}'s {foreign[2]}: {hint}" if hint else ""
    other = other_library(name, what)
    if other:
        return other
    found = meant(name, names, aliases=False)
    return found.hint(lambda known, _: repr(known)) if found else ""


def _foreign_class(obj) -> tuple | None:
    """(library, name, words) of another library's object, class or function given where gpunn takes a name
    (PyTorch's nn.ReLU() or nn.ReLU, torch.optim.Adam, a StepLR: ("torch", "ReLU", "ReLU"); its functions,
    F.relu or torch.tanh: ("torch", "relu", "function relu")); None for gpunn's own, Python's and NumPy's."""
    if inspect.isroutine(obj) and isinstance(user_attribute(obj, "__name__"), str):  # (a function's type is Python's)
        module, name, words = user_attribute(obj, "__module__") or "builtins", obj.__name__, "function "
    else:  # (its type, not its __class__, which a Mock(spec=type) or a proxy sets to a class it is not)
        cls = obj if issubclass(type(obj), type) else type(obj)
        module, name, words = cls.__module__, cls.__name__, ""
    if not (isinstance(module, str) and isinstance(name, str)):  # (an odd object's: no hint, the refusal alone)
        return None
    library = module.split(".")[0]
    return None if library in ("gpunn", "builtins", "numpy") else (library, name, words + name)


def folding(names, what: str, any_case: bool = True):
    """An argparse ``type`` for a ``choices`` option of ``what``'s ``names``: a name in another letter case as gpunn
    spells it (--optimizer Adam: adam, as known_name); an unknown name with a hint refused with known_name's words
    (--activation swish: "'swish' is gpunn's 'silu'"), any other as written, for argparse (or a config file's
    check) to refuse as it does. Without ``any_case`` a name is taken as written only, as the Python argument of
    the option takes it (precision="TF32" is refused), and one in another letter case is refused with the hint too
    (--precision TF32: did you mean 'tf32'?; --precision fp32: "'fp32' is gpunn's 'float32'")."""
    folded = {known.lower(): known for known in names} if any_case else {known: known for known in names}

    def name(text):
        known = folded.get(text.lower() if any_case else text)
        if known is not None:
            return known
        if name_hint(text, names, what):
            raise argparse.ArgumentTypeError(str(unknown_name(text, names, what)))
        return text

    return name


# A wrapper that only passes a call on (a keyword check, a method made of a function, an __init__ that cleans up
# when refused) sets __tracebackhide__ = True in its frame: IPython and Jupyter ("[... skipping hidden 1 frame]")
# and pytest leave such frames out of a traceback. A notebook's error in model.fit showed three of them, the same
# two lines of gpunn's plumbing each, between the user's line and the fit that refused the call.
def too_many_positional(name, by_position, by_keyword, extra) -> TypeError:
    """Python's refusal of positional arguments past ``by_position`` (``fit(X, Y, 10, 32)``: "fit() takes from 2 to 3
    positional arguments but 5 were given", counting self), saying the options after them are keywords. The values
    are not matched to names: Keras's fit(x, y, batch_size, epochs) orders them otherwise; one past 40 characters is
    "..." (fit(X, Y, X_val, Y_val) wrote out both arrays)."""
    # a method's or a constructor's: not its self, nor the model of the fit a method is made from
    shown = by_position[1:] if "." in name or by_position[:1] == ["self"] else by_position
    values = ", ".join(_shown(value) for value in extra)
    example = ", ".join([*shown, *(f"{p}=..." for p in by_keyword[:2])])
    return TypeError(f"{name}() takes {', '.join(shown)} by position and its options by keyword, and got "
                     f"{len(extra)} more by position ({values}): name them, {name}({example})")


def keywords_checked(function, name=None, fit_options=(), refusal=unexpected_keyword):
    """``function`` refusing a keyword it does not take as Python does, a TypeError, but naming the parameter meant
    (``validation_split``, Keras's name: ``validation_fraction``), or, for a constructor, the class's fit where
    ``fit_options`` has it (:func:`unexpected_keyword`, or the ``refusal`` given: Checkpoint.resume's, whose
    ``fit_options`` is a function of the call's first argument, the checkpoint, giving its model's); ``name``: the
    call's in the message. A function taking ``**kwargs`` is given back as it is (any keyword is its own)."""
    parameters = inspect.signature(function).parameters  # (a decorated function's own: signature unwraps)
    if any(spec.kind == spec.VAR_KEYWORD for spec in parameters.values()):
        return function
    known = {p for p, spec in parameters.items() if spec.kind not in (spec.POSITIONAL_ONLY, spec.VAR_POSITIONAL)}
    # a positional-only parameter given by keyword is Python's to refuse ("got some positional-only arguments passed as
    # keyword arguments"), and no hint names one: a user's Callback(every, /) given every=2 was "did you mean every?"
    positional = set(parameters) - known
    names = [p for p in list(parameters)[1:] if p in known]
    by_position = [p for p, spec in parameters.items() if spec.kind in (spec.POSITIONAL_ONLY, spec.POSITIONAL_OR_KEYWORD)]
    by_keyword = [p for p, spec in parameters.items() if spec.kind == spec.KEYWORD_ONLY]
    takes_more = any(spec.kind == spec.VAR_POSITIONAL for spec in parameters.values())

    @functools.wraps(function)
    def checked(*args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (out of tracebacks: see above)
        if len(args) > len(by_position) and by_keyword and not takes_more:
            raise too_many_positional(name or function.__name__, by_position, by_keyword, args[len(by_position):])
        for key in kwargs:
            if key not in known and key not in positional:
                options = fit_options(args[0]) if callable(fit_options) else fit_options
                raise refusal(name or function.__name__, key, names, kwargs[key], options, kwargs)
        return function(*args, **kwargs)
    return checked


def targets_refused(predict, name):
    """A model's ``predict`` refusing targets given after X (``model.predict(X, Y)``, as score takes them) by the
    methods that take them, where Python said "takes 2 positional arguments but 3 were given" (and an Ensemble's,
    whose second is ``return_std``, "return_std must be True or False, got array(...)"). ``name``: "MLP.predict".
    A second argument that is no array (``ens.predict(X, True)``; a NumPy scalar, ``numpy.True_``, whose shape is
    ()) is left to ``predict``."""
    model = name.rsplit(".", 1)[0]
    options = list(inspect.signature(predict).parameters)[2:]  # (after self and X: an Ensemble's return_std)

    @functools.wraps(predict)
    def checked(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 (out of tracebacks: see keywords_checked)
        if len(args) > 1 and (getattr(args[1], "shape", ()) != () or isinstance(args[1], (list, tuple))):
            takes = f"X and {', '.join(f'{p}=...' for p in options)}" if options else "X alone"
            raise TypeError(f"{name}() takes {takes}, not the targets: {model}.evaluate(X, Y) scores the "
                            f"predictions against them (loss, mse, mae, r2), {model}.score(X, Y) gives R²")
        return predict(self, *args, **kwargs)
    return checked


def keywords_hinted(cls):
    """The class ``cls`` whose constructor refuses a keyword it does not take naming the one meant, as fit does
    (:func:`keywords_checked`): ``Adam(beta_1=0.9)``, Keras's name, said only "unexpected keyword argument
    'beta_1'" where gpunn's is beta1. For a class's own ``__init__``; a base class hints its subclasses' with
    ``__init_subclass__``. A class with a ``fit`` (MLP, Ensemble) names it for the keywords it takes: MLP(lr=0.1)."""
    fit = inspect.signature(cls.fit).parameters if callable(getattr(cls, "fit", None)) else {}
    fit_options = [p for p, spec in fit.items() if spec.kind == spec.KEYWORD_ONLY]  # (not X, Y)
    if "__init__" in cls.__dict__:
        cls.__init__ = keywords_checked(cls.__dict__["__init__"], cls.__name__, fit_options)
    return cls
