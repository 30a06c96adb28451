"""Consumer counting and result release for DSTaskRunner.

Each submitted task run is a :class:`Node`. A consumer counts as pending on each of its
upstream nodes from its submission until it has finished; when a finished upstream
has had consumers and none is pending, its result is released:

- a result Prefect itself persisted is detached from the run's state, which then
  carries only Prefect's result metadata, so Prefect reads it back on demand;
- any other result is replaced, in the run's result record, by a
  :class:`~prefect_ds.ReleasedResult`, which knows the checkpoint target when the task
  recorded one with :func:`prefect_ds._release.targets.remember` and can then reload it.

A consumer submitted after a release gets the data again when it can be read back
(:meth:`Graph.reload`, in its worker thread, before the task starts) and otherwise
fails at submission with :class:`ResultReleasedError`. Nothing here imports Prefect's
task runner: ``_runner`` wires it in.
"""

from __future__ import annotations

import logging
import threading
import traceback
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import State
from prefect.results import ResultRecord  # type: ignore[attr-defined]

from prefect_ds._errors import ResultReleasedError
from prefect_ds._redact import redact
from prefect_ds._release import targets as _targets
from prefect_ds._release.frees import wait_until_freed, weak_refs
from prefect_ds._release.placeholder import ReleasedResult

logger = logging.getLogger("prefect_ds.runner")


@dataclass(eq=False)
class Node:
    """One task run submitted through the runner."""

    task_name: str
    upstream: tuple[Node, ...] = ()
    task_run_id: UUID | None = None
    pending: int = 0
    consumers: int = 0
    finished: bool = False
    state: weakref.ref[State[Any]] | None = None
    placeholder: ReleasedResult | None = None
    offloaded: bool = False
    to_reload: list[Node] = field(default_factory=list)
    reload_lock: threading.Lock = field(default_factory=threading.Lock)
    # Prefect's in-memory result cache of the flow run (ResultStore.cache), which keeps
    # a persisted result alive after its state let go of it.
    result_cache: Any = None
    # False once the run is known to have ended in anything but Completed (the Dask
    # runner learns it from the cluster); such a run keeps its state and error.
    completed: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.task_name!r} (task run {self.task_run_id})"


def _releasable(node: Node) -> bool:
    return (
        node.finished
        and node.consumers > 0
        and node.pending == 0
        and node.placeholder is None
        and not node.offloaded
    )


