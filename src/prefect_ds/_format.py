"""The interface every storage format implements, its optional capabilities, and the base
class of file formats, which supplies every capability's default.

:class:`Format` is narrow on purpose: ``read``, ``write``, ``exists``, ``delete``. What a
format *may* do besides is declared here, once, as a runtime-checkable protocol, and core
code asks for it with ``isinstance(fmt, SupportsX)`` and nothing else:

``SupportsMetadata``
    ``write(df, location, *, metadata=None, **kwargs)`` stores a small ``{str: str}``
    mapping with the data, and ``read_metadata(location)`` returns it (``{}`` when there
    is none). Staleness fingerprints live there.
``SupportsTargetInfo``
    ``target_info(location)``: what is cheap to know about a stored target (rows, bytes,
    modification time; partitions and whether it was committed, for datasets).
``SupportsListing``
    ``list_locations(pattern)``: the stored locations matching a glob in which ``*``
    stands for the parts a template fills.
``SupportsAssetKey``
    ``asset_key(location)``: a URI naming the target in Prefect's asset lineage.
``SupportsLock``
    ``lock(location, timeout=None)``: a context manager that keeps other processes from
    rendering the same target meanwhile (it may also be an async context manager).
``SupportsDiscard``
    ``discard(location)``: remove a damaged target's data so it can be written afresh.
``SupportsStorageOptions``
    ``with_storage_options(**options)``: a copy that passes ``options`` to its storage.
``SupportsSidecarNames``
    ``sidecar_suffixes()``: the endings of the files kept beside a data file
    (``".schema.json"``), so a rendered location never names another target's sidecar.
``SupportsLazyFrames``
    ``accepts_frame(result)``: whether ``write`` also stores ``result``, a frame that is
    not a pandas one (a Dask DataFrame, written where its partitions live); ``read``
    then gives such a lazy frame back.
``SupportsVersions``
    ``version_location(location, version)``, ``commit_version``, ``committed_versions``,
    ``version_record``, ``remove_version`` and ``versioned_locations(pattern)``: keep
    each write of a versioned target as a version at a derived location, committed by a
    record (``docs/versions.md``).

:class:`FileFormat` implements all of them for anything stored as files through fsspec, so
a third-party file format gets them by subclassing it.

Frame kinds are declared by one attribute, ``Format.kinds``: the kinds of frame ``write``
takes and ``read(location, kind=...)`` gives natively, among ``"pandas"``, ``"arrow"``
(``pyarrow.Table``), ``"arrow.RecordBatchReader"``, ``"polars"`` and
``"polars.LazyFrame"``. The default is pandas only, and such a format's ``read`` is never
passed ``kind``: a format written before kinds existed keeps receiving pandas frames.
Core code converts every other kind (``prefect_ds._storage.kinds``) and asks through
:func:`frame_kinds`.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import datetime as dt
import functools
import inspect
import os
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import fsspec

from prefect_ds._errors import TemplateError
from prefect_ds._lazy import lazy
from prefect_ds._storage import sidecar, versions
from prefect_ds._storage.files import bound_sidecar, filesystem, is_local, modified_time
from prefect_ds._storage.lease import S3Lease, supports_leases
from prefect_ds._storage.locks import FileLock

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

_F = TypeVar("_F", bound="FileFormat")


class Format(abc.ABC):
    """Reads and writes a whole :class:`pandas.DataFrame` at a location string.

    A location is a local path, an fsspec URL (``s3://…``, ``memory://…``) or, for
    database formats, a URL with the table after ``#``. Implementations must write
    atomically: a reader or a crash never sees a partial result at ``location``.

    ``suffixes`` (lower case, with the dot) and ``schemes`` (URL schemes, without any
    ``+driver`` part) let a location pick its format when none is named.
    ``default_read_kwargs`` / ``default_write_kwargs`` are merged under the caller's
    options by :meth:`read_options` / :meth:`write_options`, once per call.
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    schemes: ClassVar[tuple[str, ...]] = ()
    default_read_kwargs: ClassVar[Mapping[str, Any]] = {}
    default_write_kwargs: ClassVar[Mapping[str, Any]] = {}
    kinds: ClassVar[tuple[str, ...]] = ("pandas",)

    @abc.abstractmethod
    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        """Load the frame stored at ``location``."""

    @abc.abstractmethod
    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        """Store ``df`` at ``location`` atomically, replacing what was there."""

    @abc.abstractmethod
    def exists(self, location: str) -> bool:
        """Whether a complete result is stored at ``location``."""

    @abc.abstractmethod
    def delete(self, location: str) -> None:
        """Remove what is stored at ``location``; no error if nothing is."""

    def read_options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's read options over this format's defaults."""
        return {**self.default_read_kwargs, **kwargs}

    def write_options(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The caller's write options over this format's defaults."""
        return {**self.default_write_kwargs, **kwargs}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format {self.name!r}>"


@dataclass(frozen=True)
class TargetInfo:
    """What is cheap to know about a stored target; None where it is not.

    ``partitions`` counts the directories of a multi-file target; ``committed`` is False
    for a multi-file target that no prefect-ds commit made (files another tool wrote).
    """

    rows: int | None = None
    bytes: int | None = None
    modified: dt.datetime | None = None
    partitions: int | None = None
    committed: bool | None = None


@runtime_checkable
class SupportsMetadata(Protocol):
    """A format that stores a ``{str: str}`` mapping with the data (module doc)."""

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None: ...

    def read_metadata(self, location: str) -> dict[str, str]: ...


@runtime_checkable
class SupportsTargetInfo(Protocol):
    """A format that can say rows, bytes and modification time of a stored target."""

    def target_info(self, location: str) -> TargetInfo: ...


@runtime_checkable
class SupportsListing(Protocol):
    """A format that lists its stored locations matching a ``*`` glob."""

    def list_locations(self, pattern: str) -> list[str]: ...


@runtime_checkable
class SupportsAssetKey(Protocol):
    """A format that names its targets for Prefect's asset lineage."""

    def asset_key(self, location: str) -> str: ...


@runtime_checkable
class SupportsLock(Protocol):
    """A format that excludes concurrent writers of one location itself."""

    def lock(self, location: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold an exclusive, cross-process lock on ``location`` while the block runs."""


@runtime_checkable
class SupportsDiscard(Protocol):
    """A format that can remove a damaged target's data without touching the rest."""

    def discard(self, location: str) -> None: ...


@runtime_checkable
class SupportsStorageOptions(Protocol):
    """A format whose storage takes options (credentials, endpoints) per location."""

    def with_storage_options(self, **storage_options: Any) -> Any: ...


@runtime_checkable
class SupportsSidecarNames(Protocol):
    """A format that keeps files beside a data file, named by appending a suffix."""

    def sidecar_suffixes(self) -> tuple[str, ...]: ...


@runtime_checkable
class SupportsLazyFrames(Protocol):
    """A format that stores lazy frames (Dask DataFrames) besides pandas ones."""

    def accepts_frame(self, result: object) -> bool: ...


@runtime_checkable
class SupportsVersions(Protocol):
    """A format that keeps versions of a target at derived locations (``docs/versions.md``).

    ``version_location`` names where a version's data goes (the format writes it there as
    any target); ``commit_version`` records it, atomically, after the data is stored: only
    committed versions are listed by ``committed_versions`` (oldest first), so a crash
    mid-write never commits one. ``remove_version`` takes the record away, then the data.
    """

    def version_location(self, location: str, version: str) -> str: ...

    def commit_version(self, location: str, version: str,
                       record: Mapping[str, Any]) -> None: ...

    def committed_versions(self, location: str) -> list[str]: ...

    def version_record(self, location: str, version: str) -> dict[str, Any]: ...

    def remove_version(self, location: str, version: str) -> None: ...

    def versioned_locations(self, pattern: str) -> list[str]: ...


_UNSAFE_IN_KEYS = re.compile(r"[\s#?&%\"'<>\[\]{}|\\^`\x00]")


def safe_asset_key(key: str) -> str:
    """``key`` with the characters Prefect refuses in asset keys replaced by ``_``.

    Prefect's asset keys are URIs without spaces, ``#``, ``?``, ``%``, quotes or brackets
    (and at most 512 characters); location templates only put plain names into a path,
    so this only touches literal parts of a template such as a directory with a space.
    """
    return _UNSAFE_IN_KEYS.sub("_", key)


def _with_metadata_sidecar(write: Callable[..., None]) -> Callable[..., None]:
    """Wrap a file format's ``write`` that takes no ``metadata`` to keep it in a sidecar."""

    @functools.wraps(write)
    def wrapper(self: FileFormat, df: pd.DataFrame, location: str, *,
                metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        if metadata is None:
            write(self, df, location, **kwargs)
            return
        data = self.data_location(location)
        # The sidecar joins the data file's own staged() commit, bound to its bytes.
        with bound_sidecar(sidecar.bound(data, location, metadata)) as pending:
            write(self, df, location, **kwargs)
        if not pending.taken:  # the format wrote without staged(): bind to what it wrote
            with self._commit_lock(location):
                sidecar.write(data, location, metadata, self.storage_options)

    return wrapper


class FileFormat(Format):
    """Base for formats that store one file (plus optional sidecars) through fsspec.

    Subclasses implement :meth:`read` and :meth:`write` (writing through
    :func:`~prefect_ds.staged`) and list extra files in :meth:`sidecars`. Everything else
    comes from here: ``exists``, ``delete``, target info, listing, the asset key, the
    lock, discarding damaged data, and metadata. A subclass whose ``write`` takes a
    ``metadata`` keyword stores metadata itself (and overrides :meth:`read_metadata`);
    for one that does not, metadata goes to a sidecar file bound to the data file
    (``prefect_ds._storage.sidecar``). ``storage_options`` are passed to fsspec.
    """

    _metadata_sidecar: ClassVar[bool] = False

    def __init__(self, **storage_options: Any) -> None:
        self.storage_options = storage_options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        write = cls.__dict__.get("write")
        if write is not None and "metadata" not in inspect.signature(write).parameters:
            cls.write = _with_metadata_sidecar(write)  # type: ignore[method-assign]
            cls._metadata_sidecar = True

    def with_storage_options(self: _F, **storage_options: Any) -> _F:
        """A copy of this format that passes ``storage_options`` to fsspec as well.

        The registered instance is shared by every handler, so options given for one
        location (credentials, an endpoint) go on a copy, never on the shared instance.
        """
        clone = copy.copy(self)
        clone.storage_options = {**self.storage_options, **storage_options}
        return clone

    def filesystem(self, location: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The fsspec filesystem and path of ``location``'s data file."""
        return filesystem(self.data_location(location), **self.storage_options)

    def sidecars(self, location: str) -> list[str]:
        """Locations of the files stored beside the data file, committed before it."""
        return []

    def sidecar_suffixes(self) -> tuple[str, ...]:
        """What :meth:`sidecars` (and the metadata sidecar) append to a data file's name."""
        probe = "prefect-ds-probe"
        found = [s[len(probe):] for s in self.sidecars(probe) if s.startswith(probe)]
        if self._metadata_sidecar:
            found.append(sidecar.SUFFIX)
        return tuple(found)

    def data_location(self, location: str) -> str:
        """The data file's location (formats with a ``#fragment`` strip it here)."""
        return location

    def exists(self, location: str) -> bool:
        fs, path = self.filesystem(location)
        return bool(fs.isfile(path))

    def delete(self, location: str) -> None:
        """Remove the data file, then its sidecars, under the target's lock."""
        data = self.data_location(location)
        fs, path = self.filesystem(location)
        if is_local(fs) and not os.path.isdir(os.path.dirname(path) or "."):
            return  # nothing stored, and no lock file (or directory) to create for it
        with self._commit_lock(location):
            for loc in [data, *self.sidecars(data)]:  # data first: never a data file alone
                fs, path = filesystem(loc, **self.storage_options)
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(path)
            if self._metadata_sidecar:
                sidecar.remove(data, location, self.storage_options)

    def discard(self, location: str) -> None:
        """Remove the data file only: a damaged container holds nothing worth keeping."""
        fs, path = self.filesystem(location)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The metadata stored with ``location`` (``{}`` if none); the sidecar by default."""
        return sidecar.read(self.data_location(location), location, self.storage_options)

    def target_info(self, location: str) -> TargetInfo:
        """Size and modification time of the data file, from one ``stat`` or HEAD."""
        fs, path = self.filesystem(location)
        stat = fs.info(path)
        return TargetInfo(bytes=stat.get("size"), modified=modified_time(stat))

    def list_locations(self, pattern: str) -> list[str]:
        """Stored locations matching ``pattern``, spelled as ``pattern`` spells them.

        ``*`` may stand anywhere in the file's path; the ``#fragment`` of a multi-key
        file is kept as given.
        """
        path, sep, fragment = pattern.partition("#")
        if "*" in fragment:
            raise TemplateError(
                f"cannot list {pattern!r}: the part after '#' varies, and prefect-ds lists "
                f"files, not the keys inside them; fix the key in the template"
            )
        wild = min((i for i in (path.find(c) for c in "*?[") if i >= 0), default=len(path))
        head = path[: path.rfind("/", 0, wild) + 1]
        fs, fs_glob = filesystem(path, **self.storage_options)
        fs_head = fs_glob[: len(fs_glob) - (len(path) - len(head))]
        found = []
        for fs_path in sorted(str(p) for p in fs.glob(fs_glob)):
            if fs_path.startswith(fs_head):
                found.append(head + fs_path[len(fs_head):] + sep + fragment)
        return found

    def asset_key(self, location: str) -> str:
        """``file:///absolute/path`` locally, the fsspec URL elsewhere; ``#key`` -> ``/key``."""
        fs, path = self.filesystem(location)
        if is_local(fs):
            key = "file://" + os.path.abspath(path).replace(os.sep, "/")
        else:
            key = fs.unstrip_protocol(path)
        _, _, fragment = location.partition("#")
        return f"{key.rstrip('/')}/{fragment}" if fragment else key

    def accepts_frame(self, result: object) -> bool:
        """A file holds one pandas frame: no lazy frames."""
        return False

    def version_location(self, location: str, version: str) -> str:
        """``name.versions/<version>/name`` beside the target (``_storage.versions``)."""
        return versions.version_location(location, version)

    def commit_version(self, location: str, version: str, record: Mapping[str, Any]) -> None:
        """Write the version's record, which commits it, atomically."""
        versions.commit(location, version, record, self.storage_options)

    def committed_versions(self, location: str) -> list[str]:
        """The committed versions of ``location``, oldest first (one listing)."""
        return versions.committed(location, self.storage_options)

    def version_record(self, location: str, version: str) -> dict[str, Any]:
        """The record a version was committed with (``{}`` if none)."""
        return versions.read_record(location, version, self.storage_options)

    def remove_version(self, location: str, version: str) -> None:
        """Uncommit a version (its record goes first), then remove its files."""
        versions.remove(location, version, self.storage_options, self.delete)

    def versioned_locations(self, pattern: str) -> list[str]:
        """The locations matching ``pattern`` (a ``*`` glob) that keep versions."""
        keyed = "#" in pattern
        roots = self.list_locations(versions.root(pattern))
        return sorted(versions.location_of_root(found, keyed) for found in roots)

    def lock(self, location: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """A lock file beside a local data file, a lease object beside an S3 one, none on
        other object stores (module doc of ``prefect_ds._storage.locks``)."""
        fs, path = self.filesystem(location)
        if is_local(fs):  # re-entrant: handler.write under a checkpoint's lock, say
            return FileLock(path, timeout, reentrant=True)
        if supports_leases(fs):
            return S3Lease(fs, path, timeout)
        return contextlib.nullcontext()


    def _commit_lock(self, location: str) -> AbstractContextManager[None]:
        """:meth:`lock`, which is re-entrant: a caller may already hold it."""
        return self.lock(location)


def frame_kinds(fmt: Format) -> tuple[str, ...]:
    """The frame kinds ``fmt`` takes natively (module doc); pandas only if it declares none."""
    declared = getattr(fmt, "kinds", ("pandas",))
    if not isinstance(declared, (tuple, list, frozenset, set)) or not declared:
        return ("pandas",)
    return tuple(str(kind) for kind in declared)


def stored_metadata(fmt: Format, location: str) -> dict[str, str]:
    """The metadata stored with the target at ``location``; ``{}`` if the format keeps none."""
    if not isinstance(fmt, SupportsMetadata):
        return {}
    return {str(k): str(v) for k, v in (fmt.read_metadata(location) or {}).items()}


def stored_info(fmt: Format, location: str) -> TargetInfo:
    """What the format can cheaply tell about the target at ``location``."""
    return fmt.target_info(location) if isinstance(fmt, SupportsTargetInfo) else TargetInfo()
