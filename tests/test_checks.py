"""Bad input gets a clear error naming what was wrong and where, never a silent result."""
import copy
import datetime
import decimal
import inspect
import io
import json
import re
import warnings

import numpy
import pytest

import gpunn
from gpunn import MLP, Ensemble, datasets
from gpunn.checks import NotFinite
from gpunn.cli import main as cli_main
from gpunn.data.files import predict_file
from gpunn.training.ensemble import MemberEarlyStopping


@pytest.fixture
def model():
    return MLP([3, 4, 2], device="cpu", seed=0)


@pytest.fixture
def data():
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((10, 3)), rng.standard_normal((10, 2))


@pytest.mark.parametrize("where, value, match", [
    ("X", numpy.nan, r"X contains 1 NaN or infinite value\(s\) \(first at row 2, column 1\)"),
    ("X", numpy.inf, r"X contains 1 NaN or infinite"),
    ("Y", -numpy.inf, r"Y contains 1 NaN or infinite value\(s\) \(first at row 2, column 1\)"),
    ("X", 1e300, r"after conversion to float32"),  # finite in float64, overflows the model dtype
])
def test_non_finite_values(model, data, where, value, match):
    X, Y = (a.copy() for a in data)
    (X if where == "X" else Y)[2, 1] = value
    with pytest.raises(ValueError, match=match):
        model.fit(X, Y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=match):
        model.loss_and_gradients(X, Y)


def test_row_counts_differ(model, data):
    X, Y = data
    with pytest.raises(ValueError, match="X has 10 rows but Y has 9"):
        model.fit(X, Y[:9], epochs=1, verbose=False)
    with pytest.raises(ValueError, match="X has 9 rows but Y has 10"):  # more targets than rows too
        model.fit(X[:9], Y, epochs=1, verbose=False)


def test_a_1d_array_given_to_a_one_feature_model_is_told_to_be_a_column():
    model = MLP([1, 4, 1], device="cpu", seed=0)
    for rows in (5, 1):
        with pytest.raises(ValueError, match=r"X must be 2-D .*got shape \(%d,\) \(use X\.reshape\(-1, 1\) for a "
                                             r"single feature\)$" % rows):
            model.predict(numpy.ones(rows))


def test_wrong_feature_count_at_predict(model, data):
    with pytest.raises(ValueError, match="X has 4 columns but the model expects 3"):
        model.predict(numpy.ones((5, 4)))


def test_wrong_output_count(model, data):
    with pytest.raises(ValueError, match="Y has 3 columns but the model expects 2"):
        model.fit(data[0], numpy.ones((10, 3)), epochs=1, verbose=False)


def test_a_transposed_x_or_y_is_told_to_pass_its_transpose(model, data):
    """y saved as a row, shape (1, n), said only "Y has 10 columns but the model expects 2" (X made column by column
    likewise); a shape whose rows are the model's width is now said to look transposed."""
    X, Y = data
    with pytest.raises(ValueError, match=r"^Y has 10 columns but the model expects 2; its shape \(2, 10\) looks "
                                         r"transposed \(rows are examples\): pass Y\.T$"):
        model.fit(X, Y.T, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"^X has 10 columns but the model expects 3; its shape \(3, 10\) looks "
                                         r"transposed \(rows are examples\): pass X\.T$"):
        model.predict(X.T)
    one = MLP([3, 1], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"its shape \(1, 10\) looks transposed \(rows are examples\): pass Y\.T$"):
        one.score(X, Y[:, :1].T)
    with pytest.raises(ValueError, match="^X has 4 columns but the model expects 3$"):  # no other shape is said so
        model.predict(numpy.ones((5, 4)))


def test_one_dimensional_y_is_never_broadcast(data):
    X, _ = data
    model = MLP([3, 2], device="cpu")
    with pytest.raises(ValueError, match="^Y has 1 column but the model expects 2$"):  # (it said "1 columns")
        model.fit(X, numpy.ones(10), epochs=1, verbose=False)


@pytest.mark.parametrize("bad, error, match", [
    # numbers as text (a csv.reader's rows) are told how to convert them; it said the dtype alone
    (numpy.array([["a", "b", "c"]]), TypeError, r"X must hold real numbers; got dtype <U1 \(text: where every "
                                                r"string is a number, convert them first, X\.astype\(float\); encode "
                                                r"other text as numbers\)$"),
    (numpy.array([[b"1", b"2", b"3"]]), TypeError, r"got dtype \|S1 \(text: .* X\.astype\(float\)"),
    # an object array of numbers as text (a list of str and numbers) was told to encode them, a str array to convert
    # them: both are told to convert them where every value reads as a number
    (numpy.array([["1", "2.5", 3]], dtype=object), TypeError, r"^X must hold real numbers; got dtype object \(text: its "
                                                              r"every value is a number; convert them first, "
                                                              r"X\.astype\(float\)\)$"),
    (numpy.array([["1", "2", "3"]]), TypeError, r"got dtype <U1 \(text: its every value is a number; convert them "
                                                r"first, X\.astype\(float\)\)$"),
    # (audit46b) a None is no number (astype reads it as NaN); Decimals, numbers but no numbers.Real, are Python
    # objects; bytes among them are text
    (numpy.array([["1", None, 3]], dtype=object), TypeError, r"got dtype object \(strings or other Python objects: "
                                                             r"encode them as numbers first\)$"),
    (numpy.array([[decimal.Decimal("1.5"), decimal.Decimal("2"), 3]], dtype=object), TypeError,
     r"got dtype object \(Python objects: its every value is a number; convert them first, X\.astype\(float\)\)$"),
    (numpy.array([[b"1", decimal.Decimal("2"), 3]], dtype=object), TypeError, r"got dtype object \(text: its every "
                                                                             r"value is a number"),
    (numpy.ones((2, 3), dtype=complex), TypeError, "X must hold real numbers; got dtype complex128$"),  # no objects
    (numpy.array([[1 + 2j, 3, 4]], dtype=object), TypeError, r"X must hold real numbers; got dtype object \(strings"),
    (numpy.empty((0, 3)), ValueError, r"X is empty: shape \(0, 3\)"),
    (numpy.empty((3, 0)), ValueError, r"X is empty: shape \(3, 0\)"),  # not "has 0 columns"
    (numpy.ones(3), ValueError, r"X must be 2-D .*X\.reshape\(1, -1\) for a single row"),  # the model takes 3
    (numpy.ones(6), ValueError, r"X must be 2-D .*X\.reshape\(-1, 3\) for rows of 3 features"),
    (numpy.ones((2, 3, 1)), ValueError, "X must be 2-D"),
    ([[1, 2, None]], ValueError, r"X holds 1 None value\(s\) \(missing values\?\), first at row 0, column 2"),
    (None, TypeError, "X is None"),
])
def test_non_numeric_empty_or_misshapen_inputs(model, bad, error, match):
    with pytest.raises(error, match=match):
        model.predict(bad)


def test_a_data_sources_piece_of_numbers_as_text_is_told_to_convert_its_x_not_its_name():
    """An iterable's piece is checked as "X of batch 1 (epoch 1)": the conversion names X (audit46b)."""
    pieces = gpunn.data.iterable([(numpy.array([["1", "2"]] * 4, dtype=object), numpy.zeros(4))])
    with pytest.raises(TypeError, match=r"^X of batch 1 \(epoch 1\) must hold real numbers; got dtype object \(text: "
                                        r"its every value is a number; convert them first, X\.astype\(float\)\)$"):
        MLP([2, 3, 1], device="cpu").fit(pieces, epochs=1, verbose=False)


def test_a_file_name_in_place_of_an_array_is_named_as_one(model, data, tmp_path):
    """fit("X.npy", "Y.npy"), as the command line takes files, said "X must hold real numbers; got dtype <U5"."""
    X, Y = data
    numpy.save(tmp_path / "X.npy", X)
    numpy.save(tmp_path / "Y.npy", Y)
    said = r"is a {} \('{}'\), not an array: read a file first \(numpy.load for .npy\); fit also takes files as a data"
    # fit is told how fit reads them first (it was told of predict's ways, "to predict a table file", for a table)
    for fit, how in ((model.fit, "model.fit"), (gpunn.Ensemble([3, 4, 1], 2, device="cpu").fit, "ens.fit")):
        with pytest.raises(TypeError) as refused:
            fit("X.npy", "Y.npy", epochs=1, verbose=False)
        assert str(refused.value) == (f"X is a str ('X.npy'), not an array: {how} takes .npy files as a data source in "
                                      f"place of X and Y, memory-mapped: {how}(gpunn.data.npy('X.npy', 'Y.npy')); or "
                                      "load them first, numpy.load(path)")
    with pytest.raises(TypeError, match="^Y " + said.format("str", "Y.npy")):
        model.fit(X, "Y.npy", epochs=1, verbose=False)
    with pytest.raises(TypeError, match="^X " + said.format(type(tmp_path).__name__, re.escape(str(tmp_path / "X.npy")))):
        model.predict(tmp_path / "X.npy")
    model.fit(gpunn.data.npy(tmp_path / "X.npy", tmp_path / "Y.npy"), epochs=1, verbose=False)  # as it says
    # a model fit on a standardize=True source reads raw inputs another way, where a name still said "dtype <U5"
    model.fit(gpunn.data.npy(tmp_path / "X.npy", tmp_path / "Y.npy", standardize=True), epochs=1, verbose=False)
    # an .npy X is told of gpunn predict too, which predicts the file (streamed over STREAM_BYTES, as it says)
    command = (r"; gpunn predict MODEL X\.npy OUT predicts an \.npy file to a file \(one over 256 MiB streamed; MODEL "
               r"one network's file: gpunn\.save\(path, ens\.best\(\)\) saves an Ensemble's best member as one\)$")
    assert gpunn.cli.predict.STREAM_BYTES == 256 << 20
    for call in (lambda: model.predict("X.npy"), lambda: model.score("X.npy", Y), lambda: model.evaluate("X.npy", Y),
                 lambda: model.evaluate("X.npy"), lambda: model.score("X.npy")):  # without Y: said "Y is None"
        with pytest.raises(TypeError, match="^X " + said.format("str", "X.npy") + ".*" + command):
            call()
    with pytest.raises(TypeError, match="^Y " + said.format("str", "Y.npy")) as refused:
        model.loss(X, "Y.npy")
    assert "gpunn predict" not in str(refused.value)  # Y's file is no input to predict


def test_a_table_files_name_in_place_of_an_array_names_the_ways_that_read_a_table(model, data, tmp_path, monkeypatch):
    """predict("heldout.parquet") was told to read it with numpy.load, which cannot: a table file's name (a Parquet
    directory's too) is told of gpunn predict, which streams it to a file, of pandas' reader for it, and of the
    data source that fit, evaluate, score and predict take, each one that exists."""
    X, Y = data
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    for path, reader, source in [("heldout.parquet", "read_parquet", "parquet"), ("h.CSV", "read_csv", "csv"),
                                 ("runs", "read_parquet", "parquet"), (tmp_path / "t.pq", "read_parquet", "parquet")]:
        with pytest.raises(TypeError) as refused:  # fit is told how fit reads it, first
            model.fit(path, Y)
        assert str(refused.value) == (f"X is a {type(path).__name__} ({str(path)!r}), not an array: model.fit takes a "
                                      "table file as a data source in place of X and Y, its feature and target columns "
                                      f"streamed: model.fit(gpunn.data.{source}({str(path)!r}, target=[...])), the "
                                      f"target columns named; or read it first, pandas.{reader}(path)")
        for call in (lambda: model.predict(path), lambda: model.evaluate(path, Y),
                     lambda: model.evaluate(path), lambda: model.score(path)):  # without Y: said "Y is None"
            with pytest.raises(TypeError) as refused:
                call()
            said = str(refused.value)
            assert said.startswith(f"X is a {type(path).__name__} ({str(path)!r}), not an array: to predict a table "
                                   "file, gpunn predict MODEL IN OUT (streamed; MODEL one network's file: "
                                   "gpunn.save(path, ens.best()) saves an Ensemble's best member as one), "
                                   "or model.predict(pandas."
                                   f"{reader}(path)), whose columns"), said
            assert said.endswith(f"as a data source, streamed: gpunn.data.{source}(path, target=...)"), said
            assert "numpy.load" not in said
    assert "predict" in gpunn.cli.COMMAND_NAMES and callable(gpunn.data.parquet) and callable(gpunn.data.csv)
    # Y's table file is no input to predict (as Y's .npy file is not): told how to read its targets, not gpunn predict
    for path, reader, source in [("y.csv", "read_csv", "csv"), ("runs", "read_parquet", "parquet")]:
        for call in (lambda: model.fit(X, path), lambda: model.evaluate(X, path), lambda: model.score(X, path),
                     lambda: model.loss(X, path)):
            with pytest.raises(TypeError) as refused:
                call()
            said = str(refused.value)
            assert said == (f"Y is a str ({path!r}), not an array: read its target column(s) first, pandas.{reader}("
                            "path)[[...]]; fit, evaluate and score also take a table of the features and targets as a "
                            f"data source, in place of X and Y, streamed: gpunn.data.{source}(path, target=...)"), said
    # X's side of validation_data, or an iterable's batch, is inputs: it was told to read its target column(s)
    Yv = Y[:4]
    for call, name, where, instead in [
            (lambda: model.fit(X, Y, epochs=1, validation_data=("v.csv", Yv)), "X_val", "validation_data also takes",
             "(X_val, Y_val)"),
            (lambda: model.fit(gpunn.data.iterable([("v.csv", Yv)]), epochs=1), "X of batch 1 (epoch 1)",
             "fit also takes", "X and Y")]:
        with pytest.raises(TypeError) as refused:
            call()
        assert str(refused.value) == (
            f"{name} is a str ('v.csv'), not an array: read its feature column(s) first, pandas.read_csv(path)[[...]]; "
            f"{where} a table of the features and targets as a data source, in place of {instead}, streamed: "
            "gpunn.data.csv(path, target=...)"), str(refused.value)


def test_a_table_files_name_is_told_by_the_suffixes_the_command_line_reads_as_that_tables():
    """The refusal's reader (checks._table_reader) and the command line's (--data, gpunn predict's IN: preflight and
    gpunn.data.files) read a name's suffix by one list of Parquet suffixes (checks held a copy of preflight's):
    each data suffix, in either case, names the reader of the format gpunn reads the file as."""
    from gpunn import checks, preflight
    from gpunn.data.files import FORMATS

    assert preflight.PARQUET_SUFFIXES is checks.PARQUET_SUFFIXES
    assert set(FORMATS) == set(preflight.DATA_SUFFIXES)
    for suffix, kind in FORMATS.items():
        for name in (f"t{suffix}", f"T{suffix.upper()}"):
            assert checks._table_reader(name) == (None if kind == "npy" else f"read_{kind}"), name


def test_an_ensembles_file_name_refusal_says_how_gpunn_predict_takes_one_of_its_members(data, tmp_path):
    """gpunn predict refuses an Ensemble's checkpoint, yet an Ensemble given a file's name was pointed to it as it
    stood: the refusal says MODEL is one network's file, and how an Ensemble's best member is saved as one (which
    gpunn predict then takes)."""
    X, Y = data
    ens = gpunn.Ensemble([3, 4, 2], 2, seed=0)
    ens.fit(X, Y, epochs=1, validation_data=(X, Y), verbose=False)
    for path in ("X.npy", "heldout.parquet"):
        with pytest.raises(TypeError, match=re.escape("MODEL one network's file: gpunn.save(path, ens.best()) saves an "
                                                      "Ensemble's best member as one")):
            ens.predict(path)
    gpunn.save(tmp_path / "best.npz", ens.best())  # as it says: one network's file, which gpunn predict takes
    numpy.save(tmp_path / "X.npy", X.astype(numpy.float32))
    assert gpunn.cli.main(["predict", str(tmp_path / "best.npz"), str(tmp_path / "X.npy"),
                           str(tmp_path / "P.npy")]) in (0, None)
    numpy.testing.assert_allclose(numpy.load(tmp_path / "P.npy"), ens.best().predict(X.astype(numpy.float32)),
                                  rtol=1e-6)


def test_python_lists_are_accepted(model):
    assert model.predict([[1.0, 2.0, 3.0]]).shape == (1, 2)


def test_a_bool_matrix_is_read_as_zeros_and_ones(model):
    flags = numpy.array([[True, False, True], [False, False, True]])
    numpy.testing.assert_array_equal(model.predict(flags), model.predict(flags.astype(numpy.float32)))


def test_every_non_finite_value_is_counted_and_the_first_in_row_order_is_named(model):
    X = numpy.ones((5, 3))
    X[3, 0], X[1, 2], X[4, 1] = numpy.inf, numpy.nan, -numpy.inf
    with pytest.raises(NotFinite, match=r"X contains 3 NaN or infinite value\(s\) \(first at row 1, column 2\)"):
        model.predict(X)


def test_a_columns_name_held_as_a_numpy_string_is_said_as_its_text():
    """A column's name may come as a numpy.str_ (a list of an array's names): it is said as the text it holds, not as
    its repr, np.str_('price') (audit35b's K28)."""
    exc = NotFinite("X", 1, 7, 1, "float32", label=numpy.str_("price"))
    assert "(first at row 7, column 1 ('price'))" in str(exc)


def test_a_value_that_overflows_the_models_dtype_is_refused_without_numpys_overflow_warning(model):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "overflow encountered in cast" said it first, without a place
        with pytest.raises(NotFinite, match=r"first at row 0, column 1\) after conversion to float32"):
            model.predict(numpy.array([[1.0, -1e300, 1.0]]))


class _Subclass(numpy.ndarray):
    """An ndarray subclass, as a memmap (tied to its file) or a numpy.matrix is."""


@pytest.mark.parametrize("make", [numpy.asfortranarray, lambda a: a.view(_Subclass), lambda a: a[:, ::-1]],
                         ids=["fortran", "subclass", "strided"])
