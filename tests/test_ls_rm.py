"""The target browser: list a template's stored targets with their argument values parsed
back, and delete a slice of them (local files, fsspec URLs, SQL tables)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_ds import get_format
from prefect_ds._checkpoint.fingerprint import METADATA_KEY, Fingerprint
from prefect_ds._cli import listing as _browse
from prefect_ds._errors import TemplateError


def populate(fmt_name: str, template: str, fingerprinted: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    fmt = get_format(fmt_name)
    for region in ("EU", "US", "APAC"):
        for year in (2023, 2024):
            location = template.format(region=region, year=year)
            df = pd.DataFrame({"v": range(year - 2020)})
            if region in fingerprinted:
                record = Fingerprint({"code": "c" * 32}).encode()
                fmt.write(df, location, metadata={METADATA_KEY: record})
            else:
                fmt.write(df, location)


def test_ls_parses_values_back_and_reports_cheap_facts(tmp_path: Path) -> None:
    template = str(tmp_path / "data" / "{region}_{year}.parquet")
    populate("parquet", template, fingerprinted={"EU"})
    (tmp_path / "data" / "notes.txt").write_text("not a target")
    (tmp_path / "data" / ".EU_2023.parquet.0000aa000000.prefect-ds-tmp").write_text("partial")
    targets = _browse.find_targets(get_format("parquet"), template)
    assert sorted((t.values["region"], t.values["year"]) for t in targets) == [
        ("APAC", "2023"), ("APAC", "2024"), ("EU", "2023"), ("EU", "2024"),
        ("US", "2023"), ("US", "2024"),
    ]
    eu = next(t for t in targets if t.values == {"region": "EU", "year": "2024"})
    assert eu.info.rows == 4
    assert eu.info.bytes == os.path.getsize(template.format(region="EU", year=2024))
    assert eu.info.modified is not None
    assert eu.fingerprint is not None and set(eu.fingerprint.parts) == {"code"}
    us = next(t for t in targets if t.values["region"] == "US")
    assert us.fingerprint is None


def test_values_with_separators_of_the_template(tmp_path: Path) -> None:
    template = str(tmp_path / "{a}_{b}.parquet")
    get_format("parquet").write(pd.DataFrame({"v": [1]}), template.format(a="x", b="y_z"))
    (found,) = _browse.find_targets(get_format("parquet"), template)
    # "x_y_z" splits at the first "_": the parse is the shortest value for {a}.
    assert found.values == {"a": "x", "b": "y_z"}


def test_repeated_fields_must_agree(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}" / "{region}_{year}.parquet")
    fmt = get_format("parquet")
    fmt.write(pd.DataFrame({"v": [1]}), template.format(region="EU", year=1))
    os.makedirs(tmp_path / "US")
    fmt.write(pd.DataFrame({"v": [1]}), str(tmp_path / "US" / "EU_1.parquet"))
    (found,) = _browse.find_targets(fmt, template)
    assert found.values == {"region": "EU", "year": "1"}


def test_where_and_delete_a_slice(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}_{year}.csv")
    populate("csv", template)
    fmt = get_format("csv")
    eu = _browse.find_targets(fmt, template, {"region": "EU"})
    assert [t.values["year"] for t in eu] == ["2023", "2024"]
    _browse.delete_targets(fmt, eu)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in left if name.startswith("EU_")]  # sidecars went too
    assert len(_browse.find_targets(fmt, template)) == 4
    with pytest.raises(TemplateError, match="--where names regoin"):
        _browse.find_targets(fmt, template, {"regoin": "EU"})


def test_fsspec_urls() -> None:
    root = f"memory://ls-{uuid.uuid4().hex[:8]}"
    template = root + "/{region}_{year}.parquet"
    populate("parquet", template)
    fmt = get_format("parquet")
    targets = _browse.find_targets(fmt, template, {"year": "2024"})
    assert sorted(t.location for t in targets) == [
        f"{root}/APAC_2024.parquet", f"{root}/EU_2024.parquet", f"{root}/US_2024.parquet"
    ]
    assert all(t.info.rows == 4 for t in targets)
    _browse.delete_targets(fmt, targets)
    assert len(_browse.find_targets(fmt, template)) == 3


def test_sql_tables(tmp_path: Path) -> None:
    template = f"sqlite:///{tmp_path / 'lab.db'}#sales_{{region}}_{{year}}"
    populate("sql", template, fingerprinted={"US"})
    fmt = get_format("sql")
    fmt.write(pd.DataFrame({"v": [1]}), f"sqlite:///{tmp_path / 'lab.db'}#other")
    targets = _browse.find_targets(fmt, template)
    assert len(targets) == 6  # neither "other" nor the bookkeeping table
    us = [t for t in targets if t.values["region"] == "US"]
    assert all(t.fingerprint is not None for t in us)
    assert {t.info.rows for t in us} == {3, 4}
    _browse.delete_targets(fmt, _browse.find_targets(fmt, template, {"region": "EU"}))
    assert sorted({t.values["region"] for t in _browse.find_targets(fmt, template)}) == [
        "APAC", "US"
    ]


def test_keys_inside_a_file_cannot_vary_for_single_key_formats(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="after '#'"):
        _browse.find_targets(get_format("parquet"), str(tmp_path / "f.parquet#{region}"))


def test_keys_inside_one_hdf_file(tmp_path: Path) -> None:
    """The demo's own layout: one file, one key per region (``clean.h5#sales/{region}``)."""
    template = str(tmp_path / "clean.h5#sales/{region}")
    hdf = get_format("hdf")
    for n, region in enumerate(["EU", "US", "item_10", "item_2"]):
        hdf.write(pd.DataFrame({"v": range(n + 1)}), template.format(region=region))
    hdf.write(pd.DataFrame({"v": [1]}), str(tmp_path / "clean.h5#other/EU"))
    targets = _browse.find_targets(hdf, template)
    assert [t.values["region"] for t in targets] == ["EU", "US", "item_2", "item_10"]
    assert [t.info.rows for t in targets] == [1, 2, 4, 3]
    _browse.delete_targets(hdf, [t for t in targets if t.values["region"] == "EU"])
    assert [t.values["region"] for t in _browse.find_targets(hdf, template)] == [
        "US", "item_2", "item_10"
    ]
    assert hdf.exists(str(tmp_path / "clean.h5#other/EU"))  # not part of the template


