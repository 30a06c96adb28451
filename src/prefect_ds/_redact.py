"""Hide the secrets of a location before it is logged, raised, shown or sent as an event.

:func:`redact` is the one function every message, repr, CLI line, event and asset key
passes a location through. A location may carry a password in two places:

- the user-info of a URL, ``scheme://user:password@host/...``. The password may hold
  ``/ # ? @ : %`` unencoded; the user name cannot hold ``:`` or ``/``. So the password
  is everything from the first ``:`` after ``://`` up to the *last* ``@`` of the
  location (an ``@`` later in a file name only hides more than needed, never less);
- a query parameter whose name says it is secret (``?password=``, ``&sslpassword=``,
  ``api_key``, ``token``...). Its value runs to the next ``&name=`` or to the last
  ``#`` (the fragment, as SQL locations are split).

Where the URL is a valid SQLAlchemy URL and SQLAlchemy reads the same password from it,
the result is SQLAlchemy's own ``render_as_string(hide_password=True)`` (imported only
then, so a local path costs a string test). Any scheme is treated as a URL, valid for
SQLAlchemy or not. Last, every secret found is removed from the result in each of its
spellings (as written, percent-decoded, percent-encoded), so no parser disagreement can
let one through. :func:`scrub` removes a location's secrets from any other text, such as
a database driver's error message.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"
_PLACEHOLDER = "PREFECTDSHIDDENVALUE"  # SQLAlchemy percent-encodes "***" in a query
_SCHEME = re.compile(r"^([^:/?#@\s]+)://")
_SQLALCHEMY_SCHEME = re.compile(r"[\w+]+")
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|credential|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|signature|auth",
    re.IGNORECASE,
)
_PARAM = re.compile(r"(?:(?<=[?&;])|^)([^=&;?#]+)=")
_NEXT_PARAM = re.compile(r"&[A-Za-z_][\w.\-]*=")
_MIN_SPELLED = 4  # shorter secrets are hidden where they stand, not searched for elsewhere


def _userinfo_password(location: str, scheme_end: int) -> tuple[int, int] | None:
    """(start, end) of the user-info password in ``location``, if it has one."""
    at = location.rfind("@", scheme_end)
    if at < 0:
        return None
    colon = location.find(":", scheme_end, at)
    if colon < 0 or "/" in location[scheme_end:colon]:
        return None  # no ":" in the user-info, or the path began before it did
    return colon + 1, at


def _query_secrets(location: str, start: int) -> list[tuple[int, int]]:
    """(start, end) of each secret query value in ``location[start:]``."""
    question = location.find("?", start)
    if question < 0:
        return []
    last_hash = location.rfind("#")
    spans = []
    for match in _PARAM.finditer(location, question + 1):
        if not _SECRET_NAME.search(match.group(1)):
            continue
        begin = match.end()
        following = _NEXT_PARAM.search(location, begin)
        end = following.start() if following else len(location)
        if begin <= last_hash < end:
            end = last_hash
        spans.append((begin, end))
    return spans


def _secret_spans(location: str) -> list[tuple[int, int]]:
    found = _SCHEME.match(location)
    if found is None:
        return []
    spans = []
    password = _userinfo_password(location, found.end())
    if password is not None:
        spans.append(password)
    spans += _query_secrets(location, found.end())
    merged: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def secrets(location: str) -> list[str]:
    """The secret substrings of ``location`` (passwords, secret query values), as written
    and as found once the location is percent-decoded (``odbc_connect=...%3BPWD%3D...``)."""
    found = [location[a:b] for a, b in _secret_spans(location)]
    decoded = unquote(location)
    if decoded != location:
        found += [s for s in (decoded[a:b] for a, b in _secret_spans(decoded)) if s not in found]
    return found


def _spellings(secret: str) -> set[str]:
    """``secret`` as written, percent-decoded and percent-encoded."""
    forms = {secret}
    for form in (unquote(secret), unquote_plus(secret)):
        forms |= {form, quote(form, safe=""), quote_plus(form, safe="")}
    return {f for f in forms if f}


def _hide_spans(location: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for a, b in spans:  # sorted and disjoint
        out += [location[last:a], MASK]
        last = b
    out.append(location[last:])
    return "".join(out)


def _by_sqlalchemy(location: str, found: list[str]) -> str | None:
    """SQLAlchemy's rendering with the password hidden, when it reads what we read."""
    scheme = location.split("://", 1)[0]
    if not _SQLALCHEMY_SCHEME.fullmatch(scheme):
        return None
    url_part, sep, fragment = location.rpartition("#")
    if not sep:
        url_part, fragment = location, ""
    try:
        from sqlalchemy.engine import make_url

        url = make_url(url_part)
    except Exception:  # not a SQLAlchemy URL (or no SQLAlchemy): our own reading stands
        return None
    ours = {unquote(s) for s in found} | set(found)
    if url.password is not None and str(url.password) not in ours:
        return None  # the two readings disagree: keep the one that hides more
    query = {
        key: _PLACEHOLDER if _SECRET_NAME.search(key) else value
        for key, value in url.query.items()
    }
    shown = url.set(query=query).render_as_string(hide_password=True)
    return f"{shown.replace(_PLACEHOLDER, MASK)}{sep}{fragment}"


def redact(location: str) -> str:
    """``location`` with every password and secret query value replaced by ``***``.

    Safe on any string: a local path, a location template, an HDF ``file.h5#key`` or a
    database URL with ``#table``. See the module docstring for what counts as secret.
    """
    if not isinstance(location, str):
        location = str(location)
    spans = _secret_spans(location)
    found = secrets(location)
    if not found:
        return location
    shown = _by_sqlalchemy(location, found) if spans else None
    if shown is None or (spans and MASK not in shown):
        shown = _hide_spans(location, spans)
    return _remove(shown, found, _MIN_SPELLED)


def _remove(text: str, found: list[str], shortest: int) -> str:
    forms = {form for secret in found for form in _spellings(secret) if len(form) >= shortest}
    for form in sorted(forms, key=len, reverse=True):
        if form != MASK:
            text = text.replace(form, MASK)
    return text


def scrub(text: str, *locations: str) -> str:
    """``text`` (an error message, a log line) with no secret of ``locations`` left in it.

    Each location that appears whole is replaced by its :func:`redact` form; then every
    spelling of every password is removed wherever it still stands.
    """
    found: list[str] = []
    for location in locations:
        if location and location in text:
            text = text.replace(location, redact(location))
        found += secrets(location)
    return _remove(text, found, 1)
