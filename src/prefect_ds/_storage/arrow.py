"""Exact DataFrame <-> Arrow conversion for formats that store Arrow tables.

pyarrow's own pandas metadata loses some dtypes: every ``StringDtype`` comes back with
the default storage, a nullable ``Int64``/``boolean`` index as float/object, an empty
categorical's categories as object, and a column-less frame loses its rows. A format
that writes :func:`frame_to_arrow`'s table (Parquet, Feather, a SQL table through ADBC)
and reads it back with :func:`arrow_to_frame` gets the frame back exactly: the table's
schema metadata carries a ``prefect_ds:dtypes`` record of the exact dtypes.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa

from prefect_ds._storage.dtypes import describe, from_spec, same_dtype

_DTYPES_KEY = b"prefect_ds:dtypes"


def frame_to_arrow(df: pd.DataFrame, format_name: str = "arrow") -> pa.Table:
    """``df`` as an Arrow table whose metadata restores it exactly (see the module doc).

    Column names of mixed types are refused (Arrow stores names as text), naming
    ``format_name`` in the error.
    """
    check_column_names(df, format_name)
    table = pa.Table.from_pandas(df, preserve_index=None)
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


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame :func:`frame_to_arrow` made ``table`` from, dtypes included.

    A table without a ``prefect_ds:dtypes`` record converts as ``table.to_pandas()``.
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


