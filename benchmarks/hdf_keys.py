"""The cost of one key in a multi-key HDF5 file, against one file per key.

Every write of a key builds a whole new file (the other keys are copied with HDF5's own
object copy) and renames it over the old one: that is what keeps a multi-key file atomic
(docs/hdf-layout.md). This measures what that costs: ``--keys`` frames of ``--mb`` MB
written one after the other as keys of one file (``store.h5#k0``, ``#k1``, ...) against the
same frames written to one file each (``k0.h5``, ``k1.h5``, ...), side by side, and the
cost of rewriting the first key once the file holds all of them. Medians of ``--repeat``.

Run: ``.venv/bin/python benchmarks/hdf_keys.py [--keys 20] [--mb 2] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import record

from prefect_ds import PandasResultHandler


def frame(mb: float, seed: int) -> pd.DataFrame:
    rows = int(mb * 2**20 / 16)  # two float64 columns
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.random(rows), "b": rng.random(rows)})


def timed(write: PandasResultHandler, frames: list[pd.DataFrame], field: str) -> list[float]:
    """Seconds of each write, in order (``field``: the template field naming the key)."""
    seconds = []
    for i, df in enumerate(frames):
        start = time.perf_counter()
        write.write(df, **{field: f"k{i}"})
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--mb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frames = [frame(args.mb, i) for i in range(args.keys)]
    keyed, separate, rewrite, first, last = [], [], [], [], []
    for _ in range(args.repeat):
        root = Path(tempfile.mkdtemp(prefix="prefect-ds-hdf-keys-"))
        try:
            one_file = PandasResultHandler(str(root / "store.h5#{key}"))
            files = PandasResultHandler(str(root / "{key}.h5"))
            per_key = timed(one_file, frames, "key")
            per_file = timed(files, frames, "key")
            keyed.append(sum(per_key))
            separate.append(sum(per_file))
            first.append(per_key[0])
            last.append(per_key[-1])
            start = time.perf_counter()
            one_file.write(frames[0], key="k0")
            rewrite.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    figures = {
        "keys_in_one_file_s": statistics.median(keyed),
        "one_file_per_key_s": statistics.median(separate),
        "ratio": statistics.median(keyed) / statistics.median(separate),
        "first_key_ms": statistics.median(first) * 1000,
        "last_key_ms": statistics.median(last) * 1000,
        "rewrite_first_key_ms": statistics.median(rewrite) * 1000,
    }
    print(f"{args.keys} frames of {args.mb} MB, median of {args.repeat}")
    print(f"keys of one file     {figures['keys_in_one_file_s']:8.3f} s")
    print(f"one file per key     {figures['one_file_per_key_s']:8.3f} s")
    print(f"ratio                {figures['ratio']:8.2f}x")
    print(f"key 1 / key {args.keys} / rewrite of key 1 in the full file: "
          f"{figures['first_key_ms']:.1f} / {figures['last_key_ms']:.1f} / "
          f"{figures['rewrite_first_key_ms']:.1f} ms")
    record("hdf_keys", figures, keys=args.keys, mb=args.mb, repeat=args.repeat)


if __name__ == "__main__":
    main()
