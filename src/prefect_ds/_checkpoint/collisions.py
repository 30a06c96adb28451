"""Which checkpoint targets the calls of one flow run use, so two never share one.

Every checkpointed call claims its rendered target for the flow run it belongs to. A
second call of the same flow run that claims the same target is an error when

- the first call is still running (two writers would race), or
- the two calls provably differ: other task functions, or plain arguments (strings,
  numbers, dates, ...) with different values. The template then fails to tell the calls
  apart, and the second call would silently load the first one's result.

A repeat with equal arguments after the first call finished is fine: it is a hit.
Only plain values are kept for that comparison, never DataFrames, so a claim holds no
data alive. Calls outside any flow run only guard against concurrent use.
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
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_ds._errors import CheckpointCollisionError
from prefect_ds._redact import redact

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
_MAX_FLOW_RUNS = 64  # flow runs whose claims are remembered (oldest forgotten first)


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


def target_key(location: str) -> str:
    """One spelling per target: local paths are made absolute, URLs are kept as they are."""
    if "://" in location:
        return location
    return os.path.abspath(location)


@dataclass(eq=False)
class Claim:
    """One call's use of a target."""

    function: object  # the checkpointed function, compared by identity
    label: str  # e.g. "task run 'clean-1a2' of task 'clean'"
    task_run_id: uuid.UUID | None
    plain: dict[str, Hashable] = field(default_factory=dict)
    active: bool = True


_lock = threading.Lock()
_by_flow_run: OrderedDict[uuid.UUID | None, dict[str, Claim]] = OrderedDict()


def _describe(values: Mapping[str, Hashable], names: list[str]) -> str:
    return ", ".join(f"{name}={values[name]!r}" for name in names)


def _conflict(old: Claim, new: Claim, location: str, template: str) -> str | None:
    """Why ``new`` may not use the target ``old`` used, or None when it may."""
    if old.task_run_id is not None and old.task_run_id == new.task_run_id:
        return None  # a retry of the same task run
    if old.active:
        return (
            f"checkpoint target {redact(location)!r} is used by two calls at once: {old.label} is "
            f"still computing or loading it while {new.label} asks for it, and two writers "
            f"must never race. Give each call its own target by adding the argument that "
            f"tells them apart to the template {redact(template)!r}, or do not run the same "
            f"call twice "
            f"concurrently."
        )
    if old.function is not new.function:
        return (
            f"checkpoint target {redact(location)!r} is used by two different task functions in "
            f"one "
            f"flow run ({old.label} and {new.label}); the second would load the first one's "
            f"result. Give each task its own location template."
        )
    differing = sorted(
        name for name in old.plain.keys() & new.plain.keys()
        if type(old.plain[name]) is not type(new.plain[name]) or old.plain[name] != new.plain[name]
    )
    if differing:
        return (
            f"checkpoint template {redact(template)!r} renders the same target "
            f"{redact(location)!r} for "
            f"{old.label} ({_describe(old.plain, differing)}) and {new.label} "
            f"({_describe(new.plain, differing)}), so the second call would load the first "
            f"one's result. Add {', '.join('{' + name + '}' for name in differing)} to the "
            f"template."
        )
    return None


@contextlib.contextmanager
def claim(
    flow_run_id: uuid.UUID | None, location: str, template: str, new: Claim
) -> Iterator[None]:
    """Hold ``location`` for the duration of one call; raise if another call conflicts."""
    key = target_key(location)
    with _lock:
        claims = _by_flow_run.get(flow_run_id)
        if claims is None:
            claims = _by_flow_run[flow_run_id] = {}
            while len(_by_flow_run) > _MAX_FLOW_RUNS:
                _by_flow_run.popitem(last=False)
        else:
            _by_flow_run.move_to_end(flow_run_id)
        old = claims.get(key)
        problem = None if old is None else _conflict(old, new, location, template)
        if problem is not None:
            raise CheckpointCollisionError(problem)
        claims[key] = new
    try:
        yield
    finally:
        with _lock:
            new.active = False
            if flow_run_id is None and claims.get(key) is new:
                del claims[key]
