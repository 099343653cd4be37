r"""Convolutional filters of IBSI chapter 2, for features of filter response maps.

Each filter is registered in ``registry("feature_filters")`` as a function
``func(array, spacing_zyx, **params) -> ndarray`` on a (z, y, x) float array with its voxel
spacing in mm; :func:`filter_image` applies one to an :class:`~medimg.Image`. Spatial scales
are in mm where the IBSI defines them so (LoG and Gabor); kernel supports and distances are in
voxels. ``boundary`` is the IBSI padding, for every filter, 2-D and 3-D: ``"mirror"``
(symmetric, the edge voxel repeated), ``"nearest"``, ``"periodic"`` or ``"zero"``.
``dims=2`` filters each axial slice on its own (the IBSI "2D" configurations).

The definitions follow the IBSI chapter 2 reference manual (arXiv:2006.05470) and reproduce
its reference response maps (``validation/check_ibsi2.py``):

* ``mean``: the average over a cube (3-D) or square (2-D) of ``support`` voxels.
* ``log``: Laplacian of Gaussian. The IBSI kernel lives on the voxel grid: :math:`\sigma` in mm
  is converted to voxels, :math:`\sigma_v = \sigma / \Delta`, and the kernel is
  :math:`-\frac{1}{\sigma_v^2}(2\pi\sigma_v^2)^{-d/2}(d - r^2/\sigma_v^2)e^{-r^2/2\sigma_v^2}`
  (r in voxels), truncated at ``truncate`` :math:`\sigma_v` (support
  :math:`1 + 2\lfloor 4\sigma_v + 0.5\rfloor`). The response is therefore per voxel^2:
  :math:`\Delta^2` times the Laplacian in mm^-2 (``units="mm"`` gives the latter).
* ``laws``: separable Laws kernel (``"E5L5S5"``: E5 along x, L5 along y, S5 along z; the IBSI
  unit-norm kernels), convolved; rotation invariance pools (max or average) the *signed*
  responses over the 24 right-angle rotations (3-D) or the 4 in-plane rotations (2-D); with
  ``energy=True`` the energy map :math:`\frac{1}{(2\delta+1)^d}\sum |R|` over a cube of
  :math:`2\delta+1` voxels follows (``energy_distance`` :math:`\delta`).
* ``gabor``: 2-D Gabor filter :math:`\exp(-(\tilde x^2 + \gamma^2\tilde y^2)/2\sigma^2)
  \exp(i 2\pi\tilde x/\lambda)` with :math:`\sigma, \lambda` in mm; the response is the
  modulus. Computed by FFT convolution. Rotation invariance pools orientations
  :math:`\theta_0 + k\Delta\theta`; ``planes="orthogonal"`` pools the axial, coronal and
  sagittal responses together with the orientations (IBSI 3-D Gabor).
* ``wavelet``: undecimated (stationary) separable wavelet (``haar``, ``dbN``, ``coifN``,
  ``symN``; PyWavelets decomposition filters, convolved) with one low/high-pass letter per axis
  (``"LLH"``: x low, y low, z high). Level :math:`j > 1` by the *à trous* algorithm as the
  manual builds it: the image is first filtered with the level :math:`1 \dots j-1` all-low-pass
  filters, and the filters of level :math:`k+1` are those of level :math:`k` with a zero inserted
  between taps — on the kernel made odd-length first (a trailing zero), so that its centre stays
  on a tap. Rotation invariance pools (average or max) over the 24 (3-D) or 4 (2-D) right-angle
  rotations.
* ``simoncelli``: non-separable isotropic Simoncelli wavelet, defined in the Fourier domain,
  :math:`\cos(\frac{\pi}{2}\log_2(2\lVert\omega\rVert/\omega_{max}))` on
  :math:`\omega_{max}/4 \le \lVert\omega\rVert \le \omega_{max}`,
  :math:`\omega_{max} = 2^{1-j}` at level :math:`j` (normalised frequency); its band-pass
  response (real part).
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
    "simoncelli_filter",
    "LAWS_KERNELS",
    "BOUNDARIES",
    "rotations",
    "filter_margin_mm",
    "filtered_roi",
    "filter_tag",
]

#: The registry of image filters for radiomics (names: mean, log, laws, gabor, wavelet, simoncelli).
FILTERS = registry("feature_filters")

Boundary = Literal["mirror", "nearest", "periodic", "zero"]
#: IBSI boundary condition -> scipy.ndimage mode.
_MODES = {"mirror": "reflect", "nearest": "nearest", "periodic": "wrap", "zero": "constant"}
#: IBSI boundary condition -> numpy.pad mode.
_PAD = {"mirror": "symmetric", "nearest": "edge", "periodic": "wrap", "zero": "constant"}
#: The IBSI boundary conditions.
BOUNDARIES = tuple(_MODES)

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


def _pooling(pooling: str) -> None:
    if pooling not in ("max", "average"):
        raise ParameterError(f"pooling must be 'max' or 'average', got {pooling!r}")


def rotations(dims: int) -> list[tuple[tuple[int, ...], tuple[bool, ...]]]:
    """The IBSI rotation set as (axis permutation, flips) of a (z, y, x) array: the 24 proper
    right-angle rotations of the cube (3-D), or the 4 proper in-plane rotations by 0, 90, 180
    and 270 degrees (2-D). Reflections are not rotations and are not included."""
    out = []
    if dims == 3:
        for perm in itertools.permutations(range(3)):
            sign = np.linalg.det(np.eye(3)[list(perm)])
            for flips in itertools.product((False, True), repeat=3):
                if sign * (-1) ** sum(flips) > 0:
                    out.append((perm, flips))
    else:
        for perm in ((0, 1, 2), (0, 2, 1)):
            sign = 1 if perm == (0, 1, 2) else -1
            for flips in itertools.product((False, True), repeat=2):
                if sign * (-1) ** sum(flips) > 0:
                    out.append((perm, (False, *flips)))
    return out


def _pool_separable(arr: np.ndarray, chains: dict[int, list[np.ndarray]], dims: int, pooling: str,
                    mode: str) -> np.ndarray:
    """Apply a separable filter to every IBSI rotation of ``arr`` (rotated back), pool voxel-wise
    (``max`` or ``average``), without rotating the image.

    ``chains[j]`` are the odd-length 1-D kernels applied, in order, along axis ``j`` (0 = z, 1 = y,
    2 = x) of the rotated image. Rotating the image by (perm, flips), filtering and rotating
    back equals filtering the unrotated image with ``chains[j]`` along axis ``perm[j]``, each
    kernel reversed when ``flips[j]`` (exact for odd kernels and the boundary modes here, which
    are symmetric under reversal). Passes along different axes commute, so the rotations that
    share a prefix of per-axis chains share its passes, and equal kernels are computed once:
    the 24 3-D rotations of a db3 HHH wavelet cost 14 one-dimensional passes instead of 72."""
    from scipy import ndimage

    rots = rotations(dims)
    keys: dict[tuple[tuple[tuple[float, ...], ...], ...], int] = {}
    for perm, flips in rots:
        per_axis: list[tuple[tuple[float, ...], ...]] = [(), (), ()]
        for j, chain in chains.items():
            per_axis[perm[j]] = tuple(tuple((k[::-1] if flips[j] else k).tolist()) for k in chain)
        key = tuple(per_axis)
        keys[key] = keys.get(key, 0) + 1
    out: np.ndarray | None = None

    def descend(a: np.ndarray, axis: int, group: list[tuple[tuple[tuple[float, ...], ...], ...]]) -> None:
        nonlocal out
        if axis == 3:
            (key,) = group
            if out is None:
                out = a.copy() if pooling == "max" else a * keys[key]
            elif pooling == "max":
                np.maximum(out, a, out=out)
            else:
                out += a * keys[key]
            return
        by_chain: dict[tuple[tuple[float, ...], ...], list[tuple[tuple[tuple[float, ...], ...], ...]]] = {}
        for key in group:
            by_chain.setdefault(key[axis], []).append(key)
        for chain, sub in by_chain.items():
            b = a
            for k in chain:
                b = ndimage.convolve1d(b, np.asarray(k), axis=axis, mode=mode)
            descend(b, axis + 1, sub)

    descend(arr, 0, list(keys))
    assert out is not None
    return out if pooling == "max" else out / len(rots)


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
               dims: int = 3, truncate: float = 4.0, boundary: Boundary = "mirror",
               units: Literal["voxel", "mm"] = "voxel") -> np.ndarray:
    """IBSI Laplacian of Gaussian, scale ``sigma_mm`` (mm) converted to voxels per axis, kernel
    truncated at ``truncate`` sigma. ``units="voxel"`` (IBSI): per voxel^2; ``"mm"``: per mm^2."""
    from scipy import ndimage

    _dims(dims)
    if not sigma_mm > 0:
        raise ParameterError(f"sigma_mm must be > 0 mm, got {sigma_mm}")
    if units not in ("voxel", "mm"):
        raise ParameterError(f"units must be 'voxel' (IBSI) or 'mm', got {units!r}")
    arr = np.asarray(array, dtype=np.float64)
    sig = [sigma_mm / s for s in spacing_zyx]
    axes = (1, 2) if dims == 2 else (0, 1, 2)
    if dims == 2:
        sig[0] = 0.0
    mode = _mode(boundary)
    out = np.zeros_like(arr)
    for axis in axes:
        order = [0, 0, 0]
        order[axis] = 2
        term = ndimage.gaussian_filter(arr, sig, order=order, mode=mode, truncate=truncate)
        out += term / spacing_zyx[axis] ** 2 if units == "mm" else term
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
                energy: bool = True, energy_distance: int = 7, boundary: Boundary = "mirror") -> np.ndarray:
    """Laws filter: separable kernel (names x first) convolved with the image, signed response
    pooled over the IBSI rotations; with ``energy`` the mean absolute pooled response over a cube
    of ``2 * energy_distance + 1`` voxels (in-plane square when ``dims=2``)."""
    from scipy import ndimage

    _dims(dims)
    _pooling(pooling)
    names = _laws_names(kernel, dims)
    if energy_distance < 0:
        raise ParameterError(f"energy_distance must be >= 0 voxels, got {energy_distance}")
    mode = _mode(boundary)
    arr = np.asarray(array, dtype=np.float64)
    kernels = [LAWS_KERNELS[n] for n in names]  # x, y[, z]

    chains = {axis: [np.asarray(k, dtype=np.float64)] for k, axis in zip(kernels, (2, 1, 0), strict=False)}
    if rotation_invariant:
        response = _pool_separable(arr, chains, dims, pooling, mode)
    else:
        response = arr
        for axis, chain in chains.items():
            for k in chain:
                response = ndimage.convolve1d(response, k, axis=axis, mode=mode)
    if not energy:
        return response
    size = 2 * energy_distance + 1
    return ndimage.uniform_filter(np.abs(response), size=(1 if dims == 2 else size, size, size), mode=mode)


def _gabor_kernel(spacing_rc: tuple[float, float], sigma_mm: float, wavelength_mm: float, gamma: float,
                  theta: float, radius_rc: tuple[int, int]) -> np.ndarray:
    """The complex Gabor kernel on a (rows, cols) grid, orientation as in the IBSI reference
    implementation: :math:`\\tilde x = x\\cos\\theta + y\\sin\\theta`,
    :math:`\\tilde y = x\\sin\\theta - y\\cos\\theta` (y the row offset, x the column offset, mm)."""
    y = np.arange(-radius_rc[0], radius_rc[0] + 1)[:, None] * spacing_rc[0]
    x = np.arange(-radius_rc[1], radius_rc[1] + 1)[None, :] * spacing_rc[1]
    xt = np.sin(theta) * y + np.cos(theta) * x
    yt = -np.cos(theta) * y + np.sin(theta) * x
    return np.exp(-(xt**2 + gamma**2 * yt**2) / (2.0 * sigma_mm**2) + 2j * math.pi * xt / wavelength_mm)


def _pad(a: np.ndarray, widths: list[tuple[int, int]], boundary: str) -> np.ndarray:
    """Pad by ``widths`` voxels with the IBSI boundary condition."""
    return np.pad(a, widths, mode=_PAD[boundary])


def _pad_for_fft(arr: np.ndarray, axes: tuple[int, ...], boundary: str) -> tuple[np.ndarray, tuple[slice, ...]]:
    """For a filter applied by FFT (circular): ``arr`` padded by half its size along ``axes``
    with the boundary condition (not at all for ``periodic``), and the slices of the original."""
    if boundary == "periodic":
        return arr, tuple(slice(None) for _ in arr.shape)
    widths = [((n // 2, n // 2) if ax in axes else (0, 0)) for ax, n in enumerate(arr.shape)]
    return _pad(arr, widths, boundary), tuple(slice(w[0], w[0] + n) for w, n in zip(widths, arr.shape, strict=True))


@FILTERS.register("gabor")
def gabor_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, sigma_mm: float = 5.0,
                 wavelength_mm: float = 2.0, gamma: float = 1.0, theta_deg: float = 0.0,
                 rotation_invariant: bool = False, theta_step_deg: float = 45.0,
                 pooling: Literal["max", "average"] = "average",
                 planes: Literal["axial", "orthogonal"] = "axial", truncate: float = 4.0,
                 boundary: Boundary = "mirror") -> np.ndarray:
    """2-D Gabor filter modulus (``sigma_mm``, ``wavelength_mm`` in mm; ``theta_deg`` in
    degrees), by FFT convolution, kernel truncated at ``truncate`` sigma along its long axis.
    Rotation invariance pools the orientations ``theta_deg + k * theta_step_deg``;
    ``planes="orthogonal"`` pools the axial, coronal and sagittal responses as well."""
    from scipy import fft

    if not sigma_mm > 0 or not wavelength_mm > 0 or not gamma > 0:
        raise ParameterError("gabor sigma_mm, wavelength_mm and gamma must be > 0")
    if rotation_invariant and not 0 < theta_step_deg <= 180:
        raise ParameterError(f"theta_step_deg must be in (0, 180], got {theta_step_deg}")
    if planes not in ("axial", "orthogonal"):
        raise ParameterError(f"planes must be 'axial' or 'orthogonal', got {planes!r}")
    if not truncate > 0:
        raise ParameterError(f"truncate must be > 0, got {truncate}")
    _pooling(pooling)
    _mode(boundary)
    arr = np.asarray(array, dtype=np.float64)
    # The modulus at theta + 180 degrees equals the one at theta (the kernel turns into its
    # complex conjugate), so half a turn covers the IBSI full-circle orientation set.
    thetas = ([math.radians(theta_deg + t) for t in np.arange(0.0, 180.0 - 1e-9, theta_step_deg)]
              if rotation_invariant else [math.radians(theta_deg)])
    extent_mm = truncate * sigma_mm * max(1.0, 1.0 / gamma)

    pooled: np.ndarray | None = None
    n_responses = 0

    def pool(r: np.ndarray) -> None:  # running max / sum: never a stack of every response
        nonlocal pooled, n_responses
        n_responses += 1
        if pooled is None:
            pooled = np.ascontiguousarray(r)
        elif pooling == "max":
            np.maximum(pooled, r, out=pooled)
        else:
            pooled += r

    def in_plane(a: np.ndarray, sp_rc: tuple[float, float], back: tuple[int, int, int]) -> None:
        # a: (stack, rows, cols); FFT convolution of every slice with each orientation's kernel
        radius = tuple(int(math.ceil(extent_mm / s)) for s in sp_rc)
        padded = _pad(a, [(0, 0), (radius[0], radius[0]), (radius[1], radius[1])], boundary)
        # Circular convolution on the padded grid: its outputs 2r .. end do not wrap (overlap-save).
        shape = tuple(fft.next_fast_len(n) for n in padded.shape[1:])
        fa = fft.fft2(padded, s=shape, axes=(1, 2), workers=-1)
        for th in thetas:
            k = _gabor_kernel(sp_rc, sigma_mm, wavelength_mm, gamma, th, radius)
            conv = fft.ifft2(fa * fft.fft2(k, s=shape), axes=(1, 2), workers=-1)
            # output index j + 2r is voxel j of the input: the kernel centre sits at index r
            r0, r1 = 2 * radius[0], 2 * radius[1]
            pool(np.transpose(np.abs(conv[:, r0:r0 + a.shape[1], r1:r1 + a.shape[2]]), back))

    sz, sy, sx = spacing_zyx
    in_plane(arr, (sy, sx), (0, 1, 2))
    if planes == "orthogonal":
        in_plane(np.transpose(arr, (1, 0, 2)), (sz, sx), (1, 0, 2))
        in_plane(np.transpose(arr, (2, 0, 1)), (sz, sy), (1, 2, 0))
    assert pooled is not None
    return pooled if pooling == "max" else pooled / n_responses


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


def _odd(k: np.ndarray) -> np.ndarray:
    """An even-length kernel with a trailing zero (odd length: its centre is a tap)."""
    return np.append(k, 0.0) if k.size % 2 == 0 else k


def _a_trous(k: np.ndarray) -> np.ndarray:
    """The next level's kernel: a zero inserted between the taps (length 2n - 1)."""
    out = np.zeros(2 * k.size - 1)
    out[::2] = k
    return out


