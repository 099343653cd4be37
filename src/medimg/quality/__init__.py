"""Image quality: metrics to compare filters, noise estimation and simulation, filter comparison.

* Full-reference metrics (:func:`mse`, :func:`rmse`, :func:`psnr`, :func:`ssim`) compare an image
  with a reference on the same grid; PSNR and SSIM need the data range stated
  (``data_range=<number>`` or ``"reference"``).
* Region metrics: :func:`cnr`, :func:`snr` (Rayleigh-aware for MR backgrounds).
* From the image alone: :func:`entropy`, :func:`radial_psd`, :func:`estimate_noise_sigma`
  (wavelet MAD, Rician-corrected for MR).
* :func:`compare_images` runs every registered metric (or those named) on an image and its
  reference and returns one row metric -> value (``medimg quality``).
* :func:`add_noise` and :func:`compare_denoisers` (written to a folder by
  :func:`medimg.pipeline.denoise_compare.write_comparison`) implement the
  ``medimg denoise-compare`` workflow.

The metrics that map an image (or an image and a reference) to one number are registered in
``registry("quality")``; :func:`full_reference_metrics` and :func:`no_reference_metrics` list
them, read from the registry.
"""

from __future__ import annotations

import inspect

from medimg.core.registry import registry
from medimg.quality.assess import compare_images
from medimg.quality.compare import Comparison, compare_denoisers
from medimg.quality.metrics import (
    RadialPSD,
    cnr,
    entropy,
    mse,
    noise_sigma,
    psnr,
    radial_psd,
    rmse,
    snr,
    ssim,
    ssim_map,
)
from medimg.quality.noise import NoiseSpec, add_noise, estimate_noise_sigma, parse_noise

__all__ = [
    "mse", "rmse", "psnr", "ssim", "ssim_map", "cnr", "snr", "entropy", "radial_psd", "RadialPSD",
    "noise_sigma", "estimate_noise_sigma", "add_noise", "parse_noise", "NoiseSpec",
    "compare_denoisers", "Comparison", "full_reference_metrics",
    "no_reference_metrics", "compare_images",
]


def _positional(name: str) -> int:
    sig = inspect.signature(registry("quality").get(name).func)
    return sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in sig.parameters.values())


def full_reference_metrics() -> list[str]:
    """Registered metrics of the form ``metric(reference, image, **params)``."""
    return [n for n in registry("quality").names() if _positional(n) == 2]


def no_reference_metrics() -> list[str]:
    """Registered metrics of the form ``metric(image, **params)``."""
    return [n for n in registry("quality").names() if _positional(n) == 1]
