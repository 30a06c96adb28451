"""What a staleness check costs on a checkpoint hit, measured side by side in one run.

A checkpointed function takes a large input frame (default 1M rows: float, int,
datetime, categorical and string columns) and its small target exists. Compared:

* **plain hit** - ``@checkpoint(loc)``: exists -> read the small target;
* **checked hit** - ``@checkpoint(loc, invalidate_on=("code", "inputs"))``: the same plus
  reading the stored fingerprint and hashing the code and the 1M-row input;
* **bare read** of the input frame itself from Parquet, the yardstick.

Target: (checked hit - plain hit) < 0.3 x the bare read of the input frame. Also printed:
``pandas.util.hash_pandas_object`` on the same frame (what the content hash replaces),
and the cost of the lineage check outside a Prefect run (what every hit pays when no
server records events). Pairs run interleaved; figures are medians.

Run: ``.venv/bin/python benchmarks/fingerprint.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-ds-bench-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

import pandas as pd
from common import interleaved, record
from common import small_mixed_frame as frame

from prefect_ds import checkpoint, get_format
from prefect_ds._checkpoint.fingerprint import inputs_digest
from prefect_ds._checkpoint.lineage import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    big = frame(args.rows)
    parquet = get_format("parquet")
    with tempfile.TemporaryDirectory(prefix="prefect-ds-bench-") as tmp:
        workdir = Path(tmp)
        input_file = str(workdir / "input.parquet")
        parquet.write(big, input_file)

        @checkpoint(str(workdir / "plain_{tag}.parquet"))
        def plain(tag: str, df: pd.DataFrame) -> pd.DataFrame:
            return df.head(10)

        @checkpoint(str(workdir / "checked_{tag}.parquet"), invalidate_on=("code", "inputs"))
        def checked(tag: str, df: pd.DataFrame) -> pd.DataFrame:
            return df.head(10)

        plain("t", big)
        checked("t", big)  # both targets now exist: every call below is a hit

        t_checked, t_plain = interleaved(lambda: checked("t", big), lambda: plain("t", big),
                                         args.repeat)
        t_hash, t_read = interleaved(lambda: inputs_digest({"df": big}, "bench"),
                                     lambda: parquet.read(input_file), args.repeat)
        t_pandas = min(
            _timed(lambda: pd.util.hash_pandas_object(big, index=True)) for _ in range(2)
        )
        small = pd.DataFrame({"a": [1]})
        n = 10_000
        start = time.perf_counter()
        for _ in range(n):
            report("materialized", parquet, input_file, small)
        t_lineage = (time.perf_counter() - start) / n

    overhead = t_checked - t_plain
    print(f"input frame: {args.rows:,} rows x {big.shape[1]} columns "
          f"({big.memory_usage(deep=True).sum() / 1e6:,.0f} MB in memory); "
          f"medians of {args.repeat}")
    print(f"bare read of the input (parquet)          {t_read * 1e3:8.1f} ms")
    print(f"plain existence hit                       {t_plain * 1e3:8.1f} ms")
    print(f"hit with invalidate_on=(code, inputs)     {t_checked * 1e3:8.1f} ms")
    print(f"  overhead                                {overhead * 1e3:8.1f} ms "
          f"= {overhead / t_read:.2f}x the bare read (target < 0.30x)")
    print(f"  inputs digest alone                     {t_hash * 1e3:8.1f} ms")
    print(f"pandas.util.hash_pandas_object (for scale) {t_pandas * 1e3:7.1f} ms")
    print(f"lineage check outside a run, per call     {t_lineage * 1e6:8.2f} us")
    record("fingerprint", {
        "read_ms": round(t_read * 1e3, 1),
        "plain_hit_ms": round(t_plain * 1e3, 1),
        "checked_hit_ms": round(t_checked * 1e3, 1),
        "overhead_vs_read": round(overhead / t_read, 3),
        "digest_ms": round(t_hash * 1e3, 1),
        "digest_vs_read": round(t_hash / t_read, 3),
        "hash_pandas_object_ms": round(t_pandas * 1e3, 1),
        "hash_pandas_object_vs_digest": round(t_pandas / t_hash, 1),
        "frame_mb": round(float(big.memory_usage(deep=True).sum()) / 1e6, 1),
        "lineage_us": round(t_lineage * 1e6, 2),
    }, rows=args.rows, repeat=args.repeat)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
