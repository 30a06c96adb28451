"""SQL locations: ``<SQLAlchemy URL>#[schema.]table``, parsed and checked before any SQL runs.

Table and schema names usually come from task arguments rendered into a template, so
they are the one place where user data meets SQL text. They must be plain identifiers
(ASCII letter or underscore, then ASCII letters, digits or underscores, at most 63
characters, PostgreSQL's limit), and are quoted through the dialect anyway. Anything
else is rejected with :class:`~prefect_ds.UnsafeLocationError` before a connection is
even opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from prefect_ds._errors import TemplateError, UnsafeLocationError
from prefect_ds._lazy import lazy
from prefect_ds._redact import redact, scrub

if TYPE_CHECKING:
    import sqlalchemy.engine as sa_engine
    import sqlalchemy.exc as sa_exc
    from sqlalchemy.engine import URL, Dialect
else:
    sa_engine = lazy("sqlalchemy.engine")
    sa_exc = lazy("sqlalchemy.exc")

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently; we refuse them instead
RESERVED_PREFIX = "_prefect_ds"
SUPPORTED = ("sqlite", "postgresql")  # tested for real; other dialects are refused
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXAMPLE = "sqlite:///results.db#sales_eu or postgresql://user@host/db#features.sales_eu"


def check_identifier(name: str, what: str, location: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise UnsafeLocationError."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_IDENTIFIER:
        problem = f"is {len(name)} characters long (at most {MAX_IDENTIFIER})"
    elif not name.isascii():
        bad = sorted({c for c in name if not c.isascii()})
        problem = f"contains non-ASCII characters {', '.join(repr(c) for c in bad)}"
    elif name[0].isdigit():
        problem = "starts with a digit"
    elif not _IDENTIFIER.fullmatch(name):
        bad = sorted({c for c in name if not (c.isalnum() or c == "_")})
        problem = f"contains {', '.join(repr(c) for c in bad)}"
    elif name.lower().startswith(RESERVED_PREFIX):
        problem = f"starts with {RESERVED_PREFIX!r}, which prefect-ds reserves for its own tables"
    if problem:
        raise UnsafeLocationError(
            f"the {what} name {name!r} in SQL location {safe_location(location)!r} {problem}. "
            f"Table and schema names must be plain identifiers: an ASCII letter or '_', then "
            f"letters, digits or '_', at most {MAX_IDENTIFIER} characters. Nothing was sent "
            f"to the database; render a plain name into the template (e.g. sales_{{region}})."
        )
    return name


def safe_location(location: str) -> str:
    """``location`` with any password replaced by ``***``, for messages and logs."""
    return redact(location)


@dataclass(frozen=True)
class SqlLocation:
    """A parsed SQL location: database URL, optional schema, table."""

    location: str
    url: URL
    schema: str | None
    table: str

    def __repr__(self) -> str:
        return f"SqlLocation({self.shown!r})"

    @property
    def backend(self) -> str:
        """The dialect family: ``sqlite``, ``postgresql``, ``mysql``…"""
        return str(self.url.get_backend_name())

    @property
    def shown(self) -> str:
        """The location with the password hidden: safe to log or put in an error."""
        return safe_location(self.location)

    @property
    def database_shown(self) -> str:
        """The database URL alone, password hidden: what a connection error is about (a
        pooled connection serves every table of the database)."""
        return safe_location(self.location.rpartition("#")[0] or self.location)

    @property
    def qualified(self) -> str:
        """``schema.table`` or ``table``, unquoted, for messages."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @cached_property
    def dialect(self) -> Dialect:
        """A SQLAlchemy dialect instance (no driver import, no connection) for quoting."""
        dialect_cls: Any = self.url.get_dialect()
        return dialect_cls()  # type: ignore[no-any-return]

    def quote(self, name: str) -> str:
        """``name`` quoted as an identifier by this location's dialect."""
        return str(self.dialect.identifier_preparer.quote_identifier(name))

    def quoted(self, table: str | None = None) -> str:
        """The (schema-qualified) table name, quoted by the dialect."""
        name = self.quote(table or self.table)
        return f"{self.quote(self.schema)}.{name}" if self.schema else name

    def url_key(self) -> str:
        """The URL with its password, to key caches by (never shown)."""
        return str(self.url.render_as_string(hide_password=False))


def parse_location(location: str) -> SqlLocation:
    """Split and check ``location``; raise before any SQL is sent if it is unsafe."""
    if not isinstance(location, str):
        raise TemplateError(f"a SQL location must be a string, got {type(location).__name__}")
    if "\x00" in location:
        raise UnsafeLocationError(
            "the SQL location contains a NUL character; table names must be plain identifiers. "
            "Nothing was sent to the database."
        )
    url_part, sep, fragment = location.rpartition("#")
    if not sep or not url_part:
        raise TemplateError(
            f"SQL location {safe_location(location)!r} has no table: write the database URL, "
            f"'#', then the table, e.g. {_EXAMPLE}"
        )
    try:
        url = sa_engine.make_url(url_part)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise TemplateError(
            f"cannot parse the database URL of {safe_location(location)!r} "
            f"({scrub(str(exc), location)}); "
            f"use a SQLAlchemy URL, e.g. {_EXAMPLE}"
        ) from None
    parts = fragment.split(".")
    if len(parts) > 2:
        raise UnsafeLocationError(
            f"the table {fragment!r} in SQL location {safe_location(location)!r} has "
            f"{len(parts) - 1} dots; write 'table' or 'schema.table' with plain identifiers. "
            f"Nothing was sent to the database."
        )
    schema = check_identifier(parts[0], "schema", location) if len(parts) == 2 else None
    table = check_identifier(parts[-1], "table", location)
    parsed = SqlLocation(location, url, schema, table)
    if parsed.backend not in SUPPORTED:
        raise TemplateError(
            f"{parsed.shown!r} is a {parsed.backend} database; the sql format stores tables "
            f"in SQLite and PostgreSQL only, the databases it is tested against. Use one of "
            f"them (e.g. {_EXAMPLE}), or a file format such as parquet."
        )
    if parsed.backend == "sqlite":
        if schema is not None:
            raise UnsafeLocationError(
                f"SQLite has no schemas, but {parsed.shown!r} names schema {schema!r}; "
                f"put the schema into the table name instead (e.g. {schema}_{table})."
            )
        if url.database in (None, "", ":memory:"):
            raise TemplateError(
                f"{parsed.shown!r} is an in-memory SQLite database, which forgets every "
                f"result when its connection closes; name a file: sqlite:///results.db#{table}"
            )
    return parsed
