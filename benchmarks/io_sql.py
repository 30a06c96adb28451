"""SQL tables: prefect-ds's ``sql`` format vs pandas ``to_sql`` / ``read_sql`` (SQLAlchemy).

Both run side by side in one process on the same frame (default 1M mixed rows), against
a SQLite file and a throw-away PostgreSQL server this script starts (Debian's binaries,
see tests/support/postgres.py). Prints seconds and ratios (pandas time / ours).

    .venv/bin/python benchmarks/io_sql.py [--rows N] [--repeat K] [--only sqlite|postgresql]

Targets: PostgreSQL write >= 10x and read >= 5x, SQLite write >= 4x faster than pandas.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from common import record

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from support.postgres import PostgresServer

from prefect_ds.formats.sql import SQLFormat

TARGETS = {("postgresql", "write"): 10.0, ("postgresql", "read"): 5.0, ("sqlite", "write"): 4.0}


def mixed_frame(rows: int) -> pd.DataFrame:
    """10 columns: ints, floats, bool, nullable int, strings with NA, timestamps, category."""
    rng = np.random.default_rng(42)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", None], dtype=object)
    return pd.DataFrame({
        "id": np.arange(rows, dtype="int64"),
        "qty": rng.integers(0, 1000, rows).astype("int32"),
        "price": rng.random(rows) * 100,
        "score": rng.standard_normal(rows),
        "ok": rng.random(rows) > 0.5,
        "maybe": pd.array(np.where(rng.random(rows) > 0.9, None, rng.integers(0, 9, rows)),
                          dtype="Int64"),
        "name": pd.Series(words[rng.integers(0, 6, rows)], dtype="str"),
        "code": pd.Series(rng.integers(0, 10**9, rows)).astype("str"),
        "at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**9, rows), "s"),
        "region": pd.Categorical(rng.choice(["eu", "us", "apac"], rows)),
    })


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(backend: str, url: str, df: pd.DataFrame, repeat: int) -> list[tuple[str, str, float,
                                                                              float]]:
    fmt = SQLFormat()
    ours, theirs = f"{url}#bench_ours", "bench_pandas"
    engine = sa.create_engine(url)
    results = []
    ours_w = timed(lambda: fmt.write(df, ours), repeat)
    pandas_w = timed(
        lambda: df.to_sql(theirs, engine, index=False, if_exists="replace"), repeat
    )
    results.append((backend, "write", ours_w, pandas_w))
    out = fmt.read(ours)
    assert len(out) == len(df)
    ours_r = timed(lambda: fmt.read(ours), repeat)
    pandas_r = timed(lambda: pd.read_sql(f"SELECT * FROM {theirs}", engine), repeat)
    results.append((backend, "read", ours_r, pandas_r))
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="median of this many runs")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    df = mixed_frame(args.rows)
    print(f"{args.rows:,} rows x {df.shape[1]} mixed columns, median of {args.repeat}")
    results = []
    with tempfile.TemporaryDirectory(prefix="prefect-ds-bench-") as tmp:
        if args.only in (None, "sqlite"):
            results += bench("sqlite", f"sqlite:///{tmp}/bench.db", df, args.repeat)
        if args.only in (None, "postgresql"):
            with PostgresServer() as pg:
                results += bench("postgresql", pg.create_database("bench"), df, args.repeat)
    print(f"{'database':<11} {'op':<6} {'ours s':>8} {'pandas s':>9} {'ratio':>7}  target")
    for backend, op, ours, theirs in results:
        target = TARGETS.get((backend, op))
        verdict = "" if target is None else f">= {target:.0f}x " + (
            "met" if theirs / ours >= target else "MISSED")
        print(f"{backend:<11} {op:<6} {ours:8.2f} {theirs:9.2f} {theirs / ours:6.1f}x  {verdict}")
    record("io_sql", {f"{backend} {op}": {"ours_s": round(ours, 2), "pandas_s": round(theirs, 2),
                                          "ratio": round(theirs / ours, 2)}
                      for backend, op, ours, theirs in results},
           rows=args.rows, repeat=args.repeat)


if __name__ == "__main__":
    main()
