"""Turning a series of frames into one :class:`~medimg.Image` with a correct geometry.

Frames are sorted by their position along the slice normal (row x column direction cosines),
never by file name or Instance Number. The slice spacing is measured from the positions, not
read from Slice Thickness. Missing slices, unequal spacing and gantry tilt (slices sheared
along the stack) are detected; by default they raise an error that names the gap, and with
``on_irregular="resample"`` the series is resampled onto a regular grid along the normal
(linear interpolation, recorded in ``meta["warnings"]``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import (
    GantryTiltError,
    InconsistentSeriesError,
    MissingSliceError,
    MultipleSeriesError,
    NonUniformSpacingError,
    ParameterError,
)
from medimg.io.dicom.pixels import (
    can_read_raw,
    decode_pixels,
    raw_dtype,
    read_raw_frames_hashed,
    read_raw_frames_into,
)
from medimg.io.dicom.scan import Frame, SeriesInfo, scan

__all__ = ["StackGeometry", "analyze_geometry", "read_series", "read_dicom", "series_meta"]

#: Largest deviation (mm, or this fraction of the spacing if larger) of a slice gap from the
#: mean that still counts as equal spacing; DS values carry ~1e-5 mm rounding.
_SPACING_TOL_MM = 0.01
_SPACING_TOL_REL = 0.01


@dataclass
class StackGeometry:
    """The sorted frames of a series and what their positions say about the grid."""

    frames: list[Frame]
    affine: np.ndarray
    distances: np.ndarray  # along the normal, mm, sorted ascending
    slice_spacing: float
    regular: bool
    problems: list[str] = field(default_factory=list)
    kind: Literal["ok", "missing", "nonuniform", "tilt"] = "ok"
    inplane_offsets: np.ndarray | None = None  # (n, 2) offsets along row/column, mm
    tilt_deg: float = 0.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _name(frame: Frame) -> str:
    inst = frame.header.get("InstanceNumber")
    where = str(frame.header.path) + (f"[frame {frame.index + 1}]" if frame.header.number_of_frames > 1 else "")
    return f"{where} (instance {inst})" if inst is not None else where


def analyze_geometry(series: SeriesInfo) -> StackGeometry:
    """Sort a series' frames along the slice normal and check spacing, gaps and tilt (no pixels read)."""
    frames = series.frames
    if not series.has_geometry:
        raise ParameterError(f"series {series.key} has no patient geometry")
    iop = np.asarray(frames[0].orientation, dtype=float)
    row = _unit(iop[:3])
    col = iop[3:] - (iop[3:] @ row) * row  # orthonormalise (DS rounding)
    col = _unit(col)
    normal = np.cross(row, col)
    positions = np.array([f.position for f in frames])
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    positions = positions[order]
    dist = dist[order]
    ps = frames[0].pixel_spacing
    problems: list[str] = []
    if ps is None:
        ps = (1.0, 1.0)
        problems.append("Pixel Spacing (0028,0030) missing: 1 mm assumed in-plane")
    n = len(frames)
    gaps = np.diff(dist)
    if n > 1 and np.any(gaps < 1e-3):
        k = int(np.argmax(gaps < 1e-3))
        uid_a, uid_b = frames[k].header.get("SOPInstanceUID"), frames[k + 1].header.get("SOPInstanceUID")
        if uid_a and uid_a == uid_b and frames[k].index == frames[k + 1].index:
            msg = (
                f"series {series.key}: instance {uid_a} is stored twice, in "
                f"{frames[k].header.path} and {frames[k + 1].header.path}; remove one copy"
            )
            raise InconsistentSeriesError(msg)
        msg = (
            f"series {series.key}: two frames at the same position {dist[k]:.3f} mm along the "
            f"normal: {_name(frames[k])} and {_name(frames[k + 1])}; they belong to different "
            "volumes that no tag separates (check echo, phase or acquisition)"
        )
        raise InconsistentSeriesError(msg)
    kind: Literal["ok", "missing", "nonuniform", "tilt"] = "ok"
    if n == 1:
        h = frames[0].header
        dz = float(h.get("SpacingBetweenSlices") or frames[0].thickness or 1.0)
        regular = True
    else:
        mean_gap = (dist[-1] - dist[0]) / (n - 1)
        ordered = np.sort(gaps)  # np.median's value, without the numpy.ma import it costs (~11 ms a process)
        median_gap = float((ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2)
        tol = max(_SPACING_TOL_MM, _SPACING_TOL_REL * median_gap)
        regular = bool(np.max(np.abs(gaps - mean_gap)) <= tol)
        dz = float(mean_gap)
        if not regular:
            ratio = gaps / median_gap
            big = np.flatnonzero(ratio > 1.5)
            near_int = np.all(np.abs(ratio - np.round(ratio)) < 0.1)
            others_ok = np.all(np.abs(np.delete(gaps, big) - median_gap) <= tol)
            if big.size and near_int and others_ok:
                kind = "missing"
                for k in big:
                    missing = int(round(ratio[k])) - 1
                    problems.append(
                        f"{missing} slice(s) missing between {_name(frames[k])} at "
                        f"{dist[k]:.3f} mm and {_name(frames[k + 1])} at {dist[k + 1]:.3f} mm "
                        f"(gap {gaps[k]:.3f} mm, spacing {median_gap:.3f} mm)"
                    )
                dz = median_gap
            else:
                kind = "nonuniform"
                problems.append(
                    f"slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm "
                    f"(between {_name(frames[int(np.argmin(gaps))])} and its neighbour, and "
                    f"{_name(frames[int(np.argmax(gaps))])} and its neighbour)"
                )
                dz = float(gaps.min())
    # Gantry tilt: slice origins drift in-plane as we move along the normal.
    rel = positions - positions[0]
    inplane = rel - np.outer(dist - dist[0], normal)
    offsets = np.column_stack([inplane @ row, inplane @ col])
    tilt_deg = 0.0
    if n > 1 and np.max(np.linalg.norm(offsets, axis=1)) > max(_SPACING_TOL_MM, 1e-3 * min(ps)) * 5:
        tilt_deg = math.degrees(math.atan2(float(np.linalg.norm(offsets[-1])), float(dist[-1] - dist[0])))
        gantry = frames[0].header.get("GantryDetectorTilt")
        tag = f"; Gantry/Detector Tilt (0018,1120) = {gantry}" if gantry is not None else ""
        problems.append(
            f"slices are sheared by {tilt_deg:.2f} degrees (gantry tilt{tag}): the stack runs "
            f"{np.linalg.norm(offsets[-1]):.2f} mm in-plane over {dist[-1] - dist[0]:.2f} mm"
        )
        if kind == "ok":
            kind = "tilt"
        regular = False
    affine = np.eye(4)
    affine[:3, 0] = row * ps[1]  # x step = column spacing
    affine[:3, 1] = col * ps[0]  # y step = row spacing
    affine[:3, 2] = normal * dz
    affine[:3, 3] = positions[0]
    return StackGeometry(
        frames=frames,
        affine=affine,
        distances=dist,
        slice_spacing=dz,
        regular=regular,
        problems=problems,
        kind=kind,
        inplane_offsets=offsets,
        tilt_deg=tilt_deg,
    )


def _raise_irregular(series: SeriesInfo, geo: StackGeometry) -> None:
    detail = "; ".join(geo.problems)
    hint = " Pass on_irregular='resample' (CLI: --resample) to resample onto a regular grid."
    if geo.kind == "missing":
        raise MissingSliceError(f"series {series.describe()}: {detail}.{hint}")
    if geo.kind == "nonuniform":
        raise NonUniformSpacingError(f"series {series.describe()}: {detail}.{hint}")
    raise GantryTiltError(f"series {series.describe()}: {detail}.{hint}")


def _stack_pixels(frames: list[Frame], hashes: dict[Path, str] | None = None) -> np.ndarray:
    """Stored values of ``frames`` stacked in order: (n, rows, cols[, samples]). With ``hashes``,
    the SHA-256 of each file read whole for its pixels is put there (see :func:`read_series`)."""
    first = frames[0].header
    rows, cols = int(first.get("Rows")), int(first.get("Columns"))
    all_raw = all(f.header.number_of_frames == 1 and can_read_raw(f.header) for f in frames)
    dtypes = {raw_dtype(f.header) for f in frames} if all_raw else set()
    if all_raw and len(dtypes) == 1:
        out = np.empty((len(frames), rows, cols), dtype=dtypes.pop())
        for i, frame in enumerate(frames):
            if hashes is None:
                read_raw_frames_into(frame.header, out[i : i + 1])
            else:
                digest = read_raw_frames_hashed(frame.header, out[i : i + 1])
                if digest is not None:
                    hashes[frame.header.path] = digest
        return out.astype(out.dtype.newbyteorder("="), copy=False)
    cache: dict[Path, np.ndarray] = {}
    uses: dict[Path, int] = defaultdict(int)
    for f in frames:
        uses[f.header.path] += 1
    slices = []
    for frame in frames:
        path = frame.header.path
        if path not in cache:
            cache[path] = decode_pixels(path, frame.header)
        data = cache[path]
        if frame.index >= data.shape[0]:
            from medimg.errors import TruncatedFileError

            raise TruncatedFileError(path, f"frame {frame.index + 1} missing: pixel data holds {data.shape[0]} frame(s)")
        slices.append(data[frame.index])
        uses[path] -= 1
        if uses[path] == 0:
            del cache[path]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InconsistentSeriesError(f"frames of one series decode to different shapes: {sorted(shapes)}")
    return np.stack(slices)


def _apply_rescale(stored: np.ndarray, frames: list[Frame]) -> tuple[np.ndarray, dict[str, Any]]:
    slopes = np.array([f.slope for f in frames], dtype=float)
    intercepts = np.array([f.intercept for f in frames], dtype=float)
    info = {"slope": float(slopes[0]), "intercept": float(intercepts[0])}
    if np.all(slopes == 1.0) and np.all(intercepts == 0.0):
        return stored, info
    uniform = np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0])
    if uniform and stored.dtype.kind in "iu" and slopes[0] == round(slopes[0]) and intercepts[0] == round(intercepts[0]):
        s, b = int(slopes[0]), int(intercepts[0])
        if not stored.size:
            lo, hi = 0, 0
        elif stored.dtype.kind == "u" and s >= 0 and b >= np.iinfo(np.int16).min:
            # unsigned values times a slope >= 0: the smallest result is at least ``b``, which
            # fits every candidate type, so only the largest value decides (one pass, not two)
            lo, hi = 0, int(stored.max())
        else:
            lo, hi = int(stored.min()), int(stored.max())
        ends = (lo * s + b, hi * s + b)
        lo_v, hi_v = min(ends), max(ends)
        for cand in (np.int16, np.int32, np.int64):
            if np.iinfo(cand).min <= lo_v and hi_v <= np.iinfo(cand).max:
                # ``stored`` is this reader's own fresh array: rescaled in place when its items have
                # the width of ``cand`` (uint16 -> int16 too: the sum wraps modulo 2**16 exactly as
                # the true result does, and the true result fits, so they are equal)
                same_width = stored.dtype.itemsize == np.dtype(cand).itemsize and stored.dtype.isnative
                out = stored.view(cand) if same_width and stored.flags.c_contiguous else stored.astype(cand)
                if s != 1:
                    out *= s
                out += cand(b)
                return out, info
    ftype = np.float64 if stored.dtype == np.float64 else np.float32
    shape = (-1,) + (1,) * (stored.ndim - 1)
    out = stored.astype(ftype) * slopes.reshape(shape).astype(ftype) + intercepts.reshape(shape).astype(ftype)
    if not uniform:
        info["per_frame"] = True
    return out, info


