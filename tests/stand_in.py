"""Whether the module in use as ``cupy`` is tests/fakecupy, the NumPy stand-in (GPUNN_FAKE_CUPY=1, or its second copy
under =gpu): for the tests that read its records (launches, generators) or that only it or only CuPy can run (a plain
module, so that no test module imports another)."""


def is_stand_in(xp) -> bool:
    """``xp`` (cupy, a backend's ``xp``, or None) is the stand-in: its version ends "-fake" (tests/fakecupy's
    __version__, "14.0.0-fake")."""
    return str(getattr(xp, "__version__", "")).endswith("-fake")
