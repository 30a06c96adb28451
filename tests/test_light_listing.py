"""Listing and resolving formats imports none of the heavy libraries; a read or write does.

``prefect-ds formats``, ``available_formats()`` and ``resolve_format`` import every format
module but need only names, suffixes and schemes, so they must leave pandas, pyarrow,
numpy, h5py, SQLAlchemy and polars unimported (the timing lives in benchmarks/cli.py).

Each probe is a fresh interpreter of this environment, the feather plugin (a third-party
package, which imports pyarrow in its methods) included. SQLAlchemy, imported on first
use, must still be named as the ``[sql]`` extra when it is missing (as h5py is for
``[hdf]``, in test_registry).
"""

from __future__ import annotations

import json
from pathlib import Path

from plugin_dists import run_python, venv_without

HEAVY = ("pandas", "pyarrow", "numpy", "h5py", "sqlalchemy", "polars")
BUILT_IN = {"csv", "dataset", "hdf", "parquet", "sql"}
INSTALLED = {*BUILT_IN, "feather"}

CLI = """
import json, sys
sys.argv = ["prefect-ds", *sys.argv[1:]]
from prefect_ds._cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""

API = """
import json, sys
import prefect_ds
names = prefect_ds.available_formats()
found = {{loc: prefect_ds.resolve_format(loc).name
         for loc in ("x.parquet", "x.csv", "x.h5", "sqlite:///x.db#t", "dir/")}}
heavy = [m for m in {heavy!r} if m in sys.modules]

# The first write and read import what that format needs, and work.
import pandas as pd
fmt = prefect_ds.resolve_format(sys.argv[1])
fmt.write(pd.DataFrame({{"a": [1, 2]}}), sys.argv[1])
back = fmt.read(sys.argv[1])
print(json.dumps({{"names": names, "found": found, "heavy": heavy,
                  "after": [m for m in ("pyarrow",) if m in sys.modules],
                  "back": back["a"].tolist()}}))
"""


def _probe(code: str, *args: str) -> tuple[dict[str, object], str]:
    done = run_python(code.format(heavy=HEAVY), args=args)
    *printed, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(printed)


def test_formats_command_imports_no_heavy_library() -> None:
    result, printed = _probe(CLI, "formats")
    assert result == {"code": 0, "heavy": []}, (result, printed)
    listed = {line.split()[0] for line in printed.splitlines()[1:] if line.strip()}
    assert listed >= INSTALLED, printed


def test_formats_json_imports_no_heavy_library() -> None:
    result, printed = _probe(CLI, "formats", "--json")
    assert result == {"code": 0, "heavy": []}, (result, printed)
    document = json.loads(printed)
    assert {f["name"] for f in document["formats"]} >= INSTALLED
    assert document["unavailable"] == []  # every built-in loaded, none was only declared


def test_listing_and_resolving_import_none_and_first_use_imports_what_it_needs(
    tmp_path: Path,
) -> None:
    result, printed = _probe(API, str(tmp_path / "frame.parquet"))
    assert result["heavy"] == [], (result, printed)
    assert set(result["names"]) >= INSTALLED  # type: ignore[arg-type]
    assert result["found"] == {"x.parquet": "parquet", "x.csv": "csv", "x.h5": "hdf",
                               "sqlite:///x.db#t": "sql", "dir/": "dataset"}
    assert result["after"] == ["pyarrow"]
    assert result["back"] == [1, 2]


def test_without_sqlalchemy_a_database_url_still_names_the_extra(tmp_path: Path) -> None:
    """SQLAlchemy loads on first use now, so its absence is found at registration."""
    python = venv_without(tmp_path / "venv", "sqlalchemy")
    done = run_python(
        """
        import json, sys
        import prefect_ds
        try:
            import sqlalchemy
        except ImportError:
            installed = False
        else:
            installed = True
        try:
            prefect_ds.resolve_format("sqlite:///results.db#sales")
        except prefect_ds.UnknownFormatError as exc:
            message = str(exc)
        print(json.dumps([installed, prefect_ds.available_formats(), message]))
        """,
        python=python,
    )
    installed, names, message = json.loads(done.stdout)
    assert installed is False
    assert "sql" not in names and "parquet" in names
    assert "pip install 'prefect-ds[sql]'" in message and "sqlalchemy" in message, message
