"""The dataset's polars ``LazyFrame`` read: polars' own Parquet scan of the committed files.

Differential: what the scan collects equals the frame written (polars'
``assert_frame_equal``, exact, float bits included) and the Arrow read of the same
dataset, for partition values of every type the format writes, the awkward ones included
(``/``, ``=``, ``%``, spaces, unicode, the empty string, nulls, ``-0.0``, NaN, time
zones). Where polars' scan would not read a dataset back exactly, the pyarrow scan stands
in, and the result is the same.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from support.datasets import fmt, registered_dataset_format  # noqa: F401 (a fixture)

from prefect_ds import UnsupportedFrameError

pl = pytest.importorskip("polars", reason="opt-in: the [polars] extra is not installed")
from polars.testing import assert_frame_equal  # noqa: E402

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def native(lazy: Any) -> bool:
    """Whether ``lazy`` is polars' own Parquet scan (the pyarrow one is a Python scan)."""
    plan = str(lazy.explain())
    return "Parquet SCAN" in plan and "PYTHON SCAN" not in plan


def float_bits(frame: Any) -> dict[str, list[int | None]]:
    """The bits of every float column (``-0.0`` and ``0.0`` differ, NaN equals NaN)."""
    out: dict[str, list[int | None]] = {}
    for name, dtype in frame.schema.items():
        if dtype.is_float():
            column = frame.get_column(name).cast(pl.Float64)
            bits = column.fill_null(0.0).to_numpy().view(np.int64).tolist()
            out[name] = [None if null else b
                         for null, b in zip(column.is_null().to_list(), bits, strict=True)]
    return out


def check(location: str, want: Any, *, expect_native: bool = True) -> Any:
    """Read ``location`` lazily and as Arrow; both equal ``want`` exactly. Returns the scan."""
    lazy = fmt().read(location, kind="polars.LazyFrame")
    assert isinstance(lazy, pl.LazyFrame)
    assert native(lazy) is expect_native, lazy.explain()
    assert lazy.collect_schema() == want.schema
    got = lazy.collect()
    assert_frame_equal(got, want, check_exact=True)
    assert float_bits(got) == float_bits(want)
    table = fmt().read(location, kind="arrow")
    as_arrow = pl.from_arrow(table)
    assert_frame_equal(as_arrow, got, check_exact=True)
    assert float_bits(as_arrow) == float_bits(got)
    return lazy


TEXT = ["a b", "c/d", "e=f", "g%h", "%41", "é", "日本", "", " ", "+", "a\nb", "..", ".",
        "~x", "k=v/w=x", "__HIVE", None]
KEYS: dict[str, Any] = {
    "int8": pl.Series([-128, 0, 127, None], dtype=pl.Int8),
    "uint64": pl.Series([0, 2**64 - 1, 7, None], dtype=pl.UInt64),
    "int64": pl.Series([-(2**63), 2**63 - 1, 0], dtype=pl.Int64),
    "float64": pl.Series([0.1, -0.0, 0.0, math.nan, math.inf, -math.inf, 1e300, 5e-324, None],
                         dtype=pl.Float64),
    "float32": pl.Series([0.1, -0.0, 1.5, None], dtype=pl.Float32),
    "text": pl.Series(TEXT, dtype=pl.String),
    "bool": pl.Series([True, False, None], dtype=pl.Boolean),
    "date": pl.Series([dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31), None]),
    "datetime_ns": pl.Series([dt.datetime(2020, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59,
                                                                    123456), None],
                             dtype=pl.Datetime("ns")),
    "datetime_ms": pl.Series([dt.datetime(2020, 5, 6, 7, 8, 9, 500000), None],
                             dtype=pl.Datetime("ms")),
    "categorical": pl.Series(["b/c", "a", "", None], dtype=pl.Categorical),
    "enum": pl.Series(["south", "north", "e%20st", None],
                      dtype=pl.Enum(["south", "north", "e%20st", "west"])),
}


def keyed_frame(key: str, n: int, seed: int) -> Any:
    """``n`` rows whose column ``key`` takes the values of ``KEYS[key]`` in random order
    (not grouped: the stored row numbers put them back), and two value columns."""
    rng = np.random.default_rng(seed)
    values = KEYS[key]
    picks = pl.Series(rng.integers(0, len(values), n), dtype=pl.Int64)
    return pl.DataFrame({
        "x": rng.normal(size=n),
        key: values.gather(picks),
        "s": pl.Series(rng.choice(["p", "q/r", None], n).tolist(), dtype=pl.String),
    })