def test_the_checked_matrix_is_a_plain_c_ordered_array_whatever_array_came_in(make):
    from gpunn.backend import resolve
    from gpunn.checks import as_matrix

    given = make(numpy.arange(12, dtype=numpy.float32).reshape(4, 3))
    checked = as_matrix(given, "X", resolve("cpu"), "float32")
    assert type(checked) is numpy.ndarray and checked.flags.c_contiguous
    numpy.testing.assert_array_equal(checked, numpy.asarray(given))


class _FrameLike:
    """What a pandas DataFrame looks like to the checks: ``__array__`` (an object array for mixed columns) and
    ``to_numpy(dtype, na_value)``, which raises where a column holds words."""

    def __init__(self, values, to_numpy_error=None):
        self.values, self.to_numpy_error, self.to_numpy_calls = values, to_numpy_error, 0

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def to_numpy(self, dtype=None, na_value=None):
        self.to_numpy_calls += 1
        if self.to_numpy_error:
            raise self.to_numpy_error
        return numpy.where(self.values == None, na_value, self.values).astype(dtype)  # noqa: E711


def test_a_frame_of_one_numpy_dtype_keeps_it_and_one_of_mixed_columns_is_read_in_float64():
    from gpunn.checks import as_array

    frame = _FrameLike(numpy.ones((4, 3), numpy.float32))
    assert as_array(frame).dtype == numpy.float32 and frame.to_numpy_calls == 0  # (a float64 copy of float32 data)
    mixed = _FrameLike(numpy.array([[1, 2.5, None]], dtype=object))
    read = as_array(mixed)
    assert read.dtype == numpy.float64 and mixed.to_numpy_calls == 1
    numpy.testing.assert_array_equal(read, [[1.0, 2.5, numpy.nan]])


@pytest.mark.parametrize("error", [TypeError("words"), ValueError("could not convert string to float: 'x'")])
def test_a_frame_of_words_is_refused_by_its_dtype_whatever_to_numpy_raised(model, error):
    words = _FrameLike(numpy.array([[1.0, "x", 2.0]], dtype=object), to_numpy_error=error)
    with pytest.raises(TypeError, match="X must hold real numbers; got dtype object .strings or other Python objects"):
        model.predict(words)


def test_a_tensor_that_cannot_be_read_as_an_array_is_a_value_error_naming_the_argument(model):
    class RequiresGrad:  # torch: "Can't call numpy() on Tensor that requires grad"
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("Can't call numpy() on Tensor that requires grad")

    with pytest.raises(ValueError, match="X could not be read as a numeric array: Can't call numpy"):
        model.predict(RequiresGrad())


class _SeriesLike:
    """What a pandas Series, a nullable pandas column or a torch tensor looks like to the checks: a ``dtype``
    that is not NumPy's, no NumPy methods, and ``__array__``."""

    dtype = "Float64"  # pandas' nullable float: numpy.dtype() cannot read it

    def __init__(self, values):
        self.values = numpy.asarray(values)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)


def test_array_likes_that_are_not_numpy_arrays_are_read_as_arrays(model, data):
    # they failed in the checks: "'Series' object has no attribute 'reshape'", "Cannot interpret 'Float64Dtype()'
    # as a data type", "Cannot interpret 'torch.float32' as a data type"
    X, Y = data
    y = _SeriesLike(Y[:, 0])
    one = MLP([3, 4, 1], device="cpu", seed=0)
    history = one.fit(_SeriesLike(X), y, epochs=2, verbose=False, validation_data=(X, y))
    twin = MLP([3, 4, 1], device="cpu", seed=0)
    assert history["loss"] == twin.fit(X, Y[:, :1], epochs=2, verbose=False, validation_data=(X, Y[:, :1]))["loss"]
    assert one.score(X, y) == twin.score(X, Y[:, :1])
    with pytest.raises(ValueError, match=r"Y contains 1 NaN or infinite value\(s\) \(first at row 3, column 0\)"):
        one.fit(X, _SeriesLike(numpy.where(numpy.arange(10) == 3, numpy.nan, 1.0)), epochs=1, verbose=False)


@pytest.mark.filterwarnings("ignore:X(_val)? has no column names")  # arrays to a named model: warned of, below
def test_pandas_columns_nullable_or_mixed_are_numbers_and_missing_values_are_named():
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    frame = pandas.DataFrame({"a": rng.standard_normal(12), "b": pandas.array(range(12), dtype="Int64"),
                              "c": rng.standard_normal(12).astype("float32")})
    y = pandas.Series(rng.standard_normal(12), name="y")
    model = MLP([3, 4, 1], device="cpu", seed=0)
    model.fit(frame, y, epochs=1, verbose=False)
    numpy.testing.assert_array_equal(model.predict(frame), model.predict(frame.to_numpy(dtype=float)))
    frame.loc[5, "b"] = pandas.NA
    # the column by its name too, where its position alone left the reader counting; a frame of unnamed columns (and
    # an array) by its position alone
    with pytest.raises(ValueError, match=r"X contains 1 NaN or .* \(first at row 5, column 1 \('b'\)\) after"):
        model.predict(frame)
    with pytest.raises(ValueError, match=r"Y contains 1 NaN or .* \(first at row 4, column 0 \('y'\)\) after"):
        model.fit(frame.fillna(0), y.where(y.index != 4).to_frame(), epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite value\(s\) \(first at row 5, column 1\) after"):
        MLP([3, 4, 1], device="cpu").predict(frame.set_axis(range(3), axis=1))
    # the column that holds the words, named: it said "strings or other Python objects" of the whole frame
    with pytest.raises(TypeError, match=r"^X must hold real numbers; got dtype object \(its column 'b' holds text, "
                                        r"'x' in row 0: leave it out, or encode it as numbers\)$"):
        model.predict(frame.assign(b="x"))
    with pytest.raises(TypeError, match=r"\(its column 'c' holds text, 'n/a' in row 2: leave it out"):
        model.fit(frame.assign(b=1, c=[1.5, 2.0, "n/a"] + [0.0] * 9), y, epochs=1, verbose=False)
    # numbers written as text are the caller's to convert, as a NumPy array's are: a DataFrame's were converted
    # silently (the nullable columns' conversion took them too), whatever the text ('1,5' would have been refused)
    written = frame.fillna(0).assign(b=lambda f: f["b"].map(repr))
    for X in (written, written.astype({"b": object})):  # (pandas 3's str column, and a column of Python objects)
        with pytest.raises(TypeError, match=r"^X must hold real numbers; got dtype object \(its column 'b' holds numbers "
                                            r"written as text, '0' in row 0: convert them first, X\.astype\(float\)\)$"):
            model.predict(X)
    with pytest.raises(TypeError, match=r"^Y must hold real numbers; .*convert them first, Y\.astype\(float\)\)$"):
        model.fit(frame.fillna(0), y.map(repr), epochs=1, verbose=False)
    numpy.testing.assert_array_equal(model.predict(written.astype({"b": float})), model.predict(frame.fillna(0)))


class _NamedFrame:
    """What a pandas DataFrame looks like to a model that knows its feature names: ``columns``, ``iloc``, columns
    picked by a list of names, and ``__array__`` (the real frames' tests below: pandas is in the test extra)."""

    def __init__(self, values, columns):
        self.values, self.columns, self.iloc = numpy.asarray(values), list(columns), None

    def __getitem__(self, names):
        return type(self)(self.values[:, [self.columns.index(n) for n in names]], names)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def _named_model(tmp_path, ensemble=False):
    """A model trained on a CSV table's columns a, b, c (target y), as gpunn train --data trains one."""
    pytest.importorskip("pyarrow")
    rng = numpy.random.default_rng(0)
    table = rng.standard_normal((64, 4))
    numpy.savetxt(tmp_path / "t.csv", table, delimiter=",", header="a,b,c,y", comments="")
    model = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 1], device="cpu",
                                                                                             seed=0)
    with gpunn.data.csv(tmp_path / "t.csv", target="y", standardize=ensemble) as source:
        model.fit(source, epochs=1, verbose=False)
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["y"]}
    return model, table


@pytest.mark.filterwarnings("ignore:X(_val)? has no column names")  # arrays to a named model: warned of, below
@pytest.mark.parametrize("ensemble", [False, True], ids=["MLP", "Ensemble"])
def test_a_model_trained_on_named_columns_picks_a_frames_columns_by_name(tmp_path, ensemble):
    """A model trained on a table (gpunn train --data t.csv) read a DataFrame by position: the same columns in
    another order were predicted on the wrong features without a word, and the table read back whole (its target
    column too) was refused as "X has 4 columns but the model expects 3". gpunn predict picks a CSV file's columns
    by name; predict, score, evaluate and fit now pick a DataFrame's so too."""
    model, table = _named_model(tmp_path, ensemble)
    X, y = table[:, :3], table[:, 3]
    expected = model.predict(X)
    for order in (["a", "b", "c"], ["c", "a", "b"], ["y", "b", "c", "a"]):
        frame = _NamedFrame(table[:, ["abcy".index(n) for n in order]], order)
        numpy.testing.assert_array_equal(model.predict(frame), expected)
        assert model.score(frame, y) == model.score(X, y)
    numpy.testing.assert_array_equal(model.predict(_NamedFrame(X, [0, 1, 2])), expected)  # unnamed: by position
    with pytest.raises(ValueError, match=r"^X has no column 'b': the model was trained on named columns, a, b, c, and "
                                         r"picks a DataFrame's by name; its columns are: a, B, c$"):
        model.predict(_NamedFrame(X, ["a", "B", "c"]))
    if not ensemble:
        shuffled = _NamedFrame(table[:, [2, 0, 1]], ["c", "a", "b"])
        twin = copy.deepcopy(model)
        assert model.fit(shuffled, y, epochs=1, verbose=False, validation_data=(shuffled, y))["val_r2"] == \
            twin.fit(X, y, epochs=1, verbose=False, validation_data=(X, y))["val_r2"]


@pytest.mark.filterwarnings("ignore:X(_val)? has no column names")  # arrays to a named model: warned of, below
def test_a_pandas_frame_is_picked_by_name_by_a_model_trained_on_named_columns(tmp_path):
    pandas = pytest.importorskip("pandas")
    model, table = _named_model(tmp_path)
    frame = pandas.DataFrame(table, columns=["a", "b", "c", "y"])
    numpy.testing.assert_array_equal(model.predict(frame[["c", "y", "a", "b"]]), model.predict(table[:, :3]))


class _PolarsLikeFrame(_NamedFrame):
    """A polars DataFrame as gpunn reads one: ``columns`` (a list of strings), ``select`` and ``frame[names]``,
    ``__array__``, and no ``iloc`` (the tests that take it run on polars itself where it is installed)."""

    def __init__(self, values, columns):
        super().__init__(values, columns)
        del self.iloc

    def select(self, names):
        return self[names]

    def __getitem__(self, names):  # a name: its column, a Series
        return _PolarsLikeSeries(self.values[:, self.columns.index(names)], names) if isinstance(names, str) else \
            super().__getitem__(names)


class _PolarsLikeSeries:
    """A polars Series: a ``name``, ``to_numpy`` and ``__array__``; no ``iloc``."""

    def __init__(self, values, name):
        self.values, self.name = numpy.asarray(values), name

    def to_numpy(self):
        return self.values

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __iter__(self):
        return iter(self.values.tolist())


def _polars(kind):
    """(DataFrame, Series) makers of polars' or of its stand-in's."""
    if kind == "stand-in":
        return _PolarsLikeFrame, _PolarsLikeSeries
    polars = pytest.importorskip("polars")
    return (lambda values, names: polars.DataFrame({n: list(c) for n, c in zip(names, numpy.asarray(values).T)}),
            lambda values, name: polars.Series(name, values))


@pytest.mark.parametrize("kind", ["stand-in", "polars"])
@pytest.mark.parametrize("ensemble", [False, True], ids=["MLP", "Ensemble"])
def test_a_polars_frame_is_read_by_column_name_as_a_pandas_frame_is(ensemble, kind):
    """A polars DataFrame has no ``iloc``: it was read by position and its names were not kept, so the same columns
    in another order were predicted on the wrong features without a word."""
    frame, series = _polars(kind)
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((48, 3)), rng.standard_normal(48)
    model = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 1], device="cpu",
                                                                                             seed=0)
    model.fit(frame(X, ["a", "b", "c"]), series(y, "price"), epochs=1, verbose=False)
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["price"]}
    expected = model.predict(frame(X, ["a", "b", "c"]))
    shuffled = frame(X[:, [2, 0, 1]], ["c", "a", "b"])
    numpy.testing.assert_array_equal(model.predict(shuffled), expected)
    assert model.score(shuffled, series(y, "price")) == model.score(frame(X, ["a", "b", "c"]), y)
    with pytest.raises(ValueError, match=r"^X has no column 'b': the model was trained on named columns, a, b, c"):
        model.predict(frame(X, ["a", "B", "c"]))


@pytest.mark.parametrize("kind", ["stand-in", "polars"])
def test_a_polars_frames_column_of_text_is_named(kind):
    """A polars DataFrame with a column of text failed with "AttributeError: 'DataFrame' object has no attribute
    'iloc'" where a pandas one's column is named (the refusal read its columns by iloc)."""
    frame, _ = _polars(kind)
    data = frame(numpy.array([[1.5, "Paris", 3], [2.5, "Rome", 4]], dtype=object), ["a", "city", "c"])
    with pytest.raises(TypeError, match=r"^X must hold real numbers; got dtype object \(its column 'city' holds text, "
                                        r"'Paris' in row 0: leave it out, or encode it as numbers\)$"):
        MLP([3, 4, 1], device="cpu", seed=0).fit(data, numpy.zeros(2), epochs=1, verbose=False)


@pytest.mark.parametrize("ensemble", [False, True], ids=["MLP", "Ensemble"])
def test_a_frames_column_names_given_to_a_model_fitted_without_them_are_warned_of(tmp_path, ensemble):
    """scikit-learn warns "X has feature names, but MLPRegressor was fitted without feature names", and the reverse
    (sklearn.utils.validation._check_feature_names): gpunn read such a frame by position, or arrays as a named
    model's columns, without a word. Each call that takes the user's X warns once; gpunn's own reads do not."""
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    frame = _NamedFrame(X[:, [2, 0, 1]], ["c", "a", "b"])
    model = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 1], device="cpu",
                                                                                             seed=0)
    owner = type(model).__name__
    model.fit(X, y, epochs=1, verbose=False)
    unnamed = rf"^X has column names \(c, a, b\), but the {owner} was fitted without column names: X's columns are read " \
              r"by position, in the order of the columns it was trained on$"
    calls = [lambda: model.predict(frame), lambda: model.score(frame, y), lambda: model.evaluate(frame, y),
             lambda: model.loss(frame, y), lambda: model.loss_and_gradients(frame, y)]
    for call in calls:
        with pytest.warns(UserWarning, match=unnamed) as record:
            call()
        assert [w.filename for w in record] == [__file__]  # once, at the user's line (not contextlib's)
    with pytest.warns(UserWarning, match=unnamed):
        numpy.testing.assert_array_equal(model.predict(frame), model.predict(X[:, [2, 0, 1]]))  # by position
    with pytest.warns(UserWarning, match=rf"^X_val has column names \(c, a, b\), but the {owner} was fitted without"):
        model.fit(X, y, epochs=1, verbose=False, validation_data=(frame, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(frame, y, epochs=1, verbose=False)  # a fit records them: no warning
        assert model.data_columns["features"] == ["c", "a", "b"]
        model.predict(frame[["a", "b", "c"]])  # picked by name
    named = rf"^X has no column names, but the {owner} was fitted with them: X's columns are read by position, as c, a, " \
            r"b; a DataFrame of those names has its columns picked by name$"
    for call in (lambda: model.predict(X), lambda: model.score(X, y), lambda: model.predict(_NamedFrame(X, [0, 1, 2])),
                 lambda: model.predict(X.tolist()), lambda: model.fit(X, y, epochs=1, verbose=False)):
        with pytest.warns(UserWarning, match=named) as record:
            call()
        assert [w.filename for w in record] == [__file__]  # once, at the user's line (not contextlib's)
    numpy.save(tmp_path / "X.npy", X)
    gpunn.save(tmp_path / "m.npz", model)
    with warnings.catch_warnings():  # gpunn predict reads an .npy file's columns in order, as its help says
        warnings.simplefilter("error")
        predict_file(model, str(tmp_path / "X.npy"), str(tmp_path / "P.npy"))  # (streamed)
        if not ensemble:  # (gpunn predict takes one model's file)
            assert cli_main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "X.npy"), str(tmp_path / "P.npy")]) == 0


def test_a_pandas_column_of_dates_times_or_durations_is_refused_naming_it():
    """pandas' to_numpy(float64) read a datetime column as microseconds since 1970 (1.6e15), a timedelta one as
    microseconds, without a word: a fit trained on them as numbers. Refused, naming the column and its dtype, saying
    how to make numbers of it; a frame of dates alone said only "got dtype datetime64[us]"."""
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((6, 2)), rng.standard_normal(6)
    when = pandas.to_datetime([f"2024-01-0{d}" for d in range(1, 7)])
    model = MLP([2, 4, 1], device="cpu", seed=0)
    params = model.params.copy()
    dates = r"dates or times \(datetime64\[.s(, UTC)?\]\), which would be read as a count of their unit, not as " \
            r"numbers you chose: convert it to numbers first if it is meant as one \(seconds since a start, "
    for column in (when, when.tz_localize("UTC")):
        with pytest.raises(TypeError, match=rf"^X's column 't' holds {dates}\(X\['t'\] - X\['t'\]\.min\(\)\)\.dt"
                                            r"\.total_seconds\(\)\), or leave it out$"):
            model.fit(pandas.DataFrame({"a": X[:, 0], "t": column}), y, epochs=1, verbose=False)
    with pytest.raises(TypeError, match=r"^X's column 'd' holds durations \(timedelta64\[.s\]\), .*\(X\['d'\]\.dt\."
                                        r"total_seconds\(\)\), or leave it out$"):
        model.fit(pandas.DataFrame({"a": X[:, 0], "d": when - when[0]}), y, epochs=1, verbose=False)
    with pytest.raises(TypeError, match=rf"^Y holds {dates}\(Y - Y\.min\(\)\)"):
        model.fit(X, pandas.Series(when), epochs=1, verbose=False)
    numpy.testing.assert_array_equal(model.params, params)  # refused before training
    with pytest.raises(TypeError, match=r"^X's column 'u' holds dates or times"):  # (it said "got dtype datetime64")
        model.predict(pandas.DataFrame({"a": X[:, 0], "u": when}))


