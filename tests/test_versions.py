"""Versioned targets on local disk: every write kept, "latest" the newest committed
version, pins, the run record, pruning, a SIGKILLed writer, concurrent writers.

Differential checks read a version's files with pandas itself; the flow test runs one real
Prefect flow through every way a checkpoint recomputes (staleness, refresh_cache).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from prefect_ds import (
    Format,
    PandasResultHandler,
    UnsupportedFrameError,
    VersioningUnsupportedError,
    VersionNotFoundError,
    checkpoint,
)
from prefect_ds._storage import versions as layout

SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "hdf": ".h5", "feather": ".feather",
            "dataset": "/"}


def frame(n: int, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"n": [n] * rows, "x": [float(i) / (n + 1) for i in range(rows)],
                         "s": [f"v{n}-{i}" for i in range(rows)]},
                        index=pd.Index(range(10, 10 + rows), name="row"))


@pytest.mark.parametrize("name", sorted(SUFFIXES))
def test_every_write_is_a_version_and_reads_see_the_latest(name: str, tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / ("out_{r}" + SUFFIXES[name])), name,
                                  versioned=True)
    assert not handler.exists(r="a") and handler.versions(r="a") == []
    frames = [frame(i, rows=i + 2) for i in range(3)]
    for df in frames:
        handler.write(df, r="a")
    ids = handler.versions(r="a")
    assert len(ids) == 3 and ids == sorted(ids) and all(layout.is_id(v) for v in ids)
    assert handler.exists(r="a")
    assert_frame_equal(handler.read(r="a"), frames[-1])
    for version, df in zip(ids, frames, strict=True):
        assert_frame_equal(handler.read(version=version, r="a"), df)
        record = handler.version_record(version, r="a")
        assert record["version"] == version and record["rows"] == len(df)
        assert record["bytes"] is None or record["bytes"] > 0
        assert record["flow_run_id"] is None  # written outside any run
    # The layout a person reads: name.versions/<id>/name, committed by <id>.json.
    base = "out_a" + SUFFIXES[name].rstrip("/")
    root = tmp_path / (base + ".versions")
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [*ids, *(v + ".json" for v in ids)])
    assert all((root / v / base).exists() for v in ids)
    assert not (tmp_path / base).exists()  # nothing at the plain location
    assert handler.prune(2, r="a") == ids[:1]
    assert handler.versions(r="a") == ids[1:] and not (root / ids[0]).exists()
    with pytest.raises(VersionNotFoundError, match="not among its committed"):
        handler.read(version=ids[0], r="a")
    handler.delete(r="a")
    assert handler.versions(r="a") == [] and not handler.exists(r="a")


def test_a_version_is_the_plain_format_at_its_own_place(tmp_path: Path) -> None:
    """Differential: pandas reads each version's file as written."""
    handler = PandasResultHandler(str(tmp_path / "t.parquet"), versioned=True)
    first, second = frame(1), frame(2)
    handler.write(first)
    handler.write(second)
    old, new = handler.versions()
    root = tmp_path / "t.parquet.versions"
    assert_frame_equal(pd.read_parquet(root / old / "t.parquet"), first)
    assert_frame_equal(pd.read_parquet(root / new / "t.parquet"), second)
    record = json.loads((root / f"{new}.json").read_text())
    assert record["bytes"] == (root / new / "t.parquet").stat().st_size


def test_hdf_keys_of_one_file_keep_their_own_versions(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "store.h5") + "#{key}", versioned=True)
    handler.write(frame(1), key="a")
    handler.write(frame(2), key="b")
    handler.write(frame(3), key="a")
    assert len(handler.versions(key="a")) == 2 and len(handler.versions(key="b")) == 1
    assert_frame_equal(handler.read(key="b"), frame(2))
    assert_frame_equal(handler.read(key="a"), frame(3))


@pytest.mark.parametrize("name", ["csv", "parquet", "hdf"])
def test_a_refused_frame_adds_no_version_and_leaves_nothing(name: str, tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / ("r" + SUFFIXES[name])), name,
                                  versioned=True)
    handler.write(frame(1))
    (kept,) = handler.versions()
    bad = pd.DataFrame([[1, 2]], columns=["a", "a"])  # duplicate labels: refused
    with pytest.raises(UnsupportedFrameError):
        handler.write(bad)
    assert handler.versions() == [kept]
    root = tmp_path / ("r" + SUFFIXES[name] + ".versions")
    assert sorted(p.name for p in root.iterdir()) == [kept, kept + ".json"]
    assert_frame_equal(handler.read(), frame(1))


