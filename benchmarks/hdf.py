"""The ``hdf`` format vs a direct h5py writer of the same layout vs PyTables ``to_hdf``.

Run: ``.venv/bin/python benchmarks/hdf.py [rows] [repeats]``. Prints the best and the
median of interleaved runs and the ratios between them, all measured in this one run
(needs ``tables`` for the
``to_hdf``/``read_hdf`` baseline; it is in the ``dev`` extra).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
from common import mixed_frame

from prefect_ds import get_format


def direct_write(df: pd.DataFrame, path: str) -> None:
    """The same layout written with plain h5py and no checks: the floor for our write."""
    with h5py.File(path, "w", libver=("v108", "latest")) as out:
        group = out.create_group("data")
        group.attrs.update({"layout": "prefect-ds frame", "layout_version": 1,
                            "nrows": len(df), "columns_dtype": "str"})
        group.attrs["columns"] = np.array(list(df.columns), dtype=h5py.string_dtype())
        group.create_group("index").attrs.update({"kind": "range", "start": 0,
                                                  "stop": len(df), "step": 1})
        cols = group.create_group("columns")
        for name in df.columns:
            s = df[name]
            if isinstance(s.dtype, pd.CategoricalDtype):
                g = cols.create_group(name)
                g.attrs.update({"kind": "category", "dtype": "category", "ordered": False})
                g.create_dataset("codes", data=s.cat.codes.to_numpy())
                write_strings(g.create_group("categories"), pa.array(s.cat.categories.array))
            elif isinstance(s.dtype, pd.StringDtype):
                write_strings(cols.create_group(name), pa.array(s.array))
            elif isinstance(s.dtype, pd.DatetimeTZDtype):
                ds = cols.create_dataset(name, data=s.array.view("i8"))
                ds.attrs.update({"kind": "datetime", "dtype": str(s.dtype),
                                 "unit": s.dtype.unit, "tz": "UTC"})
            elif s.dtype.kind == "M":
                ds = cols.create_dataset(name, data=s.to_numpy().view("i8"))
                ds.attrs.update({"kind": "datetime", "dtype": str(s.dtype),
                                 "unit": np.datetime_data(s.dtype.str)[0]})
            else:
                ds = cols.create_dataset(name, data=s.to_numpy())
                ds.attrs.update({"kind": "plain", "dtype": str(s.dtype)})
        group.attrs["complete"] = True


def write_strings(group: h5py.Group, arrow: Any) -> None:
    group.attrs.update({"kind": "string", "dtype": "str", "storage": "pyarrow",
                        "na_value": "nan"})
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    _, offsets, data = arrow.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[: len(arrow) + 1]
    group.create_dataset("offsets", data=off)
    group.create_dataset("data", data=np.frombuffer(data, dtype=np.uint8)[: off[-1]])
    group.create_dataset("mask", data=np.asarray(arrow.is_null()))


def direct_read(path: str) -> pd.DataFrame:
    """Read the same layout back with plain h5py, going by the attributes, no checks."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        group = f["data"]
        cols = group["columns"]
        for name in group.attrs["columns"]:
            obj = cols[name]
            out[name] = read_column(obj)
        index = group["index"].attrs
        return pd.DataFrame(out, index=pd.RangeIndex(index["start"], index["stop"],
                                                     index["step"]), copy=False)


def read_column(obj: Any) -> Any:
    kind = obj.attrs["kind"]
    if kind == "category":
        cats = read_column(obj["categories"])
        return pd.Categorical.from_codes(obj["codes"][()], categories=cats)
    if kind == "string":
        off, data, mask = obj["offsets"][()], obj["data"][()], obj["mask"][()]
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little")) if mask.any() else None
        arrow = pa.LargeStringArray.from_buffers(len(mask), pa.py_buffer(off),
                                                 pa.py_buffer(data), validity)
        return pd.StringDtype("pyarrow", na_value=np.nan).__from_arrow__(arrow)
    if kind == "datetime":
        stamps = obj[()].view(f"M8[{obj.attrs['unit']}]")
        if "tz" in obj.attrs:
            return pd.DatetimeIndex(stamps).tz_localize("UTC").tz_convert(obj.attrs["tz"])
        return stamps
    return obj[()]


def elapsed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (CPU time is steadier on a shared, busy machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    df = mixed_frame(rows)
    fmt = get_format("hdf")
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        ours, direct, tables = (str(Path(tmp, n)) for n in ("ours.h5", "direct.h5", "pt.h5"))
        cases: dict[str, Callable[[], object]] = {
            "ours write": lambda: fmt.write(df, ours),
            "direct write": lambda: direct_write(df, direct),
            "to_hdf write": lambda: df.to_hdf(tables, key="data", mode="w", format="table"),
            "ours read": lambda: fmt.read(ours),
            "direct read": lambda: direct_read(direct),
            "read_hdf read": lambda: pd.read_hdf(tables, "data"),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(repeats):  # interleaved, so background load hits every case alike
            for name, fn in cases.items():
                times[name].append(elapsed(fn))
        pd.testing.assert_frame_equal(fmt.read(ours), df)
        pd.testing.assert_frame_equal(direct_read(direct), df)
    print(f"{rows:,} rows x {df.shape[1]} columns; {repeats} interleaved runs")
    print(f"  {'':14s} {'wall min':>9s} {'wall med':>9s} {'cpu min':>9s} {'cpu med':>9s}")
    stats: dict[str, dict[str, float]] = {}
    for name, pairs in times.items():
        walls, cpus = [w for w, _ in pairs], [c for _, c in pairs]
        stats[name] = {"wall min": min(walls), "wall med": statistics.median(walls),
                       "cpu min": min(cpus), "cpu med": statistics.median(cpus)}
        print(f"  {name:14s} " + " ".join(f"{v:9.3f}" for v in stats[name].values()))
    for measure in ("wall min", "wall med", "cpu min", "cpu med"):
        def ratio(a: str, b: str, m: str = measure) -> float:
            return stats[a][m] / stats[b][m]
        print(f"  {measure}: ours/direct write {ratio('ours write', 'direct write'):.3f}x, "
              f"read {ratio('ours read', 'direct read'):.3f}x; faster than PyTables: "
              f"write {ratio('to_hdf write', 'ours write'):.1f}x, "
              f"read {ratio('read_hdf read', 'ours read'):.1f}x")

if __name__ == "__main__":
    main()
