"""Location templates: rendering, missing fields, and values that must never render."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from prefect_ds import PandasResultHandler, TemplateError, UnsafeLocationError
from prefect_ds._locations import LocationTemplate, check_value, split_fragment


def render(template: str, **arguments: object) -> str:
    return LocationTemplate(template).render(arguments)


# --- rendering -------------------------------------------------------------------------

def test_plain_fields() -> None:
    assert render("data/{region}_{year}.parquet", region="north", year=2024) == (
        "data/north_2024.parquet"
    )


def test_format_specs_conversions_attributes_and_items() -> None:
    day = dt.date(2024, 3, 9)
    assert render("d/{day:%Y%m%d}.csv", day=day) == "d/20240309.csv"
    assert render("d/{n:03d}-{x:.2f}.csv", n=7, x=1.5) == "d/007-1.50.csv"
    assert render("d/{p.name}/{items[1]}.csv", p=SimpleNamespace(name="cfg"),
                  items=["a", "b"]) == "d/cfg/b.csv"
    assert render("d/{k!s}.csv", k=12) == "d/12.csv"


def test_fields_are_the_argument_names_used() -> None:
    template = LocationTemplate("{a}/{b.x}/{c[0]}/{a:>3}.parquet")
    assert template.fields == frozenset({"a", "b", "c"})
    assert LocationTemplate("fixed/name.parquet").fields == frozenset()
    assert LocationTemplate("fixed/name.parquet").render({"unused": 1}) == "fixed/name.parquet"


@pytest.mark.parametrize(
    "value", ["north", "2024-01-01", "a=b,c=d", "v1.2.3", "x+y@z", "région_東京", "a..b", "x" * 200,
              # already in NFKC form, though Unicode's quick check says only "maybe": the
              # check compares the normalized text, not the object normalize returns
              "\u1161"]
)
def test_safe_values_render_unchanged(value: str) -> None:
    assert render("out/{v}.parquet", v=value) == f"out/{value}.parquet"
    assert check_value(value, "v") == value


def test_defaults_are_not_the_templates_business() -> None:
    """Filling in a function's default arguments is the caller's job (the checkpoint binds
    them); a template only ever sees the arguments it is handed."""
    def task(region: str, year: int = 2024) -> None: ...

    template = LocationTemplate("{region}_{year}.parquet")
    template.check_fields(["region", "year"], "task")  # the signature has both: fine
    with pytest.raises(TemplateError) as caught:
        template.render({"region": "north"})
    assert "{year}" in str(caught.value)


def test_missing_field_names_the_field_and_the_arguments() -> None:
    with pytest.raises(TemplateError) as caught:
        render("data/{region}/{year}.parquet", region="north", month=3)
    message = str(caught.value)
    assert "{year}" in message
    assert "region, month" in message
    with pytest.raises(TemplateError, match=r"arguments given were \(none\)"):
        render("{a}.parquet")


def test_unresolvable_attribute_or_item() -> None:
    with pytest.raises(TemplateError, match=r"\{p\.missing\}"):
        render("{p.missing}.csv", p=SimpleNamespace())
    with pytest.raises(TemplateError, match=r"\{items\[5\]\}"):
        render("{items[5]}.csv", items=[1])


def test_bad_spec_or_conversion_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"\{day\}.*'%Y'"):
        render("{day:%Y}.csv", day="not a date")
    with pytest.raises(TemplateError, match=r"\{n\}"):
        render("{n:d}.csv", n="text")
    with pytest.raises(TemplateError, match="conversion"):
        render("{n!x}.csv", n=1)


@pytest.mark.parametrize("template", ["data/{}.csv", "data/{0}.csv", "{unclosed.csv", "", "}{"])
def test_malformed_templates(template: str) -> None:
    with pytest.raises(TemplateError):
        LocationTemplate(template)


def test_template_must_be_a_string_or_pathlike() -> None:
    assert LocationTemplate(Path("x.csv")).template == "x.csv"  # see test_native_locations
    with pytest.raises(TemplateError, match="non-empty string"):
        LocationTemplate(3)  # type: ignore[arg-type]


def test_check_fields_names_the_unknown_field_and_the_parameters() -> None:
    template = LocationTemplate("{region}/{yr}.parquet")
    with pytest.raises(TemplateError) as caught:
        template.check_fields(["region", "year"], "load_sales")
    message = str(caught.value)
    assert "{yr}" in message and "load_sales" in message and "region, year" in message
    with pytest.raises(TemplateError, match="no arguments"):
        template.check_fields([], "f")


def test_check_fields_accepts_arguments_the_template_does_not_use() -> None:
    template = LocationTemplate("{region}/{year}.parquet")
    template.check_fields(["region", "year", "df", "verbose"], "load_sales")
    with pytest.raises(TemplateError) as caught:  # only the unknown field is named
        template.check_fields(["region", "df"], "load_sales")
    assert "uses {year}," in str(caught.value)


def test_split_fragment() -> None:
    assert split_fragment("f.h5#group/key") == ("f.h5", "group/key")
    assert split_fragment("f.h5") == ("f.h5", "")
    assert split_fragment("sqlite:///db#t#u") == ("sqlite:///db", "t#u")


# --- hostile values --------------------------------------------------------------------

HOSTILE = {
    "parent": "..",
    "parent path": "../../etc/passwd",
    "dot": ".",
    "leading dot": ".hidden",
    "looks like our temp file": ".x.parquet.0123456789ab.prefect-ds-tmp",
    "absolute": "/etc/passwd",
    "home": "~",
    "home of user": "~root",
    "nul": "a\x00b",
    "newline": "a\nb",
    "carriage return": "a\rb",
    "tab": "a\tb",
    "space": "a b",
    "very long": "x" * 201,
    "empty": "",
    "url": "s3://bucket/key",
    "file url": "file:///etc/passwd",
    "scheme only": "s3:",
    "single quote": "a'b",
    "double quote": 'a"b',
    "semicolon": "x;DROP TABLE t",
    "sql comment": "x--",  # allowed chars, but see below: '--' alone is harmless in a name
    "slash": "a/b",
    "backslash": "a\\b",
    "windows drive": "C:\\x",
    "fragment": "a#b",
    "query": "a?b",
    "glob": "a*",
    "percent encoding": "%2e%2e",
    "fullwidth dots": "\uff0e\uff0e",
    "fullwidth solidus": "a\uff0fb",
    "division slash": "a\u2215b",
    "fraction slash": "a\u2044b",
    "one dot leader": "\u2024\u2024",
    "ligature": "\ufb01le",
    "zero width space": "a\u200bb",
    "right-to-left override": "a\u202eb",
    "combining dot": "a\u0307",
    # letters only, but not in NFKC form, and its NFKC form sorts after it (so a check
    # that compared with < instead of != would let it through)
    "decomposed hangul": "\u1100\u1161",
}
# '--' is made only of allowed characters: a value is one plain name, and SQL formats
# quote identifiers, so it is accepted. Every other entry must be rejected.
ACCEPTED = {"sql comment"}


@pytest.mark.parametrize("label", sorted(set(HOSTILE) - ACCEPTED))
def test_hostile_values_are_rejected(label: str) -> None:
    value = HOSTILE[label]
    with pytest.raises(UnsafeLocationError) as caught:
        render("data/{v}.parquet", v=value)
    message = str(caught.value)
    assert "{v}" in message
    assert "plain name" in message
    assert isinstance(caught.value, TemplateError)


def test_sql_comment_marker_is_a_plain_name() -> None:
    assert render("data/{v}.parquet", v=HOSTILE["sql comment"]) == "data/x--.parquet"


def test_values_are_checked_after_formatting() -> None:
    with pytest.raises(UnsafeLocationError, match="'"):
        render("data/{v!r}.parquet", v="north")
    with pytest.raises(UnsafeLocationError, match="starts with a dot"):
        render("data/{v:.>4}.parquet", v="a")
    with pytest.raises(UnsafeLocationError):
        render("data/{p.path}.parquet", p=SimpleNamespace(path=Path("/etc/passwd")))
    with pytest.raises(UnsafeLocationError, match=r"\{t:%Y%m%d\}"):
        render("data/{t}.parquet", t=dt.datetime(2024, 1, 1, 12))


def test_hostile_values_through_the_handler_write_nothing(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    handler = PandasResultHandler(str(base / "{name}.parquet"))
    df = pd.DataFrame({"x": [1]})
    for value in ("../escaped", "/tmp/abs", "~", "a\x00b", "sub/dir"):
        with pytest.raises(UnsafeLocationError):
            handler.write(df, name=value)
        with pytest.raises(UnsafeLocationError):
            handler.exists(name=value)
        with pytest.raises(UnsafeLocationError):
            handler.delete(name=value)
    assert list(tmp_path.rglob("*")) == [base]


# --- every field, not only the first -----------------------------------------------------

MULTI = "base/{a}/{b}_{c}/{d}.parquet"
SAFE_ARGS = {"a": "north", "b": "2024", "c": "x", "d": "final"}


@pytest.mark.parametrize("field", sorted(SAFE_ARGS))
@pytest.mark.parametrize("label", ["parent path", "absolute", "slash", "nul", "leading dot"])
def test_a_hostile_value_in_any_field_is_rejected(field: str, label: str) -> None:
    arguments = {**SAFE_ARGS, field: HOSTILE[label]}
    with pytest.raises(UnsafeLocationError, match=r"\{" + field + r"\}"):
        LocationTemplate(MULTI).render(arguments)


def test_second_field_cannot_escape_through_the_handler(tmp_path: Path) -> None:
    """``base/{a}/{b}.parquet`` with ``b="../../x"`` would land beside ``base``."""
    base = tmp_path / "base"
    base.mkdir()
    handler = PandasResultHandler(str(base / "{a}" / "{b}.parquet"))
    df = pd.DataFrame({"x": [1]})
    with pytest.raises(UnsafeLocationError, match=r"\{b\}"):
        handler.write(df, a="ok", b="../../x")
    with pytest.raises(UnsafeLocationError, match=r"\{b\}"):
        handler.write(df, a="ok", b="/etc/x")
    assert list(tmp_path.rglob("*")) == [base]


@pytest.mark.parametrize(("value", "named"), [("a/b", "'/'"), ("x;DROP TABLE t", "' ', ';'"),
                                              ("ok\x00", "'\\x00'")])
def test_the_error_names_exactly_the_offending_characters(value: str, named: str) -> None:
    with pytest.raises(UnsafeLocationError) as caught:
        render("data/{v}.parquet", v=value)
    message = str(caught.value)
    assert f"which contains {named}." in message, message
