"""The "did you mean" rule of gpunn's refusals: which known name an unknown one stands for. One rule for a
command line's option (--lr), a config file's key (lr) and a metric ('val_loss'); each place words the hint."""
from __future__ import annotations

import difflib
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
OTHER_NAMES = {
    "learning-rate": ("lr", "did you mean {0}?", (None,)),
    "verbose": _QUIET, "-v": _QUIET,
    "layers": _HIDDEN, "hidden-layers": _HIDDEN, "hidden-layer-sizes": _HIDDEN,
    "gpu": _DEVICE, "cuda": _DEVICE,
    "load": ("resume", "did you mean {0} (continue a saved run)?", (None,)),
    # Keras's (nb-epoch: Keras 1's) and scikit-learn's names; difflib took validation-split for validation-data
    "validation-split": ("validation-fraction", "did you mean {0}?", (None,)),
    "nb-epoch": ("epochs", "did you mean {0}?", (None,)), "max-iter": ("epochs", "did you mean {0}?", (None,)),
    "random-state": ("seed", "did you mean {0}?", (None,)),
}


@dataclass(frozen=True)
class Meant:
    """What an unknown name stands for: ``names`` (one, or each a shortened name begins), and how it was found:
    "case" (the name in other letter case), "alias" (another tool's name: ``words`` and ``values`` as in
    OTHER_NAMES), "shortened" (the beginning of ``names``) or "close" (a misspelling)."""
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
    other = OTHER_NAMES.get(name if name.startswith("-") else low) if aliases else None
    if other and other[0] in names:
        return Meant((other[0],), "alias", other[1], other[2])
    shortened = tuple(folded[known] for known in folded if known.startswith(low))
    if shortened:
        return Meant(shortened, "shortened")
    close = difflib.get_close_matches(low, folded, n=1, cutoff=CUTOFF)
    return Meant((folded[close[0]],), "close") if close else None


def _as_keyword(name, value):
    name = name.replace("-", "_")
    return name if value is None else f"{name}={value!r}"


def unexpected_keyword(call: str, key: str, names) -> TypeError:
    """Python's TypeError for a keyword argument ``call`` (``"MLP.fit"``) does not take, with the parameter of
    ``names`` meant where one is (validation_split: validation_fraction; batchsize: batch_size): Python's own
    said only ``got an unexpected keyword argument``."""
    found = meant(key.replace("_", "-"), [name.replace("_", "-") for name in names])
    hint = f" ({found.hint(_as_keyword)})" if found else ""
    return TypeError(f"{call}() got an unexpected keyword argument {key!r}{hint}")


def known_name(name, names, what: str) -> str:
    """The name of ``names`` (gpunn's, all lower case) that ``name`` is in any letter case: "Adam" is "adam", as
    Keras takes optimizer names, and a model, checkpoint or config file records "adam". Anything else is a
    ValueError naming ``what``, with the name meant where there is one (leakyrelu: leaky_relu)."""
    folded = {known.lower(): known for known in names}
    found = folded.get(name.lower()) if isinstance(name, str) else None
    if found is not None:
        return found
    hint = meant(name, names, aliases=False) if isinstance(name, str) else None
    hint = f" ({hint.hint(lambda known, _: repr(known))})" if hint else ""
    raise ValueError(f"unknown {what} {name!r}{hint}; choose one of: {', '.join(names)}")


def folding(names):
    """An argparse ``type`` for a ``choices`` option of ``names``: a name in another letter case as gpunn spells
    it (--optimizer Adam: adam, as known_name), anything else as written, for argparse to refuse as it is."""
    folded = {known.lower(): known for known in names}

    def name(text):
        return folded.get(text.lower(), text)

    return name
