"""Point-based registration: landmarks (rigid / similarity / affine least squares) and ICP.

Conventions, as in ITK and :class:`medimg.registration.transform.Transform`: points are
``(N, 3)`` float arrays in LPS millimetres, and a fitted transform maps *fixed* points onto
*moving* points (``moving ~= T(fixed)``). Every result carries that map as a 4x4 homogeneous
matrix (``result.matrix``) and as a :class:`Transform` (``result.transform``), which can be
saved as an ITK ``.tfm``/``.h5`` and composed with intensity registrations.

Landmarks
    :func:`register_landmarks` solves the least-squares problem in closed form: Horn/Umeyama
    (SVD of the cross-covariance) for rigid and similarity, with the reflection guard (a
    determinant -1 solution is replaced by the best proper rotation), and ordinary linear least
    squares for affine. It returns the fiducial registration error (FRE, per point and RMS);
    :func:`target_registration_error` measures a transform on held-out target pairs (TRE).

ICP
    :func:`icp` aligns a fixed point cloud to a moving one (iterative closest point) with a
    KD-tree (:class:`scipy.spatial.cKDTree`) built once on the moving cloud. ``"point-to-point"``
    solves each step with the landmark solver, ``"point-to-plane"`` with the linearised
    least-squares step of Chen and Medioni / Low (2004) against the moving cloud's normals
    (local PCA, or the marching-cubes mesh normals of :func:`surface_points`). Outliers are
    rejected by a distance threshold (``max_distance_mm``) and/or by trimming (only the
    ``trim_fraction`` closest pairs count, trimmed ICP, Chetverikov et al. 2002).
    :func:`register_surfaces` extracts surfaces from two masks and runs ICP on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medimg.errors import ParameterError

if TYPE_CHECKING:
    from medimg.core.image import Image
    from medimg.registration.transform import Transform

__all__ = [
    "LandmarkResult",
    "TargetError",
    "ICPResult",
    "register_landmarks",
    "target_registration_error",
    "apply_matrix",
    "estimate_normals",
    "surface_points",
    "icp",
    "register_surfaces",
]

LandmarkKind = Literal["rigid", "similarity", "affine"]
ICPMethod = Literal["point-to-point", "point-to-plane"]


# --------------------------------------------------------------------------- helpers
def _points(points: Any, name: str, *, min_count: int = 1) -> np.ndarray:
    """``points`` as a finite (N, 3) float64 array, or a ParameterError naming ``name``."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        msg = f"{name} must be an (N, 3) array of LPS points in mm, got shape {arr.shape}"
        raise ParameterError(msg)
    if arr.shape[0] < min_count:
        msg = f"{name} needs at least {min_count} points, got {arr.shape[0]}"
        raise ParameterError(msg)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} holds non-finite coordinates (NaN or inf)")
    return arr


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous matrix to (N, 3) points (mm); returns (N, 3) points (mm)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


