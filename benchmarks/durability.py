"""What a durable write adds, each step timed on its own: the flushes and the sidecar binding.

A durable local write (the default, ``PREFECT_DS_DURABLE``) fsyncs every staged file
before renaming it into place and the directory after; a csv write also hashes the data
file (sha256) to bind its schema sidecar to it. ``benchmarks/io.py`` times whole writes
with and without the flushes next to the direct pyarrow call, but on a shared machine
those wall-clock ratios move with the load by more than a flush costs. Here each step is
timed by itself on the same file, so its share of the write does not depend on
comparing two noisy runs. For the 1M-row frame of ``common.mixed_frame``, per round:

* ``pyarrow.csv.write_csv`` of the frame; the fsync of that file
  (``durability.fsync_path``, what a durable write calls); the sha256 of its bytes
  (``binding.file_digest``, what the csv format's sidecar records);
* ``pyarrow.parquet.write_table`` (snappy, the format's default); its fsync;
* the fsync of the directory holding them.

The figures are medians over ``--repeat`` rounds; each share is a step's median over
the median direct write. The files live in ``--dir`` (default: the system temporary
directory), which must be on the disk being measured (a tmpfs makes every fsync free).
Every run is appended to ``benchmarks/results/durability.json``, which ``make
docs-check`` reads.

Run: ``.venv/bin/python benchmarks/durability.py [--rows N] [--repeat R] [--dir PATH]``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from common import mixed_frame, record

from prefect_ds._storage.binding import file_digest
from prefect_ds._storage.durability import fsync_path


def seconds(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return file_digest(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median taken)")
    parser.add_argument("--dir", default=None, help="where the files are written")
    args = parser.parse_args()

    table = pa.Table.from_pandas(mixed_frame(args.rows), preserve_index=False)
    load = os.getloadavg()
    print(f"{args.rows:,} rows x {table.num_columns} columns; medians of {args.repeat} "
          f"rounds; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on "
          f"{os.cpu_count()} cores\n")
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="prefect-ds-durability-", dir=args.dir) as tmp:
        csv, parquet = Path(tmp) / "direct.csv", Path(tmp) / "direct.parquet"
        for _ in range(args.repeat):
            for path in (csv, parquet):
                path.unlink(missing_ok=True)
            fsync_path(tmp, directory=True)  # the unlinks are not part of what is timed
            timings = {
                "csv write": seconds(lambda: pcsv.write_csv(table, csv)),
                "csv fsync": seconds(lambda: fsync_path(str(csv))),
                "csv sha256": seconds(lambda: sha256(csv)),
                "parquet write": seconds(
                    lambda: pq.write_table(table, parquet, compression="snappy")),
                "parquet fsync": seconds(lambda: fsync_path(str(parquet))),
                "directory fsync": seconds(lambda: fsync_path(tmp, directory=True)),
            }
            for step, one in timings.items():
                steps.setdefault(step, []).append(one)
        sizes = {path.suffix[1:]: path.stat().st_size / 1_000_000 for path in (csv, parquet)}

    median = {step: statistics.median(took) for step, took in steps.items()}
    figures = {
        "csv": {
            "size_mb": round(sizes["csv"], 1),
            "write_s": round(median["csv write"], 3),
            "fsync_s": round(median["csv fsync"], 4),
            "sha256_s": round(median["csv sha256"], 4),
            "fsync_pct": round(100 * median["csv fsync"] / median["csv write"], 2),
            "sha256_pct": round(100 * median["csv sha256"] / median["csv write"], 2),
        },
        "parquet": {
            "size_mb": round(sizes["parquet"], 1),
            "write_s": round(median["parquet write"], 3),
            "fsync_s": round(median["parquet fsync"], 4),
            "fsync_pct": round(100 * median["parquet fsync"] / median["parquet write"], 2),
        },
        "directory": {"fsync_ms": round(1000 * median["directory fsync"], 3)},
    }
    header = f"{'step':18} {'median s':>9} {'min s':>8} {'max s':>8}  share of the write"
    print(header)
    print("-" * len(header))
    for step, took in steps.items():
        fmt = step.split()[0]
        share = ("" if step.endswith("write") or fmt == "directory"
                 else f"{100 * median[step] / median[f'{fmt} write']:.2f} %")
        print(f"{step:18} {median[step]:9.4f} {min(took):8.4f} {max(took):8.4f}  {share}")
    print(f"\ncsv {sizes['csv']:.1f} MB, parquet {sizes['parquet']:.1f} MB")
    record("durability", figures, rows=args.rows, repeat=args.repeat,
           load_average=[round(x, 1) for x in load])


if __name__ == "__main__":
    main()
