"""Fixtures of the reliability suite; writes the JSON report at the end of the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reliability_support import REPORT_ENV, TARGETS, Target, make_target, write_report


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Each test using it runs once per format (sql twice: SQLite and PostgreSQL)."""
    return make_target(str(request.param), tmp_path, request)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        write_report(path)
