"""Pure-numpy phantom pieces with known answers: shapes, masks and correlated noise.

Two layers, usable separately:

* **Shapes** — :class:`Ellipsoid` and :class:`LobulatedShape` — are implicit solids in
  physical space. ``shape.contains(points)`` tests points given in mm, shape (..., 3) in
  (x, y, z) order, so a shape can be evaluated on any grid or on points moved by a transform.
  :class:`RandomField` is a smooth random function of position (a sum of random plane waves),
  also evaluable anywhere, used for tissue variation and lesion texture.
* **Grid helpers** — :func:`grid_points_mm`, :func:`ellipsoid_mask`, :func:`lobulated_mask`,
  :func:`correlated_noise` — evaluate on an axis-aligned voxel grid and return arrays in
  (z, y, x) order. Voxel (k, j, i) has its centre at ``origin + (i*sx, j*sy, k*sz)`` mm, so a
  mask ``m`` lies on ``Image.from_geometry(m, spacing=spacing_mm_xyz, origin=origin_mm_xyz)``.

All randomness goes through an explicit ``seed`` or ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medimg.errors import ParameterError

__all__ = [
    "Ellipsoid",
    "LobulatedShape",
    "RandomField",
    "grid_points_mm",
    "ellipsoid_mask",
    "lobulated_mask",
    "correlated_noise",
    "random_rotation",
]

_SPHERE_POINTS = 4096  # quadrature points for the volume of a lobulated shape


def _vec3(value: Sequence[float] | np.ndarray, name: str, *, positive: bool = False) -> np.ndarray:
    vec = np.asarray(value, dtype=float).ravel()
    if vec.size != 3 or not np.all(np.isfinite(vec)):
        raise ParameterError(f"{name} must be 3 finite numbers in (x, y, z) order, got {value!r}")
    if positive and np.any(vec <= 0):
        raise ParameterError(f"{name} must be positive (mm), got {tuple(vec)}")
    return vec


def _shape3(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or min(shape) < 1:
        raise ParameterError(f"shape_zyx must be 3 positive integers (z, y, x), got {shape_zyx!r}")
    return shape  # type: ignore[return-value]


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, sign-fixed, det +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))[np.newaxis, :]
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors, shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5.0**0.5) * i
    rho = np.sqrt(1.0 - z * z)
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)


# ------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid in physical space.

    Parameters
    ----------
    centre_mm
        Centre (x, y, z) in mm.
    radii_mm
        Semi-axes in mm along the ellipsoid's own axes.
    rotation
        3x3 matrix whose columns are the ellipsoid's axes in physical (x, y, z) space;
        identity (axis-aligned) by default.
    """

    centre_mm: np.ndarray
    radii_mm: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre_mm", _vec3(self.centre_mm, "centre_mm"))
        object.__setattr__(self, "radii_mm", _vec3(self.radii_mm, "radii_mm", positive=True))
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=float).reshape(3, 3))

    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """Boolean array, shape ``points_mm.shape[:-1]``: which (x, y, z) mm points are inside."""
        local = (np.asarray(points_mm, dtype=float) - self.centre_mm) @ self.rotation
        return np.sum((local / self.radii_mm) ** 2, axis=-1) <= 1.0

    @property
    def max_radius_mm(self) -> float:
        """Radius (mm) of the smallest centred sphere that holds the ellipsoid."""
        return float(np.max(self.radii_mm))

    @property
    def volume_mm3(self) -> float:
        """Exact volume, 4/3 pi a b c, in mm^3."""
        return float(4.0 / 3.0 * np.pi * np.prod(self.radii_mm))

    def scaled(self, factor: float) -> Ellipsoid:
        """The ellipsoid scaled by ``factor`` about its centre (volume x factor^3)."""
        return Ellipsoid(self.centre_mm, self.radii_mm * factor, self.rotation)


