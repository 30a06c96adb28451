"""Exceptions raised by prefect-ds. Each message names the problem and the fix."""

from __future__ import annotations


class PrefectDSError(Exception):
    """Base class of every prefect-ds error."""


class UnknownFormatError(PrefectDSError, LookupError):
    """A format name (or a location's suffix or scheme) matches no installed format."""


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
