"""``DSTaskRunner``: results released once their consumers are done, on real Prefect flows.

Flow runs cost about a second each, so each flow checks several behaviours. ``peek``
reads what a run's state holds now (a frame, or the ``ReleasedResult`` that replaced it)
without the reload a future's ``.result()`` performs.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from prefect_ds import DSTaskRunner, ReleasedResult, ResultReleasedError, checkpoint
from prefect_ds._release.targets import StoredTarget


def frame(n: int, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"n": [n] * rows, "i": range(rows)})


def peek(future: Any) -> Any:
    """What the run's state holds now, without reloading a released result."""
    future.wait()
    released = getattr(future, "released", None)
    return released if released is not None else future.state.result()


def is_released(future: Any) -> bool:
    return isinstance(peek(future), ReleasedResult)


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Garbage collection off: what is freed is freed by reference counting alone."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- no Prefect needed ------------------------------------------------------------------


def test_released_result_says_what_was_released_and_refuses_to_pass_for_data() -> None:
    run_id = uuid4()
    placeholder = ReleasedResult.of(frame(1, rows=1000), "clean", run_id, target=None)
    text = repr(placeholder)
    assert "'clean'" in text and str(run_id) in text
    assert "DataFrame" in text and "1000 x 2" in text and "KB" in text
    assert not placeholder.reloadable
    with pytest.raises(AttributeError, match="released by DSTaskRunner"):
        _ = placeholder.columns
    uses = (
        lambda: placeholder * 2, lambda: placeholder["n"], lambda: len(placeholder),
        lambda: bool(placeholder), lambda: placeholder == 1, lambda: placeholder != 1,
        lambda: 1 + placeholder, lambda: list(placeholder), lambda: -placeholder,
        lambda: placeholder < 1, lambda: int(placeholder), lambda: 3 in placeholder,
        lambda: placeholder & True, lambda: placeholder(),
    )
    for use_as_data in uses:
        with pytest.raises(ResultReleasedError, match="used as data"):
            use_as_data()
    # identity still works: a placeholder can be kept in a set or found by the runner
    assert placeholder in {placeholder} and placeholder is placeholder
    with pytest.raises(ResultReleasedError, match="checkpoint"):
        placeholder.load()


def test_a_checkpointed_released_result_reloads_from_its_target(tmp_path: Path) -> None:
    from prefect_ds import get_format

    location = str(tmp_path / "kept.parquet")
    frame(7).to_parquet(location)
    target = StoredTarget(location, get_format("parquet"))
    placeholder = ReleasedResult.of(frame(7), "kept", uuid4(), target)
    assert placeholder.reloadable and "reloadable from" in repr(placeholder)
    assert_frame_equal(placeholder.load(), frame(7))
    Path(location).unlink()
    with pytest.raises(ResultReleasedError) as info:
        placeholder.load()
    assert "'kept'" in str(info.value) and location in str(info.value)


# -- flows --------------------------------------------------------------------------------


def test_chain_releases_upstream_results_and_keeps_the_final_one(
    prefect_harness: None, no_gc: None
) -> None:
    from prefect import flow, task

    alive: dict[str, weakref.ref[pd.DataFrame]] = {}
    seen_alive_at_start: dict[str, list[str]] = {}

    @task
    def generate() -> pd.DataFrame:
        df = frame(1)
        alive["generate"] = weakref.ref(df)
        return df

    @task
    def double(df: pd.DataFrame, step: str) -> pd.DataFrame:
        seen_alive_at_start[step] = sorted(k for k, ref in alive.items() if ref() is not None)
        out = df * 2
        alive[step] = weakref.ref(out)
        return out

    @flow(task_runner=DSTaskRunner())
    def chain() -> dict[str, Any]:
        first = generate.submit()
        second = double.submit(first, "second")
        third = double.submit(second, "third")
        third.wait()
        # The release happened in third's worker thread before its future resolved,
        # and with garbage collection off: the frames are gone, not merely unreferenced.
        dead_now = sorted(k for k, ref in alive.items() if ref() is None)
        return {
            "first": peek(first),
            "second": peek(second),
            "third": third.result(),
            "first_via_result": first.result(),
            "dead_now": dead_now,
        }

    out = chain()
    assert out["dead_now"] == ["generate", "second"]
    # each step started with only its own input alive: the chain never held three frames
    assert seen_alive_at_start == {"second": ["generate"], "third": ["second"]}
    assert isinstance(out["first"], ReleasedResult) and out["first"].task_name == "generate"
    assert isinstance(out["second"], ReleasedResult) and out["second"].task_name == "double"
    assert "DataFrame" in repr(out["second"]) and "3 x 2" in repr(out["second"])
    assert isinstance(out["first_via_result"], ReleasedResult)  # not checkpointed: nothing to load
    assert_frame_equal(out["third"], frame(1) * 4)


