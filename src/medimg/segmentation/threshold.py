"""Intensity thresholds: fixed window (``threshold``) and Otsu's automatic threshold (``otsu``)."""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.segmentation.morphology import _check_scalar, _label_output, _region

__all__ = ["threshold", "otsu", "otsu_threshold"]

_segmentation = registry("segmentation")


@_segmentation.register("threshold")
def threshold(
    image: Image,
    *,
    lower: float | None = None,
    upper: float | None = None,
    mask: Image | None = None,
) -> Image:
    """Label the voxels whose intensity lies in ``[lower, upper]`` (both inclusive).

    Parameters
    ----------
    image
        Scalar intensity image.
    lower
        Smallest intensity kept, in image units (HU for CT); ``None`` for no lower bound.
    upper
        Largest intensity kept, in image units; ``None`` for no upper bound.
    mask
        Optional region of interest (label map on the same grid); the result is 0 outside it.

    Returns
    -------
    Image
        ``uint8`` label map on ``image``'s grid: 1 where ``lower <= value <= upper``, else 0
        (NaN voxels are 0).

    Raises
    ------
    ParameterError
        Both bounds are ``None``, a bound is NaN, or ``lower > upper``.
    GeometryMismatchError
        ``mask`` is not on ``image``'s grid.

    Examples
    --------
    >>> import numpy as np
    >>> from medimg import Image
    >>> ct = Image(np.array([[[-1000, -200, 40, 400]]], dtype=np.int16))
    >>> threshold(ct, lower=-200, upper=400).array.tolist()
    [[[0, 1, 1, 1]]]
    """
    _check_scalar(image, "image")
    if lower is None and upper is None:
        raise ParameterError("threshold needs `lower`, `upper` or both (image units, inclusive)")
    for name, value in (("lower", lower), ("upper", upper)):
        if value is not None and np.isnan(value):
            raise ParameterError(f"threshold: {name} must be a number (image units), got NaN")
    if lower is not None and upper is not None and lower > upper:
        msg = f"threshold: lower ({lower}) must not exceed upper ({upper})"
        raise ParameterError(msg)
    roi = _region(image, mask)
    values = image.array
    keep = np.ones(values.shape, dtype=bool)
    if lower is not None:
        keep &= values >= lower
    if upper is not None:
        keep &= values <= upper
    if roi is not None:
        keep &= roi
    step = {"op": "segmentation.threshold", "lower": lower, "upper": upper}
    return _label_output(image, keep.astype(np.uint8), step)


def otsu_threshold(image: Image, *, mask: Image | None = None, nbins: int = 256) -> float:
    """Otsu's threshold of the finite intensities of ``image`` (inside ``mask`` when given).

    Parameters
    ----------
    image
        Scalar intensity image.
    mask
        Optional region of interest; only voxels where ``mask != 0`` enter the histogram.
    nbins
        Number of histogram bins between the region's minimum and maximum (integer images use
        one bin per value when their range is smaller, as in scikit-image).

    Returns
    -------
    float
        The threshold in image units; voxels strictly above it are the bright class.

    Raises
    ------
    ParameterError
        The region holds no finite voxel, or a single intensity value (nothing to separate).
    """
    threshold_otsu = require("skimage.filters", extra="ml").threshold_otsu

    _check_scalar(image, "image")
    if int(nbins) != nbins or nbins < 2:
        raise ParameterError(f"otsu: nbins must be an integer >= 2, got {nbins!r}")
    roi = _region(image, mask)
    values = image.array if roi is None else image.array[roi]
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    where = "inside mask" if roi is not None else "in the image"
    if values.size == 0:
        raise ParameterError(f"otsu: no finite voxel {where}; check the mask")
    lo, hi = values.min(), values.max()
    if lo == hi:
        msg = f"otsu: every voxel {where} has the value {lo}; there are no two classes to separate"
        raise ParameterError(msg)
    return float(threshold_otsu(values, nbins=int(nbins)))


@_segmentation.register("otsu")
def otsu(image: Image, *, mask: Image | None = None, nbins: int = 256) -> Image:
    """Label the bright class of Otsu's two-class split of the intensity histogram.

    The threshold maximises the between-class variance of the histogram of the voxels inside
    ``mask`` (all voxels when ``mask`` is ``None``); scikit-image's ``threshold_otsu`` computes it.

    Parameters
    ----------
    image
        Scalar intensity image.
    mask
        Optional region of interest (label map on the same grid): the histogram is built from the
        voxels inside it and the result is 0 outside it.
    nbins
        Histogram bins (see :func:`otsu_threshold`).

    Returns
    -------
    Image
        ``uint8`` label map on ``image``'s grid: 1 where the intensity is above the threshold.
        The threshold (image units) is recorded in ``meta["history"][-1]["threshold"]``.

    Raises
    ------
    ParameterError
        The region is empty or holds a single intensity value.
    GeometryMismatchError
        ``mask`` is not on ``image``'s grid.
    """
    t = otsu_threshold(image, mask=mask, nbins=nbins)
    keep = image.array > t
    roi = _region(image, mask)
    if roi is not None:
        keep &= roi
    step = {"op": "segmentation.otsu", "threshold": t, "nbins": int(nbins)}
    return _label_output(image, keep.astype(np.uint8), step)
