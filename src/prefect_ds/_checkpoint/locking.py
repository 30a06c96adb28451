"""The lock a checkpointed call holds around exists? load : compute + write.

The format decides what the lock is (:class:`~prefect_ds.SupportsLock`): a lock file
beside a local file, a database lock, or none where the storage cannot lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager

from prefect_ds._format import Format, SupportsLock


def target_lock(fmt: Format, location: str,
                timeout: float | None = None) -> AbstractContextManager[None]:
    """The format's lock on ``location`` (none when it has no lock)."""
    if isinstance(fmt, SupportsLock):  # a lock(location) without timeout works unbounded
        return fmt.lock(location) if timeout is None else fmt.lock(location, timeout)
    return contextlib.nullcontext()


@contextlib.asynccontextmanager
async def async_target_lock(fmt: Format, location: str,
                            timeout: float | None = None) -> AsyncIterator[None]:
    """:func:`target_lock` for ``async def`` tasks; never blocks the event loop."""
    lock = target_lock(fmt, location, timeout)
    if isinstance(lock, AbstractAsyncContextManager):
        async with lock:
            yield
        return
    await asyncio.to_thread(lock.__enter__)
    try:
        yield
    finally:
        await asyncio.to_thread(lock.__exit__, None, None, None)
