"""The ``prefect-ds`` command: list the installed formats, look inside a stored result,
list and delete a template's stored targets (``ls`` / ``rm``, in ``targets``).

Only typer is imported up front (with plain help, not rich's); the registry, the formats
and their libraries load when a command runs, so ``prefect-ds --help`` stays quick.
``formats``, ``ls`` and ``show`` print JSON with ``--json``.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefect_ds._cli import targets
from prefect_ds._cli import versions as cli_versions
from prefect_ds._cli.output import emit_json, fail, plural, size, table

if TYPE_CHECKING:
    import pandas as pd

    from prefect_ds._format import Format, TargetInfo

app = typer.Typer(
    name="prefect-ds",
    help="Inspect prefect-ds formats and the results stored with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: importing rich costs more than the whole command
)


def _version_callback(value: bool) -> None:
    if value:
        import importlib.metadata

        typer.echo(f"prefect-ds {importlib.metadata.version('prefect-ds')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """Inspect prefect-ds formats and the results stored with them."""


JsonOpt = targets.JsonOpt


@app.command("formats")
def formats_command(json: JsonOpt = False) -> None:
    """List each installed format: suffixes and URL schemes, and the package providing it.

    Formats that are declared but could not load (a missing optional dependency, a
    broken plugin) are listed after, with what to install.
    """
    from prefect_ds._errors import PrefectDSError
    from prefect_ds._registry import current

    try:
        reg = current()
    except PrefectDSError as exc:
        raise fail(str(exc)) from None
    if json:
        emit_json({
            "formats": [
                {"name": name, "suffixes": list(r.format.suffixes),
                 "schemes": list(r.format.schemes), "provider": r.provider,
                 "override": r.override}
                for name, r in sorted(reg.formats.items())
            ],
            "unavailable": [
                {"name": name, "install": why.install or None, "reason": why.reason}
                for name, why in sorted(reg.unavailable.items())
            ],
        })
        return
    rows = [("FORMAT", "SUFFIXES / SCHEMES", "PROVIDED BY")]
    for name in sorted(reg.formats):
        registration = reg.formats[name]
        fmt = registration.format
        matches = " ".join([*fmt.suffixes, *(f"{scheme}://" for scheme in fmt.schemes)])
        provider = registration.provider + (" (override)" if registration.override else "")
        rows.append((name, matches or "-", provider))
    typer.echo(table(rows))
    if reg.unavailable:
        typer.echo("\nNot available:")
        missing = [("FORMAT", "TO INSTALL", "REASON")]
        for name, why in sorted(reg.unavailable.items()):
            missing.append((name, why.install or "-", why.reason))
        typer.echo(table(missing))


@app.command("show")
def show_command(
    location: Annotated[str, typer.Argument(
        help="A stored result: path, fsspec URL (s3://, memory://), file.h5#key, "
             "or a database URL with #table. A file holding several results (file.h5) "
             "lists its keys.")],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="Format name; by default taken from the suffix or scheme.")
    ] = None,
    rows: Annotated[int, typer.Option(
        "--rows", "-n", min=0, help="How many of the first rows to print.")] = 5,
    json: JsonOpt = False,
    version: Annotated[str | None, typer.Option(
        "--version", "-V", help="Open this version of a versioned target "
                                "(prefect-ds ls TEMPLATE --versions lists them).")] = None,
) -> None:
    """Print the shape, dtypes and first rows of the result stored at LOCATION."""
    from prefect_ds._errors import UnknownFormatError
    from prefect_ds._redact import redact, scrub
    from prefect_ds._registry import resolve_format

    shown = redact(location)
    if version is not None:
        from prefect_ds._cli.versions import read_version, view

        df = read_version(location, format, version)
        name, shown = view(location, format).name, f"{shown} @ {version}"
        if json:
            emit_json({**_record(df, shown, name, rows), "version": version})
        else:
            typer.echo(_describe(df, shown, name, rows))
        return
    try:
        fmt = resolve_format(location, format)
    except UnknownFormatError as exc:
        files = _directory_files(location)
        if files is not None:
            raise fail(f"{shown!r} is a directory of {plural(len(files), 'file')}, not one "
                       f"stored result; show one of its files"
                       + (f", e.g. prefect-ds show {redact(files[0])}" if files else "")
                       ) from None
        raise fail(f"{scrub(str(exc), location)} On the command line, name a format with "
                   f"--format NAME.") from None
    try:
        info = targets.stored(fmt, location)
        if not fmt.exists(location) and info.committed is not False:  # not another tool's
            latest = cli_versions.latest(location, fmt)
            if latest is not None:  # a versioned target: its latest version
                show_command(location, format, rows, json, latest)
                return
            _not_a_target(fmt, location, json)
        df = fmt.read(location)
    except typer.Exit:
        raise
    except Exception as exc:  # any library's error: one line, no traceback
        raise fail(scrub(f"{type(exc).__name__}: {exc}", location)) from None
    if json:
        emit_json({**_record(df, shown, fmt.name, rows), "partitions": info.partitions,
                   "committed": info.committed})
    else:
        typer.echo(_describe(df, shown, fmt.name, rows, info))


def _not_a_target(fmt: Format, location: str, json: bool) -> None:
    """Say what is at ``location`` when it is not one stored result, and exit."""
    from prefect_ds._cli.listing import natural_key
    from prefect_ds._format import SupportsListing
    from prefect_ds._redact import redact

    shown = redact(location)
    if "#" not in location and isinstance(fmt, SupportsListing):
        try:  # a file holding several results: list them
            inside = sorted(fmt.list_locations(f"{location}#*"), key=natural_key)
        except Exception:
            inside = []
        if inside:
            keys = [item.partition("#")[2] for item in inside]
            if json:
                emit_json({"location": shown, "format": fmt.name, "kind": "file of targets",
                           "keys": keys})
            else:
                typer.echo(f"{shown} holds {plural(len(keys), 'stored result')} "
                           f"(format {fmt.name}); show one with LOCATION#KEY:")
                typer.echo("\n".join(f"  {shown}#{key}" for key in keys))
            raise typer.Exit()
    files = _directory_files(location)
    if files is not None:
        message = (
            f"{shown!r} is a directory of {plural(len(files), 'file')}, such as a "
            f"partitioned dataset, not one stored result: prefect-ds stores each result as "
            f"one file (format {fmt.name}). Show one file"
            + (f", e.g. prefect-ds show {redact(files[0])}" if files else "")
        )
        if json:
            emit_json({"location": shown, "format": fmt.name, "kind": "directory",
                       "files": [redact(f) for f in files], "message": message})
            raise typer.Exit(code=1)
        raise fail(message)
    raise fail(f"nothing is stored at {shown!r} (format {fmt.name!r})")


def _directory_files(location: str) -> list[str] | None:
    """The files under ``location`` (natural order) if it is a directory, else None."""
    from prefect_ds._cli.listing import natural_key
    from prefect_ds._storage.files import filesystem

    try:
        fs, path = filesystem(location.partition("#")[0])
        if not fs.isdir(path):
            return None
        found = [str(p) for p in fs.find(path)]
    except Exception:
        return None
    head, base = str(path).rstrip("/"), location.partition("#")[0].rstrip("/")
    files = [base + f[len(head):] if f.startswith(head) else f for f in found]
    return sorted(files, key=natural_key)


def _record(df: pd.DataFrame, location: str, format_name: str, rows: int) -> dict[str, Any]:
    """What ``show --json`` prints: shape, index, dtypes and the first rows."""
    import json as _json

    head = _json.loads(df.head(rows).to_json(orient="split", date_format="iso",
                                             default_handler=str))
    return {
        "location": location,
        "format": format_name,
        "rows": int(df.shape[0]),
        "columns": int(df.shape[1]),
        "index": {"names": [None if n is None else str(n) for n in df.index.names],
                  "type": type(df.index).__name__,
                  "dtypes": [str(d) for d in _index_dtypes(df)]},
        "dtypes": {str(column): str(dtype) for column, dtype in df.dtypes.items()},
        "head": {"index": head.get("index", []), "data": head.get("data", [])},
    }


def _describe(df: pd.DataFrame, location: str, format_name: str, rows: int,
              info: TargetInfo | None = None) -> str:
    """Shape, index, dtypes and head of ``df`` as plain text sized to the terminal; how a
    multi-file target is stored (partitions, committed or not) when ``info`` says."""
    import pandas as pd

    n_rows, n_cols = df.shape
    index_names = [str(name) for name in df.index.names if name is not None]
    lines = [
        f"{location}  (format {format_name})",
        f"shape: {plural(n_rows, 'row')} x {plural(n_cols, 'column')}",
    ]
    if info is not None and (info.partitions is not None or info.committed is not None):
        parts = (plural(info.partitions, "partition") + ", "
                 if info.partitions is not None else "")
        lines.append(f"stored: {parts}{size(info.bytes)}, " + (
            "committed by prefect-ds" if info.committed else
            "NOT committed by prefect-ds (files another tool wrote, read as they are now)"))
    lines += [
        f"index: {', '.join(index_names) or 'unnamed'} ({type(df.index).__name__}, "
        f"{', '.join(str(d) for d in _index_dtypes(df))})",
        "dtypes:",
    ]
    dtypes = [(f"  {column}", str(dtype)) for column, dtype in df.dtypes.items()]
    if dtypes:
        lines.append(table(dtypes))
    if rows:
        width = shutil.get_terminal_size((120, 24)).columns
        with pd.option_context("display.width", width, "display.max_columns", 50,
                               "display.max_colwidth", 40):
            first = min(rows, n_rows)
            lines += ["", f"first {plural(first, 'row') if first != 1 else 'row'}:",
                      str(df.head(rows))]
    return "\n".join(lines)


def _index_dtypes(df: pd.DataFrame) -> list[object]:
    import pandas as pd

    if isinstance(df.index, pd.MultiIndex):
        return list(df.index.dtypes)
    return [df.index.dtype]


app.command("ls")(targets.ls_command)
app.command("rm")(targets.rm_command)
app.command("diff")(cli_versions.diff_command)


def main() -> None:
    """Console-script entry point."""
    app()
