"""What every command prints with: one table layout, one error line, one size unit,
one JSON layout, one way to count things."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit (code 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def size(n: int | None) -> str:
    """``n`` bytes in B, KB, MB or GB; ``-`` when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 target``, ``2 targets``, ``0 targets`` (``nouns`` for irregular plurals)."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def emit_json(document: Any) -> None:
    """Print ``document`` as indented JSON (dates and other values as their ``str``)."""
    typer.echo(json.dumps(document, indent=2, default=str, ensure_ascii=False))
