"""Feather (Arrow IPC file) format for prefect-ds.

Installing this package is all a user does: its entry point in the ``prefect_ds`` group
makes ``feather`` appear in ``prefect_ds.available_formats()``, and locations ending in
``.feather`` or ``.arrow`` resolve to it. It uses only prefect-ds's public API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

import prefect_ds
from prefect_ds.hookspecs import Register

__all__ = ["FeatherFormat", "register_formats"]

METADATA_KEY = b"prefect_ds:metadata"


class FeatherFormat(prefect_ds.FileFormat):
    """One Feather v2 file; dtypes and the index come back exactly (``prefect_ds.arrow_to_frame``).

    ``write`` accepts :func:`pyarrow.feather.write_feather` options (``compression``,
    ``compression_level``, ``chunksize``) and ``index=False`` (leave the index out);
    ``read`` accepts :func:`pyarrow.feather.read_table` options (``columns``: column
    labels, read with the whole index; ``memory_map``).
    """

    name = "feather"
    suffixes = (".feather", ".arrow")
    default_write_kwargs: ClassVar[dict[str, Any]] = {"compression": "lz4"}

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        kwargs = self.read_options(kwargs)
        columns = kwargs.pop("columns", None)
        try:
            with prefect_ds.open_for_read(location, **self.storage_options) as source:
                table = feather.read_table(source, **kwargs)
            if columns is not None:
                table = table.select(prefect_ds.arrow_columns(table.schema, columns))
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            if kwargs and self._readable(location):
                raise  # the file is sound: the read options are what went wrong
            raise prefect_ds.CorruptTargetError(
                f"{location}: not a readable Feather file ({type(exc).__name__}: {exc}); it "
                f"is truncated, damaged or not Feather. Delete it and write the result again."
            ) from None
        return prefect_ds.arrow_to_frame(table)

    def _readable(self, location: str) -> bool:
        try:
            with prefect_ds.open_for_read(location, **self.storage_options) as source:
                feather.read_table(source)
        except (pa.ArrowException, OSError):
            return False
        return True

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df``; ``metadata`` goes into the Arrow schema's key-value metadata.

        Accepting ``metadata`` and implementing :meth:`read_metadata` is the optional
        ``prefect_ds.SupportsMetadata`` capability: staleness fingerprints are then kept
        inside the file instead of in a sidecar.
        """
        options = self.write_options(kwargs)
        index = options.pop("index", True)
        if index is not None and not isinstance(index, bool):
            raise prefect_ds.UnsupportedFrameError(
                f"the feather format's index option is True, False or None, not {index!r}")
        # Convert before staging: a frame Arrow cannot represent fails with no file touched.
        table = prefect_ds.frame_to_arrow(df, self.name, index=index is not False)
        if metadata:
            table = table.replace_schema_metadata({
                **(table.schema.metadata or {}),
                METADATA_KEY: json.dumps(dict(metadata)).encode(),
            })
        with prefect_ds.staged(location, **self.storage_options) as (temp,):
            feather.write_feather(table, temp, **options)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the file's footer (``{}`` if none)."""
        with prefect_ds.open_for_read(location, **self.storage_options) as source:
            schema = pa.ipc.open_file(source).schema
        raw = (schema.metadata or {}).get(METADATA_KEY)
        return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}


@prefect_ds.hookimpl
def register_formats(register: Register) -> None:
    """Make the ``feather`` format known to prefect-ds."""
    register(FeatherFormat())
