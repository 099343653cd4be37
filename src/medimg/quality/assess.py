"""Every quality metric of an image against its reference, in one call (``medimg quality``).

:func:`compare_images` runs the registered metrics (``registry("quality")``): the
full-reference ones on (reference, image), the no-reference ones on the image, and with a
two-region label map the CNR and SNR; it returns one row metric -> value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError, UnknownNameError

__all__ = ["compare_images", "REGION_METRICS"]

#: Metrics computed from a region label map (``rois``): 1 = signal / region A, 2 = background /
#: region B.
REGION_METRICS = ("cnr", "snr")


def compare_images(
    reference: Image,
    image: Image,
    /,
    *,
    metrics: Sequence[str] | None = None,
    mask: Image | None = None,
    rois: Image | None = None,
    data_range: float | Literal["reference"] = "reference",
    rician: bool = False,
    names: tuple[str, str] = ("reference", "image"),
) -> dict[str, float]:
    """Score ``image`` against ``reference`` with the registered quality metrics.

    Parameters
    ----------
    reference
        The reference (clean) image.
    image
        The image to score, on ``reference``'s grid.
    metrics
        Which metrics, by name: registered quality metrics (``medimg list quality``: ``mse``,
        ``rmse``, ``psnr``, ``ssim``, ``entropy``, ``noise_sigma``, ...) and ``cnr`` / ``snr``
        (need ``rois``). Default: every registered metric, plus ``cnr`` and ``snr`` when
        ``rois`` is given.
    mask
        Region (label map, non-zero inside) where the metrics that take a mask are computed.
    rois
        Label map with label 1 (signal / region A) and label 2 (background / region B), for
        ``cnr`` (:func:`~medimg.quality.cnr`) and ``snr`` (:func:`~medimg.quality.snr`).
    data_range
        The data range L of PSNR and SSIM in image units, or ``"reference"``: the reference's
        max - min inside ``mask``.
    rician
        Magnitude MR: the noise is estimated as Rician and the SNR takes a Rayleigh background.
    names
        How the two images are named in a grid-mismatch error (e.g. their file names).

    Returns
    -------
    dict[str, float]
        One row: metric -> value (dimensionless, dB for PSNR, image units for MSE/RMSE/noise,
        bits for entropy), in the order full-reference, no-reference, region metrics, and last
        ``"data_range"``, the resolved L (image units).

    Raises
    ------
    GeometryMismatchError
        ``image`` (or ``mask`` / ``rois``) is not on ``reference``'s grid.
    UnknownNameError
        A metric name is not registered.
    ParameterError
        ``rois`` lacks label 1 or 2, or ``cnr`` / ``snr`` were asked for without ``rois``.
    """
    from medimg.quality import cnr, full_reference_metrics, no_reference_metrics, snr
    from medimg.quality.metrics import resolve_data_range

    reference.check_same_grid(image, names=names)
    full, alone = full_reference_metrics(), no_reference_metrics()
    known = [*full, *alone, *REGION_METRICS]
    if metrics is None:
        wanted = [*full, *alone, *(REGION_METRICS if rois is not None else ())]
    else:
        wanted = list(dict.fromkeys(metrics))
        for name in wanted:
            if name not in known:
                raise UnknownNameError("quality metric", name, known)
    if rois is None and any(m in REGION_METRICS for m in wanted):
        raise ParameterError("cnr and snr need a region label map (rois=...; CLI: --roi) with labels 1 and 2")
    resolved = resolve_data_range(reference, data_range, mask)
    results: dict[str, float] = {}
    for name in (m for m in full if m in wanted):
        entry = registry("quality").get(name)
        kwargs: dict[str, Any] = {}
        if "mask" in entry.params.model_fields:
            kwargs["mask"] = mask
        if "data_range" in entry.params.model_fields:
            kwargs["data_range"] = resolved
        results[name] = float(entry(reference, image, **kwargs))
    for name in (m for m in alone if m in wanted):
        entry = registry("quality").get(name)
        kwargs = {"mask": mask} if "mask" in entry.params.model_fields else {}
        if "distribution" in entry.params.model_fields:
            kwargs["distribution"] = "rician" if rician else "gaussian"
        results[name] = float(entry(image, **kwargs))
    if rois is not None and any(m in REGION_METRICS for m in wanted):
        labels = np.asarray(rois.array)
        if not ((labels == 1).any() and (labels == 2).any()):
            raise ParameterError("rois (CLI: --roi): the region map must hold label 1 (signal) and label 2 (background)")
        a = rois.with_array((labels == 1).astype(np.uint8), meta={})
        b = rois.with_array((labels == 2).astype(np.uint8), meta={})
        if "cnr" in wanted:
            results["cnr"] = cnr(image, a, b)
        if "snr" in wanted:
            results["snr"] = snr(image, a, noise=b, noise_model="rayleigh" if rician else "gaussian")
    results["data_range"] = resolved
    return results
