"""The frames of the differential fidelity suite, grouped by what they exercise.

The frames are those pandas' own I/O tests round-trip (``pandas/tests/io/test_parquet.py``,
``test_feather.py``, ``pytables/``, ``test_common.py``), rebuilt here without their
fixtures, plus the cases that broke an outside suite (issue 12). Each :class:`Case` names
its *kind*: one row of the matrix in docs/fidelity.md (a dtype, a column-label kind or an
index kind). The first case of each kind and the ``fast=True`` ones run by default;
``PREFECT_DS_FULL=1`` runs them all.
"""

from __future__ import annotations

import datetime
import decimal
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dateutil.tz
import numpy as np
import pandas as pd
import pytz  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Case:
    """One frame: ``make()`` builds it, ``kind`` is its row of the matrix."""

    name: str
    kind: str
    make: Callable[[], pd.DataFrame]
    fast: bool = False
    read_kwargs: dict[str, Any] = field(default_factory=dict)
    write_kwargs: dict[str, Any] = field(default_factory=dict)
    # what a read with ``read_kwargs`` must give instead of the frame (columns=...)
    expect: Callable[[pd.DataFrame], pd.DataFrame] | None = None


CASES: list[Case] = []


def case(kind: str, *, fast: bool = False, name: str | None = None,
         read_kwargs: dict[str, Any] | None = None, write_kwargs: dict[str, Any] | None = None,
         expect: Callable[[pd.DataFrame], pd.DataFrame] | None = None
         ) -> Callable[[Callable[[], pd.DataFrame]], Callable[[], pd.DataFrame]]:
    def register(make: Callable[[], pd.DataFrame]) -> Callable[[], pd.DataFrame]:
        CASES.append(Case(name or make.__name__, kind, make, fast, dict(read_kwargs or {}),
                          dict(write_kwargs or {}), expect))
        return make
    return register


def _rng() -> np.random.Generator:
    return np.random.default_rng(2)


def _one(kind: str, values: Any, *, fast: bool = False, name: str | None = None) -> None:
    """A case of one column ``x`` holding ``values`` (built fresh each time)."""
    def make() -> pd.DataFrame:
        data = values() if callable(values) else values
        return pd.DataFrame({"x": data})
    CASES.append(Case(name or kind, kind, make, fast))


# ------------------------------------------------------------------ pandas' own frames


@case("dtype: mixed frame", fast=True)
def parquet_df_compat() -> pd.DataFrame:
    return pd.DataFrame({"A": [1, 2, 3], "B": "foo"}, columns=pd.Index(["A", "B"]))


@case("dtype: mixed frame", fast=True)
def parquet_df_cross_compat() -> pd.DataFrame:
    return pd.DataFrame({
        "a": list("abc"), "b": list(range(1, 4)), "d": np.arange(4.0, 7.0, dtype="float64"),
        "e": [True, False, True], "f": pd.date_range("20130101", periods=3),
    })


@case("dtype: mixed frame", fast=True)
def parquet_df_full_no_bytes() -> pd.DataFrame:
    return pd.DataFrame({
        "string": list("abc"),
        "string_with_nan": ["a", np.nan, "c"],
        "string_with_none": ["a", None, "c"],
        "unicode": ["foo", "bar", "baz"],
        "int": list(range(1, 4)),
        "uint": np.arange(3, 6).astype("u1"),
        "float": np.arange(4.0, 7.0, dtype="float64"),
        "float_with_nan": [2.0, np.nan, 3.0],
        "bool": [True, False, True],
        "datetime": pd.date_range("20130101", periods=3, unit="ns"),
        "datetime_with_nat": [pd.Timestamp("20130101"), pd.NaT, pd.Timestamp("20130103")],
    })


@case("dtype: bytes (object)")
def parquet_df_full_bytes() -> pd.DataFrame:
    return pd.DataFrame({"bytes": [b"foo", b"bar", b"baz"]})


