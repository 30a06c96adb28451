"""The ``sql`` format against SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from sqlalchemy import create_engine

from prefect_ds import (
    PandasResultHandler,
    TemplateError,
    UnknownFormatError,
    UnsafeLocationError,
    UnsupportedFrameError,
    get_format,
    resolve_format,
)
from prefect_ds.formats.sql import SQLFormat, get_backend
from prefect_ds.formats.sql.backend import Backend
from prefect_ds.formats.sql.names import parse_location

pytest_plugins = ["sql_fixtures"]
ENGINES = ["adbc", "sqlalchemy"]


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def dtype_matrix(n: int = 6) -> pd.DataFrame:
    """One column per dtype of the fidelity matrix, with missing values where they exist."""
    base = pd.Timestamp("2024-03-30 23:59:59.123456789")
    naive = pd.Series([base + pd.Timedelta(hours=7 * i) for i in range(n)])
    naive[1] = pd.NaT
    return pd.DataFrame(
        {
            "flag": [i % 2 == 0 for i in range(n)],
            "count": np.arange(n, dtype="int64") * 10**12,
            "nullable_int": pd.array([1, None, 3, -(2**62), 5, None], dtype="Int64")[:n],
            "nullable_bool": pd.array([True, None, False, True, None, False], "boolean")[:n],
            "value": [0.5, np.nan, -1.25, 1e300, np.inf, 3.0][:n],
            "name": pd.Series(["a", None, "ünï", "x'y", 'q"r', ""][:n], dtype="str"),
            "when": naive,
            "when_tz": naive.dt.tz_localize("Europe/Paris", nonexistent="shift_forward"),
            "when_utc": naive.dt.tz_localize("UTC"),
            "grade": pd.Categorical(["b", "a", None, "c", "a", "b"][:n], categories=["c", "b", "a"],
                                    ordered=True),
            "label": pd.Categorical(["x", "y", "x", None, "y", "x"][:n]),
        },
        index=pd.Index([f"r{i}" for i in range(n)], name="row_id", dtype="str"),
    )


def expected_for(url: str, df: pd.DataFrame) -> pd.DataFrame:
    """What a read returns: exact, except PostgreSQL floors timestamps to microseconds."""
    if not url.startswith("postgresql"):
        return df
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype) or out[col].dtype.kind == "M":
            out[col] = out[col].dt.floor("us")
    return out


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_dtype_matrix_round_trips(db_url: str, table: str, engine: str) -> None:
    fmt = SQLFormat()
    location = f"{db_url}#{table}"
    df = dtype_matrix()
    fmt.write(df, location, engine=engine)
    assert fmt.exists(location)
    out = fmt.read(location, engine=engine)
    assert_frame_equal(out, expected_for(db_url, df), check_exact=True)
    assert list(out.dtypes.astype(str)) == list(df.dtypes.astype(str))


def test_postgresql_keeps_microseconds_and_floors_nanoseconds(pg_url: str, table: str) -> None:
    stamps = pd.Series(pd.to_datetime([
        "2020-01-01 00:00:00.123456789", "1969-12-31 23:59:59.999999999",
        "2000-02-29 12:00:00.000000001", "2021-06-01 00:00:00.000001",
    ]))
    df = pd.DataFrame({"naive": stamps, "aware": stamps.dt.tz_localize("America/New_York")})
    location = f"{pg_url}#{table}"
    SQLFormat().write(df, location)
    out = SQLFormat().read(location)
    assert out["naive"].dtype == "datetime64[ns]"
    assert str(out["aware"].dtype) == "datetime64[ns, America/New_York]"
    assert list(out["naive"]) == [
        pd.Timestamp("2020-01-01 00:00:00.123456"), pd.Timestamp("1969-12-31 23:59:59.999999"),
        pd.Timestamp("2000-02-29 12:00:00"), pd.Timestamp("2021-06-01 00:00:00.000001"),
    ]
    assert_frame_equal(out, df.apply(lambda s: s.dt.floor("us")))
    with psycopg.connect(libpq(pg_url)) as conn:
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (table,),
        ).fetchall())
    assert types == {"naive": "timestamp without time zone", "aware": "timestamp with time zone"}


def test_sqlite_keeps_nanoseconds_as_iso_text(sqlite_url: str, table: str) -> None:
    df = pd.DataFrame({"t": pd.to_datetime(["2020-01-01 00:00:00.123456789"]).tz_localize("UTC")})
    SQLFormat().write(df, f"{sqlite_url}#{table}")
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute(f"SELECT t FROM {table}").fetchone() == (
            "2020-01-01 00:00:00.123456789Z",
        )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "df",
    [
        pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(5, 11, 2, name="r")),
        pd.DataFrame({"a": [1.0, 2.0]},
                     index=pd.MultiIndex.from_tuples([(1, "x"), (2, "y")], names=[None, "k"])),
        pd.DataFrame({"a": [1, 2]},
                     index=pd.DatetimeIndex(["2020-01-01", "2020-01-02"], tz="UTC").as_unit("s")),
        pd.DataFrame({"a": pd.Series([], dtype="Int64"), "b": pd.Series([], dtype="str")}),
        pd.DataFrame({0: [1, 2], 1: ["x", "y"]}),
        pd.DataFrame({"gap": pd.Series([None] * 2500 + ["late"], dtype="str"),
                      "empty": pd.Series([None] * 2501, dtype="Int64"),
                      "delta": pd.to_timedelta(np.arange(2501), unit="ms")}),
        pd.DataFrame({"a": [1, 2, 3]},
                     index=pd.date_range("2021-03-28", periods=3, freq="h", tz="Europe/Paris")),
        pd.DataFrame({"a": [1, 2]}, index=pd.timedelta_range("1s", periods=2, freq="15s")),
    ],
    ids=["range-index", "multiindex", "datetime-index", "empty", "int-labels", "late-values",
         "datetime-index-freq", "timedelta-index-freq"],
)
def test_index_kinds_and_edge_frames(db_url: str, table: str, engine: str,
                                     df: pd.DataFrame) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(df, location, engine=engine)
    assert_frame_equal(SQLFormat().read(location, engine=engine), df)


def test_row_order_is_kept_for_a_large_frame(db_url: str, table: str) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"k": rng.permutation(300_000), "v": rng.random(300_000)})
    location = f"{db_url}#{table}"
    SQLFormat().write(df, location)
    assert_frame_equal(SQLFormat().read(location), df)


def test_replacing_changes_the_schema(db_url: str, table: str) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(pd.DataFrame({"a": [1, 2]}), location)
    new = pd.DataFrame({"b": pd.Categorical(["u"]), "c": [True]})
    SQLFormat().write(new, location)
    assert_frame_equal(SQLFormat().read(location), new)


# -- foreign tables ---------------------------------------------------------------------


def test_foreign_sqlite_table_reads_as_read_sql(sqlite_url: str, table: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {table} (id INTEGER, score REAL, name TEXT, n INTEGER)")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                         [(1, 0.5, "a", None), (2, None, None, 7), (3, 2.0, "c", 8)])
    location = f"{sqlite_url}#{table}"
    fmt = SQLFormat()
    assert fmt.exists(location)
    expected = pd.read_sql(f"SELECT * FROM {table}", create_engine(sqlite_url))
    for engine in ENGINES:
        assert_frame_equal(fmt.read(location, engine=engine), expected)
    fmt.delete(location)
    assert not fmt.exists(location)


def test_foreign_postgresql_table_reads_as_read_sql(pg_url: str, table: str) -> None:
    with psycopg.connect(libpq(pg_url)) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, score double precision, name text, "
                     f"at timestamp, at_tz timestamptz, ok boolean)")
        conn.execute(f"INSERT INTO {table} VALUES (1, 0.5, 'a', '2020-01-01 10:00', "
                     f"'2020-01-01 10:00+02', true), (2, NULL, NULL, NULL, NULL, false)")
    location = f"{pg_url}#{table}"
    fmt = SQLFormat()
    assert fmt.exists(location)
    import adbc_driver_postgresql.dbapi as pg_dbapi

    with pg_dbapi.connect(libpq(pg_url)) as conn:
        expected_adbc = pd.read_sql(f"SELECT * FROM {table}", conn)
    assert_frame_equal(fmt.read(location), expected_adbc)
    expected_sa = pd.read_sql(f"SELECT * FROM {table}", create_engine(pg_url))
    assert_frame_equal(fmt.read(location, engine="sqlalchemy"), expected_sa)
    assert expected_adbc["id"].dtype == "int64" and expected_adbc["name"].dtype == "str"


def test_table_changed_outside_is_read_as_foreign(db_url: str, table: str) -> None:
    location = f"{db_url}#{table}"
    df = pd.DataFrame({"flag": [True, False]})
    SQLFormat().write(df, location)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {table} (flag) VALUES (true)")
    with pytest.warns(UserWarning, match="changed outside prefect-ds"):
        out = SQLFormat().read(location)
    assert len(out) == 3
    SQLFormat().write(df, location)
    assert_frame_equal(SQLFormat().read(location), df)


def test_column_retyped_outside_is_read_as_foreign(pg_url: str, table: str) -> None:
    location = f"{pg_url}#{table}"
    SQLFormat().write(pd.DataFrame({"when": pd.to_datetime(["2020-01-01"])}), location)
    with psycopg.connect(libpq(pg_url)) as conn:
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN \"when\" TYPE text USING 'soon'")
    with pytest.warns(UserWarning, match="changed outside prefect-ds.*column types"):
        out = SQLFormat().read(location)
    assert out["when"].tolist() == ["soon"]


@pytest.mark.parametrize("engine", ENGINES)
def test_table_names_differing_only_by_case_are_refused(db_url: str, table: str,
                                                        engine: str) -> None:
    upper, lower = f"{db_url}#Sales_{table}", f"{db_url}#sales_{table}"
    fmt = SQLFormat(engine)  # type: ignore[arg-type]
    df = pd.DataFrame({"a": [True, False]})
    fmt.write(df, upper)
    for op in ("write", "read", "exists", "delete", "read_metadata"):
        with pytest.raises(UnsafeLocationError, match=f"'sales_{table}' and the stored table "
                           f"'Sales_{table}' .*differ only by case"):
            if op == "write":
                fmt.write(pd.DataFrame({"b": [1]}), lower)
            else:
                getattr(fmt, op)(lower)
    assert_frame_equal(fmt.read(upper), df)  # the table the refusals named is untouched
    if db_url.startswith("postgresql"):  # a twin made by hand (quoted) is refused as well
        with psycopg.connect(libpq(db_url), autocommit=True) as conn:
            conn.execute(f"CREATE TABLE sales_{table} (b int)")
        with pytest.raises(UnsafeLocationError, match="folds unquoted names"):
            fmt.write(pd.DataFrame({"a": [False]}), upper)
        stored = pd.read_sql(f'SELECT * FROM "Sales_{table}"', create_engine(db_url))
        assert stored["a"].tolist() == [True, False]


def test_incomplete_metadata_row_means_not_exists(db_url: str, table: str) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(pd.DataFrame({"a": [1]}), location)
    with create_engine(db_url).begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE _prefect_ds_tables SET state = 'writing' WHERE table_name = '{table}'"
        )
    assert not SQLFormat().exists(location)
    assert not SQLFormat().exists(location.replace("#", "#x"))


# -- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_schema_qualified_tables_on_postgresql(pg_url: str, table: str, engine: str) -> None:
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "Features"')
    qualified = f"{pg_url}#Features.{table}"
    plain = f"{pg_url}#{table}"
    fmt = SQLFormat()
    df = dtype_matrix()
    fmt.write(df, qualified, engine=engine)
    assert fmt.exists(qualified) and not fmt.exists(plain)
    fmt.write(pd.DataFrame({"other": [1]}), plain, engine=engine)
    assert_frame_equal(fmt.read(qualified, engine=engine), expected_for(pg_url, df))
    with psycopg.connect(libpq(pg_url)) as conn:
        rows = conn.execute(
            'SELECT table_name FROM "Features"._prefect_ds_tables WHERE table_name = %s', (table,)
        ).fetchall()
    assert rows == [(table,)]
    fmt.delete(qualified)
    assert not fmt.exists(qualified) and fmt.exists(plain)


def test_missing_schema_is_a_clear_error(pg_url: str, table: str) -> None:
    with pytest.raises(LookupError, match=r"schema 'nowhere' does not exist.*CREATE SCHEMA"):
        SQLFormat().write(pd.DataFrame({"a": [1]}), f"{pg_url}#nowhere.{table}")


# -- hostile names ----------------------------------------------------------------------

HOSTILE = {
    "double-quote": 'sales"; DROP TABLE users; --',
    "single-quote": "sales'x",
    "semicolon": "sales;drop",
    "space": "sales eu",
    "extra-dots": "a.b.c",
    "empty-part": "lab..sales",
    "comment-dashes": "sales--x",
    "comment-block": "sales/*x*/",
    "nul": "sales\x00x",
    "newline": "sales\nx",
    "cyrillic-look-alike": "s\u0430les",
    "fullwidth": "\uff53ales",
    "empty": "",
    "leading-digit": "1sales",
    "too-long": "t" * 64,
    "backtick": "sales`x",
    "brackets": "[sales]",
    "dollar": "sales$x",
    "reserved-prefix": "_prefect_ds_tables",
    "hostile-schema": 'pub"lic.sales',
}


@pytest.mark.parametrize("name", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("op", ["write", "read", "exists", "delete"])
def test_hostile_table_names_are_rejected_before_any_sql(tmp_path: Path, name: str,
                                                         op: str) -> None:
    fmt = SQLFormat()
    never = tmp_path / "never.db"
    # Port 1 on localhost has no server: any attempt to run SQL would fail differently.
    for location in (f"sqlite:///{never}#{name}", f"postgresql://u:pw@127.0.0.1:1/db#{name}"):
        with pytest.raises(UnsafeLocationError, match="Nothing was sent to the database"):
            if op == "write":
                fmt.write(pd.DataFrame({"a": [1]}), location)
            else:
                getattr(fmt, op)(location)
    assert not never.exists()


def test_hostile_template_value_is_rejected_by_the_handler(sqlite_url: str) -> None:
    handler = PandasResultHandler(f"{sqlite_url}#sales_{{region}}")
    assert handler.format.name == "sql"
    for region in ["eu.x.y", "eu-west", "eu;drop", "eu'"]:
        with pytest.raises(UnsafeLocationError):
            handler.write(pd.DataFrame({"a": [1]}), region=region)
    df = pd.DataFrame({"a": [1, 2]})
    handler.write(df, region="eu")
    assert handler.exists(region="eu") and not handler.exists(region="us")
    assert_frame_equal(handler.read(region="eu"), df)


def test_unstorable_frames_are_clear_errors(sqlite_url: str, table: str) -> None:
    location = f"{sqlite_url}#{table}"
    fmt = SQLFormat()
    with pytest.raises(ValueError, match="collide"):
        fmt.write(pd.DataFrame({"A": [1], "a": [2]}), location)
    with pytest.raises(ValueError, match="MultiIndex columns"):
        fmt.write(pd.DataFrame([[1]], columns=pd.MultiIndex.from_tuples([("a", "b")])), location)
    with pytest.raises(ValueError, match="no columns"):
        fmt.write(pd.DataFrame(), location)
    with pytest.raises(ValueError, match="engine must be one of"):
        fmt.write(pd.DataFrame({"a": [1]}), location, engine="odbc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no write option 'if_exists'; its write options are "
                       "engine, chunksize, index; if_exists: a write always replaces"):
        fmt.write(pd.DataFrame({"a": [1]}), location, if_exists="append")
    with pytest.raises(TypeError, match=r"no read option 'columns'.*df"):
        fmt.read(location, columns=["a"])
    with pytest.raises(ValueError, match="no usable ADBC driver"):
        SQLFormat("adbc").exists(f"{sqlite_url}?timeout=5#{table}")
    with pytest.raises(FileNotFoundError, match=f"no table '{table}'"):
        fmt.read(location)
    assert not fmt.exists(location)
    fmt.delete(location)  # absent: no error


def test_in_memory_sqlite_and_missing_table_are_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        SQLFormat().exists("sqlite://#t")
    with pytest.raises(ValueError, match="has no table"):
        SQLFormat().exists("sqlite:///x.db")
    with pytest.raises(UnsafeLocationError, match="SQLite has no schemas"):
        SQLFormat().exists("sqlite:///x.db#s.t")


# -- registry and secrets ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///r.db#t", "postgresql+psycopg://u@h/db#s.t",
                                 "postgresql://h/db#t"])
def test_scheme_resolves_to_sql(url: str) -> None:
    assert resolve_format(url).name == "sql"
    assert get_format("sql") is resolve_format(url)


@pytest.mark.parametrize("url", ["mysql+pymysql://u@h/db#t", "mariadb://u@h/db#t",
                                 "mssql+pyodbc://u@h/db#t", "oracle://u@h/db#t"])
def test_untested_databases_are_not_claimed(url: str) -> None:
    with pytest.raises(UnknownFormatError):
        resolve_format(url)
    with pytest.raises(TemplateError, match="SQLite and PostgreSQL only"):
        SQLFormat().write(pd.DataFrame({"a": [1]}), url)


def test_password_never_appears_in_logs_or_errors(
    pg_url: str, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-Pa55"
    with_password = pg_url.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    caplog.set_level(logging.DEBUG, logger="prefect_ds")
    fmt = SQLFormat()
    fmt.write(pd.DataFrame({"a": [1]}), f"{with_password}#{table}")
    assert "wrote 1 rows" in caplog.text and secret not in caplog.text
    with pytest.raises(ConnectionError) as err:
        fmt.exists(f"postgresql://u:{secret}@127.0.0.1:1/db#{table}")
    assert secret not in str(err.value) and "***" in str(err.value)
    with pytest.raises(UnsafeLocationError) as bad:
        fmt.exists(f"postgresql://u:{secret}@127.0.0.1:1/db#bad;name")
    assert secret not in str(bad.value)


# -- atomicity --------------------------------------------------------------------------


def temp_tables(url: str) -> list[str]:
    with create_engine(url).connect() as conn:
        if url.startswith("sqlite"):
            query = "SELECT name FROM sqlite_master WHERE name LIKE '%\\_tmp\\_%' ESCAPE '\\'"
        else:
            query = "SELECT relname FROM pg_class WHERE strpos(relname, '_tmp_') > 0"
        return [r[0] for r in conn.exec_driver_sql(query)]


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_write_leaves_old_table_intact(db_url: str, table: str, engine: str) -> None:
    location = f"{db_url}#{table}"
    old = dtype_matrix()
    SQLFormat().write(old, location, engine=engine)
    if db_url.startswith("postgresql"):  # refused before writing (mid-write: see below)
        bads = [pd.DataFrame({"name": pd.Series(["fine"] * 5000 + ["nul\x00byte"], dtype="str")})]
    else:  # the last step (recording the metadata) fails, after the table was replaced
        bads = [pd.DataFrame({"a": range(5000)}), dtype_matrix(3)]  # replace, refill
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON _prefect_ds_tables "
                         "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END")
    for bad in bads:
        with pytest.raises(Exception) as failure:
            SQLFormat().write(bad, location, engine=engine)
        assert not isinstance(failure.value, UnsafeLocationError)
        assert SQLFormat().exists(location)
        assert_frame_equal(SQLFormat().read(location), expected_for(db_url, old))
    assert temp_tables(db_url) == []


CRASH_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from prefect_ds.formats.sql import SQLFormat
    n = int(sys.argv[2])
    rng = np.random.default_rng(1)
    df = pd.DataFrame({
        "id": np.arange(n), "x": rng.random(n),
        "s": pd.Series(rng.integers(0, 10**9, n)).astype(str),
        "t": pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(n), unit="s"),
    })
    print("writing", flush=True)
    SQLFormat().write(df, sys.argv[1], engine=sys.argv[3])
    print("done", flush=True)
    """
)