def _resample_regular(volume: np.ndarray, geo: StackGeometry) -> tuple[np.ndarray, int]:
    """Undo in-plane shear and interpolate along the normal onto spacing ``geo.slice_spacing``."""
    from scipy import ndimage

    vol = volume.astype(np.float32, copy=False)
    ps = geo.frames[0].pixel_spacing or (1.0, 1.0)
    fill = float(vol.min()) if vol.size else 0.0
    if geo.inplane_offsets is not None and np.any(np.abs(geo.inplane_offsets) > 1e-6):
        shifted = np.empty_like(vol)
        for k in range(vol.shape[0]):
            du_mm, dv_mm = geo.inplane_offsets[k]
            shift = (dv_mm / ps[0], du_mm / ps[1])  # (rows=y, cols=x) in voxels
            shifted[k] = ndimage.shift(vol[k], shift, order=1, mode="constant", cval=fill)
        vol = shifted
    d = geo.distances - geo.distances[0]
    dz = geo.slice_spacing
    n_out = int(math.floor(d[-1] / dz + 1e-6)) + 1
    targets = np.arange(n_out) * dz
    upper = np.clip(np.searchsorted(d, targets, side="right"), 1, len(d) - 1)
    lower = upper - 1
    span = d[upper] - d[lower]
    w = np.where(span > 0, (targets - d[lower]) / np.where(span > 0, span, 1), 0.0).astype(np.float32)
    shape = (-1,) + (1,) * (vol.ndim - 1)
    out = vol[lower] * (1 - w).reshape(shape) + vol[upper] * w.reshape(shape)
    return out, n_out