@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_partition_type_reads_back_exactly_through_polars_scan(
        tmp_path: Path, key: str) -> None:
    """Written from polars (through Arrow), partitioned by a column of each type: the scan
    gives the frame back exactly, and polars' filter on each partition value prunes to
    the rows it names, the same rows polars finds in the written frame."""
    df = keyed_frame(key, 120, seed=len(key))
    location = f"{tmp_path}/ds/"
    fmt().write(df.to_arrow(), location, partition_cols=[key])
    assert fmt().manifest(location)["row_column"]  # regrouped: order restored by the scan
    lazy = check(location, df)
    for value in KEYS[key].drop_nulls().unique().to_list():
        picked = lazy.filter(pl.col(key) == value)
        assert_frame_equal(picked.collect(), df.filter(pl.col(key) == value), check_exact=True)
    assert_frame_equal(lazy.filter(pl.col(key).is_null()).collect(),
                       df.filter(pl.col(key).is_null()), check_exact=True)
    grouped = df.sort(key, maintain_order=True, nulls_last=True)
    fmt().write(grouped.to_arrow(), location, partition_cols=[key], max_rows_per_file=7)
    if not KEYS[key].dtype.is_float():  # -0.0 and 0.0, NaN: groups of their own
        assert fmt().manifest(location)["row_column"] is None
    check(location, grouped)


def test_several_partition_columns_and_a_pandas_frame(tmp_path: Path) -> None:
    """Two partition levels (text with ``/`` and ``=`` over ints); and a pandas frame of
    category, string, bool, datetime (with and without zone) and float keys: the scan
    equals the Arrow read, and the pandas read equals the frame."""
    rng = np.random.default_rng(5)
    df = pl.DataFrame({"t": pl.Series(rng.choice([v for v in TEXT if v], 200).tolist()),
                       "i": pl.Series(rng.integers(-2, 2, 200), dtype=pl.Int32),
                       "x": rng.normal(size=200)})
    fmt().write(df.to_arrow(), f"{tmp_path}/two/", partition_cols=["t", "i"])
    check(f"{tmp_path}/two/", df)

    n = 90
    frame = pd.DataFrame({
        "cat": pd.Categorical(rng.choice(["a/b", "c d", "é"], n), categories=["é", "c d", "a/b"]),
        "text": pd.array(rng.choice(["x=y", "", None], n), dtype="string"),
        "flag": rng.random(n) > 0.5,
        "when": pd.Timestamp("2024-03-31") + pd.to_timedelta(rng.integers(0, 3, n), unit="h"),
        "zoned": (pd.Timestamp("2024-10-27", tz="Europe/Paris")
                  + pd.to_timedelta(rng.integers(0, 3, n), unit="h")),
        "f": rng.choice([-0.0, 0.5, np.nan], n),
        "v": rng.normal(size=n),
    }, index=pd.Index(rng.permutation(n), name="id"))
    for key in ("cat", "text", "flag", "when", "zoned", "f"):
        location = f"{tmp_path}/pd-{key}/"
        fmt().write(frame, location, partition_cols=[key])
        check(location, pl.from_arrow(fmt().read(location, kind="arrow")))
        pd.testing.assert_frame_equal(fmt().read(location), frame, check_exact=True)


def test_a_filtered_partition_is_never_opened(tmp_path: Path) -> None:
    """A garbage file in an unselected partition (of an Enum key with ``%``, ``/`` and
    ``=`` in its values): polars' filters and columns prune it in the scan; a read that
    does not prune fails on it."""
    values = ["a/b", "c=d", "e%f"]
    df = pl.DataFrame({"k": pl.Series(values * 20, dtype=pl.Enum(values)),
                       "x": np.arange(60.0), "y": np.arange(60)})
    location = f"{tmp_path}/d/"
    fmt().write(df.to_arrow(), location, partition_cols=["k"])
    generation = fmt().manifest(location)["generation"]
    victims = list((tmp_path / "d" / generation / "k=a%2Fb").glob("*.parquet"))
    assert victims
    for victim in victims:
        victim.write_bytes(b"not parquet at all")
    lazy = fmt().read(location, kind="polars.LazyFrame")
    assert native(lazy)
    for value in ("c=d", "e%f"):
        query = lazy.filter((pl.col("k") == value) & (pl.col("y") > 10)).select("x")
        assert_frame_equal(query.collect(),
                           df.filter((pl.col("k") == value) & (pl.col("y") > 10)).select("x"))
    assert lazy.filter(pl.col("k").is_in(["c=d"])).select(pl.len()).collect().item() == 20
    with pytest.raises(Exception, match=r"(?i)parquet"):
        lazy.collect()


