"""Noise: estimate its standard deviation without a reference, and add a known amount of it.

:func:`estimate_noise_sigma` is Donoho's wavelet estimator — the median absolute value of the
finest diagonal wavelet sub-band divided by 0.6745 — with the Rician correction of Koay and
Basser for magnitude MR images. :func:`add_noise` adds Gaussian, Rician, Poisson or
salt-and-pepper noise with an explicit seed; :func:`parse_noise` reads the
``kind:level`` strings of the ``denoise-compare`` command.

References
----------
Donoho D.L., Johnstone I.M. Ideal spatial adaptation by wavelet shrinkage. Biometrika 1994.
Koay C.G., Basser P.J. Analytically exact correction scheme for signal extraction from noisy
magnitude MR signals. J Magn Reson 2006;179:317-322.
Coupé P. et al. Robust Rician noise estimation for MR images. Med Image Anal 2010;14:483-493.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medimg.core.image import Image
from medimg.errors import ParameterError, did_you_mean
from medimg.filters._common import check_scalar, filter_output, region

__all__ = [
    "estimate_noise_sigma",
    "rician_correction_factor",
    "NoiseSpec",
    "NOISE_KINDS",
    "parse_noise",
    "add_noise",
]

_MAD_TO_SIGMA = 0.6744897501960817  # median of |N(0, 1)|

#: The noise models :func:`add_noise` knows, with the meaning of their ``level``.
NOISE_KINDS = {
    "gaussian": "standard deviation as a fraction of the image's intensity range (max - min)",
    "rician": "standard deviation of each of the two Gaussian channels, as a fraction of the range",
    "poisson": "expected count at the image maximum (smaller = noisier), > 0",
    "saltpepper": "fraction of voxels set to the minimum or the maximum (half each), in (0, 1)",
}


def _haar_finest(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finest orthonormal Haar sub-bands of an even-cropped array: (all-detail, all-approximation)."""
    crop = tuple(slice(0, (n // 2) * 2) for n in values.shape)
    detail = values[crop].astype(np.float64, copy=False)
    approx = detail
    for axis in range(values.ndim):
        even = np.take(detail, np.arange(0, detail.shape[axis], 2), axis=axis)
        odd = np.take(detail, np.arange(1, detail.shape[axis], 2), axis=axis)
        detail = (even - odd) / np.sqrt(2.0)
        even_a = np.take(approx, np.arange(0, approx.shape[axis], 2), axis=axis)
        odd_a = np.take(approx, np.arange(1, approx.shape[axis], 2), axis=axis)
        approx = (even_a + odd_a) / np.sqrt(2.0)
    return detail, approx


def _block_all(mask: np.ndarray) -> np.ndarray:
    """True for each 2x2(x2) block (even-cropped) whose voxels are all inside ``mask``."""
    crop = tuple(slice(0, (n // 2) * 2) for n in mask.shape)
    out = mask[crop]
    for axis in range(mask.ndim):
        out = np.take(out, np.arange(0, out.shape[axis], 2), axis=axis) & np.take(
            out, np.arange(1, out.shape[axis], 2), axis=axis)
    return out


def _otsu(values: np.ndarray, nbins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=nbins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m0 / w0
        mu1 = (m0[-1] - m0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between[~np.isfinite(between)] = -1
    return float(centers[int(np.argmax(between))])


def rician_correction_factor(snr: float | np.ndarray) -> float | np.ndarray:
    r"""Koay and Basser's :math:`\xi(\theta)`: variance of a Rician variable over :math:`\sigma^2`.

    .. math:: \xi(\theta) = 2 + \theta^2 - \frac{\pi}{8} e^{-\theta^2/2}
              \left[(2+\theta^2) I_0(\theta^2/4) + \theta^2 I_1(\theta^2/4)\right]^2

    where :math:`\theta = A/\sigma` is the true signal-to-noise ratio. It is
    :math:`2 - \pi/2 \approx 0.429` at :math:`\theta = 0` (Rayleigh) and tends to 1 at high SNR.
    """
    from scipy.special import ive

    theta2 = np.square(np.asarray(snr, dtype=float))
    bracket = (2 + theta2) * ive(0, theta2 / 4) + theta2 * ive(1, theta2 / 4)
    xi = 2 + theta2 - np.pi / 8 * bracket**2
    return float(xi) if np.ndim(xi) == 0 else xi


def _koay_snr(ratio: float, *, iterations: int = 200) -> float:
    """True SNR theta from the measured mean/std ratio of Rician data (Koay-Basser fixed point)."""
    lower = np.sqrt(np.pi / (4 - np.pi))  # the ratio of pure Rayleigh data
    if ratio <= lower:
        return 0.0
    theta = ratio - lower
    for _ in range(iterations):
        xi = rician_correction_factor(theta)
        new = float(np.sqrt(max(xi * (1 + ratio**2) - 2, 0.0)))
        if abs(new - theta) < 1e-10:
            return new
        theta = new
    return theta


def estimate_noise_sigma(
    image: Image,
    *,
    distribution: Literal["gaussian", "rician"] = "gaussian",
    mask: Image | None = None,
) -> float:
    r"""Standard deviation of the noise, estimated from the image alone (wavelet MAD).

    The finest diagonal sub-band of an orthonormal Haar wavelet transform (differences along
    every axis) holds almost only noise; Donoho's robust estimate is
    :math:`\hat\sigma = \operatorname{median}(|d|) / 0.6745`.

    For ``distribution="rician"`` (magnitude MR images) the estimate is taken over the object
    (``mask``, or the bright class of an Otsu split of the wavelet approximation), where the
    measured spread :math:`\sigma_m` of Rician data is :math:`\sqrt{\xi(\theta)}\,\sigma`;
    the true SNR :math:`\theta` is solved from the object's mean over :math:`\sigma_m` with
    Koay and Basser's fixed point and :math:`\sigma = \sigma_m / \sqrt{\xi(\theta)}` is returned
    (Coupé et al. 2010). At high SNR both answers agree; at low SNR the Gaussian estimate of
    magnitude data is too small.

    Parameters
    ----------
    image
        Scalar image, 2-D or 3-D.
    distribution
        ``"gaussian"`` (CT, most images) or ``"rician"`` (magnitude MR).
    mask
        Optional region on the same grid; only 2x2(x2) blocks wholly inside it are used.

    Returns
    -------
    float
        The noise standard deviation in image units (of the underlying Gaussian channels for
        ``"rician"``).

    Raises
    ------
    ParameterError
        ``distribution`` is unknown, or the region holds no complete 2x2(x2) block.
    """
    check_scalar(image)
    if distribution not in ("gaussian", "rician"):
        msg = f"distribution must be 'gaussian' or 'rician'{did_you_mean(str(distribution), ['gaussian', 'rician'])}, got {distribution!r}"
        raise ParameterError(msg)
    if min(image.spatial_shape) < 2:
        raise ParameterError(f"estimate_noise_sigma needs at least 2 voxels along every axis, got {image.spatial_shape}")
    values = np.asarray(image.array, dtype=np.float64)
    detail, approx = _haar_finest(values)
    roi = region(image, mask)
    blocks = np.ones(detail.shape, dtype=bool) if roi is None else _block_all(roi)
    if distribution == "rician" and roi is None:
        means = approx / np.sqrt(2.0) ** values.ndim
        blocks = means > _otsu(means.ravel())
    if not blocks.any():
        raise ParameterError("estimate_noise_sigma: the mask holds no complete 2x2(x2) block of voxels")
    sigma_m = float(np.median(np.abs(detail[blocks])) / _MAD_TO_SIGMA)
    if distribution == "gaussian" or sigma_m == 0.0:
        return sigma_m
    mean = float(np.mean(approx[blocks]) / np.sqrt(2.0) ** values.ndim)
    theta = _koay_snr(mean / sigma_m)
    return float(sigma_m / np.sqrt(rician_correction_factor(theta)))


@dataclass(frozen=True)
class NoiseSpec:
    """A noise model and its level (see :data:`NOISE_KINDS` for what ``level`` means)."""

    kind: Literal["gaussian", "rician", "poisson", "saltpepper"]
    level: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}"


def parse_noise(text: str) -> NoiseSpec:
    """Read ``"gaussian:0.05"``, ``"rician:0.05"``, ``"poisson:200"`` or ``"saltpepper:0.1"``."""
    kind, sep, level_s = str(text).partition(":")
    kind = kind.strip().lower().replace("-", "").replace("_", "")
    kinds = list(NOISE_KINDS)
    if kind not in NOISE_KINDS:
        msg = f"noise {text!r}: unknown kind {kind!r}{did_you_mean(kind, kinds)}; use KIND:LEVEL with KIND one of {', '.join(kinds)}"
        raise ParameterError(msg)
    if not sep:
        raise ParameterError(f"noise {text!r}: give a level, e.g. {kind}:{'200' if kind == 'poisson' else '0.05'} ({NOISE_KINDS[kind]})")
    try:
        level = float(level_s)
    except ValueError:
        raise ParameterError(f"noise {text!r}: level {level_s!r} is not a number ({NOISE_KINDS[kind]})") from None
    bad = not np.isfinite(level) or level <= 0 or (kind == "saltpepper" and level >= 1)
    if bad:
        raise ParameterError(f"noise {text!r}: level must be {NOISE_KINDS[kind]}")
    return NoiseSpec(kind, level)  # type: ignore[arg-type]


def add_noise(image: Image, noise: NoiseSpec | str, *, seed: int | np.random.Generator = 0) -> Image:
    """Add noise of a known kind and level to a copy of ``image``.

    Parameters
    ----------
    image
        Scalar image (a clean reference).
    noise
        A :class:`NoiseSpec` or its text form ``"kind:level"``:

        * ``gaussian:s`` — add N(0, sigma^2) with sigma = s x (max - min);
        * ``rician:s`` — magnitude of (image + N1, N2), each N(0, sigma^2), sigma as above;
        * ``poisson:p`` — counts ~ Poisson(p x (x - min) / (max - min)), mapped back to image
          units (p is the expected count at the maximum: the larger, the less noise);
        * ``saltpepper:f`` — a fraction f of the voxels set to the minimum or the maximum.
    seed
        Seed or generator; the same seed gives the same noise.

    Returns
    -------
    Image
        float32 image on the same grid; ``meta["noise"]`` records the kind, the level and the
        standard deviation sigma in image units (``None`` for salt-and-pepper and Poisson).
    """
    check_scalar(image)
    spec = noise if isinstance(noise, NoiseSpec) else parse_noise(noise)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x = np.asarray(image.array, dtype=np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    span = hi - lo
    if span <= 0:
        raise ParameterError("add_noise: the image is constant, so a noise level relative to its range is undefined")
    sigma: float | None = None
    if spec.kind == "gaussian":
        sigma = spec.level * span
        out = x + rng.normal(0.0, sigma, x.shape)
    elif spec.kind == "rician":
        sigma = spec.level * span
        out = np.hypot(x + rng.normal(0.0, sigma, x.shape), rng.normal(0.0, sigma, x.shape))
    elif spec.kind == "poisson":
        counts = rng.poisson(spec.level * (x - lo) / span)
        out = counts / spec.level * span + lo
    else:
        out = x.copy()
        hit = rng.random(x.shape) < spec.level
        salt = rng.random(x.shape) < 0.5
        out[hit & salt] = hi
        out[hit & ~salt] = lo
    step = {"op": "quality.add_noise", "noise": str(spec), "sigma": sigma}
    return filter_output(image, out.astype(np.float32), step,
                         noise={"kind": spec.kind, "level": spec.level, "sigma": sigma})
