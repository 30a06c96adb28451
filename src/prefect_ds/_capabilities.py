"""Optional format capabilities: metadata stored with a target, cheap facts, listing.

The :class:`~prefect_ds.Format` interface stays narrow; these are extras a format *may*
implement. Core code asks for them with ``getattr`` and falls back when they are absent,
so a third-party format that knows nothing of them keeps working.

``SupportsMetadata``
    ``write(df, location, *, metadata=None, **kwargs)`` stores a small ``{str: str}``
    mapping *with* the data, in the same atomic write (Parquet and Feather: schema
    key-value metadata; HDF: an attribute of the frame's group; CSV: its schema sidecar;
    SQL: the ``_prefect_ds_tables`` row), and ``read_metadata(location)`` returns it
    (``{}`` for a target written without metadata, or by someone else) without reading
    the data. Staleness fingerprints live there.

``SupportsTargetInfo``
    ``target_info(location)`` returns what is cheap to know about a stored target: row
    count, bytes, modification time (each may be None). The target browser shows it.

``SupportsListing``
    ``list_locations(location)`` returns every stored location that matches ``location``,
    in which ``*`` stands for any run of characters in the part a template fills
    (a table name, say). File formats do not need it: the core globs through fsspec. The
    SQL format implements it with SQLAlchemy's inspector.

``SupportsAssetKey``
    ``asset_key(location)`` returns a URI naming the target for Prefect's asset lineage
    (no credentials, no ``#``). File formats get ``file://`` or their fsspec URL.

Fallback for file formats without ``SupportsMetadata``: the metadata goes to a small JSON
file ``<data file>.prefect-ds.json`` written atomically *after* the data file, recording
the data file's size and modification stamp. A sidecar whose stamp does not match the
data file beside it (the data was rewritten and the process died before the sidecar, or
someone replaced the file) is ignored, so it can never vouch for data it did not
describe. Any other format without the capability cannot store metadata: asking for a
fingerprint check on it is an error that says so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from ._files import FileFormat, filesystem, is_local, staged
from ._format import Format

SIDECAR_SUFFIX = ".prefect-ds.json"
_STAMP_KEYS = ("size", "mtime", "ino", "ETag", "etag", "LastModified", "last_modified",
               "md5Hash", "generation", "created")


@runtime_checkable
class SupportsMetadata(Protocol):
    """A format that stores a ``{str: str}`` mapping with the data (module doc)."""

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None: ...

    def read_metadata(self, location: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class TargetInfo:
    """What is cheap to know about a stored target; None where it is not."""

    rows: int | None = None
    bytes: int | None = None
    modified: dt.datetime | None = None


@runtime_checkable
class SupportsTargetInfo(Protocol):
    def target_info(self, location: str) -> TargetInfo: ...


@runtime_checkable
class SupportsListing(Protocol):
    def list_locations(self, location: str) -> list[str]: ...


@runtime_checkable
class SupportsAssetKey(Protocol):
    def asset_key(self, location: str) -> str: ...


def native_metadata(fmt: Format) -> bool:
    """Whether ``fmt`` stores metadata itself (it implements ``read_metadata``)."""
    return callable(getattr(fmt, "read_metadata", None))


def metadata_support(fmt: Format) -> str | None:
    """``"native"``, ``"sidecar"`` (the file fallback) or None (cannot store metadata)."""
    if native_metadata(fmt):
        return "native"
    if isinstance(fmt, FileFormat):
        return "sidecar"
    return None


def write(fmt: Format, df: pd.DataFrame, location: str, metadata: Mapping[str, str],
          **kwargs: Any) -> None:
    """Store ``df`` at ``location`` together with ``metadata`` (natively or by sidecar)."""
    if native_metadata(fmt):
        fmt.write(df, location, metadata=dict(metadata), **kwargs)
        return
    if not isinstance(fmt, FileFormat):
        raise TypeError(unsupported_message(fmt))
    fmt.write(df, location, **kwargs)
    _write_sidecar(fmt, location, metadata)


def read(fmt: Format, location: str) -> dict[str, str]:
    """The metadata stored with the target at ``location``; ``{}`` if there is none."""
    if native_metadata(fmt):
        found = fmt.read_metadata(location)  # type: ignore[attr-defined]
        return {str(k): str(v) for k, v in (found or {}).items()}
    if isinstance(fmt, FileFormat):
        return _read_sidecar(fmt, location)
    return {}


def delete(fmt: Format, location: str) -> None:
    """Delete the target and, for the file fallback, its metadata sidecar."""
    fmt.delete(location)
    if isinstance(fmt, FileFormat) and not native_metadata(fmt):
        fs, path = filesystem(sidecar_location(fmt, location), **fmt.storage_options)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)


def info(fmt: Format, location: str) -> TargetInfo:
    """Cheap facts about a stored target: the format's own, else the file system's."""
    if callable(getattr(fmt, "target_info", None)):
        found: TargetInfo = fmt.target_info(location)  # type: ignore[attr-defined]
        return found
    if isinstance(fmt, FileFormat):
        fs, path = filesystem(fmt.data_location(location), **fmt.storage_options)
        stat = fs.info(path)
        return TargetInfo(bytes=stat.get("size"), modified=modified_time(stat))
    return TargetInfo()


def modified_time(stat: Mapping[str, Any]) -> dt.datetime | None:
    """The modification time in fsspec's ``info`` (local ``mtime``, S3 ``LastModified``)."""
    value = stat.get("mtime", stat.get("LastModified", stat.get("last_modified")))
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return value if isinstance(value, dt.datetime) else None


