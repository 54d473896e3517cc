"""What every gpu_check hook shares (bench/gpu_check.sh's contract): ``--device DEV --out DIR --max-seconds S`` in,
its JSON out (``write_json``)."""
from __future__ import annotations

import argparse
import os


class HookParser(argparse.ArgumentParser):
    """argparse whose parse_args also refuses a GPUNN_ variable gpunn does not take, as gpunn's commands do as they
    start: one line, ``HOOK.py: error: ...``, status 2, before the hook measures or writes anything (a hook run by
    hand on a lent GPU; under gpu_check.sh the device stage has stopped the run already, on gpunn info's status 2)."""

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        from gpunn.cli.common import exit_on_bad_settings

        exit_on_bad_settings(self.prog)
        return parsed


def hook_parser(doc: str, max_seconds: float) -> argparse.ArgumentParser:
    """The hook's parser with the three options of the contract; ``doc``'s first line is its description."""
    parser = HookParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (or cuda:N) on a GPU, cpu for a dry run of the "
                        "plumbing (default: %(default)s)")
    parser.add_argument("--out", default=".", help="the folder the hook writes its JSON and files into "
                        "(default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=max_seconds, help="the hook's time cap, which it keeps "
                        "to itself as it goes (default: %(default)s)")
    return parser


def write_json(path, obj) -> None:
    """``obj`` as JSON at ``path``, whole or not at all: written beside it, then renamed over it. A hook rewrites its
    JSON as it goes, and the stage's SIGINT (a KeyboardInterrupt), the call's SIGTERM or SIGKILL can land while it
    writes: written in place, the file was then cut short, and the report read none of it (not even the parts
    saved before). A kill before the rename leaves ``path`` as it was and ``path.tmp`` beside it."""
    from gpunn.cli.common import json_text  # strict JSON: a figure not measured (nan) is null, as gpunn bench's

    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(json_text(obj))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
