"""Location templates: ``"data/{region}_{year}.parquet"`` filled in from task arguments.

Every value put into a template must be one plain name: letters, digits and ``-_.=+,@``,
not starting with a dot, in its NFKC form, at most 200 bytes in UTF-8, and without
prefect-ds's own file markers (``.prefect-ds``). That single rule means a rendered location
can never leave the template's directory (no separators, ``..``, ``~``, absolute paths or
URL schemes), never names our hidden temporary, lock or lease files, and never carries
quotes or semicolons into a SQL identifier. A value is coerced to a plain ``str`` first,
so a ``str`` subclass (from a ``__format__``) cannot answer the checks its own way.

The rendered location is checked as a whole too, before anything is created: its file
name must not end like another target's sidecar (``a.schema.json`` beside a csv ``a``),
and every part of its path must leave room, in bytes, for the longest hidden name
prefect-ds puts beside it (file systems allow 255 bytes per name).

A value that is not a plain name (``'New York'``) is refused, never altered silently. The
opt-in conversion ``{field!slug}`` turns it into one (:func:`slug`: ``'New-York'``).
A template may be any ``os.PathLike`` (``pathlib.Path``) as well as a string.
"""

from __future__ import annotations

import os
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from prefect_ds._errors import TemplateError, UnsafeLocationError
from prefect_ds._redact import redact

_SAFE_VALUE = re.compile(r"[\w\-.=+,@]+")
_MAX_VALUE_LENGTH = 200  # bytes, UTF-8
_NAME_MAX = 255  # bytes per path component on common file systems
# ".<name>.<22 hex digits>.prefect-ds-tmp": the longest hidden name beside any file
_TEMP_OVERHEAD = len("." + "." + "0" * 22 + ".prefect-ds-tmp")
RESERVED_MARKER = ".prefect-ds"
# The endings of the files prefect-ds keeps beside any target (metadata, lock, temp, lease).
HIDDEN_SUFFIXES = (".prefect-ds.json", ".prefect-ds-lock", ".prefect-ds-tmp",
                   ".prefect-ds-lease")
_formatter = string.Formatter()
# ``{field!slug}``: str.format knows one-letter conversions only, so the template is parsed
# with this private stand-in for ``!slug`` and the conversion applied here.
_SLUG_MARK = "\ue000"
_SLUG_CONVERSION = re.compile(r"!slug(?=[:}])")
_NOT_NAME = re.compile(r"[^\w]+")


def as_location(location: Any, what: str = "a location") -> str:
    """``location`` as a string: a ``str`` as is, an ``os.PathLike`` through ``os.fspath``."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str) or not location:
        raise TemplateError(
            f"{what} must be a non-empty string or os.PathLike (pathlib.Path), "
            f"got {location!r}"
        )
    return location


def slug(value: object) -> str:
    """``value`` as a plain name: every run of characters other than letters, digits and
    ``_`` becomes one ``-``, leading and trailing ``-`` are dropped, case is kept.

    ``'New York'`` -> ``'New-York'``, ``'São Paulo'`` -> ``'São-Paulo'``,
    ``'a / b'`` -> ``'a-b'``. Distinct values can share a slug (``'a b'``, ``'a-b'``);
    checkpoint collision detection reports two such calls in one flow run.
    """
    text = unicodedata.normalize("NFKC", str(value))
    return _NOT_NAME.sub("-", text).strip("-")


def _hint(value: str, field: str) -> str:
    """How to fix an unsafe value: about dates when it looks like one, else about strings."""
    if re.fullmatch(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:?\d\d|Z)?", value):
        return f"format it in the template instead, e.g. {{{field}:%Y%m%d}} for a date."
    return (
        f"pass a plain name, or opt in to converting it with {{{field}!slug}} "
        f"(here: {slug(value)!r})."
    )


def _top_level(field_name: str) -> str:
    """``"params.x"`` or ``"items[0]"`` -> the argument name they start with."""
    return re.split(r"[.\[]", field_name, maxsplit=1)[0]


def check_value(value: str, field: str) -> str:
    """Return ``value`` if it is safe to put into a location, else raise."""
    value = str.__str__(value) if isinstance(value, str) else value  # plain str, no subclass
    if not isinstance(value, str):
        raise UnsafeLocationError(
            f"template field {{{field}}} rendered to a {type(value).__name__}, not a string")
    problem = None
    size = len(value.encode("utf-8", "surrogatepass"))
    if not value:
        problem = "is empty"
    elif size > _MAX_VALUE_LENGTH:
        problem = f"is {size} bytes long in UTF-8 (at most {_MAX_VALUE_LENGTH})"
    elif unicodedata.normalize("NFKC", value) != value:
        problem = "contains look-alike unicode characters (it is not in NFKC form)"
    elif not _SAFE_VALUE.fullmatch(value):
        bad = sorted({c for c in value if not _SAFE_VALUE.fullmatch(c)})
        problem = f"contains {', '.join(repr(c) for c in bad)}"
    elif value.startswith("."):
        problem = "starts with a dot"
    elif RESERVED_MARKER in value.casefold():
        problem = f"contains {RESERVED_MARKER!r}, which marks prefect-ds's own hidden files"
    if problem:
        raise UnsafeLocationError(
            f"template field {{{field}}} rendered to {value!r}, which {problem}. A value must "
            f"be one plain name (letters, digits, '-_.=+,@'), so it cannot escape the "
            f"template's directory or inject SQL; {_hint(value, field)}"
        )
    return value


def check_location(location: str, template: str, sidecar_suffixes: tuple[str, ...]) -> str:
    """Return the rendered ``location`` if no part of it is too long in bytes and its file
    name is not another target's sidecar; else raise :class:`UnsafeLocationError`."""
    path = location.partition("#")[0]
    parts = path.split("/")
    name = parts[-1]
    folded = name.casefold()
    clash = next((s for s in (*sidecar_suffixes, *HIDDEN_SUFFIXES)
                  if s and folded.endswith(s.casefold())
                  and len(folded) > len(s)), None)
    if clash is not None:
        raise UnsafeLocationError(
            f"location template {template!r} rendered to {location!r}, whose name ends in "
            f"{clash!r}: that is the sidecar file of the target {location[:-len(clash)]!r} "
            f"and writing it would overwrite that target's sidecar. Choose values (or a "
            f"template) that do not end in {clash!r}."
        )
    reserve = _TEMP_OVERHEAD + max((len(s.encode()) for s in sidecar_suffixes), default=0)
    for index, part in enumerate(parts):
        limit = _NAME_MAX - reserve if index == len(parts) - 1 else _NAME_MAX
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise UnsafeLocationError(
                f"location template {template!r} rendered to a path whose part "
                f"{part[:40]!r}... is {size} bytes long in UTF-8; at most {limit} bytes fit "
                f"there (file names are limited to {_NAME_MAX} bytes, and prefect-ds keeps "
                f"hidden files with longer names beside a target). Use shorter values; "
                f"nothing was created."
            )
    return location


