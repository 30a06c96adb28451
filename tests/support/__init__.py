"""Shared test support: real servers (PostgreSQL, S3, Prefect events), skips, counts."""

from __future__ import annotations

import os

#: ``PREFECT_DS_FULL=1`` selects the thorough run: full repetition counts, every example.
FULL = os.environ.get("PREFECT_DS_FULL") == "1"


def count(fast: int, full: int) -> int:
    """A repetition count: ``fast`` by default, ``full`` under ``PREFECT_DS_FULL=1``."""
    return full if FULL else fast
