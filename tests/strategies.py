"""Hypothesis strategies shared by the property tests: frames as wide as pandas allows.

Frames mix every dtype case of the fidelity matrix, with datetimes in every unit pandas
has (s, ms, us, ns), naive or in a time zone (named zones with odd offsets and DST, fixed
offsets), NaN / NA / NaT, text that is empty, long (up to 1,000 characters) or outside the
Basic Multilingual Plane, zero rows, zero columns, wide (up to 60 columns) and long (up
to 5,000 rows, built from a drawn seed so that a long frame costs no more draws than a
short one), and sometimes an index of any case, nullable ones included.

``templates`` draws a location template of several fields and a set of arguments in
which one field, any of them, holds a hostile value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st

Draw = Callable[[st.SearchStrategy[Any]], Any]
Kinds = dict[str | None, str]
INDEX = None  # the key of the index's dtype case (column names are strings)

UNITS = ("s", "ms", "us", "ns")
TIME_ZONES: list[str | dt.tzinfo] = [
    "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
    "Pacific/Chatham", "America/St_Johns", "Asia/Kathmandu", "Pacific/Kiritimati",
    dt.timezone(dt.timedelta(hours=-9, minutes=-30)), dt.timezone(dt.timedelta(hours=14)),
]
KINDS = ["float64", "int64", "Int64", "bool", "boolean",
         *[f"datetime64[{u}]" for u in UNITS], *[f"datetime64[{u}, tz]" for u in UNITS],
         "str", "string[python]", "category"]

# Nanosecond timestamps pandas can hold (NaT's value excluded), a day inside the limits
# so that any time zone's local clock stays in range too.
NS_MIN, NS_MAX = pd.Timestamp.min.value, pd.Timestamp.max.value
DAY = pd.Timedelta(days=1).value

non_bmp = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF,
                        exclude_categories=("Cs",))
texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=non_bmp, min_size=1, max_size=12),
    st.text(alphabet=st.one_of(st.characters(exclude_categories=("Cs",)), non_bmp),
            min_size=200, max_size=1000),
)
names = st.text(max_size=12) | st.text(alphabet=non_bmp, min_size=1, max_size=4)


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


def _datetimes(stamps: list[int | None], kind: str, draw: Draw) -> Any:
    unit = kind.removeprefix("datetime64[").split(",")[0].rstrip("]")
    values = pd.DatetimeIndex([pd.NaT if v is None else pd.Timestamp(v) for v in stamps],
                              dtype="datetime64[ns]").as_unit(unit)
    if kind.endswith(", tz]"):
        values = values.tz_localize("UTC").tz_convert(draw(st.sampled_from(TIME_ZONES)))
    return values.array


def column(draw: Draw, kind: str, n: int) -> Any:
    """``n`` values of dtype case ``kind``, every one drawn by hypothesis."""
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
        # rounded to the unit, so the drawn value is one the unit can hold exactly
        scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[kind[11:].split(",")[0]
                                                                  .rstrip("]")]
        stamps = many(_maybe(st.integers((NS_MIN + DAY) // scale + 1, (NS_MAX - DAY) // scale)))
        return _datetimes([None if v is None else v * scale for v in stamps], kind, draw)
    if kind in ("str", "string[python]"):
        return pd.array(many(_maybe(texts)), dtype=kind)
    if kind == "category":
        categories = draw(st.lists(texts, unique=True, max_size=5))
        values = many(_maybe(st.sampled_from(categories)) if categories else st.none())
        return pd.Categorical(values, categories=categories, ordered=draw(st.booleans()))
    raise AssertionError(kind)


def long_column(draw: Draw, kind: str, n: int) -> Any:
    """``n`` values of ``kind`` from a drawn seed: long columns at the cost of one draw."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    missing = rng.random(n) < 0.1
    if kind == "float64":
        values = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
        return np.where(missing, np.nan, values)
    if kind in ("int64", "Int64"):
        ints = rng.integers(-(2**63), 2**63 - 1, n, dtype="int64")
        return ints if kind == "int64" else pd.array(np.where(missing, None, ints).tolist(),
                                                      dtype="Int64")
    if kind in ("bool", "boolean"):
        flags = rng.random(n) < 0.5
        return flags if kind == "bool" else pd.array(np.where(missing, None, flags).tolist(),
                                                     dtype="boolean")
    if kind.startswith("datetime64"):
        stamps = rng.integers(NS_MIN + DAY, NS_MAX - DAY, n) // 10**9 * 10**9
        return _datetimes([None if m else int(v) for v, m in zip(stamps, missing, strict=True)],
                          kind, draw)
    words = np.array(["", "a", "ü", "日本", "\U0001F600", "x" * 300, "NA", "null"], dtype=object)
    picked = words[rng.integers(0, len(words), n)]
    if kind == "category":
        return pd.Categorical(np.where(missing, None, picked).tolist(), categories=list(words))
    return pd.array(np.where(missing, None, picked).tolist(), dtype=kind)


