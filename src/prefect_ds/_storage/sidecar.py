"""Metadata kept beside a data file, for file formats that cannot store it inside.

A file format whose ``write`` takes no ``metadata`` gets its metadata (staleness
fingerprints) in a small JSON file ``<data file>.prefect-ds.json``. It is written and
committed *with* the data file, in the same :func:`~prefect_ds._storage.files.staged`
commit (sidecar renamed first, under the target's lock), and it records the binding of
the data file it describes (:mod:`prefect_ds._storage.binding`): the digest of its
bytes, plus its inode, modification stamp and size locally or its MD5 (the S3 ETag of
a single PUT) on object stores, all taken from the staged file before the commit. A
sidecar whose binding does not match the data file beside it (an overwrite interrupted
between its two renames, a writer that raced another, a replaced file) or whose own
``check`` does not match its content (an edited field) vouches for nothing: it reads as
``{}``, so a checkpoint treats the target as stale and computes it again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from prefect_ds._storage import binding
from prefect_ds._storage.files import BoundSidecar, filesystem, is_local, staged

SUFFIX = ".prefect-ds.json"
VERSION = 2
_STAMP_KEYS = ("size", "mtime", "ino", "ETag", "etag", "LastModified", "last_modified",
               "md5Hash", "generation", "created")


def sidecar_location(data: str, location: str) -> str:
    """``<data file>.prefect-ds.json`` (``<data file>.<fragment>.prefect-ds.json`` for ``#``)."""
    _, _, fragment = location.partition("#")
    if fragment and data != location:
        return f"{data}.{fragment.replace('/', '.')}{SUFFIX}"
    return f"{data}{SUFFIX}"


def _document(bound: Mapping[str, Any], metadata: Mapping[str, str]) -> bytes:
    doc = binding.seal({"version": VERSION, "data": dict(bound),
                        "metadata": {str(k): str(v) for k, v in metadata.items()}})
    return json.dumps(doc).encode()


def bound(data: str, location: str, metadata: Mapping[str, str]) -> BoundSidecar:
    """The sidecar of ``location`` that a :func:`staged` commit of ``data`` includes."""
    return BoundSidecar(data, sidecar_location(data, location),
                        lambda found: _document(found, metadata))


def stamp(data: str, storage_options: Mapping[str, Any]) -> dict[str, str]:
    """Size and modification marks of the data file, as strings (version 1 sidecars)."""
    fs, path = filesystem(data, **storage_options)
    if is_local(fs):
        st = os.stat(path)
        return {"size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns), "ino": str(st.st_ino)}
    info = fs.info(path)
    return {key: str(info[key]) for key in _STAMP_KEYS if info.get(key) is not None}


def write(data: str, location: str, metadata: Mapping[str, str],
          storage_options: Mapping[str, Any]) -> None:
    """Store ``metadata`` for the data file ``data`` already committed (a format that did
    not write through :func:`staged`); the caller holds the target's lock."""
    fs, path = filesystem(data, **storage_options)
    if is_local(fs):
        found = binding.of_file(path, local=True)
    else:
        with fs.open(path, "rb") as handle:
            found = {"sha256": binding.file_digest(handle),
                     "md5": binding.file_digest(handle, "md5"), "size": fs.size(path)}
    with staged(sidecar_location(data, location), **storage_options) as (temp,), \
            open(temp, "wb") as out:
        out.write(_document(found, metadata))


def _vouches(doc: Mapping[str, Any], data: str, storage_options: Mapping[str, Any]) -> bool:
    """Whether the sidecar ``doc`` describes the data file now at ``data``."""
    if doc.get("version") == 1:
        return bool(doc["data"] == stamp(data, storage_options))
    if doc.get("version") != VERSION or binding.sealed(doc) is not True:
        return False
    bound_to = doc["data"]
    fs, path = filesystem(data, **storage_options)
    if is_local(fs):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            if binding.identity_matches(bound_to, os.fstat(fd)):
                return True
            return bool(binding.file_digest(fd) == bound_to.get("sha256"))  # a copied file
        finally:
            os.close(fd)
    if binding.etag_matches(bound_to, fs.info(path)):
        return True
    with fs.open(path, "rb") as handle:  # a multipart or encrypted object: hash it
        return bool(binding.file_digest(handle) == bound_to.get("sha256"))


def read(data: str, location: str, storage_options: Mapping[str, Any]) -> dict[str, str]:
    """The metadata stored for ``location``; ``{}`` when none vouches for its data file."""
    fs, path = filesystem(sidecar_location(data, location), **storage_options)
    try:
        with fs.open(path, "rb") as handle:
            doc = json.loads(handle.read())
        if not _vouches(doc, data, storage_options):
            return {}  # the data file is not the one this sidecar was written for
        return {str(k): str(v) for k, v in doc["metadata"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def remove(data: str, location: str, storage_options: Mapping[str, Any]) -> None:
    """Delete the sidecar of ``location``, if any."""
    fs, path = filesystem(sidecar_location(data, location), **storage_options)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)
