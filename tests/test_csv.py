"""The csv format: exact round trips through the schema sidecar, foreign CSVs as pandas
reads them, option pass-through, fsspec locations, and refusal of inconsistent targets."""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest

import prefect_ds
from prefect_ds import CorruptTargetError, PandasResultHandler, UnsupportedFrameError, get_format
from prefect_ds._format import stored_metadata
from prefect_ds.formats.csv import SIDECAR_SUFFIX, CsvFormat

assert_frame_equal = pd.testing.assert_frame_equal


@pytest.fixture
def fmt() -> prefect_ds.Format:
    return get_format("csv")


def mixed(n: int = 5) -> pd.DataFrame:
    """Every dtype the sidecar restores, with missing values where the dtype allows them."""
    base = pd.Timestamp("2021-03-27 23:59:59.123456789")
    return pd.DataFrame(
        {
            "float": [1.5, np.nan, np.inf, -0.1, 1e300][:n],
            "int": np.array([1, -2, 2**62, 0, 7][:n], dtype="int64"),
            "int32": np.array([1, 2, 3, 4, 5][:n], dtype="int32"),
            "Int64": pd.array([1, None, 2**62 + 1, -5, 0][:n], dtype="Int64"),
            "Float64": pd.array([0.25, None, 3.0, -1.0, 2.5][:n], dtype="Float64"),
            "bool": [True, False, True, False, True][:n],
            "boolean": pd.array([True, None, False, True, None][:n], dtype="boolean"),
            "naive_ns": pd.DatetimeIndex([base, pd.NaT, base, base, base][:n]),
            "naive_s": pd.DatetimeIndex(["2020-01-01", None, "1900-02-28", "2262-01-01",
                                          "2000-01-01"][:n]).as_unit("s"),
            "aware": pd.DatetimeIndex([base, pd.NaT, base, base, base][:n]).tz_localize(
                "Europe/Paris", nonexistent="shift_forward"),
            "utc_us": pd.DatetimeIndex([base, base, pd.NaT, base, base][:n]).as_unit(
                "us").tz_localize("UTC"),
            "delta": pd.to_timedelta([1, None, 3, 4, -5][:n], unit="s"),
            "str": pd.array(["a", None, "", 'quote " , comma', "日本語"][:n], dtype="str"),
            "string": pd.array(["x", "", None, "NA", "null"][:n], dtype="string[python]"),
            "cat": pd.Categorical(["b", "a", None, "b", "c"][:n], categories=["c", "b", "a"],
                                  ordered=True),
            "int_cat": pd.Categorical([3, 1, None, 1, 3][:n], categories=[3, 1, 2]),
        }
    )


def test_mixed_round_trip_and_sidecar(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = mixed()
    location = str(tmp_path / "mixed.csv")
    fmt.write(df, location)
    assert sorted(os.listdir(tmp_path)) == ["mixed.csv", "mixed.csv" + SIDECAR_SUFFIX]
    assert_frame_equal(fmt.read(location), df)
    doc = json.loads((tmp_path / "mixed.csv.schema.json").read_text())
    assert doc["rows"] == 5
    assert doc["bytes"] == os.path.getsize(location)
    assert [c["name"] for c in doc["columns"]] == list(df.columns)
    by_name = {c["name"]: c for c in doc["columns"]}
    assert by_name["Int64"]["dtype"] == "Int64"
    assert by_name["aware"] == {"name": "aware", "dtype": "datetime64", "unit": "ns",
                                "tz": "Europe/Paris"}
    assert by_name["cat"]["categories"] == ["c", "b", "a"]
    assert by_name["cat"]["ordered"] is True
    assert by_name["string"]["storage"] == "python"


def test_file_is_plain_csv_pandas_can_read(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, None]})
    location = str(tmp_path / "plain.csv")
    fmt.write(df, location)
    assert (tmp_path / "plain.csv").read_text() == '"a","b","c"\n1,"x",0.5\n2,"y",\n'
    assert_frame_equal(pd.read_csv(location), df)


