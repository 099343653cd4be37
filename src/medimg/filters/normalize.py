"""MR intensity normalisation: z-score in a mask, percentile scaling, Nyúl histogram matching.

MR intensities have no absolute unit: the same tissue differs between scanners, sessions and
protocols. These maps put images on a common scale before radiomics or learning.

References
----------
Nyúl L.G., Udupa J.K., Zhang X. New variants of a method of MRI scale standardization.
IEEE Trans Med Imaging 2000;19:143-150.
Shah M. et al. Evaluating intensity normalization on MRIs of human brain with multiple
sclerosis. Med Image Anal 2011;15:267-282.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar, filter_output, float_array, region

__all__ = ["zscore", "percentile_scale", "NyulStandard", "nyul_fit", "nyul", "NYUL_PERCENTILES"]

_filters = registry("filters")

#: Nyúl's landmarks: the 1st and 99th percentiles and the deciles between (Shah et al. 2011).
NYUL_PERCENTILES: tuple[float, ...] = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


def _values_in(image: Image, mask: Image | None, *, default: str = "all") -> np.ndarray:
    x = float_array(image, np.float64)
    roi = region(image, mask)
    if roi is None:
        roi = x > x.mean() if default == "above_mean" else np.ones(x.shape, bool)
    vals = x[roi]
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise ParameterError("no finite voxel in the region")
    return vals


@_filters.register("zscore", tags=("intensity",))
def zscore(image: Image, *, mask: Image | None = None) -> Image:
    r"""Z-score normalisation: :math:`(u - \mu) / \sigma` with mean and deviation inside ``mask``.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    mask
        Region (e.g. the brain or a reference tissue) on the same grid whose mean and standard
        deviation are used; ``None``: the whole image. The map is applied everywhere.

    Returns
    -------
    Image
        float32 image (dimensionless) on the input's grid.
    """
    check_scalar(image)
    vals = _values_in(image, mask)
    mu, sd = float(vals.mean()), float(vals.std())
    if sd == 0:
        raise ParameterError("zscore: the region is constant (standard deviation 0)")
    out = (float_array(image, np.float64) - mu) / sd
    step = {"op": "filters.zscore", "mean": mu, "std": sd, "masked": mask is not None}
    return filter_output(image, out.astype(np.float32), step)


@_filters.register("percentile", tags=("intensity",))
def percentile_scale(image: Image, *, lower: float = 1.0, upper: float = 99.0,
                     mask: Image | None = None, clip: bool = False) -> Image:
    """Map the ``lower`` and ``upper`` percentiles (inside ``mask``) linearly to 0 and 1.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    lower, upper
        Percentiles in [0, 100], ``lower < upper``.
    mask
        Region whose percentiles are used; ``None``: the whole image.
    clip
        Clip the result to [0, 1].

    Returns
    -------
    Image
        float32 image (dimensionless) on the input's grid.
    """
    check_scalar(image)
    if not (0 <= lower < upper <= 100):
        raise ParameterError(f"percentile: need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    vals = _values_in(image, mask)
    p_lo, p_hi = (float(v) for v in np.percentile(vals, [lower, upper]))
    if p_hi <= p_lo:
        raise ParameterError(f"percentile: the {lower}th and {upper}th percentiles are equal ({p_lo}); the region is too uniform")
    out = (float_array(image, np.float64) - p_lo) / (p_hi - p_lo)
    if clip:
        np.clip(out, 0, 1, out=out)
    step = {"op": "filters.percentile", "lower": lower, "upper": upper, "values": [p_lo, p_hi], "clip": bool(clip)}
    return filter_output(image, out.astype(np.float32), step)


@dataclass(frozen=True)
class NyulStandard:
    """A trained Nyúl standard scale: the standard intensity of each landmark percentile."""

    percentiles: tuple[float, ...]
    landmarks: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly form (the keyword arguments of :func:`nyul`)."""
        return {"percentiles": list(self.percentiles), "standard": list(self.landmarks)}


def _check_percentiles(percentiles: Sequence[float]) -> np.ndarray:
    pcs = np.asarray(percentiles, dtype=float)
    if pcs.ndim != 1 or pcs.size < 2 or np.any(np.diff(pcs) <= 0) or pcs[0] < 0 or pcs[-1] > 100:
        raise ParameterError(f"nyul: percentiles must increase strictly within [0, 100] (at least 2), got {list(percentiles)}")
    return pcs


