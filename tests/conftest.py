"""Shared fixtures: backends under test, and GPU skipping.

GPUNN_FAKE_CUPY=1 runs the GPU-marked tests against tests/fakecupy (a NumPy-backed CuPy stand-in
that checks every kernel launch): the CuPy code path on a machine without a GPU. No substitute for
a GPU run; see tests/test_fakecupy.py. GPUNN_FAKE_CUPY=gpu runs them against a second copy of it loaded
as cupy, with the tests on their GPU branches, as bench/gpu_check.sh's tests stage runs them on a GPU.
"""
import gc
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading

import numpy
import pytest
from hypothesis import HealthCheck, settings

_SESSION_CACHE = []  # the cache directories this session made, removed when it ends


def _keep_bytecode():
    """Where PYTHONDONTWRITEBYTECODE=1 (this machine's shells) and no PYTHONPYCACHEPREFIX is set, the processes the
    tests start (gpunn commands, mpiexec's ranks, scripts, pytest runs) keep their bytecode in a directory of their
    own, never beside the sources: each of hundreds of them compiled gpunn's modules from source, 0.45 s of the 2.0 s
    CPU a tiny `gpunn train` took. In a venv the tests may write, that is the venv's gpunn-pycache, kept from run to
    run, and this process keeps its bytecode there too (pytest's rewritten test modules among it): collecting the
    tests took 22 s of CPU, rewriting and compiling them anew each run, and 10 s with it kept (the first run there
    compiles the site-packages it imports, whose own bytecode a prefix hides). Elsewhere, one of this session, for the
    children only. A process started with PYTHONDONTWRITEBYTECODE (bench/gpu_check.sh) still reads what the others
    wrote. Before gpunn is imported."""
    if not sys.dont_write_bytecode or sys.pycache_prefix or "PYTHONPYCACHEPREFIX" in os.environ:
        return
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix = os.path.join(sys.prefix, "gpunn-pycache")
        sys.dont_write_bytecode = False
    else:
        _SESSION_CACHE.append(tempfile.mkdtemp(prefix="gpunn-test-pycache-"))
        os.environ["PYTHONPYCACHEPREFIX"] = _SESSION_CACHE[-1]


_keep_bytecode()

if os.environ.get("GPUNN_FAKE_CUPY") in ("1", "gpu") or importlib.util.find_spec("cupy") is None:
    # where gpunn can meet tests/fakecupy (here or through its install fixture), its modules are compiled with
    # host[...] = device refused as CuPy refuses it (NumPy's C code copies the stand-in's arrays without asking);
    # before gpunn is imported. With the real CuPy, CuPy refuses it itself
    import fakecupy_setitem  # not in the fakecupy package: its __init__ imports gpunn

    fakecupy_setitem.install()

from gpunn import backend as _backend  # noqa: E402

