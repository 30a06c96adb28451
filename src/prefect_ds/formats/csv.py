"""CSV that reads back exactly: pyarrow's fast writer plus a JSON schema sidecar.

``data.csv`` stays a plain, readable CSV any tool can open. Beside it,
``data.csv.schema.json`` records what a CSV cannot: every column's exact pandas dtype
(nullable ints and booleans, datetimes with their unit and time zone, categoricals with
their categories and order, pandas' string dtypes), the index, the column order, the row
count and the data file's size in bytes. Reading parses the CSV with pyarrow using the
recorded column types (nothing is inferred) and restores the dtypes, so
``read(write(df)) == df``. A size or row count that disagrees with the sidecar raises
:class:`~prefect_ds.CorruptTargetError` instead of returning a wrong frame.

Missing values: a null is an empty, unquoted field; an empty string is ``""``. Every
string value is quoted, so the two never mix. Tz-aware datetimes are written in UTC
(``...Z``). Timedeltas, and datetimes outside what pyarrow's parser reads (years 1..9999),
are written as integer counts of their unit. docs/fidelity.md has the details.

A CSV with no sidecar (written by someone else) is read exactly as
``pandas.read_csv(path, **read_kwargs)`` reads it.

Options, merged over the class-level ``default_read_kwargs`` / ``default_write_kwargs``:

* write: ``sep`` (one character), ``header`` (bool) and ``index`` (bool; ``False`` drops
  the index) go to pyarrow's writer. Any other option, or a value pyarrow cannot honour,
  writes with ``DataFrame.to_csv(**options)`` instead (kedro-style ``index=False``
  unless given). Such a file still gets a sidecar with its size, but no dtypes: it reads
  back with ``pandas.read_csv(**read_kwargs)``.
* read: ``sep`` / ``delimiter`` / ``header`` that agree with the sidecar keep the exact
  path. Any other option means "parse this with pandas": the file is read with
  ``pandas.read_csv(**read_kwargs)`` (after the size check) and dtypes are not restored.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from typing import IO, Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from .._errors import CorruptTargetError
from .._files import FileFormat, filesystem, open_for_read, staged
from ..hookspecs import Register, hookimpl
from ._dtypes import describe, from_spec

SIDECAR_SUFFIX = ".schema.json"
SCHEMA_VERSION = 1
_WRITE_ARROW_KEYS = frozenset({"sep", "header", "index"})
_READ_ARROW_KEYS = frozenset({"sep", "delimiter", "header"})
_FORBIDDEN_DELIMITERS = frozenset({'"', "\n", "\r"})
_JSON_NAMES = (str, int, float, bool, type(None))


# --------------------------------------------------------------------------- dtypes


def _dtype_spec(dtype: Any, what: str) -> dict[str, Any]:
    """The sidecar's record of ``dtype``; a dtype CSV cannot hold exactly is a TypeError."""
    spec = describe(dtype)
    if spec is None or _arrow_type(dtype) is None:
        raise TypeError(
            f"{what} has dtype {dtype}, which the csv format cannot store exactly; "
            f"convert it (for example .astype(str)) or use the parquet format"
        )
    return spec


