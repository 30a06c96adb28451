"""The target browser behind ``prefect-ds ls`` and ``prefect-ds rm``.

A location template such as ``data/{region}_{year}.parquet`` names a family of targets.
:func:`find_targets` lists the members that exist and parses each one's argument values
back out of its name: the template becomes a glob (every field ``*``) to list candidates
and a regular expression (every field a named group of the characters a rendered value
may hold, see :mod:`prefect_ds._locations`) to match them. Every format lists through its
``list_locations`` capability: file formats glob through fsspec (local paths, ``s3://``,
``memory://``...), the SQL format asks SQLAlchemy's inspector.
Hidden temporaries and sidecars never match, since the template's own suffix anchors the
expression.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prefect_ds._checkpoint.fingerprint import METADATA_KEY, Fingerprint
from prefect_ds._errors import TemplateError
from prefect_ds._format import (
    Format,
    SupportsListing,
    TargetInfo,
    stored_info,
    stored_metadata,
)
from prefect_ds._locations import LocationTemplate

_VALUE = r"[\w\-.=+,@]+?"
_GLOB_SPECIAL = re.compile(r"([*?\[\]])")


@dataclass(frozen=True)
class Target:
    """One stored member of a template's family."""

    location: str
    values: Mapping[str, str]
    info: TargetInfo
    fingerprint: Fingerprint | None  # what is stored with it, if anything
    problem: str | None = None  # why info or fingerprint could not be read


def _tokenised(template: str) -> tuple[str, dict[str, str]]:
    """``template`` with each field replaced by a token (one per field name)."""
    LocationTemplate(template)  # validates: syntax, no positional fields
    out: list[str] = []
    tokens: dict[str, str] = {}
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            token = tokens.setdefault(field, f"PREFECTDSFIELD{len(tokens)}X")
            out.append(token)
    return "".join(out), tokens


def _pattern(text: str, tokens: Mapping[str, str]) -> tuple[str, re.Pattern[str]]:
    """The glob and the regular expression of a tokenised text."""
    glob = _GLOB_SPECIAL.sub(r"[\1]", text)
    regex = re.escape(text)
    for i, token in enumerate(tokens.values()):
        glob = glob.replace(token, "*")
        group = f"(?P<f{i}>{_VALUE})"
        regex = regex.replace(re.escape(token), group, 1).replace(re.escape(token), f"(?P=f{i})")
    return glob, re.compile(regex + r"\Z")


def patterns(template: str) -> tuple[str, re.Pattern[str], list[str]]:
    """The glob, the regular expression and the field names of ``template``."""
    text, tokens = _tokenised(template)
    glob, regex = _pattern(text, tokens)
    return glob, regex, list(tokens)


def parse_values(regex: re.Pattern[str], fields: list[str], location: str) -> dict[str, str] | None:
    match = regex.fullmatch(location)
    if match is None:
        return None
    return {field: match[f"f{i}"] for i, field in enumerate(fields)}


def _matches(fmt: Format, template: str) -> Iterable[tuple[str, dict[str, str]]]:
    """(location, values) of every stored target of ``template``."""
    text, tokens = _tokenised(template)
    fields = list(tokens)
    if not isinstance(fmt, SupportsListing):
        raise TypeError(
            f"format {fmt.name!r} cannot list its targets: it has no "
            f"list_locations(pattern) (see prefect_ds.SupportsListing)"
        )
    glob, regex = _pattern(text, tokens)
    for location in fmt.list_locations(glob):
        values = parse_values(regex, fields, str(location))
        if values is not None:
            yield str(location), values


def find_targets(fmt: Format, template: str,
                 where: Mapping[str, str] | None = None) -> list[Target]:
    """Every stored target of ``template`` whose parsed values match ``where``."""
    fields = list(_tokenised(template)[1])
    unknown = sorted(set(where or {}) - set(fields))
    if unknown:
        raise TemplateError(
            f"--where names {', '.join(unknown)}, but template {redact(template)!r} has the fields "
            f"{', '.join(fields) or '(none)'}"
        )
    targets = []
    for location, values in _matches(fmt, template):
        if any(values[k] != v for k, v in (where or {}).items()):
            continue
        targets.append(_describe(fmt, location, values))
    return targets


def _describe(fmt: Format, location: str, values: Mapping[str, str]) -> Target:
    try:
        info = stored_info(fmt, location)
        stored = Fingerprint.decode(stored_metadata(fmt, location).get(METADATA_KEY))
    except Exception as exc:  # a damaged target is still listed, with what went wrong
        return Target(location, values, TargetInfo(), None, f"{type(exc).__name__}: {exc}")
    return Target(location, values, info, stored)


def delete_targets(fmt: Format, targets: Iterable[Target]) -> list[str]:
    """Delete each target (with its fingerprint sidecar, if any); return the locations."""
    done = []
    for target in targets:
        fmt.delete(target.location)
        done.append(target.location)
    return done
