"""The private Prefect (and prefect-dask) internals the runners rely on, one test each.

When a Prefect release moves one of them, the matching test fails here, loudly, instead
of a runner silently keeping memory alive or losing lineage. Each test names the module
of prefect-ds that needs the internal.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest


def test_events_worker_registry_of_instances() -> None:
    """_release/frees.py finds the live events workers in ``EventsWorker._instances``."""
    from prefect.events.worker import EventsWorker

    assert isinstance(EventsWorker._instances, dict)


def test_events_worker_context_cache_and_queue(prefect_harness: None) -> None:
    """_release/frees.py watches ``_context_cache`` (snapshots holding task contexts) and
    ``_queue.unfinished_tasks`` of each events worker."""
    from prefect import flow
    from prefect.events.worker import EventsWorker

    @flow
    def tiny() -> int:
        return 1

    assert tiny() == 1
    workers = [w for w in EventsWorker._instances.values() if isinstance(w, EventsWorker)]
    assert workers, "no events worker was started by a flow run"
    for worker in workers:
        assert isinstance(worker._context_cache, dict)
        assert isinstance(worker._queue.unfinished_tasks, int)
    assert "copy_context" in inspect.getsource(EventsWorker._prepare_item)


def test_transaction_state_can_be_marked_committed() -> None:
    """_checkpoint/runs.py ends a checkpoint hit as ``Cached`` by marking the task's
    transaction committed."""
    from prefect.transactions import Transaction, TransactionState, get_transaction

    assert get_transaction() is None
    transaction = Transaction()
    assert hasattr(transaction, "state")
    transaction.state = TransactionState.COMMITTED
    assert transaction.state == TransactionState.COMMITTED
    assert {TransactionState.ACTIVE, TransactionState.COMMITTED} <= set(TransactionState)


def test_flow_run_context_task_run_assets() -> None:
    """_checkpoint/lineage.py records a task run's target in ``task_run_assets``, where
    ``AssetContext.from_task_and_inputs`` finds a consumer's upstream assets."""
    from prefect.context import AssetContext, FlowRunContext

    assert "task_run_assets" in FlowRunContext.model_fields
    assert "task_run_assets" in inspect.getsource(AssetContext.from_task_and_inputs)
    for name in ("upstream_assets", "direct_asset_dependencies", "downstream_assets",
                 "task_run_id"):
        assert name in AssetContext.model_fields


def test_task_run_assets_are_not_sent_to_remote_workers() -> None:
    """dask.py hands upstream assets over as ``asset_deps`` because a worker's rebuilt
    flow run context has no ``task_run_assets``; if Prefect starts sending them, that
    hand-over can go."""
    from prefect.context import FlowRunContext

    source = inspect.getsource(FlowRunContext.serialize)
    assert "task_run_assets" not in source


def test_task_asset_deps_option() -> None:
    """dask.py submits ``task.with_options(asset_deps=...)``."""
    from prefect import task
    from prefect.assets import Asset

    @task
    def t() -> int:
        return 1

    other = t.with_options(asset_deps=[Asset(key="file:///tmp/x.parquet")])
    assert [a.key for a in other.asset_deps] == ["file:///tmp/x.parquet"]


def test_result_record_and_result_store_cache() -> None:
    """_release/graph.py swaps ``ResultRecord.result``, reads ``is_persisted`` and
    ``metadata``, and evicts records from ``ResultStore.cache``."""
    from prefect.results import ResultRecord, ResultRecordMetadata, ResultStore
    from prefect.serializers import PickleSerializer

    record = ResultRecord(
        metadata=ResultRecordMetadata(storage_key=None, serializer=PickleSerializer()),
        result=1,
    )
    assert record.is_persisted is False
    record.result = 2
    assert record.result == 2 and isinstance(record.metadata, ResultRecordMetadata)
    store = ResultStore()
    store.cache["k"] = record
    assert list(store.cache.items()) == [("k", record)]
    store.cache.pop("k", None)
    assert "k" not in store.cache


def test_thread_pool_runner_executor_and_final_state() -> None:
    """_release/runner.py wraps ``ThreadPoolTaskRunner._executor.submit`` and reads
    ``_max_workers`` and the future's ``_final_state``."""
    from prefect.futures import PrefectConcurrentFuture
    from prefect.task_runners import ThreadPoolTaskRunner

    with ThreadPoolTaskRunner(max_workers=2) as runner:
        assert runner._executor is not None and callable(runner._executor.submit)
        assert runner._max_workers == 2
    source = inspect.getsource(PrefectConcurrentFuture)
    assert "_final_state" in source


