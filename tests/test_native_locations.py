"""Locations as pandas users write them: ``pathlib.Path``, ``format="CSV"``, ``{x!slug}``."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from prefect_ds import (
    PandasResultHandler,
    TemplateError,
    UnknownFormatError,
    UnsafeLocationError,
    checkpoint,
    get_format,
    resolve_format,
)
from prefect_ds._locations import LocationTemplate, check_value, slug


class OwnPath(os.PathLike[str]):
    """Any os.PathLike, not only pathlib's."""

    def __init__(self, path: object) -> None:
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


FRAME = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})


@pytest.mark.parametrize("kind", [Path, OwnPath, lambda p: PurePosixPath(str(p))])
def test_pathlike_locations_everywhere(tmp_path: Path, kind: object) -> None:
    make = kind  # type: ignore[assignment]
    handler = PandasResultHandler(make(tmp_path / "h_{n}.parquet"))  # type: ignore[operator]
    assert handler.format.name == "parquet"
    written = handler.write(FRAME, n=1)
    assert written == str(tmp_path / "h_1.parquet")
    assert_frame_equal(pd.read_parquet(written), FRAME)
    assert resolve_format(make(tmp_path / "x.csv")).name == "csv"  # type: ignore[operator]

    calls = []

    @checkpoint(make(tmp_path / "c_{n}.csv"))  # type: ignore[operator]
    def build(n: int) -> pd.DataFrame:
        calls.append(n)
        return FRAME

    assert_frame_equal(build(1), FRAME)
    assert_frame_equal(build(1), FRAME)
    assert calls == [1]
    assert (tmp_path / "c_1.csv").exists()


def test_pathlike_location_read_and_write_by_a_format(tmp_path: Path) -> None:
    fmt = get_format("parquet")
    fmt.write(FRAME, tmp_path / "f.parquet")  # type: ignore[arg-type]
    assert fmt.exists(tmp_path / "f.parquet")  # type: ignore[arg-type]
    assert_frame_equal(fmt.read(tmp_path / "f.parquet"), FRAME)  # type: ignore[arg-type]


def test_non_location_is_refused_naming_both_kinds() -> None:
    for bad in (b"x.csv", 3, "", None):
        with pytest.raises(TemplateError, match=r"string or os\.PathLike"):
            PandasResultHandler(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["CSV", "Csv", "PARQUET", "Hdf", "SQL"])
def test_format_names_are_case_insensitive(tmp_path: Path, name: str) -> None:
    assert get_format(name) is get_format(name.lower())
    handler = PandasResultHandler(str(tmp_path / "data_{n}"), format=name)
    assert handler.format.name == name.lower()


def test_unknown_name_still_lists_the_formats() -> None:
    with pytest.raises(UnknownFormatError, match=r"installed formats: .*csv"):
        get_format("XLSX")


# -- values with spaces, and the slug conversion -------------------------------------------


def test_a_string_with_spaces_gets_a_hint_about_strings() -> None:
    template = LocationTemplate("data/{region}.parquet")
    with pytest.raises(UnsafeLocationError) as caught:
        template.render({"region": "New York"})
    message = str(caught.value)
    assert "'New York'" in message
    assert "{region!slug}" in message
    assert "'New-York'" in message
    assert "%Y" not in message and "date" not in message


def test_a_datetime_still_gets_a_hint_about_dates() -> None:
    import datetime as dt

    with pytest.raises(UnsafeLocationError, match=r"\{t:%Y%m%d\}.*date"):
        LocationTemplate("{t}.csv").render({"t": dt.datetime(2024, 1, 1, 12)})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("New York", "New-York"),
        ("  São Paulo ", "São-Paulo"),
        ("a / b", "a-b"),
        ("../etc/passwd", "etc-passwd"),
        ("x;DROP TABLE y", "x-DROP-TABLE-y"),
        ("ﬁle", "file"),  # NFKC first: the ligature is two plain letters
        (2024, "2024"),
        ("already_plain", "already_plain"),
    ],
)
def test_slug_examples(value: object, expected: str) -> None:
    assert slug(value) == expected
    assert LocationTemplate("d/{v!slug}.csv").render({"v": value}) == f"d/{expected}.csv"


def test_slug_combines_with_a_format_spec() -> None:
    template = LocationTemplate("d/{v!slug:>8}.csv")
    with pytest.raises(UnsafeLocationError):  # padding spaces are still refused
        template.render({"v": "a b"})
    assert LocationTemplate("d/{v!slug:.3}.csv").render({"v": "New York"}) == "d/New.csv"


def test_slug_of_nothing_usable_is_refused() -> None:
    with pytest.raises(UnsafeLocationError, match="is empty"):
        LocationTemplate("d/{v!slug}.csv").render({"v": " / "})


def test_other_conversions_still_work_and_bad_ones_fail_clearly() -> None:
    assert LocationTemplate("{v!s}.csv").render({"v": 3}) == "3.csv"
    with pytest.raises(TemplateError, match="conversion 'x'"):
        LocationTemplate("{v!x}.csv").render({"v": 3})


@given(st.text(max_size=60))
def test_a_slug_is_always_safe_or_empty(value: str) -> None:
    out = slug(value)
    if out:
        assert check_value(out, "v") == out
    assert "/" not in out and not out.startswith(".")


def test_slug_in_a_checkpoint(tmp_path: Path) -> None:
    @checkpoint(tmp_path / "by_region" / "{region!slug}.parquet")
    def build(region: str) -> pd.DataFrame:
        return pd.DataFrame({"region": [region]})

    build("New York")
    assert (tmp_path / "by_region" / "New-York.parquet").exists()