def test_a_pandas_column_of_python_dates_is_said_to_hold_dates_not_text():
    """pandas keeps datetime.date objects (and times of day, and objects of other kinds) as a column of Python
    objects, not datetime64: its refusal said the column "holds text, datetime.date(2024, 1, 1) in row 0"."""
    pandas = pytest.importorskip("pandas")
    import datetime

    model = MLP([2, 4, 1], device="cpu", seed=0)
    y = numpy.zeros(3)
    for values, said in (([datetime.date(2024, 1, d) for d in (1, 2, 3)],
                          r"dates \(Python objects\), datetime\.date\(2024, 1, 1\) in row 0: leave it out, or convert "
                          r"it to the numbers you mean \(days since a start, say\)\)$"),
                         ([1.0, datetime.time(9, 30), 2.0], r"times of day \(Python objects\), datetime\.time\(9, 30\) in "
                                                           r"row 1: leave it out, or convert it to the numbers you mean"),
                         ([1.0, 2.0, [3.0]], r"Python objects \(list\), \[3\.0\] in row 2: leave it out, or encode it "
                                             r"as numbers\)$")):
        frame = pandas.DataFrame({"a": [1.0, 2.0, 3.0], "d": pandas.Series(values, dtype=object)})
        with pytest.raises(TypeError, match=r"^X must hold real numbers; got dtype object \(its column 'd' holds "
                                            + said):
            model.fit(frame, y, epochs=1, verbose=False)


@pytest.mark.parametrize("kind", ["stand-in", "polars"])
def test_a_polars_column_of_dates_or_durations_is_refused_naming_it(kind):
    """polars' arrays read a Date column as days since 1970 and a Datetime or Duration one as microseconds, without a
    word: refused as a pandas one is (polars' dtypes say is_temporal(), and have no numpy kind)."""
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((6, 2)), rng.standard_normal(6)
    if kind == "polars":
        polars = pytest.importorskip("polars")
        frames = [polars.DataFrame({"a": X[:, 0], "t": [datetime.date(2024, 1, d) for d in range(1, 7)]}),
                  polars.DataFrame({"a": X[:, 0], "t": [datetime.timedelta(seconds=s) for s in range(6)]})]
    else:
        frames = [_PolarsLikeFrame(X, ["a", "t"]), _PolarsLikeFrame(X, ["a", "t"])]
        frames[0].dtypes, frames[1].dtypes = [_PolarsDtype("Float64"), _PolarsDtype("Date", True)], \
            [_PolarsDtype("Float64"), _PolarsDtype("Duration(time_unit='us')", True)]
    model = MLP([2, 4, 1], device="cpu", seed=0)
    for frame, what in zip(frames, ("dates or times \\(Date\\)", "durations \\(Duration\\(time_unit='us'\\)\\)")):
        with pytest.raises(TypeError, match=rf"^X's column 't' holds {what}, which would be read as a count"):
            model.fit(frame, y, epochs=1, verbose=False)


class _PolarsDtype:
    """A polars DataType as the checks read one: its name, is_temporal(), no numpy ``kind``."""

    def __init__(self, name, temporal=False):
        self.name, self.temporal = name, temporal

    def is_temporal(self):
        return self.temporal

    def __str__(self):
        return self.name


@pytest.mark.parametrize("ensemble", [False, True], ids=["MLP", "Ensemble"])
def test_a_call_refused_after_its_data_are_read_does_not_warn_of_them_first(tmp_path, ensemble):
    """A fit (or resume) whose columns are read by position warned of it at once, then refused another argument
    (batch_size=0, validation_data of another width, a resume's other rows): a warning for a call that did nothing;
    so did predict, evaluate, loss and loss_and_gradients refusing X's width or Y's rows. The warning now waits for
    the call's checks; the same call accepted warns once (a fit and a resume as training starts)."""
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    model = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 1], device="cpu",
                                                                                             seed=0)
    path = tmp_path / "run.npz"
    model.fit(_NamedFrame(X, ["a", "b", "c"]), y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(path)])
    refused = [(lambda: model.fit(X, y, epochs=1, batch_size=0, verbose=False), "batch_size"),
               (lambda: model.fit(X, y, epochs=1, verbose=False, validation_data=(X[:, :2], y)), "X_val has 2"),
               (lambda: gpunn.load_checkpoint(path).resume(X[:30], y[:30], epochs=2, verbose=False), "trained on 40"),
               (lambda: model.predict(X[:, :2]), "X has 2 columns"), (lambda: model.evaluate(X[:, :2], y), "X has 2"),
               (lambda: model.loss(X, y[:30]), "30"), (lambda: model.loss_and_gradients(X, y[:30]), "30")]
    for call, match in refused:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (a warning first would be raised in place of the refusal)
            with pytest.raises(ValueError, match=match):
                call()
    for call in (lambda: model.fit(X, y, epochs=1, verbose=False),
                 lambda: gpunn.load_checkpoint(path).resume(X, y, epochs=2, verbose=False, checkpoint=False),
                 lambda: model.loss(X, y), lambda: model.evaluate(X, y)):
        with pytest.warns(UserWarning, match="^X has no column names, but the") as record:
            call()
        assert len(record) == 1


@pytest.mark.parametrize("standardize, ensemble", [(False, False), (True, False), (False, True)],
                         ids=["MLP", "MLP-standardized", "Ensemble"])
def test_a_frame_of_targets_is_picked_by_the_models_target_names(tmp_path, standardize, ensemble):
    """A DataFrame Y was read by position: the same targets in another order were trained on, and scored against,
    the wrong outputs without a word (resume's checksum, of row sums, cannot tell them either). A model with target
    names (a fit on a DataFrame Y, or a table's targets) picks Y's columns by them, as X's by its feature names."""
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    table = rng.standard_normal((40, 5))
    frame, targets = (pandas.DataFrame(table[:, :3], columns=["a", "b", "c"]),
                      pandas.DataFrame(table[:, 3:], columns=["p", "q"]))
    model = gpunn.Ensemble([3, 4, 2], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 2], device="cpu",
                                                                                             seed=0)
    if standardize:  # (raw-unit targets, standardized by the table's statistics: another path)
        pytest.importorskip("pyarrow")
        numpy.savetxt(tmp_path / "t.csv", table, delimiter=",", header="a,b,c,p,q", comments="")
        with gpunn.data.csv(tmp_path / "t.csv", target=["p", "q"], standardize=True) as source:
            model.fit(source, epochs=1, verbose=False)
    else:
        model.fit(frame, targets, epochs=1, verbose=False)
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["p", "q"]}
    swapped = targets[["q", "p"]]
    assert model.evaluate(frame, swapped) == model.evaluate(frame, targets)
    twin = copy.deepcopy(model)
    model.fit(frame, swapped, epochs=1, verbose=False)
    twin.fit(frame, targets, epochs=1, verbose=False)
    numpy.testing.assert_array_equal(model.params, twin.params)
    assert model.data_columns["targets"] == ["p", "q"]
    with pytest.raises(ValueError, match=r"^Y has no column 'q': the model was trained on named targets, p, q, and "
                                         r"picks a DataFrame's by name; its columns are: p, Q$"):
        model.score(frame, targets.rename(columns={"q": "Q"}))


def test_duplicate_column_names_are_refused_naming_them():
    """pandas allows two columns of one name: a fit recorded both (a later frame then picked three columns for two
    names), and a model trained on named columns given one picked both ("X has 4 columns but the model expects 3"
    said nothing of why)."""
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((24, 4)), rng.standard_normal(24)
    model = MLP([4, 4, 1], device="cpu", seed=0)
    params = model.params.copy()
    with pytest.raises(ValueError, match=r"^X has duplicate column names: 'a' \(2 columns\); a fit records its column "
                                         r"names, to pick a later DataFrame's columns by them, so each name must label "
                                         r"one column: rename or drop the repeats \(X\.loc\[:, ~X\.columns\."
                                         r"duplicated\(\)\] keeps the first\)$"):
        model.fit(pandas.DataFrame(X, columns=["a", "b", "a", "c"]), y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"^Y has duplicate column names: 'y' \(2 columns\)"):
        model.fit(pandas.DataFrame(X, columns=["a", "b", "c", "d"]),
                  pandas.DataFrame(numpy.c_[y, y], columns=["y", "y"]), epochs=1, verbose=False)
    assert model.data_columns is None
    numpy.testing.assert_array_equal(model.params, params)  # refused before training
    model, frame = MLP([3, 4, 1], device="cpu", seed=0), pandas.DataFrame(X[:, :3], columns=["a", "b", "c"])
    model.fit(frame, y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=r"^X has duplicate column names: 'b' \(2 columns\); the model picks its "
                                         r"columns by name"):
        model.predict(pandas.DataFrame(X, columns=["a", "b", "c", "b"]))
    leaves = pandas.DataFrame(numpy.c_[X[:, :3], y, y], columns=["a", "b", "c", "y", "y"])
    numpy.testing.assert_array_equal(model.predict(leaves), model.predict(frame))  # a repeat it leaves is harmless


def test_column_labels_mixing_strings_and_other_types_are_refused_as_scikit_learn_refuses_them():
    """A frame labelled "a", 1, "c" was taken as named: its string labels were picked by name and the others left
    out of the model's names (a fit then recorded them all, and a later frame was refused for its column 1).
    scikit-learn refuses such labels (sklearn.utils.validation._get_feature_names, a TypeError); so does gpunn, in
    fit (X or Y, before training) and wherever a frame is read, with how to make them one kind."""
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((24, 3)), rng.standard_normal(24)
    mixed = pandas.DataFrame(X, columns=["a", 1, "c"])
    model = MLP([3, 4, 1], device="cpu", seed=0)
    params = model.params.copy()
    with pytest.raises(TypeError, match=r"^X has column labels of types int, str: gpunn picks a DataFrame's columns "
                                        r"by name where every label is a string, and reads them by position where "
                                        r"none is\. Make them all strings \(X\.columns = X\.columns\.astype\(str\)\) to "
                                        r"have them picked by name, or none \(X\.to_numpy\(\)\) to read the columns "
                                        r"in order$"):
        model.fit(mixed, y, epochs=1, verbose=False)
    with pytest.raises(TypeError, match=r"^Y has column labels of types int, str: "):
        model.fit(X, pandas.DataFrame(numpy.c_[y, y], columns=["p", 0]), epochs=1, verbose=False)
    numpy.testing.assert_array_equal(model.params, params)  # refused before training
    with pytest.raises(TypeError, match=r"^X has column labels of types int, str: "):
        model.predict(mixed)  # (a model without names read such a frame by position, warning of its names)
    with pytest.raises(TypeError, match=r"^X_val has column labels of types int, str: "):
        model.fit(mixed.set_axis(["a", "b", "c"], axis=1), y, epochs=1, verbose=False, validation_data=(mixed, y))
    model.fit(_NamedFrame(X, ["a", numpy.str_("b"), "c"]), y, epochs=1, verbose=False)  # strings all three
    assert model.data_columns["features"] == ["a", "b", "c"]


def test_a_resumed_run_picks_a_frames_columns_by_the_checkpoints_names(tmp_path):
    """resume(X, Y) keeps the checkpoint's names (it continues the run; it records none anew): a frame of them in
    another order resumes the run saved, bit for bit, one of other names is refused, and a frame of names given to a
    run fitted on arrays is read by position with fit's warning."""
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    frame = pandas.DataFrame(X, columns=["a", "b", "c"])
    for name, data in (("named.npz", frame), ("unnamed.npz", X)):
        MLP([3, 4, 1], device="cpu", seed=0).fit(data, y, epochs=1, verbose=False,
                                                 callbacks=[gpunn.ModelCheckpoint(tmp_path / name)])
    straight = MLP([3, 4, 1], device="cpu", seed=0)
    straight.fit(frame, y, epochs=2, verbose=False)
    ckpt = gpunn.load_checkpoint(tmp_path / "named.npz", device="cpu")
    ckpt.resume(frame[["c", "a", "b"]], y, epochs=2, verbose=False, checkpoint=False)
    numpy.testing.assert_array_equal(ckpt.model.params, straight.params)
    assert ckpt.model.data_columns == {"features": ["a", "b", "c"], "targets": None}
    with pytest.raises(ValueError, match=r"^X has no column 'b': the model was trained on named columns, a, b, c"):
        gpunn.load_checkpoint(tmp_path / "named.npz", device="cpu").resume(frame.rename(columns={"b": "B"}), y,
                                                                            verbose=False, checkpoint=False)
    ckpt = gpunn.load_checkpoint(tmp_path / "unnamed.npz", device="cpu")
    with pytest.warns(UserWarning, match=r"^X has column names \(a, b, c\), but the MLP was fitted without"):
        ckpt.resume(frame, y, epochs=2, verbose=False, checkpoint=False)
    assert ckpt.model.data_columns is None


@pytest.mark.filterwarnings("ignore:X(_val)? has no column names")  # arrays to a named model: warned of, below
@pytest.mark.parametrize("ensemble", [False, True], ids=["MLP", "Ensemble"])
def test_a_fit_on_a_dataframe_keeps_its_column_names(tmp_path, ensemble):
    """A fit on a DataFrame kept no names: the same columns in another order were predicted by position, on the
    wrong features, without a word. It now keeps them as a table source's (model.data_columns, in its file too);
    a fit on arrays keeps them (gpunn's fit goes on from the weights, as scikit-learn's warm_start keeps
    feature_names_in_)."""
    pandas = pytest.importorskip("pandas")
    rng = numpy.random.default_rng(0)
    X, y = rng.standard_normal((64, 3)), rng.standard_normal(64)
    frame = pandas.DataFrame(X, columns=["a", "b", "c"])
    model = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 1], device="cpu",
                                                                                             seed=0)
    model.fit(frame, pandas.Series(y, name="price"), epochs=1, verbose=False)
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": ["price"]}
    expected = model.predict(X)
    numpy.testing.assert_array_equal(model.predict(frame[["c", "a", "b"]]), expected)
    assert model.score(frame[["b", "c", "a"]], y) == model.score(X, y)
    with pytest.raises(ValueError, match=r"^X has no column 'b': the model was trained on named columns, a, b, c"):
        model.predict(frame.rename(columns={"b": "B"}))
    gpunn.save(tmp_path / "m.npz", model)
    loaded = gpunn.load(tmp_path / "m.npz", device="cpu")
    assert loaded.data_columns == model.data_columns
    numpy.testing.assert_array_equal(loaded.predict(frame[["c", "a", "b"]]), expected)
    if ensemble:  # a member keeps them too, as its own copy
        assert model.member(0).data_columns == model.data_columns
    model.fit(frame, y, epochs=1, verbose=False)  # an unnamed target: the features' names alone
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": None}
    gpunn.save(tmp_path / "m2.npz", model)
    assert gpunn.load(tmp_path / "m2.npz").data_columns == model.data_columns
    with pytest.warns(UserWarning, match="^X has no column names, but the"):  # (as scikit-learn's warm_start warns)
        model.fit(X, y, epochs=1, verbose=False)  # arrays, or a frame of unnamed columns: the names are kept
    model.fit(pandas.DataFrame(X), y, epochs=1, verbose=False)
    assert model.data_columns == {"features": ["a", "b", "c"], "targets": None}
    numpy.testing.assert_array_equal(model.predict(frame[["c", "a", "b"]]), model.predict(X))
    fresh = gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0) if ensemble else MLP([3, 4, 1], device="cpu",
                                                                                             seed=0)
    fresh.fit(X, y, epochs=1, verbose=False)  # a model that never saw names reads a frame by position
    assert fresh.data_columns is None
    with pytest.warns(UserWarning, match=r"^X has column names \(c, a, b\), but the"):
        numpy.testing.assert_array_equal(fresh.predict(frame[["c", "a", "b"]]), fresh.predict(X[:, [2, 0, 1]]))


@pytest.mark.parametrize("kwargs, match", [
    # Keras's name for silu: hinted, not taken (tests/test_names.py); it said only "unknown activation 'swish'"
    (dict(activation="swish"), r"unknown activation 'swish' \('swish' is gpunn's 'silu'\); choose one of: identity, relu"),
    (dict(output_activation="softmax"), "unknown activation 'softmax'"),
    (dict(output_activation=["relu"]), r"unknown activation \['relu'\]"),  # an unhashable name: not a bare TypeError
    # too many names too (mut12m's M35: len < n_hidden took the list, and the first forward pass raised IndexError)
    (dict(activation=["relu"] * 3), "activation lists 3 names but the net has 2 hidden layers"),
    (dict(activation=["relu"]), "activation lists 1 name but the net has 2 hidden layers"),  # (it said "1 names")
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(dtype="f2"), r"dtype must be one of .*got 'f2'"),  # as given, not as NumPy names it (float16)
    (dict(dtype="foo"), r"dtype must be one of .*got 'foo'"),  # numpy.dtype("foo") raises TypeError
    (dict(dtype=None), r"dtype must be one of .*got None"),  # numpy.dtype(None) is float64
])
def test_bad_model_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP([3, 4, 4, 1], device="cpu", **kwargs)


@pytest.mark.parametrize("sizes, match", [
    ([3], "at least an input and an output"),
    ([3, 0, 1], r"layer_sizes\[1\] must be a positive integer, got 0"),
    ([3, -2, 1], r"layer_sizes\[1\] must be a positive integer"),
    ([3, 2.5, 1], r"layer_sizes\[1\] must be a positive integer"),
    ("31", "at least an input"),
])
def test_non_positive_sizes(sizes, match):
    with pytest.raises(ValueError, match=match):
        MLP(sizes, device="cpu")


