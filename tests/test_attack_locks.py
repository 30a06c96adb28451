"""Concurrent writers without ``@checkpoint``, S3 leases, and logged, bounded lock waits."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from prefect_ds import (
    PandasResultHandler,
    TargetLockTimeout,
    checkpoint,
    checkpoint_task,
    get_format,
)
from prefect_ds._storage.lease import LEASE_MARKER, S3Lease, lease_path
from prefect_ds._storage.locks import FileLock, describe_holder

FORK = multiprocessing.get_context("fork")
SPAWN = multiprocessing.get_context("spawn")


def frame(value: int, n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"v": [value] * n, "s": [f"w{value}"] * n})


# --- local: handler.write takes the target's lock ------------------------------------


def test_handler_write_waits_for_the_target_lock(tmp_path: Path) -> None:
    location = str(tmp_path / "t.parquet")
    handler = PandasResultHandler(location)
    holder = FileLock(location)
    holder.acquire()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (handler.write(frame(1)), done.set()))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not os.path.exists(location)  # still waiting
    holder.release()
    thread.join(30)
    assert done.is_set()
    assert_frame_equal(handler.read(), frame(1))


def test_a_format_commit_of_several_files_renames_under_the_target_lock(tmp_path: Path) -> None:
    """Without a handler, a csv write (sidecar + data) still renames under the lock of the
    data file, so a holder of that lock never sees half a commit."""
    location = str(tmp_path / "t.csv")
    fmt = get_format("csv")
    holder = FileLock(location)
    holder.acquire()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (fmt.write(frame(3), location), done.set()))
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not os.path.exists(location)  # staged, waiting to rename
    assert not os.path.exists(fmt.sidecars(location)[0])
    holder.release()
    thread.join(30)
    assert done.is_set()
    assert_frame_equal(fmt.read(location), frame(3))


def test_handler_write_under_a_held_target_lock_does_not_deadlock(tmp_path: Path) -> None:
    location = str(tmp_path / "t.csv")
    handler = PandasResultHandler(location)
    with handler.format.lock(location):  # type: ignore[attr-defined]
        handler.write(frame(2))
    assert_frame_equal(handler.read(), frame(2))


def _hammer(location: str, value: int, rounds: int) -> None:
    handler = PandasResultHandler(location)
    for _ in range(rounds):
        handler.write(frame(value))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".h5"])
def test_two_handler_writers_leave_exactly_one_complete_result(tmp_path: Path,
                                                               suffix: str) -> None:
    if suffix == ".h5":
        pytest.importorskip("h5py")
    location = str(tmp_path / f"t{suffix}")
    writers = [SPAWN.Process(target=_hammer, args=(location, v, 10)) for v in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    back = PandasResultHandler(location).read()
    assert any(back.equals(frame(v)) for v in (1, 2)), back
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- lock waits: logged with their holder, bounded by lock_timeout ---------------------


def _hold_lock(location: str, ready: Any, release: Any) -> None:
    with FileLock(location):
        ready.set()
        release.wait(60)


def test_lock_wait_is_logged_with_the_holder_and_bounded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    location = str(tmp_path / "t.parquet")
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(location, ready, release))
    holder.start()
    assert ready.wait(30)
    calls: list[int] = []

    @checkpoint(location, lock_timeout=0.5)
    def compute() -> pd.DataFrame:
        calls.append(1)
        return frame(3)

    try:
        with caplog.at_level(logging.WARNING), pytest.raises(TargetLockTimeout) as caught:
            compute()
        assert f"pid {holder.pid}" in str(caught.value)
        assert socket.gethostname() in str(caught.value)
        assert "lock_timeout" in str(caught.value)
        waits = [r.getMessage() for r in caplog.records if "waiting for the lock" in
                 r.getMessage()]
        assert waits and f"pid {holder.pid} on host {socket.gethostname()} since" in waits[0]
        assert calls == []
    finally:
        release.set()
        holder.join(30)
    assert_frame_equal(compute(), frame(3))  # free again: computes and stores


def test_lock_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        checkpoint("x.parquet", lock_timeout=-1)
    with pytest.raises(ValueError, match="lock_timeout"):
        checkpoint_task("x.parquet", lock_timeout="soon")  # type: ignore[arg-type]


def test_async_checkpoint_honours_lock_timeout(tmp_path: Path) -> None:
    import asyncio

    location = str(tmp_path / "t.parquet")

    @checkpoint(location, lock_timeout=0.3)
    async def compute() -> pd.DataFrame:
        return frame(4)

    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(location, ready, release))
    holder.start()
    assert ready.wait(30)
    try:
        with pytest.raises(TargetLockTimeout, match=f"pid {holder.pid}"):
            asyncio.run(compute())
    finally:
        release.set()
        holder.join(30)
    assert_frame_equal(asyncio.run(compute()), frame(4))


def test_holder_record_is_readable() -> None:
    assert describe_holder(b"garbage") == "an unknown holder"
    assert describe_holder(None) == "an unknown holder"
    text = describe_holder(json.dumps({"pid": 7, "host": "h", "since": "t"}))
    assert text == "pid 7 on host h since t"


# --- S3: leases through exclusive writes ---------------------------------------------


def _fs() -> Any:
    import s3fs

    return s3fs.S3FileSystem()


def _lease_key(bucket_url: str, name: str) -> str:
    return f"{bucket_url.removeprefix('s3://')}/{name}"


def test_exclusive_create_is_honoured_by_the_server(s3_bucket: str) -> None:
    """The primitive everything rests on: a second If-None-Match: * PUT fails."""
    fs = _fs()
    path = _lease_key(s3_bucket, "x")
    fs.pipe_file(path, b"1", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"2", mode="create")
    assert fs.cat_file(path) == b"1"


def _race_for(leases: list[S3Lease]) -> list[bool]:
    """Every lease tries once, all at the same moment; who won."""
    start = threading.Barrier(len(leases))
    won = [False] * len(leases)

    def take(i: int) -> None:
        start.wait()
        won[i] = leases[i].try_acquire()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return won


def test_only_one_of_many_takes_a_free_lease(s3_bucket: str) -> None:
    fs = _fs()
    for round_ in range(5):
        path = _lease_key(s3_bucket, f"r{round_}/t.parquet")
        leases = [S3Lease(fs, path) for _ in range(8)]
        won = _race_for(leases)
        assert sum(won) == 1, won
        leases[won.index(True)].release()
        assert not fs.exists(lease_path(path))


def test_expired_lease_of_a_dead_holder_is_taken_over(
        s3_bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    fs = _fs()
    path = _lease_key(s3_bucket, "t.parquet")
    fs.pipe_file(lease_path(path), json.dumps(
        {"pid": 1, "host": "gone-host", "since": time.time() - 120,
         "expires": time.time() - 60}).encode())
    lease = S3Lease(fs, path, timeout=10)
    with caplog.at_level(logging.WARNING):
        lease.acquire(10)
    assert any("took over the expired lease" in r.getMessage() for r in caplog.records)
    assert json.loads(fs.cat_file(lease_path(path)))["pid"] == os.getpid()
    lease.release()
    assert not fs.exists(lease_path(path))


def test_live_lease_is_not_taken_and_times_out_naming_its_holder(s3_bucket: str) -> None:
    fs = _fs()
    path = _lease_key(s3_bucket, "t.parquet")
    fs.pipe_file(lease_path(path), json.dumps(
        {"pid": 4242, "host": "other-host", "since": time.time(),
         "expires": time.time() + 600}).encode())
    with pytest.raises(TargetLockTimeout, match="pid 4242 on host other-host"):
        S3Lease(fs, path).acquire(0.5)


def test_garbled_lease_is_treated_as_expired_only_when_old(s3_bucket: str) -> None:
    fs = _fs()
    path = _lease_key(s3_bucket, "t.parquet")
    fs.pipe_file(lease_path(path), b"not json")
    with pytest.raises(TargetLockTimeout):
        S3Lease(fs, path, seconds=60).acquire(0.5)
    lease = S3Lease(fs, path, seconds=1)
    lease.acquire(10)  # one second after it was written, it counts as expired
    lease.release()


def test_a_takeover_race_has_one_winner(s3_bucket: str) -> None:
    fs = _fs()
    path = _lease_key(s3_bucket, "t.parquet")
    fs.pipe_file(lease_path(path), json.dumps(
        {"pid": 1, "host": "gone", "since": 0, "expires": 0}).encode())
    leases = [S3Lease(fs, path) for _ in range(6)]
    won = _race_for(leases)
    assert sum(won) == 1, won
    leases[won.index(True)].release()


def test_lease_is_renewed_while_held(s3_bucket: str) -> None:
    fs = _fs()
    path = _lease_key(s3_bucket, "t.parquet")
    lease = S3Lease(fs, path, seconds=1.5)
    lease.acquire()
    try:
        first = json.loads(fs.cat_file(lease_path(path)))["expires"]
        deadline = time.time() + 20
        while json.loads(fs.cat_file(lease_path(path)))["expires"] == first:
            assert time.time() < deadline, "the lease was never renewed"
            time.sleep(0.1)
        other: list[bool] = []
        thread = threading.Thread(target=lambda: other.append(S3Lease(fs, path).try_acquire()))
        thread.start()
        thread.join(60)
        assert other == [False]  # renewed: still not free for anyone else
    finally:
        lease.release()
    assert not lease.lost


def test_a_holder_never_deletes_its_successors_lease(s3_bucket: str) -> None:
    fs = _fs()
    path = _lease_key(s3_bucket, "t.parquet")
    first = S3Lease(fs, path, seconds=60)
    first.acquire()
    first._stop.set()  # it stalls: no more renewals
    fs.pipe_file(lease_path(path), json.dumps(  # a successor took it over meanwhile
        {"pid": 99, "host": "successor", "since": time.time(),
         "expires": time.time() + 60}).encode())
    first.release()
    assert json.loads(fs.cat_file(lease_path(path)))["host"] == "successor"


_CHILD = """
import os, sys, time
import pandas as pd
from prefect_ds import checkpoint
location, markers = sys.argv[1], sys.argv[2]

