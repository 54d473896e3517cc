"""``gpunn info``: the backend, device, versions and BLAS in use."""
from __future__ import annotations

import argparse
import platform

import numpy

from .. import backend as _backend
from .._version import __version__
from ..bench.system import blas_info


def add_parser(sub) -> argparse.ArgumentParser:
    i = sub.add_parser("info", help="show the backend, device, versions and BLAS in use")
    i.add_argument("--device", default="auto", help="device to resolve (default: %(default)s)")
    i.set_defaults(func=run)
    return i


def run(args) -> int:
    cupy, count, reason = _backend.probe_cuda()
    lines = {
        "gpunn": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "blas": blas_info(),
        "cupy": getattr(cupy, "__version__", None) or f"unavailable: {reason}",
        "cuda devices": count,
    }
    try:
        resolved = _backend.resolve(args.device)
        lines["device"] = resolved.describe()
    except (_backend.DeviceError, ValueError) as exc:
        lines["device"] = f"error: {exc}"
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key:<{width}}  {value}")
    return 0 if not str(lines["device"]).startswith("error") else 2
