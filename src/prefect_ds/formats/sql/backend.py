"""The one interface of the SQL engines, and every table operation, written once.

An engine (ADBC, SQLAlchemy) differs from the other in how it talks to the database:
how it opens a connection, runs a statement, bulk-loads an Arrow table and fetches one.
That is all a :class:`Backend` subclass supplies, as a :class:`Session`. What a write, a
read or a delete *does* (which statements, in which order, in one transaction) is the
same for both and lives here, in :class:`Backend`. What differs by database (SQLite or
PostgreSQL) is in ``catalog`` and in the few branches below that name one.

A write, in one transaction:

1. PostgreSQL: create an empty, uniquely named table typed as the engine types the frame
   (SQLite: the column types are known from the frame; see :func:`sqlite_ddl`).
2. If the table there already has exactly these column names and types, empty it
   (``TRUNCATE`` / ``DELETE``) and load the rows into it: its indexes, grants, triggers,
   comments and dependent views stay. A reader waits for the commit and sees the old or
   the new rows, never a part.
3. Otherwise replace it: PostgreSQL loads the rows into the new table, drops the old one
   and renames the new one into place (readers read the old table meanwhile); SQLite
   drops it, creates it afresh and loads the rows (its readers see the old file until
   the commit).
4. Record the metadata row, bound to the table now there (``meta.binding``).
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from prefect_ds._errors import UnsafeLocationError, UnsupportedFrameError
from prefect_ds._lazy import lazy
from prefect_ds.formats.sql import catalog, meta
from prefect_ds.formats.sql.names import SqlLocation
from prefect_ds.formats.sql.schema import Prepared, TableMeta, matches

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    pd = lazy("pandas")
    pa = lazy("pyarrow")

log = logging.getLogger("prefect_ds.sql")

class Session(Protocol):
    """One connection inside one transaction; rolled back unless :meth:`commit` is called.

    SQL passed to :meth:`rows` and :meth:`run` writes its parameters as ``?``.
    """

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""

    def run(self, sql: str, *params: Any) -> None:
        """Run a statement."""

    def create(self, name: str, table: pa.Table) -> None:
        """Create the empty table ``name`` with the columns this engine gives ``table``."""

    def append(self, name: str, table: pa.Table) -> None:
        """Bulk-load ``table``'s rows into the existing table ``name``."""

    def fetch(self, sql: str) -> pa.Table | pd.DataFrame:
        """All rows of a query, in the order the database returns them."""

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class DbapiSession:
    """What both engines' sessions share: a DB-API-style connection to ``loc``'s database,
    whose transaction ends with ``commit`` or ``rollback``."""

    def __init__(self, conn: Any, loc: SqlLocation) -> None:
        self.conn = conn
        self.loc = loc

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


@dataclass(frozen=True)
class Stored:
    """A table as read: its rows, and its metadata if it is still the table described."""

    data: pa.Table | pd.DataFrame
    meta: TableMeta | None
    stale: str | None = None  # why a metadata row was set aside, if one was


def _sqlite_type(t: pa.DataType) -> str:
    """The declared type ADBC's SQLite driver would give a column of type ``t``."""
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "REAL"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "TEXT"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    return ""


def sqlite_ddl(loc: SqlLocation, table: pa.Table) -> tuple[str, list[tuple[str, str]]]:
    """``CREATE TABLE`` for ``loc`` on SQLite, and the columns ``catalog.columns`` will see.

    A comment with a random token goes into the statement, which SQLite keeps as the
    table's ``sql``: the same table written by another tool has other text, so the
    binding of the metadata row (``meta.binding``) tells the two apart.
    """
    columns = [(name, _sqlite_type(field.type)) for name, field in zip(
        table.column_names, table.schema, strict=True)]
    body = ", ".join(f"{loc.quote(name)} {kind}".rstrip() for name, kind in columns)
    token = uuid.uuid4().hex
    return f"CREATE TABLE {loc.quoted()} ( -- prefect-ds {token}\n{body})", columns