def test_task_runner_map_expands_through_submit() -> None:
    """_release/submissions.py lets Prefect's own ``TaskRunner.map`` expand a ``.map``
    by handing it a stand-in whose ``submit`` collects each call."""
    from prefect import task
    from prefect.task_runners import TaskRunner
    from prefect.utilities.annotations import unmapped

    from prefect_ds._release.submissions import mapped_calls

    @task
    def t(x: int, y: str) -> int:
        return x

    source = inspect.getsource(TaskRunner.map)
    assert "self.submit(" in source and "self._started" in source
    assert mapped_calls(t, {"x": [1, 2], "y": unmapped("a")}, None) == [
        {"x": 1, "y": "a"}, {"x": 2, "y": "a"},
    ]


def test_task_run_inputs_name_their_upstream_runs() -> None:
    """_checkpoint/runs.py reads ``TaskRunContext.task_run.task_inputs`` to know which
    task runs an argument came from."""
    from prefect.client.schemas.objects import TaskRun, TaskRunResult

    assert "task_inputs" in TaskRun.model_fields
    assert "id" in TaskRunResult.model_fields


def test_prefect_dask_internals() -> None:
    """dask.py uses ``DaskTaskRunner._client``, ``PrefectDaskFuture._final_state`` and
    ``_wrapped_future``, and tells a Dask worker's thread by ``get_worker``."""
    pytest.importorskip("prefect_dask")
    import distributed.worker
    from prefect_dask import DaskTaskRunner
    from prefect_dask.task_runners import PrefectDaskFuture

    assert "_client" in DaskTaskRunner().__dict__
    source = inspect.getsource(PrefectDaskFuture)
    assert "_final_state" in source and "_wrapped_future" in source
    with pytest.raises(ValueError):
        distributed.worker.get_worker()


def test_variadic_parameters_round_trip() -> None:
    """_checkpoint/store.py turns Prefect's parameters back into a call with
    ``parameters_to_args_kwargs`` (``**kwargs`` arrive under their own name)."""
    from prefect.utilities.callables import get_call_parameters, parameters_to_args_kwargs

    def f(a: int, **kwargs: Any) -> None: ...

    parameters = get_call_parameters(f, (1,), {"region": "eu"})
    assert parameters == {"a": 1, "kwargs": {"region": "eu"}}
    assert parameters_to_args_kwargs(f, parameters) == ((1,), {"region": "eu"})


# -- _dask/: the fast Dask submission (settings and API clients kept on the workers) ------


def test_fast_dask_path_finds_every_internal() -> None:
    """_dask/internals.py's run-time check passes on the Prefect this suite runs with; if
    it did not, DSDaskTaskRunner would fall back to prefect-dask's submit."""
    pytest.importorskip("prefect_dask")
    from prefect_ds._dask import internals

    assert internals.missing() == ()


def test_context_variables_of_settings_and_sync_client(prefect_harness: None) -> None:
    """_dask/worker.py sets ``SettingsContext.__var__`` and ``SyncClientContext.__var__``
    directly, and ``get_client(sync_client=True)`` (how Prefect's engine gets its client)
    answers with the client of the current ``SyncClientContext``."""
    from contextvars import ContextVar

    from prefect.client.orchestration import get_client
    from prefect.context import SettingsContext, SyncClientContext

    assert isinstance(SettingsContext.__var__, ContextVar)
    assert isinstance(SyncClientContext.__var__, ContextVar)
    context = SyncClientContext()
    token = SyncClientContext.__var__.set(context)
    try:
        assert get_client(sync_client=True) is context.client
        with SyncClientContext.get_or_create() as got:
            assert got is context  # the engine's get_or_create reuses it, never closes it
    finally:
        SyncClientContext.__var__.reset(token)
    current = SettingsContext.get()
    assert current is not None
    token = SettingsContext.__var__.set(current)
    try:
        assert SettingsContext.get() is current
    finally:
        SettingsContext.__var__.reset(token)


