"""Checkpointed tasks on a real Dask cluster, and DSDaskTaskRunner's memory release.

The cluster is ``distributed.LocalCluster`` with two worker *processes* on 127.0.0.1,
started after the S3 test server, so the workers inherit its AWS environment variables.
Task functions travel to the workers by cloudpickle, as in production.
"""

from __future__ import annotations

import os
import sys
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
    # Functions defined in this module go to the workers by value (the workers do not
    # have the tests directory on their path).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as local:
            yield local
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


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
