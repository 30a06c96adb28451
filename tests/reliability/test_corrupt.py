"""Corrupt targets: never a silently wrong frame.

Every case damages a complete target in one way, then asks the format for it. The only
acceptable outcomes are:

* ``CorruptTargetError`` whose message names the target (from ``read``, or already from
  ``exists``);
* ``exists()`` false (an incomplete target is treated as absent and recomputed);
* a frame equal to the one written (the damage did not touch it, e.g. bytes appended
  after an HDF5 file's end);
* for a *foreign* target, the frame its library's plain reader returns: a CSV without
  its sidecar reads as ``pandas.read_csv``; a SQL table without a ``_prefect_ds_tables``
  row reads as ``pandas.read_sql``. That is the documented contract for data someone
  else wrote (docs/reliability.md, "Foreign targets").

A different frame counts as a wrong frame; any other exception (a raw library error)
fails the case too. Both must stay 0.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import psycopg
import pytest
from reliability_support import Target, format_or_skip, make_target, tally
from test_hdf import damage as damage_hdf

from prefect_ds import CorruptTargetError

pytest_plugins = ["sql_fixtures"]


def frame(n: int = 2_000) -> pd.DataFrame:
    """Mixed dtypes with missing values and a named index: what damage can garble."""
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "n": pd.array(np.where(np.arange(n) % 7 == 0, None, np.arange(n)), dtype="Int64"),
            "flag": np.arange(n) % 3 == 0,
            "when": pd.date_range("2024-01-01", periods=n, freq="min"),
            "text": pd.array([f"row {i} ünï" if i % 5 else None for i in range(n)], dtype="str"),
            "grade": pd.Categorical(np.array(["a", "b", "c"])[np.arange(n) % 3]),
        },
        index=pd.Index([f"k{i}" for i in range(n)], name="key", dtype="str"),
    )


Outcome = str  # "corrupt", "absent", "same", "foreign"


def outcome(target: Target, location: str, original: pd.DataFrame,
            foreign: Callable[[], pd.DataFrame] | None = None) -> Outcome:
    """Classify what the format does with a damaged target; fail on anything unsafe."""
    fmt = target.fmt
    named = Path(location.partition("#")[0]).name if not target.is_sql else location.rpartition(
        "#")[2]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not fmt.exists(location):
                return "absent"
            df = fmt.read(location)
    except CorruptTargetError as exc:
        assert named in str(exc), f"the error does not name the target {named!r}: {exc}"
        return "corrupt"
    if foreign is not None:
        pd.testing.assert_frame_equal(df, foreign(), check_exact=True)
        return "foreign"
    pd.testing.assert_frame_equal(df, target.expect(original), check_exact=True)
    return "same"


def run_cases(target: Target, cases: dict[str, Callable[[Target], Any]],
              allowed: dict[str, set[Outcome]] | None = None) -> dict[str, Outcome]:
    """Write, damage, classify every case; tally tried / wrong frames."""
    original = frame()
    seen: dict[str, Outcome] = {}
    wrong = 0
    try:
        for name, damage in cases.items():
            case = target.with_name(f"c_{name.replace('-', '_')}")
            case.fmt.write(original, case.location)
            foreign = damage(case)
            try:
                seen[name] = outcome(case, case.location, original, foreign)
            except AssertionError:
                wrong += 1
                raise
            expected = (allowed or {}).get(name)
            if expected is not None:
                assert seen[name] in expected, (name, seen[name], expected)
    finally:
        tally(target.key, corrupt_cases=len(seen) + wrong, wrong_frames=wrong)
    return seen


# ------------------------------------------------------------------------ byte damage


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def byte_cases() -> dict[str, Callable[[Target], Any]]:
    """Damage to the bytes of a data file that any file format must survive."""
    rng = random.Random(42)

    def truncate(fraction: float) -> Callable[[Target], None]:
        return lambda t: _rewrite(t.path, lambda b: b[: int(len(b) * fraction)])

    cases: dict[str, Callable[[Target], Any]] = {
        f"truncated-{int(f * 100)}pct": truncate(f) for f in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)
    }
    cases["truncated-last-byte"] = lambda t: _rewrite(t.path, lambda b: b[:-1])
    cases["garbage-same-size"] = lambda t: _rewrite(
        t.path, lambda b: rng.randbytes(len(b)))
    cases["garbage-header"] = lambda t: _rewrite(t.path, lambda b: rng.randbytes(64) + b[64:])
    cases["garbage-appended"] = lambda t: _rewrite(t.path, lambda b: b + rng.randbytes(1024))
    cases["garbage-tail"] = lambda t: _rewrite(t.path, lambda b: b[:-64] + rng.randbytes(64))
    cases["text-instead"] = lambda t: t.path.write_text("this is not the file you wrote\n")
    cases["a-directory"] = lambda t: (t.path.unlink(), t.path.mkdir())
    return cases


FILE_FORMATS = ["csv", "parquet", "hdf", "feather"]


@pytest.mark.parametrize("key", FILE_FORMATS)
def test_damaged_files_are_corrupt_never_wrong(key: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    target = make_target(key, tmp_path, request)
    seen = run_cases(target, byte_cases())
    # Any damage to the part that holds data is detected, never read through.
    for name in ("garbage-same-size", "garbage-header", "text-instead", "truncated-50pct"):
        assert seen[name] in ("corrupt", "absent"), (name, seen[name])


# ------------------------------------------------------------------------ csv sidecar


def _sidecar(t: Target) -> Path:
    return Path(str(t.path) + ".schema.json")


def _edit_sidecar(change: Callable[[dict[str, Any]], None]) -> Callable[[Target], None]:
    def apply(t: Target) -> None:
        doc = json.loads(_sidecar(t).read_text())
        change(doc)
        _sidecar(t).write_text(json.dumps(doc))
    return apply


def _column(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["columns"] if c["name"] == name)


def _same_size_edit(t: Target) -> None:
    """A value changed in place, same length: the sidecar's byte count still agrees."""
    text = t.path.read_text()
    _rewrite(t.path, lambda b: text.replace('"row 1 ünï"', '"row 1 üNï"', 1).encode())


