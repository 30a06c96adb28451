"""Opt-in staleness checks for checkpoints: ``invalidate_on=`` and ``strict=``.

Without ``invalidate_on`` a checkpoint is pure existence (the target is there: load it),
and nothing here runs. With it, each call computes a fingerprint of the requested parts
(see :mod:`prefect_ds._checkpoint.fingerprint`), compares it with the one stored with the target,
and treats the target as stale when a part differs: the task recomputes, the run logger
says which parts changed, and the new frame replaces the target atomically with the new
fingerprint. A target that carries no fingerprint (written by someone else, or before
``invalidate_on`` was added) is fresh unless ``strict=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prefect_ds._checkpoint.fingerprint import METADATA_KEY, Fingerprint, Part, check_parts, compute
from prefect_ds._format import Format, SupportsMetadata, stored_metadata
from prefect_ds._redact import redact


class Staleness:
    """The staleness policy of one checkpointed function."""

    def __init__(self, invalidate_on: Iterable[Part], strict: bool, fmt: Format,
                 fn: Callable[..., Any], owner: str) -> None:
        self.parts = check_parts(invalidate_on, owner)
        self.strict = bool(strict)
        self.fmt = fmt
        self.fn = fn
        self.owner = owner
        self._code: dict[str, str] = {}
        if self.strict and not self.parts:
            raise ValueError(
                f"{owner}: strict=True makes a target without a fingerprint stale, which "
                f"only means something with invalidate_on=('code', 'inputs', ...); add "
                f"invalidate_on or drop strict"
            )
        if self.parts and not isinstance(fmt, SupportsMetadata):
            raise TypeError(
                f"{owner}: format {fmt.name!r} ({type(fmt).__module__}."
                f"{type(fmt).__qualname__}) cannot store a fingerprint with its targets: it "
                f"is not a prefect_ds.FileFormat and has no read_metadata(location). "
                f"Implement write(df, location, *, metadata=None) and read_metadata(location) "
                f"on it (see prefect_ds.SupportsMetadata), or leave invalidate_on empty"
            )

    @property
    def active(self) -> bool:
        return bool(self.parts)

    def fingerprint_of(self, arguments: Mapping[str, Any]) -> Fingerprint:
        """This call's fingerprint (the code digest is computed once per function)."""
        return compute(self.parts, self.fn, arguments, self.owner, self._code)

    def stored(self, location: str) -> Fingerprint | None:
        """The fingerprint stored with the target, or None if it carries none."""
        return Fingerprint.decode(stored_metadata(self.fmt, location).get(METADATA_KEY))

    def stale_parts(self, location: str,
                    wanted: Callable[[], Fingerprint]) -> list[str] | None:
        """Why the existing target is stale (``[]`` for a strict miss), or None if fresh.

        ``wanted`` computes this call's fingerprint; it runs only when the target carries
        one to compare with.
        """
        stored = self.stored(location)
        if stored is None:
            return [] if self.strict else None
        return wanted().changed(stored) or None

    def log_stale(self, log: logging.Logger | logging.LoggerAdapter[logging.Logger],
                  location: str, changed: list[str]) -> None:
        if changed:
            log.info("checkpoint %s is stale (%s changed); recomputing it",
                     redact(location), ", ".join(changed))
        else:
            log.info("checkpoint %s has no fingerprint and strict=True; recomputing it",
                     redact(location))

    def metadata(self, fingerprint: Fingerprint) -> dict[str, str]:
        return {METADATA_KEY: fingerprint.encode()}
