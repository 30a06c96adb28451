"""The run record committed with each version: which Prefect run wrote it, and what.

Prefect is consulted only when it is already imported (a write inside a flow or task run
has it); a handler writing from a plain script records no run and imports nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping
from typing import Any

from prefect_ds._checkpoint.fingerprint import METADATA_KEY, Fingerprint
from prefect_ds._format import TargetInfo

# The record's keys, in the order the CLI shows them.
RUN_KEYS = ("flow_run_id", "flow_run_name", "task_run_id", "task_run_name")


def current_run() -> dict[str, str | None]:
    """The flow run and task run this thread runs in (None where there is none)."""
    found: dict[str, str | None] = dict.fromkeys(RUN_KEYS)
    context = sys.modules.get("prefect.context")
    if context is None:
        return found
    flow_ctx = context.FlowRunContext.get()
    task_ctx = context.TaskRunContext.get()
    if task_ctx is not None:
        found["task_run_id"] = str(task_ctx.task_run.id)
        found["task_run_name"] = task_ctx.task_run.name
        if task_ctx.task_run.flow_run_id is not None:
            found["flow_run_id"] = str(task_ctx.task_run.flow_run_id)
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        found["flow_run_id"] = str(flow_ctx.flow_run.id)
        found["flow_run_name"] = flow_ctx.flow_run.name
    return found


def fingerprint_parts(metadata: Mapping[str, str] | None) -> dict[str, str] | None:
    """The fingerprint parts a checkpoint stored with the version, if it stored any."""
    fingerprint = Fingerprint.decode((metadata or {}).get(METADATA_KEY))
    return dict(fingerprint.parts) if fingerprint is not None else None


def build(version: str, location: str, format_name: str, rows: int | None,
          info: TargetInfo, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    """The record of one version: its run, its fingerprint parts, rows, bytes, write time.

    ``location`` must already be redacted: the record is stored in plain text.
    """
    return {
        "version": version,
        "location": location,
        "format": format_name,
        **current_run(),
        "fingerprint": fingerprint_parts(metadata),
        "rows": rows if rows is not None else info.rows,
        "bytes": info.bytes,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
