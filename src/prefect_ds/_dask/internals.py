"""The private Prefect parts the fast Dask submission relies on, checked once.

``tests/test_prefect_internals.py`` pins each of them with a test. At run time
:func:`missing` names any that a Prefect release removed or reshaped, and the runner then
submits exactly as prefect-dask does, with one warning, rather than run with a context
it cannot build correctly.

Tested with Prefect 3.9.0, prefect-dask 0.3.7 and distributed 2026.8.0 (pyproject.toml
holds prefect-dask to its 0.3 line).
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
from contextvars import ContextVar

_warned = threading.Event()


@functools.cache
def missing() -> tuple[str, ...]:
    """The internals that are not as expected; empty when all are."""
    import prefect.context
    import prefect.task_engine

    problems = []
    for name in ("SettingsContext", "SyncClientContext"):
        var = getattr(getattr(prefect.context, name, None), "__var__", None)
        if not isinstance(var, ContextVar):
            problems.append(f"prefect.context.{name}.__var__")
    serialize = getattr(prefect.context, "serialize_context", None)
    if serialize is None or "asset_ctx_kwargs" not in inspect.signature(serialize).parameters:
        problems.append("prefect.context.serialize_context(asset_ctx_kwargs=...)")
    for name in ("run_task_sync", "run_task_async"):
        run = getattr(prefect.task_engine, name, None)
        expected = {"task", "task_run_id", "parameters", "wait_for", "return_type",
                    "dependencies", "context"}
        if run is None or not expected <= set(inspect.signature(run).parameters):
            problems.append(f"prefect.task_engine.{name}(context=...)")
    return tuple(problems)


def warn_fallback(reason: str) -> None:
    """Say once per process that task runs go to Dask the slow, prefect-dask way."""
    if _warned.is_set():
        return
    _warned.set()
    warnings.warn(
        f"DSDaskTaskRunner submits task runs as prefect-dask does ({reason}): each "
        "task run rebuilds Prefect's settings and API client on its worker",
        RuntimeWarning,
        stacklevel=3,
    )
