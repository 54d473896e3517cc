"""gpunn.hints.meant: which known name an unknown one stands for (the command line's options, a config file's keys
and a run's metrics each word the hint; tests/test_cli.py and tests/test_cli_runs.py check those words)."""
import pytest

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
    ("random-state", "seed"),
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
