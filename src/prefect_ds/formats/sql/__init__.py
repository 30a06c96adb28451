"""SQL tables: ``sqlite:///results.db#sales_{region}``, ``postgresql://…/lab#features.sales``.

A location is a SQLAlchemy URL, ``#``, then a table, optionally ``schema.table``. Table
and schema names must be plain identifiers (checked before any SQL is sent) and are
always quoted by the dialect. Two engines implement one interface
(:class:`~prefect_ds.formats.sql.backend.Backend`): ADBC (bulk ingest, Arrow reads) when
its driver serves the URL, SQLAlchemy (``to_sql`` / ``read_sql``) otherwise or when asked;
:func:`get_backend` picks one, once per call. Replacing a table is atomic; the frame's
exact pandas dtypes are recorded in a ``_prefect_ds_tables`` row bound to the table and
restored on read (see ``schema`` for what the databases change). A table prefect-ds did
not write, or one changed since, reads as ``pandas.read_sql`` reads it. Passwords never
appear in messages or logs. SQLite and PostgreSQL are the databases supported (and
tested); other dialects are refused.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from prefect_ds._errors import (
    CorruptTargetError,
    MissingDependencyError,
    TemplateError,
    UnsafeLocationError,
    UnsupportedFrameError,
)
from prefect_ds._format import Format, TargetInfo, safe_asset_key
from prefect_ds._lazy import lazy
from prefect_ds.formats.sql import adbc as _adbc
from prefect_ds.formats.sql import versions as _versions
from prefect_ds.formats.sql.alchemy import AlchemyBackend
from prefect_ds.formats.sql.backend import Backend
from prefect_ds.formats.sql.meta import META_TABLE
from prefect_ds.formats.sql.names import (
    MAX_IDENTIFIER,
    RESERVED_PREFIX,
    SqlLocation,
    parse_location,
    safe_location,
)
from prefect_ds.formats.sql.schema import StaleMetadata, TableMeta, prepare, restore
from prefect_ds.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    pd = lazy("pandas")
    pa = lazy("pyarrow")

SCHEMES = ("sqlite", "postgresql")
# SQLAlchemy is imported on the first read or write; that it is installed is checked
# here, so the install hint travels with this format's registration.
if importlib.util.find_spec("sqlalchemy") is None:
    raise MissingDependencyError("sql", "sqlalchemy", "pip install 'prefect-ds[sql]'",
                                 schemes=SCHEMES)

Engine = Literal["auto", "adbc", "sqlalchemy"]
_ENGINES = ("auto", "adbc", "sqlalchemy")
_ADBC_DRIVERS = {
    "sqlite": {"pysqlite", "aiosqlite"},
    "postgresql": {"psycopg", "psycopg2", "psycopg_async", "asyncpg", "pg8000", "psycopg2cffi"},
}
_BACKENDS: dict[str, Backend] = {"adbc": _adbc.AdbcBackend(), "sqlalchemy": AlchemyBackend()}

# What to do instead of a pandas to_sql / read_sql option the format does not take.
_INSTEAD = {
    "if_exists": "a write always replaces the whole table, atomically; leave it out",
    "dtype": "column types follow the frame's dtypes; cast the frame (df.astype) first",
    "method": "the engine decides how rows are sent; pass engine='sqlalchemy' for to_sql",
    "schema": "put the schema in the location: postgresql://host/db#schema.table",
    "con": "the database is the location's URL",
    "name": "the table is the part of the location after '#'",
    "index_label": "name the index (df.index.name = ...) before writing",
    "index_col": "the index is restored as it was written",
    "parse_dates": "dtypes, time zones included, are restored as they were written",
    "columns": "select columns after reading: df[[...]]",
    "dtype_backend": "dtypes are restored as they were written",
}


def get_backend(loc: SqlLocation, engine: str) -> Backend:
    """The backend serving ``loc`` for ``engine`` (``auto``, ``adbc`` or ``sqlalchemy``).

    ``auto`` is ADBC where its driver serves the URL (a ``sqlite:///file`` without query
    options, or ``postgresql://`` through a libpq-speaking driver), else SQLAlchemy.
    """
    chosen = _check_engine(engine)
    if chosen == "sqlalchemy":
        return _BACKENDS["sqlalchemy"]
    drivers = _ADBC_DRIVERS.get(loc.backend)
    usable = (
        drivers is not None
        and loc.url.get_driver_name() in drivers
        and not (loc.backend == "sqlite" and loc.url.query)
        and _adbc.available(loc.backend)
    )
    if chosen == "adbc" and not usable:
        extra = "postgres" if loc.backend == "postgresql" else "sql"
        raise ValueError(
            f"engine='adbc' was asked for, but {loc.shown} has no usable ADBC driver "
            f"(ADBC covers sqlite:///file and postgresql:// URLs; install "
            f"'prefect-ds[{extra}]'), or pass engine='sqlalchemy'"
        )
    return _BACKENDS["adbc" if usable else "sqlalchemy"]


class SQLFormat(Format):
    """A whole DataFrame as one database table, replaced atomically, dtypes exact.

    ``engine`` picks the path: ``"auto"`` (ADBC for SQLite and PostgreSQL when its driver
    is installed, else SQLAlchemy), ``"adbc"`` (fail if it is not available) or
    ``"sqlalchemy"`` (``to_sql``/``read_sql``). It can also be given per call.
    """

    name = "sql"
    schemes = SCHEMES
    default_read_kwargs: ClassVar[Mapping[str, Any]] = {"engine": None}
    default_write_kwargs: ClassVar[Mapping[str, Any]] = {
        "engine": None, "chunksize": None, "index": None,
    }

    def __init__(self, engine: Engine = "auto") -> None:
        self.engine = _check_engine(engine)

    def _backend(self, loc: SqlLocation, engine: str | None = None) -> Backend:
        return get_backend(loc, engine or self.engine)

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Replace the table at ``location`` with ``df`` in one transaction.

        Options: ``engine`` (see the class); ``chunksize`` (rows per ``to_sql`` batch on
        the SQLAlchemy path); ``index`` (kedro's and ``to_sql``'s: ``False`` stores the
        frame without its index, which then reads back as a RangeIndex; ``True`` or
        unset stores it). ``metadata`` (``{str: str}``) is recorded in the table's
        ``_prefect_ds_tables`` row in the same transaction; :meth:`read_metadata`
        returns it.
        """
        options = _checked(self.write_options(kwargs), self.default_write_kwargs, "write")
        loc = parse_location(location)
        index = options["index"]
        if index not in (None, True, False):
            raise TypeError(f"index must be True or False (as in DataFrame.to_sql); got {index!r}")
        if index is False:
            df = df.reset_index(drop=True)
        if df.shape[1] == 0 and isinstance(df.index, pd.RangeIndex):
            raise UnsupportedFrameError(
                f"a DataFrame with no columns cannot be stored as table {loc.qualified!r}; "
                f"add a column or store it in a file format"
            )
        backend = self._backend(loc, options["engine"])
        backend.write(loc, prepare(df, loc), metadata, chunksize=options["chunksize"])

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` recorded by :meth:`write`; ``{}`` for a table without any."""
        loc = parse_location(location)
        return self._backend(loc).read_metadata(loc)

    def target_info(self, location: str) -> TargetInfo:
        """Rows and write time from ``_prefect_ds_tables`` (tables prefect-ds wrote)."""
        loc = parse_location(location)
        backend = self._backend(loc)
        return TargetInfo(rows=backend.stored_rows(loc), modified=backend.written_at(loc))

    def list_locations(self, location: str) -> list[str]:
        """The stored tables matching ``location``, whose table part may hold ``*``.

        prefect-ds's own bookkeeping tables are left out. The database URL itself cannot
        hold ``*``.
        """
        url_part, sep, pattern = location.rpartition("#")
        if not sep or "*" in url_part:
            raise TemplateError(
                f"cannot list {safe_location(location)!r}: a SQL location is '<database URL>#"
                f"[schema.]table' and only the table part may vary"
            )
        schema, _, table_pattern = pattern.rpartition(".")
        probe = parse_location(f"{url_part}#{schema + '.' if schema else ''}x")
        found = []
        for name in sorted(self._backend(probe).list_tables(probe)):
            if (name.startswith(RESERVED_PREFIX) or name == META_TABLE
                    or _versions.is_version_table(name)):
                continue
            if fnmatch.fnmatchcase(name, table_pattern):
                found.append(f"{url_part}#{schema + '.' if schema else ''}{name}")
        return found

    def asset_key(self, location: str) -> str:
        """``<backend>://<host[:port]>/<database>/<[schema.]table>``, no user or password."""
        loc = parse_location(location)
        url = loc.url
        if loc.backend == "sqlite":
            where = os.path.abspath(str(url.database)).lstrip("/")
            return safe_asset_key(f"sqlite:///{where}/{loc.qualified}")
        host = f"{url.host or 'localhost'}{f':{url.port}' if url.port else ''}"
        return safe_asset_key(f"{loc.backend}://{host}/{url.database or ''}/{loc.qualified}")

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        """The table at ``location``, with its exact dtypes if prefect-ds wrote it.

        Option: ``engine`` (see the class). A table changed since prefect-ds wrote it
        reads as ``pandas.read_sql`` would, with a warning saying why.
        """
        options = _checked(self.read_options(kwargs), self.default_read_kwargs, "read")
        loc = parse_location(location)
        with _naming(loc):
            stored = self._backend(loc, options["engine"]).read(loc)
        if stored.stale is not None:
            _warn_changed(loc, stored.stale)
        try:
            return _to_frame(stored.data, stored.meta)
        except StaleMetadata as exc:
            _warn_changed(loc, str(exc))
            return _to_frame(stored.data, None)

    def exists(self, location: str) -> bool:
        """The table exists and, if prefect-ds wrote it, the write completed."""
        loc = parse_location(location)
        with _naming(loc):
            return self._backend(loc).exists(loc)

    def delete(self, location: str) -> None:
        """Drop the table and forget its metadata; no error if it is absent."""
        loc = parse_location(location)
        self._backend(loc).delete(loc)

    # -- versions (prefect_ds.SupportsVersions; formats/sql/versions.py) -------------------

    def version_location(self, location: str, version: str) -> str:
        """The same database, table ``<table>__v<version>``."""
        loc = parse_location(location)
        longest = MAX_IDENTIFIER - len(_versions.table_for("", version))
        if len(loc.table) > longest:
            raise UnsafeLocationError(
                f"table {loc.qualified!r} at {loc.shown} is too long to keep versions: a "
                f"version's table is the name plus {MAX_IDENTIFIER - longest} characters, and "
                f"names may have at most {MAX_IDENTIFIER}. Use a table name of at most "
                f"{longest} characters. Nothing was sent to the database."
            )
        url_part = location.rpartition("#")[0]
        schema = f"{loc.schema}." if loc.schema else ""
        return f"{url_part}#{schema}{_versions.table_for(loc.table, version)}"

    def commit_version(self, location: str, version: str, record: Mapping[str, Any]) -> None:
        """Insert the version's row into ``_prefect_ds_versions``: it is committed."""
        loc = parse_location(location)
        _versions.commit(self._backend(loc), loc, version, record)

    def committed_versions(self, location: str) -> list[str]:
        """The committed versions of the table, oldest first."""
        loc = parse_location(location)
        if loc.backend == "sqlite" and not os.path.exists(str(loc.url.database)):
            return []
        return _versions.committed(self._backend(loc), loc)

    def version_record(self, location: str, version: str) -> dict[str, Any]:
        """The run record committed with a version."""
        loc = parse_location(location)
        return _versions.read_record(self._backend(loc), loc, version)

    def remove_version(self, location: str, version: str) -> None:
        """Uncommit a version (its row goes first), then drop its table."""
        loc = parse_location(location)
        _versions.uncommit(self._backend(loc), loc, version)
        self.delete(self.version_location(location, version))

    def versioned_locations(self, pattern: str) -> list[str]:
        """The tables matching ``pattern`` (``*`` in the table part) that have versions."""
        url_part, _, table_pattern = pattern.rpartition("#")
        schema, _, name_pattern = table_pattern.rpartition(".")
        probe = parse_location(f"{url_part}#{schema + '.' if schema else ''}x")
        if probe.backend == "sqlite" and not os.path.exists(str(probe.url.database)):
            return []
        names = _versions.targets(self._backend(probe), probe)
        return [f"{url_part}#{schema + '.' if schema else ''}{name}" for name in sorted(names)
                if fnmatch.fnmatchcase(name, name_pattern)]


@contextlib.contextmanager
def _naming(loc: SqlLocation) -> Iterator[None]:
    """Put the table and database into a CorruptTargetError raised without them."""
    try:
        yield
    except CorruptTargetError as exc:
        if loc.table in str(exc):
            raise
        raise CorruptTargetError(f"table {loc.qualified!r} at {loc.shown}: {exc}") from None


def _warn_changed(loc: SqlLocation, why: str) -> None:
    warnings.warn(
        f"table {loc.qualified!r} at {loc.shown} was changed outside prefect-ds ({why}); "
        f"reading it as pandas.read_sql would, without restoring dtypes. Write it again to "
        f"restore them.",
        stacklevel=3,
    )


def _checked(options: dict[str, Any], known: Mapping[str, Any], op: str) -> dict[str, Any]:
    """``options`` if every key is one of ``known``'s, else a TypeError saying what to do."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        hints = "".join(f"; {key}: {_INSTEAD[key]}" for key in unknown if key in _INSTEAD)
        raise TypeError(
            f"the sql format takes no {op} option {', '.join(map(repr, unknown))}; its "
            f"{op} options are {', '.join(known)}{hints}"
        )
    return options


def _check_engine(engine: str) -> str:
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {', '.join(_ENGINES)}; got {engine!r}")
    return engine


def _to_frame(data: pa.Table | pd.DataFrame, found: TableMeta | None) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        if found is None:
            return data
        data = pa.Table.from_pandas(data, preserve_index=False)
    if found is None:
        frame: pd.DataFrame = data.to_pandas()
        return frame
    return restore(data, found)


@hookimpl
def register_formats(register: Register) -> None:
    register(SQLFormat())
