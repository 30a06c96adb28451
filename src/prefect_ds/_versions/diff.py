"""How two versions of a target differ: schema, row counts, per-column summary statistics.

What ``prefect-ds diff`` prints. It compares summaries, not rows: two versions of a large
result are told apart in one pass over each, whatever their row order.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pandas as pd


def _stats(column: pd.Series) -> dict[str, Any]:
    """Summary statistics of one column: nulls and distinct values always; mean, std, min
    and max for numbers; min and max for other orderable values."""
    out: dict[str, Any] = {"nulls": int(column.isna().sum()),
                           "distinct": int(column.nunique(dropna=True))}
    values = column.dropna()
    if pd.api.types.is_bool_dtype(column):
        out["true"] = int(values.astype(bool).sum())
    elif pd.api.types.is_numeric_dtype(column):
        numbers = values.astype("float64")
        out.update(mean=_number(numbers.mean()), std=_number(numbers.std()),
                   min=_number(numbers.min()), max=_number(numbers.max()))
    elif len(values):
        with contextlib.suppress(TypeError):  # mixed objects that do not order
            out.update(min=str(values.min()), max=str(values.max()))
    return out


def _number(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def diff(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, Any]:
    """The differences between ``old`` and ``new`` as plain data (for JSON and tables)."""
    old_types = {str(c): str(t) for c, t in old.dtypes.items()}
    new_types = {str(c): str(t) for c, t in new.dtypes.items()}
    common = [c for c in old_types if c in new_types]
    old_by_name = {str(c): c for c in old.columns}
    new_by_name = {str(c): c for c in new.columns}
    columns = []
    for name in common:
        before = _stats(old[old_by_name[name]])
        after = _stats(new[new_by_name[name]])
        changed = {k: [before.get(k), after.get(k)] for k in dict.fromkeys([*before, *after])
                   if before.get(k) != after.get(k)}
        columns.append({"column": name, "old": before, "new": after, "changed": changed})
    return {
        "rows": [len(old), len(new)],
        "added": [{"column": c, "dtype": t} for c, t in new_types.items()
                  if c not in old_types],
        "removed": [{"column": c, "dtype": t} for c, t in old_types.items()
                    if c not in new_types],
        "retyped": [{"column": c, "old": old_types[c], "new": new_types[c]} for c in common
                    if old_types[c] != new_types[c]],
        "index": [[str(d) for d in _index_dtypes(old)], [str(d) for d in _index_dtypes(new)]],
        "columns": columns,
    }


def _index_dtypes(df: pd.DataFrame) -> list[object]:
    if isinstance(df.index, pd.MultiIndex):
        return list(df.index.dtypes)
    return [df.index.dtype]
