"""Shared by the benchmark scripts: the frames they measure and an interleaved timer."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def interleaved(
    ours: Callable[[], Any], base: Callable[[], Any], repeat: int
) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``base``, run in the order o b b o o b b o ..."""
    a: list[float] = []
    b: list[float] = []
    ours()
    base()  # warm caches
    for i in range(repeat):
        order = [(ours, a), (base, b)] if i % 2 == 0 else [(base, b), (ours, a)]
        for fn, out in order:
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


RESULTS = Path(__file__).resolve().parent / "results"
KEEP_RUNS = 10


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, load, CPU model, Python, platform."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def record(script: str, figures: dict[str, Any], **settings: Any) -> Path:
    """Append this run's figures to ``benchmarks/results/<script>.json`` (last 10 runs).

    ``make docs-check`` (scripts/docs-check) reads these files: every figure quoted in
    README.md and docs/ is checked against the runs recorded here.
    """
    path = RESULTS / f"{script}.json"
    runs: list[dict[str, Any]] = json.loads(path.read_text())["runs"] if path.exists() else []
    runs.append({
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": settings,
        "machine": machine(),
        "figures": figures,
    })
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({"runs": runs[-KEEP_RUNS:]}, indent=1) + "\n")
    print(f"recorded in {path.relative_to(RESULTS.parent.parent)}")
    return path
