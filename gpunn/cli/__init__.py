"""The ``gpunn`` command. Each subcommand is one module of this package with ``add_parser(sub)``
(adds its parser, sets ``func``) and ``run(args) -> int``; to add one, write the module and list it
in ``COMMANDS``."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import backend as _backend
from .._version import __version__
from . import bench, info, predict, train

COMMANDS = (train, predict, bench, info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpunn", description="Train regression MLPs on a CUDA GPU or the CPU.")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = {command.__name__.rsplit(".", 1)[1]: command.add_parser(sub) for command in COMMANDS}
    parser.train_parser = parser.commands["train"]
    return parser


def _show_note(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, _backend.CPUFallbackWarning):
        print(f"note: {str(message).removeprefix('gpunn: ')}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def parse_args(argv=None):
    """Parse the command line; for ``train``, defaults come from --resume's saved config, then
    --config, and flags on the command line override both."""
    from .. import config as cfgmod

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "train" or not (args.config or args.resume):
        return args
    train = parser.train_parser
    layered = {}
    if args.resume and os.path.exists(args.resume + ".toml"):
        layered.update(cfgmod.convert(train, cfgmod.read_toml(args.resume + ".toml"), args.resume + ".toml"))
        layered.pop("save", None)
        layered.pop("resume", None)
    if args.config:
        layered.update(cfgmod.convert(train, cfgmod.read_toml(args.config), args.config))
    train.set_defaults(**layered)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    warnings.showwarning = _show_note
    try:
        args = parse_args(argv)
        return args.func(args)
    except (ValueError, TypeError, _backend.DeviceError, FloatingPointError, OSError) as exc:
        print(f"gpunn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
