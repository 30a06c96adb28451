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
``EU`` + ``west_2023``, or ``EU_west`` + ``2023``). Every reading of a name is found (up
to 32); when there are several the target is *ambiguous*, and a ``--where`` selects it
only if it holds for every reading, so ``rm`` never deletes a name that some rendering
with other values could have written.
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
    readings: tuple[Mapping[str, str], ...] = ()  # every reading, when there are several

    @property
    def ambiguous(self) -> bool:
        """The template splits this name into values in more than one way."""
        return len(self.readings) > 1

    @property
    def other_values(self) -> Mapping[str, str] | None:
        """The reading furthest from ``values`` (longest first values), if ambiguous."""
        return self.readings[-1] if self.ambiguous else None

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


_MAX_READINGS = 32
_VALUE = re.compile(_CHARS)


def readings(segments: list[tuple[bool, str]], location: str) -> list[dict[str, str]]:
    """Every way ``location`` splits into the template's literals and rendered values,
    shortest first values first. ``segments``: (is_field, literal text or field name)."""
    found: list[dict[str, str]] = []

    def walk(i: int, pos: int, values: dict[str, str]) -> None:
        if len(found) >= _MAX_READINGS:
            return
        if i == len(segments):
            if pos == len(location):
                found.append(dict(values))
            return
        is_field, text = segments[i]
        if not is_field or text in values:  # a literal, or a repeated field
            expected = values[text] if is_field else text
            if location.startswith(expected, pos):
                walk(i + 1, pos + len(expected), values)
            return
        for end in range(pos + 1, len(location) + 1):
            value = location[pos:end]
            if not _VALUE.fullmatch(value):
                break  # a longer value holds the same bad character
            try:
                check_value(value, text)
            except UnsafeLocationError:
                continue
            values[text] = value
            walk(i + 1, end, values)
            del values[text]

    walk(0, 0, {})
    return found


def _segments(text: str, tokens: Mapping[str, str]) -> list[tuple[bool, str]]:
    by_token = {token: field for field, token in tokens.items()}
    parts = re.split("(" + "|".join(map(re.escape, by_token)) + ")", text) if by_token \
        else [text]
    return [(True, by_token[p]) if p in by_token else (False, p) for p in parts if p]


def _matches(fmt: Format, template: str
             ) -> Iterable[tuple[str, list[dict[str, str]]]]:
    """(location, every reading) of every stored target of ``template``."""
    text, tokens = _tokenised(template)
    if not isinstance(fmt, SupportsListing):
        raise TypeError(
            f"format {fmt.name!r} cannot list its targets: it has no "
            f"list_locations(pattern) (see prefect_ds.SupportsListing)"
        )
    glob, _ = _pattern(text, tokens)
    segments = _segments(text, tokens)
    for location in fmt.list_locations(glob):
        found = readings(segments, str(location))
        if found:
            yield str(location), found


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key reading digit runs as numbers: ``item_2`` before ``item_10``."""
    return [(0, int(part)) if part.isdecimal() else (1, part)
            for part in re.split(r"(\d+)", text) if part]


def _selected(found: list[dict[str, str]], where: Mapping[str, str]) -> bool | None:
    """True/False: ``where`` holds / fails for every reading; None: the readings disagree."""
    holds = {all(values[k] == v for k, v in where.items()) for values in found}
    return holds.pop() if len(holds) == 1 else None


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
    for location, found in _matches(fmt, template):
        selected = _selected(found, where or {})
        every = tuple(found) if len(found) > 1 else ()
        if selected is None and ambiguous is not None:
            ambiguous.append(Target(location, found[0], TargetInfo(), None, None, every))
        if selected:
            targets.append(_describe(fmt, location, found[0], every))
    return sorted(targets, key=lambda t: natural_key(t.location))


def _describe(fmt: Format, location: str, values: Mapping[str, str],
              every: tuple[Mapping[str, str], ...]) -> Target:
    try:
        info = stored_info(fmt, location)
        stored = Fingerprint.decode(stored_metadata(fmt, location).get(METADATA_KEY))
    except Exception as exc:  # a damaged target is still listed, with what went wrong
        problem = scrub(f"{type(exc).__name__}: {exc}", location)
        return Target(location, values, TargetInfo(), None, problem, every)
    return Target(location, values, info, stored, None, every)


def delete_targets(fmt: Format, targets: Iterable[Target]) -> list[str]:
    """Delete each target (with its fingerprint sidecar, if any); return the locations."""
    done = []
    for target in targets:
        fmt.delete(target.location)
        done.append(target.location)
    return done
