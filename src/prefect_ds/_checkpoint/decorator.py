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

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from prefect_ds._checkpoint.fingerprint import Part
from prefect_ds._checkpoint.store import ON_CORRUPT, Checkpointed, OnCorrupt
from prefect_ds._handler import ResultHandler
from prefect_ds._redact import redact
from prefect_ds._storage.kinds import check_kind

if TYPE_CHECKING:
    from prefect.tasks import Task

F = TypeVar("F", bound=Callable[..., Any])


def _as_text(location: str | os.PathLike[str] | ResultHandler) -> str:
    """A location argument as text for a message (a handler by its template)."""
    return location.location if isinstance(location, ResultHandler) else os.fspath(location)
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
    location: str | os.PathLike[str] | ResultHandler,
    format: str | None = None,
    *,
    read_kwargs: Mapping[str, Any] | None = None,
    write_kwargs: Mapping[str, Any] | None = None,
    invalidate_on: Iterable[Part] = (),
    strict: bool = False,
    on_corrupt: OnCorrupt = "error",
    lock_timeout: float | None = None,
    storage: object | str | None = None,
    preview: bool | None = None,
    kind: str | None = None,
    versioned: bool | None = None,
    load_version: str | None = None,
) -> Callable[[F], F]:
    """Store a task function's frame at ``location`` and skip the call when it exists.

    ``location`` is a template filled from the function's arguments (defaults applied),
    e.g. ``"data_{id}.csv"``, or a ready :class:`ResultHandler`. ``format`` names the
    format when the suffix or scheme does not tell it; ``read_kwargs`` and
    ``write_kwargs`` are passed to the format. Put it *under* ``@task``.

    A location that already exists is loaded and used as is, whoever wrote it; it is
    never overwritten. An exception in the function writes nothing; so does a return
    value that is not a frame, which raises :class:`CheckpointResultError`.

    The function may return a pandas ``DataFrame`` or ``Series``, a polars ``DataFrame``
    or ``LazyFrame`` (written by streaming where the format can, never collected), or a
    pyarrow ``Table`` or ``RecordBatchReader``. On a hit the stored kind comes back (it is
    recorded with the target; a ``LazyFrame`` comes back as one over the target), unless
    ``kind="pandas"``, ``"polars"`` or ``"arrow"`` asks for another; a target with no
    record (written by someone else) loads as pandas.

    ``invalidate_on`` opts into staleness checks: ``"code"`` (the function's normalised
    source and the same-module helpers it names), ``"inputs"`` (the argument values,
    DataFrames by content) and callables ``f(arguments) -> str``. Their fingerprint is
    stored with the target; when a part differs the call recomputes, logs which part
    changed and replaces the target atomically. A target without a fingerprint (written
    by someone else) is used as is unless ``strict=True``. See
    ``prefect_ds._checkpoint.fingerprint`` for exactly what is hashed.

    ``on_corrupt`` decides what a stored target that cannot be trusted (truncated,
    garbled, inconsistent: its format raises :class:`CorruptTargetError`) does:
    ``"error"`` (the default) raises that error, which names the target and the problem,
    and leaves the target for inspection; ``"recompute"`` logs a warning, runs the
    function and replaces the target atomically. A wrong frame is never returned.

    ``lock_timeout`` (seconds) bounds the wait for another process rendering the same
    target (its holder is logged when the wait starts); past it the call raises
    :class:`TargetLockTimeout`. ``None`` (the default) waits as long as it takes.

    Prefect's own options keep their meaning: ``task.with_options(refresh_cache=True)``
    (or the ``PREFECT_TASKS_REFRESH_CACHE`` setting) runs the function and replaces the
    target; a task's ``cache_expiration`` is the target's maximum age
    (``prefect_ds._checkpoint.refresh``).

    ``location`` may be a ``pathlib.Path``. ``storage`` is a Prefect storage block or a
    saved block's slug (``"s3-bucket/lab"``) used as the root of a relative ``location``,
    with the block's credentials. ``preview=True`` publishes a table artifact of each
    stored frame (``None``: the ``PREFECT_DS_PREVIEW`` environment variable decides).

    ``versioned=True`` keeps every stored frame as a new version of the target: a
    recompute (``invalidate_on``, ``refresh_cache``, ``cache_expiration``) adds a version
    and never deletes one, and a hit loads the latest complete version.
    ``load_version="<id>"`` pins the loaded version: the call loads it whatever the
    staleness settings say, and raises :class:`VersionNotFoundError` if it is not there
    (``docs/versions.md``).
    """
    if lock_timeout is not None and not (isinstance(lock_timeout, (int, float))
                                         and lock_timeout >= 0):
        raise ValueError(f"lock_timeout must be a number of seconds >= 0 or None; "
                         f"got {lock_timeout!r}")
    if kind is not None:
        check_kind(kind, f"checkpoint({redact(_as_text(location))!r})")
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(
            f"on_corrupt must be one of {', '.join(map(repr, ON_CORRUPT))}; got {on_corrupt!r}"
        )
    if isinstance(location, ResultHandler):
        if (format is not None or read_kwargs is not None or write_kwargs is not None
                or storage is not None):
            raise TypeError(
                f"checkpoint({location!r}, ...) got a {type(location).__name__} together "
                f"with format/read_kwargs/write_kwargs/storage; pass those to the "
                f"{type(location).__name__} instead"
            )
        handler = location
        if versioned is not None and bool(versioned) != handler.versioned:
            raise TypeError(
                f"checkpoint({location!r}, versioned={versioned!r}) got a "
                f"PandasResultHandler with versioned={handler.versioned}; pass versioned "
                f"to the PandasResultHandler instead"
            )
    else:
        handler = ResultHandler(
            location, format, read_kwargs=read_kwargs, write_kwargs=write_kwargs,
            storage=storage, versioned=bool(versioned),
        )
    if load_version is not None:
        handler = handler.pinned(load_version)

    def decorate(fn: F) -> F:
        return cast(F, Checkpointed(handler, fn, invalidate_on, strict, on_corrupt,
                                    lock_timeout, preview, kind).wrapper)

    return decorate


def checkpoint_task(
    location: str | os.PathLike[str] | ResultHandler,
    format: str | None = None,
    *,
    read_kwargs: Mapping[str, Any] | None = None,
    write_kwargs: Mapping[str, Any] | None = None,
    invalidate_on: Iterable[Part] = (),
    strict: bool = False,
    on_corrupt: OnCorrupt = "error",
    lock_timeout: float | None = None,
    storage: object | str | None = None,
    preview: bool | None = None,
    kind: str | None = None,
    versioned: bool | None = None,
    load_version: str | None = None,
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
                      invalidate_on=invalidate_on, strict=strict, on_corrupt=on_corrupt,
                      lock_timeout=lock_timeout, storage=storage, preview=preview, kind=kind,
                      versioned=versioned, load_version=load_version)

    def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
        return cast("Task[Any, Any]", task(**options)(wrap(fn)))

    return decorate
