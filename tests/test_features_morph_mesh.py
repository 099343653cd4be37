"""Mesh volume and area from the marching-cubes table, and hull candidates from the mask, equal
what the explicit scikit-image mesh gives."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import marching_cubes

from medimg.features._mc_tables import MC_TRIANGLES, VERTEX_CODES
from medimg.features.morphology import (
    _CORNERS,
    _tight_padded,
    hull_candidates,
    mesh,
    mesh_volume_area,
)


def test_table_is_what_scikit_image_gives_for_each_cube() -> None:
    for config in range(1, 255):
        cube = np.zeros((2, 2, 2), np.float32)
        for bit, corner in enumerate(_CORNERS):
            cube[corner] = (config >> bit) & 1
        verts, faces, _, _ = marching_cubes(cube, level=0.5, allow_degenerate=True)
        half = np.round(verts[faces].reshape(-1, 3) * 2).astype(int)
        assert np.array_equal(half / 2, verts[faces].reshape(-1, 3))
        expected = "".join(VERTEX_CODES[9 * z + 3 * y + x] for z, y, x in half)
        assert MC_TRIANGLES[config] == expected, config
    assert MC_TRIANGLES[0] == MC_TRIANGLES[255] == ""


def _explicit(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float, np.ndarray]:
    verts, faces = mesh(mask, spacing)
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    area = 0.5 * float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
    volume = abs(float(np.einsum("ij,ij->", a, np.cross(b, c)))) / 6.0
    return volume, area, verts


def _row_extremes(verts: np.ndarray) -> np.ndarray:
    """The vertices that are the lowest or highest x of their (z, y) line, sorted by (z, y, x)."""
    key = np.round(verts[:, :2] * 1e6).astype(np.int64)
    order = np.lexsort((verts[:, 2], key[:, 1], key[:, 0]))
    k = key[order]
    new_row = np.ones(order.size, dtype=bool)
    new_row[1:] = np.any(k[1:] != k[:-1], axis=1)
    first = np.flatnonzero(new_row)
    last = np.append(first[1:] - 1, order.size - 1)
    return verts[order[np.unique(np.concatenate([first, last]))]]


@pytest.mark.parametrize("seed", range(6))
def test_volume_area_and_hull_candidates_match_the_explicit_mesh(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(25):
        shape = tuple(int(v) for v in rng.integers(1, 10, size=3))
        mask = rng.random(shape) < rng.uniform(0.2, 0.95)
        if not mask.any():
            continue
        spacing = tuple(float(v) for v in rng.uniform(0.3, 4.0, size=3))
        volume, area, verts = _explicit(mask, spacing)
        padded = _tight_padded(mask)
        got_volume, got_area = mesh_volume_area(padded, spacing)
        assert got_volume == pytest.approx(volume, rel=1e-12)
        assert got_area == pytest.approx(area, rel=1e-12)
        # the same points, in the same order: the convex hull is computed on identical input
        assert np.array_equal(hull_candidates(padded, spacing), _row_extremes(verts))


def test_single_voxel_is_an_octahedron() -> None:
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    volume, area = mesh_volume_area(_tight_padded(mask), (1.0, 1.0, 1.0))
    assert volume == pytest.approx(1.0 / 6.0 * 8 * 0.5**3)  # 8 right tetrahedra of legs 1/2
    assert area == pytest.approx(8 * np.sqrt(3) / 8)  # 8 equilateral faces of side sqrt(1/2)
    assert hull_candidates(_tight_padded(mask), (1.0, 1.0, 1.0)).shape == (6, 3)