def test_where_polars_scan_would_not_be_exact_the_pyarrow_scan_reads(tmp_path: Path) -> None:
    """A location holding ``=`` (polars parses every ``key=value`` of a path), ``filters``
    given as a read option, an empty dataset (no partition directories): the pyarrow scan
    reads them, as exactly; without partitions any location is polars' scan."""
    df = keyed_frame("text", 50, seed=1)
    hive_like = f"{tmp_path}/year=2024/ds/"
    fmt().write(df.to_arrow(), hive_like, partition_cols=["text"])
    check(hive_like, df, expect_native=False)
    fmt().write(df.to_arrow(), f"{tmp_path}/year=2024/flat/")
    check(f"{tmp_path}/year=2024/flat/", df)

    location = f"{tmp_path}/ds/"
    fmt().write(df.to_arrow(), location, partition_cols=["text"])
    filtered = fmt().read(location, kind="polars.LazyFrame", filters=[("text", "==", "c/d")])
    assert not native(filtered)
    assert_frame_equal(filtered.collect(), df.filter(pl.col("text") == "c/d"), check_exact=True)

    empty = df.clear()
    fmt().write(empty.to_arrow(), location, partition_cols=["text"])
    check(location, empty, expect_native=False)


def test_directory_names_are_taken_literally(tmp_path: Path) -> None:
    """Glob characters, ``%``, ``#``, spaces and unicode in the location: polars' scan
    opens the committed files by name (no glob, no decoding) and reads them exactly."""
    df = keyed_frame("text", 40, seed=2)
    for name in ("glob[x]*?", "pct%20b", "hash#q", "sp ace", "ü"):
        location = f"{tmp_path}/{name}/ds/"
        fmt().write(df.to_arrow(), location, partition_cols=["text"])
        lazy = check(location, df)
        assert_frame_equal(lazy.filter(pl.col("text") == "e=f").collect(),
                           df.filter(pl.col("text") == "e=f"), check_exact=True)


def test_the_hive_null_text_is_refused_as_a_partition_value(tmp_path: Path) -> None:
    """Hive paths spell null ``__HIVE_DEFAULT_PARTITION__``: that string as a partition
    value would read back as null, so the write refuses it and writes nothing."""
    table = pa.table({"k": ["a", HIVE_NULL], "x": [1, 2]})
    with pytest.raises(UnsupportedFrameError, match=r"partition column 'k'.*null"):
        fmt().write(table, f"{tmp_path}/d/", partition_cols=["k"])
    with pytest.raises(UnsupportedFrameError, match=r"partition column 'k'"):
        fmt().write(table.to_pandas(), f"{tmp_path}/d/", partition_cols=["k"])
    assert not (tmp_path / "d").exists()


_text = st.text(max_size=12).filter(lambda t: t != HIVE_NULL)


@given(values=st.lists(st.one_of(st.none(), _text), min_size=1, max_size=6),
       n=st.integers(0, 30), max_rows=st.sampled_from([None, 1, 4]), seed=st.integers(0, 999),
       categorical=st.booleans())