def _ingest_started(url: str, table: str) -> bool:
    if url.startswith("sqlite"):
        return Path(url.removeprefix("sqlite:///") + "-journal").exists()
    with psycopg.connect(libpq(url)) as conn:  # a COPY (ADBC) or INSERT (to_sql) under way
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' "
            "AND pid <> pg_backend_pid() AND (strpos(query, '_prefect_ds_tables_tmp_') > 0 "
            "OR strpos(query, %s) > 0) AND (query ILIKE 'COPY%%' OR query ILIKE 'INSERT%%')",
            (table,),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize(
    ("previous", "engine"),
    [("other-schema", "adbc"), (None, "adbc"), ("other-schema", "sqlalchemy"),
     ("same-schema", "adbc")],
    ids=["replace", "first-write", "replace-sqlalchemy", "refill-in-place"],
)
def test_writer_killed_mid_ingest_leaves_previous_table(db_url: str, table: str,
                                                        previous: str | None,
                                                        engine: str) -> None:
    location = f"{db_url}#{table}"
    old = dtype_matrix()
    if previous == "other-schema":
        SQLFormat().write(old, location)
    elif previous == "same-schema":  # the writer's own columns: it refills the table
        subprocess.run([sys.executable, "-c", CRASH_WRITER, location, "10", "adbc"],
                       check=True, capture_output=True)
        old = SQLFormat().read(location)
    writer = subprocess.Popen(
        # to_sql converts every row to Python before its first INSERT: fewer rows there
        [sys.executable, "-c", CRASH_WRITER, location,
         "3000000" if engine == "adbc" else "300000", engine],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 60
        while not _ingest_started(db_url, table):
            assert writer.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline, "the ingest never started"
            time.sleep(0.01)
        time.sleep(0.2)  # well into the ingest
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
    if db_url.startswith("postgresql"):  # the server ends the dead client's transaction
        for _ in range(500):
            if not _ingest_started(db_url, table):
                break
            time.sleep(0.02)
    fmt = SQLFormat()
    assert fmt.exists(location) is (previous is not None)
    if previous:
        assert_frame_equal(fmt.read(location), expected_for(db_url, old))
    else:
        with pytest.raises(FileNotFoundError):
            fmt.read(location)
    assert temp_tables(db_url) == []
    fmt.write(old, location)  # the database is usable again
    assert_frame_equal(fmt.read(location), expected_for(db_url, old))


def test_readers_see_whole_frames_while_writers_swap(db_url: str, table: str) -> None:
    location = f"{db_url}#{table}"
    frames = [pd.DataFrame({"v": np.full(n, n), "s": pd.Series([str(n)] * n, dtype="str")})
              for n in (1000, 7000)]
    fmt = SQLFormat()
    fmt.write(frames[0], location)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(frame: pd.DataFrame) -> None:
        try:
            for _ in range(8):
                fmt.write(frame, location)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                out = fmt.read(location)
                assert any(out.equals(f) for f in frames), f"torn read of {len(out)} rows"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f,)) for f in frames]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    for t in readers:
        t.join(120)
    assert errors == []
    assert any(fmt.read(location).equals(f) for f in frames)


