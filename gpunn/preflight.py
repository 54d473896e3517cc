"""Checks a command makes before its first expensive step, so a run is never lost to a late one.

* Output paths (``--save``, ``--json``, ``--plot``, predict's OUT): the directory exists and is
  writable, the path is not a directory, not a file the command reads (the model being
  predicted with), not another output of the same command, and not a foreign file that
  ``--save`` would clobber.
* Input files by content, not by name: ``.npy``, ``.npz``/zip, pickle, text (CSV), empty.
* Memory: what the data, its shuffled copy and the model need, against what is free on the
  host (``MemAvailable``) and on the GPU, with what would fit instead.

Every failure is a :class:`PreflightError` (a ``ValueError``) whose message is one line.
"""
from __future__ import annotations

import os
import stat

import numpy

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


class PreflightError(ValueError):
    """A command would fail, or lose work, if it started: said before anything is done."""


# ---- paths -------------------------------------------------------------------------------
def _same_file(a, b) -> bool:
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


def check_output(path, option, *, reads=(), suffixes=None) -> str:
    """Refuse an output path the command could not write, or must not overwrite.

    ``reads``: (path, what) pairs the command reads; writing over one of them is refused.
    ``suffixes``: the accepted file name endings (lower case), or None for any.
    """
    path = os.fspath(path)
    if not path:
        raise PreflightError(f"{option} needs a file name")
    if os.path.isdir(path):
        raise PreflightError(f"{option} {path} is a directory; give a file name")
    if path.endswith(("/", os.sep)):  # a directory not made yet: its parent passed, and the write failed at the end
        raise PreflightError(f"{option} {path} names a directory (it ends in {path[-1]}); give a file name")
    for other, what in reads:
        if other and os.path.exists(path) and _same_file(path, other):
            raise PreflightError(f"{option} {path} is the {what} this command reads; choose another output file")
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        *others, last = suffixes  # ".png, .pdf or .svg" (it said ".png or .pdf or .svg")
        ends = f"{', '.join(others)} or {last}" if others else last
        raise PreflightError(f"{option} {path}: the name must end in {ends}")
    if writes_in_place(path):  # /dev/null, a pipe, /dev/stdout: written into, never renamed over
        if not os.access(path, os.W_OK):
            raise PreflightError(f"{option} {path} is not writable")
        return path
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PreflightError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PreflightError(f"{option} {path}: directory {directory} is not writable")
    return path


def check_checkpoint_output(path, option, *, reads=()) -> str:
    """:func:`check_output` for a checkpoint (gpunn train --save, gpunn sweep --save-best): a file already
    there that is not one (an .npz/zip) is someone's data, and is not replaced."""
    check_output(path, option, reads=reads)
    if os.path.isfile(path) and file_kind(path) != "zip":
        raise PreflightError(f"{option} {path} exists and is not a gpunn checkpoint; refusing to overwrite it")
    return path


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


def file_kind(path) -> str:
    """'npy', 'zip' (.npz and gpunn checkpoints), 'pickle', 'compressed', 'text', 'text-8bit' (text in an 8-bit
    encoding, not UTF-8: :data:`NOT_UTF8`), 'empty' or 'binary', from the bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "empty"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if any(head.startswith(magic) for magic in COMPRESSED):
        return "compressed"
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q"):
        return "pickle"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a multi-byte character cut by the 4096-byte window
                return "text"
        try:  # printable in Windows-1252 (a superset of Latin-1's printable characters): "café,prix\r\n1,2"
            if all(ch >= " " or ch in "\t\r\n" for ch in head.decode("cp1252")):
                return "text-8bit"
        except UnicodeDecodeError:
            pass
    return "binary"


def csv_has_header(path, delimiter=",") -> bool:
    """Whether the first line of the CSV file ``path`` that is not empty (pyarrow and numpy.loadtxt skip
    empty lines) is a header row: none of its fields is a number (a first row with numbers and a gap,
    "1.5,NA,3", is data). False for a file that cannot be read (its reader says why)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:  # a UTF-8 mark (Excel's) is no field
            first = next((line for line in fh if line != "\n"), "")  # (\r\n and \r read as \n)
    except OSError:
        return False
    for field in first.strip().split(delimiter):
        try:
            float(field.strip().strip("\"'"))  # a quoted number is a number too
            return False
        except ValueError:
            pass
    return True


