r"""First-order features: intensity statistics of the region of interest, IBSI definitions.

Let :math:`X = \{x_1, \dots, x_{N_v}\}` be the intensities (image units) of the :math:`N_v`
voxels with ``mask == label``, :math:`\mu` their mean, :math:`\sigma^2` their variance and
:math:`P_q` their :math:`q`-th percentile (linear interpolation between order statistics,
numpy's default). Keys, IBSI codes and definitions (IBSI family ``UHIW``, intensity-based
statistics, unless noted):

* ``mean`` (Q4LE): :math:`\mu = \frac{1}{N_v}\sum_k x_k`
* ``variance`` (ECT3): :math:`\sigma^2 = \frac{1}{N_v}\sum_k (x_k-\mu)^2` (biased)
* ``skewness`` (KE2A): :math:`\frac{1}{N_v}\sum_k (x_k-\mu)^3 / \sigma^3`; 0 when
  :math:`\sigma = 0`
* ``kurtosis`` (IPH6): excess kurtosis :math:`\frac{1}{N_v}\sum_k (x_k-\mu)^4 / \sigma^4 - 3`;
  0 when :math:`\sigma = 0`
* ``median`` (Y12H): :math:`P_{50}`
* ``minimum`` (1GSF), ``maximum`` (84IY): :math:`\min X`, :math:`\max X`
* ``percentile_10`` (QG58), ``percentile_90`` (8DWT): :math:`P_{10}`, :math:`P_{90}`
* ``interquartile_range`` (SALO): :math:`P_{75} - P_{25}`
* ``range`` (2OJQ): :math:`\max X - \min X`
* ``mean_absolute_deviation`` (4FUA): :math:`\frac{1}{N_v}\sum_k |x_k-\mu|`
* ``robust_mean_absolute_deviation`` (1128): the mean of :math:`|x - \mu_{10-90}|` over the
  voxels with :math:`P_{10} \le x \le P_{90}`, :math:`\mu_{10-90}` being their mean; NaN when no
  voxel lies there (regions of two or three voxels)
* ``median_absolute_deviation`` (N72L): :math:`\frac{1}{N_v}\sum_k |x_k-P_{50}|` (the IBSI's
  definition: a *mean* of the deviations from the median)
* ``coefficient_of_variation`` (7TET): :math:`\sigma / \mu`; NaN when :math:`\mu = 0`
* ``quartile_coefficient_of_dispersion`` (9S40): :math:`(P_{75}-P_{25}) / (P_{75}+P_{25})`;
  NaN when the denominator is 0
* ``energy`` (N8CA): :math:`\sum_k x_k^2`
* ``root_mean_square`` (5ZWQ): :math:`\sqrt{\frac{1}{N_v}\sum_k x_k^2}`
* ``entropy`` (TLU2, intensity histogram family ``ZVCW``): :math:`-\sum_i p_i \log_2 p_i`
* ``volume_mm3`` (YEKZ, morphology family ``HCUG``, "volume (voxel counting)"): :math:`N_v`
  times the voxel volume, in mm^3

For ``entropy`` the intensities are discretised with a fixed bin size :math:`w` (``bin_width``,
image units) starting at the region's minimum, as the IBSI's "fixed bin size" method with the
lower bound set to :math:`\min X`: :math:`x_d = \lfloor (x - \min X)/w \rfloor + 1`, and
:math:`p_i` is the fraction of voxels in bin :math:`i`.

The values match the IBSI digital phantom reference values (``tests/data/ibsi1-digital-phantom``).
"""

from __future__ import annotations

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError
from medimg.features._base import FeatureSpec, feature_family
from medimg.features.intensity import statistics
from medimg.features.roi import Roi, _check_inputs, _no_label

__all__ = ["FIRSTORDER_SPECS", "firstorder_features", "firstorder", "roi_values", "discretise_fixed_bin_size"]

_STAT = "UHIW"  # IBSI: intensity-based statistical features
_IH = "ZVCW"  # IBSI: intensity histogram features
_MORPH = "HCUG"  # IBSI: morphological features


def _spec(
    name: str, code: str, ibsi_name: str, family_code: str = _STAT, unit: str = ""
) -> FeatureSpec:
    return FeatureSpec(name, code, "firstorder", ibsi_name, family_code, unit)


