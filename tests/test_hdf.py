"""The ``hdf`` format: exact round trips, keys, fsspec, damage detection, plain-h5py layout."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
import uuid
import zoneinfo
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from prefect_ds import CorruptTargetError, get_format, resolve_format
from prefect_ds.formats.hdf import HdfFormat, UnsupportedFrameError

N = 7


@pytest.fixture
def fmt() -> HdfFormat:
    found = get_format("hdf")
    assert isinstance(found, HdfFormat)
    return found


def roundtrip(fmt: HdfFormat, df: pd.DataFrame, location: str) -> pd.DataFrame:
    fmt.write(df, location)
    back = fmt.read(location)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    return back


COLUMNS: dict[str, pd.Series] = {
    "float64": pd.Series([0.5, np.nan, -1e300, np.inf, 0.0, -0.0, 3.25]),
    "float32": pd.Series(np.arange(N, dtype="float32") / 3),
    "float16": pd.Series(np.arange(N, dtype="float16") / 3),
    "int8": pd.Series(np.arange(N, dtype="int8") - 3),
    "int16": pd.Series(np.arange(N, dtype="int16") * 1000),
    "int32": pd.Series(np.arange(N, dtype="int32")),
    "int64": pd.Series([np.iinfo("int64").min, -1, 0, 1, 2, 3, np.iinfo("int64").max]),
    "uint8": pd.Series(np.arange(N, dtype="uint8") + 250),
    "uint64": pd.Series(np.array([0, 1, 2, 3, 4, 5, np.iinfo("uint64").max], dtype="uint64")),
    "bool": pd.Series([True, False, True, True, False, False, True]),
    "complex128": pd.Series(np.arange(N) + 1j),
    "Int64": pd.Series([1, None, 3, -4, None, 6, 7], dtype="Int64"),
    "Int8": pd.Series([1, None, 3, -4, None, 6, 7], dtype="Int8"),
    "UInt32": pd.Series([1, None, 3, 4, None, 6, 7], dtype="UInt32"),
    "boolean": pd.Series([True, None, False, True, None, False, True], dtype="boolean"),
    "Float64": pd.Series([1.5, None, np.nan, 4.0, None, 6.0, -0.0], dtype="Float64"),
    "Float32": pd.Series([1.5, None, 2.0, 4.0, None, 6.0, 7.0], dtype="Float32"),
    "datetime_ns": pd.Series(pd.date_range("2020-01-01", periods=N, freq="37ns")),
    "datetime_us_nat": pd.Series(
        pd.to_datetime(["2020-01-01", None, "1677-09-22", "2262-04-11", "1900-01-01",
                        "2000-02-29", "9999-12-31"]).as_unit("us")),
    "datetime_s": pd.Series(pd.date_range("1900-01-01", periods=N, freq="D", unit="s")),
    "datetime_ms": pd.Series(pd.date_range("2020-01-01", periods=N, freq="ms", unit="ms")),
    "datetime_tz_paris": pd.Series(
        pd.date_range("2020-03-29 00:00", periods=N, freq="h", tz="Europe/Paris")),
    "datetime_tz_utc_nat": pd.Series(
        pd.to_datetime(["2020-01-01", None, "2021-01-01", None, "2022-01-01", "2023-01-01",
                        "2024-01-01"]).tz_localize("UTC")),
    "datetime_tz_zoneinfo": pd.Series(pd.date_range(
        "2020-01-01", periods=N, tz=zoneinfo.ZoneInfo("America/New_York"), unit="s")),
    "datetime_tz_fixed": pd.Series(pd.date_range(
        "2020-01-01", periods=N, tz=datetime.timezone(datetime.timedelta(hours=-3)))),
    "timedelta_ns": pd.Series(pd.to_timedelta(np.arange(N) * 1_000_003, unit="ns")),
    "timedelta_s_nat": pd.Series(
        pd.to_timedelta([1, None, 3, 4, 5, None, -7], unit="s").as_unit("s")),
    "str": pd.Series(["a", None, "ü€😀", "", "long " * 50, "x", "a"], dtype="str"),
    "string_python": pd.Series(["a", None, "ü€😀", "", "b", "x", "a"], dtype="string[python]"),
    "string_pyarrow": pd.Series(["a", None, "ü€😀", "", "b", "x", "a"], dtype="string[pyarrow]"),
    "str_python_nan": pd.Series(
        ["a", None, "b", "", "c", "x", "y"], dtype=pd.StringDtype("python", na_value=np.nan)),
    "object_str_none": pd.Series(["a", None, "ü", "", "b", "x", "a"], dtype=object),
    "object_str_nan": pd.Series(["a", np.nan, "ü", "", "b", "x", "a"], dtype=object),
    "object_str_na": pd.Series(["a", pd.NA, "ü", "", "b", "x", "a"], dtype=object),
    "object_all_missing": pd.Series([None] * N, dtype=object),
    "category_str": pd.Series(pd.Categorical(["x", "y", None, "x", "z", "y", "x"],
                                             categories=["z", "y", "x", "unused"])),
    "category_ordered": pd.Series(pd.Categorical(["lo", "hi", "mid", "lo", None, "hi", "hi"],
                                                 categories=["lo", "mid", "hi"], ordered=True)),
    "category_int": pd.Series(pd.Categorical([3, 1, 2, 3, 1, None, 2])),
    "category_datetime": pd.Series(pd.Categorical(
        pd.to_datetime(["2020-01-01", "2021-01-01"] * 3 + ["2020-01-01"]))),
    "category_empty": pd.Series(pd.Categorical([None] * N, categories=pd.Index([], dtype=str))),
}


@pytest.mark.parametrize("name", list(COLUMNS))
def test_each_dtype_round_trips_exactly(fmt: HdfFormat, tmp_path: Path, name: str) -> None:
    df = pd.DataFrame({name: COLUMNS[name]})
    back = roundtrip(fmt, df, str(tmp_path / "one.h5"))
    assert back[name].dtype == COLUMNS[name].dtype


def test_all_dtypes_together_with_a_named_index(fmt: HdfFormat, tmp_path: Path) -> None:
    df = pd.DataFrame(COLUMNS)
    df.index = pd.Index([f"row{i}" for i in range(N)], name="row")
    df.columns.name = "field"
    roundtrip(fmt, df, str(tmp_path / "all.h5"))


@pytest.mark.parametrize("index", [
    pd.RangeIndex(0, N),
    pd.RangeIndex(10, 10 + 3 * N, 3, name="step3"),
    pd.RangeIndex(N, 0, -1),
    pd.Index(np.arange(N) * 2, name="even"),
    pd.Index(list("abcdefg"), name="letters"),
    pd.Index(list("abcdefg"), dtype=object, name="objects"),
    pd.date_range("2020-01-01", periods=N, tz="Europe/Paris", name="when"),
    pd.CategoricalIndex(list("abcabca"), name="cat"),
    pd.Index([1.5, 2.5, 3.5, np.nan, 5.5, 6.5, 7.5]),
    pd.MultiIndex.from_arrays([list("aabbccd"), np.arange(N)], names=["k", "n"]),
    pd.MultiIndex.from_arrays(
        [pd.date_range("2020", periods=N, tz="UTC"), list("abcdefg")], names=["t", None]),
], ids=lambda index: f"{type(index).__name__}-{index.dtype}")
def test_index_kinds_round_trip(fmt: HdfFormat, tmp_path: Path, index: pd.Index) -> None:
    df = pd.DataFrame({"v": np.arange(N)}, index=index)
    roundtrip(fmt, df, str(tmp_path / "index.h5"))


@pytest.mark.parametrize("df", [
    pd.DataFrame(),
    pd.DataFrame(index=pd.Index(["a", "b"], name="only_index")),
    pd.DataFrame({name: COLUMNS[name] for name in ["str", "category_str", "Int64"]}).iloc[:0],
    pd.DataFrame({"a": [1]}, index=pd.Index([1], dtype="int64")).iloc[:0],
    pd.DataFrame({"x": [1, 2]}, columns=pd.Index(["x"], dtype=object)),
], ids=["empty", "no-columns", "no-rows", "no-rows-int-index", "object-column-index"])
def test_edge_shapes_round_trip(fmt: HdfFormat, tmp_path: Path, df: pd.DataFrame) -> None:
    roundtrip(fmt, df, str(tmp_path / "edge.h5"))


def test_unicode_and_odd_column_names(fmt: HdfFormat, tmp_path: Path) -> None:
    df = pd.DataFrame({"größe ü": [1], " spaced ": [2], "a.b": [3], "..": [4], "#x": [5]})
    roundtrip(fmt, df, str(tmp_path / "names.h5"))


def test_large_string_column(fmt: HdfFormat, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    words = np.array(["", "a", "bb", "ü" * 40, "😀"])
    df = pd.DataFrame({"s": pd.Series(words[rng.integers(0, 5, 50_000)]).astype("str")})
    df.loc[rng.integers(0, 50_000, 1000), "s"] = None
    roundtrip(fmt, df, str(tmp_path / "big.h5"))


@pytest.mark.slow
def test_more_columns_than_a_compact_attribute_holds(fmt: HdfFormat, tmp_path: Path) -> None:
    # Over 4096 names no longer fit HDF5's 64 KiB compact attribute; the file format
    # version we write (1.8+) stores them densely instead.
    wide = pd.DataFrame(np.zeros((1, 4200)), columns=[f"c{i}" for i in range(4200)])
    roundtrip(fmt, wide, str(tmp_path / "wide.h5"))


def test_read_columns_subset(fmt: HdfFormat, tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [1.5, 2.5]})
    loc = str(tmp_path / "subset.h5")
    fmt.write(df, loc)
    pd.testing.assert_frame_equal(fmt.read(loc, columns=["c", "a"]), df[["c", "a"]])
    with pytest.raises(KeyError, match=r"no column\(s\) \['zz'\]"):
        fmt.read(loc, columns=["zz"])
    with pytest.raises(TypeError, match="columns"):
        fmt.read(loc, where="a > 1")


def test_write_options_compress(fmt: HdfFormat, tmp_path: Path) -> None:
    df = pd.DataFrame({"z": np.zeros(100_000), "s": ["same"] * 100_000})
    plain, packed = str(tmp_path / "plain.h5"), str(tmp_path / "gzip.h5")
    fmt.write(df, plain)
    fmt.write(df, packed, compression="gzip", shuffle=True)
    assert os.path.getsize(packed) < os.path.getsize(plain) / 10
    pd.testing.assert_frame_equal(fmt.read(packed), df)
    with pytest.raises(TypeError, match="mode"):
        fmt.write(df, plain, mode="a")


# --------------------------------------------------------------------------- keys


def test_many_keys_in_one_file(fmt: HdfFormat, tmp_path: Path) -> None:
    path = tmp_path / "many.h5"
    frames = {
        "": pd.DataFrame({"default": [1]}),
        "#a": pd.DataFrame({"a": ["x", "y"]}),
        "#group/b": pd.DataFrame({"b": pd.Categorical(["p", "q"])}),
        "#group/deeper/c": pd.DataFrame({"c": [1.5]}),
    }
    for fragment, df in frames.items():
        fmt.write(df, f"{path}{fragment}")
    for fragment, df in frames.items():
        pd.testing.assert_frame_equal(fmt.read(f"{path}{fragment}"), df)
        assert fmt.exists(f"{path}{fragment}")
    pd.testing.assert_frame_equal(fmt.read(f"{path}#data"), frames[""])
    pd.testing.assert_frame_equal(fmt.read(f"{path}#/group/b/"), frames["#group/b"])

    replaced = pd.DataFrame({"b": ["new"]})
    fmt.write(replaced, f"{path}#group/b")
    pd.testing.assert_frame_equal(fmt.read(f"{path}#group/b"), replaced)
    for fragment in ["", "#a", "#group/deeper/c"]:
        pd.testing.assert_frame_equal(fmt.read(f"{path}{fragment}"), frames[fragment])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.h5"]  # no temp left behind


def test_rewriting_a_key_does_not_grow_the_file(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = str(tmp_path / "grow.h5")
    fmt.write(pd.DataFrame({"other": np.arange(1000)}), f"{loc}#keep")
    df = pd.DataFrame({"x": np.arange(100_000)})
    fmt.write(df, loc)
    size = os.path.getsize(loc)
    for _ in range(3):
        fmt.write(df, loc)
    assert os.path.getsize(loc) <= size


def test_exists_and_delete_per_key(fmt: HdfFormat, tmp_path: Path) -> None:
    path = tmp_path / "keys.h5"
    one, two = f"{path}#one", f"{path}#nested/two"
    assert not fmt.exists(one)
    fmt.delete(one)  # nothing there: no error
    fmt.write(pd.DataFrame({"v": [1]}), one)
    fmt.write(pd.DataFrame({"v": [2]}), two)
    assert fmt.exists(one) and fmt.exists(two) and not fmt.exists(f"{path}#three")
    assert not fmt.exists(str(path))  # the default key "data" was never written

    fmt.delete(two)
    assert not fmt.exists(two) and fmt.exists(one)
    with h5py.File(path) as handle:
        assert list(handle) == ["one"]  # the emptied group "nested" went too
    fmt.delete(two)  # already gone: no error
    fmt.delete(one)
    assert not path.exists()  # the last frame took the file with it
    assert list(tmp_path.iterdir()) == []


def test_keys_that_would_clobber_other_objects_are_refused(fmt: HdfFormat,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "nest.h5"
    fmt.write(pd.DataFrame({"v": [1]}), f"{path}#frame")
    fmt.write(pd.DataFrame({"v": [2]}), f"{path}#group/inner")
    with pytest.raises(ValueError, match="already a frame"):
        fmt.write(pd.DataFrame({"v": [3]}), f"{path}#frame/below")
    with pytest.raises(ValueError, match="not a prefect-ds frame"):
        fmt.write(pd.DataFrame({"v": [3]}), f"{path}#group")
    with pytest.raises(ValueError, match="not a prefect-ds frame"):
        fmt.delete(f"{path}#group")
    for bad in ["a//b", "a/../b", "./a"]:
        with pytest.raises(ValueError, match="not a valid HDF5 path"):
            fmt.write(pd.DataFrame({"v": [3]}), f"{path}#{bad}")
    pd.testing.assert_frame_equal(fmt.read(f"{path}#group/inner"), pd.DataFrame({"v": [2]}))
    with pytest.raises(FileNotFoundError, match=r"holds: frame, group/inner"):
        fmt.read(f"{path}#missing")
    with pytest.raises(FileNotFoundError, match="no HDF5 file"):
        fmt.read(str(tmp_path / "absent.h5"))


def test_threads_writing_keys_of_one_file_keep_every_key(fmt: HdfFormat,
                                                         tmp_path: Path) -> None:
    loc = str(tmp_path / "threads.h5")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            fmt.write(pd.DataFrame({"i": [i] * 1000}), f"{loc}#k{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(8):
        assert fmt.read(f"{loc}#k{i}")["i"].tolist() == [i] * 1000


WRITER = """
import sys
import pandas as pd
from prefect_ds import get_format
fmt = get_format("hdf")
path, i = sys.argv[1], int(sys.argv[2])
for j in range(3):
    fmt.write(pd.DataFrame({"v": [i * 10 + j] * 500}), f"{path}#p{i}/k{j}")
