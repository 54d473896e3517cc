"""One CSV file, one reading: training (gpunn.data.csv, as gpunn train --data reads it) and gpunn predict (streamed
through pyarrow, or read whole through numpy.loadtxt, with pyarrow installed or not) take the same columns as the
same types, read each value as the same number, and refuse a value in the same words on the same line."""
import re
import sys

import numpy
import pytest

import gpunn
from gpunn import data
from gpunn.checks import read_by_position
from gpunn.cli import main
from gpunn.data import DataError
from gpunn.data.files import read_rows  # imported before any test patches csvtext.CSV_BLOCK

pytest.importorskip("pyarrow")


def trained_on(path, target="b", **options):
    """Every row of the CSV file as training reads it (gpunn.data.csv), in file order: features then the target."""
    source = data.csv(path, target, shuffle=False, **options).bind("cpu", "float64")
    X, Y = (numpy.concatenate([numpy.asarray(A) for A in arrays]) for arrays in zip(*source.ordered_windows()))
    return numpy.hstack([X, Y])


def streamed(path, columns):
    """Every row as gpunn predict streams it (gpunn.data.files.read_rows), ``columns`` its features."""
    _, chunks, _ = read_rows(path, len(columns), columns)
    return numpy.concatenate(list(chunks))


def read_whole(path, monkeypatch=None):
    """Every row as gpunn predict reads a small file whole (preflight.read_matrix: numpy.loadtxt); with
    ``monkeypatch``, as where pyarrow is not installed."""
    from gpunn import preflight

    if monkeypatch is None:
        return preflight.read_matrix(path, "IN")
    with monkeypatch.context() as patch:
        for name in ("pyarrow", "pyarrow.csv"):
            patch.setitem(sys.modules, name, None)
        return preflight.read_matrix(path, "IN")


def predict_refusals(tmp_path, monkeypatch, capsys, path) -> list:
    """The last line gpunn predict writes to stderr refusing the CSV file ``path`` of 2 features, read whole and
    streamed (STREAM_BYTES 0)."""
    from gpunn.cli import predict

    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    said = []
    for stream_bytes in (predict.STREAM_BYTES, 0):
        monkeypatch.setattr(predict, "STREAM_BYTES", stream_bytes)
        assert main(["predict", model, path, str(tmp_path / "p.npy")]) == 2
        said.append(capsys.readouterr().err.splitlines()[-1])
    return said


def refusal(read, *args, **options):
    """What ``read(*args, **options)`` refuses, the file named first ("x.csv line 3: ..."): gpunn predict's whole read says
    "IN x.csv", the readers gpunn.data's "x.csv"."""
    with pytest.raises((DataError, ValueError)) as caught:
        read(*args, **options)
    return str(caught.value).removeprefix("IN ")


# ---- the bytes a column is typed from -------------------------------------------------------------------
def flag_file(tmp_path, values):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n" + "".join(f"{n % 10}.5,{value}\n" for n, value in enumerate(values)))
    return str(path)


def test_a_column_of_ones_and_zeros_then_true_is_read_alike_by_training_and_predict(tmp_path, monkeypatch):
    """A 60 KB file whose column b holds 1 and 0, then true further down: training typed it from its own first
    block (a 32nd of a small file: 1.9 KB here, all 1 and 0: numbers) and refused the true ("line 5002: column 'b':
    'true' is not a number"), gpunn predict from the file's first 1 MiB (all of it: booleans) and read the true as
    1. Both now type it from the same bytes (csvtext.typing_block), whatever block_size cuts the file: booleans,
    the true read as 1 everywhere."""
    values = ["1" if n % 3 else "0" for n in range(10_000)]
    values[5000] = "true"
    path = flag_file(tmp_path, values)
    expected = numpy.column_stack([numpy.arange(10_000) % 10 + 0.5, [1.0 if v in ("1", "true") else 0.0 for v in values]])
    for block_size in (None, 1 << 10, 1 << 22):
        numpy.testing.assert_array_equal(trained_on(path, block_size=block_size), expected, err_msg=str(block_size))
    numpy.testing.assert_array_equal(streamed(path, ["a", "b"]), expected)
    numpy.testing.assert_array_equal(read_whole(path), expected)


@pytest.mark.parametrize("first, bad, problem", [
    ("01", "true", "'true' is not a number"),
    ("tf", "2.5", "'2.5' is not a boolean (true/false or 1/0, as the column's first rows are)"),
    ("tf", "maybe", "'maybe' is not a number"),
], ids=["true after numbers", "a number after booleans", "a word after booleans"])
def test_a_value_past_the_typed_bytes_is_refused_alike_by_training_and_predict(tmp_path, monkeypatch, first, bad,
                                                                               problem):
    """Past the bytes the columns are typed from (4 KiB here, 1 MiB by default) a value that does not fit the
    column's type is refused by every reader on its line, in one wording; training cut in blocks smaller and
    larger than those bytes types the file as gpunn predict does (it typed from its block_size: 1 KiB and 64 KiB
    saw other rows)."""
    from gpunn import csvtext

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 1 << 12)
    words = {"01": ("0", "1"), "tf": ("false", "true")}[first]
    values = [words[n % 3 > 0] for n in range(10_000)]
    values[8000] = bad
    path = flag_file(tmp_path, values)
    said = f"{path} line 8002: column 'b': {problem}"
    for block_size in (None, 1 << 10, 1 << 16):
        assert refusal(trained_on, path, "b", block_size=block_size) == said, block_size
    assert refusal(streamed, path, ["a", "b"]) == said
    assert refusal(read_whole, path) == said