@case("dtype: mixed frame")
def feather_basic_plain() -> pd.DataFrame:
    tz = zoneinfo.ZoneInfo("US/Eastern")
    return pd.DataFrame({
        "string": list("abc"),
        "int": list(range(1, 4)),
        "uint": np.arange(3, 6).astype("u1"),
        "float": np.arange(4.0, 7.0, dtype="float64"),
        "float_with_null": [1.0, np.nan, 3],
        "bool": [True, False, True],
        "cat": pd.Categorical(list("abc")),
        "dt": pd.DatetimeIndex(list(pd.date_range("20130101", periods=3)), freq=None),
        "dttz": pd.DatetimeIndex(list(pd.date_range("20130101", periods=3, tz=tz)), freq=None),
        "dt_with_null": [pd.Timestamp("20130101"), pd.NaT, pd.Timestamp("20130103")],
        "dtns": pd.DatetimeIndex(list(pd.date_range("20130101", periods=3, freq="ns")),
                                 freq=None),
        "timedeltas": pd.timedelta_range("1 day", periods=3),
    })


@case("dtype: object bool with missing", fast=True)
def feather_bool_with_null() -> pd.DataFrame:
    return pd.DataFrame({"bool_with_null": [True, np.nan, False]})


@case("dtype: period")
def feather_periods() -> pd.DataFrame:
    return pd.DataFrame({"periods": pd.period_range("2013", freq="M", periods=3)})


@case("dtype: interval", fast=True)
def feather_intervals() -> pd.DataFrame:
    return pd.DataFrame({"intervals": pd.interval_range(0, 3, 3)})


@case("dtype: interval")
def parquet_extension_types() -> pd.DataFrame:
    return pd.DataFrame({
        "c": pd.IntervalIndex.from_tuples([(0, 1), (1, 2), (3, 4)]),
        "e": pd.IntervalIndex.from_breaks(pd.date_range("2012-01-01", periods=4, freq="D")),
    })


@case("dtype: period")
def parquet_extension_period() -> pd.DataFrame:
    return pd.DataFrame({"d": pd.period_range("2012-01-01", periods=3, freq="D")})


@case("dtype: nullable numbers", fast=True)
def parquet_additional_extension_arrays() -> pd.DataFrame:
    return pd.DataFrame({
        "a": pd.Series([1, 2, 3], dtype="Int64"),
        "b": pd.Series([1, 2, 3], dtype="UInt32"),
        "c": pd.Series(["a", None, "c"], dtype="string"),
    })


@case("dtype: nullable numbers")
def parquet_int64_with_na() -> pd.DataFrame:
    return pd.DataFrame({"a": pd.Series([1, 2, 3, None], dtype="Int64")})


@case("dtype: nullable numbers")
def nullable_float_and_bool() -> pd.DataFrame:
    return pd.DataFrame({"f": pd.array([1.5, None, 2.0], dtype="Float64"),
                         "b": pd.array([True, None, False], dtype="boolean")})


@case("dtype: UInt64 above 2**63")
def uint64_above_int64() -> pd.DataFrame:
    return pd.DataFrame({"u": pd.array([0, None, 2**64 - 1], dtype="UInt64")})


@case("dtype: object ints beyond 64 bits", fast=True)
def object_ints_beyond_64_bits() -> pd.DataFrame:
    # Python ints no 64-bit type holds: pyarrow raises OverflowError for them
    return pd.DataFrame({"x": pd.Series([1, 2**64, -(2**63) - 1], dtype=object)},
                        index=pd.Index([0, 2**70, 2], dtype=object))


@case("dtype: strings", fast=True)
def parquet_pyarrow_backed_string() -> pd.DataFrame:
    return pd.DataFrame({"a": pd.Series(["a", None, "c"], dtype="string[pyarrow]"),
                         "b": pd.Series(["a", None, "c"], dtype="string[python]"),
                         "c": pd.Series(["a", None, "c"], dtype="str")})


@case("dtype: timedelta64", fast=True)
def parquet_timedelta() -> pd.DataFrame:
    return pd.DataFrame({"a": pd.timedelta_range("1 day", periods=3)})


