"""prefect-ds: readable, templated, checkpointed DataFrame results for Prefect 3 flows.

Every public name is imported on first use (PEP 562), so ``import prefect_ds`` and the
``prefect-ds`` command start without pandas, pyarrow or Prefect.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_ds._checkpoint.decorator import checkpoint, checkpoint_task
    from prefect_ds._errors import (
        CheckpointCollisionError,
        CheckpointResultError,
        CorruptTargetError,
        DuplicateFormatError,
        FingerprintError,
        FormatOptionError,
        MissingDependencyError,
        PrefectDSError,
        ResultReleasedError,
        TargetLockTimeout,
        TemplateError,
        UnknownFormatError,
        UnsafeLocationError,
        UnsupportedFrameError,
        VersioningUnsupportedError,
        VersionNotFoundError,
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
        SupportsSidecarNames,
        SupportsStorageOptions,
        SupportsTargetInfo,
        SupportsVersions,
        TargetInfo,
    )
    from prefect_ds._handler import PandasResultHandler, ResultHandler
    from prefect_ds._redact import redact
    from prefect_ds._registry import (
        available_formats,
        get_format,
        register_plugin,
        resolve_format,
    )
    from prefect_ds._release.placeholder import ReleasedResult
    from prefect_ds._release.runner import DSTaskRunner
    from prefect_ds._storage.arrow import arrow_columns, arrow_to_frame, frame_to_arrow
    from prefect_ds._storage.files import open_for_read, staged
    from prefect_ds.hookspecs import hookimpl

__version__ = "0.1.0"

# Where each public name lives; it is imported from there when first asked for.
_HOMES = {
    "checkpoint": "prefect_ds._checkpoint.decorator",
    "checkpoint_task": "prefect_ds._checkpoint.decorator",
    **dict.fromkeys(
        ["CheckpointCollisionError", "CheckpointResultError", "CorruptTargetError",
         "DuplicateFormatError", "FingerprintError", "FormatOptionError",
         "MissingDependencyError", "PrefectDSError",
         "ResultReleasedError",
         "TargetLockTimeout", "TemplateError", "UnknownFormatError", "UnsafeLocationError",
         "UnsupportedFrameError"],
        "prefect_ds._errors",
    ),
    **dict.fromkeys(
        ["FileFormat", "Format", "SupportsAssetKey", "SupportsDiscard", "SupportsLazyFrames",
         "SupportsListing",
         "SupportsLock", "SupportsMetadata", "SupportsSidecarNames", "SupportsStorageOptions",
         "SupportsTargetInfo",
         "TargetInfo"],
        "prefect_ds._format",
    ),
    "PandasResultHandler": "prefect_ds._handler",
    "ResultHandler": "prefect_ds._handler",
    "SupportsVersions": "prefect_ds._format",
    "VersionNotFoundError": "prefect_ds._errors",
    "VersioningUnsupportedError": "prefect_ds._errors",
    "redact": "prefect_ds._redact",
    **dict.fromkeys(
        ["available_formats", "get_format", "register_plugin", "resolve_format"],
        "prefect_ds._registry",
    ),
    "ReleasedResult": "prefect_ds._release.placeholder",
    "DSTaskRunner": "prefect_ds._release.runner",
    "arrow_columns": "prefect_ds._storage.arrow",
    "arrow_to_frame": "prefect_ds._storage.arrow",
    "frame_to_arrow": "prefect_ds._storage.arrow",
    "open_for_read": "prefect_ds._storage.files",
    "staged": "prefect_ds._storage.files",
    "hookimpl": "prefect_ds.hookspecs",
}


def _adopt() -> None:
    """Public names of every loaded home report the package as their module, so no
    traceback or message shows a private module path (as pluggy does)."""
    for public, home in _HOMES.items():
        module = sys.modules.get(home)
        value = getattr(module, public, None)
        if isinstance(value, (type, types.FunctionType)):
            value.__module__ = __name__


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        _adopt()
        globals()[name] = value
        return value
    if name == "PurgedResult":
        import warnings

        warnings.warn(
            "prefect_ds.PurgedResult is deprecated and will be removed in the next release; "
            "use prefect_ds.ReleasedResult",
            DeprecationWarning,
            stacklevel=2,
        )
        return __getattr__("ReleasedResult")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CheckpointCollisionError",
    "CheckpointResultError",
    "CorruptTargetError",
    "DSTaskRunner",
    "DuplicateFormatError",
    "FileFormat",
    "FingerprintError",
    "Format",
    "FormatOptionError",
    "MissingDependencyError",
    "PandasResultHandler",
    "PrefectDSError",
    "ReleasedResult",
    "ResultHandler",
    "ResultReleasedError",
    "SupportsAssetKey",
    "SupportsDiscard",
    "SupportsLazyFrames",
    "SupportsListing",
    "SupportsLock",
    "SupportsMetadata",
    "SupportsSidecarNames",
    "SupportsStorageOptions",
    "SupportsTargetInfo",
    "SupportsVersions",
    "TargetInfo",
    "TargetLockTimeout",
    "TemplateError",
    "UnknownFormatError",
    "UnsafeLocationError",
    "UnsupportedFrameError",
    "VersionNotFoundError",
    "VersioningUnsupportedError",
    "arrow_columns",
    "arrow_to_frame",
    "available_formats",
    "checkpoint",
    "checkpoint_task",
    "frame_to_arrow",
    "get_format",
    "hookimpl",
    "open_for_read",
    "redact",
    "register_plugin",
    "resolve_format",
    "staged",
]