def test_numbers_then_decimals_past_the_typed_bytes_are_read_alike(tmp_path, monkeypatch):
    """A column of integers in the typed bytes and decimals past them (int64 to pyarrow there) is read as float64
    numbers by every reader, the decimals exact."""
    from gpunn import csvtext

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 1 << 12)
    values = [str(n % 7) for n in range(5_000)] + [f"{n % 7}.25" for n in range(5_000)]
    path = flag_file(tmp_path, values)
    expected = numpy.column_stack([numpy.arange(10_000) % 10 + 0.5, [float(v) for v in values]])
    for block_size in (None, 1 << 10):
        numpy.testing.assert_array_equal(trained_on(path, block_size=block_size), expected)
    numpy.testing.assert_array_equal(streamed(path, ["a", "b"]), expected)
    numpy.testing.assert_array_equal(read_whole(path), expected)


def test_train_then_predict_on_one_csv_file_take_its_columns_alike(tmp_path, capsys):
    """The command line: gpunn train --data x.csv, then gpunn predict on that file (streamed: the model knows its
    columns) and on its rows without the header row (read whole, by position). Training refused the file's
    'true' ("line 5002: column 'flag': 'true' is not a number"), which predict read as 1."""
    flags = ["1" if n % 3 else "0" for n in range(10_000)]
    flags[5000] = "true"
    rows = "".join(f"{flag},{n % 10}.5,{n % 4}\n" for n, flag in enumerate(flags))
    (tmp_path / "x.csv").write_text("flag,a,y\n" + rows)
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "x.csv"), "--target", "y", "--hidden", "4", "--epochs", "1",
                 "--batch-size", "500", "--device", "cpu", "--quiet", "--save", model]) == 0
    X = numpy.column_stack([[1.0 if f in ("1", "true") else 0.0 for f in flags], numpy.arange(10_000) % 10 + 0.5])
    with read_by_position():  # (X holds the model's columns, in its order)
        expected = gpunn.load(model, device="cpu").predict(X)
    (tmp_path / "rows.csv").write_text("".join(f"{flag},{n % 10}.5\n" for n, flag in enumerate(flags)))
    for given in ("x.csv", "rows.csv"):  # streamed by the model's column names; read whole by position
        assert main(["predict", model, str(tmp_path / given), str(tmp_path / "p.npy"), "--device", "cpu"]) == 0
        numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), expected, err_msg=given)
    capsys.readouterr()


@pytest.mark.parametrize("at", [3, 800], ids=["in the typed bytes", "past them"])
def test_a_number_written_with_the_other_decimal_mark_is_named_alike_in_and_past_the_typed_bytes(tmp_path,
                                                                                                 monkeypatch, at):
    """data.csv(..., decimal=","): a 2.5 among 1,5s is the value refused, in one wording, where the column is typed
    (it named the first 1,5, a number by that mark: "line 2: column 'a': '1,5' is not a number") and past it (it
    was pyarrow's "CSV conversion error to double: invalid value '2.5'")."""
    from gpunn import csvtext

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 1 << 12)
    rows = ["1,5;2"] * 1000
    rows[at] = "2.5;3"
    (tmp_path / "de.csv").write_text("a;y\n" + "\n".join(rows) + "\n")
    assert refusal(trained_on, str(tmp_path / "de.csv"), "y", delimiter=";", decimal=",") == (
        f"{tmp_path / 'de.csv'} line {at + 2}: column 'a': '2.5' is not a number")


# ---- one number rule ------------------------------------------------------------------------------------
NUMBERS = {" 1.5": 1.5, "1.5\t": 1.5, '"1.5"': 1.5, '" -2"': -2.0, "1e3": 1000.0, "1E-3": 0.001, "+2": 2.0,
           "-0": -0.0, "1.": 1.0, ".5": 0.5, "007": 7.0, "9007199254740993": 9007199254740992.0,
           "4.9e-324": 5e-324, "1e400": numpy.inf, "-inf": -numpy.inf, "Infinity": numpy.inf, "NAN": numpy.nan,
           "nan": numpy.nan}
NOT_NUMBERS = ["0x10", "1_000", "1d3", "  ", "None", ' "1.5"', "\xa01.5", "1.5\u2003", "\x0c1.5", "1.5\x1f", "\u0661",
               "\uff11", "2#x", "#2"]


def value_file(tmp_path, value, header=True):
    path = tmp_path / "x.csv"
    path.write_text(("a,b\n" if header else "") + f"{value},1\n2,3\n")
    return str(path)


