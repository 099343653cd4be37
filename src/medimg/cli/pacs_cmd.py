"""``medimg pacs echo|find|get|send``: a PACS over DIMSE (dicom://AET@host:port) or DICOMweb (http://...)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["register"]

_SERVER = "dicom://AET@host:port (DIMSE) or http(s)://host:port/dicom-web (DICOMweb)."
_DB_HELP = "Catalog URL or SQLite path (default $MEDIMG_CATALOG_URL or the user data dir)."

pacs_app = typer.Typer(help="Echo, find, get and send DICOM objects with a PACS (DIMSE or DICOMweb).",
                       no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


def _server(text: str, calling_aet: str):  # noqa: ANN202 - DimseNode | WebNode
    from medimg.pacs import parse_server

    return parse_server(text, calling_aet=calling_aet)


@pacs_app.command("echo")
def echo(
    server: Annotated[str, typer.Argument(help=_SERVER)],
    calling_aet: Annotated[str, typer.Option("--calling-aet", help="Our AE title.")] = "MEDIMG",
) -> None:
    """Check that the server answers (C-ECHO, or a QIDO-RS search for DICOMweb)."""
    from medimg.pacs import echo as run_echo

    seconds = run_echo(_server(server, calling_aet))
    typer.echo(f"{server}: OK ({seconds * 1000:.0f} ms)")


@pacs_app.command("find")
def find(
    server: Annotated[str, typer.Argument(help=_SERVER)],
    level: Annotated[str, typer.Option("--level", help="patient, study, series or image.")] = "study",
    patient_id: Annotated[Optional[str], typer.Option("--patient-id")] = None,  # noqa: UP045
    patient_name: Annotated[Optional[str], typer.Option("--patient-name", help="Wildcards * and ? allowed.")] = None,  # noqa: UP045
    study: Annotated[Optional[str], typer.Option("--study", help="Study Instance UID.")] = None,  # noqa: UP045
    series: Annotated[Optional[str], typer.Option("--series", help="Series Instance UID.")] = None,  # noqa: UP045
    modality: Annotated[Optional[str], typer.Option("--modality")] = None,  # noqa: UP045
    date: Annotated[Optional[str], typer.Option("--date", help="Study date or range FROM..TO (YYYYMMDD).")] = None,  # noqa: UP045
    description: Annotated[Optional[str], typer.Option("--description", help="Study/series description; wildcards allowed.")] = None,  # noqa: UP045
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    calling_aet: Annotated[str, typer.Option("--calling-aet", help="Our AE title.")] = "MEDIMG",
) -> None:
    """Search the server (C-FIND or QIDO-RS) and print the matches."""
    from medimg.catalog import FORMATS, format_rows
    from medimg.errors import UnknownNameError
    from medimg.pacs import find as run_find

    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, FORMATS)
    rows = run_find(_server(server, calling_aet), level=level, patient_id=patient_id, patient_name=patient_name,
                    study_uid=study, series_uid=series, modality=modality, study_date=date,
                    description=description)
    if fmt != "table":
        from medimg.pacs.dimse import RETURN_KEYS

        columns = sorted({k for r in rows for k in r}) or list(RETURN_KEYS.get(level, ()))
        typer.echo(format_rows(rows, fmt, columns=columns), nl=False)  # type: ignore[arg-type]
        return
    if not rows:
        typer.echo(f"no {level} matches on {server}")
        return
    from rich.console import Console
    from rich.table import Table

    columns = sorted({k for r in rows for k in r})
    table = Table(title=f"{len(rows)} {level} match(es)")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r[c]) for c in columns))
    Console(highlight=False).print(table)


@pacs_app.command("get")
def get(
    server: Annotated[str, typer.Argument(help=_SERVER)],
    study: Annotated[str, typer.Option("--study", help="Study Instance UID.")],
    dest: Annotated[Path, typer.Option("--dest", help="Folder for the retrieved files.")],
    series: Annotated[Optional[str], typer.Option("--series", help="Only this series.")] = None,  # noqa: UP045
    instance: Annotated[Optional[str], typer.Option("--instance", help="Only this SOP instance (needs --series).")] = None,  # noqa: UP045
    move: Annotated[bool, typer.Option("--move", help="DIMSE: C-MOVE to a storage SCP run here instead of C-GET.")] = False,
    move_aet: Annotated[Optional[str], typer.Option("--move-aet", help="Our storage AE title for C-MOVE (default the calling AE title).")] = None,  # noqa: UP045
    port: Annotated[int, typer.Option("--port", help="Port of our storage SCP for C-MOVE.")] = 11113,
    db: Annotated[Optional[str], typer.Option("--db", help=_DB_HELP)] = None,  # noqa: UP045
    no_catalog: Annotated[bool, typer.Option("--no-catalog", help="Do not index the retrieved files.")] = False,
    calling_aet: Annotated[str, typer.Option("--calling-aet", help="Our AE title.")] = "MEDIMG",
) -> None:
    """Retrieve a study, series or instance (C-GET, C-MOVE or WADO-RS) and index it into the catalog."""
    from medimg.pacs import retrieve

    node = _server(server, calling_aet)
    catalog = None
    if not no_catalog:
        from medimg.catalog import Catalog

        catalog = Catalog(db)
    try:
        report = retrieve(node, study_uid=study, series_uid=series, sop_uid=instance, dest=dest,
                          method="move" if move else "get", move_aet=move_aet, move_port=port, catalog=catalog)
    finally:
        if catalog is not None:
            catalog.close()
    for problem in report.problems:
        typer.echo(f"not stored: {problem}", err=True)
    where = f"; indexed into {catalog!r}" if catalog is not None else ""
    typer.echo(f"retrieved {len(report.files)} files into {dest} ({report.failed} failed){where}")
    if report.failed:
        from medimg.errors import MedimgError

        raise MedimgError(f"{report.failed} retrieved instance(s) could not be stored")


@pacs_app.command("send")
def send(
    server: Annotated[str, typer.Argument(help=_SERVER)],
    files: Annotated[list[Path], typer.Argument(help="DICOM files or folders to store.")],
    derived: Annotated[bool, typer.Option("--derived", help="Record the files in the catalog as derived objects (SEG, RTSTRUCT, SR...) of what they reference.")] = False,
    db: Annotated[Optional[str], typer.Option("--db", help=_DB_HELP)] = None,  # noqa: UP045
    force: Annotated[bool, typer.Option("--force", help="Send every file, even instances the server already holds (default: ask first and skip those).")] = False,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Tries again after a timeout, an abort or a busy server, waiting 0.5 s, 1 s, 2 s...")] = 3,
    calling_aet: Annotated[str, typer.Option("--calling-aet", help="Our AE title.")] = "MEDIMG",
) -> None:
    """Store files on the server (C-STORE or STOW-RS); instances it already holds are skipped."""
    from medimg.errors import EmptyInputError
    from medimg.io.dicom.scan import list_files
    from medimg.pacs import send as run_send

    paths: list[Path] = []
    for f in files:
        paths.extend(list_files(f))
    if not paths:
        raise EmptyInputError("no files to send")
    catalog = None
    if derived:
        from medimg.catalog import Catalog

        catalog = Catalog(db)
    try:
        report = run_send(_server(server, calling_aet), paths, catalog=catalog, derived=derived,
                          skip_existing=not force, retries=retries)
    finally:
        if catalog is not None:
            catalog.close()
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    for path, reason in report.failures:
        typer.echo(f"failed: {path}: {reason}", err=True)
    retried = f", {report.retries} retries" if report.retries else ""
    typer.echo(f"sent {report.sent} of {len(paths)} files to {server}: {len(report.skipped)} already held "
               f"(skipped), {len(report.failures)} not stored{retried}")
    if report.failures:
        from medimg.errors import MedimgError

        raise MedimgError(f"{len(report.failures)} file(s) were not stored (listed above)")


def register(app: typer.Typer) -> None:
    """Add ``pacs`` (echo, find, get, send) to the ``medimg`` app."""
    app.add_typer(pacs_app, name="pacs")
