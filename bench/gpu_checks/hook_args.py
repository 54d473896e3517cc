"""What every gpu_check hook takes (bench/gpu_check.sh's contract): ``--device DEV --out DIR --max-seconds S``."""
from __future__ import annotations

import argparse


def hook_parser(doc: str, max_seconds: float) -> argparse.ArgumentParser:
    """The hook's parser with the three options of the contract; ``doc``'s first line is its description."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (or cuda:N) on a GPU, cpu for a dry run of the "
                        "plumbing (default: %(default)s)")
    parser.add_argument("--out", default=".", help="the folder the hook writes its JSON and files into "
                        "(default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=max_seconds, help="the hook's time cap, which it keeps "
                        "to itself as it goes (default: %(default)s)")
    return parser