def test_fan_out_wait_for_nested_arguments_and_unconsumed_results(
    prefect_harness: None,
) -> None:
    from prefect import flow, task

    gate = threading.Event()

    @task
    def source(n: int) -> pd.DataFrame:
        return frame(n)

    @task
    def quick(df: pd.DataFrame) -> int:
        return len(df)

    @task
    def slow(df: pd.DataFrame) -> int:
        assert gate.wait(60), "the test never opened the gate"
        return int(df["n"].sum())

    @task
    def after() -> str:
        return "done"

    @task
    def combine(parts: dict[str, Any]) -> pd.DataFrame:
        return pd.concat([parts["head"], *parts["rest"]], ignore_index=True)

    @flow(task_runner=DSTaskRunner())
    def shapes() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        # fan-out: released only once every consumer has finished
        shared = source.submit(1)
        fast_consumer = quick.submit(shared)
        slow_consumer = slow.submit(shared)
        fast_consumer.wait()
        seen["after_fast_consumer"] = peek(shared)
        gate.set()
        slow_consumer.wait()
        seen["after_both"] = peek(shared)
        seen["fan_out_results"] = (fast_consumer.result(), slow_consumer.result())

        # wait_for counts as consuming
        awaited = source.submit(2)
        follower = after.submit(wait_for=[awaited])
        follower.wait()
        seen["awaited"] = peek(awaited)

        # futures nested in dicts and lists are found, and the consumer gets the data
        head, one, two = source.submit(3), source.submit(4), source.submit(5)
        combined = combine.submit({"head": head, "rest": [one, (two)]})
        combined.wait()
        seen["nested"] = [peek(f) for f in (head, one, two)]
        seen["combined"] = combined.result()

        # nobody consumes this one: kept
        seen["unconsumed"] = peek(source.submit(6))
        return seen

    seen = shapes()
    assert_frame_equal(seen["after_fast_consumer"], frame(1))
    assert isinstance(seen["after_both"], ReleasedResult)
    assert seen["fan_out_results"] == (3, 3)
    assert isinstance(seen["awaited"], ReleasedResult)
    assert all(isinstance(value, ReleasedResult) for value in seen["nested"])
    assert_frame_equal(
        seen["combined"], pd.concat([frame(3), frame(4), frame(5)], ignore_index=True)
    )
    assert_frame_equal(seen["unconsumed"], frame(6))


def test_map_consumers_are_counted_through_their_dependencies(prefect_harness: None) -> None:
    from prefect import flow, task
    from prefect.utilities.annotations import unmapped

    @task
    def source() -> pd.DataFrame:
        return frame(10)

    @task
    def sizes() -> list[int]:
        return [1, 2, 3]

    @task
    def head(df: pd.DataFrame, k: int) -> pd.DataFrame:
        return df.head(k)

    @flow(task_runner=DSTaskRunner())
    def mapped() -> dict[str, Any]:
        data, ks = source.submit(), sizes.submit()
        heads = head.map(unmapped(data), ks)  # map resolves both futures before submitting
        heads.wait()
        return {
            "data": peek(data),
            "ks": peek(ks),
            "heads": [f.result() for f in heads],
        }

    out = mapped()
    assert isinstance(out["data"], ReleasedResult)
    assert isinstance(out["ks"], ReleasedResult) and out["ks"].type_name == "list"
    for k, result in zip([1, 2, 3], out["heads"], strict=True):
        assert_frame_equal(result, frame(10).head(k))


