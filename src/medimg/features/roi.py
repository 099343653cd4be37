"""The region of interest after IBSI image processing, shared by every feature family.

:func:`prepare_roi` runs interpolation, re-segmentation and discretisation once, on the region's
bounding box only (plus the margin the local-intensity sphere needs), and returns a :class:`Roi`.
Families read its arrays and share intermediate results through :meth:`Roi.cached`.

Arrays are in (z, y, x) order; ``spacing_zyx`` is in mm in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimg.core.crop import label_box
from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.features.config import RadiomicsConfig
from medimg.features.processing import (
    _ORDERS,
    SPHERE_RADIUS_MM,
    _new_affine,
    _resample_box,
    _target_spacing_zyx,
    aligned_grid,
    discretise,
    resegment,
)

__all__ = ["Roi", "prepare_roi", "roi_from_arrays"]


@dataclass
class Roi:
    """A processed region of interest, cropped to its bounding box (plus a margin).

    Attributes
    ----------
    intensity
        float64 intensities of the box (processed image: interpolated, rounded if asked).
    morph_mask
        bool morphological mask (the interpolated ROI; morphology uses it).
    int_mask
        bool intensity mask (``morph_mask`` after re-segmentation; intensity and texture use it).
    levels
        int32 discretised grey levels (1..``n_levels``) inside ``int_mask``, 0 elsewhere.
    n_levels
        :math:`N_g`, the number of grey levels of the discretisation.
    spacing_zyx
        Voxel spacing in mm, (z, y, x).
    affine
        4x4 LPS affine of the box (voxel index (x, y, z, 1) -> mm), for diagnostics.
    value_range
        Re-segmentation range (image units) or None; the IVH uses it.
    discretisation
        The settings used: ``{"method", "bin_width", "lower_bound", "n_bins"}`` (lower_bound
        resolved).
    diagnostics
        Counts and sizes at each processing step (IBSI diagnostic features).
    """

    intensity: np.ndarray
    morph_mask: np.ndarray
    int_mask: np.ndarray
    levels: np.ndarray
    n_levels: int
    spacing_zyx: tuple[float, float, float]
    affine: np.ndarray
    value_range: tuple[float | None, float | None] | None = None
    discretisation: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per region: shared work between families (masks, neighbourhoods)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def values(self) -> np.ndarray:
        """float64 intensities of the intensity-mask voxels (C order)."""
        return self.cached("values", lambda: self.intensity[self.int_mask])

    @property
    def level_values(self) -> np.ndarray:
        """int32 grey levels of the intensity-mask voxels (C order, same as :attr:`values`)."""
        return self.cached("level_values", lambda: self.levels[self.int_mask])

    @property
    def int_index(self) -> np.ndarray:
        """(N, 3) int64 box indices (z, y, x) of the intensity-mask voxels (C order, same as
        :attr:`values`)."""
        return self.cached("int_index", lambda: np.argwhere(self.int_mask))

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel, mm^3."""
        return float(np.prod(self.spacing_zyx))

    @property
    def n_voxels(self) -> int:
        """Voxels of the intensity mask."""
        return int(self.level_values.size)


