"""Bind a sidecar to the exact data file it describes.

A multi-file target (a CSV and its schema, a data file and its metadata sidecar) is
committed by two renames (two PUTs on object stores). Between them, or after a crash
between them, the sidecar beside a data file may describe another version of it. So
every sidecar records the *binding* of the data it was written for:

* ``sha256``: the digest of the data file's bytes, always;
* locally, the data file's ``ino``, ``mtime_ns`` and ``size``: the writer reads them
  from its temporary file before committing, and a rename keeps all three, so a
  reader compares them with one ``fstat`` of the file it has open - no hashing on the
  common path. A file copied elsewhere (new inode) is checked by its digest instead;
* on object stores, ``md5`` too: the ETag S3 gives an object uploaded in one PUT, so a
  ``HEAD`` answers whether the object is the one the sidecar describes.

A sidecar also records a digest of its own content (``check``), so editing one of its
fields (``"rows": 0``) is caught as damage rather than obeyed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import IO, Any

CHECK_KEY = "check"
_CHUNK = 1 << 20


def identity(stat: os.stat_result) -> dict[str, int]:
    """The local identity of a file: what a rename keeps and any rewrite changes."""
    return {"ino": stat.st_ino, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}


def file_digest(handle: IO[bytes] | int, name: str = "sha256") -> str:
    """The hex digest of everything in an open binary file or descriptor, from offset 0."""
    digest = hashlib.new(name)
    if isinstance(handle, int):
        offset = 0
        while chunk := os.pread(handle, _CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        return digest.hexdigest()
    handle.seek(0)
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def of_file(path: str, *, local: bool) -> dict[str, Any]:
    """The binding of the finished (not yet committed) local file ``path``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        doc: dict[str, Any] = {"sha256": file_digest(fd)}
        st = os.fstat(fd)
        if local:
            doc.update(identity(st))
        else:
            doc["size"] = st.st_size
            doc["md5"] = file_digest(fd, "md5")
        return doc
    finally:
        os.close(fd)


def identity_matches(binding: Mapping[str, Any], stat: os.stat_result) -> bool:
    """Whether a local file's ``stat`` is the very file ``binding`` was made for."""
    return all(key in binding for key in ("ino", "mtime_ns", "size")) and \
        identity(stat) == {key: binding[key] for key in ("ino", "mtime_ns", "size")}


def etag_matches(binding: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    """Whether an object's ``info`` (ETag, size) is the object ``binding`` was made for."""
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    size = info.get("size")
    return bool(binding.get("md5")) and etag == binding["md5"] and \
        (size is None or int(size) == binding.get("size"))


def seal(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``check``: the digest of its own canonical JSON (without ``check``)."""
    body = {k: v for k, v in doc.items() if k != CHECK_KEY}
    return {**body, CHECK_KEY: _digest_of(body)}


def sealed(doc: Mapping[str, Any]) -> bool | None:
    """True if ``doc``'s ``check`` matches its content, False if it does not, None if it
    has none (a sidecar written before sidecars were sealed)."""
    if not isinstance(doc, Mapping):
        return None
    check = doc.get(CHECK_KEY)
    if check is None:
        return None
    return bool(check == _digest_of({k: v for k, v in doc.items() if k != CHECK_KEY}))


def _digest_of(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
