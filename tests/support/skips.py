"""No silent skips: a test that cannot run fails the run, unless its reason is allowed.

A test skipped because PostgreSQL is missing, a tmpfs cannot be mounted, or an optional
extra is not installed did not check its promise. Such a skip is turned into a failure
unless ``PREFECT_DS_ALLOW_SKIPS`` names its kind (comma-separated; ``all`` allows
every kind):

    PREFECT_DS_ALLOW_SKIPS=postgres,mount pytest

Kinds: ``postgres`` (no PostgreSQL server binaries, or the server did not start),
``mount`` (no permission to mount the small tmpfs of the full-disk tests), ``extra`` (an
optional dependency or format is not installed), ``other`` (any other skip). A skip whose
reason starts with ``opt-in`` (a test of a package prefect-ds does not depend on, or a long
run behind an environment variable) is always allowed and counted in the summary. The
terminal summary ends with one line per kind of test that ran (PostgreSQL, S3, Prefect
server, tmpfs) and the skips that were allowed.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

VARIABLE = "PREFECT_DS_ALLOW_SKIPS"
KINDS = ("postgres", "mount", "extra", "other")


def allowed() -> set[str]:
    names = {n.strip() for n in os.environ.get(VARIABLE, "").split(",") if n.strip()}
    unknown = names - {*KINDS, "all"}
    if unknown:
        raise pytest.UsageError(f"{VARIABLE} names unknown kinds {sorted(unknown)}; "
                                f"use any of {', '.join(KINDS)} or all")
    return set(KINDS) if "all" in names else names


def kind_of(reason: str) -> str:
    """Which kind of missing part a skip reason names."""
    text = reason.lower()
    if text.startswith("opt-in"):
        return "opt-in"
    if "postgres" in text or "pg_ctl" in text:
        return "postgres"
    if "mount" in text or "tmpfs" in text:
        return "mount"
    if "not installed" in text or "could not import" in text or "no module named" in text:
        return "extra"
    return "other"


def reason_of(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def uses(item: pytest.Item) -> list[str]:
    """The real parts a test runs against, for the summary line."""
    names = set(getattr(item, "fixturenames", ()))
    parts = []
    callspec = getattr(item, "callspec", None)
    params = set(map(str, callspec.params.values())) if callspec is not None else set()
    if names & {"postgres_server", "pg_url"} or params & {"postgresql", "sql-postgresql"}:
        parts.append("PostgreSQL")
    if "s3_server" in names:
        parts.append("S3 (moto server)")
    if "prefect_harness" in names:
        parts.append("Prefect server")
    if "full_disk" in item.nodeid:
        parts.append("tmpfs mount")
    return parts


class NoSilentSkips:
    """The pytest plugin: turns forbidden skips into failures, summarises what ran."""

    def __init__(self) -> None:
        self.allowed = allowed()
        self.parts: dict[str, list[str]] = {}
        self.ran: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.parts = {item.nodeid: uses(item) for item in items}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = reason_of(report)
        kind = kind_of(reason)
        if kind in self.allowed or kind == "opt-in":  # a test its reason says to switch on
            self.skipped[kind] += 1
            return
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} was skipped ({kind}): {reason}\nA skipped test checks nothing, "
            f"so it fails the run. Install what is missing, or allow this kind of skip "
            f"with {VARIABLE}={kind} (see tests/support/skips.py)."
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.ran["all"] += 1
            for part in self.parts.get(report.nodeid, ()):
                self.ran[part] += 1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        parts = ", ".join(f"{part} {n}" for part, n in sorted(self.ran.items()) if part != "all")
        skips = ", ".join(f"{kind} {n}" for kind, n in sorted(self.skipped.items())) or "none"
        terminalreporter.write_line(
            f"prefect-ds: {self.ran['all']} tests passed; against real parts: "
            f"{parts or 'none'}; skips allowed by {VARIABLE}="
            f"{','.join(sorted(self.allowed)) or '(unset)'}: {skips}"
        )
