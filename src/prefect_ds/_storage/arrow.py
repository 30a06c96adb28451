"""Exact DataFrame <-> Arrow conversion for formats that store Arrow tables.

pyarrow's own pandas metadata loses some dtypes: every ``StringDtype`` comes back with
the default storage, a nullable ``Int64``/``boolean`` index as float/object, an empty
categorical's categories as object, and a column-less frame loses its rows. It also
stores column labels and index names as text (``[True, False]`` reads back as
``[True, True]``, a categorical or period column index cannot be read at all) and drops a
``DatetimeIndex`` frequency. A format that writes :func:`frame_to_arrow`'s table (Parquet,
Feather, a SQL table through ADBC) and reads it back with :func:`arrow_to_frame` gets the
frame back exactly: the table's schema metadata carries a ``prefect_ds:dtypes`` record of
the exact dtypes, the column labels (``_storage/labels.py``), the index names and the
index frequency.

What Arrow cannot hold exactly is refused by :func:`frame_to_arrow` with
:class:`~prefect_ds.UnsupportedFrameError`, naming the column, before a format writes
anything: complex numbers, object columns (or index levels) mixing value types (text and
numbers, tuples, dicts, naive and tz-aware datetimes), text that is not valid Unicode
(lone surrogates), and duplicate column labels.
"""

from __future__ import annotations

import base64
import contextlib
import json
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds._storage.dtypes import describe, from_spec, same_dtype, zone_spec
from prefect_ds._storage.labels import decode_labels, encode_labels, level_values, same_labels

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
else:
    np = lazy("numpy")
    pd = lazy("pandas")
    pa = lazy("pyarrow")

_DTYPES_KEY = b"prefect_ds:dtypes"

# What pandas' infer_dtype may call an object column that Arrow stores and gives back.
_OBJECT_KINDS = frozenset({"string", "empty", "bytes", "boolean", "integer", "floating",
                           "decimal", "datetime", "date", "time"})


def frame_to_arrow(df: pd.DataFrame, format_name: str = "arrow", *,
                   index: bool = True) -> pa.Table:
    """``df`` as an Arrow table whose metadata restores it exactly (see the module doc).

    ``index=False`` stores the frame without its index (it reads back with a
    ``RangeIndex``). What Arrow cannot hold exactly raises
    :class:`~prefect_ds.UnsupportedFrameError` naming ``format_name``.
    """
    if not isinstance(df, pd.DataFrame):
        raise UnsupportedFrameError(
            f"the {format_name} format writes pandas DataFrames, not {type(df).__name__}")
    if not index:
        df = df.reset_index(drop=True)
    labels = df.columns
    fields = [str(label) for label in labels]
    check_fields(labels, fields, format_name)
    label_record = encode_labels(labels, f"the {format_name} format's column labels")
    plain = (not isinstance(labels, pd.MultiIndex) and labels.name is None and len(labels)
             and (labels.dtype == object or isinstance(labels.dtype, pd.StringDtype))
             and all(type(label) is str for label in labels))
    work = df if plain else df.set_axis(pd.Index(fields, dtype=object), axis=1)
    taken = set(fields)
    if not all(name is None or (type(name) is str and name not in taken)
               for name in df.index.names):
        # names that are not text, or that a column's field has: the record keeps them,
        # and pyarrow names the index fields __index_level_N__
        unnamed: Any = [None] * df.index.nlevels
        work = work.set_axis(df.index.set_names(unnamed), axis=0)
    for position in range(len(fields)):
        _check_values(df.iloc[:, position], f"column {labels[position]!r}", format_name)
    levels = df.index.nlevels
    for i in range(levels):
        _check_values(level_values(df.index, i), f"index level {i} "
                      f"({df.index.names[i]!r})", format_name)
    names = encode_labels(pd.Index(list(df.index.names), dtype=object, tupleize_cols=False),
                          "the index names")
    table = _from_pandas(work, format_name)
    index_dtypes = list(df.index.dtypes) if isinstance(df.index, pd.MultiIndex) else [
        df.index.dtype]
    record = {
        "rows": len(df),
        "columns": {field: describe(dtype) for field, dtype in zip(fields, df.dtypes,
                                                                    strict=True)},
        "index": None if isinstance(df.index, pd.RangeIndex) else
                 [describe(dtype) for dtype in index_dtypes],
        "fields": fields,
        "labels": label_record,
        "index_names": names,
        "freq": getattr(df.index, "freqstr", None),
    }
    metadata = {**(table.schema.metadata or {}), _DTYPES_KEY: json.dumps(record).encode()}
    return table.replace_schema_metadata(metadata)


