"""``gpunn predict MODEL IN OUT``: predictions of a saved model (.npy, CSV, Parquet; large files streamed)."""
from __future__ import annotations

import argparse
import contextlib
import functools
import os

import numpy

from ..checks import PARQUET_SUFFIXES, NotFinite, read_by_position
from ..csvtext import joined_columns, tab_separated_hint, tab_separated_output_hint
from ..hints import shell_word
from ..preflight import DATA_SUFFIXES
from .common import (DEVICE_NAMES, add_debug, check_report_outputs, data_stdout, device_name, file_path, is_stdout,
                     json_text, refuse_replacing_data, write_output)
from .data import COLUMNS_HELP, column_name, column_names, weights_mismatch


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="predict with a saved model: gpunn predict MODEL IN OUT (.npy, .csv, .parquet)",
                       description="Load a checkpoint (from --save or gpunn.save), predict the rows of IN "
                                   "(rows x features, by name: a .npy array, a .csv file of numbers (UTF-8, "
                                   "comma-separated; true/false read as 1 and 0 with pyarrow), or a .parquet file or "
                                   "directory) and write OUT (rows x outputs: .npy, .csv or .parquet, by name; - "
                                   "for CSV on standard output). OUT may not be MODEL or IN, nor an existing file "
                                   "that holds the model's inputs "
                                   "(--overwrite replaces it). Parquet files, .npy and CSV inputs over 256 MiB and "
                                   "tables with a header row for a model trained on named columns are streamed a "
                                   "chunk of rows at a time (Parquet and CSV tables need pyarrow: gpunn[data]); the "
                                   "columns are then picked by the model's feature names (or --features), in any "
                                   "order and among others. An .npy file and a CSV file without a header row are "
                                   "read by position, as is a table's every column for a model trained on unnamed "
                                   "columns (a note on stderr says so where they have names). A table OUT's columns are named after the model's targets "
                                   "when it knows them (a CSV then has a header row); a CSV OUT holds the digits "
                                   "that read back each value exactly (9 significant for float32, 17 for "
                                   "float64). A model trained with --standardize takes raw inputs and predicts "
                                   "in the targets' units (in float64 when its targets were standardized in "
                                   "float64: float64 or int64 values, CSV and Parquet columns, for a float32 "
                                   "model).")
    # MODEL IN OUT, as the description, README and the errors ("IN in.npy: X has 8 columns") name them
    p.add_argument("model", type=file_path, metavar="MODEL", help="checkpoint .npz")
    p.add_argument("input", type=file_path, metavar="IN", help="inputs, by name: .npy array (read without pickle), .csv file, or "
                   ".parquet (.parq, .pq) file or a directory of them; - for standard input (by its bytes: an .npy "
                   "array, a Parquet file, else CSV), read into a temporary file first")
    p.add_argument("output", type=file_path, metavar="OUT", help="file to write, by name: .npy, .csv (commas) or .parquet (.parq, .pq); - for "
                   "standard output, as CSV (the lines of text then go to stderr: gpunn predict m.npz in.csv - | head); "
                   "a named pipe or a device (a .csv name) is written into as its rows are predicted, as - is")
    p.add_argument("--features", metavar="COLUMNS", type=column_names,
                   help=f"feature columns of a table input, comma-separated ({COLUMNS_HELP}; default: "
                   "the model's training columns, else every column), read as the model's features in this order "
                   "(the model's own names in another order are refused); streams the input")
    p.add_argument("--keep", metavar="COLUMNS", type=column_names,
                   help="columns of IN copied into OUT before the predictions, comma-separated (an id, a date, the "
                        "true target): from a Parquet IN or a CSV IN with a header row, into a .csv or .parquet OUT "
                        "(a CSV IN's as text, as written; a Parquet IN's in their type); a name OUT's predictions "
                        "take (the model's targets, else y0, y1, ...) is refused; streams the input")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT even where it exists and holds the model's inputs: a file of as many columns as "
                        "the model's features (not its outputs), a table naming its feature columns, or, for a model "
                        "of as many outputs as inputs, the rows whose predictions IN holds (the arguments swapped); "
                        "refused without it, as most often a slip that would lose the data. An earlier OUT of "
                        "predictions is replaced without it")
    p.add_argument("--score", action="store_true",
                   help="also score the predictions against IN's target columns, the model's (a table of the "
                        "columns it was trained on, a held-out file): mse, mae and r2 in the targets' units, as "
                        "model.evaluate gives them, printed as gpunn train's held-out line; read in the "
                        "pass that writes OUT (a target that is not a number refuses IN, OUT not written, as bad weights do). For a model trained on named columns (a CSV or Parquet --data) and a CSV "
                        "(with a header) or Parquet IN; for an .npy IN, with --targets Y.npy")
    p.add_argument("--targets", type=file_path, metavar="Y.npy",
                   help="with --score and an .npy IN: the rows' targets, as gpunn train --targets (model.evaluate("
                        "gpunn.data.npy(IN, Y.npy)))")
    p.add_argument("--weight", metavar="COLUMN", type=column_name,
                   help="with --score: weigh each row's error by IN's column COLUMN, as gpunn train --weight weighs "
                        "the held-out rows (the weighted mse, mae and r2, scikit-learn's r2_score(..., "
                        "sample_weight=w): model.evaluate(gpunn.data.csv(IN, ..., weight=COLUMN))); a weight must be "
                        "a finite number, 0 or more")
    p.add_argument("--weights", type=file_path, metavar="W.npy",
                   help="with --score and an .npy IN: each row's weight in a file of its own, as gpunn train "
                        "--weights (model.evaluate(X, Y, sample_weight=w))")
    p.add_argument("--json", type=file_path, metavar="PATH",
                   help="also write a summary as JSON: model, input, output, rows, outputs, dtype, device, streamed, "
                        "keep (--keep's columns, null without it) and score (--score's targets (the model's columns, or "
                        "--targets' file), weight (--weight's column, --weights' file, or null), mse, mae and r2; null without --score); - for standard output: "
                        "the lines of text then go to stderr, so gpunn predict m.npz in.csv p.npy --json - | jq "
                        "works; a name that says another kind of file, .csv or .npz..., is refused")
    p.add_argument("--device", type=device_name, default="auto", help=f"auto, {DEVICE_NAMES} (default: %(default)s; env GPUNN_DEVICE)")
    add_debug(p)
    p.set_defaults(func=run)
    return p


