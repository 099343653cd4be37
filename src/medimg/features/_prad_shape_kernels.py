"""Compiled (numba) kernels of PyRadiomics's shape class: the mesh's area and volume, its vertices
and the maximum diameters between them (:func:`medimg.features._pyradiomics_calc.shape`).

The loops are plain Python functions compiled on first use (:func:`medimg.core.jit.compile_kernel`);
the caller uses them only where :func:`medimg.core.jit.wanted` says so. Each computes what the NumPy
path of :mod:`medimg.features._pyradiomics_calc` computes, with the same per-value arithmetic
(the sums over many cubes are accumulated in another order: ~1e-15 relative):

* :func:`mesh`: one pass over the cubes of the padded mask: each cube's configuration, its
  triangles' area and signed volume from the per-configuration tables (``_mesh_tables``), and the
  mesh vertices (twice their voxel coordinates: the midpoints of the grid edges whose voxels differ).
* :func:`diameters`: the largest distance between two vertices, overall and within each plane of
  constant z, y or x. Only the vertices first or last on their lines parallel to the axes can be
  ends of a farthest pair (a point strictly inside a segment of two others never is); the pairs are
  then searched with a cell grid: pairs of cells whose bounding boxes cannot hold a pair farther
  than the best found so far are skipped. Every bound is computed with the same rounded operations
  as the distances, which are monotone, so a skipped pair can never have given a larger value: the
  result is the exact maximum over all pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medimg.core import jit

__all__ = ["mesh", "diameters", "max_sq_distance", "voxel_coords", "digitize"]


# ------------------------------------------------------------------------------------------------- mesh

def _mesh_loop(m: np.ndarray, area_tab: np.ndarray, det_tab: np.ndarray, normal_tab: np.ndarray,
               sp: np.ndarray) -> tuple[float, float, np.ndarray]:
    n0, n1, n2 = m.shape
    area = 0.0
    volume = 0.0
    cap = 1024
    out = np.empty((cap, 3), dtype=np.int64)
    row = 0
    if n0 < 2 or n1 < 2 or n2 < 2:
        return 0.0, 0.0, out[:0]
    for i in range(n0 - 1):
        oz = i * sp[0]
        for j in range(n1 - 1):
            oy = j * sp[1]
            # corners (z, y, x offsets) in the order of _pyradiomics_tables.CORNERS; along x the
            # cube's far corners are the next cube's near ones
            c0 = np.int64(m[i, j, 0])
            c3 = np.int64(m[i, j + 1, 0])
            c4 = np.int64(m[i + 1, j, 0])
            c7 = np.int64(m[i + 1, j + 1, 0])
            if row + 3 * n2 > cap:  # room for this row of cubes
                cap = 2 * cap + 3 * n2
                grown = np.empty((cap, 3), dtype=np.int64)
                grown[:row] = out[:row]
                out = grown
            for k in range(n2 - 1):
                c1 = np.int64(m[i, j, k + 1])
                c2 = np.int64(m[i, j + 1, k + 1])
                c5 = np.int64(m[i + 1, j, k + 1])
                c6 = np.int64(m[i + 1, j + 1, k + 1])
                cfg = c0 | (c1 << 1) | (c2 << 2) | (c3 << 3) | (c4 << 4) | (c5 << 5) | (c6 << 6) | (c7 << 7)
                if cfg != 0 and cfg != 255:
                    # the vertices on the cube's edges from corner 0: edges whose two voxels differ
                    # (those of the last plane/row/column are in the zero padding: none there)
                    if c0 != c4:
                        out[row, 0] = 2 * i + 1
                        out[row, 1] = 2 * j
                        out[row, 2] = 2 * k
                        row += 1
                    if c0 != c3:
                        out[row, 0] = 2 * i
                        out[row, 1] = 2 * j + 1
                        out[row, 2] = 2 * k
                        row += 1
                    if c0 != c1:
                        out[row, 0] = 2 * i
                        out[row, 1] = 2 * j
                        out[row, 2] = 2 * k + 1
                        row += 1
                    sgn = 1.0
                    if cfg >= 128:
                        cfg = cfg ^ 255
                        sgn = -1.0
                    area += area_tab[cfg]
                    ox = k * sp[2]
                    volume += sgn * (det_tab[cfg] + (oz * normal_tab[cfg, 0] + oy * normal_tab[cfg, 1]
                                                     + ox * normal_tab[cfg, 2]))
                c0 = c1
                c3 = c2
                c4 = c5
                c7 = c6
    return area, volume / 6.0, out[:row]


def mesh(padded: np.ndarray, spacing: np.ndarray, tables: tuple[np.ndarray, np.ndarray, np.ndarray]
         ) -> tuple[float, float, np.ndarray]:
    """Surface area (mm^2), signed volume (mm^3) and vertices (twice the voxel coordinates, int64,
    unique, shape (N, 3)) of PyRadiomics's mesh of the zero-padded mask ``padded`` (z, y, x);
    ``tables``: ``_pyradiomics_calc._mesh_tables(spacing)``."""
    m = np.ascontiguousarray(padded if padded.dtype == np.bool_ else padded != 0).view(np.uint8)  # 0 / 1
    if m.ndim != 3 or min(m.shape) < 1 or m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() \
            or m[:, :, 0].any() or m[:, :, -1].any():
        raise ValueError("mesh: the mask must be 3-D and padded with zeros")
    area_tab, det_tab, normal_tab = (np.ascontiguousarray(t, dtype=np.float64) for t in tables)
    kernel = _kernel("_mesh_loop")
    area, volume, verts = kernel(m, area_tab, det_tab, normal_tab, np.ascontiguousarray(spacing, dtype=np.float64))
    return float(area), float(volume), verts


def _coords_loop(m: np.ndarray, sp: np.ndarray, count: int) -> np.ndarray:
    n0, n1, n2 = m.shape
    out = np.empty((3, count))
    r = 0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                if m[i, j, k] != 0:
                    if r == count:
                        raise ValueError("more voxels than counted")
                    out[0, r] = i * sp[0]
                    out[1, r] = j * sp[1]
                    out[2, r] = k * sp[2]
                    r += 1
    if r != count:
        raise ValueError("fewer voxels than counted")
    return out


def voxel_coords(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Coordinates (mm: index x spacing, (z, y, x)) of the voxels of ``mask`` in C order, shape
    (N, 3) in Fortran order: the array ``numpy.argwhere(mask).astype(float) * spacing`` with the
    memory layout of ``numpy.stack(numpy.nonzero(mask)).T`` (the same values, the same layout)."""
    m = np.ascontiguousarray(mask if mask.dtype == np.bool_ else mask != 0).view(np.uint8)
    if m.ndim != 3:
        raise ValueError("voxel_coords: a 3-D mask")
    out = _kernel("_coords_loop")(m, np.ascontiguousarray(spacing, dtype=np.float64), int(np.count_nonzero(m)))
    return out.T