def _homogeneous(linear: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = translation
    return out


def _to_transform(matrix: np.ndarray) -> Transform:
    from medimg.registration.transform import Transform

    return Transform.from_matrix(matrix)


def _map_points(transform: Any, points: np.ndarray) -> np.ndarray:
    """Map points with a 4x4 matrix, a result of this module, or anything with
    ``transform_points`` (a :class:`Transform`)."""
    if hasattr(transform, "transform_points"):
        return np.asarray(transform.transform_points(points), dtype=np.float64)
    m = np.asarray(transform, dtype=np.float64)
    if m.shape != (4, 4):
        msg = f"transform must be a Transform, a registration result or a 4x4 matrix, got shape {m.shape}"
        raise ParameterError(msg)
    return apply_matrix(m, points)


def _rotation_from_vector(omega: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``omega`` (axis * angle in rad), Rodrigues."""
    theta = float(np.linalg.norm(omega))
    if theta < 1e-15:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


# --------------------------------------------------------------------------- landmarks
@dataclass(frozen=True)
class LandmarkResult:
    """A landmark fit: ``matrix`` (4x4) maps fixed LPS mm to moving LPS mm.

    ``fre_mm`` is the fiducial registration error of each landmark pair (mm), ``fre_rms_mm``
    their root mean square; ``scale`` the isotropic scale (1 for rigid, None for affine).
    """

    matrix: np.ndarray
    kind: str
    fre_mm: np.ndarray
    fre_rms_mm: float
    scale: float | None

    @property
    def transform(self) -> Transform:
        """The fit as a :class:`~medimg.registration.transform.Transform` (fixed -> moving)."""
        return _to_transform(self.matrix)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) fixed points (mm) to moving space (mm)."""
        return apply_matrix(self.matrix, _points(points, "points"))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (matrix as nested lists, FRE in mm)."""
        return {"kind": self.kind, "matrix": self.matrix.tolist(), "scale": self.scale,
                "fre_rms_mm": self.fre_rms_mm, "fre_mm": self.fre_mm.tolist()}


def _umeyama(fixed: np.ndarray, moving: np.ndarray, weights: np.ndarray | None,
             similarity: bool) -> tuple[np.ndarray, float]:
    """Least-squares rotation (+ isotropic scale) and translation with moving ~= s R fixed + t."""
    w = np.full(len(fixed), 1.0 / len(fixed)) if weights is None else weights / weights.sum()
    mu_f = w @ fixed
    mu_m = w @ moving
    f0 = fixed - mu_f
    m0 = moving - mu_m
    cov = (m0 * w[:, None]).T @ f0  # sum_i w_i m_i f_i^T
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # reflection guard: nearest proper rotation
        d[2] = -1.0
    rot = (u * d) @ vt
    scale = 1.0
    if similarity:
        var_f = float(w @ np.sum(f0 * f0, axis=1))
        if var_f <= 0:
            raise ParameterError("fixed landmarks are all at one point: no scale can be fitted")
        scale = float((s * d).sum() / var_f)
    t = mu_m - scale * rot @ mu_f
    return _homogeneous(scale * rot, t), scale


def _fit(fixed: np.ndarray, moving: np.ndarray, kind: str,
         weights: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
    if kind in ("rigid", "similarity"):
        return _umeyama(fixed, moving, weights, kind == "similarity")
    if kind == "affine":
        a = np.hstack([fixed, np.ones((len(fixed), 1))])
        b = moving
        if weights is not None:
            sw = np.sqrt(weights / weights.sum())[:, None]
            a, b = a * sw, b * sw
        sol, _res, rank, _sv = np.linalg.lstsq(a, b, rcond=None)
        if rank < 4:
            raise ParameterError("affine landmark fit needs at least 4 landmarks not all in one plane")
        out = np.eye(4)
        out[:3, :] = sol.T
        return out, None
    from medimg.errors import UnknownNameError

    raise UnknownNameError("landmark transform kind", kind, ["rigid", "similarity", "affine"])


def register_landmarks(fixed_points: np.ndarray, moving_points: np.ndarray, *,
                       kind: LandmarkKind = "rigid",
                       weights: Sequence[float] | np.ndarray | None = None) -> LandmarkResult:
    """Least-squares landmark registration; the result maps fixed points (LPS mm) onto the
    corresponding moving points (LPS mm).

    ``kind``: ``"rigid"`` (rotation + translation), ``"similarity"`` (and an isotropic scale;
    both by Horn/Umeyama with the reflection guard) or ``"affine"`` (12 parameters by linear
    least squares). Rigid needs 3 non-collinear pairs, affine 4 non-coplanar ones. ``weights``
    (one per pair, >= 0) weight the squared residuals. Returns the matrix and the fiducial
    registration error per pair and RMS (mm).
    """
    min_count = 4 if kind == "affine" else 3
    fixed = _points(fixed_points, "fixed_points", min_count=min_count)
    moving = _points(moving_points, "moving_points", min_count=min_count)
    if fixed.shape != moving.shape:
        msg = f"fixed_points and moving_points must pair up, got {len(fixed)} and {len(moving)} points"
        raise ParameterError(msg)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(fixed),) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise ParameterError(f"weights must be {len(fixed)} finite values >= 0, not all zero")
    if kind in ("rigid", "similarity"):
        spread = np.linalg.svd(fixed - fixed.mean(axis=0), compute_uv=False)
        if spread[1] <= 1e-9 * max(spread[0], 1e-12):
            raise ParameterError(f"{kind} landmark fit needs 3 landmarks not all on one line")
    matrix, scale = _fit(fixed, moving, kind, w)
    fre = np.linalg.norm(apply_matrix(matrix, fixed) - moving, axis=1)
    return LandmarkResult(matrix=matrix, kind=kind, fre_mm=fre,
                          fre_rms_mm=float(np.sqrt(np.mean(fre**2))), scale=scale)


@dataclass(frozen=True)
class TargetError:
    """Target registration error of held-out point pairs (mm)."""

    per_point_mm: np.ndarray
    rms_mm: float
    mean_mm: float
    max_mm: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"rms_mm": self.rms_mm, "mean_mm": self.mean_mm, "max_mm": self.max_mm,
                "per_point_mm": self.per_point_mm.tolist()}


def target_registration_error(transform: Any, fixed_targets: np.ndarray,
                              moving_targets: np.ndarray) -> TargetError:
    """TRE: distance (mm) between ``transform`` applied to each fixed target and its true
    moving position. ``transform``: a :class:`Transform`, a result of this module or a 4x4
    matrix (fixed -> moving, LPS mm)."""
    fixed = _points(fixed_targets, "fixed_targets")
    moving = _points(moving_targets, "moving_targets")
    if fixed.shape != moving.shape:
        msg = f"fixed_targets and moving_targets must pair up, got {len(fixed)} and {len(moving)} points"
        raise ParameterError(msg)
    err = np.linalg.norm(_map_points(transform, fixed) - moving, axis=1)
    return TargetError(per_point_mm=err, rms_mm=float(np.sqrt(np.mean(err**2))),
                       mean_mm=float(err.mean()), max_mm=float(err.max()))


# --------------------------------------------------------------------------- normals and surfaces
def _knn(points: np.ndarray, k: int, tree: Any) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices (N, k) of each point's ``k`` nearest points in ``tree`` (itself
    included), queried in the tree's leaf order (spatially coherent: faster)."""
    order = tree.indices
    d_sorted, idx_sorted = tree.query(points[order], k=k)
    dist = np.empty_like(d_sorted)
    idx = np.empty_like(idx_sorted)
    dist[order] = d_sorted
    idx[order] = idx_sorted
    return dist, idx


def _smallest_eigenvectors(cxx: np.ndarray, cyy: np.ndarray, czz: np.ndarray, cxy: np.ndarray,
                           cxz: np.ndarray, cyz: np.ndarray) -> np.ndarray:
    """Unit eigenvectors (N, 3) of the smallest eigenvalue of N symmetric 3x3 matrices given by
    their six entries, in closed form: the eigenvalue by the trigonometric solution of the
    characteristic cubic (Smith 1961), the eigenvector as the largest cross product of two rows
    of ``A - lambda I``. Where that is ill-conditioned (the product of the smallest
    eigenvalue's distances to the other two below 1e-4 of the squared spread of the spectrum:
    nearly repeated smallest eigenvalues, or all equal), ``numpy.linalg.eigh`` decides for
    those matrices. Agrees with ``eigh`` to about 1e-12 elsewhere (tested to 1e-10)."""
    q = (cxx + cyy + czz) / 3.0
    a, b, c = cxx - q, cyy - q, czz - q
    p1 = cxy * cxy + cxz * cxz + cyz * cyz
    p = np.sqrt((a * a + b * b + c * c + 2.0 * p1) / 6.0)
    safe = np.where(p > 0, p, 1.0)
    # det(A - q I) / p^3 / 2 = cos(3 phi)
    det = a * (b * c - cyz * cyz) - cxy * (cxy * c - cyz * cxz) + cxz * (cxy * cyz - b * cxz)
    r = np.clip(det / (2.0 * safe**3), -1.0, 1.0)
    phi = np.arccos(r) / 3.0
    lam = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)  # the smallest root
    # rows of A - lam I: r0 = (a0, cxy, cxz), r1 = (cxy, a1, cyz), r2 = (cxz, cyz, a2)
    a0, a1, a2 = cxx - lam, cyy - lam, czz - lam
    crosses = (  # r0 x r1, r0 x r2, r1 x r2
        (cxy * cyz - cxz * a1, cxz * cxy - a0 * cyz, a0 * a1 - cxy * cxy),
        (cxy * a2 - cxz * cyz, cxz * cxz - a0 * a2, a0 * cyz - cxy * cxz),
        (a1 * a2 - cyz * cyz, cyz * cxz - cxy * a2, cxy * cyz - a1 * cxz),
    )
    norms2 = [u * u + v * v + w * w for u, v, w in crosses]
    use1 = norms2[1] > norms2[0]
    vx = np.where(use1, crosses[1][0], crosses[0][0])
    vy = np.where(use1, crosses[1][1], crosses[0][1])
    vz = np.where(use1, crosses[1][2], crosses[0][2])
    norm2 = np.maximum(norms2[0], norms2[1])
    use2 = norms2[2] > norm2
    vx = np.where(use2, crosses[2][0], vx)
    vy = np.where(use2, crosses[2][1], vy)
    vz = np.where(use2, crosses[2][2], vz)
    norm2 = np.maximum(norm2, norms2[2])
    # |cross|^2 = ((l1 - lam)(l2 - lam))^2 (scaled) for the two other eigenvalues; compare it
    # with the spread of the spectrum: a small value means nearly repeated smallest eigenvalues
    spread2 = (3.0 * p) ** 2
    bad = ~(norm2 > 1e-8 * spread2 * spread2) | ~(p > 0)
    inv = 1.0 / np.sqrt(np.where(bad, 1.0, norm2))
    vec = np.stack([vx * inv, vy * inv, vz * inv], axis=1)
    if np.any(bad):
        sel = np.flatnonzero(bad)
        cov = np.empty((len(sel), 3, 3))
        cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2] = cxx[sel], cyy[sel], czz[sel]
        cov[:, 0, 1] = cov[:, 1, 0] = cxy[sel]
        cov[:, 0, 2] = cov[:, 2, 0] = cxz[sel]
        cov[:, 1, 2] = cov[:, 2, 1] = cyz[sel]
        vec[sel] = np.linalg.eigh(cov)[1][:, :, 0]
    return vec


