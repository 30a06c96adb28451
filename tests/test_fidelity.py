"""The fidelity matrix: every dtype x every file format is an exact round trip, or a
conversion listed in CONVERSIONS (published with its reasons in docs/fidelity.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import prefect_ds
from prefect_ds import UnknownFormatError, get_format

FORMATS = {"csv": ".csv", "parquet": ".parquet", "hdf": ".h5", "feather": ".feather"}

# (format, dtype case) -> the dtype the column (or, for "named index", the index) reads
# back as, where it is not the written one. docs/fidelity.md publishes the same table
# with the reasons; every other cell of the matrix is an exact round trip.
CONVERSIONS: dict[tuple[str, str], str] = {}

N = 4


def _index_frame() -> pd.DataFrame:
    return pd.DataFrame({"value": [0.5, 1.5, np.nan, 3.5]},
                        index=pd.Index(["k3", "k1", "k4", "k2"], name="key"))


CASES: dict[str, Callable[[], pd.DataFrame]] = {
    "float64": lambda: pd.DataFrame({"x": [1.5, np.nan, -0.0, 1e300]}),
    "int64": lambda: pd.DataFrame({"x": np.array([1, -2, 2**62, 0], dtype="int64")}),
    "Int64": lambda: pd.DataFrame({"x": pd.array([1, None, 2**62 + 1, -5], dtype="Int64")}),
    "bool": lambda: pd.DataFrame({"x": [True, False, False, True]}),
    "boolean": lambda: pd.DataFrame({"x": pd.array([True, None, False, True],
                                                   dtype="boolean")}),
    "datetime64[ns]": lambda: pd.DataFrame({"x": pd.DatetimeIndex(
        ["2020-01-01 12:00:00.123456789", None, "1970-01-01", "2262-04-11"])}),
    "datetime64[ns, tz]": lambda: pd.DataFrame({"x": pd.DatetimeIndex(
        ["2020-03-29 01:30", None, "2020-10-25 02:30", "1999-12-31 23:59:59.999999999"]
    ).tz_localize("Europe/Paris", ambiguous=True)}),
    "str": lambda: pd.DataFrame({"x": pd.array(["a", None, "", "日本"], dtype="str")}),
    "string[python]": lambda: pd.DataFrame({"x": pd.array(["a", None, "", "NA"],
                                                          dtype="string[python]")}),
    "category": lambda: pd.DataFrame({"x": pd.Categorical(["b", "a", None, "b"],
                                                          categories=["c", "b", "a"])}),
    "named index": _index_frame,
}


def _format(name: str) -> prefect_ds.Format:
    try:
        return get_format(name)
    except UnknownFormatError as exc:
        pytest.skip(f"format {name!r} is not installed: {exc}")


def _expected(df: pd.DataFrame, fmt: str, case: str) -> pd.DataFrame:
    target = CONVERSIONS.get((fmt, case))
    if target is None:
        return df
    if case == "named index":
        return df.set_axis(df.index.astype(target), axis=0)
    return df.astype({"x": target})


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_round_trip(tmp_path: Path, fmt_name: str, case: str) -> None:
    fmt = _format(fmt_name)
    df = CASES[case]()
    assert len(df) == N
    location = str(tmp_path / f"cell{FORMATS[fmt_name]}")
    fmt.write(df, location)
    back = fmt.read(location)
    pd.testing.assert_frame_equal(back, _expected(df, fmt_name, case), check_exact=True)


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_all_cases_in_one_frame(tmp_path: Path, fmt_name: str) -> None:
    """The same cells side by side in one frame (formats that lay columns out together)."""
    fmt = _format(fmt_name)
    columns = {case: make()["x"] for case, make in CASES.items() if case != "named index"}
    df = pd.DataFrame(columns).set_axis(_index_frame().index, axis=0)
    expected = df.copy()
    for (name, case), target in CONVERSIONS.items():
        if name == fmt_name:
            if case == "named index":
                expected.index = expected.index.astype(target)
            else:
                expected[case] = expected[case].astype(target)
    location = str(tmp_path / f"all{FORMATS[fmt_name]}")
    fmt.write(df, location)
    pd.testing.assert_frame_equal(fmt.read(location), expected, check_exact=True)


def _dtype_table() -> dict[str, dict[str, str]]:
    """The dtype table of docs/fidelity.md: case -> {format: cell}."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "fidelity.md").read_text()
    section = doc[doc.index("## The dtype table"):]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def test_conversions_are_published() -> None:
    """docs/fidelity.md's dtype table is this test's matrix: a row per case, and in each
    file format's column "exact" or the conversion in CONVERSIONS. Rewriting a cell fails."""
    table = _dtype_table()
    assert list(table) == list(CASES)
    for case, row in table.items():
        for fmt in FORMATS:
            assert row[fmt] == CONVERSIONS.get((fmt, case), "exact"), (case, fmt, row[fmt])
