"""The lock a checkpointed call holds around exists? load : compute + write.

The format decides what the lock is (:class:`~prefect_ds.SupportsLock`): a lock file
beside a local file, a lease object beside an S3 object, a database lock, or none where
the storage cannot lock. A wait for another holder is logged to the run's log, naming
the holder (pid, host, since when); ``timeout`` bounds it with
:class:`~prefect_ds.TargetLockTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager

from prefect_ds._checkpoint.runs import run_logger
from prefect_ds._format import Format, SupportsLock
from prefect_ds._storage.locks import wait_reporter


def _report_wait(target: str, holder: str) -> None:
    run_logger().warning("waiting for the lock on %s, held by %s", target, holder)


def _format_lock(fmt: Format, location: str,
                 timeout: float | None) -> AbstractContextManager[None]:
    if isinstance(fmt, SupportsLock):  # a lock(location) without timeout works unbounded
        return fmt.lock(location) if timeout is None else fmt.lock(location, timeout)
    return contextlib.nullcontext()


@contextlib.contextmanager
def target_lock(fmt: Format, location: str, timeout: float | None = None) -> Iterator[None]:
    """The format's lock on ``location`` (none when it has no lock)."""
    token = wait_reporter.set(_report_wait)
    try:
        with _format_lock(fmt, location, timeout):
            yield
    finally:
        wait_reporter.reset(token)


@contextlib.asynccontextmanager
async def async_target_lock(fmt: Format, location: str,
                            timeout: float | None = None) -> AsyncIterator[None]:
    """:func:`target_lock` for ``async def`` tasks; never blocks the event loop."""
    lock = _format_lock(fmt, location, timeout)
    token = wait_reporter.set(_report_wait)
    try:
        if isinstance(lock, AbstractAsyncContextManager):
            async with lock:
                yield
            return
        await asyncio.to_thread(lock.__enter__)
        try:
            yield
        finally:
            await asyncio.to_thread(lock.__exit__, None, None, None)
    finally:
        wait_reporter.reset(token)