class Backend(abc.ABC):
    """An engine that stores and loads tables; subclasses supply :meth:`session` only."""

    name: ClassVar[str]

    @abc.abstractmethod
    def session(self, loc: SqlLocation, chunksize: int | None = None
                ) -> AbstractContextManager[Session]:
        """A :class:`Session` on ``loc``'s database (``chunksize``: rows per INSERT batch)."""

    # -- operations ----------------------------------------------------------------------

    def write(self, loc: SqlLocation, prepared: Prepared,
              metadata: Mapping[str, str] | None = None, chunksize: int | None = None) -> None:
        """Replace ``loc``'s table with ``prepared`` and its metadata row, in one transaction."""
        if loc.backend == "sqlite":
            os.makedirs(os.path.dirname(os.path.abspath(str(loc.url.database))), exist_ok=True)
        with self.session(loc, chunksize) as s:
            if not catalog.schema_exists(s, loc):
                raise LookupError(
                    f"schema {loc.schema!r} does not exist in {loc.shown}; create it first "
                    f"(CREATE SCHEMA {loc.quote(str(loc.schema))}) or drop the schema from "
                    f"the location"
                )
            _ensure_meta_table(s, loc)
            _serialize_writers(s, loc)
            found = catalog.tables_named(s, loc, loc.table)
            _refuse_case_twin(loc, found)
            data = prepared.table
            temp = f"{meta.META_TABLE}_tmp_{uuid.uuid4().hex[:12]}"
            if loc.backend == "sqlite":
                ddl, new = sqlite_ddl(loc, data)
            else:
                s.create(temp, data.slice(0, 0))
                new = catalog.columns(s, loc, temp)
            _refuse_referenced(s, loc, found)
            if found and catalog.columns(s, loc, loc.table) == new:  # keep the table
                if loc.backend == "sqlite":
                    s.run(f"DELETE FROM {loc.quoted()}")
                else:
                    s.run(f"DROP TABLE {loc.quoted(temp)}")
                    s.run(f"TRUNCATE {loc.quoted()}")
                s.append(loc.table, data)
            elif loc.backend == "sqlite":
                s.run(f"DROP TABLE IF EXISTS {loc.quoted()}")
                s.run(ddl)
                s.append(loc.table, data)
            else:
                _refuse_dependent_views(s, loc, found)
                s.append(temp, data)
                s.run(f"DROP TABLE IF EXISTS {loc.quoted()}")
                s.run(f"ALTER TABLE {loc.quoted(temp)} RENAME TO {loc.quote(loc.table)}")
            bound = meta.binding(catalog.identity(s, loc, loc.table), new, prepared.meta.n_rows)
            _record(s, loc, prepared.meta, metadata, bound)
            s.commit()
        log.debug("wrote %d rows to %s through %s", prepared.meta.n_rows, loc.shown, self.name)

    def read(self, loc: SqlLocation) -> Stored:
        """The table's rows (in stored order) and its metadata while it still applies."""
        if _sqlite_file_missing(loc):
            raise FileNotFoundError(_missing(loc))
        with self.session(loc) as s:
            if loc.backend == "postgresql":  # rows in written order, whole tables only
                s.run("SET LOCAL max_parallel_workers_per_gather = 0")
                s.run("SET LOCAL synchronize_seqscans = off")
            _require_table(s, loc)
            if loc.backend == "postgresql":
                # Lock first: it waits out a concurrent swap and then holds the table still.
                try:
                    s.run(f"LOCK TABLE {loc.quoted()} IN ACCESS SHARE MODE")
                except Exception as exc:
                    if _sqlstate(exc) in ("42P01", "3F000"):  # no such table/schema
                        raise FileNotFoundError(_missing(loc)) from None
                    raise
            found = _read_meta(s, loc)
            data = s.fetch(f"SELECT * FROM {loc.quoted()}")
            n_rows = data.num_rows if isinstance(data, pa.Table) else len(data)
            if found is None:
                return Stored(data, None)
            table_meta, binding = found
            if binding is not None:  # a row from before bindings is checked as below
                now = meta.binding(catalog.identity(s, loc, loc.table),
                                   catalog.columns(s, loc, loc.table), n_rows)
                if now == binding:
                    return Stored(data, table_meta)
                return Stored(data, None, "it is not the table prefect-ds wrote: its "
                              "identity, columns, column types or row count differ")
        columns = data.column_names if isinstance(data, pa.Table) else [str(c) for c in data]
        if not matches(list(columns), n_rows, table_meta):
            return Stored(data, None, "columns or row count differ from what was written")
        return Stored(data, table_meta)

    def read_metadata(self, loc: SqlLocation) -> dict[str, str]:
        """The caller's metadata recorded with the table; ``{}`` when there is none."""
        if _sqlite_file_missing(loc):
            return {}
        with self.session(loc) as s:
            _refuse_case_twin(loc, catalog.tables_named(s, loc, loc.table))
            if not catalog.has_column(s, loc, meta.META_TABLE, "metadata"):
                return {}
            found = s.rows(f"SELECT state, metadata FROM {meta.meta_table(loc)} "
                           "WHERE table_name = ?", meta.meta_key(loc))
        if not found or found[0][0] != meta.COMPLETE:
            return {}
        return meta.decode_metadata(found[0][1])

    def written_at(self, loc: SqlLocation) -> dt.datetime | None:
        """When prefect-ds last completed a write of the table; None for other tables."""
        if _sqlite_file_missing(loc):
            return None
        with self.session(loc) as s:
            if not catalog.has_column(s, loc, meta.META_TABLE, "written_at"):
                return None
            found = s.rows(f"SELECT state, written_at FROM {meta.meta_table(loc)} "
                           "WHERE table_name = ?", meta.meta_key(loc))
        if not found or found[0][0] != meta.COMPLETE:
            return None
        try:
            return dt.datetime.fromisoformat(str(found[0][1]))
        except ValueError:
            return None

    def stored_rows(self, loc: SqlLocation) -> int | None:
        """The row count recorded when prefect-ds wrote the table; None for other tables."""
        if _sqlite_file_missing(loc):
            return None
        with self.session(loc) as s:
            _refuse_case_twin(loc, catalog.tables_named(s, loc, loc.table))
            found = _read_meta(s, loc)
        return found[0].n_rows if found is not None else None

    def exists(self, loc: SqlLocation) -> bool:
        """The table is there and, if prefect-ds wrote it, its write completed."""
        if _sqlite_file_missing(loc):
            return False
        with self.session(loc) as s:
            found = catalog.tables_named(s, loc, loc.table)
            _refuse_case_twin(loc, found)
            if loc.table not in found:
                return False
            if not catalog.exists(s, loc, meta.META_TABLE):
                return True
            state = s.rows(f"SELECT state FROM {meta.meta_table(loc)} WHERE table_name = ?",
                           meta.meta_key(loc))
            return not state or state[0][0] == meta.COMPLETE

    def delete(self, loc: SqlLocation) -> None:
        """Drop the table and its metadata row in one transaction; nothing if absent."""
        if _sqlite_file_missing(loc):
            return
        with self.session(loc) as s:
            _refuse_case_twin(loc, catalog.tables_named(s, loc, loc.table))
            s.run(f"DROP TABLE IF EXISTS {loc.quoted()}")
            if catalog.exists(s, loc, meta.META_TABLE):
                s.run(f"DELETE FROM {meta.meta_table(loc)} WHERE table_name = ?",
                      meta.meta_key(loc))
            s.commit()

    def list_tables(self, loc: SqlLocation) -> list[str]:
        """The names of the tables in ``loc``'s database schema."""
        if _sqlite_file_missing(loc):
            return []
        with self.session(loc) as s:
            return catalog.table_names(s, loc)


