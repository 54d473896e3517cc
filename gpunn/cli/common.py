"""Argument types the subcommands share."""
from __future__ import annotations

import argparse


def positive(kind):
    """An argparse type: ``kind(text)``, refused unless > 0."""
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse
