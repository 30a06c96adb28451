"""The portable engine: SQLAlchemy connections, ``DataFrame.to_sql`` and ``read_sql``.

Used when asked for with ``engine="sqlalchemy"``, or when no ADBC driver serves the URL
(a SQLite URL with query options, a PostgreSQL driver ADBC does not stand in for, ADBC
not installed). Only the :class:`~prefect_ds.formats.sql.backend.Session` is here; what
a write or read does is ``backend.Backend``'s.

Engines are cached per URL and per process; a forked child disposes of its parent's
pool without closing the parent's connections (SQLAlchemy's recommended pattern).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import MissingDependencyError
from prefect_ds._lazy import lazy
from prefect_ds.formats.sql.backend import Backend, DbapiSession, Session
from prefect_ds.formats.sql.names import SqlLocation
from prefect_ds.formats.sql.schema import to_sqlalchemy_frame

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy as sa
else:
    pd = lazy("pandas")
    pa = lazy("pyarrow")
    sa = lazy("sqlalchemy")

_engines: dict[str, tuple[int, sa.Engine]] = {}
_lock = threading.Lock()


# Backends whose driver one of this project's extras installs.
_EXTRAS = {"postgresql": "pip install 'prefect-ds[postgres]'"}


def _missing_driver(loc: SqlLocation, exc: ImportError) -> MissingDependencyError:
    """The error for a URL whose SQLAlchemy driver is not installed, naming what to install."""
    module = (getattr(exc, "name", None) or str(exc)).split(".", 1)[0]
    install = _EXTRAS.get(loc.backend, f"pip install {module}")
    return MissingDependencyError("sql", f"the database driver {module!r}", install,
                                  needed_by=f"the {loc.backend}:// location {loc.shown!r}")


def engine_for(loc: SqlLocation) -> sa.Engine:
    """The cached engine for ``loc``'s database, created on first use in this process."""
    key = loc.url_key()
    with _lock:
        cached = _engines.get(key)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        try:
            engine = sa.create_engine(loc.url, pool_pre_ping=True)
        except ImportError as exc:  # the URL's driver (psycopg, pymysql, ...) is missing
            raise _missing_driver(loc, exc) from exc
        if loc.backend == "sqlite" and engine.dialect.driver == "pysqlite":
            _transactional_ddl(engine)
        _engines[key] = (os.getpid(), engine)
        return engine


def _transactional_ddl(engine: sa.Engine) -> None:
    """Make pysqlite put CREATE/DROP/ALTER inside our transactions (SQLAlchemy's recipe).

    Python's sqlite3 module otherwise runs DDL outside any transaction, so a killed writer
    could leave a half-written table behind.
    """

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def _after_fork_in_child() -> None:
    global _lock
    for _, engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _text(sql: str, params: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
    """``sql`` with its ``?`` parameters as SQLAlchemy binds, and their values.

    Colons are escaped first: a quoted column name in DDL may hold one.
    """
    sql = sql.replace(":", "\\:")
    if not params:
        return sa.text(sql), {}
    parts = sql.split("?")
    named = parts[0] + "".join(f":p{i}{part}" for i, part in enumerate(parts[1:]))
    return sa.text(named), {f"p{i}": value for i, value in enumerate(params)}


class AlchemySession(DbapiSession):
    """A :class:`~prefect_ds.formats.sql.backend.Session` on one SQLAlchemy connection."""

    conn: sa.Connection

    def __init__(self, conn: sa.Connection, loc: SqlLocation, chunksize: int | None) -> None:
        super().__init__(conn, loc)
        self.chunksize = chunksize

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.conn.execute(*_text(sql, params))]

    def run(self, sql: str, *params: Any) -> None:
        self.conn.execute(*_text(sql, params))

    def create(self, name: str, table: pa.Table) -> None:
        frame = to_sqlalchemy_frame(table.slice(0, 0))
        frame.to_sql(name, self.conn, schema=self.loc.schema, index=False)

    def append(self, name: str, table: pa.Table) -> None:
        frame = to_sqlalchemy_frame(table)
        frame.to_sql(name, self.conn, schema=self.loc.schema, index=False,
                     if_exists="append", chunksize=self.chunksize)

    def fetch(self, sql: str) -> pd.DataFrame:
        return pd.read_sql_query(sa.text(sql), self.conn)


class AlchemyBackend(Backend):
    """SQLite and PostgreSQL through SQLAlchemy and pandas' own SQL I/O."""

    name = "sqlalchemy"

    @contextlib.contextmanager
    def session(self, loc: SqlLocation, chunksize: int | None = None) -> Iterator[Session]:
        with engine_for(loc).connect() as conn:
            yield AlchemySession(conn, loc, chunksize)