def _child_roundtrip(location: str, report: str) -> None:
    # Leave with os._exit: the forked child inherits the whole test session (Prefect,
    # Dask clusters), whose exit handlers are not this test's business.
    try:
        df = pd.DataFrame({"child": [os.getpid()]})
        SQLFormat().write(df, location)
        assert SQLFormat().read(location).equals(df)
    except BaseException:
        with open(report, "w") as handle:
            handle.write(traceback.format_exc())
        os._exit(1)
    os._exit(0)


def test_forked_child_does_not_break_the_parents_connections(
    pg_url: str, table: str, tmp_path: Path
) -> None:
    location = f"{pg_url}#{table}"
    df = pd.DataFrame({"a": [1, 2]})
    fmt = SQLFormat()
    fmt.write(df, location)  # the parent now holds pooled connections
    ctx = multiprocessing.get_context("fork")
    report = tmp_path / "child-error.txt"
    child = ctx.Process(target=_child_roundtrip, args=(f"{location}_child", str(report)))
    child.start()
    child.join(60)
    assert child.exitcode == 0, report.read_text() if report.exists() else "no report"
    assert_frame_equal(fmt.read(location), df)  # the parent's pooled connection still works
    assert fmt.read(f"{location}_child")["child"].iloc[0] == child.pid


