"""Resource faults: a write that fails half way leaves the previous target intact.

* A full disk: the target lives on a real, tiny tmpfs (mounted for the test; skipped
  where ``mount`` is not allowed). A frame that fits is written first; a frame several
  times larger than the free space then fails with ``OSError`` (ENOSPC) half way. The
  previous target must read back unchanged, ``exists()`` stay true, no temporary be left
  (the failed write removes its own), and a write that fits must work again.
* A dropped PostgreSQL connection: while a large write streams its rows, another
  connection ends the writer's backend with ``pg_terminate_backend``. The write raises,
  the previous table reads back unchanged, no temporary table is left, and the next write
  succeeds on a fresh connection.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from reliability_support import FILE_SUFFIXES, format_or_skip, tally

pytest_plugins = ["sql_fixtures"]

TMPFS_BYTES = 4 * 1024 * 1024


@contextlib.contextmanager
def tiny_filesystem() -> Iterator[Path]:
    """A 4 MiB tmpfs mounted on a fresh directory (root only)."""
    root = Path(tempfile.mkdtemp(prefix="prefect-ds-full-disk-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                           str(root)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        root.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        with contextlib.suppress(OSError):
            root.rmdir()


def big_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Random floats and strings: they compress badly, so the file is about its size."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.random(rows), "y": rng.random(rows),
        "s": pd.array(rng.integers(0, 2**62, rows).astype(str), dtype="str"),
    })


@pytest.mark.parametrize("key", ["csv", "parquet", "hdf", "feather", "sql-sqlite"])
def test_full_disk_leaves_the_previous_target(key: str) -> None:
    fmt = format_or_skip("sql" if key == "sql-sqlite" else key)
    small, huge = big_frame(2_000, 1), big_frame(400_000, 2)  # ~60 KB and ~16 MB
    damaged = 0
    with tiny_filesystem() as root:
        if key == "sql-sqlite":
            location = f"sqlite:///{root / 'results.db'}#result"
        else:
            location = str(root / f"result{FILE_SUFFIXES[key]}")
        fmt.write(small, location)
        before = sorted(p.name for p in root.iterdir())
        try:
            with pytest.raises(Exception) as caught:
                fmt.write(huge, location)
            assert _is_no_space(caught.value), repr(caught.value)
            assert fmt.exists(location)
            pd.testing.assert_frame_equal(fmt.read(location), small, check_exact=True)
            after = sorted(p.name for p in root.iterdir() if not p.name.endswith("-journal"))
            assert after == before, (before, after)
        except BaseException:
            damaged = 1
            raise
        finally:
            tally(key, faults=1, faults_damaged=damaged)
        fmt.write(small.iloc[::-1], location)  # space is free again: writes work
        pd.testing.assert_frame_equal(fmt.read(location), small.iloc[::-1], check_exact=True)


def _is_no_space(exc: BaseException) -> bool:
    """ENOSPC, however the library reports it."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if (getattr(seen, "errno", None) == 28 or "no space" in text or "disk is full" in text
                or "disk full" in text or "enospc" in text or "database or disk" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _writer_backend(url: str, table: str) -> int | None:
    """The server process copying rows into ``table`` (refilled in place) or into the
    temporary table that replaces it."""
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND (strpos(query, '_prefect_ds_tables_tmp_') > 0 OR strpos(query, %s) > 0) "
            "AND (query ILIKE 'COPY%%' OR query ILIKE 'INSERT%%')", (table,)).fetchone()
    return int(row[0]) if row else None


def _temp_tables(url: str) -> list[str]:
    with psycopg.connect(_libpq(url)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE strpos(relname, '_tmp_') > 0")]


@pytest.mark.parametrize("engine", ["adbc", "sqlalchemy"])
def test_dropped_postgresql_connection_leaves_the_previous_table(pg_url: str,
                                                                 engine: str) -> None:
    fmt = format_or_skip("sql")
    location = f"{pg_url}#fault_{uuid.uuid4().hex[:10]}"
    small = big_frame(1_000, 3)
    fmt.write(small, location)
    huge = big_frame(3_000_000 if engine == "adbc" else 300_000, 4)
    failure: list[BaseException] = []

    def write() -> None:
        try:
            fmt.write(huge, location, engine=engine)
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    damaged = 1
    try:
        deadline = time.monotonic() + 120
        backend = None
        while backend is None and writer.is_alive() and time.monotonic() < deadline:
            backend = _writer_backend(pg_url, location.rpartition("#")[2])
            time.sleep(0.01)
        assert backend is not None, "the write finished before its connection could be cut"
        with psycopg.connect(_libpq(pg_url), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
        writer.join(120)
        assert not writer.is_alive()
        assert failure, "the write did not notice its connection was dropped"
        assert fmt.exists(location)
        expected = small.copy()
        pd.testing.assert_frame_equal(fmt.read(location), expected, check_exact=True)
        assert _temp_tables(pg_url) == []
        damaged = 0
    finally:
        writer.join(120)
        tally("sql-postgresql", faults=1, faults_damaged=damaged)
    fmt.write(small.iloc[::-1], location, engine=engine)  # a fresh connection works
    pd.testing.assert_frame_equal(fmt.read(location), small.iloc[::-1], check_exact=True)

