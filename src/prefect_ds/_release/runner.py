"""``DSTaskRunner``: Prefect's thread-pool task runner that frees intermediate results.

With ``.submit``, Prefect keeps every task's result in its future until the flow run
ends, so a chain of large DataFrames holds all of them at once. This runner learns the
task graph from what each submission receives (futures anywhere in its arguments,
``wait_for``, and the ``dependencies`` ``map`` passes for the futures it already
resolved) and releases a result once every consumer submitted so far has finished:
checkpointed results become reloadable from their target, others become
:class:`~prefect_ds.ReleasedResult`. Results nobody consumed, such as a flow's final
ones, are kept. See ``_release`` for the bookkeeping and ``_settle`` for how the
runner makes sure a released frame is really freed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from prefect.client.schemas.objects import State
from prefect.futures import PrefectConcurrentFuture, PrefectFuture, PrefectFutureList
from prefect.results import ResultRecord  # type: ignore[attr-defined]
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.collections import visit_collection
from typing_extensions import Self

from prefect_ds._errors import ResultReleasedError
from prefect_ds._release import targets as _targets
from prefect_ds._release.graph import Graph, Node
from prefect_ds._release.placeholder import ReleasedResult
from prefect_ds._release.submissions import data_ids, mapped_calls, other_ids, waited_ids

if TYPE_CHECKING:
    from prefect.client.schemas.objects import RunInput  # not in Prefect 3.4.0
    from prefect.tasks import Task

R = TypeVar("R")

logger = logging.getLogger("prefect_ds.runner")


class DSFuture(PrefectConcurrentFuture[R]):
    """A thread-pool future whose ``result()`` reloads a released, checkpointed result.

    A released result that was not checkpointed comes back as the
    :class:`~prefect_ds.ReleasedResult` that replaced it; one whose target cannot be
    read any more raises :class:`~prefect_ds.ResultReleasedError`. ``state`` of a
    released, checkpointed run carries the reloaded frame, so whatever resolves the
    future through its state (a subflow's parameters, for instance) gets data, never
    the placeholder.
    """

    @property
    def released(self) -> ReleasedResult | None:
        """The placeholder for the released result, or None while it is in memory."""
        state = self.done_state()
        record = state.data if state is not None else None
        if isinstance(record, ResultRecord) and isinstance(record.result, ReleasedResult):
            return record.result
        return None

    def done_state(self) -> State[R] | None:
        """The run's final state if it has finished, without waiting or asking the API."""
        if self._final_state is None and self._wrapped_future.done():
            try:
                final = self._wrapped_future.result(timeout=0)
            except Exception:
                return None
            if isinstance(final, State):
                self._final_state = final
        return self._final_state

    @property
    def state(self) -> State[R]:
        state: State[R] = super().state
        placeholder = self.released
        if placeholder is None or not placeholder.reloadable or state is not self._final_state:
            return state
        record = state.data
        assert isinstance(record, ResultRecord)
        try:
            value = placeholder.load()
        except ResultReleasedError:
            return state  # the target is gone: the placeholder says so when it is used
        fresh = ResultRecord(metadata=record.metadata, result=value)
        return state.model_copy(update={"data": fresh})

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        value = super().result(timeout=timeout, raise_on_failure=raise_on_failure)
        if isinstance(value, ReleasedResult) and value.reloadable:
            return cast(R, value.load())
        return value


class DSTaskRunner(ThreadPoolTaskRunner[R]):
    """A :class:`~prefect.task_runners.ThreadPoolTaskRunner` that releases results.

    Use it as ``@flow(task_runner=DSTaskRunner())``. Once every task submitted with a
    result as input (in its arguments, in ``wait_for``, or through ``.map``) has
    finished, that result is released from memory: a checkpointed result is reloaded
    from its target when it is needed again (a later ``.result()`` or a later
    consumer); any other becomes a :class:`~prefect_ds.ReleasedResult`, and a consumer
    submitted after that fails at submission with
    :class:`~prefect_ds.ResultReleasedError`. Results no task consumed are kept.

    The release happens in the last consumer's worker thread, before its future
    resolves, so in a chain the next task never starts while the released frame is
    still in memory.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers)
        self._graph = Graph()
        self._handoff = threading.local()

    def duplicate(self) -> DSTaskRunner[R]:
        return type(self)(max_workers=self._max_workers)

    def __enter__(self) -> Self:
        super().__enter__()
        self._graph = Graph()
        executor = self._executor
        if executor is not None:
            # Run each task through Graph.finished in its worker thread: the release
            # then happens before the task's future resolves, not in a callback after.
            executor.submit = self._wrap_submit(executor.submit)  # type: ignore[method-assign]
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._graph.forget_all()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_handoff", None)
        state.pop("_graph", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._graph = Graph()
        self._handoff = threading.local()

    def _wrap_submit(
        self, submit: Callable[..., Future[Any]]
    ) -> Callable[..., Future[Any]]:
        graph = self._graph

        def submit_through_graph(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            node: Node | None = getattr(self._handoff, "node", None)
            if node is None:
                return submit(fn, *args, **kwargs)
            self._handoff.node = None
            return submit(_run_node, graph, node, fn, *args, **kwargs)

        return submit_through_graph

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[RunInput]] | None = None,
    ) -> DSFuture[Any]:
        node = self._graph.add(
            task.name,
            data_ids(parameters, task.name),
            waited_ids(wait_for, dependencies) | other_ids(parameters),
            result_cache=_result_cache(),
        )
        wait_for = _settled(wait_for)
        self._handoff.node = node
        try:
            future = super().submit(task, parameters, wait_for, dependencies)
        except BaseException:
            self._graph.withdraw(node)
            raise
        finally:
            self._handoff.node = None
        self._graph.registered(node, future.task_run_id)
        return DSFuture(task_run_id=future.task_run_id, wrapped_future=future.wrapped_future)

    def map(  # type: ignore[override]
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
    ) -> PrefectFutureList[DSFuture[Any]]:
        # map resolves the futures it maps over here, in the caller's thread: put back
        # any released result first and hold it until the mapped calls are submitted
        # (each of them then counts as a consumer through its `dependencies`).
        # Only bare top-level futures are resolved there (max_depth=0); futures inside
        # lists or annotations reach each mapped call as futures and go through submit.
        top_level: set[UUID] = set()
        for value in parameters.values():
            if isinstance(value, PrefectFuture):
                top_level.add(value.task_run_id)
            elif isinstance(value, State) and value.state_details.task_run_id is not None:
                top_level.add(value.state_details.task_run_id)
        pinned = self._graph.pin(top_level)
        try:
            _targets.check_map(task.fn, lambda: mapped_calls(task, parameters, wait_for))
            return cast(
                PrefectFutureList[DSFuture[Any]], super().map(task, parameters, wait_for)
            )
        finally:
            self._graph.unpin(pinned)


def _settled(wait_for: Any) -> Any:
    """``wait_for`` with each released future replaced by its final state.

    A released run has finished, so there is nothing left to wait for; handing Prefect
    the state spares it reading the future's ``state``, which would reload a
    checkpointed frame only to discard it.
    """
    if wait_for is None:
        return None

    def swap(obj: Any) -> Any:
        if isinstance(obj, DSFuture) and obj.released is not None:
            return obj.done_state()
        return obj

    return visit_collection(wait_for, visit_fn=swap, return_data=True)


def _result_cache() -> Any:
    """The flow run's in-memory result cache (Prefect's ``ResultStore.cache``), if any."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    store = getattr(context, "result_store", None) if context is not None else None
    return getattr(store, "cache", None)


def _run_node(
    graph: Graph, node: Node, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """Run one task in its worker thread, then release what it no longer needs."""
    state: object = None
    try:
        graph.reload(node)
        state = fn(*args, **kwargs)
        return state
    finally:
        try:
            graph.finished(node, state)
        except Exception:  # a failed release must not fail a task that succeeded
            logger.warning("Could not release results after task %s", node.label, exc_info=True)
