"""A CSV's schema sidecar is committed before its data file.

Two independent checks, both on real writes in a child process:

* the order of the commits themselves: a Python audit hook records every rename
  (``os.replace`` raises the ``os.rename`` audit event) the write makes;
* what a writer that dies between the two commits leaves behind: the child exits at its
  second commit, after the first is done. A first write must then show no target at all
  (a data file without its sidecar would read back with pandas' guesses, not the frame).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from prefect_ds import get_format

FRAME = """
import pandas as pd
df = pd.DataFrame({
    "code": pd.array(["001", "002", None], dtype="str"),
    "when": pd.to_datetime(["2024-01-01", "2024-06-30", None]).as_unit("ms"),
    "n": pd.array([1, None, 3], dtype="Int64"),
})
"""

CHILD = FRAME + """
import json, os, sys
import prefect_ds

location, mode, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
renames = []

def hook(event, args):
    if event == "os.rename" and str(args[1]).startswith(os.path.dirname(location)):
        renames.append(os.path.basename(str(args[1])))
        if len(renames) == stop_at:
            print(json.dumps(renames[:-1]), flush=True)
            os._exit(0)  # dies before this rename: the previous ones are committed

sys.addaudithook(hook)
options = {} if mode == "exact" else {"date_format": "%Y-%m-%d"}  # pandas writes
prefect_ds.get_format("csv").write(df, location, **options)
print(json.dumps(renames), flush=True)
"""


def run_child(location: Path, mode: str, stop_at: int = 0) -> list[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(location), mode,
                           str(stop_at)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    renames: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return renames


@pytest.mark.parametrize("mode", ["exact", "pandas"])
def test_sidecar_is_renamed_into_place_before_the_data(tmp_path: Path, mode: str) -> None:
    location = tmp_path / "out.csv"
    renames = run_child(location, mode)
    assert renames == ["out.csv.schema.json", "out.csv"], renames


@pytest.mark.parametrize("mode", ["exact", "pandas"])
def test_writer_dying_between_the_commits_shows_no_data(tmp_path: Path, mode: str) -> None:
    location = tmp_path / "out.csv"
    committed = run_child(location, mode, stop_at=2)
    assert len(committed) == 1  # exactly one file was committed before the writer died
    fmt = get_format("csv")
    assert not location.exists(), (
        f"the data file is visible without its sidecar (committed first: {committed})"
    )
    assert not fmt.exists(str(location))


def test_complete_write_reads_back_exactly(tmp_path: Path) -> None:
    """The frame of the children above, written to completion, reads back equal: the
    check above would mean nothing if the sidecar were not needed for an exact read."""
    namespace: dict[str, object] = {}
    exec(FRAME, namespace)
    df = namespace["df"]
    assert isinstance(df, pd.DataFrame)
    location = tmp_path / "out.csv"
    run_child(location, "exact")
    pd.testing.assert_frame_equal(get_format("csv").read(str(location)), df)
    (tmp_path / "out.csv.schema.json").unlink()
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(get_format("csv").read(str(location)), df)
