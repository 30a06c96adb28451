"""``@checkpoint``: skip a task when its DataFrame is already stored at its location.

``checkpoint`` wraps the task *function* and sits under Prefect's ``@task``, so the
Prefect task stays outermost and direct calls, ``.submit``, ``.map``, ``with_options``,
retries and async tasks behave as they always do::

    @task
    @checkpoint("data/{region}.parquet")
    def clean(region): ...

Each call binds its arguments (defaults applied), renders the location and then either
loads the stored frame (the body does not run, the task run ends in a ``Cached`` state)
or runs the body and stores its DataFrame atomically. Prefect's own result persistence is
not used for this: it writes envelopes rather than readable files, overwrites files it did
not write, and fails instead of re-running when a file is deleted.

:func:`checkpoint_task` is ``@task`` + ``@checkpoint`` with the Prefect options a
checkpointed task wants by default: no input hashing, no Prefect result persistence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from uuid import UUID

import pandas as pd

from . import _capabilities, _claims, _lineage, _targets
from ._errors import CheckpointResultError, CorruptTargetError
from ._files import FileFormat, filesystem
from ._fingerprint import Fingerprint, Part
from ._handler import PandasResultHandler
from ._locking import async_target_lock, target_lock
from ._staleness import Staleness

if TYPE_CHECKING:
    from prefect.context import TaskRunContext
    from prefect.tasks import Task

F = TypeVar("F", bound=Callable[..., Any])
OnCorrupt = Literal["error", "recompute"]
_ON_CORRUPT = ("error", "recompute")

logger = logging.getLogger("prefect_ds.checkpoint")

# Task options that decide whether Prefect hashes inputs or stores results itself; when a
# user sets any of them, checkpoint_task leaves that decision to the user.
_CACHE_OPTIONS = ("cache_policy", "cache_key_fn")
_PERSIST_OPTIONS = (
    "persist_result",
    "cache_policy",
    "cache_key_fn",
    "result_storage",
    "result_serializer",
    "result_storage_key",
)


def checkpoint(
    location: str | PandasResultHandler,
    format: str | None = None,
    *,
    read_kwargs: Mapping[str, Any] | None = None,
    write_kwargs: Mapping[str, Any] | None = None,
    invalidate_on: Iterable[Part] = (),
    strict: bool = False,
    on_corrupt: OnCorrupt = "error",
) -> Callable[[F], F]:
    """Store a task function's DataFrame at ``location`` and skip the call when it exists.

    ``location`` is a template filled from the function's arguments (defaults applied),
    e.g. ``"data_{id}.csv"``, or a ready :class:`PandasResultHandler`. ``format`` names the
    format when the suffix or scheme does not tell it; ``read_kwargs`` and
    ``write_kwargs`` are passed to the format. Put it *under* ``@task``.

    A location that already exists is loaded and used as is, whoever wrote it; it is
    never overwritten. An exception in the function writes nothing; so does a return
    value that is not a DataFrame, which raises :class:`CheckpointResultError`.

    ``invalidate_on`` opts into staleness checks: ``"code"`` (the function's normalised
    source and the same-module helpers it names), ``"inputs"`` (the argument values,
    DataFrames by content) and callables ``f(arguments) -> str``. Their fingerprint is
    stored with the target; when a part differs the call recomputes, logs which part
    changed and replaces the target atomically. A target without a fingerprint (written
    by someone else) is used as is unless ``strict=True``. See ``prefect_ds._fingerprint``
    for exactly what is hashed.

    ``on_corrupt`` decides what a stored target that cannot be trusted (truncated,
    garbled, inconsistent: its format raises :class:`CorruptTargetError`) does:
    ``"error"`` (the default) raises that error, which names the target and the problem,
    and leaves the target for inspection; ``"recompute"`` logs a warning, runs the
    function and replaces the target atomically. A wrong frame is never returned.
    """
    if on_corrupt not in _ON_CORRUPT:
        raise ValueError(
            f"on_corrupt must be one of {', '.join(map(repr, _ON_CORRUPT))}; got {on_corrupt!r}"
        )
    if isinstance(location, PandasResultHandler):
        if format is not None or read_kwargs is not None or write_kwargs is not None:
            raise TypeError(
                f"checkpoint({location!r}, ...) got a PandasResultHandler together with "
                f"format/read_kwargs/write_kwargs; pass those to the PandasResultHandler instead"
            )
        handler = location
    else:
        handler = PandasResultHandler(
            location, format, read_kwargs=read_kwargs, write_kwargs=write_kwargs
        )

    def decorate(fn: F) -> F:
        return cast(F, _Checkpointed(handler, fn, invalidate_on, strict, on_corrupt).wrapper)

    return decorate


def checkpoint_task(
    location: str | PandasResultHandler,
    format: str | None = None,
    *,
    read_kwargs: Mapping[str, Any] | None = None,
    write_kwargs: Mapping[str, Any] | None = None,
    invalidate_on: Iterable[Part] = (),
    strict: bool = False,
    on_corrupt: OnCorrupt = "error",
    **task_options: Any,
) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """``@task(...)`` over ``@checkpoint(...)``, with defaults fit for large DataFrames.

    Prefect's default cache policy pickles and hashes every input of every call, and
    Prefect's result persistence would store a second copy of each frame; a checkpointed
    task needs neither, so unless ``task_options`` decide otherwise this sets
    ``cache_policy=NO_CACHE`` and ``persist_result=False``. Every other keyword goes to
    :func:`prefect.task` (``retries``, ``name``, ``tags``, ...).
    """
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    options = dict(task_options)
    if not any(name in task_options for name in _CACHE_OPTIONS):
        options["cache_policy"] = NO_CACHE
    if not any(name in task_options for name in _PERSIST_OPTIONS):
        options["persist_result"] = False
    wrap = checkpoint(location, format, read_kwargs=read_kwargs, write_kwargs=write_kwargs,
                      invalidate_on=invalidate_on, strict=strict, on_corrupt=on_corrupt)

    def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
        return cast("Task[Any, Any]", task(**options)(wrap(fn)))

    return decorate


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


def _is_prefect_task(obj: object) -> bool:
    tasks = sys.modules.get("prefect.tasks")  # not imported -> cannot be a Task
    return tasks is not None and isinstance(obj, tasks.Task)


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's logger for the current run, or this module's logger outside a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def _hashed_inputs(policy: object, names: list[str]) -> list[str]:
    """Which of ``names`` a Prefect cache policy pickles and hashes to compute its key."""
    from prefect.cache_policies import CacheKeyFnPolicy, CompoundCachePolicy, Inputs

    if isinstance(policy, CompoundCachePolicy):
        hashed = {n for p in policy.policies for n in _hashed_inputs(p, names)}
        return [n for n in names if n in hashed]
    if isinstance(policy, Inputs):
        return [n for n in names if n not in policy.exclude]
    return list(names) if isinstance(policy, CacheKeyFnPolicy) else []


class _Call:
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


class _Checkpointed:
    """One checkpointed function: its handler, its signature and its wrapper."""

    def __init__(self, handler: PandasResultHandler, fn: Callable[..., Any],
                 invalidate_on: Iterable[Part] = (), strict: bool = False,
                 on_corrupt: OnCorrupt = "error") -> None:
        if _is_prefect_task(fn):
            raise TypeError(
                f"@checkpoint({handler.location!r}) was put above @task on "
                f"{getattr(fn, 'name', fn)!r}; it wraps the task's function, so it must sit "
                f"under @task:\n\n    @task\n    @checkpoint({handler.location!r})\n"
                f"    def {getattr(fn, '__name__', 'fn')}(...): ..."
            )
        if not callable(fn):
            raise TypeError(f"@checkpoint({handler.location!r}) needs a function, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"@checkpoint({handler.location!r}) cannot wrap the generator "
                f"{fn.__qualname__!r}: a checkpoint stores one DataFrame per call; return it"
            )
        self.handler = handler
        self.fn = fn
        self.on_corrupt = on_corrupt
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.signature = inspect.signature(fn)
        kinds = {p.kind for p in self.signature.parameters.values()}
        if inspect.Parameter.VAR_KEYWORD not in kinds:  # **kwargs may supply any field
            handler.template.check_fields(
                self.signature.parameters, f"function {self.name!r}"
            )
        self.staleness = Staleness(invalidate_on, strict, handler.format, fn,
                                   f"@checkpoint({handler.location!r}) of {self.name!r}")
        self._warned_hashing = False  # no lock: a rare second warning is harmless
        self.wrapper = self._make_wrapper()

    # -- per call -------------------------------------------------------------------------

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults applied, ``**kwargs`` flattened."""
        return named_arguments(self.signature.bind(*args, **kwargs))

    def current(self) -> _Call:
        """The Prefect task run executing this function right now, if it is ours."""
        from prefect.context import TaskRunContext

        context = TaskRunContext.get()
        if context is None:
            return _Call(None)
        task_fn = context.task.fn
        ours = inspect.unwrap(task_fn, stop=lambda f: f is self.wrapper) is self.wrapper
        return _Call(context if ours else None)

    def label(self, call: _Call) -> str:
        return call.label or f"a call of {self.name!r}"

    def warn_if_hashing(self, call: _Call, arguments: Mapping[str, Any]) -> None:
        """Point at the fix once when Prefect's cache policy pickles DataFrame inputs."""
        if call.context is None or self._warned_hashing:
            return
        task = call.context.task
        frames = [n for n, v in arguments.items() if isinstance(v, (pd.DataFrame, pd.Series))]
        frames = _hashed_inputs(task.cache_policy, frames) if frames else []
        if not frames:
            return
        self._warned_hashing = True
        _run_logger().warning(
            "task %r is checkpointed, but its cache policy makes Prefect pickle and hash its "
            "DataFrame inputs (%s) on every call, which costs time and memory and is not "
            "needed. Use @prefect_ds.checkpoint_task(...) or "
            "@task(cache_policy=NO_CACHE, persist_result=False).",
            task.name,
            ", ".join(frames),
        )

    def prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, _Call, _claims.Claim]:
        arguments = self.arguments(args, kwargs)
        location = self.handler.render(**arguments)
        call = self.current()
        call.arguments = arguments
        self.warn_if_hashing(call, arguments)
        claim = _claims.Claim(
            function=self.fn,
            label=self.label(call),
            task_run_id=call.task_run_id,
            plain=_claims.plain_arguments(arguments),
        )
        return location, call, claim

    def load(self, location: str) -> pd.DataFrame | None:
        """The stored frame, or None when nothing is stored at ``location``."""
        fmt = self.handler.format
        if not fmt.exists(location):
            return None
        return fmt.read(location, **self.handler.read_kwargs)

    def fresh(self, location: str, call: _Call) -> bool:
        """False when ``invalidate_on`` finds the existing target stale (logged why)."""
        staleness = self.staleness
        if not staleness.active or not self.handler.format.exists(location):
            return True
        stored = staleness.stored(location)
        if stored is None:  # written by someone else, or before invalidate_on was set
            if not staleness.strict:
                return True
            staleness.log_stale(_run_logger(), location, [])
            return False
        call.fingerprint = staleness.fingerprint(call.arguments)
        changed = call.fingerprint.changed(stored)
        if not changed:
            return True
        staleness.log_stale(_run_logger(), location, changed)
        return False

    def load_fresh(self, location: str, call: _Call) -> pd.DataFrame | None:
        """The stored frame if it exists and is fresh, else None (the body runs)."""
        try:
            stored = self.load(location) if self.fresh(location, call) else None
        except CorruptTargetError as exc:
            if self.on_corrupt == "error":
                raise
            _run_logger().warning(
                "checkpoint %s is corrupt (%s); on_corrupt='recompute': running %s and "
                "replacing it", location, exc, self.label(call),
            )
            return None
        if stored is not None:
            parts = call.fingerprint.parts if call.fingerprint is not None else None
            _lineage.report("loaded", self.handler.format, location, stored, parts)
        return stored

    def still_stale(self, location: str, call: _Call) -> bool:
        """Whether an existing target is one this call found stale (so it may replace it).

        Checked again right before writing: if another process stored a fresh target
        meanwhile, that one is kept.
        """
        if not self.staleness.active:
            return False
        stored = self.staleness.stored(location)
        if stored is None:
            return self.staleness.strict
        wanted = call.fingerprint or self.staleness.fingerprint(call.arguments)
        return bool(wanted.changed(stored))

    def corrupt(self, location: str) -> bool:
        """With ``on_corrupt="recompute"``: whether the target there now is corrupt, so
        this call may replace it (checked right before writing, like staleness)."""
        if self.on_corrupt != "recompute":
            return False
        try:
            self.handler.format.read(location, **self.handler.read_kwargs)
        except CorruptTargetError:
            return True
        except FileNotFoundError:
            return False
        return False

    def discard(self, location: str) -> None:
        """Remove an unreadable target's data file (or, for other formats, the target)."""
        fmt = self.handler.format
        _run_logger().warning("removing corrupt checkpoint %s before writing it again",
                              location)
        if isinstance(fmt, FileFormat):
            fs, path = filesystem(fmt.data_location(location), **fmt.storage_options)
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)
        else:
            fmt.delete(location)

    def write_target(self, df: pd.DataFrame, location: str, call: _Call) -> None:
        """Write atomically, with the call's fingerprint when ``invalidate_on`` is set."""
        fmt = self.handler.format
        parts: Mapping[str, str] | None = None
        if self.staleness.active:
            if call.fingerprint is None:
                call.fingerprint = self.staleness.fingerprint(call.arguments)
            parts = call.fingerprint.parts
            _capabilities.write(fmt, df, location, self.staleness.metadata(call.fingerprint),
                                **self.handler.write_kwargs)
        else:
            fmt.write(df, location, **self.handler.write_kwargs)
        _lineage.report("materialized", fmt, location, df, parts)

    def loaded(self, location: str, call: _Call) -> None:
        """Bookkeeping after a hit: log, record the target, show the run as Cached."""
        _run_logger().info("loaded checkpoint %s", location)
        self.remember(location, call)
        if call.context is not None:
            _mark_cached()

    def check_result(self, result: object, location: str, call: _Call) -> pd.DataFrame:
        if isinstance(result, pd.DataFrame):
            return result
        who = f"task {call.context.task.name!r}" if call.context else f"function {self.name!r}"
        kind = type(result)
        raise CheckpointResultError(
            f"{who} returned a {kind.__module__}.{kind.__qualname__}, but "
            f"@checkpoint({self.handler.location!r}) stores only pandas DataFrames; nothing "
            f"was written to {location!r}. Return a DataFrame (a Series: .to_frame()), or "
            f"remove @checkpoint from this function."
        )

    def store(self, df: pd.DataFrame, location: str, call: _Call) -> None:
        """Write ``df`` atomically, unless someone else has put a target there meanwhile."""
        fmt = self.handler.format
        try:
            present = fmt.exists(location)
        except CorruptTargetError:
            present = True
        if present and not self.corrupt(location) and not self.still_stale(location, call):
            _run_logger().warning(
                "checkpoint %s appeared while %s was computing it (written by another "
                "process?); it was left as it is and this call's result was not stored",
                location,
                self.label(call),
            )
            return
        try:
            self.write_target(df, location, call)
        except CorruptTargetError:
            if self.on_corrupt != "recompute":
                raise
            # The format cannot write into its damaged container (an unreadable HDF5
            # file holds no frame worth keeping): remove it, then write afresh.
            self.discard(location)
            self.write_target(df, location, call)
        _run_logger().info("saved checkpoint %s", location)
        self.remember(location, call)

    def remember(self, location: str, call: _Call) -> None:
        if call.task_run_id is not None:
            _targets.remember(
                call.task_run_id,
                _targets.StoredTarget(location, self.handler.format, self.handler.read_kwargs),
            )

    # -- wrappers -------------------------------------------------------------------------

    def _make_wrapper(self) -> Callable[..., Any]:
        fn = self.fn
        template = self.handler.location

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                location, call, claim = self.prepare(args, kwargs)
                with _claims.claim(call.flow_run_id, location, template, claim):
                    async with async_target_lock(self.handler.format, location):
                        stored = await asyncio.to_thread(self.load_fresh, location, call)
                        if stored is not None:
                            self.loaded(location, call)
                            return stored
                        result = await fn(*args, **kwargs)
                        df = self.check_result(result, location, call)
                        await asyncio.to_thread(self.store, df, location, call)
                        return result

            wrapper: Callable[..., Any] = async_wrapper
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                location, call, claim = self.prepare(args, kwargs)
                with (
                    _claims.claim(call.flow_run_id, location, template, claim),
                    target_lock(self.handler.format, location),
                ):
                    stored = self.load_fresh(location, call)
                    if stored is not None:
                        self.loaded(location, call)
                        return stored
                    result = fn(*args, **kwargs)
                    df = self.check_result(result, location, call)
                    self.store(df, location, call)
                    return result

            wrapper = sync_wrapper

        # Prefect derives a task's key from its function's code; point it at the user's
        # function rather than this wrapper (Prefect's hook for compatible decorators).
        wrapper.__prefect_task_source__ = fn  # type: ignore[attr-defined]
        wrapper.__prefect_ds_checkpoint__ = self.handler  # type: ignore[attr-defined]
        return wrapper


def _mark_cached() -> None:
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

