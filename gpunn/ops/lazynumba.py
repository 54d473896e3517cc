"""Numba, imported at the first call of a CPU kernel rather than at ``import gpunn``.

Numba's import takes 0.3 s (of a 0.6-1 s ``import gpunn``), which every command paid, ``gpunn --help`` and a GPU
run among them (``gpunn info`` still imports it, to tell whether it imports: :func:`load`). A module's kernels are
defined by a function, ``@kernels(names)`` ``def _define():``, whose ``global`` statement binds them as module
globals: their ``__qualname__`` is their name and they are defined in the module's file, so Numba's on-disk cache
(``cache=True``) finds them as before. Until the first call each name is a
:class:`Stub` that runs the definitions and forwards the call. gpunn.ops.cpu.CpuOps calls none before the kernels
pay for Numba's start (NUMBA_START_SECONDS there): a short run never imports it.

``numba`` is None where Numba is not installed, else a stand-in whose attributes are Numba's (importing it). Where
Numba is installed but does not import, the CPU ops find it out before their first kernel call and run the NumPy
reference with a warning, or refuse where the kernels were asked for (gpunn.ops.cpu.fused_kernels); a kernel called
otherwise raises ImportError with Numba's reason.

Numba's on-disk cache of a kernel checks only the file that defines it (numba/numba#1833), while ensemble.py's
kernels inline cpu.py's and call cblas.py's and ufuncs.py's intrinsics, and every kernel compiles in the constants
it reads. So each kernel's cache is also keyed on a hash of SOURCES (:func:`key_cache`): where one of those files
changed, every kernel's cached code is found stale and compiled anew, into the same cache files.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
import time

from ..forksafe import ForkSafeLock

_HOOKS: list = []  # called as hook(seconds) once Numba is imported, with the seconds its import took
# the modules gpunn's kernels are compiled from: their code (ensemble's kernels inline cpu's; cblas's and ufuncs'
# intrinsics), and the constants they read (member_rates' table columns; activations' kernel ids, through ensemble)
SOURCES = ("gpunn.activations", "gpunn.ops.cblas", "gpunn.ops.cpu", "gpunn.ops.ensemble", "gpunn.ops.member_rates",
           "gpunn.ops.ufuncs")
_DIGEST: list = []  # sources_digest(), once per process


class _Numba:
    """The numba module, imported at the first attribute read."""

    def __getattr__(self, name):
        return getattr(load(), name)

    def __repr__(self):
        return "<numba, imported on first use>" if "numba" not in sys.modules else repr(sys.modules["numba"])


numba = _Numba() if importlib.util.find_spec("numba") is not None else None


def version() -> str:
    """Numba's version, read without importing it where it is not yet imported."""
    mod = sys.modules.get("numba")
    if mod is not None:
        return mod.__version__
    from importlib import metadata

    try:
        return metadata.version("numba")
    except metadata.PackageNotFoundError:  # pragma: no cover - found on the path, not installed as a distribution
        return load().__version__


def imported() -> bool:
    """Whether Numba is imported in this process (by gpunn or anyone), without importing it."""
    return "numba" in sys.modules


def load():
    """Imports Numba (where it is not yet imported), telling the hooks (on_import) the seconds it took."""
    mod = sys.modules.get("numba")
    if mod is not None and not _HOOKS:
        return mod
    start = time.monotonic()
    import numba as mod
    seconds = time.monotonic() - start
    while True:  # list.pop is atomic: two threads that import at once call each hook once between them
        try:
            hook = _HOOKS.pop(0)
        except IndexError:
            return mod
        hook(seconds)