SUFFIXES = DATA_SUFFIXES  # IN's and OUT's, as --data's: the name says how each is read or written
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


# a .tsv file's predictions in Python, which IN's refusal of the name shows
TSV_PREDICTED = "model.predict(pandas.read_csv(path, sep='\\t'))"


def _check_input_name(path) -> None:
    """IN is read by its name, as OUT is written and gpunn train --data reads: a CSV file's header picks the
    model's columns by name, which a file of another name, read whole by its bytes, went without (its columns were
    taken by position), and only the whole read took such a name (the streamed one said "unknown file type")."""
    from .. import preflight

    if not os.path.exists(path):  # (a name mistyped is missing, not "unknown file type" or "an .npz/zip archive";
        # an .npy or .csv one, for a model without column names, said "[Errno 2] No such file or directory: 'x.npy'")
        raise preflight.PreflightError(f"IN {shell_word(path)} does not exist")
    _refuse_a_pipe_in(path)
    if os.path.isdir(path) or path.lower().endswith(SUFFIXES):
        return
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":  # a checkpoint given as IN, most often
        raise preflight.PreflightError(f"IN {shell_word(path)}{preflight.not_npy(path, 'zip', 'the inputs')}")
    if suffix in COMPRESSED:
        raise preflight.PreflightError(f"IN {shell_word(path)} is compressed ({suffix}): decompress it first (gpunn reads .npy, "
                                       ".csv and .parquet files uncompressed)")
    raise preflight.PreflightError(f"IN {shell_word(path)}: unknown file type; the name must end in {', '.join(SUFFIXES[:-1])} "
                                   f"or {SUFFIXES[-1]}, as it says how the file is read (or be a directory of "
                                   f"Parquet files){tab_separated_hint(path, TSV_PREDICTED)}")


def _refuse_a_pipe_in(path, named="IN", remedy=None) -> None:
    """IN (or --score's ``named`` file) a named pipe, a socket or a device: gpunn predict reads IN more than once (a
    CSV file's kind and header, then its rows; an .npy file's header, then its rows), and a pipe gives its bytes once:
    the run waited for ever for a second writer, or said what the first read left ("IN p.csv: no such file", "a
    damaged .npy file"). Refused before any read, saying to pipe IN into IN -, read once into a file (``remedy``, for
    another file). A writer waiting in its open for a reader (cat x.csv > p.csv &) is let go, as a reader that exits
    lets it go (its writes then fail, broken pipe), not left waiting for ever. A path not there is left to the
    reader's refusal."""
    import stat

    from .. import preflight

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    if stat.S_ISFIFO(mode):
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    remedy = remedy or ("give it as IN -, standard input, which is read once into a temporary file (gpunn predict "
                        f"MODEL - OUT < {shell_word(path)})")
    raise preflight.PreflightError(f"{named} {shell_word(path)} is {preflight.in_place_kind(path)}, whose bytes can be "
                                   f"read once, and gpunn predict reads {named} more than once: {remedy}")


def _check_model_first(args) -> None:
    """MODEL is a checkpoint: a data file there (by its name) is most often the arguments' order mistaken, said
    before IN is read, with the order meant where IN is the checkpoint. It said "IN m.npz is an .npz/zip archive (a checkpoint?) ...:
    save the inputs with numpy.save" where IN was the checkpoint, and "new.csv: not a gpunn checkpoint", naming no
    argument, where IN was data; numpy.savez's arrays "arr.npz: not a gpunn checkpoint (no gpunn_meta member)". A data
    file is named as --resume and --config name it ("CSV text", "a Parquet file": preflight.data_file_words). Other
    files are left to the checkpoint reader's own words (a run's .toml config)."""
    from .. import preflight

    kind = preflight.file_kind(args.model)
    what = (preflight.not_a_checkpoint(args.model) if kind == "zip" else
            preflight.data_file_words(args.model, kind) if args.model.lower().endswith(SUFFIXES) else "")
    if not what:
        return
    swapped = (args.model.lower().endswith(SUFFIXES) and os.path.isfile(args.input)  # (an .npz is no IN)
               and preflight.file_kind(args.input) == "zip")
    swapped_line = " ".join(map(shell_word, (args.input, args.model, args.output)))
    order = (f": did you mean gpunn predict {swapped_line}?" if swapped
             else "; save one with gpunn train --save or gpunn.save(path, model)")
    raise preflight.PreflightError(f"MODEL {shell_word(args.model)} is not a gpunn checkpoint ({what}); gpunn predict takes "
                                   f"MODEL IN OUT, the checkpoint first{order}")


