"""``gpunn predict MODEL IN.npy OUT.npy``: predictions of a saved model."""
from __future__ import annotations

import argparse
import os

import numpy

from .common import add_debug


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="predict with a saved model: gpunn predict MODEL IN.npy OUT.npy",
                       description="Load a checkpoint (from --save or gpunn.save), predict the rows of IN "
                                   "(rows x features: a .npy array, or a CSV file of numbers) and write OUT "
                                   "(rows x outputs: .npy, or CSV when OUT ends in .csv). The input's kind is "
                                   "read from its bytes, not its name; OUT may not be MODEL or IN.")
    p.add_argument("model", help="checkpoint .npz")
    p.add_argument("input", help=".npy array (read without pickle) or CSV file of inputs")
    p.add_argument("output", help="file to write: .npy, or .csv for comma-separated text")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add_debug(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .. import checkpoint as io, preflight

    if not os.path.isfile(args.model):
        raise preflight.PreflightError(f"MODEL {args.model} does not exist" if not os.path.exists(args.model)
                                       else f"MODEL {args.model} is not a file")
    preflight.check_output(args.output, "OUT", reads=[(args.model, "MODEL"), (args.input, "input")],
                           suffixes=(".npy", ".csv"))
    X = preflight.read_matrix(args.input, "IN")
    model = io.load(args.model, device=args.device)
    try:
        P = numpy.asarray(model.backend.to_host(model.predict(X)))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"IN {args.input}: {exc}") from None
    if args.output.lower().endswith(".csv"):
        fmt = "%.9g" if P.dtype == numpy.float32 else "%.17g"  # enough digits to read back the same value
        io.atomic_write(args.output, lambda fh: numpy.savetxt(fh, P, delimiter=",", fmt=fmt))
    else:
        io.atomic_write(args.output, lambda fh: numpy.save(fh, P, allow_pickle=False))
    print(f"{args.output}: {P.shape[0]} x {P.shape[1]} predictions ({model.dtype.name}) from {args.model} "
          f"on {model.device}")
    return 0