@st.composite
def frames(draw: Draw, name_ok: Callable[[str], bool] = lambda name: True,
           kinds_allowed: tuple[str, ...] = tuple(KINDS)) -> tuple[pd.DataFrame, Kinds]:
    """A frame and the dtype case of each column (and of the index, under key INDEX)."""
    shape = draw(st.sampled_from(["small", "small", "small", "wide", "long", "empty"]))
    n = {"small": draw(st.sampled_from([0, 1]) | st.integers(0, 30)),
         "wide": draw(st.integers(0, 5)),
         "long": draw(st.integers(1_000, 5_000)),
         "empty": 0}[shape]
    width = {"small": 6, "wide": 60, "long": 6, "empty": draw(st.sampled_from([0, 3]))}[shape]
    labels = draw(st.lists(names.filter(name_ok), unique=True, max_size=width,
                           min_size=width // 2 if shape == "wide" else 0))
    kinds: Kinds = {label: draw(st.sampled_from(kinds_allowed)) for label in labels}
    make = long_column if shape == "long" else column
    df = pd.DataFrame({label: make(draw, kind, n) for label, kind in kinds.items()},
                      index=pd.RangeIndex(n))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(kinds_allowed))
        index_name = draw(st.text(min_size=1, max_size=8).filter(name_ok))
        df.index = pd.Index(make(draw, kind, n), name=index_name)
        kinds[INDEX] = kind
    return df, kinds


# --- location templates ---------------------------------------------------------------------

SAFE_VALUES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-=+,@]{0,19}", fullmatch=True)
HOSTILE_VALUES = st.one_of(
    st.sampled_from(["..", "../../x", "/etc/passwd", "~", "a/b", "a\\b", "a\x00b", ".hidden",
                     "s3://bucket/k", "C:\\x", "a#b", "a?b", "\uff0e\uff0e", "a\u2215b",
                     "x;DROP TABLE t", "a b", "", "x" * 201, "\u1100\u1161"]),
    # any text with at least one character a plain name cannot hold
    st.tuples(st.text(max_size=8), st.sampled_from("/\\\x00 '\";#?*%~:\n\t"),
              st.text(max_size=8)).map("".join),
)


@st.composite
def templates(draw: Draw) -> tuple[str, dict[str, str], str]:
    """``(template, arguments, hostile field)``: 2-5 fields, one holding a hostile value."""
    fields = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True),
                           min_size=2, max_size=5, unique=True))
    separators = draw(st.lists(st.sampled_from(["/", "_", "-", "/sub/", "."]),
                               min_size=len(fields) - 1, max_size=len(fields) - 1))
    body = "{" + fields[0] + "}" + "".join(
        sep + "{" + f + "}" for sep, f in zip(separators, fields[1:], strict=True))
    template = f"base/{body}.parquet"
    arguments = {f: draw(SAFE_VALUES) for f in fields}
    hostile = draw(st.sampled_from(fields))
    arguments[hostile] = draw(HOSTILE_VALUES)
    return template, arguments, hostile