def run(args) -> int:
    try:
        if args.input != "-":
            return _run(args)
        with spooled_stdin() as path:  # IN -: standard input, read into a file (a table is read more than once)
            args.input, args.stdin = path, True
            return _run(args)
    except BaseException:
        for path in (args.output, args.json):
            _let_the_pipes_reader_go(path)
        raise


def _let_the_pipes_reader_go(path) -> None:
    """OUT (or --json) a named pipe, the command refused (or interrupted) before opening it: the pipe's reader (``cat
    OUT``, waiting in its open for a writer) would wait for ever. The pipe opened for writing without blocking and closed at once
    gives it end of file (an open that fails, ENXIO where no reader has it open, leaves nothing to do). Where the
    command had opened and closed it, its reader has had end of file already: this gives it nothing more."""
    import stat

    try:
        if not path or is_stdout(path) or not stat.S_ISFIFO(os.stat(path).st_mode):
            return
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@contextlib.contextmanager
def spooled_stdin():
    """The path of a temporary file holding standard input, named by its bytes (stdin.npy for an .npy array,
    stdin.parquet for a Parquet file, else stdin.csv), removed at the end; said on stderr, as errors name it."""
    import shutil
    import sys
    import tempfile

    from .. import preflight

    if sys.stdin is None or sys.stdin.isatty():  # (None: started with standard input closed, <&-)
        state = "closed" if sys.stdin is None else "a terminal"
        raise ValueError(f"IN - reads standard input, and it is {state}: pipe the rows into it (zcat x.csv.gz | "
                         "gpunn predict MODEL - OUT), or name a file")
    folder = tempfile.mkdtemp(prefix="gpunn-stdin-")
    try:
        path = os.path.join(folder, "stdin")
        with open(path, "wb") as fh:
            shutil.copyfileobj(sys.stdin.buffer, fh, 1 << 20)
        with open(path, "rb") as fh:
            head = fh.read(8)
        named = path + (".npy" if head.startswith(preflight.NPY_MAGIC) else ".parquet" if head.startswith(b"PAR1")
                        else ".csv")
        os.replace(path, named)
        print(f"IN -: standard input, {os.path.getsize(named):,} bytes read into {named} (removed at the end)",
              file=sys.stderr)
        yield named
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(args) -> int:
    from .. import checkpoint as io, csvtext, preflight

    if not os.path.isfile(args.model):
        raise preflight.PreflightError(no_model_file(args.model, "predict"))
    _check_model_first(args)
    to_stdout = is_stdout(args.output)
    if to_stdout and is_stdout(args.json):
        raise ValueError("OUT - and --json - would both write to standard output: name a file for one of them "
                         "(--json run.json)")
    if not to_stdout:
        preflight.check_output(args.output, "OUT", reads=[(args.model, "MODEL"), (args.input, "input")],
                               suffixes=SUFFIXES, other_suffix_hint=tab_separated_output_hint(args.output))
    # (--json IN or --json MODEL would replace a file the command reads; --json OUT, the predictions)
    reports = check_report_outputs(args, reads=[(args.model, "MODEL"), (args.input, "IN")])
    preflight.check_distinct([*[("OUT", args.output)] * (not to_stdout), *reports])
    refuse_replacing_data(args, reports)
    _check_input_name(args.input)
    _check_keep_files(args)
    if args.features and args.input.lower().endswith(".npy"):
        raise ValueError(f"--features names columns of a table (CSV or Parquet); {os.path.basename(args.input)} has "
                         "none: its columns are the model's features, in order")
    features = args.features or None
    if features and args.input.lower().endswith(".csv") and os.path.isfile(args.input):
        from ..csvtext import csv_has_header
        from ..data.errors import DataError
        from ..data.csv_tables import check_csv_kind

        try:  # a binary file is no CSV file, header or not: said so, as training and the streamed read say it
            check_csv_kind(args.input)
        except DataError as exc:
            raise DataError(_unwritten(args, _named_in(exc, args.input))) from None
        if not csv_has_header(args.input, columns=features):
            raise ValueError(f"--features names columns, and {os.path.basename(args.input)} has no header row: its "
                             "columns are the model's features, in order")
    model = _one_model(io.load(args.model, device=args.device), args.model)
    _check_features_order(args, model)
    if args.weight and not args.score:
        raise ValueError(f"--weight {shell_word(args.weight)} weighs --score's errors; add --score (predictions are "
                         "not weighted)")
    for option, value in (("--targets", args.targets), ("--weights", args.weights)):
        if value and not args.score:
            raise ValueError(f"{option} {shell_word(value)} is read by --score alone; add --score (predictions "
                             f"{'are not weighted' if option == '--weights' else 'need IN alone'})")
    for option, value in (("--targets", args.targets), ("--weights", args.weights)):
        if value:
            _refuse_a_pipe_in(value, option, "save it to a file and give that")
    targets = _score_targets(args, model) if args.score else None  # refused before OUT is written
    if not (args.overwrite or to_stdout):
        _check_not_inputs(args, model, features)
    with _kept_columns(args, model) as keep:
        return _predict_and_say(args, model, features, targets, keep)


