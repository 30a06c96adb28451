"""A lock for a target on S3: a lease object taken with an exclusive write.

S3 has no locks, but it has conditional writes: a PUT with ``If-None-Match: *`` creates
an object only if none exists (s3fs ``mode="create"``), and a PUT or DELETE with
``If-Match: <ETag>`` succeeds only if the object is still the one that was read. A lease
is the hidden object ``.name.prefect-ds-lease`` beside the target, holding who took it
and until when (``expires``, epoch seconds):

* **take** - create it exclusively. Exactly one of many concurrent writers succeeds.
* **wait** - anyone else reads it, logs the holder and polls until it is gone.
* **renew** - while held, a thread rewrites it every third of its lifetime with
  ``If-Match`` of the holder's last ETag, pushing ``expires`` on.
* **take over** - a lease whose ``expires`` has passed (its holder died or lost its
  network), or one held by a process of this host that no longer runs, is replaced with
  ``If-Match`` of the ETag just read: of many processes trying at once, one wins.
* **release** - delete it with ``If-Match`` of the holder's ETag, so a holder that lost
  its lease never removes a successor's.

A holder that stalls past its lease (no renewal for a whole lifetime) may be overtaken;
the renewal thread notices and logs it. The lifetime is ``PREFECT_DS_LEASE_SECONDS``
(default 60 s): a crashed holder delays the others by at most that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import fsspec.asyn

from prefect_ds._errors import TargetLockTimeout
from prefect_ds._storage.locks import WaitCallback, is_held_here, log_wait, mark_held

LEASE_MARKER = ".prefect-ds-lease"
DEFAULT_SECONDS = 60.0
_POLL_SECONDS = 0.2
_CONFIRM_SECONDS = 0.05
logger = logging.getLogger("prefect_ds.locks")


def lease_seconds() -> float:
    """The lease lifetime: ``PREFECT_DS_LEASE_SECONDS`` or 60 s."""
    try:
        return max(1.0, float(os.environ.get("PREFECT_DS_LEASE_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def lease_path(path: str) -> str:
    """The lease object beside ``path`` (bucket/key, no scheme)."""
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}{LEASE_MARKER}")


def supports_leases(fs: Any) -> bool:
    """Whether ``fs`` is S3 (s3fs), which honours ``If-None-Match`` and ``If-Match``."""
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "s3" in protocol and hasattr(fs, "call_s3")


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None) or getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class S3Lease(AbstractContextManager[None], AbstractAsyncContextManager[None]):
    """An exclusive lease on the S3 object ``path`` (see the module doc)."""

    def __init__(self, fs: Any, path: str, timeout: float | None = None,
                 on_wait: WaitCallback | None = None, seconds: float | None = None) -> None:
        self.fs = fs
        self.path = path
        self.timeout = timeout
        self.on_wait = on_wait
        self.seconds = seconds or lease_seconds()
        self.lease = lease_path(path)
        self.bucket, self.key = path.split("/", 1)[0], lease_path(path).split("/", 1)[1]
        self._key = f"s3://{self.lease}"
        self._token = uuid.uuid4().hex
        self._etag: str | None = None
        self._reentered = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False
        self._holder: dict[str, Any] = {}

    # -- the lease document

    def _body(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "token": self._token, "since": time.time(),
                           "expires": time.time() + self.seconds}).encode()

    def _put(self, **condition: str) -> str:
        out = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key,
                              Body=self._body(), **condition)
        return str(out["ETag"])

    def _read(self) -> tuple[dict[str, Any], str] | None:
        try:
            out, body = fsspec.asyn.sync(self.fs.loop, _get_object, self.fs, self.bucket,
                                         self.key)
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError(doc)
        except ValueError:
            doc = {}  # garbled: treat as expired once its object is old enough
            doc["expires"] = out["LastModified"].timestamp() + self.seconds
        return doc, str(out["ETag"])

    # -- taking and giving back

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired right now; never waits."""
        if is_held_here(self._key):
            self._reentered = True
            return True
        try:
            self._etag = self._put(IfNoneMatch="*")
        except FileExistsError:
            current = self._read()
            if current is None:
                return False  # released in between: the next try creates it
            doc, etag = current
            if not self._expired(doc):
                self._holder = doc
                return False
            try:
                self._etag = self._put(IfMatch=etag)
            except OSError as exc:
                if _precondition_failed(exc) or isinstance(exc, FileNotFoundError):
                    return False  # someone else took it over first
                raise
            if not self._confirmed():
                return False
            logger.warning("took over the expired lease on s3://%s from %s", self.path,
                           _describe(doc))
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        else:
            if not self._confirmed():
                return False
        mark_held(self._key, True)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, daemon=True,
                                         name=f"prefect-ds lease {self.path}")
        self._renewer.start()
        return True

    def _confirmed(self) -> bool:
        """Read the lease back: it must hold this holder's token.

        S3 checks a condition and stores the object atomically; a store that checks and
        stores in two steps (moto's server does) can let two conditional writes through
        at once. The later of the two is what stays, so reading back a moment later
        leaves exactly one holder either way.
        """
        time.sleep(_CONFIRM_SECONDS)
        current = self._read()
        if current is None or current[0].get("token") != self._token:
            self._etag = None
            return False
        self._etag = current[1]
        return True

    def _expired(self, doc: dict[str, Any]) -> bool:
        try:
            if float(doc["expires"]) < time.time():
                return True
        except (KeyError, TypeError, ValueError):
            return True
        if doc.get("host") == socket.gethostname():
            with contextlib.suppress(TypeError, ValueError):
                return not _alive(int(doc["pid"]))
        return False

    def acquire(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._holder = {}
        reported = False
        while not self.try_acquire():
            if not reported and self._holder:
                (self.on_wait or log_wait)(f"s3://{self.path}", _describe(self._holder))
                reported = True
            if deadline is not None and time.monotonic() >= deadline:
                raise TargetLockTimeout(
                    f"{_describe(self._holder)} held the lease s3://{self.lease} for longer "
                    f"than the timeout ({timeout} s) while rendering the same target. Wait "
                    f"for it, raise lock_timeout, or delete the lease object if its holder "
                    f"is gone (it expires {self.seconds:g} s after its last renewal)."
                )
            time.sleep(_POLL_SECONDS)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            etag = self._etag
            if etag is None:
                return
            try:
                self._etag = self._put(IfMatch=etag)
            except OSError as exc:
                if _precondition_failed(exc) or isinstance(exc, FileNotFoundError):
                    self.lost = True
                    logger.warning("lost the lease on s3://%s: another process took it "
                                   "over after it expired", self.path)
                    return
                logger.warning("could not renew the lease on s3://%s: %s", self.path, exc)

    def release(self) -> None:
        if self._reentered:
            self._reentered = False
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        etag, self._etag = self._etag, None
        mark_held(self._key, False)
        if etag is None or self.lost:
            return
        with contextlib.suppress(OSError):
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=etag)

    def __enter__(self) -> None:
        self.acquire(self.timeout)

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> None:
        """Wait in a worker thread; mark the lease held in the caller's context too."""
        await asyncio.to_thread(self.acquire, self.timeout)
        mark_held(self._key, True)

    async def __aexit__(self, *exc: object) -> None:
        mark_held(self._key, False)
        await asyncio.to_thread(self.release)


async def _get_object(fs: Any, bucket: str, key: str) -> tuple[dict[str, Any], bytes]:
    """One GET: the object's body together with its ETag (s3fs's client is async)."""
    out = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    async with out["Body"] as stream:
        body = await stream.read()
    return out, body


def _describe(doc: dict[str, Any]) -> str:
    try:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(doc["since"])))
        return f"pid {int(doc['pid'])} on host {doc['host']} since {since}"
    except (KeyError, TypeError, ValueError):
        return "an unknown holder"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
