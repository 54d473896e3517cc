"""Sources that need nothing beyond NumPy: a synthetic task, a pair of ``.npy`` files, any iterable."""
from __future__ import annotations

import collections
import contextlib
import functools
import os

import numpy

from ..datasets import CHUNK_ROWS, get_task, rebatch, refuse_unknown_options
from ..checks import as_array, as_matrix, canonical_dtype, positive_int, validation_share
from ..hints import a_type
from ..rng import generator
from .base import (ChunkedSource, Closable, DataError, chunk_sizes, closes_files_when_refused,
                   default_chunk_rows, held_count, pread_full, standardize_option)
from .errors import file_name
from .overflow import OverflowWatch
from .stats import Standardizer, dtype_of, standardizing_dtype


class SyntheticSource(ChunkedSource):
    """A built-in task (``gpunn.datasets``) generated on the device chunk by chunk, never held whole.

    ``datasets.make`` draws its rows in chunks of 65,536 (CHUNK_ROWS), chunk m from its own stream; this
    source's chunks are those, or pieces of them, so the data are ``make``'s for the same arguments (in a
    shuffled order), for any number of rows. ``chunk_rows`` (a power of two up to 65,536) cuts each of
    make's chunks into pieces of that many rows (the last piece of a short last chunk takes its
    remainder). By default (None) the chunks are make's, except with ``validation_fraction``: as it
    holds out whole pieces, they are the largest (at least SMALLEST_PIECE rows) for which the rows held
    out come within a quarter of the fraction asked whichever pieces the seed draws (10% of 140,000 rows:
    pieces of 8,192, holding out 16,384 or 17,120 rows; make's chunks held out 8,928 or 65,536). A
    piece's chunk is generated once per pass and sliced, as the pieces of one chunk are kept in order
    (a run) and ``window`` counts make's chunks (16: a window of about 16 x 65,536 rows, whatever the
    pieces). On a GPU a window's chunks are generated together (``Task.chunks``: one elementwise launch
    per operation for all of them, the host work a graph step's training waits for). The task's options (task, n_features, n_outputs, noise, seed, ``task_options``) are
    ``make``'s; the others (shuffle, window, validation_fraction, standardize, prefetch, device, dtype)
    are :class:`ChunkedSource`'s.
    """

    kind = "synthetic"

    def __init__(self, task="teacher", rows=1_000_000, n_features=None, n_outputs=1, noise=None, seed=0, *,
                 chunk_rows=None, shuffle=True, window=16, validation_fraction=None, standardize=False, prefetch=1,
                 device=None, dtype=None, **task_options):
        refuse_unknown_options(type(self).__name__, SyntheticSource.__init__, task, task_options)
        self.task = get_task(task, n_features, n_outputs, noise, seed, **task_options)
        self.task_options = dict(task_options)
        self.n_features, self.n_outputs = self.task.n_features, self.task.n_outputs
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self.total_rows = positive_int(rows, "rows")
        self._window_asked = self.window
        self.chunk_rows_given = chunk_rows is not None
        self._cut(piece_rows(chunk_rows) if self.chunk_rows_given
                  else default_piece_rows(self.total_rows, self.validation_fraction))
        self._ready(self.chunk_sizes, device, dtype, run_lengths=self.run_lengths)

    def _cut(self, rows):
        """Cut make's chunks into pieces of ``rows`` (``chunk_rows``); ``window`` pieces per make chunk. Every
        make chunk but a short last one is cut alike, so a piece's place is arithmetic (``piece``): no table."""
        self.chunk_rows = rows
        self.window = self._window_asked * (CHUNK_ROWS // rows)
        self._full_chunks, tail = divmod(self.total_rows, CHUNK_ROWS)
        self._per_chunk = CHUNK_ROWS // rows  # pieces per make chunk of CHUNK_ROWS rows
        self._tail_pieces = piece_sizes(tail, rows) if tail else []
        self.chunk_sizes = _repeated(rows, self._full_chunks * self._per_chunk, self._tail_pieces)
        self.run_lengths = _repeated(self._per_chunk, self._full_chunks, [len(self._tail_pieces)] if tail else [])

    def piece(self, k):
        """(make's chunk m, first row, end row) of chunk ``k``: the rows of make's chunk m that it holds."""
        m, j = divmod(int(k), self._per_chunk)
        if m < self._full_chunks:
            return m, j * self.chunk_rows, (j + 1) * self.chunk_rows
        j = int(k) - self._full_chunks * self._per_chunk  # a piece of the short last chunk
        return self._full_chunks, j * self.chunk_rows, j * self.chunk_rows + self._tail_pieces[j]

    def hold_out(self, fraction):
        if not self.chunk_rows_given:  # the pieces that hold out about ``fraction``
            self._cut(default_piece_rows(self.total_rows, validation_share(fraction)))
        return super().hold_out(fraction)

    def follow_saved_cut(self, saved):
        """Resuming a checkpoint: a cut chosen by default takes the one it recorded (make's chunks when it
        recorded none, as every run before pieces did), so the chunks, their order and the held-out
        ones are the run's; a ``chunk_rows`` given is kept, and the resume refused if it differs."""
        rows = saved.get("chunk_rows", CHUNK_ROWS)
        if self.chunk_rows_given or saved.get("kind") != self.kind or rows == self.chunk_rows:
            return
        try:
            rows = piece_rows(rows)
        except ValueError:  # not a cut this source makes: the resume's comparison names it
            return
        self._cut(rows)
        self._set_chunks(self.chunk_sizes, self.run_lengths)

    def _device_windows(self, windows):
        from .pipeline import generated_windows

        backend, dtype, xp = self.backend, self.dtype, self.backend.xp
        kept = {}  # make's chunk whose later pieces the next window takes: {m: (X, Y)}
        # on a GPU a window's chunks are made together (Task.chunks: the host issues one elementwise launch per
        # operation for the window, what a graph step's training waits for); on the CPU, where a reader thread
        # generates, one at a time (a stack's temporaries would hold a window's hidden layers in memory)
        together = backend.is_gpu

        def generate(window):
            """The window's pieces: whole chunks in the order made are those arrays themselves, else the pieces
            are copied out of their chunks."""
            parts = [self.piece(k) for k in window]  # (make's chunk m, first row, end row) of each piece
            chunks = list(dict.fromkeys(m for m, _, _ in parts if m not in kept))  # to make, in order
            whole = not kept and parts == [(m, 0, self._chunk_size(m)) for m in chunks]
            arrays = dict(kept)  # m -> (X, Y) of make's chunk m
            if together and chunks:
                X, Y = self.task.chunks(backend, [(m, self._chunk_size(m)) for m in chunks], dtype)
                if whole:
                    return X, Y  # (fresh arrays, the consumer's to change)
                start = 0
                for m in chunks:
                    end = start + self._chunk_size(m)
                    arrays[m] = X[start:end], Y[start:end]
                    start = end
            else:
                for m in chunks:
                    arrays[m] = self.task.chunk(backend, m, self._chunk_size(m), dtype)
                if whole and len(chunks) == 1:
                    return arrays[chunks[0]]
            m, _, hi = parts[-1]
            kept.clear()
            if hi < self._chunk_size(m):  # its next pieces open the next window
                kept[m] = arrays[m]
            return (xp.concatenate([arrays[m][0][lo:hi] for m, lo, hi in parts]),  # copies: a window is changed in
                    xp.concatenate([arrays[m][1][lo:hi] for m, lo, hi in parts]))  # place, a chunk kept is not

        return generated_windows(backend, windows, generate)

    def _chunk_size(self, m):
        return min(CHUNK_ROWS, self.total_rows - m * CHUNK_ROWS)

    def _where(self, k):
        m, lo, hi = self.piece(k)
        whole = lo == 0 and hi == self._chunk_size(m)
        return f"synthetic {self.task.name} chunk {m}" + ("" if whole else f" (its rows {lo}-{hi - 1})")

    def _more_chunks(self):
        return (f"a synthetic source holds out pieces (chunk_rows, a power of two) of datasets.make's chunks of "
                f"{CHUNK_ROWS:,} rows, by default of {SMALLEST_PIECE:,} rows at least: give it more rows, or pass "
                "validation_data")

    def _name(self):
        return f"synthetic {self.task.name}"

    def _describe(self):
        described = {"task": self.task.name, "n_features": self.n_features, "n_outputs": self.n_outputs,
                     "noise": self.task.noise, **self.task_options}
        if self.chunk_rows != CHUNK_ROWS:  # (make's chunks: recorded as before pieces, so old checkpoints match)
            described["chunk_rows"] = self.chunk_rows
        if self.backend is not None:  # what draws the rows (gpunn.rng.generator), once bound: a resume compares it
            described["rng"] = generator(self.backend)
        return described


SMALLEST_PIECE = 1024  # the least rows of a synthetic piece chosen by default (SyntheticSource)
SHARE_TOLERANCE = 0.25  # ... so that the rows held out are within this share of validation_fraction's


def piece_rows(value) -> int:
    """``chunk_rows`` of a synthetic source checked: a power of two up to CHUNK_ROWS (it divides make's chunks)."""
    rows = positive_int(value, "chunk_rows")
    if rows > CHUNK_ROWS or CHUNK_ROWS % rows:
        raise ValueError(f"chunk_rows of a synthetic source cuts datasets.make's chunks of {CHUNK_ROWS:,} rows into "
                         f"pieces: a power of two up to {CHUNK_ROWS:,}, got {value!r}")
    return rows


def piece_sizes(rows, piece):
    """Pieces of ``piece`` rows of a chunk of ``rows``; a remainder joins the last piece (a chunk under
    ``piece`` rows is one piece)."""
    whole, left = divmod(int(rows), int(piece))
    if not whole:
        return [int(rows)]
    return [piece] * (whole - 1) + [piece + left]


def default_piece_rows(rows, fraction) -> int:
    """A synthetic source's default ``chunk_rows`` for ``rows`` rows: make's chunks without a
    ``fraction``, else the largest piece (SMALLEST_PIECE at least) for which whichever pieces are held
    out hold out rows within SHARE_TOLERANCE of ``fraction`` (or the nearest, when none does)."""
    return piece_cut(rows, fraction)[0]


def piece_cut(rows, fraction):
    """(``default_piece_rows``, whether its held-out rows are within SHARE_TOLERANCE of ``fraction``)."""
    if not fraction:
        return CHUNK_ROWS, True
    nearest = None
    piece = CHUNK_ROWS
    full, tail = divmod(int(rows), CHUNK_ROWS)
    while piece >= SMALLEST_PIECE:
        # the pieces' sizes: full x (CHUNK_ROWS // piece) of ``piece`` rows, and the short last chunk's
        counts = collections.Counter({piece: full * (CHUNK_ROWS // piece)})
        counts.update(piece_sizes(tail, piece) if tail else [])
        count = sum(counts.values())
        if count >= 2:
            held = held_count(count, fraction)
            off = max(abs(_sum_of_first(held, sorted(counts.items(), reverse=largest)) / rows - fraction)
                      for largest in (False, True)) / fraction
            if off <= SHARE_TOLERANCE:
                return piece, True
            if nearest is None or off < nearest[0]:
                nearest = (off, piece)
        piece //= 2
    return (CHUNK_ROWS if nearest is None else nearest[1]), False


def _sum_of_first(n, counted) -> int:
    """The sum of the first ``n`` of the values ``counted`` holds, in its order: [(value, how many times), ...]."""
    total = 0
    for value, times in counted:
        take = min(n, times)
        total, n = total + take * value, n - take
    return total


def _repeated(value, times, then) -> numpy.ndarray:
    """``times`` x ``value``, then the values ``then``, as an int64 array."""
    return numpy.concatenate([numpy.full(times, value, numpy.int64), numpy.asarray(then, numpy.int64)])


class _NpyFile:
    """A 2-D ``.npy`` file read by row ranges with ``pread``: no pickle, no memory map.

    Reading into the caller's buffer keeps the process's memory at the window size (pages of a
    memory map that stay mapped would count as resident), and a file truncated while training
    turns into a DataError naming it instead of a SIGBUS. A file in Fortran (column-major) order,
    as ``numpy.save`` writes a pandas DataFrame's ``.values``, is read a column's range at a time.
    A file written over in place since it was opened (``numpy.save`` to its name: the same inode, its
    size or modification time changed) is refused by the next read, as a CSV source refuses its file:
    its bytes were read with the old header's shape and dtype, and training went on, on garbage. One
    renamed over its name is another file; the one opened is read to the end.
    """

    def __init__(self, path, role, allow_1d=False, only_1d=False):
        self.path = file_name(path, role, "a .npy file")
        self._fd = None
        try:
            with open(self.path, "rb") as fh:
                version = numpy.lib.format.read_magic(fh)
                read_header = (numpy.lib.format.read_array_header_1_0 if version == (1, 0)
                               else numpy.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                self.offset = fh.tell()
        except FileNotFoundError:
            raise DataError(f"{self.path}: no such file ({role})") from None
        except IsADirectoryError:
            raise DataError(f"{self.path}: is a directory, not a .npy file ({role})") from None
        except (ValueError, OSError, SyntaxError) as exc:
            from ..preflight import file_kind, not_npy

            try:  # what the bytes are, as gpunn predict says it, rather than NumPy's magic string
                kind = file_kind(self.path)
            except OSError:  # (unreadable: NumPy's words, which name it)
                kind = "npy"
            said = f": not a readable .npy file ({exc})" if kind == "npy" else not_npy(self.path, kind, f"the {role}")
            raise DataError(f"{self.path}{said}") from None
        if dtype.hasobject:
            raise DataError(f"{self.path}: holds Python objects (dtype {dtype}), which only pickle can read; "
                            f"gpunn reads .npy files without pickle, and {role} must be numbers")
        if dtype.kind not in "biuf":
            raise DataError(f"{self.path}: {role} must be numbers; the file holds dtype {dtype}")
        if only_1d and len(shape) != 1:
            raise DataError(f"{self.path}: {role} must be a 1-D array, one a row; it has shape {shape}"
                            + (": save w.ravel()" if len(shape) == 2 and 1 in shape else ""))
        if len(shape) == 1 and allow_1d:
            shape = (shape[0], 1)
        if len(shape) != 2:
            raise DataError(f"{self.path}: {role} must be a 2-D array (rows x columns); it has shape {shape}")
        if shape[0] == 0 or shape[1] == 0:
            raise DataError(f"{self.path}: {role} array is empty (shape {shape})")
        self._fd = os.open(self.path, os.O_RDONLY)
        opened = os.fstat(self._fd)
        self._stamp = (opened.st_size, opened.st_mtime_ns)
        self.rows, self.columns = int(shape[0]), int(shape[1])
        self.fortran = bool(fortran) and self.columns > 1  # (one column is the same bytes in either order)
        self.dtype = dtype
        self.row_bytes = self.columns * dtype.itemsize
        try:
            self.check_size()
        except BaseException:  # closed now, not when the error's traceback goes
            self.close()
            raise

    def check_size(self):
        """Refuse the file cut short, or written over since it was opened (the class's docstring), before each epoch;
        each read checks it was not written over, so that no step, and no checkpoint after one, takes rows read from
        it since (a file cut short is refused by the read that comes up short, naming its rows, before the epoch
        ends)."""
        expected = self.offset + self.rows * self.row_bytes
        now = os.fstat(self._fd)
        if now.st_size < expected:
            raise DataError(f"{self.path}: truncated: its header describes {self.rows} rows ({expected} bytes) "
                            f"but the file has {now.st_size} bytes")
        if (now.st_size, now.st_mtime_ns) != self._stamp:
            raise self._changed()

    def _changed(self):
        return DataError(f"{self.path}: the file changed since it was opened (size or modification time): its rows "
                         "are no longer those the run read; construct the source again")

    def read(self, start, out):
        """Rows [start, start + len(out)) into ``out`` (C-contiguous, any float dtype)."""
        n = out.shape[0]
        if self.fortran:  # column j's rows are values j * rows + start ... of the data: a range per column
            buffer = numpy.empty((self.columns, n), self.dtype)
            for j in range(self.columns):
                self._read_into(buffer[j], (j * self.rows + start) * self.dtype.itemsize, start, n)
            buffer = buffer.T
        else:
            direct = out.dtype == self.dtype and self.dtype.isnative and out.flags.c_contiguous
            buffer = out if direct else numpy.empty((n, self.columns), self.dtype)
            self._read_into(buffer, start * self.row_bytes, start, n)
        now = os.fstat(self._fd)  # written over since it was opened (a file cut short: the short read says its rows)
        if now.st_size >= self._stamp[0] and (now.st_size, now.st_mtime_ns) != self._stamp:
            raise self._changed()
        if buffer is not out:
            with numpy.errstate(over="ignore"):  # overflow to inf is reported by the finite check
                out[...] = buffer

    def value(self, row, column):
        """The value at ``row`` and ``column`` as the file stores it (for an error's message)."""
        out = numpy.empty((1, self.columns), self.dtype)
        self.read(row, out)
        return out[0, column]

    def _read_into(self, buffer, position, start, n):
        """The bytes at ``position`` of the data into the contiguous ``buffer`` (rows start.. of n, for the message)."""
        view = memoryview(buffer.reshape(-1).view(numpy.uint8))
        got = pread_full(self._fd, view, self.offset + position)
        if got < len(view):
            raise DataError(f"{self.path}: truncated or shrunk while reading rows {start}-{start + n - 1}: "
                            f"got {got} of {len(view)} bytes")

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except (OSError, AttributeError):
            pass


class NpySource(ChunkedSource):
    """Features and targets from two ``.npy`` files of any size, read chunk by chunk.

    ``x_path`` holds a (rows x features) array, ``y_path`` (rows x outputs) or (rows,); any real
    dtype (converted to the model's). ``weights``, a third file of shape (rows,), holds each row's weight in the
    loss (fit's ``sample_weight``, read a chunk at a time: gpunn.data.row_weights), checked in one pass over it here. Files are read with ``pread`` into the reader's buffers,
    never whole: memory stays at a few windows of ``chunk_rows`` rows (default 65536, fewer for
    files under two million rows, so that there are about 32 chunks to shuffle and hold out). The
    other options (seed, shuffle, window, validation_fraction, standardize, prefetch, device, dtype)
    are :class:`ChunkedSource`'s.
    """

    kind = "npy"

    @closes_files_when_refused
    def __init__(self, x_path, y_path, *, weights=None, chunk_rows=None, seed=0, shuffle=True, window=16,
                 validation_fraction=None, standardize=False, prefetch=1, device=None, dtype=None):
        self.x = _NpyFile(x_path, "features")
        self.y = _NpyFile(y_path, "targets", allow_1d=True)
        self.w = None if weights is None else _NpyFile(weights, "weights", allow_1d=True, only_1d=True)
        if self.x.rows != self.y.rows:
            raise DataError(f"{self.x.path} has {self.x.rows} rows but {self.y.path} has {self.y.rows}; they must match"
                            f"{self._transposed()}")
        if self.w is not None and self.w.rows != self.x.rows:
            raise DataError(f"{self.w.path} has {self.w.rows} weights but {self.x.path} has {self.x.rows} rows: one "
                            "weight a row")
        self.n_features, self.n_outputs = self.x.columns, self.y.columns
        default = default_chunk_rows(self.x.rows)
        chunk_rows = default if chunk_rows is None else chunk_rows
        small = chunk_rows == default < 65536  # cut small by default
        self.chunk_rows = positive_int(chunk_rows, "chunk_rows")
        super().__init__(seed=seed, shuffle=shuffle, window=window, validation_fraction=validation_fraction,
                         standardize=standardize, prefetch=prefetch)
        self._ready(chunk_sizes(self.x.rows, self.chunk_rows), device, dtype, small=small)
        if self.w is not None:
            self._take_weights(self.w.path)

    def _transposed(self) -> str:
        """Which file looks saved with its rows and columns swapped, where one does (y of shape (1, n) saved as it
        was: rows are examples)."""
        for file, other in ((self.y, self.x), (self.x, self.y)):
            if file.columns == other.rows and file.rows != other.rows and file.columns > 1:
                return (f"; {file.path} is {file.rows} x {file.columns}, which looks transposed (rows are "
                        f"examples): save its transpose, numpy.save(path, a.T)")
        return ""

    def _close_files(self):
        for file in (self.__dict__.get("x"), self.__dict__.get("y"), self.__dict__.get("w")):
            if file is not None:
                file.close()

    @property
    def stored_dtype(self):
        return numpy.result_type(self.x.dtype, self.y.dtype)

    def batches(self, epoch, batch_size, first_batch=0):
        self._check_open()
        for file in (self.x, self.y, self.w):  # a file cut short since the last epoch fails here, before any step
            if file is not None:
                file.check_size()
        yield from super().batches(epoch, batch_size, first_batch)

    def _fill(self, k, X, Y):
        self._fill_rows(k, 0, self.chunk_sizes[k], X, Y)

    def _fill_rows(self, k, lo, hi, X, Y):
        """Rows [lo, hi) of chunk k (a data-parallel rank's shard may start or end inside a chunk)."""
        start = k * self.chunk_rows + lo
        self.x.read(start, X)
        self.y.read(start, Y)

    def _fill_weights(self, k, w):
        self.w.read(k * self.chunk_rows, w[:, None])

    def _weights_where(self, k):
        start = k * self.chunk_rows
        return f"{self.w.path} (rows {start}-{start + self.chunk_sizes[k] - 1})"

    def _where(self, k):
        start = k * self.chunk_rows
        return f"{self.x.path} / {self.y.path} (rows {start}-{start + self.chunk_sizes[k] - 1})"

    def _not_finite(self, k, role, row, column, dtype, scaled=None):
        from .errors import not_finite_value

        file, row = (self.x if role == "features" else self.y), k * self.chunk_rows + row
        try:
            number = file.value(row, column)
        except DataError:  # cut short since: said by the chunk's count
            return ""
        return not_finite_value(file.path, row, column, number, dtype, scaled)

    def _name(self):
        return self.x.path

    def _describe(self):
        described = {"x_path": os.path.abspath(self.x.path), "y_path": os.path.abspath(self.y.path),
                     "chunk_rows": self.chunk_rows, "n_features": self.n_features, "n_outputs": self.n_outputs}
        if self.w is not None:
            described["w_path"] = os.path.abspath(self.w.path)
        return described

    def _content_files(self):
        files = (self.x, self.y) if self.w is None else (self.x, self.y, self.w)
        return [f.path if f._fd is None else f._fd for f in files]  # (the files read, as opened; closed: their names)


class IterableSource(Closable):
    """Any iterable of (X, Y) pieces, as a last resort, cut into batches of ``batch_size`` rows in order.

    No shuffle (the iterable decides the order) and no resume part-way through an epoch
    (``resumable`` is False): such a run's checkpoints are the ends of its epochs (a Ctrl-C part-way through
    one leaves the last epoch's file), and a resume from one is exact when the iterable gives the same
    pieces again. ``batches`` may also
    be a callable ``epoch -> iterable`` (called with 0 for the first epoch, as ``DataSource.batches`` is). A
    one-shot iterator serves one epoch (a fit of more is refused before it trains); pass ``rows`` with it.
    Errors name a piece as a batch counted from 1 in an epoch counted from 1 ("X of batch 1 (epoch 1)" for the
    first piece of the first; ``piece_words``), as the progress line and ``history["epoch"]`` count epochs: every
    message about a piece names both.
    ``standardize`` (as for the chunked sources) takes one more pass, over the first epoch's pieces, for
    the statistics, so it needs a list or a callable: a one-shot iterator is refused. A pass that ends, also
    early (a break, an error, ``close()``), closes the iterator it read, as ``yield from`` does: a generator's
    ``close()`` runs (its ``finally``), with the source's device current; an iterable's iterator, not the iterable.
    So do the passes besides the epochs' (the constructor's count, the statistics, a batch made again to name a
    value) when a refusal stops them: before the error reaches the caller, not when its traceback goes.
    ``close()`` (or the end of ``with data.iterable(...) as source:``) closes a one-shot iterator the source took and
    has not read to its end; a list's or a callable's iterators are closed by the passes, and the object given is
    yours and stays open. A closed source refuses to be read again (a ValueError).
    ``model.evaluate(source)``, ``score`` and ``predict`` read one more pass (``ordered_pieces``): epoch 0's pieces
    of a list or a callable, which can be read again; a one-shot iterator's only pass, so a one-shot iterator a fit
    or an evaluate has read is refused as exhausted.
    """

    resumable = False
    kind = "iterable"

    def __init__(self, batches, rows=None, n_features=None, n_outputs=None, standardize=False):
        self._make = batches if callable(batches) else (lambda epoch: batches)
        self._one_shot = not callable(batches) and iter(batches) is batches
        self.standardize = standardize_option(standardize)
        if self.standardize and self._one_shot:
            raise ValueError("standardize needs two passes over the data (one for the column statistics, one to "
                             "train) and an iterator can be read only once: pass a list or a callable "
                             "epoch -> iterable, or standardize the batches yourself")
        self._used = False
        self._first = None
        self._iterator = batches if self._one_shot else None  # the source's to close (close())
        self.backend = None
        self.dtype = None
        self.standardizer = None
        self.overflow_watch = OverflowWatch()  # pieces standardized on the device (gpunn.data.overflow)
        # checked before their truth is read: n_features=0 was taken from the first piece, and unchecked where all
        # three were given (0, "3" and 2.5 became widths)
        n_features, n_outputs = (None if n is None else positive_int(n, name)
                                 for n, name in ((n_features, "n_features"), (n_outputs, "n_outputs")))
        if rows is None or n_features is None or n_outputs is None:
            if self._one_shot and rows is None:
                raise ValueError("an iterator can be read only once: pass rows= (rows per epoch) with it, "
                                 "or pass a list or a callable epoch -> iterable")
            # the first epoch's pieces; the iterator read is closed when a refusal stops the count (no device known
            # here); a one-shot iterator only then: the source keeps it for the epoch
            items = batches if self._one_shot else iter(self._make(0))
            try:
                first, count = _shapes_and_rows([self._peek(items)] if self._one_shot else items)
            except BaseException:
                _close(items)
                raise
            if not self._one_shot:
                _close(items)
            rows = rows if rows is not None else count
            n_features = first[0][1] if n_features is None else n_features
            n_outputs = (first[1][1] if len(first[1]) == 2 else 1) if n_outputs is None else n_outputs
        self._rows = positive_int(rows, "rows")
        self.n_features, self.n_outputs = int(n_features), int(n_outputs)

    def _peek(self, iterator):
        try:
            self._first = next(iterator)
        except StopIteration:
            raise DataError("the iterator of batches is empty") from None
        return self._first

    @property
    def rows(self):
        return self._rows

    def __repr__(self):
        return f"IterableSource(rows={self.rows}, n_features={self.n_features}, n_outputs={self.n_outputs})"

    def close(self) -> None:
        """Close a one-shot iterator the source took and did not read to its end (a generator's ``finally`` runs);
        a second call does nothing. Reading the source afterwards raises a ValueError naming it. ``fit`` never
        closes a source it is given."""
        if not self._closed:
            self._closed = True
            self._first = None
            if self._iterator is not None and not self._used:  # (a pass that read it has closed it)
                _close(self._iterator)
            self._iterator = None

    def _name(self):  # (as a refusal names it)
        return f"of {self.rows:,} rows"

    def bind(self, backend, dtype):
        from .. import backend as _backend

        self._check_open()
        self.backend, self.dtype = _backend.resolve(backend), numpy.dtype(canonical_dtype(dtype))
        if self.standardize and self.standardizer is None:
            with self.backend.use(), self._reading(0) as items:
                self.standardizer = Standardizer.from_pieces(self._checked(items, 0), self.n_features,
                                                             self.n_outputs, targets=self.standardize is True)
        return self

    @contextlib.contextmanager
    def _reading(self, epoch):
        """The iterator of ``epoch``'s pieces (made with the source's device current), closed on leaving, also early
        (a refusal raised part-way, a break): as ``yield from`` closes it, not when the error's traceback goes."""
        with self.backend.use():  # a factory that makes device arrays at once makes them on this device
            items = iter(self._make(epoch))
        try:
            yield items
        finally:
            self.backend.close_on_device(items)

    def batches(self, epoch, batch_size, first_batch=0):
        self._check_open()
        if first_batch:
            raise ValueError("an iterable of batches cannot resume part-way through an epoch; "
                             "use an array, synthetic, npy, parquet or csv source for exact resumes")
        if self.backend is None:
            self.bind("auto", "float32")
        with self._pass(epoch) as pieces:  # also ended early: closed (the iterator read, not an iterable: a list)
            yield from self.backend.made_on_device(
                rebatch(self._scaled(self._checked(pieces, epoch), epoch), batch_size, self.backend.xp))

    def ordered_pieces(self):
        """Device (X, Y) of every piece of one pass, in the iterable's order, uncut, as training takes them
        (standardized where the source has statistics): epoch 0's for a callable, as the statistics pass reads; a
        one-shot iterator's one pass. ``evaluate``, ``score`` and ``predict`` on the source read it
        (gpunn.data.rawpass). Call ``bind`` first."""
        self._check_open()
        with self._pass(0) as pieces:
            yield from self.backend.made_on_device(self._scaled(self._checked(pieces, 0), 0))

    def refuse_epochs_past_its_pass(self, epochs):
        """A fit of more than one epoch on a one-shot iterator not yet read is refused before it trains: it trained
        the first epoch and then stopped, refused as exhausted, with its history lost."""
        if self._one_shot and not self._used and epochs > 1:
            raise ValueError(f"epochs={epochs} on a one-shot iterator of batches, which serves one pass: fit it with "
                             "epochs=1, or give data.iterable a list of (X, Y) batches or a callable epoch -> "
                             "iterable of them (data.iterable(lambda epoch: batches(epoch))), which it reads again "
                             "each epoch")

    @contextlib.contextmanager
    def _pass(self, epoch):
        """The iterator of ``epoch``'s pieces (``_reading``), after a one-shot iterator's first piece where the
        constructor read it; a one-shot iterator serves one pass, and is refused after it."""
        if self._one_shot:
            if self._used:
                raise DataError("the iterator of batches is exhausted (it served one pass: an epoch of fit, or an "
                                "evaluate, score or predict); pass a list or a callable epoch -> iterable to read "
                                "it again")
            self._used = True
        with self._reading(epoch) as items:
            if self._first is not None:  # a one-shot iterator's, read by the constructor
                first, self._first = self._first, None
                items = _chain_first(first, items)
            yield items

    def _scaled(self, pieces, epoch):
        """Pieces standardized (copies: the caller's arrays stay as they are) and cast, or as they are. A value
        standardized past the model's dtype is refused (``overflow_watch``, gpunn.data.overflow)."""
        refuse_at = functools.partial(self._refuse_standardized, epoch)  # of piece i: one per pass
        for i, (X, Y) in enumerate(pieces, 1):
            if self.standardizer is not None:
                X, Y = self._standardized(X, Y)  # Y too: float64 targets are cast, standardized or not
                self.overflow_watch.see(self.backend.xp, (X, Y), refuse_at, i)
            yield X, Y

    def _standardized(self, X, Y):
        """Checked (X, Y) standardized (in their dtype: float64 for values the model's would not hold exactly,
        ``_piece_dtype``), then cast to the model's: new arrays."""
        with numpy.errstate(over="ignore", invalid="ignore"):  # (on the host) refused by the watch
            X, Y = self.standardizer.transform_(self.backend.xp, X.copy(), Y.copy())
            return X.astype(self.dtype, copy=False), Y.astype(self.dtype, copy=False)

    def _refuse_standardized(self, epoch, i):
        """Raise NotFinite for the first value of batch ``i`` (from 1) of ``epoch`` (from 0) that standardizing
        takes past the model's dtype: the batch is made again (``batches`` given as a list or a callable:
        standardize=True refuses a one-shot iterator) and standardized on the host as the device does, with the
        value standardized in float64. The error's path only (gpunn.data.overflow)."""
        from ..checks import NotFinite, feature_names

        to_host = self.backend.to_host
        with self._reading(epoch) as items:
            for j, item in enumerate(items, 1):
                if j < i:
                    continue
                piece = piece_words(i, epoch)
                pair = _pair(item, piece)
                X, Y = self._checked_pair(*pair, piece)
                Xs, Ys = (to_host(A) for A in self._standardized(X, Y))
                for name, given, raw, out, target in zip("XY", pair, (X, Y), (Xs, Ys), (False, True)):
                    finite = numpy.isfinite(out)
                    if not finite.all():
                        row, col = (int(a) for a in numpy.argwhere(~finite)[0])
                        wide = numpy.array(to_host(raw[row:row + 1]), numpy.float64)
                        scaler = self.standardizer
                        (scaler.transform_y_ if target else scaler.transform_x_)(numpy, wide)
                        names = feature_names(given, f"{name} of {piece}")  # (a DataFrame piece's: as as_matrix's)
                        raise NotFinite(f"{name} of {piece}", int(out.size - finite.sum()), row, col, self.dtype.name,
                                        scaled=float(wide[0, col]), label=names[col] if names else None)
                break
        raise DataError(f"{piece_words(i, epoch)} of the iterable held a value standardized past {self.dtype.name}, "
                        "and made again it holds none (the iterable gives other batches now); clean or impute the data "
                        "first")

    def _piece_dtype(self, A):
        """The dtype a piece is checked in: float64 for pieces to be standardized that the model's dtype
        would not hold exactly (gpunn.data.stats.standardizing_dtype), else the model's."""
        if not (self.standardize or self.standardizer is not None):
            return self.dtype
        return standardizing_dtype(dtype_of(A), self.dtype)

    def _checked_pair(self, X, Y, piece):
        """One piece's (X, Y) as checked matrices; a refusal names it by ``piece`` (piece_words)."""
        X = as_matrix(X, f"X of {piece}", self.backend, self._piece_dtype(X), n_columns=self.n_features)
        Y = as_matrix(Y, f"Y of {piece}", self.backend, self._piece_dtype(Y), allow_1d=True, n_columns=self.n_outputs)
        if X.shape[0] != Y.shape[0]:
            raise DataError(f"{piece}: X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        return X, Y

    def _checked(self, items, epoch):
        """The pieces of ``epoch`` (from 0) as checked matrices; a refusal names the piece (piece_words)."""
        count = 0
        for i, item in enumerate(items, 1):
            piece = piece_words(i, epoch)
            X, Y = self._checked_pair(*_pair(item, piece), piece)
            count += X.shape[0]
            yield X, Y
        if count != self.rows:
            again = "" if count else (": an iterator read to its end gives nothing more; pass a list, or a callable "
                                      "that makes a new iterator each call (a generator function)")
            raise DataError(f"the iterable gave {count} rows in epoch {int(epoch) + 1}; rows={self.rows} was "
                            f"expected{again}")

    def validation_windows(self):
        """No windows: an iterable has no chunks to hold out. A closed source refuses, as its passes do."""
        self._check_open()
        return iter(())

    @property
    def validation_rows(self):
        return 0

    def config(self) -> dict:
        return {"kind": self.kind, "rows": self.rows, "n_features": self.n_features, "n_outputs": self.n_outputs,
                "standardize": self.standardize, "resumable": False}


def piece_words(i, epoch) -> str:
    """Piece ``i`` (from 1) of ``epoch`` (from 0, as ``batches`` takes it) of an iterable source, in the words of its
    messages: "batch 3 (epoch 2)", both counted from 1 as the progress line counts epochs."""
    return f"batch {i} (epoch {int(epoch) + 1})"


def _pair(item, piece):
    """An item of an iterable source (``piece``: piece_words) as (X, Y), or a DataError saying what it is instead (a
    bare array, a triple, None, a dict: Python's "too many values to unpack" named neither the item nor what to
    pass). A dict or a string of two is refused too (it unpacks into its keys or characters)."""
    if not isinstance(item, (dict, str, bytes)):
        try:
            X, Y = item
            return X, Y
        except (TypeError, ValueError):
            pass
    what = f"an array of shape {item.shape}" if isinstance(item, numpy.ndarray) else (
        f"{a_type(item)} of {len(item)}" if hasattr(item, "__len__") else repr(item))
    raise DataError(f"{piece} of the iterable must be an (X, Y) pair; got {what}")


def _shapes_and_rows(pieces):
    """(the shapes of the first piece's X and Y, the rows of all) of an iterable source's first epoch (``pieces``)."""
    first, count = None, 0
    for i, item in enumerate(pieces, 1):
        piece = piece_words(i, 0)
        X, Y = _pair(item, piece)
        shapes = (as_array(X, f"X of {piece}").shape, as_array(Y, f"Y of {piece}").shape)
        if len(shapes[0]) != 2 or len(shapes[1]) not in (1, 2):  # sizes are read from them by the caller
            name, shape = ("X", shapes[0]) if len(shapes[0]) != 2 else ("Y", shapes[1])
            also = ", or 1-D" if name == "Y" else ""
            raise ValueError(f"{name} of {piece} must be 2-D (rows x columns{also}); got shape {shape}")
        first = first or shapes
        count += shapes[0][0]
    if first is None:
        raise DataError("the iterable of batches is empty")
    return first, count


def _close(items):
    """``items.close()`` where it has one (a generator: its ``finally`` runs), with the device current as it is."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _chain_first(first, rest):
    yield first
    yield from rest

