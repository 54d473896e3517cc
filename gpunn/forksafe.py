"""A lock that a forked child gets anew.

A child forked (``os.fork``, a ``multiprocessing`` pool with Linux's default start) has only the thread that
forked: a lock another thread held at that moment stays held in the child for ever, and the child's first
``with`` on it waits for ever. A :class:`ForkSafeLock` holds a ``threading.Lock`` that the child replaces with a new
one, before any of its code runs (``os.register_at_fork``, one hook for every ForkSafeLock of the process).

Take it with ``with x.current:``. The ``with`` statement reads ``x.current`` once and releases the very lock it
acquired, so a fork inside the block is safe too: the parent releases its lock; the child releases its copy of
that same lock, which it then drops, and leaves the new one alone (a wrapper whose ``__exit__`` released "the
current lock" would release the child's new one instead). ``current`` is a plain ``threading.Lock``, taken and
released in C: no cost beyond an attribute read, and no point between acquiring and entering the block where a
``KeyboardInterrupt`` could leave it held (as a ``__enter__`` written in Python has). Keep ``x``, never
``x.current``: a lock kept is the one the child does not renew.
"""
from __future__ import annotations

import os
import threading
import weakref

__all__ = ["ForkSafeLock"]


class ForkSafeLock:
    """A ``threading.Lock`` (``current``) that a forked child replaces with a new one; see the module docstring."""

    __slots__ = ("current", "__weakref__")

    def __init__(self):
        self.current = threading.Lock()
        _RENEWED_IN_CHILD.add(self)


_RENEWED_IN_CHILD: weakref.WeakSet = weakref.WeakSet()  # weak: an instance's lock (a data source's) goes with it


def _renew_all():
    for lock in _RENEWED_IN_CHILD:
        lock.current = threading.Lock()


os.register_at_fork(after_in_child=_renew_all)
