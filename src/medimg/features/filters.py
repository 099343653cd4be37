r"""Convolutional filters of IBSI chapter 2, for features of filter response maps.

Each filter is registered in ``registry("feature_filters")`` as a function
``func(array, spacing_zyx, **params) -> ndarray`` on a (z, y, x) float array with its voxel
spacing in mm; :func:`filter_image` applies one to an :class:`~medimg.Image`. Spatial parameters
are in mm where the IBSI defines them so (LoG and Gabor scales); kernel supports are in voxels.
``boundary`` is the IBSI padding: ``"mirror"`` (symmetric, edge repeated), ``"nearest"``,
``"periodic"`` or ``"zero"``.

* ``mean``: the average over a cube (3-D) or square (2-D, per slice) of ``support`` voxels.
* ``log``: Laplacian of Gaussian :math:`\nabla^2 (G_\sigma * f)` with :math:`\sigma` in mm,
  derivatives in mm (image units / mm^2), Gaussian truncated at 4 :math:`\sigma`; 2-D (per slice)
  or 3-D.
* ``laws``: separable Laws kernel (e.g. ``"L5E5E5"``: L5 along x, E5 along y, E5 along z; the
  IBSI unit-norm kernels L3 E3 S3 L5 E5 S5 W5 R5), optionally pooled over the 24 (3-D) or 8 (2-D)
  right-angle rotations, then the energy map: mean of the absolute response in a cube of
  :math:`2\delta+1` voxels.
* ``gabor``: 2-D Gabor filter per slice, :math:`g = \exp(-(\tilde x^2 + \gamma^2\tilde y^2)
  /(2\sigma^2))\exp(i 2\pi\tilde x/\lambda)` with :math:`\sigma, \lambda` in mm and orientation
  :math:`\theta`; the response is the modulus. Rotation invariance pools over orientations
  :math:`\theta = 0, \Delta\theta, \dots < \pi`; ``planes="orthogonal"`` averages the responses in
  the three orthogonal planes.
* ``wavelet``: undecimated separable wavelet (Haar, Daubechies ``dbN``, Coiflet ``coifN``, from
  PyWavelets' decomposition filters) with one low/high-pass choice per axis (``"LLH"``: x low,
  y low, z high), at ``level`` (à trous: filters dilated by :math:`2^{level-1}` and applied to the
  previous level's all-low-pass image), optionally averaged over the 24 right-angle rotations.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, Literal

import numpy as np

from medimg.core.image import Image
from medimg.core.registry import registry
from medimg.errors import ParameterError

__all__ = [
    "FILTERS",
    "filter_image",
    "mean_filter",
    "log_filter",
    "laws_filter",
    "gabor_filter",
    "wavelet_filter",
    "LAWS_KERNELS",
    "filter_margin_mm",
    "filtered_roi",
]

#: The registry of image filters for radiomics (names: mean, log, laws, gabor, wavelet).
FILTERS = registry("feature_filters")

Boundary = Literal["mirror", "nearest", "periodic", "zero"]
_MODES = {"mirror": "reflect", "nearest": "nearest", "periodic": "wrap", "zero": "constant"}

_S6, _S2, _S70, _S10 = math.sqrt(6), math.sqrt(2), math.sqrt(70), math.sqrt(10)
#: The IBSI chapter 2 Laws kernels (unit norm).
LAWS_KERNELS: dict[str, np.ndarray] = {
    "L3": np.array([1.0, 2.0, 1.0]) / _S6,
    "E3": np.array([-1.0, 0.0, 1.0]) / _S2,
    "S3": np.array([-1.0, 2.0, -1.0]) / _S6,
    "L5": np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / _S70,
    "E5": np.array([-1.0, -2.0, 0.0, 2.0, 1.0]) / _S10,
    "S5": np.array([-1.0, 0.0, 2.0, 0.0, -1.0]) / _S6,
    "W5": np.array([-1.0, 2.0, 0.0, -2.0, 1.0]) / _S10,
    "R5": np.array([1.0, -4.0, 6.0, -4.0, 1.0]) / _S70,
}


def _mode(boundary: str) -> str:
    if boundary not in _MODES:
        raise ParameterError(f"boundary must be one of {', '.join(_MODES)}, got {boundary!r}")
    return _MODES[boundary]


def _dims(dims: int) -> None:
    if dims not in (2, 3):
        raise ParameterError(f"dims must be 2 (per slice) or 3, got {dims}")


def _rotations(ndim_rot: int) -> list[tuple[tuple[int, ...], tuple[bool, ...]]]:
    """Right-angle rotations as (axis permutation, flips) of a (z, y, x) array: 24 proper
    rotations in 3-D, or the 8 of the in-plane square (dihedral group) in 2-D."""
    out = []
    if ndim_rot == 3:
        for perm in itertools.permutations(range(3)):
            sign = np.linalg.det(np.eye(3)[list(perm)])
            for flips in itertools.product((False, True), repeat=3):
                det = sign * (-1) ** sum(flips)
                if det > 0:
                    out.append((perm, flips))
    else:
        for perm in ((0, 1, 2), (0, 2, 1)):
            for flips in itertools.product((False, True), repeat=2):
                out.append((perm, (False, *flips)))
    return out


def _rotate(a: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]) -> np.ndarray:
    out = np.transpose(a, perm)
    for axis, f in enumerate(flips):
        if f:
            out = np.flip(out, axis)
    return out


def _unrotate(a: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]) -> np.ndarray:
    for axis, f in enumerate(flips):
        if f:
            a = np.flip(a, axis)
    return np.transpose(a, np.argsort(perm))


@FILTERS.register("mean")
def mean_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, support: int = 3,
                dims: int = 3, boundary: Boundary = "mirror") -> np.ndarray:
    """IBSI mean filter: average over ``support`` voxels per axis (odd), in-plane only when ``dims=2``."""
    from scipy import ndimage

    _dims(dims)
    if support < 1 or support % 2 == 0:
        raise ParameterError(f"mean filter support must be an odd number of voxels >= 1, got {support}")
    size = (1 if dims == 2 else support, support, support)
    return ndimage.uniform_filter(np.asarray(array, dtype=np.float64), size=size, mode=_mode(boundary))


@FILTERS.register("log")
def log_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, sigma_mm: float = 1.0,
               dims: int = 3, truncate: float = 4.0, boundary: Boundary = "mirror") -> np.ndarray:
    """Laplacian of Gaussian, scale ``sigma_mm`` (mm), derivatives per mm^2."""
    from scipy import ndimage

    _dims(dims)
    if not sigma_mm > 0:
        raise ParameterError(f"sigma_mm must be > 0 mm, got {sigma_mm}")
    arr = np.asarray(array, dtype=np.float64)
    sig = [sigma_mm / s for s in spacing_zyx]
    axes = (1, 2) if dims == 2 else (0, 1, 2)
    if dims == 2:
        sig[0] = 0.0
    out = np.zeros_like(arr)
    for axis in axes:
        order = [0, 0, 0]
        order[axis] = 2
        out += ndimage.gaussian_filter(arr, sig, order=order, mode=_mode(boundary), truncate=truncate) / (
            spacing_zyx[axis] ** 2)
    return out


def _laws_names(kernel: str, dims: int) -> list[str]:
    names = re.findall(r"[LESWR][35]", kernel.upper())
    if "".join(names) != kernel.upper() or len(names) != dims or any(n not in LAWS_KERNELS for n in names):
        msg = (f"laws kernel {kernel!r}: expected {dims} names of {', '.join(LAWS_KERNELS)} "
               f"(x first), e.g. {'L5E5' if dims == 2 else 'L5E5E5'}")
        raise ParameterError(msg)
    return names


@FILTERS.register("laws")
def laws_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, kernel: str = "L5E5E5",
                dims: int = 3, rotation_invariant: bool = True, pooling: Literal["max", "average"] = "max",
                energy_distance: int = 7, boundary: Boundary = "mirror") -> np.ndarray:
    """Laws texture energy: separable kernel (x first), rotation pooling, then the mean absolute
    response over a cube of ``2 * energy_distance + 1`` voxels (in-plane square when ``dims=2``)."""
    from scipy import ndimage

    _dims(dims)
    names = _laws_names(kernel, dims)
    if energy_distance < 0:
        raise ParameterError(f"energy_distance must be >= 0 voxels, got {energy_distance}")
    mode = _mode(boundary)
    arr = np.asarray(array, dtype=np.float64)
    kernels = [LAWS_KERNELS[n] for n in names]  # x, y[, z]

    def apply(a: np.ndarray) -> np.ndarray:
        out = a
        for k, axis in zip(kernels, (2, 1, 0), strict=False):
            out = ndimage.convolve1d(out, k, axis=axis, mode=mode)
        return out

    if rotation_invariant:
        rots = _rotations(dims)
        responses = [_unrotate(apply(_rotate(arr, p, f)), p, f) for p, f in rots]
        stack = np.stack(responses)
        response = stack.max(axis=0) if pooling == "max" else stack.mean(axis=0)
    else:
        response = apply(arr)
    size = 2 * energy_distance + 1
    return ndimage.uniform_filter(np.abs(response), size=(1 if dims == 2 else size, size, size), mode=mode)


def _gabor_kernel(spacing_yx: tuple[float, float], sigma_mm: float, wavelength_mm: float, gamma: float,
                  theta: float, truncate: float) -> np.ndarray:
    extent = truncate * sigma_mm * max(1.0, 1.0 / gamma)
    ry, rx = (int(math.ceil(extent / s)) for s in spacing_yx)
    y = np.arange(-ry, ry + 1)[:, None] * spacing_yx[0]
    x = np.arange(-rx, rx + 1)[None, :] * spacing_yx[1]
    xt = x * math.cos(theta) + y * math.sin(theta)
    yt = -x * math.sin(theta) + y * math.cos(theta)
    return np.exp(-(xt**2 + gamma**2 * yt**2) / (2.0 * sigma_mm**2)) * np.exp(2j * math.pi * xt / wavelength_mm)


@FILTERS.register("gabor")
def gabor_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, sigma_mm: float = 5.0,
                 wavelength_mm: float = 2.0, gamma: float = 1.0, theta_deg: float = 0.0,
                 rotation_invariant: bool = False, theta_step_deg: float = 45.0,
                 pooling: Literal["max", "average"] = "average",
                 planes: Literal["axial", "orthogonal"] = "axial", truncate: float = 4.0,
                 boundary: Boundary = "mirror") -> np.ndarray:
    """2-D Gabor filter modulus per slice (``sigma_mm``, ``wavelength_mm`` in mm; orientation in
    degrees); rotation invariance pools orientations ``0, step, ... < 180``; ``orthogonal`` planes
    averages the axial, coronal and sagittal responses."""
    from scipy import ndimage

    if not sigma_mm > 0 or not wavelength_mm > 0 or not gamma > 0:
        raise ParameterError("gabor sigma_mm, wavelength_mm and gamma must be > 0")
    if rotation_invariant and not 0 < theta_step_deg <= 180:
        raise ParameterError(f"theta_step_deg must be in (0, 180], got {theta_step_deg}")
    mode = _mode(boundary)
    arr = np.asarray(array, dtype=np.float64)
    thetas = (np.deg2rad(np.arange(0.0, 180.0 - 1e-9, theta_step_deg)) if rotation_invariant
              else [math.radians(theta_deg)])

    def in_plane(a: np.ndarray, sp_yx: tuple[float, float]) -> np.ndarray:
        responses = []
        for th in thetas:
            k = _gabor_kernel(sp_yx, sigma_mm, wavelength_mm, gamma, th, truncate)[None]
            re_part = ndimage.convolve(a, k.real, mode=mode)
            im_part = ndimage.convolve(a, k.imag, mode=mode)
            responses.append(np.hypot(re_part, im_part))
        stack = np.stack(responses)
        return stack.max(axis=0) if pooling == "max" else stack.mean(axis=0)

    sz, sy, sx = spacing_zyx
    axial = in_plane(arr, (sy, sx))
    if planes == "axial":
        return axial
    coronal = np.transpose(in_plane(np.transpose(arr, (1, 0, 2)), (sz, sx)), (1, 0, 2))
    sagittal = np.transpose(in_plane(np.transpose(arr, (2, 0, 1)), (sz, sy)), (1, 2, 0))
    return (axial + coronal + sagittal) / 3.0


def _wavelet_filters(wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    from medimg.core.optional import require

    pywt = require("pywt", extra="all")
    if not re.fullmatch(r"haar|db\d+|coif\d+|sym\d+", wavelet):
        raise ParameterError(f"wavelet must be haar, dbN, coifN or symN, got {wavelet!r}")
    try:
        w = pywt.Wavelet(wavelet)
    except ValueError as err:
        raise ParameterError(f"unknown wavelet {wavelet!r}: {err}") from err
    return np.asarray(w.dec_lo, dtype=np.float64), np.asarray(w.dec_hi, dtype=np.float64)


def _dilate(k: np.ndarray, level: int) -> np.ndarray:
    if level == 1:
        return k
    step = 2 ** (level - 1)
    out = np.zeros((k.size - 1) * step + 1)
    out[::step] = k
    return out


@FILTERS.register("wavelet")
def wavelet_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, wavelet: str = "haar",
                   response: str = "LLH", level: int = 1, dims: int = 3, rotation_invariant: bool = False,
                   boundary: Boundary = "mirror") -> np.ndarray:
    """Undecimated separable wavelet response ``response`` (one L/H per axis, x first) at ``level``."""
    from scipy import ndimage

    _dims(dims)
    response = response.upper()
    if len(response) != dims or set(response) - {"L", "H"}:
        raise ParameterError(f"wavelet response must be {dims} letters of L/H (x first), got {response!r}")
    if level < 1:
        raise ParameterError(f"wavelet level must be >= 1, got {level}")
    lo, hi = _wavelet_filters(wavelet)
    mode = _mode(boundary)
    axes = (2, 1, 0)[:dims]

    def apply(a: np.ndarray) -> np.ndarray:
        approx = a
        for lev in range(1, level):
            lo_d = _dilate(lo, lev)
            for axis in axes:
                approx = ndimage.correlate1d(approx, lo_d, axis=axis, mode=mode)
        out = approx
        for letter, axis in zip(response, axes, strict=True):
            out = ndimage.correlate1d(out, _dilate(lo if letter == "L" else hi, level), axis=axis, mode=mode)
        return out

    arr = np.asarray(array, dtype=np.float64)
    if not rotation_invariant:
        return apply(arr)
    rots = _rotations(dims)
    return np.mean([_unrotate(apply(_rotate(arr, p, f)), p, f) for p, f in rots], axis=0)


def _support_mm(name: str, params: dict[str, Any], spacing_zyx: tuple[float, float, float]) -> float:
    """Radius (mm) of the neighbourhood a filter reads, so that a crop keeps exact values."""
    smax = max(spacing_zyx)
    if name == "mean":
        return (int(params.get("support", 3)) // 2) * smax
    if name == "log":
        return float(params.get("truncate", 4.0)) * float(params.get("sigma_mm", 1.0)) + smax
    if name == "laws":
        size = max(LAWS_KERNELS[n].size for n in re.findall(r"[LESWR][35]", str(params.get("kernel", "L5E5E5")).upper()) or ["L5"])
        return (size // 2 + int(params.get("energy_distance", 7))) * smax
    if name == "gabor":
        gamma = float(params.get("gamma", 1.0))
        return float(params.get("truncate", 4.0)) * float(params.get("sigma_mm", 5.0)) * max(1.0, 1.0 / gamma) + smax
    if name == "wavelet":
        lo, _hi = _wavelet_filters(str(params.get("wavelet", "haar")))
        level = int(params.get("level", 1))
        return (lo.size * (2**level)) * smax
    return 0.0


def filter_margin_mm(config: Any, spacing_zyx: tuple[float, float, float]) -> float | None:
    """The margin (mm) :func:`~medimg.features.prepare_roi` must keep for ``config.filters``
    (None when there are no filters: the local-intensity default applies)."""
    from medimg.features.processing import SPHERE_RADIUS_MM

    if not config.filters:
        return None
    return max([SPHERE_RADIUS_MM] + [_support_mm(f.name, f.params, spacing_zyx) for f in config.filters])


def filter_tag(filt: Any) -> str:
    """Column prefix of a filter's features: its ``label``, or name and parameters."""
    if filt.label:
        return str(filt.label)
    parts = [filt.name] + [f"{k}{v}" for k, v in sorted(filt.params.items())]
    return re.sub(r"[^A-Za-z0-9_]+", "", "_".join(str(p) for p in parts).replace(".", "p"))


