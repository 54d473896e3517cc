"""Checks a command makes before its first expensive step, so a run is never lost to a late one.

* Output paths (``--save``, ``--json``, ``--plot``, predict's OUT): the directory exists and is
  writable, the path is not a directory, not a file the command reads (the model being
  predicted with), not another output of the same command, and not a foreign file that
  ``--save`` would clobber.
* Input files by content, not by name: ``.npy``, ``.npz``/zip, pickle, text (CSV), empty.
* Memory: what the data, its shuffled copy and the model need, against what is free on the
  host (``MemAvailable``, or a container's or job's memory cgroup's room where less) and on the GPU, with what
  would fit instead.

Every failure is a :class:`PreflightError` (a ``ValueError``) whose message is one line.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import zipfile

import numpy

from .checks import PARQUET_SUFFIXES
from .csvtext import (csv_column, csv_first_foreign, csv_first_text, csv_has_header, csv_line, csv_names,
                      csv_values, delimiter_hint, first_block_schema, header_lines, is_number, not_a_boolean,
                      not_a_number, pyarrow_csv_booleans, read_as, width_refused, wrong_width)
from .hints import shell_word

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first file, or an empty zip's end record (numpy.savez of nothing)
CHECKPOINT_META = "gpunn_meta"  # the member every gpunn checkpoint holds (gpunn.checkpoint.META)


class PreflightError(ValueError):
    """A command would fail, or lose work, if it started: said before anything is done."""


# ---- paths -------------------------------------------------------------------------------
def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file (by their resolved names where one does not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def writes_in_place(path) -> bool:
    """Whether ``path`` names something that a rename must not replace, only write into: a device
    (/dev/null), a pipe or socket (a named pipe, bash's ``>(jq .)``), a terminal, or a file reached through
    /proc (/dev/stdout, /dev/fd/3). Renaming a temp file over /dev/null replaces the device with a file."""
    path = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return not os.path.isdir(path)
        if os.path.islink(path) and os.readlink(path).startswith("/proc/"):  # /dev/stdout, /dev/stderr
            return True
    except OSError:  # nothing there yet (or unreadable): an ordinary new file
        return False
    return os.path.realpath(os.path.dirname(os.path.abspath(path))).startswith("/proc/")  # /dev/fd/N


def in_place_kind(path) -> str:
    """What a :func:`writes_in_place` path is, as a message names it: "a named pipe", "a socket", "a device" (a
    terminal too), else "written in place" (a file reached through /proc: /dev/stdout, /dev/fd/3)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "written in place"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "written in place"


def directory_named(path: str) -> str | None:
    """How ``path`` names a directory where a file's name is wanted, as a refusal says it: "is a directory", "names a
    directory (it ends in /)" (one not made yet: its parent passes, and a write failed only at its end); None for
    a file's name. check_output's words and every atomic write's (gpunn.atomic)."""
    if os.path.isdir(path):
        return "is a directory"
    if path.endswith(("/", os.sep)):
        return f"names a directory (it ends in {path[-1]})"
    return None


def check_output(path, option, *, reads=(), suffixes=None, other_suffix_hint="") -> str:
    """Refuse an output path the command could not write, or must not overwrite.

    ``reads``: (path, what) pairs the command reads; writing over one of them is refused.
    ``suffixes``: the accepted file name endings (lower case), or None for any; ``other_suffix_hint`` ends the
    refusal of a name that ends in none of them (gpunn predict's OUT o.tsv: how to get a tab-separated file).
    """
    path = os.fsdecode(path)  # (a bytes name too: ModelCheckpoint's)
    if not path:
        raise PreflightError(f"{option} needs a file name")
    named = directory_named(path)
    if named:
        raise PreflightError(f"{option} {shell_word(path)} {named}; give a file name")
    for other, what in reads:
        if other and os.path.exists(path) and same_file(path, other):
            raise PreflightError(f"{option} {shell_word(path)} is the {what} this command reads; choose another output file")
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        *others, last = suffixes  # ".png, .pdf or .svg" (it said ".png or .pdf or .svg")
        ends = f"{', '.join(others)} or {last}" if others else last
        raise PreflightError(f"{option} {shell_word(path)}: the name must end in {ends}{other_suffix_hint}")
    if writes_in_place(path):  # /dev/null, a pipe, /dev/stdout: written into, never renamed over
        if not os.access(path, os.W_OK):
            raise PreflightError(f"{option} {shell_word(path)} is not writable")
        return path
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PreflightError(f"{option} {shell_word(path)}: {no_directory(directory)}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PreflightError(f"{option} {shell_word(path)}: directory {shell_word(directory)} is not writable")
    try:  # os.access asks the permission bits, which root passes: sysfs, an NFS export that squashes root, a FUSE
        # mount refuse the file itself, and the write failed after the work ("[Errno 13] cannot write /sys/o.npy").
        # A file without a name (O_TMPFILE; else one made and removed at once) finds out, leaving nothing behind.
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise PreflightError(f"{option} {shell_word(path)}: directory {shell_word(directory)} is not writable "
                             f"(making a file there: {exc.strerror or exc})") from None
    return path


def no_directory(directory) -> str:
    """Why ``directory`` (not one) holds no file, in a refusal's words: "directory D does not exist", or, where D or a
    folder above it is a file, "F is a file, not a directory" (it said D "does not exist" of a path under a file). A
    link to nothing (a scratch disk not mounted) does not exist: it was called a file."""
    above = directory
    while not os.path.exists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    if os.path.exists(above) and not os.path.isdir(above):
        return f"{shell_word(above)} is a file, not a directory"
    return f"directory {shell_word(directory)} does not exist"


def check_checkpoint_output(path, option, *, reads=()) -> str:
    """:func:`check_output` for a checkpoint (gpunn train --save, gpunn sweep --save-best): a file already
    there that is not one is someone's data, and is not replaced (:func:`not_a_checkpoint`: gpunn.save's rule);
    a name that says another kind of file (:func:`misnamed_checkpoint`) is refused."""
    check_output(path, option, reads=reads)
    misnamed = misnamed_checkpoint(path)
    if misnamed:
        raise PreflightError(f"{option} {shell_word(path)}: {misnamed}")
    refusal = foreign_file(path)
    if refusal:
        raise PreflightError(f"{option} {shell_word(path)} {refusal}")
    return path


def misnamed_checkpoint(path) -> str:
    """Why a command's checkpoint (an .npz archive) must not be written under ``path``, whose suffix names a kind of
    file gpunn reads or writes as something else (a data file, a report, a config, a plot); "" where it may. A
    model saved as best.csv was taken for data by its name (``gpunn train best.csv``: "a data file follows
    --data"; ``gpunn train --resume best.csv``: "it is a data file"), and by any other tool."""
    return misnamed(path, "a gpunn checkpoint (an .npz archive)", ".npz")


def misnamed(path, writes: str, own: str) -> str:
    """Why an output that writes ``writes``, named by suffix ``own``, must not be named ``path``, whose suffix names
    another kind of file gpunn reads or writes (NAMED_FILES); "" where it may (its own suffix, or one that names no
    kind: run.txt). A checkpoint named best.csv (:func:`misnamed_checkpoint`) or a --csv report named out.json
    would be read by that name, by gpunn and by any other tool."""
    name = os.fspath(path)
    suffix = os.path.splitext(name)[1]
    kind = None if suffix.lower() == own else next(
        (what for suffixes, what in NAMED_FILES if suffix.lower() in suffixes), None)
    if kind is None:
        return ""
    return (f"a {suffix} name says {kind}, but this writes {writes}, which gpunn and other tools would then read as "
            f"{kind}: name it {own}, e.g. {shell_word(name[:-len(suffix)] + own)}")


def foreign_file(path) -> str:
    """Why a checkpoint must not be written over the existing file ``path`` (:func:`not_a_checkpoint`), in the words
    of every writer of a checkpoint (gpunn.save, ModelCheckpoint, the commands' --save), or "" where it may be."""
    what = not_a_checkpoint(path)
    return f"exists and is not a gpunn checkpoint ({what}); refusing to overwrite it: choose another name (.npz), " \
        "or remove the file first" if what else ""


def not_a_checkpoint(path) -> str:
    """What the existing file ``path`` is, where a checkpoint written there would replace someone's data ("text",
    "a .npy array", "an .npz archive of the arrays X, Y": archive_words); "" where it may be replaced: no file, a gpunn
    checkpoint, an empty file (made by ``tempfile.NamedTemporaryFile`` to be written), or a zip that does not open (as
    any .npz/zip was before: a damaged checkpoint, most likely). The rule of ``gpunn.save``, ``ModelCheckpoint``,
    ``gpunn train --save`` and ``sweep --save-best`` alike (gpunn.checkpoint.check_replaceable,
    :func:`check_checkpoint_output`)."""
    if not os.path.isfile(path):
        return ""
    kind = file_kind(path)
    if kind == "zip":  # a checkpoint, or numpy.savez's arrays (X.npz holding X and Y), which are someone's data
        members = _zip_members(path)
        return archive_words(members) if members is not None else ""
    if kind == "empty":
        return ""
    return kind_words(kind)


def _zip_members(path) -> list | None:
    """The file names in the zip archive ``path``, or None where it does not open, or a name in its directory is
    damaged (misnamed_member: a checkpoint's metadata member so damaged named it numpy.savez's arrays)."""
    try:
        with zipfile.ZipFile(os.fsdecode(path)) as archive:  # (a bytes name: ZipFile takes bytes as a file)
            return archive.namelist() if misnamed_member(archive) is None else None
    except (OSError, zipfile.BadZipFile):
        return None


def misnamed_member(archive: zipfile.ZipFile, infos=None) -> zipfile.BadZipFile | None:
    """zipfile's refusal of the first member of ``archive`` (of its ``infos``) whose own header bears another name
    than the zip's directory gives it, one of the two damaged; None where none does. Only their headers are read;
    zipfile's other refusals of them (an encrypted member of a foreign zip file) are left to the checks after."""
    for info in archive.infolist() if infos is None else infos:
        try:
            archive.open(info).close()
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
            if str(exc).startswith("File name in directory "):
                return exc
    return None


def archive_words(members) -> str:
    """What a zip archive of ``members`` (its file names) is where a gpunn checkpoint is looked for: "" for one (it
    holds the metadata member), "an .npz archive of the arrays X, Y" (numpy.savez's), "a zip archive of notes.txt".
    It said "no gpunn_meta member", the name of a checkpoint's part."""
    if f"{CHECKPOINT_META}.npy" in members:
        return ""
    arrays = [m[:-len(".npy")] for m in members if m.endswith(".npy")]
    named = arrays or list(members)
    shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    if arrays:
        return f"an .npz archive of the array{'s' * (len(arrays) > 1)} {shown}"
    if torch_saved(members):
        return "a PyTorch file, torch.save's"
    return f"a zip archive of {shown}" if named else "an empty zip archive"


def torch_saved(members) -> bool:
    """Whether a zip archive of ``members`` is torch.save's: NAME/data.pkl beside NAME/version (before torch 2.1)
    or NAME/.format_version (a state dict a porter gave gpunn.load, which said "a zip archive of net/data.pkl, ..."
    alone)."""
    tops = {m[:-len("/data.pkl")] for m in members if m.endswith("/data.pkl")}
    return any(f"{top}/version" in members or f"{top}/.format_version" in members for top in tops)


DATA_SUFFIXES = (".npy", ".csv", *PARQUET_SUFFIXES)  # the data files --data reads, by their names
OTHER_FILES = ((DATA_SUFFIXES, "a data file"), ((".json",), "a JSON report"), ((".toml",), "a config file"),
               ((".png", ".pdf", ".svg"), "a plot"))  # what a name says of a file that no checkpoint should have
NAMED_FILES = (*OTHER_FILES, ((".npz",), "a gpunn checkpoint"))  # and of a file no report should be


def misplaced(path, option) -> str:
    """What the file ``path``, given to ``option`` (--config: a run's TOML; --resume: a checkpoint) but not of that
    kind, is and where it goes: a data file to --data, numpy.savez's arrays as .npy files, a checkpoint to --resume
    (the config --save wrote beside it to --config), a compressed file decompressed; "" where the reader's own words
    say more (text given to --config: TOML's complaint says where it stopped; for --resume a run's .toml config, a
    pickle, text or binary, which the checkpoint reader names). --config run.npz said "'utf-8' codec can't decode
    byte 0xb2 in position 16", --resume t.csv "not an .npz/zip file"."""
    kind, name = file_kind(path), shell_word(path)
    if os.fspath(path).lower().endswith(DATA_SUFFIXES):
        return f"it is a data file ({data_file_words(path, kind)}), which follows --data: --data {name}"
    if kind == "compressed":
        return f"it is {compression(path)}-compressed: decompress it first"
    if kind == "zip":
        members = _zip_members(path)
        what = archive_words(members) if members is not None else ""  # "": a checkpoint (or a damaged zip)
        if what and any(m.endswith(".npy") for m in members):  # numpy.savez's arrays
            return (f"it is {what}; for training data save its arrays as .npy files (numpy.save) and give them to "
                    "--data and --targets")
        if option == "--resume":  # a checkpoint, or another zip, whose files the checkpoint reader names
            return ""
        if what:
            return f"it is {what}, not text"
        beside = f"{os.fspath(path)}.toml"
        return ("it is an .npz/zip archive: a checkpoint is continued with --resume"
                + (f", and {shell_word(beside)} beside it is its run's config" if os.path.isfile(beside) else ""))
    return "" if option == "--resume" or kind in ("text", "text-8bit") else f"it is {kind_words(kind)}, not text"


def data_file_words(path, kind) -> str:
    """A data file's kind in a message, by its bytes and its name: "a .npy array", "CSV text", "a Parquet file"."""
    lower = os.fspath(path).lower()
    if kind in ("text", "text-8bit") and lower.endswith(".csv"):
        return "CSV text"
    if kind == "binary" and lower.endswith(PARQUET_SUFFIXES):
        return "a Parquet file"
    return kind_words(kind)


REPORT_STARTS = {"--csv": ("epoch,", "member,"),  # gpunn train's history (cli.train.history_csv), sweep's table
                 "--json": ("{",)}  # a JSON object: train's, sweep's and bench's reports


def not_a_report(path, option) -> str:
    """What the existing file ``path`` is, where the report ``option`` (--json, --csv) written there would replace
    someone's data: "a gpunn checkpoint", "a .npy array", "a CSV file whose first line is 'a,b,y'"; "" where it may be
    replaced: no file, a device or pipe, an empty file, or a report such an option wrote (its first line begins as
    REPORT_STARTS says). gpunn train --csv t.csv, taken for a CSV input, wrote the run's history over the data."""
    if not os.path.isfile(path) or writes_in_place(path):
        return ""
    kind = file_kind(path)
    if kind == "empty":
        return ""
    if kind == "zip":
        return not_a_checkpoint(path) or "a gpunn checkpoint"
    if kind != "text":
        return kind_words(kind)
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline(200).strip()
    if first.startswith(REPORT_STARTS[option]):
        return ""
    return f"{'a CSV file' if path.lower().endswith('.csv') else 'text'} whose first line is {first[:60]!r}"


def inputs_read(args, resume=True) -> list:
    """(path, what) for the files a train or sweep run reads (its --resume checkpoint unless ``resume`` is
    False, --data, --targets): what its outputs must not overwrite."""
    named = ((("resume", "checkpoint being resumed"),) if resume else ()) + (("data", "--data file"),
                                                                         ("targets", "--targets file"))
    return [(getattr(args, dest), what) for dest, what in named if getattr(args, dest, None)]


def is_stdout(path) -> bool:
    """``path`` is ``-`` or names this process's standard output (/dev/stdout, /dev/fd/1, or the file or
    pipe stdout already goes to)."""
    if not path:
        return False
    if path == "-":
        return True
    try:
        here, out = os.stat(path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (here.st_dev, here.st_ino) == (out.st_dev, out.st_ino)


def check_distinct(outputs) -> None:
    """Refuse two outputs of one command naming the same file, standard output included (``--json /dev/stdout
    --csv -`` wrote the JSON and the CSV one after the other into it). ``outputs``: (option, path) pairs."""
    seen = {}
    for option, path in outputs:
        if not path:
            continue
        key = "-" if is_stdout(path) else os.path.realpath(path)
        if key in seen:
            named = "standard output" if key == "-" else path
            raise PreflightError(f"{seen[key]} and {option} both name {named}; give each its own file")
        seen[key] = option


# ---- input files by content ----------------------------------------------------------------
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def compression(path) -> str | None:
    """'gzip', 'bzip2', 'xz' or 'zstd' for a file compressed so, from its first bytes; else None."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return next((name for magic, name in COMPRESSED.items() if head.startswith(magic)), None)


NOT_UTF8 = ("text, but not UTF-8 (Windows-1252 or Latin-1, as Excel's \"CSV (Comma delimited)\" writes): gpunn "
            "reads CSV files as UTF-8; save it as \"CSV UTF-8\", or convert it (iconv -f cp1252 -t utf-8)")


KIND_WINDOW = 4096  # the bytes file_kind reads
# A protocol-0 or 1 pickle's first global ("cnumpy._core.multiarray\n_reconstruct\n" of an array) and the memo or
# mark after it: a one-column CSV has the first two lines' shape ("count\n3\n") but no such third
PICKLE_GLOBAL = re.compile(rb"c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n(?:p\d+\n|[qr()])")


def file_kind(path) -> str:
    """'npy', 'zip' (.npz and gpunn checkpoints), 'pickle' (protocol 2 and later; 0 and 1 by a dict, a list or a
    global first: :data:`PICKLE_GLOBAL`), 'compressed', 'text', 'text-8bit' (text in an 8-bit encoding, not UTF-8:
    :data:`NOT_UTF8`), 'empty' or 'binary', from the bytes."""
    with open(path, "rb") as fh:
        head = fh.read(KIND_WINDOW)
        cut = bool(fh.read(1))  # the file goes on past the window, which may then end inside a character
    if not head:
        return "empty"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if any(head.startswith(magic) for magic in COMPRESSED):
        return "compressed"
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q") or PICKLE_GLOBAL.match(head):
        return "pickle"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            # a multi-byte character cut by the window (a Latin-1 "é" in a file's last bytes, or before a line
            # end, is no cut character)
            if cut and exc.reason == "unexpected end of data":
                return "text"
        try:  # printable in Windows-1252 (a superset of Latin-1's printable characters): "café,prix\r\n1,2"
            if all(ch >= " " or ch in "\t\r\n" for ch in head.decode("cp1252")):
                return "text-8bit"
        except UnicodeDecodeError:
            pass
    return "binary"


def not_csv_text(kind) -> str:
    """Why a file named as CSV whose bytes are of ``kind`` (file_kind's; not text) is not one, in the words of every
    gpunn reader (training, gpunn predict read whole or streamed): "not a CSV file (binary, not text)"."""
    return f"not a CSV file ({kind_words(kind)}, not text)"


def kind_words(kind) -> str:
    """A file's kind (file_kind's) in a message: "a .npy array", "an .npz/zip archive", "a Python pickle", "text"
    (in an 8-bit encoding too), "compressed", "binary", "empty"."""
    return {"npy": "a .npy array", "zip": "an .npz/zip archive", "pickle": "a Python pickle",
            "text-8bit": "text"}.get(kind, kind)


_ARRAY_NAMES = {"the targets": "Y", "the weights": "w"}  # the arrays README names so; the others' X


def not_npy(path, kind, what) -> str:
    """Why the file ``path``, named or taken as a .npy array of ``what`` ("the inputs", "the features"...) but whose
    bytes are of ``kind`` (file_kind's, not "npy"), is not one, in the words of every gpunn reader of .npy files
    (gpunn predict read whole or streamed, training's gpunn.data.npy), to follow the path: " is a Python pickle;
    gpunn never unpickles: ...". Training and the streamed read said NumPy's "not a readable .npy file (the magic
    string is not correct; expected b'\\x93NUMPY', got b'\\x80\\x04...')" of each."""
    saved = f"numpy.save(path, {_ARRAY_NAMES.get(what, 'X')})"  # (the weights: w, as sample_weight=w names them)
    if kind == "zip":
        return f" is an .npz/zip archive (a checkpoint?), not one array; save {what} with {saved}"
    if kind == "pickle":
        return f" is a Python pickle; gpunn never unpickles: save {what} with numpy.save"
    if kind == "compressed":
        return f" is {compression(path)}-compressed: decompress it first"
    if kind == "empty":
        return " is empty (0 bytes), not a .npy array"
    if kind in ("text", "text-8bit"):
        return f" is text, not a .npy array (no .npy header): a CSV file? save {what} with {saved}"
    return ": not a .npy array (no .npy header), and binary"


def _loadtxt_problem(exc, path, kinds=()) -> str:
    """numpy.loadtxt's complaint about the CSV file ``path`` in gpunn's words, after the path: the line an editor
    shows (from 1, the header's counted: csv_line) and the column's name, as gpunn's other CSV errors say where.
    A value that is not a number reads as the streamed readers say it (csvtext.not_a_number): "line 3: column
    'b': 'oops' is not a number", a row of another width as they do (csvtext.wrong_width): "line 4: 1 value, where
    the lines before it have 2". In a column the streamed readers refuse from its first block (``kinds``, each
    column's csvtext.read_as, "other": a word among booleans, text after a missing value) the value named is
    theirs, csvtext.csv_first_text's; a number in a column of booleans is refused in csvtext.not_a_boolean's
    words; without pyarrow (``kinds`` None), which reads a column of true/false as 1 and 0, a refused true or false
    says so. A first data row of another width than the header row (which loadtxt skips) is named for its width,
    as pyarrow names it, before any value in it. NumPy counts a value's row from 0 after the header but its column
    from 1, and the row whose column count changed from 1, and advises loadtxt's `usecols`, which gpunn's commands
    do not have."""
    import ast

    text = str(exc)
    value = re.fullmatch(r"could not convert string (.*) to float64 at row (\d+), column (\d+)\.?", text, re.S)
    if value:
        try:
            field = ast.literal_eval(value[1])  # NumPy shows it as repr() does, cut to 100 characters
        except (ValueError, SyntaxError):
            field = value[1][1:]  # NumPy's quote opens it; the characters after it are the value's
        names, column = csv_names(path), int(value[3]) - 1
        first = csv_values(path, 0) if names is not None else None
        if first is not None and len(first) != len(names):  # loadtxt skipped the header row; pyarrow refuses the
            line, count, expected = csv_line(path, 0), len(first), len(names)  # the first row's width first
            return f"line {line}: {width_refused(path, line, count, expected, names)}"
        kind = kinds[column] if kinds and column < len(kinds) else "number"
        said = csv_first_text(path, column, header=names is not None) if kind == "other" else ""
        refusal = not_a_boolean if kind == "boolean" and is_number(field) else not_a_number
        reads_it = (" (a column of true/false is read as 1 and 0 with pyarrow, which is not installed: pip install "
                    '"gpunn[data]")' if kinds is None and field.lower() in ("true", "false") else "")
        return said or (f"line {csv_line(path, int(value[2]), header=names is not None)}: "
                        f"{refusal(field, csv_column(names, column))}{reads_it}")
    width = re.fullmatch(r"the number of columns changed from (\d+) to (\d+) at row (\d+);.*", text, re.S)
    if width:
        names, before, count, row = csv_names(path), int(width[1]), int(width[2]), int(width[3]) - 1
        if names is not None and before != len(names):  # the first data row already differs from the header row,
            before, count, row = len(names), before, 0  # which loadtxt skipped: that row is named, as streamed
        header = names if row == 0 else None  # (row 0: the header the only line before it)
        line = csv_line(path, row, header=names is not None)
        return f"line {line}: {width_refused(path, line, count, before, header)}"
    return f"is text but not comma-separated numbers ({text})"


def _first_block_kinds(path, header):
    """How the streamed read (gpunn.data.files) takes each column of the CSV file ``path``, by pyarrow's types of
    its first block (csvtext.read_as): "number", "boolean" or "other"; none where that block does not read (a row
    of another width: numpy.loadtxt then says where), None without pyarrow."""
    try:
        return [read_as(kind) for kind in first_block_schema(path, header).types]
    except ImportError:
        return None
    except Exception:  # pyarrow's refusal of the block
        return []


def _loadtxt(path, header, kinds=()):
    """The CSV file ``path`` as float64 rows (numpy.loadtxt), a column of ``kinds`` "boolean" as 1 and 0."""
    import warnings

    booleans = pyarrow_csv_booleans() if "boolean" in kinds else {}

    def boolean(text):
        if text not in booleans:  # refused as the streamed read refuses it, on its line (_loadtxt_problem)
            raise ValueError(text)
        return booleans[text]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": said by the caller, in one line
        return numpy.loadtxt(path, delimiter=",", ndmin=2, dtype=numpy.float64, quotechar='"', comments=None,
                             skiprows=header_lines(path) if header else 0, encoding="utf-8-sig",
                             converters={i: boolean for i, kind in enumerate(kinds) if kind == "boolean"})


def _read_csv(path, option):
    """A CSV file read whole, as the streamed read takes it: a column of true/false (csvtext.read_as "boolean",
    from the first block) as 1 and 0, and a file it refuses in its words: a value pyarrow refuses that
    numpy.loadtxt reads (a number after a no-break space: csvtext.csv_first_foreign; a "#", loadtxt's comment mark
    unless told none) is refused too. pyarrow, which says how the streamed read takes each column, is asked only
    for a file of more than numbers."""
    header, kinds = csv_has_header(path), []
    try:
        try:
            X = _loadtxt(path, header)
        except ValueError:
            kinds = _first_block_kinds(path, header)
            if "boolean" not in (kinds or ()):
                raise
            X = _loadtxt(path, header, kinds)
    except ValueError as exc:
        raise PreflightError(f"{option} {shell_word(path)} {_loadtxt_problem(exc, path, kinds)}{delimiter_hint(path)}") from None
    foreign = csv_first_foreign(path, header)  # a number loadtxt read past a no-break space, which pyarrow refuses
    if foreign:
        raise PreflightError(f"{option} {shell_word(path)} {foreign}")
    if X.shape[0] == 0:
        raise PreflightError(f"{option} {shell_word(path)} has no rows (a header line only)")
    names = csv_names(path)
    if names is not None and X.shape[1] != len(names):  # loadtxt skipped the header row; the streamed read refuses
        raise PreflightError(f"{option} {shell_word(path)} line {csv_line(path, 0)}: "
                             f"{wrong_width(X.shape[1], len(names), names)}")
    return X


def npz_meant(path) -> str:
    """": did you mean run.npz?" where ``path``, given for a checkpoint and not a file, is one with ".npz" added (a
    checkpoint named without it: --save writes the name as given, run.npz most often), else ""."""
    path = os.fspath(path)
    if os.path.isfile(path) or path.lower().endswith(".npz") or not os.path.isfile(path + ".npz"):
        return ""
    return f": did you mean {shell_word(path + '.npz')}?"


def read_matrix(path, option="input"):
    """The array in a ``.npy`` file (read without pickle) or a CSV file of numbers, by content."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PreflightError(f"{option} {shell_word(path)} does not exist")
    if os.path.isdir(path):
        raise PreflightError(f"{option} {shell_word(path)} is a directory, not a file")
    kind = file_kind(path)
    # text named .npy is refused as every other reader of a .npy file refuses it (the streamed read, training's),
    # not read as CSV: "1,2\n" in x.npy was predicted from, and "oops\n" said "x.npy has no rows (a header line only)"
    named_npy = path.lower().endswith(".npy")
    if kind in ("zip", "pickle", "compressed") or (named_npy and kind in ("empty", "text", "text-8bit")):
        raise PreflightError(f"{option} {shell_word(path)}{not_npy(path, kind, 'the inputs')}")
    if kind == "empty":
        raise PreflightError(f"{option} {shell_word(path)} is empty (0 bytes); expected a .npy array (rows x features) or a CSV file")
    if kind == "text":
        return _read_csv(path, option)
    if kind == "text-8bit":  # it said "is neither a .npy array nor a CSV file"
        raise PreflightError(f"{option} {shell_word(path)} is {NOT_UTF8}")
    if kind != "npy":  # binary, said against what its name says it is (not "is neither a .npy array nor a CSV file")
        what = f": {not_csv_text(kind)}" if path.lower().endswith(".csv") else not_npy(path, kind, "the inputs")
        raise PreflightError(f"{option} {shell_word(path)}{what}")
    try:
        return numpy.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise PreflightError(f"{option} {shell_word(path)} holds Python objects (dtype object), which need pickle to read; "
                                 "save a numeric array") from None
        raise PreflightError(f"{option} {shell_word(path)} is a damaged .npy file ({exc})") from None
    except (EOFError, OSError) as exc:
        raise PreflightError(f"{option} {shell_word(path)} is a truncated .npy file ({exc or type(exc).__name__})") from None


# ---- memory --------------------------------------------------------------------------------
def host_available_bytes() -> int | None:
    """Memory the host can give this process without swapping: MemAvailable, or less where the process's memory
    cgroup leaves it less (:func:`cgroup_available_bytes`); None where unknown."""
    limited = cgroup_available_bytes()
    host = _meminfo_available()
    return limited if host is None else host if limited is None else min(host, limited)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_available_bytes(root="/sys/fs/cgroup", membership="/proc/self/cgroup") -> int | None:
    """What this process's memory cgroup (a container's ``--memory``, a Slurm job's ``--mem``) lets it add before the
    kernel kills it: the limit less what the group holds, page cache it can drop (its inactive files) not counted;
    the least over the group and the groups above it. None where no group limits it, or none can be read.
    MemAvailable is the whole machine's: a 4 GB job on a 256 GB node was told 200 GB were free, and killed
    mid-run with no message. cgroup v2 (``0::/path``: memory.max, memory.current) and v1 (the ``memory``
    hierarchy: memory.limit_in_bytes, memory.usage_in_bytes, whose memory.stat gives the least limit above)."""
    try:
        with open(membership) as fh:
            lines = [line.rstrip("\n").split(":", 2) for line in fh]
    except OSError:
        return None
    rooms = []  # (a hybrid system lists both; its memory controller is on one)
    for parts in lines:
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "":  # v2
            rooms.append(_least_room(_v2_room, root, parts[2]))
        elif len(parts) == 3 and "memory" in parts[1].split(","):  # v1
            rooms.append(_least_room(_v1_room, os.path.join(root, "memory"), parts[2]))
    rooms = [room for room in rooms if room is not None]
    return min(rooms) if rooms else None


def _least_room(room, mount, path):
    """The least ``room`` of the group at ``path`` under ``mount`` and the groups above it, up to the mount (a
    container sees its own group as the mount's root, whatever /proc/self/cgroup names)."""
    here = os.path.join(mount, path.lstrip("/"))
    if not os.path.isdir(here):
        here = mount  # (a cgroup namespace: the process's group is mounted as the root)
    rooms, top = [], os.path.normpath(mount)
    while True:
        rooms.append(room(here))
        if os.path.normpath(here) == top or os.path.dirname(here) == here:
            break
        here = os.path.dirname(here)
    rooms = [r for r in rooms if r is not None]
    return max(0, min(rooms)) if rooms else None


def _read(path) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _stat_value(text, key) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _v2_room(group) -> int | None:
    limit, used = _read(os.path.join(group, "memory.max")), _read(os.path.join(group, "memory.current"))
    if limit is None or used is None or limit.strip() == "max":
        return None
    try:
        dropped = _stat_value(_read(os.path.join(group, "memory.stat")), "inactive_file")
        return int(limit) - int(used) + dropped
    except ValueError:
        return None


_V1_UNLIMITED = 2**62  # v1 writes "no limit" as the largest page-aligned long, 9223372036854771712


def _v1_room(group) -> int | None:
    limit, used = _read(os.path.join(group, "memory.limit_in_bytes")), _read(os.path.join(group, "memory.usage_in_bytes"))
    if limit is None or used is None:
        return None
    try:
        stats = _read(os.path.join(group, "memory.stat"))
        limit = min(int(limit), _stat_value(stats, "hierarchical_memory_limit") or _V1_UNLIMITED)
        if limit >= _V1_UNLIMITED:
            return None
        return limit - int(used) + _stat_value(stats, "total_inactive_file")
    except ValueError:
        return None


def device_available_bytes(backend) -> int | None:
    """Free memory on ``backend``'s GPU (driver-free plus CuPy's pooled free blocks); None on the CPU."""
    if not backend.is_gpu:
        return None
    try:
        with backend.use():
            free, _total = backend.xp.cuda.runtime.memGetInfo()
            return int(free) + int(backend.xp.get_default_memory_pool().free_bytes())
    except Exception:  # an odd driver: no estimate rather than a failure
        return None


def available_bytes(backend) -> int | None:
    """Memory free for a run on ``backend``: the GPU's (:func:`device_available_bytes`) or, on the CPU, this
    process's share of what the host can give without swapping (:func:`host_share_bytes`); None where unknown."""
    return device_available_bytes(backend) if backend.is_gpu else host_share_bytes()


def ranks_on_this_node() -> int:
    """The processes an MPI launcher started on this node (1 where none did, or it does not say, or says it in a
    variable gpunn cannot read: a memory check is no place to refuse it, and a plain Ensemble(...) on the CPU was
    refused with DistributedError for MPI_LOCALNRANKS=x; a data-parallel fit or a command refuses it)."""
    from .distributed.comm import DistributedError, launched_local_size

    try:
        return launched_local_size()
    except DistributedError:
        return 1


def host_share_bytes() -> int | None:
    """This process's share of :func:`host_available_bytes`: all of it, or 1/P where a launcher started P processes
    on this node. Each rank of ``mpiexec -n 4 gpunn train`` on one machine checked the whole host's free memory for
    its own copy of the rows, and four copies were made of what fitted once."""
    free = host_available_bytes()
    return None if free is None else free // ranks_on_this_node()


def share_words(backend=None) -> str:
    """What a message adds to the memory :func:`available_bytes` (or, for ``backend=None``, :func:`host_share_bytes`)
    gives where it is a share of the host's: ``", this process's share: 4 processes of the job on this node"``, or
    ""."""
    ranks = 1 if backend is not None and backend.is_gpu else ranks_on_this_node()
    return f", this process's share: {ranks} processes of the job on this node" if ranks > 1 else ""


def size_text(n_bytes) -> str:
    """A memory size as gpunn's messages give it: in TiB from 1 TiB, GiB from 1 GiB, in MiB under it, one decimal
    and thousands grouped (a small run's "0.00 GiB" said nothing; --rows 1e12 streamed since "263378.0 GiB would
    not fit", now 257.2 TiB)."""
    if n_bytes >= 2**40:
        return f"{n_bytes / 2**40:,.1f} TiB"
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def train_memory(rows, features, outputs, itemsize, layer_sizes, batch_size, graph=False, standardize=False) -> dict:
    """Bytes a ``gpunn train`` run on in-memory data needs: 'data' (X and Y, plus the finiteness
    check's boolean mask; with ``standardize``, the standardized copy of the rows that ``fit`` trains
    on), 'shuffle' (the per-epoch shuffled copy of the training rows) and
    'model' (parameters, gradients, two optimizer moments, per-layer workspaces of a batch; with
    ``graph``, the CUDA graph's fixed batch buffers for two batch shapes and its cuBLAS workspace)."""
    from .ops.cublas import WORKSPACE_BYTES

    data = rows * (features + outputs) * itemsize * (2 if standardize else 1) + rows * max(features, outputs)
    shuffle = (rows - max(1, rows // 10)) * (features + outputs) * itemsize
    n_params = sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    batch = min(batch_size, rows)
    model = 4 * n_params * itemsize + 3 * batch * sum(layer_sizes[1:]) * itemsize
    if graph:
        model += 2 * batch * (features + outputs) * itemsize + WORKSPACE_BYTES
    return {"data": data, "shuffle": shuffle, "model": model}


def check_model_memory(layer_sizes, batch_size, itemsize, backend, graph=False, rows=None) -> None:
    """Refuse a network that cannot fit by itself (parameters, gradients, Adam's two moments, a batch's
    workspaces): streaming the rows, or fewer of them, cannot help it, and NumPy or CuPy would otherwise
    fail mid-construction with a bare out-of-memory line. ``rows``: the training rows where known (a batch
    is at most that many)."""
    batch = batch_size if rows is None else min(batch_size, rows)
    need = train_memory(batch, layer_sizes[0], layer_sizes[-1], itemsize, layer_sizes, batch, graph=graph)["model"]
    available = available_bytes(backend)
    if available is None or need <= available:
        return
    place = f"GPU {backend.device}" if backend.is_gpu else "host"
    raise PreflightError(f"the network {list(layer_sizes)} alone needs about {size_text(need)} of {place} memory "
                         f"(parameters, gradients, Adam's moments, workspaces for a batch of {batch:,}) but "
                         f"{size_text(available)} is available{share_words(backend)}; use smaller --hidden layers (or "
                         "--batch-size)")


def check_train_memory(need, rows, backend, hint="") -> None:
    """Refuse a run whose data, shuffled copy and model cannot all fit in the memory available.

    On the GPU the data are generated and kept on the device, so the device's free memory
    counts; on the CPU the host's. (Linux overcommits: an allocation that does not fit
    succeeds and the process is killed later, with no message, so this is checked first.)
    """
    available = available_bytes(backend)
    if available is None:
        return
    total = need["data"] + need["shuffle"] + need["model"]
    if total <= available:
        return
    place = f"GPU {backend.device}" if backend.is_gpu else "host"
    per_row = (need["data"] + need["shuffle"]) / rows
    fit = max(0, int((available * 0.9 - need["model"]) / per_row))
    raise PreflightError(
        f"--rows {rows:,} needs about {size_text(total)} of {place} memory (data {size_text(need['data'])}, its "
        f"shuffled copy {size_text(need['shuffle'])}, model {size_text(need['model'])}) but {size_text(available)} is "
        f"available{share_words(backend)}; about {fit:,} rows would fit{hint}")
