"""One writer per target across processes and machines.

Two flow runs (or two Dask workers) that render the same target at the same moment must
not leave a torn result. Atomic replacement already guarantees every *file* is whole;
what it cannot guarantee is that a data file and its sidecar come from the same writer,
nor that the work is done once. So a checkpointed call renders its target under
:func:`target_lock`, and so does ``PandasResultHandler.write``:

``with target_lock(format, location): exists? -> load : compute -> write``

The loser waits for the winner, then finds the target and loads it: the work is done once.

Where the lock lives depends on where the target lives:

* **Local or network (NFS) file systems** - an exclusive ``flock`` on a hidden lock file
  beside the data file (``.name.prefect-ds-lock``). The kernel (or the NFS lock manager)
  drops it when its holder dies, so a crash never leaves a stale lock; the holder removes
  the file on release, and a waiter that locked a removed file retries on the new one.
  The lock file is opened without following symbolic links and must be a regular file,
  so a link planted at its name never creates or truncates a file elsewhere. Its holder
  writes its pid, host and start time into it, which a waiter logs. In a directory this
  process cannot write (a read-only mount), an existing target is read without a lock:
  nobody can replace it there either.
* **Formats that bring their own lock** - any format with a ``lock(location)`` method
  returning a context manager (for example a database advisory lock) uses it.
* **S3** - a lease object beside the target (:mod:`prefect_ds._storage.lease`), created
  with an exclusive write (``If-None-Match: *``), renewed while held, taken over with a
  conditional write once it has expired.
* **Other object stores** - no lock: every object is uploaded whole by one PUT, so the
  last writer wins with a complete result.

The lock a commit takes (:func:`commit_lock`) is re-entrant within one execution context
(a thread, or an ``asyncio`` task and the threads it hands work to with
``asyncio.to_thread``): a write made while the checkpoint (or ``PandasResultHandler``)
holds the target's lock commits under that same lock. Other acquisitions exclude each
other even within one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import errno
import json
import logging
import os
import posixpath
import socket
import stat as stat_module
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager

from prefect_ds._errors import TargetLockTimeout, UnsafeLocationError
from prefect_ds._storage.durability import durable, fsync_path, makedirs

LOCK_MARKER = ".prefect-ds-lock"
_POLL_SECONDS = 0.05
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
logger = logging.getLogger("prefect_ds.locks")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replacement only
    fcntl = None  # type: ignore[assignment]

# The locks held in the current execution context, by lock file, with their holder: the
# thread, and the asyncio task when one took it (see the module doc).
_held: contextvars.ContextVar[dict[str, tuple[int, int | None]]] = contextvars.ContextVar(
    "prefect_ds_held_locks")

WaitCallback = Callable[[str, str], None]


def lock_path(path: str) -> str:
    """The hidden lock file beside the local file ``path``."""
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}{LOCK_MARKER}")


def holder_record() -> str:
    """What a holder writes into its lock: who it is and since when."""
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


def describe_holder(raw: bytes | str | None) -> str:
    """``pid 12 on host h since 2026-...`` from a holder record; ``an unknown holder``."""
    try:
        doc = json.loads(raw or "")
        return f"pid {int(doc['pid'])} on host {doc['host']} since {doc['since']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown holder"


# Who reports lock waits in the current context (a checkpoint sends them to its run's log).
wait_reporter: contextvars.ContextVar[WaitCallback | None] = contextvars.ContextVar(
    "prefect_ds_wait_reporter", default=None)


def log_wait(target: str, holder: str) -> None:
    """Report a lock wait: to the context's reporter, else the ``prefect_ds.locks`` log."""
    reporter = wait_reporter.get()
    if reporter is not None:
        reporter(target, holder)
        return
    logger.warning("waiting for the lock on %s, held by %s", target, holder)


def _current_task() -> int | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop runs in this thread
        return None
    return None if task is None else id(task)


def is_held_here(key: str) -> bool:
    """Whether the current execution context holds the lock named ``key``.

    The thread that took it does; an asyncio task does if it took it itself, and so do
    the worker threads it hands work to (``asyncio.to_thread`` copies its context). A
    task or thread that merely inherited the context of a holder does not.
    """
    owner = _held.get({}).get(key)
    if owner is None:
        return False
    thread, task = owner
    current = _current_task()
    if current is not None:
        return current == task
    return task is not None or thread == threading.get_ident()


