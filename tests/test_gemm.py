"""gpunn.ops.gemm: every GEMM library gives NumPy's products (to float rounding), and the choice is cached.

The libraries are optional: blis and mkl come with the test extra (x86-64), and each test that
needs one is skipped where it is not installed, saying so.
"""
import numpy
import pytest

from gpunn import MLP, datasets
from gpunn.ops import gemm
from gpunn.ops.cpu import CpuOps, _split_rows

TOL = {"float32": dict(rtol=1e-4, atol=1e-4), "float64": dict(rtol=1e-10, atol=1e-10)}
# (m, k, n, a transposed, b transposed): the products of a training step (forward, dW = A^T dZ,
# dA = dZ W^T), with thin first and last layers, odd sizes and sizes past BLIS's row split (256).
SHAPES = [(64, 16, 32, False, False), (300, 33, 17, True, False), (300, 17, 33, False, True),
          (257, 129, 1, False, False), (129, 257, 1, True, False), (512, 1, 96, False, True),
          (384, 96, 80, True, True), (1, 40, 7, False, False)]


def operands(m, k, n, ta, tb, dtype, seed=0):
    rng = numpy.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return (a.T if ta else a), (b.T if tb else b)


def need(name):
    if gemm.library(name) is None:
        pytest.skip(f"{name} is not installed here")
    return gemm.library(name)


@pytest.mark.parametrize("name", gemm.LIBRARIES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "{}x{}x{}{}{}".format(*s[:3], "-aT" * s[3], "-bT" * s[4]))
def test_each_library_matches_numpy(name, dtype, shape):
    lib = need(name)
    a, b = operands(*shape, dtype)
    expect = a.astype("float64") @ b.astype("float64")
    chooser = gemm.GemmChooser(_split_rows, candidates=[name])
    out = numpy.full((a.shape[0], b.shape[1]), numpy.nan, dtype)
    chooser.matmul(a, b, out)
    numpy.testing.assert_allclose(out, expect, **TOL[dtype])
    # the product really went through the library (not the NumPy fallback) wherever it takes the operands
    assert chooser.choices[gemm.shape_key(a, b)] == (name if lib.takes(a, b, out) else "numpy")
    if name == "mkl" or (name == "blis" and dtype == "float32"):
        assert lib.takes(a, b, out)


def test_blis_row_split_matches_one_call():
    need("blis")
    a, b = operands(1000, 70, 50, True, False, "float32")
    out1, out2 = numpy.empty((1000, 50), "float32"), numpy.empty((1000, 50), "float32")
    gemm.library("blis")(a, b, out1, None)
    gemm.library("blis")(a, b, out2, lambda fn, n: _split_rows(fn, n, threads=3))
    numpy.testing.assert_array_equal(out1, out2)  # the same sums per row: bit for bit


def test_chooser_measures_once_per_shape_and_picks_an_installed_library(monkeypatch):
    chooser = gemm.GemmChooser(candidates=list(gemm.LIBRARIES))
    calls = []
    original = chooser._choose
    monkeypatch.setattr(chooser, "_choose", lambda *args: calls.append(args[0]) or original(*args))
    a, b = operands(256, 128, 64, False, False, "float32")
    out = numpy.empty((256, 64), "float32")
    for _ in range(3):
        chooser.matmul(a, b, out)
    numpy.testing.assert_allclose(out, a @ b, **TOL["float32"])
    assert len(calls) == 1
    key = gemm.shape_key(a, b)
    assert chooser.choices[key] in gemm.available()
    assert set(chooser.rates[key]) == {n for n in gemm.available()}  # every installed one was timed
    assert all(r > 0 for r in chooser.rates[key].values())
    assert chooser.choices[key] in chooser.summary()


def test_a_choice_is_keyed_by_the_dtypes_name_the_sizes_and_each_operands_layout():
    """shape_key is (dtype, m, k, n, a transposed, b transposed), as describe_key writes it for the bench's setup line
    (mut17b's G46: the dtype's one-letter code; G47: b's flag taken from a; G48: the marks on the wrong operand)."""
    for ta, tb, words in ((False, True, "8x4·4x3ᵀ float32"), (True, False, "8x4ᵀ·4x3 float32")):
        a, b = operands(8, 4, 3, ta, tb, "float32")
        assert gemm.shape_key(a, b) == ("float32", 8, 4, 3, ta, tb)
        assert gemm.describe_key(gemm.shape_key(a, b)) == words


