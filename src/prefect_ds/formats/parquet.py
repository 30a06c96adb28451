"""Parquet through pyarrow: the exact, fast default for DataFrames."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._files import FileFormat, open_for_read, staged
from ..hookspecs import Register, hookimpl


class ParquetFormat(FileFormat):
    """One Parquet file. pandas metadata in the file restores dtypes and the index exactly."""

    name = "parquet"
    suffixes = (".parquet", ".pq")
    default_read_kwargs: dict[str, Any] = {}
    default_write_kwargs: dict[str, Any] = {"compression": "snappy"}

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        options = {**self.default_read_kwargs, **kwargs}
        with open_for_read(location, **self.storage_options) as source:
            table = pq.read_table(source, **options)
        return _restore_string_dtypes(table.to_pandas(), table.schema.metadata)

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        options = {**self.default_write_kwargs, **kwargs}
        table = _record_string_dtypes(pa.Table.from_pandas(df, preserve_index=None), df)
        with staged(location, **self.storage_options) as (temp,):
            pq.write_table(table, temp, **options)


# pyarrow's pandas metadata restores every StringDtype with the default storage
# (string[pyarrow]); this key records the columns and index levels that were
# string[python] (or str with python storage) so they come back exactly.
_STRINGS_KEY = b"prefect_ds:python_strings"


def _record_string_dtypes(table: pa.Table, df: pd.DataFrame) -> pa.Table:
    def python_na(dtype: Any) -> str | None:
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
            return "nan" if dtype.na_value is not pd.NA else "NA"
        return None

    columns = {name: na for name, dtype in df.dtypes.items()
               if isinstance(name, str) and (na := python_na(dtype))}
    levels = {name: na for name, dtype in zip(df.index.names, df.index.dtypes
                                              if isinstance(df.index, pd.MultiIndex)
                                              else [df.index.dtype])
              if isinstance(name, str) and (na := python_na(dtype))}
    if not columns and not levels:
        return table
    record = json.dumps({"columns": columns, "index": levels}).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), _STRINGS_KEY: record})


def _restore_string_dtypes(df: pd.DataFrame, metadata: dict[bytes, bytes] | None) -> pd.DataFrame:
    if not metadata or _STRINGS_KEY not in metadata:
        return df
    record = json.loads(metadata[_STRINGS_KEY])

    def dtype(na: str) -> pd.StringDtype:
        return pd.StringDtype("python", na_value=np.nan if na == "nan" else pd.NA)

    present = {name: dtype(na) for name, na in record["columns"].items() if name in df.columns}
    if present:
        df = df.astype(present)
    levels: dict[str, str] = record["index"]
    if levels and any(name in levels for name in df.index.names):
        arrays = [
            df.index.get_level_values(i).astype(dtype(levels[name])) if name in levels
            else df.index.get_level_values(i)
            for i, name in enumerate(df.index.names)
        ]
        df.index = (pd.MultiIndex.from_arrays(arrays) if isinstance(df.index, pd.MultiIndex)
                    else arrays[0])
    return df


@hookimpl
def register_formats(register: Register) -> None:
    register(ParquetFormat())