def _arrow_type(dtype: Any) -> pa.DataType | None:
    """The type pyarrow parses a column of ``dtype`` with (a category: its values' type)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return pa.array(dtype.categories).type
    if dtype == np.dtype("O"):
        return pa.large_string()
    try:
        field = pa.Schema.from_pandas(pd.DataFrame({"x": pd.Series([], dtype=dtype)}),
                                      preserve_index=False).field("x")
    except (pa.ArrowException, TypeError, ValueError):
        return None
    kind = field.type
    ok = (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
          or pa.types.is_string(kind) or pa.types.is_large_string(kind)
          or pa.types.is_timestamp(kind) or pa.types.is_duration(kind))
    return kind if ok and not pa.types.is_float16(kind) else None


def _to_pandas(column: pa.ChunkedArray, spec: Mapping[str, Any], what: str, location: str) -> Any:
    """The values of one parsed column as an array of exactly the dtype ``spec`` records."""
    dtype = from_spec(spec)
    if spec.get("stored_as") == "int64":
        column = column.cast(_arrow_type(dtype))
    if isinstance(dtype, pd.CategoricalDtype):
        value_set = pa.array(dtype.categories)
        positions = pc.index_in(column, value_set=value_set)
        unknown = pc.and_(pc.is_null(positions), pc.is_valid(column))
        if pc.any(unknown).as_py():
            bad = column.filter(unknown)[0].as_py()
            raise CorruptTargetError(
                f"{location}: {what} holds {bad!r}, which is not one of the categories "
                f"recorded in its schema sidecar. Delete the target and write it again."
            )
        codes = positions.fill_null(-1).to_numpy().astype(
            np.min_scalar_type(-max(len(value_set), 1)), copy=False)
        return pd.Categorical.from_codes(codes, dtype=dtype)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and hasattr(dtype, "__from_arrow__"):
        return dtype.__from_arrow__(column)
    if column.null_count and dtype.kind in "iub":
        raise CorruptTargetError(
            f"{location}: {what} has empty fields, but its recorded dtype {dtype} cannot "
            f"hold missing values. Delete the target and write it again."
        )
    if dtype == np.dtype("O"):
        # a Series keeps the object dtype; a bare array of strings would be inferred as str
        return pd.Series(column.to_pylist(), dtype=object)
    values = column.to_numpy()
    return values if values.dtype == dtype else values.astype(dtype)


# --------------------------------------------------------------------------- layout


def _check_columns(df: pd.DataFrame) -> None:
    """Reject what a CSV header cannot hold, before anything is written."""
    if isinstance(df.columns, pd.MultiIndex):
        raise TypeError(
            "the csv format cannot store MultiIndex columns; flatten them first, e.g. "
            "df.columns = ['_'.join(map(str, c)) for c in df.columns], or use parquet"
        )
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise TypeError(
            f"the csv format needs string column names; got {bad[:5]!r}. Rename them, "
            f"e.g. df.columns = df.columns.map(str)"
        )
    if df.columns.has_duplicates:
        dupes = sorted(set(df.columns[df.columns.duplicated()]))
        raise ValueError(
            f"the csv format needs unique column names; duplicated: {dupes[:5]!r}. "
            f"Rename or drop the duplicates first"
        )


def _json_name(name: Any, what: str) -> Any:
    if not isinstance(name, _JSON_NAMES) or (isinstance(name, float) and not np.isfinite(name)):
        raise TypeError(
            f"the csv format records {what} as JSON; {name!r} cannot be. Use a string name"
        )
    return name


def _index_layout(
    df: pd.DataFrame, keep: bool
) -> tuple[dict[str, Any], list[tuple[str, Any, dict[str, Any]]]]:
    """The sidecar's index entry and the (csv column name, values, level entry) to store."""
    index = df.index
    if not keep:
        return {"kind": "none"}, []
    if isinstance(index, pd.RangeIndex):
        return {"kind": "range", "start": index.start, "stop": index.stop,
                "step": index.step, "name": _json_name(index.name, "the index name")}, []
    taken = set(df.columns)
    levels: list[dict[str, Any]] = []
    arrays: list[tuple[str, Any, dict[str, Any]]] = []
    for i in range(index.nlevels):
        level = index.get_level_values(i)
        name = _json_name(index.names[i], "index names")
        column = name if isinstance(name, str) and name not in taken else f"__index_level_{i}__"
        while column in taken:
            column = f"_{column}"
        taken.add(column)
        entry = {"name": name, "column": column,
                 **_dtype_spec(level.dtype, f"index level {name!r}")}
        freq = getattr(index, "freqstr", None) if index.nlevels == 1 else None
        if freq:
            entry["freq"] = freq
        levels.append(entry)
        arrays.append((column, level, entry))
    return {"kind": "columns", "levels": levels}, arrays


