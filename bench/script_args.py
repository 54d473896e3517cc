"""What bench/'s measurement scripts share: they read their arguments by position, and refuse a command line they
cannot run in one line, ``PROG: error: MESSAGE (see PROG --help)``, with status 2, as argparse's refusals (and
gpunn's commands') do. A module of bench/ rather than of gpunn: a script runs against the checkout of gpunn on the
path, an older one too (regression_probe.py's calls work back to session 3's), and ensemble_products.py imports no
gpunn."""
import contextlib
import os
import sys


class Refused(Exception):
    """A command line (or a GPUNN_ variable) the script cannot run with; ``line``: the one line that says so."""

    def __init__(self, line):
        super().__init__(line)
        self.line = line


def prog() -> str:
    """The script's name, as its lines say it."""
    return os.path.basename(sys.argv[0])


def refusal_line(message) -> str:
    return f"{prog()}: error: {message} (see {prog()} --help)"


def refuse(message):
    """A command line the script cannot run: Refused, with refusal_line(message), which refusals_said() says (or
    dist_bench.py, once its ranks agree on who refused)."""
    raise Refused(refusal_line(message))


def whole(text, what) -> int:
    """A positional argument that counts something: digits 0-9 only, 1 or more (int() took '-3', ' 3' and '٣')."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        refuse(f"{what} must be a whole number, 1 or more, got {text!r}")
    return int(text)


def count_argument(argv, what, default, doc) -> int:
    """A script's one optional positional argument that counts (``what``: "ROUNDS"), ``default`` without it; -h or
    --help anywhere: ``doc`` (the script's docstring) printed, status 0 (the argument is read by position)."""
    if {"-h", "--help"} & set(argv):
        print(doc.strip())
        sys.exit(0)
    if len(argv) > 1:
        refuse(f"takes [{what}], got {len(argv)} arguments")
    return whole(argv[0], what) if argv else default


@contextlib.contextmanager
def refusals_said():
    """While it holds, a Refused is its line on stderr and status 2."""
    try:
        yield
    except Refused as exc:
        sys.stderr.write(exc.line + "\n")
        raise SystemExit(2) from None
