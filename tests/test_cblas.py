"""gpunn.ops.cblas: the intrinsics pass each argument as CBLAS declares it (enums as C ints, integers 64-bit for
an ILP64 library and 32-bit otherwise, reals of the operands' type, the dot product's double back); the probe
refuses a library that is off in any one call form the member-group pass makes; _bind's symbol names; and
once_per_float_dtype's one finding per float dtype."""
import ctypes
import threading

import numpy
import pytest

from gpunn.ops import cblas
from gpunn.ops.cpu import numba

pytestmark = pytest.mark.skipif(numba is None, reason="the intrinsics are Numba's")

BIG = 2**33 + 5  # beyond 32 bits: an ILP64 call carries it whole, an LP64 call its low 32 bits (5)
KINDS = {"gemm": "EEEIIIRPIPIRPI", "gemv": "EEIIRPIPIRPI", "dot": "IPIPI"}

if numba is not None:
    cblas._define()  # the intrinsics, which gpunn defines at its first kernel call (gpunn.ops.lazynumba)

    @numba.njit
    def _call_each(gemm, gemv, dot, ilp, alpha, beta, big):
        """One call of each intrinsic, every integer argument a different value from ``big`` on."""
        cblas.gemm(gemm, ilp, cblas.ROW_MAJOR, cblas.TRANS, cblas.NO_TRANS, big, big + 1, big + 2, alpha, 1000,
                   big + 3, 2000, big + 4, beta, 3000, big + 5)
        cblas.gemv(gemv, ilp, cblas.COL_MAJOR, cblas.NO_TRANS, big + 6, big + 7, alpha, 4000, big + 8, 5000,
                   big + 9, beta, 6000, big + 10)
        return cblas.dot(dot, ilp, big + 11, 7000, big + 12, 8000, big + 13)


def _recorder(kinds, real, integer, calls, keep):
    """The address of a C function of arguments of ``kinds`` that records them in ``calls`` (and returns 2.5 where it
    returns a double: the dot product)."""
    types = {"E": ctypes.c_int, "I": integer, "R": real, "P": ctypes.c_void_p}
    dot = kinds == KINDS["dot"]
    prototype = ctypes.CFUNCTYPE(ctypes.c_double if dot else None, *(types[k] for k in kinds))

    def record(*args):
        calls.append(args)
        return 2.5 if dot else None

    keep.append(prototype(record))
    return ctypes.cast(keep[-1], ctypes.c_void_p).value


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ilp64", [1, 0], ids=["ilp64", "lp64"])
def test_the_intrinsics_pass_each_argument_as_cblas_declares_it(dtype, ilp64):
    real = ctypes.c_float if dtype == "float32" else ctypes.c_double
    integer = ctypes.c_int64 if ilp64 else ctypes.c_int32
    calls, keep = {name: [] for name in KINDS}, []
    at = {name: _recorder(kinds, real, integer, calls[name], keep) for name, kinds in KINDS.items()}
    s = numpy.dtype(dtype).type
    assert _call_each(at["gemm"], at["gemv"], at["dot"], ilp64, s(1.5), s(0.25), BIG) == 2.5
    i = (lambda v: v) if ilp64 else (lambda v: ctypes.c_int32(v).value)  # what the C int parameter holds
    # CBLAS's enums: CblasRowMajor 101, CblasColMajor 102, CblasNoTrans 111, CblasTrans 112
    assert calls["gemm"] == [(101, 112, 111, i(BIG), i(BIG + 1), i(BIG + 2), 1.5, 1000, i(BIG + 3), 2000,
                              i(BIG + 4), 0.25, 3000, i(BIG + 5))]
    assert calls["gemv"] == [(102, 111, i(BIG + 6), i(BIG + 7), 1.5, 4000, i(BIG + 8), 5000, i(BIG + 9), 0.25,
                              6000, i(BIG + 10))]
    assert calls["dot"] == [(i(BIG + 11), 7000, i(BIG + 12), 8000, i(BIG + 13))]


def _functions(dtype):
    """ctypes prototypes of gemm, gemv and dot of an ILP64 library."""
    real, E, I, P = (ctypes.c_float if dtype == numpy.float32 else ctypes.c_double), ctypes.c_int, ctypes.c_int64, \
        ctypes.c_void_p
    return (ctypes.CFUNCTYPE(None, E, E, E, I, I, I, real, P, I, P, I, real, P, I),
            ctypes.CFUNCTYPE(None, E, E, I, I, real, P, I, P, I, real, P, I))


FORMS = {  # the member-group pass's call forms: gemm's (order, transa, transb) and gemv's (order, trans)
    "A @ B": ("gemm", (101, 111, 111)), "A^T @ B": ("gemm", (101, 112, 111)), "A @ B^T": ("gemm", (101, 111, 112)),
    "A @ v": ("gemv", (102, 112)), "A^T @ v": ("gemv", (101, 112)),
}