def test_engine_takes_its_client_from_the_context() -> None:
    """The sync task engine gets its client through ``SyncClientContext.get_or_create``
    and ``hydrated_context`` through ``get_client(sync_client=True)``: a kept client set as
    the current one is the one they use (else each run builds two)."""
    from prefect.context import hydrated_context
    from prefect.task_engine import SyncTaskRunEngine

    assert "SyncClientContext.get_or_create()" in inspect.getsource(
        SyncTaskRunEngine.initialize_run)
    assert "get_client(sync_client=True)" in inspect.getsource(hydrated_context)


def test_serialize_context_reads_settings_from_the_settings_context() -> None:
    """_dask/submit.py sets a stand-in whose ``serialize`` is free while Prefect's
    ``serialize_context`` runs, and sends the settings apart. Its keys are the ones
    ``hydrated_context`` reads, settings under ``settings_context`` only."""
    from prefect.context import SettingsContext, hydrated_context, serialize_context

    from prefect_ds._dask.submit import serialized_settings

    key, payload, stand_in = serialized_settings()
    assert serialized_settings()[0] == key  # once per settings object
    assert payload == SettingsContext.get().serialize()  # type: ignore[union-attr]
    token = SettingsContext.__var__.set(stand_in)
    try:
        context = serialize_context()
    finally:
        SettingsContext.__var__.reset(token)
    assert context["settings_context"] == {}
    assert set(context) == {"flow_run_context", "task_run_context", "tags_context",
                            "settings_context", "asset_context", "deployment_id",
                            "deployment_parameters"}
    source = inspect.getsource(hydrated_context)
    for name in context:
        assert f'"{name}"' in source, name
    assert "SettingsContext(**settings_context)" in source


def test_prefect_dask_client_submit_is_what_the_fast_path_mirrors() -> None:
    """_dask/submit.py mirrors ``PrefectDaskClient.submit`` (task run id, dependencies,
    asset context, ``run_task_sync`` arguments) and DSDaskTaskRunner uses
    ``DaskTaskRunner._optimize_futures`` and ``_started``; a change there must be
    carried over."""
    pytest.importorskip("prefect_dask")
    from prefect_dask import DaskTaskRunner
    from prefect_dask.client import PrefectDaskClient

    source = inspect.getsource(PrefectDaskClient.submit)
    for piece in ('run_task_kwargs["task_run_id"] = task_run_id',
                  "collect_task_run_inputs_sync(v, future_cls=Future)",
                  '"task_inputs": dependencies', '"copy_to_child_ctx": True',
                  'run_task_kwargs["context"] = context', "run_task_sync(*args, **kwargs)",
                  "asyncio.run(run_task_async(*args, **kwargs))"):
        assert piece in source, piece
    runner_source = inspect.getsource(DaskTaskRunner.submit)
    assert 'return_type="state"' in runner_source and "_optimize_futures" in runner_source
    assert DaskTaskRunner()._started is False


def test_dask_worker_plugins_by_name() -> None:
    """_dask/worker.py finds its plugin in ``Worker.plugins``; ``idempotent`` keeps a
    second registration from replacing (and tearing down) the running one."""
    pytest.importorskip("prefect_dask")
    import distributed
    from distributed.client import Client

    assert "idempotent" in inspect.getsource(Client.register_plugin)
    assert "self.plugins" in inspect.getsource(distributed.Worker.plugin_add)
    assert hasattr(distributed.WorkerPlugin, "teardown")


def test_temporary_server_registry() -> None:
    """_dask/submit.py gives local workers the address of the temporary server this
    process started: ``SubprocessASGIServer._instances`` (one per port) with
    ``running``, ``server_process`` and ``api_url``; a settings payload takes
    ``{"api": {"url": ...}}``."""
    from prefect.context import SettingsContext
    from prefect.server.api.server import SubprocessASGIServer

    assert isinstance(SubprocessASGIServer._instances, dict)
    server = SubprocessASGIServer.__new__(SubprocessASGIServer, 1)  # registered, not started
    try:
        SubprocessASGIServer.__init__(server, 1)
        assert server.running is False and server.server_process is None
        assert server.api_url == "http://127.0.0.1:1/api"
    finally:
        SubprocessASGIServer._instances.pop(1, None)
    payload = SettingsContext.get().serialize()
    payload["settings"] = {**payload["settings"], "api": {"url": "http://127.0.0.1:1/api"}}
    assert SettingsContext(**payload).settings.api.url == "http://127.0.0.1:1/api"
