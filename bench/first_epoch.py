"""Why a run's first epoch is slow on the CPU with a warm Numba cache, against its second epoch in the same process.

    python bench/first_epoch.py [RUNS]          # default 5 fresh processes; prints the median of each figure

Each run is a fresh Python process (what `gpunn train` is) that trains the CLI's default small case, `gpunn train
--rows 2000 --epochs 2 --hidden 16 --device cpu` (teacher task, 32 features, 1,800 training and 200 validation
rows, batch 256, Adam), twice over: once as a user's fit (epoch 1 pays the process's one-time costs), once with
those costs paid first, one by one, so that each is timed alone: Numba's import (at the first kernel call since
gpunn.ops.lazynumba, no longer in `import gpunn`), SciPy's import (Numba's target imports
scipy.linalg where it is installed, to find a BLAS), Numba's start (its CPU target loads its implementation
registries on the first kernel it compiles or loads from its cache), gpunn's BLAS probe (gpunn.ops.cblas: one
cached kernel loaded and run), then the fit. An epoch's time is on_epoch_begin to on_epoch_end (training and
validation, as the progress line's rate); "numba" is the time Numba's import took in it and the time Numba held its
compiler lock in it (loading or compiling kernels). One untimed run comes first, so that Numba's cache is warm (a
cold cache's run compiles the kernels: its first epoch takes a minute) and the files are read. The machine is
shared: compare epoch 1 with epoch 2 of the same process, and read the medians with the load average printed beside
them (the two kinds of run alternate, so that the load's drift falls on both). Both take the kernels from the first
op on (gpunn.ops.cpu.NUMBA_START_SECONDS = 0): by default so short a fit never imports Numba. Results:
bench/RESULTS.md.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from script_args import count_argument, refusals_said

CHILD = r"""
import json, sys, time
t = time.perf_counter()
import gpunn
out = {"import_gpunn": time.perf_counter() - t}
from gpunn.ops import cpu
cpu.NUMBA_START_SECONDS = 0  # the kernels from the first op on, as before a short fit left Numba unimported
from gpunn.training.callbacks import Callback, numba_seconds
mode = sys.argv[1]
if mode == "parts":
    t = time.perf_counter()
    import numba  # gpunn imports it at a CPU kernel's first call (gpunn.ops.lazynumba)
    out["numba_import"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        import scipy.linalg  # what Numba's target imports first (numba.np.linalg.ensure_blas)
    except ImportError:
        pass
    out["scipy_import"] = time.perf_counter() - t
    from numba.core.registry import cpu_target
    t = time.perf_counter()
    cpu_target.target_context.refresh()  # Numba's start: what its first cached kernel's load does first
    out["numba_start"] = time.perf_counter() - t
    from gpunn.ops.cblas import numpy_blas
    import numpy
    t = time.perf_counter()
    numpy_blas(numpy.float32)
    out["blas_probe"] = time.perf_counter() - t

class Epochs(Callback):
    def __init__(self):
        self.times, self.numba, self.lock = [], [], numba_seconds()
    def on_epoch_begin(self, trainer, epoch):
        self.t, self.n = time.perf_counter(), self.lock()
    def on_epoch_end(self, trainer, epoch, logs):
        self.times.append(time.perf_counter() - self.t)
        self.numba.append(self.lock() - self.n)

X, Y = gpunn.datasets.make("teacher", n_samples=2000, n_features=32, seed=0, device="cpu")
model = gpunn.MLP([32, 16, 1], seed=0, device="cpu")
cb = Epochs()
t = time.perf_counter()
model.fit(X[:1800], Y[:1800], validation_data=(X[1800:], Y[1800:]), epochs=2, batch_size=256, optimizer="adam",
          lr=1e-3, seed=0, verbose=False, callbacks=[cb])
out["fit"] = time.perf_counter() - t
out["epoch1"], out["epoch2"] = cb.times
out["epoch1_numba"], out["epoch2_numba"] = cb.numba
print(json.dumps(out))
"""


def runs(mode, n):
    results = []
    for _ in range(n):
        done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def median(results, key):
    return statistics.median(r[key] for r in results)


def setup():
    import numba
    import numpy

    try:
        import scipy
        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = "not installed"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}, NumPy "
            f"{numpy.__version__}, Numba {numba.__version__}, SciPy {scipy_version}; NUMBA_CACHE_DIR="
            f"{os.environ.get('NUMBA_CACHE_DIR', '(unset: __pycache__ beside gpunn)')}")


def main(argv):
    n = count_argument(argv, "RUNS", 5, __doc__)
    from gpunn.cli.common import exit_on_bad_settings

    exit_on_bad_settings(os.path.basename(sys.argv[0]))  # as gpunn's commands, before anything is measured
    print(f"setup: {setup()}")
    runs("plain", 1)  # the cache warm, the files in the page cache
    plain, parts = [], []
    for _ in range(n):  # alternated, so that the load's drift falls on both alike
        plain += runs("plain", 1)
        parts += runs("parts", 1)
    ms = lambda results, key: f"{median(results, key) * 1e3:.1f} ms"
    print(f"medians of {n} fresh processes, gpunn train --rows 2000 --epochs 2 --hidden 16's case (CPU):")
    print(f"  import gpunn {ms(plain, 'import_gpunn')}")
    print(f"  as a user's fit: epoch 1 {ms(plain, 'epoch1')} (numba {ms(plain, 'epoch1_numba')}), "
          f"epoch 2 {ms(plain, 'epoch2')} (numba {ms(plain, 'epoch2_numba')}), fit {ms(plain, 'fit')}")
    print(f"  one-time costs paid first: Numba's import {ms(parts, 'numba_import')}, SciPy's import {ms(parts, 'scipy_import')}, Numba's start "
          f"{ms(parts, 'numba_start')}, BLAS probe {ms(parts, 'blas_probe')}; then epoch 1 {ms(parts, 'epoch1')} "
          f"(numba {ms(parts, 'epoch1_numba')}), epoch 2 {ms(parts, 'epoch2')}")
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    with refusals_said():
        main(sys.argv[1:])