# Hypothesis draws the same examples on every run (CI's time and its failures do not vary from run to run);
# a test's own settings (max_examples, health checks) still apply on top. Generation "too slow" is the machine's
# load, not the test's (test_resume's health check failed so under four helpers' test runs on 2 cores, session 37):
# a test's own suppress_health_check names it too, as its list replaces this one.
settings.register_profile("gpunn", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gpunn")


_CTRL_C = []  # the SIGINTs that reached the run's handler during a test, however the code under test took them


def _ctrl_c_ends_the_run(signum, frame):
    """The run's SIGINT handler (pytest_configure): Ctrl-C raises KeyboardInterrupt, as Python's own handler does, and
    is remembered, so that the run ends after the test where the code under test caught it (gpunn's command line,
    called in the test's process, answers it with status 130 and returns). A fit takes SIGINT itself while it runs
    (gpunn.training.loop.sigint_stops: stop after the batch and return, as in a user's script, where one Ctrl-C then
    ends the script); marked as a handler that stops a fit, this one is passed the signal once the fit has stopped,
    as an outer fit would be, and raises there. Python's handler alone left the test, and the run, going on."""
    _CTRL_C.append(signum)
    if os.environ.get("GPUNN_TESTS_ONE_SIGINT") == "1":  # as pytest_keyboard_interrupt below, but from the first
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # signal on: none of the unwinding before that hook is exposed
    if frame is None:  # passed on by a fit (it has no frame to give)
        raise KeyboardInterrupt("Ctrl-C during a fit, which stopped after its batch")
    raise KeyboardInterrupt


_ctrl_c_ends_the_run.stops_a_fit = True


def pytest_configure(config):
    # one Ctrl-C ends the run, also while a test trains; left alone where pytest started with SIGINT ignored (a
    # background job) or handled by the program that runs it
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _ctrl_c_ends_the_run)
    # device="auto" falling back to NumPy is expected here; tests/test_backend.py checks the warning itself
    config.addinivalue_line("filterwarnings", "ignore::gpunn.backend.CPUFallbackWarning")
    # indexes of CSV files (gpunn.data.csv_tables) go to a directory of this session, not the user's cache
    if "GPUNN_CACHE_DIR" not in os.environ:
        _SESSION_CACHE.append(tempfile.mkdtemp(prefix="gpunn-test-cache-"))
        os.environ["GPUNN_CACHE_DIR"] = _SESSION_CACHE[-1]
    if os.environ.get("GPUNN_FAKE_CUPY") in ("1", "gpu"):
        import fakecupy

        # "gpu": a second copy of the stand-in as cupy, fakecupy a bystander, the tests on their GPU branches
        # (fakecupy.load_as_cupy); the stand-in's checks are the same
        stand_in = fakecupy if os.environ["GPUNN_FAKE_CUPY"] == "1" else fakecupy.load_as_cupy()
        stand_in.reset()
        sys.modules["cupy"], sys.modules["cupyx"] = stand_in, stand_in.cupyx
        sys.modules["cupyx.profiler"] = stand_in.cupyx.profiler  # as install() does (gpunn.bench.kernels' timer)
        sys.modules.update(stand_in._backends_modules())
        stand_in.forget_gpunn_state()
        stand_in.refuse_host_conversions()  # numpy.asarray(device array) raises, as with CuPy
        import gpunn.ops.cublas

        gpunn.ops.cublas.load_cublas = stand_in.cublas_library  # libcublas through ctypes, for graph capture
    # a pass whose reader thread can no longer hand anything over (a window never released) fails its test within
    # seconds, rather than waiting until pytest-timeout ends the whole run (gpunn.data.pipeline.ReaderDeadlock)
    from gpunn.data import pipeline

    pipeline._DEADLOCK_POLL_S = 1.0
    # the progress's "compiling CPU kernels" line comes in whichever test first calls a kernel while Numba's cache
    # holds none (a fresh clone's first run): off, so that no test's stderr depends on the cache; its own tests
    # (tests/test_training.py) turn it on
    from gpunn.training.callbacks import ProgressBar

    ProgressBar.says_compiling = False
    # the CPU kernels from the first op on in this process (not after NUMBA_START_SECONDS of NumPy, which gives
    # their bits): a test of them does not depend on which tests ran before it. The processes the tests start (gpunn
    # commands) keep the default, and its own tests (tests/test_cpu_ops.py) set it
    from gpunn.ops import cpu

    cpu.NUMBA_START_SECONDS = 0


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo):
    """With GPUNN_TESTS_ONE_SIGINT=1 (bench/gpu_check.sh's tests stage), SIGINTs after the first are ignored while
    pytest reports it and writes its junit XML and counts: the stage's `timeout -s INT` signals pytest and then its
    process group, so a second SIGINT can land inside that reporting and cut it short (seen under load). The
    stage's SIGKILL, 10 s later, still ends a run that does not finish. Elsewhere a second Ctrl-C keeps its effect.
    Where the run's handler took the first (_ctrl_c_ends_the_run), it has already ignored the rest; here is for a
    first SIGINT that a fit's handler took, or one that reached Python's own."""
    _CTRL_C.clear()  # the run is ending: no test's teardown is to raise it again
    if os.environ.get("GPUNN_TESTS_ONE_SIGINT") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """A Ctrl-C that the code under test caught (see _ctrl_c_ends_the_run) ends the run once the test is torn down."""
    if _CTRL_C:
        raise KeyboardInterrupt(f"Ctrl-C during {item.nodeid}, which caught it")