def _normals_from_neighbours(points: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Unit normals (N, 3) by local PCA over the neighbour indices ``idx`` (N, k)."""
    k = idx.shape[1]
    x, y, z = (np.ascontiguousarray(points[:, i]).take(idx) for i in range(3))  # (N, k) each
    x -= x.sum(axis=1, keepdims=True) / k
    y -= y.sum(axis=1, keepdims=True) / k
    z -= z.sum(axis=1, keepdims=True) / k
    return _smallest_eigenvectors(np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y),
                                  np.einsum("ij,ij->i", z, z), np.einsum("ij,ij->i", x, y),
                                  np.einsum("ij,ij->i", x, z), np.einsum("ij,ij->i", y, z))


def estimate_normals(points: np.ndarray, *, neighbours: int = 10, tree: Any = None) -> np.ndarray:
    """Unit normals (N, 3) of a point cloud by local PCA: the direction of least variance of
    each point's ``neighbours`` nearest points (the smallest eigenvector of their covariance,
    in closed form). The sign is not oriented (point-to-plane ICP does not need it).
    ``tree``: a ``cKDTree`` of ``points`` already built (reused)."""
    from scipy.spatial import cKDTree

    pts = _points(points, "points", min_count=3)
    k = int(min(max(neighbours, 3), len(pts)))
    if tree is None or not np.array_equal(np.asarray(tree.data), pts):
        tree = cKDTree(pts, leafsize=32)
    _d, idx = _knn(pts, k, tree)
    return _normals_from_neighbours(pts, idx)


def surface_points(mask: Image, *, label: int | None = None,
                   method: Literal["mesh", "boundary"] = "mesh",
                   max_points: int | None = None, seed: int = 0,
                   normal_neighbours: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Surface points (N, 3) and unit outward normals (N, 3) of a mask, in LPS mm.

    ``method="mesh"``: the vertices of the marching-cubes isosurface (level 0.5, scikit-image);
    normals by local PCA over ``normal_neighbours`` vertices, turned outward by the mesh
    gradient. ``"boundary"``: the centres of the mask voxels with a background 6-neighbour,
    normals by local PCA (not oriented). ``label``: the label value to use
    (default: every non-zero voxel). ``max_points``: a random subset of that many points
    (``seed``), for speed.
    """
    arr = np.asarray(mask.array)
    if mask.spatial_ndim != 3 or arr.ndim != 3:
        raise ParameterError(f"surface_points needs a 3-D mask, got a {arr.ndim}-D array")
    binary = arr != 0 if label is None else arr == label
    if not binary.any():
        what = "non-zero voxel" if label is None else f"voxel of label {label}"
        raise ParameterError(f"mask has no {what}: no surface to extract")
    linear = mask.affine[:3, :3]
    if method == "mesh":
        try:
            from skimage.measure import marching_cubes
        except ImportError:  # pragma: no cover - scikit-image is in the ml/filters extras
            method = "boundary"
    if method == "mesh":
        zs, ys, xs = (np.flatnonzero(binary.any(axis=tuple(a for a in range(3) if a != ax)))
                      for ax in range(3))
        crop = binary[zs[0]:zs[-1] + 1, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        padded = np.pad(crop, 1).astype(np.float32)
        verts, _faces, normals, _v = marching_cubes(padded, level=0.5, allow_degenerate=False)
        # (z, y, x) of the padded crop -> (x, y, z) index of the mask
        idx_xyz = verts[:, ::-1] + np.array([xs[0], ys[0], zs[0]], dtype=np.float64) - 1.0
        pts = mask.index_to_physical(idx_xyz)
        # the normals are gradient directions in index space (pointing to lower values: out of
        # the mask); a gradient maps to LPS with the inverse transpose of the linear part.
        grad = normals[:, ::-1].astype(np.float64) @ np.linalg.inv(linear)
        # the marching-cubes gradient of a binary mask is blocky; local PCA over the mesh
        # vertices is much closer to the true normal (median cos 0.99 vs 0.94 on an
        # ellipsoid), so it gives the direction and the gradient only the outward sign.
        nrm = estimate_normals(pts, neighbours=normal_neighbours) if len(pts) >= 3 else grad
        nrm *= np.where(np.sum(nrm * grad, axis=1) < 0, -1.0, 1.0)[:, None]
    elif method == "boundary":
        from scipy import ndimage

        inner = ndimage.binary_erosion(binary, structure=ndimage.generate_binary_structure(3, 1),
                                       border_value=0)
        zyx = np.argwhere(binary & ~inner)
        pts = mask.index_to_physical(zyx[:, ::-1].astype(np.float64))
        nrm = estimate_normals(pts, neighbours=normal_neighbours) if len(pts) >= 3 else np.zeros_like(pts)
    else:
        from medimg.errors import UnknownNameError

        raise UnknownNameError("surface method", method, ["mesh", "boundary"])
    if max_points is not None and len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), size=int(max_points), replace=False))
        pts, nrm = pts[keep], nrm[keep]
    return pts, nrm


