"""The hooks a prefect-ds plugin may implement.

A plugin is any importable object (usually a module) named by an entry point in the
``prefect_ds`` group. It implements :func:`register_formats` with ``@prefect_ds.hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from prefect_ds._format import Format

hookspec = pluggy.HookspecMarker("prefect_ds")
hookimpl = pluggy.HookimplMarker("prefect_ds")


class Register(Protocol):
    """The callable handed to :func:`register_formats`."""

    def __call__(self, format: Format, *, override: bool = False) -> None: ...


@hookspec
def register_formats(register: Register) -> None:
    """Register formats by calling ``register(format_object)`` once per format.

    Pass ``override=True`` to replace a format of the same name from another plugin
    (including a built-in); without it a duplicate name is an error.
    """
