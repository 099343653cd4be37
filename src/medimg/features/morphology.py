r"""Morphological features (IBSI family ``HCUG``) from a triangle mesh of the region.

The mesh is the marching-cubes isosurface (level 0.5) of the morphological mask padded by one
voxel, in mm. With :math:`V` its volume (divergence theorem over the oriented triangles) and
:math:`A` its area:

* compactness 1 :math:`V/(\pi^{1/2}A^{3/2})`, compactness 2 :math:`36\pi V^2/A^3`,
  spherical disproportion :math:`A/(36\pi V^2)^{1/3}`, sphericity :math:`(36\pi V^2)^{1/3}/A`,
  asphericity :math:`(A^3/(36\pi V^2))^{1/3} - 1`;
* centre of mass shift: distance between the geometric centre of the morphological mask and
  the intensity-weighted centre of the intensity mask (mm);
* maximum 3-D diameter: the largest distance between two mesh vertices (convex hull vertices);
* PCA of the voxel centres of the morphological mask, eigenvalues
  :math:`\lambda_{major} \ge \lambda_{minor} \ge \lambda_{least}`: axis lengths
  :math:`4\sqrt{\lambda}`, elongation :math:`\sqrt{\lambda_{minor}/\lambda_{major}}`, flatness
  :math:`\sqrt{\lambda_{least}/\lambda_{major}}`;
* volume and area densities: :math:`V` and :math:`A` over those of the axis-aligned bounding box
  (AABB), the oriented minimum bounding box (OMBB; not standardised by the IBSI: minimum over the
  orientations given by the convex hull's face normals, each with the minimum-area rectangle of
  the projection), the approximate enclosing ellipsoid (AEE: semi-axes :math:`2\sqrt{\lambda}`,
  area by the IBSI Legendre series), the minimum-volume enclosing ellipsoid (MVEE; not
  standardised: Khachiyan's algorithm) and the convex hull;
* integrated intensity :math:`V \bar{x}` (mean of the intensity mask);
* Moran's I and Geary's C over the intensity mask with weights :math:`1/\lVert r_i - r_j\rVert`
  (mm) for every pair of distinct voxels, computed exactly by FFT convolution.
"""

from __future__ import annotations

import math

import numpy as np

from medimg.features._base import FeatureSpec, feature_family
from medimg.features.roi import Roi

__all__ = ["MORPH_SPECS", "morph_features", "mesh", "spatial_autocorrelation"]

MORPH_SPECS = tuple(FeatureSpec(n, c, "morph", i, "HCUG", u) for n, c, i, u in (
    ("volume", "RNU0", "Volume (mesh)", "mm^3"),
    ("volume_voxel_counting", "YEKZ", "Volume (voxel counting)", "mm^3"),
    ("surface_area", "C0JK", "Surface area (mesh)", "mm^2"),
    ("surface_to_volume_ratio", "2PR5", "Surface to volume ratio", "1/mm"),
    ("compactness_1", "SKGS", "Compactness 1", ""),
    ("compactness_2", "BQWJ", "Compactness 2", ""),
    ("spherical_disproportion", "KRCK", "Spherical disproportion", ""),
    ("sphericity", "QCFX", "Sphericity", ""),
    ("asphericity", "25C7", "Asphericity", ""),
    ("centre_of_mass_shift", "KLMA", "Centre of mass shift", "mm"),
    ("maximum_3d_diameter", "L0JK", "Maximum 3D diameter", "mm"),
    ("major_axis_length", "TDIC", "Major axis length", "mm"),
    ("minor_axis_length", "P9VJ", "Minor axis length", "mm"),
    ("least_axis_length", "7J51", "Least axis length", "mm"),
    ("elongation", "Q3CK", "Elongation", ""),
    ("flatness", "N17B", "Flatness", ""),
    ("volume_density_aabb", "PBX1", "Volume density (AABB)", ""),
    ("area_density_aabb", "R59B", "Area density (AABB)", ""),
    ("volume_density_ombb", "ZH1A", "Volume density (OMBB)", ""),
    ("area_density_ombb", "IQYR", "Area density (OMBB)", ""),
    ("volume_density_aee", "6BDE", "Volume density (AEE)", ""),
    ("area_density_aee", "RDD2", "Area density (AEE)", ""),
    ("volume_density_mvee", "SWZ1", "Volume density (MVEE)", ""),
    ("area_density_mvee", "BRI8", "Area density (MVEE)", ""),
    ("volume_density_convex_hull", "R3ER", "Volume density (convex hull)", ""),
    ("area_density_convex_hull", "7T7F", "Area density (convex hull)", ""),
    ("integrated_intensity", "99N0", "Integrated intensity", "image mm^3"),
    ("morans_i", "N365", "Moran's I index", ""),
    ("gearys_c", "NPT7", "Geary's C measure", ""),
))


