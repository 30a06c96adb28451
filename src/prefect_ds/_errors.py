"""Every exception prefect-ds raises. Each message names the problem and the fix."""

from __future__ import annotations


class PrefectDSError(Exception):
    """Base class of every prefect-ds error."""


class UnknownFormatError(PrefectDSError, LookupError):
    """A format name (or a location's suffix or scheme) matches no installed format."""


class MissingDependencyError(PrefectDSError, ImportError):
    """A format's module cannot load without an optional dependency.

    A format module raises it at import when its library is missing, so the install hint
    travels with the format's registration: the registry keeps it and repeats it when a
    location names that format, or has one of its ``suffixes`` or ``schemes``. A library
    needed only by some locations (an fsspec filesystem for ``s3://``, a database driver)
    is reported when such a location is used, with ``needed_by`` naming it.
    """

    def __init__(self, format: str, missing: str, install: str, *,
                 suffixes: tuple[str, ...] = (), schemes: tuple[str, ...] = (),
                 needed_by: str | None = None) -> None:
        if needed_by is None:
            super().__init__(f"the {format!r} format needs {missing}, which is not installed")
        else:  # raised when a location is used, so the message carries the fix itself
            super().__init__(f"{needed_by} needs {missing}, which is not installed. "
                             f"Install it with: {install}")
        self.format = format
        self.install = install
        self.suffixes = suffixes
        self.schemes = schemes


class DuplicateFormatError(PrefectDSError):
    """Two plugins registered the same format name and neither asked to override."""


class TemplateError(PrefectDSError, ValueError):
    """A location template cannot be rendered: unknown or missing field."""


class UnsafeLocationError(TemplateError):
    """A rendered value would escape the template's directory or inject SQL."""


class CorruptTargetError(PrefectDSError):
    """A stored target exists but cannot be trusted: truncated, garbled, or inconsistent."""


class CheckpointCollisionError(PrefectDSError, RuntimeError):
    """Two calls in one flow run would use the same checkpoint target."""


class CheckpointResultError(PrefectDSError, TypeError):
    """A checkpointed task returned something other than a pandas DataFrame."""


class TargetLockTimeout(PrefectDSError, TimeoutError):
    """Another process held a target's lock for longer than the caller would wait."""


class ResultReleasedError(PrefectDSError, RuntimeError):
    """A task needs a result that DSTaskRunner already released and cannot reload."""


class FingerprintError(PrefectDSError, TypeError):
    """A value cannot be fingerprinted, or ``invalidate_on`` names an unknown part."""


class UnsupportedFrameError(PrefectDSError, ValueError, TypeError):
    """The frame holds a column, name or index the format cannot store exactly.

    Raised before anything is written. It is a ``ValueError`` and a ``TypeError`` both,
    since formats refused such frames with either before this error existed.
    """


class FormatOptionError(PrefectDSError, ValueError, TypeError):
    """A format refused the ``read_kwargs`` or ``write_kwargs`` it was given.

    Raised in place of the library's own error (a pyarrow ``ArrowException``, a
    ``TypeError`` for an unknown keyword, ...), naming the format, the options and the
    location; nothing was written.
    """


class VersionNotFoundError(PrefectDSError, LookupError):
    """A pinned version of a versioned target is not among its committed versions."""


class VersioningUnsupportedError(PrefectDSError, TypeError):
    """``versioned=True`` was asked of a format that cannot keep versions."""
