"""The target browser behind ``prefect-ds ls`` and ``prefect-ds rm``.

A location template such as ``data/{region}_{year}.parquet`` names a family of targets.
:func:`find_targets` lists the members that exist and parses each one's argument values
back out of its name: the template becomes a glob (every field ``*``) to list candidates
and a regular expression (every field a named group of the characters a rendered value
may hold, see :mod:`prefect_ds._locations`) to match them. Every format lists through its
``list_locations`` capability: file formats glob through fsspec (local paths, ``s3://``,
``memory://``...), the SQL format asks SQLAlchemy's inspector.
Hidden temporaries and sidecars never match, since the template's own suffix anchors the
expression, and a name is a target only if every value parsed out of it is one that
rendering allows (:func:`prefect_ds._locations.check_value`: no leading dot, NFKC...).

A template such as ``{region}_{year}`` may split one name two ways (``EU_west_2023``:
``EU`` + ``west_2023``, or ``EU_west`` + ``2023``). Each name is parsed with the shortest
and with the longest first values; when the two differ the target is *ambiguous*, and a
``--where`` selects it only if both readings agree, so ``rm`` never deletes a name that
only one reading puts in the selection.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prefect_ds._checkpoint.fingerprint import METADATA_KEY, Fingerprint
from prefect_ds._errors import TemplateError, UnsafeLocationError
from prefect_ds._format import (
    Format,
    SupportsListing,
    TargetInfo,
    stored_info,
    stored_metadata,
)
from prefect_ds._locations import LocationTemplate, check_value
from prefect_ds._redact import redact, scrub

_CHARS = r"(?!\.)[\w\-.=+,@]+"  # a rendered value: see prefect_ds._locations
_GLOB_SPECIAL = re.compile(r"([*?\[\]])")


@dataclass(frozen=True)
class Target:
    """One stored member of a template's family."""

    location: str
    values: Mapping[str, str]
    info: TargetInfo
    fingerprint: Fingerprint | None  # what is stored with it, if anything
    problem: str | None = None  # why info or fingerprint could not be read
    other_values: Mapping[str, str] | None = None  # a second reading of an ambiguous name

    @property
    def ambiguous(self) -> bool:
        """The template splits this name into values in more than one way."""
        return self.other_values is not None

    def __repr__(self) -> str:
        return f"Target({redact(self.location)!r}, {dict(self.values)!r})"


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


def _regex(text: str, tokens: Mapping[str, str], lazy: bool) -> re.Pattern[str]:
    regex = re.escape(text)
    for i, token in enumerate(tokens.values()):
        group = f"(?P<f{i}>{_CHARS}{'?' if lazy else ''})"
        regex = regex.replace(re.escape(token), group, 1).replace(re.escape(token), f"(?P=f{i})")
    return re.compile(regex + r"\Z")


def _pattern(text: str, tokens: Mapping[str, str]) -> tuple[str, re.Pattern[str]]:
    """The glob and the (shortest-first) regular expression of a tokenised text."""
    glob = _GLOB_SPECIAL.sub(r"[\1]", text)
    for token in tokens.values():
        glob = glob.replace(token, "*")
    return glob, _regex(text, tokens, lazy=True)


def patterns(template: str) -> tuple[str, re.Pattern[str], list[str]]:
    """The glob, the regular expression and the field names of ``template``."""
    text, tokens = _tokenised(template)
    glob, regex = _pattern(text, tokens)
    return glob, regex, list(tokens)


def parse_values(regex: re.Pattern[str], fields: list[str], location: str) -> dict[str, str] | None:
    """The values ``regex`` reads out of ``location``, if each is one rendering allows."""
    match = regex.fullmatch(location)
    if match is None:
        return None
    values = {field: match[f"f{i}"] for i, field in enumerate(fields)}
    try:
        for field, value in values.items():
            check_value(value, field)
    except UnsafeLocationError:
        return None  # no value could have rendered this name
    return values


def _matches(fmt: Format, template: str
             ) -> Iterable[tuple[str, dict[str, str], dict[str, str] | None]]:
    """(location, values, second reading or None) of every stored target of ``template``."""
    text, tokens = _tokenised(template)
    fields = list(tokens)
    if not isinstance(fmt, SupportsListing):
        raise TypeError(
            f"format {fmt.name!r} cannot list its targets: it has no "
            f"list_locations(pattern) (see prefect_ds.SupportsListing)"
        )
    glob, shortest = _pattern(text, tokens)
    longest = _regex(text, tokens, lazy=False)
    for location in fmt.list_locations(glob):
        first = parse_values(shortest, fields, str(location))
        last = parse_values(longest, fields, str(location))
        if first is None and last is None:
            continue
        values = first if first is not None else last
        assert values is not None
        other = last if first is not None and last is not None and last != first else None
        yield str(location), values, other


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key reading digit runs as numbers: ``item_2`` before ``item_10``."""
    return [(0, int(part)) if part.isdecimal() else (1, part)
            for part in re.split(r"(\d+)", text) if part]


def _selected(values: Mapping[str, str], other: Mapping[str, str] | None,
              where: Mapping[str, str]) -> bool | None:
    """True/False: ``where`` holds / fails for every reading; None: the readings disagree."""
    first = all(values[k] == v for k, v in where.items())
    if other is None:
        return first
    second = all(other[k] == v for k, v in where.items())
    return first if first == second else None


def find_targets(fmt: Format, template: str, where: Mapping[str, str] | None = None,
                 *, ambiguous: list[Target] | None = None) -> list[Target]:
    """Every stored target of ``template`` whose parsed values match ``where``, in
    natural order. Ambiguous names that only one reading selects are left out, and put
    into ``ambiguous`` when a list is given."""
    fields = list(_tokenised(template)[1])
    unknown = sorted(set(where or {}) - set(fields))
    if unknown:
        raise TemplateError(
            f"--where names {', '.join(unknown)}, but template {redact(template)!r} has the fields "
            f"{', '.join(fields) or '(none)'}"
        )
    targets = []
    for location, values, other in _matches(fmt, template):
        selected = _selected(values, other, where or {})
        if selected is None and ambiguous is not None:
            ambiguous.append(Target(location, values, TargetInfo(), None, None, other))
        if selected:
            targets.append(_describe(fmt, location, values, other))
    return sorted(targets, key=lambda t: natural_key(t.location))


def _describe(fmt: Format, location: str, values: Mapping[str, str],
              other: Mapping[str, str] | None) -> Target:
    try:
        info = stored_info(fmt, location)
        stored = Fingerprint.decode(stored_metadata(fmt, location).get(METADATA_KEY))
    except Exception as exc:  # a damaged target is still listed, with what went wrong
        problem = scrub(f"{type(exc).__name__}: {exc}", location)
        return Target(location, values, TargetInfo(), None, problem, other)
    return Target(location, values, info, stored, None, other)


def delete_targets(fmt: Format, targets: Iterable[Target]) -> list[str]:
    """Delete each target (with its fingerprint sidecar, if any); return the locations."""
    done = []
    for target in targets:
        fmt.delete(target.location)
        done.append(target.location)
    return done
