"""What a Dask worker keeps between task runs: settings contexts and API clients.

For every task run Prefect's engine rebuilds the nested settings from the serialized
context (rescanning the environment, dotenv and profile files) and builds a fresh
``SyncPrefectClient`` twice (each one loads a CA bundle). :class:`PrefectWorkerState`, a
Dask worker plugin, builds each settings context once per worker and one client per
worker thread once, and :func:`run_task` sets them as the current ones around Prefect's
own ``run_task_sync``/``run_task_async``, which then find and reuse them. The plugin
closes the clients when the worker shuts down or the plugin is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import distributed

logger = logging.getLogger("prefect_ds.dask")

PLUGIN_NAME = "prefect-ds-task-state"
KEEP_SETTINGS = 4  # distinct settings kept per worker; older ones and their clients go

_warned = threading.Event()


@dataclass
class _Client:
    """One thread's API client inside its ``SyncClientContext``, and who is using it."""

    context: Any  # prefect.context.SyncClientContext
    in_use: int = 0


class PrefectWorkerState(distributed.WorkerPlugin):
    """Settings contexts by key and API clients by (thread, settings key), kept per worker."""

    name = PLUGIN_NAME
    idempotent = True  # registering it again leaves the running one in place

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[str, Any] = {}
        self._clients: dict[tuple[int, str], _Client] = {}
        self._closed = False

    def __getstate__(self) -> dict[str, Any]:
        return {"fresh": True}  # nothing built in one process travels to another

    def __setstate__(self, state: dict[str, Any]) -> None:
        PrefectWorkerState.__init__(self)

    def setup(self, worker: distributed.Worker) -> None:
        with self._lock:
            self._closed = False

    def teardown(self, worker: distributed.Worker) -> None:
        """Close every client not in use now; one in use closes when its run ends."""
        with self._lock:
            self._closed = True
            idle = [key for key, entry in self._clients.items() if entry.in_use == 0]
            entries = [self._clients.pop(key) for key in idle]
            self._settings.clear()
        for entry in entries:
            _close(entry)

    @property
    def open_clients(self) -> int:
        """How many API clients this worker holds open (for tests and diagnostics)."""
        with self._lock:
            return len(self._clients)

    def settings_context(self, key: str, payload: dict[str, Any]) -> Any:
        """The settings context serialized as ``payload``, built once per key."""
        from prefect.context import SettingsContext

        with self._lock:
            built = self._settings.get(key)
        if built is not None:
            return built
        built = SettingsContext(**payload)  # the slow part, once
        with self._lock:
            if self._closed or key in self._settings:
                return self._settings.get(key, built)
            self._settings[key] = built
            dropped = []
            while len(self._settings) > KEEP_SETTINGS:
                oldest = next(iter(self._settings))
                del self._settings[oldest]
                for ident in [i for i in self._clients if i[1] == oldest]:
                    entry = self._clients.pop(ident)
                    if entry.in_use == 0:
                        dropped.append(entry)  # one in use closes at its check-in
        for entry in dropped:
            _close(entry)
        return built

    @contextlib.contextmanager
    def current(self, key: str, payload: dict[str, Any]) -> Iterator[None]:
        """Make the kept settings context and this thread's client the current ones."""
        from prefect.context import SettingsContext, SyncClientContext

        settings = self.settings_context(key, payload)
        settings_token = SettingsContext.__var__.set(settings)
        try:
            entry = self._checkout(key)
            client_token = SyncClientContext.__var__.set(entry.context)
            try:
                yield
            finally:
                SyncClientContext.__var__.reset(client_token)
                self._checkin(key, entry)
        finally:
            SettingsContext.__var__.reset(settings_token)

    def _checkout(self, key: str) -> _Client:
        ident = (threading.get_ident(), key)
        with self._lock:
            entry = self._clients.get(ident)
            if entry is not None:
                entry.in_use += 1
                return entry
        entry = _Client(_open_client(), in_use=1)  # under the settings just set
        with self._lock:
            if not self._closed:
                self._clients[ident] = entry
        return entry

    def _checkin(self, key: str, entry: _Client) -> None:
        ident = (threading.get_ident(), key)
        with self._lock:
            entry.in_use -= 1
            kept = self._clients.get(ident) is entry
            close = entry.in_use == 0 and (self._closed or not kept)
            if close and kept:
                del self._clients[ident]
        if close:
            _close(entry)


def _open_client() -> Any:
    """A started ``SyncClientContext`` for the current settings, as Prefect enters one."""
    from prefect.context import SettingsContext, SyncClientContext

    context = SyncClientContext()
    context.client.__enter__()
    try:
        settings = SettingsContext.get()
        if settings is None or settings.settings.client.server_version_check_enabled:
            context.client.raise_for_api_version_mismatch_once()
    except BaseException:
        _close(_Client(context))
        raise
    return context


def _close(entry: _Client) -> None:
    try:
        entry.context.client.__exit__(None, None, None)
    except Exception:  # a client that cannot close cleanly must not stop the others
        logger.debug("Could not close a Prefect API client", exc_info=True)


def worker_state() -> PrefectWorkerState | None:
    """This worker's plugin, or None outside a worker or where it is not registered."""
    try:
        worker = distributed.get_worker()
    except ValueError:
        return None
    plugin = worker.plugins.get(PLUGIN_NAME)
    return plugin if isinstance(plugin, PrefectWorkerState) else None


def run_task(
    task: Any, settings_key: str, settings_payload: dict[str, Any], **kwargs: Any
) -> Any:
    """Runs on a worker: one Prefect task run, in the kept settings and client.

    ``kwargs`` are ``run_task_sync``'s (``context`` without its settings). Without the
    plugin it hands the settings back to Prefect, which builds them as prefect-dask's
    runner does, and says so once per worker process.
    """
    state = worker_state()
    if state is None:
        if not _warned.is_set():
            _warned.set()
            logger.warning(
                "The %s worker plugin is not on this Dask worker: Prefect rebuilds its "
                "settings and API client for every task run here", PLUGIN_NAME)
        kwargs["context"] = {**kwargs["context"], "settings_context": settings_payload}
        return _run(task, kwargs)
    with state.current(settings_key, settings_payload):
        return _run(task, kwargs)


def _run(task: Any, kwargs: dict[str, Any]) -> Any:
    from prefect.task_engine import run_task_async, run_task_sync

    if task.isasync:
        return asyncio.run(run_task_async(task=task, **kwargs))
    return run_task_sync(task=task, **kwargs)
