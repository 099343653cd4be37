"""Longitudinal lesion change: register a follow-up scan to its baseline, carry the baseline
lesions across, and report each lesion's volume at both time points.

Steps of :func:`longitudinal_change`:

1. Registration, follow-up (fixed) to baseline (moving) by the package's intensity
   registration (task ``"longitudinal"``, rigid by default; affine on request), unless a
   transform is given. The transform maps follow-up points (LPS mm) to baseline points, so
   the baseline mask is resampled onto the follow-up grid directly, with a label-safe
   interpolator that never makes new label values (any transform kind works, no inverse).
2. Lesions: the label values of the baseline mask when it holds several, otherwise its
   connected components (26-connectivity); each keeps its number in the report.
3. Follow-up volumes. With a follow-up mask: its connected components are matched to the
   carried baseline lesions by overlap (each component goes to the lesion it overlaps most;
   a lesion split in two gets both); components that overlap no carried lesion are **new**
   lesions. Without one: each lesion is segmented in the follow-up inside its carried region
   grown by ``search_margin_mm``, by the threshold halfway between the lesion's median
   baseline intensity and the median of a ``shell_mm`` shell around it (this assumes
   comparable intensities, e.g. CT in HU; new lesions cannot be found this way).
   A baseline lesion with no follow-up voxel is **vanished**.

Volumes are voxel counts times the voxel volume of each grid (mm^3); the change is in mm^3 and
in % of the baseline volume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import GeometryMismatchError, ParameterError, UnknownNameError

if TYPE_CHECKING:
    from medimg.registration.transform import Transform

__all__ = ["LesionChange", "LongitudinalResult", "lesion_labels", "longitudinal_change", "match_lesions"]

LesionMode = Literal["auto", "components", "labels"]
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class LesionChange:
    """One lesion: its number, volumes (mm^3) at baseline, carried onto the follow-up grid and at
    follow-up, the change (mm^3 and % of baseline) and its status (``stable``, ``grown``,
    ``shrunk``, ``vanished``, or ``new`` for a follow-up lesion that matches no baseline one)."""

    lesion: int
    status: str
    baseline_volume_mm3: float | None
    carried_volume_mm3: float | None
    followup_volume_mm3: float
    change_mm3: float | None
    change_percent: float | None
    baseline_centroid_mm: list[float] | None = None
    followup_centroid_mm: list[float] | None = None
    followup_components: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return dict(self.__dict__)


@dataclass
class LongitudinalResult:
    """The lesion table plus what produced it: the transform (follow-up -> baseline points),
    the registration record, the baseline lesions carried onto the follow-up grid."""

    lesions: list[LesionChange]
    transform: Transform
    carried_mask: Image
    registration: dict[str, Any]
    method: str

    @property
    def new_lesions(self) -> list[LesionChange]:
        """The follow-up lesions that match no baseline lesion."""
        return [les for les in self.lesions if les.status == "new"]

    @property
    def vanished_lesions(self) -> list[LesionChange]:
        """The baseline lesions with no follow-up voxel."""
        return [les for les in self.lesions if les.status == "vanished"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record: lesions, summary, transform and registration."""
        base = [les for les in self.lesions if les.status != "new"]
        total_b = float(sum(les.baseline_volume_mm3 or 0.0 for les in base))
        total_f = float(sum(les.followup_volume_mm3 for les in self.lesions))
        summary = {
            "baseline_lesions": len(base),
            "new_lesions": len(self.new_lesions),
            "vanished_lesions": len(self.vanished_lesions),
            "baseline_total_mm3": total_b,
            "followup_total_mm3": total_f,
            "change_total_mm3": total_f - total_b,
            "change_total_percent": (100.0 * (total_f - total_b) / total_b) if total_b > 0 else None,
        }
        try:
            tfm = self.transform.describe()
        except Exception:  # noqa: BLE001 - the description is informative only
            tfm = {"kind": getattr(self.transform, "kind", "?")}
        return {"method": self.method, "summary": summary,
                "lesions": [les.as_dict() for les in self.lesions],
                "transform": tfm, "registration": self.registration}