@case("dtype: float16", fast=True)
def parquet_float16() -> pd.DataFrame:
    return pd.DataFrame(data=np.arange(2, 10, dtype=np.float16), columns=["fp16"])


@case("dtype: category", fast=True)
def parquet_categorical() -> pd.DataFrame:
    return pd.DataFrame({
        "a": pd.Categorical(list("abcdef")),
        "b": pd.Categorical(["bar", "foo", "foo", "bar", None, "bar"],
                            dtype=pd.CategoricalDtype(["foo", "bar", "baz"])),
        "c": pd.Categorical([None, "b", "c", None, "c", "b"], categories=["b", "c", "d"],
                            ordered=True),
    })


@case("dtype: category")
def category_of_ints_and_dates() -> pd.DataFrame:
    return pd.DataFrame({
        "i": pd.Categorical([3, 1, None, 3], categories=[3, 2, 1]),
        "d": pd.Categorical(pd.to_datetime(["2020-01-01", None, "2021-01-01", "2020-01-01"])),
    })


@case("dtype: datetime64 units", fast=True)
def parquet_timestamp_nanoseconds() -> pd.DataFrame:
    return pd.DataFrame({"a": pd.date_range("2017-01-01", freq="1ns", periods=10)})


@case("dtype: datetime64[us] outside 1677-2262")
def parquet_non_nanosecond() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": [datetime.datetime(1600, 1, 1)]}, dtype="datetime64[us]")


@case("dtype: datetime64[us] outside 1677-2262")
def feather_out_of_bounds_datetime() -> pd.DataFrame:
    return pd.DataFrame({"date": [datetime.datetime.fromisoformat("1654-01-01"),
                                  datetime.datetime.fromisoformat("1920-01-01")]})


@case("dtype: datetime64 units")
def datetime_units_s_ms() -> pd.DataFrame:
    return pd.DataFrame({
        "s": pd.Series(pd.to_datetime(["2020-01-01", None]).astype("datetime64[s]")),
        "ms": pd.Series(pd.to_datetime(["2020-01-01 00:00:00.001", None])
                        .astype("datetime64[ms]")),
    })


@case("dtype: empty frame", fast=True)
def parquet_empty_dataframe() -> pd.DataFrame:
    return pd.DataFrame(index=[], columns=[])


@case("index: no columns, named index", fast=True)
def parquet_empty_columns() -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index(["a", "b", "c"], name="custom name"))


@case("index: no columns, typed index")
def no_columns_int_index() -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index([3, 1, 2], dtype="int32"))


@case("dtype: mixed-type object", fast=True)
def parquet_unsupported_mixed() -> pd.DataFrame:
    return pd.DataFrame({"a": ["a", 1, 2.0]})


@case("dtype: complex", fast=True)
def complex_column() -> pd.DataFrame:
    return pd.DataFrame({"z": np.array([1 + 2j, 0j, -1.5j])})


@case("dtype: string with lone surrogate", fast=True)
def lone_surrogate() -> pd.DataFrame:
    return pd.DataFrame({"s": pd.Series(["ok", "bad \ud800", None], dtype=object)})


@case("dtype: string with lone surrogate")
def lone_surrogate_str_dtype() -> pd.DataFrame:
    return pd.DataFrame({"s": pd.array(np.array(["ok", "bad \udfff"], dtype=object),
                                       dtype="string[python]")})


@case("dtype: decimal (object)")
def parquet_roundtrip_decimal() -> pd.DataFrame:
    return pd.DataFrame({"a": [decimal.Decimal("123.00")]})


@case("dtype: dict / list (object)")
def parquet_maps_as_dicts() -> pd.DataFrame:
    return pd.DataFrame({"a": [{"k": 1}, {"k": 2}]})


@case("dtype: object timestamps, naive and aware mixed", fast=True)
def naive_and_aware_object() -> pd.DataFrame:
    return pd.DataFrame({"t": pd.Series([
        datetime.datetime(2020, 1, 1),
        datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)], dtype=object)})


