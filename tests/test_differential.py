"""Differential fidelity: the frames pandas' own I/O tests round-trip, through every format.

Each frame of ``fidelity_corpus.py`` goes through csv, parquet, hdf, feather and sql (on a
SQLite file). After a different frame was written to the same target, the outcome must
be the one docs/fidelity.md publishes for the frame's kind: ``exact``, a documented
conversion, or a prefect-ds refusal that left the earlier target byte-identical
(``fidelity_matrix.run``). A silent wrong value, a target written and then unreadable,
or a raw library error fails the test for the file formats; for sql the outcome is
recorded, and an open failure is an expected failure that names it.

By default the fast subset runs (every kind at least once); ``PREFECT_DS_FULL=1`` runs
every frame. ``PREFECT_DS_FULL=1 PREFECT_DS_WRITE_MATRIX=1`` rewrites the matrix in
docs/fidelity.md from what the run observed, instead of checking it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fidelity_corpus import CASES, Case, selected
from fidelity_matrix import (
    COLUMNS,
    FAILURES,
    SQL,
    current_block,
    kinds,
    published,
    render,
    run,
    write_doc,
)

from prefect_ds import UnknownFormatError, get_format

FULL = os.environ.get("PREFECT_DS_FULL") == "1"
WRITE = os.environ.get("PREFECT_DS_WRITE_MATRIX") == "1"
OBSERVED: dict[tuple[str, str], dict[str, str]] = {}  # (kind, format) -> {case: outcome}


def _available(fmt: str) -> None:
    try:
        get_format(fmt)
    except UnknownFormatError as exc:
        pytest.skip(f"format {fmt!r} is not installed: {exc}")


@pytest.mark.parametrize("fmt", COLUMNS)
@pytest.mark.parametrize("case", selected(FULL), ids=lambda c: c.name)
def test_frame_round_trips_exactly_or_is_refused(tmp_path: Path, case: Case, fmt: str) -> None:
    _available(fmt)
    outcome, detail = run(case, fmt, tmp_path)
    OBSERVED.setdefault((case.kind, fmt), {})[case.name] = outcome
    if WRITE:
        return
    head = outcome.split(":")[0]
    if fmt != SQL:
        assert head not in FAILURES, f"{case.name} through {fmt}: {outcome}\n{detail}"
    cell = published().get((case.kind, fmt))
    assert outcome == cell, (
        f"{case.name} ({case.kind}) through {fmt}: {outcome!r}, but docs/fidelity.md "
        f"publishes {cell!r}\n{detail}"
    )
    if head in FAILURES:
        pytest.xfail(f"open sql failure, published in docs/fidelity.md: {outcome}")


def test_every_kind_has_a_frame_in_the_fast_run() -> None:
    fast = {case.kind for case in selected(False)}
    assert [kind for kind in kinds() if kind not in fast] == []
    assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.skipif(not WRITE, reason="opt-in: PREFECT_DS_WRITE_MATRIX=1 rewrites the matrix")
def test_write_the_matrix() -> None:
    assert FULL, "write the matrix from a full run (PREFECT_DS_FULL=1)"
    cells: dict[tuple[str, str], str] = {}
    mixed = {key: outcomes for key, outcomes in OBSERVED.items()
             if len(set(outcomes.values())) > 1}
    assert not mixed, f"frames of one kind differ; give them separate kinds: {mixed}"
    for key, outcomes in OBSERVED.items():
        cells[key] = next(iter(outcomes.values()))
    write_doc(cells)


def test_the_published_matrix_is_complete_and_its_counts_add_up() -> None:
    """Every kind x format has one cell, and the counts are those of the cells: editing a
    cell or a count of docs/fidelity.md by hand fails here or in the round trips."""
    cells = published()
    assert set(cells) == {(kind, fmt) for kind in kinds() for fmt in COLUMNS}
    assert current_block() == render(cells)