# -- the command line ---------------------------------------------------------------------------


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    from typer.testing import CliRunner

    from prefect_ds._cli.app import app

    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.output


def test_cli_ls_shows_values_rows_and_fingerprints(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}_{year}.parquet")
    populate("parquet", template, fingerprinted={"EU"})
    code, out = cli("ls", template)
    assert code == 0
    header, *lines = out.strip().splitlines()
    assert header.split()[:4] == ["LOCATION", "REGION", "YEAR", "ROWS"]
    eu = next(line for line in lines if "EU_2024" in line).split()
    assert eu[1:4] == ["EU", "2024", "4"] and eu[-1] == "code"
    assert next(line for line in lines if "US_2023" in line).split()[-1] == "none"
    code, out = cli("ls", template, "--where", "year=2023")
    assert code == 0 and len(out.strip().splitlines()) == 5
    assert out.strip().endswith("3 targets")
    code, out = cli("ls", str(tmp_path / "empty" / "{nothing}.parquet"))
    assert code == 0 and "no stored targets" in out


def test_cli_rm_asks_then_deletes_the_slice(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}_{year}.parquet")
    populate("parquet", template)
    code, out = cli("rm", template, "--where", "region=EU", input="n\n")
    assert code == 1 and "nothing deleted" in out
    assert len(list(tmp_path.glob("EU_*.parquet"))) == 2
    code, out = cli("rm", template, "--where", "region=EU", input="y\n")
    assert code == 0 and out.count("\ndeleted ") == 3 and out.strip().endswith("2 targets")
    assert not list(tmp_path.glob("EU_*")) and len(list(tmp_path.glob("*.parquet"))) == 4


