"""Where each task run's DataFrame is stored, so a released result can be reloaded.

The checkpoint wrapper records the target of every task run it loads or writes; the
memory-releasing runner looks it up by task run id to swap an in-memory frame for a
reference it can read back on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect_ds._format import Format
from prefect_ds._frames import read_frame
from prefect_ds._redact import redact
from prefect_ds._release import flow_runs as _flow_runs


@dataclass(frozen=True)
class StoredTarget:
    """A complete frame stored at ``location`` in ``format``, handed on as ``kind``
    (None: the kind recorded with the target)."""

    location: str
    format: Format
    read_kwargs: Mapping[str, Any] = field(default_factory=dict)
    kind: str | None = None

    def load(self) -> Any:
        """The stored frame, as the kind the task run handed on."""
        return read_frame(self.format, self.location, self.read_kwargs, self.kind)

    def __repr__(self) -> str:
        return f"StoredTarget({redact(self.location)!r}, format={self.format.name!r})"


_lock = threading.Lock()
_by_task_run: dict[UUID, StoredTarget] = {}
_by_flow_run: dict[UUID, set[UUID]] = {}


def check_map(fn: Any, calls: Callable[[], list[dict[str, Any]]]) -> None:
    """Let a checkpointed task refuse a ``.map`` whose calls would share a target.

    The checkpoint wrapper offers the check as ``__prefect_ds_check_map__``; ``fn`` is
    a task's function, perhaps wrapped further. Anything else is not checked.
    """
    found: Any = fn
    while found is not None:
        check = getattr(found, "__prefect_ds_check_map__", None)
        if callable(check):
            check(calls())
            return
        found = getattr(found, "__wrapped__", None)


def remember(task_run_id: UUID, target: StoredTarget, flow_run_id: UUID | None) -> None:
    """Record where a task run of ``flow_run_id`` stored its frame, until the flow run ends.

    Only task runs of a flow run are recorded: the runners that reload released results
    work inside one. The records of a flow run are dropped when it ends, whatever its
    task runner, so a long-lived process does not pile them up.
    """
    if flow_run_id is None or _flow_runs.on_dask_worker():
        return  # no runner in this process reads it (a Dask runner plans targets itself)
    if not _flow_runs.when_ended(flow_run_id, __name__, _forget_run):
        return
    with _lock:
        _by_task_run[task_run_id] = target
        _by_flow_run.setdefault(flow_run_id, set()).add(task_run_id)


def lookup(task_run_id: UUID) -> StoredTarget | None:
    with _lock:
        return _by_task_run.get(task_run_id)


def forget(task_run_id: UUID) -> None:
    with _lock:
        _by_task_run.pop(task_run_id, None)


def _forget_run(flow_run_id: UUID) -> None:
    with _lock:
        for task_run_id in _by_flow_run.pop(flow_run_id, ()):
            _by_task_run.pop(task_run_id, None)


def count() -> int:
    """How many task runs have a recorded target (for tests of long-lived processes)."""
    with _lock:
        return len(_by_task_run)
