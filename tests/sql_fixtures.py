"""Fixtures for the SQL tests: a real PostgreSQL server for the session, SQLite files.

The server is Debian's PostgreSQL started by ``support.postgres`` (as the ``postgres``
user when we are root). Without its binaries the PostgreSQL tests are skipped, which
fails the run unless ``PREFECT_DS_ALLOW_SKIPS`` includes ``postgres``
(tests/support/skips.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.postgres import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session, stopped at its end."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL of a database created for this session."""
    return postgres_server.create_database("prefect_ds_tests")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in this test's temporary directory."""
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs once against SQLite and once against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def table() -> str:
    """A table name no other test uses (the PostgreSQL database is shared)."""
    return f"t_{uuid.uuid4().hex[:10]}"
