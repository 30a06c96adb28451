"""The format registry: one pluggy plugin manager, loaded lazily and once.

Built-in formats are entry points of this package in the ``prefect_ds`` group, exactly
like a third party's, so both are found, loaded and checked the same way.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from prefect_ds._errors import DuplicateFormatError, MissingDependencyError, UnknownFormatError
from prefect_ds._format import Format
from prefect_ds._locations import as_location
from prefect_ds._redact import redact

from . import hookspecs

GROUP = "prefect_ds"
pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)


@dataclass(frozen=True)
class Registration:
    """A format together with the distribution that provides it."""

    format: Format
    provider: str  # "name version" of the distribution, or the plugin's name
    override: bool = False


@dataclass(frozen=True)
class Unavailable:
    """A plugin that failed to load: why, and (when it said so) what to install."""

    reason: str
    install: str = ""
    suffixes: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()


@dataclass
class _Registry:
    formats: dict[str, Registration]
    unavailable: dict[str, Unavailable]  # entry point name -> why it failed to load


_lock = threading.Lock()
_registry: _Registry | None = None
_loaded = False
_providers: dict[int, str] = {}  # id(plugin) -> provider label
_unavailable: dict[str, Unavailable] = {}


def register_plugin(plugin: Any, name: str | None = None) -> None:
    """Register an in-process plugin (an object with ``@hookimpl`` functions).

    For notebooks and tests; installed packages use the ``prefect_ds`` entry point group.
    """
    _load_entry_points()
    with _lock:
        global _registry
        pm.register(plugin, name=name)
        _providers[id(plugin)] = name or str(getattr(plugin, "__name__", repr(plugin)))
        _registry = None


def _load_entry_points() -> None:
    """Import every entry point of the group once; record the ones that fail to import."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        eps = sorted(
            importlib.metadata.entry_points(group=GROUP),
            key=lambda ep: (ep.dist is None or ep.dist.name != "prefect-ds", ep.name),
        )
        for ep in eps:
            provider = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
            # Entry point names are only unique within one distribution.
            plugin_name = f"{ep.dist.name}:{ep.name}" if ep.dist else ep.name
            try:
                plugin = ep.load()
                if pm.is_registered(plugin):
                    continue
                pm.register(plugin, name=plugin_name)
            except MissingDependencyError as exc:
                _unavailable[ep.name] = Unavailable(f"{provider}: {exc}", exc.install,
                                                    exc.suffixes, exc.schemes)
                continue
            except Exception as exc:  # one broken plugin must not hide every other format
                _unavailable[ep.name] = Unavailable(f"{provider}: {type(exc).__name__}: {exc}")
                continue
            _providers[id(plugin)] = provider


def _collect() -> _Registry:
    by_name: dict[str, Registration] = {}
    for impl in pm.hook.register_formats.get_hookimpls():  # registration order: built-ins first
        provider = _providers.get(id(impl.plugin), impl.plugin_name)

        def register(fmt: Format, *, override: bool = False, _provider: str = provider) -> None:
            if not isinstance(fmt, Format):
                raise TypeError(
                    f"{_provider} registered {fmt!r}, which is not a prefect_ds.Format instance"
                )
            new = Registration(fmt, _provider, override)
            old = by_name.get(fmt.name)
            if old is None or (override and not old.override):
                by_name[fmt.name] = new
            elif old.override and not override:
                pass  # an earlier plugin already replaced this name on purpose
            else:
                raise DuplicateFormatError(
                    f"format {fmt.name!r} is registered by both {old.provider} and "
                    f"{_provider}. Uninstall one, or have the replacement call "
                    f"register(format, override=True)."
                )

        impl.function(register)
    return _Registry(by_name, dict(_unavailable))


def current() -> _Registry:
    """The loaded registry (plugins are imported on first use only)."""
    global _registry
    if _registry is None:
        _load_entry_points()
        with _lock:
            if _registry is None:
                _registry = _collect()
    return _registry


def available_formats() -> list[str]:
    """Names of the installed formats, sorted."""
    return sorted(current().formats)


