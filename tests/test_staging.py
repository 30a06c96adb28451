"""Local staging (``prefect_ds.staged``): directories are made, and nothing is left behind.

A write to a path whose directories do not exist yet creates them; a write that fails
removes every temporary it staged, so the directory holds exactly what it held before.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_remote_commit import CASES, FILE_FORMATS, good

from prefect_ds import get_format, staged


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_write_creates_missing_directories(name: str, tmp_path: Path) -> None:
    fmt = get_format(name)
    location = tmp_path / "a" / "b" / f"x{fmt.suffixes[0]}"  # type: ignore[attr-defined]
    fmt.write(good(3), str(location))
    pd.testing.assert_frame_equal(fmt.read(str(location)), good(3))


@pytest.mark.parametrize("case", sorted(CASES))
def test_failed_local_write_leaves_no_temporary(case: str, tmp_path: Path) -> None:
    name, make_bad, options = CASES[case]
    fmt = get_format(name)
    location = tmp_path / f"keep{fmt.suffixes[0]}"  # type: ignore[attr-defined]
    fmt.write(good(4), str(location))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(Exception):  # noqa: B017 - each format fails its own way
        fmt.write(make_bad(), str(location), **options)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_staged_commits_all_or_nothing(tmp_path: Path) -> None:
    sidecar, data = tmp_path / "sub" / "x.json", tmp_path / "sub" / "x.bin"
    with pytest.raises(RuntimeError), staged(str(sidecar), str(data)) as (s, d):
        Path(s).write_text("{}")
        Path(d).write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert list((tmp_path / "sub").iterdir()) == []
    with staged(str(sidecar), str(data)) as (s, d):
        Path(s).write_text("{}")
        Path(d).write_bytes(b"whole")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.bin", "x.json"]
    assert data.read_bytes() == b"whole"
