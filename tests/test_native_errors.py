"""A location whose library is missing names the extra to install.

Each case runs in an interpreter where the library is really not installed (a virtual
environment linking this one's packages except those), as ``test_registry`` does for h5py.
"""

from __future__ import annotations

import json
from pathlib import Path

from plugin_dists import run_python, venv_without

PROBE = """
    import importlib.util, json, prefect_ds
    import pandas as pd
    missing = [m for m in {modules!r} if importlib.util.find_spec(m) is not None]
    results = {{}}
    for label, action in {actions!r}.items():
        try:
            exec(action)
        except Exception as exc:
            results[label] = [type(exc).__name__, str(exc),
                              isinstance(exc, prefect_ds.PrefectDSError),
                              isinstance(exc, ImportError)]
        else:
            results[label] = None
    print(json.dumps([missing, results]))
"""


def probe(python: Path, modules: tuple[str, ...], actions: dict[str, str]) -> dict[str, list]:
    out = run_python(PROBE.format(modules=modules, actions=actions), python=python)
    installed, results = json.loads(out.stdout.strip().splitlines()[-1])
    assert installed == [], f"{installed} should not be importable in the probe"
    return results  # type: ignore[no-any-return]


def test_s3_without_s3fs_names_the_extra(tmp_path: Path) -> None:
    python = venv_without(tmp_path / "venv", "s3fs")
    results = probe(python, ("s3fs",), {
        "handler": "prefect_ds.PandasResultHandler('s3://bucket/{x}.parquet')",
        "checkpoint": "prefect_ds.checkpoint('s3://bucket/{x}.csv')",
        "format": "prefect_ds.get_format('parquet').read('s3://bucket/a.parquet')",
        "local_still_works": "prefect_ds.PandasResultHandler('/tmp/{x}.parquet')",
    })
    assert results["local_still_works"] is None
    for label in ("handler", "checkpoint", "format"):
        name, message, ours, import_error = results[label]
        assert name == "MissingDependencyError", (label, message)
        assert ours and import_error
        assert message == ("a s3:// location needs s3fs, which is not installed. Install "
                           "it with: pip install 'prefect-ds[s3]'"), label


def test_other_fsspec_schemes_name_the_package_they_need(tmp_path: Path) -> None:
    """A scheme prefect-ds has no extra for names the package fsspec's registry gives
    (gcsfs), or the module fsspec's own filesystem needs (paramiko for sftp://)."""
    python = venv_without(tmp_path / "venv", "gcsfs", "paramiko")
    results = probe(python, ("gcsfs", "paramiko"), {
        "gs": "prefect_ds.PandasResultHandler('gs://bucket/{x}.parquet')",
        "sftp": "prefect_ds.get_format('csv').read('sftp://host/a.csv')",
    })
    for label, package in (("gs", "gcsfs"), ("sftp", "paramiko")):
        name, message, ours, import_error = results[label]
        assert name == "MissingDependencyError", (label, message)
        assert ours and import_error
        assert message.endswith(f"needs {package}, which is not installed. Install it with: "
                                f"pip install {package}"), message


def test_postgresql_without_a_driver_names_the_extra(tmp_path: Path) -> None:
    blocked = ("psycopg", "psycopg_binary", "psycopg2", "adbc_driver_postgresql",
               "asyncpg", "pg8000")
    python = venv_without(tmp_path / "venv", *blocked)
    frame = "pd.DataFrame({'a': [1]})"
    results = probe(python, ("psycopg", "psycopg2", "adbc_driver_postgresql"), {
        url: f"prefect_ds.PandasResultHandler('{url}#t').write({frame})"
        for url in ("postgresql+psycopg://u:secret-pw@127.0.0.1:1/db",
                    "postgresql://u:secret-pw@127.0.0.1:1/db")
    })
    for url, result in results.items():
        assert result is not None, url
        name, message, ours, _ = result
        assert name == "MissingDependencyError", (url, message)
        assert ours
        assert "pip install 'prefect-ds[postgres]'" in message
        assert "secret-pw" not in message


def test_sqlite_needs_no_extra(tmp_path: Path) -> None:
    """SQLAlchemy comes with Prefect, so SQLite works without [sql] (ADBC absent)."""
    python = venv_without(tmp_path / "venv", "adbc_driver_sqlite", "adbc_driver_manager")
    db = tmp_path / "x.db"
    results = probe(python, ("adbc_driver_sqlite",), {
        "roundtrip": (
            f"h = prefect_ds.PandasResultHandler('sqlite:///{db}#t_{{n}}'); "
            f"h.write(pd.DataFrame({{'a': [1, 2]}}), n=1); "
            f"assert h.read(n=1)['a'].tolist() == [1, 2]"
        ),
    })
    assert results["roundtrip"] is None
