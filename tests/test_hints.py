"""gpunn.hints.meant: which known name an unknown one stands for (the command line's options, a config file's keys
and a run's metrics each word the hint; tests/test_cli.py and tests/test_cli_runs.py check those words), and a hint's
own code on odd objects of a user's: it never stands in place of the refusal it words."""
import types
from unittest import mock

import pytest

import gpunn
from gpunn.hints import meant

OPTIONS = ["batch-size", "data", "device", "epochs", "eps", "hidden", "lr", "quiet", "resume", "seed",
           "validation-fraction"]


@pytest.mark.parametrize("name, names, how, found", [
    ("EPOCHS", ["epochs", "epochs-max"], "case", ("epochs",)),  # itself in other letters, before what it begins
    ("ep", ["epochs", "eps", "help"], "shortened", ("epochs", "eps")),
    ("adta", ["data"], "close", ("data",)),  # difflib's ratio 0.75: the cutoff is taken
    ("BATCHSIZE", ["batch-size"], "close", ("batch-size",)),  # matched in lower case
])
def test_a_name_is_found_by_case_then_beginning_then_misspelling(name, names, how, found):
    meant_here = meant(name, names)
    assert (meant_here.how, meant_here.names) == (how, found)


def test_every_known_name_a_shortened_one_begins_is_hinted():
    found = meant("ep", OPTIONS)
    assert found.names == ("epochs", "eps")
    assert found.hint(lambda name, value: f"--{name}") == "did you mean --epochs or --eps?"


@pytest.mark.parametrize("other, option", [
    ("learning-rate", "lr"), ("verbose", "quiet"), ("-v", "quiet"), ("layers", "hidden"), ("hidden-layers", "hidden"),
    ("hidden-layer-sizes", "hidden"), ("gpu", "device"), ("cuda", "device"), ("load", "resume"),
    ("validation-split", "validation-fraction"), ("nb-epoch", "epochs"), ("max-iter", "epochs"),
    ("random-state", "seed"), ("width", "hidden"), ("widths", "hidden"), ("hidden-size", "hidden"),
    ("hidden-sizes", "hidden"), ("units", "hidden"), ("hidden-units", "hidden"), ("neurons", "hidden"),
])
def test_another_tools_name_is_hinted_as_the_option_it_stands_for(other, option):
    found = meant(other, OPTIONS)
    assert (found.how, found.names) == ("alias", (option,))
    assert meant(other, [n for n in OPTIONS if n != option]) is None  # only where that option exists
    assert meant(other, OPTIONS, aliases=False) is None  # a metric's name is no option's


@pytest.mark.parametrize("name, names", [
    ("", OPTIONS),  # not every name
    ("-V", OPTIONS),  # a short option is matched as written: -V is not -v
    ("aB", ["ab", "AB"]),  # two names in other letter case: neither
    ("size", ["batch-size"]),  # a name inside another, not at its beginning
    ("ep", ["help"]),  # ratio 0.67
])
def test_no_name_is_meant(name, names):
    assert meant(name, names) is None


def test_an_aliass_hint_spells_the_option_with_its_values_as_the_place_does():
    def as_option(name, value):
        written = ",".join(map(str, value)) if isinstance(value, list) else value
        return f"--{name}" if value is None else f"--{name} {written}"

    assert meant("gpu", OPTIONS).hint(as_option) == "did you mean --device cuda (or cuda:N)?"
    assert (meant("layers", OPTIONS).hint(as_option)
            == "did you mean --hidden (the hidden layers' widths, e.g. --hidden 256,256)?")


class _ReprRaises:
    """A user's object whose repr raises (a lazy proxy whose target is gone, say)."""

    def __repr__(self):
        raise RuntimeError("repr of a closed proxy")


class _AttributeDict:
    """A user's attribute dict, whose __getattr__ raises KeyError for a name it lacks (where Python's raise
    AttributeError)."""

    def __init__(self):
        self.values = {}

    def __getattr__(self, name):
        return self.values[name]


class _NamedStep:
    """A user's object with a name gpunn's schedules have, and none of a Schedule's options."""

    name = "step"


class _ClaimsToBeAClass:
    """An object whose __class__ says it is a class, as a Mock(spec=type) or a proxy's does."""

    @property
    def __class__(self):
        return type


class _ClaimsToBeAFunction:
    """An object whose __class__ says it is a function, and that has no __name__ (read as PyTorch's F.relu is)."""

    @property
    def __class__(self):
        return types.FunctionType


def _fit_args():
    import numpy

    return numpy.zeros((4, 3)), numpy.zeros((4, 1))


