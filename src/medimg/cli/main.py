"""The ``medimg`` command.

A thin layer over the public API: every subcommand calls the functions a Python user would.
User errors (bad files, inconsistent series, unknown names) print one line on stderr and exit
with status 2; ``--debug`` shows the traceback instead. Heavy modules are imported inside the
subcommands so that ``medimg --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg import __version__
from medimg.errors import MedimgError, UserInputError

__all__ = ["app", "main"]

_APP_SETTINGS: dict[str, Any] = {
    "name": "medimg",
    "help": "Medical imaging analytics: from raw DICOM to a validated, reproducible result.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,  # plain click help: rendering it with rich costs ~0.15 s a start
    "context_settings": {"help_option_names": ["-h", "--help"]},
}
app = typer.Typer(**_APP_SETTINGS)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medimg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,  # a plain bool flag: typer coerces it without loading pydantic (start-up cost)
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Medical imaging analytics: from raw DICOM to a validated, reproducible result."""


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _progress(description: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )


# --------------------------------------------------------------------------- info
@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A DICOM folder or file, or a NIfTI/NRRD/MHA/PNG file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    pixels: Annotated[bool, typer.Option(help="Read pixels to report value ranges (slower).")] = True,
) -> None:
    """Show the patients, studies and series found: modality, size, spacing, orientation, value range, warnings."""
    from medimg.cli.summary import summarize_path

    with _progress("reading headers") as progress:
        task = progress.add_task("scan", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = summarize_path(path, read_pixels=pixels, progress=report)
    from medimg.cli.summary import count_problems, render_summary

    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        render_summary(summary, _console())
    if count_problems(summary):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- convert
@app.command()
def convert(
    src: Annotated[Path, typer.Argument(metavar="IN", help="A DICOM folder or file, or any image file medimg reads.")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output file; format from the extension (.nii.gz, .nii, .nrrd, .mha, .png).")],
    series: Annotated[Optional[str], typer.Option("--series", help="Series Instance UID (or UID#n) when IN holds several.")] = None,  # noqa: UP045
    resample: Annotated[bool, typer.Option("--resample", help="Resample irregular series (gaps, unequal spacing, gantry tilt) onto a regular grid instead of failing.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ext: Annotated[str, typer.Option("--ext", help="With OUT a folder: the output format of every series (.nii.gz, .nii, .nrrd, .mha).")] = ".nii.gz",
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="With OUT a folder: worker processes (default: the CPUs).")] = None,  # noqa: UP045
    slice_: Annotated[Optional[int], typer.Option("--slice", min=0, help="Write only this slice (0-based, along the slowest axis) of a 3-D image, e.g. to a PNG.")] = None,  # noqa: UP045
    input_hashes: Annotated[bool, typer.Option("--input-hashes/--no-input-hashes", help="With OUT a folder: record the SHA-256 of every input file in the sidecars (default; about 1 s of CPU per GB read). The outputs are hashed either way.")] = True,
) -> None:
    """Convert IN (a DICOM series or an image file) to OUT; the format follows OUT's extension.

    OUT without an image extension is a folder: every series of the DICOM folder IN is written
    there (<SeriesNumber>_<SeriesInstanceUID><ext>), series in parallel.
    A provenance sidecar is written beside each output (out.nii.gz -> out.json)."""
    from medimg.core.files import full_suffix

    if src.is_dir() and series is None and not full_suffix(dst):
        _convert_folder(src, dst, ext, resample, overwrite, workers, input_hashes)
        return
    from medimg import io
    from medimg.cli.params import check_output
    from medimg.cli.runtime import command_manifest

    check_output(dst, overwrite)
    image = io.read(src, series_uid=series, on_irregular="resample" if resample else "error")
    if slice_ is not None:
        image = _one_slice(image, slice_)
    manifest = command_manifest("medimg convert", {"series": series, "resample": resample, "slice": slice_})
    manifest.add_input(src, role="image")
    io.write(image, dst, provenance=manifest)
    for warning in image.meta.get("warnings", []):  # plain lines: paths unwrapped, no markup
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {dst}: {image.grid_summary()} {image.dtype}")
    if image.meta.get("n_unreadable_files"):  # written, but files of IN were skipped: say so in the status
        raise typer.Exit(1)


def _one_slice(image: Any, k: int) -> Any:
    """Slice ``k`` (array axis 0) of a 3-D image as a 2-D image placed where that slice lies."""
    from medimg import Image
    from medimg.errors import ParameterError

    if image.spatial_ndim != 3:
        raise ParameterError(f"--slice needs a 3-D image; this one is {image.spatial_ndim}-D")
    n = image.spatial_shape[0]
    if not 0 <= k < n:
        raise ParameterError(f"--slice {k} is outside the image's {n} slice(s) (0 to {n - 1})")
    affine = image.affine.copy()
    affine[:3, 3] = affine[:3, 3] + k * affine[:3, 2]
    meta = dict(image.meta, slice_index=k)
    return Image(image.array[k], affine, meta=meta, channel_axis=-1 if image.n_channels > 1 else None,
                 has_patient_geometry=image.has_patient_geometry)


def _convert_folder(src: Path, dst: Path, ext: str, resample: bool, overwrite: bool, workers: int | None,
                    input_hashes: bool = True) -> None:
    from medimg.cli.runtime import command_argv
    from medimg.io.convert import convert_folder

    done = failed = 0
    for out in convert_folder(src, dst, suffix=ext, on_irregular="resample" if resample else "error",
                              overwrite=overwrite, workers=workers, argv=command_argv(),
                              hash_inputs=input_hashes):
        if out.path is None:  # plain lines (no rich console to import; brackets in names kept)
            failed += 1
            typer.echo(f"error: series {out.key}: {out.error}", err=True)
            continue
        done += 1
        for warning in out.warnings:
            typer.echo(f"warning: {out.path.name}: {warning}", err=True)
        typer.echo(f"wrote {out.path}: {out.summary}")
    typer.echo(f"{done} series written to {dst}" + (f", {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- list
@app.command("list")
def list_operations(
    kind: Annotated[Optional[str], typer.Argument(help="Only this kind (e.g. segmentation, features, presets).")] = None,  # noqa: UP045
    tag: Annotated[Optional[str], typer.Option("--tag", help="Only operations with this tag (e.g. denoiser).")] = None,  # noqa: UP045
) -> None:
    """List the registered operations (methods, feature families, filters, ...), their parameters
    and tags, and the radiomics presets."""
    from rich.table import Table

    from medimg.core.registry import KINDS, TAGS, load_registries
    from medimg.errors import UnknownNameError

    if kind is not None and kind not in KINDS and kind != "presets":
        raise UnknownNameError("kind", kind, [*KINDS, "presets"])
    if tag is not None and tag not in TAGS:
        raise UnknownNameError("tag", tag, TAGS)
    console = _console()
    if kind != "presets":
        registries = load_registries(None if kind is None else [kind])
        table = Table("kind", "name", "tags", "parameters", "summary")
        for reg_kind, reg in registries.items():
            for entry in reg:
                if tag is not None and tag not in entry.tags:
                    continue
                params = ", ".join(f"{n}: {t} (required)" if d == "required" else f"{n}: {t} = {d}"
                                   for n, t, d in entry.describe())
                table.add_row(reg_kind, entry.name, ", ".join(sorted(entry.tags)), params, entry.summary)
        console.print(table)
    if kind in (None, "presets") and tag is None:
        from medimg.features.config import PRESETS, preset_summary

        presets = Table("preset", "settings", title="radiomics presets (medimg features --preset NAME)")
        for name in PRESETS:
            presets.add_row(name, preset_summary(name))
        console.print(presets)


# --------------------------------------------------------------------------- synth / demo
@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder for the synthetic cohort.")],
    patients: Annotated[int, typer.Option(min=1, help="Number of patients.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same cohort).")] = 0,
    noise_hu: Annotated[float, typer.Option(min=0.0, help="Noise standard deviation in HU.")] = 12.0,
) -> None:
    """Generate a synthetic CT cohort as DICOM series with lesion masks and ground truth."""
    from medimg.datasets import make_cohort

    with _progress("generating") as progress:
        task = progress.add_task("synth", total=patients)
        cohort = make_cohort(out, n_patients=patients, seed=seed, noise_hu=noise_hu,
                             progress=lambda done, total: progress.update(task, completed=done, total=total))
    typer.echo(f"wrote {len(cohort.rows)} studies of {patients} patients under {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    patients: Annotated[int, typer.Option(min=8, help="Number of synthetic patients.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    unet: Annotated[bool, typer.Option("--unet/--no-unet", help="Also train and test a small 2-D U-Net (about 30 s).")] = True,
) -> None:
    """Run the end-to-end demo: synthetic cohort -> read -> segment -> features -> model -> HTML report."""
    from medimg.demo import run_demo

    result = run_demo(out, n_patients=patients, seed=seed, unet=unet, log=typer.echo)
    typer.echo(f"report: {result.report_path.resolve()}")


# --------------------------------------------------------------------------- more commands
#: Modules that add subcommands with ``register(app)``; each keeps heavy imports inside its commands.
COMMAND_MODULES = (
    "medimg.cli.catalog_cmd",
    "medimg.cli.pacs_cmd",
    "medimg.cli.deid_cmd",
    "medimg.cli.filters_cmd",
    "medimg.cli.segmentation_cmd",
    "medimg.cli.features_cmd",
    "medimg.cli.response_map_cmd",
    "medimg.cli.pipeline_cmd",
    "medimg.cli.pet_cmd",
    "medimg.cli.longitudinal_cmd",
    "medimg.cli.registration_cmd",
    "medimg.cli.evaluation_cmd",
    "medimg.cli.learning_cmd",
    "medimg.cli.deep_cmd",
    "medimg.cli.explain_cmd",
)


def _register_command_modules() -> None:
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(app)


_register_command_modules()


# --------------------------------------------------------------------------- cold start
# Registering a command only records its function (cheap); what costs is turning commands into
# click commands: typer builds a pydantic adapter for every parameter of every command of the
# app it runs. So each run builds an app holding only the command it runs (:func:`_app_for`),
# and the top-level help an app of parameter-less stand-ins carrying each command's help text.
# Command modules import nothing heavy at top level (tests/test_cli.py checks the imports).


def _light_bool_flags() -> None:
    """typer (0.2x) coerces each parameter value through a pydantic adapter built on first use;
    a bool flag's value (True / False, or None when absent, as a group's ``--help``) needs none,
    and building one loads pydantic (~0.12 s of every start). Bool parameters get typer's own
    pass-through coercion instead (a bool passes, anything else is refused). Older typer
    versions, without adapters, are left as they are."""
    try:
        from typer import _coercion
        from typer import core as typer_core
    except ImportError:  # pragma: no cover - another typer layout
        return
    build = getattr(typer_core, "build_runtime_param", None)
    passthrough = getattr(_coercion, "PassThroughRuntimeParam", None)
    if build is None or passthrough is None or getattr(build, "medimg_light", False):
        return

    runtime_base = getattr(_coercion, "RuntimeParam", None)
    light_plain = _light_plain_param(runtime_base, build) if runtime_base is not None else None

    def light(descriptor: Any) -> Any:
        if descriptor.annotation is bool and getattr(descriptor, "file_annotation", None) is None:
            return passthrough(annotation=bool, parameter_info=descriptor.parameter_info)
        if (light_plain is not None and descriptor.annotation in (str, int, Path)
                and getattr(descriptor, "file_annotation", None) is None
                and getattr(descriptor.parameter_info, "parser", None) is None
                and not getattr(descriptor.parameter_info, "clamp", False)):
            return light_plain(annotation=descriptor.annotation, parameter_info=descriptor.parameter_info,
                               descriptor=descriptor)
        return build(descriptor)

    light.medimg_light = True  # type: ignore[attr-defined]
    typer_core.build_runtime_param = light


def _light_plain_param(base: Any, build: Any) -> Any:
    """A typer runtime parameter for ``str``, ``int`` and ``pathlib.Path`` values that needs no
    pydantic for the values a command line usually holds: a string stays the string, a plain
    decimal integer within the parameter's min/max becomes the int, a path string becomes
    ``Path`` and then goes through typer's own path checks (exists, readable, ...). Any other
    value (``5.0``, ``1_000``, an int out of range, bytes) goes to typer's pydantic coercion,
    built only then, so that it is accepted or refused with typer's own message."""
    import re
    from dataclasses import dataclass, field

    from typer._param_types import coerce_cli_path

    decimal = re.compile(r"[+-]?[0-9]+")

    @dataclass(frozen=True)
    class LightPlainParam(base):  # type: ignore[misc, valid-type]
        descriptor: Any = field(default=None, compare=False)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind, info = self.annotation, self.parameter_info
            if isinstance(value, str):
                if kind is str:
                    return value
                if kind is Path:
                    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
                if decimal.fullmatch(value):
                    number = int(value)
                    if (info.min is None or number >= info.min) and (info.max is None or number <= info.max):
                        return number
            elif kind is int and type(value) is int and info.min is None and info.max is None:
                return value
            return build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    return LightPlainParam


_light_bool_flags()


def _command_name(info: Any) -> str:
    from typer.main import get_command_name

    return info.name or get_command_name(info.callback.__name__)


def _group_help(info: Any) -> str:
    sub = info.typer_instance
    for text in (info.help, sub.info.help,
                 getattr(sub.registered_callback, "help", None),
                 getattr(getattr(sub.registered_callback, "callback", None), "__doc__", None)):
        if isinstance(text, str) and text:
            return text
    return ""


def _app_for(args: list[str]) -> typer.Typer:
    """The app that runs ``args``: only the command named in them (its group, for a group), or,
    without a known command name, stand-ins of every command for the top-level help."""
    from typer.models import CommandInfo

    name = next((a for a in args if not a.startswith("-")), None)
    small = typer.Typer(**_APP_SETTINGS)
    small.registered_callback = app.registered_callback
    commands = [c for c in app.registered_commands if _command_name(c) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if commands or groups:
        small.registered_commands = commands
        small.registered_groups = groups
        return small

    def stand_in() -> None:  # pragma: no cover - listed in the help, never run
        raise typer.Exit(2)

    for info in app.registered_commands:
        doc = info.help or info.callback.__doc__ or ""
        small.registered_commands.append(CommandInfo(
            _command_name(info), callback=stand_in, help=doc, short_help=info.short_help,
            hidden=info.hidden, deprecated=info.deprecated, rich_help_panel=info.rich_help_panel))
    for info in app.registered_groups:
        small.registered_commands.append(CommandInfo(info.name, callback=stand_in, help=_group_help(info),
                                                     hidden=bool(info.hidden) is True))
    return small


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user error, 1 other failure)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    with _terminate_as_exit():
        return _run(args, debug)


def run() -> None:
    """The ``medimg`` program (console script and ``python -m medimg``): :func:`main` on
    ``sys.argv``, then the process ends with its status.

    When only the main thread is left, the end is fast: the standard streams are flushed and
    the ``atexit`` handlers run (logging, temporary folders, worker clean-up), then
    ``os._exit`` skips the interpreter's teardown of every imported module (0.05-0.15 s of CPU
    after a command that loaded NumPy, pydicom and SimpleITK). Every medimg output is complete
    and closed by then (atomic writes, context managers); with another thread alive the exit
    is Python's ordinary one, which waits for it."""
    import os
    import threading

    status = main()
    if threading.active_count() > 1:
        sys.exit(status)
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`medimg ... | head`): the reader stopped
            pass
    atexit._run_exitfuncs()
    os._exit(status)


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (and SIGHUP) unwind the command like Ctrl-C does, so that partial outputs are
    removed and worker processes are stopped; Python's default would end the process at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: list[str], debug: bool) -> int:
    from typer.exceptions import Abort, Exit, TyperException

    from medimg.cli.runtime import invocation

    try:
        with invocation(args):  # progress bar on a terminal, one-line warnings, the command line
            status = _app_for(args)(args=args, prog_name="medimg", standalone_mode=False)
    except Exit as exc:
        return int(exc.exit_code or 0)
    except Abort:
        typer.echo("aborted", err=True)
        return 130
    except TyperException as exc:  # click usage errors (vendored by typer)
        if debug:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 0  # help was printed
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{where}", err=True)
        return int(getattr(exc, "exit_code", 2) or 2)
    except UserInputError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return 2
    except MedimgError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    return int(status) if isinstance(status, int) else 0


if __name__ == "__main__":  # pragma: no cover
    run()
