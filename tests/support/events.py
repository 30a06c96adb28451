"""Asset events as a real Prefect server stored them, for the lineage and secrets tests."""

from __future__ import annotations

import time
from typing import Any


def asset_events(flow_run_id: Any, expected: int) -> list[Any]:
    """The asset events related to a flow run, once ``expected`` of them are stored.

    Events reach the server asynchronously, so this drains Prefect's events worker and
    polls; after 60 seconds it returns what is there and lets the caller's assertion fail.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)
    event_filter = EventFilter(
        event=EventNameFilter(prefix=["prefect.asset."]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )
    deadline = time.monotonic() + 60
    while True:
        with get_client(sync_client=True) as client:
            events = list(client.read_events(event_filter, limit=50).events)
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
