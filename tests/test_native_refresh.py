"""Prefect's ``refresh_cache`` and ``cache_expiration`` on checkpointed tasks, in real flows."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from test_checkpoint import Calls, PrefectLogs, leftovers, prefect_logs

from prefect_ds import checkpoint, checkpoint_task, get_format
from prefect_ds._checkpoint import refresh as _refresh

__all__ = ["prefect_logs"]  # the fixture, imported for pytest to find


def frame(n: int, version: int) -> pd.DataFrame:
    return pd.DataFrame({"n": [n, n + 1], "version": [version, version]})


def make_old(path: Path, hours: float) -> None:
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


def test_prefect_options_read_are_still_there() -> None:
    """The task options and the setting read here are Prefect's own (public) names."""
    from prefect import task
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, get_current_settings

    @task(cache_expiration=dt.timedelta(hours=1))
    def t() -> None: ...

    assert t.refresh_cache is None
    assert t.with_options(refresh_cache=True).refresh_cache is True
    assert t.cache_expiration == dt.timedelta(hours=1)
    assert get_current_settings().tasks.refresh_cache is False
    assert PREFECT_TASKS_REFRESH_CACHE.value() is False


def test_refresh_cache_recomputes_and_replaces(
    prefect_harness: None, tmp_path: Path, prefect_logs: PrefectLogs
) -> None:
    from prefect import flow, task

    calls = Calls()

    @task
    @checkpoint(str(tmp_path / "sq_{n}.parquet"))
    def square(n: int) -> pd.DataFrame:
        return frame(n, calls(n))

    @task
    @checkpoint(str(tmp_path / "async_{n}.parquet"))
    async def async_square(n: int) -> pd.DataFrame:
        return frame(n, calls(("async", n)))

    @flow
    def pipeline(refresh: bool | None) -> dict[str, Any]:
        sync = square.with_options(refresh_cache=refresh)
        asyn = async_square.with_options(refresh_cache=refresh)
        direct = sync(1, return_state=True)
        mapped = sync.map([2, 3])
        submitted = asyn.submit(4)
        for future in [*mapped, submitted]:
            future.wait()
        return {"direct": direct, "map": [f.state for f in mapped],
                "async_state": submitted.state}

    first = pipeline(None)
    assert first["direct"].name == "Completed"
    second = pipeline(None)
    assert second["direct"].name == "Cached"
    assert {s.name for s in second["map"]} == {"Cached"}
    assert second["async_state"].name == "Cached"
    assert calls.counts[1] == 1

    third = pipeline(True)
    assert third["direct"].name == "Completed"
    assert {s.name for s in third["map"]} == {"Completed"}
    assert third["async_state"].name == "Completed"
    for n in (1, 2, 3):
        assert calls.counts[n] == 2
        assert_frame_equal(pd.read_parquet(tmp_path / f"sq_{n}.parquet"), frame(n, 2))
    for n in (4,):
        assert calls.counts[("async", n)] == 2
        assert_frame_equal(pd.read_parquet(tmp_path / f"async_{n}.parquet"), frame(n, 2))
    refreshed = [m for m in prefect_logs.read() if m.startswith("refresh_cache is set")]
    assert any(str(tmp_path / "sq_1.parquet") in m for m in refreshed)
    assert leftovers(tmp_path) == []

    # refresh_cache=False is a plain checkpoint again
    fourth = pipeline(False)
    assert fourth["direct"].name == "Cached"
    assert calls.counts[1] == 2