def csv_header_end(fh, size, delimiter=",", limit=1 << 24):
    """The offset just past a CSV file's header row (``fh`` open in binary): its first line end outside a
    quoted field, as pyarrow parses it (a quote opens a field only at its start, "" is a quote inside one),
    so a quoted name may hold a line end; ``size`` when there is none. Empty lines before the header are
    skipped, as pyarrow skips them. A quote still open after ``limit`` bytes gives the first line end
    (pyarrow then says what is wrong)."""
    import re

    fh.seek(0)
    buf = fh.read(1 << 16)
    start = 3 if buf.startswith(b"\xef\xbb\xbf") else 0  # past a UTF-8 mark
    start = len(buf) - len(buf[start:].lstrip(b"\r\n"))  # and the empty lines after it
    line_end = re.compile(rb"\r\n|\r|\n")
    first = line_end.search(buf, start)
    if first and first.end() < len(buf) and b'"' not in buf[start:first.start()]:  # no quote before it: the header's end
        return first.end()
    sep, quote = str(delimiter).encode()[-1:], ord('"')  # (pyarrow refuses a delimiter not one character)
    i, quoted, field_start = start, False, True
    while True:
        if i + 1 >= len(buf) and len(buf) < limit:  # one byte ahead: a "" inside quotes, a \r\n
            more = fh.read(1 << 16)
            if more:
                buf += more
                continue
        if i >= len(buf):
            if len(buf) < limit:
                return size
            first = line_end.search(buf, start)
            return first.end() if first else len(buf)
        c = buf[i]
        if quoted:
            if c == quote:
                if buf[i + 1:i + 2] == b'"':
                    i += 1
                else:
                    quoted = False
        elif c == quote and field_start:
            quoted = True
        elif c in (10, 13):
            return i + (2 if buf[i:i + 2] == b"\r\n" else 1)
        field_start = buf[i:i + 1] == sep and not quoted
        i += 1


def lines_before(fh, offset) -> int:
    """How many line ends (\\n, \\r\\n or \\r) the file ``fh`` (binary) holds before the byte ``offset``."""
    fh.seek(0)
    count, left, last = 0, offset, b""
    while left > 0:
        data = fh.read(min(left, 1 << 24))
        if not data:
            break
        count += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") - (last == b"\r" and data[:1] == b"\n")
        last, left = data[-1:], left - len(data)
    return count


def _lines_from(fh, start, block=1 << 20):
    """(offset, bytes) of each line of the file ``fh`` (binary) from the byte ``start`` (a line's start), its line
    end included."""
    import re

    line_end = re.compile(rb"\r\n|\r|\n")
    fh.seek(start)
    pending, offset = b"", start
    while True:
        data = fh.read(block)
        buf, at = pending + data, 0
        for end in line_end.finditer(buf):
            if data and end.end() == len(buf) and buf.endswith(b"\r"):  # a \r\n may be cut by the read
                break
            yield offset + at, buf[at:end.end()]
            at = end.end()
        if not data:
            if at < len(buf):
                yield offset + at, buf[at:]
            return
        pending, offset = buf[at:], offset + at


def csv_rows(fh, start, line):
    """(line, offset) of each data row of a CSV file ``fh`` (binary) from the byte ``start``, where a row begins
    on line ``line`` (counted from 1): the line an editor shows it on and its first byte. Rows as pyarrow and
    numpy.loadtxt count them: an empty line is skipped, and a row goes on past a line end inside a quoted field
    (a line with an odd count of quotes opens or closes one)."""
    quoted = False
    for offset, text in _lines_from(fh, start):
        if not quoted and text.rstrip(b"\r\n"):
            yield line, offset
        if text.count(b'"') % 2:
            quoted = not quoted
        line += 1


def csv_line(path, row, start=None, first_row=0, header=True, delimiter=",") -> int:
    """The line of the CSV file ``path`` on which its data row ``row`` begins: counted from 1, the header's
    lines too, as an editor shows it, where gpunn's readers count data rows from 0 after the header (empty lines
    skipped: csv_rows). ``start``: the byte at which data row ``first_row`` begins (a chunk's), to count from
    there; by default the header's end (the file's start with ``header=False``). Read for an error's message."""
    with open(path, "rb") as fh:
        if start is None:
            start, first_row = (csv_header_end(fh, os.fstat(fh.fileno()).st_size, delimiter) if header else 0), 0
        line = 1 + lines_before(fh, start)
        for n, (line, _) in enumerate(csv_rows(fh, start, line), first_row):
            if n == row:
                return line
    return line + 1