@pytest.mark.parametrize("call, refusal", [
    # the repr of the value given is written back in the hint: its RuntimeError stood in place of the TypeError
    (lambda model: model.fit(*_fit_args(), batchsize=_ReprRaises()),
     "MLP.fit() got an unexpected keyword argument 'batchsize' (did you mean batch_size?)"),
    (lambda model: gpunn.MLP([3, 4, 1], lr=_ReprRaises()),
     "MLP() got an unexpected keyword argument 'lr' (lr is fit's option: model.fit(X, Y, lr=...))"),
    (lambda model: gpunn.Adam(betas=(_ReprRaises(), 0.99)),
     "Adam() got an unexpected keyword argument 'betas' (PyTorch's betas pair is two options here: "
     "Adam(beta1=..., beta2=0.99))"),
    # the schedule given beside a schedule's option is read for its name: KeyError: 'name' stood in place of it
    (lambda model: model.fit(*_fit_args(), schedule=_AttributeDict(), gamma=0.5),
     "MLP.fit() got an unexpected keyword argument 'gamma' (gamma is an option of the step and exponential schedules: "
     'model.fit(X, Y, schedule=gpunn.Schedule("step", gamma=0.5)) or model.fit(X, Y, '
     'schedule=gpunn.Schedule("exponential", gamma=0.5)))'),
    # and an object named as a schedule for its options: "'_NamedStep' object has no attribute 'step_size'"
    (lambda model: model.fit(*_fit_args(), schedule=_NamedStep(), gamma=0.5),
     "MLP.fit() got an unexpected keyword argument 'gamma' (gamma is the step schedule's option: "
     'model.fit(X, Y, schedule=gpunn.Schedule("step", gamma=0.5)))'),
], ids=["repr", "repr of a fit option", "repr in betas", "attribute dict schedule", "named schedule"])
def test_a_keywords_refusal_is_not_replaced_by_an_error_of_the_odd_object_its_hint_reads(call, refusal):
    """A hint reads what the user gave (its repr, a schedule's name and options); an object of the user's whose repr
    or attributes raise gave that error, from inside gpunn's hint, in place of the refusal of the keyword."""
    with pytest.raises(TypeError) as caught:
        call(gpunn.MLP([3, 4, 1], device="cpu"))
    assert str(caught.value) == refusal


@pytest.mark.parametrize("odd", [_ClaimsToBeAClass, _ClaimsToBeAFunction, _AttributeDict, lambda: mock.Mock(spec=type)],
                         ids=["claims a class", "claims a function", "attribute dict", "Mock(spec=type)"])
def test_an_odd_object_given_for_a_name_is_refused_without_a_hint_not_by_the_hints_own_error(odd):
    """activation=obj, where gpunn takes a name, is hinted by obj's class (PyTorch's nn.Tanh(): tanh), and a schedule
    or an optimizer that is a callback is told so by its on_epoch_end. An object whose __class__ claims a class it is
    not (a proxy, Mock(spec=type)) was read as that class: "AttributeError: __name__", "can only concatenate str (not
    "Mock") to str", issubclass's "arg 1 must be a class"; a user's attribute dict raised "KeyError: 'on_epoch_end'":
    each in place of the refusal, which now stands alone."""
    given = odd()
    names = ", ".join(gpunn.activations.ACTIVATIONS)
    with pytest.raises(ValueError) as caught:
        gpunn.MLP([3, 4, 1], activation=given, device="cpu")
    assert str(caught.value) == f"unknown activation {given!r}; choose one of: {names}"
    with pytest.raises(ValueError) as caught:
        gpunn.MLP([3, 4, 1], device="cpu").fit(*_fit_args(), schedule=given, epochs=1)
    assert str(caught.value) == ("schedule must be a name (constant, step, exponential, cosine, onecycle) or a gpunn.Schedule, "
                                 f"got {given!r}")
    with pytest.raises(ValueError) as caught:
        gpunn.MLP([3, 4, 1], device="cpu").fit(*_fit_args(), optimizer=given, epochs=1)
    assert str(caught.value) == f"unknown optimizer {given!r}; choose one of: {', '.join(gpunn.optim.OPTIMIZERS)}"


