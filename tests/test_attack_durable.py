"""Durable commits: data flushed before its rename, the directory after; and S3 binding.

The order of system calls is recorded by spies that call the real ``os.fsync`` and
``os.replace`` (nothing is faked): each staged file must be fsynced before it is renamed
into place, and its directory after, so a target reported as written survives a power
loss. ``PREFECT_DS_DURABLE=0`` turns the flushes off.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from prefect_ds import CorruptTargetError, get_format
from prefect_ds._storage import files as _files

DF = pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]})


class Recorder:
    """Spies on os.fsync / os.replace in the staging module; calls the real ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
            self.events.append((f"fsync-{kind}", path))
            real_fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            self.events.append(("replace", str(src)))
            real_replace(src, dst)
            self.events.append(("replaced", str(dst)))

        monkeypatch.setattr(_files.os, "fsync", fsync)
        monkeypatch.setattr(_files.os, "replace", replace)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("name", ["csv", "parquet", "hdf"])
def test_every_staged_file_is_flushed_before_its_rename_and_the_directory_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    if name == "hdf":
        pytest.importorskip("h5py")
    monkeypatch.delenv("PREFECT_DS_DURABLE", raising=False)
    fmt = get_format(name)
    location = str(tmp_path / "new" / "deeper" / f"t{fmt.suffixes[0]}")
    recorder = Recorder(monkeypatch)
    fmt.write(DF, location)
    events = recorder.events
    renamed = [src for kind, src in events if kind == "replace"]
    assert renamed, events
    for temp in renamed:
        flushed = events.index(("fsync-file", temp))
        assert flushed < events.index(("replace", temp)), events
    last_rename = max(i for i, (kind, _) in enumerate(events) if kind == "replaced")
    dirs_after = {path for kind, path in events[last_rename:] if kind == "fsync-dir"}
    assert str(tmp_path / "new" / "deeper") in dirs_after
    # the directories it created are durable too: their entries live in their parents
    all_dirs = {path for kind, path in events if kind == "fsync-dir"}
    assert {str(tmp_path), str(tmp_path / "new")} <= all_dirs
    assert_frame_equal(fmt.read(location), DF)


