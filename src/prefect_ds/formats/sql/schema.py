"""Exact pandas dtypes through SQL: what to store, and how to undo what the database lost.

SQL keeps values but not pandas' types: SQLite has no bool or timestamp, no database has
categoricals, PostgreSQL keeps microseconds and converts time zones to UTC. So a write
records the frame's Arrow schema (with pyarrow's pandas metadata: index, extension
dtypes, time zones, units) and every categorical's categories in a metadata row, and a
read casts each column back to it. Conversions applied before storing:

* categoricals are stored as their values; the categories (and ``ordered``) are restored;
* timestamps: SQLite stores ISO-8601 text (UTC with ``Z`` when tz-aware) written in the
  column's own unit (all nine fractional digits for ``ns``), so it is exact, also outside
  the years 1678-2261 for ``s``/``ms``/``us`` columns; PostgreSQL stores microseconds, so
  nanoseconds are floored to the microsecond (in UTC, so an ambiguous or missing local
  wall time never matters); the unit and time zone are restored;
* timedeltas are stored as integer nanoseconds; unsigned integers as BIGINT; strings as
  TEXT; dates and times as ISO text on SQLite.

A frame's index is stored as ordinary columns (``index``, or its names; ``level_N`` for
unnamed levels of a MultiIndex) unless it is a RangeIndex, which lives in the metadata only.
A DatetimeIndex's or TimedeltaIndex's ``freq`` is recorded in the metadata and restored.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import CorruptTargetError, UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds._storage.arrow import arrow_to_frame, frame_to_arrow
from prefect_ds.formats.sql.checks import check_frame, check_table
from prefect_ds.formats.sql.names import SqlLocation

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pd = lazy("pandas")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

FORMAT_VERSION = 1
_FREQ_KEY = b"prefect_ds:freq"
_INDEX_FIELD = "__index_level_{}__"


@dataclass(frozen=True)
class TableMeta:
    """What prefect-ds records next to a table it wrote."""

    columns: list[str]  # the database column names, in order
    n_rows: int
    schema: pa.Schema  # the pandas-faithful Arrow schema, field i <-> database column i
    dictionaries: dict[int, pa.Array]  # field index -> categories

    def encode_schema(self) -> str:
        """Schema and categories as base64 Arrow IPC (a 0-row batch keeps the dictionaries)."""
        arrays = []
        for i, field in enumerate(self.schema):
            if pa.types.is_dictionary(field.type):
                arrays.append(
                    pa.DictionaryArray.from_arrays(
                        pa.array([], field.type.index_type), self.dictionaries[i],
                        ordered=field.type.ordered,
                    )
                )
            else:
                arrays.append(pa.array([], field.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.schema) as writer:
            writer.write_batch(batch)
        return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")

    def encode_columns(self) -> str:
        return json.dumps(self.columns)

    @classmethod
    def decode(cls, columns: str, n_rows: int, schema: str) -> TableMeta:
        try:
            batch = pa.ipc.open_stream(base64.b64decode(schema)).read_next_batch()
            names = json.loads(columns)
        except (ValueError, pa.ArrowInvalid) as exc:
            raise CorruptTargetError(
                f"the prefect-ds metadata row is unreadable ({exc}); delete the table and "
                f"write it again"
            ) from None
        dictionaries = {
            i: batch.column(i).dictionary
            for i, field in enumerate(batch.schema)
            if pa.types.is_dictionary(field.type)
        }
        return cls(list(names), int(n_rows), batch.schema, dictionaries)


@dataclass(frozen=True)
class Prepared:
    """A frame ready for the database: its Arrow table and the metadata to record."""

    table: pa.Table  # database column names, database-friendly types
    meta: TableMeta


def _db_names(schema: pa.Schema) -> list[str]:
    """Database column names: the frame's, with unnamed index levels as pandas names them."""
    pandas_meta = schema.pandas_metadata or {}
    index_fields = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    names = []
    for name in schema.names:
        if name in index_fields and name == _INDEX_FIELD.format(index_fields.index(name)):
            level = index_fields.index(name)
            names.append("index" if len(index_fields) == 1 else f"level_{level}")
        else:
            names.append(name)
    return names


