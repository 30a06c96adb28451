"""The ``prefect-ds`` console script: ``formats`` and ``show``."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plugin_dists import run_python, venv_without, write_distribution
from typer.testing import CliRunner

from prefect_ds import available_formats, get_format
from prefect_ds._cli.app import app

runner = CliRunner()
SCRIPT = Path(sys.executable).parent / "prefect-ds"
CORE = f"prefect-ds {importlib.metadata.version('prefect-ds')}"
FEATHER = f"prefect-ds-feather {importlib.metadata.version('prefect-ds-feather')}"


def frame(rows: int = 12) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "amount": np.linspace(0.5, 6, rows),
            "units": pd.array(range(rows), dtype="Int64"),
            "region": pd.Categorical([["north", "south"][i % 2] for i in range(rows)]),
            "day": pd.date_range("2024-05-01", periods=rows, freq="D"),
        }
    )
    df.index = pd.Index([f"id{i:03d}" for i in range(rows)], name="order_id")
    return df


def test_the_console_script_is_installed_and_helps() -> None:
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True,
                            timeout=120, check=True)
    assert "formats" in result.stdout and "show" in result.stdout
    version = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True,
                             timeout=120, check=True)
    assert version.stdout.strip() == CORE


def test_no_command_shows_usage() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "formats" in result.output


def test_formats_lists_suffixes_schemes_and_providers() -> None:
    result = runner.invoke(app, ["formats"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    for name in available_formats():
        fmt = get_format(name)
        line = lines[name]
        for suffix in fmt.suffixes:
            assert suffix in line.split()
        for scheme in fmt.schemes:
            assert f"{scheme}://" in line.split()
    assert lines["parquet"].endswith(CORE)
    assert lines["feather"].endswith(FEATHER)
    assert ".feather .arrow" in lines["feather"]


def test_formats_lists_what_is_missing_and_the_extra_to_install(tmp_path: Path) -> None:
    python = venv_without(tmp_path / "venv", "h5py")
    broken = write_distribution(tmp_path / "d", "broken-plugin", "0.2",
                                {"broken_plugin": "import no_such_module_here\n"},
                                {"broken": "broken_plugin"})
    out = run_python("from prefect_ds._cli import main; main()", python=python,
                     path=[broken], args=["formats"])
    available, _, missing = out.stdout.partition("Not available:")
    assert "parquet" in available and "hdf" not in available
    rows = {line.split()[0]: line for line in missing.splitlines()[2:] if line.strip()}
    assert "pip install 'prefect-ds[hdf]'" in rows["hdf"]
    assert "h5py" in rows["hdf"]
    assert "broken-plugin 0.2" in rows["broken"]
    assert "no_such_module_here" in rows["broken"]


def test_show_prints_shape_dtypes_and_first_rows(tmp_path: Path) -> None:
    location = str(tmp_path / "orders.parquet")
    get_format("parquet").write(frame(), location)
    result = runner.invoke(app, ["show", location, "--rows", "3"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{location}  (format parquet)" in out
    assert "shape: 12 rows x 4 columns" in out
    assert "index: order_id" in out
    for column, dtype in [("amount", "float64"), ("units", "Int64"), ("region", "category"),
                          ("day", "datetime64")]:
        assert any(line.split()[:1] == [column] and dtype in line for line in out.splitlines())
    assert "first 3 rows:" in out
    assert "id002" in out and "id003" not in out


def test_show_rows_zero_prints_no_rows(tmp_path: Path) -> None:
    location = str(tmp_path / "orders.parquet")
    get_format("parquet").write(frame(), location)
    result = runner.invoke(app, ["show", location, "-n", "0"])
    assert result.exit_code == 0
    assert "first" not in result.stdout and "id000" not in result.stdout
    assert runner.invoke(app, ["show", location, "--rows", "-1"]).exit_code == 2


@pytest.mark.parametrize("name", ["csv", "hdf", "feather", "parquet"])
def test_show_each_file_format(tmp_path: Path, name: str) -> None:
    if name not in available_formats():
        pytest.skip(f"format {name!r} is not installed")
    fmt = get_format(name)
    location = str(tmp_path / f"orders{fmt.suffixes[0]}")
    fmt.write(frame(4), location)
    result = runner.invoke(app, ["show", location])
    assert result.exit_code == 0, result.output
    assert f"(format {name})" in result.stdout
    assert "shape: 4 rows x 4 columns" in result.stdout
    assert "first 4 rows:" in result.stdout


def test_show_hdf_key_and_memory_locations() -> None:
    if "hdf" not in available_formats():
        pytest.skip("format 'hdf' is not installed")
    location = f"memory://cli-{uuid.uuid4().hex}/store.h5#runs/first"
    get_format("hdf").write(frame(2), location)
    result = runner.invoke(app, ["show", location])
    assert result.exit_code == 0, result.output
    assert "shape: 2 rows x 4 columns" in result.stdout


def test_show_with_an_explicit_format(tmp_path: Path) -> None:
    location = str(tmp_path / "orders.bin")
    get_format("feather").write(frame(3), location)
    result = runner.invoke(app, ["show", location, "--format", "feather"])
    assert result.exit_code == 0, result.output
    assert "(format feather)" in result.stdout
    unknown = runner.invoke(app, ["show", location])
    assert unknown.exit_code == 1
    assert "--format NAME" in unknown.stderr
    assert "Traceback" not in unknown.output


def test_show_reports_missing_and_unreadable_results(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["show", str(tmp_path / "absent.parquet")])
    assert missing.exit_code == 1
    assert "nothing is stored" in missing.stderr
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not a parquet file at all")
    unreadable = runner.invoke(app, ["show", str(garbage)])
    assert unreadable.exit_code == 1
    assert unreadable.stderr.startswith("error: ")
    nope = runner.invoke(app, ["show", str(garbage), "--format", "nope"])
    assert nope.exit_code == 1
    assert "'nope'" in nope.stderr and "parquet" in nope.stderr


def test_show_never_prints_a_password() -> None:
    if "sql" not in available_formats():
        pytest.skip("format 'sql' is not installed")
    location = "postgresql://analyst:topsecret@127.0.0.1:9/lab#sales"  # nothing listens on 9
    result = runner.invoke(app, ["show", location])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "topsecret" not in result.output
    assert "Traceback" not in result.output


def test_formats_reports_a_duplicate_registration(tmp_path: Path) -> None:
    source = """
        import prefect_ds
        from prefect_ds.formats.parquet import ParquetFormat

        @prefect_ds.hookimpl
        def register_formats(register):
            register(ParquetFormat())
        """
    root = write_distribution(tmp_path / "d", "copycat", "3.0", {"copycat": source},
                              {"copy": "copycat"})
    out = run_python("from prefect_ds._cli import main; main()", path=[root], args=["formats"],
                     check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ")
    assert "copycat 3.0" in out.stderr and CORE in out.stderr
    assert "Traceback" not in out.stderr