def _arrow_column(values: Any, spec: dict[str, Any], what: str) -> pa.ChunkedArray | pa.Array:
    """The Arrow array written for one column; may mark ``spec`` as stored as integers."""
    dtype = values.dtype
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} (dtype {dtype}) cannot be written as CSV: {exc}. Convert it to a "
            f"string or numeric dtype first"
        ) from exc
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if dtype == np.dtype("O") and not (
        pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
        or pa.types.is_null(array.type)
    ):
        raise TypeError(
            f"{what} has object dtype holding {array.type} values; the csv format stores "
            f"object columns of strings only. Convert it with .astype(...) first"
        )
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        # in UTC: a local offset with seconds (pre-1900 mean times) would be cut to minutes
        array = array.cast(pa.timestamp(array.type.unit, "UTC"))
    if pa.types.is_timestamp(array.type) and not _text_safe(array):
        spec["stored_as"] = "int64"
        array = array.cast(pa.int64())
    return array


# pyarrow parses timestamps in years 1..9999 only, and a nanosecond one only from a whole
# second that fits in int64; columns reaching beyond (one day of margin for time zone
# offsets) are written as integer counts of their unit instead of text.
_SAFE_SECONDS = (
    (pd.Timestamp("0001-01-02") - pd.Timestamp("1970-01-01").as_unit("s")).total_seconds(),
    (pd.Timestamp("9999-12-30") - pd.Timestamp("1970-01-01").as_unit("s")).total_seconds(),
)
_NS_SAFE_MIN = (pd.Timestamp.min + pd.Timedelta(days=1)).value


def _text_safe(array: pa.Array | pa.ChunkedArray) -> bool:
    if array.null_count == len(array):
        return True
    ints = array.cast(pa.int64())
    bounds = pc.min_max(ints)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[array.type.unit]
    if array.type.unit == "ns" and low < _NS_SAFE_MIN:
        return False
    return bool(_SAFE_SECONDS[0] * per_second <= low and high <= _SAFE_SECONDS[1] * per_second)


def _has_newline(array: pa.Array | pa.ChunkedArray) -> bool:
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return False
    return bool(pc.any(pc.match_substring_regex(array, r"[\r\n]")).as_py())


# --------------------------------------------------------------------------- format