def _check_names(names: list[str], max_bytes: int | None) -> None:
    seen: dict[str, str] = {}
    for name in names:
        if not name or "\x00" in name:
            raise UnsupportedFrameError(
                f"column name {name!r} cannot be stored in SQL (empty or contains NUL); "
                f"rename the column"
            )
        if max_bytes is not None and len(name.encode()) > max_bytes:
            raise UnsupportedFrameError(
                f"column name {name[:40]!r}… is {len(name.encode())} bytes, but this database "
                f"keeps at most {max_bytes}; rename the column"
            )
        key = name.lower()  # SQLite (and some servers) compare names case-insensitively
        if key in seen:
            raise UnsupportedFrameError(
                f"columns {seen[key]!r} and {name!r} collide in SQL (names compare without "
                f"case, and the index is stored as columns); rename one of them, or "
                f"reset_index(drop=True) if the index is not needed"
            )
        seen[key] = name


def _store_array(arr: pa.ChunkedArray, backend: str) -> pa.ChunkedArray:
    """Convert one column to a type the database keeps; ``restore`` undoes it."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _store_array(arr.cast(t.value_type), backend)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return arr.cast(pa.string())
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return arr.cast(pa.binary())
    if pa.types.is_null(t):
        return arr.cast(pa.string())
    if pa.types.is_unsigned_integer(t):
        try:
            return arr.cast(pa.int64())
        except pa.ArrowInvalid:
            raise UnsupportedFrameError(
                "an unsigned integer column holds values above 2**63-1, which no SQL BIGINT "
                "keeps; store it as a string column (df[col].astype(str))"
            ) from None
    if pa.types.is_float16(t):
        return arr.cast(pa.float32())
    if pa.types.is_duration(t):
        return arr.cast(pa.duration("ns")).cast(pa.int64())
    if pa.types.is_timestamp(t):
        if backend == "sqlite":
            return arr.cast(pa.timestamp(t.unit, "UTC" if t.tz else None)).cast(pa.string())
        if t.unit == "ns":  # floor the UTC instants: local wall times may be ambiguous
            utc = pc.floor_temporal(arr.cast(pa.timestamp("ns")), unit="microsecond")
            return utc.cast(pa.timestamp("us")).cast(pa.timestamp("us", t.tz))
        return arr.cast(pa.timestamp("us", t.tz))
    if backend == "sqlite" and (pa.types.is_date(t) or pa.types.is_time(t)):
        return arr.cast(pa.string())
    return arr


def _categories(col: pa.ChunkedArray) -> pa.Array:
    """The categories of a dictionary column (pandas writes them all, used or not)."""
    if col.num_chunks == 0:
        return pa.array([], col.type.value_type)
    return col.unify_dictionaries().chunk(0).dictionary


def prepare(df: pd.DataFrame, loc: SqlLocation) -> Prepared:
    """Turn ``df`` into a database-ready Arrow table and the metadata that restores it.

    Refuses (``checks``), before anything is sent, what the table could not hold exactly.
    """
    check_frame(df, loc)
    try:
        source = frame_to_arrow(df, "sql")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
            UnicodeError) as exc:
        raise UnsupportedFrameError(
            f"table {loc.qualified!r}: pyarrow cannot convert the frame ({exc}). Nothing "
            f"was written. Convert the column it names to numbers, strings or timestamps, "
            f"or use the parquet format"
        ) from None
    names = _db_names(source.schema)
    _check_names(names, 63 if loc.backend == "postgresql" else None)
    dictionaries = {
        i: _categories(col)
        for i, (field, col) in enumerate(zip(source.schema, source.columns, strict=True))
        if pa.types.is_dictionary(field.type)
    }
    columns = [_store_array(col, loc.backend) for col in source.columns]
    table = pa.Table.from_arrays(columns, names=names)
    check_table(table, loc)
    schema = source.schema
    freq = getattr(df.index, "freqstr", None)
    if freq is not None:  # a DatetimeIndex's / TimedeltaIndex's freq: restored on read
        schema = schema.with_metadata({**(schema.metadata or {}), _FREQ_KEY: freq.encode()})
    meta = TableMeta(names, source.num_rows, schema, dictionaries)
    return Prepared(table, meta)


class StaleMetadata(Exception):
    """The table's values no longer fit the recorded schema: it was changed elsewhere."""


