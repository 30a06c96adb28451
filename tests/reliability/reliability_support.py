"""Shared pieces of the reliability suite: run size, the per-format tally, the targets.

``PREFECT_DS_FULL=1`` selects the full counts (the figures in docs/reliability.md); by
default a fast subset runs. Every test adds what it tried and what went wrong to
:data:`TALLY`; with ``PREFECT_DS_RELIABILITY_REPORT=path`` the session writes the tally
there as JSON (``report.py`` turns it into the published table).
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prefect_ds import Format, UnknownFormatError, get_format

FULL = os.environ.get("PREFECT_DS_FULL") == "1"
REPORT_ENV = "PREFECT_DS_RELIABILITY_REPORT"

# Metric pairs of the published table: (tried, went wrong).
METRICS = {
    "kills": "torn",
    "corrupt_cases": "wrong_frames",
    "hostile_inputs": "accepted",
    "random_frames": "mismatches",
    "unsupported_inputs": "unsupported_written",
    "faults": "faults_damaged",
}

TALLY: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def count(fast: int, full: int) -> int:
    """The number of repetitions for this run: ``full`` with PREFECT_DS_FULL=1."""
    return full if FULL else fast


def tally(target: str, **counts: int) -> None:
    """Add ``counts`` (metric=n) to ``target``'s row of the report (and to its file now,
    so an interrupted run keeps what it counted)."""
    for metric, n in counts.items():
        TALLY[target][metric] += n
    path = os.environ.get(REPORT_ENV)
    if path:
        _merge(path, {target: counts})


def _merge(path: str, counts: dict[str, dict[str, int]]) -> None:
    """Add ``counts`` to the JSON file; sessions running side by side take turns."""
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report: dict[str, Any] = {"full": FULL, "targets": {}}
        file = Path(path)
        if file.exists() and file.stat().st_size:
            report = json.loads(file.read_text())
        for target, metrics in counts.items():
            row = report["targets"].setdefault(target, {})
            for metric, n in metrics.items():
                row[metric] = row.get(metric, 0) + n
        report["full"] = FULL
        file.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def format_or_skip(name: str) -> Format:
    try:
        return get_format(name)
    except UnknownFormatError as exc:
        pytest.skip(f"format {name!r} is not installed: {exc}")


# ----------------------------------------------------------------------------- targets

FILE_SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "hdf": ".h5", "feather": ".feather"}
TARGETS = ["csv", "parquet", "hdf", "feather", "sql-sqlite", "sql-postgresql"]
LABELS = {"csv": "csv (+ schema sidecar)", "parquet": "parquet", "hdf": "hdf (h5py)",
          "feather": "feather (plugin)", "sql-sqlite": "sql on SQLite",
          "sql-postgresql": "sql on PostgreSQL"}


@dataclass
class Target:
    """One place a format stores a frame: a file in ``directory`` or a database table."""

    key: str  # a TARGETS entry
    fmt: Format
    location: str
    directory: Path
    db_url: str | None = None
    table: str | None = None
    expect: Callable[[pd.DataFrame], pd.DataFrame] = field(default=lambda df: df)

    @property
    def is_sql(self) -> bool:
        return self.db_url is not None

    @property
    def path(self) -> Path:
        """The data file of a file target."""
        return self.directory / Path(self.location.partition("#")[0]).name

    def with_name(self, name: str) -> Target:
        """The same kind of target under another file or table name."""
        if self.is_sql:
            table = f"{name}_{uuid.uuid4().hex[:8]}"
            return Target(self.key, self.fmt, f"{self.db_url}#{table}", self.directory,
                          self.db_url, table, self.expect)
        suffix = FILE_SUFFIXES[self.fmt.name]
        return Target(self.key, self.fmt, str(self.directory / f"{name}{suffix}"),
                      self.directory, expect=self.expect)


def floor_us(df: pd.DataFrame) -> pd.DataFrame:
    """What PostgreSQL returns: timestamps floored to microseconds (docs/sql.md)."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype) or out[col].dtype.kind == "M":
            out[col] = out[col].dt.floor("us")
    if isinstance(out.index, pd.DatetimeIndex):
        out.index = out.index.floor("us")
    return out


def make_target(key: str, directory: Path, request: pytest.FixtureRequest) -> Target:
    """A fresh target of kind ``key`` in ``directory`` (PostgreSQL: a fresh table)."""
    if key == "sql-sqlite":
        url = f"sqlite:///{directory / 'results.db'}"
        return Target(key, format_or_skip("sql"), f"{url}#result", directory, url, "result")
    if key == "sql-postgresql":
        url = str(request.getfixturevalue("pg_url"))
        table = f"result_{uuid.uuid4().hex[:10]}"
        return Target(key, format_or_skip("sql"), f"{url}#{table}", directory, url, table,
                      floor_us)
    fmt = format_or_skip(key)
    return Target(key, fmt, str(directory / f"result{FILE_SUFFIXES[key]}"), directory)