def _predict_and_say(args, model, features, targets, keep) -> int:
    """gpunn predict's run once its arguments are checked: OUT written, the lines said; ``keep``: IN's --keep
    columns (gpunn.data.kept.KeptColumns) or None."""
    from .. import checkpoint as io, csvtext, preflight

    if _streams(args, model):
        from ..data.errors import DataError
        from ..data.files import predict_file

        from ..data.table_columns import MissingColumns

        try:
            if targets:  # one pass: the predictions written as evaluate's sums add up
                rows, logs = _predict_scored(args, model, targets, keep)
            else:
                rows, logs = predict_file(model, args.input, _out(args), features=features, keep=keep), None
        except MissingColumns as exc:
            raise DataError(_unwritten(args, f"{_named_in(exc, args.input)}"
                                             f"{'' if features else _picked_by_name(model, exc)}",
                                       getattr(exc, "rows_written", 0))) from None
        except DataError as exc:  # (rows_written: where OUT was opened, gpunn.data.files.rows_written_said)
            raise DataError(_unwritten(args, _named_in(exc, args.input), getattr(exc, "rows_written", 0))) from None
        dtype = model._prediction_dtype()
        print(f"{_out_words(args)}: {rows:,} x {model.layer_sizes[-1]} predictions "
              f"({dtype.name}) from {shell_word(args.model)} on {model.device}, streamed")
        _finish(args, model, targets, rows, dtype, streamed=True, logs=logs)
        return 0
    try:
        X = preflight.read_matrix(args.input, "IN")
    except preflight.PreflightError as exc:
        raise preflight.PreflightError(_unwritten(args, f"{exc}{_text_read_by_position(args.input, model)}")) from None
    try:
        with read_by_position():  # an .npy or headerless file's columns, in order, as the help says
            P = numpy.asarray(model.backend.to_host(model.predict(X)))
    except NotFinite as exc:
        from ..data.files import more_not_finite_in_file, not_finite_in_file

        csv = preflight.file_kind(args.input) == "text"  # else an .npy array's row and column, as NumPy indexes them
        names = csvtext.csv_names(args.input) if csv else None
        said = (f"IN {not_finite_in_file(args.input, exc, exc.row, names, csv)}"
                f"{more_not_finite_in_file(args.input, exc, X, 0, names, csv, later=False)}")
        raise ValueError(_unwritten(args, said)) from None
    except (ValueError, TypeError) as exc:
        said = f"IN {shell_word(args.input)}: {exc}{_by_position(args.input, model, exc) or _trained_on(args.model, model, exc)}"
        raise ValueError(_unwritten(args, said)) from None
    if args.output.lower().endswith(".csv"):  # as the streamed path writes it (header, digits)
        from ..data.files import output_writer, write_rows

        names = (getattr(model, "data_columns", None) or {}).get("targets")
        write_rows(output_writer(args.output, P.shape[1], P.dtype, names), [P])
    else:
        io.atomic_write(args.output, lambda fh: numpy.save(_WritesThrough(fh), P, allow_pickle=False))
    print(f"{shell_word(args.output)}: {P.shape[0]:,} x {P.shape[1]} predictions ({P.dtype.name}) from "
          f"{shell_word(args.model)} on {model.device}")
    _finish(args, model, None, P.shape[0], P.dtype, streamed=False)  # (--score streams: _streams)
    return 0


class _WritesThrough:
    """``fh`` as numpy.save sees a file that is not one: it writes the array through ``write`` (16 MiB at a time),
    whose OSError keeps its errno (``[Errno 28] No space left on device``). Into the file itself NumPy writes with C's
    fwrite (ndarray.tofile), which drops it: a full disk said "20000 requested and 992 written"."""

    def __init__(self, fh):
        self.write = fh.write


def _finish(args, model, targets, rows, dtype, streamed, logs=None) -> None:
    """After OUT is written: the note of a named table's columns read by position, --score's line (of the pass's
    ``logs``), then --json's summary of the run (its score null without --score)."""
    if not args.features:
        _note_read_by_position(args, model)
    metrics = _print_score(args, model, targets, logs) if targets else None
    if args.json:
        score = None if metrics is None else {"targets": targets, "weight": args.weight or args.weights,
                                              **{k: metrics[k] for k in ("mse", "mae", "r2")}}
        write_output(args.json, json_text({"model": args.model, "input": "-" if getattr(args, "stdin", False)
                                           else args.input, "output": args.output,
                                           "rows": rows, "outputs": model.layer_sizes[-1], "dtype": dtype.name,
                                           "device": str(model.device), "streamed": streamed, "keep": args.keep,
                                           "score": score}),
                     announce=True)


def _unwritten(args, said, rows=0) -> str:
    """``said``, a refusal of IN's rows once the read that writes OUT has begun, with what OUT holds: a file OUT is
    written under a temporary name, removed on the refusal (an earlier OUT is left as it was), so "OUT not written";
    onto standard output, the ``rows`` of predictions written before the refused piece of IN stay written (its reader
    has them), as into an OUT that is no regular file (a named pipe, a device: written in place, gpunn.data.files.
    InPlaceCsvWriter); none written (a refusal before OUT is opened, or of IN's first piece), it says so. After a
    question ("the model of another run?") it is a sentence of its own, as _picked_by_name's."""
    from .. import preflight

    if is_stdout(args.output) or preflight.writes_in_place(args.output):
        out = ("standard output" if is_stdout(args.output) else
               f"OUT {shell_word(args.output)}, {preflight.in_place_kind(args.output)},")
        words = (f"{out} holds only the rows predicted before it (the rest not written)" if rows else
                 f"no prediction was written to {out.rstrip(',')}")
    else:
        words = "OUT not written"
    said = str(said)  # (_named_in's error, or text)
    return f"{said} {words[0].upper()}{words[1:]}" if said.endswith("?") else f"{said}; {words}"