@case("dtype: object timestamps, one zone")
def object_datetimes_naive() -> pd.DataFrame:
    return pd.DataFrame({"t": pd.Series([datetime.datetime(2020, 1, 1),
                                         datetime.datetime(2021, 6, 1, 12)], dtype=object)})


# ------------------------------------------------------------------ time zones


def _zone_case(label: str, tz: Any, *, fast: bool = False) -> None:
    def make() -> pd.DataFrame:
        stamps = pd.date_range("2020-03-28", periods=4, freq="12h", tz=tz)
        return pd.DataFrame({"t": stamps}, index=pd.Index(stamps, name="when"))
    CASES.append(Case(f"tz {label}", f"tz: {label}", make, fast))


_zone_case("zoneinfo", zoneinfo.ZoneInfo("Europe/Paris"), fast=True)
_zone_case("pytz", pytz.timezone("US/Eastern"), fast=True)
_zone_case("pytz UTC", pytz.UTC)
_zone_case("dateutil zone", dateutil.tz.gettz("Europe/London"), fast=True)
_zone_case("dateutil UTC", dateutil.tz.tzutc())
_zone_case("dateutil offset", dateutil.tz.tzoffset(None, 3600), fast=True)
_zone_case("fixed offset (datetime.timezone)",
           datetime.timezone(datetime.timedelta(hours=2, minutes=15)), fast=True)
_zone_case("datetime.timezone.utc", datetime.UTC)


def _tz_index_case(value: datetime.datetime, n: int) -> None:
    def make() -> pd.DataFrame:
        idx = 5 * [value]
        return pd.DataFrame(index=idx, data={"index_as_col": idx})
    CASES.append(Case(f"parquet_timezone_aware_index_{n}", "tz: fixed offset (datetime.timezone)",
                      make))


for _n, _value in enumerate([
    datetime.datetime(2019, 1, 4, 16, 41, 24, tzinfo=datetime.UTC),
    datetime.datetime(2019, 1, 4, 16, 41, 24, tzinfo=datetime.timezone.min),
    datetime.datetime(2019, 1, 4, 16, 41, 24, tzinfo=datetime.timezone.max),
    datetime.datetime.strptime("2019-01-04T16:41:24+0215", "%Y-%m-%dT%H:%M:%S%z"),
    datetime.datetime.strptime("2019-01-04T16:41:24-0215", "%Y-%m-%dT%H:%M:%S%z"),
]):
    _tz_index_case(_value, _n)


# ------------------------------------------------------------------ column labels


def _labels(kind: str, labels: Any, *, fast: bool = False, name: str | None = None) -> None:
    def make() -> pd.DataFrame:
        cols = labels() if callable(labels) else labels
        return pd.DataFrame(_rng().standard_normal((3, len(cols))), columns=cols)
    CASES.append(Case(name or kind, kind, make, fast))


_labels("column labels: str", pd.Index(["bar", "baz", "foo", "qux"], name="StringCol"),
        fast=True, name="parquet_column_index_string")
_labels("column labels: int", pd.Index([1, 2, 3, 4], name="NonStringCol"), fast=True,
        name="parquet_column_index_nonstring")
_labels("column labels: int", pd.RangeIndex(3), name="default column range")
_labels("column labels: bool", [True, False], fast=True)
_labels("column labels: float", [0.5, 1.5])
_labels("column labels: mixed types", [0, "a"], fast=True)
_labels("column labels: flat tuples", lambda: pd.Index([("a", 1), ("b", 2)],
                                                       tupleize_cols=False), fast=True)
_labels("column labels: categorical", pd.CategoricalIndex(["a", "b"]), fast=True)
_labels("column labels: period", pd.period_range("2020-01", periods=2, freq="M"), fast=True)
_labels("column labels: datetime", lambda: pd.Index([1, 2, 3]).astype("datetime64[us]"),
        name="parquet_datetime64_column_index")