def filtered_roi(roi: Any, filt: Any) -> tuple[Any, str]:
    """A copy of ``roi`` whose intensities are the response of filter ``filt`` (a FilterConfig);
    the response is discretised with a fixed bin number (the config's ``n_bins``)."""
    from dataclasses import replace

    from medimg.features.processing import discretise

    entry = FILTERS.get(filt.name)
    params = entry.validate(filt.params)
    response = entry.func(roi.intensity, roi.spacing_zyx, **params)
    values = response[roi.int_mask]
    n_bins = int(roi.discretisation.get("n_bins", 32))
    lv, n_levels = discretise(values, method="fixed_bin_number", n_bins=n_bins)
    levels = np.zeros(response.shape, dtype=np.int32)
    levels[roi.int_mask] = lv
    new = replace(roi, intensity=response, levels=levels, n_levels=n_levels, value_range=None,
                  discretisation={"method": "fixed_bin_number", "n_bins": n_bins, "bin_width": None,
                                  "lower_bound": None}, _cache={})
    new._cache["values"] = values
    new._cache["level_values"] = lv
    return new, filter_tag(filt)


def filter_image(image: Image, name: str, /, **params: Any) -> Image:
    """Apply the registered filter ``name`` to a scalar 3-D (or 2-D) ``image``; float64 result on
    the same grid. Parameters are validated (unknown ones get a did-you-mean)."""
    entry = FILTERS.get(name)
    params = entry.validate(params)
    arr = np.asarray(image.array, dtype=np.float64)
    spacing = tuple(float(v) for v in np.asarray(image.spacing)[::-1])
    if image.spatial_ndim == 2:
        out = entry.func(arr[None], spacing, **params)[0]
    else:
        out = entry.func(arr, spacing, **params)
    return image.with_array(out)
