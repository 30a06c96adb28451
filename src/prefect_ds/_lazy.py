"""Heavy libraries imported on first use, so listing and resolving formats stays light.

pandas, pyarrow, numpy, h5py and SQLAlchemy take most of a cold start. Listing the
installed formats (``prefect-ds formats``, ``available_formats()``, ``resolve_format``)
imports every format module, yet needs none of those libraries: only a format's name,
suffixes and schemes. So the modules on that path bind each heavy library to a
:class:`LazyModule` instead of importing it, and keep the real import for type checkers::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        pd = lazy("pandas")

The library is imported the first time one of its attributes is used (the first read or
write); from then on an attribute costs one dictionary lookup. Nothing touches
``sys.modules`` before that, so a missing library still fails where it is first needed.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule:
    """Stands for the module ``name``; imports it when an attribute is first asked for."""

    __slots__ = ("__dict__", "_lazy_name")

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        module: types.ModuleType = importlib.import_module(self._lazy_name)
        value = getattr(module, attr)
        # A module attribute (a function, a class, a submodule) is bound once; keep it.
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy(name: str) -> Any:
    """A stand-in for ``importlib.import_module(name)`` that imports on first use."""
    return LazyModule(name)