@pytest.mark.parametrize("engine", ENGINES)
def test_reading_a_missing_table_is_file_not_found(db_url: str, table: str, engine: str) -> None:
    SQLFormat().write(pd.DataFrame({"a": [1]}), f"{db_url}#other_{table}")
    with pytest.raises(FileNotFoundError, match=f"no table '{table}'.*write it first"):
        SQLFormat().read(f"{db_url}#{table}", engine=engine)
    if db_url.startswith("postgresql"):
        with pytest.raises(FileNotFoundError, match="no table 'nowhere"):
            SQLFormat().read(f"{db_url}#nowhere.{table}", engine=engine)


# -- a table that behaves like a database's ------------------------------------------------


def raw_rows(url: str, table: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The table's rows and its metadata row, read with the plain driver (no prefect-ds)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            meta = conn.execute("SELECT * FROM _prefect_ds_tables WHERE table_name = ?",
                                (table.lower(),)).fetchall()
        return rows, meta
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
        meta = conn.execute("SELECT * FROM _prefect_ds_tables WHERE table_name = %s",
                            (table,)).fetchall()
    return rows, meta


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("how", "values"), [
    ("pandas-to-sql", [2, 0, 7]), ("pandas-to-sql", [1, 0, 1]),
    ("adbc-ingest", [2, 0, 7]), ("adbc-ingest", [1, 0, 1]),
    # In place, one value becomes 2 (an in-place 0/1 edit looks like the original).
    ("update-in-place", [2, 0, 7]),
], ids=["pandas-out-of-range", "pandas-zero-one", "adbc-out-of-range", "adbc-zero-one",
        "update-in-place"])
