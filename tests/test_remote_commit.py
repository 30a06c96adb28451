"""A write to an object store (``memory://``, ``s3://``) that fails changes nothing.

Remote targets are staged in a local temporary directory and uploaded with one PUT only
after the writer returned. A writer that raises, after writing part of its file or before
writing any, must leave the stored object byte for byte as it was, and fail with the same
error as the same write to a local file (never an error of the upload machinery).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from prefect_ds import available_formats, get_format

FILE_FORMATS = [name for name in ("parquet", "csv", "hdf", "feather")
                if name in available_formats()]


class Unwritable:
    """A value no format can serialise: every way of turning it into bytes raises."""

    def __reduce__(self) -> object:
        raise RuntimeError("cannot serialise")

    def __str__(self) -> str:
        raise RuntimeError("cannot serialise")

    __repr__ = __str__


def good(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=200), "n": np.arange(200, dtype="int64")})


def bad() -> pd.DataFrame:
    """A column that no format can write (most fail before opening their file)."""
    return pd.DataFrame({"x": np.arange(200, dtype="float64"),
                         "obj": [Unwritable() for _ in range(200)]})


def bad_late(rows: int = 120_000) -> pd.DataFrame:
    """Only the last row fails: pandas' CSV writer has written (and flushed) tens of
    thousands of rows of its staged file when it raises."""
    obj: list[object] = [f"v{i}" for i in range(rows - 1)]
    return pd.DataFrame({"x": np.arange(rows, dtype="float64"), "obj": [*obj, Unwritable()]})


# (format, frame, write options): each writer fails its own way, some after writing part
# of the staged file (pandas' to_csv, chosen by an option pyarrow's writer lacks).
CASES = {
    **{name: (name, bad, {}) for name in FILE_FORMATS},
    "csv-partial": ("csv", bad_late, {"date_format": "%Y-%m-%d"}),
}


def test_all_file_formats_are_installed() -> None:
    assert FILE_FORMATS == ["parquet", "csv", "hdf", "feather"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_failed_write_to_memory_leaves_the_stored_object(case: str, tmp_path: Path) -> None:
    name, make_bad, options = CASES[case]
    fmt = get_format(name)
    suffix = fmt.suffixes[0]  # type: ignore[attr-defined]
    location = f"memory://prefect-ds-{uuid.uuid4().hex[:8]}/keep{suffix}"
    fs = fsspec.filesystem("memory")
    before = good(1)
    fmt.write(before, location)
    stored = {p: fs.cat_file(p) for p in fs.find(location.rsplit("/", 1)[0])}

    local = tmp_path / f"keep{suffix}"
    with pytest.raises(Exception) as local_error:
        fmt.write(make_bad(), str(local), **options)
    assert not local.exists()
    with pytest.raises(Exception) as remote_error:
        fmt.write(make_bad(), location, **options)
    assert type(remote_error.value) is type(local_error.value), (
        f"the remote write failed with {remote_error.value!r}, the local one with "
        f"{local_error.value!r}"
    )
    assert {p: fs.cat_file(p) for p in fs.find(location.rsplit("/", 1)[0])} == stored
    pd.testing.assert_frame_equal(fmt.read(location), before)


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_failed_first_write_to_memory_creates_nothing(name: str) -> None:
    fmt = get_format(name)
    suffix = fmt.suffixes[0]  # type: ignore[attr-defined]
    bucket = f"memory://prefect-ds-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception):  # noqa: B017
        fmt.write(bad(), f"{bucket}/new{suffix}")
    assert not fmt.exists(f"{bucket}/new{suffix}")
    assert fsspec.filesystem("memory").find(bucket) == []
