"""Location templates: ``"data/{region}_{year}.parquet"`` filled in from task arguments.

Every value put into a template must be one plain name: letters, digits and ``-_.=+,@``,
not starting with a dot, in its NFKC form and at most 200 characters. That single rule
means a rendered location can never leave the template's directory (no separators,
``..``, ``~``, absolute paths or URL schemes), never collides with our hidden temporary
files, and never carries quotes or semicolons into a SQL identifier.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from prefect_ds._errors import TemplateError, UnsafeLocationError
from prefect_ds._redact import redact

_SAFE_VALUE = re.compile(r"[\w\-.=+,@]+")
_MAX_VALUE_LENGTH = 200
_formatter = string.Formatter()


def _top_level(field_name: str) -> str:
    """``"params.x"`` or ``"items[0]"`` -> the argument name they start with."""
    return re.split(r"[.\[]", field_name, maxsplit=1)[0]


def check_value(value: str, field: str) -> str:
    """Return ``value`` if it is safe to put into a location, else raise."""
    problem = None
    if not value:
        problem = "is empty"
    elif len(value) > _MAX_VALUE_LENGTH:
        problem = f"is {len(value)} characters long (at most {_MAX_VALUE_LENGTH})"
    elif unicodedata.normalize("NFKC", value) != value:
        problem = "contains look-alike unicode characters (it is not in NFKC form)"
    elif not _SAFE_VALUE.fullmatch(value):
        bad = sorted({c for c in value if not _SAFE_VALUE.fullmatch(c)})
        problem = f"contains {', '.join(repr(c) for c in bad)}"
    elif value.startswith("."):
        problem = "starts with a dot"
    if problem:
        raise UnsafeLocationError(
            f"template field {{{field}}} rendered to {value!r}, which {problem}. A value must "
            f"be one plain name (letters, digits, '-_.=+,@'), so it cannot escape the "
            f"template's directory or inject SQL; format it in the template instead, "
            f"e.g. {{{field}:%Y%m%d}} for a date."
        )
    return value


class LocationTemplate:
    """A ``str.format`` template of a location, checked and rendered safely."""

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or not template:
            raise TemplateError(f"a location must be a non-empty string, got {template!r}")
        self.template = template
        try:
            self._parts = list(_formatter.parse(template))
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

    def render(self, arguments: Mapping[str, Any]) -> str:
        """Fill the template from ``arguments``, checking each value with :func:`check_value`."""
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
                value = _formatter.convert_field(value, conversion)
                text = _formatter.format_field(value, spec or "")
            except (ValueError, TypeError) as exc:
                raise TemplateError(
                    f"cannot format {{{field}}} of location template {redact(self.template)!r} "
                    f"(a {type(value).__name__} value, conversion {conversion!r}, spec "
                    f"{spec!r}): {exc}. Fix the field's !conversion or :spec, or pass a "
                    f"value of the type it expects."
                ) from None
            out.append(check_value(text, field))
        return "".join(out)

    def __repr__(self) -> str:
        return f"LocationTemplate({redact(self.template)!r})"


def split_fragment(location: str) -> tuple[str, str]:
    """``"file.h5#group/key"`` -> ``("file.h5", "group/key")``; no ``#`` -> empty fragment."""
    path, _, fragment = location.partition("#")
    return path, fragment
