"""Checkpointed tasks on a real Dask cluster, and DSDaskTaskRunner's memory release.

The cluster is ``distributed.LocalCluster`` with two worker *processes* on 127.0.0.1,
started after the S3 test server, so the workers inherit its AWS environment variables.
Task functions travel to the workers by cloudpickle, as in production.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cloudpickle
import distributed
import numpy as np
import pandas as pd
import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect_dask import DaskTaskRunner
from support import count
from support.clusters import local_cluster

from prefect_ds import (
    PandasResultHandler,
    ReleasedResult,
    ResultReleasedError,
    checkpoint_task,
)
from prefect_ds.dask import DSDaskTaskRunner

CALLS = count(12, 50)  # mapped calls per flow run
FRAME_ROWS = 10_000_000  # one float64 column: 80 MB per frame
FRAME_MB = FRAME_ROWS * 8 / 2**20


@pytest.fixture(scope="module")
def cluster(prefect_harness: None, s3_server: Any) -> Iterator[distributed.LocalCluster]:
    with local_cluster(__name__, n_workers=2, threads_per_worker=1) as local:
        yield local


def test_checkpointed_tasks_pickle(tmp_path: Any) -> None:
    """Dask ships task functions to workers with cloudpickle, checkpoint wrapper included."""

    @checkpoint_task(f"{tmp_path}/p_{{i}}.parquet")
    def part(i: int) -> pd.DataFrame:
        return pd.DataFrame({"i": [i]})

    copy = cloudpickle.loads(cloudpickle.dumps(part))
    pd.testing.assert_frame_equal(copy.fn(3), pd.DataFrame({"i": [3]}))
    assert os.path.exists(f"{tmp_path}/p_3.parquet")
    pd.testing.assert_frame_equal(copy.fn(3), pd.DataFrame({"i": [3]}))  # now a hit


def test_workers_see_the_s3_environment(
    cluster: distributed.LocalCluster, s3_server: Any
) -> None:
    with distributed.Client(cluster) as client:
        seen = client.run(lambda: os.environ.get("AWS_ENDPOINT_URL"))
    assert set(seen.values()) == {s3_server.endpoint}


def computed(markers: str) -> list[int]:
    """Which calls ran their body (one marker file per computation)."""
    return sorted(int(name.split("-")[0]) for name in os.listdir(markers))


@pytest.mark.slow  # three flow runs of CALLS Dask-distributed Prefect task runs each
@pytest.mark.parametrize("where", ["local", "s3"])
def test_mapped_checkpoints_on_cluster(
    cluster: distributed.LocalCluster, tmp_path: Any, where: str, request: pytest.FixtureRequest
) -> None:
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    markers = str(tmp_path / "markers")
    os.makedirs(markers)

    @checkpoint_task(f"{base}/squares/{{i}}.parquet")
    def square(i: int, markers: str) -> pd.DataFrame:
        with open(os.path.join(markers, f"{i}-{uuid.uuid4().hex}"), "w"):
            pass
        return pd.DataFrame({"i": [i], "square": [i * i]})

    @flow
    def squares(n: int) -> list[int]:
        futures = square.map(range(n), markers=markers)
        return [int(f.result()["square"].iloc[0]) for f in futures]

    def run() -> list[int]:
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        return squares.with_options(task_runner=runner)(CALLS)

    expected = [i * i for i in range(CALLS)]
    assert run() == expected
    assert computed(markers) == list(range(CALLS))

    assert run() == expected  # every target present: nothing computed
    assert computed(markers) == list(range(CALLS))

    targets = PandasResultHandler(f"{base}/squares/{{i}}.parquet")
    deleted = (3, CALLS // 2, CALLS - 1)
    for i in deleted:
        targets.delete(i=i)
    assert run() == expected
    assert computed(markers) == sorted([*range(CALLS), *deleted])


def _held(client: distributed.Client) -> int:
    """Keys in the workers' memory (Dask's own bookkeeping)."""
    return sum(client.run(lambda dask_worker: len(dask_worker.data)).values())


def _rss_mb(client: distributed.Client) -> float:
    import psutil

    return sum(client.run(lambda: psutil.Process().memory_info().rss).values()) / 2**20


@task(cache_policy=NO_CACHE, persist_result=False)
def make(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.ones(rows)})


@task(cache_policy=NO_CACHE, persist_result=False)
def step(df: pd.DataFrame) -> pd.DataFrame:
    return df + 1


@flow
def chain(steps: int, rows: int) -> dict[str, float]:
    """A chain of large frames whose futures the flow keeps, as named variables would."""
    client = FlowRunContext.get().task_runner.client  # type: ignore[union-attr]
    before = _rss_mb(client)
    futures = [make.submit(rows)]
    for _ in range(steps):
        futures.append(step.submit(futures[-1]))
    futures[-1].wait()
    deadline = time.monotonic() + 30  # releases reach the workers asynchronously
    while _held(client) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    return {
        "held": _held(client),
        "grown_mb": _rss_mb(client) - before,
        "last": float(futures[-1].result()["x"].iloc[0]),
    }


def test_memory_falls_back_on_workers(cluster: distributed.LocalCluster) -> None:
    steps = 6
    plain = chain.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))(
        steps, FRAME_ROWS
    )
    released = chain.with_options(
        task_runner=DSDaskTaskRunner(address=cluster.scheduler_address)
    )(steps, FRAME_ROWS)
    assert plain["last"] == released["last"] == steps + 1  # the final result is intact
    # Plain: the flow's futures keep every frame on the workers.
    assert plain["held"] == steps + 1
    assert plain["grown_mb"] > (steps - 1) * FRAME_MB
    # Released: only the final result is left; worker memory fell back.
    assert released["held"] == 1
    assert released["grown_mb"] < 2.5 * FRAME_MB, (plain, released)


def test_late_consumers_after_release(cluster: distributed.LocalCluster, tmp_path: Any) -> None:
    location = f"{tmp_path}/ck/{{rows}}.parquet"

    @checkpoint_task(location)
    def stored(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"x": np.arange(rows, dtype="float64")})

    @flow
    def late() -> dict[str, Any]:
        kept = stored.submit(5)
        gone = make.submit(5)
        first = [step.submit(kept), step.submit(gone)]
        for future in first:
            future.wait()
        deadline = time.monotonic() + 30
        while (kept.released is None or gone.released is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        out: dict[str, Any] = {"kept": repr(kept.released), "gone": gone.result()}
        out["reloaded"] = step.submit(kept).result()  # reloaded on a worker from its target
        out["kept_result"] = kept.result()  # reloaded on the client
        try:
            step.submit(gone)
        except ResultReleasedError as exc:
            out["error"] = str(exc)
        return out

    out = late.with_options(task_runner=DSDaskTaskRunner(address=cluster.scheduler_address))()
    assert "reloadable from" in out["kept"]
    assert isinstance(out["gone"], ReleasedResult) and not out["gone"].reloadable
    expected = pd.DataFrame({"x": np.arange(5, dtype="float64")})
    pd.testing.assert_frame_equal(out["kept_result"], expected)
    pd.testing.assert_frame_equal(out["reloaded"], expected + 1)
    assert "already gone" in out["error"]


# -- the fast path: what workers keep between task runs, and what Prefect still sees -------


@task(cache_policy=NO_CACHE, persist_result=False)
def where(i: int) -> dict[str, Any]:
    """Where and in what Prefect context a task run ran, and which API client it had."""
    import threading

    from prefect import get_run_logger, runtime
    from prefect.context import SyncClientContext, TaskRunContext

    get_run_logger().warning("where-%s ran", i)  # the suite logs warnings and up
    client_context = SyncClientContext.get()
    run_context = TaskRunContext.get()
    assert run_context is not None
    runs_on_client = None
    if client_context is not None:  # how many task runs this very client object served
        client = client_context.client
        runs_on_client = getattr(client, "_test_runs", 0) + 1
        client._test_runs = runs_on_client  # type: ignore[attr-defined]
    return {
        "worker": (os.getpid(), threading.get_ident()),
        "client": runs_on_client,
        "flow_run": str(runtime.flow_run.id),
        "deployment": runtime.deployment.id,
        "parameters": runtime.deployment.parameters,
        "tags": sorted(run_context.task_run.tags),
        # the Dask key: the fast path names it after the task run instead of hashing
        # the arguments (prefect-dask's pure=True)
        "untokenized": distributed.get_worker().get_current_task()
        == f"where-{run_context.task_run.id.hex}",
    }


@task(cache_policy=NO_CACHE, persist_result=False)
def broken() -> None:
    raise ValueError("broken on purpose")


@task(retries=1, retry_delay_seconds=0, cache_policy=NO_CACHE, persist_result=False)
def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        raise RuntimeError("the first try fails")
    return "second try"


def _polled(read: Any, enough: Any, seconds: float = 60) -> Any:
    """Read until ``enough(result)``: states, logs and events reach the server as
    events, in batches."""
    deadline = time.monotonic() + seconds
    while True:
        got = read()
        if enough(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def _task_runs(flow_run_id: Any, count: int) -> dict[str, list[Any]]:
    """The server's task runs of a flow run by task name, once ``count`` are final."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def read() -> list[Any]:
        with get_client(sync_client=True) as client:
            return client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[flow_run_id])), limit=200)

    runs = _polled(read, lambda found: sum(
        r.state is not None and r.state.is_final() for r in found) >= count)
    by_name: dict[str, list[Any]] = {}
    for run in runs:
        by_name.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
    return by_name


