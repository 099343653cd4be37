"""Contrast enhancement and sharpening: histogram equalisation, CLAHE, unsharp mask, Laplacian."""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.core.types import NonNegative, Positive
from medimg.errors import ParameterError
from medimg.filters._common import (
    check_scalar,
    filter_output,
    float_array,
    mm_to_voxels,
    positive,
    region,
    spacing_zyx,
)

__all__ = ["histogram_equalization", "clahe", "unsharp_mask", "laplacian_sharpen", "laplacian"]

_filters = registry("filters")


def _nbins(nbins: int) -> int:
    if int(nbins) != nbins or nbins < 2:
        raise ParameterError(f"nbins must be an integer >= 2, got {nbins!r}")
    return int(nbins)


@_filters.register("histogram_equalization", tags=("enhancement",))
def histogram_equalization(image: Image, *, nbins: int = 256, mask: Image | None = None) -> Image:
    r"""Global histogram equalisation: map each intensity to its cumulative frequency.

    The histogram has ``nbins`` equal bins between the region's minimum and maximum; the output
    is the normalised cumulative histogram, linearly interpolated between bin centres — the
    definition of scikit-image's ``equalize_hist``, with an optional region.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    nbins
        Number of histogram bins (>= 2).
    mask
        Optional region on the same grid whose histogram defines the mapping (e.g. the body,
        so that air does not dominate); the mapping is applied everywhere.

    Returns
    -------
    Image
        float32 image with values in [0, 1] on the input's grid.
    """
    check_scalar(image)
    bins = _nbins(nbins)
    x = float_array(image, np.float64)
    roi = region(image, mask)
    sample = x if roi is None else x[roi]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise ParameterError("histogram_equalization: no finite voxel in the region")
    hist, edges = np.histogram(sample, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    cdf = np.cumsum(hist) / float(hist.sum())
    out = np.interp(x.ravel(), centers, cdf).reshape(x.shape)
    return filter_output(image, out.astype(np.float32), {"op": "filters.histogram_equalization", "nbins": bins})


@_filters.register("clahe", tags=("enhancement",))
def clahe(image: Image, *, kernel_size_mm: float | None = None, clip_limit: float = 0.01,
          nbins: int = 256) -> Image:
    """Contrast-limited adaptive histogram equalisation (CLAHE), 2-D or 3-D.

    The image is rescaled to [0, 1] (its minimum to 0, its maximum to 1), then equalised in
    contextual regions of ``kernel_size_mm`` with each local histogram clipped at
    ``clip_limit`` and the excess redistributed; mappings are interpolated between regions
    (Zuiderveld 1994; scikit-image's N-d ``equalize_adapthist``).

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    kernel_size_mm
        Size of the contextual regions in mm (``round(size / spacing)`` voxels per axis, at
        least 1); ``None``: 1/8 of the image along every axis.
    clip_limit
        Clipping limit as a fraction of the region's voxel count, in (0, 1]; higher gives more
        contrast (1 = plain adaptive equalisation).
    nbins
        Number of grey levels of the local histograms (>= 2).

    Returns
    -------
    Image
        float32 image with values in [0, 1] on the input's grid.
    """
    exposure = require("skimage.exposure", extra="filters")
    check_scalar(image)
    bins = _nbins(nbins)
    clip = positive(clip_limit, "clip_limit", "fraction of the region's voxels")
    if clip > 1:
        raise ParameterError(f"clahe: clip_limit must be in (0, 1], got {clip}")
    x = float_array(image, np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        return filter_output(image, np.zeros(x.shape, np.float32), {"op": "filters.clahe", "constant": True})
    unit = (x - lo) / (hi - lo)
    kernel = None
    if kernel_size_mm is not None:
        positive(kernel_size_mm, "kernel_size_mm", "mm")
        kernel = tuple(int(max(1, round(v))) for v in mm_to_voxels(image, kernel_size_mm, "kernel_size_mm"))
    out = exposure.equalize_adapthist(unit, kernel_size=kernel, clip_limit=clip, nbins=bins)
    step = {"op": "filters.clahe", "kernel_size_mm": kernel_size_mm, "kernel_voxels_zyx": kernel,
            "clip_limit": clip, "nbins": bins, "input_range": [lo, hi]}
    return filter_output(image, np.asarray(out, dtype=np.float32), step)


@_filters.register("unsharp_mask", tags=("enhancement",))
def unsharp_mask(image: Image, *, sigma_mm: Positive = 1.0, amount: NonNegative = 1.0) -> Image:
    r"""Unsharp masking: :math:`u + a\,(u - G_\sigma * u)`.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    sigma_mm
        Standard deviation of the Gaussian blur in mm (> 0); the size of the details enhanced.
    amount
        Gain :math:`a` of the detail layer (>= 0; 0 returns the image).

    Returns
    -------
    Image
        float32 image on the input's grid (values may leave the input's range).
    """
    from medimg.filters.smoothing import gaussian

    check_scalar(image)
    a = positive(amount, "amount", "dimensionless", allow_zero=True)
    blurred = gaussian(image, sigma_mm=sigma_mm).array
    x = float_array(image)
    out = x + np.float32(a) * (x - blurred)
    return filter_output(image, out.astype(np.float32), {"op": "filters.unsharp_mask",
                                                         "sigma_mm": float(sigma_mm), "amount": a})


def _laplacian_array(image: Image) -> np.ndarray:
    from scipy import ndimage as ndi

    x = float_array(image, np.float64)
    out = np.zeros_like(x)
    for axis, h in enumerate(spacing_zyx(image)):
        out += ndi.correlate1d(x, [1.0, -2.0, 1.0], axis=axis, mode="nearest") / h**2
    return out


def laplacian(image: Image) -> Image:
    r"""Discrete Laplacian :math:`\sum_i \partial^2 u / \partial x_i^2` in image units per mm^2.

    Second central differences ``(u[i-1] - 2 u[i] + u[i+1]) / spacing**2`` along each axis, with
    the border voxel repeated (zero flux).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    check_scalar(image)
    return filter_output(image, _laplacian_array(image).astype(np.float32), {"op": "filters.laplacian"})


@_filters.register("laplacian_sharpen", tags=("enhancement",))
def laplacian_sharpen(image: Image, *, weight_mm2: float = 0.5) -> Image:
    r"""Laplacian sharpening: :math:`u - w\,\nabla^2 u` with the Laplacian in physical units.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    weight_mm2
        :math:`w` in mm^2 (>= 0). With 1 mm voxels, ``w = 1`` is the textbook
        ``u - (4-neighbour Laplacian)`` of 2-D image processing.

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    check_scalar(image)
    w = positive(weight_mm2, "weight_mm2", "mm^2", allow_zero=True)
    out = float_array(image, np.float64) - w * _laplacian_array(image)
    return filter_output(image, out.astype(np.float32), {"op": "filters.laplacian_sharpen", "weight_mm2": w})
