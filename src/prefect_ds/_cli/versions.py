"""The versions commands: ``ls --versions``, ``show --version``, ``rm --keep``, ``diff``.

Each finds versioned targets through the versioned view of the template's format
(``prefect_ds._versions.versioned``), so files, object stores and databases answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefect_ds._cli.output import emit_json, fail, plural, size, table

if TYPE_CHECKING:
    from prefect_ds._cli.listing import Target
    from prefect_ds._format import Format
    from prefect_ds._versions.versioned import VersionedFormat


def view(location: str, format: str | None) -> VersionedFormat:
    """The versioned view of ``location``'s format (a one-line error if it has none)."""
    from prefect_ds._errors import PrefectDSError
    from prefect_ds._redact import scrub
    from prefect_ds._registry import resolve_format
    from prefect_ds._versions.versioned import versioned

    try:
        return versioned(resolve_format(location, format))
    except PrefectDSError as exc:
        raise fail(scrub(str(exc), location)) from None


def find(template: str, format: str | None,
         where: dict[str, str]) -> tuple[VersionedFormat, list[Target]]:
    """The versioned targets of ``template`` that ``where`` selects."""
    from prefect_ds._cli.listing import find_targets
    from prefect_ds._redact import scrub

    fmt = view(template, format)
    try:
        return fmt, find_targets(fmt, template, where)
    except Exception as exc:  # a storage library's error: one line, no traceback
        raise fail(scrub(f"{type(exc).__name__}: {exc}", template)) from None


def latest(location: str, fmt: Format) -> str | None:
    """The latest committed version of ``location``, if it is a versioned target."""
    from prefect_ds._format import SupportsVersions

    if not isinstance(fmt, SupportsVersions):
        return None
    try:
        found = fmt.committed_versions(location)
    except Exception:  # not a location this format keeps versions for
        return None
    return found[-1] if found else None


def versioned_count(template: str, fmt: Format) -> int:
    """How many versioned targets ``template`` has (0 when its format keeps none)."""
    from prefect_ds._cli.listing import find_targets
    from prefect_ds._format import SupportsVersions
    from prefect_ds._versions.versioned import versioned

    if not isinstance(fmt, SupportsVersions):
        return 0
    try:
        return len(find_targets(versioned(fmt), template, {}))
    except Exception:
        return 0


def _records(fmt: VersionedFormat, target: Target) -> list[dict[str, Any]]:
    versions = fmt.versions(target.location)
    out = []
    for version in versions:
        record = fmt.versions_of.version_record(target.location, version)
        out.append({"version": version, "latest": version == versions[-1], **{
            k: record.get(k) for k in ("rows", "bytes", "written_at", "flow_run_id",
                                       "flow_run_name", "task_run_id", "task_run_name",
                                       "fingerprint")}})
    return out


def ls_versions(template: str, format: str | None, where: dict[str, str], json: bool,
                fields: Sequence[str]) -> None:
    """Print every version of every versioned target of ``template``, with its run."""
    from prefect_ds._redact import redact

    fmt, targets = find(template, format, where)
    listed = [(t, _records(fmt, t)) for t in targets]
    if json:
        emit_json([{"location": redact(t.location), "values": dict(t.values),
                    "versions": records} for t, records in listed])
        return
    if not targets:
        typer.echo(f"no versioned targets match {redact(template)!r}")
        return
    rows: list[tuple[str, ...]] = [("LOCATION", *(f.upper() for f in fields), "VERSION",
                                    "ROWS", "SIZE", "FLOW RUN", "TASK RUN", "FINGERPRINT")]
    count = 0
    for target, records in listed:
        for r in records:
            count += 1
            flow = f"{r['flow_run_name']} ({r['flow_run_id']})" if r["flow_run_id"] else "-"
            rows.append((redact(target.location), *(target.values[f] for f in fields),
                         r["version"] + (" (latest)" if r["latest"] else ""),
                         f"{r['rows']:,}" if r["rows"] is not None else "-", size(r["bytes"]),
                         flow, str(r["task_run_id"] or "-"),
                         "+".join(sorted(r["fingerprint"])) if r["fingerprint"] else "none"))
    typer.echo(table(rows))
    typer.echo(f"{plural(count, 'version')} of {plural(len(targets), 'target')}")


