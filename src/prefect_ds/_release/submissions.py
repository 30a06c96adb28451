"""What a submission consumes: the runs whose results it takes as data, and the runs it
only waits for. Shared by the thread runner and the Dask runner.

Both are found the way Prefect itself finds a task run's inputs, with its own walker
(:func:`prefect.utilities.engine.collect_task_run_inputs_sync`): futures and states
anywhere in nested lists, tuples, sets, dicts, dataclasses, pydantic models and
annotations (``allow_failure``, ``unmapped``), and ``wait_for`` in every form Prefect
accepts - one future, one state, a list of them, each possibly wrapped in
``allow_failure``.

``quote``: Prefect neither resolves nor tracks what is quoted, so the task receives the
future object itself and may call ``.result()`` on it. Such a future therefore counts
as a consumer that only *waits* (its result is kept until the quoting task finishes) but
not as data: it is never reloaded for the task, and a released result it points at does
not fail the submission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.client.schemas.objects import State, TaskRunResult
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote
from prefect.utilities.collections import StopVisiting, visit_collection
from prefect.utilities.engine import collect_task_run_inputs_sync

from prefect_ds._errors import ResultReleasedError
from prefect_ds._release.placeholder import ReleasedResult

if TYPE_CHECKING:
    from prefect.client.schemas.objects import RunInput  # not in Prefect 3.4.0


def _run_ids(inputs: set[Any]) -> set[UUID]:
    return {item.id for item in inputs if isinstance(item, TaskRunResult)}


def data_ids(parameters: dict[str, Any], task_name: str) -> set[UUID]:
    r"""Run ids of the futures and states anywhere in ``parameters``: the task receives
    their results as data (Prefect resolves them before the task starts).

    ``quote``\ d values are left out (see the module doc). A :class:`ReleasedResult`
    passed as an argument is refused: it would reach the task as its input.
    """
    found: set[UUID] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, quote):
            raise StopVisiting
        if isinstance(obj, ReleasedResult):
            raise ResultReleasedError(
                f"Task {task_name!r} was given a ReleasedResult as an argument instead of "
                f"data. Pass the task's future instead of its state's result: a "
                f"checkpointed result is then reloaded for it. {obj.explain()}"
            )
        found.update(_run_ids(_explicit(obj)))

    visit_collection(parameters, visit_fn=visit, return_data=False)
    return found


def other_ids(parameters: dict[str, Any]) -> set[UUID]:
    """Runs ``parameters`` depend on without receiving them as futures or states.

    That is the runs of quoted futures (the task may read them itself), and the runs
    whose already fetched results Prefect recognises in the arguments (its
    ``collect_task_run_inputs_sync`` links a result back to the state that made it).
    """
    found = _run_ids(collect_task_run_inputs_sync(parameters))

    def visit(obj: Any) -> None:
        if isinstance(obj, quote):
            found.update(_run_ids(_collect_all(obj.unquote())))

    visit_collection(parameters, visit_fn=visit, return_data=False)
    return found


def _explicit(obj: Any) -> set[Any]:
    if isinstance(obj, PrefectFuture):
        return {TaskRunResult(id=obj.task_run_id)}
    if isinstance(obj, State) and obj.state_details.task_run_id is not None:
        return {TaskRunResult(id=obj.state_details.task_run_id)}
    return set()


def _collect_all(expr: Any) -> set[Any]:
    inputs: set[Any] = set()

    def visit(obj: Any) -> None:
        inputs.update(_explicit(obj))

    visit_collection(expr, visit_fn=visit, return_data=False)
    return inputs


def waited_ids(wait_for: Any, dependencies: dict[str, set[RunInput]] | None) -> set[UUID]:
    """Run ids a submission waits for or depends on without taking their data.

    ``wait_for`` may be anything Prefect accepts there: a future, a state, an
    ``allow_failure`` of either, or any collection of those.
    """
    ids = _run_ids(collect_task_run_inputs_sync(wait_for)) if wait_for is not None else set()
    for inputs in (dependencies or {}).values():
        ids.update(item.id for item in inputs if isinstance(item, TaskRunResult))
    return ids


class _Collector:
    """Stands in for a task runner so Prefect's own ``map`` expands a call for us."""

    _started = True

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None,
               dependencies: Any = None) -> None:
        self.calls.append(parameters)


def mapped_calls(task: Any, parameters: dict[str, Any], wait_for: Any) -> list[dict[str, Any]]:
    """The parameters of each call ``.map`` will submit, expanded by Prefect's own code."""
    from prefect.task_runners import TaskRunner

    collector = _Collector()
    TaskRunner.map(collector, task, parameters, wait_for)  # type: ignore[arg-type]
    return collector.calls
