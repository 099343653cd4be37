r"""Morphological features (IBSI family ``HCUG``) from a triangle mesh of the region.

The mesh is the marching-cubes isosurface (level 0.5) of the morphological mask padded by one
voxel, in mm. With :math:`V` its volume (divergence theorem over the oriented triangles) and
:math:`A` its area (both summed over the cube configurations, without building the mesh:
:func:`mesh_volume_area`):

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
  (mm) for every pair of distinct voxels, computed exactly by FFT (Parseval's theorem,
  :func:`spatial_autocorrelation`).
"""

from __future__ import annotations

import math

import numpy as np

from medimg.features._base import FeatureSpec, feature_family
from medimg.features.roi import Roi

__all__ = ["MORPH_SPECS", "morph_features", "mesh", "mesh_volume_area", "hull_candidates",
           "spatial_autocorrelation"]

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


def _mc_unit_triangles() -> tuple[np.ndarray, np.ndarray]:
    """The marching-cubes triangles of every cube configuration: vertices (T, 3, 3) in voxels from
    the cube's first corner (z, y, x), and each triangle's configuration (T,)."""
    from medimg.features._mc_tables import MC_TRIANGLES, VERTEX_CODES

    codes = "".join(MC_TRIANGLES)
    owner = np.repeat(np.arange(256), [len(t) // 3 for t in MC_TRIANGLES])
    index = np.frombuffer(codes.encode("ascii"), dtype=np.uint8)
    lut = np.full(256, -1, dtype=np.int64)
    lut[np.frombuffer(VERTEX_CODES.encode("ascii"), dtype=np.uint8)] = np.arange(len(VERTEX_CODES))
    k = lut[index]
    half = np.stack([k // 9, (k // 3) % 3, k % 3], axis=1).astype(np.float64) / 2.0
    return half.reshape(-1, 3, 3), owner


_MC_UNIT: tuple[np.ndarray, np.ndarray] | None = None
_CENTRE_CONFIGS: np.ndarray | None = None
_CORNERS = tuple((dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1))  # bit 4dz + 2dy + dx


def _tight_padded(mask: np.ndarray) -> np.ndarray:
    """``mask`` cropped to its bounding box and padded by one empty voxel (the frame of :func:`mesh`)."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    sub = mask[zs[0]:zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    crop = sub[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
    padded = np.zeros(tuple(n + 2 for n in crop.shape), dtype=np.uint8)
    padded[1:-1, 1:-1, 1:-1] = crop
    return padded


def _cube_configs(padded: np.ndarray) -> np.ndarray:
    """The configuration (0..255; bit ``4 dz + 2 dy + dx`` for an inside corner) of every cube of
    ``padded`` (uint8 0/1): shape one less per axis."""
    nz, ny, nx = (n - 1 for n in padded.shape)
    config = np.zeros((nz, ny, nx), dtype=np.uint8)
    for bit, (dz, dy, dx) in enumerate(_CORNERS):
        config |= padded[dz:dz + nz, dy:dy + ny, dx:dx + nx] << bit
    return config


def mesh_volume_area(padded: np.ndarray, spacing_zyx: tuple[float, float, float],
                     config: np.ndarray | None = None) -> tuple[float, float]:
    r"""Volume (mm^3) and area (mm^2) of the marching-cubes mesh of :func:`mesh`, without building it.

    A cube's triangles depend only on its configuration (the 8 corners, inside or not), so the
    area is :math:`\sum_c n_c A_c` over configurations :math:`c` with :math:`n_c` cubes, and the
    divergence-theorem volume :math:`\frac16 \sum a \cdot (b \times c)` over triangles splits,
    with :math:`a = o + a'` (:math:`o` the cube's corner), into :math:`\frac16 \sum_{cubes}
    (V_c + o \cdot N_c)`, :math:`V_c = \sum a' \cdot (b' \times c')` and :math:`N_c = \sum (b' -
    a') \times (c' - a')` over the configuration's triangles. ``padded``: uint8 0/1 mask in the
    frame of :func:`mesh` (cropped, padded by one); ``config``: its :func:`_cube_configs`."""
    global _MC_UNIT
    if _MC_UNIT is None:
        _MC_UNIT = _mc_unit_triangles()
    unit, owner = _MC_UNIT
    sp = np.asarray(spacing_zyx, dtype=np.float64)
    tri = unit * sp
    ta, tb, tc = tri[:, 0], tri[:, 1], tri[:, 2]
    normal2 = np.cross(tb - ta, tc - ta)
    tri_area = 0.5 * np.sqrt(np.einsum("ij,ij->i", normal2, normal2))
    area_c = np.bincount(owner, weights=tri_area, minlength=256)
    vol_c = np.bincount(owner, weights=np.einsum("ij,ij->i", ta, np.cross(tb, tc)), minlength=256)
    norm_c = np.stack([np.bincount(owner, weights=normal2[:, k], minlength=256) for k in range(3)], axis=1)
    if config is None:
        config = _cube_configs(padded)
    _nz, ny, nx = config.shape
    flat = config.ravel()
    counts = np.bincount(flat, minlength=256).astype(np.float64)
    surface = np.flatnonzero((flat != 0) & (flat != 255))
    cfg = flat[surface]
    iz, rest = np.divmod(surface, ny * nx)
    iy, ix = np.divmod(rest, nx)
    # sum over cubes of o . N_c = sum over configurations of N_c . (sum of their corners)
    corner_sum = sum(float(np.dot(np.bincount(cfg, weights=idx, minlength=256), norm_c[:, k])) * sp[k]
                     for k, idx in enumerate((iz, iy, ix)))
    volume = abs(float(np.dot(counts, vol_c)) + corner_sum) / 6.0
    return volume, float(np.dot(counts, area_c))


def hull_candidates(padded: np.ndarray, spacing_zyx: tuple[float, float, float],
                    config: np.ndarray | None = None) -> np.ndarray:
    """The mesh vertices (mm, (z, y, x), in the frame of :func:`mesh`) that can be convex-hull
    vertices, sorted by (z, y, x): on every line along x, its two extreme vertices.

    The vertices of a binary mask's marching-cubes mesh are the midpoints of the edges between an
    inside and an outside voxel: along x (lines at whole z, y), along y (whole z, half y) and along
    z (half z, whole y), and the centres of the cubes whose triangulation uses one (half z, y, x);
    a vertex between two others of its line is not extreme. (The centres never are hull vertices,
    but they are kept so that the hull is computed from exactly the points of the explicit mesh.)
    ``config``: the :func:`_cube_configs` of ``padded``."""
    return _hull_candidates_twice(padded, config) / 2.0 * np.asarray(spacing_zyx, dtype=np.float64)


def _hull_candidates_twice(padded: np.ndarray, config: np.ndarray | None = None) -> np.ndarray:
    """:func:`hull_candidates` as twice the voxel coordinates (whole numbers, int64): the hull
    of these is exact (:mod:`medimg.core.hull`) and, scaled per axis, the hull in mm."""
    global _CENTRE_CONFIGS
    if _CENTRE_CONFIGS is None:
        from medimg.features._mc_tables import MC_TRIANGLES, VERTEX_CODES

        centre = VERTEX_CODES[9 + 3 + 1]
        _CENTRE_CONFIGS = np.array([centre in t for t in MC_TRIANGLES])
    if config is None:
        config = _cube_configs(padded)
    inside = padded.astype(bool)
    rows = []  # (2z, 2y, 2x) of each candidate, twice the voxel coordinate
    for edges, (oz, oy), (first_shift, last_shift) in (
        (inside, (0, 0), (-1, 1)),  # x-edges: first inside voxel - 1/2, last + 1/2
        (inside[:, :-1] != inside[:, 1:], (0, 1), (0, 0)),
        (inside[:-1] != inside[1:], (1, 0), (0, 0)),
        (_CENTRE_CONFIGS[config], (1, 1), (1, 1)),
    ):
        ny_e, nx_e = edges.shape[1], edges.shape[2]
        flat = np.flatnonzero(edges)  # sorted: the lines (z, y) in order, x increasing
        if flat.size == 0:
            continue
        line, x = np.divmod(flat, nx_e)
        new_line = np.empty(flat.size, dtype=bool)
        new_line[:1] = True
        np.not_equal(line[1:], line[:-1], out=new_line[1:])
        firsts = np.flatnonzero(new_line)
        lasts = np.append(firsts[1:] - 1, flat.size - 1)
        z, y = np.divmod(line[firsts], ny_e)
        for pick, shift in ((firsts, first_shift), (lasts, last_shift)):
            rows.append(np.stack([2 * z + oz, 2 * y + oy, 2 * x[pick] + shift], axis=1))
    pts2 = np.concatenate(rows)
    size = 2 * np.asarray(padded.shape, dtype=np.int64)
    key = np.unique((pts2[:, 0] * size[1] + pts2[:, 1]) * size[2] + pts2[:, 2])  # sorted, no duplicates
    zy, x2 = np.divmod(key, size[2])
    z2, y2 = np.divmod(zy, size[1])
    return np.stack([z2, y2, x2], axis=1)


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
    from medimg.core.hull import hull_2d

    try:
        hull = pts2[hull_2d(pts2)]
    except ValueError:  # DegenerateHullError: collinear
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


def _next_fast_len_real(n: int) -> int:
    """The smallest 5-smooth number (2**a 3**b 5**c) >= ``n``: the lengths pocketfft's real
    transforms are fastest at (``scipy.fft.next_fast_len(n, real=True)``)."""
    best = None
    p5 = 1
    while True:
        p35 = p5
        while True:
            length = p35
            while length < n:
                length *= 2
            best = length if best is None else min(best, length)
            if p35 >= n:
                break
            p35 *= 3
        if p5 >= n:
            return best
        p5 *= 5


def _even_fast_len(n: int) -> int:
    """The smallest even length >= ``n`` that pocketfft's real FFT handles fast."""
    length = _next_fast_len_real(n)
    while length % 2:
        length = _next_fast_len_real(length + 1)
    return length


def _dct1(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """DCT-I (unnormalised) along ``axes``, in that order: along each axis the real part of the
    FFT of the even extension, as pocketfft computes it (bit for bit ``scipy.fft.dctn(a, type=1,
    axes=axes)``; NumPy's FFT is the same pocketfft, and this keeps SciPy out of a run)."""
    for ax in axes:
        n = a.shape[ax]
        mirror = np.flip(np.take(a, np.arange(1, n - 1), axis=ax), axis=ax)
        a = np.ascontiguousarray(np.fft.rfft(np.concatenate([a, mirror], axis=ax), axis=ax).real)
    return a


def _kernel_spectrum(periods: tuple[int, ...], spacing: tuple[float, ...], n_slices: int = 0) -> np.ndarray:
    r"""DFT of the :math:`1/d` kernel (mm; 0 at the origin) on a periodic grid of ``periods`` (all
    even). Along each axis, displacements :math:`p` and :math:`L - p` are the same distance, so
    the kernel is even and its DFT real: the DCT-I of the kernel on displacements :math:`0..L/2`.

    Returns the spectrum at frequencies :math:`0..L/2` of the last axis (the ``rfft`` half) and
    at every frequency of the other axes (:math:`L/2+1..L-1` mirror :math:`L/2-1..1`). With
    ``n_slices``, ``spacing`` has one more (first) value, the slice spacing, and the result one
    more (first) axis, the slice distances :math:`0..n_{slices}-1`, not transformed; the
    frequencies of the first grid axis then stop at :math:`L/2` as well (mirror them)."""
    axes = tuple(range(1 if n_slices else 0, len(spacing)))
    lengths = ([n_slices] if n_slices else []) + [p // 2 + 1 for p in periods]
    d2 = np.zeros(())
    for count, sp in zip(lengths, spacing, strict=True):
        d2 = np.add.outer(d2, (np.arange(count) * sp) ** 2)
    with np.errstate(divide="ignore"):
        kernel = 1.0 / np.sqrt(d2)
    kernel[(0,) * kernel.ndim] = 0.0
    spec = _dct1(kernel, axes)
    if not n_slices:
        for ax in axes[:-1]:
            half = periods[ax] // 2
            flipped = np.flip(np.take(spec, np.arange(1, half), axis=ax), axis=ax)
            spec = np.concatenate([spec, flipped], axis=ax)
    return spec


def _half_spectrum_weights(n_last: int) -> np.ndarray:
    """Weights of the rfft half spectrum (last axis of even length ``n_last``) in a Parseval sum."""
    w = np.full(n_last // 2 + 1, 2.0)
    w[0] = w[-1] = 1.0
    return w


def _self_sums(mask: np.ndarray, fills: list[np.ndarray | float],
               spacing_zyx: tuple[float, float, float]) -> list[float]:
    r"""For each field :math:`a`: :math:`\sum_{i \ne j} a_i a_j / d_{ij}` over every pair of voxels
    (mm), exactly, by Parseval's theorem: :math:`\sum_k \hat K(k) |\hat a(k)|^2 / N` on a
    periodic grid of at least :math:`2n - 1` per axis, :math:`K` the (real, even) :math:`1/d`
    kernel. Field ``f`` is ``fills[f]`` on the voxels of ``mask`` (box, (nz, ny, nx)), 0 elsewhere.

    The transforms skip the fields' zero padding and work in place, one field at a time (large
    temporaries cost page faults). With few slices they are 2-D and the sum over slice pairs is
    done directly (slice distance :math:`|z_a - z_b|`); otherwise 3-D. NumPy's FFT: pocketfft,
    as ``scipy.fft``, without importing SciPy."""
    nz, ny, nx = mask.shape
    fy, fx = _even_fast_len(2 * ny - 1), _even_fast_len(2 * nx - 1)
    weights = _half_spectrum_weights(fx)
    slabs = nz <= 12
    fz = 0 if slabs else _even_fast_len(2 * nz - 1)
    hy = fy // 2
    if slabs:
        # per slice distance dz, the in-plane kernel's spectrum at ky = 0..fy/2 (rows fy/2+1..fy-1
        # mirror fy/2-1..1)
        kw = _kernel_spectrum((fy, fx), spacing_zyx, n_slices=nz)  # (nz, fy/2+1, fx/2+1)
        kw *= weights / (fy * fx)
    else:
        kw = _kernel_spectrum((fz, fy, fx), spacing_zyx)
        kw *= weights / (fz * fy * fx)
    # only the lines along x that cross the mask have a non-zero transform along x
    lines = np.flatnonzero(mask.any(axis=2).ravel())  # z * ny + y
    line_mask = mask.reshape(nz * ny, nx)[lines]
    rows = (lines // ny) * fy + lines % ny  # the same lines in the spectrum, (z, ky) of fy per z
    field = np.zeros((lines.size, fx))  # zero-padded along x: no padded copy
    inside = field[:, :nx]
    out = []
    for fill in fills:
        inside[line_mask] = fill  # C order of the mask's voxels, as `fill`
        spec = np.zeros((fz or nz, fy, fx // 2 + 1), dtype=np.complex128)
        spec.reshape(-1, fx // 2 + 1)[rows] = np.fft.rfft(field, axis=1)
        spec = np.fft.fft(spec, axis=1, out=spec)
        if not slabs:
            spec = np.fft.fft(spec, axis=0, out=spec)
            # sum of K |a|^2 without a temporary the size of the spectrum
            out.append(float(np.einsum("ijk,ijk,ijk->", kw, spec.real, spec.real)
                             + np.einsum("ijk,ijk,ijk->", kw, spec.imag, spec.imag)))
            continue
        # |a|^2 summed over the slice pairs at each distance: Re(conj(a_z) a_z') = re re' + im im'
        re, im = spec.real, spec.imag
        total = 0.0
        for dz in range(nz):
            lag = np.einsum("zyk,zyk->yk", re[:nz - dz], re[dz:])
            lag += np.einsum("zyk,zyk->yk", im[:nz - dz], im[dz:])
            if dz:
                lag *= 2.0  # (z, z + dz) and (z + dz, z)
            total += float(np.vdot(lag[:hy + 1], kw[dz]) + np.vdot(lag[hy + 1:], kw[dz, hy - 1:0:-1]))
        out.append(total)
        del spec, re, im
    return out


def spatial_autocorrelation(values: np.ndarray, mask: np.ndarray,
                            spacing_zyx: tuple[float, float, float]) -> tuple[float, float]:
    r"""Moran's I and Geary's C of ``values`` on the voxels of ``mask`` (box arrays), with weights
    :math:`w_{ij} = 1/d_{ij}` (mm) for all pairs :math:`i \ne j`; exact, from sums over all pairs
    (:func:`_self_sums`, :math:`P(a) = \sum w_{ij} a_i a_j`): with :math:`\delta = x - \bar x`,
    :math:`\sum w_{ij} \delta_i \delta_j = P(\delta)`, :math:`\sum w_{ij} = P(1)` and
    :math:`\sum w_{ij} \delta_i^2 = c\,(P(\delta^2/c + 1) - P(\delta^2/c - 1))/4`
    (:math:`c` the mean of :math:`\delta^2`, so that both terms are of the same size); Geary's
    numerator is :math:`2 \sum w_{ij} \delta_i^2 - 2 \sum w_{ij} \delta_i \delta_j`."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        return float("nan"), float("nan")
    sub = mask[zs[0]:zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    box = (slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
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
    c = denom / n
    sq = d * d / c
    s_dev, w_total, plus, minus = _self_sums(mask, [d, 1.0, sq + 1.0, sq - 1.0], spacing_zyx)
    s_sq = c * (plus - minus) / 4.0
    morans = n / w_total * s_dev / denom
    geary_num = 2.0 * s_sq - 2.0 * s_dev
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
    from medimg.core.hull import convex_hull_3d

    sp = roi.spacing_zyx
    morph = roi.morph_mask
    # first, while nothing else is held: its FFTs are the family's largest temporaries
    autocorrelation = roi.cached(
        "autocorrelation", lambda: spatial_autocorrelation(roi.intensity, roi.int_mask, sp))
    padded = _tight_padded(morph)
    config = _cube_configs(padded)
    volume, area = mesh_volume_area(padded, sp, config)
    n_morph = int(np.count_nonzero(morph))
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
    int_coords = roi.int_index * np.asarray(sp)
    vals = roi.values
    total = float(vals.sum())
    if total != 0:
        com_gl = (int_coords * vals[:, None]).sum(axis=0) / total
        out["centre_of_mass_shift"] = float(np.linalg.norm(coords.mean(axis=0) - com_gl))
    else:
        out["centre_of_mass_shift"] = float("nan")
    twice = _hull_candidates_twice(padded, config)
    candidates = twice / 2.0 * np.asarray(sp, dtype=np.float64)
    try:
        hull = convex_hull_3d(twice)  # exact on the half-voxel lattice; the same hull in mm
        hull_pts = candidates[hull.vertices]
        hull_volume, hull_area = hull.volume_area(candidates)
        hull_normals = hull.normals(candidates)
    except ValueError:  # DegenerateHullError: no volume
        hull_pts, hull_volume, hull_area, hull_normals = candidates, float("nan"), float("nan"), None
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
    # the mesh's extent: from the edge midpoints at -1/2 to those at n + 1/2 (frame of `mesh`)
    half = np.asarray(sp, dtype=np.float64) * 0.5
    ext = (np.asarray(padded.shape, dtype=np.float64) - 1.5) * np.asarray(sp, dtype=np.float64) - half
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
    out["morans_i"], out["gearys_c"] = autocorrelation
    return {s.name: out[s.name] for s in MORPH_SPECS}
