"""Metadata kept beside a data file, for file formats that cannot store it inside.

A file format whose ``write`` takes no ``metadata`` gets its metadata (staleness
fingerprints) in a small JSON file ``<data file>.prefect-ds.json``, written atomically
*after* the data file and recording the data file's identity: size, modification stamp
and inode locally, ETag-like stamps on object stores. A sidecar whose recorded identity
does not match the data file beside it (the data was rewritten and the writer died before
the sidecar, or someone replaced the file) is ignored, so it never vouches for data it
did not describe.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from prefect_ds._storage.files import filesystem, is_local, staged

SUFFIX = ".prefect-ds.json"
_STAMP_KEYS = ("size", "mtime", "ino", "ETag", "etag", "LastModified", "last_modified",
               "md5Hash", "generation", "created")


def sidecar_location(data: str, location: str) -> str:
    """``<data file>.prefect-ds.json`` (``<data file>.<fragment>.prefect-ds.json`` for ``#``)."""
    _, _, fragment = location.partition("#")
    if fragment and data != location:
        return f"{data}.{fragment.replace('/', '.')}{SUFFIX}"
    return f"{data}{SUFFIX}"


def stamp(data: str, storage_options: Mapping[str, Any]) -> dict[str, str]:
    """Size and modification marks of the data file, as strings (fsspec ``info``)."""
    fs, path = filesystem(data, **storage_options)
    if is_local(fs):
        st = os.stat(path)
        return {"size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns), "ino": str(st.st_ino)}
    info = fs.info(path)
    return {key: str(info[key]) for key in _STAMP_KEYS if info.get(key) is not None}


def write(data: str, location: str, metadata: Mapping[str, str],
          storage_options: Mapping[str, Any]) -> None:
    """Store ``metadata`` for the data file ``data`` (already written) of ``location``."""
    doc = {"version": 1, "data": stamp(data, storage_options), "metadata": dict(metadata)}
    with staged(sidecar_location(data, location), **storage_options) as (temp,), \
            open(temp, "w", encoding="utf-8") as out:
        json.dump(doc, out)


def read(data: str, location: str, storage_options: Mapping[str, Any]) -> dict[str, str]:
    """The metadata stored for ``location``; ``{}`` when none vouches for its data file."""
    fs, path = filesystem(sidecar_location(data, location), **storage_options)
    try:
        with fs.open(path, "rb") as handle:
            doc = json.loads(handle.read())
        if doc["data"] != stamp(data, storage_options):
            return {}  # the data file changed after this sidecar was written
        return {str(k): str(v) for k, v in doc["metadata"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}


def remove(data: str, location: str, storage_options: Mapping[str, Any]) -> None:
    """Delete the sidecar of ``location``, if any."""
    fs, path = filesystem(sidecar_location(data, location), **storage_options)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)