def _worker_clients(client: distributed.Client) -> dict[str, Any]:
    from prefect_ds._dask.worker import PLUGIN_NAME

    return client.run(lambda dask_worker: dask_worker.plugins[PLUGIN_NAME].open_clients)


def _teardown_closes(dask_worker: Any) -> tuple[int, bool]:
    """Runs on a worker: tear the plugin down as a worker shutdown does."""
    from prefect_ds._dask.worker import PLUGIN_NAME

    plugin = dask_worker.plugins[PLUGIN_NAME]
    clients = [entry.context.client for entry in plugin._clients.values()]
    plugin.teardown(dask_worker)
    return len(clients), all(c._closed for c in clients) and plugin.open_clients == 0


def test_kept_worker_state_keeps_everything_prefect_shows(
    cluster: distributed.LocalCluster, tmp_path: Any
) -> None:
    """One flow on the cluster: states (Completed, Failed, a retry), logs, events,
    deployment and flow-run context and tags reach the server and the task; each worker
    thread reuses one API client; a second run shows every checkpoint as Cached; the
    plugin closes the clients at teardown."""
    from prefect import tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    calls = 8
    deployment = uuid.uuid4()

    @checkpoint_task(f"{tmp_path}/parts/{{i}}.parquet")
    def part(i: int) -> pd.DataFrame:
        return pd.DataFrame({"i": [i]})

    @flow
    def visible(marker: str) -> dict[str, Any]:
        import prefect.context  # the flow travels to the workers: no ContextVar in it

        # what the engine sets for a deployment's flow run
        tokens = (prefect.context._deployment_id.set(deployment),
                  prefect.context._deployment_parameters.set({"region": "EU"}))
        try:
            with tags("kept-state"):
                seen = where.map(range(calls))
            parts = part.map(range(calls))
            bad = broken.submit()
            retried = flaky.submit(marker)
            bad.wait()
            context = FlowRunContext.get()
            assert context is not None and context.flow_run is not None
            return {
                "flow_run": context.flow_run.id,
                "seen": [f.result() for f in seen],
                "parts": [int(f.result()["i"].iloc[0]) for f in parts],
                "retried": retried.result(),
                "where_ids": [f.task_run_id for f in seen],
            }
        finally:
            prefect.context._deployment_parameters.reset(tokens[1])
            prefect.context._deployment_id.reset(tokens[0])

    @flow
    def warm() -> Any:
        part.map(range(calls)).wait()
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        return context.flow_run.id

    def runner() -> DSDaskTaskRunner:
        return DSDaskTaskRunner(address=cluster.scheduler_address)

    out = visible.with_options(task_runner=runner())(str(tmp_path / "flaky-marker"))
    flow_run = out["flow_run"]
    assert out["parts"] == list(range(calls)) and out["retried"] == "second try"

    # the context that reached every task on the workers
    for seen in out["seen"]:
        assert seen["flow_run"] == str(flow_run)
        assert seen["deployment"] == str(deployment)
        assert seen["parameters"] == {"region": "EU"}
        assert "kept-state" in seen["tags"]
        assert seen["client"] is not None and seen["untokenized"]
    # one API client per worker thread, kept across its task runs: each run on a thread
    # finds the count its predecessor left on the client (earlier tests' runs included)
    clients: dict[Any, list[int]] = {}
    for seen in out["seen"]:
        clients.setdefault(tuple(seen["worker"]), []).append(seen["client"])
    for counts in clients.values():
        assert sorted(counts) == list(range(min(counts), min(counts) + len(counts))), clients
    assert len(clients) < calls  # some thread ran several task runs
    assert len({pid for pid, _ in clients}) == 2  # on both worker processes

    # every state on the server
    runs = _task_runs(flow_run, 2 * calls + 2)
    assert {r.state.name for r in runs["where"]} == {"Completed"}
    assert len(runs["where"]) == calls
    assert [r.state.name for r in runs["part"]] == ["Completed"] * calls
    assert [r.state.name for r in runs["broken"]] == ["Failed"]
    assert "broken on purpose" in (runs["broken"][0].state.message or "")
    [retry] = runs["flaky"]
    assert retry.state.name == "Completed" and retry.run_count == 2

    # logs and events from the workers
    def logs() -> list[Any]:
        with get_client(sync_client=True) as client:
            return client.read_logs(log_filter=LogFilter(
                task_run_id=LogFilterTaskRunId(any_=out["where_ids"])), limit=200)

    got = _polled(logs, lambda found: sum("ran" in x.message for x in found) >= calls)
    assert sorted(x.message for x in got if x.message.startswith("where-")) == sorted(
        f"where-{i} ran" for i in range(calls))

    def events() -> list[Any]:
        with get_client(sync_client=True) as client:
            return list(client.read_events(EventFilter(
                event=EventNameFilter(name=["prefect.task-run.Completed"]),
                related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run}"]),
            ), limit=50).events)

    completed = _polled(events, lambda found: len(found) >= 2 * calls + 1)
    assert len(completed) == 2 * calls + 1  # where, part, and flaky's second try

    # the warm run: every checkpoint loads, and shows so
    warm_run = warm.with_options(task_runner=runner())()
    assert [r.state.name for r in _task_runs(warm_run, calls)["part"]] == ["Cached"] * calls

    # the kept clients are closed when the worker lets the plugin go
    with distributed.Client(cluster) as client:
        assert all(n >= 1 for n in _worker_clients(client).values())
        closed = client.run(_teardown_closes)
        assert all(n >= 1 and ok for n, ok in closed.values()), closed
        from prefect_ds._dask.worker import PLUGIN_NAME

        client.unregister_worker_plugin(PLUGIN_NAME)


