"""The ``prefect-ds`` command: list the installed formats, look inside a stored result,
list and delete a template's stored targets (``ls`` / ``rm``, in ``targets``).

Only typer is imported up front; the registry, the formats and their libraries load
when a command runs, so ``prefect-ds --help`` stays quick.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Annotated

import typer

from prefect_ds._cli import targets
from prefect_ds._cli.output import fail, table

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(
    name="prefect-ds",
    help="Inspect prefect-ds formats and the results stored with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


@app.command("formats")
def formats_command() -> None:
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
             "or a database URL with #table.")],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="Format name; by default taken from the suffix or scheme.")
    ] = None,
    rows: Annotated[int, typer.Option(
        "--rows", "-n", min=0, help="How many of the first rows to print.")] = 5,
) -> None:
    """Print the shape, dtypes and first rows of the result stored at LOCATION."""
    from prefect_ds._errors import UnknownFormatError
    from prefect_ds._redact import redact
    from prefect_ds._registry import resolve_format

    try:
        fmt = resolve_format(location, format)
    except UnknownFormatError as exc:
        raise fail(f"{exc} On the command line, name a format with --format NAME.") from None
    try:
        if not fmt.exists(location):
            raise fail(f"nothing is stored at {redact(location)!r} (format {fmt.name!r})")
        df = fmt.read(location)
    except typer.Exit:
        raise
    except Exception as exc:  # any library's error: one line, no traceback
        raise fail(f"{type(exc).__name__}: {exc}") from None
    typer.echo(_describe(df, redact(location), fmt.name, rows))


def _describe(df: pd.DataFrame, location: str, format_name: str, rows: int) -> str:
    """Shape, index, dtypes and head of ``df`` as plain text sized to the terminal."""
    import pandas as pd

    n_rows, n_cols = df.shape
    index_names = [str(name) for name in df.index.names if name is not None]
    lines = [
        f"{location}  (format {format_name})",
        f"shape: {n_rows:,} rows x {n_cols} columns",
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
            lines += ["", f"first {min(rows, n_rows)} rows:", str(df.head(rows))]
    return "\n".join(lines)


def _index_dtypes(df: pd.DataFrame) -> list[object]:
    import pandas as pd

    if isinstance(df.index, pd.MultiIndex):
        return list(df.index.dtypes)
    return [df.index.dtype]


app.command("ls")(targets.ls_command)
app.command("rm")(targets.rm_command)


def main() -> None:
    """Console-script entry point."""
    app()
