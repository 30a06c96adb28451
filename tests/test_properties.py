"""Round-trip properties per file format: any frame of the supported dtypes reads back
exactly (or as the documented conversion in test_fidelity.CONVERSIONS), and any column
labels and index (every kind pandas can hold: text, numbers, booleans, tuples,
MultiIndex, categorical, period, datetimes with a frequency and a zone from any library,
mixed objects, names such as 0) read back exactly or are refused before anything is
written.

Frames mix dtypes, hold NaN / NA / NaT, unicode and empty strings, may be empty or have a
single row, and sometimes carry a named non-default index. The example count comes from
the hypothesis profile loaded in conftest.py (50 by default, 500 with PREFECT_DS_FULL=1).
"""

from __future__ import annotations

import datetime
import tempfile
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dateutil.tz
import numpy as np
import pandas as pd
import pytest
import pytz  # type: ignore[import-untyped]
from fidelity_matrix import datetimes_as_timestamps, equal, previous_frame
from hypothesis import given
from hypothesis import strategies as st
from test_fidelity import CONVERSIONS, FORMATS

from prefect_ds import UnknownFormatError, UnsupportedFrameError, get_format

Draw = Callable[[st.SearchStrategy[Any]], Any]

TIME_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
# Timestamps pandas can hold at nanosecond resolution (NaT's value excluded).
NS_MIN, NS_MAX = pd.Timestamp.min.value, pd.Timestamp.max.value
DAY = pd.Timedelta(days=1).value
texts = st.text(max_size=12)
# Names a format refuses by design (with a clear error, tested in its own test file):
# HDF5 dataset names cannot be empty or ".", nor hold "/" or NUL.
NAME_RULES: dict[str, Callable[[str], bool]] = {
    "hdf": lambda name: name not in ("", ".") and "/" not in name and "\x00" not in name,
}
INDEX = None  # the key of the index's dtype case (column names are strings)
Kinds = dict[str | None, str]


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


def _column(draw: Draw, kind: str, n: int) -> Any:
    """``n`` values of dtype case ``kind`` (the case names of the fidelity matrix)."""
    def many(values: st.SearchStrategy[Any]) -> list[Any]:
        return list(draw(st.lists(values, min_size=n, max_size=n)))

    if kind == "float64":
        return np.array(many(st.floats(allow_nan=True, allow_infinity=True)), dtype="float64")
    if kind == "int64":
        return np.array(many(st.integers(-(2**63), 2**63 - 1)), dtype="int64")
    if kind == "Int64":
        return pd.array(many(_maybe(st.integers(-(2**63), 2**63 - 1))), dtype="Int64")
    if kind == "bool":
        return np.array(many(st.booleans()), dtype="bool")
    if kind == "boolean":
        return pd.array(many(_maybe(st.booleans())), dtype="boolean")
    if kind.startswith("datetime64"):
        # pandas itself cannot show a tz-aware time whose local clock leaves the range
        low, high = (NS_MIN, NS_MAX) if kind == "datetime64[ns]" else (NS_MIN + DAY, NS_MAX - DAY)
        stamps = many(_maybe(st.integers(low, high)))
        values = pd.DatetimeIndex([pd.NaT if v is None else pd.Timestamp(v) for v in stamps],
                                  dtype="datetime64[ns]")
        if kind == "datetime64[ns, tz]":
            values = values.tz_localize("UTC").tz_convert(draw(st.sampled_from(TIME_ZONES)))
        return values.array
    if kind == "str":
        return pd.array(many(_maybe(texts)), dtype="str")
    if kind == "string[python]":
        return pd.array(many(_maybe(texts)), dtype="string[python]")
    if kind == "category":
        categories = draw(st.lists(texts, unique=True, max_size=5))
        values = many(_maybe(st.sampled_from(categories)) if categories else st.none())
        return pd.Categorical(values, categories=categories, ordered=draw(st.booleans()))
    raise AssertionError(kind)


KINDS = ["float64", "int64", "Int64", "bool", "boolean", "datetime64[ns]",
         "datetime64[ns, tz]", "str", "string[python]", "category"]


