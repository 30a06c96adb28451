"""The CSV format's Arrow mode: an Arrow table (or a polars frame, as Arrow) written as CSV
and read back with its exact Arrow types, never through pandas.

The sidecar records the table's exact schema (Arrow IPC, base64). What a CSV field holds:
text quoted (an empty string is ``""``), a null an empty, unquoted field, numbers,
booleans, dates, times and decimals as pyarrow's writer spells them, tz-aware timestamps
in UTC (``...Z``; the zone comes back from the schema), durations as integer counts of
their unit. Types whose CSV spelling pyarrow reads back differently are written as a
type it reads exactly and cast back: ``string_view`` as text, dictionaries
(polars ``Categorical`` and ``Enum``) as their values. Nested types (lists, structs,
maps), binary data, intervals, ``float16`` and ``decimal256`` are refused with
:class:`~prefect_ds.UnsupportedFrameError` naming the column: CSV has no spelling for
them that reads back exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds._storage.arrow import restore_schema

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")


def stored_type(field: pa.Field) -> pa.DataType:
    """The type a column is written and parsed as (module doc), or a refusal."""
    kind = field.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string_view(kind):
        return pa.large_string()
    if pa.types.is_duration(kind):
        return pa.int64()
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, tz="UTC")
    if (pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)
            or pa.types.is_float32(kind) or pa.types.is_float64(kind)
            or pa.types.is_decimal128(kind) or pa.types.is_date(kind)
            or pa.types.is_time(kind) or pa.types.is_timestamp(kind)
            or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return kind
    raise UnsupportedFrameError(
        f"column {field.name!r} is {field.type}, which the csv format cannot store so that it "
        f"reads back exactly (nested types, binary data, intervals, float16 and decimal256 "
        f"have no CSV spelling pyarrow reads back); store this frame as parquet or "
        f"feather, or cast the column first"
    )


def encode(table: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
    """The table to write, and the sidecar's record of how to read it back."""
    names = table.column_names
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise UnsupportedFrameError(
            f"the csv format needs unique column names, and {dupes[:5]!r} occur more than "
            f"once; rename them first")
    columns = []
    newlines = False
    for field, column in zip(table.schema, table.columns, strict=True):
        target = stored_type(field)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not column.type.equals(target):
            column = column.cast(target)
        if pa.types.is_string(target) or pa.types.is_large_string(target):
            newlines = newlines or bool(pc.any(pc.match_substring_regex(
                column, "[\r\n]")).as_py() or False)
        columns.append(column)
    written = pa.Table.from_arrays(columns, names=names) if columns else table
    schema = table.schema.remove_metadata().serialize().to_pybytes()
    return written, {
        "mode": "arrow",
        "arrow_schema": base64.b64encode(schema).decode(),
        "csv_columns": list(names),
        "rows": table.num_rows,
        "newlines_in_values": newlines,
    }


def schema_of(doc: Mapping[str, Any]) -> pa.Schema:
    """The exact schema the sidecar records."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(doc["arrow_schema"])))


def column_types(doc: Mapping[str, Any]) -> dict[str, pa.DataType]:
    """What to parse each column as (nothing is inferred)."""
    return {field.name: stored_type(field) for field in schema_of(doc)}


def decode(table: pa.Table, doc: Mapping[str, Any]) -> pa.Table:
    """The parsed table with its exact recorded types (zones, dictionaries, durations)."""
    return restore_schema(table, schema_of(doc))