def test_a_library_must_beat_numpy_by_the_margin(monkeypatch):
    """Noise must not move a shape off NumPy: a tie stays with NumPy."""
    need("blis")
    chooser = gemm.GemmChooser(candidates=["numpy", "blis"])
    monkeypatch.setattr(chooser, "_time", lambda lib, a, b, out, calls: 1.0 if lib.name == "numpy" else 0.99)
    a, b = operands(64, 32, 16, False, False, "float32")
    chooser.matmul(a, b, numpy.empty((64, 16), "float32"))
    assert chooser.choices[gemm.shape_key(a, b)] == "numpy"
    monkeypatch.setattr(chooser, "_time", lambda lib, a, b, out, calls: 1.0 if lib.name == "numpy" else 0.5)
    a, b = operands(64, 32, 17, False, False, "float32")
    chooser.matmul(a, b, numpy.empty((64, 17), "float32"))
    assert chooser.choices[gemm.shape_key(a, b)] == "blis"


def test_the_libraries_are_timed_in_turns_each_round_starting_with_the_next(monkeypatch):
    """Each round times one product of each library, the first to go rotating from round to round, so that no
    library is always timed right after another's call (audit35b's G8: every round in the same order passed)."""
    need("blis")
    chooser = gemm.GemmChooser(candidates=["numpy", "blis"])
    timed = []
    monkeypatch.setattr(chooser, "_time", lambda lib, a, b, out, calls: timed.append(lib.name) or 1e-4)
    a, b = operands(64, 32, 16, False, False, "float32")
    chooser.matmul(a, b, numpy.empty((64, 16), "float32"))
    rounds = timed[1:]  # (after the first, which sizes the rounds: 15 for a product under a millisecond)
    assert len(rounds) == 2 * 15 and rounds[0::2] == ["numpy", "blis"] * 7 + ["numpy"]


def test_the_rates_and_the_summary_of_the_choices(monkeypatch):
    """rates: GFLOP/s of each library, 2 m k n flops over its median time; summary: each library's shapes, the
    library with the most first, "; " between libraries (mut17b's G58 G59: rates off by 1e3, or of m k k flops;
    G61 G62 G63: no words before a product, alphabetical order, another separator)."""
    need("blis")
    chooser = gemm.GemmChooser(candidates=["numpy", "blis"])
    assert chooser.summary() == "no products yet"
    seconds = {"numpy": 0.5, "blis": 0.25}
    monkeypatch.setattr(chooser, "_time", lambda lib, a, b, out, calls: seconds[lib.name] * (
        1 if a.shape[0] > 8 else 1 / seconds[lib.name] ** 2))  # blis wins at 64 rows, numpy at 8
    for m, k, n in ((64, 32, 16), (8, 4, 3), (8, 4, 5)):
        a, b = operands(m, k, n, False, False, "float32")
        chooser.matmul(a, b, numpy.empty((m, n), "float32"))
    assert chooser.rates[("float32", 64, 32, 16, False, False)] == pytest.approx(
        {"numpy": 2 * 64 * 32 * 16 / 0.5 / 1e9, "blis": 2 * 64 * 32 * 16 / 0.25 / 1e9})
    assert chooser.summary() == "numpy: 8x4·4x3 float32, 8x4·4x5 float32; blis: 64x32·32x16 float32"


def test_a_shape_chosen_for_a_library_is_numpys_where_the_library_cannot_take_the_output():
    """A choice is cached by the operands' dtype, shape and layout, not by the output's: a later product of the
    same key into an output BLIS does not take (not C-contiguous: every other column of a wider buffer) is
    NumPy's, written into that view alone."""
    need("blis")
    chooser = gemm.GemmChooser(candidates=["blis"])
    a, b = operands(64, 16, 32, False, False, "float32")
    chooser.matmul(a, b, numpy.empty((64, 32), "float32"))
    assert chooser.choices[gemm.shape_key(a, b)] == "blis"
    wide = numpy.zeros((64, 64), "float32")
    chooser.matmul(a, b, wide[:, ::2])
    numpy.testing.assert_allclose(wide[:, ::2], a @ b, **TOL["float32"])
    assert not wide[:, 1::2].any()