def test_a_write_failing_inside_the_format_leaves_no_version_directory(tmp_path: Path) -> None:
    """The format fails after its version's directory was made: the directory goes too."""
    location = str(tmp_path / "f.parquet")
    PandasResultHandler(location, versioned=True).write(frame(1))
    failing = PandasResultHandler(location, versioned=True,
                                  write_kwargs={"compression": "no-such-codec"})
    with pytest.raises(Exception, match="no-such-codec"):
        failing.write(frame(2))
    (kept,) = failing.versions()
    assert sorted(p.name for p in (tmp_path / "f.parquet.versions").iterdir()) == [
        kept, kept + ".json"]


def test_pruning_a_key_of_an_hdf_file_removes_its_version_whole(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "s.h5") + "#{key}", versioned=True)
    handler.write(frame(1), key="a")
    handler.write(frame(2), key="a")
    old, new = handler.versions(key="a")
    assert handler.prune(1, key="a") == [old]
    assert sorted(p.name for p in (tmp_path / "s.h5.versions" / "a").iterdir()) == [
        new, new + ".json"]


def test_wrong_uses_are_refused_with_the_fix(tmp_path: Path) -> None:
    plain = PandasResultHandler(str(tmp_path / "p.csv"))
    with pytest.raises(VersioningUnsupportedError, match="versioned=True"):
        plain.versions()
    with pytest.raises(VersioningUnsupportedError, match="field named 'version'"):
        PandasResultHandler(str(tmp_path / "{version}.csv"), versioned=True)
    # a plain handler's template field named version is still a field
    by_version = PandasResultHandler(str(tmp_path / "v{version}.csv"))
    by_version.write(frame(1), version="1")
    assert_frame_equal(by_version.read(version="1"), frame(1))
    handler = PandasResultHandler(str(tmp_path / "v.csv"), versioned=True)
    handler.write(frame(1))
    with pytest.raises(VersionNotFoundError, match="prefect-ds ls TEMPLATE --versions"):
        handler.read(version="20200101T000000.000000Z-000000")
    with pytest.raises(ValueError, match="keep must be at least 1"):
        handler.prune(0)
    assert len(handler.versions()) == 1

    class Opaque(Format):
        name = "opaque"

        def read(self, location: str, **kwargs: object) -> pd.DataFrame:
            raise NotImplementedError

        def write(self, df: pd.DataFrame, location: str, **kwargs: object) -> None:
            raise NotImplementedError

        def exists(self, location: str) -> bool:
            return False

        def delete(self, location: str) -> None:
            pass

    from prefect_ds._versions.versioned import versioned
    with pytest.raises(VersioningUnsupportedError, match="SupportsVersions"):
        versioned(Opaque())


