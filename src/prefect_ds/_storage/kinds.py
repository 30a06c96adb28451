"""Frame kinds: which library's frame a result is, and how one kind becomes another.

A result is one of six kinds, each named by the text recorded with a stored target:

``"pandas"`` (``pandas.DataFrame``), ``"pandas.Series"``, ``"polars"``
(``polars.DataFrame``), ``"polars.LazyFrame"``, ``"arrow"`` (``pyarrow.Table``) and
``"arrow.RecordBatchReader"``.

A format declares the kinds its ``write`` takes and its ``read(location, kind=...)``
gives natively (``Format.kinds``, see ``prefect_ds._format``). Everything else is
converted here, through Arrow where the format takes Arrow (zero-copy where Arrow
allows), else through pandas:

* polars <-> Arrow with ``DataFrame.to_arrow`` / ``polars.from_arrow`` (no pandas);
* Arrow -> pandas with :func:`~prefect_ds.arrow_to_frame` (exact for a table this
  package wrote from pandas), pandas -> Arrow with :func:`~prefect_ds.frame_to_arrow`;
* polars and Arrow <-> pandas through Arrow, for formats that take pandas only (hdf,
  sql): integers and booleans as pandas' nullable dtypes, dates as midnight datetimes,
  and the exact Arrow schema recorded with the target (``prefect_ds.arrow_schema``), so
  the read casts each column back (an ``Enum``, a ``UInt8``, a ``Null`` column);
  docs/fidelity.md lists what that keeps.

polars is optional: nothing here imports it unless a polars frame was handed in (then
it is already imported) or polars output was asked for.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import MissingDependencyError, UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds._storage.arrow import (
    arrow_to_frame,
    frame_to_arrow,
    made_from_pandas,
    restore_schema,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    pd = lazy("pandas")
    pa = lazy("pyarrow")

PANDAS = "pandas"
SERIES = "pandas.Series"
POLARS = "polars"
LAZY = "polars.LazyFrame"
ARROW = "arrow"
STREAM = "arrow.RecordBatchReader"
KINDS = (PANDAS, SERIES, POLARS, LAZY, ARROW, STREAM)
# What a caller may ask ``read(kind=...)`` for: a library, or one exact kind.
FAMILIES = {PANDAS: PANDAS, POLARS: POLARS, ARROW: ARROW}
METADATA_KEY = "prefect_ds.kind"  # in a target's {str: str} metadata, absent for pandas
_SERIES_KEY = "prefect_ds.series"  # the Series' name, as JSON (absent: the column label)
_SCHEMA_KEY = "prefect_ds.arrow_schema"  # a polars/Arrow frame stored through pandas


def kind_of(obj: object) -> str | None:
    """The kind of ``obj``, or None when it is no frame this package stores."""
    if isinstance(obj, pd.DataFrame):
        return PANDAS
    if isinstance(obj, pd.Series):
        return SERIES
    if isinstance(obj, pa.Table):
        return ARROW
    if isinstance(obj, pa.RecordBatchReader):
        return STREAM
    # A polars frame exists only once polars is imported. Another thread may be importing
    # it right now (the module is in sys.modules, half initialised): a class it does not
    # have yet cannot have made ``obj``.
    polars = sys.modules.get("polars")
    for name, kind in (("DataFrame", POLARS), ("LazyFrame", LAZY)):
        cls = getattr(polars, name, None)
        if isinstance(cls, type) and isinstance(obj, cls):
            return kind
    return None


def check_kind(kind: str, what: str) -> str:
    """``kind`` if it names a kind (or a library), else a ValueError naming the choices."""
    if kind not in KINDS:
        raise ValueError(
            f"{what}: kind={kind!r} is not a frame kind; use 'pandas', 'polars' or 'arrow' "
            f"(or one of {', '.join(repr(k) for k in KINDS if k not in FAMILIES)})"
        )
    if kind in (POLARS, LAZY):
        _polars()
    return kind


def metadata_for(frame: object, kind: str) -> dict[str, str]:
    """What a target records of its kind: nothing for a pandas DataFrame (the default)."""
    if kind == PANDAS:
        return {}
    record = {METADATA_KEY: kind}
    if kind == SERIES:
        record[_SERIES_KEY] = json.dumps(_json_name(frame))
    return record


def schema_record(frame: Any, kind: str) -> dict[str, str]:
    """The exact Arrow schema of a polars or Arrow frame a pandas-only format stores."""
    if kind in (POLARS, ARROW, STREAM):
        schema = frame.schema if kind != POLARS else frame.head(0).to_arrow().schema
    elif kind == LAZY:
        schema = frame.head(0).collect().to_arrow().schema
    else:
        return {}
    raw = schema.remove_metadata().serialize().to_pybytes()
    return {_SCHEMA_KEY: base64.b64encode(raw).decode()}


def stored_kind(metadata: Mapping[str, str]) -> str:
    """The kind a target's metadata records; pandas when it records none (a foreign one)."""
    kind = metadata.get(METADATA_KEY, PANDAS)
    return kind if kind in KINDS else PANDAS


