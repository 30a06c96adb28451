"""Round-trip properties per file format: any frame of the supported dtypes reads back
exactly (or as the documented conversion in test_fidelity.CONVERSIONS).

Frames mix dtypes, hold NaN / NA / NaT, unicode and empty strings, may be empty or have a
single row, and sometimes carry a named non-default index. The example count comes from
the hypothesis profile loaded in conftest.py (50 by default, 500 with PREFECT_DS_FULL=1).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fidelity import CONVERSIONS, FORMATS

from prefect_ds import UnknownFormatError, get_format

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
