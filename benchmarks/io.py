"""Read/write speed of each format, measured side by side with its baselines in one run.

For every installed file format, our ``get_format(name).write/read`` is timed against

* the direct library call for the same format (parquet: ``pyarrow.parquet``; csv:
  ``pyarrow.csv``; feather: ``pyarrow.feather``) — target: ours <= 1.03x the direct call;
* pandas' default path where one exists (csv: ``to_csv``/``read_csv``; hdf: ``to_hdf`` /
  ``read_hdf`` in table format) — targets: csv write >= 5x faster than ``to_csv``, hdf
  write >= 10x and read >= 4x faster than ``to_hdf``/``read_hdf``.

Writes are durable by default (every staged file and its directory fsynced around the
rename, ``PREFECT_DS_DURABLE``); the rows marked ``no fsync`` time the same write with
``PREFECT_DS_DURABLE=0``, so the difference between the two is the cost of durability
against the same direct call. csv writes also hash the data file to bind the schema
sidecar to it (sha256), and csv reads compare the file's identity with the sidecar's
record; both are inside every csv figure.

Each pair runs interleaved (ours, baseline, baseline, ours, ...) so background load hits
both alike; the figures are medians. Targets are goals, printed as met or MISS; they are
not published figures (the csv write target is missed on the loaded development machine,
where ``to_csv`` took about 4x as long). Every run is appended to
``benchmarks/results/io.json``, which ``make docs-check`` reads. A format that is not
installed is skipped with a note. ``benchmarks/hdf.py`` compares the hdf format with a
bare h5py writer of the same layout.

Run: ``.venv/bin/python benchmarks/io.py [--rows N] [--repeat R] [--formats csv,hdf]``
(``make bench``). Needs ``tables`` (PyTables, in the ``dev`` extra) for the hdf baseline.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
from common import mixed_frame, record

from prefect_ds import available_formats, get_format

FORMATS = ("parquet", "csv", "hdf", "feather")


@dataclass
class Comparison:
    """Our call vs one baseline for one format and operation."""

    format: str
    op: str  # "write" or "read"
    baseline: str
    ours: Callable[[], object]
    theirs: Callable[[], object]
    kind: str  # "direct": ours/theirs <= target; "pandas": theirs/ours >= target
    target: float
    note: str = ""  # "no fsync": written with PREFECT_DS_DURABLE=0


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def comparisons(df: pd.DataFrame, tmp: Path, names: list[str]) -> list[Comparison]:
    """The pairs to time; writes come first so reads find their files."""
    cases: list[Comparison] = []
    ours = {name: str(tmp / f"ours-{name}{get_format(name).suffixes[0]}") for name in names}
    base = {name: str(tmp / name) for name in
            ("direct.parquet", "direct.feather", "direct.csv", "pandas.csv", "pandas.h5")}

    def our_write(name: str) -> Callable[[], object]:
        return lambda: get_format(name).write(df, ours[name])

    def our_write_no_fsync(name: str) -> Callable[[], object]:
        def write() -> None:
            os.environ["PREFECT_DS_DURABLE"] = "0"
            try:
                get_format(name).write(df, ours[name])
            finally:
                del os.environ["PREFECT_DS_DURABLE"]
        return write

    def our_read(name: str) -> Callable[[], object]:
        return lambda: get_format(name).read(ours[name])

    if "parquet" in names:
        cases += [
            Comparison("parquet", "write", "pyarrow.parquet", our_write("parquet"),
                       lambda: pq.write_table(pa.Table.from_pandas(df), base["direct.parquet"],
                                              compression="snappy"), "direct", 1.03),
            Comparison("parquet", "write", "pyarrow.parquet", our_write_no_fsync("parquet"),
                       lambda: pq.write_table(pa.Table.from_pandas(df), base["direct.parquet"],
                                              compression="snappy"), "direct", 1.03,
                       "no fsync"),
            Comparison("parquet", "read", "pyarrow.parquet", our_read("parquet"),
                       lambda: pq.read_table(base["direct.parquet"]).to_pandas(), "direct", 1.03),
        ]
    if "feather" in names:
        cases += [
            Comparison("feather", "write", "pyarrow.feather", our_write("feather"),
                       lambda: feather.write_feather(df, base["direct.feather"]), "direct", 1.03),
            Comparison("feather", "read", "pyarrow.feather", our_read("feather"),
                       lambda: feather.read_feather(base["direct.feather"]), "direct", 1.03),
        ]
    if "csv" in names:
        cases += [
            Comparison("csv", "write", "pyarrow.csv", our_write("csv"),
                       lambda: pcsv.write_csv(pa.Table.from_pandas(df, preserve_index=False),
                                              base["direct.csv"]), "direct", 1.03),
            Comparison("csv", "write", "pyarrow.csv", our_write_no_fsync("csv"),
                       lambda: pcsv.write_csv(pa.Table.from_pandas(df, preserve_index=False),
                                              base["direct.csv"]), "direct", 1.03, "no fsync"),
            Comparison("csv", "write", "DataFrame.to_csv", our_write("csv"),
                       lambda: df.to_csv(base["pandas.csv"], index=False), "pandas", 5.0),
            Comparison("csv", "read", "pyarrow.csv", our_read("csv"),
                       lambda: pcsv.read_csv(base["direct.csv"]).to_pandas(), "direct", 1.03),
            Comparison("csv", "read", "pandas.read_csv", our_read("csv"),
                       lambda: pd.read_csv(base["pandas.csv"]), "pandas", 1.0),
        ]
    if "hdf" in names:
        try:
            import tables  # noqa: F401  (PyTables backs to_hdf)
        except ImportError:
            print("note: hdf baseline skipped: PyTables is not installed (pip install tables)")
        else:
            cases += [
                Comparison("hdf", "write", "to_hdf table", our_write("hdf"),
                           lambda: df.to_hdf(base["pandas.h5"], key="data", mode="w",
                                             format="table"),
                           "pandas", 10.0),
                Comparison("hdf", "read", "read_hdf table", our_read("hdf"),
                           lambda: pd.read_hdf(base["pandas.h5"], "data"), "pandas", 4.0),
            ]
    return sorted(cases, key=lambda c: c.op != "write")


def run(case: Comparison, repeat: int) -> dict[str, float]:
    """Medians of ``repeat`` interleaved runs, wall and CPU, for ours and theirs.

    The order alternates between runs so neither side always goes first.
    """
    case.ours()  # warm up: imports, file creation, page cache
    case.theirs()
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "theirs": []}
    for i in range(repeat):
        order = ("theirs", "ours") if i % 2 else ("ours", "theirs")
        for side in order:
            runs[side].append(timed(case.ours if side == "ours" else case.theirs))
    return {
        f"{side} {kind}": statistics.median(t[k] for t in runs[side])
        for side in runs for k, kind in enumerate(("wall", "cpu"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median taken)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated subset of {', '.join(FORMATS)}")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # PyTables' performance warnings on object columns

    installed = available_formats()
    names = []
    for name in args.formats.split(","):
        if name in installed:
            names.append(name)
        else:
            hint = " (pip install ./plugins/prefect-ds-feather)" if name == "feather" else ""
            print(f"note: {name} skipped: format not installed{hint}")

    df = mixed_frame(args.rows)
    print(f"{args.rows:,} rows x {df.shape[1]} columns; medians of {args.repeat} "
          f"interleaved runs\n")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"load average {load:.1f} on {cores} cores"
          + ("  (busy machine: wall-clock ratios are noisy, CPU ratios steadier)"
             if load > cores else ""))
    header = (f"{'format':8} {'op':16} {'ours s':>7}  {'baseline':18} {'base s':>7}  "
              f"{'result':>22} {'cpu ratio':>10}  {'target':>14}")
    print(header)
    print("-" * len(header))
    met = total = 0
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="prefect-ds-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for case in comparisons(df, tmp, names):
            t = run(case, args.repeat)
            ours, theirs = t["ours wall"], t["theirs wall"]
            if case.kind == "direct":
                ratio, cpu = ours / theirs, t["ours cpu"] / t["theirs cpu"]
                ok = ratio <= case.target
                result, target = f"{ratio:.3f}x ours/direct", f"<= {case.target:.2f}x"
                cpu_ratio = f"{cpu:.3f}x"
            else:
                ratio, cpu = theirs / ours, t["theirs cpu"] / t["ours cpu"]
                ok = ratio >= case.target
                result, target = f"{ratio:.1f}x faster", f">= {case.target:g}x faster"
                cpu_ratio = f"{cpu:.1f}x"
            if case.target <= 1.0 and case.kind == "pandas":
                target, mark = "(no target)", ""
            else:
                total += 1
                met += ok
                mark = "ok" if ok else "MISS"
            op = f"{case.op} ({case.note})" if case.note else case.op
            print(f"{case.format:8} {op:16} {ours:7.3f}  {case.baseline:18} {theirs:7.3f}  "
                  f"{result:>22} {cpu_ratio:>10}  {target:>14}  {mark}")
            figures[f"{case.format} {op} vs {case.baseline}"] = {
                "ours_s": round(ours, 3), "baseline_s": round(theirs, 3),
                "ratio": round(ratio, 3), "cpu_ratio": round(cpu, 3)}
        print()
        for name in names:
            fmt = get_format(name)
            back = fmt.read(str(tmp / f"ours-{name}{fmt.suffixes[0]}"))
            exact = back.equals(df) and (back.dtypes == df.dtypes).all()
            print(f"{name}: round trip {'exact' if exact else 'NOT exact'}")
    print(f"\ntargets met: {met}/{total}")
    record("io", figures, rows=args.rows, repeat=args.repeat, formats=names)


if __name__ == "__main__":
    main()