# --------------------------------------------------------------------------- lesions
def lesion_labels(mask: Image, *, lesions: LesionMode = "auto") -> tuple[np.ndarray, list[int]]:
    """The lesions of a mask as an int32 label array and their numbers.

    ``lesions``: ``"labels"`` (each non-zero label value is one lesion, numbered by its value),
    ``"components"`` (each 26-connected component of the non-zero voxels, numbered 1..n in
    scan order), ``"auto"`` (labels when the mask holds more than one non-zero value)."""
    from scipy import ndimage

    if lesions not in ("auto", "components", "labels"):
        raise UnknownNameError("lesion mode", lesions, ["auto", "components", "labels"])
    arr = np.asarray(mask.array)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ParameterError("lesion mask must hold integer labels (0 = background)")
        arr = arr.astype(np.int64)
    values = [int(v) for v in np.unique(arr) if v != 0]
    if lesions == "labels" or (lesions == "auto" and len(values) > 1):
        return arr.astype(np.int32), values
    structure = _STRUCTURE_26 if arr.ndim == 3 else np.ones((3, 3), dtype=bool)
    lab, n = ndimage.label(arr != 0, structure=structure)
    return lab.astype(np.int32), list(range(1, n + 1))


def _volumes(lab: np.ndarray, ids: list[int], voxel_mm3: float) -> dict[int, float]:
    counts = np.bincount(lab.ravel()[lab.ravel() > 0], minlength=max(ids, default=0) + 1) if ids else []
    return {i: float(counts[i]) * voxel_mm3 for i in ids}


def _centroids(lab: np.ndarray, ids: list[int], image: Image) -> dict[int, list[float]]:
    from scipy import ndimage

    if not ids:
        return {}
    cz = ndimage.center_of_mass(np.ones(lab.shape), lab, ids)
    out = {}
    for i, c in zip(ids, cz, strict=True):
        if np.all(np.isfinite(c)):
            out[i] = [float(v) for v in image.index_to_physical(np.asarray(c)[::-1])]
    return out


def match_lesions(carried: np.ndarray, followup: np.ndarray, followup_ids: list[int]) -> dict[int, int]:
    """Each follow-up component's baseline lesion: the carried lesion it overlaps most
    (0 when it overlaps none). Both arrays are label maps on the follow-up grid."""
    out: dict[int, int] = {}
    both = (carried > 0) & (followup > 0)
    pairs = np.stack([followup[both], carried[both]], axis=1) if both.any() else np.zeros((0, 2), int)
    for fid in followup_ids:
        hit = pairs[pairs[:, 0] == fid, 1]
        if hit.size == 0:
            out[fid] = 0
        else:
            vals, counts = np.unique(hit, return_counts=True)
            out[fid] = int(vals[np.argmax(counts)])
    return out


def _distance_within(region: np.ndarray, spacing_zyx: tuple[float, ...], margin_mm: float) -> np.ndarray:
    """Voxels within ``margin_mm`` (Euclidean, in mm) of ``region``."""
    from scipy import ndimage

    if margin_mm <= 0:
        return region.copy()
    dist = ndimage.distance_transform_edt(~region, sampling=spacing_zyx)
    return dist <= margin_mm


def _threshold_followup(baseline: Image, base_lab: np.ndarray, ids: list[int], followup: Image,
                        carried: np.ndarray, *, search_margin_mm: float, shell_mm: float,
                        min_volume_mm3: float) -> tuple[dict[int, np.ndarray], dict[int, list[str]]]:
    """Per lesion, the follow-up voxels of the lesion (see the module docstring)."""
    from scipy import ndimage

    b_arr = np.asarray(baseline.array, dtype=np.float64)
    f_arr = np.asarray(followup.array, dtype=np.float64)
    b_sp = tuple(baseline.spacing[::-1])
    f_sp = tuple(followup.spacing[::-1])
    any_lesion = base_lab > 0
    voxel = followup.voxel_volume_mm3
    regions: dict[int, np.ndarray] = {}
    notes: dict[int, list[str]] = {i: [] for i in ids}
    for i in ids:
        les = base_lab == i
        box = _bbox(les, pad_vox=[int(np.ceil(shell_mm / s)) + 1 for s in b_sp])
        shell = _distance_within(les[box], b_sp, shell_mm) & ~any_lesion[box]
        inside = b_arr[box][les[box]]
        around = b_arr[box][shell]
        if around.size == 0 or inside.size == 0:
            notes[i].append("no background around the lesion at baseline: follow-up not segmented")
            regions[i] = np.zeros(f_arr.shape, dtype=bool)
            continue
        m_in, m_out = float(np.median(inside)), float(np.median(around))
        if m_in == m_out:
            notes[i].append("lesion and surroundings have the same median intensity: follow-up not segmented")
            regions[i] = np.zeros(f_arr.shape, dtype=bool)
            continue
        thr = 0.5 * (m_in + m_out)
        carried_i = carried == i
        if not carried_i.any():
            notes[i].append("the lesion falls outside the follow-up image after registration")
            regions[i] = np.zeros(f_arr.shape, dtype=bool)
            continue
        fbox = _bbox(carried_i, pad_vox=[int(np.ceil(search_margin_mm / s)) + 1 for s in f_sp])
        search = _distance_within(carried_i[fbox], f_sp, search_margin_mm)
        cand = search & ((f_arr[fbox] > thr) if m_in > m_out else (f_arr[fbox] < thr))
        lab, _n = ndimage.label(cand, structure=_STRUCTURE_26)
        keep_ids = np.unique(lab[carried_i[fbox] & (lab > 0)])
        sel = np.isin(lab, keep_ids[keep_ids > 0])
        if min_volume_mm3 > 0 and sel.sum() * voxel < min_volume_mm3:
            sel[:] = False
        if sel.any():
            border = search & ~_erode(search)
            if (sel & border).any():
                notes[i].append(f"follow-up lesion reaches the {search_margin_mm:g} mm search margin: "
                                "its volume is a lower bound (raise search_margin_mm)")
        full = np.zeros(f_arr.shape, dtype=bool)
        full[fbox] = sel
        regions[i] = full
        notes[i].append(f"follow-up segmented by threshold {thr:.6g} (baseline lesion median {m_in:.6g}, "
                        f"surroundings {m_out:.6g})")
    return regions, notes


