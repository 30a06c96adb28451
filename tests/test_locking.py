"""The cross-process target lock: exclusion, timeouts, crashes, async, per-storage choice."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from prefect_ds import PandasResultHandler
from prefect_ds._checkpoint.locking import async_target_lock, target_lock
from prefect_ds._errors import TargetLockTimeout
from prefect_ds._storage.locks import FileLock, is_held_here, lock_path


def test_lock_file_sits_beside_the_target_and_goes_away(tmp_path: Any) -> None:
    target = str(tmp_path / "out" / "data.csv")
    with FileLock(target):
        assert os.listdir(tmp_path / "out") == [".data.csv.prefect-ds-lock"]
    assert os.listdir(tmp_path / "out") == []
    assert lock_path(target).endswith("/out/.data.csv.prefect-ds-lock")


def test_threads_exclude_each_other(tmp_path: Any) -> None:
    target = str(tmp_path / "t.parquet")
    first, second = FileLock(target), FileLock(target)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_waiter_gets_the_lock_after_the_holder(tmp_path: Any) -> None:
    target = str(tmp_path / "t.parquet")
    order: list[str] = []
    holder = FileLock(target)
    holder.acquire()

    def wait() -> None:
        with FileLock(target):
            order.append("waiter")

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive()  # still waiting while the lock is held
    order.append("holder done")
    holder.release()
    thread.join(30)
    assert order == ["holder done", "waiter"]


def test_timeout_names_the_lock_file(tmp_path: Any) -> None:
    target = str(tmp_path / "t.parquet")
    with FileLock(target), pytest.raises(TargetLockTimeout, match="prefect-ds-lock"):
        FileLock(target).acquire(timeout=0.2)


def test_a_waiter_within_its_timeout_gets_the_lock(tmp_path: Any) -> None:
    """The timeout counts from the call: a holder that lets go soon after the waiter
    started waiting hands the lock over, well before the timeout."""
    target = str(tmp_path / "t.parquet")
    holder = FileLock(target)
    holder.acquire()
    releaser = threading.Timer(0.05, holder.release)
    waiter = FileLock(target, on_wait=lambda *_: releaser.start())
    waiter.acquire(timeout=0.9)
    waiter.release()


def test_a_holder_whose_lock_file_was_removed_never_removes_its_successors(
        tmp_path: Any) -> None:
    """Someone removed the lock file by hand and a second holder made a new one: the
    first holder's release leaves the new file, so a third waits for the second."""
    target = str(tmp_path / "t.parquet")
    first, second = FileLock(target), FileLock(target)
    first.acquire()
    os.remove(lock_path(target))
    assert second.try_acquire()
    first.release()
    assert os.path.exists(lock_path(target))
    assert not FileLock(target).try_acquire()
    second.release()
    assert not os.path.exists(lock_path(target))


def test_a_thread_that_inherits_a_holders_context_does_not_hold_its_lock(
        tmp_path: Any) -> None:
    """Only the thread that took a lock holds it: another thread running in a copy of the
    holder's context (whatever the order of their thread idents) must wait like any."""
    target = str(tmp_path / "t.parquet")
    key = os.path.abspath(lock_path(target))
    idents: dict[str, int] = {}
    both_started = threading.Barrier(2)
    contexts: queue.Queue[contextvars.Context] = queue.Queue()
    done = threading.Event()
    seen: list[bool] = []

    def run(name: str) -> None:
        idents[name] = threading.get_ident()
        both_started.wait(30)
        if idents[name] == max(idents.values()):  # the higher ident holds
            lock = FileLock(target)
            lock.acquire()
            seen.append(is_held_here(key))
            contexts.put(contextvars.copy_context())
            done.wait(30)
            lock.release()
        else:
            seen.append(contexts.get(timeout=30).run(is_held_here, key))
            done.set()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert seen == [True, False]


