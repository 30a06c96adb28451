"""``@checkpoint`` under Prefect's ``@task``: real flows, real files, real Prefect server.

Flow runs cost about a second each, so each flow test exercises several call styles at once;
everything that does not need Prefect is tested on plain calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import types
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from support import FULL

from prefect_ds import (
    CheckpointCollisionError,
    CheckpointResultError,
    PandasResultHandler,
    TemplateError,
    UnsafeLocationError,
    available_formats,
    checkpoint,
    checkpoint_task,
)
from prefect_ds._checkpoint import collisions as _claims
from prefect_ds._release import targets as _targets
from prefect_ds._storage.files import TEMP_MARKER


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"n": [n, n + 1], "square": [n * n, (n + 1) ** 2]})


class Calls:
    """Counts how often each body ran, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[Any] = Counter()

    def __call__(self, key: Any) -> int:
        with self._lock:
            self.counts[key] += 1
            return self.counts[key]


class PrefectLogs:
    """Messages logged to Prefect's task run logger (INFO and up) during one test.

    Prefect re-applies its logging configuration when it starts talking to its server,
    replacing handlers (pytest's capture handler included) and levels. So the level is
    set through the environment override that configuration reads, and records are
    collected where every emitted record is made: the log record factory.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def read(self) -> list[str]:
        with self._lock:
            return list(self.messages)


@pytest.fixture
def prefect_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrefectLogs]:
    monkeypatch.setenv("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")
    task_runs = logging.getLogger("prefect.task_runs")
    level = task_runs.level
    task_runs.setLevel(logging.INFO)
    logs = PrefectLogs()
    make_record = logging.getLogRecordFactory()

    def collect(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if record.name == "prefect.task_runs":
            with logs._lock:
                logs.messages.append(record.getMessage())
        return record

    logging.setLogRecordFactory(collect)
    try:
        yield logs
    finally:
        logging.setLogRecordFactory(make_record)
        task_runs.setLevel(level)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if TEMP_MARKER in p.name)


# -- flows --------------------------------------------------------------------------------


def test_every_call_style_computes_once_then_loads(
    prefect_harness: None, tmp_path: Path, prefect_logs: PrefectLogs
) -> None:
    from prefect import flow, task

    calls = Calls()
    foreign = frame(100)
    foreign.to_parquet(tmp_path / "sq_8.parquet")  # someone else's file, already in place
    foreign_mtime = os.stat(tmp_path / "sq_8.parquet").st_mtime_ns

    @task
    @checkpoint(str(tmp_path / "sq_{n}.parquet"))
    def square(n: int) -> pd.DataFrame:
        calls(n)
        return frame(n)

    @task
    @checkpoint(str(tmp_path / "async_{n}.parquet"))
    async def async_square(n: int) -> pd.DataFrame:
        calls(("async", n))
        await asyncio.sleep(0)
        return frame(n)

    @flow
    def pipeline() -> dict[str, Any]:
        plain = square(1)  # a direct call returns the frame itself
        direct = square(2, return_state=True)
        submitted = square.submit(3)
        mapped = square.map([4, 5])
        renamed = square.with_options(name="square-renamed", retries=1)(6, return_state=True)
        asynchronous = async_square.submit(7)
        dropped_in = square(8, return_state=True)
        for future in [submitted, *mapped, asynchronous]:
            future.wait()
        states = {
            "direct": direct,
            "submit": submitted.state,
            "map4": mapped[0].state,
            "map5": mapped[1].state,
            "with_options": renamed,
            "async": asynchronous.state,
            "foreign": dropped_in,
        }
        # what the checkpoint recorded for the memory-releasing runner, while the flow
        # run lasts (the records are dropped when it ends)
        recorded = {label: _targets.lookup(state.state_details.task_run_id)
                    for label, state in states.items()}
        return {"plain": plain, "states": states, "recorded": recorded}

    first = pipeline()
    assert isinstance(first["plain"], pd.DataFrame)
    assert_frame_equal(first["plain"], frame(1))
    names = {label: state.name for label, state in first["states"].items()}
    assert names == {
        "direct": "Completed",
        "submit": "Completed",
        "map4": "Completed",
        "map5": "Completed",
        "with_options": "Completed",
        "async": "Completed",
        "foreign": "Cached",
    }
    assert calls.counts == Counter({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, ("async", 7): 1})
    for n in range(1, 7):
        assert_frame_equal(pd.read_parquet(tmp_path / f"sq_{n}.parquet"), frame(n))
    assert_frame_equal(pd.read_parquet(tmp_path / "async_7.parquet"), frame(7))
    # the foreign file was used as is and not rewritten
    assert_frame_equal(first["states"]["foreign"].result(), foreign)
    assert os.stat(tmp_path / "sq_8.parquet").st_mtime_ns == foreign_mtime
    # every task run's target is recorded for the memory-releasing runner
    for label, state in first["states"].items():
        stored = first["recorded"][label]
        assert stored is not None, label
        assert_frame_equal(stored.load(), state.result())
    assert f"saved checkpoint {tmp_path / 'sq_3.parquet'}" in prefect_logs.read()

    # second flow run: every body is skipped, every run shows as Cached
    second = pipeline()
    assert calls.counts == Counter({1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, ("async", 7): 1})
    assert {state.name for state in second["states"].values()} == {"Cached"}
    assert_frame_equal(second["plain"], frame(1))
    for label, state in second["states"].items():
        expected = foreign if label == "foreign" else first["states"][label].result()
        assert_frame_equal(state.result(), expected)
    assert f"loaded checkpoint {tmp_path / 'sq_4.parquet'}" in prefect_logs.read()

    # a deleted target re-runs exactly that task
    (tmp_path / "sq_5.parquet").unlink()
    third = pipeline()
    assert calls.counts == Counter({1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 1, ("async", 7): 1})
    names = {label: state.name for label, state in third["states"].items()}
    assert names.pop("map5") == "Completed"
    assert set(names.values()) == {"Cached"}
    assert_frame_equal(pd.read_parquet(tmp_path / "sq_5.parquet"), frame(5))
    assert leftovers(tmp_path) == []


def test_failures_write_nothing_and_retries_write_once(
    prefect_harness: None, tmp_path: Path, prefect_logs: PrefectLogs
) -> None:
    from prefect import flow, task

    calls = Calls()

    @task(retries=2, retry_delay_seconds=0)
    @checkpoint(str(tmp_path / "flaky_{n}.parquet"))
    def flaky(n: int) -> pd.DataFrame:
        if calls(("flaky", n)) == 1:
            raise ConnectionError("first attempt fails")
        return frame(n)

    @task
    @checkpoint(str(tmp_path / "broken_{n}.parquet"))
    def broken(n: int) -> pd.DataFrame:
        calls(("broken", n))
        raise ValueError("the body failed")

    @task
    @checkpoint(str(tmp_path / "listed_{n}.parquet"))
    def listed(n: int) -> Any:
        return [n]

    @task
    @checkpoint(str(tmp_path / "named_{name}.parquet"))
    def named(name: str) -> pd.DataFrame:
        calls(("named", name))
        return frame(0)

    @task  # Prefect's default cache policy hashes the DataFrame input
    @checkpoint(str(tmp_path / "scaled_{factor}.parquet"))
    def scaled(df: pd.DataFrame, factor: int) -> pd.DataFrame:
        return df * factor

    @flow
    def pipeline() -> dict[str, Any]:
        return {
            "flaky": flaky(1, return_state=True),
            "broken": broken(2, return_state=True),
            "listed": listed(3, return_state=True),
            "hostile": named("../escape", return_state=True),
            "hashed": scaled(frame(1), 3, return_state=True),
        }

    states = pipeline(return_state=True).result(raise_on_failure=False)
    assert states["flaky"].name == "Completed"
    assert calls.counts[("flaky", 1)] == 2
    assert_frame_equal(pd.read_parquet(tmp_path / "flaky_1.parquet"), frame(1))

    assert states["broken"].is_failed()
    with pytest.raises(ValueError, match="the body failed"):
        states["broken"].result()

    assert states["listed"].is_failed()
    with pytest.raises(CheckpointResultError) as info:
        states["listed"].result()
    assert "task 'listed' returned a builtins.list" in str(info.value)

    assert states["hostile"].is_failed()
    with pytest.raises(UnsafeLocationError, match="'/'"):
        states["hostile"].result()
    assert ("named", "../escape") not in calls.counts  # the body never ran

    assert states["hashed"].name == "Completed"
    assert any("cache policy makes Prefect pickle and hash its DataFrame inputs (df)" in m
               for m in prefect_logs.read())

    assert sorted(p.name for p in tmp_path.iterdir()) == ["flaky_1.parquet", "scaled_3.parquet"]
    assert not (tmp_path.parent / "escape.parquet").exists()


def test_two_calls_never_share_a_target(prefect_harness: None, tmp_path: Path) -> None:
    from prefect import flow, task

    calls = Calls()
    collided = threading.Event()

    @task
    @checkpoint(str(tmp_path / "region_{region}.parquet"))
    def by_region(region: str, year: int) -> pd.DataFrame:
        calls((region, year))
        return frame(year)

    def note_failure(*_: Any) -> None:
        collided.set()

    @task(on_failure=[note_failure])
    @checkpoint(str(tmp_path / "slow_{n}.parquet"))
    def slow(n: int) -> pd.DataFrame:
        calls(("slow", n))
        collided.wait(timeout=30)  # stay in flight until the other call has failed
        return frame(n)

    @task
    @checkpoint(str(tmp_path / "region_{region}.parquet"))
    def other_function(region: str) -> pd.DataFrame:
        return frame(0)

    @flow
    def pipeline() -> dict[str, Any]:
        first = by_region("north", 2020, return_state=True)
        again = by_region("north", 2020, return_state=True)  # a plain repeat: a hit
        other_year = by_region("north", 2021, return_state=True)
        other_task = other_function("north", return_state=True)
        mapped = slow.map([1, 1])
        mapped.wait()
        return {
            "first": first,
            "again": again,
            "other_year": other_year,
            "other_task": other_task,
            "mapped": [future.state for future in mapped],
        }

    states = pipeline()
    assert states["first"].name == "Completed"
    assert states["again"].name == "Cached"
    with pytest.raises(CheckpointCollisionError) as info:
        states["other_year"].result()
    message = str(info.value)
    assert "(year=2020)" in message and "(year=2021)" in message and "Add {year}" in message
    with pytest.raises(CheckpointCollisionError, match="two different task functions"):
        states["other_task"].result()
    assert calls.counts[("north", 2020)] == 1 and ("north", 2021) not in calls.counts
    assert_frame_equal(pd.read_parquet(tmp_path / "region_north.parquet"), frame(2020))

    mapped_names = sorted(state.name for state in states["mapped"])
    assert mapped_names == ["Completed", "Failed"]
    failed = next(state for state in states["mapped"] if state.is_failed())
    with pytest.raises(CheckpointCollisionError, match="used by two calls at once"):
        failed.result()
    assert calls.counts[("slow", 1)] == 1  # one writer only
    assert_frame_equal(pd.read_parquet(tmp_path / "slow_1.parquet"), frame(1))


@pytest.mark.skipif(not FULL, reason="opt-in: 70 subflow runs (minutes); PREFECT_DS_FULL=1 runs it")
def test_a_flow_run_keeps_its_claims_however_many_runs_follow(
    prefect_harness: None, tmp_path: Path
) -> None:
    """Claims are dropped when their flow run ends, never because others came after it
    (subflows included): the 70 subflows here once pushed the parent's claims out."""
    from prefect import flow, task

    @task
    @checkpoint(str(tmp_path / "kept_{region}.parquet"))
    def by_region(region: str, year: int) -> pd.DataFrame:
        return frame(year)

    @task
    @checkpoint(str(tmp_path / "sub_{i}.parquet"))
    def small(i: int) -> pd.DataFrame:
        return frame(i)

    @flow
    def child(i: int) -> int:
        return len(small(i))

    @flow
    def parent() -> Any:
        by_region("north", 2020)
        for i in range(70):
            child(i)
        # in a dict: a flow returning a failed state directly would fail with it
        return {"state": by_region("north", 2021, return_state=True)}

    state = parent()["state"]
    with pytest.raises(CheckpointCollisionError, match=r"Add \{year\}"):
        state.result()


