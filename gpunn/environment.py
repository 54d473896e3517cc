"""The GPUNN_* environment variables: which there are, and one way to read a value.

NAMES lists every variable gpunn reads; the README's "Environment variables" table gives each one's values and
default (tests/test_environment.py checks both). Each is read where it is used. A value that is unset, empty or
only spaces means the default; spaces around a value do not count, nor does the case of a word. Any other value
must be one the variable takes, or it is refused where it is read: a SettingError (a ValueError) naming the
variable, its value and what it takes, which the command line prints as its one line. The command line also
refuses every such value as a command starts, before it reads a file (gpunn.cli.common.refuse_bad_settings), and so
do the ``python -m gpunn.bench.*`` tools and the GPU check's hooks (gpunn.cli.common.exit_on_bad_settings).
"""
from __future__ import annotations

import os

NAMES = ("GPUNN_DEVICE", "GPUNN_GEMM", "GPUNN_CPU_THREADS", "GPUNN_ENSEMBLE_BLAS_THREADS", "GPUNN_FUSED_KERNELS",
         "GPUNN_FLUSH_DENORMALS", "GPUNN_DIST_TIMEOUT", "GPUNN_CACHE_DIR", "GPUNN_DEBUG")
ON, OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingError(ValueError):
    """An environment variable holds a value gpunn does not take."""


class SettingWarning(UserWarning):
    """An environment variable's value gpunn could not use as asked, and what it did instead."""


def text(name: str) -> str | None:
    """The variable's value without the spaces around it; None where it is unset or blank (the default)."""
    return os.environ.get(name, "").strip() or None


def refusal(name: str, takes: str, error=SettingError) -> Exception:
    """``error`` saying that the variable's value is not what it ``takes`` (which says the default too)."""
    return error(f"{name}={os.environ.get(name)!r} is not {takes}")


def flag(name: str, default: bool) -> bool:
    """A switch: 1, true, yes or on; 0, false, no or off; ``default`` where unset or blank."""
    value = text(name)
    if value is None:
        return default
    if value.lower() in ON + OFF:
        return value.lower() in ON
    raise refusal(name, f"on or off: {', '.join(ON[:-1])} or on; {', '.join(OFF[:-1])} or off (unset: "
                        f"{'on' if default else 'off'})")


def whole(name: str, default, least: int, takes: str):
    """A whole number in plain decimal digits (0-9, nothing else: no sign, no "_"), ``least`` or more; ``default``
    where unset or blank. ``takes`` says what it counts, its least value and its default, for the refusal."""
    value = text(name)
    if value is None:
        return default
    # digits only, not int()'s rule: it takes "1_0" as 10, "+3", and other scripts' digits ("٣", "１０")
    if not (value.isascii() and value.isdigit()) or int(value) < least:
        raise refusal(name, takes)
    return int(value)
