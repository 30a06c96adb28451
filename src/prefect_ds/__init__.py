"""prefect-ds: readable, templated, checkpointed pandas results for Prefect 3 flows."""

from ._errors import (
    CorruptTargetError,
    DuplicateFormatError,
    PrefectDSError,
    TemplateError,
    UnknownFormatError,
    UnsafeLocationError,
)
from ._files import FileFormat
from ._format import Format
from ._handler import PandasResultHandler
from ._plugins import available_formats, get_format, register_plugin, resolve_format
from .hookspecs import hookimpl

__all__ = [
    "CorruptTargetError",
    "DuplicateFormatError",
    "FileFormat",
    "Format",
    "PandasResultHandler",
    "PrefectDSError",
    "TemplateError",
    "UnknownFormatError",
    "UnsafeLocationError",
    "available_formats",
    "get_format",
    "hookimpl",
    "register_plugin",
    "resolve_format",
]
