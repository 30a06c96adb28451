"""The ``prefect-ds`` command line (``app``: formats, show; ``targets``: ls, rm)."""

from prefect_ds._cli.app import main

__all__ = ["main"]
