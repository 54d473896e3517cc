"""Optimizers and learning-rate schedules, working on the model's flat buffers.

An optimizer holds one flat state array per moment (same length as the
parameters), so each step is one ``ops`` call over the whole model.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass

import numpy

from .checks import flag, got, non_negative_int, non_negative_number, positive_int, real
from .hints import a_type, bracketed_hint, keywords_hinted, known_name, value_repr


def check_lr(lr) -> float:
    number = real(lr)
    if number is None or not math.isfinite(number) or number <= 0:
        several = numpy.ndim(lr) == 1 and len(lr) > 1  # (one per member, an Ensemble's)
        raise ValueError(f"learning rate must be a positive finite number, {got(lr)}" + (
            f"; {len(lr)} rates, one per member, are an Ensemble's: gpunn.Ensemble(layer_sizes, {len(lr)})"
            ".fit(X, Y, lr=[...]) trains a model per rate at once" if several else ""))
    return number


CLIP_OPTIONS = ("clip_norm", "clip_value")  # every optimizer's, in its config where set


def clip_limit(value, name: str) -> float | None:
    """A gradient clipping limit (``clip_norm``, ``clip_value``): None (off), or a finite real number > 0 as a Python
    float; else ValueError naming ``name``."""
    if value is None:
        return None
    number = real(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive finite number (None: no clipping), {got(value)}")
    return number


def _parameters_like(value) -> bool:
    """Whether ``value``, an optimizer's first argument (its lr), is a model's parameters rather than a rate or
    several: an iterator (PyTorch's net.parameters()), a list of arrays (model.weights), an array of 2-D or more
    (one weight matrix), or a 1-D array of several values, one of them negative, which no rate can be (model.params:
    He-initialized weights). Rates of 0 and more are left to check_lr (several: one per member, an Ensemble's:
    numpy.linspace(0, 1e-2, 5), whose 0 check_lr refuses as a rate)."""
    if hasattr(value, "__next__"):
        return True
    if isinstance(value, (list, tuple)):  # (by ndim: NumPy's scalars have a shape, (), and are rates)
        return any(numpy.ndim(item) > 0 for item in value)
    ndim = getattr(value, "ndim", 0)
    if ndim != 1 or value.size < 2:
        return ndim > 1
    try:
        return not bool((value >= 0).all())
    except TypeError:  # text or None among them (NumPy's "ufunc 'greater' did not contain a loop"): check_lr's to say
        return False


def _parameters_words(value) -> str:
    """What :func:`_parameters_like` found, as a refusal names it: "a generator", "a list of 2 arrays", "an array
    of 21 values", "model.weights, 2 arrays" (a model's own list: gpunn.model.ParamList, which the user never
    named)."""
    if isinstance(value, (list, tuple)):
        arrays = f"{len(value)} array{'s' * (len(value) != 1)}"
        attribute = getattr(value, "model_attribute", None)
        return f"model.{attribute}, {arrays}" if attribute else f"{a_type(value)} of {arrays}"
    if hasattr(value, "shape"):
        return f"an array of shape {tuple(value.shape)}"
    return a_type(value)


class Optimizer:
    """What every optimizer takes: ``lr``, the learning rate (None: the class's ``default_lr``, 1e-3 for
    Adam and AdamW, 1e-2 for the SGD family; a schedule and ReduceLROnPlateau scale it per epoch, or per step
    with a warm-up or onecycle, whose peak it is), and
    ``weight_decay`` (>= 0, default 0; AdamW's 0.01), applied to every parameter, biases included.

    Gradient clipping, one at a time (None: off), of the loss's gradient before the step (before weight decay is
    added and before the moments; data parallel: of the gradient averaged over the ranks):
    ``clip_norm`` = c scales every gradient (each dW and db, as one vector) by min(1, c / (||g||_2 + 1e-6)), as
    PyTorch's ``torch.nn.utils.clip_grad_norm_(params, max_norm=c)`` and Keras's ``global_clipnorm``;
    ``clip_value`` = v clamps each gradient element to [-v, v], as ``torch.nn.utils.clip_grad_value_``.

    An optimizer keeps its moments and step count (``steps``) between fits of the model it was bound
    to, so a second ``fit`` with the same object continues; bound to another model it starts afresh.
    A subclass names its state arrays (``state_names``) and defines ``step(params, grads, lr)`` over the
    flat buffers and ``config()``."""

    name = "optimizer"
    default_lr = 1e-3
    clip_norm = clip_value = None  # (an object made before clipping, unpickled, clips nothing)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keywords_hinted(cls)  # Adam(beta_1=0.9): did you mean beta1?

    def __new__(cls, *args, **kwargs):
        # PyTorch's optimizers take the parameters first, torch.optim.Adam(net.parameters(), lr=1e-3): gpunn.Adam(
        # model.params) was "learning rate must be a positive finite number, got array([...]); 21 rates, one per
        # member, are an Ensemble's", and with lr= too Python's "got multiple values for argument 'lr'"
        if args and _parameters_like(args[0]):
            raise TypeError(f"{cls.__name__}() got the model's parameters ({_parameters_words(args[0])}), as "
                            f"PyTorch's optimizers take them: gpunn's take none, as fit gives the optimizer its "
                            f"model's: model.fit(X, Y, optimizer=gpunn.{cls.__name__}(lr=...))")
        return super().__new__(cls)

    def __init__(self, lr=None, weight_decay=0.0, clip_norm=None, clip_value=None):
        self.lr = check_lr(self.default_lr if lr is None else lr)
        self.weight_decay = non_negative_number(weight_decay, "weight_decay")
        self.clip_norm, self.clip_value = clip_limit(clip_norm, "clip_norm"), clip_limit(clip_value, "clip_value")
        if self.clip_norm is not None and self.clip_value is not None:  # (as Keras 3 refuses two of its three)
            raise ValueError(f"clip_norm={self.clip_norm!r} and clip_value={self.clip_value!r}: gpunn clips one way at "
                             "a time; give one of them (clip_norm scales the gradients to a global 2-norm of at most "
                             "clip_norm, clip_value clamps each element to [-clip_value, clip_value])")
        self.steps = 0
        self.state = {}  # name -> flat device array, shaped like the parameters
        self._params = None  # the buffer it was last bound to

    def bind(self, params, ops):
        """Allocate state for the flat parameter buffer ``params`` (on its device).

        Bound again to the same buffer (a second ``fit`` of the same model with this optimizer), its
        moments and step count go on. Bound to another model's buffer, it starts afresh, as a new optimizer
        would: the next model must not take the last one's moments and Adam bias correction. State given
        before the first bind (a checkpoint's) is kept."""
        if self._params is not None and self._params is not params:
            for moment in self.state.values():  # in place: a CUDA graph captured with them keeps working
                moment.fill(0)
            self.steps = 0
        self._params = params
        self.ops = ops
        for key in self.state_names():
            if key not in self.state or self.state[key].shape != params.shape:
                self.state[key] = ops.xp.zeros_like(params)
        return self

    def state_names(self):
        return ()

    def step(self, params, grads, lr):
        raise NotImplementedError

    def clip(self, grads):
        """The loss's gradient ``grads`` (the flat buffer) clipped in place by ``clip_norm`` or ``clip_value``, as each
        step does first; on the device, with no host synchronisation (a captured CUDA graph replays it)."""
        if self.clip_norm is not None:
            self.ops.clip_grad_norm(grads, self.clip_norm)
        elif self.clip_value is not None:
            self.ops.clip_grad_value(grads, self.clip_value)

    # Optimizers that define graph_update(params, grads, state) can run inside a captured CUDA
    # graph: their per-step scalars live in ``state`` (gpunn.training.graph), advanced on the device.
    graph_update = None

    def config(self) -> dict:
        clipping = {key: getattr(self, key) for key in CLIP_OPTIONS if getattr(self, key) is not None}
        return {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay, **clipping}  # (clipping where on)

    def __repr__(self):
        config = self.config()
        args = ", ".join(f"{key}={config[key]!r}" for key in options_of(type(self)) if key in config)
        return f"{type(self).__name__}({args})"


# why momentum stops short of 1 (scikit-learn's MLPRegressor takes 1): v <- momentum v + dW keeps every past gradient
# at full weight, a ball without friction, so on a quadratic bowl the weights circle its bottom for ever
MOMENTUM_OF_ONE = ("at 1 the velocity never decays (it sums every past gradient at full weight), so the weights never "
                   "settle")


class SGD(Optimizer):
    """W <- W - lr * dW (README's "The math"), with optional (Nesterov) momentum and L2 decay, as torch.optim.SGD.

    ``lr`` default 1e-2. ``momentum`` in [0, 1) (0: none): v <- momentum v + dW, W <- W - lr v.
    ``nesterov`` (needs momentum > 0): W <- W - lr (dW + momentum v). ``weight_decay``: L2,
    weight_decay x W added to dW. ``clip_norm``, ``clip_value``: see Optimizer."""

    name = "sgd"
    default_lr = 1e-2

    def __init__(self, lr=None, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        self.momentum = non_negative_number(momentum, "momentum")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), {got(momentum)}"
                             + (f": {MOMENTUM_OF_ONE}" if self.momentum == 1 else ""))
        nesterov = flag(nesterov, "nesterov")
        if nesterov and not self.momentum:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)

    def state_names(self):
        return ("velocity",) if self.momentum else ()

    def step(self, params, grads, lr):
        self.steps += 1
        self.clip(grads)
        self.ops.sgd_step(params, grads, self.state.get("velocity"), lr, self.momentum, self.nesterov, self.weight_decay)

    def graph_update(self, params, grads, state):
        """step() with lr = state[1], for CUDA-graph replay (the caller counts ``steps``)."""
        self.ops.optimizer_tick(state, 0.0, 0.0)
        self.clip(grads)
        self.ops.sgd_step_dev(params, grads, self.state.get("velocity"), state, self.momentum, self.nesterov,
                              self.weight_decay)

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Momentum(SGD):
    """SGD with momentum 0.9 by default (``lr`` default 1e-2); see SGD."""

    name = "momentum"

    def __init__(self, lr=None, momentum=0.9, nesterov=False, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, momentum, nesterov, weight_decay, clip_norm, clip_value)


