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
  whole by one PUT (see :func:`prefect_ds._files.staged`), so a reader sees the previous
  object or the new one, never a part. Two concurrent renders both compute and the later
  upload replaces the earlier one with an identical result; a checkpointed task must
  therefore be a deterministic function of the arguments its template names (which is
  what checkpointing assumes anyway).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from ._errors import TargetLockTimeout
from ._files import FileFormat, filesystem, is_local
from ._format import Format

LOCK_MARKER = ".prefect-ds-lock"
_POLL_SECONDS = 0.05

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replacement only
    fcntl = None  # type: ignore[assignment]


@runtime_checkable
class SupportsLock(Protocol):
    """A format that excludes concurrent writers of one location itself."""

    def lock(self, location: str) -> AbstractContextManager[None]:
        """Hold an exclusive, cross-process lock on ``location`` while the block runs."""


def lock_path(path: str) -> str:
    """The hidden lock file beside the local file ``path``."""
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}{LOCK_MARKER}")


@contextlib.contextmanager
def file_lock(path: str, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock for the local (or NFS) file ``path`` while the block runs.

    Waits for the current holder; ``timeout`` (seconds) bounds the wait and then raises
    :class:`~prefect_ds.TargetLockTimeout`. Threads of one process exclude each other too.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock = lock_path(path)
    os.makedirs(os.path.dirname(lock) or ".", exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _acquire(fd, lock, deadline)
            held = os.fstat(fd)
            current = os.stat(lock)
        except FileNotFoundError:  # the holder removed it between our open and lock
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            break
        os.close(fd)  # we locked a file its holder has since removed: take the new one
    try:
        yield
    finally:
        # Remove while still holding the lock, so nobody can lock the old inode later.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _acquire(fd: int, lock: str, deadline: float | None) -> None:
    if deadline is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TargetLockTimeout(
                    f"another process has held the lock {lock!r} for longer than the "
                    f"timeout while rendering the same target. Wait for it, raise the "
                    f"timeout, or remove the lock file if no process is using it."
                ) from None
            time.sleep(_POLL_SECONDS)


def target_lock(
    format: Format, location: str, timeout: float | None = None
) -> AbstractContextManager[None]:
    """The lock that keeps other processes from rendering ``location`` at the same time.

    See the module docstring for what each kind of storage gets. ``timeout`` bounds the
    wait for a local lock file; ``None`` waits as long as the holder computes.
    """
    if isinstance(format, SupportsLock):
        return format.lock(location)
    if isinstance(format, FileFormat):
        fs, path = filesystem(format.data_location(location), **format.storage_options)
        if is_local(fs):
            return file_lock(path, timeout)
    return contextlib.nullcontext()
