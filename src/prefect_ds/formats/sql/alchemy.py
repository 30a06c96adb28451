"""The portable path: any SQLAlchemy dialect through ``DataFrame.to_sql`` / ``read_sql``.

Used for databases without an ADBC driver here (MySQL, SQL Server, Oracle…) or when asked
for with ``engine="sqlalchemy"``. The write follows the same steps as the fast path (a
uniquely named table, then drop + rename + metadata row in one transaction); on
databases whose DDL commits on its own the metadata row says ``writing`` until the swap
is done, so ``exists`` stays false for a half-finished replacement.

Engines are cached per URL and per process; a forked child disposes of its parent's
pool without closing the parent's connections (SQLAlchemy's recommended pattern).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from prefect_ds._errors import MissingDependencyError
from prefect_ds.formats.sql import meta as meta
from prefect_ds.formats.sql.names import SqlLocation
from prefect_ds.formats.sql.schema import Prepared, TableMeta, to_sqlalchemy_frame

log = logging.getLogger("prefect_ds.sql")

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
    could leave its temporary table behind.
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


def _meta_table(loc: SqlLocation) -> sa.Table:
    return sa.Table(
        meta.META_TABLE,
        sa.MetaData(),
        sa.Column("table_name", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("n_rows", sa.BigInteger, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("arrow_schema", sa.Text, nullable=False),
        sa.Column("format_version", sa.Integer, nullable=False),
        sa.Column("written_at", sa.String(40), nullable=False),
        sa.Column(meta.METADATA_COLUMN, sa.Text, nullable=True),
        schema=loc.schema,
    )


def _table(loc: SqlLocation, name: str | None = None) -> sa.TableClause:
    return sa.table(name or loc.table, schema=loc.schema)


def _rename(conn: sa.Connection, loc: SqlLocation, old: str, new: str) -> None:
    if conn.dialect.name == "mssql":
        qualified = f"{loc.schema}.{old}" if loc.schema else old
        conn.execute(sa.text("EXEC sp_rename :old, :new"), {"old": qualified, "new": new})
        return
    prep = conn.dialect.identifier_preparer
    conn.execute(sa.text(
        f"ALTER TABLE {prep.format_table(_table(loc, old))} RENAME TO {prep.quote_identifier(new)}"
    ))


def _set_meta(conn: sa.Connection, loc: SqlLocation, prepared: Prepared, state: str,
              metadata: Mapping[str, str] | None = None) -> None:
    table = _meta_table(loc)
    key = meta.meta_key(loc)
    conn.execute(table.delete().where(table.c.table_name == key))
    conn.execute(table.insert().values(
        table_name=key, state=state, n_rows=prepared.meta.n_rows,
        columns=prepared.meta.encode_columns(), arrow_schema=prepared.meta.encode_schema(),
        format_version=1, written_at=meta.now(), metadata=meta.encode_metadata(metadata),
    ))


def _has_metadata_column(conn: sa.Connection, loc: SqlLocation) -> bool:
    columns = sa.inspect(conn).get_columns(meta.META_TABLE, schema=loc.schema)
    return any(c["name"] == meta.METADATA_COLUMN for c in columns)


def _ensure_meta_table(conn: sa.Connection, loc: SqlLocation) -> None:
    """Create the metadata table, or add the ``metadata`` column to an older one."""
    if not sa.inspect(conn).has_table(meta.META_TABLE, schema=loc.schema):
        _meta_table(loc).create(conn, checkfirst=True)
    elif not _has_metadata_column(conn, loc):
        conn.execute(sa.text(meta.add_metadata_column_sql(loc)))


def _sqlite_file_missing(loc: SqlLocation) -> bool:
    return loc.backend == "sqlite" and not os.path.exists(str(loc.url.database))


def write(loc: SqlLocation, prepared: Prepared, chunksize: int | None = None,
          metadata: Mapping[str, str] | None = None) -> None:
    """Replace ``loc``'s table with ``prepared`` through ``to_sql`` (see module doc)."""
    if loc.backend == "sqlite":
        os.makedirs(os.path.dirname(os.path.abspath(str(loc.url.database))), exist_ok=True)
    engine = engine_for(loc)
    with engine.begin() as conn:
        _ensure_meta_table(conn, loc)
    frame = to_sqlalchemy_frame(prepared.table)
    temp = f"{meta.META_TABLE}_tmp_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            frame.to_sql(temp, conn, schema=loc.schema, index=False, chunksize=chunksize)
            _set_meta(conn, loc, prepared, meta.WRITING)
            _table_obj(loc).drop(conn, checkfirst=True)
            _rename(conn, loc, temp, loc.table)
            _set_meta(conn, loc, prepared, meta.COMPLETE, metadata)
    finally:  # only non-transactional DDL can leave the temporary table behind
        with engine.begin() as conn:
            _table_obj(loc, temp).drop(conn, checkfirst=True)
    log.debug("wrote %d rows to %s through SQLAlchemy", prepared.meta.n_rows, loc.shown)


