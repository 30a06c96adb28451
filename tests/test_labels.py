"""The exact records of column labels and time zones that formats keep beside their data
(``_storage/labels.py``, ``_storage/dtypes.py``), and the Arrow helpers built on them."""

from __future__ import annotations

import datetime
import zoneinfo
from pathlib import Path
from typing import Any

import dateutil.tz
import numpy as np
import pandas as pd
import pytest
import pytz  # type: ignore[import-untyped]

import prefect_ds
from prefect_ds import UnsupportedFrameError
from prefect_ds._storage.dtypes import describe, from_spec, same_dtype
from prefect_ds._storage.labels import decode_labels, encode_labels, same_labels

LABELS = {
    "text": pd.Index(["a", "b"]),
    "object text": pd.Index(["a", "b"], dtype=object),
    "ints": pd.Index([3, 1], name=0),
    "numpy ints in object": pd.Index([np.int64(1), "x"], dtype=object),
    "bools": pd.Index([True, False]),
    "floats with nan": pd.Index([0.5, np.nan, np.inf]),
    "mixed": pd.Index([0, "a", None], dtype=object),
    "flat tuples": pd.Index([("a", 1), ("b", 2)], tupleize_cols=False),
    "multi": pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["l", 0]),
    "categorical": pd.CategoricalIndex(["b", "a"], categories=["b", "a", "c"], ordered=True),
    "period": pd.period_range("2020-01", periods=2, freq="M", name="p"),
    "datetime": pd.DatetimeIndex(["2020-01-01", "2021-06-01 12:00"]).as_unit("us"),
    "aware": pd.date_range("2020-03-29", periods=2, freq="h", tz="Europe/Paris")._with_freq(None),
    "timedelta": pd.to_timedelta(["1D", "2h"]),
    "range": pd.RangeIndex(2, 8, 3, name="r"),
    "empty": pd.RangeIndex(0),
}


@pytest.mark.parametrize("name", list(LABELS))
def test_labels_decode_to_what_was_encoded(name: str) -> None:
    labels = LABELS[name]
    back = decode_labels(encode_labels(labels, "labels"))
    assert same_labels(back, labels)
    pd.testing.assert_index_equal(back, labels, exact=True)


@pytest.mark.parametrize("labels", [
    pd.Index([object(), "a"], dtype=object),
    pd.Index([pd.Timestamp("2020-01-01"), "a"], dtype=object),
    pd.Index(["a"], name=frozenset({"set"})),
    pd.interval_range(0, 2),
], ids=["object", "timestamp in object", "set name", "interval"])
def test_labels_without_an_exact_record_are_refused(labels: pd.Index) -> None:
    with pytest.raises(UnsupportedFrameError, match="labels"):
        encode_labels(labels, "the test's labels")


ZONES: list[Any] = [
    "UTC", "Europe/Paris", zoneinfo.ZoneInfo("Asia/Tokyo"), pytz.timezone("US/Eastern"), pytz.UTC,
    dateutil.tz.gettz("Europe/London"), dateutil.tz.tzutc(), dateutil.tz.tzoffset("X", 5400),
    dateutil.tz.tzoffset(None, -3600), datetime.timezone.utc,
    datetime.timezone(datetime.timedelta(hours=-2, minutes=-15)),
    datetime.timezone(datetime.timedelta(hours=1), "CET-ish"),
]


@pytest.mark.parametrize("tz", ZONES, ids=repr)
def test_time_zones_come_back_as_the_same_kind_of_object(tz: Any) -> None:
    dtype = pd.DatetimeTZDtype("ns", tz)
    spec = describe(dtype)
    assert spec is not None
    back = from_spec(spec)
    assert same_dtype(back, dtype)
    assert type(back.tz) is type(dtype.tz)
    assert str(back) == str(dtype)


def test_a_zone_without_a_name_is_not_recorded() -> None:
    assert describe(pd.DatetimeTZDtype("ns", dateutil.tz.tzlocal())) is None


def test_arrow_columns_adds_the_index_and_names_unknown_labels() -> None:
    df = pd.DataFrame({2: [1.0], False: [2.0], "c": [3.0]},
                      index=pd.MultiIndex.from_tuples([("a", 1)], names=["k", None]))
    table = prefect_ds.frame_to_arrow(df)
    fields = prefect_ds.arrow_columns(table.schema, [False, 2])
    assert fields[:2] == ["False", "2"]
    assert set(fields[2:]) == {"k", "__index_level_1__"}
    back = prefect_ds.arrow_to_frame(table.select(fields))
    pd.testing.assert_frame_equal(back, df[[False, 2]], check_exact=True)
    with pytest.raises(KeyError, match="no column 'missing'"):
        prefect_ds.arrow_columns(table.schema, ["missing"])


def test_parquet_write_options_index_and_columns(tmp_path: Path) -> None:
    """pandas' index=False and columns=[...] (which used to fail in pyarrow's writer, or
    drop a MultiIndex)."""
    fmt = prefect_ds.get_format("parquet")
    location = str(tmp_path / "x.parquet")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=pd.Index(["p", "q"], name="k"))
    fmt.write(df, location, index=False)
    pd.testing.assert_frame_equal(fmt.read(location), df.reset_index(drop=True))
    fmt.write(df, location)
    pd.testing.assert_frame_equal(fmt.read(location, columns=["b"]), df[["b"]])
    with pytest.raises(UnsupportedFrameError, match="index option"):
        fmt.write(df, location, index="yes")
