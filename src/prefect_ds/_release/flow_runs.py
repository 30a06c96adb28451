"""Know when a flow run has ended in this process, to drop what was kept for it.

Records kept per task run (checkpoint targets, collision claims) belong to one flow run
and are useless once it has ended; in a long-lived process (``serve()``, a worker, a
notebook) they would pile up. Prefect offers no process-wide "flow run ended" hook, so
the end is observed on the flow run's :class:`~prefect.context.FlowRunContext`: every
task of the run sees that same object, and Prefect drops it when the run is over.
A finalizer on it calls back, once, whatever was registered for the run.

A Dask worker rebuilds the context for each task it runs, so there the context's end
says nothing about the flow run's. On a worker the flow runs seen most recently are
kept instead (at most ``DETACHED_RUNS``; the oldest is dropped first), and
``DSDaskTaskRunner`` calls :func:`end` on every worker when its flow run ends.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from uuid import UUID

DETACHED_RUNS = 256

_lock = threading.Lock()
_callbacks: dict[UUID, dict[str, Callable[[UUID], None]]] = {}
_detached: OrderedDict[UUID, None] = OrderedDict()


def on_dask_worker() -> bool:
    """Whether this thread runs a task for a Dask worker (the context is a rebuilt copy)."""
    worker = sys.modules.get("distributed.worker")
    if worker is None:
        return False
    try:
        worker.get_worker()
    except ValueError:
        return False
    return True


def current_flow_run_id() -> UUID | None:
    """The id of the flow run whose context is active, or None."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    return flow_run.id if flow_run is not None else None


def when_ended(flow_run_id: UUID, name: str, callback: Callable[[UUID], None]) -> bool:
    """Call ``callback(flow_run_id)`` once the flow run's context is gone.

    ``name`` keeps one callback per purpose and flow run. Must be called from inside
    the flow run (its context active); returns False, registering nothing, otherwise.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is None or flow_run.id != flow_run_id:
        return False
    evicted: list[UUID] = []
    detached = on_dask_worker()
    with _lock:
        callbacks = _callbacks.get(flow_run_id)
        if callbacks is None:
            callbacks = _callbacks[flow_run_id] = {}
            if not detached:
                weakref.finalize(context, end, flow_run_id)
        if detached:
            _detached[flow_run_id] = None
            _detached.move_to_end(flow_run_id)
            while len(_detached) > DETACHED_RUNS:
                evicted.append(_detached.popitem(last=False)[0])
        callbacks.setdefault(name, callback)
    for old in evicted:
        end(old)
    return True


def end(flow_run_id: UUID) -> None:
    """The flow run has ended: call back what was registered for it (once)."""
    with _lock:
        callbacks = _callbacks.pop(flow_run_id, {})
        _detached.pop(flow_run_id, None)
    for callback in callbacks.values():
        callback(flow_run_id)


def watched() -> int:
    """How many flow runs are being watched (for tests of long-lived processes)."""
    with _lock:
        return len(_callbacks)