@pytest.mark.parametrize("value", NUMBERS)
def test_a_number_reads_as_one_value_whichever_reader_reads_it(tmp_path, monkeypatch, value):
    """Spaces and tabs around a number, quotes, signs, exponents, a number past float64's range or precision:
    training, gpunn predict streamed and read whole (with pyarrow or without) read one value, -0 and NaN as
    such."""
    expected = numpy.array([[NUMBERS[value], 1.0], [2.0, 3.0]])
    path = value_file(tmp_path, value)
    readings = {"training": trained_on(path) if numpy.isfinite(NUMBERS[value]) else None,  # (which refuses NaN)
                "streamed": streamed(path, ["a", "b"]), "whole": read_whole(path),
                "whole without pyarrow": read_whole(path, monkeypatch)}
    for reader, got in readings.items():
        if got is not None:
            numpy.testing.assert_array_equal(got, expected, err_msg=reader)
            assert numpy.signbit(got[0, 0]) == numpy.signbit(expected[0, 0]), reader


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_a_value_that_is_not_a_number_is_refused_alike_whichever_reader_reads_it(tmp_path, monkeypatch, value,
                                                                                  header):
    """A value one parser took for a number and another refused, refused by every reader on its line, naming its
    column. 0x10: pyarrow types it int64 (hexadecimal) in the bytes it types columns from, then refuses it as a
    float64; streamed, gpunn predict said "not a readable CSV file (In CSV column #0: CSV conversion error to
    double: invalid value '0x10')". Whitespace other than spaces and tabs around a number (a no-break space, an
    em space, a form feed, a unit separator): numpy.loadtxt read it as the number, pyarrow refused it, and
    csvtext.is_number (Python's float) took it for one, so training and predict streamed said only "column 'a' is
    string, not numeric" (as for digits other than ASCII's, Arabic-Indic or full-width). A # (numpy.loadtxt's
    comment mark): read whole, 2#x was 2 and a row starting #2 was left out, unsaid."""
    path = value_file(tmp_path, value, header)
    column = "column 'a'" if header else "value 1 of the line"
    said = f"{path} line {1 + header}: {column}: {value!r} is not a number"
    if header:
        assert refusal(trained_on, path) == said
    assert refusal(streamed, path, ["a", "b"] if header else ["f0", "f1"]) == said
    assert refusal(read_whole, path) == said
    assert refusal(read_whole, path, monkeypatch) == said


@pytest.mark.parametrize("text, problem", [
    ("a,y\n1,x,3\n2,3\n", "line 2: 3 values, where the lines before it have 2"),
    ("a,b,y\n1,x\n2,3,4\n", "line 2: 2 values, where the lines before it have 3"),
    ("a;y\n1,5;2\n1;3\n", "line 2: 2 values, where the lines before it have 1; its first row is one column holding"),
], ids=["wider", "narrower", "semicolons and decimal commas"])
def test_a_first_row_of_another_width_holding_a_word_is_refused_for_its_width_by_every_reader(tmp_path, monkeypatch,
                                                                                             text, problem):
    """pyarrow refuses a row's width before its values; read whole (numpy.loadtxt skips the header row) the word
    in it was named ("line 2: column 'y': 'x' is not a number"), and where it lay past the header's columns (a
    ;-delimited file with decimal commas) gpunn predict failed with IndexError: list index out of range."""
    (tmp_path / "x.csv").write_text(text)
    path = str(tmp_path / "x.csv")
    said = refusal(trained_on, path, "y")
    assert said.startswith(f"{path} {problem}")
    names = text.split("\n")[0].split(",")
    assert refusal(streamed, path, names) == said
    assert refusal(read_whole, path) == said
    assert refusal(read_whole, path, monkeypatch) == said


@pytest.mark.parametrize("text, value", [
    ('1,2\n"3","4\n', "4\n"),
    ('1,2\n3,"4\n"\n5,6\n', "4\n"),
    ('1,2\r\n3,"4\r\n', "4\r\n"),
    ('1,2\r3,"4\r', "4\r"),
], ids=["quote left open at the end", "line end inside quotes", "quote left open, CRLF", "quote left open, CR"])
@pytest.mark.parametrize("header", [True, False])
def test_a_quoted_value_holding_a_line_end_is_refused_on_its_line_by_every_reader(tmp_path, monkeypatch, text, value,
                                                                                   header):
    """A quote never closed before the file's end (or a quoted number holding a line end): training and gpunn predict
    streamed refused the value ("line 3: column 'b': '4\\n' is not a number"), read whole numpy.loadtxt took it
    for 4, unsaid. Every reader now refuses it on its line, saying what a line end in a value means."""
    (tmp_path / "x.csv").write_bytes((("a,b\n" if header else "") + text).encode())
    path = str(tmp_path / "x.csv")
    column = "column 'b'" if header else "value 2 of the line"
    said = (f"{path} line {2 + header}: {column}: {value!r} is not a number (a line end inside quotes: is a quote "
            "left open?)")
    if header:
        assert refusal(trained_on, path) == said
    assert refusal(streamed, path, ["a", "b"] if header else ["f0", "f1"]) == said
    assert refusal(read_whole, path) == said
    assert refusal(read_whole, path, monkeypatch) == said



@pytest.mark.parametrize("text, cause", [
    ('4,"5,6\n7,8,9\n10,11,12\n', "a quote on this line is never closed: the lines after it, to the file's end, were "
                                  "read as one value; close the quote or remove it"),
    ('4,"5,6\n7,8,9"\n10,11,12\n', "a quote on this line closes only on line 4: the lines between were read as one "
                                   "value; is a quote left open?"),
    ('4,"5,6"\n7,8,9\n', None),  # (its quotes close on it: the width alone)
], ids=["never closed", "closed lines on", "closed on its line"])
def test_a_row_whose_width_a_quote_left_open_changed_says_so_in_every_reader(tmp_path, monkeypatch, text, cause):
    """A quote never closed made its row "2 values, where the lines before it have 3", the line right but no word of
    the quote, where a value holding the line end says "is a quote left open?". Every reader now adds the likely
    cause, a quote opened on the row's line and not closed on it."""
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n" + text)
    path = str(tmp_path / "x.csv")
    said = f"{path} line 3: 2 values, where the lines before it have 3" + (f" ({cause})" if cause else "")
    assert refusal(trained_on, path, "c") == said
    assert refusal(streamed, path, ["a", "b"]) == said
    assert refusal(read_whole, path) == said
    assert refusal(read_whole, path, monkeypatch) == said


