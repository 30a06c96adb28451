"""Atomic, fsspec-backed storage shared by every file format.

A write goes to a hidden temporary sibling (``.name.<random>.prefect-ds-tmp``) and is
renamed into place, so the target is either absent, the previous complete file, or the
new complete file. On object stores, where a rename is a copy, the staged file is
uploaded with one PUT instead: the object appears whole or not at all. Sidecars are
committed before the data file, so a data file is never visible without its sidecar.

A writer killed mid-write leaves its hidden temporary behind. The 22 hex digits of a
temporary's name are the writer's process id (6 digits) and 16 random ones (a name
nobody can predict; the file is created exclusively, never through a link), so the next
local write of the same target removes its stale temporaries (:func:`remove_stale_temps`):
those whose writer process is gone, and any older than ``STALE_AFTER`` seconds whatever
their writer (a pid reused by another process, a writer on another host sharing the
directory). No reader ever looks at a temporary, so a stale one only wastes space.

Commits are durable on local file systems: every staged file is flushed to disk
(``fsync``) before it is renamed into place, and the directory after, so a target
reported as written survives a power loss. ``PREFECT_DS_DURABLE=0`` turns this off
(faster on slow disks, at the risk of an empty or old file after a power loss).

A multi-file commit (data file plus sidecars) renames its files under the target's lock
(:func:`prefect_ds._storage.locks.commit_lock`; on S3 it uploads them under the target's
lease), so two writers never interleave their renames or uploads, and every sidecar
records the binding of the data it describes (:mod:`prefect_ds._storage.binding`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import os
import posixpath
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import known_implementations

from prefect_ds._errors import MissingDependencyError
from prefect_ds._storage import binding
from prefect_ds._storage.durability import durable, fsync_path, makedirs
from prefect_ds._storage.lease import S3Lease, supports_leases
from prefect_ds._storage.locks import commit_lock

TEMP_MARKER = ".prefect-ds-tmp"
STALE_AFTER = 24 * 3600.0  # seconds: a temporary this old is stale whatever its writer
_TEMP_NAME = re.compile(
    r"\.(?P<name>.+)\.(?P<pid>[0-9a-f]{6})(?:[0-9a-f]{16}|[0-9a-f]{6})" + re.escape(TEMP_MARKER))
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


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
        known = known_implementations.get(protocol, {})
        package = str(known.get("class", "")).split(".", 1)[0]
        if package in ("", "fsspec"):  # fsspec's own filesystem, missing a module it uses
            package = getattr(exc.__cause__, "name", None) or str(exc)
        install = f"pip install {package}"
    return MissingDependencyError("", package, install, needed_by=f"a {protocol}:// location")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def temp_sibling(path: str) -> str:
    """A hidden temporary name in the same directory as ``path``: writer pid + random."""
    head, name = posixpath.split(path)
    tag = f"{os.getpid() & 0xFFFFFF:06x}{secrets.token_hex(8)}"
    return posixpath.join(head, f".{name}.{tag}{TEMP_MARKER}")


def create_temp(path: str) -> str:
    """Create ``path``'s temporary sibling exclusively (never through a link); its name."""
    for _ in range(100):
        temp = temp_sibling(path)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                         0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return temp
    raise FileExistsError(f"could not create a temporary file beside {path!r}")


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


@dataclass(eq=False)
class BoundSidecar:
    """A sidecar that :func:`staged` writes for the data file ``data`` and commits with it.

    ``render`` turns the data file's binding (:func:`prefect_ds._storage.binding.of_file`)
    into the sidecar's bytes; ``taken`` says whether a commit has included it.
    """

    data: str
    location: str
    render: Callable[[dict[str, Any]], bytes]
    taken: bool = False


_bound: contextvars.ContextVar[tuple[BoundSidecar, ...]] = contextvars.ContextVar(
    "prefect_ds_bound_sidecars", default=())


@contextlib.contextmanager
def bound_sidecar(sidecar: BoundSidecar) -> Iterator[BoundSidecar]:
    """While the block runs, a :func:`staged` commit of ``sidecar.data`` adds the sidecar."""
    token = _bound.set((*_bound.get(), sidecar))
    try:
        yield sidecar
    finally:
        _bound.reset(token)


def _take_bound(data_location: str) -> BoundSidecar | None:
    for sidecar in _bound.get():
        if sidecar.data == data_location and not sidecar.taken:
            sidecar.taken = True
            return sidecar
    return None


def _writable(temps: list[str], locations: list[str], extra: BoundSidecar | None) -> list[str]:
    """The temporaries the caller writes: all but a bound sidecar's, which is ours."""
    return [t for t, loc in zip(temps, locations, strict=True)
            if extra is None or loc != extra.location]


def _write_extra(extra: BoundSidecar | None, temps: list[str], *, local: bool) -> None:
    """Write a bound sidecar (second to last) describing the staged data file (last)."""
    if extra is not None:
        doc = extra.render(binding.of_file(temps[-1], local=local))
        with open(temps[-2], "wb") as out:
            out.write(doc)


@contextlib.contextmanager
def staged(*locations: str, durable_commit: bool | None = None,
           **storage_options: Any) -> Iterator[list[str]]:
    """Yield local paths to write ``locations`` to; commit them atomically on success.

    The last location is the data file and is committed last; the ones before it are
    sidecars. If the block raises, every staged file is removed and no target changes.
    Locally the files are flushed to disk before their renames and the directory after
    (unless ``durable_commit`` is False, or ``PREFECT_DS_DURABLE=0``), and a multi-file
    commit renames under the target's lock.
    """
    extra = _take_bound(locations[-1])
    all_locations = [*locations[:-1], *([extra.location] if extra else []), locations[-1]]
    targets = [filesystem(loc, **storage_options) for loc in all_locations]
    fs = targets[0][0]
    sync = durable() if durable_commit is None else durable_commit
    if is_local(fs):
        paths = [path for _, path in targets]
        created: list[str] = []
        for directory in dict.fromkeys(os.path.dirname(path) for path in paths):
            created += makedirs(directory)
        for path in paths:
            remove_stale_temps(path)
        temps: list[str] = []
        try:
            for path in paths:
                temps.append(create_temp(path))
            yield _writable(temps, all_locations, extra)
            _write_extra(extra, temps, local=True)
            if sync:
                for temp in temps:
                    fsync_path(temp)
            with commit_lock(paths[-1]) if len(paths) > 1 else contextlib.nullcontext():
                for temp, path in zip(temps, paths, strict=True):
                    os.replace(temp, path)
            if sync:
                for directory in dict.fromkeys(
                        [*(os.path.dirname(p) for p in created), *(os.path.dirname(p)
                                                                     for p in paths)]):
                    fsync_path(directory, directory=True)
        finally:
            for temp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temp)
        return
    with tempfile.TemporaryDirectory(prefix="prefect-ds-") as tmpdir:
        temps = [os.path.join(tmpdir, str(i)) for i in range(len(targets))]
        yield _writable(temps, all_locations, extra)
        _write_extra(extra, temps, local=False)
        data_fs, data_path = targets[-1]
        together = len(targets) > 1 and supports_leases(data_fs)
        with S3Lease(data_fs, data_path) if together else contextlib.nullcontext():
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
