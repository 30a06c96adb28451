"""The format registry: entry points, lazy loading, duplicates, overrides, resolution.

Anything that changes which plugins are installed runs in a fresh interpreter with a
real throwaway distribution on its path (see ``plugin_dists``), so the registry of this
test process is never touched.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from plugin_dists import run_python, venv_without, write_distribution

import prefect_ds
from prefect_ds import (
    UnknownFormatError,
    available_formats,
    get_format,
    resolve_format,
)
from prefect_ds._registry import current

SRC = Path(prefect_ds.__file__).resolve().parent

# A format module a third party might ship; {name}, {suffixes}, {schemes}, {override}
# are filled in per test.
FORMAT_MODULE = """
import prefect_ds
from prefect_ds.formats.parquet import ParquetFormat

class Plugged(ParquetFormat):
    name = {name!r}
    suffixes = {suffixes!r}
    schemes = {schemes!r}

@prefect_ds.hookimpl
def register_formats(register):
    register(Plugged(), override={override!r})
"""


def plugin_dist(
    root: Path,
    dist: str,
    *,
    name: str,
    suffixes: tuple[str, ...] = (),
    schemes: tuple[str, ...] = (),
    override: bool = False,
    entry_point: str | None = None,
    version: str = "1.0",
) -> Path:
    module = dist.replace("-", "_")
    source = FORMAT_MODULE.format(name=name, suffixes=suffixes, schemes=schemes,
                                  override=override)
    return write_distribution(root / dist, dist, version, {module: source},
                              {entry_point or name: module})


# --- what is installed in this environment -------------------------------------------

def test_importing_the_package_loads_no_plugin() -> None:
    out = run_python(
        """
        import json, sys
        import prefect_ds
        before = sorted(m for m in sys.modules
                        if m.startswith("prefect_ds.formats.") or m == "prefect_ds_feather")
        prefect_ds.available_formats()
        after = sorted(m for m in sys.modules
                       if m.startswith("prefect_ds.formats.") or m == "prefect_ds_feather")
        print(json.dumps([before, after]))
        """
    )
    before, after = json.loads(out.stdout)
    assert before == []
    assert "prefect_ds.formats.parquet" in after
    assert "prefect_ds_feather" in after


def test_plugins_load_once(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    counting = f"""
        import prefect_ds
        from prefect_ds.formats.parquet import ParquetFormat

        with open({str(log)!r}, "a") as f:
            f.write("import\\n")

        class Counted(ParquetFormat):
            name = "counted"
            suffixes = (".counted",)

        @prefect_ds.hookimpl
        def register_formats(register):
            with open({str(log)!r}, "a") as f:
                f.write("register\\n")
            register(Counted())
        """
    root = write_distribution(tmp_path / "d", "counting", "1.0", {"counting": counting},
                              {"counted": "counting"})
    run_python(
        """
        import prefect_ds
        for _ in range(3):
            prefect_ds.available_formats()
            prefect_ds.get_format("counted")
            prefect_ds.resolve_format("x.counted")
            prefect_ds.PandasResultHandler("x/{a}.counted")
        """,
        path=[root],
    )
    assert log.read_text().splitlines() == ["import", "register"]


def test_registry_is_built_once_in_process() -> None:
    assert current() is current()
    assert get_format("parquet") is get_format("parquet")


def test_unknown_format_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownFormatError) as caught:
        get_format("xlsx")
    message = str(caught.value)
    assert "'xlsx'" in message
    for name in available_formats():
        assert name in message
    assert isinstance(caught.value, LookupError)


def test_missing_dependency_names_the_extra_to_install(tmp_path: Path) -> None:
    """In an interpreter where h5py is really not installed, asking for hdf says what to do."""
    python = venv_without(tmp_path / "venv", "h5py")
    out = run_python(
        """
        import json, prefect_ds
        try:
            import h5py
        except ImportError:
            has_h5py = False
        else:
            has_h5py = True
        try:
            prefect_ds.get_format("hdf")
        except prefect_ds.UnknownFormatError as exc:
            message = str(exc)
        print(json.dumps([has_h5py, prefect_ds.available_formats(), message]))
        """,
        python=python,
    )
    has_h5py, names, message = json.loads(out.stdout)
    assert has_h5py is False
    assert "hdf" not in names and "parquet" in names
    assert "pip install 'prefect-ds[hdf]'" in message
    assert "parquet" in message
    if (SRC / "formats" / "hdf.py").exists():
        assert "h5py" in message


# --- duplicates and overrides ----------------------------------------------------------

def test_duplicate_name_names_both_distributions(tmp_path: Path) -> None:
    root = plugin_dist(tmp_path, "other-parquet", name="parquet", suffixes=(".opq",),
                       entry_point="opq", version="2.5")
    out = run_python(
        """
        import prefect_ds
        try:
            prefect_ds.get_format("parquet")
        except prefect_ds.DuplicateFormatError as exc:
            print(exc)
        """,
        path=[root],
    )
    message = out.stdout
    assert "'parquet'" in message
    assert f"prefect-ds {importlib.metadata.version('prefect-ds')}" in message
    assert "other-parquet 2.5" in message
    assert "override=True" in message


def test_override_true_replaces_a_builtin(tmp_path: Path) -> None:
    root = plugin_dist(tmp_path, "better-parquet", name="parquet", suffixes=(".parquet",),
                       override=True)
    out = run_python(
        """
        import json
        import prefect_ds
        from prefect_ds._registry import current
        fmt = prefect_ds.get_format("parquet")
        print(json.dumps([type(fmt).__module__, current().formats["parquet"].provider,
                          type(prefect_ds.resolve_format("a.parquet")).__module__,
                          prefect_ds.available_formats().count("parquet")]))
        """,
        path=[root],
    )
    assert json.loads(out.stdout) == ["better_parquet", "better-parquet 1.0", "better_parquet", 1]


def test_two_overrides_of_one_name_are_still_a_duplicate(tmp_path: Path) -> None:
    first = plugin_dist(tmp_path, "first-pq", name="parquet", override=True)
    second = plugin_dist(tmp_path, "second-pq", name="parquet", override=True)
    out = run_python(
        """
        import prefect_ds
        try:
            prefect_ds.available_formats()
        except prefect_ds.DuplicateFormatError as exc:
            print(exc)
        """,
        path=[first, second],
    )
    assert "first-pq 1.0" in out.stdout and "second-pq 1.0" in out.stdout


def test_entry_point_names_may_repeat_across_distributions(tmp_path: Path) -> None:
    """Two distributions may both call their entry point 'parquet'."""
    root = plugin_dist(tmp_path, "pq-two", name="parquet2", suffixes=(".pq2",),
                       entry_point="parquet")
    out = run_python(
        "import json, prefect_ds; print(json.dumps(prefect_ds.available_formats()))",
        path=[root],
    )
    names = json.loads(out.stdout)
    assert {"parquet", "parquet2"} <= set(names)


def test_registering_a_non_format_is_an_error_naming_the_plugin(tmp_path: Path) -> None:
    source = """
        import prefect_ds

        class NotAFormat:
            name = "fake"

        @prefect_ds.hookimpl
        def register_formats(register):
            register(NotAFormat())
        """
    root = write_distribution(tmp_path / "d", "not-a-format", "0.3", {"not_a_format": source},
                              {"fake": "not_a_format"})
    out = run_python(
        """
        import prefect_ds
        try:
            prefect_ds.available_formats()
        except TypeError as exc:
            print(exc)
        """,
        path=[root],
    )
    assert "not-a-format 0.3" in out.stdout
    assert "NotAFormat" in out.stdout
    assert "prefect_ds.Format" in out.stdout


def test_a_broken_plugin_does_not_hide_the_others(tmp_path: Path) -> None:
    source = "raise RuntimeError('this plugin is broken')\n"
    root = write_distribution(tmp_path / "d", "broken-plugin", "0.1", {"broken_plugin": source},
                              {"broken": "broken_plugin"})
    out = run_python(
        """
        import json, prefect_ds
        names = prefect_ds.available_formats()
        try:
            prefect_ds.get_format("broken")
        except prefect_ds.UnknownFormatError as exc:
            message = str(exc)
        print(json.dumps([names, message]))
        """,
        path=[root],
    )
    names, message = json.loads(out.stdout)
    assert "parquet" in names and "feather" in names
    assert "broken-plugin 0.1" in message
    assert "RuntimeError: this plugin is broken" in message


# --- resolution ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "location",
    [
        "a.parquet",
        "dir/a.pq",
        "/abs/A.PARQUET",
        "file:///tmp/a.parquet",
        "s3://bucket/key/a.parquet",
        "memory://x/a.parquet?version=3",
        "a.parquet#fragment",
    ],
)
def test_suffix_resolution(location: str) -> None:
    assert resolve_format(location) is get_format("parquet")


def test_explicit_format_wins_over_the_suffix() -> None:
    assert resolve_format("a.parquet", "feather") is get_format("feather")
    with pytest.raises(UnknownFormatError, match="'nope'"):
        resolve_format("a.parquet", "nope")


def test_no_match_says_how_to_name_the_format() -> None:
    with pytest.raises(UnknownFormatError) as caught:
        resolve_format("data/result.bin")
    message = str(caught.value)
    assert "'data/result.bin'" in message
    assert "format=" in message
    assert "parquet (.parquet .pq)" in message
    with pytest.raises(UnknownFormatError, match="format="):
        resolve_format("nosuchscheme://host/table")


def test_scheme_resolution_longest_suffix_and_ambiguity(tmp_path: Path) -> None:
    dists = [
        plugin_dist(tmp_path, "db-one", name="db1", schemes=("mydb", "shared")),
        plugin_dist(tmp_path, "db-two", name="db2", schemes=("shared",)),
        plugin_dist(tmp_path, "v2-parquet", name="v2parquet", suffixes=(".v2.parquet",)),
        plugin_dist(tmp_path, "alt-pq", name="altpq", suffixes=(".pq",)),
    ]
    out = run_python(
        """
        import json, prefect_ds
        from prefect_ds import resolve_format
        result = {}
        for location in ["mydb://host/db#table", "mydb+driver://u@h/db", "MYDB://h/db",
                         "x.v2.parquet", "x.parquet", "x.pq", "shared://h/db"]:
            try:
                result[location] = resolve_format(location).name
            except prefect_ds.UnknownFormatError as exc:
                result[location] = "error: " + str(exc)
        print(json.dumps(result))
        """,
        path=dists,
    )
    result = json.loads(out.stdout)
    assert result["mydb://host/db#table"] == "db1"
    assert result["mydb+driver://u@h/db"] == "db1"
    assert result["MYDB://h/db"] == "db1"
    assert result["x.v2.parquet"] == "v2parquet"
    assert result["x.parquet"] == "parquet"
    assert result["x.pq"].startswith("error: ")
    assert "altpq, parquet" in result["x.pq"] and "format=" in result["x.pq"]
    assert result["shared://h/db"].startswith("error: ")
    assert "db1, db2" in result["shared://h/db"] and "format=" in result["shared://h/db"]


def test_sql_dialect_urls_resolve_to_sql() -> None:
    if "sql" not in available_formats():
        pytest.skip("the sql format is not installed in this environment")
    for location in ("sqlite:///db.sqlite#table", "postgresql+psycopg://u@h/db#t"):
        assert resolve_format(location) is get_format("sql")


def test_resolution_errors_hide_url_passwords() -> None:
    with pytest.raises(UnknownFormatError) as caught:
        resolve_format("nosuchdb://analyst:topsecret@db.example:5432/lab#sales")
    assert "topsecret" not in str(caught.value)
    assert "nosuchdb://analyst:***@db.example:5432/lab#sales" in str(caught.value)
