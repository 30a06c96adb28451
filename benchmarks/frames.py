"""The frame every I/O benchmark measures: 1M rows of mixed columns by default."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_frame(rows: int) -> pd.DataFrame:
    """Ten columns of the kinds a pipeline holds: numbers, text, times, labels, flags.

    Every baseline (pyarrow, pandas' csv, PyTables, SQLAlchemy) can store all of them.
    """
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


def small_mixed_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Five columns (float, int, datetime, category, text): the checkpoint benchmarks' frame."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(size=rows),
        "n": rng.integers(0, 1_000_000, rows),
        "when": pd.date_range("2025-01-01", periods=rows, freq="s"),
        "label": pd.Categorical(rng.choice(["a", "b", "c", "d"], rows)),
        "text": [f"row-{i}" for i in range(rows)],
    })
