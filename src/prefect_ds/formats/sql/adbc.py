"""The fast engine: SQLite and PostgreSQL through ADBC (Arrow in, Arrow out, bulk COPY).

Only the :class:`~prefect_ds.formats.sql.backend.Session` is here: connections (pooled
per database and process, one user at a time, safe across ``fork``), statements, bulk
ingest and Arrow fetches. What a write or read does is ``backend.Backend``'s.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prefect_ds._lazy import lazy
from prefect_ds._redact import scrub
from prefect_ds.formats.sql.backend import Backend, DbapiSession, Session
from prefect_ds.formats.sql.names import SqlLocation

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

log = logging.getLogger("prefect_ds.sql")

_SQLITE_BATCH_ROWS = 1_000_000_000  # one batch: ADBC types SQLite columns from the 1st batch
_IDLE_CHECK_AFTER = 30.0  # seconds idle before a pooled connection is pinged


def available(backend: str) -> bool:
    """Whether the ADBC driver for ``backend`` is installed."""
    module = {"sqlite": "adbc_driver_sqlite", "postgresql": "adbc_driver_postgresql"}.get(backend)
    if module is None:
        return False
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _scrub(text: str, loc: SqlLocation) -> str:
    uri = loc.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return scrub(text, loc.location, loc.url.render_as_string(hide_password=False), uri)


def _connect(loc: SqlLocation) -> Any:
    if loc.backend == "sqlite":
        import adbc_driver_sqlite.dbapi as sqlite_dbapi

        conn = sqlite_dbapi.connect(uri=str(loc.url.database))
        cur = conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")  # wait for another writer, do not fail
        cur.close()
        return conn
    import adbc_driver_postgresql.dbapi as pg_dbapi

    uri = loc.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return pg_dbapi.connect(uri)
    except Exception as exc:  # the driver's message may quote the URI
        raise ConnectionError(
            f"cannot connect to {loc.database_shown}: {_scrub(str(exc), loc)}. Check the host, "
            f"port, user and database in the URL (or PGPASSWORD / ~/.pgpass for the password)."
        ) from None


class _Pool:
    """Idle ADBC connections to one database, for one process; one user at a time each."""

    def __init__(self, loc: SqlLocation, size: int = 4) -> None:
        self.loc = loc
        self.size = size
        self.pid = os.getpid()
        self._idle: list[tuple[Any, float]] = []
        self._lock = threading.Lock()

    def _checkout(self) -> Any:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if time.monotonic() - since < _IDLE_CHECK_AFTER or _alive(conn):
                return conn
            _close(conn)
        return _connect(self.loc)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection with no open work; returned to the pool only if the block succeeds."""
        conn = self._checkout()
        try:
            yield conn
            conn.rollback()
        except BaseException:
            _close(conn, rollback=True)
            raise
        with self._lock:
            if len(self._idle) < self.size and os.getpid() == self.pid:
                self._idle.append((conn, time.monotonic()))
                return
        _close(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close(conn)


def _alive(conn: Any) -> bool:
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()
        conn.rollback()
    except Exception:
        return False
    return True


def _close(conn: Any, rollback: bool = False) -> None:
    with contextlib.suppress(Exception):
        if rollback:
            conn.rollback()
    with contextlib.suppress(Exception):
        conn.close()


_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()
_inherited: list[_Pool] = []  # a forked child's copies of its parent's pools: never touched


def _pool(loc: SqlLocation) -> _Pool:
    key = loc.url_key()
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.pid != os.getpid():
            pool = _pools[key] = _Pool(loc)
        return pool


def _after_fork_in_child() -> None:
    # The parent's connections share sockets with the parent: closing them here would end
    # the parent's sessions, so the child keeps them unused and opens its own.
    global _pools_lock
    _inherited.extend(_pools.values())
    _pools.clear()
    _pools_lock = threading.Lock()


def close_all() -> None:
    """Close this process's idle connections (at exit, or to release a database)."""
    with _pools_lock:
        pools = [p for p in _pools.values() if p.pid == os.getpid()]
        _pools.clear()
    for pool in pools:
        pool.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_all)


# -- the engine ----------------------------------------------------------------------------


class AdbcSession(DbapiSession):
    """A :class:`~prefect_ds.formats.sql.backend.Session` on one pooled ADBC connection."""

    def __init__(self, conn: Any, loc: SqlLocation) -> None:
        super().__init__(conn, loc)
        self.cur = conn.cursor()

    def _sql(self, sql: str) -> str:
        if self.loc.backend == "sqlite":
            return sql
        parts = sql.split("?")
        return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        self.run(sql, *params)
        return list(self.cur.fetchall())

    def run(self, sql: str, *params: Any) -> None:
        if params:
            self.cur.execute(self._sql(sql), parameters=params)
        else:
            self.cur.execute(sql)

    def create(self, name: str, table: pa.Table) -> None:
        self.cur.adbc_ingest(name, table, mode="create", db_schema_name=self.loc.schema)

    def append(self, name: str, table: pa.Table) -> None:
        self.cur.adbc_ingest(name, table, mode="append", db_schema_name=self.loc.schema)

    def fetch(self, sql: str) -> pa.Table:
        if self.loc.backend == "sqlite":
            self.cur.adbc_statement.set_options(
                **{"adbc.sqlite.query.batch_rows": str(_SQLITE_BATCH_ROWS)}
            )
        self.cur.execute(sql)
        table: pa.Table = self.cur.fetch_arrow_table()
        return table


class AdbcBackend(Backend):
    """SQLite files and PostgreSQL through their ADBC drivers."""

    name = "adbc"

    @contextlib.contextmanager
    def session(self, loc: SqlLocation, chunksize: int | None = None) -> Iterator[Session]:
        with _pool(loc).connection() as conn:
            session = AdbcSession(conn, loc)
            try:
                yield session
            finally:
                with contextlib.suppress(Exception):
                    session.cur.close()