def made_from_pandas(table: pa.Table) -> bool:
    """Whether ``table`` carries :func:`frame_to_arrow`'s record of a pandas frame."""
    return _DTYPES_KEY in (table.schema.metadata or {})


def check_fields(labels: pd.Index, fields: list[str], fmt: str) -> None:
    """Refuse labels whose text repeats: a file format names each column by its text."""
    if len(set(fields)) == len(fields):
        return
    seen: set[str] = set()
    dupes = [label for label, field in zip(labels, fields, strict=True)
             if field in seen or seen.add(field)]  # type: ignore[func-returns-value]
    raise UnsupportedFrameError(
        f"the {fmt} format needs unique column names, and {dupes[:5]!r} occur more than once "
        f"(as text); rename or drop the duplicates first, e.g. "
        f"df = df.loc[:, ~df.columns.duplicated()]"
    )


def _check_values(values: pd.Series | pd.Index, what: str, fmt: str) -> None:
    """Refuse values Arrow would store wrongly or fail on, naming ``what``."""
    dtype = values.dtype
    if getattr(dtype, "kind", "") == "c":
        raise UnsupportedFrameError(
            f"{what} holds complex numbers ({dtype}), which the {fmt} format cannot store; "
            f"split them first, e.g. into .real and .imag columns"
        )
    if not (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        return
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in _OBJECT_KINDS:
        raise UnsupportedFrameError(
            f"{what} is an object column holding {kind} values, which the {fmt} format "
            f"cannot store exactly (they would come back converted, or not at all); give it "
            f"one type first, e.g. .astype(str), pd.to_numeric(...) or pd.to_datetime(...)"
        )
    if kind == "datetime":
        zones = {json.dumps(zone_spec(v.tzinfo) or repr(v.tzinfo)) if v.tzinfo is not None
                 else "naive"
                 for v in values if v is not None and v is not pd.NaT
                 and hasattr(v, "tzinfo")}
        if len(zones) > 1:
            raise UnsupportedFrameError(
                f"{what} holds datetimes in different time zones (or naive and tz-aware "
                f"ones together), which the {fmt} format cannot keep apart; convert them "
                f"to one zone first, e.g. pd.to_datetime(values, utc=True)"
            )


def _conversion_errors() -> tuple[type[BaseException], ...]:
    """What pyarrow raises for values it cannot convert (OverflowError: ints beyond 64 bits)."""
    return (pa.ArrowException, OverflowError, UnicodeError, TypeError, ValueError)


def _from_pandas(df: pd.DataFrame, fmt: str) -> pa.Table:
    try:
        with warnings.catch_warnings():
            # index names that are not text: the dtypes record keeps them
            warnings.filterwarnings("ignore", "The DataFrame has non-str index name")
            return pa.Table.from_pandas(df, preserve_index=None)
    except _conversion_errors() as exc:
        culprit = _failing_column(df)
        if isinstance(exc, UnicodeError):
            text = ("text that is not valid Unicode (a lone surrogate); replace those "
                    "characters, e.g. .str.encode('utf-8', 'replace').str.decode('utf-8')")
        elif isinstance(exc, OverflowError):
            text = ("integers outside the 64-bit range; store them as text (.astype(str)) "
                    "or, if losing digits is acceptable, as floats")
        else:
            text = f"values Arrow cannot convert ({exc})"
        raise UnsupportedFrameError(
            f"{culprit} holds {text}; the {fmt} format cannot store it"
        ) from exc


def _failing_column(df: pd.DataFrame) -> str:
    """The first column or index level that Arrow cannot convert (on the error path only)."""
    for i in range(df.index.nlevels):
        try:
            pa.array(level_values(df.index, i), from_pandas=True)
        except _conversion_errors():
            return f"index level {i} ({df.index.names[i]!r})"
    for position, name in enumerate(df.columns):
        try:
            pa.array(df.iloc[:, position], from_pandas=True)
        except _conversion_errors():
            return f"column {name!r}"
    return "the frame"


def _exact(values: Any, column: pa.ChunkedArray | None, dtype: Any) -> Any:
    """``values`` as ``dtype``, rebuilt from the Arrow column when that is lossless."""
    current = getattr(values, "dtype", None)
    if (isinstance(dtype, pd.DatetimeTZDtype) and isinstance(current, pd.DatetimeTZDtype)
            and current.unit == dtype.unit):
        # the same instants with another zone object: a relabelling, no copy of the data
        return values.dt.tz_convert(dtype.tz) if isinstance(values, pd.Series) else (
            values.tz_convert(dtype.tz))
    if (column is not None and not isinstance(dtype, pd.CategoricalDtype)
            and hasattr(dtype, "__from_arrow__")):
        return dtype.__from_arrow__(column)
    return values.astype(dtype)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame :func:`frame_to_arrow` made ``table`` from, dtypes included.

    A table without a ``prefect_ds:dtypes`` record converts as ``table.to_pandas()``.
    A table holding some of the columns (a read of selected columns) gives those columns,
    and the index, exactly.
    """
    df: pd.DataFrame = table.to_pandas()
    metadata = table.schema.metadata or {}
    if _DTYPES_KEY not in metadata:
        return df
    record = json.loads(metadata[_DTYPES_KEY])
    pandas_meta = json.loads(metadata.get(b"pandas", b"{}"))
    index_columns = pandas_meta.get("index_columns", [])
    rng = index_columns[0] if len(index_columns) == 1 else None
    if (df.shape[1] == 0 and len(df) != record["rows"] and isinstance(rng, dict)
            and rng.get("kind") == "range"):
        df = pd.DataFrame(index=pd.RangeIndex(rng["start"], rng["stop"], rng["step"],
                                              name=rng.get("name")))
    names = set(table.column_names)
    for name, spec in record["columns"].items():
        if spec is None or name not in df.columns:
            continue
        dtype = from_spec(spec)
        if not same_dtype(df[name].dtype, dtype):
            column = table.column(name) if name in names else None
            df[name] = _exact(df[name], column, dtype)
    specs = record["index"]
    if specs and len(specs) == df.index.nlevels:
        levels = [level_values(df.index, i) for i in range(df.index.nlevels)]
        changed = False
        for i, spec in enumerate(specs):
            if spec is None or same_dtype(levels[i].dtype, dtype := from_spec(spec)):
                continue
            field = index_columns[i] if i < len(index_columns) else None
            column = table.column(field) if isinstance(field, str) and field in names else None
            levels[i] = pd.Index(_exact(levels[i], column, dtype), name=levels[i].name)
            changed = True
        if changed:
            df.index = levels[0] if len(levels) == 1 else pd.MultiIndex.from_arrays(levels)
    if "labels" in record:
        _restore_labels(df, record)
    return df


def _restore_labels(df: pd.DataFrame, record: dict[str, Any]) -> None:
    """Column labels, index names and the index frequency, as recorded (in place)."""
    fields: list[str] = record["fields"]
    labels = decode_labels(record["labels"])
    position = {field: i for i, field in enumerate(fields)}
    try:
        chosen = labels[[position[str(field)] for field in df.columns]]
    except KeyError:
        chosen = None  # columns the record does not describe: leave pyarrow's labels
    if chosen is not None and not same_labels(df.columns, chosen):
        df.columns = chosen
    index_names = list(decode_labels(record["index_names"]))
    if len(index_names) == df.index.nlevels and list(df.index.names) != index_names:
        df.index = df.index.set_names(index_names)
    freq = record.get("freq")
    if freq and isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        # selected rows (filters=...) may no longer follow the frequency
        with contextlib.suppress(ValueError):
            df.index = type(df.index)(df.index, freq=freq)


def arrow_columns(schema: pa.Schema, columns: Sequence[Any]) -> list[str]:
    """The Arrow fields to read for the column labels ``columns``: their fields plus the
    fields that hold the index, so a read of some columns keeps the index.

    A label that names no column raises ``KeyError``.
    """
    metadata = schema.metadata or {}
    fields = list(schema.names)
    by_label: dict[Any, str] = {}
    index_fields: list[str] = []
    if _DTYPES_KEY in metadata:
        record = json.loads(metadata[_DTYPES_KEY])
        if "labels" in record:
            labels = decode_labels(record["labels"])
            by_label = {label: field for label, field in zip(labels, record["fields"],
                                                             strict=True)}
    if b"pandas" in metadata:
        index_fields = [c for c in json.loads(metadata[b"pandas"]).get("index_columns", [])
                        if isinstance(c, str)]
    chosen: list[str] = []
    for label in columns:
        field = by_label.get(label, label if label in fields else None)
        if field is None or field in index_fields:
            raise KeyError(
                f"no column {label!r}; the stored columns are "
                f"{list(by_label) or [f for f in fields if f not in index_fields]}"
            )
        chosen.append(field)
    return chosen + [f for f in index_fields if f not in chosen]


_SCHEMA_KEY = b"prefect_ds:arrow_schema"


def with_schema_record(table: pa.Table | pa.Schema) -> Any:
    """``table`` (or a schema) carrying a record of its exact Arrow types.

    A file format may give some types back in another spelling (Parquet reads a
    ``dictionary<large_string>`` as ``dictionary<string>``, CSV has no types at all);
    :func:`restore_schema` casts such columns back, so an Arrow or polars frame reads back
    with the types it was written with.
    """
    schema = table if isinstance(table, pa.Schema) else table.schema
    record = base64.b64encode(schema.remove_metadata().serialize().to_pybytes())
    metadata = {**(schema.metadata or {}), _SCHEMA_KEY: record}
    if isinstance(table, pa.Schema):
        return table.with_metadata(metadata)
    return table.replace_schema_metadata(metadata)


def recorded_schema(metadata: dict[bytes, bytes] | None) -> pa.Schema | None:
    """The exact schema :func:`with_schema_record` put in ``metadata``, if any."""
    raw = (metadata or {}).get(_SCHEMA_KEY)
    if raw is None:
        return None
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(raw)))


def restore_schema(table: pa.Table, schema: pa.Schema | None = None) -> pa.Table:
    """``table`` with each column of the recorded schema cast back to its exact type
    (and field metadata), the record itself removed from the table's metadata."""
    metadata = dict(table.schema.metadata or {})
    if schema is None:
        schema = recorded_schema(metadata)
    metadata.pop(_SCHEMA_KEY, None)
    if schema is None:
        return table
    fields = []
    columns = []
    changed = False
    for name, column in zip(table.column_names, table.columns, strict=True):
        index = schema.get_field_index(name)
        field = table.schema.field(name)
        if index >= 0:
            exact = schema.field(index)
            if not exact.type.equals(column.type) or str(exact.type) != str(column.type):
                # (a list's item field may come back renamed: equal types, other names)
                column = _cast(column, exact.type)
                changed = True
            if exact.metadata != field.metadata or exact.nullable != field.nullable:
                changed = True
            field = exact
        fields.append(field)
        columns.append(column)
    if not changed:
        return table.replace_schema_metadata(metadata or None)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=metadata or None))


def _cast(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """``column`` as ``kind``; an all-null column as the null type whatever it was stored as."""
    if pa.types.is_null(kind) and column.null_count == len(column):
        return pa.chunked_array([pa.nulls(len(column))], pa.null())
    if pa.types.is_date(kind) and pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp(column.type.unit)).cast(kind)  # stored as midnights
    return column.cast(kind)
