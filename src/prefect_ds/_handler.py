"""``ResultHandler``: one templated location, one format, one set of options, any frame kind.

``PandasResultHandler`` is the same handler reading pandas unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar, cast

from prefect_ds._checkpoint import lineage as _lineage
from prefect_ds._errors import TemplateError
from prefect_ds._format import (
    Format,
    SupportsLock,
    SupportsSidecarNames,
    SupportsStorageOptions,
)
from prefect_ds._frames import read_frame, write_frame
from prefect_ds._locations import LocationTemplate, as_location
from prefect_ds._redact import redact
from prefect_ds._registry import resolve_format
from prefect_ds._storage import kinds as _kinds
from prefect_ds._storage.blocks import StorageRoot, storage_root
from prefect_ds._storage.files import require_filesystem
from prefect_ds._versions import versioned as _versions


class ResultHandler:
    """Reads and writes frames of any kind at a templated location in one format.

    A frame is a pandas ``DataFrame`` or ``Series``, a polars ``DataFrame`` or
    ``LazyFrame``, or a pyarrow ``Table`` or ``RecordBatchReader``. ``write`` records the
    kind it was given with the target (formats that keep metadata), and ``read`` gives
    that kind back unless ``kind=`` asks for ``"pandas"``, ``"polars"`` or ``"arrow"``;
    a target with no record (written by someone else) reads as pandas.

    ``location`` is a ``str.format`` template filled from task-style keyword arguments,
    e.g. ``"data/{region}.parquet"``. ``format`` names a registered format; without it
    the format follows from the location's suffix or URL scheme. ``read_kwargs`` and
    ``write_kwargs`` are passed to the format on every read and write.
    ``storage_options`` go to fsspec for file formats (credentials, ``endpoint_url`` for
    an S3-compatible store); without them fsspec reads the usual environment variables.

    ``location`` may be a ``pathlib.Path`` or any ``os.PathLike``. ``storage`` is a Prefect
    storage block, or a saved block's slug (``"s3-bucket/lab"``), used as the root of a
    relative ``location``; credentials come from the block (``storage_options`` override
    them). A slug is loaded from the Prefect API once, here.

    ``versioned=True`` keeps every write as a new version of the target and reads the
    latest complete one; :meth:`versions` lists them, ``read(version=...)`` pins one, and
    each version records the Prefect run that wrote it (``docs/versions.md``).
    """

    default_kind: ClassVar[str | None] = None  # None: the kind recorded with the target

    def __init__(
        self,
        location: str | os.PathLike[str],
        format: str | None = None,
        *,
        read_kwargs: Mapping[str, Any] | None = None,
        write_kwargs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        storage: object | str | None = None,
        versioned: bool = False,
    ) -> None:
        location = as_location(location)
        self.storage: StorageRoot | None = None
        if storage is not None:
            self.storage = _storage_root(storage)
            try:
                location = self.storage.join(location)
            except ValueError as exc:
                raise TemplateError(str(exc)) from None
            storage_options = {**self.storage.options, **(storage_options or {})}
        self.template = LocationTemplate(location)
        self.format: Format = resolve_format(location, format)
        if isinstance(self.format, SupportsStorageOptions):  # files: s3:// needs s3fs, ...
            require_filesystem(location)
        if storage_options:
            if not isinstance(self.format, SupportsStorageOptions):
                raise TypeError(
                    f"{type(self).__name__}({redact(location)!r}): storage_options apply to file "
                    f"formats only, and {self.format.name!r} is not one; put connection "
                    f"settings in the location instead"
                )
            self.format = cast(Format, self.format.with_storage_options(**storage_options))
        self.read_kwargs = _options(read_kwargs, "read_kwargs")
        self.write_kwargs = _options(write_kwargs, "write_kwargs")
        self.versioned = bool(versioned)
        if self.versioned:
            self.format = _versions.for_handler(self.format, self.template)

    @property
    def location(self) -> str:
        """The unrendered location template."""
        return self.template.template

    @property
    def path(self) -> str:
        """The unrendered location template, under the name the Prefect 0.9 handler used."""
        return self.location

    @property
    def file_type(self) -> str:
        """The format's name (``"csv"``, ``"parquet"``...), under the name of the Prefect
        0.9 handler's second argument (which ``format`` takes the place of)."""
        return self.format.name

    def render(self, /, **arguments: Any) -> str:
        """The location for these arguments (checked: ``prefect_ds._locations``)."""
        suffixes = (self.format.sidecar_suffixes()
                    if isinstance(self.format, SupportsSidecarNames) else ())
        return self.template.render(arguments, suffixes)

    def read(self, /, version: str | None = None, *, kind: str | None = None,
             **arguments: Any) -> Any:
        """Load the frame stored for these arguments, as ``kind``.

        ``kind`` is ``"pandas"``, ``"polars"`` or ``"arrow"`` (or an exact kind such as
        ``"polars.LazyFrame"``); without it, the kind recorded with the target. A
        template field named ``kind`` takes the argument instead. ``version`` reads that
        version of a versioned target (else the latest); a template field named
        ``version`` of an unversioned handler takes it instead.
        """
        if version is not None and not self.versioned and "version" in self.template.fields:
            arguments["version"] = version  # a template field of that name, as before
            version = None
        if "kind" in self.template.fields and kind is not None:
            arguments["kind"] = kind
            kind = None
        kind = self.default_kind if kind is None else kind
        if kind is not None:
            _kinds.check_kind(kind, repr(self))
        fmt = self.format
        if version is not None:
            fmt = _versions.pinned_view(_versions.view(self.format, self.location), version)
        return read_frame(fmt, self.render(**arguments), self.read_kwargs, kind)

    def versions(self, /, **arguments: Any) -> list[str]:
        """The committed versions stored for these arguments, oldest first."""
        return _versions.view(self.format, self.location).versions(self.render(**arguments))

    def version_record(self, version: str, /, **arguments: Any) -> dict[str, Any]:
        """The run record of one version: flow and task run, fingerprint parts, rows,
        bytes and write time."""
        return _versions.view(self.format, self.location).record(
            self.render(**arguments), version)

    def prune(self, keep: int, /, **arguments: Any) -> list[str]:
        """Remove all but the newest ``keep`` versions; return the removed version ids."""
        return _versions.view(self.format, self.location).prune(
            self.render(**arguments), keep)

    def pinned(self, version: str) -> ResultHandler:
        """A copy of this versioned handler whose reads see ``version`` only."""
        clone = copy.copy(self)
        clone.format = _versions.pinned_view(_versions.view(self.format, self.location),
                                             version)
        return clone

    def write(self, df: Any, /, **arguments: Any) -> str:
        """Store the frame ``df`` for these arguments atomically; return the location."""
        if _kinds.kind_of(df) is None:
            raise TypeError(
                f"{type(self).__name__}({redact(self.location)!r}) can only write a frame "
                f"(a pandas DataFrame or Series, a polars DataFrame or LazyFrame, a pyarrow "
                f"Table or RecordBatchReader), "
                f"got {type(df).__module__}.{type(df).__qualname__}; nothing was written"
            )
        location = self.render(**arguments)
        # One writer at a time: one complete result remains. A version has a location of
        # its own, so versioned writers need not wait for each other.
        with contextlib.nullcontext() if self.versioned else self._lock(location):
            write_frame(self.format, df, location, self.write_kwargs)
        _lineage.report("materialized", self.format, location, df)  # inside a run only
        return location

    def _lock(self, location: str) -> AbstractContextManager[None]:
        """The format's lock on ``location`` (re-entrant under a checkpoint's)."""
        if isinstance(self.format, SupportsLock):
            return self.format.lock(location)
        return contextlib.nullcontext()

    def exists(self, /, **arguments: Any) -> bool:
        """Whether a complete result is stored for these arguments."""
        return self.format.exists(self.render(**arguments))

    def delete(self, /, **arguments: Any) -> None:
        """Remove the result stored for these arguments, if any."""
        self.format.delete(self.render(**arguments))

    def __repr__(self) -> str:
        versioned = ", versioned=True" if self.versioned else ""
        return (f"{type(self).__name__}({redact(self.location)!r}, "
                f"format={self.format.name!r}{versioned})")


