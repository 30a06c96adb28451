"""DataFrame <-> a tree of plain numpy arrays and attributes: the ``hdf`` format's layout.

This module knows pandas dtypes and nothing of HDF5; ``hdf.py`` maps the tree onto
groups (:class:`Node`) and datasets (:class:`Leaf`). Keeping the two apart means every
dtype decision lives in one place and the layout in ``docs/hdf-layout.md`` can be read
straight off this file. All work is vectorised (numpy / pyarrow buffers): no Python
loop ever runs per row.

A frame encodes to::

    Node(frame attrs, {"index": Node(index attrs, {"level_0": column, ...}),
                       "columns": Node({}, {name: column, ...})})

and a column to a :class:`Leaf` (one dataset) or a :class:`Node` (a group of datasets),
tagged by its ``kind`` attribute.
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from prefect_ds._errors import UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds._storage.labels import level_values

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    # A column's values, as handed to the DataFrame / Index constructors.
    ArrayLike = Union[np.ndarray, pd.api.extensions.ExtensionArray]  # noqa: UP007
else:
    np = lazy("numpy")
    pd = lazy("pandas")
    pa = lazy("pyarrow")

LAYOUT = "prefect-ds frame"
LAYOUT_VERSION = 1



class LayoutError(ValueError):
    """Stored arrays or attributes do not match the layout (the file is damaged)."""


@dataclass
class Leaf:
    """One array: an HDF5 dataset with attributes."""

    data: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Node:
    """Named members with attributes: an HDF5 group."""

    attrs: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Leaf | Node] = field(default_factory=dict)


Tree = Union[Leaf, Node]  # noqa: UP007

@functools.cache
def _masked_arrays() -> tuple[type[Any], ...]:
    return (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


# --------------------------------------------------------------------------- encode


def encode_frame(df: pd.DataFrame) -> Node:
    """The tree for ``df``; raises :class:`UnsupportedFrameError` before any I/O."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"the hdf format writes pandas DataFrames, got {type(df).__name__}")
    names = _column_names(df)
    attrs: dict[str, Any] = {
        "layout": LAYOUT,
        "layout_version": LAYOUT_VERSION,
        "nrows": len(df),
        "columns": names,
        "columns_dtype": "object" if df.columns.dtype == object else (
            "range" if isinstance(df.columns, pd.RangeIndex) else "str"),
    }
    if df.columns.name is not None:
        attrs["columns_name"] = _label(df.columns.name, "the column index's name")
    columns = Node()
    for position, name in enumerate(names):
        series = df.iloc[:, position]
        columns.members[name] = encode_column(series, f"column {name!r}")
    return Node(attrs, {"index": _encode_index(df.index), "columns": columns})


@functools.cache
def _default_str() -> Any:
    """What ``pd.Index(names)`` makes of strings (taken once, on first use)."""
    return pd.Index(["text"]).dtype


def _column_names(df: pd.DataFrame) -> list[str]:
    columns = df.columns
    if isinstance(columns, pd.MultiIndex):
        raise UnsupportedFrameError(
            "the hdf format cannot store MultiIndex columns; flatten them first, e.g. "
            "df.columns = ['_'.join(map(str, c)) for c in df.columns]"
        )
    empty_range = isinstance(columns, pd.RangeIndex) and not len(columns)
    if not empty_range and columns.dtype != object and columns.dtype != _default_str():
        raise UnsupportedFrameError(
            f"the hdf format needs string column names, but the column index has dtype "
            f"{columns.dtype}; rename them first, e.g. df.columns = df.columns.astype(str)"
        )
    names = list(columns)
    for name in names:
        if not isinstance(name, str):
            raise UnsupportedFrameError(
                f"column {name!r} has a {type(name).__name__} name; the hdf format needs "
                f"string names. Rename it, e.g. df = df.rename(columns={{{name!r}: "
                f"{str(name)!r}}})"
            )
        if name in ("", ".") or "/" in name or "\x00" in name:
            raise UnsupportedFrameError(
                f"column {name!r} cannot be an HDF5 dataset name (it is empty, '.', or holds "
                f"'/' or NUL); rename it, e.g. df = df.rename(columns={{{name!r}: 'x'}})"
            )
    if columns.has_duplicates:
        dupes = sorted(set(columns[columns.duplicated()]))
        raise UnsupportedFrameError(
            f"duplicate column names {dupes}; the hdf format stores one dataset per name. "
            f"Rename or drop the duplicates first."
        )
    return names


