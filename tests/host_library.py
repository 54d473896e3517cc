"""Building a kernel header's host harness: g++ turns a C++ file (which includes kernels/*.cuh or .cu) into a
shared library for ctypes, or the test skips where there is no C++17 compiler."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def build_host_library(tmp_path_factory, source: Path, name: str, flags: list[str], what: str):
    """(path, ctypes.CDLL) of ``source`` compiled with ``flags``; the compiler's errors in the failure."""
    gxx = shutil.which("g++")
    if gxx is None:
        import pytest

        pytest.skip(f"g++ not found: {what} needs a C++17 compiler")
    lib = tmp_path_factory.mktemp(name) / f"lib{name}.so"
    cmd = [gxx, "-std=c++17", *flags, "-fPIC", "-shared", f"-I{KERNELS}", str(source), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return lib, ctypes.CDLL(str(lib))
