"""Differential fidelity for polars and Arrow frames: one column of every dtype through
every format, against docs/fidelity.md's kinds matrix and against polars' own I/O.

Each row of ``fidelity_kinds.py`` is written over an earlier target and read back as its
own kind; the outcome (``exact``, ``converted: ...``, ``refused: ...`` with the earlier
target unchanged) must be the cell docs/fidelity.md publishes. Where ours is exact
through parquet or feather, polars' own ``write_parquet``/``read_parquet`` (and
``write_ipc``/``read_ipc``) must give the same frame: ours never keeps less than the
plain library. ``PREFECT_DS_WRITE_MATRIX=1`` rewrites the matrix from the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fidelity_kinds import FORMATS, ROWS, Row, current_block, published, render, run, write_doc

pl = pytest.importorskip("polars", reason="opt-in: the [polars] extra is not installed")

WRITE = os.environ.get("PREFECT_DS_WRITE_MATRIX") == "1"
OBSERVED: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.library}-{r.name}")
def test_each_dtype_is_exact_converted_or_refused_as_published(
    tmp_path: Path, row: Row, fmt: str,
) -> None:
    outcome = run(row, fmt, tmp_path)
    OBSERVED[(row.name, fmt)] = outcome
    if WRITE:
        return
    assert not outcome.startswith(("wrong", "raw error")), f"{row.name} through {fmt}: {outcome}"
    assert outcome == published().get((row.name, fmt)), (
        f"{row.name} through {fmt}: {outcome!r}, but docs/fidelity.md publishes "
        f"{published().get((row.name, fmt))!r}")
    if outcome == "exact" and row.library == "polars" and fmt in ("parquet", "feather",
                                                                  "dataset"):
        frame = row.build()
        theirs: Any
        if fmt in ("parquet", "dataset"):
            frame.write_parquet(tmp_path / "theirs.parquet")
            theirs = pl.read_parquet(tmp_path / "theirs.parquet")
        else:
            frame.write_ipc(tmp_path / "theirs.arrow")
            theirs = pl.read_ipc(tmp_path / "theirs.arrow")
        ours = run_read(tmp_path, fmt)
        assert ours.schema == theirs.schema and ours.equals(theirs)


def run_read(tmp_path: Path, fmt: str) -> Any:
    from fidelity_kinds import handler

    return handler(fmt, tmp_path).read()


@pytest.mark.skipif(not WRITE, reason="opt-in: PREFECT_DS_WRITE_MATRIX=1 rewrites the matrix")
def test_write_the_kinds_matrix() -> None:
    write_doc(OBSERVED)


def test_the_published_kinds_matrix_is_complete() -> None:
    cells = published()
    assert set(cells) == {(row.name, fmt) for row in ROWS for fmt in FORMATS}
    assert current_block() == render(cells)