def series_meta(series: SeriesInfo) -> dict[str, Any]:
    """Series-level metadata kept in ``Image.meta``."""
    h = series.first.values
    keep = (
        "Modality", "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge",
        "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
        "AccessionNumber", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate",
        "SeriesTime", "AcquisitionTime", "Manufacturer", "ManufacturerModelName", "InstitutionName",
        "BodyPartExamined", "PatientPosition", "FrameOfReferenceUID", "SOPClassUID",
        "PhotometricInterpretation", "RescaleType", "KVP", "EchoTime", "MagneticFieldStrength",
        "SliceThickness", "DoseUnits", "ImageType",
    )
    meta: dict[str, Any] = {k: h[k] for k in keep if k in h}
    meta["source_format"] = "dicom"
    meta["series_key"] = series.key
    if series.label:
        meta["series_split"] = series.label
    # Always present: the file's Window Center/Width pairs, or [] when it has none.
    meta["window_presets"] = [
        {"center": float(c), "width": float(w)} for c, w in zip(h["WindowCenter"], h["WindowWidth"], strict=False)
    ] if "WindowCenter" in h and "WindowWidth" in h else []
    meta["transfer_syntax"] = series.first.transfer_syntax
    return meta


def header_problems(series: SeriesInfo) -> list[str]:
    """The header problems of a series' files (unusable values that were ignored), each once, naming the file."""
    out: dict[str, None] = {}
    for path, problems in {f.header.path: f.header.problems for f in series.frames}.items():
        for problem in problems:
            out[f"{path}: {problem}"] = None
    return list(out)


