"""Staleness fingerprints: what "code" and "inputs" hash, where each format keeps them,
and checkpoint(..., invalidate_on=..., strict=...) recomputing exactly when it should."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prefect_ds import get_format
from prefect_ds._checkpoint.fingerprint import (
    METADATA_KEY,
    Fingerprint,
    FingerprintError,
    code_digest,
    inputs_digest,
)
from prefect_ds._format import stored_metadata

pytest_plugins = ["sql_fixtures"]


def load_module(tmp_path: Path, source: str) -> Any:
    """Import ``source`` as a fresh module (a new name each time, as after a restart)."""
    name = f"fp_mod_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BASE = """
    THRESHOLD = 3

    def helper(x):
        return x + 1

    def step(df):
        \"\"\"Add one.\"\"\"
        # a comment
        return df.assign(y=helper(df["x"]) * THRESHOLD)
"""


# -- "code" -------------------------------------------------------------------------------


def test_code_ignores_formatting_comments_and_docstrings(tmp_path: Path) -> None:
    before = load_module(tmp_path, BASE).step
    after = load_module(tmp_path, """
        THRESHOLD = 3


        def helper(x):
            # helpers get comments too
            return (x
                    + 1)

        def step(df):
            \"\"\"A different docstring, reflowed
            over two lines.\"\"\"
            return df.assign(y = helper(df['x']) * THRESHOLD)   # trailing comment
    """).step
    assert code_digest(before) == code_digest(after)


@pytest.mark.parametrize("change", [
    ("return df.assign(y=helper", "return df.assign(z=helper"),  # the function itself
    ("return x + 1", "return x + 2"),  # a helper it calls
    ("THRESHOLD = 3", "THRESHOLD = 4"),  # a constant it names
])
def test_code_changes_that_count(tmp_path: Path, change: tuple[str, str]) -> None:
    old, new = change
    assert old in BASE
    before = load_module(tmp_path, BASE).step
    after = load_module(tmp_path, BASE.replace(old, new)).step
    assert code_digest(before) != code_digest(after)


def test_code_follows_helpers_recursively_and_survives_cycles(tmp_path: Path) -> None:
    source = """
        def a(n):
            return b(n - 1) if n else 0

        def b(n):
            return a(n) + LEAF()

        def LEAF():
            return 1

        def top(n):
            return a(n)
    """
    before = load_module(tmp_path, source).top
    after = load_module(tmp_path, source.replace("return 1", "return 2")).top
    assert code_digest(before) != code_digest(after)


def test_code_of_a_prefect_task_is_its_function(tmp_path: Path) -> None:
    from prefect import task

    module = load_module(tmp_path, BASE)
    assert code_digest(task(module.step)) == code_digest(module.step)


def test_code_without_source_falls_back_to_bytecode() -> None:
    namespace: dict[str, Any] = {}
    exec("def f(x):\n    return x + 1\n", namespace)
    exec("def g(x):\n    return x + 2\n", namespace)
    assert code_digest(namespace["f"]) != code_digest(namespace["g"])


# -- "inputs" -----------------------------------------------------------------------------


def mixed(rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "x": rng.normal(size=rows),
        "n": rng.integers(0, 100, rows),
        "when": pd.date_range("2025-01-01", periods=rows, freq="s"),
        "tz": pd.date_range("2025-01-01", periods=rows, freq="h", tz="Europe/Paris"),
        "label": pd.Categorical(rng.choice(["a", "b"], rows)),
        "text": [f"row-{i}" for i in range(rows)],
        "obj": pd.Series([f"o{i}" for i in range(rows)], dtype=object),
        "nullable": pd.array([1, None] * (rows // 2), dtype="Int64"),
        "flag": rng.random(rows) > 0.5,
    }, index=pd.RangeIndex(rows, name="row"))


def digest(**arguments: Any) -> str:
    return inputs_digest(arguments, "test")


def test_equal_frames_hash_equal_however_built() -> None:
    df = mixed()
    assert digest(df=df) == digest(df=df.copy())
    assert digest(df=df.iloc[10:20]) == digest(df=df.iloc[10:20].copy())
    assert digest(df=df.head(5)) == digest(df=mixed().head(5))


@pytest.mark.parametrize("mutate", [
    lambda d: d.assign(x=d["x"].where(d.index != 7, 0.0)),
    lambda d: d.assign(text=d["text"].where(d.index != 7, "changed")),
    lambda d: d.assign(obj=d["obj"].where(d.index != 7, "changed")),
    lambda d: d.assign(label=d["label"].cat.add_categories(["c"])),
    lambda d: d.assign(n=d["n"].astype("int32")),
    lambda d: d.rename(columns={"x": "x2"}),
    lambda d: d[list(reversed(d.columns))],
    lambda d: d.set_axis(pd.RangeIndex(1, len(d) + 1, name="row")),
    lambda d: d.set_axis(pd.Index([f"k{i}" for i in range(len(d))], name="row")),
    lambda d: d.iloc[:-1],
])
def test_any_content_change_changes_the_hash(
    mutate: Callable[[pd.DataFrame], pd.DataFrame],
) -> None:
    df = mixed()
    assert digest(df=mutate(df)) != digest(df=df)


def test_scalars_containers_arrays_and_series() -> None:
    base = {"a": 1, "b": [1, 2.5, "x", None], "c": {"k": (1, 2)}, "d": dt.date(2025, 1, 1)}
    assert digest(**base) == digest(**{"d": dt.date(2025, 1, 1), "c": {"k": (1, 2)},
                                       "b": [1, 2.5, "x", None], "a": 1})
    assert digest(**base) != digest(**{**base, "a": True})  # 1 and True differ
    assert digest(**base) != digest(**{**base, "b": (1, 2.5, "x", None)})
    assert digest(s={"b", "a"}) == digest(s={"a", "b"})
    arr = np.arange(12).reshape(3, 4)
    assert digest(a=arr) == digest(a=arr.copy()) != digest(a=arr.T)
    s = pd.Series([1, 2, 3], name="v")
    assert digest(s=s) == digest(s=s.copy()) != digest(s=s.rename("w"))


def test_multiindex_arrow_and_polars_inputs_are_hashed_by_content() -> None:
    """Every level of a MultiIndex (rows or columns) counts; Arrow tables and polars
    frames are hashed by their content, and a polars Object column is refused."""
    rows = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    df = pd.DataFrame({"v": [1.5, 2.5]}, index=rows)
    other_rows = df.set_axis(pd.MultiIndex.from_tuples([("a", 1), ("b", 3)], names=["k", "n"]))
    assert digest(df=df) == digest(df=df.copy()) != digest(df=other_rows)
    wide = df.T  # the MultiIndex now labels the columns
    assert digest(df=wide) != digest(df=other_rows.T)
    mixed_items = np.array([1, "x", None, 2.5], dtype=object)  # hashed item by item
    assert digest(a=mixed_items) == digest(a=mixed_items.copy()) != digest(a=mixed_items[::-1])
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"x": [1, 2], "s": ["a", None]})
    assert digest(t=table) == digest(t=pa.table({"x": [1, 2], "s": ["a", None]}))
    assert digest(t=table) != digest(t=pa.table({"x": [1, 3], "s": ["a", None]}))
    pl = pytest.importorskip("polars", reason="opt-in: the [polars] extra is not installed")
    frame = pl.DataFrame({"x": [1, 2], "s": ["a", "b"]})
    assert digest(p=frame) == digest(p=pl.DataFrame({"x": [1, 2], "s": ["a", "b"]})) != digest(
        p=pl.DataFrame({"x": [1, 3], "s": ["a", "b"]}))
    with pytest.raises(FingerprintError, match="Object"):
        digest(p=pl.DataFrame({"o": pl.Series([object()], dtype=pl.Object)}))


def test_unhashable_argument_names_itself_and_the_fix() -> None:
    with pytest.raises(FingerprintError) as info:
        inputs_digest({"df": pd.DataFrame(), "conn": object()}, "task 'load'")
    message = str(info.value)
    assert "'conn'" in message and "task 'load'" in message and "callable" in message


def test_record_round_trip_and_changed_parts() -> None:
    old = Fingerprint({"code": "a", "inputs": "b"})
    assert Fingerprint.decode(old.encode()) == old
    assert Fingerprint({"code": "a", "inputs": "c"}).changed(old) == ["inputs"]
    assert Fingerprint({"code": "a", "callable:f": "z"}).changed(old) == ["callable:f"]
    assert Fingerprint.decode("not json") is None
    assert Fingerprint.decode(None) is None


# -- where each format keeps it -------------------------------------------------------------


def metadata_locations(tmp_path: Path) -> dict[str, str]:
    return {
        "parquet": str(tmp_path / "t.parquet"),
        "feather": str(tmp_path / "t.feather"),
        "csv": str(tmp_path / "t.csv"),
        "hdf": str(tmp_path / "t.h5#group/t"),
        "sql": f"sqlite:///{tmp_path / 'r.db'}#t_meta",
    }


@pytest.mark.parametrize("fmt_name", ["parquet", "feather", "csv", "hdf", "sql"])
def test_formats_store_metadata_with_the_data(tmp_path: Path, fmt_name: str) -> None:
    fmt = get_format(fmt_name)
    location = metadata_locations(tmp_path)[fmt_name]
    df = pd.DataFrame({"a": [1, 2, 3]})
    assert not getattr(type(fmt), "_metadata_sidecar", False)
    fmt.write(df, location, metadata={METADATA_KEY: "fp-1"})
    assert stored_metadata(fmt, location) == {METADATA_KEY: "fp-1"}
    pd.testing.assert_frame_equal(fmt.read(location), df)
    fmt.write(df, location)  # a plain write carries none
    assert stored_metadata(fmt, location) == {}


@pytest.mark.parametrize("engine", ["adbc", "sqlalchemy"])
def test_sql_metadata_on_postgresql(pg_url: str, table: str, engine: str) -> None:
    fmt = get_format("sql")
    location = f"{pg_url}#{table}"
    fmt.write(pd.DataFrame({"a": [1]}), location, engine=engine, metadata={"k": "v"})
    assert fmt.read_metadata(location) == {"k": "v"}  # type: ignore[attr-defined]
    assert fmt.target_info(location).rows == 1  # type: ignore[attr-defined]


def test_sql_upgrades_a_metadata_table_without_the_column(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE _prefect_ds_tables (table_name VARCHAR(128) NOT NULL PRIMARY KEY, "
            "state VARCHAR(16) NOT NULL, n_rows BIGINT NOT NULL, columns TEXT NOT NULL, "
            "arrow_schema TEXT NOT NULL, format_version INTEGER NOT NULL, "
            "written_at VARCHAR(40) NOT NULL)"
        )
    fmt = get_format("sql")
    for engine in ("sqlalchemy", "adbc"):
        location = f"sqlite:///{db}#t_{engine}"
        assert fmt.read_metadata(location) == {}  # type: ignore[attr-defined]
        fmt.write(pd.DataFrame({"a": [1]}), location, engine=engine, metadata={"k": engine})
        assert fmt.read_metadata(location) == {"k": engine}  # type: ignore[attr-defined]




def test_fallback_sidecar_for_a_file_format_without_the_capability(tmp_path: Path) -> None:
    from prefect_ds import FileFormat, open_for_read, staged

    class JsonFormat(FileFormat):  # a third party's minimal format, no metadata support
        name = "third-party-json"
        suffixes = (".tpj",)

        def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
            with open_for_read(location) as source:
                return pd.read_json(source)

        def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
            with staged(location) as (temp,):
                df.to_json(temp)

    fmt = JsonFormat()
    location = str(tmp_path / "t.tpj")
    assert type(fmt)._metadata_sidecar
    fmt.write(pd.DataFrame({"a": [1]}), location, metadata={METADATA_KEY: "fp"})
    assert (tmp_path / "t.tpj.prefect-ds.json").exists()
    assert stored_metadata(fmt, location) == {METADATA_KEY: "fp"}
    # The data file replaced behind the sidecar's back: the sidecar no longer vouches for it.
    fmt.write(pd.DataFrame({"a": [2]}), location)
    assert stored_metadata(fmt, location) == {}
    fmt.delete(location)
    assert not list(tmp_path.iterdir())


def test_a_format_that_cannot_store_metadata_is_a_clear_error() -> None:
    from prefect_ds import Format
    from prefect_ds._checkpoint.staleness import Staleness

    class Remote(Format):
        name = "remote-api"

        def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
            raise NotImplementedError

        def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
            raise NotImplementedError

        def exists(self, location: str) -> bool:
            return False

        def delete(self, location: str) -> None:
            pass

    with pytest.raises(TypeError, match="read_metadata"):
        Staleness(("code",), False, Remote(), lambda: None, "function 'f'")
    assert Staleness((), False, Remote(), lambda: None, "function 'f'").active is False


def test_invalidate_on_typos_fail_when_decorating() -> None:
    from prefect_ds._checkpoint.staleness import Staleness

    fmt = get_format("parquet")
    with pytest.raises(FingerprintError, match="'inputz'"):
        Staleness(("code", "inputz"), False, fmt, lambda: None, "function 'f'")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strict=True"):
        Staleness((), True, fmt, lambda: None, "function 'f'")




# -- checkpoint(..., invalidate_on=..., strict=...) --------------------------------------------

STEP = """
    import pandas as pd
    from prefect_ds import checkpoint

    CALLS = []
    FACTOR = 2

    def scale(v):
        return v * FACTOR

    @checkpoint(LOCATION, invalidate_on=("code",))
    def step(n):
        \"\"\"Doc.\"\"\"
        CALLS.append(n)
        return pd.DataFrame({"v": [scale(n)]})