_labels("column labels: datetime", [datetime.datetime(2011, 1, 1), datetime.datetime(2011, 1, 2)],
        name="parquet_columns_dtypes_not_invalid_datetimes")
_labels("column labels: duplicated", list("aab"), fast=True)
_labels("column labels: MultiIndex", pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)]),
        fast=True, name="parquet_column_multiindex")
_labels("column labels: MultiIndex", lambda: pd.MultiIndex.from_arrays(
    [["bar", "bar", "baz", "baz"], ["one", "two", "one", "two"]],
    names=["ColLevel1", "ColLevel2"]), name="parquet_column_multiindex_string")
_labels("column labels: str, empty or holding '/'", ["", "a b", "日本", "x/y"],
        fast=True, name="awkward strings")
_labels("column labels: int", [np.int64(0), np.int64(1)], name="int labels with name 0")


@case("column labels: named 0", fast=True)
def columns_name_int() -> pd.DataFrame:
    df = pd.DataFrame({"a": [1], "b": [2]})
    df.columns.name = 0
    return df


@case("column labels: empty MultiIndex, no columns")
def empty_column_multiindex() -> pd.DataFrame:
    return pd.DataFrame(columns=pd.MultiIndex(levels=[["abc"], ["x"]], codes=[[], []]))


# ------------------------------------------------------------------ indexes


def _indexed(kind: str, index: Any, *, fast: bool = False, name: str | None = None) -> None:
    def make() -> pd.DataFrame:
        idx = index() if callable(index) else index
        return pd.DataFrame({"A": np.arange(len(idx), dtype="int64")}, index=idx)
    CASES.append(Case(name or kind, kind, make, fast))


_indexed("index: int", [2, 3, 4], fast=True, name="parquet_write_index ints")
_indexed("index: str", list("abc"), name="parquet_write_index strings")
_indexed("index: int", pd.Index([0, 1, 2], name="foo"), name="parquet_write_index named")
_indexed("index: datetime", lambda: pd.date_range("20130101", periods=3, unit="ns")
         ._with_freq(None), name="parquet_write_index datetimes")
_indexed("index: DatetimeIndex with freq", lambda: pd.date_range("20130101", periods=3),
         fast=True)
_indexed("index: DatetimeIndex with freq", lambda: pd.date_range("2020-01-31", periods=3,
                                                                freq="ME", tz="Europe/Paris"),
         name="month ends in a zone")
_indexed("index: TimedeltaIndex with freq", lambda: pd.timedelta_range("1h", periods=3,
                                                                      freq="15min"))
_indexed("index: MultiIndex", lambda: pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)]),
         fast=True, name="parquet_write_multiindex")
_indexed("index: MultiIndex with a period level", lambda: pd.MultiIndex.from_arrays(
    [["A", "B", "C"], pd.period_range("2020-01-01", periods=3, freq="M")],
    names=["ID", "DATE"]), fast=True, name="parquet_multiindex_period_level")
_indexed("index: tuples", lambda: pd.Index([("a", 1), ("b", 2), ("c", 3)],
                                           tupleize_cols=False), fast=True)
_indexed("index: mixed objects", lambda: pd.Index([datetime.datetime(2011, 1, 1), 0, "x"],
                                                  dtype=object), fast=True)
_indexed("index: mixed objects", lambda: pd.Index([datetime.datetime(2011, 1, 1), 0],
                                                  dtype=object).append(pd.Index([1])),
         name="datetime and ints")
_indexed("index: name 0", lambda: pd.Index(["a", "b", "c"], name=0), fast=True)
_indexed("index: RangeIndex named 0", lambda: pd.RangeIndex(3, name=0),
         name="range index named 0")
_indexed("index: MultiIndex with a level named 0", lambda: pd.MultiIndex.from_tuples(
    [("a", 1), ("b", 2), ("c", 3)], names=["l", 0]), fast=True)
