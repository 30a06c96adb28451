"""Eight processes render the same target at once, round after round.

Each round starts eight spawned processes at one barrier; each renders the target the way
a checkpointed call does (``target_lock`` -> exists? load : compute + write). Every round
the final target must be complete, loadable and equal to the expected frame, and nothing
(temp files, lock files, leases) may be left beside it. On local disk the lock file, on
S3 the lease object, makes the losers wait and load: exactly one process computes.
Fast run: 5 rounds (``ROUNDS``); PREFECT_DS_FULL=1: 20.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import uuid
from collections.abc import Iterator
from multiprocessing.pool import Pool
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import count

from prefect_ds import PandasResultHandler, available_formats, checkpoint
from prefect_ds._checkpoint.locking import target_lock

PROCESSES = 8
ROUNDS = count(5, 20)
_barrier: Any = None


@functools.cache
def _expected() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    n = 2_000
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "value": rng.normal(size=n),
            "label": pd.Series([f"row-{i}" for i in range(n)], dtype="str"),
            "when": pd.date_range("2024-01-01", periods=n, freq="min"),
        }
    )


def expected_frame() -> pd.DataFrame:
    """The frame every process computes (a fresh copy each time)."""
    return _expected().copy()


def _init(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


@functools.cache
def _checkpointed(base: str) -> Any:
    """A checkpointed function with targets under ``base`` (made once per process)."""

    def compute(round_: int, markers: str) -> pd.DataFrame:
        with open(os.path.join(markers, f"{round_}-{uuid.uuid4().hex}"), "w"):
            pass  # one marker per computation
        return expected_frame()

    return checkpoint(base + "/round{round_}/target.csv")(compute)


def render_checkpointed(base: str, round_: int, markers: str) -> bool:
    """One process calls the checkpointed function (no Prefect task around it)."""
    fn = _checkpointed(base)
    _barrier.wait(timeout=120)
    return bool(fn(round_, markers).equals(_expected()))


def render(location: str) -> tuple[str, bool]:
    """One process's render of ``location``: (computed|loaded, equals expected)."""
    handler = PandasResultHandler(location)
    _barrier.wait(timeout=120)
    with target_lock(handler.format, location):
        if handler.exists():
            df, status = handler.read(), "loaded"
        else:
            df, status = expected_frame(), "computed"
            handler.write(df)
    return status, df.equals(_expected())


@pytest.fixture(scope="module")
def pool(s3_server: Any) -> Iterator[Pool]:
    """Eight spawned processes (started after the S3 environment is set, so they see it)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    with ctx.Pool(PROCESSES, initializer=_init, initargs=(barrier,)) as workers:
        yield workers


def race(pool: Pool, location: str) -> list[tuple[str, bool]]:
    return pool.map(render, [location] * PROCESSES, chunksize=1)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_local_race_computes_once_and_leaves_a_whole_target(
    pool: Pool, tmp_path: Any, suffix: str
) -> None:
    if suffix == ".csv" and "csv" not in available_formats():
        pytest.skip("the csv format is not installed yet")
    expected = expected_frame()
    for round_ in range(ROUNDS):
        location = str(tmp_path / f"round{round_}" / f"target{suffix}")
        results = race(pool, location)
        assert all(equal for _, equal in results), results
        assert sorted(status for status, _ in results) == ["computed"] + ["loaded"] * 7
        pd.testing.assert_frame_equal(PandasResultHandler(location).read(), expected)
        left = sorted(os.listdir(os.path.dirname(location)))
        names = [os.path.basename(location)]
        if suffix == ".csv":
            names = [*names, os.path.basename(location) + ".schema.json"]
        assert left == sorted(names), left  # no temp or lock files left behind


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_s3_race_computes_once_through_the_lease(pool: Pool, s3_bucket: str,
                                                 suffix: str) -> None:
    """S3 exclusive writes (If-None-Match: *) make one lease holder: one computes."""
    import s3fs

    expected = expected_frame()
    for round_ in range(ROUNDS):
        folder = f"{s3_bucket}/round{round_}/{uuid.uuid4().hex[:6]}"
        location = f"{folder}/target{suffix}"
        results = race(pool, location)
        assert all(equal for _, equal in results), results
        assert sorted(status for status, _ in results) == ["computed"] + ["loaded"] * 7
        pd.testing.assert_frame_equal(PandasResultHandler(location).read(), expected)
        left = sorted(p.rsplit("/", 1)[1] for p in s3fs.S3FileSystem().ls(folder, refresh=True))
        assert all(not name.startswith(".") for name in left), left  # no lease left


def test_checkpointed_function_race_computes_once(pool: Pool, tmp_path: Any) -> None:
    """The same race through ``checkpoint`` itself: one process computes, seven load."""
    base, markers = str(tmp_path / "targets"), str(tmp_path / "markers")
    os.makedirs(markers)
    expected = expected_frame()
    for round_ in range(ROUNDS):
        results = pool.map(
            functools.partial(render_checkpointed, base, round_), [markers] * PROCESSES,
            chunksize=1,
        )
        assert all(results)
        pd.testing.assert_frame_equal(
            PandasResultHandler(f"{base}/round{round_}/target.csv").read(), expected
        )
    computed = sorted(int(name.split("-")[0]) for name in os.listdir(markers))
    assert computed == list(range(ROUNDS))  # exactly one computation per round