def test_a_sparse_matrix_is_told_to_be_made_dense(model, data):
    """OneHotEncoder's default output, a SciPy sparse matrix, said only "X must be an array of numbers, got a
    csr_matrix"; scikit-learn's MLPRegressor takes one, gpunn's products are dense."""
    sparse = pytest.importorskip("scipy.sparse")
    X, Y = data
    with pytest.raises(TypeError, match=r"^X must be an array of numbers, got a csr_matrix: gpunn trains on dense "
                                        r"arrays, X\.toarray\(\)$"):
        model.predict(sparse.csr_matrix(X))
    with pytest.raises(TypeError, match=r"^Y must be an array of numbers, got a coo_matrix: .* Y\.toarray\(\)$"):
        model.fit(X, sparse.coo_matrix(Y), epochs=1, verbose=False)


def test_sizes_given_one_by_one_or_as_text_are_told_to_be_one_list():
    """MLP(6, 16, 1) (the sizes as separate arguments: 16 went to activation) said only "layer_sizes must list at
    least an input and an output size, got 6", and MLP("6,16,1") "got '6,16,1'"."""
    for given, shown in ((6, "6"), ("6,16,1", "'6,16,1'")):
        with pytest.raises(ValueError, match=rf"^layer_sizes must list at least an input and an output size, got "
                                             rf"{shown}: give the sizes as one list, input first, e.g. "
                                             r"MLP\(\[10, 64, 64, 1\]\)$"):
            MLP(given, 16, 1, device="cpu") if isinstance(given, int) else MLP(given, device="cpu")


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="lbfgs"), r"unknown optimizer 'lbfgs' \('lbfgs' is not supported\); choose one of: sgd, momentum"),
    (dict(lr=0), "learning rate must be a positive finite number, got 0"),
    (dict(lr=-0.1), "learning rate must be a positive"),
    (dict(lr=float("nan")), "learning rate must be a positive"),
    (dict(epochs=0), "epochs must be a positive integer, got 0"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(schedule="linear"), "unknown schedule 'linear'"),
    (dict(optimizer=lambda: gpunn.SGD(momentum=1.5)), r"momentum must be in \[0, 1\)"),
    # a range's open end, and Nesterov without momentum (mut11's mutation check: each was taken)
    (dict(optimizer=lambda: gpunn.SGD(momentum=1)), r"momentum must be in \[0, 1\), got 1: at 1 the velocity never "
                                                    r"decays \(it sums every past gradient at full weight\)"),
    (dict(optimizer=lambda: gpunn.SGD(nesterov=True)), "nesterov=True needs a momentum > 0"),
    (dict(optimizer=lambda: gpunn.Adam(eps=0)), "eps must be a positive finite number, got 0"),
    (dict(optimizer=lambda: gpunn.Adam(weight_decay=-1)), "weight_decay must be a non-negative number"),
    (dict(schedule=lambda: gpunn.Schedule("step", gamma=2)), r"gamma must be in \(0, 1\]"),
    (dict(schedule=lambda: gpunn.Schedule("cosine", min_factor=1.5)), r"min_factor must be in \[0, 1\], got 1.5"),
    # more open ends and zero sizes (mut17b's O40 O44 O62 O63: each was taken; step_size 0 then divided by zero)
    (dict(optimizer=lambda: gpunn.Adam(beta2=1)), r"beta2 must be in \[0, 1\), got 1"),
    (dict(optimizer=lambda: gpunn.Adam(beta1=1.0)), r"beta1 must be in \[0, 1\), got 1.0"),
    (dict(optimizer=lambda: gpunn.Nesterov(momentum=0)), "nesterov=True needs a momentum > 0"),
    (dict(schedule=lambda: gpunn.Schedule("exponential", gamma=0)), r"gamma must be in \(0, 1\], got 0"),
    (dict(schedule=lambda: gpunn.Schedule("step", step_size=0)), "step_size must be a positive integer, got 0"),
    (dict(schedule=3), "schedule must be a name"),
    # fit's seed is checked as MLP's: -1 got NumPy's "expected non-negative integer", 1.5 and "3" were taken
    (dict(seed=-1), "seed must be a non-negative int, got -1"),
    (dict(seed=1.5), "seed must be a non-negative int, got 1.5"),
    (dict(seed="3"), "seed must be a non-negative int, got the string '3'; pass an integer$"),
    # these were TypeErrors from a comparison ("'<=' not supported between 'int' and 'str'"), or accepted
    (dict(optimizer=lambda: gpunn.Adam(beta1="0.9")), r"beta1 must be in \[0, 1\), got the string '0.9'; pass a number$"),
    (dict(optimizer=lambda: gpunn.Adam(eps=float("inf"))), "eps must be a positive finite number, got inf"),
    (dict(schedule=lambda: gpunn.Schedule("step", gamma="0.5")), r"gamma must be in \(0, 1\], got the string '0.5'; pass a number$"),
    # mut12m's F3 and F16: 0.96 of 10 rows rounds to all 10 (with n_val > m the empty training set failed later with
    # "range() arg 3 must not be zero"), and a negative share was held out as 1 row and refused for that, not its sign
    (dict(validation_fraction=0.96), "validation_fraction=0.96 of 10 rows leaves no rows to train on"),
    (dict(validation_fraction=-0.1), r"validation_fraction must be a number in \[0, 1\), got -0.1"),
    # validation_data is a checked pair (mut12m's F18: without the row check 4 and 3 rows were taken, and failed
    # at the end of the first epoch with a broadcasting error)
    (dict(validation_data=lambda: (numpy.ones((4, 3)), numpy.ones((3, 2)))), "X_val has 4 rows but Y_val has 3"),
    (dict(validation_data=lambda: numpy.ones((4, 3))), r"validation_data must be a pair \(X_val, Y_val\)"),
    # mut17e's E67: a plateau factor of 1, which reduces nothing, was taken
    (dict(callbacks=lambda: [gpunn.ReduceLROnPlateau(factor=1)]), r"factor must be in \(0, 1\), got 1"),
])
def test_bad_training_options(model, data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kwargs = {k: v() if callable(v) else v for k, v in kwargs.items()}  # objects raise when built
        model.fit(*data, verbose=False, **{"epochs": 1, **kwargs})


def test_the_closed_ends_of_the_schedules_ranges_are_taken():
    """gamma is in (0, 1] and min_factor in [0, 1]: gamma 1 keeps the rate, as a cosine to a floor of 1 does."""
    assert gpunn.Schedule("step", step_size=1, gamma=1).factor(3, 5) == 1.0
    assert gpunn.Schedule("exponential", gamma=1).factor(3, 5) == 1.0
    assert gpunn.Schedule("cosine", min_factor=1).factor(2, 5) == 1.0


def test_numpy_scalars_are_numbers_like_python_floats(model, data):
    # numpy.float32(0.01) was refused as "not a positive finite number" (numpy.float64, a float subclass, passed)
    h = model.fit(*data, epochs=1, lr=numpy.float32(0.01), validation_fraction=numpy.float32(0.2), verbose=False,
                  optimizer=gpunn.Adam(weight_decay=numpy.float32(1e-4), beta1=numpy.float32(0.8)),
                  callbacks=[gpunn.EarlyStopping(min_delta=numpy.float32(0)),
                             gpunn.ReduceLROnPlateau(factor=numpy.float32(0.5), min_lr=numpy.float32(0))])
    assert h["lr"] == [pytest.approx(0.01)] and "val_loss" in h


@pytest.mark.parametrize("seed", [numpy.int64(3), numpy.uint8(3), numpy.array(3), numpy.array(3, numpy.uint16)])
def test_a_numpy_integer_or_0d_integer_array_is_a_seed_as_the_int_it_holds(data, seed):
    """Every int argument takes a NumPy integer or a 0-d integer array as the int it holds, as an Ensemble's lr
    takes numpy.array(1e-3) as one value: a 0-d seed was refused ("seed must be a non-negative int, got
    array(3)") by MLP, Ensemble, fit and the datasets alike."""
    def weights(make_seed):
        model = MLP([3, 4, 2], device="cpu", seed=make_seed)
        return model.params.copy(), model

    (expected, _), (got, model) = weights(3), weights(seed)
    assert model.seed == 3 and type(model.seed) is int
    numpy.testing.assert_array_equal(got, expected)
    fitted = [MLP([3, 4, 2], device="cpu", seed=0).fit(*data, epochs=epochs, batch_size=batch, seed=fit_seed,
                                                      verbose=False)["loss"]
              for epochs, batch, fit_seed in ((2, 4, 3), (numpy.array(2), numpy.array(4), seed))]
    assert fitted[0] == fitted[1]
    ens = gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=seed)
    assert ens.seeds == [3, 4]  # one seed, member k at seed + k (mut12e's N61: a 0-d array as K equal seeds)
    numpy.testing.assert_array_equal(ens.member_params, gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=3).member_params)
    assert gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=[seed, numpy.array(7)]).seeds == [3, 7]
    X, _ = datasets.make("teacher", 5, 3, seed=seed, device="cpu")
    numpy.testing.assert_array_equal(X, datasets.make("teacher", 5, 3, seed=3, device="cpu")[0])


@pytest.mark.parametrize("seed", [True, numpy.True_, numpy.array(True), 3.0, numpy.float64(3.0), numpy.array(3.0),
                                  -1, numpy.int8(-1), numpy.array(-1), numpy.array([3]), "3"])
def test_a_bool_float_negative_or_array_seed_is_refused_by_every_seed_argument(model, data, seed):
    """What a seed is not: a bool (True is not the seed 1), a float (3.0 either: a seed is an int), a negative
    value (NumPy's own refusal named nothing) or an array of several; each refusal names the value given."""
    shown = re.escape(f"the string {seed!r}; pass an integer" if isinstance(seed, str) else repr(seed))
    with pytest.raises(ValueError, match=f"seed must be a non-negative int, got {shown}$"):
        MLP([3, 4, 2], device="cpu", seed=seed)
    with pytest.raises(ValueError, match=f"seed must be a non-negative int, got {shown}$"):
        model.fit(*data, epochs=1, seed=seed, verbose=False)
    # an array's refusal by an Ensemble's fit says the members' seeds are the Ensemble's (test_ensemble.py)
    refusal = "fit's seed orders the rows" if numpy.ndim(seed) else f"seed must be a non-negative int, got {shown}$"
    with pytest.raises(ValueError, match=refusal):
        gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0).fit(*data, epochs=1, seed=seed, verbose=False)
    if numpy.ndim(seed) == 0:  # (a list's length is checked first: "seed lists 1 value but the ensemble has 2")
        with pytest.raises(ValueError, match=f"seed must be a non-negative int or a list of 2 of them, got {shown}$"):
            gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=seed)


def test_optimizer_none_is_the_default_as_schedule_none_is(model, data):
    """optimizer=None was "unknown optimizer None", while schedule=None, lr=None and batch_size=None take their
    defaults: code that passes its own optional settings through to fit failed on the optimizer alone."""
    a = model.fit(*data, epochs=2, optimizer=None, schedule=None, lr=0.01, verbose=False)
    assert type(model.optimizer) is gpunn.Adam
    b = MLP([3, 4, 2], device="cpu", seed=0).fit(*data, epochs=2, optimizer="adam", lr=0.01, verbose=False)
    assert a["loss"] == b["loss"]
    ens = gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0)
    assert len(ens.fit(*data, epochs=1, optimizer=None, lr=[0.01, 0.02], verbose=False)["loss"]) == 1


@pytest.mark.parametrize("kwargs, error, match", [
    # bool("no") is True: these trained with a bias, fused kernels and shuffling
    (dict(bias="no"), TypeError, "bias must be True or False, got 'no'"),
    (dict(fused="false"), TypeError, "fused must be True or False or None, got 'false'"),
    (dict(bias=2), TypeError, "bias must be True or False, got 2"),  # an int other than 0 and 1
    (dict(bias=None), TypeError, "bias must be True or False, got None"),  # None only where it means a default
])
def test_a_flag_is_a_bool_not_any_truthy_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLP([3, 4, 1], device="cpu", **kwargs)
    assert MLP([3, 4, 1], device="cpu", bias=numpy.bool_(False), fused=0).biases is None
    assert MLP([3, 4, 1], device="cpu", bias=numpy.int64(0)).biases is None


def test_fit_refuses_a_shuffle_flag_that_is_not_a_bool(model, data):
    with pytest.raises(TypeError, match="shuffle must be True or False, got 'no'"):
        model.fit(*data, epochs=1, shuffle="no", verbose=False)
    with pytest.raises(TypeError, match="shuffle must be True or False, got 'no'"):  # an ensemble's too
        gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0).fit(*data, epochs=1, shuffle="no", verbose=False)


@pytest.mark.parametrize("call, match", [
    # each took any truthy value: verbose="no" drew the progress bar, bootstrap="no" resampled the rows
    (lambda m, e, X, Y: m.fit(X, Y, epochs=1, verbose="no"), "verbose must be True or False .*got 'no'"),
    (lambda m, e, X, Y: e.fit(X, Y, epochs=1, verbose="no"), "verbose must be True or False .*got 'no'"),
    (lambda m, e, X, Y: m.fit(X, Y, epochs=1, verbose=False, handle_interrupt="no"),
     "handle_interrupt must be True or False, got 'no'"),
    (lambda m, e, X, Y: e.fit(X, Y, epochs=1, verbose=False, bootstrap="no"), "bootstrap must be True or False, got 'no'"),
    (lambda m, e, X, Y: e.predict(X, return_std="no"), "return_std must be True or False, got 'no'"),
])
def test_the_other_flags_of_fit_and_predict_are_bools_too(model, data, call, match):
    ens = gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0)
    with pytest.raises(TypeError, match=match):
        call(model, ens, *data)


def test_numpy_integers_are_integers_for_callbacks_and_schedules_too(model, data, tmp_path):
    # "patience must be a non-negative integer, got np.int64(2)", "step_size must be a positive number of epochs,
    # got 1": NumPy integers (a grid of numpy.arange values) were refused, as NumPy floats were before ee0c4ca
    i = numpy.int64
    path = tmp_path / "run.npz"
    callbacks = [gpunn.EarlyStopping(patience=i(2)), gpunn.ReduceLROnPlateau(patience=i(1), cooldown=i(1)),
                 gpunn.ModelCheckpoint(path, every=i(1))]
    schedule = gpunn.Schedule("step", step_size=i(1), gamma=0.5)
    model.fit(*data, epochs=2, schedule=schedule, callbacks=callbacks, verbose=False)
    assert gpunn.load_checkpoint(path).settings.schedule == gpunn.Schedule("step", step_size=1, gamma=0.5)
    assert type(gpunn.Schedule("cosine", total_epochs=i(3)).total_epochs) is int  # (a step's was given one here)


@pytest.mark.parametrize("make, match", [
    (lambda: gpunn.EarlyStopping(restore_best_weights="no"), "restore_best_weights must be True or False, got 'no'"),
    (lambda: gpunn.ModelCheckpoint("run.npz", save_best_only="no"), "save_best_only must be True or False, got 'no'"),
])
def test_callback_flags_are_bools(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_an_ensemble_member_out_of_range_and_gpunn_fit_of_an_ensemble_say_so(data):
    ens = gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0)
    history = ens.fit(*data, epochs=1, verbose=False)
    with pytest.raises(IndexError, match=r"member 5 is out of range: the ensemble has 2 members \(0\.\.1\)"):
        history.member(5)  # "list index out of range"
    assert history.member(-1) == history.member(1) and history.member(-2) == history.member(0)
    for k in (2, -3):
        with pytest.raises(IndexError, match=f"member {k} is out of range"):
            ens.member(k)
    with pytest.raises(TypeError, match="members are indexed by an int, got True"):
        ens.member(True)
    with pytest.raises(TypeError, match=r"gpunn.fit trains one MLP; train an Ensemble with its own fit, ens.fit"):
        gpunn.fit(ens, *data, epochs=1, verbose=False)  # "'Ensemble' object has no attribute 'seed'"


def test_gpunn_fit_given_no_model_says_it_takes_the_model_first(data):
    # gpunn.fit(X, Y) said "'numpy.ndarray' object has no attribute 'standardizer'"
    with pytest.raises(TypeError, match=r"^gpunn.fit\(model, X, Y, ...\) takes the model to train first, and got an "
                                        r"ndarray: gpunn.fit\(gpunn.MLP\(\[n_features, 64, n_outputs\]\), X, Y\), "
                                        r"or model.fit\(X, Y\)$"):
        gpunn.fit(*data, epochs=1, verbose=False)


def test_a_string_given_as_an_ensembles_setting_is_one_value_for_all_members_not_a_list_of_letters(data):
    ens = gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0)
    with pytest.raises(ValueError, match="member 0: learning rate must be a positive finite number, got the string '0.01'; pass a number$"):
        ens.fit(*data, epochs=1, lr="0.01", verbose=False)  # not "lr lists 4 values but the ensemble has 2 members"


def test_a_device_array_is_taken_as_it_is_never_read_into_a_numpy_array():
    """A CuPy array is no NumPy array (tests/fakecupy's are NumPy subclasses, so the GPU-marked tests pass either
    way): it is told by its type's module, and numpy.asarray of it would raise or make a host copy."""
    from gpunn.checks import as_array

    class DeviceArray:
        __module__ = "cupy._core.core"
        dtype, ndim, shape = numpy.dtype("float32"), 2, (2, 3)

    on_device = DeviceArray()
    assert as_array(on_device) is on_device


def test_a_members_index_counted_from_the_end_is_its_index_from_0():
    from gpunn.checks import member_index

    assert [member_index(k, 3) for k in (-3, -2, -1, 0, 2)] == [0, 1, 2, 0, 2]
    assert type(member_index(numpy.int64(-1), 3)) is int