def test_checkpoint_recomputes_add_versions_and_record_their_runs(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect import flow, task

    runs: list[int] = []

    @task(persist_result=False)
    @checkpoint(str(tmp_path / "sq_{k}.parquet"), versioned=True, invalidate_on=("inputs",))
    def square(k: str, n: int) -> pd.DataFrame:
        runs.append(n)
        return frame(n)

    @flow(flow_run_name="versions-{n}")
    def pipeline(n: int, refresh: bool = False) -> pd.DataFrame:
        return square.with_options(refresh_cache=refresh)("a", n)

    out = [pipeline(1),  # miss: version 1
           pipeline(1),  # hit: loads version 1
           pipeline(2),  # stale input: version 2, version 1 kept
           pipeline(2, refresh=True)]  # refresh_cache: version 3
    assert runs == [1, 2, 2]
    assert [int(df["n"].iloc[0]) for df in out] == [1, 1, 2, 2]
    handler = PandasResultHandler(str(tmp_path / "sq_{k}.parquet"), versioned=True)
    ids = handler.versions(k="a")
    assert len(ids) == 3
    records = [handler.version_record(v, k="a") for v in ids]
    assert [r["flow_run_name"] for r in records] == ["versions-1", "versions-2", "versions-2"]
    assert len({r["flow_run_id"] for r in records}) == 3
    assert len({r["task_run_id"] for r in records}) == 3  # three task runs wrote
    assert all(r["task_run_name"].startswith("square") for r in records)
    assert all(set(r["fingerprint"]) == {"inputs"} for r in records)
    assert records[0]["fingerprint"] != records[1]["fingerprint"]
    assert records[1]["fingerprint"] == records[2]["fingerprint"]
    assert [r["rows"] for r in records] == [3, 3, 3]

    # load_version pins: the stale first version is loaded as it is, nothing runs.
    @checkpoint(str(tmp_path / "sq_{k}.parquet"), versioned=True,
                invalidate_on=("inputs",), load_version=ids[0])
    def pinned(k: str, n: int) -> pd.DataFrame:
        runs.append(-1)
        return frame(n)

    messages: list[str] = []
    log = logging.getLogger("prefect_ds.checkpoint")  # Prefect's config may stop propagation
    catch = logging.Handler(logging.INFO)
    catch.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(catch)
    level = log.level
    log.setLevel(logging.INFO)  # setLevel, not .level =: that would keep the logger's cached
    # "INFO is off" from an earlier call, and the line would be dropped
    try:
        assert_frame_equal(pinned("a", 5), frame(1))
    finally:
        log.removeHandler(catch)
        log.setLevel(level)
    assert f"loaded checkpoint {tmp_path / 'sq_a.parquet'} (version {ids[0]})" in messages

    @checkpoint(str(tmp_path / "sq_{k}.parquet"), versioned=True,
                load_version="20200101T000000.000000Z-000000")
    def missing(k: str) -> pd.DataFrame:
        runs.append(-2)
        return frame(0)

    with pytest.raises(VersionNotFoundError):
        missing("a")
    assert runs == [1, 2, 2] and handler.versions(k="a") == ids


def test_checkpoint_and_handler_must_agree_on_versioned(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "x.csv"))
    with pytest.raises(TypeError, match="pass versioned"):
        checkpoint(handler, versioned=True)
    with pytest.raises(VersioningUnsupportedError):
        checkpoint(handler, load_version="20200101T000000.000000Z-000000")


# -- a writer killed mid-write ------------------------------------------------------------

CHILD = """
import sys, time
import numpy as np, pandas as pd
from prefect_ds import PandasResultHandler
from prefect_ds._storage import versions

location, mode = sys.argv[1], sys.argv[2]
handler = PandasResultHandler(location, versioned=True)
def big(n):
    return pd.DataFrame({"n": np.full(300_000, n), "x": np.arange(300_000) * 0.5})
handler.write(big(0))
print("done", handler.versions()[-1], flush=True)
if mode == "before-commit":  # the data is stored, the record is not: hang there
    def hang(*args, **kwargs):
        print("hanging", flush=True)
        time.sleep(600)
    versions.commit = hang
    handler.write(big(1))
else:
    n = 1
    print("looping", flush=True)
    while True:
        handler.write(big(n))
        print("done", handler.versions()[-1], flush=True)
        n += 1
"""


def _kill(location: str, mode: str, delay: float) -> list[str]:
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), location, mode],
                             stdout=subprocess.PIPE, text=True)
    done: list[str] = []
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[0] == "done", line
        done.append(line[1])
        assert child.stdout.readline().strip() in {"hanging", "looping"}
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        done += [ln.split()[1] for ln in child.stdout.read().splitlines()
                 if ln.startswith("done")]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return done


# More kill points with PREFECT_DS_FULL=1; the default run kills once per mode (CI budget).
_KILL_DELAYS = ([0.05, 0.15, 0.3, 0.45, 0.7] if os.environ.get("PREFECT_DS_FULL") == "1"
                else [0.3])


