"""Submitting one Prefect task run to Dask, the way prefect-dask does, minus its waste.

This mirrors ``prefect_dask.client.PrefectDaskClient.submit`` (the same task run id,
dependencies, asset context and ``run_task_sync`` arguments), with three differences:

* the flow's settings are serialized once per settings object, not once per submission
  (Prefect's ``serialize_context`` dumps every nested setting each time);
* the key is the task run's id, so Dask never tokenizes the arguments (``pure=True``
  hashes every parameter);
* the worker runs :func:`prefect_ds._dask.worker.run_task`, which keeps the settings
  context and API clients between task runs.

Where no ``PREFECT_API_URL`` is set, the flow talks to a temporary server its process
started. Workers on this machine are given that server's address (:func:`shared_api_url`);
under prefect-dask each worker process starts a temporary server of its own, which
outlives the cluster.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
import threading
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import distributed
from prefect.context import SettingsContext, serialize_context
from prefect.utilities.engine import collect_task_run_inputs_sync

from prefect_ds._dask.worker import PrefectWorkerState, run_task


class _AlreadySerialized(SettingsContext):
    """The flow's settings context, set while ``serialize_context`` runs, whose
    ``serialize`` costs nothing: the settings travel separately, serialized once."""

    def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
        return {}


_lock = threading.Lock()
# (id(settings context), API URL given) -> (that context, key, payload, its cheap
# stand-in); the strong reference keeps an id from being reused while it is cached.
_Cached = tuple[SettingsContext, str, dict[str, Any], SettingsContext]
_serialized: dict[tuple[int, str | None], _Cached] = {}
_KEEP = 8


def shared_api_url(client: distributed.Client) -> str | None:
    """The address of the temporary Prefect server this process started, when no
    ``PREFECT_API_URL`` is set and the cluster runs on this machine (its scheduler on a
    loopback address): its workers then report to the flow's own server instead of each
    starting one. None otherwise (workers elsewhere could not reach it)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    address = urlsplit(str(getattr(client.scheduler, "address", "") or ""))
    if address.scheme != "inproc":
        try:
            if not ipaddress.ip_address(address.hostname or "").is_loopback:
                return None
        except ValueError:
            if address.hostname != "localhost":
                return None
    module = sys.modules.get("prefect.server.api.server")  # imported by whoever started one
    servers = getattr(getattr(module, "SubprocessASGIServer", None), "_instances", {})
    for server in list(servers.values()):
        process = getattr(server, "server_process", None)
        if getattr(server, "running", False) and process is not None and process.poll() is None:
            return str(server.api_url)
    return None


def serialized_settings(api_url: str | None = None
                        ) -> tuple[str, dict[str, Any], SettingsContext]:
    """The current settings as ``(key, payload, stand-in)``, serialized once per object;
    with ``api_url`` set as the API's address in the payload (:func:`shared_api_url`)."""
    current = SettingsContext.get()
    if current is None:  # Prefect always has a global one; guard anyway
        raise RuntimeError("No Prefect settings context to serialize")
    with _lock:
        hit = _serialized.get((id(current), api_url))
    if hit is not None and hit[0] is current:
        return hit[1], hit[2], hit[3]
    payload = current.serialize()
    if api_url is not None:
        settings = dict(payload.get("settings") or {})
        settings["api"] = {**(settings.get("api") or {}), "url": api_url}
        payload = {**payload, "settings": settings}
    key = hashlib.sha256(
        json.dumps(payload, sort_keys=True, default=repr).encode()
    ).hexdigest()
    stand_in = _AlreadySerialized.model_construct(
        profile=current.profile, settings=current.settings
    )
    with _lock:
        if len(_serialized) >= _KEEP:
            _serialized.pop(next(iter(_serialized)))
        _serialized[(id(current), api_url)] = (current, key, payload, stand_in)
    return key, payload, stand_in


def register_worker_state(client: distributed.Client) -> None:
    """Put the worker plugin on every worker, present and future (idempotent)."""
    client.register_plugin(PrefectWorkerState())


def submit(
    client: distributed.Client,
    task: Any,
    parameters: dict[str, Any],
    wait_for: Any,
    dependencies: dict[str, set[Any]] | None,
) -> distributed.Future[Any]:
    """Submit one task run; ``parameters`` and ``wait_for`` hold Dask futures already.

    Returns the Dask future of its final state, with ``task_run_id`` set on it as
    prefect-dask's client does.
    """
    task_run_id = uuid4()
    inputs = {
        name: collect_task_run_inputs_sync(value, future_cls=distributed.Future)
        for name, value in parameters.items()
    }
    if dependencies:
        inputs = {name: found.union(dependencies.get(name, set()))
                  for name, found in inputs.items()}
    key, payload, stand_in = serialized_settings(shared_api_url(client))
    token = SettingsContext.__var__.set(stand_in)
    try:
        context = serialize_context(asset_ctx_kwargs={
            "task": task,
            "task_run_id": task_run_id,
            "task_inputs": inputs,
            "copy_to_child_ctx": True,
        })
    finally:
        SettingsContext.__var__.reset(token)
    context.pop("settings_context", None)
    name = getattr(getattr(task, "fn", None), "__name__", None) or "task"
    future: distributed.Future[Any] = client.submit(
        run_task,
        task,
        key,
        payload,
        key=f"{name}-{task_run_id.hex}",
        pure=False,
        task_run_id=task_run_id,
        parameters=parameters,
        wait_for=wait_for,
        return_type="state",
        dependencies=inputs,
        context=context,
    )
    future.task_run_id = task_run_id  # type: ignore[attr-defined]
    return future