def test_a_quote_left_open_after_a_value_of_three_lines_is_said_to_be_never_closed(tmp_path):
    """A quoted value over lines 2-4, its middle line without a quote, then a quote opened on line 5 and never closed:
    the row on line 5 is said to hold it (csvtext.left_open carries the quote open over the middle line, which holds
    none, so that line 4's quote closes it and line 5's opens one)."""
    (tmp_path / "x.csv").write_text('a,b,c\n1,"x\ny\nz",3\n4,"5,6\n7,8,9\n')
    path = str(tmp_path / "x.csv")
    said = (f"{path} line 5: 2 values, where the lines before it have 3 (a quote on this line is never closed: the "
            "lines after it, to the file's end, were read as one value; close the quote or remove it)")
    assert refusal(trained_on, path, "c") == said
    assert refusal(streamed, path, ["a", "c"]) == said


def test_a_quote_left_open_on_a_line_the_byte_scans_block_cuts_is_refused(tmp_path):
    """csvtext.csv_first_foreign scans a file read whole in blocks of 16 MiB, carrying the quotes of the line a
    block cuts into the next: a quote opened before the cut and never closed is found, as on a line no block cuts
    (without the carry the next block's part of the line held no quote, and the file read as numbers)."""
    from gpunn.csvtext import csv_first_foreign

    block, line = 1 << 24, 4096
    padding = "1," + " " * (line - 4) + "2\n"  # wide lines: few rows to parse once the scan finds the quote
    cut = '3,"' + "4" * (line - 3)  # the block's last bytes: the quote opens before the cut, its line ends after
    path = tmp_path / "x.csv"
    path.write_text("a,b\n" + padding * (block // line - 1) + cut + "\n5,6\n")
    assert path.stat().st_size > 4 + block and len(padding) == len(cut) == line
    value = "4" * (line - 3) + "\n5,6\n"  # the quoted value runs to the file's end
    assert csv_first_foreign(str(path)) == (f"line {block // line + 1}: column 'b': {value!r} is not a number (a line "
                                            "end inside quotes: is a quote left open?)")


def test_quoted_numbers_are_passed_by_the_byte_scan_without_parsing_a_row(tmp_path, monkeypatch):
    """A file of quoted numbers, each line's quotes in pairs: csv_first_foreign says "" from its byte scan, in a
    fraction of a row parse's time, whatever the line ends; only a line of an odd count of quotes (a line end inside
    quotes) makes it parse the rows."""
    from gpunn import csvtext

    def no_parse(*args):
        raise AssertionError("the rows were parsed")

    monkeypatch.setattr(csvtext, "_data_rows", no_parse)
    path = tmp_path / "x.csv"
    for newline in ("\n", "\r\n", "\r"):
        path.write_text(newline.join(['a,b', '"1","2"', '" 3",4', '5,"6"']), newline="")
        assert csvtext.csv_first_foreign(str(path)) == ""
    path.write_text('a,b\n"1","2\n3",4\n')
    with pytest.raises(AssertionError, match="the rows were parsed"):
        csvtext.csv_first_foreign(str(path))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("mark", ["", "\ufeff"], ids=["", "BOM"])
@pytest.mark.parametrize("header", [True, False])
def test_line_ends_a_utf8_mark_and_quotes_read_alike_by_every_reader(tmp_path, monkeypatch, newline, mark, header):
    """One table written with each line end, a UTF-8 mark (Excel's) or none, quoted values and no line end after
    the last row: the same rows from training, gpunn predict streamed and read whole (with pyarrow or without)."""
    rows = ['1.5,"2"', '" -3e2",4', "+5,-0"]
    (tmp_path / "x.csv").write_text(mark + ("a,y" + newline if header else "") + newline.join(rows), newline="")
    path = str(tmp_path / "x.csv")
    expected = numpy.array([[1.5, 2.0], [-300.0, 4.0], [5.0, -0.0]])
    readings = {"streamed": streamed(path, ["a", "y"] if header else ["f0", "f1"]), "whole": read_whole(path),
                "whole without pyarrow": read_whole(path, monkeypatch)}
    if header:
        readings["training"] = trained_on(path, "y")
    for reader, got in readings.items():
        numpy.testing.assert_array_equal(got, expected, err_msg=reader)
        assert numpy.signbit(got[2, 1]), reader


def test_is_number_takes_what_pyarrow_reads_as_a_float64_and_nothing_else():
    """csvtext.is_number, which words every reader's refusals and checks what numpy.loadtxt read, against pyarrow's
    own float64 parse, over every string of up to three pieces drawn from digits, signs, marks, exponents, the
    words inf and nan, spaces, tabs and other whitespace (a no-break space, a form feed), and digits other than
    ASCII's."""
    import io
    import itertools

    import pyarrow
    import pyarrow.csv

    from gpunn.csvtext import is_number

    options = pyarrow.csv.ConvertOptions(column_types={"b": pyarrow.float64()}, null_values=[],
                                         strings_can_be_null=False)

    def pyarrow_reads(text):
        try:
            return pyarrow.csv.read_csv(io.BytesIO(f"b\n{text}\n".encode()), convert_options=options).num_rows == 1
        except pyarrow.ArrowInvalid:
            return False

    pieces = ["1", "0", ".", "e", "-", "+", "_", " ", "\t", "x", "inf", "nan", "Infinity", "\xa0", "\x0c", "\u0661"]
    texts = ["".join(p) for n in (1, 2, 3) for p in itertools.product(pieces, repeat=n)]
    differ = [text for text in texts if is_number(text) != pyarrow_reads(text)]
    assert not differ and any(map(is_number, texts)), differ[:10]


def test_rows_longer_than_a_streamed_block_are_read_alike_by_training_and_predict(tmp_path, monkeypatch):
    """A wide table whose every row is longer than the block gpunn predict streams in (1 MiB; 4 KiB here): training
    read it (its chunks are cut at line ends), gpunn predict streamed refused it, "bad data from line 4 on
    (straddling object straddles two block boundaries (try to increase block size?))" (in 4 KiB blocks "line 3: 91
    values, where the lines before it have 401"). Its batches are now cut at line ends too (csv_tables.row_ranges)."""
    from gpunn import csvtext
    from gpunn.data import files

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 1 << 12)
    monkeypatch.setattr(files, "CSV_BLOCK", 1 << 12)
    names = [f"c{i}" for i in range(400)] + ["y"]
    X = numpy.arange(4 * 401).reshape(4, 401) / 7
    (tmp_path / "wide.csv").write_text(",".join(names) + "\n" + "".join(",".join(map(repr, row.tolist())) + "\n" for row in X))
    path = str(tmp_path / "wide.csv")
    assert len(repr(X[1, 0]) + ",") * 401 > 1 << 12  # every row over a block
    numpy.testing.assert_array_equal(trained_on(path, "y"), X)
    numpy.testing.assert_array_equal(streamed(path, names), X)
    numpy.testing.assert_array_equal(read_whole(path), X)


def test_a_far_longer_row_past_a_streamed_block_is_read_alike_by_training_and_predict(tmp_path, monkeypatch):
    """A row far longer than the others, past the first block: training reads it (its chunks are cut at line ends),
    gpunn predict streamed refused it, through pyarrow's streaming reader (each row inside a block: "straddling
    object"), and named it for a width it does not have ("line 1502: 2 values, where the lines before it have 3"):
    its batches are now cut at line ends as training's chunks are (csv_tables.row_ranges)."""
    from gpunn.data import files

    monkeypatch.setattr(files, "CSV_BLOCK", 1 << 12)
    rows = ["1,2,3"] * 2000
    rows[1500] = "1,2." + "0" * 9000 + ",3"
    (tmp_path / "x.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    path = str(tmp_path / "x.csv")
    expected = numpy.tile([1.0, 2.0, 3.0], (2000, 1))
    numpy.testing.assert_array_equal(trained_on(path, "y"), expected)
    numpy.testing.assert_array_equal(streamed(path, ["a", "b", "y"]), expected)
    numpy.testing.assert_array_equal(read_whole(path), expected)


def test_a_run_of_empty_lines_longer_than_a_streamed_block_is_predicted_past(tmp_path, monkeypatch):
    """The readers skip empty lines, so a block of gpunn predict's stream (1 MiB; 4 KiB here) that holds nothing else
    gives no rows. None is predicted for it (a model refuses an empty X: "X is empty: shape (0, 2)"), and the rows
    after it are predicted as where the file is read whole."""
    from gpunn.data import files

    monkeypatch.setattr(files, "CSV_BLOCK", 1 << 12)
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n" + "\n" * 10_000 + "5,6\n")
    model = gpunn.MLP([2, 3, 1], device="cpu", dtype="float64", seed=0)
    assert files.predict_file(model, path, tmp_path / "p.npy", features=["a", "b"]) == 3
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), model.predict(read_whole(str(path))))