# -- writing ----------------------------------------------------------------------------------


def for_format(frame: Any, kind: str, accepted: Iterable[str], format_name: str) -> Any:
    """``frame`` as a kind the format takes (``accepted``), converting as little as possible.

    A ``LazyFrame`` goes to a format that takes lazy frames or Arrow streams without
    being collected; elsewhere it is collected (a format that writes whole frames).
    """
    accepted = tuple(accepted)
    if kind in (POLARS, LAZY):
        check_polars(frame.collect_schema() if kind == LAZY else frame.schema, format_name)
    if kind in accepted:
        return frame
    if kind == SERIES:
        return for_format(_series_frame(frame), PANDAS, accepted, format_name)
    if kind == LAZY:
        if STREAM in accepted:
            return _lazy_reader(frame)
        return for_format(frame.collect(), POLARS, accepted, format_name)
    if kind == STREAM:
        return for_format(frame.read_all(), ARROW, accepted, format_name)
    if kind == POLARS:
        if ARROW in accepted:
            return frame.to_arrow()
        return _arrow_to_pandas(frame.to_arrow(), format_name, exact=False)
    if kind == ARROW:
        if POLARS in accepted:
            return _polars().from_arrow(frame, rechunk=False)
        return _arrow_to_pandas(frame, format_name,
                                exact=made_from_pandas(frame))
    if kind == PANDAS and ARROW in accepted:
        return frame_to_arrow(frame, format_name)
    raise UnsupportedFrameError(
        f"the {format_name} format takes {', '.join(accepted)} frames and cannot be given a "
        f"{kind} frame"
    )


def _series_frame(series: pd.Series) -> pd.DataFrame:
    return series.to_frame(name="0" if series.name is None else series.name)  # text: hdf, sql


def _lazy_reader(lazy: Any) -> pa.RecordBatchReader:
    """A LazyFrame as an Arrow stream: its batches are computed as the stream is read."""
    schema = lazy.head(0).collect().to_arrow().schema

    def batches() -> Any:
        for frame in lazy.collect_batches():
            yield from frame.to_arrow().cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def check_polars(schema: Mapping[str, Any], format_name: str) -> None:
    """Refuse what no format stores readably: polars ``Object`` columns (arbitrary Python
    objects) and 128-bit integers (pyarrow, and so pandas and most readers, cannot read
    them back)."""
    for name, dtype in schema.items():
        text = str(dtype)  # nested dtypes spell their fields' dtypes too
        if "Object" in text:
            raise UnsupportedFrameError(
                f"column {name!r} is a polars {text} column (arbitrary Python objects), which "
                f"the {format_name} format cannot store; cast it to a typed column first"
            )
        if "Int128" in text:
            raise UnsupportedFrameError(
                f"column {name!r} is a polars {text} column, which the {format_name} format "
                f"cannot store readably (pyarrow and pandas have no 128-bit integers); cast "
                f"it to Int64 or Decimal first"
            )


@functools.cache
def _nullable() -> dict[pa.DataType, Any]:
    """pandas' nullable dtypes for what numpy would turn into float (integers with nulls)
    or object (booleans with nulls): exact, and what a pandas-only format stores."""
    return {
        pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
    }


def _arrow_to_pandas(table: pa.Table, format_name: str, exact: bool) -> pd.DataFrame:
    """A table for a pandas-only format: ``exact`` (it came from pandas: its own record
    restores it), else with nullable integers and booleans and dates as datetimes."""
    try:
        if exact:
            return arrow_to_frame(table)
        columns = [column.cast(pa.timestamp("ms")) if pa.types.is_date(column.type)
                   else column for column in table.columns]
        plain = pa.Table.from_arrays(columns, names=table.column_names)
        converted: pd.DataFrame = plain.to_pandas(types_mapper=_nullable().get)
        return converted
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise UnsupportedFrameError(
            f"the {format_name} format stores pandas frames, and this table does not "
            f"convert to one ({exc}); store it as parquet, feather or csv instead"
        ) from exc