class CsvFormat(FileFormat):
    """A readable CSV file plus a ``.schema.json`` sidecar that makes it exact."""

    name = "csv"
    suffixes = (".csv",)
    default_read_kwargs: ClassVar[dict[str, Any]] = {}
    default_write_kwargs: ClassVar[dict[str, Any]] = {}

    def sidecars(self, location: str) -> list[str]:
        return [location + SIDECAR_SUFFIX]

    # ---- write

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"the csv format writes pandas DataFrames, not {type(df).__name__}")
        options = {**self.default_write_kwargs, **kwargs}
        if _arrow_can_write(options):
            self._write_exact(df, location, options)
        else:
            self._write_pandas(df, location, options)

    def _write_exact(self, df: pd.DataFrame, location: str, options: Mapping[str, Any]) -> None:
        _check_columns(df)
        sep = options.get("sep", ",")
        header = bool(options.get("header", True))
        index_entry, index_arrays = _index_layout(df, bool(options.get("index", True)))
        names: list[str] = []
        arrays: list[pa.Array | pa.ChunkedArray] = []
        columns: list[dict[str, Any]] = []
        for column, level, entry in index_arrays:
            names.append(column)
            arrays.append(_arrow_column(level, entry, f"index level {column!r}"))
        for name, dtype in df.dtypes.items():
            what = f"column {name!r}"
            spec = {"name": name, **_dtype_spec(dtype, what)}
            columns.append(spec)
            names.append(str(name))
            arrays.append(_arrow_column(df[name], spec, what))
        newlines = any(_has_newline(a) for a in arrays) or any(
            "\n" in n or "\r" in n for n in names
        )
        doc: dict[str, Any] = {
            "prefect_ds_csv": SCHEMA_VERSION,
            "mode": "exact",
            "rows": len(df),
            "delimiter": sep,
            "header": header,
            "newlines_in_values": newlines,
            "csv_columns": names,
            "columns": columns,
            "columns_index": {"name": _json_name(df.columns.name, "the columns' name"),
                              **_dtype_spec(df.columns.dtype, "the column labels")},
            "index": index_entry,
        }
        table = pa.table(arrays, names=names) if arrays else None
        write_options = pcsv.WriteOptions(include_header=header, delimiter=sep)
        sidecar = self.sidecars(location)[0]
        with staged(sidecar, location, **self.storage_options) as (sidecar_temp, data_temp):
            if table is not None:
                pcsv.write_csv(table, data_temp, write_options=write_options)
            else:
                open(data_temp, "wb").close()
            doc["bytes"] = os.path.getsize(data_temp)
            with open(sidecar_temp, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, ensure_ascii=False, indent=1)

    def _write_pandas(self, df: pd.DataFrame, location: str, options: Mapping[str, Any]) -> None:
        options = {"index": False, **options}
        sidecar = self.sidecars(location)[0]
        with staged(sidecar, location, **self.storage_options) as (sidecar_temp, data_temp):
            df.to_csv(data_temp, **options)
            doc = {
                "prefect_ds_csv": SCHEMA_VERSION,
                "mode": "pandas",
                "rows": len(df),
                "bytes": os.path.getsize(data_temp),
                "write_kwargs": {k: repr(v) for k, v in options.items()},
            }
            with open(sidecar_temp, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, ensure_ascii=False, indent=1)

    # ---- read

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        options = {**self.default_read_kwargs, **kwargs}
        doc = self._load_sidecar(location)
        if doc is None:
            with open_for_read(location, **self.storage_options) as source:
                foreign: pd.DataFrame = pd.read_csv(source, **options)
            return foreign
        with open_for_read(location, **self.storage_options) as source:
            stream = pa.OSFile(source) if isinstance(source, str) else source
            try:
                size = stream.size() if isinstance(stream, pa.NativeFile) else _size(stream)
                if size != doc["bytes"]:
                    raise CorruptTargetError(
                        f"{location}: the data file is {size} bytes but its schema sidecar "
                        f"{self.sidecars(location)[0]} records {doc['bytes']}; the file was "
                        f"changed or an overwrite was interrupted. Delete the target and "
                        f"write it again."
                    )
                if doc.get("mode") != "exact" or not _sidecar_answers(doc, options):
                    parsed: pd.DataFrame = pd.read_csv(source, **options)
                    return parsed
                table = _parse(stream, doc, location)
            finally:
                if isinstance(stream, pa.NativeFile):
                    stream.close()
        return _restore(table, doc, location, self.sidecars(location)[0])

    def _load_sidecar(self, location: str) -> dict[str, Any] | None:
        sidecar = self.sidecars(location)[0]
        fs, path = filesystem(sidecar, **self.storage_options)
        try:
            with fs.open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
            version = doc["prefect_ds_csv"]
            doc["bytes"] = int(doc["bytes"])
            doc["rows"] = int(doc["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptTargetError(
                f"{location}: its schema sidecar {sidecar} is not valid ({exc}). Delete "
                f"the target and write it again."
            ) from exc
        if version != SCHEMA_VERSION:
            raise CorruptTargetError(
                f"{location}: its schema sidecar {sidecar} has version {version!r}; this "
                f"prefect-ds reads version {SCHEMA_VERSION}. Upgrade prefect-ds or rewrite it."
            )
        return dict(doc)


def _arrow_can_write(options: Mapping[str, Any]) -> bool:
    """Whether pyarrow's writer honours every option (else pandas' ``to_csv`` does)."""
    if not set(options) <= _WRITE_ARROW_KEYS:
        return False
    sep = options.get("sep", ",")
    if not (isinstance(sep, str) and len(sep) == 1 and sep not in _FORBIDDEN_DELIMITERS):
        return False
    return all(isinstance(options.get(k, True), bool) for k in ("header", "index"))


def _sidecar_answers(doc: Mapping[str, Any], options: Mapping[str, Any]) -> bool:
    """Whether the read options only restate what the sidecar records."""
    if not set(options) <= _READ_ARROW_KEYS:
        return False
    for key in ("sep", "delimiter"):
        if key in options and options[key] != doc["delimiter"]:
            return False
    if "header" in options:
        wanted = doc["header"]
        given = options["header"]
        return (given in (0, "infer") and given is not False) if wanted else given is None
    return True


def _size(handle: IO[bytes]) -> int:
    size = handle.seek(0, io.SEEK_END)
    handle.seek(0)
    return int(size)


def _parse(stream: Any, doc: Mapping[str, Any], location: str) -> pa.Table:
    """Parse the data file with the recorded column types; nothing is inferred."""
    names: list[str] = doc["csv_columns"]
    types = {}
    by_column = {c["name"]: c for c in doc["columns"]}
    levels = doc["index"].get("levels", [])
    for name in names:
        spec = by_column.get(name)
        if spec is None:
            spec = next(level for level in levels if level["column"] == name)
        types[name] = (pa.int64() if spec.get("stored_as") == "int64"
                       else _arrow_type(from_spec(spec)))
    if doc["rows"] == 0 or not names:
        return pa.schema([(n, types[n]) for n in names]).empty_table()
    read_options = pcsv.ReadOptions(column_names=None if doc["header"] else names)
    parse_options = pcsv.ParseOptions(
        delimiter=doc["delimiter"],
        newlines_in_values=doc["newlines_in_values"],
        ignore_empty_lines=False,  # a one-column row holding a null is an empty line
    )
    convert_options = pcsv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["true"],
        false_values=["false"],
    )
    try:
        table = pcsv.read_csv(stream, read_options=read_options, parse_options=parse_options,
                              convert_options=convert_options)
    except pa.ArrowInvalid as exc:
        raise CorruptTargetError(
            f"{location}: the data file does not match its schema sidecar ({exc}). Delete "
            f"the target and write it again."
        ) from exc
    if table.column_names != names:
        raise CorruptTargetError(
            f"{location}: the data file's header {table.column_names[:5]!r}... differs from "
            f"the columns its schema sidecar records {names[:5]!r}.... Delete the target "
            f"and write it again."
        )
    return table


