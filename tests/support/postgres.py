"""A real, throw-away PostgreSQL server for tests and benchmarks.

``PostgresServer`` runs Debian's server binaries (``initdb``, ``pg_ctl``) into a private
temporary directory, listening on 127.0.0.1 on a free port with a private unix socket
directory and ``trust`` authentication. PostgreSQL refuses to run as root, and tests and
CI run as root, so when we are root every server command runs as the ``postgres`` user
(``runuser -u postgres --``) in a directory that user owns.

Usage::

    with PostgresServer() as pg:
        url = pg.url()          # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType

SUPERUSER = "postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> str | None:
    """The directory holding ``pg_ctl``: Debian's newest version, else the PATH, else None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if candidates:
        return os.path.dirname(candidates[-1])
    found = shutil.which("pg_ctl")
    return os.path.dirname(found) if found else None


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server failed to start."""


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, started and stopped by us."""

    def __init__(self, bindir: str | None = None, port: int | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries (pg_ctl, initdb) not found; install Debian's "
                "'postgresql' package (scripts/ensure-postgres does it as root)"
            )
        self.bindir = found
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.root = ""
        self._started = False
        self._as_postgres = os.geteuid() == 0

    # -- paths -------------------------------------------------------------------------
    @property
    def datadir(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def socketdir(self) -> str:
        return os.path.join(self.root, "sock")

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr or done.stdout}"
            )

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> PostgresServer:
        """initdb + pg_ctl start; returns when the server accepts TCP connections."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # never leave a half-started server or its directory behind
            raise

    def _start(self, timeout: float) -> PostgresServer:
        self.root = tempfile.mkdtemp(prefix="prefect-ds-pg-")
        os.mkdir(self.socketdir)
        if self._as_postgres:
            entry = pwd.getpwnam(SUPERUSER)
            for path in (self.root, self.socketdir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        self._run(
            "initdb", "-D", self.datadir, "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--no-sync", "--locale=C",
        )
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={self.host}",
                f"-c unix_socket_directories={self.socketdir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=50",
                "-c shared_buffers=128MB",
            ]
        )
        self._run(
            "pg_ctl", "-D", self.datadir, "-l", os.path.join(self.root, "server.log"),
            "-o", options, "-w", "-t", str(int(timeout)), "start",
            timeout=timeout + 30,
        )
        self._started = True
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"PostgreSQL did not accept connections on {self.host}:{self.port}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self._started:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop")
            self._started = False
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients -----------------------------------------------------------------------
    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """A SQLAlchemy URL for ``database`` (``driver=""`` gives a plain libpq URI)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a plain identifier) and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.url(driver=""), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server for the duration of the block."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