@dataclass(frozen=True)
class LobulatedShape:
    """A star-shaped solid whose radius varies with direction (a lobulated lesion).

    The surface radius in the unit direction ``u`` is
    :math:`r(u) = r_0 \\left(1 + \\sum_j a_j P_{l_j}(u \\cdot d_j)\\right)`, a sum of rotated
    zonal spherical harmonics (Legendre polynomials :math:`P_l` of degree ``l_j`` about the axes
    ``d_j``). Since :math:`|P_l| \\le 1`, the radius stays within
    :math:`r_0 (1 \\pm \\sum_j |a_j|)`.

    Parameters
    ----------
    centre_mm
        Centre (x, y, z) in mm.
    radius_mm
        Base radius :math:`r_0` in mm.
    axes
        Unit vectors :math:`d_j`, shape (J, 3).
    degrees
        Legendre degrees :math:`l_j` (>= 1), shape (J,).
    amplitudes
        Relative amplitudes :math:`a_j`, shape (J,), with :math:`\\sum_j |a_j| < 1`.
    """

    centre_mm: np.ndarray
    radius_mm: float
    axes: np.ndarray
    degrees: np.ndarray
    amplitudes: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre_mm", _vec3(self.centre_mm, "centre_mm"))
        axes = np.asarray(self.axes, dtype=float).reshape(-1, 3)
        axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "degrees", np.asarray(self.degrees, dtype=int).reshape(-1))
        object.__setattr__(self, "amplitudes", np.asarray(self.amplitudes, dtype=float).reshape(-1))
        if not (len(self.axes) == len(self.degrees) == len(self.amplitudes)):
            raise ParameterError("axes, degrees and amplitudes must have the same length")
        if float(self.radius_mm) <= 0:
            raise ParameterError(f"radius_mm must be positive, got {self.radius_mm}")
        if float(np.sum(np.abs(self.amplitudes))) >= 1.0:
            raise ParameterError("sum of |amplitudes| must be < 1 so the radius stays positive")

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        centre_mm: Sequence[float] | np.ndarray,
        radius_mm: float,
        *,
        amplitude: float = 0.2,
        n_terms: int = 4,
        degrees: tuple[int, int] = (2, 5),
    ) -> LobulatedShape:
        """A random lobulated shape: ``n_terms`` harmonics of degree in ``degrees`` (inclusive)
        about random axes, with relative amplitudes that sum (in absolute value) to
        ``amplitude`` (< 1)."""
        if not 0.0 <= amplitude < 1.0:
            raise ParameterError(f"amplitude must be in [0, 1), got {amplitude}")
        axes = rng.standard_normal((n_terms, 3))
        degs = rng.integers(degrees[0], degrees[1] + 1, n_terms)
        weights = rng.uniform(0.3, 1.0, n_terms) * rng.choice([-1.0, 1.0], n_terms)
        amps = amplitude * weights / np.sum(np.abs(weights))
        return cls(np.asarray(centre_mm, dtype=float), float(radius_mm), axes, degs, amps)

    def radius_at(self, directions: np.ndarray) -> np.ndarray:
        """Surface radius (mm) along unit ``directions``, shape (..., 3) -> (...)."""
        from scipy.special import eval_legendre

        cos = np.asarray(directions, dtype=float) @ self.axes.T  # (..., J)
        terms = eval_legendre(self.degrees, np.clip(cos, -1.0, 1.0))
        return float(self.radius_mm) * (1.0 + terms @ self.amplitudes)

    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """Boolean array, shape ``points_mm.shape[:-1]``: which (x, y, z) mm points are inside."""
        d = np.asarray(points_mm, dtype=float) - self.centre_mm
        rho = np.linalg.norm(d, axis=-1)
        u = d / np.where(rho > 0, rho, 1.0)[..., np.newaxis]
        return rho <= self.radius_at(u)

    @property
    def max_radius_mm(self) -> float:
        """Upper bound (mm) of the surface radius, r0 (1 + sum |a_j|)."""
        return float(self.radius_mm) * (1.0 + float(np.sum(np.abs(self.amplitudes))))

    @property
    def volume_mm3(self) -> float:
        """Volume in mm^3, (4 pi / 3) mean(r(u)^3) over the sphere (4096-point quadrature)."""
        r = self.radius_at(_fibonacci_sphere(_SPHERE_POINTS))
        return float(4.0 / 3.0 * np.pi * np.mean(r**3))

    def scaled(self, factor: float) -> LobulatedShape:
        """The shape scaled by ``factor`` about its centre (volume x factor^3)."""
        return LobulatedShape(
            self.centre_mm, float(self.radius_mm) * factor, self.axes, self.degrees, self.amplitudes
        )