def _from_pandas(df: pd.DataFrame, metadata: Mapping[str, str] | None) -> pa.Table:
    """What a pandas-only format read, as the Arrow table recorded with it (or as
    :func:`frame_to_arrow` makes it, for a target stored from pandas)."""
    raw = (metadata or {}).get(_SCHEMA_KEY)
    if raw is None:
        return frame_to_arrow(df, "arrow")
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(raw)))
    return restore_schema(pa.Table.from_pandas(df, preserve_index=False), schema)


# -- reading ----------------------------------------------------------------------------------


def read_as(read: Callable[..., Any], accepted: Iterable[str], kind: str,
            metadata: Mapping[str, str] | None = None) -> Any:
    """What the format's ``read`` gives, as ``kind``.

    ``read(kind)`` reads natively in one of ``accepted``; pandas is read without a
    ``kind`` keyword, so a format that declares no kinds is called as it always was.
    ``metadata`` (the target's) restores a stored Series' name.
    """
    accepted = tuple(accepted)
    if kind in accepted:
        return read(kind)
    if kind == SERIES:
        frame = read_as(read, accepted, PANDAS)
        series = frame.iloc[:, 0]
        raw = (metadata or {}).get(_SERIES_KEY)
        if raw is not None:
            series = series.rename(_from_json_name(json.loads(raw)))
        return series
    if kind == LAZY:
        return read_as(read, accepted, POLARS).lazy()
    if kind == STREAM:
        return read_as(read, accepted, ARROW).to_reader()
    if kind == POLARS:
        if ARROW in accepted:
            return _polars().from_arrow(read(ARROW), rechunk=False)
        return _polars().from_arrow(_from_pandas(read(PANDAS), metadata), rechunk=False)
    if kind == ARROW:
        if POLARS in accepted:
            return read(POLARS).to_arrow()
        return _from_pandas(read(PANDAS), metadata)
    if kind == PANDAS:
        if ARROW in accepted:
            return arrow_to_frame(read(ARROW))
        return read(POLARS).to_pandas()
    raise ValueError(f"kind={kind!r} is not a frame kind")


def wanted(requested: str | None, stored: str) -> str:
    """The kind to return: ``requested`` (a library picks the stored kind of its own if
    there is one), else the stored kind."""
    if requested is None:
        return stored
    if requested in FAMILIES and stored.split(".")[0] == requested:
        # kind="polars" gives a DataFrame; a stored LazyFrame comes back lazy only when
        # asked for by its own name (a stored Series is pandas' own result)
        return requested if stored in (LAZY, STREAM) else stored
    return requested


def rows_of(frame: object) -> int | None:
    """The row count of an eager frame (None for a lazy or streamed one)."""
    if isinstance(frame, (pd.DataFrame, pd.Series, pa.Table)):
        return len(frame)
    if kind_of(frame) == POLARS:
        return int(frame.height)  # type: ignore[attr-defined]
    return None


def columns_of(frame: Any) -> int | None:
    """The column count of a frame, from its schema alone (None when unknown)."""
    kind = kind_of(frame)
    if kind in (PANDAS, ARROW, POLARS):
        return len(frame.columns)
    if kind == SERIES:
        return 1
    if kind == LAZY:
        return len(frame.collect_schema())
    if kind == STREAM:
        return len(frame.schema)
    columns = getattr(frame, "columns", None)  # a Dask DataFrame
    return len(columns) if columns is not None else None


def preview_frame(frame: object) -> pd.DataFrame | None:
    """A pandas view of an eager result for the preview artifact (None for a stream)."""
    kind = kind_of(frame)
    if kind == PANDAS:
        return frame  # type: ignore[return-value]
    if kind == SERIES:
        return _series_frame(frame)  # type: ignore[arg-type]
    if kind == POLARS:
        return frame.head(100).to_pandas()  # type: ignore[attr-defined,no-any-return]
    if kind == ARROW:
        return frame.slice(0, 100).to_pandas()  # type: ignore[attr-defined,no-any-return]
    return None


def _json_name(series: object) -> Any:
    name = getattr(series, "name", None)
    if name is None or isinstance(name, (str, int, float, bool)):
        return {"v": name}
    return {"r": repr(name)}  # a name JSON cannot hold: kept as text


def _from_json_name(record: Any) -> Any:
    return record.get("v", record.get("r")) if isinstance(record, dict) else record


def _polars() -> Any:
    """The polars module, or a clear error naming the extra to install."""
    try:
        import polars
    except ImportError:
        raise MissingDependencyError(
            "polars", "polars", "pip install 'prefect-ds[polars]'",
            needed_by="kind='polars'",
        ) from None
    return polars
