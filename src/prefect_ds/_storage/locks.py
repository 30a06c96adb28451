"""One writer per target across processes and machines.

Two flow runs (or two Dask workers) that render the same target at the same moment must
not leave a torn result. Atomic replacement already guarantees every *file* is whole;
what it cannot guarantee is that a data file and its sidecar come from the same writer,
nor that the work is done once. So a checkpointed call renders its target under
:func:`target_lock`:

``with target_lock(format, location): exists? -> load : compute -> write``

The loser waits for the winner, then finds the target and loads it: the work is done once.

Where the lock lives depends on where the target lives:

* **Local or network (NFS) file systems** - an exclusive ``flock`` on a hidden lock file
  beside the data file (``.name.prefect-ds-lock``). The kernel (or the NFS lock manager)
  drops it when its holder dies, so a crash never leaves a stale lock; the holder removes
  the file on release, and a waiter that locked a removed file retries on the new one.
* **Formats that bring their own lock** - any format with a ``lock(location)`` method
  returning a context manager (for example a database advisory lock) uses it.
* **Object stores (S3, GCS, ...)** - no lock: last writer wins. Every object is uploaded
  whole by one PUT (see :func:`prefect_ds._storage.files.staged`), so a reader sees the previous
  object or the new one, never a part. Two concurrent renders both compute and the later
  upload replaces the earlier one with an identical result; a checkpointed task must
  therefore be a deterministic function of the arguments its template names (which is
  what checkpointing assumes anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager

from prefect_ds._errors import TargetLockTimeout

LOCK_MARKER = ".prefect-ds-lock"
_POLL_SECONDS = 0.05

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replacement only
    fcntl = None  # type: ignore[assignment]


def lock_path(path: str) -> str:
    """The hidden lock file beside the local file ``path``."""
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}{LOCK_MARKER}")


class FileLock(AbstractContextManager[None], AbstractAsyncContextManager[None]):
    """An exclusive lock for the local (or NFS) file ``path``, held through a lock file.

    :meth:`acquire` waits for the current holder; with a ``timeout`` (seconds) it gives
    up with :class:`~prefect_ds.TargetLockTimeout`. Threads of one process exclude each
    other too (each acquisition opens its own file description).
    """

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.lock_file = lock_path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now; never waits."""
        return self._acquire(blocking=False)

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting for the holder at most ``timeout`` seconds."""
        if timeout is None:
            self._acquire(blocking=True)
            return
        deadline = time.monotonic() + timeout
        while not self._acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise self.timeout_error()
            time.sleep(_POLL_SECONDS)

    def release(self) -> None:
        """Remove the lock file and let the next waiter in."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Remove while still holding the lock, so nobody can lock the old inode later.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_file)
        os.close(fd)

    def __enter__(self) -> None:
        self.acquire(self.timeout)

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> None:
        """Wait by polling, so cancelling the wait is safe and never blocks the loop."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                raise self.timeout_error()
            await asyncio.sleep(_POLL_SECONDS)

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def timeout_error(self) -> TargetLockTimeout:
        return TargetLockTimeout(
            f"another process held the lock {self.lock_file!r} for longer than the timeout "
            f"while rendering the same target. Wait for it, raise the timeout, or remove "
            f"the lock file if no process is using it."
        )

    def _acquire(self, blocking: bool) -> bool:
        if self._fd is not None:
            raise RuntimeError(f"the lock for {self.path!r} is already held by this object")
        if fcntl is None:  # pragma: no cover - no advisory locks on this platform
            self._fd = os.open(os.devnull, os.O_RDONLY)
            return True
        os.makedirs(os.path.dirname(self.lock_file) or ".", exist_ok=True)
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, flags)
                held = os.fstat(fd)
                current = os.stat(self.lock_file)
            except BlockingIOError:
                os.close(fd)
                return False
            except FileNotFoundError:  # the holder removed it between our open and lock
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                self._fd = fd
                return True
            os.close(fd)  # we locked a file its holder has since removed: take the new one