def _library(dtype, change=None):
    """[gemm, gemv, dot, 1]: NumPy's BLAS behind wrappers; ``change(name, form, args, out)`` may alter a call's
    arguments before it (returning them) or, given ``out``, its first output element after it."""
    blas = cblas._bind(dtype)
    assert blas is not None
    keep, real = [], ctypes.c_float if dtype == numpy.float32 else ctypes.c_double
    addresses = []
    for name, prototype, address, nform, out_at in (("gemm", _functions(dtype)[0], blas[0], 3, 12),
                                                     ("gemv", _functions(dtype)[1], blas[1], 2, 10)):
        wide = prototype(int(address))

        def call(*args, name=name, wide=wide, nform=nform, out_at=out_at):
            form = args[:nform]
            if change is not None:
                args = change(name, form, args, None)
            wide(*args)
            if change is not None and args[out_at]:
                first = real.from_address(args[out_at])
                first.value = change(name, form, args, first.value)

        keep.append(prototype(call))
        addresses.append(ctypes.cast(keep[-1], ctypes.c_void_p).value)
    return numpy.array(addresses + [int(blas[2]), 1], numpy.int64), keep


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64], ids=["float32", "float64"])
def test_the_probe_refuses_a_library_off_in_any_one_call_form(dtype):
    """One ulp off in one element of one call form (the other forms right): refused, each form; a gemm with m and n
    swapped (right for square products only); a product that reads its output, which beta = 0 says it must not
    (every output starts as NaN). The same wrappers changing nothing pass."""
    dtype = numpy.dtype(dtype)
    library, keep = _library(dtype)
    assert cblas._probe(dtype, library)
    for label, (which, form) in FORMS.items():
        def ulp_off(name, called, args, out, which=which, form=form):
            if out is None:
                return args
            return float(numpy.nextafter(dtype.type(out), dtype.type(numpy.inf))) if (name, called) == (which, form) else out

        library, keep = _library(dtype, ulp_off)
        assert not cblas._probe(dtype, library), label

    def swapped(name, form, args, out):
        if out is not None:
            return out
        return args[:3] + (args[4], args[3]) + args[5:] if name == "gemm" else args

    library, keep = _library(dtype, swapped)
    assert not cblas._probe(dtype, library)
    olds = []

    def reads_its_output(name, form, args, out):
        if out is None:
            olds.append(ctypes.c_double.from_address(args[-2]).value if dtype == numpy.float64
                        else ctypes.c_float.from_address(args[-2]).value)
            return args
        return out + 0.0 * olds.pop()  # beta (0) times the old value: NaN where that was NaN

    library, keep = _library(dtype, reads_its_output)
    assert not cblas._probe(dtype, library)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64], ids=["float32", "float64"])
def test_the_probe_refuses_a_ddot_one_ulp_off_and_numpy_blas_gives_none_for_a_library_it_refuses(monkeypatch, dtype):
    """ddot, the pass's float64 sum of squared errors, is probed against numpy.dot as the products are against
    numpy.matmul; and numpy_blas gives None (the group pass not used) for a library its probe refuses."""
    dtype = numpy.dtype(dtype)
    library, keep = _library(dtype)
    real = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                            ctypes.c_int64)
    ddot = real(int(library[2]))
    for nudge, taken in ((0.0, True), (numpy.inf, False)):
        wrapper = real(lambda *args, nudge=nudge: float(numpy.nextafter(ddot(*args), nudge)) if nudge else ddot(*args))
        keep.append(wrapper)
        off = library.copy()
        off[2] = ctypes.cast(wrapper, ctypes.c_void_p).value
        assert bool(cblas._probe(dtype, off)) is taken, nudge
    find = cblas.numpy_blas.__wrapped__  # without its cache per dtype
    assert find(dtype) is not None
    monkeypatch.setattr(cblas, "_bind", lambda dtype: off)
    assert find(dtype) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mkl_blas_is_mkls_gemm_and_gemv_in_numpys_integer_width_with_numpys_ddot(dtype):
    """Where gpunn.ops.gemm's MKL is loaded (with its thread-local count): mkl_blas binds (its probe takes MKL's
    products as that MKL makes them), with MKL's cblas_?gemm and ?gemv of NumPy's BLAS's integer width (the _64
    symbols for an ILP64 NumPy), NumPy's ddot and NumPy's ilp64 flag. (The tests of GPUNN_GEMM=mkl's one-call step
    skip where mkl_blas is None: this one does not.)"""
    from gpunn.ops import gemm

    mkl, ours = gemm.library("mkl"), cblas.numpy_blas(dtype)
    if mkl is None or mkl.local_threads is None or ours is None:
        pytest.skip("MKL (with its thread-local count) or NumPy's BLAS is not bound here")
    letter, suffix = ("s" if dtype == "float32" else "d"), ("_64" if ours[3] else "")
    symbols = [ctypes.cast(getattr(mkl._lib, f"cblas_{letter}{name}{suffix}"), ctypes.c_void_p).value
               for name in ("gemm", "gemv")]
    blas = cblas.mkl_blas(dtype)
    assert blas is not None and blas.tolist() == symbols + [int(ours[2]), int(ours[3])]


