"""Convex hulls of 2-D and 3-D point sets in NumPy (no SciPy/Qhull import: ``scipy.spatial``
costs a command about 0.1 s of start-up, more than the hulls of a small or medium region take;
large 3-D sets go to Qhull, see :data:`QHULL_ABOVE`).

* :func:`hull_2d`: Andrew's monotone chain, vertices counter-clockwise (as
  ``scipy.spatial.ConvexHull(points).vertices`` in 2-D), after an Akl-Toussaint pre-filter.
* :func:`convex_hull_3d`: Quickhull (Barber, Dobkin & Huhdanpaa 1996): outward triangles,
  vertices, volume and area (Qhull's, through SciPy, for more than :data:`QHULL_ABOVE` points).
* :func:`hull_vertices`: the vertices of a 2-D or 3-D hull; :func:`extreme_points`: a cheaper
  superset of them in 2-D (both prune a farthest-pair search).

Predicates are **exact** when the coordinates are whole numbers (extent < 2**15 in 3-D,
2**24 in 2-D): every product and sum is then an integer below 2**53, so float64 computes it
without rounding. That is the case of the hulls of marching-cubes meshes (vertices on a
half-voxel lattice: pass twice the voxel coordinates and scale afterwards, a hull being
invariant under a positive scaling of each axis). Other coordinates use a distance tolerance of
``1e-13 x`` the largest coordinate magnitude (about 500 x the rounding of one predicate), as
Qhull uses its own: points that close to a facet count as on it.

Like Qhull's vertices, the result leaves out points on the hull's faces or edges that are not
corners (coplanar and collinear points; in exact mode; with the tolerance, a vertex that later
points made coplanar may stay, which only adds a point), and duplicates appear once. Fewer than 3 (2-D) or 4
(3-D) points not on one line or plane raise :class:`~medimg.errors.DegenerateHullError` (a
``ValueError``), where Qhull raises ``QhullError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medimg.errors import DegenerateHullError

__all__ = ["Hull3D", "convex_hull_3d", "extreme_points", "hull_2d", "hull_vertices"]

_REL_TOL = 1e-13
#: Above this many points (left after the line-extreme filter), 3-D hulls are Qhull's: its C
#: code is 5-10x faster than this Quickhull's Python steps, which there cost more than importing
#: ``scipy.spatial`` (~0.1 s of a command's start-up); below, this module's (no SciPy import).
#: Both give the same vertices and triangulated hull (volume and area equal to ~1e-15).
QHULL_ABOVE = 4096
_EXACT_3D = 2.0**15
_EXACT_2D = 2.0**24


def _exact(points: np.ndarray, limit: float) -> bool:
    """Whether ``points`` are whole numbers spanning less than ``limit`` per axis."""
    if not np.all(np.isfinite(points)):
        raise DegenerateHullError("convex hull: the points must be finite")
    ext = points.max(axis=0) - points.min(axis=0)
    return bool(np.all(ext < limit) and np.array_equal(points, np.rint(points)))


def _line_extremes(pts: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """Of ``idx``, those that are not strictly between two others of their line along ``axis``
    (the points sharing all other coordinates exactly): a point inside a segment is no hull
    vertex. Exact for any coordinates; on lattices (meshes of masks) it leaves a few per line."""
    if len(idx) < 3:
        return idx
    sub = pts[idx]
    other = [sub[:, a] for a in range(sub.shape[1]) if a != axis]
    order = np.lexsort((sub[:, axis], *other[::-1]))
    change = np.zeros(len(order) - 1, dtype=bool)
    for o in other:
        s = o[order]
        change |= s[1:] != s[:-1]
    keep = np.ones(len(order), dtype=bool)  # the first and the last of each line
    keep[1:-1] = change[:-1] | change[1:]
    return np.sort(idx[order[keep]])


def _checked_points(points: np.ndarray, dim: int, caller: str) -> np.ndarray:
    """``points`` as float64 ``(n, dim)``, at least ``dim + 1`` of them (else no area / volume)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != dim:
        raise ValueError(f"{caller}: points must be (n, {dim}), got shape {pts.shape}")
    if len(pts) <= dim:
        raise DegenerateHullError(f"convex hull: {len(pts)} points span no {'area' if dim == 2 else 'volume'}")
    return pts