def _out(args):
    """OUT as the writers take it: its path, or the standard output's text stream for ``-`` (CSV onto it)."""
    return data_stdout() if is_stdout(args.output) else args.output


def _out_words(args) -> str:
    return "standard output" if is_stdout(args.output) else shell_word(args.output)


def _check_keep_files(args) -> None:
    """--keep copies IN's columns by name into a table OUT: an .npy IN has no names, an .npy OUT no place for them."""
    if not args.keep:
        return
    if args.input.lower().endswith(".npy"):
        raise ValueError("--keep copies IN's columns by name, and an .npy array has none: keep them from a CSV (with "
                         "a header row) or Parquet IN")
    if args.output.lower().endswith(".npy"):
        raise ValueError("--keep writes IN's columns beside the predictions, and an .npy OUT holds the predictions "
                         "alone: name a .csv or .parquet OUT")


@contextlib.contextmanager
def _kept_columns(args, model):
    """IN's --keep columns (gpunn.data.kept.KeptColumns), or None without --keep; refused before OUT is written where
    IN lacks one, or where one takes the name of a column of OUT's predictions."""
    if not args.keep:
        yield None
        return
    from ..data.errors import DataError
    from ..data.files import prediction_names
    from ..data.kept import KeptColumns

    predicted = prediction_names((getattr(model, "data_columns", None) or {}).get("targets"), model.layer_sizes[-1])
    clash = [n for n in args.keep if n in predicted]
    if clash:
        raise ValueError(f"--keep {', '.join(clash)}: OUT's predictions are named {', '.join(predicted)}, so OUT would "
                         "hold two columns of that name; rename the column in IN to keep it, or score the "
                         "predictions against it with --score")
    try:
        keep = KeptColumns(args.input, args.keep)
    except DataError as exc:
        raise DataError(f"--keep: {_named_in(exc, args.input)}") from None
    with contextlib.closing(keep):
        yield keep


def _score_targets(args, model) -> list:
    """The target columns --score reads from IN: the model's, which a table source (gpunn.data.csv, .parquet) reads
    beside its features, refused here, before OUT is written, where there are none to read: a model trained on
    unnamed columns (an .npy pair, a synthetic task), an .npy IN, a --features naming other columns than the
    model's (model.evaluate scores a source of the model's own columns)."""
    weights_mismatch(args, "IN", args.input)
    if args.input.lower().endswith(".npy"):  # (its rows' targets in a file of their own, by position)
        if not args.targets:
            raise ValueError("--score of an .npy IN needs --targets Y.npy, the file of its rows' targets: --score "
                             "reads a table's target columns by name, and an .npy array has none")
        return [args.targets]
    if args.targets:
        raise ValueError(f"--targets goes with an .npy IN; --score reads IN {shell_word(args.input)}'s target "
                         "columns by the model's names")
    columns = getattr(model, "data_columns", None) or {}
    python = ("score it in Python: model.evaluate(gpunn.data.npy('X.npy', 'Y.npy')), or evaluate(X, Y) of arrays, or "
              "save it as .npy files: gpunn predict MODEL X.npy OUT --score --targets Y.npy")
    if not columns.get("targets") or not columns.get("features"):
        unnamed = ("the model's targets have none (it was fit on a DataFrame X with an array, or a Series of no name, "
                   "as Y)" if columns.get("features") else
                   "the model was trained on unnamed columns (an .npy pair or a synthetic task)")
        raise ValueError(f"--score reads IN's target columns by the model's names, and {unnamed}; {python}")
    if args.features and list(args.features) != list(columns["features"]):
        raise ValueError(f"--score reads IN's columns by the model's names ({', '.join(columns['features'])}, and "
                         f"{', '.join(columns['targets'])}), and --features names others: rename IN's columns to the "
                         "model's, or score it in Python, model.evaluate(X, Y) of arrays")
    if args.weight in [*columns["features"], *columns["targets"]]:
        role = "feature" if args.weight in columns["features"] else "target"
        raise ValueError(f"--weight {shell_word(args.weight)} is one of the model's {role} columns: a row's weight is "
                         "neither; name IN's column of each row's weight")
    targets = list(columns["targets"])
    return targets


def _score_source(args, model, targets):
    """The source --score evaluates: IN's feature and target columns, by the model's names; built before OUT is opened,
    it refuses an IN without them (built once: standard input's CSV index is not kept, and a second source indexed it
    again)."""
    from .. import data
    from ..data.errors import DataError
    from ..data.table_columns import MissingColumns

    if args.input.lower().endswith(".npy"):
        return data.npy(args.input, args.targets, weights=args.weights)
    # (IN -'s file: no CSV index kept in gpunn's cache, where it would be left once a run, never to be read again)
    kind = (functools.partial(data.csv, cache=not getattr(args, "stdin", False)) if args.input.lower().endswith(".csv")
            else data.parquet)
    try:
        return kind(args.input, target=targets, features=list(model.data_columns["features"]), weight=args.weight)
    except MissingColumns as exc:
        weight = exc.missing == [args.weight]  # (--weight's column, not the model's)
        raise DataError(f"--score: {_named_in(exc, args.input)} ("
                        + (f"--weight's column in IN)" if weight else f"the model's target column"
                           f"{'s' * (len(targets) > 1)}, {', '.join(targets)}, in IN)")) from None