# --------------------------------------------------------------------------- ICP
@dataclass(frozen=True)
class ICPResult:
    """An ICP fit: ``matrix`` (4x4) maps fixed LPS mm to moving LPS mm.

    ``rms_mm``: RMS distance of the inlier pairs at the end (point-to-point distance, or the
    point-to-plane distance for that method); ``inlier_fraction``: the share of fixed points
    kept by the outlier rejection; ``iterations``: the iterations run; ``converged``: whether
    the last update moved every point less than the tolerance.
    """

    matrix: np.ndarray
    method: str
    rms_mm: float
    inlier_fraction: float
    iterations: int
    converged: bool
    rms_trace_mm: list[float] = field(default_factory=list)

    @property
    def transform(self) -> Transform:
        """The fit as a :class:`~medimg.registration.transform.Transform` (fixed -> moving)."""
        return _to_transform(self.matrix)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) fixed points (mm) to moving space (mm)."""
        return apply_matrix(self.matrix, _points(points, "points"))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"method": self.method, "matrix": self.matrix.tolist(), "rms_mm": self.rms_mm,
                "inlier_fraction": self.inlier_fraction, "iterations": self.iterations,
                "converged": self.converged}


def _initial_matrix(init: Any, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    if isinstance(init, str):
        if init == "identity":
            return np.eye(4)
        if init == "centroid":
            return _homogeneous(np.eye(3), moving.mean(axis=0) - fixed.mean(axis=0))
        from medimg.errors import UnknownNameError

        raise UnknownNameError("ICP initialisation", init, ["identity", "centroid"])
    if isinstance(init, (LandmarkResult, ICPResult)):
        return init.matrix
    if hasattr(init, "transform_points"):  # a Transform: its homogeneous matrix when linear
        if not getattr(init, "is_linear", False):
            raise ParameterError("init must be a linear transform (ICP fits linear maps)")
        return np.asarray(init.homogeneous, dtype=np.float64)
    m = np.asarray(init, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ParameterError(f"init must be 'identity', 'centroid' or a 4x4 matrix, got shape {m.shape}")
    return m


def _median(values: np.ndarray) -> float:
    """``numpy.median`` of a 1-D float array without NaN (the same value), by one partition."""
    n = len(values)
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, [half - 1, half])
    return float((part[half - 1] + part[half]) / 2)


def _select(dist: np.ndarray, max_distance_mm: float | str | None,
            trim_fraction: float) -> tuple[np.ndarray, float]:
    """Indices of the pairs kept: within ``max_distance_mm`` (``"auto"``: the median distance
    + 3 robust standard deviations, 1.4826 MAD) and among the closest ``trim_fraction`` of all
    pairs. Also returns the largest distance (mm) the choice depends on: distances beyond it
    may be given as ``inf`` (unknown, farther) without changing the choice, as long as the
    median, the MAD and the trimming cut come out at or below it."""
    keep = np.ones(len(dist), dtype=bool)
    limit = 0.0 if max_distance_mm is not None or trim_fraction < 1.0 else np.inf
    if max_distance_mm == "auto":
        med = _median(dist)
        mad = _median(np.abs(dist - med))
        threshold = med + 3.0 * 1.4826 * mad
        keep &= dist <= threshold
        limit = max(limit, threshold)
    elif max_distance_mm is not None:
        keep &= dist <= max_distance_mm
    if trim_fraction < 1.0:
        n_keep = max(3, int(round(trim_fraction * len(dist))))
        if n_keep < len(dist):
            cut = float(np.partition(dist, n_keep - 1)[n_keep - 1])
            keep &= dist <= cut
            limit = max(limit, cut)
    return np.flatnonzero(keep), limit


class _Nearest:
    """Exact nearest moving point of each query point, warm-started from the previous answer.

    Three shortcuts, each exact by the triangle inequality, before a KD-tree query:

    * a point whose previous nearest point ``j`` is still closer than a lower bound of its
      distance to every other moving point (that bound minus the point's motion since,
      ``motion`` in mm) keeps ``j``;
    * with the moving cloud's k-nearest-neighbour graph (``graph``: indices (M, k), self
      included, and the distance to the k-th neighbour, (M,)), a point is compared with the k
      neighbours of ``j`` only; the best of them, at distance ``d``, is certainly the nearest
      when ``d + |q - j|`` is below the radius of ``j``'s neighbourhood (every moving point
      closer to ``q`` than ``d`` lies within that radius of ``j``, so it is a candidate);
    * a point whose previous distance minus its motion exceeds ``bound`` is farther than
      ``bound`` (its distance comes back ``inf``, as from the KD-tree with that bound).
    """

    def __init__(self, tree: Any, moving: np.ndarray,
                 graph: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.tree = tree
        self.moving = moving
        self.graph = graph
        self.coords = [np.ascontiguousarray(moving[:, axis]) for axis in range(3)]
        self.walk_rounds = 2
        self.prev = np.zeros(0, dtype=np.intp)  # previous nearest point (or a placeholder)
        self.valid = np.zeros(0, dtype=bool)  # prev is the nearest point
        self.lower = np.zeros(0)  # lower bound of the distance to the nearest point (mm)
        self.second = np.zeros(0)  # lower bound of the distance to any point but prev (mm)

    def query(self, q: np.ndarray, bound: float = np.inf,
              motion: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances (mm) and indices of the nearest moving points of ``q``, except that
        a point farther than ``bound`` may come back as ``inf`` with index ``len(moving)``.
        ``motion``: how far each point moved since the previous query (mm); ``None`` for a
        first query."""
        n_moving = len(self.moving)
        n = len(q)
        if motion is None or len(self.prev) != n:
            dist, idx = self.tree.query(q, k=1, distance_upper_bound=bound)
            found = idx < n_moving
            self.prev = np.where(found, idx, 0)
            self.valid = found
            self.lower = np.where(found, dist, bound)
            self.second = self.lower.copy()
            return dist, idx
        prev = self.prev
        to_prev = q - self.moving.take(prev, axis=0)
        to_prev = np.sqrt(np.einsum("nc,nc->n", to_prev, to_prev))
        second = self.second - motion
        stay = self.valid & (to_prev < second)
        dist = np.where(stay, to_prev, np.inf)
        idx = np.where(stay, prev, n_moving)
        rest = np.flatnonzero(~stay)
        low = self.lower - motion
        if np.isfinite(bound) and len(rest):
            rest = rest[~(low.take(rest) > bound)]  # the others stay inf: known to be farther
        if self.graph is not None and len(rest):
            nbr, radius = self.graph
            j = prev.take(rest)
            t_j = to_prev.take(rest)
            stuck: list[np.ndarray] = []
            for _round in range(self.walk_rounds):
                qr = q.take(rest, axis=0)
                cand = nbr.take(j, axis=0)  # (R, k)
                d2 = None
                for axis in range(3):  # squared distances to the candidates, one axis at a time
                    diff = self.coords[axis].take(cand)
                    diff -= qr[:, axis, None]
                    diff *= diff
                    d2 = diff if d2 is None else d2.__iadd__(diff)
                assert d2 is not None
                best = np.argmin(d2, axis=1)[:, None]
                d_best = np.sqrt(np.take_along_axis(d2, best, axis=1)[:, 0])
                i_best = np.take_along_axis(cand, best, axis=1)[:, 0]
                np.put_along_axis(d2, best, np.inf, axis=1)
                d_second = np.sqrt(d2.min(axis=1))
                r_j = radius.take(j)
                sure = d_best + t_j < r_j
                done = rest[sure]
                dist[done] = d_best[sure]
                idx[done] = i_best[sure]
                # any point outside j's neighbourhood is at least r_j - |q - j| away
                second[done] = np.minimum(d_second[sure], r_j[sure] - t_j[sure])
                # the others walk on from their best candidate, while it gets closer
                on = ~sure & (i_best != j)
                stuck.append(rest[~sure & ~on])
                rest, j, t_j = rest[on], i_best[on], d_best[on]
                if len(rest) == 0:
                    break
            rest = np.concatenate([*stuck, rest])
        if len(rest):
            # two neighbours: the second distance lets the point keep its nearest next time
            d_rest, i_rest = self.tree.query(q.take(rest, axis=0), k=2, distance_upper_bound=bound)
            dist[rest] = d_rest[:, 0]
            idx[rest] = i_rest[:, 0]
            second[rest] = np.minimum(d_rest[:, 1], bound)
        found = idx < n_moving
        self.prev = np.where(found, idx, prev)
        self.valid = found
        self.lower = np.where(found, dist, np.maximum(low, bound))
        self.second = second
        return dist, idx

    def unbounded(self, q: np.ndarray, dist: np.ndarray, idx: np.ndarray) -> None:
        """Re-query, without a bound, the points whose distance came back ``inf`` (in place)."""
        far = np.flatnonzero(~np.isfinite(dist))
        if len(far):
            dist[far], idx[far] = self.tree.query(q[far], k=1)
            self.prev[far] = idx[far]
            self.valid[far] = True
            self.lower[far] = dist[far]
            self.second[far] = dist[far]