def _erode(region: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(region, structure=_STRUCTURE_26, border_value=0)


def _bbox(region: np.ndarray, pad_vox: list[int]) -> tuple[slice, ...]:
    idx = np.argwhere(region)
    if idx.size == 0:
        return tuple(slice(0, n) for n in region.shape)
    lo = np.maximum(idx.min(axis=0) - pad_vox, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + np.asarray(pad_vox), region.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


# --------------------------------------------------------------------------- registration
def _register(followup: Image, baseline: Image, transform_kind: str) -> tuple[Transform, dict[str, Any]]:
    """Intensity registration, follow-up fixed and baseline moving, with the package's
    registration and its ``"longitudinal"`` task defaults (Mattes MI: lesions that appear or
    vanish would pull a correlation metric). Returns the transform and the scalar part of its
    quality record."""
    from medimg.registration.intensity import register

    result = register(followup, baseline, transform=transform_kind, task="longitudinal")
    record = {k: v for k, v in result.quality.items() if isinstance(v, (int, float, str, bool, type(None)))}
    return result.transform, {"engine": "medimg.registration.register", **record}


def _check_inputs(baseline: Image, followup: Image, mask: Image, followup_mask: Image | None) -> None:
    if baseline.channel_axis is not None or followup.channel_axis is not None:
        raise ParameterError("longitudinal change needs scalar images (one value per voxel)")
    if baseline.spatial_ndim != followup.spatial_ndim:
        msg = (f"baseline is {baseline.spatial_ndim}-D but follow-up is {followup.spatial_ndim}-D: "
               "both must have the same dimension")
        raise GeometryMismatchError(msg)
    baseline.check_same_grid(mask, names=("baseline", "baseline mask"))
    if followup_mask is not None:
        followup.check_same_grid(followup_mask, names=("follow-up", "follow-up mask"))


def longitudinal_change(baseline: Image, followup: Image, mask: Image, *,
                        followup_mask: Image | None = None,
                        transform: Transform | None = None,
                        transform_kind: Literal["rigid", "affine"] = "rigid",
                        lesions: LesionMode = "auto",
                        interpolator: Literal["nearest", "label_linear"] = "label_linear",
                        search_margin_mm: float = 10.0, shell_mm: float = 3.0,
                        min_volume_mm3: float = 0.0, stable_percent: float = 0.0,
                        registrar: Callable[[Image, Image, str], tuple[Transform, dict[str, Any]]] | None = None,
                        ) -> LongitudinalResult:
    """Per-lesion volume change from ``baseline`` (with its lesion ``mask``) to ``followup``.

    Parameters
    ----------
    baseline, followup
        The two scans (any grids; LPS mm).
    mask
        Baseline lesion label map, on ``baseline``'s grid.
    followup_mask
        Follow-up lesion label map on ``followup``'s grid; when given, follow-up volumes come
        from it and new lesions are found (see the module docstring); otherwise by threshold.
    transform
        A known follow-up -> baseline transform (LPS mm); ``None``: registered here
        (``transform_kind`` rigid or affine, task ``"longitudinal"``).
    lesions
        ``"labels"``, ``"components"`` or ``"auto"`` (:func:`lesion_labels`).
    interpolator
        Label interpolator carrying the mask (``"label_linear"`` or ``"nearest"``).
    search_margin_mm, shell_mm
        Without a follow-up mask: the margin (mm) around the carried lesion searched in the
        follow-up, and the shell (mm) around the baseline lesion giving the background level.
    min_volume_mm3
        Follow-up components (or threshold segmentations) smaller than this are ignored.
    stable_percent
        Changes within +/- this % are reported ``stable``.

    Returns
    -------
    LongitudinalResult
        Lesion table (baseline lesions by number, then new ones), transform, carried mask.
    """
    from medimg.core.resample import resample_like

    _check_inputs(baseline, followup, mask, followup_mask)
    for name, value in (("search_margin_mm", search_margin_mm), ("shell_mm", shell_mm)):
        if not value > 0:
            raise ParameterError(f"{name} must be > 0 mm, got {value}")
    if min_volume_mm3 < 0 or stable_percent < 0:
        raise ParameterError("min_volume_mm3 and stable_percent must be >= 0")
    if transform_kind not in ("rigid", "affine"):
        raise UnknownNameError("longitudinal transform", transform_kind, ["rigid", "affine"])
    base_lab, ids = lesion_labels(mask, lesions=lesions)
    if not ids:
        raise ParameterError("baseline mask has no lesion (no non-zero voxel)")
    registration: dict[str, Any] = {}
    if transform is None:
        transform, registration = (registrar or _register)(followup, baseline, transform_kind)
        registration = {"transform": transform_kind, **registration}
    else:
        registration = {"transform": "given"}
    base_img = Image(base_lab, mask.affine)
    carried = np.asarray(resample_like(base_img, followup, transform=transform,
                                       interpolator=interpolator).array)
    b_vol = _volumes(base_lab, ids, baseline.voxel_volume_mm3)
    c_vol = _volumes(carried, ids, followup.voxel_volume_mm3)
    b_cen = _centroids(base_lab, ids, baseline)
    f_voxel = followup.voxel_volume_mm3
    notes: dict[int, list[str]] = {i: [] for i in ids}
    fu_regions: dict[int, np.ndarray]
    fu_components: dict[int, list[int]] = {i: [] for i in ids}
    new_rows: list[LesionChange] = []
    if followup_mask is not None:
        from scipy import ndimage

        farr = np.asarray(followup_mask.array)
        flab, fn = ndimage.label(farr != 0, structure=_STRUCTURE_26 if farr.ndim == 3 else np.ones((3, 3), bool))
        fids = list(range(1, fn + 1))
        fvol = _volumes(flab, fids, f_voxel)
        fids = [f for f in fids if fvol[f] >= min_volume_mm3]
        owner = match_lesions(carried, flab, fids)
        fu_regions = {i: np.isin(flab, [f for f in fids if owner[f] == i]) for i in ids}
        for f in fids:
            if owner[f]:
                fu_components[owner[f]].append(f)
        fcen = _centroids(flab, fids, followup)
        for f in fids:
            if owner[f] == 0:
                new_rows.append(LesionChange(
                    lesion=f, status="new", baseline_volume_mm3=None, carried_volume_mm3=None,
                    followup_volume_mm3=fvol[f], change_mm3=None, change_percent=None,
                    followup_centroid_mm=fcen.get(f), followup_components=[f],
                    notes=["follow-up component with no overlap with any carried baseline lesion"]))
        method = "follow-up mask, components matched by overlap"
    else:
        fu_regions, notes = _threshold_followup(baseline, base_lab, ids, followup, carried,
                                                search_margin_mm=search_margin_mm, shell_mm=shell_mm,
                                                min_volume_mm3=min_volume_mm3)
        method = "threshold segmentation of the follow-up within the carried lesions"
    rows: list[LesionChange] = []
    for i in ids:
        region = fu_regions[i]
        fv = float(region.sum()) * f_voxel
        bv = b_vol[i]
        change = fv - bv
        pct = 100.0 * change / bv if bv > 0 else None
        if fv == 0:
            status = "vanished"
        elif pct is not None and abs(pct) <= stable_percent:
            status = "stable"
        else:
            status = "grown" if change > 0 else "shrunk" if change < 0 else "stable"
        fcen = _centroids(region.astype(np.int32), [1], followup).get(1) if fv > 0 else None
        if c_vol[i] == 0:
            notes[i].append("carried lesion is empty on the follow-up grid (outside its field of view?)")
        rows.append(LesionChange(
            lesion=i, status=status, baseline_volume_mm3=bv, carried_volume_mm3=c_vol[i],
            followup_volume_mm3=fv, change_mm3=change, change_percent=pct,
            baseline_centroid_mm=b_cen.get(i), followup_centroid_mm=fcen,
            followup_components=fu_components[i], notes=notes[i]))
    carried_img = Image(carried.astype(np.int32), followup.affine, meta={"longitudinal": "baseline lesions"})
    return LongitudinalResult(lesions=rows + new_rows, transform=transform, carried_mask=carried_img,
                              registration=registration, method=method)
