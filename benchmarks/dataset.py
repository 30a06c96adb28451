"""Dataset write and read, side by side with the plain libraries' partitioned Parquet.

* pandas frames: our ``get_format("dataset").write/read`` with ``partition_cols`` against
  ``DataFrame.to_parquet(partition_cols=...)`` / ``pandas.read_parquet``;
* Dask DataFrames, on one ``LocalCluster``: our write (the workers write, then one commit)
  against ``dask.dataframe.to_parquet(partition_on=...)``, and a full read of our lazy
  frame against ``dask.dataframe.read_parquet``;
* polars ``LazyFrame``: ``read(kind="polars.LazyFrame")`` collected whole and filtered to
  one partition, against ``polars.scan_parquet(hive_partitioning=True)`` over the same
  files (the committed generation's directory): what our layer adds to polars' own scan.
  Twice: rows grouped by partition as written, and regrouped (ours restores the written
  row order from the stored row numbers, which the plain scan does not).

Target: ours <= 1.10x the baseline's time, the atomic commit included. Ours does more:
the pandas read restores dtypes and row order exactly. Every write goes to a fresh
directory (a baseline writing into an existing one would add files to it). Each pair
runs interleaved (ours, baseline, baseline, ours, ...) so background load hits both
alike; the figures are medians.

Run: ``.venv/bin/python benchmarks/dataset.py [--rows N] [--repeat R] [--parts P]``
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import pandas as pd
from common import interleaved, mixed_frame, record

import prefect_ds


def fresh(root: str, name: str) -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"{root}/{name}-{next(counter)}/"


def row(figures: dict[str, Any], label: str, ours: float, base: float) -> None:
    """Print one pair and keep it, under ``label``, for :func:`common.record`."""
    print(f"{label:<42} {ours:8.3f} s {base:8.3f} s {ours / base:7.2f}x")
    figures[label] = {"ours_s": round(ours, 4), "baseline_s": round(base, 4),
                      "ratio": round(ours / base, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", type=int, default=8, help="Dask partitions")
    args = parser.parse_args()
    fmt = prefect_ds.get_format("dataset")
    df = mixed_frame(args.rows)
    root = tempfile.mkdtemp(prefix="prefect-ds-bench-")
    figures: dict[str, Any] = {}
    print(f"{args.rows:,} rows x {df.shape[1]} columns, partitioned by 'region' "
          f"({df['region'].nunique()} values); median of {args.repeat}")
    print(f"{'':<42} {'ours':>10} {'baseline':>10} {'ratio':>8}")
    try:
        ours_loc, base_loc = fresh(root, "ours"), fresh(root, "base")
        w = interleaved(lambda: fmt.write(df, ours_loc(), partition_cols=["region"]),
                        lambda: df.to_parquet(base_loc(), partition_cols=["region"]),
                        args.repeat)
        row(figures, "pandas write vs to_parquet", *w)
        ours_one, base_one = ours_loc(), base_loc()
        fmt.write(df, ours_one, partition_cols=["region"])
        df.to_parquet(base_one, partition_cols=["region"])
        r = interleaved(lambda: fmt.read(ours_one), lambda: pd.read_parquet(base_one),
                        args.repeat)
        row(figures, "pandas read vs read_parquet", *r)
        lazy_rows(fmt, df, root, args, figures)
        dask_rows(fmt, df, root, args, figures)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    record("dataset", figures, rows=args.rows, repeat=args.repeat, parts=args.parts)


def lazy_rows(fmt: Any, df: pd.DataFrame, root: str, args: argparse.Namespace,
              figures: dict[str, Any]) -> None:
    """Our polars scan against ``pl.scan_parquet`` over the very files it reads."""
    import polars as pl

    frame = pl.from_pandas(df)
    one = pl.col("region") == "gamma"
    cases = [("", frame.sort("region", maintain_order=True)), (" (regrouped)", frame)]
    for suffix, written in cases:
        location = f"{root}/lazy{len(suffix)}/"
        fmt.write(written.to_arrow(), location, partition_cols=["region"])
        files = f"{root}/lazy{len(suffix)}/{fmt.manifest(location)['generation']}/"

        def ours(location: str = location) -> Any:
            return fmt.read(location, kind="polars.LazyFrame")

        def base(files: str = files) -> Any:
            return pl.scan_parquet(files, hive_partitioning=True)

        r = interleaved(lambda: ours().collect(), lambda: base().collect(), args.repeat)
        row(figures, f"lazy collect vs scan_parquet{suffix}", *r)
        r = interleaved(lambda: ours().filter(one).collect(),
                        lambda: base().filter(one).collect(), args.repeat)
        row(figures, f"lazy 1 partition vs scan_parquet{suffix}", *r)


def dask_rows(fmt: Any, df: pd.DataFrame, root: str, args: argparse.Namespace,
              figures: dict[str, Any]) -> None:
    import dask.dataframe as dd
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        ddf = dd.from_pandas(df, npartitions=args.parts).persist()
        ours_loc, base_loc = fresh(root, "dask-ours"), fresh(root, "dask-base")
        w = interleaved(lambda: fmt.write(ddf, ours_loc(), partition_cols=["region"]),
                        lambda: ddf.to_parquet(base_loc(), partition_on=["region"],
                                               write_metadata_file=False),
                        args.repeat)
        row(figures, "dask write vs dd.to_parquet", *w)
        ours_one, base_one = ours_loc(), base_loc()
        fmt.write(ddf, ours_one, partition_cols=["region"])
        ddf.to_parquet(base_one, partition_on=["region"], write_metadata_file=False)

        def full(frame: Any) -> int:
            return int(frame.map_partitions(len).compute().sum())

        r = interleaved(lambda: full(fmt.read(ours_one)),
                        lambda: full(dd.read_parquet(base_one)), args.repeat)
        row(figures, "dask read vs dd.read_parquet", *r)


if __name__ == "__main__":
    main()
