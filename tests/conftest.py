"""Shared fixtures. Prefect runs offline on a throw-away home and its ephemeral server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Before anything imports prefect: keep its state out of the user's home and offline.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-ds-test-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# A loaded 2-core machine can take longer than Prefect's default 20 s to start a server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# Hypothesis: a modest example count by default; PREFECT_DS_FULL=1 for the thorough run.
settings.register_profile("prefect-ds", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("prefect-ds-full", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("prefect-ds-full" if os.environ.get("PREFECT_DS_FULL") == "1"
                      else "prefect-ds")


def pytest_configure(config: pytest.Config) -> None:
    from support.skips import NoSilentSkips

    config.pluginmanager.register(NoSilentSkips(), "prefect-ds-no-silent-skips")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A private Prefect server for the whole session (started once, ~6 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 server on 127.0.0.1 for the session, with the usual AWS environment
    variables (endpoint, credentials, region) pointing at it, so subprocesses inherit it."""
    from support.s3 import MotoServer, aws_env, clear_fsspec_cache, patched_environ

    with MotoServer() as server, patched_environ(aws_env(server.endpoint)):
        clear_fsspec_cache()
        yield server
    clear_fsspec_cache()


@pytest.fixture
def s3_bucket(s3_server: Any) -> str:
    """A fresh, empty bucket on the test S3 server, as an ``s3://name`` prefix."""
    from support.s3 import create_bucket

    return f"s3://{create_bucket(s3_server.endpoint)}"