def test_any_text_partition_value_reads_back_exactly(
        tmp_path_factory: pytest.TempPathFactory, values: list[str | None], n: int,
        max_rows: int | None, seed: int, categorical: bool) -> None:
    """Property: partition values of any text (control characters, separators, escapes,
    any script) and nulls, as strings or categories, in any row order, read back through
    polars' scan exactly."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), n)
    dtype = pl.Categorical if categorical else pl.String
    df = pl.DataFrame({"k": pl.Series([values[i] for i in picks], dtype=dtype),
                       "x": pl.Series(np.arange(n), dtype=pl.Int64)})
    location = f"{tmp_path_factory.mktemp('lazy')}/ds/"
    fmt().write(df.to_arrow(), location, partition_cols=["k"], max_rows_per_file=max_rows)
    check(location, df, expect_native=n > 0)


def test_s3_with_storage_options_is_polars_scan_and_keeps_the_secret(
        s3_server: Any, s3_bucket: str) -> None:
    """On S3 (moto's server) with explicit storage options, polars' own scan reads the
    committed objects, awkward partition values included, and prunes by partition; the
    secret appears in no plan, repr or error. Configured by the environment only, the
    scan goes through s3fs (the pyarrow scan), as exactly."""
    from support.s3 import SECRET_KEY, s3_client, storage_options

    df = keyed_frame("text", 80, seed=3)
    location = f"{s3_bucket}/lazy/"
    configured = fmt().with_storage_options(**storage_options(s3_server.endpoint))
    configured.write(df.to_arrow(), location, partition_cols=["text"])
    lazy = configured.read(location, kind="polars.LazyFrame")
    assert native(lazy)
    assert_frame_equal(lazy.collect(), df, check_exact=True)
    for value in ("c/d", "g%h", ""):
        assert_frame_equal(lazy.filter(pl.col("text") == value).collect(),
                           df.filter(pl.col("text") == value), check_exact=True)
    shown = [str(lazy.explain()), repr(lazy), str(lazy), lazy._repr_html_()]
    assert not any(SECRET_KEY in text for text in shown)

    by_environment = fmt().read(location, kind="polars.LazyFrame")
    assert not native(by_environment)
    assert_frame_equal(by_environment.collect(), df, check_exact=True)

    manifest = configured.manifest(location)
    gone = next(f["path"] for f in manifest["files"] if f["path"].startswith("text=c%2Fd/"))
    bucket = s3_bucket.removeprefix("s3://")
    s3_client(s3_server.endpoint).delete_object(
        Bucket=bucket, Key=f"lazy/{manifest['generation']}/{gone}")
    assert_frame_equal(lazy.filter(pl.col("text") == "g%h").collect(),
                       df.filter(pl.col("text") == "g%h"), check_exact=True)
    with pytest.raises(Exception, match="not found") as info:  # polars' error, no secret
        lazy.filter(pl.col("text") == "c/d").collect()
    assert SECRET_KEY not in str(info.value) + repr(info.value)
    configured.delete(location)


@pytest.mark.parametrize(("options", "translated"), [
    ({"key": "k", "secret": "s", "client_kwargs": {"region_name": "eu-west-3"}},
     {"aws_region": "eu-west-3", "aws_access_key_id": "k", "aws_secret_access_key": "s"}),
    ({"key": "k", "secret": "s", "token": "t", "endpoint_url": "http://127.0.0.1:9",
      "client_kwargs": {"region_name": "r"}},
     {"aws_region": "r", "aws_endpoint_url": "http://127.0.0.1:9", "aws_allow_http": "true",
      "aws_access_key_id": "k", "aws_secret_access_key": "s", "aws_session_token": "t"}),
    ({"anon": True, "client_kwargs": {"region_name": "r", "endpoint_url": "https://h"}},
     {"aws_region": "r", "aws_endpoint_url": "https://h", "aws_skip_signature": "true"}),
    ({"key": "k", "secret": "s"}, None),  # the region: botocore's config, not told
    ({"key": "k", "secret": "s", "profile": "p", "client_kwargs": {"region_name": "r"}}, None),
    ({"client_kwargs": {"region_name": "r", "verify": False}, "anon": True}, None),
    ({"client_kwargs": {"region_name": "r"}}, None),  # credentials from botocore's chain
])
def test_s3_storage_options_reach_polars_only_when_told_exactly(
        options: dict[str, Any], translated: dict[str, str] | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The translation of s3fs options to polars' (object_store's): all or nothing."""
    import fsspec

    from prefect_ds.formats._dataset_polars import storage as _polars_storage

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    assert _polars_storage(fs, options) == translated
    if translated and "aws_session_token" not in translated and "anon" not in options:
        monkeypatch.setenv("AWS_SESSION_TOKEN", "from-the-environment")
        assert _polars_storage(fs, options) is None
    assert _polars_storage(fsspec.filesystem("memory"), {}) is None