"""


def step_module(tmp_path: Path, source: str = STEP) -> Any:
    location = str(tmp_path / "out" / "step_{n}.parquet")
    return load_module(tmp_path, source.replace("LOCATION", repr(location)))


def test_code_change_recomputes_and_says_why(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    first = step_module(tmp_path)
    assert first.step(1)["v"].tolist() == [2] and first.CALLS == [1]
    again = step_module(tmp_path)
    assert again.step(1)["v"].tolist() == [2] and again.CALLS == []  # loaded
    changed = step_module(tmp_path, STEP.replace("FACTOR = 2", "FACTOR = 3"))
    with caplog.at_level(logging.INFO, logger="prefect_ds.checkpoint"):
        assert changed.step(1)["v"].tolist() == [3]
    assert changed.CALLS == [1]
    assert "stale (code changed)" in caplog.text
    after = step_module(tmp_path, STEP.replace("FACTOR = 2", "FACTOR = 3"))
    assert after.step(1)["v"].tolist() == [3] and after.CALLS == []  # replaced, then loaded


def test_formatting_only_change_does_not_recompute(tmp_path: Path) -> None:
    step_module(tmp_path).step(1)
    reformatted = step_module(tmp_path, STEP.replace(
        '        """Doc."""\n', '        """Another docstring."""\n        # a comment\n'
    ).replace("CALLS.append(n)", "CALLS.append( n )"))
    reformatted.step(1)
    assert reformatted.CALLS == []


def test_input_change_recomputes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from prefect_ds import checkpoint

    calls: list[int] = []

    @checkpoint(str(tmp_path / "{name}.parquet"), invalidate_on=("inputs",))
    def features(name: str, raw: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(raw))
        return raw.assign(double=raw["x"] * 2)

    raw = pd.DataFrame({"x": [1, 2, 3]})
    features("eu", raw)
    features("eu", raw.copy())
    assert calls == [3]
    with caplog.at_level(logging.INFO, logger="prefect_ds.checkpoint"):
        out = features("eu", pd.DataFrame({"x": [1, 2, 3, 4]}))
    assert calls == [3, 4] and out["double"].tolist() == [2, 4, 6, 8]
    assert "stale (inputs changed)" in caplog.text
    features("eu", pd.DataFrame({"x": [1, 2, 3, 4]}))
    assert calls == [3, 4]


def test_callable_part(tmp_path: Path) -> None:
    from prefect_ds import checkpoint

    version = {"model": "v1"}
    calls: list[str] = []

    def model_version(arguments: Any) -> str:
        return version["model"]

    @checkpoint(str(tmp_path / "m.parquet"), invalidate_on=(model_version,))
    def fit() -> pd.DataFrame:
        calls.append(version["model"])
        return pd.DataFrame({"model": [version["model"]]})

    fit()
    fit()
    version["model"] = "v2"
    assert fit()["model"].tolist() == ["v2"]
    assert calls == ["v1", "v2"]


def test_foreign_target_is_fresh_unless_strict(tmp_path: Path) -> None:
    from prefect_ds import checkpoint

    location = tmp_path / "foreign.parquet"
    get_format("parquet").write(pd.DataFrame({"v": ["theirs"]}), str(location))
    calls: list[str] = []

    def make(strict: bool) -> Callable[[], pd.DataFrame]:
        @checkpoint(str(location), invalidate_on=("code", "inputs"), strict=strict)
        def produce() -> pd.DataFrame:
            calls.append("ran")
            return pd.DataFrame({"v": ["ours"]})
        return produce

    assert make(False)()["v"].tolist() == ["theirs"] and calls == []
    assert make(True)()["v"].tolist() == ["ours"] and calls == ["ran"]
    assert make(True)()["v"].tolist() == ["ours"] and calls == ["ran"]  # now fingerprinted


def test_default_is_pure_existence(tmp_path: Path) -> None:
    from prefect_ds import checkpoint

    location = str(tmp_path / "t.parquet")
    stale = Fingerprint({"code": "0" * 32}).encode()
    get_format("parquet").write(pd.DataFrame({"v": [0]}), location,
                                metadata={METADATA_KEY: stale})

    @checkpoint(location)
    def produce() -> pd.DataFrame:
        raise AssertionError("a checkpoint without invalidate_on must load what exists")

    assert produce()["v"].tolist() == [0]


def format_location(tmp_path: Path, fmt_name: str) -> str:
    return {
        "parquet": str(tmp_path / "t_{tag}.parquet"),
        "csv": str(tmp_path / "t_{tag}.csv"),
        "hdf": str(tmp_path / "t.h5#t_{tag}"),
        "feather": str(tmp_path / "t_{tag}.feather"),
        "sql": f"sqlite:///{tmp_path / 'r.db'}#t_{{tag}}",
    }[fmt_name]


@pytest.mark.parametrize("fmt_name", ["parquet", "csv", "hdf", "sql", "feather"])
def test_fingerprints_for_every_format(tmp_path: Path, fmt_name: str) -> None:
    from prefect_ds import checkpoint

    calls: list[int] = []

    @checkpoint(format_location(tmp_path, fmt_name), invalidate_on=("code", "inputs"))
    def produce(tag: str, n: int) -> pd.DataFrame:
        calls.append(n)
        return pd.DataFrame({"v": list(range(n))})

    produce("a", 2)
    produce("a", 2)
    assert calls == [2]
    assert len(produce("a", 3)) == 3 and calls == [2, 3]
    produce("a", 3)
    assert calls == [2, 3]
    fmt = get_format(fmt_name)
    stored = stored_metadata(fmt, format_location(tmp_path, fmt_name).format(tag="a"))
    assert Fingerprint.decode(stored[METADATA_KEY]) is not None
    assert not getattr(type(fmt), "_metadata_sidecar", False)  # kept inside the target