@pytest.mark.parametrize("features", ["2020,2021", "x,1_000"], ids=["years", "a number to Python"])
def test_a_header_of_numbers_trained_on_is_a_header_to_gpunn_predict(tmp_path, capsys, features):
    """Training reads a CSV file's first row as its header whatever it holds; gpunn predict took a first row holding
    a number for data, so a model trained on columns named 2020 and 2021 could not predict from its own file (the
    row of names read as values: "line 1: value 3 of the line: 'y' is not a number"), with --features neither
    ("--features names columns, and x.csv has no header row"). A first row that holds every column the model (or
    --features) names is a header row to gpunn predict too. 1_000 is no number to any reader (pyarrow's rule:
    csvtext.is_number), where Python's float took it."""
    a, b = features.split(",")
    (tmp_path / "x.csv").write_text(f"{features},y\n" + "".join(f"{n % 5}.5,{n % 3},{n % 4}\n" for n in range(300)))
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "x.csv"), "--target", "y", "--hidden", "4", "--epochs", "1",
                 "--batch-size", "100", "--device", "cpu", "--quiet", "--save", model]) == 0
    X = numpy.column_stack([numpy.arange(300) % 5 + 0.5, numpy.arange(300) % 3])
    with read_by_position():  # (X holds the model's columns, in its order)
        expected = gpunn.load(model, device="cpu").predict(X)
    for options in ([], ["--features", f"{a},{b}"]):
        assert main(["predict", model, str(tmp_path / "x.csv"), str(tmp_path / "p.npy"), "--device", "cpu",
                     *options]) == 0, options
        numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), expected)
    # a file of the features alone: its first row is every column, all the model's (audit38b c02: a strict subset)
    (tmp_path / "f.csv").write_text(f"{features}\n" + "".join(f"{n % 5}.5,{n % 3}\n" for n in range(300)))
    assert main(["predict", model, str(tmp_path / "f.csv"), str(tmp_path / "p.npy"), "--device", "cpu"]) == 0
    numpy.testing.assert_array_equal(numpy.load(tmp_path / "p.npy"), expected)
    capsys.readouterr()
    # a NaN in such a file is named by its column's name (audit38b c31: csv_names not told the columns read none)
    (tmp_path / "f.csv").write_text(f"{features}\n0.5,1\n1.5,nan\n")
    assert main(["predict", model, str(tmp_path / "f.csv"), str(tmp_path / "p.npy"), "--device", "cpu"]) == 2
    assert f"line 3: column '{b}': 'nan' is NaN" in capsys.readouterr().err