def test_table_replaced_by_another_tool_reads_as_a_plain_table(
    db_url: str, table: str, engine: str, how: str, values: list[int]
) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(pd.DataFrame({"flag": [True, False, True]}), location, engine=engine)
    other = pd.DataFrame({"flag": values})
    if how == "pandas-to-sql":
        other.to_sql(table, create_engine(db_url), index=False, if_exists="replace")
    elif how == "adbc-ingest":  # the very statements prefect-ds's own engine would send
        if db_url.startswith("sqlite"):
            import adbc_driver_sqlite.dbapi as dbapi

            conn = dbapi.connect(db_url.removeprefix("sqlite:///"))
        else:
            import adbc_driver_postgresql.dbapi as dbapi  # type: ignore[no-redef]

            conn = dbapi.connect(libpq(db_url))
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP TABLE "{table}"')
            cur.adbc_ingest(table, pa.table(other), mode="create")
            conn.commit()
    else:
        with create_engine(db_url).begin() as conn:
            column = "flag" if db_url.startswith("sqlite") else "flag::int"
            conn.exec_driver_sql(f'ALTER TABLE "{table}" ALTER COLUMN flag TYPE bigint '
                                 f"USING {column}" if db_url.startswith("postgresql") else
                                 f"UPDATE \"{table}\" SET flag = 2 WHERE rowid = 1")
    expected = pd.read_sql(f'SELECT * FROM "{table}"', create_engine(db_url))
    with pytest.warns(UserWarning, match="changed outside prefect-ds"):
        out = SQLFormat().read(location, engine=engine)
    assert out["flag"].dtype != bool
    assert out["flag"].tolist() == expected["flag"].tolist()
    SQLFormat().write(pd.DataFrame({"flag": [True]}), location, engine=engine)
    assert_frame_equal(SQLFormat().read(location), pd.DataFrame({"flag": [True]}))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_metadata_row_from_before_bindings_still_restores_dtypes(db_url: str, table: str,
                                                                   engine: str) -> None:
    location = f"{db_url}#{table}"
    df = dtype_matrix()
    SQLFormat().write(df, location, engine=engine)
    with create_engine(db_url).begin() as conn:
        conn.exec_driver_sql(f"UPDATE _prefect_ds_tables SET binding = NULL "
                             f"WHERE table_name = '{table.lower()}'")
    assert_frame_equal(SQLFormat().read(location, engine=engine), expected_for(db_url, df))
    with create_engine(db_url).begin() as conn:  # and is still checked by rows and columns
        conn.exec_driver_sql(f'DELETE FROM "{table}" WHERE "count" = 0')
    with pytest.warns(UserWarning, match="columns or row count differ"):
        assert len(SQLFormat().read(location, engine=engine)) == len(df) - 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "df",
    [
        pd.DataFrame({"c": pd.Categorical([], categories=["x", "y"], ordered=True)}),
        pd.DataFrame({"c": pd.Categorical([], categories=[3, 1, 2]),
                      "n": pd.Series([], dtype="Int64")}),
        pd.DataFrame({"c": pd.Categorical(["x"], categories=["x", "y", "z"])}).iloc[:0],
        pd.DataFrame(index=pd.Index([1, None, 3], dtype="Int64", name="k")),
        pd.DataFrame(index=pd.Index([7, 8], dtype="uint8")),
        pd.DataFrame(index=pd.DatetimeIndex(["2021-01-01"], tz="Asia/Tokyo", name="at")),
        pd.DataFrame(index=pd.Index(["a", "b"], dtype="str", name="s")),
        pd.DataFrame(index=pd.CategoricalIndex(["a", "b"], categories=["b", "a", "c"])),
        pd.DataFrame(index=pd.Index([], dtype="float32")),
        pd.DataFrame(index=pd.MultiIndex.from_arrays([pd.array([1, 2], dtype="Int8"),
                                                      ["x", "y"]], names=["i", "j"])),
    ],
    ids=["empty-ordered", "empty-int-categories", "empty-slice", "no-columns-Int64",
         "no-columns-uint8", "no-columns-tz", "no-columns-str", "no-columns-categorical",
         "no-columns-empty-float32", "no-columns-multiindex"],
)
def test_empty_tables_and_column_less_frames_keep_their_dtypes(
    db_url: str, table: str, engine: str, df: pd.DataFrame
) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(df, location, engine=engine)
    out = SQLFormat().read(location, engine=engine)
    assert_frame_equal(out, df, check_exact=True)
    assert_frame_equal(out.dtypes.to_frame(), df.dtypes.to_frame())
    if isinstance(df.index, pd.CategoricalIndex) or "c" in df:
        got, want = (out["c"], df["c"]) if "c" in df else (out.index, df.index)
        assert list(got.dtype.categories) == list(want.dtype.categories)


