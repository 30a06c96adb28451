"""Glue to the Prefect task run a checkpointed call runs in: its arguments by name, its
context, its logger, its cache policy, and the ``Cached`` end state of a hit.

Prefect is imported lazily here, so a checkpointed function called outside any flow pays
for none of it.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.context import TaskRunContext

    from prefect_ds._checkpoint.fingerprint import Fingerprint

logger = logging.getLogger("prefect_ds.checkpoint")


def named_arguments(bound: inspect.BoundArguments) -> dict[str, Any]:
    """A call's arguments by name, defaults applied and ``**kwargs`` flattened: what a
    location template is rendered from."""
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if bound.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


def is_pending(value: object) -> bool:
    """Whether ``value`` is a future or state whose data is not known yet."""
    futures = sys.modules.get("prefect.futures")
    states = sys.modules.get("prefect.client.schemas.objects")
    return (futures is not None and isinstance(value, futures.PrefectFuture)) or (
        states is not None and isinstance(value, states.State))


def is_prefect_task(obj: object) -> bool:
    tasks = sys.modules.get("prefect.tasks")  # not imported -> cannot be a Task
    return tasks is not None and isinstance(obj, tasks.Task)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's logger for the current run, or this module's logger outside a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def hashed_inputs(policy: object, names: list[str]) -> list[str]:
    """Which of ``names`` a Prefect cache policy pickles and hashes to compute its key."""
    from prefect.cache_policies import CacheKeyFnPolicy, CompoundCachePolicy, Inputs

    if isinstance(policy, CompoundCachePolicy):
        hashed = {n for p in policy.policies for n in hashed_inputs(p, names)}
        return [n for n in names if n in hashed]
    if isinstance(policy, Inputs):
        return [n for n in names if n not in policy.exclude]
    return list(names) if isinstance(policy, CacheKeyFnPolicy) else []


class Call:
    """What one call knows about the Prefect task run it belongs to (if any)."""

    def __init__(self, context: TaskRunContext | None) -> None:
        self.context = context
        self.arguments: dict[str, Any] = {}
        self.fingerprint: Fingerprint | None = None  # computed once, when asked for
        if context is not None:
            self.task_run_id: UUID | None = context.task_run.id
            self.flow_run_id: UUID | None = context.task_run.flow_run_id
            self.label = f"task run {context.task_run.name!r} of task {context.task.name!r}"
        else:
            self.task_run_id = None
            self.flow_run_id = None
            self.label = ""

    def upstream(self) -> dict[str, set[UUID]]:
        """For each argument, the task runs Prefect resolved it from (its task inputs)."""
        if self.context is None:
            return {}
        inputs = self.context.task_run.task_inputs or {}
        out: dict[str, set[UUID]] = {}
        for name, items in inputs.items():
            ids = {getattr(item, "id") for item in items  # noqa: B009
                   if type(item).__name__ == "TaskRunResult"}
            if ids and not name.startswith("__"):
                out[name] = ids
        return out


def current_call(wrapper: Callable[..., Any]) -> Call:
    """The Prefect task run executing ``wrapper`` right now, if any."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None:
        return Call(None)
    task_fn = context.task.fn
    ours = inspect.unwrap(task_fn, stop=lambda f: f is wrapper) is wrapper
    return Call(context if ours else None)


def mark_cached() -> None:
    """End the current task run in Prefect's ``Cached`` state, as a cache hit would.

    Prefect names a completed run ``Cached`` when its transaction is already committed,
    which is how its own cache hits look: the result existed, there is nothing to write
    and nothing to roll back. A checkpoint hit is exactly that, so the task's active
    transaction is marked committed before the loaded frame is returned.
    """
    from prefect.transactions import TransactionState, get_transaction

    transaction = get_transaction()
    if transaction is not None and transaction.state == TransactionState.ACTIVE:
        transaction.state = TransactionState.COMMITTED

