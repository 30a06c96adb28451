"""Dask DataFrames as checkpointed datasets, on a real LocalCluster and moto's S3 server.

The large test gives two worker processes a ``memory_limit`` and has a checkpointed task
return a Dask DataFrame larger than those limits together (``TIMES`` below): the workers
write it to S3 partition by partition and it is committed; a second run loads it lazily
and computes an aggregate. A sampler thread in every worker records its peak memory (RSS),
which must stay under the limit, and how many keys it spilled to disk (Dask's way of
staying under); the figures are printed, and recorded in
benchmarks/results/larger_than_memory.json if PREFECT_DS_DATASET_RECORD is set.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import distributed
import numpy as np
import pandas as pd
import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from support.datasets import register, unregister

from prefect_ds import checkpoint_task, get_format
from prefect_ds.dask import DSDaskTaskRunner

dd = pytest.importorskip("dask.dataframe")

WORKERS = 2
# A worker that has imported dask, pandas, pyarrow and s3fs holds ~170 MiB before any data
# (more with Prefect and polars); with a 400 MiB limit Dask paused the workers at 80% with
# nothing left to spill, and the read-back stalled. 1 GiB leaves the data a real share
# while the dataset still dwarfs the cluster.
LIMIT_MB = 1024
# The dataset is TIMES x the sum of the workers' limits: 1 by default, so the test runs
# in minutes on a small shared machine; PREFECT_DS_DATASET_TIMES=4 for the full check.
TIMES = float(os.environ.get("PREFECT_DS_DATASET_TIMES", "1"))
DATASET_MB = int(TIMES * WORKERS * LIMIT_MB)
PART_MB = 8
PARTS = DATASET_MB // PART_MB
ROWS = PART_MB * 2**20 // 24  # three 8-byte columns
KEYS = 4


@pytest.fixture(scope="module", autouse=True)
def _dataset_format() -> Iterator[None]:
    registered = register()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if registered:
        unregister()


def make_part(i: int) -> pd.DataFrame:
    """Partition ``i``: ``ROWS`` rows, all of key ``i % KEYS`` (so one file each)."""
    a = np.arange(ROWS, dtype=np.int64) % 1000
    return pd.DataFrame({"key": np.full(ROWS, i % KEYS, dtype=np.int64), "a": a,
                         "b": a * 0.5})


def expected_sums() -> dict[int, int]:
    per_part = int((np.arange(ROWS, dtype=np.int64) % 1000).sum())
    return {k: per_part * len(range(k, PARTS, KEYS)) for k in range(KEYS)}


def _start_sampler(dask_worker: Any) -> None:
    """Sample this process's memory every 20 ms (a worker's, or the client's own)."""
    import psutil

    proc = psutil.Process()
    dask_worker._ds_start = dask_worker._ds_peak = proc.memory_info().rss
    dask_worker._ds_spilled = 0
    dask_worker._ds_stop = threading.Event()

    def sample() -> None:
        while not dask_worker._ds_stop.wait(0.02):
            dask_worker._ds_peak = max(dask_worker._ds_peak, proc.memory_info().rss)
            slow = getattr(dask_worker.data, "slow", {})
            dask_worker._ds_spilled = max(dask_worker._ds_spilled, len(slow))

    threading.Thread(target=sample, daemon=True).start()


def _stop_sampler(dask_worker: Any) -> dict[str, float]:
    dask_worker._ds_stop.set()
    return {"start_mb": dask_worker._ds_start / 2**20, "peak_mb": dask_worker._ds_peak / 2**20,
            "spilled_keys": dask_worker._ds_spilled}


@pytest.mark.slow  # writes and reads back a dataset larger than the cluster: minutes
@pytest.mark.skipif("PREFECT_DS_DATASET_TIMES" not in os.environ,
                    reason="opt-in: minutes; set PREFECT_DS_DATASET_TIMES=4 to run it")
