"""Make sure a released frame is really gone before the next task starts.

Dropping the task run's result record is not enough on its own. Each state change a
task run emits is queued for Prefect's events worker together with a snapshot of the
run's context (``EventsWorker._prepare_item`` stores ``copy_context()``). That snapshot
holds the task's ``TaskRunContext`` (whose ``parameters`` are the resolved upstream
frames) and its ``Transaction`` (whose rollback hook holds the task engine, with its
parameters and return value). It is dropped when the worker has sent the event,
usually a few milliseconds later.

So after a release, the consumer's worker thread waits - before its future resolves,
so no downstream task has started yet - until either every released value is dead
(tracked by weak reference; no garbage-collection pass is needed, as nothing here is
a reference cycle) or the events worker has dropped the snapshots it held (also
tracked by weak reference) and a short grace has passed, after which anything still
holding the value belongs to the user. Typical cost: a few milliseconds per release,
against ~160 ms for a ``gc.collect()``. The wait is bounded: a stalled events worker
delays a task by at most ``timeout`` seconds.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from typing import Any

POLL_START = 0.0002
POLL_MAX = 0.005
# After the events worker let go: how long other short-lived holders may still take.
# Threads that were handling the run's bookkeeping can hold the task engine a moment
# longer (about 1 release in 300 in a 150-step chain, for a few milliseconds).
GRACE = 0.05


def weak_refs(value: Any) -> list[weakref.ref[Any]]:
    """Weak references to ``value``, or to its items when it is a plain container.

    Lists, tuples and dicts cannot be weakly referenced, so their weakly referenceable
    members (frames, arrays, Series) are tracked instead, one level deep.
    """
    try:
        return [weakref.ref(value)]
    except TypeError:
        pass
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return []
    refs: list[weakref.ref[Any]] = []
    for item in items:
        try:
            refs.append(weakref.ref(item))
        except TypeError:
            continue
    return refs


def _events_workers() -> list[Any]:
    try:
        from prefect.events.worker import EventsWorker
    except ImportError:  # pragma: no cover - every supported Prefect has it
        return []
    services = list(getattr(EventsWorker, "_instances", {}).values())
    return [service for service in services if isinstance(service, EventsWorker)]


def _pending_snapshots() -> list[weakref.ref[Any]]:
    """Weak references to the context snapshots the events workers still hold."""
    refs: list[weakref.ref[Any]] = []
    for service in _events_workers():
        cache = getattr(service, "_context_cache", None)
        if isinstance(cache, dict):
            refs.extend(weakref.ref(context) for context in list(cache.values()))
    return refs


def _workers_idle() -> bool:
    """Whether no events worker has an event queued or being sent."""
    for service in _events_workers():
        unfinished = getattr(getattr(service, "_queue", None), "unfinished_tasks", 0)
        if unfinished:
            return False
    return True


def wait_until_freed(refs: list[weakref.ref[Any]], timeout: float = 10.0) -> bool:
    """Wait until every referent in ``refs`` is dead; True if they all are.

    Stops early, returning False, ``GRACE`` seconds after Prefect's events workers
    have dropped every context snapshot they held: whatever still holds a value then
    is not Prefect's transient bookkeeping (the user kept it, for instance), and
    waiting longer would not free it. Events are sent one at a time in order, so once
    the snapshots seen at some moment are all gone, any event that was being sent then
    is done too; if none were seen, an idle queue says the same.
    """
    if all(ref() is None for ref in refs):
        return True
    snapshots = _pending_snapshots()
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    delay = POLL_START
    while True:
        if all(ref() is None for ref in refs):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if settled_at is None and all(snapshot() is None for snapshot in snapshots):
            if snapshots or _workers_idle():
                settled_at = now
            else:
                snapshots = _pending_snapshots()
        if settled_at is not None and now - settled_at >= GRACE:
            return False
        time.sleep(delay)
        delay = min(delay * 2, POLL_MAX)
