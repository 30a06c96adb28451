"""The installed feather plugin: exact round trips through its own public surface."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from prefect_ds_feather import FeatherFormat

import prefect_ds


def mixed_frame(rows: int = 50) -> pd.DataFrame:
    """One column per dtype the plugin promises to keep, and a named index."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "f64": rng.normal(size=rows),
            "i64": rng.integers(-(2**40), 2**40, size=rows),
            "nullable_int": pd.array([None if i % 5 == 0 else i for i in range(rows)], "Int64"),
            "flag": rng.integers(0, 2, size=rows).astype(bool),
            "nullable_flag": pd.array([None if i % 3 == 0 else i % 2 == 0 for i in range(rows)],
                                      "boolean"),
            "naive": pd.date_range("2024-01-01", periods=rows, freq="37min"),
            "aware": pd.date_range("2024-03-30", periods=rows, freq="h", tz="Europe/Paris"),
            "text": pd.array([None if i % 7 == 0 else f"é-{i}" for i in range(rows)], "string"),
            "cat": pd.Categorical([["lo", "mid", "hi"][i % 3] for i in range(rows)],
                                  categories=["lo", "mid", "hi"], ordered=True),
        }
    )
    frame.index = pd.Index(rng.permutation(rows) * 3, name="row_id")
    return frame


def test_local_round_trip_is_exact(tmp_path: Path) -> None:
    fmt = FeatherFormat()
    df = mixed_frame()
    location = str(tmp_path / "sub" / "frame.feather")
    fmt.write(df, location)
    assert fmt.exists(location)
    assert_frame_equal(fmt.read(location), df, check_exact=True)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["frame.feather"]


def test_memory_round_trip_and_delete() -> None:
    fmt = FeatherFormat()
    df = mixed_frame(10)
    location = f"memory://feather-{uuid.uuid4().hex}/frame.arrow"
    assert not fmt.exists(location)
    fmt.write(df, location, compression="zstd")
    assert_frame_equal(fmt.read(location), df, check_exact=True)
    fmt.delete(location)
    assert not fmt.exists(location)
    fmt.delete(location)  # deleting nothing is not an error


def test_read_options_pass_through(tmp_path: Path) -> None:
    fmt = FeatherFormat()
    location = str(tmp_path / "frame.feather")
    fmt.write(mixed_frame(), location)
    assert list(fmt.read(location, columns=["f64", "cat"]).columns) == ["f64", "cat"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    fmt = FeatherFormat()
    location = str(tmp_path / "frame.feather")
    old = mixed_frame(5)
    fmt.write(old, location)
    with pytest.raises(ValueError, match="compression"):
        fmt.write(mixed_frame(20), location, compression="no-such-codec")
    assert_frame_equal(fmt.read(location), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.feather"]


def test_registered_through_its_entry_point() -> None:
    assert "feather" in prefect_ds.available_formats()
    assert isinstance(prefect_ds.get_format("feather"), FeatherFormat)