class Graph:
    """The nodes of one flow run's task runner, and the lock that guards their counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[UUID, Node] = {}

    # -- submission (the submitting thread) ---------------------------------------

    def add(
        self,
        task_name: str,
        data_upstream: Iterable[UUID],
        other_upstream: Iterable[UUID],
        result_cache: Any = None,
    ) -> Node:
        """Create the node of a task about to be submitted and count it as a consumer.

        ``data_upstream`` are runs whose results the task receives as arguments; one
        that was released and cannot be read back raises :class:`ResultReleasedError`,
        one that can is reloaded before the task starts. ``other_upstream`` are runs it
        only waits for or depends on.
        """
        data_ids = set(data_upstream)
        with self._lock:
            upstream = {
                self._nodes[run_id]
                for run_id in data_ids | set(other_upstream)
                if run_id in self._nodes
            }
            node = Node(task_name, upstream=tuple(upstream), result_cache=result_cache)
            for up in upstream:
                if up.task_run_id in data_ids and up.placeholder is not None:
                    if not up.placeholder.reloadable:
                        raise ResultReleasedError(
                            f"Task {task_name!r} was submitted with the result of task "
                            f"{up.label} as an argument, but that result is already "
                            f"gone. {up.placeholder.explain()}"
                        )
                    node.to_reload.append(up)
            for up in upstream:
                up.pending += 1
                up.consumers += 1
        return node

    def registered(self, node: Node, task_run_id: UUID) -> None:
        """Record the run id Prefect gave the submitted task."""
        with self._lock:
            node.task_run_id = task_run_id
            self._nodes[task_run_id] = node

    def withdraw(self, node: Node) -> None:
        """Undo :meth:`add` for a task whose submission failed."""
        with self._lock:
            for up in node.upstream:
                up.pending -= 1
                up.consumers -= 1

    def pin(self, run_ids: Iterable[UUID]) -> list[Node]:
        """Keep these runs' results while the caller reads them (``map`` resolving).

        Released results are put back first: loaded from their target, or a
        :class:`ResultReleasedError` when they cannot be.
        """
        with self._lock:
            nodes = [self._nodes[run_id] for run_id in set(run_ids) if run_id in self._nodes]
            for node in nodes:
                if node.placeholder is not None and not node.placeholder.reloadable:
                    raise ResultReleasedError(
                        f"Cannot map over the result of task {node.label}: it is already "
                        f"gone. {node.placeholder.explain()}"
                    )
                node.pending += 1
        for node in nodes:
            self.put_back(node)
        return nodes

    def unpin(self, nodes: Iterable[Node]) -> None:
        """End :meth:`pin`; releases what nothing else is waiting for any more."""
        with self._lock:
            for node in nodes:
                node.pending -= 1
            refs = [ref for node in nodes if _releasable(node) for ref in self.release(node)]
        _settle(refs)

    # -- the task's worker thread ---------------------------------------------------

    def reload(self, node: Node) -> None:
        """Before a late consumer starts, put back the released results it receives."""
        for up in node.to_reload:
            self.put_back(up)
        node.to_reload.clear()

    def finished(self, node: Node, state: object) -> None:
        """After a task ran, before its future resolves: release what is now unused.

        Waits until the released values are really freed (see ``_settle``), so the
        next task in a chain never starts while they are still in memory.
        """
        if isinstance(state, State) and state.is_failed():
            drop_frames(state)
        with self._lock:
            node.finished = True
            if isinstance(state, State):
                node.state = weakref.ref(state)
            candidates = [*node.upstream, node]
            for up in node.upstream:
                up.pending -= 1
            refs = [ref for up in candidates if _releasable(up) for ref in self.release(up)]
        _settle(refs)

    def forget_all(self) -> None:
        """Drop every node and the checkpoint targets recorded for their runs."""
        with self._lock:
            run_ids = list(self._nodes)
            self._nodes.clear()
        for run_id in run_ids:
            _targets.forget(run_id)

    # -- hooks: where results live (the Dask runner overrides both) ----------------------

    def release(self, node: Node) -> list[weakref.ref[Any]]:
        """Hook: detach the node's result from its state; weak references to what was freed.

        Called with the lock held. The value itself never outlives this call.
        """
        state = node.state() if node.state is not None else None
        if state is None or not state.is_completed() or node.task_run_id is None:
            return []
        record = state.data
        if not isinstance(record, ResultRecord):
            return []
        value = record.result
        if isinstance(value, ReleasedResult):
            return []
        refs = weak_refs(value)
        if record.is_persisted:
            # Prefect stored it; its state reads it back from storage on demand. The
            # record itself may be shared with Prefect's result cache: leave it alone.
            state.data = record.metadata
            node.offloaded = True
            _evict(node.result_cache, record)
        else:
            target = _targets.lookup(node.task_run_id)
            node.placeholder = ReleasedResult.of(value, node.task_name, node.task_run_id, target)
            record.result = node.placeholder
        logger.debug("Released the result of task %s", node.label)
        return refs

    def put_back(self, node: Node) -> None:
        """Hook: load a released, reloadable result back where consumers will read it."""
        with node.reload_lock:
            with self._lock:
                placeholder = node.placeholder
            if placeholder is None:
                return  # never released, or another consumer put it back already
            try:
                value = placeholder.load()
            except Exception as exc:
                where = redact(placeholder.target.location) if placeholder.target else "its target"
                raise ResultReleasedError(
                    f"Could not reload the released result of task {node.label} from "
                    f"{where}: {exc}. It was stored there when the task ran; if it was "
                    f"removed since, run the flow again to recompute it."
                ) from exc
            with self._lock:
                state = node.state() if node.state is not None else None
                record = state.data if state is not None else None
                if isinstance(record, ResultRecord) and record.result is placeholder:
                    record.result = value
                node.placeholder = None
            logger.debug("Reloaded the result of task %s from %s", node.label, placeholder.target)


def _evict(cache: Any, record: object) -> None:
    """Drop ``record`` from Prefect's in-memory result cache: it still holds the value."""
    if cache is None:
        return
    try:
        keys = [key for key, cached in list(cache.items()) if cached is record]
        for key in keys:
            cache.pop(key, None)
    except Exception:  # the cache is Prefect's; never fail a release over it
        logger.debug("Could not evict a released result from Prefect's cache", exc_info=True)


def drop_frames(state: State[Any]) -> None:
    """Free the local variables held by a failed run's traceback (its input frames).

    The error, its message and its traceback's lines stay; only the frames' locals go,
    as :func:`traceback.clear_frames` does. Chained causes are cleared too.
    """
    record = state.data
    error = record.result if isinstance(record, ResultRecord) else record
    seen: set[int] = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _settle(refs: list[weakref.ref[Any]]) -> None:
    if refs and not wait_until_freed(refs):
        logger.debug("A released result is still referenced outside Prefect's runtime")