@checkpoint(location)
def compute():
    open(os.path.join(markers, str(os.getpid())), "w").close()
    if os.environ.get("DIE_WHILE_COMPUTING"):
        os.kill(os.getpid(), 9)
    time.sleep(1.0)
    return pd.DataFrame({"v": [1, 2, 3]})

print(compute()["v"].sum())
"""


def _run_children(n: int, location: str, markers: Path, env: dict[str, str]
                  ) -> list[subprocess.Popen[str]]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    child_env = {**os.environ, **env,
                 "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return [subprocess.Popen([sys.executable, "-c", _CHILD, location, str(markers)],
                             env=child_env, stdout=subprocess.PIPE, text=True)
            for _ in range(n)]


def test_concurrent_checkpointed_calls_on_s3_compute_once(s3_bucket: str,
                                                          tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    location = f"{s3_bucket}/{uuid.uuid4().hex[:6]}/t.parquet"
    children = _run_children(4, location, markers, {})
    outputs = [child.communicate(timeout=180)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0] * 4
    assert outputs == ["6"] * 4
    assert len(os.listdir(markers)) == 1  # one computed, three waited and loaded
    assert not _fs().exists(lease_path(location.removeprefix("s3://")))


def test_a_killed_lease_holder_is_taken_over_after_expiry(s3_bucket: str,
                                                          tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    location = f"{s3_bucket}/{uuid.uuid4().hex[:6]}/t.parquet"
    env = {"PREFECT_DS_LEASE_SECONDS": "2"}
    (victim,) = _run_children(1, location, markers, {**env, "DIE_WHILE_COMPUTING": "1"})
    victim.communicate(timeout=120)
    assert victim.returncode == -signal.SIGKILL
    lease = lease_path(location.removeprefix("s3://"))
    assert _fs().exists(lease)  # the dead holder's lease is still there...
    (heir,) = _run_children(1, location, markers, env)
    out, _ = heir.communicate(timeout=120)
    assert heir.returncode == 0 and out.strip() == "6"  # ...and was taken over
    assert len(os.listdir(markers)) == 2


def test_lease_names_are_hidden_siblings() -> None:
    assert lease_path("bucket/dir/t.parquet") == f"bucket/dir/.t.parquet{LEASE_MARKER}"
