"""Writing a file atomically: into a temp file beside it, made durable, then renamed over it (checkpoints, and
the configs, reports and prediction files gpunn writes)."""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
import socket

from .preflight import directory_named, writes_in_place

# A temp file is opened as a plain open() makes a file (mode 0o666, less what the umask and a default ACL take), not
# mkstemp's 0o600 changed to 0o666 & ~umask at the end: the umask is read portably only by setting it, process-wide (a
# moment in which other threads' new files were made world-writable), and one read at import went stale where the
# process changed it later. O_EXCL and O_NOFOLLOW keep mkstemp's guarantees: a new file, never another's link.
_TEMP_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))

# Begins the random part of this process's temp files' names, after its PID: a temp file of this PID without it was
# left by an earlier process that had the same PID, which a container's program does (PID 1 at every restart), and
# is removed as a killed writer's is (it stayed, never removed by the restarted program's writes).
_PROCESS_MARK = secrets.token_hex(4)

# This machine, in its temp files' names after the PID (.NAME.PID-HOST.*.tmp; a hash: a host name holds dots): on
# storage that machines share (NFS, Lustre) another machine's writer has a PID that says nothing here, and its temp
# file, its PID running on no process of this machine, was removed as a killed writer's, under its write.
_HOST = hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()


def _remove_stale_temps(directory, base, own=False) -> None:
    """Delete temp files an earlier, killed writer of ``base`` on this machine left behind (named ``.BASE.PID-HOST.*.tmp``,
    HOST this machine's (_HOST; a name without one, of a gpunn before it, is taken as this machine's), PID no longer
    running, or this process's PID without its mark); ``own``: this process's instead (one write to a path at a time).
    Another machine's are left: its PIDs are not this one's."""
    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        writer, _, rest = name[len(prefix):].partition(".")
        pid, _, host = writer.partition("-")
        if not pid.isdigit() or host not in ("", _HOST):
            continue
        if int(pid) == os.getpid():
            if not own and rest.startswith(_PROCESS_MARK):
                continue  # this process's own write, under way in another thread
        elif own:
            continue
        else:
            try:
                os.kill(int(pid), 0)
                continue  # that writer is still running
            except ProcessLookupError:
                pass
            except OSError:  # exists but is not ours (EPERM): leave it
                continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def temp_beside(path) -> tuple[int, str]:
    """(fd, name) of a new temp file beside ``path``, ``.NAME.PID-HOST.MARKrandom.tmp`` (_HOST, _PROCESS_MARK), open for
    writing, with the mode a plain open gives a new file there (see _TEMP_FLAGS); those a killed writer of ``path``
    left are removed first. Errors name ``path``."""
    path = os.fsdecode(path)
    not_a_file = _not_a_file_name(path)
    if not_a_file:  # (refused before the write: a directory was found only by the rename after it)
        raise not_a_file
    directory, base = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    _remove_stale_temps(directory, base)
    prefix = os.path.join(directory, f".{base}.{os.getpid()}-{_HOST}.")
    try:
        for _ in range(100):
            tmp = f"{prefix}{_PROCESS_MARK}{secrets.token_hex(4)}.tmp"
            try:
                return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, f"no free temp file name {prefix}*.tmp in 100 tries")
    except OSError as exc:
        raise naming(exc, path) from None
    except BaseException:  # Ctrl-C inside the open, once it had made the file (it may block on a disk busy with
        _remove_stale_temps(directory, base, own=True)  # the last write's fsync): its name never came back, so by
        raise  # pattern


def _not_a_file_name(path: str) -> OSError | None:
    """The error of a write to ``path`` where it names no file: empty, a directory, or a name ending in a separator
    (a directory's), in the words of gpunn train --save's refusal (gpunn.save(directory) said "[Errno 21] cannot write
    DIR: Is a directory"); None for a file's name."""
    if not path:
        return FileNotFoundError(errno.ENOENT, "cannot write '': the name is empty; give a file name")
    named = directory_named(path)
    return IsADirectoryError(errno.EISDIR, f"cannot write {path}: it {named}; give a file name") if named else None


def naming(exc: OSError, path) -> OSError:
    """The same error, saying which file could not be written (not the temp file's name)."""
    message = f"cannot write {path}: {exc.strerror or exc}"
    try:
        return type(exc)(exc.errno, message) if exc.errno else type(exc)(message)
    except TypeError:  # an OSError subclass with another constructor
        return OSError(exc.errno, message) if exc.errno else OSError(message)


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, make it durable, then rename over ``path``.

    The temp file (``.NAME.PID-HOST.MARKrandom.tmp``: temp_beside) is removed on any failure, Ctrl-C included, and one left
    by a killed process is removed by the next write to the same path. Errors name ``path``, not the
    temp file. A device, pipe or terminal (:func:`writes_in_place`) is written into directly. ``path`` may be
    str, bytes or a path object.
    """
    path = os.fsdecode(path)  # a bytes name failed below, mixing bytes and str ("startswith first arg must be bytes")
    if writes_in_place(path):
        try:
            with open(path, "wb") as fh:
                write(fh)
        except OSError as exc:
            raise naming(exc, path) from None
        return
    fd, tmp = temp_beside(path)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise naming(exc, path) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(os.path.dirname(tmp))


def fsync_directory(directory) -> None:
    """Make a rename into ``directory`` durable (where the system can: errors are ignored)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def new_figure(**options):
    """A matplotlib figure of no pyplot's (``options``: Figure's, figsize and dpi), for a plot to write with
    :func:`save_figure`: drawing it picks no backend and opens no window. The plots called ``matplotlib.use("Agg")``
    and drew with pyplot, which switched the backend of the process they ran in: in a notebook, after
    ``%run -m gpunn train --plot loss.png``, every later ``plt.show()`` showed nothing."""
    from matplotlib.figure import Figure

    return Figure(**options)


def save_figure(fig, path, **options) -> None:
    """A matplotlib figure (:func:`new_figure`'s) written to ``path`` as :func:`atomic_write` writes a file, in the
    format its name ends in (.png, .pdf, .svg; ``options``: savefig's): a Ctrl-C or a full disk part-way leaves an
    earlier plot of that name whole, where savefig(path) had cut it short. (No pyplot holds the figure: nothing to
    close.)"""
    kind = os.path.splitext(os.fsdecode(path))[1].lstrip(".").lower() or None
    atomic_write(path, lambda fh: fig.savefig(fh, format=kind, **options))
