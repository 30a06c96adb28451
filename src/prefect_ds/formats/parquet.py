"""Parquet through pyarrow: the exact, fast default for DataFrames."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prefect_ds._errors import CorruptTargetError, UnsupportedFrameError
from prefect_ds._format import FileFormat, TargetInfo
from prefect_ds._storage.arrow import arrow_columns, arrow_to_frame, frame_to_arrow
from prefect_ds._storage.files import filesystem, modified_time, open_for_read, staged
from prefect_ds.hookspecs import Register, hookimpl

_METADATA_KEY = b"prefect_ds:metadata"  # the caller's {str: str} (fingerprints)


class ParquetFormat(FileFormat):
    """One Parquet file. pandas metadata in the file restores dtypes and the index exactly."""

    name = "parquet"
    suffixes = (".parquet", ".pq")
    default_read_kwargs: ClassVar[dict[str, Any]] = {}
    default_write_kwargs: ClassVar[dict[str, Any]] = {"compression": "snappy"}

    def read(self, location: str, **kwargs: Any) -> pd.DataFrame:
        """Read the frame; ``columns=[...]`` (column labels) reads those columns and the
        whole index. Other options go to :func:`pyarrow.parquet.read_table`."""
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

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Write ``df``; ``metadata`` goes into the file's key-value metadata with it.

        ``index=False`` (as for ``DataFrame.to_parquet``) leaves the index out; other
        options go to :func:`pyarrow.parquet.write_table`. A frame Parquet cannot hold
        exactly raises :class:`~prefect_ds.UnsupportedFrameError` before any file is
        touched.
        """
        options = self.write_options(kwargs)
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

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` given to :meth:`write`, from the footer alone (``{}`` if none)."""
        with open_for_read(location, **self.storage_options) as source:
            schema = pq.read_schema(source)
        raw = (schema.metadata or {}).get(_METADATA_KEY)
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


def _corrupt(location: str, exc: BaseException) -> CorruptTargetError:
    """A truncated, garbled or non-Parquet file, named with what pyarrow found wrong."""
    return CorruptTargetError(
        f"{location}: not a readable Parquet file ({type(exc).__name__}: {exc}); it is "
        f"truncated, damaged or not Parquet. Delete it and write the result again."
    )


@hookimpl
def register_formats(register: Register) -> None:
    register(ParquetFormat())
