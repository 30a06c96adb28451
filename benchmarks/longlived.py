"""Memory of a long-lived process: many flow runs, one process (``serve()``, a worker).

One child process runs ``--runs`` flow runs, one after the other, of a flow that maps a
checkpointed task over 20 calls and a consumer over its results, writing each run's
targets to a fresh directory (removed after the run). It reports its resident set size
(RSS) at run ``--mark`` (after warm-up) and at the last run, and how many per-run
records prefect-ds still holds (checkpoint targets by task run, collision claims,
watched flow runs) after the last run. Target: RSS at the last run within 5% of RSS at
the mark, and no records left. Each runner (Prefect's ``ThreadPoolTaskRunner`` and
``DSTaskRunner``) runs in its own child.

The child talks to a local Prefect server this script starts (on 127.0.0.1) and stops,
so the server's own memory is not counted.

Run: ``.venv/bin/python benchmarks/longlived.py [--runs 1000] [--mark 100]
[--runners threads,ds]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import record
from memory import rss_mb, start_server

CALLS = 20


def child(runner_name: str, runs: int, mark: int) -> dict[str, Any]:
    import pandas as pd
    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    from prefect_ds import DSTaskRunner, checkpoint_task
    from prefect_ds._checkpoint import collisions
    from prefect_ds._release import flow_runs, targets

    root = Path(tempfile.mkdtemp(prefix="prefect-ds-longlived-"))

    @checkpoint_task(str(root / "{run}" / "part_{i}.parquet"))
    def part(run: str, i: int) -> pd.DataFrame:
        return pd.DataFrame({"i": [i] * 1000, "x": range(1000)})

    @task
    def size(df: pd.DataFrame) -> int:
        return len(df)

    runner = DSTaskRunner if runner_name == "ds" else ThreadPoolTaskRunner

    @flow(task_runner=runner(max_workers=4))
    def pipeline(run: str) -> int:
        parts = part.map(run, range(CALLS))
        return sum(size.map(parts).result())

    samples: dict[int, float] = {}
    started = time.perf_counter()
    for index in range(1, runs + 1):
        name = f"run{index}"
        (root / name).mkdir()
        assert pipeline(name) == CALLS * 1000
        shutil.rmtree(root / name)
        if index in (mark, runs):
            gc.collect()
            samples[index] = rss_mb()
    elapsed = time.perf_counter() - started
    gc.collect()
    shutil.rmtree(root, ignore_errors=True)
    return {
        "runner": runner_name,
        "runs": runs,
        "mark": mark,
        "rss_mark_mb": samples[mark],
        "rss_last_mb": samples[runs],
        "seconds_per_run": elapsed / runs,
        "records": {
            "targets": targets.count(),
            "claims": collisions.count(),
            "watched_flow_runs": flow_runs.watched(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--mark", type=int, default=100)
    parser.add_argument("--runners", default="threads,ds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.mark < args.runs:
        parser.error("--mark must be between 0 and --runs")
    if args.child:
        print(json.dumps(child(args.child, args.runs, args.mark)))
        return

    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-ds-bench-home-"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    server, url = start_server(env)
    env["PREFECT_API_URL"] = url
    figures: dict[str, Any] = {"load_average": os.getloadavg()[0]}
    try:
        print(f"{'runner':8} {'runs':>6} {'RSS@mark':>10} {'RSS@last':>10} {'growth':>8} "
              f"{'s/run':>6}  records left (targets, claims, flow runs)")
        for name in args.runners.split(","):
            command = [sys.executable, __file__, "--runs", str(args.runs),
                       "--mark", str(args.mark), "--child", name]
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            out = json.loads(done.stdout.strip().splitlines()[-1])
            growth = out["rss_last_mb"] / out["rss_mark_mb"] - 1
            records = out["records"]
            print(f"{name:8} {out['runs']:>6} {out['rss_mark_mb']:>9.1f}M "
                  f"{out['rss_last_mb']:>9.1f}M {growth:>+7.1%} "
                  f"{out['seconds_per_run']:>6.2f}  ({records['targets']}, "
                  f"{records['claims']}, {records['watched_flow_runs']})"
                  f"  [run {out['mark']} -> {out['runs']}]")
            figures[name] = {"growth_pct": round(growth * 100, 2),
                             "rss_mark_mb": out["rss_mark_mb"],
                             "rss_last_mb": out["rss_last_mb"],
                             "seconds_per_run": out["seconds_per_run"], **records}
        figures["load_average_end"] = os.getloadavg()[0]
        record("longlived", figures, runs=args.runs, mark=args.mark)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
