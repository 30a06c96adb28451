"""One-column polars frames and Arrow tables, one per dtype, for the kinds fidelity matrix.

The polars frames follow polars' own I/O round-trip tests (pola-rs/polars,
py-polars/tests/unit/io/test_parquet.py ``test_parquet_datetime_...``,
``test_decimal_parquet``, ``test_nested_struct_read``, ``test_categorical_...``,
``test_enum_...``; test_csv.py ``test_csv_null_values``, ``test_write_csv_decimal``):
each dtype with a null and the values those tests pick at the edges. The Arrow tables
cover what polars does not produce: dictionaries with other index and value types,
``string``, ``string_view``, ``large_list``, maps, ``float16``, ``date64``, ``time32``,
second-unit timestamps, ``decimal256`` and intervals.

``run(row, fmt, tmp_path)`` writes the frame through ``ResultHandler`` over an earlier
target and reads it back as its own kind: ``exact`` (same schema, same values),
``converted: <what changed>``, or ``refused: <the first clause of the prefect_ds
error>`` with the earlier target unchanged; anything else is ``raw error`` or ``wrong``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from prefect_ds import ResultHandler, UnsupportedFrameError

FORMATS = ["csv", "parquet", "hdf", "feather", "sql", "dataset"]


@dataclass(frozen=True)
class Row:
    library: str  # "polars" or "arrow"
    name: str
    build: Callable[[], Any]


def _pl() -> Any:
    import polars as pl

    return pl


def _series(values: list[Any], dtype: Any = None) -> Callable[[], Any]:
    return lambda: _pl().DataFrame({"v": _pl().Series(values, dtype=dtype() if dtype else None)})


def _array(values: list[Any], kind: Callable[[], pa.DataType]) -> Callable[[], pa.Table]:
    return lambda: pa.table({"v": pa.array(values, kind())})


_DAY = dt.datetime(2024, 3, 31, 1, 30, 15, 123456)
POLARS_ROWS = [
    Row("polars", "Int8", _series([-128, None, 127], lambda: _pl().Int8)),
    Row("polars", "Int64", _series([-(2**63), None, 2**63 - 1], lambda: _pl().Int64)),
    Row("polars", "Int128", _series([-(2**100), None], lambda: _pl().Int128)),
    Row("polars", "UInt32", _series([0, None, 2**32 - 1], lambda: _pl().UInt32)),
    Row("polars", "UInt64", _series([0, None, 2**64 - 1], lambda: _pl().UInt64)),
    Row("polars", "Float32", _series([1.5, None, float("nan")], lambda: _pl().Float32)),
    Row("polars", "Float64", _series([-0.0, None, 1e300], lambda: _pl().Float64)),
    Row("polars", "Boolean", _series([True, None, False], lambda: _pl().Boolean)),
    Row("polars", "String", _series(["a\nb", None, ""], lambda: _pl().String)),
    Row("polars", "Binary", _series([b"\x00", None, b""], lambda: _pl().Binary)),
    Row("polars", "Categorical", _series(["b", None, "a"], lambda: _pl().Categorical)),
    Row("polars", "Enum", _series(["lo", None, "hi"], lambda: _pl().Enum(["lo", "mid", "hi"]))),
    Row("polars", "Decimal", _series([decimal.Decimal("1.20"), None, decimal.Decimal("-3.45")],
                                     lambda: _pl().Decimal(10, 2))),
    Row("polars", "Date", _series([dt.date(1900, 2, 28), None, dt.date(2024, 2, 29)],
                                  lambda: _pl().Date)),
    Row("polars", "Datetime(us)", _series([_DAY, None], lambda: _pl().Datetime("us"))),
    Row("polars", "Datetime(ns)", _series([_DAY, None], lambda: _pl().Datetime("ns"))),
    Row("polars", "Datetime(us, Europe/Paris)",
        _series([_DAY, None], lambda: _pl().Datetime("us", "Europe/Paris"))),
    Row("polars", "Duration(us)", _series([dt.timedelta(days=-1, microseconds=3), None],
                                          lambda: _pl().Duration("us"))),
    Row("polars", "Time", _series([dt.time(23, 59, 59, 999999), None], lambda: _pl().Time)),
    Row("polars", "Null", _series([None, None], lambda: _pl().Null)),
    Row("polars", "List(Int64)", _series([[1, 2], [], None], lambda: _pl().List(_pl().Int64))),
    Row("polars", "Array(Int64, 2)", _series([[1, 2], None],
                                             lambda: _pl().Array(_pl().Int64, 2))),
    Row("polars", "Struct", _series([{"a": 1, "b": "x"}, None],
                                    lambda: _pl().Struct({"a": _pl().Int64,
                                                          "b": _pl().String}))),
    Row("polars", "Object", _series([object(), None], lambda: _pl().Object)),
]

ARROW_ROWS = [
    Row("arrow", "string", _array(["a", None, ""], pa.string)),
    Row("arrow", "large_string", _array(["a", None, ""], pa.large_string)),
    Row("arrow", "string_view", _array(["a", None, ""], pa.string_view)),
    Row("arrow", "dictionary<int8, string>",
        lambda: pa.table({"v": pa.array(["b", None, "a"]).dictionary_encode().cast(
            pa.dictionary(pa.int8(), pa.string()))})),
    Row("arrow", "float16", lambda: pa.table({"v": pa.array(
        __import__("numpy").array([1.5, 2.0], dtype="float16"))})),
    Row("arrow", "decimal256(40, 5)", _array([decimal.Decimal("1.5"), None],
                                             lambda: pa.decimal256(40, 5))),
    Row("arrow", "date64", _array([dt.date(2024, 1, 1), None], pa.date64)),
    Row("arrow", "time32[s]", _array([dt.time(1, 2, 3), None], lambda: pa.time32("s"))),
    Row("arrow", "timestamp[s]", _array([_DAY.replace(microsecond=0), None],
                                        lambda: pa.timestamp("s"))),
    Row("arrow", "timestamp[ms, UTC]", _array([_DAY.replace(microsecond=0), None],
                                              lambda: pa.timestamp("ms", "UTC"))),
    Row("arrow", "binary", _array([b"\x00", None], pa.binary)),
    Row("arrow", "list<int32>", _array([[1], None, []], lambda: pa.list_(pa.int32()))),
    Row("arrow", "large_list<string>", _array([["a"], None],
                                              lambda: pa.large_list(pa.string()))),
    Row("arrow", "struct", _array([{"a": 1}, None], lambda: pa.struct([("a", pa.int64())]))),
    Row("arrow", "map<string, int64>", _array([[("k", 1)], None],
                                              lambda: pa.map_(pa.string(), pa.int64()))),
    Row("arrow", "month_day_nano_interval",
        _array([pa.MonthDayNano([1, 2, 3]), None], pa.month_day_nano_interval)),
    Row("arrow", "null", lambda: pa.table({"v": pa.nulls(2)})),
]

ROWS = POLARS_ROWS + ARROW_ROWS


def handler(fmt: str, tmp_path: Path) -> ResultHandler:
    if fmt == "sql":
        return ResultHandler(f"sqlite:///{tmp_path / 'k.db'}#t")
    if fmt == "dataset":
        from support.datasets import register

        register()  # a source checkout on the path of an older install
        return ResultHandler(f"{tmp_path / 'target'}/")
    suffix = {"parquet": ".parquet", "feather": ".feather", "csv": ".csv", "hdf": ".h5#f"}[fmt]
    return ResultHandler(str(tmp_path / f"target{suffix}"))


def _describe(frame: Any) -> str:
    """The schema as the library spells it."""
    if isinstance(frame, pa.Table):
        return ", ".join(f"{f.type}" for f in frame.schema)
    return ", ".join(str(t) for t in frame.schema.values())


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN and null to null (as text: the types already agree)."""
    if isinstance(a, pa.Table):
        return bool(a.equals(b)) or repr(a.to_pylist()) == repr(b.to_pylist())
    return bool(a.equals(b))


