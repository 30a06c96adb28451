"""Previews: a checkpoint write publishes a Prefect table artifact of what it stored.

The artifact's table holds the frame's first rows; its description the location (any
password redacted), the format, the row and column counts, the stored and in-memory byte
counts and every column's dtype. Prefect's UI shows it on the task run and, under its key
(``prefect-ds-`` and the location as a slug), on the Artifacts page, one version per write.

Off by default: ``checkpoint(..., preview=True)`` turns it on for one task, the
environment variable ``PREFECT_DS_PREVIEW=true`` for every checkpoint that does not say
``preview=False``. Only writes inside a Prefect task run publish. A preview that cannot be
published (no API, a value Prefect refuses) is a logged warning: the target is stored.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from prefect_ds._format import Format, stored_info
from prefect_ds._redact import redact

ENV = "PREFECT_DS_PREVIEW"
ROWS = 10  # rows shown
_MAX_TEXT = 200  # characters shown of one cell
_MAX_KEY = 100
_TRUE = {"1", "true", "yes", "on"}


def enabled(option: bool | None) -> bool:
    """``preview=`` when given, else the ``PREFECT_DS_PREVIEW`` environment variable."""
    if option is not None:
        return bool(option)
    return os.environ.get(ENV, "").strip().lower() in _TRUE


def artifact_key(location: str) -> str:
    """A Prefect artifact key for ``location``: lower-case letters, digits and dashes."""
    text = re.sub(r"[^a-z0-9]+", "-", redact(location).lower()).strip("-")
    key = f"prefect-ds-{text}"
    if len(key) > _MAX_KEY:
        digest = hashlib.sha256(location.encode()).hexdigest()[:10]
        key = f"{key[: _MAX_KEY - 11].rstrip('-')}-{digest}"
    return key


def cell(value: Any) -> Any:
    """One value as JSON: numbers, booleans and strings as themselves, missing as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None if value is None or math.isnan(value) else str(value)
    if isinstance(value, (bool, int, float)):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def table(df: pd.DataFrame, rows: int = ROWS) -> list[dict[str, Any]]:
    """The first ``rows`` rows as records; a non-default index is shown as columns."""
    head = df.head(rows)
    if not isinstance(head.index, pd.RangeIndex) or head.index.name is not None:
        head = head.reset_index(allow_duplicates=True)
    names = [str(c) for c in head.columns]
    return [
        {name: cell(v) for name, v in zip(names, row, strict=True)}
        for row in head.itertuples(index=False, name=None)
    ]


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n:,} B" if unit == "B" else f"{size:,.1f} {unit} ({n:,} B)"
        size /= 1000
    return f"{n:,} B"  # pragma: no cover


def description(df: pd.DataFrame, location: str, fmt: Format, stored_bytes: int | None) -> str:
    """Markdown: where, what format, how many rows, columns and bytes, and the dtypes."""
    memory = int(df.memory_usage(deep=True).sum())
    lines = [
        f"**prefect-ds checkpoint** `{redact(location)}`",
        "",
        f"format **{fmt.name}**, {len(df):,} rows, {df.shape[1]:,} columns, "
        f"stored {_size(stored_bytes)}, in memory {_size(memory)}; "
        f"the first {min(len(df), ROWS)} rows below.",
        "",
        "| column | dtype |",
        "| --- | --- |",
    ]
    for level, name in enumerate(df.index.names):
        if name is not None:
            dtype = df.index.get_level_values(level).dtype
            lines.append(f"| {_md(name)} (index) | {dtype} |")
    for name, dtype in df.dtypes.items():
        lines.append(f"| {_md(name)} | {dtype} |")
    return "\n".join(lines)


def _md(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def publish(df: pd.DataFrame, location: str, fmt: Format,
            log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    """Publish the preview artifact of ``df``, just stored at ``location``."""
    try:
        from prefect.artifacts import create_table_artifact

        try:
            stored = stored_info(fmt, location).bytes
        except Exception:  # the size is a nicety; the preview goes out without it
            stored = None
        create_table_artifact(
            table=table(df),
            key=artifact_key(location),
            description=description(df, location, fmt, stored),
        )
    except Exception as exc:
        log.warning("could not publish the preview of checkpoint %s: %s: %s",
                    redact(location), type(exc).__name__, exc)