@pytest.mark.parametrize("name", ["blis", "mkl"])
def test_operands_a_library_does_not_take_go_to_numpy(name):
    """An operand neither C- nor F-contiguous (every other column of a wider matrix), or an output of another dtype
    than the operands', is NumPy's product: each library checks both operands and the output (mut17b's G23: BLIS
    did not check b, and failed unpacking its layout; G35: MKL did not check the output's dtype, and its sgemm
    wrote float32 into a float64 buffer)."""
    need(name)
    chooser = gemm.GemmChooser(candidates=[name])
    a, b = operands(64, 16, 32, False, False, "float32")
    strided = numpy.repeat(b, 2, axis=1)[:, ::2]
    for x, y, out in ((a, strided, numpy.empty((64, 32), "float32")), (strided.T, b, numpy.empty((32, 32), "float32")),
                      (a, b, numpy.full((64, 32), numpy.nan))):
        chooser.matmul(x, y, out)
        numpy.testing.assert_allclose(out, x.astype("float64") @ y.astype("float64"), **TOL["float32"])


@pytest.mark.parametrize("error", [ImportError, OSError, AttributeError])
def test_a_library_that_fails_to_load_counts_as_not_installed(monkeypatch, error):
    """library(): a missing package (ImportError), a shared library that does not load (OSError) or one without a
    symbol ctypes looks up (AttributeError: cblas_sgemm) is not installed, and NumPy serves (mut17b's G38: only
    ImportError was caught, the others raised out of library() and so out of every chooser; G39: available()
    listed every library, installed or not)."""
    class Broken:
        def __init__(self):
            raise error("broken install")

    monkeypatch.setattr(gemm, "_LOADED", {})
    monkeypatch.setattr(gemm, "_Mkl", Broken)
    assert gemm.library("mkl") is None and "mkl" not in gemm.available()


def test_a_product_over_c_int_dimensions_is_numpys_not_a_library_of_int_arguments(monkeypatch):
    """MKL's CBLAS (through ctypes c_int, which wraps a larger value silently) and BLIS take C int dimensions: a
    product with one over 2**31 - 1 (a full batch of 2**31 rows) is NumPy's, which takes any size. The limit is
    made small here; the library is a stand-in that counts its calls."""
    calls = []

    class Counting:
        name = "mkl"

        def takes(self, a, b, out):
            return True

        def __call__(self, a, b, out, split=None):
            calls.append(a.shape)
            return numpy.matmul(a, b, out=out)

    library = gemm.library
    monkeypatch.setattr(gemm, "library", lambda name: Counting() if name == "mkl" else library(name))
    monkeypatch.setattr(gemm, "GEMM_INT_MAX", 100, raising=False)
    chooser = gemm.GemmChooser(candidates=["mkl"])
    for m, k, n in ((100, 3, 2), (101, 3, 2), (3, 101, 2), (3, 2, 101)):  # Z's rows, dW's k = rows, a layer's width
        a, b = operands(m, k, n, False, False, "float64")
        out = numpy.empty((m, n))
        chooser.matmul(a, b, out)
        numpy.testing.assert_allclose(out, a @ b, **TOL["float64"])
    assert calls == [(100, 3)]


def test_gpunn_gemm_env(monkeypatch):
    monkeypatch.delenv(gemm.ENV, raising=False)  # the default: NumPy alone (the per-shape choice is opt-in)
    assert gemm.requested() == (["numpy"], True) and "NumPy alone" in gemm.describe()
    monkeypatch.setenv(gemm.ENV, "numpy")
    assert gemm.requested() == (["numpy"], True)
    monkeypatch.setenv(gemm.ENV, "mkl,blis")
    assert gemm.requested() == (["numpy", "blis", "mkl"], False)
    monkeypatch.setenv(gemm.ENV, " MKL , Blis,")  # case, spaces and an empty item (mut17b's G40 G42)
    assert gemm.requested() == (["numpy", "blis", "mkl"], False)
    monkeypatch.setenv(gemm.ENV, "")  # set but empty: the default (G41)
    assert gemm.requested() == (["numpy"], True)
    monkeypatch.setenv(gemm.ENV, "openblas")
    with pytest.raises(ValueError, match="GPUNN_GEMM"):
        gemm.requested()
    monkeypatch.setenv(gemm.ENV, "auto")
    assert "measured at first use" in gemm.describe()


def test_describe_names_the_libraries_gpunn_gemm_leaves_out_and_the_setup_line_only_choosers_that_chose(monkeypatch):
    """describe(): an installed library GPUNN_GEMM does not allow is "(off: GPUNN_GEMM)"; choices_summary(): a
    chooser that has chosen nothing yet is not in the bench's setup line (mut17b's G67 G69 G65)."""
    need("mkl")
    monkeypatch.setenv(gemm.ENV, "numpy")
    assert "(off: GPUNN_GEMM)" in gemm.describe().split("mkl", 1)[1]
    monkeypatch.setenv(gemm.ENV, "mkl")  # one library named: forced (G69 said "fastest per shape")
    assert gemm.describe().startswith("forced by GPUNN_GEMM; ")
    monkeypatch.setattr(gemm, "_SHARED", {"numpy": gemm.GemmChooser(candidates=["numpy"])})
    assert gemm.choices_summary() == ""