def _restore(table: pa.Table, doc: Mapping[str, Any], location: str, sidecar: str) -> pd.DataFrame:
    """Build the frame from the parsed table with the exact recorded dtypes and index."""
    rows = doc["rows"]
    if table.num_rows != rows and table.num_columns:
        raise CorruptTargetError(
            f"{location}: the data file has {table.num_rows} rows but its schema sidecar "
            f"{sidecar} records {rows}; the file was changed or an overwrite was "
            f"interrupted. Delete the target and write it again."
        )
    entry = doc["index"]
    index: pd.Index
    if entry["kind"] == "range":
        index = pd.RangeIndex(entry["start"], entry["stop"], entry["step"], name=entry["name"])
        if len(index) != rows:
            raise CorruptTargetError(
                f"{location}: its schema sidecar {sidecar} records {rows} rows but an "
                f"index of {len(index)}. Delete the target and write it again."
            )
    elif entry["kind"] == "none":
        index = pd.RangeIndex(rows)
    else:
        level_values = []
        for level in entry["levels"]:
            dtype = from_spec(level)
            what = f"index level {level['name']!r}"
            values = _to_pandas(table.column(level["column"]), level, what, location)
            level_values.append(pd.Index(values, dtype=dtype, name=level["name"]))
        if len(level_values) == 1:
            index = level_values[0]
            if level := entry["levels"][0].get("freq"):
                index = pd.DatetimeIndex(index, freq=level) if isinstance(
                    index, pd.DatetimeIndex) else pd.TimedeltaIndex(index, freq=level)
        else:
            index = pd.MultiIndex.from_arrays(level_values)
    data = {}
    labels = []
    for spec in doc["columns"]:
        name = spec["name"]
        values = _to_pandas(table.column(name), spec, f"column {name!r}", location)
        data[name] = values.set_axis(index) if isinstance(values, pd.Series) else values
        labels.append(name)
    frame: pd.DataFrame = (
        pd.DataFrame(data, index=index, copy=False) if data else pd.DataFrame(index=index)
    )
    col_entry = doc["columns_index"]
    frame.columns = pd.Index(labels, dtype=from_spec(col_entry), name=col_entry["name"])
    return frame


@hookimpl
def register_formats(register: Register) -> None:
    register(CsvFormat())
