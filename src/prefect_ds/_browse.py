"""The target browser behind ``prefect-ds ls`` and ``prefect-ds rm``.

A location template such as ``data/{region}_{year}.parquet`` names a family of targets.
:func:`find_targets` lists the members that exist and parses each one's argument values
back out of its name: the template becomes a glob (every field ``*``) to list candidates
and a regular expression (every field a named group of the characters a rendered value
may hold, see :mod:`prefect_ds._template`) to match them. File formats are listed through
fsspec (local paths, ``s3://``, ``memory://``...); other formats through their optional
``list_locations`` capability (the SQL format lists tables with SQLAlchemy's inspector).
Hidden temporaries and sidecars never match, since the template's own suffix anchors the
expression.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import _capabilities
from ._capabilities import TargetInfo
from ._errors import TemplateError
from ._files import FileFormat, filesystem, is_local
from ._fingerprint import METADATA_KEY, Fingerprint
from ._format import Format
from ._template import LocationTemplate

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


def patterns(template: str) -> tuple[str, re.Pattern[str], list[str]]:
    """The glob, the regular expression and the field names of ``template``."""
    LocationTemplate(template)  # validates: syntax, no positional fields
    glob: list[str] = []
    regex: list[str] = []
    names: list[str] = []
    groups: dict[str, str] = {}
    for literal, field, _, _ in string.Formatter().parse(template):
        glob.append(_GLOB_SPECIAL.sub(r"[\1]", literal))
        regex.append(re.escape(literal))
        if field is None:
            continue
        glob.append("*")
        if field in groups:
            regex.append(f"(?P={groups[field]})")
            continue
        group = f"f{len(groups)}"
        groups[field] = group
        names.append(field)
        regex.append(f"(?P<{group}>{_VALUE})")
    return "".join(glob), re.compile("".join(regex) + r"\Z"), names


def parse_values(regex: re.Pattern[str], fields: list[str], location: str) -> dict[str, str] | None:
    match = regex.fullmatch(location)
    if match is None:
        return None
    return {field: match[f"f{i}"] for i, field in enumerate(fields)}


def _candidates(fmt: Format, template: str, glob: str) -> list[str]:
    """Stored locations that may belong to ``template`` (matched exactly afterwards)."""
    if isinstance(fmt, FileFormat):
        path_part, _, fragment = template.partition("#")
        if "{" in fragment:
            raise TemplateError(
                f"cannot list {template!r}: the part after '#' varies, and prefect-ds lists "
                f"files, not the keys inside them; fix the key in the template"
            )
        glob_path = glob.partition("#")[0]
        fs, path = filesystem(glob_path, **fmt.storage_options)
        found = sorted(str(p) for p in fs.glob(path))
        suffix = f"#{fragment}" if fragment else ""
        if is_local(fs):
            absolute = os.path.isabs(os.path.expanduser(path_part)) or path_part.startswith(
                "file://")
            if not absolute:
                found = [os.path.relpath(p) for p in found]
            return [p.replace(os.sep, "/") + suffix for p in found]
        return [fs.unstrip_protocol(p) + suffix for p in found]
    lister = getattr(fmt, "list_locations", None)
    if not callable(lister):
        raise TypeError(
            f"format {fmt.name!r} cannot list its targets: it is not a file format and has "
            f"no list_locations(location) (see prefect_ds._capabilities.SupportsListing)"
        )
    return [str(loc) for loc in lister(glob)]


def find_targets(fmt: Format, template: str,
                 where: Mapping[str, str] | None = None) -> list[Target]:
    """Every stored target of ``template`` whose parsed values match ``where``."""
    glob, regex, fields = patterns(template)
    unknown = sorted(set(where or {}) - set(fields))
    if unknown:
        raise TemplateError(
            f"--where names {', '.join(unknown)}, but template {template!r} has the fields "
            f"{', '.join(fields) or '(none)'}"
        )
    targets = []
    for location in _candidates(fmt, template, glob):
        values = parse_values(regex, fields, location)
        if values is None or any(values[k] != v for k, v in (where or {}).items()):
            continue
        targets.append(_describe(fmt, location, values))
    return targets


def _describe(fmt: Format, location: str, values: Mapping[str, str]) -> Target:
    try:
        info = _capabilities.info(fmt, location)
        stored = Fingerprint.decode(_capabilities.read(fmt, location).get(METADATA_KEY))
    except Exception as exc:  # a damaged target is still listed, with what went wrong
        return Target(location, values, TargetInfo(), None, f"{type(exc).__name__}: {exc}")
    return Target(location, values, info, stored)


def delete_targets(fmt: Format, targets: Iterable[Target]) -> list[str]:
    """Delete each target (with its fingerprint sidecar, if any); return the locations."""
    done = []
    for target in targets:
        _capabilities.delete(fmt, target.location)
        done.append(target.location)
    return done