@st.composite
def frames(draw: Draw, fmt: str) -> tuple[pd.DataFrame, Kinds]:
    """A frame and the dtype case of each column (and of the index, under key INDEX)."""
    name_ok = NAME_RULES.get(fmt, lambda name: True)
    n = draw(st.sampled_from([0, 1]) | st.integers(0, 30))
    names = draw(st.lists(texts.filter(name_ok), unique=True, max_size=6))
    kinds: Kinds = {name: draw(st.sampled_from(KINDS)) for name in names}
    df = pd.DataFrame({name: _column(draw, kind, n) for name, kind in kinds.items()},
                      index=pd.RangeIndex(n))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(KINDS))
        index_name = draw(st.text(min_size=1, max_size=8).filter(name_ok))
        df.index = pd.Index(_column(draw, kind, n), name=index_name)
        kinds[INDEX] = kind
    return df, kinds


def _expected(df: pd.DataFrame, kinds: Kinds, fmt: str) -> pd.DataFrame:
    expected = df.copy()
    for name, kind in kinds.items():
        target = CONVERSIONS.get((fmt, kind))
        if target is None:
            continue
        if name is INDEX:
            expected.index = expected.index.astype(target)
        else:
            expected[name] = expected[name].astype(target)
    return expected


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_round_trip_property(fmt_name: str) -> None:
    try:
        fmt = get_format(fmt_name)
    except UnknownFormatError as exc:
        pytest.skip(f"format {fmt_name!r} is not installed: {exc}")

    @given(frames(fmt_name))
    def round_trip(case: tuple[pd.DataFrame, Kinds]) -> None:
        df, kinds = case
        with tempfile.TemporaryDirectory(prefix="prefect-ds-prop-") as tmp:
            location = str(Path(tmp) / f"frame{FORMATS[fmt_name]}")
            fmt.write(df, location)
            back = fmt.read(location)
        pd.testing.assert_frame_equal(back, _expected(df, kinds, fmt_name), check_exact=True)

    round_trip()


# ------------------------------------------------------------------ labels and indexes

ZONES: list[Any] = [
    "UTC", "Europe/Paris", zoneinfo.ZoneInfo("America/New_York"), pytz.timezone("Asia/Kolkata"),
    pytz.UTC, dateutil.tz.gettz("Europe/London"), dateutil.tz.tzutc(),
    dateutil.tz.tzoffset(None, -3 * 3600), datetime.timezone(datetime.timedelta(hours=5.75)),
    datetime.timezone.utc,
]
FREQS = ["D", "h", "B", "ME", "15min", "W-SUN", "QS"]
ARROW_FORMATS = ("parquet", "feather")
small_ints = st.integers(-(2**40), 2**40)
names = st.one_of(st.none(), st.text(max_size=6), st.just(0), st.integers(-5, 5))


@st.composite
def column_labels(draw: Draw, n: int) -> pd.Index:
    """``n`` column labels of one of the kinds pandas can hold."""
    kind = draw(st.sampled_from(["str", "int", "bool", "float", "mixed", "tuples", "multi",
                                 "categorical", "period", "datetime", "range"]))
    name = draw(names)
    if kind == "bool":
        n = min(n, 2)
        values: list[Any] = draw(st.permutations([True, False]))[:n]
    elif kind == "int":
        values = draw(st.lists(small_ints, min_size=n, max_size=n, unique=True))
    elif kind == "float":
        values = draw(st.lists(st.floats(allow_nan=False, width=64), min_size=n, max_size=n,
                               unique_by=str))
    elif kind == "mixed":
        values = draw(st.lists(st.one_of(small_ints, texts), min_size=n, max_size=n,
                               unique_by=str))
    elif kind in ("tuples", "multi"):
        values = draw(st.lists(st.tuples(texts, small_ints), min_size=n, max_size=n,
                               unique_by=str))
        if kind == "multi":
            return pd.MultiIndex.from_tuples(values, names=[name, None]) if values else (
                pd.MultiIndex.from_arrays([[], []], names=[name, None]))
        return pd.Index(values, dtype=object, name=name, tupleize_cols=False)
    elif kind == "categorical":
        values = draw(st.lists(texts, min_size=n, max_size=n, unique=True))
        return pd.CategoricalIndex(values, categories=sorted(values, reverse=True), name=name)
    elif kind == "period":
        return pd.period_range("2020-01", periods=n, freq=draw(st.sampled_from(["M", "D"])),
                               name=name)
    elif kind == "datetime":
        return pd.date_range("2020-01-01", periods=n, freq="D", name=name)._with_freq(None)
    elif kind == "range":
        return pd.RangeIndex(n, name=name)
    else:
        values = draw(st.lists(texts, min_size=n, max_size=n, unique=True))
    return pd.Index(values, name=name)