def test_cli_rm_yes_on_sql_in_a_real_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    template = f"sqlite:///{tmp_path / 'lab.db'}#sales_{{region}}_{{year}}"
    populate("sql", template)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("prefect-ds")), "rm", template,
         "-w", "region=US", "-w", "year=2024", "--yes"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout and "sales_US_2024" in done.stdout
    left = {tuple(t.values.values()) for t in _browse.find_targets(get_format("sql"), template)}
    assert ("US", "2024") not in left and len(left) == 5


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    code, out = cli("ls", str(tmp_path / "{a}.parquet"), "--where", "b=1")
    assert code == 1 and "--where names b" in out
    code, out = cli("ls", str(tmp_path / "{a}.unknownsuffix"))
    assert code == 1 and "format" in out


# -- rm deletes only what the template could have written -----------------------------------------


def test_names_no_value_could_render_are_never_listed_nor_deleted(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}_{year}.parquet")
    fmt = get_format("parquet")
    fmt.write(pd.DataFrame({"v": [1]}), template.format(region="EU", year=2023))
    strangers = [".EU_2023.parquet", "\uff25U_2023.parquet", "EU_.2023.parquet",
                 "E U_2023.parquet", "EU_2023.parquet.bak"]
    for name in strangers:
        (tmp_path / name).write_bytes((tmp_path / "EU_2023.parquet").read_bytes())
    assert [t.location for t in _browse.find_targets(fmt, template)] == [
        template.format(region="EU", year=2023)
    ]
    code, out = cli("rm", template, "--yes")
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(strangers)


