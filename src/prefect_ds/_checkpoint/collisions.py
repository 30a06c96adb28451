"""Which checkpoint targets the calls of one flow run use, so two never share one.

Every checkpointed call claims its rendered target for the flow run it belongs to. A
second call of the same flow run that claims the same target is an error when

- the first call is still running (two writers would race; the first one then does not
  write either), or
- the two calls provably differ: other task functions, plain arguments (strings,
  numbers, dates, ...) with different values, or other arguments (DataFrames, lists,
  ...) with different contents. The template then fails to tell the calls apart, and
  the second call would silently load the first one's result.

A repeat with equal arguments after the first call finished is fine: it is a hit.
A claim holds no data alive: plain values are kept as they are; any other argument is
kept as the task runs it came from (Prefect's ``task_inputs``) or, for a value given
directly, as a content digest. The claims of a flow run are dropped when it ends (see
``_release.flow_runs``), so a long-lived process does not accumulate them; calls
outside any flow run only guard against concurrent use.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import os
import pathlib
import threading
import uuid
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_ds._checkpoint.fingerprint import _canonical
from prefect_ds._errors import CheckpointCollisionError, FingerprintError
from prefect_ds._redact import redact
from prefect_ds._release import flow_runs as _flow_runs

_PLAIN = (
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    enum.Enum,
    pathlib.PurePath,
)


def plain_arguments(arguments: Mapping[str, Any]) -> dict[str, Hashable]:
    """The arguments whose values can be compared cheaply and safely (no data frames)."""
    return {
        name: value
        for name, value in arguments.items()
        if isinstance(value, _PLAIN) or _plain_tuple(value)
    }


def _plain_tuple(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) <= 32
        and all(isinstance(v, _PLAIN) for v in value)
    )


def opaque_arguments(
    arguments: Mapping[str, Any], upstream: Mapping[str, Iterable[uuid.UUID]]
) -> dict[str, Hashable]:
    """A token for each argument that is not plain, to tell two calls' values apart.

    ``upstream`` maps an argument to the task runs Prefect resolved it from; those runs
    stand for the value. Any other value is digested by content; one that has no
    content digest gets no token and is not compared.
    """
    tokens: dict[str, Hashable] = {}
    for name, value in arguments.items():
        if isinstance(value, _PLAIN) or _plain_tuple(value):
            continue
        runs = frozenset(upstream.get(name, ()))
        if runs:
            tokens[name] = ("from task runs", runs)
            continue
        try:
            tokens[name] = ("content", _canonical(value, name))
        except (FingerprintError, TypeError, ValueError):
            continue
    return tokens


def target_key(location: str) -> str:
    """One spelling per target: local paths are made absolute, URLs are kept as they are."""
    if "://" in location:
        return location
    return os.path.abspath(location)


@dataclass(eq=False)
class Claim:
    """One call's use of a target."""

    function: object  # the checkpointed function, compared by function_key
    label: str  # e.g. "task run 'clean-1a2' of task 'clean'"
    task_run_id: uuid.UUID | None
    plain: dict[str, Hashable] = field(default_factory=dict)
    opaque: dict[str, Hashable] = field(default_factory=dict)
    active: bool = True
    # Set when a later call collided with this one while it ran: it must not write.
    collided: str | None = None

    def check(self) -> None:
        """Raise if another call collided with this one (call it right before writing)."""
        if self.collided is not None:
            raise CheckpointCollisionError(self.collided)


_lock = threading.Lock()
_by_flow_run: dict[uuid.UUID | None, dict[str, Claim]] = {}


