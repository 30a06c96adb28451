"""Crash safety: a writer SIGKILLed at a random point never leaves a torn target.

For every format, a long-lived helper process (started once, with the frame built and
the format loaded) forks one writer per round. The writer overwrites the existing
complete target (every fourth round: writes a target that is absent) with a new version
of a large frame, and is SIGKILLed after a random delay drawn from the time an
uninterrupted write takes. After every kill:

* the target holds the previous complete version or the new complete one (absent if
  there was none before), compared frame by frame, and ``exists()`` agrees;
* no visible file but the target's own, hidden temporaries only (files) or no temporary
  table (SQL), and :func:`prefect_ds._storage.files.remove_stale_temps` removes every temporary
  the dead writer left, so none is left for a later ``exists()``;
* a rerun of the write produces exactly the new frame.

A kill that lands mid-write counts in "kills"; any deviation counts as "torn" (which must
stay 0). Fast run: 6 kills per format (``KILLS``); PREFECT_DS_FULL=1: 100.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from reliability_support import Target, count, tally
from test_atomic import BUILD

from prefect_ds._storage.files import remove_stale_temps

pytest_plugins = ["sql_fixtures"]

# Rows of the frame written (9 mixed columns, 4-9 MB on disk): a write takes long
# enough that random kills land at every stage of it.
ROWS = {"csv": 50_000, "parquet": 100_000, "hdf": 100_000, "feather": 100_000,
        "sql-sqlite": 50_000, "sql-postgresql": 50_000}
KILLS = count(6, 100)

ZYGOTE = BUILD + textwrap.dedent("""
    import os, sys, time
    import prefect_ds

    name, location, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fmt = prefect_ds.get_format(name)
    df = build(rows, 0)
    base = df["payload"].to_numpy().copy()
    print("ready", flush=True)
    for line in sys.stdin:
        command, arg = line.split()
        if command == "write":  # fork a writer of version arg; report its pid
            version = int(arg)
            pid = os.fork()
            if pid == 0:
                try:
                    df["payload"] = base + version
                    df["version"] = version
                    os.write(1, b"")  # nothing else from the child on stdout
                    fmt.write(df, location)
                finally:
                    os._exit(0 if sys.exc_info()[0] is None else 3)
            print(f"pid {pid} {time.monotonic()}", flush=True)
        elif command == "wait":  # reap it: its exit status and when it ended
            _, status = os.waitpid(int(arg), 0)
            print(f"status {os.waitstatus_to_exitcode(status)} {time.monotonic()}", flush=True)
