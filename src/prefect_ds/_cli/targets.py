"""``prefect-ds ls`` and ``prefect-ds rm``: browse and delete a template's stored targets.

``ls`` lists every stored target of a location template, in natural order (``item_2``
before ``item_10``), with the argument values parsed back out of its name, its row count
where that is cheap (Parquet footers, CSV sidecars, HDF attributes, SQL metadata rows),
size, modification time and the fingerprint parts stored with it; ``--json`` prints the
same as JSON. ``rm`` shows exactly which targets it will delete, asks, and deletes only
those, so the next flow run recomputes exactly that slice. Names that no rendering of the
template could produce are never listed nor deleted, and a name the template splits two
ways is deleted only when both readings are selected. Heavy imports happen when a
command runs, not when the CLI starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefect_ds._cli.output import emit_json, fail, plural, size, table

if TYPE_CHECKING:
    from prefect_ds._cli.listing import Target
    from prefect_ds._format import Format, TargetInfo

TemplateArg = Annotated[str, typer.Argument(
    help="A location template, e.g. 'data/{region}_{year}.parquet', an fsspec URL "
         "template (s3://bucket/{region}.csv), 'clean.h5#sales/{region}' or "
         "'sqlite:///lab.db#sales_{region}'.")]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", "-f", help="Format name; by default taken from the suffix or scheme.")]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", "-w", help="Keep targets whose FIELD has VALUE (FIELD=VALUE; repeatable, "
                          "all must hold).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _where(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise fail(f"--where {item!r} is not FIELD=VALUE, e.g. --where region=EU")
        out[field.strip()] = value.strip()
    return out


def _find(template: str, format: str | None, where: Sequence[str] | None,
          ambiguous: list[Target] | None = None) -> tuple[Format, list[Target]]:
    from prefect_ds._errors import PrefectDSError
    from prefect_ds._redact import scrub
    from prefect_ds._registry import resolve_format

    selection = _where(where)
    try:
        fmt = resolve_format(template, format)
        from prefect_ds._cli.listing import find_targets

        return fmt, find_targets(fmt, template, selection, ambiguous=ambiguous)
    except (PrefectDSError, TypeError, ValueError) as exc:
        raise fail(scrub(str(exc), template)) from None
    except Exception as exc:  # a storage library's error: one line, no traceback
        raise fail(scrub(f"{type(exc).__name__}: {exc}", template)) from None


def _fingerprint(t: Target) -> str:
    if t.problem:
        return f"unreadable ({t.problem})"
    return "+".join(sorted(t.fingerprint.parts)) if t.fingerprint else "none"


def _rows(targets: Sequence[Target], fields: Sequence[str]) -> list[tuple[str, ...]]:
    from prefect_ds._redact import redact

    parted = any(t.info.partitions is not None for t in targets)  # datasets among them
    rows: list[tuple[str, ...]] = [
        ("LOCATION", *(f.upper() for f in fields), "ROWS", *(("PARTITIONS",) if parted else ()),
         "SIZE", "MODIFIED (UTC)", "FINGERPRINT")
    ]
    for t in targets:
        modified = t.info.modified.strftime("%Y-%m-%d %H:%M:%S") if t.info.modified else "-"
        partitions = () if not parted else (
            f"{t.info.partitions:,}" if t.info.partitions is not None else "-",)
        rows.append((
            redact(t.location), *(t.values[f] for f in fields),
            f"{t.info.rows:,}" if t.info.rows is not None else "-", *partitions,
            size(t.info.bytes), modified, _fingerprint(t),
        ))
    return rows


def _record(t: Target) -> dict[str, Any]:
    """One target as a JSON object."""
    from prefect_ds._redact import redact

    return {
        "location": redact(t.location),
        "values": dict(t.values),
        "other_values": dict(t.other_values) if t.other_values is not None else None,
        "rows": t.info.rows,
        "partitions": t.info.partitions,
        "committed": t.info.committed,
        "bytes": t.info.bytes,
        "modified": t.info.modified.isoformat() if t.info.modified else None,
        "fingerprint": sorted(t.fingerprint.parts) if t.fingerprint else None,
        "problem": t.problem,
    }


def _fields(template: str) -> list[str]:
    from prefect_ds._cli.listing import patterns

    return patterns(template)[2]


def _warn_ambiguous(ambiguous: Sequence[Target], fields: Sequence[str], deleting: bool) -> None:
    from prefect_ds._redact import redact

    if not ambiguous:
        return
    typer.echo(
        f"warning: {plural(len(ambiguous), 'name')} can be read as two different sets of "
        f"values of {', '.join('{' + f + '}' for f in fields)}, and --where selects only one "
        f"reading; {'they are not deleted' if deleting else 'they are not listed'}:", err=True)
    for t in ambiguous:
        other = t.other_values or {}
        readings = " or ".join(
            ", ".join(f"{k}={v}" for k, v in values.items()) for values in (t.values, other)
        )
        typer.echo(f"  {redact(t.location)}  ({readings})", err=True)
    if deleting:
        typer.echo("  Delete them by their exact location if that is what you mean, or use a "
                   "template whose fields are separated by a character values cannot hold.",
                   err=True)


def _note_ambiguous(targets: Sequence[Target]) -> None:
    from prefect_ds._redact import redact

    split = [t for t in targets if t.ambiguous]
    if split:
        typer.echo(f"note: the template splits {plural(len(split), 'name')} into values in "
                   f"two ways; the values shown are one reading:", err=True)
        for t in split:
            typer.echo(f"  {redact(t.location)}", err=True)


VersionsOpt = Annotated[bool, typer.Option(
    "--versions", help="List every version of TEMPLATE's versioned targets, with the flow "
                       "run and task run that wrote each.")]
KeepOpt = Annotated[int | None, typer.Option(
    "--keep", help="Keep the newest N versions of each versioned target and remove the "
                   "older ones, instead of deleting targets.")]


def _versions_hint(template: str, fmt: Format | None = None,
                   option: str = "--versions") -> str:
    """A pointer to ``option`` when ``template`` has versioned targets instead."""
    from prefect_ds._cli.versions import versioned_count

    if fmt is None:
        from prefect_ds._registry import resolve_format

        try:
            fmt = resolve_format(template)
        except Exception:
            return ""
    count = versioned_count(template, fmt)
    if not count:
        return ""
    return (f"; it has {plural(count, 'versioned target')}: add {option} "
            f"(prefect-ds {'ls' if option == '--versions' else 'rm'} TEMPLATE {option})")


def stored(fmt: Format, location: str) -> TargetInfo:
    """What the format tells of the target (empty when it cannot, or nothing is there)."""
    from prefect_ds._format import TargetInfo, stored_info

    try:
        return stored_info(fmt, location)
    except Exception:
        return TargetInfo()


def _foreign_hint(location: str, fmt: Format) -> str:
    """A note when ``location`` holds data another tool wrote (its format says
    ``committed=False``): readable, but not a target of ours to list or delete."""
    info = stored(fmt, location)
    if info.committed is not False:
        return ""
    rows = plural(info.rows, "row") if info.rows is not None else "rows unknown"
    parts = f", {plural(info.partitions, 'partition')}" if info.partitions is not None else ""
    return (f"; it holds files another tool wrote, not committed by prefect-ds ({rows}"
            f"{parts}, {size(info.bytes)}): prefect-ds show reads them")


def ls_command(template: TemplateArg, format: FormatOpt = None, where: WhereOpt = None,
               json: JsonOpt = False, versions: VersionsOpt = False) -> None:
    """List the stored targets of TEMPLATE with the argument values of each.

    Also shows row counts where they are cheap to read, sizes, modification times and
    which fingerprint parts (code, inputs, ...) are stored with each target; "none" means
    it was written without invalidate_on, or by someone else. With --versions: every
    version of each versioned target, oldest first, with the run that wrote it.
    """
    from prefect_ds._redact import redact

    if versions:
        from prefect_ds._cli.versions import ls_versions

        ls_versions(template, format, _where(where), json, _fields(template))
        return

    ambiguous: list[Target] = []
    fmt, targets = _find(template, format, where, ambiguous)
    if json:
        emit_json([_record(t) for t in targets])
        return
    _warn_ambiguous(ambiguous, _fields(template), deleting=False)
    _note_ambiguous(targets)
    if not targets:
        typer.echo(f"no stored targets match {redact(template)!r}"
                   f"{_versions_hint(template, fmt) or _foreign_hint(template, fmt)}")
        return
    typer.echo(table(_rows(targets, _fields(template))))
    typer.echo(plural(len(targets), "target"))


def rm_command(
    template: TemplateArg,
    format: FormatOpt = None,
    where: WhereOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
    = False,
    keep: KeepOpt = None,
) -> None:
    """Delete the stored targets of TEMPLATE that --where selects (all without it).

    The next run of the checkpointed tasks recomputes exactly those. Prints exactly what
    will be deleted and asks first, unless --yes. Only names the template could have
    rendered are deleted; a name it splits two ways only when both readings are selected.
    With --keep N: of each versioned target, remove all but the newest N versions.
    """
    from prefect_ds._cli.listing import delete_targets
    from prefect_ds._redact import redact, scrub

    if keep is not None:
        from prefect_ds._cli.versions import rm_keep

        rm_keep(template, format, _where(where), keep, yes)
        return

    ambiguous: list[Target] = []
    fmt, targets = _find(template, format, where, ambiguous)
    _warn_ambiguous(ambiguous, _fields(template), deleting=True)
    _note_ambiguous(targets)
    if not targets:
        typer.echo(f"no stored targets match {redact(template)!r}; nothing deleted"
                   f"{_versions_hint(template, fmt, '--keep N')}")
        return
    typer.echo(table(_rows(targets, _fields(template))))
    these = "This target" if len(targets) == 1 else f"These {len(targets):,} targets"
    typer.echo(f"\n{these} will be deleted, each with its sidecar files, and nothing else:")
    for t in targets:
        typer.echo(f"  {redact(t.location)}")
    if not yes and not typer.confirm(
            f"Delete {'it' if len(targets) == 1 else 'them'}?", default=False):
        typer.echo("nothing deleted")
        raise typer.Exit(code=1)
    try:
        done = delete_targets(fmt, targets)
    except Exception as exc:
        raise fail(scrub(f"{type(exc).__name__}: {exc}", template,
                         *(t.location for t in targets))) from None
    for location in done:
        typer.echo(f"deleted {redact(location)}")
    typer.echo(f"deleted {plural(len(done), 'target')}")
