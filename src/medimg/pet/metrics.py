r"""Lesion metrics on SUV images and the PERCIST liver reference.

For a lesion region :math:`R` (``mask == label``) of an SUV image with voxel volume :math:`v`:

* ``suv_max``, ``suv_mean``, ``suv_sd`` (population) of the voxels of :math:`R`;
* ``suv_peak``: the largest mean SUV of a 1 cm³ sphere (radius 6.20 mm; the voxels whose
  centres lie inside it, taken from the whole image, not only :math:`R`) centred on a voxel of
  :math:`R` — the sphere placed to maximise the mean, which is IBSI's *global* intensity peak
  (``0F91``); ``suv_peak_local`` is IBSI's *local* intensity peak (``VJGA``), the sphere centred
  on the hottest voxel. Both come from :func:`medimg.features.intensity.local_means`, the IBSI
  local-intensity code of :mod:`medimg.features`;
* metabolic tumour volume ``mtv_*_ml`` = :math:`v \cdot |\{x \in R : \mathrm{SUV}(x) \ge t\}|`
  (ml) for the fixed threshold :math:`t = 2.5` and for :math:`t` = 41 % and 50 % of
  ``suv_max``; total lesion glycolysis ``tlg_*_g`` = :math:`v \sum_{x \in R,\,\mathrm{SUV} \ge t}
  \mathrm{SUV}(x)` = SUVmean of the MTV × MTV (g, for SUV in g/ml). The thresholds apply inside
  :math:`R` (a volume of interest drawn around the lesion); no connectivity is required.

:func:`liver_reference`: the PERCIST 1.0 normal-liver reference (Wahl et al., J Nucl Med 2009;
50:122S): mean and standard deviation of SUL in a 3 cm diameter sphere in the right liver lobe,
and the measurability threshold 1.5 × mean + 2 × SD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError

__all__ = ["lesion_metrics", "suv_peak", "liver_reference", "SUV_UNITS"]

#: Units an SUV image may carry in ``meta["units"]``.
SUV_UNITS = ("g/ml", "cm2/ml")


def _check(suv: Image, mask: Image | None, *, require_suv: bool, names: tuple[str, str] = ("suv", "mask")) -> None:
    from medimg.filters._common import check_scalar

    check_scalar(suv, names[0])
    if suv.spatial_ndim != 3:
        raise ParameterError(f"{names[0]} must be a 3-D image (a 1 cm3 sphere needs three dimensions)")
    if require_suv and suv.meta.get("units") not in SUV_UNITS:
        msg = (f"{names[0]} has units {suv.meta.get('units')!r}, not SUV (g/ml); convert it with "
               "medimg.pet.to_suv, or pass require_suv=False (CLI: --assume-suv) if its values are SUV")
        raise ParameterError(msg)
    if mask is not None:
        check_scalar(mask, names[1])
        suv.check_same_grid(mask, names=names)


def _region(mask: Image, label: int, name: str = "mask") -> np.ndarray:
    region = np.asarray(mask.array) == label
    if not region.any():
        present = np.unique(np.asarray(mask.array))[:10]
        raise ParameterError(f"{name} has no voxel with label {label} (labels present: "
                             f"{', '.join(str(v) for v in present)})")
    return region


def suv_peak(suv: Image, mask: Image, *, label: int = 1, require_suv: bool = True) -> dict[str, Any]:
    """SUVpeak of the region ``mask == label``: the 1 cm³ sphere placed to maximise its mean.

    Parameters
    ----------
    suv
        3-D SUV image (``meta["units"]`` g/ml unless ``require_suv=False``).
    mask
        Label map on ``suv``'s grid.
    label
        The region's label.
    require_suv
        Refuse images whose ``meta["units"]`` is not SUV.

    Returns
    -------
    dict
        ``suv_peak`` (IBSI global intensity peak), ``suv_peak_local`` (IBSI local intensity
        peak), ``suv_peak_centre_mm`` (LPS centre of the best sphere, mm), ``sphere_radius_mm``.
    """
    _check(suv, mask, require_suv=require_suv)
    _region(mask, label)
    return _peak(suv, mask, label)


def _peak(suv: Image, mask: Image, label: int) -> dict[str, Any]:
    from medimg.features.intensity import local_means
    from medimg.features.processing import SPHERE_RADIUS_MM
    from medimg.features.roi import prepare_roi

    image = suv.with_array(np.asarray(suv.array, dtype=np.float64))
    roi = prepare_roi(image, mask, label=label)
    means = local_means(roi)
    values = roi.values
    best = int(np.argmax(means))
    hottest = values == values.max()
    z, y, x = roi.int_index[best]
    centre = roi.affine @ np.array([x, y, z, 1.0])
    return {"suv_peak": float(means[best]), "suv_peak_local": float(means[hottest].max()),
            "suv_peak_centre_mm": [float(v) for v in centre[:3]], "sphere_radius_mm": SPHERE_RADIUS_MM}


def lesion_metrics(
    suv: Image,
    mask: Image,
    *,
    label: int = 1,
    fixed_threshold: float = 2.5,
    fractions: Sequence[float] = (0.41, 0.50),
    require_suv: bool = True,
) -> dict[str, Any]:
    """SUVmax, SUVmean, SUVpeak, MTV and TLG of one lesion (module notes).

    Parameters
    ----------
    suv
        3-D SUV image (g/ml).
    mask
        Label map on ``suv``'s grid: the lesion, or a volume of interest around it.
    label
        The region's label.
    fixed_threshold
        SUV of the fixed-threshold MTV (g/ml).
    fractions
        Fractions of SUVmax for the relative-threshold MTVs (0 < f <= 1).
    require_suv
        Refuse images whose ``meta["units"]`` is not SUV.

    Returns
    -------
    dict
        ``suv_max``, ``suv_mean``, ``suv_sd``, ``suv_peak``, ``suv_peak_local``,
        ``suv_peak_centre_mm``, ``volume_ml``, ``n_voxels``, ``mtv_fixed_ml``, ``tlg_fixed_g``,
        ``threshold_fixed`` and, per fraction ``f`` (as a percentage ``p``), ``mtv_p_ml``,
        ``tlg_p_g``, ``threshold_p``; ``units``.

    Raises
    ------
    ParameterError
        Not a 3-D scalar SUV image, mask on another grid, empty region, bad thresholds.
    GeometryMismatchError
        ``mask`` is not on ``suv``'s grid.
    """
    _check(suv, mask, require_suv=require_suv)
    if not np.isfinite(fixed_threshold):
        raise ParameterError(f"fixed_threshold must be a finite SUV, got {fixed_threshold!r}")
    for f in fractions:
        if not 0 < f <= 1:
            raise ParameterError(f"fractions must lie in (0, 1], got {f!r}")
    region = _region(mask, label)
    values = np.asarray(suv.array, dtype=np.float64)[region]
    if not np.all(np.isfinite(values)):
        raise ParameterError("suv has NaN or infinite values inside the mask")
    voxel_ml = suv.voxel_volume_mm3 / 1000.0
    suv_max = float(values.max())
    out: dict[str, Any] = {
        "suv_max": suv_max, "suv_mean": float(values.mean()), "suv_sd": float(values.std()),
        "n_voxels": int(values.size), "volume_ml": values.size * voxel_ml,
    }
    out.update(_peak(suv, mask, label))

    def mtv(threshold: float, key: str) -> None:
        sel = values[values >= threshold]
        out[f"threshold_{key}"] = float(threshold)
        out[f"mtv_{key}_ml"] = sel.size * voxel_ml
        out[f"tlg_{key}_g"] = float(sel.sum()) * voxel_ml

    mtv(float(fixed_threshold), "fixed")
    for f in fractions:
        mtv(f * suv_max, f"{f * 100:g}")
    out["units"] = suv.meta.get("units")
    out["voxel_volume_ml"] = voxel_ml
    return out


def _sphere_in_image(image: Image, centre_mm: np.ndarray, radius_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """The box (array slices) around a sphere and the boolean of voxel centres within it."""
    idx = image.physical_to_index(centre_mm)[::-1]  # (z, y, x), continuous
    reach = radius_mm / np.asarray(image.spacing)[::-1]
    lo = np.floor(idx - reach).astype(int)
    hi = np.ceil(idx + reach).astype(int)
    shape = np.asarray(image.spatial_shape)
    if np.any(lo < 0) or np.any(hi >= shape):
        msg = (f"the {2 * radius_mm:g} mm sphere at {[round(float(v), 2) for v in centre_mm]} mm (LPS) reaches "
               f"outside the image ({image.grid_summary()})")
        raise ParameterError(msg)
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    zz, yy, xx = np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    pts = image.index_to_physical(np.stack([xx, yy, zz], axis=-1).astype(float))
    inside = np.sum((pts - centre_mm) ** 2, axis=-1) <= radius_mm**2
    return box, inside


def liver_reference(
    sul: Image,
    *,
    centre_mm: Sequence[float] | None = None,
    liver_mask: Image | None = None,
    label: int = 1,
    diameter_mm: float = 30.0,
    require_suv: bool = True,
) -> dict[str, Any]:
    """The PERCIST liver reference: SUL mean and SD in a sphere in the right liver lobe.

    Parameters
    ----------
    sul
        3-D SUL image (SUV normalised by lean body mass, g/ml; PERCIST's unit).
    centre_mm
        The sphere's centre, LPS mm, placed by the user; or
    liver_mask
        A liver label map on ``sul``'s grid: the sphere is placed at the deepest point of the
        mask's right half (LPS x below the mask's median x; the patient's right is -x) where it
        lies wholly inside the mask.
    label
        The liver's label in ``liver_mask``.
    diameter_mm
        Sphere diameter in mm (PERCIST: 30 mm); voxels whose centres lie within it are used.
    require_suv
        Refuse images whose ``meta["units"]`` is not SUV.

    Returns
    -------
    dict
        ``liver_mean``, ``liver_sd`` (population SD), ``n_voxels``, ``centre_mm``,
        ``diameter_mm``, ``placement`` (``"user"`` or ``"liver mask"``), ``percist_threshold``
        (1.5 × mean + 2 × SD), ``suv_type`` (``meta["suv"]["suv_type"]``, PERCIST expects SUL:
        ``lbm-*``) and ``units``.

    Raises
    ------
    ParameterError
        Neither or both of ``centre_mm`` and ``liver_mask``; a sphere reaching outside the image;
        a liver mask too small for the sphere.
    """
    _check(sul, liver_mask, require_suv=require_suv, names=("sul", "liver_mask"))
    if (centre_mm is None) == (liver_mask is None):
        raise ParameterError("liver_reference: give exactly one of centre_mm (LPS mm) and liver_mask")
    if not np.isfinite(diameter_mm) or diameter_mm <= 0:
        raise ParameterError(f"diameter_mm must be > 0, got {diameter_mm!r}")
    radius = diameter_mm / 2.0
    if centre_mm is not None:
        centre = np.asarray(centre_mm, dtype=float).reshape(-1)
        if centre.size != 3 or not np.all(np.isfinite(centre)):
            raise ParameterError(f"centre_mm must be three LPS coordinates in mm, got {centre_mm!r}")
        placement = "user"
    else:
        centre = _place_in_right_lobe(liver_mask, label, radius)
        placement = "liver mask"
    box, inside = _sphere_in_image(sul, centre, radius)
    vals = np.asarray(sul.array, dtype=np.float64)[box][inside]
    if liver_mask is not None and not np.all(np.asarray(liver_mask.array)[box][inside] == label):
        raise ParameterError("liver_reference: the sphere does not lie inside the liver mask")  # pragma: no cover
    mean, sd = float(vals.mean()), float(vals.std())
    return {"liver_mean": mean, "liver_sd": sd, "n_voxels": int(vals.size), "centre_mm": [float(v) for v in centre],
            "diameter_mm": float(diameter_mm), "placement": placement, "percist_threshold": 1.5 * mean + 2.0 * sd,
            "suv_type": (sul.meta.get("suv") or {}).get("suv_type"), "units": sul.meta.get("units")}


def _place_in_right_lobe(mask: Image, label: int, radius_mm: float) -> np.ndarray:
    from scipy import ndimage

    liver = _region(mask, label, "liver_mask")
    spacing_zyx = np.asarray(mask.spacing)[::-1]
    idx = np.argwhere(liver)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    depth = np.zeros(liver.shape)
    # distance (mm) from each liver voxel centre to the nearest voxel centre outside the liver
    depth[box] = ndimage.distance_transform_edt(np.pad(liver[box], 1), sampling=spacing_zyx)[1:-1, 1:-1, 1:-1]
    x_mm = mask.index_to_physical(idx[:, ::-1].astype(float))[:, 0]
    right = x_mm <= np.median(x_mm)
    fits = depth[liver] > radius_mm
    candidates = np.flatnonzero(right & fits)
    if candidates.size == 0:
        msg = (f"liver_mask: no point of the liver's right half lies deeper than {radius_mm:g} mm inside it, so a "
               f"{2 * radius_mm:g} mm sphere does not fit; place the sphere with centre_mm (--liver-centre)")
        raise ParameterError(msg)
    best = candidates[np.argmax(depth[liver][candidates])]
    return mask.index_to_physical(idx[best, ::-1].astype(float))
