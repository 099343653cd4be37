r"""IBSI chapter 1 image processing: interpolation, re-segmentation and discretisation.

Array-level functions (used by :func:`~medimg.features.roi.prepare_roi`, which runs them once
per region and only on the region's bounding box) and Image-level wrappers for users.

Interpolation follows the IBSI grid rule "align grid centres": along an axis with :math:`n`
voxels of spacing :math:`s`, the new grid of spacing :math:`s'` has
:math:`n' = \lceil n s / s' \rceil` voxels and the same centre, so output voxel :math:`j` lies
at input index :math:`\left(\tfrac{s(n-1) - s'(n'-1)}{2} + j s'\right) / s`. Out-of-grid values
repeat the edge voxel. Masks are interpolated as a partial-volume fraction (linear) or nearest
neighbour, then thresholded (inside when the fraction is :math:`\ge` the threshold, 0.5).

Discretisation (IBSI 2.7): fixed bin number :math:`N_g`:
:math:`x_d = \lfloor N_g (x - X_{min}) / (X_{max} - X_{min}) \rfloor + 1` (:math:`x_d = N_g`
at :math:`X_{max}`); fixed bin size :math:`w_b` from :math:`X_{lb}`:
:math:`x_d = \lfloor (x - X_{lb}) / w_b \rfloor + 1`; ``none`` keeps integer grey levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError

__all__ = [
    "aligned_grid",
    "interpolate_image",
    "interpolate_mask",
    "resegment",
    "discretise",
    "SPHERE_RADIUS_MM",
]

#: Radius (mm) of the 1 cm^3 sphere of the IBSI local intensity features.
SPHERE_RADIUS_MM = float((3.0 / (4.0 * math.pi)) ** (1.0 / 3.0) * 10.0)

_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}


def aligned_grid(
    shape_zyx: Sequence[int], spacing_zyx: Sequence[float], new_spacing_zyx: Sequence[float]
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """The IBSI centre-aligned grid: new shape, and per axis the input index of output index 0
    and the step (input voxels per output voxel). All in (z, y, x) order."""
    n = np.asarray(shape_zyx, dtype=float)
    s = np.asarray(spacing_zyx, dtype=float)
    s_new = np.asarray(new_spacing_zyx, dtype=float)
    n_new = np.ceil(np.round(n * s / s_new, 9)).astype(int)
    n_new = np.maximum(n_new, 1)
    start = (s * (n - 1) - s_new * (n_new - 1)) / 2.0 / s
    step = s_new / s
    return tuple(int(v) for v in n_new), start, step


def _resample_box(
    array: np.ndarray,
    start: np.ndarray,
    step: np.ndarray,
    out_lo: np.ndarray,
    out_hi: np.ndarray,
    order: int,
) -> np.ndarray:
    """Values of the output voxels ``out_lo..out_hi`` (inclusive) of the aligned grid."""
    first = start + out_lo * step  # input index of the first output voxel
    last = start + out_hi * step
    pad = 3 if order == 3 else 1
    shape = np.asarray(array.shape)
    c_lo = np.clip(np.floor(np.minimum(first, last)).astype(int) - pad, 0, shape - 1)
    c_hi = np.clip(np.ceil(np.maximum(first, last)).astype(int) + pad, 0, shape - 1)
    crop = array[tuple(slice(a, b + 1) for a, b in zip(c_lo, c_hi, strict=True))]
    out_shape = tuple(int(v) for v in (out_hi - out_lo + 1))
    identity = np.all(step == 1.0) and np.all(first == np.round(first))
    if identity:
        lo = (np.round(first).astype(int) - c_lo)
        return crop[tuple(slice(a, a + m) for a, m in zip(lo, out_shape, strict=True))].astype(np.float64)
    if order == 0:  # nearest: index directly (round half up, as IBSI's nearest neighbour)
        idx = [np.clip(np.floor(first[a] + np.arange(out_shape[a]) * step[a] + 0.5).astype(int) - c_lo[a],
                       0, crop.shape[a] - 1) for a in range(3)]
        return crop[np.ix_(*idx)].astype(np.float64)
    return separable_resample(crop.astype(np.float64), step, first - c_lo, out_shape, order)


def _axis_weights(pos: np.ndarray, n: int, order: int) -> Any:
    """Sparse (len(pos) x n) matrix of 1-D interpolation weights at input indices ``pos``:
    linear (index clamped, scipy's ``nearest``) or cubic B-spline (coefficients mirrored)."""
    from scipy import sparse

    i0 = np.floor(pos).astype(int)
    t = pos - i0
    if order == 3:
        w = np.stack([(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6,
                      (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6], axis=1)
        idx = i0[:, None] + np.arange(-1, 3)[None]
        period = max(2 * n - 2, 1)
        idx = np.mod(idx, period)
        idx = np.where(idx >= n, period - idx, idx)
    else:
        w = np.stack([1 - t, t], axis=1)
        idx = np.clip(i0[:, None] + np.arange(2)[None], 0, n - 1)
    rows = np.repeat(np.arange(len(pos)), w.shape[1])
    return sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(pos), n))


def separable_resample(array: np.ndarray, step: np.ndarray, offset: np.ndarray, out_shape: tuple[int, ...],
                       order: int) -> np.ndarray:
    """``scipy.ndimage.affine_transform(array, step, offset, out_shape, order, mode="nearest")``
    for a diagonal matrix ``step`` (input voxels per output voxel), computed one axis at a time.

    The tensor-product spline of a grid-aligned scaling is separable: three 1-D passes with
    sparse weight matrices (2 or 4 taps) replace one 3-D pass with 8 or 64 taps per voxel
    (5-8x faster on a CT). Cubic: scipy's own scheme for ``nearest`` (pad 12 voxels by edge
    values, B-spline prefilter with mirror boundaries), so the values agree to ~1e-13.
    """
    from scipy import ndimage

    if order not in (1, 3):
        raise ParameterError(f"separable_resample: order must be 1 or 3, got {order}")
    a = np.asarray(array, dtype=np.float64)
    pad = 12 if order == 3 else 0
    if order == 3:
        a = ndimage.spline_filter(np.pad(a, pad, mode="edge"), order=3, mode="mirror")
    # shrink first: the axes whose output is smallest relative to the input go first
    for axis in np.argsort([o / n for o, n in zip(out_shape, a.shape, strict=True)], kind="stable"):
        pos = float(offset[axis]) + pad + np.arange(out_shape[axis]) * float(step[axis])
        weights = _axis_weights(pos, a.shape[axis], order)
        moved = np.moveaxis(a, int(axis), 0)
        res = weights @ moved.reshape(moved.shape[0], -1)
        a = np.moveaxis(np.asarray(res).reshape((out_shape[axis], *moved.shape[1:])), 0, int(axis))
    return np.ascontiguousarray(a)


def _new_affine(image: Image, start: np.ndarray, step: np.ndarray, out_lo: np.ndarray) -> np.ndarray:
    affine = np.array(image.affine, dtype=float)
    index_xyz = (start + out_lo * step)[::-1]  # input index (x, y, z) of the new voxel (0, 0, 0)
    new = affine.copy()
    new[:3, :3] = affine[:3, :3] * step[::-1][np.newaxis, :]
    new[:3, 3] = affine[:3, :3] @ index_xyz + affine[:3, 3]
    return new


def _target_spacing_zyx(image: Image, spacing_mm: Sequence[float], in_plane_only: bool) -> np.ndarray:
    if len(spacing_mm) != 3 or any(not float(v) > 0 for v in spacing_mm):
        raise ParameterError(f"spacing_mm must be three positive values (x, y, z) in mm, got {spacing_mm!r}")
    new = np.asarray(spacing_mm, dtype=float)[::-1].copy()
    if in_plane_only:
        new[0] = image.spacing[2]
    return new


def interpolate_image(
    image: Image,
    spacing_mm: Sequence[float],
    *,
    method: str = "linear",
    in_plane_only: bool = False,
    round_intensities: bool = False,
) -> Image:
    """Resample a 3-D ``image`` to ``spacing_mm`` (x, y, z; mm) on the IBSI centre-aligned grid.

    Parameters
    ----------
    image
        Scalar 3-D image.
    spacing_mm
        New voxel spacing (x, y, z) in mm; with ``in_plane_only`` the z value is ignored.
    method
        ``"linear"``, ``"cubic"`` (B-spline) or ``"nearest"``.
    in_plane_only
        Resample within slices only (IBSI 2-D interpolation).
    round_intensities
        Round the result to integers (CT).

    Returns
    -------
    Image
        float64 image on the new grid (same direction; origin moved to the new first voxel).
    """
    if method not in _ORDERS:
        raise ParameterError(f"method must be one of {', '.join(_ORDERS)}, got {method!r}")
    _check_3d(image, "image")
    spacing_zyx = np.asarray(image.spacing, dtype=float)[::-1]
    new_shape, start, step = aligned_grid(image.spatial_shape, spacing_zyx,
                                          _target_spacing_zyx(image, spacing_mm, in_plane_only))
    out_lo = np.zeros(3, dtype=int)
    out = _resample_box(np.asarray(image.array), start, step, out_lo, np.asarray(new_shape) - 1,
                        _ORDERS[method])
    if round_intensities:
        out = np.round(out)
    return Image(out, _new_affine(image, start, step, out_lo), meta=image.meta)


def interpolate_mask(
    mask: Image,
    spacing_mm: Sequence[float],
    *,
    label: int = 1,
    method: str = "linear",
    threshold: float = 0.5,
    in_plane_only: bool = False,
) -> Image:
    """Resample the region ``mask == label`` to ``spacing_mm`` (x, y, z; mm), IBSI-style.

    The region is interpolated as a partial-volume fraction (``method="linear"``) or by nearest
    neighbour, and voxels whose fraction is at least ``threshold`` are inside. Returns a uint8
    mask (1 inside) on the same grid as :func:`interpolate_image` gives.
    """
    if method not in ("linear", "nearest"):
        raise ParameterError(f"mask method must be 'linear' or 'nearest', got {method!r}")
    _check_3d(mask, "mask")
    spacing_zyx = np.asarray(mask.spacing, dtype=float)[::-1]
    new_shape, start, step = aligned_grid(mask.spatial_shape, spacing_zyx,
                                          _target_spacing_zyx(mask, spacing_mm, in_plane_only))
    out_lo = np.zeros(3, dtype=int)
    frac = _resample_box((np.asarray(mask.array) == label).astype(np.float64), start, step, out_lo,
                         np.asarray(new_shape) - 1, _ORDERS[method])
    inside = frac >= threshold - 1e-9
    return Image(inside.astype(np.uint8), _new_affine(mask, start, step, out_lo))


def resegment(
    values: np.ndarray,
    *,
    value_range: tuple[float | None, float | None] | None = None,
    outlier_sigma: float | None = None,
) -> np.ndarray:
    """IBSI re-segmentation: the boolean selection of ``values`` that stay in the intensity mask.

    ``value_range`` keeps ``low <= x <= high`` (a ``None`` bound is open); ``outlier_sigma``
    then keeps :math:`|x - \\mu| \\le k\\sigma` (mean and standard deviation of the values kept by
    the range).
    """
    keep = np.ones(values.shape, dtype=bool)
    if value_range is not None:
        lo, hi = value_range
        if lo is not None:
            keep &= values >= lo
        if hi is not None:
            keep &= values <= hi
    if outlier_sigma is not None and keep.any():
        kept = values[keep]
        mu, sd = float(kept.mean()), float(kept.std())
        keep &= np.abs(values - mu) <= outlier_sigma * sd
    return keep


def discretise(
    values: np.ndarray,
    *,
    method: str,
    bin_width: float = 25.0,
    lower_bound: float | None = None,
    n_bins: int = 32,
) -> tuple[np.ndarray, int]:
    """IBSI discretisation of ``values`` (the intensities of the ROI): ``(levels, n_levels)``.

    Parameters
    ----------
    values
        Intensities of the ROI voxels, image units.
    method
        ``"fixed_bin_size"``, ``"fixed_bin_number"`` or ``"none"``.
    bin_width
        FBS bin width (image units).
    lower_bound
        FBS lower bound (image units); ``min(values)`` when None. Values below it go to bin 1.
    n_bins
        FBN number of bins.

    Returns
    -------
    tuple
        int32 grey levels (1 = lowest) and :math:`N_g`, the number of grey levels: ``n_bins``
        (FBN), the highest occupied bin (FBS) or the highest grey level (``none``).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int32), 1
    if method == "fixed_bin_number":
        lo, hi = float(values.min()), float(values.max())
        if hi > lo:
            levels = np.floor(n_bins * (values - lo) / (hi - lo)).astype(np.int64) + 1
            np.minimum(levels, n_bins, out=levels)
        else:
            levels = np.ones(values.shape, dtype=np.int64)
        return levels.astype(np.int32), int(n_bins)
    if method == "fixed_bin_size":
        if not bin_width > 0:
            raise ParameterError(f"bin_width must be > 0 (image units), got {bin_width!r}")
        lb = float(values.min()) if lower_bound is None else float(lower_bound)
        levels = np.floor((values - lb) / bin_width).astype(np.int64) + 1
        np.maximum(levels, 1, out=levels)
        return levels.astype(np.int32), int(levels.max())
    if method == "none":
        rounded = np.round(values)
        if not np.allclose(values, rounded, atol=1e-6) or rounded.min() < 1:
            msg = ("discretisation 'none' needs integer grey levels >= 1 in the ROI (found values "
                   f"from {values.min():g} to {values.max():g}); use 'fixed_bin_size' or 'fixed_bin_number'")
            raise ParameterError(msg)
        levels = rounded.astype(np.int32)
        return levels, int(levels.max())
    raise ParameterError(f"unknown discretisation method {method!r}; use fixed_bin_size, fixed_bin_number or none")


def _check_3d(image: Image, name: str) -> None:
    if not isinstance(image, Image):
        raise ParameterError(f"{name} must be a medimg.Image, got {type(image).__name__}")
    if image.channel_axis is not None or image.spatial_ndim != 3:
        msg = f"{name} must be a scalar 3-D image, got shape {image.shape} (channel_axis={image.channel_axis})"
        raise ParameterError(msg)
