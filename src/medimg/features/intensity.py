r"""Intensity families of IBSI chapter 1: statistics, histogram, intensity-volume histogram and
local intensity.

* ``stat`` (IBSI ``UHIW``, intensity-based statistics): the 18 statistics of the intensities
  :math:`X` of the intensity mask (image units), see :mod:`medimg.features.firstorder` for the
  formulas.
* ``ih`` (``ZVCW``, intensity histogram): the same statistics of the *discretised* grey levels,
  plus mode, entropy :math:`-\sum_i p_i\log_2 p_i`, uniformity :math:`\sum_i p_i^2` and the
  histogram gradient :math:`H'(i) = (H(i+1) - H(i-1))/2` (one-sided at the first and last bin,
  over every bin :math:`1..N_g`, empty ones included) with its extremes and where they occur.
* ``ivh`` (``P88C``, intensity-volume histogram): with :math:`\nu(i)` the fraction of the
  region's volume with intensity :math:`\ge i` and :math:`\gamma(i) = (i - \min G)/(\max G -
  \min G)` the intensity fraction over the range :math:`G`, :math:`V_x = \nu` at the smallest
  grid intensity with :math:`\gamma \ge x`, and :math:`I_x` = the smallest grid intensity with
  :math:`\nu \le x`.
* ``li`` (``9ST6``, local intensity): the mean intensity of the image (not only the region)
  inside a 1 cm^3 sphere (radius 6.2 mm, voxels whose centres lie inside) centred on a voxel;
  the *global* peak is its maximum over the region, the *local* peak its maximum over the
  region's voxels of highest intensity.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medimg.errors import ParameterError
from medimg.features._base import FeatureSpec, feature_family
from medimg.features.processing import SPHERE_RADIUS_MM
from medimg.features.roi import Roi, sphere_runs

__all__ = ["statistics", "STAT_SPECS", "IH_SPECS", "IVH_SPECS", "LI_SPECS",
           "stat_features", "ih_features", "ivh_features", "li_features"]


def statistics(x: np.ndarray) -> dict[str, float]:
    """The 18 IBSI intensity statistics of the values ``x`` (float64, non-empty)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    mean = float(x.mean())
    dev = x - mean
    dev2 = dev * dev
    m2 = float(dev2.mean())
    if m2 > 0:
        skewness = float((dev2 * dev).mean()) / m2**1.5
        kurtosis = float((dev2 * dev2).mean()) / m2**2 - 3.0
    else:  # IBSI: both are 0 for a constant region
        skewness = kurtosis = 0.0
    p10, p25, median, p75, p90 = (float(v) for v in np.percentile(x, [10, 25, 50, 75, 90]))
    lo, hi = float(x.min()), float(x.max())
    central = x[(x >= p10) & (x <= p90)]
    rmad = float(np.mean(np.abs(central - central.mean()))) if central.size else float("nan")
    cov = np.sqrt(m2) / mean if mean != 0 else float("nan")
    qcod = (p75 - p25) / (p75 + p25) if (p75 + p25) != 0 else float("nan")
    energy = float(np.dot(x, x))
    return {
        "mean": mean,
        "variance": m2,
        "skewness": skewness,
        "kurtosis": kurtosis,
        "median": median,
        "minimum": lo,
        "percentile_10": p10,
        "percentile_90": p90,
        "maximum": hi,
        "interquartile_range": p75 - p25,
        "range": hi - lo,
        "mean_absolute_deviation": float(np.abs(dev).mean()),
        "robust_mean_absolute_deviation": rmad,
        "median_absolute_deviation": float(np.abs(x - median).mean()),
        "coefficient_of_variation": float(cov),
        "quartile_coefficient_of_dispersion": float(qcod),
        "energy": energy,
        "root_mean_square": float(np.sqrt(energy / n)),
    }


