"""Round trips and templates over the wide strategies of tests/strategies.py.

Every datetime unit with and without time zones (named zones with odd offsets and DST,
fixed offsets), NaN / NA / NaT, long and non-BMP text, empty, zero-column, wide and long
frames, and indexes of every case, nullable ones included: each file format reads them
back exactly (or as the documented conversion in test_fidelity.CONVERSIONS). And a
location template with a hostile value in any of its fields renders nothing and writes
nothing. The example count comes from the hypothesis profile loaded in conftest.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
import strategies
from hypothesis import given
from strategies import INDEX, Kinds, templates
from test_fidelity import CONVERSIONS, FORMATS

from prefect_ds import PandasResultHandler, UnsafeLocationError, get_format
from prefect_ds._locations import LocationTemplate

# HDF5 dataset names cannot be empty or ".", nor hold "/" or NUL (a clear error, tested
# in tests/test_hdf.py).
NAME_RULES = {
    "hdf": lambda name: name not in ("", ".") and "/" not in name and "\x00" not in name,
}


def expected(df: pd.DataFrame, kinds: Kinds, fmt: str) -> pd.DataFrame:
    out = df.copy()
    for name, kind in kinds.items():
        target = CONVERSIONS.get((fmt, kind))
        if target is None:
            continue
        if name is INDEX:
            out.index = out.index.astype(target)
        else:
            out[name] = out[name].astype(target)
    return out


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_wide_frames_round_trip(fmt_name: str) -> None:
    fmt = get_format(fmt_name)

    @given(strategies.frames(NAME_RULES.get(fmt_name, lambda name: True)))
    def round_trip(case: tuple[pd.DataFrame, Kinds]) -> None:
        df, kinds = case
        with tempfile.TemporaryDirectory(prefix="prefect-ds-prop-") as tmp:
            location = str(Path(tmp) / f"frame{FORMATS[fmt_name]}")
            fmt.write(df, location)
            back = fmt.read(location)
        pd.testing.assert_frame_equal(back, expected(df, kinds, fmt_name), check_exact=True)

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
