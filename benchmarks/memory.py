"""Peak memory of a chain of large DataFrames: plain Python vs Prefect vs DSTaskRunner.

Each configuration runs in its own subprocess, so each peak (``ru_maxrss``) is its own:

* ``plain``   - ``x = step(x)`` in a loop, no Prefect at all: the floor;
* ``prefect`` - the same tasks through ``.submit`` on Prefect's ``ThreadPoolTaskRunner``;
* ``ds``      - the same flow on ``prefect_ds.DSTaskRunner``.

A chain is one generated frame of about ``--mb`` MB (float64 columns) followed by
``steps`` tasks that each return a new frame of the same size. Tasks use
``cache_policy=NO_CACHE, persist_result=False`` (what ``checkpoint_task`` sets), so the
figures are about holding results, not about hashing or persisting them.
Targets: ``ds`` <= 1.3x ``plain``, and the 10-step ``ds`` peak no higher than the
6-step one. The 10-step ``ds`` case is then repeated to show its peak is stable.

All children talk to one local Prefect server the script starts (on 127.0.0.1) and
stops, so no child pays for its own ephemeral server.

Run: ``.venv/bin/python benchmarks/memory.py [--mb 300] [--steps 6,10] [--repeat 3]``.
Uses roughly 2-6 GB of memory, one configuration at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

MODES = ("plain", "prefect", "ds")
COLUMNS = 4


def rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- child: one configuration ----------------------------------------------------------


def child(mode: str, steps: int, mb: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    rows = mb * 2**20 // (8 * COLUMNS)

    def generate() -> pd.DataFrame:
        data = np.random.default_rng(0).random((rows, COLUMNS))
        return pd.DataFrame(data, columns=[f"c{i}" for i in range(COLUMNS)])

    def step(df: pd.DataFrame) -> pd.DataFrame:
        return df + 1.0

    if mode == "plain":
        baseline = rss_mb()
        start = time.perf_counter()
        x = generate()
        for _ in range(steps):
            x = step(x)
        check = float(x.iloc[0, 0])
        seconds = time.perf_counter() - start
    else:
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE
        from prefect.task_runners import ThreadPoolTaskRunner

        from prefect_ds import DSTaskRunner

        options: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
        generate_task = task(name="generate", **options)(generate)
        step_task = task(name="step", **options)(step)
        runner = DSTaskRunner() if mode == "ds" else ThreadPoolTaskRunner()

        @flow(task_runner=runner)
        def chain() -> float:
            future = generate_task.submit()
            for _ in range(steps):
                future = step_task.submit(future)
            return float(future.result().iloc[0, 0])

        @flow
        def warm_up() -> None:
            """A first flow run, so the chain's peak excludes Prefect's start-up."""

        warm_up()
        baseline = rss_mb()
        start = time.perf_counter()
        check = chain()
        seconds = time.perf_counter() - start

    return {
        "mode": mode,
        "steps": steps,
        "peak_mb": peak_mb(),
        "baseline_mb": baseline,
        "seconds": seconds,
        "check": check,
    }


# -- parent: the matrix -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the Prefect server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the Prefect server did not answer within 180 s")


def run_child(mode: str, steps: int, mb: int, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--steps", str(steps), "--mb", str(mb)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} x {steps} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="size of each frame in MB")
    parser.add_argument("--steps", default="6,10", help="chain lengths, comma separated")
    parser.add_argument("--repeat", type=int, default=3, help="extra runs of ds at max steps")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps_list = [int(s) for s in args.steps.split(",")]

    if args.child:
        print(json.dumps(child(args.child, steps_list[0], args.mb)))
        return

    home = tempfile.mkdtemp(prefix="prefect-ds-bench-")
    env = dict(
        os.environ,
        PREFECT_HOME=home,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    server, url = start_server(env)
    env["PREFECT_API_URL"] = url
    try:
        results = {
            (mode, steps): run_child(mode, steps, args.mb, env)
            for steps in steps_list
            for mode in MODES
        }
        longest = max(steps_list)
        repeats = [results[("ds", longest)]] + [
            run_child("ds", longest, args.mb, env) for _ in range(args.repeat)
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"Chain of ~{args.mb} MB frames; peak RSS of each configuration's own process (MB)")
    print(f"{'steps':>5}  {'mode':<8} {'peak':>7} {'before':>7} {'seconds':>8}  vs plain")
    for (mode, steps), r in results.items():
        ratio = r["peak_mb"] / results[("plain", steps)]["peak_mb"]
        print(
            f"{steps:>5}  {mode:<8} {r['peak_mb']:>7.0f} {r['baseline_mb']:>7.0f}"
            f" {r['seconds']:>8.2f}  {ratio:.2f}x"
        )
    checks = {r["check"] for r in results.values() if r["steps"] == longest}
    assert len(checks) == 1, f"the configurations disagree on the result: {checks}"

    print()
    for steps in steps_list:
        ds, plain = results[("ds", steps)]["peak_mb"], results[("plain", steps)]["peak_mb"]
        prefect = results[("prefect", steps)]["peak_mb"]
        print(
            f"{steps} steps: DSTaskRunner / plain = {ds / plain:.2f}x (target <= 1.3x); "
            f"ThreadPoolTaskRunner / plain = {prefect / plain:.2f}x"
        )
    shortest = min(steps_list)
    if shortest != longest:
        ratio = results[("ds", longest)]["peak_mb"] / results[("ds", shortest)]["peak_mb"]
        print(
            f"DSTaskRunner {longest} steps / {shortest} steps = {ratio:.3f}x "
            f"(target: no higher)"
        )
    peaks = [r["peak_mb"] for r in repeats]
    from common import record  # here, not at the top: a child's baseline excludes pandas

    record("memory", {
        f"{mode} {steps}": {"peak_mb": round(r["peak_mb"]), "baseline_mb": round(r["baseline_mb"]),
                            "vs_plain": round(r["peak_mb"]
                                              / results[("plain", steps)]["peak_mb"], 2)}
        for (mode, steps), r in results.items()
    } | {"ds repeats peak_mb": [round(p) for p in peaks]},
        mb=args.mb, steps=steps_list, repeat=args.repeat)
    print(
        f"DSTaskRunner {longest} steps over {len(peaks)} runs: "
        f"{', '.join(f'{p:.0f}' for p in peaks)} MB (spread {max(peaks) - min(peaks):.0f} MB)"
    )


if __name__ == "__main__":
    main()
