"""``medimg index`` and ``medimg query``: the DICOM catalog from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

__all__ = ["register"]

_DB_HELP = ("Catalog: a SQLAlchemy URL (postgresql://user@host:port/db) or a SQLite file path; "
            "default $MEDIMG_CATALOG_URL or <user data dir>/medimg/catalog.sqlite.")


def _progress(description: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())


def index(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Folder of DICOM files (searched recursively).")],
    db: Annotated[Optional[str], typer.Option("--db", help=_DB_HELP)] = None,  # noqa: UP045
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes reading headers (default: all cores for large folders).")] = None,  # noqa: UP045
) -> None:
    """Index DIR into the catalog: new and changed files are read, unchanged ones skipped, vanished ones marked."""
    from medimg.catalog import Catalog
    from medimg.pipeline.index import index_folder

    with Catalog(db) as catalog, _progress("indexing") as progress:
        task = progress.add_task("index", total=None)
        report = index_folder(catalog, folder, workers=workers,
                              progress=lambda done, total: progress.update(task, completed=done, total=total))
    typer.echo(
        f"{report.n_files} files in {report.seconds:.1f} s: {report.n_new} new, {report.n_changed} changed, "
        f"{report.n_unchanged} unchanged, {report.n_missing} vanished; {report.n_ok} indexed, "
        f"{report.n_corrupt} corrupt, {report.n_not_dicom} not DICOM"
    )


def query(
    db: Annotated[Optional[str], typer.Option("--db", help=_DB_HELP)] = None,  # noqa: UP045
    patient: Annotated[Optional[str], typer.Option("--patient", help="Patient ID, or part of the patient's name (case-insensitive; taken literally: % _ * are not wildcards).")] = None,  # noqa: UP045
    modality: Annotated[Optional[str], typer.Option("--modality", help="Modality, or several: CT,MR.")] = None,  # noqa: UP045
    date_from: Annotated[Optional[str], typer.Option("--from", help="Study date from (YYYYMMDD or YYYY-MM-DD), inclusive.")] = None,  # noqa: UP045
    date_to: Annotated[Optional[str], typer.Option("--to", help="Study date to, inclusive.")] = None,  # noqa: UP045
    body_part: Annotated[Optional[str], typer.Option("--body-part", help="Body Part Examined.")] = None,  # noqa: UP045
    description: Annotated[Optional[str], typer.Option("--description", help="Regular expression searched in series and study descriptions (case-insensitive).")] = None,  # noqa: UP045
    level: Annotated[str, typer.Option("--level", help="One row per: study, series or instance.")] = "series",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many rows.")] = None,  # noqa: UP045
) -> None:
    """List studies, series or instances of the catalog that match the filters."""
    from medimg.catalog import FORMATS, Catalog, format_rows
    from medimg.catalog import query as run_query
    from medimg.errors import UnknownNameError

    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, FORMATS)
    with Catalog(db) as catalog:
        rows = run_query(catalog, patient=patient, modality=modality, date_from=date_from, date_to=date_to,
                         body_part=body_part, description=description, level=level, limit=limit)  # type: ignore[arg-type]
    if fmt != "table":
        typer.echo(format_rows(rows, fmt), nl=False)  # type: ignore[arg-type]
        return
    if not rows:
        typer.echo(f"no {level} matches the filters")
        return
    from rich.console import Console
    from rich.table import Table

    shown = [k for k in rows[0] if k not in ("first_file",)]
    table = Table(title=f"{len(rows)} {level} row(s)")
    for k in shown:
        table.add_column(k, overflow="fold")
    for row in rows:
        table.add_row(*("" if row[k] is None else str(row[k]) for k in shown))
    Console(highlight=False, width=max(160, Console().width)).print(table)


def register(app: typer.Typer) -> None:
    """Add ``index`` and ``query`` to the ``medimg`` app."""
    app.command("index")(index)
    app.command("query")(query)