# -- steps shared by the operations --------------------------------------------------------


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, raised bare (ADBC) or wrapped (SQLAlchemy)."""
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return str(state) if state else None


def _sqlite_file_missing(loc: SqlLocation) -> bool:
    return loc.backend == "sqlite" and not os.path.exists(str(loc.url.database))


def _missing(loc: SqlLocation) -> str:
    return (
        f"no table {loc.qualified!r} in {loc.shown.rpartition('#')[0]}; write it first, or "
        f"check the database URL and table name"
    )


def _refuse_case_twin(loc: SqlLocation, found: list[str]) -> None:
    """Refuse a table name that another stored table's name equals but for case.

    SQLite compares table names without case, so ``sales_EU`` and ``sales_eu`` are one
    table there; PostgreSQL keeps them apart only when quoted, and every unquoted query
    folds both to ``sales_eu``. Either way two results would share, or seem to share,
    one table.
    """
    twins = [name for name in found if name != loc.table]
    if not twins:
        return
    raise UnsafeLocationError(
        f"table {loc.qualified!r} and the stored table {twins[0]!r} in "
        f"{loc.shown.rpartition('#')[0]} differ only by case: "
        + ("SQLite compares table names without case, so they are one table. "
           if loc.backend == "sqlite" else
           "PostgreSQL folds unquoted names to lower case, so SQL written by hand reaches "
           "only one of them. ")
        + "Use one spelling for both (e.g. render the name in lower case), or drop the "
          "other table."
    )


def _require_table(s: Session, loc: SqlLocation) -> None:
    """Refuse a case twin; raise FileNotFoundError unless ``loc``'s table is there."""
    found = catalog.tables_named(s, loc, loc.table)
    _refuse_case_twin(loc, found)
    if not found:
        raise FileNotFoundError(_missing(loc))


