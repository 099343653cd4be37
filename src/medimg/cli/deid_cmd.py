"""``medimg deid``: de-identify a DICOM folder; ``deid verify`` checks the result; ``deid keygen``.

``medimg deid IN OUT --key KEYFILE`` runs the de-identification (the ``run`` subcommand is
implied when the first argument is not a subcommand name).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

__all__ = ["register"]


class _DefaultRunGroup(TyperGroup):
    """A group whose default subcommand is ``run``: ``deid IN OUT`` means ``deid run IN OUT``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _progress(description: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())


deid_app = typer.Typer(
    cls=_DefaultRunGroup,
    help="De-identify DICOM files (PS3.15 Annex E Basic Profile), verify the result, make keys.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@deid_app.command("run")
def run(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Input folder (or file); never modified.")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder (outside IN).")],
    key: Annotated[Path, typer.Option("--key", help="Secret key file (make one with `medimg deid keygen`).")],
    modified_dates: Annotated[bool, typer.Option("--modified-dates", help="Retain Longitudinal Temporal Information with Modified Dates: shift dates by one keyed offset per patient.")] = False,
    patient_characteristics: Annotated[bool, typer.Option("--patient-characteristics", help="Retain Patient Characteristics (age, sex, size, weight...).")] = False,
    device_identity: Annotated[bool, typer.Option("--device-identity", help="Retain Device Identity (station name, serial numbers...).")] = False,
    clean_descriptors: Annotated[bool, typer.Option("--clean-descriptors", help="Clean Descriptors: keep descriptions with identifying text removed.")] = False,
    keep_private: Annotated[Optional[list[str]], typer.Option("--keep-private", help="Safe-list a private attribute, GGGG:CREATOR:EE (repeatable); every other private attribute is removed.")] = None,  # noqa: UP045
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help="Folder for files with burned-in annotation (default OUT-quarantine).")] = None,  # noqa: UP045
    mapping: Annotated[Optional[Path], typer.Option("--mapping", help="Write the re-identification mapping (PHI!) to this JSON Lines file, outside OUT.")] = None,  # noqa: UP045
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Processes (default: all cores for large inputs).")] = None,  # noqa: UP045
) -> None:
    """De-identify every DICOM file under IN into OUT, with an audit trail (OUT/deid-audit.jsonl)."""
    from medimg.deid import Options, PrivateTag, load_key
    from medimg.pipeline.deid import deidentify

    options = Options(
        retain_long_modified_dates=modified_dates,
        retain_patient_characteristics=patient_characteristics,
        retain_device_identity=device_identity,
        clean_descriptors=clean_descriptors,
        safe_private=frozenset(PrivateTag.parse(p) for p in keep_private or ()),
    )
    secret = load_key(key)
    with _progress("de-identifying") as progress:
        task = progress.add_task("deid", total=None)
        report = deidentify(src, dst, key=secret, options=options, quarantine_dir=quarantine,
                            mapping_path=mapping, workers=workers,
                            progress=lambda done, total: progress.update(task, completed=done, total=total))
    for _rel, message in report.failures:
        typer.echo(f"failed: {message}", err=True)
    shared = (f"; {report.n_collisions} named <SOP UID>-<hash>.dcm, their SOP Instance UID being shared with a "
              f"different object" if report.n_collisions else "")
    renamed = f", {report.n_renamed} earlier output(s) renamed likewise" if report.n_renamed else ""
    typer.echo(
        f"{report.n_inputs} input files: {report.n_done} de-identified (new files{shared}){renamed}, "
        f"{report.n_duplicate} identical to an output already there (no new file), {report.n_skipped} already "
        f"done, {report.n_quarantined} quarantined ({report.quarantine_dir}), {report.n_failed} failed"
        + (" (copied to the quarantine folder with their reasons)" if report.n_failed else "")
    )
    typer.echo(f"audit: {report.audit_path}: {report.audit_records} records, last hash {report.audit_last_hash} "
               "(keep this line elsewhere to detect a rollback)")
    if report.n_failed:
        from medimg.errors import MedimgError

        raise MedimgError(f"{report.n_failed} file(s) could not be de-identified (listed above); the rest is done")


@deid_app.command("verify")
def verify_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="A de-identified folder.")],
    against: Annotated[Path, typer.Option("--against", help="The original input folder.")],
    key: Annotated[Optional[Path], typer.Option("--key", help="The key file used for OUT: the audit trail's signatures are checked too (without it, only its hash chain and head).")] = None,  # noqa: UP045
) -> None:
    """Search every element of OUT (private and nested too) for identifying values of the input, and check
    the audit trail and the outputs against it; exit 1 on any finding."""
    from medimg.deid import load_key, verify

    secret = load_key(key) if key is not None else None
    with _progress("verifying") as progress:
        task = progress.add_task("verify", total=None)
        report = verify(out, against, key=secret, progress=lambda d, t: progress.update(task, completed=d, total=t))
    for finding in report.findings[:200]:
        typer.echo(f"LEAK {finding}")
    if len(report.findings) > 200:
        typer.echo(f"... and {len(report.findings) - 200} more")
    for rel in report.unreadable_outputs:
        typer.echo(f"UNREADABLE {rel}")
    for problem in report.output_problems:
        typer.echo(f"OUTPUT {problem}")
    if not report.audit_ok:
        typer.echo(f"AUDIT TRAIL BROKEN: {report.audit_problem}")
    elif report.audit_authenticated:
        typer.echo(f"audit trail: {report.audit_records} records; chain, head and signatures verified")
    else:
        typer.echo(f"audit trail: {report.audit_records} records; chain and head verified, signatures NOT "
                   "checked (pass --key)")
    status = "OK" if report.ok else "FAILED"
    typer.echo(f"{status}: {report.n_outputs} output files checked against {report.n_inputs} inputs "
               f"({report.n_paired} paired through the audit trail), {len(report.findings)} findings")
    if not report.ok:
        from medimg.errors import MedimgError

        problems = len(report.findings) + len(report.output_problems) + len(report.unreadable_outputs) + (
            not report.audit_ok)
        raise MedimgError(f"{out} did not verify: {problems} problem(s) (listed above)")


@deid_app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="Key file to create (never overwritten).")]) -> None:
    """Create a random secret key file (owner-readable only)."""
    from medimg.deid import generate_key_file

    generate_key_file(path)
    typer.echo(f"wrote {path}; keep it secret and keep it: the same key gives the same pseudonyms")


def register(app: typer.Typer) -> None:
    """Add ``deid`` (run, verify, keygen) to the ``medimg`` app."""
    app.add_typer(deid_app, name="deid")