@pytest.mark.parametrize("mode,delays", [("before-commit", [0.0]), ("loop", _KILL_DELAYS)])
def test_sigkill_mid_write_never_becomes_latest(mode: str, delays: list[float],
                                               tmp_path: Path) -> None:
    location = str(tmp_path / "big.parquet")
    handler = PandasResultHandler(location, versioned=True)
    root = tmp_path / "big.parquet.versions"
    for delay in delays:
        before = set(handler.versions())
        done = _kill(location, mode, delay)
        ids = handler.versions()
        latest = handler.read()
        assert latest["n"].nunique() == 1 and len(latest) == 300_000  # one complete frame
        record = handler.version_record(ids[-1])
        assert record["rows"] == 300_000
        # latest is the last version the writer reported, or one it committed just after
        assert ids[-1] == done[-1] or (ids[-1] > done[-1] and ids[-1] not in before)
        if mode == "before-commit":
            assert ids[-1] == done[-1]  # the stored but uncommitted version is not latest
            uncommitted = [p.name for p in root.iterdir()
                           if p.is_dir() and p.name not in ids]
            assert len(uncommitted) == 1  # it is there, complete on disk, and ignored
            assert (root / uncommitted[0] / "big.parquet").exists()
        for version in ids:
            assert handler.read(version=version)["n"].nunique() == 1


# -- concurrent writers and pruning -------------------------------------------------------

WRITER = """
import sys, time
import pandas as pd
from prefect_ds import PandasResultHandler

location, who, count, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
handler = PandasResultHandler(location, versioned=True)
while not __import__("os").path.exists(start):
    time.sleep(0.005)
for i in range(count):
    handler.write(pd.DataFrame({"who": [who] * 50, "i": [i] * 50, "k": range(50)}))
print("ok", flush=True)
"""

PRUNER = """
import sys, time
from prefect_ds import PandasResultHandler

location, start, stop = sys.argv[1], sys.argv[2], sys.argv[3]
handler = PandasResultHandler(location, versioned=True)
while not __import__("os").path.exists(start):
    time.sleep(0.005)
pruned = 0
while not __import__("os").path.exists(stop):
    pruned += len(handler.prune(2))
    time.sleep(0.01)
print("pruned", pruned, flush=True)
"""


