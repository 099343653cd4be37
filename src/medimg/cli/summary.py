"""What ``medimg info`` reports: patients, studies and series, with geometry and problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.files import full_suffix
from medimg.core.image import Image, orientation_code
from medimg.errors import FileFormatError, UserInputError

__all__ = ["summarize_path", "summarize_image", "render_summary", "count_problems"]

_NON_DICOM = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def summarize_image(image: Image) -> dict[str, Any]:
    """Size, spacing, orientation, dtype and value range of an image."""
    arr = image.array
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    value_range = [float(finite.min()), float(finite.max())] if finite.size else [None, None]
    return {
        "size": list(image.size),
        "spacing_mm": [round(v, 6) for v in image.spacing[: image.spatial_ndim]],
        "origin_mm": [round(v, 4) for v in image.origin],
        "orientation": image.orientation if image.has_patient_geometry else "none",
        "dtype": str(image.dtype),
        "channels": image.n_channels,
        "value_range": value_range,
        "warnings": list(image.meta.get("warnings", [])),
    }


def summarize_path(
    path: Path,
    *,
    read_pixels: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Summarise a file or folder as JSON-ready data (see ``medimg info``)."""
    from medimg import io
    from medimg.io import dicom

    path = Path(path)
    if not path.exists():
        raise FileFormatError(path, "no such file or folder")
    if path.is_file() and full_suffix(path) in _NON_DICOM:
        image = io.read(path)
        return {"path": str(path), "format": image.meta.get("source_format"), "images": [summarize_image(image)],
                "patients": [], "failures": [], "other_objects": [], "n_files": 1}
    if path.is_file():
        io.read(path)  # a single file must read as a whole; its error is the answer
    result = dicom.scan(path, progress=progress)
    if path.is_file() and not result.series and result.other_objects:
        from medimg.errors import MissingPixelDataError

        obj = result.other_objects[0]
        raise MissingPixelDataError(obj.path, "no Pixel Data (7FE0,0010): not an image object")
    patients: dict[str, dict[str, Any]] = {}
    for series in result.series:
        pid = str(series.get("PatientID", "") or "(no PatientID)")
        patient = patients.setdefault(pid, {"patient_id": pid, "patient_name": series.get("PatientName", ""),
                                            "sex": series.get("PatientSex"), "birth_date": series.get("PatientBirthDate"),
                                            "studies": {}})
        suid = str(series.get("StudyInstanceUID", "") or "(no StudyInstanceUID)")
        study = patient["studies"].setdefault(suid, {"study_uid": suid, "date": series.get("StudyDate"),
                                                     "description": series.get("StudyDescription"), "series": []})
        study["series"].append(_summarize_series(series, read_pixels))
    for patient in patients.values():
        patient["studies"] = list(patient["studies"].values())
    return {
        "path": str(path),
        "format": "dicom",
        "n_files": result.n_files,
        "patients": list(patients.values()),
        "other_objects": [
            {"path": str(h.path), "sop_class": _sop_name(h.get("SOPClassUID")), "modality": h.get("Modality")}
            for h in result.other_objects
        ],
        "failures": [{"path": str(p), "error": str(e)} for p, e in result.failures],
        "images": [],
    }


def _summarize_series(series: Any, read_pixels: bool) -> dict[str, Any]:
    from medimg.io import dicom

    row: dict[str, Any] = {
        "series_key": series.key,
        "series_number": series.get("SeriesNumber"),
        "modality": series.get("Modality"),
        "description": series.get("SeriesDescription", ""),
        "split": series.label,
        "n_frames": series.n_frames,
        "n_files": len(series.files),
        "error": None,
    }
    if series.has_geometry:
        try:
            geo = dicom.analyze_geometry(series)
            ps = geo.frames[0].pixel_spacing or (1.0, 1.0)
            row.update({
                "size": [series.shape[2], series.shape[1], series.n_frames],
                "spacing_mm": [ps[1], ps[0], round(geo.slice_spacing, 6)],
                "orientation": orientation_code(geo.affine[:3, :3] / np.linalg.norm(geo.affine[:3, :3], axis=0)),
                "warnings": list(geo.problems),
            })
        except UserInputError as err:
            row["error"] = str(err)
    if read_pixels and row["error"] is None:
        try:
            row.update(summarize_image(dicom.read_series(series)))
        except UserInputError as err:
            row["error"] = str(err)
    return row


def _sop_name(uid: str | None) -> str:
    if not uid:
        return "unknown"
    from pydicom.uid import UID

    return UID(uid).name or uid


def render_summary(summary: dict[str, Any], console: Any) -> int:
    """Print a summary as Rich tables; return the number of problems found."""
    from rich.table import Table

    problems = 0
    for image in summary.get("images", []):
        table = Table(title=f"{summary['path']} ({summary.get('format')})")
        for col in ("size", "spacing (mm)", "orientation", "dtype", "range"):
            table.add_column(col)
        table.add_row(_fmt(image["size"], "x"), _fmt(image["spacing_mm"], " x "), image["orientation"],
                      image["dtype"], _fmt_range(image["value_range"]))
        console.print(table)
        for w in image["warnings"]:
            console.print(f"[yellow]warning:[/] {w}")
    for patient in summary.get("patients", []):
        name = patient.get("patient_name") or ""
        console.print(f"[bold]Patient {patient['patient_id']}[/] {name} {patient.get('sex') or ''}".rstrip())
        for study in patient["studies"]:
            table = Table(title=f"Study {study.get('date') or '?'} {study.get('description') or ''}".rstrip(),
                          title_justify="left")
            for col in ("#", "modality", "description", "size (x y z)", "spacing (mm)", "orient.", "range", "notes"):
                table.add_column(col)
            for s in study["series"]:
                notes = []
                if s.get("split"):
                    notes.append(s["split"])
                notes.extend(s.get("warnings", []))
                if s.get("error"):
                    notes.append(f"[red]{s['error']}[/]")
                    problems += 1
                table.add_row(str(s.get("series_number") or ""), str(s.get("modality") or ""),
                              str(s.get("description") or ""), _fmt(s.get("size"), " x "),
                              _fmt(s.get("spacing_mm"), " x "), str(s.get("orientation") or ""),
                              _fmt_range(s.get("value_range")), "; ".join(notes))
            console.print(table)
            for s in study["series"]:  # whole, unwrapped: what --series takes
                console.print(f"  series #{s.get('series_number') or '?'}: --series {s['series_key']}",
                              soft_wrap=True, markup=False)
    others = summary.get("other_objects", [])
    if others:
        console.print(f"{len(others)} non-image object(s): " + ", ".join(sorted({o['sop_class'] for o in others})))
    for failure in summary.get("failures", []):
        console.print(f"[red]unreadable:[/] {failure['error']}")
        problems += 1
    if summary.get("format") == "dicom":
        n_series = sum(len(st["series"]) for p in summary["patients"] for st in p["studies"])
        console.print(f"{summary['n_files']} file(s), {len(summary['patients'])} patient(s), {n_series} image series"
                      + (f", {problems} problem(s)" if problems else ""))
    return problems


def _fmt(values: Any, sep: str) -> str:
    if not values:
        return ""
    return sep.join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)


def _fmt_range(values: Any) -> str:
    if not values or values[0] is None:
        return ""
    return f"{values[0]:.6g} .. {values[1]:.6g}"


def count_problems(summary: dict[str, Any]) -> int:
    """Unreadable files plus series that cannot be assembled."""
    errors = sum(1 for p in summary.get("patients", []) for st in p["studies"] for s in st["series"] if s.get("error"))
    return errors + len(summary.get("failures", []))