def test_init_parameters_checks_its_seed(model):
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):  # NumPy's words named nothing
        model.init_parameters(seed=-1)


def test_sgds_nesterov_is_a_bool():
    with pytest.raises(TypeError, match="nesterov must be True or False, got 'no'"):  # it ran Nesterov's update
        gpunn.SGD(momentum=0.9, nesterov="no")
    assert gpunn.SGD(momentum=0.9, nesterov=0).nesterov is False


def test_verbose_takes_a_verbosity_level_as_keras_and_scikit_learn_do(model, data, capsys):
    model.fit(*data, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""
    model.fit(*data, epochs=1, verbose=2)
    assert "epoch 1/1" in capsys.readouterr().err
    with pytest.raises(TypeError, match=r"verbose must be True or False \(or a verbosity level, an int >= 0\), got -1"):
        model.fit(*data, epochs=1, verbose=-1)


def test_a_real_option_is_kept_as_a_python_float_and_an_int_past_floats_range_as_an_infinity_of_its_sign():
    from gpunn.checks import real

    assert type(gpunn.Adam(lr=numpy.float64(0.01)).config()["lr"]) is float  # NumPy's float64 is a float subclass
    assert type(real(numpy.float64(0.5))) is float and real(10**400) == float("inf") and real(-10**400) == -float("inf")


def test_one_callback_outside_a_list_says_to_write_a_list(model, data):
    # was "'EarlyStopping' object is not iterable"
    with pytest.raises(TypeError, match=r"callbacks=\[EarlyStopping\(...\)\]"):
        model.fit(*data, epochs=1, callbacks=gpunn.EarlyStopping(), verbose=False)
    assert model.fit(*data, epochs=1, callbacks=None, verbose=False)["epoch"] == [1]


@pytest.mark.parametrize("kwargs, match", [
    # "unknown optimizer <class 'gpunn.optim.Adam'>", "must be a name ... got <class ...Schedule'>", and
    # "callbacks[0] is a type, not a gpunn.Callback; subclass gpunn.Callback" (it was one)
    (dict(optimizer=gpunn.Adam), r"optimizer is the class Adam; pass an instance, Adam\(lr=...\), or its name"),
    (dict(schedule=gpunn.Schedule), "schedule is the class Schedule; pass an instance"),
    (dict(callbacks=[gpunn.EarlyStopping]), r"callbacks\[0\] is the class EarlyStopping; pass an instance"),
])
def test_a_class_where_an_instance_belongs_says_so(model, data, kwargs, match):
    with pytest.raises(TypeError, match=match):
        model.fit(*data, epochs=1, verbose=False, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    # PyTorch's ReduceLROnPlateau is one of its lr schedulers; gpunn's is a callback. Was "schedule must be a name
    # (...) or a gpunn.Schedule, got ReduceLROnPlateau(...)", which did not say where it goes
    (dict(schedule=gpunn.ReduceLROnPlateau(patience=2)),
     r"schedule is ReduceLROnPlateau\(...\), a callback, not a schedule: fit\(..., callbacks=\[ReduceLROnPlateau\("
     r"monitor=None, factor=0.1, patience=2, .*\)\]\) \(it scales the schedule's rate on a plateau\)"),
    # was "callbacks[0] is a Schedule, not a gpunn.Callback; subclass gpunn.Callback and override the hooks it needs"
    (dict(callbacks=[gpunn.Schedule("step", step_size=5)]),
     r"callbacks\[0\] is Schedule\(...\), fit's schedule, not a callback: fit\(..., "
     r"schedule=Schedule\(name='step', step_size=5, gamma=0.1\)\)"),
    (dict(callbacks=[gpunn.EarlyStopping(), gpunn.Adam(lr=0.01)]),
     r"callbacks\[1\] is Adam\(...\), fit's optimizer, not a callback: fit\(..., optimizer=Adam\(lr=0.01, "),
    # was "unknown optimizer EarlyStopping(...); choose one of: sgd, ..."
    (dict(optimizer=gpunn.EarlyStopping(patience=3)),
     r"optimizer is EarlyStopping\(...\), a callback, not an optimizer: fit\(..., callbacks=\[EarlyStopping\("),
    (dict(optimizer=gpunn.Schedule("cosine")), r"optimizer is Schedule\(...\), fit's schedule, not an optimizer"),
    (dict(schedule=gpunn.SGD()), r"schedule is SGD\(...\), fit's optimizer, not a schedule: fit\(..., optimizer=SGD"),
])
@pytest.mark.parametrize("make", [lambda: MLP([3, 4, 2], device="cpu"), lambda: Ensemble([3, 4, 2], 2, device="cpu")],
                         ids=["MLP", "Ensemble"])
def test_a_callback_a_schedule_or_an_optimizer_given_in_anothers_place_is_told_where_it_goes(make, data, kwargs, match):
    with pytest.raises(TypeError, match=match):
        make().fit(*data, epochs=1, verbose=False, **kwargs)


def test_a_callback_of_another_library_in_callbacks_is_told_to_subclass_gpunns_not_that_it_goes_in_callbacks(model,
                                                                                                            data):
    """An object with the hooks of a callback that is no gpunn.Callback (a Keras callback's on_epoch_end) is in the
    right place: optim.misplaced says nothing of it there (audit47's O30: it said "callbacks[0] is KerasLike(...), a
    callback, not a callback: fit(..., callbacks=[...])"), and order_callbacks says to subclass gpunn.Callback."""
    class KerasLike:
        def on_epoch_end(self, epoch, logs=None):
            pass

    with pytest.raises(TypeError, match=r"^callbacks\[0\] is a KerasLike, not a gpunn.Callback; subclass gpunn.Callback"):
        model.fit(*data, epochs=1, verbose=False, callbacks=[KerasLike()])


@pytest.mark.parametrize("mock_class", ["Mock", "MagicMock", "NonCallableMock"])
def test_a_mock_given_as_the_optimizer_or_the_schedule_is_not_told_it_is_a_callback(model, data, mock_class):
    """A callback is told by the on_epoch_end it defines; a Mock answers every name, so it was "optimizer is
    Mock(...), a callback, not an optimizer: fit(..., callbacks=[<Mock id=...>])". It is refused as what it is not,
    by name; a Mock made from a callback (create_autospec) is still told where a callback goes."""
    from unittest import mock

    stand_in = getattr(mock, mock_class)()
    with pytest.raises(ValueError, match=rf"^unknown optimizer <{mock_class} id='\d+'>; choose one of: sgd, "):
        model.fit(*data, epochs=1, verbose=False, optimizer=stand_in)
    with pytest.raises(ValueError, match=rf"^schedule must be a name \(.*\) or a gpunn.Schedule, got <{mock_class} "):
        model.fit(*data, epochs=1, verbose=False, schedule=stand_in)
    spec = mock.create_autospec(gpunn.EarlyStopping(), instance=True)
    with pytest.raises(TypeError, match=r"^optimizer is NonCallableMagicMock\(...\), a callback, not an optimizer"):
        model.fit(*data, epochs=1, verbose=False, optimizer=spec)


def test_save_with_its_arguments_swapped_says_so(model, tmp_path):
    # torch.save(obj, path) is the other order; this was "AttributeError: 'str' object has no attribute 'device'"
    with pytest.raises(TypeError, match=r"the other way round: gpunn.save\(path, model\)"):
        gpunn.save(model, str(tmp_path / "m.npz"))


@pytest.mark.parametrize("name, says", [
    ("save", "gpunn.save(path, model) writes the model and gpunn.load(path) reads it back"),  # Keras's
    ("state_dict", "the weights are model.params (one flat buffer) and its views model.weights and model.biases; "),
    # PyTorch's: its state dict's layout first (nn.Linear's weight is out x in), then any model's weights
    ("load_state_dict", "copy a PyTorch state dict in layer by layer, each nn.Linear's weight transposed (it is out x "
                        "in, gpunn's W in x out): model.weights[0][...] = state['0.weight'].T.numpy(), "),
    ("forward", "model.predict(X) gives the outputs"),  # PyTorch's
    ("compile", "fit takes the optimizer and its rate itself: model.fit(X, Y, optimizer='adam', lr=1e-3)"),
    ("to", "a model stays on the device it was made on: gpunn.save(path, model), then gpunn.load(path, device="),
    # PyTorch's net.cuda() was told to load the model with device='cpu', and net.double() had no hint
    ("cuda", "a model stays on the device it was made on: gpunn.save(path, model), then gpunn.load(path, "
             "device='cuda'))"),
    ("cpu", "a model stays on the device it was made on: gpunn.save(path, model), then gpunn.load(path, device='cpu'))"),
    ("double", "a model keeps the dtype it was made with, float32 or float64: copy its weights into one made with "
               "dtype='float64', new.params[...] = model.params)"),
    ("float", "a model keeps the dtype it was made with, float32 or float64: copy its weights into one made with "
              "dtype='float32', new.params[...] = model.params)"),
    ("half", "a model's dtype is float32 or float64, its constructor's; on a GPU, gpunn.MLP(..., precision='bf16') "
             "computes in bfloat16 with float32 weights)"),
    ("eval", "gpunn's models have no training and evaluation modes (no dropout or batch norm): fit trains, predict"),
])
@pytest.mark.parametrize("make", [lambda: MLP([3, 4, 2], device="cpu"), lambda: Ensemble([3, 4, 2], 2, device="cpu")],
                         ids=["MLP", "Ensemble"])
def test_what_another_library_looks_for_on_a_model_is_shown_where_gpunn_has_it(make, name, says):
    """model.save(path), Keras's, said only "'MLP' object has no attribute 'save'". Another name keeps Python's own
    words, and the name and object its "Did you mean" is found by (model.predcit: 'predict')."""
    model = make()
    with pytest.raises(AttributeError) as caught:
        getattr(model, name)
    assert str(caught.value).startswith(f"{type(model).__name__!r} object has no attribute {name!r} ({says}")
    with pytest.raises(AttributeError) as caught:
        model.predcit
    assert str(caught.value) == f"{type(model).__name__!r} object has no attribute 'predcit'"
    assert caught.value.name == "predcit" and caught.value.obj is model


@pytest.mark.parametrize("make", [lambda: MLP([3, 4, 2], device="cpu"), lambda: Ensemble([3, 4, 2], 2, device="cpu")],
                         ids=["MLP", "Ensemble"])
def test_calling_a_model_as_pytorch_and_keras_do_says_to_predict(make):
    """model(X), PyTorch's and Keras's forward pass, said only Python's "'MLP' object is not callable"."""
    model = make()
    with pytest.raises(TypeError, match=rf"^'{type(model).__name__}' object is not callable \(model\(X\), PyTorch's "
                                        r"and Keras's forward pass\): model.predict\(X\) gives the outputs$"):
        model(numpy.zeros((2, 3)))
    assert "Not a forward pass" in type(model).__call__.__doc__  # help(model) says so (its one line was unchecked)


def test_an_mlps_history_attribute_kerass_says_fit_returns_it(data, tmp_path):
    """model.history after fit, as Keras keeps it, said only "'MLP' object has no attribute 'history'" (an Ensemble
    keeps its last fit's, for best()). The hint shows where the history is, and both ways run."""
    model = MLP([3, 4, 2], device="cpu", seed=0)
    history = model.fit(*data, epochs=2, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "run.npz")])
    with pytest.raises(AttributeError, match=r"^'MLP' object has no attribute 'history' \(fit returns the run's "
                                             r"history: history = model.fit\(X, Y, ...\), history\['loss'\]; a "
                                             r"training checkpoint's is gpunn.load_checkpoint\(path\).history\)$"):
        model.history
    assert gpunn.load_checkpoint(tmp_path / "run.npz").history["loss"] == history["loss"]


def test_an_attribute_error_inside_a_models_property_is_shown_not_no_attribute_of_the_property():
    """A model's __getattr__ (the hints above) is also what Python calls where a property's getter raises
    AttributeError: a subclass's property with a bug in it said "'Sub' object has no attribute 'broken'"."""
    class Sub(MLP):
        @property
        def broken(self):
            return self.layer_sizes_misspelt

    with pytest.raises(AttributeError, match=r"^'Sub' object has no attribute 'layer_sizes_misspelt'$"):
        Sub([3, 4, 2], device="cpu").broken


@pytest.mark.parametrize("make", [lambda: MLP([3, 4, 2], device="cpu"), lambda: Ensemble([3, 4, 2], 2, device="cpu")],
                         ids=["MLP", "Ensemble"])
def test_fits_options_given_by_position_are_told_to_be_named(make, data):
    """fit(X, Y, 10, 32), Keras's positional batch_size and epochs, said Python's "fit() takes from 2 to 3 positional
    arguments but 5 were given" (self counted); gpunn.fit(model, X, Y, 5) and a resume's alike."""
    model = make()
    name = type(model).__name__
    with pytest.raises(TypeError, match=rf"^{name}.fit\(\) takes X, Y by position and its options by keyword, and got "
                                        rf"2 more by position \(10, 32\): name them, {name}.fit\(X, Y, epochs=..., "
                                        r"batch_size=...\)$"):
        model.fit(*data, 10, 32)
    if name == "MLP":
        with pytest.raises(TypeError, match=r"^fit\(\) takes model, X, Y by position .* got 1 more by position \(5\)"):
            gpunn.fit(model, *data, 5)
    gpunn.Adam(0.1, 0.9)  # (a function whose parameters all take a position keeps them)


def test_arrays_given_to_fit_by_position_are_not_written_out_in_its_refusal(data, tmp_path):
    """fit(X, Y, X_val, Y_val), the held-out arrays given by position, was told so with both arrays' reprs in the
    message (4,046 characters for 50 rows of 3 and 2 columns); a value past 40 characters is '...', as a refused
    keyword's is. A resume's refusal alike (Checkpoint.resume, its self not shown)."""
    X, Y = data
    model = MLP([3, 4, 2], device="cpu", seed=0)
    with pytest.raises(TypeError, match=r"^MLP.fit\(\) takes X, Y by position and its options by keyword, and got 2 "
                                        r"more by position \(\.\.\., \.\.\.\): name them, MLP.fit\(X, Y, epochs=..., "
                                        r"batch_size=...\)$"):
        model.fit(X, Y, X[:5], Y[:5])
    model.fit(X, Y, epochs=1, verbose=False, callbacks=[gpunn.ModelCheckpoint(tmp_path / "run.npz")])
    with pytest.raises(TypeError, match=r"^Checkpoint.resume\(\) takes X, Y by position and its options by keyword, "
                                        r"and got 1 more by position \(3\): name them, Checkpoint.resume\(X, Y, "
                                        r"epochs=..., validation_data=...\)$"):
        gpunn.load_checkpoint(tmp_path / "run.npz").resume(X, Y, 3)


def test_only_functions_of_keyword_only_options_refuse_more_positional_arguments_so(data):
    """keywords_checked's refusal of positional arguments past those a function takes so (hints.too_many_positional),
    checked by mutation: a function without keyword-only options keeps Python's words (model.predict(X, 32): no
    options to name), one taking *args takes them all, a positional-only parameter is one taken by position, and a
    constructor's self is not shown (none of gpunn's has keyword-only options now)."""
    from gpunn.hints import keywords_checked

    with pytest.raises(TypeError, match=r"^MLP.predict\(\) takes 2 positional arguments but 3 were given$"):
        MLP([3, 4, 2], device="cpu").predict(data[0], 32)
    assert keywords_checked(lambda *arrays, axis=0: (arrays, axis))(1, 2, 3) == ((1, 2, 3), 0)
    assert keywords_checked(lambda a, /, b, *, c=1: (a, b, c))(1, 2) == (1, 2, 1)

    class Net:
        def __init__(self, sizes, *, seed=0, lr=0.1):
            self.sizes = sizes

    with pytest.raises(TypeError, match=r"^Net\(\) takes sizes by position and its options by keyword, and got 1 more "
                                        r"by position \(7\): name them, Net\(sizes, seed=..., lr=...\)$"):
        keywords_checked(Net.__init__, "Net")(object.__new__(Net), [3, 1], 7)


@pytest.mark.parametrize("make", [lambda: MLP([3, 4, 2], device="cpu"), lambda: Ensemble([3, 4, 2], 2, device="cpu")],
                         ids=["MLP", "Ensemble"])
def test_another_librarys_keyword_to_fit_predict_evaluate_or_score_says_what_gpunn_does_instead(make, data):
    """model.predict(X, verbose=0), Keras's, said only "MLP.predict() got an unexpected keyword argument 'verbose'";
    so did fit(loss=...), sample_weight, steps_per_epoch and initial_epoch, and fit(steps=3) asked "did you mean eps?"
    (Adam's). Each method of hints.OTHER_KEYWORDS
    names what gpunn does instead; none of its keywords is one the method takes (which the hint would never reach)."""
    from gpunn.hints import OTHER_CALL_KEYWORDS, OTHER_KEYWORDS

    model = make()
    X, Y = data
    for method, hints in OTHER_KEYWORDS.items():
        call = getattr(model, method)
        assert not set(hints) & set(inspect.signature(call).parameters), method
        own = OTHER_CALL_KEYWORDS.get(f"{type(model).__name__}.{method}", {})  # (that kind's own words: Ensemble.fit's)
        assert set(own) <= set(hints)
        for key, hint in hints.items():
            with pytest.raises(TypeError) as caught:
                call(X, Y, **{key: 0}) if method != "predict" else call(X, **{key: 0})
            assert str(caught.value) == (f"{type(model).__name__}.{method}() got an unexpected keyword argument "
                                         f"{key!r} ({own.get(key, hint)})")
    with pytest.raises(TypeError, match=r"^MLP.predict\(\) got an unexpected keyword argument 'x' "
                                        r"\(did you mean X\?\)$"):
        MLP([3, 4, 2], device="cpu").predict(x=X)  # predict's own, in scikit-learn's and PyTorch's case: hinted
    with pytest.raises(TypeError, match=r"'steps' \(a fit runs epochs, passes over the training rows, each of "
                                        r"ceil\(rows / batch_size\) steps: epochs=N\)$"):
        model.fit(X, Y, steps=3)  # (it said "did you mean eps? eps is the optimizer's option")


