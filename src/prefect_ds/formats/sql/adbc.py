"""The fast path: SQLite and PostgreSQL through ADBC (Arrow in, Arrow out, bulk COPY).

A write ingests into a uniquely named table, drops the old table, renames the new one
into place and records its metadata, all in one transaction: a reader, a failure or a
killed writer sees the old table or the new one, never a part. A PostgreSQL read locks
the table (ACCESS SHARE) before reading its metadata and rows, so a concurrent swap
cannot slip between them, and turns off parallel and synchronized scans so rows come
back in the order they were written.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from prefect_ds._redact import scrub
from prefect_ds.formats.sql import meta as meta
from prefect_ds.formats.sql.names import SqlLocation
from prefect_ds.formats.sql.schema import Prepared, TableMeta

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
            f"cannot connect to {loc.shown}: {_scrub(str(exc), loc)}. Check the host, port, "
            f"user and database in the URL (or PGPASSWORD / ~/.pgpass for the password)."
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


# -- SQL helpers ---------------------------------------------------------------------------


def _param(loc: SqlLocation, i: int) -> str:
    return "?" if loc.backend == "sqlite" else f"${i}"


def _rows(cur: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    cur.execute(sql, parameters=params) if params else cur.execute(sql)
    return list(cur.fetchall())


def _table_exists(cur: Any, loc: SqlLocation, table: str | None = None) -> bool:
    name = table or loc.table
    if loc.backend == "sqlite":
        return bool(_rows(
            cur, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
            name,
        ))
    # One catalog query under one snapshot: during a concurrent swap it sees the old table
    # or the renamed new one, never neither (to_regclass() could, between its two lookups).
    query = (
        "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relname = $1 AND n.nspname = "
    )
    if loc.schema is None:
        found = _rows(cur, query + "current_schema()", name)
    else:
        found = _rows(cur, query + "$2", name, loc.schema)
    return bool(found) and found[0][0] in ("r", "p")


def _read_meta(cur: Any, loc: SqlLocation) -> tuple[str, TableMeta] | None:
    if not _table_exists(cur, loc, meta.META_TABLE):
        return None
    found = _rows(
        cur,
        f"SELECT state, columns, n_rows, arrow_schema FROM {meta.meta_table(loc)} "
        f"WHERE table_name = {_param(loc, 1)}",
        meta.meta_key(loc),
    )
    if not found:
        return None
    state, columns, n_rows, schema = found[0]
    return str(state), TableMeta.decode(str(columns), int(n_rows), str(schema))


def _has_metadata_column(cur: Any, loc: SqlLocation) -> bool:
    if loc.backend == "sqlite":
        return bool(_rows(
            cur, f"SELECT 1 FROM pragma_table_info('{meta.META_TABLE}') WHERE name = ?",
            meta.METADATA_COLUMN,
        ))
    query = (
        "SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2 "
        "AND table_schema = "
    )
    if loc.schema is None:
        return bool(_rows(cur, query + "current_schema()", meta.META_TABLE,
                          meta.METADATA_COLUMN))
    return bool(_rows(cur, query + "$3", meta.META_TABLE, meta.METADATA_COLUMN, loc.schema))


def _ensure_meta_table(conn: Any, loc: SqlLocation) -> None:
    cur = conn.cursor()
    for attempt in range(3):
        try:
            if not _table_exists(cur, loc, meta.META_TABLE):
                cur.execute(meta.create_sql(loc))
            elif not _has_metadata_column(cur, loc):  # a table from before the column
                cur.execute(meta.add_metadata_column_sql(loc))
            conn.commit()
            return
        except Exception:  # two first writers racing to create it: one wins, retry
            conn.rollback()
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))


def _sqlite_file_missing(loc: SqlLocation) -> bool:
    return loc.backend == "sqlite" and not os.path.exists(str(loc.url.database))


# -- operations ----------------------------------------------------------------------------


def write(loc: SqlLocation, prepared: Prepared,
          metadata: Mapping[str, str] | None = None) -> None:
    """Replace ``loc``'s table with ``prepared`` (and its metadata row) in one transaction."""
    if loc.backend == "sqlite":
        folder = os.path.dirname(os.path.abspath(str(loc.url.database)))
        os.makedirs(folder, exist_ok=True)
    with _pool(loc).connection() as conn:
        cur = conn.cursor()
        if loc.schema is not None and not _rows(
            cur, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", loc.schema
        ):
            raise LookupError(
                f"schema {loc.schema!r} does not exist in {loc.shown}; create it first "
                f"(CREATE SCHEMA {loc.quote(loc.schema)}) or drop the schema from the location"
            )
        conn.rollback()
        _ensure_meta_table(conn, loc)
        temp = f"{meta.META_TABLE}_tmp_{uuid.uuid4().hex[:12]}"
        cur.adbc_ingest(temp, prepared.table, mode="create", db_schema_name=loc.schema)
        cur.execute(f"DROP TABLE IF EXISTS {loc.quoted()}")
        cur.execute(f"ALTER TABLE {loc.quoted(temp)} RENAME TO {loc.quote(loc.table)}")
        p = [_param(loc, i) for i in range(1, len(meta.COLUMNS) + 1)]
        cur.execute(
            f"INSERT INTO {meta.meta_table(loc)} ({', '.join(meta.COLUMNS)}) "
            f"VALUES ({', '.join(p)}) ON CONFLICT (table_name) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in meta.COLUMNS[1:]),
            parameters=(
                meta.meta_key(loc), meta.COMPLETE, prepared.meta.n_rows,
                prepared.meta.encode_columns(), prepared.meta.encode_schema(),
                1, meta.now(), meta.encode_metadata(metadata),
            ),
        )
        conn.commit()
    log.debug("wrote %d rows to %s through ADBC", prepared.meta.n_rows, loc.shown)