def test_durability_can_be_turned_off(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_DS_DURABLE", "0")
    recorder = Recorder(monkeypatch)
    get_format("parquet").write(DF, str(tmp_path / "t.parquet"))
    assert not [e for e in recorder.events if e[0].startswith("fsync")]
    assert [e for e in recorder.events if e[0] == "replace"]


@pytest.mark.parametrize("value, expected", [
    (None, True), ("1", True), ("yes", True), ("0", False), ("false", False),
    ("OFF", False), ("no", False),
])
def test_durable_setting(monkeypatch: pytest.MonkeyPatch, value: str | None,
                         expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("PREFECT_DS_DURABLE", raising=False)
    else:
        monkeypatch.setenv("PREFECT_DS_DURABLE", value)
    assert _files.durable() is expected


def test_staged_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Temporaries are created exclusively with mode 0666 & ~umask, like open() does."""
    get_format("parquet").write(DF, str(tmp_path / "t.parquet"))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o666 & ~umask


# --- object stores: the sidecar is bound to the object's bytes -------------------------


def test_s3_csv_interrupted_overwrite_is_refused(s3_bucket: str, tmp_path: Path) -> None:
    """Sidecar PUT done, data PUT never happened: the read refuses, never blends."""
    import s3fs

    fmt = get_format("csv")
    ints, floats = pd.DataFrame({"x": [100] * 5}), pd.DataFrame({"x": [1.5] * 5})
    location = f"{s3_bucket}/t.csv"
    fmt.write(ints, location, metadata={"k": "v"})
    assert fmt.read_metadata(location) == {"k": "v"}
    local = str(tmp_path / "t.csv")
    fmt.write(floats, local)  # the new version, of the same size
    fs = s3fs.S3FileSystem()
    fs.put_file(local + ".schema.json", location.removeprefix("s3://") + ".schema.json")
    with pytest.raises(CorruptTargetError, match="not the one"):
        fmt.read(location)
    assert fmt.read_metadata(location) == {}
    fmt.write(floats, location)
    assert_frame_equal(fmt.read(location), floats)


def test_s3_metadata_sidecar_is_bound_to_the_object(s3_bucket: str) -> None:
    import s3fs

    from tests.test_attack_commit import Arrow

    fmt = Arrow()
    location = f"{s3_bucket}/t.arrowtest"
    fmt.write(DF, location, metadata={"k": "v"})
    assert fmt.read_metadata(location) == {"k": "v"}
    fs = s3fs.S3FileSystem()
    key = location.removeprefix("s3://")
    # bound to the object's ETag (one HEAD answers whether it is the object described)
    doc = json.loads(fs.cat_file(key + ".prefect-ds.json"))
    assert doc["data"]["md5"] == fs.info(key)["ETag"].strip('"')
    assert doc["data"]["size"] == fs.size(key)
    # the same bytes uploaded in parts: an ETag that is no MD5, so the object is hashed
    data = fs.cat_file(key)
    bucket, name = key.split("/", 1)
    upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=name)["UploadId"]
    part = fs.call_s3("upload_part", Bucket=bucket, Key=name, UploadId=upload, PartNumber=1,
                      Body=data)
    fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=name, UploadId=upload,
               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    fs.invalidate_cache()
    assert fs.info(key)["ETag"].strip('"') != doc["data"]["md5"]
    assert fmt.read_metadata(location) == {"k": "v"}
    # other bytes vouch for nothing, whichever way their digest sorts against the bound one
    others = [f"replaced behind its back {i}".encode() for i in range(40)]
    below = next(o for o in others if hashlib.sha256(o).hexdigest() < doc["data"]["sha256"])
    above = next(o for o in others if hashlib.sha256(o).hexdigest() > doc["data"]["sha256"])
    for other in (below, above):
        fs.pipe_file(key, other)
        assert fmt.read_metadata(location) == {}


def _s3_writes(location: str, value: int, rounds: int) -> None:
    from prefect_ds import get_format as _get

    for _ in range(rounds):
        _get("csv").write(pd.DataFrame({"v": [value] * 10, "f": [value / 2] * 10}), location)


def test_s3_csv_raw_writers_never_interleave_their_uploads(s3_bucket: str) -> None:
    """Two processes writing one csv on S3 without any lock of their own: the sidecar
    and data uploads of one commit go together (under the target's lease)."""
    import multiprocessing

    location = f"{s3_bucket}/raced.csv"
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_s3_writes, args=(location, v, 6)) for v in (2, 4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(300)
        assert writer.exitcode == 0
    back = get_format("csv").read(location)
    value = int(back["v"].iloc[0])
    assert_frame_equal(back, pd.DataFrame({"v": [value] * 10, "f": [value / 2] * 10}))


def test_s3_csv_commit_waits_for_the_lease_on_its_data_object(s3_bucket: str) -> None:
    """The sidecar and data uploads of a commit go under the lease of the data object
    (not of the sidecar, nor none): while another holder has it, nothing is uploaded."""
    import threading

    import s3fs

    from prefect_ds._storage.lease import S3Lease

    location = f"{s3_bucket}/leased.csv"
    key = location.removeprefix("s3://")
    fs = s3fs.S3FileSystem()
    held = S3Lease(fs, key)
    held.acquire(10)
    df = pd.DataFrame({"v": [1, 2, 3]})
    errors: list[BaseException] = []

    def write() -> None:
        try:
            get_format("csv").write(df, location)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        writer.join(3)  # time enough to upload two small objects had it not waited
        assert writer.is_alive(), errors
        assert not fs.exists(key) and not fs.exists(key + ".schema.json")
    finally:
        held.release()
    writer.join(60)
    assert not errors and not writer.is_alive()
    assert_frame_equal(get_format("csv").read(location), df)
