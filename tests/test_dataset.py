"""The dataset format: partitioned Parquet directories and prefixes, committed whole.

Every promise on real parts: local directories and moto's S3 server, real writer
processes killed with SIGKILL, directories written by pandas, pyarrow and Dask.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from hypothesis import given
from support import count
from support.datasets import fmt, frame, registered_dataset_format  # noqa: F401 (a fixture)

import prefect_ds
from prefect_ds import CorruptTargetError, Format, UnsupportedFrameError, resolve_format

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
MANIFEST = "_prefect_ds_manifest.json"


def generations(fs_root: Path) -> list[str]:
    return sorted(p.name for p in fs_root.iterdir() if p.name.startswith("_prefect-ds-"))


# -- selection -----------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["sales/{year}/", "sales/2020/", "s3://bucket/sales/",
                                      "memory://x/"])
def test_a_trailing_slash_selects_the_dataset_format(location: str) -> None:
    assert resolve_format(location).name == "dataset"


def test_format_dataset_is_selectable_by_name() -> None:
    assert resolve_format("anything", "dataset").name == "dataset"
    assert resolve_format("sales/x.parquet").name == "parquet"  # files keep their format


def test_it_declares_the_capabilities_the_cli_and_checkpoints_use() -> None:
    f = fmt()
    for protocol in (prefect_ds.SupportsMetadata, prefect_ds.SupportsTargetInfo,
                     prefect_ds.SupportsListing, prefect_ds.SupportsAssetKey,
                     prefect_ds.SupportsLock, prefect_ds.SupportsDiscard,
                     prefect_ds.SupportsStorageOptions):
        assert isinstance(f, protocol), protocol


# -- exact round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("partition_cols", [None, ["part"], ["region"], ["part", "region"],
                                            ["when"], ["label"]])
def test_round_trip_is_exact(tmp_path: Path, partition_cols: list[str] | None) -> None:
    df = frame(1)
    location = f"{tmp_path}/sales/"
    kwargs = {"partition_cols": partition_cols} if partition_cols else {}
    fmt().write(df, location, **kwargs)
    pd.testing.assert_frame_equal(fmt().read(location), df, check_exact=True)


def test_partitioned_files_are_hive_directories(tmp_path: Path) -> None:
    df = frame(2)
    location = f"{tmp_path}/d/"
    fmt().write(df, location, partition_cols=["part"])
    (generation,) = generations(tmp_path / "d")
    dirs = sorted(p.name for p in (tmp_path / "d" / generation).iterdir())
    assert dirs == sorted(f"part={v}" for v in df["part"].unique())
    # each file holds only its partition's rows, without the partition column
    sample = next((tmp_path / "d" / generation / "part=3").glob("*.parquet"))
    table = pa.parquet.read_table(sample)
    assert "part" not in table.column_names
    assert table.num_rows == int((df["part"] == 3).sum())


def test_rows_already_grouped_need_no_row_column(tmp_path: Path) -> None:
    df = frame(3).sort_values(["part"], kind="stable")
    fmt().write(df, f"{tmp_path}/d/", partition_cols=["part"])
    assert fmt().manifest(f"{tmp_path}/d/")["row_column"] is None
    pd.testing.assert_frame_equal(fmt().read(f"{tmp_path}/d/"), df, check_exact=True)
    fmt().write(frame(3), f"{tmp_path}/e/", partition_cols=["part"])
    assert fmt().manifest(f"{tmp_path}/e/")["row_column"] == "__prefect_ds_row__"


_partition_values = st.sampled_from([
    ("int", lambda r, n: r.integers(-3, 3, n)),
    ("str", lambda r, n: r.choice(["a", "b c", "d/e", "f%g", "é"], n)),
    ("cat", lambda r, n: pd.Categorical(r.choice(["x", "y"], n), categories=["z", "y", "x"],
                                        ordered=True)),
    ("bool", lambda r, n: r.integers(0, 2, n).astype(bool)),
    ("nint", lambda r, n: pd.array(np.where(r.integers(0, 3, n) == 0, None,
                                            r.integers(0, 3, n)), dtype="Int64")),
    ("date", lambda r, n: pd.Timestamp("2020-01-01") + pd.to_timedelta(r.integers(0, 3, n),
                                                                         unit="D")),
    ("float", lambda r, n: r.choice([0.1, 2.5, -1e-3, -0.0, 0.0, np.nan], n)),
    ("nfloat", lambda r, n: pd.array(r.choice([0.5, -0.0, 0.0, None], n), dtype="Float64")),
])


@given(
    n=st.integers(0, 60),
    key=_partition_values,
    index=st.sampled_from(["range", "permuted", "str", "multi"]),
    max_rows=st.sampled_from([None, 1, 7]),
    seed=st.integers(0, 2**16),
)
def test_any_partitioned_frame_reads_back_exactly(
        tmp_path_factory: pytest.TempPathFactory, n: int, key: Any, index: str,
        max_rows: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    name, make = key
    df = pd.DataFrame({"k": make(rng, n), "v": rng.normal(size=n),
                       "s": pd.array(rng.choice(["p", None], n), dtype="string")})
    if index == "permuted":
        df.index = pd.Index(rng.permutation(n), name="i")
    elif index == "str":
        df.index = pd.Index([f"r{i}" for i in range(n)], dtype="string", name="lbl")
    elif index == "multi":
        df.index = pd.MultiIndex.from_arrays([np.arange(n) % 3, rng.permutation(n)],
                                             names=["a", "b"])
    location = f"{tmp_path_factory.mktemp(name)}/ds/"
    fmt().write(df, location, partition_cols=["k"], max_rows_per_file=max_rows)
    back = fmt().read(location)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    if "float" in name:  # equality counts -0.0 as 0.0: its sign must come back too
        signs = [np.signbit(f["k"].to_numpy(dtype=float, na_value=np.nan)) for f in (back, df)]
        np.testing.assert_array_equal(*signs)


def test_filters_and_columns_match_pandas(tmp_path: Path) -> None:
    """Differential: a filtered, projected read equals the same selection in pandas."""
    df = frame(4)
    location = f"{tmp_path}/d/"
    fmt().write(df, location, partition_cols=["part", "region"])
    got = fmt().read(location, filters=[("part", ">=", 9), ("x", ">", 0)], columns=["x"])
    want = df.loc[(df["part"] >= 9) & (df["x"] > 0), ["x"]]
    pd.testing.assert_frame_equal(got, want, check_exact=True)


# -- lazy readers --------------------------------------------------------------------------


def test_lazy_pyarrow_dataset_pushes_filters_down(tmp_path: Path) -> None:
    df = frame(5)
    location = f"{tmp_path}/d/"
    fmt().write(df, location, partition_cols=["part"])
    lazy = fmt().dataset(location, filters=[("part", "==", 4)])
    assert isinstance(lazy, pads.Dataset)
    assert "__prefect_ds_row__" not in lazy.schema.names
    # pruned by partition: only part=4's files are scanned at all
    fragments = list(fmt().dataset(location).get_fragments(filter=pc.field("part") == 4))
    assert fragments and all("/part=4/" in f.path for f in fragments)
    assert lazy.count_rows() == int((df["part"] == 4).sum())
    whole = fmt().dataset(location)
    assert whole.count_rows() == len(df)
    assert sorted(whole.to_table(columns=["x"]).column("x").to_pylist()) == sorted(df["x"])


# -- commit: exists only when committed, interrupted writes --------------------------------


def test_exists_only_when_committed(tmp_path: Path) -> None:
    location = f"{tmp_path}/d/"
    assert not fmt().exists(location)
    os.makedirs(tmp_path / "d" / "_prefect-ds-0000000001-000001aaaaaa" / "part=1")
    pd.DataFrame({"x": [1]}).to_parquet(
        tmp_path / "d" / "_prefect-ds-0000000001-000001aaaaaa" / "part=1" / "p.parquet")
    assert not fmt().exists(location)  # staged files alone are not a dataset
    with pytest.raises(FileNotFoundError):
        fmt().read(location)
    fmt().write(frame(6), location, partition_cols=["part"])
    assert fmt().exists(location)
    assert generations(tmp_path / "d") == [fmt().manifest(location)["generation"]]  # swept
    fmt().delete(location)
    assert not fmt().exists(location)
    assert not (tmp_path / "d").exists()


def test_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    location = f"{tmp_path}/d/"
    df = frame(7)
    fmt().write(df, location, partition_cols=["part"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    bad = frame(8).assign(x=[object()] * 3000)  # not storable: fails while staging
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own conversion error
        fmt().write(bad, location, partition_cols=["part"])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    pd.testing.assert_frame_equal(fmt().read(location), df, check_exact=True)


def _kill_writer_at(location: str, phase: str, tmp_path: Path) -> None:
    """Start a writer of ``frame(9)`` at ``location``, SIGKILL it at ``phase``."""
    marker = tmp_path / f"marker-{phase}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.datasets", location, phase, str(marker), "9"],
        env=env, cwd=TESTS,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"writer exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "writer never reached " + phase
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("phase", ["staging", "commit"])
def test_sigkill_mid_write_keeps_the_previous_dataset_local(tmp_path: Path, phase: str) -> None:
    location = f"{tmp_path}/d/"
    previous = frame(1)
    fmt().write(previous, location, partition_cols=["part"])
    committed = fmt().manifest(location)["generation"]
    _kill_writer_at(location, phase, tmp_path)
    assert fmt().exists(location)
    assert fmt().manifest(location)["generation"] == committed
    pd.testing.assert_frame_equal(fmt().read(location), previous, check_exact=True)
    assert fmt().dataset(location).count_rows() == len(previous)  # the partial never shows
    leftovers = [g for g in generations(tmp_path / "d") if g != committed]
    assert len(leftovers) == 1  # the killed writer's staged generation
    # the next write sweeps it (its writer is gone) and commits
    fmt().write(frame(2), location, partition_cols=["part"])
    assert generations(tmp_path / "d") == [fmt().manifest(location)["generation"]]
    pd.testing.assert_frame_equal(fmt().read(location), frame(2), check_exact=True)


def test_sigkill_of_a_first_write_leaves_nothing_readable(tmp_path: Path) -> None:
    location = f"{tmp_path}/d/"
    _kill_writer_at(location, "commit", tmp_path)
    assert not fmt().exists(location)
    with pytest.raises(FileNotFoundError):
        fmt().read(location)
    assert fmt().sweep(location)  # its writer is gone: the staged files go
    assert generations(tmp_path / "d") == []


# -- S3 ------------------------------------------------------------------------------------


def _s3_keys(endpoint: str, bucket_url: str) -> list[str]:
    from support.s3 import s3_client

    bucket = bucket_url.removeprefix("s3://")
    listed = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_s3_round_trip_and_commit_marker(s3_server: Any, s3_bucket: str) -> None:
    location = f"{s3_bucket}/sales/2024/"
    df = frame(3)
    assert not fmt().exists(location)
    fmt().write(df, location, partition_cols=["part", "region"])
    assert fmt().exists(location)
    pd.testing.assert_frame_equal(fmt().read(location), df, check_exact=True)
    keys = _s3_keys(s3_server.endpoint, s3_bucket)
    assert "sales/2024/_prefect_ds_manifest.json" in keys
    assert fmt().list_locations(f"{s3_bucket}/sales/*/") == [location]
    info = fmt().target_info(location)
    assert (info.rows, info.committed) == (len(df), True)
    assert info.partitions == df.groupby(["part", "region"], observed=True).ngroups
    table = fmt().read(location, kind="arrow", filters=[("part", "==", 2)])
    pd.testing.assert_frame_equal(prefect_ds.arrow_to_frame(table),
                                  df[df["part"] == 2], check_exact=True)
    fmt().delete(location)
    assert _s3_keys(s3_server.endpoint, s3_bucket) == []


def test_polars_lazy_scan_on_s3(s3_server: Any, s3_bucket: str) -> None:
    """The scan reads through the dataset's own file system (its storage options)."""
    pl = _polars()
    df = polars_frame(200)
    location = f"{s3_bucket}/lazy/"
    fmt().write(df.to_arrow(), location, partition_cols=["region"])
    lazy = fmt().read(location, kind="polars.LazyFrame")
    assert lazy.collect().equals(df)
    assert lazy.filter(pl.col("part") == 1).collect().equals(df.filter(pl.col("part") == 1))
    fmt().delete(location)