def read(loc: SqlLocation) -> tuple[pa.Table, TableMeta | None]:
    """The table's rows (in stored order) and, if prefect-ds wrote it, its metadata."""
    if _sqlite_file_missing(loc):
        raise FileNotFoundError(_missing(loc))
    with _pool(loc).connection() as conn:
        cur = conn.cursor()
        if loc.backend == "postgresql":
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cur.execute("SET LOCAL synchronize_seqscans = off")
        if loc.backend == "postgresql":
            # Lock first: it waits out a concurrent swap and then holds the table still.
            try:
                cur.execute(f"LOCK TABLE {loc.quoted()} IN ACCESS SHARE MODE")
            except Exception as exc:
                if getattr(exc, "sqlstate", None) in ("42P01", "3F000"):  # no table/schema
                    raise FileNotFoundError(_missing(loc)) from None
                raise
        if not _table_exists(cur, loc):
            raise FileNotFoundError(_missing(loc))
        found = _read_meta(cur, loc)
        if loc.backend == "sqlite":
            cur.adbc_statement.set_options(
                **{"adbc.sqlite.query.batch_rows": str(_SQLITE_BATCH_ROWS)}
            )
        cur.execute(f"SELECT * FROM {loc.quoted()}")
        table = cur.fetch_arrow_table()
    if found is None or found[0] != meta.COMPLETE:
        return table, None
    return table, found[1]


def read_metadata(loc: SqlLocation) -> dict[str, str]:
    """The caller's metadata recorded with the table; ``{}`` when there is none."""
    if _sqlite_file_missing(loc):
        return {}
    with _pool(loc).connection() as conn:
        cur = conn.cursor()
        if not _table_exists(cur, loc, meta.META_TABLE) or not _has_metadata_column(cur, loc):
            return {}
        found = _rows(
            cur,
            f"SELECT state, {meta.METADATA_COLUMN} FROM {meta.meta_table(loc)} "
            f"WHERE table_name = {_param(loc, 1)}",
            meta.meta_key(loc),
        )
    if not found or found[0][0] != meta.COMPLETE:
        return {}
    return meta.decode_metadata(found[0][1])


def stored_rows(loc: SqlLocation) -> int | None:
    """The row count recorded when prefect-ds wrote the table; None for other tables."""
    if _sqlite_file_missing(loc):
        return None
    with _pool(loc).connection() as conn:
        found = _read_meta(conn.cursor(), loc)
    return found[1].n_rows if found is not None and found[0] == meta.COMPLETE else None


def exists(loc: SqlLocation) -> bool:
    """The table is there and, if prefect-ds wrote it, its write completed."""
    if _sqlite_file_missing(loc):
        return False
    with _pool(loc).connection() as conn:
        cur = conn.cursor()
        if not _table_exists(cur, loc):
            return False
        found = _read_meta(cur, loc)
        return found is None or found[0] == meta.COMPLETE


def delete(loc: SqlLocation) -> None:
    """Drop the table and its metadata row in one transaction; nothing if absent."""
    if _sqlite_file_missing(loc):
        return
    with _pool(loc).connection() as conn:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {loc.quoted()}")
        if _table_exists(cur, loc, meta.META_TABLE):
            cur.execute(
                f"DELETE FROM {meta.meta_table(loc)} WHERE table_name = {_param(loc, 1)}",
                parameters=(meta.meta_key(loc),),
            )
        conn.commit()


def _missing(loc: SqlLocation) -> str:
    return (
        f"no table {loc.qualified!r} in {loc.shown.rpartition('#')[0]}; write it first, or "
        f"check the database URL and table name"
    )