class PandasResultHandler(ResultHandler):
    """A :class:`ResultHandler` whose ``read`` gives pandas unless ``kind=`` says otherwise.

    It writes every frame kind, as :class:`ResultHandler` does.
    """

    default_kind: ClassVar[str | None] = "pandas"


def _storage_root(storage: object) -> StorageRoot:
    """The root of a block instance, or of the saved block a ``"type/name"`` slug names."""
    if isinstance(storage, str):
        if storage.count("/") != 1 or not all(storage.split("/")):
            raise ValueError(
                f"storage={storage!r} is not a saved block's slug; give 'block-type/name' "
                f"(e.g. 'local-file-system/lab') or a block instance"
            )
        return storage_root(_load_block(storage), repr(storage))
    return storage_root(storage)


def _load_block(slug: str) -> object:
    """The saved block ``slug``, loaded from the Prefect API (also inside a running loop)."""
    from prefect.blocks.core import Block
    from prefect.utilities.asyncutils import run_coro_as_sync

    try:
        return run_coro_as_sync(Block.aload(slug))
    except ValueError as exc:
        raise ValueError(
            f"storage={slug!r}: no such saved block ({exc}); create it with Block.save() or "
            f"in the Prefect UI, or pass a block instance"
        ) from None


def _options(given: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """``read_kwargs``/``write_kwargs`` as a dict, refusing anything but a mapping of
    keyword names (a list or a string would fail later, far from its cause)."""
    if given is None:
        return {}
    if not isinstance(given, Mapping) or not all(isinstance(k, str) for k in given):
        raise TypeError(f"{name} must be a mapping of keyword arguments for the format, "
                        f"like {{'compression': 'zstd'}}; got a {type(given).__name__}"
                        f"{' with keys that are not names' if isinstance(given, Mapping) else ''}")
    return dict(given)
