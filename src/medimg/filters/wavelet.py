"""Wavelet shrinkage denoising: BayesShrink and VisuShrink (scikit-image on PyWavelets)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.optional import require
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar, filter_output, float_array, positive, search_space

__all__ = ["wavelet"]

_filters = registry("filters")


@_filters.register("wavelet", tags=("denoiser",))
@search_space(lambda image, sigma: [{"method": m, "wavelet_name": w} for m in ("BayesShrink", "VisuShrink")
                                   for w in ("db1", "db2")])
def wavelet(
    image: Image,
    *,
    method: Literal["BayesShrink", "VisuShrink"] = "BayesShrink",
    wavelet_name: str = "db1",
    mode: Literal["soft", "hard"] = "soft",
    levels: int | None = None,
    sigma: float | None = None,
) -> Image:
    r"""Wavelet shrinkage: threshold the detail coefficients of an N-d wavelet transform.

    * **BayesShrink** (Chang, Yu, Vetterli 2000) picks one threshold per sub-band,
      :math:`T = \sigma^2 / \sigma_X` with :math:`\sigma_X` the sub-band's signal deviation.
    * **VisuShrink** (Donoho, Johnstone 1994) uses the universal threshold
      :math:`T = \sigma \sqrt{2 \ln N}` for every sub-band: smoother, blurrier.

    scikit-image's ``denoise_wavelet`` does the work; the transform runs on the voxel grid.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    method
        ``"BayesShrink"`` or ``"VisuShrink"``.
    wavelet_name
        A PyWavelets discrete wavelet (``"db1"``, ``"db2"``, ``"sym4"``, ``"coif1"``...).
    mode
        ``"soft"`` or ``"hard"`` thresholding.
    levels
        Decomposition levels (>= 1); ``None``: three fewer than the maximum the image allows
        (at least 1), as scikit-image does.
    sigma
        Noise standard deviation in image units; ``None``: estimated from the finest diagonal
        sub-band (wavelet MAD).

    Returns
    -------
    Image
        float32 image on the input's grid.
    """
    restoration = require("skimage.restoration", extra="filters")
    pywt = require("pywt", extra="filters")
    check_scalar(image)
    if wavelet_name not in pywt.wavelist(kind="discrete"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("wavelet", wavelet_name, pywt.wavelist(kind="discrete"))
    if levels is not None and (int(levels) != levels or levels < 1):
        raise ParameterError(f"wavelet: levels must be an integer >= 1 or None, got {levels!r}")
    if sigma is not None:
        sigma = positive(sigma, "sigma", "image units")
    values = float_array(image)
    out = restoration.denoise_wavelet(
        values, sigma=sigma, wavelet=wavelet_name, mode=mode, wavelet_levels=levels,
        method=method, rescale_sigma=True, channel_axis=None,
    )
    step = {"op": "filters.wavelet", "method": method, "wavelet": wavelet_name, "mode": mode,
            "levels": levels, "sigma": sigma}
    return filter_output(image, np.asarray(out, dtype=np.float32), step)