# ------------------------------------------------------------------------------------------- discretise

def _digitize_loop(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n = values.shape[0]
    m = edges.shape[0]
    out = np.empty(n, dtype=np.intp)
    first = edges[0]
    step = (edges[m - 1] - first) / (m - 1) if m > 1 else 1.0
    for i in range(n):
        v = values[i]
        if v != v:  # NaN sorts after every edge
            out[i] = m
            continue
        guess = (v - first) / step if step > 0 else 0.0
        if not guess >= 0.0:
            g = 0
        elif guess >= m:
            g = m
        else:
            g = int(guess)
        while g < m and edges[g] <= v:
            g += 1
        while g > 0 and edges[g - 1] > v:
            g -= 1
        out[i] = g  # edges[g - 1] <= v < edges[g]
    return out


def digitize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``numpy.digitize(values, edges)`` for increasing ``edges`` (the index of the first edge above
    each value, NaN after all): the same comparisons, in float64 (exact for the values and edges
    NumPy would compare in a narrower common type), from a guess on evenly spaced edges."""
    e = np.ascontiguousarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or np.any(e[1:] < e[:-1]) or np.isnan(e).any():
        return np.digitize(values, edges)
    return _kernel("_digitize_loop")(np.ascontiguousarray(values, dtype=np.float64).ravel(), e)


# -------------------------------------------------------------------------------------------- diameters

def _sq(a: np.ndarray, i: int, b: np.ndarray, j: int) -> float:
    d0 = a[i, 0] - b[j, 0]
    d1 = a[i, 1] - b[j, 1]
    d2 = a[i, 2] - b[j, 2]
    return d0 * d0 + d1 * d1 + d2 * d2


def _all_pairs(p: np.ndarray, best: float) -> float:
    n = p.shape[0]
    for i in range(n):
        x0, x1, x2 = p[i, 0], p[i, 1], p[i, 2]
        for j in range(i + 1, n):
            d0 = x0 - p[j, 0]
            d1 = x1 - p[j, 1]
            d2 = x2 - p[j, 2]
            d = d0 * d0 + d1 * d1 + d2 * d2
            if d > best:
                best = d
    return best


#: Directions (z, y, x) whose extreme points give the first lower bound of the farthest pair.
_DIRECTIONS = np.asarray([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1),
                          (0, 1, 1), (0, 1, -1), (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)], dtype=np.float64)


def _max_sq_cells(p: np.ndarray, directions: np.ndarray) -> float:
    """Largest squared distance between two rows of ``p`` (n, 3), exact (module notes)."""
    n = p.shape[0]
    if n < 2:
        return 0.0
    if n <= 384:
        return _all_pairs(p, 0.0)
    # a lower bound: all pairs of the extreme points along a few directions
    nd = directions.shape[0]
    ext = np.empty((2 * nd, 3))
    for d in range(nd):
        lo_i, hi_i = 0, 0
        lo_v = hi_v = p[0, 0] * directions[d, 0] + p[0, 1] * directions[d, 1] + p[0, 2] * directions[d, 2]
        for i in range(1, n):
            v = p[i, 0] * directions[d, 0] + p[i, 1] * directions[d, 1] + p[i, 2] * directions[d, 2]
            if v < lo_v:
                lo_v, lo_i = v, i
            if v > hi_v:
                hi_v, hi_i = v, i
        ext[2 * d] = p[lo_i]
        ext[2 * d + 1] = p[hi_i]
    best = _all_pairs(ext, 0.0)
    lo = np.empty(3)
    hi = np.empty(3)
    for a in range(3):
        lo[a] = p[:, a].min()
        hi[a] = p[:, a].max()
    # a point whose farthest bounding-box corner is not farther than the best pair cannot be an end
    # of a farther pair (the same rounded operations as the distances: monotone)
    keep = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        reach = 0.0
        for a in range(3):
            u = p[i, a] - lo[a]
            w = hi[a] - p[i, a]
            if w > u:
                u = w
            reach += u * u
        if reach > best:
            keep[m] = i
            m += 1
    if m < 2:
        return best
    if m < n:
        p = p[keep[:m]]
        n = m
        if n <= 384:
            return _all_pairs(p, best)
    # cells: about n / 16 per axis^3, at most 12 per axis
    g = int(round((n / 16.0) ** (1.0 / 3.0)))
    g = max(2, min(12, g))
    ncell = np.empty(3, dtype=np.int64)
    width = np.empty(3)
    for a in range(3):
        ext_a = hi[a] - lo[a]
        ncell[a] = g if ext_a > 0 else 1
        width[a] = ext_a / ncell[a] if ext_a > 0 else 1.0
    total = ncell[0] * ncell[1] * ncell[2]
    cell = np.empty(n, dtype=np.int64)
    counts = np.zeros(total + 1, dtype=np.int64)
    for i in range(n):
        c = 0
        for a in range(3):
            k = int((p[i, a] - lo[a]) / width[a])
            if k >= ncell[a]:
                k = ncell[a] - 1
            if k < 0:
                k = 0
            c = c * ncell[a] + k
        cell[i] = c
        counts[c + 1] += 1
    for c in range(total):
        counts[c + 1] += counts[c]
    fill = counts[:total].copy()
    q = np.empty((n, 3))
    for i in range(n):
        c = cell[i]
        q[fill[c]] = p[i]
        fill[c] += 1
    # the non-empty cells and the bounding box of their points
    ids = np.empty(total, dtype=np.int64)
    m = 0
    for c in range(total):
        if counts[c + 1] > counts[c]:
            ids[m] = c
            m += 1
    bmin = np.empty((m, 3))
    bmax = np.empty((m, 3))
    for t in range(m):
        c = ids[t]
        for a in range(3):
            bmin[t, a] = q[counts[c], a]
            bmax[t, a] = q[counts[c], a]
        for r in range(counts[c] + 1, counts[c + 1]):
            for a in range(3):
                if q[r, a] < bmin[t, a]:
                    bmin[t, a] = q[r, a]
                if q[r, a] > bmax[t, a]:
                    bmax[t, a] = q[r, a]
    # pairs of cells that may hold a farther pair, largest bound first
    npairs = 0
    cap = 1024
    pa = np.empty(cap, dtype=np.int64)
    pb = np.empty(cap, dtype=np.int64)
    pu = np.empty(cap)
    for s in range(m):
        for t in range(s, m):
            ub = 0.0
            for a in range(3):
                u = bmax[t, a] - bmin[s, a]
                w = bmax[s, a] - bmin[t, a]
                if w > u:
                    u = w
                ub += u * u
            if ub > best:
                if npairs == cap:
                    cap *= 2
                    na = np.empty(cap, dtype=np.int64)
                    nb = np.empty(cap, dtype=np.int64)
                    nu = np.empty(cap)
                    na[:npairs] = pa[:npairs]
                    nb[:npairs] = pb[:npairs]
                    nu[:npairs] = pu[:npairs]
                    pa, pb, pu = na, nb, nu
                pa[npairs] = s
                pb[npairs] = t
                pu[npairs] = ub
                npairs += 1
    order = np.argsort(-pu[:npairs])
    for r in range(npairs):
        k = order[r]
        if pu[k] <= best:
            break
        s, t = pa[k], pb[k]
        cs, ct = ids[s], ids[t]
        if s == t:
            best = _all_pairs(q[counts[cs]:counts[cs + 1]], best)
            continue
        for i in range(counts[cs], counts[cs + 1]):
            for j in range(counts[ct], counts[ct + 1]):
                d = _sq(q, i, q, j)
                if d > best:
                    best = d
    return best


def _line_flags(tw: np.ndarray) -> np.ndarray:
    """Bit ``a`` set where the point is the first or the last on its line parallel to axis ``a``."""
    n = tw.shape[0]
    flags = np.zeros(n, dtype=np.int64)
    if n == 0:
        return flags
    dims = np.empty(3, dtype=np.int64)
    for a in range(3):
        if tw[:, a].min() < 0:
            raise ValueError("negative vertex coordinates")
        dims[a] = tw[:, a].max() + 1
    line = np.empty(n, dtype=np.int64)
    for a in range(3):
        b = 1 if a == 0 else 0
        c = 1 if a == 2 else 2
        nc = dims[c]
        size = dims[b] * nc
        first = np.empty(size, dtype=np.int64)
        last = np.empty(size, dtype=np.int64)
        first[:] = dims[a]
        last[:] = -1
        for i in range(n):
            key = tw[i, b] * nc + tw[i, c]
            line[i] = key
            v = tw[i, a]
            if v < first[key]:
                first[key] = v
            if v > last[key]:
                last[key] = v
        bit = 1 << a
        for i in range(n):
            v = tw[i, a]
            if v == first[line[i]] or v == last[line[i]]:
                flags[i] |= bit
    return flags


def _diameters_loop(tw: np.ndarray, half: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Squared maximum diameters (slice, column, row, 3-D) of the vertices ``tw`` (twice the voxel
    coordinates; ``half``: spacing / 2)."""
    out = np.zeros(4)
    n = tw.shape[0]
    if n < 2:
        return out
    flags = _line_flags(tw)
    pts = np.empty((n, 3))
    for i in range(n):
        for a in range(3):
            pts[i, a] = tw[i, a] * half[a]
    # 3-D: the points extreme on all three axes
    k = 0
    for i in range(n):
        if flags[i] == 7:
            k += 1
    sel = np.empty((k, 3))
    k = 0
    for i in range(n):
        if flags[i] == 7:
            sel[k] = pts[i]
            k += 1
    out[3] = _max_sq_cells(sel, directions)
    # planes of constant coordinate along each axis: the points extreme on the two other axes
    for a in range(3):
        need = 7 ^ (1 << a)
        b = 1 if a == 0 else 0
        c = 1 if a == 2 else 2
        nlev = tw[:, a].max() + 1
        start = np.zeros(nlev + 1, dtype=np.int64)
        for i in range(n):
            if flags[i] & need == need:
                start[tw[i, a] + 1] += 1
        for v in range(nlev):
            start[v + 1] += start[v]
        fill = start[:nlev].copy()
        grp = np.empty((start[nlev], 3))
        gi = np.empty((start[nlev], 2), dtype=np.int64)
        for i in range(n):
            if flags[i] & need == need:
                r = fill[tw[i, a]]
                grp[r] = pts[i]
                grp[r, a] = 0.0  # the plane's own coordinate: 0 added first, the same sum
                gi[r, 0] = tw[i, b]
                gi[r, 1] = tw[i, c]
                fill[tw[i, a]] += 1
        bound = np.zeros(nlev)
        for v in range(nlev):
            if start[v + 1] - start[v] < 2:
                continue
            ub = 0.0
            for e in range(3):
                if e == a:
                    continue
                lo_v = grp[start[v]:start[v + 1], e].min()
                hi_v = grp[start[v]:start[v + 1], e].max()
                ub += (hi_v - lo_v) * (hi_v - lo_v)
            bound[v] = ub
        # a first best: in every plane, the farthest of its extreme points along 4 in-plane directions
        best = 0.0
        ends = np.empty((8, 3))
        for v in range(nlev):
            lo_v, hi_v = start[v], start[v + 1]
            if hi_v - lo_v < 2 or bound[v] <= best:
                continue
            for d in range(4):
                sb = 1 if d != 1 else 0
                sc = 1 if d != 0 else 0
                if d == 3:
                    sc = -1
                imin = imax = lo_v
                vmin = vmax = sb * gi[lo_v, 0] + sc * gi[lo_v, 1]
                for i in range(lo_v + 1, hi_v):
                    w = sb * gi[i, 0] + sc * gi[i, 1]
                    if w < vmin:
                        vmin, imin = w, i
                    if w > vmax:
                        vmax, imax = w, i
                ends[2 * d] = grp[imin]
                ends[2 * d + 1] = grp[imax]
            best = _all_pairs(ends, best)
        order = np.argsort(-bound)
        for r in range(nlev):
            v = order[r]
            if bound[v] <= best:
                break
            best = _plane_max(gi[start[v]:start[v + 1]], grp[start[v]:start[v + 1]], best)
        out[a] = best
    return out


def _cross(gi: np.ndarray, o: int, p: int, q: int) -> int:
    return ((gi[p, 0] - gi[o, 0]) * (gi[q, 1] - gi[o, 1])
            - (gi[p, 1] - gi[o, 1]) * (gi[q, 0] - gi[o, 0]))


def _plane_max(gi: np.ndarray, pts: np.ndarray, best: float) -> float:
    """Largest squared distance (at least ``best``) between two points of one plane: integer
    in-plane coordinates ``gi`` (N, 2), the points ``pts`` (N, 3). Over the vertices of their convex
    hull (Andrew's monotone chain, exact in integers) when there are many."""
    n = gi.shape[0]
    if n <= 48:
        return _all_pairs(pts, best)
    cmin = gi[:, 1].min()
    span = gi[:, 1].max() - cmin + 1
    key = np.empty(n, dtype=np.int64)
    for i in range(n):
        key[i] = gi[i, 0] * span + (gi[i, 1] - cmin)  # (b, c) lexicographic
    order = np.argsort(key)
    hull = np.empty(2 * n + 1, dtype=np.int64)
    k = 0
    for t in range(n):
        i = order[t]
        while k >= 2 and _cross(gi, hull[k - 2], hull[k - 1], i) <= 0:
            k -= 1
        hull[k] = i
        k += 1
    low = k + 1
    for t in range(n - 2, -1, -1):
        i = order[t]
        while k >= low and _cross(gi, hull[k - 2], hull[k - 1], i) <= 0:
            k -= 1
        hull[k] = i
        k += 1
    k -= 1  # the last is the first
    for s in range(k):
        for t in range(s + 1, k):
            d = _sq(pts, hull[s], pts, hull[t])
            if d > best:
                best = d
    return best


def diameters(twice: np.ndarray, spacing: np.ndarray) -> tuple[float, float, float, float]:
    """PyRadiomics's maximum diameters (mm: slice, column, row, 3-D) between the mesh vertices
    ``twice`` (twice the voxel coordinates, (N, 3) integers) of a mask of ``spacing`` (z, y, x) mm."""
    tw = np.ascontiguousarray(twice, dtype=np.int64)
    half = np.asarray(spacing, dtype=np.float64) / 2.0
    kernel = _kernel("_diameters_loop")
    sq = kernel(tw, half, _DIRECTIONS)
    return float(np.sqrt(sq[0])), float(np.sqrt(sq[1])), float(np.sqrt(sq[2])), float(np.sqrt(sq[3]))


def max_sq_distance(points: np.ndarray) -> float:
    """Largest squared distance between two rows of ``points`` (N, 3) float64 (exact)."""
    return float(_kernel("_max_sq_cells")(np.ascontiguousarray(points, dtype=np.float64), _DIRECTIONS))


#: Functions the kernels call: compiled (and their module names bound to the compiled versions,
#: which numba then resolves) before any kernel is.
_HELPERS = ("_sq", "_all_pairs", "_max_sq_cells", "_line_flags", "_cross", "_plane_max")


def _kernel(name: str) -> Any:
    """The compiled version of this module's function ``name`` (its helpers compiled first)."""
    return jit.module_kernel(globals(), _HELPERS, name)
