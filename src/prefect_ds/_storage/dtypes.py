"""Exact pandas dtypes as JSON, for formats that keep their own schema record.

:func:`describe` turns a dtype into a small JSON object and :func:`from_spec` turns it
back into an equal dtype: numpy dtypes, pandas' nullable ``Int*``/``Float*``/``boolean``,
``StringDtype`` with its storage and missing-value marker, datetimes with their unit and
time zone, and categoricals with their categories (strings, numbers, bools or datetimes)
and order.

A time zone is recorded with the library it comes from (:func:`zone_spec`): a ``pytz``,
``zoneinfo`` or ``dateutil`` zone, a ``datetime.timezone`` or a dateutil ``tzoffset``
comes back as the same kind of object, so the dtype compares equal, not only the instants.
A zone that cannot be rebuilt that way (``dateutil.tz.tzlocal()``, a custom ``tzinfo``)
makes :func:`describe` return ``None``.
"""

from __future__ import annotations

import contextlib
import datetime
import zoneinfo
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect_ds._lazy import lazy

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
else:
    np = lazy("numpy")
    pd = lazy("pandas")
    pa = lazy("pyarrow")

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
        spec: dict[str, Any] = {"dtype": "datetime64", "unit": dtype.unit,
                                "tz": pa.lib.tzinfo_to_string(dtype.tz)}
        # a tzoffset's name may be one no zone library knows
        with contextlib.suppress(Exception):
            if same_dtype(from_spec(spec), dtype):
                return spec  # the zone's name alone gives back an equal zone object
        zone = zone_spec(dtype.tz)
        if zone is None:
            return None
        spec["zone"] = zone
        return spec if same_dtype(from_spec(spec), dtype) else None
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
    if kind == "datetime64" and "zone" in spec:
        return pd.DatetimeTZDtype(spec["unit"], zone_from_spec(spec["zone"]))
    if kind == "datetime64" and "tz" in spec:  # recorded before zones carried their library
        return pd.DatetimeTZDtype(spec["unit"], pa.lib.string_to_tzinfo(spec["tz"]))
    return pd.api.types.pandas_dtype(kind)


def same_dtype(left: Any, right: Any) -> bool:
    """Dtype equality that also compares categories' order and dtype (``==`` does not
    for unordered categoricals) and the kind of time zone object (``==`` calls a dateutil
    offset equal to a ``datetime.timezone`` of the same offset)."""
    if isinstance(left, pd.CategoricalDtype) and isinstance(right, pd.CategoricalDtype):
        return bool(left.ordered == right.ordered
                    and same_dtype(left.categories.dtype, right.categories.dtype)
                    and left.categories.equals(right.categories))
    if isinstance(left, pd.DatetimeTZDtype) and isinstance(right, pd.DatetimeTZDtype):
        return bool(left == right and type(left.tz) is type(right.tz)
                    and str(left) == str(right))
    return bool(left == right)


def zone_spec(tz: Any) -> dict[str, Any] | None:
    """A JSON record of the time zone object ``tz`` and its library, or ``None``."""
    module = type(tz).__module__.split(".")[0]
    if module == "pytz" and getattr(tz, "zone", None):
        return {"library": "pytz", "name": str(tz.zone)}
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        return {"library": "zoneinfo", "name": tz.key}
    if isinstance(tz, datetime.timezone):
        offset = tz.utcoffset(None)
        return {"library": "datetime", "seconds": offset.total_seconds(),
                "name": None if tz is datetime.timezone.utc else tz.tzname(None)}
    if module == "dateutil":
        import dateutil.tz  # type: ignore[import-untyped]

        if isinstance(tz, dateutil.tz.tzutc):
            return {"library": "dateutil", "utc": True}
        if isinstance(tz, dateutil.tz.tzoffset):
            offset = tz.utcoffset(None)
            return {"library": "dateutil", "seconds": offset.total_seconds() if offset else 0,
                    "name": tz.tzname(None)}
        filename = getattr(tz, "_filename", None)
        if isinstance(tz, dateutil.tz.tzfile) and isinstance(filename, str):
            return {"library": "dateutil", "name": filename.rpartition("zoneinfo/")[2]}
    return None


def zone_from_spec(spec: Mapping[str, Any]) -> Any:
    """The time zone object :func:`zone_spec` recorded."""
    library = spec["library"]
    if library == "pytz":
        import pytz  # type: ignore[import-untyped]

        return pytz.timezone(spec["name"])
    if library == "zoneinfo":
        return zoneinfo.ZoneInfo(spec["name"])
    if library == "datetime":
        if spec["name"] is None:
            return datetime.timezone.utc
        delta = datetime.timedelta(seconds=spec["seconds"])
        return (datetime.timezone(delta) if spec["name"] == datetime.timezone(delta).tzname(None)
                else datetime.timezone(delta, spec["name"]))
    if library == "dateutil":
        import dateutil.tz

        if spec.get("utc"):
            return dateutil.tz.tzutc()
        if "seconds" in spec:
            return dateutil.tz.tzoffset(spec["name"], spec["seconds"])
        return pd.DatetimeTZDtype("ns", f"dateutil/{spec['name']}").tz
    raise ValueError(f"unknown time zone library {library!r}")