@pytest.fixture
def sends_itself_sigint():
    """For a test that sends its own process SIGINT (a Ctrl-C it plays, to test how gpunn takes one): Python's own
    handler while it runs, so that the run's handler, which ends the run, does not take it for the user's."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def pytest_unconfigure(config):
    for directory in _SESSION_CACHE:
        shutil.rmtree(directory, ignore_errors=True)
    if signal.getsignal(signal.SIGINT) is _ctrl_c_ends_the_run:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _gpu_reason():
    cupy, count, reason = _backend.probe_cuda()
    return None if cupy is not None else reason


# What tests/fakecupy does not emulate: those GPU tests are skipped under GPUNN_FAKE_CUPY=1 (and =gpu), saying why.
FAKE_CUPY_SKIPS = {
    "test_precision_gpu.py::test_tf32_and_bf16_train_to_the_float32_r2":
        "18 epochs take minutes on tests/fakecupy (bfloat16 arithmetic in ml_dtypes); the GPU runs it",
}


def pytest_collection_modifyitems(config, items):
    reason = None
    fake = os.environ.get("GPUNN_FAKE_CUPY") in ("1", "gpu")
    for item in items:
        # the marker, not "gpu" in item.keywords: the keywords hold a test's parameter ids and names too, and a
        # parameter with the id "gpu" (test_backend's --device gpu) was skipped as needing a GPU on every CPU
        needs_gpu = item.get_closest_marker("gpu") is not None
        why = FAKE_CUPY_SKIPS.get(item.path.name) or FAKE_CUPY_SKIPS.get(f"{item.path.name}::{item.originalname}")
        if fake and why and needs_gpu:
            item.add_marker(pytest.mark.skip(reason=why))
        if needs_gpu:
            reason = reason or _gpu_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"no usable GPU: {reason}"))


@pytest.fixture
def fake_cupy(monkeypatch, request):
    """tests/fakecupy as ``cupy`` for one test (with gpunn's CuPy state forgotten before and after)."""
    import fakecupy

    cp = fakecupy.install(monkeypatch)
    fakecupy.ordering.current_test = request.node.nodeid  # imported only now in some runs (stream_order_hazards)
    fakecupy.forget_gpunn_state(monkeypatch)
    yield cp
    fakecupy.forget_gpunn_state(None)


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without a GPU (a laptop: CuPy not importable) for one test, whatever this one has; the probe's
    cached answer is forgotten before and after, so that the tests after it see this machine's own again."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    _backend.probe_cuda.cache_clear()
    yield
    _backend.probe_cuda.cache_clear()


@pytest.fixture
def launched_as(monkeypatch):
    """``launched_as(size, rank)``: this process as the launcher's rank ``rank`` of ``size`` (PMI_SIZE, PMI_RANK; the
    other launchers' size and rank variables cleared, as they are before the first call), the once-per-process warning
    of each rank training the whole run not yet said."""
    from gpunn.distributed import comm

    for name in (*comm._SIZE_VARIABLES, *comm._RANK_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(comm, "_SAID_EACH_TRAINS_IT_ALL", [])

    def launch(size, rank):
        monkeypatch.setenv("PMI_SIZE", str(size))
        monkeypatch.setenv("PMI_RANK", str(rank))
        monkeypatch.setattr(comm, "_SAID_EACH_TRAINS_IT_ALL", [])

    return launch


@pytest.fixture
def gpu():
    """The CUDA backend (tests using it must also be marked gpu)."""
    return _backend.resolve("cuda")


@pytest.fixture
def device_pow_an_ulp_low(monkeypatch):
    """The stand-in's emulation of the device's pow, from which every kernel forms Adam's bias corrections
    (fakecupy.kernels.device_pow), made 1 ulp below the C library's (Python's) at every step: a device whose pow
    is not the host's, as CUDA's double pow (documented to 2 ulp) need not be. Skips where cupy is not the stand-in."""
    import math

    kernels = getattr(sys.modules.get("cupy"), "_kernels", None)  # the copy in use (GPUNN_FAKE_CUPY=gpu: the second)
    if not hasattr(kernels, "device_pow"):
        pytest.skip("replaces tests/fakecupy's emulation of the device's pow")
    exact = kernels.device_pow
    monkeypatch.setattr(kernels, "device_pow", lambda beta, t: math.nextafter(exact(beta, t), 0.0))


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Runs a test on the CPU and, where there is one, on the GPU."""
    return request.param


@pytest.fixture
def terminal_stderr(capsys, monkeypatch):
    """capsys, with progress drawn as on a terminal: a bar (its stderr is no terminal, and pytest puts it in place
    after the fixtures' set-up, so it cannot be given an isatty here)."""
    from gpunn.training import progress

    monkeypatch.setattr(progress, "draws_bar", lambda stream: True)
    return capsys


@pytest.fixture
def progress_clock(monkeypatch):
    """ProgressBar's clock advanced a millisecond at each reading, so that the lines a log gets do not depend on this
    machine's speed: on a loaded (or stopped) machine an epoch outlasted ProgressBar.line_every_s (60 s) and the log
    gained a line inside it (a process's first fit with Numba's cache cold took 283 s at load 26). The line inside a
    long epoch has its own test (test_training.py)."""
    import itertools
    import types

    from gpunn.training import numba_watch, progress

    clock = types.SimpleNamespace(monotonic=itertools.count(0.0, 0.001).__next__)
    monkeypatch.setattr(progress, "time", clock)
    monkeypatch.setattr(numba_watch, "time", clock)  # (the seconds in Numba that the progress reads, by one clock)


@pytest.fixture
def to_host():
    def convert(a):
        return a.get() if hasattr(a, "get") else numpy.asarray(a)
    return convert


@pytest.fixture(scope="module")
def ensemble_data():
    """(X, Y) of 150 rows, 5 features and 2 smooth targets: the ensemble tests' data (float64)."""
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((150, 5))
    Y = numpy.stack([numpy.sin(X[:, 0]) + 0.1 * X[:, 1], X[:, 2] * X[:, 3]], axis=1)
    return X, Y


@pytest.fixture
def interrupt_at():
    """A Callback class: ``interrupt_at(epoch, batch)`` calls trainer.interrupt() after batch ``batch`` of
    epoch ``epoch`` (both from 0), as Ctrl-C would."""
    from gpunn import Callback

    class InterruptAt(Callback):
        def __init__(self, epoch, batch):
            self.at = (epoch, batch)

        def on_epoch_begin(self, trainer, epoch):
            self.epoch = epoch

        def on_batch_end(self, trainer, batch):
            if (self.epoch, batch) == self.at:
                trainer.interrupt()

    return InterruptAt


def _stand_ins():
    """tests/fakecupy as imported (fakecupy), and a second copy in use as cupy (GPUNN_FAKE_CUPY=gpu): each checks
    on its own."""
    return list({id(m): m for m in (sys.modules.get("fakecupy"), sys.modules.get("cupy"))
                 if hasattr(getattr(m, "ordering", None), "hazards")}.values())


@pytest.fixture(autouse=True)
def stream_order_hazards(request):
    """Under tests/fakecupy: the test fails when a CUDA stream-ordering hazard was found in it (fakecupy.ordering:
    pinned memory freed while a copy may be in flight, or one that a finalizer or a thread swallowed).

    After a test that used the stand-in, its pending checks are settled first, so that the hazard fails the test
    that made it, not whichever test runs when the memory is freed or copied from next: the test's garbage is
    collected (memory that a reference cycle held, a generator stopped part-way, a reader thread's buffers) and the
    pinned bytes of copies in flight are compared (ordering.settle). What was alive before the test is frozen
    meanwhile (gc.freeze), so that the collection looks at the test's own objects only: a full one took 0.36 s
    here (load 5), times the stand-in pass's 650 tests; with the freeze the pass took less CPU time than without
    these collections (the collections Python makes inside a test skip the frozen objects too).

    The stand-in knows which test runs (ordering.current_test), so that a block of CuPy's pool freed while another
    stream may still use it, a hazard only when a later allocation gets the block (often in a later test), names
    the test that freed it."""
    stand_ins = _stand_ins()
    for fake in stand_ins:
        fake.ordering.current_test = request.node.nodeid
    ops_before = {id(m): m.ordering.ops for m in stand_ins}
    if stand_ins:
        gc.freeze()
    yield
    try:
        used = [m for m in _stand_ins() if m.ordering.ops != ops_before.get(id(m))]
        if used:
            gc.collect()
            for fake in used:
                fake.ordering.settle()
    finally:
        if stand_ins:
            gc.unfreeze()
        for fake in _stand_ins():
            fake.ordering.current_test = None  # frees between tests (a module's fixtures) are no test's
    found = []
    for fake in _stand_ins():
        found += fake.ordering.hazards
        fake.ordering.hazards.clear()
    if found:
        pytest.fail("CUDA stream-ordering hazard(s) (tests/fakecupy/ordering.py):\n- " + "\n- ".join(found[:5]),
                    pytrace=False)
