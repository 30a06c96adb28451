"""A multi-file target commits in one step and never yields a frame no writer wrote.

Crashes between the two renames of an overwrite, plain readers looping while other
processes overwrite, sidecars edited by hand, copied targets, and racing writers - on
the csv format (data + schema sidecar), a third-party-style format whose metadata goes
to a ``.prefect-ds.json`` sidecar, and multi-key HDF files.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from prefect_ds import CorruptTargetError, FileFormat, PandasResultHandler, get_format
from prefect_ds._storage import binding
from prefect_ds._storage import files as _files
from prefect_ds._storage.files import open_for_read, staged
from prefect_ds._storage.locks import is_held_here, lock_path

FORK = multiprocessing.get_context("fork")
SPAWN = multiprocessing.get_context("spawn")  # writers that must not inherit a Prefect run
READS = 2000 if os.environ.get("PREFECT_DS_FULL") else 150  # reads while others overwrite

# Same byte size on disk, different dtypes: "100" (int64) and "1.5" (float64).
INTS = pd.DataFrame({"x": [100] * 50})
FLOATS = pd.DataFrame({"x": [1.5] * 50})


class Arrow(FileFormat):
    """A third-party-style file format: its write takes no metadata (sidecar wrapper)."""

    name = "arrow-test"
    suffixes = (".arrowtest",)

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        with staged(location, **self.storage_options) as (temp,):
            feather.write_feather(df, temp)

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        with open_for_read(location, **self.storage_options) as source:
            return feather.read_feather(source)


class DirectArrow(Arrow):
    """Writes without staged(): the sidecar is bound to what it wrote, under the lock."""

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        feather.write_feather(df, location)


def _crash_after_first_rename(fmt: Any, df: pd.DataFrame, location: str,
                              metadata: dict[str, str] | None) -> None:
    """Child: overwrite, and die (os._exit) right after the first of the two renames."""
    real = os.replace

    def replace_then_die(src: Any, dst: Any) -> None:
        real(src, dst)
        os._exit(17)

    _files.os.replace = replace_then_die  # type: ignore[attr-defined]
    if metadata is None:
        fmt.write(df, location)
    else:
        fmt.write(df, location, metadata=metadata)
    os._exit(0)


def crash_between_renames(fmt: Any, df: pd.DataFrame, location: str,
                          metadata: dict[str, str] | None = None) -> None:
    child = FORK.Process(target=_crash_after_first_rename, args=(fmt, df, location, metadata))
    child.start()
    child.join(60)
    assert child.exitcode == 17, "the writer did not die between its renames"


# --- crash between the two renames -------------------------------------------------


def test_csv_crash_between_renames_int_to_float_same_size(tmp_path: Path) -> None:
    fmt = get_format("csv")
    location = str(tmp_path / "t.csv")
    fmt.write(FLOATS.head(1), str(tmp_path / "new.csv"))
    fmt.write(INTS.head(1), location)
    old = Path(location).read_bytes()
    assert len(old) == len(Path(tmp_path / "new.csv").read_bytes())  # same size
    crash_between_renames(fmt, FLOATS.head(1), location)
    assert Path(location).read_bytes() == old  # the old data beside the new sidecar
    with pytest.raises(CorruptTargetError, match="not the one its schema sidecar"):
        fmt.read(location)
    assert fmt.read_metadata(location) == {}
    assert fmt.target_info(location).rows is None  # no row count vouched for


@pytest.mark.parametrize("old, new", [
    (pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [True, False]})),
    (pd.DataFrame({"x": ["ab"]}), pd.DataFrame({"x": [12]})),
    (pd.DataFrame({"a": [1], "b": [2]}), pd.DataFrame({"b": [1], "a": [2]})),
    (pd.DataFrame({"x": pd.Categorical(["a", "b"])}),
     pd.DataFrame({"x": pd.Categorical(["b", "a"], categories=["b", "a"])})),
])
def test_csv_crash_between_renames_never_blends(tmp_path: Path, old: pd.DataFrame,
                                                new: pd.DataFrame) -> None:
    fmt = get_format("csv")
    location = str(tmp_path / "t.csv")
    fmt.write(old, location)
    crash_between_renames(fmt, new, location)
    try:
        back = fmt.read(location)
    except CorruptTargetError:
        return
    assert_frame_equal(back, old)  # only if the sidecar still describes the old data


def test_csv_rewrite_after_crash_is_whole_again(tmp_path: Path) -> None:
    fmt = get_format("csv")
    location = str(tmp_path / "t.csv")
    fmt.write(INTS, location)
    crash_between_renames(fmt, FLOATS, location)
    fmt.write(FLOATS, location)
    assert_frame_equal(fmt.read(location), FLOATS)


def test_csv_data_replaced_between_its_check_and_its_open_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader checks the data file's identity, opens it, and checks again: a file
    renamed into place in between (same size, same dtype) is never read as the target."""
    import prefect_ds.formats.csv as csv_module

    fmt = get_format("csv")
    location, other = str(tmp_path / "t.csv"), str(tmp_path / "other.csv")
    fmt.write(INTS, location)
    fmt.write(INTS * 2, other)
    assert os.path.getsize(location) == os.path.getsize(other)
    real = csv_module.pa.OSFile
    swapped: list[str] = []

    def open_after_a_swap(path: str, *args: Any, **kwargs: Any) -> Any:
        if not swapped:
            swapped.append(path)
            os.replace(other, location)  # another writer's data lands first
        return real(path, *args, **kwargs)

    monkeypatch.setattr(csv_module.pa, "OSFile", open_after_a_swap)
    with pytest.raises(CorruptTargetError, match="not the one"):
        fmt.read(location)
    assert swapped == [location]