def pg_catalog_state(url: str, table: str) -> dict[str, object]:
    with psycopg.connect(libpq(url)) as conn:
        return {
            "indexes": sorted(r[0] for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))),
            "grants": sorted(conn.execute(
                "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
                "WHERE table_name = %s AND grantee <> 'postgres'", (table,)).fetchall()),
            "comment": conn.execute(f"SELECT obj_description('\"{table}\"'::regclass)"
                                    ).fetchone(),
            "view": conn.execute(f'SELECT count(*) FROM "{table}_v"').fetchone(),
        }


@pytest.mark.parametrize("engine", ENGINES)
def test_same_schema_write_keeps_indexes_grants_and_views_on_postgresql(
    pg_url: str, table: str, engine: str
) -> None:
    location = f"{pg_url}#{table}"
    fmt = SQLFormat(engine)  # type: ignore[arg-type]
    fmt.write(dtype_matrix(), location)
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE INDEX "{table}_ix" ON "{table}" (count)')
        conn.execute(f"DO $$ BEGIN CREATE ROLE reader_{table}; END $$")
        conn.execute(f'GRANT SELECT ON "{table}" TO reader_{table}')
        conn.execute(f'COMMENT ON TABLE "{table}" IS \'kept\'')
        conn.execute(f'CREATE VIEW "{table}_v" AS SELECT name, "count" FROM "{table}"')
    before = pg_catalog_state(pg_url, table)
    assert before["indexes"] == [f"{table}_ix"] and before["view"] == (6,)
    new = dtype_matrix(4)  # other rows, same columns and dtypes
    fmt.write(new, location)
    assert_frame_equal(fmt.read(location), expected_for(pg_url, new))
    after = pg_catalog_state(pg_url, table)
    assert after == {**before, "view": (4,)}
    assert temp_tables(pg_url) == []
    # Other columns cannot replace a table under its view: refused, nothing changes.
    snapshot = raw_rows(pg_url, table)
    with pytest.raises(UnsupportedFrameError, match=f"views depend on it \\({table}_v\\)"):
        fmt.write(pd.DataFrame({"other": [1]}), location)
    assert raw_rows(pg_url, table) == snapshot
    assert temp_tables(pg_url) == []
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'DROP VIEW "{table}_v"')
    fmt.write(pd.DataFrame({"other": [1]}), location)  # now it replaces: the index goes
    assert pg_catalog_state.__name__ and raw_rows(pg_url, table)[0] == [(1,)]
    with psycopg.connect(libpq(pg_url)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s",
                            (table,)).fetchone() == (0,)


@pytest.mark.parametrize("engine", ENGINES)
def test_table_referenced_by_a_foreign_key_is_refused_and_kept(
    pg_url: str, table: str, engine: str
) -> None:
    """PostgreSQL neither truncates nor drops a table another table's foreign key points
    at: both writes (same columns: refilled in place; other columns: replaced) are refused
    naming the constraint, and neither table changes. A key pointing at its own table
    does not stop a refill."""
    location = f"{pg_url}#{table}"
    fmt = SQLFormat(engine)  # type: ignore[arg-type]
    fmt.write(pd.DataFrame({"id": [1, 2], "parent": [None, 1]}, dtype="Int64"), location)
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{table}" ADD PRIMARY KEY (id)')
        conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_self" '
                     f'FOREIGN KEY (parent) REFERENCES "{table}" (id)')
    refill = pd.DataFrame({"id": [5, 6], "parent": [None, 5]}, dtype="Int64")
    fmt.write(refill, location)  # only its own key points at it: refilled in place
    assert_frame_equal(fmt.read(location), refill)
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{table}_c" (pid bigint CONSTRAINT "{table}_fk" '
                     f'REFERENCES "{table}" (id))')
        conn.execute(f'INSERT INTO "{table}_c" VALUES (5)')
    snapshot = raw_rows(pg_url, table)
    for frame in (refill.assign(id=[7, 8]), pd.DataFrame({"other": [1]})):
        with pytest.raises(UnsupportedFrameError,
                           match=f"foreign keys of other tables \\({table}_c.{table}_fk\\)"):
            fmt.write(frame, location)
        assert raw_rows(pg_url, table) == snapshot
        assert raw_rows(pg_url, f"{table}_c")[0] == [(5,)]
    assert_frame_equal(fmt.read(location), refill)
    assert temp_tables(pg_url) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_same_schema_write_keeps_indexes_triggers_and_views_on_sqlite(
    sqlite_url: str, table: str, engine: str
) -> None:
    location = f"{sqlite_url}#{table}"
    fmt = SQLFormat(engine)  # type: ignore[arg-type]
    fmt.write(dtype_matrix(), location)
    path = sqlite_url.removeprefix("sqlite:///")

    def schema_objects() -> list[tuple[str, str]]:
        with sqlite3.connect(path) as conn:
            return sorted(conn.execute(
                "SELECT type, name FROM sqlite_master WHERE tbl_name = ? AND type <> 'table'",
                (table,)).fetchall())

    with sqlite3.connect(path) as conn:
        conn.execute(f'CREATE INDEX "{table}_ix" ON "{table}" ("count")')
        conn.execute(f'CREATE VIEW "{table}_v" AS SELECT name FROM "{table}"')
        conn.execute(f'CREATE TABLE "{table}_log" (n INTEGER)')
        conn.execute(f'CREATE TRIGGER "{table}_tr" AFTER DELETE ON "{table}" '
                     f'BEGIN INSERT INTO "{table}_log" VALUES (1); END')
    objects = schema_objects()
    assert len(objects) == 2  # index and trigger (the view's tbl_name is itself)
    new = dtype_matrix(3)
    fmt.write(new, location)
    assert_frame_equal(fmt.read(location), new)
    assert schema_objects() == objects
    with sqlite3.connect(path) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{table}_v"').fetchone() == (3,)
    fmt.write(pd.DataFrame({"other": [1]}), location)  # another schema: a new table
    assert schema_objects() == []
    assert_frame_equal(fmt.read(location), pd.DataFrame({"other": [1]}))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("index", [False, True])