def _predict_scored(args, model, targets, keep) -> tuple[int, dict]:
    """(rows, evaluate's logs) of one pass over a source of IN's feature and target columns (gpunn.data.files.
    predict_scored): OUT written as the metrics add up, the metrics model.evaluate's of that source to the bit."""
    from ..data.files import predict_scored
    from ..model import PREDICT_CHUNK_ROWS

    # (refused as the source is built, before OUT is opened: bad weights, a targets file of other rows; or by the
    # pass, a target that is not a number: OUT, written in the same pass, is not: _unwritten, by the caller)
    with _score_source(args, model, targets) as source:
        return predict_scored(model, source, _out(args), PREDICT_CHUNK_ROWS, keep)


def _print_score(args, model, targets, logs) -> dict:
    """--score's line (returning the metrics): model.evaluate's of the pass's ``logs`` (or its error, OUT written), in
    gpunn train's held-out words and digits."""
    metrics = model._scored(logs, None)
    named = "standard input" if getattr(args, "stdin", False) else shell_word(args.input)  # (its file is gone)
    weighed = (f", each row weighed by column {shell_word(args.weight)}" if args.weight else
               f", each row weighed by {shell_word(args.weights)}" if args.weights else "")
    print(f"held-out ({named}, against {', '.join(targets)}{weighed}): mse {metrics['mse']:.5g}  "
          f"mae {metrics['mae']:.5g}  r2 {metrics['r2']:.4f}")
    return metrics


STREAM_BYTES = 256 << 20
COMPARED_ROWS = 32  # the rows of OUT predicted and compared with IN's, for a model of as many outputs as inputs


def _check_features_order(args, model) -> None:
    """--features maps a table's columns to the model's features in order, for a table whose names differ from the
    model's: the model's own names in another order (--features f1,f0 for f0, f1, meant as "these columns") read
    one column as another, without a word. Refused, saying what --features does."""
    names = (getattr(model, "data_columns", None) or {}).get("features")
    given = args.features
    if not names or not given or list(given) == list(names) or sorted(given) != sorted(names):
        return
    first = next(g for g, n in zip(given, names) if g != n)
    raise ValueError(f"--features {shell_word(joined_columns(given))} names the model's columns in another order than "
                     f"it was trained on ({', '.join(names)}): --features gives the table's columns for the model's "
                     f"features in order, so {first} would be read as {names[given.index(first)]}; leave --features "
                     "out (the model picks its columns by name), or give them in its order")


def _note_read_by_position(args, model) -> None:
    """A note where IN is a table whose columns have names (a Parquet file, a CSV file with a header row) and the
    model was trained on unnamed columns (an .npy pair, a synthetic task, arrays in Python): its columns are then
    taken in order as the model's features, as model.predict warns of a DataFrame's or a table source's; gpunn
    predict did it without a word, right only where the table's columns are in training's order. Said once OUT is
    written: a table of another width, or holding a value not finite, is refused in its own words alone."""
    import sys

    if (getattr(model, "data_columns", None) or {}).get("features"):
        return
    _, names = _first_rows(args.input, model.layer_sizes[0], None)
    if names:
        print(f"note: IN {shell_word(args.input)} has column names ({', '.join(names)}), but MODEL "
              f"{shell_word(args.model)} was trained on unnamed columns (an .npy pair, a synthetic task or arrays): "
              f"they are read by position, in order, as its features; --features names the table's columns for them, in its "
              f"order", file=sys.stderr, flush=True)


def _check_not_inputs(args, model, features) -> None:
    """Refuse to write over an existing OUT that holds the model's inputs, read as IN would be: of the features'
    width where the predictions have another, a table naming the model's feature columns, or (as many outputs as
    inputs, where the width cannot tell) the rows IN holds the model's predictions of: ``gpunn predict m.npz
    o.npy X.npy``, IN and OUT swapped, replaced X.npy by the predictions of its own predictions. An earlier OUT,
    of predictions, reads as no inputs (another width, or a table of the target columns) and is replaced as before."""
    from .. import preflight

    out, n_in, n_out = args.output, model.layer_sizes[0], model.layer_sizes[-1]
    if not os.path.isfile(out) or preflight.writes_in_place(out):
        return
    names = features or (getattr(model, "data_columns", None) or {}).get("features")
    X, read_names = _first_rows(out, n_in, names)
    if X is None:  # not readable as the model's inputs: an earlier OUT, or another file the user chose to replace
        return
    if n_in != n_out:
        holds = f"{n_in} columns, as the model's inputs (its predictions have {n_out})"
    elif names and read_names is not None:
        holds = f"the model's feature columns, {', '.join(names)}"
    elif _predicted(model, X, _first_rows(args.input, n_out, None)[0]):
        swapped = " ".join(map(shell_word, (args.model, out, args.input)))
        raise preflight.PreflightError(
            f"OUT {shell_word(out)} exists, and IN {shell_word(args.input)} holds the model's predictions of its rows: "
            f"IN and OUT look swapped (gpunn predict takes MODEL IN OUT), and writing OUT would replace the inputs: "
            f"did you mean gpunn predict {swapped}? (--overwrite replaces OUT all the same)")
    else:
        return
    raise preflight.PreflightError(f"OUT {shell_word(out)} exists and holds {holds}: writing the predictions there "
                                   "would replace the inputs; choose another OUT, or add --overwrite to replace it")


