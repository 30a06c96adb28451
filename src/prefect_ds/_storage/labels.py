"""Column labels and index names as JSON, exactly: what a format whose column names are
text (Arrow fields, a CSV header) records beside the data to give the labels back.

:func:`encode_labels` records an :class:`pandas.Index` (or ``MultiIndex``) of labels: each
level's dtype (:func:`~prefect_ds._storage.dtypes.describe`: categoricals with their
categories, periods with their frequency, datetimes with their zone) and its values as
JSON (numbers, text, booleans, ``None``, NaN, tuples; datetimes, timedeltas and periods
as integers of their unit). :func:`decode_labels` rebuilds the index. The record is checked
by decoding it at once: labels that would not come back equal, with equal dtypes and
value types, raise :class:`~prefect_ds.UnsupportedFrameError` before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds._storage.dtypes import describe, from_spec, same_dtype

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy("numpy")
    pd = lazy("pandas")


def level_values(index: pd.Index, i: int) -> pd.Index:
    """The values of level ``i`` by position. ``index.get_level_values(0)`` would take a
    level *named* 0 first, wherever it is."""
    if not isinstance(index, pd.MultiIndex):
        return index
    values: pd.Index = getattr(index, "_get_level_values")(i)  # noqa: B009 - pandas' own
    return values


class _NotJson(Exception):
    """A label value that has no exact JSON form."""


def _value(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return {"int": int(v)} if type(v) is not int else v
    if isinstance(v, (float, np.floating)):
        if type(v) is not float:
            raise _NotJson(v)
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, tuple):
        return {"tuple": [_value(x) for x in v]}
    raise _NotJson(v)


def _from_value(v: Any) -> Any:
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_from_value(x) for x in v["tuple"])
        if "int" in v:
            return np.int64(v["int"])
        return float(v["float"])
    return v


def _level(values: pd.Index, what: str) -> dict[str, Any]:
    dtype = values.dtype
    spec = describe(dtype)
    if spec is None:
        raise UnsupportedFrameError(
            f"{what} have dtype {dtype}, which cannot be recorded exactly; convert them, "
            f"e.g. df.columns = df.columns.astype(str)"
        )
    stored: Any
    if isinstance(dtype, pd.CategoricalDtype):
        stored = [int(c) for c in np.asarray(values.codes)]  # type: ignore[attr-defined]
    elif isinstance(dtype, pd.PeriodDtype):
        stored = [int(v) for v in values.asi8]  # type: ignore[attr-defined]
    elif dtype.kind in "mM":
        stored = [int(v) for v in values.view("i8")]
    else:
        try:
            stored = [_value(v) for v in values.tolist()]
        except _NotJson as exc:
            raise UnsupportedFrameError(
                f"{what} hold {exc.args[0]!r} ({type(exc.args[0]).__name__}), which cannot "
                f"be recorded exactly; use text, numbers, booleans or tuples of these, e.g. "
                f"df.columns = df.columns.map(str)"
            ) from None
    return {"dtype": spec, "values": stored, "name": _name(values.name, what)}


def _name(name: Any, what: str) -> Any:
    try:
        return _value(name)
    except _NotJson:
        raise UnsupportedFrameError(
            f"the name {name!r} of {what} cannot be recorded exactly; use a str, int or "
            f"None name"
        ) from None


def encode_labels(labels: pd.Index, what: str) -> dict[str, Any]:
    """The JSON record of ``labels`` (``what`` names them in errors), checked to decode
    back to an equal index."""
    if isinstance(labels, pd.RangeIndex):
        record: dict[str, Any] = {"range": [labels.start, labels.stop, labels.step],
                                  "name": _name(labels.name, what)}
        return record
    if isinstance(labels, pd.MultiIndex):
        levels = [_level(level_values(labels, i), f"{what} (level {i})")
                  for i in range(labels.nlevels)]
        record = {"levels": levels}
    else:
        record = {"levels": [_level(labels, what)]}
    back = decode_labels(record)
    if not same_labels(back, labels):
        raise UnsupportedFrameError(
            f"{what} {list(labels)[:5]!r} cannot be recorded exactly; make them one simple "
            f"type first, e.g. df.columns = df.columns.map(str)"
        )
    return record


def _decode_level(level: Mapping[str, Any]) -> pd.Index:
    dtype = from_spec(level["dtype"])
    values = level["values"]
    name = _from_value(level["name"])
    index: pd.Index
    if isinstance(dtype, pd.CategoricalDtype):
        index = pd.CategoricalIndex(pd.Categorical.from_codes(values, dtype=dtype), name=name)
    elif isinstance(dtype, pd.PeriodDtype):
        ordinals = np.asarray(values, dtype="i8")
        index = pd.PeriodIndex(pd.arrays.PeriodArray(ordinals, dtype=dtype), name=name)
    elif isinstance(dtype, pd.DatetimeTZDtype):
        stamps = pd.DatetimeIndex(np.asarray(values, dtype="i8").view(f"M8[{dtype.unit}]"))
        index = stamps.tz_localize("UTC").tz_convert(dtype.tz).rename(name)
    elif isinstance(dtype, np.dtype) and dtype.kind in "mM":
        index = pd.Index(np.asarray(values, dtype="i8").view(dtype), name=name)
    elif dtype == np.dtype("O"):
        index = pd.Index([_from_value(v) for v in values], dtype=object, name=name,
                         tupleize_cols=False)
    else:
        index = pd.Index([_from_value(v) for v in values], dtype=dtype, name=name)
    return index


def decode_labels(record: Mapping[str, Any]) -> pd.Index:
    """The index :func:`encode_labels` recorded."""
    if "range" in record:
        start, stop, step = record["range"]
        span: pd.Index = pd.RangeIndex(start, stop, step, name=_from_value(record["name"]))
        return span
    levels = [_decode_level(level) for level in record["levels"]]
    if len(levels) == 1:
        return levels[0]
    multi: pd.Index = pd.MultiIndex.from_arrays(levels)
    return multi


def same_labels(left: pd.Index, right: pd.Index) -> bool:
    """Equal values, dtypes, names and value types, level by level."""
    if type(left) is not type(right) or left.nlevels != right.nlevels:
        return False
    if list(left.names) != list(right.names) or [type(n) for n in left.names] != [
            type(n) for n in right.names]:
        return False
    for i in range(left.nlevels):
        a, b = level_values(left, i), level_values(right, i)
        if not (same_dtype(a.dtype, b.dtype) and a.equals(b)):
            return False
        if a.dtype == object and [type(v) for v in a] != [type(v) for v in b]:
            return False
    return True
