"""Know when a flow run has ended in this process, to drop what was kept for it.

Records kept per task run (checkpoint targets, collision claims) belong to one flow run
and are useless once it has ended; in a long-lived process (``serve()``, a worker, a
notebook) they would pile up. Prefect offers no process-wide "flow run ended" hook, so
the end is observed on the flow run's :class:`~prefect.context.FlowRunContext`: every
task of the run sees that same object, and Prefect drops it when the run is over.
A finalizer on it calls back, once, whatever was registered for the run.

A Dask worker rebuilds a context for each task it runs; what a task records there is
dropped when that task is done, which is right: the records are needed only on the
client.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from uuid import UUID

_lock = threading.Lock()
_callbacks: dict[UUID, dict[str, Callable[[UUID], None]]] = {}


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
    with _lock:
        callbacks = _callbacks.get(flow_run_id)
        if callbacks is None:
            callbacks = _callbacks[flow_run_id] = {}
            weakref.finalize(context, _ended, flow_run_id)
        callbacks.setdefault(name, callback)
    return True


def _ended(flow_run_id: UUID) -> None:
    with _lock:
        callbacks = _callbacks.pop(flow_run_id, {})
    for callback in callbacks.values():
        callback(flow_run_id)


def watched() -> int:
    """How many flow runs are being watched (for tests of long-lived processes)."""
    with _lock:
        return len(_callbacks)