_STAT_ROWS = (
    ("mean", "Q4LE", "Mean", "image"),
    ("variance", "ECT3", "Variance", "image^2"),
    ("skewness", "KE2A", "Skewness", ""),
    ("kurtosis", "IPH6", "(Excess) kurtosis", ""),
    ("median", "Y12H", "Median", "image"),
    ("minimum", "1GSF", "Minimum", "image"),
    ("percentile_10", "QG58", "10th percentile", "image"),
    ("percentile_90", "8DWT", "90th percentile", "image"),
    ("maximum", "84IY", "Maximum", "image"),
    ("interquartile_range", "SALO", "Interquartile range", "image"),
    ("range", "2OJQ", "Range", "image"),
    ("mean_absolute_deviation", "4FUA", "Mean absolute deviation", "image"),
    ("robust_mean_absolute_deviation", "1128", "Robust mean absolute deviation", "image"),
    ("median_absolute_deviation", "N72L", "Median absolute deviation", "image"),
    ("coefficient_of_variation", "7TET", "Coefficient of variation", ""),
    ("quartile_coefficient_of_dispersion", "9S40", "Quartile coefficient of dispersion", ""),
    ("energy", "N8CA", "Energy", "image^2"),
    ("root_mean_square", "5ZWQ", "Root mean square", "image"),
)
STAT_SPECS = tuple(FeatureSpec(n, c, "stat", i, "UHIW", u) for n, c, i, u in _STAT_ROWS)

_IH_CODES = {
    "mean": "X6K6", "variance": "CH89", "skewness": "88K1", "kurtosis": "C3I7", "median": "WIFQ",
    "minimum": "1PR8", "percentile_10": "GPMT", "percentile_90": "OZ0C", "maximum": "3NCY",
    "interquartile_range": "WR0O", "range": "5Z3W", "mean_absolute_deviation": "D2ZX",
    "robust_mean_absolute_deviation": "WRZB", "median_absolute_deviation": "4RNL",
    "coefficient_of_variation": "CWYJ", "quartile_coefficient_of_dispersion": "SLWD",
}
_IH_ROWS = [(n, _IH_CODES[n], i) for n, c, i, _u in _STAT_ROWS if n in _IH_CODES]
_IH_ROWS.insert(9, ("mode", "AMMC", "Mode"))
_IH_ROWS += [
    ("entropy", "TLU2", "Entropy"),
    ("uniformity", "BJ5W", "Uniformity"),
    ("maximum_histogram_gradient", "12CE", "Maximum histogram gradient"),
    ("maximum_histogram_gradient_intensity", "8E6O", "Maximum histogram gradient intensity"),
    ("minimum_histogram_gradient", "VQB3", "Minimum histogram gradient"),
    ("minimum_histogram_gradient_intensity", "RHQZ", "Minimum histogram gradient intensity"),
]
IH_SPECS = tuple(FeatureSpec(n, c, "ih", i, "ZVCW") for n, c, i in _IH_ROWS)

IVH_SPECS = tuple(FeatureSpec(n, c, "ivh", i, "P88C") for n, c, i in (
    ("volume_fraction_at_10_intensity", "NK6P", "Volume fraction at 10% intensity"),
    ("volume_fraction_at_90_intensity", "4279", "Volume fraction at 90% intensity"),
    ("intensity_at_10_volume", "PWN1", "Intensity at 10% volume"),
    ("intensity_at_90_volume", "BOHI", "Intensity at 90% volume"),
    ("volume_fraction_difference_10_90", "WITY", "Volume fraction difference between 10% and 90% intensity"),
    ("intensity_difference_10_90", "JXJA", "Intensity difference between 10% and 90% volume"),
    ("area_under_ivh_curve", "9CMM", "Area under the IVH curve"),
))

LI_SPECS = (
    FeatureSpec("local_intensity_peak", "VJGA", "li", "Local intensity peak", "9ST6", "image"),
    FeatureSpec("global_intensity_peak", "0F91", "li", "Global intensity peak", "9ST6", "image"),
)


@feature_family("stat", STAT_SPECS)
def stat_features(roi: Roi) -> dict[str, float]:
    """IBSI intensity-based statistics (18 features) of the intensity mask, image units."""
    return statistics(roi.values)