def hull_2d(points: np.ndarray) -> np.ndarray:
    """Indices of the convex-hull vertices of 2-D ``points`` ``(n, 2)``, counter-clockwise
    (positive orientation in the (column 0, column 1) plane), starting from the smallest point
    in lexicographic order. Points on an edge between two corners are left out.

    Raises :class:`~medimg.errors.DegenerateHullError` when the points span no area (fewer than 3
    corners: all on one line)."""
    pts = _checked_points(points, 2, "hull_2d")
    exact = _exact(pts, _EXACT_2D)
    centre = pts.min(axis=0) if exact else (pts.max(axis=0) + pts.min(axis=0)) / 2.0
    pts = pts - centre  # exact for whole numbers
    tol = 0.0 if exact else _REL_TOL * float(np.abs(pts).max())
    idx = np.arange(len(pts))
    if len(pts) > 16:
        idx = _akl_toussaint(pts, tol)
    sub = pts[idx]
    order = idx[np.lexsort((sub[:, 1], sub[:, 0]))]
    xs = pts[order, 0].tolist()
    ys = pts[order, 1].tolist()
    ids = order.tolist()

    def chain(seq: range) -> list[int]:
        out: list[int] = []  # positions in `ids`
        for k in seq:
            x, y = xs[k], ys[k]
            while len(out) >= 2:
                o, a = out[-2], out[-1]
                ox, oy = xs[o], ys[o]
                c = (xs[a] - ox) * (y - oy) - (ys[a] - oy) * (x - ox)
                if tol == 0.0:
                    if c > 0.0:
                        break
                elif c > tol * ((x - xs[o]) ** 2 + (y - ys[o]) ** 2) ** 0.5:
                    break
                out.pop()
            if out and xs[out[-1]] == x and ys[out[-1]] == y:
                continue  # duplicate
            out.append(k)
        return out

    n = len(ids)
    lower = chain(range(n))
    upper = chain(range(n - 1, -1, -1))
    ring = lower[:-1] + upper[:-1]
    if len(ring) < 3:
        raise DegenerateHullError("convex hull: the points are collinear")
    return np.array([ids[k] for k in ring], dtype=np.intp)


_DIRECTIONS_2D = np.stack([np.cos(np.arange(32) * (np.pi / 16)), np.sin(np.arange(32) * (np.pi / 16))])


def _akl_toussaint(pts: np.ndarray, tol: float) -> np.ndarray:
    """Indices of the points not strictly inside the polygon of the extreme points in 32
    directions (Akl & Toussaint 1978; those strictly inside are no hull vertices). Whichever
    points the rounded projections pick, the polygon's vertices are input points, so a point to
    the left of all its edges is inside the hull."""
    corners: list[int] = []
    for k in np.argmax(pts @ _DIRECTIONS_2D, axis=0).tolist():  # counter-clockwise
        if k not in corners[-1:]:
            corners.append(k)
    if len(corners) > 1 and corners[-1] == corners[0]:
        corners.pop()
    if len(corners) < 3:
        return np.arange(len(pts))
    a = pts[corners]
    e = np.roll(a, -1, axis=0) - a
    length = np.hypot(e[:, 0], e[:, 1])
    # > 0: left of the edge a -> b (inside); exact for whole numbers (tol = 0)
    c = e[:, 0] * (pts[:, 1, None] - a[:, 1]) - e[:, 1] * (pts[:, 0, None] - a[:, 0])
    inside = np.all(c > tol * length, axis=1)
    return np.flatnonzero(~inside)


@dataclass(frozen=True)
class Hull3D:
    """A 3-D convex hull: ``vertices`` (sorted indices into the points), ``simplices`` (F, 3)
    triangles, counter-clockwise seen from outside (normals outward, as Qhull's with ``Qt``)."""

    vertices: np.ndarray
    simplices: np.ndarray

    def normals(self, points: np.ndarray) -> np.ndarray:
        """Unit outward normals (F, 3) of the triangles, for ``points`` (the hulled points, or the
        same points scaled per axis by positive factors)."""
        p = np.asarray(points, dtype=np.float64)
        a, b, c = (p[self.simplices[:, k]] for k in range(3))
        n = np.cross(b - a, c - a)
        return n / np.linalg.norm(n, axis=1, keepdims=True)

    def volume_area(self, points: np.ndarray) -> tuple[float, float]:
        """(volume, surface area) of the hull of ``points`` (units^3, units^2): the hulled points,
        or the same points scaled per axis by positive factors (e.g. voxel to mm)."""
        p = np.asarray(points, dtype=np.float64)
        origin = p[self.vertices].mean(axis=0)
        a, b, c = (p[self.simplices[:, k]] - origin for k in range(3))
        cross = np.cross(b - a, c - a)
        area = 0.5 * float(np.sum(np.sqrt(np.einsum("ij,ij->i", cross, cross))))
        volume = float(np.einsum("ij,ij->", a, cross)) / 6.0
        return volume, area