class Nesterov(SGD):
    """SGD with Nesterov momentum, 0.9 by default (``lr`` default 1e-2); see SGD."""

    name = "nesterov"

    def __init__(self, lr=None, momentum=0.9, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, momentum, True, weight_decay, clip_norm, clip_value)


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam's formulas).

    ``lr`` default 1e-3; ``beta1``, ``beta2`` in [0, 1): the decay rates of the mean (m) and uncentred
    variance (v) of the gradient; ``eps`` > 0, added to sqrt(v) after its bias correction;
    ``weight_decay``: L2, weight_decay x W added to the gradient (AdamW decouples it); ``clip_norm``,
    ``clip_value``: see Optimizer."""

    name = "adam"
    decoupled = False

    def __init__(self, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None, clip_value=None):
        super().__init__(lr, weight_decay, clip_norm, clip_value)
        betas = real(beta1), real(beta2)
        for label, beta, number in (("beta1", beta1, betas[0]), ("beta2", beta2, betas[1])):
            if number is None or not 0 <= number < 1:
                raise ValueError(f"{label} must be in [0, 1), {got(beta)}")
        self.eps = real(eps)
        if self.eps is None or not 0 < self.eps < math.inf:
            raise ValueError(f"eps must be a positive finite number, {got(eps)}")
        self.beta1, self.beta2 = betas

    def state_names(self):
        return ("m", "v")

    def step(self, params, grads, lr):
        self.steps += 1
        self.clip(grads)
        s = self.state
        self.ops.adam_step(params, grads, s["m"], s["v"], lr, self.beta1, self.beta2, self.eps,
                           self.steps, self.weight_decay, self.decoupled)

    def graph_update(self, params, grads, state):
        """step() with lr = state[1] and the step count in state[0], for CUDA-graph replay."""
        s = self.state
        self.ops.optimizer_tick(state, self.beta1, self.beta2)
        self.clip(grads)
        self.ops.adam_step_dev(params, grads, s["m"], s["v"], state, self.beta1, self.beta2, self.eps,
                               self.weight_decay, self.decoupled)

    def config(self):
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay, W <- W (1 - lr weight_decay) before the Adam step
    (torch.optim.AdamW; default decay 0.01 as there). The other options are Adam's."""

    name = "adamw"
    decoupled = True

    def __init__(self, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=None, clip_value=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm, clip_value)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW)}


