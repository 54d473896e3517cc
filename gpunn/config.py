"""Run configuration files for ``gpunn train --config run.toml`` (and ``gpunn sweep --config``).

A config file sets any ``gpunn train`` (``gpunn sweep``) option by its long name (``batch-size`` or
``batch_size``); values are checked exactly as the command line checks them, and by their TOML type (a count
is an integer, a number is not quoted: the command line's text has no types), and flags given on the command line
override the file. The resolved configuration of a run is written beside
its checkpoint (``run.npz`` -> ``run.npz.toml``) in the same format, so it can be fed back in: the options
the run used. A file is shared between runs, so a key the run would not use (``patience`` without
``early-stopping``, a synthetic task's ``rows`` with ``data``) is a note naming the file and key, where the
same option on the command line is refused (gpunn.cli.train.refuse_idle_options).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tomllib

from .atomic import atomic_write
from .csvtext import joined_columns
from .preflight import misplaced

NOT_IN_FILES = {"help", "config", "func", "command", "version", "debug"}
COLUMN_LISTS = {"features", "target"}  # options whose list is of a table's column names (--features a,b)


class ConfigError(ValueError):
    """A config file is unreadable, names an unknown option, or gives an invalid value."""


COMMAND_TABLES = ("train", "sweep")  # the commands that read a config file: each its own table of one


def read_toml(path, table="train") -> dict:
    """The options of a TOML file: its top-level keys, and those of a [train] ([sweep]) table. The other command's
    table is skipped: one file serves both, its shared keys at the top level."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; give a TOML file (as --save writes: PATH.toml)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {misplaced(path, '--config') or exc}") from None
    tables = {name: data[name] for name in COMMAND_TABLES if isinstance(data.get(name), dict)}
    data = {k: v for k, v in data.items() if k not in tables}
    return {**data, **tables.get(table, {})}  # a [train] (or [sweep]) table is accepted too, over the top level


def _options(parser: argparse.ArgumentParser) -> dict:
    return {a.dest: a for a in parser._actions if a.dest not in NOT_IN_FILES and a.option_strings}


def convert(parser: argparse.ArgumentParser, values: dict, source: str, other=None) -> dict:
    """Config values -> {dest: value}, each checked with the option's own type and choices. ``other``: the other
    command's parser (gpunn sweep's for gpunn train), whose options a refused key is told apart by."""
    options = _options(parser)
    out = {}
    for key, value in values.items():
        dest = key.replace("-", "_")
        action = options.get(dest)
        if action is None:
            from .hints import ONE_ARCHITECTURE_KEYS, WIDTHS, meant

            names = sorted(d.replace("_", "-") for d in options)
            if other is not None and dest in _options(other):  # checkpoint-every (train's PATH.toml) to gpunn sweep
                this, that = parser.prog.split()[-1], other.prog.split()[-1]
                raise ConfigError(f"{source}: {key} is an option of gpunn {that}, not of gpunn {this}: drop it, or put "
                                  f"it in a [{that}] table, which gpunn {this} skips (one file for both commands)")
            found = meant(key.replace("_", "-"), names)  # epoch = 3: epochs; batchsize: batch-size; gpu: device
            hint = f" ({found.hint(as_key)})" if found else ""
            if found and parser.prog.endswith(" sweep") and key.replace("_", "-").lower() in WIDTHS:
                hint = f"{hint[:-1]}; {ONE_ARCHITECTURE_KEYS})"  # (widths = [32, 64]: not a grid of widths)
            raise ConfigError(f"{source}: unknown option {key!r}{hint}; valid options: {', '.join(names)}")
        flag = action.option_strings[-1]
        if action.nargs == 0:  # store_true flags
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
            out[dest] = value
            continue
        if isinstance(value, (bool, dict)):
            raise ConfigError(f"{source}: {key} cannot be {value!r}")
        written = value  # as the file has it, for the messages
        if isinstance(value, list):  # hidden = [256, 256]; gpunn sweep's lr = [0.001, 0.003]: the option's type parses
            whole = dest == "hidden"  # the values joined by commas, as on the command line
            if dest in COLUMN_LISTS:  # features = ["a", "b"], as --save's PATH.toml writes them
                kind, what = str, "column names"
            else:
                kind, what = (int, "integers") if whole else ((int, float), "numbers")
            if whole and value and all(isinstance(v, (list, str)) for v in value):  # [[64], [128]]: several nets
                raise ConfigError(f"{source}: {key} is one network's layer sizes, as {key} = [64, 64], got {value!r}: "
                                  "a run (a sweep too: its grid is lr, weight_decay, clip_norm (or clip_value) and seeds) "
                                  "trains one "
                                  f"architecture; run one per {key}")
            if not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{source}: {key} must list {what}, got {value!r}")
            value = joined_columns(value) if dest in COLUMN_LISTS else ",".join(map(str, value))
        text = str(value)
        if dest == "seeds" and isinstance(written, list) and len(written) == 1:  # gpunn sweep's seeds = [7]: the seed,
            # as seeds = [0, 1] lists two (refused below), not a count: it trained 7 members a setting, seeds 0 to 6
            raise ConfigError(f"{source}: invalid {key} = {written!r} ({flag}: is how many seeds each setting trains, "
                              f"got the seeds {text!r}){_several_seeds(written, True, listed=True)}")
        try:
            converted = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            several = (_several_seeds(written, "seeds" in options) if dest == "seed"
                       else _several_seeds(written, True, listed=True) if hasattr(exc, "unhinted") and dest == "seeds"
                       else "")
            if not several and callable(getattr(exc, "in_keys", None)):  # gpunn sweep's momentum = [0.9, 0.99]
                several = f": {exc.in_keys(key)}"
            exc = getattr(exc, "unhinted", exc) if several else exc  # (gpunn sweep's --seed 1,2 hint, in flags' words)
            raise ConfigError(f"{source}: invalid {key} = {written!r} ({flag}: {exc}){several}") from None
        if action.choices is not None and converted not in action.choices:
            raise ConfigError(f"{source}: {key} = {written!r} is not one of {', '.join(map(str, action.choices))}")
        wanted = getattr(action.type, "toml_types", None)
        if wanted and not isinstance(written, (list, *wanted)):  # features = 4.0, lr = "1e-3": the value converts
            raise ConfigError(f"{source}: {_mistyped(key, written, wanted, converted)}")
        out[dest] = converted
    return out