def _refuse_referenced(s: Session, loc: SqlLocation, found: list[str]) -> None:
    keys = catalog.referencing_keys(s, loc, loc.table) if found else []
    if keys:
        raise UnsupportedFrameError(
            f"table {loc.qualified!r} is referenced by foreign keys of other tables "
            f"({', '.join(keys)}): PostgreSQL can neither empty nor replace it while they "
            f"point at it. Nothing was written. Drop those constraints first (ALTER TABLE "
            f"... DROP CONSTRAINT ...), or write the frame to another table."
        )


def _refuse_dependent_views(s: Session, loc: SqlLocation, found: list[str]) -> None:
    views = catalog.dependent_views(s, loc, loc.table) if found else []
    if views:
        raise UnsupportedFrameError(
            f"table {loc.qualified!r} has other columns or column types than this frame, and "
            f"views depend on it ({', '.join(views)}): PostgreSQL cannot replace a table "
            f"under its views. Nothing was written. Write a frame with the same columns "
            f"and dtypes (the table is then refilled in place and the views stay), or drop "
            f"the views first."
        )


def _serialize_writers(s: Session, loc: SqlLocation) -> None:
    """Wait for any other writer of ``loc``'s table, before this one reads anything.

    SQLite: a first write takes the database's write lock (waiting out another writer),
    so the transaction never has to upgrade a read lock, which SQLite refuses at once.
    PostgreSQL: a transaction-scoped advisory lock on the table's name, so two writers
    never hold one lock each (the metadata row, the table) and wait for the other's.
    """
    if loc.backend == "sqlite":
        s.run(f"DELETE FROM {meta.meta_table(loc)} WHERE table_name = ?", meta.meta_key(loc))
    else:
        s.rows("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
               f"prefect_ds:{loc.qualified}")


def _ensure_meta_table(s: Session, loc: SqlLocation) -> None:
    """Create the metadata table, or add the columns an older one lacks (committed)."""
    for attempt in range(3):
        try:
            if not catalog.exists(s, loc, meta.META_TABLE):
                s.run(meta.create_sql(loc))
            else:
                have = {name for name, _ in catalog.columns(s, loc, meta.META_TABLE)}
                for column in meta.ADDED_COLUMNS:
                    if column not in have:
                        s.run(meta.add_column_sql(loc, column))
            s.commit()
            return
        except Exception:  # two first writers racing to create it: one wins, retry
            s.rollback()
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))


def _record(s: Session, loc: SqlLocation, table_meta: TableMeta,
            metadata: Mapping[str, str] | None, binding: str) -> None:
    s.run(
        f"INSERT INTO {meta.meta_table(loc)} ({', '.join(meta.COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in meta.COLUMNS)}) ON CONFLICT (table_name) DO UPDATE "
        f"SET {', '.join(f'{c} = excluded.{c}' for c in meta.COLUMNS[1:])}",
        meta.meta_key(loc), meta.COMPLETE, table_meta.n_rows, table_meta.encode_columns(),
        table_meta.encode_schema(), 1, meta.now(), meta.encode_metadata(metadata), binding,
    )


def _read_meta(s: Session, loc: SqlLocation) -> tuple[TableMeta, str | None] | None:
    """The recorded metadata of a completed write and its binding; None if there is none."""
    if not catalog.exists(s, loc, meta.META_TABLE):
        return None
    has_binding = catalog.has_column(s, loc, meta.META_TABLE, "binding")
    found = s.rows(
        f"SELECT state, columns, n_rows, arrow_schema{', binding' if has_binding else ''} "
        f"FROM {meta.meta_table(loc)} WHERE table_name = ?", meta.meta_key(loc),
    )
    if not found or found[0][0] != meta.COMPLETE:
        return None
    row = found[0]
    binding = str(row[4]) if has_binding and row[4] is not None else None
    return TableMeta.decode(str(row[1]), int(row[2]), str(row[3])), binding