@feature_family("ih", IH_SPECS)
def ih_features(roi: Roi) -> dict[str, float]:
    """IBSI intensity histogram features (23) of the discretised grey levels."""
    lv = roi.level_values
    out = statistics(lv.astype(np.float64))
    hist = np.bincount(lv, minlength=roi.n_levels + 1)[1:].astype(np.float64)
    ng = hist.size
    mean = out["mean"]
    modes = np.flatnonzero(hist == hist.max()) + 1
    out["mode"] = float(modes[np.argmin(np.abs(modes - mean))])
    p = hist[hist > 0] / lv.size
    out["entropy"] = float(-np.sum(p * np.log2(p)))
    out["uniformity"] = float(np.sum(p * p))
    if ng > 1:
        grad = np.empty(ng)
        grad[0] = hist[1] - hist[0]
        grad[-1] = hist[-1] - hist[-2]
        grad[1:-1] = (hist[2:] - hist[:-2]) / 2.0
    else:
        grad = np.zeros(1)
    imax, imin = int(np.argmax(grad)), int(np.argmin(grad))
    out["maximum_histogram_gradient"] = float(grad[imax])
    out["maximum_histogram_gradient_intensity"] = float(imax + 1)
    out["minimum_histogram_gradient"] = float(grad[imin])
    out["minimum_histogram_gradient_intensity"] = float(imin + 1)
    return {s.name: out[s.name] for s in IH_SPECS}


def _ivh_grid(roi: Roi, discretisation: str, bin_width: float, lower_bound: float | None,
              n_bins: int) -> tuple[np.ndarray, float, float, float]:
    """Per-voxel IVH intensities, grid step and the range G (min, max)."""
    if discretisation == "texture":
        v = roi.level_values.astype(np.float64)
        return v, 1.0, 1.0, float(roi.n_levels)
    x = roi.values
    if discretisation == "none":
        rng = roi.value_range
        lo = rng[0] if rng is not None and rng[0] is not None else float(x.min())
        hi = rng[1] if rng is not None and rng[1] is not None else float(x.max())
        return x, float(bin_width), float(lo), float(hi)
    if discretisation == "fixed_bin_size":
        rng = roi.value_range
        lb = lower_bound
        if lb is None:
            lb = rng[0] if rng is not None and rng[0] is not None else float(x.min())
        bins = np.maximum(np.floor((x - lb) / bin_width), 0)
        v = lb + (bins + 0.5) * bin_width
        hi_val = rng[1] if rng is not None and rng[1] is not None else float(x.max())
        top = lb + (np.floor((hi_val - lb) / bin_width) + 0.5) * bin_width
        return v, float(bin_width), float(lb + 0.5 * bin_width), float(top)
    lo, hi = float(x.min()), float(x.max())
    if hi > lo:
        lv = np.minimum(np.floor(n_bins * (x - lo) / (hi - lo)) + 1, n_bins)
    else:
        lv = np.ones_like(x)
    return lv, 1.0, 1.0, float(n_bins)


@feature_family("ivh", IVH_SPECS)
def ivh_features(
    roi: Roi,
    *,
    discretisation: Literal["texture", "none", "fixed_bin_size", "fixed_bin_number"] = "texture",
    bin_width: float = 1.0,
    lower_bound: float | None = None,
    n_bins: int = 1000,
) -> dict[str, float]:
    """IBSI intensity-volume histogram features (7).

    Parameters
    ----------
    roi
        The processed region.
    discretisation
        ``"texture"``: the grey levels of the region's discretisation (range :math:`[1, N_g]`);
        ``"none"``: the intensities themselves on a grid of step ``bin_width`` (image units;
        1 for CT) over the re-segmentation range (or the region's min..max); ``"fixed_bin_size"``:
        bins of ``bin_width`` from ``lower_bound`` (default: re-segmentation low bound, else the
        minimum), represented by their centres; ``"fixed_bin_number"``: ``n_bins`` bins.
    bin_width
        Grid step or bin width, image units.
    lower_bound
        Lower bound of the ``fixed_bin_size`` bins, image units.
    n_bins
        Number of bins for ``fixed_bin_number``.
    """
    if not bin_width > 0:
        raise ParameterError(f"ivh bin_width must be > 0 (image units), got {bin_width!r}")
    if n_bins < 1:
        raise ParameterError(f"ivh n_bins must be >= 1, got {n_bins!r}")
    v, step, g_lo, g_hi = _ivh_grid(roi, discretisation, bin_width, lower_bound, n_bins)
    vals, counts = np.unique(v, return_counts=True)
    n = v.size
    # nu(vals[k]) = fraction of voxels >= vals[k]
    nu = np.cumsum(counts[::-1])[::-1] / n
    span = g_hi - g_lo

    def volume_at(frac: float) -> float:
        if span <= 0:
            return 1.0
        k_steps = np.ceil(np.round(frac * span / step, 9))
        threshold = g_lo + k_steps * step
        k = np.searchsorted(vals, threshold - 1e-9 * max(1.0, abs(threshold)), side="left")
        return float(nu[k]) if k < vals.size else 0.0

    def intensity_at(frac: float) -> float:
        above = np.flatnonzero(nu > frac)
        if above.size == 0:
            return float(vals[0])
        return float(vals[above[-1]] + step)

    v10, v90 = volume_at(0.10), volume_at(0.90)
    i10, i90 = intensity_at(0.10), intensity_at(0.90)
    # Area under the IVH curve: nu as a step function of gamma over the grid.
    if span > 0:
        gamma = (vals - g_lo) / span
        edges = np.concatenate([gamma, [(vals[-1] + step - g_lo) / span]])
        auc = float(np.sum(nu * np.diff(edges)) + (gamma[0] if gamma[0] > 0 else 0.0))
    else:
        auc = float("nan")
    return {
        "volume_fraction_at_10_intensity": v10,
        "volume_fraction_at_90_intensity": v90,
        "intensity_at_10_volume": i10,
        "intensity_at_90_volume": i90,
        "volume_fraction_difference_10_90": v10 - v90,
        "intensity_difference_10_90": i10 - i90,
        "area_under_ivh_curve": auc,
    }


