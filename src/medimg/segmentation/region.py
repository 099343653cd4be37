"""Region growing from seeds: connected threshold and confidence connected.

Seeds are given either in LPS millimetres (``seeds_mm``: (x, y, z) points, mapped to the nearest
voxel) or as voxel indices (``seeds_voxel``: (x, y, z) indices, ITK order — the array element is
``array[z, y, x]``; (x, y) for a 2-D image). A seed outside the image raises
:class:`~medimg.errors.ParameterError` naming it.

The region is the set of voxels connected to a seed through voxels that satisfy the intensity
criterion; connectivity is 6 (shared faces, ITK's default) or 26 in 3-D (4 or 8 in 2-D). With a
``mask``, only voxels inside it can join the region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.segmentation.morphology import (
    Connectivity,
    _check_scalar,
    _label_output,
    _region,
    _structure,
)
from medimg.segmentation.threshold import in_range

__all__ = ["seed_indices", "connected_threshold", "confidence_connected"]

_segmentation = registry("segmentation")

Point = tuple[float, ...]


def seed_indices(
    image: Image,
    *,
    seeds_mm: Sequence[Sequence[float]] | None = None,
    seeds_voxel: Sequence[Sequence[int]] | None = None,
) -> list[tuple[int, ...]]:
    """Array indices ((z, y, x) or (y, x)) of the seeds given in mm or as (x, y, z) voxel indices.

    Raises
    ------
    ParameterError
        No seeds, both kinds given, a seed with the wrong number of values, or a seed outside
        the image.
    """
    if (seeds_mm is None) == (seeds_voxel is None):
        raise ParameterError("give the seeds either as seeds_mm (LPS mm) or as seeds_voxel (x, y, z indices)")
    ndim = image.spatial_ndim
    out: list[tuple[int, ...]] = []
    given = seeds_mm if seeds_mm is not None else seeds_voxel
    if len(given) == 0:
        raise ParameterError("at least one seed is needed")
    for k, seed in enumerate(given):
        values = np.asarray(seed, dtype=float).ravel()
        if seeds_mm is not None:
            if values.size not in (ndim, 3):
                raise ParameterError(f"seeds_mm[{k}] must have {ndim} or 3 values (x, y, z mm), got {list(values)}")
            if values.size == 2:
                values = np.append(values, image.origin[2])
            index_xyz = np.rint(image.physical_to_index(values))[:ndim]
        else:
            if values.size != ndim or not np.all(values == np.round(values)):
                raise ParameterError(f"seeds_voxel[{k}] must be {ndim} integers (x, y[, z]), got {list(seed)}")
            index_xyz = values
        index = tuple(int(v) for v in index_xyz[::-1])
        if any(i < 0 or i >= n for i, n in zip(index, image.spatial_shape, strict=True)):
            name = "seeds_mm" if seeds_mm is not None else "seeds_voxel"
            msg = (f"{name}[{k}] = {list(seed)} lies outside the image (voxel index (x, y, z) "
                   f"{list(index[::-1])}, image size {image.size})")
            raise ParameterError(msg)
        out.append(index)
    return out


def _grow(candidates: np.ndarray, seeds: list[tuple[int, ...]], connectivity: int) -> np.ndarray:
    """The components of ``candidates`` that hold a seed."""
    from scipy import ndimage as ndi

    labelled, _ = ndi.label(candidates, structure=_structure(candidates.ndim, connectivity))
    hit = {int(labelled[s]) for s in seeds} - {0}
    if not hit:
        return np.zeros(candidates.shape, dtype=bool)
    keep = np.zeros(int(labelled.max()) + 1, dtype=bool)
    keep[list(hit)] = True
    return keep[labelled]


@_segmentation.register("connected_threshold")
def connected_threshold(
    image: Image,
    *,
    lower: float | None = None,
    upper: float | None = None,
    seeds_mm: list[Point] | None = None,
    seeds_voxel: list[tuple[int, ...]] | None = None,
    connectivity: Connectivity = 6,
    mask: Image | None = None,
) -> Image:
    """Grow a region from seeds through voxels whose intensity lies in ``[lower, upper]``.

    Parameters
    ----------
    image
        Scalar intensity image.
    lower, upper
        Inclusive intensity window in image units (HU for CT); ``None`` for no bound (not both).
    seeds_mm
        Seed points (x, y, z) in LPS mm.
    seeds_voxel
        Seed voxel indices (x, y, z) (instead of ``seeds_mm``).
    connectivity
        6 (default, as ITK's ``ConnectedThresholdImageFilter``) or 26 in 3-D; 4 or 8 in 2-D.
    mask
        Optional region of interest: the region cannot leave it.

    Returns
    -------
    Image
        ``uint8`` label map: 1 on the voxels connected to a seed inside the window. A seed whose
        own value is outside the window grows nothing (``meta["history"][-1]["seeds_used"]``
        counts the seeds that did).
    """
    inside = in_range(image, lower, upper, mask, op="connected_threshold")
    seeds = seed_indices(image, seeds_mm=seeds_mm, seeds_voxel=seeds_voxel)
    region = _grow(inside, seeds, connectivity)
    step = {"op": "segmentation.connected_threshold", "lower": lower, "upper": upper,
            "connectivity": connectivity, "seeds_used": int(sum(bool(inside[s]) for s in seeds))}
    return _label_output(image, region.astype(np.uint8), step)


def _neighbourhood_values(values: np.ndarray, seed: tuple[int, ...], radius: tuple[int, ...]) -> np.ndarray:
    """The voxels of the box of ``radius`` voxels around ``seed`` (clipped to the image), float64."""
    box = tuple(slice(max(0, s - r), s + r + 1) for s, r in zip(seed, radius, strict=True))
    return values[box].astype(np.float64).ravel()


def _sample_stats(samples: np.ndarray) -> tuple[float, float]:
    n = samples.size
    mean = float(samples.mean())
    var = float(((samples - mean) ** 2).sum() / (n - 1)) if n > 1 else 0.0
    return mean, var


@_segmentation.register("confidence_connected")
def confidence_connected(
    image: Image,
    *,
    seeds_mm: list[Point] | None = None,
    seeds_voxel: list[tuple[int, ...]] | None = None,
    multiplier: float = 2.5,
    iterations: int = 4,
    initial_radius_mm: float = 2.0,
    connectivity: Connectivity = 6,
    mask: Image | None = None,
) -> Image:
    r"""Grow a region whose intensity window adapts to the region's own mean and spread.

    ITK's ``ConfidenceConnectedImageFilter`` algorithm: the initial mean :math:`\mu` and sample
    variance :math:`\sigma^2` are those of the voxels of the boxes of ``initial_radius_mm`` around
    the seeds (pooled); the region is the set of voxels connected to a seed with intensity in
    :math:`[\mu - k\sigma, \mu + k\sigma]` (``k = multiplier``), widened if needed to hold every
    seed's own value (and, for integer images, truncated to integers as ITK does).
    ``iterations`` times (fewer if the variance becomes 0), :math:`\mu` and :math:`\sigma^2` are
    recomputed over the current region and the region is grown again.

    Parameters
    ----------
    image
        Scalar intensity image.
    seeds_mm, seeds_voxel
        Seeds in LPS mm (x, y, z) or voxel indices (x, y, z); see the module notes.
    multiplier
        Width of the window in standard deviations (> 0).
    iterations
        Number of re-estimations after the initial growth (>= 0).
    initial_radius_mm
        Half-size of the box around each seed for the first estimate, mm (rounded to whole
        voxels per axis, at least 1 voxel).
    connectivity
        6 (default, as ITK) or 26 in 3-D; 4 or 8 in 2-D.
    mask
        Optional region of interest: the region cannot leave it.

    Returns
    -------
    Image
        ``uint8`` label map; the final window is in ``meta["history"][-1]["window"]``.
    """
    _check_scalar(image, "image")
    if not np.isfinite(multiplier) or multiplier <= 0:
        raise ParameterError(f"multiplier must be > 0 (standard deviations), got {multiplier!r}")
    if int(iterations) != iterations or iterations < 0:
        raise ParameterError(f"iterations must be an integer >= 0, got {iterations!r}")
    if not np.isfinite(initial_radius_mm) or initial_radius_mm <= 0:
        raise ParameterError(f"initial_radius_mm must be > 0 (mm), got {initial_radius_mm!r}")
    seeds = seed_indices(image, seeds_mm=seeds_mm, seeds_voxel=seeds_voxel)
    roi = _region(image, mask)
    values = image.array
    ndim = image.spatial_ndim
    spacing = np.asarray(image.spacing[:ndim])[::-1]
    radius = tuple(max(1, int(round(initial_radius_mm / s))) for s in spacing)
    mean, var = _sample_stats(np.concatenate([_neighbourhood_values(values, s, radius) for s in seeds]))
    seed_values = [float(values[s]) for s in seeds]
    allowed = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, dtype=bool)
    if roi is not None:
        allowed &= roi
    region = np.zeros(values.shape, dtype=bool)
    window = (mean, mean)
    for it in range(int(iterations) + 1):
        sd = float(np.sqrt(max(var, 0.0)))
        lo = min(mean - multiplier * sd, min(seed_values))
        hi = max(mean + multiplier * sd, max(seed_values))
        if values.dtype.kind in "iu":
            lo, hi = float(np.trunc(lo)), float(np.trunc(hi))
        window = (lo, hi)
        region = _grow(allowed & (values >= lo) & (values <= hi), seeds, connectivity)
        if it == iterations or int(region.sum()) < 2:
            break
        mean, var = _sample_stats(values[region].astype(np.float64))
        if abs(var) < 1e-12:
            break
    step = {"op": "segmentation.confidence_connected", "multiplier": float(multiplier),
            "iterations": int(iterations), "window": [float(window[0]), float(window[1])],
            "connectivity": connectivity}
    return _label_output(image, region.astype(np.uint8), step)