class LocationTemplate:
    """A ``str.format`` template of a location, checked and rendered safely."""

    def __init__(self, template: str | os.PathLike[str]) -> None:
        template = as_location(template)
        self.template = template
        try:
            self._parts = list(_formatter.parse(_SLUG_CONVERSION.sub("!" + _SLUG_MARK, template)))
        except ValueError as exc:
            raise TemplateError(
                f"cannot parse location template {redact(template)!r}: {exc}"
            ) from None
        for _, field, _, _ in self._parts:
            if field is not None and (field == "" or field.isdigit()):
                raise TemplateError(
                    f"location template {redact(template)!r} has a positional field {{{field}}}; "
                    f"name the task argument instead, e.g. {{id}}"
                )
        self.fields = frozenset(_top_level(f) for _, f, _, _ in self._parts if f is not None)

    def check_fields(self, parameters: Iterable[str], owner: str) -> None:
        """Fail early when the template names an argument ``owner`` does not take."""
        params = list(parameters)
        unknown = sorted(self.fields - set(params))
        if unknown:
            raise TemplateError(
                f"location template {redact(self.template)!r} of {owner} uses "
                f"{', '.join('{' + u + '}' for u in unknown)}, but {owner} takes only "
                f"({', '.join(params) or 'no arguments'}). Use one of those names."
            )

    def render(self, arguments: Mapping[str, Any],
               sidecar_suffixes: Iterable[str] = ()) -> str:
        """Fill the template from ``arguments``, checking each value with :func:`check_value`
        and the whole location with :func:`check_location` (``sidecar_suffixes``: the
        endings of the files the format keeps beside a data file)."""
        out: list[str] = []
        for literal, field, spec, conversion in self._parts:
            out.append(literal)
            if field is None:
                continue
            try:
                value, _ = _formatter.get_field(field, (), arguments)
            except KeyError:
                raise TemplateError(
                    f"location template {redact(self.template)!r} needs "
                    f"{{{_top_level(field)}}}, but "
                    f"the arguments given were ({', '.join(arguments) or 'none'})"
                ) from None
            except (AttributeError, IndexError, TypeError) as exc:
                raise TemplateError(
                    f"cannot resolve {{{field}}} in location template "
                    f"{redact(self.template)!r}: {exc}"
                ) from None
            try:
                if conversion == _SLUG_MARK:
                    value = slug(value)
                else:
                    value = _formatter.convert_field(value, conversion)
                text = _formatter.format_field(value, spec or "")
            except (ValueError, TypeError) as exc:
                raise TemplateError(
                    f"cannot format {{{field}}} of location template {redact(self.template)!r} "
                    f"(a {type(value).__name__} value, conversion "
                    f"{_shown_conversion(conversion)!r}, spec {spec!r}): {_shown(exc)}. Fix "
                    f"the field's !conversion or :spec, or pass a value of the type it expects."
                ) from None
            out.append(check_value(text, field))
        location = "".join(out)
        if self.fields:
            check_location(location, self.template, tuple(sidecar_suffixes))
        return location

    def __repr__(self) -> str:
        return f"LocationTemplate({redact(self.template)!r})"


def _shown(exc: Exception) -> str:
    return str(exc).replace(_SLUG_MARK, "slug")


def _shown_conversion(conversion: str | None) -> str | None:
    return "slug" if conversion == _SLUG_MARK else conversion


def split_fragment(location: str) -> tuple[str, str]:
    """``"file.h5#group/key"`` -> ``("file.h5", "group/key")``; no ``#`` -> empty fragment."""
    path, _, fragment = location.partition("#")
    return path, fragment
