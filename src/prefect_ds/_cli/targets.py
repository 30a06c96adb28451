"""``prefect-ds ls`` and ``prefect-ds rm``: browse and delete a template's stored targets.

``ls`` lists every stored target of a location template with the argument values parsed
back out of its name, its row count where that is cheap (Parquet footers, CSV sidecars,
HDF attributes, SQL metadata rows), size, modification time and the fingerprint parts
stored with it. ``rm`` deletes the targets a ``--where`` selects, after a confirmation,
so the next flow run recomputes exactly that slice. Heavy imports happen when a command
runs, not when the CLI starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from prefect_ds._cli.output import fail, size, table

if TYPE_CHECKING:
    from prefect_ds._cli.listing import Target
    from prefect_ds._format import Format

TemplateArg = Annotated[str, typer.Argument(
    help="A location template, e.g. 'data/{region}_{year}.parquet', an fsspec URL "
         "template (s3://bucket/{region}.csv) or 'sqlite:///lab.db#sales_{region}'.")]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", "-f", help="Format name; by default taken from the suffix or scheme.")]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", "-w", help="Keep targets whose FIELD has VALUE (FIELD=VALUE; repeatable, "
                          "all must hold).")]


def _where(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise fail(f"--where {item!r} is not FIELD=VALUE, e.g. --where region=EU")
        out[field.strip()] = value.strip()
    return out


def _find(template: str, format: str | None,
          where: Sequence[str] | None) -> tuple[Format, list[Target]]:
    from prefect_ds._errors import PrefectDSError
    from prefect_ds._registry import resolve_format

    selection = _where(where)
    try:
        fmt = resolve_format(template, format)
        from prefect_ds._cli.listing import find_targets

        return fmt, find_targets(fmt, template, selection)
    except (PrefectDSError, TypeError, ValueError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # a storage library's error: one line, no traceback
        raise fail(f"{type(exc).__name__}: {exc}") from None


def _rows(targets: Sequence[Target], fields: Sequence[str]) -> list[tuple[str, ...]]:
    from prefect_ds._redact import redact

    rows: list[tuple[str, ...]] = [
        ("LOCATION", *(f.upper() for f in fields), "ROWS", "SIZE", "MODIFIED (UTC)", "FINGERPRINT")
    ]
    for t in targets:
        fingerprint = "+".join(sorted(t.fingerprint.parts)) if t.fingerprint else "none"
        if t.problem:
            fingerprint = f"unreadable ({t.problem})"
        modified = t.info.modified.strftime("%Y-%m-%d %H:%M:%S") if t.info.modified else "-"
        rows.append((
            redact(t.location), *(t.values[f] for f in fields),
            f"{t.info.rows:,}" if t.info.rows is not None else "-",
            size(t.info.bytes), modified, fingerprint,
        ))
    return rows


def _fields(template: str) -> list[str]:
    from prefect_ds._cli.listing import patterns

    return patterns(template)[2]


def ls_command(template: TemplateArg, format: FormatOpt = None, where: WhereOpt = None) -> None:
    """List the stored targets of TEMPLATE with the argument values of each.

    Also shows row counts where they are cheap to read, sizes, modification times and
    which fingerprint parts (code, inputs, ...) are stored with each target; "none" means
    it was written without invalidate_on, or by someone else.
    """

    _, targets = _find(template, format, where)
    if not targets:
        typer.echo(f"no stored targets match {redact(template)!r}")
        return
    typer.echo(table(_rows(targets, _fields(template))))


def rm_command(
    template: TemplateArg,
    format: FormatOpt = None,
    where: WhereOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
    = False,
) -> None:
    """Delete the stored targets of TEMPLATE that --where selects (all without it).

    The next run of the checkpointed tasks recomputes exactly those. Lists what will go
    and asks first, unless --yes.
    """
    from prefect_ds._cli.listing import delete_targets
    from prefect_ds._redact import redact

    fmt, targets = _find(template, format, where)
    if not targets:
        typer.echo(f"no stored targets match {redact(template)!r}; nothing deleted")
        return
    typer.echo(table(_rows(targets, _fields(template))))
    if not yes and not typer.confirm(f"Delete these {len(targets)} targets?", default=False):
        typer.echo("nothing deleted")
        raise typer.Exit(code=1)
    try:
        done = delete_targets(fmt, targets)
    except Exception as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None
    for location in done:
        typer.echo(f"deleted {redact(location)}")
