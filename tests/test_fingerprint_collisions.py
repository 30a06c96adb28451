"""Fingerprints tell different inputs apart: a collision loads a stale result silently, so
two frames that ``assert_frame_equal`` tells apart must never share an "inputs" digest.

Differential property tests against pandas' own ``assert_frame_equal``, over frames drawn
from small pools of values, labels and dtypes (so near-collisions are frequent), plus the
known collisions as regression cases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from prefect_ds import FingerprintError
from prefect_ds._checkpoint.fingerprint import inputs_digest


def digest(value: Any) -> str:
    return inputs_digest({"df": value}, "task 'test'")


def frames_differ(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        assert_frame_equal(a, b, check_exact=True)
    except AssertionError:
        return True
    return False


# -- regression cases ---------------------------------------------------------------------------

def obj(*values: Any) -> pd.Series:
    return pd.Series(list(values), dtype=object)


UTC = dt.timezone.utc
PAIRS = {
    "object ints and strings": (obj(1, "2"), obj("1", 2)),
    "object int and float": (obj(1, 2.0), obj(1.0, 2)),
    "object int and bool": (obj(1, 0), obj(True, False)),
    "object None and NaN": (obj(None, "x"), obj(np.nan, "x")),
    "object None and NA": (obj(None, "x"), obj(pd.NA, "x")),
    "object bytes and str": (obj(b"a"), obj("a")),
    "object naive and aware datetimes": (obj(dt.datetime(2024, 1, 1)),
                                         obj(dt.datetime(2024, 1, 1, tzinfo=UTC))),
    "ordered and unordered categoricals": (pd.Categorical(["a", "b"], ordered=True),
                                           pd.Categorical(["a", "b"], ordered=False)),
    "category order": (pd.Categorical(["a", "b"], categories=["a", "b"]),
                       pd.Categorical(["a", "b"], categories=["b", "a"])),
    "int and float": (pd.Series([1, 2]), pd.Series([1.0, 2.0])),
    "zero and minus zero": (pd.Series([0.0]), pd.Series([-0.0])),
    "NaN and None as strings": (pd.Series(["nan"], dtype=object), obj(np.nan)),
    "time zones": (pd.Series(pd.to_datetime(["2024-01-01"]).tz_localize("UTC")),
                   pd.Series(pd.to_datetime(["2024-01-01"]).tz_localize("Europe/Paris"))),
    "naive and UTC": (pd.Series(pd.to_datetime(["2024-01-01"])),
                      pd.Series(pd.to_datetime(["2024-01-01"]).tz_localize("UTC"))),
    "time units": (pd.Series(pd.to_datetime(["2024-01-01"]).as_unit("ns")),
                   pd.Series(pd.to_datetime(["2024-01-01"]).as_unit("us"))),
    "string storages": (pd.Series(["x"], dtype="string[python]"),
                        pd.Series(["x"], dtype="string[pyarrow]")),
    "str and string": (pd.Series(["x"], dtype="str"), pd.Series(["x"], dtype="string")),
    "nullable and plain ints": (pd.Series([1], dtype="Int64"), pd.Series([1], dtype="int64")),
    "NA and 0 in Int64": (pd.Series([pd.NA], dtype="Int64"), pd.Series([0], dtype="Int64")),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_known_collisions_are_told_apart(name: str) -> None:
    left, right = PAIRS[name]
    a, b = pd.DataFrame({"c": left}), pd.DataFrame({"c": right})
    assert digest(a) != digest(b), name
    assert digest(a) == digest(a.copy())  # and each is stable


@pytest.mark.parametrize("change", [
    lambda d: d[["b", "a"]],  # column order
    lambda d: d.rename_axis("i"),  # index name
    lambda d: d.rename_axis(columns="cols"),  # columns' name
    lambda d: d.set_axis([1, "1"] if len(d.columns) == 2 else [1], axis=1),  # label types
    lambda d: d.set_axis(pd.Index([0, 1], dtype="int32")),  # index dtype
    lambda d: d.iloc[:0],  # empty
    lambda d: d.iloc[:0].astype({"a": "float64"}),  # empty, other dtype
])
def test_structure_changes_change_the_digest(change: Any) -> None:
    base = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    changed = change(base)
    assert frames_differ(base, changed)
    assert digest(base) != digest(changed)


def test_empty_frames_differ_by_dtype_and_index() -> None:
    assert digest(pd.DataFrame({"a": pd.Series([], dtype="int64")})) != \
        digest(pd.DataFrame({"a": pd.Series([], dtype="float64")}))
    assert digest(pd.DataFrame(index=pd.Index([], dtype="int64"))) != \
        digest(pd.DataFrame(index=pd.Index([], dtype="object")))


@pytest.mark.parametrize("value", [
    pd.DataFrame({"lists": obj([1, 2], [3])}),
    pd.DataFrame({"dicts": obj({"a": 1})}),
    pd.DataFrame({"mixed": obj([1], "x", 2)}),
    pd.Series([[1], [2, "x"]]),
    pd.DataFrame({"a": [1]}, index=pd.Index([object()], dtype=object)),
])
def test_unhashable_content_raises_fingerprint_error_naming_the_argument(value: Any) -> None:
    with pytest.raises(FingerprintError) as info:
        inputs_digest({"frame": value}, "task 'clean'")
    message = str(info.value)
    assert "'frame'" in message and "task 'clean'" in message and "callable" in message
    assert not isinstance(info.value, TypeError) or isinstance(info.value, FingerprintError)


def test_a_checkpoint_does_not_load_a_result_of_other_inputs(tmp_path: Path) -> None:
    from prefect_ds import checkpoint

    calls: list[list[Any]] = []

    @checkpoint(str(tmp_path / "out.parquet"), invalidate_on=("inputs",))
    def total(df: pd.DataFrame) -> pd.DataFrame:
        calls.append(list(df["c"]))
        return pd.DataFrame({"n": [len(calls)]})

    total(pd.DataFrame({"c": obj(1, "2")}))
    total(pd.DataFrame({"c": obj("1", 2)}))
    total(pd.DataFrame({"c": pd.Categorical(["a"], ordered=True)}))
    total(pd.DataFrame({"c": pd.Categorical(["a"], ordered=False)}))
    assert len(calls) == 4  # each recomputed: none loaded another's result


# -- property tests -----------------------------------------------------------------------------

POOLS: dict[str, list[Any]] = {
    "int64": [0, 1, 2, -1],
    "float64": [0.0, -0.0, 1.0, 1.5, np.nan],
    "bool": [True, False],
    "object": [1, "1", 1.0, True, None, np.nan, "a", b"a", dt.date(2024, 1, 1)],
    "str": ["a", "b", "", "1"],
    "string": ["a", "b", None],
    "Int64": [0, 1, None],
    "category": ["a", "b"],
    "category-ordered": ["a", "b"],
    "datetime64[ns]": [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"), pd.NaT],
    "datetime64[ns, UTC]": [pd.Timestamp("2024-01-01", tz="UTC"), pd.NaT],
}
LABELS = ["a", "b", 1, "1", 0]
INDEX_NAMES = [None, "i", 1, "1"]


def _column(dtype: str, values: list[Any]) -> pd.Series:
    if dtype == "category-ordered":
        return pd.Series(pd.Categorical(values, categories=["a", "b"], ordered=True))
    if dtype == "category":
        return pd.Series(pd.Categorical(values, categories=["a", "b"]))
    return pd.Series(values, dtype=dtype)


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, list[tuple[Any, str]]]:
    """Rows and (label, dtype) of each column."""
    rows = draw(st.integers(0, 3))
    labels = draw(st.lists(st.sampled_from(LABELS), min_size=0, max_size=3, unique=True))
    dtypes = st.sampled_from([*sorted(POOLS), "object", "object", "category-ordered"])
    return rows, [(label, draw(dtypes)) for label in labels]


@st.composite
def frames(draw: st.DrawFn, shape: tuple[int, list[tuple[Any, str]]] | None = None
           ) -> pd.DataFrame:
    rows, columns = shape if shape is not None else draw(shapes())
    labels = [label for label, _ in columns]
    data = {}
    for label, dtype in columns:
        values = draw(st.lists(st.sampled_from(POOLS[dtype]), min_size=rows, max_size=rows))
        data[label] = _column(dtype, values)
    df = pd.DataFrame(data, index=pd.RangeIndex(rows))
    if labels:
        df = df[labels]  # keep the drawn column order
    if draw(st.booleans()):
        index_values = draw(st.lists(st.sampled_from([0, 1, 2, "0", "x"]),
                                     min_size=rows, max_size=rows))
        df.index = pd.Index(index_values, dtype=object if draw(st.booleans()) else None)
    df.index.name = draw(st.sampled_from(INDEX_NAMES))
    df.columns.name = draw(st.sampled_from(INDEX_NAMES))
    return df


@given(frames(), frames())
def test_frames_assert_frame_equal_tells_apart_never_collide(
    a: pd.DataFrame, b: pd.DataFrame
) -> None:
    if frames_differ(a, b):
        assert digest(a) != digest(b), (a.dtypes, b.dtypes, a, b)
    assert digest(a) == digest(a.copy())


@settings(max_examples=300)
@given(shapes(), st.data())
def test_frames_of_one_shape_never_collide(
    shape: tuple[int, list[tuple[Any, str]]], data: st.DataObject
) -> None:
    """Same labels and dtypes, values drawn twice: only the content can differ."""
    a, b = data.draw(frames(shape)), data.draw(frames(shape))
    if frames_differ(a, b):
        assert digest(a) != digest(b), (a.dtypes, b.dtypes, a, b)


@given(frames(), st.data())
def test_one_changed_cell_changes_the_digest(a: pd.DataFrame, data: st.DataObject) -> None:
    if a.empty:
        return
    row = data.draw(st.integers(0, a.shape[0] - 1))
    col = data.draw(st.integers(0, a.shape[1] - 1))
    b = a.copy()
    column = b.iloc[:, col]
    pool = POOLS["object"] if column.dtype == object else [0, 1, "b", 2.5, None]
    value = data.draw(st.sampled_from(pool))
    try:
        b.iloc[row, col] = value
    except (TypeError, ValueError):
        return  # the dtype cannot hold it
    if frames_differ(a, b):
        assert digest(a) != digest(b)


LOOK_ALIKES: list[tuple[Any, list[Any]]] = [
    ("1", [1, b"1", 1.0]),
    ("a", [b"a", "A"]),
    (b"a", ["a"]),
    (1.0, [1, "1.0", True]),
    (True, [1, "True", 1.0]),
    (dt.date(2024, 1, 1), ["2024-01-01", pd.Timestamp("2024-01-01")]),
]


def look_alikes(item: Any) -> list[Any]:
    if item is None:
        return [np.nan, pd.NA, "None"]
    if isinstance(item, float) and np.isnan(item):
        return [None, "nan", pd.NaT]
    if isinstance(item, int) and not isinstance(item, bool):
        return ["1", 1.0, True, np.int64(item)]
    for key, values in LOOK_ALIKES:
        if type(key) is type(item) and key == item:
            return values
    return [str(item)]


@settings(max_examples=200)
@given(frames(), st.data())
def test_look_alike_items_never_collide(a: pd.DataFrame, data: st.DataObject) -> None:
    """Each object item swapped, or not, for one that prints or compares alike."""
    b = a.copy()
    for position in range(a.shape[1]):
        if a.iloc[:, position].dtype != object:
            continue
        items = [data.draw(st.sampled_from([item, *look_alikes(item)]))
                 for item in a.iloc[:, position]]
        b.isetitem(position, pd.Series(items, index=a.index, dtype=object))
    if frames_differ(a, b):
        assert digest(a) != digest(b), (list(a.itertuples()), list(b.itertuples()))