def test_metadata_sidecar_crash_between_renames_vouches_for_nothing(tmp_path: Path) -> None:
    fmt = Arrow()
    location = str(tmp_path / "t.arrowtest")
    fmt.write(INTS, location, metadata={"fingerprint": "old"})
    assert fmt.read_metadata(location) == {"fingerprint": "old"}
    crash_between_renames(fmt, FLOATS, location, {"fingerprint": "new"})
    assert_frame_equal(fmt.read(location), INTS)  # the old data is untouched...
    assert fmt.read_metadata(location) == {}  # ...and the new sidecar does not vouch for it


@contextlib.contextmanager
def recorded_renames(held: str | None = None) -> Iterator[list[str]]:
    """The names the commit renames into place, in order (with ``held``: each rename
    checks that this lock is held)."""
    renames: list[str] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        if held is not None:
            assert is_held_here(held), f"{dst} renamed without the target's lock"
        renames.append(Path(dst).name)
        real(src, dst)

    _files.os.replace = spy  # type: ignore[attr-defined]
    try:
        yield renames
    finally:
        _files.os.replace = real  # type: ignore[attr-defined]


def test_metadata_sidecar_is_committed_with_the_data(tmp_path: Path) -> None:
    fmt = Arrow()
    location = str(tmp_path / "t.arrowtest")
    with recorded_renames() as renames:
        fmt.write(INTS, location, metadata={"k": "v"})
    assert renames == ["t.arrowtest.prefect-ds.json", "t.arrowtest"]  # one commit
    doc = json.loads(Path(location + ".prefect-ds.json").read_text())
    assert doc["data"]["ino"] == Path(location).stat().st_ino  # bound before committing


class ArrowWithIndex(Arrow):
    """A format with a sidecar of its own (an index file) staged before its data."""

    name = "arrow-index-test"

    def sidecars(self, location: str) -> list[str]:
        return [location + ".idx"]

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        with staged(location + ".idx", location, **self.storage_options) as (index, temp):
            Path(index).write_text(str(len(df)))
            feather.write_feather(df, temp)