def test_kedro_index_write_kwarg(db_url: str, table: str, engine: str, index: bool) -> None:
    df = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="k"))
    handler = PandasResultHandler(f"{db_url}#{table}_{{part}}",
                                  write_kwargs={"index": index, "engine": engine})
    handler.write(df, part="p")
    out = handler.read(part="p")
    assert_frame_equal(out, df if index else df.reset_index(drop=True))
    with create_engine(db_url).connect() as conn:  # differential: what to_sql would store
        stored = pd.read_sql(f'SELECT * FROM "{table}_p"', conn)
    assert sorted(stored.columns) == (["a", "k"] if index else ["a"])
    with pytest.raises(TypeError, match="index must be True or False"):
        SQLFormat().write(df, f"{db_url}#{table}_q", index="yes")


REFUSED = {
    "interval": (pd.DataFrame({"i": pd.interval_range(0, 2)}), "holds intervals"),
    "period": (pd.DataFrame({"p": pd.period_range("2020-01", periods=2, freq="M")}),
               "holds periods"),
    "complex": (pd.DataFrame({"z": [1 + 2j, 3j]}), "holds complex numbers"),
    "mixed-object": (pd.DataFrame({"m": pd.Series(["a", 1], dtype=object)}),
                     "column 'm' is an object column holding int"),
    "mixed-object-index": (pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", 1], dtype=object)),
                           "index level 0 is an object index level holding int"),
    "surrogate-value": (pd.DataFrame({"s": pd.Series(["ok", "bad\ud800"], dtype=object)}),
                        "lone surrogate"),
    "surrogate-label": (pd.DataFrame([[1]], columns=pd.Index(["bad\udc80"], dtype=object)),
                        "lone surrogate"),
    "surrogate-python-str": (
        pd.DataFrame({"s": pd.Series(["\udfff"], dtype=pd.StringDtype("python"))}),
        "lone surrogate"),
    "categorical-labels": (pd.DataFrame([[1, 2]], columns=pd.CategoricalIndex(["a", "b"])),
                           "column labels are a CategoricalIndex"),
    "period-labels": (pd.DataFrame([[1, 2]], columns=pd.period_range("2020-01", periods=2,
                                                                     freq="M")),
                      "column labels are a PeriodIndex"),
    "bool-labels": (pd.DataFrame([[1, 2]], columns=[True, False]), "bools or tuples"),
    "tuple-labels": (pd.DataFrame([[1, 2]], columns=pd.Index([("a", 1), ("b", 2)],
                                                             tupleize_cols=False)),
                     "bools or tuples"),
    "int-index-name": (pd.DataFrame({"a": [1]}, index=pd.Index([5], name=0)),
                       "index name 0 is not a string"),
    "uint64-overflow": (pd.DataFrame({"u": np.array([2**64 - 1], dtype="uint64")}),
                        "above 2\\*\\*63-1"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(REFUSED))
def test_refusals_leave_the_previous_table_unchanged(db_url: str, table: str, engine: str,
                                                     case: str) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(dtype_matrix(), location)
    before = raw_rows(db_url, table)
    df, reason = REFUSED[case]
    with pytest.raises(UnsupportedFrameError, match=f"{reason}.*Nothing was written"):
        SQLFormat().write(df, location, engine=engine)
    assert raw_rows(db_url, table) == before
    assert_frame_equal(SQLFormat().read(location), expected_for(db_url, dtype_matrix()))


@pytest.mark.parametrize("engine", ENGINES)
def test_nul_in_a_string_is_refused_on_postgresql_and_kept_on_sqlite(
    db_url: str, table: str, engine: str
) -> None:
    location = f"{db_url}#{table}"
    SQLFormat().write(dtype_matrix(), location)
    before = raw_rows(db_url, table)
    df = pd.DataFrame({"s": pd.Series(["fine", "nul\x00byte"], dtype="str"),
                       "c": pd.Categorical(["a\x00", "b"])})
    if db_url.startswith("sqlite"):
        SQLFormat().write(df, location, engine=engine)
        assert_frame_equal(SQLFormat().read(location, engine=engine), df)
        return
    with pytest.raises(UnsupportedFrameError, match="column 's' holds a string with a NUL"):
        SQLFormat().write(df, location, engine=engine)
    assert raw_rows(db_url, table) == before


@pytest.mark.parametrize("engine", ENGINES)
def test_column_limits_are_refused_before_writing(db_url: str, table: str, engine: str) -> None:
    limit = 2000 if db_url.startswith("sqlite") else 1600
    location = f"{db_url}#{table}"
    at_limit = pd.DataFrame(np.zeros((1, limit), dtype="int16"),
                            columns=[f"c{i}" for i in range(limit)])
    SQLFormat().write(at_limit, location, engine=engine)
    assert_frame_equal(SQLFormat().read(location), at_limit)
    before = raw_rows(db_url, table)
    over = at_limit.set_axis(pd.Index(["r0"], name="row"))  # the index is one column more
    with pytest.raises(UnsupportedFrameError, match=f"needs {limit + 1:,} table columns.*"
                       f"at most {limit:,}"):
        SQLFormat().write(over, location, engine=engine)
    assert raw_rows(db_url, table) == before


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_timestamps_outside_the_nanosecond_range_are_exact(
    db_url: str, table: str, engine: str, unit: str
) -> None:
    stamps = pd.Series(pd.to_datetime(["0101-02-03 04:05:06", "1677-09-21", "2262-04-12",
                                       "9999-12-31 23:59:59"], format="ISO8601").as_unit(unit))
    if unit != "s":
        stamps = stamps + pd.Timedelta(milliseconds=123)
    df = pd.DataFrame({"naive": stamps, "aware": stamps.dt.tz_localize("UTC").dt.tz_convert(
        "America/Sao_Paulo"), "missing": stamps.where(stamps.index % 2 == 0)})
    location = f"{db_url}#{table}"
    SQLFormat().write(df, location, engine=engine)
    assert_frame_equal(SQLFormat().read(location, engine=engine), df, check_exact=True)
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            first = conn.execute(f'SELECT naive, aware FROM "{table}"').fetchone()
        assert first[0].startswith("0101-02-03 04:05:06") and first[1].endswith("Z")


@pytest.mark.parametrize("engine", ENGINES)
def test_ambiguous_and_missing_dst_wall_times_on_postgresql(pg_url: str, table: str,
                                                            engine: str) -> None:
    wall = pd.to_datetime(["2021-10-31 02:30:00.123456789", "2021-10-31 02:30:00.987654321",
                           "2021-03-28 01:59:59.999999999", "2021-07-01 12:00:00"],
                          format="ISO8601")
    aware = pd.Series(wall).dt.tz_localize("Europe/Paris", ambiguous=np.array(
        [True, False, False, False]))
    df = pd.DataFrame({"at": aware.array}, index=pd.DatetimeIndex(aware, name="key"))
    location = f"{pg_url}#{table}"
    SQLFormat().write(df, location, engine=engine)
    out = SQLFormat().read(location, engine=engine)
    utc = aware.dt.tz_convert("UTC").dt.floor("us").dt.tz_convert("Europe/Paris")
    floored = pd.DataFrame({"at": utc.array}, index=pd.DatetimeIndex(utc, name="key"))
    assert_frame_equal(out, floored, check_exact=True)
    with psycopg.connect(libpq(pg_url)) as conn:  # differential: the instants PostgreSQL keeps
        stored = [r[0] for r in conn.execute(f'SELECT "at" FROM "{table}"').fetchall()]
    assert [pd.Timestamp(t).tz_convert("UTC") for t in stored] == list(
        floored["at"].dt.tz_convert("UTC"))


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_write_on_postgresql_rolls_back_everything(pg_url: str, table: str,
                                                          engine: str) -> None:
    schema = f"s_{table}"
    location = f"{pg_url}#{schema}.{table}"
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    old = dtype_matrix()
    SQLFormat().write(old, location)
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:  # the last step fails
        conn.execute(f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     f"$$ BEGIN RAISE EXCEPTION 'refused by trigger'; END $$")
        conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {schema}._prefect_ds_tables "
                     f"FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()")
    for new in (pd.DataFrame({"a": range(5000)}), dtype_matrix(2)):  # replace, refill
        with pytest.raises(Exception, match="refused by trigger"):
            SQLFormat().write(new, location, engine=engine)
        assert_frame_equal(SQLFormat().read(location), expected_for(pg_url, old))
    assert temp_tables(pg_url) == []


