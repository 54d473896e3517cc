"""The CuPy calls a run makes on tests/fakecupy, keyed as CuPy keys the kernel it compiles at an operation's first
call (for the tests that check a timed window makes no first call: a compile timed)."""
from __future__ import annotations

import numpy


def record_cupy_calls(fake_cupy, monkeypatch) -> list:
    """A list that gets (operation, key of each operand) at every CuPy call from now on. The key is what CuPy
    compiles a kernel per (cupy/_core/_kernel.pyx, ``_ArgInfo``: dtype, ndim, c_contiguous, index_32_bits; kept in
    ~/.cupy/kernel_cache, empty on a fresh GPU machine): an array's dtype, dimensions and layout, another argument's
    type."""
    seen, issue = [], fake_cupy._issued

    def key(x):
        if isinstance(x, fake_cupy.ndarray):
            return x.dtype.str, x.ndim, x.flags.c_contiguous
        return x.dtype.str if isinstance(x, numpy.generic) else type(x).__name__

    def recorded(what, operands, writes=()):
        seen.append((what, tuple(key(x) for x in operands)))
        return issue(what, operands, writes)

    # every launch the stand-in issues (``_issued``: what CuPy launches, so compiles, and not what it returns from
    # before launching, such as a kernel over an empty shape: stand24's ecd8630)
    monkeypatch.setattr(fake_cupy, "_issued", recorded)
    return seen
