"""Read and write any frame kind through any format: the one place core code does it.

A write converts the result to a kind the format takes (``Format.kinds``) and records
the result's kind in the target's metadata (formats with ``SupportsMetadata``; nothing is
recorded for a pandas DataFrame). A read asks the format for a kind it gives natively
and converts that to the kind wanted: the one asked for, else the recorded one, else
pandas (a target written by someone else). ``prefect_ds._storage.kinds`` has the kinds
and conversions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from prefect_ds._errors import CorruptTargetError, FormatOptionError, PrefectDSError
from prefect_ds._format import Format, SupportsMetadata, frame_kinds, stored_metadata
from prefect_ds._redact import redact, scrub
from prefect_ds._storage import kinds as _kinds


def write_frame(fmt: Format, frame: Any, location: str, write_kwargs: Mapping[str, Any],
                metadata: Mapping[str, str] | None = None) -> str:
    """Store ``frame`` (any kind) at ``location`` with ``metadata``; return its kind."""
    kind = _kinds.kind_of(frame)
    if kind is None:
        raise TypeError(f"cannot store a {type(frame).__module__}.{type(frame).__qualname__}")
    accepted = frame_kinds(fmt)
    native = _kinds.for_format(frame, kind, accepted, fmt.name)  # refusals come first
    record = _kinds.metadata_for(frame, kind)
    if _kinds.ARROW not in accepted and _kinds.POLARS not in accepted:
        record.update(_kinds.schema_record(frame, kind))  # cast back exactly on read
    if record and isinstance(fmt, SupportsMetadata):
        metadata = {**(metadata or {}), **record}
    with _options_refused(fmt, "write_kwargs", write_kwargs, location):
        if metadata is not None:
            fmt.write(native, location, metadata=dict(metadata), **write_kwargs)
        else:
            fmt.write(native, location, **write_kwargs)
    return kind


def stored_kind(fmt: Format, location: str) -> str:
    """The kind recorded with the target at ``location`` (pandas when none is)."""
    return _kinds.stored_kind(stored_metadata(fmt, location))


def read_frame(fmt: Format, location: str, read_kwargs: Mapping[str, Any],
               kind: str | None = None) -> Any:
    """The frame at ``location`` as ``kind`` (None: as stored; a library: see ``wanted``)."""
    metadata: dict[str, str] = {}
    if kind is None or kind in _kinds.FAMILIES or kind == _kinds.SERIES:
        try:
            metadata = stored_metadata(fmt, location)
        except (CorruptTargetError, FileNotFoundError):
            raise
        except Exception:  # a damaged file: the read below names what is wrong with it
            metadata = {}
    target = _kinds.wanted(kind, _kinds.stored_kind(metadata))

    def read(native: str) -> Any:
        with _options_refused(fmt, "read_kwargs", read_kwargs, location):
            if native == _kinds.PANDAS:
                return fmt.read(location, **read_kwargs)
            return fmt.read(location, kind=native, **read_kwargs)

    return _kinds.read_as(read, frame_kinds(fmt), target, metadata)


@contextlib.contextmanager
def _options_refused(fmt: Format, what: str, options: Mapping[str, Any],
                     location: str) -> Iterator[None]:
    """Turn the library's own complaint about ``options`` into a FormatOptionError.

    Only when options were given, and only for the errors a bad option raises: an unknown
    keyword's ``TypeError``, and on writes also a bad value's ``ValueError`` or pyarrow
    ``ArrowException`` (on reads those may describe a damaged file, so they pass through,
    as do our own errors, missing files and I/O failures).
    """
    try:
        yield
    except (PrefectDSError, FileNotFoundError, OSError):
        raise
    except Exception as exc:
        writing = what == "write_kwargs"
        refused = isinstance(exc, TypeError) or (writing and (
            isinstance(exc, ValueError) or type(exc).__module__.startswith("pyarrow")))
        if not options or not refused:
            raise
        lost = "; nothing was written" if writing else ""
        raise FormatOptionError(
            f"the {fmt.name} format refused {what}={{{', '.join(map(repr, options))}}} at "
            f"{redact(location)!r}: {scrub(str(exc), location)}. Check the option names and values "
            f"against the format's documentation{lost}"
        ) from exc
