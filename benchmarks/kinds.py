"""Frame kinds through our formats against the direct library calls, side by side in one run.

For 1M mixed rows (``common.mixed_frame``, as polars and Arrow frames):

* a polars DataFrame through our parquet (``ResultHandler.write`` / ``read``, which
  also record and look up the frame's kind) against ``DataFrame.write_parquet`` /
  ``polars.read_parquet`` with the same compression (snappy, our default) — target:
  ours <= 1.05x;
* a pyarrow Table through our parquet against ``pq.write_table`` / ``pq.read_table`` —
  target: ours <= 1.05x;
* pandas reads: our parquet read against the fastest of ``pq.read_table().to_pandas()``,
  ``pandas.read_parquet`` and ``polars.read_parquet().to_pandas()``; our csv read
  against the fastest of ``pandas.read_csv`` (of ``to_csv``'s file: it infers types,
  so its frame has strings where ours has datetimes and categoricals) and
  ``pyarrow.csv.read_csv().to_pandas()`` — target: ours <= 1.03x the fastest.

Writes here are not fsynced (``PREFECT_DS_DURABLE=0``): the direct calls are not either,
and ``benchmarks/io.py`` measures what durability costs. Each pair runs interleaved
(ours, baseline, baseline, ours, ...) and the figures are medians; the load average is
printed with them, since the machine may be shared. Every run is appended to
``benchmarks/results/kinds.json``.

Run: ``.venv/bin/python benchmarks/kinds.py [--rows N] [--repeat R]`` (needs polars).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from common import interleaved, mixed_frame, record

from prefect_ds import ResultHandler, get_format


def fastest(candidates: dict[str, Callable[[], Any]], repeat: int) -> str:
    """The name of the fastest candidate, each timed ``repeat`` times (median)."""
    timings = {}
    for name, fn in candidates.items():
        timings[name] = interleaved(fn, fn, repeat)[0]
    return min(timings, key=timings.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    os.environ["PREFECT_DS_DURABLE"] = "0"

    df = mixed_frame(args.rows)
    table = pa.Table.from_pandas(df, preserve_index=False)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    load = os.getloadavg()
    print(f"{args.rows:,} rows x {df.shape[1]} columns; medians of {args.repeat} interleaved "
          f"runs; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on "
          f"{os.cpu_count()} cores\n")
    figures: dict[str, dict[str, float]] = {}
    header = f"{'case':44} {'ours s':>8} {'direct s':>9} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))

    def compare(name: str, ours: Callable[[], Any], theirs: Callable[[], Any],
                target: float) -> None:
        a, b = interleaved(ours, theirs, args.repeat)
        ratio = a / b
        mark = "ok" if ratio <= target else "MISS"
        print(f"{name:44} {a:8.3f} {b:9.3f} {ratio:6.3f}x  <= {target:.2f}x {mark}")
        figures[name] = {"ours_s": round(a, 4), "baseline_s": round(b, 4),
                         "ratio": round(ratio, 3)}

    with tempfile.TemporaryDirectory(prefix="prefect-ds-kinds-") as tmpdir:
        tmp = Path(tmpdir)
        ours = ResultHandler(str(tmp / "ours-{n}.parquet"))
        direct = {n: str(tmp / f"direct-{n}.parquet") for n in ("pl", "pa", "pd")}
        compare("polars write vs pl.write_parquet",
                lambda: ours.write(frame, n="pl"),
                lambda: frame.write_parquet(direct["pl"], compression="snappy"), 1.05)
        compare("polars read vs pl.read_parquet",
                lambda: ours.read(n="pl"), lambda: pl.read_parquet(direct["pl"]), 1.05)
        compare("arrow write vs pq.write_table",
                lambda: ours.write(table, n="pa"),
                lambda: pq.write_table(table, direct["pa"], compression="snappy"), 1.05)
        compare("arrow read vs pq.read_table",
                lambda: ours.read(n="pa"), lambda: pq.read_table(direct["pa"]), 1.05)

        parquet = get_format("parquet")
        parquet.write(df, str(tmp / "ours-pd.parquet"))
        pq.write_table(pa.Table.from_pandas(df), direct["pd"], compression="snappy")
        readers = {
            "pq.read_table().to_pandas()": lambda: pq.read_table(direct["pd"]).to_pandas(),
            "pandas.read_parquet": lambda: pd.read_parquet(direct["pd"]),
            "pl.read_parquet().to_pandas()": lambda: pl.read_parquet(direct["pd"]).to_pandas(),
        }
        best = fastest(readers, max(3, args.repeat // 2))
        compare(f"pandas parquet read vs {best}",
                lambda: parquet.read(str(tmp / "ours-pd.parquet")), readers[best], 1.03)

        csv = get_format("csv")
        csv.write(df, str(tmp / "ours.csv"))
        df.to_csv(tmp / "pandas.csv", index=False)
        readers = {
            "pandas.read_csv": lambda: pd.read_csv(tmp / "pandas.csv"),
            "pyarrow.csv.read_csv().to_pandas()":
                lambda: pcsv.read_csv(tmp / "ours.csv").to_pandas(),
        }
        best = fastest(readers, max(3, args.repeat // 2))
        compare(f"pandas csv read vs {best}",
                lambda: csv.read(str(tmp / "ours.csv")), readers[best], 1.03)

        assert ours.read(n="pl").equals(frame) and ours.read(n="pa").equals(table)
        assert parquet.read(str(tmp / "ours-pd.parquet")).equals(df)
        assert csv.read(str(tmp / "ours.csv")).equals(df)
    print("\nround trips exact (polars, arrow, pandas parquet, pandas csv)")
    record("kinds", figures, rows=args.rows, repeat=args.repeat,
           load_average=[round(x, 1) for x in load])


if __name__ == "__main__":
    main()
