r"""MR bias-field (intensity non-uniformity) correction: N4 (SimpleITK).

The image is modelled as :math:`v = u \cdot b` with a smooth multiplicative field :math:`b`.
N4 (Tustison et al. 2010) alternates between sharpening the histogram of :math:`\log v` (the
field blurs it) and fitting a B-spline to the residual log field, over several fitting levels
whose control mesh doubles at each level.

medimg's settings are in mm: the first level's B-spline mesh has elements of about
``spline_distance_mm`` (ANTs' ``-b [distance]``), and N4 runs on a copy shrunk by integer factors
so that its voxels approach ``working_spacing_mm``; the field is then evaluated at full
resolution. The default mask is the Otsu foreground: the air around the head carries no bias
information and only noise.

References
----------
Tustison N.J. et al. N4ITK: improved N3 bias correction. IEEE Trans Med Imaging
2010;29:1310-1320.
"""

from __future__ import annotations

import math

import numpy as np

from medimg.core import progress
from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import (
    check_scalar,
    filter_output,
    float_array,
    positive,
    region,
    to_sitk_float,
)

__all__ = ["n4", "n4_bias_field"]

_filters = registry("filters")


def _int_at_least(value: int, name: str, low: int) -> int:
    if int(value) != value or value < low:
        raise ParameterError(f"n4: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def n4_bias_field(
    image: Image,
    *,
    mask: Image | None = None,
    working_spacing_mm: float = 3.0,
    spline_distance_mm: float = 150.0,
    fitting_levels: int = 1,
    iterations: int = 100,
    convergence_threshold: float = 1e-6,
    spline_order: int = 3,
    histogram_bins: int = 200,
    bias_fwhm: float = 0.15,
    wiener_noise: float = 0.01,
) -> tuple[Image, Image]:
    """Estimate the multiplicative bias field with N4 and divide it out.

    Parameters
    ----------
    image
        Scalar MR image (positive intensities carry the information; voxels <= 0 are left out
        of the fit).
    mask
        Region used for the fit, on the same grid; ``None``: the Otsu foreground.
    working_spacing_mm
        N4 runs on a copy shrunk along each axis by ``round(working_spacing_mm / spacing)``
        (at least 1): the larger, the faster.
    spline_distance_mm
        Size in mm of the B-spline mesh elements at the first fitting level; each further level
        halves it. The field cannot vary faster than the final mesh.
    fitting_levels
        Number of fitting levels (>= 1).
    iterations
        Maximum iterations per level (>= 1).
    convergence_threshold
        Stop a level when the coefficient of variation of the field update falls below this.
    spline_order
        B-spline order (>= 1; 3 = cubic).
    histogram_bins
        Bins of the log-intensity histogram that is sharpened.
    bias_fwhm
        Full width at half maximum of the Gaussian assumed for the field's log histogram.
    wiener_noise
        Regularisation of the Wiener deconvolution of the histogram.

    Returns
    -------
    corrected : Image
        float32 ``image / field`` on the input's grid.
    field : Image
        float32 multiplicative field on the input's grid (defined up to a constant factor; N4
        makes its log-mean 0 over the mask).
    """
    import SimpleITK as sitk

    check_scalar(image)
    working = positive(working_spacing_mm, "working_spacing_mm", "mm")
    distance = positive(spline_distance_mm, "spline_distance_mm", "mm")
    levels = _int_at_least(fitting_levels, "fitting_levels", 1)
    its = _int_at_least(iterations, "iterations", 1)
    order = _int_at_least(spline_order, "spline_order", 1)
    bins = _int_at_least(histogram_bins, "histogram_bins", 2)
    positive(convergence_threshold, "convergence_threshold", "dimensionless", allow_zero=True)
    positive(bias_fwhm, "bias_fwhm", "log-intensity units")
    positive(wiener_noise, "wiener_noise", "dimensionless", allow_zero=True)

    values = float_array(image)
    src = to_sitk_float(image, values)
    roi = region(image, mask)
    if roi is None:
        roi = sitk.GetArrayFromImage(sitk.OtsuThreshold(src, 0, 1, 200)).astype(bool)
    roi = roi & (values > 0) & np.isfinite(values)
    if roi.sum() < 100:
        raise ParameterError(f"n4: only {int(roi.sum())} positive voxels in the mask; N4 needs a foreground of positive intensities")
    mask_img = sitk.GetImageFromArray(roi.astype(np.uint8))
    mask_img.CopyInformation(src)

    nd = image.spatial_ndim
    spacing = np.asarray(image.spacing[:nd])
    shrink = [max(1, int(round(working / s))) for s in spacing]
    small = sitk.Shrink(src, shrink) if any(f > 1 for f in shrink) else src
    small_mask = sitk.Shrink(mask_img, shrink) if any(f > 1 for f in shrink) else mask_img
    extent = np.asarray(image.size, dtype=float) * spacing
    control = [max(order + 1, int(math.ceil(e / distance)) + order) for e in extent]

    filt = sitk.N4BiasFieldCorrectionImageFilter()
    filt.SetMaximumNumberOfIterations([its] * levels)
    filt.SetNumberOfControlPoints(control)
    filt.SetSplineOrder(order)
    filt.SetConvergenceThreshold(float(convergence_threshold))
    filt.SetNumberOfHistogramBins(bins)
    filt.SetBiasFieldFullWidthAtHalfMaximum(float(bias_fwhm))
    filt.SetWienerFilterNoise(float(wiener_noise))
    steps = progress.Steps(its * levels, "n4")  # one step per N4 iteration (a level may converge early)
    if progress.current() is not None:
        filt.AddCommand(sitk.sitkIterationEvent, steps.advance)
    filt.Execute(small, small_mask)
    steps.finish()
    log_field = sitk.GetArrayFromImage(filt.GetLogBiasFieldAsImage(src)).astype(np.float64)
    field = np.exp(log_field)
    corrected = values / field
    step = {
        "op": "filters.n4", "working_spacing_mm": working, "shrink_xyz": shrink,
        "spline_distance_mm": distance, "control_points_xyz": control, "fitting_levels": levels,
        "iterations": its, "convergence_threshold": float(convergence_threshold),
        "mask": "given" if mask is not None else "otsu",
    }
    return (filter_output(image, corrected.astype(np.float32), step),
            filter_output(image, field.astype(np.float32), {**step, "output": "bias_field"}))


@_filters.register("n4", tags=("intensity",))
def n4(
    image: Image,
    *,
    mask: Image | None = None,
    working_spacing_mm: float = 3.0,
    spline_distance_mm: float = 150.0,
    fitting_levels: int = 1,
    iterations: int = 100,
    convergence_threshold: float = 1e-6,
) -> Image:
    """N4 bias-field correction: the image divided by its estimated smooth multiplicative field.

    See :func:`n4_bias_field` for the parameters (and to get the field itself).

    Parameters
    ----------
    image
        Scalar MR image.
    mask
        Fit region on the same grid; ``None``: the Otsu foreground.
    working_spacing_mm
        Target voxel size (mm) of the shrunk copy N4 runs on.
    spline_distance_mm
        B-spline mesh element size at the first level, in mm.
    fitting_levels
        Number of fitting levels.
    iterations
        Maximum iterations per level.
    convergence_threshold
        Stopping threshold per level.

    Returns
    -------
    Image
        float32 corrected image on the input's grid.
    """
    corrected, _field = n4_bias_field(
        image, mask=mask, working_spacing_mm=working_spacing_mm, spline_distance_mm=spline_distance_mm,
        fitting_levels=fitting_levels, iterations=iterations, convergence_threshold=convergence_threshold,
    )
    return corrected
