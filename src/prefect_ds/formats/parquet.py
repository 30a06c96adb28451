"""Parquet through pyarrow: the exact, fast default for DataFrames."""

from __future__ import annotations

from typing import Any

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
        return table.to_pandas()

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        options = {**self.default_write_kwargs, **kwargs}
        table = pa.Table.from_pandas(df, preserve_index=None)
        with staged(location, **self.storage_options) as (temp,):
            pq.write_table(table, temp, **options)


@hookimpl
def register_formats(register: Register) -> None:
    register(ParquetFormat())