def options_of(cls) -> tuple:
    """The keyword options an Optimizer class takes (``Nesterov``: lr, momentum, weight_decay)."""
    return tuple(inspect.signature(cls.__init__).parameters)[1:]  # (through keywords_hinted's wrapper)


def default_of(optimizer, option):
    """What ``option`` ("lr", "weight_decay", "momentum", ...) left unset comes to for the optimizer named
    ``optimizer``: its class's default (``lr``: ``default_lr``, 1e-3 for adam and adamw, 1e-2 for the SGD
    family; ``weight_decay``: 0.01 for adamw, 0 for the others), or None where it takes no such option. The
    command line resolves an unset --lr, --weight-decay and --momentum by it (gpunn train and gpunn sweep alike,
    and --resume's checks), so that it means what the Python default means."""
    cls = OPTIMIZERS.get(optimizer)
    if cls is None or option not in options_of(cls):
        return None
    if option == "lr":
        return cls.default_lr
    return inspect.signature(cls.__init__).parameters[option].default


def make_optimizer(optimizer="adam", **kwargs) -> Optimizer:
    """An Optimizer from an Optimizer (``lr``, when given, replaces its rate), or a name (None: "adam", the
    default, as a schedule of None is "constant") and its keywords."""
    if optimizer is None:
        optimizer = "adam"
    if isinstance(optimizer, Optimizer):
        if kwargs.get("lr") is not None:
            optimizer.lr = check_lr(kwargs["lr"])
        return optimizer
    if issubclass(type(optimizer), type) and issubclass(optimizer, Optimizer):  # (its type: an object whose __class__
        # claims a class, a Mock(spec=type), failed issubclass's own TypeError)
        raise TypeError(f"optimizer is the class {optimizer.__name__}; pass an instance, {optimizer.__name__}(lr=...), "
                        f"or its name, {optimizer.name!r}")
    if not isinstance(optimizer, str) and (said := misplaced(optimizer, "optimizer")):
        raise TypeError(said)
    optimizer = known_name(optimizer, OPTIMIZERS, "optimizer")  # in any letter case: "Adam" is adam, as in Keras
    cls = OPTIMIZERS[optimizer]
    accepted = options_of(cls)
    unknown = sorted(k for k, v in kwargs.items() if k not in accepted and v is not None)
    if unknown:
        raise ValueError(f"optimizer {optimizer!r} does not take {', '.join(unknown)}; it takes {', '.join(accepted)}")
    return cls(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})


