"""Parquet through pyarrow: the exact, fast default for DataFrames."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._capabilities import TargetInfo, modified_time
from .._errors import CorruptTargetError
from .._files import FileFormat, filesystem, open_for_read, staged
from ..hookspecs import Register, hookimpl
from ._dtypes import describe, from_spec, same_dtype


class ParquetFormat(FileFormat):
    """One Parquet file. pandas metadata in the file restores dtypes and the index exactly."""

    name = "parquet"
    suffixes = (".parquet", ".pq")
    default_read_kwargs: ClassVar[dict[str, Any]] = {}
    default_write_kwargs: ClassVar[dict[str, Any]] = {"compression": "snappy"}

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        options = {**self.default_read_kwargs, **kwargs}
        try:
            with open_for_read(location, **self.storage_options) as source:
                table = pq.read_table(source, **options)
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            if options and _footer_readable(location, self.storage_options):
                raise  # the file is sound: the read options are what went wrong
            raise _corrupt(location, exc) from None
        try:
            return _restore_dtypes(table.to_pandas(), table)
        except (ValueError, KeyError, TypeError) as exc:  # a garbled dtype record
            raise _corrupt(location, exc) from None

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df``; ``metadata`` goes into the file's key-value metadata with it."""
        options = {**self.default_write_kwargs, **kwargs}
        check_column_names(df, "parquet")
        table = _record_dtypes(pa.Table.from_pandas(df, preserve_index=None), df)
        if metadata:
            table = table.replace_schema_metadata({
                **(table.schema.metadata or {}),
                _METADATA_KEY: json.dumps(dict(metadata)).encode(),
            })
        with staged(location, **self.storage_options) as (temp,):
            pq.write_table(table, temp, **options)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the footer alone (``{}`` if none)."""
        with open_for_read(location, **self.storage_options) as source:
            schema = pq.read_schema(source)
        raw = (schema.metadata or {}).get(_METADATA_KEY)
        return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}

    def target_info(self, location: str) -> TargetInfo:
        """Rows from the footer, bytes and modification time from the file system."""
        fs, path = filesystem(location, **self.storage_options)
        info = fs.info(path)
        with open_for_read(location, **self.storage_options) as source:
            rows = pq.ParquetFile(source).metadata.num_rows
        return TargetInfo(rows=rows, bytes=info.get("size"), modified=modified_time(info))



# pyarrow's pandas metadata loses some dtypes: every StringDtype comes back with the
# default storage, a nullable Int64/boolean index as float/object, an empty categorical's
# categories as object, and a column-less frame loses its rows. This key records the
# exact dtypes (and the row count) so :func:`_restore_dtypes` can put them back.
_DTYPES_KEY = b"prefect_ds:dtypes"
_METADATA_KEY = b"prefect_ds:metadata"  # the caller's {str: str} (fingerprints)


def _record_dtypes(table: pa.Table, df: pd.DataFrame) -> pa.Table:
    index = df.index
    index_dtypes = list(index.dtypes) if isinstance(index, pd.MultiIndex) else [index.dtype]
    record = {
        "rows": len(df),
        "columns": {name: describe(dtype) for name, dtype in df.dtypes.items()
                    if isinstance(name, str)},
        "index": None if isinstance(index, pd.RangeIndex) else
                 [describe(dtype) for dtype in index_dtypes],
    }
    metadata = {**(table.schema.metadata or {}), _DTYPES_KEY: json.dumps(record).encode()}
    return table.replace_schema_metadata(metadata)


def _exact(values: Any, column: pa.ChunkedArray | None, dtype: Any) -> Any:
    """``values`` as ``dtype``, rebuilt from the Arrow column when that is lossless."""
    if (column is not None and not isinstance(dtype, pd.CategoricalDtype)
            and hasattr(dtype, "__from_arrow__")):
        return dtype.__from_arrow__(column)
    return values.astype(dtype)


def _restore_dtypes(df: pd.DataFrame, table: pa.Table) -> pd.DataFrame:
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
        levels = [df.index.get_level_values(i) for i in range(df.index.nlevels)]
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
    return df


def check_column_names(df: pd.DataFrame, fmt: str) -> None:
    """Refuse column names of mixed types: Arrow stores them all as text, so ``[0, "1"]``
    would read back as ``["0", "1"]``. Names of one type (all text, all numbers) are fine."""
    kinds = {type(name) for name in df.columns} if not isinstance(
        df.columns, pd.MultiIndex) else set()
    if len(kinds) > 1:
        raise TypeError(
            f"the {fmt} format cannot keep column names of mixed types "
            f"({', '.join(sorted(k.__name__ for k in kinds))}): they would read back as "
            f"strings. Make them one type first, e.g. df.columns = df.columns.map(str)"
        )


def _footer_readable(location: str, storage_options: dict[str, Any]) -> bool:
    try:
        with open_for_read(location, **storage_options) as source:
            pq.read_metadata(source)
    except (pa.ArrowException, OSError):
        return False
    return True


def _corrupt(location: str, exc: BaseException) -> CorruptTargetError:
    """A truncated, garbled or non-Parquet file, named with what pyarrow found wrong."""
    return CorruptTargetError(
        f"{location}: not a readable Parquet file ({type(exc).__name__}: {exc}); it is "
        f"truncated, damaged or not Parquet. Delete it and write the result again."
    )


@hookimpl
def register_formats(register: Register) -> None:
    register(ParquetFormat())