def _parse_timestamps(arr: pa.ChunkedArray, target: pa.TimestampType) -> pa.ChunkedArray:
    """ISO text (SQLite) to timestamps in the target's unit; older tables wrote ``ns`` text."""
    text = arr.cast(pa.string())
    zone = "UTC" if target.tz else None
    try:
        return text.cast(pa.timestamp(target.unit, zone))
    except pa.ArrowInvalid:
        return text.cast(pa.timestamp("ns", zone))


def _restore_array(arr: pa.ChunkedArray, target: pa.DataType, categories: pa.Array | None,
                   column: str) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_dictionary(target):
        values = _restore_array(arr, target.value_type, None, column)
        indices = pc.index_in(values, value_set=categories)
        if indices.null_count != values.null_count:
            raise StaleMetadata(f"column {column!r} holds values that are not among its "
                                f"recorded categories")
        chunks = indices.chunks if isinstance(indices, pa.ChunkedArray) else [indices]
        chunks = chunks or [pa.array([], target.index_type)]  # an empty table: one chunk
        return pa.chunked_array(
            [
                pa.DictionaryArray.from_arrays(
                    c.cast(target.index_type), categories, ordered=target.ordered
                )
                for c in chunks
            ],
            target,
        )
    if arr.type == target:
        return arr
    if pa.types.is_null(target):
        return pa.nulls(len(arr), target)
    if pa.types.is_boolean(target) and pa.types.is_integer(arr.type):
        low, high = pc.min_max(arr).values()
        if (low.as_py() or 0) < 0 or (high.as_py() or 0) > 1:
            raise StaleMetadata(f"column {column!r} was written as bool but holds "
                                f"{low.as_py()}..{high.as_py()}")
    if pa.types.is_timestamp(target) and not pa.types.is_timestamp(arr.type):
        arr = _parse_timestamps(arr, target)
    elif pa.types.is_timestamp(target) and (arr.type.tz is None) != (target.tz is None):
        arr = arr.cast(pa.timestamp(arr.type.unit, target.tz))
    elif pa.types.is_duration(target) and not pa.types.is_duration(arr.type):
        arr = arr.cast(pa.int64()).cast(pa.duration("ns"))
    elif (pa.types.is_date(target) or pa.types.is_time(target)) and pa.types.is_integer(arr.type):
        arr = arr.cast(pa.string())  # an all-NULL column SQLite could not type
    return arr.cast(target)


def restore(table: pa.Table, meta: TableMeta) -> pd.DataFrame:
    """Cast the database's columns back to the recorded schema and build the frame.

    Raises :class:`StaleMetadata` when a column no longer fits its recorded dtype.
    """
    try:
        arrays = [
            _restore_array(col, field.type, meta.dictionaries.get(i), meta.columns[i])
            for i, (field, col) in enumerate(zip(meta.schema, table.columns, strict=True))
        ]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise StaleMetadata(f"a column no longer casts to its recorded dtype: {exc}") from None
    frame = arrow_to_frame(pa.Table.from_arrays(arrays, schema=meta.schema))
    freq = (meta.schema.metadata or {}).get(_FREQ_KEY)
    if freq is not None and isinstance(frame.index, pd.DatetimeIndex | pd.TimedeltaIndex):
        try:
            frame.index = type(frame.index)(frame.index, freq=freq.decode())
        except ValueError as exc:  # the values no longer follow it
            raise StaleMetadata(f"the index no longer has its recorded freq: {exc}") from None
    return frame


def matches(table_columns: list[str], n_rows: int, meta: TableMeta) -> bool:
    """Whether a table still is what prefect-ds wrote (same columns and row count)."""
    return table_columns == meta.columns and n_rows == meta.n_rows


def to_sqlalchemy_frame(table: pa.Table) -> pd.DataFrame:
    """The database-ready table as a frame for ``DataFrame.to_sql`` (nullable ints stay ints)."""
    mapping: dict[Any, Any] = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    frame: pd.DataFrame = table.to_pandas(types_mapper=mapping.get)
    return frame
