"""What a database says about its tables: one query per question, per database.

The questions differ by database (SQLite's ``sqlite_master`` and pragmas, PostgreSQL's
``pg_catalog``), not by the engine that asks them, so both backends ask them here
through their :class:`~prefect_ds.formats.sql.backend.Session`. Parameters are written
``?``; the session turns them into its driver's style.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_ds.formats.sql.names import SqlLocation

if TYPE_CHECKING:
    from prefect_ds.formats.sql.backend import Session

_PG_TABLES = (
    "SELECT CAST(c.oid AS bigint), c.relname FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname = {schema}"
)


def _pg_schema(loc: SqlLocation) -> tuple[str, tuple[str, ...]]:
    return ("current_schema()", ()) if loc.schema is None else ("?", (loc.schema,))


def tables_named(s: Session, loc: SqlLocation, name: str) -> list[str]:
    """The tables in ``loc``'s schema whose names equal ``name`` ignoring case.

    One catalog query under one snapshot: during a concurrent swap it sees the old table
    or the renamed new one, never neither.
    """
    if loc.backend == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE"
        return [str(r[0]) for r in s.rows(query, name)]
    schema, params = _pg_schema(loc)
    query = _PG_TABLES.format(schema=schema) + " AND lower(c.relname) = lower(?)"
    return [str(r[1]) for r in s.rows(query, *params, name)]


def table_names(s: Session, loc: SqlLocation) -> list[str]:
    """Every table in ``loc``'s schema (or SQLite file)."""
    if loc.backend == "sqlite":
        return [str(r[0]) for r in s.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
    schema, params = _pg_schema(loc)
    return [str(r[1]) for r in s.rows(_PG_TABLES.format(schema=schema), *params)]


def exists(s: Session, loc: SqlLocation, name: str) -> bool:
    """Whether table ``name`` exists, spelled exactly so (SQLite: in any case)."""
    found = tables_named(s, loc, name)
    return bool(found) if loc.backend == "sqlite" else name in found


def _pg_oid(s: Session, loc: SqlLocation, name: str) -> int | None:
    schema, params = _pg_schema(loc)
    found = s.rows(_PG_TABLES.format(schema=schema) + " AND c.relname = ?", *params, name)
    return int(found[0][0]) if found else None


def columns(s: Session, loc: SqlLocation, name: str) -> list[tuple[str, str]]:
    """``(name, declared type)`` of each column of table ``name``, in order."""
    if loc.backend == "sqlite":
        found = s.rows("SELECT name, type FROM pragma_table_info(?) ORDER BY cid", name)
        return [(str(n), str(t or "").upper()) for n, t in found]
    schema, params = _pg_schema(loc)
    found = s.rows(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE c.relname = ? AND n.nspname = {schema} "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", name, *params,
    )
    return [(str(n), str(t)) for n, t in found]


def identity(s: Session, loc: SqlLocation, name: str) -> str:
    """What changes when the table is dropped and created again (see ``meta.binding``)."""
    if loc.backend == "sqlite":
        found = s.rows("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", name)
        return str(found[0][0]) if found else ""
    return str(_pg_oid(s, loc, name))


def dependent_views(s: Session, loc: SqlLocation, name: str) -> list[str]:
    """The views (plain or materialized) that PostgreSQL would not let a DROP remove."""
    if loc.backend == "sqlite":
        return []  # SQLite resolves a view's tables when it is queried
    schema, params = _pg_schema(loc)
    found = s.rows(
        "SELECT DISTINCT v.relname FROM pg_catalog.pg_depend d "
        "JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid "
        "JOIN pg_catalog.pg_class v ON v.oid = r.ev_class "
        "JOIN pg_catalog.pg_class c ON c.oid = d.refobjid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relname = ? AND n.nspname = {schema} AND v.oid <> c.oid ORDER BY 1",
        name, *params,
    )
    return [str(r[0]) for r in found]


def referencing_keys(s: Session, loc: SqlLocation, name: str) -> list[str]:
    """Other tables' foreign keys that point at ``name`` (``table.constraint``): PostgreSQL
    neither truncates nor drops a table they reference."""
    if loc.backend == "sqlite":
        return []  # SQLite checks foreign keys only when a connection turns them on
    schema, params = _pg_schema(loc)
    found = s.rows(
        "SELECT src.relname, con.conname FROM pg_catalog.pg_constraint con "
        "JOIN pg_catalog.pg_class c ON c.oid = con.confrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_class src ON src.oid = con.conrelid "
        f"WHERE con.contype = 'f' AND c.relname = ? AND n.nspname = {schema} "
        "AND con.conrelid <> con.confrelid ORDER BY 1, 2",
        name, *params,
    )
    return [f"{r[0]}.{r[1]}" for r in found]


def schema_exists(s: Session, loc: SqlLocation) -> bool:
    if loc.schema is None:
        return True
    return bool(s.rows("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?", loc.schema))


def has_column(s: Session, loc: SqlLocation, table: str, column: str) -> bool:
    return any(name == column for name, _ in columns(s, loc, table))
