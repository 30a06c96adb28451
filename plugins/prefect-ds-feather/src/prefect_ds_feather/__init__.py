"""Feather (Arrow IPC file) format for prefect-ds.

Installing this package is all a user does: its entry point in the ``prefect_ds`` group
makes ``feather`` appear in ``prefect_ds.available_formats()``, and locations ending in
``.feather`` or ``.arrow`` resolve to it. It uses only prefect-ds's public API.

Feather is Arrow's own file format, so besides pandas frames it declares Arrow tables and
record-batch streams as kinds it takes natively (``kinds``): prefect-ds hands it polars
frames as Arrow tables, and a polars ``LazyFrame`` as a stream it writes batch by batch.

pyarrow is imported inside the methods that read and write, not when the module loads:
listing the installed formats (``prefect-ds formats``) imports every format plugin, and
needs only their names and suffixes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import prefect_ds
from prefect_ds.hookspecs import Register

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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
    kinds = ("pandas", "arrow", "arrow.RecordBatchReader")
    default_write_kwargs: ClassVar[dict[str, Any]] = {"compression": "lz4"}

    def read(self, location: str, *, kind: str = "pandas", **kwargs: Any) -> Any:
        """The stored frame as ``kind``: ``"pandas"`` (exact dtypes and index),
        ``"arrow"`` or ``"arrow.RecordBatchReader"`` (the stored Arrow types, untouched)."""
        import pyarrow as pa
        import pyarrow.feather as feather

        kwargs = self.read_options(kwargs)
        columns = kwargs.pop("columns", None)
        try:
            with prefect_ds.open_for_read(location, **self.storage_options) as source:
                table = feather.read_table(source, **kwargs)
            if columns is not None:
                table = table.select(list(columns) if kind != "pandas" else
                                     prefect_ds.arrow_columns(table.schema, columns))
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            if kwargs and self._readable(location):
                raise  # the file is sound: the read options are what went wrong
            raise prefect_ds.CorruptTargetError(
                f"{prefect_ds.redact(location)}: not a readable Feather file "
                f"({type(exc).__name__}: {exc}); it "
                f"is truncated, damaged or not Feather. Delete it and write the result again."
            ) from None
        if kind == "pandas":
            return prefect_ds.arrow_to_frame(table)
        metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != METADATA_KEY}
        table = table.replace_schema_metadata(metadata or None)
        return table.to_reader() if kind == "arrow.RecordBatchReader" else table

    def _readable(self, location: str) -> bool:
        import pyarrow as pa
        import pyarrow.feather as feather

        try:
            with prefect_ds.open_for_read(location, **self.storage_options) as source:
                feather.read_table(source)
        except (pa.ArrowException, OSError):
            return False
        return True

    def write(self, df: pd.DataFrame | pa.Table | pa.RecordBatchReader, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df``; ``metadata`` goes into the Arrow schema's key-value metadata.

        Accepting ``metadata`` and implementing :meth:`read_metadata` is the optional
        ``prefect_ds.SupportsMetadata`` capability: staleness fingerprints are then kept
        inside the file instead of in a sidecar. An Arrow table is written as it is, a
        record-batch stream batch by batch, never held whole.
        """
        import pyarrow as pa
        import pyarrow.feather as feather

        options = self.write_options(kwargs)
        if isinstance(df, (pa.Table, pa.RecordBatchReader)):
            options.pop("index", None)  # only a pandas frame has an index
            self._write_arrow(df, location, metadata, options)
            return
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

    def _write_arrow(self, data: pa.Table | pa.RecordBatchReader, location: str,
                     metadata: Mapping[str, str] | None, options: dict[str, Any]) -> None:
        import pyarrow as pa

        if isinstance(data, pa.RecordBatchReader) and any(
                pa.types.is_dictionary(field.type) for field in data.schema):
            # An Arrow IPC file holds one dictionary per column, and each batch of a
            # stream may bring its own: such a stream is gathered and unified first.
            data = data.read_all().unify_dictionaries()
        if isinstance(data, pa.Table):
            data = data.unify_dictionaries()
        schema = data.schema
        if metadata:
            schema = schema.with_metadata({**(schema.metadata or {}),
                                           METADATA_KEY: json.dumps(dict(metadata)).encode()})
        ipc_options = pa.ipc.IpcWriteOptions(compression=options.pop("compression", None))
        chunksize = options.pop("chunksize", None)
        options.pop("compression_level", None)
        if options:
            raise prefect_ds.UnsupportedFrameError(
                f"the feather format does not take {sorted(options)} for Arrow frames; "
                f"use compression or chunksize")
        try:
            with prefect_ds.staged(location, **self.storage_options) as (temp,), \
                    pa.ipc.new_file(temp, schema, options=ipc_options) as writer:
                if isinstance(data, pa.Table):
                    writer.write_table(data.replace_schema_metadata(schema.metadata),
                                       max_chunksize=chunksize)
                else:
                    for batch in data:
                        writer.write_batch(batch)
        except pa.ArrowNotImplementedError as exc:
            raise prefect_ds.UnsupportedFrameError(
                f"the feather format cannot store this Arrow data ({exc}); nothing was "
                f"written") from exc

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the file's footer (``{}`` if none)."""
        import pyarrow as pa

        with prefect_ds.open_for_read(location, **self.storage_options) as source:
            schema = pa.ipc.open_file(source).schema
        raw = (schema.metadata or {}).get(METADATA_KEY)
        return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}


@prefect_ds.hookimpl
def register_formats(register: Register) -> None:
    """Make the ``feather`` format known to prefect-ds."""
    register(FeatherFormat())