def test_missing_string_vs_empty_string(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    """A null is an empty unquoted field; an empty string is a quoted empty field."""
    df = pd.DataFrame({"s": pd.array([None, "", "NA", "x"], dtype="string[python]"),
                       "t": pd.array(["", None, "", None], dtype="str")})
    location = str(tmp_path / "na.csv")
    fmt.write(df, location)
    assert (tmp_path / "na.csv").read_text().splitlines()[1:] == [',""', '"",', '"NA",""', '"x",']
    back = fmt.read(location)
    assert_frame_equal(back, df)
    assert back["s"].isna().tolist() == [True, False, False, False]
    assert back["t"].tolist()[0] == ""


def test_index_layouts(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    location = str(tmp_path / "idx.csv")
    df = mixed()
    frames = [
        df.set_index("str"),                                   # named string index
        df.set_index(["int", "aware"]),                        # MultiIndex
        df.set_index("cat"),                                   # categorical index
        df.set_axis(pd.RangeIndex(10, 0, -2, name="step"), axis=0),
        df.set_axis(pd.date_range("2020-01-01", periods=5, freq="h", name="t"), axis=0),
        df.set_axis(pd.Index([5, 3, 1, 9, 0]), axis=0),         # unnamed, not a range
        df.set_axis(pd.Index(["x", "y", "z", "w", "v"], name="int"), axis=0),  # clashes
        df.iloc[:0],
        df.iloc[:1],
        pd.DataFrame(index=pd.RangeIndex(4)),
        pd.DataFrame(index=pd.Index(["a", "b"], name="k")),
        pd.DataFrame(),
    ]
    for frame in frames:
        fmt.write(frame, location)
        assert_frame_equal(fmt.read(location), frame, check_freq=True)
    frame = frames[4]
    assert fmt.read(location).shape == (0, 0)
    fmt.write(frame, location)
    assert fmt.read(location).index.freqstr == "h"


def test_newlines_and_unicode_in_values_and_names(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = pd.DataFrame({"multi\nline": ["a\nb", "c\r\nd", "", "e"], "ünï": ["ß", "\t", " ", "😀"]})
    location = str(tmp_path / "nl.csv")
    fmt.write(df, location)
    assert_frame_equal(fmt.read(location), df)


def test_timedelta_is_stored_as_integer_count(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = pd.DataFrame({"d": pd.to_timedelta([1500, None], unit="ms").as_unit("ms")})
    location = str(tmp_path / "td.csv")
    fmt.write(df, location)
    assert (tmp_path / "td.csv").read_text() == '"d"\n1500\n\n'
    assert_frame_equal(fmt.read(location), df)


def test_foreign_csv_reads_as_pandas_read_csv(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    path = tmp_path / "foreign.csv"
    path.write_text("when;name;value\n2020-01-01;a;1,5\n2020-01-02;;2,0\n")
    kwargs: dict[str, Any] = {"sep": ";", "decimal": ",", "parse_dates": ["when"]}
    assert_frame_equal(fmt.read(str(path), **kwargs), pd.read_csv(path, **kwargs))
    assert_frame_equal(fmt.read(str(path), sep=";"), pd.read_csv(path, sep=";"))
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b\n1,x\n,y\n")
    assert_frame_equal(fmt.read(str(plain)), pd.read_csv(plain))


def test_arrow_write_options(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    """sep / header / index go to pyarrow's writer and the result stays exact."""
    df = mixed().set_index("str")
    location = str(tmp_path / "opts.csv")
    fmt.write(df, location, sep=";", header=False)
    text = (tmp_path / "opts.csv").read_text()
    assert text.startswith('"a";1.5;1;1;1;0.25;true;')
    assert_frame_equal(fmt.read(location), df)
    assert_frame_equal(fmt.read(location, sep=";", header=None), df)
    fmt.write(df, location, index=False)
    assert_frame_equal(fmt.read(location), df.reset_index(drop=True))


def test_other_write_options_use_to_csv(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = pd.DataFrame({"x": [1.23456, 2.5], "y": ["a", "b"]}, index=pd.Index([7, 8], name="k"))
    location = str(tmp_path / "pandas.csv")
    fmt.write(df, location, float_format="%.2f")
    expected = df.to_csv(index=False, float_format="%.2f")
    assert (tmp_path / "pandas.csv").read_text() == expected
    assert_frame_equal(fmt.read(location), pd.read_csv(location))
    fmt.write(df, location, float_format="%.1f", index=True)
    assert (tmp_path / "pandas.csv").read_text() == df.to_csv(float_format="%.1f")
    assert_frame_equal(fmt.read(location, index_col="k"), pd.read_csv(location, index_col="k"))
    # still guarded by the sidecar's byte count
    with open(location, "a") as handle:
        handle.write("9,9,z\n")
    with pytest.raises(CorruptTargetError, match="bytes"):
        fmt.read(location)


def test_other_read_options_parse_with_pandas(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = mixed()
    location = str(tmp_path / "r.csv")
    fmt.write(df, location)
    for kwargs in ({"usecols": ["int", "str"]}, {"nrows": 2}, {"sep": "|"}, {"header": None}):
        assert_frame_equal(fmt.read(location, **kwargs), pd.read_csv(location, **kwargs))


def test_class_defaults_merge_with_user_options(tmp_path: Path) -> None:
    class PipeCsv(CsvFormat):
        default_write_kwargs = {"sep": "|", "header": False}  # noqa: RUF012

    fmt = PipeCsv()
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    location = str(tmp_path / "pipe.csv")
    fmt.write(df, location, header=True)
    assert (tmp_path / "pipe.csv").read_text() == '"a"|"b"\n1|"x"\n2|"y"\n'
    assert_frame_equal(fmt.read(location), df)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_locations(tmp_path: Path, fmt: prefect_ds.Format, scheme: str) -> None:
    if scheme == "memory":
        location = f"memory://prefect-ds-csv-{uuid.uuid4().hex}/deep/data.csv"
    else:
        location = (tmp_path / "deep" / "data.csv").as_uri()
    df = mixed().set_index("int")
    assert not fmt.exists(location)
    fmt.write(df, location)
    assert fmt.exists(location)
    fs, path = fsspec.core.url_to_fs(location)
    assert fs.isfile(path + SIDECAR_SUFFIX)
    assert_frame_equal(fmt.read(location), df)
    fs.pipe_file(path, fs.cat_file(path)[:-3])
    with pytest.raises(CorruptTargetError, match="bytes"):
        fmt.read(location)
    fmt.delete(location)
    assert not fmt.exists(location)
    assert not fs.exists(path + SIDECAR_SUFFIX)
    fmt.delete(location)  # nothing there: no error
    foreign = b"a;b\n1;x\n;y\n"
    fs.pipe_file(path, foreign)  # a CSV from elsewhere at the same location
    assert_frame_equal(fmt.read(location, sep=";"), pd.read_csv(io.BytesIO(foreign), sep=";"))


def test_handler_resolves_csv_by_suffix(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{name}.csv"))
    df = mixed()
    written = handler.write(df, name="run1")
    assert written == str(tmp_path / "run1.csv")
    assert_frame_equal(handler.read(name="run1"), df)
    handler.delete(name="run1")
    assert os.listdir(tmp_path) == []


def test_truncated_data_file_is_corrupt(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    location = str(tmp_path / "t.csv")
    fmt.write(mixed(), location)
    data = Path(location).read_bytes()
    Path(location).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptTargetError) as info:
        fmt.read(location)
    assert location in str(info.value)
    assert f"records {len(data)}" in str(info.value)


def test_interrupted_overwrite_sidecar_without_its_data(tmp_path: Path,
                                                        fmt: prefect_ds.Format) -> None:
    """The sidecar is committed first; if the writer dies before the data file is renamed
    in, the new sidecar sits beside the old data. That must raise, never mis-read."""
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    fmt.write(pd.DataFrame({"a": [1, 2, 3]}), str(old))
    fmt.write(pd.DataFrame({"a": [1.5, 2.5]}), str(new))
    os.replace(str(new) + SIDECAR_SUFFIX, str(old) + SIDECAR_SUFFIX)
    with pytest.raises(CorruptTargetError, match="bytes"):
        fmt.read(str(old))


def test_row_count_mismatch_is_corrupt(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    location = str(tmp_path / "rows.csv")
    fmt.write(pd.DataFrame({"a": ["xx", "y"]}), location)
    sidecar = Path(location + SIDECAR_SUFFIX)
    # same byte count, one row more: the sidecar's row count catches it
    Path(location).write_text('"a"\n"x"\n\n"y"\n')
    with pytest.raises(CorruptTargetError,
                       match=r"3 rows but its schema sidecar .* records 2|is not the one"):
        fmt.read(location)
    fmt.write(pd.DataFrame({"a": ["xx", "y"]}), location)
    doc = json.loads(sidecar.read_text())
    doc["rows"] = 5
    doc["index"]["stop"] = 5
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(CorruptTargetError, match="rows"):
        fmt.read(location)


def test_garbled_data_or_sidecar_is_corrupt(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    location = str(tmp_path / "g.csv")
    fmt.write(pd.DataFrame({"n": [10, 20], "c": pd.Categorical(["a", "b"])}), location)
    Path(location).write_text('"n","c"\nxx,"a"\n20,"b"\n')  # same size, not an int
    with pytest.raises(CorruptTargetError, match=r"(does not match|is not the one).* sidecar"):
        fmt.read(location)
    Path(location).write_text('"n","c"\n10,"z"\n20,"b"\n')  # same size, unknown category
    with pytest.raises(CorruptTargetError, match=r"not one of the categories|is not the one"):
        fmt.read(location)
    Path(location + SIDECAR_SUFFIX).write_text("{not json")
    with pytest.raises(CorruptTargetError, match="not valid"):
        fmt.read(location)


def test_unsupported_frames_write_nothing(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    location = str(tmp_path / "bad.csv")
    bad: list[tuple[pd.DataFrame, type[Exception], str]] = [
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), ValueError, "more than once"),
        (pd.DataFrame({1: [1], "1": [2]}), TypeError, r"unique column names"),
        (pd.DataFrame({"s": pd.Series(["\ud800"], dtype=object)}), ValueError, "Unicode"),
        (pd.DataFrame({"p": pd.period_range("2020", periods=2, freq="D")}), TypeError,
         "period"),
        (pd.DataFrame({"o": pd.Series([1, "x"], dtype=object)}), TypeError, "'o'"),
        (pd.DataFrame({"z": [1 + 2j]}), TypeError, "complex"),
    ]
    for df, error, message in bad:
        with pytest.raises(error, match=message) as caught:
            fmt.write(df, location)
        assert isinstance(caught.value, UnsupportedFrameError)
        assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError, match="list"):
        fmt.write([1, 2], location)  # type: ignore[arg-type]


def test_failed_overwrite_keeps_old_target(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    location = str(tmp_path / "keep.csv")
    df = mixed()
    fmt.write(df, location)
    with pytest.raises(TypeError):
        fmt.write(pd.DataFrame({"o": pd.Series([{"k": 1}], dtype=object)}), location)
    assert sorted(os.listdir(tmp_path)) == ["keep.csv", "keep.csv" + SIDECAR_SUFFIX]
    assert_frame_equal(fmt.read(location), df)


def test_object_string_columns(tmp_path: Path, fmt: prefect_ds.Format) -> None:
    df = pd.DataFrame({"o": pd.Series(["a", None, ""], dtype=object)})
    location = str(tmp_path / "o.csv")
    fmt.write(df, location)
    assert_frame_equal(fmt.read(location), df)


def test_metadata_and_target_info_live_in_the_sidecar(tmp_path: Path) -> None:
    """The optional capabilities: ``metadata`` is written in the same atomic commit as the
    data; a sidecar that no longer matches its data file vouches for nothing."""

    fmt = get_format("csv")
    location = str(tmp_path / "m.csv")
    df = pd.DataFrame({"a": [1, 2, 3]})
    assert not getattr(type(fmt), "_metadata_sidecar", False)
    fmt.write(df, location, metadata={"fingerprint": "fp-1"})
    assert sorted(os.listdir(tmp_path)) == ["m.csv", "m.csv" + SIDECAR_SUFFIX]
    assert stored_metadata(fmt, location) == {"fingerprint": "fp-1"}
    info = fmt.target_info(location)  # type: ignore[attr-defined]
    assert (info.rows, info.bytes) == (3, os.path.getsize(location))
    assert info.modified is not None
    assert_frame_equal(fmt.read(location), df)
    fmt.write(df, location, metadata={"k": "v"}, float_format="%.1f")  # pandas path too
    assert stored_metadata(fmt, location) == {"k": "v"}
    with open(location, "a") as handle:
        handle.write("4\n")
    assert stored_metadata(fmt, location) == {}
    assert fmt.target_info(location).rows is None  # type: ignore[attr-defined]
    fmt.write(df, location)  # a plain write carries none
    assert stored_metadata(fmt, location) == {}
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a\n1\n")
    assert stored_metadata(fmt, str(foreign)) == {}
    assert fmt.target_info(str(foreign)).rows is None  # type: ignore[attr-defined]
    fmt.write(df, location, metadata={"k": "v"})
    os.remove(location)  # a sidecar left without its data file vouches for nothing
    assert stored_metadata(fmt, location) == {}


def test_an_unbound_sidecar_of_an_earlier_release_vouches_by_size(tmp_path: Path) -> None:
    """Sidecars written before binding (no ``binding``, no ``check``) vouch for a data
    file of exactly the recorded size: a shorter or longer one gets no metadata, no rows."""
    fmt = get_format("csv")
    location = str(tmp_path / "m.csv")
    fmt.write(pd.DataFrame({"a": range(1000, 1100)}), location, metadata={"k": "v"})
    sidecar = Path(location + SIDECAR_SUFFIX)
    doc = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({k: v for k, v in doc.items() if k not in ("binding", "check")}))
    assert stored_metadata(fmt, location) == {"k": "v"}
    assert fmt.target_info(location).rows == 100  # type: ignore[attr-defined]
    original = Path(location).read_bytes()  # longer than CPython's cached small ints
    for changed in (original[:-1], original + b"4\n"):
        Path(location).write_bytes(changed)
        assert stored_metadata(fmt, location) == {}
        assert fmt.target_info(location).rows is None  # type: ignore[attr-defined]