@FILTERS.register("wavelet")
def wavelet_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, wavelet: str = "haar",
                   response: str = "LLH", level: int = 1, dims: int = 3, rotation_invariant: bool = False,
                   pooling: Literal["max", "average"] = "average", boundary: Boundary = "mirror") -> np.ndarray:
    """Undecimated separable wavelet response ``response`` (one L/H per axis, x first) at
    ``level`` (à trous), optionally pooled over the IBSI rotations."""
    from scipy import ndimage

    _dims(dims)
    _pooling(pooling)
    response = response.upper()
    if len(response) != dims or set(response) - {"L", "H"}:
        raise ParameterError(f"wavelet response must be {dims} letters of L/H (x first), got {response!r}")
    if level < 1:
        raise ParameterError(f"wavelet level must be >= 1, got {level}")
    lo, hi = (_odd(k) for k in _wavelet_filters(wavelet))
    mode = _mode(boundary)
    axes = (2, 1, 0)[:dims]

    # per axis (x first): the low-pass of each coarser level (a trous), then the level's L or H
    pre, kernels = lo, [lo if letter == "L" else hi for letter in response]
    chains: dict[int, list[np.ndarray]] = {axis: [] for axis in axes}
    for _ in range(1, level):
        for axis in axes:
            chains[axis].append(pre)
        pre, kernels = _a_trous(pre), [_a_trous(k) for k in kernels]
    for k, axis in zip(kernels, axes, strict=True):
        chains[axis].append(k)
    arr = np.asarray(array, dtype=np.float64)
    if rotation_invariant:
        return _pool_separable(arr, chains, dims, pooling, mode)
    for axis, chain in chains.items():
        for k in chain:
            arr = ndimage.convolve1d(arr, k, axis=axis, mode=mode)
    return arr


