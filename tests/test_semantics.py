"""One semantics suite, three task runners: Prefect's ``ThreadPoolTaskRunner`` (what
Prefect itself does), ``DSTaskRunner`` and ``DSDaskTaskRunner``.

Every case runs a real flow on each runner and records what it saw; the assertions say
what all runners share and, where ours differ from Prefect's, the documented
improvement (docs/semantics.md), never a crash. Each flow runs under a hang guard. The
Dask cases share one ``LocalCluster`` (one worker process) for the whole module.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import allow_failure, quote, unmapped
from support.clusters import local_cluster
from support.events import asset_events

from prefect_ds import (
    CheckpointCollisionError,
    DSTaskRunner,
    ReleasedResult,
    ResultReleasedError,
    checkpoint,
)

RUNNERS = ["threads", "ds", "dask"]
HANG_GUARD = 180.0  # seconds a flow may take before the test fails instead of hanging


def frame(n: int, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"n": [n] * rows, "i": range(rows)})


# -- the runners --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(prefect_harness: None) -> Iterator[Any]:
    with local_cluster(__name__, n_workers=1, threads_per_worker=4) as local:
        yield local


@pytest.fixture(params=RUNNERS)
def kind(request: pytest.FixtureRequest, prefect_harness: None) -> str:
    if request.param == "dask":
        request.getfixturevalue("cluster")
    return str(request.param)


def runner_for(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=4)
    if kind == "ds":
        return DSTaskRunner(max_workers=4)
    from prefect_ds.dask import DSDaskTaskRunner

    cluster = request.getfixturevalue("cluster")
    return DSDaskTaskRunner(address=cluster.scheduler_address)


@pytest.fixture
def run(kind: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Run a flow function on this test's runner, under the hang guard."""

    def run_flow(fn: Callable[..., Any], *args: Any, plain_dask: bool = False,
                 **kwargs: Any) -> Any:
        if plain_dask:  # prefect-dask's own runner, for what Dask itself does
            from prefect_dask import DaskTaskRunner

            address = request.getfixturevalue("cluster").scheduler_address
            runner = DaskTaskRunner(address=address)
        else:
            runner = runner_for(kind, request)
        flow_obj = flow(task_runner=runner)(fn)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = flow_obj(*args, **kwargs)
            except BaseException as exc:  # reported in the test's thread
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(HANG_GUARD)
        if thread.is_alive():
            pytest.fail(f"the flow on {kind} did not finish within {HANG_GUARD:.0f} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    return run_flow


def outcome(future: Any) -> Any:
    """A future's result, or the name of the error it raises."""
    try:
        return future.result()
    except Exception as exc:
        return type(exc).__name__


def released(future: Any) -> bool:
    """Whether one of our runners released this future's result."""
    future.wait()
    return getattr(future, "released", None) is not None


# -- tasks shared by the cases (module level: they travel to Dask workers by value) --------


@task
def make(n: int) -> pd.DataFrame:
    return frame(n)


@task
def boom() -> pd.DataFrame:
    raise ValueError("boom: no data today")


@task
def rows(df: Any = None) -> int:
    return 0 if df is None else len(df)


@task
def total(items: Any) -> int:
    return sum(len(v) for v in _leaves(items))


def _leaves(items: Any) -> list[pd.DataFrame]:
    if isinstance(items, pd.DataFrame):
        return [items]
    if isinstance(items, dict):
        return [leaf for v in items.values() for leaf in _leaves(v)]
    if isinstance(items, (list, tuple)):
        return [leaf for v in items for leaf in _leaves(v)]
    if dataclasses.is_dataclass(items):
        return [leaf for f in dataclasses.fields(items) for leaf in _leaves(getattr(items, f.name))]
    return []


@task
def both(left: pd.DataFrame, right: pd.DataFrame) -> int:
    return len(left) + len(right)


@dataclasses.dataclass
class Pair:
    left: Any
    right: Any


@task
def flag() -> bool:
    return False


@task
def consume(value: Any) -> str:
    return type(value).__name__


@task
def read_quoted(box: Any) -> int:
    return len(box.result())


@flow
def count_rows(df: Any) -> int:
    assert isinstance(df, pd.DataFrame), type(df)
    return len(df)


# -- 1. everything Prefect accepts in wait_for and in parameters ----------------------------


def test_wait_for_in_every_form(run: Callable[..., Any], kind: str) -> None:
    def pipeline() -> dict[str, Any]:
        a = make.submit(1)
        failed = boom.submit()
        single = rows.submit(wait_for=a)
        tolerant = rows.submit(wait_for=[allow_failure(failed)])
        a.wait()
        by_state = rows.submit(wait_for=[a.state])
        mixed = rows.submit(a, wait_for=[a, allow_failure(failed), a.state])
        lone_annotation = rows.submit(wait_for=allow_failure(failed))
        strict = rows.submit(wait_for=[failed])
        return {
            "single": outcome(single),
            "tolerant": outcome(tolerant),
            "by_state": outcome(by_state),
            "mixed": outcome(mixed),
            "lone_annotation": outcome(lone_annotation),
            "strict": outcome(strict),
        }

    seen = run(pipeline)
    if kind == "dask":
        # Dask rebuilds an annotation around a future it resolves, so allow_failure in
        # wait_for does not survive the trip to a worker: prefect-dask's own runner
        # behaves exactly so, and ours never does worse.
        assert seen == run(pipeline, plain_dask=True)
        assert seen["single"] == 0 and seen["by_state"] == 0
        return
    assert seen == {
        "single": 0, "tolerant": 0, "by_state": 0, "mixed": 3, "lone_annotation": 0,
        "strict": "UnfinishedRun",
    }


def test_futures_anywhere_in_parameters(run: Callable[..., Any], kind: str) -> None:
    def pipeline() -> dict[str, Any]:
        a, b = make.submit(1), make.submit(2)
        nested = total.submit([a, {"x": b, "y": (a,)}])
        in_dataclass = total.submit(Pair(a, b))
        annotated = rows.submit(allow_failure(a))
        mapped = rows.map([a, b])
        with_unmapped = both.map([a, b], unmapped(b))
        return {
            "nested": outcome(nested),
            "in_dataclass": outcome(in_dataclass),
            "annotated": outcome(annotated),
            "mapped": [outcome(f) for f in mapped],
            "unmapped": [outcome(f) for f in with_unmapped],
        }

    seen = run(pipeline)
    if kind == "dask":
        # Dask resolves futures in lists, tuples and dicts only: inside a dataclass or
        # an annotation a worker sees them unresolved, under prefect-dask's runner too.
        assert seen == run(pipeline, plain_dask=True)
        assert seen["nested"] == 9 and seen["mapped"] == [3, 3]
        return
    assert seen == {
        "nested": 9, "in_dataclass": 6, "annotated": 3, "mapped": [3, 3], "unmapped": [6, 6],
    }


# -- 2. methods, and arguments named like our own parameters -------------------------------


def test_checkpointed_methods_as_tasks_and_plain_calls(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    template = str(tmp_path / "m_{self.region}_{x}.parquet")

    class Region:
        def __init__(self, region: str) -> None:
            self.region = region

        @task
        @checkpoint(template)
        def clean(self, x: int) -> pd.DataFrame:
            return frame(x)

        @checkpoint(template.replace("m_", "plain_"))
        def plain(self, x: int) -> pd.DataFrame:
            return frame(x * 10)

    def pipeline() -> dict[str, Any]:
        north = Region("north")
        submitted = north.clean.submit(1)
        called = Region("south").clean(2)
        return {
            "submitted": submitted.result(),
            "called": called,
            "plain_in_flow": north.plain(3),
        }

    seen = run(pipeline)
    assert_frame_equal(seen["submitted"], frame(1))
    assert_frame_equal(seen["called"], frame(2))
    assert_frame_equal(seen["plain_in_flow"], frame(30))
    assert_frame_equal(pd.read_parquet(tmp_path / "m_north_1.parquet"), frame(1))
    assert_frame_equal(pd.read_parquet(tmp_path / "m_south_2.parquet"), frame(2))
    # outside any flow: loads what the flow stored
    assert_frame_equal(Region("north").plain(3), frame(30))


def test_arguments_named_like_our_own_parameters(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    @task
    @checkpoint(str(tmp_path / "{location}_{fn}_{arguments}_{template}_{call}_{df}.parquet"))
    def odd(location: str, fn: str, arguments: str, template: str, call: str,
            df: str) -> pd.DataFrame:
        return frame(len(location + fn + arguments + template + call + df))

    def pipeline() -> pd.DataFrame:
        return odd.submit("l", "f", "a", "t", "c", "d").result()

    assert_frame_equal(run(pipeline), frame(6))
    assert (tmp_path / "l_f_a_t_c_d.parquet").exists()


# -- 3. collisions ---------------------------------------------------------------------------


def test_calls_differing_in_a_frame_collide(run: Callable[..., Any], tmp_path: Path) -> None:
    @task
    @checkpoint(str(tmp_path / "scaled_{factor}.parquet"))
    def scaled(df: pd.DataFrame, factor: int) -> pd.DataFrame:
        return df * factor

    def pipeline() -> dict[str, Any]:
        first = scaled.submit(frame(1), 2)
        first.wait()
        second = scaled.submit(frame(5), 2)  # same target, another frame
        second.wait()
        again = scaled.submit(frame(1), 2)  # equal content: a hit
        return {
            "first": first.state.name,
            "second": second.state,
            "again": again.result(),
        }

    seen = run(pipeline)
    assert seen["first"] == "Completed"
    with pytest.raises(CheckpointCollisionError, match="'df'"):
        seen["second"].result()
    assert_frame_equal(seen["again"], frame(1) * 2)
    assert_frame_equal(pd.read_parquet(tmp_path / "scaled_2.parquet"), frame(1) * 2)


def test_inputs_invalidation_never_replaces_a_target_in_use(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    @task
    @checkpoint(str(tmp_path / "shared.parquet"), invalidate_on=("inputs",))
    def stored(df: pd.DataFrame) -> pd.DataFrame:
        return df + 1

    def pipeline() -> dict[str, Any]:
        first = stored.submit(make.submit(1))
        rows.submit(first).wait()  # DS runners release first's frame here
        second = stored.submit(make.submit(7))
        second.wait()
        return {"first": first.result(), "second": second.state}

    seen = run(pipeline)
    assert_frame_equal(seen["first"], frame(1) + 1)
    with pytest.raises(CheckpointCollisionError):
        seen["second"].result()
    assert_frame_equal(pd.read_parquet(tmp_path / "shared.parquet"), frame(1) + 1)


def test_a_map_collision_names_the_argument(
    run: Callable[..., Any], kind: str, tmp_path: Path
) -> None:
    @task
    @checkpoint(str(tmp_path / "tagged_{region}.parquet"))
    def tagged(tag: str, region: str) -> pd.DataFrame:
        time.sleep(0.2)
        return frame(len(tag))

    def pipeline() -> list[Any]:
        try:
            futures = tagged.map(["a", "bb", "ccc"], unmapped("eu"))
        except CheckpointCollisionError as exc:
            return [exc]
        futures.wait()
        return [f.state for f in futures]

    seen = run(pipeline)
    errors = []
    for item in seen:
        if isinstance(item, BaseException):
            errors.append(item)
        elif item.is_failed():
            with pytest.raises(CheckpointCollisionError) as info:
                item.result()
            errors.append(info.value)
    assert errors and all("{tag}" in str(error) for error in errors)
    if kind != "threads":  # ours refuse the whole map before any call runs
        assert len(seen) == 1 and not (tmp_path / "tagged_eu.parquet").exists()


# -- 4. a released result never passes for data ---------------------------------------------


def test_a_released_flag_refuses_every_use(run: Callable[..., Any], kind: str) -> None:
    def pipeline() -> dict[str, Any]:
        done = flag.submit()
        consume.submit(done).wait()
        value = done.result()
        uses: dict[str, str] = {}
        probes: dict[str, Callable[[], Any]] = {
            "bool": lambda: bool(value),
            "eq": lambda: value == False,  # noqa: E712
            "add": lambda: value + 1,
            "iter": lambda: list(value),
        }
        for name, use in probes.items():
            try:
                use()
                uses[name] = "ok"
            except ResultReleasedError:
                uses[name] = "refused"
            except Exception as exc:  # what the value itself says (False is not iterable)
                uses[name] = type(exc).__name__
        return {"value": value, "uses": uses, "released": released(done)}

    seen = run(pipeline)
    if kind == "threads":  # Prefect keeps every result
        assert seen["value"] is False and not seen["released"]
    else:
        assert isinstance(seen["value"], ReleasedResult) and seen["released"]
        assert seen["uses"] == {name: "refused" for name in ("bool", "eq", "add", "iter")}


def test_a_subflow_gets_the_reloaded_frame(run: Callable[..., Any], tmp_path: Path) -> None:
    @task
    @checkpoint(str(tmp_path / "sub_{n}.parquet"))
    def stored(n: int) -> pd.DataFrame:
        return frame(n)

    def pipeline() -> dict[str, Any]:
        kept = stored.submit(4)
        rows.submit(kept).wait()
        return {"released": released(kept), "subflow": count_rows(kept)}

    seen = run(pipeline)
    assert seen["subflow"] == 3


def test_a_deleted_target_is_named_when_a_released_result_is_asked_for(
    run: Callable[..., Any], kind: str, tmp_path: Path
) -> None:
    @task
    @checkpoint(str(tmp_path / "gone_{n}.parquet"))
    def stored(n: int) -> pd.DataFrame:
        return frame(n)

    def pipeline() -> dict[str, Any]:
        kept = stored.submit(5)
        rows.submit(kept).wait()
        (tmp_path / "gone_5.parquet").unlink()
        try:
            return {"value": kept.result()}
        except ResultReleasedError as exc:
            return {"error": str(exc)}

    seen = run(pipeline)
    if kind == "threads":
        assert_frame_equal(seen["value"], frame(5))  # still in memory
    else:
        assert "'stored'" in seen["error"] and "gone_5.parquet" in seen["error"]


def test_a_quoted_future_is_a_consumer_that_reads_it_itself(
    run: Callable[..., Any], kind: str
) -> None:
    def pipeline() -> dict[str, Any]:
        a = make.submit(1)
        reader = read_quoted.submit(quote(a))
        return {"reader": outcome(reader), "kind": outcome(consume.submit(quote(a)))}

    seen = run(pipeline)
    if kind == "dask":  # a quoted future does not survive the trip to a worker either
        assert seen == run(pipeline, plain_dask=True)
        return
    assert seen["reader"] == 3  # the quoted future's result was kept for the reader
    assert seen["kind"] == "quote" or seen["kind"].endswith("Future")


# -- 5. failures, retries, **kwargs and lineage behave alike --------------------------------


def test_a_failed_upstream_keeps_its_error_and_state(run: Callable[..., Any]) -> None:
    def pipeline() -> dict[str, Any]:
        failed = boom.submit()
        downstream = rows.submit(failed)
        downstream.wait()
        try:
            failed.result()
            error = ""
        except ValueError as exc:
            error = str(exc)
        return {
            "failed": failed.state.name,
            "downstream": downstream.state.name,
            "error": error,
        }

    assert run(pipeline) == {
        "failed": "Failed", "downstream": "NotReady", "error": "boom: no data today",
    }


def test_retries_and_kwargs_templates_reload(run: Callable[..., Any], tmp_path: Path) -> None:
    marker = tmp_path / "attempted"

    @task(retries=1, retry_delay_seconds=0)
    @checkpoint(str(tmp_path / "flaky_{n}.parquet"))
    def flaky(n: int) -> pd.DataFrame:
        if not marker.exists():
            marker.touch()
            raise RuntimeError("first attempt fails")
        return frame(n)

    @task
    @checkpoint(str(tmp_path / "kw_{region}.parquet"))
    def by_kwargs(**kwargs: Any) -> pd.DataFrame:
        return frame(len(kwargs["region"]))

    def pipeline() -> dict[str, Any]:
        retried = flaky.submit(2)
        rows.submit(retried).wait()
        kw = by_kwargs.submit(region="north")
        rows.submit(kw).wait()
        return {"retried": retried.result(), "kwargs": kw.result()}

    seen = run(pipeline)
    assert_frame_equal(seen["retried"], frame(2))
    assert_frame_equal(seen["kwargs"], frame(5))


def test_lineage_lists_the_upstream_asset(run: Callable[..., Any], tmp_path: Path) -> None:
    from prefect.context import FlowRunContext

    from prefect_ds._checkpoint.lineage import MATERIALIZED

    @task
    @checkpoint(str(tmp_path / "raw_{n}.parquet"))
    def raw(n: int) -> pd.DataFrame:
        return frame(n)

    @task
    @checkpoint(str(tmp_path / "clean_{n}.parquet"))
    def clean(df: pd.DataFrame, n: int) -> pd.DataFrame:
        return df * 2

    def pipeline() -> Any:
        clean.submit(raw.submit(1), 1).wait()
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        return context.flow_run.id

    flow_run_id = run(pipeline)
    events = asset_events(flow_run_id, 2)  # raw_1 and clean_1 materialized
    clean_events = [e for e in events
                    if e.event == MATERIALIZED and e.resource.id.endswith("clean_1.parquet")]
    assert clean_events, [e.event for e in events]
    upstream = [r.id for r in clean_events[0].related if r.role == "asset"]
    assert any(key.endswith("raw_1.parquet") for key in upstream), upstream


# -- 6. nothing held, nothing piled up -------------------------------------------------------


def test_nothing_holds_a_released_frame(run: Callable[..., Any], kind: str) -> None:
    alive: dict[str, weakref.ref[pd.DataFrame]] = {}

    @task(persist_result=True)
    def persisted() -> pd.DataFrame:
        df = frame(9, rows=1000)
        alive["persisted"] = weakref.ref(df)
        return df

    @task
    def plain() -> pd.DataFrame:
        df = frame(8, rows=1000)
        alive["failed_input"] = weakref.ref(df)
        return df

    @task
    def fails_with(df: pd.DataFrame) -> int:
        raise ValueError(f"cannot use {len(df)} rows")

    def pipeline() -> dict[str, Any]:
        saved = persisted.submit()
        rows.submit(saved).wait()
        source = plain.submit()
        failing = fails_with.submit(source)
        failing.wait()
        gc.collect()
        return {
            "alive": sorted(name for name, ref in alive.items() if ref() is not None),
            "reread": saved.result(),
            "failing": failing.state.name,
        }

    seen = run(pipeline)
    assert_frame_equal(seen["reread"], frame(9, rows=1000))
    assert seen["failing"] == "Failed"
    if kind == "ds":  # released, and neither Prefect's cache nor a traceback keeps them
        assert seen["alive"] == []
    elif kind == "threads":  # Prefect keeps every result for the flow run
        assert seen["alive"] == ["failed_input", "persisted"]


def test_records_are_dropped_when_flow_runs_end(
    run: Callable[..., Any], kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from prefect_ds._checkpoint import collisions
    from prefect_ds._release import flow_runs, targets

    @task
    @checkpoint(str(tmp_path / "rec_{n}.parquet"))
    def stored(n: int) -> pd.DataFrame:
        return frame(n)

    def pipeline() -> int:
        return len([f.result() for f in stored.map(range(5))])

    def counts() -> tuple[int, int, int]:
        return targets.count(), collisions.count(), flow_runs.watched()

    def settled() -> tuple[int, int, int]:
        """The counts once Prefect has let go of the finished runs' contexts (its events
        worker holds a snapshot of each until the event is sent)."""
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=30)
        gc.collect()
        return counts()

    def direct() -> int:  # a task called directly, and the bare checkpointed function
        return len(stored(1)) + len(stored.fn(2))

    for _ in range(7):
        assert run(pipeline) == 5
    assert run(direct) == 6
    # Seven runs of five checkpointed calls and one of two: kept, they would be 36
    # targets and 36 claims of 8 flow runs. What may remain is the most recent flow
    # runs' (a service thread that last ran on behalf of one still holds a copy of its
    # context until it runs something else): a bound, not a pile.
    target_count, claim_count, watched = settled()
    assert target_count <= 20 and claim_count <= 20 and watched <= 4, settled()
    if kind == "dask":  # the worker was told the flow runs ended
        client = request.getfixturevalue("cluster")
        import distributed

        with distributed.Client(client.scheduler_address) as c:
            on_workers = c.run(_worker_counts)
        assert all(value == (0, 0, 0) for value in on_workers.values()), on_workers


def _worker_counts() -> tuple[int, int, int]:
    from prefect_ds._checkpoint import collisions
    from prefect_ds._release import flow_runs, targets

    return targets.count(), collisions.count(), flow_runs.watched()
