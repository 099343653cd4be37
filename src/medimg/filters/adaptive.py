"""Adaptive filters: the local (Lee / Lim) Wiener filter and the adaptive median filter."""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.filters._common import (
    check_scalar,
    filter_output,
    float_array,
    min_spacing,
    positive,
    radius_voxels,
    search_space,
)

__all__ = ["wiener", "adaptive_median"]

_filters = registry("filters")


@_filters.register("wiener", tags=("denoiser",))
@search_space(lambda image, sigma: [{"radius_mm": f * min_spacing(image)} for f in (1.0, 2.0, 3.0)])
def wiener(image: Image, *, radius_mm: float = 1.0, noise_sigma: float | None = None) -> Image:
    r"""Local adaptive Wiener filter (Lee 1980; Lim 1990, eq. 9.44).

    With the local mean :math:`\mu` and variance :math:`\sigma^2` over a box around each voxel
    and the noise variance :math:`\nu^2`:

    .. math:: \hat u = \mu + \frac{\max(\sigma^2 - \nu^2, 0)}{\sigma^2}\,(u - \mu)

    (:math:`\hat u = \mu` where :math:`\sigma^2 \le \nu^2`): flat regions are averaged, edges and
    details, where the local variance exceeds the noise, are kept. This is
    ``scipy.signal.wiener`` with mirrored instead of zero borders and the window in mm.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    radius_mm
        Half-width of the box in mm (``round(radius / spacing)`` voxels per axis).
    noise_sigma
        Noise standard deviation :math:`\nu` in image units; ``None``: estimated with
        :func:`medimg.quality.estimate_noise_sigma` (wavelet MAD; scipy uses the mean local
        variance instead, which edges inflate).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    from scipy import ndimage as ndi

    check_scalar(image)
    positive(radius_mm, "radius_mm", "mm")
    radius = radius_voxels(image, radius_mm, "radius_mm")
    if noise_sigma is None:
        from medimg.quality.noise import estimate_noise_sigma

        noise_sigma = estimate_noise_sigma(image)
    nu2 = positive(noise_sigma, "noise_sigma", "image units", allow_zero=True) ** 2
    x = float_array(image, np.float64)
    size = tuple(int(2 * r + 1) for r in radius)
    mean = ndi.uniform_filter(x, size=size, mode="reflect")
    var = ndi.uniform_filter(x * x, size=size, mode="reflect") - mean**2
    np.maximum(var, 0, out=var)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(var > nu2, (var - nu2) / var, 0.0)
    out = mean + gain * (x - mean)
    step = {"op": "filters.wiener", "radius_mm": float(radius_mm), "radius_voxels_zyx": radius.tolist(),
            "noise_sigma": float(np.sqrt(nu2))}
    return filter_output(image, out.astype(np.float32), step)


@_filters.register("adaptive_median", tags=("denoiser",))
@search_space(lambda image, sigma: [{"max_radius_mm": f * min_spacing(image)} for f in (2.0, 3.0)])
def adaptive_median(image: Image, *, max_radius_mm: float = 3.0) -> Image:
    """Adaptive median filter (Hwang and Haddad 1995; Gonzalez and Woods, sec. 5.3).

    For each voxel the window grows from one voxel of half-width until its median is not an
    extreme of the window (``min < median < max``) or the largest window is reached. Then the
    voxel keeps its value if it is not itself an extreme of the window, and takes the median
    otherwise. Impulse noise much denser than a plain median can handle is removed, and voxels
    that are not impulses are left unchanged (less blurring than a plain median).

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    max_radius_mm
        Largest half-width in mm; per axis the window grows by one voxel per step up to
        ``round(max_radius_mm / spacing)`` voxels.

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    from scipy import ndimage as ndi

    check_scalar(image)
    positive(max_radius_mm, "max_radius_mm", "mm")
    rmax = radius_voxels(image, max_radius_mm, "max_radius_mm")
    x = float_array(image)
    out = x.copy()
    todo = np.ones(x.shape, dtype=bool)
    steps = int(rmax.max())
    for k in range(1, steps + 1):
        size = tuple(int(2 * min(k, r) + 1) for r in rmax)
        zmin = ndi.minimum_filter(x, size=size, mode="nearest")
        zmax = ndi.maximum_filter(x, size=size, mode="nearest")
        zmed = ndi.median_filter(x, size=size, mode="nearest")
        level_a = todo & (zmin < zmed) & (zmed < zmax)
        if k == steps:
            level_a = todo.copy()  # largest window: decide every remaining voxel
            last = todo & ~((zmin < zmed) & (zmed < zmax))
            out[last] = zmed[last]
            level_a &= ~last
        keep = (zmin < x) & (x < zmax)
        out[level_a & ~keep] = zmed[level_a & ~keep]
        todo &= ~level_a
        if k < steps and not todo.any():
            break
    step = {"op": "filters.adaptive_median", "max_radius_mm": float(max_radius_mm),
            "max_radius_voxels_zyx": rmax.tolist()}
    return filter_output(image, out, step)