def _mistyped(key, written, wanted, converted) -> str:
    """What is wrong with ``key = written``, a TOML type the option does not take (``wanted``, its type's
    toml_types): a float for a count, a string for a number; and the value as the key takes it (``converted``, as
    the option's type read ``written``: lr = "1e-3,3e-3", gpunn sweep's grid as the command line writes it, is
    lr = [0.001, 0.003])."""
    whole = float not in wanted
    takes = "a whole number (a TOML integer)" if whole else "a number"
    if isinstance(converted, list):  # (a sweep's grid; hidden's sizes)
        takes = f"{'whole numbers (TOML integers)' if whole else 'numbers'}, a list of them or one"
        converted = converted[0] if len(converted) == 1 else converted
    unquoted = ", unquoted" if isinstance(written, str) and not isinstance(converted, list) else ""
    return (f"{as_key(key, written)} is a {'string' if isinstance(written, str) else 'float'}; {key} takes {takes}: "
            f"{as_key(key, converted)}{unquoted}")


def _several_seeds(written, in_a_sweep: bool, listed=False) -> str:
    """What to say of ``seed = [1, 2]``: a sweep's members start from seed, seed + 1, ... (``seeds``: how many per
    setting); a run trains one. ``listed``: of a sweep's ``seeds = [0, 1]`` (the seeds, where seeds counts them),
    which was told "--seed 0 --seeds 2", the command line's words."""
    if not (isinstance(written, list) and written and all(isinstance(v, int) for v in written)):
        return ""
    counted = written == list(range(written[0], written[0] + len(written)))  # [3, 4, 5]: seed = 3, seeds = 3
    sweep = (f"seed = {written[0]} with seeds = {len(written)} trains members of seeds {_toml_value(written)}" if counted
             else "the members' seeds follow on from seed (seed, seed + 1, ...; seeds = how many per setting)")
    if listed:
        return f": {sweep}"
    return f": seed is one number; {sweep}" if in_a_sweep else \
        f": a run trains one seed; gpunn sweep trains several as an ensemble's members: {sweep}"


def as_key(name, value) -> str:
    """A key as a config file writes it, given ``value`` (None: the key alone, quoted as the messages do)."""
    return repr(name) if value is None else f"{name} = {_toml_value(value)}"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string


def dumps(config: dict) -> str:
    lines = ["# gpunn train: the resolved configuration of this run (usable with --config)"]
    lines += [f"{key.replace('_', '-')} = {_toml_value(value)}" for key, value in config.items() if value is not None]
    return "\n".join(lines) + "\n"


def save(path, config: dict) -> None:
    text = dumps(config).encode()
    atomic_write(path, lambda fh: fh.write(text))


def resolved(args, parser) -> dict:
    """The options of a parsed ``train`` command that a config file can hold."""
    return {dest: getattr(args, dest) for dest in _options(parser) if hasattr(args, dest)}
