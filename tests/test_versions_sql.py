"""Versioned SQL targets on SQLite and PostgreSQL: one table per version, committed by a
row in ``_prefect_ds_versions``; a writer killed before that row leaves no version;
concurrent writers each commit theirs; pruning drops whole versions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest
import sqlalchemy as sa
from pandas.testing import assert_frame_equal

from prefect_ds import (
    PandasResultHandler,
    UnsafeLocationError,
    VersionNotFoundError,
    get_format,
    redact,
)

pytest_plugins = ["sql_fixtures"]


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"n": [n] * (n + 2), "s": [f"v{n}"] * (n + 2)})


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_versions_in_a_database(db_url: str, table: str) -> None:
    if db_url.startswith("postgresql"):  # trust authentication ignores it; records must too
        db_url = db_url.replace("://postgres@", "://postgres:s3cret-pw@")
    handler = PandasResultHandler(f"{db_url}#{table}_{{r}}", versioned=True)
    assert handler.versions(r="a") == [] and not handler.exists(r="a")
    for n in (1, 2, 3):
        handler.write(frame(n), r="a")
    ids = handler.versions(r="a")
    assert len(ids) == 3 and ids == sorted(ids)
    assert_frame_equal(handler.read(r="a"), frame(3))
    assert_frame_equal(handler.read(version=ids[0], r="a"), frame(1))
    record = handler.version_record(ids[1], r="a")
    assert record["rows"] == 4 and record["version"] == ids[1] and record["format"] == "sql"
    assert record["location"] == redact(f"{db_url}#{table}_a")
    assert "s3cret-pw" not in repr(record)
    # Differential: the version's table is a plain table pandas reads.
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = pd.read_sql(sa.text(f'SELECT n, s FROM "{table}_a__v'
                                         f'{ids[0].replace(".", "").replace("-", "_")}"'),
                                 conn)
    finally:
        engine.dispose()
    assert_frame_equal(stored, frame(1))
    fmt = get_format("sql")
    assert fmt.list_locations(f"{db_url}#{table}_*") == []  # no plain table, no versions
    assert handler.prune(1, r="a") == ids[:2]
    ours = {t for t in tables(db_url) if t.startswith(table)}
    assert len(ours) == 1
    with pytest.raises(VersionNotFoundError):
        handler.read(version=ids[0], r="a")
    handler.delete(r="a")
    assert not {t for t in tables(db_url) if t.startswith(table)}


CHILD = """
import sys, time
import pandas as pd
from prefect_ds import PandasResultHandler
from prefect_ds.formats.sql import versions

handler = PandasResultHandler(sys.argv[1], versioned=True)
handler.write(pd.DataFrame({"n": [0] * 5}))
def hang(*args, **kwargs):
    print("hanging", flush=True)
    time.sleep(600)
versions.commit = hang
handler.write(pd.DataFrame({"n": [1] * 5}))
"""

def test_killed_writer_and_concurrent_writers(db_url: str, table: str) -> None:
    location = f"{db_url}#{table}"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), location],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "hanging"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    handler = PandasResultHandler(location, versioned=True)
    assert len(handler.versions()) == 1
    assert handler.read()["n"].tolist() == [0] * 5  # the stored, uncommitted table is not
    assert len({t for t in tables(db_url) if t.startswith(table + "__v")}) == 2
    def write(who: str) -> None:  # each write opens its own connection
        for i in range(4):
            handler.write(pd.DataFrame({"who": [who] * 20, "i": [i] * 20}))

    writers = [threading.Thread(target=write, args=(who,)) for who in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    ids = handler.versions()
    assert len(ids) == 9
    for version in ids[1:]:
        df = handler.read(version=version)
        assert len(df) == 20 and df[["who", "i"]].drop_duplicates().shape[0] == 1


def test_a_table_name_too_long_for_versions_is_refused_before_any_sql(sqlite_url: str) -> None:
    handler = PandasResultHandler(f"{sqlite_url}#{'t' * 32}", versioned=True)
    with pytest.raises(UnsafeLocationError, match="at most 31 characters"):
        handler.write(frame(1))
    assert not os.path.exists(sqlite_url.removeprefix("sqlite:///"))
    ok = PandasResultHandler(f"{sqlite_url}#{'t' * 31}", versioned=True)
    ok.write(frame(1))
    assert_frame_equal(ok.read(), frame(1))
