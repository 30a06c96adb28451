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

import logging
import warnings
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from .._format import Format
from ..hookspecs import Register, hookimpl
from . import _sql_adbc, _sql_alchemy
from ._sql_names import SqlLocation, parse_location
from ._sql_schema import TableMeta, matches, prepare, restore

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

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        """Replace the table at ``location`` with ``df`` in one transaction.

        Options: ``engine`` (see the class), ``chunksize`` (rows per ``to_sql`` batch on the
        SQLAlchemy path).
        """
        engine, chunksize = _options(kwargs, engine=None, chunksize=None)
        loc = parse_location(location)
        if df.shape[1] == 0 and not _has_stored_index(df):
            raise ValueError(
                f"a DataFrame with no columns cannot be stored as table {loc.qualified!r}; "
                f"add a column or store it in a file format"
            )
        use_adbc = self._adbc(loc, engine)
        prepared = prepare(df, loc.backend)
        if use_adbc:
            _sql_adbc.write(loc, prepared)
        else:
            _sql_alchemy.write(loc, prepared, chunksize=chunksize)

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        """The table at ``location``, with its exact dtypes if prefect-ds wrote it.

        Option: ``engine`` (see the class).
        """
        (engine,) = _options(kwargs, engine=None)
        loc = parse_location(location)
        data: pa.Table | pd.DataFrame
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
        if self._adbc(loc, None):
            return _sql_adbc.exists(loc)
        return _sql_alchemy.exists(loc)

    def delete(self, location: str) -> None:
        """Drop the table and forget its metadata; no error if it is absent."""
        loc = parse_location(location)
        backend = _sql_adbc if self._adbc(loc, None) else _sql_alchemy
        backend.delete(loc)


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
