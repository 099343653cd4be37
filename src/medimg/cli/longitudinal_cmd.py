"""Longitudinal and fusion subcommands: ``longitudinal`` (per-lesion volume change from a
baseline to a follow-up scan) and ``fuse`` (a checkerboard / blend / difference / colour fusion
PNG of two images).

Thin commands over :func:`medimg.registration.longitudinal.longitudinal_change` and
:func:`medimg.registration.fusion.write_fusion_png`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg.cli.params import json_value

__all__ = ["register"]


def _window(text: str | None, option: str) -> tuple[float, float] | None:
    from medimg.errors import ParameterError

    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] >= values[1]:
        raise ParameterError(f"{option} must be LOW,HIGH with LOW < HIGH (e.g. -160,240), got {text!r}")
    return values[0], values[1]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def register(app: typer.Typer) -> None:
    """Add the ``longitudinal`` and ``fuse`` commands to ``app``."""

    @app.command("longitudinal")
    def longitudinal_command(
        baseline_path: Annotated[Path, typer.Argument(metavar="BASELINE", help="Baseline scan (DICOM folder or image file).")],
        followup_path: Annotated[Path, typer.Argument(metavar="FOLLOWUP", help="Follow-up scan of the same patient.")],
        mask_path: Annotated[Path, typer.Option("--mask", help="Baseline lesion label map, on BASELINE's grid (required).")],
        followup_mask: Annotated[Optional[Path], typer.Option("--followup-mask", help="Follow-up lesion label map on FOLLOWUP's grid: lesions matched by overlap, new lesions found.")] = None,  # noqa: UP045
        transform: Annotated[str, typer.Option("--transform", help="Registration transform: rigid or affine.")] = "rigid",
        transform_file: Annotated[Optional[Path], typer.Option("--transform-file", help="Use this transform (FOLLOWUP points -> BASELINE points, .tfm/.h5) instead of registering.")] = None,  # noqa: UP045
        lesions: Annotated[str, typer.Option("--lesions", help="auto, labels (one lesion per label value) or components (connected components).")] = "auto",
        search_margin_mm: Annotated[float, typer.Option("--search-margin-mm", help="Without --followup-mask: margin (mm) searched around each carried lesion.")] = 10.0,
        min_volume_mm3: Annotated[float, typer.Option("--min-volume-mm3", help="Ignore follow-up lesions smaller than this (mm^3).")] = 0.0,
        transform_out: Annotated[Optional[Path], typer.Option("--transform-out", help="Write the follow-up -> baseline transform here (.tfm or .h5).")] = None,  # noqa: UP045
        carried_out: Annotated[Optional[Path], typer.Option("--carried-mask", help="Write the baseline lesions carried onto the follow-up grid here.")] = None,  # noqa: UP045
        as_json: Annotated[bool, typer.Option("--json", help="Print the lesion table and summary as JSON.")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace output files that exist.")] = False,
    ) -> None:
        """Per-lesion volume at baseline and follow-up (mm^3), the change (mm^3 and %), and new or vanished lesions.

        FOLLOWUP is registered to BASELINE (rigid by default), the baseline lesions are carried
        onto the follow-up grid with a label-safe warp, and each lesion's follow-up volume comes
        from --followup-mask (matched by overlap) or from a threshold segmentation around it.
        """
        from medimg import io
        from medimg.cli.params import check_output, read_input, read_transform_input
        from medimg.cli.runtime import command_manifest
        from medimg.errors import UnknownNameError, UserInputError
        from medimg.registration.longitudinal import longitudinal_change

        if transform not in ("rigid", "affine"):
            raise UnknownNameError("--transform", transform, ["rigid", "affine"])
        if lesions not in ("auto", "labels", "components"):
            raise UnknownNameError("--lesions", lesions, ["auto", "labels", "components"])
        if transform_out is not None:
            from medimg.registration.transform import TRANSFORM_SUFFIXES

            check_output(transform_out, overwrite, suffixes=TRANSFORM_SUFFIXES)
        if carried_out is not None:
            check_output(carried_out, overwrite)
        if transform_file is not None and transform_out is not None and transform_file.resolve() == transform_out.resolve():
            raise UserInputError("--transform-out must differ from --transform-file")
        baseline = read_input(baseline_path, "baseline")
        followup = read_input(followup_path, "follow-up")
        mask = read_input(mask_path, "baseline mask")
        fmask = read_input(followup_mask, "follow-up mask") if followup_mask is not None else None
        given = read_transform_input(transform_file) if transform_file is not None else None
        result = longitudinal_change(baseline, followup, mask, followup_mask=fmask, transform=given,
                                     transform_kind=transform, lesions=lesions,  # type: ignore[arg-type]
                                     search_margin_mm=search_margin_mm, min_volume_mm3=min_volume_mm3)
        record = result.as_dict()
        if transform_out is not None:
            result.transform.save(transform_out)
            record["transform_file"] = str(transform_out)
        if carried_out is not None:
            manifest = command_manifest("medimg longitudinal", {"transform": transform, "lesions": lesions})
            for role, path in (("baseline", baseline_path), ("followup", followup_path), ("mask", mask_path)):
                manifest.add_input(path, role=role)
            io.write(result.carried_mask, carried_out, provenance=manifest)
            record["carried_mask"] = str(carried_out)
        if as_json:
            typer.echo(json.dumps(json_value(record), indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("lesion", "status", "baseline mm^3", "follow-up mm^3", "change mm^3", "change %",
                      title=f"longitudinal change ({result.method})")
        for les in result.lesions:
            table.add_row(str(les.lesion), les.status, _fmt(les.baseline_volume_mm3), _fmt(les.followup_volume_mm3),
                          _fmt(les.change_mm3), _fmt(les.change_percent))
        Console(highlight=False).print(table)
        s = record["summary"]
        typer.echo(f"{s['baseline_lesions']} baseline lesions, {s['new_lesions']} new, {s['vanished_lesions']} vanished; "
                   f"total {s['baseline_total_mm3']:.1f} -> {s['followup_total_mm3']:.1f} mm^3")

    @app.command("fuse")
    def fuse_command(
        a_path: Annotated[Path, typer.Argument(metavar="A", help="First image (e.g. CT); the view is on its grid.")],
        b_path: Annotated[Path, typer.Argument(metavar="B", help="Second image (e.g. PET in SUV); resampled onto A's grid when the grids differ.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG.")],
        mode: Annotated[str, typer.Option("--mode", help="checkerboard, blend, colour (A grey + B hot colour map) or difference.")] = "checkerboard",
        axis: Annotated[str, typer.Option("--axis", help="View plane: axial, coronal or sagittal.")] = "axial",
        index: Annotated[Optional[int], typer.Option("--index", help="Slice index along the view axis (A reoriented to LPS); default the middle.")] = None,  # noqa: UP045
        transform_file: Annotated[Optional[Path], typer.Option("--transform", help="Transform A points -> B points (.tfm/.h5) to warp B through.")] = None,  # noqa: UP045
        alpha: Annotated[float, typer.Option("--alpha", help="Weight of B in blend and colour modes (0-1).")] = 0.5,
        checker_mm: Annotated[float, typer.Option("--checker-mm", help="Checkerboard square side (mm).")] = 20.0,
        window_a: Annotated[Optional[str], typer.Option("--window-a", help="A's display window LOW,HIGH (e.g. -160,240 HU); default 0.5-99.5 percentiles.")] = None,  # noqa: UP045
        window_b: Annotated[Optional[str], typer.Option("--window-b", help="B's window LOW,HIGH (e.g. 0,5 SUV); default percentiles, or 0,5 for SUV in colour mode.")] = None,  # noqa: UP045
        pixel_mm: Annotated[Optional[float], typer.Option("--pixel-mm", help="Output pixel size (mm); default the finest in-plane spacing.")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Write a fusion view of A and B as a PNG: checkerboard, alpha blend, difference, or colour fusion (CT grey + PET hot map)."""
        from medimg.cli.params import check_output, read_input, read_transform_input
        from medimg.cli.runtime import command_manifest
        from medimg.registration.fusion import write_fusion_png

        check_output(out, overwrite, suffixes=(".png",))
        wa, wb = _window(window_a, "--window-a"), _window(window_b, "--window-b")
        a = read_input(a_path, "image A")
        b = read_input(b_path, "image B")
        tfm = read_transform_input(transform_file) if transform_file is not None else None
        params = {"mode": mode, "axis": axis, "index": index, "alpha": alpha, "checker_mm": checker_mm,
                  "window_a": wa, "window_b": wb, "pixel_mm": pixel_mm}
        manifest = command_manifest("medimg fuse", params)
        manifest.add_input(a_path, role="a")
        manifest.add_input(b_path, role="b")
        if transform_file is not None:
            manifest.add_input(transform_file, role="transform")
        write_fusion_png(a, b, out, provenance=manifest, transform=tfm, **params)
        typer.echo(f"wrote {out}: {mode} fusion, {axis} view")
