"""The data options of ``gpunn train`` and ``gpunn sweep``: your own files (``--data``), and (train only)
streaming a synthetic task that would not fit in memory (``--stream``). Builds a gpunn.data source, or None for the in-memory path."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from ..checks import PARQUET_SUFFIXES
from ..csvtext import joined_columns, named_twice, split_columns, tab_separated_hint
from ..data.sources import SMALLEST_PIECE, piece_cut
from ..datasets import CHUNK_ROWS
from ..hints import folding, shell_word
from .common import counted, file_path, number, positive

VALIDATION_FRACTION = 0.1  # as the in-memory path holds out 10% of the rows
WINDOW = 16  # --window's default
COMFORT = 0.5  # materialize only when data, its shuffled copy and the model take at most this share of free memory
# a stream's bookkeeping per chunk in host memory (its chunk tables and epoch plans: README's "about 70 bytes"; a
# train process's RSS grew by 63-73 bytes a chunk from 10^10 to 10^12 rows, 2026-12-02)
CHUNK_BOOKKEEPING_BYTES = 70


STREAM_CHOICES = ("auto", "on", "off")  # --stream

def feature_count_or_names(text):
    """``--features``: a count (synthetic tasks; a whole number in any spelling the other options take,
    10, 1_0 or 1e1) or comma-separated column names (a --data table; column_names')."""
    text = text.strip()
    try:
        number(text, int)
    except argparse.ArgumentTypeError:
        pass  # not a whole number: column names
    else:
        return positive(int)(text)
    names = column_names(text)
    if not names:
        raise argparse.ArgumentTypeError(f"--features takes a count or column names, got {text!r}")
    return names


feature_count_or_names.toml_types = (int, str)  # features = 4 or features = "a,b" (a list of names: gpunn.config)


COLUMNS_HELP = ("a name holding a comma, a double quote or spaces of its own goes in double quotes, as a CSV header "
                "writes it: '\"a,b\",c'")


def column_names(text) -> list:
    """The column names of an option's value (--features, --target): comma-separated, a name with a comma in
    double quotes (gpunn.csvtext.split_columns)."""
    try:
        names = split_columns(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; {COLUMNS_HELP}") from None
    if named_twice(names):
        raise argparse.ArgumentTypeError(f"{text!r} {named_twice(names)}; name each column once")
    return names


def column_list_text(text) -> str:
    """--target's value, as written (kept so: runs record it, and --json writes it), once it reads as names: one at
    least (an empty value, --target "" or ",", was taken as no --target, and refused listing the table's columns)."""
    if not column_names(text):
        raise argparse.ArgumentTypeError(f"--target takes column names, got {text!r} (no name in it)")
    return text


def column_name(text) -> str:
    """--weight's value: a column's name, any text but an empty one (--weight "" was refused in Python's words,
    "weight names one column of each row's weight, a str; got ''")."""
    if not text:
        raise argparse.ArgumentTypeError("expected a column's name, got ''")
    return text


def add_arguments(parser, standardize=True, stream=True) -> None:
    """The data options; ``standardize``/``stream``: with --standardize / --stream (gpunn sweep has no --stream)."""
    g = parser.add_argument_group("data beyond memory (gpunn.data)")
    task_options = ", ".join(["--task", "--rows", "--outputs", "--noise"] + ["--stream"] * stream) + " and a --features count"
    g.add_argument("--data", type=file_path, metavar="PATH", help="train on a file instead of a synthetic task: X.npy (with --targets "
                   "Y.npy), a .parquet file or a directory of them, or a .csv with a header (UTF-8, comma-separated, "
                   "true/false read as 1 and 0 as gpunn predict reads them; with --target); read "
                   "chunk by chunk, 10%% of the chunks held out for validation (a synthetic task's "
                   f"{task_options} are refused with it)")
    g.add_argument("--targets", type=file_path, metavar="Y.npy", help="the targets for --data X.npy: rows x outputs, or one column")
    g.add_argument("--target", metavar="COLUMNS", type=column_list_text,
                   help=f"target column(s) of a Parquet or CSV --data, comma-separated ({COLUMNS_HELP}); "
                   "--features names the feature columns (default: all the others)")
    g.add_argument("--weights", type=file_path, metavar="W.npy",
                   help="each row's weight in the loss for --data X.npy: a 1-D .npy file, one weight a row, 0 or more "
                        "(Python's sample_weight: the loss is sum w |a - y|^2 / sum w; the held-out tenth's weights "
                        "weigh its metrics); read once before training, to check and sum them")
    g.add_argument("--weight", metavar="COLUMN", type=column_name,
                   help="the column of each row's weight in the loss of a Parquet or CSV --data, as --weights (neither "
                        "a feature nor a target: the default features leave it out); a CSV file is parsed once more "
                        "before training, to check and sum its weights")
    if standardize:
        g.add_argument("--standardize", action="store_true", help="train on inputs and targets scaled to mean 0, "
                       "std 1 (statistics from one pass over the training rows before the first epoch, its progress "
                       "shown, kept in the model: predict takes raw inputs and returns targets in their units)")
    else:
        parser.set_defaults(standardize=False)
    if stream:
        g.add_argument("--stream", choices=STREAM_CHOICES, type=folding(STREAM_CHOICES, "stream"), default="auto",
                       help="synthetic task: generate it chunk by chunk on the device while training instead of "
                            "materializing every row, in any letter case (auto: stream when the rows would not fit "
                            "comfortably; "
                            "default: %(default)s); a stream holds out 10%% of its rows for validation as whole "
                            "pieces of its chunks, cut so that whichever pieces are drawn hold out 7.5-12.5%%, "
                            f"or none when pieces of {SMALLEST_PIECE:,} rows cannot (some --rows under 40,000)")
    else:
        parser.set_defaults(stream="off")
    held = ("rows held in memory are shuffled whole: with them --window is refused (--stream off), or said unused on "
            "the data: line (--stream auto, or a --config file)" if stream else
            "a synthetic task's rows are held in memory and shuffled whole: with one --window is refused, or said "
            "unused on the data: line where a --config file sets it")
    g.add_argument("--window", type=positive(int), default=WINDOW,
                   help="chunks whose rows are shuffled together, for --data" + (" and streams" if stream else "")
                        + " (default: %(default)s); a small file (under about 2 million rows, or 128 MiB of CSV)"
                        + (" or a stream" if stream else "") + f" of at most WINDOW x 65,536 rows is shuffled whole; {held}")


def unused_window(args) -> str:
    """What the data: line of a run holding its rows in memory adds when --window (on the command line, in a
    --config file or recorded by the run resumed) is not its default: that it goes unused, since such rows are
    shuffled whole every epoch. A note, not a refusal: --stream auto holds the rows in memory or streams them by
    the memory free, so a refusal would fail a command on one machine that runs on another (an explicit
    --stream off with --window is refused: refuse_idle_options)."""
    if args.window == WINDOW:
        return ""
    applies = "--stream on or --data" if getattr(args, "command", None) != "sweep" else "--data"
    return (f"; --window {args.window} unused: rows in memory are shuffled whole every epoch (it applies with "
            f"{applies})")


def counts_graph(args, backend) -> bool:
    """Whether a run's memory checks count a CUDA graph's buffers (preflight.train_memory's ``graph``): on a
    GPU, where the graph is the default, unless --no-graph turned it off."""
    return backend.is_gpu and getattr(args, "graph", None) is not False


def _check_files_there(args):
    """A resumed run's data files exist where its checkpoint recorded them (or where --data/--targets say),
    or the error says how to give their new place."""
    for option in ("data", "targets", "weights"):
        path = getattr(args, option, None)
        if path and not os.path.exists(path):
            weights = " and --weights" if getattr(args, "weights", None) else ""  # (a weighted .npy run's)
            raise ValueError(f"--{option} {path}: no such file; if the run's files have moved, give --data (and "
                             f"--targets{weights}) where they are now: the checkpoint checks that they hold the same "
                             "data")


def _check_config_paths(args):
    """A --config file's data and targets exist, or the refusal names the key and where its path was read from: the
    current directory, as the command line's paths are, not the file's (it said "t.csv: no such file", naming no
    file the user had typed)."""
    for key in ("data", "targets", "weights"):
        path = getattr(args, key, None)
        if path and key in getattr(args, "config_keys", ()) and not os.path.exists(path):
            from ..config import as_key

            where = "" if os.path.isabs(path) else (f" in {shell_word(os.getcwd())}, the directory the command runs in: a "
                                                    "config file's paths are read from there, as the command line's")
            raise ValueError(f"{shell_word(args.config)}: {as_key(key, path)}: no such file or directory{where}; give "
                             f"--{key} PATH, or the path in the file from there")


def _refuse_standard_input(args):
    """--data - or --targets - (a --config file's too), before any other check of them: training does not read
    standard input (gpunn predict's IN - is read once; every epoch reads the rows again). Only --data - said so: with
    --targets Y.npy it said '--targets goes with --data X.npy; for --data -, name the target column(s) with
    --target', --targets - '-: no such file (targets)', a --resume's 'no such file; if the run's files have moved',
    a config file's data = "-" 'no such file or directory in DIR'. A file named "-" in the directory the command runs
    in is read as targets (an .npy file whatever its name), and a directory so named as data (of Parquet files); as
    data a plain file so named is not (its kind is read from its suffix): said too, where --data - with --targets said
    '--targets goes with --data X.npy; for --data -, name the target column(s) with --target'."""
    for key in ("data", "targets"):
        named = os.path.exists("-")
        if getattr(args, key, None) != "-" or (named and (key == "targets" or os.path.isdir("-"))):
            continue
        said = f"--{key} -"
        if key in getattr(args, "config_keys", ()):
            from ..config import as_key

            said = f"{shell_word(args.config)}: {as_key(key, '-')}"
        also = (f". The file named - in {shell_word(os.getcwd())} (the directory the command runs in) has no suffix "
                "to read its kind by: rename it with its kind's (.csv, .parquet or .npy) and give that path"
                if named else "")
        raise ValueError(f"{said}: training does not read standard input, as every epoch reads the rows again (and a "
                         "--resume once more): save them to a file (.csv, .parquet, or an .npy pair with --targets) "
                         f"and give its path. gpunn predict MODEL - OUT reads standard input{also}")


# a .tsv file's source in Python, which --data's refusal of the name shows
TSV_SOURCE = "gpunn.data.csv(path, target, delimiter='\\t')"


def make_source(args, backend, ckpt=None):
    """(source, a line saying what was chosen) or (None, line) for the in-memory synthetic path. The caller closes
    the source (its files) when the command ends.

    A resumed run (``ckpt``) keeps the choice it was saved with, whatever memory is free now."""
    from .. import data

    saved = ((ckpt.training.get("source") or {}).get("kind") if ckpt else None)
    if saved in ("synthetic", "arrays") and args.stream == "auto":
        args.stream = "on" if saved == "synthetic" else "off"

    common = dict(seed=args.seed, window=args.window, standardize=args.standardize)
    if args.data:
        _refuse_standard_input(args)
        _check_config_paths(args)
        if ckpt is not None:
            _check_files_there(args)
        kind = os.path.splitext(args.data)[1].lower()
        cut = _saved_cut(ckpt)
        common["window"] = _saved_window(args, ckpt)
        _check_column_options(args, kind)
        if kind == ".npy":
            source = data.npy(args.data, args.targets, weights=getattr(args, "weights", None),
                              chunk_rows=cut.get("chunk_rows"), **common)
            _note_targets_are_inputs(args)
        elif kind in PARQUET_SUFFIXES or os.path.isdir(args.data):
            source = _table(data.parquet, args, chunk_rows=cut.get("chunk_rows"), **common)
        elif kind == ".csv":
            source = _table(data.csv, args, block_size=cut.get("block_size"), **common)
        elif not os.path.exists(args.data):  # a name mistyped (a directory's, `pq2`) is missing, not of an unknown type
            raise ValueError(f"--data {shell_word(args.data)}: no such file or directory")
        elif kind in (".gz", ".bz2", ".xz", ".zst"):
            raise ValueError(f"--data {shell_word(args.data)} is compressed ({kind}): decompress it first (gpunn reads .npy, "
                             ".parquet and .csv files uncompressed)")
        else:
            raise ValueError(f"--data {shell_word(args.data)}: unknown file type; use .npy (with --targets), .parquet or "
                             f".csv{tab_separated_hint(args.data, TSV_SOURCE)}")
        try:  # the caller closes the source it gets; one refused here is closed here
            with warnings.catch_warnings(record=True) as notes:  # a note on the share held out follows a refusal
                _hold_out(source)
            _check_held_out(args, source, ckpt)
        except BaseException:
            source.close()
            raise
        _show_notes(notes, args, source, ckpt)
        weighed = (f", each row weighed by {shell_word(args.weights)}" if getattr(args, "weights", None) else
                   f", each row weighed by column {shell_word(args.weight)}" if getattr(args, "weight", None) else "")
        return source, f"data: {shell_word(args.data)}, {counted(source.rows, 'training row')} in " \
                       f"{counted(len(source.train_chunks), 'chunk')}, {source.validation_rows:,} validation rows " \
                       f"(whole chunks), read chunk by chunk{weighed}"
    from .. import preflight

    itemsize = 8 if args.dtype == "float64" else 4
    sizes = [args.features, *args.hidden, args.outputs]
    graph = counts_graph(args, backend)
    if ckpt is None:  # before choosing to stream: no choice of rows helps a network that cannot fit
        preflight.check_model_memory(sizes, args.batch_size, itemsize, backend, graph=graph, rows=args.rows)
    need = sum(preflight.train_memory(args.rows, args.features, args.outputs, itemsize, sizes, args.batch_size,
                                      graph=graph).values())  # the rows, their shuffled copy, the model
    free = preflight.available_bytes(backend)
    fits = free is None or need <= COMFORT * free
    if args.stream == "off" or (args.stream == "auto" and fits):
        room = "" if free is None else f", {preflight.size_text(free)} free{preflight.share_words(backend)}"
        return None, (f"data: {args.rows:,} rows materialized on {backend.device} ({preflight.size_text(need)} with "
                      f"their shuffled copy and the model{room}){unused_window(args)}")
    # a resumed stream is cut as it was saved (make's chunks, when it recorded no chunk_rows)
    cut = _saved_cut(ckpt).get("chunk_rows", CHUNK_ROWS) if ckpt else None
    _check_bookkeeping(args.rows, cut or piece_cut(args.rows, VALIDATION_FRACTION)[0])
    source = data.synthetic(args.task, args.rows, args.features, args.outputs, noise=args.noise, chunk_rows=cut,
                            validation_fraction=_stream_fraction(args.rows, ckpt), **common)
    why = "--stream on" if args.stream == "on" else (f"{preflight.size_text(need)} would not fit comfortably in "
                                                      f"{preflight.size_text(free)} free{preflight.share_words(backend)}")
    held = (f"{len(source.validation_chunks):,} of {_chunk_counts(source.chunk_sizes)}" if source.validation_rows else
            f"a stream holds out whole pieces of {SMALLEST_PIECE:,} rows at least, which cannot hold out about "
            f"{VALIDATION_FRACTION:.0%} of {args.rows:,} rows: none" if not ckpt else "none, as the run was saved")
    return source, (f"data: streaming {args.task} from {backend.device}, {source.rows:,} training rows, "
                    f"{source.validation_rows:,} validation rows ({held}) ({why})")


def _check_bookkeeping(rows, piece_rows):
    """A stream whose chunks' bookkeeping alone would not fit in the host's free memory is refused before it is made:
    --rows 1e13 (153 million chunks, some 10 GiB) failed after 27 s with NumPy's "Unable to allocate 1.14 GiB for an
    array with shape (152587892,)" under a 4 GB limit, or would swap a laptop, and 1e15 said 114 GiB so."""
    from .. import preflight

    chunks = -(-rows // piece_rows)
    need, free = chunks * CHUNK_BOOKKEEPING_BYTES, preflight.host_share_bytes()  # (each rank's own bookkeeping)
    if free is not None and need > free:
        raise preflight.PreflightError(
            f"--rows {rows:,} streams {chunks:,} chunks of {piece_rows:,} rows, whose bookkeeping alone (about "
            f"{CHUNK_BOOKKEEPING_BYTES} bytes a chunk, in host memory) needs about {preflight.size_text(need)}, and "
            f"the host has {preflight.size_text(free)} free{preflight.share_words()}; stream at most about {_fitting_rows(free, piece_rows):,} "
            "rows here")


def _fitting_rows(free, piece_rows) -> int:
    """The rows whose chunks' bookkeeping fits in ``free`` bytes, to two significant digits (not over them)."""
    rows = free // CHUNK_BOOKKEEPING_BYTES * piece_rows
    digits = max(len(str(rows)) - 2, 0)
    return rows // 10 ** digits * 10 ** digits


def standardize_first(source, backend, dtype, verbose) -> None:
    """--standardize's statistics pass over ``source``'s training rows, bound to the model's ``backend`` and
    ``dtype``, said before it starts and shown as it runs (``verbose``: fit's, from --progress and --quiet). fit would
    make it as it binds the source, before its first batch and its progress bar: --data X.npy of 3 GB said nothing
    for a minute, and a stream of 10^10 rows on a laptop's CPU would say nothing for hours."""
    import time

    from ..training.progress import PassProgress, interval_text, lines_for

    print(f"standardize: each column's mean and spread, from one pass over the {source.rows:,} training rows before "
          "the first epoch", flush=True)
    t0 = time.perf_counter()
    wanted, source.standardize = source.standardize, False
    try:  # bound without the pass, which runs below with its progress (fit then finds the statistics made)
        source.bind(backend, dtype)
    finally:
        source.standardize = wanted
    progress = PassProgress("standardize", source.rows, lines=lines_for(verbose)) if verbose else None
    try:
        source.standardizer = source.compute_standardizer(progress)
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - t0  # (a pass of hours in days and hours, as the progress says it)
    took = f"{seconds:.1f}s" if seconds < 60 else interval_text(seconds)
    print(f"standardize: statistics of {source.rows:,} rows in {took}", flush=True)


def _chunk_counts(sizes) -> str:
    """How many chunks of how many rows a synthetic cut has: "16 chunks of 8,192 rows", or where its last piece
    is another size (taking its make chunk's remainder, or a short last chunk) "17 chunks: 16 of 8,192 rows
    and one of 8,928"."""
    first, last = sizes[:-1], int(sizes[-1])
    if not len(first) or last == first[0]:
        return f"{len(sizes):,} chunks of {last:,} rows"
    return f"{len(sizes):,} chunks: {len(first):,} of {int(first[0]):,} rows and one of {last:,}"


TASK_OPTIONS = ("task", "rows", "outputs", "noise", "stream")  # what a synthetic task is made of


def json_config(args) -> dict:
    """The options as ``--json`` records them: with --data, without the synthetic task's (a file replaces the
    task; its --features are the column names, if any were given). A job's ``--save PATH --resume PATH`` records
    --resume PATH at every start: its first (PATH not yet written, the run started afresh: gpunn.cli) recorded
    resume null and a starts_in_place key, which its later starts, the same command, did not."""
    unused = {"func", "debug", "config_keys", "starts_in_place"}
    if args.data:
        unused.update(TASK_OPTIONS)
        if not isinstance(args.features, list):
            unused.add("features")
    config = {k: v for k, v in vars(args).items() if k not in unused}
    if getattr(args, "starts_in_place", None):
        config["resume"] = args.starts_in_place
    return config


def _check_column_options(args, kind):
    """--targets goes with an .npy pair, --target and --features names with a table: an option the
    file's kind would ignore is refused rather than dropped."""
    if kind == ".npy":
        if not args.targets:
            target = args.target if isinstance(args.target, str) else None  # --target, of a table's columns
            meant = f": did you mean --targets {shell_word(target)}?" if target and target.lower().endswith(".npy") else ""
            raise ValueError(f"--data {shell_word(args.data)} needs --targets Y.npy"
                             + (f"; --target names a Parquet or CSV table's columns{meant}" if target else ""))
        for option, value in (("--features", _feature_names(args)), ("--target", args.target)):
            if value:
                raise ValueError(f"{option} {joined_columns(value) if isinstance(value, list) else value} names columns of "
                                 "a Parquet or CSV table; --data X.npy trains on every column of X.npy, with "
                                 "--targets Y.npy as the targets")
    elif args.targets:
        raise ValueError(f"--targets goes with --data X.npy; for --data {shell_word(args.data)}, name the target column(s) with "
                         "--target")
    weights_mismatch(args, "--data", args.data)


def weights_mismatch(args, option, path) -> None:
    """--weights W.npy goes with an .npy file (``path``, given as ``option``: train's --data, predict's IN), --weight
    COLUMN with a table: the other is refused, in the same words for gpunn train, sweep and predict."""
    if path.lower().endswith(".npy") and getattr(args, "weight", None):
        raise ValueError(f"--weight {shell_word(args.weight)} names a column of a Parquet or CSV table; for {option} "
                         "X.npy give each row's weight in a file of its own, --weights W.npy")
    if not path.lower().endswith(".npy") and getattr(args, "weights", None):
        raise ValueError(f"--weights goes with {option} X.npy; for {option} {shell_word(path)}, name the weight "
                         "column with --weight")


def _saved_cut(ckpt) -> dict:
    """How a resumed run's file was cut into chunks (chunk_rows, block_size), so that it is cut the
    same way whatever the default is now; {} for a new run."""
    saved = (ckpt.training.get("source") or {}) if ckpt else {}
    return {k: saved[k] for k in ("chunk_rows", "block_size") if isinstance(saved.get(k), int)}


def _saved_window(args, ckpt) -> int:
    """The window a resumed file run's source is rebuilt with: --window, or the recorded one where it is larger.
    gpunn.data shuffles a small file cut small by default whole (its window widened to all its chunks); rebuilt
    with the recorded cut (_saved_cut) after the default cut changed, that cut no longer counts as the default
    one, and the resume was refused ('window was 17, now 16')."""
    saved = ((ckpt.training.get("source") or {}).get("window") if ckpt else None)
    return max(args.window, saved) if isinstance(saved, int) else args.window


def _hold_out(source):
    """10% of a file's chunks for validation."""
    if len(source.chunk_sizes) >= 2:
        source.hold_out(VALIDATION_FRACTION)


def _check_held_out(args, source, ckpt):
    """A file's held-out tenth must be 2 rows at least, for R²: a file of 1 row (one chunk, none held out) is
    refused as one whose tenth is 1 row is, in the command's terms (the library's refusal of 1 row says
    validation_fraction, which no option sets). A resumed run is cut as it was saved: one saved in one chunk, none
    held out (a small CSV file's 1 KiB blocks, before they were cut smaller), resumes so."""
    held = source.validation_rows
    if held == 1 or (held == 0 and ckpt is None):
        what = (f"the tenth of its chunks held out for validation is 1 row of {source.rows + held:,}" if held else
                f"{counted(source.rows, 'row')} in one chunk, none of which can be held out for validation")
        raise ValueError(f"--data {shell_word(args.data)}: {what}, and R² needs 2: use a file with more rows (20 at least)")


def _note_targets_are_inputs(args):
    """A note where --targets names the --data file (a slip of the keyboard, or an autoencoder asked for): the
    model learns to give back its inputs, which trains well (held-out r2 near 1) and was said as any run."""
    from ..distributed import launched_rank
    from ..preflight import same_file

    if same_file(args.data, args.targets) and launched_rank() == 0:  # (under mpiexec rank 0 says it, once)
        print(f"note: --targets {shell_word(args.targets)} is the --data file: the model learns to give back its inputs "
              "(give the targets' own file, if that was not meant)", file=sys.stderr, flush=True)


def _show_notes(notes, args, source, ckpt):
    """The warnings hold_out recorded, shown as they would have been (the filters applied when they were recorded).
    The library's note on the share held out says validation_fraction and how to cut a file in Python (block_size,
    chunk_rows, validation_data), which no option of the command sets: it says the command's tenth here, and what
    a command-line user can do."""
    from ..data import HeldOutShareWarning

    for note in notes:
        message = note.message
        if issubclass(note.category, HeldOutShareWarning):
            held, rows = source.validation_rows, source.rows + source.validation_rows
            what = (f"--data {shell_word(args.data)}: the tenth of its chunks held out for validation is "
                    f"{len(source.validation_chunks)} of {len(source.chunk_sizes)} whole chunks, {held:,} of {rows:,} "
                    f"rows ({held / rows:.0%})")
            message = HeldOutShareWarning(f"{what}, as the run was cut when it was saved" if ckpt is not None else
                                          f"{what}; for a share nearer a tenth, give the rows as an .npy pair (--data "
                                          "X.npy --targets Y.npy), cut in chunks of equal rows")
        warnings.showwarning(message, note.category, note.filename, note.lineno, note.file, note.line)


def _stream_fraction(rows, ckpt=None):
    """A stream's validation_fraction: 10% (gpunn.data.SyntheticSource cuts its chunks into pieces that hold
    out within a quarter of that), or none where its smallest pieces cannot (a few thousand rows; some under
    40,000: held out, they would be far more or less than asked); a resumed stream holds out as it was saved
    (before pieces, none under 131,072 rows)."""
    saved = (ckpt.training.get("source") or {}) if ckpt else {}
    if "validation_fraction" in saved:
        return saved["validation_fraction"]
    return VALIDATION_FRACTION if piece_cut(rows, VALIDATION_FRACTION)[1] else None


def _table(make, args, **options):
    """data.parquet or data.csv on --data, --target and --features; without --target, the refusal lists the
    table's columns to choose from."""
    from ..data.table_columns import NoTarget, columns_are

    try:
        return make(args.data, args.target or None, _feature_names(args), weight=getattr(args, "weight", None),
                    **options)
    except NoTarget as exc:
        raise ValueError(f"--data {shell_word(args.data)}: name the target column(s) with --target; {columns_are(exc.columns)}"
                         f"{exc.hint}") from None


def _feature_names(args):
    return args.features if isinstance(args.features, list) else None