def _label(value: Any, what: str) -> str | int:
    """A name as an HDF5 attribute: text, or an integer (stored as an int64 attribute)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and (
            -(2**63) <= int(value) < 2**63):
        return int(value)
    if not isinstance(value, str):
        raise UnsupportedFrameError(
            f"{what} is {value!r}; the hdf format stores only string or integer names (or "
            f"None). Rename it to a string first."
        )
    return value


def _encode_index(index: pd.Index) -> Node:
    if isinstance(index, pd.RangeIndex):
        attrs: dict[str, Any] = {
            "kind": "range", "start": index.start, "stop": index.stop, "step": index.step,
        }
        if index.name is not None:
            attrs["name"] = _label(index.name, "the index name")
        return Node(attrs)
    node = Node({"kind": "levels", "nlevels": index.nlevels})
    for level in range(index.nlevels):
        values = level_values(index, level)
        what = f"index level {level} ({values.name!r})"
        column = encode_column(pd.Series(values, copy=False), what)
        if values.name is not None:
            column.attrs["name"] = _label(values.name, f"the name of {what}")
        freq = getattr(values, "freqstr", None)
        if freq is not None:  # DatetimeIndex / TimedeltaIndex with a frequency
            column.attrs["freq"] = freq
        node.members[f"level_{level}"] = column
    return node


def encode_column(series: pd.Series, what: str) -> Tree:
    """One column (or index level) as a :class:`Leaf` or :class:`Node` tagged by ``kind``."""
    try:
        return _encode_column(series, what)
    except UnicodeError:
        raise UnsupportedFrameError(
            f"{what} holds text that is not valid Unicode (a lone surrogate); the hdf format "
            f"stores UTF-8. Replace those characters first, e.g. "
            f".str.encode('utf-8', 'replace').str.decode('utf-8')"
        ) from None


def _encode_column(series: pd.Series, what: str) -> Tree:
    dtype = series.dtype
    label = str(dtype)
    if isinstance(dtype, pd.CategoricalDtype):
        categories = encode_column(pd.Series(dtype.categories, copy=False), f"{what} categories")
        codes = Leaf(np.asarray(series.cat.codes))
        attrs = {"kind": "category", "dtype": label, "ordered": bool(dtype.ordered)}
        return Node(attrs, {"codes": codes, "categories": categories})
    if isinstance(dtype, pd.DatetimeTZDtype):
        values = np.asarray(series.array.view("i8"))  # UTC instants
        return Leaf(values, {"kind": "datetime", "dtype": label, "unit": dtype.unit,
                             **_tz_attrs(dtype, what)})
    if isinstance(dtype, pd.StringDtype):
        arrow = pa.array(series.array, type=pa.large_string())
        na = "nan" if dtype.na_value is not pd.NA else "NA"
        return _encode_strings(arrow, {"kind": "string", "dtype": label,
                                       "storage": dtype.storage, "na_value": na})
    if isinstance(series.array, _masked_arrays()):
        array = series.array
        numpy_dtype: np.dtype[Any] = getattr(array.dtype, "numpy_dtype")  # noqa: B009
        values = array.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0))
        return Node({"kind": "masked", "dtype": label},
                    {"values": Leaf(values), "mask": Leaf(np.asarray(array.isna()))})
    if isinstance(dtype, np.dtype):
        if dtype.kind in "biufc":
            return Leaf(series.to_numpy(), {"kind": "plain", "dtype": label})
        if dtype.kind in "mM":
            unit = np.datetime_data(dtype.str)[0]
            kind = "datetime" if dtype.kind == "M" else "timedelta"
            return Leaf(series.to_numpy().view("i8"), {"kind": kind, "dtype": label, "unit": unit})
        if dtype.kind == "O":
            return _encode_object_strings(series.to_numpy(), what)
    raise UnsupportedFrameError(
        f"{what} has dtype {label}, which the hdf format cannot store exactly. Convert it "
        f"first (e.g. .astype('float64'), .astype('str'), .astype('category')) or use the "
        f"parquet format."
    )


def _encode_object_strings(values: np.ndarray, what: str) -> Node:
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred not in ("string", "empty"):
        raise UnsupportedFrameError(
            f"{what} is an object column holding {inferred} values; the hdf format stores "
            f"object columns only when every value is a str (or missing). Convert it first, "
            f"e.g. .astype('str') for text or pd.to_numeric(...) for numbers, or use the "
            f"parquet format."
        )
    arrow = pa.array(values, type=pa.large_string(), from_pandas=True)
    na = "None"
    if arrow.null_count:
        first = values[int(np.argmax(np.asarray(arrow.is_null())))]
        na = "None" if first is None else "NA" if first is pd.NA else "nan"
    return _encode_strings(arrow, {"kind": "string", "dtype": "object",
                                   "storage": "object", "na_value": na})


def _encode_strings(arrow: pa.Array | pa.ChunkedArray, attrs: dict[str, Any]) -> Node:
    """UTF-8 bytes of every value in one blob, ``offsets`` (n + 1) and a missing ``mask``."""
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    n = len(arrow)
    _, offsets_buffer, data_buffer = arrow.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[arrow.offset: arrow.offset + n + 1]
    if n == 0:
        offsets = np.zeros(1, dtype=np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buffer, dtype=np.uint8)[start:stop] if stop > start else (
        np.zeros(0, dtype=np.uint8))
    if start:
        offsets = offsets - start
    mask = np.asarray(arrow.is_null(), dtype=bool)
    return Node(attrs, {"offsets": Leaf(offsets), "data": Leaf(data), "mask": Leaf(mask)})


def _tz_attrs(dtype: pd.DatetimeTZDtype, what: str) -> dict[str, str]:
    tz = dtype.tz
    if type(tz).__module__.split(".")[0] == "pytz":
        attrs = {"tz": str(getattr(tz, "zone", tz)), "tz_library": "pytz"}
    elif isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        attrs = {"tz": tz.key}
    elif tz is datetime.timezone.utc:
        attrs = {"tz": "UTC"}
    else:
        attrs = {"tz": str(tz)}
    try:
        same = _tz_dtype(dtype.unit, attrs) == dtype
    except Exception:
        same = False
    if not same:
        raise UnsupportedFrameError(
            f"{what} has time zone {tz!r}, which the hdf format cannot restore exactly; "
            f"convert it to a named zone first, e.g. .dt.tz_convert('Europe/Paris') or "
            f".dt.tz_convert('UTC')"
        )
    return attrs


def _tz_dtype(unit: str, attrs: Mapping[str, Any]) -> pd.DatetimeTZDtype:
    name = str(attrs["tz"])
    if attrs.get("tz_library") == "pytz":
        import pytz  # type: ignore[import-untyped]

        return pd.DatetimeTZDtype(unit, pytz.timezone(name))
    return pd.DatetimeTZDtype(unit, name)


# --------------------------------------------------------------------------- decode


def frame_columns(attrs: Mapping[str, Any]) -> list[str]:
    """The stored column order (checking that the group is a complete frame)."""
    if attrs.get("layout") != LAYOUT:
        raise LayoutError(f"the group is not a prefect-ds frame (layout {attrs.get('layout')!r})")
    version = _int(attrs, "layout_version")
    if version > LAYOUT_VERSION:
        raise LayoutError(
            f"layout version {version} is newer than this prefect-ds reads ({LAYOUT_VERSION}); "
            f"upgrade prefect-ds"
        )
    if not bool(attrs.get("complete", False)):
        raise LayoutError("the frame was never completed (no 'complete' attribute)")
    return [str(name) for name in np.atleast_1d(attrs.get("columns", np.array([], dtype=object)))]


def decode_frame(root: Node, columns: Iterable[str]) -> pd.DataFrame:
    """The frame stored in ``root``, with the ``columns`` (already loaded) in that order."""
    nrows = _int(root.attrs, "nrows")
    index_node = root.members.get("index")
    if not isinstance(index_node, Node):
        raise LayoutError("the 'index' group is missing")
    index = _decode_index(index_node, nrows)
    stored = root.members.get("columns")
    if not isinstance(stored, Node):
        raise LayoutError("the 'columns' group is missing")
    data: dict[str, ArrayLike | pd.Series] = {}
    for name in columns:
        node = stored.members.get(name)
        if node is None:
            raise LayoutError(f"the dataset of column {name!r} is missing")
        values = decode_column(node, f"column {name!r}", nrows)
        if values.dtype == object:  # else pandas 3 would turn object columns of str into str
            data[name] = pd.Series(values, index=index, dtype=object, copy=False)
        else:
            data[name] = values
    names = list(data)
    column_kind = root.attrs.get("columns_dtype")
    column_name = _name_attr(root.attrs, "columns_name")
    column_index: pd.Index = (
        pd.RangeIndex(0, name=column_name) if column_kind == "range" and not names
        else pd.Index(names, dtype=object if column_kind == "object" else _default_str(),
                      name=column_name))
    df: pd.DataFrame = pd.DataFrame(data, index=index, copy=False)
    df.columns = column_index
    return df


def _decode_index(node: Node, nrows: int) -> pd.Index:
    kind = node.attrs.get("kind")
    if kind == "range":
        index: pd.Index = pd.RangeIndex(_int(node.attrs, "start"), _int(node.attrs, "stop"),
                              _int(node.attrs, "step"), name=_name(node.attrs))
        if len(index) != nrows:
            raise LayoutError(f"the range index has {len(index)} rows, the frame {nrows}")
        return index
    if kind != "levels":
        raise LayoutError(f"unknown index kind {kind!r}")
    levels: list[pd.Index] = []
    for level in range(_int(node.attrs, "nlevels")):
        member = node.members.get(f"level_{level}")
        if member is None:
            raise LayoutError(f"index level {level} is missing")
        values = decode_column(member, f"index level {level}", nrows)
        level_index: Any = pd.Index(
            values, dtype=values.dtype, name=_name(member.attrs), copy=False)
        freq = member.attrs.get("freq")
        if freq is not None and isinstance(level_index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            level_index = type(level_index)(level_index, freq=str(freq))  # checks the values
        levels.append(level_index)
    if len(levels) == 1:
        return levels[0]
    multi: pd.Index = pd.MultiIndex.from_arrays(levels)
    return multi


def decode_column(tree: Tree, what: str, nrows: int | None) -> ArrayLike:
    """Inverse of :func:`encode_column`; ``nrows=None`` accepts any length."""
    kind = tree.attrs.get("kind")
    try:
        if kind == "plain" and isinstance(tree, Leaf):
            return _checked(tree.data, np.dtype(str(tree.attrs["dtype"])), nrows, what)
        if kind in ("datetime", "timedelta") and isinstance(tree, Leaf):
            values = _checked(tree.data, np.dtype("i8"), nrows, what)
            unit = str(tree.attrs["unit"])
            if kind == "timedelta":
                return values.view(f"m8[{unit}]")
            stamps = values.view(f"M8[{unit}]")
            if "tz" not in tree.attrs:
                return stamps
            tz = _tz_dtype(unit, tree.attrs).tz
            utc = pd.DatetimeIndex(stamps, copy=False).tz_localize("UTC")
            aware: ArrayLike = utc.tz_convert(tz).array
            return aware
        if kind == "masked" and isinstance(tree, Node):
            masked: Any = pd.api.types.pandas_dtype(str(tree.attrs["dtype"]))
            if not issubclass(masked.construct_array_type(), _masked_arrays()):
                raise LayoutError(f"{what}: {masked} is not a nullable numeric dtype")
            values = _checked(_leaf(tree, "values", what), masked.numpy_dtype, nrows, what)
            mask = _checked(_leaf(tree, "mask", what), np.dtype(bool), nrows, what)
            array: ArrayLike = masked.construct_array_type()(values, mask)
            return array
        if kind == "string" and isinstance(tree, Node):
            return _decode_strings(tree, what, nrows)
        if kind == "category" and isinstance(tree, Node):
            codes = _leaf(tree, "codes", what)
            if codes.dtype.kind != "i" or codes.ndim != 1:
                raise LayoutError(f"{what}: codes have dtype {codes.dtype}, expected integers")
            _length(codes, nrows, what)
            categories_node = tree.members.get("categories")
            if categories_node is None:
                raise LayoutError(f"{what}: the categories are missing")
            categories = decode_column(categories_node, f"{what} categories", None)
            ordered = bool(tree.attrs.get("ordered", False))
            categorical: Any = pd.CategoricalDtype(
                pd.Index(categories, dtype=categories.dtype, copy=False), ordered=ordered)
            result: ArrayLike = pd.Categorical.from_codes(codes, dtype=categorical)
            return result
    except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        if isinstance(exc, LayoutError):
            raise
        raise LayoutError(f"{what}: {type(exc).__name__}: {exc}") from exc
    raise LayoutError(f"{what}: unknown column kind {kind!r} for a {type(tree).__name__}")


def _decode_strings(node: Node, what: str, nrows: int | None) -> ArrayLike:
    offsets = _leaf(node, "offsets", what)
    data = _leaf(node, "data", what)
    mask = _checked(_leaf(node, "mask", what), np.dtype(bool), nrows, what)
    n = len(mask)
    if offsets.dtype != np.int64 or offsets.shape != (n + 1,):
        raise LayoutError(f"{what}: offsets have dtype {offsets.dtype} and shape "
                          f"{offsets.shape}, expected int64 and ({n + 1},)")
    if data.dtype != np.uint8 or data.ndim != 1:
        raise LayoutError(f"{what}: the string data has dtype {data.dtype}, expected uint8")
    # Checked before pyarrow sees the buffers: bad offsets would read out of bounds.
    if offsets[0] != 0 or offsets[-1] != len(data) or (n and np.any(offsets[1:] < offsets[:-1])):
        raise LayoutError(f"{what}: string offsets are inconsistent with {len(data)} data bytes")
    validity = pa.py_buffer(np.packbits(~mask, bitorder="little")) if mask.any() else None
    arrow = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), validity)  # null count: lazily
    storage = node.attrs.get("storage")
    na = node.attrs.get("na_value")
    if storage in ("pyarrow", "python"):
        dtype: Any = pd.StringDtype(storage, na_value=pd.NA if na == "NA" else np.nan)
        if storage == "python":
            arrow.validate(full=True)  # the python copy does not check UTF-8 itself
        result: ArrayLike = dtype.__from_arrow__(arrow)
        return result
    if storage != "object":
        raise LayoutError(f"{what}: unknown string storage {storage!r}")
    values = arrow.to_numpy(zero_copy_only=False)
    if na != "None" and arrow.null_count:
        values[mask] = pd.NA if na == "NA" else np.nan
    return np.asarray(values, dtype=object)


def _leaf(node: Node, name: str, what: str) -> np.ndarray:
    member = node.members.get(name)
    if not isinstance(member, Leaf):
        raise LayoutError(f"{what}: dataset {name!r} is missing")
    return member.data


def _length(values: np.ndarray, nrows: int | None, what: str) -> None:
    if nrows is not None and len(values) != nrows:
        raise LayoutError(f"{what} has {len(values)} rows, the frame {nrows}")


def _checked(values: np.ndarray, dtype: np.dtype[Any], nrows: int | None,
             what: str) -> np.ndarray:
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        raise LayoutError(f"{what}: expected a one-dimensional dataset")
    if values.dtype != dtype:
        raise LayoutError(f"{what}: stored as {values.dtype}, the layout says {dtype}")
    _length(values, nrows, what)
    return values


def _int(attrs: Mapping[str, Any], name: str) -> int:
    value = attrs.get(name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise LayoutError(f"attribute {name!r} is {value!r}, expected an integer")
    return int(value)


def _name(attrs: Mapping[str, Any]) -> str | int | None:
    return _name_attr(attrs, "name")


def _name_attr(attrs: Mapping[str, Any], attr: str) -> str | int | None:
    name = attrs.get(attr)
    if name is None:
        return None
    if isinstance(name, (int, np.integer)) and not isinstance(name, (bool, np.bool_)):
        return int(name)  # an integer name such as 0
    return str(name)
