"""Refusals: frames a SQL table cannot hold exactly, found before any SQL is sent.

Each check names the table, the column and the reason, and says what to do instead;
the error is :class:`~prefect_ds.UnsupportedFrameError` and nothing has been written, so
the previous table is untouched. :func:`check_frame` looks at the pandas frame (dtypes
and values Arrow or the database would mangle or reject); :func:`check_table` at the
table ready for the database (limits of the database itself).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds.formats.sql.names import SqlLocation

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy("numpy")
    pd = lazy("pandas")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

MAX_COLUMNS = {"sqlite": 2000, "postgresql": 1600}  # SQLITE_MAX_COLUMN; MaxHeapAttributeNumber
_DATABASE = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _refuse(loc: SqlLocation, what: str, fix: str) -> UnsupportedFrameError:
    return UnsupportedFrameError(
        f"table {loc.qualified!r}: {what}. Nothing was written. {fix}"
    )


def _parts(df: pd.DataFrame) -> Iterator[tuple[str, Hashable, pd.Series[Any] | pd.Index]]:
    """Every column and every index level, with how to name it in a message."""
    for i, name in enumerate(df.columns):
        yield "column", name, df.iloc[:, i]
    if not isinstance(df.index, pd.RangeIndex):
        for level in range(df.index.nlevels):
            values = df.index.get_level_values(level)
            yield "index level", values.name if values.name is not None else level, values


def _bad_text(value: str) -> bool:
    """A lone surrogate: a string no UTF-8 database (or Arrow) can store."""
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_missing(value: object) -> bool:
    return (value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, float) and value != value))


def _check_labels(df: pd.DataFrame, loc: SqlLocation) -> None:
    names = [*df.columns, *(df.index.names if not isinstance(df.index, pd.RangeIndex) else [])]
    for name in names:
        if isinstance(name, str) and _bad_text(name):
            raise _refuse(
                loc, f"the label {name!r} holds a lone surrogate, which is not text a "
                f"database can store", "Rename it, e.g. with .encode('utf-8', "
                "'surrogatepass').decode('utf-8', 'replace')")


def _check_label_kinds(df: pd.DataFrame, loc: SqlLocation) -> None:
    """Column labels and index names the table's metadata would not bring back as they are.

    Categorical and period labels could not be read back at all; bool labels would come
    back as ``[True, True]``, tuples as strings, an index named ``0`` as ``'0'``.
    """
    labels = df.columns
    fix = "Make them strings or numbers first, e.g. df.columns = df.columns.map(str)"
    if isinstance(labels, pd.CategoricalIndex | pd.PeriodIndex | pd.IntervalIndex):
        raise _refuse(loc, f"the column labels are a {type(labels).__name__}, which the table "
                      f"cannot give back", fix)
    if labels.dtype == bool or any(isinstance(c, bool | np.bool_ | tuple) for c in labels):
        raise _refuse(loc, "the column labels hold bools or tuples, which would not read back "
                      "as they were", fix)
    if not isinstance(df.index, pd.RangeIndex):
        odd = [n for n in df.index.names if n is not None and not isinstance(n, str)]
        if odd:
            raise _refuse(loc, f"the index name {odd[0]!r} is not a string; it would read "
                          f"back as {str(odd[0])!r}",
                          "Name the index with a string, e.g. df.index.name = 'key'")


def _check_values(kind: str, name: Hashable, values: pd.Series[Any] | pd.Index,
                  loc: SqlLocation) -> None:
    """Object (and Python-backed string) values: text only, and valid text."""
    dtype = values.dtype
    python_strings = isinstance(dtype, pd.StringDtype) and dtype.storage == "python"
    if not (python_strings or (isinstance(dtype, np.dtype) and dtype.kind == "O")):
        return
    present = [v for v in values if not _is_missing(v)]
    odd = next((v for v in present if not isinstance(v, str)), None)
    if odd is not None:
        raise _refuse(
            loc, f"{kind} {name!r} is an object {kind} holding {type(odd).__name__} "
            f"values such as {odd!r}; the sql format stores object columns of strings "
            f"only (mixed values would come back as their text, or not at all)",
            f"Convert it first, e.g. df[{name!r}] = df[{name!r}].astype(str), or use the "
            f"parquet format" if kind == "column" else
            "Convert the index first, e.g. df.index = df.index.map(str), or reset_index()",
        )
    bad = next((v for v in present if _bad_text(v)), None)
    if bad is not None:
        raise _refuse(
            loc, f"{kind} {name!r} holds the string {bad!r} with a lone surrogate, which is "
            f"not text a database can store",
            "Clean it first, e.g. s.str.encode('utf-8', 'replace').str.decode('utf-8')",
        )


def check_frame(df: pd.DataFrame, loc: SqlLocation) -> None:
    """Refuse what a table cannot hold; run before the frame is converted or sent."""
    if isinstance(df.columns, pd.MultiIndex):
        raise _refuse(loc, "a DataFrame with MultiIndex columns cannot be a SQL table",
                      "Flatten the columns first, e.g. "
                      "df.columns = ['_'.join(map(str, c)) for c in df.columns]")
    if df.columns.has_duplicates:
        dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        raise _refuse(loc, f"duplicate column names {dupes} cannot be a SQL table",
                      "Rename them")
    _check_labels(df, loc)
    _check_label_kinds(df, loc)
    for kind, name, values in _parts(df):
        dtype = values.dtype
        if isinstance(dtype, pd.IntervalDtype):
            raise _refuse(
                loc, f"{kind} {name!r} holds intervals ({dtype}), which no SQL column type "
                f"keeps", "Store its bounds as two columns (s.array.left, s.array.right) "
                "or use the parquet format")
        if isinstance(dtype, pd.PeriodDtype):
            raise _refuse(
                loc, f"{kind} {name!r} holds periods ({dtype}), which no SQL column type "
                f"keeps", "Store s.dt.start_time (or s.astype(str)), or use the parquet "
                "format")
        if dtype.kind == "c":
            raise _refuse(
                loc, f"{kind} {name!r} holds complex numbers ({dtype}), which no SQL column "
                f"type keeps", "Store the real and imaginary parts as two columns "
                "(np.real(s), np.imag(s))")
        if (pd.api.types.is_unsigned_integer_dtype(dtype) and len(values)
                and values.max() > 2**63 - 1):
            raise _refuse(
                loc, f"{kind} {name!r} holds unsigned integers above 2**63-1, which no SQL "
                f"BIGINT keeps", f"Store it as strings first (df[{name!r}].astype(str)), "
                "or use the parquet format")
        _check_values(kind, name, values, loc)


def check_table(table: pa.Table, loc: SqlLocation) -> None:
    """Refuse what ``loc``'s database would reject halfway: run on the prepared table."""
    limit = MAX_COLUMNS.get(loc.backend)
    database = _DATABASE.get(loc.backend, loc.backend)
    if limit is not None and table.num_columns > limit:
        raise _refuse(
            loc, f"the frame needs {table.num_columns:,} table columns (index levels "
            f"included), but a {database} table holds at most {limit:,}",
            "Split it into several tables, store it long rather than wide (df.melt()), or "
            "use the parquet format")
    for name, field, column in zip(table.column_names, table.schema, table.columns,
                                   strict=True):
        kind = field.type
        if pa.types.is_nested(kind) or isinstance(kind, pa.ExtensionType):
            raise _refuse(
                loc, f"column {name!r} has Arrow type {kind}, which the sql format does "
                f"not store", "Convert it to plain columns (numbers, strings, timestamps) "
                "or use the parquet format")
        if (loc.backend == "postgresql" and pa.types.is_string(kind)
                and pc.any(pc.match_substring(column, "\x00")).as_py()):
            raise _refuse(
                loc, f"column {name!r} holds a string with a NUL character ('\\x00'), which "
                f"PostgreSQL text cannot hold",
                f"Remove it first, e.g. df[{name!r}] = df[{name!r}].str.replace('\\x00', '')")
