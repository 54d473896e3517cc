"""Print the pip extras that match this machine's NVIDIA driver: ",cuda13,nvrtc" (CUDA 13 driver),
",cuda12" (CUDA 12 driver), else ",nvrtc" (no driver: NVRTC alone, for the kernel compile tests).
With --train, the CuPy extra alone (",cuda13", ",cuda12" or nothing): `make train` compiles no test kernels.

Used by the Makefile so that `make train` and `make test` on a GPU machine install the matching CuPy and toolkit.
"""
import re
import shutil
import subprocess
import sys

smi = shutil.which("nvidia-smi")
if smi:
    try:
        text = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    match = re.search(r"CUDA Version:\s*(\d+)", text)
    major = int(match.group(1)) if match else 0
else:
    major = 0
if "--train" in sys.argv[1:]:
    print(",cuda13" if major >= 13 else ",cuda12" if major == 12 else "", end="")
elif major >= 13:
    print(",cuda13,nvrtc", end="")  # the CUDA 13 NVRTC the compile tests use is the one CuPy uses
elif major == 12:
    print(",cuda12", end="")  # no CUDA 13 NVRTC beside CuPy's CUDA 12 toolkit
else:
    print(",nvrtc", end="")  # no GPU (CI): the compile tests still compile every kernel with NVRTC
