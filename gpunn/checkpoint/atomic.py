"""Writing a file atomically: into a temp file beside it, made durable, then renamed over it (checkpoints, and
the configs, reports and prediction files gpunn writes)."""
from __future__ import annotations

import os
import tempfile

from ..preflight import writes_in_place


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _remove_stale_temps(directory, base, own=False) -> None:
    """Delete temp files an earlier, killed writer of ``base`` left behind (named ``.BASE.PID.*.tmp``,
    PID no longer running); ``own``: this process's instead (one write to a path at a time)."""
    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or (int(pid) == os.getpid()) != own:
            continue
        if not own:
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


def _naming(exc: OSError, path) -> OSError:
    """The same error, saying which file could not be written (not the temp file's name)."""
    message = f"cannot write {path}: {exc.strerror or exc}"
    try:
        return type(exc)(exc.errno, message) if exc.errno else type(exc)(message)
    except TypeError:  # an OSError subclass with another constructor
        return OSError(exc.errno, message) if exc.errno else OSError(message)


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, make it durable, then rename over ``path``.

    The temp file (``.NAME.PID.random.tmp``) is removed on any failure, Ctrl-C included, and one left
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
            raise _naming(exc, path) from None
        return
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temps(directory, base)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _naming(exc, path) from None
    except BaseException:  # Ctrl-C inside mkstemp, once it had made the file (its open may block on a busy
        _remove_stale_temps(directory, base, own=True)  # disk): its name never came back, so by pattern
        raise
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
        except OSError as exc:
            raise _naming(exc, path) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