def rm_keep(template: str, format: str | None, where: dict[str, str], keep: int,
            yes: bool) -> None:
    """Remove all but the newest ``keep`` versions of each selected versioned target."""
    from prefect_ds._redact import redact, scrub

    if keep < 1:
        raise fail(f"--keep {keep}: keep at least 1 version (the latest); to delete a "
                   f"target with all its versions, use prefect-ds rm without --keep")
    fmt, targets = find(template, format, where)
    doomed = {t.location: fmt.versions(t.location)[:-keep] for t in targets}
    doomed = {loc: ids for loc, ids in doomed.items() if ids}
    if not doomed:
        typer.echo(f"no versioned target of {redact(template)!r} has more than "
                   f"{plural(keep, 'version')}; nothing removed")
        return
    typer.echo("These versions will be removed (the newest "
               f"{plural(keep, 'version')} of each target stay):")
    for location, ids in doomed.items():
        for version in ids:
            typer.echo(f"  {redact(location)}  {version}")
    total = sum(len(ids) for ids in doomed.values())
    if not yes and not typer.confirm(f"Remove {plural(total, 'version')}?", default=False):
        typer.echo("nothing removed")
        raise typer.Exit(code=1)
    removed = 0
    for location in doomed:
        try:  # prune again: versions committed meanwhile only push old ones out
            removed += len(fmt.prune(location, keep))
        except Exception as exc:
            raise fail(scrub(f"{type(exc).__name__}: {exc}", location)) from None
    typer.echo(f"removed {plural(removed, 'version')}")


def read_version(location: str, format: str | None, version: str) -> Any:
    """The frame of one version of ``location`` (a one-line error if it is not there)."""
    from prefect_ds._redact import scrub

    fmt = view(location, format)
    try:
        return fmt.read_version(location, version)
    except Exception as exc:
        raise fail(scrub(f"{type(exc).__name__}: {exc}", location)) from None


def diff_command(
    location: Annotated[str, typer.Argument(help="A versioned target's location.")],
    old: Annotated[str, typer.Argument(help="The first version id.")],
    new: Annotated[str, typer.Argument(help="The second version id.")],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="Format name; by default taken from the suffix or scheme.")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
    = False,
) -> None:
    """Summarise how two versions of LOCATION differ: schema, rows, per-column statistics."""
    from prefect_ds._redact import redact
    from prefect_ds._versions.diff import diff

    found = diff(read_version(location, format, old), read_version(location, format, new))
    if json:
        emit_json({"location": redact(location), "old": old, "new": new, **found})
        return
    before, after = found["rows"]
    lines = [f"{redact(location)}: {old} -> {new}",
             f"rows: {before:,} -> {after:,} ({after - before:+,})"]
    for item in found["added"]:
        lines.append(f"added column {item['column']!r} ({item['dtype']})")
    for item in found["removed"]:
        lines.append(f"removed column {item['column']!r} ({item['dtype']})")
    for item in found["retyped"]:
        lines.append(f"column {item['column']!r}: {item['old']} -> {item['new']}")
    if found["index"][0] != found["index"][1]:
        lines.append(f"index: {', '.join(found['index'][0])} -> {', '.join(found['index'][1])}")
    stats: list[tuple[str, ...]] = [("COLUMN", "STATISTIC", "OLD", "NEW")]
    for column in found["columns"]:
        for key, (was, now) in column["changed"].items():
            stats.append((column["column"], key, _shown(was), _shown(now)))
    if len(stats) > 1:
        lines += ["", table(stats)]
    else:
        lines.append("no column's summary statistics changed")
    typer.echo("\n".join(lines))


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
