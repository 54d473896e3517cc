"""``gpunn predict MODEL IN.npy OUT.npy``: predictions of a saved model."""
from __future__ import annotations

import argparse

import numpy


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="predict with a saved model: gpunn predict MODEL IN.npy OUT.npy",
                       description="Load a checkpoint (from --save or gpunn.save), predict the rows of IN.npy "
                                   "(rows x features) and write OUT.npy (rows x outputs).")
    p.add_argument("model", help="checkpoint .npz")
    p.add_argument("input", help=".npy file of inputs (read without pickle)")
    p.add_argument("output", help=".npy file to write")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .. import checkpoint as io

    model = io.load(args.model, device=args.device)
    try:
        X = numpy.load(args.input, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{args.input} could not be read as a .npy array without pickle: {exc}") from None
    P = model.backend.to_host(model.predict(X))
    io.atomic_write(args.output, lambda fh: numpy.save(fh, numpy.asarray(P), allow_pickle=False))
    print(f"{args.output}: {P.shape[0]} x {P.shape[1]} predictions ({model.dtype.name}) from {args.model} "
          f"on {model.device}")
    return 0