def on_import(hook) -> bool:
    """Calls ``hook(seconds)`` when Numba is imported by load(); False (nothing registered) where it already is."""
    # registered, then looked at: looked at first, a load() on another thread could import Numba and empty the list
    # between the look and the append, and the hook would wait for good. Now a load() that empties the list after
    # the append calls it; one that emptied it before had imported Numba, which the look sees: the hook is taken
    # back, unless a load() took it meanwhile (and calls it)
    _HOOKS.append(hook)
    if "numba" not in sys.modules:
        return True
    try:
        _HOOKS.remove(hook)
    except ValueError:  # a load() took it
        return True
    return False


def forget(hook):
    """Unregisters a hook of on_import that has not been called."""
    try:
        _HOOKS.remove(hook)
    except ValueError:  # called, or never registered
        pass


def sources_digest() -> str:
    """The SHA-256 of the SOURCES' files as this process finds them (read once per process, at the first kernel
    definition: 0.25 ms). A file its loader cannot read (a frozen application's) adds only its name: there Numba's
    own stamp is the executable's."""
    if not _DIGEST:
        digest = hashlib.sha256()
        for name in SOURCES:
            spec = importlib.util.find_spec(name)
            try:
                text = spec.loader.get_data(spec.origin)
            except (AttributeError, OSError):
                text = b""
            digest.update(b"%s %d\n%s" % (name.encode(), len(text), text))
        _DIGEST.append(digest.hexdigest())
    return _DIGEST[0]


def key_cache(kernel):
    """Keys a kernel's on-disk cache (``cache=True``) on sources_digest() too. Numba loads a kernel from its index
    file only where the stamp stored there is the one it makes now (of the kernel's own file), else starts the index
    afresh, its new entries overwriting the old files: that stamp becomes (Numba's, the digest) here (the index's
    private ``_source_stamp``, as in Numba 0.68 and earlier). A Numba whose cache has no such stamp has it turned
    off instead: kernels compiled in each process rather than run stale. Where Numba caches is its own choice."""
    cache = getattr(kernel, "_cache", None)
    index = getattr(cache, "_cache_file", None)
    if hasattr(index, "_source_stamp"):
        index._source_stamp = (index._source_stamp, sources_digest())
    elif hasattr(cache, "disable"):
        cache.disable()


class Stub:
    """A kernel's name before its definition: calling it defines the module's kernels, then calls the kernel."""

    def __init__(self, name, ensure):
        self.name, self.ensure, self.target = name, ensure, None

    def __call__(self, *args, **kwargs):
        if self.target is None:
            self.ensure()
        return self.target(*args, **kwargs)

    def __repr__(self):
        return f"<gpunn kernel {self.name}, defined at its first call>"


def kernels(names):
    """Decorates a module's ``_define()`` (which binds ``names`` as globals): binds a Stub to each name now and returns
    ``ensure()``, which runs ``_define()`` once (under a lock: threads may call kernels at once; a forked child gets a
    new one) and returns the kernels it defined, by name, their caches keyed on SOURCES (key_cache). A name set on the
    module meanwhile (a test's monkeypatch) is kept there; another module's kernels that call these take them from
    ``ensure()``, not from the module."""

    def decorate(define):
        g, lock, done = define.__globals__, ForkSafeLock(), []
        stubs = {name: Stub(name, None) for name in names}

        def ensure():
            if done:
                return done[0]
            with lock.current:
                if done:
                    return done[0]
                try:
                    load()
                except ImportError as exc:  # installed, but it does not import (a NumPy newer than it supports)
                    raise ImportError(f"gpunn's fused CPU kernels need Numba, which is installed but does not import "
                                      f"({exc}); GPUNN_FUSED_KERNELS=0 runs the NumPy reference without it") from exc
                kept = {name: g[name] for name in names if g.get(name) is not stubs[name]}
                define()
                defined = {name: g[name] for name in names}
                for kernel in defined.values():
                    key_cache(kernel)
                for name, stub in stubs.items():
                    stub.target = defined[name]
                g.update(kept)
                done.append(defined)
                return defined

        for stub in stubs.values():
            stub.ensure = ensure
        g.update(stubs)
        return ensure

    return decorate
