"""prefect-ds: readable, templated, checkpointed pandas results for Prefect 3 flows."""

import inspect
from typing import TYPE_CHECKING, Any

from prefect_ds._checkpoint.decorator import checkpoint, checkpoint_task
from prefect_ds._errors import (
    CheckpointCollisionError,
    CheckpointResultError,
    CorruptTargetError,
    DuplicateFormatError,
    FingerprintError,
    MissingDependencyError,
    PrefectDSError,
    ResultReleasedError,
    TargetLockTimeout,
    TemplateError,
    UnknownFormatError,
    UnsafeLocationError,
    UnsupportedFrameError,
)
from prefect_ds._format import (
    FileFormat,
    Format,
    SupportsAssetKey,
    SupportsDiscard,
    SupportsLazyFrames,
    SupportsListing,
    SupportsLock,
    SupportsMetadata,
    SupportsStorageOptions,
    SupportsTargetInfo,
    TargetInfo,
)
from prefect_ds._handler import PandasResultHandler
from prefect_ds._registry import available_formats, get_format, register_plugin, resolve_format
from prefect_ds._release.placeholder import ReleasedResult
from prefect_ds._storage.arrow import arrow_to_frame, frame_to_arrow
from prefect_ds._storage.files import open_for_read, staged
from prefect_ds.hookspecs import hookimpl

if TYPE_CHECKING:
    from prefect_ds._release.runner import DSTaskRunner

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # DSTaskRunner imports Prefect's task runners; load it only when asked for.
    if name == "DSTaskRunner":
        from prefect_ds._release.runner import DSTaskRunner

        DSTaskRunner.__module__ = __name__
        return DSTaskRunner
    if name == "PurgedResult":
        import warnings

        warnings.warn(
            "prefect_ds.PurgedResult is deprecated and will be removed in the next release; "
            "use prefect_ds.ReleasedResult",
            DeprecationWarning,
            stacklevel=2,
        )
        return ReleasedResult
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
    "MissingDependencyError",
    "PandasResultHandler",
    "PrefectDSError",
    "ReleasedResult",
    "ResultReleasedError",
    "SupportsAssetKey",
    "SupportsDiscard",
    "SupportsLazyFrames",
    "SupportsListing",
    "SupportsLock",
    "SupportsMetadata",
    "SupportsStorageOptions",
    "SupportsTargetInfo",
    "TargetInfo",
    "TargetLockTimeout",
    "TemplateError",
    "UnknownFormatError",
    "UnsafeLocationError",
    "UnsupportedFrameError",
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

# Public names report the package as their home, so no traceback or message shows a
# private module path (as pluggy does).
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) or inspect.isfunction(_obj):
        _obj.__module__ = __name__
del _name, _obj
