"""Hostile template values are refused before anything is written or sent.

Every kind of value in :data:`VALUES` (the template suite's list plus more) is rendered
into a location template of every format, through ``PandasResultHandler`` (write, read,
exists, delete) and through a checkpointed task called inside a Prefect flow. Each must
raise ``UnsafeLocationError`` naming the field, the task body must not run, the target
directory must be left exactly as it was, and no SQL may reach a database: the SQL
templates also point at port 1, where no server listens, so a connection attempt would
fail differently; the real server's table list must not change either.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from reliability_support import Target, tally
from test_template import ACCEPTED, HOSTILE

from prefect_ds import PandasResultHandler, UnsafeLocationError, checkpoint

pytest_plugins = ["sql_fixtures"]

VALUES: dict[str, str] = {label: v for label, v in HOSTILE.items() if label not in ACCEPTED}
VALUES.update({
    "parent then name": "../x",
    "parent with suffix": "..parquet",
    "three dots": "...",
    "encoded slash": "a%2fb",
    "encoded nul": "%00",
    "shell variable": "$HOME",
    "command substitution": "$(id)",
    "backticks": "`id`",
    "pipe": "a|b",
    "ampersand": "a&b",
    "redirect": "a>b",
    "colon": "a:b",
    "http url": "http://evil.example/x",
    "unc path": "\\\\server\\share",
    "line separator": "a\u2028b",
    "byte order mark": "\ufeffa",
    "sql or-true": "x' OR '1'='1",
    "sql stacked": "t; DELETE FROM _prefect_ds_tables; --",
    "sql block comment": "t/**/x",
    "fragment into table": "db#other",
    "fullwidth letters": "\uff53\uff41\uff4c\uff45\uff53",
    "superscript digit": "x\u00b2",
    "bidi isolate": "a\u2066b",
    "very long unicode": "é" * 201,
})


def templates(target: Target) -> list[str]:
    """Where a value goes in this target's location: file name, table, database file."""
    if target.key == "sql-sqlite":
        return [f"{target.db_url}#t_{{v}}", f"sqlite:///{target.directory}/{{v}}.db#t"]
    if target.key == "sql-postgresql":
        return ["postgresql://u@127.0.0.1:1/db#t_{v}", "postgresql://u@127.0.0.1:1/db#{v}.t",
                f"{target.db_url}#t_{{v}}"]
    suffix = Path(target.location).suffix
    return [str(target.directory / f"{{v}}{suffix}"), str(target.directory / f"sub_{{v}}{suffix}")]


def snapshot(target: Target) -> Any:
    """Everything a hostile value could have touched: files, and PostgreSQL's tables."""
    root = target.directory.parent
    files = sorted((str(p), p.stat().st_size) for p in root.rglob("*"))
    tables: list[str] = []
    if target.key == "sql-postgresql":
        url = str(target.db_url).replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            tables = sorted(r[0] for r in conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables"))
    return files, tables


def test_hostile_values_through_the_handler(target: Target) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    target.fmt.write(df, target.location)  # an existing target beside them stays intact
    before = snapshot(target)
    tried = accepted = 0
    for template in templates(target):
        handler = PandasResultHandler(template, target.fmt.name)
        for label, value in VALUES.items():
            tried += 1
            for op in ("write", "read", "exists", "delete"):
                try:
                    with pytest.raises(UnsafeLocationError, match=r"\{v\}"):
                        if op == "write":
                            handler.write(df, v=value)
                        else:
                            getattr(handler, op)(v=value)
                except BaseException:
                    accepted += 1
                    raise AssertionError(f"{label!r} ({value!r}) got through {op} "
                                         f"of {template!r}") from None
    tally(target.key, hostile_inputs=tried, accepted=accepted)
    assert snapshot(target) == before
    pd.testing.assert_frame_equal(target.fmt.read(target.location), target.expect(df))


def test_hostile_values_through_a_checkpointed_task(target: Target,
                                                   prefect_harness: None) -> None:
    from prefect import flow, task

    before = snapshot(target)
    ran: list[str] = []
    template = templates(target)[0]

    @task(name=f"hostile-{uuid.uuid4().hex[:6]}")
    @checkpoint(template, target.fmt.name)
    def make(v: str) -> pd.DataFrame:
        ran.append(v)
        return pd.DataFrame({"a": [1]})

    @flow(name="hostile-values")
    def run(values: list[str]) -> list[Any]:
        futures = make.map(values)
        return [f.wait() or f.state for f in futures]

    values = list(VALUES.values())
    states = run(values)
    refused = [s for s in states if s.is_failed() and _raised(s, UnsafeLocationError)]
    tally(target.key, hostile_inputs=len(values), accepted=len(values) - len(refused))
    assert len(refused) == len(values), [s for s in states if s not in refused][:3]
    assert ran == []
    assert snapshot(target) == before


def _raised(state: Any, kind: type[BaseException]) -> bool:
    try:
        state.result()
    except kind as exc:
        return "{v}" in str(exc)
    except BaseException:
        return False
    return False
