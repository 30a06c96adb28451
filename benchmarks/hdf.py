"""The ``hdf`` format vs a direct h5py writer of the same layout vs PyTables ``to_hdf``.

Run: ``.venv/bin/python benchmarks/hdf.py [rows]``. Prints medians of interleaved runs
and the ratios between them, all measured in this one run (needs ``tables`` for the
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

from prefect_ds import get_format


def mixed_frame(rows: int) -> pd.DataFrame:
    """Ten columns of the kinds a pipeline holds: numbers, text, times, labels, flags."""
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta-ü"])
    return pd.DataFrame({
        "price": rng.normal(100, 10, rows),
        "qty": rng.integers(0, 1000, rows),
        "ratio": rng.random(rows).astype("float32"),
        "name": pd.Series(words[rng.integers(0, 6, rows)]).astype("str"),
        "note": pd.Series(words[rng.integers(0, 6, rows)]).astype("str") + "-x",
        "when": pd.date_range("2020-01-01", periods=rows, freq="s"),
        "when_utc": pd.date_range("2020-01-01", periods=rows, freq="s", tz="UTC"),
        "region": pd.Categorical(words[rng.integers(0, 6, rows)]),
        "flag": rng.random(rows) > 0.5,
        "code": rng.integers(0, 100, rows).astype("int32"),
    })


def direct_write(df: pd.DataFrame, path: str) -> None:
    """The same layout written with h5py and no checks: the floor for our write."""
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
                g.create_dataset("codes", data=s.cat.codes.to_numpy())
                strings(g.create_group("categories"), pa.array(s.cat.categories.array))
            elif isinstance(s.dtype, pd.StringDtype):
                strings(cols.create_group(name), pa.array(s.array))
            elif isinstance(s.dtype, pd.DatetimeTZDtype):
                cols.create_dataset(name, data=s.values.view("i8")).attrs["tz"] = "UTC"
            elif s.dtype.kind == "M":
                cols.create_dataset(name, data=s.to_numpy().view("i8"))
            else:
                cols.create_dataset(name, data=s.to_numpy())
        group.attrs["complete"] = True


def strings(group: h5py.Group, arrow: Any) -> None:
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    _, offsets, data = arrow.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[: len(arrow) + 1]
    group.create_dataset("offsets", data=off)
    group.create_dataset("data", data=np.frombuffer(data, dtype=np.uint8)[: off[-1]])
    group.create_dataset("mask", data=np.asarray(arrow.is_null()))


def direct_read(path: str, like: pd.DataFrame) -> pd.DataFrame:
    """Read the same layout back with h5py and no checks."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        cols = f["data/columns"]
        for name in like.columns:
            dtype = like.dtypes[name]
            obj = cols[name]
            if isinstance(dtype, pd.CategoricalDtype):
                cats = read_strings(obj["categories"])
                out[name] = pd.Categorical.from_codes(obj["codes"][()], categories=cats)
            elif isinstance(dtype, pd.StringDtype):
                out[name] = read_strings(obj)
            elif isinstance(dtype, pd.DatetimeTZDtype):
                out[name] = pd.DatetimeIndex(obj[()].view(f"M8[{dtype.unit}]")).tz_localize("UTC")
            elif dtype.kind == "M":
                out[name] = obj[()].view(dtype)
            else:
                out[name] = obj[()]
    return pd.DataFrame(out, copy=False)


def read_strings(group: h5py.Group) -> Any:
    off, data, mask = group["offsets"][()], group["data"][()], group["mask"][()]
    arrow = pa.LargeStringArray.from_buffers(len(mask), pa.py_buffer(off), pa.py_buffer(data))
    del mask
    return pd.StringDtype("pyarrow", na_value=np.nan).__from_arrow__(arrow)


def median_time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    repeats = 5
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
            "direct read": lambda: direct_read(direct, df),
            "read_hdf read": lambda: pd.read_hdf(tables, "data"),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeats):  # interleaved, so background load hits every case alike
            for name, fn in cases.items():
                times[name].append(median_time(fn))
        pd.testing.assert_frame_equal(fmt.read(ours), df)
        pd.testing.assert_frame_equal(direct_read(direct, df), df)
        med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{rows:,} rows x {df.shape[1]} columns, medians of {repeats}")
    for name, value in med.items():
        print(f"  {name:14s} {value:7.3f} s")
    print(f"  write: ours / direct h5py = {med['ours write'] / med['direct write']:.3f}x, "
          f"to_hdf / ours = {med['to_hdf write'] / med['ours write']:.1f}x faster")
    print(f"  read:  ours / direct h5py = {med['ours read'] / med['direct read']:.3f}x, "
          f"read_hdf / ours = {med['read_hdf read'] / med['ours read']:.1f}x faster")


if __name__ == "__main__":
    main()