@pytest.mark.parametrize("value, problem", [
    ("", "an empty value (a missing number) is not a number; clean or impute it first"),
    ('""', "an empty value (a missing number) is not a number; clean or impute it first"),
    ("NA", "'NA' is not a number; clean or impute it first"),
    ("null", "'null' is not a number; clean or impute it first"),
], ids=["empty", "quoted empty", "NA", "null"])
@pytest.mark.parametrize("column", ["a", "b"], ids=["a feature", "the target"])
def test_a_missing_value_is_refused_in_one_wording_by_training_and_predict(tmp_path, monkeypatch, capsys, value,
                                                                           problem, column):
    """pyarrow reads "", NA, null... as a missing value (then NaN), numpy.loadtxt refuses them: gpunn predict says
    so in one wording read whole or streamed ("line 3: column 'a': 'NA' is not a number"), and training said "1
    NaN or infinite features value(s), the first at line 3 (column 'a'); clean or impute them before training" of
    a file that holds no NaN. Now in predict's words (a NaN written nan stays one)."""
    rows = [["1.5", "2"], ["2.5", "3"], ["3.5", "4"]]
    rows[1][column == "b"] = value
    (tmp_path / "x.csv").write_text("a,b\n" + "".join(",".join(row) + "\n" for row in rows))
    path = str(tmp_path / "x.csv")
    said = f"{path} line 3: column '{column}': {problem}"
    with pytest.raises(DataError) as caught:
        trained_on(path, "b")
    assert str(caught.value) == said
    rows[1][column == "b"] = "nan"
    (tmp_path / "nan.csv").write_text("a,b\n" + "".join(",".join(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=rf"nan\.csv line 3: column '{column}': 'nan' is NaN; clean or impute it "
                                        "first$"):
        trained_on(str(tmp_path / "nan.csv"), "b")  # a NaN written so is one
    if column == "a":  # gpunn predict reads features only
        assert predict_refusals(tmp_path, monkeypatch, capsys, path) == [f"gpunn predict: error: IN {said}; OUT not written"] * 2


# ---- the line of a refused row's fallback -----------------------------------------------------------------
def test_rows_refused_where_no_single_row_is_named_are_placed_on_one_line_by_training_and_predict(tmp_path,
                                                                                                 monkeypatch, capsys):
    """Where first_refused names no row (the rows read again one by one all read), training and gpunn predict say
    "bad data from line N on (...)": training with N the line of the chunk's first data row, predict streamed the
    line of its batch's first byte, an empty line here (line 2, where the rows begin on line 4). One rule now,
    csv_tables.refused_rows: the first data row's line, empty lines skipped, as every reader skips them."""
    from gpunn import csvtext
    from gpunn.data import csv_tables

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 1 << 4)  # the columns typed from the first rows: 'oops' past them
    path = tmp_path / "x.csv"
    path.write_text("a,b\n\n\n1.5,2\n" + "2.5,3\n" * 20 + "oops,4\n")
    monkeypatch.setattr(csv_tables, "first_refused", lambda *args, **kwargs: (None, ""))
    said = refusal(trained_on, str(path), block_size=1 << 20)  # one chunk, as predict reads it in one batch
    assert said.startswith(f"{path}: bad data from line 4 on ("), said
    assert refusal(streamed, str(path), ["a"]) == said
    assert predict_refusals(tmp_path, monkeypatch, capsys, str(path))[1] == f"gpunn predict: error: IN {said}; OUT not written"



def test_rows_refused_where_no_single_row_is_named_in_a_later_chunk_are_placed_at_that_chunks_first_line(
        tmp_path, monkeypatch):
    """As above, in a file of several chunks: "bad data from line N on" names the first line of the chunk refused
    (bytes 126-138 of 139 in chunks of 64: line 24), not the file's first data row (line 4)."""
    from gpunn import csvtext
    from gpunn.data import csv_tables

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 1 << 4)
    path = tmp_path / "x.csv"
    path.write_text("a,b\n\n\n1.5,2\n" + "2.5,3\n" * 20 + "oops,4\n")  # 2.5,3 on lines 5-24, oops on 25
    monkeypatch.setattr(csv_tables, "first_refused", lambda *args, **kwargs: (None, ""))
    said = refusal(trained_on, str(path), block_size=1 << 6)
    assert said.startswith(f"{path}: bad data from line 24 on ("), said

# ---- a file that is not CSV text --------------------------------------------------------------------------
@pytest.mark.parametrize("content, what", [
    (b"a,b\n1\x00,2\n3,4\n", r"not a CSV file \(binary, not text\)"),
    (b"\x93NUMPY\x01\x00rest,of,it\n", r"not a CSV file \(a \.npy array, not text\)"),
    (b"PK\x03\x04a,b\n1,2\n", r"not a CSV file \(an \.npz/zip archive, not text\)"),
    (b"\x1f\x8b\x08\x00a,b\n1,2\n", r"gzip-compressed; gpunn reads a CSV file uncompressed"),
    ("é,b\n1,2\n".encode("cp1252"), r"text, but not UTF-8"),
], ids=["NUL byte", "npy", "zip", "gzip", "cp1252"])
def test_a_file_named_csv_that_is_not_csv_text_is_refused_alike_by_training_and_predict_streamed(tmp_path, content,
                                                                                                   what):
    """Training checks the file's kind before reading it (gpunn.data.csv); gpunn predict's streamed read did not:
    a NUL byte (a binary file given as CSV) was refused at its value ("line 2: column 'a': '1\\x00' is not a
    number"), an .npy array at its header ("not a readable CSV file"). One check, one wording, now."""
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    said = refusal(trained_on, str(path))
    assert said.startswith(f"{path}: ") and re.search(what, said), said
    assert refusal(streamed, str(path), ["a"]) == said