def mesh(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes mesh (vertices in mm, (z, y, x); triangle indices) of a boolean mask."""
    from skimage.measure import marching_cubes

    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    mask = mask[idx[0][0]:idx[0][-1] + 1, idx[1][0]:idx[1][-1] + 1, idx[2][0]:idx[2][-1] + 1]
    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _normals, _values = marching_cubes(padded, level=0.5, spacing=spacing_zyx,
                                                     allow_degenerate=True)
    return verts.astype(np.float64), faces


def _hull_candidates(verts: np.ndarray) -> np.ndarray:
    """The vertices that can be convex-hull vertices: the lowest and highest x of every (z, y) row
    (a point between two others of its row is not extreme)."""
    key_zy = np.round(verts[:, :2] * 1e6).astype(np.int64)
    order = np.lexsort((verts[:, 2], key_zy[:, 1], key_zy[:, 0]))
    k = key_zy[order]
    new_row = np.ones(order.size, dtype=bool)
    new_row[1:] = np.any(k[1:] != k[:-1], axis=1)
    first = np.flatnonzero(new_row)
    last = np.append(first[1:] - 1, order.size - 1)
    return verts[order[np.unique(np.concatenate([first, last]))]]


def _mesh_volume_area(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * float(np.linalg.norm(cross, axis=1).sum())
    volume = abs(float(np.einsum("ij,ij->", a, np.cross(b, c)))) / 6.0
    return volume, area


def _ellipsoid_area(a: float, b: float, c: float, terms: int = 20) -> float:
    """Surface area of an ellipsoid with semi-axes a >= b >= c: the IBSI Legendre series."""
    if a <= 0:
        return 0.0
    alpha2 = max(0.0, 1.0 - (b / a) ** 2)
    beta2 = max(0.0, 1.0 - (c / a) ** 2)
    half_sum = (alpha2 + beta2) / 2.0
    ab2 = alpha2 * beta2
    # Q_nu = (alpha beta)^nu P_nu((alpha^2 + beta^2) / (2 alpha beta)), by the Legendre recurrence.
    q_prev, q = 1.0, half_sum
    total = 1.0 + q / (1.0 - 4.0)
    for nu in range(1, terms):
        q_next = ((2 * nu + 1) * half_sum * q - nu * ab2 * q_prev) / (nu + 1)
        q_prev, q = q, q_next
        total += q / (1.0 - 4.0 * (nu + 1) ** 2)
    return 4.0 * math.pi * a * b * total


def _mvee(points: np.ndarray, tol: float = 1e-6, max_iter: int = 2000) -> np.ndarray:
    """Semi-axes (descending) of the minimum-volume enclosing ellipsoid (Khachiyan's algorithm,
    stopped when the largest weight change is below ``tol``)."""
    n, d = points.shape
    q = np.vstack([points.T, np.ones(n)])  # (d+1, n)
    u = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        x = (q * u) @ q.T
        m = np.einsum("in,in->n", q, np.linalg.solve(x, q))
        j = int(np.argmax(m))
        step = (m[j] - d - 1.0) / ((d + 1.0) * (m[j] - 1.0))
        if step < tol:
            break
        u *= 1.0 - step
        u[j] += step
    centre = points.T @ u
    cov = (points.T * u) @ points - np.outer(centre, centre)
    eig = np.linalg.eigvalsh(np.linalg.inv(cov) / d)
    return np.sort(1.0 / np.sqrt(np.maximum(eig, 1e-300)))[::-1]


def _min_area_rectangle(pts2: np.ndarray) -> tuple[float, float, float]:
    """(area, width, height) of the minimum-area rectangle of 2-D points (rotating calipers)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = pts2[ConvexHull(pts2).vertices]
    except (QhullError, ValueError):
        ext = pts2.max(axis=0) - pts2.min(axis=0)
        return float(ext[0] * ext[1]), float(ext[0]), float(ext[1])
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    rot = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    perp = np.stack([-np.sin(angles), np.cos(angles)], axis=1)
    u = hull @ rot.T
    v = hull @ perp.T
    w = u.max(axis=0) - u.min(axis=0)
    h = v.max(axis=0) - v.min(axis=0)
    k = int(np.argmin(w * h))
    return float(w[k] * h[k]), float(w[k]), float(h[k])


def _ombb(hull_pts: np.ndarray, hull_normals: np.ndarray) -> tuple[float, float]:
    """(volume, area) of the oriented minimum bounding box, over hull-face-normal orientations."""
    normals = np.unique(np.round(hull_normals * np.sign(hull_normals[:, [0]] + 1e-12), 6), axis=0)
    best = (math.inf, math.inf)
    for n in normals:
        n = n / np.linalg.norm(n)
        helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        e1 = np.cross(n, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(n, e1)
        depth = hull_pts @ n
        d = float(depth.max() - depth.min())
        area2, w, h = _min_area_rectangle(np.stack([hull_pts @ e1, hull_pts @ e2], axis=1))
        vol = area2 * d
        if vol < best[0]:
            best = (vol, 2.0 * (w * h + w * d + h * d))
    return best


def _kernel_conv(fields: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Linear convolution of each field (F, nz, ny, nx) with :math:`1/d` (mm; 0 at the centre),
    evaluated on the fields' own grid. Slabs of 2-D FFTs with the z sum done directly when there
    are few slices, a 3-D FFT otherwise."""
    from scipy import fft

    nf, nz, ny, nx = fields.shape
    fy = fft.next_fast_len(2 * ny - 1, real=True)
    fx = fft.next_fast_len(2 * nx - 1, real=True)
    ay = np.arange(-(ny - 1), ny) * spacing_zyx[1]
    ax = np.arange(-(nx - 1), nx) * spacing_zyx[2]
    r2_plane = ay[:, None] ** 2 + ax[None, :] ** 2
    if nz <= 12:
        dz = np.arange(nz) * spacing_zyx[0]
        d2 = dz[:, None, None] ** 2 + r2_plane[None]
        with np.errstate(divide="ignore"):
            kernel = 1.0 / np.sqrt(d2)
        kernel[0, ny - 1, nx - 1] = 0.0
        kf = fft.rfft2(kernel, (fy, fx))  # (nz, fy, fx//2+1), index = |dz|
        ff = fft.rfft2(fields, (fy, fx))  # (F, nz, ...)
        acc = np.zeros_like(ff)
        for w in range(nz):
            dist = np.abs(w - np.arange(nz))
            acc[:, w] = np.einsum("fzk,zk->fk", ff.reshape(nf, nz, -1), kf[dist].reshape(nz, -1)).reshape(
                nf, *ff.shape[2:])
        out = fft.irfft2(acc, (fy, fx))
        return out[:, :, ny - 1:2 * ny - 1, nx - 1:2 * nx - 1]
    fz = fft.next_fast_len(2 * nz - 1, real=True)
    az = np.arange(-(nz - 1), nz) * spacing_zyx[0]
    d2 = az[:, None, None] ** 2 + r2_plane[None]
    with np.errstate(divide="ignore"):
        kernel = 1.0 / np.sqrt(d2)
    kernel[nz - 1, ny - 1, nx - 1] = 0.0
    kf = fft.rfftn(kernel, (fz, fy, fx))
    out = fft.irfftn(fft.rfftn(fields, (fz, fy, fx), axes=(1, 2, 3)) * kf, (fz, fy, fx), axes=(1, 2, 3))
    return out[:, nz - 1:2 * nz - 1, ny - 1:2 * ny - 1, nx - 1:2 * nx - 1]


def spatial_autocorrelation(values: np.ndarray, mask: np.ndarray,
                            spacing_zyx: tuple[float, float, float]) -> tuple[float, float]:
    r"""Moran's I and Geary's C of ``values`` on the voxels of ``mask`` (box arrays), with weights
    :math:`w_{ij} = 1/d_{ij}` (mm) for all pairs :math:`i \ne j`; exact, by FFT convolution:
    :math:`\sum_{ij} w_{ij} a_i b_j = \sum_i a_i (K * b)_i`."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    mask = mask[box]
    x = values[box][mask]
    n = x.size
    if n < 2:
        return float("nan"), float("nan")
    mu = float(x.mean())
    d = x - mu
    denom = float(np.dot(d, d))
    if denom == 0:
        return float("nan"), float("nan")
    fields = np.zeros((2, *mask.shape))
    fields[0][mask] = d
    fields[1][mask] = 1.0
    conv = _kernel_conv(fields, spacing_zyx)
    k_dev = conv[0][mask]
    w_row = conv[1][mask]
    s_dev = float(np.dot(d, k_dev))
    w_total = float(w_row.sum())
    morans = n / w_total * s_dev / denom
    geary_num = 2.0 * float(np.dot(d * d, w_row)) - 2.0 * s_dev
    gearys = (n - 1) / (2.0 * w_total) * geary_num / denom
    return float(morans), float(gearys)


@feature_family("morph", MORPH_SPECS)
def morph_features(roi: Roi, *, non_standard: bool = False) -> dict[str, float]:
    """IBSI morphological features (29) from the mesh and voxels of the region.

    Parameters
    ----------
    roi
        The processed region.
    non_standard
        Also compute the OMBB and MVEE densities, which the IBSI lists without reference
        values (NaN when False, the default: they cost more than the rest of the family).
    """
    from scipy.spatial import ConvexHull, QhullError

    sp = roi.spacing_zyx
    morph = roi.morph_mask
    verts, faces = mesh(morph, sp)
    volume, area = _mesh_volume_area(verts, faces)
    n_morph = int(morph.sum())
    out: dict[str, float] = {"volume": volume, "volume_voxel_counting": n_morph * roi.voxel_volume,
                             "surface_area": area}
    out["surface_to_volume_ratio"] = area / volume if volume > 0 else float("nan")
    v2 = 36.0 * math.pi * volume**2
    out["compactness_1"] = volume / (math.sqrt(math.pi) * area**1.5)
    out["compactness_2"] = v2 / area**3
    out["spherical_disproportion"] = area / v2 ** (1.0 / 3.0)
    out["sphericity"] = v2 ** (1.0 / 3.0) / area
    out["asphericity"] = (area**3 / v2) ** (1.0 / 3.0) - 1.0
    coords = np.argwhere(morph) * np.asarray(sp)
    int_coords = np.argwhere(roi.int_mask) * np.asarray(sp)
    vals = roi.values
    total = float(vals.sum())
    if total != 0:
        com_gl = (int_coords * vals[:, None]).sum(axis=0) / total
        out["centre_of_mass_shift"] = float(np.linalg.norm(coords.mean(axis=0) - com_gl))
    else:
        out["centre_of_mass_shift"] = float("nan")
    try:
        candidates = _hull_candidates(verts)
        hull = ConvexHull(candidates)
        hull_pts = candidates[hull.vertices]
        hull_volume, hull_area = float(hull.volume), float(hull.area)
        hull_normals = hull.equations[:, :3]
    except (QhullError, ValueError):
        hull_pts, hull_volume, hull_area, hull_normals = verts, float("nan"), float("nan"), None
    diff = hull_pts[:, None, :] - hull_pts[None, :, :]
    out["maximum_3d_diameter"] = float(np.sqrt(np.max(np.einsum("ijk,ijk->ij", diff, diff))))
    if coords.shape[0] > 1:
        cov = np.cov(coords.T, bias=False) if coords.shape[0] > 1 else np.zeros((3, 3))
        lam = np.sort(np.clip(np.linalg.eigvalsh(cov), 0.0, None))[::-1]
    else:
        lam = np.zeros(3)
    major, minor, least = (4.0 * math.sqrt(v) for v in lam)
    out["major_axis_length"], out["minor_axis_length"], out["least_axis_length"] = major, minor, least
    out["elongation"] = math.sqrt(lam[1] / lam[0]) if lam[0] > 0 else float("nan")
    out["flatness"] = math.sqrt(lam[2] / lam[0]) if lam[0] > 0 else float("nan")
    ext = verts.max(axis=0) - verts.min(axis=0)
    out["volume_density_aabb"] = volume / float(np.prod(ext))
    out["area_density_aabb"] = area / float(2.0 * (ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2]))
    if non_standard and hull_normals is not None:
        ombb_v, ombb_a = _ombb(hull_pts, hull_normals)
        out["volume_density_ombb"] = volume / ombb_v
        out["area_density_ombb"] = area / ombb_a
        axes = _mvee(hull_pts)
        out["volume_density_mvee"] = volume / (4.0 * math.pi * float(np.prod(axes)) / 3.0)
        out["area_density_mvee"] = area / _ellipsoid_area(*axes)
    else:
        for key in ("volume_density_ombb", "area_density_ombb", "volume_density_mvee", "area_density_mvee"):
            out[key] = float("nan")
    a, b, c = (2.0 * math.sqrt(v) for v in lam)
    out["volume_density_aee"] = volume / (4.0 * math.pi * a * b * c / 3.0) if a * b * c > 0 else float("nan")
    out["area_density_aee"] = area / _ellipsoid_area(a, b, c) if a > 0 else float("nan")
    out["volume_density_convex_hull"] = volume / hull_volume
    out["area_density_convex_hull"] = area / hull_area
    out["integrated_intensity"] = volume * float(vals.mean())
    out["morans_i"], out["gearys_c"] = roi.cached(
        "autocorrelation", lambda: spatial_autocorrelation(roi.intensity, roi.int_mask, sp))
    return {s.name: out[s.name] for s in MORPH_SPECS}
