"""DICOM RT Structure Sets (RTSTRUCT): contours rasterised on an image grid as a label map.

Rasterisation convention (the one of plastimatch, rt-utils and most planning systems):

* each CLOSED_PLANAR contour is mapped into the image's continuous voxel indices; it belongs to
  the slice whose centre plane is nearest (a contour more than ``plane_tolerance`` slices from
  every plane, or not planar to that tolerance, is skipped and reported);
* a voxel is inside when its **centre** is inside the polygon (even-odd rule; a centre exactly
  on an edge counts as inside on the left/lower edges and outside on the right/upper ones, so
  two polygons that share an edge never both claim a voxel);
* several contours of one ROI on one slice combine by the even-odd rule too (exclusive or), so
  an inner contour is a hole;
* POINT and OPEN_* contours have no area and are skipped (counted in ``meta["warnings"]``).

ROIs become labels 1..N in the order asked for (default: the Structure Set ROI Sequence
order); where ROIs overlap, the later one wins and the overlap is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.errors import FileFormatError, GeometryMismatchError, ParameterError, UnknownNameError

__all__ = ["list_rois", "read_rtstruct", "polygon_mask"]


def _read(path: str | Path) -> Any:
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "no such file")
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as err:  # pydicom raises many types for broken files
        raise FileFormatError(path, f"not a readable DICOM file ({type(err).__name__}: {err})") from err
    if str(ds.get("Modality", "")) != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise FileFormatError(path, f"not an RT Structure Set (Modality {ds.get('Modality', 'missing')!r})")
    return ds


def list_rois(path: str | Path) -> list[dict[str, Any]]:
    """The ROIs of an RTSTRUCT: ``{"number", "name", "n_contours", "types"}`` in file order."""
    ds = _read(path)
    contours: dict[int, list[Any]] = {}
    for item in ds.get("ROIContourSequence", []):
        contours[int(item.ReferencedROINumber)] = list(item.get("ContourSequence", []))
    out = []
    for roi in ds.StructureSetROISequence:
        number = int(roi.ROINumber)
        items = contours.get(number, [])
        out.append({"number": number, "name": str(roi.get("ROIName", "")), "n_contours": len(items),
                    "types": sorted({str(c.get("ContourGeometricType", "")) for c in items})})
    return out


def polygon_mask(vertices_xy: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Boolean (y, x) mask of the pixel centres inside a polygon given in continuous (x, y) indices.

    Even-odd rule with half-open edges (see the module notes). Vectorised over the rows the
    polygon spans.
    """
    pts = np.asarray(vertices_xy, dtype=float).reshape(-1, 2)
    out = np.zeros(shape_yx, dtype=bool)
    if len(pts) < 3:
        return out
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo = max(0, int(np.ceil(y0.min())))
    hi = min(shape_yx[0] - 1, int(np.floor(y0.max())))
    if hi < lo:
        return out
    rows = np.arange(lo, hi + 1, dtype=float)[:, np.newaxis]  # (R, 1)
    crosses = (y0 <= rows) != (y1 <= rows)  # edge spans the row (half-open in y)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rows - y0) / (y1 - y0)
        xc = np.where(crosses, x0 + t * (x1 - x0), np.inf)  # (R, E)
    xc.sort(axis=1)
    cols = np.arange(shape_yx[1], dtype=float)
    for r, row_x in enumerate(xc):
        row_x = row_x[np.isfinite(row_x)]
        if row_x.size == 0:
            continue
        # number of crossings strictly left of or at the centre; inside when odd
        left = np.searchsorted(row_x, cols, side="right")
        out[lo + r] = (left % 2) == 1
    return out