def misplaced(value, option: str) -> str:
    """Where ``value``, given as fit's ``option`` ("optimizer", "schedule" or "callbacks[i]"), belongs, where it is
    one of fit's other kinds of object: a callback (PyTorch's ReduceLROnPlateau is a scheduler, gpunn's a callback),
    a Schedule or an Optimizer; else "". A callback is told by its hooks: this module imports no training code."""
    if isinstance(value, Schedule):
        where, what = "schedule", "fit's schedule"
    elif isinstance(value, Optimizer):
        where, what = "optimizer", "fit's optimizer"
    elif _defines_hook(value) and not isinstance(value, type):
        where, what = "callbacks", "a callback"
    else:
        return ""
    if option.startswith(where):
        return ""
    name = type(value).__name__
    given = f"[{value!r}]" if where == "callbacks" else repr(value)
    scales = " (it scales the schedule's rate on a plateau)" if name == "ReduceLROnPlateau" else ""
    return f"{option} is {name}(...), {what}, not {_KINDS[option.split('[')[0]]}: fit(..., {where}={given}){scales}"


def _defines_hook(value) -> bool:
    """Whether ``value`` (or its class) defines a callable ``on_epoch_end``, read without calling its ``__getattr__``:
    a unittest.mock.Mock answers every name, so it was told it is "a callback" (given as the optimizer or the
    schedule: it is refused as no optimizer's name instead), and a user's attribute dict raises KeyError for one
    it lacks, which stood in place of the refusal."""
    try:
        return callable(inspect.getattr_static(value, "on_epoch_end"))
    except AttributeError:
        return False


