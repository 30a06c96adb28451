"""Partitioned Parquet datasets: many files under one directory or prefix, committed whole.

A location ending in ``/`` (``"sales/{year}/"``, ``"s3://bucket/sales/"``) or
``format="dataset"`` selects this format. ``write_kwargs={"partition_cols": [...]}``
splits the frame into hive-style directories (``region=north/part-0.parquet``).

Layout of a committed dataset at ``root/``::

    root/_prefect_ds_manifest.json         the commit marker: files, schema, row order
    root/_prefect-ds-<time>-<writer>/...   one generation: the files the manifest names

A write stages every file of a new generation under its own hidden prefix, then commits
by replacing the manifest in one step (``os.replace`` locally, one PUT on object stores,
where directories cannot be renamed). Readers open only what the manifest names, so a
reader sees the previous dataset or the new one, never a mix; a writer killed before the
commit leaves the previous dataset as it was, and its staged generation is swept by a
later write (see :meth:`DatasetFormat.sweep`). ``exists`` is true only for a committed
dataset.

The manifest keeps the frame's Arrow schema (with the exact dtype record of
:mod:`prefect_ds._storage.arrow`), the partition columns' types and, when the partition
groups were not contiguous, a row-number column in the files, so a pandas frame reads
back exactly as written: dtypes, index, column and row order.

A directory of Parquet files written by another tool (pandas, pyarrow, Spark, Dask) has
no manifest: it still reads (hive partitions inferred), with a warning that prefect-ds did
not commit it, and ``target_info`` reports ``committed=False``.

Arrow tables and polars frames are written from Arrow, never through pandas, with their
own Arrow schema in the manifest; any dataset reads as a ``pyarrow.Table``
(``kind="arrow"``) or as a polars ``LazyFrame`` scanning the committed files, which
hands polars' filters and column selection to the Parquet scan.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import posixpath
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from prefect_ds._errors import CorruptTargetError, UnsupportedFrameError
from prefect_ds._format import FileFormat, TargetInfo
from prefect_ds._lazy import lazy
from prefect_ds._storage.arrow import arrow_to_frame, frame_to_arrow
from prefect_ds._storage.dtypes import from_spec, same_dtype
from prefect_ds._storage.files import STALE_AFTER, filesystem, is_local, staged
from prefect_ds.formats import _dataset_dask as _dask
from prefect_ds.formats import _dataset_polars as _polars
from prefect_ds.formats._dataset_schema import decode_schema, encode_schema, plain_type
from prefect_ds.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pd = lazy("pandas")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")
    pads = lazy("pyarrow.dataset")
    pq = lazy("pyarrow.parquet")

MANIFEST = "_prefect_ds_manifest.json"
GENERATION_PREFIX = "_prefect-ds-"
ROW_COLUMN = "__prefect_ds_row__"
_DTYPES_KEY = b"prefect_ds:dtypes"  # the exact dtype record of prefect_ds._storage.arrow
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_MANIFEST_KIND = "prefect-ds dataset"
_GENERATION = re.compile(
    re.escape(GENERATION_PREFIX) + r"(?P<time>[0-9]{10})-(?P<pid>[0-9a-f]{6})[0-9a-f]{6}")
_SAFE_KEY = re.compile(r"[A-Za-z_][\w\-.]*")
_WRITE_OPTIONS = {"partition_cols", "compression", "row_group_size", "max_rows_per_file",
                  "compression_level", "use_dictionary", "write_statistics", "data_page_size"}
_READ_OPTIONS = {"filters", "columns", "engine"}
_REREADS = 5  # a read that meets a replaced dataset starts again, at most this often

log = logging.getLogger("prefect_ds.dataset")


def root_of(location: str) -> str:
    """``location`` without its trailing separators (the dataset's directory or prefix);
    a root stays a root (``file:///`` is ``/``, not the working directory)."""
    scheme, sep, path = location.rpartition("://")
    return f"{scheme}{sep}{path.rstrip('/') or path}"


def new_generation() -> str:
    """A fresh generation name: commit time (seconds), writer pid and 6 random hex digits."""
    return (f"{GENERATION_PREFIX}{int(time.time()):010d}-"
            f"{os.getpid() & 0xFFFFFF:06x}{secrets.token_hex(3)}")


def _writer_gone(pid: int) -> bool:
    if pid == os.getpid() & 0xFFFFFF:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class DatasetFormat(FileFormat):
    """A directory (or object-store prefix) of Parquet files, committed by a manifest."""

    name = "dataset"
    suffixes = ("/",)
    # Arrow tables are written as they are (polars frames through ``to_arrow``, a
    # LazyFrame collected first) and read back with their exact schema; a LazyFrame read
    # is a polars scan over the committed files, so filters and columns reach the files.
    kinds = ("pandas", "arrow", "polars.LazyFrame")
    default_write_kwargs: ClassVar[dict[str, Any]] = {"compression": "snappy"}

    # -- locations -------------------------------------------------------------------------

    def _fs(self, location: str) -> tuple[Any, str]:
        fs, path = filesystem(root_of(location), **self.storage_options)
        path = path.rstrip("/")
        fs.invalidate_cache(path)  # another process may have committed since we listed
        return fs, path

    def manifest_location(self, location: str) -> str:
        """Where the commit marker of the dataset at ``location`` lives."""
        return f"{root_of(location)}/{MANIFEST}"

    def manifest(self, location: str) -> dict[str, Any] | None:
        """The committed manifest, or None when no dataset is committed at ``location``."""
        fs, root = self._fs(location)
        try:
            with fs.open(f"{root}/{MANIFEST}", "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(raw)
            if manifest.get("kind") != _MANIFEST_KIND:
                raise ValueError("not a prefect-ds dataset manifest")
        except ValueError as exc:
            raise CorruptTargetError(
                f"{location}: the dataset manifest {MANIFEST} is unreadable ({exc}); delete "
                f"the dataset and write it again"
            ) from None
        return dict(manifest)

    def exists(self, location: str) -> bool:
        """Whether a committed dataset is at ``location`` (a manifest is stored there)."""
        fs, root = self._fs(location)
        return bool(fs.isfile(f"{root}/{MANIFEST}"))

    # -- writing ---------------------------------------------------------------------------

    def write(self, df: pd.DataFrame, location: str, *,
              metadata: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        """Stage ``df`` as a new generation of Parquet files, then commit it in one step."""
        options = self.write_options(kwargs)
        unknown = sorted(set(options) - _WRITE_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown write option(s) {', '.join(unknown)} for the dataset format at "
                f"{location!r}; it takes {', '.join(sorted(_WRITE_OPTIONS))}"
            )
        if _dask.is_dask_frame(df):
            self._write_dask(df, location, metadata, options)
            return
        if isinstance(df, pd.DataFrame):
            partition_cols = _partition_columns(df, options.pop("partition_cols", None),
                                                location)
            table = frame_to_arrow(df, "dataset")
            codes = _group_codes(df, partition_cols) if partition_cols else None
        else:
            table = _arrow_input(df, location)
            partition_cols = _arrow_partition_columns(
                table.schema, options.pop("partition_cols", None), location)
            codes = _arrow_group_codes(table, partition_cols) if partition_cols else None
        max_rows = options.pop("max_rows_per_file", None)
        pieces, ordered = _split(codes, table, partition_cols, max_rows)
        fs, root = self._fs(location)
        self.sweep(location)
        generation = new_generation()
        base = f"{root}/{generation}"
        try:
            files = _write_pieces(fs, base, pieces, options)
            part_schema = pa.schema([table.schema.field(c) for c in partition_cols])
            manifest = {
                "kind": _MANIFEST_KIND,
                "version": 1,
                "generation": generation,
                "engine": "pandas",
                "files": files,
                "partition_cols": partition_cols,
                "partition_schema": encode_schema(part_schema),
                "schema": encode_schema(table.schema),
                "row_column": None if ordered else ROW_COLUMN,
                "rows": table.num_rows,
                "bytes": sum(f["bytes"] for f in files),
                "partitions": len({posixpath.dirname(f["path"]) for f in files}),
                "metadata": dict(metadata or {}),
            }
        except BaseException as exc:
            with contextlib.suppress(Exception):
                fs.rm(base, recursive=True)
            if isinstance(exc, pa.ArrowNotImplementedError):  # a type Parquet cannot hold
                raise _unwritable(exc) from exc
            raise
        self.commit(location, manifest)

    def _write_dask(self, ddf: Any, location: str, metadata: Mapping[str, str] | None,
                    options: dict[str, Any]) -> None:
        """Have the cluster write ``ddf`` into a new generation, then commit it."""
        partition_cols = _partition_columns(ddf._meta, options.pop("partition_cols", None),
                                            location)
        options.pop("max_rows_per_file", None)  # a Dask partition is one file per directory
        fs, root = self._fs(location)
        self.sweep(location)
        generation = new_generation()
        base = f"{root}/{generation}"
        try:
            described = _dask.write(ddf, fs, base, partition_cols, options,
                                    self.storage_options)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(base, recursive=True)
            raise
        self.commit(location, {
            **described,
            "kind": _MANIFEST_KIND,
            "version": 1,
            "generation": generation,
            "partition_schema": encode_schema(described["partition_schema"]),
            "schema": encode_schema(described["schema"]),
            "metadata": dict(metadata or {}),
        })

    def accepts_frame(self, result: object) -> bool:
        """Dask DataFrames are stored too: written by the cluster, read back lazily."""
        return _dask.is_dask_frame(result)

    def commit(self, location: str, manifest: dict[str, Any]) -> None:
        """Make ``manifest``'s generation the dataset at ``location``, in one atomic step,
        then remove the generation it replaced."""
        fs, root = self._fs(location)
        try:
            previous = self.manifest(location)
        except CorruptTargetError:  # replaced now; its files go with the next sweep
            previous = None
        manifest = {**manifest, "committed_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        try:
            with (staged(self.manifest_location(location), **self.storage_options) as (temp,),
                  open(temp, "w", encoding="utf-8") as handle):
                json.dump(manifest, handle)
        except BaseException:  # not committed: the previous manifest is still in place
            with contextlib.suppress(Exception):
                fs.rm(f"{root}/{manifest['generation']}", recursive=True)
            raise
        old = previous.get("generation") if previous else None
        if old and old != manifest["generation"]:
            with contextlib.suppress(OSError):  # else a later sweep removes it
                fs.rm(f"{root}/{old}", recursive=True)

    def sweep(self, location: str, *, max_age: float = STALE_AFTER) -> list[str]:
        """Remove staged generations that no committed manifest names and whose writer is
        gone: on a local disk a writer process that no longer runs, anywhere a generation
        older than ``max_age`` seconds. Returns the removed prefixes."""
        fs, root = self._fs(location)
        try:
            children = fs.ls(root, detail=False)
        except FileNotFoundError:
            return []
        try:
            current = (self.manifest(location) or {}).get("generation")
        except CorruptTargetError:
            current = None
        removed = []
        now = time.time()
        for child in children:
            name = posixpath.basename(str(child).rstrip("/"))
            match = _GENERATION.fullmatch(name)
            if match is None or name == current:
                continue
            stale = now - int(match["time"]) >= max_age
            if not stale and is_local(fs):
                stale = _writer_gone(int(match["pid"], 16))
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(f"{root}/{name}", recursive=True)
                    removed.append(f"{root}/{name}")
        return removed

    # -- reading ---------------------------------------------------------------------------

    def dataset(self, location: str, **kwargs: Any) -> pads.Dataset:
        """The dataset at ``location`` as a lazy :class:`pyarrow.dataset.Dataset`.

        Nothing is read until it is scanned. ``filters`` (a pyarrow expression or
        pandas-style ``[(column, op, value), ...]``) are applied lazily and pushed into the
        scan, so whole partitions and row groups are skipped.
        """
        options = self.read_options(kwargs)
        _check_read_options(options, location)
        dataset = self._dataset(location, self.manifest(location), hide_row_column=True)
        expression = _expression(options.get("filters"), location)
        return dataset if expression is None else dataset.filter(expression)

    def _dataset(self, location: str, manifest: dict[str, Any] | None, *,
                 hide_row_column: bool) -> pads.Dataset:
        """The files ``manifest`` commits (a foreign directory's when None) as a pyarrow
        dataset with the written types."""
        fs, root = self._fs(location)
        if manifest is None:
            return self._foreign(location, fs, root)
        base = f"{root}/{manifest['generation']}"
        schema = decode_schema(manifest["schema"]).remove_metadata()
        parts = decode_schema(manifest["partition_schema"])
        fields = [f for f in schema if f.name not in parts.names]
        if manifest.get("row_column") and not hide_row_column:
            fields.append(pa.field(manifest["row_column"], pa.int64()))
        fields += [pa.field(f.name, plain_type(f.type)) for f in parts]
        return pads.dataset(
            [f"{base}/{f['path']}" for f in manifest["files"]],
            schema=pa.schema(fields),
            format="parquet",
            filesystem=fs,
            partitioning=pads.partitioning(
                pa.schema([pa.field(f.name, plain_type(f.type)) for f in parts]), flavor="hive"),
            partition_base_dir=base,
        )

    def _foreign(self, location: str, fs: Any, root: str, *, warn: bool = True
                 ) -> pads.Dataset:
        """The Parquet files another tool left at ``location``; a read says so (``warn``),
        a description of the target (:meth:`target_info`) carries ``committed=False``."""
        try:
            dataset = (pads.dataset(root, format="parquet", filesystem=fs, partitioning="hive")
                       if fs.isdir(root) else None)
        except pa.ArrowInvalid as exc:  # a file that is not Parquet, or clashing schemas
            raise CorruptTargetError(
                f"{location} was not committed by prefect-ds, and pyarrow cannot read it as "
                f"one Parquet dataset: {exc}. Move files that are not Parquet out of the "
                f"directory (names starting with '_' or '.' are ignored), or read them "
                f"yourself"
            ) from None
        if dataset is None or not dataset.files:  # nothing, or only uncommitted generations
            raise FileNotFoundError(f"no dataset is stored at {location!r}")
        if warn:
            log.warning(
                "%s was not committed by prefect-ds (it has no %s): reading the Parquet files "
                "it holds now, which another writer may be changing", location, MANIFEST,
            )
        return dataset

    def read(self, location: str, *, kind: str = "pandas", **kwargs: Any) -> Any:
        """The frame stored at ``location``; ``filters`` and ``columns`` are pushed down.

        A committed dataset read whole comes back exactly as written. ``kind="arrow"``
        gives a :class:`pyarrow.Table`, ``kind="polars.LazyFrame"`` a lazy polars scan
        of the committed files (``columns`` are field names for both).
        """
        options = self.read_options(kwargs)
        _check_read_options(options, location)
        if kind != "pandas":
            return self._settled(location, lambda manifest: self._read_kind(
                location, manifest, kind, options))
        return self._settled(location, lambda manifest: self._read_pandas(
            location, manifest, options))

    def _settled(self, location: str, read: Callable[[dict[str, Any] | None], Any]) -> Any:
        """``read(manifest)`` of the dataset committed now, again with the new manifest if a
        writer replaced the dataset (and removed the files being read) meanwhile: a reader
        gets the previous dataset or the new one, never an error."""
        for _ in range(_REREADS):
            manifest = self.manifest(location)
            try:
                return read(manifest)
            except FileNotFoundError as exc:
                if manifest is None:  # another tool's files, changing under the read
                    raise
                now = self.manifest(location)
                if now is None:
                    raise FileNotFoundError(f"no dataset is stored at {location!r} (it was "
                                            f"deleted while being read)") from None
                if now["generation"] == manifest["generation"]:
                    raise CorruptTargetError(
                        f"{location}: a file of the committed dataset is missing ({exc}); "
                        f"delete the dataset and write it again"
                    ) from None
                log.debug("%s was replaced while being read: reading the new dataset",
                          location)
        raise CorruptTargetError(
            f"{location}: the dataset was replaced {_REREADS} times while being read; read "
            f"it when its writers pause")

    def _read_pandas(self, location: str, manifest: dict[str, Any] | None,
                     options: dict[str, Any]) -> pd.DataFrame:
        """:meth:`read` of a pandas frame (eager, or lazily through Dask)."""
        engine = options.get("engine") or (manifest or {}).get("engine", "pandas")
        if engine not in ("pandas", "dask"):
            raise TypeError(f"engine for {location!r} must be 'pandas' or 'dask', "
                            f"got {engine!r}")
        columns = options.get("columns")
        if engine == "dask":
            lazy: pd.DataFrame = self._read_dask(location, manifest, columns,
                                                 options.get("filters"))
            return lazy  # a dask.dataframe.DataFrame, which computes like one
        expression = _expression(options.get("filters"), location)
        if manifest is None:
            dataset = self._dataset(location, None, hide_row_column=False)
            foreign: pd.DataFrame = dataset.to_table(columns=columns,
                                                     filter=expression).to_pandas()
            return foreign
        schema = decode_schema(manifest["schema"])
        names = _selected(schema, columns, location)
        table = self._table(location, manifest, names, expression)
        return _categories_in_order(arrow_to_frame(table), schema)

    def _table(self, location: str, manifest: dict[str, Any], names: list[str],
               expression: pc.Expression | None) -> pa.Table:
        """The committed fields ``names`` of the rows ``expression`` keeps, in the written
        order, with the written types and schema metadata."""
        dataset = self._dataset(location, manifest, hide_row_column=False)
        schema = decode_schema(manifest["schema"])
        row_column = manifest.get("row_column")
        scan = [*names, row_column] if row_column else names
        table = dataset.to_table(columns=scan, filter=expression)
        if row_column:
            table = table.drop_columns([row_column]).take(
                _restoring_order(table.column(row_column), manifest.get("rows")))
        target = pa.schema([schema.field(n) for n in names])
        return table.select(names).cast(target).replace_schema_metadata(schema.metadata)

    def _read_kind(self, location: str, manifest: dict[str, Any] | None, kind: str,
                   options: dict[str, Any]) -> Any:
        """The dataset as an Arrow table or a lazy polars scan (never through pandas)."""
        if kind not in ("arrow", "polars.LazyFrame"):
            raise ValueError(f"the dataset format reads kind 'pandas', 'arrow' or "
                             f"'polars.LazyFrame', not {kind!r}")
        if options.get("engine") not in (None, "pandas"):
            raise TypeError(f"engine={options['engine']!r} for {location!r} reads pandas "
                            f"frames only; leave it out to read kind={kind!r}")
        expression = _expression(options.get("filters"), location)
        columns = options.get("columns")
        if manifest is None:
            dataset = self._dataset(location, None, hide_row_column=True)
            names = _fields(dataset.schema, columns, location)
            if kind == "arrow":
                return dataset.to_table(columns=names, filter=expression)
            return _polars.scan_dataset(dataset, expression).select(names)
        schema = decode_schema(manifest["schema"])
        names = _fields(schema, columns, location)
        if kind == "arrow":
            return self._table(location, manifest, names, expression)
        return self._scan(location, manifest, names, expression)

    def _scan(self, location: str, manifest: dict[str, Any], names: list[str],
              expression: pc.Expression | None) -> Any:
        """A polars ``LazyFrame`` over the committed files, the partition columns with
        their written types and the rows in the written order.

        polars' own Parquet scan reads exactly the files the manifest names (never a
        listing), parses the partition values from their paths straight into the written
        types and hands polars' filters and columns to the files (partitions and row
        groups are skipped). The pyarrow dataset scan stands in where polars' would not
        read the dataset back exactly, where ``filters`` are given as a read option
        (pyarrow applies them as it always has) and where polars cannot be told how to
        reach the files (``_dataset_polars``).
        """
        schema = decode_schema(manifest["schema"])
        parts = decode_schema(manifest["partition_schema"]).names
        row_column = manifest.get("row_column")
        exact = _polars.types_of(pa.schema([schema.field(n) for n in parts]))
        lazy = None
        if expression is None:
            fs, root = self._fs(location)
            lazy = _polars.scan_files(fs, f"{root}/{manifest['generation']}", manifest,
                                      self.storage_options, exact)
        if lazy is None:
            lazy = _polars.scan_dataset(
                self._dataset(location, manifest, hide_row_column=False), expression)
            if parts:
                lazy = lazy.cast(exact)
        if row_column:
            lazy = lazy.sort(row_column).drop(row_column)
        return lazy.select(names)

    def _read_dask(self, location: str, manifest: dict[str, Any] | None,
                   columns: list[str] | None, filters: Any) -> Any:
        """A lazy Dask DataFrame over the committed generation (or a foreign directory)."""
        fs, root = self._fs(location)
        if manifest is None:
            self._foreign(location, fs, root)  # raises when nothing is there, warns if so
            base = root
        else:
            base = f"{root}/{manifest['generation']}"
        hidden = [manifest["row_column"]] if manifest and manifest.get("row_column") else []
        if hidden and columns is None:
            schema = decode_schema(manifest["schema"]) if manifest else pa.schema([])
            pandas_meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
            index = set(pandas_meta.get("index_columns", []) if pandas_meta else [])
            columns = [n for n in schema.names if n not in index]
        return _dask.read(fs, base, columns=columns, filters=filters,
                          storage_options=self.storage_options)

    def read_metadata(self, location: str) -> dict[str, str]:
        """The ``metadata`` committed with the dataset (``{}`` if none or not ours)."""
        manifest = self.manifest(location)
        return dict((manifest or {}).get("metadata") or {})

    # -- describing, listing, removing -----------------------------------------------------

    def target_info(self, location: str) -> TargetInfo:
        """Rows, bytes and partitions from the manifest (one read); a foreign directory
        is described from its files' footers and marked ``committed=False``."""
        manifest = self.manifest(location)
        if manifest is not None:
            return TargetInfo(
                rows=manifest.get("rows"),
                bytes=manifest.get("bytes"),
                modified=dt.datetime.fromisoformat(manifest["committed_at"]),
                partitions=manifest.get("partitions"),
                committed=True,
            )
        fs, root = self._fs(location)
        dataset = self._foreign(location, fs, root, warn=False)
        files = list(dataset.files)
        return TargetInfo(
            rows=dataset.count_rows(),
            bytes=sum(int(fs.size(f)) for f in files),
            partitions=len({posixpath.dirname(f) for f in files}),
            committed=False,
        )

    def list_locations(self, pattern: str) -> list[str]:
        """The committed datasets whose directory matches ``pattern`` (ending in ``/``)."""
        found = super().list_locations(f"{root_of(pattern)}/{MANIFEST}")
        return [f[: -len(MANIFEST)] for f in found]

    def delete(self, location: str) -> None:
        """Uncommit (remove the manifest), then remove every generation; files another
        tool put in the directory are left, and the directory goes when it is empty."""
        fs, root = self._fs(location)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{root}/{MANIFEST}")
        try:
            children = fs.ls(root, detail=False)
        except FileNotFoundError:
            return
        for child in children:
            if _GENERATION.fullmatch(posixpath.basename(str(child).rstrip("/"))):
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(str(child), recursive=True)
        with contextlib.suppress(OSError):
            if not fs.ls(root, detail=False):
                fs.rmdir(root)

    def discard(self, location: str) -> None:
        """A damaged dataset holds nothing worth keeping: delete it."""
        self.delete(location)

    def lock(self, location: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """The file lock of the dataset's directory (none on object stores)."""
        return super().lock(root_of(location), timeout)

    def asset_key(self, location: str) -> str:
        return super().asset_key(root_of(location))


# -- helpers ---------------------------------------------------------------------------------


def _partition_names(columns: list[Any], value: Any, location: str) -> list[str]:
    """The partition columns ``value`` names, checked against the frame's ``columns``."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            f"partition_cols for {location!r} must be a list of column names, got {value!r}; "
            f"e.g. write_kwargs={{'partition_cols': ['region']}}"
        )
    cols = list(value)
    missing = [c for c in cols if c not in columns]
    if missing:
        raise UnsupportedFrameError(
            f"partition_cols names {missing!r}, which the frame written to {location!r} does "
            f"not have; its columns are {columns!r}"
        )
    if len(set(cols)) != len(cols) or len(cols) >= len(columns):
        raise UnsupportedFrameError(
            f"partition_cols {cols!r} for {location!r} must name distinct columns and leave "
            f"at least one column to store in the files"
        )
    bad = [c for c in cols if not isinstance(c, str) or not _SAFE_KEY.fullmatch(c)]
    if bad:
        raise UnsupportedFrameError(
            f"partition column names {bad!r} cannot be directory names in {location!r}: use "
            f"letters, digits and '_-.' (rename them before writing)"
        )
    return cols


def _partition_columns(df: pd.DataFrame, value: Any, location: str) -> list[str]:
    cols = _partition_names(list(df.columns), value, location)
    for c in cols:
        dtype = df[c].dtype
        if not (pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)
                or pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
                or pd.api.types.is_datetime64_any_dtype(dtype)):
            raise UnsupportedFrameError(
                f"partition column {c!r} has dtype {dtype}, which cannot be a directory name "
                f"that reads back exactly; partition by a number, string, bool, category or "
                f"datetime column"
            )
        if pd.api.types.is_object_dtype(dtype) and not df[c].map(
                lambda v: v is None or isinstance(v, str)).all():
            raise UnsupportedFrameError(
                f"partition column {c!r} holds objects that are not strings; convert it "
                f"(e.g. df[{c!r}].astype('string')) before writing"
            )
    return cols


def _segments(table: pa.Table, cols: list[str], firsts: np.ndarray) -> list[list[str]]:
    """The hive path segments ``col=value`` of each group, from its first row."""
    keys = table.select(cols).take(pa.array(firsts, pa.int64()))
    texts = []
    for name in cols:
        column = keys.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        texts.append(column.cast(pa.string()).to_pylist())
        if HIVE_NULL in texts[-1]:
            raise UnsupportedFrameError(
                f"partition column {name!r} holds the text {HIVE_NULL!r}, which a hive path "
                f"spells for null: it would read back as null. Replace that value (or "
                f"partition by another column) before writing"
            )
    return [
        [f"{name}={HIVE_NULL if text is None else urllib.parse.quote(text, safe='')}"
         for name, text in zip(cols, row, strict=True)]
        for row in zip(*texts, strict=True)
    ]


def _group_codes(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Each row's partition group, numbered in order of first appearance (nulls too)."""
    codes: np.ndarray | None = None
    keys = []
    for name in cols:
        keys.append(df[name])
        if pd.api.types.is_float_dtype(df[name].dtype):  # factorize counts -0.0 as 0.0
            values = df[name].to_numpy(dtype=float, na_value=np.nan)
            keys.append(pd.Series(np.signbit(values) & (values == 0)))
    for key in keys:
        found, uniques = pd.factorize(key, use_na_sentinel=False)
        # renumbered at each step, so the combined codes stay below the row count
        codes = found if codes is None else pd.factorize(codes * len(uniques) + found)[0]
    assert codes is not None
    return np.asarray(codes, dtype=np.int64)


def _split(codes: np.ndarray | None, table: pa.Table, cols: list[str],
           max_rows: int | None) -> tuple[list[tuple[list[str], pa.Table]], bool]:
    """The files to write (path segments, table) and whether their order is the rows';
    ``codes`` numbers each row's partition group (:func:`_group_codes`)."""
    pieces: list[tuple[list[str], pa.Table]] = []
    if not cols or codes is None:
        step = max_rows or max(table.num_rows, 1)
        for start in range(0, max(table.num_rows, 1), step):
            pieces.append(([], table.slice(start, step)))
        return pieces, True
    ordered = bool(np.all(codes[1:] >= codes[:-1]))
    if not ordered:
        small = codes.astype(np.uint16) if codes.max(initial=0) < 2**16 else codes
        perm = np.argsort(small, kind="stable")  # a radix sort for 16-bit codes
        rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
        table = table.append_column(ROW_COLUMN, rows).take(pa.array(perm))
        codes = codes[perm]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64) if len(codes) else np.array([])
    ends = np.concatenate([bounds, [len(codes)]]).astype(np.int64) if len(codes) else starts
    stored = table.drop_columns(cols)
    for segments, start, end in zip(_segments(table, cols, starts), starts, ends, strict=True):
        step = max_rows or int(end - start)
        for s in range(int(start), int(end), step):
            pieces.append((segments, stored.slice(s, min(step, int(end) - s))))
    if not pieces:  # an empty frame: one file keeps the schema
        pieces.append(([], stored))
    return pieces, ordered


def _write_pieces(fs: Any, base: str, pieces: list[tuple[list[str], pa.Table]],
                  options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Write every piece to its file under ``base``, several at a time (pyarrow encodes
    without the GIL; object stores upload in parallel); their manifest entries, in order."""
    local = is_local(fs)
    rels = ["/".join([*segments, f"part-{i}.parquet"]) for i, (segments, _) in enumerate(pieces)]
    for folder in sorted({posixpath.dirname(f"{base}/{rel}") for rel in rels}):
        fs.makedirs(folder, exist_ok=True)

    if ROW_COLUMN in pieces[0][1].column_names:
        # Row numbers rise within a file: delta encoding stores them in a few bits a row,
        # where a dictionary of unique numbers would be tried and thrown away.
        chosen = options.get("use_dictionary", True)
        others = [n for n in pieces[0][1].column_names if n != ROW_COLUMN
                  and (chosen is True or (not isinstance(chosen, bool) and n in chosen))]
        options = {**options, "use_dictionary": others,
                   "column_encoding": {ROW_COLUMN: "DELTA_BINARY_PACKED"}}

    def one(rel: str, piece: pa.Table) -> dict[str, Any]:
        path = f"{base}/{rel}"
        if local:
            pq.write_table(piece, path, **options)
        else:
            with fs.open(path, "wb") as handle:
                pq.write_table(piece, handle, **options)
        return {"path": rel, "rows": piece.num_rows, "bytes": int(fs.size(path))}

    if len(pieces) == 1:
        return [one(rels[0], pieces[0][1])]
    workers = min(len(pieces), (os.cpu_count() or 2) * (1 if local else 4), 32)
    with ThreadPoolExecutor(workers, thread_name_prefix="prefect-ds-dataset") as pool:
        return list(pool.map(one, rels, [piece for _, piece in pieces]))


def _restoring_order(rows: pa.ChunkedArray, total: int | None) -> pa.Array:
    """The indices that put rows read in file order back in the written order."""
    numbers = rows.to_numpy()
    if total is not None and len(numbers) == total:  # all rows: invert the permutation
        inverse = np.empty_like(numbers)
        inverse[numbers] = np.arange(len(numbers), dtype=numbers.dtype)
        return pa.array(inverse)
    return pa.array(np.argsort(numbers, kind="stable"))


def _categories_in_order(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """Give categorical columns their written categories in the written order.

    A column read from several files gets the union of their dictionaries in the order
    they were met, which pandas counts equal to the written dtype when unordered; the
    dtype record says the written order, and ``set_categories`` recodes to it cheaply.
    """
    raw = (schema.metadata or {}).get(_DTYPES_KEY)
    if raw is None:
        return df
    for name, spec in json.loads(raw).get("columns", {}).items():
        if not spec or spec.get("dtype") != "category" or name not in df.columns:
            continue
        want = from_spec(spec)
        if not same_dtype(df[name].dtype, want):
            df[name] = df[name].cat.set_categories(want.categories, ordered=want.ordered)
    return df


def _check_read_options(options: Mapping[str, Any], location: str) -> None:
    unknown = sorted(set(options) - _READ_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown read option(s) {', '.join(unknown)} for the dataset at {location!r}; "
            f"it takes filters=[(column, op, value), ...], columns=[...] and "
            f"engine='pandas' or 'dask'"
        )


def _expression(filters: Any, location: str) -> pc.Expression | None:
    if filters is None or isinstance(filters, pc.Expression):
        return filters
    try:
        return pq.filters_to_expression(filters)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"filters for {location!r} must be a pyarrow expression or a list of "
            f"(column, op, value) tuples, e.g. [('year', '>=', 2020)] ({exc})"
        ) from None


def _selected(schema: pa.Schema, columns: Any, location: str) -> list[str]:
    """The stored fields to read: ``columns`` plus the index columns, in stored order."""
    if columns is None:
        return list(schema.names)
    pandas_meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
    index = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise KeyError(f"columns {missing!r} are not in the dataset at {location!r}")
    wanted = set(columns) | set(index)
    return [n for n in schema.names if n in wanted]


def _fields(schema: pa.Schema, columns: Any, location: str) -> list[str]:
    """The fields an Arrow or polars read gives: ``columns`` as named, else all of them."""
    if columns is None:
        return [n for n in schema.names if n != ROW_COLUMN]
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise KeyError(f"columns {missing!r} are not in the dataset at {location!r}")
    return list(columns)


def _arrow_input(frame: Any, location: str) -> pa.Table:
    """An Arrow table or a polars ``LazyFrame`` (collected) as the table to write."""
    import sys

    table: pa.Table
    polars = sys.modules.get("polars")  # a polars frame exists only once it is imported
    if isinstance(frame, pa.Table):
        table = frame
    elif polars is not None and isinstance(frame, polars.LazyFrame):
        table = frame.collect().to_arrow()
    else:
        raise TypeError(
            f"the dataset format stores pandas or Dask DataFrames, polars frames and Arrow "
            f"tables; got a {type(frame).__module__}.{type(frame).__qualname__} for "
            f"{location!r}"
        )
    if ROW_COLUMN in table.column_names:
        raise UnsupportedFrameError(
            f"the column name {ROW_COLUMN!r} is the dataset format's own (the stored row "
            f"order); rename that column before writing to {location!r}"
        )
    return table


def _partition_type_ok(field_type: pa.DataType) -> bool:
    """Whether values of ``field_type`` make directory names that parse back exactly."""
    plain = plain_type(field_type)
    return bool(
        pa.types.is_integer(plain) or pa.types.is_floating(plain) or pa.types.is_boolean(plain)
        or pa.types.is_date(plain)
        or pa.types.is_string(plain) or pa.types.is_large_string(plain)
        or (pa.types.is_timestamp(plain) and plain.tz is None))


def _arrow_partition_columns(schema: pa.Schema, value: Any, location: str) -> list[str]:
    """:func:`_partition_columns` for an Arrow table."""
    cols = _partition_names(list(schema.names), value, location)
    for c in cols:
        if not _partition_type_ok(schema.field(c).type):
            raise UnsupportedFrameError(
                f"partition column {c!r} has Arrow type {schema.field(c).type}, which cannot "
                f"be a directory name that reads back exactly; partition by a number, "
                f"string, bool, date or timestamp (without time zone) column"
            )
    return cols


def _arrow_group_codes(table: pa.Table, cols: list[str]) -> np.ndarray:
    """:func:`_group_codes` of an Arrow table: groups numbered in order of first appearance,
    nulls a group of their own."""
    codes: np.ndarray | None = None
    for name in cols:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        uniques = pc.unique(column)
        found = pc.index_in(column, value_set=uniques, skip_nulls=False).to_numpy(
            zero_copy_only=False).astype(np.int64)
        codes = found if codes is None else pd.factorize(codes * len(uniques) + found)[0]
    assert codes is not None
    return np.asarray(codes, dtype=np.int64)


def _unwritable(exc: BaseException) -> UnsupportedFrameError:
    """A frame holding a type Parquet cannot store; nothing was committed."""
    return UnsupportedFrameError(
        f"the dataset format cannot store this frame ({type(exc).__name__}: {exc}); nothing "
        f"was written. Cast the column it names to a type Parquet holds (docs/fidelity.md "
        f"lists them), or store it in another format"
    )


@hookimpl
def register_formats(register: Register) -> None:
    register(DatasetFormat())
