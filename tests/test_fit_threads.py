"""The fit of a small net, and an Ensemble's, puts NumPy's BLAS on one thread while it runs (gpunn.ops.fit_threads),
puts the count back after it (the last of overlapping fits does), and leaves a count the user set alone."""
import json
import os
import sys
import threading
import types
import warnings

import numpy
import pytest
import waiting

import gpunn
from gpunn.ops import cblas, fit_threads
from gpunn.ops.cpu import usable_cores

threadpoolctl = pytest.importorskip("threadpoolctl")
pytest.importorskip("numba")  # the one-call step's kernel


NUMPYS = {os.path.realpath(path) for path in cblas._libraries()}  # NumPy's OpenBLAS (a wheel's)


def openblas_threads():
    """NumPy's OpenBLAS's thread count (SciPy's, which a fit may load, aside)."""
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["internal_api"] == "openblas" and os.path.realpath(lib["filepath"]) in NUMPYS]


needs_two = pytest.mark.skipif(openblas_threads() != [usable_cores()] or usable_cores() < 2,
                               reason="NumPy's OpenBLAS (a wheel's) at its own count of 2 threads or more")


def clear(monkeypatch):
    for name in (*fit_threads.BLAS_ENV, "GPUNN_ENSEMBLE_BLAS_THREADS"):
        monkeypatch.delenv(name, raising=False)


class Seen(gpunn.Callback):
    def __init__(self):
        self.counts = []

    def on_epoch_end(self, trainer, epoch, logs):
        self.counts.append(set(openblas_threads()))


def fit(monkeypatch, optimizer="adam", **env):
    clear(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((256, 16)).astype(numpy.float32)
    Y = rng.standard_normal((256, 1)).astype(numpy.float32)
    seen = Seen()
    before = openblas_threads()
    gpunn.MLP([16, 64, 64, 1], seed=1, device="cpu").fit(X, Y, epochs=2, batch_size=128, optimizer=optimizer,
                                                          verbose=False, callbacks=[seen])
    assert openblas_threads() == before  # put back (or never changed)
    return seen.counts, before


@needs_two
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])  # the one-call step, and one_call_gradients
def test_a_small_fit_runs_on_one_openblas_thread(monkeypatch, optimizer):
    counts, _ = fit(monkeypatch, optimizer)
    assert counts == [{1}, {1}]


@needs_two
def test_openblas_num_threads_set_by_the_user_wins(monkeypatch):
    counts, before = fit(monkeypatch, OPENBLAS_NUM_THREADS="2")
    assert counts == [set(before)] * 2