""")

# Hidden names a file format may leave beside the target: temporaries and lock files.
TEMP = re.compile(r"^\.result\.[a-z0-9.]+\.[0-9a-f]{22}\.prefect-ds-tmp$")
LOCK = re.compile(r"^\.result\.[a-z0-9.]+\.prefect-ds-lock$")


class Zygote:
    """The helper process that forks writers (fork is ~1 ms; a fresh Python ~2 s)."""

    def __init__(self, target: Target, rows: int) -> None:
        name = target.fmt.name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, name, target.location, str(rows)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._line() == ["ready"]

    def _line(self) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the writer helper died (exit {self.proc.poll()})"
        return line.split()

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def start(self, version: int) -> tuple[int, float]:
        self._send(f"write {version}")
        word, pid, started = self._line()
        assert word == "pid"
        return int(pid), float(started)

    def wait(self, pid: int) -> tuple[int, float]:
        self._send(f"wait {pid}")
        word, status, ended = self._line()
        assert word == "status"
        return int(status), float(ended)

    def write(self, version: int) -> float:
        """An uninterrupted write; how long it took."""
        pid, started = self.start(version)
        status, ended = self.wait(pid)
        assert status == 0, f"an uninterrupted write failed (exit {status})"
        return ended - started

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Versions:
    """The frame the helper writes for each version, built once and patched."""

    def __init__(self, target: Target, rows: int) -> None:
        namespace: dict[str, Any] = {}
        exec(BUILD, namespace)
        self.frame: pd.DataFrame = namespace["build"](rows, 0)
        self.base = self.frame["payload"].to_numpy().copy()
        self.expect = target.expect

    def __call__(self, version: int) -> pd.DataFrame:
        df = self.frame.copy()
        df["payload"] = self.base + version
        df["version"] = np.full(len(df), version, dtype="int64")
        return self.expect(df)


def temp_tables(target: Target) -> list[str]:
    assert target.db_url is not None
    engine = sa.create_engine(target.db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if target.key == "sql-sqlite":
                query = "SELECT name FROM sqlite_master WHERE name LIKE '%\\_tmp\\_%' ESCAPE '\\'"
            else:
                query = "SELECT relname FROM pg_class WHERE strpos(relname, '_tmp_') > 0"
            return [r[0] for r in conn.exec_driver_sql(query)]
    finally:
        engine.dispose()


def check_after_kill(target: Target, versions: Versions, previous: int | None, new: int,
                     finished: bool) -> int:
    """Assert the target is whole; return how many stale temporaries were removed."""
    fmt = target.fmt
    exists = fmt.exists(target.location)
    if exists:
        df = fmt.read(target.location)
        seen = set(df["version"].unique().tolist())
        allowed = {new} if finished else {new} | ({previous} if previous is not None else set())
        assert len(seen) == 1 and seen <= allowed, f"versions {seen}, allowed {allowed}"
        pd.testing.assert_frame_equal(df, versions(seen.pop()), check_exact=True)
    else:
        assert previous is None and not finished, "a complete target vanished"
        with pytest.raises(FileNotFoundError):
            fmt.read(target.location)
    if target.is_sql:
        if target.key == "sql-postgresql":  # the server ends the dead client's transaction
            for _ in range(300):
                if not temp_tables(target):
                    break
                time.sleep(0.02)
        assert temp_tables(target) == []
        return 0
    entries = sorted(p.name for p in target.directory.iterdir())
    visible = [e for e in entries if not e.startswith(".")]
    hidden = [e for e in entries if e.startswith(".")]
    assert all(TEMP.match(e) or LOCK.match(e) for e in hidden), hidden
    own = {target.path.name, *(Path(s).name for s in fmt.sidecars(str(target.path)))}
    assert set(visible) <= own, visible
    if exists:
        assert target.path.name in visible
    removed = remove_stale_temps(str(target.path))
    for sidecar in fmt.sidecars(str(target.path)):
        removed += remove_stale_temps(sidecar)
    left = [p.name for p in target.directory.iterdir() if TEMP.match(p.name)]
    assert left == [], f"temporaries of a dead writer were kept: {left}"
    return len(removed)


@pytest.mark.slow
def test_writer_killed_at_random_points_never_leaves_a_torn_target(target: Target) -> None:
    rows = ROWS[target.key]
    versions = Versions(target, rows)
    rng = random.Random(f"crash-{target.key}")
    zygote = Zygote(target, rows)
    mid_write = torn = removed = kills = 0
    outcomes: dict[str, int] = {"previous": 0, "new": 0, "absent": 0}
    try:
        duration = zygote.write(0)  # the existing complete target
        current: int | None = 0
        for kill in range(KILLS):
            new = kill + 1
            if kill % 4 == 3:  # a first write: the target is absent before it
                target.fmt.delete(target.location)
                current = None
            delay = rng.uniform(0.0, duration)
            pid, _ = zygote.start(new)
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            kills += 1
            status, _ = zygote.wait(pid)
            finished = status == 0
            assert status in (0, -signal.SIGKILL), f"the writer failed (exit {status})"
            mid_write += not finished
            try:
                removed += check_after_kill(target, versions, current, new, finished)
            except AssertionError:
                torn += 1
                raise
            if target.fmt.exists(target.location):
                version = int(target.fmt.read(target.location)["version"].iloc[0])
                outcomes["new" if version == new else "previous"] += 1
            else:
                outcomes["absent"] += 1
            # the rerun writes the right frame
            duration = zygote.write(new)
            pd.testing.assert_frame_equal(target.fmt.read(target.location), versions(new),
                                          check_exact=True)
            current = new
    finally:
        tally(target.key, kills=kills, torn=torn, kills_mid_write=mid_write,
              stale_temps_removed=removed, **{f"after_kill_{k}": v for k, v in outcomes.items()})
        zygote.close()
    assert torn == 0
    # Most delays fall inside a write, so most kills interrupt one.
    assert mid_write >= KILLS // 2, (mid_write, outcomes)