def nyul_fit(
    images: Sequence[Image],
    masks: Sequence[Image | None] | None = None,
    *,
    percentiles: Sequence[float] = NYUL_PERCENTILES,
    standard_range: tuple[float, float] = (1.0, 100.0),
) -> NyulStandard:
    """Learn Nyúl's standard scale from training images.

    Each image's landmarks (``percentiles`` of its foreground) are mapped linearly so that the
    first and last land on ``standard_range``; the standard landmarks are the means of the
    mapped ones.

    Parameters
    ----------
    images
        Training images of one protocol and contrast.
    masks
        One foreground mask per image (or ``None`` entries): ``None`` uses the voxels above the
        image's mean, Nyúl's default foreground.
    percentiles
        Landmark percentiles, increasing (default :data:`NYUL_PERCENTILES`).
    standard_range
        Standard intensities (s1, s2) of the first and last landmark.

    Returns
    -------
    NyulStandard
    """
    pcs = _check_percentiles(percentiles)
    if not images:
        raise ParameterError("nyul_fit: give at least one training image")
    masks = list(masks) if masks is not None else [None] * len(images)
    if len(masks) != len(images):
        raise ParameterError(f"nyul_fit: {len(images)} images but {len(masks)} masks")
    s1, s2 = (float(v) for v in standard_range)
    if not s1 < s2:
        raise ParameterError(f"nyul_fit: standard_range must increase, got {standard_range}")
    mapped = []
    for k, (img, msk) in enumerate(zip(images, masks, strict=True)):
        check_scalar(img, f"images[{k}]")
        marks = np.percentile(_values_in(img, msk, default="above_mean"), pcs)
        if marks[-1] <= marks[0]:
            raise ParameterError(f"nyul_fit: images[{k}] has equal first and last landmarks; its foreground is uniform")
        mapped.append(s1 + (marks - marks[0]) / (marks[-1] - marks[0]) * (s2 - s1))
    standard = np.mean(mapped, axis=0)
    return NyulStandard(tuple(float(p) for p in pcs), tuple(float(v) for v in standard))


@_filters.register("nyul", tags=("intensity",))
def nyul(image: Image, *, standard: list[float], percentiles: list[float] = list(NYUL_PERCENTILES),  # noqa: B006
         mask: Image | None = None) -> Image:
    """Nyúl histogram matching: map the image's landmarks piecewise-linearly onto a standard scale.

    Parameters
    ----------
    image
        Scalar MR image.
    standard
        Standard intensities of the landmarks (from :func:`nyul_fit`, ``NyulStandard.landmarks``),
        increasing, one per percentile.
    percentiles
        Landmark percentiles, as used to train ``standard``.
    mask
        Foreground on the same grid; ``None``: voxels above the image's mean.

    Returns
    -------
    Image
        float32 image on the standard scale; below the first and above the last landmark the
        first and last linear segments are extended.
    """
    check_scalar(image)
    pcs = _check_percentiles(percentiles)
    std = np.asarray(standard, dtype=float)
    if std.shape != pcs.shape or np.any(np.diff(std) <= 0):
        raise ParameterError(f"nyul: standard must hold {pcs.size} increasing values (one per percentile), got {list(standard)}")
    marks = np.percentile(_values_in(image, mask, default="above_mean"), pcs)
    if np.any(np.diff(marks) <= 0):
        raise ParameterError("nyul: the image's landmarks are not strictly increasing (too few distinct intensities in the foreground)")
    x = float_array(image, np.float64)
    out = np.interp(x, marks, std)
    lo_slope = (std[1] - std[0]) / (marks[1] - marks[0])
    hi_slope = (std[-1] - std[-2]) / (marks[-1] - marks[-2])
    below, above = x < marks[0], x > marks[-1]
    out[below] = std[0] + (x[below] - marks[0]) * lo_slope
    out[above] = std[-1] + (x[above] - marks[-1]) * hi_slope
    step = {"op": "filters.nyul", "landmarks": marks.tolist(), "standard": std.tolist()}
    return filter_output(image, out.astype(np.float32), step)