def test_a_late_consumer_fails_clearly_unless_the_result_can_be_reloaded(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect import flow, task

    @task
    def plain(n: int) -> pd.DataFrame:
        return frame(n)

    @task
    @checkpoint(str(tmp_path / "stored_{n}.parquet"))
    def stored(n: int) -> pd.DataFrame:
        return frame(n)

    @task
    def double(df: pd.DataFrame) -> pd.DataFrame:
        return df * 2

    @flow(task_runner=DSTaskRunner())
    def late() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        gone = plain.submit(1)
        double.submit(gone).wait()
        try:
            double.submit(gone)
        except ResultReleasedError as exc:
            seen["error"] = str(exc)
        try:
            double.submit(peek(gone))  # the placeholder itself is refused too
        except ResultReleasedError as exc:
            seen["placeholder_error"] = str(exc)
        try:
            double.map(gone)
        except ResultReleasedError as exc:
            seen["map_error"] = str(exc)

        kept = stored.submit(2)
        double.submit(kept).wait()
        seen["released"] = peek(kept)
        seen["reloaded_by_result"] = kept.result()
        late_consumer = double.submit(kept)  # reloaded from the checkpoint for it
        seen["late_result"] = late_consumer.result()
        seen["released_again"] = peek(kept)
        mapped = double.map([kept, kept])
        seen["mapped"] = [f.result() for f in mapped]

        removed = stored.submit(3)
        double.submit(removed).wait()
        (tmp_path / "stored_3.parquet").unlink()
        try:
            double.submit(removed).result()
        except ResultReleasedError as exc:
            seen["removed_target"] = str(exc)
        return seen

    seen = late()
    for key in ("error", "map_error"):
        assert "'plain'" in seen[key] and "already gone" in seen[key]
        assert "prefect_ds.checkpoint" in seen[key]
    assert "ReleasedResult" in seen["placeholder_error"]
    released = seen["released"]
    assert isinstance(released, ReleasedResult) and released.reloadable
    assert released.target is not None and released.target.location.endswith("stored_2.parquet")
    assert_frame_equal(seen["reloaded_by_result"], frame(2))
    assert_frame_equal(seen["late_result"], frame(2) * 2)
    assert isinstance(seen["released_again"], ReleasedResult)
    for result in seen["mapped"]:
        assert_frame_equal(result, frame(2) * 2)
    assert "Could not reload" in seen["removed_target"]
    assert f"from {tmp_path / 'stored_3.parquet'}: " in seen["removed_target"]  # the target


def test_async_tasks_failures_and_prefect_persisted_results(prefect_harness: None) -> None:
    from prefect import flow, task

    @task
    async def agenerate() -> pd.DataFrame:
        await asyncio.sleep(0)
        return frame(5)

    @task
    async def adouble(df: pd.DataFrame) -> pd.DataFrame:
        await asyncio.sleep(0)
        return df * 2

    @task
    def broken() -> pd.DataFrame:
        raise ValueError("no data today")

    @task
    def double(df: pd.DataFrame) -> pd.DataFrame:
        return df * 2

    @task(persist_result=True)  # stored under the test's PREFECT_HOME
    def persisted() -> pd.DataFrame:
        return frame(9)

    @flow(task_runner=DSTaskRunner())
    def mixed() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        first = agenerate.submit()
        second = adouble.submit(first)
        seen["async_final"] = second.result()
        seen["async_first"] = peek(first)

        failed = broken.submit()
        downstream = double.submit(failed)
        downstream.wait()
        seen["downstream_state"] = downstream.state.name
        seen["failed_state"] = failed.state.name

        saved = persisted.submit()
        double.submit(saved).wait()
        # Prefect stored this result itself: the state now only points at storage,
        # and Prefect reads it back on demand.
        seen["persisted_state_data"] = type(saved.state.data).__name__
        seen["persisted_reread"] = saved.result()
        seen["persisted_late"] = double.submit(saved).result()
        return seen

    seen = mixed()
    assert_frame_equal(seen["async_final"], frame(5) * 2)
    assert isinstance(seen["async_first"], ReleasedResult)
    assert seen["failed_state"] == "Failed"
    assert seen["downstream_state"] == "NotReady"
    assert seen["persisted_state_data"] == "ResultRecordMetadata"
    assert_frame_equal(seen["persisted_reread"], frame(9))
    assert_frame_equal(seen["persisted_late"], frame(9) * 2)


def test_a_failed_consumer_s_traceback_does_not_keep_its_inputs(
    prefect_harness: None, no_gc: None
) -> None:
    """A consumer that fails keeps its error, message and traceback lines, but not the
    frames' locals: what its failing frame held is freed with the run."""
    from prefect import flow, task

    alive: dict[str, weakref.ref[pd.DataFrame]] = {}

    @task
    def generate() -> pd.DataFrame:
        df = frame(2)
        alive["generate"] = weakref.ref(df)
        return df

    @task
    def fail(df: pd.DataFrame) -> pd.DataFrame:
        held = df * 1  # a local of the failing frame, and its input
        alive["held"] = weakref.ref(held)
        raise ValueError(f"bad rows: {len(held)}")

    @flow(task_runner=DSTaskRunner())
    def failing() -> Any:
        first = generate.submit()
        second = fail.submit(first)
        state = second.wait() or second.state
        return {"state": state, "dead": sorted(k for k, r in alive.items() if r() is None)}

    out = failing()
    assert out["state"].is_failed()
    assert "bad rows: 3" in str(out["state"].message)
    # the failing frame's locals went with its traceback's frames (the upstream frame
    # itself may outlive this a little: Prefect's events worker holds the failed run's
    # context, parameters included, until it has sent its events)
    assert "held" in out["dead"]
