"""medimg.core.hull against scipy.spatial.ConvexHull (Qhull) and brute force: vertices, order,
volume, area, degenerate inputs, and the maximum distance it is used to prune."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import ConvexHull, QhullError

from medimg.core.hull import convex_hull_3d, extreme_points, hull_2d, hull_vertices
from medimg.errors import DegenerateHullError


def _max_sq(points: np.ndarray) -> float:
    d = points[:, None, :] - points[None, :, :]
    return float(np.max(np.einsum("ijk,ijk->ij", d, d)))


def _clouds_3d(rng: np.random.Generator):
    """(points, general position?) of several kinds."""
    for _ in range(12):
        n = int(rng.integers(4, 300))
        yield rng.normal(size=(n, 3)), True
        yield rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + 100.0, True  # anisotropic, off-centre
        yield rng.normal(size=(n, 3)) * 1e-9, True  # tiny
        yield rng.integers(0, 6, size=(n, 3)).astype(float), False  # lattice: coplanar, duplicates
        yield rng.integers(0, 30, size=(n, 3)) * np.array([0.46875, 0.6, 3.25]), False  # lattice in mm


@pytest.mark.parametrize("seed", range(3))
def test_3d_hull_equals_qhull(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for pts, general in _clouds_3d(rng):
        ref = ConvexHull(pts)
        hull = convex_hull_3d(pts)
        if general:  # no ties: the same vertex indices
            assert np.array_equal(hull.vertices, np.sort(ref.vertices))
        else:  # duplicates, coplanar points: every Qhull corner is one of ours (same coordinates)
            assert {tuple(v) for v in pts[hull.vertices]} >= {tuple(v) for v in pts[ref.vertices]}
        volume, area = hull.volume_area(pts)
        assert volume == pytest.approx(ref.volume, rel=1e-12)
        assert area == pytest.approx(ref.area, rel=1e-12)
        # every point inside or on every facet; the normals outward
        normals = hull.normals(pts)
        offset = np.einsum("ij,ij->i", normals, pts[hull.simplices[:, 0]])
        assert np.max(pts @ normals.T - offset) <= 1e-9 * np.abs(pts).max()
        # the largest distance is between two vertices, bit for bit
        assert _max_sq(pts[hull.vertices]) == _max_sq(pts)


def test_3d_hull_of_whole_numbers_is_exact_and_has_only_corners() -> None:
    """On a lattice (exact predicates) the vertices are exactly Qhull's corners: points inside a
    flat face or on a straight edge are left out, even when inserted before the face is flat."""
    rng = np.random.default_rng(5)
    cube = np.array([[x, y, z] for x in range(4) for y in range(4) for z in range(4)], dtype=float)
    hull = convex_hull_3d(cube[rng.permutation(len(cube))])
    assert len(hull.vertices) == 8
    assert convex_hull_3d(cube).volume_area(cube) == (27.0, 54.0)
    for _ in range(20):
        pts = rng.integers(0, 12, size=(int(rng.integers(8, 400)), 3)).astype(float)
        ref = ConvexHull(pts)
        hull = convex_hull_3d(pts)
        assert {tuple(v) for v in pts[hull.vertices]} == {tuple(v) for v in pts[ref.vertices]}
        assert hull.volume_area(pts)[0] == pytest.approx(ref.volume, rel=1e-13)


def test_scaled_lattice_hull_is_the_hull_in_mm() -> None:
    """The hull of twice the voxel coordinates, scaled per axis, is the hull of the mm points."""
    rng = np.random.default_rng(11)
    twice = rng.integers(0, 40, size=(500, 3))
    spacing = np.array([3.0, 0.7812499999999999, 1.2])
    mm = twice / 2.0 * spacing
    hull = convex_hull_3d(twice)
    ref = ConvexHull(mm)
    assert set(hull.vertices.tolist()) == set(ref.vertices.tolist())
    volume, area = hull.volume_area(mm)
    assert volume == pytest.approx(ref.volume, rel=1e-13)
    assert area == pytest.approx(ref.area, rel=1e-13)


@pytest.mark.parametrize("pts", [
    np.zeros((0, 3)),
    np.ones((3, 3)),
    np.ones((10, 3)),  # one point, repeated
    np.outer(np.arange(10.0), [1.0, 2.0, 3.0]),  # collinear
    np.c_[np.random.default_rng(0).normal(size=(50, 2)), np.full(50, 7.0)],  # coplanar, axis-aligned
    np.random.default_rng(1).normal(size=(50, 2)) @ np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]]),  # coplanar
])
def test_3d_degenerate_raises_as_qhull_does(pts: np.ndarray) -> None:
    if len(pts) >= 4:
        with pytest.raises((QhullError, ValueError)):
            ConvexHull(pts)
    with pytest.raises(DegenerateHullError):
        convex_hull_3d(pts)
    assert issubclass(DegenerateHullError, ValueError)


@pytest.mark.parametrize("seed", range(3))
def test_2d_hull_equals_qhull_in_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        n = int(rng.integers(3, 300))
        for pts in (rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) * [1.0, 0.01] + 1000.0,
                    rng.integers(0, 8, size=(n, 2)).astype(float),
                    rng.integers(0, 60, size=(n, 2)) * np.array([0.46875, 0.6])):
            try:
                ref = ConvexHull(pts).vertices
            except QhullError:
                with pytest.raises(DegenerateHullError):
                    hull_2d(pts)
                continue
            ours = hull_2d(pts)
            a = [tuple(v) for v in pts[ref]]
            b = [tuple(v) for v in pts[ours]]
            k = a.index(b[0])
            assert a[k:] + a[:k] == b  # the same corners, counter-clockwise
            assert _max_sq(pts[ours]) == _max_sq(pts)


def test_2d_degenerate_and_small() -> None:
    for pts in (np.zeros((2, 2)), np.ones((5, 2)), np.outer(np.arange(7.0), [1.0, -2.0])):
        with pytest.raises(DegenerateHullError):
            hull_2d(pts)
    tri = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    assert hull_2d(tri).tolist() == [0, 2, 1]  # counter-clockwise; edge point and duplicate out
    with pytest.raises(ValueError):
        hull_vertices(np.zeros((5, 4)))


def test_hull_vertices_prune_maximum_distance_bit_for_bit() -> None:
    """The use in the PyRadiomics diameters: mesh-like points in mm (not whole numbers)."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        twice = rng.integers(0, 25, size=(int(rng.integers(20, 600)), 3))
        pts = twice * (np.array(rng.choice([0.5, 0.7812499999999999, 1.2, 6.5], size=3)) / 2.0)
        assert _max_sq(pts[hull_vertices(pts)]) == _max_sq(pts)
        plane = pts[:, 1:]
        try:
            idx = hull_vertices(plane)
        except DegenerateHullError:
            continue
        assert _max_sq(plane[idx]) == _max_sq(plane)