def _first_rows(path, n_features, names):
    """(up to COMPARED_ROWS rows of ``path`` read as the model's inputs, the names of the columns read or None), or
    (None, None) where it cannot be read so (another width, no such columns, no rows, not a data file)."""
    from ..data.files import read_rows

    try:
        _, chunks, read_names = read_rows(path, n_features, names, chunk_rows=COMPARED_ROWS)
        with contextlib.closing(chunks):
            return next(chunks, None), read_names
    except Exception:  # (pyarrow missing for a table too: then it is not read as inputs here)
        return None, None


def _predicted(model, X, held) -> bool:
    """Whether ``held`` (IN's first rows) are the model's predictions of ``X`` (OUT's), to float32's or
    float64's precision: rows predicted in another batch may differ in their last bits (BLAS blocking)."""
    if held is None or len(held) < len(X):
        return False
    try:
        with read_by_position():  # (OUT's columns, in order, as IN's would be read)
            P = numpy.asarray(model.backend.to_host(model.predict(X)), dtype=numpy.float64)
    except (ValueError, TypeError):  # (NaN in OUT's rows: NotFinite)
        return False
    tolerance = 1e-4 if model.dtype == numpy.float32 else 1e-9
    return numpy.allclose(held[:len(X)], P, rtol=tolerance, atol=tolerance * float(numpy.abs(P).max()))


def _streams(args, model) -> bool:
    """Whether to predict chunk by chunk (gpunn.data.files) rather than read IN whole: Parquet in or
    out, named feature columns (--features, or a CSV with a header for a model that knows its
    feature names: its columns are then picked by name, not by position; --score, which reads IN's columns by the
    model's names, its source refusing an IN without them before OUT is opened), or a .npy or CSV input over
    STREAM_BYTES."""
    from ..csvtext import csv_has_header

    if args.score or args.keep or is_stdout(args.output):  # (--score: so it did all along: the path read whole
        return True  # scored nothing; OUT -: written as its rows are predicted)
    if (os.path.isdir(args.input) or args.input.lower().endswith(PARQUET_SUFFIXES)
            or args.output.lower().endswith(PARQUET_SUFFIXES)):
        return True
    columns = getattr(model, "data_columns", None)
    if columns and args.input.lower().endswith(".csv") and csv_has_header(args.input, columns=columns.get("features")):
        return True
    return bool(args.features) or (args.input.lower().endswith((".npy", ".csv")) and os.path.isfile(args.input)
                                   and os.path.getsize(args.input) > STREAM_BYTES)


def _by_position(path, model, exc) -> str:
    """Why a file read whole has another width than the model: its columns are taken in order, and a CSV file's
    header then picks nothing ("X has 5 columns but the model expects 4" for a table of a, b, c, d, y and a model
    trained on an .npy pair, with no word of --features), nor is a model's column missing from a headerless file
    said. "" for any other error."""
    from .. import preflight
    from ..csvtext import csv_names, joined_columns

    width = _width(exc)
    if width is None:
        return ""
    names = (getattr(model, "data_columns", None) or {}).get("features")
    header = csv_names(path) if preflight.file_kind(path) == "text" else None
    n = model.layer_sizes[0]
    if header and not names:
        return (f"{_target_too(model, width)}; its header names {', '.join(header)}, and the model was trained on unnamed columns (an .npy "
                f"file or a synthetic task), so they are taken in order: pick the model's {n} with --features"
                + (f", e.g. --features {shell_word(joined_columns(header[:n]))}" if len(header) > n else ""))
    if names and not header:
        extra = _target_too(model, width)
        if preflight.file_kind(path) == "npy":  # an array has no header to give it
            return (f"; an .npy array holds no column names, so its columns are taken in order as the model's "
                    f"features, {', '.join(names)}{extra}: save those {n} alone, in that order, or give a CSV or "
                    "Parquet file whose header names them, and the columns are picked by name")
        return (f"; {os.path.basename(path)} has no header row, so its columns are taken in order as the model's "
                f"features, {', '.join(names)}{extra}: give it a header row naming them, and the columns are picked "
                "by name")
    return ""


def _target_too(model, width) -> str:
    """The refusal's " (its target y too?)" where a file of ``width`` columns, read in order, holds one column more
    than the model's features per output: a table of the training file's columns saved whole, its target(s) among
    them. The names are the model's where it has them, else " (its target too?)", " (its 2 targets too?)": a model
    trained on an .npy pair was given no hint where a named one was."""
    n, outputs = model.layer_sizes[0], model.layer_sizes[-1]
    if width != n + outputs:
        return ""
    targets = (getattr(model, "data_columns", None) or {}).get("targets") or []
    if len(targets) == outputs:
        return f" (its target{'s' if outputs > 1 else ''} {', '.join(targets)} too?)"
    return f" (its {outputs} targets too?)" if outputs > 1 else " (its target too?)"


def _picked_by_name(model, exc) -> str:
    """What to do where a table lacks a column of the model's features, which picked its columns by name: the
    model's names, and the --features that picks the table's columns for them where each is there or misspelt
    there (a header's 'roms' for 'rooms'). gpunn predict said the column was missing, with no word of the model."""
    from ..csvtext import joined_columns
    from ..data.table_columns import close_column

    names = (getattr(model, "data_columns", None) or {}).get("features")
    if not names or exc.first_file:  # (a directory whose first file has them: its refusal says what to do)
        return ""
    found = [n if n in exc.available else close_column(n, exc.available) for n in names]
    how = (f"name the table's columns for them, in that order, with --features {shell_word(joined_columns(found))}"
           if all(found) else "give the table those columns, or name its columns for them, in that order, with "
           "--features")
    return (f"{' T' if str(exc).endswith('?') else '; t'}he model was trained on the columns {', '.join(names)} and "
            f"picks a table's by name: {how}")


