"""The third-party proof: plugins/prefect-ds-feather, installed as an outsider installs it."""

from __future__ import annotations

import importlib.metadata
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.testing import assert_frame_equal

import prefect_ds
from prefect_ds import PandasResultHandler, available_formats, get_format, resolve_format
from prefect_ds._registry import current

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "prefect-ds-feather"


def frame(rows: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": pd.array([None if i % 4 == 0 else i for i in range(rows)], "Int64"),
            "when": pd.date_range("2025-10-26", periods=rows, freq="h", tz="Europe/Berlin"),
            "label": pd.Categorical([f"c{i % 3}" for i in range(rows)]),
            "text": pd.array([f"t{i}" for i in range(rows)], "string"),
        }
    )
    df.index.name = "i"
    return df


def test_the_plugin_is_a_regular_installed_distribution() -> None:
    """The suite runs against the installed wheel, not the source tree or an editable link."""
    import prefect_ds_feather

    dist = importlib.metadata.distribution("prefect-ds-feather")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    assert not direct_url.get("dir_info", {}).get("editable", False)
    installed_at = Path(prefect_ds_feather.__file__).resolve()
    assert "site-packages" in installed_at.parts
    assert PLUGIN_DIR not in installed_at.parents
    entry_points = {ep.name: ep.value for ep in dist.entry_points if ep.group == "prefect_ds"}
    assert entry_points == {"feather": "prefect_ds_feather"}


def test_listed_by_available_formats() -> None:
    names = available_formats()
    assert "feather" in names
    assert "parquet" in names
    assert names == sorted(names)


def test_resolved_by_suffix_and_by_name() -> None:
    fmt = get_format("feather")
    assert type(fmt).__module__ == "prefect_ds_feather"
    assert fmt.suffixes == (".feather", ".arrow")
    for location in ("out/a.feather", "s3://bucket/key/a.ARROW", "file:///tmp/a.feather"):
        assert resolve_format(location) is fmt
    assert resolve_format("out/a.data", format="feather") is fmt


def test_round_trip_through_the_handler(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{region}" / "result.feather"))
    assert handler.format is get_format("feather")
    df = frame()
    location = handler.write(df, region="north")
    assert location == str(tmp_path / "north" / "result.feather")
    assert handler.exists(region="north")
    assert not handler.exists(region="south")
    assert_frame_equal(handler.read(region="north"), df, check_exact=True)
    handler.delete(region="north")
    assert not handler.exists(region="north")


def test_round_trip_on_memory_filesystem() -> None:
    fmt = get_format("feather")
    location = f"memory://plugins-{uuid.uuid4().hex}/frame.arrow"
    df = frame(5)
    fmt.write(df, location)
    assert_frame_equal(fmt.read(location), df, check_exact=True)


def test_provider_is_the_distribution_name_and_version() -> None:
    version = importlib.metadata.version("prefect-ds-feather")
    assert current().formats["feather"].provider == f"prefect-ds-feather {version}"
    core = importlib.metadata.version("prefect-ds")
    assert current().formats["parquet"].provider == f"prefect-ds {core}"


def test_the_plugin_needs_only_the_public_api() -> None:
    """A third party imports nothing private from prefect_ds."""
    source = (PLUGIN_DIR / "src" / "prefect_ds_feather" / "__init__.py").read_text()
    assert "prefect_ds._" not in source
    assert "from prefect_ds._" not in source
    for name in ("FileFormat", "staged", "open_for_read", "hookimpl"):
        assert name in prefect_ds.__all__


def test_contributing_example_is_a_working_format(tmp_path: Path) -> None:
    """CONTRIBUTING.md's shortened plugin round-trips exactly, like the real one."""
    text = (Path(__file__).resolve().parent.parent / "CONTRIBUTING.md").read_text()
    start = text.index("```python", text.index("**2. The format.**"))
    source = text[start + len("```python"):text.index("```", start + 3)]
    namespace: dict[str, object] = {}
    exec(compile(source, "CONTRIBUTING.md", "exec"), namespace)
    fmt = namespace["FeatherFormat"]()  # type: ignore[operator]
    df = pd.DataFrame({
        "x": [1.5, None, 3.0], "n": pd.array([1, None, 3], dtype="Int64"),
        "s": pd.array(["a", None, "ü"], dtype="str"),
        "t": pd.to_datetime(["2024-01-01", None, "2024-03-01"]).tz_localize("UTC"),
    }, index=pd.Index([10, 20, 30], name="id"))
    location = str(tmp_path / "x.feather")
    fmt.write(df, location)
    assert_frame_equal(fmt.read(location), df)
    assert fmt.exists(location)
