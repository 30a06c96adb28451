"""Prefect asset lineage for checkpoint targets: which task run wrote or loaded which file.

Every checkpoint write emits ``prefect.asset.materialization.succeeded`` and every
checkpoint load ``prefect.asset.referenced`` for the rendered target, as the events Prefect's
own ``@materialize`` emits: the resource is the asset (its key a URI, its name the
location with any password hidden), the related resources are the upstream assets of the
task run (its inputs' assets and ``asset_deps``, role ``asset``) and
``prefect-ds`` (role ``asset-materialized-by``); Prefect's event worker adds the flow run,
task run and flow. The payload is the asset's metadata: ``rows``, ``columns``, ``format``,
``bytes`` (the format's target info), ``location`` and, when one was checked or stored,
``fingerprint``. The target is also recorded as the task run's asset in the flow run, so
a downstream task that consumes the result lists it as its upstream asset: the UI's
lineage graph links file to task to file.

Asset keys: ``file:///absolute/path`` for local files, the fsspec URL for remote ones
(``s3://bucket/key``), a format's own ``asset_key`` otherwise (SQL:
``postgresql://host:port/db/schema.table``, ``sqlite:///abs/path.db/table``); a ``#key``
becomes ``/key``. Characters Prefect refuses in keys (spaces, ``%``...) become ``_``.

Nothing is done outside a Prefect run, or when Prefect would not emit events (no API to
send them to): the check is two context-variable lookups and a settings read, so it
costs nothing measurable. Lineage never fails a task: an error while reporting is logged
at debug level and swallowed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import pandas as pd

from prefect_ds._format import Format, SupportsAssetKey, safe_asset_key, stored_info
from prefect_ds._redact import redact
from prefect_ds._storage.kinds import columns_of, rows_of

logger = logging.getLogger("prefect_ds.lineage")

MATERIALIZED = "prefect.asset.materialization.succeeded"
REFERENCED = "prefect.asset.referenced"
MATERIALIZED_BY = "prefect-ds"


def asset_key(fmt: Format, location: str) -> str:
    """The URI naming the target at ``location`` in Prefect's asset graph (module doc)."""
    if isinstance(fmt, SupportsAssetKey):
        key = str(fmt.asset_key(location))
    else:
        path, _, fragment = location.partition("#")
        key = redact(path) if "://" in path else "prefect-ds://" + path
        if fragment:
            key = f"{key.rstrip('/')}/{fragment}"
    scheme, sep, rest = key.partition("://")
    if sep:  # Prefect wants a lower-case [a-z0-9]+ scheme: "s3a", "file", "gcs"...
        key = "".join(c for c in scheme.lower() if c.isalnum()) + "://" + rest
    return safe_asset_key(redact(key))[:512]


def _active() -> bool:
    """Inside a Prefect run that sends events somewhere (cheap checks only)."""
    context = sys.modules.get("prefect.context")
    if context is None:
        return False
    if context.TaskRunContext.get() is None and context.FlowRunContext.get() is None:
        return False
    from prefect.events.worker import should_emit_events

    return bool(should_emit_events())


def report(
    kind: str,
    fmt: Format,
    location: str,
    df: pd.DataFrame,
    fingerprint: Mapping[str, str] | None = None,
) -> None:
    """Emit the asset event for a write (``kind="materialized"``) or a load (``"loaded"``)."""
    if not _active():
        return
    try:
        _report(kind, fmt, location, df, fingerprint)
    except Exception:  # lineage is a view on the run; it must never fail the task
        logger.debug("could not report asset lineage for %s", redact(location), exc_info=True)


def _report(kind: str, fmt: Format, location: str, df: pd.DataFrame,
            fingerprint: Mapping[str, str] | None) -> None:
    from prefect.assets import Asset
    from prefect.context import AssetContext, FlowRunContext, TaskRunContext
    from prefect.events import emit_event

    key = asset_key(fmt, location)
    shown = redact(location)
    info = stored_info(fmt, location)
    rows = rows_of(df)
    payload: dict[str, Any] = {  # a lazy frame's length would compute it: stored rows
        "rows": rows if rows is not None else info.rows,
        "columns": columns_of(df),
        "format": fmt.name,
        "location": shown,
    }
    size = info.bytes
    if size is not None:
        payload["bytes"] = size
    if fingerprint:
        payload["fingerprint"] = dict(fingerprint)

    task_run = TaskRunContext.get()
    task_run_id = task_run.task_run.id if task_run is not None else None
    asset_ctx = AssetContext.get()
    upstream: set[Asset] = set()
    downstream: set[Asset] = set()
    if asset_ctx is not None and task_run_id is not None and asset_ctx.task_run_id == task_run_id:
        upstream = set(asset_ctx.upstream_assets | asset_ctx.direct_asset_dependencies)
        downstream = set(asset_ctx.downstream_assets)

    resource = {"prefect.resource.id": key, "prefect.resource.name": shown}
    if kind == "materialized":
        related = [AssetContext.asset_as_related(a) for a in upstream if a.key != key]
        related.append(AssetContext.related_materialized_by(MATERIALIZED_BY))
        emit_event(event=MATERIALIZED, resource=resource, related=related, payload=payload)
    else:
        emit_event(event=REFERENCED, resource=resource, related=[], payload=payload)

    flow_run = FlowRunContext.get()
    if flow_run is not None and task_run_id is not None:
        # What this task run hands to its consumers: the target (plus any @materialize
        # assets of its own), as Prefect does for a materializing task.
        flow_run.task_run_assets[task_run_id] = downstream | {Asset(key=key)}
