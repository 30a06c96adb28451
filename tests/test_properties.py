"""Round-trip properties per file format: any frame of the supported dtypes reads back
exactly (or as the documented conversion in test_fidelity.CONVERSIONS); any location
template with a hostile value in any of its fields renders nothing and writes nothing.

The frames come from tests/strategies.py: every datetime unit with and without time
zones, NaN / NA / NaT, long and non-BMP text, empty, zero-column, wide and long frames,
and indexes of every case, nullable ones included. The example count comes from the
hypothesis profile loaded in conftest.py (50 by default, 500 with PREFECT_DS_FULL=1).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import strategies
from hypothesis import given
from hypothesis import strategies as st
from strategies import INDEX, KINDS, Kinds, templates
from test_fidelity import CONVERSIONS, FORMATS

from prefect_ds import PandasResultHandler, UnknownFormatError, UnsafeLocationError, get_format
from prefect_ds._locations import LocationTemplate

# Names a format refuses by design (with a clear error, tested in its own test file):
# HDF5 dataset names cannot be empty or ".", nor hold "/" or NUL.
NAME_RULES: dict[str, Callable[[str], bool]] = {
    "hdf": lambda name: name not in ("", ".") and "/" not in name and "\x00" not in name,
}
# The SQL format's own round-trip tests (tests/reliability/test_roundtrip.py) draw the
# nanosecond datetime cases only; docs/sql.md describes how it stores timestamps.
SQL_KINDS = tuple(k for k in KINDS if not k.startswith("datetime64") or k.startswith(
    ("datetime64[ns]", "datetime64[ns,")))


def frames(fmt: str) -> st.SearchStrategy[tuple[pd.DataFrame, Kinds]]:
    """The shared frame strategy (tests/strategies.py) with ``fmt``'s name rule."""
    name_ok = NAME_RULES.get(fmt, lambda name: True)
    return strategies.frames(name_ok, SQL_KINDS if fmt == "sql" else tuple(KINDS))


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


@given(templates())
def test_hostile_value_in_any_field_is_refused(case: tuple[str, dict[str, str], str]) -> None:
    template, arguments, hostile = case
    with tempfile.TemporaryDirectory(prefix="prefect-ds-prop-") as tmp:
        handler = PandasResultHandler(str(Path(tmp) / template))
        with pytest.raises(UnsafeLocationError, match=r"\{" + hostile + r"\}"):
            handler.write(pd.DataFrame({"x": [1]}), **arguments)
        assert list(Path(tmp).rglob("*")) == []


@given(templates())
def test_the_same_arguments_made_safe_render_inside_base(
        case: tuple[str, dict[str, str], str]) -> None:
    """The differential half: with the hostile value replaced, the template renders, and
    the location stays under ``base/``."""
    template, arguments, hostile = case
    rendered = LocationTemplate(template).render({**arguments, hostile: "safe"})
    assert rendered.startswith("base/") and ".." not in rendered.split("/")