@st.composite
def row_indexes(draw: Draw, n: int) -> pd.Index:
    """An index of ``n`` rows of one of the kinds pandas can hold."""
    kind = draw(st.sampled_from(["range", "int", "str", "datetime", "timedelta", "multi",
                                 "categorical", "period", "tuples", "mixed", "nullable"]))
    name = draw(names)
    if kind == "range":
        step = draw(st.sampled_from([1, 2, -3]))
        return pd.RangeIndex(0, n * step, step, name=name) if n else pd.RangeIndex(0, name=name)
    if kind == "int":
        return pd.Index(draw(st.lists(small_ints, min_size=n, max_size=n)), dtype="int64",
                        name=name)
    if kind == "str":
        return pd.Index(draw(st.lists(texts, min_size=n, max_size=n)), name=name)
    if kind == "datetime":
        tz = draw(st.sampled_from([None, *ZONES]))
        freq = draw(st.sampled_from(FREQS))
        index = pd.date_range("2021-03-01", periods=n, freq=freq, tz=tz, name=name)
        return index if draw(st.booleans()) else index._with_freq(None)
    if kind == "timedelta":
        return pd.timedelta_range("1h", periods=n, freq=draw(st.sampled_from(["h", "15min"])),
                                  name=name)
    if kind == "multi":
        left = draw(st.lists(texts, min_size=n, max_size=n))
        right = draw(st.lists(small_ints, min_size=n, max_size=n))
        return pd.MultiIndex.from_arrays([left, right], names=[name, "second"])
    if kind == "categorical":
        values = draw(st.lists(st.sampled_from(["b", "a", "c"]), min_size=n, max_size=n))
        return pd.CategoricalIndex(values, categories=["c", "b", "a"], name=name)
    if kind == "period":
        return pd.period_range("2020-01", periods=n, freq="M", name=name)
    if kind == "tuples":
        values = draw(st.lists(st.tuples(texts, small_ints), min_size=n, max_size=n))
        return pd.Index(values, dtype=object, name=name, tupleize_cols=False)
    if kind == "mixed":
        values = draw(st.lists(st.one_of(small_ints, texts, st.just(datetime.datetime(2011, 1, 1))),
                               min_size=n, max_size=n))
        return pd.Index(values, dtype=object, name=name)
    return pd.Index(pd.array(draw(st.lists(_maybe(small_ints), min_size=n, max_size=n)),
                             dtype="Int64"), name=name)


@st.composite
def labelled_frames(draw: Draw) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    labels = draw(column_labels(draw(st.integers(0, 4))))
    index = draw(row_indexes(n))
    data = np.arange(n * len(labels), dtype="float64").reshape(n, len(labels))
    return pd.DataFrame(data, index=index, columns=labels)


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_labels_and_indexes_round_trip_or_are_refused(fmt_name: str) -> None:
    """Any column labels and index pandas can hold: the frame reads back exactly, or the
    write is refused with UnsupportedFrameError and the earlier target is unchanged."""
    try:
        fmt = get_format(fmt_name)
    except UnknownFormatError as exc:
        pytest.skip(f"format {fmt_name!r} is not installed: {exc}")

    @given(labelled_frames())
    def round_trip(df: pd.DataFrame) -> None:
        with tempfile.TemporaryDirectory(prefix="prefect-ds-prop-") as tmp:
            location = str(Path(tmp) / f"frame{FORMATS[fmt_name]}")
            fmt.write(previous_frame(), location)
            before = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
            try:
                fmt.write(df, location)
            except UnsupportedFrameError:
                after = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
                assert after == before
                return
            back = fmt.read(location)
        if fmt_name in ARROW_FORMATS and not equal(back, df):
            df = datetimes_as_timestamps(df)  # the documented conversion (docs/fidelity.md)
        if not equal(back, df):
            pd.testing.assert_frame_equal(back, df, check_exact=True)
            raise AssertionError(f"object value types differ: {df!r} became {back!r}")

    round_trip()
