"""Marker-based watershed on the gradient magnitude (or the intensities) of an image.

The flooding is scikit-image's ``watershed``; medimg adds physical units (the Gaussian gradient
is computed in image units per mm with a sigma in mm), markers from seeds in mm, automatic
markers from the h-minima of the landscape, and the region of interest.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.segmentation.morphology import (
    _check_scalar,
    _foreground,
    _label_output,
    _region,
    _smallest_uint,
)
from medimg.segmentation.region import Point, seed_indices

__all__ = ["gradient_magnitude", "watershed"]

_segmentation = registry("segmentation")


def gradient_magnitude(image: Image, *, sigma_mm: float = 1.0) -> np.ndarray:
    """Gaussian gradient magnitude in image units per mm (float64 array, array order).

    Each axis' derivative of the image smoothed by a Gaussian of standard deviation ``sigma_mm``
    (mm; 0 for plain central differences) is divided by that axis' spacing.
    """
    from scipy import ndimage as ndi

    if not np.isfinite(sigma_mm) or sigma_mm < 0:
        raise ParameterError(f"sigma_mm must be >= 0 (mm), got {sigma_mm!r}")
    values = np.asarray(image.array, dtype=np.float64)
    spacing = np.asarray(image.spacing[: image.spatial_ndim])[::-1]
    total = np.zeros(values.shape)
    for axis, step in enumerate(spacing):
        if sigma_mm > 0:
            order = [0] * values.ndim
            order[axis] = 1
            d = ndi.gaussian_filter(values, sigma=tuple(sigma_mm / spacing), order=order, mode="nearest")
        else:
            d = np.gradient(values, axis=axis)
        total += (d / step) ** 2
    return np.sqrt(total)


@_segmentation.register("watershed")
def watershed(
    image: Image,
    *,
    markers: Image | None = None,
    seeds_mm: list[Point] | None = None,
    seeds_voxel: list[tuple[int, ...]] | None = None,
    landscape: Literal["gradient", "intensity", "inverted"] = "gradient",
    sigma_mm: float = 1.0,
    h: float | None = None,
    compactness: float = 0.0,
    watershed_line: bool = False,
    mask: Image | None = None,
) -> Image:
    """Flood a landscape from markers; every voxel joins the marker whose basin it drains to.

    Parameters
    ----------
    image
        Scalar intensity image.
    markers
        Label map on the same grid: each non-zero label is one marker (e.g. 1 = object,
        2 = background seeds).
    seeds_mm, seeds_voxel
        Instead of ``markers``: seed points (LPS mm, or (x, y, z) voxel indices); seed ``k``
        (from 1) becomes marker ``k``.
    landscape
        What is flooded: ``"gradient"`` (default; the Gaussian gradient magnitude, so regions
        stop at edges), ``"intensity"`` (dark basins) or ``"inverted"`` (bright basins).
    sigma_mm
        Gaussian sigma of the gradient, mm.
    h
        Without markers or seeds: markers are the regional minima of the landscape deeper than
        ``h`` (landscape units: image units per mm for the gradient), one label each. Required
        in that case.
    compactness
        scikit-image's compact watershed weight (0 = classical watershed).
    watershed_line
        Leave a one-voxel line of 0 between regions.
    mask
        Optional region of interest: only voxels inside it are labelled (0 outside).

    Returns
    -------
    Image
        Label map on ``image``'s grid with the marker labels (``uint8`` when they fit, else a
        wider unsigned type), 0 outside ``mask`` (and on the lines when ``watershed_line``).
    """
    segmentation = require("skimage.segmentation", extra="ml")
    _check_scalar(image, "image")
    given = sum(x is not None for x in (markers, seeds_mm, seeds_voxel))
    if given > 1:
        raise ParameterError("watershed: give markers, seeds_mm or seeds_voxel, not several")
    if landscape not in ("gradient", "intensity", "inverted"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("watershed landscape", str(landscape), ("gradient", "intensity", "inverted"))
    roi = _region(image, mask)
    if landscape == "gradient":
        land = gradient_magnitude(image, sigma_mm=sigma_mm)
    else:
        land = np.asarray(image.array, dtype=np.float64)
        if landscape == "inverted":
            land = -land
    if not np.all(np.isfinite(land)):
        finite = land[np.isfinite(land)]
        land = np.where(np.isfinite(land), land, finite.max() if finite.size else 0.0)

    if markers is not None:
        image.check_same_grid(markers, names=("image", "markers"))
        _foreground(markers, "markers")
        marker_array = np.asarray(markers.array).astype(np.int64)
        if marker_array.min() < 0:
            raise ParameterError("watershed: markers must be >= 0 (0 = unlabelled)")
    elif seeds_mm is not None or seeds_voxel is not None:
        marker_array = np.zeros(land.shape, dtype=np.int64)
        for k, index in enumerate(seed_indices(image, seeds_mm=seeds_mm, seeds_voxel=seeds_voxel), start=1):
            marker_array[index] = k
    else:
        if h is None or not np.isfinite(h) or h <= 0:
            msg = ("watershed needs markers, seeds_mm or seeds_voxel, or h > 0 (the depth of the "
                   "landscape minima used as automatic markers)")
            raise ParameterError(msg)
        from scipy import ndimage as ndi

        morphology = require("skimage.morphology", extra="ml")
        minima = morphology.h_minima(land, h)
        marker_array, _ = ndi.label(minima)
    if roi is not None:
        marker_array = np.where(roi, marker_array, 0)
    if not marker_array.any():
        raise ParameterError("watershed: no marker inside the image (or inside mask)")
    labels = segmentation.watershed(land, marker_array, mask=roi, compactness=float(compactness),
                                    watershed_line=bool(watershed_line))
    n = int(labels.max())
    step = {"op": "segmentation.watershed", "landscape": landscape, "sigma_mm": float(sigma_mm),
            "n_markers": int(np.unique(marker_array[marker_array > 0]).size)}
    return _label_output(image, labels.astype(_smallest_uint(n)), step)
