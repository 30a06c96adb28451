"""Frames for the dataset tests, and a writer process that can be killed mid-write.

``python -m support.datasets LOCATION PHASE MARKER SEED`` writes ``frame(SEED)`` to the
dataset at LOCATION, but first creates MARKER and sleeps for ever at PHASE: ``staging``
(in its third data file, once some staged file is complete) or ``commit`` (with the new
manifest written to its temporary, right before it is put in place). The test kills it
there with SIGKILL.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest


def frame(seed: int, n: int = 3000) -> pd.DataFrame:
    """A frame with several dtypes, a shuffled int index and unsorted partition keys."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "part": rng.integers(0, 12, n),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], n),
                                     categories=["south", "north", "east", "west"]),
            "x": rng.normal(size=n),
            "label": pd.array(rng.choice(["a", "b", None], n), dtype="string"),
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n),
                                                                   unit="s"),
        },
        index=pd.Index(rng.permutation(n) + seed * 10**6, name="id"),
    )


def register() -> bool:
    """Make the dataset format available when the installed entry points lack it (a
    source checkout on the path of an older install); True if this registered it."""
    import prefect_ds
    import prefect_ds.formats.dataset as module

    if "dataset" in prefect_ds.available_formats():
        return False
    prefect_ds.register_plugin(module, name="prefect-ds:dataset")
    return True


def unregister() -> None:
    """Undo :func:`register`, so later tests see the installed formats only."""
    from prefect_ds import _registry

    _registry.pm.unregister(name="prefect-ds:dataset")
    _registry._registry = None


@pytest.fixture(autouse=True, scope="module")
def registered_dataset_format() -> Iterator[None]:
    """The dataset format for a whole test module (import this fixture into it)."""
    registered = register()
    yield
    if registered:
        unregister()


def fmt() -> Any:
    """The dataset format, as the registry gives it."""
    import prefect_ds

    return prefect_ds.get_format("dataset")


def _pause(marker: str) -> None:
    with open(marker, "w"):
        pass
    time.sleep(600)


def _wait_for_staged_files(location: str) -> None:
    """Until another writing thread has finished a staged file (an S3 object appears when
    its upload ends, after ``write_table`` returns)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(location.rstrip("/"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fs.invalidate_cache()
        if any(p.endswith(".parquet") for p in fs.find(root)):
            return
        time.sleep(0.05)


def main(location: str, phase: str, marker: str, seed: int) -> None:
    import prefect_ds
    import prefect_ds.formats.dataset as module

    register()
    if phase == "staging":
        real_write = module.pq.write_table
        count = 0

        def write_table(*args: Any, **kwargs: Any) -> None:
            nonlocal count
            real_write(*args, **kwargs)
            count += 1
            if count == 3:
                _wait_for_staged_files(location)
                _pause(marker)

        module.pq.write_table = write_table
    elif phase == "commit":
        real_staged = module.staged

        @contextlib.contextmanager
        def staged(*locations: str, **options: Any) -> Iterator[list[str]]:
            with real_staged(*locations, **options) as temps:
                yield temps
                _pause(marker)  # the manifest is complete in its temporary, not in place

        module.staged = staged
    prefect_ds.get_format("dataset").write(frame(seed), location, partition_cols=["part"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