def mark_held(key: str, held: bool) -> None:
    current = dict(_held.get({}))
    if held:
        current[key] = (threading.get_ident(), _current_task())
    else:
        current.pop(key, None)
    _held.set(current)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileLock(AbstractContextManager[None], AbstractAsyncContextManager[None]):
    """An exclusive lock for the local (or NFS) file ``path``, held through a lock file.

    :meth:`acquire` waits for the current holder; with a ``timeout`` (seconds) it gives
    up with :class:`~prefect_ds.TargetLockTimeout`. Threads of one process exclude each
    other too (each acquisition opens its own file description). ``on_wait`` is called
    once, with the path and a description of the holder, when the lock is busy. A
    ``reentrant`` lock is taken at once when the current execution context already
    holds the same lock (module doc).
    """

    def __init__(self, path: str, timeout: float | None = None,
                 on_wait: WaitCallback | None = None, *, reentrant: bool = False) -> None:
        self.path = path
        self.reentrant = reentrant
        self.timeout = timeout
        self.on_wait = on_wait
        self.lock_file = lock_path(path)
        self._key = os.path.abspath(self.lock_file)
        self._fd: int | None = None
        self._reentered = False
        self._lock_free = False

    @property
    def held(self) -> bool:
        return self._fd is not None or self._reentered or self._lock_free

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now; never waits."""
        return self._acquire(blocking=False)

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock, waiting for the holder at most ``timeout`` seconds."""
        if self._acquire(blocking=False):
            return
        self._report_wait()
        if timeout is None:
            self._acquire(blocking=True)
            return
        deadline = time.monotonic() + timeout
        while not self._acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise self.timeout_error(timeout)
            time.sleep(_POLL_SECONDS)

    def release(self) -> None:
        """Remove the lock file and let the next waiter in."""
        if self._reentered or self._lock_free:
            self._reentered = self._lock_free = False
            return
        fd, self._fd = self._fd, None
        if fd is None:
            return
        mark_held(self._key, False)
        # Remove while still holding the lock, so nobody can lock the old inode later.
        with contextlib.suppress(FileNotFoundError):
            if self._same_file(fd):
                os.unlink(self.lock_file)
        os.close(fd)

    def __enter__(self) -> None:
        self.acquire(self.timeout)

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> None:
        """Wait by polling, so cancelling the wait is safe and never blocks the loop."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        reported = False
        while not self.try_acquire():
            if not reported:
                self._report_wait()
                reported = True
            if deadline is not None and time.monotonic() >= deadline:
                raise self.timeout_error(self.timeout)
            await asyncio.sleep(_POLL_SECONDS)

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def holder(self) -> str:
        """Who holds the lock right now, as recorded in the lock file."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return "an unknown holder"
        try:
            return describe_holder(os.read(fd, 4096))
        finally:
            os.close(fd)

    def timeout_error(self, timeout: float | None = None) -> TargetLockTimeout:
        return TargetLockTimeout(
            f"{self.holder()} held the lock {self.lock_file!r} for longer than the "
            f"timeout ({timeout} s) while rendering the same target. Wait for it, raise "
            f"lock_timeout, or remove the lock file if no process is using it."
        )

    def _report_wait(self) -> None:
        (self.on_wait or log_wait)(self.path, self.holder())

    def _open(self) -> int | None:
        """Open (create) the lock file without following links; None: read-only place."""
        try:
            created = makedirs(os.path.dirname(self.lock_file))
            if created and durable():  # the directories outlive the lock: make them last
                for parent in dict.fromkeys(os.path.dirname(d) for d in created):
                    fsync_path(parent, directory=True)
            fd = os.open(self.lock_file,
                         os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP or os.path.islink(self.lock_file):
                raise UnsafeLocationError(
                    f"the lock file {self.lock_file!r} is a symbolic link; prefect-ds never "
                    f"follows one there (it could point anywhere). Remove the link."
                ) from None
            if exc.errno in _READ_ONLY and os.path.isfile(self.path):
                return None  # an existing target in a place nobody can write: read it as is
            raise
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeLocationError(
                f"{self.lock_file!r} is not a regular file, so it cannot be the target's "
                f"lock file; remove it."
            )
        return fd

    def _same_file(self, fd: int) -> bool:
        try:
            held, current = os.fstat(fd), os.lstat(self.lock_file)
        except FileNotFoundError:
            return False
        return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)

    def _acquire(self, blocking: bool) -> bool:
        if self.held:
            raise RuntimeError(f"the lock for {self.path!r} is already held by this object")
        if self.reentrant and is_held_here(self._key):
            self._reentered = True
            return True
        if fcntl is None:  # pragma: no cover - no advisory locks on this platform
            self._lock_free = True
            return True
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        while True:
            fd = self._open()
            if fd is None:
                logger.debug("%s cannot be written here: reading it without a lock", self.path)
                self._lock_free = True
                return True
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            if self._same_file(fd):
                self._fd = fd
                mark_held(self._key, True)
                with contextlib.suppress(OSError):
                    record = holder_record().encode()
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, record, 0)
                return True
            os.close(fd)  # we locked a file its holder has since removed: take the new one


def is_locked(path: str) -> bool:
    """Whether another holder has the lock of the local file ``path`` right now.

    Never creates anything (readers of read-only places call it); the lock this
    execution context holds itself does not count.
    """
    lock_file = lock_path(path)
    if fcntl is None or is_held_here(os.path.abspath(lock_file)):
        return False
    try:
        fd = os.open(lock_file, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def commit_lock(path: str) -> AbstractContextManager[None]:
    """The target lock of ``path`` for the few renames of a multi-file commit.

    Re-entrant, so a writer already holding the target's lock commits under it.
    """
    return FileLock(path, reentrant=True)


def read_only_error(exc: OSError) -> bool:
    """Whether ``exc`` says the place cannot be written (permissions, read-only mount)."""
    return exc.errno in _READ_ONLY
