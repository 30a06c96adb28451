"""prefect-ds: readable, templated, checkpointed pandas results for Prefect 3 flows."""

from typing import TYPE_CHECKING, Any

from ._arrow import arrow_to_frame, frame_to_arrow
from ._capabilities import SupportsMetadata, TargetInfo
from ._checkpoint import checkpoint, checkpoint_task
from ._errors import (
    CheckpointCollisionError,
    CheckpointResultError,
    CorruptTargetError,
    DuplicateFormatError,
    PrefectDSError,
    ResultReleasedError,
    TemplateError,
    UnknownFormatError,
    UnsafeLocationError,
)
from ._files import FileFormat, open_for_read, staged
from ._fingerprint import FingerprintError
from ._format import Format
from ._handler import PandasResultHandler
from ._plugins import available_formats, get_format, register_plugin, resolve_format
from ._purged import PurgedResult
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from ._runner import DSTaskRunner


def __getattr__(name: str) -> Any:
    # DSTaskRunner imports Prefect's task runners; load it only when asked for.
    if name == "DSTaskRunner":
        from ._runner import DSTaskRunner

        return DSTaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CheckpointCollisionError",
    "CheckpointResultError",
    "CorruptTargetError",
    "DSTaskRunner",
    "DuplicateFormatError",
    "FileFormat",
    "FingerprintError",
    "Format",
    "PandasResultHandler",
    "PrefectDSError",
    "PurgedResult",
    "ResultReleasedError",
    "SupportsMetadata",
    "TargetInfo",
    "TemplateError",
    "UnknownFormatError",
    "UnsafeLocationError",
    "arrow_to_frame",
    "available_formats",
    "checkpoint",
    "checkpoint_task",
    "frame_to_arrow",
    "get_format",
    "hookimpl",
    "open_for_read",
    "register_plugin",
    "resolve_format",
    "staged",
]
