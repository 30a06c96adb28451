"""What resolving "latest" costs a versioned checkpoint, with 1,000 versions present.

For Parquet and CSV, a small and a large frame: a checkpoint hit on a versioned target
that holds 1,000 committed versions (999 older ones plus the latest), against a hit on
the same frame stored unversioned. Target: versioned hit <= 1.2x the unversioned hit
+ 5 ms. Also printed: the listing alone (``handler.versions()``, what "latest" costs),
for a versions directory unchanged for a second (one ``stat``) and for one just changed
(a full listing).

Pairs run interleaved (ours, baseline, baseline, ours, ...) so background load hits both
alike; figures are medians. The machine may be shared: the load average is printed and
recorded. Run: ``.venv/bin/python benchmarks/versions.py [--large-rows N] [--versions N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from common import interleaved, record
from common import small_mixed_frame as frame

from prefect_ds import PandasResultHandler, checkpoint
from prefect_ds._storage import versions as layout


def fill_versions(handler: PandasResultHandler, location: str, count: int) -> None:
    """``count - 1`` small committed versions older than anything, then the real one."""
    handler.write(frame(10))
    (first,) = handler.versions()
    root = Path(layout.root(location))
    start = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    for i in range(count - 2):
        old = layout.new_id(start + dt.timedelta(seconds=i))
        shutil.copytree(root / first, root / old)
        shutil.copyfile(root / f"{first}.json", root / f"{old}.json")


def measure(workdir: Path, fmt_name: str, rows: int, versions: int,
            repeat: int) -> dict[str, Any]:
    plain_loc = str(workdir / f"plain_{rows}.{fmt_name}")
    versioned_loc = str(workdir / f"versioned_{rows}.{fmt_name}")
    handler = PandasResultHandler(versioned_loc, versioned=True)
    fill_versions(handler, versioned_loc, versions)

    @checkpoint(plain_loc)
    def plain() -> pd.DataFrame:
        return frame(rows)

    @checkpoint(versioned_loc, versioned=True)
    def versioned() -> pd.DataFrame:
        return frame(rows)

    plain()
    time.sleep(0.01)  # the real version is the newest
    handler.write(frame(rows))
    assert len(handler.versions()) == versions and len(versioned()) == rows
    fresh_listing = statistics.median(_timed(handler.versions) for _ in range(repeat))
    # A directory changed in the last second is listed afresh on every look (a second
    # write may share its timestamp tick); older ones cost one stat while unchanged.
    time.sleep(layout.RACY_AFTER + 0.1)
    ours, base = interleaved(versioned, plain, repeat)
    listing = statistics.median(_timed(handler.versions) for _ in range(repeat))
    return {"hit_ms": ours * 1e3, "unversioned_hit_ms": base * 1e3, "ratio": ours / base,
            "overhead_ms": (ours - base) * 1e3, "listing_ms": listing * 1e3,
            "fresh_listing_ms": fresh_listing * 1e3,
            "within_target": ours <= 1.2 * base + 0.005}


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-rows", type=int, default=200_000)
    parser.add_argument("--versions", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()} on {os.cpu_count()} cores")
    print(f"checkpoint hit with {args.versions:,} versions present vs an unversioned hit "
          f"(target: <= 1.2x + 5 ms)")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="prefect-ds-bench-versions-") as tmp:
        for fmt_name in ("parquet", "csv"):
            for rows in (1_000, args.large_rows):
                found = measure(Path(tmp), fmt_name, rows, args.versions, args.repeat)
                figures[f"{fmt_name} {rows}"] = found
                print(f"  {fmt_name:<8} {rows:>9,} rows   versioned hit "
                      f"{found['hit_ms']:8.2f} ms   unversioned {found['unversioned_hit_ms']:8.2f}"
                      f" ms   ratio {found['ratio']:5.2f}x   overhead "
                      f"{found['overhead_ms']:+6.2f} ms   listing {found['listing_ms']:5.2f} ms "
                      f"(just changed: {found['fresh_listing_ms']:5.2f} ms)"
                      f"  {'ok' if found['within_target'] else 'OVER'}")
    print(f"load average after: {os.getloadavg()}")
    record("versions", figures, versions=args.versions, large_rows=args.large_rows,
           repeat=args.repeat)


if __name__ == "__main__":
    main()