@pytest.mark.parametrize("threads,said", [(1, "(1 thread)"), (2, "(2 threads)")])
def test_describe_counts_mkls_threads_in_words(monkeypatch, threads, said):
    """`taskset -c 0 gpunn info` (a Slurm job bound to one core) said "mkl 2026.2 (1 threads)"."""
    need("mkl")
    monkeypatch.setattr(gemm.library("mkl"), "threads", lambda: threads)
    assert gemm.describe().split("mkl ", 1)[1].split(" (off")[0].split(",")[0].endswith(said)


@pytest.mark.parametrize("name", ["blis", "mkl"])
def test_training_through_a_library_matches_numpy(monkeypatch, name):
    """A short run with every product through the library ends where the NumPy run ends (float32 rounding)."""
    need(name)
    X, Y = datasets.make("teacher", 2048, 12, 2, seed=0, device="cpu")
    final = {}
    for lib in ("numpy", name):
        monkeypatch.setenv(gemm.ENV, lib)
        model = MLP([12, 300, 64, 2], seed=0, device="cpu")
        assert isinstance(model.ops, CpuOps)
        model.fit(X, Y, epochs=2, batch_size=256, lr=1e-3, verbose=False)
        final[lib] = (model.params.copy(), model.ops.gemm)
    numpy.testing.assert_allclose(final[name][0], final["numpy"][0], rtol=1e-3, atol=1e-5)
    assert name in final[name][1].choices.values()  # the forward 256x300x64 product at least went through it


def test_numpy_alone_skips_the_chooser(monkeypatch):
    """GPUNN_GEMM=numpy (the default): CpuOps calls numpy.matmul directly; the per-call shape key and
    dispatch of the chooser cost ~10% of a small net's step, with nothing to choose."""
    monkeypatch.setenv(gemm.ENV, "numpy")
    monkeypatch.setattr(gemm.GemmChooser, "matmul", lambda *a: pytest.fail("went through the chooser"))
    X, Y = datasets.make("teacher", 256, 8, 1, seed=0, device="cpu")
    model = MLP([8, 32, 1], seed=0, device="cpu")
    model.fit(X, Y, epochs=1, batch_size=64, verbose=False)
    assert model.ops._numpy_only and numpy.isfinite(model.params).all()


def test_a_choice_to_make_goes_through_the_chooser(monkeypatch):
    monkeypatch.setenv(gemm.ENV, "auto")
    calls = []
    original = gemm.GemmChooser.matmul
    monkeypatch.setattr(gemm.GemmChooser, "matmul", lambda self, a, b, out: calls.append(1) or original(self, a, b, out))
    model = MLP([8, 32, 2], seed=0, device="cpu")  # two outputs: not a step the one call takes (gpunn.ops.mlp_step)
    if model.ops._numpy_only:
        pytest.skip("no GEMM library besides NumPy is installed here")
    X, Y = datasets.make("teacher", 256, 8, 2, seed=0, device="cpu")
    model.fit(X, Y, epochs=1, batch_size=64, verbose=False)
    assert calls


def test_mkl_workers_do_not_spin_after_a_call():
    """MKL's OpenMP workers sleep at once after a product (KMP_BLOCKTIME=0, set before MKL loads), so
    they do not hold the cores OpenBLAS and gpunn's threads need next (bench/RESULTS.md, issue 9)."""
    import os
    import subprocess
    import sys

    need("mkl")
    code = ("import ctypes, numpy; from gpunn.ops import gemm; lib = gemm.library('mkl'); "
            "a = numpy.ones((256, 256), 'float32'); lib(a, a, numpy.empty_like(a)); "
            "print(ctypes.CDLL('libiomp5.so').kmp_get_blocktime())")
    env = {k: v for k, v in os.environ.items() if k != "KMP_BLOCKTIME"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"  # the OpenMP runtime's own setting, read in the child
    # a user's own value wins (mut17b's G28: it was overwritten)
    out = subprocess.run([sys.executable, "-c", code], env={**env, "KMP_BLOCKTIME": "7"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "7"
