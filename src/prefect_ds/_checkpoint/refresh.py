"""Prefect's own cache options, read the way Prefect's task engine reads them.

``refresh_cache``
    ``task.with_options(refresh_cache=True)``, or the ``PREFECT_TASKS_REFRESH_CACHE``
    setting when the task leaves it unset (``None``), makes a checkpointed call run its
    body and replace its target atomically, whatever is stored there.
``cache_expiration``
    A ``timedelta`` on the task is the maximum age of its target: an older target is
    recomputed and replaced. The age is taken from when prefect-ds wrote the target (a
    timestamp stored with it when the format keeps metadata), else from the storage's
    modification time; a target whose age cannot be told is recomputed.

Both are read from the task of the current Prefect task run (``Task.refresh_cache``,
``Task.cache_expiration`` and ``Settings.tasks.refresh_cache`` are public); outside a task
run neither applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prefect_ds._format import Format, SupportsMetadata, stored_info, stored_metadata

if TYPE_CHECKING:
    from prefect.context import TaskRunContext

WRITTEN_AT_KEY = "prefect_ds_written_at"  # ISO 8601 UTC time of the write, in the metadata


def refresh_requested(context: TaskRunContext | None) -> bool:
    """Whether the current task run must recompute: its ``refresh_cache``, else the setting."""
    if context is None:
        return False
    refresh = getattr(context.task, "refresh_cache", None)
    if refresh is not None:
        return bool(refresh)
    from prefect.settings import get_current_settings

    return bool(get_current_settings().tasks.refresh_cache)


def max_age(context: TaskRunContext | None) -> dt.timedelta | None:
    """The task's ``cache_expiration``: how old its target may be, or None (any age)."""
    if context is None:
        return None
    expiration = getattr(context.task, "cache_expiration", None)
    return expiration if isinstance(expiration, dt.timedelta) else None


def written_at_metadata(now: dt.datetime | None = None) -> dict[str, str]:
    """The metadata entry that records when a target was written."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return {WRITTEN_AT_KEY: moment.astimezone(dt.timezone.utc).isoformat()}


def written_at(fmt: Format, location: str) -> dt.datetime | None:
    """When the target at ``location`` was written, as far as can be told, or None."""
    if isinstance(fmt, SupportsMetadata):
        stamp = stored_metadata(fmt, location).get(WRITTEN_AT_KEY)
        if stamp:
            try:
                return _aware(dt.datetime.fromisoformat(stamp))
            except ValueError:
                pass
    modified = stored_info(fmt, location).modified
    return _aware(modified) if modified is not None else None


def age(fmt: Format, location: str) -> dt.timedelta | None:
    """How long ago the target at ``location`` was written, or None when unknown."""
    when = written_at(fmt, location)
    if when is None:
        return None
    return dt.datetime.now(dt.timezone.utc) - when


def expired(fmt: Format, location: str, limit: dt.timedelta) -> tuple[bool, str]:
    """Whether the stored target is older than ``limit``, and a phrase saying why."""
    current = age(fmt, location)
    if current is None:
        return True, f"its age cannot be told and cache_expiration is {_span(limit)}"
    if current > limit:
        return True, f"it is {_span(current)} old, older than cache_expiration {_span(limit)}"
    return False, ""


def with_written_at(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """``metadata`` plus the time of this write."""
    return {**(metadata or {}), **written_at_metadata()}


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def _span(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    if abs(seconds) < 120:
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f} min"
    if abs(seconds) < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