def function_key(fn: object) -> object:
    """What identifies a function, even as separate unpickled copies (Dask ships the
    function with every task): its module, name and where its code starts."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return fn
    return (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None),
            code.co_filename, code.co_firstlineno)


def _same_function(old: Claim, new: Claim) -> bool:
    return old.function is new.function or function_key(old.function) == function_key(
        new.function)


def _describe(values: Mapping[str, Hashable], names: list[str]) -> str:
    return ", ".join(f"{name}={values[name]!r}" for name in names)


def differing(old: Claim, new: Claim) -> tuple[list[str], list[str]]:
    """The plain and the other arguments whose values differ between two calls."""
    plain = sorted(
        name for name in old.plain.keys() & new.plain.keys()
        if type(old.plain[name]) is not type(new.plain[name]) or old.plain[name] != new.plain[name]
    )
    opaque = sorted(
        name for name in old.opaque.keys() & new.opaque.keys()
        if old.opaque[name][0] == new.opaque[name][0] and old.opaque[name] != new.opaque[name]  # type: ignore[index]
    )
    return plain, opaque


def _fix(template: str, plain: list[str], opaque: list[str]) -> str:
    if plain:
        return f"Add {', '.join('{' + name + '}' for name in plain)} to the template."
    return (
        f"The calls differ in {', '.join(repr(name) for name in opaque)}, which cannot go "
        f"into a location: add an argument that tells the calls apart (a name, a date, a "
        f"version) to the function and to the template {template!r}."
    )


def _conflict(old: Claim, new: Claim, location: str, template: str) -> str | None:
    """Why ``new`` may not use the target ``old`` used, or None when it may."""
    if old.task_run_id is not None and old.task_run_id == new.task_run_id:
        return None  # a retry of the same task run
    plain, opaque = differing(old, new) if _same_function(old, new) else ([], [])
    if old.active:
        if plain or opaque:
            return (
                f"checkpoint template {template!r} renders the same target {location!r} "
                f"for {old.label} and {new.label}, which run at the same time (as the "
                f"calls of a .map do) with different arguments "
                f"({_describe(old.plain, plain) or ', '.join(opaque)}); neither may "
                f"write it. {_fix(template, plain, opaque)}"
            )
        return (
            f"checkpoint target {redact(location)!r} is used by two calls at once: {old.label} is "
            f"still computing or loading it while {new.label} asks for it, and two writers "
            f"must never race. Give each call its own target by adding the argument that "
            f"tells them apart to the template {redact(template)!r}, or do not run the same "
            f"call twice "
            f"concurrently."
        )
    if not _same_function(old, new):
        return (
            f"checkpoint target {redact(location)!r} is used by two different task functions in "
            f"one "
            f"flow run ({old.label} and {new.label}); the second would load the first one's "
            f"result. Give each task its own location template."
        )
    if plain:
        return (
            f"checkpoint template {redact(template)!r} renders the same target "
            f"{redact(location)!r} for "
            f"{old.label} ({_describe(old.plain, plain)}) and {new.label} "
            f"({_describe(new.plain, plain)}), so the second call would load the first "
            f"one's result. {_fix(template, plain, opaque)}"
        )
    if opaque:
        return (
            f"checkpoint template {redact(template)!r} renders the same target "
            f"{redact(location)!r} for "
            f"{old.label} and {new.label}, whose arguments {', '.join(map(repr, opaque))} "
            f"differ, so the second call would load the first one's result. "
            f"{_fix(template, plain, opaque)}"
        )
    return None


def mapped_conflict(first: Claim, other: Claim, location: str, template: str) -> str | None:
    """Why two calls of one ``.map`` may not share ``location``, or None (equal calls)."""
    plain, opaque = differing(first, other)
    if not plain and not opaque:
        return None
    values = _describe(first.plain, plain) or ", ".join(map(repr, opaque))
    other_values = _describe(other.plain, plain) or ", ".join(map(repr, opaque))
    return (
        f"checkpoint template {template!r} renders the same target {location!r} for "
        f"{first.label} ({values}) and {other.label} ({other_values}) of one .map, so they "
        f"would overwrite or load each other's result; nothing was submitted. "
        f"{_fix(template, plain, opaque)}"
    )


def replacing(prior: Claim | None, new: Claim, location: str, template: str) -> None:
    """Refuse to replace a target that an earlier call of this flow run produced.

    ``invalidate_on`` finds a target stale when this call's inputs differ from those
    it was written with. If an earlier call of the same flow run wrote or loaded it, that
    call's result (perhaps released from memory, to be reloaded from this very target)
    would silently change: the two calls collide.
    """
    if prior is None or (prior.task_run_id is not None and prior.task_run_id == new.task_run_id):
        return
    raise CheckpointCollisionError(
        f"checkpoint template {template!r} renders the same target {location!r} for "
        f"{prior.label} and {new.label}, and their inputs differ (invalidate_on finds the "
        f"target stale for the second call), so the second call would replace the frame "
        f"the first one produced in this flow run. Add the argument that tells the calls "
        f"apart to the template."
    )


def _drop_flow_run(flow_run_id: uuid.UUID) -> None:
    with _lock:
        _by_flow_run.pop(flow_run_id, None)


def count() -> int:
    """How many claims are held (for tests of long-lived processes)."""
    with _lock:
        return sum(len(claims) for claims in _by_flow_run.values())


@contextlib.contextmanager
def claim(
    flow_run_id: uuid.UUID | None, location: str, template: str, new: Claim
) -> Iterator[Claim | None]:
    """Hold ``location`` for the duration of one call; raise if another call conflicts.

    Yields the finished claim an earlier call of this flow run left on the target, if
    any (see :func:`replacing`).
    """
    key = target_key(location)
    if flow_run_id is not None and not _flow_runs.when_ended(
        flow_run_id, __name__, _drop_flow_run
    ):
        flow_run_id = None  # not inside the flow run's context: nothing tells its end
    with _lock:
        claims = _by_flow_run.setdefault(flow_run_id, {})
        old = claims.get(key)
        problem = None if old is None else _conflict(old, new, location, template)
        if problem is not None:
            if old is not None and old.active and _same_function(old, new) \
                    and any(differing(old, new)):
                old.collided = problem  # the calls differ: the first must not write either
            raise CheckpointCollisionError(problem)
        claims[key] = new
    prior = old if old is not None and old.task_run_id != new.task_run_id else None
    try:
        yield prior
    finally:
        with _lock:
            new.active = False
            if flow_run_id is None and claims.get(key) is new:
                del claims[key]
