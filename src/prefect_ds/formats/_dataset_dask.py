"""Dask DataFrames in and out of a dataset, written and read by the cluster itself.

:func:`write` has every partition written by the worker that holds it (dask's
``to_parquet``) straight into a new generation of the dataset, then returns what the
manifest needs; nothing is gathered to the client or to one worker. The caller commits
that manifest in one step, exactly as for a pandas frame.

:func:`read` returns a lazy ``dask.dataframe.DataFrame`` over a committed generation;
``filters`` and ``columns`` go into dask's Parquet reader, so a computation reads only the
partitions, row groups and columns it needs.

Inside a task running on a Dask worker (Prefect's Dask task runners) the write runs on the
worker's cluster through ``worker_client``; elsewhere on dask's current scheduler (the
default ``distributed.Client`` if one exists).
"""

from __future__ import annotations

import posixpath
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect_ds._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads
else:
    pa = lazy("pyarrow")
    pads = lazy("pyarrow.dataset")


_PART = re.compile(r"part\.(\d+)\.parquet")


def is_dask_frame(obj: object) -> bool:
    """Whether ``obj`` is a Dask DataFrame (without importing dask: a process that made
    one has imported it already)."""
    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(obj, dd.DataFrame)


def _compute(graph: Any) -> None:
    """Run the write ``graph`` on the cluster this code runs on (see the module doc)."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        graph.compute()
        return
    with worker_client() as client:
        client.compute(graph).result()


def write(ddf: Any, fs: Any, base: str, partition_cols: list[str],
          options: Mapping[str, Any], storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``ddf``'s partitions under the generation ``base`` (a path on ``fs``) and
    return the manifest fields that describe them."""
    url = fs.unstrip_protocol(base)
    graph = ddf.to_parquet(
        url,
        partition_on=partition_cols or None,
        compute=False,
        write_metadata_file=False,
        storage_options=dict(storage_options) or None,
        **options,
    )
    _compute(graph)
    found = {str(p): int(info.get("size") or 0)
             for p, info in fs.find(base, detail=True).items() if str(p).endswith(".parquet")}
    files = sorted((p[len(base) + 1:] for p in found), key=lambda rel: (_number(rel), rel))
    part_types = {c: ddf._meta[c].dtype for c in partition_cols}
    part_schema = pa.schema([
        pa.field(c, pa.from_numpy_dtype(t) if t.kind in "iufb" else pa.string())
        for c, t in part_types.items()
    ])
    # Rows from the files' footers (read in parallel), not a len() over the partitions:
    # that would keep every partition in memory until both the write and len have run.
    dataset = pads.dataset([f"{base}/{f}" for f in files], format="parquet",
                           filesystem=fs, partition_base_dir=base,
                           partitioning=pads.partitioning(part_schema, flavor="hive"))
    rows = dataset.count_rows()
    return {
        "engine": "dask",
        "files": [{"path": f, "rows": None, "bytes": None} for f in files],
        "partition_cols": partition_cols,
        "partition_schema": part_schema,
        "schema": dataset.schema,
        "row_column": None,
        "rows": rows,
        "bytes": sum(found.values()),
        "partitions": len({posixpath.dirname(f) for f in files}),
    }


def _number(rel: str) -> int:
    match = _PART.fullmatch(posixpath.basename(rel))
    return int(match[1]) if match else -1


def read(fs: Any, base: str, *, columns: list[str] | None, filters: Any,
         storage_options: Mapping[str, Any]) -> Any:
    """A lazy Dask DataFrame over the generation at ``base`` (see the module doc)."""
    import dask.dataframe as dd

    return dd.read_parquet(fs.unstrip_protocol(base), columns=columns, filters=filters,
                           storage_options=dict(storage_options) or None)
