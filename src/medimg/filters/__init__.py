"""Image filters: noise reduction, frequency filters, enhancement, normalisation, bias, resampling.

Every filter is registered once in ``registry("filters")`` and reached by name through
:func:`apply` (or :func:`denoise` for the noise-reduction filters), so the CLI
(``medimg filter IN OUT --method NAME --param k=v``), pipelines and docs share one list.

Conventions:

* The input is a scalar :class:`~medimg.Image`, 2-D or 3-D; it is never modified.
* The output is a new float32 image on the input's grid (resampling documents its new grid and
  keeps label maps' dtype), with the input's ``meta`` plus a ``meta["history"]`` entry holding
  the parameters actually used (estimated noise levels included).
* Spatial parameters are in mm (``*_mm``) and converted with the image spacing; frequencies in
  cycles/mm; intensity parameters in image units (HU for CT).

Noise reduction: ``gaussian``, ``median``, ``bilateral`` (:mod:`.smoothing`),
``curvature_diffusion``, ``gradient_diffusion``, ``tv`` (:mod:`.diffusion`), ``wavelet``,
``nlm`` (medimg's fast non-local means), ``lowpass``, ``highpass``, ``bandpass``
(:mod:`.frequency`), ``wiener``, ``adaptive_median`` (:mod:`.adaptive`).
Enhancement: ``histogram_equalization``, ``clahe``, ``unsharp_mask``, ``laplacian_sharpen``.
Intensity: ``window`` (CT presets), ``zscore``, ``percentile``, ``nyul``, ``suv``, ``n4``.
Geometry: ``resample``, ``resample_to``.
"""

from __future__ import annotations

from typing import Any

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters.adaptive import adaptive_median, wiener
from medimg.filters.bias import n4, n4_bias_field
from medimg.filters.diffusion import curvature_diffusion, gradient_diffusion, tv
from medimg.filters.enhance import (
    clahe,
    histogram_equalization,
    laplacian,
    laplacian_sharpen,
    unsharp_mask,
)
from medimg.filters.frequency import bandpass, highpass, lowpass, spectrum, transfer_function
from medimg.filters.nlm import nlm
from medimg.filters.normalize import NyulStandard, nyul, nyul_fit, percentile_scale, zscore
from medimg.filters.pet import suv, suv_factor
from medimg.filters.resample import resample, resample_to
from medimg.filters.smoothing import bilateral, gaussian, median
from medimg.filters.wavelet import wavelet
from medimg.filters.window import CT_WINDOWS, window

__all__ = [
    "apply", "denoise", "denoising_methods",
    "gaussian", "median", "bilateral", "curvature_diffusion", "gradient_diffusion", "tv",
    "wavelet", "nlm", "lowpass", "highpass", "bandpass", "transfer_function", "spectrum",
    "wiener", "adaptive_median", "histogram_equalization", "clahe", "unsharp_mask",
    "laplacian_sharpen", "laplacian", "window", "CT_WINDOWS", "zscore", "percentile_scale",
    "nyul", "nyul_fit", "NyulStandard", "suv", "suv_factor", "n4", "n4_bias_field",
    "resample", "resample_to",
]

def denoising_methods() -> list[str]:
    """Names of the registered noise-reduction filters (tagged ``"denoiser"``), sorted."""
    return registry("filters").names(tag="denoiser")


def apply(image: Image, method: str, /, **params: Any) -> Image:
    """Run the filter registered as ``method`` on ``image``.

    Parameters
    ----------
    image
        The input image.
    method
        A name registered in ``registry("filters")`` (``medimg list filters``); positional only,
        so a filter may have a parameter called ``method`` (e.g. ``wavelet``).
    **params
        The filter's keyword parameters, validated against its signature (unknown names and
        wrong types raise :class:`~medimg.errors.ParameterError`).

    Returns
    -------
    Image
        The filtered image.

    Raises
    ------
    UnknownNameError
        ``method`` is not registered (the message suggests the closest name).
    """
    return registry("filters").get(method)(image, **params)


def denoise(image: Image, method: str = "nlm", /, **params: Any) -> Image:
    """Run the noise-reduction filter ``method`` (see :func:`denoising_methods`) on ``image``.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    method
        Positional only. A noise-reduction filter: ``gaussian``, ``median``, ``bilateral``,
        ``curvature_diffusion``, ``gradient_diffusion``, ``tv``, ``wavelet``, ``nlm``,
        ``lowpass``, ``highpass``, ``bandpass``, ``wiener``, ``adaptive_median``.
    **params
        The filter's keyword parameters (mm for sizes, image units for intensities).

    Returns
    -------
    Image
        float32 image on the input's grid.

    Raises
    ------
    UnknownNameError
        ``method`` is not registered.
    ParameterError
        ``method`` is a filter but not a noise-reduction one (use :func:`apply`).
    """
    entry = registry("filters").get(method)
    if "denoiser" not in entry.tags:
        msg = (f"{method!r} is a filter but not a noise-reduction one; use medimg.filters.apply. "
               f"Noise-reduction filters: {', '.join(denoising_methods())}")
        raise ParameterError(msg)
    return entry(image, **params)