def _label_bbox(labels: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Inclusive (z, y, x) bounds and voxel count of ``labels == label`` (3-D), or None when no
    voxel has the label (:func:`medimg.core.crop.label_box`: a few slices at a time, no image-sized
    boolean mask)."""
    return label_box(labels, label, count=True)


def _as_3d(image: Image) -> tuple[np.ndarray, np.ndarray]:
    """(z, y, x) array and (z, y, x) spacing, a 2-D image becoming one slice."""
    arr = np.asarray(image.array)
    sp = np.asarray(image.spacing, dtype=float)[::-1]
    if image.spatial_ndim == 2:
        arr = arr[np.newaxis]
    return arr, sp


def _check_inputs(image: Image, mask: Image) -> None:
    for name, img in (("image", image), ("mask", mask)):
        if not isinstance(img, Image):
            raise ParameterError(f"{name} must be a medimg.Image, got {type(img).__name__}")
        if img.channel_axis is not None:
            msg = f"{name} must be a scalar image, got {img.n_channels} channels per voxel"
            raise ParameterError(msg)
    image.check_same_grid(mask, names=("image", "mask"))


def _no_label(mask: np.ndarray, label: int) -> ParameterError:
    present = np.unique(mask)
    shown = ", ".join(str(v) for v in present[:10]) + (", ..." if present.size > 10 else "")
    msg = (f"mask has no voxel with label {label} (labels present: {shown}); "
           "pass the label of the region of interest as `label`")
    return ParameterError(msg)


def prepare_roi(
    image: Image,
    mask: Image,
    config: RadiomicsConfig | None = None,
    *,
    label: int = 1,
    margin_mm: float | None = None,
) -> Roi:
    """Run the IBSI image processing of ``config`` on the region ``mask == label`` of ``image``.

    Parameters
    ----------
    image
        Scalar intensity image (image units, e.g. HU), 2-D or 3-D.
    mask
        Label map on the same grid as ``image``.
    config
        Processing settings (interpolation, re-segmentation, discretisation); defaults to
        :class:`RadiomicsConfig()`.
    label
        Mask value of the region.
    margin_mm
        Margin kept around the region's bounding box (mm); the local-intensity sphere radius
        when None.

    Raises
    ------
    GeometryMismatchError
        ``image`` and ``mask`` are not on the same grid.
    ParameterError
        The region is empty (before or after processing) or holds NaN/infinite intensities.
    """
    config = config or RadiomicsConfig()
    _check_inputs(image, mask)
    img_arr, spacing = _as_3d(image)
    msk_arr, _ = _as_3d(mask)
    found = _label_bbox(msk_arr, label)
    if found is None:
        raise _no_label(msk_arr, label)
    lo, hi, count = found
    margin_mm = SPHERE_RADIUS_MM if margin_mm is None else float(margin_mm)
    shape = np.asarray(img_arr.shape)
    diag: dict[str, float] = {"initial_roi_voxels": float(count)}
    interp = config.interpolation
    if interp is None:
        m = np.ceil(margin_mm / spacing).astype(int) + 1
        b_lo, b_hi = np.maximum(lo - m, 0), np.minimum(hi + m, shape - 1)
        box = tuple(slice(a, b + 1) for a, b in zip(b_lo, b_hi, strict=True))
        intensity = img_arr[box].astype(np.float64)
        morph = msk_arr[box] == label
        new_spacing = spacing
        affine = np.array(image.affine, dtype=float)
        affine[:3, 3] = image.index_to_physical(b_lo[::-1].astype(float))
    else:
        if image.spatial_ndim != 3:
            raise ParameterError("interpolation needs a 3-D image; set interpolation to null for 2-D images")
        new_spacing = _target_spacing_zyx(image, interp.spacing_mm, interp.in_plane_only)
        new_shape, start, step = aligned_grid(shape, spacing, new_spacing)
        # Output voxels that can be inside the mask, or within the margin of one that is.
        reach = 1.0 + margin_mm / spacing
        o_lo = np.ceil((lo - reach - start) / step).astype(int)
        o_hi = np.floor((hi + reach - start) / step).astype(int)
        o_lo = np.clip(o_lo, 0, np.asarray(new_shape) - 1)
        o_hi = np.clip(o_hi, 0, np.asarray(new_shape) - 1)
        intensity = _resample_box(img_arr, start, step, o_lo, o_hi, _ORDERS[interp.image_method])
        if interp.round_intensities:
            intensity = np.round(intensity)
        frac = _resample_box(msk_arr == label, start, step, o_lo, o_hi,
                             _ORDERS[interp.mask_method])
        morph = frac >= interp.mask_threshold - 1e-9
        affine = _new_affine(image, start, step, o_lo)
        diag["interpolated_image_size_z"], diag["interpolated_image_size_y"], diag["interpolated_image_size_x"] = (
            float(v) for v in new_shape)
        if not morph.any():
            msg = (f"the region (label {label}) vanishes when interpolated to {interp.spacing_mm} mm; "
                   "use a finer spacing or mask_method='nearest'")
            raise ParameterError(msg)
    inside_values = intensity[morph]
    bad = int(np.count_nonzero(~np.isfinite(inside_values)))
    if bad:
        raise ParameterError(f"image has {bad} NaN or infinite voxel(s) inside mask label {label}")
    reseg = config.resegmentation
    value_range = reseg.range
    keep = resegment(inside_values, value_range=value_range, outlier_sigma=reseg.outlier_sigma)
    int_mask = morph.copy()
    int_mask[morph] = keep
    if not keep.any():
        msg = (f"no voxel of the region (label {label}) is left after re-segmentation to "
               f"range={value_range}, outlier_sigma={reseg.outlier_sigma}")
        raise ParameterError(msg)
    disc = config.discretisation
    lower = disc.lower_bound
    if lower is None and disc.method == "fixed_bin_size":
        lower = value_range[0] if value_range is not None and value_range[0] is not None else None
    values = intensity[int_mask]
    if lower is None and disc.method == "fixed_bin_size":
        lower = float(values.min())
    lv, n_levels = discretise(values, method=disc.method, bin_width=disc.bin_width,
                              lower_bound=lower, n_bins=disc.n_bins)
    levels = np.zeros(intensity.shape, dtype=np.int32)
    levels[int_mask] = lv
    diag.update({
        "morph_mask_voxels": float(np.count_nonzero(morph)),
        "int_mask_voxels": float(lv.size),
        "int_mask_mean": float(values.mean()),
        "int_mask_min": float(values.min()),
        "int_mask_max": float(values.max()),
    })
    roi = Roi(
        intensity=intensity,
        morph_mask=morph,
        int_mask=int_mask,
        levels=levels,
        n_levels=int(n_levels),
        spacing_zyx=tuple(float(v) for v in new_spacing),
        affine=affine,
        value_range=value_range,
        discretisation={"method": disc.method, "bin_width": disc.bin_width, "lower_bound": lower,
                        "n_bins": disc.n_bins},
        diagnostics=diag,
    )
    roi._cache["values"] = values
    roi._cache["level_values"] = lv
    return roi


def roi_from_arrays(
    intensity: np.ndarray,
    mask: np.ndarray,
    *,
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    config: RadiomicsConfig | None = None,
) -> Roi:
    """A :class:`Roi` from plain arrays (z, y, x) — for tests and for filter response maps."""
    arr = np.asarray(intensity)
    if arr.ndim == 2:
        arr, mask = arr[np.newaxis], np.asarray(mask)[np.newaxis]
    affine = np.eye(4)
    affine[:3, :3] = np.diag(np.asarray(spacing_zyx, dtype=float)[::-1])
    image = Image(arr, affine)
    return prepare_roi(image, Image(np.asarray(mask).astype(np.uint8), affine), config, label=1)


def _sphere_grid(spacing_zyx: tuple[float, float, float],
                 radius_mm: float) -> tuple[list[np.ndarray], np.ndarray]:
    r = [int(math.floor(radius_mm / s)) for s in spacing_zyx]
    grids = np.meshgrid(*[np.arange(-k, k + 1) for k in r], indexing="ij")
    d2 = sum((g * s) ** 2 for g, s in zip(grids, spacing_zyx, strict=True))
    return grids, d2 <= radius_mm**2 * (1 + 1e-12)


def sphere_offsets(spacing_zyx: tuple[float, float, float],
                   radius_mm: float = SPHERE_RADIUS_MM) -> np.ndarray:
    """Integer (dz, dy, dx) offsets of the voxels whose centres lie within ``radius_mm``."""
    grids, inside = _sphere_grid(spacing_zyx, radius_mm)
    return np.stack([g[inside] for g in grids], axis=1)


def sphere_runs(spacing_zyx: tuple[float, float, float],
                radius_mm: float = SPHERE_RADIUS_MM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The voxels of :func:`sphere_offsets` as x-runs: ``(dz, dy, a)``, the offsets
    ``(dz, dy, -a..a)`` for each (dz, dy) row that has any, in (dz, dy) order."""
    grids, inside = _sphere_grid(spacing_zyx, radius_mm)
    width = inside.sum(axis=2)
    rows = np.nonzero(width)
    return grids[0][:, :, 0][rows], grids[1][:, :, 0][rows], (width[rows] - 1) // 2
