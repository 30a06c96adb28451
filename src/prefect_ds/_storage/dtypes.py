"""Exact pandas dtypes as JSON, for formats that keep their own schema record.

:func:`describe` turns a dtype into a small JSON object and :func:`from_spec` turns it
back into an equal dtype: numpy dtypes, pandas' nullable ``Int*``/``Float*``/``boolean``,
``StringDtype`` with its storage and missing-value marker, datetimes with their unit and
time zone, and categoricals with their categories (strings, numbers, bools or datetimes)
and order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_JSON_SCALARS = (str, int, float, bool, type(None))


def describe(dtype: Any) -> dict[str, Any] | None:
    """A JSON description of ``dtype``, or ``None`` when it cannot be recorded exactly."""
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        cat_spec = describe(categories.dtype)
        if cat_spec is None:
            return None
        values: list[Any]
        if categories.dtype.kind in "Mm":
            values = [int(v) for v in categories.view("i8")]
        else:
            values = categories.tolist()
            if not all(isinstance(v, _JSON_SCALARS) for v in values):
                return None
        return {"dtype": "category", "ordered": bool(dtype.ordered),
                "categories": values, "categories_dtype": cat_spec}
    if isinstance(dtype, pd.StringDtype):
        na = "nan" if dtype.na_value is not pd.NA else "NA"
        return {"dtype": "string", "storage": dtype.storage, "na_value": na}
    if isinstance(dtype, pd.DatetimeTZDtype):
        return {"dtype": "datetime64", "unit": dtype.unit,
                "tz": pa.lib.tzinfo_to_string(dtype.tz)}
    name = str(dtype)
    try:
        same = bool(pd.api.types.pandas_dtype(name) == dtype)
    except TypeError:
        same = False
    return {"dtype": name} if same else None


def from_spec(spec: Mapping[str, Any]) -> Any:
    """The dtype :func:`describe` recorded as ``spec``."""
    kind = spec["dtype"]
    if kind == "category":
        cat_dtype = from_spec(spec["categories_dtype"])
        raw = spec["categories"]
        categories: pd.Index
        if not isinstance(cat_dtype, pd.StringDtype) and getattr(cat_dtype, "kind", "") in "Mm":
            unit, _ = np.datetime_data(getattr(cat_dtype, "base", cat_dtype))
            base = "M8" if cat_dtype.kind == "M" else "m8"
            categories = pd.Index(np.asarray(raw, dtype="i8").view(f"{base}[{unit}]"))
            if isinstance(cat_dtype, pd.DatetimeTZDtype):
                categories = pd.DatetimeIndex(categories).tz_localize("UTC").tz_convert(
                    cat_dtype.tz
                )
        else:
            categories = pd.Index(raw, dtype=cat_dtype)
        return pd.CategoricalDtype(categories, ordered=spec["ordered"])
    if kind == "string":
        na = np.nan if spec["na_value"] == "nan" else pd.NA
        return pd.StringDtype(storage=spec["storage"], na_value=na)
    if kind == "datetime64" and "tz" in spec:
        return pd.DatetimeTZDtype(spec["unit"], pa.lib.string_to_tzinfo(spec["tz"]))
    return pd.api.types.pandas_dtype(kind)


def same_dtype(left: Any, right: Any) -> bool:
    """Dtype equality that also compares categories' order and dtype (``==`` does not
    for unordered categoricals)."""
    if isinstance(left, pd.CategoricalDtype) and isinstance(right, pd.CategoricalDtype):
        return bool(left.ordered == right.ordered
                    and left.categories.dtype == right.categories.dtype
                    and left.categories.equals(right.categories))
    return bool(left == right)
