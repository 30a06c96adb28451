"""``DSDaskTaskRunner``: prefect-dask's task runner that frees intermediate results.

Under :class:`prefect_dask.DaskTaskRunner` every task's result lives on a Dask worker and
stays there for as long as the flow holds the task's future: the client's reference keeps
the key alive on the cluster. A chain of large frames therefore piles up in worker
memory until the flow returns. This runner learns the task graph from each submission,
exactly as :class:`~prefect_ds.DSTaskRunner` does (futures in the arguments, in
``wait_for``, and ``map``'s ``dependencies``), and once every consumer submitted so far
has finished it drops the client's reference, so Dask deletes the result from the
worker. The data never travels to the client for this.

After a release the future answers ``result()`` by reading a checkpointed task's frame
back from its target, or with a :class:`~prefect_ds.ReleasedResult` for any other task. A
consumer submitted later gets a checkpointed result reloaded on a worker (it never
passes through the client); for an unchecked-pointed one it fails at submission with
:class:`~prefect_ds.ResultReleasedError`. Results nobody consumed, such as a flow's
final ones, are kept.

Importing ``prefect_ds`` never imports Dask; this module does::

    from prefect_ds.dask import DSDaskTaskRunner

    @flow(task_runner=DSDaskTaskRunner(address="tcp://scheduler:8786"))
    def pipeline(): ...

Checkpoint targets must be on storage every worker sees (a shared file system, S3).

Each task run goes to the cluster through :mod:`prefect_ds._dask.submit`: the flow's
settings are serialized once, Dask keys are task run ids (no hashing of arguments), and
each worker keeps Prefect's settings context and one API client per thread between task
runs (:mod:`prefect_ds._dask.worker`), instead of rebuilding them for every run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import distributed
from prefect.client.schemas.objects import State, TaskRunResult
from prefect.futures import PrefectFuture, PrefectFutureList
from prefect.results import ResultRecord  # type: ignore[attr-defined]
from prefect.states import Completed
from prefect.utilities.collections import visit_collection
from prefect.utilities.engine import collect_task_run_inputs_sync
from prefect_dask.task_runners import DaskTaskRunner, PrefectDaskFuture

from prefect_ds._checkpoint.store import planned_target
from prefect_ds._errors import ResultReleasedError
from prefect_ds._redact import redact
from prefect_ds._release import targets as _targets
from prefect_ds._release.flow_runs import current_flow_run_id
from prefect_ds._release.graph import Graph, Node
from prefect_ds._release.placeholder import ReleasedResult
from prefect_ds._release.submissions import data_ids, mapped_calls, other_ids, waited_ids
from prefect_ds._release.targets import StoredTarget

if TYPE_CHECKING:
    from prefect.client.schemas.objects import RunInput  # not in Prefect 3.4.0
    from prefect.tasks import Task

R = TypeVar("R")

logger = logging.getLogger("prefect_ds.dask")

__all__ = ["DSDaskFuture", "DSDaskTaskRunner"]


class DSDaskFuture(PrefectDaskFuture[R]):
    """A Dask-backed Prefect future whose result may have been released from the cluster.

    Until the release it behaves exactly like :class:`prefect_dask.PrefectDaskFuture`.
    Afterwards ``result()`` reads a checkpointed frame back from its target, and returns
    the :class:`~prefect_ds.ReleasedResult` for anything else; ``wait()`` returns at once.
    """

    _released: ReleasedResult | None = None
    # Set once the runner has counted this run finished (and released what that frees),
    # so a consumer's wait() returns after its upstream results were released, as on
    # threads.
    _counted: threading.Event | None = None
    SETTLE_TIMEOUT = 30.0

    @property
    def released(self) -> ReleasedResult | None:
        """The placeholder for the released result, or None while it is on the cluster."""
        return self._released

    def wait(self, timeout: float | None = None) -> None:
        if self._released is None:
            super().wait(timeout)
            self._settle(timeout)

    def _settle(self, timeout: float | None) -> None:
        counted = self._counted
        if counted is not None and self._wrapped_future.done():  # type: ignore[no-untyped-call]
            counted.wait(self.SETTLE_TIMEOUT if timeout is None else timeout)

    @property
    def state(self) -> State[R]:
        """The run's state; after a release, a checkpointed run's state carries the frame
        reloaded from its target, so whatever resolves the future through its state (a
        subflow's parameters) gets data."""
        placeholder = self._released
        if placeholder is None:
            return super().state
        if not placeholder.reloadable:
            persisted = self._persisted_state()
            if persisted is not None:
                return persisted
        data: Any = placeholder
        if placeholder.reloadable:
            # a target that is gone leaves the placeholder, which says so when it is used
            with contextlib.suppress(ResultReleasedError):
                data = placeholder.load()
        return Completed(data=ResultRecord(metadata=_metadata(), result=data))

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        placeholder = self._released
        if placeholder is None:
            try:
                return super().result(timeout=timeout, raise_on_failure=raise_on_failure)
            finally:
                self._settle(timeout)
        if not placeholder.reloadable:
            persisted = self._persisted_state()
            if persisted is not None:  # Prefect stored it: read it back, as on threads
                return persisted.result(raise_on_failure=raise_on_failure)  # type: ignore[return-value]
            return placeholder  # type: ignore[return-value]
        return placeholder.load()  # type: ignore[no-any-return]

    def _persisted_state(self) -> State[Any] | None:
        """The run's state from the API when Prefect persisted its result, else None."""
        from prefect.results import ResultRecordMetadata  # type: ignore[attr-defined]

        try:
            state = super().state
        except Exception:
            return None
        if state.is_completed() and isinstance(state.data, ResultRecordMetadata) \
                and state.data.storage_key:
            return state
        return None

    def _release(self, placeholder: ReleasedResult) -> None:
        """Drop the client's hold on the result so Dask deletes it from the worker."""
        self._released = placeholder
        self._final_state = None  # a result fetched to the client goes too
        self._wrapped_future.release()  # type: ignore[no-untyped-call]

    def _restore(self, wrapped: distributed.Future[Any]) -> None:
        """Point at a freshly loaded copy of the result on the cluster."""
        self._wrapped_future = wrapped
        self._released = None


class _ReleasedFromCluster(ReleasedResult):
    """A :class:`ReleasedResult` for a value the client never held: no type or size."""

    __slots__ = ()

    def __repr__(self) -> str:
        where = ""
        if self.target is not None:
            where = f", reloadable from {redact(self.target.location)}"
        return (
            f"<ReleasedResult of task {self.task_name!r} (run {self.task_run_id}): "
            f"released from the Dask cluster{where}>"
        )


def _metadata() -> Any:
    """Result metadata for a state rebuilt on the client (nothing persisted)."""
    from prefect.results import ResultRecordMetadata  # type: ignore[attr-defined]
    from prefect.serializers import PickleSerializer

    return ResultRecordMetadata(storage_key=None, serializer=PickleSerializer())


def _end_on_workers(runner: DaskTaskRunner) -> None:
    """Tell every worker the flow run is over, so they drop what they kept for it."""
    from prefect_ds._release.flow_runs import end

    flow_run_id = getattr(runner, "_flow_run_id", None)
    client = getattr(runner, "_client", None)
    if flow_run_id is None or client is None:
        return
    try:
        client.run(end, flow_run_id)
    except Exception:  # the cluster may be gone already; its workers' records with it
        logger.debug("Could not tell the workers that flow run %s ended", flow_run_id,
                     exc_info=True)


def _fast_path(client: distributed.Client) -> bool:
    """Whether task runs can go through :mod:`prefect_ds._dask.submit` on this cluster."""
    from prefect_ds._dask import internals

    missing = internals.missing()
    if missing:
        internals.warn_fallback("Prefect lacks " + ", ".join(missing))
        return False
    from prefect_ds._dask.submit import register_worker_state

    try:
        register_worker_state(client)
    except Exception as exc:
        internals.warn_fallback(f"its worker plugin could not be registered: {exc!r}")
        return False
    return True


def _completed(state: Any) -> bool:
    """Runs on a worker, next to the result: whether the task run completed."""
    is_completed = getattr(state, "is_completed", None)
    return bool(is_completed()) if callable(is_completed) else True


def _load_target(target: StoredTarget) -> Any:
    """Runs on a worker: read a released, checkpointed result back from its target."""
    return target.load()


class _DaskGraph(Graph):
    """:class:`Graph`'s consumer counting; releasing and reloading happen on the cluster."""

    def __init__(self, client: distributed.Client | None = None) -> None:
        super().__init__()
        self.client = client
        # Weak: the runner must not keep a result alive that the flow has dropped.
        self._futures: dict[UUID, weakref.ref[DSDaskFuture[Any]]] = {}
        self._targets: dict[UUID, StoredTarget] = {}

    def track(self, run_id: UUID, future: DSDaskFuture[Any], target: StoredTarget | None) -> None:
        with self._lock:
            self._futures[run_id] = weakref.ref(future)
            if target is not None:
                self._targets[run_id] = target

    def release(self, node: Node) -> list[Any]:
        # Called with the lock held, from Dask's callback thread or the flow's thread.
        if node.task_run_id is None or node.completed is False:
            return []  # a failed run keeps its state and error, as on threads
        ref = self._futures.get(node.task_run_id)
        future = ref() if ref is not None else None
        if future is None or future.released is not None:
            return []
        node.placeholder = _ReleasedFromCluster(
            node.task_name,
            node.task_run_id,
            "unknown",
            0,
            target=self._targets.get(node.task_run_id),
        )
        future._release(node.placeholder)
        logger.debug("Released the result of task %s on the Dask cluster", node.label)
        return []

    def counted(self, node: Node) -> threading.Event | None:
        """The event the node's future waits on until its run was counted finished."""
        with self._lock:
            ref = self._futures.get(node.task_run_id) if node.task_run_id else None
        future = ref() if ref is not None else None
        return future._counted if future is not None else None

    def target(self, run_id: UUID) -> StoredTarget | None:
        with self._lock:
            return self._targets.get(run_id)

    def put_back(self, node: Node) -> None:
        with node.reload_lock:
            with self._lock:
                placeholder = node.placeholder
                ref = self._futures.get(node.task_run_id) if node.task_run_id else None
                future = ref() if ref is not None else None
            if placeholder is None or future is None or placeholder.target is None:
                return
            if self.client is None:
                raise RuntimeError("DSDaskTaskRunner is not started")
            loaded = self.client.submit(_load_target, placeholder.target, pure=False)
            with self._lock:
                future._restore(loaded)
                node.placeholder = None
            logger.debug("Reloaded the result of task %s from %s", node.label, placeholder.target)

    def forget_all(self) -> None:
        with self._lock:
            self._futures.clear()
            self._targets.clear()
        super().forget_all()


def _finished(graph: _DaskGraph, node: Node, future: distributed.Future[Any]) -> None:
    """Dask's callback when a task run is done: learn whether it completed (on the
    cluster, so its result never travels here), then count it finished."""
    client = graph.client
    try:
        if client is None or future.status != "finished":
            raise RuntimeError("no state to look at")
        probe = client.submit(_completed, future, pure=False)
    except Exception:
        node.completed = False
        _count_finished(graph, node)
        return

    def learned(done: distributed.Future[Any]) -> None:
        try:
            node.completed = bool(done.result())
        except Exception:
            node.completed = False
        _count_finished(graph, node)

    probe.add_done_callback(learned)  # type: ignore[no-untyped-call]


def _count_finished(graph: _DaskGraph, node: Node) -> None:
    try:
        graph.finished(node, None)
    except Exception:  # a failed release must not break Dask's callback thread
        logger.warning("Could not release results after task %s", node.label, exc_info=True)
    finally:
        counted = graph.counted(node)
        if counted is not None:
            counted.set()


def _without_released(wait_for: Any) -> Any:
    """``wait_for`` without released futures: they finished, and their Dask keys are gone."""
    if wait_for is None:
        return None

    def drop(obj: Any) -> Any:
        if isinstance(obj, DSDaskFuture) and obj.released is not None:
            return None
        return obj

    return visit_collection(wait_for, visit_fn=drop, return_data=True)


def _upstream_assets(graph: _DaskGraph, run_ids: Iterable[UUID]) -> list[Any]:
    """The checkpoint targets of these upstream runs, as Prefect assets.

    On threads a task's upstream assets come from the flow run context, where the
    upstream checkpoint recorded its target; a Dask worker gets a fresh context for each
    task, so the client hands them over as the task's ``asset_deps`` instead.
    """
    from prefect.assets import Asset

    from prefect_ds._checkpoint.lineage import asset_key

    assets = []
    for run_id in run_ids:
        target = graph.target(run_id)
        if target is not None:
            try:
                assets.append(Asset(key=asset_key(target.format, target.location)))
            except Exception:  # lineage never fails a submission
                logger.debug("No asset key for %s", target.location, exc_info=True)
    return assets


class DSDaskTaskRunner(DaskTaskRunner):
    """A :class:`prefect_dask.DaskTaskRunner` that releases results from the workers.

    Takes the same arguments as ``DaskTaskRunner``. Once every task submitted with a
    result as input (in its arguments, ``wait_for`` or through ``.map``) has finished,
    the client lets go of that result and Dask deletes it from worker memory. A
    checkpointed result is read back from its target when it is needed again; any
    other result becomes a :class:`~prefect_ds.ReleasedResult`. Results no task consumed
    are kept.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._graph = _DaskGraph()
        self._flow_run_id: UUID | None = None
        self._fast: bool | None = None  # decided at the first submission

    def __enter__(self) -> DSDaskTaskRunner:
        super().__enter__()  # type: ignore[no-untyped-call]
        self._graph = _DaskGraph()
        self._flow_run_id = current_flow_run_id()
        self._fast = None
        return self

    def __exit__(self, *args: Any) -> None:
        try:
            _end_on_workers(self)
            super().__exit__(*args)
        finally:
            self._graph.forget_all()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_graph", None)
        state["_fast"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._graph = _DaskGraph()

    def submit(  # type: ignore[override]
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[RunInput]] | None = None,
    ) -> DSDaskFuture[Any]:
        graph = self._graph
        graph.client = self.client
        if self._flow_run_id is None:  # the flow run's context is gone by __exit__
            self._flow_run_id = current_flow_run_id()
        data = data_ids(parameters, task.name)
        node = graph.add(task.name, data,
                         waited_ids(wait_for, dependencies) | other_ids(parameters))
        try:
            graph.reload(node)  # released upstream results this task receives
            assets = _upstream_assets(graph, data)
            if assets:
                task = task.with_options(asset_deps=[*(task.asset_deps or ()), *assets])
            wrapped = self._submit_to_dask(
                task, parameters, _without_released(wait_for), dependencies
            )
        except BaseException:
            graph.withdraw(node)
            raise
        task_run_id: UUID = wrapped.task_run_id  # type: ignore[attr-defined]
        ours: DSDaskFuture[Any] = DSDaskFuture(task_run_id=task_run_id, wrapped_future=wrapped)
        ours._counted = threading.Event()
        graph.registered(node, task_run_id)
        graph.track(task_run_id, ours, planned_target(task.fn, parameters))
        wrapped.add_done_callback(  # type: ignore[no-untyped-call]
            functools.partial(_finished, graph, node)
        )
        return ours

    def _submit_to_dask(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Any,
        dependencies: dict[str, set[RunInput]] | None,
    ) -> distributed.Future[Any]:
        """One task run on the cluster: the Dask future of its final state.

        Submitted by :mod:`prefect_ds._dask.submit`, whose workers keep Prefect's
        settings and API clients between runs; where a Prefect internal it needs is
        missing, or the worker plugin cannot be registered, by prefect-dask's own
        ``submit`` (one warning says so).
        """
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        if self._fast is None:
            self._fast = _fast_path(self.client)
        if not self._fast:
            future = super().submit(task, parameters, wait_for, dependencies)
            return future.wrapped_future
        from prefect_ds._dask.submit import submit

        return submit(
            self.client,
            task,
            self._optimize_futures(parameters),
            self._optimize_futures(wait_for) if wait_for else None,
            dependencies,
        )

    def map(  # type: ignore[override]
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
    ) -> PrefectFutureList[DSDaskFuture[Any]]:
        # map resolves the futures it maps over in this thread: put released results
        # back and hold them until the mapped calls are submitted (each then counts as
        # a consumer through its `dependencies`).
        self._graph.client = self.client
        top_level: set[UUID] = set()
        for value in parameters.values():
            top_level.update(
                item.id
                for item in collect_task_run_inputs_sync(value, max_depth=0)
                if isinstance(item, TaskRunResult)
            )
        pinned = self._graph.pin(top_level)
        try:
            _targets.check_map(task.fn, lambda: mapped_calls(task, parameters, wait_for))
            return super().map(task, parameters, wait_for)  # type: ignore[return-value]
        finally:
            self._graph.unpin(pinned)
