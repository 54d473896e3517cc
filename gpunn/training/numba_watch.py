"""The seconds Numba spends loading or compiling gpunn's CPU kernels (:func:`numba_seconds`): the progress says
them beside an epoch's rate and leaves them out of the time left (:class:`gpunn.training.progress.ProgressBar`),
and bench/first_epoch.py measures them.
"""
from __future__ import annotations

import sys
import threading
import time

__all__ = ["numba_seconds"]


def numba_seconds(say_compiling=None):
    """A function that reads the seconds Numba has spent loading or compiling kernels since this call, in any thread
    (the time some thread waited for or held Numba's compiler lock, from a wait that starts after this call: a
    kernel's first call in a process takes it, whether its cache holds the kernel or not, and Numba's start,
    0.3-0.8 s, happens there), and the seconds of
    Numba's import where a kernel's first call imports it (gpunn.ops.lazynumba); None without Numba.
    ``say_compiling()`` is called at the first compile from now on (a kernel its cache holds is loaded, with no
    "numba:compile" event; ``reader.compiles`` counts those). Numba's documented event API, listened to from Numba's
    import on; ``reader.stop()`` stops listening."""
    from ..ops import lazynumba

    if lazynumba.numba is None and "numba" not in sys.modules:  # not installed: nothing compiles
        return None
    watch = _NumbaWatch(say_compiling)
    if not lazynumba.on_import(watch.imported):
        watch.listen()
    return watch


_NUMBA_EVENTS = ("numba:compile", "numba:compiler_lock")  # what _NumbaWatch listens to, from listen() to stop()


class _NumbaWatch:
    # the lock's events nest (a kernel's load takes it again inside) and come from several threads (an
    # ensemble's member groups): the clock runs while any is open. Each is counted on its thread, which both its
    # events come from (Numba's compiler lock is an RLock, released where taken): an end whose start came before
    # listen() is not counted against another thread's open one
    def __init__(self, say_compiling):
        self.say_compiling, self.listener = say_compiling, None
        self.said, self.open, self.since, self.seconds, self.compiles = False, 0, 0.0, 0.0, 0
        self.depth = {}  # thread ident -> its lock events open, of those whose start this watch saw
        self.guard, self.stopped = threading.Lock(), False

    def imported(self, seconds):
        """lazynumba's hook: Numba was imported (by a kernel's first call), taking ``seconds``."""
        with self.guard:
            self.seconds += seconds
        self.listen()

    def listen(self):
        from numba.core import event

        watch = self

        class Listener(event.Listener):
            def on_start(self, ev):
                watch.on_start(ev)

            def on_end(self, ev):
                watch.on_end(ev)

        # under the guard, as stop() reads the listener: a fit ending on its thread while a kernel's first call on
        # another imports Numba (lazynumba.load has taken this hook, not yet called it) leaves no listener behind
        with self.guard:
            if self.stopped:
                return
            self.listener = Listener()
            for kind in _NUMBA_EVENTS:
                event.register(kind, self.listener)

    def on_start(self, ev):
        if ev.kind == "numba:compile":
            self.compiles += 1
            if not self.said and self.say_compiling is not None:
                self.said = True
                self.say_compiling()
            return
        thread = threading.get_ident()
        with self.guard:
            self.depth[thread] = self.depth.get(thread, 0) + 1
            self.open += 1
            if self.open == 1:
                self.since = time.monotonic()

    def on_end(self, ev):
        if ev.kind == "numba:compile":
            return
        thread = threading.get_ident()
        with self.guard:
            if not self.depth.get(thread):  # its start came before listen() (another thread held the lock then)
                return
            self.depth[thread] -= 1
            self.open -= 1
            if self.open == 0:
                self.seconds += time.monotonic() - self.since

    def __call__(self):
        with self.guard:
            return self.seconds + (time.monotonic() - self.since if self.open else 0.0)

    def stop(self):
        from ..ops import lazynumba

        lazynumba.forget(self.imported)
        with self.guard:
            self.stopped, listener, self.listener = True, self.listener, None
        if listener is not None:
            from numba.core import event

            for kind in _NUMBA_EVENTS:
                event.unregister(kind, listener)