def test_pytorchs_optimizer_keywords_say_what_gpunn_has_instead():
    """torch.optim.Adam(..., decoupled_weight_decay=True), PyTorch's AdamW by another name, and the implementation
    switches a porter's optimizer line carries (fused=True, foreach) said only "unexpected keyword argument"; each
    of hints.OTHER_OPTIMIZER_KEYWORDS is no option of the optimizer it is hinted for."""
    from gpunn.hints import OTHER_OPTIMIZER_KEYWORDS

    with pytest.raises(TypeError, match=r"^Adam\(\) got an unexpected keyword argument 'decoupled_weight_decay' "
                                        r"\(PyTorch's Adam\(decoupled_weight_decay=True\) is gpunn.AdamW, Adam's step "
                                        r"with the weight decay decoupled\)$"):
        gpunn.Adam(lr=3e-3, weight_decay=1e-2, decoupled_weight_decay=True)
    for make in (lambda: gpunn.Adam(fused=True), lambda: gpunn.SGD(lr=0.1, momentum=0.9, foreach=True),
                 lambda: gpunn.AdamW(capturable=True)):
        with pytest.raises(TypeError, match=r"\(gpunn's step is one pass over the flat parameter buffer \(a fused "
                                            r"kernel on a GPU\): there is nothing to choose\)$"):
            make()
    for name, hints in OTHER_OPTIMIZER_KEYWORDS.items():
        assert not set(hints) & set(inspect.signature(getattr(gpunn, name)).parameters), name


def test_gradient_clipping_and_a_device_given_to_fit_say_what_gpunn_has_instead(data):
    """Keras's clipnorm (to an optimizer or a fit) and PyTorch's model.to(device) done in fit(device=...) said only
    "unexpected keyword argument" (api45's note); then that gpunn clipped no gradients. Now its optimizers clip:
    each name is shown the optimizer's clip_norm or clip_value, and Keras's clipnorm, per variable, is told that
    gpunn's is the global norm."""
    X, Y = data
    model = gpunn.MLP([X.shape[1], 4, Y.shape[1]], device="cpu")
    global_norm = (r"clips the global norm, of every gradient together, as Keras's global_clipnorm and PyTorch's "
                   r"clip_grad_norm_\)$")
    by_value = (r"clamps each gradient element to \[-clip_value, clip_value\], as Keras's clipvalue and PyTorch's "
                r"clip_grad_value_\)$")
    per_variable = r"\(Keras's clipnorm clips each variable's gradient by its own norm, which gpunn does not; "
    in_fit = r"clipping is the optimizer's option: model.fit\(X, Y, optimizer=gpunn.Adam\({}\)\): "
    # each of Keras's and PyTorch's names, to fit and to each optimizer (checked by mutation: a name dropped passed)
    fit_hints = {"clipnorm": per_variable + in_fit.format("clip_norm=1.0") + "its clip_norm " + global_norm,
                 **dict.fromkeys(("global_clipnorm", "max_norm", "clip_grad_norm"),
                                 r"\(" + in_fit.format("clip_norm=1.0") + "clip_norm " + global_norm),
                 **dict.fromkeys(("clipvalue", "clip_grad_value"),
                                 r"\(" + in_fit.format("clip_value=0.5") + "clip_value " + by_value)}
    for name, hint in fit_hints.items():
        with pytest.raises(TypeError, match=rf"^MLP.fit\(\) got an unexpected keyword argument '{name}' " + hint):
            model.fit(X, Y, **{name: 1.0})
    for name in ("clip_norm", "clip_value"):  # gpunn's own names, given to fit
        with pytest.raises(TypeError, match=rf"'{name}' \({name} is the optimizer's option: model.fit\(X, Y, "
                                            rf"optimizer=gpunn.Adam\({name}=1.0\)\)\)$"):
            model.fit(X, Y, **{name: 1.0})
    ens = gpunn.Ensemble([X.shape[1], 4, Y.shape[1]], n_models=2, device="cpu")
    member_norm = (r"ens.fit\(X, Y, clip_norm=1.0\) \(or K values, one per member\) clips each member's gradient by "
                   r"its own global norm, as Keras's global_clipnorm and PyTorch's clip_grad_norm_ clip one model's\)$")
    member_value = r"\(did you mean clip_value\? ens.fit\(X, Y, clip_value=0.5\) \(or K values\) clamps each gradient "
    ensemble_hints = {"clipnorm": per_variable + member_norm,
                      **dict.fromkeys(("global_clipnorm", "max_norm", "clip_grad_norm"),
                                      r"\(did you mean clip_norm\? " + member_norm),
                      **dict.fromkeys(("clipvalue", "clip_grad_value"), member_value)}
    for name, hint in ensemble_hints.items():  # (an Ensemble's fit takes the clips itself, per member: not fit's words)
        with pytest.raises(TypeError, match=rf"^Ensemble.fit\(\) got an unexpected keyword argument '{name}' " + hint):
            ens.fit(X, Y, **{name: 1.0})
    optimizer_hints = {"clipnorm": per_variable + "clip_norm=1.0 " + global_norm,
                       **dict.fromkeys(("global_clipnorm", "max_norm"), r"\(did you mean clip_norm\? it " + global_norm),
                       "clipvalue": r"\(did you mean clip_value\? it " + by_value}
    for optimizer in (gpunn.Adam, gpunn.AdamW, gpunn.SGD, gpunn.Momentum, gpunn.Nesterov):
        for name, hint in optimizer_hints.items():
            with pytest.raises(TypeError, match=rf"unexpected keyword argument '{name}' " + hint):
                optimizer(**{name: 1.0})
    with pytest.raises(TypeError, match=r"^MLP.fit\(\) got an unexpected keyword argument 'device' \(a model trains "
                                        r"on the device it was made on, its constructor's device='cuda', or "
                                        r"gpunn.load\(path, device='cuda'\) of a saved one\)$"):
        model.fit(X, Y, device="cpu")


def test_targets_given_to_predict_name_evaluate_and_score_which_take_them(data):
    """model.predict(X, Y), thinking of score, said Python's "takes 2 positional arguments but 3 were given" (an
    Ensemble's, whose second is return_std, "return_std must be True or False, got array(...)")."""
    X, Y = data
    sizes = [X.shape[1], 4, Y.shape[1]]
    model, ensemble = MLP(sizes, device="cpu"), Ensemble(sizes, 2, device="cpu")
    with pytest.raises(TypeError, match=r"^MLP.predict\(\) takes X alone, not the targets: MLP.evaluate\(X, Y\) "
                                        r"scores the predictions against them \(loss, mse, mae, r2\), MLP.score\(X, "
                                        r"Y\) gives R²$"):
        model.predict(X, Y)
    with pytest.raises(TypeError, match=r"^Ensemble.predict\(\) takes X and return_std=..., not the targets: "
                                        r"Ensemble.evaluate\(X, Y\) scores"):
        ensemble.predict(X, Y.tolist())
    assert len(ensemble.predict(X, True)) == 2  # (mean, std): return_std by position, as before
    assert inspect.signature(MLP.predict) == inspect.signature(MLP.__dict__["predict"].__wrapped__)
    # (audit46b) targets as a tuple of rows are targets too; a value that is no array is left to predict: a NumPy
    # scalar (return_std=numpy.True_ is taken by name, and was refused by position as targets), and MLP's Python words
    with pytest.raises(TypeError, match=r"^MLP.predict\(\) takes X alone, not the targets"):
        model.predict(X, tuple(map(tuple, Y)))
    assert len(ensemble.predict(X, numpy.True_)) == 2
    with pytest.raises(TypeError, match=r"^MLP.predict\(\) takes 2 positional arguments but 3 were given$"):
        model.predict(X, 32)


def test_a_dataloaders_drop_last_given_to_fit_says_an_epoch_ends_with_a_partial_batch(data):
    """fit(X, Y, batch_size=64, shuffle=True, drop_last=True), a porter's DataLoader options mapped onto fit's, said
    only "unexpected keyword argument 'drop_last'"."""
    with pytest.raises(TypeError, match=r"'drop_last' \(an epoch ends with a partial batch of the rows left over, as "
                                        r"a DataLoader's with drop_last=False: a batch_size that divides the training "
                                        r"rows leaves none, and gpunn.data.iterable\(loader\) trains on a loader's "
                                        r"own batches\)$"):
        MLP([3, 4, 2], device="cpu").fit(*data, batch_size=64, shuffle=True, drop_last=True)


def test_one_models_predict_given_return_std_says_an_ensemble_gives_the_spread(data):
    """MLP.predict(X, return_std=True), scikit-learn's GaussianProcessRegressor habit (or a member taken out of an
    Ensemble, whose predict takes it), said only "unexpected keyword argument 'return_std'"; a keyword of
    hints.OTHER_MODEL_KEYWORDS is one the model's method lacks and the other kind's takes (an Ensemble's
    return_std)."""
    from gpunn.hints import OTHER_MODEL_KEYWORDS

    X, _ = data
    ens, mlp = Ensemble([3, 4, 2], 2, device="cpu"), MLP([3, 4, 2], device="cpu")
    for call, hints in OTHER_MODEL_KEYWORDS.items():
        kind, method = call.split(".")
        model, other = (mlp, ens) if kind == "MLP" else (ens, mlp)
        assert not set(hints) & set(inspect.signature(getattr(model, method)).parameters)
        assert set(hints) <= set(inspect.signature(getattr(other, method)).parameters)
    with pytest.raises(TypeError) as caught:
        ens.member(1).predict(X, return_std=True)
    assert str(caught.value) == ("MLP.predict() got an unexpected keyword argument 'return_std' (one network gives no "
                                 "spread of its predictions; an Ensemble's predict(X, return_std=True) gives the mean "
                                 "and std across its members)")
    mean, std = ens.predict(X, return_std=True)  # (the Ensemble's own: taken)
    assert mean.shape == std.shape == (len(X), 2)


def test_fits_options_given_to_a_data_source_say_they_are_fits(tmp_path):
    """data.npy(x, y, batch_size=256) said only "NpySource() got an unexpected keyword argument 'batch_size'" (and
    data.iterable's Python's own words): the batch size, epochs, rate, optimizer, callbacks and validation data are
    fit's, which cuts its batches from the source; each maker says so."""
    from gpunn import data

    numpy.save(tmp_path / "x.npy", numpy.ones((10, 2)))
    numpy.save(tmp_path / "y.npy", numpy.ones((10, 1)))
    makers = {"gpunn.data.synthetic": lambda **kw: data.synthetic("linear", rows=100, n_features=2, **kw),
              "gpunn.data.npy": lambda **kw: data.npy(tmp_path / "x.npy", tmp_path / "y.npy", **kw),
              "gpunn.data.iterable": lambda **kw: data.iterable([(numpy.ones((4, 2)), numpy.ones(4))], **kw),
              "NpySource": lambda **kw: data.NpySource(tmp_path / "x.npy", tmp_path / "y.npy", **kw)}
    for name, make in makers.items():
        for key in ("batch_size", "epochs", "lr", "optimizer", "callbacks", "validation_data"):
            with pytest.raises(TypeError, match=rf"^{re.escape(name)}\(\) got an unexpected keyword argument '{key}' \({key} is "
                                                rf"fit's option: model.fit\(source, {key}=...\)\)$"):
                make(**{key: 1})
    with pytest.raises(TypeError, match=r"^gpunn\.data\.iterable\(\) got an unexpected keyword argument 'row' \(did you "
                                        r"mean rows"):
        data.iterable([(numpy.ones((4, 2)), numpy.ones(4))], row=4)


@pytest.mark.parametrize("given, keywords", [
    (lambda m: m.params, {}), (lambda m: m.params, {"lr": 0.1}), (lambda m: m.weights, {}),
    (lambda m: list(m.biases), {}), (lambda m: m.weights[0], {}), (lambda m: iter([m.params]), {})],
    ids=["params", "params, lr=", "weights", "a list of biases", "one matrix", "an iterator"])
@pytest.mark.parametrize("cls", [gpunn.SGD, gpunn.Adam, gpunn.AdamW, gpunn.Nesterov])
def test_an_optimizer_given_the_models_parameters_as_pytorchs_are_says_gpunns_take_none(cls, given, keywords):
    """torch.optim.Adam(net.parameters(), lr=1e-3) takes the parameters first. gpunn.Adam(model.params) said
    "learning rate must be a positive finite number, got array([...]); 21 rates, one per member, are an
    Ensemble's", and gpunn.SGD(model.params, lr=0.1) Python's "got multiple values for argument 'lr'". Rates given
    by position are taken as before, several of them refused as an Ensemble's."""
    model = MLP([3, 4, 2], device="cpu", seed=0)
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\) got the model's parameters \(.+\), as PyTorch's "
                                        rf"optimizers take them: gpunn's take none, as fit gives the optimizer its "
                                        rf"model's: model.fit\(X, Y, optimizer=gpunn.{cls.__name__}\(lr=...\)\)$"):
        cls(given(model), **keywords)
    assert cls(0.05).lr == 0.05 and cls(numpy.float32(0.5)).lr == 0.5
    with pytest.raises(ValueError, match=r"2 rates, one per member, are an Ensemble's"):
        cls(numpy.array([1e-3, 1e-2]))


@pytest.mark.parametrize("rates", [list(numpy.logspace(-3, -2, 2)), [numpy.float32(1e-3), numpy.float32(1e-2)],
                                   [numpy.array(1e-3), numpy.array(1e-2)]], ids=["float64", "float32", "0-d arrays"])
def test_a_list_of_numpys_rates_to_an_optimizer_is_an_ensembles_rates_not_a_models_parameters(rates):
    """list(numpy.logspace(-3, -2, 2)) holds NumPy scalars, which have a shape, (): the parameters' check took them
    for arrays and said "got the model's parameters (a list of 2 arrays)", where floats are said to be an
    Ensemble's rates."""
    with pytest.raises(ValueError, match=r"2 rates, one per member, are an Ensemble's"):
        gpunn.Adam(rates)


@pytest.mark.parametrize("rates", [numpy.array(["1e-3", "1e-2"]), numpy.array([1e-3, None], dtype=object)],
                         ids=["text", "a None"])
def test_an_array_of_rates_that_are_no_numbers_is_refused_as_a_rate_not_with_numpys_words(rates):
    """The parameters' check compared them with 0, and NumPy's "ufunc 'greater' did not contain a loop" (or
    Python's "'>' not supported") came out of gpunn.Adam(...) in place of the learning rate's refusal."""
    with pytest.raises(ValueError, match=r"^learning rate must be a positive finite number, got array\("):
        gpunn.Adam(rates)


def test_the_models_parameters_given_to_an_optimizer_are_named_by_their_count_or_shape():
    """Which parameters the refusal found (audit37d o9 o10): a list by its arrays' count, an array by its shape."""
    model = MLP([3, 4, 2], device="cpu", seed=0)
    for given, words in ((list(model.weights), "a list of 2 arrays"), (tuple(model.biases), "a tuple of 2 arrays"),
                         (model.params, f"an array of shape ({model.params.size},)"), (iter([]), "a list_iterator")):
        with pytest.raises(TypeError, match=rf"^SGD\(\) got the model's parameters \({re.escape(words)}\), as"):
            gpunn.SGD(given)


@pytest.mark.parametrize("make", [lambda: MLP([3, 4, 2], device="cpu", seed=0),
                                  lambda: MLP([3, 2], device="cpu", seed=0),
                                  lambda: gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0)],
                         ids=["MLP", "one layer", "Ensemble"])
def test_a_models_own_weights_given_to_an_optimizer_are_named_as_the_user_wrote_them_not_by_gpunns_class(make):
    """gpunn.SGD(model.weights), PyTorch's habit, said "got the model's parameters (a ParamList of 2 arrays)",
    naming a class of gpunn's insides the user never wrote."""
    model = make()
    arrays = f"{len(model.weights)} array{'s' * (len(model.weights) != 1)}"
    for attribute in ("weights", "biases"):
        with pytest.raises(TypeError, match=rf"^SGD\(\) got the model's parameters \(model\.{attribute}, {arrays}\), "
                                            r"as PyTorch's .*: model\.fit\(X, Y, optimizer=gpunn\.SGD\(lr=\.\.\.\)\)$"):
            gpunn.SGD(getattr(model, attribute))


def test_one_rate_in_an_array_of_one_value_is_checked_as_a_rate_not_taken_for_a_models_parameters():
    """An array of one value is a rate, one per member of a 1-member Ensemble's, even a negative one: refused as a
    rate (audit37d o4), not as "the model's parameters", which only arrays of several values can be."""
    with pytest.raises(ValueError, match=r"^learning rate must be a positive finite number, got array\(\[-0.5\]\)"):
        gpunn.Adam(numpy.array([-0.5]))


def test_an_ensembles_rates_from_zero_are_refused_as_rates_not_taken_for_a_models_parameters():
    """gpunn.Adam(numpy.linspace(0, 1e-2, 5)), an Ensemble's rates from 0, was "got the model's parameters (an array
    of shape (5,))" (audit37d o6): a zero is a rate refused; a negative value, which every model's He-initialized
    weights hold, says the parameters."""
    with pytest.raises(ValueError, match=r"^learning rate must be a positive finite number, got array\(\[0\."):
        gpunn.Adam(numpy.linspace(0, 1e-2, 5))
    with pytest.raises(TypeError, match=r"got the model's parameters \(an array of shape \(2,\)\)"):
        gpunn.Adam(numpy.array([1e-3, -1e-3]))


class _Tensor:
    """Another library's 0-d array, as torch.tensor(0.01) is: shape (), a number by __float__, its own repr."""

    shape = ()

    def __init__(self, number):
        self.number = number

    def __float__(self):
        return float(self.number)

    def __repr__(self):
        return f"tensor({self.number})"