#: The table of the ``firstorder`` family, in output order.
FIRSTORDER_SPECS: tuple[FeatureSpec, ...] = (
    _spec("mean", "Q4LE", "Mean", unit="image"),
    _spec("variance", "ECT3", "Variance", unit="image^2"),
    _spec("skewness", "KE2A", "Skewness"),
    _spec("kurtosis", "IPH6", "(Excess) kurtosis"),
    _spec("median", "Y12H", "Median", unit="image"),
    _spec("minimum", "1GSF", "Minimum", unit="image"),
    _spec("percentile_10", "QG58", "10th percentile", unit="image"),
    _spec("percentile_90", "8DWT", "90th percentile", unit="image"),
    _spec("maximum", "84IY", "Maximum", unit="image"),
    _spec("interquartile_range", "SALO", "Interquartile range", unit="image"),
    _spec("range", "2OJQ", "Range", unit="image"),
    _spec("mean_absolute_deviation", "4FUA", "Mean absolute deviation", unit="image"),
    _spec("robust_mean_absolute_deviation", "1128", "Robust mean absolute deviation", unit="image"),
    _spec("median_absolute_deviation", "N72L", "Median absolute deviation", unit="image"),
    _spec("coefficient_of_variation", "7TET", "Coefficient of variation"),
    _spec("quartile_coefficient_of_dispersion", "9S40", "Quartile coefficient of dispersion"),
    _spec("energy", "N8CA", "Energy", unit="image^2"),
    _spec("root_mean_square", "5ZWQ", "Root mean square", unit="image"),
    _spec("entropy", "TLU2", "Entropy", family_code=_IH, unit="bits"),
    _spec("volume_mm3", "YEKZ", "Volume (voxel counting)", family_code=_MORPH, unit="mm^3"),
)


def roi_values(image: Image, mask: Image, *, label: int = 1) -> np.ndarray:
    """The intensities (float64) of the voxels of ``image`` where ``mask == label``.

    Parameters
    ----------
    image
        Scalar intensity image.
    mask
        Label map on the same grid as ``image``.
    label
        Mask value of the region of interest.

    Returns
    -------
    numpy.ndarray
        1-D float64 array in (z, y, x) scan order.

    Raises
    ------
    GeometryMismatchError
        ``mask`` is not on ``image``'s grid.
    ParameterError
        Either image is not scalar, the region is empty (the message lists the labels present),
        or it holds NaN or infinite intensities.
    """
    _check_inputs(image, mask)
    inside = mask.array == label
    if not inside.any():
        raise _no_label(mask.array, label)
    values = image.array[inside].astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        msg = f"image has {bad} NaN or infinite voxel(s) inside mask label {label}"
        raise ParameterError(msg)
    return values


def discretise_fixed_bin_size(
    values: np.ndarray, *, bin_width: float, lower_bound: float | None = None
) -> np.ndarray:
    r"""IBSI fixed-bin-size discretisation: :math:`\lfloor (x - x_{lb}) / w \rfloor + 1`.

    Parameters
    ----------
    values
        Intensities, image units.
    bin_width
        Bin width :math:`w` in image units, > 0.
    lower_bound
        :math:`x_{lb}`, image units; the minimum of ``values`` when ``None``.

    Returns
    -------
    numpy.ndarray
        int64 bin numbers, 1 for the lowest bin.
    """
    if not np.isfinite(bin_width) or bin_width <= 0:
        raise ParameterError(f"bin_width must be > 0 (image units), got {bin_width!r}")
    values = np.asarray(values, dtype=np.float64)
    lb = float(values.min()) if lower_bound is None else float(lower_bound)
    return np.floor((values - lb) / bin_width).astype(np.int64) + 1


def _entropy_bits(bins: np.ndarray) -> float:
    _, counts = np.unique(bins, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def _firstorder(x: np.ndarray, voxel_volume: float, bin_width: float) -> dict[str, float]:
    values = statistics(x)
    values["entropy"] = _entropy_bits(discretise_fixed_bin_size(x, bin_width=bin_width))
    values["volume_mm3"] = x.size * voxel_volume
    return {spec.name: values[spec.name] for spec in FIRSTORDER_SPECS}


@feature_family("firstorder", FIRSTORDER_SPECS)
def firstorder(roi: Roi, *, bin_width: float = 25.0) -> dict[str, float]:
    """Compact first-order set: IBSI statistics, histogram entropy and voxel-counting volume.

    Parameters
    ----------
    roi
        The processed region (its intensity mask).
    bin_width
        Bin width for ``entropy``, image units (IBSI fixed bin size from the region's minimum).
    """
    if not np.isfinite(bin_width) or bin_width <= 0:
        raise ParameterError(f"bin_width must be > 0 (image units), got {bin_width!r}")
    return _firstorder(roi.values, roi.voxel_volume, bin_width)


def firstorder_features(
    image: Image, mask: Image, *, label: int = 1, bin_width: float = 25.0
) -> dict[str, float]:
    """IBSI intensity statistics, intensity-histogram entropy and voxel-counting volume.

    Parameters
    ----------
    image
        Scalar intensity image (image units, e.g. HU).
    mask
        Label map on the same grid as ``image``.
    label
        Mask value of the region of interest.
    bin_width
        Bin width for ``entropy``, in image units (IBSI fixed bin size; bins start at the
        region's minimum). 25 HU is a common CT choice.

    Returns
    -------
    dict[str, float]
        The features of :data:`FIRSTORDER_SPECS`, in that order (see the module docstring for
        the definitions and units).

    Raises
    ------
    GeometryMismatchError
        ``image`` and ``mask`` are not on the same grid.
    ParameterError
        The region is empty, holds non-finite values, or ``bin_width`` is not > 0.
    """
    if not np.isfinite(bin_width) or bin_width <= 0:
        raise ParameterError(f"bin_width must be > 0 (image units), got {bin_width!r}")
    x = roi_values(image, mask, label=label)
    return _firstorder(x, mask.voxel_volume_mm3, bin_width)