def _trained_on(path, model, exc) -> str:
    """Where the model of ``path``, whose width another input's differs from, was trained, as gpunn train recorded
    it: "; MODEL run.npz was trained on gpunn train's synthetic task teacher, of 16 features: the model of another
    run?", or the --data file whose columns it takes; "" for a model without that record (gpunn.save's) or another
    error. It said "X has 5 columns but the model expects 16", with no word of which model that was."""
    from .. import checkpoint
    from .resume import saved_options

    width = _width(exc)
    if width is None:
        return ""
    too = _target_too(model, width)  # (its target too?): one column more per output than the model's features
    saved = saved_options(checkpoint.read_meta(path)) or {}
    if saved.get("data"):
        return (f"{too}; MODEL {shell_word(path)} was trained on --data {shell_word(saved['data'])}: give rows of "
                "that file's columns, in its order")
    if saved.get("task"):
        return (f"{too}; MODEL {shell_word(path)} was trained on gpunn train's synthetic task {saved['task']}, of "
                f"{saved.get('features')} features: the model of another run?")
    return too


def _text_read_by_position(path, model) -> str:
    """How to leave out a column of text (an id beside the numbers) of a CSV file read whole for a model that knows
    no column names, its columns taken in order, or "": the --features of table_columns.leave_out_hint, by which the
    file is streamed and its columns picked by name. The column whose first value is text is the one refused (the
    read stops at the first row's); without pyarrow, which reads by name, no hint."""
    from .. import preflight
    from ..csvtext import csv_names, first_value_is_text
    from ..data.table_columns import leave_out_hint

    if getattr(model, "data_columns", None) or preflight.file_kind(path) != "text":
        return ""
    names = csv_names(path)
    try:
        text = [first_value_is_text(path, i) for i in range(len(names or ()))]
    except ImportError:
        return ""
    if not any(text):
        return ""
    return leave_out_hint(names[text.index(True)], [n for n, t in zip(names, text) if not t],
                          width=model.layer_sizes[0])


def _width(exc) -> int | None:
    """The column count of "X has 7 columns but the model expects 6"."""
    import re

    found = re.match(r"X has (\d+) columns? but the model expects", str(exc))
    return int(found.group(1)) if found else None


def _named_in(exc, path):
    """A streamed read's error about the input file, named IN as the whole read's are ("IN x.csv: ..."), the file
    quoted as they quote it ("IN 'my dir/a b.csv': ..."; bare, "IN my dir/a b.csv" read as the file "my"):
    gpunn.data.files, a library, names the file alone ("x.csv: ...", "x.csv line 5: ...", a Parquet
    directory's file); any other error as it is."""
    text = str(exc)
    if text.startswith((f"{path}:", f"{path} ")):
        return type(exc)(f"IN {shell_word(path)}{text[len(path):]}")
    folder = os.path.join(path, "")
    if text.startswith(folder):  # (a Parquet directory's file: its name, the longest that the words go on after)
        after = text[len(folder):]
        names = [name for name in _listed(path) if after.startswith((f"{name}:", f"{name} "))]
        if names:
            file = folder + max(names, key=len)
            return type(exc)(f"IN {shell_word(file)}{text[len(file):]}")
    return exc


def _listed(path) -> list:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _one_model(model, path):
    """The loaded model, or a clear refusal for a saved gpunn.Ensemble (K predictions per row): one of gpunn sweep
    --save's checkpoints is pointed to the command that saves the sweep's best member."""
    if getattr(model, "n_models", None) is not None:
        raise ValueError(f"MODEL {shell_word(path)} is an ensemble of {model.n_models} members; gpunn predict takes one "
                         f"model: {one_member_words(path)}")
    return model


def one_member_words(path) -> str:
    """How one member of the ensemble saved at ``path`` is saved for gpunn predict: a gpunn sweep --save checkpoint's
    by the command that saves the sweep's best member."""
    from .. import checkpoint
    from .resume import sweep_directory

    sweep = sweep_directory(checkpoint.read_meta(path), path)
    return (f"save the sweep's best member with gpunn sweep --resume {shell_word(sweep)} --save-best best.npz" if sweep
            else "save one member (gpunn.save(path, ens.best()) or ens[k]), or use ens.predict in Python")


def no_model_file(path, command) -> str:
    """Why MODEL ``path``, no file, is refused by gpunn ``command`` (predict, info): missing (or named without its
    .npz), or a directory; a gpunn sweep --save DIR's is told what its checkpoints are and what to run on them."""
    from .. import preflight
    from .sweep import saved_checkpoints

    if not os.path.exists(path):
        return f"MODEL {shell_word(path)} does not exist{preflight.npz_meant(path)}"
    checkpoints = saved_checkpoints(path)
    if not checkpoints:
        return f"MODEL {shell_word(path)} is not a file{preflight.npz_meant(path)}"
    first = shell_word(checkpoints[0])
    todo = (f"gpunn predict takes one model: {one_member_words(checkpoints[0])}" if command == "predict"
            else f"gpunn info {first} says what one holds")
    return (f"MODEL {shell_word(path)} is a directory of gpunn sweep --save checkpoints ({first}"
            f"{', ...' if len(checkpoints) > 1 else ''}, one per ensemble); {todo}")
