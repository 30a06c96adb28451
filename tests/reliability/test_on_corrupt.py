"""The checkpoint's policy for a corrupt target: ``on_corrupt="error"`` or ``"recompute"``.

A target that fails the format's checks raises ``CorruptTargetError``. By default the
checkpointed call raises it (naming the target), runs nothing and leaves the target as
it is; with ``on_corrupt="recompute"`` it logs a warning, runs the function and replaces
the target atomically, so the next call loads the good frame. Never a wrong frame.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest
from reliability_support import Target, tally

from prefect_ds import CorruptTargetError, checkpoint, checkpoint_task

pytest_plugins = ["sql_fixtures"]

GOOD = pd.DataFrame({"x": [1.5, 2.5, 3.5], "s": pd.array(["a", "b", None], dtype="str")})


def corrupt(target: Target) -> None:
    """Damage a complete target so that its format raises CorruptTargetError."""
    if target.key == "sql-sqlite":
        with sqlite3.connect(str(target.db_url).removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE _prefect_ds_tables SET columns = 'garbage'")
        return
    if target.key == "sql-postgresql":
        import psycopg

        with psycopg.connect(str(target.db_url).replace("postgresql+psycopg://",
                                                        "postgresql://"), autocommit=True) as c:
            c.execute("UPDATE _prefect_ds_tables SET columns = 'garbage' WHERE table_name = %s",
                      (target.table,))
        return
    target.path.write_bytes(os.urandom(target.path.stat().st_size))


def test_error_is_the_default_and_names_the_target(target: Target) -> None:
    calls: list[int] = []

    @checkpoint(target.location, target.fmt.name)
    def make() -> pd.DataFrame:
        calls.append(1)
        return GOOD

    pd.testing.assert_frame_equal(make(), GOOD)
    corrupt(target)
    named = target.table if target.is_sql else target.path.name
    for _ in range(2):
        with pytest.raises(CorruptTargetError, match=str(named)):
            make()
    assert calls == [1]  # the body did not run again
    with pytest.raises(CorruptTargetError):  # and the damaged target was left for a look
        target.fmt.read(target.location)
    tally(target.key, corrupt_cases=1, wrong_frames=0)


def test_recompute_warns_and_replaces_atomically(target: Target,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    @checkpoint(target.location, target.fmt.name, on_corrupt="recompute")
    def make() -> pd.DataFrame:
        calls.append(1)
        return GOOD

    make()
    corrupt(target)
    with caplog.at_level(logging.WARNING):
        out = make()
    pd.testing.assert_frame_equal(out, GOOD)
    assert calls == [1, 1]
    assert any("corrupt" in r.getMessage() and "recompute" in r.getMessage()
               for r in caplog.records)
    pd.testing.assert_frame_equal(target.fmt.read(target.location), target.expect(GOOD))
    pd.testing.assert_frame_equal(make(), target.expect(GOOD))  # now a plain hit
    assert calls == [1, 1]
    if not target.is_sql:
        assert not [p for p in target.directory.iterdir() if p.name.startswith(".")
                    and "prefect-ds-tmp" in p.name]
    tally(target.key, corrupt_cases=1, wrong_frames=0)


def test_recompute_in_a_prefect_flow(tmp_path: Path, prefect_harness: None) -> None:
    from prefect import flow

    location = tmp_path / "r_{n}.parquet"

    @checkpoint_task(str(location), on_corrupt="recompute")
    def make(n: int) -> pd.DataFrame:
        return GOOD.assign(n=n)

    @flow
    def pipeline() -> list[pd.DataFrame]:
        return [make(n) for n in range(3)]

    pipeline()
    (tmp_path / "r_1.parquet").write_bytes(b"PAR1 truncated")
    frames = pipeline()
    for n, df in enumerate(frames):
        pd.testing.assert_frame_equal(df, GOOD.assign(n=n))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r_1.parquet"), GOOD.assign(n=1))


def test_unknown_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_corrupt must be one of 'error', 'recompute'"):
        checkpoint(str(tmp_path / "x.parquet"), on_corrupt="ignore")  # type: ignore[arg-type]


def test_recompute_keeps_a_target_repaired_meanwhile(target: Target) -> None:
    """Right before replacing a corrupt target, ``recompute`` reads it again: one that
    another process repaired while the body ran is kept, not overwritten."""
    repaired = GOOD.assign(x=[10.5, 20.5, 30.5])

    @checkpoint(target.location, target.fmt.name, on_corrupt="recompute")
    def make(repair: bool) -> pd.DataFrame:
        if repair:  # another process repairs the target while this body runs
            if not target.is_sql:
                target.path.unlink()  # an HDF5 file too damaged to write into
            target.fmt.write(repaired, target.location)
        return GOOD

    make(False)
    corrupt(target)
    pd.testing.assert_frame_equal(make(True), GOOD)  # the call returns its own result
    pd.testing.assert_frame_equal(target.fmt.read(target.location), target.expect(repaired))
    tally(target.key, corrupt_cases=1, wrong_frames=0)


def test_error_leaves_a_corrupt_target_that_appeared_meanwhile(tmp_path: Path) -> None:
    """With the default ``on_corrupt="error"``, a damaged target that another process
    put there while the body ran is left for a look, as a damaged target found first is."""
    location = tmp_path / "t.parquet"
    damaged = b"PAR1 not a parquet file"

    @checkpoint(str(location))
    def make() -> pd.DataFrame:
        location.write_bytes(damaged)  # another writer's damaged target lands meanwhile
        return GOOD

    pd.testing.assert_frame_equal(make(), GOOD)  # the call returns its own result
    assert location.read_bytes() == damaged


def test_a_policy_read_from_configuration_is_honoured(tmp_path: Path) -> None:
    """``on_corrupt`` built at run time (read from a configuration file, say: an equal
    string, not the same object as a literal) means what its literal means."""
    location = tmp_path / "t.parquet"
    policy = "".join(["err", "or"])
    assert policy == "error" and policy is not sys.intern("error")

    @checkpoint(str(location), on_corrupt=policy)  # type: ignore[arg-type]
    def make() -> pd.DataFrame:
        return GOOD

    make()
    location.write_bytes(os.urandom(location.stat().st_size))
    with pytest.raises(CorruptTargetError):
        make()
    recompute = "".join(["re", "compute"])

    @checkpoint(str(location), on_corrupt=recompute)  # type: ignore[arg-type]
    def remake() -> pd.DataFrame:
        return GOOD

    pd.testing.assert_frame_equal(remake(), GOOD)
    pd.testing.assert_frame_equal(pd.read_parquet(location), GOOD)  # replaced