def test_metadata_sidecar_joins_a_multi_file_commit_bound_to_its_data(tmp_path: Path) -> None:
    """The metadata sidecar goes into the same commit as the format's own files, bound to
    the data file (the last one), renamed before it and under the target's lock."""
    fmt = ArrowWithIndex()
    location = str(tmp_path / "t.arrowtest")
    with recorded_renames(os.path.abspath(lock_path(location))) as renames:
        fmt.write(INTS, location, metadata={"k": "v"})
    assert renames == ["t.arrowtest.idx", "t.arrowtest.prefect-ds.json", "t.arrowtest"]
    doc = json.loads(Path(location + ".prefect-ds.json").read_text())
    assert doc["data"]["ino"] == Path(location).stat().st_ino
    assert fmt.read_metadata(location) == {"k": "v"}


def test_metadata_sidecar_of_a_format_writing_directly_is_bound(tmp_path: Path) -> None:
    fmt = DirectArrow()
    location = str(tmp_path / "t.arrowtest")
    fmt.write(INTS, location, metadata={"k": "v"})
    assert fmt.read_metadata(location) == {"k": "v"}
    doc = json.loads(Path(location + ".prefect-ds.json").read_text())
    assert doc["data"]["ino"] == Path(location).stat().st_ino  # one fstat checks it
    feather.write_feather(FLOATS, location)  # replaced behind its back
    assert fmt.read_metadata(location) == {}


@pytest.mark.parametrize("edit", ["metadata", "data", "version", "drop-check"])
def test_edited_metadata_sidecar_vouches_for_nothing(tmp_path: Path, edit: str) -> None:
    fmt = Arrow()
    location = str(tmp_path / "t.arrowtest")
    fmt.write(INTS, location, metadata={"fingerprint": "abc"})
    side = Path(location + ".prefect-ds.json")
    doc = json.loads(side.read_text())
    if edit == "metadata":
        doc["metadata"]["fingerprint"] = "forged"
    elif edit == "data":
        doc["data"]["size"] += 1
    elif edit == "version":
        doc["version"] = 99
    else:
        del doc["check"]
    side.write_text(json.dumps(doc))
    assert fmt.read_metadata(location) == {}


# --- sidecars edited by hand -----------------------------------------------------


def _edit(sidecar: Path, change: Any) -> None:
    doc = json.loads(sidecar.read_text())
    change(doc)
    sidecar.write_text(json.dumps(doc))