@pytest.mark.parametrize("name", ["csv"])  # data file and sidecar: the hardest to keep whole
def test_concurrent_writers_and_a_pruner(name: str, tmp_path: Path) -> None:
    location = str(tmp_path / f"shared.{name}")
    start, stop = tmp_path / "start", tmp_path / "stop"
    count = 6
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, location, str(who), str(count),
                                 str(start)], stdout=subprocess.PIPE, text=True)
               for who in (1, 2)]
    pruner = subprocess.Popen([sys.executable, "-c", PRUNER, location, str(start), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    handler = PandasResultHandler(location, versioned=True)
    handler.write(pd.DataFrame({"who": [0] * 50, "i": [0] * 50, "k": range(50)}))
    start.touch()
    seen = 0
    try:
        while any(w.poll() is None for w in writers):
            ids = handler.versions()
            if ids:  # a reader meanwhile: whatever is latest is one whole writer's frame
                try:
                    df = handler.read()
                except FileNotFoundError:  # pruned between listing and reading
                    continue
                assert df[["who", "i"]].drop_duplicates().shape[0] == 1
                assert list(df["k"]) == list(range(50))
                seen += 1
            time.sleep(0.02)
        for w in writers:
            assert w.communicate(timeout=60)[0].strip() == "ok"
    finally:
        stop.touch()
        out = pruner.communicate(timeout=60)[0]
    assert out.startswith("pruned"), out
    ids = handler.versions()
    assert len(ids) >= 2
    for version in ids:  # every committed version survived whole
        df = handler.read(version=version)
        assert df[["who", "i"]].drop_duplicates().shape[0] == 1 and len(df) == 50
    # every write of both writers was committed, then pruned or kept: none half done
    root = tmp_path / f"shared.{name}.versions"
    leftovers = [p.name for p in root.iterdir() if p.is_dir() and p.name not in ids]
    assert leftovers == [], leftovers
    assert seen > 0
    handler.prune(1)
    assert len(handler.versions()) == 1
    os.remove(start)


def test_a_cached_listing_never_hides_a_commit(tmp_path: Path) -> None:
    """Locally an unchanged versions directory is not listed again; every commit, even two
    within one timestamp tick of the directory, is still seen at once."""
    handler = PandasResultHandler(str(tmp_path / "c.parquet"), versioned=True)
    handler.write(frame(1))
    time.sleep(layout.RACY_AFTER + 0.1)
    assert len(handler.versions()) == 1  # cached now: the directory is a second old
    assert len(handler.versions()) == 1
    seen = []
    for n in range(2, 6):  # commits in quick succession, each listed right after
        handler.write(frame(n))
        seen.append(len(handler.versions()))
        assert int(handler.read()["n"].iloc[0]) == n
    assert seen == [2, 3, 4, 5]
    # the record, not the directory, commits a version
    (tmp_path / "c.parquet.versions" / layout.new_id()).mkdir()
    assert len(handler.versions()) == 5


def test_two_commits_in_one_timestamp_tick_are_both_seen(tmp_path: Path) -> None:
    """A directory's mtime has a coarse tick (jiffies, or seconds on some file systems): two
    commits inside one tick leave it unchanged, so a fresh directory is never cached."""
    handler = PandasResultHandler(str(tmp_path / "t.csv"), versioned=True)
    root = tmp_path / "t.csv.versions"
    handler.write(frame(1))
    tick = time.time_ns()
    os.utime(root, ns=(tick, tick))
    assert len(handler.versions()) == 1
    handler.write(frame(2))
    os.utime(root, ns=(tick, tick))  # the second commit fell in the same tick
    assert len(handler.versions()) == 2
    assert int(handler.read()["n"].iloc[0]) == 2


LABELS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                 max_size=6)


@st.composite
def labelled(draw: st.DrawFn) -> pd.DataFrame:
    """A small frame with drawn column labels, values and index (named or not)."""
    n = draw(st.integers(0, 6))
    labels = draw(st.lists(LABELS, unique=True, min_size=1, max_size=4))
    columns = {label: draw(st.one_of(
        st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n),
        st.lists(st.floats(allow_nan=False), min_size=n, max_size=n),
        st.lists(LABELS, min_size=n, max_size=n))) for label in labels}
    df = pd.DataFrame(columns, index=pd.RangeIndex(n))
    if draw(st.booleans()):
        df.index = pd.Index(draw(st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n,
                                          unique=True)),
                            name=draw(st.none() | LABELS))
    return df


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(labelled(), min_size=1, max_size=3), st.sampled_from(["parquet", "csv"]))
def test_each_version_reads_back_as_the_plain_format_wrote_it(
        tmp_path: Path, written: list[pd.DataFrame], name: str) -> None:
    """Differential: version i reads back exactly as the plain format reads frame i."""
    base = tmp_path / uuid.uuid4().hex
    base.mkdir()
    handler = PandasResultHandler(str(base / f"v_{{k}}.{name}"), versioned=True)
    plain = PandasResultHandler(str(base / f"p_{{k}}_{{i}}.{name}"))
    for df in written:
        handler.write(df, k="x")
    ids = handler.versions(k="x")
    assert len(ids) == len(written) and ids == sorted(ids)
    for i, (version, df) in enumerate(zip(ids, written, strict=True)):
        plain.write(df, k="x", i=str(i))
        assert_frame_equal(handler.read(version=version, k="x"), plain.read(k="x", i=str(i)))
    assert_frame_equal(handler.read(k="x"), plain.read(k="x", i=str(len(written) - 1)))


def test_a_remembered_target_reloads_the_very_version_it_stored(tmp_path: Path) -> None:
    """What a checkpoint hands the memory-releasing runner (``StoredTarget``) reloads the
    version that call stored or loaded, not whatever is latest when it reloads."""
    from prefect_ds._release import targets as _targets

    @checkpoint(str(tmp_path / "r_{k}.parquet"), versioned=True)
    def make(k: str) -> pd.DataFrame:
        return frame(1)

    handler = make.__prefect_ds_checkpoint__  # type: ignore[attr-defined]
    assert handler.versioned
    checkpointed = make.__prefect_ds_check_map__.__self__  # type: ignore[attr-defined]
    make("a")
    location = str(tmp_path / "r_a.parquet")
    (first,) = handler.versions(k="a")
    stored = checkpointed.handler.format.settled(location)
    handler.write(frame(2), k="a")  # a newer version meanwhile
    reloaded = _targets.StoredTarget(location, stored, {})
    assert_frame_equal(reloaded.load(), frame(1))
    assert_frame_equal(handler.read(k="a"), frame(2))
    assert first in repr(stored)
