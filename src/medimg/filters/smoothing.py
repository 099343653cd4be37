"""Spatial noise reduction: Gaussian, median and bilateral filters (SimpleITK).

Every filter takes sizes in mm, uses the image spacing, returns a float32 image on the input's
grid and leaves the input untouched.
"""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.core.types import NonNegative, Positive
from medimg.errors import ParameterError
from medimg.filters._common import (
    check_scalar,
    filter_output,
    min_spacing,
    mm_to_voxels,
    positive,
    radius_voxels,
    search_space,
    to_sitk_float,
    xyz,
)

__all__ = ["gaussian", "median", "bilateral"]

_filters = registry("filters")


def _sitk_result(image: Image, result: object, step: dict) -> Image:
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(result)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    return filter_output(image, array, step)


@_filters.register("gaussian", tags=("denoiser",))
@search_space(lambda image, sigma: [{"sigma_mm": f * min_spacing(image)} for f in (0.5, 0.75, 1.0, 1.5)])
def gaussian(image: Image, *, sigma_mm: Positive = 1.0) -> Image:
    r"""Gaussian smoothing with standard deviation ``sigma_mm`` in mm along every axis.

    SimpleITK's recursive Gaussian (Deriche) filter, which works in physical units; when an
    axis has fewer than 4 voxels the discrete Gaussian filter is used instead.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    sigma_mm
        Standard deviation of the Gaussian kernel in mm (> 0).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    import SimpleITK as sitk

    check_scalar(image)
    sigma = positive(sigma_mm, "sigma_mm", "mm")
    src = to_sitk_float(image)
    if min(image.spatial_shape) >= 4:
        out = sitk.SmoothingRecursiveGaussian(src, [sigma] * image.spatial_ndim)
    else:
        out = sitk.DiscreteGaussian(src, variance=[sigma**2] * image.spatial_ndim,
                                    maximumKernelWidth=64, maximumError=0.001, useImageSpacing=True)
    return _sitk_result(image, out, {"op": "filters.gaussian", "sigma_mm": sigma})


@_filters.register("median", tags=("denoiser",))
@search_space(lambda image, sigma: [{"radius_mm": f * min_spacing(image)} for f in (1.0, 2.0)])
def median(image: Image, *, radius_mm: NonNegative = 1.0) -> Image:
    """Median filter over a box of half-width ``radius_mm`` (rounded to whole voxels per axis).

    Removes impulse (salt-and-pepper) noise while keeping edges; in a region that is flat over
    the whole box, any minority of outliers is removed exactly. SimpleITK's median filter.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    radius_mm
        Half-width of the box in mm; along each axis ``round(radius_mm / spacing)`` voxels
        (0 along an axis whose spacing exceeds twice the radius). At least one axis must get
        a radius of one voxel or more.

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    import SimpleITK as sitk

    check_scalar(image)
    positive(radius_mm, "radius_mm", "mm")
    radius = radius_voxels(image, radius_mm, "radius_mm")
    out = sitk.Median(to_sitk_float(image), xyz(radius.astype(int)))
    step = {"op": "filters.median", "radius_mm": float(radius_mm), "radius_voxels_xyz": xyz(radius)}
    return _sitk_result(image, out, step)


@_filters.register("bilateral", tags=("denoiser",))
@search_space(lambda image, sigma: [{"domain_sigma_mm": d * min_spacing(image), "range_sigma": r * sigma}
                                   for d in (1.0, 2.0) for r in (1.0, 2.0, 3.0)])
def bilateral(image: Image, *, domain_sigma_mm: Positive = 1.5, range_sigma: Positive | None = None) -> Image:
    r"""Edge-preserving bilateral filter: Gaussian in space times Gaussian in intensity.

    Each voxel becomes the average of its neighbours weighted by
    :math:`\exp(-\|p-q\|^2 / 2\sigma_d^2) \exp(-(I_p - I_q)^2 / 2\sigma_r^2)`, with distances
    in mm (SimpleITK's bilateral filter uses the image spacing).

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    domain_sigma_mm
        Spatial standard deviation in mm (> 0).
    range_sigma
        Intensity standard deviation in image units (> 0). ``None``: twice the noise standard
        deviation estimated by :func:`medimg.quality.estimate_noise_sigma` (recorded in
        ``meta["history"]``).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    import SimpleITK as sitk

    check_scalar(image)
    domain = positive(domain_sigma_mm, "domain_sigma_mm", "mm")
    if range_sigma is None:
        from medimg.quality.noise import estimate_noise_sigma

        range_sigma = 2.0 * estimate_noise_sigma(image)
        if range_sigma <= 0:
            msg = "bilateral: the estimated noise is 0 (a noise-free image); give range_sigma (image units)"
            raise ParameterError(msg)
    rng_sigma = positive(range_sigma, "range_sigma", "image units")
    if np.all(mm_to_voxels(image, domain, "domain_sigma_mm") < 0.25):
        raise ParameterError(f"bilateral: domain_sigma_mm={domain} mm is below a quarter voxel; nothing would change")
    out = sitk.Bilateral(to_sitk_float(image), domainSigma=domain, rangeSigma=rng_sigma)
    step = {"op": "filters.bilateral", "domain_sigma_mm": domain, "range_sigma": rng_sigma}
    return _sitk_result(image, out, step)
