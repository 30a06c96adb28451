"""polars' own Parquet scan of a committed dataset, where it reads back exactly.

:func:`scan_files` is ``pl.scan_parquet`` over the files a manifest names (never a
listing), with the partition values parsed from their paths straight into the written
types and the files' schema given, so planning a query opens no file. It returns None
where polars' scan would not give back exactly what was written (files written by Dask,
partition types outside the tested list, a location holding ``=``) or cannot be told how
to reach the files (:func:`storage`); then :func:`scan_dataset`, polars over the pyarrow
dataset, reads them.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect_ds._lazy import lazy
from prefect_ds._storage.files import is_local
from prefect_ds.formats._dataset_schema import decode_schema, plain_type

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")


_S3_OPTIONS = {"key", "secret", "token", "anon", "endpoint_url", "client_kwargs"}


def scan_dataset(dataset: pads.Dataset, expression: pc.Expression | None) -> Any:
    """A polars scan of ``dataset`` (the ``filters`` read option applied in the scan)."""
    import polars as pl

    return pl.scan_pyarrow_dataset(
        dataset if expression is None else dataset.filter(expression))


def types_of(schema: pa.Schema) -> dict[str, Any]:
    """The polars types of the fields of ``schema`` (what ``pl.from_arrow`` makes)."""
    import polars as pl

    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return dict(frame.schema)


def _hive_type_ok(plain: pa.DataType, dtype: Any) -> bool:
    """Whether polars parses the path values we write for ``plain`` straight into
    ``dtype``, exactly: numbers, bools, dates, times (with or without zone) and strings,
    strings as polars categoricals or enums too (each checked against our paths by
    tests/test_dataset_lazy.py)."""
    import polars as pl

    text = bool(pa.types.is_string(plain) or pa.types.is_large_string(plain))
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return text
    if not (text or pa.types.is_integer(plain) or pa.types.is_floating(plain)
            or pa.types.is_boolean(plain) or pa.types.is_date(plain)
            or pa.types.is_timestamp(plain)):
        return False
    return bool(types_of(pa.schema([pa.field("k", plain)]))["k"] == dtype)


def _hive_schema(manifest: dict[str, Any], base: str, parts: pa.Schema,
                 exact: dict[str, Any], files: list[str]) -> dict[str, Any] | None:
    """The types polars parses the partition values of ``files`` into, or None where its
    hive parsing would not give back exactly what was written: files written by Dask (its
    own path encoding), partition types outside :func:`_hive_type_ok`, a location holding
    ``=`` (polars parses every ``key=value`` segment of a path) or a file outside the
    partition directories (an empty dataset's). The written types, except that a
    categorical or enum column holding the empty string is parsed as a string (polars
    reads an empty category as null) and cast."""
    import polars as pl

    if not parts.names:
        return {}
    if manifest.get("engine") != "pandas" or "=" in base:
        return None
    if not all(_hive_type_ok(plain_type(f.type), exact[f.name]) for f in parts):
        return None
    empty: set[str] = set()
    for rel in files:
        segments = rel.split("/")[:-1]
        if len(segments) != len(parts.names) or not all(
                s.startswith(f"{n}=") for s, n in zip(segments, parts.names, strict=True)):
            return None
        empty.update(n for s, n in zip(segments, parts.names, strict=True) if s == f"{n}=")
    return {n: pl.String if n in empty else exact[n] for n in parts.names}


def _stored_schema(manifest: dict[str, Any], parts: pa.Schema) -> dict[str, Any] | None:
    """The polars types of the fields stored in the files (the committed schema without
    the partition columns, with the row numbers), as polars reads them from Parquet. None
    if polars cannot read them."""
    found = _stored_types(manifest["schema"], tuple(parts.names), manifest.get("row_column"))
    return None if found is None else dict(found)


@functools.lru_cache(maxsize=64)
def _stored_types(schema_text: str, parts: tuple[str, ...],
                  row_column: str | None) -> tuple[tuple[str, Any], ...] | None:
    """:func:`_stored_schema`, from an empty file of that Arrow schema written in memory
    and read by polars (cached: a dataset's schema text is the same for every read)."""
    import polars as pl

    schema = decode_schema(schema_text)
    fields = [f for f in schema if f.name not in parts]
    if row_column:
        fields.append(pa.field(row_column, pa.int64()))
    buffer = io.BytesIO()
    try:
        pq.write_table(pa.schema(fields, metadata=schema.metadata).empty_table(), buffer)
        buffer.seek(0)
        return tuple(pl.read_parquet_schema(buffer).items())
    except Exception:  # any type polars cannot read: the pyarrow scan reads those
        return None


def storage(fs: Any, storage_options: Mapping[str, Any]) -> dict[str, str] | None:
    """polars' object-store options for ``fs``, or None where they cannot be told exactly
    (then the pyarrow scan reads through ``fs`` itself).

    A local disk needs none. S3 is translated when its ``storage_options`` name the
    bucket's region (``client_kwargs={"region_name": ...}``) and the credentials (``key``
    and ``secret``, with ``token``; or ``anon=True``), and at most an ``endpoint_url``
    besides: s3fs (through botocore) and polars (object_store) then connect to the same
    place as the same user. Anything else s3fs would find on its own (profiles, config
    files, instance roles, ``AWS_ENDPOINT_URL_S3``) stays with s3fs.
    """
    if is_local(fs):
        return {}
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    client = storage_options.get("client_kwargs") or {}
    if ("s3" not in protocols or set(storage_options) - _S3_OPTIONS
            or not isinstance(client, Mapping) or set(client) - {"endpoint_url", "region_name"}
            or not client.get("region_name")):
        return None
    options = {"aws_region": str(client["region_name"])}
    endpoint = storage_options.get("endpoint_url") or client.get("endpoint_url")
    if endpoint:
        options["aws_endpoint_url"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            options["aws_allow_http"] = "true"
    elif any(name.startswith("AWS_ENDPOINT") for name in os.environ):
        return None  # botocore and object_store read different endpoint variables
    if storage_options.get("anon"):
        options["aws_skip_signature"] = "true"
    elif storage_options.get("key") and storage_options.get("secret"):
        options["aws_access_key_id"] = str(storage_options["key"])
        options["aws_secret_access_key"] = str(storage_options["secret"])
        if storage_options.get("token"):
            options["aws_session_token"] = str(storage_options["token"])
        elif os.environ.get("AWS_SESSION_TOKEN") or os.environ.get("AWS_SECURITY_TOKEN"):
            return None  # object_store would add it to the given keys; botocore would not
    else:
        return None
    return options


def scan_files(fs: Any, base: str, manifest: dict[str, Any],
               storage_options: Mapping[str, Any], exact: dict[str, Any]) -> Any:
    """``pl.scan_parquet`` over the manifest's files, or None where it does not fit.

    The files' schema is given, as polars reads it from files of the committed Arrow
    schema (:func:`_stored_schema`), so planning a query opens no file: only the
    files that polars' filters keep are ever read.
    """
    import polars as pl

    options = storage(fs, storage_options)
    if options is None:
        return None
    parts = decode_schema(manifest["partition_schema"])
    files = [str(f["path"]) for f in manifest["files"]]
    hive = _hive_schema(manifest, base, parts, exact, files)
    stored = _stored_schema(manifest, parts)
    if hive is None or stored is None:
        return None
    paths = [f"{base}/{rel}" for rel in files]
    if not is_local(fs):
        paths = [fs.unstrip_protocol(p) for p in paths]
    lazy: Any = pl.scan_parquet(
        paths, schema=stored, glob=False, hive_partitioning=bool(parts.names),
        hive_schema=hive or None, storage_options=options or None,
        credential_provider=None)
    loose = {n: t for n, t in exact.items() if hive[n] != t}
    return lazy.cast(loose) if loose else lazy