def test_an_ambiguous_name_is_not_deleted_by_a_selection_of_one_reading(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}_{year}.parquet")
    fmt = get_format("parquet")
    for region, year in [("EU", "2023"), ("EU_west", "2023"), ("US", "2023")]:
        fmt.write(pd.DataFrame({"v": [1]}), template.format(region=region, year=year))
    code, out = cli("rm", template, "--where", "region=EU", "--yes")
    assert code == 0, out
    assert "EU_west_2023" in out and "two different sets of values" in out
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["EU_west_2023.parquet", "US_2023.parquet"]
    # year=2023 holds for one reading of EU_west_2023 only: it stays, US_2023 goes
    code, out = cli("rm", template, "--where", "year=2023", "--yes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["EU_west_2023.parquet"]
    # without --where every name of the template goes, however it is read
    code, out = cli("rm", template, "--yes")
    assert code == 0 and not list(tmp_path.iterdir())


def test_rm_shows_exactly_what_it_will_delete_before_asking(tmp_path: Path) -> None:
    template = str(tmp_path / "{region}_{year}.csv")
    populate("csv", template)
    code, out = cli("rm", template, "--where", "year=2023", input="n\n")
    assert code == 1
    before, _, after = out.partition("Delete them?")
    listed = [line.strip() for line in before.splitlines() if line.startswith("  ")]
    assert listed == [template.format(region=r, year=2023) for r in ("APAC", "EU", "US")]
    assert "These 3 targets will be deleted" in before and "nothing deleted" in after
    code, out = cli("rm", template, "--where", "year=2023", "--where", "region=EU",
                    input="n\n")
    assert "This target will be deleted" in out and "Delete it?" in out


# -- ls: order, counts, JSON, SQL times ----------------------------------------------------------


def test_ls_natural_order_plurals_and_json(tmp_path: Path) -> None:
    import json

    template = str(tmp_path / "item_{n}.parquet")
    for n in (10, 2, 1, 33):
        get_format("parquet").write(pd.DataFrame({"v": range(n)}), template.format(n=n))
    _, out = cli("ls", template)
    assert [line.split()[1] for line in out.strip().splitlines()[1:-1]] == ["1", "2", "10", "33"]
    assert out.strip().endswith("4 targets")
    _, out = cli("ls", template, "--where", "n=2")
    assert out.strip().endswith("\n1 target")
    _, out = cli("ls", template, "--json")
    doc = json.loads(out)
    assert [d["values"]["n"] for d in doc] == ["1", "2", "10", "33"]
    assert [d["rows"] for d in doc] == [1, 2, 10, 33]
    assert all(d["modified"] and d["bytes"] and d["fingerprint"] is None for d in doc)


def test_sql_ls_shows_when_each_table_was_written(tmp_path: Path) -> None:
    import datetime as dt
    import json

    template = f"sqlite:///{tmp_path / 'lab.db'}#sales_{{region}}_{{year}}"
    before = dt.datetime.now(dt.timezone.utc)
    populate("sql", template)
    targets = _browse.find_targets(get_format("sql"), template)
    assert all(t.info.modified is not None for t in targets)
    assert all(before - dt.timedelta(seconds=5) <= t.info.modified  # type: ignore[operator]
               <= dt.datetime.now(dt.timezone.utc) for t in targets)
    _, out = cli("ls", template, "--json")
    assert all(d["modified"] for d in json.loads(out))


_VALUES = st.text(alphabet="aE_-.1", min_size=1, max_size=4).filter(
    lambda v: not v.startswith("."))


@settings(max_examples=40)
@given(pairs=st.lists(st.tuples(_VALUES, st.sampled_from(["1", "2023", "x_1"])),
                      min_size=1, max_size=6, unique=True),
       pick=st.integers(0, 5))
def test_a_selection_never_reaches_a_target_rendered_from_other_values(
    pairs: list[tuple[str, str]], pick: int
) -> None:
    """Whatever values were rendered, ``--where region=X`` selects only names that a
    rendering with region X produced, and only if no other rendering produced them."""
    import tempfile

    fmt = get_format("parquet")
    # ask for a region, or for what comes before an "_" in one (the likely confusion)
    candidates = sorted({p for r, _ in pairs for p in (r, r.split("_")[0]) if p})
    region = candidates[pick % len(candidates)]
    with tempfile.TemporaryDirectory() as root:
        template = os.path.join(root, "{region}_{year}.parquet")
        rendered: dict[str, set[tuple[str, str]]] = {}
        for r, y in pairs:
            location = template.format(region=r, year=y)
            rendered.setdefault(location, set()).add((r, y))
            fmt.write(pd.DataFrame({"v": [1]}), location)
        selected = _browse.find_targets(fmt, template, {"region": region})
        for target in selected:
            assert {r for r, _ in rendered[target.location]} == {region}, target
        everything = {t.location for t in _browse.find_targets(fmt, template)}
        assert everything == set(rendered)  # every rendered name is listed, nothing else


def test_every_reading_counts_with_three_fields(tmp_path: Path) -> None:
    """``x_y_z_w`` reads three ways for ``{a}_{b}_{c}``; the middle one alone has
    b=y_z, so --where b=y_z must not select it (the first and last readings agree)."""
    template = str(tmp_path / "{a}_{b}_{c}.parquet")
    fmt = get_format("parquet")
    fmt.write(pd.DataFrame({"v": [1]}), template.format(a="x", b="y_z", c="w"))
    ambiguous: list[Any] = []
    assert _browse.find_targets(fmt, template, {"b": "y_z"}, ambiguous=ambiguous) == []
    (target,) = ambiguous
    assert len(target.readings) == 3
    assert {"a": "x", "b": "y_z", "c": "w"} in target.readings
    (everything,) = _browse.find_targets(fmt, template)
    assert everything.ambiguous and everything.values == {"a": "x", "b": "y", "c": "z_w"}
