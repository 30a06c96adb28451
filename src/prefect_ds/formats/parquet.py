"""Parquet through pyarrow: the exact, fast default for DataFrames."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._files import FileFormat, open_for_read, staged
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
        with open_for_read(location, **self.storage_options) as source:
            table = pq.read_table(source, **options)
        return _restore_dtypes(table.to_pandas(), table)

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        options = {**self.default_write_kwargs, **kwargs}
        table = _record_dtypes(pa.Table.from_pandas(df, preserve_index=None), df)
        with staged(location, **self.storage_options) as (temp,):
            pq.write_table(table, temp, **options)


# pyarrow's pandas metadata loses some dtypes: every StringDtype comes back with the
# default storage, a nullable Int64/boolean index as float/object, an empty categorical's
# categories as object, and a column-less frame loses its rows. This key records the
# exact dtypes (and the row count) so :func:`_restore_dtypes` can put them back.
_DTYPES_KEY = b"prefect_ds:dtypes"


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


@hookimpl
def register_formats(register: Register) -> None:
    register(ParquetFormat())