def read_series(series: SeriesInfo, *, on_irregular: Literal["error", "resample"] = "error",
                hashes: dict[Path, str] | None = None) -> Image:
    """Read one series (from :func:`scan`) into an :class:`Image`.

    3-D images have array order (z, y, x) with z along the slice normal, ascending; Rescale
    Slope/Intercept (or Dose Grid Scaling) is applied — integer results stay integer (int16 when
    they fit), others become float32. Series without patient geometry (ultrasound, secondary
    capture) give an image with ``has_patient_geometry=False``.

    ``hashes``: a dict that receives the SHA-256 (hex) of each file whose uncompressed pixels
    were read, taken from the same read (the whole file in one ``preadv``, no second pass; for
    provenance records). Files decoded another way (compressed syntaxes) are not in it.
    """
    if on_irregular not in ("error", "resample"):
        raise ParameterError(f"on_irregular must be 'error' or 'resample', got {on_irregular!r}")
    meta = series_meta(series)
    warnings_: list[str] = header_problems(series)
    if not series.has_geometry:
        frames = series.frames
        stored = _stack_pixels(frames, hashes)
        values, rescale = _apply_rescale(stored, frames)
        ps = frames[0].pixel_spacing or (1.0, 1.0)
        meta["rescale"] = rescale
        if warnings_:
            meta["warnings"] = warnings_
        channel = -1 if values.ndim == 4 else None
        if values.shape[0] == 1:
            values = values[0]
        spacing = (ps[1], ps[0], 1.0)
        return Image.from_geometry(values, spacing=spacing, meta=meta, channel_axis=channel,
                                   has_patient_geometry=False)
    geo = analyze_geometry(series)
    if not geo.regular and on_irregular == "error":
        _raise_irregular(series, geo)
    stored = _stack_pixels(geo.frames, hashes)
    values, rescale = _apply_rescale(stored, geo.frames)
    meta["rescale"] = rescale
    affine = geo.affine
    if not geo.regular:
        values, n_out = _resample_regular(values, geo)
        warnings_.extend(geo.problems)
        warnings_.append(
            f"resampled {len(geo.frames)} slices onto {n_out} regular slices "
            f"{geo.slice_spacing:.3f} mm apart along the normal (linear)"
        )
    meta["sop_instance_uids"] = [f.header.get("SOPInstanceUID") for f in geo.frames] if geo.regular else []
    meta["n_files"] = len(series.files)
    if warnings_:
        meta["warnings"] = warnings_
    if meta.get("Modality") == "PT":  # every image's PET attributes: the SUV decision tree needs them all
        from medimg.pet.tags import pet_tags

        meta["pet"] = pet_tags([f.path for f in geo.frames], in_volume_order=geo.regular)
    channel = -1 if values.ndim == 4 else None
    return Image(values, affine, meta=meta, channel_axis=channel)