def csv_names(path, delimiter=",") -> list | None:
    """The column names of a CSV file's header row, or None for a file without one (csv_has_header)."""
    import csv

    if not csv_has_header(path, delimiter):
        return None
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return next((row for row in csv.reader(fh, delimiter=delimiter) if row), None)


def csv_first_text(path, index, header=True, delimiter=",") -> str:
    """Where the column ``index`` (from 0) of the CSV file ``path``, which pyarrow read as text, first holds a
    value that is not a number (nor one of pyarrow's missing-value marks: "", "NA", "nan"...), as a clause for
    the refusal: " (its first value that is not a number: 'x' on line 6)"; "" where none is found."""
    import csv

    missing = set(pyarrow_csv_null_values())
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader, before, rows = csv.reader(fh, delimiter=delimiter), 0, 0
        for row in reader:
            line, before = before + 1, reader.line_num
            if not row:
                continue
            rows += 1
            value = row[index] if index < len(row) else ""
            if (rows > 1 or not header) and value not in missing and not _is_number(value):
                return f" (its first value that is not a number: {value!r} on line {line})"
    return ""


def pyarrow_csv_null_values() -> list:
    """The values pyarrow's CSV reader takes for a missing one."""
    import pyarrow.csv

    return list(pyarrow.csv.ConvertOptions().null_values)


def _is_number(text) -> bool:
    try:
        float(text.replace("_", "?"))  # (Python's float takes 1_0, pyarrow does not)
    except ValueError:
        return False
    return True


def csv_column(names, index) -> str:
    """A CSV file's column in a message: "column 'b'" by its header's name, or, in a file without a header
    (``names`` None), "value 2 of the line" (counted from 1, as one reads a line)."""
    return f"column {names[index]!r}" if names else f"value {index + 1} of the line"


def delimiter_hint(path, delimiter=",", decimal=".") -> str:
    """A sentence to append to a CSV file's error when its first row read with ``delimiter`` is one field
    holding a ";" or a tab: the file then looks delimited by that (as Excel writes CSV where the decimal mark
    is a comma), and a missing column or a parse error says so; and, read with the decimal mark ``decimal``
    ".", when its first data row (split as the file looks delimited) holds numbers with decimal commas (0,5).
    "" otherwise, or where the file cannot be read."""
    import csv
    import re

    def rows(sep):  # the header and the first data row, past empty lines
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            reader = (row for row in csv.reader(fh, delimiter=sep) if row)
            return next(reader, []), next(reader, [])

    try:
        header, first = rows(delimiter)
        other = next((d for d in (";", "\t") if len(header) == 1 and d in header[0]), None)
        if other is not None:
            _, first = rows(other)
    except (OSError, csv.Error):
        return ""
    hint = ""
    if other is not None:
        name = "tab" if other == "\t" else repr(other)
        excel = " (as Excel writes CSV where the decimal mark is a comma)" if other == ";" else ""
        hint = (f"; its first row is one column holding {name}s: the file looks {name}-delimited{excel}: pass "
                f"delimiter={other!r} to gpunn.data.csv, or save it comma-separated (gpunn train --data and gpunn "
                "predict read commas only)")
    if decimal == "." and any(re.fullmatch(r"\s*[-+]?\d*,\d+\s*", v) for v in first):
        hint += ("; its numbers have decimal commas (0,5): pass decimal=',' to gpunn.data.csv, or save them "
                 "with decimal points (gpunn train --data and gpunn predict read decimal points only)")
    return hint


def _header_lines(path) -> int:
    """How many lines numpy.loadtxt's ``skiprows`` must skip to pass the header row: 1, more where a quoted
    name holds a line end ("a,\"b\nc\",y"; loadtxt counts lines, \r\n as one)."""
    import re

    with open(path, "rb") as fh:
        end = csv_header_end(fh, os.fstat(fh.fileno()).st_size)
        fh.seek(0)
        return max(1, len(re.findall(rb"\r\n|\r|\n", fh.read(end))))


