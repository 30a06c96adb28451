"""The small table where prefect-ds records what it wrote: ``_prefect_ds_tables``.

One row per table prefect-ds wrote, in the same schema as that table: its database
columns, row count and pandas schema (see ``_sql_schema``), a state, and the caller's
metadata (a JSON object of strings, e.g. a staleness fingerprint; NULL when none). The
``metadata`` column was added after the first release: a writer adds it to an older
metadata table (``ALTER TABLE ... ADD COLUMN``) and readers treat its absence as NULL. The row is
written in the same transaction that swaps the table in, so on databases with
transactional DDL (SQLite, PostgreSQL) a row saying ``complete`` always describes the
table that is there. Where DDL commits on its own (MySQL, Oracle) the row says
``writing`` until the swap is done, and ``exists`` is false in between.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from prefect_ds.formats.sql.names import SqlLocation

META_TABLE = "_prefect_ds_tables"
COMPLETE = "complete"
WRITING = "writing"
COLUMNS = ("table_name", "state", "n_rows", "columns", "arrow_schema", "format_version",
           "written_at", "metadata")
METADATA_COLUMN = "metadata"


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
        "format_version INTEGER NOT NULL, written_at VARCHAR(40) NOT NULL, metadata TEXT)"
    )


def add_metadata_column_sql(loc: SqlLocation) -> str:
    """DDL upgrading a metadata table written before the ``metadata`` column existed."""
    return f"ALTER TABLE {meta_table(loc)} ADD COLUMN {METADATA_COLUMN} TEXT"


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
