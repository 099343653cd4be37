"""Segmentation subcommands: ``segment``, ``seg-metrics`` and ``seg-convert``.

Each calls the public API (:func:`medimg.segmentation.segment`,
:func:`medimg.evaluation.segmentation_metrics`, :func:`medimg.io.read_labels` and
:func:`medimg.io.write_labels`, which tell image files, DICOM SEG and RTSTRUCT apart); heavy
modules are imported inside the commands. Label maps written get a provenance sidecar.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg.cli.params import check_output, json_value, parse_params
from medimg.errors import UserInputError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``segment``, ``seg-metrics`` and ``seg-convert`` to ``app``."""

    @app.command("segment")
    def segment_cmd(
        src: Annotated[Path, typer.Argument(metavar="IN", help="Image to segment (DICOM folder/file or image file).")],
        dst: Annotated[Path, typer.Argument(metavar="OUT", help="Label map to write (.nii.gz, .nii, .nrrd, .mha).")],
        method: Annotated[str, typer.Option("--method", "-m", help="Registered method (see `medimg list segmentation`).")],
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="NAME=VALUE method parameter (repeatable); images as file paths or @path.")] = None,  # noqa: UP045
        mask: Annotated[Optional[Path], typer.Option("--mask", help="Region of interest (label map on IN's grid).")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Segment IN with a registered method and write the label map to OUT (with its provenance
        sidecar, out.nii.gz -> out.json)."""
        from medimg import io
        from medimg.cli.params import image_param_files
        from medimg.cli.runtime import command_manifest
        from medimg.core.registry import registry
        from medimg.segmentation import segment

        entry = registry("segmentation").get(method)
        check_output(dst, overwrite)
        params = parse_params(param or [], entry)
        image = io.read(src)
        if mask is not None:
            params["mask"] = io.read(mask)
        result = segment(image, method, **params)
        manifest = command_manifest("medimg segment", {"kind": "segmentation", "method": entry.name,
                                                       "params": entry.validate(params)})
        manifest.add_input(src, role="image")
        if mask is not None:
            manifest.add_input(mask, role="mask")
        for name, path in image_param_files(param or [], entry).items():
            manifest.add_input(path, role=name)
        io.write(result, dst, provenance=manifest)
        n = int((result.array != 0).sum())
        typer.echo(f"wrote {dst}: {method}, {n} labelled voxels ({n * result.voxel_volume_mm3:.1f} mm^3)")

    @app.command("seg-metrics")
    def seg_metrics_cmd(
        ref: Annotated[Path, typer.Argument(metavar="REF", help="Reference label map (image file, DICOM SEG, DICOM folder).")],
        pred: Annotated[Path, typer.Argument(metavar="PRED", help="Predicted label map on the same grid.")],
        label: Annotated[Optional[int], typer.Option("--label", help="Compare this label only (default: all non-zero voxels, plus each label).")] = None,  # noqa: UP045
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON (distances in mm).")] = False,
        convention: Annotated[str, typer.Option("--convention", help="Surface-distance convention: surface-distance, monai or medpy.")] = "surface-distance",
        tolerance: Annotated[float, typer.Option("--tolerance", help="Normalised surface Dice tolerance, mm.")] = 1.0,
        percentile: Annotated[float, typer.Option("--percentile", help="Robust Hausdorff percentile.")] = 95.0,
        empty_distance: Annotated[Optional[float], typer.Option("--empty-distance", help="Distance (mm) reported when one mask is empty (default: infinite, JSON null).")] = None,  # noqa: UP045
    ) -> None:
        """Dice, IoU, sensitivity, precision, volumes, HD, HD95, ASSD and NSD of PRED against REF."""
        from medimg.evaluation import (
            labels_present,
            segmentation_metrics,
            segmentation_metrics_per_label,
        )
        from medimg.io import read_labels

        reference = read_labels(ref)
        prediction = read_labels(pred, reference=reference)
        kw = {"convention": convention, "percentile": percentile, "tolerance_mm": tolerance,
              "empty_distance_mm": math.inf if empty_distance is None else empty_distance}
        metrics: dict[str, Any] = dict(segmentation_metrics(prediction, reference, label=label, **kw))
        present = labels_present(reference, prediction)
        per_label = None
        if label is None and len(present) > 1:
            per_label = segmentation_metrics_per_label(prediction, reference, labels=present, **kw)
        record: dict[str, Any] = {
            "reference": str(ref), "prediction": str(pred),
            "label": label if label is not None else "foreground",
            "spacing_mm": list(reference.spacing[: reference.spatial_ndim]),
            **metrics,
            "units": {"hd": "mm", "assd": "mm", f"hd{percentile:g}": "mm", "tolerance_mm": "mm",
                      "volume_pred_mm3": "mm^3", "volume_ref_mm3": "mm^3", "volume_difference_mm3": "mm^3"},
            "empty": {"reference": metrics["volume_ref_mm3"] == 0, "prediction": metrics["volume_pred_mm3"] == 0},
        }
        if per_label is not None:
            record["per_label"] = per_label
        if as_json:
            typer.echo(json.dumps(json_value(record), indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("metric", "value", title=f"{pred} vs {ref} ({metrics['convention']} convention)")
        for key, value in metrics.items():
            if key == "convention":
                continue
            unit = record["units"].get(key, "")
            shown = f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)
            table.add_row(key, f"{shown} {unit}".strip())
        Console(highlight=False).print(table)

    @app.command("seg-convert")
    def seg_convert_cmd(
        src: Annotated[Path, typer.Argument(metavar="IN", help="Label map (image file), DICOM SEG or RTSTRUCT.")],
        dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output: .dcm writes a DICOM SEG; .nii.gz/.nii/.nrrd/.mha a label map.")],
        source: Annotated[Optional[Path], typer.Option("--source", help="Source DICOM series folder (needed to write a SEG).")] = None,  # noqa: UP045
        reference: Annotated[Optional[Path], typer.Option("--reference", help="Image whose grid the output takes (needed for RTSTRUCT).")] = None,  # noqa: UP045
        roi: Annotated[Optional[list[str]], typer.Option("--roi", help="RTSTRUCT ROI name or number to rasterise (repeatable, in label order).")] = None,  # noqa: UP045
        name: Annotated[Optional[list[str]], typer.Option("--name", help="LABEL=NAME of a SEG segment (repeatable).")] = None,  # noqa: UP045
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Convert a label map to DICOM SEG, or a DICOM SEG / RTSTRUCT to a label map (with a
        provenance sidecar beside OUT: out.nii.gz or out.dcm -> out.json)."""
        from medimg import io
        from medimg.cli.runtime import command_manifest
        from medimg.core.files import full_suffix

        if dst.exists() and not overwrite:
            raise UserInputError(f"{dst}: exists already (pass --overwrite to replace it)")
        if full_suffix(dst) not in io.LABEL_WRITE_SUFFIXES:
            raise UserInputError(f"{dst}: cannot write this extension; use one of {', '.join(io.LABEL_WRITE_SUFFIXES)}")
        to_seg = full_suffix(dst) == ".dcm"
        if to_seg and source is None:
            raise UserInputError("writing a DICOM SEG needs --source (the folder of the source series)")
        names: dict[int, str] = {}
        for item in name or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip().lstrip("-").isdigit():
                raise UserInputError(f"--name {item!r}: expected LABEL=NAME, e.g. --name 1=lesion")
            names[int(key)] = value
        rois = [int(r) if r.isdigit() else r for r in roi] if roi else None
        io.sidecar.check_sidecar_slot(dst)
        ref_image = io.read(reference) if reference is not None else None
        label_map = io.read_labels(src, reference=ref_image, rois=rois)
        manifest = command_manifest("medimg seg-convert", {"rois": rois, "segment_names": names or None})
        manifest.add_input(src, role="labels")
        if reference is not None:
            manifest.add_input(reference, role="reference")
        if to_seg:
            manifest.add_input(source, role="source")
        io.write_labels(label_map, dst, source=source if to_seg else None,
                        segment_names=names if to_seg else None, provenance=manifest)
        for warning in label_map.meta.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"wrote DICOM SEG {dst}" if to_seg else f"wrote {dst}: {label_map.grid_summary()} {label_map.dtype}")