_indexed("index: categorical", lambda: pd.CategoricalIndex(["b", "a", "b"],
                                                           categories=["b", "a", "c"]), fast=True)
_indexed("index: period", lambda: pd.period_range("2020-01", periods=3, freq="M"), fast=True)
_indexed("index: interval", lambda: pd.interval_range(0, 3), fast=True)
_indexed("index: nullable", lambda: pd.Index(pd.array([1, None, 3], dtype="Int64")))
_indexed("index: RangeIndex", lambda: pd.RangeIndex(10, 40, 10, name="r"))
_indexed("index: bool", lambda: pd.Index([True, False, True]))


def _mi_frame(names: bool) -> pd.DataFrame:
    dates = pd.date_range("01-Jan-2018", "01-Dec-2018", freq="MS", unit="ns")
    index = pd.MultiIndex.from_product([["Level1", "Level2"], dates],
                                       names=["level", "date"] if names else None)
    return pd.DataFrame(_rng().standard_normal((2 * len(dates), 3)), columns=list("ABC"),
                        index=index)


@case("index: MultiIndex")
def parquet_multiindex_with_columns() -> pd.DataFrame:
    return _mi_frame(True)


@case("index: MultiIndex, reading some columns", fast=True,
      read_kwargs={"columns": ["A", "B"]}, expect=lambda df: df[["A", "B"]])
def parquet_multiindex_read_columns() -> pd.DataFrame:
    return _mi_frame(True)


@case("index: MultiIndex, reading some columns", read_kwargs={"columns": ["A", "B"]},
      expect=lambda df: df[["A", "B"]])
def parquet_multiindex_unnamed_read_columns() -> pd.DataFrame:
    return _mi_frame(False)


@case("write option index=False", fast=True, write_kwargs={"index": False},
      expect=lambda df: df.reset_index(drop=True))
def parquet_write_ignoring_index() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": ["q", "r", "s"]}, index=["zyx", "wvu", "tsr"])


# ------------------------------------------------------------------ test_common / pytables


@case("dtype: mixed frame", fast=True)
def make_data_frame() -> pd.DataFrame:
    """``pd._testing.makeDataFrame``: 30 x 4 floats on a string index."""
    return pd.DataFrame(_rng().standard_normal((30, 4)), columns=pd.Index(list("ABCD")),
                        index=pd.Index([f"i-{i}" for i in range(30)]))


@case("index: DatetimeIndex with freq")
def make_time_data_frame() -> pd.DataFrame:
    """``makeTimeDataFrame``: floats on a business-day index."""
    return pd.DataFrame(_rng().standard_normal((10, 4)), columns=pd.Index(list("ABCD")),
                        index=pd.date_range("2000-01-01", periods=10, freq="B"))


@case("dtype: mixed frame")
def pytables_mixed() -> pd.DataFrame:
    df = make_data_frame()
    df["obj1"] = "foo"
    df["obj2"] = "bar"
    df["bool1"] = df["A"] > 0
    df["bool2"] = df["B"] > 0
    df["int1"] = 1
    df["int2"] = 2
    df["datetime"] = pd.Timestamp("20010102")
    return df


@case("dtype: numpy widths", fast=True)
def numpy_widths() -> pd.DataFrame:
    return pd.DataFrame({k: np.arange(3).astype(k) for k in
                         ["int8", "int16", "int32", "uint16", "uint32", "uint64", "float32"]})


@case("dtype: extremes")
def extremes() -> pd.DataFrame:
    return pd.DataFrame({"f": [np.inf, -np.inf, np.nan, -0.0],
                         "i": np.array([np.iinfo("int64").min, -1, 0, np.iinfo("int64").max]),
                         "s": ["", "NA", "nan", "a\nb"]})


def selected(full: bool) -> list[Case]:
    """Every case, or the fast subset: the ``fast`` ones and the first of every kind."""
    firsts: dict[str, Case] = {}
    for c in CASES:
        firsts.setdefault(c.kind, c)
    return [c for c in CASES if full or c.fast or firsts[c.kind] is c]