@pytest.mark.parametrize("content", [b"a,b\n1\x00,2\n", b"\x01\x02\xff\xfebinary" * 10], ids=["NUL byte", "control bytes"])
def test_a_binary_file_named_csv_is_refused_alike_by_gpunn_predict_read_whole(tmp_path, monkeypatch, capsys, content):
    """gpunn predict reading a small file whole (by its bytes: an .npy array or CSV text) said "IN x.csv is neither
    a .npy array nor a CSV file" of a binary file named .csv, which training and the streamed read call "not a CSV
    file (binary, not text)": those words now. One not named .csv says it is no .npy array."""
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    said = refusal(trained_on, str(path))
    assert said == f"{path}: not a CSV file (binary, not text)"
    assert refusal(read_whole, str(path)) == said
    assert predict_refusals(tmp_path, monkeypatch, capsys, str(path)) == [f"gpunn predict: error: IN {said}; OUT not written"] * 2
    (tmp_path / "x.dat").write_bytes(content)
    assert refusal(read_whole, str(tmp_path / "x.dat")) == f"{tmp_path / 'x.dat'}: not a .npy array (no .npy header), and binary"



@pytest.mark.parametrize("content", [b"1\x00,2\n3,4\n", b"\x01\x02\xff\xfebinary" * 10, b"1,\xe9\n2,3\n"],
                         ids=["NUL byte", "control bytes", "cp1252"])
def test_a_file_named_csv_that_is_not_csv_text_is_refused_for_it_by_gpunn_predict_with_features(tmp_path, capsys,
                                                                                                content):
    """gpunn predict --features a,b of a binary file named .csv whose first line holds a number said "--features names
    columns, and x.csv has no header row": the header check read the bytes as CSV before anything asked whether they
    were text. It is refused as training and the reads without --features refuse it now, for what it is."""
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    said = refusal(trained_on, str(path))
    model = str(tmp_path / "m.npz")
    gpunn.save(model, gpunn.MLP([2, 1], seed=0, device="cpu"))
    assert main(["predict", model, str(path), str(tmp_path / "p.npy"), "--features", "a,b"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"gpunn predict: error: IN {said}; OUT not written"


# ---- a NaN or infinite number ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, what", [
    ("nan", "NaN"),
    ("-inf", "infinite"),
    ("Infinity", "infinite"),
    ("1e999", "infinite"),
    ("1e39", "infinite in float32 (past its largest value)"),
], ids=["nan", "-inf", "Infinity", "1e999", "past float32"])
@pytest.mark.parametrize("header", [True, False])
def test_a_nan_or_infinite_number_is_refused_in_one_wording_by_training_and_predict(tmp_path, monkeypatch, capsys,
                                                                                     value, what, header):
    """Training said "x.csv (lines 2-4): 1 NaN or infinite features value(s), the first at line 3 (column 'a');
    clean or impute them before training", gpunn predict "IN x.csv: NaN or infinite values after conversion to
    float32, the first at line 3 (column 'a'); clean or impute them first": one wording now (csvtext.not_finite),
    with the file, the line, the column and the value, read whole or streamed (a file without a header row only
    by predict: training needs its target's name)."""
    rows = [["1.5", "2"], ["2.5", "3"], ["3.5", "4"]]
    rows[1][0] = value
    (tmp_path / "x.csv").write_text(("a,b\n" if header else "") + "".join(",".join(row) + "\n" for row in rows))
    path = str(tmp_path / "x.csv")
    column = "column 'a'" if header else "value 1 of the line"
    said = f"{path} line {2 + header}: {column}: {value!r} is {what}; clean or impute it first"
    if header:
        source = data.csv(path, "b", shuffle=False).bind("cpu", "float32")
        assert refusal(lambda: list(source.ordered_windows())) == said
    assert predict_refusals(tmp_path, monkeypatch, capsys, path) == [f"gpunn predict: error: IN {said}; OUT not written"] * 2


def test_a_header_ending_in_a_comma_is_named_the_cause_only_of_rows_one_value_short():
    """A header 'a,b,c,' names 4 columns, the last without a name: the comma is the likely cause of rows of 3 values,
    not of rows of 2, which removing it would not mend (audit35b's X22: it was said for any width)."""
    from gpunn.csvtext import wrong_width

    header = ["a", "b", "c", ""]
    assert wrong_width(3, 4, header) == ("3 values, where the header row names 4 columns, its last without a name: "
                                         "the header line ends in a comma (remove it)")
    assert wrong_width(2, 4, header) == ("2 values, where the header row names 4 columns, column 4 without a name (an "
                                         "empty name between two commas, or a comma at the line's end)")


def test_a_header_without_a_name_is_said_in_its_files_delimiter():
    """A ";" or tab-delimited file's empty names are between two of its delimiters, not two commas."""
    from gpunn.csvtext import wrong_width

    assert wrong_width(2, 4, ["a", "", "c", ""], ";") == (
        "2 values, where the header row names 4 columns, columns 2, 4 without a name (an empty name between two "
        "';'s, or a ';' at the line's end)")
    assert wrong_width(2, 3, ["a", "", "c"], "\t") == (
        "2 values, where the header row names 3 columns, column 2 without a name (an empty name between two tabs, or "
        "a tab at the line's end)")