def local_means(roi: Roi, *, radius_mm: float = SPHERE_RADIUS_MM) -> np.ndarray:
    """Mean image intensity in the sphere around every voxel of the intensity mask (C order).

    The sphere is a union of x-runs, one per (dz, dy): each run sum is a difference of
    cumulative sums along x, gathered at the region's voxels only. Sphere voxels outside the
    image are not counted (the box holds every image voxel within the sphere's reach).
    """
    run_dz, run_dy, run_a = sphere_runs(roi.spacing_zyx, radius_mm)
    img = roi.intensity
    nz, ny, nx = img.shape
    a_max = int(run_a.max())
    rz = int(np.abs(run_dz).max())
    ry = int(np.abs(run_dy).max())
    # cumulative sums along x of the box zero-padded by (rz, ry, a_max + 1 before / a_max after)
    shape = (nz + 2 * rz, ny + 2 * ry, nx + 2 * a_max + 1)
    csum = np.zeros(shape)
    inner = csum[rz:rz + nz, ry:ry + ny, a_max + 1:a_max + 1 + nx]
    np.cumsum(img, axis=2, out=inner)
    csum[rz:rz + nz, ry:ry + ny, a_max + 1 + nx:] = inner[:, :, -1:]
    csum = csum.ravel()
    idx = roi.int_index
    z, y, x = idx[:, 0], idx[:, 1], idx[:, 2]
    base = ((z + rz) * shape[1] + (y + ry)) * shape[2] + (x + a_max + 1)
    total = np.zeros(z.size)
    for dz, dy, a in zip(run_dz.tolist(), run_dy.tolist(), run_a.tolist(), strict=True):
        shift = (dz * shape[1] + dy) * shape[2]
        total += csum[base + (shift + a)] - csum[base + (shift - a - 1)]
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    if (lo[0] >= rz and hi[0] + rz < nz and lo[1] >= ry and hi[1] + ry < ny
            and lo[2] >= a_max and hi[2] + a_max < nx):
        return total / float(np.sum(2 * run_a + 1))  # every sphere lies in the box
    count = np.zeros(z.size)
    for dz, dy, a in zip(run_dz.tolist(), run_dy.tolist(), run_a.tolist(), strict=True):
        rows_in = (z + dz >= 0) & (z + dz < nz) & (y + dy >= 0) & (y + dy < ny)
        count += np.where(rows_in, np.minimum(x + a, nx - 1) - np.maximum(x - a, 0) + 1, 0)
    return total / np.maximum(count, 1.0)


@feature_family("li", LI_SPECS)
def li_features(roi: Roi) -> dict[str, float]:
    """IBSI local intensity features (2): local and global intensity peaks, image units."""
    roi_means = roi.cached("local_means", lambda: local_means(roi))
    vals = roi.values
    at_max = vals == vals.max()
    return {
        "local_intensity_peak": float(roi_means[at_max].max()),
        "global_intensity_peak": float(roi_means.max()),
    }
