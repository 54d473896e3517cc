"""What the subcommands share: argument types, one-line argparse errors, and --debug."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import warnings

from ..hints import folding, shell_word
from ..preflight import DATA_SUFFIXES, is_stdout


def show_note(message, category, filename, lineno, file=None, line=None):
    """gpunn's own warnings as one ``note:`` line (what gpunn says, not where in it); others in Python's form."""
    from .. import _startup, environment
    from ..backend import CPUFallbackWarning
    from ..data import HeldOutShareWarning
    from ..ops.cpu import KernelFallbackWarning
    from ..training.ensemble import MembersDivergedWarning
    from ..training.graph import GraphWarning

    notes = (CPUFallbackWarning, GraphWarning, HeldOutShareWarning, KernelFallbackWarning, MembersDivergedWarning,
             environment.SettingWarning, _startup.SrunTasksWarning)
    if issubclass(category, notes):
        print(f"note: {str(message).removeprefix('gpunn: ')}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


@contextlib.contextmanager
def notes_shown():
    """Warnings shown by show_note while a command runs (gpunn's, and python -m gpunn.bench.stream's and
    .kernels'), then the caller's way put back: a main is also called in process (tests, programs)."""
    shown = warnings.showwarning
    warnings.showwarning = show_note
    try:
        yield
    finally:
        warnings.showwarning = shown


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, wrapped between words only: textwrap's default also breaks inside a hyphenated word, and
    anywhere in one longer than the line, which put an option's name on two lines ("--save-" and "best", "--no-"
    and "graph"); a word longer than the line overflows it instead."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False,
                             break_long_words=False)

    def _fill_text(self, text, width, indent):
        import textwrap

        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


_SAID = []  # how Parser.error says its line while refusals_said_by holds


@contextlib.contextmanager
def refusals_said_by(say):
    """While it holds, a Parser's refusal of the command line says ``say(line)``, or nothing where that is None:
    gpunn.cli, under an MPI launcher, keeps the line until the ranks have agreed on who refused (said once where
    every rank did)."""
    _SAID.append(say)
    try:
        yield
    finally:
        _SAID.pop()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to look, never the whole usage block; help wrapped
    between words (HelpFormatter); and no abbreviated options (argparse's allow_abbrev, off here: ``--batch 1``
    would run as ``--batch-size 1``, and a new option could change what an old abbreviation means).
    ``sub.add_parser`` makes each subcommand's parser a Parser too, so all of gpunn's refuse them; the refusal
    names the option in full (refuse_unknown)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    stray = ()  # the command line's options this command has not (gpunn.cli.parse_args sets them)

    def error(self, message):
        if self.stray and message.startswith("the following arguments are required"):
            stray, self.stray = self.stray, ()
            refuse_unknown(self, stray, f"and {message}")  # gpunn predict --hel: the option meant too
        line = f"{self.prog}: error: {message} (see {self.prog} --help)"
        said = _SAID[-1](line) if _SAID else line
        self.exit(2, None if said is None else said + "\n")

    def parse_strictly(self, argv=None) -> argparse.Namespace:
        """parse_args for a parser without subcommands (the ``python -m gpunn.bench.*`` tools), by the rules
        gpunn.cli.parse_args keeps for every command: an option given twice refused (refuse_repeated, before
        the values are parsed), an unknown one named with the option meant (refuse_unknown), and then a GPUNN_
        variable gpunn does not take (exit_on_bad_settings), before the tool does anything."""
        argv = list(sys.argv[1:] if argv is None else argv)
        refuse_repeated(self, argv[:argv.index("--")] if "--" in argv else argv)
        args, unknown = self.parse_known_args(argv)
        if unknown:
            refuse_unknown(self, unknown)
        exit_on_bad_settings(self.prog)
        return args


def option_names(parser) -> list[str]:
    """Every option string ``parser`` takes (-h and --help, --epochs, ...), in its order."""
    return [option for action in parser._actions for option in action.option_strings]


def refuse_unknown(command_parser, unknown, then="") -> None:
    """Options the command does not have, refused by its own parser (its --help named, not gpunn's), with
    the option meant where one is close (--batchsize: --batch-size; --checkpoint_every: --checkpoint-every;
    --Epochs: --epochs, as case matters) or where it is an abbreviation, which gpunn does not accept
    (--batch: --batch-size); ``then``: what else is wrong, after them."""
    from ..hints import COMMAND_OPTIONS_ABSENT, meant

    options = [option for option in option_names(command_parser) if option.startswith("--")]
    names = [option[2:] for option in options]
    command = command_parser.prog.rsplit(" ", 1)[-1]
    hints, takes_value = [], False
    for token in unknown:
        name = token.split("=", 1)[0]
        spelled = name.replace("_", "-")
        if takes_value and not token.startswith("-"):  # the value of the option before it (--sample-weight w.npy)
            takes_value = False
            continue
        if name in options:  # written before the command (gpunn --rows 5 train): the top level has no such option
            hints.append(f"{name}: write it after '{command}'")
            continue
        given_with = _file_option(token, options, [h.split(" as in ")[-1] for h in hints])
        if given_with:  # gpunn train t.csv: a file given as the command's argument (it said "did you mean --csv?")
            hints.append(f"{name}: a {given_with[1]} follows {given_with[0]}, as in {given_with[0]} {name}")
            continue
        absent = COMMAND_OPTIONS_ABSENT.get(spelled[2:].lower(), {}).get(command) if spelled.startswith("--") else None
        if absent:  # another tool's option, which this command has none of: what it does instead
            hints.append(f"{name}: {absent}")
            continue
        found = meant(spelled[2:] if spelled.startswith("--") else spelled, names)  # -v: as written
        takes_value = bool(found) and "=" not in token and spelled.startswith("--") and all(
            command_parser._option_string_actions[f"--{meant_name}"].nargs != 0 for meant_name in found.names)
        whose = _whose(command_parser, command, spelled)
        if found is None:
            if whose:
                hints.append(f"{name}: {whose}")
            continue
        note = {"shortened": "options are written in full: ",
                "case": "options are written in lower case: " if spelled != spelled.lower() else ""}.get(found.how, "")
        hints.append(f"{name}: {f'{whose}: ' if whose else ''}{note}{found.hint(_as_option)}")
    command_parser.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" ({'; '.join(hints)})" if hints else "")
                         + (f" {then}" if then else ""))


def _whose(command_parser, command, option) -> str:
    """Which other gpunn commands take ``option`` (gpunn sweep's --save-best given to gpunn train), in words; or ''."""
    others = [name for name, other in getattr(command_parser, "siblings", {}).items()
              if name != command and option in option_names(other)]
    if not others or option in option_names(command_parser):  # --batch_size: this command's own, misspelt
        return ""
    named = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} and {others[-1]}"
    return f"an option of gpunn {named}, not of gpunn {command}"


def _file_option(token, options, said=()):
    """(option, what) that takes the file ``token`` names where it was given bare (gpunn train t.csv), or None: a
    data file or a Parquet directory to --data (a second .npy file, after one said to go there, to --targets),
    a config to --config. ``said``: the options the hints before this one gave ("--data X.npy")."""
    import os

    if token.startswith("-"):
        return None
    npy = token.lower().endswith(".npy")
    if "--targets" in options and npy and any(s.startswith("--data ") and s.lower().endswith(".npy") for s in said):
        return "--targets", "targets file"
    if "--data" in options and (token.lower().endswith(DATA_SUFFIXES) or os.path.isdir(token)):
        return "--data", "data file"
    if "--config" in options and token.lower().endswith(".toml"):
        return "--config", "config file"
    return None


REPEATABLE = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction, argparse._ExtendAction)


def refuse_repeated(command_parser, tokens) -> None:
    """An option written more than once in ``tokens`` (a command's, before any ``--``) is refused by name:
    argparse keeps the last value without a word (``gpunn train --lr 1e-3 --lr 3e-3`` trained at 3e-3). Not an
    option meant to repeat (append, count: ``gpunn bench --config``), nor a flag written again as it was
    (``--quiet --quiet`` asks the same thing twice); a flag with its other form (``--graph --no-graph``) is
    refused."""
    said = {}  # action: [(the option as written, its value)] in order
    for at, token in enumerate(tokens):
        written, equals, value = token.partition("=")
        action = command_parser._option_string_actions.get(written)
        if action is None or isinstance(action, REPEATABLE):
            continue
        if not equals and action.nargs != 0:
            value = tokens[at + 1] if at + 1 < len(tokens) else ""
        said.setdefault(action, []).append((written, value))
    for action, given in said.items():
        spellings = list(dict.fromkeys(written for written, _ in given))
        if len(given) < 2 or (action.nargs == 0 and len(spellings) == 1):
            continue
        if action.nargs == 0:
            command_parser.error(f"{' and '.join(spellings)} are both given: give one")
        name, values = max(action.option_strings, key=len), [value for _, value in given]
        times = "twice" if len(given) == 2 else f"{len(given)} times"
        # (an option whose help says it takes a comma-separated list: repeating it looked like giving more values)
        joined = (f"; several values go in one comma-separated list: {name} {','.join(values)}"
                  if "comma-separated" in (action.help or "") else "")
        command_parser.error(f"{name} is given {times} ({', then '.join(values)}), and only the last would count: "
                             f"give it once{joined}")


def _as_option(name, value) -> str:
    """An option as the command line writes it, given ``value`` (None or True: the option alone)."""
    if value is None or value is True:
        return f"--{name}"
    return f"--{name} {','.join(map(str, value)) if isinstance(value, list) else value}"


def json_text(obj) -> bytes:
    """``obj`` as strict JSON (indented, UTF-8), as every gpunn report writes it (train, sweep, bench, the kernel
    benchmark, the gpu_check hooks): a non-finite float (a diverged member's loss, a metric with no held-out rows, a
    bench figure not measured) becomes null, which every JSON reader takes; Python's NaN/Infinity tokens are not
    JSON (jq, JSON.parse and Go refuse them). NumPy's numbers are written as Python's: a bool as true/false, an
    integer as one (float() made 1.0 of numpy.True_ and 3.0 of numpy.int64(3)), the others as floats."""
    import numbers

    import numpy

    def strict(value):
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        if value is None or isinstance(value, (str, int)):  # bool is an int
            return value
        if isinstance(value, numpy.bool_):
            return bool(value)
        if isinstance(value, numbers.Integral):  # numpy.int64
            return int(value)
        if hasattr(value, "__float__"):  # a float, NumPy's numbers
            value = float(value)
            return value if math.isfinite(value) else None
        return value

    return json.dumps(strict(obj), indent=2, allow_nan=False).encode() + b"\n"


STDOUT_OPTIONS = ("json", "csv", "output")  # the outputs that may be standard output ("-"): gpunn predict's OUT too
_data_stdout = []  # where those go while text_to_stderr() holds: the process's standard output


def csv_text(columns, rows) -> bytes:
    """A CSV table (train's history, sweep's ranking): a header row, then ``rows`` (sequences in the order of
    ``columns``); ``\n`` line ends. NaN (no value) is an empty field and an infinity ``inf`` or ``-inf``, as
    pandas' to_csv writes them and its read_csv, NumPy and float() read them back (JSON has null for both; an
    infinite loss was an empty field too, where the printed table said inf)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    return buf.getvalue().encode()


def check_report_outputs(args, reads=()) -> list:
    """A command's --json, --csv and --plot (those it has), checked before anything is generated, trained or
    measured: each a file it can write and none of the files it reads (``reads``: preflight.inputs_read),
    --json and --csv unless they are standard output, --plot by its suffix. Returns them as (option, path)
    pairs, for preflight.check_distinct with the command's other outputs."""
    from .. import preflight

    reports = []
    for option, suffixes in (("json", None), ("csv", None), ("plot", (".png", ".pdf", ".svg"))):
        if not hasattr(args, option):
            continue
        path = getattr(args, option)
        if path and not (option in STDOUT_OPTIONS and is_stdout(path)):
            preflight.check_output(path, "--" + option, reads=reads, suffixes=suffixes)
        reports.append(("--" + option, path))
    return reports


def refuse_replacing_data(args, reports) -> None:
    """A --json or --csv of ``reports`` (check_report_outputs') that would replace a file it did not write
    (preflight.not_a_report: a data file, a checkpoint) is refused, after preflight.check_distinct has said which
    outputs name one file: gpunn train --csv t.csv, taken for a CSV input, wrote the run's history over the data.
    Then one whose name says another kind of file (preflight.misnamed: --csv out.json, --json out.csv) is refused, as
    --save's is: it was written under that name without a word."""
    from .. import preflight

    for option, path in reports:
        what = preflight.not_a_report(path, option) if path and option != "--plot" and not is_stdout(path) else ""
        if what:
            # (an .npz of arrays is no --data file: "array" in its words took it for one, "--data X.npz --targets Y.npy")
            with_targets = ("--target COLUMN" if "CSV" in what else
                            "--targets Y.npy" if preflight.file_kind(path) == "npy" else "")
            data = (f" (to train on it: --data {shell_word(path)} {with_targets})"
                    if hasattr(args, "data") and with_targets else "")
            raise preflight.PreflightError(f"{option} {shell_word(path)} exists and is not a report gpunn wrote ({what}); "
                                           f"refusing to overwrite it: {option} writes this run's report, choose "
                                           f"another name{data}")
    for option, path in reports:
        misnamed = (path and option in REPORT_KINDS and not is_stdout(path)
                    and preflight.misnamed(path, *REPORT_KINDS[option]))
        if misnamed:
            raise preflight.PreflightError(f"{option} {shell_word(path)}: {misnamed}")


REPORT_KINDS = {"--json": ("JSON", ".json"), "--csv": ("CSV text", ".csv")}  # what each report writes, its suffix


@contextlib.contextmanager
def text_to_stderr(args):
    """While a command writes one of its outputs (``--json -``) to standard output, its lines of text go to
    stderr with the progress bar, so that stdout holds the output alone: ``gpunn train --json - | jq``."""
    if not any(is_stdout(getattr(args, name, None)) for name in STDOUT_OPTIONS):
        yield
        return
    _data_stdout.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _data_stdout.pop()


def data_stdout():
    """The standard output a command's data goes to (``-``): the process's, also while text_to_stderr sends its lines of
    text to stderr."""
    return _data_stdout[-1] if _data_stdout else sys.stdout


def write_output(path, data: bytes, announce=False) -> None:
    """``data`` into the output file ``path`` (atomically: gpunn.atomic.atomic_write), or onto
    standard output when ``path`` is it (:func:`is_stdout`). ``announce``: print "wrote PATH" after a file
    (not after the document itself on standard output: sweep and bench said "wrote -")."""
    if not is_stdout(path):
        from ..atomic import atomic_write

        atomic_write(path, lambda fh: fh.write(data))
        if announce:
            print(f"wrote {shell_word(path)}")
        return
    stream = data_stdout()
    stream.flush()
    stream.buffer.write(data)
    stream.buffer.flush()


def counted(n: int, noun: str, plural: str = "") -> str:
    """``n`` and ``noun``, plural unless one: "1 epoch", "3 epochs", "1,024 rows"; ``plural`` where it is not
    ``noun`` + s ("3 batches")."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


# --device's names, as gpunn.backend.resolve takes them (gpu: JAX's and TensorFlow's name for CUDA, the one
# kind of GPU gpunn runs on)
DEVICE_NAMES = ("cpu, cuda or cuda:N (gpu and gpu:N are the same as cuda and cuda:N; auto:N is cuda:N where a GPU is "
                "usable and the CPU otherwise; cpu:0 is cpu; in any letter case)")


def device_name(text: str) -> str:
    """--device's type: the name in lower case, the spaces around it left out, as resolve reads it. A run recorded
    --device CPU as written (its checkpoint, PATH.toml and --json said "CPU"), and the words compared to "auto",
    "cuda" or bench's "all" missed it (--device ALL was refused)."""
    return text.strip().lower()


PROGRESS_LEVELS = {"auto": True, "lines": 2, "off": False}  # fit's verbose for each --progress


def add_progress(parser) -> None:
    """--progress and --quiet (its older, shorter "off"), not both on one command line."""
    either = parser.add_mutually_exclusive_group()
    either.add_argument("--progress", choices=tuple(PROGRESS_LEVELS), type=folding(PROGRESS_LEVELS, "progress"),
                        default=None, help="progress on stderr, in any letter case: auto, a bar on a terminal and a "
                        "line per epoch in a file or pipe; lines, a line per epoch wherever stderr goes; off, none "
                        "(default: auto)")
    either.add_argument("--quiet", action="store_true", help="no progress (--progress off)")


def settle_progress(args, given: dict, config_path=None) -> None:
    """The command line's --progress or --quiet (``given``) overrides the other one set in a --config file; the
    file giving both ``quiet = true`` and a progress other than off is refused: which one it means is a guess."""
    if "progress" in given:
        args.quiet = False
    elif "quiet" in given:
        args.progress = None
    elif args.quiet and args.progress not in (None, "off"):
        raise ValueError(f"{config_path}: quiet = true and progress = {json.dumps(args.progress)} disagree: "
                         "give one")


def verbose_of(args):
    """fit's ``verbose`` for a command's --progress / --quiet: True, 2 (lines everywhere) or False."""
    return False if args.quiet else PROGRESS_LEVELS[args.progress or "auto"]


DEBUG_ENV = "GPUNN_DEBUG"


def setting_readers() -> dict:
    """Each GPUNN_ variable whose value gpunn can refuse, in gpunn.environment.NAMES' order, with the reader gpunn
    uses for it (which raises the refusal). GPUNN_CACHE_DIR takes any directory (one that cannot be written is a
    note where an index is written) and GPUNN_DEBUG any value (neither on nor off is on, with a note), so
    neither is here."""
    from ..backend import device_setting
    from ..distributed.comm import _timeout_from_env
    from ..ops import cpu, denormals, fit_threads, fused_setting, gemm

    return {"GPUNN_DEVICE": device_setting, "GPUNN_GEMM": gemm.requested, "GPUNN_CPU_THREADS": cpu.threads_setting,
            "GPUNN_ENSEMBLE_BLAS_THREADS": fit_threads.blas_threads_setting, "GPUNN_FUSED_KERNELS": fused_setting,
            "GPUNN_FLUSH_DENORMALS": denormals.enabled, "GPUNN_DIST_TIMEOUT": lambda: _timeout_from_env(None)}


def refused_setting(read):
    """The refusal ``read`` raises (a SettingError, or GPUNN_DIST_TIMEOUT's DistributedError), or None."""
    from ..distributed.comm import DistributedError

    try:
        read()
    except (ValueError, DistributedError) as exc:
        return exc
    return None


def refuse_bad_settings() -> None:
    """Refuse every GPUNN_ variable set to a value gpunn does not take, as a command starts (before it reads a
    file), in the words of each variable's reader: that refusal itself where one variable is bad, the refusals
    joined by '; ' where several are. The same values would be refused where they are read, but only after the
    data was read, or only in the run that reads them (an ensemble's, a data-parallel one's). gpunn info does
    not refuse them: it reports them (gpunn.cli.info.settings). An MPI launcher's variable that gpunn reads
    (PMI_SIZE, PMI_RANK, ...) and that is no whole number is refused with them (gpunn.distributed.comm)."""
    from .. import environment
    from ..distributed.comm import LAUNCHER_READERS

    readers = [*setting_readers().values(), *LAUNCHER_READERS]
    refused = [exc for exc in map(refused_setting, readers) if exc is not None]
    if len(refused) == 1:
        raise refused[0]
    if refused:
        raise environment.SettingError("; ".join(map(str, refused)))


def exit_on_bad_settings(prog: str) -> None:
    """refuse_bad_settings for a tool that is no gpunn command (``python -m gpunn.bench.stream`` and ``.kernels``,
    bench/gpu_checks' hooks): the refusal as the tool's one line, ``PROG: error: ...``, and status 2, as its
    command-line errors; without this, a bad value was a traceback wherever the tool first read it, after its
    set-up (data written, a model built) or part-way through its parts."""
    line = bad_settings_line(prog)
    if line is not None:
        sys.stderr.write(line + "\n")
        raise SystemExit(2)


def bad_settings_line(prog: str) -> str | None:
    """exit_on_bad_settings's line (``PROG: error: ...``) where a GPUNN_ variable is one gpunn does not take; else
    None (bench/dist_bench.py says it after its ranks agree on who refused)."""
    from ..distributed.comm import DistributedError

    try:
        refuse_bad_settings()
    except (ValueError, DistributedError) as exc:
        return f"{prog}: error: {' '.join(str(exc).split())}"
    return None


def add_debug(parser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"on an error, show the full traceback (also: environment variable {DEBUG_ENV}=1)")


def number(text, kind):
    """int or float from the command line; whole numbers may be written 2_000_000 or 1e6."""
    text = text.strip()
    try:
        return kind(text.replace("_", ""))
    except ValueError:
        pass
    if kind is int:
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value == int(value):
            return int(value)
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")


TOML_TYPES = {int: (int,), float: (int, float)}  # what a config file may give an option of each kind (an argparse
# type's toml_types): the command line's text spells 4 as 4.0 or 1e-3 as "1e-3" alike, a TOML file's types do not,
# and a float for a count, or a quoted number, is refused naming its key (gpunn.config.convert)


def bounded(kind, low, *, inclusive=False, what=None):
    """An argparse type: a finite number of ``kind`` above ``low`` (at least ``low`` when inclusive).
    ``what``: the complaint, with ``{text}`` for what was given."""
    def parse(text):
        value = number(text, kind)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low if inclusive else value <= low:
            what_ = what or f"must be {'at least' if inclusive else 'greater than'} {low}, got {{text}}"
            raise argparse.ArgumentTypeError(what_.format(text=text))
        return value
    parse.toml_types = TOML_TYPES[kind]
    return parse


def epoch_axis(ax) -> None:
    """A plot's x axis of epochs (gpunn train's and sweep's --plot): labelled, with whole epochs as its ticks, where
    matplotlib put a few epochs' at 1.25, 1.5, 1.75..."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def positive(kind):
    """An argparse type: ``kind(text)``, refused unless > 0."""
    return bounded(kind, 0, what="must be positive, got {text}")


def non_negative(kind):
    """An argparse type: ``kind(text)``, refused when < 0."""
    return bounded(kind, 0, inclusive=True, what="must be zero or more, got {text}")


def file_path(text):
    """An argparse type: a file or directory option's path, any text but an empty one. "" read as the option left
    out, without a word: --save "" wrote no checkpoint, --data "" trained on the synthetic task, --json "" wrote
    nothing (a variable that expanded to nothing, in a script). A leading ~ is the home directory, as a shell reads
    it: bash expands it only at a word's start, so --data=~/t.csv, a quoted '~/t.csv' and a config file's
    data = "~/t.csv" reached gpunn as written, refused as missing."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    return os.path.expanduser(text) if text.startswith("~") else text


def dtype(text):
    """float32 or float64 from any NumPy spelling of them (f4, single, double, <f8...)."""
    from ..model import canonical_dtype

    try:
        return canonical_dtype(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