@needs_two
@pytest.mark.parametrize("name", ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"])
def test_a_variable_openblas_reads_set_wins(monkeypatch, name):
    counts, before = fit(monkeypatch, **{name: "2"})
    assert counts == [set(before)] * 2


@needs_two
@pytest.mark.parametrize("name", ["MKL_NUM_THREADS", "BLIS_NUM_THREADS"])
def test_another_librarys_thread_variable_leaves_openblas_to_the_fit(monkeypatch, name):
    """MKL_NUM_THREADS is no count of OpenBLAS's (it does not read it): a small fit, and an Ensemble's, still put
    NumPy's OpenBLAS on one thread. Any BLAS_ENV variable left it on every core before, as under Slurm (32120e2)."""
    counts, _ = fit(monkeypatch, **{name: "2"})
    assert counts == [{1}, {1}]
    X = numpy.ones((64, 4), numpy.float32)
    seen = Seen()
    gpunn.Ensemble([4, 8, 1], 2, device="cpu", seed=0).fit(X, X[:, :1], epochs=1, batch_size=32, verbose=False,
                                                           callbacks=[seen])
    assert seen.counts == [{1}]


@needs_two
def test_a_threadpoolctl_limit_is_a_ceiling_the_fit_stays_under_and_gets_back(monkeypatch):
    """A limit in force (a user's, or a data-parallel rank's share) caps the count: one thread is under it, and the
    limit, not OpenBLAS's own count, is what the fit puts back."""
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        counts, before = fit(monkeypatch)
        assert before == [3] and openblas_threads() == [3]
    assert counts == [{1}, {1}]


@needs_two
def test_restored_after_a_fit_that_fails(monkeypatch):
    class Fails(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise RuntimeError("stop")

    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((256, 16)).astype(numpy.float32)
    before = openblas_threads()
    with pytest.raises(RuntimeError):
        gpunn.MLP([16, 64, 64, 1], seed=1, device="cpu").fit(X, X[:, :1].copy(), epochs=2, batch_size=128,
                                                              verbose=False, callbacks=[Fails()])
    assert openblas_threads() == before


@needs_two
def test_a_net_of_65536_parameters_keeps_openblas_count(monkeypatch):
    """A net of PARALLEL_MIN_ELEMENTS parameters or more is not small: its fit keeps OpenBLAS's threads."""
    monkeypatch.setattr(fit_threads, "PARALLEL_MIN_ELEMENTS", 16 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
    counts, before = fit(monkeypatch)
    assert counts == [set(before)] * 2


def let_go():
    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def small_net():
    return gpunn.MLP([4, 8, 1], seed=0, device="cpu")


@needs_two
def test_overlapping_small_fits_keep_one_thread_until_the_last_ends(monkeypatch):
    """The count is the process's: where two fits overlap (two Python threads), the first to end left the second on
    OpenBLAS's own threads (it put the count back under it), and the second, which had seen one thread in force,
    changed nothing. Entered and ended as two threads' fits interleave: A in, B in, A out, B out."""
    clear(monkeypatch)
    before = openblas_threads()
    first, second = fit_threads.fit_threads(small_net()), fit_threads.fit_threads(small_net())
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert openblas_threads() == [1]  # the second fit still runs
    second.__exit__(None, None, None)
    assert openblas_threads() == before


@needs_two
def test_two_small_fits_on_two_python_threads(monkeypatch):
    """Fit A starts, fit B starts, A ends, then B's next epoch still runs on one thread; B's end puts the count back."""
    clear(monkeypatch)
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(numpy.float32)
    Y = X[:, :1].copy()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    class Wait(gpunn.Callback):
        def __init__(self, mark, until):
            self.mark, self.until, self.counts = mark, until, []

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0:
                self.mark.set()
                assert self.until.wait(60)
            self.counts.append(openblas_threads())

    a, b = Wait(a_in, b_in), Wait(b_in, a_out)
    let_go()  # no thread holds threadpoolctl's right to set OpenBLAS's count (3.7+) as the test starts

    def fit_a():
        small_net().fit(X, Y, epochs=1, batch_size=32, verbose=False, callbacks=[a])
        a_out.set()

    before = openblas_threads()
    thread = threading.Thread(target=fit_a)
    thread.start()
    assert a_in.wait(60)
    small_net().fit(X, Y, epochs=2, batch_size=32, verbose=False, callbacks=[b])
    thread.join(60)
    assert a.counts == [[1]] and b.counts == [[1], [1]]
    assert openblas_threads() == before


@needs_two
def test_an_ensemble_leaves_a_count_the_user_set_unless_gpunn_ensemble_blas_threads_is_set(monkeypatch):
    """One rule for a small fit and an Ensemble: OPENBLAS_NUM_THREADS (any of BLAS_ENV) set, the ensemble's fit keeps
    the count (it took one thread over it before session 25); GPUNN_ENSEMBLE_BLAS_THREADS, gpunn's own and the
    ensemble's alone, set, wins over it (blank, it is unset); neither set, one thread."""
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(numpy.float32)
    Y = X[:, :1].copy()
    before = openblas_threads()
    for env, want in (({}, [1]), ({"OPENBLAS_NUM_THREADS": "2"}, before),
                      ({"OPENBLAS_NUM_THREADS": "2", "GPUNN_ENSEMBLE_BLAS_THREADS": "1"}, [1]),
                      ({"OPENBLAS_NUM_THREADS": "2", "GPUNN_ENSEMBLE_BLAS_THREADS": " "}, before)):
        clear(monkeypatch)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        seen = Seen()
        gpunn.Ensemble([4, 8, 1], 2, device="cpu", seed=0).fit(X, Y, epochs=1, batch_size=32, verbose=False,
                                                               callbacks=[seen])
        assert seen.counts == [set(want)], env
        assert openblas_threads() == before


@needs_two
def test_a_small_fit_inside_an_ensembles_fit_leaves_the_ensembles_count_in_force(monkeypatch):
    """A fit inside another's (here an MLP fitted in an Ensemble's callback) joins the count in force; its end does
    not put the count back under the ensemble's remaining epochs."""
    clear(monkeypatch)
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(numpy.float32)
    Y = X[:, :1].copy()

    class Inner(Seen):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0:
                small_net().fit(X, Y, epochs=1, batch_size=32, verbose=False)
            super().on_epoch_end(trainer, epoch, logs)

    before, seen = openblas_threads(), Inner()
    gpunn.Ensemble([4, 8, 1], 2, device="cpu", seed=0).fit(X, Y, epochs=2, batch_size=32, verbose=False,
                                                           callbacks=[seen])
    assert seen.counts == [{1}, {1}] and openblas_threads() == before


@needs_two
def test_a_small_fit_on_another_python_thread_after_one_on_this_thread_runs_on_one_thread(monkeypatch):
    """threadpoolctl 3.7+ lets only the Python thread that last set OpenBLAS's count set it, until that thread lets
    go: a fit that kept it (the main thread's, before session 25) left every later fit on another thread on OpenBLAS's
    own threads, its change silently dropped."""
    clear(monkeypatch)
    let_go()
    rng = numpy.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(numpy.float32)
    Y = X[:, :1].copy()
    small_net().fit(X, Y, epochs=1, batch_size=32, verbose=False)
    before, seen = openblas_threads(), Seen()
    thread = threading.Thread(target=lambda: small_net().fit(X, Y, epochs=1, batch_size=32, verbose=False,
                                                             callbacks=[seen]))
    thread.start()
    thread.join(60)
    assert seen.counts == [{1}] and openblas_threads() == before


@needs_two
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_forked_while_another_thread_fits_gets_the_count_back(monkeypatch):
    """A child has only the thread that forked: another thread's fit never ends there, and the one thread it had set
    stayed in force in the child for good (every later fit of the child's, a larger net's too, on one thread)."""
    import warnings

    clear(monkeypatch)
    let_go()
    before = openblas_threads()
    inside, leave = threading.Event(), threading.Event()

    def fitting():  # a small fit, on another thread, while this one forks
        with fit_threads.fit_threads(small_net()):
            inside.set()
            leave.wait(60)

    thread = threading.Thread(target=fitting)
    thread.start()
    try:
        assert inside.wait(60) and openblas_threads() == [1]
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # (3.12: a fork of a process with threads)
            pid = os.fork()
        if pid == 0:  # the child: its count at once, then after a small fit of its own
            try:
                counts = [openblas_threads()]
                with fit_threads.fit_threads(small_net()):
                    counts.append(openblas_threads())
                counts.append(openblas_threads())
                os.write(write, repr(counts).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            said = fh.read()
        os.waitpid(pid, 0)
    finally:
        leave.set()
        thread.join(60)
    assert said == repr([before, [1], before])
    assert openblas_threads() == before  # the parent's fit put it back as it ended


def test_without_a_cached_controller_a_blas_loaded_after_the_first_fit_is_found(monkeypatch):
    """threadpoolctl before 3.8 has no get_cached_controller: gpunn made its controller once, at the first fit, so a
    BLAS loaded after it (SciPy's, torch's MKL) was never limited. It is made again, as 3.8's cache is, once a module
    was imported since."""
    made = []

    class Controller:
        def __init__(self):
            made.append(self)

        def select(self, user_api):
            return type("Selected", (), {"lib_controllers": [user_api]})()

    monkeypatch.delattr(threadpoolctl, "get_cached_controller", raising=False)
    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", Controller)
    monkeypatch.setattr(fit_threads, "_made", None)
    assert fit_threads._libraries() == ["blas"] and fit_threads._libraries() == ["blas"] and len(made) == 1
    monkeypatch.setitem(sys.modules, "a_module_that_loads_a_blas", types.ModuleType("a_module_that_loads_a_blas"))
    assert fit_threads._libraries() == ["blas"] and len(made) == 2


class FailingLibrary:
    """A BLAS library whose ``fail_at``-th set_num_threads raises, as threadpoolctl's can (a symbol it cannot find)."""

    def __init__(self, fail_at):
        self.threads, self.sets, self.fail_at = 2, 0, fail_at

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, threads):
        self.sets += 1
        if self.sets == self.fail_at:
            raise RuntimeError("openblas_set_num_threads not found")
        self.threads = threads


def test_a_count_changed_while_the_fit_ran_is_left_as_it_was_changed(monkeypatch):
    """The end of a fit puts back only the counts still at the one it set: a library another thread's threadpoolctl
    limit (say) set to 3 threads while the fit ran stays on 3, the other goes back to its 2."""
    clear(monkeypatch)
    changed, kept = FailingLibrary(0), FailingLibrary(0)  # both on 2 threads
    monkeypatch.setattr(fit_threads, "_libraries", lambda: [changed, kept])
    with fit_threads.blas_threads(1):
        assert [changed.threads, kept.threads] == [1, 1]
        changed.threads = 3
    assert [changed.threads, kept.threads] == [3, 2]


@pytest.mark.parametrize("fail_at, doing, left", [(1, "set NumPy's BLAS to 1 thread for the fit", 2),
                                                  (2, "put NumPy's BLAS thread count back after the fit", 1)])
def test_a_blas_count_threadpoolctl_fails_to_set_is_a_warning_and_the_fit_trains(monkeypatch, fail_at, doing, left):
    """An exception inside threadpoolctl failed the fit with its traceback, for a count that changes its speed alone."""
    clear(monkeypatch)
    library = FailingLibrary(fail_at)
    monkeypatch.setattr(fit_threads, "_libraries", lambda: [library])
    X = numpy.ones((64, 4))
    with pytest.warns(RuntimeWarning, match=rf"^gpunn could not {doing} \(threadpoolctl: RuntimeError: "
                                            r"openblas_set_num_threads not found\); the fit trains on"):
        history = gpunn.MLP([4, 3, 1], seed=0, device="cpu").fit(X, X[:, :1], epochs=2, verbose=False)
    assert history["epoch"] == [1, 2] and library.threads == left and not fit_threads._holders


class IgnoringLibrary(FailingLibrary):
    """A BLAS library whose set_num_threads returns and changes nothing (threadpoolctl's setter where a library lacks
    the symbol, or OpenBLAS held by another thread's threadpoolctl limit)."""

    def set_num_threads(self, threads):
        self.sets += 1


@pytest.mark.parametrize("library, warned, one", [
    (None, True, False),  # threadpoolctl cannot read the libraries
    (lambda: FailingLibrary(1), True, False),  # it reads one and fails to set it
    (lambda: IgnoringLibrary(0), False, False),  # its setter does nothing
    (lambda: FailingLibrary(0), False, True),  # set and read back at one thread
    (lambda: [], False, False),  # no BLAS library it knows: nothing set
    (lambda: [FailingLibrary(0), IgnoringLibrary(0)], False, False),  # one of two set, the other's setter a no-op
], ids=["unreadable", "set fails", "set ignored", "set", "none", "one of two ignored"])
def test_the_count_a_fit_ran_on_is_said_as_the_libraries_took_it(monkeypatch, library, warned, one):
    """one_thread_for (gpunn bench's "BLAS 1 thread" note, said after the fit) said one thread wherever threadpoolctl
    could read the libraries, where the fit it describes had failed to set a library's count (and warned) or set it
    to no effect: that fit ran on the counts as they were. It failed with threadpoolctl's traceback where the
    libraries could not be read. One thread only where every library threadpoolctl knows took it, and there is one."""
    clear(monkeypatch)

    def unreadable():
        raise RuntimeError("openblas_get_num_threads not found")

    made = library() if library else None
    libraries = made if isinstance(made, list) else [made]
    monkeypatch.setattr(fit_threads, "_libraries", unreadable if library is None else (lambda: libraries))
    X = numpy.ones((64, 4))
    model = gpunn.MLP([4, 3, 1], seed=0, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, X[:, :1], epochs=1, verbose=False)
    said = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert [m.startswith("gpunn could not set NumPy's BLAS to 1 thread") for m in said] == [True] * warned
    assert fit_threads.one_thread_for(model) is one
    assert fit_threads.one_thread_for(gpunn.Ensemble([4, 3, 1], 2, seed=0, device="cpu")) is False  # (its own count)


class NamedLibrary(FailingLibrary):
    """A BLAS library as threadpoolctl names it (``internal_api``), on ``threads`` threads."""

    def __init__(self, internal_api, threads):
        super().__init__(0)
        self.internal_api, self.threads = internal_api, threads


@pytest.mark.parametrize("env, capped, said", [
    ({}, [1, 1], "threads held to SLURM_CPUS_PER_TASK=1 (the library started 8)"),
    # MKL's variable is no count of OpenBLAS's: it was taken for one, OpenBLAS left on 8 threads "set by" it
    ({"MKL_NUM_THREADS": "4"}, [1, 8], "threads held to SLURM_CPUS_PER_TASK=1 (the library started 8)"),
    ({"BLIS_NUM_THREADS": "4"}, [1, 1], "threads held to SLURM_CPUS_PER_TASK=1 (the library started 8)"),
    ({"OMP_NUM_THREADS": "4"}, [8, 8], "threads set by OMP_NUM_THREADS=4"),  # (both read it)
    ({"GOTO_NUM_THREADS": "4", "MKL_NUM_THREADS": "2"}, [8, 8], "threads set by GOTO_NUM_THREADS=4"),
])
def test_under_slurm_a_command_holds_each_blas_to_its_cpus_unless_a_variable_it_reads_sets_its_count(
        monkeypatch, env, capped, said):
    """cap_at_slurm_cpus: each BLAS library on at most SLURM_CPUS_PER_TASK threads, but for one whose count the
    environment sets in a variable that library reads (OpenBLAS: OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS,
    OMP_NUM_THREADS; MKL: MKL_NUM_THREADS, OMP_NUM_THREADS); count_source says where NumPy's (the first) count comes
    from. A job's MKL_NUM_THREADS left NumPy's OpenBLAS on every core of the node, said to be "set by" it."""
    clear(monkeypatch)
    for name, value in {"SLURM_CPUS_PER_TASK": "1", **env}.items():
        monkeypatch.setenv(name, value)
    libraries = [NamedLibrary("openblas", 8), NamedLibrary("mkl", 8)]
    monkeypatch.setattr(fit_threads, "_libraries", lambda: libraries)
    monkeypatch.setattr(fit_threads, "_capped", None)
    fit_threads.cap_at_slurm_cpus()
    assert [lib.threads for lib in libraries] == capped
    assert fit_threads.count_source() == said


@pytest.mark.parametrize("threads, capped, said", [
    ([4, 4], [4, 4], "threads: the library's own count, the cores the process may run on"),  # at the count already
    ([16, 8], [4, 4], "threads held to SLURM_CPUS_PER_TASK=4 (the library started 16)"),  # the largest before
    ([4, 8], [4, 4], "threads held to SLURM_CPUS_PER_TASK=4 (the library started 8)"),
])
def test_under_slurm_only_a_library_over_its_cpus_is_held_and_said_to_be(monkeypatch, threads, capped, said):
    """cap_at_slurm_cpus changes a library only above SLURM_CPUS_PER_TASK: one at that count already is its own
    count, and gpunn info does not say it was held; where some were, it says the largest count they started at."""
    clear(monkeypatch)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    libraries = [NamedLibrary("openblas", threads[0]), NamedLibrary("mkl", threads[1])]
    monkeypatch.setattr(fit_threads, "_libraries", lambda: libraries)
    monkeypatch.setattr(fit_threads, "_capped", None)
    monkeypatch.setattr(fit_threads, "affinity_cores", lambda: 64)
    fit_threads.cap_at_slurm_cpus()
    assert [lib.threads for lib in libraries] == capped
    assert fit_threads.count_source() == said


MKL_LOADED_LATER = """
import json, sys
from gpunn.ops import fit_threads, gemm
seen = [lib.internal_api for lib in fit_threads._libraries()]  # (threadpoolctl's cached controller made: no MKL)
if sys.argv[1] == "command":
    fit_threads.cap_at_slurm_cpus()  # as a gpunn command starts
mkl = gemm.library("mkl")  # as GPUNN_GEMM=mkl or auto loads it, at the first product
print(json.dumps({"mkl": mkl and mkl.threads(), "seen": seen,
                  "then": [lib.internal_api for lib in fit_threads._libraries()]}))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a process on one core: MKL's own count is one")
def test_an_mkl_gpunn_loads_after_the_slurm_cap_is_held_and_seen_by_threadpoolctl():
    """gpunn.ops.gemm loads MKL with ctypes, after a command held the BLAS to SLURM_CPUS_PER_TASK (at its start) and
    with no module imported: MKL ran its large products on every core the process may run on (gpunn info under
    SLURM_CPUS_PER_TASK=1 on 2 cores: 'mkl 2026.2 (2 threads)'), and threadpoolctl's cached controller did not list
    it (a small fit left it on its count). In a script of one's own (no cap) MKL keeps its count."""
    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if k not in fit_threads.BLAS_ENV}
    said = {}
    for how, slurm in (("script", "1"), ("command", "1"), ("command", None)):
        job = {**env, "SLURM_CPUS_PER_TASK": slurm} if slurm else {k: v for k, v in env.items()
                                                                    if k != "SLURM_CPUS_PER_TASK"}
        done = waiting.run([sys.executable, "-c", MKL_LOADED_LATER, how], timeout=120, env=job)
        assert done.returncode == 0, done.stderr
        said[how, slurm] = json.loads(done.stdout.splitlines()[-1])
    own = said["script", "1"]
    if own["mkl"] is None:
        pytest.skip("MKL is not installed")
    if own["mkl"] < 2:
        pytest.skip("MKL's own count is one here")
    assert said["command", "1"]["mkl"] == 1 and said["command", None]["mkl"] == own["mkl"]
    for seen in said.values():
        assert "mkl" not in seen["seen"] and "mkl" in seen["then"]


def test_under_slurm_without_threadpoolctl_info_says_what_holds_the_blas_to_its_cpus(monkeypatch):
    """Where threadpoolctl is not installed, a command cannot hold NumPy's BLAS to SLURM_CPUS_PER_TASK: gpunn info's
    blas line says the library runs its own count, on more cores than Slurm's, and how to set it."""
    clear(monkeypatch)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    monkeypatch.setattr(fit_threads, "_libraries", lambda: [])
    monkeypatch.setattr(fit_threads, "_capped", None)
    monkeypatch.setattr(fit_threads, "affinity_cores", lambda: 64)
    fit_threads.cap_at_slurm_cpus()
    assert fit_threads.count_source() == (
        "threads: the library's own count, up to the 64 cores the process may run on, not SLURM_CPUS_PER_TASK=8: "
        "install threadpoolctl (gpunn[cpu]) or export OPENBLAS_NUM_THREADS=8")
    monkeypatch.setattr(fit_threads, "affinity_cores", lambda: 8)  # bound to its 8 cores: nothing to say
    assert fit_threads.count_source() == "threads: the library's own count, the cores the process may run on"


@pytest.fixture
def built_with(monkeypatch):
    """NumPy's build configuration naming its BLAS as given (fit_threads._built_with reads it once a process)."""
    def build(name):
        config = {"Build Dependencies": {"blas": {"name": name, "version": "1"}}}
        monkeypatch.setattr(numpy, "show_config", lambda mode="stdout": config)
        fit_threads._built_with.cache_clear()

    yield build
    fit_threads._built_with.cache_clear()


@pytest.mark.parametrize("blas, set_by", [
    ("scipy-openblas", {"OPENBLAS_NUM_THREADS": True, "OMP_NUM_THREADS": True, "MKL_NUM_THREADS": False,
                        "BLIS_NUM_THREADS": False}),
    ("mkl-sdl", {"MKL_NUM_THREADS": True, "OMP_NUM_THREADS": True, "OPENBLAS_NUM_THREADS": False}),
    ("blis", {"BLIS_NUM_THREADS": True, "MKL_NUM_THREADS": False}),
    ("accelerate", {name: True for name in fit_threads.BLAS_ENV}),  # none gpunn names: any of them, as before
])
def test_without_threadpoolctl_a_variable_counts_where_numpys_blas_by_its_build_reads_it(
        monkeypatch, built_with, blas, set_by):
    """Where threadpoolctl cannot name NumPy's BLAS, NumPy's build configuration does: MKL_NUM_THREADS=1 was taken as
    the count of NumPy's OpenBLAS (gpunn info said 'threads set by MKL_NUM_THREADS=1' of a library on every core,
    and a data-parallel rank's start line kept quiet about its BLAS threads left unchanged)."""
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    built_with(blas)
    for name, counted in set_by.items():
        clear(monkeypatch)
        monkeypatch.setenv(name, "1")
        assert fit_threads.user_set() is counted, name
        assert fit_threads._every_count_set() is counted, name
        assert fit_threads.asks_one_thread(gpunn.MLP([4, 3, 1], device="cpu")) is not counted, name
        assert fit_threads.count_source() == (f"threads set by {name}=1" if counted else
                                              "threads: the library's own count, the cores the process may run on")


def test_a_numpy_that_does_not_say_its_blas_counts_any_variable(monkeypatch):
    def old_numpy(mode="stdout"):
        raise TypeError("show_config() got an unexpected keyword argument 'mode'")

    clear(monkeypatch)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setattr(numpy, "show_config", old_numpy)
    fit_threads._built_with.cache_clear()
    try:
        assert fit_threads._built_with() is None and not fit_threads.user_set()
        monkeypatch.setenv("MKL_NUM_THREADS", "1")
        assert fit_threads.user_set()
    finally:
        fit_threads._built_with.cache_clear()


@pytest.mark.parametrize("env, during, asked", [
    ({}, [1, 1], True),
    # MKL's variable is no count of OpenBLAS's: it kept NumPy's OpenBLAS on its 8 threads, the fit said to run on them
    ({"MKL_NUM_THREADS": "4"}, [1, 8], True),
    ({"BLIS_NUM_THREADS": "4"}, [1, 1], True),
    ({"OMP_NUM_THREADS": "4"}, [8, 8], False),  # (both read it)
    ({"OPENBLAS_NUM_THREADS": "4", "MKL_NUM_THREADS": "2"}, [8, 8], False),
    ({"OPENBLAS_NUM_THREADS": "4"}, [8, 1], False),
])
def test_a_small_fit_puts_each_blas_on_one_thread_unless_a_variable_it_reads_sets_its_count(
        monkeypatch, env, during, asked):
    """The rule of cap_at_slurm_cpus for a small net's fit too: a library keeps its count where a variable that library
    reads sets one, the others go to one thread and come back; asks_one_thread and one_thread_for (gpunn bench's
    peer count and note) follow NumPy's (the first)."""
    clear(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    libraries = [NamedLibrary("openblas", 8), NamedLibrary("mkl", 8)]
    monkeypatch.setattr(fit_threads, "_libraries", lambda: libraries)
    seen = []

    class Counts(gpunn.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append([lib.threads for lib in libraries])

    X = numpy.ones((64, 4))
    model = gpunn.MLP([4, 3, 1], seed=0, device="cpu")
    assert fit_threads.asks_one_thread(model) is asked
    model.fit(X, X[:, :1], epochs=1, verbose=False, callbacks=[Counts()])
    assert seen == [during] and [lib.threads for lib in libraries] == [8, 8]
    assert fit_threads.one_thread_for(model) is asked and not fit_threads._holders


def test_numpys_blas_is_the_one_from_numpys_folder_whichever_threadpoolctl_lists_first(monkeypatch):
    """user_set() (a small fit's count asked of NumPy's BLAS: gpunn bench's peers and setup line) reads the variables
    of NumPy's own library: threadpoolctl's list can open with MKL (loaded by GPUNN_GEMM=mkl, or torch's) or SciPy's
    OpenBLAS, whatever order the libraries were loaded in."""
    clear(monkeypatch)
    mkl, numpys = NamedLibrary("mkl", 8), NamedLibrary("openblas", 8)
    mkl.filepath, numpys.filepath = "/venv/lib/libmkl_rt.so.3", "/venv/numpy.libs/libscipy_openblas64_.so"
    monkeypatch.setattr(fit_threads, "_libraries", lambda: [mkl, numpys])
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert fit_threads.user_set() and not fit_threads.user_set(mkl)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    assert not fit_threads.user_set() and fit_threads.user_set(mkl)
    assert fit_threads.libraries_to_set() == [numpys]


def test_the_busy_machines_note_names_mkls_count_and_variable_where_gpunn_gemm_sent_the_products_there(monkeypatch):
    """GPUNN_GEMM=mkl (or auto's choice of MKL for a shape) runs a fit's products on MKL, whose count MKL_NUM_THREADS
    sets: gpunn train's note of a busy machine named NumPy's count and OPENBLAS_NUM_THREADS, which leave MKL's threads
    as they were. The chooser (its choices, MKL's count) and the load are the test's: no MKL is needed."""
    from gpunn import cpuload
    from gpunn.cli.train import _busy_blas_note
    from gpunn.ops import cpu

    model = gpunn.MLP([32, 256, 256, 1], device="cpu")  # (a medium net: not one fit_threads puts on one thread)
    mkl = types.SimpleNamespace(threads=lambda: 4)
    chooser = types.SimpleNamespace(choices={("float32", 256, 32, 256, False, False): "mkl"}, _impl={"mkl": mkl})
    monkeypatch.setattr(model.ops, "gemm", chooser)
    monkeypatch.setattr(fit_threads, "numpys_count", lambda: (2, "OPENBLAS_NUM_THREADS"))
    monkeypatch.setattr(cpuload, "machine_cores", lambda: 4)
    monkeypatch.setattr(cpu, "usable_cores", lambda: 4)
    busy = types.SimpleNamespace(share=0.6, seconds=6.0)  # 1.6 cores left idle
    note = _busy_blas_note(model, busy)
    assert "and MKL ran this net's products on 4 threads" in note and "MKL_NUM_THREADS=1 may train it" in note, note
    chooser.choices = {key: "numpy" for key in chooser.choices}  # NumPy's BLAS ran them: its count and variable
    note = _busy_blas_note(model, busy)
    assert "and NumPy's BLAS ran this net's products on 2 threads" in note and "OPENBLAS_NUM_THREADS=1 may" in note


def test_numpys_count_is_numpys_blas_count_and_the_variable_that_library_reads_first(monkeypatch):
    """fit_threads.numpys_count, which gpunn train's note of a busy machine names: NumPy's library's count (not MKL's,
    listed first: GPUNN_GEMM=mkl's, torch's) and the variable it reads first (MKL_NUM_THREADS for MKL, not
    OMP_NUM_THREADS); no count where threadpoolctl lists none or cannot read them, the variable then NumPy's build's."""
    clear(monkeypatch)
    if openblas_threads():  # this NumPy's OpenBLAS (a wheel's), as it is
        assert fit_threads.numpys_count() == (openblas_threads()[0], "OPENBLAS_NUM_THREADS")
    monkeypatch.setattr(fit_threads, "_built_with", lambda: "mkl")  # NumPy's build configuration's BLAS
    mkl, numpys = NamedLibrary("mkl", 8), NamedLibrary("openblas", 3)
    mkl.filepath, numpys.filepath = "/venv/lib/libmkl_rt.so.3", "/venv/numpy.libs/libscipy_openblas64_.so"
    for libraries, count in (([mkl, numpys, NamedLibrary("blis", 4)], (3, "OPENBLAS_NUM_THREADS")), ([mkl], (8, "MKL_NUM_THREADS")),
                             ([NamedLibrary("blis", 4)], (4, "BLIS_NUM_THREADS")),
                             ([NamedLibrary("accelerate", 5)], (5, "OPENBLAS_NUM_THREADS")),  # (any: the first)
                             ([], (None, "MKL_NUM_THREADS"))):  # (none listed: as NumPy's build names its BLAS)
        monkeypatch.setattr(fit_threads, "_libraries", lambda: libraries)
        assert fit_threads.numpys_count() == count, libraries
    monkeypatch.setattr(fit_threads, "_libraries", lambda: (_ for _ in ()).throw(RuntimeError("cannot read")))
    assert fit_threads.numpys_count() == (None, "MKL_NUM_THREADS")


@needs_two
def test_evaluate_after_a_fit_gives_the_bits_its_validation_logged_and_a_small_nets_predictions_one_threads(
        monkeypatch):
    """A small net's fit, and an Ensemble's, run NumPy's BLAS on one thread, its validation too; predict and evaluate
    after it ran on OpenBLAS's own count: a 32-64-64-1 net's history said val_loss 2.462753380911569 and evaluate
    on the same rows 2.462753390684636 (its docstring says they are the same exactly), and its predictions were two
    threads' bits on this machine, one thread's on a machine of one core. They now run in the fit's count
    (gpunn.ops.fit_threads.inference_threads), which is put back after them; a few rows' predict sets nothing."""
    clear(monkeypatch)
    X, Y = gpunn.datasets.make("teacher", 4096, 32, seed=0, device="cpu")
    Xv, Yv = gpunn.datasets.make("teacher", 4096, 32, seed=1, device="cpu")
    before = openblas_threads()
    model = gpunn.MLP([32, 64, 64, 1], device="cpu", seed=0)
    history = model.fit(X, Y, epochs=1, batch_size=256, validation_data=(Xv, Yv), verbose=False)
    logs = model.evaluate(Xv, Yv)
    assert (logs["loss"], logs["mae"], logs["r2"]) == (history["val_loss"][-1], history["val_mae"][-1],
                                                       history["val_r2"][-1])
    with threadpoolctl.threadpool_limits(1):
        one_thread = model.predict(Xv)
    assert numpy.array_equal(model.predict(Xv), one_thread) and openblas_threads() == before
    ensemble = gpunn.Ensemble([32, 64, 64, 1], 2, device="cpu", seed=0)
    history = ensemble.fit(X, Y, epochs=1, batch_size=256, validation_data=(Xv, Yv), verbose=False)
    assert ensemble.evaluate(Xv, Yv)["loss"] == history["val_loss"][-1]
    monkeypatch.setattr(fit_threads, "blas_threads", lambda *a, **k: pytest.fail("a few rows' predict set the count"))
    model.predict(Xv[:2])  # (2 rows x 64 x 64: 8,192 multiply-adds, on the calling thread whatever the count)


@needs_two
def test_a_predict_of_fewer_rows_than_openblas_splits_a_product_over_sets_nothing_and_gives_one_threads_bits(
        monkeypatch):
    """OpenBLAS splits a matrix product (gemm) only past 65,536 x 4 multiply-adds, a matrix-vector or dot product (one
    row, or one output) past 2,304 x 4: inference_threads skipped a pass only under the latter for every product, so
    a 32-64-64-1 net's predict of 3-63 rows set the count and put it back for nothing (350 us for 130 under load 6
    here). Below each product's own bound nothing is set and the bits are one thread's; at a product's bound the
    count is set (a 1-row predict through 16,384 inputs to one output is a dot product, which two threads sum
    otherwise)."""
    clear(monkeypatch)
    rng = numpy.random.default_rng(0)
    real, calls = fit_threads.blas_threads, []
    monkeypatch.setattr(fit_threads, "blas_threads", lambda *a, **k: calls.append(a) or real(*a, **k))
    for sizes, dtype, rows, sets in (([32, 64, 64, 1], "float32", 63, False), ([32, 64, 64, 1], "float32", 64, True),
                                     ([32, 64, 64, 1], "float32", 128, True), ([16384, 1], "float64", 1, True),
                                     ([64, 256, 1], "float32", 15, False), ([64, 256, 1], "float32", 32, True)):
        model = gpunn.MLP(sizes, device="cpu", dtype=dtype, seed=1)
        X = rng.standard_normal((rows, sizes[0])).astype(dtype)
        with threadpoolctl.threadpool_limits(1):
            one_thread = model.predict(X)
        calls.clear()
        assert [numpy.array_equal(model.predict(X), one_thread) for _ in range(3)] == [True] * 3, (sizes, rows)
        assert bool(calls) == sets, (sizes, rows)


def test_a_predict_of_one_row_given_as_a_list_sets_nothing(monkeypatch):
    """inference_threads read the rows of a 2-D shape alone: one row given as a Python list set the count and put it
    back, a predict of 83 us taking 180 here. A list's or tuple's length counts its rows: few set nothing, and a pass
    of many still sets the count."""
    clear(monkeypatch)
    model = gpunn.MLP([32, 64, 64, 1], device="cpu", seed=1)
    row = numpy.random.default_rng(0).standard_normal(32)
    real, calls = fit_threads.blas_threads, []
    monkeypatch.setattr(fit_threads, "blas_threads", lambda *a, **k: calls.append(a) or real(*a, **k))
    for X in ([row.tolist()], (row.tolist(),), [row.tolist()] * 2):
        model.predict(X)
    assert calls == []
    model.predict([row.tolist()] * 300)
    assert calls == [(1,)]


def test_a_pass_is_taken_at_the_vector_bound_where_a_product_has_one_row_or_one_output_or_another_library_makes_it(
        monkeypatch):
    """(audit46c) 1138e328's bounds, product by product: a product of one row or of one output (a matrix-vector one)
    is split past 2,304 x 4 multiply-adds, not the matrix product's 65,536 x 4; where NumPy's OpenBLAS does not make
    every product (GPUNN_GEMM=mkl; a NumPy on another BLAS) every product is taken at the vector bound."""
    clear(monkeypatch)

    def net(*sizes, numpy_only=True):
        return types.SimpleNamespace(layer_sizes=list(sizes), ops=types.SimpleNamespace(_numpy_only=numpy_only))

    monkeypatch.setattr(fit_threads, "_built_with", lambda: "openblas")
    assert [fit_threads._could_split(net(16384, 1), 2), fit_threads._could_split(net(128, 128), 1),
            fit_threads._could_split(net(128, 128), 2), fit_threads._could_split(net(32, 64, 64, 1), 63)] == [
        True, True, False, False]
    assert fit_threads._could_split(net(32, 64, 64, 1, numpy_only=False), 63)  # (MKL's products)
    monkeypatch.setattr(fit_threads, "_built_with", lambda: "mkl")
    assert fit_threads._could_split(net(32, 64, 64, 1), 63) and not fit_threads._could_split(net(32, 64, 64, 1), 2)


def test_loss_and_gradients_runs_in_the_fits_count(monkeypatch):
    """(audit46c) gradients_over's backward pass over every row runs in the fit's count (its bits a fit's); a few
    rows' sets nothing."""
    clear(monkeypatch)
    real, calls = fit_threads.blas_threads, []
    monkeypatch.setattr(fit_threads, "blas_threads", lambda *a, **k: calls.append(a) or real(*a, **k))
    rng = numpy.random.default_rng(0)
    X, Y = rng.standard_normal((4096, 32)), rng.standard_normal((4096, 1))
    model = gpunn.MLP([32, 64, 64, 1], device="cpu", seed=0)
    model.loss_and_gradients(X, Y)
    assert calls == [(1,)]
    model.loss_and_gradients(X[:2], Y[:2])
    assert calls == [(1,)]