def _plane_step(src: np.ndarray, dst: np.ndarray, nrm: np.ndarray) -> np.ndarray:
    """Linearised point-to-plane step (small rotation omega, translation t) as a 4x4 matrix:
    minimises sum(((I + [omega]x) p + t - q) . n)^2, then applies omega as an exact rotation.
    The points are centred first, which conditions the 6x6 normal equations."""
    c = src.mean(axis=0)
    p = (src - c).T
    n = nrm.T
    a = np.empty((6, len(src)))  # rows: p x n, n
    np.multiply(p[1], n[2], out=a[0])
    a[0] -= p[2] * n[1]
    np.multiply(p[2], n[0], out=a[1])
    a[1] -= p[0] * n[2]
    np.multiply(p[0], n[1], out=a[2])
    a[2] -= p[1] * n[0]
    a[3:] = n
    b = np.einsum("ij,ij->i", dst - src, nrm)  # (q - p) . n, with q - p = (dst - c) - (src - c)
    ata = a @ a.T
    atb = a @ b
    try:
        x = np.linalg.solve(ata, atb)
    except np.linalg.LinAlgError:
        x = np.linalg.lstsq(a.T, b, rcond=None)[0]
    rot = _rotation_from_vector(x[:3])
    # rotation about the centroid c, then the translation
    return _homogeneous(rot, c + x[3:] - rot @ c)


