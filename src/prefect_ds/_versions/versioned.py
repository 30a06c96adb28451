"""A versioned view of a format: each write adds a version, reads resolve "latest".

:func:`versioned` wraps any format that implements
:class:`~prefect_ds._format.SupportsVersions`. The wrapper is itself a
:class:`~prefect_ds._format.Format`, so a handler and a checkpoint use it exactly as they
use the plain format:

* ``write`` stores the frame at a fresh version's location (the plain format writes it
  there, atomically, as any target) and then commits the version with its run record.
  Nothing is ever replaced or deleted by a write.
* ``read``, ``exists``, ``read_metadata`` and ``target_info`` look at the latest committed
  version, found by listing the committed versions once; or at the pinned version.
* The lock and the asset key stay those of the plain location: a checkpoint still
  serialises the processes computing one target, and lineage names the target itself.

The wrapper declares only the capabilities the wrapped format has: its class is made per
set of capabilities, from mixins.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import pandas as pd

from prefect_ds._errors import VersioningUnsupportedError, VersionNotFoundError
from prefect_ds._format import (
    Format,
    SupportsAssetKey,
    SupportsDiscard,
    SupportsLazyFrames,
    SupportsListing,
    SupportsLock,
    SupportsMetadata,
    SupportsSidecarNames,
    SupportsTargetInfo,
    SupportsVersions,
    TargetInfo,
    frame_kinds,
    stored_info,
)
from prefect_ds._redact import redact
from prefect_ds._storage.versions import new_id
from prefect_ds._versions import record as _record


class VersionedFormat(Format):
    """Every write of ``inner`` kept as a version; reads see the latest (or ``pinned``)."""

    name: ClassVar[str] = "versioned"

    def __init__(self, inner: Format, pinned: str | None = None) -> None:
        self.inner = inner
        self.versions_of: SupportsVersions = inner  # type: ignore[assignment]
        self.pinned = pinned
        self.default_read_kwargs = inner.default_read_kwargs  # type: ignore[misc]
        self.default_write_kwargs = inner.default_write_kwargs  # type: ignore[misc]
        self.kinds = frame_kinds(inner)  # type: ignore[misc]  # a version is inner's target
        # The version each location last resolved to or was written as, for whoever must
        # come back to exactly that frame (a released result reloaded later).
        self._settled: dict[str, str] = {}
        self._settled_lock = threading.Lock()

    # -- versions -------------------------------------------------------------------------

    def versions(self, location: str) -> list[str]:
        """The committed versions of ``location``, oldest first."""
        return self.versions_of.committed_versions(location)

    def record(self, location: str, version: str) -> dict[str, Any]:
        """The run record version ``version`` was committed with."""
        self.check_version(location, version)
        return self.versions_of.version_record(location, version)

    def check_version(self, location: str, version: str,
                      committed: list[str] | None = None) -> None:
        """Raise :class:`VersionNotFoundError` unless ``version`` is committed."""
        committed = self.versions(location) if committed is None else committed
        if version in committed:
            return
        shown = ", ".join(committed[-5:]) if committed else "none"
        raise VersionNotFoundError(
            f"version {version!r} of {redact(location)!r} is not among its committed "
            f"versions (latest: {shown}); list them with handler.versions(...) or "
            f"`prefect-ds ls TEMPLATE --versions` and pin one of those"
        )

    def resolve(self, location: str, version: str | None = None) -> str | None:
        """The version reads of ``location`` see: ``version``, the pinned one (both must be
        committed), else the latest committed one; None when none is committed."""
        wanted = version or self.pinned
        committed = self.versions(location)
        if wanted is not None:
            self.check_version(location, wanted, committed)
            found: str | None = wanted
        else:
            found = committed[-1] if committed else None
        if found is not None:
            self._settle(location, found)
        return found

    def location_of(self, location: str, version: str) -> str:
        """Where version ``version`` of ``location`` is stored."""
        return self.versions_of.version_location(location, version)

    def _read_location(self, location: str, version: str | None = None) -> str:
        found = self.resolve(location, version)
        if found is None:
            raise FileNotFoundError(
                f"no committed version of {redact(location)!r}: nothing was written there "
                f"with versioned=True yet")
        return self.location_of(location, found)

    def _settle(self, location: str, version: str) -> None:
        with self._settled_lock:
            self._settled[location] = version

    def settled(self, location: str) -> Format:
        """The plain format pinned to the version ``location`` last resolved to or was
        written as here (this view itself when there is none)."""
        with self._settled_lock:
            version = self._settled.get(location)
        return self if version is None else pinned_view(self, version)

    def prune(self, location: str, keep: int) -> list[str]:
        """Remove all but the newest ``keep`` committed versions; return the removed ones.

        Only committed versions are considered, so a version a concurrent writer is still
        writing (no record yet) is never touched, and the newest ``keep`` stay whatever
        others commit meanwhile. A version already removed by a concurrent prune is skipped.
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the latest version stays); got {keep!r}")
        committed = self.versions(location)
        doomed = committed[:-keep]
        for version in doomed:
            self.versions_of.remove_version(location, version)
        return doomed

    # -- Format ---------------------------------------------------------------------------

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        """The frame of the latest (or pinned) version."""
        return self.inner.read(self._read_location(location), **kwargs)

    def read_version(self, location: str, version: str, **kwargs: Any) -> pd.DataFrame:
        """The frame of version ``version`` (it must be committed)."""
        return self.inner.read(self._read_location(location, version), **kwargs)

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Store ``df`` as a new version of ``location``; nothing else changes."""
        self.write_version(df, location, metadata=metadata, **kwargs)

    def write_version(self, df: pd.DataFrame, location: str, *,
                      metadata: Mapping[str, str] | None = None, **kwargs: Any) -> str:
        """Store ``df`` as a new committed version of ``location``; return its id."""
        version = new_id()
        where = self.location_of(location, version)
        try:
            if metadata is not None:
                self.inner.write(df, where, metadata=metadata, **kwargs)
            else:
                self.inner.write(df, where, **kwargs)
        except Exception:  # a refused frame leaves nothing behind, not even a directory
            with contextlib.suppress(Exception):
                self.versions_of.remove_version(location, version)
            raise
        rows = _rows(df)
        entry = _record.build(version, redact(location), self.inner.name, rows,
                              stored_info(self.inner, where), metadata)
        self.versions_of.commit_version(location, version, entry)
        self._settle(location, version)
        return version

    def exists(self, location: str) -> bool:
        """Whether a committed version is there (the pinned one must be: else an error)."""
        return self.resolve(location) is not None

    def delete(self, location: str) -> None:
        """Remove every committed version of ``location``."""
        for version in self.versions(location):
            self.versions_of.remove_version(location, version)

    def __repr__(self) -> str:
        pinned = f", version {self.pinned!r}" if self.pinned else ""
        return f"<versioned {self.inner!r}{pinned}>"


class _Listing:
    def list_locations(self: Any, pattern: str) -> list[str]:
        """The targets matching ``pattern`` that have versions."""
        return list(self.versions_of.versioned_locations(pattern))


class _Metadata:
    def read_metadata(self: Any, location: str) -> dict[str, str]:
        found = self.resolve(location)
        if found is None:
            return {}
        return dict(self.inner.read_metadata(self.location_of(location, found)))


class _Info:
    def target_info(self: Any, location: str) -> TargetInfo:
        return stored_info(self.inner, self._read_location(location))


class _Lock:
    def lock(self: Any, location: str,
             timeout: float | None = None) -> AbstractContextManager[None]:
        lock: AbstractContextManager[None] = self.inner.lock(location, timeout)
        return lock


class _AssetKey:
    def asset_key(self: Any, location: str) -> str:
        return str(self.inner.asset_key(location))


class _Discard:
    def discard(self: Any, location: str) -> None:
        """Nothing to remove: the next write is a new version; the damaged one stays."""


class _LazyFrames:
    def accepts_frame(self: Any, result: object) -> bool:
        return bool(self.inner.accepts_frame(result))


class _SidecarNames:
    def sidecar_suffixes(self: Any) -> tuple[str, ...]:
        return tuple(self.inner.sidecar_suffixes())


_MIXINS: tuple[tuple[type, type], ...] = (
    (SupportsListing, _Listing),
    (SupportsMetadata, _Metadata),
    (SupportsTargetInfo, _Info),
    (SupportsLock, _Lock),
    (SupportsAssetKey, _AssetKey),
    (SupportsDiscard, _Discard),
    (SupportsLazyFrames, _LazyFrames),
    (SupportsSidecarNames, _SidecarNames),
)


@functools.cache
def _view_class(name: str, mixins: tuple[type, ...]) -> type[VersionedFormat]:
    return type(f"Versioned[{name}]", (*mixins, VersionedFormat), {"name": name})


def versioned(fmt: Format, pinned: str | None = None) -> VersionedFormat:
    """A versioned view of ``fmt`` (``pinned``: reads see that version)."""
    if isinstance(fmt, VersionedFormat):
        fmt = fmt.inner
    if not isinstance(fmt, SupportsVersions):
        raise VersioningUnsupportedError(
            f"format {fmt.name!r} ({type(fmt).__module__}.{type(fmt).__qualname__}) cannot "
            f"keep versions: it does not implement prefect_ds.SupportsVersions. Use a file "
            f"format or sql, or leave versioned=False"
        )
    mixins = tuple(mixin for protocol, mixin in _MIXINS if isinstance(fmt, protocol))
    return _view_class(fmt.name, mixins)(fmt, pinned)


def _rows(frame: Any) -> int | None:
    """The row count of an eager frame of any kind; None for a lazy one (not collected)."""
    if isinstance(frame, pd.DataFrame | pd.Series):
        return len(frame)
    rows = getattr(frame, "num_rows", None)  # pyarrow.Table
    if isinstance(rows, int):
        return rows
    height = getattr(frame, "height", None)  # polars.DataFrame
    return height if isinstance(height, int) else None


def pinned_view(fmt: VersionedFormat, version: str) -> VersionedFormat:
    """``fmt`` with reads pinned to ``version``."""
    return versioned(fmt.inner, version)


def settled(fmt: Format, location: str) -> Format:
    """The format that reads back exactly what ``location`` last resolved to or was
    written as through ``fmt``: that version for a versioned view, else ``fmt`` itself."""
    return fmt.settled(location) if isinstance(fmt, VersionedFormat) else fmt


def version_note(fmt: Format, location: str) -> str:
    """`` (version <id>)`` for the version ``location`` last resolved to or was written as
    through ``fmt``, for log lines; ``""`` for a plain format."""
    if not isinstance(fmt, VersionedFormat):
        return ""
    with fmt._settled_lock:
        version = fmt._settled.get(location)
    return f" (version {version})" if version else ""


def is_versioned(fmt: Format) -> bool:
    """Whether ``fmt`` is a versioned view."""
    return isinstance(fmt, VersionedFormat)


def is_pinned(fmt: Format) -> bool:
    """Whether ``fmt`` is a versioned view whose reads are pinned to one version."""
    return isinstance(fmt, VersionedFormat) and fmt.pinned is not None


def for_handler(fmt: Format, template: Any) -> VersionedFormat:
    """The versioned view a ``versioned=True`` handler uses (its template checked)."""
    if "version" in template.fields:
        raise VersioningUnsupportedError(
            f"PandasResultHandler({redact(template.template)!r}, versioned=True): a versioned "
            f"template cannot have a field named 'version', which read(version=...) pins; "
            f"rename the field"
        )
    return versioned(fmt)


def view(fmt: Format, template: str) -> VersionedFormat:
    """``fmt`` as a versioned view, or an error saying the handler is not versioned."""
    if isinstance(fmt, VersionedFormat):
        return fmt
    raise VersioningUnsupportedError(
        f"PandasResultHandler({redact(template)!r}) is not versioned: create it with "
        f"versioned=True to keep, list and pin versions"
    )