def test_extreme_points_hold_every_vertex() -> None:
    """The cheaper pruning of the PyRadiomics diameters: a superset of the hull vertices (same
    coordinates), so the farthest pair among them is the farthest pair of all, bit for bit."""
    rng = np.random.default_rng(8)
    for k in range(60):
        n = int(rng.integers(3, 400))
        pts = (rng.normal(size=(n, 2)) if k % 3 == 0 else
               rng.integers(0, 30, size=(n, 2)) * np.array([0.46875, 0.6]) if k % 3 == 1 else
               rng.integers(0, 9, size=(n, 2)).astype(float))
        keep = extreme_points(pts)
        assert _max_sq(pts[keep]) == _max_sq(pts)
        try:
            corners = pts[hull_2d(pts)]
        except DegenerateHullError:
            continue
        assert {tuple(v) for v in corners} <= {tuple(v) for v in pts[keep]}
        assert len(np.unique(keep)) == len(keep)
    cube = np.array([[x, y, z] for x in range(5) for y in range(5) for z in range(5)], dtype=float)
    assert len(extreme_points(cube * [0.5, 0.7, 1.3])) == 8


def test_large_sets_go_to_qhull_with_the_same_hull(monkeypatch) -> None:
    """Above QHULL_ABOVE points the hull is Qhull's: the same corners, outward triangles and
    volume/area as this module's Quickhull gives (forced here by raising the threshold)."""
    import medimg.core.hull as hull_mod

    rng = np.random.default_rng(12)
    z, y, x = np.ogrid[-18:19, -18:19, -18:19]
    ball = (z * z + y * y + x * x) <= 18**2
    twice = np.argwhere(ball) * 2 + rng.integers(-1, 2, size=(int(ball.sum()), 3))
    spacing = np.array([2.5, 0.7, 0.9])
    calls: list[int] = []
    qhull = hull_mod._qhull

    def counted(p: np.ndarray) -> object:
        calls.append(len(p))
        return qhull(p)

    for pts in (twice.astype(float), twice / 2.0 * spacing, rng.normal(size=(6000, 3))):
        calls.clear()
        monkeypatch.setattr(hull_mod, "_qhull", counted)
        big = convex_hull_3d(pts)
        assert calls and calls[0] > hull_mod.QHULL_ABOVE  # Qhull did it
        monkeypatch.undo()
        monkeypatch.setattr(hull_mod, "QHULL_ABOVE", 10**9)
        ours = convex_hull_3d(pts)
        monkeypatch.undo()
        assert {tuple(v) for v in pts[big.vertices]} <= {tuple(v) for v in pts[ours.vertices]}
        assert _max_sq(pts[big.vertices]) == _max_sq(pts[ours.vertices])
        for got, want in zip(big.volume_area(pts), ours.volume_area(pts), strict=True):
            assert got == pytest.approx(want, rel=1e-12)
        normals = big.normals(pts)
        offset = np.einsum("ij,ij->i", normals, pts[big.simplices[:, 0]])
        assert np.max(pts @ normals.T - offset) <= 1e-9 * np.abs(pts).max()  # outward
