"""What a submission consumes: the runs whose results it takes as data, and the runs it
only waits for. Shared by the thread runner and the Dask runner."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import RunInput, State, TaskRunResult
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote
from prefect.utilities.collections import StopVisiting, visit_collection

from prefect_ds._errors import ResultReleasedError
from prefect_ds._release.placeholder import ReleasedResult


def data_ids(parameters: dict[str, Any], task_name: str) -> set[UUID]:
    """Run ids of the futures and states anywhere in ``parameters``.

    Follows Prefect's own resolution: nested lists, dicts, tuples, sets, dataclasses and
    annotations are searched, ``quote``\\ d values are not. A :class:`ReleasedResult` passed
    as an argument is refused: it would reach the task as its input.
    """
    found: set[UUID] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, PrefectFuture):
            found.add(obj.task_run_id)
        elif isinstance(obj, State):
            if obj.state_details.task_run_id is not None:
                found.add(obj.state_details.task_run_id)
        elif isinstance(obj, quote):
            raise StopVisiting
        elif isinstance(obj, ReleasedResult):
            raise ResultReleasedError(
                f"Task {task_name!r} was given a ReleasedResult as an argument instead of "
                f"data. Pass the task's future instead of its state's result: a "
                f"checkpointed result is then reloaded for it. {obj.explain()}"
            )

    visit_collection(parameters, visit_fn=visit, return_data=False)
    return found


def waited_ids(wait_for: Iterable[PrefectFuture[Any]] | None,
               dependencies: dict[str, set[RunInput]] | None) -> set[UUID]:
    """Run ids a submission waits for or depends on without taking their data."""
    ids = {future.task_run_id for future in wait_for or ()}
    for inputs in (dependencies or {}).values():
        ids.update(item.id for item in inputs if isinstance(item, TaskRunResult))
    return ids
