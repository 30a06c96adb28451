"""Atomic, fsspec-backed storage shared by every file format.

A write goes to a hidden temporary sibling (``.name.<random>.prefect-ds-tmp``) and is
renamed into place, so the target is either absent, the previous complete file, or the
new complete file. On object stores, where a rename is a copy, the staged file is
uploaded with one PUT instead: the object appears whole or not at all. Sidecars are
committed before the data file, so a data file is never visible without its sidecar.

A writer killed mid-write leaves its hidden temporary behind. The 12 hex digits of a
temporary's name are the writer's process id (6 digits) and 6 random ones, so the next
local write of the same target removes its stale temporaries (:func:`remove_stale_temps`):
those whose writer process is gone, and any older than ``STALE_AFTER`` seconds whatever
their writer (a pid reused by another process, a writer on another host sharing the
directory). No reader ever looks at a temporary, so a stale one only wastes space.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import posixpath
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from prefect_ds._errors import MissingDependencyError

TEMP_MARKER = ".prefect-ds-tmp"
STALE_AFTER = 24 * 3600.0  # seconds: a temporary this old is stale whatever its writer
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9a-f]{6})[0-9a-f]{6}" + re.escape(TEMP_MARKER))


# fsspec protocols whose package is one of this project's extras.
_EXTRAS = {"s3": ("s3fs", "pip install 'prefect-ds[s3]'"),
           "s3a": ("s3fs", "pip install 'prefect-ds[s3]'")}


def filesystem(location: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the path within it for ``location``."""
    location = os.fspath(location)
    try:
        fs, path = fsspec.core.url_to_fs(location, **storage_options)
    except ImportError as exc:
        raise _missing_filesystem(location, exc) from exc
    return fs, path


def require_filesystem(location: str) -> None:
    """Raise :class:`MissingDependencyError` naming what to install when the package of
    ``location``'s URL scheme (``s3://`` needs s3fs) is missing; checks no connection."""
    for part in os.fspath(location).split("::"):
        protocol, _ = fsspec.core.split_protocol(part)
        if protocol:
            try:
                fsspec.get_filesystem_class(protocol)
            except ImportError as exc:
                raise _missing_filesystem(part, exc) from exc
            except ValueError:
                pass  # an unknown protocol: fsspec says so itself when the location is used


def _missing_filesystem(location: str, exc: ImportError) -> MissingDependencyError:
    protocol = (fsspec.core.split_protocol(location)[0] or "").lower()
    if protocol in _EXTRAS:
        package, install = _EXTRAS[protocol]
    else:
        known = fsspec.registry.known_implementations.get(protocol, {})
        package = str(known.get("class", "")).split(".", 1)[0] or str(exc)
        install = f"pip install {package}"
    return MissingDependencyError("", package, install, needed_by=f"a {protocol}:// location")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def temp_sibling(path: str) -> str:
    """A hidden temporary name in the same directory as ``path``: writer pid + random."""
    head, name = posixpath.split(path)
    tag = f"{os.getpid() & 0xFFFFFF:06x}{secrets.token_hex(3)}"
    return posixpath.join(head, f".{name}.{tag}{TEMP_MARKER}")


def _writer_alive(pid: int) -> bool:
    """Whether a process with this id runs here (a pid above 24 bits is never ``pid``)."""
    if pid == os.getpid() & 0xFFFFFF:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to another user
        return True
    return True


def remove_stale_temps(path: str, *, max_age: float = STALE_AFTER) -> list[str]:
    """Remove the stale temporaries of the local file ``path``; return what was removed.

    A temporary of ``path`` (``.name.<pid><random>.prefect-ds-tmp`` beside it) is stale
    when its writer's process no longer exists, or when it has not been modified for
    ``max_age`` seconds. Live writers' temporaries are kept, so calling this while other
    processes write the same target is safe.
    """
    head, name = os.path.split(path)
    removed: list[str] = []
    try:
        entries = list(os.scandir(head or "."))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match is None or match["name"] != name:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if age >= max_age or not _writer_alive(int(match["pid"], 16)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(entry.path)
    return removed


@contextlib.contextmanager
def staged(*locations: str, **storage_options: Any) -> Iterator[list[str]]:
    """Yield local paths to write ``locations`` to; commit them atomically on success.

    The last location is the data file and is committed last; the ones before it are
    sidecars. If the block raises, every staged file is removed and no target changes.
    """
    targets = [filesystem(loc, **storage_options) for loc in locations]
    fs = targets[0][0]
    if is_local(fs):
        paths = [path for _, path in targets]
        for path in paths:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            remove_stale_temps(path)
        temps = [temp_sibling(path) for path in paths]
        try:
            yield temps
            for temp, path in zip(temps, paths, strict=True):
                os.replace(temp, path)
        finally:
            for temp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temp)
        return
    with tempfile.TemporaryDirectory(prefix="prefect-ds-") as tmpdir:
        temps = [os.path.join(tmpdir, str(i)) for i in range(len(targets))]
        yield temps
        for temp, (target_fs, path) in zip(temps, targets, strict=True):
            target_fs.put_file(temp, path)


@contextlib.contextmanager
def open_for_read(location: str, **storage_options: Any) -> Iterator[str | IO[bytes]]:
    """A local path when the location is local (fastest for pyarrow), else an open file."""
    fs, path = filesystem(location, **storage_options)
    if is_local(fs):
        yield path
    else:
        with fs.open(path, "rb") as handle:
            yield handle


def modified_time(stat: Mapping[str, Any]) -> dt.datetime | None:
    """The modification time in fsspec's ``info`` (local ``mtime``, S3 ``LastModified``)."""
    value = stat.get("mtime", stat.get("LastModified", stat.get("last_modified")))
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return value if isinstance(value, dt.datetime) else None