def test_csv_and_sidecar_that_disagree(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    target = make_target("csv", tmp_path, request)
    cases: dict[str, Callable[[Target], Any]] = {
        "sidecar-rows": _edit_sidecar(lambda d: d.__setitem__("rows", d["rows"] + 1)),
        "sidecar-fewer-rows": _edit_sidecar(lambda d: d.__setitem__("rows", d["rows"] - 1)),
        "sidecar-bytes": _edit_sidecar(lambda d: d.__setitem__("bytes", d["bytes"] + 3)),
        "sidecar-int-as-bool": _edit_sidecar(
            lambda d: _column(d, "n").update({"dtype": "bool"})),
        "sidecar-float-as-int": _edit_sidecar(
            lambda d: _column(d, "x").update({"dtype": "int64"})),
        "sidecar-fewer-categories": _edit_sidecar(
            lambda d: _column(d, "grade").__setitem__("categories", ["a", "b"])),
        "sidecar-renamed-column": _edit_sidecar(
            lambda d: _column(d, "x").__setitem__("name", "y")),
        "sidecar-dropped-column": _edit_sidecar(
            lambda d: d.__setitem__("columns", d["columns"][1:])),
        "sidecar-version": _edit_sidecar(lambda d: d.__setitem__("prefect_ds_csv", 99)),
        "sidecar-unknown-dtype": _edit_sidecar(
            lambda d: _column(d, "x").update({"dtype": "no-such-dtype"})),
        "sidecar-csv-columns": _edit_sidecar(
            lambda d: d.__setitem__("csv_columns", d["csv_columns"][::-1])),
        "sidecar-garbage": lambda t: _sidecar(t).write_bytes(os.urandom(300)),
        "sidecar-truncated": lambda t: _rewrite(_sidecar(t), lambda b: b[: len(b) // 2]),
        "sidecar-empty": lambda t: _sidecar(t).write_text(""),
        "sidecar-not-an-object": lambda t: _sidecar(t).write_text("[1, 2, 3]"),
        "csv-header-renamed": lambda t: _rewrite(t.path, lambda b: b.replace(b'"x"', b'"y"', 1)),
        "csv-row-dropped": lambda t: _rewrite(
            t.path, lambda b: b"\n".join([*b.split(b"\n")[:-3], b""])),
        "csv-bad-number": lambda t: _rewrite(t.path, _swap_number),
        # A missing sidecar makes it a foreign CSV: it reads as pandas.read_csv does.
        "sidecar-missing": lambda t: (_sidecar(t).unlink(),
                                      lambda: pd.read_csv(t.path))[1],
    }
    seen = run_cases(target, cases)
    assert seen["sidecar-missing"] == "foreign"
    assert all(v == "corrupt" for k, v in seen.items() if k != "sidecar-missing"), seen


def _swap_number(data: bytes) -> bytes:
    """A float field replaced by a word of the same length: the parser must refuse it."""
    lines = data.split(b"\n")
    fields = lines[1].split(b",")
    i = next(i for i, f in enumerate(fields) if b"." in f and not f.startswith(b'"'))
    fields[i] = b"x" * len(fields[i])
    lines[1] = b",".join(fields)
    return b"\n".join(lines)


# ------------------------------------------------------------------------ hdf layout

HDF_CHANGES = ["missing_column", "missing_index", "incomplete", "short_column", "wrong_dtype",
               "bad_offsets", "codes_out_of_range", "unknown_kind", "missing_mask",
               "bad_nrows", "newer_layout", "invalid_utf8"]


def test_hdf_damaged_layouts(tmp_path: Path) -> None:
    fmt = format_or_skip("hdf")
    wrong = 0
    seen = {}
    for change in HDF_CHANGES:
        loc = damage_hdf(tmp_path, fmt, change)  # type: ignore[arg-type]
        try:
            if not fmt.exists(loc):
                seen[change] = "absent"
                continue
            with pytest.raises(CorruptTargetError, match=rf"{change}\.h5"):
                fmt.read(loc)
            seen[change] = "corrupt"
        except BaseException:
            wrong += 1
            raise
        finally:
            tally("hdf", corrupt_cases=1)
    tally("hdf", wrong_frames=wrong)
    assert seen["incomplete"] == "absent"
    # a column dataset of a file someone edited with h5py: missing -> named in the error
    loc = str(tmp_path / "edited.h5")
    fmt.write(frame(), loc)
    with h5py.File(loc, "r+") as f:
        del f["data/columns/grade"]
    with pytest.raises(CorruptTargetError, match=r"edited\.h5.*grade"):
        fmt.read(loc)
    tally("hdf", corrupt_cases=1)


# ------------------------------------------------------------------------ sql

def _sql(target: Target, statement: str) -> None:
    assert target.db_url is not None
    if target.key == "sql-sqlite":
        with sqlite3.connect(target.db_url.removeprefix("sqlite:///")) as conn:
            conn.execute(statement)
        return
    with psycopg.connect(target.db_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as pg:
        pg.execute(statement)


def _meta_where(t: Target) -> str:
    key = t.table.lower() if t.key == "sql-sqlite" and t.table else t.table
    return f"table_name = '{key}'"


def _read_sql(t: Target) -> Callable[[], pd.DataFrame]:
    import sqlalchemy as sa

    def read() -> pd.DataFrame:
        engine = sa.create_engine(str(t.db_url), poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return pd.read_sql_query(f'SELECT * FROM "{t.table}"', conn)
        finally:
            engine.dispose()
    return read


def _sql_foreign(change: str) -> Callable[[Target], Callable[[], pd.DataFrame]]:
    def apply(t: Target) -> Callable[[], pd.DataFrame]:
        _sql(t, change.format(table=f'"{t.table}"', where=_meta_where(t)))
        read = _read_sql(t)
        if t.key == "sql-sqlite":  # read_sql's view of a SQLite table (no ADBC typing)
            return read
        return read
    return apply


SQL_CASES: dict[str, Callable[[Target], Any]] = {
    # no metadata row: a foreign table, read as pandas.read_sql reads it
    "no-metadata-row": _sql_foreign("DELETE FROM _prefect_ds_tables WHERE {where}"),
    "metadata-table-dropped": _sql_foreign("DROP TABLE _prefect_ds_tables"),
    # the table was changed outside prefect-ds: a warning, then read as foreign
    "row-deleted-outside": _sql_foreign("DELETE FROM {table} WHERE x < 0"),
    "column-dropped-outside": _sql_foreign("ALTER TABLE {table} DROP COLUMN flag"),
    # a garbled metadata row: corrupt
    "metadata-columns-garbage": lambda t: _sql(
        t, f"UPDATE _prefect_ds_tables SET columns = 'not json' WHERE {_meta_where(t)}"),
    "metadata-schema-garbage": lambda t: _sql(
        t, f"UPDATE _prefect_ds_tables SET arrow_schema = 'AAAA' WHERE {_meta_where(t)}"),
    # an interrupted write on a database without transactional DDL: absent
    "metadata-says-writing": lambda t: _sql(
        t, f"UPDATE _prefect_ds_tables SET state = 'writing' WHERE {_meta_where(t)}"),
}
SQL_ALLOWED = {
    "no-metadata-row": {"foreign"}, "metadata-table-dropped": {"foreign"},
    "row-deleted-outside": {"foreign"}, "column-dropped-outside": {"foreign"},
    "metadata-columns-garbage": {"corrupt"}, "metadata-schema-garbage": {"corrupt"},
    "metadata-says-writing": {"absent"},
}


@pytest.mark.parametrize("key", ["sql-sqlite", "sql-postgresql"])
def test_sql_tables_without_or_with_damaged_metadata(key: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    target = make_target(key, tmp_path, request)
    run_cases(target, SQL_CASES, SQL_ALLOWED)