def test_missing_internals_fall_back_with_one_warning(
    cluster: distributed.LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where an internal the fast path needs is gone, task runs go the prefect-dask way:
    one warning, and the same states."""
    from prefect_ds._dask import internals

    monkeypatch.setattr(internals, "missing", lambda: ("prefect.context.Moved.__var__",))
    monkeypatch.setattr(internals, "_warned", type(internals._warned)())

    @flow
    def fallback() -> list[Any]:
        ok = where.map(range(2))
        bad = broken.submit()
        ok.wait()
        bad.wait()
        return [*(f.state.name for f in ok), bad.state.name,
                *(f.result()["untokenized"] for f in ok)]

    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            got = fallback.with_options(
                task_runner=DSDaskTaskRunner(address=cluster.scheduler_address))()
            # prefect-dask's path: its client's submit, with a tokenized key
            assert got == ["Completed", "Completed", "Failed", False, False]
    said = [w for w in caught if "prefect.context.Moved.__var__" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]


@task(cache_policy=NO_CACHE, persist_result=False)
def double(i: int) -> int:
    return 2 * i


def test_a_worker_without_the_plugin_runs_tasks_as_prefect_dask_does(
    prefect_harness: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a worker that has the plugin, ``run_task`` gives Prefect the serialized
    settings back, so the run is prefect-dask's own; it says so once per process."""
    import logging
    import threading

    from prefect_ds._dask import worker
    from prefect_ds._dask.submit import serialized_settings

    monkeypatch.setattr(worker, "_warned", threading.Event())
    key, payload, _ = serialized_settings()
    with caplog.at_level(logging.WARNING, logger="prefect_ds.dask"):
        states = [
            worker.run_task(double, key, payload, task_run_id=uuid.uuid4(),
                            parameters={"i": i}, wait_for=None, return_type="state",
                            dependencies={}, context={})
            for i in (2, 3)
        ]
    assert [s.name for s in states] == ["Completed", "Completed"]
    assert [s.result() for s in states] == [4, 6]
    said = [r for r in caplog.records if worker.PLUGIN_NAME in r.getMessage()]
    assert len(said) == 1


SHARED_SERVER_FLOW = """
import asyncio, json, sys
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect_ds.dask import DSDaskTaskRunner

@task
def double(x: int) -> int:
    return 2 * x

@flow(task_runner=DSDaskTaskRunner(cluster_kwargs={
    "n_workers": 2, "threads_per_worker": 1, "processes": True,
    "dashboard_address": None}))
def doubled() -> tuple[str, list[int]]:
    from prefect.runtime import flow_run
    return flow_run.id, [f.result() for f in double.map(range(6))]

async def task_runs(flow_run_id: str) -> int:
    async with get_client() as client:
        found = await client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
        return len(found)

if __name__ == "__main__":
    run_id, values = doubled()
    print(json.dumps({"values": values, "task_runs": asyncio.run(task_runs(run_id))}))
"""


def test_local_workers_report_to_the_flow_s_temporary_server(tmp_path: Any) -> None:
    """Without PREFECT_API_URL a flow runs on a temporary server its process starts; the
    workers of a cluster on this machine report there (the task runs are the flow's, in
    its API) instead of each starting a temporary server of its own, which prefect-dask's
    runner does and which outlives the cluster."""
    import json
    import subprocess
    import sys

    script = tmp_path / "flow.py"
    script.write_text(SHARED_SERVER_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"  # slow under load
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"values": [0, 2, 4, 6, 8, 10], "task_runs": 6}
    logs = out.stdout + out.stderr
    assert logs.count("Starting temporary server") == 1, logs[-3000:]