class _Library:
    """A library with the given symbols (each a C function of its own)."""

    def __init__(self, names):
        self.keep = {name: ctypes.CFUNCTYPE(None)(lambda: None) for name in names}

    def __getattr__(self, name):
        try:
            return self.keep[name]
        except KeyError:
            raise AttributeError(name) from None

    def address(self, name):
        return ctypes.cast(self.keep[name], ctypes.c_void_p).value


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bind_takes_the_first_symbol_names_found_and_their_integer_width(monkeypatch, dtype):
    """scipy-openblas64's names first, then plain CBLAS's 64-bit, then the 32-bit ones (ilp64 0); gemm and gemv of
    the dtype's letter, dot always ddot; a library that does not load is passed over."""
    letter = "s" if dtype == "float32" else "d"
    libraries = {}

    def load(path):
        if path not in libraries:
            raise OSError(path)
        return libraries[path]

    monkeypatch.setattr(cblas, "_libraries", lambda: ["missing", "lib"])
    monkeypatch.setattr(ctypes, "CDLL", load)
    cases = [  # (the library's suffixes and prefixes, those bound, ilp64)
        ([("cblas_", "")], ("cblas_", ""), 0),
        ([("scipy_cblas_", ""), ("cblas_", "")], ("scipy_cblas_", ""), 0),
        ([("cblas_", "64_"), ("scipy_cblas_", ""), ("cblas_", "")], ("cblas_", "64_"), 1),
        ([("cblas_", ""), ("scipy_cblas_", "64_"), ("cblas_", "64_")], ("scipy_cblas_", "64_"), 1),
    ]
    for present, bound, ilp64 in cases:
        names = [f"{p}{n}{s}" for p, s in present for n in (f"{letter}gemm", f"{letter}gemv", "ddot", "sdot")]
        libraries["lib"] = _Library(names)
        expected = [libraries["lib"].address(f"{bound[0]}{n}{bound[1]}") for n in (f"{letter}gemm", f"{letter}gemv",
                                                                                    "ddot")]
        assert cblas._bind(numpy.dtype(dtype)).tolist() == expected + [ilp64], present
    libraries["lib"] = _Library([f"cblas_{letter}gemm", f"cblas_{letter}gemv"])  # no ddot: not these names
    assert cblas._bind(numpy.dtype(dtype)) is None


def test_once_per_float_dtype_finds_each_float_dtype_once():
    calls = []
    once = cblas.once_per_float_dtype(lambda dtype: calls.append(dtype) or dtype.name)
    assert once("float32") == once(numpy.float32) == once(numpy.dtype("float32")) == "float32"
    assert once(numpy.float64) == once("float64") == once("d") == "float64"
    assert once("float16") is None and once("int64") is None and once(numpy.complex64) is None
    assert calls == [numpy.dtype("float32"), numpy.dtype("float64")]


@pytest.mark.parametrize("error", [OSError, AttributeError, TypeError, ValueError])
def test_once_per_float_dtype_gives_none_for_an_odd_library_once(error):
    calls = []

    def find(dtype):
        calls.append(dtype)
        raise error("an odd library")

    once = cblas.once_per_float_dtype(find)
    assert once("float32") is None and once("float32") is None
    assert calls == [numpy.dtype("float32")]


def test_once_per_float_dtype_finds_a_dtype_once_when_two_threads_ask_at_once():
    """The second caller waits for the first's finding (the member groups' threads ask at once) instead of finding
    it again. Without the lock the second thread enters find at once; with it, it never does."""
    entered, release, calls = threading.Event(), threading.Event(), []

    def find(dtype):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            entered.set()
        else:
            second.set()
        release.wait(60)
        return dtype.name

    second = threading.Event()
    once = cblas.once_per_float_dtype(find)
    results = []
    threads = [threading.Thread(target=lambda: results.append(once("float32")), name=f"t{i}") for i in range(2)]
    threads[0].start()
    assert entered.wait(60)
    threads[1].start()
    second.wait(1)  # where the second thread could enter find, it does within this
    release.set()
    for t in threads:
        t.join(60)
    assert results == ["float32", "float32"] and calls == ["t0"]