_KINDS = {"optimizer": "an optimizer", "schedule": "a schedule", "callbacks": "a callback"}


# ---- learning-rate schedules: (epoch, optimizer step) -> multiplier of the base rate --------------
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle")
ONECYCLE_FIELDS = ("pct_start", "div_factor", "final_div_factor", "anneal", "total_steps")
SCHEDULE_FIELDS = {"constant": ("warmup_steps",), "step": ("step_size", "gamma", "warmup_steps"),
                   "exponential": ("gamma", "warmup_steps"), "cosine": ("total_epochs", "min_factor", "warmup_steps"),
                   "onecycle": ONECYCLE_FIELDS}  # the fields each schedule reads
STEP_GAMMA = 0.1  # step's default factor per decay, PyTorch's StepLR's; exponential has none (as ExponentialLR)
ANNEALS = ("cos", "linear")  # onecycle's anneal_strategy, PyTorch's OneCycleLR's names
# what each option sets, as a refusal of one given to a schedule that does not read it says (as --gamma's does)
SCHEDULE_OPTION_USES = {
    "step_size": "sets the epochs between a step schedule's decays",
    "gamma": "sets the factor of a step schedule (per decay) and of an exponential one (per epoch)",
    "total_epochs": "sets a cosine schedule's period", "min_factor": "sets a cosine schedule's floor",
    "warmup_steps": "sets a linear warm-up over the run's first optimizer steps (onecycle has its own warm phase, "
                    "pct_start)",
    "pct_start": "sets the share of a onecycle schedule's steps spent rising to the peak",
    "div_factor": "sets a onecycle schedule's first rate, lr / div_factor",
    "final_div_factor": "sets a onecycle schedule's last rate, lr / div_factor / final_div_factor",
    "anneal": "sets how a onecycle schedule moves between its rates (cos or linear)",
    "total_steps": "sets a onecycle schedule's length in optimizer steps"}
PER_STEP_FIELDS = {"warmup_steps", *ONECYCLE_FIELDS}  # (a checkpoint from before them records none)
# a Schedule's options, each read by some schedules
_OPTIONS = ("step_size", "gamma", "total_epochs", "min_factor", "warmup_steps", *ONECYCLE_FIELDS)
NEEDS_GAMMA = ("an exponential schedule needs its gamma, the factor per epoch; it has no default, as PyTorch's "
               "ExponentialLR has none (a tenth per epoch, step's default, takes lr 1e-3 to 1e-8 by epoch 6)")


class _NotGivenInt(int):
    """An int a Schedule holds that its caller did not give (:func:`_not_given`)."""
    __slots__ = ()


class _NotGivenFloat(float):
    """A float a Schedule holds that its caller did not give (:func:`_not_given`)."""
    __slots__ = ()


class _NotGivenStr(str):
    """A string a Schedule holds that its caller did not give (:func:`_not_given`): onecycle's anneal."""
    __slots__ = ()


_NOT_GIVEN = (_NotGivenInt, _NotGivenFloat, _NotGivenStr)


def _not_given(value):
    """``value`` marked as a Schedule's own option, not its caller's: an option's default, or one a checkpoint
    records. The mark is its type, so that it goes through dataclasses.replace and a copy (which give every field
    back to the constructor) and is told apart from the same value given (``Schedule("cosine", gamma=0.1)``:
    refused); it is the value for all else (arithmetic, ==, JSON). Anything but an int, a float or a string is left
    as it is."""
    if isinstance(value, (int, float, str)) and not isinstance(value, (bool, *_NOT_GIVEN)):
        return (_NotGivenStr if isinstance(value, str) else _NotGivenInt if isinstance(value, int)
                else _NotGivenFloat)(value)
    return value


