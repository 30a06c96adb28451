"""A real Dask ``LocalCluster`` for the tests of one module (processes, 127.0.0.1)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import cloudpickle


@contextlib.contextmanager
def local_cluster(module: str, *, n_workers: int, threads_per_worker: int) -> Iterator[Any]:
    """A process-based cluster whose workers get ``module``'s functions by value (they do
    not have the tests directory on their path)."""
    import distributed

    cloudpickle.register_pickle_by_value(sys.modules[module])
    try:
        with distributed.LocalCluster(
            n_workers=n_workers,
            processes=True,
            threads_per_worker=threads_per_worker,
            host="127.0.0.1",
            dashboard_address=None,
        ) as local:
            yield local
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[module])
