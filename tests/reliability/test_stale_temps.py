"""Clean-up of temporaries left by killed writers (``remove_stale_temps``).

A temporary's name carries its writer's pid; it is stale when that process is gone, or
when it is older than ``STALE_AFTER`` whatever its writer. The next local write of the
same target removes its stale temporaries and nothing else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from prefect_ds import get_format
from prefect_ds._storage.files import STALE_AFTER, TEMP_MARKER, remove_stale_temps, temp_sibling


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def dead_pid_below(pid: int) -> int:
    """A pid below ``pid`` that no process has now (a writer older than this one)."""
    for candidate in range(pid - 1, 1, -1):
        try:
            os.kill(candidate, 0)
        except ProcessLookupError:
            return candidate
        except OSError:
            continue
    pytest.fail("no free pid below this process's: cannot test an older dead writer")


def temp_of(path: Path, pid: int, age: float = 0.0) -> Path:
    temp = path.parent / f".{path.name}.{pid & 0xFFFFFF:06x}{os.urandom(3).hex()}{TEMP_MARKER}"
    temp.write_bytes(b"partial")
    if age:
        stamp = time.time() - age
        os.utime(temp, (stamp, stamp))
    return temp


def test_temp_names_carry_the_writer_pid(tmp_path: Path) -> None:
    name = Path(temp_sibling(str(tmp_path / "r.parquet"))).name
    match = re.fullmatch(r"\.r\.parquet\.([0-9a-f]{6})[0-9a-f]{16}" + re.escape(TEMP_MARKER), name)
    assert match and int(match[1], 16) == os.getpid() & 0xFFFFFF


def test_only_stale_temporaries_of_the_target_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "r.parquet"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = temp_of(target, dead_pid())
        older_dead = temp_of(target, dead_pid_below(os.getpid()))
        old_live = temp_of(target, sleeper.pid, age=STALE_AFTER + 60)
        live = temp_of(target, sleeper.pid)
        mine = temp_of(target, os.getpid())
        other_target = temp_of(tmp_path / "other.parquet", dead_pid())
        later_target = temp_of(tmp_path / "s.parquet", dead_pid())  # sorts after r.parquet
        not_ours = tmp_path / f".r.parquet.notatemp{TEMP_MARKER}"
        not_ours.write_bytes(b"x")
        removed = remove_stale_temps(str(target))
        assert sorted(Path(p).name for p in removed) == sorted(
            [dead.name, older_dead.name, old_live.name])
        assert live.exists() and mine.exists() and other_target.exists() and not_ours.exists()
        assert later_target.exists()
        assert sleeper.poll() is None  # asking whether a writer lives never signals it
        assert remove_stale_temps(str(target), max_age=0) != []  # everything is old now...
        assert mine.exists() is False  # ...even this process's own, when asked with max_age=0
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("name", ["parquet", "csv"])
def test_the_next_write_sweeps_a_killed_writers_temporaries(tmp_path: Path, name: str) -> None:
    fmt = get_format(name)
    target = tmp_path / f"r.{name}"
    pid = dead_pid()
    leftovers = [temp_of(target, pid)]
    sidecars = fmt.sidecars(str(target))  # type: ignore[attr-defined]
    leftovers += [temp_of(Path(s), pid) for s in sidecars]
    df = pd.DataFrame({"a": [1, 2]})
    fmt.write(df, str(target))
    assert not any(p.exists() for p in leftovers)
    assert not [p for p in tmp_path.iterdir() if TEMP_MARKER in p.name]
    pd.testing.assert_frame_equal(fmt.read(str(target)), df)
    assert fmt.exists(str(target))


def test_missing_directory_is_not_an_error(tmp_path: Path) -> None:
    assert remove_stale_temps(str(tmp_path / "nowhere" / "r.parquet")) == []
