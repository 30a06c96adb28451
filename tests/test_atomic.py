"""A writer SIGKILLed mid-write never leaves a partial result that looks complete.

A child process writes a large frame to one location over and over (version 0, 1, 2,
...) in parquet, or in csv, whose schema sidecar is committed before the data file, and
is killed after various delays. After every kill the location either does not exist
(``exists()`` is false and no data file is visible) or holds one complete version:
the old file written before the child started, or a version the child finished. Nothing
else is visible in the directory; a killed write leaves at most hidden
``.*.prefect-ds-tmp`` temporaries, which no reader looks at.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefect_ds import available_formats, get_format

ROWS = 400_000

BUILD = """
import numpy as np
import pandas as pd

def build(rows, version):
    '''A mixed frame whose every value is determined by (rows, version).'''
    rng = np.random.default_rng(1234)
    words = np.array([f"word-{i}" for i in range(1000)], dtype=object)
    df = pd.DataFrame({f"f{i}": rng.normal(size=rows) for i in range(5)})
    df["payload"] = np.arange(rows, dtype="int64") + version
    df["when"] = pd.date_range("2024-01-01", periods=rows, freq="s")
    df["text"] = pd.array(words[np.arange(rows) % 1000], dtype="str")
    df["version"] = np.full(rows, version, dtype="int64")
    return df
"""

CHILD = BUILD + """
import sys
import prefect_ds

location, rows, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fmt = prefect_ds.get_format(name)
df = build(rows, 0)
base = df["payload"].to_numpy().copy()
print("ready", flush=True)
version = 0
while True:
    df["payload"] = base + version
    df["version"] = version
    fmt.write(df, location)
    print(f"done {version}", flush=True)
    version += 1
"""

TEMP = re.compile(r"^\.result\.(parquet|csv|csv\.schema\.json)\.[0-9a-f]{22}\.prefect-ds-tmp$")


def build(rows: int, version: int) -> pd.DataFrame:
    namespace: dict[str, object] = {}
    exec(BUILD, namespace)
    frame = namespace["build"](rows, version)  # type: ignore[operator]
    assert isinstance(frame, pd.DataFrame)
    return frame


def kill_mid_write(location: Path, delay: float, name: str = "parquet") -> list[int]:
    """Start the writer, SIGKILL it ``delay`` s after its first write began; the versions
    it reported finished."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(location), str(ROWS), name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return [int(line.split()[1]) for line in rest.splitlines() if line.startswith("done ")]


def check_location(location: Path, finished: list[int], old: pd.DataFrame | None,
                   name: str = "parquet") -> bool:
    """Assert the location is absent or one complete version; True if a temp was left."""
    fmt = get_format(name)
    complete = sorted([location.name, *(Path(s).name for s in fmt.sidecars(str(location)))])
    entries = sorted(p.name for p in location.parent.iterdir())
    visible = [entry for entry in entries if not entry.startswith(".")]
    hidden = [entry for entry in entries if entry.startswith(".")]
    assert all(TEMP.match(entry) for entry in hidden), hidden
    if not fmt.exists(str(location)):
        assert location.name not in visible
        assert set(visible) <= set(complete)  # at most a sidecar, committed first
        assert old is None and not finished, "a complete file vanished"
        return bool(hidden)
    assert visible == complete
    df = fmt.read(str(location))
    versions = df["version"].unique()
    assert len(versions) == 1, f"a mix of versions: {versions}"
    version = int(versions[0])
    if finished:  # the last finished write, or the next one if the kill came after it
        assert version in {finished[-1], finished[-1] + 1}, (version, finished)
    else:  # the old file, or the first write if it finished just before the kill
        assert version in ({0} if old is None else {0, int(old["version"].iloc[0])})
    if old is not None and version == int(old["version"].iloc[0]):
        pd.testing.assert_frame_equal(df, old)
    else:
        assert len(df) == ROWS
        assert np.array_equal(df["payload"].to_numpy(), np.arange(ROWS) + version)
    return bool(hidden)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "delays"), [("parquet", [0.0, 0.1, 0.4, 0.9]), ("csv", [0.05, 0.6, 1.5])]
)
def test_killed_writer_over_an_existing_file_leaves_the_old_or_a_new_complete_file(
    tmp_path: Path, name: str, delays: list[float]
) -> None:
    if name not in available_formats():
        pytest.skip(f"format {name!r} is not installed")
    old = build(ROWS, -1)
    interrupted = []
    for run, delay in enumerate(delays):
        directory = tmp_path / f"run{run}"
        directory.mkdir()
        location = directory / f"result.{name}"
        get_format(name).write(old, str(location))
        finished = kill_mid_write(location, delay, name)
        interrupted.append(check_location(location, finished, old, name))
    # Most of the child's time is spent inside a write, so kills do land mid-write.
    assert any(interrupted)


@pytest.mark.slow
def test_killed_first_write_leaves_nothing_visible(tmp_path: Path) -> None:
    for run, delay in enumerate([0.02, 0.3]):
        directory = tmp_path / f"run{run}"
        directory.mkdir()
        location = directory / "result.parquet"
        finished = kill_mid_write(location, delay)
        check_location(location, finished, None)