def test_larger_than_memory_dataset_on_s3(prefect_harness: None, s3_server: Any,
                                          s3_bucket: str, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()

    @checkpoint_task(f"{s3_bucket}/big/{{name}}/", write_kwargs={"partition_cols": ["key"]})
    def build(name: str) -> Any:
        (markers / f"{len(os.listdir(markers))}").touch()
        return dd.from_map(make_part, range(PARTS))

    @task(cache_policy=NO_CACHE, persist_result=False)
    def aggregate(frame: Any) -> dict[int, int]:
        sums = frame.groupby("key")["a"].sum().compute()
        return {int(k): int(v) for k, v in sums.items()}

    @task(cache_policy=NO_CACHE, persist_result=False)
    def one_key(frame: Any) -> int:
        # column selection and a partition filter go into the Parquet reader
        return int(frame[frame["key"] == 1]["a"].sum().compute())

    @flow
    def first() -> tuple[Any, int]:
        frame = build("sales")
        return frame, one_key(frame)

    @flow
    def second() -> tuple[Any, dict[int, int]]:
        frame = build("sales")
        return frame, aggregate(frame)

    with distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                  memory_limit=f"{LIMIT_MB}MiB", host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        before = sorted(client.scheduler_info()["workers"])
        client.run(_start_sampler)
        here = types.SimpleNamespace(data={})  # the client process, sampled the same way
        _start_sampler(here)
        written, key1 = first()
        assert len(os.listdir(markers)) == 1
        assert isinstance(written, dd.DataFrame)  # the stored dataset, lazily, not the graph
        assert key1 == expected_sums()[1]
        loaded, sums = second()
        assert len(os.listdir(markers)) == 1  # a hit: loaded, not recomputed
        assert isinstance(loaded, dd.DataFrame)
        assert sums == expected_sums()
        memory = client.run(_stop_sampler)
        own = _stop_sampler(here)
        after = sorted(client.scheduler_info()["workers"])

    assert after == before  # no worker was killed and restarted
    location = f"{s3_bucket}/big/sales/"
    info = get_format("dataset").target_info(location)
    assert info.committed and info.rows == PARTS * ROWS and info.partitions == KEYS
    peaks = [m["peak_mb"] for m in memory.values()]
    figures = {
        "workers": WORKERS, "memory_limit_mb": LIMIT_MB, "dataset_mb_in_memory": DATASET_MB,
        "partitions": PARTS, "stored_mb": round((info.bytes or 0) / 2**20, 1),
        "worker_peak_mb": {"min": round(min(peaks), 1), "max": round(max(peaks), 1)},
        "spilled_keys": max(m["spilled_keys"] for m in memory.values()),
        "client_growth_mb": round(own["peak_mb"] - own["start_mb"], 1),
        "per_worker": {addr: {k: round(v, 1) for k, v in m.items()}
                       for addr, m in memory.items()},
    }
    print(json.dumps(figures, indent=2))
    if os.environ.get("PREFECT_DS_DATASET_RECORD"):  # for the figures README quotes
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
        from common import record

        record("larger_than_memory", figures, times=TIMES)
    # nothing was gathered to the client: it grew by less than one worker's limit
    assert own["peak_mb"] - own["start_mb"] < LIMIT_MB, own
    for address, m in memory.items():  # spilling to disk is how Dask stays under it
        assert m["peak_mb"] < LIMIT_MB, f"{address} peaked at {m['peak_mb']:.0f} MiB"


def test_ds_dask_task_runner_checkpoints_a_dask_frame(prefect_harness: None,
                                                       tmp_path: Path) -> None:
    """With DSDaskTaskRunner the task runs on a worker, which writes through the cluster."""
    markers = tmp_path / "markers"
    markers.mkdir()
    location = f"{tmp_path}/small/{{n}}/"

    @checkpoint_task(location, write_kwargs={"partition_cols": ["key"]})
    def build(n: int) -> Any:
        (markers / f"{len(os.listdir(markers))}").touch()
        frame = pd.DataFrame({"key": np.arange(n) % 3, "v": np.arange(n, dtype=np.float64)})
        return dd.from_pandas(frame, npartitions=5)

    @task(cache_policy=NO_CACHE, persist_result=False)
    def total(frame: Any) -> float:
        return float(frame["v"].sum().compute())

    @flow
    def pipeline(n: int) -> float:
        return total.submit(build.submit(n)).result()

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        runner = DSDaskTaskRunner(address=cluster.scheduler_address)
        assert pipeline.with_options(task_runner=runner)(1000) == float(sum(range(1000)))
        assert pipeline.with_options(task_runner=runner)(1000) == float(sum(range(1000)))
    assert len(os.listdir(markers)) == 1
    stored = get_format("dataset").read(location.format(n=1000), engine="pandas")
    assert sorted(stored["v"]) == list(np.arange(1000, dtype=np.float64))
    # the files the cluster wrote read as Arrow, and lazily with polars, without Dask
    table = get_format("dataset").read(location.format(n=1000), kind="arrow",
                                       filters=[("key", "==", 1)])
    assert sorted(table.column("v").to_pylist()) == list(range(1, 1000, 3))
    pl = pytest.importorskip("polars", reason="opt-in: the [polars] extra is not installed")
    lazy = get_format("dataset").read(location.format(n=1000), kind="polars.LazyFrame")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.filter(pl.col("key") == 2).select(pl.col("v").sum()).collect().item() == float(
        sum(range(2, 1000, 3)))
