"""``prefect-ds ls --versions``, ``show --version``, ``diff`` and ``rm --keep`` on versioned
targets written by a real flow run (files) and by a handler (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from prefect_ds import PandasResultHandler, checkpoint
from prefect_ds._cli.app import app

runner = CliRunner()


def cli(*args: str, input: str | None = None, code: int = 0) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == code, result.output
    return result.output


def test_versions_commands_on_files(prefect_harness: None, tmp_path: Path) -> None:
    from prefect import flow, task

    template = str(tmp_path / "out_{r}.csv")

    @task(persist_result=False)
    @checkpoint(template, versioned=True, invalidate_on=("inputs",))
    def make(r: str, n: int) -> pd.DataFrame:
        if n == 1:
            return pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
        return pd.DataFrame({"a": [1.0, 2.0, 9.0], "c": [True, False, True]})

    @flow(flow_run_name="cli-{n}")
    def pipeline(n: int) -> None:
        make("eu", n)

    pipeline(1)
    pipeline(2)
    handler = PandasResultHandler(template, versioned=True)
    old, new = handler.versions(r="eu")
    records = [handler.version_record(v, r="eu") for v in (old, new)]

    assert "1 versioned target: add --versions" in cli("ls", template)
    latest = json.loads(cli("show", str(tmp_path / "out_eu.csv"), "--json"))
    assert latest["version"] == new and latest["rows"] == 3  # no --version: the latest
    out = cli("ls", template, "--versions")
    assert f"{new} (latest)" in out and old in out and "2 versions of 1 target" in out
    assert "cli-1" in out and "cli-2" in out and records[1]["task_run_id"] in out
    listed = json.loads(cli("ls", template, "--versions", "--json"))
    assert [v["version"] for v in listed[0]["versions"]] == [old, new]
    assert [v["flow_run_name"] for v in listed[0]["versions"]] == ["cli-1", "cli-2"]
    assert listed[0]["values"] == {"r": "eu"}

    shown = json.loads(cli("show", str(tmp_path / "out_eu.csv"), "--version", old, "--json"))
    assert shown["rows"] == 2 and shown["version"] == old and set(shown["dtypes"]) == {"a", "b"}
    assert "3 rows" in cli("show", str(tmp_path / "out_eu.csv"), "--version", new)

    found = json.loads(cli("diff", str(tmp_path / "out_eu.csv"), old, new, "--json"))
    assert found["rows"] == [2, 3]
    assert [c["column"] for c in found["added"]] == ["c"]
    assert [c["column"] for c in found["removed"]] == ["b"]
    assert found["retyped"] == [{"column": "a", "old": "int64", "new": "float64"}]
    (a,) = found["columns"]  # differential: pandas' own statistics of each version
    assert a["old"]["mean"] == pytest.approx(handler.read(version=old, r="eu")["a"].mean())
    assert a["new"]["std"] == pytest.approx(handler.read(r="eu")["a"].std())
    text = cli("diff", str(tmp_path / "out_eu.csv"), old, new)
    assert "rows: 2 -> 3 (+1)" in text and "added column 'c'" in text

    cli("diff", str(tmp_path / "out_eu.csv"), old, "20200101T000000.000000Z-000000", code=1)
    assert "keep at least 1" in cli("rm", template, "--keep", "0", "-y", code=1)
    assert "nothing removed" in cli("rm", template, "--keep", "1", input="n\n", code=1)
    assert handler.versions(r="eu") == [old, new]
    out = cli("rm", template, "--keep", "1", "-y")
    assert old in out and "removed 1 version" in out
    assert handler.versions(r="eu") == [new]
    assert "nothing removed" in cli("rm", template, "--keep", "1", "-y")
    assert "add --keep N" in cli("rm", template, "-y")  # rm alone deletes plain targets only
    assert handler.versions(r="eu") == [new]


def test_versions_commands_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    handler = PandasResultHandler(url + "#sales_{r}", versioned=True)
    for n in (1, 2, 3):
        handler.write(pd.DataFrame({"n": range(n)}), r="eu")
    handler.write(pd.DataFrame({"n": [1]}), r="us")
    ids = handler.versions(r="eu")
    out = cli("ls", url + "#sales_{r}", "--versions")
    assert "4 versions of 2 targets" in out and "__v" not in out
    assert "sales_eu" in out and "sales_us" in out
    assert "rows: 1 -> 3 (+2)" in cli("diff", url + "#sales_eu", ids[0], ids[2])
    cli("rm", url + "#sales_{r}", "--keep", "2", "-y")
    assert handler.versions(r="eu") == ids[1:] and len(handler.versions(r="us")) == 1
