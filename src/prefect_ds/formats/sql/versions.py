"""Versions of a SQL table: one table per version, committed by a row in
``_prefect_ds_versions``.

Version ``20261201T181533.123456Z-3f9a1c`` of ``sales`` is the table
``sales__v20261201T181533123456Z_3f9a1c`` (the id without ``.``, ``-`` as ``_``), written
like any table (atomically, with its ``_prefect_ds_tables`` row). The version is committed
by one row in ``_prefect_ds_versions`` (same schema): the target table's name, the version
id, the version's table and its run record as JSON. The row is inserted in its own
transaction after the table is in place, so a writer killed before it leaves at most an
uncommitted table that no listing reports. Removing a version deletes its row first, then
drops its table.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from prefect_ds.formats.sql import catalog, meta
from prefect_ds.formats.sql.backend import Backend, Session
from prefect_ds.formats.sql.names import SqlLocation

VERSIONS_TABLE = "_prefect_ds_versions"
TABLE_MARK = "__v"
# A version's table: <table>__v<8 digits>T<12 digits>Z_<6 hex> (any case: SQLite folds it)
_VERSION_TABLE = re.compile(r".+__v\d{8}t\d{12}z_[0-9a-f]{6}$", re.IGNORECASE)


def table_for(table: str, version: str) -> str:
    """The table holding version ``version`` of ``table``."""
    return f"{table}{TABLE_MARK}{version.replace('.', '').replace('-', '_')}"


def is_version_table(name: str) -> bool:
    """Whether ``name`` is the table of some version (left out of listings)."""
    return bool(_VERSION_TABLE.match(name))


def _quoted(loc: SqlLocation) -> str:
    return loc.quoted(VERSIONS_TABLE)


def _ensure(s: Session, loc: SqlLocation) -> None:
    """Create the versions table if it is missing (two first writers: one wins, retry)."""
    for attempt in range(3):
        try:
            if not catalog.exists(s, loc, VERSIONS_TABLE):
                s.run(f"CREATE TABLE IF NOT EXISTS {_quoted(loc)} ("
                      "target VARCHAR(128) NOT NULL, version VARCHAR(40) NOT NULL, "
                      "table_name VARCHAR(128) NOT NULL, record TEXT NOT NULL, "
                      "PRIMARY KEY (target, version))")
            s.commit()
            return
        except Exception:
            s.rollback()
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))


def commit(backend: Backend, loc: SqlLocation, version: str,
           record: Mapping[str, Any]) -> None:
    """Commit a version whose table is in place: insert its row, in one transaction."""
    with backend.session(loc) as s:
        _ensure(s, loc)
        s.run(f"INSERT INTO {_quoted(loc)} (target, version, table_name, record) "
              "VALUES (?, ?, ?, ?)", meta.meta_key(loc), version,
              table_for(loc.table, version),
              json.dumps(dict(record), sort_keys=True, default=str))
        s.commit()


def committed(backend: Backend, loc: SqlLocation) -> list[str]:
    """The committed versions of ``loc``'s table, oldest first (one query)."""
    with backend.session(loc) as s:
        if not catalog.exists(s, loc, VERSIONS_TABLE):
            return []
        rows = s.rows(f"SELECT version FROM {_quoted(loc)} WHERE target = ? "
                      "ORDER BY version", meta.meta_key(loc))
    return [str(row[0]) for row in rows]


def read_record(backend: Backend, loc: SqlLocation, version: str) -> dict[str, Any]:
    """The run record of one committed version (``{}`` if there is none)."""
    with backend.session(loc) as s:
        if not catalog.exists(s, loc, VERSIONS_TABLE):
            return {}
        rows = s.rows(f"SELECT record FROM {_quoted(loc)} WHERE target = ? AND version = ?",
                      meta.meta_key(loc), version)
    if not rows:
        return {}
    found = json.loads(str(rows[0][0]))
    return found if isinstance(found, dict) else {}


def uncommit(backend: Backend, loc: SqlLocation, version: str) -> None:
    """Delete a version's row: it is no longer committed (its table goes next)."""
    with backend.session(loc) as s:
        if catalog.exists(s, loc, VERSIONS_TABLE):
            s.run(f"DELETE FROM {_quoted(loc)} WHERE target = ? AND version = ?",
                  meta.meta_key(loc), version)
            s.commit()


def targets(backend: Backend, loc: SqlLocation) -> list[str]:
    """The tables of ``loc``'s schema that have committed versions."""
    with backend.session(loc) as s:
        if not catalog.exists(s, loc, VERSIONS_TABLE):
            return []
        rows = s.rows(f"SELECT DISTINCT target FROM {_quoted(loc)}")
    return [str(row[0]) for row in rows]
