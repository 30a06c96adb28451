"""SQL tables: ``sqlite:///results.db#sales_{region}``, ``postgresql://…/lab#features.sales``.

A location is a SQLAlchemy URL, ``#``, then a table, optionally ``schema.table``. Table
and schema names must be plain identifiers (checked before any SQL is sent) and are
always quoted by the dialect. SQLite and PostgreSQL go through ADBC (bulk ingest, Arrow
reads) when its driver is installed; every other dialect through ``DataFrame.to_sql`` and
``read_sql``. Replacing a table is atomic, and the frame's exact pandas dtypes are
recorded in a ``_prefect_ds_tables`` row beside it and restored on read (see
``_sql_schema`` for what the databases change). A table prefect-ds did not write reads
as ``pandas.read_sql`` reads it. Passwords never appear in messages or logs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from prefect_ds._errors import CorruptTargetError, TemplateError
from prefect_ds._format import Format, TargetInfo, safe_asset_key
from prefect_ds.formats.sql import adbc as _sql_adbc
from prefect_ds.formats.sql import alchemy as _sql_alchemy
from prefect_ds.formats.sql.meta import META_TABLE
from prefect_ds.formats.sql.names import RESERVED_PREFIX, SqlLocation, parse_location, safe_location
from prefect_ds.formats.sql.schema import TableMeta, matches, prepare, restore
from prefect_ds.hookspecs import Register, hookimpl

log = logging.getLogger("prefect_ds.sql")

Engine = Literal["auto", "adbc", "sqlalchemy"]
_ENGINES = ("auto", "adbc", "sqlalchemy")
_ADBC_DRIVERS = {
    "sqlite": {"pysqlite", "aiosqlite"},
    "postgresql": {"psycopg", "psycopg2", "psycopg_async", "asyncpg", "pg8000", "psycopg2cffi"},
}


class SQLFormat(Format):
    """A whole DataFrame as one database table, replaced atomically, dtypes exact.

    ``engine`` picks the path: ``"auto"`` (ADBC for SQLite and PostgreSQL when its driver
    is installed, else SQLAlchemy), ``"adbc"`` (fail if it is not available) or
    ``"sqlalchemy"`` (``to_sql``/``read_sql``). It can also be given per call.
    """

    name = "sql"
    schemes = ("sqlite", "postgresql", "mysql", "mssql", "oracle")

    def __init__(self, engine: Engine = "auto") -> None:
        self.engine = _check_engine(engine)

    def _adbc(self, loc: SqlLocation, engine: str | None) -> bool:
        chosen = _check_engine(engine or self.engine)
        if chosen == "sqlalchemy":
            return False
        drivers = _ADBC_DRIVERS.get(loc.backend)
        usable = (
            drivers is not None
            and loc.url.get_driver_name() in drivers
            and not (loc.backend == "sqlite" and loc.url.query)
            and _sql_adbc.available(loc.backend)
        )
        if chosen == "adbc" and not usable:
            extra = "postgres" if loc.backend == "postgresql" else "sql"
            raise ValueError(
                f"engine='adbc' was asked for, but {loc.shown} has no usable ADBC driver "
                f"(ADBC covers sqlite:///file and postgresql:// URLs; install "
                f"'prefect-ds[{extra}]'), or pass engine='sqlalchemy'"
            )
        return usable

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Replace the table at ``location`` with ``df`` in one transaction.

        Options: ``engine`` (see the class), ``chunksize`` (rows per ``to_sql`` batch on the
        SQLAlchemy path). ``metadata`` (``{str: str}``) is recorded in the table's
        ``_prefect_ds_tables`` row in the same transaction; :meth:`read_metadata` returns it.
        """
        engine, chunksize = _options(kwargs, engine=None, chunksize=None)
        loc = parse_location(location)
        if df.shape[1] == 0 and not _has_stored_index(df):
            raise ValueError(
                f"a DataFrame with no columns cannot be stored as table {loc.qualified!r}; "
                f"add a column or store it in a file format"
            )
        _check_storable(df, loc)
        use_adbc = self._adbc(loc, engine)
        prepared = prepare(df, loc.backend)
        if use_adbc:
            _sql_adbc.write(loc, prepared, metadata)
        else:
            _sql_alchemy.write(loc, prepared, chunksize=chunksize, metadata=metadata)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` recorded by :meth:`write`; ``{}`` for a table without any."""
        loc = parse_location(location)
        if self._adbc(loc, None):
            return _sql_adbc.read_metadata(loc)
        return _sql_alchemy.read_metadata(loc)

    def target_info(self, location: str) -> TargetInfo:
        """Rows and write time from ``_prefect_ds_tables`` (tables prefect-ds wrote); no size."""
        loc = parse_location(location)
        if self._adbc(loc, None):
            return TargetInfo(rows=_sql_adbc.stored_rows(loc),
                              modified=_sql_alchemy.written_at(loc))
        return TargetInfo(rows=_sql_alchemy.stored_rows(loc), modified=_sql_alchemy.written_at(loc))

    def list_locations(self, location: str) -> list[str]:
        """The stored tables matching ``location``, whose table part may hold ``*``.

        Tables are listed with SQLAlchemy's inspector; prefect-ds's own bookkeeping
        tables are left out. The database URL itself cannot hold ``*``.
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
        for name in sorted(_sql_alchemy.list_tables(probe)):
            if name.startswith(RESERVED_PREFIX) or name == META_TABLE:
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

        Option: ``engine`` (see the class).
        """
        (engine,) = _options(kwargs, engine=None)
        loc = parse_location(location)
        data: pa.Table | pd.DataFrame
        with _naming(loc):
            if self._adbc(loc, engine):
                data, found = _sql_adbc.read(loc)
                columns, n_rows = list(data.column_names), data.num_rows
            else:
                data, found = _sql_alchemy.read(loc)
                columns, n_rows = [str(c) for c in data.columns], len(data)
        if found is not None and not matches(columns, n_rows, found):
            _warn_changed(loc, "columns or row count differ from what was written")
            found = None
        try:
            return _to_frame(data, found)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            if found is None:
                raise
            _warn_changed(loc, f"a column no longer casts to its recorded dtype: {exc}")
            return _to_frame(data, None)

    def exists(self, location: str) -> bool:
        """The table exists and, if prefect-ds wrote it, the write completed."""
        loc = parse_location(location)
        with _naming(loc):
            if self._adbc(loc, None):
                return _sql_adbc.exists(loc)
            return _sql_alchemy.exists(loc)

    def delete(self, location: str) -> None:
        """Drop the table and forget its metadata; no error if it is absent."""
        loc = parse_location(location)
        backend = _sql_adbc if self._adbc(loc, None) else _sql_alchemy
        backend.delete(loc)


def _check_storable(df: pd.DataFrame, loc: SqlLocation) -> None:
    """Refuse, before any SQL, what a table would silently turn into text.

    Column names must be of one type (``[0, "1"]`` would read back as ``["0", "1"]``),
    and object columns must hold strings (or missing values) only: mixed values would be
    stored as their text and read back as strings, lists not at all.
    """
    kinds = {type(c) for c in df.columns} if not isinstance(df.columns, pd.MultiIndex) else set()
    if len(kinds) > 1:
        raise TypeError(
            f"table {loc.qualified!r}: the sql format cannot keep column names of mixed "
            f"types ({', '.join(sorted(k.__name__ for k in kinds))}); they would read back "
            f"as strings. Make them one type, e.g. df.columns = df.columns.map(str)"
        )
    for i, dtype in enumerate(df.dtypes):
        if dtype.kind != "O" or not isinstance(dtype, np.dtype):
            continue
        name = df.columns[i]
        values = df.iloc[:, i].dropna()
        odd = values[[not isinstance(v, str) for v in values]]
        if len(odd):
            raise TypeError(
                f"table {loc.qualified!r}: column {name!r} is an object column holding "
                f"{type(odd.iloc[0]).__name__} values such as {odd.iloc[0]!r}; the sql format "
                f"stores object columns of strings only. Convert it first, e.g. "
                f"df[{name!r}] = df[{name!r}].astype(str), or use the parquet format"
            )


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


def _options(given: dict[str, Any], **defaults: Any) -> list[Any]:
    """The values of ``defaults``' keys in ``given``; any other key is an error."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(
            f"the sql format takes no option {', '.join(map(repr, unknown))}; its options are "
            f"{', '.join(defaults)}"
        )
    return [given.get(key, default) for key, default in defaults.items()]


def _check_engine(engine: str) -> str:
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {', '.join(_ENGINES)}; got {engine!r}")
    return engine


def _has_stored_index(df: pd.DataFrame) -> bool:
    return not isinstance(df.index, pd.RangeIndex)


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
