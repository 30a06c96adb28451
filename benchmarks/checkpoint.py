"""What a checkpoint costs, measured side by side with its baselines in one run.

1. **Hit vs bare read.** Calling a checkpointed function whose target exists (render the
   location, check it exists, claim it, read it, log) against ``format.read`` of the same
   target. Target: hit <= 1.1x the bare read + 5 ms, for a small and a large frame, in
   Parquet and CSV. The same hit as a Prefect task call inside a flow is printed for
   information (that adds Prefect's own per-task-run cost).
2. **A mapped flow that only loads.** ``.map`` over 1,000 checkpointed calls whose targets
   all exist, against ``.map`` over 1,000 trivial Prefect tasks (each returns a one-row
   frame). Target: <= 2x.
3. **Why ``checkpoint_task`` turns Prefect's input hashing off.** A checkpoint hit taking a
   large DataFrame argument under plain ``@task`` (Prefect's default cache policy pickles
   and hashes every input) and under ``checkpoint_task`` (``NO_CACHE``,
   ``persist_result=False``): time and peak memory of the call.

Pairs run interleaved (ours, baseline, baseline, ours, ...) so background load hits both
alike; figures are medians. Run: ``.venv/bin/python benchmarks/checkpoint.py
[--large-rows N] [--calls N] [--input-mb N]``. Peak memory needs Linux
(``/proc/self/clear_refs``); elsewhere it is left out.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-ds-bench-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# A busy machine can make the local SQLite-backed server answer 503 (retryable) for a while.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "20")
# The local server can log harmless tracebacks while it is stopped at exit.
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

import numpy as np
import pandas as pd
from common import interleaved
from common import small_mixed_frame as frame
from prefect import flow, task

from prefect_ds import checkpoint, checkpoint_task, get_format

# -- 1. hit vs bare read ---------------------------------------------------------------------


def hit_vs_read(workdir: Path, large_rows: int, repeat: int) -> list[str]:
    lines = []
    for fmt_name in ("parquet", "csv"):
        fmt = get_format(fmt_name)
        for rows in (1_000, large_rows):
            template = str(workdir / f"hit_{{rows}}.{fmt_name}")

            @checkpoint(template)
            def produce(rows: int) -> pd.DataFrame:
                return frame(rows)

            produce(rows)  # writes the target
            target = template.format(rows=rows)
            ours, base = interleaved(
                lambda p=produce, r=rows: p(r),
                lambda f=fmt, t=target: f.read(t),
                repeat,
            )
            limit = 1.1 * base + 0.005
            verdict = "ok" if ours <= limit else "OVER"
            lines.append(
                f"  {fmt_name:<8} {rows:>9,} rows   hit {ours * 1e3:8.2f} ms   bare read "
                f"{base * 1e3:8.2f} ms   ratio {ours / base:5.2f}x   overhead "
                f"{(ours - base) * 1e3:+6.2f} ms   limit {limit * 1e3:8.2f} ms  {verdict}"
            )
    return lines


def hit_in_flow(workdir: Path, repeat: int) -> str:
    """A checkpoint hit as a direct task call in a flow vs a trivial task call."""

    @checkpoint_task(str(workdir / "flowhit_{i}.parquet"))
    def cached(i: int) -> pd.DataFrame:
        return frame(10)

    @task
    def trivial(i: int) -> pd.DataFrame:
        return frame(10)

    cached.fn(0)

    @flow
    def timed() -> tuple[float, float]:
        return interleaved(lambda: cached(0), lambda: trivial(0), repeat)

    ours, base = timed()
    return (f"  as a Prefect task call in a flow: hit {ours * 1e3:.1f} ms, trivial task "
            f"{base * 1e3:.1f} ms ({ours / base:.2f}x)")


# -- 2. a mapped flow that only loads --------------------------------------------------------


def mapped_flows(workdir: Path, calls: int) -> str:
    @checkpoint_task(str(workdir / "many" / "part_{i}.parquet"))
    def part(i: int) -> pd.DataFrame:
        return pd.DataFrame({"i": [i]})

    @task
    def trivial(i: int) -> pd.DataFrame:
        return pd.DataFrame({"i": [i]})

    for i in range(calls):
        part.fn(i)  # every target present

    @flow
    def loads() -> list[str]:
        futures = part.map(range(calls))
        futures.wait()
        return [f.state.name for f in futures]

    @flow
    def trivial_flow() -> list[str]:
        futures = trivial.map(range(calls))
        futures.wait()
        return [f.state.name for f in futures]

    seconds: dict[str, list[float]] = {"loads": [], "trivial": []}
    for name, fn in [("loads", loads), ("trivial", trivial_flow),
                     ("trivial", trivial_flow), ("loads", loads)]:
        time.sleep(5)  # let the server record the previous flow's 1,000 task runs first
        start = time.perf_counter()
        states = fn()
        seconds[name].append(time.perf_counter() - start)
        expected = "Cached" if name == "loads" else "Completed"
        assert states == [expected] * calls, sorted(set(states))
    ours, base = min(seconds["loads"]), min(seconds["trivial"])
    verdict = "ok" if ours <= 2 * base else "OVER"
    return (f"  {calls:,} mapped hits {ours:6.2f} s   {calls:,} trivial tasks {base:6.2f} s   "
            f"ratio {ours / base:4.2f}x (limit 2x)  {verdict}   [best of 2 each]")


# -- 3. input hashing ------------------------------------------------------------------------


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _current_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            found = re.search(r"VmRSS:\s+(\d+) kB", handle.read())
    except OSError:
        return float("nan")
    return int(found.group(1)) / 1024 if found else float("nan")


def _peak_mb() -> float:
    with open("/proc/self/status") as handle:
        found = re.search(r"VmHWM:\s+(\d+) kB", handle.read())
    return int(found.group(1)) / 1024 if found else float("nan")


def _one_call(fn: Any, make: Callable[[], pd.DataFrame]) -> Any:
    """A flow that builds the input (outside any task) and times one call of ``fn``."""

    @flow
    def one_call() -> tuple[float, float, float | None]:
        df = make()
        have_peak = _reset_peak()  # the peak window starts with the input built and held
        held = _current_mb()
        start = time.perf_counter()
        fn(df, "x")
        seconds = time.perf_counter() - start
        return seconds, held, (_peak_mb() if have_peak else None)

    return one_call


def input_hashing(workdir: Path, input_mb: int) -> list[str]:
    rows = input_mb * 2**20 // 40  # five 8-byte columns

    def big() -> pd.DataFrame:
        rng = np.random.default_rng(1)
        return pd.DataFrame(rng.normal(size=(rows, 5)), columns=list("abcde"))

    @task
    @checkpoint(str(workdir / "hash_default_{tag}.parquet"))
    def summarise_default(df: pd.DataFrame, tag: str) -> pd.DataFrame:
        return df.describe()

    @checkpoint_task(str(workdir / "hash_nocache_{tag}.parquet"))
    def summarise_nocache(df: pd.DataFrame, tag: str) -> pd.DataFrame:
        return df.describe()

    lines = []
    for label, fn in [("@task + @checkpoint (Prefect's default cache policy)", summarise_default),
                      ("checkpoint_task (NO_CACHE, persist_result=False)", summarise_nocache)]:
        fn.fn(big().head(10), "x")  # the target exists: every call below is a hit

        seconds, held, peak = _one_call(fn, big)()
        memory = (f"peak during the call {peak:6.0f} MB (+{peak - held:4.0f} MB over the "
                  f"{held:.0f} MB held before it)" if peak is not None else "")
        lines.append(f"  {label:<52} call {seconds:6.2f} s   {memory}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--input-mb", type=int, default=300)
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 2,3")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    with tempfile.TemporaryDirectory(prefix="prefect-ds-bench-") as tmp:
        workdir = Path(tmp)
        if "1" in parts:
            print("1. checkpoint hit vs bare read of its target (limit 1.1x + 5 ms)")
            for line in hit_vs_read(workdir, args.large_rows, args.repeat):
                print(line, flush=True)
            print(hit_in_flow(workdir, args.repeat), flush=True)
        if "2" in parts:
            print(f"2. mapped flow, every target present vs trivial tasks ({args.calls:,} calls)")
            print(mapped_flows(workdir, args.calls), flush=True)
        if "3" in parts:
            print(f"3. a hit with a {args.input_mb} MB DataFrame argument")
            for line in input_hashing(workdir, args.input_mb):
                print(line, flush=True)


if __name__ == "__main__":
    main()