def test_another_librarys_0d_array_as_a_number_is_refused_saying_to_pass_the_number_it_holds(data):
    """lr=torch.tensor(0.01) said "learning rate must be a positive finite number, got tensor(0.0100)", which read as
    the rate refused: a 0-d array not NumPy's is not read as its number (its dtype may be a bool's, reading it may
    wait on a GPU), and its refusal says to pass the number, as a float or an int (the stand-in: a torch tensor)."""
    X, Y = data
    with pytest.raises(ValueError, match=r"^learning rate must be a positive finite number, got tensor\(0.01\), a 0-d "
                                         r"_Tensor, which gpunn does not read: pass the number it holds as a Python "
                                         r"float, float\(value\)$"):
        gpunn.Adam(lr=_Tensor(0.01))
    with pytest.raises(ValueError, match=r"^epochs must be a positive integer, got tensor\(3\), a 0-d _Tensor, .*as a "
                                         r"Python int, int\(value\)$"):
        MLP([X.shape[1], 4, Y.shape[1]], seed=0).fit(X, Y, epochs=_Tensor(3))
    assert gpunn.Adam(lr=float(_Tensor(0.01))).lr == 0.01  # as the refusal says
    assert gpunn.Adam(lr=numpy.array(0.01)).lr == 0.01  # a 0-d NumPy array is read, as before


class _Vector(_Tensor):
    """Another library's array of shape (2,), which converts to a number by __float__ as torch's raises for it."""

    shape = (2,)


class _Text:
    """Another library's 0-d array that holds no number: shape (), no __float__."""

    shape = ()

    def __repr__(self):
        return "text('fast')"


def test_another_librarys_array_of_values_or_0d_array_of_no_number_is_not_told_to_pass_the_number_it_holds():
    """Only a 0-d array that converts to a number is told to pass the number it holds (audit37d c4 c5): a vector, or a
    0-d array of no number, is refused naming it alone."""
    for given, shown in ((_Vector(0.01), r"tensor\(0.01\)"), (_Text(), r"text\('fast'\)")):
        with pytest.raises(ValueError, match=rf"^learning rate must be a positive finite number, got {shown}$"):
            gpunn.Adam(lr=given)


def test_a_list_of_rates_to_one_models_fit_says_it_is_an_ensembles(data):
    """MLP.fit(lr=[1e-3, 1e-2]) said only that the rate must be a positive number, got the list: a list of rates,
    one per member, is an Ensemble's fit's."""
    X, Y = data
    with pytest.raises(ValueError, match=r"got \[0.001, 0.01\]; 2 rates, one per member, are an Ensemble's: "
                                         r"gpunn.Ensemble\(layer_sizes, 2\).fit\(X, Y, lr=\[...\]\) trains a model "
                                         r"per rate at once$"):
        MLP([3, 4, 2], device="cpu").fit(X, Y, lr=[1e-3, 1e-2], verbose=False)
    with pytest.raises(ValueError, match=r"got the string 'fast'; pass a number$"):
        MLP([3, 4, 2], device="cpu").fit(X, Y, lr="fast", verbose=False)


def test_kerass_keywords_to_a_callback_say_what_gpunn_does_instead(model, data, tmp_path):
    """ModelCheckpoint(filepath=...), save_freq and EarlyStopping(..., verbose=1), pasted from Keras code, said only
    "got an unexpected keyword argument"; save_weights_only=True said "did you mean save_best_only?", another
    option. Each of hints.OTHER_CALLBACK_KEYWORDS says what gpunn does instead, and what it shows runs."""
    from gpunn.hints import OTHER_CALLBACK_KEYWORDS

    for name, hints in OTHER_CALLBACK_KEYWORDS.items():
        cls = getattr(gpunn, name)
        assert not set(hints) & set(inspect.signature(cls).parameters), name
        for key, hint in hints.items():
            with pytest.raises(TypeError) as caught:
                cls(**{key: 1})
            assert str(caught.value) == f"{name}() got an unexpected keyword argument {key!r} ({hint})"
    assert "did you mean" not in OTHER_CALLBACK_KEYWORDS["ModelCheckpoint"]["save_weights_only"]
    path = tmp_path / "run.npz"
    history = model.fit(*data, epochs=3, verbose=False, callbacks=[
        gpunn.ReduceLROnPlateau(patience=0, min_delta=1e9), gpunn.EarlyStopping(patience=5),
        gpunn.ModelCheckpoint(path=path, every=1)])
    assert gpunn.load(path).params.tolist() == model.params.tolist()  # the model alone, from the checkpoint
    assert history.stopped_early is False and history.best_epoch in (1, 2, 3)
    assert history["lr"] == pytest.approx([1e-3, 1e-3, 1e-4])  # (a plateau from the second epoch: min_delta)


class _TorchAdam:
    """torch.optim.Adam as a stand-in (CI has no torch): its param_groups list, its module."""

    __module__ = "torch.optim.adam"

    def __init__(self):
        self.param_groups = [{"lr": 1e-3}]

    def __repr__(self):
        return "Adam (\nParameter Group 0\n    lr: 0.001\n)"


_TorchAdam.__name__ = _TorchAdam.__qualname__ = "Adam"


def test_pytorchs_reduce_lr_on_plateau_pasted_says_gpunns_way():
    """PyTorch's ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=3), pasted from a porter's script, said
    "monitor must be the name of a logged value ..., got Adam(...)"; its threshold= and threshold_mode= said only
    "unexpected keyword argument", though PyTorch's threshold is a fraction of the best value by default where
    gpunn's min_delta is an amount."""
    for optimizer, shown in ((gpunn.Adam(lr=1e-3), re.escape(repr(gpunn.Adam(lr=1e-3)))), (_TorchAdam(), "torch's Adam")):
        with pytest.raises(TypeError, match=rf"^ReduceLROnPlateau\(\) got an optimizer as its monitor \({shown}\), as "
                                            r"PyTorch's takes one first: gpunn's is a callback, which lowers the rate "
                                            r"of fit's optimizer: model.fit\(X, Y, optimizer=..., callbacks=\[gpunn."
                                            r"ReduceLROnPlateau\(factor=0.5, patience=3, mode='min'\)\]\)$"):
            gpunn.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=3)
    # PyTorch's positional mode, ReduceLROnPlateau(optimizer, "max"), was shown as gpunn's factor='max'
    with pytest.raises(TypeError, match=r"callbacks=\[gpunn.ReduceLROnPlateau\(mode='max'\)\]\)$"):
        gpunn.ReduceLROnPlateau(_TorchAdam(), "max")
    for key in ("threshold", "threshold_mode"):
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}' \(PyTorch's threshold is a fraction "
                                            r"of the best value \(threshold_mode='rel', its default: .*gpunn's "
                                            r"min_delta is an amount, as with threshold_mode='abs': "
                                            r"ReduceLROnPlateau\(min_delta=...\), 1e-4 by default\)$"):
            gpunn.ReduceLROnPlateau(**{key: 1e-4 if key == "threshold" else "abs"})
    assert gpunn.ReduceLROnPlateau("val_mse", patience=3).monitor == "val_mse"  # (a name first is the monitor)


@pytest.mark.parametrize("given, meant", [("sep", "delimiter"), ("usecols", "features (the input columns; target "
                                                                          "names the output's)"),
                                         ("feature_columns", "features"), ("label", "target"), ("labels", "target"),
                                         ("target_column", "target"), ("label_column", "target")])
def test_pandas_and_other_names_for_a_tables_columns_name_the_source_option_meant(tmp_path, given, meant):
    """gpunn.data.csv("t.csv", target="y", sep=";"), pandas' read_csv name, and label= or target_column= for the
    target said only "CsvSource() got an unexpected keyword argument"; sep is named for a CSV file only."""
    pytest.importorskip("pyarrow")
    from gpunn import data

    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n")
    given_target = {} if meant == "target" else {"target": "y"}
    with pytest.raises(TypeError, match=rf"^gpunn\.data\.csv\(\) got an unexpected keyword argument '{given}' "
                                        rf"\(did you mean {re.escape(meant)}\?\)$"):
        data.csv(tmp_path / "t.csv", **given_target, **{given: "y" if meant == "target" else ";"})
    assert data.csv(tmp_path / "t.csv", target="y", delimiter=",", features=["a"]).n_features == 1


def test_load_and_save_take_a_path_and_refuse_an_open_file_saying_to_pass_its_name(model, tmp_path):
    """numpy.load and torch.load take an open file; gpunn reads and writes checkpoints by name (a write through a
    temporary file beside it), and said "expected str, bytes or os.PathLike object, not BufferedReader". A
    pathlib.Path is a name."""
    path = tmp_path / "m.npz"
    gpunn.save(path, model)
    numpy.testing.assert_array_equal(gpunn.load(path, device="cpu").params, model.params)
    assert gpunn.load_checkpoint(path, device="cpu").path == str(path)
    for call, give in (("gpunn.load(path)", gpunn.load), ("gpunn.load_checkpoint(path)", gpunn.load_checkpoint),
                       ("gpunn.save(path, model)", lambda f: gpunn.save(f, model))):
        with open(path, "rb+") as f, pytest.raises(TypeError) as caught:
            give(f)
        assert str(caught.value) == (f"{call}: path must be a file name (a str or a pathlib.Path), got an open file "
                                     f"(BufferedRandom); gpunn reads and writes checkpoints by name: pass its name, "
                                     f"{call.replace('path', 'f.name')}")
    with pytest.raises(TypeError, match=r"got an open file \(BytesIO\); .*: write it to a file and pass the file's "
                                        r"name$"):
        gpunn.load(io.BytesIO(path.read_bytes()))
    with pytest.raises(TypeError, match=r"^gpunn.load\(path\): path must be a file name .*, got None \(NoneType\)$"):
        gpunn.load(None)

    class Sink:  # a stream of the caller's that only writes (audit37b m8: said as any object, not as an open file)
        def write(self, data):
            return len(data)

    with pytest.raises(TypeError, match=r"^gpunn.save\(path, model\): .*got an open file \(Sink\)"):
        gpunn.save(Sink(), model)


def test_optimizer_options_belong_to_the_optimizer(model, data):
    with pytest.raises(TypeError, match="momentum"):
        model.fit(*data, epochs=1, optimizer="sgd", momentum=0.9, verbose=False)
    with pytest.raises(ValueError, match="optimizer 'adam' does not take momentum"):
        gpunn.optim.make_optimizer("adam", momentum=0.9)


def test_a_none_option_by_name_is_its_default():
    """make_optimizer and make_schedule take a name and its options, an option of None meaning its default (code
    that passes its own optional settings through; mut17b's O68: make_schedule passed None on to the Schedule)."""
    adam = gpunn.optim.make_optimizer("adam", lr=None, beta1=None, weight_decay=0.1)
    assert adam.config() == gpunn.Adam(weight_decay=0.1).config()
    step = gpunn.optim.make_schedule("step", step_size=None, gamma=0.5, total_epochs=None)
    assert step == gpunn.Schedule("step", gamma=0.5) and step.step_size == 10


def test_assigning_a_parameter_checks_its_shape(model):
    with pytest.raises(ValueError, match=r"shape \(2, 2\) does not match the parameter's \(3, 4\)"):
        model.weights[0] = numpy.ones((2, 2))
    # a slice is refused saying how to assign (mut12m's M24: without the refusal it failed with "'list' object has no
    # attribute 'dtype'" and passed)
    with pytest.raises(TypeError, match=r"assign parameters one at a time, e.g. model.weights\[0\]\[...\] = W"):
        model.weights[0:1] = [numpy.ones((3, 4))]
    assert numpy.shares_memory(model.weights[0], model.params)


def test_in_place_assignment_changes_the_model(model):
    X = numpy.ones((1, 3))
    before = model.predict(X).copy()
    model.weights[1][...] = 0
    assert numpy.all(model.predict(X) == 0) and not numpy.all(before == 0)
    model.weights[0] = numpy.full((3, 4), 0.5)  # item assignment copies into the flat buffer too
    assert numpy.all(model.params[:12] == 0.5)


@pytest.mark.parametrize("members", [None, 2])
@pytest.mark.parametrize("name, says", [
    ("params", r"model.params\[...\] = P"),
    ("weights", r"model.weights\[l - 1\]\[...\] = W"),
    ("biases", r"model.biases\[l - 1\]\[...\] = b"),
])
def test_replacing_the_parameters_is_refused_saying_to_copy_into_them(name, says, members):
    """`model.params = other.params.copy()` (or a new weights list) left the buffer the model computes with and trains:
    predict went on with the old weights, and a fit stepped the new array, which no forward pass read, so its loss
    never moved; all without a word."""
    model = MLP([3, 4, 1], device="cpu", seed=0) if members is None else Ensemble([3, 4, 1], members, device="cpu")
    X, Y = numpy.ones((8, 3)), numpy.ones((8, 1))
    before = numpy.array(model.predict(X))
    with pytest.raises(AttributeError, match=rf"replacing {name} .*; copy into it: {says}"):
        setattr(model, name, model.params.copy() if name == "params" else [a.copy() for a in getattr(model, name)])
    model.fit(X, Y, epochs=2, lr=0.1, verbose=False)
    assert not numpy.array_equal(model.predict(X), before)  # the model still trains its own buffer


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="mnist"), "unknown task 'mnist'"),
    (dict(n_samples=0), "n_samples must be a positive integer"),
    (dict(task="friedman1", n_features=3), "friedman1 needs at least 5 features"),
    (dict(noise=-1), "noise must be a non-negative number"),
    # as fit's and MLP's: a float seed was truncated (1.5 -> 1), "3" and True were taken, and so was noise=True
    (dict(seed=1.5), "seed must be a non-negative int, got 1.5"),
    (dict(seed="3"), "seed must be a non-negative int, got the string '3'; pass an integer$"),
    (dict(seed=True), "seed must be a non-negative int, got True"),
    (dict(noise=True), "noise must be a non-negative number, got True"),
    # "Teacher.__init__() missing 1 required positional argument", NumPy's "Unsupported dtype ... for standard_normal"
    (dict(n_features=None), r"the teacher task needs n_features \(its input width\), got None"),
    (dict(dtype="float16"), "dtype must be one of .*got 'float16'"),
])
def test_bad_dataset_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.make(**{"n_samples": 10, "n_features": 4, "device": "cpu", **kwargs})


def npy_pair(tmp_path, **kw):
    numpy.save(tmp_path / "x.npy", numpy.ones((40, 3)))
    numpy.save(tmp_path / "y.npy", numpy.ones((40, 1)))
    return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=10, **kw)


