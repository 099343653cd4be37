r"""Image quality metrics: full-reference (MSE, RMSE, PSNR, SSIM) and from the image alone.

Full-reference metrics compare an image with a reference on the same grid
(:class:`~medimg.errors.GeometryMismatchError` otherwise), optionally inside a mask. PSNR and
SSIM depend on the *data range* :math:`L` of the intensities, which must be stated:
``data_range=4095.0`` (a number in image units) or ``data_range="reference"`` (the reference's
max - min inside the mask); it is never guessed from the dtype.

Region metrics (CNR, SNR) take regions of interest as label maps on the image's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError
from medimg.filters._common import check_scalar, region, spacing_zyx

__all__ = [
    "mse", "rmse", "psnr", "ssim", "ssim_map", "cnr", "snr", "entropy", "radial_psd", "RadialPSD",
    "resolve_data_range", "noise_sigma",
]

_quality = registry("quality")

DataRange = float | Literal["reference"]


def _pair(reference: Image, image: Image, mask: Image | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    check_scalar(reference, "reference")
    check_scalar(image, "image")
    reference.check_same_grid(image, names=("reference", "image"))
    roi = region(reference, mask)
    return np.asarray(reference.array, np.float64), np.asarray(image.array, np.float64), roi


def resolve_data_range(reference: Image, data_range: DataRange, mask: Image | None = None) -> float:
    """The data range :math:`L` in image units: the number given, or the reference's max - min."""
    if isinstance(data_range, str):
        if data_range != "reference":
            raise ParameterError(f"data_range must be a positive number (image units) or 'reference', got {data_range!r}")
        values = np.asarray(reference.array, np.float64)
        roi = region(reference, mask)
        if roi is not None:
            values = values[roi]
        value = float(np.nanmax(values) - np.nanmin(values))
        if value <= 0:
            raise ParameterError("data_range='reference': the reference is constant (range 0); give data_range")
        return value
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"data_range must be a positive number (image units) or 'reference', got {data_range!r}")
    return value


@_quality.register("mse")
def mse(reference: Image, image: Image, *, mask: Image | None = None) -> float:
    r"""Mean squared error :math:`\frac{1}{N}\sum (x - y)^2` (image units squared), inside ``mask``."""
    ref, img, roi = _pair(reference, image, mask)
    diff = img - ref if roi is None else img[roi] - ref[roi]
    return float(np.mean(diff * diff))


@_quality.register("rmse")
def rmse(reference: Image, image: Image, *, mask: Image | None = None) -> float:
    """Root mean squared error (image units), inside ``mask``."""
    return float(np.sqrt(mse(reference, image, mask=mask)))


@_quality.register("psnr")
def psnr(reference: Image, image: Image, *, data_range: DataRange, mask: Image | None = None) -> float:
    r"""Peak signal-to-noise ratio in dB: :math:`10 \log_{10}(L^2 / \mathrm{MSE})`.

    Parameters
    ----------
    reference, image
        Scalar images on the same grid.
    data_range
        :math:`L` in image units, or ``"reference"`` for the reference's max - min (in ``mask``).
    mask
        Optional region on the same grid.

    Returns
    -------
    float
        PSNR in dB; ``inf`` for identical images.
    """
    err = mse(reference, image, mask=mask)
    rng = resolve_data_range(reference, data_range, mask)
    if err == 0:
        return float("inf")
    return float(10.0 * np.log10(rng**2 / err))


