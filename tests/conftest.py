"""Shared fixtures. Prefect runs offline on a throw-away home and its ephemeral server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Before anything imports prefect: keep its state out of the user's home and offline.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-ds-test-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A private Prefect server for the whole session (started once, ~6 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