@pytest.mark.parametrize("make", [
    lambda tmp_path, **kw: gpunn.data.synthetic("linear", rows=4 * 65536, n_features=3, **kw), npy_pair,
], ids=["synthetic", "npy"])
@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=1.5), "seed must be a non-negative int, got 1.5"),
    (dict(seed="3"), "seed must be a non-negative int, got the string '3'; pass an integer$"),
    (dict(seed=-1), "seed must be a non-negative int, got -1"),
    (dict(validation_fraction="0.1"), r"validation_fraction must be a number in \[0, 1\), got the string '0.1'; pass a number$"),
    (dict(validation_fraction=1), r"validation_fraction must be a number in \[0, 1\), got 1"),
    # mut17e's F48: any standardize was taken ('yes' standardized the inputs alone: targets only for True)
    (dict(standardize="yes"), r"standardize must be True, False or 'inputs', got 'yes'"),
])
def test_bad_data_source_options(make, kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make(tmp_path, **kwargs)


@pytest.mark.parametrize("make", [
    lambda tmp_path, **kw: gpunn.data.synthetic("linear", rows=4 * 65536, n_features=3, **kw), npy_pair,
], ids=["synthetic", "npy"])
def test_a_data_sources_shuffle_is_a_bool(make, tmp_path):
    with pytest.raises(TypeError, match="shuffle must be True or False, got 'no'"):  # it shuffled
        make(tmp_path, shuffle="no")
    assert make(tmp_path, shuffle=0).shuffle is False


def test_data_sources_take_numpy_scalars():
    """validation_fraction=numpy.float32(0.25) was refused as "must be in [0, 1), got np.float32(0.25)", as was
    noise=numpy.float32(0.1); fit's checks take NumPy scalars (checks.real)."""
    source = gpunn.data.synthetic("linear", rows=4 * 65536, n_features=3, noise=numpy.float32(0.1),
                                  validation_fraction=numpy.float32(0.25), seed=numpy.int64(2))
    assert source.validation_rows == 65536 and source.seed == 2
    assert source.hold_out(numpy.float32(0.5)).validation_rows == 2 * 65536
    assert type(source.config()["validation_fraction"]) is float  # JSON, in checkpoints


def test_a_float32_validation_fraction_is_recorded_as_written(tmp_path):
    """numpy.float32(0.1) was recorded as 0.10000000149011612, so resuming on a source made with 0.1 was
    refused as "trained on another source" (revleft's left-alone item)."""
    rng = numpy.random.default_rng(0)
    numpy.save(tmp_path / "x.npy", rng.standard_normal((4000, 4)).astype("float32"))
    numpy.save(tmp_path / "y.npy", rng.standard_normal((4000, 1)).astype("float32"))

    def source(fraction):
        return gpunn.data.npy(tmp_path / "x.npy", tmp_path / "y.npy", validation_fraction=fraction)

    assert source(numpy.float32(0.1)).config()["validation_fraction"] == 0.1
    model = gpunn.MLP([4, 8, 1], device="cpu", seed=0)
    model.fit(source(numpy.float32(0.1)), epochs=1, verbose=False,
              callbacks=[gpunn.ModelCheckpoint(tmp_path / "run.npz")])
    history = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").resume(source(0.1), epochs=2, verbose=False)
    assert history["epoch"] == [1, 2]


def test_a_float32_validation_fraction_of_a_fit_on_arrays_is_the_number_written(tmp_path):
    """A fit on arrays took numpy.float32(0.1) as 0.10000000149011612 (a source as 0.1): recorded so in its
    checkpoint, and of 25 rows it held out round(2.50000004) = 3 rows, where 0.1 holds out round(2.5) = 2."""
    X = numpy.linspace(0, 1, 50).reshape(25, 2)
    for fraction in (0.1, numpy.float32(0.1)):
        MLP([2, 3, 1], device="cpu", seed=0).fit(X, X[:, :1], epochs=1, validation_fraction=fraction, verbose=False,
                                                 callbacks=[gpunn.ModelCheckpoint(tmp_path / "run.npz")])
        settings = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu").settings
        assert type(settings.validation_fraction) is float
        assert (settings.validation_fraction, settings.train_rows) == (0.1, 23)


def _floats_only(value):
    """Whether ``value`` (a dict, list or scalar) holds Python floats, ints, bools, strings and None only."""
    if isinstance(value, dict):
        return all(_floats_only(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_floats_only(v) for v in value)
    return value is None or type(value) in (float, int, bool, str)


def test_a_0d_real_array_is_the_float_it_holds_for_every_real_option(data, tmp_path):
    """An Ensemble's lr took numpy.array(1e-2) as one value and every int argument takes a 0-d integer array, but
    MLP.fit(lr=numpy.array(1e-2)) and every real-valued option (weight_decay, momentum, betas, eps, min_delta,
    factor, min_lr, gamma, min_factor, validation_fraction) refused it ("learning rate must be a positive finite
    number, got array(0.01)"). Each is now the float it holds: the run is the floats' run, its optimizer, schedule,
    callbacks and history hold floats, its checkpoint's JSON is written, and its resume is exact."""
    from gpunn.checkpoint import META

    a = numpy.array

    def run(x, epochs, path=None):
        model = MLP([3, 4, 2], device="cpu", seed=0)
        callbacks = [gpunn.EarlyStopping(min_delta=x(1e-9), patience=5),
                     gpunn.ReduceLROnPlateau(factor=x(0.5), min_lr=x(1e-6), min_delta=x(0.0), patience=1)]
        if path is not None:
            callbacks.append(gpunn.ModelCheckpoint(path))
        history = model.fit(*data, epochs=epochs, batch_size=4, lr=x(1e-2), validation_fraction=x(0.2), verbose=False,
                            optimizer=gpunn.Adam(weight_decay=x(1e-3), beta1=x(0.8), beta2=x(0.99), eps=x(1e-7)),
                            schedule=gpunn.Schedule("cosine", total_epochs=3, min_factor=x(0.1)), callbacks=callbacks)
        return model, history

    floats, floats_history = run(float, 3)
    arrays, history = run(a, 3)
    numpy.testing.assert_array_equal(arrays.params, floats.params)
    assert history["loss"] == floats_history["loss"] and history["lr"] == floats_history["lr"]
    assert _floats_only(dict(history)) and _floats_only(arrays.optimizer.config())
    assert all(type(v) is float for v in (arrays.optimizer.lr, arrays.optimizer.weight_decay, arrays.optimizer.eps))
    schedule = gpunn.Schedule("step", step_size=1, gamma=a(0.5, numpy.float32))
    assert type(schedule.gamma) is float and schedule.factor(2, 3) == 0.25

    _, _ = run(a, 2, tmp_path / "run.npz")
    with numpy.load(tmp_path / "run.npz") as saved:
        meta = json.loads(bytes(saved[META]))
    assert meta["training"]["settings"]["validation_fraction"] == 0.2
    assert meta["training"]["settings"]["schedule"]["min_factor"] == 0.1
    resumed = gpunn.load_checkpoint(tmp_path / "run.npz", device="cpu")
    resumed_history = resumed.resume(*data, epochs=3, verbose=False)
    numpy.testing.assert_array_equal(resumed.model.params, floats.params)  # exact: as the 3-epoch run of floats
    assert resumed_history["loss"] == floats_history["loss"]

    sgd = [MLP([3, 4, 2], device="cpu", seed=0).fit(*data, epochs=2, verbose=False, optimizer=gpunn.SGD(
        lr=x(1e-2), momentum=x(0.9), nesterov=True, weight_decay=x(1e-3)))["loss"] for x in (float, a)]
    assert sgd[0] == sgd[1]
    ens = gpunn.Ensemble([3, 4, 2], 2, device="cpu", seed=0)
    ens_history = ens.fit(*data, epochs=1, lr=[a(1e-2), a(2e-2)], weight_decay=[a(0.0), 1e-3], verbose=False)
    assert ens_history["lr"] == [[1e-2, 2e-2]] and _floats_only(dict(ens_history))
    task = datasets.get_task("teacher", n_features=3, noise=a(0.5))
    assert type(task.noise) is float and task.noise == 0.5


def test_a_0d_float32_array_validation_fraction_is_recorded_as_written():
    # as numpy.float32(0.1) is (the float it holds is 0.10000000149, which a resume given 0.1 did not match)
    source = gpunn.data.synthetic("linear", rows=4 * 65536, n_features=3, validation_fraction=numpy.array(0.25),
                                  noise=numpy.array(0.1, numpy.float32))
    assert source.validation_rows == 65536
    held = source.hold_out(numpy.array(0.1, numpy.float32)).config()["validation_fraction"]
    assert type(held) is float and held == 0.1


REAL_OPTIONS = {
    "lr": (lambda v: gpunn.SGD(lr=v), "learning rate must be a positive finite number"),
    "weight_decay": (lambda v: gpunn.Adam(weight_decay=v), "weight_decay must be a non-negative number"),
    "momentum": (lambda v: gpunn.SGD(momentum=v), "momentum must be a non-negative number"),
    "beta1": (lambda v: gpunn.Adam(beta1=v), r"beta1 must be in \[0, 1\)"),
    "beta2": (lambda v: gpunn.Adam(beta2=v), r"beta2 must be in \[0, 1\)"),
    "eps": (lambda v: gpunn.Adam(eps=v), "eps must be a positive finite number"),
    "gamma": (lambda v: gpunn.Schedule("step", gamma=v), r"gamma must be in \(0, 1\]"),
    "min_factor": (lambda v: gpunn.Schedule("cosine", min_factor=v), r"min_factor must be in \[0, 1\]"),
    "min_delta": (lambda v: gpunn.EarlyStopping(min_delta=v), "min_delta must be a non-negative number"),
    "factor": (lambda v: gpunn.ReduceLROnPlateau(factor=v), r"factor must be in \(0, 1\)"),
    "min_lr": (lambda v: gpunn.ReduceLROnPlateau(min_lr=v), "min_lr must be a non-negative number"),
    "noise": (lambda v: datasets.get_task("teacher", n_features=3, noise=v), "noise must be a non-negative number"),
    "source validation_fraction": (lambda v: gpunn.data.synthetic("linear", rows=4 * 65536, n_features=3,
                                                                  validation_fraction=v),
                                   r"validation_fraction must be a number in \[0, 1\)"),
}


@pytest.mark.parametrize("given, said", [
    (dict(factor=0), "factor must be in (0, 1), got 0"), (dict(factor=1.0), "factor must be in (0, 1), got 1.0"),
    (dict(factor=float("nan")), "factor must be in (0, 1), got nan"),
    (dict(patience=-1), "patience must be a non-negative integer, got -1"),
    (dict(patience=1.0), "patience must be a non-negative integer, got 1.0"),
    (dict(cooldown=-1), "cooldown must be a non-negative integer, got -1"),
    (dict(min_delta=-1e-4), "min_delta must be a non-negative number, got -0.0001"),
    (dict(min_delta=numpy.inf), "min_delta must be a non-negative number, got inf"),
    (dict(min_lr=-1), "min_lr must be a non-negative number, got -1"),
    (dict(min_lr=float("inf")), "min_lr must be a non-negative number, got inf"),
    (dict(min_lr="0"), "min_lr must be a non-negative number, got the string '0'; pass a number"),
    (dict(mode="least"), "mode must be"),
], ids=repr)
def test_reduce_lr_on_plateau_refuses_each_option_out_of_its_range_by_name_as_it_is_made(given, said):
    """Its checks, one rule each (checks.non_negative_number for min_delta and min_lr, as for momentum and noise):
    every option refused in these words when the callback is made, before any fit."""
    with pytest.raises(ValueError, match=f"^{re.escape(said)}"):
        gpunn.ReduceLROnPlateau(**given)
    kept = gpunn.ReduceLROnPlateau(factor=numpy.float32(0.5), min_lr=numpy.array(1e-6), min_delta=0)
    assert [type(kept.factor), type(kept.min_lr), type(kept.min_delta)] == [float, float, float]
    assert (kept.min_lr, kept.min_delta) == (1e-6, 0.0)


@pytest.mark.parametrize("value", [True, numpy.True_, numpy.array(True), 0.5 + 0j, numpy.array(0.5 + 0j),
                                   numpy.array(numpy.nan), numpy.array([0.5]), numpy.array([0.5, 0.5]), "0.5"])
@pytest.mark.parametrize("option", list(REAL_OPTIONS))
def test_a_bool_complex_nan_or_array_of_values_is_refused_by_every_real_option(option, value):
    """Text is named as text ("got '0.5'" read as the number refused); every other value by its repr."""
    make, message = REAL_OPTIONS[option]
    shown = f"the string {value!r}; pass a number" if isinstance(value, str) else repr(value)
    with pytest.raises(ValueError, match=f"^{message}, got {re.escape(shown + _per_member(option, value))}$"):
        make(value)


def _per_member(option, value) -> str:
    """What a refusal of several learning rates adds: they are an Ensemble's, one per member."""
    several = option == "lr" and numpy.ndim(value) == 1 and len(value) > 1
    return (f"; {len(value)} rates, one per member, are an Ensemble's: gpunn.Ensemble(layer_sizes, {len(value)})"
            ".fit(X, Y, lr=[...]) trains a model per rate at once") if several else ""


@pytest.mark.parametrize("value", [True, numpy.array(True), numpy.array(0.5 + 0j), numpy.array(numpy.nan),
                                   numpy.array([0.5]), numpy.array([0.1, 0.2]), numpy.array([0.0])])
def test_fit_refuses_them_as_lr_and_validation_fraction(model, data, value):
    """validation_fraction=numpy.array([0.1, 0.2]) failed with NumPy's "The truth value of an array with more than
    one element is ambiguous", and numpy.array([0.0]) held nothing out: fit's `if not validation_fraction` read the
    array before the check."""
    shown = re.escape(repr(value))
    with pytest.raises(ValueError, match=f"^learning rate must be a positive finite number, got "
                                         f"{shown}{re.escape(_per_member('lr', value))}$"):
        model.fit(*data, epochs=1, lr=value, verbose=False)
    with pytest.raises(ValueError, match=rf"^validation_fraction must be a number in \[0, 1\), got {shown}$"):
        model.fit(*data, epochs=1, validation_fraction=value, verbose=False)


@pytest.mark.parametrize("value", [numpy.array([0.1, 0.2]), numpy.array([0.0])])
def test_an_array_of_values_as_validation_fraction_is_refused_by_an_ensemble_and_with_a_source(data, value):
    shown = re.escape(repr(value))
    ensemble = gpunn.Ensemble([3, 4, 2], n_models=2, device="cpu", seed=0)
    with pytest.raises(ValueError, match=rf"^validation_fraction must be a number in \[0, 1\), got {shown}$"):
        ensemble.fit(*data, epochs=1, validation_fraction=value, verbose=False)
    refused_with_a_source(value, shown)


def refused_with_a_source(value, shown):
    """fit(source, validation_fraction=value) refused by MLP and Ensemble alike, in the words of a fit on arrays
    (checks.validation_share), and the source left holding nothing out."""
    for model in (MLP([3, 4, 1], device="cpu", seed=0), gpunn.Ensemble([3, 4, 1], n_models=2, device="cpu", seed=0)):
        source = gpunn.data.synthetic("linear", rows=4 * 65536, n_features=3)
        with pytest.raises(ValueError, match=rf"^validation_fraction must be a number in \[0, 1\), got {shown}$"):
            model.fit(source, epochs=1, validation_fraction=value, verbose=False)
        assert not source.validation_fraction


FALSY_NOT_A_SHARE = ["", False, numpy.False_, numpy.array(False), [], (), {}]


@pytest.mark.parametrize("value", FALSY_NOT_A_SHARE, ids=repr)
def test_a_falsy_validation_fraction_that_is_no_number_is_refused_as_a_truthy_one_is(data, value):
    """fit's `if not validation_fraction` came before the check: "" (a number read as text: "0.1" is refused), False
    and [] held nothing out without a word. A bool is no share, False as True. None and 0 still hold none out."""
    shown = re.escape(f"the string {value!r}; pass a number" if isinstance(value, str) else repr(value))
    for model in (MLP([3, 4, 2], device="cpu", seed=0), gpunn.Ensemble([3, 4, 2], n_models=2, device="cpu", seed=0)):
        with pytest.raises(ValueError, match=rf"^validation_fraction must be a number in \[0, 1\), got {shown}$"):
            model.fit(*data, epochs=1, validation_fraction=value, verbose=False)
    refused_with_a_source(value, shown)


@pytest.mark.parametrize("value", [None, 0, 0.0, numpy.float32(0), numpy.array(0.0)], ids=repr)
def test_none_or_a_zero_validation_fraction_holds_nothing_out(model, data, value):
    history = model.fit(*data, epochs=1, validation_fraction=value, verbose=False)
    assert "val_loss" not in history


@pytest.mark.parametrize("make", [
    lambda monitor: gpunn.EarlyStopping(monitor=monitor), lambda monitor: gpunn.ReduceLROnPlateau(monitor=monitor),
    lambda monitor: gpunn.ModelCheckpoint("run.npz", save_best_only=True, monitor=monitor),
    lambda monitor: MemberEarlyStopping(monitor=monitor),
], ids=["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint", "MemberEarlyStopping"])
@pytest.mark.parametrize("monitor, error", [("", ValueError), (0, TypeError), (False, TypeError), ([], TypeError),
                                            (5, TypeError)], ids=repr)
def test_a_monitor_that_is_no_name_is_refused(make, monitor, error):
    """`monitor or default` came before any check: "", 0, False and [] watched val_loss (or loss) without a word,
    and 5 failed with "'int' object has no attribute 'endswith'"."""
    with pytest.raises(error, match=r"^monitor must be the name of a logged value such as 'val_loss', or None "
                                    rf"\(val_loss with validation, else loss\), got {re.escape(repr(monitor))}$"):
        make(monitor)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dtype=""), ValueError, r"^dtype must be one of \('float32', 'float64'\) .*, got ''$"),
    (dict(dtype=0), ValueError, r"^dtype must be one of \('float32', 'float64'\) .*, got 0$"),
    (dict(dtype="int32"), ValueError, r"^dtype must be one of \('float32', 'float64'\) .*, got 'int32'$"),
    (dict(device=""), ValueError, r"^unknown device ''"),
    (dict(device=0), TypeError, r"^device must be a string"),
], ids=["dtype ''", "dtype 0", "dtype int32", "device ''", "device 0"])
def test_a_data_sources_device_and_dtype_are_checked_before_a_default_stands_in(tmp_path, kwargs, error, match):
    """`device or "auto"`, `dtype or "float32"`: "" and 0 bound the source to the default without a word (and a
    source's dtype="int32" made int32 batches: a model's dtype is float32 or float64)."""
    with pytest.raises(error, match=match):
        npy_pair(tmp_path, **kwargs)
    assert npy_pair(tmp_path, dtype="f8").dtype == numpy.float64


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_features=0), "^n_features must be a positive integer, got 0$"),
    (dict(n_features=0, n_outputs=2, rows=10), "^n_features must be a positive integer, got 0$"),
    (dict(n_outputs=False), "^n_outputs must be a positive integer, got False$"),
    (dict(n_features="3", n_outputs=2, rows=10), "^n_features must be a positive integer, got the string '3'; pass an "
                                                 "integer$"),
])
def test_an_iterable_sources_widths_are_checked_before_the_first_piece_stands_in(data, kwargs, match):
    """`n_features or <the first piece's>`: 0 read the width from the data; with rows and both widths given, int()
    took 0, "3" and 2.5 as they came."""
    with pytest.raises(ValueError, match=match):
        gpunn.data.iterable([data], **kwargs)


@pytest.mark.parametrize("x", [numpy.float32, lambda v: numpy.array(v, numpy.float32)], ids=["scalar", "0-d"])
def test_a_float32_validation_fraction_or_schedule_gamma_goes_into_the_checkpoint_as_a_float(data, tmp_path, x):
    """numpy.float32(0.2) was kept as given by fit's settings and the Schedule, and the checkpoint's write failed:
    "Object of type float32 is not JSON serializable"."""
    from gpunn.checkpoint import META

    model = MLP([3, 4, 2], device="cpu", seed=0)
    model.fit(*data, epochs=1, validation_fraction=x(0.2), schedule=gpunn.Schedule("step", gamma=x(0.5)),
              callbacks=[gpunn.ModelCheckpoint(tmp_path / "run.npz")], verbose=False)
    with numpy.load(tmp_path / "run.npz") as saved:
        settings = json.loads(bytes(saved[META]))["training"]["settings"]
    assert settings["validation_fraction"] == 0.2  # the number written (float32's 0.2 is 0.2000000029802322)
    assert settings["schedule"]["gamma"] == 0.5


@pytest.mark.parametrize("option", ["epochs", "batch_size", "seed"])
def test_an_int_option_names_text_as_text(model, data, option):
    """epochs="3" said "epochs must be a positive integer, got '3'": the quotes alone read as the number 3 refused
    (the real-valued options say so since e2b2f5f); a float is named by its repr as before."""
    words = "a non-negative int" if option == "seed" else "a positive integer"
    with pytest.raises(ValueError, match=f"^{option} must be {words}, got the string '3'; pass an integer$"):
        model.fit(*data, **{"epochs": 1, "verbose": False, option: "3"})
    with pytest.raises(ValueError, match=f"^{option} must be {words}, got 3.5$"):
        model.fit(*data, **{"epochs": 1, "verbose": False, option: 3.5})
