"""Atomic, fsspec-backed storage shared by every file format.

A write goes to a hidden temporary sibling (``.name.<random>.prefect-ds-tmp``) and is
renamed into place, so the target is either absent, the previous complete file, or the
new complete file. On object stores, where a rename is a copy, the staged file is
uploaded with one PUT instead: the object appears whole or not at all. Sidecars are
committed before the data file, so a data file is never visible without its sidecar.
"""

from __future__ import annotations

import contextlib
import copy
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ._format import Format

TEMP_MARKER = ".prefect-ds-tmp"
_F = TypeVar("_F", bound="FileFormat")


def filesystem(location: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the path within it for ``location``."""
    fs, path = fsspec.core.url_to_fs(location, **storage_options)
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def temp_sibling(path: str) -> str:
    """A hidden temporary name in the same directory as ``path``."""
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}.{uuid.uuid4().hex[:12]}{TEMP_MARKER}")


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


class FileFormat(Format):
    """Base for formats that store one file (plus optional sidecars) through fsspec.

    Subclasses implement :meth:`read` and :meth:`write` (writing through :func:`staged`)
    and list extra files in :meth:`sidecars`; ``exists`` and ``delete`` come from here.
    ``storage_options`` are passed to fsspec (credentials, endpoints).
    """

    def __init__(self, **storage_options: Any) -> None:
        self.storage_options = storage_options

    def with_storage_options(self: _F, **storage_options: Any) -> _F:
        """A copy of this format that passes ``storage_options`` to fsspec as well.

        The registered instance is shared by every handler, so options given for one
        location (credentials, an endpoint) go on a copy, never on the shared instance.
        """
        clone = copy.copy(self)
        clone.storage_options = {**self.storage_options, **storage_options}
        return clone

    def sidecars(self, location: str) -> list[str]:
        """Locations of the files stored beside the data file, committed before it."""
        return []

    def data_location(self, location: str) -> str:
        """The data file's location (formats with a ``#fragment`` strip it here)."""
        return location

    def exists(self, location: str) -> bool:
        fs, path = filesystem(self.data_location(location), **self.storage_options)
        return bool(fs.isfile(path))

    def delete(self, location: str) -> None:
        data = self.data_location(location)
        for loc in [data, *self.sidecars(data)]:  # data first: never a data file alone
            fs, path = filesystem(loc, **self.storage_options)
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)