def _given(value) -> bool:
    """Whether the caller gave a Schedule this option's ``value``: not None (unset), not :func:`_not_given`'s."""
    return value is not None and not isinstance(value, _NOT_GIVEN)


def _positive_finite(value, name: str) -> float:
    number = real(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive finite number, {got(value)}")
    return number


@keywords_hinted
@dataclass(frozen=True)
class Schedule:
    """The learning rate of optimizer step s (counted from 0 over the whole run) in epoch e is
    ``lr x factor(e) x warm(s)``. factor(e): "constant" (1); "step" (x gamma every step_size epochs);
    "exponential" (x gamma per epoch); "cosine" (to min_factor over total_epochs, default the run's).
    warm(s) = min(1, (s + 1) / warmup_steps), a linear warm-up over the first warmup_steps steps (0: none), as
    PyTorch's LinearLR(start_factor=1/N, total_iters=N - 1) stepped after every batch, chained with the epoch's.
    "onecycle" is PyTorch's OneCycleLR (cycle_momentum=False: momentum and Adam's beta1 are not cycled) stepped
    after every batch, with lr its peak, max_lr: from lr / div_factor up to lr over the first pct_start of
    total_steps (0: the run's, epochs x batches per epoch), then down to lr / div_factor / final_div_factor, by
    ``anneal`` "cos" or "linear"; a run of more steps than total_steps is refused.

    E.g. ``fit(..., schedule=gpunn.Schedule("step", step_size=2, gamma=0.5))``, or a name, which takes the
    defaults below; "exponential" has no default gamma (PyTorch's ExponentialLR has none): give it one,
    ``Schedule("exponential", gamma=0.95)``. ``gamma`` holds the resolved number (a checkpoint records it). An
    option the schedule does not read, given at any value (``Schedule("cosine", gamma=0.5)``, and ``gamma=0.1``,
    its default, too), is refused, as ``gpunn train --schedule cosine --gamma 0.5`` is; a copy
    (``dataclasses.replace``) and a pasted repr (which shows the options the schedule reads) give none, and a
    checkpoint holding one resumes as it ran."""

    name: str = "constant"
    step_size: int = _NotGivenInt(10)  # step: epochs between decays
    gamma: float | None = None  # step: factor per decay (None: 0.1); exponential: factor per epoch (required)
    total_epochs: int = _NotGivenInt(0)  # cosine: period (0 means the run's epoch count)
    min_factor: float = _NotGivenFloat(0.0)  # cosine: floor as a fraction of the base rate
    warmup_steps: int = _NotGivenInt(0)  # all but onecycle: linear warm-up over the run's first steps (0: none)
    pct_start: float = _NotGivenFloat(0.3)  # onecycle: share of total_steps rising to the peak (PyTorch's default)
    div_factor: float = _NotGivenFloat(25.0)  # onecycle: first rate = lr / div_factor
    final_div_factor: float = _NotGivenFloat(1e4)  # onecycle: last rate = lr / div_factor / final_div_factor
    anneal: str = _NotGivenStr("cos")  # onecycle: "cos" or "linear" (PyTorch's anneal_strategy)
    total_steps: int = _NotGivenInt(0)  # onecycle: its length in optimizer steps (0 means the run's)

    def __post_init__(self):
        object.__setattr__(self, "name", known_name(self.name, SCHEDULES, "schedule"))  # "Cosine" is cosine
        given = [option for option in _OPTIONS if _given(getattr(self, option))]
        # Python ints (a NumPy integer was refused, and would not go into a checkpoint's JSON)
        object.__setattr__(self, "step_size", positive_int(self.step_size, "step_size"))
        for option in ("total_epochs", "warmup_steps", "total_steps"):
            object.__setattr__(self, option, non_negative_int(getattr(self, option), option))
        if self.gamma is None and self.name == "exponential":
            raise ValueError(f"{NEEDS_GAMMA}: gpunn.Schedule(\"exponential\", gamma=0.95), say")
        gamma = STEP_GAMMA if self.gamma is None else real(self.gamma)  # floats, as the checkpoint's JSON records them
        min_factor, pct_start = real(self.min_factor), real(self.pct_start)
        if gamma is None or not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], {got(self.gamma)}")
        if min_factor is None or not 0 <= min_factor <= 1:
            raise ValueError(f"min_factor must be in [0, 1], {got(self.min_factor)}")
        if pct_start is None or not 0 < pct_start < 1:
            raise ValueError(f"pct_start must be in (0, 1), {got(self.pct_start)}")
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "min_factor", min_factor)
        object.__setattr__(self, "pct_start", pct_start)
        for option in ("div_factor", "final_div_factor"):
            object.__setattr__(self, option, _positive_finite(getattr(self, option), option))
        object.__setattr__(self, "anneal", known_name(self.anneal, ANNEALS, "anneal"))  # "Cos" is cos
        for option in _OPTIONS:
            value = getattr(self, option)
            if option in given and option not in SCHEDULE_FIELDS[self.name]:
                readers = " or ".join(f'Schedule("{name}", {option}={value!r})' for name, fields in
                                      SCHEDULE_FIELDS.items() if option in fields)
                raise ValueError(f"{option}={value!r} {SCHEDULE_OPTION_USES[option]}, and this schedule is "
                                 f"{self.name}: choose {readers} (or drop it)")
            if option not in given:  # (its default: a copy gives it back, and a schedule that reads it takes it)
                object.__setattr__(self, option, _not_given(value))

    def __repr__(self) -> str:
        """The schedule and the options it reads, as a call that makes it again (the fields it does not read, which
        dataclass's repr showed, would be refused as given); warmup_steps where a warm-up is set."""
        read = "".join(f", {option}={getattr(self, option)!r}" for option in SCHEDULE_FIELDS[self.name]
                       if option != "warmup_steps" or self.warmup_steps)
        return f"Schedule(name={self.name!r}{read})"

    def record(self) -> dict:
        """The fields a checkpoint records (``dataclasses.asdict``'s), less the per-step ones at their defaults that
        the schedule does not use: a warm-up of 0, and onecycle's options but in a onecycle schedule. A schedule
        without a per-step rate is then recorded as gpunn recorded it before per-step schedules, and an older gpunn
        reads the file (it checked for exactly its fields), as an optimizer's config leaves out clip_norm where it is
        unset; :meth:`recorded` reads the missing fields as their defaults."""
        fields = dataclasses.asdict(self)
        for option in PER_STEP_FIELDS:
            if (option not in SCHEDULE_FIELDS[self.name] or option == "warmup_steps") \
                    and fields[option] == _DEFAULTS[option]:
                del fields[option]
        return fields

    @classmethod
    def recorded(cls, fields: dict) -> Schedule:
        """The Schedule a checkpoint records as ``fields`` (``dataclasses.asdict``'s), with the options its schedule
        does not read kept as written, unchecked: gpunn took any before it refused them (``Schedule("cosine",
        gamma=0.5)``), and such a run resumes quietly, the file it writes holding the same record. A record from
        before per-step schedules (no warmup_steps, no onecycle's options) takes their defaults."""
        name = known_name(fields.get("name", "constant"), SCHEDULES, "schedule")
        unread = {option: fields[option] for option in _OPTIONS
                  if option in fields and option not in SCHEDULE_FIELDS[name]}
        schedule = cls(**{key: value for key, value in fields.items() if key not in unread})
        for option, value in unread.items():  # (not the caller's: a copy of the schedule keeps them)
            object.__setattr__(schedule, option, _not_given(value))
        return schedule

    @property
    def per_step(self) -> bool:
        """Whether the rate changes within an epoch: a warm-up, or onecycle."""
        return self.name == "onecycle" or self.warmup_steps > 0

    def factor(self, epoch: int, epochs: int) -> float:
        """The epoch's factor, the per-epoch part of :meth:`rate_factor` (onecycle has none: it is per step)."""
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return self.gamma ** (epoch // self.step_size)
        if self.name == "exponential":
            return self.gamma**epoch
        if self.name == "onecycle":
            raise ValueError("a onecycle schedule's rate changes every optimizer step: "
                             "rate_factor(epoch, epochs, step, total_steps) gives it")
        period = self.total_epochs or epochs
        cos = 0.5 * (1 + math.cos(math.pi * min(epoch, period) / period))
        return self.min_factor + (1 - self.min_factor) * cos

    def rate_factor(self, epoch: int, epochs: int, step: int, total_steps: int) -> float:
        """The whole factor of the base rate at optimizer step ``step`` (0-based, counted over the run) in epoch
        ``epoch`` of ``epochs``; ``total_steps`` is the run's steps (epochs x batches per epoch), onecycle's length
        where its total_steps is 0. Without a warm-up, a per-epoch schedule's is ``factor(epoch, epochs)``, the
        same float."""
        if self.name == "onecycle":
            return self._onecycle(step, self.total_steps or total_steps)
        factor = self.factor(epoch, epochs)
        warmup = self.warmup_steps
        return factor * ((step + 1) / warmup) if step < warmup else factor

    def steps_of(self, run_steps: int) -> int:
        """onecycle's length for a run of ``run_steps`` optimizer steps: its total_steps, else the run's."""
        return self.total_steps or run_steps

    def check_run(self, run_steps: int) -> None:
        """Refuse a onecycle schedule shorter than the run of ``run_steps`` optimizer steps (PyTorch's OneCycleLR
        raises at the step past its total_steps; gpunn before training starts)."""
        if self.name == "onecycle" and run_steps > self.steps_of(run_steps):
            raise ValueError(f"this run takes {run_steps} optimizer steps and the onecycle schedule's total_steps is "
                             f"{self.total_steps}: give total_steps={run_steps} or more (0: the run's), or train "
                             "fewer epochs")

    def _onecycle(self, step: int, total: int) -> float:
        """PyTorch's OneCycleLR.get_lr (two phases) at ``step`` of ``total``, as a factor of max_lr: up from
        1/div_factor to 1 until step pct_start x total - 1, then down to 1/div_factor/final_div_factor at total - 1.
        A phase of no steps (pct_start x total = 1, where PyTorch divides by zero) is at its end."""
        if step >= total:
            raise ValueError(f"optimizer step {step + 1} is past the onecycle schedule's total_steps, {total}")
        initial = 1.0 / self.div_factor
        peak = float(self.pct_start * total) - 1  # (PyTorch's phase ends: this step, then total - 1)
        if step <= peak:
            start_step, end_step, start, end = 0, peak, initial, 1.0
        else:
            start_step, end_step, start, end = peak, total - 1, 1.0, initial / self.final_div_factor
        pct = (step - start_step) / (end_step - start_step) if end_step != start_step else 1.0
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Schedule)}


def make_schedule(schedule="constant", **kwargs) -> Schedule:
    """A Schedule from a Schedule (returned as is), a name (with its fields as keywords) or None (constant)."""
    if isinstance(schedule, Schedule):
        return schedule
    if schedule is None:
        schedule = "constant"
    if schedule is Schedule:
        raise TypeError("schedule is the class Schedule; pass an instance, Schedule('step', step_size=5, gamma=0.5), "
                        "or a name")
    if not isinstance(schedule, str) and (said := misplaced(schedule, "schedule")):
        raise TypeError(said)
    if not isinstance(schedule, str):  # (torch's StepLR: "a name, not torch's StepLR: 'steplr' is gpunn's 'step'")
        raise ValueError(f"schedule must be a name ({', '.join(SCHEDULES)}) or a gpunn.Schedule, got "
                         f"{value_repr(schedule)}{bracketed_hint(schedule, SCHEDULES, 'schedule')}")
    return Schedule(schedule, **{k: v for k, v in kwargs.items() if v is not None})