def icp(fixed_points: np.ndarray, moving_points: np.ndarray, *,
        method: ICPMethod = "point-to-plane",
        moving_normals: np.ndarray | None = None,
        kind: LandmarkKind = "rigid",
        init: Any = "centroid",
        max_iterations: int = 50,
        tolerance_mm: float = 1e-4,
        max_distance_mm: float | Literal["auto"] | None = "auto",
        trim_fraction: float = 1.0,
        normal_neighbours: int = 10) -> ICPResult:
    """Iterative closest point: the transform that maps the fixed cloud (LPS mm) onto the
    moving cloud (LPS mm).

    Each iteration pairs every (transformed) fixed point with its closest moving point
    (KD-tree), drops outlier pairs (farther than ``max_distance_mm`` mm, by default
    ``"auto"``: the median pair distance + 3 robust standard deviations, re-estimated each
    iteration; ``None`` keeps all; and beyond the closest ``trim_fraction`` of pairs: trimmed
    ICP) and solves for the update: ``"point-to-point"``
    by the landmark solver (``kind`` rigid, similarity or affine), ``"point-to-plane"``
    (rigid) against ``moving_normals`` (estimated by local PCA from ``normal_neighbours``
    points when not given). ``init``: ``"centroid"`` (translate the centroids together),
    ``"identity"``, a 4x4 matrix or a transform. Stops when an update moves every fixed
    point less than ``tolerance_mm`` or after ``max_iterations``.
    """
    from scipy.spatial import cKDTree

    fixed = _points(fixed_points, "fixed_points", min_count=3)
    moving = _points(moving_points, "moving_points", min_count=3)
    if method not in ("point-to-point", "point-to-plane"):
        from medimg.errors import UnknownNameError

        raise UnknownNameError("ICP method", method, ["point-to-point", "point-to-plane"])
    if method == "point-to-plane" and kind != "rigid":
        raise ParameterError(f"point-to-plane ICP fits rigid transforms only, got kind={kind!r}; "
                             "use method='point-to-point' for similarity or affine")
    if not 0.0 < trim_fraction <= 1.0:
        raise ParameterError(f"trim_fraction must be in (0, 1], got {trim_fraction}")
    if isinstance(max_distance_mm, str):
        if max_distance_mm != "auto":
            raise ParameterError(f"max_distance_mm must be a distance in mm, 'auto' or None, got {max_distance_mm!r}")
    elif max_distance_mm is not None and not max_distance_mm > 0:
        raise ParameterError(f"max_distance_mm must be > 0 mm, got {max_distance_mm}")
    if max_iterations < 1:
        raise ParameterError(f"max_iterations must be >= 1, got {max_iterations}")
    if not tolerance_mm >= 0:
        raise ParameterError(f"tolerance_mm must be >= 0 mm, got {tolerance_mm}")
    tree = cKDTree(moving, leafsize=32)  # measured: build + 10-NN + closest points fastest at 32
    normals = None
    graph = None
    if method == "point-to-plane":
        if moving_normals is None:
            # the neighbourhoods that give the normals also warm-start the closest-point search
            k = int(min(max(normal_neighbours, 3), len(moving)))
            nb_dist, nb_idx = _knn(moving, k, tree)
            normals = _normals_from_neighbours(moving, nb_idx)
            graph = (nb_idx, nb_dist[:, -1])
        else:
            normals = _points(moving_normals, "moving_normals")
            if normals.shape != moving.shape:
                raise ParameterError("moving_normals must have one normal per moving point")
            normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    nearest = _Nearest(tree, moving, graph)
    fixed_bound = (None if max_distance_mm is None or isinstance(max_distance_mm, str)
                   else float(np.nextafter(float(max_distance_mm), np.inf)))

    def pairs(points: np.ndarray, bound: float,
              motion: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Closest pairs of ``points`` and the kept ones; the result does not depend on
        ``bound`` (a search radius, mm): a choice that needed farther distances is redone."""
        if fixed_bound is not None:
            bound = fixed_bound
        dist, idx = nearest.query(points, bound, motion)
        keep, limit = _select(dist, max_distance_mm, trim_fraction)
        if fixed_bound is None and not limit <= bound and not np.all(np.isfinite(dist)):
            nearest.unbounded(points, dist, idx)
            keep, limit = _select(dist, max_distance_mm, trim_fraction)
        return dist, idx, keep, limit

    matrix = _initial_matrix(init, fixed, moving)
    current = apply_matrix(matrix, fixed)
    trace: list[float] = []
    converged = False
    iterations = 0
    bound = np.inf
    motion = None
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - read after the loop
        dist, idx, keep, limit = pairs(current, bound, motion)
        if len(keep) < 3:
            msg = (f"ICP kept {len(keep)} point pairs (max_distance_mm={max_distance_mm}): the clouds "
                   "do not overlap after initialisation; raise max_distance_mm or give init")
            raise ParameterError(msg)
        src = current.take(keep, axis=0)
        pair = idx.take(keep)
        dst = moving.take(pair, axis=0)
        if method == "point-to-plane":
            assert normals is not None
            nk = normals.take(pair, axis=0)
            trace.append(float(np.sqrt(np.mean(np.einsum("ij,ij->i", dst - src, nk) ** 2))))
            step = _plane_step(src, dst, nk)
        else:
            trace.append(float(np.sqrt(np.mean(dist[keep] ** 2))))
            step, _scale = _fit(src, dst, kind)
        moved = apply_matrix(step, current)
        motion = moved - current
        motion = np.sqrt(np.einsum("nc,nc->n", motion, motion))
        shift = float(motion.max())
        current = moved
        matrix = step @ matrix
        # next search radius: the distances the choice needed, with room for this step's motion
        # (a guess only: pairs() redoes a search that was too tight)
        bound = 1.2 * limit + shift if np.isfinite(limit) else np.inf
        if shift < tolerance_mm:
            converged = True
            break
    # final residual of the returned transform
    dist, idx, keep, _limit = pairs(current, bound, motion)
    if method == "point-to-plane" and normals is not None and len(keep):
        res = np.einsum("ij,ij->i", moving[idx[keep]] - current[keep], normals[idx[keep]])
        rms = float(np.sqrt(np.mean(res**2)))
    else:
        rms = float(np.sqrt(np.mean(dist[keep] ** 2))) if len(keep) else float("nan")
    return ICPResult(matrix=matrix, method=method, rms_mm=rms,
                     inlier_fraction=float(len(keep) / len(fixed)), iterations=iterations,
                     converged=converged, rms_trace_mm=trace)


def register_surfaces(fixed_mask: Image, moving_mask: Image, *, label: int | None = None,
                      surface: Literal["mesh", "boundary"] = "mesh",
                      max_points: int | None = 20000, seed: int = 0,
                      **icp_options: Any) -> ICPResult:
    """ICP between the surfaces of two masks (LPS mm); the result maps fixed-mask points onto
    the moving mask's surface. Surfaces come from :func:`surface_points` (``surface``,
    ``label``, at most ``max_points`` points each, ``seed``); point-to-plane uses the moving
    surface's mesh normals. ``icp_options`` go to :func:`icp`."""
    fixed_pts, _fixed_nrm = surface_points(fixed_mask, label=label, method=surface,
                                           max_points=max_points, seed=seed)
    moving_pts, moving_nrm = surface_points(moving_mask, label=label, method=surface,
                                            max_points=max_points, seed=seed + 1)
    if icp_options.get("method", "point-to-plane") == "point-to-plane":
        icp_options.setdefault("moving_normals", moving_nrm)
    return icp(fixed_pts, moving_pts, **icp_options)
