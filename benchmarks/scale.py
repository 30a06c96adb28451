"""The 50-call mapped flow on threads and on a Dask cluster, local and S3 targets.

One checkpointed task (it builds a frame of ``--rows`` rows) mapped over ``--calls``
ids, run:

* on threads: ``DSTaskRunner`` in this process;
* on Dask: ``DSDaskTaskRunner`` on a ``distributed.LocalCluster`` with two worker
  processes (one thread each) on 127.0.0.1;

with targets in a local directory and on S3 (moto's server on 127.0.0.1, as in the
tests), each cold (no target present: every call computes and writes) and warm (every
target present: every call loads). Each cell is the wall time of one whole flow run,
Prefect's own per-flow cost (~1 s) included; the medians of ``--repeat`` runs. Runs of
the two runners alternate, so background load hits both alike.

Run: ``.venv/bin/python benchmarks/scale.py [--calls 50] [--rows 20000] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-ds-bench-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
import pandas as pd
from prefect import flow
from prefect.task_runners import TaskRunner
from support.s3 import MotoServer, aws_env, create_bucket, patched_environ

from prefect_ds import DSTaskRunner, checkpoint_task


def build_flow(root: str, rows: int) -> Any:
    """A fresh mapped flow whose targets live under ``root``."""

    @checkpoint_task(root + "/part_{i}.parquet")
    def part(i: int, rows: int) -> pd.DataFrame:
        rng = np.random.default_rng(i)
        return pd.DataFrame({"i": i, "x": rng.normal(size=rows), "n": np.arange(rows)})

    @flow
    def mapped(calls: int, rows: int) -> int:
        return sum(len(df) for df in part.map(range(calls), rows=rows).result())

    return mapped


def timed(run: Callable[[], int], expected: int) -> float:
    start = time.perf_counter()
    total = run()
    seconds = time.perf_counter() - start
    if total != expected:
        raise AssertionError(f"flow returned {total} rows, expected {expected}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)

    import distributed
    from prefect.testing.utilities import prefect_test_harness

    from prefect_ds.dask import DSDaskTaskRunner

    expected = args.calls * args.rows
    results: dict[tuple[str, str, str], list[float]] = {}
    with (
        MotoServer() as s3,
        patched_environ(aws_env(s3.endpoint)),  # set before the workers start
        prefect_test_harness(server_startup_timeout=120),
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        tempfile.TemporaryDirectory(prefix="prefect-ds-scale-") as tmp,
    ):
        bucket = create_bucket(s3.endpoint)
        runners: dict[str, Callable[[], TaskRunner[Any]]] = {
            "threads": DSTaskRunner,
            "dask": lambda: DSDaskTaskRunner(address=cluster.scheduler_address),
        }
        # Warm-up: workers import prefect/pandas once, the harness settles.
        for make_runner in runners.values():
            build_flow(f"{tmp}/warmup", 100).with_options(task_runner=make_runner())(4, 100)
        for _ in range(args.repeat):
            for storage in ("local", "s3"):
                for name, make_runner in runners.items():
                    run_id = uuid.uuid4().hex[:8]
                    if storage == "local":
                        root = f"{tmp}/{name}-{run_id}"
                    else:
                        root = f"s3://{bucket}/{name}-{run_id}"
                    mapped = build_flow(root, args.rows).with_options(task_runner=make_runner())
                    for phase in ("cold", "warm"):
                        seconds = timed(lambda m=mapped: m(args.calls, args.rows), expected)
                        results.setdefault((storage, phase, name), []).append(seconds)
                        print(f"  {storage:5} {phase} {name:7} {seconds:6.2f} s", flush=True)

    print()
    print(f"{args.calls} checkpointed calls, {args.rows:,} rows each; seconds per flow run")
    print("(median of", args.repeat, "); Dask: LocalCluster, 2 worker processes x 1 thread")
    print()
    print("| targets | phase | threads (DSTaskRunner) | Dask (DSDaskTaskRunner) | Dask / threads |")
    print("|---|---|---|---|---|")
    for storage in ("local", "s3"):
        for phase in ("cold", "warm"):
            threads = statistics.median(results[(storage, phase, "threads")])
            dask = statistics.median(results[(storage, phase, "dask")])
            print(
                f"| {storage} | {phase} | {threads:.2f} | {dask:.2f} | {dask / threads:.2f}x |"
            )


if __name__ == "__main__":
    main()