def _loadtxt_problem(exc, path) -> str:
    """numpy.loadtxt's complaint about the CSV file ``path`` in gpunn's words: the line an editor shows (from 1,
    the header's counted: csv_line) and the column's name, as gpunn's other CSV errors say where. NumPy counts
    a value's row from 0 after the header but its column from 1, and the row whose column count changed from
    1, and advises loadtxt's `usecols`, which gpunn's commands do not have."""
    import re

    text = str(exc)
    value = re.fullmatch(r"could not convert string (.*) to float64 at row (\d+), column (\d+)\.?", text)
    if value:
        what = "an empty value (a missing number)" if value[1] in ("''", '""') else value[1]
        names = csv_names(path)
        return (f"{what} on line {csv_line(path, int(value[2]), header=names is not None)} "
                f"({csv_column(names, int(value[3]) - 1)}) is not a number")
    width = re.fullmatch(r"the number of columns changed from (\d+) to (\d+) at row (\d+);.*", text, re.S)
    if width:
        line, n = csv_line(path, int(width[3]) - 1, header=csv_has_header(path)), int(width[2])
        return f"line {line} has {n} value{'s' * (n != 1)}, the lines before it {width[1]}"
    return text


def _read_csv(path, option):
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": said below, in one line
            X = numpy.loadtxt(path, delimiter=",", ndmin=2, dtype=numpy.float64, quotechar='"',
                              skiprows=_header_lines(path) if csv_has_header(path) else 0, encoding="utf-8-sig")
    except ValueError as exc:
        raise PreflightError(f"{option} {path} is text but not comma-separated numbers ({_loadtxt_problem(exc, path)})"
                             f"{delimiter_hint(path)}") from None
    if X.shape[0] == 0:
        raise PreflightError(f"{option} {path} has no rows (a header line only)")
    return X


def read_matrix(path, option="input"):
    """The array in a ``.npy`` file (read without pickle) or a CSV file of numbers, by content."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PreflightError(f"{option} {path} does not exist")
    if os.path.isdir(path):
        raise PreflightError(f"{option} {path} is a directory, not a file")
    kind = file_kind(path)
    if kind == "empty":
        raise PreflightError(f"{option} {path} is empty (0 bytes); expected a .npy array (rows x features) or a CSV file")
    if kind == "zip":
        raise PreflightError(f"{option} {path} is an .npz/zip archive (a checkpoint?), not one array; "
                             "save the inputs with numpy.save(path, X)")
    if kind == "pickle":
        raise PreflightError(f"{option} {path} is a Python pickle; gpunn never unpickles: save the inputs with numpy.save")
    if kind == "compressed":
        raise PreflightError(f"{option} {path} is {compression(path)}-compressed: decompress it first")
    if kind == "text":
        return _read_csv(path, option)
    if kind == "text-8bit":  # it said "is neither a .npy array nor a CSV file"
        raise PreflightError(f"{option} {path} is {NOT_UTF8}")
    if kind != "npy":
        raise PreflightError(f"{option} {path} is neither a .npy array nor a CSV file")
    try:
        return numpy.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise PreflightError(f"{option} {path} holds Python objects (dtype object), which need pickle to read; "
                                 "save a numeric array") from None
        raise PreflightError(f"{option} {path} is a damaged .npy file ({exc})") from None
    except (EOFError, OSError) as exc:
        raise PreflightError(f"{option} {path} is a truncated .npy file ({exc or type(exc).__name__})") from None


# ---- memory --------------------------------------------------------------------------------
def host_available_bytes() -> int | None:
    """Memory the host can give without swapping (MemAvailable), or None where unknown."""
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
    """Memory free for a run on ``backend``: the GPU's (:func:`device_available_bytes`) or, on the CPU, what
    the host can give without swapping (:func:`host_available_bytes`); None where unknown."""
    return device_available_bytes(backend) if backend.is_gpu else host_available_bytes()


def size_text(n_bytes) -> str:
    """A memory size as gpunn's messages give it: in GiB from 1 GiB, in MiB under it, one decimal (a small
    run's "0.00 GiB" said nothing)."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


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
                         f"{size_text(available)} is available; use smaller --hidden layers (or --batch-size)")


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
        f"available; about {fit:,} rows would fit{hint}")
