"""PandasResultHandler: one templated location, one format, read/write/exists/delete."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from prefect_ds import (
    PandasResultHandler,
    TemplateError,
    UnknownFormatError,
    checkpoint,
    get_format,
)


def frame(rows: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    df = pd.DataFrame(
        {
            "value": rng.normal(size=rows),
            "count": pd.array([None if i % 6 == 0 else i for i in range(rows)], "Int64"),
            "when": pd.date_range("2024-01-01", periods=rows, freq="D", tz="UTC"),
            "kind": pd.Categorical([["a", "b"][i % 2] for i in range(rows)]),
        }
    )
    df.index = pd.Index([f"r{i}" for i in range(rows)], name="key")
    return df


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_render_fills_the_template(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{region}" / "{year}.parquet"))
    assert handler.render(region="north", year=2024) == str(tmp_path / "north" / "2024.parquet")
    assert handler.location == str(tmp_path / "{region}" / "{year}.parquet")
    assert handler.format is get_format("parquet")
    assert repr(handler) == f"PandasResultHandler({handler.location!r}, format='parquet')"
    with pytest.raises(TemplateError, match=r"\{year\}"):
        handler.render(region="north")


def test_write_exists_read_delete(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "out" / "{region}.parquet"))
    df = frame()
    assert not handler.exists(region="north")
    location = handler.write(df, region="north")
    assert location == str(tmp_path / "out" / "north.parquet")
    assert handler.exists(region="north")
    assert not handler.exists(region="south")
    assert_frame_equal(handler.read(region="north"), df, check_exact=True)
    assert files_under(tmp_path) == ["out/north.parquet"]

    replacement = frame(3)
    handler.write(replacement, region="north")
    assert_frame_equal(handler.read(region="north"), replacement, check_exact=True)
    assert files_under(tmp_path) == ["out/north.parquet"]

    handler.delete(region="north")
    assert not handler.exists(region="north")
    assert files_under(tmp_path) == []
    handler.delete(region="north")  # nothing there: not an error


def test_read_of_a_missing_result_raises(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{x}.parquet"))
    with pytest.raises(FileNotFoundError):
        handler.read(x="absent")


@pytest.mark.parametrize(
    "not_a_frame",
    [{"x": [1, 2]}, [[1, 2]], None, np.zeros((2, 2)), "df", pd.Index([1, 2])],
    ids=["dict", "list", "none", "ndarray", "str", "index"],
)
def test_writing_a_non_dataframe_is_a_type_error_and_writes_nothing(
    tmp_path: Path, not_a_frame: object
) -> None:
    handler = PandasResultHandler(str(tmp_path / "{x}.parquet"))
    with pytest.raises(TypeError) as caught:
        handler.write(not_a_frame, x="a")  # type: ignore[arg-type]
    message = str(caught.value)
    assert type(not_a_frame).__qualname__ in message
    assert "nothing was written" in message
    assert not handler.exists(x="a")
    assert list(tmp_path.iterdir()) == []


def test_a_subclass_of_dataframe_is_a_dataframe(tmp_path: Path) -> None:
    class Sub(pd.DataFrame):
        pass

    handler = PandasResultHandler(str(tmp_path / "{x}.parquet"))
    handler.write(Sub({"a": [1, 2]}), x="s")
    assert_frame_equal(handler.read(x="s"), pd.DataFrame({"a": [1, 2]}))


def test_memory_locations() -> None:
    prefix = f"memory://handler-{uuid.uuid4().hex}"
    handler = PandasResultHandler(prefix + "/{name}.parquet")
    df = frame(5)
    assert handler.write(df, name="m") == f"{prefix}/m.parquet"
    assert handler.exists(name="m")
    assert_frame_equal(handler.read(name="m"), df, check_exact=True)
    handler.delete(name="m")
    assert not handler.exists(name="m")


def test_file_url_locations(tmp_path: Path) -> None:
    handler = PandasResultHandler(f"file://{tmp_path}/{{name}}.parquet")
    df = frame(4)
    location = handler.write(df, name="f")
    assert location == f"file://{tmp_path}/f.parquet"
    assert (tmp_path / "f.parquet").is_file()
    assert handler.exists(name="f")
    assert_frame_equal(handler.read(name="f"), df, check_exact=True)
    # The same file is reachable as a plain path.
    assert_frame_equal(PandasResultHandler(str(tmp_path / "f.parquet")).read(), df)
    handler.delete(name="f")
    assert list(tmp_path.iterdir()) == []


def test_read_and_write_kwargs_pass_through(tmp_path: Path) -> None:
    handler = PandasResultHandler(
        str(tmp_path / "{x}.parquet"),
        read_kwargs={"columns": ["value"]},
        write_kwargs={"compression": "zstd"},
    )
    handler.write(frame(), x="k")
    meta = pq.ParquetFile(tmp_path / "k.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert list(handler.read(x="k").columns) == ["value"]


@pytest.mark.parametrize("bad", [[("compression", "zstd")], "compression=zstd", {1: "x"}])
def test_kwargs_that_are_not_a_mapping_of_names_are_refused_at_once(tmp_path: Path,
                                                                     bad: Any) -> None:
    for name in ("read_kwargs", "write_kwargs"):
        with pytest.raises(TypeError, match=f"{name} must be a mapping of keyword arguments"):
            PandasResultHandler(str(tmp_path / "{x}.parquet"), **{name: bad})
        with pytest.raises(TypeError, match=f"{name} must be a mapping of keyword arguments"):
            checkpoint(str(tmp_path / "{x}.parquet"), **{name: bad})
    assert list(tmp_path.iterdir()) == []


def test_the_original_handler_s_names_still_work(tmp_path: Path) -> None:
    """``PandasResultHandler(path, file_type)`` as the Prefect 0.9 library spelled it: a
    str or a Path, a file type in any case, ``.path`` and ``.file_type`` to read back."""
    as_text = PandasResultHandler("a/b/c/d.csv", "CsV")
    as_path = PandasResultHandler(Path("a/b/c/d.csv"), "csv")
    assert as_text.path == as_path.path == "a/b/c/d.csv"
    assert as_text.file_type == as_path.file_type == "csv"
    assert PandasResultHandler(str(tmp_path / "x.pq")).file_type == "parquet"
    handler = PandasResultHandler(tmp_path / "test_{offset}.csv", "csv",
                                  write_kwargs={"index": False})
    data = pd.DataFrame({"one": [1, 2, 3], "two": [4, 5, 6]})
    written = handler.write(data, offset=2)
    assert written == str(tmp_path / "test_2.csv")
    assert_frame_equal(handler.read(offset=2), data)


def test_explicit_format_and_resolution_errors(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{x}.data"), format="parquet")
    handler.write(frame(2), x="a")
    assert pq.ParquetFile(tmp_path / "a.data").metadata.num_rows == 2
    with pytest.raises(UnknownFormatError, match="format="):
        PandasResultHandler(str(tmp_path / "{x}.data"))
    with pytest.raises(UnknownFormatError, match="'nope'"):
        PandasResultHandler(str(tmp_path / "{x}.parquet"), format="nope")
    with pytest.raises(TemplateError):
        PandasResultHandler(str(tmp_path / "{}.parquet"))


@pytest.mark.parametrize(("suffix", "options"), [
    (".parquet", {"compression": "nope"}), (".parquet", {"bogus": 1}), (".csv", {"bogus": 1}),
    (".h5", {"bogus": 1}),
])
def test_a_refused_write_option_is_named_and_nothing_is_written(
        tmp_path: Path, suffix: str, options: dict[str, object]) -> None:
    """A format's own complaint about write_kwargs (pyarrow's ArrowException, an unknown
    keyword's TypeError) becomes a FormatOptionError naming the option and the format."""
    from prefect_ds import FormatOptionError

    handler = PandasResultHandler(str(tmp_path / f"x{suffix}"), write_kwargs=options)
    with pytest.raises(FormatOptionError, match=repr(next(iter(options)))) as info:
        handler.write(pd.DataFrame({"a": [1]}))
    assert handler.format.name in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unknown_read_option_is_named(tmp_path: Path) -> None:
    from prefect_ds import FormatOptionError

    PandasResultHandler(str(tmp_path / "x.parquet")).write(pd.DataFrame({"a": [1]}))
    with pytest.raises(FormatOptionError, match="'bogus'"):
        PandasResultHandler(str(tmp_path / "x.parquet"), read_kwargs={"bogus": 1}).read()
