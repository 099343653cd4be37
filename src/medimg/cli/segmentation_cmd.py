"""Segmentation subcommands: ``segment``, ``seg-metrics`` and ``seg-convert``.

Each calls the public API (:func:`medimg.segmentation.segment`,
:func:`medimg.evaluation.segmentation_metrics`, :mod:`medimg.io.dicom.seg` and
:mod:`medimg.io.dicom.rtstruct`); heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medimg.cli.params import check_output, parse_params
from medimg.errors import UserInputError

__all__ = ["register"]


def _dicom_modality(path: Path) -> str | None:
    """The Modality of a DICOM file, or None when ``path`` is not one (or is a folder)."""
    if not path.is_file():
        return None
    from medimg.core.files import full_suffix
    from medimg.io import formats

    if full_suffix(path) in formats.NIFTI_SUFFIXES + formats.ITK_SUFFIXES + formats.RASTER_SUFFIXES:
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["Modality"])
    except Exception:  # not DICOM: let io.read explain
        return None
    return str(ds.get("Modality", "")) or None


def _read_label(path: Path, reference: Any = None) -> Any:
    """A label map from an image file, a DICOM folder, a DICOM SEG or (with a reference) an RTSTRUCT."""
    from medimg import io

    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder")
    modality = _dicom_modality(path)
    if modality == "SEG":
        from medimg.io.dicom.seg import read_seg

        return read_seg(path, reference=reference)
    if modality == "RTSTRUCT":
        if reference is None:
            raise UserInputError(f"{path}: an RTSTRUCT needs --reference (the image it was drawn on)")
        from medimg.io.dicom.rtstruct import read_rtstruct

        return read_rtstruct(path, reference)
    return io.read(path)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


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
        """Segment IN with a registered method and write the label map to OUT."""
        from medimg import io
        from medimg.core.registry import registry
        from medimg.segmentation import segment

        check_output(dst, overwrite)
        params = parse_params(param or [], registry("segmentation").get(method))
        image = io.read(src)
        if mask is not None:
            params["mask"] = io.read(mask)
        result = segment(image, method, **params)
        io.write(result, dst)
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

        reference = _read_label(ref)
        prediction = _read_label(pred, reference=reference)
        for name, image in (("REF", reference), ("PRED", prediction)):
            if image.channel_axis is not None or image.dtype.kind not in "iub":
                raise UserInputError(f"{name}: a label map must be a scalar integer image, got {image.dtype}")
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
            typer.echo(json.dumps(_json_value(record), indent=2))
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
        """Convert a label map to DICOM SEG, or a DICOM SEG / RTSTRUCT to a label map."""
        from medimg import io

        if dst.exists() and not overwrite:
            raise UserInputError(f"{dst}: exists already (pass --overwrite to replace it)")
        if not src.exists():
            raise UserInputError(f"{src}: no such file or folder")
        ref_image = io.read(reference) if reference is not None else None
        if str(dst).lower().endswith(".dcm"):
            if source is None:
                raise UserInputError("writing a DICOM SEG needs --source (the folder of the source series)")
            from medimg.io.dicom.seg import write_seg

            names: dict[int, str] = {}
            for item in name or []:
                key, sep, value = item.partition("=")
                if not sep or not key.strip().lstrip("-").isdigit():
                    raise UserInputError(f"--name {item!r}: expected LABEL=NAME, e.g. --name 1=lesion")
                names[int(key)] = value
            label_map = _read_label(src, reference=ref_image)
            if label_map.dtype.kind == "f":
                import numpy as np

                if not np.array_equal(label_map.array, np.round(label_map.array)):
                    raise UserInputError(f"{src}: not a label map (non-integer values)")
                label_map = label_map.with_array(label_map.array.astype(np.int32))
            write_seg(label_map, source, dst, segment_names=names)
            typer.echo(f"wrote DICOM SEG {dst}")
            return
        if _dicom_modality(src) == "RTSTRUCT":
            if ref_image is None:
                raise UserInputError(f"{src}: an RTSTRUCT needs --reference (the image it was drawn on)")
            from medimg.io.dicom.rtstruct import read_rtstruct

            rois = [int(r) if r.isdigit() else r for r in roi] if roi else None
            label_map = read_rtstruct(src, ref_image, rois=rois)
        else:
            label_map = _read_label(src, reference=ref_image)
        io.write(label_map, dst)
        for warning in label_map.meta.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"wrote {dst}: {label_map.grid_summary()} {label_map.dtype}")
