"""Parquet: the exact, fast default for pandas, polars and Arrow frames.

pandas frames and Arrow tables go through pyarrow, polars frames through polars' own
reader and writer (the fastest for them, measured in ``benchmarks/kinds.py``); a polars
``LazyFrame`` is streamed to the file with ``sink_parquet`` and read back with
``scan_parquet``, an Arrow ``RecordBatchReader`` is written batch by batch. None of them
goes through pandas. Options polars' writer or reader does not know send a polars frame
through Arrow and pyarrow instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

from prefect_ds._errors import CorruptTargetError, UnsupportedFrameError
from prefect_ds._format import FileFormat, TargetInfo
from prefect_ds._lazy import lazy
from prefect_ds._redact import redact
from prefect_ds._storage.arrow import (
    arrow_columns,
    arrow_to_frame,
    frame_to_arrow,
    restore_schema,
    with_schema_record,
)
from prefect_ds._storage.files import filesystem, modified_time, open_for_read, staged
from prefect_ds._storage.kinds import kind_of
from prefect_ds.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

_METADATA_KEY = b"prefect_ds:metadata"  # the caller's {str: str} (fingerprints)
# The options polars' own writer and reader take; any other sends polars through pyarrow.
_POLARS_WRITE = frozenset({"compression", "compression_level", "row_group_size",
                           "statistics", "data_page_size"})
_POLARS_READ = frozenset({"columns"})


class ParquetFormat(FileFormat):
    """One Parquet file. pandas metadata in the file restores dtypes and the index exactly."""

    name = "parquet"
    suffixes = (".parquet", ".pq")
    kinds = ("pandas", "arrow", "arrow.RecordBatchReader", "polars", "polars.LazyFrame")
    default_read_kwargs: ClassVar[dict[str, Any]] = {}
    default_write_kwargs: ClassVar[dict[str, Any]] = {"compression": "snappy"}

    def read(self, location: str, *, kind: str = "pandas", **kwargs: Any) -> Any:
        """Read the frame as ``kind``; ``columns=[...]`` (column labels for pandas, field
        names otherwise) reads those columns (and, for pandas, the whole index). Other
        options go to :func:`pyarrow.parquet.read_table` (or polars' reader)."""
        if kind != "pandas":
            return self._read_kind(location, kind, self.read_options(kwargs))
        options = self.read_options(kwargs)
        try:
            with open_for_read(location, **self.storage_options) as source:
                if options.get("columns") is not None:
                    options["columns"] = arrow_columns(pq.read_schema(source),
                                                       options["columns"])
                    if not isinstance(source, str):
                        source.seek(0)
                table = pq.read_table(source, **options)
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            if options and _footer_readable(location, self.storage_options):
                raise  # the file is sound: the read options are what went wrong
            raise _corrupt(location, exc) from None
        try:
            return arrow_to_frame(table)
        except (ValueError, KeyError, TypeError) as exc:  # a garbled dtype record
            raise _corrupt(location, exc) from None

    def _read_kind(self, location: str, kind: str, options: dict[str, Any]) -> Any:
        """Read as Arrow or polars, never through pandas."""
        polars_ok = set(options) <= _POLARS_READ
        try:
            with open_for_read(location, **self.storage_options) as source:
                if kind == "polars.LazyFrame" and polars_ok and isinstance(source, str):
                    import polars as pl

                    lazy = pl.scan_parquet(source, **options)
                    lazy.collect_schema()  # a damaged footer fails here, not downstream
                    return lazy
                if kind in ("polars", "polars.LazyFrame") and polars_ok:
                    import polars as pl

                    frame = pl.read_parquet(source, **options)
                    return frame.lazy() if kind == "polars.LazyFrame" else frame
                if kind == "arrow.RecordBatchReader" and isinstance(source, str):
                    parquet = pq.ParquetFile(source)
                    return _exact_stream(parquet, options)
                table = restore_schema(pq.read_table(source, **options))
        except FileNotFoundError:
            raise
        except Exception as exc:  # pyarrow's and polars' errors on a damaged file
            if options and _footer_readable(location, self.storage_options):
                raise  # the file is sound: the read options are what went wrong
            raise _corrupt(location, exc) from None
        if kind in ("polars", "polars.LazyFrame"):
            import polars as pl

            frame = cast(pl.DataFrame, pl.from_arrow(table, rechunk=False))
            return frame.lazy() if kind == "polars.LazyFrame" else frame
        metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != _METADATA_KEY}
        table = table.replace_schema_metadata(metadata or None)
        return table.to_reader() if kind == "arrow.RecordBatchReader" else table

    def write(self, df: Any, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df`` (pandas, Arrow or polars); ``metadata`` goes into the file's
        key-value metadata with it.

        ``index=False`` (as for ``DataFrame.to_parquet``) leaves a pandas frame's index
        out; other options go to :func:`pyarrow.parquet.write_table` (or polars' writer).
        A frame Parquet cannot hold exactly raises :class:`~prefect_ds.UnsupportedFrameError`
        before any file is touched.
        """
        options = self.write_options(kwargs)
        kind = kind_of(df)
        if kind not in (None, "pandas"):
            options.pop("index", None)  # only a pandas frame has an index
            self._write_kind(df, kind, location, metadata, options)
            return
        index = options.pop("index", True)
        if index is not None and not isinstance(index, bool):
            raise UnsupportedFrameError(
                f"the parquet format's index option is True, False or None, not {index!r}")
        table = frame_to_arrow(df, "parquet", index=index is not False)
        if metadata:
            table = table.replace_schema_metadata({
                **(table.schema.metadata or {}),
                _METADATA_KEY: json.dumps(dict(metadata)).encode(),
            })
        with staged(location, **self.storage_options) as (temp,):
            pq.write_table(table, temp, **options)

    def _write_kind(self, frame: Any, kind: str | None, location: str,
                    metadata: Mapping[str, str] | None, options: dict[str, Any]) -> None:
        """Write an Arrow table or stream, or a polars frame (streamed when lazy)."""
        extra = {_METADATA_KEY.decode(): json.dumps(dict(metadata))} if metadata else {}
        polars_ok = set(options) <= _POLARS_WRITE
        if kind in ("polars", "polars.LazyFrame") and polars_ok:
            try:
                with staged(location, **self.storage_options) as (temp,):
                    if kind == "polars":
                        frame.write_parquet(temp, metadata=extra or None, **options)
                    else:
                        frame.sink_parquet(temp, metadata=extra or None, **options)
            except (pa.ArrowException, UnsupportedFrameError):
                raise
            except Exception as exc:  # polars' refusal of a dtype (Object, ...)
                raise _unwritable(kind, exc) from exc
            return
        if kind == "polars":
            frame = frame.to_arrow()
        elif kind == "polars.LazyFrame":
            from prefect_ds._storage.kinds import for_format

            frame = for_format(frame, kind, ("arrow.RecordBatchReader",), self.name)
        schema: pa.Schema = with_schema_record(frame.schema)
        schema = schema.with_metadata({**(schema.metadata or {}),
                                       **{k.encode(): v.encode() for k, v in extra.items()}})
        try:
            with staged(location, **self.storage_options) as (temp,):
                if isinstance(frame, pa.Table):
                    pq.write_table(frame.replace_schema_metadata(schema.metadata), temp,
                                   **options)
                else:
                    with pq.ParquetWriter(temp, schema, **options) as writer:
                        for batch in frame:
                            writer.write_batch(batch)
        except pa.ArrowNotImplementedError as exc:
            raise _unwritable(kind, exc) from exc

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the footer alone (``{}`` if none)."""
        with open_for_read(location, **self.storage_options) as source:
            # the footer's own key-value pairs: polars' writer keeps them out of the
            # Arrow schema it stores, so the schema's metadata would miss them
            footer = pq.read_metadata(source)
        raw = (footer.metadata or {}).get(_METADATA_KEY)
        return {str(k): str(v) for k, v in json.loads(raw).items()} if raw else {}

    def target_info(self, location: str) -> TargetInfo:
        """Rows from the footer, bytes and modification time from the file system."""
        fs, path = filesystem(location, **self.storage_options)
        info = fs.info(path)
        with open_for_read(location, **self.storage_options) as source:
            rows = pq.ParquetFile(source).metadata.num_rows
        return TargetInfo(rows=rows, bytes=info.get("size"), modified=modified_time(info))



def _footer_readable(location: str, storage_options: dict[str, Any]) -> bool:
    try:
        with open_for_read(location, **storage_options) as source:
            pq.read_metadata(source)
    except (pa.ArrowException, OSError):
        return False
    return True


def _exact_stream(parquet: pq.ParquetFile, options: dict[str, Any]) -> pa.RecordBatchReader:
    """The file's batches, read as they are consumed, with their recorded exact types."""
    first = parquet.schema_arrow
    columns = options.get("columns")
    if columns is not None:
        first = pa.schema([first.field(name) for name in columns], metadata=first.metadata)
    exact = restore_schema(first.empty_table()).schema

    def batches() -> Any:
        for batch in parquet.iter_batches(**options):
            yield from restore_schema(pa.Table.from_batches([batch]), exact).to_batches()

    return pa.RecordBatchReader.from_batches(exact, batches())


def _unwritable(kind: str | None, exc: BaseException) -> UnsupportedFrameError:
    """A frame holding a type Parquet cannot store; nothing was written."""
    return UnsupportedFrameError(
        f"the parquet format cannot store this {kind} frame ({type(exc).__name__}: {exc}); "
        f"nothing was written. Cast the column it names to a type Parquet holds "
        f"(docs/fidelity.md lists them), or store it in another format"
    )


def _corrupt(location: str, exc: BaseException) -> CorruptTargetError:
    """A truncated, garbled or non-Parquet file, named with what pyarrow found wrong."""
    return CorruptTargetError(
        f"{redact(location)}: not a readable Parquet file ({type(exc).__name__}: {exc}); it is "
        f"truncated, damaged or not Parquet. Delete it and write the result again."
    )


@hookimpl
def register_formats(register: Register) -> None:
    register(ParquetFormat())
