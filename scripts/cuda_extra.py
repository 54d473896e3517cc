"""Print the pip extra that matches this machine's NVIDIA driver (",cuda12" / ",cuda13"), or nothing.

Used by the Makefile so that `make train` on a GPU machine installs the matching CuPy.
"""
import re
import shutil
import subprocess

smi = shutil.which("nvidia-smi")
if smi:
    try:
        text = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    match = re.search(r"CUDA Version:\s*(\d+)", text)
    if match and int(match.group(1)) >= 13:
        print(",cuda13", end="")
    elif match and int(match.group(1)) == 12:
        print(",cuda12", end="")