"""


def test_processes_writing_keys_of_one_file_keep_every_key(fmt: HdfFormat,
                                                           tmp_path: Path) -> None:
    loc = str(tmp_path / "procs.h5")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, loc, str(i)]) for i in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 3
    for i in range(3):
        for j in range(3):
            assert fmt.read(f"{loc}#p{i}/k{j}")["v"].iloc[0] == i * 10 + j
    assert sorted(p.name for p in tmp_path.iterdir()) == ["procs.h5"]  # no lock, no temp


def test_failed_write_leaves_the_old_file_intact(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = str(tmp_path / "keep.h5")
    old = pd.DataFrame({"v": [1, 2, 3]})
    fmt.write(old, loc)
    before = Path(loc).read_bytes()
    with pytest.raises(ValueError):  # h5py rejects the filter while the new file is written
        fmt.write(pd.DataFrame({"v": [9]}), loc, compression="no-such-filter")
    assert Path(loc).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5"]
    pd.testing.assert_frame_equal(fmt.read(loc), old)


# --------------------------------------------------------------------------- fsspec


def test_memory_filesystem(fmt: HdfFormat) -> None:
    base = f"memory://prefect-ds-test/{uuid.uuid4().hex}/store.h5"
    df = pd.DataFrame(COLUMNS)
    assert not fmt.exists(base)
    fmt.write(df, base)
    fmt.write(df.iloc[:3], f"{base}#head")
    pd.testing.assert_frame_equal(fmt.read(base), df)
    pd.testing.assert_frame_equal(fmt.read(f"{base}#head"), df.iloc[:3])
    assert fmt.exists(base) and fmt.exists(f"{base}#head")
    fs = fsspec.filesystem("memory")
    assert fs.ls(base.rsplit("/", 1)[0].removeprefix("memory://"), detail=False) == [
        base.removeprefix("memory:/")]
    fmt.delete(base)
    assert not fmt.exists(base) and fmt.exists(f"{base}#head")
    fmt.delete(f"{base}#head")
    assert not fs.exists(base)


def test_resolved_by_suffix() -> None:
    for suffix in (".h5", ".hdf5", ".hdf", ".H5"):
        assert resolve_format(f"out/x{suffix}#k").name == "hdf"


def test_s3_keys(fmt: HdfFormat, s3_bucket: str) -> None:
    base = f"{s3_bucket}/frames/store.h5"
    one, two = pd.DataFrame(COLUMNS), pd.DataFrame({"v": [1, 2]})
    fmt.write(one, f"{base}#one")
    fmt.write(two, f"{base}#sub/two")
    assert fmt.exists(f"{base}#one") and fmt.exists(f"{base}#sub/two")
    assert not fmt.exists(base)
    pd.testing.assert_frame_equal(fmt.read(f"{base}#one"), one)
    pd.testing.assert_frame_equal(fmt.read(f"{base}#sub/two", columns=["v"]), two)
    fmt.delete(f"{base}#one")
    assert not fmt.exists(f"{base}#one") and fmt.exists(f"{base}#sub/two")
    fmt.delete(f"{base}#sub/two")
    fs, path = fsspec.core.url_to_fs(base)
    assert not fs.exists(path)


# --------------------------------------------------------------------------- damage


def test_truncated_file(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = tmp_path / "cut.h5"
    fmt.write(pd.DataFrame({"v": np.arange(100_000)}), str(loc))
    data = loc.read_bytes()
    loc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptTargetError, match=r"cut\.h5.*not a readable HDF5 file"):
        fmt.read(str(loc))
    with pytest.raises(CorruptTargetError, match="truncated"):
        fmt.exists(str(loc))
    with pytest.raises(CorruptTargetError):  # other keys may be in there: never overwritten
        fmt.write(pd.DataFrame({"v": [1]}), f"{loc}#other")


def test_checksums_catch_flipped_bits(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = tmp_path / "sums.h5"
    df = pd.DataFrame({"v": np.arange(10_000, dtype="int64")})
    fmt.write(df, str(loc), fletcher32=True)
    with h5py.File(loc) as f:
        start = f["data/columns/v"].id.get_chunk_info(0).byte_offset
    raw = bytearray(loc.read_bytes())
    raw[start + 800] ^= 0x01
    loc.write_bytes(bytes(raw))
    with pytest.raises(CorruptTargetError, match="damaged"):
        fmt.read(str(loc))


def test_incomplete_frame_does_not_exist(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = damage(tmp_path, fmt, "incomplete")
    assert not fmt.exists(loc)


def test_garbage_file(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = tmp_path / "junk.h5"
    loc.write_bytes(b"this is not hdf5 at all" * 100)
    with pytest.raises(CorruptTargetError, match=r"junk\.h5.*Delete it"):
        fmt.read(str(loc))
    loc.write_bytes(b"")
    with pytest.raises(CorruptTargetError):
        fmt.read(str(loc))


def damage(tmp_path: Path, fmt: HdfFormat, change: str) -> str:
    """Write a small frame, then apply ``change`` to the file with plain h5py."""
    loc = str(tmp_path / f"{change}.h5")
    df = pd.DataFrame({"num": [1.0, 2.0, 3.0], "text": ["a", "bb", None],
                       "cat": pd.Categorical(["x", "y", "x"]),
                       "nullable": pd.array([1, None, 3], dtype="Int64")})
    fmt.write(df, loc)
    with h5py.File(loc, "r+") as f:
        g = f["data"]
        if change == "missing_column":
            del g["columns/num"]
        elif change == "missing_index":
            del g["index"]
        elif change == "incomplete":
            del g.attrs["complete"]
        elif change == "short_column":
            del g["columns/num"]
            g["columns"].create_dataset("num", data=[1.0, 2.0]).attrs.update(
                {"kind": "plain", "dtype": "float64"})
        elif change == "wrong_dtype":
            g["columns/num"].attrs["dtype"] = "int64"
        elif change == "bad_offsets":
            g["columns/text/offsets"][1] = 100
        elif change == "codes_out_of_range":
            g["columns/cat/codes"][0] = 7
        elif change == "unknown_kind":
            g["columns/num"].attrs["kind"] = "mystery"
        elif change == "missing_mask":
            del g["columns/nullable/mask"]
        elif change == "bad_nrows":
            g.attrs["nrows"] = "three"
        elif change == "newer_layout":
            g.attrs["layout_version"] = 99
        elif change == "invalid_utf8":
            g["columns/text/data"][0] = 0xFF
            g["columns/text"].attrs["storage"] = "python"
    return loc


@pytest.mark.parametrize(("change", "message"), [
    ("missing_column", "column 'num'.*missing"),
    ("missing_index", "index"),
    ("incomplete", "never completed"),
    ("short_column", "column 'num' has 2 rows, the frame 3"),
    ("wrong_dtype", "stored as float64, the layout says int64"),
    ("bad_offsets", "offsets are inconsistent"),
    ("codes_out_of_range", "column 'cat'"),
    ("unknown_kind", "unknown column kind 'mystery'"),
    ("missing_mask", "dataset 'mask' is missing"),
    ("bad_nrows", "'nrows'"),
    ("newer_layout", "upgrade prefect-ds"),
    ("invalid_utf8", "column 'text'"),
])
def test_damaged_frames_raise_corrupt_target(fmt: HdfFormat, tmp_path: Path, change: str,
                                             message: str) -> None:
    loc = damage(tmp_path, fmt, change)
    with pytest.raises(CorruptTargetError, match=rf"{change}\.h5.*damaged: .*{message}"):
        fmt.read(loc)


# --------------------------------------------------------------------------- bad input


class Opaque:
    pass


@pytest.mark.parametrize(("df", "message"), [
    (pd.DataFrame({"m": ["a", 1, 2.5]}), r"column 'm' is an object column holding mixed"),
    (pd.DataFrame({"b": [b"raw", b"bytes"]}), r"column 'b' .*holding bytes"),
    (pd.DataFrame({"o": [Opaque(), Opaque()]}), r"column 'o' is an object column"),
    (pd.DataFrame([[1, 2]], columns=["a", "a"]), r"duplicate column names \['a'\]"),
    (pd.DataFrame({0: [1], 1: [2]}), r"string column names.*astype\(str\)"),
    (pd.DataFrame({"a": [1], 5: [2]}), r"column 5 has a int name"),
    (pd.DataFrame({"a/b": [1]}), r"column 'a/b' cannot be an HDF5 dataset name"),
    (pd.DataFrame({"": [1]}), r"column '' cannot be"),
    (pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
     "MultiIndex columns"),
    (pd.DataFrame({"p": pd.period_range("2020", periods=2, freq="M")}),
     r"column 'p' has dtype period\[M\].*parquet"),
    (pd.DataFrame({"i": pd.arrays.IntervalArray.from_breaks([0, 1, 2])}), "column 'i'"),
    (pd.DataFrame({"a": pd.array([1, 2], dtype="int64[pyarrow]")}), "column 'a' has dtype"),
    (pd.DataFrame({"v": [1]}, index=pd.Index([1], name=("a", 3))),
     r"the name of index level 0 .* is \('a', 3\)"),
    (pd.DataFrame({"v": [1]}, index=pd.Index([object()])), "index level 0"),
], ids=["mixed", "bytes", "objects", "duplicates", "int-names", "mixed-names", "slash",
        "empty-name", "multiindex-columns", "period", "interval", "arrow", "index-name",
        "index-objects"])
def test_unsupported_frames_fail_before_writing(fmt: HdfFormat, tmp_path: Path,
                                                df: pd.DataFrame, message: str) -> None:
    loc = tmp_path / "out.h5"
    fmt.write(pd.DataFrame({"keep": [1]}), f"{loc}#keep")
    before = loc.read_bytes()
    with pytest.raises(UnsupportedFrameError, match=message):
        fmt.write(df, str(loc))
    assert loc.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_unrestorable_time_zone_is_refused(fmt: HdfFormat, tmp_path: Path) -> None:
    dateutil_tz = pytest.importorskip("dateutil.tz")
    df = pd.DataFrame({"t": pd.date_range("2020", periods=2, tz=dateutil_tz.tzoffset("X", 60))})
    with pytest.raises(UnsupportedFrameError, match=r"column 't' has time zone.*tz_convert"):
        fmt.write(df, str(tmp_path / "tz.h5"))


def test_not_a_frame(fmt: HdfFormat, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="got Series"):
        fmt.write(pd.Series([1]), str(tmp_path / "s.h5"))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- layout


def test_plain_h5py_reads_the_documented_layout(fmt: HdfFormat, tmp_path: Path) -> None:
    df = pd.DataFrame({
        "price": [1.5, 2.5, np.nan],
        "name": pd.array(["a", None, "ü"], dtype="str"),
        "when": pd.to_datetime(["2020-01-01", "2020-01-02", None]).tz_localize("Europe/Paris"),
        "region": pd.Categorical(["n", "s", "n"]),
        "qty": pd.array([1, None, 3], dtype="Int64"),
    }, index=pd.Index([10, 20, 30], name="id"))
    loc = tmp_path / "layout.h5"
    fmt.write(df, f"{loc}#results/day1")
    with h5py.File(loc, "r") as f:
        g = f["results/day1"]
        assert g.attrs["layout"] == "prefect-ds frame"
        assert g.attrs["layout_version"] == 1 and g.attrs["nrows"] == 3
        assert bool(g.attrs["complete"])
        assert list(g.attrs["columns"]) == ["price", "name", "when", "region", "qty"]
        assert g["index"].attrs["kind"] == "levels" and g["index"].attrs["nlevels"] == 1
        assert g["index/level_0"].attrs["name"] == "id"
        assert g["index/level_0"][()].tolist() == [10, 20, 30]

        price = g["columns/price"]
        assert price.attrs["kind"] == "plain" and price.attrs["dtype"] == "float64"
        assert np.array_equal(price[()], [1.5, 2.5, np.nan], equal_nan=True)

        name = g["columns/name"]
        assert (name.attrs["kind"], name.attrs["storage"]) == ("string", "pyarrow")
        offsets, blob, mask = name["offsets"][()], name["data"][()].tobytes(), name["mask"][()]
        texts = [None if m else blob[offsets[i]:offsets[i + 1]].decode()
                 for i, m in enumerate(mask)]
        assert texts == ["a", None, "ü"]

        when = g["columns/when"]
        assert when.attrs["kind"] == "datetime" and when.attrs["unit"] == "us"
        assert when.attrs["tz"] == "Europe/Paris"
        assert when[0] == pd.Timestamp("2020-01-01", tz="Europe/Paris").value // 1000
        assert when[2] == np.iinfo("int64").min  # NaT

        region = g["columns/region"]
        assert region.attrs["kind"] == "category" and not region.attrs["ordered"]
        assert region["codes"][()].tolist() == [0, 1, 0]
        assert region["categories"].attrs["kind"] == "string"

        qty = g["columns/qty"]
        assert qty.attrs["kind"] == "masked" and qty.attrs["dtype"] == "Int64"
        assert qty["mask"][()].tolist() == [False, True, False]
        assert qty["values"][()].tolist() == [1, 0, 3]


def test_range_index_is_only_attributes(fmt: HdfFormat, tmp_path: Path) -> None:
    loc = tmp_path / "range.h5"
    fmt.write(pd.DataFrame({"v": [1, 2]}, index=pd.RangeIndex(5, 9, 2, name="r")), str(loc))
    with h5py.File(loc, "r") as f:
        index = f["data/index"]
        assert dict(index.attrs) == {"kind": "range", "start": 5, "stop": 9, "step": 2,
                                     "name": "r"}
        assert len(index) == 0


# --------------------------------------------------------------------------- property


frames = hpd.data_frames(
    columns=[
        hpd.column("f", dtype=float),
        hpd.column("i", dtype="int32"),
        hpd.column("b", dtype=bool),
        hpd.column("s", elements=st.one_of(st.none(), st.text(max_size=8))),
        hpd.column("t", dtype="datetime64[ns]"),
    ],
    index=hpd.range_indexes(max_size=20),
)


@given(df=frames, as_category=st.booleans())
def test_property_round_trip(tmp_path_factory: pytest.TempPathFactory, df: pd.DataFrame,
                             as_category: bool) -> None:
    df = df.copy()
    df["s"] = df["s"].astype("category" if as_category else "str")
    df["s_object"] = df["s"].astype(object).where(df["s"].notna(), None)
    fmt = get_format("hdf")
    loc = str(tmp_path_factory.mktemp("prop") / "p.h5")
    fmt.write(df, loc)
    pd.testing.assert_frame_equal(fmt.read(loc), df, check_exact=True)
