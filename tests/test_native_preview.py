"""Preview artifacts of checkpoint writes, read back from a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

from prefect_ds import checkpoint, checkpoint_task, get_format
from prefect_ds._checkpoint import preview as _preview


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "i": np.arange(n, dtype="int64"),
        "x": np.linspace(0, 1, n),
        "s": pd.array([f"s{k}" for k in range(n)], dtype="string"),
        "t": pd.date_range("2024-01-01", periods=n, freq="D"),
    })


def artifacts_of(task_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterTaskRunId

    with get_client(sync_client=True) as client:
        return list(client.read_artifacts(
            artifact_filter=ArtifactFilter(task_run_id=ArtifactFilterTaskRunId(any_=[task_run_id]))
        ))


def rows_of(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[no-any-return]


def test_preview_is_published_on_write_only_when_asked(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    monkeypatch.delenv(_preview.ENV, raising=False)

    @checkpoint_task(str(tmp_path / "on_{n}.parquet"), preview=True)
    def shown(n: int) -> pd.DataFrame:
        return frame(n)

    @checkpoint_task(str(tmp_path / "off_{n}.parquet"))
    def quiet(n: int) -> pd.DataFrame:
        return frame(n)

    @checkpoint_task(str(tmp_path / "never_{n}.parquet"), preview=False)
    def never(n: int) -> pd.DataFrame:
        return frame(n)

    @flow
    def pipeline() -> dict[str, Any]:
        return {name: t(25, return_state=True) for name, t in
                (("shown", shown), ("quiet", quiet), ("never", never))}

    states = pipeline()
    found = artifacts_of(states["shown"].state_details.task_run_id)
    assert len(found) == 1
    artifact = found[0]
    assert artifact.type == "table"
    assert artifact.key == _preview.artifact_key(str(tmp_path / "on_25.parquet"))
    rows = rows_of(artifact)
    assert len(rows) == _preview.ROWS
    assert rows[0] == {"i": 0, "x": 0.0, "s": "s0", "t": "2024-01-01 00:00:00"}
    assert rows[9]["i"] == 9
    text = artifact.description
    assert str(tmp_path / "on_25.parquet") in text
    assert "25 rows, 4 columns" in text
    size = (tmp_path / "on_25.parquet").stat().st_size
    assert f"{size:,} B" in text
    for column, dtype in frame(1).dtypes.items():
        assert f"| {column} | {dtype} |" in text
    assert artifacts_of(states["quiet"].state_details.task_run_id) == []
    assert artifacts_of(states["never"].state_details.task_run_id) == []

    # a hit writes nothing, so it publishes nothing
    again = pipeline()
    assert again["shown"].name == "Cached"
    assert artifacts_of(again["shown"].state_details.task_run_id) == []

    # the environment variable turns previews on for every checkpoint that does not say no
    monkeypatch.setenv(_preview.ENV, "true")
    for target in tmp_path.glob("*.parquet"):
        target.unlink()
    states = pipeline()
    assert len(artifacts_of(states["quiet"].state_details.task_run_id)) == 1
    assert len(artifacts_of(states["shown"].state_details.task_run_id)) == 1
    assert artifacts_of(states["never"].state_details.task_run_id) == []


def test_preview_of_an_indexed_frame_with_missing_values(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect import flow, task

    df = pd.DataFrame(
        {"v": [1.5, np.nan, np.inf], "o": ["a", None, "c" * 500]},
        index=pd.Index(["r1", "r2", "r3"], name="key"),
    )

    @task(persist_result=False)
    @checkpoint(str(tmp_path / "indexed.parquet"), preview=True)
    def build() -> pd.DataFrame:
        return df

    @flow
    def pipeline() -> Any:
        return build(return_state=True)

    state = pipeline()
    (artifact,) = artifacts_of(state.state_details.task_run_id)
    rows = rows_of(artifact)
    assert [r["key"] for r in rows] == ["r1", "r2", "r3"]
    assert rows[1]["v"] is None and rows[1]["o"] is None
    assert rows[2]["v"] == "inf"
    assert len(rows[2]["o"]) == 200
    assert f"| key (index) | {df.index.dtype} |" in artifact.description


def test_password_never_reaches_the_preview() -> None:
    location = "postgresql+psycopg://lab:s3cret-pw@db.example:5432/lab#features"
    text = _preview.description(frame(3), location, get_format("sql"), None)
    assert "s3cret-pw" not in text
    assert "postgresql+psycopg://lab:***@db.example:5432/lab#features" in text
    assert "stored unknown" in text
    key = _preview.artifact_key(location)
    assert "s3cret" not in key
    assert key.startswith("prefect-ds-postgresql-psycopg-lab")


def test_artifact_keys_are_what_prefect_accepts() -> None:
    import re

    for location in ("/tmp/A B/x.parquet", "s3://b/" + "long/" * 60 + "x.csv", "x.h5#a/b"):
        key = _preview.artifact_key(location)
        assert re.fullmatch(r"[a-z0-9-]+", key), key
        assert len(key) <= 100
    assert _preview.artifact_key("a" * 300 + "1") != _preview.artifact_key("a" * 300 + "2")