def _digest(tmp_path: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def run(row: Row, fmt: str, tmp_path: Path) -> str:
    """The outcome of ``row`` through ``fmt`` (module doc)."""
    h = handler(fmt, tmp_path)
    earlier = (_pl().DataFrame({"v": [1]}) if row.library == "polars"
               else pa.table({"v": [1]}))
    h.write(earlier)
    before = _digest(tmp_path)
    frame = row.build()
    try:
        h.write(frame)
    except UnsupportedFrameError as exc:
        if _digest(tmp_path) != before:
            return "wrong: refused after changing the target"
        return f"refused: {_reason(str(exc))}"
    except Exception as exc:
        return f"raw error: {type(exc).__name__}"
    try:
        back = h.read()
    except Exception as exc:
        return f"wrong: written, then unreadable ({type(exc).__name__})"
    if type(back) is not type(frame):
        return f"wrong: came back as {type(back).__name__}"
    if _describe(back) == _describe(frame):
        if _same(back, frame):
            return "exact"
        if not isinstance(frame, pa.Table) and back.equals(frame.fill_nan(None)):
            return "converted: NaN comes back as null"
        return "wrong: values differ"
    return f"converted: comes back as {_describe(back)}"


def _reason(message: str) -> str:
    """The refusal's reason: its first clause, without the column's name and the advice."""
    reason = message.split(";")[0].split(" (")[0].split(", which")[0].split(" such as")[0]
    for name in ("table 't': ", "column 'v' ", "the csv format needs "):
        reason = reason.replace(name, "")
    return reason.strip()


BEGIN = "<!-- BEGIN kinds matrix: generated by tests/test_differential_kinds.py, do not edit -->"
END = "<!-- END kinds matrix -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "fidelity.md"
HEADER = ("| library | dtype | csv | parquet | hdf | feather | sql (sqlite, recorded) "
          "| dataset |\n|---|---|---|---|---|---|---|---|")


def render(cells: dict[tuple[str, str], str]) -> str:
    """The markdown table of ``cells`` ({(row name, format): outcome}), rows in ROWS order."""
    lines = [HEADER]
    for row in ROWS:
        outcomes = " | ".join(cells[(row.name, fmt)] for fmt in FORMATS)
        lines.append(f"| {row.library} | {row.name} | {outcomes} |")
    return "\n".join(lines)


def current_block() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


def published() -> dict[tuple[str, str], str]:
    cells = {}
    for line in current_block().splitlines()[2:]:
        parts = [p.strip() for p in line.strip().strip("|").split(" | ")]
        for fmt, outcome in zip(FORMATS, parts[2:], strict=True):
            cells[(parts[1], fmt)] = outcome
    return cells


def write_doc(cells: dict[tuple[str, str], str]) -> None:
    text = DOC.read_text()
    start = text.index(BEGIN) + len(BEGIN)
    DOC.write_text(text[:start] + "\n\n" + render(cells) + "\n\n" + text[text.index(END):])
