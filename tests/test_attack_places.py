"""Nothing outside the target's place is touched.

Links planted at lock and temporary names, read-only directories and mounts, rendered
values that would name another target's sidecar, lock or temporary file, names too long
in bytes, and values whose ``__format__`` returns a ``str`` subclass.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from prefect_ds import (
    PandasResultHandler,
    TemplateError,
    UnsafeLocationError,
    checkpoint,
    get_format,
)
from prefect_ds._locations import HIDDEN_SUFFIXES, LocationTemplate, check_value
from prefect_ds._storage import files as _files
from prefect_ds._storage.locks import FileLock, lock_path

DF = pd.DataFrame({"x": [1, 2, 3], "s": ["a", "b", "c"]})
FILE_FORMATS = ["csv", "parquet", "hdf"]


def suffix(name: str) -> str:
    return get_format(name).suffixes[0]


# --- links planted at our names -------------------------------------------------------


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_symlink_at_the_lock_name_creates_nothing_elsewhere(tmp_path: Path, name: str) -> None:
    if name == "hdf":
        pytest.importorskip("h5py")
    place, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    place.mkdir()
    elsewhere.mkdir()
    target = place / f"x{suffix(name)}"
    victim = elsewhere / "victim"
    os.symlink(victim, lock_path(str(target)))
    handler = PandasResultHandler(str(place / f"{{n}}{suffix(name)}"))
    with pytest.raises(UnsafeLocationError, match="symbolic link"):
        handler.write(DF, n="x")
    assert not victim.exists() and not target.exists()
    with pytest.raises(UnsafeLocationError, match="symbolic link"):
        checkpoint(str(target))(lambda: DF)()
    assert not victim.exists()
    assert list(elsewhere.iterdir()) == []


def test_symlink_at_the_lock_name_never_truncates_its_target(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    target = tmp_path / "x.parquet"
    os.symlink(precious, lock_path(str(target)))
    with pytest.raises(UnsafeLocationError):
        FileLock(str(target)).acquire()
    assert precious.read_text() == "keep me"
    assert os.path.islink(lock_path(str(target)))  # left for its owner to look at


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_something_else_at_the_lock_name_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "x.parquet"
    if kind == "directory":
        os.mkdir(lock_path(str(target)))
    else:
        os.mkfifo(lock_path(str(target)))
    with pytest.raises((UnsafeLocationError, IsADirectoryError)):
        FileLock(str(target)).acquire()


def test_symlink_at_the_hdf_keys_lock_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    target = tmp_path / "x.h5"
    victim = tmp_path / "victim"
    os.symlink(victim, lock_path(f"{target}.keys"))
    with pytest.raises(UnsafeLocationError):
        get_format("hdf").write(DF, f"{target}#k")
    assert not victim.exists()


def test_temporary_names_are_unpredictable_and_created_exclusively(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = {Path(_files.temp_sibling(str(tmp_path / "x.parquet"))).name for _ in range(200)}
    assert len(names) == 200
    assert all(len(n.split(".")[-2]) == 22 for n in names)  # pid + 16 random hex digits
    # A link planted at the very name the writer draws first is skipped, never followed.
    draws = iter(["a" * 16, "b" * 16])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    victim = tmp_path / "victim"
    planted = tmp_path / f".x.parquet.{os.getpid() & 0xFFFFFF:06x}{'a' * 16}.prefect-ds-tmp"
    os.symlink(victim, planted)
    get_format("parquet").write(DF, str(tmp_path / "x.parquet"))
    assert not victim.exists()
    assert_frame_equal(get_format("parquet").read(str(tmp_path / "x.parquet")), DF)
    assert os.path.islink(planted)


def test_stale_temp_sweep_removes_links_not_what_they_point_to(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep")
    # a live writer's name (a child that sleeps; never pid 1, which a planted mutant that
    # signals the writer would hit), so only the link's own age makes it stale
    alive = subprocess.Popen(["sleep", "60"])
    try:
        link = tmp_path / f".x.parquet.{alive.pid & 0xFFFFFF:06x}aaaaaaaaaaaaaaaa.prefect-ds-tmp"
        os.symlink(precious, link)
        os.utime(link, (0, 0), follow_symlinks=False)
        _files.remove_stale_temps(str(tmp_path / "x.parquet"))
    finally:
        alive.kill()
        alive.wait()
    assert precious.read_text() == "keep"
    assert not os.path.lexists(link)  # the link itself was stale (its own mtime) and went


# --- read-only places -----------------------------------------------------------------


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` read-only: a read-only bind mount as root, else no write permission."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True)
        return
    mode = directory.stat().st_mode
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        yield
    finally:
        directory.chmod(mode)


def _can_make_read_only(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        with read_only(probe):
            try:
                (probe / "x").write_text("x")
            except OSError:
                return True
            return False
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        with contextlib.suppress(OSError):
            (probe / "x").unlink()


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_read_only_directory_still_serves_checkpoint_loads(tmp_path: Path, name: str) -> None:
    if name == "hdf":
        pytest.importorskip("h5py")
    if not _can_make_read_only(tmp_path):
        pytest.skip("cannot make a directory read-only here")
    place = tmp_path / "ro"
    place.mkdir()
    calls: list[int] = []

    def compute(n: int) -> pd.DataFrame:
        calls.append(n)
        return DF

    fn = checkpoint(str(place / f"t{{n}}{suffix(name)}"), invalidate_on=["code"])(compute)
    assert_frame_equal(fn(1), DF)
    before = sorted(p.name for p in place.iterdir())
    with read_only(place):
        assert_frame_equal(fn(1), DF)  # loaded, no lock file needed
        assert_frame_equal(PandasResultHandler(str(place / f"t1{suffix(name)}")).read(), DF)
        with pytest.raises(OSError):  # a target that is not there cannot be written
            fn(2)
        assert sorted(p.name for p in place.iterdir()) == before
    assert calls == [1]  # the missing target failed before computing anything


# --- rendered names that belong to another target ------------------------------------


@pytest.mark.parametrize("value", ["a.schema.json", "a.SCHEMA.JSON", "a.csv.schema.json"])
def test_a_value_cannot_name_a_csv_sidecar(tmp_path: Path, value: str) -> None:
    csv = get_format("csv")
    csv.write(DF, str(tmp_path / "a"))
    csv.write(DF, str(tmp_path / "a.csv"))
    sidecars = {p: p.read_bytes() for p in tmp_path.glob("*.schema.json")}
    handler = PandasResultHandler(str(tmp_path / "{name}"), "csv")
    with pytest.raises(UnsafeLocationError, match="sidecar"):
        handler.write(DF, name=value)
    assert {p: p.read_bytes() for p in tmp_path.glob("*.schema.json")} == sidecars
    assert_frame_equal(csv.read(str(tmp_path / "a")), DF)


@pytest.mark.parametrize("value", [
    "a.prefect-ds.json", "a.prefect-ds-lock", "a.prefect-ds-tmp", "a.prefect-ds-lease",
    "a.PREFECT-DS.json", "x.prefect-ds", "a.parquet.0123456789abcdef012345.prefect-ds-tmp",
])
def test_values_cannot_name_our_hidden_files(value: str) -> None:
    for template in ["{v}", "{v}.parquet", "dir/{v}"]:
        with pytest.raises(UnsafeLocationError):
            LocationTemplate(template).render({"v": value})


@pytest.mark.parametrize("template", ["{v}.schema.json", "{v}.prefect-ds.json",
                                      "{v}.prefect-ds-lock"])
def test_a_template_ending_like_a_sidecar_is_refused_when_rendered(template: str) -> None:
    handler = PandasResultHandler(template, "csv")
    with pytest.raises(UnsafeLocationError):
        handler.render(v="a")


def test_metadata_sidecar_formats_reserve_their_suffix() -> None:
    from prefect_ds import FileFormat

    class Plain(FileFormat):
        name = "plain-test"

        def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None: ...

        def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
            return DF

    assert Plain().sidecar_suffixes() == (".prefect-ds.json",)
    assert get_format("csv").sidecar_suffixes() == (".schema.json",)  # type: ignore[attr-defined]
    assert get_format("parquet").sidecar_suffixes() == ()  # type: ignore[attr-defined]


# --- lengths in bytes, checked before anything is created -----------------------------


def test_two_hundred_accented_letters_fail_before_any_directory(tmp_path: Path) -> None:
    value = "é" * 200  # 200 characters, 400 bytes
    handler = PandasResultHandler(str(tmp_path / "out" / "{sub}" / "{name}.parquet"))
    with pytest.raises(UnsafeLocationError, match="bytes"):
        handler.write(DF, sub="s", name=value)
    with pytest.raises(UnsafeLocationError, match="bytes"):
        checkpoint(handler)(lambda sub, name: DF)(sub="s", name=value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", FILE_FORMATS)
def test_the_longest_allowed_value_writes_and_reads(tmp_path: Path, name: str) -> None:
    if name == "hdf":
        pytest.importorskip("h5py")
    handler = PandasResultHandler(str(tmp_path / f"{{name}}{suffix(name)}"))
    value = "é" * 100  # 200 bytes: the value limit
    location = handler.write(DF, name=value)
    assert_frame_equal(handler.read(name=value), DF)
    with FileLock(get_format(name).filesystem(location)[1]):  # type: ignore[attr-defined]
        pass  # its lock file's name fits too


def test_many_values_in_one_name_are_limited_as_a_whole(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{a}_{b}.parquet"))
    with pytest.raises(UnsafeLocationError, match="bytes"):
        handler.write(DF, a="x" * 150, b="y" * 150)
    assert list(tmp_path.iterdir()) == []


def test_directory_parts_have_their_own_limit(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{a}" / "{b}" / "t.parquet"))
    handler.write(DF, a="x" * 200, b="y" * 200)  # each part under 255 bytes
    with pytest.raises(UnsafeLocationError):
        PandasResultHandler(str(tmp_path / "{a}{b}" / "t.parquet")).render(
            a="x" * 200, b="y" * 200)


# --- str subclasses -------------------------------------------------------------------


class Sneaky(str):
    """A str that lies to every check it can reach."""

    def startswith(self, *args: Any) -> bool:  # type: ignore[override]
        return False

    def __len__(self) -> int:
        return 1

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return b"x"

    def casefold(self) -> str:
        return "ok"

    def __str__(self) -> str:
        return "fine"


class Formats:
    def __init__(self, text: str) -> None:
        self.text = text

    def __format__(self, spec: str) -> str:
        return Sneaky(self.text)


@pytest.mark.parametrize("text", [".hidden", "a/b", "..", "é" * 200, "a.prefect-ds-lock",
                                  "x" * 201])
def test_a_str_subclass_from_format_is_checked_as_plain_text(text: str) -> None:
    with pytest.raises(UnsafeLocationError):
        LocationTemplate("{v}.parquet").render({"v": Formats(text)})


def test_a_str_subclass_value_renders_as_its_plain_text() -> None:
    out = LocationTemplate("{v}.parquet").render({"v": Formats("north")})
    assert out == "north.parquet" and type(out) is str


def test_check_value_returns_a_plain_str() -> None:
    assert type(check_value(Sneaky("abc"), "v")) is str


# --- property: any value renders inside its place, or is refused ---------------------

VALUES = st.lists(
    st.sampled_from([*"abcXYZ019-_.=+,@/é東\u00a0\u200b ~:#%",
                     "schema.json", ".prefect-ds", "-lock", "-tmp", ".json", ".SCHEMA"]),
    max_size=30,
).map("".join) | st.builds(lambda n: "é" * n, st.integers(90, 130))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_rendered_names_stay_in_place_and_never_collide(value: str) -> None:
    handler = PandasResultHandler("base/{v}.csv")
    try:
        location = handler.render(v=value)
    except TemplateError:
        return
    assert location.startswith("base/") and location.count("/") == 1
    name = location.split("/")[1]
    assert not name.startswith(".")
    assert ".prefect-ds" not in name.casefold()
    assert not any(name.casefold().endswith(s) for s in (*HIDDEN_SUFFIXES, ".schema.json"))
    assert len(f".{name}.schema.json.{'0' * 22}.prefect-ds-tmp".encode()) <= 255


def test_deleting_a_missing_target_creates_no_directory(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "nowhere" / "{n}.csv"))
    handler.delete(n="x")
    assert not (tmp_path / "nowhere").exists()


def test_delete_leaves_no_lock_file_behind(tmp_path: Path) -> None:
    handler = PandasResultHandler(str(tmp_path / "{n}.csv"))
    handler.write(DF, n="x")
    handler.delete(n="x")
    assert list(tmp_path.iterdir()) == []