# -- properties -----------------------------------------------------------------------------

label_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@st.composite
def labelled_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Frames whose column labels and index vary: text (any case, any script) or ints."""
    n = draw(st.integers(0, 4))
    if draw(st.booleans()):
        labels: list[object] = draw(st.lists(label_texts, unique=True, min_size=1, max_size=5))
    else:
        labels = draw(st.lists(st.integers(-5, 5), unique=True, min_size=1, max_size=5))
    frame = pd.DataFrame({label: draw(st.sampled_from([
        pd.array(np.arange(n), dtype="int64"),
        pd.array([f"v{i}" for i in range(n)], dtype="str"),
        pd.Categorical([f"c{i % 2}" for i in range(n)], categories=["c1", "c0"]),
        pd.date_range("2021-03-27 23:00", periods=n, freq="37min", tz="Europe/Paris"),
        pd.array([True, None, False, True][:n], dtype="boolean"),
    ])) for label in labels})
    index = draw(st.sampled_from(["range", "int", "str", "tz", "multi"]))
    name = draw(st.one_of(st.none(), label_texts.filter(bool)))
    if index == "int":
        frame.index = pd.Index(np.arange(n) * 3, dtype="Int64", name=name)
    elif index == "str":
        frame.index = pd.Index([f"r{i}" for i in range(n)], dtype="str", name=name)
    elif index == "tz":
        frame.index = pd.date_range("2000-01-01", periods=n, tz="UTC", name=name)
    elif index == "multi":
        frame.index = pd.MultiIndex.from_arrays([np.arange(n), [f"k{i}" for i in range(n)]],
                                                names=[name, None])
    return frame


@settings(max_examples=40)
@given(df=labelled_frames())
def test_labels_and_indexes_round_trip_or_are_refused(tmp_path_factory: pytest.TempPathFactory,
                                                      df: pd.DataFrame) -> None:
    location = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'p.db'}#t"
    try:
        SQLFormat().write(df, location)
    except UnsupportedFrameError as refusal:  # only for names SQL cannot keep apart
        assert "collide" in str(refusal) or "cannot be stored in SQL" in str(refusal)
        return
    assert_frame_equal(SQLFormat().read(location), df, check_exact=True)


@pytest.mark.parametrize(
    ("url", "engine", "chosen"),
    [("sqlite:///x.db#t", "auto", "adbc"), ("sqlite:///x.db?timeout=5#t", "auto", "sqlalchemy"),
     ("postgresql+psycopg://h/db#t", "auto", "adbc"),
     ("postgresql+psycopg://h/db#t", "sqlalchemy", "sqlalchemy")],
)
def test_one_backend_is_chosen_per_location_and_engine(url: str, engine: str,
                                                       chosen: str) -> None:
    backend = get_backend(parse_location(url), engine)
    assert isinstance(backend, Backend) and backend.name == chosen