def read_rtstruct(
    path: str | Path,
    reference: Image,
    *,
    rois: Sequence[str | int] | None = None,
    plane_tolerance: float = 0.25,
    check_frame_of_reference: bool = True,
) -> Image:
    """Rasterise the contours of an RTSTRUCT on ``reference``'s grid as a label map.

    Parameters
    ----------
    path
        The RTSTRUCT file.
    reference
        The image the structures were drawn on (usually its CT series, read with
        :func:`medimg.io.read`): the output has its grid.
    rois
        ROI names or numbers to rasterise, in label order (label k = the k-th); default: every
        ROI that has closed contours, in file order.
    plane_tolerance
        Largest distance, in slices, of a contour from the nearest slice plane (and of its
        points from its mean plane).
    check_frame_of_reference
        Require the structure set's Frame of Reference UID to be the reference image's
        (``meta["FrameOfReferenceUID"]``) when both are known.

    Returns
    -------
    Image
        ``uint8`` label map on ``reference``'s grid; ``meta["rois"]`` lists ``{"label",
        "number", "name", "n_contours", "voxels"}``; ``meta["warnings"]`` the skipped contours
        and overlaps.

    Raises
    ------
    FileFormatError
        Not an RTSTRUCT.
    UnknownNameError
        An ROI in ``rois`` is not in the file.
    GeometryMismatchError
        Different frames of reference (see ``check_frame_of_reference``).
    """
    ds = _read(path)
    if reference.channel_axis is not None:
        raise ParameterError("read_rtstruct: the reference must be a scalar image")
    ref_for = reference.meta.get("FrameOfReferenceUID")
    rts_for = {str(item.FrameOfReferenceUID) for item in ds.get("ReferencedFrameOfReferenceSequence", [])
               if "FrameOfReferenceUID" in item}
    rts_for |= {str(r.ReferencedFrameOfReferenceUID) for r in ds.StructureSetROISequence
                if "ReferencedFrameOfReferenceUID" in r}
    if check_frame_of_reference and ref_for and rts_for and str(ref_for) not in rts_for:
        msg = (f"{path}: the structure set's Frame of Reference {sorted(rts_for)} is not the reference "
               f"image's ({ref_for}); pass check_frame_of_reference=False if they are known to match")
        raise GeometryMismatchError(msg)
    available = list_rois(path)
    if rois is None:
        chosen = [r for r in available if "CLOSED_PLANAR" in r["types"]]
    else:
        chosen = []
        by_name = {r["name"]: r for r in available}
        by_number = {r["number"]: r for r in available}
        for key in rois:
            if isinstance(key, int) or (isinstance(key, str) and key.isdigit() and key not in by_name):
                entry = by_number.get(int(key))
            else:
                entry = by_name.get(str(key))
            if entry is None:
                raise UnknownNameError("ROI", str(key), [r["name"] for r in available])
            chosen.append(entry)
    if len(chosen) > 255:
        raise ParameterError(f"read_rtstruct: {len(chosen)} ROIs do not fit a uint8 label map; select fewer")

    contours: dict[int, list[Any]] = {}
    for item in ds.get("ROIContourSequence", []):
        contours[int(item.ReferencedROINumber)] = list(item.get("ContourSequence", []))
    shape = reference.spatial_shape if reference.spatial_ndim == 3 else (1, *reference.spatial_shape)
    out = np.zeros(shape, dtype=np.uint8)
    warnings: list[str] = []
    info = []
    for label, roi in enumerate(chosen, start=1):
        mask = np.zeros(shape, dtype=bool)
        skipped: dict[str, int] = {}
        for contour in contours.get(roi["number"], []):
            kind = str(contour.get("ContourGeometricType", ""))
            if kind != "CLOSED_PLANAR":
                skipped[kind or "untyped"] = skipped.get(kind or "untyped", 0) + 1
                continue
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            index = reference.physical_to_index(points)
            z = index[:, 2]
            k = int(np.rint(z.mean()))
            if np.max(np.abs(z - k)) > plane_tolerance:
                skipped["off-plane"] = skipped.get("off-plane", 0) + 1
                continue
            if not 0 <= k < shape[0]:
                skipped["outside the image"] = skipped.get("outside the image", 0) + 1
                continue
            mask[k] ^= polygon_mask(index[:, :2], shape[1:])
        for kind, n in sorted(skipped.items()):
            warnings.append(f"ROI {roi['name']!r}: skipped {n} {kind} contour(s)")
        overlap = int(np.count_nonzero(mask & (out > 0)))
        if overlap:
            warnings.append(f"ROI {roi['name']!r} overlaps earlier ROIs on {overlap} voxels (it wins there)")
        out[mask] = label
        info.append({"label": label, "number": roi["number"], "name": roi["name"],
                     "n_contours": roi["n_contours"], "voxels": int(mask.sum())})
    meta = {"source_format": "dicom-rtstruct", "rois": info, "StructureSetLabel": str(ds.get("StructureSetLabel", ""))}
    if warnings:
        meta["warnings"] = warnings
    return reference.with_array(out if reference.spatial_ndim == 3 else out[0], meta=meta)
