"""Intensity thresholds: a fixed window, CT tissue ranges in HU, and automatic thresholds
(Otsu, multi-Otsu, Li, triangle) computed from the histogram of the region of interest.

The automatic thresholds are scikit-image's (``threshold_otsu``, ``threshold_multiotsu``,
``threshold_li``, ``threshold_triangle``) applied to the finite voxels inside ``mask``, so the
threshold values are the same as scikit-image's on those voxels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.segmentation.morphology import _check_scalar, _label_output, _region

__all__ = [
    "threshold",
    "otsu",
    "otsu_threshold",
    "auto_threshold",
    "threshold_value",
    "multi_otsu",
    "hu_range",
    "HU_RANGES",
]

#: CT tissue windows in HU, inclusive (``None``: unbounded). Fat and muscle/soft tissue follow the
#: usual body-composition ranges (-190..-30 and -29..150 HU); lung parenchyma -950..-500 HU;
#: air below -950 HU; bone from 300 HU (cancellous and cortical bone, and dense contrast).
HU_RANGES: dict[str, tuple[float | None, float | None]] = {
    "air": (None, -951.0),
    "lung": (-950.0, -500.0),
    "fat": (-190.0, -30.0),
    "soft_tissue": (-29.0, 150.0),
    "bone": (300.0, None),
}

_segmentation = registry("segmentation")


def in_range(image: Image, lower: float | None, upper: float | None, mask: Image | None,
             *, op: str) -> np.ndarray:
    """Boolean array of voxels with ``lower <= value <= upper`` (either bound may be None)
    inside ``mask``; the bounds are checked and ``op`` names the caller in errors."""
    _check_scalar(image, "image")
    if lower is None and upper is None:
        raise ParameterError(f"{op} needs `lower`, `upper` or both (image units, inclusive)")
    for name, value in (("lower", lower), ("upper", upper)):
        if value is not None and np.isnan(value):
            raise ParameterError(f"{op}: {name} must be a number (image units), got NaN")
    if lower is not None and upper is not None and lower > upper:
        raise ParameterError(f"{op}: lower ({lower}) must not exceed upper ({upper})")
    roi = _region(image, mask)
    values = image.array
    keep = np.ones(values.shape, dtype=bool)
    if lower is not None:
        keep &= values >= lower
    if upper is not None:
        keep &= values <= upper
    if roi is not None:
        keep &= roi
    return keep


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
    keep = in_range(image, lower, upper, mask, op="threshold")
    step = {"op": "segmentation.threshold", "lower": lower, "upper": upper}
    return _label_output(image, keep.astype(np.uint8), step)


def _region_values(image: Image, mask: Image | None, op: str) -> tuple[np.ndarray, str]:
    """The finite voxel values inside ``mask`` (all voxels without one), checked non-degenerate."""
    _check_scalar(image, "image")
    roi = _region(image, mask)
    values = image.array if roi is None else image.array[roi]
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    where = "inside mask" if roi is not None else "in the image"
    if values.size == 0:
        raise ParameterError(f"{op}: no finite voxel {where}; check the mask")
    lo, hi = values.min(), values.max()
    if lo == hi:
        msg = f"{op}: every voxel {where} has the value {lo}; there are no two classes to separate"
        raise ParameterError(msg)
    return values, where


def threshold_value(
    image: Image,
    *,
    method: Literal["otsu", "li", "triangle"] = "otsu",
    mask: Image | None = None,
    nbins: int = 256,
) -> float:
    """The automatic threshold (image units) of the finite voxels inside ``mask``.

    Parameters
    ----------
    image
        Scalar intensity image.
    method
        ``"otsu"`` (maximum between-class variance), ``"li"`` (minimum cross-entropy, iterative)
        or ``"triangle"`` (the histogram point farthest from the line between the peak and the
        far end; suited to one dominant class with a small bright or dark tail).
    mask
        Optional region of interest; only voxels where ``mask != 0`` enter the histogram.
    nbins
        Histogram bins for Otsu and triangle (Li uses the values themselves).

    Returns
    -------
    float
        The threshold; voxels strictly above it are the bright class.
    """
    filters = require("skimage.filters", extra="ml")
    if method not in ("otsu", "li", "triangle"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("threshold method", str(method), ("otsu", "li", "triangle"))
    if int(nbins) != nbins or nbins < 2:
        raise ParameterError(f"{method}: nbins must be an integer >= 2, got {nbins!r}")
    values, _ = _region_values(image, mask, method)
    if method == "otsu":
        return float(filters.threshold_otsu(values, nbins=int(nbins)))
    if method == "li":
        return float(filters.threshold_li(values.astype(np.float64)))
    return float(filters.threshold_triangle(values, nbins=int(nbins)))


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
    return threshold_value(image, method="otsu", mask=mask, nbins=nbins)


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


@_segmentation.register("li", fixed={"method": "li"})
@_segmentation.register("triangle", fixed={"method": "triangle"})
def auto_threshold(
    image: Image,
    *,
    method: Literal["otsu", "li", "triangle"] = "otsu",
    mask: Image | None = None,
    nbins: int = 256,
) -> Image:
    """Label the bright class of an automatic threshold (Li's or the triangle method; Otsu too).

    Parameters
    ----------
    image
        Scalar intensity image.
    method
        ``"otsu"``, ``"li"`` or ``"triangle"`` (see :func:`threshold_value`); the registry
        entries ``li`` and ``triangle`` fix it.
    mask
        Optional region of interest: the histogram uses its voxels and the result is 0 outside it.
    nbins
        Histogram bins (Otsu, triangle).

    Returns
    -------
    Image
        ``uint8`` label map: 1 where the intensity is above the threshold; the threshold (image
        units) is in ``meta["history"][-1]["threshold"]``.
    """
    t = threshold_value(image, method=method, mask=mask, nbins=nbins)
    keep = image.array > t
    roi = _region(image, mask)
    if roi is not None:
        keep &= roi
    step = {"op": f"segmentation.{method}", "threshold": t, "nbins": int(nbins)}
    return _label_output(image, keep.astype(np.uint8), step)


@_segmentation.register("multi_otsu")
def multi_otsu(image: Image, *, classes: int = 3, mask: Image | None = None, nbins: int = 256) -> Image:
    """Split the intensities into ``classes`` classes with the multi-level Otsu thresholds.

    Parameters
    ----------
    image
        Scalar intensity image.
    classes
        Number of classes (2..8); ``classes - 1`` thresholds maximise the between-class variance
        of the histogram of the voxels inside ``mask`` (scikit-image's ``threshold_multiotsu``).
    mask
        Optional region of interest; the result is 0 outside it.
    nbins
        Histogram bins.

    Returns
    -------
    Image
        ``uint8`` label map: class ``k`` (1 = darkest ... ``classes`` = brightest) for voxels whose
        value lies in the k-th interval (a voxel equal to a threshold goes to the darker class), 0
        outside ``mask`` and for NaN voxels. The thresholds are in
        ``meta["history"][-1]["thresholds"]``.
    """
    filters = require("skimage.filters", extra="ml")
    if int(classes) != classes or not 2 <= classes <= 8:
        raise ParameterError(f"multi_otsu: classes must be an integer in 2..8, got {classes!r}")
    if int(nbins) != nbins or nbins < classes:
        raise ParameterError(f"multi_otsu: nbins must be an integer >= classes, got {nbins!r}")
    values, where = _region_values(image, mask, "multi_otsu")
    if np.unique(values).size < classes:
        msg = f"multi_otsu: fewer than {classes} distinct values {where}; lower `classes`"
        raise ParameterError(msg)
    thresholds = filters.threshold_multiotsu(values, classes=int(classes), nbins=int(nbins))
    array = image.array
    out = (np.digitize(array, thresholds, right=True) + 1).astype(np.uint8)
    if array.dtype.kind == "f":
        out[~np.isfinite(array)] = 0
    roi = _region(image, mask)
    if roi is not None:
        out[~roi] = 0
    step = {"op": "segmentation.multi_otsu", "classes": int(classes),
            "thresholds": [float(t) for t in thresholds]}
    return _label_output(image, out, step)


@_segmentation.register("hu_range")
def hu_range(
    image: Image,
    *,
    tissue: Literal["air", "lung", "fat", "soft_tissue", "bone"],
    mask: Image | None = None,
) -> Image:
    """Label the voxels of a CT image inside a tissue's HU window (:data:`HU_RANGES`, inclusive).

    Parameters
    ----------
    image
        CT image in Hounsfield units (``meta["modality"]``, when present, must be ``"CT"``).
    tissue
        ``"air"`` (<= -951), ``"lung"`` (-950..-500), ``"fat"`` (-190..-30), ``"soft_tissue"``
        (-29..150) or ``"bone"`` (>= 300). For another window use :func:`threshold`.
    mask
        Optional region of interest; the result is 0 outside it.

    Returns
    -------
    Image
        ``uint8`` label map, 1 inside the window.
    """
    if tissue not in HU_RANGES:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("tissue", str(tissue), HU_RANGES)
    modality = image.meta.get("modality") or image.meta.get("Modality")
    if modality and str(modality).upper() != "CT":
        msg = f"hu_range: HU windows apply to CT images; this image's modality is {modality!r}"
        raise ParameterError(msg)
    lower, upper = HU_RANGES[tissue]
    out = threshold(image, lower=lower, upper=upper, mask=mask)
    out.meta["history"][-1].update({"op": "segmentation.hu_range", "tissue": tissue})
    return out
