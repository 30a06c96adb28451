"""Where the versions of a file target live, and the record that commits each one.

A versioned target ``data/sales.parquet`` keeps every write in its own directory beside
it, named by the version id, and commits the version by writing its record last::

    data/sales.parquet.versions/
        20261201T181533.123456Z-3f9a1c/sales.parquet          the data (and its sidecars)
        20261201T181533.123456Z-3f9a1c.json                   the record: the commit

A version id is the UTC time the write started, in ISO 8601 basic format with
microseconds, then ``-`` and six random hex digits, so ids sort oldest first as plain
strings and two writers never pick the same one. A ``#key`` (an HDF5 key) adds a level:
``store.h5.versions/<key>/<id>/store.h5#key``.

A version is *committed* when its record exists. The record is written atomically (a
rename locally, one PUT on object stores) after the data and its sidecars are committed,
so a writer killed mid-write leaves at most a version directory without a record, which
no listing reports: "latest" is still the previous complete version. Removing a version
takes its record away first, then its data, so a reader never finds a record without data
(short of a reader racing the removal itself).

This module speaks fsspec only; it imports no format and no Prefect.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import posixpath
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect_ds._storage.files import filesystem, is_local, staged

SUFFIX = ".versions"
RECORD_SUFFIX = ".json"
_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")


def new_id(now: dt.datetime | None = None) -> str:
    """A fresh version id: the UTC time, then six random hex digits."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(3)}"


def is_id(text: str) -> bool:
    """Whether ``text`` is spelled like a version id."""
    return bool(_ID.match(text))


def id_time(version: str) -> dt.datetime:
    """The UTC time a version id names."""
    return dt.datetime.strptime(version[:23], "%Y%m%dT%H%M%S.%fZ").replace(
        tzinfo=dt.timezone.utc)


def root(location: str) -> str:
    """The directory holding every version of ``location``."""
    path, _, fragment = location.partition("#")
    base = path.rstrip("/") + SUFFIX
    key = fragment.strip("/")
    return f"{base}/{key}" if key else base


def location_of_root(found: str, keyed: bool) -> str:
    """The target whose versions live in the directory ``found`` (inverse of :func:`root`;
    ``keyed``: the target has a ``#key``)."""
    if keyed:
        path, _, key = found.partition(SUFFIX + "/")
        return f"{path}#{key}"
    return found.rstrip("/").removesuffix(SUFFIX)


def version_location(location: str, version: str) -> str:
    """Where version ``version`` of ``location`` is stored: the same name, one level down."""
    path, sep, fragment = location.partition("#")
    name = posixpath.basename(path.rstrip("/")) + ("/" if path.endswith("/") else "")
    return f"{root(location)}/{version}/{name}{sep}{fragment}"


def record_location(location: str, version: str) -> str:
    """The record that commits version ``version``."""
    return f"{root(location)}/{version}{RECORD_SUFFIX}"


def commit(location: str, version: str, record: Mapping[str, Any],
           storage_options: Mapping[str, Any]) -> None:
    """Commit a version whose data is stored: write its record, atomically."""
    body = json.dumps(dict(record), sort_keys=True, indent=1, default=str).encode()
    with staged(record_location(location, version), **storage_options) as (temp,):
        Path(temp).write_bytes(body)


# Local listings by directory: (mtime_ns, inode, ids). A directory's mtime changes with
# every entry added or removed, so an unchanged mtime means an unchanged listing, unless
# the change fell in the same timestamp tick: a listing is only reused when the directory
# was last modified more than RACY_AFTER seconds before it was taken.
RACY_AFTER = 1.0
_LISTINGS: dict[str, tuple[int, int, list[str]]] = {}


def _local_committed(path: str) -> list[str]:
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    cached = _LISTINGS.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_ino):
        return list(cached[2])
    now = time.time_ns()
    try:
        ids = _ids(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    if now - stat.st_mtime_ns > RACY_AFTER * 1e9:
        _LISTINGS[path] = (stat.st_mtime_ns, stat.st_ino, ids)
    return list(ids)


def _ids(names: list[str]) -> list[str]:
    found = (n[: -len(RECORD_SUFFIX)] for n in names if n.endswith(RECORD_SUFFIX))
    return sorted(v for v in found if is_id(v))


def committed(location: str, storage_options: Mapping[str, Any]) -> list[str]:
    """The committed versions of ``location``, oldest first: one directory listing (a
    ``stat`` locally, when the directory has not changed since it was last listed)."""
    fs, path = filesystem(root(location), **storage_options)
    if is_local(fs):
        return _local_committed(path)
    else:
        fs.invalidate_cache(path)  # another process may have committed since the last look
        try:
            names = [posixpath.basename(str(p).rstrip("/"))
                     for p in fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []
    return _ids(names)


def read_record(location: str, version: str,
                storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a committed version (``{}`` if it has none)."""
    fs, path = filesystem(record_location(location, version), **storage_options)
    try:
        with fs.open(path, "rb") as handle:
            found = json.loads(handle.read())
    except FileNotFoundError:
        return {}
    return found if isinstance(found, dict) else {}


def remove(location: str, version: str, storage_options: Mapping[str, Any],
           delete_data: Callable[[str], None]) -> None:
    """Remove one version: its record first (it is no longer committed), then its data."""
    fs, path = filesystem(record_location(location, version), **storage_options)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)
    delete_data(version_location(location, version))
    vfs, vpath = filesystem(f"{root(location)}/{version}", **storage_options)
    if is_local(vfs):  # the directory is this version's alone: lock files, emptied HDF5
        shutil.rmtree(vpath, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            vfs.rm(vpath, recursive=True)
