"""Fixtures of the reliability suite (the JSON report is written as tests count)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import TARGETS, Target, make_target


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Each test using it runs once per format (sql twice: SQLite and PostgreSQL)."""
    return make_target(str(request.param), tmp_path, request)