@pytest.mark.parametrize("text, rows, line", [("a,b\n", 0, 2), ("a,b\r\n", 0, 2), ("a,b\r", 0, 2), ("a,b", 0, 2),
                                             ("a,b\n1,2\n", 1, 3), ("a,b\n\n", 0, 2)])
def test_the_row_past_a_csv_files_last_is_on_the_line_after_it(tmp_path, text, rows, line):
    """csv_line of the data row after the last (its index: the file's count of data rows): the line after the last
    row's (or the header's), not one more (a header row alone, with its line end, said line 3)."""
    from gpunn.csvtext import csv_line

    path = tmp_path / "h.csv"
    path.write_bytes(text.encode())
    assert csv_line(path, rows) == line


def test_a_header_quote_open_past_the_limit_ends_the_header_at_its_first_line_end():
    """A header whose quote is still open ``limit`` bytes on ends at its first line end (pyarrow then says what is
    wrong), also where the bytes read are exactly ``limit``; without one in those bytes, at the file's end."""
    import io

    from gpunn.csvtext import csv_header_end

    text = b'"a\nb,' + b"x" * (1 << 17) + b"\n1,2\n"  # read 64 KiB at a time: exactly the limit, then no more
    assert csv_header_end(io.BytesIO(text), len(text), limit=1 << 16) == 3
    text = b'"a,b' + b"x" * 100 + b"\n1,2\n"  # a quote left open to the file's end, under the limit
    assert csv_header_end(io.BytesIO(text), len(text), limit=1 << 16) == len(text)


def test_the_typing_block_is_twice_the_header_and_first_row_where_they_pass_half_the_csv_block(tmp_path, monkeypatch):
    """csvtext.typing_block: CSV_BLOCK (16 bytes here), or twice the bytes to the second data row's first where that is
    more (a wide table's first row); for a header row alone, twice the file."""
    from gpunn import csvtext

    monkeypatch.setattr(csvtext, "CSV_BLOCK", 16)
    (tmp_path / "w.csv").write_text("a,b\n1.5,2.5\n3,4\n")  # the second data row at byte 12
    (tmp_path / "h.csv").write_text("a,b,c,d,e,f,g\n")  # 14 bytes, no data row
    (tmp_path / "n.csv").write_text("a,b\n1,2\n3,4\n")  # the second data row at byte 8: CSV_BLOCK is more
    assert [csvtext.typing_block(tmp_path / name) for name in ("w.csv", "h.csv", "n.csv")] == [24, 28, 16]


def test_the_delimiter_hint_names_excel_for_semicolons_only_and_spaces_only_between_two_numbers(tmp_path):
    """delimiter_hint: a tab-delimited file is told to pass the tab, with no word of Excel (whose CSV where the
    decimal mark is a comma has semicolons); a file of one column of numbers, one number a line, gets no hint of
    numbers between spaces, which two numbers on its first line get."""
    from gpunn.csvtext import delimiter_hint

    (tmp_path / "t.csv").write_text("a\tb\n1\t2\n")
    (tmp_path / "one.csv").write_text("1.5\n2.5\n")
    (tmp_path / "two.csv").write_text("1.5 2.5\n3 4\n")
    assert delimiter_hint(tmp_path / "t.csv") == (
        "; its first row is one column holding tabs: the file looks tab-delimited: pass delimiter='\\t' to "
        "gpunn.data.csv, or save it comma-separated (gpunn train --data and gpunn predict read commas only)")
    assert delimiter_hint(tmp_path / "one.csv") == ""
    assert delimiter_hint(tmp_path / "two.csv").startswith("; its first row is one column holding numbers separated "
                                                           "by spaces, as numpy.savetxt writes them by default")


@pytest.mark.parametrize("text", ["a,b", "a,b\n"], ids=["no line end", "line end"])
def test_a_header_row_alone_read_whole_has_no_rows_with_or_without_its_line_end(tmp_path, text):
    """gpunn predict's whole read (numpy.loadtxt past csvtext.header_lines' lines) of a file holding a header row
    alone: no rows, whether or not the header ends in a line end (without one, loadtxt is still to skip one line)."""
    from gpunn.preflight import PreflightError, read_matrix

    (tmp_path / "h.csv").write_text(text)
    with pytest.raises(PreflightError, match=r" has no rows \(a header line only\)$"):
        read_matrix(str(tmp_path / "h.csv"))


def test_a_boolean_with_a_space_before_it_is_refused_as_a_stray_value_not_an_id_column(tmp_path):
    """' true' opening a column of true/false: refused as not a number, with no hint to leave the column out of the
    default features (csvtext.first_value_is_text: a boolean or a missing mark with spaces around it is no text
    column's first value, as an id's is)."""
    path = tmp_path / "b.csv"
    path.write_text("a,b,y\n true,1,2\nfalse,3,4\n")
    assert refusal(data.csv, path, "y", device="cpu") == f"{path} line 2: column 'a': ' true' is not a number"


def test_an_infinite_value_written_with_spaces_around_it_is_shown_as_written(tmp_path):
    """A field " inf " is shown with its spaces, as the file holds it (audit41a c34: the field shown stripped survived)."""
    (tmp_path / "s.csv").write_text("a,b\n1.5,2\n inf ,3\n3.5,4\n")
    with pytest.raises(DataError, match=r"s\.csv line 3: column 'a': ' inf ' is infinite; clean or impute it first$"):
        trained_on(str(tmp_path / "s.csv"), "b")
