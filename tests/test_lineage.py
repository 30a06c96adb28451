"""Asset lineage: checkpoint writes and loads as Prefect asset events, read back from a
real Prefect server through its events API."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
from support.events import asset_events

from prefect_ds import FileFormat, get_format
from prefect_ds._checkpoint.lineage import MATERIALIZED, REFERENCED, _active, asset_key, report

# -- asset keys ------------------------------------------------------------------------------


def test_asset_keys_are_valid_prefect_uris(tmp_path: Path) -> None:
    from prefect.assets import Asset

    parquet = get_format("parquet")
    assert isinstance(parquet, FileFormat)
    local = asset_key(parquet, str(tmp_path / "a b" / "x_EU.parquet"))
    assert local == f"file://{tmp_path}/a_b/x_EU.parquet"
    assert asset_key(parquet, "s3://bucket/data/x.parquet") == "s3://bucket/data/x.parquet"
    assert asset_key(get_format("hdf"), str(tmp_path / "f.h5#grp/key")).endswith("/f.h5/grp/key")
    sql = get_format("sql")
    assert asset_key(sql, "postgresql+psycopg://me:secret@db.example:5433/lab#features.sales") \
        == "postgresql://db.example:5433/lab/features.sales"
    assert asset_key(sql, f"sqlite:///{tmp_path}/r.db#t") == f"sqlite://{tmp_path}/r.db/t"
    for key in (local, asset_key(sql, "postgresql://u:p@h/db#t")):
        Asset(key=key)  # Prefect's own validation accepts it
        assert "secret" not in key and "#" not in key


def test_nothing_is_reported_outside_a_prefect_run(tmp_path: Path) -> None:
    assert _active() is False
    # No run, no event: report returns without touching Prefect's event machinery.
    report("materialized", get_format("parquet"), str(tmp_path / "x.parquet"),
           pd.DataFrame({"a": [1]}))


# -- events on a real server -------------------------------------------------------------------


def related(event: Any, role: str) -> list[str]:
    return [r.id for r in event.related if r.role == role]


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_run_reports_its_targets_as_assets(tmp_path: Path) -> None:
    from prefect import flow
    from prefect.context import FlowRunContext

    from prefect_ds import checkpoint_task

    raw_location = str(tmp_path / "raw_{region}.parquet")
    clean_location = f"sqlite:///{tmp_path / 'lab.db'}#clean_{{region}}"

    @checkpoint_task(raw_location, invalidate_on=("code",))
    def raw(region: str) -> pd.DataFrame:
        return pd.DataFrame({"region": [region] * 3, "v": [1.0, 2.0, 3.0]})

    @checkpoint_task(clean_location)
    def clean(region: str, df: pd.DataFrame) -> pd.DataFrame:
        return df[df["v"] > 1]

    @flow
    def pipeline(region: str) -> UUID:
        clean(region, raw(region))
        context = FlowRunContext.get()
        assert context is not None
        return context.flow_run.id

    first = pipeline("EU")
    raw_key = asset_key(get_format("parquet"), raw_location.format(region="EU"))
    clean_key = asset_key(get_format("sql"), clean_location.format(region="EU"))

    events = asset_events(first, expected=2)
    by_key = {e.resource.id: e for e in events if e.event == MATERIALIZED}
    assert set(by_key) == {raw_key, clean_key}
    raw_event, clean_event = by_key[raw_key], by_key[clean_key]
    # the lineage edge: the clean table was made from the raw file, by prefect-ds
    assert related(clean_event, "asset") == [raw_key]
    assert related(clean_event, "asset-materialized-by") == ["prefect-ds"]
    assert related(clean_event, "flow-run") == [f"prefect.flow-run.{first}"]
    assert len(related(clean_event, "task-run")) == 1
    assert raw_event.payload["rows"] == 3 and raw_event.payload["columns"] == 2
    assert raw_event.payload["format"] == "parquet"
    assert raw_event.payload["bytes"] == Path(raw_location.format(region="EU")).stat().st_size
    assert set(raw_event.payload["fingerprint"]) == {"code"}
    assert clean_event.payload["rows"] == 2 and clean_event.payload["format"] == "sql"

    second = pipeline("EU")  # everything exists now: two loads, no materialization
    events = asset_events(second, expected=2)
    assert sorted(e.event for e in events) == [REFERENCED, REFERENCED]
    assert {e.resource.id for e in events} == {raw_key, clean_key}
    assert all(e.resource.get("prefect.resource.name") for e in events)