def _simoncelli_response(shape: tuple[int, ...], level: int) -> np.ndarray:
    """The Simoncelli band-pass transfer function on an FFT grid of ``shape`` (unshifted), as
    the IBSI reference implementation samples it: axis coordinates (k - c)/c, c = (n - 1)/2."""
    from scipy import fft

    coords = [(np.arange(n, dtype=float) - (n - 1) / 2.0) / max((n - 1) / 2.0, 0.5) for n in shape]
    grids = np.meshgrid(*coords, indexing="ij", sparse=True)
    r = np.sqrt(sum(g**2 for g in grids))
    wmax = 1.0 / 2.0 ** (level - 1)
    h = np.zeros(r.shape)
    band = (r >= wmax / 4.0) & (r <= wmax)
    h[band] = np.cos(np.pi / 2.0 * np.log2(2.0 * r[band] / wmax))
    return fft.ifftshift(h)


@FILTERS.register("simoncelli")
def simoncelli_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, level: int = 1,
                      dims: int = 3, boundary: Boundary = "periodic") -> np.ndarray:
    """Non-separable Simoncelli wavelet, band ``level`` (1 = highest frequencies), real
    response; FFT-based (``periodic`` needs no padding; other boundaries pad by half the image)."""
    from scipy import fft

    _dims(dims)
    if level < 1:
        raise ParameterError(f"simoncelli level must be >= 1, got {level}")
    _mode(boundary)
    arr = np.asarray(array, dtype=np.float64)
    axes = (1, 2) if dims == 2 else (0, 1, 2)
    padded, inside = _pad_for_fft(arr, axes, boundary)
    shape = tuple(padded.shape[ax] for ax in axes)
    h = _simoncelli_response(shape, level)
    # The real part of ifft(fft(x) h) for a real x is ifft(fft(x) h_even), h_even(k) = (h(k) + h(-k))/2,
    # whose spectrum is Hermitian: computed with real FFTs (half the work), the same numbers.
    h_neg = np.roll(np.flip(h), 1, axis=tuple(range(h.ndim)))
    h_even = 0.5 * (h + h_neg)[..., : shape[-1] // 2 + 1]
    if dims == 2:
        h_even = h_even[None]
    out = fft.irfftn(fft.rfftn(padded, axes=axes, workers=-1) * h_even, s=shape, axes=axes, workers=-1)
    return out[inside]


@FILTERS.register("riesz")
def riesz_filter(array: np.ndarray, spacing_zyx: tuple[float, float, float], *, order_x: int = 1,
                 order_y: int = 0, order_z: int = 0, base: Literal["none", "log", "simoncelli"] = "none",
                 sigma_mm: float = 1.0, level: int = 1, dims: int = 3,
                 boundary: Boundary = "periodic") -> np.ndarray:
    """Riesz transform of order ``l = (order_x, order_y, order_z)`` (IBSI chapter 2), optionally
    of a LoG (``sigma_mm``) or Simoncelli (``level``) response (``base``).

    In the Fourier domain, with physical angular frequencies w (rad/mm; anisotropic voxels are
    handled) and L = |l|: ``R^l f^(w) = sqrt(L! / (l_x! l_y! l_z!)) * prod((-i w_j)^l_j) /
    |w|^L * f^(w)`` (0 at w = 0). For L = 1 these are the components of the gradient
    direction: R_x cos(w.x) = (w_x / |w|) sin(w.x); the squared transforms of one order sum to
    the image's energy (less its mean). ``dims=2`` transforms each slice (``order_z`` must be
    0). Not periodic boundaries pad by half the image, as the Simoncelli filter does.
    """
    from scipy import fft

    _dims(dims)
    _mode(boundary)
    orders = (int(order_z), int(order_y), int(order_x))
    if min(orders) < 0 or sum(orders) < 1:
        raise ParameterError(f"riesz orders must be >= 0 with a sum >= 1, got x={order_x}, y={order_y}, z={order_z}")
    if dims == 2 and orders[0]:
        raise ParameterError("riesz with dims=2 transforms each slice: order_z must be 0")
    if base == "log":
        arr = log_filter(array, spacing_zyx, sigma_mm=sigma_mm, dims=dims, boundary=boundary)
    elif base == "simoncelli":
        arr = simoncelli_filter(array, spacing_zyx, level=level, dims=dims, boundary=boundary)
    elif base == "none":
        arr = np.asarray(array, dtype=np.float64)
    else:
        raise ParameterError(f"riesz base must be 'none', 'log' or 'simoncelli', got {base!r}")
    axes = (1, 2) if dims == 2 else (0, 1, 2)
    padded, inside = _pad_for_fft(arr, axes, boundary)
    freqs = [2.0 * math.pi * fft.fftfreq(padded.shape[ax], d=float(spacing_zyx[ax])) if ax in axes
             else np.zeros(1) for ax in range(3)]
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    norm = np.sqrt(sum(g**2 for g in grids))
    total = sum(orders)
    coef = math.sqrt(math.factorial(total) / math.prod(math.factorial(o) for o in orders))
    numerator = np.ones((1, 1, 1), dtype=np.complex128)
    for g, o in zip(grids, orders, strict=True):
        if o:
            numerator = numerator * (-1j * g) ** o
    with np.errstate(divide="ignore", invalid="ignore"):
        multiplier = np.where(norm > 0, coef * numerator / norm**total, 0.0)
    out = fft.ifftn(fft.fftn(padded, axes=axes, workers=-1) * multiplier, axes=axes, workers=-1).real
    return out[inside]


#: The margin of a filter that reads the whole image (FFT-defined): no crop.
GLOBAL_SUPPORT_MM = 1.0e6


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
    if name in ("simoncelli", "riesz"):
        return GLOBAL_SUPPORT_MM
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