@pytest.mark.parametrize("phase", ["staging", "commit"])
def test_sigkill_mid_write_keeps_the_previous_dataset_s3(
        s3_server: Any, s3_bucket: str, tmp_path: Path, phase: str) -> None:
    location = f"{s3_bucket}/d/"
    previous = frame(1)
    fmt().write(previous, location, partition_cols=["part"])
    committed = fmt().manifest(location)["generation"]
    manifest_before = _s3_keys(s3_server.endpoint, s3_bucket)
    _kill_writer_at(location, phase, tmp_path)
    staged = sorted(set(_s3_keys(s3_server.endpoint, s3_bucket)) - set(manifest_before))
    assert staged and all(k.startswith("d/_prefect-ds-") for k in staged)
    assert fmt().manifest(location)["generation"] == committed
    pd.testing.assert_frame_equal(fmt().read(location), previous, check_exact=True)
    assert fmt().dataset(location).count_rows() == len(previous)
    # on an object store a writer's liveness is unknown: staged files go once old enough
    assert fmt().sweep(location) == []
    assert fmt().sweep(location, max_age=0)
    assert _s3_keys(s3_server.endpoint, s3_bucket) == manifest_before


def test_readers_during_replacements_get_the_old_dataset_or_the_new(tmp_path: Path) -> None:
    """A writer replaces the dataset again and again (each commit removes the files of
    the generation it replaced) while two threads read it whole, as pandas and as Arrow:
    every read is one of the two datasets, exactly, and none fails (a read that meets a
    replaced dataset reads the new one)."""
    location = f"{tmp_path}/d/"
    a = pd.DataFrame({"k": np.arange(20_000) % 50, "v": np.arange(20_000, dtype=float)})
    b = a.assign(v=-a["v"])
    fmt().write(a, location, partition_cols=["k"])
    tables = [pa.Table.from_pandas(f, preserve_index=False) for f in (a, b)]
    stop, problems, reads = threading.Event(), [], [0, 0]

    def read(kind: str) -> None:
        while not stop.is_set():
            try:
                got = fmt().read(location, kind=kind)
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            same = (any(got.equals(f) for f in (a, b)) if kind == "pandas" else
                    any(got.select(["k", "v"]).cast(t.schema).equals(t) for t in tables))
            if not same:
                problems.append(f"a {kind} read matched neither dataset")
            reads[kind == "arrow"] += 1

    readers = [threading.Thread(target=read, args=(k,)) for k in ("pandas", "arrow")]
    for t in readers:
        t.start()
    for i in range(count(20, 200)):
        fmt().write(b if i % 2 == 0 else a, location, partition_cols=["k"])
    stop.set()
    for t in readers:
        t.join()
    assert problems == []
    assert all(reads), reads