def get_format(name: str) -> Format:
    """The installed format called ``name`` (case-insensitive: ``"CSV"`` is ``csv``).

    Raises :class:`UnknownFormatError` listing the installed formats, and the extra to
    install when ``name`` is a built-in whose optional dependency is missing.
    """
    reg = current()
    found = reg.formats.get(name)
    if found is None and isinstance(name, str):  # names are case-insensitive: "CSV" is csv
        folded = [r for n, r in reg.formats.items() if n.casefold() == name.casefold()]
        found = folded[0] if len(folded) == 1 else None
    if found is not None:
        return found.format
    message = f"unknown format {name!r}; installed formats: {', '.join(sorted(reg.formats))}."
    missing = {n.casefold(): n for n in reg.unavailable}.get(str(name).casefold())
    if missing is not None:
        message += " " + _unavailable_message(missing, reg.unavailable[missing])
    elif reg.unavailable:
        message += f" Plugins that failed to load: {', '.join(sorted(reg.unavailable))}."
    raise UnknownFormatError(message)


def resolve_format(location: str | os.PathLike[str], format: str | None = None) -> Format:
    """The format for ``location``: the named one, else by suffix, else by URL scheme.

    ``location`` may be a string or any ``os.PathLike`` (``pathlib.Path``).
    """
    if format is not None:
        return get_format(format)
    location = as_location(location)
    formats = [r.format for r in current().formats.values()]
    path = location.split("#", 1)[0].split("?", 1)[0].lower()
    _check_scheme(location, path, formats, current().unavailable)
    by_suffix = [f for f in formats if any(path.endswith(s) for s in f.suffixes)]
    if by_suffix:
        longest = max(len(s) for f in by_suffix for s in f.suffixes if path.endswith(s))
        by_suffix = [f for f in by_suffix if any(path.endswith(s) and len(s) == longest
                                                 for s in f.suffixes)]
        if len(by_suffix) == 1:
            return by_suffix[0]
        names = ", ".join(sorted(f.name for f in by_suffix))
        raise UnknownFormatError(
            f"the suffix of {redact(location)!r} is claimed by several formats ({names}); "
            f"name one with format=..."
        )
    scheme = path.split("://", 1)[0].split("+", 1)[0] if "://" in path else ""
    by_scheme = [f for f in formats if scheme and scheme in f.schemes]
    if len(by_scheme) == 1:
        return by_scheme[0]
    if by_scheme:
        names = ", ".join(sorted(f.name for f in by_scheme))
        raise UnknownFormatError(
            f"the scheme {scheme + '://'!r} of {redact(location)!r} is claimed by several "
            f"formats ({names}); name one with format=..."
        )
    for name, why in current().unavailable.items():
        if any(path.endswith(s) for s in why.suffixes) or (scheme and scheme in why.schemes):
            raise UnknownFormatError(
                f"{redact(location)!r} is a {name!r} location, but "
                + _unavailable_message(name, why)
            )
    known = ", ".join(
        f"{f.name} ({' '.join(f.suffixes + tuple(s + '://' for s in f.schemes))})"
        for f in sorted(formats, key=lambda f: f.name)
    )
    raise UnknownFormatError(
        f"cannot tell the format of {redact(location)!r} from its suffix or scheme. Give the "
        f"location a known suffix or pass format=NAME. Installed formats: {known}."
    )


def _unavailable_message(name: str, why: Unavailable) -> str:
    hint = f" Install it with: {why.install}." if why.install else ""
    return f"The {name!r} plugin failed to load ({why.reason}).{hint}"


def _check_scheme(location: str, path: str, formats: list[Format],
                  unavailable: dict[str, Unavailable]) -> None:
    """Refuse a URL scheme that is neither a format's nor a file system fsspec knows.

    A scheme of a format that failed to load passes: the caller names what to install.
    """
    scheme = path.split("://", 1)[0].split("+", 1)[0] if "://" in path else ""
    if not scheme or any(scheme in f.schemes for f in formats):
        return
    if any(scheme in why.schemes for why in unavailable.values()):
        return
    import fsspec

    if scheme in fsspec.available_protocols():
        return
    claimed = sorted({s for f in formats for s in f.schemes})
    raise UnknownFormatError(
        f"the scheme {scheme + '://'!r} of {redact(location)!r} is neither a database "
        f"format's ({', '.join(claimed) or 'none installed'}) nor a file system fsspec "
        f"knows; use a path, an fsspec URL (s3://, gcs://, memory://, file://) or a "
        f"database URL, or name an installed format with format=NAME"
    )