def test_a_reentered_lock_is_let_go_and_can_be_taken_again(tmp_path: Any) -> None:
    """A re-entrant lock taken at once because this thread holds it is released with no
    effect on the holder, and the same object can take the lock later for real."""
    target = str(tmp_path / "t.parquet")
    outer, inner = FileLock(target), FileLock(target, reentrant=True)
    outer.acquire()
    inner.acquire(timeout=1)
    inner.release()
    assert not inner.held and outer.held
    assert not FileLock(target).try_acquire()  # still the outer holder's
    outer.release()
    inner.acquire(timeout=10)
    assert inner.held and not FileLock(target).try_acquire()
    inner.release()


class Interrupted(Exception):
    pass


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_wait_interrupted_by_a_signal_leaks_no_descriptor(tmp_path: Any) -> None:
    """A waiter whose blocking wait is interrupted (a signal handler raises) closes the
    lock file it opened: a long-lived process that is interrupted often leaks nothing."""
    target = str(tmp_path / "t.parquet")
    holder = FileLock(target)
    holder.acquire()

    def interrupt(*_: Any) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    before = len(os.listdir("/proc/self/fd"))
    waiter = FileLock(target, on_wait=lambda *_: signal.setitimer(signal.ITIMER_REAL, 0.1))
    try:
        with pytest.raises(Interrupted):
            waiter.acquire()  # no timeout: one blocking wait, which the signal interrupts
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(os.listdir("/proc/self/fd")) == before
    assert not waiter.held
    holder.release()


@contextlib.contextmanager
def held_by_other_process(target: str) -> Iterator[subprocess.Popen[str]]:
    code = (
        "import sys, time\n"
        "from prefect_ds._storage.locks import FileLock\n"
        "FileLock(sys.argv[1]).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, target], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_crashed_holder_leaves_no_stale_lock(tmp_path: Any) -> None:
    target = str(tmp_path / "t.parquet")
    with held_by_other_process(target) as proc:
        assert not FileLock(target).try_acquire()
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait()
    lock = FileLock(target)
    lock.acquire(timeout=10)  # the kernel dropped the dead holder's lock
    lock.release()


def test_async_lock_waits_without_blocking_and_can_be_cancelled(tmp_path: Any) -> None:
    handler = PandasResultHandler(str(tmp_path / "t.parquet"))
    location = handler.render()

    async def main() -> list[str]:
        events: list[str] = []
        holder = FileLock(location)
        holder.acquire()

        async def waiter() -> None:
            async with async_target_lock(handler.format, location):
                events.append("acquired")

        cancelled = asyncio.create_task(waiter())
        await asyncio.sleep(0.2)
        cancelled.cancel()  # cancelling a waiter must not leave it holding the lock later
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        second = asyncio.create_task(waiter())
        await asyncio.sleep(0.2)
        events.append("loop is free")  # the waiting did not block the event loop
        holder.release()
        await asyncio.wait_for(second, 30)
        return events

    assert asyncio.run(main()) == ["loop is free", "acquired"]
    assert FileLock(location).try_acquire()


def test_s3_gets_a_lease_other_object_stores_no_lock(s3_bucket: str) -> None:
    from prefect_ds._storage.lease import S3Lease

    handler = PandasResultHandler(f"{s3_bucket}/t.parquet")
    assert isinstance(handler.format.lock(handler.render()), S3Lease)
    memory = PandasResultHandler("memory://bucket/t.parquet")
    assert isinstance(memory.format.lock(memory.render()), contextlib.nullcontext)


def test_a_format_can_bring_its_own_lock(tmp_path: Any) -> None:
    from prefect_ds.formats.parquet import ParquetFormat

    taken: list[str] = []

    class LockingParquet(ParquetFormat):
        @contextlib.contextmanager
        def lock(self, location: str) -> Iterator[None]:
            taken.append(location)
            yield

    with target_lock(LockingParquet(), "x.parquet"):
        pass
    assert taken == ["x.parquet"]
