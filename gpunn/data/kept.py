"""The columns of a prediction run's input that its output keeps beside the predictions (gpunn predict --keep): an
id, a timestamp, the true target. They are read in a pass of their own, in file order, the rows of each chunk of
predictions taken as it is written, so any reader of the input (predict_file's, a source's for --score) is matched
row for row.

A CSV file's kept columns are read as text, as written (an id 007 stays 007, a date is not re-formatted); a
Parquet file's keep their type."""
from __future__ import annotations

import contextlib
import os

from ..checks import PARQUET_SUFFIXES
from ..csvtext import CSV_BLOCK
from ..hints import shell_word
from .base import DataError


class KeptColumns:
    """The columns ``names`` of the table file ``path`` (a CSV file with a header row naming them, a Parquet file or
    directory), ``take(rows)`` at a time: a pyarrow Table of the next ``rows`` rows. ``fields``: their pyarrow
    fields, as OUT's schema takes them. Refused here, before anything is written, where the file lacks one."""

    def __init__(self, path, names):
        from .table_columns import listed_columns, pyarrow_module

        pyarrow = self._pa = pyarrow_module()
        self.path, self.names = os.fspath(path), list(names)
        if os.path.isdir(self.path) or self.path.lower().endswith(PARQUET_SUFFIXES):
            from .parquet_tables import ParquetSource, open_parquet

            files, self.fields = ParquetSource.list_files(self.path), None
            for name in files:  # (each file's schema: a directory's files may differ)
                with contextlib.closing(open_parquet(name)) as pf:
                    schema = pf.schema_arrow
                self._check(name, listed_columns(schema), schema.names)
                fields = [schema.field(n).remove_metadata() for n in self.names]
                self._check_types(files[0], self.fields, name, fields)
                self.fields = self.fields or fields
            batches = self._parquet_batches(files)
        else:
            from ..csvtext import csv_has_header
            from .csv_tables import check_csv_kind, csv_schema

            check_csv_kind(self.path)
            if not csv_has_header(self.path, columns=self.names):
                raise DataError(f"{self.path}: no header row naming {', '.join(map(repr, self.names))} (--keep copies "
                                "columns by their names in the header)")
            schema = csv_schema(self.path, True)
            self._check(self.path, listed_columns(schema), schema.names)
            self.fields = [pyarrow.field(n, pyarrow.string()) for n in self.names]
            batches = self._csv_batches(schema.names)
        self._batches, self._held, self._at = batches, None, 0

    def _check(self, file, listed, names) -> None:
        missing = [n for n in self.names if n not in names]
        if missing:
            from .table_columns import MissingColumns, columns_are

            raise MissingColumns(f"{file}: no column{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}; "
                                 f"{columns_are(listed)}", missing, listed)

    @staticmethod
    def _check_types(first, fields, name, its):
        """A kept column of one type in every file of a directory: OUT's column has one."""
        for f, g in zip(fields or its, its):
            if f.type != g.type:
                raise DataError(f"{name}: column {f.name!r} is {g.type}, and {f.type} in {shell_word(first)}: a column "
                                "--keep copies is of one type in every file")

    def _parquet_batches(self, files):
        from .parquet_tables import open_parquet

        for name in files:
            with contextlib.closing(open_parquet(name)) as pf:
                try:
                    yield from pf.iter_batches(batch_size=65536, columns=self.names)
                except Exception as exc:
                    raise DataError(f"{name}: could not be read ({type(exc).__name__}: {exc})") from None

    def _csv_batches(self, columns):
        from ..csvtext import data_start
        from .csv_tables import parse_rows, row_range_buffers

        types = {n: self._pa.string() for n in self.names}
        with open(self.path, "rb") as fh:  # pieces of whole rows, as predict_file's and a CsvSource's reads cut them
            for _, buffer in row_range_buffers(fh, self.path, data_start(fh, True), CSV_BLOCK):
                yield from parse_rows(buffer, columns, self.names, types).to_batches()

    def take(self, rows):
        """The next ``rows`` rows of the kept columns, a pyarrow Table."""
        parts, need = [], rows
        while need:
            if self._held is None or self._at == self._held.num_rows:
                self._held, self._at = next(self._batches, None), 0
                if self._held is None:
                    raise DataError(f"{self.path}: fewer rows for --keep's columns than predicted (the file changed "
                                    "while read?)")
                continue
            part = self._held.slice(self._at, need)
            self._at += part.num_rows
            need -= part.num_rows
            parts.append(part)
        return self._pa.Table.from_batches(parts, self._pa.schema(self.fields))

    def close(self):
        self._batches.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