@pytest.mark.parametrize("call, refusal", [
    (lambda odd: gpunn.MLP([3, 4, 1], activation=odd, device="cpu"),
     f"unknown activation <_ReprRaises object>; choose one of: {', '.join(gpunn.activations.ACTIVATIONS)}"),
    (lambda odd: gpunn.MLP([3, 4, 1], device="cpu").fit(*_fit_args(), optimizer=odd, epochs=1),
     f"unknown optimizer <_ReprRaises object>; choose one of: {', '.join(gpunn.optim.OPTIMIZERS)}"),
    (lambda odd: gpunn.MLP([3, 4, 1], device="cpu").fit(*_fit_args(), schedule=odd, epochs=1),
     "schedule must be a name (constant, step, exponential, cosine, onecycle) or a gpunn.Schedule, got <_ReprRaises object>"),
    (lambda odd: gpunn.MLP([3, 4, 1], device="cpu").fit(*_fit_args(), lr=odd, epochs=1),
     "learning rate must be a positive finite number, got <_ReprRaises object>"),
    (lambda odd: gpunn.MLP([3, 4, 1], dtype=odd, device="cpu"),
     "dtype must be one of ('float32', 'float64') (or a NumPy spelling of one: f4, single, numpy.float64...), got "
     "<_ReprRaises object>"),
    (lambda odd: gpunn.MLP([3, 4, 1], device=odd),
     "device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', not <_ReprRaises object>"),
    (lambda odd: gpunn.MLP([3, 4, 1], precision=odd, device="cpu"),
     "precision must be one of ('float32', 'tf32', 'bf16'), got <_ReprRaises object>"),
], ids=["activation", "optimizer", "schedule", "lr", "dtype", "device", "precision"])
def test_a_refusal_names_a_value_whose_repr_raises_by_its_type(call, refusal):
    """A refusal that writes back the value given (``unknown activation obj``) raised the repr's own error in its
    place (audit39b: RuntimeError, or a ZeroDivisionError, from a user's lazy proxy): it names the value by its type."""
    with pytest.raises((ValueError, TypeError)) as caught:
        call(_ReprRaises())
    assert str(caught.value) == refusal


def test_a_keywords_value_is_written_back_up_to_40_characters_and_as_dots_past_them():
    """A value whose repr is 40 characters is shown in the hint's call as given; one of 41 (an array's repr, pages
    long) as "...", which the hint's reader fills in."""
    def hint(value):
        with pytest.raises(TypeError) as refused:
            gpunn.MLP([2, 1], lr=value)
        return str(refused.value).split("model.fit(X, Y, ", 1)[1]

    assert hint("x" * 38) == f"lr={'x' * 38!r}))"  # 'xx...x': 40 characters
    assert hint("x" * 39) == "lr=...))"


def test_pytorchs_betas_are_written_back_as_beta1_and_beta2_only_when_they_are_a_pair():
    """betas=(0.9, 0.99) is shown as the two options; a betas of three values, or one number, is no pair to split:
    both as "..." (its first two were shown as if they were all)."""
    def hint(betas):
        with pytest.raises(TypeError) as refused:
            gpunn.Adam(betas=betas)
        return str(refused.value).split("two options here: ", 1)[1]

    assert hint((0.9, 0.99)) == "Adam(beta1=0.9, beta2=0.99))"
    assert hint((0.9, 0.99, 0.999)) == hint(0.9) == "Adam(beta1=..., beta2=...))"


@pytest.mark.parametrize("call, said", [
    # fit's weight= was "did you mean weight_decay?", weights= had no hint: the sources' and the commands' names
    (lambda X, Y, w: gpunn.MLP([2, 1], device="cpu").fit(X, Y, weight=w), "'weight' (did you mean sample_weight?)"),
    (lambda X, Y, w: gpunn.MLP([2, 1], device="cpu").fit(X, Y, weights=w), "'weights' (did you mean sample_weight?)"),
    (lambda X, Y, w: gpunn.MLP([2, 1], device="cpu").evaluate(X, Y, weights=w), "(did you mean sample_weight?)"),
    (lambda X, Y, w: gpunn.Ensemble([2, 1], n_models=2, device="cpu").fit(X, Y, weights=w),
     "(did you mean sample_weight?)"),
    (lambda X, Y, w: gpunn.MLPRegressor().fit(X, Y, weights=w), "(did you mean sample_weight?)"),
    # and a source's maker given fit's name (was Python's words alone), or the other maker's
    (lambda X, Y, w: gpunn.data.npy("X.npy", "Y.npy", sample_weight="w.npy"), "(did you mean weights?)"),
    (lambda X, Y, w: gpunn.data.csv("t.csv", "y", sample_weight="w"), "(did you mean weight?)"),
    (lambda X, Y, w: gpunn.data.parquet("t.parquet", "y", weight_column="w"), "(did you mean weight?)"),
    (lambda X, Y, w: gpunn.data.parquet("t.parquet", "y", weights="w"), "(did you mean weight?)"),
])
def test_a_name_for_the_rows_weights_is_hinted_as_the_one_the_call_takes(call, said):
    X, Y, w = [[0.0, 1.0]] * 4, [0.0] * 4, [1.0] * 4
    with pytest.raises(TypeError, match="unexpected keyword argument") as refused:
        call(X, Y, w)
    assert str(refused.value).endswith(said)


def test_a_models_constructor_given_weights_is_not_told_of_fits_sample_weight():
    """MLP(weights=W) may mean a start: the hint of fit's sample_weight would mislead, so Python's words stay."""
    with pytest.raises(TypeError) as refused:
        gpunn.MLP([2, 1], weights=[[1.0]])
    assert str(refused.value) == "MLP() got an unexpected keyword argument 'weights'"