def _ssim_parts(reference: Image, image: Image, data_range: DataRange, mask: Image | None,
                window_sigma_mm: float | None, k1: float, k2: float) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    from scipy import ndimage as ndi

    x, y, roi = _pair(reference, image, mask)
    rng = resolve_data_range(reference, data_range, mask)
    if window_sigma_mm is None:
        sigma = np.full(x.ndim, 1.5)
    else:
        if not np.isfinite(window_sigma_mm) or window_sigma_mm <= 0:
            raise ParameterError(f"ssim: window_sigma_mm must be > 0 (mm), got {window_sigma_mm!r}")
        sigma = float(window_sigma_mm) / spacing_zyx(reference)
    truncate = 3.5

    def blur(a: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(a, sigma=tuple(sigma), truncate=truncate, mode="reflect")

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2
    smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pads = [int(truncate * s + 0.5) for s in sigma]
    return smap, roi, pads


@_quality.register("ssim")
def ssim(
    reference: Image,
    image: Image,
    *,
    data_range: DataRange,
    mask: Image | None = None,
    window_sigma_mm: float | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    r"""Mean structural similarity (Wang et al. 2004), 2-D or 3-D.

    .. math:: \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
              {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
              \quad C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2

    with local statistics under a Gaussian window (population covariances). Without a mask
    the map is averaged over the voxels at least the window radius (3.5 sigma) away from the
    border, as Wang et al. and scikit-image's ``structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` do (an axis too short to crop is not cropped);
    with a mask, over the mask.

    Parameters
    ----------
    reference, image
        Scalar images on the same grid.
    data_range
        :math:`L` in image units, or ``"reference"`` (the reference's max - min in ``mask``).
    mask
        Optional region on the same grid.
    window_sigma_mm
        Standard deviation of the Gaussian window in mm; ``None``: 1.5 voxels along every axis
        (Wang et al.'s definition).
    k1, k2
        The constants :math:`K_1, K_2`.

    Returns
    -------
    float
        Mean SSIM, 1 for identical images.
    """
    smap, roi, pads = _ssim_parts(reference, image, data_range, mask, window_sigma_mm, k1, k2)
    if roi is not None:
        return float(np.mean(smap[roi]))
    crop = tuple(slice(p, n - p) if n > 2 * p else slice(None) for p, n in zip(pads, smap.shape, strict=True))
    return float(np.mean(smap[crop]))


def ssim_map(reference: Image, image: Image, *, data_range: DataRange, window_sigma_mm: float | None = None,
             k1: float = 0.01, k2: float = 0.03) -> Image:
    """The local SSIM of every voxel (see :func:`ssim`) as a float32 image on the reference's grid."""
    smap, _roi, _pads = _ssim_parts(reference, image, data_range, None, window_sigma_mm, k1, k2)
    return reference.with_array(smap.astype(np.float32), meta={"units": "SSIM"})


def _roi_values(image: Image, roi: Image, name: str) -> np.ndarray:
    mask = region(image, roi, name)
    values = np.asarray(image.array, np.float64)[mask]
    if values.size < 2:
        raise ParameterError(f"{name} holds {values.size} voxel(s); at least 2 are needed")
    return values


def cnr(image: Image, roi_a: Image, roi_b: Image, *, noise: Image | None = None) -> float:
    r"""Contrast-to-noise ratio :math:`|\mu_A - \mu_B| / \sigma`.

    :math:`\sigma` is the standard deviation inside ``noise`` (a uniform background region)
    when given, otherwise the pooled deviation :math:`\sqrt{(\sigma_A^2 + \sigma_B^2) / 2}` of
    the two regions.

    Parameters
    ----------
    image
        Scalar image.
    roi_a, roi_b
        The two regions (label maps, non-zero = inside) on the image's grid.
    noise
        Optional noise region on the same grid.

    Returns
    -------
    float
        Dimensionless CNR (``inf`` when the noise is 0 and the means differ).
    """
    a, b = _roi_values(image, roi_a, "roi_a"), _roi_values(image, roi_b, "roi_b")
    if noise is not None:
        sd = float(np.std(_roi_values(image, noise, "noise")))
    else:
        sd = float(np.sqrt((np.var(a) + np.var(b)) / 2))
    contrast = abs(float(a.mean() - b.mean()))
    if sd == 0:
        return float("inf") if contrast > 0 else 0.0
    return contrast / sd


def snr(image: Image, signal: Image, *, noise: Image | None = None,
        noise_model: Literal["gaussian", "rayleigh"] = "gaussian") -> float:
    r"""Signal-to-noise ratio :math:`\mu_S / \sigma`.

    * ``noise=None``: :math:`\sigma` is the standard deviation inside ``signal`` (a uniform
      region).
    * ``noise`` given, ``noise_model="gaussian"``: the standard deviation inside ``noise``.
    * ``noise_model="rayleigh"`` — magnitude MR, ``noise`` in the air: background magnitude
      noise is Rayleigh-distributed, whose deviation is :math:`\sqrt{2 - \pi/2}\,\sigma \approx
      0.655\,\sigma`; the Gaussian :math:`\sigma` of the channels is recovered from it
      (NEMA MS 1, Dietrich et al. 2007).

    Parameters
    ----------
    image
        Scalar image.
    signal
        Signal region (label map) on the image's grid.
    noise
        Optional noise region on the same grid.
    noise_model
        ``"gaussian"`` or ``"rayleigh"`` (needs ``noise``).

    Returns
    -------
    float
        Dimensionless SNR.
    """
    s = _roi_values(image, signal, "signal")
    if noise_model not in ("gaussian", "rayleigh"):
        raise ParameterError(f"snr: noise_model must be 'gaussian' or 'rayleigh', got {noise_model!r}")
    if noise is None:
        if noise_model == "rayleigh":
            raise ParameterError("snr: noise_model='rayleigh' needs a background noise region (noise=...)")
        sd = float(np.std(s))
    else:
        sd = float(np.std(_roi_values(image, noise, "noise")))
        if noise_model == "rayleigh":
            sd /= np.sqrt(2 - np.pi / 2)
    mean = float(s.mean())
    if sd == 0:
        return float("inf") if mean != 0 else 0.0
    return mean / sd


@_quality.register("entropy")
def entropy(image: Image, *, mask: Image | None = None, nbins: int = 256) -> float:
    r"""Shannon entropy of the intensity histogram in bits: :math:`-\sum_k p_k \log_2 p_k`.

    Parameters
    ----------
    image
        Scalar image.
    mask
        Optional region on the same grid.
    nbins
        Equal-width bins between the region's minimum and maximum (>= 1); an integer image
        whose range is smaller uses one bin per value.

    Returns
    -------
    float
        Entropy in bits (0 for a constant image; at most ``log2(nbins)``).
    """
    check_scalar(image)
    if int(nbins) != nbins or nbins < 1:
        raise ParameterError(f"entropy: nbins must be an integer >= 1, got {nbins!r}")
    roi = region(image, mask)
    values = np.asarray(image.array)
    values = values[roi] if roi is not None else values.ravel()
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        raise ParameterError("entropy: no finite voxel in the region")
    lo, hi = float(values.min()), float(values.max())
    if values.dtype.kind in "iub" and hi - lo + 1 <= nbins:
        counts = np.bincount((values.astype(np.int64) - int(lo)).ravel())
    else:
        counts, _ = np.histogram(values, bins=int(nbins), range=(lo, hi) if hi > lo else None)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)


@dataclass(frozen=True)
class RadialPSD:
    """A radially averaged power spectral density.

    Attributes
    ----------
    frequency
        Centre of each radial bin in cycles/mm.
    power
        Mean PSD in the bin, in (image units)^2 x mm^d (d = 2 or 3): the integral of the PSD over
        all frequencies is the variance.
    counts
        Number of DFT samples averaged in each bin.
    """

    frequency: np.ndarray
    power: np.ndarray
    counts: np.ndarray


def radial_psd(image: Image, *, detrend: Literal["mean", "none"] = "mean") -> RadialPSD:
    r"""Radially averaged power spectral density (the noise power spectrum when given noise).

    :math:`\mathrm{PSD}(f) = \frac{\prod_i \Delta_i}{N} |\mathrm{DFT}(u - \bar u)|^2`, averaged
    over annuli (shells) of equal width in radial frequency :math:`|f|` (cycles/mm). The bin
    width is the coarsest frequency step among the axes, :math:`\max_i 1/(n_i \Delta_i)`; bins
    run up to the largest Nyquist frequency and empty bins are dropped. White noise of variance
    :math:`\sigma^2` has a flat PSD of :math:`\sigma^2 \prod_i \Delta_i`.

    Parameters
    ----------
    image
        Scalar image (a noise-only region, a difference image, or a uniform phantom).
    detrend
        ``"mean"`` subtracts the mean first (the DC bin then holds ~0), ``"none"`` does not.

    Returns
    -------
    RadialPSD
    """
    from scipy import fft

    from medimg.filters.frequency import frequency_grid

    check_scalar(image)
    x = np.asarray(image.array, np.float64)
    if detrend == "mean":
        x = x - x.mean()
    elif detrend != "none":
        raise ParameterError(f"radial_psd: detrend must be 'mean' or 'none', got {detrend!r}")
    spacing = spacing_zyx(image)
    power = np.abs(fft.fftn(x, workers=-1)) ** 2 * (np.prod(spacing) / x.size)
    d = frequency_grid(x.shape, spacing)
    step = max(1.0 / (n * s) for n, s in zip(x.shape, spacing, strict=True))
    nyquist = max(0.5 / s for s in spacing)
    nbins = int(np.floor(nyquist / step + 0.5)) + 1
    idx = np.floor(d / step + 0.5).astype(np.int64).ravel()
    inside = idx < nbins  # the corners beyond the largest Nyquist frequency are left out
    counts = np.bincount(idx[inside], minlength=nbins)
    sums = np.bincount(idx[inside], weights=power.ravel()[inside], minlength=nbins)
    keep = counts > 0
    return RadialPSD(frequency=np.arange(nbins)[keep] * step, power=sums[keep] / counts[keep], counts=counts[keep])


@_quality.register("noise_sigma")
def noise_sigma(image: Image, *, mask: Image | None = None,
                distribution: Literal["gaussian", "rician"] = "gaussian") -> float:
    """Noise standard deviation in image units, estimated without a reference (wavelet MAD).

    See :func:`medimg.quality.noise.estimate_noise_sigma`.
    """
    from medimg.quality.noise import estimate_noise_sigma

    return estimate_noise_sigma(image, distribution=distribution, mask=mask)
