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
    for command in (["show", location], ["ls", location.replace("sales", "s*")],
                    ["rm", "--yes", location]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, command
        assert result.stderr.startswith("error: ")
        assert "topsecret" not in result.output
        assert "Traceback" not in result.output
        # the database it could not reach, not a table an earlier command named (the
        # connection pool is per database) nor a listing's placeholder
        assert "cannot connect to postgresql://analyst:***@127.0.0.1:9/lab:" in result.stderr


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


# -- small things users expect ----------------------------------------------------------------


def test_help_starts_without_pandas_or_pyarrow() -> None:
    """``--help`` loads typer and nothing heavy (the timing lives in benchmarks/cli.py)."""
    probe = (
        "import sys\n"
        "sys.argv = ['prefect-ds', '--help']\n"
        "from prefect_ds._cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'numpy', 'prefect', 'rich', 'sqlalchemy')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "Usage" in done.stdout and "formats" in done.stdout
    assert "HEAVY []" in done.stdout, done.stdout


def test_import_prefect_ds_is_light_and_names_load_on_use() -> None:
    probe = (
        "import sys, prefect_ds\n"
        "assert 'pandas' not in sys.modules, 'pandas'\n"
        "assert prefect_ds.__version__\n"
        "from prefect_ds import checkpoint, FileFormat, TemplateError\n"
        "assert FileFormat.__module__ == 'prefect_ds', FileFormat.__module__\n"
        "assert TemplateError.__module__ == 'prefect_ds'\n"
        "assert set(dir(prefect_ds)) >= set(prefect_ds.__all__)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_formats_json() -> None:
    import json

    result = runner.invoke(app, ["formats", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    by_name = {f["name"]: f for f in doc["formats"]}
    assert set(by_name) == set(available_formats())
    assert by_name["parquet"]["suffixes"] == list(get_format("parquet").suffixes)
    assert by_name["parquet"]["provider"] == CORE
    assert "postgresql" in by_name["sql"]["schemes"]
    assert isinstance(doc["unavailable"], list)


def test_show_json(tmp_path: Path) -> None:
    import json

    location = str(tmp_path / "orders.parquet")
    get_format("parquet").write(frame(), location)
    result = runner.invoke(app, ["show", location, "--json", "-n", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["location"] == location and doc["format"] == "parquet"
    assert (doc["rows"], doc["columns"]) == (12, 4)
    assert list(doc["dtypes"]) == ["amount", "units", "region", "day"]
    assert doc["dtypes"]["units"] == "Int64" and doc["dtypes"]["region"] == "category"
    assert doc["index"]["names"] == ["order_id"]
    assert doc["head"]["index"] == ["id000", "id001"]
    assert len(doc["head"]["data"]) == 2


def test_plurals(tmp_path: Path) -> None:
    location = str(tmp_path / "one.parquet")
    get_format("parquet").write(frame(1).iloc[:, :1], location)
    out = runner.invoke(app, ["show", location]).stdout
    assert "shape: 1 row x 1 column" in out and "first row:" in out


def test_show_lists_the_keys_of_one_hdf_file_and_opens_each(tmp_path: Path) -> None:
    if "hdf" not in available_formats():
        pytest.skip("format 'hdf' is not installed")
    import json

    hdf = get_format("hdf")
    for region in ("EU", "US", "item_10", "item_2"):
        hdf.write(frame(2), str(tmp_path / f"clean.h5#sales/{region}"))
    result = runner.invoke(app, ["show", str(tmp_path / "clean.h5")])
    assert result.exit_code == 0, result.output
    assert "holds 4 stored results" in result.stdout
    keys = [line.strip().rpartition("#")[2] for line in result.stdout.splitlines()[1:]]
    assert keys == ["sales/EU", "sales/US", "sales/item_2", "sales/item_10"]
    doc = json.loads(runner.invoke(app, ["show", str(tmp_path / "clean.h5"), "--json"]).stdout)
    assert doc["keys"] == keys
    opened = runner.invoke(app, ["show", str(tmp_path / "clean.h5#sales/item_2")])
    assert opened.exit_code == 0 and "shape: 2 rows x 4 columns" in opened.stdout
    listed = runner.invoke(app, ["ls", str(tmp_path / "clean.h5#sales/{region}")])
    assert listed.exit_code == 0, listed.output
    assert "4 targets" in listed.stdout


def test_show_says_what_a_partitioned_parquet_directory_is(tmp_path: Path) -> None:
    directory = tmp_path / "sales.parquet"
    frame(6).reset_index().to_parquet(directory, partition_cols=["region"])
    result = runner.invoke(app, ["show", str(directory)])
    assert result.exit_code == 1
    assert "nothing is stored" not in result.stderr
    assert "is a directory of 2 files" in result.stderr and "partitioned" in result.stderr
    assert "prefect-ds show " in result.stderr
    undecided = runner.invoke(app, ["show", str(tmp_path)])
    assert "is a directory of" in undecided.stderr