_UNSAFE_IN_KEYS = re.compile(r"[\s#?&%\"'<>\[\]{}|\\^`\x00]")


def safe_asset_key(key: str) -> str:
    """``key`` with the characters Prefect refuses in asset keys replaced by ``_``.

    Prefect's asset keys are URIs without spaces, ``#``, ``?``, ``%``, quotes or brackets
    (and at most 512 characters); location templates only put plain names into a path,
    so this only touches literal parts of a template such as a directory with a space.
    """
    return _UNSAFE_IN_KEYS.sub("_", key)


def unsupported_message(fmt: Format) -> str:
    return (
        f"format {fmt.name!r} ({type(fmt).__module__}.{type(fmt).__qualname__}) cannot store "
        f"a fingerprint with its targets: it is not a prefect_ds.FileFormat and has no "
        f"read_metadata(location). Implement write(df, location, *, metadata=None) and "
        f"read_metadata(location) on it (see prefect_ds.SupportsMetadata), or leave "
        f"invalidate_on empty"
    )


def sidecar_location(fmt: FileFormat, location: str) -> str:
    """``<data file>.prefect-ds.json`` (``<data file>.<fragment>.prefect-ds.json`` for ``#``)."""
    data = fmt.data_location(location)
    _, _, fragment = location.partition("#")
    if fragment and data != location:
        return f"{data}.{fragment.replace('/', '.')}{SIDECAR_SUFFIX}"
    return f"{data}{SIDECAR_SUFFIX}"


def _stamp(fmt: FileFormat, location: str) -> dict[str, str]:
    """Size and modification marks of the data file, as strings (fsspec ``info``)."""
    fs, path = filesystem(fmt.data_location(location), **fmt.storage_options)
    if is_local(fs):
        import os

        st = os.stat(path)
        return {"size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns), "ino": str(st.st_ino)}
    info = fs.info(path)
    return {key: str(info[key]) for key in _STAMP_KEYS if info.get(key) is not None}


def _write_sidecar(fmt: FileFormat, location: str, metadata: Mapping[str, str]) -> None:
    doc = {"version": 1, "data": _stamp(fmt, location), "metadata": dict(metadata)}
    with staged(sidecar_location(fmt, location), **fmt.storage_options) as (temp,), \
            open(temp, "w", encoding="utf-8") as out:
        json.dump(doc, out)


def _read_sidecar(fmt: FileFormat, location: str) -> dict[str, str]:
    fs, path = filesystem(sidecar_location(fmt, location), **fmt.storage_options)
    try:
        with fs.open(path, "rb") as handle:
            doc = json.loads(handle.read())
        if doc["data"] != _stamp(fmt, location):
            return {}  # the data file changed after this sidecar was written
        return {str(k): str(v) for k, v in doc["metadata"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}
