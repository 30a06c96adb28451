"""Frame kinds: pandas Series, polars and Arrow results through every format, the handler,
``@checkpoint`` and ``DSTaskRunner``, each compared with what the plain library gives.

The polars frames are modelled on polars' own I/O tests (pola-rs/polars,
py-polars/tests/unit/io/test_parquet.py and test_csv.py: a column of each dtype, nulls
included); tests/fidelity_kinds.py builds the differential test's frames the same way.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

import prefect_ds
from prefect_ds import ResultHandler, UnsupportedFrameError, checkpoint

pl = pytest.importorskip("polars", reason="opt-in: the [polars] extra is not installed")

# Formats and what each keeps of a polars frame exactly: every dtype on the Arrow
# formats, plain ones through pandas on the pandas-only formats.
ARROW_FORMATS = ["parquet", "feather", "csv"]
PANDAS_FORMATS = ["hdf", "sql"]


def plain_polars() -> Any:
    return pl.DataFrame({
        "i": [1, 2, 3], "f": [1.5, 2.5, None], "s": ["a", None, "c"],
        "b": [True, False, True],
        "t": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)],
    })


def rich_polars(nested: bool) -> Any:
    frame = pl.DataFrame({
        "i": pl.Series([1, None, 3], dtype=pl.Int32),
        "u": pl.Series([1, 2, 3], dtype=pl.UInt8),
        "f": [1.5, float("nan"), None],
        "s": ["a\nb", "", None],
        "cat": pl.Series(["x", "y", "x"], dtype=pl.Categorical),
        "enum": pl.Series(["lo", "hi", None], dtype=pl.Enum(["lo", "mid", "hi"])),
        "dec": pl.Series([decimal.Decimal("1.20"), None, decimal.Decimal("-3.45")],
                         dtype=pl.Decimal(10, 2)),
        "tz": pl.Series([dt.datetime(2024, 3, 31, 1, 30), None,
                         dt.datetime(2024, 10, 27, 2, 30)]).dt.replace_time_zone(
                             "Europe/Paris", ambiguous="earliest"),
        "dur": pl.Series([dt.timedelta(days=1), None, dt.timedelta(microseconds=7)]),
        "null": pl.Series([None, None, None], dtype=pl.Null),
        "date": [dt.date(2024, 1, 1), None, dt.date(1900, 2, 28)],
        "time": [dt.time(1, 2, 3), None, dt.time(23, 59, 59, 999999)],
    })
    if nested:
        frame = frame.with_columns(
            lst=pl.Series([[1, 2], [], None], dtype=pl.List(pl.Int64)),
            st=pl.Series([{"a": 1, "b": "x"}, None, {"a": None, "b": "z"}]),
        )
    return frame


def handler(tmp_path: Path, fmt: str) -> ResultHandler:
    if fmt == "sql":
        return ResultHandler(f"sqlite:///{tmp_path / 'kinds.db'}#t_{{n}}")
    suffix = {"parquet": ".parquet", "feather": ".feather", "csv": ".csv", "hdf": ".h5"}[fmt]
    location = str(tmp_path / f"{{n}}{suffix}")
    return ResultHandler(location + ("#frame" if fmt == "hdf" else ""))


@pytest.mark.parametrize("fmt", ARROW_FORMATS)
def test_polars_and_arrow_round_trip_exactly_on_the_arrow_formats(tmp_path: Path,
                                                                   fmt: str) -> None:
    h = handler(tmp_path, fmt)
    df = rich_polars(nested=fmt != "csv")
    h.write(df, n="pl")
    back = h.read(n="pl")
    assert isinstance(back, pl.DataFrame) and back.schema == df.schema
    assert back.equals(df)  # polars' own comparison: NaN equals NaN, null equals null

    table = df.to_arrow()
    h.write(table, n="pa")
    got = h.read(n="pa")
    assert isinstance(got, pa.Table) and got.schema == table.schema
    assert pl.from_arrow(got).equals(df)
    assert got.schema.metadata in (None, {})  # nothing of ours leaks into the table
    # other kinds on request: the same values, no pandas on the way for polars/arrow
    assert isinstance(h.read(n="pl", kind="arrow"), pa.Table)
    assert h.read(n="pa", kind="polars").equals(df)
    as_pandas = h.read(n="pl", kind="pandas")
    assert isinstance(as_pandas, pd.DataFrame) and list(as_pandas.columns) == df.columns


@pytest.mark.parametrize("fmt", PANDAS_FORMATS)
def test_pandas_only_formats_store_polars_and_arrow_through_pandas(tmp_path: Path,
                                                                   fmt: str) -> None:
    h = handler(tmp_path, fmt)
    df = plain_polars()
    h.write(df, n="pl")
    back = h.read(n="pl")
    assert isinstance(back, pl.DataFrame)
    assert back.equals(df) and back.schema == df.schema
    h.write(df.to_arrow(), n="pa")
    got = h.read(n="pa")
    assert isinstance(got, pa.Table) and pl.from_arrow(got).equals(df)


@pytest.mark.parametrize("fmt", ARROW_FORMATS + PANDAS_FORMATS)
def test_a_series_comes_back_a_series_with_its_name(tmp_path: Path, fmt: str) -> None:
    h = handler(tmp_path, fmt)
    named = pd.Series([1.5, None, 3.0], name="price")
    h.write(named, n="named")
    assert_series_equal(h.read(n="named"), named)
    unnamed = pd.Series([1, 2, 3])
    h.write(unnamed, n="unnamed")
    assert_series_equal(h.read(n="unnamed"), unnamed)
    assert isinstance(prefect_ds.PandasResultHandler(h.location).read(n="named"), pd.Series)


def test_a_foreign_target_loads_as_pandas_and_the_pandas_handler_defaults_to_pandas(
    tmp_path: Path,
) -> None:
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "foreign.parquet")
    h = ResultHandler(str(tmp_path / "{n}.parquet"))
    assert_frame_equal(h.read(n="foreign"), pd.DataFrame({"x": [1, 2]}))
    h.write(plain_polars(), n="pl")
    pandas_handler = prefect_ds.PandasResultHandler(str(tmp_path / "{n}.parquet"))
    assert isinstance(pandas_handler.read(n="pl"), pd.DataFrame)
    assert isinstance(pandas_handler.read(n="pl", kind="polars"), pl.DataFrame)
    with pytest.raises(ValueError, match="kind='bogus' is not a frame kind"):
        h.read(n="pl", kind="bogus")


def test_a_plugin_written_for_pandas_still_receives_pandas(tmp_path: Path) -> None:
    from prefect_ds._frames import read_frame, write_frame

    received: list[type] = []

    class PickleFormat(prefect_ds.FileFormat):  # today's interface: no kinds, no kind=
        name = "pickle-test"
        suffixes = (".pkl",)

        def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
            assert "kind" not in kwargs
            frame: pd.DataFrame = pd.read_pickle(location)
            return frame

        def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
            received.append(type(df))
            with prefect_ds.staged(location) as (temp,):
                df.to_pickle(temp)

    fmt = PickleFormat()
    location = str(tmp_path / "p.pkl")
    df = plain_polars()
    write_frame(fmt, df, location, {})
    write_frame(fmt, df.to_arrow(), str(tmp_path / "a.pkl"), {})
    assert received == [pd.DataFrame, pd.DataFrame]
    back = read_frame(fmt, location, {})  # the kind is kept in the metadata sidecar
    assert isinstance(back, pl.DataFrame) and back.equals(df)
    assert isinstance(read_frame(fmt, str(tmp_path / "a.pkl"), {}), pa.Table)


def test_a_frame_a_format_cannot_hold_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    h = handler(tmp_path, "csv")
    with pytest.raises(UnsupportedFrameError, match="column 'lst'"):
        h.write(rich_polars(nested=True), n="x")
    with pytest.raises(UnsupportedFrameError, match="column 'b'"):
        h.write(pa.table({"b": pa.array([b"\x00"], pa.binary())}), n="x")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_returns_the_stored_kind_unless_asked_and_fingerprints_by_content(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    @checkpoint(str(tmp_path / "pl_{n}.parquet"))
    def make_polars(n: int) -> Any:
        calls.append("polars")
        return plain_polars().with_columns(n=pl.lit(n))

    @checkpoint(str(tmp_path / "pl_{n}.parquet"), kind="pandas")
    def as_pandas(n: int) -> Any:
        raise AssertionError("a hit never runs the body")

    @checkpoint(str(tmp_path / "pa_{n}.csv"))
    def make_arrow(n: int) -> Any:
        calls.append("arrow")
        return pa.table({"n": [n, n]})

    first = make_polars(1)
    assert isinstance(first, pl.DataFrame)
    hit = make_polars(1)
    assert isinstance(hit, pl.DataFrame) and hit.equals(first)
    assert_frame_equal(as_pandas(1), first.to_pandas())
    assert isinstance(make_arrow(2), pa.Table) and make_arrow(2).equals(pa.table({"n": [2, 2]}))
    assert calls == ["polars", "arrow"]

    seen: list[int] = []

    @checkpoint(str(tmp_path / "fp_{name}.parquet"), invalidate_on=("inputs",))
    def summed(name: str, data: Any) -> Any:
        rows = -1 if isinstance(data, pl.LazyFrame) else data.shape[0]
        seen.append(rows)
        return pl.DataFrame({"rows": [rows]})

    base = pl.DataFrame({"x": [1, 2, 3]})
    summed("a", base)
    summed("a", pl.concat([base.head(1), base.tail(2)], rechunk=False))  # same content
    summed("a", base.with_columns(x=pl.Series([1, 2, 4])))  # changed: recomputes
    summed("b", base.to_arrow())
    summed("b", base.to_arrow().slice(0, 3))  # the same table, sliced: same content
    assert seen == [3, 3, 3]
    with pytest.raises(prefect_ds.FingerprintError, match="LazyFrame"):
        summed("c", base.lazy())  # hashing it would compute it
    with pytest.raises(prefect_ds.FingerprintError, match="Object columns"):
        summed("c", pl.DataFrame({"o": pl.Series([object()], dtype=pl.Object)}))
    assert not list(tmp_path.glob("fp_c*"))  # nothing stored without its fingerprint


def test_a_lazy_result_is_streamed_to_the_target_and_comes_back_lazy(tmp_path: Path) -> None:
    calls: list[int] = []

    @checkpoint(str(tmp_path / "lazy_{n}.parquet"))
    def lazy(n: int) -> Any:
        calls.append(n)
        return pl.LazyFrame({"x": range(n)}).with_columns(y=pl.col("x") * 2)

    first = lazy(5)
    again = lazy(5)
    assert calls == [5]
    for result in (first, again):
        assert isinstance(result, pl.LazyFrame)
        assert "lazy_5.parquet" in result.explain()  # a scan over the target itself
        assert result.collect().equals(
            pl.DataFrame({"x": range(5), "y": [0, 2, 4, 6, 8]}))
    stream = ResultHandler(str(tmp_path / "s_{n}.feather"))
    stream.write(pa.table({"x": [1, 2]}).to_reader(max_chunksize=1), n=1)
    assert isinstance(stream.read(n=1), pa.RecordBatchReader)


def test_a_lazy_frame_reaches_a_stream_format_batch_by_batch() -> None:
    """What a format taking Arrow streams gets for a LazyFrame is a reader whose batches are
    computed as it is read: the first batch arrives before the rest exist."""
    from prefect_ds._storage import kinds

    produced: list[int] = []

    def seen(values: Any) -> Any:
        produced.append(len(values))
        return values

    rows = 4_000_000  # polars computes a bounded number of batches ahead of the reader
    lazy = pl.LazyFrame({"x": range(rows)}).with_columns(
        y=pl.col("x").map_batches(seen, return_dtype=pl.Int64, is_elementwise=True))
    reader = kinds.for_format(lazy, kinds.LAZY, ("arrow.RecordBatchReader",), "test")
    assert isinstance(reader, pa.RecordBatchReader) and produced == []
    first = reader.read_next_batch()
    assert 0 < first.num_rows < rows and sum(produced) < rows
    assert first.num_rows + sum(b.num_rows for b in reader) == rows


def test_import_never_imports_polars(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, pandas as pd, prefect_ds
        h = prefect_ds.ResultHandler({str(tmp_path / "{n}.parquet")!r})
        h.write(pd.DataFrame({{"x": [1]}}), n=1)
        h.read(n=1)

        @prefect_ds.checkpoint({str(tmp_path / "c_{n}.csv")!r})
        def f(n):
            return pd.DataFrame({{"x": [n]}})

        f(1); f(1)
        print("polars" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_released_polars_results_reload_as_polars(prefect_harness: None,
                                                  tmp_path: Path) -> None:
    from prefect import flow, task

    from prefect_ds import DSTaskRunner, ReleasedResult

    @task
    @checkpoint(str(tmp_path / "r_{n}.parquet"))
    def stored(n: int) -> Any:
        return pl.DataFrame({"n": [n] * 3})

    @task
    @checkpoint(str(tmp_path / "a_{n}.csv"))
    def stored_arrow(n: int) -> Any:
        return pa.table({"n": [n] * 2})

    @task
    def count(df: Any) -> tuple[str, int]:
        return type(df).__module__.split(".")[0], len(df)

    @flow(task_runner=DSTaskRunner())
    def run() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        kept = stored.submit(2)
        table = stored_arrow.submit(3)
        seen["first"] = count.submit(kept).result()
        seen["first_arrow"] = count.submit(table).result()
        kept.wait()
        seen["released"] = kept.released  # type: ignore[attr-defined]
        seen["reloaded"] = kept.result()
        seen["late"] = count.submit(kept).result()
        seen["late_arrow"] = count.submit(table).result()
        return seen

    seen = run()
    assert isinstance(seen["released"], ReleasedResult)
    assert "3 x 1" in repr(seen["released"])
    assert isinstance(seen["reloaded"], pl.DataFrame)
    assert seen["reloaded"].equals(pl.DataFrame({"n": [2] * 3}))
    assert seen["first"] == seen["late"] == ("polars", 3)
    assert seen["first_arrow"] == seen["late_arrow"] == ("pyarrow", 2)


@pytest.mark.parametrize("fmt", ARROW_FORMATS)
def test_polars_and_arrow_on_s3(s3_server: object, s3_bucket: str, fmt: str) -> None:
    suffix = {"parquet": ".parquet", "feather": ".feather", "csv": ".csv"}[fmt]
    h = ResultHandler(f"{s3_bucket}/kinds/{{n}}{suffix}")
    df = plain_polars()
    h.write(df, n="pl")
    assert h.read(n="pl").equals(df)
    lazy = h.read(n="pl", kind="polars.LazyFrame")  # read whole, remote: still lazy
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect().equals(df)
    h.write(df.lazy(), n="lazy")
    assert h.read(n="lazy").collect().equals(df)
    h.write(df.to_arrow(), n="pa")
    assert h.read(n="pa").equals(df.to_arrow())


def test_kind_given_to_checkpoint_applies_to_a_miss_too(tmp_path: Path) -> None:
    @checkpoint(str(tmp_path / "m_{n}.parquet"), kind="pandas")
    def made(n: int) -> Any:
        return pl.DataFrame({"n": [n]})

    for _ in range(2):  # the miss, then the hit
        assert_frame_equal(made(1), pd.DataFrame({"n": [1]}))
    assert isinstance(ResultHandler(str(tmp_path / "m_{n}.parquet")).read(n=1), pl.DataFrame)
    with pytest.raises(ValueError, match="kind='frames' is not a frame kind"):
        checkpoint(str(tmp_path / "x.parquet"), kind="frames")


def test_generated_polars_frames_round_trip_exactly_or_are_refused(tmp_path: Path) -> None:
    """Frames from polars' own hypothesis strategy, through each Arrow format: read back
    equal with the same schema, or refused with nothing written. 25 frames by default,
    400 with ``PREFECT_DS_FULL=1``."""
    from hypothesis import HealthCheck, given, settings
    from polars.testing.parametric import dataframes

    outcomes: dict[str, int] = {"exact": 0, "refused": 0}

    full = os.environ.get("PREFECT_DS_FULL") == "1"

    @settings(max_examples=400 if full else 25, deadline=None, derandomize=not full,
              suppress_health_check=list(HealthCheck))
    @given(frame=dataframes(max_cols=4, max_size=20,
                            excluded_dtypes=[pl.Object, pl.Float16]))
    def check(frame: Any) -> None:
        for fmt in ARROW_FORMATS:
            target = tmp_path / fmt
            target.mkdir(exist_ok=True)
            h = handler(target, fmt)
            for old in target.iterdir():
                old.unlink()
            try:
                h.write(frame, n="g")
            except UnsupportedFrameError:
                assert list(target.iterdir()) == []
                outcomes["refused"] += 1
                continue
            back = h.read(n="g")
            assert back.schema == frame.schema, (fmt, back.schema, frame.schema)
            assert back.equals(frame), fmt
            outcomes["exact"] += 1

    check()
    assert outcomes["exact"] > 25  # most frames are stored; refusals are csv's nested types


@pytest.mark.parametrize("fmt", ["parquet", "csv", "hdf"])
def test_versions_keep_each_write_s_kind(tmp_path: Path, fmt: str) -> None:
    """A versioned handler records each version's kind: the latest reads back as the
    latest write's kind, and a pinned older version as its own."""
    suffix = {"parquet": ".parquet", "csv": ".csv", "hdf": ".h5"}[fmt]
    handler = ResultHandler(str(tmp_path / f"v_{{n}}{suffix}"), versioned=True)
    first = plain_polars()
    second = pa.table({"x": pa.array([1, 2], pa.int64())})
    handler.write(first, n=1)
    handler.write(second, n=1)
    older, newer = handler.versions(n=1)
    latest = handler.read(n=1)
    assert isinstance(latest, pa.Table) and latest.equals(second)
    pinned = handler.read(older, n=1)
    assert isinstance(pinned, pl.DataFrame)
    assert pinned.equals(first)
    assert handler.version_record(newer, n=1)["rows"] == 2
    plain = ResultHandler(str(tmp_path / f"plain{suffix}"))  # versioning changes no read
    plain.write(first)
    assert_frame_equal(handler.read(older, kind="pandas", n=1), plain.read(kind="pandas"))


def test_kinds_are_told_while_another_thread_imports_polars(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A module half imported by another thread sits in sys.modules without its classes
    yet: telling a frame's kind must not fail on it (no polars frame can exist then)."""
    import types

    from prefect_ds._storage.kinds import kind_of

    half = types.ModuleType("polars")
    monkeypatch.setitem(sys.modules, "polars", half)
    assert kind_of(pd.DataFrame({"a": [1]})) == "pandas"
    assert kind_of({"a": [1]}) is None
    half.DataFrame = pl.DataFrame  # type: ignore[attr-defined]  # LazyFrame not yet bound
    assert kind_of(pl.DataFrame({"a": [1]})) == "polars"
    assert kind_of(object()) is None