def read_dicom(
    path: str | Path,
    *,
    series_uid: str | None = None,
    on_irregular: Literal["error", "resample"] = "error",
) -> Image:
    """Read the one image series under ``path`` (a DICOM file or folder).

    With several series present, ``series_uid`` picks one (a Series Instance UID, or the key
    ``UID#n`` of one volume of a split series); otherwise :class:`MultipleSeriesError` lists them.
    """
    result = scan(path)
    series = result.series
    if not series:
        if result.failures:
            first_path, first_err = result.failures[0]
            if len(result.failures) == 1 and result.n_files == 1:
                raise first_err
            from medimg.errors import EmptyInputError

            raise EmptyInputError(
                f"{path}: no readable DICOM image among {result.n_files} file(s); first problem: {first_err}"
            )
        if result.other_objects:
            from medimg.errors import MissingPixelDataError

            obj = result.other_objects[0]
            raise MissingPixelDataError(
                obj.path, f"no Pixel Data: a {_sop_name(obj.get('SOPClassUID'))} object, not an image"
            )
        from medimg.errors import EmptyInputError

        raise EmptyInputError(f"{path}: no DICOM images found")
    if series_uid is not None:
        chosen = [s for s in series if s.key == series_uid or s.series_uid == series_uid]
        if not chosen:
            raise MultipleSeriesError(
                f"{path}: no series {series_uid!r}; found: " + "; ".join(s.describe() for s in series)
            )
        series = chosen
    if len(series) > 1:
        listing = "; ".join(s.describe() for s in series)
        raise MultipleSeriesError(
            f"{path} holds {len(series)} image series; choose one with series_uid "
            f"(CLI: --series UID): {listing}"
        )
    image = read_series(series[0], on_irregular=on_irregular)
    if result.failures:
        first_path, first_err = result.failures[0]
        image.meta.setdefault("warnings", []).extend(
            [f"{len(result.failures)} file(s) under {path} could not be read and were skipped; first: {first_err}"]
            + [f"also skipped: {err}" for _p, err in result.failures[1:20]]
        )
        image.meta["n_unreadable_files"] = len(result.failures)
    return image


def _sop_name(uid: str | None) -> str:
    if not uid:
        return "non-image"
    try:
        from pydicom.uid import UID

        return UID(uid).name or uid
    except Exception:  # noqa: BLE001
        return uid