def test_refresh_cache_setting_applies_unless_the_task_says_otherwise(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect import flow
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    calls = Calls()

    @checkpoint_task(str(tmp_path / "t_{n}.csv"))
    def build(n: int) -> pd.DataFrame:
        return frame(n, calls(n))

    @flow
    def pipeline() -> dict[str, Any]:
        return {
            "default": build(1, return_state=True),
            "opted_out": build.with_options(refresh_cache=False)(2, return_state=True),
        }

    pipeline()
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        states = pipeline()
    assert states["default"].name == "Completed"
    assert states["opted_out"].name == "Cached"
    assert calls.counts == {1: 2, 2: 1}
    assert_frame_equal(get_format("csv").read(str(tmp_path / "t_1.csv")), frame(1, 2))
    states = pipeline()
    assert {s.name for s in states.values()} == {"Cached"}


def test_refresh_cache_from_the_environment_in_a_fresh_process(
    prefect_harness: None, tmp_path: Path
) -> None:
    """``PREFECT_TASKS_REFRESH_CACHE=true`` as a user sets it: in the environment of a new
    process (which talks to this session's Prefect server)."""
    from plugin_dists import run_python
    from prefect.settings import PREFECT_API_URL

    target = tmp_path / "env.parquet"
    pd.DataFrame({"version": [0]}).to_parquet(target)
    code = f"""
        import pandas as pd
        from prefect import flow
        from prefect_ds import checkpoint_task

        @checkpoint_task({str(target)!r})
        def build():
            return pd.DataFrame({{"version": [1]}})

        @flow
        def pipeline():
            return build(return_state=True).name

        print(pipeline())
    """
    env_before = dict(os.environ)
    try:
        os.environ["PREFECT_TASKS_REFRESH_CACHE"] = "true"
        os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        out = run_python(code)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert out.stdout.strip().splitlines()[-1] == "Completed"
    assert pd.read_parquet(target)["version"].tolist() == [1]


def test_cache_expiration_is_a_maximum_target_age(
    prefect_harness: None, tmp_path: Path, prefect_logs: PrefectLogs
) -> None:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    calls = Calls()

    @task(cache_policy=NO_CACHE, persist_result=False, cache_expiration=dt.timedelta(hours=1))
    @checkpoint(str(tmp_path / "e_{n}.parquet"))
    def build(n: int) -> pd.DataFrame:
        return frame(n, calls(n))

    @flow
    def pipeline(ns: list[int]) -> list[str]:
        return [build(n, return_state=True).name for n in ns]

    # 1: written by the task, with the time of the write stored beside the data
    assert pipeline([1]) == ["Completed"]
    assert _refresh.WRITTEN_AT_KEY in get_format("parquet").read_metadata(
        str(tmp_path / "e_1.parquet"))
    assert pipeline([1]) == ["Cached"]
    # the stored write time wins over the file's modification time
    make_old(tmp_path / "e_1.parquet", hours=3)
    assert pipeline([1]) == ["Cached"]

    # 2: a target whose stored write time is older than the limit
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).isoformat()
    get_format("parquet").write(frame(2, 0), str(tmp_path / "e_2.parquet"),
                                metadata={_refresh.WRITTEN_AT_KEY: old})
    # 3 and 4: someone else's files without metadata, judged by their modification time
    frame(3, 0).to_parquet(tmp_path / "e_3.parquet")
    make_old(tmp_path / "e_3.parquet", hours=2)
    frame(4, 0).to_parquet(tmp_path / "e_4.parquet")
    make_old(tmp_path / "e_4.parquet", hours=0.5)

    assert pipeline([2, 3, 4]) == ["Completed", "Completed", "Cached"]
    assert_frame_equal(pd.read_parquet(tmp_path / "e_2.parquet"), frame(2, 1))
    assert_frame_equal(pd.read_parquet(tmp_path / "e_3.parquet"), frame(3, 1))
    assert_frame_equal(pd.read_parquet(tmp_path / "e_4.parquet"), frame(4, 0))
    expired = [m for m in prefect_logs.read() if "has expired" in m]
    assert any("e_2.parquet" in m and "older than cache_expiration 60 min" in m
               for m in expired)
    # rewritten just now: fresh again
    assert pipeline([2, 3]) == ["Cached", "Cached"]
    assert leftovers(tmp_path) == []


def test_without_a_task_run_prefect_options_do_not_apply(tmp_path: Path) -> None:
    calls = Calls()

    @checkpoint(str(tmp_path / "plain.parquet"))
    def build() -> pd.DataFrame:
        return frame(0, calls(0))

    build()
    os.environ["PREFECT_TASKS_REFRESH_CACHE"] = "true"
    try:
        build()
    finally:
        del os.environ["PREFECT_TASKS_REFRESH_CACHE"]
    assert calls.counts[0] == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet", "hdf", "sql"])
def test_written_at_round_trips_in_every_builtin_format(tmp_path: Path, fmt: str) -> None:
    location = {
        "csv": str(tmp_path / "a.csv"),
        "parquet": str(tmp_path / "a.parquet"),
        "hdf": str(tmp_path / "a.h5#k"),
        "sql": f"sqlite:///{tmp_path / 'a.db'}#a",
    }[fmt]
    form = get_format(fmt)
    moment = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    form.write(frame(0, 0), location, metadata=_refresh.written_at_metadata(moment))
    assert _refresh.written_at(form, location) == moment
    age = _refresh.age(form, location)
    assert age is not None and age > dt.timedelta(days=365)
