"""The one interface every storage format implements."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import pandas as pd


class Format(abc.ABC):
    """Reads and writes a whole :class:`pandas.DataFrame` at a location string.

    A location is a local path, an fsspec URL (``s3://…``, ``memory://…``) or, for
    database formats, a URL with the table after ``#``. Implementations must write
    atomically: a reader or a crash never sees a partial result at ``location``.

    ``suffixes`` (lower case, with the dot) and ``schemes`` (URL schemes, without any
    ``+driver`` part) let a location pick its format when none is named.
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    schemes: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        """Load the frame stored at ``location``."""

    @abc.abstractmethod
    def write(self, df: pd.DataFrame, location: str, **kwargs: Any) -> None:
        """Store ``df`` at ``location`` atomically, replacing what was there."""

    @abc.abstractmethod
    def exists(self, location: str) -> bool:
        """Whether a complete result is stored at ``location``."""

    @abc.abstractmethod
    def delete(self, location: str) -> None:
        """Remove what is stored at ``location``; no error if nothing is."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format {self.name!r}>"
