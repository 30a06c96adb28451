"""The small table where prefect-ds records what it wrote: ``_prefect_ds_tables``.

One row per table prefect-ds wrote, in the same schema as that table: its database
columns, row count and pandas schema (see ``schema``), a state, the caller's metadata (a
JSON object of strings, e.g. a staleness fingerprint; NULL when none) and a *binding*:
a digest of the table's identity, its database columns and types and its row count
(see :func:`binding`). A read recomputes the binding from the table it finds; a table
that another tool replaced or reshaped no longer matches, and reads as a plain table.

``metadata`` and ``binding`` were added after the first release: a writer adds them to
an older metadata table (``ALTER TABLE ... ADD COLUMN``); readers treat their absence as
NULL (no binding: the row is checked by columns and row count only). The row is written
in the same transaction that puts the table in place, so a row saying ``complete``
always describes the table that is there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence

from prefect_ds.formats.sql.names import SqlLocation

META_TABLE = "_prefect_ds_tables"
COMPLETE = "complete"
COLUMNS = ("table_name", "state", "n_rows", "columns", "arrow_schema", "format_version",
           "written_at", "metadata", "binding")
ADDED_COLUMNS = ("metadata", "binding")  # absent from metadata tables of older releases


def meta_key(loc: SqlLocation) -> str:
    """The row key of ``loc``'s table (SQLite compares table names without case)."""
    return loc.table.lower() if loc.backend == "sqlite" else loc.table


def meta_table(loc: SqlLocation) -> str:
    """The quoted metadata table next to ``loc``'s table."""
    return loc.quoted(META_TABLE)


def create_sql(loc: SqlLocation) -> str:
    """DDL creating the metadata table if it is missing (portable types only)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {meta_table(loc)} ("
        "table_name VARCHAR(128) NOT NULL PRIMARY KEY, state VARCHAR(16) NOT NULL, "
        "n_rows BIGINT NOT NULL, columns TEXT NOT NULL, arrow_schema TEXT NOT NULL, "
        "format_version INTEGER NOT NULL, written_at VARCHAR(40) NOT NULL, metadata TEXT, "
        "binding TEXT)"
    )


def add_column_sql(loc: SqlLocation, column: str) -> str:
    """DDL upgrading a metadata table written before ``column`` existed."""
    return f"ALTER TABLE {meta_table(loc)} ADD COLUMN {column} TEXT"


def binding(identity: str, columns: Sequence[tuple[str, str]], n_rows: int) -> str:
    """The digest binding a metadata row to one table: who it is, its columns, its rows.

    ``identity`` is what changes when another tool drops and recreates the table (its
    PostgreSQL OID; on SQLite its stored ``CREATE TABLE`` text, which carries a random
    token prefect-ds puts there), ``columns`` its database column names and types.
    """
    text = json.dumps([identity, [list(c) for c in columns], n_rows])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode_metadata(metadata: Mapping[str, str] | None) -> str | None:
    return json.dumps(dict(metadata), sort_keys=True) if metadata else None


def decode_metadata(text: object) -> dict[str, str]:
    """The stored metadata; ``{}`` for NULL or for text that is not a JSON object."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
