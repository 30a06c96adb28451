"""Flushing to stable storage, so a commit reported as done survives a power loss.

A rename is durable only once the renamed file's data and the directory entry are on
disk: :func:`fsync_path` flushes either, and :func:`makedirs` reports the directories it
created so their parents can be flushed as well. ``PREFECT_DS_DURABLE=0`` turns the
flushes off (:func:`durable`).
"""

from __future__ import annotations

import os

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def durable() -> bool:
    """Whether commits fsync (``PREFECT_DS_DURABLE`` unset, or anything but 0/false/no/off)."""
    return os.environ.get("PREFECT_DS_DURABLE", "1").strip().lower() not in ("0", "false",
                                                                               "no", "off")


def fsync_path(path: str, *, directory: bool = False) -> None:
    """Flush ``path`` (a file, or a directory's entries) to stable storage."""
    flags = os.O_RDONLY | _CLOEXEC | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path or ".", flags)
    except OSError:
        if directory:  # some platforms and file systems cannot open directories
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def makedirs(directory: str) -> list[str]:
    """Create ``directory`` and its missing parents; the ones created, outermost first."""
    missing: list[str] = []
    current = os.path.abspath(directory or ".")
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    os.makedirs(directory or ".", exist_ok=True)
    return missing[::-1]
