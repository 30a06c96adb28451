"""Per-task time of a mapped flow on threads, on prefect-dask's runner and on ours.

Each cell maps one task over ``calls`` ids inside a flow and times the *mapped phase*
only (from ``.map`` to the last result, measured inside the flow, so Prefect's own
per-flow cost stays out), divided by the number of calls. Workloads:

* ``trivial``: a task returning its argument (no result persisted, no cache);
* ``frame cold``: a checkpointed task building a ``--rows``-row frame, no target
  present, so every call computes and writes Parquet;
* ``frame warm``: the same flow again, every target present, so every call loads.

Runners: ``threads`` (``DSTaskRunner`` in this process), ``prefect-dask``
(``prefect_dask.DaskTaskRunner``) and ``ours`` (``prefect_ds.dask.DSDaskTaskRunner``), the
two Dask ones on one ``distributed.LocalCluster`` with two worker processes of one
thread each on 127.0.0.1, against one Prefect server (``PREFECT_API_URL`` set, as the
README advises). Runners alternate within each repeat, so background load hits all
alike; the figures are medians of ``--repeat`` runs. The load average is printed and
recorded: the machine may be shared.

Targets: ours at least 3x faster per task than prefect-dask's runner, and within 5x of
the thread runner.

Run: ``.venv/bin/python benchmarks/scale.py [--calls 50 500] [--rows 20000] [--repeat 3]``
(500 calls take several minutes on prefect-dask's runner). ``--small-ca`` points
``PREFECT_API_SSL_CERT_FILE`` at a one-certificate bundle, as the README advises for a
plain-http API, to show what that alone does.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from common import record
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner

from prefect_ds import DSTaskRunner, checkpoint_task

RUNNERS = ("threads", "prefect-dask", "ours")
WORKLOADS = ("trivial", "frame cold", "frame warm")


@task(cache_policy=NO_CACHE, persist_result=False)
def trivial(i: int) -> int:
    return i


def frame_task(root: str, rows: int) -> Any:
    @checkpoint_task(root + "/part_{i}.parquet")
    def part(i: int) -> pd.DataFrame:
        rng = np.random.default_rng(i)
        return pd.DataFrame({"i": i, "x": rng.normal(size=rows), "n": np.arange(rows)})

    return part


def mapped(mapped_task: Any, runner: TaskRunner[Any]) -> Any:
    """A flow returning the seconds of its mapped phase: submit every call, wait for
    every result."""

    @flow(task_runner=runner)
    def phase(calls: int) -> float:
        start = time.perf_counter()
        results = mapped_task.map(range(calls)).result()
        seconds = time.perf_counter() - start
        if len(results) != calls:
            raise AssertionError(f"{len(results)} results, expected {calls}")
        return seconds

    return phase


def small_ca_bundle() -> str:
    """A PEM file with the first certificate of certifi's bundle: valid, and quick to load."""
    import certifi

    text = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    first = text[text.index("-----BEGIN CERTIFICATE-----"):text.index(end) + len(end)]
    path = Path(tempfile.mkdtemp(prefix="prefect-ds-ca-")) / "one.pem"
    path.write_text(first + "\n")
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small-ca", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if args.small_ca:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = small_ca_bundle()

    import distributed
    from prefect.testing.utilities import prefect_test_harness
    from prefect_dask import DaskTaskRunner

    from prefect_ds.dask import DSDaskTaskRunner

    print(f"load average at start: {os.getloadavg()}", flush=True)
    seconds: dict[tuple[int, str, str], list[float]] = {}
    with (
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
        address = cluster.scheduler_address
        runners: dict[str, Callable[[], TaskRunner[Any]]] = {
            "threads": DSTaskRunner,
            "prefect-dask": lambda: DaskTaskRunner(address=address),
            "ours": lambda: DSDaskTaskRunner(address=address),
        }
        # Warm-up: workers import prefect/pandas once, the server settles.
        for make in runners.values():
            mapped(frame_task(f"{tmp}/warmup", 100), make())(4)
        for repeat in range(args.repeat):
            for calls in args.calls:
                order = RUNNERS if repeat % 2 == 0 else RUNNERS[::-1]
                for name in order:
                    part = frame_task(f"{tmp}/{name}-{uuid.uuid4().hex[:8]}", args.rows)
                    for workload, fn in (("trivial", trivial), ("frame cold", part),
                                         ("frame warm", part)):
                        took = mapped(fn, runners[name]())(calls)
                        seconds.setdefault((calls, workload, name), []).append(took)
                        print(f"  {calls:4} {workload:10} {name:12} {took:7.2f} s "
                              f"(load {os.getloadavg()[0]:.1f})", flush=True)
        load = os.getloadavg()
    print(f"load average at end: {load}")
    print()
    print(f"Mapped phase, ms per task (median of {args.repeat}); frames of {args.rows:,} "
          "rows; Dask: LocalCluster, 2 worker processes x 1 thread")
    print()
    print("| calls | workload | threads | prefect-dask | ours | prefect-dask / ours "
          "| ours / threads |")
    print("|---|---|---|---|---|---|---|")
    figures: dict[str, Any] = {}
    for calls in args.calls:
        for workload in WORKLOADS:
            ms = {name: 1000 * statistics.median(seconds[(calls, workload, name)]) / calls
                  for name in RUNNERS}
            speedup = ms["prefect-dask"] / ms["ours"]
            vs_threads = ms["ours"] / ms["threads"]
            print(f"| {calls} | {workload} | {ms['threads']:.1f} | {ms['prefect-dask']:.1f} | "
                  f"{ms['ours']:.1f} | {speedup:.1f}x | {vs_threads:.1f}x |")
            figures[f"{workload} {calls}"] = {
                **{f"{name.replace('-', '_')}_ms": round(v, 1) for name, v in ms.items()},
                "prefect_dask_over_ours": round(speedup, 2),
                "ours_over_threads": round(vs_threads, 2),
            }
    if not args.no_record:
        record("scale", figures, calls=args.calls, rows=args.rows, repeat=args.repeat,
               small_ca=args.small_ca, load_average_end=[round(x, 1) for x in load])


if __name__ == "__main__":
    main()