@dataclass(frozen=True)
class RandomField:
    """A smooth, stationary random function of position with mean 0 and variance 1.

    :math:`f(p) = \\sqrt{2/J} \\sum_j \\cos(k_j \\cdot p + \\varphi_j)` with random wave vectors
    :math:`k_j` (random directions, wavelengths drawn in ``wavelength_mm``) and phases: a
    random-Fourier-feature approximation of a Gaussian random field. It can be evaluated at any
    points, so the same texture follows tissue that moves.

    Parameters
    ----------
    wavevectors
        Shape (J, 3), radians per mm.
    phases
        Shape (J,), radians.
    """

    wavevectors: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        *,
        wavelength_mm: tuple[float, float] = (4.0, 10.0),
        n_waves: int = 32,
    ) -> RandomField:
        """A field whose plane waves have wavelengths uniform in ``wavelength_mm`` (mm)."""
        lo, hi = wavelength_mm
        if not 0 < lo <= hi:
            raise ParameterError(f"wavelength_mm must be 0 < low <= high (mm), got {wavelength_mm}")
        directions = rng.standard_normal((n_waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        k = 2.0 * np.pi / rng.uniform(lo, hi, n_waves)
        return cls(directions * k[:, np.newaxis], rng.uniform(0.0, 2.0 * np.pi, n_waves))

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """Field values at (x, y, z) mm points, shape (..., 3) -> (...), float64.

        The cosines are evaluated in float32 (about 5x faster); keep the points within a few
        hundred mm of the origin for phase errors below 1e-4 rad.
        """
        points = np.asarray(points_mm, dtype=np.float32)
        phase = points @ self.wavevectors.T.astype(np.float32) + self.phases.astype(np.float32)
        total = np.cos(phase).sum(axis=-1, dtype=np.float64)
        return np.sqrt(2.0 / len(self.phases)) * total


# ------------------------------------------------------------------------------ grid helpers
def grid_points_mm(
    shape_zyx: Sequence[int],
    spacing_mm_xyz: Sequence[float],
    origin_mm_xyz: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Physical (x, y, z) mm coordinates of the voxel centres of an axis-aligned grid.

    Parameters
    ----------
    shape_zyx
        Grid shape (z, y, x) in voxels.
    spacing_mm_xyz
        Voxel size (x, y, z) in mm.
    origin_mm_xyz
        Centre of voxel (0, 0, 0), (x, y, z) in mm.

    Returns
    -------
    numpy.ndarray
        Shape (z, y, x, 3), float64; the last axis is (x, y, z) in mm.
    """
    nz, ny, nx = _shape3(shape_zyx)
    sp = _vec3(spacing_mm_xyz, "spacing_mm_xyz", positive=True)
    org = _vec3(origin_mm_xyz, "origin_mm_xyz")
    out = np.empty((nz, ny, nx, 3))
    out[..., 0] = org[0] + sp[0] * np.arange(nx)[np.newaxis, np.newaxis, :]
    out[..., 1] = org[1] + sp[1] * np.arange(ny)[np.newaxis, :, np.newaxis]
    out[..., 2] = org[2] + sp[2] * np.arange(nz)[:, np.newaxis, np.newaxis]
    return out


def ellipsoid_mask(
    shape_zyx: Sequence[int],
    centre_mm_xyz: Sequence[float],
    radii_mm_xyz: Sequence[float],
    spacing_mm_xyz: Sequence[float],
    *,
    origin_mm_xyz: Sequence[float] = (0.0, 0.0, 0.0),
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean (z, y, x) mask of the voxels whose centres lie inside an ellipsoid.

    Parameters
    ----------
    shape_zyx
        Grid shape (z, y, x) in voxels.
    centre_mm_xyz
        Ellipsoid centre (x, y, z) in mm, in the grid's physical frame.
    radii_mm_xyz
        Semi-axes in mm (along x, y, z when ``rotation`` is None).
    spacing_mm_xyz
        Voxel size (x, y, z) in mm.
    origin_mm_xyz
        Centre of voxel (0, 0, 0) in mm.
    rotation
        Optional 3x3 matrix whose columns are the ellipsoid's axes.

    Returns
    -------
    numpy.ndarray
        bool, shape ``shape_zyx``. Its voxel count times the voxel volume approaches
        4/3 pi a b c (mm^3) as the voxels get small.
    """
    shape = Ellipsoid(
        np.asarray(centre_mm_xyz, float),
        np.asarray(radii_mm_xyz, float),
        np.eye(3) if rotation is None else rotation,
    )
    return shape.contains(grid_points_mm(shape_zyx, spacing_mm_xyz, origin_mm_xyz))


def lobulated_mask(
    shape_zyx: Sequence[int],
    centre_mm_xyz: Sequence[float],
    radius_mm: float,
    spacing_mm_xyz: Sequence[float],
    *,
    amplitude: float = 0.2,
    n_terms: int = 4,
    seed: int | np.random.Generator | None = 0,
    origin_mm_xyz: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Boolean (z, y, x) mask of a random lobulated solid (see :class:`LobulatedShape`).

    Parameters
    ----------
    shape_zyx
        Grid shape (z, y, x) in voxels.
    centre_mm_xyz
        Centre (x, y, z) in mm.
    radius_mm
        Base radius in mm; the surface lies within ``radius_mm * (1 +/- amplitude)``.
    spacing_mm_xyz
        Voxel size (x, y, z) in mm.
    amplitude
        Total relative amplitude of the lobulation, in [0, 1); 0 gives a sphere.
    n_terms
        Number of harmonic terms (lobulation patterns).
    seed
        Seed or generator for the random harmonics.
    origin_mm_xyz
        Centre of voxel (0, 0, 0) in mm.

    Returns
    -------
    numpy.ndarray
        bool, shape ``shape_zyx``.
    """
    shape = LobulatedShape.random(
        _rng(seed), np.asarray(centre_mm_xyz, float), radius_mm, amplitude=amplitude, n_terms=n_terms
    )
    return shape.contains(grid_points_mm(shape_zyx, spacing_mm_xyz, origin_mm_xyz))


def correlated_noise(
    shape_zyx: Sequence[int],
    spacing_mm_xyz: Sequence[float],
    *,
    correlation_mm: float | Sequence[float] = 2.0,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Spatially correlated Gaussian noise with mean 0 and standard deviation 1.

    White Gaussian noise filtered by a Gaussian kernel of standard deviation ``correlation_mm``
    (one value, or (x, y, z) values; 0 leaves that axis uncorrelated), then rescaled to unit
    sample standard deviation.

    Parameters
    ----------
    shape_zyx
        Grid shape (z, y, x) in voxels.
    spacing_mm_xyz
        Voxel size (x, y, z) in mm.
    correlation_mm
        Kernel standard deviation in mm (scalar or per axis (x, y, z)).
    seed
        Seed or generator.

    Returns
    -------
    numpy.ndarray
        float64, shape ``shape_zyx``, zero mean and unit standard deviation (sample values).
    """
    from scipy.ndimage import gaussian_filter

    shape = _shape3(shape_zyx)
    sp = _vec3(spacing_mm_xyz, "spacing_mm_xyz", positive=True)
    corr = np.broadcast_to(np.asarray(correlation_mm, dtype=float), (3,))
    if np.any(corr < 0):
        raise ParameterError(f"correlation_mm must be >= 0 (mm), got {correlation_mm!r}")
    noise = _rng(seed).standard_normal(shape)
    sigma_vox = (corr / sp)[::-1]  # (x, y, z) mm -> (z, y, x) voxels
    if np.any(sigma_vox > 0):
        noise = gaussian_filter(noise, sigma=tuple(sigma_vox), mode="wrap")
    noise -= noise.mean()
    std = noise.std()
    return noise / std if std > 0 else noise