# -- foreign directories -------------------------------------------------------------------


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("x").reset_index(drop=True)


@pytest.mark.parametrize("writer", ["pandas", "pyarrow", "dask"])
def test_foreign_directories_load_and_say_so(tmp_path: Path, writer: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    df = frame(5).reset_index(drop=True)[["part", "x"]]
    root = tmp_path / "foreign"
    if writer == "pandas":
        df.to_parquet(root, partition_cols=["part"])
    elif writer == "pyarrow":
        pads.write_dataset(pa.Table.from_pandas(df, preserve_index=False), root,
                           format="parquet", partitioning=["part"], partitioning_flavor="hive")
    else:
        import dask.dataframe as dd

        dd.from_pandas(df, npartitions=3).to_parquet(root, partition_on=["part"],
                                                     write_index=False)
    location = f"{root}/"
    assert not fmt().exists(location)
    with caplog.at_level(logging.WARNING, logger="prefect_ds.dataset"):
        got = fmt().read(location)
    assert "not committed by prefect-ds" in caplog.text
    got["part"] = got["part"].astype("int64")
    pd.testing.assert_frame_equal(_sorted(got[["part", "x"]]), _sorted(df))
    info = fmt().target_info(location)
    assert info.committed is False
    assert info.rows == len(df)
    assert info.partitions == df["part"].nunique()


def test_a_foreign_directory_with_other_files_is_a_clear_error(tmp_path: Path) -> None:
    """Spark's ``_SUCCESS`` and hidden files are skipped; a file that is not Parquet is
    named in a prefect-ds error (not pyarrow's), and nothing is changed."""
    root = tmp_path / "foreign"
    root.mkdir()
    frame(4).to_parquet(root / "part-0.parquet")
    (root / "_SUCCESS").write_text("")
    (root / ".part-0.parquet.crc").write_bytes(b"crc")
    assert len(fmt().read(f"{root}/")) == len(frame(4))
    (root / "notes.txt").write_text("hi")
    for action in (fmt().read, fmt().target_info, fmt().dataset):
        with pytest.raises(CorruptTargetError, match=r"not committed by prefect-ds.*notes\.txt"):
            action(f"{root}/")
    assert sorted(p.name for p in root.iterdir()) == [
        ".part-0.parquet.crc", "_SUCCESS", "notes.txt", "part-0.parquet"]


def test_writing_over_a_foreign_directory_commits_ours(tmp_path: Path) -> None:
    df = frame(5)
    (tmp_path / "d").mkdir()
    df.to_parquet(tmp_path / "d" / "old.parquet")
    fmt().write(frame(6), f"{tmp_path}/d/", partition_cols=["part"])
    pd.testing.assert_frame_equal(fmt().read(f"{tmp_path}/d/"), frame(6), check_exact=True)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"partition_cols": ["nope"]}, UnsupportedFrameError, "does not have"),
    ({"partition_cols": "part"}, TypeError, "list of column names"),
    ({"partition_cols": ["part", "region", "x", "label", "when"]}, UnsupportedFrameError,
     "at least one column"),
    ({"partitoin_cols": ["part"]}, TypeError, "unknown write option"),
])
def test_bad_write_options_are_named_and_write_nothing(
        tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        fmt().write(frame(1), f"{tmp_path}/d/", **kwargs)
    assert not (tmp_path / "d").exists()


def test_bad_read_options_are_named(tmp_path: Path) -> None:
    fmt().write(frame(1), f"{tmp_path}/d/")
    with pytest.raises(TypeError, match="unknown read option"):
        fmt().read(f"{tmp_path}/d/", filter=[("part", "==", 1)])
    with pytest.raises(TypeError, match="filters for"):
        fmt().read(f"{tmp_path}/d/", filters="part == 1")


# -- metadata, listing, CLI ----------------------------------------------------------------


def test_metadata_is_committed_with_the_dataset(tmp_path: Path) -> None:
    f: Format = fmt()
    assert isinstance(f, prefect_ds.SupportsMetadata)
    f.write(frame(1), f"{tmp_path}/d/", metadata={"prefect_ds:fingerprint": "abc"})
    assert f.read_metadata(f"{tmp_path}/d/") == {"prefect_ds:fingerprint": "abc"}


def test_cli_ls_and_show_understand_datasets(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from prefect_ds._cli.app import app

    for year in (2023, 2024):
        fmt().write(frame(year), f"{tmp_path}/sales/{year}/", partition_cols=["part"])
    runner = CliRunner()
    listed = runner.invoke(app, ["ls", f"{tmp_path}/sales/{{year}}/"])
    assert listed.exit_code == 0, listed.output
    assert "2023" in listed.output and "2024" in listed.output and "3,000" in listed.output
    parts = frame(2024)["part"].nunique()
    header = listed.output.splitlines()[0].split()
    assert header[:4] == ["LOCATION", "YEAR", "ROWS", "PARTITIONS"]
    row = next(line.split() for line in listed.output.splitlines() if "2024/" in line)
    assert row[2:4] == ["3,000", f"{parts:,}"]
    as_json = runner.invoke(app, ["ls", f"{tmp_path}/sales/{{year}}/", "--json"])
    records = {r["values"]["year"]: r for r in json.loads(as_json.output)}
    assert records["2024"]["partitions"] == parts and records["2024"]["committed"] is True
    shown = runner.invoke(app, ["show", f"{tmp_path}/sales/2024/"])
    assert shown.exit_code == 0, shown.output
    assert "3,000 rows x 5 columns" in shown.output
    assert f"stored: {parts} partitions, " in shown.output
    assert ", committed by prefect-ds" in shown.output

    # Files another tool wrote: shown, and said to be not ours; ls lists only ours.
    frame(7).to_parquet(tmp_path / "theirs", partition_cols=["part"])
    theirs = f"{tmp_path}/theirs/"
    shown = runner.invoke(app, ["show", theirs])
    assert shown.exit_code == 0, shown.output
    assert "NOT committed by prefect-ds" in shown.output
    assert f"stored: {frame(7)['part'].nunique()} partitions" in shown.output
    as_json = runner.invoke(app, ["show", theirs, "--json"])
    assert json.loads(as_json.stdout)["committed"] is False
    listed = runner.invoke(app, ["ls", theirs])
    assert listed.exit_code == 0 and "no stored targets match" in listed.output
    assert "not committed by prefect-ds" in listed.output
    assert (tmp_path / "theirs").is_dir()  # nothing was changed


def test_checkpoint_stores_a_dataset(tmp_path: Path) -> None:
    calls = []

    @prefect_ds.checkpoint(f"{tmp_path}/out/{{seed}}/",
                           write_kwargs={"partition_cols": ["part"]})
    def make(seed: int) -> pd.DataFrame:
        calls.append(seed)
        return frame(seed)

    first = make(3)
    second = make(3)
    assert calls == [3]
    pd.testing.assert_frame_equal(second, first, check_exact=True)


# -- polars and Arrow ----------------------------------------------------------------------


def _polars() -> Any:
    return pytest.importorskip("polars", reason="opt-in: the [polars] extra is not installed")


def polars_frame(n: int = 600) -> Any:
    """A polars frame with a column of many dtypes (nulls and NaN included) and unsorted
    partition keys of integer, Enum, string and date types."""
    import datetime as dt
    import decimal

    pl = _polars()
    rng = np.random.default_rng(n)
    region = rng.choice(["north", "south", "east", None], n)
    return pl.DataFrame({
        "part": pl.Series(rng.integers(0, 5, n), dtype=pl.Int16),
        "region": pl.Series(region, dtype=pl.Enum(["south", "north", "east", "west"])),
        "name": pl.Series(rng.choice(["a b", "c/d", "é", None], n), dtype=pl.String),
        "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 3, n)],
        "x": np.where(rng.integers(0, 9, n) == 0, np.nan, rng.normal(size=n)),
        "u": pl.Series(rng.integers(0, 200, n), dtype=pl.UInt8),
        "cat": pl.Series(rng.choice(["p", "q"], n), dtype=pl.Categorical),
        "dec": pl.Series([decimal.Decimal(f"{i}.25") for i in range(n)], dtype=pl.Decimal(10, 2)),
        "tz": pl.Series([dt.datetime(2024, 3, 31, 0, 30) + dt.timedelta(hours=i)
                         for i in range(n)]).dt.replace_time_zone("UTC").dt.convert_time_zone(
                             "Europe/Paris"),
        "dur": pl.Series([dt.timedelta(microseconds=i) for i in range(n)]),
        "lst": pl.Series([[i, None] if i % 3 else None for i in range(n)],
                         dtype=pl.List(pl.Int64)),
        "st": pl.Series([{"a": i, "b": str(i)} for i in range(n)]),
    })


@pytest.mark.parametrize("partition_cols", [None, ["part"], ["region", "part"], ["day", "name"]])
def test_polars_and_arrow_round_trip_exactly(tmp_path: Path,
                                             partition_cols: list[str] | None) -> None:
    """Differential: what comes back equals the frame polars (and the table pyarrow) held,
    dtypes, values and row order, read eagerly, lazily or as Arrow."""
    pl = _polars()
    df = polars_frame()
    kwargs = {"partition_cols": partition_cols} if partition_cols else {}
    h = prefect_ds.ResultHandler(f"{tmp_path}/{{n}}/", write_kwargs=kwargs)
    h.write(df, n="pl")
    back = h.read(n="pl")
    assert isinstance(back, pl.DataFrame) and back.schema == df.schema
    assert back.equals(df)  # polars' comparison: NaN equals NaN, null equals null
    lazy = h.read(n="pl", kind="polars.LazyFrame")
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect_schema() == df.schema
    assert lazy.collect().equals(df)
    table = h.read(n="pl", kind="arrow")
    assert isinstance(table, pa.Table) and table.schema.equals(df.to_arrow().schema,
                                                               check_metadata=True)
    assert pl.from_arrow(table).equals(df)

    original = df.to_arrow()
    h.write(original, n="pa")
    got = h.read(n="pa")
    assert isinstance(got, pa.Table) and got.schema.equals(original.schema, check_metadata=True)
    assert pl.from_arrow(got).equals(df)
    assert got.schema.metadata in (None, {})  # nothing of ours leaks into the table
    assert fmt().manifest(f"{tmp_path}/pa/")["partition_cols"] == (partition_cols or [])


def test_lazy_and_arrow_reads_push_filters_and_columns_into_the_scan(tmp_path: Path) -> None:
    """A file of another partition is garbage: a read that pruned by partition never opens
    it, one that did not fails on it. The results equal polars' own filter."""
    pl = _polars()
    df = polars_frame()
    location = f"{tmp_path}/d/"
    fmt().write(df.to_arrow(), location, partition_cols=["part"])
    generation = fmt().manifest(location)["generation"]
    for victim in (tmp_path / "d" / generation / "part=0").glob("*.parquet"):
        victim.write_bytes(b"not parquet at all")
    want = df.filter((pl.col("part") == 3) & (pl.col("u") > 100)).select("x", "name")

    lazy = fmt().read(location, kind="polars.LazyFrame")
    query = lazy.filter((pl.col("part") == 3) & (pl.col("u") > 100)).select("x", "name")
    assert query.collect().equals(want)
    plan = query.explain()
    assert "SELECTION" in plan and "PROJECT" in plan  # handed to the pyarrow scan
    filtered = fmt().read(location, kind="polars.LazyFrame", columns=["x", "name"],
                          filters=[("part", "==", 3), ("u", ">", 100)])
    assert filtered.collect().equals(want)
    table = fmt().read(location, kind="arrow", columns=["x", "name"],
                       filters=[("part", "==", 3), ("u", ">", 100)])
    assert table.column_names == ["x", "name"] and pl.from_arrow(table).equals(want)
    with pytest.raises(Exception, match=r"(?i)parquet"):  # unpruned, the garbage is read
        lazy.collect()


def test_pandas_datasets_read_as_arrow_and_lazily(tmp_path: Path) -> None:
    pl = _polars()
    df = frame(7)
    h = prefect_ds.ResultHandler(f"{tmp_path}/sales/", write_kwargs={"partition_cols": ["part"]})
    h.write(df)
    table = h.read(kind="arrow")
    assert isinstance(table, pa.Table)
    pd.testing.assert_frame_equal(prefect_ds.arrow_to_frame(table), df, check_exact=True)
    lazy = h.read(kind="polars.LazyFrame")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(pl.from_arrow(table))
    north = lazy.filter(pl.col("region") == "north").select("x").collect()
    assert north["x"].to_list() == df.loc[df["region"] == "north", "x"].tolist()
    stream = h.read(kind="arrow.RecordBatchReader")
    assert isinstance(stream, pa.RecordBatchReader) and stream.read_all().equals(table)
    assert h.read(kind="polars").equals(pl.from_arrow(table))
    pd.testing.assert_frame_equal(h.read(), df, check_exact=True)  # pandas as before


def test_checkpointed_polars_and_arrow_results_come_back_as_they_were(tmp_path: Path) -> None:
    pl = _polars()
    calls: list[str] = []
    df = polars_frame(300)

    @prefect_ds.checkpoint(f"{tmp_path}/out/{{kind}}/", write_kwargs={"partition_cols": ["part"]})
    def make(kind: str) -> Any:
        calls.append(kind)
        return {"polars": df, "arrow": df.to_arrow(), "lazy": df.lazy()}[kind]

    @prefect_ds.checkpoint(f"{tmp_path}/out/{{kind}}/", kind="polars.LazyFrame")
    def scan(kind: str) -> Any:
        raise AssertionError("a hit never runs the body")

    for _ in range(2):
        first = make("polars")
        assert isinstance(first, pl.DataFrame) and first.equals(df)
        table = make("arrow")
        assert isinstance(table, pa.Table) and pl.from_arrow(table).equals(df)
        lazy = make("lazy")
        assert isinstance(lazy, pl.LazyFrame) and lazy.collect().equals(df)
    assert calls == ["polars", "arrow", "lazy"]
    assert scan("polars").filter(pl.col("part") == 2).collect().equals(
        df.filter(pl.col("part") == 2))


def test_arrow_partition_columns_that_cannot_read_back_are_refused(tmp_path: Path) -> None:
    table = pa.table({"tz": pa.array([0, 1], pa.timestamp("us", "UTC")),
                      "s": pa.array([{"a": 1}, {"a": 2}]), "x": [1, 2]})
    for column in ("tz", "s"):
        with pytest.raises(UnsupportedFrameError, match=f"partition column '{column}'"):
            fmt().write(table, f"{tmp_path}/d/", partition_cols=[column])
    with pytest.raises(UnsupportedFrameError, match="does not have"):
        fmt().write(table, f"{tmp_path}/d/", partition_cols=["nope"])
    with pytest.raises(UnsupportedFrameError, match="rename that column"):
        fmt().write(pa.table({"__prefect_ds_row__": [1], "x": [2]}), f"{tmp_path}/d/")
    with pytest.raises(TypeError, match=r"builtins\.dict"):
        fmt().write({"x": [1]}, f"{tmp_path}/d/")
    assert not (tmp_path / "d").exists()


# -- incremental recompute -----------------------------------------------------------------


def test_invalidate_on_keeps_the_fingerprint_in_the_manifest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A stale dataset is recomputed and recommitted; a fresh one is loaded, never rebuilt."""
    calls: list[int] = []
    location = f"{tmp_path}/feat/{{name}}/"

    @prefect_ds.checkpoint(location, invalidate_on=("inputs",),
                           write_kwargs={"partition_cols": ["part"]})
    def features(name: str, raw: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(raw))
        return raw.assign(double=raw["x"] * 2)

    raw = frame(8, n=500)
    first = features("eu", raw)
    stamp = fmt().manifest(f"{tmp_path}/feat/eu/")
    assert "prefect_ds.fingerprint" in stamp["metadata"]
    again = features("eu", raw.copy())
    assert calls == [500]
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert fmt().manifest(f"{tmp_path}/feat/eu/")["generation"] == stamp["generation"]
    with caplog.at_level(logging.INFO, logger="prefect_ds.checkpoint"):
        changed = features("eu", raw.head(400))
    assert calls == [500, 400] and len(changed) == 400
    assert "stale (inputs changed)" in caplog.text
    replaced = fmt().manifest(f"{tmp_path}/feat/eu/")
    assert replaced["generation"] != stamp["generation"] and replaced["rows"] == 400
    assert (replaced["metadata"]["prefect_ds.fingerprint"]
            != stamp["metadata"]["prefect_ds.fingerprint"])
    assert generations(tmp_path / "feat" / "eu") == [replaced["generation"]]
    features("eu", raw.head(400))
    features("other", raw.head(400))  # another target: computed once for itself
    assert calls == [500, 400, 400]


_arrow_keys = st.sampled_from([
    ("int", lambda r, n: pa.array(r.integers(-3, 3, n), pa.int8())),
    ("str", lambda r, n: pa.array(r.choice(["a", "b c", "d/e", "f%g", "é", None], n),
                                  pa.large_string())),
    ("dict", lambda r, n: pa.array(r.choice(["x", "y", None], n), pa.string()).dictionary_encode()),
    ("bool", lambda r, n: pa.array(r.choice([True, False, None], n), pa.bool_())),
    ("float", lambda r, n: pa.array(r.choice([0.1, -0.0, 0.0, np.nan, 1e300], n))),
    ("date", lambda r, n: pa.array(r.integers(0, 3, n).astype("datetime64[D]"))),
    ("time", lambda r, n: pa.array(r.integers(0, 3, n).astype("datetime64[ms]"))),
])


@given(n=st.integers(0, 40), key=_arrow_keys, max_rows=st.sampled_from([None, 1, 7]),
       seed=st.integers(0, 2**16))
def test_any_partitioned_arrow_table_reads_back_exactly(
        tmp_path_factory: pytest.TempPathFactory, n: int, key: Any, max_rows: int | None,
        seed: int) -> None:
    """Property: any table partitioned by a key of any allowed type, nulls and row order
    included, reads back equal to itself, bit for bit (-0.0 keeps its sign, NaN its
    place), as Arrow, and with polars where it is installed."""
    rng = np.random.default_rng(seed)
    _, make = key
    table = pa.table({"k": make(rng, n), "v": pa.array(rng.normal(size=n)),
                      "s": pa.array(rng.choice(["p", None], n), pa.large_string())})
    location = f"{tmp_path_factory.mktemp('arrow')}/ds/"
    fmt().write(table, location, partition_cols=["k"], max_rows_per_file=max_rows)
    back = fmt().read(location, kind="arrow")
    assert back.schema.equals(table.schema, check_metadata=True)
    for name in table.column_names:  # NaN != NaN for Table.equals: compare the bits
        want, got = table.column(name), back.column(name)
        if pa.types.is_dictionary(want.type):
            want, got = want.cast(want.type.value_type), got.cast(got.type.value_type)
        assert got.is_null().to_pylist() == want.is_null().to_pylist()
        if pa.types.is_floating(want.type):
            assert (np.asarray(got.fill_null(0.0)).view(np.int64).tolist()
                    == np.asarray(want.fill_null(0.0)).view(np.int64).tolist())
        else:
            assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize(("location", "root"), [
    ("sales/2024/", "sales/2024"), ("s3://bucket/sales//", "s3://bucket/sales"),
    ("s3://bucket/", "s3://bucket"), ("/", "/"), ("file:///", "file:///"),
    ("simplecache::s3://bucket/x/", "simplecache::s3://bucket/x"),
])
def test_a_dataset_s_root_is_its_location_without_trailing_slashes(location: str,
                                                                   root: str) -> None:
    from prefect_ds.formats.dataset import root_of

    assert root_of(location) == root  # a root stays one: file:/// is not the working dir