EDITS = {
    "rows 0": lambda d: d.__setitem__("rows", 0),
    "rows + 1": lambda d: d.__setitem__("rows", d["rows"] + 1),
    "bytes": lambda d: d.__setitem__("bytes", d["bytes"] + 1),
    "delimiter": lambda d: d.__setitem__("delimiter", ";"),
    "header off": lambda d: d.__setitem__("header", False),
    "metadata": lambda d: d.__setitem__("metadata", {"fingerprint": "forged"}),
    "binding size": lambda d: d["binding"].__setitem__("size", 1),
    "binding digest": lambda d: d["binding"].__setitem__("sha256", "0" * 64),
    "check dropped": lambda d: d.pop("check"),
    "check forged": lambda d: d.__setitem__("check", "0" * 64),
    "binding dropped": lambda d: d.pop("binding"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_editing_a_csv_sidecar_is_caught(tmp_path: Path, edit: str) -> None:
    fmt = get_format("csv")
    location = str(tmp_path / "t.csv")
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    fmt.write(df, location, metadata={"fingerprint": "real"})
    _edit(Path(location + ".schema.json"), EDITS[edit])
    with pytest.raises(CorruptTargetError):
        fmt.read(location)
    with pytest.raises(CorruptTargetError):
        fmt.read_metadata(location)


def test_rows_zero_cannot_hide_rows_even_without_a_seal(tmp_path: Path) -> None:
    """A sidecar stripped down to the unsealed form still cannot claim zero rows."""
    fmt = get_format("csv")
    location = str(tmp_path / "t.csv")
    fmt.write(pd.DataFrame({"x": [1, 2, 3]}), location)

    def strip(doc: dict[str, Any]) -> None:
        doc.pop("check")
        doc.pop("binding")
        doc["rows"] = 2

    _edit(Path(location + ".schema.json"), strip)
    with pytest.raises(CorruptTargetError):
        fmt.read(location)


def test_copied_csv_target_still_reads(tmp_path: Path) -> None:
    """A copy has a new inode and time; its digest still binds it to its sidecar."""
    fmt = get_format("csv")
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", None]})
    fmt.write(df, str(tmp_path / "a" / "t.csv"), metadata={"k": "v"})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = str(tmp_path / "b" / "t.csv")
    assert_frame_equal(fmt.read(copy), df)
    assert fmt.read_metadata(copy) == {"k": "v"}
    assert fmt.target_info(copy).rows == 3


def test_copied_metadata_sidecar_target_still_vouches(tmp_path: Path) -> None:
    fmt = Arrow()
    fmt.write(INTS, str(tmp_path / "a" / "t.arrowtest"), metadata={"k": "v"})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert fmt.read_metadata(str(tmp_path / "b" / "t.arrowtest")) == {"k": "v"}


def test_a_version_1_metadata_sidecar_vouches_only_for_its_unchanged_file(tmp_path: Path) -> None:
    """Sidecars of earlier releases (version 1) recorded size, mtime and inode as text:
    they still vouch for that very file, and for nothing once it was rewritten."""
    fmt = Arrow()
    location = str(tmp_path / "t.arrowtest")
    fmt.write(INTS, location)
    st = os.stat(location)
    old = json.dumps({"version": 1, "metadata": {"k": "v"},
                      "data": {"size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns),
                               "ino": str(st.st_ino)}})
    Path(location + ".prefect-ds.json").write_text(old)
    assert fmt.read_metadata(location) == {"k": "v"}
    Path(location + ".prefect-ds.json").write_text(old.replace('"version": 1', '"version": 0'))
    assert fmt.read_metadata(location) == {}  # a version it does not know vouches for nothing
    fmt.write(FLOATS, location)  # same size, another file
    Path(location + ".prefect-ds.json").write_text(old)
    assert fmt.read_metadata(location) == {}


def test_a_version_1_sidecar_on_an_object_store_vouches_only_for_its_object() -> None:
    """Version 1 kept an object's info fields (here memory://'s size and created) as text."""
    import fsspec

    fmt = Arrow()
    location = f"memory://v1-{os.getpid()}/t.arrowtest"
    fmt.write(INTS, location)
    fs = fsspec.filesystem("memory")
    path = location.removeprefix("memory:/")
    info = fs.info(path)
    old = json.dumps({"version": 1, "metadata": {"k": "v"},
                      "data": {"size": str(info["size"]), "created": str(info["created"])}})
    fs.pipe_file(path + ".prefect-ds.json", old.encode())
    assert fmt.read_metadata(location) == {"k": "v"}
    fmt.write(FLOATS, location)  # a new object
    fs.pipe_file(path + ".prefect-ds.json", old.encode())
    assert fmt.read_metadata(location) == {}


def test_a_sidecar_of_a_later_version_vouches_for_nothing(tmp_path: Path) -> None:
    """Even sealed and bound to the very file: its fields may mean something else."""
    fmt = Arrow()
    location = str(tmp_path / "t.arrowtest")
    fmt.write(INTS, location, metadata={"k": "v"})
    sidecar = Path(location + ".prefect-ds.json")
    doc = json.loads(sidecar.read_text())
    assert doc["version"] == 2  # what this release writes and earlier ones read
    for version in (doc["version"] + 1, 0):  # a later version, and one that never was
        sidecar.write_text(json.dumps(binding.seal({**doc, "version": version})))
        assert fmt.read_metadata(location) == {}
    sidecar.write_text("[]")  # JSON, but no object
    assert fmt.read_metadata(location) == {}
    sidecar.write_text('{"version": 2, "metadata": {"k": "v"')  # cut short: not JSON
    assert fmt.read_metadata(location) == {}
    no_binding = {k: v for k, v in doc.items() if k not in ("data", "check")}
    sidecar.write_text(json.dumps(binding.seal(no_binding)))  # sealed, but binds nothing
    assert fmt.read_metadata(location) == {}
    sidecar.write_text(json.dumps(binding.seal({**no_binding, "data": 5})))  # binds nonsense
    assert fmt.read_metadata(location) == {}


def test_metadata_sidecar_of_a_file_named_with_a_hash_sign(tmp_path: Path) -> None:
    """A ``#`` in a plain file format's file name is part of the name, not a fragment:
    the sidecar is ``<data file>.prefect-ds.json``."""
    fmt = Arrow()
    location = str(tmp_path / "run#1.arrowtest")
    fmt.write(INTS, location, metadata={"k": "v"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run#1.arrowtest", "run#1.arrowtest.prefect-ds.json"]
    assert fmt.read_metadata(location) == {"k": "v"}


class ArrowKeys(Arrow):
    """A multi-key file format: ``file#key`` names one key of a file (here the file holds
    the last key written)."""

    name = "arrow-keys-test"

    def data_location(self, location: str) -> str:
        return location.partition("#")[0]

    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        super().write(df, self.data_location(location), **kwargs)


def test_each_key_of_a_multi_key_file_has_its_own_metadata_sidecar(tmp_path: Path) -> None:
    fmt = ArrowKeys()
    data = str(tmp_path / "f.arrowtest")
    fmt.write(INTS, data + "#group/a", metadata={"k": "a"})
    assert fmt.read_metadata(data + "#group/a") == {"k": "a"}
    assert (tmp_path / "f.arrowtest.group.a.prefect-ds.json").exists()
    assert fmt.read_metadata(data + "#group/b") == {}


# --- plain readers while other processes overwrite ------------------------------------


def _overwrite_forever(location: str, handler_write: bool) -> None:
    fmt = get_format("csv")
    handler = PandasResultHandler(location)
    frames = [INTS, FLOATS]
    i = 0
    while True:
        if handler_write:
            handler.write(frames[i % 2])
        else:
            fmt.write(frames[i % 2], location)
        i += 1


@pytest.mark.parametrize("handler_write", [False, True], ids=["format.write", "handler.write"])
def test_plain_reader_never_sees_a_mixed_frame(tmp_path: Path, handler_write: bool) -> None:
    location = str(tmp_path / "t.csv")
    fmt = get_format("csv")
    fmt.write(INTS, location)
    writers = [FORK.Process(target=_overwrite_forever, args=(location, handler_write))
               for _ in range(2)]
    for writer in writers:
        writer.start()
    seen = {"ints": 0, "floats": 0}
    deadline = time.monotonic() + 120  # under load the writers may start late
    try:
        while sum(seen.values()) < READS or (
                not all(seen.values()) and time.monotonic() < deadline):
            back = fmt.read(location)  # never raises: a writer mid-commit is waited out
            if back.equals(INTS) and back.dtypes.equals(INTS.dtypes):
                seen["ints"] += 1
            elif back.equals(FLOATS) and back.dtypes.equals(FLOATS.dtypes):
                seen["floats"] += 1
            else:
                raise AssertionError(f"a frame no writer wrote: {back.head()}")
    finally:
        for writer in writers:
            os.kill(writer.pid or 0, signal.SIGKILL)
            writer.join()
    assert sum(seen.values()) >= READS
    assert seen["ints"] and seen["floats"], seen  # the writers really were overwriting


def _race_writes(location: str, value: int, rounds: int) -> None:
    handler = PandasResultHandler(location)
    for _ in range(rounds):
        handler.write(pd.DataFrame({"writer": [value] * 20, "f": [float(value)] * 20}))


def test_concurrent_handler_writes_leave_one_complete_result(tmp_path: Path) -> None:
    location = str(tmp_path / "t.csv")
    writers = [SPAWN.Process(target=_race_writes, args=(location, v, 15)) for v in (1, 2, 3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    back = get_format("csv").read(location)
    value = int(back["writer"].iloc[0])
    assert_frame_equal(back, pd.DataFrame({"writer": [value] * 20, "f": [float(value)] * 20}))
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == []  # no temporaries or lock files left behind


# --- multi-key HDF ---------------------------------------------------------------------


def _write_key(location: str, key: str, rounds: int) -> None:
    fmt = get_format("hdf")
    for i in range(rounds):
        fmt.write(pd.DataFrame({"key": [key] * 5, "i": [i] * 5}), f"{location}#{key}")


def test_hdf_writers_of_different_keys_lose_none(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    location = str(tmp_path / "multi.h5")
    writers = [SPAWN.Process(target=_write_key, args=(location, k, 8)) for k in "abc"]
    for writer in writers:
        writer.start()
    fmt = get_format("hdf")
    reads = 0
    while any(w.is_alive() for w in writers) or reads == 0:
        for key in "abc":
            if fmt.exists(f"{location}#{key}"):
                back = fmt.read(f"{location}#{key}")
                assert list(back["key"]) == [key] * 5 and back["i"].nunique() == 1
                reads += 1
        time.sleep(0.01)
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    for key in "abc":
        assert list(fmt.read(f"{location}#{key}")["i"]) == [7] * 5


def test_hdf_crash_mid_overwrite_keeps_every_key(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    fmt = get_format("hdf")
    location = str(tmp_path / "multi.h5")
    fmt.write(INTS, f"{location}#a")
    fmt.write(FLOATS, f"{location}#b")
    crash_between_renames(fmt, pd.DataFrame({"x": ["new"]}), f"{location}#a")
    # One file, one rename: the crash after it left the complete new file.
    assert_frame_equal(fmt.read(f"{location}#a"), pd.DataFrame({"x": ["new"]}))
    assert_frame_equal(fmt.read(f"{location}#b"), FLOATS)


def test_arrow_table_of_the_test_format_round_trips(tmp_path: Path) -> None:
    """The third-party-style format above is sound on its own (guards the tests)."""
    fmt = Arrow()
    location = str(tmp_path / "t.arrowtest")
    fmt.write(INTS, location)
    assert_frame_equal(fmt.read(location), INTS)
    assert isinstance(pa.ipc.open_file(location).read_all(), pa.Table)


# --- property: any change to either file is caught -------------------------------------


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=20),
       which=st.sampled_from(["data", "sidecar"]), where=st.floats(0, 1),
       byte=st.integers(0, 255))
def test_any_changed_byte_is_caught_or_harmless(tmp_path_factory: pytest.TempPathFactory,
                                                values: list[int], which: str, where: float,
                                                byte: int) -> None:
    fmt = get_format("csv")
    location = str(tmp_path_factory.mktemp("p") / "t.csv")
    df = pd.DataFrame({"v": values, "s": [str(v) for v in values]})
    fmt.write(df, location)
    path = Path(location if which == "data" else location + ".schema.json")
    data = bytearray(path.read_bytes())
    at = min(int(where * len(data)), len(data) - 1)
    if data[at] == byte:
        return
    data[at] = byte
    path.write_bytes(bytes(data))
    try:
        back = fmt.read(location)
    except CorruptTargetError:
        return
    # Only a change the sidecar's JSON does not see (its layout whitespace) may pass...
    assert which == "sidecar", f"a changed data file was read: {back}"
    assert_frame_equal(back, df)  # ...and then the frame is exactly the one written
