"""Where each task run's DataFrame is stored, so a released result can be reloaded.

The checkpoint wrapper records the target of every task run it loads or writes; the
memory-releasing runner looks it up by task run id to swap an in-memory frame for a
reference it can read back on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pandas as pd

from prefect_ds._format import Format
from prefect_ds._redact import redact


@dataclass(frozen=True)
class StoredTarget:
    """A complete frame stored at ``location`` in ``format``."""

    location: str
    format: Format
    read_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> pd.DataFrame:
        return self.format.read(self.location, **self.read_kwargs)

    def __repr__(self) -> str:
        return f"StoredTarget({redact(self.location)!r}, format={self.format.name!r})"


_lock = threading.Lock()
_by_task_run: dict[UUID, StoredTarget] = {}


def remember(task_run_id: UUID, target: StoredTarget) -> None:
    with _lock:
        _by_task_run[task_run_id] = target


def lookup(task_run_id: UUID) -> StoredTarget | None:
    with _lock:
        return _by_task_run.get(task_run_id)


def forget(task_run_id: UUID) -> None:
    with _lock:
        _by_task_run.pop(task_run_id, None)