def convex_hull_3d(points: np.ndarray) -> Hull3D:
    """The convex hull of 3-D ``points`` ``(n, 3)`` (Quickhull).

    Raises :class:`~medimg.errors.DegenerateHullError` when the points span no volume (all on one
    plane), or when rounding makes the hull of non-integer coordinates inconsistent."""
    pts = _checked_points(points, 3, "convex_hull_3d")
    exact = _exact(pts, _EXACT_3D)
    keep = np.arange(len(pts))
    for axis in range(3):
        keep = _line_extremes(pts, keep, axis)
    sub = pts[keep]
    if len(sub) > QHULL_ABOVE:
        hull = _qhull(sub)
    else:
        centre = sub.min(axis=0) if exact else (sub.max(axis=0) + sub.min(axis=0)) / 2.0
        hull = _quickhull(sub - centre, exact)
    return Hull3D(vertices=keep[hull.vertices], simplices=keep[hull.simplices])


def _qhull(p: np.ndarray) -> Hull3D:
    """The hull by Qhull (``scipy.spatial.ConvexHull``), triangles turned counter-clockwise."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(p)
    except QhullError as err:
        raise DegenerateHullError(f"convex hull: {str(err).splitlines()[0]}") from err
    tri = np.array(hull.simplices, dtype=np.intp)
    a, b, c = (p[tri[:, k]] for k in range(3))
    flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), hull.equations[:, :3]) < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return Hull3D(vertices=np.sort(hull.vertices).astype(np.intp), simplices=tri)


def _quickhull(p: np.ndarray, exact: bool) -> Hull3D:
    tol = 0.0 if exact else _REL_TOL * float(np.abs(p).max())
    ext = p.max(axis=0) - p.min(axis=0)
    ax = int(np.argmax(ext))
    if not ext[ax] > tol:
        raise DegenerateHullError("convex hull: the points coincide")
    i0, i1 = int(np.argmin(p[:, ax])), int(np.argmax(p[:, ax]))
    d01 = p[i1] - p[i0]
    c = np.cross(p - p[i0], d01)
    c2 = np.einsum("ij,ij->i", c, c)
    i2 = int(np.argmax(c2))
    if not np.sqrt(c2[i2]) > tol * np.linalg.norm(d01):
        raise DegenerateHullError("convex hull: the points are collinear")
    nrm = np.cross(d01, p[i2] - p[i0])
    h = (p - p[i0]) @ nrm
    i3 = int(np.argmax(np.abs(h)))
    if not abs(h[i3]) > tol * np.linalg.norm(nrm):
        raise DegenerateHullError("convex hull: the points are coplanar")
    if h[i3] > 0:
        i1, i2 = i2, i1  # (i0, i1, i2) counter-clockwise seen from outside (i3 below)

    # Per facet (Python floats: the per-step work is on a few values, where NumPy calls cost
    # more than the arithmetic): its triangle, plane (normal, offset: n.x - offset > 0 beyond),
    # |normal|, whether it is still on the hull, its outside points and their distances.
    pl = p.tolist()
    tri: list[tuple[int, int, int]] = []
    plane: list[tuple[float, float, float, float]] = []
    scale: list[float] = []
    alive: list[bool] = []
    outside: list[tuple[np.ndarray, np.ndarray] | None] = []
    edge: dict[tuple[int, int], int] = {}  # directed edge -> the facet that has it

    planes = np.empty((64, 4))  # `plane` as an array, for `assign` (filled by `sync`)

    def sync(fids: list[int]) -> None:
        """Copy the planes of the new facets ``fids`` (consecutive) into ``planes``."""
        nonlocal planes
        while fids[-1] >= len(planes):
            planes = np.concatenate([planes, np.empty_like(planes)])
        planes[fids[0]:fids[-1] + 1] = plane[fids[0]:fids[-1] + 1]

    def add(a: int, b: int, q: int) -> int:
        ax_, ay, az = pl[a]
        ux, uy, uz = pl[b][0] - ax_, pl[b][1] - ay, pl[b][2] - az
        vx, vy, vz = pl[q][0] - ax_, pl[q][1] - ay, pl[q][2] - az
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx  # exact in exact mode
        s = (nx * nx + ny * ny + nz * nz) ** 0.5
        if not exact:
            nx, ny, nz, s = nx / s, ny / s, nz / s, 1.0
        fid = len(tri)
        tri.append((a, b, q))
        plane.append((nx, ny, nz, nx * ax_ + ny * ay + nz * az))
        scale.append(s)
        alive.append(True)
        outside.append(None)
        edge[(a, b)] = fid
        edge[(b, q)] = fid
        edge[(q, a)] = fid
        return fid

    p4 = np.hstack([p, -np.ones((len(p), 1))])  # x . (n, offset) = n.x - offset (exact in exact mode)

    def assign(cand: np.ndarray, fids: list[int], pending: list[int]) -> None:
        """Give each of ``cand`` to the facet of ``fids`` it is farthest beyond (if any)."""
        if cand.size == 0:
            return
        dist = p4[cand] @ planes[fids].T  # exact in exact mode
        best = dist.argmax(axis=1)  # (unnormalised in exact mode: any facet beyond will do)
        far = dist.max(axis=1)
        keep = far > tol  # tol = 0 in exact mode; normals are unit vectors otherwise
        if not keep.any():
            return
        cand, best, far = cand[keep], best[keep], far[keep]
        if len(fids) == 1:
            groups = [(0, cand, far)]
        else:
            order = np.argsort(best, kind="stable")
            ordered = best[order]
            cuts = (np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist()
            lows = [0, *cuts]
            facets = ordered[lows].tolist()
            groups = [(k, cand[order[lo:hi]], far[order[lo:hi]])
                      for k, lo, hi in zip(facets, lows, [*cuts, len(ordered)], strict=True)]
        for k, members, distances in groups:
            outside[fids[k]] = (members, distances)
            pending.append(fids[k])

    first = [add(i0, i1, i2), add(i0, i3, i1), add(i1, i3, i2), add(i2, i3, i0)]
    sync(first)
    rest = np.setdiff1d(np.arange(len(p)), [i0, i1, i2, i3])
    pending: list[int] = []
    assign(rest, first, pending)
    while pending:
        f0 = pending.pop()
        if not alive[f0] or outside[f0] is None:
            continue
        cand, dist = outside[f0]
        apex = int(cand[int(np.argmax(dist))])
        px, py, pz = pl[apex]
        visible = {f0}
        stack = [f0]
        while stack:
            a, b, q = tri[stack.pop()]
            for u, v in ((a, b), (b, q), (q, a)):
                g = edge[(v, u)]
                if g in visible:
                    continue
                nx, ny, nz, off = plane[g]
                if nx * px + ny * py + nz * pz - off > tol * scale[g]:
                    visible.add(g)
                    stack.append(g)
        horizon = []
        pooled = []
        for f in visible:
            a, b, q = tri[f]
            for u, v in ((a, b), (b, q), (q, a)):
                twin = edge.get((v, u))  # None: a visible facet's, already removed
                if twin is not None and twin not in visible:
                    horizon.append((u, v))  # its edge (u, v) goes to the new facet
                else:
                    del edge[(u, v)]
            alive[f] = False
            if outside[f] is not None:
                pooled.append(outside[f][0])
                outside[f] = None
        if not exact and not _one_cycle(horizon):  # only possible with rounding
            raise DegenerateHullError("convex hull: rounding made the hull inconsistent")
        new = [add(u, v, apex) for u, v in horizon]
        sync(new)
        # (the apex is on every new facet: not beyond any, so it drops out)
        assign(pooled[0] if len(pooled) == 1 else np.concatenate(pooled), new, pending)
    faces = [t for t, ok in zip(tri, alive, strict=True) if ok]
    if exact:
        corners = _corners(np.array(faces, dtype=np.intp),
                           np.array([pl_[:3] for pl_, ok in zip(plane, alive, strict=True) if ok]))
    else:
        corners = sorted({v for t in faces for v in t})
    return Hull3D(vertices=np.array(corners, dtype=np.intp), simplices=np.array(faces, dtype=np.intp))


def _corners(faces: np.ndarray, normals: np.ndarray) -> list[int]:
    """The vertices of the triangulated hull that are corners: their facets' normals span 3-D (a
    vertex inside a flat face, or on a straight edge between two, is no corner; Quickhull keeps
    such a vertex when the points that flatten the hull around it come later). Exact: the
    normals are whole numbers, reduced by their gcd and multiplied in int64 (Python integers
    when they are too large for that)."""
    n = normals.astype(np.int64)
    n //= np.gcd.reduce(np.abs(n), axis=1)[:, None]
    if np.abs(n).max() >= 2**20:  # cross products (< 2**41) and triple products (< 2**63) fit in int64
        return sorted(_corners_big(faces, n))
    vid = faces.ravel()
    fid = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(vid, kind="stable")
    vid, fid = vid[order], fid[order]
    starts = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1]])
    group = np.cumsum(np.r_[False, vid[1:] != vid[:-1]])
    nf = n[fid]
    c = np.cross(nf[starts][group], nf)  # each incident normal x the vertex's first one
    nonpar = np.any(c != 0, axis=1)
    m = len(vid)
    second = np.minimum.reduceat(np.where(nonpar, np.arange(m), m), starts)  # first non-parallel
    has = second < m
    c1 = c[np.where(has, second, 0)][group]
    off_plane = np.einsum("ij,ij->i", c1, nf) != 0  # a third normal off the plane of the two
    corner = has & np.logical_or.reduceat(off_plane, starts)
    return vid[starts][corner].tolist()


def _corners_big(faces: np.ndarray, normals: np.ndarray) -> set[int]:
    """:func:`_corners` in Python integers (normals too large for int64 products)."""
    incident: dict[int, list[tuple[int, int, int]]] = {}
    for tri, nrm in zip(faces.tolist(), normals.tolist(), strict=True):
        for v in tri:
            incident.setdefault(v, []).append(tuple(nrm))
    out = set()
    for v, ns in incident.items():
        n0 = ns[0]
        cr = None
        for nn in ns[1:]:
            c = (n0[1] * nn[2] - n0[2] * nn[1], n0[2] * nn[0] - n0[0] * nn[2], n0[0] * nn[1] - n0[1] * nn[0])
            if c != (0, 0, 0):
                cr = c
                break
        if cr is not None and any(cr[0] * nn[0] + cr[1] * nn[1] + cr[2] * nn[2] != 0 for nn in ns):
            out.add(v)
    return out


def _one_cycle(edges: list[tuple[int, int]]) -> bool:
    """Whether directed ``edges`` form one simple cycle."""
    succ = dict(edges)
    if len(succ) != len(edges) or set(succ.values()) != set(succ):
        return False
    start = edges[0][0]
    v, steps = succ[start], 1
    while v != start:
        v, steps = succ[v], steps + 1
    return steps == len(edges)


def extreme_points(points: np.ndarray) -> np.ndarray:
    """Indices of a subset of 2-D or 3-D ``points`` that holds every convex-hull vertex (the
    others are proven not to be): where a farthest pair of the points is. Cheaper than the
    vertices themselves in 2-D (the points left by the Akl-Toussaint filter, a few more than the
    vertices); the hull vertices in 3-D.

    Raises :class:`~medimg.errors.DegenerateHullError` (a ``ValueError``) for 3-D points that
    span no volume."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ValueError(f"extreme_points: points must be (n, 2) or (n, 3), got shape {pts.shape}")
    if pts.shape[1] == 3:
        return convex_hull_3d(pts).vertices
    if len(pts) <= 16:
        return np.arange(len(pts))
    exact = _exact(pts, _EXACT_2D)
    sub = pts - (pts.min(axis=0) if exact else (pts.max(axis=0) + pts.min(axis=0)) / 2.0)
    return _akl_toussaint(sub, 0.0 if exact else _REL_TOL * float(np.abs(sub).max()))


def hull_vertices(points: np.ndarray) -> np.ndarray:
    """Indices of the convex-hull vertices of 2-D or 3-D ``points`` (counter-clockwise in 2-D,
    sorted in 3-D, as ``scipy.spatial.ConvexHull(points).vertices``). The largest distance
    between two of ``points`` is between two of these.

    Raises :class:`~medimg.errors.DegenerateHullError` (a ``ValueError``) when the points span
    no area (2-D) or volume (3-D)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 2 and pts.shape[1] == 2:
        return hull_2d(pts)
    return convex_hull_3d(pts).vertices