def test_direct_calls_with_differing_frames_collide_and_arguments_may_be_named_anything(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect import flow, task

    @task
    @checkpoint(str(tmp_path / "{location}_{self}.parquet"))
    def shaped(df: pd.DataFrame, location: str, self: str) -> pd.DataFrame:
        return df

    @flow
    def pipeline() -> Any:
        shaped(frame(1), "a", "b")
        same = shaped(frame(1), "a", "b", return_state=True)  # equal content: a hit
        other = shaped(frame(2), "a", "b", return_state=True)
        return same, other

    same, other = pipeline()
    assert same.name == "Cached"
    with pytest.raises(CheckpointCollisionError, match="'df'"):
        other.result()
    assert_frame_equal(pd.read_parquet(tmp_path / "a_b.parquet"), frame(1))


# -- plain calls (no Prefect run) -----------------------------------------------------------


def test_unknown_template_field_fails_at_decoration(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:

        @checkpoint(str(tmp_path / "data_{idx}.parquet"))
        def load(id: int, region: str = "north") -> pd.DataFrame:
            return frame(id)

    message = str(info.value)
    assert "{idx}" in message and "(id, region)" in message and ".<locals>.load'" in message


def test_checkpoint_above_task_is_explained(tmp_path: Path) -> None:
    from prefect import task

    with pytest.raises(TypeError, match="must sit under @task"):

        @checkpoint(str(tmp_path / "data_{id}.parquet"))  # type: ignore[type-var]
        @task
        def load(id: int) -> pd.DataFrame:
            return frame(id)


def test_generators_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot wrap the generator"):

        @checkpoint(str(tmp_path / "data.parquet"))
        def rows() -> Iterator[pd.DataFrame]:
            yield frame(1)


def test_signature_and_name_are_preserved(tmp_path: Path) -> None:
    import inspect

    def load(id: int, scale: float = 2.0) -> pd.DataFrame:
        """Load one id."""
        return frame(id)

    wrapped = checkpoint(str(tmp_path / "d_{id}.parquet"))(load)
    assert inspect.signature(wrapped) == inspect.signature(load)
    assert wrapped.__name__ == "load" and wrapped.__doc__ == "Load one id."
    assert not inspect.iscoroutinefunction(wrapped)

    async def aload(id: int) -> pd.DataFrame:
        return frame(id)

    assert inspect.iscoroutinefunction(checkpoint(str(tmp_path / "a_{id}.parquet"))(aload))


def test_defaults_fill_the_template(tmp_path: Path) -> None:
    calls = Calls()

    @checkpoint(str(tmp_path / "d_{id}_{scale}_{tag}.parquet"))
    def load(id: int, scale: int = 2, *, tag: str = "raw") -> pd.DataFrame:
        calls((id, scale, tag))
        return frame(id * scale)

    assert_frame_equal(load(1), frame(2))
    assert (tmp_path / "d_1_2_raw.parquet").exists()
    load(1, scale=3, tag="x")
    assert (tmp_path / "d_1_3_x.parquet").exists()
    assert_frame_equal(load(1), frame(2))
    assert calls.counts == Counter({(1, 2, "raw"): 1, (1, 3, "x"): 1})


def test_kwargs_may_supply_fields(tmp_path: Path) -> None:
    @checkpoint(str(tmp_path / "k_{region}.parquet"))
    def load(**options: Any) -> pd.DataFrame:
        return frame(1)

    load(region="south")
    assert (tmp_path / "k_south.parquet").exists()
    with pytest.raises(TemplateError, match=r"needs \{region\}"):
        load(other="x")


@pytest.mark.parametrize(
    "value",
    ["../up", "a/b", "/etc/passwd", "", ".hidden", "x;DROP TABLE t", "~root", "a\\b",
     "\uff46\uff55\uff4c\uff4c", "x" * 201, "s3://bucket/key", "a b", "line\nbreak"],
)
def test_hostile_values_are_refused_before_the_body_runs(tmp_path: Path, value: str) -> None:
    calls = Calls()
    inner = tmp_path / "inner"

    @checkpoint(str(inner / "v_{value}.parquet"))
    def load(value: str) -> pd.DataFrame:
        calls(value)
        return frame(1)

    with pytest.raises(UnsafeLocationError, match=r"template field \{value\}"):
        load(value)
    assert not calls.counts
    assert list(tmp_path.rglob("*")) == []


def test_non_dataframe_return_writes_nothing(tmp_path: Path) -> None:
    @checkpoint(str(tmp_path / "s_{n}.parquet"))
    def series(n: int) -> Any:
        return {"n": [n]}

    with pytest.raises(CheckpointResultError) as info:
        series(1)
    message = str(info.value)
    assert "function 'test_non_dataframe_return_writes_nothing.<locals>.series'" in message
    assert "returned a builtins.dict" in message and "Return a frame" in message
    assert list(tmp_path.iterdir()) == []


def test_exception_in_body_writes_nothing_and_frees_the_target(tmp_path: Path) -> None:
    attempts = Calls()

    @checkpoint(str(tmp_path / "e_{n}.parquet"))
    def fails_once(n: int) -> pd.DataFrame:
        if attempts(n) == 1:
            raise RuntimeError("boom")
        return frame(n)

    with pytest.raises(RuntimeError, match="boom"):
        fails_once(1)
    assert list(tmp_path.iterdir()) == []
    assert_frame_equal(fails_once(1), frame(1))  # same target again: no collision
    assert (tmp_path / "e_1.parquet").exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_foreign_file_is_used_as_is(tmp_path: Path, fmt: str, caplog: Any) -> None:
    if fmt not in available_formats():
        pytest.skip(f"the {fmt} format is not installed")
    target = tmp_path / f"data_7.{fmt}"
    foreign = pd.DataFrame({"one": [1, 2, 3], "two": [4, 5, 6]})
    if fmt == "csv":
        foreign.to_csv(target, index=False)
    else:
        foreign.to_parquet(target)
    before = target.read_bytes(), os.stat(target).st_mtime_ns

    @checkpoint(str(tmp_path / ("data_{id}." + fmt)))
    def load(id: int) -> pd.DataFrame:
        raise AssertionError("the body must not run when the target exists")

    with caplog.at_level(logging.INFO, logger="prefect_ds.checkpoint"):
        loaded = load(7)
    assert_frame_equal(loaded, foreign, check_dtype=False)
    assert (target.read_bytes(), os.stat(target).st_mtime_ns) == before
    assert f"loaded checkpoint {target}" in caplog.messages


def test_target_appearing_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "late_1.parquet"

    @checkpoint(str(tmp_path / "late_{n}.parquet"))
    def load(n: int) -> pd.DataFrame:
        frame(99).to_parquet(target)  # another process finishes first
        return frame(n)

    assert_frame_equal(load(1), frame(1))
    assert_frame_equal(pd.read_parquet(target), frame(99))


def test_async_function_without_prefect(tmp_path: Path) -> None:
    calls = Calls()

    @checkpoint(str(tmp_path / "a_{n}.parquet"))
    async def load(n: int) -> pd.DataFrame:
        calls(n)
        return frame(n)

    assert_frame_equal(asyncio.run(load(1)), frame(1))
    assert_frame_equal(asyncio.run(load(1)), frame(1))
    assert calls.counts == Counter({1: 1})


def test_concurrent_plain_calls_collide(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    @checkpoint(str(tmp_path / "c_{n}.parquet"))
    def slow(n: int) -> pd.DataFrame:
        started.set()
        release.wait(timeout=30)
        return frame(n)

    worker = threading.Thread(target=slow, args=(1,))
    worker.start()
    try:
        assert started.wait(timeout=30)
        with pytest.raises(CheckpointCollisionError, match="used by two calls at once"):
            slow(1)
    finally:
        release.set()
        worker.join()
    assert_frame_equal(pd.read_parquet(tmp_path / "c_1.parquet"), frame(1))


def _copy_of(fn: Any) -> Any:
    """A separate function object with the same code, as Dask gives each worker."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)
    copy.__qualname__ = fn.__qualname__
    assert copy is not fn and copy.__module__ == fn.__module__
    return copy


def test_copies_of_one_function_collide_by_argument_and_retries_do_not() -> None:
    """Claims of a target (``_checkpoint.collisions``): copies of one function are one
    function, so two concurrent calls differing in an argument are told which one, and
    the first may not write either; an earlier call of the flow run blocks a replacement
    by another task run, not by a retry of the same one."""

    def compute(n: int) -> pd.DataFrame:
        return frame(n)

    location, template = "/data/c.parquet", "/data/c.parquet"
    held = _claims.count()
    first = _claims.Claim(compute, "call 1", uuid.UUID(int=3), plain={"n": 1})
    second = _claims.Claim(_copy_of(compute), "call 2", uuid.UUID(int=2), plain={"n": 2})
    with _claims.claim(None, location, template, first), \
            pytest.raises(CheckpointCollisionError, match=r"arguments \(n=1\).*Add \{n\}"), \
            _claims.claim(None, location, template, second):
        pass
    assert first.collided is not None

    def other(n: int) -> pd.DataFrame:  # another function, whose key sorts after compute's
        return frame(n)

    with _claims.claim(None, location, template, _claims.Claim(other, "call 3", None,
                                                                plain={"n": 1})), \
            pytest.raises(CheckpointCollisionError, match="used by two calls at once"), \
            _claims.claim(None, location, template, second):
        pass
    assert "Add {n}" in (_claims.mapped_conflict(first, second, location, template) or "")
    assert _claims.mapped_conflict(first, _claims.Claim(compute, "call 4", None,
                                                        plain={"n": 1}), location, template) is None
    run_a, run_b = uuid.UUID(int=1), uuid.UUID(int=2)
    later = _claims.Claim(compute, "task run b", run_b)
    for earlier in (_claims.Claim(compute, "task run a", run_a),
                    _claims.Claim(compute, "task run c", uuid.UUID(int=3))):
        with pytest.raises(CheckpointCollisionError, match="would replace the frame"):
            _claims.replacing(earlier, later, location, template)
    _claims.replacing(_claims.Claim(compute, "task run b", run_b), later, location, template)
    _claims.replacing(None, later, location, template)
    assert _claims.count() == held  # outside a flow run, a claim ends with its call


def test_a_later_task_run_is_handed_the_claim_an_earlier_one_left(
        prefect_harness: None) -> None:
    """Inside a flow run, claims outlive their calls: a later call of another task run
    (whatever the order of the two ids) gets the earlier claim, which is what stops it
    from replacing that call's target; a retry of the same task run does not."""
    from prefect import flow
    from prefect.context import FlowRunContext

    def compute(n: int) -> pd.DataFrame:
        return frame(n)

    location = "/data/flow-claims.parquet"

    @flow
    def claims() -> list[Any]:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        run_id = context.flow_run.id
        seen = []
        for task_run in (1, 2, 2, 0):  # a later id, its retry, a lower id
            new = _claims.Claim(compute, f"task run {task_run}", uuid.UUID(int=task_run))
            with _claims.claim(run_id, location, location, new) as prior:
                seen.append(None if prior is None else prior.label)
        return seen

    assert claims() == [None, "task run 1", None, "task run 2"]


def test_handler_as_location(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "h_{n}.data"), "parquet",
                                  write_kwargs={"compression": "gzip"})

    @checkpoint(handler)
    def load(n: int) -> pd.DataFrame:
        return frame(n)

    load(3)
    assert_frame_equal(handler.read(n=3), frame(3))
    with pytest.raises(TypeError, match="pass those to the PandasResultHandler"):
        checkpoint(handler, "csv")


def test_checkpoint_task_defaults_and_overrides(tmp_path: Path) -> None:
    from prefect.cache_policies import INPUTS, NO_CACHE

    @checkpoint_task(str(tmp_path / "t_{n}.parquet"), retries=3, name="squares")
    def load(n: int) -> pd.DataFrame:
        return frame(n)

    assert load.name == "squares" and load.retries == 3
    assert load.cache_policy is NO_CACHE and load.persist_result is False
    renamed = load.with_options(name="renamed")
    assert renamed.cache_policy is NO_CACHE and renamed.persist_result is False
    assert_frame_equal(load.fn(2), frame(2))
    assert (tmp_path / "t_2.parquet").exists()

    @checkpoint_task(str(tmp_path / "u_{n}.parquet"), cache_policy=INPUTS)
    def hashed(n: int) -> pd.DataFrame:
        return frame(n)

    assert hashed.cache_policy == INPUTS and hashed.persist_result is True

    @checkpoint_task(str(tmp_path / "v_{n}.parquet"), persist_result=True)
    def persisted(n: int) -> pd.DataFrame:
        return frame(n)

    assert persisted.cache_policy is NO_CACHE and persisted.persist_result is True