def _table_obj(loc: SqlLocation, name: str | None = None) -> sa.Table:
    return sa.Table(name or loc.table, sa.MetaData(), schema=loc.schema)


def _read_meta(conn: sa.Connection, loc: SqlLocation) -> tuple[str, TableMeta] | None:
    if not sa.inspect(conn).has_table(meta.META_TABLE, schema=loc.schema):
        return None
    table = _meta_table(loc)
    row = conn.execute(
        sa.select(table.c.state, table.c.columns, table.c.n_rows, table.c.arrow_schema)
        .where(table.c.table_name == meta.meta_key(loc))
    ).first()
    if row is None:
        return None
    return str(row[0]), TableMeta.decode(str(row[1]), int(row[2]), str(row[3]))


def read(loc: SqlLocation) -> tuple[pd.DataFrame, TableMeta | None]:
    """``read_sql`` of the whole table and, if prefect-ds wrote it, its metadata."""
    if _sqlite_file_missing(loc):
        raise FileNotFoundError(_missing(loc))
    with engine_for(loc).connect() as conn:
        if conn.dialect.name == "postgresql":  # same guarantees as the ADBC path
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            conn.exec_driver_sql("SET LOCAL synchronize_seqscans = off")
            try:
                conn.execute(sa.text(
                    f"LOCK TABLE {loc.quoted()} IN ACCESS SHARE MODE"
                ))
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) in ("42P01", "3F000"):
                    raise FileNotFoundError(_missing(loc)) from None
                raise
        if not sa.inspect(conn).has_table(loc.table, schema=loc.schema):
            raise FileNotFoundError(_missing(loc))
        found = _read_meta(conn, loc)
        query: Any = sa.select(sa.text("*")).select_from(_table(loc))
        frame = pd.read_sql_query(query, conn)
    if found is None or found[0] != meta.COMPLETE:
        return frame, None
    return frame, found[1]


def read_metadata(loc: SqlLocation) -> dict[str, str]:
    """The caller's metadata recorded with the table; ``{}`` when there is none."""
    if _sqlite_file_missing(loc):
        return {}
    with engine_for(loc).connect() as conn:
        if (not sa.inspect(conn).has_table(meta.META_TABLE, schema=loc.schema)
                or not _has_metadata_column(conn, loc)):
            return {}
        table = _meta_table(loc)
        row = conn.execute(
            sa.select(table.c.state, table.c.metadata)
            .where(table.c.table_name == meta.meta_key(loc))
        ).first()
    if row is None or row[0] != meta.COMPLETE:
        return {}
    return meta.decode_metadata(row[1])


def stored_rows(loc: SqlLocation) -> int | None:
    """The row count recorded when prefect-ds wrote the table; None for other tables."""
    if _sqlite_file_missing(loc):
        return None
    with engine_for(loc).connect() as conn:
        found = _read_meta(conn, loc)
    return found[1].n_rows if found is not None and found[0] == meta.COMPLETE else None


def list_tables(loc: SqlLocation) -> list[str]:
    """The names of the tables in ``loc``'s database schema (SQLAlchemy's inspector)."""
    if _sqlite_file_missing(loc):
        return []
    with engine_for(loc).connect() as conn:
        return list(sa.inspect(conn).get_table_names(schema=loc.schema))


def exists(loc: SqlLocation) -> bool:
    if _sqlite_file_missing(loc):
        return False
    with engine_for(loc).connect() as conn:
        if not sa.inspect(conn).has_table(loc.table, schema=loc.schema):
            return False
        found = _read_meta(conn, loc)
        return found is None or found[0] == meta.COMPLETE


def delete(loc: SqlLocation) -> None:
    if _sqlite_file_missing(loc):
        return
    with engine_for(loc).begin() as conn:
        _table_obj(loc).drop(conn, checkfirst=True)
        if sa.inspect(conn).has_table(meta.META_TABLE, schema=loc.schema):
            table = _meta_table(loc)
            conn.execute(table.delete().where(table.c.table_name == meta.meta_key(loc)))


def _missing(loc: SqlLocation) -> str:
    return (
        f"no table {loc.qualified!r} in {loc.shown.rpartition('#')[0]}; write it first, or "
        f"check the database URL and table name"
    )
