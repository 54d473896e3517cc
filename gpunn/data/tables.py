"""Parquet and CSV tables streamed through pyarrow (an optional extra: ``pip install "gpunn[data]"``). Every name is
importable from here; a module each job:

- :mod:`gpunn.data.table_columns`: the columns picked by name for X and Y (its docstring gives the rule), refused
  with what to do where they are missing or not numbers, and copied into a host matrix;
- :mod:`gpunn.data.parquet_tables`: :class:`ParquetSource`, a Parquet file or a directory of them;
- :mod:`gpunn.data.csv_tables`: :class:`CsvSource`, and how every gpunn reader reads a CSV file's rows.

A name imported here is a second binding of it: to patch one for the code that uses it, patch it in the module that
code is in (``gpunn.data.csv_tables.read_range`` for the CSV readers').
"""
from .csv_tables import (CACHE_ENV, QUOTED_MOST, _QUOTE_OR_LINE_END, CsvSource, _last_row_end, _line_end, _row_end,
                         cache_directory, check_csv_kind, csv_column_types, csv_schema, first_refused, parse_rows,
                         read_range, refused_in_first_block, refused_rows, row_range_buffers, row_ranges)
from .parquet_tables import (ParquetSource, _as_stored, _EmptySlice, _held_instead, _RowGroupCursor, open_parquet,
                             parquet_cell)
from .table_columns import (MissingColumns, NoTarget, _by_default, _float64_values, _misspelt, _names, _other_case,
                            _pandas_index_columns, _spaced, _unnamed_column, _validity, _with_comma, close_column,
                            columns_are, copy_columns, leave_out_hint, listed_columns, pick_columns,
                            pick_in_every_file, pyarrow_module)
