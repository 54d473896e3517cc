"""bench/ scripts (the gpu_check hooks, gpu_report.py) loaded as modules by the tests that call into them."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(path, name):
    """``ROOT/path`` as module ``name``, its folder on sys.path as when it runs as a script (the hooks import their
    sibling hook_args)."""
    folder = str((ROOT / path).parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
